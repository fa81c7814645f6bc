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

/** Reverses `payload` grapheme by grapheme. */
export function handle(payload: string, _ctx?: HandlerContext): string {
  if (SIMPLE.test(payload)) return payload.split('').reverse().join('');
  const graphemes = Array.from(graphemeSegmenter.segment(payload), (s) => s.segment);
  return graphemes.reverse().join('');
}
