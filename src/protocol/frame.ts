/**
 * Datagram frames: the binary layer under the JSON envelopes. Pure: bytes in, values out.
 *
 *   0  2  magic "TG"
 *   2  1  protocol version (1)
 *   3  1  frame type (FrameType)
 *   4  1  flags (bit 0: the datagram ends with a 40-byte signature trailer)
 *   5  .. body, by frame type
 *
 * A MSG frame carries one or more whole envelopes, so that several small messages to one peer
 * share a datagram. Each is prefixed by a u16 length, a u8 transmission number and a u8
 * reserved (0): a request carries which transmission of it this is, and a reply echoes the
 * number of the copy it answers, so that round trips are measured even for retransmitted
 * requests (as TCP's timestamp option does) and the timeout tracks the real round trip under load. A message larger than one datagram
 * travels as FRAG frames and is reassembled; FRAG_ACK (cumulative plus selective bitmap) and
 * PROBE (answered by a FRAG_ACK echoing its token) let the sender re-send only the fragments
 * that were lost.
 */
import { ProtocolError } from '../errors.ts';
import { PROTOCOL_VERSION } from './limits.ts';

export const MAGIC0 = 0x54; // 'T'
export const MAGIC1 = 0x47; // 'G'
export const HEADER_BYTES = 5;
export const FLAG_SIGNED = 0x01;

export const FrameType = { MSG: 1, FRAG: 2, FRAG_ACK: 3, PROBE: 4 } as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

/** Bytes of a FRAG frame before its data. */
export const FRAG_HEADER_BYTES = HEADER_BYTES + 16;
/** Bytes of a FRAG_ACK frame before its bitmap. */
export const ACK_HEADER_BYTES = HEADER_BYTES + 17;
/** Bytes of a PROBE frame. */
export const PROBE_BYTES = HEADER_BYTES + 12;

export const AckStatus = { PARTIAL: 0, COMPLETE: 1, UNKNOWN: 2 } as const;
export type AckStatus = (typeof AckStatus)[keyof typeof AckStatus];

/** One message in a MSG frame, with its transmission number (0 = none). */
export interface FramedMessage {
  bytes: Buffer;
  tx: number;
}

/** Bytes of a MSG frame's per-message header. */
export const MSG_ENTRY_HEADER_BYTES = 4;
/** Largest message a MSG frame can hold (its length is a u16). */
export const MAX_MSG_ENTRY_BYTES = 0xffff;

export type Frame =
  | { type: typeof FrameType.MSG; messages: FramedMessage[] }
  | { type: typeof FrameType.FRAG; msgId: number; index: number; count: number; total: number; data: Buffer }
  | {
      type: typeof FrameType.FRAG_ACK;
      msgId: number;
      count: number;
      status: AckStatus;
      /** Every index below this one has arrived. */
      below: number;
      /** The token of the probe this answers; 0 when unsolicited. */
      echo: number;
      /** Bit i set: index below + i has arrived. */
      bitmap: Buffer;
    }
  | { type: typeof FrameType.PROBE; msgId: number; count: number; token: number };

function header(buf: Buffer, type: FrameType): void {
  buf[0] = MAGIC0;
  buf[1] = MAGIC1;
  buf[2] = PROTOCOL_VERSION;
  buf[3] = type;
  buf[4] = 0;
}

/** True when the datagram starts like a TaskGrid v1 frame (legacy JSON starts with `{`). */
export function looksLikeFrame(buf: Buffer): boolean {
  return buf.length >= HEADER_BYTES && buf[0] === MAGIC0 && buf[1] === MAGIC1;
}

/** Encodes a MSG frame; a plain Buffer counts as a message with transmission number 0. */
export function encodeMsgFrame(messages: readonly (Buffer | FramedMessage)[]): Buffer {
  let size = HEADER_BYTES;
  for (const m of messages) size += MSG_ENTRY_HEADER_BYTES + (Buffer.isBuffer(m) ? m : m.bytes).length;
  const buf = Buffer.allocUnsafe(size);
  header(buf, FrameType.MSG);
  let off = HEADER_BYTES;
  for (const m of messages) {
    const bytes = Buffer.isBuffer(m) ? m : m.bytes;
    if (bytes.length > MAX_MSG_ENTRY_BYTES) throw new RangeError('message too long for a MSG frame');
    buf.writeUInt16BE(bytes.length, off);
    buf[off + 2] = Buffer.isBuffer(m) ? 0 : Math.min(255, m.tx);
    buf[off + 3] = 0;
    bytes.copy(buf, off + MSG_ENTRY_HEADER_BYTES);
    off += MSG_ENTRY_HEADER_BYTES + bytes.length;
  }
  return buf;
}

