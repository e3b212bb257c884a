/**
 * The setup of runs: the (backend, device) pairs they ran on. The tables (`tables.ts`
 * `groupRuns`) and the score plot (`plots.ts` `scoreVsParamsSvg`) average seeds only within one
 * setup, by this one key, so a CPU seed and a GPU seed of one configuration (backend `auto`
 * picks per machine; the config id records only the requested backend) are never pooled. A CPU
 * device is keyed by its model, without the core and thread counts the description records
 * ({@link setupDevice}): those follow the job's CPU allotment (a shard run with another
 * `--cpus-per-task`, `taskset`), not the hardware, and the shards of one grid pool.
 *
 * @module
 */
import { perTaskParts } from "./per_task.ts";
import type { RunResult } from "./spec.ts";

/**
 * The distinct (backend, device) pairs that runs ran on (a per-task method's merged result: its
 * task runs each, `per_task.ts` `perTaskParts`), sorted.
 *
 * @param runs run results
 * @returns the pairs, `[backend name, device]`
 */
export function setupPairs(runs: readonly RunResult[]): [string, string][] {
  const each = runs.flatMap((x) => perTaskParts(x) ?? [x]);
  const setups = each.map((r) =>
    JSON.stringify([r.provenance.backend.name, setupDevice(r.provenance.device)])
  );
  return [...new Set(setups)].sort().map((x) => JSON.parse(x) as [string, string]);
}

/**
 * The device of a setup: a run's `provenance.device` without the logical core count and the
 * thread count of a CPU description (`provenance.ts` `deviceDescription`: `AMD EPYC x2 (wasm+blas,
 * 2 threads)` is `AMD EPYC (wasm+blas)`), or a hardware WebGPU adapter's subgroup sizes (which
 * only its provenance keeps); a software (fallback) adapter's stay, as they tell Mesa's llvmpipe
 * through Vulkan and through GL apart; any other description as it is.
 *
 * @example
 * ```ts
 * import { setupDevice } from "./setups.ts";
 * console.assert(setupDevice("AMD EPYC x1 (cpu, 1 threads)") === "AMD EPYC (cpu)");
 * console.assert(setupDevice("NVIDIA H200 (webgpu)") === "NVIDIA H200 (webgpu)");
 * console.assert(
 *   setupDevice("H200 (vendor nvidia, device 0, subgroups 32-32) (webgpu)") ===
 *     "H200 (vendor nvidia, device 0) (webgpu)",
 * );
 * ```
 *
 * @param device the recorded description
 * @returns the description without the counts
 */
export function setupDevice(device: string): string {
  return device.replace(/^(.+) x\d+ \(([^(),]+), \d+ threads?\)$/, "$1 ($2)")
    // A hardware WebGPU adapter's subgroup sizes (model/backend.ts adapterDescription), recorded
    // since d604561: the same GPU's runs before and after are one device. A software adapter's
    // keep them: Mesa's llvmpipe through Vulkan (8-8) and through GL (4-128) are two.
    .replace(/, subgroups \d+-\d+(?=\))/, "");
}

/**
 * The setup key of runs: {@link setupPairs} as JSON. Runs of one key ran on the same backends and
 * devices; more than one pair in a key is a per-task method's seed whose task runs ran on several.
 *
 * @param runs run results
 * @returns the key
 */
export function setupOfRuns(runs: readonly RunResult[]): string {
  return JSON.stringify(setupPairs(runs));
}
