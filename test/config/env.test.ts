import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { buildProgram } from '../../src/cli/main.ts';
import { ConfigError, ErrorCode } from '../../src/errors.ts';
import {
  advertiseAddress,
  advertiseHost,
  CONFIG_SOURCES,
  DEFAULTS,
  findProjectRoot,
  formatHostPort,
  loadConfig,
  parseHostPort,
  parseHostPortList,
  statePaths,
  type Config,
  type ConfigFlags,
  type ConfigSource,
  type EnvSource,
} from '../../src/config/env.ts';

const ROOT = '/srv/grid';
const load = (env: EnvSource = {}, flags: ConfigFlags = {}): Config =>
  loadConfig(env, flags, { projectRoot: ROOT });

/** The ConfigError `fn` throws, checked to be one. */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    assert.equal(error.code, ErrorCode.CONFIG);
    return error;
  }
  assert.fail('expected a ConfigError, nothing was thrown');
}

test('an empty environment gives the documented defaults', () => {
  assert.deepEqual(load(), {
    nameservices: [{ host: '127.0.0.1', port: 5001 }],
    nameservicePort: 5001,
    dispatcher: undefined,
    dispatcherPort: 4000,
    workerPort: 0,
    monitoringPort: 8080,
    home: join(ROOT, '.taskgrid'),
    secret: undefined,
    advertise: undefined,
    advertisePort: undefined,
    bind: '127.0.0.1',
    logLevel: 'info',
    datagramBudget: undefined,
    maxMessageBytes: 1024 * 1024,
    allowLegacy: false,
    workerConcurrency: undefined,
    taskTimeoutMs: undefined,
    maxAttempts: undefined,
    handlerMemoryMb: undefined,
  });
});

test('the message default is the protocol limit; the datagram budget follows the bound address', async () => {
  const { LIMITS } = await import('../../src/protocol/limits.ts');
  const { defaultDatagramBudget } = await import('../../src/protocol/address.ts');
  assert.equal(DEFAULTS.maxMessageBytes, LIMITS.maxMessageBytes);
  assert.equal(defaultDatagramBudget('127.0.0.1'), LIMITS.loopbackDatagramBudget);
  assert.equal(defaultDatagramBudget('127.3.0.9'), LIMITS.loopbackDatagramBudget);
  assert.equal(defaultDatagramBudget('::1'), LIMITS.loopbackDatagramBudget);
  assert.equal(defaultDatagramBudget('0.0.0.0'), LIMITS.datagramBudget);
  assert.equal(defaultDatagramBudget('::'), LIMITS.datagramBudget);
  assert.equal(defaultDatagramBudget('10.1.2.3'), LIMITS.datagramBudget);
});

