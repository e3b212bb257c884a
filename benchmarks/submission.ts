/**
 * `deno task submission`: the GLUE / SuperGLUE leaderboard files of one table row, from the test
 * predictions its runs wrote (`train.predictTest`: `<outDir>/test_predictions/<run file stem>/
 * <task>.jsonl`, one `{"id", "split", "prediction"}` per test example, made with the weights of
 * the task's best validation step; the run result's `testPredictions` names the folder and the
 * step of each file).
 *
 * The row is chosen as the tables choose one (model, backbone, benchmark, method label, seed; a
 * `perTask` method's task runs merged, `per_task.ts`), the predictions are joined on
 * `Example.id` with the test files read by `tasks/load.ts` (which give the leaderboard's `idx`
 * values, never guessed), turned into each leaderboard's label format as T5's
 * `prepare_glue_submission.py` writes it (`shared/reference/glue-superglue.md` §3.7), and written
 * under the official file names into a new folder (temp folder + rename) with a `README.txt` of
 * where each came from, and the leaderboard files alone zipped beside it (the servers expect only
 * the task files, as T5's script writes them: `README.txt` stays out of the zip).
 *
 * Formats (T5's script where it has the task, else as noted in {@link SUBMISSION_FILES}):
 * - GLUE: `<File>.tsv`, header `index\tprediction`, the test file's own index column. CoLA, SST-2,
 *   MRPC, QQP: the class index (0/1; 1 = acceptable / positive / equivalent / duplicate, as the
 *   test files' label columns); STS-B: the float; MNLI-m/-mm, QNLI, RTE, AX: the label word
 *   (`entailment`, …); WNLI: `0` (not_entailment, the majority class) for every row: never trained
 *   here (T5 trains WSC/DPR instead).
 * - SuperGLUE: `<File>.jsonl`, one `{"idx": <int>, "label": …}` per line. BoolQ, WiC: `"true"` /
 *   `"false"`; WSC: `"True"` / `"False"` (T5's `wsc_simple` rule against the test row's
 *   referent); COPA: 0/1; CB, RTE, AX-b, AX-g: the label word; ReCoRD: the predicted text, `idx`
 *   the query's; MultiRC nested per passage, `{"idx": p, "passage": {"questions": [{"idx": q,
 *   "answers": [{"idx": a, "label": 0|1}]}]}}`.
 *
 * A prediction that is no valid label (decoded garbage) gets the task's first class (STS-B 0.0,
 * WSC `"False"`), and each file's count of those is printed and written in `README.txt`. An
 * STS-B prediction that is a finite number outside [0, 5] is clipped to the nearer bound (a valid
 * number near the scale's end, not garbage; T5's script writes it as it is), counted apart.
 *
 * @module
 */
import { basename, dirname, join, resolve } from "node:path";
import { zipSync } from "fflate";
import { loadExamples } from "../tasks/load.ts";
import { pyFloat, pyStrip } from "../tasks/parse.ts";
import { classLabel, wscSimple } from "../tasks/postprocess.ts";
import { getTask, sourceId } from "../tasks/registry.ts";
import type { BenchmarkName, Example, TaskSplit } from "../tasks/types.ts";
import { checkDataDir, defaultDataDir } from "../tasks/data.ts";
import {
  checkOutputFolder,
  fsError,
  isDirectory,
  makeHeldTempDir,
  pathExists,
  swapFolderInto,
  writeFileAtomic,
} from "../model/fs.ts";
import { flagError, parseFlags, runCli, UsageError } from "../model/usage.ts";
import { ignoreFileSizeSignal } from "../model/file_size_signal.ts";
import {
  describeResult,
  loadResults,
  noResultsMessage,
  rejectDuplicates,
  resultSource,
} from "./compare.ts";
import { mergePerTaskRuns, perTaskParts } from "./per_task.ts";
import {
  backboneLabel,
  configId,
  modelLabel,
  type RunResult,
  type RunSpec,
  TEST_DIAGNOSTICS,
} from "./spec.ts";
import { type RunLabels, runLabels } from "./labels.ts";

/** How a leaderboard file writes a label. */
export type LabelFormat =
  /** The class index as a number (0/1). */
  | "index"
  /** The task's label word (`entailment`, `not_entailment`, …). */
  | "word"
  /** `"true"` / `"false"` (BoolQ, WiC). */
  | "lowerBool"
  /** `"True"` / `"False"` from T5's `wsc_simple` rule (WSC). */
  | "wsc"
  /** A float (STS-B). */
  | "float"
  /** The predicted text itself (ReCoRD). */
  | "text"
  /** MultiRC's nested per-passage rows, labels 0/1. */
  | "multirc"
  /** WNLI: `0` (not_entailment) on every test row, no predictions read. */
  | "majority";

/** One official file of a leaderboard submission. */
export interface SubmissionFile {
  /** The official file name (`CoLA.tsv`, `AX-b.jsonl`). */
  readonly name: string;
  /** The registry task whose predictions (and test file) it is made from. */
  readonly task: string;
  /** The test split (MNLI's halves); default `test`. */
  readonly split: TaskSplit;
  /** How labels are written. */
  readonly format: LabelFormat;
}

function file(name: string, task: string, format: LabelFormat, split: TaskSplit = "test") {
  return { name, task, split, format } as const;
}

/**
 * The official files of each leaderboard, in its order (glue-superglue.md §3.7; T5's
 * `prepare_glue_submission.py` for the label formats: its `USES_TEXT` tasks (CB, RTE, MNLI, QNLI)
 * write label words, BoolQ/WiC `"false"/"true"`, WSC `"False"/"True"`, the others the class index
 * or the STS-B float). T5's script has no entry for AX, AX-b and AX-g: they are written as the
 * task they are predicted with (AX as MNLI, AX-b and AX-g as SuperGLUE RTE: label words), which
 * is what the leaderboards' sample submissions hold; the reference is silent on that.
 */