/**
 * Writes a MSG frame's header at the start of `buf`; the first message entry goes at the offset
 * returned. For building a frame in place, message by message, without a Buffer per message.
 */
export function writeMsgFrameHeader(buf: Buffer): number {
  header(buf, FrameType.MSG);
  return HEADER_BYTES;
}

/**
 * Writes the header of one MSG entry at `off`: the message's `length` in bytes (1..65535) and
 * its transmission number (saturating at 255). The message itself goes at
 * `off + MSG_ENTRY_HEADER_BYTES`.
 */
export function writeMsgEntryHeader(buf: Buffer, off: number, length: number, tx: number): void {
  if (length < 1 || length > MAX_MSG_ENTRY_BYTES) throw new RangeError('bad message length for a MSG frame');
  buf[off] = length >>> 8;
  buf[off + 1] = length & 0xff;
  buf[off + 2] = tx > 255 ? 255 : tx;
  buf[off + 3] = 0;
}

/**
 * Reads the messages of a MSG frame in place, without an object or Buffer per message:
 *
 *   reader.reset(buf);            // throws ProtocolError unless every entry is whole
 *   while (reader.next()) use(buf.toString('utf8', reader.start, reader.end), reader.tx);
 *
 * One reader can be reused for every datagram. The frame is checked whole before the first
 * message is read, so a truncated frame delivers nothing (as decodeFrame).
 */
export class MsgFrameReader {
  #buf: Buffer = Buffer.alloc(0);
  #off = 0;
  /** Messages in the frame (known after reset). */
  count = 0;
  /** Byte range and transmission number of the current message. */
  start = 0;
  end = 0;
  tx = 0;

  /** Checks that `buf` is a whole MSG frame (magic, version, type, entries) and starts reading it. */
  reset(buf: Buffer): void {
    if (buf.length < HEADER_BYTES || buf[0] !== MAGIC0 || buf[1] !== MAGIC1) {
      throw new ProtocolError('not a TaskGrid frame');
    }
    if (buf[2] !== PROTOCOL_VERSION) throw new ProtocolError(`unsupported protocol version ${buf[2]}`);
    if (buf[3] !== FrameType.MSG) throw new ProtocolError('not a message frame');
    let off = HEADER_BYTES;
    let count = 0;
    if (off >= buf.length) throw new ProtocolError('empty message frame');
    while (off < buf.length) {
      if (off + MSG_ENTRY_HEADER_BYTES > buf.length) throw new ProtocolError('truncated message header');
      const len = (buf[off]! << 8) | buf[off + 1]!;
      off += MSG_ENTRY_HEADER_BYTES;
      if (len === 0 || off + len > buf.length) throw new ProtocolError('truncated message');
      off += len;
      count++;
    }
    this.count = count;
    this.#buf = buf;
    this.#off = HEADER_BYTES;
  }

  /** Moves to the next message; false after the last. */
  next(): boolean {
    const buf = this.#buf;
    const off = this.#off;
    if (off >= buf.length) return false;
    const len = (buf[off]! << 8) | buf[off + 1]!;
    this.tx = buf[off + 2]!;
    this.start = off + MSG_ENTRY_HEADER_BYTES;
    this.end = this.start + len;
    this.#off = this.end;
    return true;
  }
}

export function encodeFragFrame(
  msgId: number,
  index: number,
  count: number,
  total: number,
  data: Buffer,
): Buffer {
  const buf = Buffer.allocUnsafe(FRAG_HEADER_BYTES + data.length);
  header(buf, FrameType.FRAG);
  buf.writeUInt32BE(msgId >>> 0, 5);
  buf.writeUInt32BE(index, 9);
  buf.writeUInt32BE(count, 13);
  buf.writeUInt32BE(total, 17);
  data.copy(buf, FRAG_HEADER_BYTES);
  return buf;
}

