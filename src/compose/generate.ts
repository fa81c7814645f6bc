/**
 * Generates the Docker Compose file of a grid from its workers.json entries: nameservice,
 * dispatcher, one service per active task type, monitoring and an on-demand client. Pure and
 * deterministic: the same entries and options give the same bytes, whatever the entries' order.
 *
 * The file is kept within what `docker stack deploy` accepts (no top-level `name`, no
 * `pull_policy`, short-form `depends_on`, `deploy.replicas` for scale) except where noted in its
 * header; the `swarm` target drops the rest (the client profile, `build`, `restart`).
 */
import { isIPv4 } from 'node:net';
import { Document, isScalar, Scalar, YAMLMap, YAMLSeq } from 'yaml';
import { ConfigError } from '../errors.ts';
import { DEFAULTS } from '../config/env.ts';
import { activeTypes, type WorkerTypeEntry } from '../config/workers.ts';

/** What the file is for: `docker compose` (the default), or a Swarm stack. */
export type ComposeTarget = 'compose' | 'swarm';

/** Options of {@link generateCompose}; every one has a default. */
export interface ComposeOptions {
  /** Default `compose`. */
  readonly target?: ComposeTarget;
  /** Image every service runs, unless TASKGRID_IMAGE is set when Compose runs; default `taskgrid:local`. */
  readonly image?: string;
  /** Host address the published ports listen on; default 127.0.0.1. */
  readonly publishAddress?: string;
  /** The file the entries came from, for the header; default `workers.json`. */
  readonly source?: string;
  /** The command that regenerates the file, for the header; default `taskgrid regen-compose`. */
  readonly command?: string;
}

/** The CLI inside the image; health checks run it. */
const CLI = ['node', 'dist/src/cli/main.js'] as const;
const NETWORK = 'grid';
const DATA_VOLUME = 'dispatcher-data';

/** Service name of a task type's workers. */
export function workerServiceName(type: string): string {
  return `worker-${type}`;
}

/**
 * The services a file generated from `entries` contains, sorted: what {@link generateCompose}
 * emits, for callers that check a Compose file against workers.json.
 */
export function composeServiceNames(
  entries: readonly WorkerTypeEntry[],
  options: ComposeOptions = {},
): string[] {
  const fixed = ['dispatcher', 'monitoring', 'nameservice'];
  if ((options.target ?? 'compose') === 'compose') fixed.push('client');
  return [...fixed, ...activeTypes(entries).map((entry) => workerServiceName(entry.name))].sort(compareNames);
}

/** Plain code-unit order: the same on every machine and locale, unlike localeCompare. */
function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * A quoted string: single quotes unless the value holds one, as the project's prettier settings
 * write YAML, so that formatting the repository leaves a generated file unchanged.
 */
function quoted(value: string): Scalar<string> {
  const node = new Scalar(value);
  node.type = value.includes("'") ? Scalar.QUOTE_DOUBLE : Scalar.QUOTE_SINGLE;
  return node;
}

/** The project's prettier line width: longer flow sequences would be rewrapped by `npm run format`. */
const PRINT_WIDTH = 110;

/**
 * An exec-form command: a one-line flow sequence of quoted strings when it fits in the line
 * width at `column` (where the value starts), else a block sequence.
 */
function execForm(items: readonly string[], column: number): YAMLSeq<Scalar<string>> {
  const seq = new YAMLSeq<Scalar<string>>();
  const width = column + 2 + items.reduce((sum, item) => sum + item.length + 4, 0);
  seq.flow = width <= PRINT_WIDTH;
  for (const item of items) seq.items.push(quoted(item));
  return seq;
}

/** Environment values are all quoted, so that no value is ever read as a number or boolean. */
function environment(vars: Readonly<Record<string, string>>): Record<string, Scalar<string>> {
  const out: Record<string, Scalar<string>> = {};
  for (const key of Object.keys(vars).sort(compareNames)) out[key] = quoted(vars[key] ?? '');
  return out;
}

