/**
 * The benchmark's data contracts: a {@link Profile} (one JSON file under `benchmarks/profiles/`),
 * the {@link RunSpec} of one grid cell that `runOne` trains and evaluates, and the
 * {@link RunResult} written as one JSON file per run. Validators fail early with an error that
 * names the file, the line (when known) and the JSON path of the field, e.g.
 * `benchmarks/profiles/ci.json:14: $.train.learningRate must be a positive number, got "x"`.
 *
 * Written before the runner and trainer (AlgoPerf's `spec.py` habit): everything else codes
 * against these types.
 *
 * @module
 */
import { BACKEND_NAMES, type BackendName } from "../model/backend.ts";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { type MethodName, METHODS } from "../model/methods/mod.ts";
import {
  BENCHMARK_TASKS,
  evalSplits,
  getTask,
  hasTrainAndValidation,
  taskInBenchmark,
} from "../tasks/registry.ts";
import type { TaskFile, TaskSplit } from "../tasks/types.ts";
import { nearestName } from "../model/usage.ts";
import { briefJson } from "../model/json.ts";
import { isUnpublishedPreset } from "../model/config.ts";

/** Backend requested for a run: the names `model/backend.ts` accepts. */
export type BackendChoice = BackendName;
/** Known backend choices, in `--help` order. */
export const BACKEND_CHOICES: readonly BackendChoice[] = BACKEND_NAMES;

/** A benchmark trained and evaluated as one multi-task run. */
export type BenchmarkName = "glue" | "super_glue";
/** Known benchmarks. */
export const BENCHMARKS: readonly BenchmarkName[] = ["glue", "super_glue"];

/** Registry keys of `model/methods/mod.ts` (`METHODS`): the methods a profile may name. */
export type { MethodName };

/**
 * The built-in methods in table order, the paper's: its main results list MTL, the adapters,
 * Prompt-Tuning, then HyperPrompt, and its ablation (spec §4.5) MTL, MTL-Prompt, HyperFormer++,
 * then HyperPrompt-Share, -Sep and -Global, so MTL-Prompt (in the ablation only) follows MTL. A
 * method registered in `METHODS` but not listed here is valid all the same and sorts after these
 * ({@link METHOD_NAMES}).
 */
export const BUILTIN_METHOD_NAMES: readonly MethodName[] = [
  "mtl",
  "mtl_prompt",
  "adapter",
  "hyperformer_pp",
  "prompt_tuning",
  "hyperprompt_share",
  "hyperprompt_sep",
  "hyperprompt_global",
];

/**
 * Every method of the registry (`model/methods/mod.ts` `METHODS`), in table order: the
 * {@link BUILTIN_METHOD_NAMES} first, then any other registered method in registry order. The
 * names a profile's `methods[].name` may take.
 *
 * @example
 * ```ts
 * import { METHOD_NAMES } from "./spec.ts";
 * console.assert(METHOD_NAMES[0] === "mtl" && METHOD_NAMES.includes("hyperprompt_global"));
 * ```
 */
export const METHOD_NAMES: readonly MethodName[] = tableOrder(Object.keys(METHODS) as MethodName[]);

/**
 * Registered method names in table order: those of {@link BUILTIN_METHOD_NAMES} in its order,
 * then the others in the order given (exported for the test of a method outside the list).
 *
 * @param registered registry keys, in registry order
 * @returns the same names, each once, in table order
 */
export function tableOrder<N extends string>(registered: readonly N[]): N[] {
  const order = BUILTIN_METHOD_NAMES as readonly string[];
  const known = registered.filter((n) => order.includes(n))
    .sort((a, b) => order.indexOf(a) - order.indexOf(b));
  return [...new Set([...known, ...registered.filter((n) => !order.includes(n))])];
}

/** A model: a preset name of `model/config.ts` `PRESETS`, or a Hugging Face folder / hub id. */
export type ModelRef = string | { readonly hf: string };

/**
 * Where the backbone weights come from: `"random"` (seeded init), `"pretrained"` (the tiny
 * span-corruption checkpoint built offline by the pretrain task, or the published checkpoint of
 * a published preset), or an explicit Hugging Face folder / hub id.
 */
export type BackboneRef = "random" | "pretrained" | { readonly hf: string };

/**
 * Settings of the offline span-corruption pretraining (`benchmarks/pretrain.ts`
 * `PRETRAIN_DEFAULTS`) that a profile may override. The vocabulary size also sizes the task
 * tokenizer that random-init runs of tiny presets share with the pretrained backbone.
 */
export interface PretrainSpec {
  /** Optimizer steps. */
  readonly steps: number;
  /** Sequences per step. */
  readonly batchSize: number;
  /** Tokens per packed chunk before corruption. */
  readonly chunkLength: number;
  /** AdamW peak learning rate. */
  readonly learningRate: number;
  /** SentencePiece vocabulary size, 100 sentinels included. */
  readonly vocabSize: number;
  /** Root seed of the pretraining. */
  readonly seed: number;
  /**
   * Backend of the pretraining (default `"auto"`: wasm+blas on a CPU host). wasm+blas rebuilds
   * bit-identical weights on one host, but OpenBLAS picks CPU-specific kernels; `"wasm"` (no
   * BLAS, no threads: wasm SIMD has no host-dependent results) and `"cpu"` (pure JS, ~20× slower
   * than wasm) give the same weights on every host. When set it enters the backbone's cache key.
   */
  readonly backend: BackendChoice;
}

/** Field names of {@link PretrainSpec}, in documentation order. */
export const PRETRAIN_FIELDS: readonly (keyof PretrainSpec)[] = [
  "steps",
  "batchSize",
  "chunkLength",
  "learningRate",
  "vocabSize",
  "seed",
  "backend",
];

/**
 * The pretraining settings a run of `model` with `backbone` reads, of a profile's `pretrain`
 * overrides: a tiny (unpublished) preset's `"pretrained"` backbone reads them all (they build
 * it); its random init reads `vocabSize` alone (the size of the task tokenizer it shares with
 * the pretrained backbone); any other run none. Only these enter the run's spec, so pretraining
 * settings a run does not use leave its id (and `--resume`, and the gate) alone.
 *
 * @param pretrain the profile's overrides (undefined: none)
 * @param model the run's model
 * @param backbone the run's backbone
 * @returns the overrides the run reads; undefined when none
 */
export function pretrainReadBy(
  pretrain: Readonly<Partial<PretrainSpec>> | undefined,
  model: ModelRef,
  backbone: BackboneRef,
): Readonly<Partial<PretrainSpec>> | undefined {
  if (pretrain === undefined || !isUnpublishedPreset(model)) return undefined;
  if (backbone === "pretrained") return pretrain;
  if (backbone === "random" && pretrain.vocabSize !== undefined) {
    return { vocabSize: pretrain.vocabSize };
  }
  return undefined;
}

/**
 * Short label of a backbone for tables and file names: `random`, `pretrained`, or the last
 * path segment of an `hf` reference.
 *
 * @param b the backbone
 * @returns the label
 */
export function backboneLabel(b: BackboneRef): string {
  return typeof b === "string" ? b : modelLabel(b);
}

/** One method of a profile's grid. */
export interface MethodEntry {
  /** Registry key of the method. */
  readonly name: MethodName;
  /** Row label in tables (defaults to `name`); must be unique within a profile. */
  readonly label: string;
  /**
   * The method's configuration. In a profile: partial, validated by the method's `parseConfig`.
   * In a {@link RunSpec}: the resolved configuration (defaults filled) when the method registry
   * was available to resolve it.
   */
  readonly config: Readonly<Record<string, unknown>>;
  /**
   * Training overrides for this method only (e.g. Prompt-Tuning's learning rate 0.3, spec A15).
   * Profiles only: in a {@link RunSpec} they are already merged into `train` and absent here.
   */
  readonly train?: Readonly<Partial<TrainSpec>>;
  /**
   * Train this method as one run per task of each benchmark (a single-task mixture with the
   * method's own `train` overrides), each evaluated on its task, instead of one multi-task run
   * (e.g. Prompt-Tuning as Lester et al. train it, spec A15). The tables and the gate merge a
   * seed's task runs into one row (`benchmarks/per_task.ts`). Profiles only: in a
   * {@link RunSpec} it is absent and {@link RunSpec.perTaskOf} says the same.
   */
  readonly perTask?: boolean;
}

/** Learning-rate schedule. */
export interface ScheduleSpec {
  /** `constant`, linear warmup then linear decay to 0, or linear warmup then 1/sqrt(step) decay. */
  readonly kind: "constant" | "warmup_linear" | "warmup_rsqrt";
  /** Warmup steps (0 with `constant`, which has none: a profile that writes more is refused). */
  readonly warmupSteps: number;
}

/**
 * Adafactor settings a profile may set (`benchmarks/optim.ts` `AdafactorConfig`). Absent fields
 * keep the defaults, which are Hugging Face's recommended Adafactor for T5 fine-tuning
 * (`scale_parameter=False, relative_step=False` with an explicit learning rate, every variable of
 * rank >= 2 factored over its last two axes), not Mesh TensorFlow's `AdafactorOptimizer`
 * defaults (`multiply_by_parameter_scale=True`, `min_dim_size_to_factor=128`).
 */
export interface AdafactorSpec {
  /**
   * Multiply each step by max(1e-3, RMS(parameter)): T5 / Mesh TF's relative step. Default false
   * (the learning rate is an absolute step).
   */
  readonly multiplyByParameterScale?: boolean;
  /**
   * Mesh TF's factoring rule: factor the second moment over a variable's two largest dimensions
   * only when the smaller of them is at least this size (Mesh TF and T5 use 128), else keep it
   * unfactored. Absent: every variable of rank >= 2 is factored over its last two axes (Hugging
   * Face's rule).
   */
  readonly minDimSizeToFactor?: number;
  /**
   * T5X's Adafactor `weight_decay_rate`, in [0, 0.5]: `p ← (1 − weightDecayRate)·p − update` at
   * every step, not multiplied by the learning rate (T5X scales it by `lr^exponent` only when
   * `weight_decay_rate_lr_exponent` is set, which Lester et al.'s Prompt-Tuning configs do not;
   * spec §2.4: 1e-5). Unlike {@link TrainSpec.weightDecay}, p·(1 − lr·weightDecay), which it adds
   * to when both are set. Absent or 0: none (0 is left out of the canonical JSON, so the run id
   * is that of a spec without it).
   */
  readonly weightDecayRate?: number;
}

/** Field names of {@link AdafactorSpec}. */
export const ADAFACTOR_FIELDS: readonly (keyof AdafactorSpec)[] = [
  "multiplyByParameterScale",
  "minDimSizeToFactor",
  "weightDecayRate",
];

/** Training and evaluation hyperparameters of one run. */
export interface TrainSpec {
  /** Optimizer: Adafactor (T5 default) or AdamW. */
  readonly optimizer: "adafactor" | "adamw";
  /**
   * Adafactor settings (optimizer `adafactor` only; an override that switches to AdamW drops the
   * inherited ones). Absent, or absent fields: the defaults of {@link AdafactorSpec}; only the
   * fields set enter the canonical JSON, so the run ids of specs without them do not change.
   */
  readonly adafactor?: AdafactorSpec;
  /** Peak learning rate. */
  readonly learningRate: number;
  /** Learning-rate schedule. */
  readonly schedule: ScheduleSpec;
  /**
   * Decoupled weight decay, p ← p·(1 − lr·weightDecay), for AdamW and Adafactor alike
   * (0 disables). T5X's Adafactor form, not multiplied by the learning rate, is
   * `adafactor.weightDecayRate` ({@link AdafactorSpec}).
   */
  readonly weightDecay: number;
  /** Optimizer steps. */
  readonly steps: number;
  /** Examples per step. */
  readonly batchSize: number;
  /**
   * Gradient accumulation: examples per forward/backward pass. Each optimizer step still draws
   * `batchSize` examples; they are split into `batchSize / microBatchSize` equal micro-batches
   * whose gradients are summed (weighted by their share of the target tokens) before one clip
   * and one update. Absent (the default) or equal to `batchSize`: one pass per step. Must divide
   * `batchSize`. Absent fields are left out of the canonical JSON, so run ids do not change.
   */
  readonly microBatchSize?: number;
  /** Encoder tokens kept per example (truncated, then EOS appended). */
  readonly maxInputLength: number;
  /** Decoder tokens kept per example. */
  readonly maxTargetLength: number;
  /** Dropout rate during training. */
  readonly dropout: number;
  /** Label smoothing of the cross-entropy (0 disables). */
  readonly labelSmoothing: number;
  /**
   * T5X's z-loss: `zLoss · log_z²` added to each counted target token's loss (log_z = logsumexp
   * of the token's logits), averaged as the cross-entropy is (same tokens, same denominator); its
   * gradient flows through log_z (Lester et al.'s Prompt-Tuning: 1e-4, spec §2.4; Mesh TF's
   * `Unitransformer` default 1e-4, which every run of the paper and ablation profiles uses).
   * The recorded training loss includes it, as T5X's `loss` does. Absent or 0: none (0 is left out of the
   * canonical JSON, so the run ids of specs without it do not change).
   */
  readonly zLoss?: number;
  /** Global gradient-norm clip; `null` disables. */
  readonly clipNorm: number | null;
  /** Examples-proportional mixed-task batches, or temperature-sampled single-task batches. */
  readonly mixture: "proportional" | "temperature";
  /**
   * Sampling temperature for `mixture: "temperature"`. A profile that sets it with a
   * proportional mixture is refused; one inherited by an override that picks "proportional" is
   * the default (10), unread, so it changes no run id.
   */
  readonly temperature: number;
  /** Evaluate every this many steps (and at the last step). */
  readonly evalEvery: number;
  /** Write a resumable checkpoint every this many steps; 0 disables. */
  readonly checkpointEvery: number;
  /**
   * Validation examples scored per task and evaluation, a seeded subset of whole groups
   * (`evaluator.ts` `evalSubset`: MultiRC's questions may pass it by less than one question's
   * answers); `null` = the whole split.
   */
  readonly evalMaxExamples: number | null;
  /**
   * Leaderboard test-set predictions: whenever an evaluation makes a task's validation score a
   * new best (`benchmarks/evaluator.ts` `improvesOn`, the rule of `bestPerTask`), the run
   * greedy-decodes that task's whole test split(s) ({@link testSplits}; never capped by
   * `evalMaxExamples`) and its diagnostics ({@link TEST_DIAGNOSTICS}) with the current weights
   * and writes them to `<results>/test_predictions/<run file stem>/<task>.jsonl`
   * ({@link RunResult.testPredictions}). Absent or false: none; false is left out of the
   * canonical JSON, so the run ids of specs without it do not change.
   */
  readonly predictTest?: boolean;
  /**
   * Keep the run's trained weights: at the end of training the run writes its method's
   * variables (the final step's, not necessarily those of each task's best evaluation step, which
   * the scores are of) to `final/method.safetensors` in its work folder, and the runner moves
   * that folder to `<results>/weights/<run file stem>/` ({@link weightsDir}) before it writes the
   * result ({@link RunResult.weights}); a trained (unfrozen) backbone is saved beside them as a
   * Hugging Face folder `backbone/` with the run's tokenizer ({@link SavedWeights.backbone}).
   * Absent or false: nothing is kept; false is left out of the canonical JSON, so the run ids of
   * specs without it do not change (set, it changes the run id, as `predictTest` does).
   */
  readonly saveWeights?: boolean;
}

