/**
 * TaskGrid's side of the benchmarks: a grid of real processes (test/support/grid.ts: the CLI's
 * nameservice, dispatcher and workers on port 0) and one client in this process, over UDP on
 * loopback. Every result is checked against the `reverse` handler run here.
 */
import { TaskGridClient } from '../../src/client/index.ts';
import type { TaskSpec } from '../../src/protocol/messages.ts';
import { handle as reverse } from '../../worker_types/reverse.ts';
import { Grid } from '../../test/support/grid.ts';

/** Tasks a TaskGrid worker process runs at once in the benchmarks. */
export const TASKGRID_CONCURRENCY = 256;

/** Payload of throughput task `i` (the same for both systems). */
export const throughputPayload = (i: number): string => `task ${i}`;
/** Payload of round-trip task `i`. */
export const roundTripPayload = (i: number): string => `rt ${i}`;

/**
 * A grid with `workers` reverse worker processes, logging warnings only; `inline`: they run
 * `reverse` on their main thread (`taskgrid worker --inline`) rather than in handler threads.
 */
export async function startTaskGrid(
  workers: number,
  inline: boolean,
  concurrency = TASKGRID_CONCURRENCY,
): Promise<Grid> {
  const grid = await Grid.start({ env: { TASKGRID_LOG_LEVEL: 'warn' } });
  try {
    await addWorkers(grid, workers, inline, concurrency);
  } catch (err) {
    await grid.stop();
    throw err;
  }
  return grid;
}

/** Starts `n` more reverse worker processes (in parallel). */
export async function addWorkers(
  grid: Grid,
  n: number,
  inline: boolean,
  concurrency = TASKGRID_CONCURRENCY,
): Promise<void> {
  await Promise.all(Array.from({ length: n }, () => grid.startWorker(['reverse'], concurrency, inline)));
}

export function connect(grid: Grid): Promise<TaskGridClient> {
  return TaskGridClient.connect({ nameservers: [{ host: '127.0.0.1', port: grid.nsPort }] });
}

/** Resolves once the dispatcher counts `n` workers (it learns them from the nameservice). */
export async function waitForWorkers(client: TaskGridClient, n: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { workers } = await client.stats();
    if (workers.length >= n) return;
    if (Date.now() > deadline) throw new Error(`the dispatcher knows ${workers.length} workers, not ${n}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Submits `specs` (in the client's batches) and fails unless every one was acknowledged. */
export async function submitAll(client: TaskGridClient, specs: readonly TaskSpec[]): Promise<number[]> {
  const outcomes = await client.submitMany(specs);
  return outcomes.map((o) => {
    if (!o.ok) throw new Error(`a submit failed: ${JSON.stringify(o.error)}`);
    return o.id;
  });
}

/**
 * `n` reverse tasks submitted at once (batches of 500, as submitMany sends them), then waited
 * for: tasks a second from the first submit to the last result known to the client. Fails
 * unless every task succeeded with the right result.
 */
export async function taskgridThroughput(client: TaskGridClient, n: number): Promise<number> {
  const specs = Array.from({ length: n }, (_, i) => ({ type: 'reverse', payload: throughputPayload(i) }));
  const t0 = process.hrtime.bigint();
  const ids = await submitAll(client, specs);
  const views = await client.wait(ids, { timeoutMs: 600_000 });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const wrong = views.filter(
    (v, i) => v.status !== 'succeeded' || v.result !== reverse(specs[i]!.payload),
  ).length;
  if (wrong > 0) throw new Error(`${wrong} of ${n} TaskGrid tasks did not succeed with the reversed payload`);
  return n / seconds;
}

/** `n` sequential `client.run('reverse', ...)`: microseconds each, submit to result. */
export async function taskgridRoundTrips(client: TaskGridClient, n: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const payload = roundTripPayload(i);
    const t0 = process.hrtime.bigint();
    const result = await client.run('reverse', payload);
    times.push(Number(process.hrtime.bigint() - t0) / 1000);
    if (result !== reverse(payload)) throw new Error(`TaskGrid reversed ${payload} as ${result}`);
  }
  return times;
}
