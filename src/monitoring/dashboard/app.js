// The TaskGrid dashboard: plain browser JavaScript, no framework and no build step. It reads the
// monitoring REST API, follows GET /api/events (Server-Sent Events, read through fetch so that a
// bearer token can be sent), and draws its charts as SVG. Every value from the grid goes into the
// page as text (textContent, text nodes, attributes): nothing is ever parsed as HTML, so a payload
// such as <img src=x onerror=alert(1)> is shown as those characters.

const TOKEN_KEY = 'taskgrid.monitor.token';
/** Rows kept in the task table; older ones fall off the bottom as new tasks arrive. */
const MAX_ROWS = 500;
/** Chart window. */
const WINDOW_MS = 10 * 60 * 1000;
/** Health is re-checked this often (it pings every component). */
const HEALTH_EVERY_MS = 10_000;
/** Pause before reopening a broken event stream. */
const RECONNECT_MS = 2_000;
/** A worker whose heartbeat is older than this is shown as late. */
const LATE_HEARTBEAT_MS = 15_000;
const FINAL = new Set(['succeeded', 'failed', 'cancelled']);

const state = {
  health: undefined,
  workers: undefined,
  stats: undefined,
  samples: [],
  intervalMs: 1000,
  tasks: new Map(),
  order: [],
  nextCursor: undefined,
  filters: { status: '', type: '' },
  selected: undefined,
  detail: undefined,
  actionsAllowed: true,
  connected: false,
  lastEventAt: 0,
};

// ---- DOM helpers: text only --------------------------------------------------------------

const $ = (id) => {
  const node = document.getElementById(id);
  if (!node) throw new Error(`missing #${id}`);
  return node;
};

/** An element with attributes and children; strings become text nodes, never markup. */
function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    if (name === 'class') node.className = value;
    else if (name === 'dataset') Object.assign(node.dataset, value);
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  append(node, children);
  return node;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
function s(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(
      typeof child === 'string' || typeof child === 'number' ? document.createTextNode(String(child)) : child,
    );
  }
}

function setText(id, text) {
  $(id).textContent = text;
}

// ---- formatting ---------------------------------------------------------------------------

const nf = new Intl.NumberFormat('en', { maximumFractionDigits: 1 });
function fmtCount(n) {
  if (n === undefined || n === null) return '–';
  return n >= 10_000
    ? new Intl.NumberFormat('en', { notation: 'compact', maximumFractionDigits: 1 }).format(n)
    : String(n);
}
function fmtRate(n) {
  if (n === undefined) return '–';
  return n === 0 ? '0' : n < 0.1 ? n.toFixed(2) : nf.format(n);
}
function fmtMs(ms) {
  if (ms === undefined || ms === null || Number.isNaN(ms)) return '–';
  if (ms === 0) return '0 ms';
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  const m = Math.floor(ms / 60_000);
  return `${m} min ${Math.round((ms % 60_000) / 1000)} s`;
}
function fmtAgo(t) {
  if (!t) return '–';
  const d = Math.max(0, Date.now() - t);
  if (d < 1500) return 'just now';
  if (d < 60_000) return `${Math.round(d / 1000)} s ago`;
  if (d < 3_600_000) return `${Math.round(d / 60_000)} min ago`;
  return `${Math.round(d / 3_600_000)} h ago`;
}
function fmtTime(t) {
  if (!t) return '–';
  const d = new Date(t);
  const sameDay = d.toDateString() === new Date().toDateString();
  return sameDay ? d.toLocaleTimeString() : d.toLocaleString();
}
function duration(task) {
  if (task.startedAt === undefined) return undefined;
  return (task.finishedAt ?? Date.now()) - task.startedAt;
}
function shortId(id) {
  return id.length > 22 ? `${id.slice(0, 10)}…${id.slice(-8)}` : id;
}

// ---- API ------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function api(path, options = {}) {
  const headers = {
    Accept: 'application/json',
    ...authHeaders(),
    ...(options.body ? { 'Content-Type': 'application/json' } : {}),
  };
  const res = await fetch(path, { ...options, headers });
  if (res.status === 401) {
    askForToken();
    throw new ApiError(401, 'TG_ERR_AUTH', 'a token is needed');
  }
  const body = await res.json().catch(() => undefined);
  if (!res.ok) {
    const error =
      body && body.error ? body.error : { code: 'TG_ERR_INTERNAL', message: `HTTP ${res.status}` };
    throw new ApiError(res.status, error.code, error.message);
  }
  return body;
}