/** Regression-gate tolerances: absolute score differences allowed (0-100 scale). */
export interface Tolerances {
  /** Tolerance for any metric not listed below. */
  readonly default: number;
  /**
   * Per metric, keyed by `"metric"` (e.g. `"accuracy"`), `"task/metric"` (e.g.
   * `"cb/mean_3class_f1"`) or `"average/<benchmark>"` (e.g. `"average/glue"`); profile loading
   * checks the names against the task registry (`tasks/registry.ts`).
   */
  readonly metrics: Readonly<Record<string, number>>;
  /**
   * Relative tolerance on every training step's loss (`|current - baseline| <= loss * |baseline|`),
   * for baselines that are expected to reproduce (a deterministic backend, e.g. `cpu`); with it
   * the gate also requires the same tokenizer and backbone. Absent: losses are not gated.
   */
  readonly loss?: number;
  /**
   * True: every evaluation is gated exactly, not only each task's best: the same evaluations
   * (step and task), the same predictions ({@link TaskEval.predictionsSha256}) and the same
   * invalid counts; for baselines that reproduce bit for bit (the `cpu` backend). A change to
   * decoding, postprocessing or the evaluated examples fails it even where every score is 0.
   * Absent or false: only the best evaluations' metrics, within their tolerances.
   */
  readonly predictions?: boolean;
}

/** A benchmark profile: the grid models × methods × benchmarks × seeds and its hyperparameters. */
export interface Profile {
  /** Profile name (the file name without `.json` for built-in profiles). */
  readonly name: string;
  /** One line for `--help`. */
  readonly description: string;
  /** Backend to request unless `--backend` overrides it. */
  readonly backend: BackendChoice;
  /** Root seeds; each grid cell is repeated once per seed. */
  readonly seeds: readonly number[];
  /** Backbone sizes. */
  readonly models: readonly ModelRef[];
  /**
   * Where backbone weights come from: one or several sources (the JSON field `backbone` takes a
   * value or an array); the grid repeats every cell once per backbone.
   */
  readonly backbones: readonly BackboneRef[];
  /** Overrides of the offline pretraining settings (absent: the defaults). */
  readonly pretrain?: Readonly<Partial<PretrainSpec>>;
  /** Benchmarks, each trained as its own multi-task run. */
  readonly benchmarks: readonly BenchmarkName[];
  /** Task subset per benchmark; absent = every trained task of the benchmark. */
  readonly tasks?: Readonly<Partial<Record<BenchmarkName, readonly string[]>>>;
  /**
   * Train-only tasks per benchmark (`tasks/registry.ts` `TRAIN_ONLY_TASKS`: DPR under
   * `super_glue`), added to the mixture of each multi-task run of that benchmark after its
   * evaluated tasks, as T5's SuperGLUE mixture trains `dpr_v001_simple`: trained, never evaluated
   * nor averaged. Not added to the single-task runs of a `perTask` method (each trains and
   * evaluates one task). Absent: none.
   */
  readonly extraTrainTasks?: Readonly<Partial<Record<BenchmarkName, readonly string[]>>>;
  /**
   * When tasks are not listed: drop tasks whose files are missing from the data dir instead of
   * failing (the smoke profile runs on the partial offline mirror).
   */
  readonly skipMissingTasks: boolean;
  /** Methods (rows of the tables). */
  readonly methods: readonly MethodEntry[];
  /** Hyperparameters shared by all runs (defaults: {@link DEFAULT_TRAIN}). */
  readonly train: TrainSpec;
  /** Per-benchmark overrides of `train` (e.g. target length 84 for GLUE, 62 for SuperGLUE). */
  readonly trainOverrides: Readonly<Partial<Record<BenchmarkName, Partial<TrainSpec>>>>;
  /** Regression-gate tolerances. */
  readonly tolerances: Tolerances;
  /** Expected wall time of the whole grid, for `--dry-run` and warnings. */
  readonly timeBudgetMinutes?: number;
}

/**
 * Training defaults: the T5 library's fine-tuning defaults, the best-supported reading of the
 * paper's unknown settings (spec §3.3, A10): Adafactor, constant 1e-3, batch 128, inputs 512,
 * targets 84 (GLUE; SuperGLUE 62 via `trainOverrides`), dropout 0.1, a checkpoint and evaluation
 * every 2000 steps (spec §3.4). Adafactor itself (no `adafactor` field) is Hugging Face's T5
 * fine-tuning Adafactor, not Mesh TF's (see {@link AdafactorSpec}).
 */
export const DEFAULT_TRAIN: TrainSpec = {
  optimizer: "adafactor",
  learningRate: 1e-3,
  schedule: { kind: "constant", warmupSteps: 0 },
  weightDecay: 0,
  steps: 20000,
  batchSize: 128,
  maxInputLength: 512,
  maxTargetLength: 84,
  dropout: 0.1,
  labelSmoothing: 0,
  clipNorm: null,
  mixture: "proportional",
  temperature: 10,
  evalEvery: 2000,
  checkpointEvery: 2000,
  evalMaxExamples: null,
};

/** One cell of a profile's grid: everything `runOne` needs, nothing else. */
export interface RunSpec {
  /** Stable hash (12 hex) of every other field; see {@link runId}. */
  readonly id: string;
  /** Name of the profile the run belongs to. */
  readonly profile: string;
  /** Backbone size. */
  readonly model: ModelRef;
  /** Backbone weights. */
  readonly backbone: BackboneRef;
  /**
   * The profile's pretraining overrides that this run reads ({@link pretrainReadBy}: all of them
   * for a tiny preset's pretrained backbone, `vocabSize` for its random init, none otherwise);
   * absent when none, so run ids of profiles without the field do not change. They change the
   * pretrained backbone and the tokenizer.
   */
  readonly pretrain?: Readonly<Partial<PretrainSpec>>;
  /** Benchmark trained in this run. */
  readonly benchmark: BenchmarkName;
  /**
   * The evaluated task names (keys of `tasks/mod.ts` `TASKS`), in mixture order; task id = index.
   */
  readonly tasks: readonly string[];
  /**
   * Train-only tasks (the profile's `extraTrainTasks` of this benchmark), in the mixture after
   * `tasks`: trained, never evaluated nor scored; each with a task id of its own (after those of
   * `tasks`) or that of the task it shares one with ({@link trainedTaskIds}). Absent when there
   * are none, so the run ids of profiles without them do not change. {@link trainedTasks} gives
   * every trained task.
   */
  readonly trainOnlyTasks?: readonly string[];
  /**
   * Only for a run of a method entry with `perTask`: the benchmark's tasks whose single-task runs
   * together make the method's row, in mixture order; this run trains and evaluates `tasks[0]`,
   * one of them. Absent for multi-task runs, so their run ids do not change.
   */
  readonly perTaskOf?: readonly string[];
  /** The method with its configuration. */
  readonly method: MethodEntry;
  /** Root seed (derive per-purpose seeds with `benchmarks/rng.ts` `seedFor`). */
  readonly seed: number;
  /** Resolved hyperparameters (profile `train` + its benchmark override). */
  readonly train: TrainSpec;
  /** Backend requested. */
  readonly backend: BackendChoice;
}

/** Backend description recorded in provenance (mirrors `model/backend.ts` `BackendInfo`). */
export interface BackendRecord {
  /**
   * The backend asked for (`auto`, `tensorflow`, `webgpu`, `wasm+blas`, `wasm` or `cpu`, after
   * the `HYPERPROMPT_BACKEND` override of `auto`); the tfjs backend's name when the record was
   * made without `model/backend.ts` (`provenance.ts` `tfBackendRecord`).
   */
  readonly requested: string;
  /**
   * The engine that ran: `tensorflow`, `webgpu`, `wasm+blas`, `wasm` or `cpu` (the tfjs
   * backend's name, or `unknown`, in a record made without `model/backend.ts`).
   */
  readonly name: string;
  /** `tf.getBackend()` after selection (e.g. `wasm` for `wasm+blas`). */
  readonly tfBackend: string;
  /** WebGPU adapter description or the BLAS library in use; absent when there is none. */
  readonly adapter?: string;
  /** CPU threads the heavy kernels used (`wasm+blas`: the more of OpenBLAS's and wasm's). */
  readonly threads: number;
  /** Why each preferred engine was skipped, and anything else the selection recorded. */
  readonly notes: readonly string[];
}

/** Where and with what a run was produced. */
export interface Provenance {
  /** `git rev-parse HEAD`, or `"unknown"` outside a repository. */
  readonly gitSha: string;
  /** Whether the working tree had uncommitted changes. */
  readonly gitDirty: boolean;
  /** Deno version (`Deno.version.deno`). */
  readonly deno: string;
  /** V8 version (`Deno.version.v8`). */
  readonly v8: string;
  /** TypeScript version bundled with Deno (`Deno.version.typescript`). */
  readonly typescript: string;
  /** `@tensorflow/tfjs` version. */
  readonly tfjs: string;
  /** Pinned npm packages from `deno.json` (name -> version). */
  readonly packages: Readonly<Record<string, string>>;
  /** Backend actually used. */
  readonly backend: BackendRecord;
  /** Human-readable device (GPU adapter or CPU model and core count). */
  readonly device: string;
  /** Host name of the machine (`node:os` `hostname()`). */
  readonly hostname: string;
  /** `Deno.build.target`. */
  readonly os: string;
  /**
   * When the run's clock started (after any offline backbone pretraining), as an ISO 8601 UTC
   * timestamp (`Date.toISOString()`).
   */
  readonly startedAt: string;
  /** When the result was collected, as an ISO 8601 UTC timestamp. */
  readonly finishedAt: string;
}

/** Metrics of one task at one evaluation, 0-100. */
export interface TaskEval {
  /** Optimizer steps done when the evaluation ran (every `evalEvery` steps and the last). */
  readonly step: number;
  /** Task name, as in {@link RunSpec.tasks}. */
  readonly task: string;
  /**
   * Metric name (e.g. `accuracy`, `f1`, `matthews_corrcoef`) → value on the 0-100 scale (a
   * correlation may be negative); NaN where the metric is undefined (Pearson/Spearman of a
   * constant prediction).
   */
  readonly metrics: Readonly<Record<string, number>>;
  /**
   * Mean of the task's group metrics (T5 `metric_group_max` group; a NaN metric counts as 0),
   * same scale (WNLI, outside the averages: its accuracy); NaN for the AX diagnostics.
   */
  readonly groupScore: number;
  /**
   * How many of the evaluation's predictions T5's postprocessing reads as no answer (no label
   * word; for STS-B no number), which the metrics score as wrong, of how many
   * (`tasks/metrics.ts` `invalidPredictions`); absent for ReCoRD (free-text answers) and in
   * results written before it was recorded.
   */
  readonly invalid?: InvalidPredictions;
  /**
   * The sha256 (hex) of the evaluation's predictions: {@link predictionsDigest} of each scored
   * example's id and decoded text, in order. The regression gate compares it where the profile's
   * tolerances say `predictions` (a changed prediction, even one no metric sees); absent in
   * results written before it was recorded.
   */
  readonly predictionsSha256?: string;
}

/**
 * The digest of {@link TaskEval.predictionsSha256}: sha256 (hex) of the JSON array of
 * `[id, prediction]` pairs, in the examples' order.
 *
 * @example
 * ```ts
 * import { predictionsDigest } from "./spec.ts";
 * console.assert(predictionsDigest(["a"], ["yes"]) !== predictionsDigest(["a"], ["no"]));
 * ```
 *
 * @param ids the scored examples' ids
 * @param predictions their decoded predictions, same order and length
 * @returns 64 hex digits
 * @throws Error when the lengths differ
 */
export function predictionsDigest(
  ids: readonly string[],
  predictions: readonly string[],
): string {
  if (ids.length !== predictions.length) {
    throw new Error(
      `benchmarks/spec.ts predictionsDigest: ${ids.length} ids but ${predictions.length} ` +
        "predictions",
    );
  }
  const pairs = ids.map((id, i) => [id, predictions[i]]);
  return createHash("sha256").update(JSON.stringify(pairs)).digest("hex");
}

/** {@link TaskEval.invalid}: invalid predictions, `count` of `of`. */
export interface InvalidPredictions {
  /** Predictions that are no answer. */
  readonly count: number;
  /** Predictions made (the evaluated examples). */
  readonly of: number;
}

/** Best evaluation of a task over all checkpoints (chosen by group score, spec §3.4). */
export interface BestEval {
  /** Step of the chosen evaluation (the earliest among equal group scores). */
  readonly step: number;
  /** That evaluation's metrics (see {@link TaskEval.metrics}). */
  readonly metrics: Readonly<Record<string, number>>;
  /** That evaluation's group score (see {@link TaskEval.groupScore}). */
  readonly groupScore: number;
  /** That evaluation's invalid predictions, when recorded (see {@link TaskEval.invalid}). */
  readonly invalid?: InvalidPredictions;
}

/** Parameter accounting of a run (from the instantiated variables, equal to the analytic count). */
export interface ParamCounts {
  /** Backbone + method parameters. */
  readonly total: number;
  /** Parameters the method adds. */
  readonly extra: number;
  /** 100 · extra / backbone. */
  readonly extraPct: number;
  /** Parameters updated by the optimizer. */
  readonly trained: number;
  /** 100 · trained / numTasks / backbone. */
  readonly trainedPerTaskPct: number;
}

/** Matmul FLOPs (2 per multiply-add) per example at the run's maximum lengths. */
export interface FlopCounts {
  /** Forward + backward matmul FLOPs of one training example (0 when not computed). */
  readonly trainPerExample: number;
  /** Forward matmul FLOPs of one example (0 when not computed). */
  readonly inferencePerExample: number;
}

/** Attention probability mass on prompt slots per layer (spec §3.4), 0-1. */
export interface AttentionMass {
  /** One value per encoder self-attention layer, in block order; 0 where a layer has no prompt. */
  readonly encoder: readonly number[];
  /** One value per decoder self-attention layer, in block order; 0 where a layer has no prompt. */
  readonly decoder: readonly number[];
}

