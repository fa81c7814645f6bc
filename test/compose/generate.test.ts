import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { format, resolveConfig } from 'prettier';
import { parse } from 'yaml';
import { ConfigError } from '../../src/errors.ts';
import { composeServiceNames, generateCompose, type ComposeOptions } from '../../src/compose/generate.ts';
import { loadWorkersFile, type WorkerTypeEntry } from '../../src/config/workers.ts';
import { startTs } from '../support/process.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const DCLINT = join(ROOT, 'node_modules', 'dclint', 'bin', 'dclint.cjs');
const DEFAULT_ENTRIES = loadWorkersFile(join(ROOT, 'workers.json'), { typesDir: join(ROOT, 'worker_types') });

type Service = Record<string, unknown> & {
  image?: string;
  build?: unknown;
  environment?: Record<string, string>;
  ports?: string[];
  expose?: string[];
  command?: string[];
  deploy?: { replicas?: number };
  healthcheck?: { test?: string[] };
  networks?: string[];
  profiles?: string[];
  restart?: string;
  depends_on?: string[];
  volumes?: string[];
};
type ComposeFile = {
  services: Record<string, Service>;
  networks?: Record<string, unknown>;
  volumes?: Record<string, unknown>;
} & Record<string, unknown>;

const compose = (entries: readonly WorkerTypeEntry[] = DEFAULT_ENTRIES, options: ComposeOptions = {}) =>
  parse(generateCompose(entries, options)) as ComposeFile;

const type = (name: string, fields: Partial<WorkerTypeEntry> = {}): WorkerTypeEntry => ({
  name,
  active: true,
  description: `The ${name} type.`,
  replicas: 1,
  concurrency: 4,
  timeoutMs: undefined,
  maxAttempts: undefined,
  inline: false,
  ...fields,
});

function service(file: ComposeFile, name: string): Service {
  const found = file.services[name];
  assert.ok(found !== undefined, `service ${name} exists`);
  return found;
}

