/**
 * The dashboard end to end: a live grid of real processes (nameservice, dispatcher and the five
 * built-in worker types, test/support/grid.ts), `taskgrid monitoring` as its own process on
 * port 0, and Debian's headless Chromium driven by playwright-core. One browser for the whole
 * file (it is slow to start). Screenshots go to test-artifacts/ (not in git).
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { Grid } from '../support/grid.ts';
import { ROOT, startTs, type Child } from '../support/process.ts';
import { listen } from '../../src/monitoring/service.ts';
import { FakeGrid, ManualClock } from './fake-grid.ts';
import { makeApp } from './helpers.ts';
import { CHROMIUM, promtoolCheck, requireTool } from './tools.ts';

const TYPES = ['reverse', 'sum', 'hash', 'upper', 'wait'] as const;
const ARTIFACTS = join(ROOT, 'test-artifacts');
const XSS = '<img src=x onerror=alert(1)>';
const TOKEN = 'a-monitor-token-of-some-length';
/** Longest wait for something the grid does (a task to finish, a worker to show). */
const GRID_WAIT_MS = 30_000;

describe('the dashboard of a live grid, in headless Chromium', () => {
  let grid: Grid | undefined;
  let monitoring: Child | undefined;
  let context: BrowserContext | undefined;
  let page: Page;
  let base = '';
  let userDataDir = '';
  const dialogs: string[] = [];
  /** Script errors and console errors (CSP violations among them) of the page. */
  const pageErrors: string[] = [];

  before(async () => {
    requireTool(CHROMIUM, 'Chromium');
    // Everything that is slow to start starts at once: the workers, monitoring and Chromium.
    grid = await Grid.start();
    const g = grid;
    const workers = Promise.all(TYPES.map((t) => g.startWorker([t])));
    monitoring = startTs('src/cli/main.ts', ['monitoring', '--port', '0'], g.env);
    const ready = monitoring.nextJson<{ msg: string; address: { host: string; port: number } }>(
      (v) => v.msg === 'ready',
      60_000,
    );
    userDataDir = mkdtempSync(join(tmpdir(), 'taskgrid-chromium-'));
    const browser = chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      viewport: { width: 1440, height: 1000 },
    });
    const [started, announced, launched] = await Promise.allSettled([workers, ready, browser]);
    if (launched.status === 'fulfilled') context = launched.value; // closed by after() whatever else failed
    if (started.status === 'rejected') throw started.reason;
    if (announced.status === 'rejected') throw announced.reason;
    if (launched.status === 'rejected') throw launched.reason;
    base = `http://127.0.0.1:${announced.value.address.port}`;
    page = launched.value.pages()[0] ?? (await launched.value.newPage());
    page.on('pageerror', (err) => pageErrors.push(err.message));
    page.on('console', (msg) => {
      if (msg.type() === 'error') pageErrors.push(msg.text());
    });
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    await page.goto(`${base}/`);
  });

  after(async () => {
    await context?.close();
    await monitoring?.stop(5_000);
    await grid?.stop();
    if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
  });

  /** Submits over the REST API, as a script would. */
  async function submit(type: string, payload: string): Promise<number> {
    const res = await fetch(`${base}/api/tasks`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ type, payload }),
    });
    assert.equal(res.status, 201, await res.clone().text());
    return ((await res.json()) as { id: number }).id;
  }

  /** Waits until the detail drawer shows task `id`. */
  async function detailOf(id: number): Promise<void> {
    await page
      .locator('#detail-title', { hasText: new RegExp(`^Task ${id}$`) })
      .waitFor({ timeout: GRID_WAIT_MS });
  }

  function row(id: number, status?: string): string {
    return `#tasks-body tr[data-task-id="${id}"]${status ? `[data-status="${status}"]` : ''}`;
  }

  test('shows the five worker types, each with its live instance', async () => {
    for (const type of TYPES) {
      await page.waitForSelector(`[data-worker-type="${type}"] li.instance`, { timeout: GRID_WAIT_MS });
    }
    const cards = page.locator('[data-worker-type]');
    const shown: string[] = [];
    for (let i = 0; i < (await cards.count()); i++)
      shown.push((await cards.nth(i).getAttribute('data-worker-type')) ?? '');
    assert.deepEqual(shown.sort(), [...TYPES].sort());
    // The header says every component answers.
    await page.waitForSelector('#health .pill.ok', { timeout: GRID_WAIT_MS });
  });

  test('submits a task from the form and sees it complete without a reload', async () => {
    // Page functions are strings here: the tests compile without the DOM's types.
    await page.evaluate('window.loadedOnce = true');
    await page.selectOption('#submit-type', 'reverse');
    await page.fill('#submit-payload', 'Hello, grid');
    await page.click('#submit-button');
    await page
      .locator('#submit-result', { hasText: /^task \d+ submitted$/ })
      .waitFor({ timeout: GRID_WAIT_MS });
    const id = Number(/\d+/.exec((await page.textContent('#submit-result')) ?? '')?.[0]);
    await page.waitForSelector(row(id, 'succeeded'), { timeout: GRID_WAIT_MS });
    assert.equal(await page.textContent(`${row(id)} td.result`), 'dirg ,olleH');
    assert.equal(await page.evaluate('window.loadedOnce === true'), true, 'the page was not reloaded');
  });

  test('shows a payload of HTML as text, never as markup', async () => {
    const id = await submit('upper', XSS);
    await page.waitForSelector(row(id, 'succeeded'), { timeout: GRID_WAIT_MS });
    assert.equal(await page.textContent(`${row(id)} td.payload`), XSS);
    assert.equal(await page.textContent(`${row(id)} td.result`), XSS.toUpperCase());
    await page.click(row(id));
    await detailOf(id);
    assert.equal(await page.textContent('#detail-payload'), XSS);
    assert.equal(await page.textContent('#detail-result'), XSS.toUpperCase());
    assert.equal(await page.isVisible('#detail-payload'), true);
    assert.equal(await page.locator('img').count(), 0, 'no img element was created');
    assert.deepEqual(dialogs, [], 'no script ran');
    await page.click('#detail-close');
  });

  test('cancels a running task from its detail, and the table follows', async () => {
    const id = await submit('wait', '60');
    await page.waitForSelector(row(id, 'running'), { timeout: GRID_WAIT_MS });
    await page.click(row(id));
    await detailOf(id);
    await page.waitForSelector('#detail-cancel:not([disabled])');
    await page.click('#detail-cancel');
    await page.waitForSelector(row(id, 'cancelled'), { timeout: GRID_WAIT_MS });
    await page.waitForSelector('#detail-status.status-cancelled', { timeout: GRID_WAIT_MS });
    await page.waitForSelector('#detail-retry:not([disabled])');
    // Retried, it runs again: its row must not keep the cancellation's error or end.
    await page.click('#detail-retry');
    await page.waitForSelector(row(id, 'running'), { timeout: GRID_WAIT_MS });
    const text = await page.locator(row(id)).innerText();
    assert.doesNotMatch(text, /TG_ERR_CANCELLED|(^|\s)-\d/, `the retried task's row: ${text}`);
    await page.waitForSelector('#detail-cancel:not([disabled])');
    await page.click('#detail-cancel');
    await page.waitForSelector(row(id, 'cancelled'), { timeout: GRID_WAIT_MS });
    await page.click('#detail-close');
  });

  test('draws the charts and queues from live stats, and saves a screenshot', async () => {
    // Some traffic of every type, so that the charts and queues have something to show.
    for (let i = 0; i < 30; i++) {
      const type = TYPES[i % 4]!;
      await submit(type, type === 'sum' ? `${i},${i + 1}` : `task ${i}`);
    }
    const last = await submit('hash', 'the last one');
    await page.waitForSelector(row(last, 'succeeded'), { timeout: GRID_WAIT_MS });
    // Every task of the burst arrived in the table live, not only the newest of each poll.
    await page.waitForFunction(
      `document.querySelectorAll('#tasks-body tr[data-task-id]').length >= ${last}`,
      undefined,
      {
        timeout: GRID_WAIT_MS,
      },
    );
    await page.waitForSelector('#chart-throughput path.line', { timeout: GRID_WAIT_MS });
    await page.waitForSelector('#queues-body tr[data-queue-type="reverse"]');
    assert.equal(await page.textContent('#live-text').then((t) => t?.startsWith('live')), true);
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.evaluate('window.scrollTo(0, 0)');
    await page.screenshot({ path: join(ARTIFACTS, 'monitoring-dashboard.png'), fullPage: true });
    await page.click(row(last));
    await detailOf(last);
    await page.waitForSelector('#detail-attempts td .pill');
    await page.screenshot({ path: join(ARTIFACTS, 'monitoring-task-detail.png') });
    await page.click('#detail-close');
  });

  test('lists a task whose payload and result together exceed one message, without its payload', async () => {
    // 600,000 characters each way: either fits one message (1 MiB), both do not.
    const id = await submit('reverse', 'ab'.repeat(300_000));
    await page.waitForSelector(row(id, 'succeeded'), { timeout: GRID_WAIT_MS });
    const res = await fetch(`${base}/api/tasks?limit=5`);
    assert.equal(res.status, 200, await res.clone().text());
    const page1 = (await res.json()) as {
      tasks: { id: number; payload?: string; result?: string }[];
      payloadOmitted?: number[];
      nextCursor?: string;
    };
    assert.deepEqual(
      page1.tasks.map((t) => t.id),
      [id],
    );
    assert.deepEqual(page1.payloadOmitted, [id]);
    assert.equal(page1.tasks[0]!.payload, undefined);
    assert.equal(page1.tasks[0]!.result, 'ba'.repeat(300_000));
    // The next page goes on after it, payloads included.
    assert.ok(page1.nextCursor);
    const next = (await (await fetch(`${base}/api/tasks?limit=5&cursor=${page1.nextCursor}`)).json()) as {
      tasks: { id: number; payload?: string }[];
      payloadOmitted?: number[];
    };
    assert.ok(next.tasks.length > 0 && next.tasks.every((t) => t.id < id && t.payload !== undefined));
    assert.equal(next.payloadOmitted, undefined);
    // The dashboard's table still lists tasks, the large one among them.
    await page.reload();
    await page.waitForSelector(row(id, 'succeeded'), { timeout: GRID_WAIT_MS });
  });

  test('asks for the token when the API needs one, and goes live once it is given', async () => {
    // An in-process service over the fake grid: the token flow needs no second grid.
    const clock = new ManualClock(Date.now());
    const grid = new FakeGrid(clock);
    grid.addWorker('worker-fake-1', ['reverse'], 6001);
    const { app, watcher } = makeApp({ grid, clock, token: TOKEN });
    const listener = await listen(app, '127.0.0.1', 0);
    const tab = await context!.newPage();
    try {
      await tab.goto(`http://127.0.0.1:${listener.address.port}/`);
      await tab.waitForSelector('#token-dialog[open]', { timeout: GRID_WAIT_MS });
      await tab.fill('#token-input', TOKEN);
      await tab.click('#token-form button[type="submit"]');
      await tab.waitForSelector('[data-worker-type="reverse"] li.instance', { timeout: GRID_WAIT_MS });
      assert.equal(await tab.isVisible('#token-dialog'), false);
    } finally {
      await tab.close();
      await watcher.close();
      await listener.close();
    }
  });

  test('ran without a script error or a content-security-policy violation', () => {
    assert.deepEqual(pageErrors, []);
  });

  test('/metrics of the live grid passes promtool and counts its workers', async () => {
    const text = await (await fetch(`${base}/metrics`)).text();
    const { code, output } = await promtoolCheck(text);
    assert.equal(code, 0, output);
    for (const type of TYPES) assert.ok(text.includes(`taskgrid_worker_instances{type="${type}"} 1`), type);
    assert.match(text, /^taskgrid_dispatcher_transport_requests_handled_total [1-9]\d*$/m);
    assert.match(text, /^taskgrid_up\{component="dispatcher"\} 1$/m);
  });
});