/** What `runOne` returns and the runner writes as `<out>/<runFileName(spec)>`. */
export interface RunResult {
  /** The run that produced this result. */
  readonly spec: RunSpec;
  /** Code, runtime, backend, device and time of the run (`runOne` adds data and resume records). */
  readonly provenance: Provenance;
  /** Training loss, at least at every logged step. */
  readonly losses: readonly {
    readonly step: number;
    readonly loss: number;
    /**
     * The learning rate the step's update used (the schedule's, `benchmarks/schedule.ts`);
     * absent in results (and for the steps of checkpoints) written before it was recorded.
     */
    readonly lr?: number;
  }[];
  /** Every evaluation of every task. */
  readonly evals: readonly TaskEval[];
  /** Best evaluation per task. */
  readonly best: Readonly<Record<string, BestEval>>;
  /**
   * Benchmark average of the per-task best group scores (present for the run's benchmark): the
   * official average when the run evaluated all of the benchmark's tasks, else the plain mean of
   * those it evaluated, which this field does not mark (the tables tell the two apart by the
   * tasks in `best`: `glue_partial_avg`); `evaluator.ts` `benchmarkAverages`.
   */
  readonly averages: { readonly glue?: number; readonly super_glue?: number };
  /** Parameter accounting of the backbone and method. */
  readonly params: ParamCounts;
  /** Matmul FLOPs per example at `train.maxInputLength` / `train.maxTargetLength`. */
  readonly flops: FlopCounts;
  /**
   * Training throughput: (input + target tokens) per second, non-padding; `runOne` writes
   * {@link RunResult.trainTokens} / {@link RunResult.trainSeconds} (0 when no training time).
   */
  readonly tokensPerSecond: number;
  /**
   * Non-padding (input + target) tokens of the run's training steps: the numerator of
   * `tokensPerSecond`. Whole-run: a resumed run's count includes the steps before the resume
   * (carried in the checkpoint's `state.json` `tokens`, `benchmarks/trainer.ts`); steps redone
   * after an interruption (done after the last checkpoint) count once. Absent in results written
   * before the field existed (then `perTask` rows fall back to a mean of rates, `per_task.ts`),
   * and left out after a resume from a checkpoint written before checkpoints carried the totals
   * (trainer 50bcbf7): `tokensPerSecond` is then the rate of the steps trained since. Present
   * together with {@link RunResult.trainSeconds}.
   */
  readonly trainTokens?: number;
  /**
   * Seconds spent in the run's training steps (evaluations and checkpoint writes excluded): the
   * denominator of `tokensPerSecond`. Whole-run as {@link RunResult.trainTokens} is (the
   * checkpoint's `trainMs`; left out in the same cases); a run resumed on another device sums both
   * devices' step times. Absent in results written before the field existed.
   */
  readonly trainSeconds?: number;
  /**
   * Wall time of the whole run, in seconds: from when `runOne`'s clock starts (after any offline
   * backbone pretraining, before the backend and backbone: `provenance.startedAt`) to its
   * result. A resumed run adds the earlier sessions' time up to the checkpoint it resumed from
   * (carried in the checkpoint's `state.json` `wallMs`, `benchmarks/trainer.ts`): each session
   * counts from its start to its last checkpoint, so the time a kill lost after a checkpoint is
   * not counted and the steps redone are (once, in the session that redid them);
   * `provenance.startedAt`/`finishedAt` are the last session's. After a resume from a checkpoint
   * written before checkpoints carried `wallMs`, the earlier sessions count as their training
   * steps' time (`trainMs`), or as 0 when that is missing too: a lower bound. Results of resumed runs
   * written before checkpoints carried `wallMs` count their last session only.
   */
  readonly wallSeconds: number;
  /** The weights actually loaded, e.g. `"random(seed=3)"` or a folder path / hub id. */
  readonly backboneSource: string;
  /**
   * The tokenizer used: `backbone` (the backbone folder's own `tokenizer.json`),
   * `backbone:spiece.model` (converted in memory from the folder's SentencePiece model, which it
   * has in place of a `tokenizer.json`), `task-spm:<file>` (the cached
   * SentencePiece vocabulary of the task corpus, shared with the pretrained backbone) or
   * `fixture:<file>` (the offline GLUE tokenizer). Absent in results written before it existed.
   */
  readonly tokenizer?: string;
  /**
   * Attention mass per task on the hyper-prompt slots (methods with a self-attention prefix in
   * their `flopPlan` only: `run_one.ts` `measuresAttentionMass`).
   */
  readonly attentionMass?: Readonly<Record<string, AttentionMass>>;
  /**
   * The micro-batch the bench preflight chose for the device (rows per forward/backward pass,
   * a divisor of `spec.train.batchSize`; {@link RunOneOptions.microBatchSize}); absent when the
   * run trained as its spec says. A run resumed on another device may have used another one
   * before the resume: this is the last session's, and `provenance.resumedFrom.microBatchSizes`
   * lists every session's when they differ.
   */
  readonly effectiveMicroBatchSize?: number;
  /**
   * Test-set predictions for the leaderboards (present only when `spec.train.predictTest`):
   * where they are and, per file, the step whose weights made them (the task's best step; a
   * diagnostic's is its host task's, {@link TEST_DIAGNOSTICS}).
   */
  readonly testPredictions?: TestPredictions;
  /**
   * The run's kept weights (present only when `spec.train.saveWeights`): where the runner put
   * them and which step's they are.
   */
  readonly weights?: SavedWeights;
}

/** {@link RunResult.weights}. */
export interface SavedWeights {
  /**
   * Folder of the weights, relative to the results folder (outDir): `weights/<run file stem>`
   * ({@link weightsDir}), holding `method.safetensors` (`model/methods/weights.ts`
   * `loadMethodVariables` puts it into a method instance built from the result's `spec`).
   */
  readonly dir: string;
  /**
   * The optimizer step whose weights they are: the last (`spec.train.steps`). The scores are of
   * each task's best evaluation step (`best`), which may be an earlier one.
   */
  readonly step: number;
  /**
   * Whether the method trained backbone weights too (an unfrozen backbone): then they are kept in
   * {@link SavedWeights.backbone}; false when the backbone was frozen (the run's `backboneSource`
   * and provenance name it, and no backbone is kept).
   */
  readonly backboneTrained: boolean;
  /**
   * Present when `backboneTrained` (absent in results written before it was kept): the folder
   * inside `dir`
   * ({@link SAVED_BACKBONE_FOLDER}) holding the trained backbone as a Hugging Face folder
   * (`config.json`, `generation_config.json`, `model.safetensors`) with the run's tokenizer files
   * (`tokenizer.json`, or `spiece.model` and `tokenizer_config.json`), which `{"hf": "<results
   * folder>/<dir>/backbone"}` loads with the run's tokenizer.
   */
  readonly backbone?: string;
  /**
   * Present when the run's tokenizer could not be copied into {@link SavedWeights.backbone} (a
   * source that is not a file, or a file gone or changed since the run read it): that source
   * (`RunResult.tokenizer`); the folder then has no tokenizer (give one when loading it).
   */
  readonly backboneTokenizerMissing?: string;
}

/** The folder of a kept trained backbone inside a run's weights folder ({@link SavedWeights}). */
export const SAVED_BACKBONE_FOLDER = "backbone";

/** {@link RunResult.testPredictions}. */
export interface TestPredictions {
  /**
   * Folder of the prediction files, relative to the results folder (outDir):
   * `test_predictions/<run file stem>` ({@link testPredictionsDir}).
   */
  readonly dir: string;
  /**
   * Per written file (`<dir>/<task>.jsonl`; task name, incl. "ax"/"axb"/"axg"): the step whose
   * weights made it and its number of lines (examples).
   */
  readonly files: Readonly<Record<string, { readonly step: number; readonly examples: number }>>;
}

/**
 * The diagnostics (test-only sets) whose leaderboard predictions come from a trained task's
 * weights: AX from MNLI's, AX-b and AX-g from SuperGLUE RTE's (`rte_sg`), as T5 submits them.
 */
export const TEST_DIAGNOSTICS: Readonly<Record<string, readonly string[]>> = {
  mnli: ["ax"],
  rte_sg: ["axb", "axg"],
};

/**
 * The files of a task's {@link testSplits} that the data folder lacks: for a diagnostic of
 * {@link TEST_DIAGNOSTICS}, what must be there when a `train.predictTest` run starts for its
 * predictions to be written at all (the run skips it otherwise; bench downloads it first and
 * names what is still missing).
 *
 * @param task a registry task name
 * @param dataDir the data folder
 * @returns the missing paths, relative to `dataDir`, in split order
 */
export function missingTestFiles(task: string, dataDir: string): string[] {
  return testSplits(task).flatMap((s) => getTask(task).files[s] ?? []).map((f) => f.path)
    .filter((f) => !existsSync(join(dataDir, f)));
}

/**
 * The test splits a task's leaderboard predictions cover: the registry's `test_*` splits when it
 * lists any (MNLI: `test_matched`, `test_mismatched`), else `test` when it has a test file, else
 * none (a train-only task).
 *
 * @param task a registry task name
 * @returns the splits, each a valid `split` of `tasks/load.ts` `loadExamples`
 */
export function testSplits(task: string): TaskSplit[] {
  const files = getTask(task).files;
  const named = (Object.keys(files) as TaskSplit[]).filter((s) => s.startsWith("test_"));
  if (named.length > 0) return named;
  return files.test === undefined ? [] : ["test"];
}

/**
 * The official number of test examples of a task's {@link testSplits} (the registry's row
 * counts; the flattened count for MultiRC / ReCoRD), or 0 where the registry gives none: what a
 * test-set decoding reads (for estimates).
 *
 * @param task a registry task name
 */
export function testRows(task: string): number {
  return splitFiles(task, testSplits(task)).reduce((a, f) => a + (fileRows(f) ?? 0), 0);
}

/**
 * The official number of examples of a task's evaluation split(s) (`evalSplits`: MNLI's two),
 * from the registry's row counts (MultiRC's answers); undefined where it gives none (for
 * estimates).
 *
 * @param task a registry task name
 */
export function validationRows(task: string): number | undefined {
  let n = 0;
  for (const f of splitFiles(task, evalSplits(task))) {
    const rows = fileRows(f);
    if (rows === undefined) return undefined;
    n += rows;
  }
  return n;
}

/** The registry's files of `splits` of a task, in split order. */
function splitFiles(task: string, splits: readonly TaskSplit[]): TaskFile[] {
  const files = getTask(task).files;
  return splits.flatMap((split) => files[split] ?? []);
}

/** A registry file's official row count (the largest where versions differ), if it gives one. */
function fileRows(f: TaskFile): number | undefined {
  const r = f.rows;
  return r === undefined ? undefined : Array.isArray(r) ? Math.max(...r) : r;
}

/**
 * The folder of a run's test-set predictions relative to its results folder:
 * `test_predictions/<runFileName(spec) without .json>`.
 *
 * @param spec the run
 */
export function testPredictionsDir(spec: RunSpec): string {
  return `test_predictions/${runFileName(spec).slice(0, -".json".length)}`;
}

/**
 * The folder in a run's work folder ({@link RunOneOptions.outDir}) where `runOne` puts its kept
 * weights (`train.saveWeights`) at the end of training, for the runner to move to
 * {@link weightsDir}.
 */
export const FINAL_WEIGHTS_FOLDER = "final";

/**
 * The folder of a run's kept weights (`train.saveWeights`) relative to its results folder:
 * `weights/<runFileName(spec) without .json>`.
 *
 * @param spec the run
 */
export function weightsDir(spec: RunSpec): string {
  return `weights/${runFileName(spec).slice(0, -".json".length)}`;
}

/** Options of `runOne` (implemented in `benchmarks/run_one.ts`). */
export interface RunOneOptions {
  /**
   * A folder for this run only (`<out>/<runFileName without .json>/`): its checkpoints and, with
   * `train.saveWeights`, its kept weights ({@link FINAL_WEIGHTS_FOLDER}); the runner empties it
   * before a fresh run, moves the weights out and removes it once the result is written.
   * The runner writes the result JSON itself, beside it.
   */
  readonly outDir: string;
  /**
   * The results folder, where a run with `train.predictTest` writes its test-set predictions
   * (`<resultsDir>/test_predictions/<run file stem>/`, {@link testPredictionsDir}): they outlive
   * the run's work folder. Default: the parent of {@link RunOneOptions.outDir}, as `runGrid` lays
   * them out.
   */
  readonly resultsDir?: string;
  /** Root of the GLUE/SuperGLUE files. */
  readonly dataDir: string;
  /**
   * Progress callback (step counts are optimizer steps; an evaluation reports `phase: "eval"` as
   * it starts, then `phase: "decode"` after each decode batch of its validation sets and of the
   * test sets it rewrites; a resume from a checkpoint reports `phase: "resume"` first). Called
   * synchronously from the run's loop: keep it cheap (the bench's bars only store the report).
   */
  readonly onProgress?: (p: RunProgress) => void;
  /**
   * Rows per forward/backward pass chosen for this device by the bench preflight
   * (`benchmarks/device_memory.ts`) for a run whose spec sets no `train.microBatchSize`: it
   * trains (and evaluates) with that micro-batch; the runner (`runGrid`) records it in the result
   * as {@link RunResult.effectiveMicroBatchSize}. Not part of the spec, so the run id is
   * unchanged.
   */
  readonly microBatchSize?: number;
  /**
   * The wall-clock checkpoint interval in minutes of a run that writes checkpoints
   * (`benchmarks/trainer.ts` `TrainOptions.checkpointMinutes`; default its
   * `DEFAULT_CHECKPOINT_MINUTES`, 0 off): the bench's `--checkpoint-minutes`. Not part of the
   * spec: the run id and the results are unchanged.
   */
  readonly checkpointMinutes?: number;
  /**
   * Where `model/backend.ts` `selectBackend`'s summary of the run's backend goes (default:
   * `run_one.ts` `backendSayer`'s line on stderr, printed when it differs from the last).
   */
  readonly backendLog?: (summary: string) => void;
}

/** A progress report from `runOne`: of a step ({@link RunStepProgress}) or of a decoding. */
export type RunProgress = RunStepProgress | RunDecodeProgress;

/** A report of `runOne`'s steps: one finished, an evaluation starting, or a resume. */
export interface RunStepProgress {
  /**
   * `train`: an optimizer step finished; `eval`: an evaluation is starting (once per evaluation;
   * its decoding is reported by {@link RunDecodeProgress}); `resume`: the run continues from its
   * checkpoint of `step` (`benchmarks/trainer.ts` `TrainOptions.onResume`: once, before any
   * other report of the run, and only for a resumed run; no step is done).
   */
  readonly phase: "train" | "eval" | "resume";
  /**
   * Optimizer steps done so far (the step just finished, the step being evaluated, or the step
   * of the checkpoint resumed from).
   */
  readonly step: number;
  /** The run's total optimizer steps (`train.steps`). */
  readonly totalSteps: number;
  /** Training loss of the step just done (`train` reports only). */
  readonly loss?: number;
}

/**
 * A report of an evaluation's greedy decoding (`benchmarks/evaluator.ts` `decodeSet`), per task:
 * once before its first decode batch (`done` 0) and after each batch, `done` rising to `total`.
 * The validation sets are decoded first (`split: "validation"`), then, with `train.predictTest`,
 * the test sets of the tasks whose best this evaluation is (`split: "test"`, a diagnostic under
 * its own name, e.g. `axb`).
 */
export interface RunDecodeProgress {
  /** Tells this report from the other {@link RunProgress} kinds. */
  readonly phase: "decode";
  /** The step being evaluated. */
  readonly step: number;
  /** The run's total optimizer steps (`train.steps`). */
  readonly totalSteps: number;
  /** Which set is decoded: the task's evaluation set or its test-set predictions. */
  readonly split: "validation" | "test";
  /** The task (or diagnostic) whose set is decoded. */
  readonly task: string;
  /** Rows decoded so far. */
  readonly done: number;
  /**
   * Rows to decode: the set's examples, plus the rows decoded again to the run's limit
   * (`EvalSet.untightened`) once the first pass has found them (so it may grow, to at most
   * twice the examples).
   */
  readonly total: number;
}

/** Signature of `runOne`, injectable into the runner (tests pass a fake). */
export type RunOneFn = (spec: RunSpec, opts: RunOneOptions) => Promise<RunResult>;

// ---------------------------------------------------------------------------------------------
// Stable ids and file names

/** JSON with object keys sorted recursively (the canonical form hashed by {@link runId}). */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v !== null && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) {
      const x = (v as Record<string, unknown>)[k];
      if (x !== undefined) out[k] = sortKeys(x);
    }
    return out;
  }
  return v;
}

/**
 * The id of a run: the first 12 hex digits of SHA-256 over the canonical JSON of the spec
 * without its `id`. Equal content gives equal ids on every machine.
 *
 * @param spec the run spec (its `id`, if present, is ignored)
 * @returns 12 lowercase hex digits
 * @example
 * ```ts
 * import { runId } from "./spec.ts";
 * console.assert(runId({ a: 1, b: 2 } as never) === runId({ b: 2, a: 1 } as never));
 * ```
 */
