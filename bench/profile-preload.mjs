// Preloaded with `--import` (NODE_OPTIONS) by bench/profile-grid.ts: Node 20 refuses
// --cpu-prof in NODE_OPTIONS, so this starts the V8 profiler of the main thread itself and
// writes <TASKGRID_PROFILE_DIR>/<pid>.cpuprofile when the process exits.
import { Session } from 'node:inspector';
import { writeFileSync } from 'node:fs';
import { isMainThread } from 'node:worker_threads';

const dir = process.env.TASKGRID_PROFILE_DIR;
if (dir && isMainThread) {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 200 });
  session.post('Profiler.start');
  process.on('exit', () => {
    session.post('Profiler.stop', (err, res) => {
      if (!err) writeFileSync(`${dir}/${process.pid}.cpuprofile`, JSON.stringify(res.profile));
    });
  });
}

// TASKGRID_MEMORY_DIR: every second, <dir>/<pid>.mem gets process.memoryUsage() as JSON.
const memDir = process.env.TASKGRID_MEMORY_DIR;
if (memDir && isMainThread) {
  const { writeFileSync: write } = await import('node:fs');
  setInterval(
    () => write(`${memDir}/${process.pid}.mem`, JSON.stringify(process.memoryUsage())),
    1000,
  ).unref();
}
