/**
 * Types shared by the GLUE / SuperGLUE task registry, the file parsers, the T5 text-to-text
 * formatting and the metrics.
 *
 * @module
 */

/** Which benchmark a task belongs to. */
export type BenchmarkName = "glue" | "super_glue";

/**
 * A data split. Every task has `train`, `validation` and `test` (empty where the official data
 * has none). MNLI also has the official `validation_matched`, `validation_mismatched`,
 * `test_matched` and `test_mismatched`; its `validation` (and `test`) is matched followed by
 * mismatched, each example tagged with its own split in {@link Example.split}.
 */
export type TaskSplit =
  | "train"
  | "validation"
  | "test"
  | "validation_matched"
  | "validation_mismatched"
  | "test_matched"
  | "test_mismatched";

/** One text-to-text example, as T5 feeds it to the model. */
export interface Example {
  /** Canonical task name (a key of `TASKS`). */
  task: string;
  /** Unique within the task and split, e.g. `cola/train/12` or `multirc/validation/0-3-17`. */
  id: string;
  /** The T5 input string (task prefix included). */
  input: string;
  /** The T5 target string (`<unk>` where the official data has no label). */
  target: string;
  /** ReCoRD: every accepted answer (sorted, unique); empty on the test split. */
  answers?: string[];
  /**
   * Grouping key: MultiRC question idx (for per-question EM), ReCoRD `passage/query` idx,
   * AX-g `pair_id` (for gender parity).
   */
  group?: string;
  /**
   * The gold label: class index into the task's label words, the raw float score for STS-B,
   * 0/1 for WSC (whether span1 is the pronoun's referent). Absent where unlabelled.
   */
  label?: number | string | boolean;
  /** The split the example came from (MNLI: `validation_matched` or `validation_mismatched`). */
  split?: TaskSplit;
  /** 1-based line number of the example's row in its source file (for error messages). */
  line?: number;
  /** Source file path relative to the data directory. */
  file?: string;
}

/** How the raw rows of a task are turned into {@link Example}s. */
export type Converter =
  /** `preprocessors.glue`: prefix, `key: value` pairs, label word. */
  | "classify"
  /** `preprocessors.stsb`: float32 half-to-even rounding to the 0.2 grid. */
  | "stsb"
  /** `preprocessors.glue` with benchmark `multirc`, one example per answer, markup removed. */
  | "multirc"
  /** `preprocessors.record`: one example per answer (train) or per query (eval). */
  | "record"
  /** `preprocessors.wsc_simple` on TFDS `wsc.fixed` (train keeps only label==True rows). */
  | "wsc_simple"
  /**
   * `preprocessors.definite_pronoun_resolution_simple` on TFDS `definite_pronoun_resolution`
   * (DPR): `wsc: ` + the sentence with its first ` <pronoun>` before a space, `.` or `,` marked as
   * `*<pronoun>*`; target = the correct candidate.
   */
  | "dpr_simple";

/** How a raw label is decoded. */
export type LabelKind =
  /** A TSV string or JSON string looked up in {@link TaskSpec.labelMap}. */
  | "map"
  /** JSON boolean (also `"true"`/`"false"` strings and 0/1 integers): index into False/True. */
  | "bool"
  /** COPA: JSON integer 0/1 → `choice1`/`choice2`. */
  | "int"
  /** STS-B: a float in [0, 5]. */
  | "float";

/** One file of a split. */
export interface TaskFile {
  /** Path relative to the data directory, e.g. `glue/CoLA/train.tsv`. */
  path: string;
  /** Column names of a header-less TSV file (CoLA train/dev); absent when line 1 is a header. */
  columns?: string[];
  /** TaskSplit tag given to the examples of this file (MNLI matched/mismatched). */
  split?: TaskSplit;
  /** Official row count (flattened count for MultiRC answers / ReCoRD queries); checked. */
  rows?: number | number[];
}