export function runId(spec: Omit<RunSpec, "id"> | RunSpec): string {
  const { id: _id, ...rest } = spec as RunSpec;
  return createHash("sha256").update(canonicalJson(rest)).digest("hex").slice(0, 12);
}

/**
 * The id of a run's configuration: like {@link runId} but without the seed, so the runs of one
 * grid cell over its seeds share it and runs of different configurations (an edited profile,
 * another backend or task set) do not. Tables average seeds only within one configuration id.
 *
 * @param spec the run spec (its `id` and `seed` are ignored)
 * @returns 12 lowercase hex digits
 */
export function configId(spec: Omit<RunSpec, "id"> | RunSpec): string {
  const { id: _id, seed: _seed, ...rest } = spec as RunSpec;
  // The task runs of a per-task method differ only in their task: one configuration, whose
  // `perTaskOf` (kept) names every task, so it differs from a multi-task run's.
  const body = rest.perTaskOf === undefined ? rest : { ...rest, tasks: undefined };
  return createHash("sha256").update(canonicalJson(body)).digest("hex").slice(0, 12);
}

/**
 * Every task a run trains, in mixture order: its evaluated `tasks`, then its train-only tasks
 * ({@link RunSpec.trainOnlyTasks}). What the mixture samples and the data files read; the task
 * ids its examples carry are {@link trainedTaskIds}'.
 *
 * @param spec the run
 * @returns the task names
 */
export function trainedTasks(spec: Pick<RunSpec, "tasks" | "trainOnlyTasks">): string[] {
  return [...spec.tasks, ...(spec.trainOnlyTasks ?? [])];
}

/**
 * The tasks a run's method tells apart (task id = index): its evaluated `tasks`, then each
 * train-only task that does not share the task id of one of them (`tasks/types.ts`
 * `sharesTaskIdWith`: DPR trains WSC's id where the run has WSC, so SuperGLUE has the paper's 8
 * tasks). What sizes a method's per-task variables and the parameter, FLOP and memory
 * accounting.
 *
 * @param spec the run
 * @returns the task names
 */
export function conditionedTasks(spec: Pick<RunSpec, "tasks" | "trainOnlyTasks">): string[] {
  return [...spec.tasks, ...(spec.trainOnlyTasks ?? []).filter((t) => sharedId(spec, t) < 0)];
}

/**
 * The task id each of {@link trainedTasks} carries: its index in {@link conditionedTasks}.
 *
 * @param spec the run
 * @returns one id per trained task, in mixture order
 */
export function trainedTaskIds(spec: Pick<RunSpec, "tasks" | "trainOnlyTasks">): number[] {
  const conditioned = conditionedTasks(spec);
  return trainedTasks(spec).map((t) => {
    const shared = sharedId(spec, t);
    return shared >= 0 ? shared : conditioned.indexOf(t);
  });
}

/** The index in `spec.tasks` of the task whose id train-only `task` shares; -1 when none. */
function sharedId(spec: Pick<RunSpec, "tasks">, task: string): number {
  const host = spec.tasks.includes(task) ? undefined : getTask(task).sharesTaskIdWith;
  return host === undefined ? -1 : spec.tasks.indexOf(host);
}

/**
 * The `hf` reference (local folder or hub id) a run's backbone weights are loaded from: an
 * `{"hf"}` backbone, or the `{"hf"}` model of a `"pretrained"` backbone. Undefined for a random
 * init and for a preset's pretrained checkpoint (published, or built here offline).
 * `benchmarks/run_one.ts` `buildBackbone` loads from it; the memory preflight reads its tables.
 *
 * @param spec the run
 * @returns the reference, or undefined
 */
export function backboneHfRef(spec: Pick<RunSpec, "model" | "backbone">): string | undefined {
  if (typeof spec.backbone === "object") return spec.backbone.hf;
  if (spec.backbone === "pretrained" && typeof spec.model === "object") return spec.model.hf;
  return undefined;
}

/**
 * One spelling of an `{"hf"}` reference: `\` written `/`, repeated `/` and `.` segments dropped
 * (a leading `./` stays: it marks a folder, not a hub id) and no trailing `/`
 * (`/data//a/./t5-base/` -> `/data/a/t5-base`). A relative folder stays relative (not resolved
 * against the working folder, so a baseline made on another machine keeps matching), and `..`
 * segments stay. A hub id (`name`, `org/name`: no `\`, no empty or `.` segment) is returned
 * exactly as written. Profiles are validated with their references in this form
 * ({@link validateProfile}), so two spellings of one folder are one run id and configuration id;
 * `compare.ts` `refKey` keys references by it, so a result file written before keeps its key.
 *
 * @param hf the reference as written
 * @returns the reference in its one spelling
 */
export function normalHfRef(hf: string): string {
  const absolute = /^[\\/]/.test(hf);
  const parts = hf.split(/[\\/]+/).filter((p, i) => p !== "" && (p !== "." || i === 0));
  return (absolute ? "/" : "") + parts.join("/");
}

/** Display name of a model reference: the preset name, or the last path segment of `hf`. */
export function modelLabel(model: ModelRef): string {
  if (typeof model === "string") return model;
  const parts = model.hf.split(/[\\/]/).filter((p) => p.length > 0);
  return parts[parts.length - 1] ?? model.hf;
}

/**
 * The task of one task's run of a per-task method ({@link RunSpec.perTaskOf}) in brackets, as run
 * labels show it after the method label (`Prompt-Tuning[cola]`); "" for a multi-task run.
 *
 * @param spec the run
 * @returns `[<task>]`, or ""
 */
export function perTaskTag(spec: Pick<RunSpec, "perTaskOf" | "tasks">): string {
  return spec.perTaskOf === undefined ? "" : `[${spec.tasks.join("+")}]`;
}

/**
 * File name of a run's result JSON: readable fields then the id,
 * `<profile>--<model>--<backbone>--<benchmark>--<label>--s<seed>--<id>.json` (unsafe characters
 * -> `_`); a per-task run ({@link RunSpec.perTaskOf}) has its task after the label,
 * `…--<label>--<task>--s<seed>--<id>.json`.
 */
export function runFileName(spec: RunSpec): string {
  const safe = (s: string) => s.replace(/[^A-Za-z0-9._-]+/g, "_");
  return [
    safe(spec.profile),
    safe(modelLabel(spec.model)),
    safe(backboneLabel(spec.backbone)),
    spec.benchmark,
    safe(spec.method.label),
    ...(spec.perTaskOf === undefined ? [] : [safe(spec.tasks.join("+"))]),
    `s${spec.seed}`,
    spec.id,
  ].join("--") + ".json";
}

// ---------------------------------------------------------------------------------------------
// Validation

/** Maps a JSON path such as `$.train.steps` to a 1-based line of the source text, if known. */
export type Locator = (path: string) => number | undefined;

/** Where a value being validated came from. */
export interface Source {
  /** File path (or another description) named in errors. */
  readonly file: string;
  /** Optional line lookup for JSON paths. */
  readonly locate?: Locator;
}

/**
 * The line of `path`, else of its nearest ancestor the source gives (`$.methods[1].label` when
 * the label is a default, not written: the line of `$.methods[1]`).
 *
 * @param locate the line lookup
 * @param path a JSON path
 * @returns the line, or undefined when neither the path nor any ancestor is located
 */
export function locateNearest(locate: Locator, path: string): number | undefined {
  for (let p: string | undefined = path; p !== undefined;) {
    const line = locate(p);
    if (line !== undefined) return line;
    p = /^(.+?)(?:\.[^.[\]]*|\[\d+\])$/.exec(p)?.[1];
  }
  return undefined;
}

/**
 * A validation error naming file, line and JSON path. The line is the path's, or its nearest
 * located ancestor's when the offending value is a default or a merged one not written there.
 */
export class SpecError extends Error {
  /** JSON path of the offending field. */
  readonly path: string;
  /** Source file. */
  readonly file: string;
  /** What is wrong: the part of the message after the path. */
  readonly reason: string;
  /**
   * The other errors found in the same file, each on a line of its own after this one's in the
   * message ({@link validateProfile} checks every independent part of a profile).
   */
  readonly others: readonly SpecError[];
  /** What goes between the path and the reason in the message: `" "` or `": "`. */
  readonly separator: " " | ": ";
  /**
   * Create an error; `message` is the part after the path; `others` follow it. `separator` goes
   * between path and message: a space for a message that reads on from the path (`$.seeds must
   * be …`), `": "` for a sentence of its own (a method's configuration error).
   */
  constructor(
    src: Source,
    path: string,
    message: string,
    others: readonly SpecError[] = [],
    separator: " " | ": " = " ",
  ) {
    const line = src.locate === undefined ? undefined : locateNearest(src.locate, path);
    super(
      `${src.file}${line === undefined ? "" : `:${line}`}: ${path}${separator}${message}` +
        others.map((e) => `\n${e.message}`).join(""),
    );
    this.name = "SpecError";
    this.path = path;
    this.file = src.file;
    this.reason = message;
    this.others = others;
    this.separator = separator;
  }
}

/**
 * The first repeat among `keys`: the index of the first key equal to an earlier one, and that
 * earlier one's index (a profile names each model, backbone and task once).
 *
 * @param keys the keys, in the profile's order
 * @returns `[i, j]` with `keys[i] === keys[j]` and `j < i`, `i` the smallest such; undefined when
 *   every key is distinct
 */
export function firstRepeat(keys: readonly string[]): [number, number] | undefined {
  const seen = new Map<string, number>();
  for (const [i, k] of keys.entries()) {
    const j = seen.get(k);
    if (j !== undefined) return [i, j];
    seen.set(k, i);
  }
  return undefined;
}

/**
 * What a field of the wrong type is told: `must be <what>, got <value>`, or, for an absent field
 * (undefined: JSON has no such value), `is missing (must be <what>)`.
 */
function mustBe(what: string, v: unknown, sep = ","): string {
  return v === undefined
    ? `is missing (must be ${what})`
    : `must be ${what}${sep} got ${briefJson(v)}`;
}

function obj(v: unknown, src: Source, path: string): Record<string, unknown> {
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    throw new SpecError(src, path, mustBe("an object", v));
  }
  return v as Record<string, unknown>;
}

function noExtraKeys(
  o: Record<string, unknown>,
  known: readonly string[],
  src: Source,
  path: string,
): void {
  for (const k of Object.keys(o)) {
    if (!known.includes(k)) {
      const near = nearestName(k, known);
      throw new SpecError(
        src,
        `${path}.${k}`,
        `is not a known field${near === undefined ? "" : ` (did you mean ${near}?)`}; known ` +
          `fields: ${known.join(", ")}`,
      );
    }
  }
}

function str(v: unknown, src: Source, path: string): string {
  if (typeof v !== "string" || v.length === 0) {
    throw new SpecError(src, path, mustBe("a non-empty string", v));
  }
  return v;
}

function oneOf<T extends string>(
  v: unknown,
  choices: readonly T[],
  src: Source,
  path: string,
): T {
  if (typeof v !== "string" || !(choices as readonly string[]).includes(v)) {
    throw new SpecError(src, path, mustBe(`one of ${choices.join(", ")}`, v, ";"));
  }
  return v as T;
}

/**
 * The bound of every integer field without a tighter one: 2^53 − 1, the largest integer a JSON
 * number (a double) holds exactly; `1e20` is an integer to JavaScript, but not the one written.
 */
const MAX_INT = Number.MAX_SAFE_INTEGER;
const MAX_INT_WHY = "2^53 - 1, the largest integer a JSON number holds exactly";

/** The bound of an integer that becomes a tensor dimension (a batch, a length, a vocabulary). */
const MAX_DIM = 2 ** 31 - 1;
const MAX_DIM_WHY = "2^31 - 1, the largest tensor dimension: WebGPU kernels take them as i32";

function num(
  v: unknown,
  src: Source,
  path: string,
  opts: { int?: boolean; min?: number; max?: number; maxWhy?: string; minExclusive?: boolean } = {},
): number {
  const what = opts.int ? "an integer" : "a number";
  if (typeof v === "number" && !Number.isFinite(v)) {
    // JSON has no Infinity or NaN: only a literal beyond the double range (1e400) parses so.
    throw new SpecError(
      src,
      path,
      `must be ${what}, got a number beyond the range of a double (it parses as ${v})`,
    );
  }
  if (typeof v !== "number" || (opts.int && !Number.isInteger(v))) {
    throw new SpecError(src, path, mustBe(what, v));
  }
  const min = opts.min ?? (opts.int ? -MAX_INT : undefined);
  if (min !== undefined && (opts.minExclusive ? v <= min : v < min)) {
    throw new SpecError(src, path, `must be ${opts.minExclusive ? ">" : ">="} ${min}, got ${v}`);
  }
  const max = opts.max ?? (opts.int ? MAX_INT : undefined);
  const why = opts.max === undefined ? (opts.int ? MAX_INT_WHY : undefined) : opts.maxWhy;
  if (max !== undefined && v > max) {
    throw new SpecError(src, path, `must be <= ${max}${why ? ` (${why})` : ""}, got ${v}`);
  }
  return v;
}

/** {@link num} for an integer that becomes a tensor dimension: at most {@link MAX_DIM}. */
function dim(v: unknown, src: Source, path: string, min: number): number {
  return num(v, src, path, { int: true, min, max: MAX_DIM, maxWhy: MAX_DIM_WHY });
}

function arr(v: unknown, src: Source, path: string, nonEmpty = true): unknown[] {
  if (!Array.isArray(v)) throw new SpecError(src, path, mustBe("an array", v));
  if (nonEmpty && v.length === 0) throw new SpecError(src, path, "must not be empty");
  return v;
}

function hfRef(
  v: unknown,
  src: Source,
  path: string,
  hfProblem?: (hf: string) => string | undefined,
): { hf: string } {
  const o = obj(v, src, path);
  noExtraKeys(o, ["hf"], src, path);
  const hf = str(o.hf, src, `${path}.hf`);
  const problem = hfProblem?.(hf);
  if (problem !== undefined) throw new SpecError(src, `${path}.hf`, problem);
  // Checked as written (a folder's own spelling), kept in one spelling (run ids hash it).
  return { hf: normalHfRef(hf) };
}

/**
 * Validate a model reference. Preset names are checked against `presetNames` when given.
 *
 * @param v raw JSON value
 * @param src source named in errors
 * @param path JSON path of the value
 * @param presetNames known preset names (omit to accept any string)
 * @param hfProblem what is wrong with an `{"hf": ...}` reference, if anything
 *   ({@link ProfileChecks.hfProblem}; omit to accept any string)
 * @returns the model reference
 */
export function validateModelRef(
  v: unknown,
  src: Source,
  path: string,
  presetNames?: readonly string[],
  hfProblem?: (hf: string) => string | undefined,
): ModelRef {
  if (typeof v === "string") {
    if (presetNames && !presetNames.includes(v)) {
      throw new SpecError(
        src,
        path,
        `names unknown preset "${v}"; known presets: ${
          presetNames.join(", ")
        } (or use {"hf": "<folder or hub id>"})`,
      );
    }
    return v;
  }
  return hfRef(v, src, path, hfProblem);
}

/**
 * Validate a (partial) training spec and merge it over `base`.
 *
 * @param v raw JSON object (every field optional)
 * @param src source named in errors
 * @param path JSON path of the object
 * @param base values for absent fields
 * @returns the complete training spec
 */
