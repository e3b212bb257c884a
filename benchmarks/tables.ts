/**
 * CSV tables (and SVG plots) derived from run JSONs: `deno task tables --runs DIR --out DIR`.
 * Every file is rebuilt from the run results; results of any shards merge because rows are
 * grouped and sorted by content, never by file or arrival order.
 *
 * Tables:
 * Runs are averaged over seeds only within one configuration: one profile, model, method label
 * and backbone (`random`, `pretrained`, or an `hf` reference, each model and backbone told apart
 * by its whole reference, `compare.ts` `refKey`), and one resolved run spec apart from the seed
 * ({@link configId}; the `config` column). The `model` and `backbone` columns give a preset's
 * name, or an `hf` reference's folder name, and where two references of one table share that
 * name, enough of their paths to tell them apart (`a/t5-base`, `b/t5-base`: `labels.ts`
 * `distinctLabels`). Seeds are averaged only within one setup too: runs of one configuration
 * that ran on different backends or devices (backend `auto` picks per machine) are a row each,
 * which the `backend` and `device` columns tell apart (`params.csv`, whose counts do not depend
 * on the machine, and `attention_mass.csv`, which has no such columns, keep a row per
 * configuration). A row shows a method's GLUE and SuperGLUE configurations side by side when
 * their runs ran on the same backends and devices; else each benchmark gets its own row, so that
 * a row's provenance describes all of its numbers. When
 * a folder holds results of several configurations of one benchmark (e.g. stale results of an
 * edited profile), each gets its own row instead of being pooled. Two results of one run (same
 * run id, or same configuration and seed) are an error naming both files. The `backbone` column
 * puts a method's pretrained and random rows side by side.
 *
 * - `scores.csv`: best group score per task (mean over seeds; GLUE then SuperGLUE, each in the
 *   benchmark's task order), the number of runs averaged,
 *   GLUE/SuperGLUE averages (mean, std) with the number of the benchmark's tasks they average,
 *   per benchmark the parameter overhead in the paper's three columns (`glue_params_ratio`,
 *   `glue_extra_pct`, `glue_trained_per_task_pct`, likewise `super_glue_…`; `params.csv`'s
 *   values), and the paper's averages from `results/paper/main_table.csv` with their source and
 *   `paper_row`, the paper row they are from (same table, model, label and method,
 *   {@link paperMatch}; a `paper-…` profile's from the main results, an `ablation…` profile's
 *   from the ablation) or why there is none. `glue_avg` /
 *   `super_glue_avg` are the paper's average over all 8 tasks and are filled only when every one
 *   of them was run; a run on a task subset puts its plain mean in `glue_partial_avg` /
 *   `super_glue_partial_avg` instead, and its paper columns stay blank; `glue_best_step_avg` /
 *   `super_glue_best_step_avg` (after each benchmark's partial columns) give T5's own printed
 *   average beside the spec's (`t5/scripts/parse_tb.py`: the highest single-step average over
 *   the evaluation steps; `evaluator.ts` `bestStepAverage`), mean over seeds, only where the
 *   full average is and never for a per-task method; `missing_runs` names the
 *   absent task runs of a per-task method (`per_task.ts`: its task runs are merged into one row
 *   first), whose averages then stay blank; each row ends with the provenance of the runs it
 *   averages (seed values, git commits with a `+dirty` mark, backends, devices, Deno and tfjs
 *   versions);
 * - `params.csv`: total, extra, extra %, ratio, trained, trained per task % for every method at
 *   every published size (analytic, 8 tasks, default configs) and for every run group, with the
 *   paper's figures of the row matched as `scores.csv`'s are, shown only beside a configuration
 *   that counts the paper row's (the default's) parameters ({@link paramsPaperMatch}; `paper_row`
 *   names the row or says why none);
 * - `flops.csv`: FLOPs per example (train / inference), measured tokens/s (the seeds' total
 *   tokens over their total training seconds, a per-task method's seed counting its task runs'
 *   totals, or the mean of the rates for results written without those totals, `per_task.ts`
 *   `mergedThroughput`; `tokens_per_second_from` says which; blank, as the wall time, for a
 *   per-task seed whose task runs ran on several backends or devices) and both FLOP counts
 *   relative to MTL's;
 * - `ablation.csv`: the ablation profiles' rows with parameters relative to the MTL runs of the
 *   same configuration per benchmark (`<benchmark>_mtl_reference` names them, or says that none
 *   matched), the paper's figure from its ablation table's row of the row's model, label and
 *   method (`paper_row` names it or says why none), the averages as in `scores.csv` (the
 *   best-step ones included, from the same cells), and the same provenance columns;
 * - `attention_mass.csv`: attention mass on hyper-prompts per layer (mean over seeds).
 *
 * @module
 */
import { join } from "node:path";
import { stringify } from "csv-stringify/sync";
import { parse } from "csv-parse/sync";
import { PRESETS, PUBLISHED_PRESETS, type T5Config } from "../model/config.ts";
import { countT5Params } from "../model/accounting.ts";
import { repoPath } from "../model/shared_dir.ts";
import { methodAccounting } from "../model/methods/accounting.ts";
import { getMethod } from "../model/methods/mod.ts";
import {
  describeResult,
  loadResults,
  noResultsMessage,
  refKey,
  refuseFileReadTwice,
  rejectDuplicates,
} from "./compare.ts";
import { mergedThroughput, mergePerTaskRuns, missingTaskRuns, perTaskParts } from "./per_task.ts";
import { BENCHMARK_TASKS } from "../tasks/registry.ts";
import { benchmarkAverage } from "../tasks/metrics.ts";
import { bestStepAverage } from "./evaluator.ts";
import { attentionMassSvg, scoreVsParamsSvg } from "./plots.ts";
import { setupOfRuns, setupPairs } from "./setups.ts";
import { compareLabels, type RunLabels, runLabels } from "./labels.ts";
import {
  type BenchmarkName,
  BENCHMARKS,
  canonicalJson,
  conditionedTasks,
  configId,
  METHOD_NAMES,
  modelLabel,
  runId,
  type RunResult,
  type RunSpec,
} from "./spec.ts";
import { checkOutputFolder, isDirectory, pathExists, writeFilesAtomic } from "../model/fs.ts";
import { ignoreFileSizeSignal } from "../model/file_size_signal.ts";
import type { RunProvenance } from "./provenance.ts";
import { parseFlags, refuseRepeatedFolders, runCli, UsageError } from "../model/usage.ts";

/** A table: header row then data rows. */
export type Table = (string | number)[][];

/**
 * The tables of `results/paper/main_table.csv`'s `table` column: which table of the paper (or of
 * another source) a row is from. The paper keys a row by its table, model size and row label;
 * one label can be in two tables (the main results and the ablation both have MTL and
 * HyperFormer++ at Base), so a row's identity is (table, model, method).
 */
export const PAPER_TABLES: Readonly<Record<string, string>> = {
  main: "the paper's main results (§4.2)",
  ablation: "the paper's ablation (§4.5)",
  frozen: "the paper's tuning-all vs task-conditioned-only comparison (§4.3)",
  abstract: "the paper's abstract",
  other_paper: "another paper",
};

/** One row of `results/paper/main_table.csv`. */
export interface PaperRow {
  /** Which table the row is from: a key of {@link PAPER_TABLES} (e.g. `main`, `ablation`). */
  readonly table: string;
  /** A `model/config.ts` preset (e.g. `t5-v1_1-base`), or blank when the paper does not say. */
  readonly model: string;
  /** The paper's row label (e.g. `HyperFormer++`); never blank. */
  readonly method: string;
  /** The project's method (one of `METHOD_NAMES`, e.g. `hyperformer_pp`) the row stands for. */
  readonly method_name: string;
  /** The paper's GLUE average over all 8 tasks, 0-100 scale (may be negative); blank: unknown. */
  readonly glue_avg: string;
  /** The paper's SuperGLUE average over all 8 tasks, 0-100 scale; blank: unknown. */
  readonly super_glue_avg: string;
  /** Total parameters over the backbone's (at least 1); blank: unknown. */
  readonly params_ratio: string;
  /** 100 · extra parameters / backbone parameters, 0-100; blank: unknown. */
  readonly extra_pct: string;
  /** 100 · trained parameters / tasks / backbone parameters, 0-100; blank: unknown. */
  readonly trained_per_task_pct: string;
  /**
   * What the paper's setting trained of the backbone, which `trained_per_task_pct` depends on:
   * `false` (all of it), `all` (frozen), `except_layer_norms`, or blank (not stated; required
   * when `trained_per_task_pct` is given). The tables show that value only beside a row of the
   * same setting.
   */
  readonly freeze_backbone: string;
  /** Where the row's values come from (paper, page, table), or why they are missing. */
  readonly source: string;
}

/** Default location of the paper's reference values. */
export const PAPER_TABLE: string = repoPath("results", "paper", "main_table.csv");

/** The columns of the paper table, in file order. */
export const PAPER_COLUMNS: readonly (keyof PaperRow)[] = [
  "table",
  "model",
  "method",
  "method_name",
  "glue_avg",
  "super_glue_avg",
  "params_ratio",
  "extra_pct",
  "trained_per_task_pct",
  "freeze_backbone",
  "source",
];

/** Values of the paper table's `freeze_backbone` column (blank: not stated). */
const PAPER_FREEZE = ["", "false", "all", "except_layer_norms"];

/** Numeric columns of the paper table: blank (unknown) or a number in the given range. */
const PAPER_NUMBERS: Readonly<Partial<Record<keyof PaperRow, readonly [number, number]>>> = {
  glue_avg: [-100, 100], // CoLA's MCC may be negative; averages are on the 0-100 scale
  super_glue_avg: [-100, 100],
  params_ratio: [1, Infinity], // total over the backbone's
  extra_pct: [0, 100],
  trained_per_task_pct: [0, 100],
};

/**
 * Read the paper's reference values (every value carries its source; blanks are unknown).
 * Every row is checked: exactly the columns of {@link PAPER_COLUMNS}, a known `table`
 * ({@link PAPER_TABLES}), a known method (`method_name`), a known preset or blank `model`, a
 * label, a source, numbers (or blanks) in range, and no (table, model, method) twice (the tables
 * would use whichever comes first).
 *
 * @param path CSV file (default {@link PAPER_TABLE})
 * @returns the rows
 * @throws Error naming the file, line and column of the first bad value
 */
