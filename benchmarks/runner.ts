/**
 * Grid expansion, sharding and execution: a {@link Profile} becomes a list of {@link RunSpec}s
 * (models × backbones × benchmarks × methods × seeds), a shard takes a deterministic slice of it, and
 * {@link runGrid} trains each run with an injectable `runOne`, writing one result JSON per run
 * atomically and skipping finished runs when resuming.
 *
 * Each run has a work folder `<out>/<result file name without .json>/` that holds only its
 * checkpoints. Without `resume` it is cleared before the run starts, so the run trains afresh
 * with the current code; with `resume` an unfinished run continues from its newest checkpoint
 * that can be resumed (an older kept one when the newest does not load: `benchmarks/trainer.ts`)
 * (and records that in `provenance.resumedFrom`). Once the result JSON is written the folder is
 * removed (or, after a kill between the two, when `resume` skips the finished run): checkpoints
 * only serve to resume an unfinished run. Folders are removed through a `.<stem>.del-<tag>` name,
 * so a kill while removing leaves no partial checkpoint where a resume would look.
 *
 * @module
 */
import { basename, dirname, join } from "node:path";
import {
  discardFolder,
  fileChange,
  type FileIdentity,
  fileIdentity,
  isDirectorySync,
  makeHeldTempDir,
  pathExists,
  recoverAsideFolders,
  removeDiscardedFolders,
  removeStaleTemps,
  swapFolderInto,
  TEMP_TAG_SOURCE,
  type TempPattern,
  writeFileAtomic,
} from "../model/fs.ts";
import { errorChain } from "../model/http.ts";
import { type CheckpointFileRecord, fileDigest } from "../model/checkpoint.ts";
import { parseJsonFile } from "../model/json.ts";
import { noMirrorNote, partitionTasks } from "../tasks/data.ts";
import {
  availableTasks,
  BENCHMARK_TASKS,
  hasTrainAndValidation,
  sourceId,
  TASKS,
  TRAIN_ONLY_TASKS,
} from "../tasks/mod.ts";
import {
  type BackendChoice,
  type BenchmarkName,
  BENCHMARKS,
  FINAL_WEIGHTS_FOLDER,
  firstRepeat,
  missingTestFiles,
  pretrainReadBy,
  type Profile,
  resolveListedTask,
  resolveTrainOnlyTask,
  runFileName,
  runId,
  type RunOneFn,
  type RunProgress,
  type RunResult,
  type RunSpec,
  TEST_DIAGNOSTICS,
  testPredictionsDir,
  trainFor,
  validateRunResult,
} from "./spec.ts";
import type { RunOneOptions } from "./spec.ts";
import { listCheckpoints } from "./checkpointing.ts";
import { checkRecordedScores } from "./compare.ts";
import {
  type CheckpointProvenance,
  codeGitState,
  type DataProvenance,
  type RunProvenance,
} from "./provenance.ts";
import {
  claimIsLive,
  type ClaimOutcome,
  claimRun,
  type ClaimStopOption,
  type HeldClaim,
  holderName,
  RUN_LOCK_HEARTBEAT_MS,
  RUN_LOCK_POLL_MS,
  type RunClaimHolder,
  runLockStaleMs,
  type RunLockTiming,
  sweepStaleClaims,
  thisHost,
} from "./run_claim.ts";

// The run-claim API, for importers of this module (`benchmarks/mod.ts`).
export {
  holderName,
  RUN_LOCK_HEARTBEAT_MS,
  RUN_LOCK_POLL_MS,
  RUN_LOCK_STALE_ENV,
  RUN_LOCK_STALE_MS,
  type RunClaimHolder,
  runLockStaleMs,
  type RunLockTiming,
} from "./run_claim.ts";

/** Where task names come from: the benchmark's trained tasks and what the data dir holds. */
export interface TaskCatalog {
  /**
   * Trained tasks of a benchmark, in mixture order (`tasks/mod.ts` `BENCHMARK_TASKS`): what a
   * profile without a `tasks` list trains.
   */
  benchmarkTasks(benchmark: BenchmarkName): readonly string[];
  /**
   * The tasks a profile's `tasks` may list (default: `benchmarkTasks` and
   * {@link TRAINABLE_TASKS}).
   */
  trainableTasks?(benchmark: BenchmarkName): readonly string[];
  /**
   * Whether the train and validation files of a task are present in `dataDir`
   * (`tasks/data.ts` `availableTasks`).
   */
  isAvailable(benchmark: BenchmarkName, task: string, dataDir: string): boolean;
  /**
   * The files of a task's test splits (`spec.ts` `testSplits`) that `dataDir` lacks, relative to
   * it: what a `train.predictTest` run of the task reads at its start (default: `spec.ts`
   * `missingTestFiles`; a dry run's catalog counts the downloads it plans as done).
   */
  missingTestFiles?(task: string, dataDir: string): string[];
}

/**
 * The tasks a profile's `tasks` may list, per benchmark: every task of the registry
 * (`tasks/registry.ts` `TASKS`) with train and validation files, the benchmark's
 * `BENCHMARK_TASKS` first (in their order), then the others in registry order (GLUE: WNLI).
 * Only `BENCHMARK_TASKS` are trained by a profile without a `tasks` list and enter the benchmark
 * average; another listed task is trained and scored in its own column.
 */
export const TRAINABLE_TASKS: Readonly<Record<BenchmarkName, readonly string[]>> = Object.freeze({
  glue: trainableTasksOf("glue"),
  super_glue: trainableTasksOf("super_glue"),
});

function trainableTasksOf(b: BenchmarkName): readonly string[] {
  const extra = Object.values(TASKS).filter((t) =>
    t.benchmark === b && hasTrainAndValidation(t) && !BENCHMARK_TASKS[b].includes(t.name)
  );
  return [...BENCHMARK_TASKS[b], ...extra.map((t) => t.name)];
}

/**
 * The trained tasks per benchmark: `tasks/registry.ts` `BENCHMARK_TASKS` itself.
 *
 * @deprecated use `BENCHMARK_TASKS` (`tasks/mod.ts`); kept for existing callers.
 */
export const FALLBACK_BENCHMARK_TASKS: Readonly<Record<BenchmarkName, readonly string[]>> =
  BENCHMARK_TASKS;

/**
 * Whether the registry's train and validation files of a task (`TASKS[task].files`) are all
 * under `dataDir` (MNLI's evaluation files are `validation_matched` and
 * `validation_mismatched`; a train-only task has only train files).
 */
function fileCatalogAvailable(_benchmark: BenchmarkName, task: string, dataDir: string): boolean {
  const t = Object.hasOwn(TASKS, task) ? TASKS[task] : undefined;
  // A train-only task (DPR) has train files alone.
  if (t === undefined || (!hasTrainAndValidation(t) && t.trainOnly !== true)) return false;
  // Test splits aside (MNLI's test_matched and test_mismatched too, as the default catalog).
  const splits = Object.entries(t.files).filter(([split]) => !split.startsWith("test"));
  return splits.flatMap(([, files]) => files ?? []).every((f) => {
    try {
      return Deno.statSync(join(dataDir, f.path)).isFile;
    } catch {
      return false;
    }
  });
}

/**
 * A task's files the default catalog needs (train and validation; `tasks/data.ts`
 * `partitionTasks`) that are not files under `dataDir`: each path, with `: a folder, not a file`
 * where a folder is in its place.
 *
 * @param task the task
 * @param dataDir the data folder
 * @returns the paths, relative to `dataDir`
 */
function absentFiles(task: string, dataDir: string): string[] {
  let missing;
  try {
    missing = partitionTasks(dataDir, [task]).missing;
  } catch {
    return []; // no task source of that name: nothing to name
  }
  return missing.flatMap((m) => m.files).map((path) =>
    isDirectorySync(join(dataDir, path)) ? `${path}: a folder, not a file` : path
  );
}

/**
 * A catalog from the task registry's file lists alone (`TASKS[task].files` under the data dir),
 * without the download manifest and merged view that {@link tasksCatalog} consults.
 */
export const FILE_CATALOG: TaskCatalog = {
  benchmarkTasks: (b) => BENCHMARK_TASKS[b],
  trainableTasks: (b) => TRAINABLE_TASKS[b],
  isAvailable: fileCatalogAvailable,
};

/**
 * The task catalog of the tasks module: `BENCHMARK_TASKS`, and `availableTasks` of the data dir
 * (which needs each task's train and validation files).
 *
 * @returns the catalog
 */
export function tasksCatalog(): TaskCatalog {
  const cache = new Map<string, Set<string>>();
  return {
    benchmarkTasks: (b) => BENCHMARK_TASKS[b],
    trainableTasks: (b) => TRAINABLE_TASKS[b],
    isAvailable: (_b, task, dataDir) => {
      let set = cache.get(dataDir);
      if (set === undefined) {
        set = new Set(availableTasks(dataDir));
        cache.set(dataDir, set);
      }
      // availableTasks has returned canonical ids (`glue/cola`) and registry names (`cola`).
      return set.has(task) || set.has(sourceId(task));
    },
  };
}