interface ServiceSpec {
  readonly name: string;
  readonly comment: string;
  readonly build?: boolean;
  readonly dependsOn: readonly string[];
  readonly volumes?: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly ports?: readonly string[];
  readonly command: readonly string[];
  readonly restart?: boolean;
  readonly healthcheck?: readonly string[];
  readonly replicas?: number;
  readonly expose?: readonly string[];
  readonly profiles?: readonly string[];
}

/**
 * The service as Compose wants it, keys in dclint's `service-keys-order` (image, build,
 * depends_on, volumes, environment, ports, networks, command, restart, healthcheck, then the
 * rest alphabetically).
 */
function serviceNode(spec: ServiceSpec, image: string, target: ComposeTarget): Record<string, unknown> {
  const service: Record<string, unknown> = { image };
  if (spec.build === true && target === 'compose') service.build = { context: '.', dockerfile: 'Dockerfile' };
  if (spec.dependsOn.length > 0) service.depends_on = [...spec.dependsOn].sort(compareNames);
  if (spec.volumes !== undefined) service.volumes = [...spec.volumes];
  service.environment = environment(spec.env);
  // Ports take single quotes (dclint's require-quotes-in-ports): unquoted "a:b" can read as a base-60 number in YAML 1.1.
  if (spec.ports !== undefined) service.ports = spec.ports.map(quoted);
  service.networks = [NETWORK];
  service.command = execForm(spec.command, '    command: '.length);
  // Swarm restarts tasks by itself (deploy.restart_policy defaults to "any") and ignores `restart`.
  if (spec.restart === true && target === 'compose') service.restart = 'unless-stopped';
  if (spec.healthcheck !== undefined) {
    service.healthcheck = {
      test: execForm(['CMD', ...spec.healthcheck], '      test: '.length),
      interval: DEFAULTS.container.healthcheck.interval,
      timeout: DEFAULTS.container.healthcheck.timeout,
      retries: DEFAULTS.container.healthcheck.retries,
      start_period: DEFAULTS.container.healthcheck.startPeriod,
    };
  }
  if (spec.replicas !== undefined) service.deploy = { replicas: spec.replicas };
  if (spec.expose !== undefined) service.expose = spec.expose.map(quoted);
  // A real init as PID 1 forwards SIGTERM and reaps children; node as PID 1 would do neither by default.
  service.init = true;
  if (spec.profiles !== undefined && target === 'compose') service.profiles = [...spec.profiles];
  return service;
}

function header(options: Required<ComposeOptions>): string {
  const swarm = options.target === 'swarm';
  const lines = [
    `Generated from ${options.source} by \`${options.command}\`: edit ${options.source} and regenerate, not this file.`,
    ...(swarm
      ? [
          'Swarm stack: docker stack deploy -c <this file> taskgrid. The image must be in a registry that every node',
          'pulls from (set TASKGRID_IMAGE). Clients run ad hoc on the attachable network: docker run --network taskgrid_grid.',
        ]
      : [
          'Start: docker compose -p taskgrid -f <this file> up -d --build',
          'A client: docker compose -p taskgrid -f <this file> run --rm client <command>',
        ]),
    '',
    'Services: nameservice (udp/5001), dispatcher (udp/4000; its store lives in the volume dispatcher-data at',
    'TASKGRID_HOME), one worker-<type> service per active type with deploy.replicas from workers.json, and',
    swarm
      ? 'monitoring (http/8080).'
      : 'monitoring (http/8080); the client service runs only under the "client" profile.',
    '',
    'Addresses: every component binds 0.0.0.0 in its container. The nameservice, dispatcher and monitoring',
    'advertise their service names. Workers leave TASKGRID_ADVERTISE unset and so advertise their container',
    "hostname (the container id), which Docker's DNS resolves on this network: each replica registers its own",
    'address, where the service name would be shared by all replicas. Workers listen on udp/6000 inside the',
    'network only; nothing publishes them, so replicas never clash over a host port.',
    '',
    swarm
      ? 'Published ports: the routing mesh publishes them on every node (Swarm ignores the host address in them).'
      : `Published ports listen on ${options.publishAddress} only. From the host, reach the dispatcher with`,
    swarm
      ? 'Addresses the nameservice hands out are names inside the network.'
      : 'TASKGRID_DISPATCHER=127.0.0.1:4000; the addresses the nameservice hands out are names inside the network.',
    '',
    'Authentication: export TASKGRID_SECRET (16+ characters) before starting; without it the grid runs unsigned',
    'and says so in its logs. TASKGRID_LOG_LEVEL and TASKGRID_ALLOW_LEGACY are passed through the same way.',
    '',
    'The dispatcher must stay at one replica (one SQLite store).',
    swarm
      ? 'depends_on only orders startup under Compose; Swarm restarts tasks by itself (restart_policy "any").'
      : 'Swarm: docker stack deploy rejects the client profile and ignores build and restart; for a stack,',
    ...(swarm
      ? []
      : [
          'run `taskgrid regen-compose --swarm` (docker-stack.generated.yml: no client, no build, no restart).',
        ]),
  ];
  return lines.map((line) => (line === '' ? '' : ` ${line}`)).join('\n');
}