export function readPaperTable(path: string = PAPER_TABLE): PaperRow[] {
  const text = Deno.readTextFileSync(path);
  let records: { record: string[]; info: { lines: number } }[];
  try {
    records = parse(text, { info: true, skip_empty_lines: true, bom: true }) as unknown as {
      record: string[];
      info: { lines: number };
    }[];
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message}`, { cause: e });
  }
  const [head, ...body] = records;
  const lineOf = (r: { record: string[]; info: { lines: number } }) =>
    r.info.lines - r.record.reduce((n, f) => n + f.split("\n").length - 1, 0);
  const cols = head?.record ?? [];
  const missing = PAPER_COLUMNS.filter((c) => !cols.includes(c));
  const unknown = cols.filter((c) => !(PAPER_COLUMNS as readonly string[]).includes(c));
  const twice = cols.filter((c, i) => cols.indexOf(c) !== i);
  if (missing.length > 0 || unknown.length > 0 || twice.length > 0) {
    const what = [
      missing.length ? `missing ${missing.join(", ")}` : "",
      unknown.length ? `unknown ${unknown.join(", ")}` : "",
      twice.length ? `repeated ${twice.join(", ")}` : "",
    ].filter((x) => x).join("; ");
    throw new Error(
      `${path}:1: header columns: ${what}; expected ${PAPER_COLUMNS.join(",")}`,
    );
  }
  const out: PaperRow[] = [];
  const seen = new Map<string, number>();
  for (const r of body) {
    const line = lineOf(r);
    const at = (col: string, msg: string) => new Error(`${path}:${line}: column ${col}: ${msg}`);
    const row = Object.fromEntries(
      cols.map((c, i) => [c, r.record[i] ?? ""]),
    ) as unknown as PaperRow;
    if (!Object.hasOwn(PAPER_TABLES, row.table)) {
      throw at(
        "table",
        `"${row.table}" is not a table; known: ${Object.keys(PAPER_TABLES).join(", ")}`,
      );
    }
    if (!(METHOD_NAMES as readonly string[]).includes(row.method_name)) {
      throw at(
        "method_name",
        `"${row.method_name}" is not a method; known: ${METHOD_NAMES.join(", ")}`,
      );
    }
    if (row.model !== "" && !Object.hasOwn(PRESETS, row.model)) {
      throw at("model", `"${row.model}" is not a preset of model/config.ts (or blank: unknown)`);
    }
    if (row.method.trim() === "") throw at("method", "is blank; give the paper's row label");
    if (row.source.trim() === "") {
      throw at("source", "is blank; every reference value needs its provenance");
    }
    for (const [col, [lo, hi]] of Object.entries(PAPER_NUMBERS) as [string, [number, number]][]) {
      const v = row[col as keyof PaperRow];
      if (v === "") continue;
      const x = /^\s*$/.test(v) ? NaN : Number(v);
      if (!Number.isFinite(x) || x < lo || x > hi) {
        throw at(col, `must be blank or a number in [${lo}, ${hi}], got "${v}"`);
      }
    }
    if (!PAPER_FREEZE.includes(row.freeze_backbone)) {
      throw at(
        "freeze_backbone",
        `must be blank, false, all or except_layer_norms, got "${row.freeze_backbone}"`,
      );
    }
    if (row.trained_per_task_pct !== "" && row.freeze_backbone === "") {
      throw at(
        "freeze_backbone",
        "is blank beside a trained_per_task_pct; say what that setting trained of the backbone",
      );
    }
    const key = JSON.stringify([row.table, row.model, row.method]);
    const first = seen.get(key);
    if (first !== undefined) {
      throw at(
        "method",
        `table "${row.table}", model "${row.model}", method "${row.method}" ` +
          `is also on line ${first}`,
      );
    }
    seen.set(key, line);
    out.push(row);
  }
  return out;
}

/** Analytic accounting (`model/methods/accounting.ts` `methodAccounting`). */
export type AccountingFn = (
  config: T5Config,
  method: string,
  cfg: unknown,
  numTasks: number,
  shape?: { inputLength: number; targetLength: number },
) => {
  backbone: number;
  total: number;
  extra: number;
  extraPct: number;
  ratio: number;
  trained: number;
  trainedPerTaskPct: number;
  forwardFlops: number | null;
  trainFlops: number | null;
};

/**
 * The analytic accounting of `model/methods/accounting.ts`.
 *
 * @returns `methodAccounting`
 */
export function loadAccounting(): Promise<AccountingFn> {
  return Promise.resolve(methodAccounting);
}

/**
 * `x` rounded to `digits` decimals, halves away from zero for both signs (Math.round alone takes
 * -0.125 to -0.12 but 0.125 to 0.13, so a negative MCC would round unlike its positive twin).
 *
 * @param x the value (NaN stays NaN)
 * @param digits decimals
 * @returns the rounded value
 */
export function roundHalfAway(x: number, digits: number): number {
  const f = 10 ** digits;
  return (Math.sign(x) * Math.round(Math.abs(x) * f)) / f;
}
const r4 = (x: number) => roundHalfAway(x, 4);
const r2 = (x: number) => roundHalfAway(x, 2);
const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
/** Sample standard deviation (n - 1); 0 for one value (tables leave it blank). */
function std(xs: readonly number[]): number {
  if (xs.length < 2) return 0;
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1));
}
/** The cells of a mean over seeds and its sample std: blank without values, std blank for one. */
const meanStdCells = (xs: readonly number[]): [number | "", number | ""] => [
  xs.length ? r2(mean(xs)) : "",
  xs.length > 1 ? r2(std(xs)) : "",
];
const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** The runs of one benchmark and configuration ({@link configId}), one per seed. */
interface Cell {
  readonly benchmark: BenchmarkName;
  /** {@link configId} of the runs. */
  readonly config: string;
  readonly runs: RunResult[];
}

/**
 * One row: a profile, model, method label and backbone, with at most one configuration per
 * benchmark.
 */
interface Group {
  readonly profile: string;
  /** The model's label, distinct among the table's models (`labels.ts` `runLabels`). */
  readonly model: string;
  /**
   * The model's short label (`modelLabel`: a preset's name, an `hf` folder's name), which the
   * paper's rows and the order by size go by: a folder named as a preset is that preset.
   */
  readonly modelName: string;
  /**
   * `random`, `pretrained` or the folder name of an `hf` backbone (with as much of its path as
   * tells it from another of one name).
   */
  readonly backbone: string;
  readonly label: string;
  readonly method: string;
  /**
   * The (backend, device) pairs every run of the row ran on (`setups.ts` {@link setupOfRuns}, a
   * per-task method's task runs each; more than one pair is a per-task method's seed whose task
   * runs ran on several), or "" in a table of {@link groupRuns} not split by setup.
   */
  readonly setup: string;
  /** At most one cell per benchmark, in {@link BENCHMARKS} order. */
  readonly cells: readonly Cell[];
  /** Every run of the cells. */
  readonly runs: readonly RunResult[];
}

/** The `config` cell of a row: `<benchmark>:<config id>` per cell. */
function configCell(g: Group): string {
  return g.cells.map((c) => `${c.benchmark}:${c.config}`).join(" ");
}

function cellOf(g: Group, b: string): Cell | undefined {
  return g.cells.find((c) => c.benchmark === b);
}

/**
 * Group runs into rows without pooling configurations or setups: one row per profile, model and
 * backbone reference (`refKey`), method label and name, setup (the backends and devices the runs
 * ran on, `setups.ts` {@link setupOfRuns}), and configuration per benchmark. So the seeds of one
 * configuration that ran on different backends or devices (backend `auto` picks per machine; the
 * config id records only the requested backend) are a row each, as are a method's GLUE and
 * SuperGLUE runs of different setups: one row, one setup, which its `backend` and `device` cells
 * name.
 *
 * @param raw the runs
 * @param options `labels`: the model and backbone labels (default: those of `raw`; a table of
 *   some of its results passes those of all, so each model reads alike in every table);
 *   `bySetup`: split by setup (default `true`); `false` for a table without backend and device
 *   columns whose rows would otherwise be indistinguishable (`params.csv`, `attention_mass.csv`)
 * @throws Error naming both files when two results are of the same run (same run id, or same
 *   configuration and seed)
 */
function groupRuns(
  raw: readonly RunResult[],
  options: { labels?: RunLabels; bySetup?: boolean } = {},
): Group[] {
  const { labels = runLabels(raw.map((r) => r.spec)), bySetup = true } = options;
  const advice = DUPLICATE_ADVICE;
  rejectDuplicates(raw, (r) => r.spec.id, "run id", advice);
  // A per-task method's task runs of one configuration and seed become one result.
  const results = mergePerTaskRuns(raw, describeResult);
  rejectDuplicates(
    results,
    (r) => `${configId(r.spec)} and seed ${r.spec.seed}`,
    "configuration",
    advice,
  );
  const rows = new Map<string, { spec: RunSpec; setup: string; cells: Map<string, Cell> }>();
  for (const r of results) {
    const s = r.spec;
    const setup = bySetup ? setupOfRuns([r]) : "";
    // Whole references: two folders of one name are two rows (their labels then tell them apart).
    const key = JSON.stringify([
      s.profile,
      refKey(s.model),
      s.method.label,
      refKey(s.backbone ?? "random"),
      s.method.name,
      // Seeds of other setups are other rows: never averaged together, and a row's provenance
      // cells describe every number in it (not the GLUE numbers' setup beside the SuperGLUE
      // ones', nor a CPU seed's beside a GPU seed's).
      setup,
    ]);
    let row = rows.get(key);
    if (row === undefined) rows.set(key, row = { spec: s, setup, cells: new Map() });
    const cells = row.cells;
    const config = configId(s);
    const ck = `${s.benchmark}/${config}`;
    let c = cells.get(ck);
    if (c === undefined) cells.set(ck, c = { benchmark: s.benchmark, config, runs: [] });
    c.runs.push(r);
  }
  const groups: Group[] = [];
  for (const { spec: s, setup, cells: cellMap } of rows.values()) {
    const bIndex = (b: BenchmarkName) => BENCHMARKS.indexOf(b);
    const cells = [...cellMap.values()].sort((a, b) =>
      bIndex(a.benchmark) - bIndex(b.benchmark) || cmp(a.config, b.config)
    );
    for (const c of cells) c.runs.sort((a, b) => a.spec.seed - b.spec.seed);
    const oneEach = new Set(cells.map((c) => c.benchmark)).size === cells.length;
    // Several configurations of one benchmark: a row each, never combined or pooled.
    for (const part of oneEach ? [cells] : cells.map((c) => [c])) {
      groups.push({
        profile: s.profile,
        model: labels.model(s),
        modelName: modelLabel(s.model),
        backbone: labels.backbone(s),
        label: s.method.label,
        method: s.method.name,
        setup,
        cells: part,
        runs: part.flatMap((c) => c.runs),
      });
    }
  }
  const order = (m: string) => METHOD_NAMES.indexOf(m as never);
  return groups.sort((a, b) =>
    cmp(a.profile, b.profile) || compareModels(a.modelName, b.modelName) ||
    cmp(a.model, b.model) ||
    order(a.method) - order(b.method) ||
    compareLabels(a.label, b.label) || cmp(a.backbone, b.backbone) ||
    cmp(configCell(a), configCell(b)) ||
    cmp(a.setup, b.setup)
  );
}

/**
 * Order of model labels in the tables: by size (the backbone's parameter count) when the label
 * is a preset of `model/config.ts` (an `hf` folder named as one, e.g. `google/t5-v1_1-base`, is
 * labelled with the preset's name), then by name; other labels after the presets, by name. So
 * T5 1.1 Small, Base, Large, XL, XXL (and T5 1.0 3B before 11B) read in the paper's order, not
 * alphabetically (`t5-v1_1-small` between Large and XL, `t5-11b` before `t5-3b`).
 *
 * @param a model label
 * @param b model label
 * @returns negative, zero or positive as `a` sorts before, with or after `b`
 */
export function compareModels(a: string, b: string): number {
  const size = (m: string) =>
    Object.hasOwn(PRESETS, m) ? countT5Params(PRESETS[m as keyof typeof PRESETS]) : Infinity;
  const [sa, sb] = [size(a), size(b)];
  return sa !== sb ? (sa < sb ? -1 : 1) : cmp(a, b);
}

/**
 * The seeds of a row's runs: `0,1,2`, or per benchmark (`glue:0,1 super_glue:0`) when its
 * benchmarks' seeds differ.
 */
function seedValuesCell(g: Group): string {
  const per = g.cells.map((c) => [c.benchmark, c.runs.map((r) => r.spec.seed).join(",")]);
  if (new Set(per.map(([, s]) => s)).size <= 1) return per[0]?.[1] ?? "";
  return per.map(([b, s]) => `${b}:${s}`).join(" ");
}

/**
 * The columns that start a row of a run group in `scores.csv`, `metrics.csv`, `ablation.csv` and
 * `attention_mass.csv`: profile, model, backbone, the method's label and its registry name.
 */
export const GROUP_COLUMNS: readonly string[] = [
  "profile",
  "model",
  "backbone",
  "method",
  "method_name",
];

/** A row's {@link GROUP_COLUMNS} cells. */
function groupCells(g: Group): string[] {
  return [g.profile, g.model, g.backbone, g.label, g.method];
}

/** The provenance columns that end the rows of `scores.csv` and `ablation.csv`. */
export const PROVENANCE_COLUMNS: readonly string[] = [
  "seed_values",
  "git_commit",
  "backend",
  "device",
  "software",
];

/**
 * A run's code in `git_commit`: its commit (`+dirty` for a tree with uncommitted changes), and
 * for a run resumed from a checkpoint that other code wrote (`provenance.resumedFrom.gitSha`,
 * present only then), that code first: `<checkpoint's>-><run's>`, since the steps before the
 * checkpoint ran it.
 */
function commitCell(r: RunResult): string {
  const code = (sha: string, dirty: boolean | undefined) => `${sha}${dirty ? "+dirty" : ""}`;
  const run = code(r.provenance.gitSha, r.provenance.gitDirty);
  const from = (r.provenance as RunProvenance).resumedFrom;
  return from?.gitSha === undefined ? run : `${code(from.gitSha, from.gitDirty)}->${run}`;
}

/**
 * The provenance cells of a row ({@link PROVENANCE_COLUMNS}), from every run it averages (a
 * per-task method's task runs each): `seed_values`, `git_commit` (each distinct commit, `+dirty`
 * when the tree had uncommitted changes; a run resumed from a checkpoint of other code as
 * `<checkpoint's>-><run's>`, {@link commitCell}), `backend`, `device` and `software` (Deno and tfjs
 * versions), distinct values sorted and joined, so a row pooled from runs of two commits says
 * so. Runs of two setups are not pooled ({@link groupRuns}), so `backend` and `device` have more
 * than one value only for a per-task method whose task runs of one seed ran on several.
 */
function provenanceCells(g: Group): string[] {
  const each = g.runs.flatMap((x) => perTaskParts(x) ?? [x]);
  const distinct = (f: (r: RunResult) => string) => [...new Set(each.map(f))].sort();
  return [
    seedValuesCell(g),
    distinct(commitCell).join(" "),
    distinct((r) => r.provenance.backend.name).join(" "),
    distinct((r) => r.provenance.device).join(" | "),
    distinct((r) => `deno ${r.provenance.deno} tfjs ${r.provenance.tfjs}`).join(" | "),
  ];
}

/** The paper tables whose rows hold GLUE and SuperGLUE averages of a method at a model size. */
const SCORE_TABLES: readonly string[] = ["main", "ablation", "frozen"];

/**
 * The paper tables a profile's rows are compared with: an `ablation…` profile reproduces the
 * ablation (§4.5) and the frozen-backbone comparison (§4.3), a `paper-…` profile the main results
 * (§4.2); another profile (a user's own) is compared with all three: where two have its row, the
 * one with figures, or either when their figures agree ({@link amongMatches}).
 *
 * @param profile the profile name
 * @returns keys of {@link PAPER_TABLES}
 */
export function paperTablesOf(profile: string): readonly string[] {
  if (profile.startsWith("ablation")) return ["ablation", "frozen"];
  if (profile.startsWith("paper-")) return ["main"];
  return SCORE_TABLES;
}

/** A paper row matched to a table row ({@link paperMatch}), or why none is. */
export interface PaperMatch {
  /** The paper's row; undefined when none matches, or several do. */
  readonly row?: PaperRow;
  /**
   * The `paper_row` cell: the row matched (`<table>: <model> <label>`), else why not (blank
   * when the paper has nothing of this model and label).
   */
  readonly note: string;
}

const paperRowName = (p: PaperRow) => `${p.table}: ${p.model} ${p.method}`;

/** The paper's row names joined for a note: `<row> and <row>`. */
const paperRowNames = (ps: readonly PaperRow[]) => ps.map(paperRowName).join(" and ");

/**
 * The paper's figures a table row takes from its paper row, in a fixed order (blank: unknown).
 * Of several rows that match, {@link amongMatches} keeps those with a figure here.
 */
export type PaperFigures = (p: PaperRow) => readonly string[];

/** What `scores.csv` takes from its paper row: the GLUE and SuperGLUE averages. */
export const SCORE_FIGURES: PaperFigures = (p): readonly string[] => [
  p.glue_avg,
  p.super_glue_avg,
];

/**
 * Of several paper rows that match one table row, the one whose figures the table shows: rows
 * with no figure in the cells being filled (`figures`) are dropped when another has one (the main
 * results' HyperPrompt at T5 1.1 Base, of no parameter figure, beside the ablation's
 * HyperPrompt-Global and its 1.02x); of those left, rows whose figures agree (all blank
 * included) are one answer, the first taken and all named; figures that differ are refused
 * (`ambiguous`, with `why` appended).
 *
 * @param found the matching rows, at least two
 * @param figures the figures the table takes from a row
 * @param why what the `ambiguous` note ends with (e.g. what would choose one)
 * @returns the row, or the ambiguous note
 */
export function amongMatches(
  found: readonly PaperRow[],
  figures: PaperFigures,
  why: string,
): PaperMatch {
  const withFigure = found.filter((p) => figures(p).some((v) => v !== ""));
  const kept = withFigure.length > 0 ? withFigure : found;
  const dropped = found.filter((p) => !kept.includes(p));
  const droppedNote = dropped.length === 0
    ? ""
    : ` (also matched, without a figure here: ${paperRowNames(dropped)})`;
  const key = (p: PaperRow) => JSON.stringify(figures(p));
  if (kept.every((p) => key(p) === key(kept[0]!))) {
    const agree = kept.length === 1
      ? ""
      : withFigure.length === 0
      ? " (none with a figure here)"
      : " (the same figures)";
    return { row: kept[0]!, note: `${paperRowNames(kept)}${agree}${droppedNote}` };
  }
  return {
    note: `ambiguous: paper rows ${
      paperRowNames(kept)
    } match with different figures${droppedNote}; ${why}`,
  };
}

/**
 * The paper's row for a table row, matched exactly as the paper keys its rows: one of `tables`,
 * the same model (never the rows of unknown size), the same row label and the same method
 * (`method_name`). A label alone is not enough (a row of another method labelled like the
 * paper's), nor a method alone (an ablation's `HyperPrompt-Global l=4` is not its
 * `HyperPrompt-Global`, and a label equal to a method name would take whichever row of that
 * method came first). Of several matches (tables that both have the row, for a profile that does
 * not say which it reproduces) the one with figures is taken, or either when their figures agree
 * ({@link amongMatches}); figures that differ are refused and the note says so, as it says when
 * the paper's row of this model and label is of another method or in a table the profile is not
 * compared with.
 *
 * @param paper the paper's reference rows
 * @param g the table row's profile, model, label and method
 * @param tables the tables that may match (default: {@link paperTablesOf} the profile)
 * @param figures the figures the table takes from the row (default {@link SCORE_FIGURES})
 * @returns the row, or the reason there is none
 */
export function paperMatch(
  paper: readonly PaperRow[],
  g: {
    readonly profile: string;
    readonly model: string;
    readonly label: string;
    readonly method: string;
  },
  tables: readonly string[] = paperTablesOf(g.profile),
  figures: PaperFigures = SCORE_FIGURES,
): PaperMatch {
  const named = paper.filter((p) => p.model !== "" && p.model === g.model && p.method === g.label);
  const found = named.filter((p) => tables.includes(p.table) && p.method_name === g.method);
  if (found.length === 1) return { row: found[0]!, note: paperRowName(found[0]!) };
  if (found.length > 1) {
    return amongMatches(
      found,
      figures,
      "a profile named paper-… (main) or ablation… (ablation, frozen) says which it reproduces",
    );
  }
  const other = named.find((p) => tables.includes(p.table));
  if (other !== undefined) {
    return {
      note: `none: paper row ${paperRowName(other)} is ${other.method_name}, not ${g.method}`,
    };
  }
  const elsewhere = named.find((p) => p.method_name === g.method);
  if (elsewhere !== undefined) {
    return {
      note: `none: paper row ${paperRowName(elsewhere)} is not in the table profile ` +
        `${g.profile} is compared with (${tables.join(", ")})`,
    };
  }
  return { note: "" };
}

/**
 * A benchmark's averages in a row: the runs' averages, the number of tasks they average, and
 * whether they are the full average over all 8 tasks of the benchmark (`BENCHMARK_TASKS`); none
 * when a per-task method's row lacks a task run.
 */
function benchAverages(
  g: Group,
  b: BenchmarkName,
): { xs: number[]; tasks: number; full: boolean } {
  const runs = cellOf(g, b)?.runs ?? [];
  // A per-task method with a task run missing has no average (`missing_runs` says which).
  if (runs.some((r) => missingTaskRuns(r).length > 0)) return { xs: [], tasks: 0, full: false };
  const xs = runs.map((r) => r.averages[b]).filter((x): x is number => x !== undefined);
  // Only the benchmark's own tasks enter its average (`evaluator.ts` `benchmarkAverages`); a run
  // may report others (a diagnostic set, say), which the count must not include.
  const own = BENCHMARK_TASKS[b];
  const tasks = Math.max(
    0,
    ...runs.map((r) => own.filter((t) => Object.hasOwn(r.best, t)).length),
  );
  const full = runs.length > 0 && runs.every((r) => own.every((t) => Object.hasOwn(r.best, t)));
  return { xs, tasks, full };
}

/**
 * `<benchmark>_best_step_avg` of a row: T5's printed benchmark average (`evaluator.ts`
 * {@link bestStepAverage}: the highest per-step average of a run's evaluations, with the main
 * column's group scores and average function), the mean over the row's seeds. Blank unless every
 * run of the row evaluated all 8 of the benchmark's tasks (`full`; no partial version), for a
 * `perTask` method (its task runs have separate step sequences), and when a run has no step at
 * which all 8 were evaluated (no per-step evaluations recorded): never a mean of the seeds that
 * have one.
 *
 * @throws Error naming the result's file when a task has two evaluations at one step
 */
function bestStepAverageCell(g: Group, b: BenchmarkName, full: boolean): number | "" {
  const runs = cellOf(g, b)?.runs ?? [];
  if (!full || runs.length === 0 || runs.some((r) => r.spec.perTaskOf !== undefined)) return "";
  const xs: number[] = [];
  for (const r of runs) {
    let x: number | undefined;
    try {
      x = bestStepAverage(b, r.evals, BENCHMARK_TASKS[b], benchmarkAverage);
    } catch (e) {
      throw new Error(`${describeResult(r)}: ${(e as Error).message}`);
    }
    if (x === undefined) return "";
    xs.push(x);
  }
  return r2(mean(xs));
}

/**
 * A benchmark's average columns of a row, as `scores.csv` and `ablation.csv` write them:
 * `<benchmark>_tasks`, `_avg`, `_std` (all 8 tasks ran), `_partial_avg`, `_partial_std` (a subset
 * ran), `_best_step_avg` ({@link bestStepAverageCell}); all blank where the row has no average.
 *
 * @throws Error naming the result's file when a task has two evaluations at one step
 */
function averageCells(g: Group, b: BenchmarkName): (number | "")[] {
  const { xs, tasks, full } = benchAverages(g, b);
  if (xs.length === 0) return ["", "", "", "", "", ""];
  const [avg, sd] = meanStdCells(xs);
  const best = bestStepAverageCell(g, b, full);
  return full ? [tasks, avg, sd, "", "", best] : [tasks, "", "", avg, sd, best];
}

/**
 * `missing_runs` of a row: the task runs a per-task method lacks (failed, or not yet run), as
 * `<benchmark>/s<seed>:<task>,<task>` per incomplete seed; blank when none is missing. The
 * benchmark's average cells are then blank ({@link benchAverages}), never a mean of the tasks
 * or seeds that finished.
 */
function missingRunsCell(g: Group): string {
  return g.runs.filter((r) => missingTaskRuns(r).length > 0)
    .map((r) => `${r.spec.benchmark}/s${r.spec.seed}:${missingTaskRuns(r).join(",")}`)
    .join(" ");
}

/** `seeds` of a row: the runs averaged per benchmark (one number when they agree). */
function seedsCell(g: Group): string | number {
  const counts = new Set(g.cells.map((c) => c.runs.length));
  if (counts.size === 1) return g.cells[0]!.runs.length;
  return g.cells.map((c) => `${c.benchmark}:${c.runs.length}`).join(" ");
}

/**
 * The order of task columns and rows: GLUE then SuperGLUE, each in its benchmark's task order
 * (the paper's and T5's: CoLA, SST-2, MRPC, STS-B, QQP, MNLI, QNLI, RTE), not alphabetically; a
 * task outside the lists goes last. A comparator of (benchmark, task) pairs.
 */
function taskOrder(ba: string, ta: string, bb: string, tb: string): number {
  const rank = (b: string, t: string) => {
    const i = (BENCHMARK_TASKS as Record<string, readonly string[]>)[b]?.indexOf(t) ?? -1;
    return i < 0 ? Infinity : i;
  };
  const bRank = (b: string) => {
    const i = (BENCHMARKS as readonly string[]).indexOf(b);
    return i < 0 ? Infinity : i;
  };
  return (bRank(ba) - bRank(bb) || cmp(ba, bb)) || (rank(ba, ta) - rank(bb, tb)) || cmp(ta, tb);
}

/**
 * (a) Scores: per row, the best group score of each task (mean over seeds), the number of runs
 * averaged, and per benchmark the number of its tasks averaged with the average (mean and sample
 * std over seeds) in `<benchmark>_avg` when all 8 tasks ran, else in `<benchmark>_partial_avg`,
 * then T5's best single-step average in `<benchmark>_best_step_avg` (mean over seeds; blank
 * beside a partial average, for a per-task method and for runs without a step that evaluated
 * every task: {@link bestStepAverageCell});
 * per benchmark the parameter overhead ({@link SCORE_PARAM_COLUMNS}, `params.csv`'s values); the
 * paper's averages (left blank next to a partial average) with their source and `paper_row`
 * (the paper row matched, {@link paperMatch}, or why none is: blank values, never another
 * table's, method's or size's row); the configuration
 * ids; the provenance of the runs averaged ({@link PROVENANCE_COLUMNS}: seeds, git commits,
 * backends, devices, software versions).
 *
 * @param results run results
 * @param paper the paper's reference rows
 * @returns the table
 * @throws Error naming both files when two results are of the same run
 */
export function scoresTable(results: readonly RunResult[], paper: readonly PaperRow[]): Table {
  const groups = groupRuns(results);
  const taskCols = new Set<string>();
  for (const r of results) {
    for (const t of Object.keys(r.best)) taskCols.add(`${r.spec.benchmark}/${t}`);
  }
  const tasks = [...taskCols].sort((a, b) => {
    const [ba, ta] = a.split("/") as [string, string];
    const [bb, tb] = b.split("/") as [string, string];
    return taskOrder(ba, ta, bb, tb);
  });
  const benchCols = (b: string) => [
    `${b}_tasks`,
    `${b}_avg`,
    `${b}_std`,
    `${b}_partial_avg`,
    `${b}_partial_std`,
    `${b}_best_step_avg`,
  ];
  const head = [
    ...GROUP_COLUMNS,
    "seeds",
    ...tasks,
    ...benchCols("glue"),
    ...benchCols("super_glue"),
    ...BENCHMARKS.flatMap((b) => SCORE_PARAM_COLUMNS.map((c) => `${b}_${c}`)),
    "paper_glue_avg",
    "paper_super_glue_avg",
    "paper_source",
    "paper_row",
    "config",
    "missing_runs",
    ...PROVENANCE_COLUMNS,
  ];
  const rows: Table = [head];
  for (const g of groups) {
    const cells: (string | number)[] = [
      ...groupCells(g),
      seedsCell(g),
    ];
    for (const col of tasks) {
      const [bench, task] = col.split("/") as [string, string];
      const xs = (cellOf(g, bench)?.runs ?? []).map((r) => r.best[task]?.groupScore)
        .filter((x): x is number => x !== undefined);
      cells.push(xs.length ? r2(mean(xs)) : "");
    }
    const partial: Partial<Record<BenchmarkName, boolean>> = {};
    for (const b of BENCHMARKS) {
      const avg = averageCells(g, b);
      partial[b] = avg[3] !== ""; // `_partial_avg`: a subset of the tasks ran
      cells.push(...avg);
    }
    for (const b of BENCHMARKS) {
      const c = cellOf(g, b);
      cells.push(...(c === undefined ? SCORE_PARAM_COLUMNS.map(() => "") : paramCells(c)));
    }
    // The paper's rows name presets: an hf folder named as one is matched by that name.
    const { row: p, note } = paperMatch(paper, { ...g, model: g.modelName });
    cells.push(
      partial.glue ? "" : p?.glue_avg ?? "",
      partial.super_glue ? "" : p?.super_glue_avg ?? "",
      p?.source ?? "",
      note,
      configCell(g),
      missingRunsCell(g),
      ...provenanceCells(g),
    );
    rows.push(cells);
  }
  return rows;
}

/**
 * The `metric` of `metrics.csv`'s rows giving the percentage of a task's predictions that are no
 * answer (`RunResult` `best[task].invalid`: no label word, for STS-B no number), scored as wrong.
 */
export const INVALID_PCT = "invalid_predictions_pct";

/**
 * Per-task metrics (`metrics.csv`, long format): the per-task breakdown behind `scores.csv`'s
 * group scores, each metric of a task apart (MRPC's F1 and accuracy, STS-B's Pearson and
 * Spearman, MNLI's matched and mismatched accuracy, MultiRC's F1a and exact match, …), as the
 * per-task tables of T5 and of the paper's appendix give them. One row per `scores.csv` row
 * (same grouping: profile, model, backbone, method, configuration and setup), benchmark, task and
 * metric: the mean over seeds of the metric at each seed's best step for the task (the step its
 * group score chose, T5's rule, the step of `scores.csv`'s score), its sample std (blank for one
 * seed), the seeds and their best steps in the same order, the benchmark's configuration id and
 * the row's git commits, backends, devices and software. Tasks in {@link taskOrder}, metrics in
 * the order the task's scorer reports them, then {@link INVALID_PCT} where recorded (the share
 * of predictions that are no answer, which the metrics score as wrong: a score near 0 with most
 * predictions invalid is a model that has not learned the label words yet); a NaN metric
 * (undefined, e.g. a correlation of constant predictions) makes its mean NaN.
 *
 * @param results run results
 * @returns the table
 * @throws Error naming both files when two results are of the same run
 */
export function metricsTable(results: readonly RunResult[]): Table {
  const rows: Table = [[
    ...GROUP_COLUMNS,
    "benchmark",
    "task",
    "metric",
    "mean",
    "std",
    "seeds",
    "seed_values",
    "best_steps",
    "config",
    ...PROVENANCE_COLUMNS.slice(1),
  ]];
  for (const g of groupRuns(results)) {
    const provenance = provenanceCells(g).slice(1);
    for (const c of g.cells) {
      const tasks = [...new Set(c.runs.flatMap((r) => Object.keys(r.best)))]
        .sort((a, b) => taskOrder(c.benchmark, a, c.benchmark, b));
      for (const task of tasks) {
        const seeds = c.runs.filter((r) => r.best[task] !== undefined);
        const bests = seeds.map((r) => r.best[task]!);
        const metrics = [...new Set(bests.flatMap((b) => Object.keys(b.metrics)))];
        // The share of predictions that are no answer (no label word), where recorded.
        const invalidPct = (r: RunResult) => {
          const v = r.best[task]!.invalid;
          return v === undefined ? undefined : (100 * v.count) / v.of;
        };
        if (seeds.some((r) => invalidPct(r) !== undefined)) metrics.push(INVALID_PCT);
        for (const metric of metrics) {
          const value = (r: RunResult) =>
            metric === INVALID_PCT ? invalidPct(r) : r.best[task]!.metrics[metric];
          const has = seeds.filter((r) => value(r) !== undefined);
          const [avg, sd] = meanStdCells(has.map((r) => value(r)!));
          rows.push([
            ...groupCells(g),
            c.benchmark,
            task,
            metric,
            avg,
            sd,
            has.length,
            has.map((r) => r.spec.seed).join(","),
            has.map((r) => r.best[task]!.step).join(","),
            c.config,
            ...provenance,
          ]);
        }
      }
    }
  }
  return rows;
}

/**
 * Analytic rows of the parameter table as `[label, method, config]`: every method with its
 * default configuration, then the methods that tune the backbone by default with the backbone
 * frozen, labelled by what is frozen:
 *
 * - `<method> (frozen)`: `freezeBackbone` `"all"`, the task-conditioned parameters only (spec
 *   §1.6/§4.3), as the `ablation` profile's frozen rows train: "trained" counts the extra
 *   parameters alone;
 * - `hyperformer_pp (frozen except layer norms)`: `"except_layer_norms"`, HyperFormer++'s own
 *   setting (spec §2.3, §5.3: "trained per task" counts extra + the T5 layer-norm scales), the
 *   row the HyperFormer++ paper's 0.29 % (`results/paper/main_table.csv`, `freeze_backbone`
 *   `except_layer_norms`) is shown beside.
 */
export const ANALYTIC_VARIANTS: readonly (readonly [string, string, Record<string, unknown>])[] = [
  ...METHOD_NAMES.map((m) => [m, m, {}] as const),
  ...(["adapter", "hyperformer_pp", "hyperprompt_share", "hyperprompt_sep", "hyperprompt_global"]
    .flatMap((m) => [
      [`${m} (frozen)`, m, { freezeBackbone: "all" }] as const,
      ...(m === "hyperformer_pp"
        ? [
          [`${m} (frozen except layer norms)`, m, {
            freezeBackbone: "except_layer_norms",
          }] as const,
        ]
        : []),
    ])),
];

/**
 * A method configuration's `freezeBackbone` as the paper table writes it (`false`, `all`,
 * `except_layer_norms`), defaults filled by the method's `parseConfig`; undefined when the
 * configuration does not parse.
 */
function freezeSetting(method: string, cfg: unknown): string | undefined {
  try {
    const c = getMethod(method).parseConfig(cfg ?? {}, "tables") as { freezeBackbone?: unknown };
    return c.freezeBackbone === undefined ? undefined : String(c.freezeBackbone);
  } catch {
    return undefined;
  }
}

/**
 * The parameter columns `scores.csv` gives per benchmark (`glue_params_ratio`, …), named and
 * ordered as `results/paper/main_table.csv`'s; their values are `params.csv`'s `ratio`,
 * `extra_pct` and `trained_per_task_pct` of the same run group and benchmark ({@link paramCells}).
 */
export const SCORE_PARAM_COLUMNS: readonly string[] = [
  "params_ratio",
  "extra_pct",
  "trained_per_task_pct",
];

/**
 * A cell's parameter overhead as the paper states it, from its first run (the seeds of one
 * configuration count the same parameters; a per-task method's merged count, `per_task.ts`):
 * total over the backbone's, extra % of the backbone, trained per task % of the backbone, each
 * to 4 decimals. `params.csv` and `scores.csv` both show these numbers.
 */
function paramCells(c: Cell): [number, number, number] {
  return paramValues(c).map(r4) as [number, number, number];
}

/** {@link paramCells} unrounded: the ratio to the backbone, extra % and trained-per-task %. */
function paramValues(c: Cell): [number, number, number] {
  const p = c.runs[0]!.params;
  return [p.total / (p.total - p.extra), p.extraPct, p.trainedPerTaskPct];
}

/**
 * The paper row whose parameter figures `params.csv` shows beside a row, or why none.
 *
 * A run group's row is matched as `scores.csv`'s ({@link paperMatch}: same model, label and
 * method, in the tables its profile is compared with), and also with another paper's rows
 * (`other_paper`, e.g. HyperFormer++'s own figures on T5 1.0 Base). An analytic row (a method at
 * its default configuration, labelled by its registry key, not by a paper label) is matched by
 * model and method in the main results, the ablation and another paper's rows. Where several
 * rows match, the one with a figure in the cells `params.csv` fills ({@link paramsFigures}) is
 * taken, or either when their figures agree, and none when they differ ({@link amongMatches}):
 * at T5 1.1 Base the main results' HyperPrompt and the ablation's HyperPrompt-Global are both
 * `hyperprompt_global`, and only the ablation's gives a parameter figure (1.02x).
 *
 * The paper's parameter figures are of its row's configuration, the method's default: a row whose
 * configuration counts other parameters (e.g. a hyper-prompt length of 4) gets none of them, and
 * the note says so. `freezeBackbone` changes no count, so it is not compared here; the caller
 * shows the paper's trained-per-task % only beside a row of the paper row's `freeze_backbone`.
 *
 * @param paper the paper's reference rows
 * @param r the row: analytic, or a run group's profile; model, label, method and its configuration
 * @returns the paper row, or the reason there is none (`note`, the `paper_row` cell)
 */
export function paramsPaperMatch(
  paper: readonly PaperRow[],
  r:
    & {
      readonly model: string;
      readonly label: string;
      readonly method: string;
      readonly config: unknown;
      /** The tasks its parameters were counted for (the `num_tasks` cell). */
      readonly tasks: number;
    }
    & ({ readonly analytic: true } | { readonly analytic: false; readonly profile: string }),
): PaperMatch {
  let match: PaperMatch;
  const figures: PaperFigures = (p) => paramsFigures(p, r.method, r.config);
  if (r.analytic) {
    const found = paper.filter((p) =>
      p.model !== "" && p.model === r.model && p.method_name === r.method &&
      PARAMS_ANALYTIC_TABLES.includes(p.table)
    );
    match = found.length === 1
      ? { row: found[0]!, note: paperRowName(found[0]!) }
      : found.length === 0
      ? { note: "" }
      : amongMatches(found, figures, `all are ${r.method} at this size`);
  } else {
    match = paperMatch(paper, r, [...paperTablesOf(r.profile), "other_paper"], figures);
  }
  return ofPaperConfiguration(match, r.method, r.config, r.tasks);
}

/**
 * The paper's figures `params.csv` shows beside a row of `method` at `config`: the ratio, the
 * extra % and the trained-per-task %, this one only where the paper row's `freeze_backbone` is the
 * row's (the ratio and extra % do not depend on what is trained; the trained-per-task % does).
 *
 * @param p the paper's row
 * @param method the row's method
 * @param config the row's method configuration
 * @returns `[params_ratio, extra_pct, trained_per_task_pct]`, blank where not shown
 */
export function paramsFigures(p: PaperRow, method: string, config: unknown): readonly string[] {
  const trained = p.freeze_backbone === freezeSetting(method, config) ? p.trained_per_task_pct : "";
  return [p.params_ratio, p.extra_pct, trained];
}

/**
 * A paper row's parameter figures are of its method's default configuration on
 * {@link PAPER_TASKS} tasks: `match` as it is when the row's parameters were counted for that many
 * tasks and its `config` counts the default's extra parameters, else no row and a note saying why
 * (`params.csv`'s and `ablation.csv`'s `paper_row`): a run of a task subset has other task
 * embeddings, prompts or adapters, and its trained-per-task % is over fewer tasks.
 */
function ofPaperConfiguration(
  match: PaperMatch,
  method: string,
  config: unknown,
  tasks: number,
): PaperMatch {
  const p = match.row;
  if (p === undefined) return match;
  if (tasks !== PAPER_TASKS) {
    return {
      note: `none: paper row ${paperRowName(p)} counts ${PAPER_TASKS} tasks; this row's ` +
        `parameters are of ${tasks}`,
    };
  }
  const counts = (cfg: unknown): number | undefined => {
    try {
      const m = getMethod(method);
      const preset = PRESETS[p.model as keyof typeof PRESETS];
      return m.countParams(preset, m.parseConfig(cfg ?? {}, "tables"), PAPER_TASKS).extra;
    } catch {
      return undefined;
    }
  };
  const own = counts(config), paperCount = counts({});
  if (own !== undefined && own === paperCount) return match;
  return {
    note: `none: paper row ${paperRowName(p)} is of ${method}'s default configuration (${
      paperCount ?? "?"
    } extra parameters at ${PAPER_TASKS} tasks); this row's configuration ${
      own === undefined ? "does not parse" : `counts ${own}`
    }`,
  };
}

