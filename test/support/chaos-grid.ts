/**
 * A grid of real processes with a lossy relay in front of every component, for the chaos
 * scenarios: each component listens on a port picked here, and a relay process
 * (test/support/relay-process.ts) forwards to it while dropping, duplicating, reordering and
 * delaying datagrams. Every component advertises its relay's address (TASKGRID_ADVERTISE
 * host:port) and everyone is given the nameservice's relay, so every link (client, dispatcher,
 * workers, nameservice, both ways) crosses a relay. Components can be SIGKILLed and restarted
 * on the same port behind the same relay. `stop()` stops every process started here.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freeUdpPort, rssMb, startTs, type Child } from './process.ts';

export interface ChaosFaults {
  loss: number;
  duplicate: number;
  reorder: number;
  delayMs: number;
  reorderMs: number;
}

export interface RelayCounts {
  forwarded: number;
  dropped: number;
  duplicated: number;
  reordered: number;
}

interface Ready {
  msg: string;
  address: { host: string; port: number };
  id?: string;
}

/** One component slot: its own port, the relay in front of it, and its current process. */
export interface Slot {
  name: string;
  port: number;
  relay: Child;
  relayPort: number;
  proc?: Child;
  /** The instance id a worker registered, from its ready line. */
  id?: string;
}

export class RelayedGrid {
  readonly home: string;
  readonly faults: ChaosFaults;
  readonly #all = new Set<Child>();
  readonly #relays: Slot[] = [];
  readonly #relayCounts: RelayCounts = { forwarded: 0, dropped: 0, duplicated: 0, reordered: 0 };
  nameservice!: Slot;
  dispatcher!: Slot;
  readonly workers: Slot[] = [];
  #workerCount = 0;
  /** SIGKILLs sent, by component name. */
  readonly kills: string[] = [];

  constructor(faults: ChaosFaults) {
    this.home = mkdtempSync(join(tmpdir(), 'taskgrid-chaos-'));
    this.faults = faults;
  }

  /** The address everyone is given for the nameservice: its relay. */
  get nameserviceAddress(): { host: string; port: number } {
    return { host: '127.0.0.1', port: this.nameservice.relayPort };
  }

  get env(): Record<string, string> {
    return {
      TASKGRID_HOME: this.home,
      TASKGRID_LOG_LEVEL: 'error',
      TASKGRID_NAMESERVICE: `127.0.0.1:${this.nameservice.relayPort}`,
    };
  }

  async #slot(name: string): Promise<Slot> {
    const port = await freeUdpPort();
    const relay = startTs('test/support/relay-process.ts', [
      `127.0.0.1:${port}`,
      JSON.stringify(this.faults),
    ]);
    this.#all.add(relay);
    const { port: relayPort } = await relay.nextJson<{ port: number }>(
      (v) => typeof v.port === 'number',
      60_000,
    );
    const slot: Slot = { name, port, relay, relayPort };
    this.#relays.push(slot);
    return slot;
  }

  async #run(slot: Slot, args: string[], advertise: boolean): Promise<Child> {
    const env: Record<string, string> = { ...this.env };
    if (advertise) env.TASKGRID_ADVERTISE = `127.0.0.1:${slot.relayPort}`;
    const child = startTs('src/cli/main.ts', args, env);
    this.#all.add(child);
    slot.proc = child;
    const ready = await child.nextJson<Ready>((v) => v.msg === 'ready', 60_000);
    if (ready.id !== undefined) slot.id = ready.id;
    return child;
  }

  static async start(
    faults: ChaosFaults,
    workers: { types: string[]; concurrency: number }[],
  ): Promise<RelayedGrid> {
    const g = new RelayedGrid(faults);
    try {
      [g.nameservice, g.dispatcher] = await Promise.all([g.#slot('nameservice'), g.#slot('dispatcher')]);
      await g.startNameservice();
      await Promise.all([g.startDispatcher(), ...workers.map((w) => g.addWorker(w.types, w.concurrency))]);
    } catch (err) {
      await g.stop();
      throw err;
    }
    return g;
  }

  /** Starts (or restarts, on the same port behind the same relay) the nameservice. */
  async startNameservice(): Promise<void> {
    await this.#run(this.nameservice, ['nameservice', '--port', String(this.nameservice.port)], false);
  }

  /** Starts (or restarts, on the same port and store) the dispatcher. */
  async startDispatcher(): Promise<void> {
    await this.#run(this.dispatcher, ['dispatcher', '--port', String(this.dispatcher.port)], true);
  }

  async addWorker(types: string[], concurrency: number): Promise<Slot> {
    const index = this.#workerCount++;
    const slot = await this.#slot(`worker-${index + 1}`);
    this.workers[index] = slot;
    await this.#run(
      slot,
      ['worker', ...types, '--port', String(slot.port), '--concurrency', String(concurrency)],
      true,
    );
    return slot;
  }

  /** SIGKILLs the component in `slot` (its relay stays). */
  async kill(slot: Slot): Promise<void> {
    this.kills.push(slot.name);
    await slot.proc?.kill('SIGKILL');
  }

  async rss(slot: Slot): Promise<number> {
    return slot.proc ? rssMb(slot.proc.pid) : NaN;
  }

  /** The relays' counts so far (of the relays stopped by `stopRelays`). */
  get relayCounts(): RelayCounts {
    return { ...this.#relayCounts };
  }

  /** Stops every relay and adds up what they did to the datagrams. */
  async stopRelays(): Promise<RelayCounts> {
    await Promise.all(
      this.#relays.map(async (slot) => {
        const stats = slot.relay.nextJson<{ stats: RelayCounts }>((v) => typeof v.stats === 'object', 10_000);
        slot.relay.proc.kill('SIGTERM');
        try {
          const s = (await stats).stats;
          for (const k of Object.keys(this.#relayCounts) as (keyof RelayCounts)[])
            this.#relayCounts[k] += s[k];
        } catch {
          // counts of a relay that did not report are missing from the totals
        }
        await slot.relay.stop(2_000);
      }),
    );
    return this.relayCounts;
  }

  async stop(): Promise<void> {
    await Promise.all([...this.#all].map((c) => c.stop(5_000)));
    rmSync(this.home, { recursive: true, force: true });
  }
}