/**
 * {@link tasksCatalog}, asynchronously (kept for existing callers).
 *
 * @returns the catalog
 */
export function defaultTaskCatalog(): Promise<TaskCatalog> {
  return Promise.resolve(tasksCatalog());
}

/** Options of {@link expandGrid}. */
export interface ExpandOptions {
  /** Data root, checked for task files. */
  readonly dataDir: string;
  /** Task catalog (default {@link tasksCatalog}; {@link FILE_CATALOG} needs no tasks module). */
  readonly catalog?: TaskCatalog;
  /** Backend override (`--backend`). */
  readonly backend?: BackendChoice;
  /**
   * Report missing task files here and keep the tasks (`--dry-run`), instead of throwing.
   */
  readonly onMissing?: (message: string) => void;
  /**
   * Told once per benchmark the tasks the profile's `skipMissingTasks` leaves out for their
   * missing files, as a note (not an error): that benchmark's averages then cover the other
   * tasks only. Default: said nowhere.
   */
  readonly onNote?: (message: string) => void;
  /**
   * What named `dataDir` (`"--data-dir"`, `"HYPERPROMPT_DATA"`), absent for the default folder:
   * a missing-task message then says to put the files there, not to pass `--data-dir`.
   */
  readonly dataDirNamedBy?: string;
  /**
   * The roots behind the default data folder (used when {@link ExpandOptions.dataDirNamedBy} is
   * absent): a missing-task message then names the folders looked in, not `dataDir` alone (one of
   * them, or a folder of links to both), and what the download did.
   */
  readonly defaultData?: DefaultDataRoots;
}

/** The roots behind the default data folder (`tasks/data.ts` `defaultDataDir`). */
export interface DefaultDataRoots {
  /** The download cache's data folder (`defaultCacheDir`), absent when none can be named. */
  readonly cache?: string;
  /** The offline mirror (`sharedPath("data")`: `../shared/data`, `HYPERPROMPT_SHARED`). */
  readonly mirror: string;
  /** Whether {@link DefaultDataRoots.mirror} exists (else the message says it does not). */
  readonly mirrorExists: boolean;
  /**
   * Whether `deno task bench` tried to download the missing tasks and could not (its warning
   * came first): the message then says so instead of advising the download again.
   */
  readonly downloadFailed?: boolean;
}

/**
 * Where missing task files were looked for: `under "<dataDir>"`, or with
 * {@link ExpandOptions.defaultData} the cache and the mirror (saying when there is no mirror).
 */
function missingWhere(opts: ExpandOptions): string {
  const roots = opts.dataDirNamedBy === undefined ? opts.defaultData : undefined;
  if (roots === undefined) return `under "${opts.dataDir}"`;
  const cache = roots.cache === undefined
    ? `"${opts.dataDir}"`
    : `the download cache "${roots.cache}"`;
  return roots.mirrorExists
    ? `under ${roots.cache === undefined ? "" : `${cache} or `}the offline mirror "${roots.mirror}"`
    : `under ${cache} (${noMirrorNote(roots.mirror)})`;
}

/** What to do about missing task files, for {@link ExpandOptions.dataDirNamedBy}. */
function missingAdvice(opts: ExpandOptions): string {
  if (opts.dataDirNamedBy !== undefined) {
    return `that folder was named by ${opts.dataDirNamedBy}: put the files there in the official ` +
      `layout (glue/<Task>/…, super_glue/<Task>/…), or leave ${opts.dataDirNamedBy} out to use ` +
      "the download cache (deno task download)";
  }
  return opts.defaultData?.downloadFailed === true
    ? "bench could not download them (the warning above says why); once that is fixed, rerun, " +
      "or pass --data-dir naming a folder that has them"
    : "download them (deno task download) or pass --data-dir";
}

/**
 * The tasks a profile asks of one benchmark: those it lists (any of the catalog's trainable
 * tasks, resolved by `spec.ts` `resolveListedTask`), else all of the benchmark's trained tasks.
 */
function chosenTasks(profile: Profile, benchmark: BenchmarkName, catalog: TaskCatalog): string[] {
  const listed = profile.tasks?.[benchmark];
  if (listed === undefined) return [...catalog.benchmarkTasks(benchmark)];
  // A catalog that names no trainable tasks (one built around `benchmarkTasks` alone) takes the
  // registry's besides its own.
  const trainable = (b: BenchmarkName) =>
    catalog.trainableTasks?.(b) ??
      [...new Set([...catalog.benchmarkTasks(b), ...TRAINABLE_TASKS[b]])];
  const lists = Object.fromEntries(BENCHMARKS.map((b) => [b, trainable(b)])) as Record<
    BenchmarkName,
    readonly string[]
  >;
  const tasks = listed.map((name, i) => {
    const r = resolveListedTask(benchmark, name, lists);
    if (r.problem !== undefined) {
      throw new Error(`Profile "${profile.name}": $.tasks.${benchmark}[${i}] ${r.problem}`);
    }
    return r.task;
  });
  refuseRepeatedTask(profile, `$.tasks.${benchmark}`, tasks);
  return tasks;
}

/**
 * Throws naming `at[i]` and `at[j]` when the resolved `tasks` name one task twice, which a profile
 * validated without the registry's lists may (`rte` and `glue/rte`, `dpr` and `dpr_v001_simple`):
 * one mixture would train it twice over, under two task ids, and the tables would score it once.
 */
function refuseRepeatedTask(profile: Profile, at: string, tasks: readonly string[]): void {
  const repeat = firstRepeat(tasks);
  if (repeat === undefined) return;
  const [i, j] = repeat;
  throw new Error(
    `Profile "${profile.name}": ${at}[${i}] repeats task "${tasks[i]}" (already ${at}[${j}])`,
  );
}

/**
 * The tasks a profile's grid asks for (listed, or every task of each of its benchmarks, then its
 * `extraTrainTasks`) whose files (train and validation; train only for a train-only task)
 * `dataDir` lacks, and with `train.predictTest` those whose test files it lacks, the diagnostics
 * their runs predict (AX with MNLI, AX-b and AX-g with SuperGLUE RTE) and, for GLUE, WNLI (whose
 * test file the submission's `WNLI.tsv` is made from) whose test files it lacks, as download ids
 * (`glue/mnli`, `super_glue/rte`): what `deno task bench` fetches before expanding the grid.
 *
 * @param profile a validated profile
 * @param opts data dir and task catalog
 * @returns download ids, in profile order
 */
export function missingProfileTasks(
  profile: Profile,
  opts: Pick<ExpandOptions, "dataDir" | "catalog">,
): string[] {
  const catalog = opts.catalog ?? tasksCatalog();
  return profile.benchmarks.flatMap((b) => {
    const chosen = chosenTasks(profile, b, catalog);
    // With train.predictTest, the diagnostics their tasks' runs predict beside their test sets
    // (AX, AX-b, AX-g), whose test files must be there when a run starts.
    const predicts = predictsTests(profile, b);
    const diagnostics = predicts
      ? chosen.flatMap((t) => TEST_DIAGNOSTICS[t] ?? []).filter((d) =>
        missingTestFiles(d, opts.dataDir).length > 0
      )
      : [];
    // GLUE's submission has WNLI.tsv, the majority class for every row of WNLI's test file (T5
    // trains no WNLI): `deno task submission` reads that file, which no run does.
    const forSubmission = predicts && b === "glue" && !chosen.includes("wnli") &&
        missingTestFiles("wnli", opts.dataDir).length > 0
      ? ["wnli"]
      : [];
    // Their own test files too: a run that predicts reads them at its start.
    const missingOf = catalog.missingTestFiles ?? missingTestFiles;
    const tested = predicts ? chosen.filter((t) => missingOf(t, opts.dataDir).length > 0) : [];
    return [
      ...new Set([
        ...[...chosen, ...extraTrainTasks(profile, b)].filter((t) =>
          !catalog.isAvailable(b, t, opts.dataDir)
        ),
        ...tested,
        ...diagnostics,
        ...forSubmission,
      ]),
    ].map((t) => sourceId(t));
  });
}

/**
 * The train-only tasks a profile adds to the mixture of its multi-task runs of `benchmark`
 * (`extraTrainTasks`, validated against `tasks/registry.ts` `TRAIN_ONLY_TASKS`), in profile order.
 */
function extraTrainTasks(profile: Profile, benchmark: BenchmarkName): string[] {
  const at = `$.extraTrainTasks.${benchmark}`;
  const tasks = (profile.extraTrainTasks?.[benchmark] ?? []).map((name, i) => {
    const r = resolveTrainOnlyTask(benchmark, name, TRAIN_ONLY_TASKS);
    if (r.problem !== undefined) {
      throw new Error(`Profile "${profile.name}": ${at}[${i}] ${r.problem}`);
    }
    return r.task;
  });
  refuseRepeatedTask(profile, at, tasks);
  return tasks;
}

/**
 * The train-only tasks of a benchmark whose train files `dataDir` lacks: the same "missing task
 * files" error (or, with `onMissing`, report) as an evaluated task's; never skipped, since a run
 * without them would not train the mixture the profile asks for.
 */
