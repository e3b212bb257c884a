/**
 * Compares two folders of run results of the same grid, e.g. one run on `wasm+blas` and one on
 * `webgpu` (`deno task bench --profile ci --backend webgpu --out B`): runs are matched by
 * `runKey` (which leaves out the backend, unlike the run id), and for each the largest relative
 * difference of its step losses and whether its benchmark averages are equal are printed. The
 * regression gate cannot do this: it matches runs by id, which includes the backend.
 *
 * Usage: `deno run -A benchmarks/loss_diff.ts BASELINE CURRENT`
 *
 * @module
 */
import { loadResults, runKey } from "./compare.ts";
import type { RunResult } from "./spec.ts";

/** One run of both folders compared. */
export interface LossDiff {
  /** The run key (profile, model, backbone, benchmark, method label, seed). */
  readonly key: string;
  /** Steps compared (both runs have the same number). */
  readonly steps: number;
  /** Largest |current − baseline| / |baseline| over the step losses. */
  readonly maxRelLossDiff: number;
  /** Whether every benchmark average is exactly equal. */
  readonly averagesEqual: boolean;
}

/**
 * The differences of each baseline run to the current run of the same key.
 *
 * @param baseline the baseline's results
 * @param current the current results
 * @returns one entry per baseline run, sorted by key
 * @throws Error naming a baseline run the current results lack, or whose step counts differ
 */
export function lossDiffs(
  baseline: readonly RunResult[],
  current: readonly RunResult[],
): LossDiff[] {
  const cur = new Map(current.map((r) => [runKey(r), r]));
  return baseline.map((b) => {
    const key = runKey(b);
    const c = cur.get(key);
    if (c === undefined) throw new Error(`benchmarks/loss_diff.ts: no current run ${key}`);
    if (c.losses.length !== b.losses.length) {
      throw new Error(
        `benchmarks/loss_diff.ts: ${key}: ${c.losses.length} steps against ${b.losses.length}`,
      );
    }
    const maxRelLossDiff = Math.max(
      0,
      ...b.losses.map((l, i) => Math.abs(c.losses[i]!.loss - l.loss) / Math.abs(l.loss)),
    );
    const averagesEqual = JSON.stringify(c.averages) === JSON.stringify(b.averages);
    return { key, steps: b.losses.length, maxRelLossDiff, averagesEqual };
  }).sort((x, y) => (x.key < y.key ? -1 : x.key > y.key ? 1 : 0));
}

if (import.meta.main) {
  const [base, current] = Deno.args;
  if (base === undefined || current === undefined) {
    console.error("Usage: deno run -A benchmarks/loss_diff.ts BASELINE CURRENT");
    Deno.exit(2);
  }
  const diffs = lossDiffs(await loadResults(base), await loadResults(current));
  for (const d of diffs) {
    console.log(
      `${d.key}: ${d.steps} steps, max relative loss difference ${
        d.maxRelLossDiff.toExponential(2)
      }, averages ${d.averagesEqual ? "equal" : "DIFFER"}`,
    );
  }
  const worst = Math.max(0, ...diffs.map((d) => d.maxRelLossDiff));
  console.log(
    `${diffs.length} runs: max relative loss difference ${worst.toExponential(2)}; ` +
      `${diffs.filter((d) => !d.averagesEqual).length} with other averages`,
  );
}
