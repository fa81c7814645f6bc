/**
 * The monitoring app served over real HTTP (service.ts `listen`, port 0, loopback only) and
 * spoken to over raw TCP: requests `app.request` cannot make, such as one without a Host header.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { ErrorCode } from '../../src/errors.ts';
import type { ApiError, HealthResponse } from '../../src/monitoring/schemas.ts';
import { listen, type HttpListener } from '../../src/monitoring/service.ts';
import { makeApp } from './helpers.ts';

interface Answer {
  status: number;
  /** Header names in lower case. */
  headers: Map<string, string>;
  body: string;
}

/** Writes `request` as is over a new connection and reads the answer until the server closes. */
function raw(host: string, port: number, request: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, host);
    const chunks: Buffer[] = [];
    s.setTimeout(5_000, () => s.destroy(new Error(`no answer within 5 s to ${JSON.stringify(request)}`)));
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', reject);
    s.on('end', () => {
      s.destroy();
      const text = Buffer.concat(chunks).toString('latin1');
      const split = text.indexOf('\r\n\r\n');
      const [statusLine = '', ...lines] = text.slice(0, split < 0 ? text.length : split).split('\r\n');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine);
      if (!m) {
        reject(new Error(`no HTTP answer: ${JSON.stringify(text.slice(0, 200))}`));
        return;
      }
      const headers = new Map<string, string>();
      for (const line of lines) {
        const colon = line.indexOf(':');
        headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
      }
      const rest = split < 0 ? '' : text.slice(split + 4);
      const body = headers.get('transfer-encoding') === 'chunked' ? dechunk(rest) : rest;
      resolve({ status: Number(m[1]), headers, body });
    });
    s.write(request);
  });
}

function dechunk(text: string): string {
  let out = '';
  for (let at = 0; ;) {
    const eol = text.indexOf('\r\n', at);
    const size = parseInt(text.slice(at, eol), 16);
    if (eol < 0 || !(size > 0)) return out;
    out += text.slice(eol + 2, eol + 2 + size);
    at = eol + 2 + size + 2;
  }
}

/** Asserts the app's JSON 400 TG_ERR_BAD_REQUEST for a request without a Host header. */
function assertNoHostError(a: Answer, what: string): void {
  assert.equal(a.status, 400, what);
  assert.match(a.headers.get('content-type') ?? '', /^application\/json\b/, what);
  const { error } = JSON.parse(a.body) as ApiError;
  assert.equal(error.code, ErrorCode.BAD_REQUEST, what);
  assert.match(error.message, /Host header is missing/, what);
}

const NO_HOST = [
  ['HTTP/1.1 without Host', 'GET /api/health HTTP/1.1\r\nConnection: close\r\n\r\n'],
  ['HTTP/1.0 without Host', 'GET /api/health HTTP/1.0\r\n\r\n'],
  ['HTTP/1.1 with an empty Host', 'GET /api/health HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n'],
] as const;

/** Serves an app over the fake grid on `host`, port 0; `stop` closes what it started. */
async function serveApp(host: string, bindHost = host) {
  const { app, watcher } = makeApp({ bindHost });
  const listener: HttpListener = await listen(app, host, 0);
  return {
    port: listener.address.port,
    stop: async () => {
      await listener.close();
      await watcher.close();
    },
  };
}

describe('monitoring over HTTP, bound to 127.0.0.1', () => {
  let served: Awaited<ReturnType<typeof serveApp>> | undefined;
  before(async () => {
    served = await serveApp('127.0.0.1');
  });
  after(async () => {
    await served?.stop();
  });

  test('a request without a Host header gets the JSON 400 TG_ERR_BAD_REQUEST, not an empty 400', async () => {
    for (const [what, request] of NO_HOST)
      assertNoHostError(await raw('127.0.0.1', served!.port, request), what);
  });

  test('a request naming the loopback host still works, and one naming another host is still refused', async () => {
    const port = served!.port;
    const ok = await raw(
      '127.0.0.1',
      port,
      `GET /api/health HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`,
    );
    assert.equal(ok.status, 200, ok.body);
    assert.match(ok.headers.get('content-type') ?? '', /^application\/json\b/);
    assert.equal((JSON.parse(ok.body) as HealthResponse).monitoring.version, '0.1.0');
    const rebound = await raw(
      '127.0.0.1',
      port,
      'GET /api/health HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n',
    );
    assert.equal(rebound.status, 403);
    assert.equal((JSON.parse(rebound.body) as ApiError).error.code, ErrorCode.AUTH);
  });
});

test('bound beyond loopback, a request without a Host header gets the same JSON 400', async () => {
  // Served on 127.0.0.1 all the same (tests stay on loopback); the app believes it is bound to 0.0.0.0.
  const served = await serveApp('127.0.0.1', '0.0.0.0');
  try {
    for (const [what, request] of NO_HOST)
      assertNoHostError(await raw('127.0.0.1', served.port, request), what);
  } finally {
    await served.stop();
  }
});

test('bound to ::1, a request without a Host header gets the same JSON 400', async (t) => {
  let served: Awaited<ReturnType<typeof serveApp>>;
  try {
    served = await serveApp('::1');
  } catch (err) {
    t.skip(`no IPv6 loopback here: ${err instanceof Error ? err.message : String(err)}`);
    return;
  }
  try {
    for (const [what, request] of NO_HOST) assertNoHostError(await raw('::1', served.port, request), what);
    const ok = await raw(
      '::1',
      served.port,
      `GET /healthz HTTP/1.1\r\nHost: [::1]:${served.port}\r\nConnection: close\r\n\r\n`,
    );
    assert.equal(ok.status, 200, ok.body);
  } finally {
    await served.stop();
  }
});