function resolveExtraTrainTasks(
  profile: Profile,
  benchmark: BenchmarkName,
  opts: ExpandOptions,
): string[] {
  const catalog = opts.catalog ?? tasksCatalog();
  const extra = extraTrainTasks(profile, benchmark);
  const missing = extra.filter((t) => !catalog.isAvailable(benchmark, t, opts.dataDir));
  if (missing.length === 0) return extra;
  // Named with its files and the download command: the official SuperGLUE downloads lack DPR.
  const files = missing.flatMap((t) => TASKS[t]?.files.train?.map((f) => f.path) ?? []);
  const message = `Profile "${profile.name}": missing ${benchmark} train-only task files for ${
    missing.join(", ")
  } ($.extraTrainTasks.${benchmark}: ${files.join(", ")}) ${missingWhere(opts)}; ${
    missingAdvice(opts)
  }${
    opts.dataDirNamedBy === undefined && opts.defaultData?.downloadFailed === true
      ? ""
      : ` (deno task download --tasks ${missing.map(sourceId).join(",")})`
  }`;
  if (opts.onMissing === undefined) throw new Error(message);
  opts.onMissing(message);
  return extra;
}

/** Whether a run of `benchmark` predicts test sets: a method's `train.predictTest` there. */
function predictsTests(profile: Profile, benchmark: BenchmarkName): boolean {
  return profile.methods.some((m) => trainFor(profile, benchmark, m).predictTest === true);
}

/**
 * The test files a benchmark's `train.predictTest` runs read at their start (their own tasks'
 * test splits; the diagnostics beside them are optional, `cli.ts` `missingDiagnosticTests`) that
 * `dataDir` lacks: the "missing task files" error (or, with `onMissing`, report) naming them,
 * before any run trains (a run found them missing only at its start, after the runs before it).
 */
function checkPredictedTests(
  profile: Profile,
  benchmark: BenchmarkName,
  tasks: readonly string[],
  opts: ExpandOptions,
): void {
  if (!predictsTests(profile, benchmark)) return;
  const missingOf = opts.catalog?.missingTestFiles ?? missingTestFiles;
  const missing = tasks.map((t) => [t, missingOf(t, opts.dataDir)] as const).filter(([, f]) =>
    f.length > 0
  );
  if (missing.length === 0) return;
  const message = `Profile "${profile.name}": missing ${benchmark} test files for ${
    missing.map(([t]) => t).join(", ")
  } (${missing.flatMap(([, f]) => f).join(", ")}: train.predictTest predicts them) ${
    missingWhere(opts)
  }; ${missingAdvice(opts)}${
    opts.dataDirNamedBy === undefined && opts.defaultData?.downloadFailed === true
      ? ""
      : `; they come with deno task download --tasks ${missing.map(([t]) => sourceId(t)).join(",")}`
  }; or set "predictTest": false`;
  if (opts.onMissing === undefined) throw new Error(message);
  opts.onMissing(message);
}

function resolveTasks(
  profile: Profile,
  benchmark: BenchmarkName,
  opts: ExpandOptions,
): string[] {
  const catalog = opts.catalog ?? tasksCatalog();
  const listed = profile.tasks?.[benchmark];
  const chosen = chosenTasks(profile, benchmark, catalog);
  const missing = chosen.filter((t) => !catalog.isAvailable(benchmark, t, opts.dataDir));
  if (missing.length === 0) return chosen;
  if (listed === undefined && profile.skipMissingTasks) {
    const kept = chosen.filter((t) => !missing.includes(t));
    if (kept.length === 0) {
      throw new Error(
        `Profile "${profile.name}": no ${benchmark} task has train and validation files ${
          missingWhere(opts)
        }; ${missingAdvice(opts)}`,
      );
    }
    opts.onNote?.(
      `Profile "${profile.name}": leaving out ${benchmark} task${missing.length === 1 ? "" : "s"} ${
        missing.join(", ")
      } (skipMissingTasks; no train and validation files ${
        missingWhere(opts)
      }): its ${benchmark} averages cover the other ${kept.length} task${
        kept.length === 1 ? "" : "s"
      } only`,
    );
    return kept;
  }
  // The profile lists none of the benchmark's tasks and some have files: skipMissingTasks would
  // run those, so it is named as the other way out.
  const skipping = listed === undefined && missing.length < chosen.length
    ? `, or set "skipMissingTasks": true in the profile to run the tasks present (partial averages)`
    : "";
  // Each task's files that are not there, or not files (h388: the message named the task alone).
  const files = [...new Set(missing.flatMap((t) => absentFiles(t, opts.dataDir)))];
  const message = `Profile "${profile.name}": missing ${benchmark} task files for ${
    missing.join(", ")
  }${files.length === 0 ? "" : ` (${files.join(", ")})`} ${missingWhere(opts)}; ${
    missingAdvice(opts)
  }${skipping}`;
  if (opts.onMissing === undefined) throw new Error(message);
  opts.onMissing(message);
  return chosen;
}

/**
 * Expand a profile into its grid, in profile order (models, backbones, benchmarks, methods,
 * seeds). Every spec carries one backbone, and those of the profile's `pretrain` overrides that
 * the run reads (`pretrainReadBy`; absent when none, so a random run's id does not follow
 * pretraining settings it does not use). A method entry with
 * `perTask` gives one run per task and seed (tasks in mixture order, then seeds), each with that
 * one task in `tasks` and the benchmark's tasks in `perTaskOf`. The profile's `extraTrainTasks`
 * of a benchmark go into every multi-task run's `trainOnlyTasks` (trained after `tasks`, never
 * evaluated), not into a per-task run: a per-task method (Prompt-Tuning as Lester et al. train
 * it) trains one run per evaluated task, and a run of a task never evaluated would give no score.
 *
 * @param profile a validated profile
 * @param opts data dir, task catalog, backend override
 * @returns one spec per run; ids are stable hashes of the content
 * @throws Error naming the profile and the unknown, missing or repeated task, or when two grid
 *   cells are identical
 */
export function expandGrid(profile: Profile, opts: ExpandOptions): RunSpec[] {
  const specs: RunSpec[] = [];
  const tasksOf = new Map<BenchmarkName, string[]>();
  const extraOf = new Map<BenchmarkName, string[]>();
  for (const b of profile.benchmarks) {
    tasksOf.set(b, resolveTasks(profile, b, opts));
    extraOf.set(b, resolveExtraTrainTasks(profile, b, opts));
    checkPredictedTests(profile, b, tasksOf.get(b)!, opts);
  }
  for (const model of profile.models) {
    for (const backbone of profile.backbones) {
      // The pretraining settings this model and backbone read (none for most).
      const pretrain = pretrainReadBy(profile.pretrain, model, backbone);
      for (const benchmark of profile.benchmarks) {
        const tasks = tasksOf.get(benchmark)!;
        for (const m of profile.methods) {
          const method = { name: m.name, label: m.label, config: m.config };
          // A per-task method: one single-task run per task (and seed), each naming them all.
          // Train-only tasks join multi-task runs only (see above); absent when none, so the
          // run ids of profiles without extraTrainTasks do not change.
          const extra = extraOf.get(benchmark)!;
          const parts: { tasks: string[]; perTaskOf?: string[]; trainOnlyTasks?: string[] }[] =
            m.perTask === true
              ? tasks.map((t) => ({ tasks: [t], perTaskOf: tasks }))
              : [{ tasks, ...(extra.length === 0 ? {} : { trainOnlyTasks: extra }) }];
          for (const part of parts) {
            for (const seed of profile.seeds) {
              const body: Omit<RunSpec, "id"> = {
                profile: profile.name,
                model,
                backbone,
                ...(pretrain === undefined ? {} : { pretrain }),
                benchmark,
                ...part,
                method,
                seed,
                train: trainFor(profile, benchmark, m),
                backend: opts.backend ?? profile.backend,
              };
              specs.push({ id: runId(body), ...body });
            }
          }
        }
      }
    }
  }
  const ids = new Set(specs.map((s) => s.id));
  if (ids.size !== specs.length) {
    throw new Error(`Profile "${profile.name}": two grid cells are identical; check methods`);
  }
  return specs;
}

/** A shard `i` of `n` (0-based). */
export interface Shard {
  /** This shard's number, `0 <= index < count`. */
  readonly index: number;
  /** How many shards the grid is split into (at least 1). */
  readonly count: number;
}

/**
 * Parse `--shard i/n` (0-based `i`, `0 <= i < n`), both plain decimal integers: no sign, spaces,
 * leading zeros (`01/02`) or exponents, so one shard has one spelling; `n` at most
 * `Number.MAX_SAFE_INTEGER` (past it the numbers are rounded, and the shards would neither cover
 * the grid nor differ).
 *
 * @param text e.g. `"2/4"`
 * @returns the shard
 * @throws Error naming `--shard` and the value, explaining the expected form
 */
