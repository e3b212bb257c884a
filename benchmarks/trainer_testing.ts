/**
 * Test helper: a tiny T5 with a method and the trainer's options for one step through
 * `lossAndGrads` (the memory tests of benchmarks/memory.ts and model/backprop.ts build the same),
 * built by `benchmarks/training_step.ts` as `benchmarks/gpu_check.ts`'s memory rows are.
 *
 * @module
 */
import { preset } from "../model/config.ts";
import { DEFAULT_TRAIN, type TrainSpec } from "./spec.ts";
import { type MethodTrainingStep, methodTrainingStep } from "./training_step.ts";

/** What {@link tinyTrainingStep} builds (its options' tasks are "a" and "b", seed 0). */
export type TinyTrainingStep = MethodTrainingStep;

/**
 * A tiny T5 (`presetName` with a 256-token vocabulary, dropout 0.1, seed 1), a method on tasks
 * "a" and "b" (seed 3), and `b` rows of `li` input and `lt` target tokens alternating the tasks
 * (with `ragged`, row i is `i % 3` input and `i % 2` target tokens shorter).
 *
 * @returns the model, instance, variables, trainer options and a batch maker
 */
export function tinyTrainingStep(opts: {
  readonly presetName?: string;
  readonly method: string;
  readonly methodConfig?: unknown;
  readonly b: number;
  readonly li: number;
  readonly lt: number;
  readonly ragged?: boolean;
  /** Overrides of `DEFAULT_TRAIN` (`batchSize` is `b`). */
  readonly train?: Partial<TrainSpec>;
  /** Names the caller in config errors. */
  readonly where: string;
}): TinyTrainingStep {
  const { b, li, lt } = opts;
  const config = { ...preset(opts.presetName ?? "tiny-v1_1"), vocabSize: 256, dropoutRate: 0.1 };
  return methodTrainingStep({
    config,
    modelSeed: 1,
    method: opts.method,
    ...(opts.methodConfig === undefined ? {} : { methodConfig: opts.methodConfig }),
    tasks: ["a", "b"],
    methodSeed: 3,
    train: { ...DEFAULT_TRAIN, batchSize: b, ...opts.train },
    batchSize: b,
    inputLength: li,
    targetLength: lt,
    ...(opts.ragged === undefined ? {} : { ragged: opts.ragged }),
    where: opts.where,
  });
}
