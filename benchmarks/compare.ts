/**
 * The regression gate: compare run results with a baseline (a folder of run JSONs or one JSON
 * file holding a result or an array of results). It fails when a score moves by more than its
 * tolerance, or when a parameter or FLOP count, or a run's spec, changes at all.
 *
 * @module
 */
import { basename, join } from "node:path";
import { parseJsonFile } from "../model/json.ts";
import { UsageError } from "../model/usage.ts";
import {
  type BackboneRef,
  type BestEval,
  type ModelRef,
  normalHfRef,
  runId,
  type RunResult,
  SpecError,
  type TaskEval,
  type Tolerances,
  validateRunResult,
} from "./spec.ts";
import { isPerTaskRun, mergePerTaskRuns, missingTaskRuns, perTaskParts } from "./per_task.ts";
import { bestPerTask, officialAverages } from "./evaluator.ts";
import type { RunProvenance } from "./provenance.ts";

/** One difference found by {@link compareResults}. */
export interface GateDiff {
  /** Run key (`profile/model/backbone/benchmark/method/seed`, {@link runKey}). */
  readonly run: string;
  /** What differs, e.g. `best.cb.f1`, `params.extra`, `spec.id`. */
  readonly field: string;
  /**
   * The baseline's value (metric scores and averages rounded to 4 decimals, or to more digits
   * where 4 would show it and `current` alike: {@link shownScores}), or a short description
   * such as `present`, `12 steps` or `(none)`.
   */
  readonly baseline: number | string;
  /** This run's value, given as for `baseline`; `missing` when the run lacks the field. */
  readonly current: number | string;
  /**
   * Allowed absolute difference: scores' and averages' (from the profile's `tolerances`), and a
   * step's loss (`tolerances.loss` relative, times the baseline's loss); absent where the values
   * must be equal.
   */
  readonly tolerance?: number;
  /**
   * The relative tolerance `tolerance` was derived from (a step's loss: `tolerances.loss`), shown
   * beside it: `tolerance 1e-5 relative (4.58e-5)`.
   */
  readonly relativeTolerance?: number;
  /**
   * `current − baseline` of the unrounded values (present when both are numbers): a score that
   * fails by less than the 4 decimals of `baseline` and `current` still differs here.
   */
  readonly diff?: number;
  /**
   * What the failure means, printed after it: for `spec.id`, the configuration fields that differ
   * ({@link specDifferences}) and what to do.
   */
  readonly detail?: string;
}

/** One field in which two run specs differ ({@link specDifferences}). */
export interface SpecDifference {
  /** Dotted path from the spec, e.g. `spec.backend`, `spec.method.config.length`. */
  readonly path: string;
  /** The baseline's value as text (`(absent)` where it has none). */
  readonly baseline: string;
  /** The current value as text (`(absent)` where it has none). */
  readonly current: string;
}

/**
 * The fields in which two run specs (or any JSON values) differ, depth first in key order, the
 * top-level `id` left out (it is derived from the rest). Objects are compared key by key, arrays
 * element by element (a length change is one difference: the array's own path); other values
 * by their JSON text. Strings are shown bare, other values as JSON cut to 60 characters.
 *
 * @param baseline the baseline run's spec
 * @param current the current run's spec
 * @param path the prefix of every path
 * @returns the differences, empty when the two are equal
 */
export function specDifferences(
  baseline: unknown,
  current: unknown,
  path = "spec",
): SpecDifference[] {
  const out: SpecDifference[] = [];
  const isObject = (x: unknown): x is Record<string, unknown> =>
    typeof x === "object" && x !== null && !Array.isArray(x);
  const show = (x: unknown): string => {
    if (x === undefined) return "(absent)";
    if (typeof x === "string") return x;
    const text = JSON.stringify(x);
    return text.length > 60 ? `${text.slice(0, 57)}...` : text;
  };
  const walk = (b: unknown, c: unknown, at: string, top: boolean): void => {
    if (isObject(b) && isObject(c)) {
      const keys = [...new Set([...Object.keys(b), ...Object.keys(c)])].sort();
      for (const k of keys) {
        if (!(top && k === "id")) walk(b[k], c[k], `${at}.${k}`, false);
      }
    } else if (Array.isArray(b) && Array.isArray(c) && b.length === c.length) {
      b.forEach((x, i) => walk(x, c[i], `${at}[${i}]`, false));
    } else if (JSON.stringify(b) !== JSON.stringify(c)) {
      out.push({ path: at, baseline: show(b), current: show(c) });
    }
  };
  walk(baseline, current, path, true);
  return out;
}

/**
 * One {@link SpecDifference} as the gate says it: `spec.backend: baseline cpu, current wasm`.
 *
 * @param d the difference
 * @returns one line of text
 */
export function formatSpecDifference(d: SpecDifference): string {
  return `${d.path}: baseline ${d.baseline}, current ${d.current}`;
}

/** What to do when the baseline no longer stands for the runs: said by several failures. */
export const REGENERATE_BASELINE =
  'regenerate the baseline (benchmarks/README.md "Regression gate")';

