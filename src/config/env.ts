/**
 * Component configuration: command-line flags first, then `TASKGRID_*` environment variables,
 * then the defaults in {@link DEFAULTS}. Pure: the caller passes the environment and the flags;
 * nothing here reads `process.env` or keeps state. Every invalid value is reported at once, in one
 * {@link ConfigError} whose lines each name the variable (or flag), the value and what is expected.
 */
import { existsSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../errors.ts';
import { LIMITS } from '../protocol/limits.ts';

/** Log levels, as pino names them; `silent` turns logging off. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * Every default of TaskGrid's configuration, in one place. Components and the Compose generator
 * read them from here; tests override values by passing flags, never by editing this object.
 */
export const DEFAULTS = {
  /** Port of the nameservice, and the port of a nameservice address given without one. */
  nameservicePort: 5001,
  /** Host of the nameservice when TASKGRID_NAMESERVICE is unset (its port is `nameservicePort`). */
  nameserviceHost: '127.0.0.1',
  dispatcherPort: 4000,
  /** 0 lets the operating system pick a free port, so that many workers can share a host. */
  workerPort: 0,
  monitoringPort: 8080,
  /** State directory (data/, logs/, run/), relative to the project root. */
  home: '.taskgrid',
  /** Loopback outside containers: nothing is reachable from other machines until asked for. */
  bind: '127.0.0.1',
  logLevel: 'info',
  maxMessageBytes: LIMITS.maxMessageBytes,
  allowLegacy: false,
  /** Shortest cluster secret accepted: an HMAC key shorter than this is guessable. */
  minSecretLength: 16,
  /** Per task type, from workers.json when an entry does not say. */
  replicas: 1,
  concurrency: 4,
  /** Container-side settings of the Compose file and the Docker image. */
  container: {
    /** Workers listen on a fixed port inside their container, so health checks know where to look. */
    workerPort: 6000,
    /** TASKGRID_HOME inside the image; the dispatcher's named volume is mounted here. */
    home: '/var/lib/taskgrid',
    /** Containers bind every interface: other containers reach them over the Compose network. */
    bind: '0.0.0.0',
    /** Image tag of the generated Compose file (`build` produces it; TASKGRID_IMAGE overrides it). */
    image: 'taskgrid:local',
    /** Host address the published ports listen on. */
    publishAddress: '127.0.0.1',
    /** Health checks: a component gets `startPeriod` to come up, then is unhealthy after `retries` misses. */
    healthcheck: { interval: '10s', timeout: '5s', retries: 3, startPeriod: '15s' },
  },
} as const;

/** Bounds that configuration values are checked against. */
export const BOUNDS = {
  port: { min: 0, max: 65_535 },
  datagramBudget: { min: LIMITS.minDatagramBudget, max: LIMITS.maxDatagramBudget },
  maxMessageBytes: { min: 64 * 1024, max: 64 * 1024 * 1024 },
  /** Same bounds as a task's own `timeoutMs` and `maxAttempts` in the protocol. */
  taskTimeoutMs: { min: 1, max: 86_400_000 },
  maxAttempts: { min: 1, max: 100 },
  concurrency: { min: 1, max: 10_000 },
  replicas: { min: 1, max: 1_000 },
  /** Heap of one handler thread, in MiB. */
  handlerMemoryMb: { min: 16, max: 65_536 },
} as const;

/**
 * Where each setting comes from: its environment variable, and the flag of the commands that
 * take it, which messages name when the value came from that flag (`taskgrid <command> --help`
 * lists them; each component's own port is its `--port`). A setting without a flag is set
 * through its variable only (the secret never by a flag: it would show in `ps`).
 */
export const CONFIG_SOURCES = {
  nameservice: { env: 'TASKGRID_NAMESERVICE', flag: '--nameservice' },
  nameservicePort: { env: 'TASKGRID_NAMESERVICE_PORT', flag: '--port' },
  dispatcher: { env: 'TASKGRID_DISPATCHER', flag: '--dispatcher' },
  dispatcherPort: { env: 'TASKGRID_DISPATCHER_PORT', flag: '--port' },
  workerPort: { env: 'TASKGRID_WORKER_PORT', flag: '--port' },
  monitoringPort: { env: 'TASKGRID_MONITORING_PORT', flag: '--port' },
  home: { env: 'TASKGRID_HOME', flag: '--home' },
  secret: { env: 'TASKGRID_SECRET' },
  advertise: { env: 'TASKGRID_ADVERTISE', flag: '--advertise' },
  bind: { env: 'TASKGRID_BIND', flag: '--bind' },
  logLevel: { env: 'TASKGRID_LOG_LEVEL', flag: '--log-level' },
  datagramBudget: { env: 'TASKGRID_DATAGRAM_BUDGET' },
  maxMessageBytes: { env: 'TASKGRID_MAX_MESSAGE' },
  allowLegacy: { env: 'TASKGRID_ALLOW_LEGACY' },
  workerConcurrency: { env: 'TASKGRID_WORKER_CONCURRENCY', flag: '--concurrency' },
  taskTimeoutMs: { env: 'TASKGRID_TASK_TIMEOUT_MS' },
  maxAttempts: { env: 'TASKGRID_MAX_ATTEMPTS' },
  handlerMemoryMb: { env: 'TASKGRID_HANDLER_MEMORY_MB' },
} as const satisfies Record<string, ConfigSource>;

/** A setting's environment variable, and the flag of the commands that take it, if any. */
export interface ConfigSource {
  readonly env: string;
  readonly flag?: string;
}

export type ConfigKey = keyof typeof CONFIG_SOURCES;

/** A network address: a hostname or an IP address (IPv6 without brackets) and a port. */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** The environment as the caller passes it (`process.env` fits). */
export type EnvSource = Readonly<Record<string, string | undefined>>;

/**
 * Flag values as the CLI parsed them. Strings are validated exactly like the environment
 * variables; an `undefined` flag falls back to the environment.
 */
export interface ConfigFlags {
  nameservice?: string | readonly string[] | undefined;
  nameservicePort?: string | number | undefined;
  dispatcher?: string | undefined;
  dispatcherPort?: string | number | undefined;
  workerPort?: string | number | undefined;
  monitoringPort?: string | number | undefined;
  home?: string | undefined;
  secret?: string | undefined;
  advertise?: string | undefined;
  bind?: string | undefined;
  logLevel?: string | undefined;
  datagramBudget?: string | number | undefined;
  maxMessageBytes?: string | number | undefined;
  allowLegacy?: string | boolean | undefined;
  workerConcurrency?: string | number | undefined;
  taskTimeoutMs?: string | number | undefined;
  maxAttempts?: string | number | undefined;
  handlerMemoryMb?: string | number | undefined;
}

/** The resolved configuration of one component. */
export interface Config {
  /** Every nameservice to register with and look up from (at least one). */
  readonly nameservices: readonly HostPort[];
  /** Port the nameservice listens on (0 = any free port). */
  readonly nameservicePort: number;
  /** The dispatcher's address, for clients that skip the nameservice; undefined = look it up. */
  readonly dispatcher: HostPort | undefined;
  readonly dispatcherPort: number;
  readonly workerPort: number;
  readonly monitoringPort: number;
  /** Absolute path of the state directory; see {@link statePaths}. */
  readonly home: string;
  /** Cluster secret; undefined = datagrams are not signed (components warn loudly). */
  readonly secret: string | undefined;
  /** Host other machines reach this component at; undefined = see {@link advertiseHost}. */
  readonly advertise: string | undefined;
  /**
   * Port other machines reach this component at, when TASKGRID_ADVERTISE gives one
   * (`host:port`, behind NAT, port mapping or a relay); undefined = the port it is bound to.
   */
  readonly advertisePort: number | undefined;
  /** IP address to bind (0.0.0.0 and :: bind every interface). */
  readonly bind: string;
  readonly logLevel: LogLevel;
  /**
   * TASKGRID_DATAGRAM_BUDGET; undefined = by the bound address: 60,000 bytes on loopback, 1,200
   * otherwise (src/protocol/address.ts).
   */
  readonly datagramBudget: number | undefined;
  readonly maxMessageBytes: number;
  /** Whether TaskGrid+ (legacy JSON) messages are understood. */
  readonly allowLegacy: boolean;
  /** A worker's concurrency per type; undefined = the workers.json entry's. */
  readonly workerConcurrency: number | undefined;
  /** Per-attempt task timeout; undefined = the workers.json entry's, else the dispatcher's. */
  readonly taskTimeoutMs: number | undefined;
  /** Most attempts per task; undefined = the workers.json entry's, else the dispatcher's. */
  readonly maxAttempts: number | undefined;
  /**
   * Heap limit of each of a worker's handler threads (V8's old generation), in MiB; a handler
   * that needs more fails its task and the thread is replaced. Undefined = 512.
   */
  readonly handlerMemoryMb: number | undefined;
}

/** Options of {@link loadConfig}. */
export interface LoadConfigOptions {
  /** Absolute path a relative TASKGRID_HOME is resolved against (see {@link findProjectRoot}). */
  readonly projectRoot: string;
}

type Result<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly reason: string };
const ok = <T>(value: T): Result<T> => ({ ok: true, value });
const fail = (reason: string): Result<never> => ({ ok: false, reason });

