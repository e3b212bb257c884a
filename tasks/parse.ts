/**
 * Strict readers for the official GLUE TSV and SuperGLUE JSONL files. GLUE lines are split on
 * tab with NO quote handling (a quote-aware reader merges rows in STS-B, MRPC, RTE, QQP, MNLI).
 * Every problem (invalid UTF-8, wrong column count, missing header column, invalid JSON,
 * missing or mistyped field, a truncated last line) throws a {@link DataError} naming the file,
 * the 1-based line number and the field.
 *
 * @module
 */
import { jsonSyntaxLocation } from "../model/json.ts";

/** A malformed data file: names the file, the 1-based line (0 = whole file) and the field. */
export class DataError extends Error {
  /** The file as the caller named it (`loadExamples`: its path under the data folder). */
  readonly file: string;
  /** 1-based line number; 0 when the problem concerns the whole file. */
  readonly line: number;
  /** The column / JSON path concerned, when there is one. */
  readonly field?: string;
  /** What is wrong, without the file, line and field. */
  readonly detail: string;

  /** Builds the message `file:line: field "x": detail`. */
  constructor(file: string, line: number, detail: string, field?: string) {
    const where = line > 0 ? `${file}:${line}` : file;
    super(`${where}: ${field !== undefined ? `field "${field}": ` : ""}${detail}`);
    this.name = "DataError";
    this.file = file;
    this.line = line;
    this.field = field;
    this.detail = detail;
  }
}

/**
 * Decodes UTF-8 strictly (TextDecoder `fatal`). On invalid bytes, throws naming the first line
 * that holds them, the byte's 1-based position in that line and the bytes themselves; a file
 * that ends inside a multi-byte character is reported as truncated, and a UTF-16 or gzip file
 * as such. A leading byte-order mark is removed.
 */
export function decodeUtf8(bytes: Uint8Array, file: string): string {
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    const kind = encodingOf(bytes);
    if (kind !== undefined) {
      throw new DataError(file, 0, `invalid UTF-8: ${kind}`);
    }
    let line = 1;
    let start = 0;
    for (let i = 0; i <= bytes.length; i++) {
      if (i === bytes.length || bytes[i] === 0x0a) {
        const bad = firstInvalidUtf8(bytes, start, i);
        if (bad !== undefined) {
          const shown = [...bytes.subarray(bad.at, Math.min(bad.at + 4, i))]
            .map((b) => b.toString(16).padStart(2, "0")).join(" ");
          const where = `at byte ${bad.at - start + 1} of the line (${shown})`;
          throw new DataError(
            file,
            line,
            bad.cut && i === bytes.length
              ? `invalid UTF-8: the file ends inside a multi-byte character ${where} ` +
                "(truncated file?)"
              : `invalid UTF-8 ${where}${bad.cut ? ": a multi-byte character cut short" : ""}`,
          );
        }
        line++;
        start = i + 1;
      }
    }
    throw new DataError(file, 0, "invalid UTF-8");
  }
}

const TO_UTF8 = "re-save it as UTF-8 (e.g. iconv -f UTF-16 -t UTF-8)";

/** A file that is plainly not UTF-8 text: UTF-16 (by its byte-order mark) or gzip. */
function encodingOf(bytes: Uint8Array): string | undefined {
  const [a, b] = bytes;
  if (a === 0xff && b === 0xfe) {
    return `the file is UTF-16 (little-endian byte-order mark ff fe); ${TO_UTF8}`;
  }
  if (a === 0xfe && b === 0xff) {
    return `the file is UTF-16 (big-endian byte-order mark fe ff); ${TO_UTF8}`;
  }
  if (a === 0x1f && b === 0x8b) {
    return "the file is gzip-compressed (starts with 1f 8b); decompress it (gunzip)";
  }
  return undefined;
}

/**
 * The first ill-formed UTF-8 sequence in `bytes[start, end)` (Unicode Table 3-7): its offset, and
 * `cut` when it is a valid beginning that `end` cuts short; `undefined` when all is well-formed.
 */
