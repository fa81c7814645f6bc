/**
 * Hostile input against a live endpoint in its own process over real UDP: random and mutated
 * datagrams, truncated frames, fragment floods. The process must not crash, its memory must
 * stay bounded, and a valid request afterwards must still be answered.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { after, test } from 'node:test';
import { createUdpTransport } from '../../src/transport/index.ts';
import { hostile, validFrames } from '../support/hostile-datagrams.ts';
import { startTs, type Child } from '../support/process.ts';

const TOTAL = 100_000;

let server: Child | undefined;
after(async () => {
  await server?.stop();
});

async function counters(child: Child) {
  child.proc.stdin!.write('counters\n');
  return child.nextJson<{ counters: Record<string, number>; rssMb: number }>((v) => 'counters' in v);
}

test(`a live endpoint survives ${TOTAL} random and mutated datagrams with bounded memory and keeps serving`, { timeout: 180_000 }, async (t) => {
  server = startTs('test/support/endpoint-server.ts');
  const { port } = await server.nextJson<{ port: number }>((v) => 'port' in v);
  const before = await counters(server);

  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  const templates = validFrames();
  const started = Date.now();
  const inBefore = before.counters.datagramsIn ?? 0;
  for (let i = 0; i < TOTAL; i++) {
    sock.send(hostile(i, templates), port, '127.0.0.1');
    // Let the receiver drain now and then: the point is to reach its parser, not the kernel's
    // drop counter. Every 1,000 datagrams, wait while it is still catching up (it reports how
    // many it has read), so that a busy machine slows the flood instead of dropping it.
    if (i % 200 === 199) await new Promise((r) => setTimeout(r, 1));
    if (i % 1000 === 999) {
      let seen = -1;
      for (;;) {
        const read = ((await counters(server)).counters.datagramsIn ?? 0) - inBefore;
        if (read >= i + 1 - 1500 || read === seen || Date.now() - started > 120_000) break;
        seen = read;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    if (Date.now() - started > 120_000) break;
  }
  await new Promise((r) => setTimeout(r, 500));
  sock.close();

  const afterFlood = await counters(server);
  t.diagnostic(`RSS before ${before.rssMb.toFixed(1)} MiB, after ${afterFlood.rssMb.toFixed(1)} MiB`);
  t.diagnostic(`counters after: ${JSON.stringify(afterFlood.counters)}`);
  assert.equal(server.proc.exitCode, null, 'the endpoint process is alive');
  const c = afterFlood.counters;
  assert.ok(c.datagramsIn! > TOTAL * 0.5, `most datagrams reached the endpoint (${c.datagramsIn})`);
  assert.ok(c.malformed! > 1000, 'malformed input was counted');
  assert.ok(c.reassemblyRejected! > 0, 'the fragment flood hit the reassembly bounds');
  // Reassembly holds at most 32 MiB and the reply cache is bounded; allow for GC slack.
  assert.ok(afterFlood.rssMb - before.rssMb < 160, `RSS grew by ${(afterFlood.rssMb - before.rssMb).toFixed(1)} MiB`);

  const client = await createUdpTransport({ host: '127.0.0.1', port: 0 });
  try {
    const reply = await client.request({ host: '127.0.0.1', port }, 'get-result', { ids: [77] }, { timeoutMs: 5000 });
    assert.deepEqual(reply.missing, [77]);
  } finally {
    await client.close();
  }
});