export function encodeAckFrame(
  msgId: number,
  count: number,
  status: AckStatus,
  below: number,
  echo: number,
  bitmap: Buffer,
): Buffer {
  const buf = Buffer.allocUnsafe(ACK_HEADER_BYTES + bitmap.length);
  header(buf, FrameType.FRAG_ACK);
  buf.writeUInt32BE(msgId >>> 0, 5);
  buf.writeUInt32BE(count, 9);
  buf[13] = status;
  buf.writeUInt32BE(below, 14);
  buf.writeUInt32BE(echo >>> 0, 18);
  bitmap.copy(buf, ACK_HEADER_BYTES);
  return buf;
}

export function encodeProbeFrame(msgId: number, count: number, token: number): Buffer {
  const buf = Buffer.allocUnsafe(PROBE_BYTES);
  header(buf, FrameType.PROBE);
  buf.writeUInt32BE(msgId >>> 0, 5);
  buf.writeUInt32BE(count, 9);
  buf.writeUInt32BE(token >>> 0, 13);
  return buf;
}

/**
 * Decodes one datagram (its signature trailer, if any, already removed).
 * Throws ProtocolError on anything malformed; never reads out of bounds.
 */
export function decodeFrame(buf: Buffer): Frame {
  if (buf.length < HEADER_BYTES || buf[0] !== MAGIC0 || buf[1] !== MAGIC1) {
    throw new ProtocolError('not a TaskGrid frame');
  }
  if (buf[2] !== PROTOCOL_VERSION) throw new ProtocolError(`unsupported protocol version ${buf[2]}`);
  switch (buf[3]) {
    case FrameType.MSG: {
      const messages: FramedMessage[] = [];
      let off = HEADER_BYTES;
      while (off < buf.length) {
        if (off + MSG_ENTRY_HEADER_BYTES > buf.length) throw new ProtocolError('truncated message header');
        const len = buf.readUInt16BE(off);
        const tx = buf[off + 2]!;
        off += MSG_ENTRY_HEADER_BYTES;
        if (len === 0 || off + len > buf.length) throw new ProtocolError('truncated message');
        messages.push({ bytes: buf.subarray(off, off + len), tx });
        off += len;
      }
      if (messages.length === 0) throw new ProtocolError('empty message frame');
      return { type: FrameType.MSG, messages };
    }
    case FrameType.FRAG: {
      if (buf.length <= FRAG_HEADER_BYTES) throw new ProtocolError('truncated fragment');
      const msgId = buf.readUInt32BE(5);
      const index = buf.readUInt32BE(9);
      const count = buf.readUInt32BE(13);
      const total = buf.readUInt32BE(17);
      if (count < 2 || index >= count || total < count) throw new ProtocolError('bad fragment header');
      return { type: FrameType.FRAG, msgId, index, count, total, data: buf.subarray(FRAG_HEADER_BYTES) };
    }
    case FrameType.FRAG_ACK: {
      if (buf.length < ACK_HEADER_BYTES) throw new ProtocolError('truncated fragment ack');
      const status = buf[13];
      if (status !== AckStatus.PARTIAL && status !== AckStatus.COMPLETE && status !== AckStatus.UNKNOWN) {
        throw new ProtocolError('bad fragment ack status');
      }
      const count = buf.readUInt32BE(9);
      const below = buf.readUInt32BE(14);
      if (below > count) throw new ProtocolError('bad fragment ack');
      return {
        type: FrameType.FRAG_ACK,
        msgId: buf.readUInt32BE(5),
        count,
        status,
        below,
        echo: buf.readUInt32BE(18),
        bitmap: buf.subarray(ACK_HEADER_BYTES),
      };
    }
    case FrameType.PROBE: {
      if (buf.length !== PROBE_BYTES) throw new ProtocolError('bad probe');
      return {
        type: FrameType.PROBE,
        msgId: buf.readUInt32BE(5),
        count: buf.readUInt32BE(9),
        token: buf.readUInt32BE(13),
      };
    }
    default:
      throw new ProtocolError(`unknown frame type ${buf[3]}`);
  }
}