const HOST_PORT_EXPECTED = 'expected host:port, e.g. 10.0.0.5:5001, nameservice:5001 or [::1]:5001';

/** Longest value quoted back in an error message; longer values are cut, so a pasted blob stays readable. */
const MAX_QUOTED = 80;

function quote(value: unknown): string {
  const text = typeof value === 'string' ? value : String(value);
  const cut = text.length > MAX_QUOTED ? `${text.slice(0, MAX_QUOTED)}…` : text;
  return JSON.stringify(cut);
}

/** RFC 1123 labels; `_` is allowed too because Swarm names services `<stack>_<service>`. */
const HOST_LABEL = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;

function checkHostname(host: string): Result<string> {
  if (host.length === 0) return fail('the host is missing');
  const bare = host.endsWith('.') ? host.slice(0, -1) : host;
  if (/^[0-9.]+$/.test(bare)) return fail(`host ${quote(host)} is not a valid IPv4 address`);
  if (bare.length > 253 || !bare.split('.').every((label) => HOST_LABEL.test(label))) {
    return fail(`host ${quote(host)} is not a valid hostname or IP address`);
  }
  return ok(host);
}

/** A host on its own (no port): a hostname, an IPv4 address, or an IPv6 address with or without brackets. */
function checkHost(text: string): Result<string> {
  if (text.startsWith('[') && text.endsWith(']')) {
    const inner = text.slice(1, -1);
    return isIP(inner) === 6 ? ok(inner) : fail(`${quote(text)} is not an IPv6 address in brackets`);
  }
  if (isIP(text) !== 0) return ok(text);
  return checkHostname(text);
}

