/**
 * Converts Hugging Face parquet rows (`nyu-mll/glue`, `aps/super_glue`) into the text of the
 * OFFICIAL files (same TSV columns / JSONL fields), so the parsers read the fallback download
 * exactly like the official one.
 *
 * Fields the parquet files lack are filled with placeholders (parsers do not read them):
 * - CoLA train/dev: source code column → `hf`; author mark → `*` for label 0, empty for label 1
 *   (the real marks are `*`, `?*`, `??`, `*?`).
 * - MRPC: `#1 ID` / `#2 ID` → `hf<idx>a` / `hf<idx>b`. QQP: `qid1`/`qid2` → `hf<idx>a`/`hf<idx>b`;
 *   train/dev `id` (the official pair id) → idx (HF's row number).
 * - STS-B: genre, filename, year, source1, source2 → `unknown`; old_index → idx. HF keeps the score
 *   as float32, so it is written as the shortest decimal of that float32 (`5.000` → `5`,
 *   `3.800` → `3.8`, `2.33333333333333` → `2.3333333`): it reads back to the same float32.
 * - MNLI: promptID, pairID → idx; genre → `unknown`; the four parse columns → empty;
 *   dev label1…label5 → the gold label.
 * - MultiRC: `version` → 1.1. WiC: `version` → 1.1. ReCoRD: `source` → `hf`; answer spans →
 *   every entity span whose text equals an answer (HF keeps answer texts only); if the parquet has
 *   no `entity_spans`, spans are found by searching the entity strings in the passage.
 * - AX-g: `pair_id` is left out when the parquet lacks it (HF drops it): the loader then gives the
 *   examples no group and `scoreTask` reports no gender parity for this source.
 * - AX-b: the optional phenomenon fields (`lexical-semantics`, …) are absent.
 * Test splits carry label -1 in parquet; the label field/column is omitted like in the official
 * test files. Every other byte is the official one: CoLA test, SST-2 and GLUE RTE come out
 * byte-identical, and CoLA train/dev, MRPC and STS-B differ only by the placeholders above (tested
 * on every GLUE file of the mirror; CoLA dev keeps its missing final newline). JSON lines are
 * written like Python's `json.dumps` with the official key order, so BoolQ, CB, COPA, RTE, WiC and
 * WSC come out byte-identical to the official files (tested on the mirror); MultiRC and ReCoRD
 * keep the official structure, not necessarily its bytes.
 *
 * @module
 */
import { type FileSpec, officialFinalNewline, type TaskSource } from "./sources.ts";

/** A parquet row as hyparquet returns it (`rowFormat: "object"`). */
export type Row = Record<string, unknown>;

/** A field a row lacks: {@link convertRows} adds the parquet's columns to the message. */
class MissingField extends Error {}

function num(v: unknown, where: string): number {
  if (typeof v === "bigint") return Number(v);
  if (typeof v === "number") return v;
  if (v === undefined) throw new MissingField(`${where}: missing (expected a number)`);
  throw new Error(`${where}: expected a number, got ${typeof v}`);
}

function str(v: unknown, where: string): string {
  if (v === undefined) throw new MissingField(`${where}: missing (expected a string)`);
  if (typeof v !== "string") throw new Error(`${where}: expected a string, got ${typeof v}`);
  return v;
}

/** Shortest decimal that reads back to the same float32 (HF stores STS-B scores as float32). */
export function float32ToString(x: number): string {
  const f = Math.fround(x);
  for (let p = 1; p <= 9; p++) {
    const s = String(Number(f.toPrecision(p)));
    if (Math.fround(Number(s)) === f) return s;
  }
  return String(f);
}

/**
 * A 0/1 label of a labelled (train or validation) row. HF marks an unlabelled row -1: written as
 * is, BoolQ/WiC/WSC read it as False and the others fail only when the cached file is loaded.
 */
function binary(v: unknown, where: string): 0 | 1 {
  const i = num(v, where);
  if (i !== 0 && i !== 1) {
    throw new Error(`${where}: expected the label 0 or 1 in a labelled split, got ${i}`);
  }
  return i;
}

