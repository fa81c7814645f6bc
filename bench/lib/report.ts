/**
 * The side-by-side benchmark's report (bench/main.ts): per-round figures in, ratios computed
 * pair by pair within each round, the table, the targets, the one line a script reads, a
 * Markdown table and an SVG chart out. Pure: no I/O, so it is tested on fixed inputs
 * (test/bench/report.test.ts).
 */
import { fmt, pct, summary, type Summary } from './stats.ts';

/** Per-round values of each measure, index = round (NaN where a round did not measure it). */
export type Rounds = Record<string, number[]>;

/** The systems measured side by side, as keys of the measures (`${system}_tps_w${n}`, ...). */
export const SYSTEMS = {
  tg: 'TaskGrid',
  tgt: 'TaskGrid, handler threads',
  bull: 'BullMQ',
  aof: 'BullMQ, Redis AOF everysec',
} as const;
export type System = keyof typeof SYSTEMS;

export interface BenchMeta {
  date: string;
  quick: boolean;
  rounds: number;
  /** Worker process counts measured (the last is the one of `tps`). */
  workers: number[];
  tasks: number;
  sequential: number;
  queued: number;
  queuedRuns: number;
  taskgridConcurrency: number;
  bullmqConcurrency: number;
  /** Load average (1, 5, 15 min) at the start and at the end. */
  loadBefore: number[];
  loadAfter: number[];
  cpus: number;
  node: string;
  redis: string;
  bullmq: string;
  /** Whether the BullMQ side was also measured on Redis with an append-only file. */
  aof: boolean;
}

export interface BenchData {
  meta: BenchMeta;
  /** Per-round measures of the side-by-side rounds. */
  rounds: Rounds;
  /** Per-run measures of the queued phase: submit_tps, rss_mb, rss_after_mb, workers_start_s, drain_s, drain_tps. */
  queued: Rounds;
  /** Every round trip (microseconds) of every round, per series: tg, tgt, bull, aof, raw. */
  latency: Partial<Record<System | 'raw', number[]>>;
}

/** `a[i] op b[i]` for every round. */
function pairwise(
  a: readonly number[] = [],
  b: readonly number[] = [],
  op: (x: number, y: number) => number,
): number[] {
  return a.map((x, i) => op(x, b[i] ?? NaN));
}
const div = (x: number, y: number) => x / y;

/**
 * Ratios within each round: throughput TaskGrid/BullMQ per worker count and against BullMQ's
 * best configuration of that round (`tps_ratio`), CPU per task BullMQ/TaskGrid, round trips
 * BullMQ/TaskGrid and TaskGrid/raw.
 */
export function pairRatios(rounds: Rounds, workers: readonly number[]): Rounds {
  const out: Rounds = {};
  for (const w of workers) {
    out[`tps_ratio_w${w}`] = pairwise(rounds[`tg_tps_w${w}`], rounds[`bull_tps_w${w}`], div);
    out[`cpu_ratio_w${w}`] = pairwise(rounds[`bull_cpu_us_w${w}`], rounds[`tg_cpu_us_w${w}`], div);
  }
  const top = workers.at(-1)!;
  const n = rounds[`tg_tps_w${top}`]?.length ?? 0;
  const bullBest = Array.from({ length: n }, (_, i) => {
    const measured = workers
      .map((w) => rounds[`bull_tps_w${w}`]?.[i] ?? NaN)
      .filter((x) => Number.isFinite(x));
    return measured.length > 0 ? Math.max(...measured) : NaN;
  });
  out.bull_best_tps = bullBest;
  out.tps_ratio = pairwise(rounds[`tg_tps_w${top}`], bullBest, div);
  out.p50_bull_over_tg = pairwise(rounds.bull_p50_us, rounds.tg_p50_us, div);
  out.p99_bull_over_tg = pairwise(rounds.bull_p99_us, rounds.tg_p99_us, div);
  out.p50_tg_over_raw = pairwise(rounds.tg_p50_us, rounds.raw_p50_us, div);
  return out;
}

export type Summaries = Record<string, Summary>;

