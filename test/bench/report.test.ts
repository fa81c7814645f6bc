/**
 * The side-by-side benchmark's report (bench/lib/report.ts) on fixed per-round figures: ratios
 * paired within each round, the targets, the line scripts read, the table and the SVG chart.
 * The benchmark itself is not run here (`npm run bench`).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  benchLine,
  markdownReport,
  pairRatios,
  summarize,
  svgChart,
  targets,
  textReport,
  type BenchData,
} from '../../bench/lib/report.ts';
import { summary } from '../../bench/lib/stats.ts';

function fixture(overrides: Partial<BenchData['rounds']> = {}): BenchData {
  return {
    meta: {
      date: '2026-11-28T20:00:00Z',
      quick: true,
      rounds: 3,
      workers: [1, 4],
      tasks: 20_000,
      sequential: 200,
      queued: 1_000_000,
      queuedRuns: 1,
      taskgridConcurrency: 256,
      bullmqConcurrency: 50,
      loadBefore: [1.5, 1.2, 1.0],
      loadAfter: [2.5, 1.8, 1.2],
      cpus: 2,
      node: 'v20.20.2',
      redis: 'Redis 7.0.15',
      bullmq: '6.7.0',
      aof: false,
    },
    rounds: {
      tg_tps_w1: [30_000, 20_000, 40_000],
      tg_tps_w4: [60_000, 90_000, 30_000],
      tg_cpu_us_w1: [50, 60, 55],
      tg_cpu_us_w4: [40, 45, 50],
      bull_tps_w1: [6_000, 5_000, 3_000],
      bull_tps_w4: [5_000, 9_000, 2_000],
      bull_cpu_us_w1: [300, 330, 310],
      bull_cpu_us_w4: [400, 450, 420],
      tg_p50_us: [200, 250, 300],
      tg_p99_us: [1_000, 1_500, 1_200],
      bull_p50_us: [1_300, 1_400, 1_200],
      bull_p99_us: [7_000, 6_500, 7_600],
      raw_p50_us: [60, 100, 70],
      raw_p99_us: [150, 200, 180],
      raw_window_mps: [70_000, 75_000, 72_000],
      rr_window_rps: [150_000, 180_000, 160_000],
      ...overrides,
    },
    queued: {
      submit_tps: [62_500],
      rss_mb: [180.4],
      rss_after_mb: [150],
      drain_s: [20],
      drain_tps: [50_000],
    },
    latency: {
      tg: Array.from({ length: 600 }, (_, i) => 150 + i),
      bull: Array.from({ length: 600 }, (_, i) => 1_000 + 10 * i),
      raw: Array.from({ length: 600 }, (_, i) => 40 + i / 10),
    },
  };
}

describe('bench report', () => {
  test('the median of an even count is the mean of the middle two', () => {
    assert.deepEqual(summary([4, 1, 3, 2]), { median: 2.5, min: 1, max: 4 });
    assert.deepEqual(summary([5, 1, 3]), { median: 3, min: 1, max: 5 });
  });

  test('ratios are taken within each round, against BullMQ’s best configuration of that round', () => {
    const d = fixture();
    const r = pairRatios(d.rounds, d.meta.workers);
    // Round 1: 60,000 / max(6,000, 5,000); round 2: 90,000 / 9,000; round 3: 30,000 / 3,000.
    assert.deepEqual(r.tps_ratio, [10, 10, 10]);
    assert.deepEqual(r.bull_best_tps, [6_000, 9_000, 3_000]);
    assert.deepEqual(r.tps_ratio_w4, [12, 10, 15]);
    assert.deepEqual(r.p50_tg_over_raw, [200 / 60, 2.5, 300 / 70]);
    // The ratio of the medians (60,000 / 5,000 = 12) is not what is reported.
    assert.equal(summarize(d).tps_ratio!.median, 10);
  });

  test('the last line has exactly the fields scripts read, each a median of the run', () => {
    const d = fixture();
    const line = benchLine(summarize(d), d.meta);
    assert.match(
      line,
      /^bench: tps=\d+ bullmq_tps=\d+ tps_ratio=\d+\.\d\d p50_us=\d+ p99_us=\d+ bullmq_p50_us=\d+ bullmq_p99_us=\d+ raw_p50_us=\d+ submit_1m_tps=\d+ rss_1m_mb=\d+$/,
    );
    const fields: Record<string, string> = Object.fromEntries(
      line
        .slice('bench: '.length)
        .split(' ')
        .map((kv) => kv.split('=') as [string, string]),
    );
    assert.deepEqual(fields, {
      tps: '60000',
      bullmq_tps: '6000',
      tps_ratio: '10.00',
      p50_us: '250',
      p99_us: '1200',
      bullmq_p50_us: '1300',
      bullmq_p99_us: '7000',
      raw_p50_us: '70',
      submit_1m_tps: '62500',
      rss_1m_mb: '180',
    });
    assert.equal(textReport(d).at(-1), line);
  });

  test('each target says whether it holds in this run', () => {
    const d = fixture();
    const got = Object.fromEntries(targets(summarize(d), d.meta).map((t) => [t.label, t.holds]));
    assert.deepEqual(got, {
      'throughput >= 10x BullMQ': true, // exactly 10x
      'round-trip p50 <= 1/5 of BullMQ': true, // median of 6.5, 5.6, 4
      'round-trip p50 <= 3x raw ping-pong': false, // median of 3.33, 2.5, 4.29
      'round-trip p99 <= 1/5 of BullMQ': true, // median of 7, 4.33, 6.33
      'dispatcher RSS with 1,000,000 queued < 200 MB': true,
      'submit >= 50,000 tasks/s (1,000,000 queued)': true,
    });
    const slower = fixture({ tg_tps_w4: [59_000, 89_000, 29_000] });
    assert.equal(targets(summarize(slower), slower.meta)[0]!.holds, false);
    const text = textReport(d).join('\n');
    assert.match(text, /MISSED {2}round-trip p50 <= 3x raw ping-pong/);
    assert.match(text, /HOLDS {3}throughput >= 10x BullMQ/);
  });

  test('a measure not taken is left out of the table, never shown as NaN', () => {
    const d = fixture();
    const text = textReport(d).join('\n');
    assert.doesNotMatch(text, /NaN|Infinity/);
    assert.doesNotMatch(text, /appendonly/, 'no AOF figures in this run');
    assert.match(
      text,
      /20,000 reverse tasks, 4 worker processes \(tasks\/s\) +60,000 {2}\[30,000\.\.90,000\]/,
    );
    const md = markdownReport(d);
    assert.match(md, /^\| measure \| median \[min\.\.max\] \|$/m);
    assert.match(md, /\| target: round-trip p50 <= 3x raw ping-pong \| \*\*missed\*\*/);
  });

  test('TaskGrid with handler threads gets a section, a bar and a curve of its own, and leaves the bench line alone', () => {
    const d = fixture({
      tgt_tps_w1: [20_000, 15_000, 25_000],
      tgt_cpu_us_w1: [70, 80, 75],
      tgt_p50_us: [400, 450, 500],
      tgt_p99_us: [2_000, 2_500, 3_000],
    });
    d.latency.tgt = Array.from({ length: 600 }, (_, i) => 400 + i);
    const text = textReport(d).join('\n');
    assert.doesNotMatch(text, /NaN|Infinity/);
    assert.match(
      text,
      /TaskGrid, reverse in handler threads \(the default\)\n {2}20,000 reverse tasks, 1 worker process \(tasks\/s\) +20,000 {2}\[15,000\.\.25,000\]/,
    );
    assert.match(
      text,
      /TaskGrid, reverse in handler threads[^]*round trip p50, 200 sequential \(us\) +450 {2}\[400\.\.500\]/,
    );
    assert.equal(textReport(d).at(-1), textReport(fixture()).at(-1), 'the bench line is the inline grid’s');
    const svg = svgChart(d);
    assert.equal((svg.match(/<polyline /g) ?? []).length, 4);
    const threadBars = [...svg.matchAll(/<rect [^>]*height="([\d.]+)" fill="#17becf"\/>/g)].filter(
      (b) => Number(b[1]) !== 14,
    );
    assert.equal(threadBars.length, 1, 'one bar: it was measured with one worker process only');
  });

  test('the chart is one SVG with a bar per system and worker count and a curve per latency series', () => {
    const d = fixture();
    const svg = svgChart(d);
    assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"[^>]*>/);
    assert.ok(svg.trimEnd().endsWith('</svg>'));
    assert.doesNotMatch(svg, /NaN|Infinity|undefined/);
    // Every element is closed: self-closing, or opened and closed the same number of times.
    for (const tag of ['svg', 'text']) {
      assert.equal(
        (svg.match(new RegExp(`<${tag}[ >]`, 'g')) ?? []).length,
        (svg.match(new RegExp(`</${tag}>`, 'g')) ?? []).length,
      );
    }
    assert.equal((svg.match(/<polyline /g) ?? []).length, 3, 'TaskGrid, BullMQ and raw round trips');
    const bars = [
      ...svg.matchAll(
        /<rect x="[\d.]+" y="([\d.]+)" width="[\d.]+" height="([\d.]+)" fill="(#[0-9a-f]+)"\/>/g,
      ),
    ];
    const byColor = (c: string) => bars.filter((b) => b[3] === c).map((b) => Number(b[2]));
    // Two bars (1 and 4 workers) for each system, plus one legend swatch (14 high).
    const tg = byColor('#1f77b4').filter((h) => h !== 14);
    const bull = byColor('#d62728').filter((h) => h !== 14);
    assert.equal(tg.length, 2);
    assert.equal(bull.length, 2);
    // Bar heights follow the medians: TaskGrid 30,000 (1 worker) and 60,000 (4); BullMQ 5,000 (1).
    assert.ok(Math.abs(tg[1]! / tg[0]! - 60_000 / 30_000) < 0.01);
    assert.ok(Math.abs(tg[0]! / bull[0]! - 30_000 / 5_000) < 0.01);
  });
});