/**
 * The `detail` of a `spec.id` failure: the first three differing fields and what to do.
 *
 * @param diffs the spec's differences
 * @returns one line of text
 */
function specIdDetail(diffs: readonly SpecDifference[]): string {
  const shown = diffs.slice(0, 3).map(formatSpecDifference);
  const more = diffs.length > 3 ? `; and ${diffs.length - 3} more` : "";
  const what = diffs.length === 0
    ? "the run id changed though no spec field differs (the id's derivation changed)"
    : `the configuration changed: ${shown.join("; ")}${more}`;
  return `${what}. If intended, ${REGENERATE_BASELINE}`;
}

/** Result of {@link compareResults}. */
export interface Comparison {
  /** True when nothing failed. */
  readonly ok: boolean;
  /** Differences that fail the gate. */
  readonly failures: readonly GateDiff[];
  /**
   * Informational lines (new runs without a baseline, scores and benchmark averages that moved
   * within tolerance).
   */
  readonly notes: readonly string[];
  /** Runs compared. */
  readonly compared: number;
  /** Run keys of current runs that have no baseline run, so were not gated (each also a note). */
  readonly ungated: readonly string[];
}

/**
 * A model or backbone as {@link runKey} names it: a preset name, `random` or `pretrained` as they
 * are, and an `{"hf"}` reference as `hf:` and the whole reference in JSON quotes, in the one
 * spelling `spec.ts` {@link normalHfRef} gives it (the form a validated profile holds): `\`
 * written `/`, repeated `/` and `.` segments dropped and no trailing `/`
 * (`{"hf": "/data/t5-base/"}` -> `hf:"/data/t5-base"`), so a result file written from another
 * spelling still matches. Two folders with the same last segment (`/a/t5-base`, `/b/t5-base`),
 * or a folder and a hub id ending alike, are different references; a relative folder stays
 * relative (not resolved against the working folder), so a baseline made on another machine
 * keeps matching, and a leading `./` stays (it marks a folder, not a hub id).
 * The quotes keep a key unambiguous although the reference holds `/`.
 *
 * @param ref the run's model or backbone
 * @returns its part of the key
 */
export function refKey(ref: ModelRef | BackboneRef): string {
  if (typeof ref === "string") return ref;
  return `hf:${JSON.stringify(normalHfRef(ref.hf))}`;
}

/**
 * Key matching a run with its baseline: profile, model, backbone, benchmark, method label (with
 * the task in brackets for one task's run of a per-task method) and seed; the model and backbone
 * by their whole reference ({@link refKey}), so runs of two folders named alike are two keys. The
 * configuration (`configId`) is deliberately not part of it: a run whose configuration changed is
 * still gated against its baseline run, failing on `spec.id` beside any score, count or loss that
 * moved (regenerate the baseline after an intended change), rather than being "missing" while the
 * changed run goes ungated; a folder holding two configurations of one key is refused, naming
 * both files ({@link compareResults}).
 *
 * @param r a run result
 * @returns e.g. `ci/tiny-v1_1/pretrained/glue/mtl/s0`,
 *   `paper-base/t5-v1_1-base/hf:"google/t5-v1_1-base"/glue/Prompt-Tuning[cola]/s0`
 */
export function runKey(r: Pick<RunResult, "spec">): string {
  const s = r.spec;
  const task = isPerTaskRun(r) ? `[${s.tasks[0]}]` : "";
  return `${s.profile}/${refKey(s.model)}/${
    refKey(s.backbone ?? "random")
  }/${s.benchmark}/${s.method.label}${task}/s${s.seed}`;
}

/** The file each result of {@link loadResults} came from. */
const SOURCES = new WeakMap<RunResult, string>();

/**
 * The file a result was read from by {@link loadResults} (`file.json`, or `file.json[i]` for an
 * element of an array file).
 *
 * @param r a run result
 * @returns the file, or undefined for a result not read by `loadResults`
 */
export function resultSource(r: RunResult): string | undefined {
  return SOURCES.get(r);
}

/**
 * Checks that a result's `best` and `averages` are what its `evals` give, as `run_one.ts`
 * computes them (`evaluator.ts` `bestPerTask` and `benchmarkAverages`, the official average of
 * `tasks/metrics.ts`): the tables, the gate and the submission read the stored figures, so one
 * edited by hand, or damaged, would be reported as measured. `best` is compared exactly (copied
 * from an evaluation; JSON keeps every double), an average to 1e-9 relative (a sum in another
 * order, by an older version of the code, may differ in its last bits; an edit shows in the
 * digits written).
 *
 * @param r a validated result
 * @param file its file, for the error
 * @returns `r`
 * @throws SpecError naming the file, the field, the stored and the computed figures
 */
