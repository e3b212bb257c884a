/**
 * `loadExamples`: reads a task's official files (layout in the registry), parses them strictly
 * and turns every row into T5 text-to-text {@link Example}s. Errors name file, line and field.
 *
 * @module
 */
import { join } from "node:path";
import { getTask, sourceId } from "./registry.ts";
import { officialFinalNewline } from "./sources.ts";
import {
  boolLabel,
  DataError,
  decodeUtf8,
  getPath,
  type JsonRow,
  parseDpr,
  parseJsonl,
  parseTsv,
  pyFloat,
  reqArray,
  reqInt,
  reqString,
  shown,
  type Where,
} from "./parse.ts";
import {
  dprSimpleInput,
  fixWsc,
  glueInput,
  multircInput,
  recordEntities,
  recordInput,
  sortedUnique,
  stsbTarget,
  wscSimpleInput,
} from "./text.ts";
import type { Example, TaskFile, TaskSpec, TaskSplit } from "./types.ts";

/** Options of {@link loadExamples}. */
export interface LoadOptions {
  /** Check the official row counts (default true): a truncated or foreign file is an error. */
  checkRows?: boolean;
  /**
   * Called with a file (layout path) and the 1-based line numbers of the short rows dropped from
   * it (QQP train, as TFDS does; see `TaskSpec.skipShortRows`). Default: one line on stderr,
   * naming the file by its full path.
   */
  onSkipped?: (file: string, lines: number[]) => void;
}

/** The default {@link LoadOptions.onSkipped}: names the file (as given) and up to 20 lines. */
function logSkipped(file: string, lines: number[]): void {
  const shown = lines.slice(0, 20).join(", ") +
    (lines.length > 20 ? `, … (${lines.length - 20} more)` : "");
  console.error(
    `${file}: skipped ${lines.length} short row(s) with missing fields (as TFDS does) at line(s) ${shown}`,
  );
}

const UNK = "<unk>";

/** The number of the first blank line followed by a non-blank one (1-based), if any. */
function innerBlankLine(text: string): number | undefined {
  const lines = text.split("\n");
  let last = lines.length - 1;
  while (last >= 0 && lines[last]!.trim() === "") last--;
  for (let i = 0; i < last; i++) if (lines[i]!.trim() === "") return i + 1;
  return undefined;
}

/**
 * Loads one split of a task from `dataDir` (official layout: `glue/CoLA/train.tsv`,
 * `super_glue/BoolQ/val.jsonl`, …) as T5 text-to-text examples. MultiRC gives one example per
 * answer; ReCoRD one per (query, answer) on train and one per query (all answers in
 * `answers`) otherwise; WSC train keeps only label==True rows; DPR (train only) gives one
 * example per four-line record. MNLI `validation` / `test` are
 * the matched then the mismatched file. A split the task has no file for returns `[]`. Short
 * rows dropped from QQP train are reported through `opts.onSkipped` (default: stderr). A
 * malformed file throws a {@link DataError} naming it by its path under `dataDir`
 * (`<dataDir>/glue/CoLA/train.tsv:12: …`), so the message alone finds it; the examples' `file`
 * stays the layout path.
 */
export async function loadExamples(
  taskName: string,
  split: TaskSplit,
  dataDir: string,
  opts: LoadOptions = {},
): Promise<Example[]> {
  const spec = getTask(taskName);
  const files = splitFiles(spec, split);
  const out: Example[] = [];
  for (const f of files) {
    const abs = join(dataDir, f.path);
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(abs);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        throw new Error(
          `missing data file ${abs} (task ${spec.name}, split ${split}); get it with ` +
            `\`deno task download --tasks ${sourceId(spec.name)}\` (into the cache, which ` +
            "`deno task bench` reads), or pass --data-dir DIR (or HYPERPROMPT_DATA=DIR) naming " +
            "a folder in the official layout that holds it",
        );
      }
      throw e;
    }
    let res: FileExamples;
    try {
      res = examplesFromBytes(spec.name, split, bytes, f.path, { ...opts, file: f });
    } catch (e) {
      if (e instanceof DataError && e.file === f.path) {
        throw new DataError(abs, e.line, e.detail, e.field);
      }
      throw e;
    }
    const { examples, skipped } = res;
    if (skipped.length > 0) {
      if (opts.onSkipped !== undefined) opts.onSkipped(f.path, skipped);
      else logSkipped(abs, skipped);
    }
    for (const e of examples) out.push(e);
  }
  return out;
}

