/**
 * Control of a local grid that runs in the background: the supervisor's state file
 * (`run/grid.json`: its pid, each component's pid and restarts), starting detached and waiting
 * for health, status over the protocol, stop, reset, logs.
 */
import { spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  fstatSync,
  openSync,
  readFileSync,
  readSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
  mkdirSync,
} from 'node:fs';
import { join } from 'node:path';
import { TaskGridClient } from '../client/index.ts';
import { statePaths, type Config, type StatePaths } from '../config/env.ts';
import { ErrorCode, TaskGridError, isErrorCode } from '../errors.ts';

export interface GridState {
  supervisorPid: number;
  startedAt: number;
  /** True once every component printed its ready line. */
  ready: boolean;
  components: Record<
    string,
    {
      pid: number | undefined;
      restarts: number;
      args: string[];
      /** Where it listens, from its ready line (a port given as 0 is the one it got). */
      address?: { host: string; port: number } | undefined;
    }
  >;
}

export function stateFile(paths: StatePaths): string {
  return join(paths.run, 'grid.json');
}

export function writeState(paths: StatePaths, state: GridState): void {
  mkdirSync(paths.run, { recursive: true });
  writeFileSync(stateFile(paths), JSON.stringify(state, null, 2));
}

export function removeStateFile(paths: StatePaths): void {
  rmSync(stateFile(paths), { force: true });
}

export function readState(paths: StatePaths): GridState | undefined {
  try {
    return JSON.parse(readFileSync(stateFile(paths), 'utf8')) as GridState;
  } catch {
    return undefined;
  }
}

export function isAlive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** True when `pid` is a live process running the taskgrid CLI (never signal anything else). */
function isTaskgrid(pid: number | undefined): pid is number {
  if (!isAlive(pid)) return false;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('taskgrid');
  } catch {
    return true; // no /proc: trust the state file
  }
}

/** The supervisor of a grid running from this state directory, if any. */
export function runningGrid(paths: StatePaths): GridState | undefined {
  const s = readState(paths);
  return s && isTaskgrid(s.supervisorPid) ? s : undefined;
}

export interface DetachOptions {
  root: string;
  config: Config;
  /** Arguments that make the CLI supervise in the foreground, e.g. ['run', '--supervise']. */
  args: string[];
  say: (line: string) => void;
  timeoutMs?: number;
}

/** Refuses a second local grid on the same TASKGRID_HOME (its state and ports are taken). */
export function refuseIfRunning(paths: StatePaths): void {
  const running = runningGrid(paths);
  if (running) {
    throw new TaskGridError(
      ErrorCode.BAD_ARGUMENT,
      `a grid is already running from ${paths.home} (supervisor pid ${running.supervisorPid}); run \`taskgrid stop\` first`,
    );
  }
}

/**
 * Starts the supervisor in the background (its output to logs/grid.log) and returns once every
 * component printed its ready line and the nameservice and dispatcher answer a ping.
 */
