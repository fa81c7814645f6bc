/**
 * Chaos: hostile input against every listening port of a real grid run with TASKGRID_SECRET
 * (nameservice, dispatcher, worker, monitoring's UDP endpoint and its HTTP port), as separate
 * processes over real UDP on loopback, while a legitimate client keeps submitting:
 * - random, mutated and truncated datagrams, wrong envelopes and fragment floods
 *   (test/support/hostile-datagrams.ts): unsigned, signed with a wrong secret, and signed with
 *   the right one (so that they reach the frame and message parsers of each component);
 * - forged registrations (new ids claiming the worker's address, the worker's own id at another
 *   address) and forged results for the client's tasks, unsigned and wrongly signed;
 * - replays, from another socket, of a legitimate signed submit captured on the wire;
 * - junk TCP connections to the monitoring HTTP port.
 * No component may crash; each one's RSS must stay bounded; no forged message may take effect;
 * the replayed submit must create no second task; and every task of the legitimate client must
 * complete with its right result.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import { test } from 'node:test';
import { TaskGridClient } from '../../src/client/index.ts';
import { DatagramSigner } from '../../src/protocol/auth.ts';
import { encodeEnvelope } from '../../src/protocol/envelope.ts';
import { encodeMsgFrame } from '../../src/protocol/frame.ts';
import { createUdpTransport } from '../../src/transport/index.ts';
import type { PeerAddress } from '../../src/transport/types.ts';
import { report, scale } from '../support/chaos.ts';
import { Grid } from '../support/grid.ts';
import { HOSTILE_KINDS, hostile, validFrames } from '../support/hostile-datagrams.ts';
import { rssMb, startTs, type Child } from '../support/process.ts';

const SECRET = `chaos-${randomBytes(16).toString('hex')}`;
const TOTAL = scale(24_000, 120_000);
const TCP_JUNK = scale(200, 2_000);
/** Most RSS growth of one component across the flood: reassembly holds at most 32 MiB, the replay and duplicate caches are bounded; the rest is GC slack. */
const RSS_GROWTH_MB = 160;

interface Target {
  name: string;
  address: PeerAddress;
  child: Child;
}

function bindSocket(): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  return new Promise((resolve) => s.bind(0, '127.0.0.1', () => resolve(s)));
}

function send(s: dgram.Socket, data: Buffer, to: PeerAddress): void {
  s.send(data, to.port, to.host, () => {});
}

/** Every task of one type in a `stats` reply, whatever its status. */
function countOf(
  s: { queued: number; running: number; succeeded: number; failed: number; cancelled: number } | undefined,
): number {
  return s ? s.queued + s.running + s.succeeded + s.failed + s.cancelled : 0;
}

const frame = (k: string, b: unknown, id = randomInt(1, 2 ** 31)) =>
  encodeMsgFrame([encodeEnvelope({ k, id, b })]);

