/**
 * Compares two folders of run results of the same grid, e.g. one run on `wasm+blas` and one on
 * `webgpu` (`deno task bench --profile ci --backend webgpu --out B`): runs are matched by
 * `runKey` (which leaves out the backend, unlike the run id), and for each the largest relative
 * difference of its step losses and whether its benchmark averages are equal are printed. The
 * regression gate cannot do this: it matches runs by id, which includes the backend.
 *
 * Usage: `deno run -A benchmarks/loss_diff.ts BASELINE CURRENT` (exit 0 compared, 1 a result that
 * cannot be read or a run missing from CURRENT, 2 bad arguments: a missing folder, one without run
 * results, or one holding two results of one run key; {@link LOSS_DIFF_USAGE}).
 *
 * @module
 */
import { existsSync } from "node:fs";
import { type CliOptions, runCli, usageChecked, UsageError } from "../model/usage.ts";
import { loadResults, rejectDuplicates, runKey } from "./compare.ts";
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

/** How many missing run keys the error of {@link lossDiffs} lists before "and N more". */
const MISSING_LISTED = 3;

/**
 * The differences of each baseline run to the current run of the same key.
 *
 * @param baseline the baseline's results
 * @param current the current results
 * @param currentName what the current results are, for the error of missing runs (e.g. the
 *   folder they were read from)
 * @returns one entry per baseline run, sorted by key
 * @throws Error naming two results of one run key in either list (both files), the baseline runs
 *   the current results lack (how many, and the first few keys), or a run whose step counts differ
 */
export function lossDiffs(
  baseline: readonly RunResult[],
  current: readonly RunResult[],
  currentName = "the current results",
): LossDiff[] {
  for (const [rs, which] of [[baseline, "baseline"], [current, "current"]] as const) {
    // A Map keyed by run key would keep one of the two silently (whichever file sorts last).
    rejectDuplicates(rs, runKey, `${which} run key`, DUPLICATE_ADVICE);
  }
  const cur = new Map(current.map((r) => [runKey(r), r]));
  const missing = [...new Set(baseline.map(runKey).filter((k) => !cur.has(k)))].sort();
  if (missing.length > 0) {
    const more = missing.length - MISSING_LISTED;
    throw new Error(
      `benchmarks/loss_diff.ts: ${currentName}: no run for ${missing.length} of the ` +
        `${baseline.length} baseline runs: ${missing.slice(0, MISSING_LISTED).join(", ")}${
          more > 0 ? ` and ${more} more` : ""
        }`,
    );
  }
  return baseline.map((b) => {
    const key = runKey(b);
    const c = cur.get(key)!;
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

/** `deno run -A benchmarks/loss_diff.ts --help`. */
export const LOSS_DIFF_USAGE =
  `deno run -A benchmarks/loss_diff.ts BASELINE CURRENT   step losses of two result folders

  BASELINE, CURRENT   folders of run result JSONs, or JSON files of results, of the same grid
                      (e.g. one run on wasm+blas and one with --backend webgpu); runs are matched
                      by run key, backend aside, and for each the largest relative difference
                      of its step losses and whether its benchmark averages are equal are printed
  --help              this text

Exit codes: 0 compared (whatever the differences), 1 a result cannot be read, or baseline runs
are missing from CURRENT (how many, the first few named) or one has another number of steps,
2 bad arguments (a missing folder, one without run results, or two results of one run key in
one folder, both files named).`;

/**
 * The command: compares the two folders named by `args` and prints one line per run and a
 * summary (through `runCli` of `model/usage.ts`: `--help` prints {@link LOSS_DIFF_USAGE}, an
 * error is one line, exit 2 for bad arguments, 1 for a failure).
 *
 * @param args command-line arguments: BASELINE CURRENT
 * @param opts output sinks
 * @returns the exit code
 */
export function main(args: string[], opts: CliOptions = {}): Promise<number> {
  const log = opts.log ?? ((s: string) => console.log(s));
  return runCli(
    async (a) => {
      const flag = a.find((x) => /^-[-A-Za-z]/.test(x));
      if (flag !== undefined) {
        throw new UsageError(
          `unknown flag ${flag}; ${LOSS_DIFF_TOOL} takes BASELINE CURRENT (--help: what they are)`,
        );
      }
      if (a.length !== 2) {
        throw new UsageError(
          `${LOSS_DIFF_TOOL} takes two folders, BASELINE CURRENT; got ${a.length} argument(s)`,
        );
      }
      for (const [name, path] of [["BASELINE", a[0]!], ["CURRENT", a[1]!]] as const) {
        if (!existsSync(path)) throw new UsageError(`${name} ${path}: no such folder or file`);
      }
      const [baseline, current] = [await loadResults(a[0]!), await loadResults(a[1]!)];
      for (
        const [name, path, rs] of [["BASELINE", a[0]!, baseline], [
          "CURRENT",
          a[1]!,
          current,
        ]] as const
      ) {
        // Nothing compared would read as a pass ("0 runs: max relative loss difference 0").
        if (rs.length === 0) {
          throw new UsageError(
            `${name} ${path}: no run results (*.json) there; deno task bench writes them (its ` +
              `--out)`,
          );
        }
        usageChecked(() => rejectDuplicates(rs, runKey, `${name} run key`, DUPLICATE_ADVICE));
      }
      const diffs = lossDiffs(baseline, current, `CURRENT ${a[1]!}`);
      for (const d of diffs) {
        log(
          `${d.key}: ${d.steps} steps, max relative loss difference ${
            d.maxRelLossDiff.toExponential(2)
          }, averages ${d.averagesEqual ? "equal" : "DIFFER"}`,
        );
      }
      const worst = Math.max(0, ...diffs.map((d) => d.maxRelLossDiff));
      log(
        `${diffs.length} runs: max relative loss difference ${worst.toExponential(2)}; ` +
          `${diffs.filter((d) => !d.averagesEqual).length} with other averages`,
      );
    },
    args,
    LOSS_DIFF_USAGE,
    opts,
  );
}

/** What to do about two results of one run key (the error of `rejectDuplicates`). */
const DUPLICATE_ADVICE = "remove the stale one (the run id changes with the configuration)";

/** The command as the usage text names it. */
const LOSS_DIFF_TOOL = "deno run -A benchmarks/loss_diff.ts";

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
