/**
 * T5 text-to-text formats, exactly as `t5/data/preprocessors.py` builds them from the TFDS
 * features: `glue` (prefix + `key: value` pairs joined by single spaces, no whitespace
 * collapse), `stsb` (float32 half-to-even rounding), `record` (passage cleanup, sorted unique
 * entities), `wsc_simple` (on TFDS `wsc.fixed`) and the MultiRC markup removal.
 *
 * @module
 */
import { PY_SPACE_CLASS } from "./parse.ts";

/**
 * `preprocessors.glue` inputs: `prefix k1: v1 k2: v2 …`, joined with single spaces exactly
 * (a trailing space inside a value, as in SST-2, survives).
 */
export function glueInput(prefix: string, pairs: ReadonlyArray<readonly [string, string]>): string {
  const parts: string[] = [prefix];
  for (const [k, v] of pairs) parts.push(`${k}:`, v);
  return parts.join(" ");
}

/**
 * MultiRC input: `multirc question: {q} answer: {a} paragraph: {p}`, then on the joined string
 * `<br>` → space and `<b>` / `</b>` removed (T5's two regex replacements).
 */
export function multircInput(question: string, answer: string, paragraph: string): string {
  const joined = glueInput("multirc", [["question", question], ["answer", answer], [
    "paragraph",
    paragraph,
  ]]);
  return joined.replaceAll("<br>", " ").replace(/<\/?b>/g, "");
}

