/**
 * Parsing JSON that a person wrote (profiles, result files, data rows) with errors that say
 * where: `file:line:column: invalid JSON: <what>`. V8's `JSON.parse` gives a position for most
 * mistakes but not all (a trailing comma in an array, `NaN`, a misspelled `true`: "Unexpected
 * token ']', "<the first lines of the file>" is not valid JSON"); those are located here by
 * finding the longest prefix of the text that is still the start of a valid document.
 *
 * @module
 */

/** Where a JSON syntax error is, and what it is without V8's position and excerpt. */
export interface JsonSyntaxLocation {
  /** 1-based line. */
  readonly line: number;
  /** 1-based column (UTF-16 code units, as editors count for most text). */
  readonly column: number;
  /** V8's message without "in JSON at position …" or its excerpt of the text. */
  readonly message: string;
  /** 0-based offset of the error in the text (UTF-16 code units). */
  readonly offset: number;
}

const AT_POSITION = / at position (\d+)(?: \(line \d+ column \d+\))?$/;
const END = "Unexpected end of JSON input";

/** Whether `prefix` could begin a valid JSON document (its only fault is that it ends early). */
function viablePrefix(prefix: string): boolean {
  try {
    JSON.parse(prefix);
    return true;
  } catch (e) {
    const m = (e as Error).message;
    if (m === END) return true;
    const at = AT_POSITION.exec(m);
    return at !== null && Number(at[1]) >= prefix.length;
  }
}

/**
 * Locates the syntax error `JSON.parse(text)` threw.
 *
 * @param text the JSON text
 * @param error what `JSON.parse` threw
 * @returns the line, column and message
 * @example
 * ```ts
 * import { jsonSyntaxLocation } from "./json.ts";
 * let error: unknown;
 * try {
 *   JSON.parse('{\n  "seeds": [0, 1,]\n}');
 * } catch (e) {
 *   error = e;
 * }
 * const at = jsonSyntaxLocation('{\n  "seeds": [0, 1,]\n}', error);
 * console.assert(at.line === 2 && at.column === 18);
 * ```
 */
export function jsonSyntaxLocation(text: string, error: unknown): JsonSyntaxLocation {
  const raw = error instanceof Error ? error.message : String(error);
  let offset: number;
  let message: string;
  const at = AT_POSITION.exec(raw);
  if (at !== null) {
    offset = Number(at[1]);
    message = raw.slice(0, at.index).replace(/ in JSON$/, "");
  } else if (raw === END) {
    offset = text.length;
    message = raw;
  } else {
    // The first character after the longest viable prefix is the culprit (binary search: a
    // prefix of a viable prefix is viable).
    let good = 0;
    let bad = text.length;
    while (bad - good > 1) {
      const mid = (good + bad) >> 1;
      if (viablePrefix(text.slice(0, mid))) good = mid;
      else bad = mid;
    }
    offset = good;
    message = raw.replace(/, (?:\.\.\.)?".*is not valid JSON$/s, "");
  }
  const before = text.slice(0, offset);
  const line = before.split("\n").length;
  const column = offset - (before.lastIndexOf("\n") + 1) + 1;
  return { line, column, message: printable(message), offset };
}

const ESCAPES: Readonly<Record<string, string>> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

/**
 * `message` with its control characters escaped (`\r`, `\n`, `\t`, `\u001b`, …): V8 quotes the
 * offending character raw ("Unexpected token '\r'" for `tru` at the end of a CRLF line), which
 * would break the one-line error in two, or send the terminal's cursor back over the file name.
 */
function printable(message: string): string {
  let out = "";
  for (const c of message) {
    const code = c.charCodeAt(0);
    const control = code < 0x20 || (code >= 0x7f && code <= 0x9f) || code === 0x2028 ||
      code === 0x2029;
    out += !control ? c : ESCAPES[c] ?? `\\u${code.toString(16).padStart(4, "0")}`;
  }
  return out;
}

/** The hint for the usual mistakes of JSON written by hand, which V8's message does not name. */
const NO_COMMENTS = " (JSON allows no comments or trailing commas)";

/**
 * A hint for a syntax error at `offset` that is a comment (`//`, `/*`: the character there is
 * `/`) or a trailing comma (a `}` or `]` there whose previous non-space character is `,`), else
 * "". V8 names neither: "Expected double-quoted property name", "Unexpected token ']'".
 *
 * @param text the JSON text
 * @param offset where `JSON.parse` failed ({@link JsonSyntaxLocation.offset})
 * @returns the hint, with a leading space, or ""
 * @example
 * ```ts
 * import { jsonSyntaxHint } from "./json.ts";
 * console.assert(jsonSyntaxHint('{"a": 1, }', 9) !== "");
 * console.assert(jsonSyntaxHint("[1 2]", 3) === "");
 * ```
 */
export function jsonSyntaxHint(text: string, offset: number): string {
  const c = text[offset];
  if (c === "/") return NO_COMMENTS;
  if (c !== "}" && c !== "]") return "";
  return /,\s*$/.test(text.slice(0, offset)) ? NO_COMMENTS : "";
}

/**
 * `JSON.parse` for a file's text: a leading byte-order mark is ignored, and a syntax error is
 * thrown as `file:line:column: invalid JSON: <what>`, with a hint where it is a comment or a
 * trailing comma ({@link jsonSyntaxHint}).
 *
 * @param text the file's text
 * @param file the file named in errors
 * @returns the parsed value
 * @throws Error naming the file, line and column of a syntax error
 */
export function parseJsonFile(text: string, file: string): unknown {
  const body = text.startsWith("\ufeff") ? text.slice(1) : text;
  try {
    return JSON.parse(body);
  } catch (e) {
    const at = jsonSyntaxLocation(body, e);
    throw new Error(
      `${file}:${at.line}:${at.column}: invalid JSON: ${at.message}${
        jsonSyntaxHint(body, at.offset)
      }`,
    );
  }
}

/**
 * A value as an error message quotes it: its JSON (`String(v)` where JSON has none), cut to `max`
 * characters with `...` (a damaged field may hold a whole file).
 *
 * @example
 * ```ts
 * import { briefJson } from "./json.ts";
 * console.assert(briefJson("x".repeat(100)).length === 60);
 * ```
 *
 * @param v the value
 * @param max the most characters shown
 * @returns the quoted value
 */
export function briefJson(v: unknown, max = 60): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > max ? `${s.slice(0, max - 3)}...` : s;
}