/** Median [min..max] of every measure, of the ratios and of the queued phase's runs. */
export function summarize(data: BenchData): Summaries {
  const all: Rounds = {
    ...data.rounds,
    ...pairRatios(data.rounds, data.meta.workers),
    ...prefixed(data.queued),
  };
  return Object.fromEntries(
    Object.entries(all).map(([k, v]) => [k, summary(v.filter((x) => Number.isFinite(x)))]),
  );
}
const prefixed = (r: Rounds): Rounds =>
  Object.fromEntries(Object.entries(r).map(([k, v]) => [`queued_${k}`, v]));

const med = (s: Summaries, key: string): number => s[key]?.median ?? NaN;

export interface Target {
  label: string;
  /** The figure compared, as printed. */
  shown: string;
  holds: boolean;
}

/** Issue 7's targets, judged on this run's medians (of per-round ratios where it is a ratio). */
export function targets(s: Summaries, meta: BenchMeta): Target[] {
  const queued = meta.queued.toLocaleString('en-US');
  const t = (label: string, value: number, holds: (v: number) => boolean, shown: string): Target => ({
    label,
    shown,
    holds: Number.isFinite(value) && holds(value),
  });
  const tps = med(s, 'tps_ratio');
  const p50b = med(s, 'p50_bull_over_tg');
  const p50r = med(s, 'p50_tg_over_raw');
  const p99b = med(s, 'p99_bull_over_tg');
  const rss = med(s, 'queued_rss_mb');
  const submit = med(s, 'queued_submit_tps');
  return [
    t('throughput >= 10x BullMQ', tps, (v) => v >= 10, `${tps.toFixed(2)}x`),
    t('round-trip p50 <= 1/5 of BullMQ', p50b, (v) => v >= 5, `BullMQ's is ${p50b.toFixed(2)}x`),
    t('round-trip p50 <= 3x raw ping-pong', p50r, (v) => v <= 3, `${p50r.toFixed(2)}x raw`),
    t('round-trip p99 <= 1/5 of BullMQ', p99b, (v) => v >= 5, `BullMQ's is ${p99b.toFixed(2)}x`),
    t(`dispatcher RSS with ${queued} queued < 200 MB`, rss, (v) => v < 200, `${rss.toFixed(0)} MB`),
    t(`submit >= 50,000 tasks/s (${queued} queued)`, submit, (v) => v >= 50_000, `${fmt(submit)}/s`),
  ];
}

/** The last line, for scripts: every figure a median of this run. */
export function benchLine(s: Summaries, meta: BenchMeta): string {
  const top = meta.workers.at(-1)!;
  const int = (k: string) => String(Math.round(med(s, k)));
  return (
    `bench: tps=${int(`tg_tps_w${top}`)} bullmq_tps=${int('bull_best_tps')} tps_ratio=${med(s, 'tps_ratio').toFixed(2)}` +
    ` p50_us=${int('tg_p50_us')} p99_us=${int('tg_p99_us')} bullmq_p50_us=${int('bull_p50_us')}` +
    ` bullmq_p99_us=${int('bull_p99_us')} raw_p50_us=${int('raw_p50_us')}` +
    ` submit_1m_tps=${int('queued_submit_tps')} rss_1m_mb=${int('queued_rss_mb')}`
  );
}