/** The tasks the paper's parameter figures count (GLUE's 8; SuperGLUE's are 8 too). */
const PAPER_TASKS = 8;

/** The tables an analytic `params.csv` row may take its paper figures from. */
const PARAMS_ANALYTIC_TABLES: readonly string[] = ["main", "ablation", "other_paper"];

/** The leading cells of a per-run-group row of the params and FLOPs tables. */
function runRowKey(g: Group, benchmark: string): (string | number)[] {
  return [`run:${g.profile}/${benchmark}`, g.model, g.backbone, g.label, g.method];
}

/**
 * (b) Parameters: analytic rows for every published size × method (8 tasks, default configs,
 * then the frozen-backbone variants of {@link ANALYTIC_VARIANTS}, whose `method` label says what
 * is frozen), then one row per run group (from the instantiated variables). Paper values where
 * known: those of the paper row {@link paramsPaperMatch} finds (`paper_row` names it, or says why
 * none), the trained-per-task % only beside a row of that paper row's `freeze_backbone`.
 *
 * @param results run results
 * @param paper the paper's reference rows
 * @param accounting `methodAccounting` (analytic rows are skipped without it)
 * @returns the table
 */
export function paramsTable(
  results: readonly RunResult[],
  paper: readonly PaperRow[],
  accounting?: AccountingFn,
): Table {
  const rows: Table = [[
    "source",
    "model",
    "backbone",
    "method",
    "method_name",
    "num_tasks",
    "total",
    "extra",
    "extra_pct",
    "ratio",
    "trained",
    "trained_per_task_pct",
    "paper_ratio",
    "paper_extra_pct",
    "paper_trained_per_task_pct",
    "paper_source",
    "paper_row",
    "config",
  ]];
  // The paper's trained-per-task % only beside a row that trains the same part of the backbone.
  // `paper_row` says where the row's own value (its ratio, extra %, trained-per-task %, unrounded:
  // rounding its 4-decimal cell again could land on the other side) is not the figure beside it,
  // at the paper's precision (`…; differs: ratio 1.01 here at 2 decimals, not 1.02`): the paper's
  // row is its configuration, which for HyperPrompt is not fully known (its l, b, t; README
  // "Methods"), so a figure shown is no claim that the suite's default reproduces it.
  const paperCells = (
    row: Parameters<typeof paramsPaperMatch>[1],
    values: readonly [number, number, number],
  ) => {
    const { row: p, note } = paramsPaperMatch(paper, row);
    if (p === undefined) return ["", "", "", "", note];
    const figures = paramsFigures(p, row.method, row.config);
    const names = ["ratio", "extra_pct", "trained_per_task_pct"] as const;
    return [
      ...figures,
      p.source,
      withDiffers(note, names.map((name, k) => paperDiffers(name, values[k]!, figures[k]!, ""))),
    ];
  };
  if (accounting) {
    for (const model of PUBLISHED_PRESETS) {
      for (const [label, m, cfg] of ANALYTIC_VARIANTS) {
        const a = accounting(PRESETS[model], m, cfg, 8);
        rows.push([
          "analytic",
          model,
          "",
          label,
          m,
          8,
          a.total,
          a.extra,
          r4(a.extraPct),
          r4(a.ratio),
          a.trained,
          r4(a.trainedPerTaskPct),
          ...paperCells({
            analytic: true,
            model,
            label,
            method: m,
            config: cfg,
            tasks: PAPER_TASKS,
          }, [a.ratio, a.extraPct, a.trainedPerTaskPct]),
          "",
        ]);
      }
    }
  }
  // Counts follow from the configuration, not the machine: one row per configuration (a row
  // per setup would repeat it, told apart by nothing in this table).
  for (const g of groupRuns(results, { bySetup: false })) {
    for (const c of g.cells) {
      const r = c.runs[0]!;
      const p = r.params;
      const [ratio, extraPct, trainedPerTaskPct] = paramCells(c);
      rows.push([
        ...runRowKey(g, c.benchmark),
        // The tasks its parameters were counted for: a train-only one (DPR) has variables too,
        // unless it shares an evaluated task's id (DPR with WSC).
        conditionedTasks(r.spec).length,
        p.total,
        p.extra,
        extraPct,
        ratio,
        p.trained,
        trainedPerTaskPct,
        ...paperCells({
          analytic: false,
          profile: g.profile,
          model: g.modelName,
          label: g.label,
          method: g.method,
          config: r.spec.method.config,
          tasks: conditionedTasks(r.spec).length,
        }, paramValues(c)),
        c.config,
      ]);
    }
  }
  return rows;
}