/** Round half to even (banker's rounding), as `tf.round`. */
export function roundHalfEven(x: number): number {
  if (!Number.isFinite(x)) return x;
  const f = Math.floor(x);
  const d = x - f;
  if (d < 0.5) return f;
  if (d > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * STS-B target: `tf.as_string(tf.round(label * 5) / 5, precision=1)` with the label in float32.
 * E.g. 3.8 → "3.8", 0.5 → "0.4" (2.5 rounds to 2), 0.9 → "0.8" (f32(0.9)·5 rounds to 4.5 in
 * float32, then to 4), 4.5 → "4.4".
 */
export function stsbTarget(label: number): string {
  const scaled = Math.fround(Math.fround(label) * 5);
  const q = Math.fround(roundHalfEven(scaled) / 5);
  const s = q.toFixed(1);
  return s === "-0.0" ? "0.0" : s;
}

/**
 * ReCoRD passage cleanup: `(\.|\?|\!|\"|\')\n@highlight\n` → `\1 `, then `\n@highlight\n` → `. `.
 */
export function recordPassage(passage: string): string {
  return passage.replace(/([.?!"'])\n@highlight\n/g, "$1 ").replaceAll("\n@highlight\n", ". ");
}

/** Compares two strings by Unicode code points (Python's string order). */
export function compareCodePoints(a: string, b: string): number {
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const x = ia.next();
    const y = ib.next();
    if (x.done) return y.done ? 0 : -1;
    if (y.done) return 1;
    const cx = (x.value as string).codePointAt(0) as number;
    const cy = (y.value as string).codePointAt(0) as number;
    if (cx !== cy) return cx < cy ? -1 : 1;
  }
}

/** Sorted (by code point) unique strings, as Python's `sorted(set(xs))`. */
export function sortedUnique(xs: Iterable<string>): string[] {
  return [...new Set(xs)].sort(compareCodePoints);
}

/**
 * ReCoRD entity strings: `text[start:end+1]` (end inclusive, Python code-point indices), sorted
 * unique by code point (TFDS's `sorted(set(...))`).
 *
 * @param text the passage text
 * @param spans the entity spans, in code points, `end` inclusive
 * @returns the entities; for a span out of range (or with `end < start`), no entities and `bad`,
 *   the index of the first such span (the caller reports it)
 */
export function recordEntities(
  text: string,
  spans: ReadonlyArray<{ start: number; end: number }>,
): { entities: string[]; bad?: number } {
  const cps = Array.from(text);
  const out: string[] = [];
  for (let i = 0; i < spans.length; i++) {
    const { start, end } = spans[i] as { start: number; end: number };
    if (!(start >= 0 && end >= start && end < cps.length)) return { entities: [], bad: i };
    out.push(cps.slice(start, end + 1).join(""));
  }
  return { entities: sortedUnique(out) };
}

/** ReCoRD input: `record query: {q} entities: {e1, e2, …} passage: {cleaned passage}`. */
export function recordInput(query: string, entities: readonly string[], passage: string): string {
  return [
    "record query:",
    query,
    "entities:",
    entities.join(", "),
    "passage:",
    recordPassage(passage),
  ].join(" ");
}

/** The WSC fields `wsc_simple` reads (after the TFDS row.update(row["target"])). */
export interface WscFields {
  /** The text. */
  text: string;
  /** Whitespace-token index of the candidate referent. */
  span1_index: number;
  /** Whitespace-token index of the pronoun. */
  span2_index: number;
  /** The candidate referent. */
  span1_text: string;
  /** The pronoun. */
  span2_text: string;
}

const PY_WS = new RegExp(`${PY_SPACE_CLASS}+`);

/** Python `str.split()` with no argument (runs of whitespace, no empty pieces). */
export function pySplit(s: string): string[] {
  return s.split(PY_WS).filter((w) => w !== "");
}

function isLowerChar(c: string): boolean {
  return c === c.toLowerCase() && c !== c.toUpperCase();
}

/**
 * TFDS `super_glue/wsc.fixed` repair (`_fix_wst`): where a span text is not a substring of the
 * text, match the case of its first letter to the token at its index, strip trailing dots and
 * replace newlines by spaces. Reproduces TFDS's quirk for "theyscold" (the text is not changed,
 * only `span2_index` is set to 10). Throws (message) where TFDS's assertion would fail.
 */
export function fixWsc(ex: WscFields): WscFields {
  const out = { ...ex };
  for (const k of ["span1", "span2"] as const) {
    let text = out[`${k}_text`];
    const index = out[`${k}_index`];
    if (out.text.includes(text)) continue;
    if (text === "Kamenev and Zinoviev" || text === "Kamenev, Zinoviev, and Stalin") continue;
    if (text.includes("theyscold")) out.span2_index = 10;
    const firstWord = pySplit(out.text)[index];
    if (firstWord === undefined || text === "") {
      throw new Error(`wsc.fixed: ${k}_index ${index} is out of range of the text's words`);
    }
    const c0 = Array.from(text)[0] as string;
    const rest = text.slice(c0.length);
    const w0 = Array.from(firstWord)[0] as string;
    text = (isLowerChar(w0) ? c0.toLowerCase() : c0.toUpperCase()) + rest;
    text = text.replace(/\.+$/, "").replaceAll("\n", " ");
    out[`${k}_text`] = text;
    if (!out.text.includes(text)) {
      throw new Error(`wsc.fixed: ${k}_text ${JSON.stringify(text)} is not in the text`);
    }
  }
  return out;
}

const WSC_SPECIAL: ReadonlyArray<readonly [string, string]> = [
  [
    'The boy continued to whip the pony , and eventually the pony threw him over. John laughed out quite loud. "Good for him," he said. ',
    'The boy continued to whip the pony , and eventually the pony threw him over. John laughed out quite loud. "Good for X ," he said.',
  ],
  [
    "When they had eventually calmed down a bit , and had gotten home, Mr. Farley put the magic pebble in an iron safe . Some day they might want to use it , but really for now, what more could they wish for?",
    "When they had eventually calmed down a bit , and had gotten home, Mr. Farley put the magic pebble in an iron safe . Some day they might want to use X , but really for now, what more could they wish for?",
  ],
];

/**
 * T5 `_wsc_inputs`: split the text on single spaces, replace the word at `span2_index` by `X`
 * (asserting it equals `span2_text`), except for T5's two hard-coded texts ("Good for him," and
 * "want to use it ,"). Throws (message) where T5's assertions would fail.
 */
export function wscBlanked(ex: WscFields): string {
  const words = ex.text.split(" ");
  const i = ex.span2_index;
  if (!(i > 0 && i < words.length)) {
    throw new Error(`span2_index ${i} must be in 1..${words.length - 1}`);
  }
  for (const [text, blanked] of WSC_SPECIAL) if (ex.text === text) return blanked;
  if (words[i] !== ex.span2_text) {
    throw new Error(
      `word ${i} of the text is ${JSON.stringify(words[i])}, not span2_text ${
        JSON.stringify(ex.span2_text)
      }`,
    );
  }
  return [words.slice(0, i).join(" "), "X", words.slice(i + 1).join(" ")].join(" ");
}

/** `wsc_simple` input: `wsc: {text with the pronoun as *pronoun*}` (every ` X ` replaced). */
export function wscSimpleInput(ex: WscFields): string {
  const blanked = wscBlanked(ex);
  return ["wsc:", blanked.replaceAll(" X ", () => ` *${ex.span2_text}* `)].join(" ");
}

/**
 * `definite_pronoun_resolution_simple` input (T5 task `dpr_v001_simple`): `wsc: ` and the
 * sentence with the FIRST match of the RE2 pattern `" (" + pronoun + ")( |\.|,)"` replaced by
 * `" *\1*\2"` (`regex_replace(..., replace_global=False)`): the pronoun is marked only where a
 * space precedes it and a space, `.` or `,` follows it, so a sentence-initial pronoun, or one
 * followed by another character, is left unmarked. T5 inserts the pronoun into the pattern
 * unescaped; here it is escaped, so a pronoun holding a regex metacharacter matches itself (the
 * DPR pronouns are words, on which both agree). The match is case-sensitive, as RE2's.
 *
 * @param sentence the stripped sentence
 * @param pronoun the stripped pronoun
 * @returns the T5 input
 * @example
 * ```ts
 * import { dprSimpleInput } from "./text.ts";
 * console.assert(dprSimpleInput("He said he was tired.", "he") === "wsc: He said *he* was tired.");
 * ```
 */
export function dprSimpleInput(sentence: string, pronoun: string): string {
  const esc = RegExp.escape(pronoun);
  // No `g` flag: the first match only. A function replacement, so `$` in the text stays literal.
  const marked = sentence.replace(
    new RegExp(` (${esc})( |\\.|,)`),
    (_m, p: string, after: string) => ` *${p}*${after}`,
  );
  return `wsc: ${marked}`;
}