/** An STS-B score of a labelled row: a finite number in [0, 5] (HF marks unlabelled rows -1). */
function score(v: unknown, where: string): number {
  const x = num(v, where);
  if (!(x >= 0 && x <= 5)) throw new Error(`${where}: expected a score in [0, 5], got ${x}`);
  return x;
}

const LABELS: Readonly<Record<string, readonly string[]>> = {
  mnli: ["entailment", "neutral", "contradiction"],
  qnli: ["entailment", "not_entailment"],
  rte: ["entailment", "not_entailment"],
  cb: ["entailment", "contradiction", "neutral"],
  axb: ["entailment", "not_entailment"],
  axg: ["entailment", "not_entailment"],
};

function labelName(config: string, v: unknown, where: string): string {
  const i = num(v, where);
  const name = LABELS[config]?.[i];
  if (name === undefined) throw new Error(`${where}: label ${i} out of range for ${config}`);
  return name;
}

/** Converts the rows of one parquet split into the text of the official file `file`. */
export function convertRows(task: TaskSource, file: FileSpec, rows: readonly Row[]): string {
  try {
    return task.benchmark === "glue" ? glueText(task, file, rows) : superGlueText(task, file, rows);
  } catch (e) {
    // A column renamed or dropped in another version of the dataset: say which it has.
    if (!(e instanceof MissingField) || rows[0] === undefined) throw e;
    throw new Error(
      `${e.message}; the parquet's columns: ${Object.keys(rows[0]).join(", ")} (another ` +
        `version of the dataset than ${task.id}'s conversion expects)`,
    );
  }
}

function glueText(task: TaskSource, file: FileSpec, rows: readonly Row[]): string {
  const c = task.hfConfig;
  const test = file.split === "test";
  const out: string[] = [];
  // Text cells all come from s(), which refuses what a TSV line cannot hold.
  const put = (cells: (string | number)[]) => out.push(cells.join("\t"));
  const header = (h: string) => out.push(h);
  rows.forEach((r, i) => {
    const w = (f: string) => `${file.path} (parquet row ${i}) field ${f}`;
    const s = (f: string) => {
      const v = str(r[f], w(f));
      if (/[\t\n\r]/.test(v)) {
        throw new Error(`${w(f)}: contains a tab or line break, which a TSV cell cannot hold`);
      }
      return v;
    };
    const idx = num(r.idx, w("idx"));
    const lab = () => binary(r.label, w("label"));
    switch (c) {
      case "cola":
        if (test) {
          if (i === 0) header("index\tsentence");
          put([idx, s("sentence")]);
        } else put(["hf", lab(), lab() === 0 ? "*" : "", s("sentence")]);
        break;
      case "sst2":
        if (i === 0) header(test ? "index\tsentence" : "sentence\tlabel");
        put(test ? [idx, s("sentence")] : [s("sentence"), lab()]);
        break;
      case "mrpc":
        if (i === 0) {
          header(
            test
              ? "index\t#1 ID\t#2 ID\t#1 String\t#2 String"
              : "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String",
          );
        }
        put([test ? idx : lab(), `hf${idx}a`, `hf${idx}b`, s("sentence1"), s("sentence2")]);
        break;
      case "qqp":
        if (i === 0) {
          header(
            test
              ? "id\tquestion1\tquestion2"
              : "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
          );
        }
        put(
          test
            ? [idx, s("question1"), s("question2")]
            : [idx, `hf${idx}a`, `hf${idx}b`, s("question1"), s("question2"), lab()],
        );
        break;
      case "stsb": {
        if (i === 0) {
          header(
            "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2" +
              (test ? "" : "\tscore"),
          );
        }
        const cells: (string | number)[] = [
          idx,
          "unknown",
          "unknown",
          "unknown",
          idx,
          "unknown",
          "unknown",
          s("sentence1"),
          s("sentence2"),
        ];
        if (!test) cells.push(float32ToString(score(r.label, w("label"))));
        put(cells);
        break;
      }
      case "mnli": {
        const base =
          "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse" +
          "\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2";
        const dev = file.split === "validation";
        if (i === 0) {
          header(
            test
              ? base
              : dev
              ? `${base}\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label`
              : `${base}\tlabel1\tgold_label`,
          );
        }
        const cells: (string | number)[] = [
          idx,
          idx,
          idx,
          "unknown",
          "",
          "",
          "",
          "",
          s("premise"),
          s("hypothesis"),
        ];
        if (!test) {
          const g = labelName("mnli", r.label, w("label"));
          cells.push(...(dev ? [g, g, g, g, g, g] : [g, g]));
        }
        put(cells);
        break;
      }
      case "qnli":
        if (i === 0) {
          header(test ? "index\tquestion\tsentence" : "index\tquestion\tsentence\tlabel");
        }
        put(
          test
            ? [idx, s("question"), s("sentence")]
            : [idx, s("question"), s("sentence"), labelName("qnli", r.label, w("label"))],
        );
        break;
      case "rte":
      case "wnli":
        if (i === 0) {
          header(test ? "index\tsentence1\tsentence2" : "index\tsentence1\tsentence2\tlabel");
        }
        put(
          test ? [idx, s("sentence1"), s("sentence2")] : [
            idx,
            s("sentence1"),
            s("sentence2"),
            c === "rte" ? labelName("rte", r.label, w("label")) : lab(),
          ],
        );
        break;
      case "ax":
        if (i === 0) header("index\tsentence1\tsentence2");
        put([idx, s("premise"), s("hypothesis")]);
        break;
      default:
        throw new Error(`no parquet converter for glue config ${c}`);
    }
  });
  const end = officialFinalNewline(file.path) === false ? "" : "\n";
  return out.length === 0 ? "" : out.join("\n") + end;
}

