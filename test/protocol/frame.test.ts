import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ProtocolError } from '../../src/errors.ts';
import { DatagramSigner, ReplayFilter } from '../../src/protocol/auth.ts';
import { decodeEnvelope, encodeEnvelope } from '../../src/protocol/envelope.ts';
import {
  AckStatus,
  decodeFrame,
  encodeAckFrame,
  encodeFragFrame,
  encodeMsgFrame,
  encodeProbeFrame,
  FrameType,
} from '../../src/protocol/frame.ts';

test('a message frame carries several envelopes and gives them back in order', () => {
  const a = encodeEnvelope({ k: 'ping', id: 1, b: {} });
  const b = encodeEnvelope({ k: 'ok', id: 2, re: 1, b: { x: 'é' } });
  const f = decodeFrame(encodeMsgFrame([{ bytes: a, tx: 3 }, b]));
  assert.ok(f.type === FrameType.MSG);
  assert.deepEqual(
    f.messages.map((m) => decodeEnvelope(m.bytes)),
    [
      { k: 'ping', id: 1, b: {} },
      { k: 'ok', id: 2, re: 1, b: { x: 'é' } },
    ],
  );
  assert.deepEqual(
    f.messages.map((m) => m.tx),
    [3, 0],
    'transmission numbers travel with their messages',
  );
});

test('fragment, ack and probe frames round-trip their fields', () => {
  const frag = decodeFrame(encodeFragFrame(0xfffffffe, 3, 9, 9000, Buffer.from('abc')));
  assert.deepEqual(
    { ...frag, data: frag.type === FrameType.FRAG ? frag.data.toString() : '' },
    {
      type: FrameType.FRAG,
      msgId: 0xfffffffe,
      index: 3,
      count: 9,
      total: 9000,
      data: 'abc',
    },
  );
  const ack = decodeFrame(encodeAckFrame(7, 100, AckStatus.PARTIAL, 40, 3, Buffer.from([0b101])));
  assert.ok(ack.type === FrameType.FRAG_ACK);
  assert.equal(ack.below, 40);
  assert.equal(ack.echo, 3);
  assert.deepEqual([...ack.bitmap], [5]);
  assert.deepEqual(decodeFrame(encodeProbeFrame(8, 100, 12)), {
    type: FrameType.PROBE,
    msgId: 8,
    count: 100,
    token: 12,
  });
});

test('every prefix of a valid frame either decodes or throws ProtocolError, byte by byte', () => {
  const frames = [
    encodeMsgFrame([
      encodeEnvelope({ k: 'ping', id: 1, b: {} }),
      encodeEnvelope({ k: 'ping', id: 2, b: {} }),
    ]),
    encodeFragFrame(1, 0, 2, 10, Buffer.from('12345')),
    encodeAckFrame(1, 2, AckStatus.PARTIAL, 0, 0, Buffer.from([1])),
    encodeProbeFrame(1, 2, 1),
  ];
  for (const full of frames) {
    for (let n = 0; n <= full.length; n++) {
      try {
        decodeFrame(full.subarray(0, n));
      } catch (err) {
        assert.ok(err instanceof ProtocolError, `prefix ${n}: ${String(err)}`);
      }
    }
  }
});

test('frames of another version, unknown type or inconsistent fragment header are refused', () => {
  const f = encodeProbeFrame(1, 2, 1);
  const v2 = Buffer.from(f);
  v2[2] = 2;
  assert.throws(() => decodeFrame(v2), /unsupported protocol version 2/);
  const t9 = Buffer.from(f);
  t9[3] = 9;
  assert.throws(() => decodeFrame(t9), /unknown frame type 9/);
  assert.throws(() => decodeFrame(encodeFragFrame(1, 5, 5, 10, Buffer.from('x'))), /bad fragment header/);
  assert.throws(() => decodeFrame(Buffer.from('{"type":"GET_STATS"}')), /not a TaskGrid frame/);
});

test('envelopes that are not objects or lack kind, id or body are refused with a reason', () => {
  const bad: [string, RegExp][] = [
    ['nope', /not valid JSON/],
    ['[1]', /not a JSON object/],
    ['{"id":1,"b":{}}', /kind/],
    ['{"k":"ping","b":{}}', /id/],
    ['{"k":"ping","id":-1,"b":{}}', /id/],
    ['{"k":"ping","id":4294967296,"b":{}}', /id/],
    ['{"k":"ok","id":1,"re":"x","b":{}}', /reply id/],
    ['{"k":"ping","id":1}', /body/],
  ];
  for (const [text, re] of bad) assert.throws(() => decodeEnvelope(Buffer.from(text)), re, text);
});

test('a signed datagram verifies; a flipped bit, a stale timestamp or another secret does not', () => {
  const signer = new DatagramSigner('s3cret', 30_000);
  const frame = encodeProbeFrame(1, 2, 3);
  const now = 1_700_000_000_000;
  const signed = signer.sign(frame, now);
  const ok = signer.verify(signed, now + 1000);
  assert.ok(ok.ok);
  assert.deepEqual(ok.frame, frame);
  const flipped = Buffer.from(signed);
  flipped[6] = flipped[6]! ^ 1;
  assert.deepEqual(signer.verify(flipped, now), { ok: false, reason: 'bad-mac' });
  assert.deepEqual(signer.verify(signed, now + 31_000), { ok: false, reason: 'stale' });
  assert.deepEqual(new DatagramSigner('other', 30_000).verify(signed, now), { ok: false, reason: 'bad-mac' });
  assert.deepEqual(signer.verify(frame, now), { ok: false, reason: 'unsigned' });
});

test('the replay filter refuses a signature seen before and stays within its bound', () => {
  const filter = new ReplayFilter(100, 30_000);
  const mac = Buffer.alloc(32, 7);
  assert.equal(filter.check(mac, 0, 0), true);
  assert.equal(filter.check(mac, 0, 1), false);
  for (let i = 0; i < 1000; i++) filter.check(Buffer.from(String(i).padStart(32, '0')), 2, 2);
  assert.ok(filter.size <= 100);
});

test('a datagram older than what the full replay filter remembers is refused, newer ones pass', () => {
  const filter = new ReplayFilter(100, 30_000);
  const mac = (i: number) => Buffer.from(String(i).padStart(32, '0'));
  // 200 datagrams signed at t = 1000..1199 ms: the first 100 are pushed out of the filter.
  for (let i = 0; i < 200; i++) assert.equal(filter.check(mac(i), 1000 + i, 1000 + i), true);
  // A replay of an evicted one, well inside the 30 s window: refused, though forgotten.
  assert.equal(filter.check(mac(5), 1005, 1300), false);
  // A remembered one: refused as before; a fresh datagram: accepted.
  assert.equal(filter.check(mac(150), 1150, 1300), false);
  assert.equal(filter.check(mac(1000), 1300, 1300), true);
  // Entries that leave by age (past twice the window) do not raise the floor.
  const aged = new ReplayFilter(100, 10);
  assert.equal(aged.check(mac(1), 0, 0), true);
  assert.equal(aged.check(mac(2), 1, 100), true);
  assert.equal(
    aged.check(mac(3), 2, 100),
    true,
    'a datagram older than the aged-out one but not forgotten by a bound',
  );
});
