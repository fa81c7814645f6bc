/**
 * Entry of a handler thread (started by HandlerPool, never imported). It loads every task type
 * module it is given, says `ready`, then runs the tasks the pool sends (HandlerHost), several
 * at a time when handlers are asynchronous, and sends their outcomes and progress back in
 * batches.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { ErrorCode, TaskGridError } from '../errors.ts';
import type { Handler } from './handler-api.ts';
import { HandlerHost, loadHandlers } from './handler-host.ts';
import type { FromThread, ThreadData, ToThread } from './thread-protocol.ts';

async function main(): Promise<void> {
  const port = parentPort;
  if (!port) throw new Error('src/worker/thread is the entry of a handler thread; HandlerPool starts it');
  const { files, types } = workerData as ThreadData;
  let handlers: Map<string, Handler>;
  try {
    // The types it runs: those with a module here (not the pool's inline ones).
    handlers = await loadHandlers(
      files,
      types.filter((type) => files[type] !== undefined),
    );
  } catch (err) {
    const code = err instanceof TaskGridError ? err.code : ErrorCode.CONFIG;
    const message = err instanceof Error ? err.message : String(err);
    port.postMessage({ k: 'load-error', code, message } satisfies FromThread);
    return;
  }
  const host = new HandlerHost((msg) => port.postMessage(msg), handlers, types);
  port.on('message', (msg: ToThread) => host.onMessage(msg));
  port.postMessage({ k: 'ready' } satisfies FromThread);
}

await main();