let tokenAsked = false;
function askForToken() {
  if (tokenAsked) return;
  tokenAsked = true;
  const dialog = $('token-dialog');
  if (!dialog.open) dialog.showModal();
}

// ---- toasts and banner ----------------------------------------------------------------------

function toast(message, kind = 'info') {
  const node = h('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, message);
  $('toasts').append(node);
  setTimeout(() => node.remove(), kind === 'error' ? 8000 : 4000);
}
function errorText(err) {
  return err instanceof ApiError
    ? `${err.code}: ${err.message}`
    : String(err && err.message ? err.message : err);
}
function banner(text) {
  const node = $('banner');
  node.hidden = !text;
  node.textContent = text || '';
}

// ---- health ---------------------------------------------------------------------------------

function pill(text, kind, title) {
  return h('span', { class: `pill ${kind}`, title }, text);
}

function renderHealth() {
  const box = $('health');
  const health = state.health;
  if (!health) {
    box.replaceChildren(pill('checking…', 'muted'));
    return;
  }
  const by = (c) => health.components.filter((x) => x.component === c);
  const describe = (x) =>
    x.reachable
      ? `${x.address} · v${x.version ?? '?'} · up ${fmtMs(x.uptimeMs)}${x.latencyMs !== undefined ? ` · ping ${fmtMs(x.latencyMs)}` : ''}`
      : `${x.address} · ${x.error ? `${x.error.code}: ${x.error.message}` : 'unreachable'}`;
  const nodes = [];
  for (const ns of by('nameservice'))
    nodes.push(
      pill(`nameservice ${ns.reachable ? 'up' : 'down'}`, ns.reachable ? 'ok' : 'bad', describe(ns)),
    );
  for (const d of by('dispatcher'))
    nodes.push(pill(`dispatcher ${d.reachable ? 'up' : 'down'}`, d.reachable ? 'ok' : 'bad', describe(d)));
  const workers = by('worker');
  const up = workers.filter((w) => w.reachable).length;
  nodes.push(
    pill(
      `workers ${up}/${workers.length}`,
      workers.length === 0 ? 'warn' : up === workers.length ? 'ok' : 'warn',
      workers.map(describe).join('\n'),
    ),
  );
  if (health.monitoring.authRequired) nodes.push(pill('token', 'muted', 'API calls need a bearer token'));
  if (!health.monitoring.actionsAllowed)
    nodes.push(
      pill(
        'read-only',
        'warn',
        'submit, cancel and retry are disabled: no token is set and the service is reachable from the network',
      ),
    );
  box.replaceChildren(...nodes);
  state.actionsAllowed = health.monitoring.actionsAllowed;
  $('submit-button').disabled = !state.actionsAllowed;
  if (state.detail) renderDetail();
}

async function refreshHealth() {
  try {
    state.health = await api('/api/health');
    renderHealth();
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401))
      banner(`Monitoring does not answer: ${errorText(err)}`);
  }
}

// ---- stats: KPIs, charts, queues --------------------------------------------------------------

function renderKpis() {
  const st = state.stats;
  const last = state.samples.at(-1);
  setText('kpi-queued', st ? fmtCount(st.totals.queued) : '–');
  setText('kpi-running', st ? fmtCount(st.totals.running) : '–');
  setText('kpi-succeeded', st ? fmtCount(st.totals.succeeded) : '–');
  setText('kpi-failed', st ? fmtCount(st.totals.failed) : '–');
  setText('kpi-throughput', st ? `${fmtRate(last ? last.finishedPerSec : st.totals.throughput)}/s` : '–');
  setText('kpi-latency', last ? fmtMs(last.runMs.p95) : '–');
}

