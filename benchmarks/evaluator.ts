/**
 * Evaluation: greedy decoding on each task's validation split(s), T5 postprocessing and metrics,
 * the per-task best checkpoint (T5 `metric_group_max`, spec §3.4 / A11) and benchmark averages.
 *
 * Subsets: with a cap, each task's evaluation uses a fixed, seeded subset of whole groups
 * (MultiRC questions, ReCoRD queries; single examples otherwise), the same for every method and
 * seed, in file order. MNLI's matched and mismatched splits are capped separately.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { greedyDecode, type T5Model } from "../model/t5.ts";
import type { MethodInstance } from "../model/method.ts";
import { T5_UNK_SURFACE } from "../model/tokenizer.ts";
import type { Example, TaskSplit } from "../tasks/types.ts";
import { BENCHMARK_TASKS } from "../tasks/registry.ts";
import { benchmarkAverage } from "../tasks/metrics.ts";
import { type BenchmarkName, type BestEval, predictionsDigest, type TaskEval } from "./spec.ts";
import { Rng, seedFor } from "./rng.ts";
import type { SpecialIds } from "./batching.ts";
import { stopRequested, yieldToEventLoop } from "./trainer.ts";

/** The scoring functions of `tasks/mod.ts` (injected so tests can stub them). */
export interface Scorer {
  /** Metrics (0-100) of predictions against examples; T5 postprocessing inside. */
  scoreTask(task: string, examples: Example[], predictions: string[]): Record<string, number>;
  /** The task's group score (mean of its metrics). */
  groupScore(task: string, metrics: Record<string, number>): number;
  /**
   * How many predictions are no answer (`tasks/metrics.ts` `invalidPredictions`), or undefined
   * where none is by definition; absent: not recorded.
   */
  invalidPredictions?(task: string, predictions: readonly string[]): number | undefined;
}

/** A tokenizer's decoding side (`model/tokenizer.ts` `T5Tokenizer` satisfies it). */
export interface TokenDecoder {
  decode(ids: number[], opts?: { skipSpecialTokens?: boolean; unknownAs?: string }): string;
}

/** One task's evaluation examples, tokenized. */
export interface EvalSet {
  /** Task name. */
  readonly task: string;
  /** Task id (index in the run's task list; selects the method's task parameters). */
  readonly taskId: number;
  /** The examples scored (a capped subset when a cap is set). */
  readonly examples: Example[];
  /** Encoder ids of each example (truncated, ending with EOS). */
  readonly inputs: readonly (readonly number[])[];
  /** Greedy decoding length limit for this task. */
  readonly maxNewTokens: number;
  /**
   * Set when `maxNewTokens` was tightened below the run's target length for a classification
   * task: a row that has not ended (no EOS) within `maxNewTokens` and whose text so far is a
   * label word or the beginning of one is decoded again up to `maxNewTokens` here, so the
   * tightening never changes a prediction's score (see {@link makeEvalSet}).
   */
  readonly untightened?: {
    /** The task's label words. */
    readonly labelWords: readonly string[];
    /** The run's decoding limit. */
    readonly maxNewTokens: number;
  };
}

/**
 * A deterministic subset of about `cap` examples, taken as whole groups (`group ?? id`), in
 * their original order: the groups in a seeded order until the subset holds `cap` examples or
 * more, the last group whole (a group is never split), so it passes the cap by less than one
 * group (a MultiRC question's answers). Whether a group is taken depends only on the groups
 * drawn before it, never on its own size: skipping the groups that would pass the cap, as
 * before, kept small groups rather than large ones (MultiRC at cap 20: 4.4 answers per question
 * against 6.5 in all), which biases a per-group metric (MultiRC's exact match is easier over
 * fewer answers). Ungrouped examples give exactly `cap`. Independent of the run seed, so every
 * run scores the same examples.
 *
 * @param examples the split's examples
 * @param cap the examples wanted, a positive integer (null: all)
 * @param key names the subset's random stream (e.g. `"rte/validation"`)
 * @returns `examples` itself when `cap` is null or at least their number, else the subset
 * @throws Error naming `cap` and `key` when `cap` is neither null nor a positive integer
 */
export function evalSubset(examples: Example[], cap: number | null, key: string): Example[] {
  checkCap(cap, `evalSubset (${key})`);
  if (cap === null || examples.length <= cap) return examples;
  const groups = new Map<string, number[]>();
  examples.forEach((e, i) => {
    const g = e.group ?? e.id;
    const list = groups.get(g);
    if (list) list.push(i);
    else groups.set(g, [i]);
  });
  const order = new Rng(seedFor(0, `eval-subset:${key}`)).shuffle([...groups.keys()]);
  const keep: number[] = [];
  for (const g of order) {
    keep.push(...groups.get(g)!);
    if (keep.length >= cap) break;
  }
  return keep.sort((a, b) => a - b).map((i) => examples[i]!);
}