interface Row {
  label: string;
  key: string;
  /** Suffix of the figure ("x" for ratios). */
  unit?: string;
}
interface Section {
  title: string;
  rows: Row[];
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 'es'}`;

/** The table's sections, rows only where this run measured something. */
export function sections(s: Summaries, meta: BenchMeta): Section[] {
  const tasks = meta.tasks.toLocaleString('en-US');
  const seq = meta.sequential.toLocaleString('en-US');
  const perSystem = (sys: System): Row[] => [
    ...meta.workers.map((w) => ({
      label: `${tasks} reverse tasks, ${plural(w, 'worker process')} (tasks/s)`,
      key: `${sys}_tps_w${w}`,
    })),
    ...meta.workers.map((w) => ({
      label: `CPU per task, ${plural(w, 'worker process')} (us, all processes)`,
      key: `${sys}_cpu_us_w${w}`,
    })),
    { label: `round trip p50, ${seq} sequential (us)`, key: `${sys}_p50_us` },
    { label: 'round trip p99 (us)', key: `${sys}_p99_us` },
  ];
  const top = meta.workers.at(-1)!;
  const queued = meta.queued.toLocaleString('en-US');
  const all: Section[] = [
    {
      title: `TaskGrid: UDP, SQLite WAL; worker concurrency ${meta.taskgridConcurrency}; reverse inline (worker --inline)`,
      rows: perSystem('tg'),
    },
    {
      title: 'TaskGrid, reverse in handler threads (the default)',
      rows: perSystem('tgt'),
    },
    {
      title: `BullMQ ${meta.bullmq} on ${meta.redis}, no persistence; worker concurrency ${meta.bullmqConcurrency}`,
      rows: perSystem('bull'),
    },
    { title: 'BullMQ, Redis with appendonly yes, appendfsync everysec', rows: perSystem('aof') },
    {
      title: 'The limit: node:dgram and the TaskGrid transport between two processes',
      rows: [
        { label: 'raw ping-pong p50 (us)', key: 'raw_p50_us' },
        { label: 'raw ping-pong p99 (us)', key: 'raw_p99_us' },
        { label: 'raw echo, 128 in flight (msg/s)', key: 'raw_window_mps' },
        { label: 'request/response, 1,000 in flight (req/s)', key: 'rr_window_rps' },
      ],
    },
    {
      title: `${queued} tasks queued with no workers, then drained by ${plural(top, 'worker process')} (${meta.queuedRuns} run${meta.queuedRuns === 1 ? '' : 's'})`,
      rows: [
        { label: 'submit, batches of 500 from one client (tasks/s)', key: 'queued_submit_tps' },
        { label: 'dispatcher RSS, peak while submitting (MB)', key: 'queued_rss_mb' },
        { label: 'dispatcher RSS, all queued (MB)', key: 'queued_rss_after_mb' },
        { label: 'workers started, all ready (s)', key: 'queued_workers_start_s' },
        { label: 'drain, from the first worker ready (s)', key: 'queued_drain_s' },
        { label: 'drain rate (tasks/s)', key: 'queued_drain_tps' },
      ],
    },
    {
      title: 'Ratios, pair by pair within each round',
      rows: [
        ...meta.workers.map((w) => ({
          label: `throughput TaskGrid / BullMQ, ${plural(w, 'worker process')}`,
          key: `tps_ratio_w${w}`,
          unit: 'x',
        })),
        { label: `throughput TaskGrid (${top}) / BullMQ's best`, key: 'tps_ratio', unit: 'x' },
        ...meta.workers.map((w) => ({
          label: `CPU per task BullMQ / TaskGrid, ${plural(w, 'worker process')}`,
          key: `cpu_ratio_w${w}`,
          unit: 'x',
        })),
        { label: 'round trip p50 BullMQ / TaskGrid', key: 'p50_bull_over_tg', unit: 'x' },
        { label: 'round trip p99 BullMQ / TaskGrid', key: 'p99_bull_over_tg', unit: 'x' },
        { label: 'round trip p50 TaskGrid / raw ping-pong', key: 'p50_tg_over_raw', unit: 'x' },
      ],
    },
  ];
  return all
    .map((sec) => ({ ...sec, rows: sec.rows.filter((r) => Number.isFinite(s[r.key]?.median)) }))
    .filter((sec) => sec.rows.length > 0);
}

const cell = (x: Summary, unit = '') => `${fmt(x.median)}${unit}`;
const range = (x: Summary) => `[${fmt(x.min)}..${fmt(x.max)}]`;

/** The printed report: header, sections, targets and the bench line. */
export function textReport(data: BenchData): string[] {
  const { meta } = data;
  const s = summarize(data);
  const load = (l: number[]) => l.map((x) => x.toFixed(2)).join(' ');
  const lines = [
    `TaskGrid beside BullMQ (${meta.quick ? 'quick' : 'full'}; ${meta.rounds} rounds; median [min..max]; ${meta.date})`,
    `  ${meta.cpus} CPUs, node ${meta.node}; load average ${load(meta.loadBefore)} at the start, ${load(meta.loadAfter)} at the end`,
  ];
  for (const sec of sections(s, meta)) {
    lines.push(sec.title);
    for (const r of sec.rows) {
      const x = s[r.key]!;
      lines.push(`  ${r.label.padEnd(58)} ${cell(x, r.unit).padStart(11)}  ${range(x)}`);
    }
  }
  lines.push('Targets (this run)');
  for (const t of targets(s, meta))
    lines.push(`  ${t.holds ? 'HOLDS ' : 'MISSED'}  ${t.label.padEnd(48)} ${t.shown}`);
  lines.push(benchLine(s, meta));
  return lines;
}