/** The files of a split; throws for a split name the task does not know. */
function splitFiles(spec: TaskSpec, split: TaskSplit): TaskFile[] {
  const files = spec.files[split];
  if (files !== undefined) return files;
  const known = ["train", "validation", "test"];
  if (known.includes(split)) return [];
  throw new Error(
    `task ${spec.name} has no split "${split}" (splits: ${Object.keys(spec.files).join(", ")})`,
  );
}

/** Options of {@link examplesFromBytes}. */
export interface BytesOptions extends LoadOptions {
  /** The registry file entry (header-less columns, official row count, split tag). */
  file?: TaskFile;
}

/** Result of {@link examplesFromBytes}. */
export interface FileExamples {
  /** The examples, in file order. */
  examples: Example[];
  /** Rows counted (the unit of the official count: rows, MultiRC answers, ReCoRD queries). */
  rows: number;
  /**
   * 1-based line numbers of the short rows dropped (QQP train only; on any other split a short
   * row is an error). Empty for every other task.
   */
  skipped: number[];
}

/**
 * Converts one file's bytes (named `file` in errors) into examples. With no `opts.file`, the
 * registry's first file of the split gives the header-less columns and the split tag, and the
 * row count is not checked. Short rows are dropped (and returned in `skipped`) only from a train
 * split of a task with `skipShortRows` (QQP); on validation and test they throw naming the lines,
 * since an evaluation or test row must never disappear. With `opts.file`, a file whose official
 * copy ends with a newline (`officialFinalNewline`) and that does not is refused as cut mid-line.
 */
export function examplesFromBytes(
  taskName: string,
  split: TaskSplit,
  bytes: Uint8Array,
  file: string,
  opts: BytesOptions = {},
): FileExamples {
  const spec = getTask(taskName);
  const fspec = opts.file ?? splitFiles(spec, split)[0];
  const text = decodeUtf8(bytes, file);
  const tag = fspec?.split ?? split;
  // What to do about a registry file that is not the official one (cut short, empty, miscounted).
  const refetch = `deno task download --tasks ${sourceId(spec.name)}`;
  let res: FileExamples;
  try {
    res = spec.format === "tsv"
      ? tsvExamples(spec, tag, text, file, fspec?.columns)
      : spec.format === "dpr"
      ? { ...dprExamples(spec, tag, text, file), skipped: [] }
      : { ...jsonlExamples(spec, tag, text, file), skipped: [] };
  } catch (e) {
    if (!(e instanceof DataError)) throw e;
    // An empty file (a TSV's "no header line") is not the official one: none is empty.
    if (text === "") {
      throw new DataError(e.file, e.line, `${e.detail}; fetch it again (${refetch})`, e.field);
    }
    // A row that does not parse on the last line of a file whose official copy ends with a
    // newline and this one does not (a cut label reads as an unknown label, a cut row as missing
    // columns): the file was cut. Where the parser itself guessed so, the same advice.
    const official = opts.file !== undefined && officialFinalNewline(opts.file.path) === true;
    const lastLine = !text.endsWith("\n") && e.line === text.split("\n").length;
    if ((official && lastLine) || e.detail.endsWith(" (truncated file?)")) {
      throw new DataError(
        e.file,
        e.line,
        `${e.detail.replace(/ \(truncated file\?\)$/, "")}; the file ends mid-line here${
          official ? ", without the final newline the official file ends with" : ""
        }: cut short? fetch it again (${refetch})`,
        e.field,
      );
    }
    throw e;
  }
  checkUniqueIds(spec, tag, res.examples, file);
  // A file cut in its free-text last column keeps every row count, so only the missing final
  // newline tells, where the official file is measured to have one (with or without checkRows).
  if (
    opts.file !== undefined && officialFinalNewline(opts.file.path) === true &&
    !text.endsWith("\n")
  ) {
    // Not cut mid-line: nothing came at all (a header-less TSV parses as no rows).
    if (text === "") throw new DataError(file, 0, `empty file; fetch it again (${refetch})`);
    const lines = text.split("\n");
    const last = lines[lines.length - 1] ?? "";
    const tail = last.length <= 60 ? last : `…${last.slice(-60)}`;
    throw new DataError(
      file,
      lines.length,
      `the file ends mid-line (${JSON.stringify(tail)}), without the final newline the official ` +
        "file ends with: cut short, so its last row may be incomplete (a cut in the last column " +
        `keeps the row count); fetch it again (${refetch}), or end your own file with a newline`,
    );
  }
  if (opts.file !== undefined && (opts.checkRows ?? true) && fspec?.rows !== undefined) {
    const ok = Array.isArray(fspec.rows) ? fspec.rows : [fspec.rows];
    if (!ok.includes(res.rows)) {
      const what = spec.converter === "multirc"
        ? "answers"
        : spec.converter === "record"
        ? "queries"
        : spec.format === "dpr"
        ? "records"
        : "rows";
      // A row emptied by hand reads as a blank line, which parsing skips: name it.
      const blank = spec.format === "dpr" ? undefined : innerBlankLine(text);
      throw new DataError(
        file,
        0,
        `expected ${
          ok.join(" or ")
        } ${what} (official count), found ${res.rows}: truncated or not the ` +
          `official file${
            blank === undefined ? "" : ` (line ${blank} is blank, which an official file has not)`
          } (${refetch} fetches the official one into the cache; a library ` +
          "caller may pass checkRows: false to skip this check)",
      );
    }
  }
  return res;
}