export function parseShard(text: string): Shard {
  const m = /^(0|[1-9]\d*)\/(0|[1-9]\d*)$/.exec(text);
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  // The form is right, the numbers are not: said so, not "cannot parse".
  if (m && count < 1) throw new Error(`--shard "${text}": n must be at least 1, e.g. 0/4`);
  if (m && index >= count) {
    throw new Error(
      `--shard "${text}": i must be < n (0-based: the shards of ${count} are 0/${count} to ` +
        `${count - 1}/${count})`,
    );
  }
  if (!m) {
    throw new Error(
      `Cannot parse --shard "${text}": expected i/n with 0 <= i < n, both plain decimal integers ` +
        `(no sign, spaces or leading zeros), e.g. 0/4 (Slurm: $SLURM_ARRAY_TASK_ID/$N with ` +
        `--array=0-$((N-1)))`,
    );
  }
  if (!Number.isSafeInteger(count)) {
    throw new Error(`--shard "${text}": n must be at most ${Number.MAX_SAFE_INTEGER}`);
  }
  return { index, count };
}

/**
 * The runs of one shard: the grid sorted by run id, every `count`-th from `index`. Every run is
 * in exactly one shard, whatever machine computes the slice.
 *
 * @param specs the whole grid
 * @param shard the shard
 * @returns the shard's runs, in grid order
 */
export function shardGrid(specs: readonly RunSpec[], shard: Shard): RunSpec[] {
  const byId = [...specs].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const mine = new Set(
    byId.filter((_, i) => i % shard.count === shard.index).map((s) => s.id),
  );
  return specs.filter((s) => mine.has(s.id));
}

/**
 * Write a file atomically (the shared helper of `model/fs.ts`, re-exported here): a temporary
 * file in the same folder, flushed, then renamed; on failure the temporary file is removed and
 * the previous file is left intact.
 */
export { writeFileAtomic } from "../model/fs.ts";

/**
 * The runs of `specs` that have checkpoints in `outDir` of an earlier attempt that did not finish
 * (stopped, preempted, killed: no result of the run there) and whose claim no live process holds:
 * a grid without `resume`
 * would delete them and train from step 0, so `deno task bench` refuses to start unless told
 * which (`--resume` continues them, `--restart` deletes them).
 *
 * @param outDir results folder
 * @param specs the runs
 * @param staleMs the claims' stale window
 * @returns one line per such run: `<id> (<result file>): step <s> of <steps>`
 */
export async function unfinishedCheckpoints(
  outDir: string,
  specs: readonly RunSpec[],
  staleMs: number,
): Promise<string[]> {
  const lines: string[] = [];
  for (const spec of specs) {
    const file = join(outDir, runFileName(spec));
    const steps = await listCheckpoints(join(runWorkDir(file), "checkpoints"));
    if (steps.length === 0 || await claimIsLive(runLockFile(file), staleMs)) continue;
    // Finished: a kill between writing its result and deleting its work folder left them; no
    // work of an attempt is lost by training it again (the runner removes them then).
    if (await readFinished(outDir, spec) !== undefined) continue;
    lines.push(
      `${spec.id} (${basename(file)}): step ${Math.max(...steps)} of ${spec.train.steps}`,
    );
  }
  return lines;
}

/**
 * Read a finished run's result if its file exists and belongs to `spec`.
 *
 * @param outDir results folder
 * @param spec the run
 * @param dataDir the data folder the run would read now: its recorded data files must be there
 *   unchanged (unchecked when absent)
 * @returns the result, or undefined when absent, unreadable, for another spec or trained on
 *   checkpoint or data files that changed since ({@link inspectFinished})
 */
export async function readFinished(
  outDir: string,
  spec: RunSpec,
  dataDir?: string,
): Promise<RunResult | undefined> {
  return (await inspectFinished(outDir, spec, dataDir === undefined ? {} : { dataDir })).result;
}

/**
 * A run's result file as `--resume` finds it: the result when it is valid, belongs to `spec`,
 * has its kept weights (`weights`, `train.saveWeights`) in `outDir` and, when it records the
 * checkpoint files its backbone was read from (`provenance.checkpoint`), was trained on the bytes
 * those files hold now; otherwise, when the file exists, why it cannot be used (not JSON, not a
 * run result, another run's, its weights missing, its checkpoint changed:
 * {@link checkpointChange}), so that rerunning over it is said, not silent. The run id hashes the
 * spec, which names only the checkpoint folder: without the digests, weights replaced under the
 * same folder would keep the old result.
 *
 * @param outDir results folder
 * @param spec the run
 * @param opts `checkpoint: false` skips the checkpoint and data checks (a result another process
 *   wrote during this grid: trained on what that host's folder held then, and the folder may be
 *   another host's path); `dataDir`: the data folder the run would read now, whose files must
 *   be the ones the result records (`provenance.data`, {@link dataChange})
 * @returns `{ result }`, `{ unusable }` naming the file and the reason, or `{}` when absent
 */
export async function inspectFinished(
  outDir: string,
  spec: RunSpec,
  opts: { readonly checkpoint?: boolean; readonly dataDir?: string } = {},
): Promise<{ result?: RunResult; unusable?: string }> {
  const file = join(outDir, runFileName(spec));
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    return e instanceof Deno.errors.NotFound
      ? {}
      : { unusable: `${file}: ${(e as Error).message}` };
  }
  let r: RunResult;
  try {
    // Its best and averages must be its evaluations' (compare.ts): else edited or damaged.
    r = checkRecordedScores(validateRunResult(parseJsonFile(text, file), { file }), file);
  } catch (e) {
    return { unusable: (e as Error).message };
  }
  if (r.spec.id !== spec.id) return { unusable: `${file}: holds run ${r.spec.id}, not ${spec.id}` };
  // Its id matches but its spec does not hash to it: edited after it was written (another
  // learning rate, say), so what it reports is not this run's.
  const hashed = runId(r.spec);
  if (hashed !== spec.id) {
    return {
      unusable: `${file}: its spec hashes to ${hashed}, not to its id ${spec.id}: edited after ` +
        "the run wrote it",
    };
  }
  // Kept weights (`train.saveWeights`) are in place before the result that names them is written:
  // a result whose folder is gone (deleted, or results copied without it) lacks what it promises.
  if (r.weights !== undefined && !(await pathExists(join(outDir, r.weights.dir)))) {
    return { unusable: `${file}: its kept weights ${join(outDir, r.weights.dir)} are missing` };
  }
  const ck = (r.provenance as RunProvenance).checkpoint;
  const changed = opts.checkpoint === false ? undefined : await checkpointChange(ck);
  if (changed !== undefined) {
    return {
      unusable: `${file}: its checkpoint ${ck!.dir} changed since it was trained (${changed})`,
    };
  }
  const data = (r.provenance as RunProvenance).data;
  const dataChanged = opts.checkpoint === false || opts.dataDir === undefined
    ? undefined
    : await dataChange(data, opts.dataDir);
  return dataChanged === undefined ? { result: r } : {
    unusable: `${file}: its data changed since it was trained (${dataChanged} in ${opts.dataDir})`,
  };
}

/**
 * The first data file a result records (`provenance.data.files`, in its order) whose bytes in
 * `dataDir`, the folder the run would read now, are not the ones it was trained and evaluated on:
 * the run id hashes the spec, which names the tasks, not their files' bytes, so a result of
 * another data folder, or of a file since edited or downloaded again, would otherwise be kept.
 * A record without digests (a result written before they were recorded) is accepted.
 *
 * @param data the result's data record (undefined: accepted)
 * @param dataDir the data folder of this grid
 * @returns undefined when every recorded file is the same; else `<path>: sha256 <old 12
 *   digits>… now <new 12>…`, `<path>: missing`, or the error hashing it gave
 */
export async function dataChange(
  data: DataProvenance | undefined,
  dataDir: string,
): Promise<string | undefined> {
  for (const [path, was] of Object.entries(data?.files ?? {})) {
    if (was.sha256 === undefined) continue;
    const changed = await digestChange(join(dataDir, path), path, was.sha256);
    if (changed !== undefined) return changed;
  }
  return undefined;
}

/**
 * Whether `file` (named `name` in the message) no longer has the sha256 `was`: undefined when it
 * has, else `<name>: sha256 <old 12 digits>… now <new 12>…`, `<name>: missing`, or the error that
 * hashing it gave.
 */
async function digestChange(file: string, name: string, was: string): Promise<string | undefined> {
  let now: CheckpointFileRecord;
  try {
    now = await fileDigest(file);
  } catch (e) {
    if ((e as Error).cause instanceof Deno.errors.NotFound) return `${name}: missing`;
    return (e as Error).message;
  }
  return now.sha256 === was
    ? undefined
    : `${name}: sha256 ${was.slice(0, 12)}… now ${now.sha256.slice(0, 12)}…`;
}

/**
 * The first file of a result's checkpoint record (`provenance.checkpoint`, in its order) whose
 * bytes are no longer the ones the run read: each recorded file of `dir` is hashed again
 * (`model/checkpoint.ts` `fileDigest`: once per process while its path, size and modification
 * time stay the same; the first look at a large checkpoint reads all of it).
 *
 * A `dir` that is not here at all cannot be checked, and the result is accepted: it was trained
 * on another machine (a shared `--out`, results copied from elsewhere, a node-local hub cache) or
 * on a cache folder since cleared (an offline-pretrained backbone is rebuilt when a run needs it).
 * A file missing from a folder that is here counts as changed.
 *
 * @param ck the record (undefined: a result without one, accepted as it is)
 * @returns undefined when every file is unchanged or `dir` is not here; else `<name>: sha256 <old
 *   12 digits>… now <new 12>…`, `<name>: missing`, or the error that hashing it gave
 */
