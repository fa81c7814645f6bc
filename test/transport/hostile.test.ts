/**
 * Hostile input against a live endpoint in its own process over real UDP: random and mutated
 * datagrams, truncated frames, fragment floods. The process must not crash, its memory must
 * stay bounded, and a valid request afterwards must still be answered.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import dgram from 'node:dgram';
import { after, test } from 'node:test';
import { encodeEnvelope } from '../../src/protocol/envelope.ts';
import {
  AckStatus,
  encodeAckFrame,
  encodeFragFrame,
  encodeMsgFrame,
  encodeProbeFrame,
} from '../../src/protocol/frame.ts';
import { createUdpTransport } from '../../src/transport/index.ts';
import { startTs, type Child } from '../support/process.ts';

const TOTAL = 100_000;

function validFrames(): Buffer[] {
  return [
    encodeMsgFrame([encodeEnvelope({ k: 'ping', id: 1, b: {} })]),
    encodeMsgFrame([encodeEnvelope({ k: 'get-result', id: 2, b: { ids: [1, 2, 3] } })]),
    encodeMsgFrame([encodeEnvelope({ k: 'submit', id: 3, b: { tasks: [{ type: 'reverse', payload: 'x' }] } })]),
    encodeMsgFrame([encodeEnvelope({ k: 'ok', id: 4, re: 9, b: {} })]),
    encodeFragFrame(5, 0, 3, 3000, randomBytes(1000)),
    encodeAckFrame(6, 10, AckStatus.PARTIAL, 3, 0, Buffer.from([0xff])),
    encodeProbeFrame(7, 10, 1),
  ];
}

/** One hostile datagram: random bytes, a mutated valid frame, a weird envelope or a fragment flood. */
function hostile(i: number, templates: Buffer[]): Buffer {
  switch (i % 8) {
    case 0:
      return randomBytes(randomInt(0, 1400));
    case 1: {
      const b = Buffer.from(templates[i % templates.length]!);
      for (let k = 0; k < 1 + (i % 5); k++) b[randomInt(0, b.length)] = randomInt(0, 256);
      return b;
    }
    case 2: {
      const b = templates[i % templates.length]!;
      return b.subarray(0, randomInt(0, b.length));
    }
    case 3: {
      // Well-formed frames whose envelopes are wrong in every way.
      const weird: unknown[] = [
        { k: 'submit', id: randomInt(0, 2 ** 32), b: { tasks: 'nope' } },
        { k: 'x'.repeat(100), id: 1, b: {} },
        { k: 'cancel', id: -1, b: { id: 1 } },
        { k: '__proto__', id: 5, b: {} },
        { k: 'constructor', id: 6, b: {} },
        { k: 'lookup', id: randomInt(0, 2 ** 32), b: { type: '../../etc/passwd' } },
        [1, 2, 3],
        'string',
        null,
      ];
      const env = weird[i % weird.length];
      return encodeMsgFrame([Buffer.from(JSON.stringify(env) ?? 'null')]);
    }
    case 4:
    case 5:
      // Fragment flood: many messages that never complete, some claiming huge sizes.
      return encodeFragFrame(randomInt(0, 2 ** 32), randomInt(0, 900), 900, 900 * 1100, randomBytes(1100));
    case 6:
      return encodeFragFrame(randomInt(0, 2 ** 32), 0, 60_000, 2 ** 31, randomBytes(1000));
    default:
      return randomInt(0, 2) === 0
        ? encodeAckFrame(randomInt(0, 2 ** 32), randomInt(0, 2 ** 20), randomInt(0, 3) as AckStatus, 0, 0, randomBytes(20))
        : encodeProbeFrame(randomInt(0, 2 ** 32), randomInt(0, 2 ** 20), randomInt(0, 2 ** 32));
  }
}

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
