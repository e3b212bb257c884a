/**
 * Test helper: a tiny T5 with a method and the trainer's options for one step through
 * `lossAndGrads` (the memory tests of benchmarks/memory.ts and model/backprop.ts build the same).
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs";
import { preset } from "../model/config.ts";
import { disposeT5, initT5, type T5Model } from "../model/t5.ts";
import { getMethod } from "../model/methods/mod.ts";
import type { MethodInstance } from "../model/method.ts";
import { collate, type TrainBatch } from "./batching.ts";
import { DEFAULT_TRAIN, type TrainSpec } from "./spec.ts";
import { trainedVariables, type TrainOptions } from "./trainer.ts";

/** What {@link tinyTrainingStep} builds. */
export interface TinyTrainingStep {
  readonly model: T5Model;
  readonly instance: MethodInstance;
  /** The trained variables by name, and as the list `lossAndGrads` takes. */
  readonly params: Map<string, tf.Variable>;
  readonly varList: tf.Variable[];
  /** The trainer's options (model, instance, `train`, seed 0, tasks "a" and "b"). */
  readonly options: TrainOptions;
  /** A new batch of the step's rows (the caller disposes its tensors). */
  batch(): TrainBatch;
  /** Disposes the method instance and the model. */
  dispose(): void;
}

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
  const model = initT5(config, { seed: 1 });
  const m = getMethod(opts.method);
  const instance = m.create(
    { config, tasks: ["a", "b"], seed: 3, backbone: model.params },
    m.parseConfig(opts.methodConfig ?? {}, opts.where),
  );
  const cut = (i: number, k: number) => (opts.ragged ? i % k : 0);
  const rows = Array.from({ length: b }, (_, i) => ({
    input: Array.from({ length: li - cut(i, 3) }, (_, j) => 2 + ((i * 7 + j) % 200)),
    target: Array.from({ length: lt - cut(i, 2) }, (_, j) => 2 + ((i * 3 + j) % 200)),
    taskId: i % 2,
  }));
  const train: TrainSpec = { ...DEFAULT_TRAIN, batchSize: b, ...opts.train };
  const params = trainedVariables(model, instance);
  const options = {
    model,
    instance,
    train,
    seed: 0,
    taskNames: ["a", "b"],
  } as unknown as TrainOptions;
  return {
    model,
    instance,
    params,
    varList: [...params.values()],
    options,
    batch: () => collate(rows, { padTokenId: 0, eosTokenId: 1, decoderStartTokenId: 0 }),
    dispose: () => {
      instance.dispose();
      disposeT5(model);
    },
  };
}
