/**
 * `/metrics`: Prometheus text that `promtool check metrics` accepts, with the grid's queue
 * depths, counters, histograms per type and per worker, the dispatcher's transport counters and
 * monitoring's own, on a registry of each service's own.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MonitoringMetrics } from '../../src/monitoring/metrics.ts';
import { FakeGrid, ManualClock } from './fake-grid.ts';
import { makeApp } from './helpers.ts';
import { promtoolCheck } from './tools.ts';

/** An app whose grid ran a few tasks through two polls, with process metrics on. */
async function busyApp() {
  const clock = new ManualClock();
  const grid = new FakeGrid(clock);
  const metrics = new MonitoringMetrics({
    maxWorkerSeries: 100,
    processMetrics: true,
    transportCounters: () => grid.transportCounters(),
  });
  const parts = makeApp({ grid, clock, metrics });
  grid.addWorker('worker-reverse-1', ['reverse'], 6001);
  grid.addWorker('worker-sum-1', ['sum'], 6002);
  // Polled by hand: a started watcher would also poll on the manual clock's timers.
  await parts.watcher.pollOnce();
  const a = grid.put({ type: 'reverse', payload: 'Hello' });
  const b = grid.put({ type: 'sum', payload: 'x' });
  grid.put({ type: 'sum', payload: '1,2' });
  grid.start(a.id, 'worker-reverse-1');
  grid.start(b.id, 'worker-sum-1');
  await parts.watcher.pollOnce();
  clock.advance(250);
  grid.finish(a.id, 'olleH');
  grid.fail(b.id, { code: 'TG_ERR_BAD_PAYLOAD', message: 'not a number: x' }, false);
  await parts.watcher.pollOnce();
  await parts.app.request('/api/stats');
  await parts.app.request('/api/tasks/999');
  return parts;
}