export const SUBMISSION_FILES: Readonly<Record<BenchmarkName, readonly SubmissionFile[]>> = Object
  .freeze({
    glue: [
      file("CoLA.tsv", "cola", "index"),
      file("SST-2.tsv", "sst2", "index"),
      file("MRPC.tsv", "mrpc", "index"),
      file("STS-B.tsv", "stsb", "float"),
      file("QQP.tsv", "qqp", "index"),
      file("MNLI-m.tsv", "mnli", "word", "test_matched"),
      file("MNLI-mm.tsv", "mnli", "word", "test_mismatched"),
      file("QNLI.tsv", "qnli", "word"),
      file("RTE.tsv", "rte", "word"),
      file("WNLI.tsv", "wnli", "majority"),
      file("AX.tsv", "ax", "word"),
    ],
    super_glue: [
      file("BoolQ.jsonl", "boolq", "lowerBool"),
      file("CB.jsonl", "cb", "word"),
      file("COPA.jsonl", "copa", "index"),
      file("MultiRC.jsonl", "multirc", "multirc"),
      file("ReCoRD.jsonl", "record", "text"),
      file("RTE.jsonl", "rte_sg", "word"),
      file("WiC.jsonl", "wic", "lowerBool"),
      file("WSC.jsonl", "wsc", "wsc"),
      file("AX-b.jsonl", "axb", "word"),
      file("AX-g.jsonl", "axg", "word"),
    ],
  });

/** The trained task whose best step a diagnostic's predictions ride on (`TEST_DIAGNOSTICS`). */
const DIAGNOSTIC_OF: Readonly<Record<string, string>> = Object.fromEntries(
  Object.entries(TEST_DIAGNOSTICS).flatMap(([host, diags]) => diags.map((d) => [d, host])),
);

/** The provenance file written beside the leaderboard files, and left out of the zip. */
const README = "README.txt";

/** An error in a result file or a prediction file: exit 1, naming the file (and line, field). */
export class SubmissionError extends Error {
  /** @param message the file, line or field, and what is wrong */
  constructor(message: string) {
    super(message);
    this.name = "SubmissionError";
  }
}

/**
 * One JSON Lines record escaped as T5's `prepare_glue_submission.py` writes it with `json.dumps`,
 * whose `ensure_ascii` escapes DEL and every non-ASCII character (a surrogate pair as two
 * escapes), but compact (no spaces after `,` and `:`): the file is pure printable ASCII, and a
 * U+2028 / U+2029 / U+0085 in a prediction cannot split its line for a reader that splits on
 * them (Python's `str.splitlines`).
 */
