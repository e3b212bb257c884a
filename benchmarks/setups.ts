/**
 * The setup of runs: the (backend, device) pairs they ran on. The tables (`tables.ts`
 * `groupRuns`) and the score plot (`plots.ts` `scoreVsParamsSvg`) average seeds only within one
 * setup, by this one key, so a CPU seed and a GPU seed of one configuration (backend `auto`
 * picks per machine; the config id records only the requested backend) are never pooled.
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
  const setups = each.map((r) => JSON.stringify([r.provenance.backend.name, r.provenance.device]));
  return [...new Set(setups)].sort().map((x) => JSON.parse(x) as [string, string]);
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