/**
 * Throws a {@link DataError} at the second of two examples of one file with the same id, naming
 * the line of the first. The official files number their rows uniquely, so a repeated id is a
 * copied line or a hand edit; loaded, one row would be counted twice while another is lost, and
 * predictions keyed by id (submission files) would give both rows one answer.
 */
function checkUniqueIds(
  spec: TaskSpec,
  split: TaskSplit,
  examples: readonly Example[],
  file: string,
): void {
  const seen = new Map<string, number>();
  const prefix = exampleId(spec, split, "");
  for (const e of examples) {
    const first = seen.get(e.id);
    if (first === undefined) {
      seen.set(e.id, e.line ?? 0);
      continue;
    }
    // MultiRC and ReCoRD ids join several fields (paragraph-question-answer, passage/query).
    const composite = spec.converter === "multirc" || spec.converter === "record";
    const id = e.id.startsWith(prefix) ? e.id.slice(prefix.length) : e.id;
    throw new DataError(
      file,
      e.line ?? 0,
      `duplicate id ${shown(id)}, already at line ${first} (every row of an official ` +
        "file has its own id: a copied line or an edited id?)",
      composite ? undefined : spec.idField ?? "idx",
    );
  }
}

function isTrainOrDev(split: TaskSplit): boolean {
  return !split.startsWith("test");
}

function exampleId(spec: TaskSpec, split: TaskSplit, id: string): string {
  return `${spec.name}/${split}/${id}`;
}

function decodeLabel(spec: TaskSpec, raw: unknown, at: Where): number {
  const field = spec.labelField ?? "label";
  switch (spec.labelKind) {
    case "bool":
      return boolLabel(raw, field, at);
    case "int":
      if (raw === 0 || raw === 1) return raw;
      throw new DataError(
        at.file,
        at.line,
        `unknown label ${shown(raw)} (expected 0 or 1)`,
        field,
      );
    case "float": {
      const v = typeof raw === "number" ? raw : typeof raw === "string" ? pyFloat(raw) : undefined;
      if (v === undefined || !Number.isFinite(v) || v < 0 || v > 5) {
        throw new DataError(
          at.file,
          at.line,
          `expected a score in [0, 5], got ${shown(raw)}`,
          field,
        );
      }
      return v;
    }
    default: {
      const idx = typeof raw === "string" ? spec.labelMap?.[raw] : undefined;
      if (idx === undefined || !Object.hasOwn(spec.labelMap ?? {}, raw as string)) {
        throw new DataError(
          at.file,
          at.line,
          `unknown label ${shown(raw)} (expected ${Object.keys(spec.labelMap ?? {}).join(", ")})`,
          field,
        );
      }
      return idx;
    }
  }
}