export async function startDetached(o: DetachOptions): Promise<GridState> {
  const paths = statePaths(o.config.home);
  refuseIfRunning(paths);
  rmSync(stateFile(paths), { force: true });
  mkdirSync(paths.logs, { recursive: true });
  const logPath = join(paths.logs, 'grid.log');
  const fd = openSync(logPath, 'a');
  const logStart = statSync(logPath).size;
  const child = spawn(process.execPath, [join(o.root, 'bin/taskgrid.js'), ...o.args], {
    cwd: o.root,
    env: process.env,
    detached: true,
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  child.unref();
  const deadline = Date.now() + (o.timeoutMs ?? 120_000);
  for (;;) {
    const s = readState(paths);
    if (s?.ready) break;
    if (!isAlive(child.pid) || Date.now() > deadline) {
      const log = readFileSync(logPath).subarray(logStart).toString('utf8');
      if (isAlive(child.pid)) process.kill(child.pid!, 'SIGTERM');
      throw startFailure(log, logPath);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  const health = await gridHealth(o.config, paths);
  const sick = health.filter((h) => !h.ok);
  if (sick.length > 0) {
    throw new TaskGridError(
      ErrorCode.UNREACHABLE,
      `started, but not healthy: ${sick.map((h) => `${h.name} (${h.detail})`).join(', ')}; see \`taskgrid status\``,
    );
  }
  return readState(paths)!;
}

/** How the supervisor says that a component failed before it was ready (startDetached reads it). */
export const START_FAILED = 'the grid could not start: ';

/**
 * Why a detached grid did not start, from what its supervisor logged in this run: the reason it
 * gave ("the grid could not start: worker-x exited before it was ready: ..."), with the code of
 * the component's own error (a handler module that does not load is TG_ERR_CONFIG, exit 2),
 * rather than the last lines of the interleaved log, where the reason hides between the other
 * components' shutdown lines.
 */
export function startFailure(log: string, logPath: string): TaskGridError {
  const at = log.lastIndexOf(START_FAILED);
  if (at >= 0) {
    const lines = log.slice(at).trimEnd().split('\n');
    // The reason's own lines are indented; the supervisor's next lines are not.
    const end = lines.findIndex((l, i) => i > 0 && !l.startsWith('  '));
    const reason = (end < 0 ? lines : lines.slice(0, end)).map((l) => l.trim()).join(' ');
    const code = /\b(TG_ERR_[A-Z_]+)\b/.exec(reason.slice(START_FAILED.length))?.[1];
    return new TaskGridError(
      isErrorCode(code) ? code : ErrorCode.UNREACHABLE,
      `${reason} (the whole log: ${logPath})`,
    );
  }
  const tail = log.trimEnd().split('\n').slice(-15).join('\n  ');
  return new TaskGridError(
    ErrorCode.UNREACHABLE,
    `the grid did not become ready; the end of ${logPath}:\n  ${tail}`,
  );
}

/**
 * Where the monitoring service of a local grid serves its dashboard: its real port when known
 * (from its ready line; a port given as 0 is the one it got), on loopback when bound to any address.
 */
export function dashboardUrl(config: Config, port: number = config.monitoringPort): string {
  const host = config.bind === '0.0.0.0' || config.bind === '::' ? '127.0.0.1' : config.bind;
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}/`;
}

export interface ComponentHealth {
  name: string;
  pid: number | undefined;
  restarts: number;
  ok: boolean;
  detail: string;
}

/**
 * Asks each component over the protocol: the nameservice and dispatcher answer `ping`, each
 * worker the supervisor started is registered and answers `ping` at its address.
 */
export async function gridHealth(config: Config, paths: StatePaths): Promise<ComponentHealth[]> {
  const state = readState(paths);
  const client = await TaskGridClient.connect({
    nameservers: [...config.nameservices],
    ...(config.secret ? { secret: config.secret } : {}),
  });
  const out: ComponentHealth[] = [];
  const base = (name: string) => ({
    name,
    pid: state?.components[name]?.pid,
    restarts: state?.components[name]?.restarts ?? 0,
  });
  try {
    /** Pings a component and adds its line; whether it answered. */
    const ping = async (name: string, address: { host: string; port: number } | undefined) => {
      try {
        const p = await client.ping(address);
        out.push({
          ...base(name),
          ok: true,
          detail: `${p.component} ${p.version}, up ${Math.round(p.uptimeMs / 1000)} s`,
        });
        return true;
      } catch (err) {
        out.push({ ...base(name), ok: false, detail: err instanceof TaskGridError ? err.code : String(err) });
        return false;
      }
    };
    const nameserviceOk = await ping('nameservice', config.nameservices[0]);
    let instances: Awaited<ReturnType<TaskGridClient['workers']>> = [];
    if (nameserviceOk) {
      try {
        instances = await client.workers();
      } catch {
        // reported through the nameservice's own line
      }
    }
    const dispatcher = instances.find((i) => i.role === 'dispatcher');
    if (dispatcher || config.dispatcher) await ping('dispatcher', dispatcher?.address ?? config.dispatcher);
    else {
      // Nothing to ask it at: say so at once rather than wait out a lookup that cannot answer.
      out.push({
        ...base('dispatcher'),
        ok: false,
        detail: nameserviceOk
          ? 'not registered with the nameservice'
          : 'not looked up: the nameservice did not answer',
      });
    }
    if (state?.components.monitoring) {
      const url = `${dashboardUrl(config, state.components.monitoring.address?.port)}healthz`;
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(3_000) });
        out.push({ ...base('monitoring'), ok: res.ok, detail: `HTTP ${res.status} from ${url}` });
      } catch (err) {
        out.push({
          ...base('monitoring'),
          ok: false,
          detail: `no answer from ${url} (${err instanceof Error ? err.message : String(err)})`,
        });
      }
    }
    const workers = instances.filter((i) => i.role === 'worker');
    if (state) {
      const workerNames = Object.keys(state.components).filter((n) => n.startsWith('worker-'));
      const byPid = new Map(workers.map((i) => [Number(i.meta.pid), i]));
      for (const name of workerNames) {
        const inst = byPid.get(state.components[name]!.pid ?? -1);
        if (!inst) out.push({ ...base(name), ok: false, detail: 'not registered with the nameservice' });
        else await ping(name, inst.address);
      }
    } else {
      // A grid no supervisor of ours started: every worker the nameservice knows.
      const sorted = [...workers].sort(
        (a, b) => a.types.join('+').localeCompare(b.types.join('+')) || a.id.localeCompare(b.id),
      );
      for (const inst of sorted)
        await ping(`worker-${inst.types.join('+')} ${inst.id.slice(0, 15)}`, inst.address);
    }
  } finally {
    await client.close();
  }
  return out;
}

/** Stops the grid running from this state directory; returns the pids that were stopped. */
export async function stopGrid(paths: StatePaths, graceMs = 30_000): Promise<number[]> {
  const state = readState(paths);
  if (!state) return [];
  const pids = [state.supervisorPid, ...Object.values(state.components).map((c) => c.pid)].filter(isTaskgrid);
  if (isTaskgrid(state.supervisorPid)) {
    process.kill(state.supervisorPid, 'SIGTERM');
    const until = Date.now() + graceMs;
    while (isAlive(state.supervisorPid) && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
  }
  // A supervisor that died (or would not stop) may leave components behind.
  for (const pid of pids) if (isTaskgrid(pid)) process.kill(pid, 'SIGKILL');
  rmSync(stateFile(paths), { force: true });
  return pids;
}

/** Removes the state directory's data, logs and run folders; returns what it removed. */
export function removeState(paths: StatePaths): string[] {
  const removed: string[] = [];
  for (const dir of [paths.data, paths.logs, paths.run]) {
    if (existsSync(dir)) {
      rmSync(dir, { recursive: true, force: true });
      removed.push(dir);
    }
  }
  if (existsSync(paths.home) && readdirSync(paths.home).length === 0) {
    rmSync(paths.home, { recursive: true, force: true });
    removed.push(paths.home);
  }
  return removed;
}

/** Names of the components that have a log file. */
export function logComponents(paths: StatePaths): string[] {
  return logFiles(paths).map((f) => f.component);
}

/** A component's log file: its size and when it was last written (epoch ms). */
export interface LogFile {
  component: string;
  bytes: number;
  modifiedMs: number;
}

/**
 * The log files of a home, by component name. A component that is no longer part of the grid
 * (its type was removed from workers.json) keeps its log until `reset`; its date tells.
 */
export function logFiles(paths: StatePaths): LogFile[] {
  if (!existsSync(paths.logs)) return [];
  return readdirSync(paths.logs)
    .filter((f) => f.endsWith('.log'))
    .sort()
    .flatMap((f) => {
      try {
        const st = statSync(join(paths.logs, f));
        return st.isFile() ? [{ component: f.slice(0, -4), bytes: st.size, modifiedMs: st.mtimeMs }] : [];
      } catch {
        return []; // removed meanwhile
      }
    });
}

/** Options of {@link tailLog}. */
export interface TailOptions {
  lines: number;
  follow: boolean;
  /** Gets whole lines, each with its line break. */
  write: (s: string) => void;
  /** How each line is shown (default: as it is in the file). */
  format?: (line: string) => string;
  signal?: AbortSignal;
}

/**
 * The last `lines` lines of a component's log; with `follow`, keeps printing the lines appended.
 * Only the end of the file is read, however long the log has grown.
 */
export async function tailLog(paths: StatePaths, component: string, o: TailOptions): Promise<void> {
  const file = paths.logFile(component);
  if (!existsSync(file)) {
    throw new TaskGridError(
      ErrorCode.NOT_FOUND,
      `no log for "${component}" in ${paths.logs} (components with logs: ${logComponents(paths).join(', ') || 'none'})`,
    );
  }
  const format = o.format ?? ((line: string) => line);
  const show = (lines: string[]) => {
    if (lines.length > 0) o.write(lines.map((l) => `${format(l)}\n`).join(''));
  };
  const fd = openSync(file, 'r');
  try {
    let offset = fstatSync(fd).size;
    show(lastLines(fd, offset, o.lines));
    let partial = '';
    while (o.follow && !o.signal?.aborted) {
      await new Promise((r) => setTimeout(r, 250));
      let size: number;
      try {
        size = statSync(file).size;
      } catch {
        continue; // removed (reset); it may come back
      }
      if (size < offset) {
        // Truncated or replaced (logrotate's copytruncate): start again, without the old half line.
        offset = 0;
        partial = '';
      }
      if (size <= offset) continue;
      const buf = Buffer.alloc(size - offset);
      const f = openSync(file, 'r');
      try {
        readSync(f, buf, 0, buf.length, offset);
      } finally {
        closeSync(f);
      }
      offset = size;
      const parts = (partial + buf.toString('utf8')).split('\n');
      partial = parts.pop()!;
      show(parts);
    }
  } finally {
    closeSync(fd);
  }
}

/** The last `n` complete or final lines of the first `size` bytes of a file, read from its end. */
function lastLines(fd: number, size: number, n: number): string[] {
  if (n === 0 || size === 0) return [];
  const chunks: Buffer[] = [];
  let pos = size;
  let breaks = 0;
  // One line break more than lines wanted marks where the first of them starts.
  while (pos > 0 && breaks <= n) {
    const len = Math.min(64 * 1024, pos);
    pos -= len;
    const buf = Buffer.alloc(len);
    readSync(fd, buf, 0, len, pos);
    chunks.unshift(buf);
    for (const b of buf) if (b === 0x0a) breaks++;
  }
  const lines = Buffer.concat(chunks).toString('utf8').split('\n');
  if (lines.at(-1) === '') lines.pop();
  return lines.slice(-n);
}