/**
 * Refuses an evaluation cap that is neither null nor a positive integer (0, negative, fractional,
 * NaN, ±∞): a cap below 1 would still keep one group ({@link evalSubset} never scores nothing).
 */
function checkCap(cap: number | null, where: string): void {
  if (cap !== null && !(Number.isInteger(cap) && cap >= 1)) {
    throw new Error(
      `benchmarks/evaluator.ts ${where}: cap must be a positive integer or null, got ${cap}`,
    );
  }
}

/**
 * Build a task's evaluation set from its examples.
 *
 * @param task task name
 * @param taskId task id
 * @param bySplit the examples of each evaluation split
 * @param opts cap, encoder and decoding length; the cap (a positive integer, or null: all) is
 *   shared by the splits, each getting ceil(cap / splits) ({@link evalSubset}), so MNLI's two
 *   splits under an odd cap score one more example than the cap in all
 * @throws Error naming `cap` and the task when the cap is neither null nor a positive integer,
 *   or when the label words and their token id lists differ in number
 */
export function makeEvalSet(
  task: string,
  taskId: number,
  bySplit: ReadonlyArray<readonly [TaskSplit, Example[]]>,
  opts: {
    cap: number | null;
    encodeInput: (ex: Example) => number[];
    /** Decoding limit (the run's maximum target length). */
    maxTargetLength: number;
    /**
     * Classification tasks: the label words and the token ids of each (in the same order), to
     * tighten the decoding limit.
     */
    labels?: {
      readonly words: readonly string[];
      readonly tokenIds: readonly (readonly number[])[];
    };
  },
): EvalSet {
  checkCap(opts.cap, `makeEvalSet: task ${task}`);
  const per = opts.cap === null ? null : Math.ceil(opts.cap / bySplit.length);
  const examples = bySplit.flatMap(([split, exs]) => evalSubset(exs, per, `${task}/${split}`));
  const inputs = examples.map(opts.encodeInput);
  const base = { task, taskId, examples, inputs, maxNewTokens: opts.maxTargetLength };
  const labels = opts.labels;
  if (labels === undefined || labels.tokenIds.length === 0) return base;
  if (labels.words.length !== labels.tokenIds.length) {
    throw new Error(
      `benchmarks/evaluator.ts makeEvalSet: task ${task} has ${labels.words.length} label words but ${labels.tokenIds.length} token id lists`,
    );
  }
  // A row whose label tokens (EOS included) were decoded ends within the longest label's length;
  // one more token leaves room for a leading token that decodes to nothing. A row still running
  // then can match a label only through tokens that decode to nothing (special tokens, which
  // decoding skips) or another split of the word into tokens: evaluate() decodes such rows
  // again to the run's limit (`untightened`), so the score is that of untightened decoding
  // (a row's text only grows as tokens are added, so one whose text is no label word's
  // beginning stays invalid).
  const longest = Math.max(...labels.tokenIds.map((l) => l.length));
  if (longest + 1 >= opts.maxTargetLength) return base;
  return {
    ...base,
    maxNewTokens: longest + 1,
    untightened: { labelWords: labels.words, maxNewTokens: opts.maxTargetLength },
  };
}

/** Options of {@link evaluate}. */
export interface EvaluateOptions {
  /** Step being evaluated (recorded in the result). */
  readonly step: number;
  /** Rows decoded together. */
  readonly batchSize: number;
  /** Pad / EOS ids. */
  readonly ids: SpecialIds;
  /** Decoder of generated ids. */
  readonly tokenizer: TokenDecoder;
  /** Metrics. */
  readonly scorer: Scorer;
  /**
   * Checked before every decode batch: a reason (a signal's name) abandons the evaluation there
   * ({@link EvaluationStoppedError}; nothing is scored or returned, no tensor is kept). Default
   * `benchmarks/trainer.ts` `stopRequested`, the process-wide stop request of the bench's
   * SIGINT/SIGTERM handler, so that a stop does not wait for a full dev set's greedy decoding.
   */
  readonly shouldStop?: () => string | undefined;
  /**
   * Decode progress of each set ({@link decodeSet}): called with `done` 0 before its first decode
   * batch and after every batch, `done` rising to `total` (the set's rows, plus those decoded
   * again to the run's limit once the first pass has found them: {@link EvalSet.untightened}).
   * Synchronous, on the decoding's path: it should only record the numbers.
   */
  readonly onDecoded?: (task: string, done: number, total: number) => void;
}