/**
 * JSON text as Python's `json.dumps` writes it by default (the official SuperGLUE files):
 * `", "` and `": "` separators, non-ASCII and control characters as `\uXXXX` escapes.
 * Keys whose value is `undefined` are left out.
 */
export function pyJson(v: unknown): string {
  if (v === null || v === undefined) return "null";
  if (typeof v === "boolean") return v ? "true" : "false";
  if (typeof v === "number") {
    if (!Number.isFinite(v)) throw new Error(`pyJson: non-finite number ${v}`);
    return String(v);
  }
  if (typeof v === "bigint") return v.toString();
  if (typeof v === "string") {
    let out = '"';
    for (let i = 0; i < v.length; i++) {
      const ch = v[i]!;
      const code = v.charCodeAt(i);
      if (ch === '"') out += '\\"';
      else if (ch === "\\") out += "\\\\";
      else if (ch === "\n") out += "\\n";
      else if (ch === "\r") out += "\\r";
      else if (ch === "\t") out += "\\t";
      else if (ch === "\b") out += "\\b";
      else if (ch === "\f") out += "\\f";
      else if (code < 0x20 || code > 0x7e) out += "\\u" + code.toString(16).padStart(4, "0");
      else out += ch;
    }
    return out + '"';
  }
  if (Array.isArray(v)) return "[" + v.map(pyJson).join(", ") + "]";
  if (typeof v === "object") {
    const parts = Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined)
      .map(([k, x]) => `${pyJson(k)}: ${pyJson(x)}`);
    return "{" + parts.join(", ") + "}";
  }
  throw new Error(`pyJson: cannot serialise ${typeof v}`);
}

/** JSON-able value conversion: bigint → number. */
function plain(v: unknown): unknown {
  if (typeof v === "bigint") return Number(v);
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === "object" && !(v instanceof Uint8Array)) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  }
  return v;
}

/** Normalises a HF `Sequence(dict)` column: struct-of-lists or list-of-structs → list of objects. */
function listOfObjects(v: unknown, where: string): Record<string, unknown>[] {
  if (v === null || v === undefined) return [];
  if (Array.isArray(v)) return v.map((x) => plain(x) as Record<string, unknown>);
  if (typeof v === "object") {
    const cols = plain(v) as Record<string, unknown[]>;
    const keys = Object.keys(cols);
    const n = keys.length ? (cols[keys[0]!]?.length ?? 0) : 0;
    return Array.from(
      { length: n },
      (_, i) => Object.fromEntries(keys.map((k) => [k, cols[k]![i]])),
    );
  }
  throw new Error(`${where}: expected a list or struct`);
}

