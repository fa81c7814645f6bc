/**
 * TaskGrid+ messages cannot be signed: with a cluster secret they are refused (dropped and
 * counted as auth failures) unless TASKGRID_ALLOW_LEGACY=1, which the startup log warns about.
 * Over real UDP on loopback, then with the real component processes.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { after, before, describe, test } from 'node:test';
import { legacyPolicy, LegacyNameservice } from '../../src/legacy/index.ts';
import { encodeLegacy } from '../../src/legacy/wire.ts';
import { Nameservice } from '../../src/nameservice/nameservice.ts';
import { createUdpTransport, type Endpoint } from '../../src/transport/index.ts';
import { Grid } from '../support/grid.ts';

const SECRET = 'correct horse battery staple';

/** A TaskGrid+ program's socket: sends JSON, collects what comes back. */
class RawSocket {
  readonly socket = dgram.createSocket('udp4');
  readonly replies: Record<string, unknown>[] = [];

  async open(): Promise<this> {
    this.socket.on('message', (m) =>
      this.replies.push(JSON.parse(m.toString('utf8')) as Record<string, unknown>),
    );
    await new Promise<void>((r) => this.socket.bind(0, '127.0.0.1', () => r()));
    return this;
  }

  send(port: number, type: string, data: unknown): Promise<void> {
    return new Promise((r) => this.socket.send(encodeLegacy(type, data), port, '127.0.0.1', () => r()));
  }

  async next(timeoutMs = 3_000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    while (this.replies.length === 0) {
      if (Date.now() > deadline) throw new Error('no reply');
      await new Promise((r) => setTimeout(r, 10));
    }
    return this.replies.shift()!;
  }

  close(): Promise<void> {
    return new Promise((r) => this.socket.close(() => r()));
  }
}

async function until(pred: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 3_000;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('the legacy policy', () => {
  test('without a secret TaskGrid+ is served; with one only when allowed, and then with a warning', () => {
    assert.deepEqual(legacyPolicy({ secret: undefined, allowLegacy: false }), {
      serve: true,
      allowUnsigned: false,
      log: undefined,
    });
    const refused = legacyPolicy({ secret: SECRET, allowLegacy: false });
    assert.equal(refused.serve, false);
    assert.equal(refused.allowUnsigned, false);
    assert.equal(refused.log?.level, 'info');
    const allowed = legacyPolicy({ secret: SECRET, allowLegacy: true });
    assert.equal(allowed.serve, true);
    assert.equal(allowed.allowUnsigned, true);
    assert.equal(allowed.log?.level, 'warn');
    assert.match(allowed.log?.message ?? '', /TASKGRID_ALLOW_LEGACY=1/);
  });
});

describe('a nameservice with a cluster secret, over real UDP', () => {
  const started: { ns: Nameservice; legacy: LegacyNameservice; transport: Endpoint }[] = [];
  async function start(allowUnsignedRaw: boolean) {
    const transport = await createUdpTransport({
      host: '127.0.0.1',
      port: 0,
      secret: SECRET,
      allowUnsignedRaw,
    });
    const ns = new Nameservice({ transport });
    const legacy = new LegacyNameservice({ transport, registry: ns });
    legacy.start();
    const s = { ns, legacy, transport };
    started.push(s);
    return s;
  }
  let raw: RawSocket;
  before(async () => {
    raw = await new RawSocket().open();
  });
  after(async () => {
    await raw.close();
    for (const s of started) {
      s.legacy.close();
      s.ns.close();
      await s.transport.close();
    }
  });

  test('refuses TaskGrid+ datagrams and counts them as auth failures', async () => {
    const { transport, ns } = await start(false);
    await raw.send(transport.address.port, 'REGISTER_WORKER', { type: 'reverse' });
    await until(() => transport.counters().authFailures === 1, 'the datagram to be counted');
    const c = transport.counters();
    assert.equal(c.rawIn, 0, 'it never reached the adapter');
    assert.equal(c.datagramsOut, 0, 'nothing was answered');
    assert.equal(ns.instances().length, 0, 'nothing was registered');
    assert.equal(raw.replies.length, 0);
  });

  test('serves them when unsigned TaskGrid+ datagrams are allowed', async () => {
    const { transport, ns } = await start(true);
    await raw.send(transport.address.port, 'REGISTER_WORKER', { type: 'reverse' });
    assert.deepEqual(await raw.next(), {
      type: 'RESPONSE',
      data: { message: 'Registered reverse at 127.0.0.1:6000' },
    });
    assert.equal(ns.instances({ type: 'reverse' }).length, 1);
    assert.equal(transport.counters().authFailures, 0);
    // v1 traffic still needs the secret.
    const stranger = await createUdpTransport({ host: '127.0.0.1', port: 0 });
    try {
      await assert.rejects(stranger.request(transport.address, 'list', {}, { timeoutMs: 300 }), {
        code: 'TG_ERR_TIMEOUT',
      });
    } finally {
      await stranger.close();
    }
  });
});

describe('component processes with a cluster secret', () => {
  let refusing: Grid | undefined;
  let allowing: Grid | undefined;
  let raw: RawSocket;
  before(async () => {
    raw = await new RawSocket().open();
    // Both grids start at once: starting processes is most of this suite's time.
    const [a, b] = await Promise.allSettled([
      Grid.start({ env: { TASKGRID_SECRET: SECRET } }),
      Grid.start({ env: { TASKGRID_SECRET: SECRET, TASKGRID_ALLOW_LEGACY: '1' } }),
    ]);
    refusing = a.status === 'fulfilled' ? a.value : undefined;
    allowing = b.status === 'fulfilled' ? b.value : undefined;
    for (const r of [a, b]) if (r.status === 'rejected') throw r.reason;
  });
  after(async () => {
    await raw.close();
    await Promise.all([refusing?.stop(), allowing?.stop()]);
  });

  test('refuse TaskGrid+ messages and say so at start', async () => {
    const g = refusing!;
    const line = await g.dispatcher.nextJson<{ level: number; msg: string }>((v) =>
      /TaskGrid\+ messages are refused/.test(v.msg),
    );
    assert.equal(line.level, 30);
    await raw.send(g.dispatcherPort, 'POST_TASK', { type: 'reverse', payload: 'Hello' });
    await raw.send(g.nsPort, 'LIST_WORKERS', {});
    // Signed v1 requests sent after them are answered after they were handled (each port reads in order).
    const v1 = await createUdpTransport({ host: '127.0.0.1', port: 0, secret: SECRET });
    try {
      await v1.request({ host: '127.0.0.1', port: g.nsPort }, 'list', {});
      await v1.request({ host: '127.0.0.1', port: g.dispatcherPort }, 'ping', {});
    } finally {
      await v1.close();
    }
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(raw.replies, []);
  });

  test('serve them with TASKGRID_ALLOW_LEGACY=1, and warn at start', async () => {
    const g = allowing!;
    for (const child of [g.nameservice, g.dispatcher]) {
      const line = await child.nextJson<{ level: number; msg: string }>((v) =>
        /TASKGRID_ALLOW_LEGACY=1/.test(v.msg),
      );
      assert.equal(line.level, 40, 'a warning');
    }
    await raw.send(g.dispatcherPort, 'POST_TASK', { type: 'reverse', payload: 'Hello' });
    const reply = (await raw.next()) as { type: string; data: { message?: string } };
    assert.equal(reply.type, 'RESPONSE');
    assert.match(String(reply.data.message), /^Task received, ID = \d+$/);
  });
});