/**
 * Thrown by {@link evaluate} when a stop was requested ({@link EvaluateOptions.shouldStop})
 * before one of its decode batches: the evaluation is abandoned (what was decoded is dropped) and
 * must be redone in full. `train()` (`benchmarks/trainer.ts`) recognises it by
 * `evaluationStopped` and saves a checkpoint that owes this evaluation.
 */
export class EvaluationStoppedError extends Error {
  /** Marks the error for callers that do not import this class (`train()`). */
  readonly evaluationStopped = true;
  /**
   * @param reason what asked to stop (a signal's name)
   * @param step the step whose evaluation was stopped
   * @param task the task being decoded
   * @param decoded rows of the decoding pass (a task's rows, or those decoded again to the run's
   *   limit: {@link EvalSet.untightened}) done before the stop
   * @param rows rows of that pass
   */
  constructor(
    readonly reason: string,
    readonly step: number,
    readonly task: string,
    readonly decoded: number,
    readonly rows: number,
  ) {
    super(
      `evaluation of step ${step} stopped by ${reason} (task ${task}, after ${decoded} of the ${rows} rows of a decoding pass); it is redone in full`,
    );
    this.name = "EvaluationStoppedError";
  }
}

/** Options of {@link decodeSet}: those of {@link evaluate} but the scorer. */
export type DecodeOptions = Omit<EvaluateOptions, "scorer">;

/**
 * Greedy-decode one set's examples (in order of input length, batched, each row with its task
 * id's method hooks; then the rows that {@link EvalSet.untightened} names decoded again to the
 * run's limit): the predictions {@link evaluate} scores, and the test-set predictions of
 * `benchmarks/run_one.ts`. A stop request ({@link EvaluateOptions.shouldStop}) abandons it before
 * the next decode batch; no tensor outlives a batch. Progress goes to
 * {@link EvaluateOptions.onDecoded} after each batch.
 *
 * @param model the backbone
 * @param instance the method
 * @param set the examples, encoded
 * @param opts step (for the stop error), batch size, special ids, tokenizer, stop check,
 *   progress callback
 * @returns one decoded text per example, in example order
 * @throws Error for a batch size that is not a positive integer
 * @throws EvaluationStoppedError when a stop is requested before a decode batch
 */
export async function decodeSet(
  model: T5Model,
  instance: MethodInstance,
  set: EvalSet,
  opts: DecodeOptions,
): Promise<string[]> {
  if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1) {
    throw new Error(
      `benchmarks/evaluator.ts decodeSet: batchSize must be a positive integer, got ${opts.batchSize}`,
    );
  }
  const shouldStop = opts.shouldStop ?? stopRequested;
  const n = set.inputs.length;
  const predictions = new Array<string>(n);
  // Rows decoded and to decode, over both passes (the second's rows join `total` when known).
  let done = 0;
  let total = n;
  opts.onDecoded?.(set.task, done, total);
  /** Decodes `which` (example indices) up to `maxNewTokens`; returns those that did not end. */
  const decodeRows = async (which: readonly number[], maxNewTokens: number) => {
    const running: number[] = [];
    // Decode in order of length (less padding); predictions are put back in example order.
    const order = [...which].sort((a, b) => set.inputs[a]!.length - set.inputs[b]!.length || a - b);
    for (let s = 0; s < order.length; s += opts.batchSize) {
      // Between batches no tensor is alive: abandoning here keeps nothing. A signal's
      // listener runs only when the event loop turns, which decoding alone may never let it.
      await yieldToEventLoop();
      const stop = shouldStop();
      if (stop !== undefined) {
        throw new EvaluationStoppedError(stop, opts.step, set.task, s, order.length);
      }
      const rows = order.slice(s, s + opts.batchSize);
      const len = Math.max(...rows.map((i) => set.inputs[i]!.length));
      const ids = new Int32Array(rows.length * len).fill(opts.ids.padTokenId);
      const mask = new Float32Array(rows.length * len);
      rows.forEach((i, r) => {
        ids.set(set.inputs[i]!, r * len);
        mask.fill(1, r * len, r * len + set.inputs[i]!.length);
      });
      const inputIds = tf.tensor2d(ids, [rows.length, len], "int32");
      const attentionMask = tf.tensor2d(mask, [rows.length, len], "float32");
      let generated: number[][];
      try {
        generated = await greedyDecode(model, { inputIds, attentionMask }, {
          maxNewTokens,
          hooks: instance.hooks(rows.map(() => set.taskId)),
        });
      } finally {
        inputIds.dispose();
        attentionMask.dispose();
      }
      rows.forEach((i, r) => {
        const g = generated[r]!;
        const end = g.indexOf(opts.ids.eosTokenId);
        if (end < 0) running.push(i);
        // As T5 decodes: `<unk>` and the sentinels are " ⁇ ", never dropped (a generation
        // `<extra_id_0> entailment` is no label word); `<pad>` goes.
        predictions[i] = opts.tokenizer.decode(end < 0 ? g : g.slice(0, end), {
          skipSpecialTokens: true,
          unknownAs: T5_UNK_SURFACE,
        });
      });
      done += rows.length;
      opts.onDecoded?.(set.task, done, total);
    }
    return running;
  };
  const running = await decodeRows([...Array(n).keys()], set.maxNewTokens);
  const full = set.untightened;
  if (full !== undefined) {
    // Rows cut off by the tightened limit whose text could still become (or stop being) a
    // label word: decoded again to the run's limit.
    const open = running.filter((i) => full.labelWords.some((w) => w.startsWith(predictions[i]!)));
    if (open.length > 0) {
      total += open.length;
      opts.onDecoded?.(set.task, done, total);
      await decodeRows(open, full.maxNewTokens);
    }
  }
  return predictions;
}