export async function checkpointChange(
  ck: CheckpointProvenance | undefined,
): Promise<string | undefined> {
  if (ck === undefined || !(await pathExists(ck.dir))) return undefined;
  for (const [name, was] of Object.entries(ck.files)) {
    const changed = await digestChange(join(ck.dir, name), name, was.sha256);
    if (changed !== undefined) return changed;
  }
  return undefined;
}

/** Events reported by {@link runGrid}. */
export type GridEvent =
  | {
    readonly kind: "skip";
    readonly spec: RunSpec;
    readonly index: number;
    /**
     * Set when another process wrote the result during this grid: the holder of its claim as
     * last seen (null when unknown: its claim was already released when this grid looked).
     */
    readonly doneBy?: RunClaimHolder | null;
  }
  | {
    /**
     * Another live process holds the run's claim: the grid passes it over now and waits for it
     * after its other runs (null holder: its claim file is still being written).
     */
    readonly kind: "claimed";
    readonly spec: RunSpec;
    readonly index: number;
    readonly holder: RunClaimHolder | null;
  }
  | {
    /** A stale claim was taken over (before this grid trains the run): whose, and why stale. */
    readonly kind: "takeover";
    readonly spec: RunSpec;
    readonly index: number;
    readonly previous: RunClaimHolder | undefined;
    readonly why: string;
  }
  | {
    /**
     * Once per poll while runs others train remain (`spec`, `index`: the first of them): each
     * with its holder.
     */
    readonly kind: "waiting";
    readonly spec: RunSpec;
    readonly index: number;
    readonly runs: readonly {
      readonly spec: RunSpec;
      readonly index: number;
      readonly holder: RunClaimHolder | null;
    }[];
  }
  | {
    readonly kind: "start";
    readonly spec: RunSpec;
    readonly index: number;
    /**
     * With `resume`: why the result file already there cannot be used (it is replaced when the
     * run finishes).
     */
    readonly replaces?: string;
  }
  | {
    /**
     * A run that continues from a checkpoint (with `resume`, or one waited on while another
     * process held it): the step of the checkpoint it resumes from, an older kept one when the
     * newest could not be resumed (`benchmarks/trainer.ts` `TrainOptions.onResume`). It is
     * `runOne`'s `phase: "resume"` progress report (`RunProgress`), which is not passed on as a
     * `progress` event: once per resumed run, before its first `progress` event (also when
     * nothing is left to do); a fresh run has none.
     */
    readonly kind: "resumed";
    readonly spec: RunSpec;
    readonly index: number;
    /** The step of the checkpoint the run resumes from (≥ 1). */
    readonly step: number;
  }
  | {
    readonly kind: "progress";
    readonly spec: RunSpec;
    readonly index: number;
    readonly progress: RunProgress;
  }
  | {
    readonly kind: "done";
    readonly spec: RunSpec;
    readonly index: number;
    readonly result: RunResult;
    readonly file: string;
  }
  | {
    readonly kind: "error";
    readonly spec: RunSpec;
    readonly index: number;
    readonly error: Error;
  }
  | {
    /** The run stopped on a stop request (`opts.shouldStop`; its error says where it resumes). */
    readonly kind: "interrupted";
    readonly spec: RunSpec;
    readonly index: number;
    readonly error: Error;
  };

/** Options of {@link runGrid}. */
export interface RunGridOptions {
  /**
   * Results folder: `<outDir>/<runFileName>` per run, `<outDir>/<stem>/` as the run's work
   * folder (its checkpoints; cleared before a fresh run, removed once the result is written).
   */
  readonly outDir: string;
  /** Data root passed to `runOne`. */
  readonly dataDir: string;
  /** Trains and evaluates one run. */
  readonly runOne: RunOneFn;
  /**
   * Skip runs whose result file already exists for the same spec id, and let an unfinished run
   * resume from its checkpoints. Without it every run trains from step 0 (its work folder is
   * cleared first). A kept result that other code trained (its `provenance.gitSha` or
   * `gitDirty` differ from this process's) is still kept, with one `note:` line per grid
   * (`opts.log`) counting them.
   */
  readonly resume?: boolean;
  /** Event sink (progress bars, logs). */
  readonly onEvent?: (e: GridEvent) => void;
  /**
   * Micro-batch sizes the bench preflight chose for this device, by run id
   * (`benchmarks/device_memory.ts` `planDeviceMemory`): passed to `runOne` and recorded in the
   * result JSON as `effectiveMicroBatchSize`. The spec and its id are unchanged. That is this
   * session's choice only: the rows per pass of every session of a resumed run are in its
   * checkpoints (`state.json` `microBatchSizes`; `TrainOutcome.microBatchSizes`), which the
   * result does not carry yet.
   */
  readonly microBatchSizes?: ReadonlyMap<string, number>;
  /** Every run's wall-clock checkpoint interval (`RunOneOptions.checkpointMinutes`). */
  readonly checkpointMinutes?: number;
  /**
   * Checked before each run starts, and once after the last: a reason (a signal's name) stops the
   * grid there ({@link GridSummary.interrupted}; after the last run, with nothing left to start).
   * The run in progress stops on its own (`benchmarks/trainer.ts` `requestStop`) by throwing an
   * error marked `interrupted: true`, which also stops the grid.
   * While waiting for runs another process trains it is also checked every 200 ms, so a stop
   * ends the wait promptly (those runs count as not started).
   */
  readonly shouldStop?: () => string | undefined;
  /** Heartbeat, stale window and poll interval of the run claims (tests shorten them). */
  readonly runLock?: RunLockTiming;
  /**
   * Where a line goes that is no event's: a run whose claim another process took over while this
   * one was paused ({@link GridSummary.leftToOthers}). Default `console.error`.
   */
  readonly log?: (line: string) => void;
  /**
   * The code this process runs, to tell `resume` results trained at other code (default
   * `benchmarks/provenance.ts` `codeGitState`; tests).
   */
  readonly code?: () => { readonly sha: string; readonly dirty: boolean };
  /**
   * The backend a run's requested one (`spec.backend`) resolves to in this process (`auto`
   * picks per machine), to tell `resume` results trained on another (`provenance.backend.name`):
   * kept, as the run id records only the requested backend, and said once. Absent: not told.
   */
  readonly resolvedBackend?: (spec: RunSpec) => string | undefined;
  /**
   * Called (and awaited) once a run's result file is written, before its work folder is removed
   * (tests of a claim taken over, or a kill, at that point).
   */
  readonly onResultWritten?: (spec: RunSpec, file: string) => void | Promise<void>;
}

/** A commit as the `--resume` note names it: `<sha>`, `+dirty` after it when dirty. */
function codeLabel(sha: string | undefined, dirty: boolean | undefined): string {
  return `${sha ?? "unknown"}${dirty === true ? "+dirty" : ""}`;
}

/** {@link GridSummary.interrupted}'s reason when a run failed for a full disk (`ENOSPC`). */
export const NO_SPACE_REASON = "no space left on device";

/**
 * A limit of the disk or the process that refuses every further write, so that every later run
 * would fail on it too: its error code, its message as Deno gives it (the code is on the error
 * only when `model/fs.ts` named the path), the grid's stop reason and what the user does.
 */
export interface DiskLimit {
  /** The error's `code` (`ENOSPC`, `EFBIG`, …). */
  readonly code: string;
  /** Its message as Deno gives it when the error carries no code. */
  readonly message: RegExp;
  /** The grid's stop reason ({@link GridSummary.interrupted}). */
  readonly reason: string;
  /** What the user does before `--resume`. */
  readonly advice: string;
}

/**
 * The disk limits that stop the grid: a full disk, a full quota, and the process's file size
 * limit (`ulimit -f`; the bench entries listen to SIGXFSZ so that the write fails with EFBIG
 * instead of the signal ending the process, `model/file_size_signal.ts`).
 */
export const DISK_LIMITS: readonly DiskLimit[] = [
  {
    code: "ENOSPC",
    message: /No space left on device|os error 28\b/,
    reason: NO_SPACE_REASON,
    advice: "free space on that disk",
  },
  {
    code: "EDQUOT",
    message: /Disk quota exceeded|os error 122\b/,
    reason: "disk quota exceeded",
    advice: "free space within your disk quota",
  },
  {
    code: "EFBIG",
    message: /File too large|os error 27\b/,
    reason: "file size limit exceeded",
    advice: "raise the file size limit (ulimit -f)",
  },
];

