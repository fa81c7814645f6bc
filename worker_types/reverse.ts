/**
 * Task type `reverse`: the payload reversed by user-perceived characters (grapheme clusters),
 * so emoji with skin tones or ZWJ sequences, flags, CRLF and letters with combining marks stay
 * whole: "Hello" -> "olleH", "e\u0301a" -> "ae\u0301".
 */
import type { HandlerContext } from '../src/worker/handler-api.ts';

// Printable ASCII without CR: every code unit is a grapheme of its own, so plain code-unit
// reversal is exact and skips the segmenter (several times slower on short strings).
const SIMPLE = /^[\x20-\x7e]*$/;

// Building a segmenter costs more than segmenting a short payload; it holds no per-call state
// (each segment() call returns its own iterator), so one per module is safe to share. Grapheme
// rules (UAX #29) are not tailored per locale, so the locale argument changes nothing.
const graphemeSegmenter = new Intl.Segmenter('und', { granularity: 'grapheme' });

/**
 * Code units segmented at a time. Node 20's Intl.Segmenter takes time quadratic in the
 * segments of one string (30,000 ASCII letters: 0.4 s; 250,000 emoji code units: minutes),
 * so a long payload is segmented window by window, each about 1 us a grapheme.
 */
export const SEGMENT_WINDOW = 1024;

/**
 * The grapheme clusters of `text`, as one segmentation of the whole string gives them. Each
 * window starts at a boundary the previous window found, and its last cluster, which may
 * continue past the window, is segmented again at the start of the next. A boundary depends
 * only on what precedes it and on the code point after it (UAX #29 looks back, never further
 * ahead), so the boundaries before a window's last cluster are exact, provided the window does
 * not end between the halves of a surrogate pair. A cluster longer than a window doubles it.
 */
export function graphemes(text: string, window = SEGMENT_WINDOW): string[] {
  const out: string[] = [];
  let start = 0;
  let size = window;
  while (start < text.length) {
    let end = Math.min(text.length, start + size);
    while (end < text.length && (text.charCodeAt(end - 1) & 0xfc00) === 0xd800) end++;
    const before = out.length;
    let last = 0;
    for (const s of graphemeSegmenter.segment(text.slice(start, end))) {
      out.push(s.segment);
      last = s.index;
    }
    if (end === text.length) break;
    if (out.length - before >= 2) {
      out.pop();
      start += last;
      size = window;
    } else {
      out.length = before;
      size *= 2;
    }
  }
  return out;
}

/** Reverses `payload` grapheme by grapheme. */
export function handle(payload: string, _ctx?: HandlerContext): string {
  if (SIMPLE.test(payload)) return payload.split('').reverse().join('');
  return graphemes(payload).reverse().join('');
}