/**
 * Greedy-decode every evaluation set ({@link decodeSet}) and score it. A stop request
 * ({@link EvaluateOptions.shouldStop}) abandons it before the next decode batch.
 *
 * @param model the backbone
 * @param instance the method (its hooks see each row's task id)
 * @param sets evaluation sets
 * @param opts step, batch size, tokenizer and scorer (and progress callback: each set's decoding)
 * @returns one {@link TaskEval} per set
 * @throws Error for a batch size that is not a positive integer
 * @throws EvaluationStoppedError when a stop is requested before a decode batch
 */
export async function evaluate(
  model: T5Model,
  instance: MethodInstance,
  sets: readonly EvalSet[],
  opts: EvaluateOptions,
): Promise<TaskEval[]> {
  if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1) {
    throw new Error(
      `benchmarks/evaluator.ts evaluate: batchSize must be a positive integer, got ${opts.batchSize}`,
    );
  }
  const out: TaskEval[] = [];
  for (const set of sets) {
    const predictions = await decodeSet(model, instance, set, opts);
    const metrics = opts.scorer.scoreTask(set.task, set.examples, predictions);
    const invalid = opts.scorer.invalidPredictions?.(set.task, predictions);
    out.push({
      step: opts.step,
      task: set.task,
      metrics,
      groupScore: opts.scorer.groupScore(set.task, metrics),
      ...(invalid === undefined ? {} : { invalid: { count: invalid, of: predictions.length } }),
      predictionsSha256: predictionsDigest(set.examples.map((e) => e.id), predictions),
    });
  }
  return out;
}

/**
 * Whether an evaluation of a task beats the task's best so far (T5 `metric_group_max`): a higher
 * group score (NaN counts as -Infinity), or the same score at an earlier step; anything beats no
 * best at all. The one rule of {@link bestPerTask} and of the run's test-set predictions
 * (`benchmarks/run_one.ts`: a task's test split is decoded exactly when its best changes).
 *
 * @param e the evaluation
 * @param best the task's best so far (undefined: none yet)
 * @returns true when `e` becomes the task's best
 */
export function improvesOn(
  e: Pick<TaskEval, "step" | "groupScore">,
  best: Pick<BestEval, "step" | "groupScore"> | undefined,
): boolean {
  if (best === undefined) return true;
  const score = rankOf(e.groupScore);
  const cur = rankOf(best.groupScore);
  return score > cur || (score === cur && e.step < best.step);
}

/** A score as {@link improvesOn} and {@link bestStepAverage} rank it: NaN counts as -Infinity. */
function rankOf(score: number): number {
  return Number.isNaN(score) ? -Infinity : score;
}

/**
 * The best evaluation of each task: the step with the highest group score (the earliest on ties),
 * with that step's metrics (T5 `metric_group_max`; different tasks may come from different steps).
 *
 * @param evals every evaluation of the run
 * @returns task → best evaluation
 */
export function bestPerTask(evals: readonly TaskEval[]): Record<string, BestEval> {
  const best: Record<string, BestEval> = {};
  for (const e of evals) {
    if (improvesOn(e, best[e.task])) {
      best[e.task] = {
        step: e.step,
        metrics: e.metrics,
        groupScore: e.groupScore,
        ...(e.invalid === undefined ? {} : { invalid: e.invalid }),
      };
    }
  }
  return best;
}

