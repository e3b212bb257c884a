/**
 * The benchmark product: profiles, grid expansion and sharding, the runner, result tables,
 * plots and the regression gate. Entry points: `deno task bench` (`cli.ts`) and
 * `deno task tables` (`tables.ts`).
 *
 * @example
 * ```ts
 * import { expandGrid, loadProfile, shardGrid } from "./mod.ts";
 * import { sharedPath } from "../model/shared_dir.ts";
 * const profile = await loadProfile("ci");
 * const grid = expandGrid(profile, { dataDir: sharedPath("data") });
 * const mine = shardGrid(grid, { index: 0, count: 4 });
 * console.assert(mine.length <= grid.length);
 * ```
 *
 * @module
 */
export * from "./spec.ts";
export * from "./profile.ts";
export * from "./runner.ts";
/** Trains and evaluates one run: what `runGrid` takes as `runOne` (`run_one.ts`). */
export { runOne } from "./run_one.ts";
/**
 * What `runOne` throws when a run cannot finish (a NaN or infinite loss, gradient norm or updated
 * variable, a stop request such as Ctrl-C, a lost run claim), and the stop request itself
 * (`trainer.ts`, `run_claim.ts`): a caller driving its own runs tells them from a bug by
 * `instanceof`.
 */
export {
  type BatchSource,
  clearStopRequest,
  MixtureBatches,
  NonFiniteLossError,
  NonFiniteVariablesError,
  requestStop,
  stopRequested,
  train,
  trainedVariables,
  TrainingInterruptedError,
  type TrainOptions,
  type TrainOutcome,
} from "./trainer.ts";
export { collate, encodeExample, stripTaskPrefix } from "./batching.ts";
export { evaluate, makeEvalSet } from "./evaluator.ts";
export { learningRateAt } from "./schedule.ts";
export { ClaimLostError, type ClaimStopOption } from "./run_claim.ts";
/**
 * The optimizers `runOne` trains with (Adafactor as Hugging Face or Mesh TensorFlow set it, and
 * AdamW; `optim.ts`), and the configuration a run's `train` settings give (`trainer.ts`), for a
 * training loop of one's own over `forward` and `crossEntropyLoss`.
 */
export {
  type AdafactorConfig,
  type AdamWConfig,
  createOptimizer,
  type Optimizer,
  type OptimizerConfig,
} from "./optim.ts";
export { optimizerConfigFor } from "./trainer.ts";
export * from "./compare.ts";
export * from "./tables.ts";
export * from "./per_task.ts";
export * from "./memory.ts";
export * from "./device_memory.ts";
export * from "./disk_space.ts";
/** The model configuration the memory estimate and the accounting take (`model/config.ts`). */
export type { FeedForwardProj, T5Config } from "../model/config.ts";
export * from "./plots.ts";
export * from "./provenance.ts";