export function checkRecordedScores(r: RunResult, file: string): RunResult {
  const fail = (path: string, reason: string): never => {
    throw new SpecError(
      { file },
      path,
      `${reason}: edited after the run wrote it, damaged, or written by an older version of ` +
        "the suite that computed it otherwise? Restore the file, or rerun the run (it writes " +
        "the file again)",
    );
  };
  const best = bestPerTask(r.evals);
  const shown = (b: BestEval | undefined) =>
    b === undefined
      ? "none"
      : `step ${b.step}, group score ${b.groupScore}, metrics ${
        JSON.stringify(b.metrics, (_, v) => (Number.isNaN(v) ? "NaN" : v))
      }`;
  for (const task of new Set([...Object.keys(r.best), ...Object.keys(best)])) {
    const [stored, computed] = [r.best[task], best[task]];
    if (!sameEval(stored, computed)) {
      fail(
        `$.best.${task}`,
        `holds ${shown(stored)}, but the best of $.evals for ${task} is ${shown(computed)}`,
      );
    }
  }
  const averages: Record<string, number> = officialAverages(r.spec.benchmark, best);
  for (const bench of new Set([...Object.keys(r.averages), ...Object.keys(averages)])) {
    const [stored, computed] = [(r.averages as Record<string, number>)[bench], averages[bench]];
    const near = stored !== undefined && computed !== undefined &&
      Math.abs(stored - computed) <= 1e-9 * Math.max(1, Math.abs(computed));
    if (!Object.is(stored, computed) && !near) {
      fail(
        `$.averages.${bench}`,
        `is ${stored ?? "absent"}, but the average of $.best's group scores is ${
          computed ?? "none (no task of that benchmark)"
        }`,
      );
    }
  }
  return r;
}

/**
 * Whether two best evaluations are the same: step, group score, invalid predictions and metrics
 * (NaN equal).
 */
function sameEval(a: BestEval | undefined, b: BestEval | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  const ka = Object.keys(a.metrics).sort();
  const kb = Object.keys(b.metrics).sort();
  return a.step === b.step && Object.is(a.groupScore, b.groupScore) &&
    JSON.stringify(a.invalid) === JSON.stringify(b.invalid) &&
    ka.length === kb.length && ka.every((k, i) => k === kb[i]) &&
    ka.every((k) => Object.is(a.metrics[k], b.metrics[k]));
}

/**
 * Refuses results of which two were read from one file: a folder and a file in it, or a file in
 * two spellings (a link), given to one repeatable flag. Said as such, not as two results of one
 * run. Two entries of one array file are two results (their sources keep the index).
 *
 * @param flag the flag, e.g. `--runs`, for the message
 * @param results results read by {@link loadResults} (others are skipped)
 * @throws UsageError `--runs: /abs/x.json is read twice (as runs/x.json and as runs/x.json): a
 *   folder and a file in it, or one file in two spellings; name it once`
 */
export async function refuseFileReadTwice(
  flag: string,
  results: readonly RunResult[],
): Promise<void> {
  const files = new Map<string, string>();
  for (const r of results) {
    const source = resultSource(r);
    if (source === undefined) continue;
    const [, file, index] = /^(.*?)(\[\d+\])?$/.exec(source)!;
    const real = `${await Deno.realPath(file!).catch(() => file!)}${index ?? ""}`;
    const first = files.get(real);
    if (first !== undefined) {
      throw new UsageError(
        `${flag}: ${real} is read twice (as ${first} and as ${source}): a folder and a file in ` +
          "it, or one file in two spellings; name it once",
      );
    }
    files.set(real, source);
  }
}

/**
 * A result named for error messages: its file, else its run id; a merged per-task result
 * (`per_task.ts`) by the results it was made of.
 *
 * @param r a run result
 * @returns the description
 */
export function describeResult(r: RunResult): string {
  const parts = perTaskParts(r);
  if (parts !== undefined) return `the task runs ${parts.map(describeResult).join(", ")}`;
  return resultSource(r) ?? `the result of run ${r.spec.id}`;
}

/**
 * Throw when two results share a key.
 *
 * @param results the results
 * @param keyOf the key of a result
 * @param what what the key is, for the message (e.g. `run id`)
 * @param advice what to do, appended to the message
 * @throws Error naming both files (or run ids) and the key
 */
export function rejectDuplicates(
  results: readonly RunResult[],
  keyOf: (r: RunResult) => string,
  what: string,
  advice: string,
): void {
  const seen = new Map<string, RunResult>();
  for (const r of results) {
    const k = keyOf(r);
    const first = seen.get(k);
    if (first !== undefined) {
      throw new Error(
        `Two results for the same ${what} ${k}: ${describeResult(first)} and ${
          describeResult(r)
        }; ${advice}`,
      );
    }
    seen.set(k, r);
  }
}

/**
 * The error for a folder of run results without any (`deno task tables`, `submission`).
 *
 * @param runs the folder
 * @returns the message, starting with the folder
 */
export function noResultsMessage(runs: string): string {
  return `${runs}: no run results (*.json) there; deno task bench writes them (its --out, ` +
    `default results/runs)`;
}

/**
 * Read run results from a folder (every `*.json` directly inside, sorted by name) or from one
 * JSON file (a result or an array of results). {@link resultSource} then names the file of each.
 *
 * @param path folder or file
 * @param opts `except`: names of files in the folder to leave unread (bench's preflight: the
 *   files its runs will write)
 * @returns the validated results
 * @throws Error naming the file and JSON path of a malformed result
 */
