/**
 * The real-network link: one UDP socket. The only module that imports node:dgram.
 */
import dgram from 'node:dgram';
import { lookup as dnsLookup } from 'node:dns';
import { isIP, isIPv6 } from 'node:net';
import type { DatagramLink, PeerAddress } from './types.ts';

export interface UdpLinkOptions {
  /** Address to bind; an IPv6 address binds an IPv6 socket. Default 127.0.0.1. */
  host?: string;
  /** Port to bind; 0 picks a free port. */
  port?: number;
  /** Socket buffer sizes in bytes (the kernel may cap them). Default 4 MiB. */
  bufferBytes?: number;
}

const DEFAULT_BUFFER_BYTES = 4 * 1024 * 1024;

/**
 * The socket's address lookup: an IP address (every peer address but one a user typed) answers
 * at once; a name goes to dns.lookup. node:dgram's default is dns.lookup for every send, which
 * answers even an IP address on the next tick: the datagram then waits for the sender's
 * remaining work in that tick (measured: 10-35 us more per hop on a sequential round trip).
 */
function lookupNow(
  host: string,
  family: number,
  cb: (err: NodeJS.ErrnoException | null, address: string, family: number) => void,
): void {
  const ip = isIP(host);
  if (ip !== 0) cb(null, host, ip);
  else dnsLookup(host, family, cb);
}

class UdpLink implements DatagramLink {
  readonly #socket: dgram.Socket;
  readonly local: PeerAddress;
  #onDatagram: (data: Buffer, from: PeerAddress) => void = () => {};
  #onError: (err: Error) => void = () => {};
  #closed = false;
  /** One callback for every send (not a closure per datagram): failures go to onError. */
  readonly #afterSend = (err: Error | null): void => {
    if (err) this.#onError(err);
  };

  constructor(socket: dgram.Socket, local: PeerAddress) {
    this.#socket = socket;
    this.local = local;
    socket.on('message', (msg, rinfo) => {
      this.#onDatagram(msg, { host: rinfo.address, port: rinfo.port });
    });
    // ICMP errors (ECONNREFUSED, EHOSTUNREACH) surface here; they must never crash a process.
    socket.on('error', (err) => this.#onError(err));
  }

  send(data: Buffer, to: PeerAddress): void {
    if (this.#closed) return;
    try {
      this.#socket.send(data, to.port, to.host, this.#afterSend);
    } catch (err) {
      this.#onError(err instanceof Error ? err : new Error(String(err)));
    }
  }

  onDatagram(cb: (data: Buffer, from: PeerAddress) => void): void {
    this.#onDatagram = cb;
  }

  onError(cb: (err: Error) => void): void {
    this.#onError = cb;
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    return new Promise((resolve) => {
      try {
        this.#socket.close(() => resolve());
      } catch {
        resolve();
      }
    });
  }
}

/** Binds a UDP socket and returns it as a link. Rejects if the address cannot be bound. */
export async function bindUdpLink(options: UdpLinkOptions = {}): Promise<DatagramLink> {
  const host = options.host ?? '127.0.0.1';
  const type = isIPv6(host) || host === '::' ? 'udp6' : 'udp4';
  const socket = dgram.createSocket({
    type,
    reuseAddr: false,
    lookup: lookupNow as dgram.SocketOptions['lookup'],
  });
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    socket.once('error', onError);
    socket.bind(options.port ?? 0, host, () => {
      socket.off('error', onError);
      resolve();
    });
  });
  const bytes = options.bufferBytes ?? DEFAULT_BUFFER_BYTES;
  // Many requests in flight overflow the default buffers; the kernel caps what we ask for.
  try {
    socket.setRecvBufferSize(bytes);
    socket.setSendBufferSize(bytes);
  } catch {
    // Not fatal: the defaults work, with more loss under load.
  }
  const addr = socket.address();
  return new UdpLink(socket, { host: addr.address, port: addr.port });
}