function firstInvalidUtf8(
  bytes: Uint8Array,
  start: number,
  end: number,
): { at: number; cut: boolean } | undefined {
  let i = start;
  while (i < end) {
    const c = bytes[i] as number;
    if (c < 0x80) {
      i++;
      continue;
    }
    // Continuation bytes after the lead, and the range of the first of them.
    let n: number, lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) n = 1;
    else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      if (c === 0xe0) lo = 0xa0;
      if (c === 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      if (c === 0xf0) lo = 0x90;
      if (c === 0xf4) hi = 0x8f;
    } else return { at: i, cut: false };
    for (let k = 1; k <= n; k++) {
      if (i + k >= end) return { at: i, cut: true };
      const d = bytes[i + k] as number;
      if (k === 1 ? d < lo || d > hi : d < 0x80 || d > 0xbf) return { at: i, cut: false };
    }
    i += n + 1;
  }
  return undefined;
}

/** One physical line of a file. */
export interface Line {
  /** 1-based line number. */
  line: number;
  /** The text without its `\n` (and without a trailing `\r`). */
  text: string;
}

/**
 * Splits a file's text into lines. A final `\n` does not start an extra line (files without a
 * final newline, like CoLA dev, are fine). A trailing `\r` is dropped from each line.
 */
export function splitLines(text: string): Line[] {
  const parts = text.split("\n");
  if (parts.length > 0 && parts[parts.length - 1] === "") parts.pop();
  return parts.map((t, i) => ({ line: i + 1, text: t.endsWith("\r") ? t.slice(0, -1) : t }));
}

/** How to convert classic Mac OS line endings, ending both bare-`\r` messages. */
const CR_CONVERT = "convert them to \\n (e.g. tr '\\r' '\\n')";

/**
 * Appended to the error of a line that holds a bare `\r` (not the `\r` of a CRLF ending): a file
 * saved with classic Mac OS line endings (CR only) reads as one long line, since the official
 * readers split on `\n` only.
 */
const BARE_CR_HINT =
  "; the line holds a bare carriage return (\\r): if the file's line endings are classic Mac OS " +
  `CR, ${CR_CONVERT}`;

/**
 * Whether the last line `l` of `text` may have been cut short: the file does not end with a
 * line ending. A line holding a bare `\r` is classic Mac OS lines read as one (`\n` never comes),
 * so a file ending with `\r` ended its last such line.
 */
function cutShort(text: string, l: Line): boolean {
  return !text.endsWith("\n") && !(l.text.includes("\r") && text.endsWith("\r"));
}

