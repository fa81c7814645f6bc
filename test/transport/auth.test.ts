/**
 * Authentication over real UDP: with a cluster secret, unsigned, wrongly signed, stale and
 * replayed datagrams are dropped and counted; signed traffic flows.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { after, before, test } from 'node:test';
import { DatagramSigner } from '../../src/protocol/auth.ts';
import { encodeEnvelope } from '../../src/protocol/envelope.ts';
import { encodeMsgFrame } from '../../src/protocol/frame.ts';
import { createUdpTransport, type Endpoint } from '../../src/transport/index.ts';

const SECRET = 'correct horse battery staple';
let server: Endpoint;
let raw: dgram.Socket;
let handled = 0;

before(async () => {
  server = await createUdpTransport({ host: '127.0.0.1', port: 0, secret: SECRET });
  server.handle('get-result', ({ ids }) => {
    handled++;
    return { tasks: [], missing: ids };
  });
  raw = dgram.createSocket('udp4');
  await new Promise<void>((r) => raw.bind(0, '127.0.0.1', () => r()));
});
after(async () => {
  await server.close();
  raw.close();
});

function frame(id: number): Buffer {
  return encodeMsgFrame([encodeEnvelope({ k: 'get-result', id, b: { ids: [id] } })]);
}

async function sendRaw(buf: Buffer): Promise<void> {
  await new Promise<void>((r) => raw.send(buf, server.address.port, '127.0.0.1', () => r()));
  await new Promise((r) => setTimeout(r, 50));
}

test('endpoints sharing the secret exchange signed requests', async () => {
  const client = await createUdpTransport({ host: '127.0.0.1', port: 0, secret: SECRET });
  try {
    const reply = await client.request(server.address, 'get-result', { ids: [5] });
    assert.deepEqual(reply.missing, [5]);
    assert.equal(client.authenticated, true);
  } finally {
    await client.close();
  }
});

test('a client without the secret is dropped and counted, and times out', async () => {
  const client = await createUdpTransport({ host: '127.0.0.1', port: 0 });
  const failuresBefore = server.counters().authFailures;
  try {
    await assert.rejects(client.request(server.address, 'get-result', { ids: [6] }, { timeoutMs: 300 }), {
      code: 'TG_ERR_TIMEOUT',
    });
    assert.ok(server.counters().authFailures > failuresBefore);
  } finally {
    await client.close();
  }
});

test('a client with a wrong secret is dropped and counted', async () => {
  const client = await createUdpTransport({ host: '127.0.0.1', port: 0, secret: 'wrong' });
  const failuresBefore = server.counters().authFailures;
  try {
    await assert.rejects(client.request(server.address, 'get-result', { ids: [7] }, { timeoutMs: 300 }), {
      code: 'TG_ERR_TIMEOUT',
    });
    assert.ok(server.counters().authFailures > failuresBefore);
  } finally {
    await client.close();
  }
});

test('a signed datagram replayed is dropped and counted, and its handler ran once', async () => {
  const signed = new DatagramSigner(SECRET, 30_000).sign(frame(1001), Date.now());
  const handledBefore = handled;
  const replaysBefore = server.counters().replays;
  await sendRaw(signed);
  await sendRaw(signed);
  await sendRaw(signed);
  assert.equal(handled - handledBefore, 1);
  assert.equal(server.counters().replays - replaysBefore, 2);
});

test('a signed datagram older than the window is dropped as a replay', async () => {
  const stale = new DatagramSigner(SECRET, 30_000).sign(frame(1002), Date.now() - 5 * 60_000);
  const handledBefore = handled;
  const replaysBefore = server.counters().replays;
  await sendRaw(stale);
  assert.equal(handled, handledBefore);
  assert.equal(server.counters().replays - replaysBefore, 1);
});

test('a tampered signed datagram is dropped and counted', async () => {
  const signed = new DatagramSigner(SECRET, 30_000).sign(frame(1003), Date.now());
  signed[20] = (signed[20]! ^ 0x01) & 0xff;
  const handledBefore = handled;
  const failuresBefore = server.counters().authFailures;
  await sendRaw(signed);
  assert.equal(handled, handledBefore);
  assert.equal(server.counters().authFailures - failuresBefore, 1);
});

test('an unsigned frame and a TaskGrid+ JSON datagram are dropped and counted', async () => {
  const handledBefore = handled;
  const failuresBefore = server.counters().authFailures;
  await sendRaw(frame(1004));
  await sendRaw(Buffer.from(JSON.stringify({ type: 'GET_STATS', data: {} })));
  assert.equal(handled, handledBefore);
  assert.equal(server.counters().authFailures - failuresBefore, 2);
});