function checkAddressPort(text: string): Result<number> {
  if (text.length === 0) return fail('the port is missing');
  if (!/^\d{1,5}$/.test(text)) return fail(`port ${quote(text)} is not an integer 1-65535`);
  const port = Number(text);
  if (port < 1 || port > 65_535) return fail(`port ${port} is not an integer 1-65535`);
  return ok(port);
}

/** One address; reasons are clauses ("the port is missing") that callers put in their own sentence. */
function hostPortResult(input: string, defaultPort: number | undefined): Result<HostPort> {
  const text = input.trim();
  if (text.length === 0) return fail('it is empty');
  if (/\s/.test(text)) return fail('it contains whitespace');
  if (text.includes('://')) return fail('it is a URL');
  const withDefault = (host: Result<string>): Result<HostPort> => {
    if (!host.ok) return host;
    if (defaultPort === undefined || defaultPort === 0) return fail('the port is missing');
    return ok({ host: host.value, port: defaultPort });
  };
  const both = (host: Result<string>, port: Result<number>): Result<HostPort> => {
    if (!host.ok) return host;
    if (!port.ok) return port;
    return ok({ host: host.value, port: port.value });
  };

  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) return fail('"[" has no matching "]"');
    const host = checkHost(text.slice(0, close + 1));
    const rest = text.slice(close + 1);
    if (rest.length === 0) return withDefault(host);
    if (!rest.startsWith(':')) return fail(`${quote(rest)} follows "]" where ":port" belongs`);
    return both(host, checkAddressPort(rest.slice(1)));
  }
  const colons = text.split(':').length - 1;
  if (colons === 0) return withDefault(checkHost(text));
  if (colons === 1) {
    const [host = '', port = ''] = text.split(':');
    return both(checkHost(host), checkAddressPort(port));
  }
  // "::1:5001" is both a valid IPv6 address and, to a human, ::1 on port 5001: demand brackets, never guess.
  return fail('an IPv6 address takes brackets here, as in [::1]:5001 or [::1]');
}