/** One registry entry: everything about a task that is data, not code. */
export interface TaskSpec {
  /** Canonical name (registry key). */
  name: string;
  /** Display name as on the leaderboards (CoLA, SST-2, …, AX-g). */
  displayName: string;
  /** BenchmarkName. */
  benchmark: BenchmarkName;
  /** TFDS version T5 used (`glue/*:1.0.0`, `super_glue/*:1.0.2`). */
  version: string;
  /** The T5 task name (`glue_cola_v002`, `super_glue_wsc_v102_simple_train`, …). */
  t5Name: string;
  /** Folder under the data directory in the official layout (`glue/CoLA`, `super_glue/BoolQ`). */
  dir: string;
  /**
   * File format: GLUE TSV, SuperGLUE JSON lines, or DPR's four-line records (sentence, pronoun,
   * `,`-separated candidates, correct candidate, then a blank line; `parse.ts` `parseDpr`).
   */
  format: "tsv" | "jsonl" | "dpr";
  /** Files of each split present in the official data. */
  files: Partial<Record<TaskSplit, TaskFile[]>>;
  /** Converter from raw rows to examples. */
  converter: Converter;
  /** First word of the input (`cola`, `mnli` for AX, `rte` for AX-b / AX-g, `wsc:`). */
  prefix: string;
  /**
   * Input keys in output order (sorted alphabetically unless T5 gives an explicit order:
   * MultiRC, WiC, STS-B, ReCoRD).
   */
  inputKeys: string[];
  /**
   * Where each input key comes from: a TSV column name or a JSON key (`target.span2_text` for a
   * nested key). ReCoRD and MultiRC read nested structures and leave this empty.
   */
  fields: Record<string, string>;
  /** Label column / JSON key; absent for tasks without labels (AX) or with answers (ReCoRD). */
  labelField?: string;
  /** How the label is decoded. */
  labelKind?: LabelKind;
  /** Raw label string → class index (for `labelKind: "map"`). */
  labelMap?: Record<string, number>;
  /** Id column / JSON key (row number when absent). */
  idField?: string;
  /** Label words in class-index order (T5 targets); empty for STS-B and ReCoRD. */
  labelWords: string[];
  /** Metric names as T5 reports them (empty for AX). */
  metrics: string[];
  /**
   * Metrics averaged into the task's group score (T5 `METRIC_NAMES` groups); empty when the task
   * is excluded from the benchmark average.
   */
  groupMetrics: string[];
  /**
   * The official train split's example count (T5's `*_WEIGHT_MAPPING`), for reference and the
   * registry's checks (a trained task needs it > 0). The mixture does not read it: it weighs each
   * task by the train examples a run loads (`benchmarks/run_one.ts`), which on the official files
   * are these counts. Whether a task is trained is `inMixture`, not a 0 here.
   */
  trainSize: number;
  /** Whether the task is trained in the T5 mixture. */
  inMixture: boolean;
  /** Whether the group score enters the benchmark average. */
  inAverage: boolean;
  /**
   * A task T5 trains in the mixture but never evaluates (DPR, `dpr_v001_simple`): train files
   * only, no metrics, `inMixture` true and `inAverage` false, never in `BENCHMARK_TASKS`. A
   * profile adds it to its multi-task runs with `extraTrainTasks` (`benchmarks/spec.ts`).
   */
  trainOnly?: boolean;
  /**
   * A train-only task only: the evaluated task of its benchmark whose task id its examples carry
   * when a run trains both (DPR: `"wsc"`, whose `wsc:` format it has, as T5 mixes
   * `dpr_v001_simple` beside `wsc_simple`). Its examples then train that task's per-task method
   * variables and the method has one task fewer (SuperGLUE's 8, as the paper counts); in a run
   * without that task it has its own id. Absent: always its own id.
   */
  sharesTaskIdWith?: string;
  /**
   * QQP only: drop train rows with fewer columns than the header (TFDS does; the old QQP.zip),
   * reporting their lines; a short validation or test row is an error.
   */
  skipShortRows?: boolean;
  /** Notes on deviations and choices. */
  notes?: string;
}