/** Summary of {@link runGrid}. */
export interface GridSummary {
  /** Runs trained in this call whose result file was written (and work folder removed). */
  readonly done: number;
  /**
   * Runs skipped because `resume` found their result file already written, or because another
   * process wrote it during this grid ({@link GridSummary.doneElsewhere}).
   */
  readonly skipped: number;
  /**
   * The skipped runs that another process trained while this grid ran (present when any), with
   * the holder of the claim as last seen (absent when its claim was already released).
   */
  readonly doneElsewhere?: readonly { readonly spec: RunSpec; readonly holder?: RunClaimHolder }[];
  /**
   * Runs whose claim another process took over while this one trained them (this process was
   * paused past the stale window; present when any), with the new holder as read then (absent
   * when unknown): this grid wrote no result for them and removed nothing of theirs, and waited
   * for them as for any run another process holds, so each is also counted where that wait
   * ended: skipped ({@link GridSummary.doneElsewhere}) once its new holder wrote the result,
   * done or failed when its claim went stale or was released and this grid trained it after
   * all, not started when a stop ended the wait. Neither failed nor done by themselves. Each run
   * once, with its last taker, even when it was taken over again after this grid trained it
   * after all.
   */
  readonly leftToOthers?: readonly { readonly spec: RunSpec; readonly holder?: RunClaimHolder }[];
  /**
   * Runs that failed, in grid order, with their error; after a fatal backend error the runs
   * left are listed too, each with a "not run" error.
   */
  readonly failed: readonly { readonly spec: RunSpec; readonly error: Error }[];
  /**
   * Set when a stop request ended the grid early: its reason, the run it stopped (absent when it
   * came between runs) with its error (where that run resumes), and how many runs were not
   * started. The stopped run's work folder (its checkpoints) is kept for `resume`. A run that
   * failed for a full disk stops the grid the same way, with the reason {@link NO_SPACE_REASON}
   * (its error names the path), or another {@link DISK_LIMITS} reason.
   */
  readonly interrupted?: {
    readonly reason: string;
    readonly spec?: RunSpec;
    readonly error?: Error;
    readonly notStarted: number;
  };
}

/**
 * The {@link DISK_LIMITS} entry an error (or one of its causes, `model/http.ts` `errorChain`)
 * hit: a full disk (`ENOSPC`, os error 28), a full quota (`EDQUOT`, 122) or the file size limit
 * (`EFBIG`, 27); undefined for any other error.
 */
export function diskLimitOf(e: unknown): DiskLimit | undefined {
  for (const x of errorChain(e)) {
    const code = (x as { code?: unknown }).code;
    const hit = DISK_LIMITS.find((l) => l.code === code || l.message.test(x.message));
    if (hit !== undefined) return hit;
  }
  return undefined;
}

/** The identity of a run's result file, or null when there is none. */
async function resultIdentity(file: string): Promise<FileIdentity | null> {
  try {
    return fileIdentity(await Deno.stat(file));
  } catch {
    return null;
  }
}

/** Whether a result file changed since `was` (written by another process meanwhile). */
function changedSince(was: FileIdentity | null, now: FileIdentity | null): boolean {
  if (now === null) return false;
  return was === null || fileChange(was, now) !== undefined;
}

/** Sleeps `ms`, in slices of at most 200 ms, ending early once `stop()` gives a reason. */
async function sleepUnlessStopped(ms: number, stop: () => string | undefined): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end && stop() === undefined) {
    await new Promise((r) => setTimeout(r, Math.min(200, end - Date.now())));
  }
}

/** The claim file of a run's result file (`<out>/<stem>.json` → `<out>/<stem>.lock`). */
export function runLockFile(file: string): string {
  return `${runWorkDir(file)}.lock`;
}

/** The work folder of a run's result file (`<out>/<stem>.json` → `<out>/<stem>`). */
export function runWorkDir(file: string): string {
  if (!file.endsWith(".json")) {
    throw new Error(`benchmarks/runner.ts: result file ${file} does not end in .json`);
  }
  return file.slice(0, -".json".length);
}

/**
 * Finishes the removals of work folders and test-prediction folders that a kill interrupted.
 * They are removed with `discardFolder`, through a `.<stem>.del-<tag>` name, so that a kill
 * part-way through the delete never leaves part of a checkpoint under the run's folder, where
 * `--resume` would find it (and fail on its missing files). `discardFolder` itself finishes the
 * leftovers of the name it removes; this removes, at the start of a grid, those of every name
 * (runs of other grids or shards, runs never discarded again) in `outDir` and in the
 * test-prediction folders of `specs` (`model/fs.ts` `removeDiscardedFolders`). Housekeeping:
 * what cannot be removed stays.
 *
 * @param outDir the grid's output folder
 * @param specs the grid's runs (where their test predictions go)
 */
async function sweepDiscarded(outDir: string, specs: readonly RunSpec[]): Promise<void> {
  const parents = new Set([outDir]);
  for (const spec of specs) parents.add(dirname(join(outDir, testPredictionsDir(spec))));
  for (const parent of parents) await removeDiscardedFolders(parent);
  // Kept weights (`<out>/weights/`): {@link keepWeights}' temporaries nobody holds (a process
  // killed while moving them in), a folder moved aside by a killed swap (renamed back when its
  // name is empty), and removals a kill interrupted.
  const weights = join(outDir, WEIGHTS_FOLDER);
  await removeStaleTemps(weights, WEIGHTS_TEMPS);
  await recoverAsideFolders(weights, WEIGHTS_ASIDE);
}

/** The folder of `<out>` that holds every run's kept weights (`spec.ts` `weightsDir`). */
const WEIGHTS_FOLDER = "weights";

/** {@link keepWeights}' temporaries: `.<run file stem>.tmp-<pid>-<12 hex>`, held locked. */
const WEIGHTS_TEMPS: TempPattern = {
  kind: "directory",
  held: new RegExp(String.raw`^\..+\.tmp-${TEMP_TAG_SOURCE}$`),
};

/** Kept weights a swap moved aside: `.<run file stem>.old-<tag of the swap's temporary>`. */
const WEIGHTS_ASIDE = new RegExp(String.raw`^\.(?<name>.+)\.old-(?<tag>${TEMP_TAG_SOURCE})$`);

/**
 * Moves a run's kept weights (`<work folder>/final/`, written by `runOne` with
 * `train.saveWeights`) to `dest` (`<out>/weights/<run file stem>/`), so that `dest` holds a
 * complete folder at every instant: `final/`'s entries are renamed into a temporary beside `dest`
 * (`.<stem>.tmp-<tag>`, held locked so that no other process's sweep takes it; the same file
 * system: the work folder is in `<out>`), which is then swapped in (`model/fs.ts`
 * `swapFolderInto`: weights an earlier run of that name left are replaced). A kill in between
 * leaves a temporary nobody holds, removed by the next grid's sweep (the run has no result yet,
 * so it trains again and keeps new weights). A failure removes the temporary.
 *
 * @param from the run's `final/` folder
 * @param dest where the weights go
 * @throws Error naming `from` when the run wrote no weights there, or the failing rename
 */
export async function keepWeights(from: string, dest: string): Promise<void> {
  if (!(await pathExists(from))) {
    throw new Error(`${from}: not found: the run's result names weights, but it wrote none there`);
  }
  await Deno.mkdir(dirname(dest), { recursive: true });
  const held = await makeHeldTempDir(dirname(dest), `.${basename(dest)}`);
  try {
    try {
      for (const e of [...Deno.readDirSync(from)].map((e) => e.name).sort()) {
        await Deno.rename(join(from, e), join(held.path, e));
      }
      await Deno.remove(from);
    } catch (e) {
      throw new Error(
        `${from}: cannot move the run's weights to ${held.path}: ${(e as Error).message}`,
        { cause: e },
      );
    }
    await swapFolderInto(held.path, dest);
  } catch (e) {
    await Deno.remove(held.path, { recursive: true }).catch(() => {});
    throw e;
  } finally {
    held.release();
  }
}

/**
 * Removes `dir` and the folders below it that hold no file (deepest first); a folder with a file
 * anywhere below it is kept, as is everything that cannot be read.
 *
 * @param dir the folder
 */
export async function removeEmptyFolders(dir: string): Promise<void> {
  try {
    for await (const e of Deno.readDir(dir)) {
      if (e.isDirectory) await removeEmptyFolders(join(dir, e.name));
    }
    await Deno.remove(dir);
  } catch {
    // Not empty, missing or unreadable: leave it.
  }
}