/** The same figures as a Markdown table (for docs/PERFORMANCE.md). */
export function markdownReport(data: BenchData): string {
  const s = summarize(data);
  const out = ['| measure | median [min..max] |', '|---|---|'];
  for (const sec of sections(s, data.meta)) {
    out.push(`| **${sec.title}** | |`);
    for (const r of sec.rows) out.push(`| ${r.label} | ${cell(s[r.key]!, r.unit)} ${range(s[r.key]!)} |`);
  }
  for (const t of targets(s, data.meta))
    out.push(`| target: ${t.label} | ${t.holds ? 'holds' : '**missed**'}: ${t.shown} |`);
  return `${out.join('\n')}\n\n\`${benchLine(s, data.meta)}\`\n`;
}

// ---- chart ----------------------------------------------------------------------------------

const COLORS: Record<System | 'raw', string> = {
  tg: '#1f77b4',
  tgt: '#17becf',
  bull: '#d62728',
  aof: '#ff7f0e',
  raw: '#7f7f7f',
};
const LABELS: Record<System | 'raw', string> = { ...SYSTEMS, raw: 'raw node:dgram ping-pong' };

const esc = (t: string) =>
  t.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const num = (x: number) => (Math.round(x * 10) / 10).toString();
function text(x: number, y: number, body: string, attrs = ''): string {
  return `<text x="${num(x)}" y="${num(y)}"${attrs ? ` ${attrs}` : ''}>${esc(body)}</text>`;
}

/** A round number step giving about `n` ticks up to `max`. */
export function niceStep(max: number, n = 5): number {
  const raw = max / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * mag;
}

const short = (x: number) => (x >= 1000 ? `${num(x / 1000)}k` : num(x));

/**
 * Hand-written SVG, two panels: throughput against worker processes (bars at the median,
 * whiskers min..max over rounds) and the distribution of every round trip measured (share of
 * round trips at or under a time, time on a log scale).
 */