/**
 * `<name> <value><unit> here at <n> decimals, not <paper><unit>` where `value`, rounded half away
 * from zero to the paper figure's decimals, is not that figure; undefined where it is, or where
 * there is no figure (`paper` empty). `params.csv` and `ablation.csv` round the value itself, not
 * their cells (4 and 3 decimals), since rounding twice can land on the other side.
 *
 * @param name the column named in the note
 * @param value the row's value, unrounded
 * @param paper the paper's figure as written (its decimals are the precision compared at)
 * @param unit what follows each number (`x` for a ratio)
 * @returns the note, or undefined
 */
export function paperDiffers(
  name: string,
  value: number,
  paper: string,
  unit: string,
): string | undefined {
  if (paper === "") return undefined;
  const digits = paper.split(".")[1]?.length ?? 0;
  const here = roundHalfAway(value, digits);
  return here === Number(paper)
    ? undefined
    : `${name} ${here.toFixed(digits)}${unit} here at ${digits} decimals, not ${paper}${unit}`;
}

/**
 * A `paper_row` note with the {@link paperDiffers} notes that are there appended
 * (`…; differs: a, b`), or as it is when there are none.
 */
function withDiffers(note: string, differs: readonly (string | undefined)[]): string {
  const said = differs.filter((d) => d !== undefined);
  return said.length === 0 ? note : `${note}; differs: ${said.join(", ")}`;
}