export function validateTrain(
  v: unknown,
  src: Source,
  path: string,
  base: TrainSpec = DEFAULT_TRAIN,
): TrainSpec {
  const o = obj(v, src, path);
  noExtraKeys(
    o,
    [
      ...Object.keys(DEFAULT_TRAIN),
      "microBatchSize",
      "adafactor",
      "zLoss",
      "predictTest",
      "saveWeights",
    ],
    src,
    path,
  );
  const p = (k: string) => `${path}.${k}`;
  const get = <K extends keyof TrainSpec>(k: K): unknown => o[k] === undefined ? base[k] : o[k];
  const sRaw = o.schedule === undefined ? base.schedule : obj(o.schedule, src, p("schedule"));
  noExtraKeys(sRaw as Record<string, unknown>, ["kind", "warmupSteps"], src, p("schedule"));
  const sched = sRaw as Record<string, unknown>;
  let schedule: ScheduleSpec = {
    kind: oneOf(
      orDefault(sched.kind, base.schedule.kind),
      ["constant", "warmup_linear", "warmup_rsqrt"],
      src,
      p("schedule.kind"),
    ),
    // A partial override (`{"kind": "warmup_rsqrt"}`) keeps the inherited warmup.
    warmupSteps: num(
      orDefault(sched.warmupSteps, base.schedule.warmupSteps),
      src,
      p("schedule.warmupSteps"),
      {
        int: true,
        min: 0,
      },
    ),
  };
  if (schedule.kind === "constant" && schedule.warmupSteps > 0) {
    // Unread by learningRateAt: refused where written (a "constant with warmup" would train
    // without one), and an inherited one becomes 0, so an unread setting changes no run id.
    if (o.schedule !== undefined && sched.warmupSteps !== undefined) {
      throw new SpecError(
        src,
        p("schedule.warmupSteps"),
        `is ${schedule.warmupSteps}, but a "constant" schedule has no warmup: give 0 (or leave ` +
          `it out), or choose "warmup_linear" or "warmup_rsqrt"`,
      );
    }
    schedule = { kind: "constant", warmupSteps: 0 };
  }
  const optimizer = oneOf(get("optimizer"), ["adafactor", "adamw"], src, p("optimizer"));
  let adafactor = validateAdafactor(o.adafactor, base.adafactor, src, p("adafactor"));
  if (adafactor !== undefined && optimizer !== "adafactor") {
    if (o.adafactor !== undefined) {
      throw new SpecError(
        src,
        p("adafactor"),
        `applies to optimizer "adafactor" only; the optimizer is ${briefJson(optimizer)}`,
      );
    }
    adafactor = undefined; // inherited settings do not apply once an override picks AdamW
  }
  const mixture = oneOf(get("mixture"), ["proportional", "temperature"], src, p("mixture"));
  if (mixture !== "temperature" && o.temperature !== undefined) {
    throw new SpecError(
      src,
      p("temperature"),
      `applies to mixture "temperature" only; the mixture is ${briefJson(mixture)}`,
    );
  }
  // Unread by a proportional mixture: the default, so that an inherited temperature (an override
  // that picks "proportional") changes no run id.
  const temperature = mixture === "temperature"
    ? num(get("temperature"), src, p("temperature"), { min: 0, minExclusive: true })
    : DEFAULT_TRAIN.temperature;
  const clip = get("clipNorm");
  const evalMax = get("evalMaxExamples");
  const micro = get("microBatchSize");
  const zRaw = get("zLoss");
  const zLoss = zRaw === undefined ? 0 : num(zRaw, src, p("zLoss"), { min: 0 });
  const predictRaw = get("predictTest");
  const predictTest = predictRaw === undefined ? false : bool(predictRaw, src, p("predictTest"));
  const saveRaw = get("saveWeights");
  const saveWeights = saveRaw === undefined ? false : bool(saveRaw, src, p("saveWeights"));
  const t: TrainSpec = {
    optimizer,
    learningRate: num(get("learningRate"), src, p("learningRate"), { min: 0, minExclusive: true }),
    schedule,
    // The optimizers' own bound (benchmarks/optim.ts): refused here, naming the field, before any
    // run rather than by each run at its first step.
    weightDecay: num(get("weightDecay"), src, p("weightDecay"), {
      min: 0,
      max: 1e3,
      maxWhy: "the optimizers' bound, benchmarks/optim.ts",
    }),
    steps: num(get("steps"), src, p("steps"), { int: true, min: 1 }),
    batchSize: dim(get("batchSize"), src, p("batchSize"), 1),
    maxInputLength: dim(get("maxInputLength"), src, p("maxInputLength"), 2),
    maxTargetLength: dim(get("maxTargetLength"), src, p("maxTargetLength"), 1),
    dropout: num(get("dropout"), src, p("dropout"), { min: 0, max: 0.99 }),
    labelSmoothing: num(get("labelSmoothing"), src, p("labelSmoothing"), { min: 0, max: 0.99 }),
    clipNorm: clip === null ? null : num(clip, src, p("clipNorm"), { min: 0, minExclusive: true }),
    mixture,
    temperature,
    evalEvery: num(get("evalEvery"), src, p("evalEvery"), { int: true, min: 1 }),
    checkpointEvery: num(get("checkpointEvery"), src, p("checkpointEvery"), { int: true, min: 0 }),
    evalMaxExamples: evalMax === null
      ? null
      : num(evalMax, src, p("evalMaxExamples"), { int: true, min: 1 }),
    // Only present when set, so that specs without it keep their canonical JSON and run id.
    ...(micro === undefined ? {} : { microBatchSize: dim(micro, src, p("microBatchSize"), 1) }),
    ...(adafactor === undefined ? {} : { adafactor }),
    ...(zLoss === 0 ? {} : { zLoss }),
    ...(predictTest ? { predictTest } : {}),
    ...(saveWeights ? { saveWeights } : {}),
  };
  if (t.microBatchSize !== undefined && t.batchSize % t.microBatchSize !== 0) {
    throw o.microBatchSize === undefined
      ? new SpecError(
        src,
        p("batchSize"),
        `must be a multiple of microBatchSize (${t.microBatchSize}), got ${t.batchSize}`,
      )
      : new SpecError(
        src,
        p("microBatchSize"),
        `must divide batchSize (${t.batchSize}), got ${t.microBatchSize}`,
      );
  }
  if (t.schedule.kind !== "constant" && t.schedule.warmupSteps > t.steps) {
    throw new SpecError(
      src,
      p("schedule.warmupSteps"),
      `must be <= steps (${t.steps}), got ${t.schedule.warmupSteps}`,
    );
  }
  return t;
}

/**
 * Validate `adafactor` settings and merge them field by field over the inherited ones.
 * Returns undefined when neither sets a field (the spec then has no `adafactor` key).
 */
function validateAdafactor(
  v: unknown,
  base: AdafactorSpec | undefined,
  src: Source,
  path: string,
): AdafactorSpec | undefined {
  if (v === undefined) return base;
  const o = obj(v, src, path);
  noExtraKeys(o, ADAFACTOR_FIELDS, src, path);
  const scale = orDefault(o.multiplyByParameterScale, base?.multiplyByParameterScale);
  if (scale !== undefined && typeof scale !== "boolean") {
    throw new SpecError(
      src,
      `${path}.multiplyByParameterScale`,
      mustBe("true or false", scale),
    );
  }
  const minDim = orDefault(o.minDimSizeToFactor, base?.minDimSizeToFactor);
  const rateRaw = o.weightDecayRate === undefined ? base?.weightDecayRate : o.weightDecayRate;
  const rate = rateRaw === undefined
    ? 0
    : num(rateRaw, src, `${path}.weightDecayRate`, { min: 0, max: 0.5 });
  const out: AdafactorSpec = {
    ...(scale === undefined ? {} : { multiplyByParameterScale: scale }),
    ...(minDim === undefined ? {} : {
      minDimSizeToFactor: num(minDim, src, `${path}.minDimSizeToFactor`, { int: true, min: 1 }),
    }),
    // 0 is the same training as absent: left out, so it does not change the run id.
    ...(rate === 0 ? {} : { weightDecayRate: rate }),
  };
  return Object.keys(out).length === 0 ? undefined : out;
}

/**
 * Validate regression-gate tolerances. With `taskMetrics`, every key of `metrics` must name a
 * metric some task reports (`accuracy`), a task's own metric (`cb/mean_3class_f1`), or a
 * benchmark average (`average/glue`): a key that matches nothing would be silently unused.
 */
function validateTolerances(
  v: unknown,
  src: Source,
  path: string,
  taskMetrics?: Readonly<Record<string, readonly string[]>>,
): Tolerances {
  if (v === undefined) return { default: 0, metrics: {} };
  const o = obj(v, src, path);
  noExtraKeys(o, ["default", "metrics", "loss", "predictions"], src, path);
  const metrics: Record<string, number> = {};
  if (o.metrics !== undefined) {
    const m = obj(o.metrics, src, `${path}.metrics`);
    for (const [k, x] of Object.entries(m)) {
      const kp = `${path}.metrics.${k}`;
      if (taskMetrics !== undefined) checkToleranceKey(k, taskMetrics, src, kp);
      metrics[k] = num(x, src, kp, { min: 0 });
    }
  }
  return {
    default: num(orDefault(o.default, 0), src, `${path}.default`, { min: 0 }),
    metrics,
    ...(o.loss === undefined ? {} : { loss: num(o.loss, src, `${path}.loss`, { min: 0 }) }),
    ...(o.predictions === undefined || o.predictions === false
      ? {}
      : { predictions: bool(o.predictions, src, `${path}.predictions`) }),
  };
}

function checkToleranceKey(
  key: string,
  taskMetrics: Readonly<Record<string, readonly string[]>>,
  src: Source,
  path: string,
): void {
  const slash = key.indexOf("/");
  if (slash < 0) {
    const all = [...new Set(Object.values(taskMetrics).flat())].sort();
    if (all.includes(key)) return;
    throw new SpecError(
      src,
      path,
      `names no metric of any task; use a metric (${all.join(", ")}), "<task>/<metric>" or ` +
        `"average/<benchmark>"`,
    );
  }
  const task = key.slice(0, slash);
  const metric = key.slice(slash + 1);
  if (task === "average") {
    if ((BENCHMARKS as readonly string[]).includes(metric)) return;
    throw new SpecError(
      src,
      path,
      `names no benchmark average; use ${BENCHMARKS.map((b) => `"average/${b}"`).join(" or ")}`,
    );
  }
  const known = taskMetrics[task];
  if (known === undefined) {
    throw new SpecError(
      src,
      path,
      `names unknown task "${task}"; known tasks: ${Object.keys(taskMetrics).join(", ")}`,
    );
  }
  if (!known.includes(metric)) {
    throw new SpecError(
      src,
      path,
      `names no metric of task "${task}"; its metrics: ${known.join(", ") || "(none)"}`,
    );
  }
}

/**
 * Bare task name: drops a benchmark prefix or suffix (`super_glue_rte`, `rte_sg` -> `rte`).
 *
 * @param name a task name as a profile may list it
 * @returns the name in lower case without its benchmark marker
 */
export function bareTaskName(name: string): string {
  return name.toLowerCase()
    .replace(/^(glue|super_?glue|sg)[_/:-]/, "")
    .replace(/[_-](glue|super_?glue|sg)$/, "");
}

/**
 * The benchmark a name's prefix or suffix names (`glue_cola`, `rte_sg`), if any, and that
 * marker as written (`glue_`, `_sg`).
 */
function markedBenchmark(
  name: string,
): { benchmark: BenchmarkName; marker: string } | undefined {
  const m = /^(glue|super_?glue|sg)[_/:-]/.exec(name.toLowerCase()) ??
    /[_-](glue|super_?glue|sg)$/.exec(name.toLowerCase());
  if (m === null) return undefined;
  return { benchmark: m[1] === "glue" ? "glue" : "super_glue", marker: m[0] };
}

/**
 * Resolve a task name that a profile lists under `benchmark` (`$.tasks.<benchmark>`), as both
 * the profile validator and the runner (`runner.ts` `expandGrid`) resolve it: an exact name of
 * that benchmark's list (case-insensitive), else the task of its source id or registry name
 * `<benchmark>/<bare name>` (`tasks/registry.ts` `taskInBenchmark`, as `getTask` resolves
 * `super_glue/rte`), the name's own benchmark marker dropped ({@link bareTaskName}: `RTE`,
 * `glue_rte`, `GLUE/RTE` -> `rte`, so under `super_glue` `rte` is `rte_sg`, whose id is
 * `super_glue/rte`). A task of the other benchmark (`boolq` under `glue`, `rte_sg` or
 * `super_glue_rte` under `glue`) is named as such rather than as unknown; a name carrying the
 * other benchmark's marker that is none of its tasks (`sg_cola` or `super_glue/cola` under
 * `glue`) is an error, not this benchmark's task of the same bare name.
 *
 * @param benchmark the benchmark the name is listed under
 * @param name the listed name
 * @param lists the tasks a profile may list, per benchmark (registry names)
 * @param sources the task source table searched by id (default `tasks/sources.ts`
 *   `TASK_SOURCES`; tests pass their own)
 * @returns the registry name, or what is wrong (to follow the name's JSON path)
 * @example
 * ```ts
 * import { resolveListedTask } from "./spec.ts";
 * const lists = { glue: ["cola", "rte"], super_glue: ["boolq", "rte_sg"] };
 * console.assert(resolveListedTask("super_glue", "RTE", lists).task === "rte_sg");
 * console.assert(resolveListedTask("glue", "boolq", lists).problem?.includes("a super_glue task"));
 * ```
 */
export function resolveListedTask(
  benchmark: BenchmarkName,
  name: string,
  lists: Readonly<Record<BenchmarkName, readonly string[]>>,
  sources?: Parameters<typeof taskInBenchmark>[2],
): { task: string; problem?: undefined } | { task?: undefined; problem: string } {
  const lower = name.toLowerCase();
  // `b`'s listable task the name gives: its exact name, else `<b>/<bare name>` by source id or
  // registry name.
  const find = (b: BenchmarkName) => {
    const known = lists[b] ?? [];
    const exact = known.find((k) => k === lower);
    if (exact !== undefined) return exact;
    const byId = taskInBenchmark(b, bareTaskName(name), sources);
    return byId !== undefined && known.includes(byId) ? byId : undefined;
  };
  const elsewhere = () => {
    for (const b of BENCHMARKS.filter((b) => b !== benchmark)) {
      const hit = find(b);
      if (hit !== undefined) {
        return {
          problem: `${briefJson(name)} is a ${b} task ("${hit}"); list it under $.tasks.${b}`,
        };
      }
    }
    return undefined;
  };
  const own = lists[benchmark] ?? [];
  const exact = own.find((k) => k === lower);
  if (exact !== undefined) return { task: exact };
  // A prefix or suffix naming the other benchmark (`rte_sg`, `super_glue_rte` under glue): that
  // benchmark's task, or an error; never this benchmark's task of the same bare name (`sg_cola`
  // under glue is not GLUE's CoLA).
  const marked = markedBenchmark(name);
  if (marked !== undefined && marked.benchmark !== benchmark) {
    const wrong = elsewhere();
    if (wrong !== undefined) return wrong;
    return {
      problem:
        `${briefJson(name)}, listed under $.tasks.${benchmark}, carries "${marked.marker}", ` +
        `which marks a ${marked.benchmark} task, and ${marked.benchmark} has no task ` +
        `"${bareTaskName(name)}"; drop the marker for the ${benchmark} task or list a ` +
        `${marked.benchmark} task under $.tasks.${marked.benchmark}`,
    };
  }
  const hit = find(benchmark);
  if (hit !== undefined) return { task: hit };
  // Resolved as `find` resolves a listed name (aliases, a benchmark marker), among every task
  // of the benchmark's sources rather than those a profile may list.
  const named = taskInBenchmark(benchmark, bareTaskName(name), sources);
  const registered = named === undefined ? undefined : getTask(named);
  if (
    registered !== undefined &&
    (registered.trainOnly === true || !hasTrainAndValidation(registered))
  ) {
    // A registered task a profile cannot list: a test-only diagnostic (AX), a train-only task.
    return {
      problem: `${briefJson(name)} is a registered ${benchmark} task without both train and ` +
        `validation files${
          registered.trainOnly === true
            ? " (train-only: a profile adds it with extraTrainTasks)"
            : ""
        }, so it cannot be trained and scored; known: ${own.join(", ")}`,
    };
  }
  return elsewhere() ??
    { problem: `names unknown ${benchmark} task ${briefJson(name)}; known: ${own.join(", ")}` };
}

