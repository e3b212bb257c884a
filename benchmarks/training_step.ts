/**
 * One training step's workload, built the way `benchmarks/run_one.ts` builds a run for the trainer:
 * a T5 backbone, a method instance made by the registry's `create` on the backbone's parameters,
 * the trained variables of `trainedVariables`, and the {@link TrainOptions} that the trainer's
 * `lossAndGrads` reads (the method's hooks are built per batch from its task ids there, as in
 * training). The batches are synthetic (fixed token ids, tasks alternating row by row), so no
 * data or tokenizer is needed. `benchmarks/gpu_check.ts`'s memory rows and the tests'
 * `tinyTrainingStep` (benchmarks/trainer_testing.ts) both build their steps with it.
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs";
import type { T5Config } from "../model/config.ts";
import { disposeT5, initT5, type T5Model } from "../model/t5.ts";
import { getMethod } from "../model/methods/mod.ts";
import type { MethodInstance } from "../model/method.ts";
import { collate, type EncodedExample, type TrainBatch } from "./batching.ts";
import type { TrainSpec } from "./spec.ts";
import { type BatchSource, trainedVariables, type TrainOptions } from "./trainer.ts";

/** What {@link methodTrainingStep} builds. */
export interface MethodTrainingStep {
  readonly model: T5Model;
  readonly instance: MethodInstance;
  /** The trained variables by name (backbone names and the method's), as the trainer keys them. */
  readonly params: Map<string, tf.Variable>;
  /** The trained variables as the list `lossAndGrads` takes. */
  readonly varList: tf.Variable[];
  /**
   * Every variable of the step, trained or frozen (backbone, then the method's), e.g. to upload
   * them to the GPU before measuring.
   */
  readonly allVariables: tf.Variable[];
  /** The trainer's options; its `source` gives {@link MethodTrainingStep.batch}'s batches. */
  readonly options: TrainOptions;
  /** A new batch of the step's rows (the caller disposes its tensors). */
  batch(): TrainBatch;
  /** Disposes the method instance and the model. */
  dispose(): void;
}

/** Options of {@link methodTrainingStep}. */
export interface MethodTrainingStepOptions {
  /** The backbone's configuration (its `dropoutRate` is the training dropout). */
  readonly config: T5Config;
  /** `initT5`'s seed. */
  readonly modelSeed: number;
  /** Method registry key (model/methods/mod.ts). */
  readonly method: string;
  /** The method's raw configuration (default `{}`: the method's defaults). */
  readonly methodConfig?: unknown;
  /** Task names, in task-id order (the method's per-task weights; at least one). */
  readonly tasks: readonly string[];
  /** The method's initialisation seed. */
  readonly methodSeed: number;
  /** The trainer's hyperparameters (`lossAndGrads` reads label smoothing, z-loss, micro-batch). */
  readonly train: TrainSpec;
  /** Rows of a batch. */
  readonly batchSize: number;
  /** Input tokens of a row. */
  readonly inputLength: number;
  /** Target tokens of a row. */
  readonly targetLength: number;
  /** Row i is `i % 3` input and `i % 2` target tokens shorter (padding in the batch). */
  readonly ragged?: boolean;
  /** Names the caller in the method's configuration errors. */
  readonly where: string;
}

/** The largest token id {@link syntheticRows} writes (ids 2 … 201, after pad and eos). */
export const SYNTHETIC_MAX_ID = 201;

/**
 * The synthetic rows of a batch: row i has task `i % numTasks` (every task present once the batch
 * has as many rows), input tokens `2 + (7i + j) % 200` and target tokens `2 + (3i + j) % 200` (ids
 * 2–201: no pad or EOS, within any T5 vocabulary); with `ragged`, row i is `i % 3` input and
 * `i % 2` target tokens shorter.
 *
 * @param b rows
 * @param li input tokens of a row
 * @param lt target tokens of a row
 * @param numTasks tasks the rows cycle through
 * @param ragged whether rows differ in length
 * @returns the rows, for `collate`
 */
