/**
 * Health checks: every nameservice, the dispatcher and the live workers are pinged at once
 * (`ping` answers with the component's version, uptime and pid). The grid is `down` when no
 * nameservice or no dispatcher answers, `degraded` when a worker does not.
 */
import { formatAddress } from '../client/index.ts';
import type { PeerAddress } from '../transport/types.ts';
import type { GridSource } from './grid.ts';
import type { ComponentHealth, HealthResponse } from './schemas.ts';
import { wireError } from './watcher.ts';

/** Options of {@link checkComponents}. */
export interface HealthCheckOptions {
  /** Deadline of each ping. */
  timeoutMs: number;
  /** Workers pinged at most; the others are listed as registered but not checked. */
  maxWorkerPings: number;
  now: () => number;
}

async function probe(
  grid: GridSource,
  component: ComponentHealth['component'],
  address: PeerAddress,
  o: HealthCheckOptions,
  id?: string,
): Promise<ComponentHealth> {
  const base: ComponentHealth = {
    component,
    ...(id !== undefined && { id }),
    address: formatAddress(address),
    reachable: false,
    checked: true,
  };
  const started = o.now();
  try {
    const reply = await grid.ping(address, o.timeoutMs);
    return {
      ...base,
      ...(reply.id !== undefined && { id: reply.id }),
      reachable: true,
      version: reply.version,
      uptimeMs: reply.uptimeMs,
      pid: reply.pid,
      latencyMs: Math.max(0, o.now() - started),
    };
  } catch (err) {
    return { ...base, error: wireError(err) };
  }
}

/** Pings every component; see the module comment for what `status` means. */
export async function checkComponents(
  grid: GridSource,
  o: HealthCheckOptions,
): Promise<Pick<HealthResponse, 'status' | 'components'>> {
  const nameservices = grid.nameservers().map((ns) => probe(grid, 'nameservice', ns, o));
  const dispatcher = grid.dispatcherAddress().then(
    (address) => probe(grid, 'dispatcher', address, o),
    (err: unknown): ComponentHealth => ({
      component: 'dispatcher',
      address: 'unknown',
      reachable: false,
      checked: true,
      error: wireError(err),
    }),
  );
  const workers = grid
    .instances()
    .filter((i) => i.role === 'worker')
    .sort((a, b) => a.id.localeCompare(b.id));
  const workerChecks = workers.map((w, i): Promise<ComponentHealth> => {
    if (i < o.maxWorkerPings) return probe(grid, 'worker', w.address, o, w.id);
    return Promise.resolve({
      component: 'worker',
      id: w.id,
      address: formatAddress(w.address),
      reachable: true,
      checked: false,
    });
  });
  const components = await Promise.all([...nameservices, dispatcher, ...workerChecks]);
  const up = (c: ComponentHealth['component']) => components.some((x) => x.component === c && x.reachable);
  const status =
    !up('nameservice') || !up('dispatcher')
      ? 'down'
      : components.some((x) => !x.reachable)
        ? 'degraded'
        : 'ok';
  return { status, components };
}