/**
 * Parses one address: `host:port`, `[ipv6]:port`, or a bare host (`[ipv6]` in brackets) when a
 * `defaultPort` is given. An IPv6 address always takes brackets, since `::1:5001` is ambiguous. The host is a hostname or an IP address; the port is 1-65535.
 *
 * @example parseHostPort('[::1]:5001') // { host: '::1', port: 5001 }
 * @example parseHostPort('nameservice', 5001) // { host: 'nameservice', port: 5001 }
 * @throws ConfigError naming the text and what is wrong with it.
 */
export function parseHostPort(text: string, defaultPort?: number): HostPort {
  const result = hostPortResult(text, defaultPort);
  if (!result.ok)
    throw new ConfigError(`${quote(text)} is not a valid address: ${result.reason} (${HOST_PORT_EXPECTED})`);
  return result.value;
}

function hostPortListResult(text: string, defaultPort: number | undefined): Result<readonly HostPort[]> {
  const items = text.split(',').map((item) => item.trim());
  const out: HostPort[] = [];
  const seen = new Map<string, number>();
  for (const [index, item] of items.entries()) {
    const parsed = hostPortResult(item, defaultPort);
    if (!parsed.ok) {
      return items.length === 1 ? parsed : fail(`item ${index + 1} (${quote(item)}): ${parsed.reason}`);
    }
    const key = formatHostPort(parsed.value).toLowerCase();
    const previous = seen.get(key);
    if (previous !== undefined) {
      return fail(`it lists ${formatHostPort(parsed.value)} twice (items ${previous + 1} and ${index + 1})`);
    }
    seen.set(key, index);
    out.push(parsed.value);
  }
  return ok(out);
}

/**
 * Parses a comma-separated list of addresses (see {@link parseHostPort}); at least one, no
 * duplicates, whitespace around items ignored.
 *
 * @example parseHostPortList('ns1:5001, [::1]:5001') // [{ host: 'ns1', port: 5001 }, { host: '::1', port: 5001 }]
 * @throws ConfigError naming the text, the bad item and what is wrong with it.
 */
export function parseHostPortList(text: string, defaultPort?: number): readonly HostPort[] {
  const result = hostPortListResult(text, defaultPort);
  if (!result.ok) {
    throw new ConfigError(
      `${quote(text)} is not a valid address list: ${result.reason} (${HOST_PORT_EXPECTED}, comma-separated)`,
    );
  }
  return result.value;
}