export async function loadResults(
  path: string,
  opts: { readonly except?: ReadonlySet<string> } = {},
): Promise<RunResult[]> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch {
    throw new Error(`${path}: no such folder or file (of run results)`);
  }
  const files: string[] = [];
  if (info.isDirectory) {
    for await (const e of Deno.readDir(path)) {
      if (e.isFile && e.name.endsWith(".json") && !opts.except?.has(e.name)) {
        files.push(join(path, e.name));
      }
    }
    files.sort();
  } else files.push(path);
  const out: RunResult[] = [];
  for (const file of files) {
    const add = (r: RunResult, source: string) => {
      SOURCES.set(r, source);
      out.push(r);
    };
    try {
      const raw = parseJsonFile(await Deno.readTextFile(file), file);
      if (Array.isArray(raw)) {
        raw.forEach((r, i) => {
          const source = `${file}[${i}]`;
          add(checkRecordedScores(validateRunResult(r, { file: source }), source), source);
        });
      } else add(checkRecordedScores(validateRunResult(raw, { file }), file), file);
    } catch (e) {
      // What to do: a folder's every *.json is taken for a result; a file was named as one.
      throw new Error(
        `${(e as Error).message}; ${
          info.isDirectory
            ? `every *.json directly in ${path} is read as a run result: fix this one or move ` +
              "it out of the folder"
            : "expected a run result (or an array of them) as bench writes, or a folder of them"
        }`,
        { cause: e },
      );
    }
  }
  return out;
}

/**
 * The tolerance of a metric: `metrics["task/metric"]`, else `metrics["metric"]`, else `default`.
 *
 * @param tol tolerances
 * @param task task name (or `average`)
 * @param metric metric name (or the benchmark for averages)
 * @returns absolute tolerance on the 0-100 scale
 */
export function toleranceFor(tol: Tolerances, task: string, metric: string): number {
  return tol.metrics[`${task}/${metric}`] ?? tol.metrics[metric] ?? tol.default;
}

/** Options of {@link compareResults}. */
export interface CompareOptions {
  /** A shard: baseline runs absent from `current` are not failures. */
  readonly partial?: boolean;
}

function round(n: number): number {
  return Math.round(n * 1e4) / 1e4;
}

/** `x` to `p` significant digits, as a number. */
function toDigits(x: number, p: number): number {
  return Number(x.toPrecision(p));
}

/**
 * Two scores as a gate line shows them: each to 4 decimals ({@link round}), or, where that shows
 * two different values alike (`79.9` and `79.9` for a difference of 3e-6), both to the fewest
 * significant digits from there on (as {@link formatDifference} adds digits to a difference) at
 * which they differ: `79.900003` and `79.9`. Equal values, and NaN or infinite ones, are rounded.
 *
 * @param b the baseline's value
 * @param c the current value
 * @returns the two values to show
 */
export function shownScores(b: number, c: number): [number, number] {
  const pair: [number, number] = [round(b), round(c)];
  if (pair[0] !== pair[1] || b === c || !Number.isFinite(b) || !Number.isFinite(c)) return pair;
  // The digits of 4 decimals, then more: fewer could split them at a coarser rounding boundary
  // (74.99999 and 75.00001 as 70 and 80).
  const whole = Math.floor(Math.log10(Math.max(Math.abs(b), Math.abs(c)) || 1)) + 1;
  for (let p = Math.max(1, whole + 4); p <= 17; p++) {
    const [x, y] = [toDigits(b, p), toDigits(c, p)];
    if (x !== y) return [x, y];
  }
  return [b, c];
}

/**
 * A failing difference and its tolerance as {@link formatComparison} prints them: an integer
 * exactly, anything else to 3 significant digits (`5.42e-7`, `-1.5`; the integer part never
 * rounded away; below 1e-3 in exponent form), or more where 3 would show the difference as 0 or as no larger than the
 * tolerance (`1.00003` against `1`). Only differences beyond their tolerance are given here, so
 * at 17 digits (exact) both are told apart.
 *
 * @param diff `current − baseline`
 * @param tolerance the allowed absolute difference, if any
 * @returns the two, as text
 */
export function formatDifference(
  diff: number,
  tolerance?: number,
): { diff: string; tolerance?: string } {
  if (!Number.isFinite(diff)) {
    return {
      diff: String(diff),
      ...(tolerance === undefined ? {} : { tolerance: exponentText(toDigits(tolerance, 3)) }),
    };
  }
  const text = exponentText;
  const whole = Math.floor(Math.log10(Math.abs(diff) || 1)) + 1;
  for (let p = Math.max(3, whole);; p++) {
    const d = Number.isInteger(diff) ? diff : toDigits(diff, p);
    const t = tolerance === undefined ? undefined : toDigits(tolerance, p);
    if (p >= 17 || (d !== 0 && (t === undefined || Math.abs(d) > t))) {
      return { diff: text(d), ...(t === undefined ? {} : { tolerance: text(t) }) };
    }
  }
}

/** A number as a gate line shows it: below 1e-3 in exponent form (`5.42e-7`, not `0.000000542`). */
function exponentText(x: number): string {
  return x !== 0 && Math.abs(x) < 1e-3 ? x.toExponential() : String(x);
}