test(
  `a grid with a secret survives ${TOTAL} hostile datagrams, forged registrations and results, replays and junk HTTP, and serves its client throughout`,
  { timeout: 600_000 },
  async (t) => {
    const began = Date.now();
    const grid = await Grid.start({
      env: { TASKGRID_SECRET: SECRET },
      workers: [{ types: ['reverse'], concurrency: 8 }],
    });
    let monitoring: Child | undefined;
    const sockets: dgram.Socket[] = [];
    let client: TaskGridClient | undefined;
    let pinger: Awaited<ReturnType<typeof createUdpTransport>> | undefined;
    try {
      monitoring = startTs('src/cli/main.ts', ['monitoring', '--port', '0'], grid.env);
      const mon = await monitoring.nextJson<{ msg: string; address: PeerAddress; udp: PeerAddress }>(
        (v) => v.msg === 'ready',
        60_000,
      );
      const http = `http://127.0.0.1:${mon.address.port}`;
      client = await TaskGridClient.connect({
        nameservers: [{ host: '127.0.0.1', port: grid.nsPort }],
        secret: SECRET,
      });
      const workers = (await client.workers()).filter((w) => w.role === 'worker');
      assert.equal(workers.length, 1);
      const worker = workers[0]!;
      const targets: Target[] = [
        { name: 'nameservice', address: { host: '127.0.0.1', port: grid.nsPort }, child: grid.nameservice },
        {
          name: 'dispatcher',
          address: { host: '127.0.0.1', port: grid.dispatcherPort },
          child: grid.dispatcher,
        },
        { name: 'worker', address: worker.address, child: grid.workers[0]! },
        { name: 'monitoring', address: mon.udp, child: monitoring },
      ];
      const rssBefore = await Promise.all(targets.map((x) => rssMb(x.child.pid)));
      const statsBefore = await client.stats();

      // ---- a legitimate signed submit, captured on the wire by a relay in front of the dispatcher
      const front = await bindSocket();
      const upstream = await bindSocket();
      sockets.push(front, upstream);
      const captured: Buffer[] = [];
      let clientPeer: PeerAddress | undefined;
      front.on('message', (m, r) => {
        clientPeer = { host: r.address, port: r.port };
        captured.push(Buffer.from(m));
        send(upstream, m, targets[1]!.address);
      });
      upstream.on('message', (m) => clientPeer && send(front, m, clientPeer));
      const viaRelay = await TaskGridClient.connect({
        dispatcher: { host: '127.0.0.1', port: front.address().port },
        nameservers: [{ host: '127.0.0.1', port: grid.nsPort }],
        secret: SECRET,
      });
      // `upper` has no worker here: the task stays queued, so its count shows any second copy.
      const probeId = await viaRelay.submit({ type: 'upper', payload: 'replay-probe' });
      await viaRelay.close();
      assert.ok(captured.length > 0, 'the relay saw the signed submit');
      const attacker = await bindSocket();
      sockets.push(attacker);
      let replays = 0;
      const replay = () => {
        for (let k = 0; k < 20; k++)
          for (const d of captured) {
            send(attacker, d, targets[1]!.address);
            replays++;
          }
      };
      replay();

      // ---- forged registrations and results, unsigned and signed with a wrong secret
      const wrong = new DatagramSigner(`not-${SECRET}`, 30_000);
      const right = new DatagramSigner(SECRET, 30_000);
      const legitIds: number[] = [];
      let forged = 0;
      const forge = () => {
        const msgs = [
          frame('register', {
            id: `forged-${randomInt(1e9)}`,
            role: 'worker',
            types: ['reverse'],
            address: worker.address,
            capacity: 100,
          }),
          frame('register', {
            id: worker.id,
            role: 'worker',
            types: ['reverse'],
            address: { host: '127.0.0.1', port: 9 },
            capacity: 1,
          }),
          frame('register', {
            role: 'dispatcher',
            types: [],
            address: { host: '127.0.0.1', port: 9 },
            capacity: 0,
          }),
          ...legitIds.slice(-5).map((id) =>
            frame('result', {
              results: [1, 2, 3].map((attempt) => ({ id, attempt, ok: true, result: 'FORGED', runMs: 1 })),
            }),
          ),
          frame('task', {
            tasks: [{ id: 1, type: 'reverse', payload: 'forged', attempt: 99, timeoutMs: 1000 }],
          }),
          frame('changes', { epoch: 'forged', seq: 1, upserted: [], removed: [worker.id] }),
        ];
        for (const m of msgs) {
          for (const x of targets) {
            send(attacker, m, x.address);
            send(attacker, wrong.sign(m, Date.now()), x.address);
            forged += 2;
          }
        }
      };

      // ---- the legitimate client keeps submitting while the flood runs
      const legit = new Map<number, string>();
      let flooding = true;
      let worstSubmitMs = 0;
      let submitFailures = 0;
      const submitter = (async () => {
        for (let n = 0; flooding; n++) {
          const payloads = Array.from(
            { length: 20 },
            (_, k) => `legit-${n}-${k}-${randomBytes(4).toString('hex')}`,
          );
          const t0 = Date.now();
          const outcomes = await client.submitMany(payloads.map((payload) => ({ type: 'reverse', payload })));
          worstSubmitMs = Math.max(worstSubmitMs, Date.now() - t0);
          outcomes.forEach((o, k) => {
            if (o.ok) {
              legit.set(o.id, payloads[k]!);
              legitIds.push(o.id);
            } else submitFailures++;
          });
          await new Promise((r) => setTimeout(r, 250));
        }
      })();

      // ---- the flood, paced by the receivers' answers to signed pings
      pinger = await createUdpTransport({ host: '127.0.0.1', port: 0, secret: SECRET });
      const ping = async (x: Target) => {
        const t0 = Date.now();
        // Any answer (monitoring's UDP endpoint answers `ping` with an error: it has no handler) shows the receiver read up to here.
        const r = await pinger!.request(x.address, 'ping', {}, { timeoutMs: 15_000 }).then(
          () => 'ok',
          (e: { code?: string }) => e.code ?? 'error',
        );
        return { r, ms: Date.now() - t0 };
      };
      const flood = await bindSocket();
      sockets.push(flood);
      const templates = validFrames();
      const classes = { unsigned: 0, wrongSecret: 0, rightSecret: 0 };
      let worstPingMs = 0;
      const pingFailures: string[] = [];
      const floodStarted = Date.now();
      for (let i = 0; i < TOTAL; i++) {
        const x = targets[i % targets.length]!;
        const slot = Math.floor(i / targets.length) % 16;
        let d: Buffer;
        if (slot < 12) d = hostile(classes.unsigned++, templates);
        else if (slot < 14) d = wrong.sign(hostile(classes.wrongSecret++, templates), Date.now());
        else d = right.sign(hostile(classes.rightSecret++, templates), Date.now());
        send(flood, d, x.address);
        if (i % 200 === 199) await new Promise((r) => setTimeout(r, 1));
        if (i % 2_000 === 1_999) {
          forge();
          const answers = await Promise.all(targets.map(ping));
          answers.forEach((a, k) => {
            worstPingMs = Math.max(worstPingMs, a.ms);
            if (a.r === 'TG_ERR_TIMEOUT') pingFailures.push(`${targets[k]!.name} at ${i}`);
          });
        }
        if (i === Math.floor(TOTAL / 2)) replay();
        if (Date.now() - floodStarted > scale(120_000, 400_000)) break;
      }
      const floodMs = Date.now() - floodStarted;
      forge();
      replay();

      // ---- junk TCP connections to the monitoring HTTP port
      const junk = (k: number) =>
        new Promise<void>((resolve) => {
          const s = net.connect(mon.address.port, '127.0.0.1');
          s.on('error', () => resolve());
          s.on('close', () => resolve());
          // A request left incomplete: the server may wait for the rest; this client does not.
          s.setTimeout(500, () => s.destroy());
          s.on('connect', () => {
            switch (k % 5) {
              case 0:
                s.end(randomBytes(randomInt(1, 4096)));
                break;
              case 1:
                s.end(`GET /${'a'.repeat(20_000)} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
                break;
              case 2:
                s.end(`GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Junk: ${'b'.repeat(100_000)}\r\n\r\n`);
                break;
              case 3:
                s.end(
                  'POST /api/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 999999999\r\n\r\n{"type":',
                );
                break;
              default:
                s.write('GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n'); // never finished
                setTimeout(() => s.destroy(), 100);
            }
          });
        });
      for (let k = 0; k < TCP_JUNK; k += 50)
        await Promise.all(Array.from({ length: 50 }, (_, j) => junk(k + j)));

      flooding = false;
      await submitter;
      await new Promise((r) => setTimeout(r, 500));

      // ---- what the flood left behind
      for (const x of targets) assert.equal(x.child.proc.exitCode, null, `${x.name} is still running`);
      const rssAfter = await Promise.all(targets.map((x) => rssMb(x.child.pid)));
      targets.forEach((x, k) =>
        t.diagnostic(
          `${x.name} RSS before ${rssBefore[k]!.toFixed(1)} MiB, after ${rssAfter[k]!.toFixed(1)} MiB`,
        ),
      );
      const health = await fetch(`${http}/healthz`);
      assert.equal(health.status, 200, 'monitoring still serves HTTP');
      const apiHealth = await fetch(`${http}/api/health`);
      assert.equal(apiHealth.status, 200, 'monitoring still reaches the grid');

      const views = await client.wait([...legit.keys()], { timeoutMs: 120_000 });
      let completed = 0;
      let wrongResults = 0;
      for (const v of views) {
        if (v.status === 'succeeded' && v.result === legit.get(v.id)!.split('').reverse().join(''))
          completed++;
        else wrongResults++;
      }
      const instances = await client.workers();
      const stats = await client.stats();
      const probe = await client.result(probeId);
      const dispatcherCounters = stats.transport;
      t.diagnostic(
        `flood of ${TOTAL} datagrams took ${floodMs} ms (${JSON.stringify(classes)}); worst ping ${worstPingMs} ms, worst submit ${worstSubmitMs} ms`,
      );
      t.diagnostic(`dispatcher transport counters: ${JSON.stringify(dispatcherCounters)}`);
      const upperTasks = countOf(stats.types.upper);
      const upperBefore = countOf(statsBefore.types.upper);

      report({
        scenario: 'hostile',
        submitted: legit.size + submitFailures + 1,
        acknowledged: legit.size + 1,
        completed: completed + (probe.status === 'queued' ? 1 : 0),
        lost: legit.size - views.length,
        wrong: wrongResults,
        duplicated: Math.max(0, upperTasks - upperBefore - 1),
        faults: {
          datagrams: TOTAL,
          unsigned: classes.unsigned,
          wrongSecret: classes.wrongSecret,
          signedJunk: classes.rightSecret,
          forged,
          replays,
          tcpJunk: TCP_JUNK,
          hostileKinds: HOSTILE_KINDS,
        },
        rssBeforeMb: Math.round(rssBefore.reduce((a, b) => a + b, 0)),
        rssAfterMb: Math.round(rssAfter.reduce((a, b) => a + b, 0)),
        durationMs: Date.now() - began,
        notes: `targets nameservice, dispatcher, worker, monitoring (UDP + HTTP); worst legit submit ${worstSubmitMs} ms; RSS MiB ${targets.map((x, k) => `${x.name} ${rssBefore[k]!.toFixed(0)}->${rssAfter[k]!.toFixed(0)}`).join(', ')}`,
      });

      // Nothing forged took effect.
      assert.deepEqual(
        instances.filter((i) => i.id.startsWith('forged-') || i.address.port === 9).map((i) => i.id),
        [],
        'no forged registration was accepted',
      );
      assert.deepEqual(
        instances.find((i) => i.id === worker.id)?.address,
        worker.address,
        'the worker keeps its address',
      );
      assert.equal(probe.status, 'queued');
      assert.equal(upperTasks - upperBefore, 1, 'the replayed submit created no second task');
      assert.ok((dispatcherCounters.replays ?? 0) > 0, 'the dispatcher counted the replays it dropped');
      assert.ok(
        (dispatcherCounters.authFailures ?? 0) > 0,
        'the dispatcher counted the unsigned and wrongly signed datagrams',
      );
      // The client was served throughout, and every one of its tasks completed rightly.
      assert.ok(legit.size >= 20, `the client's submits were acknowledged during the flood (${legit.size})`);
      assert.equal(submitFailures, 0, 'no legitimate submit was refused');
      assert.deepEqual(
        pingFailures,
        [],
        'every component answered a signed ping after each round of the flood',
      );
      assert.equal(views.length, legit.size);
      assert.equal(wrongResults, 0, 'no task ended with a wrong (forged) result');
      assert.equal(completed, legit.size);
      targets.forEach((x, k) =>
        assert.ok(
          rssAfter[k]! - rssBefore[k]! < RSS_GROWTH_MB,
          `${x.name} RSS grew ${(rssAfter[k]! - rssBefore[k]!).toFixed(1)} MiB`,
        ),
      );
    } finally {
      for (const s of sockets) s.close();
      await pinger?.close();
      await client?.close();
      await monitoring?.stop(5_000);
      await grid.stop();
    }
  },
);