function jsonLine(v: unknown): string {
  return JSON.stringify(v).replace(
    /[\u007f-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

function show(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? s.slice(0, 57) + "..." : s;
}

/** Which row of the tables to submit: `undefined` fields match anything. */
export interface RowCriteria {
  /** The benchmark. */
  readonly benchmark: BenchmarkName;
  /** The method label (`spec.method.label`). */
  readonly method: string;
  /**
   * The model label as the tables show it (`labels.ts`: `t5-base`, or `a/t5-base` where two
   * folders of the folder's results are named `t5-base`), or the short label (`modelLabel`),
   * which matches every model of that name when no model's label is `model` itself.
   */
  readonly model?: string;
  /** The backbone label, matched as `model` is (`backboneLabel`, `labels.ts`). */
  readonly backbone?: string;
  /** The seed. */
  readonly seed?: number;
  /** The profile name. */
  readonly profile?: string;
}

/**
 * One row of results as the tables would show it (before seeds are averaged), its model and
 * backbone labelled among the folder's (`labels`), so that two folders of one name read apart.
 */
function describeRow(r: RunResult, labels: RunLabels): string {
  const s = r.spec;
  const files = (perTaskParts(r) ?? [r]).map((p) => basename(resultSource(p) ?? p.spec.id));
  return `--profile ${s.profile} --model ${labels.model(s)} --backbone ${
    labels.backbone(s)
  } --benchmark ${s.benchmark} --method ${s.method.label} --seed ${s.seed} (config ${
    configId(s)
  }: ${files.join(", ")})`;
}

/**
 * The run(s) of one row: the results matching `c`, a `perTask` method's task runs merged into one
 * candidate. Exactly one candidate must remain; of several, the only one with test predictions
 * (a `predictTest` copy of a profile beside the runs it copied) is taken, said through `note`.
 *
 * @param results the results of a folder (`loadResults`)
 * @param c what to match
 * @param note where the choice among several is said (default: not said)
 * @returns the runs of the row (a per-task method's task runs, or the one multi-task run)
 * @throws UsageError when nothing matches (listing the rows there are) or several rows match
 *   (listing them); Error naming both files when two results are of one run id (a copy)
 */
export function selectRow(
  results: readonly RunResult[],
  c: RowCriteria,
  note?: (s: string) => void,
): RunResult[] {
  // Two files of one run (a copy): no flag could choose between them, so say so, as tables does.
  rejectDuplicates(results, (r) => r.spec.id, "run id", "remove one (a copy) from the folder");
  const all = mergePerTaskRuns(results, describeResult);
  // Labelled as the tables of this folder label them: two folders of one name (`/a/t5-base`,
  // `/b/t5-base`) are `a/t5-base` and `b/t5-base`; `--model t5-base` then matches both, and is
  // refused as ambiguous, listing the labels that choose one.
  const labels = runLabels(all.map((r) => r.spec));
  const byLabel = (wanted: string | undefined, label: (s: RunSpec) => string, short: Short) => {
    if (wanted === undefined) return () => true;
    const exact = all.some((r) => label(r.spec) === wanted);
    return (s: RunSpec) => exact ? label(s) === wanted : short(s) === wanted;
  };
  const modelOk = byLabel(c.model, (s) => labels.model(s), (s) => modelLabel(s.model));
  const backboneOk = byLabel(
    c.backbone,
    (s) => labels.backbone(s),
    (s) => backboneLabel(s.backbone ?? "random"),
  );
  const matching = all.filter((r) => {
    const s = r.spec;
    return s.benchmark === c.benchmark && s.method.label === c.method &&
      modelOk(s) && backboneOk(s) &&
      (c.seed === undefined || s.seed === c.seed) &&
      (c.profile === undefined || s.profile === c.profile);
  });
  // Whether a candidate has anything to submit (a per-task row: any of its task runs).
  const predicts = (r: RunResult) =>
    (perTaskParts(r) ?? [r]).some((p) => p.testPredictions !== undefined);
  const list = (rs: readonly RunResult[]) =>
    rs.map((r) => `\n  ${describeRow(r, labels)}${predicts(r) ? "" : " (no test predictions)"}`)
      .join("");
  if (matching.length === 0) {
    const there = all.filter((r) => r.spec.benchmark === c.benchmark);
    throw new UsageError(
      `no run matches ${criteriaText(c)}; the ${c.benchmark} rows there are:` +
        (there.length === 0 ? " none" : list(there)),
    );
  }
  const submittable = matching.filter(predicts);
  if (matching.length > 1 && submittable.length === 1) {
    const [row] = submittable as [RunResult];
    note?.(
      `${matching.length} rows match ${criteriaText(c)}; taking the only one with test ` +
        `predictions:${list([row])}\nthe other${matching.length > 2 ? "s have" : " has"} none:${
          list(matching.filter((r) => r !== row))
        }`,
    );
    return [...(perTaskParts(row) ?? [row])];
  }
  if (matching.length > 1) {
    throw new UsageError(
      `${matching.length} rows match ${criteriaText(c)}; narrow the choice with --profile, ` +
        `--model, --backbone or --seed (two configurations of one row: move the stale result ` +
        `out of the folder):${list(matching)}`,
    );
  }
  const row = matching[0]!;
  return [...(perTaskParts(row) ?? [row])];
}

/** A run's short model or backbone label (`modelLabel`, `backboneLabel`). */
type Short = (s: RunSpec) => string;

function criteriaText(c: RowCriteria): string {
  const parts = [`--benchmark ${c.benchmark}`, `--method ${c.method}`];
  if (c.profile !== undefined) parts.push(`--profile ${c.profile}`);
  if (c.model !== undefined) parts.push(`--model ${c.model}`);
  if (c.backbone !== undefined) parts.push(`--backbone ${c.backbone}`);
  if (c.seed !== undefined) parts.push(`--seed ${c.seed}`);
  return parts.join(" ");
}

/** One line of a `<task>.jsonl` prediction file. */
export interface PredictionLine {
  /** `Example.id` of the test example. */
  readonly id: string;
  /** Its split (`test`, MNLI `test_matched` / `test_mismatched`). */
  readonly split: string;
  /** The decoded text. */
  readonly prediction: string;
}

/**
 * Parses a prediction file: one `{"id", "split", "prediction"}` object per line (all strings),
 * ids unique.
 *
 * @param text the file's text
 * @param path the file, for errors
 * @returns the lines, in file order
 * @throws SubmissionError `<path>:<line>: …` for a malformed or repeated line
 */
export function parsePredictions(text: string, path: string): PredictionLine[] {
  const out: PredictionLine[] = [];
  const seen = new Map<string, number>();
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  lines.forEach((line, i) => {
    const at = `${path}:${i + 1}`;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (e) {
      throw new SubmissionError(`${at}: invalid JSON (${(e as Error).message})`);
    }
    if (v === null || typeof v !== "object" || Array.isArray(v)) {
      throw new SubmissionError(`${at}: expected an object {"id", "split", "prediction"}`);
    }
    const o = v as Record<string, unknown>;
    for (const k of ["id", "split", "prediction"]) {
      if (typeof o[k] !== "string") {
        throw new SubmissionError(`${at}: field "${k}" must be a string, got ${show(o[k])}`);
      }
    }
    const id = o.id as string;
    const first = seen.get(id);
    if (first !== undefined) {
      throw new SubmissionError(`${at}: id ${show(id)} repeats line ${first}`);
    }
    seen.set(id, i + 1);
    out.push({ id, split: o.split as string, prediction: o.prediction as string });
  });
  return out;
}

/** The id as the test file has it: `Example.id` without its `<task>/<split>/` prefix. */
function rawId(ex: Example): string {
  const prefix = `${ex.task}/${ex.split ?? "test"}/`;
  if (!ex.id.startsWith(prefix)) throw new Error(`example id ${ex.id} lacks "${prefix}"`);
  return ex.id.slice(prefix.length);
}

/** A SuperGLUE `idx`: the integer (as T5's `int(idx)`), or the string when it is none. */
function jsonIdx(s: string): number | string {
  return /^-?\d+$/.test(s) ? Number(s) : s;
}

/** A converted file. */
export interface ConvertedFile {
  /** The file's text. */
  readonly text: string;
  /** Rows written (MultiRC: answers). */
  readonly rows: number;
  /** Predictions that were no valid label, replaced by the first class. */
  readonly replaced: number;
  /** STS-B predictions that were finite numbers outside [0, 5], clipped to it (else 0). */
  readonly clipped: number;
}

/**
 * Converts one task's test examples and their predictions (same order) into a leaderboard file.
 *
 * @param f the file
 * @param examples the test examples in file order (`loadExamples`)
 * @param predictions one decoded text per example (ignored for `majority`)
 * @returns the file's text, its rows, the count of replaced invalid predictions and of clipped
 *   STS-B ones
 */
export function convertFile(
  f: SubmissionFile,
  examples: readonly Example[],
  predictions: readonly string[],
): ConvertedFile {
  const spec = getTask(f.task);
  const words = spec.labelWords;
  let replaced = 0;
  let clipped = 0;
  const cls = (p: string): number => {
    const c = classLabel(p, words);
    if (c >= 0) return c;
    replaced++;
    return 0;
  };
  const label = (p: string, ex: Example): number | string => {
    switch (f.format) {
      case "index":
        return cls(p);
      case "word":
        return words[cls(p)]!;
      case "lowerBool":
        return ["false", "true"][cls(p)]!;
      case "wsc": {
        let w = wscSimple(p, ex.target);
        if (w < 0) [w, replaced] = [0, replaced + 1];
        return w === 1 ? "True" : "False";
      }
      case "float": {
        const v = pyFloat(p);
        if (v === undefined || !Number.isFinite(v)) {
          replaced++;
          return 0;
        }
        // A number past an end of the scale (5.2, -0.3): the nearer bound, not 0.
        if (v < 0 || v > 5) {
          clipped++;
          return Math.min(5, Math.max(0, v));
        }
        return v;
      }
      case "text":
        // As T5 writes a ReCoRD answer: stripped as Python's `l.strip()` strips.
        return pyStrip(p);
      case "majority":
        return 0;
      case "multirc":
        return cls(p);
    }
  };
  if (f.format === "multirc") {
    // Nested as T5 writes it: passages, then questions, in order of first appearance.
    const passages = new Map<string, Map<string, { idx: number | string; label: number }[]>>();
    examples.forEach((ex, i) => {
      const m = /^(.+)-(-?\d+)-(-?\d+)$/.exec(rawId(ex));
      if (m === null) throw new Error(`MultiRC example id ${ex.id} is not <p>-<q>-<a>`);
      let qs = passages.get(m[1]!);
      if (qs === undefined) passages.set(m[1]!, qs = new Map());
      let as = qs.get(m[2]!);
      if (as === undefined) qs.set(m[2]!, as = []);
      as.push({ idx: Number(m[3]), label: label(predictions[i]!, ex) as number });
    });
    const lines = [...passages].map(([p, qs]) =>
      jsonLine({
        idx: jsonIdx(p),
        passage: {
          questions: [...qs].map(([q, answers]) => ({ idx: Number(q), answers })),
        },
      })
    );
    return {
      text: lines.map((l) => l + "\n").join(""),
      rows: examples.length,
      replaced,
      clipped,
    };
  }
  const values = examples.map((ex, i) => label(predictions[i] ?? "", ex));
  if (f.name.endsWith(".tsv")) {
    const cell = (v: number | string) =>
      typeof v === "number" && Number.isInteger(v) && f.format === "float" ? v.toFixed(1) : v;
    const rows = examples.map((ex, i) => `${rawId(ex)}\t${cell(values[i]!)}`);
    const text = ["index\tprediction", ...rows].join("\n") + "\n";
    return { text, rows: rows.length, replaced, clipped };
  }
  const lines = examples.map((ex, i) => {
    // ReCoRD: the query's idx (the id is <passage idx>/<query idx>), as T5's `idx/query`.
    const id = f.format === "text" ? rawId(ex).split("/").at(-1)! : rawId(ex);
    return jsonLine({ idx: jsonIdx(id), label: values[i] });
  });
  return { text: lines.map((l) => l + "\n").join(""), rows: lines.length, replaced, clipped };
}

/** Options of {@link buildSubmission}. */
export interface BuildOptions {
  /** The results folder (or one results JSON file): `--runs`. */
  readonly runs: string;
  /** The row. */
  readonly criteria: RowCriteria;
  /** The data folder in the official layout (the test files). */
  readonly dataDir: string;
  /** Write what exists when tasks are missing, instead of refusing. */
  readonly allowMissing?: boolean;
  /**
   * Write a file whose test file has another count of examples than the official one (the
   * registry's `rows`: MultiRC answers, ReCoRD queries), with a note in its log line and
   * `README.txt`, instead of refusing (a leaderboard rejects such a file).
   */
  readonly allowPartial?: boolean;
  /** Where progress lines go (default `console.log`). */
  readonly log?: (s: string) => void;
}

/** What {@link buildSubmission} made. */
export interface Submission {
  /** Official file name -> contents (README.txt included), in leaderboard order. */
  readonly files: ReadonlyMap<string, string>;
  /** Official files not written (no predictions, or no test file), with why. */
  readonly missing: readonly { readonly name: string; readonly why: string }[];
  /** Invalid predictions replaced, per written file. */
  readonly replaced: Readonly<Record<string, number>>;
  /** STS-B predictions outside [0, 5] clipped to it, per written file (0 for the others). */
  readonly clipped: Readonly<Record<string, number>>;
}

interface Source {
  readonly run: RunResult;
  readonly file: string;
  readonly dir: string;
  readonly step: number;
  readonly examples: number;
}

/**
 * Reads a row's test predictions and test files and converts them to the leaderboard's files.
 * Every file is checked before any refusal, so one refusal lists all the missing files and all
 * the partial ones (a test file of another example count than the official one, WNLI's too).
 *
 * @param opts where to read, which row
 * @returns the files (not yet written)
 * @throws UsageError for a selection that is not one row, missing files without
 *   `allowMissing` (with it too when none can be written), or partial files without
 *   `allowPartial` (each with its count, the official count and its test file);
 *   SubmissionError for a malformed result or prediction file, or predictions that do not match
 *   the test file
 */
export async function buildSubmission(opts: BuildOptions): Promise<Submission> {
  const log = opts.log ?? ((s: string) => console.log(s));
  const results = await loadResults(opts.runs);
  // Not "no run matches …; the rows there are: none": nothing there is a result at all.
  if (results.length === 0) throw new UsageError(`--runs ${noResultsMessage(opts.runs)}`);
  const parts = selectRow(results, opts.criteria, log);
  const sources = new Map<string, Source>();
  const without: string[] = [];
  for (const r of parts) {
    const file = (resultSource(r) ?? r.spec.id).replace(/\[\d+\]$/, "");
    // Checked by loadResults (benchmarks/spec.ts validateRunResult: a relative folder, counts).
    const tp = r.testPredictions;
    if (tp === undefined) {
      without.push(basename(file));
      continue;
    }
    for (const [task, e] of Object.entries(tp.files)) {
      const twin = sources.get(task);
      if (twin !== undefined) {
        throw new SubmissionError(
          `${file}: $.testPredictions.files.${task}: ${twin.file} has predictions of ${task} too`,
        );
      }
      sources.set(task, { run: r, file, dir: join(dirname(file), tp.dir), ...e });
    }
  }
  const files = new Map<string, string>();
  const missing: { name: string; why: string }[] = [];
  const partial: string[] = [];
  /**
   * The note of a file whose test examples are not the official count (`""` when they are, or
   * the registry has no count), in the registry's units (MultiRC answers, ReCoRD queries: one
   * example each); the file is remembered for the refusal without `allowPartial`.
   */
  const partialNote = (f: SubmissionFile, examples: number, testPath: string): string => {
    const official = getTask(f.task).files[f.split]?.[0]?.rows;
    if (typeof official !== "number" || official === examples) return "";
    const unit = f.format === "multirc" ? "answers" : f.format === "text" ? "queries" : "rows";
    partial.push(
      `${f.name}: ${examples} ${unit} in ${testPath}, the official test file has ${official}`,
    );
    return `; the official test file has ${official}`;
  };
  const replaced: Record<string, number> = {};
  const clipped: Record<string, number> = {};
  const notes: string[] = [];
  const testCache = new Map<string, Example[]>();
  const testOf = async (task: string, split: TaskSplit) => {
    const key = `${task}/${split}`;
    let ex = testCache.get(key);
    if (ex === undefined) {
      // The official row count is not checked here: the predictions are joined by id (a
      // prediction of no row, or a row with none, is an error below), and a test file of another
      // count is refused after the loop (`partialNote`), or written with a note (allowPartial).
      // A file cut mid-line keeps its ids; loadExamples refuses one whose official copy ends
      // with a newline (the mirror's GLUE test files; QQP, MNLI, QNLI, WNLI and AX are
      // unmeasured), and a cut JSON line does not parse.
      ex = await loadExamples(task, split, opts.dataDir, { checkRows: false });
      testCache.set(key, ex);
    }
    return ex;
  };
  const predCache = new Map<string, Map<string, PredictionLine>>();
  const readPreds = async (task: string, src: Source) => {
    let m = predCache.get(task);
    if (m !== undefined) return m;
    const path = join(src.dir, `${task}.jsonl`);
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch (e) {
      throw new SubmissionError(
        `${path}: cannot read it (${(e as Error).message}); ${src.file} lists it in ` +
          `$.testPredictions.files.${task}`,
      );
    }
    const lines = parsePredictions(text, path);
    if (lines.length !== src.examples) {
      throw new SubmissionError(
        `${path}: ${lines.length} predictions, but ${src.file} $.testPredictions.files.${task}` +
          `.examples says ${src.examples} (a truncated or replaced file)`,
      );
    }
    // The folder's manifest (run_one.ts TestPredictionWriter) says which step wrote each file: a
    // later attempt of the run, stopped before its result, rewrites the files under the result
    // of an earlier one.
    const manifestPath = join(src.dir, "manifest.json");
    let manifest: unknown;
    try {
      manifest = JSON.parse(await Deno.readTextFile(manifestPath));
    } catch {
      manifest = undefined; // none (or unreadable): the counts above are all there is to check
    }
    const wrote = (manifest as Record<string, { step?: unknown } | undefined> | undefined)?.[task];
    if (manifest !== undefined && wrote?.step !== src.step) {
      throw new SubmissionError(
        `${path}: ${manifestPath} says ${
          wrote === undefined ? "no step wrote it" : `step ${JSON.stringify(wrote.step)} wrote it`
        }, but ${src.file} $.testPredictions.files.${task}.step says ${src.step}: a later ` +
          `attempt of the run (stopped before writing its result) rewrote the predictions; ` +
          `train the run again (deno task bench --methods ${
            JSON.stringify(src.run.spec.method.label)
          } without --resume, which skips a run with a result)`,
      );
    }
    m = new Map(lines.map((l) => [l.id, l]));
    predCache.set(task, m);
    return m;
  };
  const used = new Map<string, Set<string>>();
  for (const f of SUBMISSION_FILES[opts.criteria.benchmark]) {
    const spec = getTask(f.task);
    const testFile = spec.files[f.split]?.[0]?.path ?? "";
    const hasTest = await pathExists(join(opts.dataDir, testFile));
    // Where a test file is missing, how to get it (bench fetches only what its runs read).
    const getIt = `; get it with deno task download --tasks ${sourceId(f.task)} (into the cache; ` +
      "--data-dir names another folder)";
    if (f.format === "majority") {
      if (!hasTest) {
        missing.push({
          name: f.name,
          why: `no test file ${join(opts.dataDir, testFile)}${getIt}`,
        });
        continue;
      }
      const examples = await testOf(f.task, f.split);
      const c = convertFile(f, examples, []);
      files.set(f.name, c.text);
      replaced[f.name] = 0;
      clipped[f.name] = 0;
      const ignored = sources.has(f.task) ? ` (the run's ${f.task} predictions are not used)` : "";
      const short = partialNote(f, examples.length, join(opts.dataDir, testFile));
      const line = `${f.name}: ${c.rows} rows, all 0 (not_entailment, the majority class): WNLI ` +
        `is never trained here (T5 trains WSC/DPR instead)${ignored}${short}`;
      log(line);
      notes.push(line);
      continue;
    }
    const src = sources.get(f.task);
    if (src === undefined) {
      missing.push({
        name: f.name,
        why: `no ${f.task} test predictions in the row's runs` +
          (without.length > 0
            ? ` (${without.join(", ")} ${
              without.length === 1 ? "has" : "have"
            } no testPredictions: trained without train.predictTest)`
            : "") +
          // A run skips a diagnostic whose test file was missing when it started (one line on
          // its stderr): the likely why, when it is missing now too.
          (hasTest || !Object.hasOwn(DIAGNOSTIC_OF, f.task)
            ? ""
            : `; its test file ${join(opts.dataDir, testFile)} is not there either`),
      });
      continue;
    }
    if (!hasTest) {
      missing.push({ name: f.name, why: `no test file ${join(opts.dataDir, testFile)}${getIt}` });
      continue;
    }
    const examples = await testOf(f.task, f.split);
    const preds = await readPreds(f.task, src);
    const path = join(src.dir, `${f.task}.jsonl`);
    const texts = examples.map((ex) => {
      const p = preds.get(ex.id);
      if (p === undefined) {
        throw new SubmissionError(
          `${path}: no prediction for test example ${ex.id} (${ex.file}:${ex.line}); the ` +
            "predictions were made from another test file than the one in the data folder",
        );
      }
      const split = ex.split ?? "test";
      if (p.split !== split) {
        throw new SubmissionError(
          `${path}: the prediction of ${ex.id} says split ${show(p.split)}, its test file ${split}`,
        );
      }
      return p.prediction;
    });
    let u = used.get(f.task);
    if (u === undefined) used.set(f.task, u = new Set());
    for (const ex of examples) u.add(ex.id);
    const c = convertFile(f, examples, texts);
    files.set(f.name, c.text);
    replaced[f.name] = c.replaced;
    clipped[f.name] = c.clipped;
    const trained = DIAGNOSTIC_OF[f.task] ?? f.task;
    const best = src.run.best[trained]?.step;
    const stale = best !== undefined && best !== src.step
      ? `; WARNING: the run's best ${trained} step is ${best}, not ${src.step}`
      : "";
    // Row units as the registry counts them (MultiRC answers, ReCoRD queries: one example each):
    // a partial test file is refused below, or written and said so (allowPartial).
    const short = partialNote(f, examples.length, join(opts.dataDir, testFile));
    const line = `${f.name}: ${c.rows} ${
      f.format === "multirc" ? "answers" : "rows"
    } from ${f.task}.jsonl, step ${src.step} of ${basename(src.file)}; ${
      replacedText(f, c)
    }${short}${stale}`;
    log(line);
    notes.push(line);
  }
  // Predictions of a task no leaderboard file takes (a custom task, another benchmark's) are not
  // used: said, so that a row's missing work is not mistaken for a written file.
  const onBoard = new Set(SUBMISSION_FILES[opts.criteria.benchmark].map((f) => f.task));
  const board = boardName(opts.criteria.benchmark);
  for (const [task, src] of sources) {
    if (onBoard.has(task)) continue;
    const line = `${task}: the test predictions of ${basename(src.file)} are not used: no ` +
      `${board} leaderboard file takes ${task}`;
    log(line);
    notes.push(line);
  }
  for (const [task, ids] of used) {
    const extra = [...predCache.get(task)!.keys()].filter((id) => !ids.has(id));
    if (extra.length > 0) {
      throw new SubmissionError(
        `${join(sources.get(task)!.dir, `${task}.jsonl`)}: ${extra.length} prediction(s) of no ` +
          `test example in ${opts.dataDir} (first: ${extra[0]})`,
      );
    }
  }
  // One refusal for everything refused, so that a rerun with the flags it names succeeds.
  const total = SUBMISSION_FILES[opts.criteria.benchmark].length;
  const missingText = missing.map((m) => `\n  ${m.name}: ${m.why}`).join("");
  const refusals: string[] = [];
  if (missing.length > 0 && !opts.allowMissing) {
    refusals.push(
      `missing ${missing.length} of the ${total} leaderboard files (--allow-missing writes the ` +
        `others):${missingText}`,
    );
  }
  if (partial.length > 0 && !opts.allowPartial) {
    refusals.push(
      `${partial.length} of the ${total} leaderboard files would be partial, their test files ` +
        "not the official row count (a leaderboard rejects them; --allow-partial writes them " +
        `with a note):${partial.map((p) => `\n  ${p}`).join("")}`,
    );
  }
  if (files.size === 0) {
    // Nothing to write (no predictions matched a test file, or no test files there): README.txt
    // and an empty zip are no submission, with or without --allow-missing.
    throw new UsageError(
      `no leaderboard file could be written (all ${total} missing; --allow-missing writes only ` +
        `the ones there are):${missingText}`,
    );
  }
  if (refusals.length > 0) throw new UsageError(refusals.join("\n"));
  if (missing.length > 0) log(`not written (--allow-missing):${missingText}`);
  const anyClipped = Object.values(clipped).some((k) => k > 0);
  files.set(README, readme(opts, parts, notes, missing, anyClipped));
  return { files, missing, replaced, clipped };
}

/** A leaderboard's name as its site writes it. */
function boardName(benchmark: BenchmarkName): string {
  return benchmark === "glue" ? "GLUE" : "SuperGLUE";
}

/** A file's count of replaced predictions, and of clipped ones where there are some. */
function replacedText(f: SubmissionFile, c: ConvertedFile): string {
  if (f.format === "text") return "any text is an answer: nothing replaced";
  const clip = c.clipped > 0 ? `, ${c.clipped} out of [0, 5] clipped to it` : "";
  return `${c.replaced} invalid prediction(s) replaced by ${firstClass(f)}${clip}`;
}

function firstClass(f: SubmissionFile): string {
  switch (f.format) {
    case "float":
      return "0.0";
    case "wsc":
      return '"False"';
    case "lowerBool":
      return '"false"';
    case "word":
      return `"${getTask(f.task).labelWords[0]}"`;
    default:
      return `0 (${getTask(f.task).labelWords[0]})`;
  }
}

/** A model or backbone as given: a preset's name, `random`, `pretrained`, or the whole `hf`. */
const whole = (ref: RunSpec["model"] | RunSpec["backbone"]) =>
  typeof ref === "string" ? ref : ref.hf;

function readme(
  opts: BuildOptions,
  parts: readonly RunResult[],
  notes: readonly string[],
  missing: readonly { name: string; why: string }[],
  anyClipped: boolean,
): string {
  const s = parts[0]!.spec;
  const board = boardName(opts.criteria.benchmark);
  return [
    // An hf model or backbone by its whole reference: its folder name alone may be two folders'.
    `${board} leaderboard submission: ${s.profile} / ${whole(s.model)} / ${
      whole(s.backbone ?? "random")
    } / ${s.method.label} / seed ${s.seed}`,
    "Written by `deno task submission` (benchmarks/submission.ts) from the test predictions of",
    "each task's best validation step (T5's convention).",
    "",
    "Runs:",
    ...parts.map((r) =>
      `  ${basename(resultSource(r) ?? r.spec.id)} (run ${r.spec.id}, git ${r.provenance.gitSha}${
        r.provenance.gitDirty ? " dirty" : ""
      })`
    ),
    "",
    "Files:",
    ...notes.map((n) => `  ${n}`),
    ...(missing.length === 0
      ? []
      : ["", "Not written:", ...missing.map((m) => `  ${m.name}: ${m.why}`)]),
    "",
    "Invalid predictions (decoded text that is no label) are replaced by the task's first class",
    "(STS-B 0.0, WSC False); the count per file is above.",
    ...(anyClipped
      ? ["STS-B predictions outside [0, 5] are clipped to it (not replaced); counted above."]
      : []),
    ...(notes.some((n) => n.startsWith("WNLI.tsv"))
      ? [
        "WNLI.tsv: 0 (not_entailment, the majority class) for every row; WNLI is never trained",
        "here (T5 trains WSC/DPR instead).",
      ]
      : []),
    "",
  ].join("\n");
}

/**
 * The time stamp of every zip entry: fixed (the DOS epoch), so that the same predictions give
 * the same zip, byte for byte.
 */
const ZIP_MTIME = new Date(1980, 0, 1);

/**
 * Writes the files into a new folder `out` (built in a temporary folder beside it, then renamed
 * into place) and the same files but `README.txt`, at the zip's root, into `<out>.zip` (written
 * atomically, before the folder is renamed into place: a stop between the two leaves the zip, the
 * upload, and no folder, which a rerun names): the leaderboard servers expect the task files alone
 * (glue-superglue.md §3.7). The same files give the same zip (fixed time stamps).
 *
 * @param out the folder (absent or empty)
 * @param files file name -> contents
 * @returns the zip's path
 */
export async function writeSubmission(
  out: string,
  files: ReadonlyMap<string, string>,
): Promise<string> {
  const parent = dirname(resolve(out));
  await Deno.mkdir(parent, { recursive: true });
  const zipPath = zipPathOf(out);
  const tmp = await makeHeldTempDir(parent, `.${basename(out)}`);
  const enc = new TextEncoder();
  const zip: Record<string, Uint8Array> = {};
  try {
    for (const [name, text] of files) {
      const bytes = enc.encode(text);
      // A full disk names the submission folder being written, not only its temporary copy.
      await Deno.writeFile(join(tmp.path, name), bytes).catch((e) => {
        throw fsError(e, resolve(out), `writing ${name} (in the temporary folder ${tmp.path})`);
      });
      if (name !== README) zip[name] = bytes;
    }
    await writeFileAtomic(zipPath, zipSync(zip, { level: 9, mtime: ZIP_MTIME }));
    try {
      await swapFolderInto(tmp.path, resolve(out));
    } catch (e) {
      await Deno.remove(zipPath).catch(() => {});
      throw e;
    }
  } catch (e) {
    await Deno.remove(tmp.path, { recursive: true }).catch(() => {});
    throw e;
  } finally {
    tmp.release();
  }
  return zipPath;
}

/** `deno task submission --help`. */
export const SUBMISSION_USAGE =
  `Usage: deno task submission --runs DIR --benchmark B --method LABEL --out DIR [options]

Writes the GLUE or SuperGLUE leaderboard files of one row of results (a run trained with
train.predictTest: the test predictions of each task's best validation step) and a README.txt of
where each came from into a folder, and the leaderboard files alone (no README.txt, which a
leaderboard may reject) into <out>.zip.

  --runs DIR         folder of run result JSONs (or one JSON file of results)
  --benchmark B      glue or super_glue
  --method LABEL     the method label (a perTask method's task runs are taken together)
  --model M          the model label as the tables show it (a folder's name, or a/t5-base
                     where two folders share one), when several match
  --backbone B       the backbone label (random, pretrained, ...), when several match
  --seed N           the seed, when several match
  --profile P        the profile, when several match
  --data-dir DIR     the test files, official layout (default: $HYPERPROMPT_DATA, else the cache
                     and ../shared/data, as bench)
  --out DIR          a new (or empty) folder for the files; <DIR>.zip is written beside it
  --allow-missing    write the files there are predictions for, listing the others
  --allow-partial    write files whose test file is not the official row count (a
                     leaderboard rejects them), with a note
  --help             this text

Exit codes: 0 written, 1 an error reading the results, predictions or test files, or writing,
2 bad arguments, no or several matching rows, or leaderboard files missing or partial.`;

/** Options of {@link main} (tests capture the output). */
export interface SubmissionMainOptions {
  /** Where `--help` and progress go (default `console.log`). */
  readonly log?: (s: string) => void;
  /** Where the error goes (default `console.error`). */
  readonly error?: (s: string) => void;
}

/**
 * `deno task submission`.
 *
 * @param args command-line arguments
 * @param opts output sinks
 * @returns the exit code (0 written or `--help`, 1 a failure, 2 bad arguments, selection, or
 *   missing or partial files)
 */
export function main(args: string[], opts: SubmissionMainOptions = {}): Promise<number> {
  const log = opts.log ?? ((s: string) => console.log(s));
  const sinks = { log, ...(opts.error === undefined ? {} : { error: opts.error }) };
  return runCli((a) => submissionCommand(a, log), args, SUBMISSION_USAGE, sinks);
}

async function submissionCommand(args: string[], log: (s: string) => void): Promise<void> {
  const v = parseFlags(args, {
    tool: "deno task submission",
    options: {
      runs: { type: "string" },
      benchmark: { type: "string" },
      method: { type: "string" },
      model: { type: "string" },
      backbone: { type: "string" },
      seed: { type: "string" },
      profile: { type: "string" },
      "data-dir": { type: "string" },
      out: { type: "string" },
      "allow-missing": { type: "boolean", default: false },
      "allow-partial": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
    takes: {
      runs: "a folder of run result JSONs",
      benchmark: "glue or super_glue",
      method: "a method label",
      model: "a model label",
      backbone: "a backbone label",
      seed: "a non-negative integer",
      profile: "a profile name",
      "data-dir": "a folder",
      out: "a folder",
    },
    paths: { runs: true, "data-dir": true, out: true },
  });
  for (const k of ["runs", "benchmark", "method", "out"] as const) {
    if (v[k] === undefined) {
      // As parseFlags ends its lines (model/usage.ts): the whole command to run for the flags.
      throw flagError("deno task submission", `--${k} is required`);
    }
  }
  if (v.benchmark !== "glue" && v.benchmark !== "super_glue") {
    throw new UsageError(`--benchmark must be glue or super_glue, got "${v.benchmark}"`);
  }
  let seed: number | undefined;
  if (v.seed !== undefined) {
    seed = Number(v.seed);
    if (!/^\d+$/.test(v.seed)) {
      throw new UsageError(`--seed must be a non-negative integer, got "${v.seed}"`);
    }
  }
  const out = v.out!;
  await checkNewOutput(out);
  if (!(await pathExists(v.runs!))) {
    throw new UsageError(`--runs ${v.runs}: no such folder or file`);
  }
  const dataDir = v["data-dir"] ?? defaultDataDir();
  if (v["data-dir"] !== undefined) {
    // As bench and pretrain say it: missing, or a file where the folder should be.
    try {
      checkDataDir(dataDir);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  }
  const sub = await buildSubmission({
    runs: v.runs!,
    criteria: {
      benchmark: v.benchmark,
      method: v.method!,
      ...(v.model === undefined ? {} : { model: v.model }),
      ...(v.backbone === undefined ? {} : { backbone: v.backbone }),
      ...(seed === undefined ? {} : { seed }),
      ...(v.profile === undefined ? {} : { profile: v.profile }),
    },
    dataDir,
    allowMissing: v["allow-missing"],
    allowPartial: v["allow-partial"],
    log,
  });
  const zip = await writeSubmission(out, sub.files);
  // README.txt is always there; the count is of the leaderboard's own files, the zip's.
  const n = sub.files.size - 1;
  const what = `${n} leaderboard ${n === 1 ? "file" : "files"}`;
  const absent = sub.missing.map((m) => m.name);
  log(
    `wrote ${what} and ${README} to ${out}, the leaderboard ${n === 1 ? "file" : "files"} ` +
      `alone to ${zip}` +
      (absent.length === 0
        ? ""
        : `; INCOMPLETE (--allow-missing): without ${
          absent.join(", ")
        }, which a leaderboard rejects: use it to check the files, not to upload`),
  );
}

/** The zip written beside the folder `out`: `<out>.zip`. */
function zipPathOf(out: string): string {
  return `${out.replace(/[\\/]+$/, "")}.zip`;
}

/**
 * `--out` must be absent or an empty folder, and `<out>.zip` absent; an `--out` named like the
 * zip (`x.zip`) is refused, as it would write `x.zip.zip` beside a folder `x.zip`.
 */
async function checkNewOutput(out: string): Promise<void> {
  // A usable folder path (no file at it or above it), as every tool's --out.
  checkOutputFolder("--out", out, { writable: true });
  if (/\.zip[\\/]*$/i.test(out)) {
    throw new UsageError(
      `--out ${out}: names the folder, not the zip; the zip is written beside it as ` +
        `<folder>.zip (--out ${out.replace(/\.zip[\\/]*$/i, "")} writes ` +
        `${zipPathOf(out.replace(/\.zip[\\/]*$/i, ""))})`,
    );
  }
  const zip = zipPathOf(out);
  if (await isDirectory(out)) {
    for await (const _ of Deno.readDir(out)) {
      throw new UsageError(`--out ${out}: not empty; name a new folder (nothing is overwritten)`);
    }
  }
  if (await pathExists(zip)) {
    throw new UsageError(
      `--out ${out}: ${zip} exists; name a new folder (nothing is overwritten)${
        (await pathExists(out)) ? "" : ` (without the folder ${out}: a write stopped before ` +
          "it finished? remove the zip to write both again)"
      }`,
    );
  }
}

if (import.meta.main) {
  // A write past `ulimit -f` then throws "File too large (os error 27)" naming the file, for
  // the error paths to report, instead of SIGXFSZ ending the process silently (exit 153).
  ignoreFileSizeSignal();
  Deno.exit(await main(Deno.args));
}
