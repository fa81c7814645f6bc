/**
 * Chaos: the monitoring REST API (`taskgrid monitoring`, a real process in front of a real
 * grid) under malformed requests, sent as raw HTTP over TCP so that nothing on the way
 * normalises them: bad JSON, huge bodies, bad ids, path tricks (../, encoded slashes, NUL),
 * wrong methods, bad query parameters, then a burst of random mutations of them. Every one must
 * get a 4xx answer with a TG_ERR_* code (never a 5xx, never a file from outside the dashboard),
 * the process must stay up, and afterwards the API must still submit a task and show its result.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import net from 'node:net';
import { test } from 'node:test';
import { report, scale } from '../support/chaos.ts';
import { Grid } from '../support/grid.ts';
import { rssMb, startTs, type Child } from '../support/process.ts';

const FUZZ = scale(600, 6_000);

interface Answer {
  status: number;
  headers: string;
  body: string;
}

/**
 * Sends `request` as is over a new TCP connection, in 64 KiB pieces, and reads the answer: up to
 * its Content-Length (or the end of a chunked body), or until the server closes. Stops sending
 * as soon as an answer arrives (a server refusing a huge body answers before reading it; were
 * the rest sent, its reset would discard the answer).
 */
function raw(port: number, request: Buffer, timeoutMs = 10_000): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let settled = false;
    const done = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.destroy();
      const text = Buffer.concat(chunks).toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      if (!m) {
        reject(
          new Error(
            `no HTTP answer to ${JSON.stringify(request.toString('latin1', 0, 120))}: ${JSON.stringify(text.slice(0, 200))}`,
          ),
        );
        return;
      }
      const split = text.indexOf('\r\n\r\n');
      resolve({ status: Number(m[1]), headers: text.slice(0, split), body: text.slice(split + 4) });
    };
    const complete = (): boolean => {
      const text = Buffer.concat(chunks).toString('latin1');
      const split = text.indexOf('\r\n\r\n');
      if (split < 0) return false;
      const head = text.slice(0, split);
      const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
      if (length) return text.length - split - 4 >= Number(length[1]);
      if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) return text.endsWith('0\r\n\r\n');
      return /^HTTP\/1\.[01] (1\d\d|204|304)/.test(head);
    };
    const timer = setTimeout(done, timeoutMs);
    s.on('data', (d: Buffer) => {
      chunks.push(d);
      if (complete()) done();
    });
    s.on('end', done);
    s.on('close', done);
    s.on('error', done);
    const send = async (): Promise<void> => {
      // The head first, then the body piece by piece with a pause between, so that an early
      // answer is read before the server's close could reset the connection.
      const split = request.indexOf('\r\n\r\n');
      const head = split < 0 ? request.length : split + 4;
      const pieces = [request.subarray(0, head)];
      for (let at = head; at < request.length; at += 64 * 1024)
        pieces.push(request.subarray(at, at + 64 * 1024));
      for (const [k, piece] of pieces.entries()) {
        if (chunks.length > 0 || settled) break;
        const ok = await new Promise<boolean>((r) => s.write(piece, (err) => r(!err)));
        if (!ok) break;
        if (k < pieces.length - 1) await new Promise((r) => setTimeout(r, k === 0 ? 50 : 5));
      }
    };
    s.on('connect', () => void send());
  });
}

function req(
  method: string,
  path: string,
  opts: { body?: string | Buffer; type?: string; headers?: string[] } = {},
): Buffer {
  const body = opts.body === undefined ? Buffer.alloc(0) : Buffer.from(opts.body);
  const head = [
    `${method} ${path} HTTP/1.1`,
    'Host: 127.0.0.1',
    'Connection: close',
    ...(opts.type ? [`Content-Type: ${opts.type}`] : []),
    ...(opts.body !== undefined ? [`Content-Length: ${body.length}`] : []),
    ...(opts.headers ?? []),
  ].join('\r\n');
  return Buffer.concat([Buffer.from(`${head}\r\n\r\n`, 'latin1'), body]);
}

const JSON_TYPE = 'application/json';