/**
 * Benchmark average of per-task best group scores (spec A11). Uses `average` (tasks/mod.ts
 * `benchmarkAverage`) when every task of the benchmark was evaluated; on a task subset it is the
 * plain mean of the group scores of the evaluated tasks among `benchmarkTasks` (the run is then
 * partial; tables say so). Tasks outside `benchmarkTasks` (WNLI when a profile lists it, the AX
 * diagnostics, whose group score is NaN) never enter either average; with none of
 * `benchmarkTasks` evaluated the result is `{}`.
 *
 * @param benchmark the run's benchmark
 * @param best per-task best evaluations
 * @param benchmarkTasks the benchmark's trained tasks
 * @param average the official average over all tasks' group scores
 */
export function benchmarkAverages(
  benchmark: BenchmarkName,
  best: Readonly<Record<string, BestEval>>,
  benchmarkTasks: readonly string[],
  average: (b: BenchmarkName, scores: Record<string, number>) => number,
): { glue?: number; super_glue?: number } {
  const scores: Record<string, number> = {};
  for (const [t, b] of Object.entries(best)) scores[t] = b.groupScore;
  const names = benchmarkTasks.filter((t) => Object.hasOwn(scores, t));
  if (names.length === 0) return {};
  const complete = names.length === benchmarkTasks.length;
  const value = complete
    ? average(benchmark, scores)
    : names.reduce((a, t) => a + scores[t]!, 0) / names.length;
  return { [benchmark]: value };
}

/**
 * {@link benchmarkAverages} with the benchmarks' own tasks and official average (`tasks/`), as
 * `run_one.ts` records a run's (`$.averages`) and a merged per-task result, the tables and the
 * gate's check of a stored result recompute it.
 *
 * @param benchmark the run's benchmark
 * @param best per-task best evaluations
 * @returns the average of the benchmark, or `{}` when none of its tasks was evaluated
 */
export function officialAverages(
  benchmark: BenchmarkName,
  best: Readonly<Record<string, BestEval>>,
): { glue?: number; super_glue?: number } {
  return benchmarkAverages(benchmark, best, BENCHMARK_TASKS[benchmark], benchmarkAverage);
}

/**
 * T5's own printed benchmark average, a second reading beside {@link benchmarkAverages}' (spec
 * A11 keeps that one as the main column): `t5/scripts/parse_tb.py` `compute_avg_glue` adds an
 * "Average GLUE Score" per evaluation step, and `eval_utils.metric_group_max` takes that
 * column's maximum over steps like any other group's. So: at each step at which every one of
 * `benchmarkTasks` was evaluated, `average` of that step's group scores (the recorded ones: MNLI's
 * is already the mean of its matched and mismatched halves, a NaN metric already counted as 0);
 * the highest of those step averages. A NaN step average counts as -Infinity, as in
 * {@link improvesOn} (the result is NaN only when every step's is). A step lacking one of the
 * tasks is skipped; tasks outside `benchmarkTasks` (WNLI, AX) are ignored. It never exceeds the
 * average of the per-task bests when `average` is a mean, since that may take each task from
 * its own step.
 *
 * @param benchmark the run's benchmark
 * @param evals every evaluation of one run (one step sequence: not a `perTask` method's merged
 *   task runs)
 * @param benchmarkTasks the benchmark's averaged tasks
 * @param average the official average over all tasks' group scores (tasks/mod.ts
 *   `benchmarkAverage`)
 * @returns the best single-step average, or undefined when no step evaluated every task
 * @throws Error naming the task and step when a task has two evaluations at one step
 */
export function bestStepAverage(
  benchmark: BenchmarkName,
  evals: readonly Pick<TaskEval, "step" | "task" | "groupScore">[],
  benchmarkTasks: readonly string[],
  average: (b: BenchmarkName, scores: Record<string, number>) => number,
): number | undefined {
  const own = new Set(benchmarkTasks);
  const byStep = new Map<number, Record<string, number>>();
  for (const e of evals) {
    if (!own.has(e.task)) continue;
    let scores = byStep.get(e.step);
    if (scores === undefined) byStep.set(e.step, scores = {});
    if (Object.hasOwn(scores, e.task)) {
      throw new Error(
        `benchmarks/evaluator.ts bestStepAverage: task ${e.task} has two evaluations at step ` +
          `${e.step} (evals); a run evaluates each task once per step`,
      );
    }
    scores[e.task] = e.groupScore;
  }
  let best: number | undefined;
  for (const scores of byStep.values()) {
    if (Object.keys(scores).length !== own.size) continue;
    const v = average(benchmark, scores);
    if (best === undefined || rankOf(v) > rankOf(best)) best = v;
  }
  return best;
}
