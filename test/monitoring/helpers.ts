/**
 * Shared pieces of the monitoring tests: an app over the fake grid, workers.json entries, and
 * readers for JSON bodies and event streams.
 */
import type { WorkerTypeEntry } from '../../src/config/workers.ts';
import { createApp, type MonitoringDeps } from '../../src/monitoring/app.ts';
import type { ApiError } from '../../src/monitoring/schemas.ts';
import type { WireError } from '../../src/protocol/messages.ts';
import { FakeGrid, ManualClock } from './fake-grid.ts';

/** workers.json of the tests: the five built-in types and an inactive one. */
export const ENTRIES: readonly WorkerTypeEntry[] = [
  ...['reverse', 'sum', 'hash', 'upper', 'wait'].map((name) => ({
    name,
    active: true,
    description: `The ${name} type.`,
    replicas: 1,
    concurrency: 4,
    timeoutMs: 30_000,
    maxAttempts: 3,
    inline: false,
  })),
  {
    name: 'shout',
    active: false,
    description: 'Not running.',
    replicas: 1,
    concurrency: 4,
    timeoutMs: undefined,
    maxAttempts: undefined,
    inline: false,
  },
];

/** An app over a fresh fake grid (or the one given), with a manual clock. */
export function makeApp(deps: Partial<MonitoringDeps> & { grid?: FakeGrid; clock?: ManualClock } = {}) {
  const clock = deps.clock ?? new ManualClock();
  const grid = deps.grid ?? new FakeGrid(clock);
  const parts = createApp({ version: '0.1.0', workerTypes: () => ENTRIES, ...deps, grid, clock });
  return { ...parts, grid, clock };
}

/** The body of a response as JSON of the type the API documents for it. */
export async function body<T>(res: Response): Promise<T> {
  return (await res.json()) as T;
}

/** The `error` of an error answer. */
export async function errorOf(res: Response): Promise<WireError> {
  return (await body<ApiError>(res)).error;
}

/** One event of a stream. */
export interface StreamEvent {
  event: string;
  data: string;
  id?: string;
}

/** Reads events from an event-stream response as they come. */
export class EventReader {
  readonly #reader: ReadableStreamDefaultReader<string>;
  #buffer = '';

  constructor(res: Response) {
    if (!res.body) throw new Error('no body');
    this.#reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  }

  /** The next event (comments skipped); rejects after `timeoutMs`. */
  async next(timeoutMs = 5_000): Promise<StreamEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const end = this.#buffer.indexOf('\n\n');
      if (end >= 0) {
        const block = this.#buffer.slice(0, end);
        this.#buffer = this.#buffer.slice(end + 2);
        const ev: StreamEvent = { event: 'message', data: '' };
        for (const line of block.split('\n')) {
          if (line.startsWith('event:')) ev.event = line.slice(6).trim();
          else if (line.startsWith('data:')) ev.data += line.slice(5).replace(/^ /, '');
          else if (line.startsWith('id:')) ev.id = line.slice(3).trim();
        }
        if (ev.data !== '') return ev;
        continue;
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no event within ${timeoutMs} ms`);
      let timer: NodeJS.Timeout | undefined;
      const chunk = await Promise.race([
        this.#reader.read(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no event within ${timeoutMs} ms`)), left);
        }),
      ]).finally(() => clearTimeout(timer));
      if (chunk.done) throw new Error('the stream ended');
      this.#buffer += chunk.value;
    }
  }

  /** The next event of kind `event`, skipping others. */
  async nextOf(event: string, timeoutMs = 5_000): Promise<StreamEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const ev = await this.next(Math.max(1, deadline - Date.now()));
      if (ev.event === event) return ev;
    }
  }

  async close(): Promise<void> {
    await this.#reader.cancel().catch(() => undefined);
  }
}
