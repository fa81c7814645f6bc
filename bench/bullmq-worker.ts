/**
 * A BullMQ worker process for the side-by-side benchmark (bench/main.ts): it runs the same
 * `reverse` handler as TaskGrid's workers (imported from worker_types/reverse.ts) on the jobs
 * of one queue.
 *
 *   node --import tsx bench/bullmq-worker.ts <redis port> <queue> <concurrency>
 *
 * Prints {"msg":"ready"} once connected; closes the worker and exits on SIGTERM or when stdin
 * closes (its parent is gone).
 */
import { Worker, type Job } from 'bullmq';
import { createInterface } from 'node:readline';
import { handle as reverse } from '../worker_types/reverse.ts';

const [port, queue, concurrency] = process.argv.slice(2);
if (!port || !queue || !concurrency) {
  console.error('usage: bench/bullmq-worker.ts <redis port> <queue> <concurrency>');
  process.exit(2);
}

const worker = new Worker(
  queue,
  (job: Job<{ payload: string }>) => Promise.resolve(reverse(job.data.payload)),
  {
    connection: { host: '127.0.0.1', port: Number(port), maxRetriesPerRequest: null },
    concurrency: Number(concurrency),
  },
);
worker.on('error', (err) => console.error(err));
await worker.waitUntilReady();
console.log(JSON.stringify({ msg: 'ready', pid: process.pid }));

let stopping = false;
function stop(): void {
  if (stopping) return;
  stopping = true;
  void worker.close().then(() => process.exit(0));
}
process.on('SIGTERM', stop);
createInterface({ input: process.stdin }).on('close', stop);