/**
 * Resolve a profile's listed task names as the runner will ({@link resolveListedTask}) and
 * reject unknown, misplaced and repeated tasks.
 */
function checkListedTasks(
  benchmark: BenchmarkName,
  names: readonly string[],
  lists: Readonly<Record<BenchmarkName, readonly string[]>>,
  src: Source,
  path: string,
): void {
  const seen = new Map<string, number>();
  names.forEach((name, i) => {
    const r = resolveListedTask(benchmark, name, lists);
    if (r.problem !== undefined) throw new SpecError(src, `${path}[${i}]`, r.problem);
    const j = seen.get(r.task);
    if (j !== undefined) {
      throw new SpecError(
        src,
        `${path}[${i}]`,
        `repeats task "${r.task}" (already ${path}[${j}] = ${briefJson(names[j])})`,
      );
    }
    seen.set(r.task, i);
  });
}

/**
 * Resolve a name a profile lists under `$.extraTrainTasks.<benchmark>` to its registry name: one
 * of `lists[benchmark]` (the train-only tasks, `tasks/registry.ts` `TRAIN_ONLY_TASKS`),
 * case-insensitively, with a benchmark prefix (`super_glue/dpr`) or T5's and TFDS's names
 * (`dpr_v001_simple`, `definite_pronoun_resolution`). An evaluated task, a task of the other
 * benchmark or an unknown name gives the problem, to follow the field's path in an error.
 *
 * @param benchmark the benchmark it is listed under
 * @param name the name as the profile gives it
 * @param lists the train-only tasks per benchmark
 * @returns the registry name, or what is wrong
 */
export function resolveTrainOnlyTask(
  benchmark: BenchmarkName,
  name: string,
  lists: Readonly<Record<BenchmarkName, readonly string[]>>,
): { task: string; problem?: undefined } | { task?: undefined; problem: string } {
  const key = name.trim().toLowerCase().replace(/^(super_?glue|sg|glue)[_/\-:]/, "");
  // T5's and TFDS's names (`dpr_v001_simple`, …) by the registry's own aliases.
  const canonical = knownTaskName(key) ?? key;
  if (lists[benchmark].includes(canonical)) return { task: canonical };
  const other = BENCHMARKS.find((b) => b !== benchmark && lists[b].includes(canonical));
  if (other !== undefined) {
    return {
      problem: `${briefJson(name)} is a ${other} task; list it under $.extraTrainTasks.${other}`,
    };
  }
  const known = lists[benchmark].length === 0 ? "none" : lists[benchmark].join(", ");
  return {
    problem: `${briefJson(name)} is not a train-only ${benchmark} task (known: ${known}); an ` +
      "evaluated task goes under $.tasks",
  };
}

function trainOnlyTask(
  benchmark: BenchmarkName,
  name: string,
  lists: Readonly<Record<BenchmarkName, readonly string[]>> | undefined,
  src: Source,
  path: string,
): string {
  // Without the registry's list (a caller that injects no checks) the runner checks the names.
  if (lists === undefined) return name;
  const r = resolveTrainOnlyTask(benchmark, name, lists);
  if (r.problem !== undefined) throw new SpecError(src, path, r.problem);
  return r.task;
}

/** The registry's name of a task name or alias (`tasks/registry.ts` `getTask`), or undefined. */
function knownTaskName(name: string): string | undefined {
  try {
    return getTask(name).name;
  } catch {
    return undefined;
  }
}

/** Smallest trainable vocabulary: 100 sentinels plus 16 pieces (`model/spm.ts`). */
const MIN_VOCAB = 116;

/**
 * Validate partial pretraining overrides (`$.pretrain` of a profile).
 *
 * @param v raw JSON object (every field optional)
 * @param src source named in errors
 * @param path JSON path of the object
 * @returns the overrides, only the fields present
 * @throws SpecError naming file, line and JSON path
 */
export function validatePretrain(
  v: unknown,
  src: Source,
  path: string,
): Partial<PretrainSpec> {
  const o = obj(v, src, path);
  noExtraKeys(o, PRETRAIN_FIELDS, src, path);
  const out: { -readonly [K in Exclude<keyof PretrainSpec, "backend">]?: number } = {};
  const int = (k: Exclude<keyof PretrainSpec, "backend">, min: number, isDim = false) => {
    if (o[k] === undefined) return;
    const at = `${path}.${k}`;
    out[k] = isDim ? dim(o[k], src, at, min) : num(o[k], src, at, { int: true, min });
  };
  int("steps", 1);
  int("batchSize", 1, true);
  int("chunkLength", 4, true);
  if (o.learningRate !== undefined) {
    out.learningRate = num(o.learningRate, src, `${path}.learningRate`, {
      min: 0,
      minExclusive: true,
    });
  }
  int("vocabSize", MIN_VOCAB, true);
  int("seed", 0);
  const backend = o.backend === undefined
    ? undefined
    : oneOf(o.backend, BACKEND_CHOICES, src, `${path}.backend`);
  return { ...out, ...(backend === undefined ? {} : { backend }) };
}

/** Optional checks that need other modules (preset names, method configs), injected by callers. */
export interface ProfileChecks {
  /** Known preset names (`Object.keys(PRESETS)`). */
  readonly presetNames?: readonly string[];
  /**
   * Validates a method's partial configuration and returns the resolved one
   * (the method's `parseConfig`). Its errors should name `source`.
   */
  readonly parseMethodConfig?: (
    name: MethodName,
    raw: unknown,
    source: string,
  ) => Readonly<Record<string, unknown>>;
  /**
   * The trained tasks of each benchmark (`tasks/registry.ts` `BENCHMARK_TASKS`): what a profile
   * without a `tasks` list trains, and the tasks its average is over.
   */
  readonly benchmarkTasks?: Readonly<Record<BenchmarkName, readonly string[]>>;
  /**
   * The tasks a profile's `tasks` may list, per benchmark: every registered task with train and
   * validation files (`runner.ts` `TRAINABLE_TASKS`), a superset of `benchmarkTasks` (default:
   * `benchmarkTasks`). When either is given, the names under `tasks` (for every benchmark, in
   * the grid or not) are resolved as the runner resolves them ({@link resolveListedTask}), and
   * unknown, misplaced (a task of the other benchmark) or repeated tasks are errors.
   */
  readonly trainableTasks?: Readonly<Record<BenchmarkName, readonly string[]>>;
  /**
   * The tasks a profile's `extraTrainTasks` may list, per benchmark (`tasks/registry.ts`
   * `TRAIN_ONLY_TASKS`). When given, a name there that is not one of them (or of another
   * benchmark) is an error; when absent, the names are kept as given and the runner checks them.
   * A repeated name is an error either way.
   */
  readonly trainOnlyTasks?: Readonly<Record<BenchmarkName, readonly string[]>>;
  /**
   * Metric names per canonical task name (`tasks/registry.ts` `TASKS[name].metrics`). When
   * given, tolerance keys must name one of them (see {@link Tolerances}).
   */
  readonly taskMetrics?: Readonly<Record<string, readonly string[]>>;
  /**
   * What is wrong with the value of an `{"hf": ...}` model or backbone (undefined: nothing), e.g.
   * that it is neither a folder nor a hub id; checked when the profile loads rather than when
   * each of its runs fails to load the model.
   */
  readonly hfProblem?: (hf: string) => string | undefined;
  /**
   * What is wrong with a method's resolved configuration (what `parseMethodConfig` returned) on a
   * preset model of the grid (undefined: nothing), e.g. an adapter `reduction` beyond the preset's
   * d, which leaves no bottleneck; `field` names the configuration field at fault (absent: the
   * configuration as a whole). Checked for every method and every preset in `models`; an
   * `{"hf": ...}` model's sizes are known only when it loads, so it is not checked here.
   */
  readonly methodModelProblem?: (
    name: MethodName,
    config: Readonly<Record<string, unknown>>,
    preset: string,
  ) => { readonly field?: string; readonly reason: string } | undefined;
}

/**
 * A method's `parseConfig` on a profile's `config` object, its errors naming the file, the line
 * and JSON path of the field they are about: the method's config reader (`model/methods/
 * _config.ts`) names a field as `config field "<key>"`, and the error is rewritten to start at
 * `<file>:<line of that field>: <path>.<key>`; an error naming no field of the object (a check
 * across fields) keeps the line of the `config` object. Thrown as a {@link SpecError}, so that
 * {@link validateProfile} names the errors of the profile's other parts with it; an error that
 * does not start with the source it was given (a defect, not a bad profile) is rethrown as is.
 */
function parseMethodConfigAt(
  parse: NonNullable<ProfileChecks["parseMethodConfig"]>,
  name: MethodName,
  raw: Record<string, unknown>,
  src: Source,
  path: string,
): Readonly<Record<string, unknown>> {
  const at = (p: string) => {
    const line = src.locate?.(p);
    return `${src.file}${line === undefined ? "" : `:${line}`}: ${p}`;
  };
  const source = at(path);
  try {
    return parse(name, raw, source);
  } catch (e) {
    if (!(e instanceof Error) || !e.message.startsWith(`${source}: `)) throw e;
    // A SpecError, so that validateProfile names the other parts' errors with it.
    const reason = e.message.slice(source.length + 2);
    const key = /\bconfig field "([^"]+)"/.exec(e.message)?.[1];
    const atKey = key !== undefined && Object.hasOwn(raw, key) && /^[A-Za-z_$][\w$]*$/.test(key);
    throw new SpecError(src, atKey ? `${path}.${key}` : path, reason, [], ": ");
  }
}

/**
 * Each method configuration against each preset model of the grid ({@link
 * ProfileChecks.methodModelProblem}): a problem is an error at the field it names,
 * `$.methods[i].config.<field>` (its line, or the nearest written one when the field is a
 * default), else at `$.methods[i].config`, naming the model and its index in `$.models`.
 */
function checkMethodsOnModels(
  problem: NonNullable<ProfileChecks["methodModelProblem"]>,
  raw: readonly unknown[],
  methods: readonly MethodEntry[],
  models: readonly ModelRef[],
  src: Source,
): void {
  for (const [i, m] of methods.entries()) {
    for (const [j, model] of models.entries()) {
      if (typeof model !== "string") continue;
      const p = problem(m.name, m.config, model);
      if (p === undefined) continue;
      const path = `$.methods[${i}].config${p.field === undefined ? "" : `.${p.field}`}`;
      const cfg = (raw[i] as Record<string, unknown>).config as Record<string, unknown> | undefined;
      const written = p.field === undefined || (cfg !== undefined && Object.hasOwn(cfg, p.field));
      throw new SpecError(
        src,
        path,
        `${p.reason}, on model "${model}" ($.models[${j}])${written ? "" : " (the default)"}`,
      );
    }
  }
}

/**
 * Validate a parsed profile JSON.
 *
 * @param raw the parsed JSON
 * @param src the file it came from (and an optional line locator)
 * @param checks optional cross-module checks
 * @returns the validated profile with defaults filled
 * @throws SpecError naming file, line and JSON path; where several independent parts are wrong
 *   (the name, the seeds, the models, each method entry, the training settings, …), the first
 *   error of each, one per line (`others`), so that one load names every part to fix
 */