/** A line chart of `series` ({name, cls, points: [[t, v]]}) over the last WINDOW_MS, as SVG. */
function lineChart(container, series, formatY) {
  const width = Math.max(280, container.clientWidth || 560);
  const height = 190;
  const pad = { left: 56, right: 12, top: 12, bottom: 24 };
  const now = Date.now();
  const t0 = now - WINDOW_MS;
  const max = Math.max(0, ...series.flatMap((x) => x.points.map((p) => p[1])));
  const top = niceCeil(max);
  const x = (t) => pad.left + ((t - t0) / WINDOW_MS) * (width - pad.left - pad.right);
  const y = (v) => height - pad.bottom - (top === 0 ? 0 : (v / top) * (height - pad.top - pad.bottom));
  const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, width, height, class: 'chart-svg' });
  for (let i = 0; i <= 4; i++) {
    const v = (top * i) / 4;
    svg.append(s('line', { x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v), class: 'grid-line' }));
    svg.append(
      s('text', { x: pad.left - 8, y: y(v) + 4, class: 'axis-label', 'text-anchor': 'end' }, formatY(v)),
    );
  }
  for (const [label, t] of [
    ['-10 min', t0],
    ['-5 min', now - WINDOW_MS / 2],
    ['now', now],
  ]) {
    const anchor = label === 'now' ? 'end' : label === '-10 min' ? 'start' : 'middle';
    svg.append(s('text', { x: x(t), y: height - 6, class: 'axis-label', 'text-anchor': anchor }, label));
  }
  for (const line of series) {
    const pts = line.points.filter((p) => p[0] >= t0);
    if (pts.length === 0) continue;
    const d = pts
      .map((p, i) => `${i === 0 ? 'M' : 'L'}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`)
      .join(' ');
    if (line.area) {
      const first = pts[0];
      const lastPoint = pts[pts.length - 1];
      svg.append(
        s('path', {
          d: `${d} L${x(lastPoint[0]).toFixed(1)},${y(0)} L${x(first[0]).toFixed(1)},${y(0)} Z`,
          class: `area ${line.cls}`,
        }),
      );
    }
    svg.append(s('path', { d, class: `line ${line.cls}` }));
  }
  if (series.every((l) => l.points.length === 0)) {
    svg.append(
      s(
        'text',
        { x: width / 2, y: height / 2, class: 'axis-label', 'text-anchor': 'middle' },
        'waiting for samples…',
      ),
    );
  }
  const legend = h(
    'div',
    { class: 'legend' },
    series.map((l) => {
      const lastValue = l.points.at(-1);
      return h(
        'span',
        { class: 'legend-item' },
        h('span', { class: `swatch ${l.cls}` }),
        `${l.name} `,
        h('strong', {}, lastValue ? formatY(lastValue[1]) : '–'),
      );
    }),
  );
  container.replaceChildren(svg, legend);
}

function niceCeil(v) {
  if (v <= 0) return 1;
  const exp = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * exp >= v) return m * exp;
  return 10 * exp;
}

function renderCharts() {
  const pts = (f) => state.samples.map((x) => [x.at, f(x)]);
  lineChart(
    $('chart-throughput'),
    [
      { name: 'finished/s', cls: 's1', points: pts((x) => x.finishedPerSec), area: true },
      { name: 'failed/s', cls: 's3', points: pts((x) => x.failedPerSec) },
    ],
    (v) => fmtRate(v),
  );
  lineChart(
    $('chart-latency'),
    [
      { name: 'run p95', cls: 's1', points: pts((x) => x.runMs.p95), area: true },
      { name: 'run p50', cls: 's2', points: pts((x) => x.runMs.p50) },
      { name: 'queue wait p95', cls: 's4', points: pts((x) => x.waitMs.p95) },
    ],
    (v) => fmtMs(v),
  );
}