/**
 * (c) FLOPs per example and measured throughput per run group and benchmark; analytic rows for
 * every published size at the paper's lengths (inputs 512, targets 84) when accounting loads.
 * FLOPs are matmul FLOPs per example (`methodAccounting`): inference one forward pass, train a
 * forward and the backward pass's gradient matmuls. With every weight trained train is 3 ×
 * forward; with a frozen backbone (`freezeBackbone` "all", Prompt-Tuning's default, or
 * "except_layer_norms") the frozen weights' gradients are not computed, nor input gradients
 * upstream of the first trained tensor, so train is between 1 and 3 × forward (Prompt-Tuning on
 * T5 1.1 Base at 512/84: about 2.1). Times are a device's: a row's seeds ran on one backend and
 * device (the seeds of other setups are other rows, {@link groupRuns}). `wall_seconds` of a
 * per-task method is the sum of its task runs' times, blank while a task run is missing
 * (scores.csv `missing_runs` names it). `tokens_per_second` is the seeds' total training tokens
 * over their total training seconds (a per-task method's seed: its task runs' totals) when every
 * run records them (`trainTokens`, `trainSeconds`), else (results written before those fields)
 * the unweighted mean of the runs' rates, which is the same figure only when the runs trained
 * equally long (`per_task.ts` `mergedThroughput`); `tokens_per_second_from` says which
 * (`totals`, `mean of rates`, or `run's rate` for one run that records no totals: its
 * `tokensPerSecond`, whole-run except after a resume from a checkpoint written before
 * checkpoints carried them). Both are blank where a per-task method's task runs of one seed ran
 * on several backends or devices, which the `backend` and `device` cells list
 * (`tokens_per_second_from`: `none: task runs on <n> backends or devices`): a combined rate or
 * time is no device's, and a row per setup would split the seed, whose FLOPs and scores are one
 * row. The last two columns state the FLOPs relative to MTL's, as the paper does
 * ({@link withMtlRatios}).
 *
 * @param results run results
 * @param accounting `methodAccounting`
 * @returns the table
 */
