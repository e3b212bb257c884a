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
export * from "./compare.ts";
export * from "./tables.ts";
export * from "./per_task.ts";
export * from "./memory.ts";
export * from "./device_memory.ts";
/** The model configuration the memory estimate and the accounting take (`model/config.ts`). */
export type { FeedForwardProj, T5Config } from "../model/config.ts";
export * from "./plots.ts";
export * from "./provenance.ts";