/** `text`, cut to `max` characters with an ellipsis, for a message that quotes a line. */
function clip(text: string, max = 200): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length} characters)`;
}

/**
 * A value as a data error quotes it: its JSON, cut to 200 characters (a damaged field holding a
 * whole passage or a list of 20000 numbers made one error line of 109 KB, h388).
 *
 * @param v the value read
 * @returns its JSON (or `String(v)` where JSON has none), clipped
 */
export function shown(v: unknown): string {
  return clip(JSON.stringify(v) ?? String(v));
}

/** A parsed TSV row: cells by column name. */
export interface TsvRow {
  /** 1-based line number in the file. */
  line: number;
  /** Cell text by column name. */
  cells: Record<string, string>;
}

/** Options of {@link parseTsv}. */
export interface TsvOptions {
  /** Column names of a header-less file; when absent line 1 is the header. */
  columns?: string[];
  /** Columns that must exist (checked against the header). */
  required?: string[];
  /** Drop rows with fewer columns than the header instead of throwing (QQP, as TFDS). */
  skipShortRows?: boolean;
}

/** Result of {@link parseTsv}. */
export interface TsvTable {
  /** Column names (header without BOM, or the given names). */
  header: string[];
  /** Data rows. */
  rows: TsvRow[];
  /** Rows dropped by `skipShortRows`. */
  skipped: number[];
}

/**
 * Parses a GLUE TSV: split on `\t`, no quote handling, every row must have exactly the header's
 * column count. A short final line with no trailing newline is reported as a truncated file.
 *
 * A fully empty line after the header (nothing but its line ending) is no row and is skipped, as
 * TFDS's and HF's `csv.DictReader(delimiter="\t", quoting=QUOTE_NONE)` skip it, and as the row
 * counts (`tasks/data.ts` `countRows`: non-empty lines) already count; row line numbers and later
 * errors still count it. A line of only tabs, or of any other wrong column count, stays an error
 * naming `file:line`; so does an empty header line. A header-less file (CoLA train and dev) skips
 * blank lines too, where TFDS's plain `csv.reader` would fail on one (`row[3]` of an empty row).
 */
export function parseTsv(text: string, file: string, opts: TsvOptions = {}): TsvTable {
  const lines = splitLines(text);
  const endsWithNewline = text.endsWith("\n");
  let header: string[];
  let body: Line[];
  if (opts.columns !== undefined) {
    header = opts.columns;
    body = lines;
  } else {
    const first = lines[0];
    if (first === undefined) throw new DataError(file, 0, "empty file (no header line)");
    if (first.text === "") {
      throw new DataError(file, 1, "empty header line (the first line must name the columns)");
    }
    header = first.text.replace(/^\ufeff/, "").split("\t");
    body = lines.slice(1);
    if (first.text.includes("\r")) {
      throw new DataError(
        file,
        1,
        `the header line holds a bare carriage return (\\r): ${
          JSON.stringify(clip(first.text, 80))
        }; if the file's line endings are classic Mac OS CR (the whole file reads as one line, ` +
          `since GLUE readers split on \\n only), ${CR_CONVERT}`,
      );
    }
  }
  for (const r of opts.required ?? []) {
    if (!header.includes(r)) {
      throw new DataError(
        file,
        opts.columns === undefined ? 1 : 0,
        `missing column (header: ${clip(header.join(" | "))})`,
        r,
      );
    }
  }
  const rows: TsvRow[] = [];
  const skipped: number[] = [];
  const last = lines[lines.length - 1];
  for (const l of body) {
    if (l.text === "") continue; // a blank line: no row (csv.DictReader skips it too)
    const parts = l.text.split("\t");
    if (parts.length !== header.length) {
      const isLast = l === last && !endsWithNewline;
      if (opts.skipShortRows && parts.length < header.length && !isLast) {
        skipped.push(l.line);
        continue;
      }
      const field = header[Math.min(parts.length, header.length - 1)];
      throw new DataError(
        file,
        l.line,
        `expected ${header.length} tab-separated columns, found ${parts.length}` +
          (isLast && parts.length < header.length && cutShort(text, l)
            ? " (truncated file?)"
            : "") +
          (l.text.includes("\r") ? BARE_CR_HINT : ""),
        field,
      );
    }
    const cells: Record<string, string> = {};
    header.forEach((h, i) => (cells[h] = parts[i] as string));
    rows.push({ line: l.line, cells });
  }
  return { header, rows, skipped };
}

/** A parsed JSON line. */
export interface JsonRow {
  /** 1-based line number. */
  line: number;
  /** The object on that line. */
  value: Record<string, unknown>;
}

/** Parses JSONL: one JSON object per non-empty line. Invalid JSON throws naming the line. */
export function parseJsonl(text: string, file: string): JsonRow[] {
  const out: JsonRow[] = [];
  const lines = splitLines(text);
  const last = lines[lines.length - 1];
  for (const l of lines) {
    if (l.text.trim() === "") continue;
    let value: unknown;
    try {
      value = JSON.parse(l.text);
    } catch (e) {
      const truncated = l === last && cutShort(text, l) ? " (truncated file?)" : "";
      // The column within the row; V8's own "(line 1 column …)" would count the row as line 1.
      const at = jsonSyntaxLocation(l.text, e);
      throw new DataError(
        file,
        l.line,
        `invalid JSON: ${at.message} (column ${at.column})${truncated}` +
          (l.text.includes("\r") ? BARE_CR_HINT : ""),
      );
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      throw new DataError(file, l.line, "expected a JSON object");
    }
    out.push({ line: l.line, value: value as Record<string, unknown> });
  }
  return out;
}

/** Where a value was read, for error messages. */
export interface Where {
  /** File. */
  file: string;
  /** 1-based line. */
  line: number;
}

/**
 * Reads a dotted path (`target.span1_text`, `qas.0.answers.1.text`: numbers index arrays) of a
 * JSON object; `undefined` when absent.
 */
export function getPath(obj: Record<string, unknown>, path: string): unknown {
  let cur: unknown = obj;
  for (const key of path.split(".")) {
    if (cur === null || typeof cur !== "object") return undefined;
    if (Array.isArray(cur)) {
      if (!/^\d+$/.test(key)) return undefined;
      cur = cur[Number(key)];
    } else {
      cur = (cur as Record<string, unknown>)[key];
    }
  }
  return cur;
}