/** `host:port`, with brackets around an IPv6 host: the inverse of {@link parseHostPort}. */
export function formatHostPort(address: HostPort): string {
  return isIP(address.host) === 6 ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

function isWildcard(address: string): boolean {
  return address === '0.0.0.0' || address === '::';
}

/**
 * The host a component registers so that others can reach it: TASKGRID_ADVERTISE when set;
 * else the bound address when it is a specific one (127.0.0.1 locally); else, bound to every
 * interface as in a container, the machine's hostname. In Compose each replica's hostname is its
 * own container id, which Docker's DNS resolves on the project network, so replicas of one
 * worker service register distinct addresses (the service name would be shared by all of them).
 *
 * @param machine the machine's identity, e.g. `{ hostname: os.hostname() }`.
 */
export function advertiseHost(
  config: Pick<Config, 'advertise' | 'bind'>,
  machine: { readonly hostname: string },
): string {
  if (config.advertise !== undefined) return config.advertise;
  if (!isWildcard(config.bind)) return config.bind;
  return machine.hostname;
}

/**
 * The address a component registers: {@link advertiseHost}, and the port TASKGRID_ADVERTISE
 * gave (`host:port`) or else `boundPort`, the port the component's socket is bound to.
 */
export function advertiseAddress(
  config: Pick<Config, 'advertise' | 'advertisePort' | 'bind'>,
  machine: { readonly hostname: string },
  boundPort: number,
): HostPort {
  return { host: advertiseHost(config, machine), port: config.advertisePort ?? boundPort };
}

/**
 * TASKGRID_ADVERTISE: a host alone (`w1.example`, `10.0.0.5`, `fd00::7`, `[fd00::7]`) or a host
 * and port (`w1.example:7000`, `10.0.0.5:7000`, `[fd00::7]:7000`). A bare IPv6 address is a host.
 */
function advertiseResult(text: string): Result<{ host: string; port?: number }> {
  if (isIP(text) !== 0) return ok({ host: text });
  const bracketed = /^\[([^\]]*)\]:(.*)$/.exec(text);
  const colon = text.lastIndexOf(':');
  if (!bracketed && (colon < 0 || text.startsWith('['))) {
    const host = checkHost(text);
    return host.ok ? ok({ host: host.value }) : host;
  }
  const hostText = bracketed ? `[${bracketed[1] ?? ''}]` : text.slice(0, colon);
  const portText = bracketed ? (bracketed[2] ?? '') : text.slice(colon + 1);
  const host = checkHost(hostText);
  if (!host.ok) return host;
  const port = checkAddressPort(portText);
  if (!port.ok) return port;
  return ok({ host: host.value, port: port.value });
}

/** The state directory's layout. */
export interface StatePaths {
  /** The state directory itself (TASKGRID_HOME). */
  readonly home: string;
  /** Durable data: the dispatcher's store. */
  readonly data: string;
  /** Log files of components started in the background. */
  readonly logs: string;
  /** Pid files of components started in the background. */
  readonly run: string;
  /** `run/<component>.pid`. */
  pidFile(component: string): string;
  /** `logs/<component>.log`. */
  logFile(component: string): string;
}

/** A component's name as used in file names: no separators, no leading dot, so it cannot leave its folder. */
const COMPONENT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

function componentFile(folder: string, component: string, extension: string): string {
  if (!COMPONENT_NAME.test(component)) {
    throw new ConfigError(
      `component name ${quote(component)} cannot name a file (expected letters, digits, "_", "-", ".")`,
    );
  }
  return join(folder, `${component}${extension}`);
}

/**
 * The paths inside a state directory. Pure: creates nothing.
 *
 * @example statePaths('/srv/grid/.taskgrid').pidFile('dispatcher') // '/srv/grid/.taskgrid/run/dispatcher.pid'
 */
export function statePaths(home: string): StatePaths {
  const data = join(home, 'data');
  const logs = join(home, 'logs');
  const run = join(home, 'run');
  return {
    home,
    data,
    logs,
    run,
    pidFile: (component) => componentFile(run, component, '.pid'),
    logFile: (component) => componentFile(logs, component, '.log'),
  };
}

/**
 * The project root: the nearest folder at or above `start` whose package.json is TaskGrid's.
 * The default start is this module's folder, which works from the sources, from dist/ and in the
 * Docker image alike.
 *
 * @throws ConfigError when no such folder exists.
 */
