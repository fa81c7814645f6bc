/**
 * The built-in task types of worker_types/, called directly with a hand-made context.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ErrorCode, PermanentTaskError, type HandlerContext } from '../../src/worker/handler-api.ts';
import { handle as hash } from '../../worker_types/hash.ts';
import { graphemes, handle as reverse } from '../../worker_types/reverse.ts';
import { handle as sum } from '../../worker_types/sum.ts';
import { handle as upper } from '../../worker_types/upper.ts';
import { handle as wait } from '../../worker_types/wait.ts';

function context(
  signal: AbortSignal = new AbortController().signal,
  onProgress?: (f?: number) => void,
): HandlerContext {
  return { signal, progress: (f) => onProgress?.(f), taskId: 1, attempt: 1, type: 'test' };
}

function permanent(message: string | RegExp): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof PermanentTaskError, `expected a PermanentTaskError, got ${String(err)}`);
    assert.equal(err.code, ErrorCode.BAD_PAYLOAD);
    if (typeof message === 'string') assert.equal(err.message, message);
    else assert.match(err.message, message);
    return true;
  };
}

describe('reverse', () => {
  test('reverses plain text', () => {
    assert.equal(reverse('Hello'), 'olleH');
    assert.equal(reverse(''), '');
  });

  test('keeps emoji with ZWJ sequences, skin tones and flags whole', () => {
    const family = '👨‍👩‍👧‍👦';
    const thumbs = '👍🏽';
    assert.equal(reverse(`a${family}b${thumbs}🇩🇪🇯🇵`), `🇯🇵🇩🇪${thumbs}b${family}a`);
  });

  test('keeps letters with combining marks whole', () => {
    assert.equal(reverse('e\u0301a'), 'ae\u0301');
    assert.equal(reverse('n\u0303o\u0308'), 'o\u0308n\u0303');
  });

  test('keeps CRLF together and non-BMP characters intact', () => {
    assert.equal(reverse('a\r\nb'), 'b\r\na');
    assert.equal(reverse('x𝄞y'), 'y𝄞x');
  });

  // Long payloads are segmented in windows (Node 20's segmenter is quadratic on one long
  // string); a window must never change where the clusters are.
  test('segments window by window exactly as the whole string', () => {
    const segmenter = new Intl.Segmenter('und', { granularity: 'grapheme' });
    const whole = (s: string): string[] => Array.from(segmenter.segment(s), (x) => x.segment);
    // Pieces that join across a cut: CRLF, combining marks, skin tones, ZWJ, flag halves, Hangul
    // jamo, spacing marks, prepend, surrogate pairs and lone surrogates.
    const pieces = [
      'a',
      '\r',
      '\n',
      'e\u0301',
      '\u0301',
      '👍',
      '🏽',
      '\u200d',
      '👨‍👩‍👧',
      '🇫',
      '🇷',
      '한',
      '\u1100',
      '\u1161',
      '\u11a8',
      ' ',
      '\u0903',
      '\u0600',
      'ก',
      'ำ',
      '\ud800',
      '\udc00',
      '𝄞',
    ];
    let seed = 7;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    for (let round = 0; round < 400; round++) {
      let text = '';
      const length = random(600);
      while (text.length < length) text += pieces[random(pieces.length)];
      for (const window of [3, 16, 64])
        assert.deepEqual(graphemes(text, window), whole(text), JSON.stringify(text));
    }
    // A cluster longer than the window, and a run of regional indicators (paired from its start).
    for (const text of [`x${'\u0301'.repeat(300)}y`, '🇫'.repeat(301), `a${'\u200d'.repeat(200)}`])
      assert.deepEqual(graphemes(text, 16), whole(text));
  });

  // The bound guards against a hang (the quadratic segmentation takes minutes), not a speed.
  test('reverses a long payload of emoji in linear time', { timeout: 60_000 }, () => {
    const unit = '👍🏽e\u0301🇫🇷';
    const text = unit.repeat(25_000); // 250,000 code units: minutes in one segmentation
    const reversed = reverse(text);
    assert.equal(reversed.length, text.length);
    assert.equal(reversed.slice(0, 10), '🇫🇷e\u0301👍🏽');
    assert.equal(reverse(reversed), text);
  });
});

describe('upper', () => {
  test('upper-cases text without regard to locale', () => {
    assert.equal(upper('openai'), 'OPENAI');
    assert.equal(upper('istanbul'), 'ISTANBUL');
    assert.equal(upper('straße'), 'STRASSE');
  });
});

describe('hash', () => {
  test('returns the SHA-256 hex digest of the UTF-8 payload', () => {
    assert.equal(hash('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    assert.equal(hash(''), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    // UTF-8 (c3 a9), not Latin-1 (e9): the digest of the one-byte form would differ.
    assert.equal(hash('é'), '4a99557e4033c3539de2eb65472017cad5f9557f7a0625a09f1c3f6e2ba69c4c');
  });
});

describe('sum', () => {
  test('adds comma-separated integers', () => {
    assert.equal(sum('1,2,3'), '6');
    assert.equal(sum(' 1 , 2 ,3 '), '6');
    assert.equal(sum('42'), '42');
  });

  test('adds decimals exactly', () => {
    assert.equal(sum('0.1,0.2'), '0.3');
    assert.equal(sum('-1.5, 2'), '0.5');
    assert.equal(sum('1.25,1.75'), '3');
    assert.equal(sum('0.1,-0.1'), '0');
    assert.equal(sum('-0.5,0.25'), '-0.25');
    assert.equal(sum('.5,5.'), '5.5');
    assert.equal(sum('+1,-0'), '1');
  });

  test('keeps integers beyond 2^53 exact', () => {
    assert.equal(sum('9007199254740993,1'), '9007199254740994');
    assert.equal(sum('123456789012345678901234567890,1'), '123456789012345678901234567891');
    assert.equal(
      sum('0.000000000000000000001,1000000000000000000000'),
      '1000000000000000000000.000000000000000000001',
    );
  });

  test('accepts exponents and prints plain decimals', () => {
    assert.equal(sum('1e3,1'), '1001');
    assert.equal(sum('2.5E-2,1'), '1.025');
    assert.equal(sum('1e-3'), '0.001');
    assert.equal(sum('-1e2, 50'), '-50');
  });

  test('accepts a JSON array of numbers and numeric strings, exactly', () => {
    assert.equal(sum('[1, 2, 3]'), '6');
    assert.equal(sum('[0.1, "0.2"]'), '0.3');
    assert.equal(sum('[9007199254740993, 1]'), '9007199254740994');
    assert.equal(sum('[" 15 ", 1, -2.5e1]'), '-9');
    assert.equal(sum('[]'), '0');
  });

  test('sums an empty payload to 0', () => {
    assert.equal(sum(''), '0');
    assert.equal(sum('   '), '0');
  });

  test('fails permanently naming the item that is not a number', () => {
    assert.throws(() => sum('abc'), permanent('sum: "abc" is not a number'));
    assert.throws(() => sum('1, 2, abc, 4'), permanent('sum: "abc" is not a number'));
    assert.throws(() => sum('1,NaN'), permanent('sum: "NaN" is not a number'));
    assert.throws(() => sum('1,Infinity'), permanent('sum: "Infinity" is not a number'));
    assert.throws(() => sum('0x10'), permanent('sum: "0x10" is not a number'));
    assert.throws(() => sum('1 2'), permanent('sum: "1 2" is not a number'));
    assert.throws(() => sum('[1, "x"]'), permanent('sum: "x" is not a number'));
    assert.throws(() => sum('[1, true]'), permanent('sum: true is not a number'));
    assert.throws(() => sum('[1, [2]]'), permanent('sum: [2] is not a number'));
    assert.throws(() => sum('[1, "a,]"]'), permanent('sum: "a,]" is not a number'));
  });

  test('fails permanently on empty items, broken JSON and huge exponents', () => {
    assert.throws(() => sum('1,,2'), permanent('sum: item 2 is empty (between commas)'));
    assert.throws(() => sum('1,'), permanent('sum: item 2 is empty (between commas)'));
    assert.throws(() => sum('[1, 2'), permanent(/^sum: the payload starts with "\[" but is not valid JSON/));
    assert.throws(
      () => sum('1e1001'),
      permanent('sum: "1e1001" has an exponent out of range (at most ±1000)'),
    );
  });

  test('names a long bad item by its first characters only', () => {
    assert.throws(() => sum(`1,${'z'.repeat(500)}`), permanent(/^sum: "z{60}…" is not a number$/));
  });
});

describe('wait', () => {
  test('waits the given seconds and says so, reporting progress', async () => {
    const reports: (number | undefined)[] = [];
    const started = performance.now();
    assert.equal(
      await wait(
        '0.2',
        context(undefined, (f) => reports.push(f)),
      ),
      'waited 0.2s',
    );
    assert.ok(performance.now() - started >= 195);
    assert.ok(reports.length >= 2, `progress reported ${reports.length} times`);
    assert.equal(reports.at(-1), 1);
    assert.deepEqual(
      [...reports].sort((a, b) => (a ?? 0) - (b ?? 0)),
      reports,
    );
  });

  test('waits zero seconds', async () => {
    assert.equal(await wait('0', context()), 'waited 0s');
    assert.equal(await wait(' 0.0 ', context()), 'waited 0s');
  });

  test('fails permanently on a negative number, NaN or words', async () => {
    await assert.rejects(
      wait('-1', context()),
      permanent('wait: "-1" is negative; expected a non-negative number of seconds'),
    );
    await assert.rejects(wait('NaN', context()), permanent('wait: "NaN" is not a number of seconds'));
    await assert.rejects(wait('soon', context()), permanent('wait: "soon" is not a number of seconds'));
    await assert.rejects(wait('', context()), permanent('wait: "" is not a number of seconds'));
    await assert.rejects(wait('1e400', context()), permanent('wait: "1e400" seconds is out of range'));
  });

  test('stops promptly when its signal fires', async () => {
    const controller = new AbortController();
    const started = performance.now();
    const waiting = wait('30', context(controller.signal));
    setTimeout(() => controller.abort(new Error('stop')), 50);
    await assert.rejects(waiting, /stop/);
    assert.ok(performance.now() - started < 10_000, 'a 30 s wait stopped long before its end');
  });

  test('does not start when its signal has already fired', async () => {
    const controller = new AbortController();
    controller.abort(new Error('already'));
    await assert.rejects(wait('30', context(controller.signal)), /already/);
  });
});