/** Whether two scores differ by more than `t`; NaN (an undefined metric) equals only NaN. */
function beyond(a: number, b: number, t: number): boolean {
  if (Number.isNaN(a) || Number.isNaN(b)) return Number.isNaN(a) !== Number.isNaN(b);
  return Math.abs(a - b) > t;
}

/** The last segment of a backbone path (the machine-independent part). */
function backboneKey(source: string): string {
  return source.split(/[\\/]/).filter((x) => x !== "").at(-1) ?? source;
}

/**
 * How the gate tells two runs' tokenizers apart. When both results recorded the digest of their
 * `task-spm:`/`fixture:` file (`provenance.tokenizerFile`), the kind and the sha256: the file may
 * sit at another path on another machine, and a vocabulary retrained in place keeps its path.
 * Otherwise (a baseline written before digests were recorded, a backbone's own tokenizer) the
 * `tokenizer` strings, a file's by its kind and file name alone: its folder is a cache path of
 * one machine and one version of the cache key (h379: an older baseline failed on the folder's
 * name with bit-identical losses); another vocabulary there gives other losses, which the loss
 * check fails.
 */
function tokenizerKeys(b: RunResult, c: RunResult): [string, string] {
  // A result written before the field existed records none.
  const name = (r: RunResult) => r.tokenizer ?? "(not recorded: an older result)";
  const bf = (b.provenance as RunProvenance).tokenizerFile;
  const cf = (c.provenance as RunProvenance).tokenizerFile;
  if (bf === undefined || cf === undefined) {
    const loose = (r: RunResult) => {
      const n = name(r);
      const colon = n.indexOf(":");
      return colon < 0 ? n : `${n.slice(0, colon + 1)}${basename(n.slice(colon + 1))}`;
    };
    // Shown whole where they differ.
    return loose(b) === loose(c) ? [loose(b), loose(c)] : [name(b), name(c)];
  }
  const kind = (r: RunResult) => name(r).slice(0, name(r).indexOf(":") + 1);
  if (kind(b) === kind(c) && bf.sha256 === cf.sha256) return [kind(b), kind(c)];
  const shown = (r: RunResult, sha256: string) => `${name(r)} (sha256 ${sha256.slice(0, 12)})`;
  return [shown(b, bf.sha256), shown(c, cf.sha256)];
}

/**
 * The reproduction checks of {@link compareResults} under a loss tolerance: the same inputs
 * (tokenizer, backbone), the same training steps, and each step's loss within `rel` relative.
 * Only the first step beyond tolerance is reported (later steps follow from it).
 */
function gateLosses(
  b: RunResult,
  c: RunResult,
  rel: number,
  fail: (
    field: string,
    bv: number | string,
    cv: number | string,
    tolerance?: number,
    diff?: number,
    relative?: number,
    detail?: string,
  ) => void,
  differs: (field: string, bv: string, cv: string, detail: string) => void,
): void {
  // Other inputs: the losses cannot match, which says nothing about the code; say what to do.
  const advice = (what: string) =>
    `another ${what} gives other losses: if that is intended, ${REGENERATE_BASELINE}`;
  const [bt, ct] = tokenizerKeys(b, c);
  if (bt !== ct) differs("tokenizer", bt, ct, advice("tokenizer"));
  const bk = backboneKey(b.backboneSource);
  const ck = backboneKey(c.backboneSource);
  if (bk !== ck) differs("backbone", bk, ck, advice("backbone"));
  if (b.losses.length !== c.losses.length) {
    fail("losses.steps", `${b.losses.length} steps`, `${c.losses.length} steps`);
    return;
  }
  const at = b.losses.findIndex((l, i) => l.step !== c.losses[i]!.step);
  if (at >= 0) {
    // The same count: name the first entry whose step differs.
    const steps = (r: RunResult) => `entry ${at} is step ${r.losses[at]!.step}`;
    fail("losses.steps", steps(b), steps(c));
    return;
  }
  for (const [i, bl] of b.losses.entries()) {
    const cl = c.losses[i]!.loss;
    if (beyond(cl, bl.loss, rel * Math.abs(bl.loss))) {
      const tol = rel * Math.abs(bl.loss);
      fail(`losses[step ${bl.step}]`, bl.loss, cl, tol, undefined, rel, otherSetup(b, c));
      return;
    }
  }
}

/**
 * The exact evaluation checks of {@link compareResults} under `tolerances.predictions`: every
 * baseline evaluation (step and task) present, with the same predictions (their sha256) and the
 * same invalid count, and no evaluation the baseline lacks. Each missing or extra evaluation and
 * each other invalid count is a failure; other predictions are one failure per run, at its first
 * such evaluation, naming up to three others: an evaluation-only change (decoding,
 * postprocessing, the evaluated examples) shows in every evaluation of the tasks it touches, also
 * where every score is 0.
 */