/** Code-point offsets of every occurrence of `needle` in `text` (Python string indices). */
function codePointOccurrences(text: string, needle: string): number[] {
  const cps = Array.from(text);
  const nd = Array.from(needle);
  const res: number[] = [];
  if (nd.length === 0) return res;
  outer: for (let i = 0; i + nd.length <= cps.length; i++) {
    for (let j = 0; j < nd.length; j++) if (cps[i + j] !== nd[j]) continue outer;
    res.push(i);
  }
  return res;
}

function superGlueText(task: TaskSource, file: FileSpec, rows: readonly Row[]): string {
  const c = task.hfConfig;
  const test = file.split === "test";
  const out: string[] = [];
  if (c === "multirc") return multircText(file, rows, test);
  if (c === "record") return recordText(file, rows);
  rows.forEach((r, i) => {
    const w = (f: string) => `${file.path} (parquet row ${i}) field ${f}`;
    const s = (f: string) => str(r[f], w(f));
    const idx = num(r.idx, w("idx"));
    // Test splits carry label -1: the official test files have no label field.
    const bool = () => (test ? undefined : binary(r.label, w("label")) === 1);
    const named = (cfg: string) => (test ? undefined : labelName(cfg, r.label, w("label")));
    let o: Record<string, unknown>;
    // Key order as in the official files.
    switch (c) {
      case "boolq":
        o = { question: s("question"), passage: s("passage"), idx, label: bool() };
        break;
      case "cb":
      case "rte":
        o = { premise: s("premise"), hypothesis: s("hypothesis"), label: named(c), idx };
        break;
      case "copa":
        o = {
          premise: s("premise"),
          choice1: s("choice1"),
          choice2: s("choice2"),
          question: s("question"),
          label: test ? undefined : binary(r.label, w("label")),
          idx,
        };
        break;
      case "wic":
        o = {
          word: s("word"),
          sentence1: s("sentence1"),
          sentence2: s("sentence2"),
          idx,
          label: bool(),
          start1: num(r.start1, w("start1")),
          start2: num(r.start2, w("start2")),
          end1: num(r.end1, w("end1")),
          end2: num(r.end2, w("end2")),
          version: 1.1,
        };
        break;
      case "wsc":
        o = {
          text: s("text"),
          target: {
            span2_index: num(r.span2_index, w("span2_index")),
            span1_index: num(r.span1_index, w("span1_index")),
            span1_text: s("span1_text"),
            span2_text: s("span2_text"),
          },
          idx,
          label: bool(),
        };
        break;
      case "axb":
        o = {
          idx: String(idx),
          label: labelName("axb", r.label, w("label")),
          sentence1: s("sentence1"),
          sentence2: s("sentence2"),
        };
        break;
      case "axg":
        o = {
          hypothesis: s("hypothesis"),
          idx,
          label: labelName("axg", r.label, w("label")),
          // HF drops pair_id; leave it out rather than invent one (parity is then not scored).
          pair_id: r.pair_id === undefined || r.pair_id === null
            ? undefined
            : num(r.pair_id, w("pair_id")),
          premise: s("premise"),
        };
        break;
      default:
        throw new Error(`no parquet converter for super_glue config ${c}`);
    }
    out.push(pyJson(o));
  });
  // The official SuperGLUE test.jsonl files end without a final newline (measured on CB, RTE).
  const end = file.path.endsWith("/test.jsonl") ? "" : "\n";
  return out.length === 0 ? "" : out.join("\n") + end;
}

