/**
 * The in-place writers and reader the endpoint's hot path uses agree byte for byte with the
 * plain encoders: envelopes written from their parts, MSG frames built entry by entry and read
 * back in place, datagrams signed in place.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ProtocolError } from '../../src/errors.ts';
import { DatagramSigner, TRAILER_BYTES } from '../../src/protocol/auth.ts';
import {
  encodeEnvelope,
  envelopeJson,
  envelopePrefix,
  envelopeSize,
  parseEnvelope,
  writeEnvelope,
} from '../../src/protocol/envelope.ts';
import {
  decodeFrame,
  encodeMsgFrame,
  encodeProbeFrame,
  FrameType,
  MSG_ENTRY_HEADER_BYTES,
  MsgFrameReader,
  writeMsgEntryHeader,
  writeMsgFrameHeader,
} from '../../src/protocol/frame.ts';

const cases: { k: string; id: number; re?: number; b: unknown }[] = [
  { k: 'ping', id: 0, b: {} },
  { k: 'get-result', id: 4294967295, b: { ids: [1, 2, 3], waitMs: 10 } },
  { k: 'ok', id: 9, re: 1234567890, b: { tasks: [], missing: [5] } },
  { k: 'error', id: 10, re: 0, b: { code: 'TG_ERR_NOT_FOUND', message: 'é "quoted" \u2028 ✓ 𝄞' } },
  { k: 'ok', id: 11, re: 3, b: undefined },
  { k: 'we"ird\\kind', id: 12, b: [null, true, 1.5e300] },
];

test('an envelope written from its parts is byte for byte JSON.stringify of the envelope', () => {
  for (const c of cases) {
    const expected = encodeEnvelope(
      c.re === undefined ? { k: c.k, id: c.id, b: c.b } : { k: c.k, id: c.id, re: c.re, b: c.b },
    );
    const body = JSON.stringify(c.b) as string | undefined;
    const prefix = envelopePrefix(c.k);
    const size = envelopeSize(prefix, c.id, c.re, body, true);
    assert.equal(size, expected.length, `exact size of ${c.k}`);
    assert.ok(envelopeSize(prefix, c.id, c.re, body, false) >= size, 'the cheap bound is an upper bound');
    const buf = Buffer.alloc(size + 8, 0xee);
    const end = writeEnvelope(buf, 3, prefix, c.id, c.re, body);
    assert.equal(end, 3 + size);
    assert.deepEqual(buf.subarray(3, end), expected);
    assert.equal(buf[end], 0xee, 'nothing written past the end');
    assert.equal(envelopeJson(c.k, c.id, c.b, c.re), expected.toString('utf8'));
  }
});

test('a MSG frame built entry by entry decodes like an encoded one, and the reader gives back every message', () => {
  const messages = cases
    .slice(0, 4)
    .map((c, i) => ({ bytes: Buffer.from(envelopeJson(c.k, c.id, c.b, c.re)), tx: i * 100 }));
  const buf = Buffer.alloc(2000);
  let off = writeMsgFrameHeader(buf);
  for (const m of messages) {
    writeMsgEntryHeader(buf, off, m.bytes.length, m.tx);
    m.bytes.copy(buf, off + MSG_ENTRY_HEADER_BYTES);
    off += MSG_ENTRY_HEADER_BYTES + m.bytes.length;
  }
  const frame = buf.subarray(0, off);
  assert.deepEqual(frame, encodeMsgFrame(messages));
  const decoded = decodeFrame(frame);
  assert.ok(decoded.type === FrameType.MSG);
  assert.deepEqual(
    decoded.messages.map((m) => m.tx),
    [0, 100, 200, 255],
    'transmission numbers saturate at 255',
  );
  const reader = new MsgFrameReader();
  reader.reset(frame);
  assert.equal(reader.count, 4);
  const read: { env: unknown; tx: number }[] = [];
  while (reader.next())
    read.push({ env: parseEnvelope(frame.toString('utf8', reader.start, reader.end)), tx: reader.tx });
  assert.deepEqual(
    read.map((r) => r.env),
    messages.map((m) => JSON.parse(m.bytes.toString()) as unknown),
  );
  assert.deepEqual(
    read.map((r) => r.tx),
    [0, 100, 200, 255],
  );
});

test('the frame reader refuses every truncated prefix of a MSG frame before giving any message, byte by byte', () => {
  const full = encodeMsgFrame([
    Buffer.from('{"k":"ping","id":1,"b":{}}'),
    Buffer.from('{"k":"ping","id":2,"b":{}}'),
  ]);
  const reader = new MsgFrameReader();
  for (let n = 0; n < full.length; n++) {
    const prefix = full.subarray(0, n);
    let threw = false;
    try {
      reader.reset(prefix);
    } catch (err) {
      threw = true;
      assert.ok(err instanceof ProtocolError, `prefix ${n}: ${String(err)}`);
    }
    // A prefix that ends exactly after the first message is itself a whole frame.
    if (!threw) assert.equal(reader.count, 1, `prefix ${n} read as a whole frame`);
  }
  assert.throws(() => reader.reset(encodeProbeFrame(1, 2, 3)), ProtocolError);
});

test('a datagram signed in place verifies exactly as one signed by copy', () => {
  const signer = new DatagramSigner('s3cret', 30_000);
  const frame = encodeMsgFrame([Buffer.from('{"k":"ping","id":1,"b":{}}')]);
  const now = 1_700_000_000_000;
  const room = Buffer.alloc(frame.length + TRAILER_BYTES);
  frame.copy(room);
  const len = signer.signInPlace(room, frame.length, now);
  assert.equal(len, frame.length + TRAILER_BYTES);
  assert.deepEqual(room, signer.sign(frame, now));
  const v = signer.verify(room, now);
  assert.ok(v.ok);
  assert.deepEqual(v.frame, frame);
  assert.throws(() => signer.signInPlace(Buffer.alloc(10), 10, now), RangeError);
});