function gateEvaluations(
  b: RunResult,
  c: RunResult,
  fail: (field: string, bv: number | string, cv: number | string) => void,
  differs: (field: string, bv: string, cv: string, detail: string) => void,
  unbased: (field: string, cv: string) => void,
  note: (text: string) => void,
): void {
  const key = (e: TaskEval) => `evals[step ${e.step}].${e.task}`;
  // Evaluations neither result has a digest of (both written before they were recorded).
  let undigested = 0;
  const cur = new Map(c.evals.map((e) => [key(e), e]));
  const shown = (i: TaskEval["invalid"]) => i === undefined ? "none" : `${i.count}/${i.of}`;
  // Other predictions are reported for the run's first such evaluation, with the count of the
  // others (a training change alters every one; a line each would bury the loss failure).
  const otherPredictions: [string, string, string][] = [];
  for (const be of b.evals) {
    const k = key(be);
    const ce = cur.get(k);
    cur.delete(k);
    if (ce === undefined) {
      fail(k, "present", "missing");
      continue;
    }
    if (be.predictionsSha256 === undefined) {
      if (ce.predictionsSha256 !== undefined) {
        unbased(`${k}.predictionsSha256`, ce.predictionsSha256.slice(0, 12));
      } else undigested++;
    } else if (ce.predictionsSha256 !== be.predictionsSha256) {
      otherPredictions.push([
        `${k}.predictionsSha256`,
        be.predictionsSha256.slice(0, 12),
        ce.predictionsSha256?.slice(0, 12) ?? "missing",
      ]);
    }
    if (shown(be.invalid) !== shown(ce.invalid)) {
      fail(`${k}.invalid`, shown(be.invalid), shown(ce.invalid));
    }
  }
  for (const k of cur.keys()) fail(k, "missing", "present");
  if (undigested > 0) {
    note(
      `${undigested} ${undigested === 1 ? "evaluation" : "evaluations"} without a predictions ` +
        "digest in either result (both written before it was recorded): predictions not compared",
    );
  }
  const [first, ...rest] = otherPredictions;
  if (first !== undefined) {
    differs(
      ...first,
      "other predictions, whatever the scores" +
        (rest.length === 0
          ? ""
          : ` (and at ${rest.length} more ${
            rest.length === 1 ? "evaluation" : "evaluations"
          } of this run: ${
            rest.slice(0, 3).map(([f]) => f.slice(0, f.lastIndexOf("."))).join(", ")
          }${rest.length > 3 ? ", …" : ""})`) +
        ": where the losses match, decoding, postprocessing or the evaluated examples changed",
    );
  }
}

/**
 * Why two runs' losses may differ whatever the code: they ran on other backends, or on one
 * backend other than tfjs's plain-JavaScript `cpu` on other devices (BLAS and GPU kernels sum in
 * another order per machine); `undefined` when neither. A profile whose backend is `auto` picks
 * per machine, and the gate's failure would otherwise not say it.
 */
function otherSetup(b: RunResult, c: RunResult): string | undefined {
  const setup = (r: RunResult) => {
    const p = r.provenance as RunProvenance;
    return { name: p.backend.name, device: p.device, requested: p.backend.requested };
  };
  const x = setup(b), y = setup(c);
  if (x.name === y.name && (x.name === "cpu" || x.device === y.device)) return undefined;
  return `the baseline ran on ${x.name} (${x.device}), this run on ${y.name} (${y.device}); ` +
    "other kernels round otherwise, so losses differ beyond the loss tolerance whatever the " +
    `code: rerun with --backend ${x.name}${
      x.name === y.name ? " on the baseline's device" : ""
    } (this run's backend was ${JSON.stringify(y.requested)}), or ${REGENERATE_BASELINE}`;
}

/**
 * Compare current results with a baseline.
 *
 * Fails on: a baseline run missing from `current` (unless `partial`); with `partial`, current
 * runs none of which has a baseline run (nothing would be compared); a different spec id (the
 * resolved configuration changed: update the baseline), or a baseline spec that no longer hashes
 * to its id (edited); a task, metric or benchmark average missing from either run; a best
 * metric or benchmark average beyond tolerance; any change of `params.total`, `params.extra`,
 * `params.trained`, `flops.trainPerExample`, `flops.inferencePerExample`. With `tol.loss`, also
 * on a different list of training steps, the first step whose loss moved by more than
 * `tol.loss` relative, another tokenizer (by sha256 when both results recorded one, else by
 * `tokenizer`'s kind and file name), or another backbone (the last path segment of
 * `backboneSource`: the cache key of an offline backbone, or a hub snapshot). With
 * `tol.predictions`, also on every evaluation missing from either run, with other predictions
 * (`predictionsSha256`; one failure per run) or another invalid count.
 *
 * @param current results of this run
 * @param baseline the baseline results
 * @param tol score tolerances (profile `tolerances`)
 * @param opts partial comparison for shards
 * @returns the comparison
 * @throws Error naming both files when `baseline` (or `current`) holds two results for one run
 *   key (e.g. a stale result of an older configuration beside the new one): which one is the
 *   baseline would otherwise depend on the file order
 */