export function validateProfile(
  raw: unknown,
  src: Source,
  checks: ProfileChecks = {},
): Profile {
  const o = obj(raw, src, "$");
  // Every independent part is checked, so one load names all their errors (a part's first).
  const errors: SpecError[] = [];
  const attempt = <T>(check: () => T): T | undefined => {
    try {
      return check();
    } catch (e) {
      if (!(e instanceof SpecError)) throw e;
      errors.push(e);
      return undefined;
    }
  };
  attempt(() =>
    noExtraKeys(
      o,
      [
        "$schema",
        "name",
        "description",
        "backend",
        "seeds",
        "models",
        "backbone",
        "pretrain",
        "benchmarks",
        "tasks",
        "extraTrainTasks",
        "skipMissingTasks",
        "methods",
        "train",
        "trainOverrides",
        "tolerances",
        "timeBudgetMinutes",
      ],
      src,
      "$",
    )
  );
  const name = attempt(() => {
    const name = str(o.name, src, "$.name");
    if (!/^[A-Za-z0-9._-]+$/.test(name)) {
      throw new SpecError(
        src,
        "$.name",
        `must use only letters, digits, ".", "_", "-"; got ${briefJson(name)}`,
      );
    }
    return name;
  });
  const seeds = attempt(() => {
    const seeds = arr(orDefault(o.seeds, [0]), src, "$.seeds").map((s, i) =>
      num(s, src, `$.seeds[${i}]`, { int: true, min: 0 })
    );
    if (new Set(seeds).size !== seeds.length) {
      throw new SpecError(src, "$.seeds", "must not repeat a seed");
    }
    return seeds;
  });
  const models = attempt(() => {
    const models = arr(o.models, src, "$.models").map((m, i) =>
      validateModelRef(m, src, `$.models[${i}]`, checks.presetNames, checks.hfProblem)
    );
    // One model twice (two spellings of one folder are one after normalHfRef) would give two
    // identical grid cells.
    const modelRepeat = firstRepeat(models.map(canonicalJson));
    if (modelRepeat !== undefined) {
      const [i, j] = modelRepeat;
      throw new SpecError(
        src,
        `$.models[${i}]`,
        `repeats model ${briefJson(models[i])} ($.models[${j}])`,
      );
    }
    return models;
  });
  const backbones = attempt(() => {
    const bbRaw = orDefault(o.backbone, "random");
    const one = (v: unknown, path: string): BackboneRef =>
      typeof v === "string"
        ? oneOf<"random" | "pretrained">(v, ["random", "pretrained"], src, path)
        : hfRef(v, src, path, checks.hfProblem);
    const backbones: BackboneRef[] = Array.isArray(bbRaw)
      ? arr(bbRaw, src, "$.backbone").map((v, i) => one(v, `$.backbone[${i}]`))
      : [one(bbRaw, "$.backbone")];
    const bbRepeat = firstRepeat(backbones.map(canonicalJson));
    if (bbRepeat !== undefined) {
      const [i] = bbRepeat;
      throw new SpecError(src, `$.backbone[${i}]`, `repeats backbone ${briefJson(backbones[i])}`);
    }
    return backbones;
  });
  const pretrain = o.pretrain === undefined
    ? undefined
    : attempt(() => validatePretrain(o.pretrain, src, "$.pretrain"));
  const benchmarks = attempt(() => {
    const benchmarks = arr(o.benchmarks, src, "$.benchmarks").map((b, i) =>
      oneOf(b, BENCHMARKS, src, `$.benchmarks[${i}]`)
    );
    if (new Set(benchmarks).size !== benchmarks.length) {
      throw new SpecError(src, "$.benchmarks", "must not repeat a benchmark");
    }
    return benchmarks;
  });
  const tasks = o.tasks === undefined ? undefined : attempt(() => {
    const t = obj(o.tasks, src, "$.tasks");
    noExtraKeys(t, BENCHMARKS, src, "$.tasks");
    if (Object.keys(t).length === 0) {
      // Read as "no list given" it would train every task, unlike an empty list, refused below.
      throw new SpecError(
        src,
        "$.tasks",
        "must list the tasks of at least one benchmark; leave it out for every task",
      );
    }
    const tasks: Partial<Record<BenchmarkName, string[]>> = {};
    for (const b of BENCHMARKS) {
      if (t[b] === undefined) continue;
      tasks[b] = arr(t[b], src, `$.tasks.${b}`).map((x, i) => str(x, src, `$.tasks.${b}[${i}]`));
      const lists = checks.trainableTasks ?? checks.benchmarkTasks;
      if (lists !== undefined) checkListedTasks(b, tasks[b], lists, src, `$.tasks.${b}`);
    }
    return tasks;
  });
  const extraTrainTasks = o.extraTrainTasks === undefined ? undefined : attempt(() => {
    const t = obj(o.extraTrainTasks, src, "$.extraTrainTasks");
    noExtraKeys(t, BENCHMARKS, src, "$.extraTrainTasks");
    const extraTrainTasks: Partial<Record<BenchmarkName, string[]>> = {};
    for (const b of BENCHMARKS) {
      if (t[b] === undefined) continue;
      const at = `$.extraTrainTasks.${b}`;
      const names = arr(t[b], src, at).map((x, i) => str(x, src, `${at}[${i}]`));
      extraTrainTasks[b] = names.map((name, i) =>
        trainOnlyTask(b, name, checks.trainOnlyTasks, src, `${at}[${i}]`)
      );
      const repeat = firstRepeat(extraTrainTasks[b]!);
      if (repeat !== undefined) {
        const [i, j] = repeat;
        const n = extraTrainTasks[b]![i];
        throw new SpecError(src, `${at}[${i}]`, `repeats task "${n}" (already ${at}[${j}])`);
      }
    }
    return extraTrainTasks;
  });
  const skip = attempt(() => {
    const skip = orDefault(o.skipMissingTasks, false);
    if (typeof skip !== "boolean") {
      throw new SpecError(src, "$.skipMissingTasks", mustBe("true or false", skip));
    }
    return skip;
  });
  const train = attempt(() => validateTrain(orDefault(o.train, {}), src, "$.train"));
  // Checked merged over the profile's `train`: only where that is valid.
  const trainOverrides = train === undefined ? undefined : attempt(() => {
    const trainOverrides: Partial<Record<BenchmarkName, Partial<TrainSpec>>> = {};
    if (o.trainOverrides !== undefined) {
      const to = obj(o.trainOverrides, src, "$.trainOverrides");
      noExtraKeys(to, BENCHMARKS, src, "$.trainOverrides");
      for (const b of BENCHMARKS) {
        if (to[b] === undefined) continue;
        // Validate the merged result now so errors surface at load time.
        validateTrain(to[b], src, `$.trainOverrides.${b}`, train);
        trainOverrides[b] = to[b] as Partial<TrainSpec>;
      }
    }
    return trainOverrides;
  });
  const labels = new Set<string>();
  const methods = attempt(() => arr(o.methods, src, "$.methods"))?.map((m, i) =>
    attempt((): MethodEntry => {
      const path = `$.methods[${i}]`;
      const mo = obj(m, src, path);
      noExtraKeys(mo, ["name", "label", "config", "train", "perTask"], src, path);
      const perTask = mo.perTask === undefined ? false : bool(mo.perTask, src, `${path}.perTask`);
      const mname = oneOf(mo.name, METHOD_NAMES, src, `${path}.name`);
      const label = mo.label === undefined ? mname : str(mo.label, src, `${path}.label`);
      if (labels.has(label)) {
        throw new SpecError(
          src,
          `${path}.label`,
          `repeats label "${label}"; give each method entry a unique label`,
        );
      }
      labels.add(label);
      const rawCfg = mo.config === undefined ? {} : obj(mo.config, src, `${path}.config`);
      const config = checks.parseMethodConfig
        ? parseMethodConfigAt(checks.parseMethodConfig, mname, rawCfg, src, `${path}.config`)
        : rawCfg;
      let mtrain: Partial<TrainSpec> | undefined;
      if (mo.train !== undefined) {
        // Validate the method's overrides merged over each benchmark's resolved settings (the
        // spec its runs will train with), so errors that only appear after merging (a
        // micro-batch that does not divide the profile's batch) surface here, with this file
        // and path; not where those settings are invalid themselves (reported already).
        const bases = train === undefined || trainOverrides === undefined || !benchmarks
          ? []
          : benchmarks.map((b) => {
            const bo = trainOverrides[b];
            const base = bo === undefined
              ? train
              : validateTrain(bo, src, `$.trainOverrides.${b}`, train);
            return [bo === undefined ? undefined : b, base] as const;
          });
        for (const [b, base] of bases) {
          try {
            validateTrain(mo.train, src, `${path}.train`, base);
          } catch (e) {
            if (!(e instanceof SpecError) || b === undefined) throw e;
            throw new SpecError(src, e.path, `${e.reason} (merged over $.trainOverrides.${b})`);
          }
        }
        mtrain = mo.train as Partial<TrainSpec>;
      }
      return {
        name: mname,
        label,
        config,
        ...(mtrain === undefined ? {} : { train: mtrain }),
        ...(perTask ? { perTask } : {}),
      };
    })
  );
  const entries = methods?.every((m) => m !== undefined) ? methods as MethodEntry[] : undefined;
  if (checks.methodModelProblem !== undefined && entries !== undefined && models !== undefined) {
    const problem = checks.methodModelProblem;
    attempt(() => checkMethodsOnModels(problem, o.methods as unknown[], entries, models, src));
  }
  const description = attempt(() => {
    const description = orDefault(o.description, "");
    if (typeof description !== "string") {
      throw new SpecError(src, "$.description", mustBe("a string", description));
    }
    return description;
  });
  const backend = attempt(() =>
    oneOf(orDefault(o.backend, "auto"), BACKEND_CHOICES, src, "$.backend")
  );
  const tolerances = attempt(() =>
    validateTolerances(o.tolerances, src, "$.tolerances", checks.taskMetrics)
  );
  const timeBudgetMinutes = o.timeBudgetMinutes === undefined
    ? undefined
    : attempt(() =>
      num(o.timeBudgetMinutes, src, "$.timeBudgetMinutes", { min: 0, minExclusive: true })
    );
  const [first, ...others] = errors;
  if (first !== undefined) {
    throw others.length === 0
      ? first
      : new SpecError(src, first.path, first.reason, others, first.separator);
  }
  const profile: Profile = {
    name: name!,
    description: description!,
    backend: backend!,
    seeds: seeds!,
    models: models!,
    backbones: backbones!,
    ...(pretrain === undefined ? {} : { pretrain }),
    benchmarks: benchmarks!,
    ...(tasks === undefined ? {} : { tasks }),
    ...(extraTrainTasks === undefined ? {} : { extraTrainTasks }),
    skipMissingTasks: skip!,
    methods: entries!,
    train: train!,
    trainOverrides: trainOverrides!,
    tolerances: tolerances!,
    ...(timeBudgetMinutes === undefined ? {} : { timeBudgetMinutes }),
  };
  return profile;
}

/**
 * What a profile says that no run of it acts on, one line each, for `deno task bench` (dry run or
 * not) to print once as `note: …`: a `tasks` or `extraTrainTasks` list, or `trainOverrides`, of a
 * benchmark that is not in its `benchmarks`; a tolerance of a task or benchmark average that no
 * run evaluates. Not an error: a profile may keep the settings of a
 * benchmark it switches off, and they are still validated when it loads ({@link validateProfile}).
 *
 * @param profile a validated profile
 * @returns the notes, without the `note: ` prefix; none when every list and override is of a
 *   listed benchmark
 * @example
 * ```ts
 * import { profileNotes, type Profile } from "./spec.ts";
 * const p = { name: "try", benchmarks: ["glue"], tasks: { glue: ["rte"], super_glue: ["cb"] } };
 * console.assert(profileNotes(p as unknown as Profile)[0]!.startsWith('profile "try" lists'));
 * ```
 */
export function profileNotes(
  profile:
    & Pick<Profile, "name" | "benchmarks" | "tasks" | "extraTrainTasks">
    & Partial<
      Pick<
        Profile,
        "trainOverrides" | "tolerances" | "models" | "backbones" | "pretrain" | "train" | "methods"
      >
    >,
): string[] {
  const notes: string[] = [];
  // An evaluation interval past the run's steps: only the last step is evaluated (as every run's
  // is), so the "best" checkpoint is the last; likely a profile copied and shortened.
  if (
    profile.train !== undefined && profile.methods !== undefined &&
    profile.trainOverrides !== undefined
  ) {
    const past = new Map<string, string[]>();
    for (const b of profile.benchmarks) {
      for (const m of profile.methods) {
        const t = trainFor(profile as Profile, b, m);
        if (t.evalEvery <= t.steps) continue;
        const key = `${t.evalEvery} ${t.steps}`;
        past.set(key, [...(past.get(key) ?? []), `${m.label} on ${b}`]);
      }
    }
    for (const [key, runs] of past) {
      const [every, steps] = key.split(" ");
      notes.push(
        `profile "${profile.name}" evaluates every ${every} steps, more than the ${steps} ` +
          `steps of ${runs.join(", ")}: those runs are evaluated at their last step only, which ` +
          `is then their best (train.evalEvery)`,
      );
    }
  }
  for (const field of ["tasks", "extraTrainTasks"] as const) {
    for (const b of BENCHMARKS) {
      const names = profile[field]?.[b];
      if (names === undefined || profile.benchmarks.includes(b)) continue;
      notes.push(
        `profile "${profile.name}" lists "${field}" for ${b} (${names.join(", ")}), which no ` +
          `run trains: ${b} is not in its "benchmarks" (${profile.benchmarks.join(", ")})`,
      );
    }
  }
  for (const b of BENCHMARKS) {
    const o = profile.trainOverrides?.[b];
    if (o === undefined || profile.benchmarks.includes(b)) continue;
    notes.push(
      `profile "${profile.name}" gives "trainOverrides" for ${b} (${
        Object.keys(o).join(", ")
      }), which no run trains with: ${b} is not in its "benchmarks" (${
        profile.benchmarks.join(", ")
      })`,
    );
  }
  // Pretraining settings no run reads: only a tiny preset's runs use them, a "pretrained" backbone
  // every one, a random one vocabSize alone (the size of its task tokenizer).
  const given = Object.keys(profile.pretrain ?? {});
  if (given.length > 0 && profile.models !== undefined && profile.backbones !== undefined) {
    const read = new Set(
      profile.models.flatMap((m) =>
        profile.backbones!.flatMap((b) => Object.keys(pretrainReadBy(profile.pretrain, m, b) ?? {}))
      ),
    );
    const unused = given.filter((k) => !read.has(k));
    if (unused.length > 0) {
      notes.push(
        `profile "${profile.name}" gives "pretrain" (${unused.join(", ")}), which no run uses: ` +
          `only a tiny preset's "pretrained" backbone is pretrained here (its random runs read ` +
          `vocabSize alone, the size of their task tokenizer)`,
      );
    }
  }
  // A tolerance of a task or average no run evaluates gates nothing: a typo'd task list, or one
  // narrowed since. The key itself was checked against the registry when the profile loaded.
  const evaluated = new Set(
    profile.benchmarks.flatMap((b) =>
      // Registry names, as validateProfile resolved them (`glue_rte`, `RTE` are rte).
      (profile.tasks?.[b] ?? BENCHMARK_TASKS[b]).map((t) =>
        taskInBenchmark(b, bareTaskName(t)) ?? t
      )
    ),
  );
  for (const key of Object.keys(profile.tolerances?.metrics ?? {})) {
    const slash = key.indexOf("/");
    if (slash < 0) continue;
    const [task, rest] = [key.slice(0, slash), key.slice(slash + 1)];
    const unused = task === "average"
      ? !profile.benchmarks.includes(rest as BenchmarkName)
      : !evaluated.has(task);
    if (!unused) continue;
    notes.push(
      `profile "${profile.name}" gives a tolerance for "${key}", which no run is gated on: ${
        task === "average"
          ? `${rest} is not in its "benchmarks" (${profile.benchmarks.join(", ")})`
          : `no run evaluates ${task} (tasks: ${[...evaluated].join(", ")})`
      }`,
    );
  }
  return notes;
}

/**
 * The training spec of one benchmark and method: `profile.train`, then
 * `profile.trainOverrides[benchmark]`, then the method entry's `train`.
 *
 * @param profile a validated profile
 * @param benchmark the benchmark
 * @param method the method entry (its `train` overrides apply last)
 * @returns the merged, validated training spec
 */
export function trainFor(
  profile: Profile,
  benchmark: BenchmarkName,
  method?: MethodEntry,
): TrainSpec {
  const src = { file: `profile ${profile.name}` };
  const o = profile.trainOverrides[benchmark];
  const t = o === undefined
    ? profile.train
    : validateTrain(o, src, `$.trainOverrides.${benchmark}`, profile.train);
  if (method?.train === undefined) return t;
  const i = profile.methods.findIndex((m) => m.label === method.label);
  return validateTrain(method.train, src, `$.methods[${i < 0 ? method.label : i}].train`, t);
}

/**
 * A score read from JSON: a number, or `null` for NaN (JSON has no NaN: `JSON.stringify` writes
 * an undefined metric, e.g. Pearson of constant predictions, as `null`). Returns NaN for null.
 */
function score(v: unknown, src: Source, path: string): number {
  if (v === null) return NaN;
  // Every metric is a percentage (correlations down to -100): 250 is a hand edit or a 0-1 slip.
  return num(v, src, path, {
    min: -100,
    max: 100,
    maxWhy: "scores are percentages, as bench writes them",
  });
}

/**
 * A profile field's value, or `fallback` when the field is absent. Only absent: a `null` is
 * passed on, for the field's check to refuse (`"train": null` must not train with the defaults).
 */
function orDefault(v: unknown, fallback: unknown): unknown {
  return v === undefined ? fallback : v;
}

/** Replaces null scores of a metrics record by NaN, in place; throws on other non-numbers. */
function scores(v: unknown, src: Source, path: string): void {
  const o = obj(v, src, path);
  for (const [k, x] of Object.entries(o)) o[k] = score(x, src, `${path}.${k}`);
}

function bool(v: unknown, src: Source, path: string): boolean {
  if (typeof v !== "boolean") {
    throw new SpecError(src, path, mustBe("true or false", v));
  }
  return v;
}

/** Checks a file's size and sha256 as `model/checkpoint.ts` `fileDigest` records them. */
function fileRecord(v: unknown, src: Source, at: string): void {
  const fo = obj(v, src, at);
  num(fo.bytes, src, `${at}.bytes`, { int: true, min: 0 });
  if (typeof fo.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(fo.sha256)) {
    throw new SpecError(src, `${at}.sha256`, mustBe("64 lowercase hex digits", fo.sha256));
  }
}

/**
 * Checks the provenance fields that readers use (the gate's clean-tree rule, the tables' backend
 * and device columns) and, where present, the data, checkpoint and resume records
 * (`provenance.ts`; results written before a record existed lack it and still load).
 */