/**
 * Run a list of specs one after the other. A failing run is reported and the next one starts.
 * Without `opts.resume` each run's work folder (its checkpoints) is cleared first, so it trains
 * from step 0; with it, runs with a result are skipped and an unfinished one resumes from its
 * checkpoints. After a result is written, the run's work folder is removed; after a failure it
 * is removed only when it holds no file (no checkpoint to resume from). A stop request
 * (`opts.shouldStop` before a run, or a run's error marked `interrupted: true`) ends the grid
 * there ({@link GridSummary.interrupted}); the stopped run's checkpoints stay for `resume`. So
 * does a run that fails for a full disk (`ENOSPC`), a full quota or the file size limit
 * ({@link DISK_LIMITS}): the grid stops there instead of starting the next run on it, reported
 * as interrupted with that limit's reason ({@link NO_SPACE_REASON} for a full disk).
 *
 * Several processes may run grids into one `outDir` (a requeued job, a replacement pod, a second
 * terminal; on a shared file system across hosts): each run is trained by the process that
 * claims it, with an exclusive claim file `<out>/<stem>.lock` ({@link RunClaimHolder}: host,
 * pid, start, token) whose mtime its holder refreshes as a heartbeat while the run trains, and
 * which it removes when the run ends (done, failed or stopped). A run claimed by a live process
 * is passed over; after the other runs the grid polls those (`opts.runLock.pollMs`) until each
 * has a result written meanwhile (counted as skipped, {@link GridSummary.doneElsewhere}) or its
 * claim is released or goes stale (heartbeat older than the stale window, or its holder on this
 * host gone): then this grid claims and trains it, from the other's checkpoints if any. A run
 * whose result another process wrote during this grid is never trained again, with or without
 * `resume`; a work folder is cleared or removed only under this grid's claim. A claim another
 * process took over while this one trained the run (this process paused past the stale window)
 * stops the run at its next step, saving nothing (`benchmarks/run_one.ts`); the claim file is
 * read again before the result is written and before the folder is removed: a run whose claim
 * is no longer this grid's writes and removes nothing, is logged (`opts.log`) and is waited for
 * as a run another process holds ({@link GridSummary.leftToOthers}).
 *
 * @param specs the runs (one shard or the whole grid)
 * @param opts output folder, data root, `runOne`, resume flag, event sink
 * @returns counts and the failures (a run whose result was written but whose checkpoints could
 *   not be removed counts as failed, with a message saying so)
 * @throws Error when `HYPERPROMPT_RUN_LOCK_STALE_S` is not a valid number of seconds
 */