// Each variable: values it accepts (with what they become) and values it rejects.
const accepted: readonly [string, string, Partial<Config>][] = [
  ['TASKGRID_NAMESERVICE', '10.0.0.5:5001', { nameservices: [{ host: '10.0.0.5', port: 5001 }] }],
  [
    'TASKGRID_NAMESERVICE',
    'ns1:5001, ns2:6001',
    {
      nameservices: [
        { host: 'ns1', port: 5001 },
        { host: 'ns2', port: 6001 },
      ],
    },
  ],
  ['TASKGRID_NAMESERVICE_PORT', '7001', { nameservicePort: 7001 }],
  ['TASKGRID_DISPATCHER_PORT', '4100', { dispatcherPort: 4100 }],
  ['TASKGRID_DISPATCHER', 'dispatcher:4000', { dispatcher: { host: 'dispatcher', port: 4000 } }],
  ['TASKGRID_WORKER_PORT', '6000', { workerPort: 6000 }],
  ['TASKGRID_MONITORING_PORT', '0', { monitoringPort: 0 }],
  ['TASKGRID_HOME', '/var/lib/taskgrid', { home: '/var/lib/taskgrid' }],
  ['TASKGRID_HOME', 'state', { home: join(ROOT, 'state') }],
  ['TASKGRID_SECRET', 'correct horse battery staple', { secret: 'correct horse battery staple' }],
  ['TASKGRID_ADVERTISE', 'worker-7.example.net', { advertise: 'worker-7.example.net' }],
  ['TASKGRID_ADVERTISE', '[fd00::7]', { advertise: 'fd00::7' }],
  ['TASKGRID_ADVERTISE', 'fd00::7', { advertise: 'fd00::7', advertisePort: undefined }],
  ['TASKGRID_ADVERTISE', 'gw.example.net:7000', { advertise: 'gw.example.net', advertisePort: 7000 }],
  ['TASKGRID_ADVERTISE', '10.0.0.5:7000', { advertise: '10.0.0.5', advertisePort: 7000 }],
  ['TASKGRID_ADVERTISE', '[fd00::7]:7000', { advertise: 'fd00::7', advertisePort: 7000 }],
  ['TASKGRID_BIND', '0.0.0.0', { bind: '0.0.0.0' }],
  ['TASKGRID_BIND', '::', { bind: '::' }],
  ['TASKGRID_LOG_LEVEL', 'DEBUG', { logLevel: 'debug' }],
  ['TASKGRID_DATAGRAM_BUDGET', '65507', { datagramBudget: 65_507 }],
  ['TASKGRID_MAX_MESSAGE', '65536', { maxMessageBytes: 65_536 }],
  ['TASKGRID_MAX_MESSAGE', '4MiB', { maxMessageBytes: 4 * 1024 * 1024 }],
  ['TASKGRID_MAX_MESSAGE', '512 KiB', { maxMessageBytes: 512 * 1024 }],
  ['TASKGRID_ALLOW_LEGACY', '1', { allowLegacy: true }],
  ['TASKGRID_ALLOW_LEGACY', '0', { allowLegacy: false }],
  ['TASKGRID_WORKER_CONCURRENCY', '16', { workerConcurrency: 16 }],
  ['TASKGRID_TASK_TIMEOUT_MS', '30000', { taskTimeoutMs: 30_000 }],
  ['TASKGRID_MAX_ATTEMPTS', '5', { maxAttempts: 5 }],
  ['TASKGRID_HANDLER_MEMORY_MB', '256', { handlerMemoryMb: 256 }],
];

for (const [name, value, expected] of accepted) {
  test(`${name}=${JSON.stringify(value)} is read`, () => {
    const config = load({ [name]: value });
    for (const [key, want] of Object.entries(expected)) {
      assert.deepEqual(config[key as keyof Config], want, key);
    }
  });
}

const rejected: readonly [string, string, string][] = [
  ['TASKGRID_NAMESERVICE', 'ns1:5001,,ns2:5001', 'item 2 ("")'],
  ['TASKGRID_NAMESERVICE', 'ns:port', 'port "port" is not an integer 1-65535'],
  ['TASKGRID_NAMESERVICE_PORT', '-1', 'not a port (expected an integer 0-65535'],
  ['TASKGRID_NAMESERVICE_PORT', '65536', 'not a port'],
  ['TASKGRID_DISPATCHER_PORT', 'abc', 'not a port (expected an integer 0-65535'],
  ['TASKGRID_DISPATCHER_PORT', '40.5', 'not a port'],
  ['TASKGRID_DISPATCHER', 'http://dispatcher:4000', 'it is a URL'],
  ['TASKGRID_WORKER_PORT', '6e3', 'not a port'],
  ['TASKGRID_MONITORING_PORT', '80 80', 'not a port'],
  ['TASKGRID_ADVERTISE', '0.0.0.0', 'not an address other machines can reach'],
  ['TASKGRID_ADVERTISE', 'host:0', 'not an address other machines can reach'],
  ['TASKGRID_BIND', 'localhost', 'not an IP address to bind'],
  ['TASKGRID_BIND', '256.0.0.1', 'not an IP address to bind'],
  ['TASKGRID_LOG_LEVEL', 'verbose', 'expected one of fatal, error, warn, info, debug, trace, silent'],
  ['TASKGRID_DATAGRAM_BUDGET', '255', 'expected an integer number of bytes 256-65507'],
  ['TASKGRID_DATAGRAM_BUDGET', '65508', 'not a datagram budget'],
  ['TASKGRID_MAX_MESSAGE', '65535', 'not a maximum message size'],
  ['TASKGRID_MAX_MESSAGE', '65MiB', 'not a maximum message size'],
  ['TASKGRID_MAX_MESSAGE', '1MB', 'not a maximum message size'],
  ['TASKGRID_ALLOW_LEGACY', 'yes', 'expected 0 or 1'],
  ['TASKGRID_HOME', '~/.taskgrid', 'not a usable directory path'],
  ['TASKGRID_WORKER_CONCURRENCY', '0', 'not a concurrency (expected an integer 1-10000)'],
  ['TASKGRID_TASK_TIMEOUT_MS', '86400001', 'not a task timeout'],
  ['TASKGRID_MAX_ATTEMPTS', '101', 'not a number of attempts (expected an integer 1-100)'],
  ['TASKGRID_HANDLER_MEMORY_MB', '8', 'not a heap size in MiB (expected an integer 16-65536)'],
];