function classifyExample(
  spec: TaskSpec,
  split: TaskSplit,
  id: string,
  values: Record<string, string>,
  label: number | undefined,
  at: Where,
): Example {
  const pairs = spec.inputKeys.map((k) => [k, values[k] as string] as const);
  let target: string;
  // T5's preprocessors: an unlabelled row (TFDS label -1) gets "<unk>", except STS-B's, whose
  // target is the label rounded like any other (`stsb`: round(-1 · 5) / 5 → "-1.0").
  if (label === undefined) target = spec.converter === "stsb" ? stsbTarget(-1) : UNK;
  else if (spec.converter === "stsb") target = stsbTarget(label);
  else target = spec.labelWords[label] as string;
  const ex: Example = {
    task: spec.name,
    id: exampleId(spec, split, id),
    input: glueInput(spec.prefix, pairs),
    target,
    split,
    line: at.line,
    file: at.file,
  };
  if (label !== undefined) ex.label = label;
  if (values.pair_id !== undefined) ex.group = values.pair_id;
  return ex;
}

function tsvExamples(
  spec: TaskSpec,
  split: TaskSplit,
  text: string,
  file: string,
  columns: string[] | undefined,
): FileExamples {
  const required = Object.values(spec.fields);
  const labelled = isTrainOrDev(split);
  if (labelled && spec.labelField !== undefined) required.push(spec.labelField);
  const table = parseTsv(text, file, { columns, required, skipShortRows: spec.skipShortRows });
  if (table.skipped.length > 0 && split !== "train") {
    const n = table.skipped.length;
    throw new DataError(
      file,
      table.skipped[0] as number,
      `expected ${table.header.length} tab-separated columns: ${n} short row(s) (line${
        n === 1 ? "" : "s"
      } ${table.skipped.join(", ")}); short rows are dropped from train only, a ${split} row ` +
        "must not disappear",
    );
  }
  const hasLabel = spec.labelField !== undefined && table.header.includes(spec.labelField);
  const hasId = spec.idField !== undefined && table.header.includes(spec.idField);
  const examples = table.rows.map((row, i) => {
    const at = { file, line: row.line };
    const values: Record<string, string> = {};
    for (const [k, col] of Object.entries(spec.fields)) values[k] = row.cells[col] as string;
    let label: number | undefined;
    try {
      label = hasLabel ? decodeLabel(spec, row.cells[spec.labelField as string], at) : undefined;
    } catch (e) {
      throw headerHint(e, row, columns);
    }
    const id = hasId ? (row.cells[spec.idField as string] as string) : String(i);
    return classifyExample(spec, split, id, values, label, at);
  });
  return { examples, rows: table.rows.length, skipped: table.skipped };
}

/**
 * `e` (a label's {@link DataError}) with a hint when its row is the first of a header-less file
 * (`columns` given) and a cell there is a column's name: a header line added to the file, which
 * the official one has not (CoLA's train and dev), reads as a row with an unknown label.
 */
function headerHint(
  e: unknown,
  row: { readonly line: number; readonly cells: Readonly<Record<string, string | undefined>> },
  columns: readonly string[] | undefined,
): unknown {
  if (!(e instanceof DataError) || columns === undefined || row.line !== 1) return e;
  const names = new Set(columns.map((c) => c.toLowerCase()));
  const cells = Object.values(row.cells).filter((c) => c !== undefined);
  if (!cells.some((c) => names.has(c.trim().toLowerCase()))) return e;
  return new DataError(
    e.file,
    e.line,
    `${e.detail}; line 1 reads as a header (${
      cells.map((c) => shown(c)).join(", ")
    }); the official file has none (its columns: ${columns.join(", ")}): remove that line`,
    e.field,
  );
}

/**
 * The id at `key` of a JSONL row: a non-negative integer (every SuperGLUE file's `idx`) or, where
 * `strings` (the default), a non-empty string (AX-b's `idx` is `"0"`, `"1"`, …), as a string.
 * Every official JSONL file, and every file `hf_convert.ts` writes, has one on each row, so a
 * missing one is an error rather than the row number: a made-up id would key a submission line to
 * the wrong example.
 */