/** Malformed requests, each with what it probes. */
function cases(): { what: string; request: Buffer }[] {
  const post = (body: string | Buffer, type = JSON_TYPE) => req('POST', '/api/tasks', { body, type });
  return [
    // bad JSON and bad bodies
    { what: 'truncated JSON', request: post('{"type":') },
    { what: 'not JSON', request: post('hello') },
    { what: 'JSON array', request: post('[]') },
    { what: 'JSON null', request: post('null') },
    { what: 'deep nesting', request: post('['.repeat(50_000) + ']'.repeat(50_000)) },
    { what: 'number type', request: post('{"type":5,"payload":"x"}') },
    { what: 'object payload', request: post('{"type":"reverse","payload":{}}') },
    { what: 'unknown field', request: post('{"type":"reverse","payload":"x","evil":1}') },
    { what: '__proto__ field', request: post('{"type":"reverse","payload":"x","__proto__":{"admin":true}}') },
    { what: 'path as type', request: post('{"type":"../../etc/passwd","payload":"x"}') },
    { what: 'NUL in type', request: post('{"type":"rev\\u0000erse","payload":"x"}') },
    { what: 'bad priority', request: post('{"type":"reverse","payload":"x","priority":1e999}') },
    { what: 'invalid UTF-8', request: post(Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d])) },
    { what: 'empty body', request: post('') },
    { what: 'wrong content type', request: post('{"type":"reverse","payload":"x"}', 'text/plain') },
    {
      what: 'no content type',
      request: req('POST', '/api/tasks', { body: '{"type":"reverse","payload":"x"}' }),
    },
    {
      what: 'huge body (4 MiB)',
      request: post(`{"type":"reverse","payload":"${'x'.repeat(4 * 1024 * 1024)}"}`),
    },
    {
      what: 'huge chunked body',
      request: Buffer.concat([
        Buffer.from(
          'POST /api/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n',
        ),
        ...Array.from({ length: 40 }, () =>
          Buffer.from(`${(100_000).toString(16)}\r\n${'y'.repeat(100_000)}\r\n`),
        ),
        Buffer.from('0\r\n\r\n'),
      ]),
    },
    {
      what: 'body on a query parameter',
      request: req('POST', '/api/tasks?x=1', { body: '{"type":"reverse","payload":"x"}', type: JSON_TYPE }),
    },
    {
      what: 'cross-origin POST',
      request: req('POST', '/api/tasks', {
        body: '{"type":"reverse","payload":"x"}',
        type: JSON_TYPE,
        headers: ['Origin: http://evil.example'],
      }),
    },
    {
      what: 'opaque-origin POST',
      request: req('POST', '/api/tasks', {
        body: '{"type":"reverse","payload":"x"}',
        type: JSON_TYPE,
        headers: ['Origin: null'],
      }),
    },
    // bad ids
    ...[
      'abc',
      '-1',
      '0',
      '1e3',
      '1.5',
      '99999999999999999999',
      '0x10',
      '%20',
      '1%00',
      '%',
      '%zz',
      '1;2',
      "1'OR'1'='1",
    ].map((id) => ({
      what: `task id ${id}`,
      request: req('GET', `/api/tasks/${id}`),
    })),
    { what: 'unknown task', request: req('GET', '/api/tasks/987654321') },
    { what: 'cancel unknown task', request: req('POST', '/api/tasks/987654321/cancel') },
    { what: 'retry bad id', request: req('POST', '/api/tasks/abc/retry') },
    // path tricks
    ...[
      '/api/../etc/passwd',
      '/../../../../etc/passwd',
      '/%2e%2e/%2e%2e/%2e%2e/etc/passwd',
      '/..%2f..%2f..%2fetc%2fpasswd',
      '/api/tasks/..%2f..%2fpackage.json',
      '/api%2ftasks',
      '/api/tasks/1%2fcancel',
      '//etc/passwd',
      '/app.js/../../package.json',
      '/%00',
      '/api/tasks%00',
      '/api/logs/../../package.json',
      '/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd',
      `/${'a/'.repeat(2_000)}`,
      '/api/nope',
      '/api/tasks/1/cancel/extra',
    ].map((path) => ({ what: `path ${path.slice(0, 60)}`, request: req('GET', path) })),
    ...['g127.0.0.1', '127.0.e.1', '_27.0.0.1', '1.2.3.4.5', '[::1', 'a b'].map((host) => ({
      what: `Host: ${host}`,
      request: Buffer.from(`GET /api/stats HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`, 'latin1'),
    })),
    {
      what: 'no Host',
      request: Buffer.from('GET /api/stats HTTP/1.1\r\nConnection: close\r\n\r\n', 'latin1'),
    },
    {
      what: 'raw NUL in path',
      request: Buffer.from(
        'GET /api/tasks/1\0 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n',
        'latin1',
      ),
    },
    // wrong methods
    ...[
      ['DELETE', '/api/tasks'],
      ['PUT', '/api/tasks/1'],
      ['PATCH', '/api/tasks/1'],
      ['DELETE', '/api/tasks/1'],
      ['GET', '/api/tasks/1/cancel'],
      ['GET', '/api/tasks/1/retry'],
      ['POST', '/api/health'],
      ['POST', '/api/stats'],
      ['PUT', '/metrics'],
      ['TRACE', '/api/tasks'],
      ['FOO', '/api/tasks'],
    ].map(([m, p]) => ({ what: `${m} ${p}`, request: req(m!, p!) })),
    // bad query parameters
    ...[
      '/api/tasks?limit=abc',
      '/api/tasks?limit=-1',
      '/api/tasks?limit=0',
      '/api/tasks?limit=100000',
      '/api/tasks?limit=1e3',
      '/api/tasks?limit=1&limit=2',
      '/api/tasks?status=bogus',
      '/api/tasks?type=../../etc',
      `/api/tasks?cursor=${'c'.repeat(5_000)}`,
      '/api/tasks?cursor=%zz',
      '/api/tasks?%zz=1',
      '/api/tasks?x=1',
      '/api/tasks?status=queued%00',
      '/api/stats?x=1',
      '/api/stats/history?since=yesterday',
      '/api/health?x=1',
      '/api/workers?type=%00',
      '/api/events?x=1',
      '/api/tasks/1?payload=yes',
      '/api/logs?component=../../etc/passwd',
      '/api/logs?component=..%2F..%2Fetc%2Fpasswd',
      '/api/logs?component=a%00b',
      '/api/logs?component=dispatcher&lines=abc',
      '/api/logs?component=dispatcher&lines=-5',
      '/api/logs?component=dispatcher&lines=99999999999',
    ].map((path) => ({ what: `query ${path.slice(0, 60)}`, request: req('GET', path) })),
  ];
}