for (const [name, value, reason] of rejected) {
  test(`${name}=${JSON.stringify(value)} is rejected with an error naming the variable and the value`, () => {
    const error = configError(() => load({ [name]: value }));
    assert.ok(error.message.startsWith(`${name}=${JSON.stringify(value)} is `), error.message);
    assert.ok(error.message.includes(reason), `${error.message}\n  should include: ${reason}`);
  });
}

test('the port error reads as the variable, the value and what is expected', () => {
  const error = configError(() => load({ TASKGRID_DISPATCHER_PORT: 'abc' }));
  assert.match(error.message, /^TASKGRID_DISPATCHER_PORT="abc" is not a port \(expected an integer 0-65535/);
});

test('every setting has a TASKGRID_ variable, and the flag it names is an option of a command', () => {
  const options = new Set<string>();
  const visit = (cmd: Command) => {
    for (const o of cmd.options) if (o.long) options.add(o.long);
    cmd.commands.forEach(visit);
  };
  visit(buildProgram());
  assert.ok(options.has('--port') && options.has('--concurrency'), [...options].join(' '));
  for (const [key, source] of Object.entries(CONFIG_SOURCES)) {
    const { env, flag } = source as ConfigSource;
    assert.match(env, /^TASKGRID_[A-Z_]+$/, key);
    if (flag !== undefined) assert.ok(options.has(flag), `${key}: no command has ${flag}`);
  }
  assert.equal((CONFIG_SOURCES.secret as ConfigSource).flag, undefined, 'the secret is never a flag');
});

test('flags override environment variables', () => {
  const config = load(
    { TASKGRID_DISPATCHER_PORT: '4100', TASKGRID_LOG_LEVEL: 'warn', TASKGRID_ALLOW_LEGACY: '1' },
    { dispatcherPort: 4200, logLevel: 'trace', allowLegacy: false },
  );
  assert.equal(config.dispatcherPort, 4200);
  assert.equal(config.logLevel, 'trace');
  assert.equal(config.allowLegacy, false);
});

test('a flag left undefined falls back to the environment', () => {
  assert.equal(
    load({ TASKGRID_DISPATCHER_PORT: '4100' }, { dispatcherPort: undefined }).dispatcherPort,
    4100,
  );
});

test('a bad flag is named by its flag, not by the variable', () => {
  const error = configError(() => load({ TASKGRID_DISPATCHER_PORT: '4100' }, { dispatcherPort: 'x' }));
  assert.match(error.message, /^--port="x" is not a port/);
});

test('an empty home flag is refused rather than making the project root the state directory', () => {
  assert.match(
    configError(() => load({}, { home: '' })).message,
    /^--home="" is not a usable directory path/,
  );
});

test('a nameservice flag may be a list of addresses', () => {
  assert.deepEqual(load({}, { nameservice: ['a:1', 'b:2'] }).nameservices, [
    { host: 'a', port: 1 },
    { host: 'b', port: 2 },
  ]);
});

test('an empty variable counts as unset, as ${VAR:-} in Compose produces', () => {
  const config = load({ TASKGRID_SECRET: '', TASKGRID_DISPATCHER_PORT: '  ', TASKGRID_NAMESERVICE: '' });
  assert.equal(config.secret, undefined);
  assert.equal(config.dispatcherPort, 4000);
  assert.deepEqual(config.nameservices, [{ host: '127.0.0.1', port: 5001 }]);
});

test('every bad value is reported at once, one line each', () => {
  const error = configError(() =>
    load({ TASKGRID_DISPATCHER_PORT: 'abc', TASKGRID_LOG_LEVEL: 'loud', TASKGRID_BIND: 'nowhere' }),
  );
  assert.match(error.message, /^3 configuration problems:/);
  assert.match(error.message, /\n {2}- TASKGRID_DISPATCHER_PORT="abc" is not a port/);
  assert.match(error.message, /\n {2}- TASKGRID_LOG_LEVEL="loud" is not a log level/);
  assert.match(error.message, /\n {2}- TASKGRID_BIND="nowhere" is not an IP address to bind/);
});

test('TASKGRID_NAMESERVICE_PORT also moves the default nameservice address and bare hosts', () => {
  assert.deepEqual(load({ TASKGRID_NAMESERVICE_PORT: '7001' }).nameservices, [
    { host: '127.0.0.1', port: 7001 },
  ]);
  assert.deepEqual(load({ TASKGRID_NAMESERVICE_PORT: '7001', TASKGRID_NAMESERVICE: 'ns' }).nameservices, [
    { host: 'ns', port: 7001 },
  ]);
  // Port 0 (tests bind any free port) cannot be a destination: the default port stands in.
  assert.deepEqual(load({ TASKGRID_NAMESERVICE_PORT: '0' }).nameservices, [
    { host: '127.0.0.1', port: 5001 },
  ]);
});

test('a dispatcher given without a port is on the dispatcher port', () => {
  assert.deepEqual(load({ TASKGRID_DISPATCHER: 'dispatcher', TASKGRID_DISPATCHER_PORT: '4100' }).dispatcher, {
    host: 'dispatcher',
    port: 4100,
  });
});

test('a cluster secret is never quoted back in an error', () => {
  const short = configError(() => load({ TASKGRID_SECRET: 'hunter2' }));
  assert.match(short.message, /^TASKGRID_SECRET is 7 characters long \(expected at least 16/);
  assert.ok(!short.message.includes('hunter2'));
  const padded = configError(() => load({}, { secret: 'a-long-enough-secret-value\n' }));
  assert.match(padded.message, /^the secret passed to loadConfig has leading or trailing whitespace/);
  assert.ok(!padded.message.includes('a-long-enough'));
});

test('an empty secret flag turns authentication off even when the variable sets one', () => {
  assert.equal(load({ TASKGRID_SECRET: 'a-long-enough-secret-value' }, { secret: '' }).secret, undefined);
});

test('a relative project root is refused, since resolving it would depend on the working directory', () => {
  configError(() => loadConfig({}, {}, { projectRoot: 'relative/root' }));
});

test('host:port parsing accepts IPv4, hostnames and bracketed IPv6', () => {
  assert.deepEqual(parseHostPort('10.1.2.3:5001'), { host: '10.1.2.3', port: 5001 });
  assert.deepEqual(parseHostPort('nameservice:5001'), { host: 'nameservice', port: 5001 });
  assert.deepEqual(parseHostPort('taskgrid_nameservice:5001'), { host: 'taskgrid_nameservice', port: 5001 });
  assert.deepEqual(parseHostPort('ns.example.com.:1'), { host: 'ns.example.com.', port: 1 });
  assert.deepEqual(parseHostPort('[::1]:5001'), { host: '::1', port: 5001 });
  assert.deepEqual(parseHostPort('[fe80::1:2]:65535'), { host: 'fe80::1:2', port: 65_535 });
  assert.deepEqual(parseHostPort('  host:7  '), { host: 'host', port: 7 });
});

test('a bare host takes the default port when there is one', () => {
  assert.deepEqual(parseHostPort('nameservice', 5001), { host: 'nameservice', port: 5001 });
  assert.deepEqual(parseHostPort('[::1]', 5001), { host: '::1', port: 5001 });
  assert.match(configError(() => parseHostPort('nameservice')).message, /the port is missing/);
});

const garbage: readonly [string, string][] = [
  ['', 'it is empty'],
  [':5001', 'the host is missing'],
  ['host:', 'the port is missing'],
  ['host:0', 'port 0 is not an integer 1-65535'],
  ['host:65536', 'port 65536 is not an integer 1-65535'],
  ['host:50x', 'port "50x" is not an integer 1-65535'],
  ['a b:1', 'it contains whitespace'],
  ['udp://host:1', 'it is a URL'],
  ['::1:5001', 'an IPv6 address takes brackets here'],
  ['[::1', '"[" has no matching "]"'],
  ['[::1]5001', '"5001" follows "]" where ":port" belongs'],
  ['[10.0.0.1]:5', 'is not an IPv6 address in brackets'],
  ['999.1.1.1:5', 'host "999.1.1.1" is not a valid IPv4 address'],
  ['-bad-:5', 'host "-bad-" is not a valid hostname or IP address'],
  ['a..b:5', 'is not a valid hostname'],
  ['h\u00e9te:5', 'is not a valid hostname'],
];

for (const [text, reason] of garbage) {
  test(`host:port parsing rejects ${JSON.stringify(text)} and says why`, () => {
    const error = configError(() => parseHostPort(text, 5001));
    assert.ok(error.message.includes(reason), `${error.message}\n  should include: ${reason}`);
    assert.ok(error.message.includes('expected host:port'), error.message);
  });
}

test('an address list splits on commas and refuses duplicates', () => {
  assert.deepEqual(parseHostPortList('a:1,[::1]:2 , b:3'), [
    { host: 'a', port: 1 },
    { host: '::1', port: 2 },
    { host: 'b', port: 3 },
  ]);
  assert.match(configError(() => parseHostPortList('a:1,A:1')).message, /lists A:1 twice \(items 1 and 2\)/);
  assert.match(
    configError(() => parseHostPortList('a:1,b c:2')).message,
    /item 2 \("b c:2"\): it contains whitespace/,
  );
});

test('formatting an address brackets IPv6 and round-trips through parsing', () => {
  for (const text of ['10.0.0.1:5001', 'ns:1', '[::1]:5001', '[fd00::a:b]:4000']) {
    assert.equal(formatHostPort(parseHostPort(text)), text);
  }
});

test('the advertised host is the configured one, else a specific bind address, else the hostname', () => {
  const machine = { hostname: 'c0ffee123456' };
  assert.equal(advertiseHost({ advertise: 'w1.example', bind: '0.0.0.0' }, machine), 'w1.example');
  assert.equal(advertiseHost({ advertise: undefined, bind: '127.0.0.1' }, machine), '127.0.0.1');
  assert.equal(advertiseHost({ advertise: undefined, bind: '0.0.0.0' }, machine), 'c0ffee123456');
  assert.equal(advertiseHost({ advertise: undefined, bind: '::' }, machine), 'c0ffee123456');
});

test('an advertised host:port is registered as given; an advertised host alone keeps the bound port', () => {
  const machine = { hostname: 'c0ffee123456' };
  const fromEnv = (value: string) => load({ TASKGRID_ADVERTISE: value });
  assert.deepEqual(advertiseAddress(fromEnv('gw.example.net:7000'), machine, 40123), {
    host: 'gw.example.net',
    port: 7000,
  });
  assert.deepEqual(advertiseAddress(fromEnv('gw.example.net'), machine, 40123), {
    host: 'gw.example.net',
    port: 40123,
  });
  assert.deepEqual(advertiseAddress(fromEnv('[fd00::7]:7000'), machine, 40123), {
    host: 'fd00::7',
    port: 7000,
  });
  assert.deepEqual(advertiseAddress(load(), machine, 40123), { host: '127.0.0.1', port: 40123 });
  for (const bad of [
    'gw.example.net:0',
    'gw.example.net:70000',
    'gw.example.net:',
    '0.0.0.0:7000',
    '[::]:7000',
    'a b:7000',
    '[fd00::7',
  ]) {
    assert.match(configError(() => fromEnv(bad)).message, /TASKGRID_ADVERTISE/, bad);
  }
});

test('state paths put data, logs and pid files under TASKGRID_HOME', () => {
  const paths = statePaths('/srv/grid/.taskgrid');
  assert.equal(paths.data, '/srv/grid/.taskgrid/data');
  assert.equal(paths.logs, '/srv/grid/.taskgrid/logs');
  assert.equal(paths.run, '/srv/grid/.taskgrid/run');
  assert.equal(paths.pidFile('worker-sum'), '/srv/grid/.taskgrid/run/worker-sum.pid');
  assert.equal(paths.logFile('dispatcher'), '/srv/grid/.taskgrid/logs/dispatcher.log');
});

test('a component name that would leave its folder is refused', () => {
  const paths = statePaths('/srv/grid/.taskgrid');
  for (const name of ['../x', 'a/b', '.hidden', '']) {
    configError(() => paths.pidFile(name));
  }
});

test('the project root is found from inside the project and not above it', () => {
  const here = dirname(fileURLToPath(import.meta.url));
  const root = findProjectRoot(here);
  assert.equal(join(root, 'test', 'config'), here);
  assert.equal(findProjectRoot(), root);
  configError(() => findProjectRoot('/'));
});
