/**
 * Hosts of their own for the chaos scenarios: one network namespace per host, each with one
 * address on a private test subnet (10.231.0.0/24), joined by a bridge that lives in a
 * namespace of its own too, so nothing is added to (or sent over) the machine's own network.
 * Needs root and iproute2 (`ip`). `destroy()` deletes every namespace made here, which removes
 * their veth pairs and the bridge with them.
 */
import { execFileSync, spawnSync } from 'node:child_process';

export const SUBNET = '10.231.0';

/** Why the namespaces cannot be made here, or undefined when they can. */
export function netnsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root to create network namespaces (ip netns)';
  const ip = spawnSync('ip', ['-V'], { encoding: 'utf8' });
  if (ip.error || ip.status !== 0) return 'iproute2 is not installed (no `ip` command)';
  return undefined;
}

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export interface Host {
  name: string;
  /** The namespace's name (for `ip netns exec`). */
  ns: string;
  address: string;
  /** The bridge's end of the host's veth pair (in the bridge namespace). */
  port: string;
}

export class Hosts {
  readonly #prefix = `tgc${process.pid}`;
  readonly #bridgeNs = `${this.#prefix}-bridge`;
  readonly #made: string[] = [];
  readonly hosts = new Map<string, Host>();

  /** Makes one namespace per name, in order, at addresses .1, .2, ... of the test subnet. */
  static create(names: string[]): Hosts {
    const h = new Hosts();
    try {
      h.#add(h.#bridgeNs);
      ip('-n', h.#bridgeNs, 'link', 'add', 'br0', 'type', 'bridge');
      ip('-n', h.#bridgeNs, 'link', 'set', 'br0', 'up');
      names.forEach((name, i) => {
        const ns = `${h.#prefix}-${name}`;
        const port = `p${i}`;
        const address = `${SUBNET}.${i + 1}`;
        h.#add(ns);
        ip('-n', h.#bridgeNs, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
        ip('-n', h.#bridgeNs, 'link', 'set', port, 'master', 'br0');
        ip('-n', h.#bridgeNs, 'link', 'set', port, 'up');
        ip('-n', ns, 'addr', 'add', `${address}/24`, 'dev', 'eth0');
        ip('-n', ns, 'link', 'set', 'eth0', 'up');
        ip('-n', ns, 'link', 'set', 'lo', 'up');
        h.hosts.set(name, { name, ns, address, port });
      });
    } catch (err) {
      h.destroy();
      throw err;
    }
    return h;
  }

  #add(ns: string): void {
    ip('netns', 'add', ns);
    this.#made.push(ns);
  }

  get(name: string): Host {
    const host = this.hosts.get(name);
    if (!host) throw new Error(`no host ${name}`);
    return host;
  }

  /** The command prefix that runs a program on `name`. */
  exec(name: string): string[] {
    return ['ip', 'netns', 'exec', this.get(name).ns];
  }

  /** Cuts `name` off the network: its port on the bridge goes down, so nothing passes either way. */
  cut(name: string): void {
    ip('-n', this.#bridgeNs, 'link', 'set', this.get(name).port, 'down');
  }

  heal(name: string): void {
    ip('-n', this.#bridgeNs, 'link', 'set', this.get(name).port, 'up');
  }

  /** Deletes every namespace made here (with their interfaces); safe to call twice. */
  destroy(): void {
    for (const ns of this.#made.splice(0).reverse()) {
      try {
        ip('netns', 'del', ns);
      } catch {
        // already gone
      }
    }
  }

  /** Namespaces made here that still exist (for the test's own clean-up check). */
  leftovers(): string[] {
    const list = ip('netns', 'list');
    return list
      .split('\n')
      .map((l) => l.split(' ')[0] ?? '')
      .filter((n) => n.startsWith(`${this.#prefix}-`));
  }
}
