/**
 * examples/python/taskgrid_client.py, a protocol v1 client written from docs/PROTOCOL.md alone,
 * against a real grid: without a secret and with one (signed datagrams). It keeps the document
 * honest: what it needs to know to talk to the grid, the document says.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { Grid } from '../support/grid.ts';
import { ROOT } from '../support/process.ts';

const python = spawnSync('python3', ['--version']).status === 0;

function runClient(env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn('python3', [join(ROOT, 'examples', 'python', 'taskgrid_client.py')], {
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 60_000,
    });
    let out = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
    p.on('exit', (code) => resolve({ code, out }));
  });
}

for (const secret of [undefined, 'python-example-secret-0123456789']) {
  test(
    `the Python example client submits, gets pushes and polls, and sends fragments ${secret ? 'with' : 'without'} a secret`,
    { timeout: 120_000, skip: python ? false : 'python3 is not installed' },
    async () => {
      const grid = await Grid.start({
        workers: [{ types: ['reverse'] }],
        ...(secret ? { env: { TASKGRID_SECRET: secret } } : {}),
      });
      try {
        const { code, out } = await runClient({
          TASKGRID_NAMESERVICE: `127.0.0.1:${grid.nsPort}`,
          ...(secret ? { TASKGRID_SECRET: secret } : {}),
        });
        assert.equal(code, 0, out);
        assert.match(out, new RegExp(`^dispatcher 127\\.0\\.0\\.1:${grid.dispatcherPort}$`, 'm'));
        assert.match(out, /^pushed \d+ succeeded olleH$/m);
        assert.match(out, /^polled \d+ succeeded cba$/m);
        assert.match(out, /^large \d+ succeeded 200001 correct$/m);
        assert.match(out, /^refused TG_ERR_UNKNOWN_TYPE$/m);
      } finally {
        await grid.stop();
      }
    },
  );
}
