/**
 * The dispatcher alone, in one process, so that two versions of it can be compared in the same
 * run under the same load (this machine is shared: process-to-process figures drift by 2x
 * within minutes). Each version (`--root DIR`: a checkout of this repository, e.g. one made
 * with `git archive HEAD`; default this one) runs its own Dispatcher, SqliteTaskStore (a WAL
 * file in a temporary directory) and Endpoints over the in-memory network, with a scripted
 * client and scripted workers (they answer every `task` at once with the reversed payloads, no
 * threads), so the time measured is the dispatcher's and its transport's plus a constant.
 *
 *   npx tsx bench/profile-dispatcher.ts [--root DIR]... [--tasks 20000] [--seq 1000] [--workers 4] [--rounds 3]
 *
 * Prints, per version and round: throughput (submit batches of 500, four in flight, results
 * pushed with `done`), CPU time per task, and the sequential round trip (submit with notify,
 * then the `done` push) with its CPU time.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Instance } from '../src/protocol/messages.ts';
import type { Endpoint } from '../src/transport/index.ts';
import type * as DispatcherModule from '../src/dispatcher/dispatcher.ts';
import type * as SqliteModule from '../src/dispatcher/store/sqlite.ts';
import type * as TransportModule from '../src/transport/index.ts';

const args = process.argv.slice(2);
const opt = (name: string, dflt: number): number => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const roots = args.flatMap((a, i) => (a === '--root' ? [resolve(args[i + 1]!)] : []));
if (roots.length === 0) roots.push(resolve(new URL('..', import.meta.url).pathname));
const TASKS = opt('tasks', 20_000);
const SEQ = opt('seq', 1_000);
const WORKERS = opt('workers', 4);
const ROUNDS = opt('rounds', 3);
const CAPACITY = 256;

/** Another checkout's modules are typed as this one's: the parts used here have not changed. */
type Modules = typeof DispatcherModule & typeof SqliteModule & typeof TransportModule;

async function load(root: string): Promise<Modules> {
  const url = (p: string) => pathToFileURL(join(root, p)).href;
  return {
    ...((await import(url('src/dispatcher/dispatcher.ts'))) as object),
    ...((await import(url('src/dispatcher/store/sqlite.ts'))) as object),
    ...((await import(url('src/transport/index.ts'))) as object),
  } as Modules;
}

/** One version's dispatcher with its scripted client and workers. */
async function setUp(root: string, dir: string) {
  const m = await load(root);
  const net = new m.MemoryNetwork({});
  const quick = { initialRtoMs: 50, minRtoMs: 10, maxRtoMs: 500 };
  const dT = new m.Endpoint(net.link('dispatcher', 4000), quick);
  const store = new m.SqliteTaskStore({ path: join(dir, `${Math.random()}.db`) });
  const workers: Instance[] = [];
  const wEnds: Endpoint[] = [];
  for (let i = 0; i < WORKERS; i++) {
    const t = new m.Endpoint(net.link(`worker-${i}`, 6000), quick);
    t.handle('task', (body, ctx) => {
      const results = body.tasks.map((x) => ({
        id: x.id,
        attempt: x.attempt,
        ok: true as const,
        result: [...x.payload].reverse().join(''),
        runMs: 0.01,
      }));
      setImmediate(() => void t.request(ctx.peer, 'result', { results }).catch(() => {}));
      return { accepted: body.tasks.map((x) => x.id), rejected: [] };
    });
    wEnds.push(t);
    workers.push({
      id: `w${i}`,
      role: 'worker',
      types: ['reverse'],
      address: t.address,
      capacity: CAPACITY,
      meta: {},
      registeredAt: 0,
      lastSeen: 0,
    });
  }
  const directory = { instances: () => workers, onChange: () => {} };
  const dispatcher = new m.Dispatcher({ transport: dT, store, directory, types: new Map([['reverse', {}]]) });
  await dispatcher.start();
  const client = new m.Endpoint(net.link('client', 7000), quick);
  const waiting = new Map<number, () => void>();
  const finished = new Set<number>();
  client.handle('done', (body) => {
    for (const v of body.tasks) {
      const w = waiting.get(v.id);
      if (w) {
        waiting.delete(v.id);
        w();
      } else finished.add(v.id);
    }
    return {};
  });
  const dAddr = dT.address;
  const until = (id: number) =>
    finished.delete(id) ? Promise.resolve() : new Promise<void>((r) => waiting.set(id, r));
  return {
    async throughput(n: number): Promise<{ rate: number; cpuUs: number }> {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      const waits: Promise<void>[] = [];
      let next = 0;
      const lane = async () => {
        while (next < n) {
          const k = Math.min(500, n - next);
          next += k;
          const tasks = Array.from({ length: k }, (_, i) => ({ type: 'reverse', payload: `task ${i}` }));
          const r = await client.request(dAddr, 'submit', { tasks, notify: true }, { timeoutMs: 60_000 });
          for (const x of r.results) if ('id' in x) waits.push(until(x.id));
        }
      };
      await Promise.all([lane(), lane(), lane(), lane()]);
      await Promise.all(waits);
      const c = process.cpuUsage(c0);
      return { rate: n / ((performance.now() - t0) / 1000), cpuUs: (c.user + c.system) / n };
    },
    async roundTrips(n: number): Promise<{ p50: number; p99: number; cpuUs: number }> {
      const c0 = process.cpuUsage();
      const times: number[] = [];
      for (let i = 0; i < n; i++) {
        const t0 = performance.now();
        const r = await client.request(dAddr, 'submit', {
          tasks: [{ type: 'reverse', payload: `rt ${i}` }],
          notify: true,
        });
        const first = r.results[0];
        if (!first || !('id' in first)) throw new Error(`submit refused: ${JSON.stringify(first)}`);
        await until(first.id);
        times.push((performance.now() - t0) * 1000);
      }
      const c = process.cpuUsage(c0);
      times.sort((a, b) => a - b);
      const pct = (p: number) => times[Math.min(times.length - 1, Math.floor(p * times.length))]!;
      return { p50: pct(0.5), p99: pct(0.99), cpuUs: (c.user + c.system) / n };
    },
    async close() {
      await dispatcher.close();
      for (const t of [client, dT, ...wEnds]) await t.close();
      await store.close();
    },
  };
}

const dir = mkdtempSync(join(tmpdir(), 'taskgrid-pd-'));
try {
  const setups = [];
  for (const root of roots) setups.push({ root, s: await setUp(root, dir) });
  for (const { s } of setups) {
    await s.throughput(2_000); // warm-up
    await s.roundTrips(200);
  }
  for (let r = 0; r < ROUNDS; r++) {
    for (const { root, s } of setups) {
      const tp = await s.throughput(TASKS);
      const rt = await s.roundTrips(SEQ);
      console.log(
        `${root}: throughput ${Math.round(tp.rate)} tasks/s, ${tp.cpuUs.toFixed(1)} us CPU/task; ` +
          `round trip p50 ${Math.round(rt.p50)} us, p99 ${Math.round(rt.p99)} us, ${rt.cpuUs.toFixed(0)} us CPU/task`,
      );
    }
  }
  for (const { s } of setups) await s.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