function renderQueues() {
  const body = $('queues-body');
  const st = state.stats;
  if (!st) {
    body.replaceChildren(
      h('tr', {}, h('td', { colspan: 9, class: 'empty' }, 'No stats yet: the dispatcher has not answered.')),
    );
    return;
  }
  const types = Object.entries(st.types).sort((a, b) => a[0].localeCompare(b[0]));
  const last = state.samples.at(-1);
  const max = Math.max(1, ...types.map(([, t]) => t.queued + t.running));
  const rows = types.map(([name, t]) => {
    const perSec = last && last.types[name] ? last.types[name].finishedPerSec : t.throughput;
    const bar = h('div', { class: 'bar', title: `${t.running} running, ${t.queued} queued` });
    const running = h('span', { class: 'bar-running' });
    const queued = h('span', { class: 'bar-queued' });
    running.style.width = `${(t.running / max) * 100}%`;
    queued.style.width = `${(t.queued / max) * 100}%`;
    bar.append(running, queued);
    return h(
      'tr',
      { dataset: { queueType: name } },
      h('td', {}, h('span', { class: 'type' }, name)),
      h('td', { class: 'num' }, fmtCount(t.queued)),
      h('td', { class: 'num' }, fmtCount(t.running)),
      h('td', { class: 'num' }, fmtCount(t.succeeded)),
      h('td', { class: `num ${t.failed > 0 ? 'bad' : ''}` }, fmtCount(t.failed)),
      h('td', { class: 'num' }, fmtRate(perSec)),
      h('td', { class: 'num' }, `${fmtMs(t.runMs.p50)} / ${fmtMs(t.runMs.p95)}`),
      h('td', { class: 'num' }, fmtMs(t.waitMs.p95)),
      h('td', { class: 'bar-col' }, bar),
    );
  });
  body.replaceChildren(
    ...(rows.length ? rows : [h('tr', {}, h('td', { colspan: 9, class: 'empty' }, 'No task types yet.'))]),
  );
}

function onStats(stats, sample) {
  state.stats = stats;
  if (sample && (state.samples.length === 0 || state.samples.at(-1).at < sample.at)) {
    state.samples.push(sample);
    const cutoff = Date.now() - WINDOW_MS - 60_000;
    while (state.samples.length && state.samples[0].at < cutoff) state.samples.shift();
  }
  renderKpis();
  renderCharts();
  renderQueues();
}

// ---- workers --------------------------------------------------------------------------------

function renderWorkers() {
  const box = $('workers');
  const data = state.workers;
  if (!data) return;
  const cards = data.types.map((type) => {
    const live = type.instances.length;
    const status =
      !type.active && type.configured
        ? ['inactive', 'muted']
        : live === 0
          ? ['no instance', 'bad']
          : type.replicas !== undefined && live < type.replicas
            ? [`${live}/${type.replicas} up`, 'warn']
            : [`${live} up`, 'ok'];
    const instances = type.instances.map((i) => {
      const load = h('div', { class: 'bar small', title: `${i.inFlight} of ${i.capacity} slots busy` });
      const fill = h('span', { class: 'bar-running' });
      fill.style.width = `${i.capacity > 0 ? Math.min(100, (i.inFlight / i.capacity) * 100) : 0}%`;
      load.append(fill);
      const late = Date.now() - i.lastHeartbeat > LATE_HEARTBEAT_MS;
      return h(
        'li',
        { class: 'instance', dataset: { instanceId: i.id } },
        h(
          'div',
          { class: 'instance-line' },
          h('span', { class: 'mono', title: i.id }, shortId(i.id)),
          h('span', { class: 'muted mono' }, `${i.address.host}:${i.address.port}`),
        ),
        h(
          'div',
          { class: 'instance-line' },
          load,
          h('span', { class: 'small' }, `${i.inFlight}/${i.capacity}`),
        ),
        h(
          'div',
          { class: 'instance-line small muted' },
          h(
            'span',
            {
              class: late ? 'warn-text heartbeat' : 'heartbeat',
              dataset: { heartbeat: String(i.lastHeartbeat) },
            },
            `heartbeat ${fmtAgo(i.lastHeartbeat)}`,
          ),
          i.completed !== undefined ? h('span', {}, `${i.completed} done · ${i.failed} failed`) : null,
        ),
      );
    });
    return h(
      'article',
      { class: 'worker-card', dataset: { workerType: type.name } },
      h('header', {}, h('span', { class: 'type' }, type.name), pill(status[0], status[1])),
      type.description ? h('p', { class: 'muted small description' }, type.description) : null,
      h(
        'p',
        { class: 'small' },
        `capacity ${type.capacity} · in flight ${type.inFlight}${type.concurrency ? ` · concurrency ${type.concurrency}` : ''}${type.configured ? '' : ' · not in workers.json'}`,
      ),
      instances.length
        ? h('ul', { class: 'instances' }, instances)
        : h('p', { class: 'small bad' }, 'No live instance.'),
    );
  });
  box.replaceChildren(
    ...(cards.length
      ? cards
      : [h('p', { class: 'empty' }, 'No task types: workers.json lists none and no worker registered.')]),
  );
  // One process may serve several types: count each instance once.
  const live = new Set(data.types.flatMap((t) => t.instances.map((i) => i.id))).size;
  setText(
    'workers-sub',
    `${data.types.length} types · ${live} live instances${data.fresh ? '' : ' · nameservice unreachable, last known view'}`,
  );
  renderTypeOptions();
}

