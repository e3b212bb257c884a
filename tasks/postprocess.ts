/**
 * T5 postprocessors (`t5/data/postprocessors.py`, `t5/evaluation/qa_utils.py`): they turn a
 * decoded prediction (or a target string) into the value the metric compares.
 *
 * @module
 */
import { PY_SPACE_CLASS, pyFloat, pyStrip } from "./parse.ts";

/** `string_label_to_class_id`: the index of the exact string in the label words, else -1. */
export function classLabel(s: string, labelWords: readonly string[]): number {
  return labelWords.indexOf(s);
}

/** `string_to_float`: Python `float(s)`, or -1.0 when Python would raise. */
export function stringToFloat(s: string): number {
  return pyFloat(s) ?? -1;
}

const WSC_DETERMINERS = new Set([
  "a",
  "an",
  "few",
  "her",
  "his",
  "each",
  "every",
  "many",
  "much",
  "my",
  "our",
  "some",
  "that",
  "the",
  "their",
  "these",
  "this",
  "those",
  "which",
  "whose",
  "your",
]);

function wscClean(s: string): string {
  return pyStrip(s).toLowerCase().split(" ").filter((w) => !WSC_DETERMINERS.has(w)).join(" ");
}

/**
 * `postprocessors.wsc_simple`: 1 when the prediction names the referent, 0 when not, -1 for an
 * empty prediction (after lower-casing and dropping determiners). The prediction names the
 * referent when one word set contains the other and both or neither contain an apostrophe.
 */
export function wscSimple(prediction: string, referent: string): number {
  const p = wscClean(prediction);
  if (p === "") return -1;
  const r = wscClean(referent);
  if (p.includes("'") !== r.includes("'")) return 0;
  const pw = new Set(p.split(" "));
  const rw = new Set(r.split(" "));
  const subset = (a: Set<string>, b: Set<string>) => [...a].every((w) => b.has(w));
  return subset(pw, rw) || subset(rw, pw) ? 1 : 0;
}

/** Python's `string.punctuation`. */
const PUNCTUATION = new Set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~");
// Python 3 `re` word characters are Unicode letters, digits and "_" (no combining marks).
const ARTICLES = /(?<![\p{L}\p{N}_])(?:a|an|the)(?![\p{L}\p{N}_])/gu;
const PY_WS_RUN = new RegExp(`${PY_SPACE_CLASS}+`);

/** Python `" ".join(s.split())`. */
function whiteSpaceFix(s: string): string {
  return s.split(PY_WS_RUN).filter((w) => w !== "").join(" ");
}

/**
 * `qa_utils.normalize_squad`: lower-case, delete `string.punctuation`, replace the articles
 * a/an/the (whole words) by a space, collapse whitespace.
 */
export function normalizeSquad(s: string): string {
  let t = s.toLowerCase();
  t = Array.from(t).filter((c) => !PUNCTUATION.has(c)).join("");
  t = t.replace(ARTICLES, " ");
  return whiteSpaceFix(t);
}

/** Python `str.split()` on already-normalised text. */
export function pyWords(s: string): string[] {
  return s.split(PY_WS_RUN).filter((w) => w !== "");
}
