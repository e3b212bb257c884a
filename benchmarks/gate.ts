/**
 * `deno task gate`: the regression gate of `deno task bench --compare`, over results that exist
 * already (a finished grid, shards written to folders of their own, another machine's results),
 * training nothing: every result of `--runs` is compared with its baseline run by
 * `benchmarks/compare.ts` `compareResults`, at the tolerances of the profile that gates them.
 *
 * @module
 */
import { parseFlags, refuseRepeatedFolders, runCli, UsageError } from "../model/usage.ts";
import { ignoreFileSizeSignal } from "../model/file_size_signal.ts";
import {
  compareResults,
  formatComparison,
  loadResults,
  noResultsMessage,
  refuseFileReadTwice,
  rejectDuplicates,
  runKey,
} from "./compare.ts";
import { isProfileName, listProfiles, loadProfile } from "./profile.ts";
import type { RunResult } from "./spec.ts";

/** `deno task gate --help`. */
export const GATE_USAGE =
  `Usage: deno task gate --baseline PATH --runs DIR [--runs DIR]... [options]

Gates run results against a baseline as deno task bench --compare does, training nothing.

  --baseline PATH   the baseline: a folder of run result JSONs or one JSON file of them
  --runs DIR        the results to gate: a folder of run result JSONs or a JSON file;
                    repeatable (shards' folders, read as one)
  --profile NAME    built-in profile name or profile JSON file whose tolerances gate (default:
                    the baseline's profile, when its runs are of one built-in profile); its name
                    must be the baseline's runs' profile
  --partial         a baseline run without a result in --runs is no failure (some shards' results)
  --help            this text

Prints the comparison (PASS or FAIL, each failure, notes of scores that moved within tolerance
and of runs without a baseline run).

Exit codes: 0 the gate passed, 1 an unexpected failure, 2 bad arguments (a missing or empty
baseline or --runs, a file there that is no run result, a profile that cannot be read or chosen,
or another profile than the baseline's), 3 the gate failed.`;

/** Exit code of a gate that failed, as `deno task bench --compare`'s. */
export const EXIT_GATE_FAILED = 3;

/** Options of {@link main} (tests capture the output). */
export interface GateMainOptions {
  /** Where `--help` and the comparison go (default `console.log`). */
  readonly log?: (s: string) => void;
  /** Where the error line goes (default `console.error`). */
  readonly error?: (s: string) => void;
}

/**
 * `deno task gate`.
 *
 * @param args command-line arguments
 * @param opts output sinks
 * @returns the exit code (0 passed or `--help`, 1 an unexpected failure, 2 bad arguments (the
 *   results and the profile among them), 3 the gate failed)
 */
export async function main(args: string[], opts: GateMainOptions = {}): Promise<number> {
  const log = opts.log ?? ((s: string) => console.log(s));
  let failed = false;
  const code = await runCli(
    async (a) => {
      failed = !(await gateCommand(a, log));
    },
    args,
    GATE_USAGE,
    { log, ...(opts.error === undefined ? {} : { error: opts.error }) },
  );
  return code === 0 && failed ? EXIT_GATE_FAILED : code;
}

/**
 * Reads a folder or file of results named by `flag`: one that is not there, holds no result, or
 * holds a file that is no result (each naming it) is refused as an argument, as `bench --compare`
 * refuses its baseline: nothing was gated.
 */
async function resultsOf(flag: string, path: string): Promise<RunResult[]> {
  let results: RunResult[];
  try {
    results = await loadResults(path);
  } catch (e) {
    throw new UsageError(`${flag} ${(e as Error).message}`, { cause: e });
  }
  if (results.length === 0) throw new UsageError(`${flag} ${noResultsMessage(path)}`);
  return results;
}

/** The work of {@link main}; returns whether the gate passed. */
async function gateCommand(args: string[], log: (s: string) => void): Promise<boolean> {
  const values = parseFlags(args, {
    tool: "deno task gate",
    options: {
      baseline: { type: "string" },
      runs: { type: "string", multiple: true },
      profile: { type: "string" },
      partial: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
    takes: {
      baseline: "a folder of run result JSONs or a JSON file",
      runs: "a folder of run result JSONs or a JSON file",
      profile: "a built-in profile name or a profile JSON file",
    },
    paths: { baseline: true, runs: true, profile: (v) => !isProfileName(v) },
  });
  if (values.baseline === undefined) {
    throw new UsageError(
      "--baseline is required: the results to gate against (e.g. results/baselines/ci); " +
        "deno task gate --help lists the flags",
    );
  }
  if (values.runs === undefined) {
    throw new UsageError(
      "--runs is required: the results to gate (a folder of run result JSONs); deno task gate " +
        "--help lists the flags",
    );
  }
  refuseRepeatedFolders("--runs", values.runs);
  const baseline = await resultsOf("--baseline", values.baseline);
  const current: RunResult[] = [];
  for (const r of values.runs) current.push(...await resultsOf("--runs", r));
  // One file named twice (a folder and a file in it): said as such, not as two results of a run.
  await refuseFileReadTwice("--runs", current);
  // Two results of one run in the baseline or in --runs: refused as bench refuses a baseline's.
  for (const [flag, rs] of [["--baseline", baseline], ["--runs", current]] as const) {
    try {
      rejectDuplicates(rs, runKey, "run key", "remove the stale one");
    } catch (e) {
      throw new UsageError(`${flag}: ${(e as Error).message}`, { cause: e });
    }
  }
  // The tolerances: the profile named, else the baseline's own when it is one built-in profile.
  const names = [...new Set(baseline.map((r) => r.spec.profile))].sort();
  let profileName = values.profile;
  if (profileName === undefined) {
    if (names.length !== 1 || !listProfiles().includes(names[0]!)) {
      throw new UsageError(
        `--profile is needed: the baseline's runs are of ${
          names.length === 1
            ? `profile "${names[0]}", no built-in one`
            : `profiles ${names.join(", ")}`
        }; name the profile (or its JSON file) whose tolerances gate`,
      );
    }
    profileName = names[0]!;
  }
  let profile;
  try {
    profile = await loadProfile(profileName);
  } catch (e) {
    throw new UsageError((e as Error).message, { cause: e });
  }
  // Another profile's tolerances (`--profile smoke` against ci's baseline: a loose default, no
  // loss check) would pass what the baseline's own fail.
  if (!names.includes(profile.name)) {
    throw new UsageError(
      `--profile ${profileName}: its tolerances are profile "${profile.name}"'s, but the ` +
        `baseline's runs are of ${
          names.length === 1
            ? `profile "${names[0]}"`
            : `profiles ${names.map((n) => `"${n}"`).join(", ")}`
        }: name the baseline's profile (or its JSON file), whose tolerances it was made for`,
    );
  }
  const tolerances = profile.tolerances;
  const cmp = compareResults(current, baseline, tolerances, { partial: values.partial });
  log(formatComparison(cmp));
  return cmp.ok;
}

if (import.meta.main) {
  ignoreFileSizeSignal();
  Deno.exit(await main(Deno.args));
}