export function syntheticRows(
  b: number,
  li: number,
  lt: number,
  numTasks: number,
  ragged = false,
): EncodedExample[] {
  // Ragged rows are up to 2 input and 1 target tokens shorter: each keeps at least one.
  const least = { rows: 1, "input length": ragged ? 3 : 1, "target length": ragged ? 2 : 1 };
  for (const [v, what] of [[b, "rows"], [li, "input length"], [lt, "target length"]] as const) {
    if (!Number.isInteger(v) || v < least[what]) {
      throw new Error(
        `benchmarks/training_step.ts syntheticRows: ${what} must be an integer >= ${least[what]}${
          ragged ? " (ragged rows)" : ""
        }, got ${v}`,
      );
    }
  }
  if (!Number.isInteger(numTasks) || numTasks < 1) {
    throw new Error(
      `benchmarks/training_step.ts syntheticRows: numTasks must be an integer >= 1, got ${numTasks}`,
    );
  }
  const cut = (i: number, k: number) => (ragged ? i % k : 0);
  return Array.from({ length: b }, (_, i) => ({
    input: Array.from(
      { length: li - cut(i, 3) },
      (_, j) => 2 + ((i * 7 + j) % (SYNTHETIC_MAX_ID - 1)),
    ),
    target: Array.from(
      { length: lt - cut(i, 2) },
      (_, j) => 2 + ((i * 3 + j) % (SYNTHETIC_MAX_ID - 1)),
    ),
    taskId: i % numTasks,
  }));
}

/**
 * Builds a T5 (`initT5(config, {seed: modelSeed})`), a method instance on it as run_one.ts does
 * (`getMethod(method).create({config, tasks, seed, backbone})` with the parsed configuration),
 * the trained variables, the trainer's options and a source of synthetic batches
 * ({@link syntheticRows}, collated with the config's pad and decoder-start ids). If the method
 * refuses its configuration, the model is disposed before the error propagates.
 *
 * @param o what to build
 * @returns the step's model, instance, variables, options and batch maker
 * @throws Error naming `o.where` for a bad method configuration
 */
export function methodTrainingStep(o: MethodTrainingStepOptions): MethodTrainingStep {
  if (o.tasks.length === 0) {
    throw new Error(`benchmarks/training_step.ts (${o.where}): at least one task is needed`);
  }
  // syntheticRows' ids run up to SYNTHETIC_MAX_ID: a smaller vocabulary would gather past its
  // table, which WebGPU does not report.
  if (o.config.vocabSize <= SYNTHETIC_MAX_ID) {
    throw new Error(
      `benchmarks/training_step.ts (${o.where}): the synthetic rows use token ids up to ` +
        `${SYNTHETIC_MAX_ID}; the config's vocabSize ${o.config.vocabSize} is too small`,
    );
  }
  const rows = syntheticRows(o.batchSize, o.inputLength, o.targetLength, o.tasks.length, o.ragged);
  const ids = {
    padTokenId: o.config.padTokenId,
    eosTokenId: o.config.eosTokenId,
    decoderStartTokenId: o.config.decoderStartTokenId,
  };
  const model = initT5(o.config, { seed: o.modelSeed });
  let instance: MethodInstance;
  try {
    const m = getMethod(o.method);
    instance = m.create(
      { config: o.config, tasks: o.tasks, seed: o.methodSeed, backbone: model.params },
      m.parseConfig(o.methodConfig ?? {}, o.where),
    );
  } catch (e) {
    disposeT5(model);
    throw e;
  }
  const dispose = () => {
    instance.dispose();
    disposeT5(model);
  };
  let params: Map<string, tf.Variable>;
  try {
    params = trainedVariables(model, instance);
  } catch (e) {
    dispose();
    throw e;
  }
  const batch = () => collate(rows, ids);
  const source: BatchSource = {
    next: batch,
    state: () => null,
    restore: () => {},
  };
  const options: TrainOptions = {
    model,
    instance,
    train: o.train,
    seed: 0,
    taskNames: o.tasks,
    source,
  };
  return {
    model,
    instance,
    params,
    varList: [...params.values()],
    allVariables: [...model.params.values(), ...instance.variables.values()],
    options,
    batch,
    dispose,
  };
}