export function compareResults(
  current: readonly RunResult[],
  baseline: readonly RunResult[],
  tol: Tolerances,
  opts: CompareOptions = {},
): Comparison {
  const failures: GateDiff[] = [];
  const notes: string[] = [];
  for (const [rs, which] of [[baseline, "baseline"], [current, "current"]] as const) {
    rejectDuplicates(
      rs,
      runKey,
      `${which} run key`,
      "remove the stale one (the run id changes with the configuration)",
    );
  }
  const cur = new Map(current.map((r) => [runKey(r), r]));
  const base = new Map(baseline.map((r) => [runKey(r), r]));
  let compared = 0;
  for (const [key, b] of [...base].sort(([x], [y]) => (x < y ? -1 : 1))) {
    const c = cur.get(key);
    // `diff`: given for rounded scores (their unrounded difference), else current − baseline.
    const fail = (
      field: string,
      bv: number | string,
      cv: number | string,
      tolerance?: number,
      diff = typeof bv === "number" && typeof cv === "number" ? cv - bv : undefined,
      relative?: number,
      detail?: string,
    ) =>
      failures.push({
        run: key,
        field,
        baseline: bv,
        current: cv,
        ...(tolerance === undefined ? {} : { tolerance }),
        ...(relative === undefined ? {} : { relativeTolerance: relative }),
        ...(diff === undefined ? {} : { diff }),
        ...(detail === undefined ? {} : { detail }),
      });
    if (c === undefined) {
      if (!opts.partial) fail("run", "present", "missing");
      continue;
    }
    // A failure that says what to do (`detail`) rather than how far a value moved.
    const failWhy = (field: string, bv: number | string, cv: number | string, detail: string) =>
      failures.push({ run: key, field, baseline: bv, current: cv, detail });
    // What only the current run has: the baseline cannot gate it, so it fails rather than pass.
    const unbased = (field: string, cv: number | string) =>
      failWhy(
        field,
        "missing",
        cv,
        `the baseline run lacks it (made by an older version, or edited): ${REGENERATE_BASELINE}`,
      );
    compared++;
    const hashed = runId(b.spec);
    if (hashed !== b.spec.id) {
      // Its id still matches, so its edited configuration would otherwise pass unnoticed.
      failWhy(
        "spec.id",
        `${b.spec.id} (its spec hashes to ${hashed})`,
        c.spec.id,
        "the baseline result's spec was edited after the run wrote it (or another version " +
          `wrote it): ${REGENERATE_BASELINE}`,
      );
    } else if (c.spec.id !== b.spec.id) {
      failWhy("spec.id", b.spec.id, c.spec.id, specIdDetail(specDifferences(b.spec, c.spec)));
    }
    for (const [task, bb] of Object.entries(b.best)) {
      const cb = c.best[task];
      if (cb === undefined) {
        fail(`best.${task}`, "present", "missing");
        continue;
      }
      for (const [metric, bv] of Object.entries(bb.metrics)) {
        const cv = cb.metrics[metric];
        const t = toleranceFor(tol, task, metric);
        if (cv === undefined) fail(`best.${task}.${metric}`, round(bv), "missing", t);
        else if (beyond(cv, bv, t)) {
          fail(`best.${task}.${metric}`, ...shownScores(bv, cv), t, cv - bv);
        } else if (cv !== bv && !Number.isNaN(cv)) {
          const [x, y] = shownScores(bv, cv);
          notes.push(`${key}: best.${task}.${metric} ${x} -> ${y} (within ${t})`);
        }
      }
      // A metric only the current run has would pass ungated: the baseline predates it (or was
      // edited), so it is regenerated rather than trusted.
      for (const [metric, cv] of Object.entries(cb.metrics)) {
        if (!Object.hasOwn(bb.metrics, metric)) unbased(`best.${task}.${metric}`, round(cv));
      }
    }
    // Likewise a task: with equal run ids (else spec.id failed above) the tasks are the same.
    for (const [task, cb] of Object.entries(c.best)) {
      if (!Object.hasOwn(b.best, task)) {
        unbased(`best.${task}`, `present (${Object.keys(cb.metrics).join(", ")})`);
      }
    }
    // One task's run of a per-task method: its "average" is that task's score, already gated;
    // the benchmark average is gated once its task runs are merged, below.
    for (const bench of isPerTaskRun(b) ? [] : ["glue", "super_glue"] as const) {
      const bv = b.averages[bench];
      const cv = c.averages[bench];
      const t = toleranceFor(tol, "average", bench);
      if (bv === undefined) {
        if (cv !== undefined) unbased(`averages.${bench}`, round(cv));
        continue;
      }
      if (cv === undefined) fail(`averages.${bench}`, round(bv), "missing", t);
      else if (beyond(cv, bv, t)) {
        fail(`averages.${bench}`, ...shownScores(bv, cv), t, cv - bv);
      } else if (cv !== bv && !Number.isNaN(cv)) {
        // Noted as a score that moved within its tolerance is.
        const [x, y] = shownScores(bv, cv);
        notes.push(`${key}: averages.${bench} ${x} -> ${y} (within ${t})`);
      }
    }
    if (tol.loss !== undefined) gateLosses(b, c, tol.loss, fail, failWhy);
    if (tol.predictions === true) {
      gateEvaluations(b, c, fail, failWhy, unbased, (text) => notes.push(`${key}: ${text}`));
    }
    for (const k of ["total", "extra", "trained"] as const) {
      if (c.params[k] !== b.params[k]) fail(`params.${k}`, b.params[k], c.params[k]);
    }
    for (const k of ["trainPerExample", "inferencePerExample"] as const) {
      if (c.flops[k] !== b.flops[k]) fail(`flops.${k}`, b.flops[k], c.flops[k]);
    }
  }
  compareMergedAverages(current, baseline, tol, opts, failures, notes);
  const ungated = [...cur.keys()].filter((key) => !base.has(key));
  for (const key of ungated) notes.push(`${key}: no baseline run (not gated)`);
  if (opts.partial && compared === 0 && cur.size > 0) {
    // A shard's runs absent from the baseline are only notes; when none of them has a baseline
    // run (another profile's baseline, say), the gate would pass without comparing anything.
    // (Without `partial`, every baseline run is already missing.)
    failures.push({
      run: "(all runs)",
      field: "runs compared",
      baseline: `${base.size} runs`,
      current: `none of ${cur.size} runs has a baseline run (is it this profile's baseline?)`,
    });
  }
  return { ok: failures.length === 0, failures, notes, compared, ungated };
}