/** A required string at `path`. */
export function reqString(obj: Record<string, unknown>, path: string, at: Where): string {
  const v = getPath(obj, path);
  if (typeof v !== "string") {
    throw new DataError(
      at.file,
      at.line,
      v === undefined ? "missing" : `expected a string, got ${shown(v)}`,
      path,
    );
  }
  return v;
}

/** A required integer at `path`. */
export function reqInt(obj: Record<string, unknown>, path: string, at: Where): number {
  const v = getPath(obj, path);
  if (typeof v !== "number" || !Number.isInteger(v)) {
    throw new DataError(
      at.file,
      at.line,
      v === undefined ? "missing" : `expected an integer, got ${shown(v)}`,
      path,
    );
  }
  return v;
}

/** A required array at `path`. */
export function reqArray(obj: Record<string, unknown>, path: string, at: Where): unknown[] {
  const v = getPath(obj, path);
  if (!Array.isArray(v)) {
    throw new DataError(at.file, at.line, v === undefined ? "missing" : "expected an array", path);
  }
  return v;
}

/** A required object at `path`. */
export function reqObject(
  obj: Record<string, unknown>,
  path: string,
  at: Where,
): Record<string, unknown> {
  const v = getPath(obj, path);
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    throw new DataError(at.file, at.line, v === undefined ? "missing" : "expected an object", path);
  }
  return v as Record<string, unknown>;
}

/**
 * A boolean label: JSON `true`/`false`, the strings `"true"`/`"false"` (any case; some mirrors
 * stringify them) or the integers 0/1 (MultiRC). Returns 0 (False) or 1 (True).
 */
export function boolLabel(v: unknown, field: string, at: Where): number {
  if (v === true || v === 1) return 1;
  if (v === false || v === 0) return 0;
  if (typeof v === "string") {
    const s = v.toLowerCase();
    if (s === "true") return 1;
    if (s === "false") return 0;
  }
  throw new DataError(
    at.file,
    at.line,
    `unknown label ${shown(v)} (expected true/false)`,
    field,
  );
}

/** Python's `str.isspace()` characters as a RegExp character class. */
export const PY_SPACE_CLASS =
  "[\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";
const PY_STRIP = new RegExp(`^${PY_SPACE_CLASS}+|${PY_SPACE_CLASS}+$`, "g");

/** Python `str.strip()` with no argument. */
export function pyStrip(s: string): string {
  return s.replace(PY_STRIP, "");
}

