/**
 * Authentication over real UDP: with a cluster secret, unsigned, wrongly signed, stale and
 * replayed datagrams are dropped and counted; signed traffic flows.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { AUTH_LOG_INTERVAL_MS, AUTH_LOG_LINES, authFailureLog } from '../../src/log.ts';
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

test('each datagram dropped for authentication is reported with its peer and why', async () => {
  const seen: string[] = [];
  const hooked = await createUdpTransport({
    host: '127.0.0.1',
    port: 0,
    secret: SECRET,
    onAuthFailure: (peer, reason) => seen.push(`${peer.host}:${peer.port} ${reason}`),
  });
  const open = await createUdpTransport({
    host: '127.0.0.1',
    port: 0,
    onAuthFailure: (peer, reason) => seen.push(`${peer.host}:${peer.port} ${reason}`),
  });
  const wrong = await createUdpTransport({ host: '127.0.0.1', port: 0, secret: 'another secret entirely' });
  try {
    const send = (buf: Buffer, to: Endpoint) =>
      new Promise<void>((r) => raw.send(buf, to.address.port, '127.0.0.1', () => r()));
    await send(frame(2001), hooked);
    await send(new DatagramSigner(SECRET, 30_000).sign(frame(2002), Date.now()), open);
    await assert.rejects(wrong.request(hooked.address, 'ping', {}, { timeoutMs: 200 }));
    await new Promise((r) => setTimeout(r, 50));
    const me = `127.0.0.1:${raw.address().port}`;
    const other = `127.0.0.1:${wrong.address.port} bad-signature`;
    // Two sockets in one process: the order between them is the event loop's.
    assert.deepEqual(
      seen.filter((s) => s !== other),
      [`${me} unsigned`, `${me} signed`],
      seen.join('; '),
    );
    assert.ok(seen.includes(other), seen.join('; '));
  } finally {
    await Promise.all([hooked.close(), open.close(), wrong.close()]);
  }
});

test('a component logs dropped datagrams with TG_ERR_AUTH at once, then once a minute per peer with the count', () => {
  const lines: Record<string, unknown>[] = [];
  const logger = pino(
    { level: 'info' },
    { write: (s: string) => lines.push(JSON.parse(s) as Record<string, unknown>) },
  );
  let now = 1_000_000;
  const log = authFailureLog(logger, () => now);
  const a = { host: '127.0.0.1', port: 4100 };
  log(a, 'bad-signature');
  for (let i = 0; i < 5; i++) log(a, 'bad-signature');
  log({ host: '127.0.0.1', port: 4200 }, 'unsigned');
  now += AUTH_LOG_INTERVAL_MS;
  log(a, 'bad-signature');
  assert.deepEqual(
    lines.map((l) => [l.code, l.peer, l.reason, l.dropped, l.level]),
    [
      ['TG_ERR_AUTH', '127.0.0.1:4100', 'bad-signature', 1, 40],
      ['TG_ERR_AUTH', '127.0.0.1:4200', 'unsigned', 1, 40],
      ['TG_ERR_AUTH', '127.0.0.1:4100', 'bad-signature', 6, 40],
    ],
  );
  assert.match(
    String(lines[0]!.msg),
    /from 127\.0\.0\.1:4100 that failed authentication: .*TASKGRID_SECRET differs/,
  );
});

test('a flood of forged sources logs at most AUTH_LOG_LINES lines a minute, and says how many went unlogged', () => {
  const lines: Record<string, unknown>[] = [];
  const logger = pino(
    { level: 'info' },
    { write: (s: string) => lines.push(JSON.parse(s) as Record<string, unknown>) },
  );
  let now = 5_000_000;
  const log = authFailureLog(logger, () => now);
  for (let port = 1; port <= 5000; port++) log({ host: '127.0.0.1', port }, 'unsigned');
  assert.equal(lines.length, AUTH_LOG_LINES);
  now += AUTH_LOG_INTERVAL_MS;
  log({ host: '127.0.0.1', port: 9999 }, 'unsigned');
  assert.equal(lines.length, AUTH_LOG_LINES + 1);
  assert.equal(lines.at(-1)!.othersUnlogged, 5000 - AUTH_LOG_LINES);
});