/** Runs the real dclint CLI on `text` (written to a temp dir under a Compose file name), with the project's .dclintrc. */
function dclint(text: string): { status: number | null; output: string } {
  const dir = mkdtempSync(join(tmpdir(), 'taskgrid-compose-'));
  try {
    const file = join(dir, 'docker-compose.generated.yml');
    writeFileSync(file, text);
    const run = spawnSync(
      process.execPath,
      [DCLINT, file, '--config', join(ROOT, '.dclintrc'), '--max-warnings', '0', '--no-color'],
      { encoding: 'utf8', cwd: dir },
    );
    return { status: run.status, output: `${run.stdout}${run.stderr}` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('the generated file parses back to exactly the services workers.json asks for', () => {
  assert.deepEqual(Object.keys(compose().services).sort(), [
    'client',
    'dispatcher',
    'monitoring',
    'nameservice',
    'worker-hash',
    'worker-reverse',
    'worker-sum',
    'worker-upper',
    'worker-wait',
  ]);
  assert.deepEqual(Object.keys(compose().services), composeServiceNames(DEFAULT_ENTRIES));
});

test('a type with 3 replicas gets deploy.replicas: 3 and no published port to clash over', () => {
  const file = compose([type('sum', { replicas: 3 }), type('hash')]);
  const sum = service(file, 'worker-sum');
  assert.equal(sum.deploy?.replicas, 3);
  assert.equal(service(file, 'worker-hash').deploy?.replicas, 1);
  assert.equal(sum.ports, undefined);
  assert.deepEqual(sum.expose, ['6000/udp']);
});

test('inactive types produce no service', () => {
  const file = compose([type('sum'), type('hash', { active: false })]);
  assert.ok('worker-sum' in file.services);
  assert.ok(!('worker-hash' in file.services));
  assert.deepEqual(composeServiceNames([type('sum'), type('hash', { active: false })]), [
    'client',
    'dispatcher',
    'monitoring',
    'nameservice',
    'worker-sum',
  ]);
});

test('a workers.json with no active type is refused rather than giving a grid without workers', () => {
  assert.throws(() => generateCompose([type('sum', { active: false })]), ConfigError);
});

test('UDP ports are declared with /udp and monitoring publishes HTTP', () => {
  const file = compose();
  assert.deepEqual(service(file, 'nameservice').ports, ['127.0.0.1:5001:5001/udp']);
  assert.deepEqual(service(file, 'dispatcher').ports, ['127.0.0.1:4000:4000/udp']);
  assert.deepEqual(service(file, 'monitoring').ports, ['127.0.0.1:8080:8080']);
  for (const [name, svc] of Object.entries(file.services)) {
    if (name.startsWith('worker-')) assert.deepEqual(svc.expose, ['6000/udp'], name);
  }
});

test('the publish address is an option', () => {
  assert.deepEqual(service(compose(DEFAULT_ENTRIES, { publishAddress: '0.0.0.0' }), 'dispatcher').ports, [
    '0.0.0.0:4000:4000/udp',
  ]);
  assert.throws(() => generateCompose(DEFAULT_ENTRIES, { publishAddress: 'everywhere' }), ConfigError);
});

test('the output is deterministic, whatever the order of the entries', () => {
  const entries = [type('b', { replicas: 2 }), type('a', { timeoutMs: 1000 }), type('c', { active: false })];
  const once = generateCompose(entries);
  assert.equal(generateCompose(entries), once);
  assert.equal(generateCompose([...entries].reverse()), once);
});

test('each worker runs its type with the entry settings as environment variables', () => {
  const file = compose([
    type('sum', { concurrency: 9, timeoutMs: 1500, maxAttempts: 2 }),
    type('hash'),
    type('upper', { inline: true }),
  ]);
  const sum = service(file, 'worker-sum');
  assert.deepEqual(sum.command, ['worker', 'sum']);
  assert.deepEqual(service(file, 'worker-upper').command, ['worker', 'upper', '--inline']);
  assert.equal(sum.environment?.TASKGRID_WORKER_CONCURRENCY, '9');
  assert.equal(sum.environment?.TASKGRID_WORKER_PORT, '6000');
  // Only the dispatcher reads a type's timeout and attempts (from workers.json): a worker has no use for them.
  assert.ok(
    !('TASKGRID_TASK_TIMEOUT_MS' in (sum.environment ?? {})) &&
      !('TASKGRID_MAX_ATTEMPTS' in (sum.environment ?? {})),
    'no setting a worker ignores',
  );
  const hash = service(file, 'worker-hash').environment ?? {};
  assert.equal(hash.TASKGRID_WORKER_CONCURRENCY, '4');
});

test('every service finds the nameservice by name, binds all interfaces and passes the secret through', () => {
  for (const [name, svc] of Object.entries(compose().services)) {
    assert.equal(svc.environment?.TASKGRID_NAMESERVICE, 'nameservice:5001', name);
    assert.equal(svc.environment?.TASKGRID_BIND, '0.0.0.0', name);
    assert.equal(svc.environment?.TASKGRID_SECRET, '${TASKGRID_SECRET:-}', name);
    assert.deepEqual(svc.networks, ['grid'], name);
    assert.equal(svc.image, '${TASKGRID_IMAGE:-taskgrid:local}', name);
  }
  assert.deepEqual(Object.keys(compose().networks ?? {}), ['grid']);
});

test('workers advertise their own hostname, the fixed services their service name', () => {
  const file = compose();
  for (const [name, svc] of Object.entries(file.services)) {
    const advertise = svc.environment?.TASKGRID_ADVERTISE;
    if (name.startsWith('worker-') || name === 'client') assert.equal(advertise, undefined, name);
    else assert.equal(advertise, name);
  }
  assert.match(generateCompose(DEFAULT_ENTRIES), /advertise their container\n# hostname/);
});

test('the dispatcher keeps its store in a named volume at TASKGRID_HOME', () => {
  const file = compose();
  const dispatcher = service(file, 'dispatcher');
  assert.equal(dispatcher.environment?.TASKGRID_HOME, '/var/lib/taskgrid');
  assert.deepEqual(dispatcher.volumes, ['dispatcher-data:/var/lib/taskgrid']);
  assert.deepEqual(Object.keys(file.volumes ?? {}), ['dispatcher-data']);
  assert.equal(dispatcher.deploy?.replicas, 1);
});

test('long-running services have health checks and restart policies; the client is on demand', () => {
  const file = compose();
  const ping = (port: number) => ['CMD', 'node', 'dist/src/cli/main.js', 'ping', `127.0.0.1:${port}`];
  assert.deepEqual(service(file, 'nameservice').healthcheck?.test, ping(5001));
  assert.deepEqual(service(file, 'dispatcher').healthcheck?.test, ping(4000));
  assert.deepEqual(service(file, 'worker-sum').healthcheck?.test, ping(6000));
  assert.deepEqual(service(file, 'monitoring').healthcheck?.test?.slice(0, 3), ['CMD', 'node', '-e']);
  for (const [name, svc] of Object.entries(file.services)) {
    if (name === 'client') continue;
    assert.equal(svc.restart, 'unless-stopped', name);
  }
  const client = service(file, 'client');
  assert.deepEqual(client.profiles, ['client']);
  assert.equal(client.healthcheck, undefined);
  assert.equal(client.environment?.TASKGRID_DISPATCHER, 'dispatcher:4000');
});

test('each UDP health check is a command the CLI takes, and it passes against a live component', async () => {
  // A real nameservice stands in for whatever the check pings: the arguments are what is tested.
  const ns = startTs('src/cli/main.ts', ['nameservice', '--port', '0'], { TASKGRID_LOG_LEVEL: 'warn' });
  try {
    const { address } = await ns.nextJson<{ msg: string; address: { port: number } }>(
      (v) => v.msg === 'ready',
    );
    const file = compose();
    for (const name of ['nameservice', 'dispatcher', 'worker-reverse']) {
      const check = service(file, name).healthcheck?.test ?? [];
      assert.deepEqual(check.slice(0, 3), ['CMD', 'node', 'dist/src/cli/main.js'], name);
      const args = check.slice(3).map((a) => a.replace(/^127\.0\.0\.1:\d+$/, `127.0.0.1:${address.port}`));
      assert.ok(args.includes(`127.0.0.1:${address.port}`), `${name}: ${check.join(' ')}`);
      const run = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
        cwd: ROOT,
        encoding: 'utf8',
        timeout: 30_000,
      });
      assert.equal(run.status, 0, `${name}: ${check.join(' ')}: ${run.stderr}`);
    }
  } finally {
    await ns.stop();
  }
});

test('exactly one service builds the image that all of them run', () => {
  const builders = Object.entries(compose().services).filter(([, svc]) => svc.build !== undefined);
  assert.deepEqual(
    builders.map(([name]) => name),
    ['nameservice'],
  );
});

test('the header says the file is generated from workers.json by taskgrid regen-compose', () => {
  const text = generateCompose(DEFAULT_ENTRIES);
  assert.match(text, /^# Generated from workers\.json by `taskgrid regen-compose`/);
  assert.match(text, /for a stack,\n# run `taskgrid regen-compose --swarm` \(docker-stack\.generated\.yml/);
  const stack = generateCompose(DEFAULT_ENTRIES, { target: 'swarm' });
  assert.match(stack, /^# Generated from workers\.json by `taskgrid regen-compose --swarm`/);
});

test('taskgrid regen-compose --swarm writes the stack file that the generator makes for Swarm', () => {
  const file = join(ROOT, 'docker-stack.generated.yml');
  rmSync(file, { force: true });
  try {
    const run = spawnSync(
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', 'regen-compose', '--swarm'],
      {
        cwd: ROOT,
        encoding: 'utf8',
        timeout: 60_000,
      },
    );
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stdout + run.stderr, /wrote .*docker-stack\.generated\.yml/);
    assert.equal(
      readFileSync(file, 'utf8'),
      generateCompose(loadWorkersFile(join(ROOT, 'workers.json'), { typesDir: join(ROOT, 'worker_types') }), {
        target: 'swarm',
      }),
    );
  } finally {
    rmSync(file, { force: true });
  }
});

/** Service keys `docker stack deploy` accepts (Compose file schema v3.13 of docker/cli). */
const SWARM_SERVICE_KEYS = new Set([
  'image',
  'depends_on',
  'volumes',
  'environment',
  'ports',
  'networks',
  'command',
  'healthcheck',
  'deploy',
  'expose',
  'init',
]);

test('the swarm target keeps only what docker stack deploy accepts', () => {
  const file = compose(DEFAULT_ENTRIES, { target: 'swarm' });
  assert.deepEqual(Object.keys(file), ['services', 'networks', 'volumes']);
  assert.ok(!('client' in file.services));
  assert.deepEqual(Object.keys(file.services), composeServiceNames(DEFAULT_ENTRIES, { target: 'swarm' }));
  for (const [name, svc] of Object.entries(file.services)) {
    for (const key of Object.keys(svc)) assert.ok(SWARM_SERVICE_KEYS.has(key), `${name}.${key}`);
    for (const dependency of svc.depends_on ?? [])
      assert.equal(typeof dependency, 'string', 'short-form depends_on');
  }
  assert.deepEqual(file.networks, { grid: { attachable: true } });
});

test('the compose target differs from Swarm only by the client profile, build and restart', () => {
  const file = compose();
  assert.deepEqual(Object.keys(file), ['services', 'networks', 'volumes'], 'no top-level name');
  for (const [name, svc] of Object.entries(file.services)) {
    for (const key of Object.keys(svc)) {
      assert.ok(
        SWARM_SERVICE_KEYS.has(key) || ['build', 'restart', 'profiles'].includes(key),
        `${name}.${key}`,
      );
    }
  }
});

test('the generated file passes dclint', () => {
  const result = dclint(generateCompose(DEFAULT_ENTRIES));
  assert.equal(result.status, 0, result.output);
});

test('the generated file passes dclint with replicas, inactive types and the swarm target', () => {
  const entries = [
    type('sum', { replicas: 3, timeoutMs: 100 }),
    type('a.b_c-d'),
    type('off', { active: false }),
  ];
  for (const target of ['compose', 'swarm'] as const) {
    const result = dclint(generateCompose(entries, { target }));
    assert.equal(result.status, 0, `${target}:\n${result.output}`);
  }
});

test('dclint does catch problems in a Compose file, so a pass means something', () => {
  const result = dclint(
    'services:\n  b:\n    image: x:latest\n    ports:\n      - 8080:80\n  a:\n    image: y:1\n',
  );
  assert.notEqual(result.status, 0);
  assert.match(result.output, /service-image-require-explicit-tag/);
  assert.match(result.output, /no-unbound-port-interfaces/);
});

test('formatting the repository with prettier leaves generated files unchanged', async () => {
  const options = { ...(await resolveConfig(join(ROOT, 'docker-compose.yml'))), parser: 'yaml' };
  const long = type('a-type-name-long-enough-to-push-a-health-check-or-command-past-the-line-width', {
    timeoutMs: 5,
  });
  for (const text of [
    generateCompose(DEFAULT_ENTRIES),
    generateCompose([long, type('sum')], { target: 'swarm' }),
    readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8'),
  ]) {
    assert.equal(await format(text, options), text);
  }
});

test('the hand-kept docker-compose.yml passes dclint', () => {
  const result = dclint(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8'));
  assert.equal(result.status, 0, result.output);
});

test('the hand-kept docker-compose.yml has the services the generator makes from workers.json', () => {
  const handKept = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8')) as ComposeFile;
  assert.deepEqual(Object.keys(handKept.services).sort(), composeServiceNames(DEFAULT_ENTRIES));
});

test('the hand-kept docker-compose.yml is, apart from its header, what the generator makes', () => {
  const handKept = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8')) as unknown;
  assert.deepEqual(handKept, compose());
});