export function findProjectRoot(start: string = dirname(fileURLToPath(import.meta.url))): string {
  let dir = resolve(start);
  for (;;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      try {
        const parsed: unknown = JSON.parse(readFileSync(manifest, 'utf8'));
        if (typeof parsed === 'object' && parsed !== null && 'name' in parsed && parsed.name === 'taskgrid') {
          return dir;
        }
      } catch {
        // an unreadable or foreign package.json: keep looking above it
      }
    }
    const parent = dirname(dir);
    if (parent === dir)
      throw new ConfigError(`no TaskGrid project (package.json named "taskgrid") at or above ${start}`);
    dir = parent;
  }
}

/** One raw value and where it came from, for error messages. */
interface Raw {
  readonly label: string;
  readonly value: string | number | boolean;
}

type FlagValue = string | number | boolean | readonly string[];

function integerResult(value: string | number | boolean, min: number, max: number): Result<number> {
  let n: number;
  if (typeof value === 'number') n = value;
  else if (typeof value === 'string' && /^\d{1,16}$/.test(value.trim())) n = Number(value.trim());
  else return fail('not an integer');
  if (!Number.isSafeInteger(n) || n < min || n > max) return fail('out of range');
  return ok(n);
}

const BYTE_UNITS: Readonly<Record<string, number>> = { '': 1, b: 1, kib: 1024, mib: 1024 * 1024 };

function bytesResult(value: string | number | boolean, min: number, max: number): Result<number> {
  if (typeof value === 'number') return integerResult(value, min, max);
  if (typeof value !== 'string') return fail('not a size');
  const match = /^(\d{1,12})\s*([A-Za-z]*)$/.exec(value.trim());
  const unit = BYTE_UNITS[(match?.[2] ?? '').toLowerCase()];
  if (match === null || unit === undefined) return fail('not a size');
  return integerResult(Number(match[1]) * unit, min, max);
}

function booleanResult(value: string | number | boolean): Result<boolean> {
  if (typeof value === 'boolean') return ok(value);
  const text = String(value).trim().toLowerCase();
  if (text === '1' || text === 'true') return ok(true);
  if (text === '0' || text === 'false') return ok(false);
  return fail('not a boolean');
}

/**
 * Resolves a component's configuration: each setting from its flag if given, else its
 * environment variable if set and not empty, else its default. Validates everything and
 * reports every problem at once.
 *
 * @example
 * const config = loadConfig(process.env, { dispatcherPort: opts.port }, { projectRoot: findProjectRoot() });
 * @throws ConfigError listing each bad value, e.g.
 *   `TASKGRID_DISPATCHER_PORT="abc" is not a port (expected an integer 0-65535)`.
 */