describe('metrics', () => {
  test('/metrics passes promtool check metrics', async () => {
    const { app, watcher } = await busyApp();
    const res = await app.request('/metrics');
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    const { code, output } = await promtoolCheck(text);
    assert.equal(code, 0, `promtool check metrics:\n${output}`);
    await watcher.close();
  });

  test('/metrics has queue depths, counters and histograms per type and worker, and transport counters', async () => {
    const { app, watcher } = await busyApp();
    const text = await (await app.request('/metrics')).text();
    const expect = [
      'taskgrid_up{component="dispatcher"} 1',
      'taskgrid_queue_depth{type="sum"} 1',
      'taskgrid_tasks{type="reverse",status="succeeded"} 1',
      'taskgrid_tasks_finished_total{type="reverse",status="succeeded"} 1',
      'taskgrid_tasks_finished_total{type="sum",status="failed"} 1',
      'taskgrid_task_run_duration_seconds_count{type="reverse",worker="worker-reverse-1"} 1',
      'taskgrid_task_run_duration_seconds_sum{type="reverse",worker="worker-reverse-1"} 0.25',
      'taskgrid_task_queue_wait_duration_seconds_count{type="sum"} 1',
      'taskgrid_worker_attempts_total{worker="worker-reverse-1",outcome="completed"} 1',
      'taskgrid_worker_capacity{worker="worker-sum-1"} 4',
      'taskgrid_worker_instances{type="reverse"} 1',
      'taskgrid_dispatcher_transport_datagrams_in_total 42',
      'taskgrid_dispatcher_transport_bytes_in_total 4200',
      'taskgrid_monitoring_transport_requests_sent_total 7',
      'taskgrid_monitoring_http_requests_total{method="GET",route="/api/tasks/:id",status="404"} 1',
      'taskgrid_monitoring_polls_total{result="ok"} 3',
    ];
    for (const line of expect) assert.ok(text.split('\n').includes(line), `missing: ${line}`);
    assert.match(text, /^taskgrid_monitoring_process_resident_memory_bytes \d+/m);
    await watcher.close();
  });

  test('finished counters never go back when the dispatcher prunes or restarts', async () => {
    const clock = new ManualClock();
    const grid = new FakeGrid(clock);
    const { app, watcher } = makeApp({ grid, clock });
    const ids = [1, 2, 3].map(() => grid.put({ type: 'hash' }).id);
    for (const id of ids) grid.finish(id, 'd');
    await watcher.pollOnce();
    for (const id of ids) grid.tasksById.delete(id); // pruned, or a new store
    await watcher.pollOnce();
    grid.finish(grid.put({ type: 'hash' }).id, 'd');
    await watcher.pollOnce();
    const text = await (await app.request('/metrics')).text();
    assert.ok(
      text.includes('taskgrid_tasks_finished_total{type="hash",status="succeeded"} 4'),
      text.slice(0, 3000),
    );
    assert.ok(text.includes('taskgrid_tasks{type="hash",status="succeeded"} 1'));
  });

  test('a type whose workers are all gone has taskgrid_worker_instances 0, not no series', async () => {
    const clock = new ManualClock();
    const grid = new FakeGrid(clock);
    const { app, watcher } = makeApp({ grid, clock });
    grid.addWorker('worker-sum-1', ['sum'], 6002);
    grid.put({ type: 'sum', payload: '1,2' });
    await watcher.pollOnce();
    let text = await (await app.request('/metrics')).text();
    assert.ok(text.split('\n').includes('taskgrid_worker_instances{type="sum"} 1'), text);
    grid.removeWorker('worker-sum-1');
    await watcher.pollOnce();
    text = await (await app.request('/metrics')).text();
    // An alert on `taskgrid_worker_instances == 0` must see the type without workers.
    assert.ok(text.split('\n').includes('taskgrid_worker_instances{type="sum"} 0'), text.slice(0, 4000));
    // A type never served here with a task waiting is at 0 too; one with nothing waiting has no series.
    grid.knownTypes.add('orphan');
    grid.knownTypes.add('retired');
    grid.put({ type: 'orphan', payload: 'x' });
    await watcher.pollOnce();
    text = await (await app.request('/metrics')).text();
    assert.ok(text.split('\n').includes('taskgrid_worker_instances{type="orphan"} 0'), text.slice(0, 4000));
    assert.ok(text.includes('taskgrid_tasks{type="retired",status="queued"} 0'));
    assert.ok(!text.includes('taskgrid_worker_instances{type="retired"}'));
    await watcher.close();
  });

  test('taskgrid_component_start_time_seconds tells when the dispatcher and the nameservice started, and changes only when they restart', async () => {
    const clock = new ManualClock();
    const grid = new FakeGrid(clock);
    const { app, watcher } = makeApp({ grid, clock });
    const series = async () => {
      const text = await (await app.request('/metrics')).text();
      return Object.fromEntries(
        [
          ...text.matchAll(
            /^taskgrid_component_start_time_seconds\{component="(\w+)",address="([^"]+)"\} (\d+)$/gm,
          ),
        ].map((m) => [`${m[1]} ${m[2]}`, Number(m[3])]),
      );
    };
    const seconds = (ms: number) => Math.round(ms / 1000);
    await watcher.pollOnce();
    await new Promise((r) => setImmediate(r)); // the pings are not awaited by the poll
    const first = {
      'dispatcher 127.0.0.1:4000': seconds(grid.startedAt.dispatcher),
      'nameservice 127.0.0.1:5001': seconds(grid.startedAt.nameservice),
    };
    assert.deepEqual(await series(), first);
    // Time passes, the pings come again (every 10 polls) with longer uptimes: no change.
    for (let i = 0; i < 20; i++) {
      clock.advance(1_000);
      await watcher.pollOnce();
    }
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(await series(), first);
    // The dispatcher restarts: its next ping's uptime is short, and the series moves.
    grid.startedAt.dispatcher = clock.now() - 500;
    for (let i = 0; i < 10; i++) {
      clock.advance(1_000);
      await watcher.pollOnce();
    }
    await new Promise((r) => setImmediate(r));
    const after = await series();
    assert.equal(after['dispatcher 127.0.0.1:4000'], seconds(grid.startedAt.dispatcher));
    assert.equal(after['nameservice 127.0.0.1:5001'], first['nameservice 127.0.0.1:5001']);
    await watcher.close();
  });

  test('taskgrid_queue_oldest_age_seconds gives the age of the oldest queued task per type, 0 when none', async () => {
    const clock = new ManualClock();
    const grid = new FakeGrid(clock);
    const { app, watcher } = makeApp({ grid, clock });
    const first = grid.put({ type: 'sum', payload: '1' });
    clock.advance(30_000);
    grid.put({ type: 'sum', payload: '2' });
    grid.put({ type: 'hash', payload: 'x' });
    clock.advance(5_000);
    await watcher.pollOnce();
    let lines = (await (await app.request('/metrics')).text()).split('\n');
    assert.ok(
      lines.includes('taskgrid_queue_oldest_age_seconds{type="sum"} 35'),
      lines.join('\n').slice(0, 3000),
    );
    assert.ok(lines.includes('taskgrid_queue_oldest_age_seconds{type="hash"} 5'));
    grid.start(first.id, 'w');
    grid.finish(first.id, '1');
    await watcher.pollOnce();
    lines = (await (await app.request('/metrics')).text()).split('\n');
    assert.ok(lines.includes('taskgrid_queue_oldest_age_seconds{type="sum"} 5'));
    const body = (await (await app.request('/api/stats')).json()) as {
      types: Record<string, { oldestQueuedMs?: number }>;
    };
    assert.equal(body.types.sum?.oldestQueuedMs, 5_000);
    await watcher.close();
  });

  test('finished counters count the tasks that end while a pruning round removes others, across dispatcher restarts', async () => {
    const clock = new ManualClock();
    const grid = new FakeGrid(clock);
    const { app, watcher } = makeApp({ grid, clock });
    const ids = [1, 2, 3].map(() => grid.put({ type: 'hash' }).id);
    for (const id of ids) grid.finish(id, 'd');
    await watcher.pollOnce();
    // Between two polls: the three are pruned and one more ends (the stored count drops by 2).
    for (const id of ids) grid.prune(id);
    grid.finish(grid.put({ type: 'hash' }).id, 'd');
    await watcher.pollOnce();
    const finished = async () =>
      /taskgrid_tasks_finished_total\{type="hash",status="succeeded"\} (\d+)/.exec(
        await (await app.request('/metrics')).text(),
      )?.[1];
    assert.equal(await finished(), '4');
    // The dispatcher restarts (pruned counters from 0), then ends and prunes one more: 5.
    grid.restartDispatcher();
    const last = grid.put({ type: 'hash' }).id;
    grid.finish(last, 'd');
    grid.prune(last);
    await watcher.pollOnce();
    assert.equal(await finished(), '5');
    await watcher.close();
  });

  test('two services keep their metrics apart: no global registry', async () => {
    const one = makeApp();
    const two = makeApp();
    await one.app.request('/api/stats');
    await one.app.request('/api/stats');
    await two.app.request('/api/stats');
    const count = (text: string) =>
      /taskgrid_monitoring_http_requests_total\{method="GET",route="\/api\/stats",status="200"\} (\d+)/.exec(
        text,
      )?.[1];
    assert.equal(count(await (await one.app.request('/metrics')).text()), '2');
    assert.equal(count(await (await two.app.request('/metrics')).text()), '1');
  });
});