function renderTypeOptions() {
  const names = state.workers
    ? state.workers.types.filter((t) => t.active || t.registered).map((t) => t.name)
    : [];
  const submit = $('submit-type');
  const current = submit.value;
  submit.replaceChildren(...names.map((n) => h('option', { value: n }, n)));
  if (names.includes(current)) submit.value = current;
  const filter = $('filter-type');
  const chosen = filter.value;
  const all = state.workers ? state.workers.types.map((t) => t.name) : [];
  filter.replaceChildren(h('option', { value: '' }, 'all'), ...all.map((n) => h('option', { value: n }, n)));
  filter.value = all.includes(chosen) ? chosen : '';
}

let workersTimer;
function refreshWorkersSoon() {
  clearTimeout(workersTimer);
  workersTimer = setTimeout(refreshWorkers, 300);
}
async function refreshWorkers() {
  try {
    state.workers = await api('/api/workers');
    renderWorkers();
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401))
      $('workers').replaceChildren(h('p', { class: 'empty bad' }, `Workers unavailable: ${errorText(err)}`));
  }
}

// ---- tasks ----------------------------------------------------------------------------------

function statusPill(status) {
  return h('span', { class: `pill status-${status}` }, status);
}

function preview(task, field) {
  const full = task[field];
  return full !== undefined ? full : task[`${field}Preview`];
}

function taskRow(task) {
  const resultText = task.error
    ? `${task.error.code}: ${task.error.message}`
    : (preview(task, 'result') ?? '');
  const progress =
    task.status === 'running' && task.progress !== undefined ? ` ${Math.round(task.progress * 100)}%` : '';
  return h(
    'tr',
    {
      dataset: { taskId: String(task.id), status: task.status },
      class: state.selected === task.id ? 'selected' : undefined,
      onclick: () => openDetail(task.id),
    },
    h('td', { class: 'num mono' }, String(task.id)),
    h('td', {}, h('span', { class: 'type' }, task.type)),
    h('td', { class: 'status' }, statusPill(task.status), progress),
    h('td', { class: 'text payload', title: preview(task, 'payload') ?? '' }, preview(task, 'payload') ?? ''),
    h('td', { class: `text result ${task.error ? 'bad' : ''}`, title: resultText }, resultText),
    h('td', { class: 'num' }, `${task.attempts}/${task.maxAttempts}`),
    h('td', { class: 'mono small', title: task.worker ?? '' }, task.worker ? shortId(task.worker) : '–'),
    h('td', { class: 'small' }, fmtTime(task.createdAt)),
    h('td', { class: 'num' }, fmtMs(duration(task))),
  );
}

function matchesFilters(task) {
  return (
    (!state.filters.status || task.status === state.filters.status) &&
    (!state.filters.type || task.type === state.filters.type)
  );
}

function renderTasks() {
  const body = $('tasks-body');
  const rows = state.order.map((id) => taskRow(state.tasks.get(id)));
  body.replaceChildren(
    ...(rows.length ? rows : [h('tr', {}, h('td', { colspan: 9, class: 'empty' }, 'No tasks match.'))]),
  );
  setText('tasks-count', `${state.order.length} shown`);
  $('tasks-more').hidden = !state.nextCursor;
}

/** Adds or updates tasks in place; new ones matching the filters go on top. */
function upsertTasks(tasks) {
  const body = $('tasks-body');
  let added = false;
  for (const task of tasks) {
    const known = state.tasks.get(task.id);
    if (known) {
      // The new view replaces the old one whole: a retried task has no error or end any more.
      // Events carry previews, so the full texts a page fetch brought stay when they still
      // hold: the payload never changes, the result only with the same end.
      const merged = { ...task };
      if (merged.payload === undefined && known.payload !== undefined) merged.payload = known.payload;
      if (
        merged.result === undefined &&
        known.result !== undefined &&
        merged.status === known.status &&
        merged.finishedAt === known.finishedAt
      )
        merged.result = known.result;
      state.tasks.set(task.id, merged);
      const row = body.querySelector(`tr[data-task-id="${task.id}"]`);
      if (row) row.replaceWith(taskRow(merged));
    } else if (
      matchesFilters(task) &&
      (!state.nextCursor || state.order.length === 0 || task.id > state.order[state.order.length - 1])
    ) {
      // New, or at least newer than the bottom of what is loaded (older ones belong to later pages).
      state.tasks.set(task.id, task);
      state.order.unshift(task.id);
      added = true;
    }
  }
  if (added) {
    state.order.sort((a, b) => b - a);
    while (state.order.length > MAX_ROWS) state.tasks.delete(state.order.pop());
    renderTasks();
  }
}

