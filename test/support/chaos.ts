/**
 * Shared by the chaos scenarios (test/chaos/*.test.ts): their scale and their report.
 *
 * `npm test` runs every scenario in its short form; `npm run test:chaos` (scripts/chaos.mjs)
 * runs them with TASKGRID_CHAOS_SCALE=full and collects each scenario's report from
 * TASKGRID_CHAOS_REPORT_DIR into one summary line. The short form scales the counts, never the
 * kinds of fault.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** True when the full scenarios are asked for (`npm run test:chaos`). */
export const FULL = process.env.TASKGRID_CHAOS_SCALE === 'full';

/** `short` in `npm test`, `full` under `npm run test:chaos`. */
export function scale<T>(short: T, full: T): T {
  return FULL ? full : short;
}

/** What one scenario did and found; every count is of tasks unless its name says otherwise. */
export interface ChaosReport {
  /** Short stable name, e.g. `relay-10k`, `netns-partition`, `poison`, `storage`, `hostile`, `rest`. */
  scenario: string;
  submitted: number;
  /** Submits the dispatcher acknowledged (committed). */
  acknowledged: number;
  /** Acknowledged tasks that ended with a recorded outcome (succeeded, or failed where failure is expected). */
  completed: number;
  /** Acknowledged tasks that never ended, or vanished. */
  lost: number;
  /** Tasks that ended with a result other than the right one (or the wrong status). */
  wrong: number;
  /** Tasks recorded more than once (a result committed twice, or counted twice). */
  duplicated: number;
  /** Faults injected, by kind: e.g. { loss: 0.2, dupRate: 0.05, sigkills: 2, datagrams: 100000 }. */
  faults: Record<string, number | string>;
  rssBeforeMb?: number;
  rssAfterMb?: number;
  durationMs: number;
  /** Anything else worth a line in docs/RELIABILITY.md. */
  notes?: string;
}

/** Prints the scenario's summary line and, under scripts/chaos.mjs, saves the report. */
export function report(r: ChaosReport): void {
  const line =
    `chaos[${r.scenario}]: submitted=${r.submitted} acknowledged=${r.acknowledged} ` +
    `completed=${r.completed} lost=${r.lost} wrong=${r.wrong} duplicated=${r.duplicated}`;
  process.stdout.write(`${line}\n`);
  const dir = process.env.TASKGRID_CHAOS_REPORT_DIR;
  if (dir) {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `${r.scenario}.json`), `${JSON.stringify(r, null, 2)}\n`);
  }
}
