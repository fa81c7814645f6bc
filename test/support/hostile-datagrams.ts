/**
 * Hostile datagrams for the hostile-input tests (test/transport/hostile.test.ts against one
 * endpoint, test/chaos/hostile.test.ts against the real components): random bytes, mutated
 * and truncated valid frames, well-formed frames with wrong envelopes, fragment floods, stray
 * acknowledgements and probes.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { encodeEnvelope } from '../../src/protocol/envelope.ts';
import {
  AckStatus,
  encodeAckFrame,
  encodeFragFrame,
  encodeMsgFrame,
  encodeProbeFrame,
} from '../../src/protocol/frame.ts';

/** Valid frames of each kind, the material that `hostile` mutates and truncates. */
export function validFrames(): Buffer[] {
  return [
    encodeMsgFrame([encodeEnvelope({ k: 'ping', id: 1, b: {} })]),
    encodeMsgFrame([encodeEnvelope({ k: 'get-result', id: 2, b: { ids: [1, 2, 3] } })]),
    encodeMsgFrame([
      encodeEnvelope({ k: 'submit', id: 3, b: { tasks: [{ type: 'reverse', payload: 'x' }] } }),
    ]),
    encodeMsgFrame([encodeEnvelope({ k: 'ok', id: 4, re: 9, b: {} })]),
    encodeFragFrame(5, 0, 3, 3000, randomBytes(1000)),
    encodeAckFrame(6, 10, AckStatus.PARTIAL, 3, 0, Buffer.from([0xff])),
    encodeProbeFrame(7, 10, 1),
  ];
}

/** Kinds of `hostile(i)` by `i % 8`: 0 random, 1 mutated, 2 truncated, 3 weird envelope, 4-6 fragment flood, 7 ack/probe. */
export const HOSTILE_KINDS = 8;

/** One hostile datagram: random bytes, a mutated valid frame, a weird envelope or a fragment flood. */
export function hostile(i: number, templates: Buffer[]): Buffer {
  switch (i % HOSTILE_KINDS) {
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
        ? encodeAckFrame(
            randomInt(0, 2 ** 32),
            randomInt(0, 2 ** 20),
            randomInt(0, 3) as AckStatus,
            0,
            0,
            randomBytes(20),
          )
        : encodeProbeFrame(randomInt(0, 2 ** 32), randomInt(0, 2 ** 20), randomInt(0, 2 ** 32));
  }
}
