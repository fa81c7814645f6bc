/**
 * An in-memory datagram network with fault injection (loss, duplication, reordering, delay,
 * partitions), under the same DatagramLink interface as UDP. Tests run the transport's
 * conformance suite over it and build whole grids on it.
 */
import type { DatagramLink, PeerAddress } from './types.ts';

export interface Faults {
  /** Probability that a datagram is dropped. */
  loss: number;
  /** Probability that a datagram is delivered twice. */
  duplicate: number;
  /** Probability that a datagram is held back by a random extra delay (reordering it). */
  reorder: number;
  /** Base delivery delay in ms. */
  delayMs: number;
  /** Most extra delay of a reordered datagram, in ms. */
  reorderMs: number;
}

const NO_FAULTS: Faults = { loss: 0, duplicate: 0, reorder: 0, delayMs: 0, reorderMs: 5 };

function key(a: PeerAddress): string {
  return `${a.host}:${a.port}`;
}

export interface NetworkStats {
  sent: number;
  delivered: number;
  dropped: number;
  duplicated: number;
  reordered: number;
}

export class MemoryNetwork {
  #faults: Faults;
  readonly #links = new Map<string, MemoryLink>();
  readonly #cut = new Set<string>();
  #nextPort = 40_000;
  readonly #random: () => number;
  readonly stats: NetworkStats = { sent: 0, delivered: 0, dropped: 0, duplicated: 0, reordered: 0 };

  constructor(faults: Partial<Faults> = {}, random: () => number = Math.random) {
    this.#faults = { ...NO_FAULTS, ...faults };
    this.#random = random;
  }

  setFaults(faults: Partial<Faults>): void {
    this.#faults = { ...this.#faults, ...faults };
  }

  /** Creates a link at `host`, a name only: nothing leaves the process. */
  link(host = 'mem-a', port?: number): MemoryLink {
    const p = port ?? this.#nextPort++;
    const local = { host, port: p };
    if (this.#links.has(key(local))) throw new Error(`address ${key(local)} is in use`);
    const l = new MemoryLink(this, local);
    this.#links.set(key(local), l);
    return l;
  }

  /** Cuts (or with `false`, heals) traffic between two hosts, both ways. */
  partition(hostA: string, hostB: string, cut = true): void {
    for (const k of [`${hostA}|${hostB}`, `${hostB}|${hostA}`]) {
      if (cut) this.#cut.add(k);
      else this.#cut.delete(k);
    }
  }

  /** @internal */
  remove(link: MemoryLink): void {
    this.#links.delete(key(link.local));
  }

  /** @internal */
  transmit(data: Buffer, from: PeerAddress, to: PeerAddress): void {
    this.stats.sent++;
    const f = this.#faults;
    if (this.#cut.has(`${from.host}|${to.host}`) || this.#random() < f.loss) {
      this.stats.dropped++;
      return;
    }
    const copy = Buffer.from(data);
    const copies = this.#random() < f.duplicate ? 2 : 1;
    if (copies === 2) this.stats.duplicated++;
    for (let i = 0; i < copies; i++) {
      let delay = f.delayMs;
      if (this.#random() < f.reorder) {
        delay += this.#random() * f.reorderMs;
        this.stats.reordered++;
      }
      const deliver = () => {
        const target = this.#links.get(key(to));
        if (!target) {
          this.stats.dropped++;
          return;
        }
        this.stats.delivered++;
        target.deliver(copy, from);
      };
      if (delay > 0) setTimeout(deliver, delay);
      else setImmediate(deliver);
    }
  }
}

export class MemoryLink implements DatagramLink {
  readonly local: PeerAddress;
  readonly #net: MemoryNetwork;
  #onDatagram: (data: Buffer, from: PeerAddress) => void = () => {};
  #closed = false;

  constructor(net: MemoryNetwork, local: PeerAddress) {
    this.#net = net;
    this.local = local;
  }

  send(data: Buffer, to: PeerAddress): void {
    if (!this.#closed) this.#net.transmit(data, this.local, to);
  }

  onDatagram(cb: (data: Buffer, from: PeerAddress) => void): void {
    this.#onDatagram = cb;
  }

  onError(_cb: (err: Error) => void): void {
    // The in-memory network reports no send errors: unreachable peers just drop.
  }

  /** @internal */
  deliver(data: Buffer, from: PeerAddress): void {
    if (!this.#closed) this.#onDatagram(data, from);
  }

  close(): Promise<void> {
    this.#closed = true;
    this.#net.remove(this);
    return Promise.resolve();
  }
}