async function loadTasks(append = false) {
  const params = new URLSearchParams({ limit: '50' });
  if (state.filters.status) params.set('status', state.filters.status);
  if (state.filters.type) params.set('type', state.filters.type);
  if (append && state.nextCursor) params.set('cursor', state.nextCursor);
  try {
    const page = await api(`/api/tasks?${params}`);
    if (!append) {
      state.tasks.clear();
      state.order = [];
    }
    for (const task of page.tasks) {
      if (!state.tasks.has(task.id)) state.order.push(task.id);
      state.tasks.set(task.id, task);
    }
    state.nextCursor = page.nextCursor;
    renderTasks();
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) {
      $('tasks-body').replaceChildren(
        h('tr', {}, h('td', { colspan: 9, class: 'empty bad' }, `Tasks unavailable: ${errorText(err)}`)),
      );
    }
  }
}

// ---- task detail ----------------------------------------------------------------------------

async function openDetail(id) {
  state.selected = id;
  for (const row of document.querySelectorAll('#tasks-body tr.selected')) row.classList.remove('selected');
  const row = document.querySelector(`#tasks-body tr[data-task-id="${id}"]`);
  if (row) row.classList.add('selected');
  $('detail').hidden = false;
  await refreshDetail();
}

async function refreshDetail() {
  const id = state.selected;
  if (id === undefined) return;
  try {
    const detail = await api(`/api/tasks/${id}`);
    if (state.selected !== id) return;
    state.detail = detail;
    renderDetail();
  } catch (err) {
    toast(errorText(err), 'error');
  }
}

let detailTimer;
function refreshDetailSoon() {
  clearTimeout(detailTimer);
  detailTimer = setTimeout(refreshDetail, 150);
}

function closeDetail() {
  state.selected = undefined;
  state.detail = undefined;
  $('detail').hidden = true;
  for (const row of document.querySelectorAll('#tasks-body tr.selected')) row.classList.remove('selected');
}