/**
 * Generates the Compose file for `entries` (only active types get a worker service).
 *
 * @example
 * writeFileSync('docker-compose.generated.yml', generateCompose(loadWorkersFile('workers.json', { typesDir })));
 * @throws ConfigError when there is no active type, or an option is unusable.
 */
export function generateCompose(entries: readonly WorkerTypeEntry[], options: ComposeOptions = {}): string {
  const opts: Required<ComposeOptions> = {
    target: options.target ?? 'compose',
    image: options.image ?? DEFAULTS.container.image,
    publishAddress: options.publishAddress ?? DEFAULTS.container.publishAddress,
    source: options.source ?? 'workers.json',
    command: options.command ?? `taskgrid regen-compose${options.target === 'swarm' ? ' --swarm' : ''}`,
  };
  if (!/^[A-Za-z0-9._/:@-]+$/.test(opts.image)) {
    throw new ConfigError(
      `image ${JSON.stringify(opts.image)} is not an image reference (expected e.g. taskgrid:1.0.0)`,
    );
  }
  if (!isIPv4(opts.publishAddress)) {
    throw new ConfigError(
      `publish address ${JSON.stringify(opts.publishAddress)} is not an IPv4 address (expected e.g. 127.0.0.1 or 0.0.0.0)`,
    );
  }
  for (const line of [opts.source, opts.command]) {
    if (/[\r\n]/.test(line)) throw new ConfigError(`header text ${JSON.stringify(line)} must be one line`);
  }
  const workers = [...activeTypes(entries)].sort((a, b) => compareNames(a.name, b.name));
  if (workers.length === 0) {
    throw new ConfigError(`${opts.source}: no active task type, so the grid would have no workers`);
  }

  const c = DEFAULTS.container;
  const image = `\${TASKGRID_IMAGE:-${opts.image}}`;
  const ns = `nameservice:${DEFAULTS.nameservicePort}`;
  const dispatcherAddress = `dispatcher:${DEFAULTS.dispatcherPort}`;
  const common = {
    TASKGRID_ALLOW_LEGACY: '${TASKGRID_ALLOW_LEGACY:-0}',
    TASKGRID_BIND: c.bind,
    TASKGRID_LOG_LEVEL: `\${TASKGRID_LOG_LEVEL:-${DEFAULTS.logLevel}}`,
    TASKGRID_NAMESERVICE: ns,
    TASKGRID_SECRET: '${TASKGRID_SECRET:-}',
  };
  const publish = (port: number, protocol: 'udp' | 'tcp') =>
    `${opts.publishAddress}:${port}:${port}${protocol === 'udp' ? '/udp' : ''}`;
  const ping = (port: number) => [...CLI, 'ping', `127.0.0.1:${port}`];

  const specs: ServiceSpec[] = [
    {
      name: 'nameservice',
      comment:
        'Registry of live workers and dispatchers; soft state, so a restart only waits for the next heartbeats.',
      // One service builds the image; the others name the same tag, and Compose skips pulling an image a service builds.
      build: true,
      dependsOn: [],
      env: {
        ...common,
        TASKGRID_ADVERTISE: 'nameservice',
        TASKGRID_NAMESERVICE_PORT: String(DEFAULTS.nameservicePort),
      },
      ports: [publish(DEFAULTS.nameservicePort, 'udp')],
      command: ['nameservice'],
      restart: true,
      healthcheck: ping(DEFAULTS.nameservicePort),
      replicas: 1,
    },
    {
      name: 'dispatcher',
      comment: 'One replica only: the store is one SQLite database with a single writer.',
      dependsOn: ['nameservice'],
      volumes: [`${DATA_VOLUME}:${c.home}`],
      env: {
        ...common,
        TASKGRID_ADVERTISE: 'dispatcher',
        TASKGRID_DISPATCHER_PORT: String(DEFAULTS.dispatcherPort),
        TASKGRID_HOME: c.home,
      },
      ports: [publish(DEFAULTS.dispatcherPort, 'udp')],
      command: ['dispatcher'],
      restart: true,
      healthcheck: ping(DEFAULTS.dispatcherPort),
      replicas: 1,
    },
    ...workers.map((entry): ServiceSpec => ({
      name: workerServiceName(entry.name),
      comment: entry.description,
      dependsOn: ['nameservice'],
      env: {
        ...common,
        TASKGRID_WORKER_CONCURRENCY: String(entry.concurrency),
        TASKGRID_WORKER_PORT: String(c.workerPort),
        // A type's timeout and attempts are the dispatcher's to apply (it reads workers.json).
      },
      command: ['worker', entry.name, ...(entry.inline ? ['--inline'] : [])],
      restart: true,
      healthcheck: ping(c.workerPort),
      replicas: entry.replicas,
      expose: [`${c.workerPort}/udp`],
    })),
    {
      name: 'monitoring',
      comment: 'REST API, dashboard and Prometheus metrics.',
      dependsOn: ['dispatcher', 'nameservice'],
      env: {
        ...common,
        TASKGRID_ADVERTISE: 'monitoring',
        TASKGRID_DISPATCHER: dispatcherAddress,
        TASKGRID_MONITORING_PORT: String(DEFAULTS.monitoringPort),
      },
      ports: [publish(DEFAULTS.monitoringPort, 'tcp')],
      command: ['monitoring'],
      restart: true,
      healthcheck: [
        'node',
        '-e',
        `fetch("http://127.0.0.1:${DEFAULTS.monitoringPort}/healthz").then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))`,
      ],
      replicas: 1,
    },
  ];
  if (opts.target === 'compose') {
    specs.push({
      name: 'client',
      comment: 'On demand only: docker compose run --rm client <command>, e.g. send reverse hello.',
      dependsOn: ['dispatcher', 'nameservice'],
      env: { ...common, TASKGRID_DISPATCHER: dispatcherAddress },
      command: ['--help'],
      profiles: ['client'],
    });
  }
  specs.sort((a, b) => compareNames(a.name, b.name));

  const doc = new Document({
    services: Object.fromEntries(specs.map((spec) => [spec.name, serviceNode(spec, image, opts.target)])),
    networks: { [NETWORK]: opts.target === 'swarm' ? { attachable: true } : {} },
    volumes: { [DATA_VOLUME]: {} },
  });
  doc.commentBefore = header(opts);

  // Blank lines between services and before the other top-level keys, and each service's purpose above it.
  const root = doc.contents;
  if (root instanceof YAMLMap) {
    for (const top of root.items) {
      if (!isScalar(top.key)) continue;
      if (top.key.value !== 'services') top.key.spaceBefore = true;
      else if (top.value instanceof YAMLMap) {
        for (const [index, pair] of top.value.items.entries()) {
          const spec = specs[index];
          if (!isScalar(pair.key) || spec === undefined) continue;
          if (index > 0) pair.key.spaceBefore = true;
          pair.key.commentBefore = ` ${spec.comment.replace(/[\r\n]+/g, ' ')}`;
        }
      }
    }
  }
  return doc.toString({ lineWidth: 0, indentSeq: true, flowCollectionPadding: false });
}