export function svgChart(data: BenchData): string {
  const W = 960;
  const H = 420;
  const s = summarize(data);
  const { meta } = data;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    text(
      16,
      22,
      `TaskGrid beside BullMQ: ${meta.date}, ${meta.quick ? 'quick' : 'full'}, ${meta.rounds} rounds, load ${meta.loadBefore[0]?.toFixed(2)}..${meta.loadAfter[0]?.toFixed(2)}`,
      'font-size="14" font-weight="bold"',
    ),
  ];

  // Panel 1: throughput against worker processes.
  const p1 = { x: 70, y: 60, w: 360, h: 290 };
  const systems = (Object.keys(SYSTEMS) as System[]).filter((sys) =>
    meta.workers.some((w) => Number.isFinite(s[`${sys}_tps_w${w}`]?.median)),
  );
  const maxTps = Math.max(
    ...systems.flatMap((sys) => meta.workers.map((w) => s[`${sys}_tps_w${w}`]?.max ?? 0)),
    1,
  );
  const step = niceStep(maxTps);
  const top = Math.ceil(maxTps / step) * step;
  const y1 = (v: number) => p1.y + p1.h - (v / top) * p1.h;
  parts.push(
    text(
      p1.x,
      p1.y - 18,
      `Throughput, ${meta.tasks.toLocaleString('en-US')} reverse tasks (tasks/s)`,
      'font-weight="bold"',
    ),
  );
  for (let v = 0; v <= top + step / 2; v += step) {
    parts.push(
      `<line x1="${p1.x}" x2="${p1.x + p1.w}" y1="${num(y1(v))}" y2="${num(y1(v))}" stroke="#ddd"/>`,
    );
    parts.push(text(p1.x - 6, y1(v) + 4, short(v), 'text-anchor="end"'));
  }
  const groupW = p1.w / meta.workers.length;
  const barW = Math.min(40, (groupW * 0.8) / Math.max(1, systems.length));
  meta.workers.forEach((w, gi) => {
    const gx = p1.x + gi * groupW + (groupW - barW * systems.length) / 2;
    systems.forEach((sys, si) => {
      const v = s[`${sys}_tps_w${w}`];
      if (!v || !Number.isFinite(v.median)) return;
      const x = gx + si * barW;
      const cx = x + barW / 2;
      parts.push(
        `<rect x="${num(x + 2)}" y="${num(y1(v.median))}" width="${num(barW - 4)}" height="${num(p1.y + p1.h - y1(v.median))}" fill="${COLORS[sys]}"/>`,
      );
      parts.push(
        `<line x1="${num(cx)}" x2="${num(cx)}" y1="${num(y1(v.min))}" y2="${num(y1(v.max))}" stroke="#000"/>`,
      );
      parts.push(text(cx, y1(v.max) - 4, short(v.median), 'text-anchor="middle" font-size="10"'));
    });
    parts.push(
      text(
        p1.x + gi * groupW + groupW / 2,
        p1.y + p1.h + 16,
        plural(w, 'worker process'),
        'text-anchor="middle"',
      ),
    );
  });
  parts.push(
    `<line x1="${p1.x}" x2="${p1.x + p1.w}" y1="${p1.y + p1.h}" y2="${p1.y + p1.h}" stroke="#000"/>`,
  );

  // Panel 2: round-trip distribution.
  const p2 = { x: 540, y: 60, w: 390, h: 290 };
  const series = (['tg', 'tgt', 'bull', 'aof', 'raw'] as const).filter(
    (k) => (data.latency[k]?.length ?? 0) > 0,
  );
  const sorted = Object.fromEntries(series.map((k) => [k, [...data.latency[k]!].sort((a, b) => a - b)]));
  const lo = 10 ** Math.floor(Math.log10(Math.max(1, Math.min(...series.map((k) => sorted[k]![0]!)))));
  const hi = 10 ** Math.ceil(Math.log10(Math.max(lo * 10, ...series.map((k) => sorted[k]!.at(-1)!))));
  const x2 = (us: number) =>
    p2.x + ((Math.log10(Math.max(us, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * p2.w;
  const y2 = (share: number) => p2.y + p2.h - share * p2.h;
  parts.push(
    text(
      p2.x,
      p2.y - 18,
      `Round trips, ${meta.sequential.toLocaleString('en-US')} sequential per round (share at or under)`,
      'font-weight="bold"',
    ),
  );
  // (100% would overlap 99%: its line is the top of the frame, unlabelled.)
  for (const share of [0, 0.25, 0.5, 0.75, 0.9, 0.99, 1]) {
    const dash = share === 0.5 || share === 0.99 ? ' stroke-dasharray="4 3"' : '';
    parts.push(
      `<line x1="${p2.x}" x2="${p2.x + p2.w}" y1="${num(y2(share))}" y2="${num(y2(share))}" stroke="#ddd"${dash}/>`,
    );
    if (share < 1)
      parts.push(text(p2.x - 6, y2(share) + 4, `${Math.round(share * 100)}%`, 'text-anchor="end"'));
  }
  for (let us = lo; us <= hi; us *= 10) {
    parts.push(
      `<line x1="${num(x2(us))}" x2="${num(x2(us))}" y1="${p2.y}" y2="${p2.y + p2.h}" stroke="#ddd"/>`,
    );
    parts.push(
      text(
        x2(us),
        p2.y + p2.h + 16,
        us >= 1e6 ? `${us / 1e6} s` : us >= 1000 ? `${us / 1000} ms` : `${us} us`,
        'text-anchor="middle"',
      ),
    );
  }
  for (const k of series) {
    const v = sorted[k]!;
    const points: string[] = [];
    const steps = Math.min(400, v.length);
    for (let i = 0; i <= steps; i++) {
      const share = i / steps;
      points.push(`${num(x2(pct(v, Math.min(share, 0.99999))))},${num(y2(share))}`);
    }
    parts.push(`<polyline fill="none" stroke="${COLORS[k]}" stroke-width="2" points="${points.join(' ')}"/>`);
  }
  parts.push(
    `<line x1="${p2.x}" x2="${p2.x + p2.w}" y1="${p2.y + p2.h}" y2="${p2.y + p2.h}" stroke="#000"/>`,
  );

  // Legend.
  const legend = [...new Set<System | 'raw'>([...systems, ...series])];
  legend.forEach((k, i) => {
    const lx = 40 + i * 180;
    parts.push(`<rect x="${lx}" y="${H - 30}" width="14" height="14" fill="${COLORS[k]}"/>`);
    parts.push(text(lx + 20, H - 19, LABELS[k]));
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