export function flopsTable(results: readonly RunResult[], accounting?: AccountingFn): Table {
  const rows: Table = [[
    "source",
    "model",
    "backbone",
    "method",
    "method_name",
    "input_length",
    "target_length",
    "train_flops_per_example",
    "inference_flops_per_example",
    "tokens_per_second",
    "tokens_per_second_from",
    "wall_seconds",
    "backend",
    "device",
    "config",
    "train_flops_x_mtl",
    "inference_flops_x_mtl",
  ]];
  if (accounting) {
    for (const model of PUBLISHED_PRESETS) {
      for (const m of METHOD_NAMES) {
        const a = accounting(PRESETS[model], m, {}, 8, { inputLength: 512, targetLength: 84 });
        rows.push([
          "analytic",
          model,
          "",
          m,
          m,
          512,
          84,
          a.trainFlops ?? "",
          a.forwardFlops ?? "",
          "",
          "",
          "",
          "",
          "",
          "",
        ]);
      }
    }
  }
  for (const g of groupRuns(results)) {
    for (const c of g.cells) {
      const rs = c.runs;
      const r = rs[0]!;
      const each = rs.flatMap((x) => perTaskParts(x) ?? [x]);
      const backends = [...new Set(each.map((x) => x.provenance.backend.name))].sort();
      const devices = [...new Set(each.map((x) => x.provenance.device))].sort();
      // Over seeds as over a per-task method's task runs: total tokens over total seconds.
      const throughput = mergedThroughput(rs);
      // Times are the machine's: never combined across setups. The seeds of a cell share one
      // (groupRuns); only a per-task method's task runs of one seed may have run on several,
      // whose combined rate and summed time would be no device's (`backend`, `device` list them).
      const setups = setupPairs(rs).length;
      // The seeds of a setup may have run with other core or thread counts (a setup's CPU is its
      // model alone, `setups.ts` setupDevice): their combined rate would be no machine's either.
      const exact = new Set(
        each.map((x) => JSON.stringify([x.provenance.backend.name, x.provenance.device])),
      ).size;
      // One run without recorded totals (written before the fields, or resumed from a checkpoint
      // without them: then its rate covers the steps since) has its own rate only; a per-task
      // method's merged result without totals is a mean of its task runs' rates.
      const from = setups > 1
        ? `none: task runs on ${setups} backends or devices`
        : exact > 1
        ? `none: runs on ${exact} device descriptions (core or thread counts, adapter details)`
        : !throughput.mean
        ? "totals"
        : rs.length === 1 && perTaskParts(r) === undefined
        ? "run's rate"
        : "mean of rates";
      rows.push([
        ...runRowKey(g, c.benchmark),
        r.spec.train.maxInputLength,
        r.spec.train.maxTargetLength,
        r.flops.trainPerExample,
        r.flops.inferencePerExample,
        exact > 1 ? "" : r2(throughput.tokensPerSecond),
        from,
        // A per-task row with a task run missing has no whole wall time: the sum of the runs
        // present would pass for it (scores.csv's missing_runs names what is missing).
        exact > 1 || rs.some((x) => missingTaskRuns(x).length > 0)
          ? ""
          : r2(mean(rs.map((x) => x.wallSeconds))),
        backends.join(" "),
        devices.join(" | "),
        c.config,
      ]);
    }
  }
  return withMtlRatios(rows);
}

/**
 * The FLOPs table's rows with `train_flops_x_mtl` and `inference_flops_x_mtl` appended: each
 * FLOP count over the MTL row's (`method_name` `mtl`) of the same source (analytic, or the
 * run's profile and benchmark), model, backbone and lengths, to 4 decimals; blank where there is
 * no such MTL row, where its count is blank or 0, or where such rows disagree (MTL run at two
 * configurations of the same lengths: which one a ratio means would be a guess).
 */