/** A random mutation of one of the malformed requests (or of a good one). */
function mutate(base: Buffer[]): Buffer {
  const b = Buffer.from(base[randomInt(base.length)]!.subarray(0, 2_000));
  switch (randomInt(4)) {
    case 0:
      for (let k = 0; k < 1 + randomInt(4); k++) b[randomInt(b.length)] = randomInt(32, 127);
      return b;
    case 1: {
      // Mutate only the path: keep the request line parseable.
      const line = b.toString('latin1').split('\r\n')[0]!;
      const chars = '/%.\\?&=#;:@~0123456789abcdefABCDEF-_ ';
      const path = Array.from({ length: randomInt(1, 80) }, () => chars[randomInt(chars.length)])
        .join('')
        .replace(/ /g, '%20');
      return req(line.split(' ')[0] ?? 'GET', `/${path}`);
    }
    case 2:
      return req(
        ['GET', 'POST', 'PUT', 'HEAD', 'OPTIONS'][randomInt(5)]!,
        `/api/tasks/${randomBytes(randomInt(1, 12)).toString('base64url')}`,
      );
    default:
      return req('POST', '/api/tasks', { body: randomBytes(randomInt(0, 300)), type: JSON_TYPE });
  }
}

test(
  `the REST API answers malformed requests and ${FUZZ} random mutations with 4xx and a TG_ERR_* code, and still serves`,
  { timeout: 300_000 },
  async (t) => {
    const began = Date.now();
    const grid = await Grid.start({ workers: [{ types: ['reverse'] }] });
    let monitoring: Child | undefined;
    try {
      monitoring = startTs('src/cli/main.ts', ['monitoring', '--port', '0'], grid.env);
      const ready = await monitoring.nextJson<{ msg: string; address: { port: number } }>(
        (v) => v.msg === 'ready',
        60_000,
      );
      const port = ready.address.port;
      const rssBefore = await rssMb(monitoring.pid);

      // A good task first, so that ids exist and the grid is known to work through the API.
      const first = await raw(
        port,
        req('POST', '/api/tasks', { body: '{"type":"reverse","payload":"Hello"}', type: JSON_TYPE }),
      );
      assert.equal(first.status, 201, first.body);

      const problems: string[] = [];
      const codes = new Map<number, number>();
      const check = (what: string, a: Answer, mustBe4xx: boolean) => {
        codes.set(a.status, (codes.get(a.status) ?? 0) + 1);
        if (a.status >= 500) problems.push(`${what}: ${a.status} ${a.body.slice(0, 200)}`);
        if (/root:.*:0:0:|"name":\s*"taskgrid"|"devDependencies"/.test(a.body))
          problems.push(`${what}: leaked a file: ${a.body.slice(0, 200)}`);
        if (!mustBe4xx) return;
        if (a.status < 400 || a.status >= 500) problems.push(`${what}: ${a.status}, expected 4xx`);
        // Node's HTTP server answers some requests itself, before the app (an unparseable Host
        // header: a 400 with an empty body); the app's own answers carry the code, a missing
        // Host header's too.
        const empty = a.body === '' || a.body === '0\r\n\r\n';
        if (!empty && !/"code":"TG_ERR_[A-Z_]+"/.test(a.body))
          problems.push(`${what}: ${a.status} without a TG_ERR_* code: ${a.body.slice(0, 200)}`);
      };

      const all = cases();
      for (const c of all) {
        const a = await raw(port, c.request).catch((err: Error) => ({
          status: 0,
          headers: '',
          body: err.message,
        }));
        if (a.status === 0) {
          problems.push(`${c.what}: ${a.body}`);
          continue;
        }
        check(c.what, a, true);
      }
      t.diagnostic(`${all.length} malformed requests: statuses ${JSON.stringify(Object.fromEntries(codes))}`);

      // Random mutations: no 5xx, no crash. (Some mutations are valid requests: those may succeed.)
      let fuzzed = 0;
      let unanswered = 0;
      const bases = all.map((c) => c.request);
      const fuzzStarted = Date.now();
      // 20 connections at a time; a mutation may leave its request incomplete (a Content-Length
      // longer than its body), which the server rightly waits for: those give up after 1.5 s.
      await Promise.all(
        Array.from({ length: 20 }, async () => {
          while (fuzzed < FUZZ) {
            fuzzed++;
            const m = mutate(bases);
            const a = await raw(port, m, 1_500).catch(() => undefined);
            if (a) check(`mutation ${JSON.stringify(m.toString('latin1').slice(0, 80))}`, a, false);
            else unanswered++;
          }
        }),
      );
      t.diagnostic(
        `${fuzzed} mutations in ${Date.now() - fuzzStarted} ms, ${unanswered} left waiting for the rest of their request`,
      );
      assert.equal(monitoring.proc.exitCode, null, 'monitoring is still running');

      // Still serving: health, a submit through the API, and its result.
      const health = await raw(port, req('GET', '/healthz'));
      assert.equal(health.status, 200);
      const created = await raw(
        port,
        req('POST', '/api/tasks', { body: '{"type":"reverse","payload":"still here"}', type: JSON_TYPE }),
      );
      assert.equal(created.status, 201, created.body);
      let completed = 0;
      for (const [answer, expected] of [
        [first, 'olleH'],
        [created, 'ereh llits'],
      ] as const) {
        const { id } = JSON.parse(answer.body) as { id: number };
        let view: { task: { status: string; result?: string } } | undefined;
        for (const deadline = Date.now() + 30_000; Date.now() < deadline;) {
          const got = await raw(port, req('GET', `/api/tasks/${id}`));
          assert.equal(got.status, 200, got.body);
          view = JSON.parse(got.body) as typeof view;
          if (view!.task.status === 'succeeded') break;
          await new Promise((r) => setTimeout(r, 100));
        }
        assert.equal(view?.task.status, 'succeeded');
        assert.equal(view?.task.result, expected);
        completed++;
      }
      const rssAfter = await rssMb(monitoring.pid);
      t.diagnostic(
        `monitoring RSS before ${rssBefore.toFixed(1)} MiB, after ${rssAfter.toFixed(1)} MiB; statuses ${JSON.stringify(Object.fromEntries(codes))}`,
      );

      report({
        scenario: 'rest',
        submitted: 2,
        acknowledged: 2,
        completed,
        lost: 0,
        wrong: 0,
        duplicated: 0,
        faults: {
          malformedRequests: all.length,
          mutations: fuzzed,
          fiveHundreds: [...codes].filter(([s]) => s >= 500).reduce((n, [, k]) => n + k, 0),
        },
        rssBeforeMb: Math.round(rssBefore),
        rssAfterMb: Math.round(rssAfter),
        durationMs: Date.now() - began,
        notes: `statuses ${JSON.stringify(Object.fromEntries(codes))}`,
      });
      assert.deepEqual(problems, []);
      assert.ok(rssAfter - rssBefore < 200, `monitoring RSS grew ${(rssAfter - rssBefore).toFixed(1)} MiB`);
    } finally {
      await monitoring?.stop(5_000);
      await grid.stop();
    }
  },
);