export async function runGrid(
  specs: readonly RunSpec[],
  opts: RunGridOptions,
): Promise<GridSummary> {
  const staleMs = opts.runLock?.staleMs ?? runLockStaleMs();
  const heartbeatMs = opts.runLock?.heartbeatMs ?? RUN_LOCK_HEARTBEAT_MS;
  const pollMs = opts.runLock?.pollMs ?? RUN_LOCK_POLL_MS;
  await Deno.mkdir(opts.outDir, { recursive: true });
  await sweepDiscarded(opts.outDir, specs);
  await sweepStaleClaims(opts.outDir, staleMs);
  const emit = opts.onEvent ?? (() => {});
  const host = thisHost();
  const fileOf = (spec: RunSpec) => join(opts.outDir, runFileName(spec));
  // The result files as this grid found them: one that changes was written by another process.
  const initial = new Map<string, FileIdentity | null>();
  for (const spec of specs) initial.set(spec.id, await resultIdentity(fileOf(spec)));
  let done = 0;
  let skipped = 0;
  const failed: { spec: RunSpec; error: Error }[] = [];
  const doneElsewhere: { spec: RunSpec; holder?: RunClaimHolder }[] = [];
  const leftToOthers: { spec: RunSpec; holder?: RunClaimHolder }[] = [];
  const log = opts.log ?? ((line: string) => console.error(line));
  /** The commits of the finished results `resume` kept that other code trained, one per result. */
  const otherCode: string[] = [];
  /** Likewise the backends of those trained on another backend than this process resolves. */
  const otherBackend: string[] = [];
  let interrupted: GridSummary["interrupted"];
  let fatal: Error | undefined;
  /** Claims a run; a claim file that cannot be written (a full disk) is the run's failure. */
  const claim = (spec: RunSpec, index: number): Promise<ClaimOutcome | { failed: Error }> =>
    claimRun(runLockFile(fileOf(spec)), spec.id, {
      host,
      heartbeatMs,
      staleMs,
      onTakeover: (previous, why) => emit({ kind: "takeover", spec, index, previous, why }),
    }).catch((e) => {
      const error = e instanceof Error ? e : new Error(String(e));
      return {
        failed: new Error(
          `cannot claim the run (${runLockFile(fileOf(spec))}): ${error.message}`,
          { cause: error },
        ),
      };
    });
  /** A valid result of `spec` that another process wrote during this grid, if any. */
  const writtenElsewhere = async (spec: RunSpec): Promise<boolean> =>
    changedSince(initial.get(spec.id) ?? null, await resultIdentity(fileOf(spec))) &&
    (await inspectFinished(opts.outDir, spec, { checkpoint: false })).result !== undefined;
  const countElsewhere = (spec: RunSpec, index: number, holder?: RunClaimHolder) => {
    skipped++;
    doneElsewhere.push({ spec, ...(holder === undefined ? {} : { holder }) });
    emit({ kind: "skip", spec, index, doneBy: holder ?? null });
  };

  /**
   * Whether `held` is still this grid's claim of `spec`; when another process took it over (this
   * one was paused past the stale window), logs so, records the run in `leftToOthers` and returns
   * the new holder (undefined when unknown) for the grid to wait on.
   */
  const takenOver = async (
    spec: RunSpec,
    held: HeldClaim,
  ): Promise<{ readonly other: RunClaimHolder | undefined } | undefined> => {
    const c = await held.check();
    if (c.ours) return undefined;
    log(
      `run ${spec.id}: its claim was taken over by ${
        holderName(c.holder)
      } while this process's heartbeat was late (paused or busy longer than the stale window, ${
        staleMs / 1000
      } s); leaving the run to it`,
    );
    // Once per run, with its latest taker (it may be taken over again after this grid trained
    // it after all), last: the grid loop reads the last entry.
    const earlier = leftToOthers.findIndex((l) => l.spec === spec);
    if (earlier >= 0) leftToOthers.splice(earlier, 1);
    leftToOthers.push({ spec, ...(c.holder === undefined ? {} : { holder: c.holder }) });
    return { other: c.holder };
  };

  /**
   * Trains one claimed run (the claim is released whatever happens). `continues`: keep its
   * checkpoints (resume semantics). When the claim turns out taken over by another process
   * (this one was paused past the stale window), nothing is written or removed: returns the new
   * holder, to wait on as on any run another process trains.
   */
  const train = async (
    spec: RunSpec,
    index: number,
    held: HeldClaim,
    continues: boolean,
    replaces: string | undefined,
    notStartedAfter: () => number,
  ): Promise<{ readonly other: RunClaimHolder | undefined } | undefined> => {
    const file = fileOf(spec);
    const workDir = runWorkDir(file);
    emit({ kind: "start", spec, index, ...(replaces === undefined ? {} : { replaces }) });
    let left: { readonly other: RunClaimHolder | undefined } | undefined;
    try {
      // A fresh run must not pick up checkpoints of an earlier attempt (possibly other code);
      // one that had some says so, since --resume would have continued from them.
      if (!continues) {
        const steps = await listCheckpoints(join(workDir, "checkpoints"));
        if (steps.length > 0) {
          // With its result written (a later attempt of a finished run stopped, or a kill
          // between the result and the folder's removal), nothing of an unfinished run is lost.
          const why = await readFinished(dirname(file), spec) !== undefined
            ? "its result is written; a later attempt left them"
            : "--restart";
          log(
            `run ${spec.id} (${basename(file)}): discarding its checkpoint of step ` +
              `${Math.max(...steps)} of ${spec.train.steps} and training from step 0 (${why})`,
          );
        }
        await discardFolder(workDir);
      }
      await Deno.mkdir(workDir, { recursive: true });
      const micro = opts.microBatchSizes?.get(spec.id);
      const runOpts: RunOneOptions & ClaimStopOption = {
        outDir: workDir,
        dataDir: opts.dataDir,
        // runOne's `resume` report (the trainer's, once) is the run's `resumed` event, not a
        // `progress` one: no step was done.
        onProgress: (progress) =>
          emit(
            progress.phase === "resume"
              ? { kind: "resumed", spec, index, step: progress.step }
              : { kind: "progress", spec, index, progress },
          ),
        ...(micro === undefined ? {} : { microBatchSize: micro }),
        ...(opts.checkpointMinutes === undefined
          ? {}
          : { checkpointMinutes: opts.checkpointMinutes }),
        // Once another process took the claim over, the run stops at its next step, saving
        // nothing (`benchmarks/run_one.ts`): its folder is the new holder's.
        claimLost: () =>
          held.lost
            ? `run ${spec.id}: its claim was taken over by another process (${runLockFile(file)})`
            : undefined,
      };
      const returned = await opts.runOne(spec, runOpts);
      if (returned.spec.id !== spec.id) {
        throw new Error(`runOne returned the result of run ${returned.spec.id} for run ${spec.id}`);
      }
      const result = micro === undefined
        ? returned
        : { ...returned, effectiveMicroBatchSize: micro };
      // Paused past the stale window and taken over meanwhile: the result file and the folder
      // are the new holder's (which may be writing them now).
      left = await takenOver(spec, held);
      if (left !== undefined) return left;
      // Kept weights (`train.saveWeights`): in place before the result that names them.
      if (result.weights !== undefined) {
        await keepWeights(
          join(workDir, FINAL_WEIGHTS_FOLDER),
          join(opts.outDir, result.weights.dir),
        );
      }
      await writeFileAtomic(file, JSON.stringify(result, null, 2) + "\n");
      await opts.onResultWritten?.(spec, file);
      // The result is final: its checkpoints only served to resume an unfinished run (unless
      // taken over in between: the folder is the new holder's; the result, written while the
      // claim was still ours a moment ago, stays, and the run counts as done here).
      if (!(await held.check()).ours) {
        done++;
        emit({ kind: "done", spec, index, result, file });
        return undefined;
      }
      try {
        await discardFolder(workDir);
      } catch (e) {
        throw new Error(
          `${file} was written, but the run's checkpoints in ${workDir} could not be removed (${
            (e as Error).message
          }); delete that folder`,
        );
      }
      done++;
      emit({ kind: "done", spec, index, result, file });
    } catch (e) {
      const error = e instanceof Error ? e : new Error(String(e));
      // Stopped (or failed) after the claim was taken over: not this grid's failure to report,
      // and the folder is the new holder's.
      if (left === undefined) left = await takenOver(spec, held).catch(() => undefined);
      if (left !== undefined) return left;
      // A run that failed before its first checkpoint leaves nothing to resume: no empty folder.
      await removeEmptyFolders(workDir);
      settle(spec, index, error, notStartedAfter);
    } finally {
      await held.release();
    }
    return undefined;
  };

  /**
   * Records a run's failure: a stop request or a full disk stops the grid (`interrupted`), as
   * does a fatal backend error (`fatal`); any other failure is listed and the grid goes on.
   */
  function settle(
    spec: RunSpec,
    index: number,
    error: Error,
    notStartedAfter: () => number,
  ): void {
    const stopped = error as { interrupted?: unknown; reason?: unknown };
    const limit = stopped.interrupted === true ? undefined : diskLimitOf(error);
    if (stopped.interrupted === true || limit !== undefined) {
      // Stopped on request (a signal), or the disk refuses writes (every later run would fail on
      // it too): not failed; its checkpoints stay for --resume.
      interrupted = {
        reason: limit !== undefined
          ? limit.reason
          : typeof stopped.reason === "string"
          ? stopped.reason
          : "a stop request",
        spec,
        error,
        notStarted: notStartedAfter(),
      };
      emit({ kind: "interrupted", spec, index, error });
      return;
    }
    failed.push({ spec, error });
    emit({ kind: "error", spec, index, error });
    if ((error as { fatal?: unknown }).fatal === true) fatal = error;
  }
  /** Whether a stop, a full disk or a fatal backend error ended the grid. */
  const ended = () => interrupted !== undefined || fatal !== undefined;

  /**
   * Claims a run and trains it, unless another live process holds its claim (returns that
   * holder; undefined while its claim file is being written) or wrote its result since this
   * grid started (counted as done by `doneBy`). A claim file that cannot be written (a full
   * disk) is the run's failure.
   */
  const claimAndTrain = async (
    spec: RunSpec,
    index: number,
    continues: boolean,
    replaces: string | undefined,
    notStartedAfter: () => number,
    doneBy?: RunClaimHolder,
  ): Promise<{ readonly other: RunClaimHolder | undefined } | undefined> => {
    const c = await claim(spec, index);
    if ("failed" in c) {
      emit({ kind: "start", spec, index });
      settle(spec, index, c.failed, notStartedAfter);
      return undefined;
    }
    if ("other" in c) return c;
    if (await writtenElsewhere(spec)) {
      // Another process finished it (and released its claim) since this grid last looked.
      await c.held.release();
      countElsewhere(spec, index, doneBy);
      return undefined;
    }
    return await train(spec, index, c.held, continues, replaces, notStartedAfter);
  };

  // Runs another live process has claimed, in grid order: polled after the others.
  const waiting: { spec: RunSpec; index: number; holder: RunClaimHolder | undefined }[] = [];
  let stoppedAt = specs.length;
  for (const [index, spec] of specs.entries()) {
    const stop = opts.shouldStop?.();
    if (stop !== undefined) {
      interrupted = { reason: stop, notStarted: specs.length - index + waiting.length };
      stoppedAt = index;
      break;
    }
    const found = opts.resume
      ? await inspectFinished(opts.outDir, spec, { dataDir: opts.dataDir })
      : {};
    const file = fileOf(spec);
    const workDir = runWorkDir(file);
    if (found.result !== undefined) {
      // Checkpoints left by a kill between writing the result and removing them: no longer
      // needed; removed under the run's claim only (a live process may be rerunning it).
      if (await pathExists(workDir)) {
        const c = await claim(spec, index);
        if ("held" in c) {
          await discardFolder(workDir).catch(() => {});
          await c.held.release();
        }
      }
      // Trained by other code (the run id hashes the spec, not the code): kept, and said once.
      const p = found.result.provenance as RunProvenance;
      const now = (opts.code ?? codeGitState)();
      if (p.gitSha !== now.sha || p.gitDirty !== now.dirty) {
        otherCode.push(codeLabel(p.gitSha, p.gitDirty));
      }
      const resolved = opts.resolvedBackend?.(spec);
      if (resolved !== undefined && p.backend.name !== resolved) {
        otherBackend.push(
          `${p.backend.name} (run id's backend "${spec.backend}", now ${resolved})`,
        );
      }
      skipped++;
      emit({ kind: "skip", spec, index });
      continue;
    }
    const claimed = await claimAndTrain(
      spec,
      index,
      opts.resume === true,
      found.unusable,
      () => specs.length - index - 1 + waiting.length,
    );
    if (claimed !== undefined) {
      waiting.push({ spec, index, holder: claimed.other });
      // A run left to the process that took its claim over has had its line already.
      if (leftToOthers.at(-1)?.spec !== spec) {
        emit({ kind: "claimed", spec, index, holder: claimed.other ?? null });
      }
    } else if (ended()) {
      stoppedAt = index + 1;
      break;
    }
  }
  if (otherBackend.length > 0) {
    log(
      `note: ${otherBackend.length} finished result(s) in ${opts.outDir} were trained on another ` +
        `backend than their runs resolve to here (${
          [...new Set(otherBackend)].join(", ")
        }); they are kept (the run id records the requested backend, not the one it resolved ` +
        `to; their numbers differ in the last digits): rerun without --resume to retrain them`,
    );
  }
  if (otherCode.length > 0) {
    const now = (opts.code ?? codeGitState)();
    log(
      `note: ${otherCode.length} finished result(s) in ${opts.outDir} were trained at other code (${
        [...new Set(otherCode)].join(", ")
      }, now ${
        codeLabel(now.sha, now.dirty)
      }); they are kept (the run id covers the spec, not the code): rerun without --resume to ` +
        `retrain them`,
    );
  }
  // The runs others train: wait for their results, or take over a claim that goes stale.
  while (!ended() && waiting.length > 0) {
    for (let i = 0; i < waiting.length && !ended();) {
      const w = waiting[i]!;
      const stop = opts.shouldStop?.();
      if (stop !== undefined) {
        interrupted = { reason: stop, notStarted: waiting.length };
        break;
      }
      if (await writtenElsewhere(w.spec)) {
        waiting.splice(i, 1);
        countElsewhere(w.spec, w.index, w.holder);
        continue;
      }
      // Still claimed: waited for on. Released without a result (failed or stopped) or taken
      // over from a dead holder: this grid trains it, from the checkpoints the other left (a
      // result written between the two looks counts as done by its holder). The runs not
      // started after it are the others still waited for.
      const claimed = await claimAndTrain(
        w.spec,
        w.index,
        true,
        undefined,
        () => waiting.length - 1,
        w.holder,
      );
      if (claimed === undefined) {
        waiting.splice(i, 1);
      } else {
        w.holder = claimed.other;
        i++;
      }
    }
    if (ended() || waiting.length === 0) break;
    emit({
      kind: "waiting",
      spec: waiting[0]!.spec,
      index: waiting[0]!.index,
      runs: waiting.map((w) => ({ spec: w.spec, index: w.index, holder: w.holder ?? null })),
    });
    const stop = () => opts.shouldStop?.();
    await sleepUnlessStopped(pollMs, stop);
    const reason = stop();
    if (reason !== undefined) interrupted = { reason, notStarted: waiting.length };
  }
  if (fatal !== undefined) {
    // The backend cannot run anything more in this process: report the rest as not run.
    const rest = [
      ...specs.slice(stoppedAt).map((spec, k) => ({ spec, index: stoppedAt + k })),
      ...waiting,
    ];
    for (const { spec, index } of rest) {
      const notRun = new Error(`not run: an earlier run stopped the backend (${fatal.message})`);
      failed.push({ spec, error: notRun });
      emit({ kind: "error", spec, index, error: notRun });
    }
  }
  // A request that came while the last run finished (its training loop had ended, or ended on
  // that very step) still ends the grid as stopped: no tables or gate, the signal's exit code.
  const late = interrupted === undefined ? opts.shouldStop?.() : undefined;
  if (late !== undefined) interrupted = { reason: late, notStarted: 0 };
  return {
    done,
    skipped,
    failed,
    ...(doneElsewhere.length === 0 ? {} : { doneElsewhere }),
    ...(leftToOthers.length === 0 ? {} : { leftToOthers }),
    ...(interrupted === undefined ? {} : { interrupted }),
  };
}
