/**
 * The system tools some monitoring tests need: Debian's `chromium` and `promtool` (from the
 * `prometheus` package). CI installs them (.ci/run); on a developer machine without them the
 * tests fail with the command that installs them, rather than skipping in silence.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';

/** The line that installs every tool these tests need (Debian, as root). */
export const APT_LINE = 'apt-get update && apt-get install -y --no-install-recommends chromium prometheus';

export const CHROMIUM = '/usr/bin/chromium';
export const PROMTOOL = '/usr/bin/promtool';

/** Throws a clear error when `path` is missing. */
export function requireTool(path: string, what: string): void {
  if (!existsSync(path)) {
    throw new Error(`${what} (${path}) is not installed; install it with: ${APT_LINE}`);
  }
}

/** Runs `promtool check metrics` on `text`; resolves with its exit code and output. */
export function promtoolCheck(text: string): Promise<{ code: number | null; output: string }> {
  requireTool(PROMTOOL, 'promtool');
  return new Promise((resolve, reject) => {
    const p = spawn(PROMTOOL, ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (output += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (output += d));
    p.on('error', reject);
    p.on('exit', (code) => resolve({ code, output }));
    p.stdin.end(text);
  });
}