function renderDetail() {
  const detail = state.detail;
  if (!detail) return;
  const t = detail.task;
  setText('detail-title', `Task ${t.id}`);
  const status = $('detail-status');
  status.className = `pill status-${t.status}`;
  status.textContent = t.status;
  const fields = [
    ['Type', t.type],
    ['Attempts', `${t.attempts} of ${t.maxAttempts}`],
    ['Priority', String(t.priority)],
    ['Timeout', fmtMs(t.timeoutMs)],
    ['Key', t.key ?? '–'],
    ['Worker', t.worker ?? '–'],
    ['Created', fmtTime(t.createdAt)],
    ['Started', fmtTime(t.startedAt)],
    ['Finished', fmtTime(t.finishedAt)],
    ['Run time', fmtMs(duration(t))],
  ];
  if ((t.progress !== undefined || t.progressMessage !== undefined) && t.status === 'running') {
    const parts = [];
    if (t.progress !== undefined) parts.push(`${Math.round(t.progress * 100)}%`);
    if (t.progressMessage !== undefined) parts.push(t.progressMessage);
    fields.push(['Progress', parts.join(' — ')]);
  }
  $('detail-fields').replaceChildren(...fields.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
  setText(
    'detail-payload',
    detail.payloadOmitted ? '(too large to show together with the result)' : (t.payload ?? ''),
  );
  $('detail-payload').classList.toggle('muted', Boolean(detail.payloadOmitted));
  const result = $('detail-result');
  result.textContent = t.result ?? (FINAL.has(t.status) ? '(none)' : '(not finished)');
  result.classList.toggle('muted', t.result === undefined);
  $('detail-error-box').hidden = !t.error;
  setText('detail-error', t.error ? `${t.error.code}\n${t.error.message}` : '');
  const attempts = detail.attempts.map((a) =>
    h(
      'tr',
      {},
      h('td', { class: 'num' }, String(a.attempt)),
      h('td', { class: 'mono small', title: a.worker ?? '' }, a.worker ? shortId(a.worker) : '–'),
      h('td', { class: 'small' }, fmtTime(a.startedAt)),
      h('td', { class: 'small' }, fmtTime(a.endedAt)),
      h('td', {}, statusPill(a.outcome)),
      h('td', { class: 'small bad' }, a.error ? `${a.error.code}: ${a.error.message}` : ''),
    ),
  );
  $('detail-attempts').replaceChildren(
    ...(attempts.length
      ? attempts
      : [
          h(
            'tr',
            {},
            h('td', { colspan: 6, class: 'empty' }, t.attempts === 0 ? 'Not started yet.' : 'Not observed.'),
          ),
        ]),
  );
  const cancel = $('detail-cancel');
  const retry = $('detail-retry');
  cancel.disabled = !state.actionsAllowed || FINAL.has(t.status);
  retry.disabled = !state.actionsAllowed || !(t.status === 'failed' || t.status === 'cancelled');
}

async function act(action) {
  const id = state.selected;
  if (id === undefined) return;
  try {
    const { task } = await api(`/api/tasks/${id}/${action}`, { method: 'POST', body: '{}' });
    upsertTasks([task]);
    toast(`Task ${id} ${action === 'cancel' ? 'cancelled' : 'queued again'}.`, 'ok');
    await refreshDetail();
  } catch (err) {
    toast(errorText(err), 'error');
  }
}

// ---- submit and search ----------------------------------------------------------------------

async function onSubmit(event) {
  event.preventDefault();
  const spec = { type: $('submit-type').value, payload: $('submit-payload').value };
  const priority = $('submit-priority').value.trim();
  const attempts = $('submit-attempts').value.trim();
  const key = $('submit-key').value.trim();
  if (priority) spec.priority = Number(priority);
  if (attempts) spec.maxAttempts = Number(attempts);
  if (key) spec.key = key;
  const button = $('submit-button');
  button.disabled = true;
  setText('submit-result', 'submitting…');
  try {
    const { id, duplicate } = await api('/api/tasks', { method: 'POST', body: JSON.stringify(spec) });
    setText('submit-result', duplicate ? `task ${id} (same key: existing task)` : `task ${id} submitted`);
    const { task } = await api(`/api/tasks/${id}`);
    upsertTasks([task]);
    if (!state.tasks.has(id)) {
      // Filtered out of the table: show it anyway, the user asked for it.
      state.tasks.set(id, task);
      state.order.unshift(id);
      renderTasks();
    }
  } catch (err) {
    setText('submit-result', '');
    toast(errorText(err), 'error');
  } finally {
    button.disabled = !state.actionsAllowed;
  }
}

async function onSearch(event) {
  event.preventDefault();
  const text = $('search-id').value.trim();
  if (!/^\d+$/.test(text)) {
    toast('A task id is a positive integer.', 'error');
    return;
  }
  const id = Number(text);
  try {
    const { task } = await api(`/api/tasks/${id}`);
    if (!state.tasks.has(id)) {
      state.tasks.set(id, task);
      state.order.push(id);
      state.order.sort((a, b) => b - a);
      renderTasks();
    }
    await openDetail(id);
    const row = document.querySelector(`#tasks-body tr[data-task-id="${id}"]`);
    if (row) row.scrollIntoView({ block: 'nearest' });
  } catch (err) {
    toast(err instanceof ApiError && err.status === 404 ? `No task ${id}.` : errorText(err), 'error');
  }
}

// ---- live events ----------------------------------------------------------------------------

function setLive(connected, text) {
  state.connected = connected;
  $('live-dot').className = `dot ${connected ? 'on' : 'off'}`;
  setText('live-text', text);
}

function onEvent(kind, data) {
  state.lastEventAt = Date.now();
  if (kind === 'snapshot') {
    if (data.stats) onStats(data.stats, data.sample);
    if (!data.dispatcher.reachable)
      banner(`The dispatcher does not answer: ${data.dispatcher.error ? data.dispatcher.error.message : ''}`);
  } else if (kind === 'stats') {
    banner('');
    onStats(data.stats, data.sample);
    setLive(true, `live · ${new Date(data.sample.at).toLocaleTimeString()}`);
  } else if (kind === 'tasks') {
    upsertTasks(data.tasks);
    if (state.selected !== undefined && data.tasks.some((t) => t.id === state.selected)) refreshDetailSoon();
    if (data.tasks.some((t) => FINAL.has(t.status))) refreshWorkersSoon();
  } else if (kind === 'workers') {
    refreshWorkersSoon();
    void refreshHealth();
  } else if (kind === 'dispatcher') {
    banner(data.reachable ? '' : `The dispatcher does not answer: ${data.error ? data.error.message : ''}`);
    void refreshHealth();
  }
}

/** Follows /api/events through fetch (EventSource cannot send a token); reconnects when it breaks. */
async function followEvents() {
  for (;;) {
    try {
      const res = await fetch('/api/events', { headers: { Accept: 'text/event-stream', ...authHeaders() } });
      if (res.status === 401) {
        askForToken();
        setLive(false, 'token needed');
        return;
      }
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
      setLive(true, 'live');
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let kind = 'message';
          let data = '';
          for (const line of block.split('\n')) {
            if (line.startsWith('event:')) kind = line.slice(6).trim();
            else if (line.startsWith('data:')) data += (data ? '\n' : '') + line.slice(5).replace(/^ /, '');
          }
          if (!data) continue;
          try {
            onEvent(kind, JSON.parse(data));
          } catch (err) {
            console.error('bad event', kind, err);
          }
        }
      }
    } catch (err) {
      console.warn('event stream broke', err);
    }
    setLive(false, 'reconnecting…');
    await new Promise((r) => setTimeout(r, RECONNECT_MS));
    // Anything missed while disconnected: fetch again rather than guess.
    void loadTasks();
    void refreshWorkers();
  }
}