/**
 * The benchmark averages of per-task methods: each baseline seed's task runs merged
 * (`per_task.ts`) against the current ones. A current seed with a task run missing has no
 * average: a failure naming the missing tasks (each missing run has failed as `run` already),
 * or with `partial` (a shard) a note.
 */
function compareMergedAverages(
  current: readonly RunResult[],
  baseline: readonly RunResult[],
  tol: Tolerances,
  opts: CompareOptions,
  failures: GateDiff[],
  notes: string[],
): void {
  const merged = (rs: readonly RunResult[]) =>
    new Map(
      mergePerTaskRuns(rs.filter(isPerTaskRun), describeResult).map((r) => [runKey(r), r]),
    );
  const cur = merged(current);
  for (const [key, b] of [...merged(baseline)].sort(([x], [y]) => (x < y ? -1 : 1))) {
    const bench = b.spec.benchmark;
    const bv = b.averages[bench];
    const c = cur.get(key);
    if (c === undefined) continue; // every task run is missing: failed (or a shard's note) above
    const t = toleranceFor(tol, "average", bench);
    const field = `averages.${bench} (per-task runs merged)`;
    if (bv === undefined) {
      // The baseline itself lacks a task run: its task runs are gated one by one, the average
      // cannot be; say so rather than pass it silently.
      notes.push(
        `${key}: ${field} not gated: the baseline has no run of ${missingTaskRuns(b).join(", ")}`,
      );
      continue;
    }
    const missing = missingTaskRuns(c);
    const cv = c.averages[bench];
    if (missing.length > 0 || cv === undefined) {
      const why = `missing (no run of ${missing.join(", ")})`;
      if (opts.partial) notes.push(`${key}: ${field} not compared: ${why}`);
      else failures.push({ run: key, field, baseline: round(bv), current: why, tolerance: t });
    } else if (beyond(cv, bv, t)) {
      const [x, y] = shownScores(bv, cv);
      failures.push({ run: key, field, baseline: x, current: y, tolerance: t, diff: cv - bv });
    } else if (cv !== bv && !Number.isNaN(cv)) {
      const [x, y] = shownScores(bv, cv);
      notes.push(`${key}: ${field} ${x} -> ${y} (within ${t})`);
    }
  }
}

/**
 * A readable report: one line per failure with baseline, current, difference and tolerance (the
 * difference of the unrounded values, never shown as 0 or within the tolerance when it fails:
 * {@link formatDifference}; two scores that differ are never shown alike: {@link shownScores}).
 *
 * @param c the comparison
 * @returns multi-line text
 */
export function formatComparison(c: Comparison): string {
  const lines = [
    `Regression gate: ${c.ok ? "PASS" : "FAIL"} (${c.compared} ${
      c.compared === 1 ? "run" : "runs"
    } compared, ${
      // In the headline: a pass that left runs ungated is not a pass of the whole grid.
      c.ungated.length === 0
        ? ""
        : `${c.ungated.length} ${c.ungated.length === 1 ? "run" : "runs"} not gated (no baseline ` +
          "run), "}${c.failures.length} ${c.failures.length === 1 ? "failure" : "failures"})`,
  ];
  for (const f of c.failures) {
    const d = f.diff ??
      (typeof f.baseline === "number" && typeof f.current === "number"
        ? f.current - f.baseline
        : undefined);
    const shown = d === undefined ? undefined : formatDifference(d, f.tolerance);
    const diff = shown === undefined
      ? ""
      : ` (diff ${shown.diff}${
        shown.tolerance === undefined
          ? ", must be equal"
          : f.relativeTolerance === undefined
          ? `, tolerance ${shown.tolerance}`
          : `, tolerance ${exponentText(f.relativeTolerance)} relative (${shown.tolerance})`
      })`;
    lines.push(`  FAIL ${f.run}: ${f.field}: baseline ${f.baseline}, current ${f.current}${diff}`);
    if (f.detail !== undefined) lines.push(`    ${f.detail}`);
  }
  for (const n of c.notes) lines.push(`  note ${n}`);
  return lines.join("\n");
}