function idOf(row: JsonRow, key: string, at: Where, strings = true): string {
  const v = getPath(row.value, key);
  if (v === undefined) throw new DataError(at.file, at.line, "missing", key);
  if (typeof v === "number" && Number.isInteger(v) && v >= 0) return String(v);
  if (strings && typeof v === "string" && v !== "") return v;
  const want = strings ? "a non-negative integer or a non-empty string" : "a non-negative integer";
  throw new DataError(at.file, at.line, `expected ${want}, got ${shown(v)}`, key);
}

/**
 * The label at `path` of a JSONL row, decoded by `decode`; absent, it is `undefined` on a test
 * split and a "missing" {@link DataError} on train and validation (`labelled`).
 */
function rowLabel(
  row: JsonRow,
  path: string,
  labelled: boolean,
  at: Where,
  decode: (raw: unknown) => number,
): number | undefined {
  const raw = getPath(row.value, path);
  if (raw !== undefined) return decode(raw);
  if (labelled) throw new DataError(at.file, at.line, "missing", path);
  return undefined;
}

function jsonlExamples(
  spec: TaskSpec,
  split: TaskSplit,
  text: string,
  file: string,
): { examples: Example[]; rows: number } {
  const rows = parseJsonl(text, file);
  switch (spec.converter) {
    case "multirc":
      return multircExamples(spec, split, rows, file);
    case "record":
      return recordExamples(spec, split, rows, file);
    case "wsc_simple":
      return wscExamples(spec, split, rows, file);
    default: {
      const labelled = isTrainOrDev(split);
      const examples = rows.map((row) => {
        const at = { file, line: row.line };
        const values: Record<string, string> = {};
        for (const [k, path] of Object.entries(spec.fields)) {
          if (k !== "pair_id") values[k] = reqString(row.value, path, at);
          // AX-g: no pair_id (the Hugging Face fallback drops it) means no group, so gender
          // parity is not scored; never a made-up id.
          else if (getPath(row.value, path) !== undefined) values[k] = idOf(row, path, at);
        }
        const label = spec.labelField === undefined
          ? undefined
          : rowLabel(row, spec.labelField, labelled, at, (raw) => decodeLabel(spec, raw, at));
        return classifyExample(
          spec,
          split,
          idOf(row, spec.idField ?? "idx", at),
          values,
          label,
          at,
        );
      });
      return { examples, rows: rows.length };
    }
  }
}

function multircExamples(
  spec: TaskSpec,
  split: TaskSplit,
  rows: JsonRow[],
  file: string,
): { examples: Example[]; rows: number } {
  const labelled = isTrainOrDev(split);
  const examples: Example[] = [];
  for (const row of rows) {
    const at = { file, line: row.line };
    const v = row.value;
    const pidx = idOf(row, "idx", at);
    const paragraph = reqString(v, "passage.text", at);
    const questions = reqArray(v, "passage.questions", at);
    for (let qi = 0; qi < questions.length; qi++) {
      const qp = `passage.questions.${qi}`;
      const question = reqString(v, `${qp}.question`, at);
      const qidx = idOf(row, `${qp}.idx`, at, false);
      const answers = reqArray(v, `${qp}.answers`, at);
      for (let ai = 0; ai < answers.length; ai++) {
        const ap = `${qp}.answers.${ai}`;
        const answer = reqString(v, `${ap}.text`, at);
        const aidx = idOf(row, `${ap}.idx`, at, false);
        const lp = `${ap}.label`;
        const label = rowLabel(row, lp, labelled, at, (raw) => boolLabel(raw, lp, at));
        const ex: Example = {
          task: spec.name,
          id: exampleId(spec, split, `${pidx}-${qidx}-${aidx}`),
          input: multircInput(question, answer, paragraph),
          target: label === undefined ? UNK : spec.labelWords[label] as string,
          group: qidx,
          split,
          line: row.line,
          file,
        };
        if (label !== undefined) ex.label = label;
        examples.push(ex);
      }
    }
  }
  return { examples, rows: examples.length };
}