function multircText(file: FileSpec, rows: readonly Row[], test: boolean): string {
  type Q = { question: string; idx: number; answers: Record<string, unknown>[] };
  type P = { idx: number; text: string; questions: Map<number, Q> };
  const passages = new Map<number, P>();
  rows.forEach((r, i) => {
    const w = (f: string) => `${file.path} (parquet row ${i}) field ${f}`;
    const ids = plain(r.idx) as
      | { paragraph?: unknown; question?: unknown; answer?: unknown }
      | null;
    if (!ids || typeof ids !== "object") throw new Error(`${w("idx")}: expected a struct`);
    const pi = num(ids.paragraph, w("idx.paragraph"));
    const qi = num(ids.question, w("idx.question"));
    const ai = num(ids.answer, w("idx.answer"));
    let p = passages.get(pi);
    if (!p) {
      p = { idx: pi, text: str(r.paragraph, w("paragraph")), questions: new Map() };
      passages.set(pi, p);
    }
    let q = p.questions.get(qi);
    if (!q) {
      q = { question: str(r.question, w("question")), idx: qi, answers: [] };
      p.questions.set(qi, q);
    }
    const a: Record<string, unknown> = { text: str(r.answer, w("answer")), idx: ai };
    if (!test) a.label = binary(r.label, w("label"));
    q.answers.push(a);
  });
  const out = [...passages.values()].map((p) =>
    pyJson({
      idx: p.idx,
      version: 1.1,
      passage: { text: p.text, questions: [...p.questions.values()] },
    })
  );
  return out.length === 0 ? "" : out.join("\n") + "\n";
}

function recordText(file: FileSpec, rows: readonly Row[]): string {
  type Span = { start: number; end: number; text: string };
  type P = { idx: number; text: string; entities: Span[]; qas: Record<string, unknown>[] };
  const passages = new Map<number, P>();
  rows.forEach((r, i) => {
    const w = (f: string) => `${file.path} (parquet row ${i}) field ${f}`;
    const ids = plain(r.idx) as { passage?: unknown; query?: unknown } | null;
    if (!ids || typeof ids !== "object") throw new Error(`${w("idx")}: expected a struct`);
    const pi = num(ids.passage, w("idx.passage"));
    const qi = num(ids.query, w("idx.query"));
    let p = passages.get(pi);
    if (!p) {
      const text = str(r.passage, w("passage"));
      let spans: Span[];
      if (r.entity_spans !== undefined && r.entity_spans !== null) {
        spans = listOfObjects(r.entity_spans, w("entity_spans")).map((e) => ({
          start: num(e.start, w("entity_spans.start")),
          end: num(e.end, w("entity_spans.end")),
          text: str(e.text, w("entity_spans.text")),
        }));
      } else {
        const ents = (plain(r.entities) as unknown[] | null) ?? [];
        spans = [];
        for (const e of ents) {
          const t = str(e, w("entities"));
          for (const st of codePointOccurrences(text, t)) {
            spans.push({ start: st, end: st + Array.from(t).length - 1, text: t });
          }
        }
        spans.sort((a, b) => a.start - b.start);
      }
      p = { idx: pi, text, entities: spans, qas: [] };
      passages.set(pi, p);
    }
    const answers = ((plain(r.answers) as unknown[] | null) ?? []).map((a) => str(a, w("answers")));
    const ansSpans: Span[] = [];
    for (const a of answers) {
      const hits = p.entities.filter((e) => e.text === a);
      if (hits.length > 0) ansSpans.push(...hits.map((h) => ({ ...h })));
      else {
        // Official answers are passage spans (HF's answer strings are their texts), so one found
        // nowhere means a corrupt row: refused rather than written with start/end -1.
        const st = codePointOccurrences(p.text, a)[0];
        if (st === undefined) {
          throw new Error(
            `${w("answers")}: answer ${JSON.stringify(a)} is neither an entity nor in the passage`,
          );
        }
        ansSpans.push({ start: st, end: st + Array.from(a).length - 1, text: a });
      }
    }
    const qa: Record<string, unknown> = { query: str(r.query, w("query")), idx: qi };
    if (file.split !== "test") qa.answers = ansSpans;
    p.qas.push(qa);
  });
  const out = [...passages.values()].map((p) =>
    pyJson({
      idx: p.idx,
      source: "hf",
      passage: { text: p.text, entities: p.entities.map((e) => ({ start: e.start, end: e.end })) },
      qas: p.qas,
    })
  );
  return out.length === 0 ? "" : out.join("\n") + "\n";
}
