/**
 * A lossy UDP relay for tests and chaos runs: listens on a front port and forwards every
 * datagram to a target, and the target's answers back, dropping, duplicating, reordering and
 * delaying them at the rates given. Each client address gets its own upstream socket, so the
 * target sees one distinct peer per client.
 */
import dgram from 'node:dgram';
import type { PeerAddress } from './types.ts';

export interface RelayFaults {
  loss: number;
  duplicate: number;
  reorder: number;
  /** Base delay of every datagram, ms. */
  delayMs: number;
  /** Most extra delay of a reordered datagram, ms. */
  reorderMs: number;
}

export interface RelayOptions {
  target: PeerAddress;
  /** Address to listen on (default 127.0.0.1, port 0). */
  host?: string;
  port?: number;
  faults?: Partial<RelayFaults>;
  random?: () => number;
  /** Upstream sockets idle this long are closed. */
  idleMs?: number;
}

export interface RelayStats {
  forwarded: number;
  dropped: number;
  duplicated: number;
  reordered: number;
}

export interface Relay {
  readonly address: PeerAddress;
  readonly stats: RelayStats;
  setFaults(f: Partial<RelayFaults>): void;
  close(): Promise<void>;
}

const BUFFER_BYTES = 4 * 1024 * 1024;

export async function startRelay(options: RelayOptions): Promise<Relay> {
  let faults: RelayFaults = { loss: 0, duplicate: 0, reorder: 0, delayMs: 0, reorderMs: 5, ...options.faults };
  const random = options.random ?? Math.random;
  const stats: RelayStats = { forwarded: 0, dropped: 0, duplicated: 0, reordered: 0 };
  const timers = new Set<NodeJS.Timeout>();
  const front = dgram.createSocket('udp4');
  const upstreams = new Map<string, { socket: dgram.Socket; lastAt: number }>();
  let closed = false;

  const pass = (socket: dgram.Socket, data: Buffer, to: PeerAddress) => {
    if (closed) return;
    if (random() < faults.loss) {
      stats.dropped++;
      return;
    }
    const copies = random() < faults.duplicate ? 2 : 1;
    if (copies === 2) stats.duplicated++;
    for (let i = 0; i < copies; i++) {
      let delay = faults.delayMs;
      if (random() < faults.reorder) {
        delay += random() * faults.reorderMs;
        stats.reordered++;
      }
      const send = () => {
        if (closed) return;
        stats.forwarded++;
        socket.send(data, to.port, to.host, () => {});
      };
      if (delay <= 0) send();
      else {
        const t = setTimeout(() => {
          timers.delete(t);
          send();
        }, delay);
        timers.add(t);
      }
    }
  };

  const upstreamFor = (client: PeerAddress) => {
    const key = `${client.host}:${client.port}`;
    let up = upstreams.get(key);
    if (!up) {
      const socket = dgram.createSocket('udp4');
      socket.on('error', () => {});
      socket.on('message', (msg) => {
        up!.lastAt = Date.now();
        pass(front, msg, client);
      });
      socket.bind(0, '127.0.0.1', () => {
        try {
          socket.setRecvBufferSize(BUFFER_BYTES);
          socket.setSendBufferSize(BUFFER_BYTES);
        } catch {
          // the defaults only mean more loss
        }
      });
      up = { socket, lastAt: Date.now() };
      upstreams.set(key, up);
    }
    up.lastAt = Date.now();
    return up.socket;
  };

  front.on('error', () => {});
  front.on('message', (msg, rinfo) => {
    pass(upstreamFor({ host: rinfo.address, port: rinfo.port }), msg, options.target);
  });
  await new Promise<void>((resolve, reject) => {
    front.once('error', reject);
    front.bind(options.port ?? 0, options.host ?? '127.0.0.1', () => {
      front.off('error', reject);
      resolve();
    });
  });
  try {
    front.setRecvBufferSize(BUFFER_BYTES);
    front.setSendBufferSize(BUFFER_BYTES);
  } catch {
    // the defaults only mean more loss
  }
  const idleMs = options.idleMs ?? 60_000;
  const sweeper = setInterval(() => {
    const cutoff = Date.now() - idleMs;
    for (const [key, up] of upstreams) {
      if (up.lastAt < cutoff) {
        up.socket.close();
        upstreams.delete(key);
      }
    }
  }, 5_000);
  sweeper.unref();
  const addr = front.address();
  return {
    address: { host: addr.address, port: addr.port },
    stats,
    setFaults(f) {
      faults = { ...faults, ...f };
    },
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(sweeper);
      for (const t of timers) clearTimeout(t);
      await Promise.all(
        [front, ...[...upstreams.values()].map((u) => u.socket)].map(
          (s) => new Promise<void>((r) => s.close(() => r())),
        ),
      );
    },
  };
}