export function loadConfig(env: EnvSource, flags: ConfigFlags, options: LoadConfigOptions): Config {
  const problems: string[] = [];

  const raw = (key: ConfigKey): Raw | undefined => {
    const flag: FlagValue | undefined = flags[key];
    if (flag !== undefined) {
      const value = typeof flag === 'object' ? flag.join(',') : flag;
      const source: ConfigSource = CONFIG_SOURCES[key];
      return { label: `${source.flag ?? source.env}=${quote(value)}`, value };
    }
    const name = CONFIG_SOURCES[key].env;
    const value = env[name];
    // An empty variable counts as unset, as `${VAR:-}` in Compose files produces.
    if (value === undefined || value.trim() === '') return undefined;
    return { label: `${name}=${quote(value)}`, value };
  };

  function setting<T>(
    key: ConfigKey,
    fallback: T,
    check: (value: string | number | boolean) => Result<T>,
    expected: string,
  ): T {
    const source = raw(key);
    if (source === undefined) return fallback;
    const result = check(source.value);
    if (result.ok) return result.value;
    problems.push(`${source.label} is ${expected}`);
    return fallback;
  }

  const port = (key: ConfigKey, fallback: number): number =>
    setting(
      key,
      fallback,
      (v) => integerResult(v, BOUNDS.port.min, BOUNDS.port.max),
      `not a port (expected an integer ${BOUNDS.port.min}-${BOUNDS.port.max}; 0 = any free port)`,
    );
  const bounded = (key: ConfigKey, what: string, bounds: { readonly min: number; readonly max: number }) =>
    setting<number | undefined>(
      key,
      undefined,
      (v) => integerResult(v, bounds.min, bounds.max),
      `not ${what} (expected an integer ${bounds.min}-${bounds.max})`,
    );

  const nameservicePort = port('nameservicePort', DEFAULTS.nameservicePort);
  const dispatcherPort = port('dispatcherPort', DEFAULTS.dispatcherPort);
  const workerPort = port('workerPort', DEFAULTS.workerPort);
  const monitoringPort = port('monitoringPort', DEFAULTS.monitoringPort);

  // A nameservice given without a port, or not given at all, is on the nameservice port this
  // same environment configures, so that `TASKGRID_NAMESERVICE_PORT=7001` alone moves a local grid.
  const nameserviceDefaultPort = nameservicePort === 0 ? DEFAULTS.nameservicePort : nameservicePort;
  const nameservices = ((): readonly HostPort[] => {
    const source = raw('nameservice');
    const fallback = [{ host: DEFAULTS.nameserviceHost, port: nameserviceDefaultPort }];
    if (source === undefined) return fallback;
    const result = hostPortListResult(String(source.value), nameserviceDefaultPort);
    if (result.ok) return result.value;
    problems.push(
      `${source.label} is not a nameservice address or list: ${result.reason} (${HOST_PORT_EXPECTED}, comma-separated)`,
    );
    return fallback;
  })();
  const dispatcher = ((): HostPort | undefined => {
    const source = raw('dispatcher');
    if (source === undefined) return undefined;
    const defaultPort = dispatcherPort === 0 ? DEFAULTS.dispatcherPort : dispatcherPort;
    const result = hostPortResult(String(source.value), defaultPort);
    if (result.ok) return result.value;
    problems.push(`${source.label} is not a dispatcher address: ${result.reason} (${HOST_PORT_EXPECTED})`);
    return undefined;
  })();

  const home = setting<string>(
    'home',
    DEFAULTS.home,
    (v) => {
      const text = String(v).trim();
      // "~" is the shell's to expand; taken literally it would make a folder named "~" in the project.
      return text === '' || text.includes('\0') || text.startsWith('~') ? fail('bad path') : ok(text);
    },
    'not a usable directory path (expected an absolute path, or one relative to the project root; "~" is not expanded)',
  );
  if (!isAbsolute(options.projectRoot)) {
    problems.push(`project root ${quote(options.projectRoot)} is not an absolute path`);
  }

  const secret = ((): string | undefined => {
    // Read directly: a secret is never quoted back in a message, and flags may clear it with "".
    const flag = flags.secret;
    const fromFlag = flag !== undefined;
    const value = fromFlag ? flag : env[CONFIG_SOURCES.secret.env];
    // No command takes the secret as a flag (it would show in `ps`); a program may pass one.
    const label = fromFlag ? 'the secret passed to loadConfig' : CONFIG_SOURCES.secret.env;
    if (value === undefined || value === '') return undefined;
    if (value.trim() !== value) {
      // Two hosts whose secrets differ only by a stray newline fail every signature; say so here.
      problems.push(
        `${label} has leading or trailing whitespace (expected the secret alone; value not shown)`,
      );
      return undefined;
    }
    if (value.length < DEFAULTS.minSecretLength) {
      problems.push(
        `${label} is ${value.length} characters long (expected at least ${DEFAULTS.minSecretLength}, or empty for no authentication; value not shown)`,
      );
      return undefined;
    }
    return value;
  })();

  const advertised = setting<{ host: string; port?: number } | undefined>(
    'advertise',
    undefined,
    (v) => {
      const parsed = advertiseResult(String(v).trim());
      if (parsed.ok && isWildcard(parsed.value.host)) return fail('wildcard');
      return parsed;
    },
    'not an address other machines can reach (expected a hostname or an IP address, optionally with a port: host, host:port or [v6]:port; not 0.0.0.0 or ::)',
  );
  const advertise = advertised?.host;
  const advertisePort = advertised?.port;

  const bind = setting<string>(
    'bind',
    DEFAULTS.bind,
    (v) => {
      const text = String(v).trim();
      const inner = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
      return isIP(inner) !== 0 ? ok(inner) : fail('not an IP');
    },
    'not an IP address to bind (expected e.g. 127.0.0.1, 0.0.0.0 or ::)',
  );

  const logLevel = setting<LogLevel>(
    'logLevel',
    DEFAULTS.logLevel,
    (v) => {
      const text = String(v).trim().toLowerCase();
      const level = LOG_LEVELS.find((l) => l === text);
      return level === undefined ? fail('unknown level') : ok(level);
    },
    `not a log level (expected one of ${LOG_LEVELS.join(', ')})`,
  );

  const datagramBudget = setting<number | undefined>(
    'datagramBudget',
    undefined,
    (v) => integerResult(v, BOUNDS.datagramBudget.min, BOUNDS.datagramBudget.max),
    `not a datagram budget (expected an integer number of bytes ${BOUNDS.datagramBudget.min}-${BOUNDS.datagramBudget.max})`,
  );

  const maxMessageBytes = setting<number>(
    'maxMessageBytes',
    DEFAULTS.maxMessageBytes,
    (v) => bytesResult(v, BOUNDS.maxMessageBytes.min, BOUNDS.maxMessageBytes.max),
    `not a maximum message size (expected bytes ${BOUNDS.maxMessageBytes.min}-${BOUNDS.maxMessageBytes.max}, or with a unit, 64KiB-64MiB)`,
  );

  const allowLegacy = setting<boolean>(
    'allowLegacy',
    DEFAULTS.allowLegacy,
    booleanResult,
    'not a switch (expected 0 or 1)',
  );

  const workerConcurrency = bounded('workerConcurrency', 'a concurrency', BOUNDS.concurrency);
  const taskTimeoutMs = bounded('taskTimeoutMs', 'a task timeout in milliseconds', BOUNDS.taskTimeoutMs);
  const maxAttempts = bounded('maxAttempts', 'a number of attempts', BOUNDS.maxAttempts);
  const handlerMemoryMb = bounded('handlerMemoryMb', 'a heap size in MiB', BOUNDS.handlerMemoryMb);

  if (problems.length === 1) throw new ConfigError(problems[0] ?? '');
  if (problems.length > 1) {
    throw new ConfigError(
      `${problems.length} configuration problems:\n${problems.map((p) => `  - ${p}`).join('\n')}`,
    );
  }

  return {
    nameservices,
    nameservicePort,
    dispatcher,
    dispatcherPort,
    workerPort,
    monitoringPort,
    home: resolve(options.projectRoot, home),
    secret,
    advertise,
    advertisePort,
    bind,
    logLevel,
    datagramBudget,
    maxMessageBytes,
    allowLegacy,
    workerConcurrency,
    taskTimeoutMs,
    maxAttempts,
    handlerMemoryMb,
  };
}

/** The warning of a grid without a cluster secret. */
export const UNSIGNED_WARNING =
  'TASKGRID_SECRET is not set: datagrams are NOT authenticated; anyone who can reach this port can submit, register or forge results';

/**
 * Set by a local grid's supervisor for its components once it has given
 * {@link UNSIGNED_WARNING} itself, so that a grid of nine processes does not print it nine times.
 */
export const UNSIGNED_WARNED_ENV = 'TASKGRID_SECRET_WARNED';

/**
 * Set to `1` by a local grid's supervisor for its components: each runs in a process group of
 * its own (so that Ctrl-C reaches the supervisor alone, which stops them in order), and stops
 * when its standard input, a pipe from the supervisor, closes: the supervisor is gone, even
 * killed with SIGKILL, and nothing else would stop the component.
 */
export const SUPERVISED_ENV = 'TASKGRID_SUPERVISED';
