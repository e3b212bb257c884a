/**
 * Test helpers: a tiny T5 with a method and the trainer's options for one step through
 * `lossAndGrads` (the memory tests of benchmarks/memory.ts and model/backprop.ts build the same),
 * built by `benchmarks/training_step.ts` as `benchmarks/gpu_check.ts`'s memory rows are; and
 * {@link toyTrain}, a real `train()` of a tiny T5 on toy pairs for fake `runOne`s.
 *
 * @module
 */
import { join } from "node:path";
import { preset } from "../model/config.ts";
import { disposeT5, initT5 } from "../model/t5.ts";
import { collate } from "./batching.ts";
import { Rng } from "./rng.ts";
import { DEFAULT_TRAIN, type RunOneOptions, type RunSpec, type TrainSpec } from "./spec.ts";
import { train, type TrainOptions, type TrainOutcome } from "./trainer.ts";
import { type MethodTrainingStep, methodTrainingStep } from "./training_step.ts";

/**
 * Trains a tiny T5 (tiny-v1_1, 64-token vocabulary, no dropout, seed 1) with no method on 8 toy
 * pairs (batches of 2 drawn by an `Rng` of `rngSeed`), with the run's train spec and seed, its
 * checkpoints in `<opts.outDir>/checkpoints` and `opts.checkpointMinutes` passed on, and a resume
 * reported to `opts.onProgress` (`phase: "resume"`), as `benchmarks/run_one.ts` does; `extra` adds
 * or overrides trainer options (`onStep`, `evaluate`, `code`, `taskNames`, `onResume`). The model is disposed before it returns or throws.
 *
 * @param spec the run
 * @param opts the runner's options for it
 * @param extra more trainer options
 * @param rngSeed the batches' seed
 * @returns what `train()` returned
 */
export async function toyTrain(
  spec: RunSpec,
  opts: RunOneOptions,
  extra: Partial<TrainOptions> = {},
  rngSeed = 11,
): Promise<TrainOutcome> {
  const ids = { padTokenId: 0, eosTokenId: 1, decoderStartTokenId: 0 };
  const model = initT5({ ...preset("tiny-v1_1"), vocabSize: 64, dropoutRate: 0 }, { seed: 1 });
  try {
    const rng = new Rng(rngSeed);
    const data = Array.from({ length: 8 }, (_, i) => ({
      input: [2 + i, 1],
      target: [40 + (i % 2), 1],
      taskId: 0,
    }));
    return await train({
      model,
      instance: {
        name: "toy",
        variables: new Map(),
        keepTaskPrefix: true,
        isBackboneTrainable: () => true,
        hooks: () => ({}),
        dispose: () => {},
      },
      train: spec.train,
      seed: spec.seed,
      taskNames: spec.tasks,
      source: {
        next: () => collate(Array.from({ length: 2 }, () => data[rng.nextInt(8)]!), ids),
        state: () => rng.state(),
        restore: (st) => rng.restore(st as ReturnType<Rng["state"]>),
      },
      checkpointDir: join(opts.outDir, "checkpoints"),
      ...(opts.checkpointMinutes === undefined
        ? {}
        : { checkpointMinutes: opts.checkpointMinutes }),
      runKey: spec.id,
      // As runOne reports it: the checkpoint step a resumed run continues from.
      onResume: (step) =>
        opts.onProgress?.({ phase: "resume", step, totalSteps: spec.train.steps }),
      ...extra,
    });
  } finally {
    disposeT5(model);
  }
}

/** What {@link tinyTrainingStep} builds (its options' tasks are "a" and "b", seed 0). */
export type TinyTrainingStep = MethodTrainingStep;

/**
 * A tiny T5 (`presetName` with a 256-token vocabulary unless `vocabSize` says otherwise,
 * dropout 0.1, seed 1), a method on tasks
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
  /** Vocabulary size (default 256). */
  readonly vocabSize?: number;
  /** Overrides of `DEFAULT_TRAIN` (`batchSize` is `b`). */
  readonly train?: Partial<TrainSpec>;
  /** Names the caller in config errors. */
  readonly where: string;
}): TinyTrainingStep {
  const { b, li, lt } = opts;
  const config = {
    ...preset(opts.presetName ?? "tiny-v1_1"),
    vocabSize: opts.vocabSize ?? 256,
    dropoutRate: 0.1,
  };
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