function withMtlRatios(rows: Table): Table {
  const [head, ...body] = rows as [string[], ...(string | number)[][]];
  const at = (name: string) => head.indexOf(name);
  const key = (r: readonly (string | number)[]) =>
    JSON.stringify(
      ["source", "model", "backbone", "input_length", "target_length"].map((n) => r[at(n)]),
    );
  const ratio = (r: readonly (string | number)[], col: string): number | "" => {
    const x = r[at(col)];
    const bases = new Set(
      body.filter((m) => m[at("method_name")] === "mtl" && key(m) === key(r)).map((m) =>
        m[at(col)]
      ),
    );
    if (bases.size !== 1 || typeof x !== "number") return "";
    const [base] = bases;
    return typeof base === "number" && base > 0 ? r4(x / base) : "";
  };
  return [
    head,
    ...body.map((r) => [
      ...r,
      ratio(r, "train_flops_per_example"),
      ratio(r, "inference_flops_per_example"),
    ]),
  ];
}

/**
 * The spec fields an ablation row's runs share with their MTL reference: everything but the run
 * id, the seed, the method and `perTaskOf` (a per-task method's merged result has the
 * benchmark's tasks as its `tasks`, as a multi-task run of them has). `withTrain: false` leaves
 * out the training settings too, for a method entry with its own `train` overrides.
 */
function referenceKey(s: RunSpec, withTrain: boolean): string {
  const { id: _id, seed: _seed, method: _method, perTaskOf: _p, train, ...rest } = s;
  return canonicalJson(withTrain ? { ...rest, train } : rest);
}

/** An ablation cell's MTL reference: the MTL parameter count it is relative to, and how chosen. */
interface MtlReference {
  /** The MTL runs' total parameters; undefined: none matches (relative to the backbone). */
  readonly total?: number;
  /** The `<benchmark>_mtl_reference` cell. */
  readonly note: string;
}

/**
 * The MTL reference of an ablation row's cell: among the MTL cells of the same benchmark, those
 * whose runs' spec equals the cell's apart from the method and seed ({@link referenceKey}: same
 * profile, model, backbone, pretraining, tasks, training settings and backend), else those equal
 * apart from the training settings too (a method entry's own `train` overrides; noted), never
 * another configuration's. Several matching MTL cells (two MTL entries, say) are used when
 * they count the same parameters; when they count different ones, or none matches, the ratio is
 * relative to the backbone, and the note says why.
 */
function mtlReference(c: Cell, mtlGroups: readonly Group[]): MtlReference {
  const mtlCells = mtlGroups.flatMap((m) =>
    m.cells.filter((x) => x.benchmark === c.benchmark).map((x) => ({ group: m, cell: x }))
  );
  const spec = c.runs[0]!.spec;
  for (const withTrain of [true, false]) {
    const key = referenceKey(spec, withTrain);
    const found = mtlCells.filter((m) => referenceKey(m.cell.runs[0]!.spec, withTrain) === key);
    if (found.length === 0) continue;
    // MTL's runs of one configuration on two setups are two rows of one count: named once.
    const names = [...new Set(found.map((m) => `${m.group.label} ${m.cell.config}`))].join(", ");
    const totals = new Set(found.map((m) => m.cell.runs[0]!.params.total));
    if (totals.size > 1) {
      return {
        note: `ambiguous: MTL rows ${names} count different parameters; relative to the backbone`,
      };
    }
    return {
      total: [...totals][0]!,
      note: withTrain ? names : `${names} (other training settings)`,
    };
  }
  return { note: "none: no MTL run of this configuration; relative to the backbone" };
}

/**
 * (d) Ablation: rows of profiles whose name starts with `ablation`, parameters relative to MTL
 * (the paper's "1.02x"), per benchmark: the row's count over the count of its MTL reference, the
 * MTL runs of the same benchmark and configuration (profile, model, backbone, tasks, training
 * settings, backend: {@link mtlReference}), which `<benchmark>_mtl_reference` names (MTL's label
 * and config id), or relative to the backbone where none matches (the column says so); blank
 * where the method did not run that benchmark. Then the runs averaged (`seeds`), GLUE and
 * SuperGLUE averages (as in {@link scoresTable}: the task count, the full average or the partial
 * mean of a task subset, each with its sample std over seeds, then T5's best single-step average
 * in `<benchmark>_best_step_avg`, the same cell as scores.csv's: {@link bestStepAverageCell}),
 * and the paper's #Params relative to MTL from the paper's ablation table's row of the same
 * model, label and method (`paper_params_x_mtl`, its `paper_source`, and `paper_row`:
 * {@link paperMatch}), shown only beside a configuration that counts that row's (the default's)
 * parameters, as in `params.csv`: the paper's ablation tables give one #Params per row, not per
 * benchmark; where a benchmark's count, rounded as the paper rounds, is not that figure,
 * `paper_row` ends with `; differs: glue_params_x_mtl 1.01x here at 2 decimals, not 1.02x`.
 *
 * @param results run results
 * @param paper the paper's reference rows
 * @returns the table
 * @throws Error naming the result's file when a task has two evaluations at one step
 */
export function ablationTable(results: readonly RunResult[], paper: readonly PaperRow[]): Table {
  const rows: Table = [[
    ...GROUP_COLUMNS,
    "method_config",
    "glue_params_x_mtl",
    "super_glue_params_x_mtl",
    "glue_mtl_reference",
    "super_glue_mtl_reference",
    "seeds",
    "glue_tasks",
    "glue_avg",
    "glue_std",
    "glue_partial_avg",
    "glue_partial_std",
    "glue_best_step_avg",
    "super_glue_tasks",
    "super_glue_avg",
    "super_glue_std",
    "super_glue_partial_avg",
    "super_glue_partial_std",
    "super_glue_best_step_avg",
    "paper_params_x_mtl",
    "paper_source",
    "paper_row",
    "config",
    ...PROVENANCE_COLUMNS,
  ]];
  const groups = groupRuns(
    results.filter((r) => r.spec.profile.startsWith("ablation")),
    { labels: runLabels(results.map((r) => r.spec)) },
  );
  const mtlGroups = groups.filter((x) => x.method === "mtl");
  for (const g of groups) {
    // Per benchmark: a method's count depends on the number of tasks (task embeddings, one
    // prompt or adapter per task), which differs between a profile's GLUE and SuperGLUE runs.
    const xMtl = (b: BenchmarkName): [number | undefined, string] => {
      const c = cellOf(g, b);
      if (c === undefined) return [undefined, ""];
      const p = c.runs[0]!.params;
      const ref = mtlReference(c, mtlGroups);
      return [p.total / (ref.total ?? p.total - p.extra), ref.note];
    };
    // The paper's figure is of its row's configuration, the default: not shown beside another
    // (a run labelled as the paper's row but configured otherwise), as in params.csv.
    const { row: p, note: paperNote } = ofPaperConfiguration(
      paperMatch(
        paper,
        { ...g, model: g.modelName },
        ["ablation"],
        (p) => [p.params_ratio],
      ),
      g.method,
      g.runs[0]!.spec.method.config,
      // Every benchmark's count must be the paper's: the first that is not, if any.
      g.runs.map((r) => conditionedTasks(r.spec).length).find((n) => n !== PAPER_TASKS) ??
        PAPER_TASKS,
    );
    const [glueX, glueRef] = xMtl("glue");
    const [sgX, sgRef] = xMtl("super_glue");
    const paperX = p?.params_ratio ?? "";
    // As params.csv does: a figure shown beside a count that, rounded as the paper rounds, is
    // not it says so (the ratio itself rounded, not its 3-decimal cell).
    const differs = ([["glue", glueX], ["super_glue", sgX]] as const).map(([b, x]) =>
      x === undefined ? undefined : paperDiffers(`${b}_params_x_mtl`, x, paperX, "x")
    );
    const xCell = (x: number | undefined) => x === undefined ? "" : `${x.toFixed(3)}x`;
    rows.push([
      ...groupCells(g),
      JSON.stringify(g.runs[0]!.spec.method.config),
      xCell(glueX),
      xCell(sgX),
      glueRef,
      sgRef,
      seedsCell(g),
      ...averageCells(g, "glue"),
      ...averageCells(g, "super_glue"),
      paperX ? `${paperX}x` : "",
      p?.source ?? "",
      withDiffers(paperNote, differs),
      configCell(g),
      ...provenanceCells(g),
    ]);
  }
  return rows;
}

/**
 * (e) Attention mass on hyper-prompts per layer (mean over seeds), long format: a row per
 * profile, model, backbone, method label and name, benchmark, task, stack and layer, per
 * configuration (`config`), with the seeds averaged (`seeds`).
 *
 * @param results run results
 * @returns the table
 */
export function attentionTable(results: readonly RunResult[]): Table {
  const rows: Table = [[
    ...GROUP_COLUMNS,
    "benchmark",
    "task",
    "stack",
    "layer",
    "mass",
    "seeds",
    "config",
  ]];
  // This table has no backend and device columns: one row per configuration, its seeds' mean
  // whatever they ran on (scores.csv's rows name the setups).
  for (const g of groupRuns(results, { bySetup: false })) {
    const byKey = new Map<string, number[]>();
    for (const r of g.runs) {
      for (const [task, am] of Object.entries(r.attentionMass ?? {})) {
        for (const stack of ["encoder", "decoder"] as const) {
          am[stack].forEach((v, layer) => {
            const k = JSON.stringify([r.spec.benchmark, task, stack, layer]);
            byKey.set(k, [...(byKey.get(k) ?? []), v]);
          });
        }
      }
    }
    const keys = [...byKey.keys()].map((k) => JSON.parse(k) as [string, string, string, number]);
    keys.sort((a, b) => cmp(a[0], b[0]) || cmp(a[1], b[1]) || cmp(b[2], a[2]) || a[3] - b[3]);
    for (const k of keys) {
      const xs = byKey.get(JSON.stringify(k))!;
      rows.push([
        ...groupCells(g),
        k[0],
        k[1],
        k[2],
        k[3],
        r4(mean(xs)),
        xs.length,
        cellOf(g, k[0])!.config,
      ]);
    }
  }
  return rows;
}

/**
 * Serialise a table as CSV (RFC 4180 quoting, `\n` line ends). A field holding a bare CR is
 * quoted too: csv-stringify quotes only the record delimiter (`\n`), and an unquoted CR ends the
 * record for readers that accept CR line ends and is an error for Python's `csv`.
 */
export function toCsv(t: Table): string {
  return stringify(t, { record_delimiter: "unix", quoted_match: /\r/ });
}