/** The ASCII whitespace CPython's float() strips (`Py_ISSPACE`; not `\x1c`-`\x1f`). */
const FLOAT_STRIP = /^[\t\n\v\f\r ]+|[\t\n\v\f\r ]+$/g;
/** `str.isspace()` characters outside ASCII, which float() turns into spaces first. */
const NON_ASCII_SPACE = /[\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/g;
const NON_ASCII_DIGIT = /(?![0-9])\p{Nd}/gu;
const DECIMAL_DIGIT = /^\p{Nd}$/u;

/** The value of a Unicode decimal digit: Unicode assigns them in runs 0-9 (a run may be 10·k). */
function digitValue(c: string): string {
  const cp = c.codePointAt(0) as number;
  let start = cp;
  while (DECIMAL_DIGIT.test(String.fromCodePoint(start - 1))) start--;
  return String((cp - start) % 10);
}

/**
 * Python `float(str)`: optional surrounding whitespace, sign, digits with single underscores,
 * optional fraction and exponent, or inf/infinity/nan. As CPython, any Unicode decimal digit
 * counts as its ASCII digit (`"３.５"` is 3.5) and non-ASCII whitespace as a space, and only
 * whitespace is stripped (`"\x1c1"` is an error, although `str.strip()` removes `\x1c`).
 * Returns `undefined` when Python would raise ValueError.
 */
export function pyFloat(s: string): number | undefined {
  const t = s.replace(NON_ASCII_DIGIT, digitValue).replace(NON_ASCII_SPACE, " ")
    .replace(FLOAT_STRIP, "");
  const special = /^([+-]?)(inf|infinity|nan)$/i.exec(t);
  if (special) {
    if ((special[2] as string).toLowerCase() === "nan") return NaN;
    return special[1] === "-" ? -Infinity : Infinity;
  }
  const d = "\\d(?:_?\\d)*";
  const re = new RegExp(`^[+-]?(?:${d}(?:\\.(?:${d})?)?|\\.${d})(?:[eE][+-]?${d})?$`);
  if (!re.test(t)) return undefined;
  return Number(t.replace(/_/g, ""));
}

/** One record of a DPR file (TFDS `definite_pronoun_resolution`), see {@link parseDpr}. */
export interface DprRecord {
  /** 1-based line of the record's sentence. */
  line: number;
  /** The sentence, stripped. */
  sentence: string;
  /** The pronoun to resolve, stripped. */
  pronoun: string;
  /** The two candidate antecedents, each stripped. */
  candidates: [string, string];
  /** Index of the correct antecedent in `candidates` (the first, should both be equal). */
  label: number;
}

/**
 * Parses a DPR file (`train.c.txt` / `test.c.txt` of Rahman and Ng's EMNLP 2012 data) as TFDS
 * `definite_pronoun_resolution` reads it: records of four lines, each stripped (Python
 * `str.strip()`, which also removes the `\r` of CRLF endings), then one blank line: the sentence,
 * the pronoun, the two candidate antecedents separated by `,` (each stripped), the correct
 * antecedent; the label is the correct antecedent's index among the candidates. Reading stops at
 * the first empty sentence line, as TFDS's does.
 *
 * Where TFDS would go on silently, this throws a {@link DataError} naming the file and line: a
 * correct antecedent that is not one of the candidates (TFDS: `list.index` raises), a record cut
 * short by the end of the file (TFDS would read empty lines as an empty pronoun and candidates),
 * an empty pronoun or correct antecedent, a candidates line without exactly two candidates (TFDS's
 * feature holds two), a non-blank fifth line (the records are out of step), and text after the
 * blank line that ended the records (TFDS would drop it).
 *
 * @param text the decoded file
 * @param file the file's name in errors
 * @returns the records, in file order
 * @throws DataError naming `file`, the line and what is wrong
 */
export function parseDpr(text: string, file: string): DprRecord[] {
  const lines = splitLines(text);
  const out: DprRecord[] = [];
  const FIELDS = ["sentence", "pronoun", "candidates", "correct antecedent"] as const;
  let i = 0;
  while (i < lines.length) {
    const first = lines[i] as Line;
    const sentence = pyStrip(first.text);
    if (sentence === "") {
      // TFDS stops here; anything after it would be dropped unnoticed.
      const rest = lines.slice(i + 1).find((l) => pyStrip(l.text) !== "");
      if (rest !== undefined) {
        throw new DataError(
          file,
          rest.line,
          `text after the blank line ${first.line} that ends the records (each record is ` +
            "4 lines then one blank line; TFDS stops reading at an empty sentence line)",
        );
      }
      break;
    }
    const got = lines.slice(i, i + 4);
    if (got.length < 4) {
      throw new DataError(
        file,
        first.line,
        `truncated record: the file ends after ${got.length} of its 4 lines (${FIELDS.join(", ")})`,
      );
    }
    const [, pLine, cLine, aLine] = got as [Line, Line, Line, Line];
    const pronoun = pyStrip(pLine.text);
    if (pronoun === "") throw new DataError(file, pLine.line, "empty", "pronoun");
    const candidates = pyStrip(cLine.text).split(",").map(pyStrip);
    if (candidates.length !== 2 || candidates.some((c) => c === "")) {
      throw new DataError(
        file,
        cLine.line,
        `expected two non-empty candidate antecedents separated by ",", got ${
          JSON.stringify(clip(pyStrip(cLine.text)))
        }`,
        "candidates",
      );
    }
    const correct = pyStrip(aLine.text);
    const label = candidates.indexOf(correct);
    if (label < 0) {
      throw new DataError(
        file,
        aLine.line,
        `${JSON.stringify(clip(correct))} is not one of the candidates ${
          candidates.map((c) => shown(c)).join(", ")
        } (line ${cLine.line})`,
        "correct antecedent",
      );
    }
    const blank = lines[i + 4];
    if (blank !== undefined && pyStrip(blank.text) !== "") {
      throw new DataError(
        file,
        blank.line,
        "expected the blank line that ends a record (each record is 4 lines: " +
          `${FIELDS.join(", ")}), got ${JSON.stringify(clip(blank.text))}`,
      );
    }
    out.push({
      line: first.line,
      sentence,
      pronoun,
      candidates: candidates as [string, string],
      label,
    });
    i += 5;
  }
  return out;
}