// ---- start ----------------------------------------------------------------------------------

async function loadAll() {
  const history = api('/api/stats/history').then(
    (h) => {
      state.intervalMs = h.intervalMs;
      state.samples = h.samples;
    },
    () => undefined,
  );
  const stats = api('/api/stats').then(
    (st) => {
      state.stats = st;
    },
    (err) => {
      if (!(err instanceof ApiError && err.status === 401))
        banner(`The dispatcher does not answer: ${errorText(err)}`);
    },
  );
  await Promise.all([history, stats, refreshWorkers(), loadTasks(), refreshHealth()]);
  renderKpis();
  renderCharts();
  renderQueues();
}

function wire() {
  $('submit-form').addEventListener('submit', onSubmit);
  $('search-form').addEventListener('submit', onSearch);
  $('filter-status').addEventListener('change', (e) => {
    state.filters.status = e.target.value;
    void loadTasks();
  });
  $('filter-type').addEventListener('change', (e) => {
    state.filters.type = e.target.value;
    void loadTasks();
  });
  $('tasks-more').addEventListener('click', () => void loadTasks(true));
  $('detail-close').addEventListener('click', closeDetail);
  $('detail-cancel').addEventListener('click', () => void act('cancel'));
  $('detail-retry').addEventListener('click', () => void act('retry'));
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && !$('detail').hidden) closeDetail();
  });
  $('token-form').addEventListener('submit', () => {
    sessionStorage.setItem(TOKEN_KEY, $('token-input').value);
    tokenAsked = false;
    void start();
  });
  let resizeTimer;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(renderCharts, 150);
  });
  // Relative times ("3 s ago") age without new data.
  setInterval(() => {
    for (const node of document.querySelectorAll('[data-heartbeat]')) {
      const t = Number(node.dataset.heartbeat);
      node.textContent = `heartbeat ${fmtAgo(t)}`;
      node.classList.toggle('warn-text', Date.now() - t > LATE_HEARTBEAT_MS);
    }
  }, 1000);
  setInterval(() => void refreshHealth(), HEALTH_EVERY_MS);
}

let following = false;
async function start() {
  renderHealth();
  await loadAll();
  if (!following && !tokenAsked) {
    following = true;
    void followEvents().finally(() => {
      following = false;
    });
  }
}

wire();
void start();