/** Options of {@link writeTables}. */
export interface WriteTablesOptions {
  /** Paper reference CSV (default {@link PAPER_TABLE}). */
  readonly paperTable?: string;
  /** Accounting (default: loaded from the methods module; `null` skips analytic rows). */
  readonly accounting?: AccountingFn | null;
  /**
   * Run ids left out: `bench` passes the runs that failed in this invocation, whose result files
   * of an earlier attempt are still in the folder (their numbers are not this code's).
   */
  readonly exclude?: ReadonlySet<string>;
}

/** What to do about two results of one run in the tables' input (`groupRuns`, bench's preflight). */
export const DUPLICATE_ADVICE = "remove one (a copy, or a rerun into another folder)";

/**
 * Why results whose spec was edited after their run wrote it cannot go into the tables (they would
 * label numbers with settings they were not trained with; the gate and `--resume` refuse such a
 * result too), naming each; undefined when none was. `writeTables` refuses them, bench's preflight
 * before its runs.
 *
 * @param results the results read
 * @returns the message, or undefined
 */
export function editedResults(results: readonly RunResult[]): string | undefined {
  const edited = results.filter((r) => runId(r.spec) !== r.spec.id);
  if (edited.length === 0) return undefined;
  return edited.map((r) =>
    `${describeResult(r)}: its spec hashes to ${runId(r.spec)}, not to its id ${r.spec.id}`
  ).join("; ") + ": edited after the run wrote it? Restore the file, or move it out of the folder";
}

/**
 * Build every table and plot from the run JSONs in `runsDir` and write them atomically to
 * `outDir`: everything is built first, then every file goes to a temporary file beside its
 * target and only then are they renamed into place, so an error (a bad result, a full disk, a
 * folder where a table goes) leaves the previous tables as they were, none half-written and none
 * of a mixed generation, and `outDir` is created only then (an error leaves no new folder); only a
 * kill during the few renames can leave old and new files mixed.
 * A folder without results is an error (headers alone would replace the previous tables), as is
 * a result whose spec no longer hashes to its run id (edited after its run wrote it).
 *
 * @param runsDir folder of run JSONs (all shards), or several folders (shards written to folders
 *   of their own), read as one: a run in two of them is an error naming both files, one file
 *   read twice (a folder and a file in it) a `UsageError`
 * @param outDir output folder
 * @param opts paper table path, accounting
 * @returns the files written
 */
export async function writeTables(
  runsDir: string | readonly string[],
  outDir: string,
  opts: WriteTablesOptions = {},
): Promise<string[]> {
  const dirs = typeof runsDir === "string" ? [runsDir] : runsDir;
  const read: RunResult[] = [];
  for (const d of dirs) read.push(...await loadResults(d));
  // A folder and a file in it: one file named twice, not two results of a run (as the gate says).
  await refuseFileReadTwice("--runs", read);
  const results = read.filter((r) => !opts.exclude?.has(r.spec.id));
  // Tables of nothing would replace earlier tables in `outDir` with headers alone.
  if (results.length === 0) throw new Error(noResultsMessage(dirs.join(", ")));
  const edited = editedResults(results);
  if (edited !== undefined) throw new Error(`${edited} (nothing written)`);
  const paper = readPaperTable(opts.paperTable);
  const accounting = opts.accounting === null
    ? undefined
    : opts.accounting ?? await loadAccounting();
  const files: Record<string, string> = {
    "scores.csv": toCsv(scoresTable(results, paper)),
    "metrics.csv": toCsv(metricsTable(results)),
    "params.csv": toCsv(paramsTable(results, paper, accounting)),
    "flops.csv": toCsv(flopsTable(results, accounting)),
    "ablation.csv": toCsv(ablationTable(results, paper)),
    "attention_mass.csv": toCsv(attentionTable(results)),
    "score_vs_params.svg": scoreVsParamsSvg(mergePerTaskRuns(results, describeResult)),
    "attention_mass.svg": attentionMassSvg(mergePerTaskRuns(results, describeResult)),
  };
  const written = Object.entries(files).map(([name, text]) => [join(outDir, name), text] as const);
  // Only now that every table is built: a failure above (two results of one run) leaves no new,
  // empty output folder behind.
  await Deno.mkdir(outDir, { recursive: true });
  await writeFilesAtomic(written);
  return written.map(([path]) => path);
}

/** `deno task tables --help`. */
export const TABLES_USAGE = `Usage: deno task tables [options]

Rebuilds the CSV tables and plots from the run JSONs of any number of shards.

  --runs DIR   folder of run result JSONs, or one JSON file of results (default: results/runs);
               repeatable: the shards' folders read as one (a run in two of them is an error
               naming both files)
  --out DIR    where the tables and plots go (default: results/tables)
  --help       this text

Runs in --runs that began but wrote no result (a claim file <run>.lock, or a work folder with
checkpoints: running, or stopped) are named in a note on stderr: the tables leave them out. A
result whose spec no longer hashes to its run id (edited) is an error.

Exit codes: 0 written, 1 an error reading the results or writing the tables, 2 bad arguments.`;

/** Options of {@link main} (tests capture the output). */
export interface TablesMainOptions {
  /** Where `--help` and the written files' paths go (default `console.log`). */
  readonly log?: (s: string) => void;
  /** Where the error line and notes go (default `console.error`). */
  readonly error?: (s: string) => void;
  /**
   * Why a new file cannot be created in an existing folder, or undefined (`model/fs.ts`
   * `checkOutputFolder`'s `cannotWrite`; default: a probe file). Tests inject a read-only disk.
   */
  readonly cannotWrite?: (dir: string) => string | undefined;
}

/**
 * `deno task tables` (through `runCli` of `model/usage.ts`): `--help` prints
 * {@link TABLES_USAGE}; otherwise the arguments and folders are checked, then the tables
 * written. Errors are one message naming the flag or the file, never a stack trace.
 *
 * @param args command-line arguments
 * @param opts output sinks
 * @returns the exit code (0 written or `--help`, 1 an error reading the results or writing the
 *   tables, 2 bad arguments)
 */
export function main(args: string[], opts: TablesMainOptions = {}): Promise<number> {
  const log = opts.log ?? ((s: string) => console.log(s));
  const sinks = { log, ...(opts.error === undefined ? {} : { error: opts.error }) };
  const warn = opts.error ?? ((s: string) => console.error(s));
  return runCli((a) => tablesCommand(a, log, warn, opts.cannotWrite), args, TABLES_USAGE, sinks);
}

/** `--runs` when not given: where `deno task bench` writes its results by default. */
const DEFAULT_RUNS = "results/runs";

/**
 * The work of {@link main}: a bad argument throws a `UsageError` (one line, `parseFlags` of
 * `model/usage.ts` for the flags themselves), a failure its error.
 */
async function tablesCommand(
  args: string[],
  log: (s: string) => void,
  warn: (s: string) => void,
  cannotWrite?: (dir: string) => string | undefined,
): Promise<void> {
  const values = parseFlags(args, {
    tool: "deno task tables",
    options: {
      // No parser default: whether --runs was given decides how a missing folder is named.
      runs: { type: "string", multiple: true },
      out: { type: "string", default: "results/tables" },
      help: { type: "boolean", short: "h", default: false },
    },
    takes: { runs: "a folder of run result JSONs or a JSON file", out: "a folder" },
    paths: { runs: true, out: true },
  });
  const runs = values.runs ?? [DEFAULT_RUNS];
  refuseRepeatedFolders("--runs", runs);
  checkOutputFolder("--out", values.out, {
    writable: true,
    ...(cannotWrite === undefined ? {} : { cannotWrite }),
  });
  for (const r of runs) {
    const bad = await runsProblem(r, values.runs !== undefined);
    if (bad !== undefined) throw new UsageError(bad);
  }
  for (const f of await writeTables(runs, values.out)) log(f);
  for (const r of runs) {
    const open = await unfinishedRuns(r);
    if (open.length === 0) continue;
    warn(
      `note: ${open.length} run${open.length === 1 ? "" : "s"} in ${r} began but wrote no ` +
        `result (still running, or stopped: deno task bench --resume with the same flags ` +
        `finishes ${open.length === 1 ? "it" : "them"}), so the tables leave ` +
        `${open.length === 1 ? "it" : "them"} out: ${open.join(", ")}`,
    );
  }
}

/**
 * The runs of a results folder that began but wrote no result: a claim file `<stem>.lock`
 * (`runner.ts` `runLockFile`: a run in progress, or one killed) or a work folder `<stem>/` with
 * checkpoints (a run stopped, or one in progress that writes them) without `<stem>.json`.
 *
 * @param runsDir the `--runs` folder (a file of results: none)
 * @returns their file stems, sorted
 */
export async function unfinishedRuns(runsDir: string): Promise<string[]> {
  if (!(await isDirectory(runsDir))) return [];
  const names = new Set<string>();
  const begun = new Set<string>();
  for await (const e of Deno.readDir(runsDir)) {
    names.add(e.name);
    if (e.isFile && e.name.endsWith(".lock") && !e.name.startsWith(".")) {
      begun.add(e.name.slice(0, -".lock".length));
    } else if (e.isDirectory && await isDirectory(join(runsDir, e.name, "checkpoints"))) {
      begun.add(e.name);
    }
  }
  return [...begun].filter((stem) => !names.has(`${stem}.json`)).sort();
}

/**
 * What is wrong with a `--runs` folder or file before anything is read, or undefined.
 * `runsGiven`: whether `--runs` was typed (a default folder that is missing is named as the
 * default, with what writes it, not as a flag the user never gave).
 */
async function runsProblem(runs: string, runsGiven: boolean): Promise<string | undefined> {
  // A folder or one JSON file of results (as submission's --runs says it).
  if (!(await pathExists(runs))) {
    return runsGiven
      ? `--runs ${runs}: no such folder or file`
      : `no results in ${runs} (the default --runs): run deno task bench first (it writes ` +
        `them there), or pass --runs DIR`;
  }
  if (!(await isDirectory(runs))) return undefined; // a JSON file of results, as loadResults reads
  // As loadResults reads them: files (a folder named x.json is no result).
  for await (const e of Deno.readDir(runs)) {
    if (e.isFile && e.name.endsWith(".json")) return undefined;
  }
  // Runs that began there (still running, or stopped) are said: no result yet, not none at all.
  const open = await unfinishedRuns(runs);
  return `--runs ${noResultsMessage(runs)}${
    open.length === 0
      ? ""
      : ` (${open.length} run${
        open.length === 1 ? " began" : "s began"
      } there but wrote no result yet: ${open.join(", ")})`
  }`;
}

if (import.meta.main) {
  // A table written past `ulimit -f` fails with an error naming it, not a silent exit 153.
  ignoreFileSizeSignal();
  Deno.exit(await main(Deno.args));
}