function provenance(v: unknown, src: Source, path: string): void {
  const p = obj(v, src, path);
  str(p.gitSha, src, `${path}.gitSha`);
  bool(p.gitDirty, src, `${path}.gitDirty`);
  str(p.device, src, `${path}.device`);
  str(obj(p.backend, src, `${path}.backend`).name, src, `${path}.backend.name`);
  if (p.data !== undefined) {
    const d = obj(p.data, src, `${path}.data`);
    str(d.dir, src, `${path}.data.dir`);
    oneOf(d.kind, ["mirror", "cache", "folder"], src, `${path}.data.kind`);
    arr(d.sources, src, `${path}.data.sources`, false).forEach((x, i) =>
      oneOf(x, ["official", "parquet"], src, `${path}.data.sources[${i}]`)
    );
    for (const [file, f] of Object.entries(obj(d.files, src, `${path}.data.files`))) {
      const at = `${path}.data.files["${file}"]`;
      const fo = obj(f, src, at);
      num(fo.bytes, src, `${at}.bytes`, { int: true, min: 0 });
      for (const k of ["sha256", "listedSha256"]) {
        if (fo[k] !== undefined && !/^[0-9a-f]{64}$/.test(String(fo[k]))) {
          throw new SpecError(src, `${at}.${k}`, `must be 64 hex digits, got ${briefJson(fo[k])}`);
        }
      }
    }
  }
  if (p.checkpoint !== undefined) {
    const c = obj(p.checkpoint, src, `${path}.checkpoint`);
    str(c.dir, src, `${path}.checkpoint.dir`);
    if (c.hubId !== undefined) str(c.hubId, src, `${path}.checkpoint.hubId`);
    for (const [file, f] of Object.entries(obj(c.files, src, `${path}.checkpoint.files`))) {
      fileRecord(f, src, `${path}.checkpoint.files["${file}"]`);
    }
  }
  if (p.tokenizerFile !== undefined) fileRecord(p.tokenizerFile, src, `${path}.tokenizerFile`);
  if (p.resumedFrom !== undefined) {
    const r = obj(p.resumedFrom, src, `${path}.resumedFrom`);
    num(r.step, src, `${path}.resumedFrom.step`, { int: true, min: 1 });
    if (r.gitSha !== undefined) str(r.gitSha, src, `${path}.resumedFrom.gitSha`);
    if (r.gitDirty !== undefined) bool(r.gitDirty, src, `${path}.resumedFrom.gitDirty`);
    if (r.backend !== undefined) str(r.backend, src, `${path}.resumedFrom.backend`);
    if (r.microBatchSizes !== undefined) {
      arr(r.microBatchSizes, src, `${path}.resumedFrom.microBatchSizes`, false).forEach((x, i) => {
        if (x !== null) {
          num(x, src, `${path}.resumedFrom.microBatchSizes[${i}]`, { int: true, min: 1 });
        }
      });
    }
  }
}

/**
 * Checks `trainTokens` and `trainSeconds` of a result (optional: results written before they
 * existed lack both): non-negative numbers (the tokens an integer), both or neither, and
 * `tokensPerSecond` their quotient (0 for no training time), which `runOne` writes from the same
 * two numbers: within 1e-9 relative, slack for a writer that rounds, far below any real
 * disagreement (a figure from another session or a hand edit).
 */
function trainTotals(o: Record<string, unknown>, tps: number, src: Source): void {
  if (o.trainTokens === undefined && o.trainSeconds === undefined) return;
  for (const [k, other] of [["trainTokens", "trainSeconds"], ["trainSeconds", "trainTokens"]]) {
    if (o[k!] === undefined) {
      throw new SpecError(
        src,
        `$.${k}`,
        `is missing while $.${other} is given; give both or neither`,
      );
    }
  }
  const tokens = num(o.trainTokens, src, "$.trainTokens", { int: true, min: 0 });
  const seconds = num(o.trainSeconds, src, "$.trainSeconds", { min: 0 });
  const want = seconds > 0 ? tokens / seconds : 0;
  if (Math.abs(tps - want) > 1e-9 * want) {
    throw new SpecError(
      src,
      "$.tokensPerSecond",
      `must be $.trainTokens / $.trainSeconds (${tokens} / ${seconds} = ${want}), got ${tps}`,
    );
  }
}

/**
 * Check the shape of a parsed RunResult JSON (the fields the tables and the gate read).
 * Scores written as `null` (NaN in the run, e.g. an undefined correlation) become NaN again.
 *
 * @param raw parsed JSON
 * @param src the file it came from
 * @returns the value typed as a RunResult
 * @throws SpecError naming file and JSON path
 */
export function validateRunResult(raw: unknown, src: Source): RunResult {
  const o = obj(raw, src, "$");
  if (o.spec === undefined) {
    // A stray JSON file in a results folder, say: said so, rather than its first missing field.
    const keys = Object.keys(o);
    throw new SpecError(
      src,
      "$.spec",
      'is missing: not a run result (every run result has "spec"); its fields: ' +
        (keys.length === 0 ? "none" : briefJson(keys)),
    );
  }
  const spec = obj(o.spec, src, "$.spec");
  str(spec.id, src, "$.spec.id");
  str(spec.profile, src, "$.spec.profile");
  oneOf(spec.benchmark, BENCHMARKS, src, "$.spec.benchmark");
  const m = obj(spec.method, src, "$.spec.method");
  oneOf(m.name, METHOD_NAMES, src, "$.spec.method.name");
  str(m.label, src, "$.spec.method.label");
  num(spec.seed, src, "$.spec.seed", { int: true, min: 0 });
  // What the tables, the gate and the FLOPs table read of the spec (any preset name: a result of
  // a preset this version lacks still loads).
  validateModelRef(spec.model, src, "$.spec.model");
  if (typeof spec.backbone === "string" || spec.backbone === undefined) {
    oneOf(spec.backbone, ["random", "pretrained"], src, "$.spec.backbone");
  } else hfRef(spec.backbone, src, "$.spec.backbone");
  const train = obj(spec.train, src, "$.spec.train");
  for (const k of ["steps", "batchSize", "maxInputLength", "maxTargetLength"]) {
    num(train[k], src, `$.spec.train.${k}`, { int: true, min: 1 });
  }
  arr(spec.tasks, src, "$.spec.tasks").forEach((t, i) => str(t, src, `$.spec.tasks[${i}]`));
  if (spec.trainOnlyTasks !== undefined) {
    arr(spec.trainOnlyTasks, src, "$.spec.trainOnlyTasks").forEach((t, i) =>
      str(t, src, `$.spec.trainOnlyTasks[${i}]`)
    );
  }
  if (spec.perTaskOf !== undefined) {
    const all = arr(spec.perTaskOf, src, "$.spec.perTaskOf").map((t, i) =>
      str(t, src, `$.spec.perTaskOf[${i}]`)
    );
    const tasks = spec.tasks as string[];
    if (tasks.length !== 1 || !all.includes(tasks[0]!)) {
      throw new SpecError(
        src,
        "$.spec.tasks",
        `must be one task of $.spec.perTaskOf (${all.join(", ")}) in a per-task run, got ${
          briefJson(tasks)
        }`,
      );
    }
  }
  provenance(o.provenance, src, "$.provenance");
  arr(o.losses, src, "$.losses", false).forEach((l, i) => {
    const lo = obj(l, src, `$.losses[${i}]`);
    num(lo.step, src, `$.losses[${i}].step`, { int: true, min: 0 });
    // A diverged step's NaN is written null. No upper bound: a loss is no percentage (a random
    // T5 1.1 Base starts above 100).
    lo.loss = lo.loss === null ? NaN : num(lo.loss, src, `$.losses[${i}].loss`, { min: 0 });
    if (lo.lr !== undefined) num(lo.lr, src, `$.losses[${i}].lr`, { min: 0 });
  });
  if (o.tokenizer !== undefined) str(o.tokenizer, src, "$.tokenizer");
  const tokFile = (o.provenance as Record<string, unknown>).tokenizerFile;
  if (tokFile !== undefined && !/^(task-spm|fixture):./.test(String(o.tokenizer ?? ""))) {
    // The digest is of a `task-spm:`/`fixture:` file: beside another tokenizer it names no file.
    throw new SpecError(
      src,
      "$.provenance.tokenizerFile",
      `is given for a tokenizer read from no such file ($.tokenizer is ${
        o.tokenizer === undefined ? "absent" : briefJson(o.tokenizer)
      }; only a task-spm:<file> or fixture:<file> tokenizer has one)`,
    );
  }
  const best = obj(o.best, src, "$.best");
  for (const [task, b] of Object.entries(best)) {
    const bo = obj(b, src, `$.best.${task}`);
    num(bo.step, src, `$.best.${task}.step`, { int: true, min: 0 });
    bo.groupScore = score(bo.groupScore, src, `$.best.${task}.groupScore`);
    scores(bo.metrics, src, `$.best.${task}.metrics`);
    if (bo.invalid !== undefined) invalidField(bo.invalid, src, `$.best.${task}.invalid`);
  }
  arr(o.evals, src, "$.evals", false).forEach((e, i) => {
    const eo = obj(e, src, `$.evals[${i}]`);
    num(eo.step, src, `$.evals[${i}].step`, { int: true, min: 0 });
    str(eo.task, src, `$.evals[${i}].task`);
    eo.groupScore = score(eo.groupScore, src, `$.evals[${i}].groupScore`);
    scores(eo.metrics, src, `$.evals[${i}].metrics`);
    if (eo.invalid !== undefined) invalidField(eo.invalid, src, `$.evals[${i}].invalid`);
    if (eo.predictionsSha256 !== undefined) {
      const p = `$.evals[${i}].predictionsSha256`;
      if (
        typeof eo.predictionsSha256 !== "string" || !/^[0-9a-f]{64}$/.test(eo.predictionsSha256)
      ) {
        throw new SpecError(
          src,
          p,
          mustBe("64 lowercase hex digits (a sha256)", eo.predictionsSha256),
        );
      }
    }
  });
  scores(o.averages, src, "$.averages");
  const params = obj(o.params, src, "$.params");
  for (const k of ["total", "extra", "extraPct", "trained", "trainedPerTaskPct"]) {
    num(params[k], src, `$.params.${k}`, { min: 0 });
  }
  const flops = obj(o.flops, src, "$.flops");
  for (const k of ["trainPerExample", "inferencePerExample"]) {
    num(flops[k], src, `$.flops.${k}`, { min: 0 });
  }
  const tps = num(o.tokensPerSecond, src, "$.tokensPerSecond", { min: 0 });
  trainTotals(o, tps, src);
  num(o.wallSeconds, src, "$.wallSeconds", { min: 0 });
  str(o.backboneSource, src, "$.backboneSource");
  if (o.effectiveMicroBatchSize !== undefined) {
    const m = num(o.effectiveMicroBatchSize, src, "$.effectiveMicroBatchSize", {
      int: true,
      min: 1,
    });
    const batch = (spec.train as { batchSize?: unknown } | undefined)?.batchSize;
    if (typeof batch === "number" && batch % m !== 0) {
      throw new SpecError(
        src,
        "$.effectiveMicroBatchSize",
        `must divide $.spec.train.batchSize (${batch}), got ${m}`,
      );
    }
  }
  if (o.testPredictions !== undefined) testPredictionsField(o.testPredictions, src);
  if (o.weights !== undefined) weightsField(o.weights, src);
  if (o.attentionMass !== undefined) attentionMassField(o.attentionMass, src);
  return o as unknown as RunResult;
}

/** Checks a {@link TaskEval.invalid}: a count of at most `of` predictions, `of` at least 1. */
function invalidField(v: unknown, src: Source, path: string): void {
  const o = obj(v, src, path);
  noExtraKeys(o, ["count", "of"], src, path);
  const of = num(o.of, src, `${path}.of`, { int: true, min: 1 });
  num(o.count, src, `${path}.count`, {
    int: true,
    min: 0,
    max: of,
    maxWhy: "the predictions made",
  });
}

/**
 * Checks {@link RunResult.attentionMass}: per task, the encoder's and decoder's per-layer shares
 * of attention, each a number in [0, 1] (a float32 sum of softmax weights may pass 1 by rounding:
 * by at most {@link MASS_SLACK}).
 */
function attentionMassField(v: unknown, src: Source): void {
  for (const [task, m] of Object.entries(obj(v, src, "$.attentionMass"))) {
    const path = `$.attentionMass.${task}`;
    const mo = obj(m, src, path);
    noExtraKeys(mo, ["encoder", "decoder"], src, path);
    for (const stack of ["encoder", "decoder"]) {
      arr(mo[stack], src, `${path}.${stack}`, false).forEach((x, i) =>
        num(x, src, `${path}.${stack}[${i}]`, {
          min: 0,
          max: 1 + MASS_SLACK,
          maxWhy: "a share of attention",
        })
      );
    }
  }
}

/** How far a recorded attention share may pass 1: float32 rounding of a sum of about 1. */
const MASS_SLACK = 1e-5;

/**
 * Checks {@link RunResult.weights}: a relative folder, a step, whether the backbone trained and,
 * only then, the kept backbone's folder and a tokenizer it lacks.
 */
function weightsField(v: unknown, src: Source): void {
  const path = "$.weights";
  const w = obj(v, src, path);
  noExtraKeys(
    w,
    ["dir", "step", "backboneTrained", "backbone", "backboneTokenizerMissing"],
    src,
    path,
  );
  resultsFolder(w.dir, src, `${path}.dir`);
  num(w.step, src, `${path}.step`, { int: true, min: 0 });
  const trained = bool(w.backboneTrained, src, `${path}.backboneTrained`);
  // Absent with backboneTrained: a result written before the backbone was kept.
  if (w.backbone !== undefined) {
    const folder = str(w.backbone, src, `${path}.backbone`);
    if (!trained || folder !== SAVED_BACKBONE_FOLDER) {
      throw new SpecError(
        src,
        `${path}.backbone`,
        trained
          ? `must be ${briefJson(SAVED_BACKBONE_FOLDER)}, got ${briefJson(folder)}`
          : "must be absent when backboneTrained is false (a frozen backbone is not kept)",
      );
    }
  }
  if (w.backboneTokenizerMissing !== undefined) {
    str(w.backboneTokenizerMissing, src, `${path}.backboneTokenizerMissing`);
    if (w.backbone === undefined) {
      throw new SpecError(
        src,
        `${path}.backboneTokenizerMissing`,
        "must be absent when no backbone is kept",
      );
    }
  }
}

/** A folder named relative to the results folder, inside it (not empty, not absolute, no ".."). */
function resultsFolder(v: unknown, src: Source, path: string): string {
  const dir = str(v, src, path);
  if (dir === "" || dir.startsWith("/") || dir.split(/[\\/]/).includes("..")) {
    throw new SpecError(
      src,
      path,
      `must be a folder inside the results folder (relative, no ".."), got ${briefJson(dir)}`,
    );
  }
  return dir;
}

/** Checks {@link RunResult.testPredictions}: a relative folder and, per file, step and count. */
function testPredictionsField(v: unknown, src: Source): void {
  const path = "$.testPredictions";
  const t = obj(v, src, path);
  noExtraKeys(t, ["dir", "files"], src, path);
  resultsFolder(t.dir, src, `${path}.dir`);
  const files = obj(t.files, src, `${path}.files`);
  for (const [task, f] of Object.entries(files)) {
    const fp = `${path}.files.${task}`;
    const fo = obj(f, src, fp);
    noExtraKeys(fo, ["step", "examples"], src, fp);
    num(fo.step, src, `${fp}.step`, { int: true, min: 0 });
    num(fo.examples, src, `${fp}.examples`, { int: true, min: 0 });
  }
}