function recordExamples(
  spec: TaskSpec,
  split: TaskSplit,
  rows: JsonRow[],
  file: string,
): { examples: Example[]; rows: number } {
  const train = split === "train";
  const labelled = isTrainOrDev(split);
  const examples: Example[] = [];
  let queries = 0;
  for (const row of rows) {
    const at = { file, line: row.line };
    const v = row.value;
    const pidx = idOf(row, "idx", at);
    const passage = reqString(v, "passage.text", at);
    const spans = reqArray(v, "passage.entities", at).map((_, i) => ({
      start: reqInt(v, `passage.entities.${i}.start`, at),
      end: reqInt(v, `passage.entities.${i}.end`, at),
    }));
    const ent = recordEntities(passage, spans);
    if (ent.bad !== undefined) {
      throw new DataError(
        file,
        row.line,
        "span out of range of passage.text",
        `passage.entities.${ent.bad}`,
      );
    }
    const qas = reqArray(v, "qas", at);
    for (let qi = 0; qi < qas.length; qi++) {
      queries++;
      const qp = `qas.${qi}`;
      const query = reqString(v, `${qp}.query`, at);
      const qidx = idOf(row, `${qp}.idx`, at);
      let answers: string[] = [];
      if (getPath(v, `${qp}.answers`) !== undefined) {
        const raw = reqArray(v, `${qp}.answers`, at);
        answers = sortedUnique(raw.map((_, ai) => reqString(v, `${qp}.answers.${ai}.text`, at)));
      } else if (labelled) {
        throw new DataError(file, row.line, "missing", `${qp}.answers`);
      }
      const input = recordInput(query, ent.entities, passage);
      const group = `${pidx}/${qidx}`;
      const base = { task: spec.name, input, group, split, line: row.line, file };
      if (train && answers.length > 0) {
        answers.forEach((a, ai) => {
          examples.push({
            ...base,
            id: exampleId(spec, split, `${group}/${ai}`),
            target: a,
            answers: [...answers],
          });
        });
      } else {
        examples.push({
          ...base,
          id: exampleId(spec, split, group),
          target: answers[0] ?? UNK,
          answers,
        });
      }
    }
  }
  return { examples, rows: queries };
}

function wscExamples(
  spec: TaskSpec,
  split: TaskSplit,
  rows: JsonRow[],
  file: string,
): { examples: Example[]; rows: number } {
  const labelled = isTrainOrDev(split);
  const examples: Example[] = [];
  rows.forEach((row) => {
    const at = { file, line: row.line };
    const raw = {
      text: reqString(row.value, "text", at),
      span1_index: reqInt(row.value, "target.span1_index", at),
      span2_index: reqInt(row.value, "target.span2_index", at),
      span1_text: reqString(row.value, "target.span1_text", at),
      span2_text: reqString(row.value, "target.span2_text", at),
    };
    const label = rowLabel(row, "label", labelled, at, (raw) => boolLabel(raw, "label", at));
    if (split === "train" && label !== 1) return;
    let input: string;
    let fixed;
    try {
      fixed = fixWsc(raw);
      input = wscSimpleInput(fixed);
    } catch (e) {
      throw new DataError(file, row.line, (e as Error).message, "target");
    }
    const ex: Example = {
      task: spec.name,
      id: exampleId(spec, split, idOf(row, "idx", at)),
      input,
      target: fixed.span1_text,
      split,
      line: row.line,
      file,
    };
    if (label !== undefined) ex.label = label;
    examples.push(ex);
  });
  return { examples, rows: rows.length };
}

/**
 * DPR (`dpr_v001_simple`): one example per record of `parse.ts` `parseDpr`, the input from
 * `text.ts` `dprSimpleInput`, the target the correct candidate; `line` is the sentence's line.
 */
function dprExamples(
  spec: TaskSpec,
  split: TaskSplit,
  text: string,
  file: string,
): { examples: Example[]; rows: number } {
  const records = parseDpr(text, file);
  const examples = records.map((r, i): Example => ({
    task: spec.name,
    id: exampleId(spec, split, String(i)),
    input: dprSimpleInput(r.sentence, r.pronoun),
    target: r.candidates[r.label] as string,
    label: r.label,
    split,
    line: r.line,
    file,
  }));
  return { examples, rows: records.length };
}
