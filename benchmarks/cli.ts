/**
 * `deno task bench`: run a benchmark profile (or one shard of it), write one JSON per run, and
 * optionally gate the results against a baseline.
 *
 * ```
 * deno task bench [--profile NAME|PATH] [--data-dir DIR] [--no-download] [--out DIR]
 *                 [--methods LABEL[,LABEL...]] [--shard i/n] [--dry-run] [--compare BASELINE]
 *                 [--backend X] [--resume|--restart] [--tables DIR] [--no-tables] [--device-memory GB]
 *                 [--checkpoint-minutes N] [--help]
 * ```
 *
 * `--methods` keeps the profile's runs of the methods with those labels (the names the tables
 * and `--dry-run` show); with `--shard`, the shard is taken from the whole grid first, so a run's
 * shard does not depend on `--methods`.
 *
 * Without `--data-dir` (and `$HYPERPROMPT_DATA`), the tasks the profile asks for that neither the
 * download cache nor the offline mirror has are downloaded into the cache first (official files,
 * Hugging Face parquet as the second source); when that fails (offline), the runs go on with the
 * tasks present, as the profile allows, and the reason is printed. That download reads its
 * mirrors from `HYPERPROMPT_DATA_ENDPOINTS` and `HF_ENDPOINT` (`tasks/download.ts`
 * `resolveEndpoints`); a bad value is refused before any work (exit 2), unless the download is
 * off (`--data-dir`, `$HYPERPROMPT_DATA`, `--no-download`).
 *
 * Without `--resume` every run trains from step 0; with it, runs with a result are skipped and
 * unfinished ones resume from their checkpoints. A run with checkpoints of an unfinished attempt
 * needs one of `--resume` and `--restart` (which deletes them): without either, bench refuses
 * to start (exit 2), naming those runs.
 *
 * Before any training, each run on a GPU backend gets a memory estimate
 * (`benchmarks/device_memory.ts`): where the GPU's memory is known (`--device-memory`,
 * `HYPERPROMPT_DEVICE_MEMORY_GB`, `nvidia-smi`), a run whose batch does not fit trains with the
 * largest micro-batch that does (recorded in its result as `effectiveMicroBatchSize`), and a run
 * that cannot fit at all is refused (exit 2); when the runs of some methods fit, the message
 * gives the `--methods` that trains only those. Runs on `wasm` and `wasm+blas` are checked the
 * same way against the wasm heap (4 GiB less one page), whose exhaustion would otherwise stop the
 * wasm module, and with it every later run of the grid.
 *
 * Exit codes (model/usage.ts): 0 success, 1 a failure while working (a run failed, the tables
 * could not be written, no data folder after the download), 2 bad arguments or profile (a
 * `UsageError`, refused before any work starts), 3 the regression gate failed; 130 (SIGINT,
 * Ctrl-C) or 143 (SIGTERM) when a signal stopped the grid ({@link interruptHandler}).
 *
 * SIGINT or SIGTERM while a run that writes checkpoints (`train.checkpointEvery` > 0) trains: it
 * finishes the step in progress (an evaluation in progress is abandoned before its next decode
 * batch and recorded as owed), saves a checkpoint of it and stops, no other run starts, and
 * `--resume` continues from that step (redoing an owed evaluation first). One that comes after
 * the run's last checkpoint (the run finishing: attention mass, result) lets it write its result,
 * then stops the grid with the same exit code. A second signal stops the process at once. The
 * listeners are installed from the start of such a run's training loop until its result is
 * written ({@link interruptWhileCheckpointing}). At other times (profiles without checkpoints,
 * pretraining, downloads, between runs) the signals keep their default action, an immediate stop
 * (exit 130 / 143): waiting would save nothing. Result files and checkpoints are written
 * atomically, so neither way leaves a partial one. Against kills that cannot be caught (SIGKILL,
 * an out-of-memory kill, a power cut), such a run also saves a checkpoint once
 * `--checkpoint-minutes` (default 30; 0 off) have passed since its last one
 * (`benchmarks/trainer.ts` `TrainOptions.checkpointMinutes`), whatever `checkpointEvery` says.
 *
 * @module
 */
import process from "node:process";
import type { Writable } from "node:stream";
import { existsSync, statSync } from "node:fs";
import cliProgress from "cli-progress";
import { isUnpublishedPreset, preset, type T5Config, t5ConfigFromHf } from "../model/config.ts";
import { parseJsonFile } from "../model/json.ts";
import { ignoreFileSizeSignal } from "../model/file_size_signal.ts";
import { guardNodeStderr } from "../model/stderr.ts";
import {
  backendFromEnv,
  backendHint,
  backpropFromEnv,
  isBackendName,
  noBlasFromEnv,
  wasmEngine,
} from "../model/backend.ts";
import { submitBatchFromEnv } from "../model/webgpu/submit_batch.ts";
import { webgpuKernelsFromEnv } from "../model/webgpu/kernels_env.ts";
import {
  checkDataDir,
  corpusReadNote,
  corpusSplits,
  defaultCacheDir,
  defaultDataDir,
  defaultDataRoots as dataRoots,
  noMirrorNote,
} from "../tasks/data.ts";
import {
  describeEndpoints,
  download,
  DownloadError,
  type DownloadOptions,
  resolveEndpoints,
  type TaskResult,
} from "../tasks/download.ts";
import {
  builtInNameNote,
  isProfileName,
  listProfiles,
  loadProfile,
  profilePath,
} from "./profile.ts";
import {
  type DefaultDataRoots,
  defaultTaskCatalog,
  DISK_LIMITS,
  expandGrid,
  type GridEvent,
  type GridSummary,
  missingProfileTasks,
  parseShard,
  readFinished,
  runGrid,
  runLockFile,
  runWorkDir,
  shardGrid,
  unfinishedCheckpoints,
} from "./runner.ts";
import { holderName, runLockStaleMs } from "./run_claim.ts";
import {
  backboneHfRef,
  BACKEND_CHOICES,
  type BackendChoice,
  conditionedTasks,
  missingTestFiles,
  perTaskTag,
  profileNotes,
  runFileName,
  type RunOneFn,
  type RunProgress,
  type RunResult,
  type RunSpec,
  TEST_DIAGNOSTICS,
  testRows,
  testSplits,
  trainedTasks,
  type TrainSpec,
  validationRows,
} from "./spec.ts";
import { checkpointDirName, checkpointOwesEvaluation, listCheckpoints } from "./checkpointing.ts";
import { loadExamples } from "../tasks/load.ts";
import { DataError } from "../tasks/parse.ts";
import { evalSplits, getTask, sourceId } from "../tasks/registry.ts";
import type { TaskSplit } from "../tasks/types.ts";
import {
  compareResults,
  formatComparison,
  formatSpecDifference,
  loadResults,
  REGENERATE_BASELINE,
  rejectDuplicates,
  resultSource,
  runKey,
  specDifferences,
} from "./compare.ts";
import { fakeRunOne } from "./_fake_run_one.ts";
import { type RunLabels, runLabels } from "./labels.ts";
import {
  clearStopRequest,
  DEFAULT_CHECKPOINT_MINUTES,
  requestStop,
  stopRequested,
  watchCheckpointingLoops,
} from "./trainer.ts";
import {
  type AccountingFn,
  DUPLICATE_ADVICE,
  editedResults,
  loadAccounting,
  writeTables,
} from "./tables.ts";
import { join } from "node:path";
import { checkOutputFolder, isDirectorySync, isFileSync } from "../model/fs.ts";
import { checkpointOwnEmbeddings, type EmbeddingStack } from "../model/own_embeddings.ts";
import { hubCacheFolder, hubDownloadComplete, isHubRepoId } from "../model/hub.ts";
import {
  TORCH_WEIGHTS_INDEX_NAME,
  TORCH_WEIGHTS_NAME,
  WEIGHTS_INDEX_NAME,
  WEIGHTS_NAME,
} from "../model/checkpoint.ts";
import { noTokenizerError } from "../model/pretrained.ts";
import {
  decimalNumber,
  exitCodeOf,
  flagError,
  type FlagValues,
  parseFlags,
  usageChecked,
  UsageError,
  wrapHelp,
} from "../model/usage.ts";
import {
  type CommandRunner,
  DEVICE_MARGIN,
  DEVICE_MEMORY_ENV,
  type DeviceMemory,
  deviceMemoryOverride,
  type DeviceMemoryPlan,
  fittingMethodsAdvice,
  fmtGb,
  hostMemoryWarnings,
  isWasmBackend,
  planDeviceMemory,
  probeDeviceMemory,
  type RunBackend,
  runName,
  WASM_HEAP_MARGIN,
  WASM_XNN_HEAP_MARGIN,
} from "./device_memory.ts";
import { diskNeedLine, diskSpaceWarning, estimateDiskNeed, freeDiskBytes } from "./disk_space.ts";

/** The GPU memory's usable percentage ({@link DEVICE_MARGIN}), as --help says it. */
const GPU_USABLE = Math.round(100 * (1 - DEVICE_MARGIN));
/** The wasm heap's usable percentage on wasm+blas ({@link WASM_HEAP_MARGIN}), as --help says it. */
const WASM_USABLE = Math.round(100 * (1 - WASM_HEAP_MARGIN));
/** The same on plain wasm ({@link WASM_XNN_HEAP_MARGIN}: XNNPACK's packed copies). */
const PLAIN_WASM_USABLE = Math.round(100 * (1 - WASM_XNN_HEAP_MARGIN));

const USAGE = `Usage: deno task bench [options]

Options:
  --profile NAME|PATH  built-in profile name or a profile JSON file
                       (default: smoke without a GPU, paper-base with one)
  --data-dir DIR       GLUE/SuperGLUE files in the official layout (default: $HYPERPROMPT_DATA,
                       else per file the download cache where its manifest lists it, else the
                       offline mirror ../shared/data, $HYPERPROMPT_SHARED/data when set; tasks
                       the profile needs that neither has are downloaded into the cache first)
  --no-download        do not download missing tasks (run with the tasks present where the
                       profile allows it). The download fetches from the mirrors
                       $HYPERPROMPT_DATA_ENDPOINTS names (K=URL,K=URL or JSON, as deno task
                       download --endpoint takes them), else the official hosts
                       ($HF_ENDPOINT for the parquet fallback);
                       a bad value exits 2 before any work, unless --data-dir,
                       $HYPERPROMPT_DATA or --no-download turn the download off
  --out DIR            results folder, one JSON per run (default: results/runs)
  --methods L1,L2,...  run only the profile's runs of these methods, by label (the method
                       column of --dry-run and the tables, without a per-task run's [task]);
                       repeatable. With --compare, only the baseline's runs of these methods
                       are gated; the tables are built from every result in OUT
  --shard i/n          run only shard i of n (0-based), a deterministic slice of the grid
                       (of the whole grid: with --methods, that shard's runs of those methods)
  --dry-run            list the grid with estimated FLOPs and time; run nothing
  --compare BASELINE   after running, gate the results against a baseline folder or JSON
                       (read first: a missing, empty or malformed baseline, or one with no
                       run of this grid, is refused with exit 2);
                       exit 3 with a diff when a score moves beyond tolerance or a count changes
  --backend X          ${BACKEND_CHOICES.join("|")} (default: the profile's;
                       its auto is replaced by $HYPERPROMPT_BACKEND when set)
  --assume-tflops T    the sustained rate (TFLOP/s) the dry run's time estimates assume,
                       in place of its guess for the backend (webgpu 2): a measured one
  --resume             skip runs whose result JSON already exists; an unfinished run resumes
                       from its checkpoints in OUT/<run file name without .json>/ (without
                       --resume every run starts from step 0). A run's checkpoints are deleted
                       once its result JSON is written
  --restart            train from step 0 the runs that have checkpoints of an unfinished
                       attempt, deleting them; without --resume or --restart, bench refuses to
                       start when a run has some (a forgotten --resume would lose that work)
  --tables DIR         where the CSV tables and plots go after the runs (default: OUT/tables);
                       shards write none (--tables with --shard is refused): run
                       deno task tables once all have finished
  --no-tables          do not write the tables (with --tables: refused, as a contradiction)
  --device-memory GB   the GPU's memory (default: $HYPERPROMPT_DEVICE_MEMORY_GB, else nvidia-smi's
                       memory.total of the smallest GPU; WebGPU reports none, and nvidia-smi none
                       for a GPU in MIG mode: give the instance's here). Before training, a GPU
                       run whose estimated peak exceeds ${GPU_USABLE}% of it trains with the largest
                       micro-batch that fits, or is refused (exit 2) when none does; with
                       --dry-run, the table shows what every run would do on a GPU of that
                       size. Where no run is on a GPU (cpu, wasm, a software WebGPU adapter),
                       the runs train as specified and a note says the size is ignored.
                       Runs on wasm and wasm+blas are checked likewise against the
                       4 GiB wasm heap (${WASM_USABLE}% usable, ${PLAIN_WASM_USABLE}% on plain
                       wasm, whose XNNPACK matmul keeps packed copies)
  --checkpoint-minutes N
                       a run that writes checkpoints (the profile's train.checkpointEvery > 0)
                       also saves one after the step at which N minutes have passed since its
                       last one (default ${DEFAULT_CHECKPOINT_MINUTES}; 0: only every
                       checkpointEvery steps), so a kill that cannot be caught (SIGKILL, out
                       of memory, power cut) loses at most about N minutes; results and run
                       ids do not change. The newest two checkpoints of a run are kept
  --help               this text

Ctrl-C (SIGINT) or SIGTERM while a run that writes checkpoints trains: the run finishes its
current step (an evaluation in progress is abandoned before its next decode batch), saves a
checkpoint of it, no other run starts, no tables or gate are written, and bench
exits 130 (SIGINT) or 143 (SIGTERM); --resume with the same flags continues from that step
(redoing an abandoned evaluation first). After the run's last checkpoint, the run writes its
result, then bench stops with the same code. A second signal stops at once (the steps since the
run's last checkpoint are lost); signals that arrive during a step's computation are seen when it
ends, together (SIGKILL stops at once). SIGHUP is not handled: use nohup or tmux. At other times
(downloads, pretraining, runs without checkpoints, between runs) a signal stops at once, with the
same exit codes.

Exit codes: 0 success, 1 a failure while working (a run failed, the tables could not be written,
data still missing after the download), 2 bad arguments or profile, or a GPU or wasm run that
cannot fit (refused before any work), 3 the regression gate (--compare) failed, 130 / 143
stopped by SIGINT / SIGTERM. Every option, environment variable and output file:
benchmarks/README.md.`;

/** The dry run's name of WebGPU on a software adapter (no GPU), a key of its own rate. */
const SOFTWARE_WEBGPU = "webgpu (software adapter)";

/**
 * Assumed sustained throughput per backend, in matmul FLOP/s of the whole run (training,
 * evaluation and overheads), for `--dry-run` time estimates: the FLOPs the dry run counts (every
 * row at the maximum lengths) per wall second. `cpu` and `wasm+blas` are measured on 2 CPU
 * cores shared with other work: the ci grid (tiny-v1_1, cpu, 16 runs) at 0599edf, its dry run's
 * 42.6 GFLOP over its results' summed `wallSeconds`, 205.6 s: 0.21 GFLOP/s (0.11 at b58994d,
 * of training FLOPs alone, before later speed-ups); the smoke grid (mini-v1_1, wasm+blas)
 * 14.7 GFLOP/s of training FLOPs (its whole runs within 0.9 of the dry run's time since).
 * {@link SOFTWARE_WEBGPU} (WebGPU on a software adapter, Mesa's lavapipe): 4 runs of the ci grid
 * on 2 cores, 9.9 GFLOP in 185 s, 0.05 GFLOP/s (the dry-run FLOPs of `deno task bench --profile ci
 * --methods prompt_tuning,hyperprompt_share --backend webgpu --dry-run` over the summed
 * `wallSeconds` of the same command without `--dry-run`); `webgpu` is a hardware GPU's. The
 * others are order-of-magnitude guesses; `--assume-tflops` takes a rate measured as the
 * benchmarks README says.
 */
export const ASSUMED_FLOPS_PER_SECOND: Readonly<Record<string, number>> = {
  cpu: 2e8,
  wasm: 4e9,
  "wasm+blas": 1.5e10,
  webgpu: 2e12,
  [SOFTWARE_WEBGPU]: 5e7,
  tensorflow: 2e13,
};

/** The rate {@link estimateRun} assumes for `backend` (wasm+blas's for one it does not list). */
function assumedRate(backend: string): number {
  return ASSUMED_FLOPS_PER_SECOND[backend] ?? ASSUMED_FLOPS_PER_SECOND["wasm+blas"]!;
}

/**
 * The evaluations a run does after step `from` (0: all of them): one every `evalEvery` steps and
 * one at the last step, as the trainer evaluates.
 *
 * @param t the run's training settings
 * @param from the step done (a checkpoint's), 0 to `t.steps`
 */
export function evaluationsAfter(t: Pick<TrainSpec, "steps" | "evalEvery">, from: number): number {
  const all = Math.ceil(t.steps / t.evalEvery);
  return from >= t.steps ? 0 : all - Math.floor(from / t.evalEvery);
}

/** Per-example FLOPs of one run, when accounting is available. */
export interface RunEstimate {
  readonly trainFlopsPerExample: number | null;
  readonly inferenceFlopsPerExample: number | null;
  /**
   * FLOPs of one evaluation (its validation rows and, with `predictTest`, its test rows, at the
   * maximum lengths): how much an evaluation still owed adds (`--dry-run --resume`).
   */
  readonly evalFlops: number | null;
  readonly totalFlops: number | null;
  readonly seconds: number | null;
}

/** The estimate of a run whose model size or accounting is unknown. */
const NO_ESTIMATE: RunEstimate = {
  trainFlopsPerExample: null,
  inferenceFlopsPerExample: null,
  evalFlops: null,
  totalFlops: null,
  seconds: null,
};

/**
 * Where the files of an `hf` reference are, without network access: a local folder as it is (as
 * model/pretrained.ts `locateCheckpoint` takes it), else, for a reference of a hub id's form, the
 * hub cache folder a run downloads it into (model/hub.ts `hubCacheFolder`, with the revision and
 * cache folder `run_one.ts` `buildBackbone` fetches with: `main`, `$HYPERPROMPT_CACHE/hub` …),
 * whether or not it is there yet.
 *
 * @param hf the reference (a folder path or a hub id)
 * @returns the folder, with the hub id when it is a hub cache folder; undefined for a path that is
 *   neither a folder nor a hub id (the run itself says what is wrong with it)
 */
export function hfFolder(hf: string): { dir: string; hubId?: string } | undefined {
  if (isDirectorySync(hf)) return { dir: hf };
  return isHubRepoId(hf) ? { dir: hubCacheFolder(hf), hubId: hf } : undefined;
}

/**
 * The T5 configuration of a spec's model: a preset, or the `config.json` of a local folder or,
 * for a hub id, of its folder in the hub cache ({@link hfFolder}; read there, never downloaded).
 *
 * @param model the model reference
 * @returns the configuration, or undefined for an `hf` whose folder holds no `config.json` (a hub
 *   id not downloaded yet: {@link hubCacheNotes} says so)
 * @throws Error naming the file, line and column of invalid JSON, or the file and field of a
 *   bad value (`t5ConfigFromHf`)
 */
export function modelConfig(model: RunSpec["model"]): T5Config | undefined {
  if (typeof model === "string") return preset(model);
  const dir = hfFolder(model.hf)?.dir;
  if (dir === undefined) return undefined;
  const file = `${dir}/config.json`;
  if (!existsSync(file)) return undefined;
  return t5ConfigFromHf(parseJsonFile(Deno.readTextFileSync(file), file), file);
}

/** The weight files a checkpoint folder may hold, as `model/checkpoint.ts` looks for them. */
const WEIGHT_FILES = [
  WEIGHTS_NAME,
  WEIGHTS_INDEX_NAME,
  TORCH_WEIGHTS_NAME,
  TORCH_WEIGHTS_INDEX_NAME,
] as const;

/**
 * The `config.json` files of the Hugging Face folders the runs read (an `hf` model's, and the
 * folder an `hf` or `"pretrained"` backbone's weights come from) that cannot be used: invalid
 * JSON, a bad or missing field (`t5ConfigFromHf`), or none in a local folder; and a local folder
 * an `hf` backbone's weights are read from that has no weight file or no tokenizer of its own.
 * Checked before any run, as every run of such a folder would fail at its start, after the runs
 * before it trained. A hub id's cache folder without them is not downloaded yet (the run
 * downloads it): not listed.
 *
 * @param specs the runs
 * @returns one line per file, `<file>: <what is wrong> (run <id>, …)`, in grid order
 */
export function unusableCheckpoints(specs: readonly RunSpec[]): string[] {
  const problems = new Map<string, { why: string | undefined; runs: string[] }>();
  for (const spec of specs) {
    const refs = [typeof spec.model === "string" ? undefined : spec.model.hf, backboneHfRef(spec)];
    for (const ref of new Set(refs)) {
      const found = ref === undefined ? undefined : hfFolder(ref);
      if (found === undefined) continue; // no such folder: refused when the profile was read
      const file = `${found.dir}/config.json`;
      let seen = problems.get(file);
      if (seen === undefined) {
        let why: string | undefined;
        if (!existsSync(file)) {
          why = found.hubId === undefined
            ? "missing (a Hugging Face model folder holds its config.json)"
            : undefined;
        } else {
          try {
            modelConfig({ hf: ref! });
          } catch (e) {
            why = e instanceof Error ? e.message : String(e);
          }
        }
        problems.set(file, seen = { why, runs: [] });
      }
      if (seen.why !== undefined && !seen.runs.includes(spec.id)) seen.runs.push(spec.id);
    }
    // The folder the backbone's weights are read from needs them and its own tokenizer (trained
    // weights index their rows by it): a local one lacking either fails the run at its start.
    const weightsRef = backboneHfRef(spec);
    const local = weightsRef === undefined ? undefined : hfFolder(weightsRef);
    // (After its config.json is found usable: one problem of a folder at a time.)
    if (
      local !== undefined && local.hubId === undefined &&
      problems.get(`${local.dir}/config.json`)?.why === undefined
    ) {
      const dir = local.dir;
      const lacks = [
        // Files, not folders of those names (h388: a folder passed, and the run failed at start).
        ...(WEIGHT_FILES.some((f) => isFileSync(join(dir, f))) ? [] : [
          `${dir}: no ${WEIGHT_FILES.slice(0, -1).join(", ")} or ${WEIGHT_FILES.at(-1)}: ` +
          "the backbone's weights are read from this folder",
        ]),
        ...(["tokenizer.json", "spiece.model"].some((f) => isFileSync(join(dir, f)))
          ? []
          : [noTokenizerError(dir).message]),
      ];
      for (const why of lacks) {
        const seen = problems.get(why) ?? { why, runs: [] };
        problems.set(why, seen);
        if (!seen.runs.includes(spec.id)) seen.runs.push(spec.id);
      }
    }
  }
  return [...problems].filter(([, p]) => p.why !== undefined).map(([file, p]) => {
    // The parser's messages name the file already; a missing one is named here.
    return withRuns(p.why!.includes(file) ? p.why! : `${file}: ${p.why}`, p.runs);
  });
}

/** A pre-run refusal's line: `<problem> (run <id>)` or `(runs <id>, <id>, <id> and N more)`. */
function withRuns(problem: string, runs: readonly string[]): string {
  const shown = runs.length > 3
    ? `${runs.slice(0, 3).join(", ")} and ${runs.length - 3} more`
    : runs.join(", ");
  return `${problem} (run${runs.length > 1 ? "s" : ""} ${shown})`;
}

/**
 * The diagnostic test sets ({@link TEST_DIAGNOSTICS}: AX with MNLI, AX-b and AX-g with SuperGLUE
 * RTE) that runs with `train.predictTest` would predict beside their task's test set but whose
 * test files are missing from the data folder: such a run skips them (one line on stderr at its
 * start), and their leaderboard files can then come only from a new run, since predictions are
 * written as the run trains. Said before any run (and by a dry run), naming the files.
 *
 * @param specs the runs
 * @param dataDir the data folder the runs read
 * @returns one line per diagnostic, naming its missing files, how to get them, and its runs
 */
export function missingDiagnosticTests(specs: readonly RunSpec[], dataDir: string): string[] {
  const missing = new Map<string, { files: string[]; runs: string[] }>();
  for (const s of specs) {
    if (s.train.predictTest !== true) continue;
    for (const diag of s.tasks.flatMap((t) => TEST_DIAGNOSTICS[t] ?? [])) {
      const files = missingTestFiles(diag, dataDir);
      if (files.length === 0) continue;
      const m = missing.get(diag) ?? { files, runs: [] };
      missing.set(diag, m);
      m.runs.push(s.id);
    }
  }
  return [...missing].map(([diag, { files, runs }]) =>
    withRuns(
      `no ${getTask(diag).displayName} test predictions: ${
        files.map((f) => join(dataDir, f)).join(", ")
      } not found, so these runs will predict no ${getTask(diag).displayName}, whose ` +
        `predictions the leaderboard zip needs and only a run writes; get the file first (deno ` +
        `task download --tasks ${sourceId(diag)}) if you will submit`,
      runs,
    )
  );
}

/**
 * The checkpoint folder a run's backbone weights are loaded from (`run_one.ts` `buildBackbone`):
 * that of an `hf` backbone, or of the `hf` model of a `"pretrained"` backbone ({@link hfFolder}):
 * a local folder holding `config.json`, or, for a hub id, its hub cache folder once a download
 * of it completed there (model/hub.ts `hubDownloadComplete`: the weights the loader reads; never
 * downloaded here). Undefined for a random init, a preset's pretrained checkpoint (published or
 * built here: one shared table) and a hub id whose weights the cache does not hold yet
 * ({@link hubCacheNotes} says so).
 *
 * @param spec the run
 * @returns the folder, or undefined
 */
export function weightsFolder(spec: Pick<RunSpec, "model" | "backbone">): string | undefined {
  const hf = backboneHfRef(spec);
  const found = hf === undefined ? undefined : hfFolder(hf);
  if (found === undefined || !existsSync(`${found.dir}/config.json`)) return undefined;
  return found.hubId === undefined || hubDownloadComplete(found.dir) ? found.dir : undefined;
}

/**
 * Whether a run reads the task corpus (the corpus tasks' train and test files in the data folder,
 * `tasks/data.ts` `corpusSplits`): a tiny preset's run from no checkpoint folder, whose tokenizer
 * (`run_one.ts` `randomInitTokenizer`) or offline-pretrained backbone (`pretrainedFolder`) is
 * trained on it, the corpus read in full at the run's start even when they are cached.
 *
 * @param spec the run
 * @returns true when it reads the corpus
 */
export function readsTaskCorpus(spec: Pick<RunSpec, "model" | "backbone">): boolean {
  return isUnpublishedPreset(spec.model) && typeof spec.backbone === "string";
}

/**
 * Why the tables bench writes after its runs would fail on what `outDir` holds already, or
 * undefined. They read every result there (`tables.ts` `writeTables`), so a JSON file that is no
 * run result, a second result of one run (a renamed copy, also of a run of this grid), or a result
 * whose spec was edited stops them once the whole grid has trained. The grid's own result files
 * are not read here: each run writes its own, or keeps it after `--resume` checked it.
 *
 * @param outDir bench's `--out`
 * @param grid the runs of this bench (all of the profile's selected runs, trained or kept)
 * @returns the problem, naming the file
 */
export async function tablesPreflight(
  outDir: string,
  grid: readonly RunSpec[],
): Promise<string | undefined> {
  if (!isDirectorySync(outDir)) return undefined;
  const own = new Map(grid.map((s) => [s.id, runFileName(s)]));
  let others: RunResult[];
  try {
    others = await loadResults(outDir, { except: new Set(own.values()) });
  } catch (e) {
    return (e as Error).message;
  }
  // The tables' own checks of their input (tables.ts), then a copy of a run of this grid.
  const edited = editedResults(others);
  if (edited !== undefined) return edited;
  try {
    rejectDuplicates(others, (r) => r.spec.id, "run id", DUPLICATE_ADVICE);
  } catch (e) {
    return (e as Error).message;
  }
  for (const r of others) {
    const file = own.get(r.spec.id);
    if (file !== undefined) {
      return `${resultSource(r)} is a result of run ${r.spec.id} of this grid, whose own file ` +
        `is ${file}: two results of one run; remove the copy`;
    }
  }
  return undefined;
}

/**
 * The task files the runs read that cannot be parsed (a malformed row, a wrong header, a file cut
 * short or not the official one: `tasks/load.ts` `loadExamples`, as the runs load them): each
 * trained task's train split, each evaluated task's validation splits, with `train.predictTest`
 * its test splits, and for a run that reads the task corpus ({@link readsTaskCorpus}) every
 * corpus split of the folder, of tasks outside the grid too; each read once. Checked before any
 * run, as every run reading such a file would fail at its start, after the runs before it
 * trained. A missing file is not listed (the grid's expansion refuses those, or leaves their
 * tasks out).
 *
 * @param specs the runs
 * @param dataDir the data folder the runs read
 * @returns one line per problem, the loader's message (file, line, field) and its runs
 */
export async function malformedTaskFiles(
  specs: readonly RunSpec[],
  dataDir: string,
): Promise<string[]> {
  const reads = new Map<
    string,
    { task: string; split: TaskSplit; runs: string[]; corpusOnly: boolean }
  >();
  const read = (task: string, split: TaskSplit, id: string, corpus: boolean) => {
    const key = `${task}\0${split}`;
    const r = reads.get(key) ?? { task, split, runs: [], corpusOnly: true };
    reads.set(key, r);
    if (!r.runs.includes(id)) r.runs.push(id);
    if (!corpus) r.corpusOnly = false;
  };
  // Listed once: the same for every run that reads it.
  const corpus = specs.some(readsTaskCorpus) ? corpusSplits(dataDir) : [];
  for (const spec of specs) {
    const pairs: [string, TaskSplit][] = [
      ...trainedTasks(spec).map((t): [string, TaskSplit] => [t, "train"]),
      ...spec.tasks.flatMap((t) => evalSplits(t).map((s): [string, TaskSplit] => [t, s])),
      ...(spec.train.predictTest === true
        ? spec.tasks.flatMap((t) => testSplits(t).map((s): [string, TaskSplit] => [t, s]))
        : []),
    ];
    for (const [task, split] of pairs) read(task, split, spec.id, false);
    if (readsTaskCorpus(spec)) {
      for (const [task, split] of corpus) read(task, split, spec.id, true);
    }
  }
  // One line per message (a file read for two tasks or splits says it once), with every run
  // that reads it.
  const problems = new Map<string, string[]>();
  for (const { task, split, runs, corpusOnly } of reads.values()) {
    try {
      await loadExamples(task, split, dataDir, { onSkipped: () => {} });
    } catch (e) {
      if (!(e instanceof DataError)) continue; // a missing file: the expansion's business
      // A file of a task outside the grid: why these runs read it at all.
      const message = corpusOnly ? `${e.message} ${corpusReadNote(dataDir)}` : e.message;
      const all = problems.get(message) ?? [];
      problems.set(message, [...all, ...runs.filter((id) => !all.includes(id))]);
    }
  }
  return [...problems].map(([message, runs]) => withRuns(message, runs));
}

/**
 * The summary's lines for the failed runs, one per error message in order of first failure:
 * runs that failed alike (a malformed task file every run reads, a missing backbone) share one
 * line naming them all, rather than repeating a long message per run (each run's own line was
 * printed as it failed).
 *
 * @param failed the grid's failed runs (`GridSummary.failed`)
 * @returns lines like `  FAILED <id>: <message>` or `  FAILED <id>, <id> (2 runs): <message>`
 */
export function failedLines(
  failed: readonly { readonly spec: { readonly id: string }; readonly error: Error }[],
): string[] {
  const byMessage = new Map<string, string[]>();
  for (const f of failed) {
    const ids = byMessage.get(f.error.message);
    if (ids === undefined) byMessage.set(f.error.message, [f.spec.id]);
    else ids.push(f.spec.id);
  }
  return [...byMessage].map(([message, ids]) =>
    `  FAILED ${ids.join(", ")}${ids.length > 1 ? ` (${ids.length} runs)` : ""}: ${message}`
  );
}

/**
 * What the preflight and the dry run cannot see of the runs' hub ids, read from the hub cache
 * alone: one line per hub id whose `config.json` is not there (its runs get no memory or FLOP
 * estimate, and are not checked against the memory), and one per hub id whose weights are not
 * (its runs are estimated with one shared token table, as the checkpoint may not have).
 *
 * @param specs the runs
 * @returns the lines, in the order the runs first name the hub ids
 */
export function hubCacheNotes(specs: readonly Pick<RunSpec, "model" | "backbone">[]): string[] {
  const noConfig = new Map<string, { dir: string; runs: number }>();
  const noWeights = new Map<string, { dir: string; runs: number }>();
  const count = (m: typeof noConfig, id: string, dir: string) =>
    m.set(id, { dir, runs: (m.get(id)?.runs ?? 0) + 1 });
  for (const s of specs) {
    const model = typeof s.model === "object" ? hfFolder(s.model.hf) : undefined;
    if (model?.hubId !== undefined && !existsSync(`${model.dir}/config.json`)) {
      count(noConfig, model.hubId, model.dir);
      continue; // no estimate at all: its weights do not matter
    }
    const hf = backboneHfRef(s);
    const weights = hf === undefined ? undefined : hfFolder(hf);
    if (weights?.hubId !== undefined && weightsFolder(s) === undefined) {
      count(noWeights, weights.hubId, weights.dir);
    }
  }
  // "its run gets …", "its 12 runs get …"
  const runs = (n: number, verb: string, plural: string) =>
    n === 1 ? `run ${verb}` : `${n} runs ${plural}`;
  const then = "a run downloads it there (or name a local folder holding it instead), and the " +
    "next preflight reads it; the preflight never downloads";
  return [
    ...[...noConfig].map(([id, { dir, runs: n }]) =>
      `"${id}" is not in the hub cache (no ${dir}/config.json): its ${
        runs(n, "gets", "get")
      } no memory or FLOP estimate and ${
        n === 1 ? "is" : "are"
      } not checked against the memory before training; ${then}`
    ),
    ...[...noWeights].map(([id, { dir, runs: n }]) =>
      `the weights of "${id}" are not in the hub cache (no completed download in ${dir}): its ` +
      `${runs(n, "is", "are")} estimated with one token table shared by the encoder and ` +
      `decoder, which the checkpoint may not have (a table of a stack's own needs more); ${then}`
    ),
  ];
}

/**
 * The configuration the memory preflight estimates a run with: {@link modelConfig}, plus the
 * stacks whose token table the checkpoint loaded gives a table of its own (`ownEmbeddings`, as
 * model/t5.ts `t5FromTensors` sets it), read from the weights folder's tensor index and, for the
 * tables only, their bytes ({@link checkpointOwnEmbeddings}), without loading the checkpoint.
 *
 * @param spec the run
 * @param ownOf the own tables of a weights folder (default {@link checkpointOwnEmbeddings}; a
 *   caller estimating many runs passes a cached one); a folder it cannot read (throws) is
 *   estimated with one shared table, and the run itself says what is wrong with it
 * @returns the configuration, or undefined where {@link modelConfig} gives none
 * @throws Error what {@link modelConfig} throws
 */
export async function preflightModelConfig(
  spec: Pick<RunSpec, "model" | "backbone">,
  ownOf: (dir: string) => Promise<readonly EmbeddingStack[]> = checkpointOwnEmbeddings,
): Promise<T5Config | undefined> {
  const config = modelConfig(spec.model);
  const dir = weightsFolder(spec);
  if (config === undefined || dir === undefined) return config;
  let own: readonly EmbeddingStack[];
  try {
    own = await ownOf(dir);
  } catch {
    return config;
  }
  return own.length === 0 ? config : { ...config, ownEmbeddings: own };
}

/**
 * Estimate a run's FLOPs and wall time: training `trainFlops · batch · steps` plus evaluation
 * `forwardFlops · examples · evaluations`, the examples each task's whole validation split(s)
 * (the registry's official row counts; 1,000 where it gives none) or the profile's
 * `evalMaxExamples` of them, plus, with `train.predictTest`, `forwardFlops` times the official test
 * examples of the tasks and their diagnostics at every evaluation (an upper bound: they are
 * decoded only when an evaluation is a task's new best), at {@link ASSUMED_FLOPS_PER_SECOND} of
 * the backend. `trainFlops` is the
 * method's own (its `freezeBackbone` included: a frozen backbone's weight gradients are not
 * counted, as tfjs does not compute them).
 *
 * @param spec the run
 * @param accounting `methodAccounting` (undefined: no estimate)
 * @param backend backend name used for the rate
 * @param flopsPerSecond the rate to assume instead (`--assume-tflops`)
 * @returns the estimate; nulls where unknown
 */
export function estimateRun(
  spec: RunSpec,
  accounting: AccountingFn | undefined,
  backend: string,
  flopsPerSecond?: number,
): RunEstimate {
  let config: T5Config | undefined;
  try {
    config = modelConfig(spec.model);
  } catch {
    config = undefined; // an unusable config.json: the dry run warns (unusableCheckpoints)
  }
  if (accounting === undefined || config === undefined) {
    return NO_ESTIMATE;
  }
  const t = spec.train;
  // Per-task variables for every task the method tells apart (a train-only one too, unless it
  // shares an evaluated task's id); evaluation of `tasks` only.
  const a = accounting(
    config,
    spec.method.name,
    spec.method.config,
    conditionedTasks(spec).length,
    {
      inputLength: t.maxInputLength,
      targetLength: t.maxTargetLength,
    },
  );
  if (a.trainFlops === null || a.forwardFlops === null) {
    return NO_ESTIMATE;
  }
  const evals = evaluationsAfter(t, 0);
  // Test-set predictions (`train.predictTest`): at most one decoding of each task's test sets
  // (its diagnostics' too, counted whether or not their files are present) per evaluation,
  // counted as if every evaluation were a new best: an upper bound.
  const testExamples = t.predictTest === true
    ? spec.tasks.reduce(
      (a, task) =>
        a + testRows(task) + (TEST_DIAGNOSTICS[task] ?? []).reduce((b, d) => b + testRows(d), 0),
      0,
    )
    : 0;
  // Each evaluation scores a task's whole validation split(s) (the registry's official row
  // counts), or the profile's cap of them: ceil(cap / splits) of each split (evaluator.ts
  // makeEvalSet; MNLI's two under an odd cap score one more than the cap).
  const evalExamples = spec.tasks.reduce((a, task) => {
    const rows = validationRows(task);
    const cap = t.evalMaxExamples;
    if (cap === null) return a + (rows ?? 1000);
    const splits = evalSplits(task).length;
    const capped = Math.ceil(cap / splits) * splits;
    return a + Math.min(capped, rows ?? capped);
  }, 0) + testExamples;
  const evalFlops = a.forwardFlops * evalExamples;
  const total = a.trainFlops * t.batchSize * t.steps + evalFlops * evals;
  const rate = flopsPerSecond ?? assumedRate(backend);
  return {
    trainFlopsPerExample: a.trainFlops,
    inferenceFlopsPerExample: a.forwardFlops,
    evalFlops,
    totalFlops: total,
    seconds: total / rate,
  };
}

function fmtSi(n: number | null): string {
  if (n === null) return "n/a";
  if (n === 0) return "0"; // nothing left (a finished run under --resume), not "0.00"
  const units = ["", "K", "M", "G", "T", "P", "E"];
  let i = 0;
  while (Math.abs(n) >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${n.toFixed(n >= 100 ? 0 : n >= 10 ? 1 : 2)}${units[i]}`;
}

/** Seconds as `1h02m`, `3m05s` or `12s`. */
export function fmtDuration(s: number | null): string {
  if (s === null) return "n/a";
  // Under a second: its first digit (a 0.01-minute budget is 0.6s, not 1s).
  if (s > 0 && s < 1) return `${Number(s.toPrecision(1))}s`;
  // Rounded once, to the unit shown, before splitting: 179.6 s is 3m00s, not 2m60s.
  const secs = Math.round(s);
  if (secs < 60) return `${secs}s`;
  if (secs < 3600) {
    const m = Math.floor(secs / 60);
    return `${m}m${String(secs - 60 * m).padStart(2, "0")}s`;
  }
  const mins = Math.round(s / 60);
  const h = Math.floor(mins / 60);
  return `${h}h${String(mins - 60 * h).padStart(2, "0")}m`;
}

async function loadRunOne(): Promise<RunOneFn> {
  if (Deno.env.get("HYPERPROMPT_FAKE_RUN_ONE") === "1") return fakeRunOne;
  const url = new URL("./run_one.ts", import.meta.url).href;
  const mod = await import(url) as { runOne?: RunOneFn };
  if (typeof mod.runOne !== "function") {
    throw new Error("benchmarks/run_one.ts does not export runOne");
  }
  return mod.runOne;
}

/** The machine's memory in bytes, or undefined where it cannot be read (no --allow-sys). */
function hostMemoryTotal(): number | undefined {
  try {
    return Deno.systemMemoryInfo().total;
  } catch {
    return undefined;
  }
}

/** The backend a choice resolves to on this machine, and whether it is a GPU. */
export interface BackendProbe {
  readonly name: string;
  readonly gpu: boolean;
  /**
   * Why an explicit request (`--backend`, a profile's or a run's backend, `HYPERPROMPT_BACKEND`)
   * cannot start here; its runs are refused before any trains.
   */
  readonly unavailable?: string;
}

async function probeBackend(choice: BackendChoice): Promise<BackendProbe> {
  if (Deno.env.get("HYPERPROMPT_FAKE_RUN_ONE") === "1") return { name: "cpu", gpu: false };
  const { selectBackend } = await import("../model/backend.ts");
  const info = await selectBackend(choice, { log: () => {} });
  return { name: info.name, gpu: isGpuBackend(info) };
}

/**
 * Whether a selected backend is a GPU, for the default profile: WebGPU on a hardware adapter
 * (`selectBackend("auto")` takes no software one; `--backend webgpu` or
 * `HYPERPROMPT_BACKEND=webgpu` does, marked `fallbackAdapter`, and is no GPU here), or
 * tfjs-node-gpu; `@tensorflow/tfjs-node`, also named "tensorflow", runs on the CPU.
 *
 * @param info what `selectBackend` returned (its name, for tensorflow the package in `adapter`,
 *   for webgpu whether the adapter is a software fallback one)
 * @returns true for a GPU backend
 */
export function isGpuBackend(
  info: { readonly name: string; readonly adapter?: string; readonly fallbackAdapter?: boolean },
): boolean {
  if (info.name === "webgpu") return info.fallbackAdapter !== true;
  return info.name === "tensorflow" && info.adapter === "@tensorflow/tfjs-node-gpu";
}

/** What {@link statedMemoryUse} decided. */
export interface StatedMemoryUse {
  /**
   * Plan every run as a GPU run of the stated size: only in a dry run where no run's backend is a
   * GPU (the table `--device-memory` asks for, off the GPU machine).
   */
  readonly simulate: boolean;
  /** The one line saying that the stated size is ignored; undefined when it is used or unset. */
  readonly ignored?: string;
}

/** A backend for messages: webgpu on a software adapter and CPU tfjs-node say so. */
function backendWords(p: BackendProbe): string {
  if (p.gpu) return p.name;
  if (p.name === "webgpu") return "webgpu on a software adapter, not a GPU";
  return p.name === "tensorflow" ? "tensorflow on the CPU" : p.name;
}

/**
 * What a stated GPU memory size (`--device-memory`, or `HYPERPROMPT_DEVICE_MEMORY_GB`) does. The
 * preflight checks GPU runs only (WebGPU on a hardware adapter, tfjs-node-gpu; wasm runs against
 * the wasm heap, whatever the size): when no run's backend is a GPU (cpu, wasm, tfjs-node, or
 * WebGPU on a software adapter such as Mesa's llvmpipe or lavapipe, {@link isGpuBackend}), the
 * runs train as specified and the size is ignored, which this says in one line. A dry run then
 * still plans every run as on a GPU of that size, and says that the real run will not.
 *
 * @param probes the backend of each distinct backend choice of the runs
 * @param stated the stated size ({@link deviceMemoryOverride}), if any
 * @param dryRun whether this is `--dry-run`
 * @returns whether to simulate a GPU (dry run only), and the line to log when the size is ignored
 */
export function statedMemoryUse(
  probes: readonly BackendProbe[],
  stated: DeviceMemory | undefined,
  dryRun: boolean,
): StatedMemoryUse {
  if (stated === undefined || probes.length === 0 || probes.some((p) => p.gpu)) {
    return { simulate: false };
  }
  const size = `${stated.source} (${fmtGb(stated.bytes)})`;
  const other = probes.filter((p) => !isWasmBackend(p.name));
  if (other.length === 0) {
    // Every run is checked against the wasm heap: a GPU's size changes nothing, dry run or not.
    return {
      simulate: false,
      ignored: `note: ${size} is ignored: no run here is on a GPU (${
        [...new Set(probes.map((p) => p.name))].join(", ")
      }: checked against the wasm heap instead)`,
    };
  }
  const backends = [...new Set(other.map(backendWords))].join("; ");
  return {
    simulate: dryRun,
    ignored: dryRun
      ? `note: no run here is on a GPU (${backends}): the est. peak column, micro-batches and ` +
        `refusals below are as on a GPU of ${size}; without --dry-run ${stated.source} is ` +
        `ignored and the runs train as specified`
      : `note: ${size} is ignored: no run here is on a GPU (${backends}), and the memory ` +
        `preflight checks GPU runs only; the runs train as specified (--dry-run shows what a ` +
        `GPU of that size would do)`,
  };
}

/** A run's method label, with its task in brackets for one task's run of a `perTask` method. */
function runMethodLabel(s: RunSpec): string {
  return `${s.method.label}${perTaskTag(s)}`;
}

/** The dry-run's "est. peak" cell: GB at the micro-batch the run would train with. */
function peakCell(spec: RunSpec, memory: DeviceMemoryPlan): string {
  const p = memory.runs.get(spec.id);
  if (p === undefined) return "n/a";
  const gb = (p.estimate.peak / 1e9).toFixed(1);
  if (p.fits === false) return `${gb} (does not fit)`;
  return p.chosen ? `${gb} (micro ${p.microBatchSize})` : gb;
}

/**
 * A run's progress-bar name, 28 characters: `<benchmark>/<method>/s<seed>`, the method label
 * shortened (with "…") so that the seed, and a per-task run's task, stay visible.
 */
export function barName(s: RunSpec, width = 28): string {
  const full = `${s.benchmark}/${runMethodLabel(s)}/s${s.seed}`;
  if (full.length <= width) return full.padEnd(width);
  const tail = `${perTaskTag(s)}/s${s.seed}`;
  const room = width - s.benchmark.length - 1 - tail.length - 1;
  if (room < 1) return `…${full.slice(full.length - width + 1)}`;
  return `${s.benchmark}/${s.method.label.slice(0, room)}…${tail}`;
}

/** A run's state in `--out` as `--resume` finds it, for a dry run's estimate of what is left. */
export interface DryRunLeft {
  /** Its result is there and would be kept. */
  readonly done: boolean;
  /** The step of its newest checkpoint (0: none). */
  readonly fromStep: number;
  /**
   * That checkpoint owes its step's evaluation (a stop abandoned it: `state.json` `evalOwed`),
   * which a resume does first.
   */
  readonly evalOwed?: boolean;
}

/**
 * The dry-run plan: one line per run and the totals. Models and backbones are named as the
 * tables name them (`labels`, labels.ts `runLabels` of the whole grid: `a/t5-base` and
 * `b/t5-base` for two folders named `t5-base`).
 */
function printDryRun(
  specs: readonly RunSpec[],
  labels: RunLabels,
  allEstimates: readonly RunEstimate[],
  memory: DeviceMemoryPlan,
  backend: string,
  log: (s: string) => void,
  budgetMinutes?: number,
  left?: readonly DryRunLeft[],
  flopsPerSecond?: number,
): void {
  // With --resume, each run's work still to do: none for a kept result; for one that resumes,
  // the steps after its checkpoint's, the evaluations after that step, and the evaluation the
  // checkpoint owes, if any.
  const estimates = left === undefined ? allEstimates : allEstimates.map((e, i) => {
    const l = left[i]!;
    const t = specs[i]!.train;
    if (e.totalFlops === null || e.seconds === null || e.trainFlopsPerExample === null) return e;
    const flops = l.done ? 0 : e.trainFlopsPerExample * t.batchSize * (t.steps - l.fromStep) +
      e.evalFlops! * (evaluationsAfter(t, l.fromStep) + (l.evalOwed ? 1 : 0));
    return {
      ...e,
      totalFlops: flops,
      seconds: e.totalFlops === 0 ? 0 : e.seconds * (flops / e.totalFlops),
    };
  });
  const rows = specs.map((s, i) => {
    const e = estimates[i]!;
    return [
      String(i),
      s.id,
      labels.model(s),
      labels.backbone(s),
      s.benchmark,
      runMethodLabel(s),
      `s${s.seed}`,
      // Evaluated tasks, then "+N" train-only ones (DPR in the paper profiles' SuperGLUE runs).
      String(s.tasks.length) +
      (s.trainOnlyTasks === undefined ? "" : `+${s.trainOnlyTasks.length}`),
      `${s.train.steps}x${s.train.batchSize}`,
      fmtSi(e.trainFlopsPerExample),
      fmtSi(e.totalFlops),
      fmtDuration(e.seconds),
      peakCell(s, memory),
      ...(left === undefined ? [] : [
        left[i]!.done
          ? "finished"
          : left[i]!.fromStep > 0
          ? `from ${left[i]!.fromStep}${left[i]!.evalOwed ? " (evaluation owed)" : ""}`
          : "",
      ]),
    ];
  });
  const head = [
    "#",
    "id",
    "model",
    "backbone",
    "benchmark",
    "method",
    "seed",
    "tasks",
    "steps x batch",
    "train FLOPs/ex",
    "total FLOPs",
    "est. time",
    "est. peak GB",
    ...(left === undefined ? [] : ["--resume"]),
  ];
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const line = (r: string[]) => r.map((x, c) => x.padEnd(widths[c]!)).join("  ");
  log(line(head));
  for (const r of rows) log(line(r));
  if (specs.length === 0) {
    // An empty selection (a shard or --methods that keeps no run): no model's size is missing.
    log("0 runs: the selection is empty, nothing to estimate");
    return;
  }
  const known = estimates.filter((e) => e.seconds !== null);
  const secs = known.reduce((a, e) => a + e.seconds!, 0);
  const flops = known.reduce((a, e) => a + e.totalFlops!, 0);
  if (known.length === 0) {
    // Nothing to add up: "0 FLOPs, about 0 s" would read as an estimate.
    log(
      `${
        runsCount(specs.length)
      }; no FLOP or time estimate (a model's size is known from a preset ` +
        `or a config.json, of a local folder or in the hub cache)`,
    );
    return;
  }
  const kept = left === undefined
    ? ""
    : ` (with --resume: ${left.filter((l) => l.done).length} finished, ${
      left.filter((l) => !l.done && l.fromStep > 0).length
    } resuming from a checkpoint; the FLOPs and time are those left)`;
  log(
    `${runsCount(specs.length)}${kept}; ${fmtSi(flops)} FLOPs; about ${
      fmtDuration(secs)
    } at an assumed ${fmtSi(flopsPerSecond ?? assumedRate(backend))}FLOP/s (${
      flopsPerSecond === undefined ? backend : `${backend}, --assume-tflops`
    })${
      known.length < estimates.length ? `; ${estimates.length - known.length} without estimate` : ""
    }; every row at the maximum lengths, an upper bound (benchmarks/README.md, --assume-tflops)`,
  );
  if (budgetMinutes !== undefined && secs > 60 * budgetMinutes) {
    log(
      `warning: the estimate exceeds the profile's time budget of ${
        fmtDuration(60 * budgetMinutes)
      }`,
    );
  }
}

/** `1 run`, `2 runs`. */
function runsCount(n: number): string {
  return n === 1 ? "1 run" : `${n} runs`;
}

/** The line `--resume` prints for a result file it cannot use and will replace. */
function replacing(reason: string): string {
  return `its result file cannot be used (${reason}); it is replaced when the run finishes`;
}

/**
 * The line of a run that resumes from a checkpoint (`runGrid`'s `resumed` event), printed with
 * or without a terminal, so a log says where a resumed run took up its work.
 *
 * @param e the event
 * @returns e.g. `run 0123456789ab (glue/mtl/s0): resumed from its checkpoint of step 3 of 4`
 */
export function resumedLine(e: Extract<GridEvent, { kind: "resumed" }>): string {
  return `run ${e.spec.id} (${
    barName(e.spec).trim()
  }): resumed from its checkpoint of step ${e.step} of ${e.spec.train.steps}`;
}

/**
 * What of a finished run's best evaluations is undefined (NaN: Pearson or Spearman of a
 * constant prediction or gold column, as in SciPy), which its group score and the benchmark
 * average count as 0.
 *
 * @param result the run's result
 * @returns e.g. `stsb pearson_corrcoef, spearman_corrcoef` (tasks joined by `; `), or undefined
 *   when every metric is a number
 */
export function undefinedMetricsOf(result: RunResult): string | undefined {
  const parts: string[] = [];
  for (const [task, best] of Object.entries(result.best)) {
    const names = Object.entries(best.metrics).filter(([, v]) => Number.isNaN(v)).map(([k]) => k);
    if (names.length > 0) parts.push(`${task} ${names.join(", ")}`);
  }
  return parts.length === 0 ? undefined : parts.join("; ");
}

/**
 * The notes bench prints after a grid on its runs whose best evaluations have undefined metrics
 * ({@link undefinedMetricsOf}): one per set of such metrics, naming its runs (the first four and
 * the count), so that a log says why a score is low, not only the results file's `null`, without
 * a line per run (a short run of a tiny model predicts STS-B constantly in every run).
 *
 * @param runs each finished run's id and its undefined metrics
 * @returns e.g. `note: undefined metrics (constant predictions or gold), each counted as 0 in its
 *   group score: stsb pearson_corrcoef, spearman_corrcoef, in 2 runs: 0123456789ab, 89abcdef0123`
 */
export function undefinedMetricsNotes(
  runs: readonly { readonly id: string; readonly what: string }[],
): string[] {
  const by = new Map<string, string[]>();
  for (const r of runs) by.set(r.what, [...(by.get(r.what) ?? []), r.id]);
  return [...by].map(([what, ids]) =>
    `note: undefined metrics (constant predictions or gold), each counted as 0 in its group ` +
    `score: ${what}, in ${runsCount(ids.length)}: ${ids.slice(0, 4).join(", ")}${
      ids.length > 4 ? `, … (${ids.length})` : ""
    }`
  );
}

/**
 * The note bench prints after a grid whose runs' best evaluations have predictions that are no
 * answer (`RunResult` `best[task].invalid`: no label word, for STS-B no number), which the
 * metrics score as wrong: per task, the share over the runs (their predictions summed), tasks
 * in the order first seen, so that a log says why a score sits at or below a majority-class
 * guess (a short run of a small model has not learned the label words yet), not only
 * `metrics.csv`'s `invalid_predictions_pct` rows.
 *
 * @param results the runs trained
 * @returns e.g. `note: predictions that are no answer (no label word; for STS-B no number, for
 *   WSC no word), scored as wrong as T5 scores them, at each task's best step: rte 100% of 32
 *   (2 runs), cb 3.13% of 32 (2 runs)`, or undefined when there are none
 */
export function invalidPredictionsNote(results: readonly RunResult[]): string | undefined {
  const by = new Map<string, { count: number; of: number; runs: number }>();
  for (const r of results) {
    for (const [task, b] of Object.entries(r.best)) {
      if (b.invalid === undefined) continue;
      const t = by.get(task) ?? { count: 0, of: 0, runs: 0 };
      by.set(task, { count: t.count + b.invalid.count, of: t.of + b.invalid.of, runs: t.runs + 1 });
    }
  }
  const parts = [...by].filter(([, t]) => t.count > 0).map(([task, t]) =>
    `${task} ${Number((100 * t.count / t.of).toPrecision(3))}% of ${fmtCount(t.of)} (${
      runsCount(t.runs)
    })`
  );
  if (parts.length === 0) return undefined;
  return "note: predictions that are no answer (no label word; for STS-B no number, for WSC no " +
    `word), scored as wrong as T5 scores them, at each task's best step: ${parts.join(", ")}`;
}

/**
 * The notes bench prints on the runs a grid trained, once it ends: undefined metrics
 * ({@link undefinedMetricsNotes}), then predictions that are no answer
 * ({@link invalidPredictionsNote}).
 *
 * @param results the runs trained
 * @returns the lines, none when there is nothing to say
 */
export function finishedRunNotes(results: readonly RunResult[]): string[] {
  const undefinedMetrics = results.flatMap((r) => {
    const what = undefinedMetricsOf(r);
    return what === undefined ? [] : [{ id: r.spec.id, what }];
  });
  const invalid = invalidPredictionsNote(results);
  return [...undefinedMetricsNotes(undefinedMetrics), ...(invalid === undefined ? [] : [invalid])];
}

/**
 * The info label of a run's progress bar for a progress report: each phase its own, so that a
 * phase added to `RunProgress` fails to compile here rather than being drawn as another.
 *
 * @param p the report
 * @returns `loss 0.1234` (or `train` without a loss), `eval`, `eval rte 1,200/3,000` (a
 *   validation set's decoding: rows done of rows to decode), `test rte 1,200/3,000` (a test
 *   set's, `train.predictTest`), or `resumed` (runGrid passes a `resume` report on as its
 *   `resumed` event, never as a progress one; drawn alike if it did)
 */
export function progressInfo(p: RunProgress): string {
  switch (p.phase) {
    case "train":
      return p.loss === undefined ? "train" : `loss ${p.loss.toFixed(4)}`;
    case "eval":
      return "eval";
    case "decode":
      return `${p.split === "test" ? "test" : "eval"} ${p.task} ${fmtCount(p.done)}/${
        fmtCount(p.total)
      }`;
    case "resume":
      return "resumed";
    default: {
      // Exhaustive: a new phase is a compile error here. At run time (an untyped caller) the
      // bar shows the phase's own name, never another's.
      const odd: never = p;
      return String((odd as { phase: unknown }).phase);
    }
  }
}

/** A count with thousands separators: `390,965`. */
function fmtCount(n: number): string {
  return n.toLocaleString("en-US");
}

/**
 * The progress bars of `deno task bench` (grid and current run), on stderr. On a terminal they
 * change no terminal mode: the cursor stays visible and each line is cut to the terminal's width
 * by the writer rather than by turning line wrapping off, so a run stopped by Ctrl-C (SIGINT's
 * default action, exit 130, which can restore nothing) leaves the terminal as it was. Without a
 * terminal they print a line every 10 s (and one per run), with no cursor movement.
 *
 * @param total number of runs of the grid (the grid bar counts those this process trains: a
 *   skipped one, done before, leaves its total)
 * @param tty whether the stream is a terminal
 * @param stream where the bars go (default stderr; tests pass their own)
 * @returns the grid event handler; `log`, which writes a line above the bars (`runGrid`'s
 *   `log` lines: a run left to the process that took its claim over, the `--resume` note on
 *   results of other code), as the handler writes its own lines; and `stop`, to call once the
 *   grid has finished or failed (it writes the messages still queued, e.g. the last run's FAILED
 *   line, then the final bars)
 */
export function progressReporter(total: number, tty: boolean, stream?: Writable): {
  onEvent: (e: GridEvent) => void;
  log: (line: string) => void;
  stop: () => void;
} {
  // A closed stderr pipe (`bench … 2>&1 | head`) drops the bars instead of ending the run.
  if (stream === undefined) guardNodeStderr();
  const multi = new cliProgress.MultiBar({
    clearOnComplete: false,
    // Neither the hidden cursor nor wrapping turned off would be given back on Ctrl-C.
    hideCursor: false,
    linewrap: true,
    noTTYOutput: !tty,
    notTTYSchedule: 10000,
    // No ETA before the first unit is done: cli-progress shows "0s" there, which on a grid of
    // runs that take days reads as "almost done".
    format: (
      options: Record<string, unknown>,
      params: { readonly value: number; readonly total: number },
      payload: Record<string, unknown>,
    ): string =>
      cliProgress.Format.Formatter(
        {
          ...options,
          // Nothing left to train (every run skipped as done): 0s, not cli-progress's ETA of a
          // zero total.
          format: `{name} |{bar}| {value}/{total} {unit} | ETA ${
            params.total === 0 ? "0s" : params.value === 0 ? "?" : "{eta_formatted}"
          } | {info}`,
        },
        params,
        payload,
      ),
    etaBuffer: 20,
    stream: stream ?? process.stderr,
  }, cliProgress.Presets.shades_classic);
  // A line above the bars: on a terminal through the bars (redrawn beneath it); without one
  // (a Slurm or CI log) at once, as the tool's other lines are: MultiBar holds a line until its
  // next redraw, every 10 s there, and none comes while a step runs, so claim and takeover lines
  // came late and out of order, or never, should the process be killed first.
  const out = stream ?? process.stderr;
  const say = (text: string) => {
    if (tty) multi.log(text);
    else out.write(text);
  };
  const grid = multi.create(total, 0, { name: "grid".padEnd(28), unit: "runs", info: "" });
  let run: ReturnType<typeof multi.create> | undefined;
  let finished = 0;
  let skipped = 0;
  const claimLine = claimLines();
  const onEvent = (e: GridEvent) => {
    const name = barName(e.spec);
    switch (e.kind) {
      case "skip":
        // A run done before (--resume, or by another process) leaves the bar: counted as done,
        // it would make the ETA, a rate of runs done, read seconds for the runs still to train.
        grid.setTotal(total - ++skipped);
        grid.update(finished, { info: `skipped ${name.trim()} (done)` });
        break;
      case "start":
        if (e.replaces !== undefined) {
          say(`rerunning ${e.spec.id}: ${replacing(e.replaces)}\n`);
        }
        if (run) multi.remove(run);
        run = multi.create(e.spec.train.steps, 0, { name, unit: "steps", info: "" });
        break;
      case "resumed":
        say(`${resumedLine(e)}\n`);
        run?.update(e.step, { info: "resumed" });
        break;
      case "progress":
        // A decoding report (one per decode batch) changes only the label: its step is the
        // evaluation's, already set, and a value update per batch would fill the ETA's buffer
        // with one step. The bars redraw on their own timer (10 s without a terminal), so a
        // report costs no output.
        if (e.progress.phase === "decode") run?.update({ info: progressInfo(e.progress) });
        else run?.update(e.progress.step, { info: progressInfo(e.progress) });
        break;
      case "done":
        run?.update(e.spec.train.steps, { info: "done" });
        grid.update(++finished, { info: `${e.file.split("/").pop()}` });
        break;
      case "error":
        say(`FAILED ${e.spec.id} (${name.trim()}): ${e.error.message}\n`);
        grid.update(++finished, { info: "failed" });
        break;
      case "interrupted":
        // Only the bar: the summary main() prints next names the reason and the checkpoint once.
        run?.update({ info: "stopped" });
        break;
      case "waiting":
        grid.update(finished, { info: "waiting for runs other processes train" });
        break;
    }
    const line = claimLine(e);
    if (line !== undefined) say(`${line}\n`);
  };
  const stop = () => {
    // On a terminal say() only queues a message, which the next redraw writes (without one it
    // writes at once). A message still queued when the grid ends (e.g. the FAILED line of the
    // last run) is written by one more redraw before the bars stop, not dropped.
    const queued = (multi as unknown as { loggingBuffer?: unknown[] }).loggingBuffer;
    if (queued === undefined || queued.length > 0) multi.update();
    multi.stop();
  };
  return { onEvent, log: (line: string) => say(`${line}\n`), stop };
}

/** How often a line repeats the runs another process trains while the grid waits for them. */
const WAITING_LINE_MS = 60_000;

/**
 * A writer of the lines of `runGrid`'s run-claim events: another process trains a run, a stale
 * claim is taken over, a run was done by another process, and while the grid waits for such
 * runs, a line naming them and their holders (the first at once, then at most once a minute).
 *
 * @returns the line of an event (without newline), or undefined for other events
 */
export function claimLines(): (e: GridEvent, now?: number) => string | undefined {
  let lastWaiting = -Infinity;
  return (e, now = Date.now()) => {
    switch (e.kind) {
      case "claimed":
        return `run ${e.spec.id} is being trained by ${holderName(e.holder ?? undefined)} (${
          runLockFile(runFileName(e.spec))
        }); this grid waits for it after its other runs`;
      case "takeover":
        return `run ${e.spec.id}: taking over the stale claim of ${
          holderName(e.previous)
        }: ${e.why}`;
      case "waiting": {
        if (now - lastWaiting < WAITING_LINE_MS) return undefined;
        lastWaiting = now;
        const runs = e.runs.map((r) => `${r.spec.id} (${holderName(r.holder ?? undefined)})`);
        return `waiting for ${e.runs.length} run(s) that other processes train: ${runs.join(", ")}`;
      }
      case "skip":
        return e.doneBy === undefined
          ? undefined
          : `run ${e.spec.id} done by ${holderName(e.doneBy ?? undefined)}`;
      default:
        return undefined;
    }
  };
}

/** `, N done by other processes` when another process trained some of the skipped runs. */
function elsewhere(summary: GridSummary): string {
  const n = summary.doneElsewhere?.length ?? 0;
  return n === 0 ? "" : ` (${n} done by other processes)`;
}

/**
 * The summary's words on the runs this process left to the process that took their claim over
 * while it was paused (`runner.ts` {@link GridSummary.leftToOthers}). Each is already counted
 * where it ended, so the words say where, never adding to the counts: done by that process
 * (among the skipped), done here after all (its claim went stale or was released, and this grid
 * trained it), failed here, or, in a stopped grid, stopped, or done here or not started (the
 * summary does not tell those two apart).
 *
 * @param summary the grid's summary
 * @returns `; 1 run left to the process that took its claim over while this one was paused
 *   (counted above: 1 done by it)`, or "" when there is none
 */
export function leftToOthersNote(summary: GridSummary): string {
  // A run taken over twice (trained here again after all, then taken over again) is one run.
  const ids = [...new Set((summary.leftToOthers ?? []).map((l) => l.spec.id))];
  if (ids.length === 0) return "";
  const byOthers = new Set((summary.doneElsewhere ?? []).map((d) => d.spec.id));
  const failed = new Set(summary.failed.map((f) => f.spec.id));
  const stopped = summary.interrupted?.spec?.id;
  const count = (pick: (id: string) => boolean) => ids.filter(pick).length;
  const doneByIt = count((id) => byOthers.has(id));
  const failedHere = count((id) => !byOthers.has(id) && failed.has(id));
  const stoppedHere = count((id) => !byOthers.has(id) && !failed.has(id) && id === stopped);
  const rest = ids.length - doneByIt - failedHere - stoppedHere;
  const ways = [
    [doneByIt, "done by it"],
    [rest, summary.interrupted === undefined ? "done here after all" : "done here or not started"],
    [failedHere, "failed here"],
    [stoppedHere, "stopped here"],
  ] as const;
  const n = ids.length;
  return `; ${n} run${n === 1 ? "" : "s"} left to the process that took ${
    n === 1 ? "its claim" : "their claims"
  } over while this one was paused (counted above: ${
    ways.filter(([k]) => k > 0).map(([k, what]) => `${k} ${what}`).join(", ")
  })`;
}

/** The signals `deno task bench` stops on with a checkpoint ({@link interruptHandler}). */
export type InterruptSignal = "SIGINT" | "SIGTERM";

/** The exit code after a signal: 128 + its number, as a shell reports a process it killed. */
export const SIGNAL_EXIT_CODES: Readonly<Record<InterruptSignal, number>> = {
  SIGINT: 130,
  SIGTERM: 143,
};

/** What {@link interruptHandler} acts through (the trainer's stop request; tests fake them). */
export interface InterruptDeps {
  /** `benchmarks/trainer.ts` `requestStop`: whether a run that writes checkpoints is training. */
  readonly requestStop: (reason: string) => boolean;
  /** `benchmarks/trainer.ts` `stopRequested`: the pending request, if any. */
  readonly stopRequested: () => string | undefined;
  /**
   * Whether the run whose training loop wrote checkpoints is still finishing: its loop has
   * ended (the last step's checkpoint is saved) but its result is not yet written. A first
   * signal then lets it finish and stops the grid after it (default: never).
   */
  readonly finishing?: () => boolean;
  /** Ends the process (default `Deno.exit`). */
  readonly exit: (code: number) => void;
  /** Where the lines go (stderr). */
  readonly error: (s: string) => void;
  /** The results folder, named in the lines. */
  readonly out: string;
}

/**
 * The SIGINT/SIGTERM handler of `deno task bench`. The first signal, while a run that writes
 * checkpoints trains, asks it to stop at its next step boundary with a checkpoint (the grid then
 * ends with the signal's exit code, {@link SIGNAL_EXIT_CODES}); while such a run finishes after
 * its last step's checkpoint ({@link InterruptDeps.finishing}), the same request lets it write
 * its result (a run that measures the attention mass stops before it: `benchmarks/run_one.ts`)
 * and stops the grid after it. A second signal, or the first when neither holds (nothing would
 * be saved by waiting), ends the process at once with that code. Each says in one line what was
 * kept and that `--resume` continues.
 *
 * @param deps the stop request, exit and output
 * @returns the handler, called with the signal's name
 */
export function interruptHandler(deps: InterruptDeps): (signal: InterruptSignal) => void {
  return (signal) => {
    const first = deps.stopRequested() === undefined;
    if (first && deps.requestStop(signal)) {
      deps.error(
        `\n${signal}: the run in progress stops after its current step (an evaluation in ` +
          `progress is abandoned before its next decode batch), saving a checkpoint there, and ` +
          `no other run starts; deno task bench --resume with the same flags continues from ` +
          `that step (redoing an abandoned evaluation first). ${
            again(signal)
          } again stops at once (the steps since ` +
          `the run's last checkpoint are then lost)`,
      );
      return;
    }
    if (first && deps.finishing?.() === true) {
      deps.error(
        `\n${signal}: the run in progress has trained its last step and saved its checkpoint; ` +
          `it finishes and writes its result (one that measures the attention mass stops ` +
          `before it, which --resume redoes), then the grid stops: no other run starts. ${
            again(signal)
          } again stops at once`,
      );
      return;
    }
    deps.error(
      `\n${signal}: stopped at once${first ? "" : " (a second signal)"}. The results of the ` +
        `finished runs are in ${deps.out}; deno task bench --resume with the same flags skips ` +
        `them and redoes the unfinished run from its last checkpoint (from step 0 when it has ` +
        `none: profiles with checkpointEvery 0 write none)`,
    );
    deps.exit(SIGNAL_EXIT_CODES[signal]);
  };
}

/** How the user sends a signal again: Ctrl-C for SIGINT, else its name. */
function again(signal: InterruptSignal): string {
  return signal === "SIGINT" ? "Ctrl-C" : signal;
}

/** Adds and removes signal listeners (default `Deno.addSignalListener` and its pair). */
export interface SignalListeners {
  /** Adds one; throws where the platform cannot listen to that signal (Windows: SIGTERM). */
  readonly add: (signal: Deno.Signal, listener: () => void) => void;
  /** Removes one added by `add`. */
  readonly remove: (signal: Deno.Signal, listener: () => void) => void;
}

/** The listening windows of {@link interruptWhileCheckpointing}. */
export interface InterruptWindows {
  /**
   * Called between runs (`runGrid`'s `shouldStop`: before each run and after the last): closes a
   * window whose training loop has ended, i.e. removes the listeners, so that the signals get
   * their default action back. A window whose loop still runs stays open.
   */
  readonly betweenRuns: () => void;
  /** Stops watching and removes the listeners (every path out of the grid). */
  readonly close: () => void;
}

/**
 * {@link interruptHandler} as SIGINT and SIGTERM listeners, installed when a training loop that
 * writes checkpoints starts (`benchmarks/trainer.ts` `watchCheckpointingLoops`) and kept until
 * the run it belongs to has returned and its result is written: runGrid's next check between
 * runs ({@link InterruptWindows.betweenRuns}), or the end of the grid. A signal that reaches the
 * process in the run's last instants (the final save, the attention mass, the result write) is
 * dispatched to JavaScript only when the event loop next turns, milliseconds later under load; a
 * listener removed at the loop's end would lose it (Deno drops a pending signal whose last
 * listener goes), and one that came just after would stop the process by the default action
 * before the result is written. Kept to the run's end, the listener turns it into a stop request:
 * the run writes its result and the grid stops after it ({@link InterruptDeps.finishing}).
 * (The removal itself still drops a signal that reached the process in the instants before it
 * and is not yet dispatched; that edge now lies after the result is written and its checkpoints
 * removed, whose file operations let the event loop turn, so such a signal is lost only when it
 * comes in the last milliseconds of that cleanup, and no work is lost with it.)
 * At other times (downloads, pretraining, runs without checkpoints, between runs) the signals
 * keep their default action, which stops the process at once even in synchronous work, where a
 * listener would wait for it to yield and save nothing by waiting. SIGTERM is listened to only
 * where the platform allows it (not Windows). No work is added to a run: the listeners are added
 * and removed once each per run that writes checkpoints.
 *
 * @param deps the stop request, exit and output (`finishing` is set here)
 * @param signals adds and removes listeners (tests fake them)
 * @param watch `watchCheckpointingLoops` (tests fake it)
 * @returns the windows' controls
 */
export function interruptWhileCheckpointing(
  deps: Omit<InterruptDeps, "finishing">,
  signals: SignalListeners = {
    add: (s, l) => Deno.addSignalListener(s, l),
    remove: (s, l) => Deno.removeSignalListener(s, l),
  },
  watch: (observer: (running: boolean) => void) => () => void = watchCheckpointingLoops,
): InterruptWindows {
  let training = false;
  let installed: [Deno.Signal, () => void][] = [];
  const handle = interruptHandler({
    ...deps,
    finishing: () => !training && installed.length > 0,
  });
  const remove = () => {
    const was = installed;
    installed = [];
    for (const [signal, listener] of was) signals.remove(signal, listener);
  };
  const unwatch = watch((running) => {
    training = running;
    // The loop's end leaves the listeners: the run has yet to write its result.
    if (!running || installed.length > 0) return;
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      const listener = () => handle(signal);
      try {
        signals.add(signal, listener);
        installed.push([signal, listener]);
      } catch {
        // Not supported here (Windows: SIGTERM): its default action stays.
      }
    }
  });
  return {
    betweenRuns: () => {
      if (!training) remove();
    },
    close: () => {
      unwatch();
      remove();
    },
  };
}

/** Options of {@link main} (tests inject output sinks and a fake `runOne`). */
export interface MainOptions {
  readonly log?: (s: string) => void;
  readonly error?: (s: string) => void;
  readonly runOne?: RunOneFn;
  readonly progress?: boolean;
  /**
   * Why a new file cannot be created in an existing folder, or undefined (`model/fs.ts`
   * `checkOutputFolder`'s `cannotWrite`; default: a probe file). Tests inject a read-only disk.
   */
  readonly cannotWrite?: (dir: string) => string | undefined;
  /**
   * The downloader (tests inject a fake; default `tasks/download.ts` `download`): its results,
   * or a `DownloadError` carrying the failures and the other tasks' results.
   */
  readonly download?: (opts: DownloadOptions) => Promise<readonly TaskResult[]>;
  /**
   * Resolves a backend choice to the backend it would run and whether that is a GPU (default:
   * `selectBackend` and {@link isGpuBackend}; tests inject a fake GPU).
   */
  readonly probe?: (choice: BackendChoice) => Promise<BackendProbe>;
  /** Runs `nvidia-smi` for the GPU's memory (default `Deno.Command`; tests inject a fake). */
  readonly runCommand?: CommandRunner;
  /**
   * The machine's memory in bytes, for runs on the host's memory (default
   * `Deno.systemMemoryInfo().total`; tests inject a small one).
   */
  readonly hostMemory?: number;
  /**
   * The bytes free on the file system of a folder, or undefined (default
   * `benchmarks/disk_space.ts` `freeDiskBytes`; tests inject a small disk).
   */
  readonly freeDiskBytes?: (dir: string) => number | undefined;
  /**
   * Ends the process at once on a second SIGINT/SIGTERM, or a first one with nothing to save
   * ({@link interruptHandler}; default `Deno.exit`).
   */
  readonly exit?: (code: number) => void;
}

/** Aborts a request whose response headers take longer than this (a body may take longer). */
const CONNECT_TIMEOUT_MS = 30_000;

/** `fetch` that gives up when no response has started within {@link CONNECT_TIMEOUT_MS}. */
const connectTimeoutFetch: typeof fetch = async (input, init) => {
  const ctrl = new AbortController();
  const timer = setTimeout(
    () => ctrl.abort(new Error(`no response within ${CONNECT_TIMEOUT_MS / 1000} s`)),
    CONNECT_TIMEOUT_MS,
  );
  const outer = init?.signal;
  const pass = () => ctrl.abort(outer?.reason);
  if (outer?.aborted) pass();
  else outer?.addEventListener("abort", pass, { once: true });
  try {
    return await fetch(input, { ...init, signal: ctrl.signal });
  } finally {
    clearTimeout(timer);
    outer?.removeEventListener("abort", pass);
  }
};

/** The flags of `deno task bench`, as `parseArgs` takes them. */
const OPTIONS = {
  profile: { type: "string" },
  "data-dir": { type: "string" },
  "no-download": { type: "boolean", default: false },
  out: { type: "string", default: "results/runs" },
  methods: { type: "string", multiple: true },
  shard: { type: "string" },
  "dry-run": { type: "boolean", default: false },
  compare: { type: "string" },
  backend: { type: "string" },
  resume: { type: "boolean", default: false },
  restart: { type: "boolean", default: false },
  tables: { type: "string" },
  "no-tables": { type: "boolean", default: false },
  "device-memory": { type: "string" },
  "checkpoint-minutes": { type: "string" },
  "assume-tflops": { type: "string" },
  help: { type: "boolean", short: "h", default: false },
} as const;

/** What each flag that takes a value expects, for the errors (as {@link USAGE} names it). */
const VALUE_OF = {
  profile: "a built-in profile name or a profile JSON file",
  "data-dir": "a folder",
  out: "a folder",
  methods: "method labels, comma-separated",
  shard: "i/n, e.g. 0/4",
  compare: "a baseline folder or JSON file",
  backend: BACKEND_CHOICES.join("|"),
  tables: "a folder",
  "device-memory": "the GPU's memory in GB of 10⁹ bytes, e.g. 85.5 (an 80 GB H100)",
  "checkpoint-minutes": "minutes, e.g. 30 (0: off)",
  "assume-tflops": "a rate in TFLOP/s, e.g. 8",
} as const;

/**
 * Parses `--assume-tflops`: the sustained rate, in TFLOP/s above 0, that a dry run's time
 * estimates assume in place of {@link ASSUMED_FLOPS_PER_SECOND}'s guess for the backend.
 *
 * @param text the flag's value
 * @returns TFLOP/s
 * @throws UsageError (one line) naming the flag and the value
 */
export function parseAssumedTflops(text: string): number {
  const t = decimalNumber(text);
  if (!(Number.isFinite(t) && t > 0)) {
    throw flagError(
      "deno task bench",
      `--assume-tflops must be a rate in TFLOP/s above 0 (e.g. 8), got ${JSON.stringify(text)}`,
    );
  }
  return t;
}

/**
 * Parses `--checkpoint-minutes`: a number of minutes ≥ 0 (0 turns the wall-clock checkpoints
 * off), as `benchmarks/trainer.ts` `TrainOptions.checkpointMinutes` takes it.
 *
 * @param text the flag's value
 * @returns the minutes
 * @throws UsageError (one line) naming the flag and the value
 */
export function parseCheckpointMinutes(text: string): number {
  const minutes = decimalNumber(text);
  if (!(Number.isFinite(minutes) && minutes >= 0)) {
    throw flagError(
      "deno task bench",
      `--checkpoint-minutes must be a number of minutes ≥ 0 (0: off; e.g. 30), got ` +
        JSON.stringify(text),
    );
  }
  return minutes;
}

/** The parsed flags of `deno task bench`. */
export type BenchArgs = FlagValues<typeof OPTIONS>;

/**
 * Parses `deno task bench`'s arguments with `model/usage.ts` {@link parseFlags}: every mistake is
 * one line naming the flag, the value and what it takes, ending with a pointer to `--help` (an
 * unknown flag with the flag it probably meant, an argument that is no flag, a flag without its
 * value, a value given to a flag that takes none, a flag that takes one value given two different
 * ones). `--tasks`, which `deno task download` takes, gets its own hint: the profile chooses the
 * tasks.
 *
 * @param args the command-line arguments
 * @returns the flags, with their defaults
 * @throws UsageError naming the flag and the value
 */
export function parseBenchArgs(args: string[]): BenchArgs {
  return parseFlags(args, {
    tool: "deno task bench",
    options: OPTIONS,
    takes: VALUE_OF,
    paths: {
      profile: (v) => !isProfileName(v),
      "data-dir": true,
      out: true,
      compare: true,
      tables: true,
    },
    unknownFlag: (name) =>
      name === "tasks"
        ? "the profile chooses the tasks (a profile JSON file through --profile PATH; " +
          "deno task download takes --tasks)"
        : undefined,
  });
}

/**
 * Downloads the tasks in `ids` into the default cache, printing one line per task written and a
 * short reason when some could not be fetched (offline: the runs go on with the tasks present
 * where the profile allows it, {@link GOING_ON}).
 *
 * @param ids download ids of the missing tasks
 * @param dl the downloader
 * @param error where the lines go
 * @param endpoints the endpoints that are not the official hosts, as `describeEndpoints` of
 *   `tasks/download.ts` gives them (empty: all official), for the first line
 * @returns whether anything was written (a task whose status is not `cached`), and whether some
 *   task could not be downloaded (a warning was printed)
 */
async function downloadMissing(
  ids: readonly string[],
  dl: (opts: DownloadOptions) => Promise<readonly TaskResult[]>,
  error: (s: string) => void,
  endpoints: string,
): Promise<{ written: boolean; failed: boolean }> {
  let cacheDir: string;
  try {
    cacheDir = defaultCacheDir();
  } catch (e) {
    error(
      `warning: cannot download ${ids.join(", ")}: ${
        (e as Error).message.replace(
          " or pass --cache-dir",
          "",
        )
      }; ${GOING_ON}`,
    );
    return { written: false, failed: true };
  }
  error(
    `Downloading ${ids.length} task(s) the profile needs into ${cacheDir}: ${ids.join(", ")}` +
      (endpoints === "" ? "" : ` (endpoints: ${endpoints})`),
  );
  let results: readonly TaskResult[] = [];
  let failed: string | undefined;
  try {
    results = await dl({
      tasks: ids,
      cacheDir,
      retries: 1,
      fetch: connectTimeoutFetch,
      // Its retries, waits for another process's download and per-task lines, marked as its.
      log: (line) => error(`download: ${line}`),
    });
  } catch (e) {
    if (e instanceof DownloadError) {
      results = e.results;
      // After a local file error (a full disk) the remaining tasks are not tried (`notTried`):
      // counted apart in the headline, and the first failure named is one that was tried.
      const first = e.failures.find((f) => !f.notTried) ?? e.failures[0];
      failed = `${e.headline}${
        first === undefined
          ? ""
          : ` (first: ${clip(`${first.task}: ${first.reason.split("\n")[0]}`, 300)})`
      }`;
    } else {
      // Not a per-task failure (an unreadable manifest, say): its first line.
      failed = (e instanceof Error ? e.message : String(e)).split("\n")[0]!.trim();
    }
  }
  const written = results.filter((r) => r.status !== "cached");
  for (const r of written) {
    error(`  ${r.task}: ${r.files.length} file(s) written and verified (${r.status})`);
  }
  if (failed !== undefined) {
    error(
      `warning: ${failed}; ${GOING_ON}; --no-download skips this step, --data-dir names an ` +
        `offline mirror`,
    );
  }
  return { written: written.length > 0, failed: failed !== undefined };
}

/** `s` cut to at most `max` characters, ending in `…` where it was cut. */
function clip(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`;
}

/**
 * The notes `--resume` prints for work folders (checkpoints of an unfinished run) in `out` that
 * belong to no run of `specs` but have one's profile, model, backbone, benchmark, method, task and
 * seed: the same run started with other settings (a run id changes with `--backend` and the
 * training settings), which this resume leaves as it is and trains afresh.
 *
 * @param out the results folder
 * @param specs the runs about to train or be skipped
 * @returns one line per such folder (none when `out` does not exist)
 */
export function otherRunsCheckpoints(out: string, specs: readonly RunSpec[]): string[] {
  let names: string[];
  try {
    names = [...Deno.readDirSync(out)].filter((e) => e.isDirectory).map((e) => e.name);
  } catch {
    return [];
  }
  // A run's work folder is its result file's name without `.json` (runner.ts `runWorkDir`).
  const stems = specs.map((s) => runWorkDir(runFileName(s)));
  const own = new Set(stems);
  const notes: string[] = [];
  for (const [i, spec] of specs.entries()) {
    const stem = stems[i]!;
    const prefix = stem.slice(0, stem.length - spec.id.length);
    for (const name of names) {
      if (own.has(name) || !name.startsWith(prefix) || name.slice(prefix.length).includes("--")) {
        continue;
      }
      notes.push(
        `--resume: ${join(out, name)} holds checkpoints of the same run as ${stem} under another ` +
          `run id (other settings: a run id changes with --backend and the training settings); ` +
          "it is left as it is and this run trains from its own checkpoints or step 0 (resume " +
          "that one with the flags that started it)",
      );
    }
  }
  return notes;
}

/**
 * What bench does after a failed download, as `runner.ts` `expandGrid` decides: a missing task is
 * left out only where the profile has `skipMissingTasks` and lists no tasks of that benchmark;
 * any other (a listed task, an `extraTrainTasks` one) stops bench with the missing-task error.
 */
const GOING_ON = "going on with the tasks present where the profile allows it (skipMissingTasks, " +
  "for a benchmark whose tasks it does not list; else bench stops, naming them)";

/**
 * The roots behind the default data folder (`tasks/data.ts` `defaultDataRoots`: the download
 * cache, absent when none can be named, and the offline mirror), for a missing-task message, with
 * whether the mirror exists and whether bench's download failed.
 */
function defaultDataRoots(downloadFailed: boolean): DefaultDataRoots {
  const { cache, mirror } = dataRoots();
  let mirrorExists = false;
  try {
    mirrorExists = statSync(mirror).isDirectory();
  } catch {
    mirrorExists = false;
  }
  return {
    ...(cache === undefined ? {} : { cache }),
    mirror,
    mirrorExists,
    ...(downloadFailed ? { downloadFailed } : {}),
  };
}

/**
 * The mirrors bench's download of missing tasks would use (`tasks/download.ts`
 * `resolveEndpoints`: `HYPERPROMPT_DATA_ENDPOINTS`, `HF_ENDPOINT`), as `describeEndpoints` names
 * those that are not the official hosts (empty when all are).
 *
 * @returns the endpoints that are not the official hosts, `key=url (variable)` joined by `, `
 * @throws UsageError naming the variable, the key and the allowed keys, and how to do without
 *   the download
 */
function benchEndpoints(): string {
  try {
    return describeEndpoints(resolveEndpoints());
  } catch (e) {
    throw new UsageError(
      `${(e as Error).message}; deno task bench reads it to download the tasks the profile ` +
        `needs and the data lacks (--no-download or --data-dir: no download)`,
      { cause: e },
    );
  }
}

/**
 * The CLI entry: parse arguments, expand and shard the grid, run it, optionally gate.
 *
 * @param args command-line arguments
 * @param opts output sinks and injectable `runOne`
 * @returns the process exit code
 */
export async function main(args: string[], opts: MainOptions = {}): Promise<number> {
  const log = opts.log ?? ((s: string) => console.log(s));
  const error = opts.error ?? ((s: string) => console.error(s));
  let values;
  // --help or -h anywhere prints the usage, as runCli (model/usage.ts) does for the other tools,
  // even after a mistyped flag.
  const help = args.includes("--help") || args.includes("-h");
  try {
    values = help ? undefined : parseBenchArgs(args);
  } catch (e) {
    error((e as Error).message);
    return exitCodeOf(e);
  }
  if (values === undefined) {
    log(wrapHelp(USAGE));
    log("\nProfiles:");
    const names = listProfiles();
    // One column for the descriptions, however long the longest name (ablation-large).
    const width = Math.max(...names.map((n) => n.length));
    for (const name of names) {
      try {
        const p = JSON.parse(Deno.readTextFileSync(profilePath(name))) as { description?: string };
        // Wrapped under its column: descriptions are a sentence or three.
        log(wrapHelp(`  ${name.padEnd(width)}  ${p.description ?? ""}`));
      } catch {
        log(`  ${name}`);
      }
    }
    return 0;
  }
  try {
    const backendArg = values.backend;
    if (backendArg !== undefined && !isBackendName(backendArg)) {
      throw new UsageError(
        `Unknown --backend "${backendArg}"; expected one of ${BACKEND_CHOICES.join(", ")}${
          backendHint(backendArg)
        }`,
      );
    }
    // The variable stands in for --backend wherever a backend is "auto" (the default profile's
    // choice, a profile's backend, the pretraining's): a bad value must stop here, not fail
    // every run of the grid one after the other.
    backendFromEnv();
    // Every run's selectBackend reads them too: a bad value stops here, before any run.
    const backprop = backpropFromEnv();
    noBlasFromEnv();
    const submitBatch = submitBatchFromEnv();
    webgpuKernelsFromEnv(); // as HYPERPROMPT_WEBGPU_SUBMIT_BATCH: read by every webgpu run
    // runGrid's claims read it before the first run: a bad value stops here, exit 2.
    const runLockStale = usageChecked(() => runLockStaleMs());
    const memoryOverride = deviceMemoryOverride(values["device-memory"]);
    const minutesArg = values["checkpoint-minutes"];
    const minutes = minutesArg === undefined
      ? DEFAULT_CHECKPOINT_MINUTES
      : parseCheckpointMinutes(minutesArg);
    const tflops = values["assume-tflops"];
    const rate = tflops === undefined ? undefined : parseAssumedTflops(tflops) * 1e12;
    if (rate !== undefined && !values["dry-run"]) {
      error("note: --assume-tflops changes only a dry run's time estimates; this is no dry run");
    }
    const probeWith = opts.probe ?? probeBackend;
    const shardArg = values.shard;
    const shard = shardArg === undefined ? undefined : usageChecked(() => parseShard(shardArg));
    if (values.resume && values.restart) {
      throw new UsageError(
        "--resume with --restart: the one continues unfinished runs from their checkpoints, " +
          "the other deletes those and trains them from step 0; give one of them",
      );
    }
    if (values.tables !== undefined && values["no-tables"]) {
      throw new UsageError(
        `--tables ${values.tables} with --no-tables: the one asks for the tables there, the ` +
          `other for none; give one of them`,
      );
    }
    if (shard !== undefined && values.tables !== undefined) {
      // Ignoring it would leave the user waiting for tables that never come.
      throw new UsageError(
        `--tables ${values.tables} with --shard ${shardArg}: a shard writes no tables (they need ` +
          `every shard's runs); once all have finished: deno task tables --runs ${values.out} ` +
          `--out ${values.tables}`,
      );
    }
    let probe: BackendProbe | undefined;
    // An empty --profile (an unset variable) is refused by parseFlags, as every empty value.
    let profileName = values.profile;
    if (profileName === undefined) {
      // As every run's backend is resolved: one that cannot start is refused with the runs
      // (a dry run warns), not here with the probe's error.
      probe = await resolveBackend((backendArg as BackendChoice | undefined) ?? "auto", probeWith);
      profileName = probe.gpu ? "paper-base" : "smoke";
      error(
        `No --profile: using "${profileName}" (backend ${probe.name}${
          probe.unavailable !== undefined
            ? ", which cannot start here"
            : probe.gpu
            ? ", a GPU"
            : ", no GPU"
        })`,
      );
    }
    const profile = await loadProfile(profileName).catch(asUsageError);
    const shadow = builtInNameNote(profilePath(profileName), profile.name);
    if (shadow !== undefined) error(`note: ${shadow}`);
    const methods = values.methods === undefined
      ? undefined
      : selectMethods(values.methods, profile.methods.map((m) => m.label), profile.name);
    let dataDir = values["data-dir"] ?? defaultDataDir();
    // What named the data folder, if anything did (else the default: cache and mirror).
    const dataDirNamedBy = values["data-dir"] !== undefined
      ? "--data-dir"
      : (Deno.env.get("HYPERPROMPT_DATA") ?? "") !== ""
      ? "HYPERPROMPT_DATA"
      : undefined;
    const chosenData = dataDirNamedBy !== undefined;
    // A named folder must exist; the default one may not yet (no cache, no mirror): the
    // download below creates it.
    if (chosenData) usageChecked(() => checkDataDir(dataDir, dataDirNamedBy));
    // The download of missing tasks below (on unless a data folder is named or --no-download)
    // reads HYPERPROMPT_DATA_ENDPOINTS and HF_ENDPOINT (tasks/download.ts resolveEndpoints): a
    // bad value stops here (2), before the grid, not as a warning after which the runs go on
    // without the tasks. Without the download they are not read, and not checked.
    const downloads = !chosenData && !values["no-download"];
    const endpoints = downloads ? benchEndpoints() : "";
    // Output folders and the baseline are checked before anything runs: a mistyped path must
    // not surface only after the whole grid has trained.
    // Written to: a read-only disk is refused here (a dry run writes nothing there).
    const written = {
      writable: !values["dry-run"],
      ...(opts.cannotWrite === undefined ? {} : { cannotWrite: opts.cannotWrite }),
    };
    checkOutputFolder("--out", values.out, written);
    const tablesDir = values.shard !== undefined || values["no-tables"]
      ? undefined
      : values.tables ?? join(values.out, "tables");
    if (tablesDir !== undefined) checkOutputFolder("--tables", tablesDir, written);
    // The cache root the runs keep tokenizers, backbones and data under, when named: a file or a
    // link to nothing is refused here, not as each run's failure. A read-only one that already
    // holds everything is used as it is (not checked for writing); one that does not exist yet
    // must be creatable (h388: every run failed on its lock file's folder instead).
    const cacheRoot = Deno.env.get("HYPERPROMPT_CACHE");
    if (cacheRoot) {
      checkOutputFolder("HYPERPROMPT_CACHE", cacheRoot, {
        ...written,
        writable: !values["dry-run"] && !existsSync(cacheRoot),
      });
    }
    let baseline: RunResult[] | undefined;
    if (values.compare !== undefined) {
      try {
        baseline = await loadResults(values.compare);
        // One run twice (a stale result beside the new one): the gate would depend on which
        // file sorts last. Refused here, not after the whole grid has trained.
        rejectDuplicates(
          baseline,
          runKey,
          "baseline run key",
          "remove the stale one (the run id changes with the configuration)",
        );
      } catch (e) {
        throw new UsageError(`--compare: ${(e as Error).message}`, { cause: e });
      }
      if (baseline.length === 0) {
        throw new UsageError(
          `--compare ${values.compare}: no run results (*.json) there; a gate with no baseline ` +
            `would pass without comparing anything`,
        );
      }
    }
    // The profile's own errors (an unknown task, two identical grid cells) stop it here, before a
    // download: the grid as if every task's files were present.
    const catalog = await defaultTaskCatalog();
    usageChecked(() =>
      expandGrid(profile, {
        dataDir,
        catalog: {
          benchmarkTasks: (b) => catalog.benchmarkTasks(b),
          isAvailable: () => true,
          missingTestFiles: () => [],
        },
      })
    );
    // Lists no run acts on (tasks of a benchmark not in the grid): said once, never refused.
    for (const n of profileNotes(profile)) error(`note: ${n}`);
    let downloadFailed = false;
    // A dry run's downloads (source ids), which it plans as done: the grid a run would train once
    // they are in.
    let wouldDownload = new Set<string>();
    if (downloads) {
      const missing = missingProfileTasks(profile, {
        dataDir,
        catalog: await defaultTaskCatalog(),
      });
      if (missing.length > 0 && values["dry-run"]) {
        // A HYPERPROMPT_SHARED that names no mirror is why the tasks would download: said here,
        // not only after a download failed (h388).
        const roots = defaultDataRoots(false);
        const noMirror = Deno.env.get("HYPERPROMPT_SHARED") && !roots.mirrorExists
          ? ` (${noMirrorNote(roots.mirror)})`
          : "";
        error(
          `A run would first download: ${missing.join(", ")}` +
            (endpoints === "" ? "" : ` (endpoints: ${endpoints})`) +
            `${noMirror}; the plan below counts them as downloaded`,
        );
        wouldDownload = new Set(missing);
      } else if (missing.length > 0) {
        const got = await downloadMissing(missing, opts.download ?? download, error, endpoints);
        downloadFailed = got.failed;
        if (got.written) dataDir = defaultDataDir(); // the cache now lists the new files
      }
    }
    if (!existsSync(dataDir)) {
      throw new Error(
        `no data folder: ${dataDir} does not exist (no download cache and ${
          noMirrorNote(defaultDataRoots(false).mirror)
        })${
          downloadFailed
            ? "; bench could not download the tasks (the warning above says why): once that " +
              "is fixed, rerun, or pass --data-dir"
            : "; run deno task download --tasks all, or pass --data-dir"
        }`,
      );
    }
    const backend = (backendArg as BackendChoice | undefined) ?? profile.backend;
    const taskCatalog = await defaultTaskCatalog();
    const expand = () =>
      expandGrid(profile, {
        dataDir,
        ...(dataDirNamedBy === undefined
          ? { defaultData: defaultDataRoots(downloadFailed) }
          : { dataDirNamedBy }),
        catalog: wouldDownload.size === 0 ? taskCatalog : {
          benchmarkTasks: (b) => taskCatalog.benchmarkTasks(b),
          isAvailable: (b, t, d) =>
            wouldDownload.has(sourceId(t)) || taskCatalog.isAvailable(b, t, d),
          missingTestFiles: (t, d) => wouldDownload.has(sourceId(t)) ? [] : missingTestFiles(t, d),
        },
        ...(backendArg === undefined ? {} : { backend: backendArg as BackendChoice }),
        ...(values["dry-run"] ? { onMissing: (m: string) => error(`warning: ${m}`) } : {}),
        // Tasks skipMissingTasks leaves out: said (the tables' averages are partial), not refused.
        onNote: (m: string) => error(`note: ${m}`),
      });
    // Task files missing from a folder named by --data-dir or HYPERPROMPT_DATA: that folder
    // cannot be used (2); from the default one, the download did not bring them (1).
    const grid = chosenData ? usageChecked(expand) : expand();
    // Models and backbones named as the tables name them, among the whole grid (so every shard
    // names a folder alike): the dry-run plan and the preflight's refusals.
    const labels = runLabels(grid);
    // The gate matches runs by run key (compare.ts runKey), which names an `hf` model or backbone
    // by its one spelling (spec.ts normalHfRef, refKey): the profile holds its references in that
    // spelling and refuses one twice, so no two runs of the grid share a key.
    // The shard is cut from the whole grid, then --methods keeps its runs of those methods: a
    // run's shard is the same with any --methods, so shards run with different selections never
    // overlap (sharding the selection instead would move runs between shards).
    const sharded = shard === undefined ? grid : shardGrid(grid, shard);
    const specs = methods === undefined
      ? sharded
      : sharded.filter((s) => methods.has(s.method.label));
    // The gate's baseline: with --methods, its runs of those methods only (the others were not
    // asked for; a selected method's run missing still fails the gate, as in a whole grid).
    const gateBaseline = baseline === undefined || methods === undefined
      ? baseline
      : baseline.filter((r) => methods.has(r.spec.method.label));
    const what = [
      ...(shard === undefined ? [] : [`shard ${shard.index}/${shard.count}`]),
      ...(methods === undefined ? [] : [`methods ${[...methods].join(", ")}`]),
    ].join(", ");
    if (baseline !== undefined && gateBaseline !== undefined && specs.length > 0) {
      // A baseline of another profile (or of other models or methods) matches no run: the gate
      // would fail every run as missing, or compare nothing in a shard, once the grid has trained.
      const keys = new Set(gateBaseline.map(runKey));
      if (!specs.some((spec) => keys.has(runKey({ spec })))) {
        const profiles = [...new Set(baseline.map((r) => r.spec.profile))].sort();
        throw new UsageError(
          `--compare ${values.compare}: none of its ${baseline.length} runs (profile ` +
            `${profiles.map((p) => `"${p}"`).join(", ")}) is a run of this ${
              what === "" ? "grid" : methods === undefined ? "shard" : "selection"
            } (profile "${profile.name}"${what === "" ? "" : `, ${what}`}: ${specs.length} ${
              specs.length === 1 ? "run" : "runs"
            }); the gate would compare nothing`,
        );
      }
    }
    if (baseline !== undefined) {
      // Baseline results the gate would fail as missing once the whole grid has trained, refused
      // now: what `kind` of runs they are, each `named`, then the advice (`it` / `them`).
      const refuse = (
        rs: readonly RunResult[],
        kind: string,
        named: (r: RunResult) => string,
        advice: (it: string) => string,
      ) => {
        if (rs.length === 0) return;
        const one = rs.length === 1;
        const list = rs.slice(0, 3).map((r) => `${resultSource(r) ?? r.spec.id} (${named(r)})`);
        if (rs.length > 3) list.push(`${rs.length - 3} more`);
        throw new UsageError(
          `--compare ${values.compare}: ${rs.length} of its ${baseline.length} runs ${
            one ? "is" : "are"
          } ${kind}: ${list.join(", ")}; ${advice(one ? "it" : "them")} (the gate would fail ${
            one ? "it" : "them"
          } as missing after the whole grid has trained)`,
        );
      };
      // Results of another profile beside the grid's: none is a run of this grid (a shard's gate
      // would skip them: refused too, as the same folder is for the whole grid).
      refuse(
        baseline.filter((r) => r.spec.profile !== profile.name),
        `of another profile than this grid's "${profile.name}"`,
        (r) => `profile "${r.spec.profile}"`,
        (it) => `move ${it} out of the baseline`,
      );
      // Results of this profile that are no run of the whole grid (a seed, model, backbone,
      // benchmark or method the profile no longer has). Matched against the whole grid, so a
      // shard refuses what the whole grid would (runs of other shards are in it); with --methods,
      // the baseline's runs of the other methods are not gated (gateBaseline), so not refused.
      if (gateBaseline !== undefined) {
        const keys = new Set(grid.map((spec) => runKey({ spec })));
        refuse(
          gateBaseline.filter((r) => !keys.has(runKey(r))),
          `no run of this grid (profile "${profile.name}": ${runsCount(grid.length)})`,
          (r) => runKey(r),
          (it) => `regenerate the baseline, or move ${it} out of it`,
        );
      }
    }
    if (gateBaseline !== undefined) {
      // Runs whose configuration differs from their baseline run's (same run key, another run
      // id): the gate fails them on `spec.id` once they have trained. Said now, not refused: their
      // scores and counts are still compared, which is what an intended change wants to see.
      const byKey = new Map(gateBaseline.map((r) => [runKey(r), r]));
      const changed = specs.flatMap((spec) => {
        const b = byKey.get(runKey({ spec }));
        return b === undefined || b.spec.id === spec.id ? [] : [{ b, spec }];
      });
      if (changed.length > 0) {
        const list = changed.slice(0, 3).map(({ b, spec }) => {
          const d = specDifferences(b.spec, spec)[0];
          return `${runKey(b)} (${d === undefined ? "run id" : formatSpecDifference(d)})`;
        });
        if (changed.length > 3) list.push(`${changed.length - 3} more`);
        const [runs, their, them] = changed.length === 1
          ? ["run's", "its", "it"]
          : ["runs'", "their", "them"];
        error(
          `--compare ${values.compare}: ${changed.length} ${runs} configuration differs from ` +
            `${their} baseline run's: ${list.join(", ")}; the gate will fail ${them} on spec.id ` +
            `(exit 3) after training. If the change is intended, ${REGENERATE_BASELINE}`,
        );
      }
      // Runs the baseline lacks train but are not gated: said now, not only among the notes
      // after the whole grid (a baseline folder with files missing would pass, gating fewer).
      const ungated = specs.filter((spec) => !byKey.has(runKey({ spec })));
      if (ungated.length > 0) {
        error(
          `note: --compare ${values.compare}: ${
            withRuns(
              `${ungated.length} of the ${specs.length} runs ${
                ungated.length === 1 ? "has" : "have"
              } no baseline run, so the gate will not gate ${ungated.length === 1 ? "it" : "them"}`,
              ungated.map((spec) => runKey({ spec })),
            )
          }`,
        );
      }
    }
    const scope = what === ""
      ? runsCount(grid.length)
      : `${what}: ${specs.length} of ${runsCount(grid.length)}`;
    error(`Profile "${profile.name}" (${scope}); data ${dataDir}; out ${values.out}`);
    for (const n of missingDiagnosticTests(specs, dataDir)) error(`note: ${n}`);
    // Checkpoints of an earlier attempt that did not finish (stopped, preempted): a run without
    // --resume would delete them and train from step 0, hours of work lost to a missing flag.
    if (!values.resume && !values.restart) {
      const unfinished = await unfinishedCheckpoints(values.out, specs, runLockStale);
      if (unfinished.length > 0) {
        const what = withRuns(
          `${unfinished.length} run(s) of the grid have checkpoints in ${values.out} of an ` +
            `earlier attempt that did not finish`,
          unfinished,
        ) + ": --resume continues them from there (and skips the finished runs); --restart " +
          "trains them from step 0, deleting their checkpoints";
        if (values["dry-run"]) error(`warning: a run would be refused: ${what}`);
        else throw new UsageError(`Refused before training: ${what}`);
      }
    }
    // A checkpoint folder whose config.json, weights or tokenizer cannot be used fails each of
    // its runs at its start: refused now (a dry run lists the grid and says so).
    const badConfigs = unusableCheckpoints(specs);
    const configRefusal = badConfigs.length === 0
      ? undefined
      : `${badConfigs.length} checkpoint folder problem(s) (config.json, weights, tokenizer):\n  ${
        badConfigs.join("\n  ")
      }`;
    if (configRefusal !== undefined && !values["dry-run"]) {
      throw new UsageError(`Refused before training: ${configRefusal}`);
    }
    // The runs that will train: with --resume, not those whose result runGrid will keep (a result
    // it retrains, malformed, edited, its checkpoint or data changed, is not kept here either; a
    // checkpoint hashed here is not hashed again: model/checkpoint.ts fileDigest). A dry run
    // plans the same runs (their backend, disk).
    let toRun: RunSpec[] = [...specs];
    if (values.resume === true) {
      toRun = [];
      for (const s of specs) {
        if (await readFinished(values.out, s, dataDir) === undefined) toRun.push(s);
      }
    }
    // The tables after the runs read every result in --out: what would fail them is said now,
    // not once the whole grid has trained (a dry run warns).
    if (tablesDir !== undefined) {
      const why = await tablesPreflight(values.out, specs);
      if (why !== undefined) {
        const line = `the tables, written after the runs from every result in --out ` +
          `${values.out}, would fail: ${why} (--no-tables skips them)`;
        if (values["dry-run"]) error(`warning: ${line}`);
        else throw new UsageError(`Refused before training: ${line}`);
      }
    }
    if (!values["dry-run"]) {
      // A malformed task file fails every run that reads it at its start: refused now. With
      // --resume, the runs whose result runGrid will keep are skipped, so their files are not
      // read.
      // Without --resume a run's result already in --out (another backend's, say) is replaced.
      const replaced = values.resume === true
        ? 0
        : specs.filter((s) => existsSync(join(values.out, runFileName(s)))).length;
      if (replaced > 0) {
        error(
          `note: ${replaced} run(s) of the grid have a result in ${values.out} already: they ` +
            "train again and their results are replaced (--resume keeps them)",
        );
      }
      const checkStart = performance.now();
      const bad = await malformedTaskFiles(toRun, dataDir);
      const checkSeconds = (performance.now() - checkStart) / 1000;
      // About 1 s for the smoke profile's files, its task corpus included, from the offline
      // mirror (at most 14 MB) on 2 cores; the full GLUE + SuperGLUE files are hundreds of MB:
      // where that time went is said.
      if (checkSeconds > 5) {
        error(`Read the task files the runs train and evaluate on (${fmtDuration(checkSeconds)})`);
      }
      if (bad.length > 0) {
        const e = new Error(
          `Refused before training: ${bad.length} task file problem(s):\n  ${bad.join("\n  ")}`,
        );
        // A folder named by --data-dir or HYPERPROMPT_DATA cannot be used (2); the default
        // one's files came from the download or the offline mirror (1), as for missing files.
        throw chosenData ? asUsageError(e) : e;
      }
    }
    // The backend each run would use: one probe per distinct choice (the default profile's probe
    // above is that of its choice).
    const probes = new Map<string, BackendProbe>();
    if (probe !== undefined) probes.set((backendArg as BackendChoice | undefined) ?? "auto", probe);
    for (const s of specs) {
      if (!probes.has(s.backend)) probes.set(s.backend, await resolveBackend(s.backend, probeWith));
    }
    // HYPERPROMPT_BACKEND replaces "auto" only: where nothing asks for auto, it does nothing.
    const envBackend = backendFromEnv();
    if (
      envBackend !== undefined && specs.length > 0 &&
      // A tiny preset's pretrained backbone is pretrained here, on "auto" unless it says.
      specs.every((s) =>
        s.backend !== "auto" &&
        !(s.backbone === "pretrained" && isUnpublishedPreset(s.model) &&
          (s.pretrain?.backend ?? "auto") === "auto")
      )
    ) {
      const named = [...new Set(specs.map((s) => s.backend))].sort().join(", ");
      error(
        `note: HYPERPROMPT_BACKEND=${envBackend} is not used: it replaces "auto", and every run ` +
          `names its backend (${named}${
            backendArg === undefined
              ? `: profile ${profile.name}); --backend chooses another`
              : ": --backend); without --backend it replaces the profile's auto, if any"
          }`,
      );
    }
    // A backend asked for by name that cannot start here: each of its runs would fail at its
    // start, one after the other. Refused now; a dry run warns.
    const unavailable = [...probes].flatMap(([choice, p]) => {
      // The runs that would train on it (with --resume, not those whose result is kept).
      const n = toRun.filter((s) => s.backend === choice).length;
      if (p.unavailable === undefined || n === 0) return [];
      const what = choice === "auto" ? `${p.name} (HYPERPROMPT_BACKEND replacing auto)` : choice;
      return [`${n} run(s) on ${what}: ${p.unavailable}`];
    });
    const backendRefusal = unavailable.length === 0
      ? undefined
      : `a backend that cannot start here: ${unavailable.join("; ")}`;
    if (backendRefusal !== undefined && !values["dry-run"]) {
      throw new Error(`Refused before training: ${backendRefusal}`);
    }
    const backendOf = (s: RunSpec): RunBackend => probes.get(s.backend)!;
    const anyGpu = [...probes.values()].some((p) => p.gpu);
    // wasm runs are checked against the wasm heap (device_memory.ts WASM_HEAP), always.
    const anyWasm = [...probes.values()].some((p) => isWasmBackend(p.name));
    // Runs on the host's memory (cpu, tfjs-node on the CPU): warned of when they may exceed it.
    const anyHost = [...probes.values()].some((p) => !p.gpu && !isWasmBackend(p.name));
    let memory: DeviceMemoryPlan = {
      runs: new Map(),
      microBatchSizes: new Map(),
      refusals: [],
      notes: [],
    };
    // What the dry-run table shows: `memory`, or with a stated size and no GPU here, every run
    // planned as on a GPU of that size (which the real run does not do: it says so).
    let shown = memory;
    const stated = statedMemoryUse([...probes.values()], memoryOverride, values["dry-run"]);
    if (stated.ignored !== undefined) error(stated.ignored);
    // The preflight: estimates for the dry-run table, and on a GPU or the wasm heap the
    // micro-batches or a refusal.
    if (anyGpu || anyWasm || anyHost || values["dry-run"]) {
      const probed = anyGpu ? await probeDeviceMemory(memoryOverride, opts.runCommand) : undefined;
      const device = probed === undefined
        ? memoryOverride
        : probed.bytes === null
        ? undefined
        : probed;
      if (probed !== undefined && probed.bytes === null) {
        const webgpu = [...probes.values()].some((p) => p.gpu && p.name === "webgpu");
        error(
          `note: the GPU's memory is unknown (${
            webgpu ? "WebGPU reports no total memory; " : ""
          }${probed.reason}): runs are not checked against it, and a batch too large for it ` +
            `fails out of memory; --device-memory GB or ${DEVICE_MEMORY_ENV} states it` +
            `${values["dry-run"] ? "" : " (--dry-run prints the estimated peaks)"}`,
        );
      } else if (anyGpu && device !== undefined) {
        error(`GPU memory: ${fmtGb(device.bytes)} (${device.source})`);
      }
      // Each run's configuration, with the token tables its checkpoint gives the stacks (each
      // weights folder's index and tables read once).
      const owns = new Map<string, Promise<readonly EmbeddingStack[]>>();
      const ownOf = (dir: string) => {
        if (!owns.has(dir)) owns.set(dir, checkpointOwnEmbeddings(dir));
        return owns.get(dir)!;
      };
      const configs = new Map<RunSpec, T5Config | undefined>();
      for (const s of specs) {
        try {
          configs.set(s, await preflightModelConfig(s, ownOf));
        } catch {
          configs.set(s, undefined); // an unreadable config.json: the run itself says why
        }
      }
      for (const n of hubCacheNotes(specs)) error(`note: ${n}`);
      const plan = (asGpu: boolean) =>
        planDeviceMemory(specs, {
          backendOf: asGpu ? (s) => ({ ...backendOf(s), gpu: true }) : backendOf,
          device,
          configOf: (s) => configs.get(s),
          modelName: (s) => labels.model(s),
          // The backward pass each run's selectBackend installs (low-memory unless
          // HYPERPROMPT_STOCK_BACKPROP=1): the stock one's backward peak is about twice as high.
          backprop,
          ...(submitBatch === undefined ? {} : { submitBatch }),
        });
      // What the runs will do: a run whose backend is no GPU is not checked against the GPU.
      memory = plan(false);
      const hostBytes = opts.hostMemory ?? hostMemoryTotal();
      // A dry run planning as on a GPU of a stated size (off the GPU machine) plans no run on
      // this host's memory.
      if (hostBytes !== undefined && !stated.simulate) {
        const warnings = hostMemoryWarnings(specs, memory, {
          backendOf,
          totalBytes: hostBytes,
          modelName: (s) => labels.model(s),
        });
        for (const w of warnings) error(`warning: ${w}`);
      }
      // A dry run with a stated memory size and no GPU here plans every run as on a GPU of that
      // size (what `--device-memory` asks), so the table shows the micro-batches off the GPU
      // machine too; statedMemoryUse's line says the real run does not.
      shown = stated.simulate ? plan(true) : memory;
      for (const n of shown.notes) error(n);
    }
    const refusalsOf = (plan: DeviceMemoryPlan): string | undefined => {
      if (plan.refusals.length === 0) return undefined;
      const advice = fittingMethodsAdvice(specs, plan);
      const on = new Set(
        [...plan.runs.values()].filter((p) => p.fits === false).map((p) =>
          p.wasmHeap === true ? "the wasm heap" : "the GPU's memory"
        ),
      );
      return `${plan.refusals.length} run(s) cannot fit ${[...on].sort().join(" or ")}:\n  ${
        plan.refusals.slice(0, 10).join("\n  ")
      }${plan.refusals.length > 10 ? `\n  (and ${plan.refusals.length - 10} more)` : ""}${
        advice === undefined ? "" : `\n${advice}`
      }`;
    };
    // Said in a dry run too: it shows what the command would do.
    if (minutesArg !== undefined && !specs.some((s) => s.train.checkpointEvery > 0)) {
      error(
        `note: --checkpoint-minutes ${minutesArg} changes nothing here: no run writes ` +
          `checkpoints (train.checkpointEvery 0)`,
      );
    }
    // Disk: what the runs still to train write at once into --out (their checkpoints, kept
    // weights), from the preflight's estimates: a dry run says it, a run warns when it is more
    // than the free space.
    {
      const need = estimateDiskNeed(toRun, (s) => memory.runs.get(s.id)?.estimate);
      const free = (opts.freeDiskBytes ?? freeDiskBytes)(values.out);
      const name = (s: RunSpec) => runName(s, labels.model(s));
      const warning = diskSpaceWarning(need, values.out, free, name);
      if (warning !== undefined) error(`warning: ${warning}`);
      else if (values["dry-run"]) {
        const line = diskNeedLine(need, values.out, free, name);
        if (line !== undefined) error(`note: ${line}`);
      }
    }
    const refused = refusalsOf(memory);
    if (values["dry-run"]) {
      const accounting = await loadAccounting();
      // A software adapter's own rate, unless the dry run plans as on a GPU of a stated size
      // (`--device-memory` off the GPU machine, README "Reproducing the paper's tables"): then a
      // GPU's, as its table is.
      const rateOf = (p: BackendProbe) =>
        p.name === "webgpu" && !p.gpu && p.unavailable === undefined && !stated.simulate
          ? SOFTWARE_WEBGPU
          : p.name;
      const rateName = specs.length > 0
        ? rateOf(backendOf(specs[0]!))
        : backend === "auto"
        ? (probe ?? await probeWith("auto")).name
        : backend;
      const estimates = specs.map((s) => estimateRun(s, accounting, rateName, rate));
      // With --resume, what is left: finished runs kept, unfinished ones from their checkpoint.
      let left: DryRunLeft[] | undefined;
      if (values.resume) {
        left = [];
        for (const s of specs) {
          const done = await readFinished(values.out, s, dataDir) !== undefined;
          const root = join(runWorkDir(join(values.out, runFileName(s))), "checkpoints");
          const steps = done ? [] : await listCheckpoints(root);
          const fromStep = steps.length === 0 ? 0 : Math.max(...steps);
          left.push({
            done,
            fromStep,
            evalOwed: fromStep > 0 &&
              await checkpointOwesEvaluation(join(root, checkpointDirName(fromStep))),
          });
        }
      }
      printDryRun(
        specs,
        labels,
        estimates,
        shown,
        rateName,
        log,
        profile.timeBudgetMinutes,
        left,
        rate,
      );
      if (gateBaseline !== undefined) {
        // Its checks above passed; the gate compares trained results, so nothing is gated here.
        error(
          `note: --compare ${values.compare}: its ${gateBaseline.length} runs were checked ` +
            "against the grid; the gate compares trained results, so it runs only without " +
            "--dry-run (exit 3 if it fails)",
        );
      }
      for (const r of [backendRefusal, configRefusal, refused]) {
        if (r !== undefined) error(`warning: without --dry-run this is refused: ${r}`);
      }
      const simulated = shown === memory ? undefined : refusalsOf(shown);
      if (simulated !== undefined && simulated !== refused && memoryOverride !== undefined) {
        error(
          `warning: on a GPU of ${fmtGb(memoryOverride.bytes)} (${memoryOverride.source}) this ` +
            `would be refused (here, with no GPU, the runs train as specified): ${simulated}`,
        );
      }
      return 0;
    }
    if (refused !== undefined) throw new UsageError(`Refused before training: ${refused}`);
    const runOne = opts.runOne ?? await loadRunOne();
    const tty = Deno.stderr.isTerminal();
    const reporter = opts.progress === false ? undefined : progressReporter(specs.length, tty);
    let tablesFailed = false;
    let summary: GridSummary;
    if (values.resume) {
      for (const n of otherRunsCheckpoints(values.out, specs)) error(`note: ${n}`);
    }
    const interrupts = interruptWhileCheckpointing({
      requestStop,
      stopRequested,
      exit: opts.exit ?? ((code) => Deno.exit(code)),
      error,
      out: values.out,
    });
    const claimLine = claimLines();
    // The runs trained here, for the notes on their scores once the grid ends.
    const doneResults: RunResult[] = [];
    try {
      summary = await runGrid(specs, {
        outDir: values.out,
        dataDir,
        runOne,
        resume: values.resume,
        microBatchSizes: memory.microBatchSizes,
        // Every run's train() takes it (not part of the specs: run ids do not change).
        checkpointMinutes: minutes,
        // Kept results of another backend than the runs' resolves to here are named.
        resolvedBackend: (s) => backendOf(s).name,
        runLock: { staleMs: runLockStale },
        // The grid's own lines (a run left to the process that took its claim over, --resume's
        // note on results of other code): above the bars, not across them.
        log: reporter?.log ?? error,
        // Before each run and after the last: the previous run's result is written, so its
        // listeners come off (the signals stop at once again) before the request is read.
        shouldStop: () => {
          interrupts.betweenRuns();
          return stopRequested();
        },
        onEvent: (e) => {
          if (e.kind === "done") doneResults.push(e.result);
          if (reporter !== undefined) return reporter.onEvent(e);
          if (e.kind === "start" && e.replaces !== undefined) {
            error(`rerunning ${e.spec.id}: ${replacing(e.replaces)}`);
          }
          if (e.kind === "resumed") error(resumedLine(e));
          const claims = claimLine(e);
          if (claims !== undefined) error(claims);
        },
      });
    } finally {
      // Also when the grid stops early (the backend failed): the bars' timer must not outlive it.
      reporter?.stop();
      interrupts.close();
      // The request served this grid; a later main() in this process (tests) starts without it.
      clearStopRequest();
    }
    if (summary.interrupted !== undefined) {
      // No tables and no gate: the grid is incomplete by request, not by failure.
      const { reason, spec, error: why, notStarted } = summary.interrupted;
      const limit = DISK_LIMITS.find((l) => l.reason === reason);
      // The run's own message starts "stopped by <reason> after step …": the reason is said once.
      const stoppedRun = why?.message.replace(`stopped by ${reason} `, "stopped ") ?? "stopped";
      error(
        `Stopped by ${reason}: ${runsCount(summary.done)} done, ${summary.skipped} skipped${
          elsewhere(summary)
        }, ` +
          `${summary.failed.length} failed, ${notStarted} not started${leftToOthersNote(summary)}${
            spec === undefined ? "" : `; run ${spec.id} ${stoppedRun}`
          }`,
      );
      for (const line of failedLines(summary.failed)) error(line);
      for (const line of finishedRunNotes(doneResults)) error(line);
      error(
        spec === undefined && notStarted === 0
          // The signal came while the last run finished (runner.ts: it did not stop it).
          ? `Every run had finished; no tables or gate were written: deno task bench --resume ` +
            `with the same flags skips the runs and writes them`
          : `To continue: ${
            limit === undefined ? "" : `${limit.advice}, then `
          }deno task bench --resume with the same flags (finished runs are skipped)`,
      );
      // A full disk is a failure, not a signal: exit 1 (the run's error names the path).
      if (limit !== undefined) return 1;
      return SIGNAL_EXIT_CODES[reason as InterruptSignal] ?? 130;
    }
    // A run that failed this time is left out of the tables and the gate, even when an earlier
    // attempt's result file is still in OUT: its numbers are not this code's, and gating them
    // would pass code that no longer runs.
    const failedIds = new Set(summary.failed.map((f) => f.spec.id));
    error(
      `${runsCount(summary.done)} done, ${summary.skipped} skipped${
        elsewhere(summary)
      }, ${summary.failed.length} failed${leftToOthersNote(summary)}`,
    );
    for (const line of failedLines(summary.failed)) error(line);
    for (const line of finishedRunNotes(doneResults)) error(line);
    // No run of this grid finished (none done, none skipped: a result of an earlier bench, or of
    // another process, counts): every one failed, and a failed run is left out of the tables, so
    // there is nothing of this grid to tabulate. Said so, rather than as a table error advising
    // to run bench, the command that just ran; the earlier tables in --tables stay as they were.
    const noneFinished = summary.failed.length > 0 && summary.done + summary.skipped === 0;
    if (shard !== undefined) {
      error(`Shard done; when every shard has finished: deno task tables --runs ${values.out}`);
    } else if (tablesDir !== undefined && noneFinished) {
      error("No tables: no run succeeded (see the FAILED lines above)");
    } else if (tablesDir !== undefined) {
      try {
        const written = await writeTables(values.out, tablesDir, { exclude: failedIds });
        error(`Tables: ${written.length} files in ${tablesDir}`);
      } catch (e) {
        // The runs are done and their results written: say so, rather than "bad arguments".
        tablesFailed = true;
        error(
          `Tables not written: ${(e as Error).message}. The run results are in ${values.out}; ` +
            `once that is fixed: deno task tables --runs ${values.out} --out ${tablesDir}`,
        );
      }
    }
    if (gateBaseline !== undefined) {
      const current: RunResult[] = [];
      for (const s of specs) {
        if (failedIds.has(s.id)) continue;
        const r = await readFinished(values.out, s);
        if (r) current.push(r);
      }
      const cmp = compareResults(current, gateBaseline, profile.tolerances, {
        partial: shard !== undefined,
      });
      log(formatComparison(cmp));
      // The headline counts the selection's runs: the baseline's others are said (h381).
      if (baseline !== undefined && gateBaseline.length < baseline.length) {
        log(
          `  note --methods: ${gateBaseline.length} of the baseline's ${baseline.length} runs ` +
            "gated (the others are of methods not selected)",
        );
      }
      if (!cmp.ok) return 3;
    }
    return summary.failed.length > 0 || tablesFailed ? 1 : 0;
  } catch (e) {
    error((e as Error).message);
    return exitCodeOf(e);
  }
}

/**
 * The backend a run's choice resolves to: cpu (also through `HYPERPROMPT_BACKEND` replacing
 * "auto") is no GPU and needs no probe; wasm is what `selectBackend` starts for it, wasm+blas
 * where OpenBLAS loads (`wasmEngine`, which also says why wasm+blas cannot start); "auto",
 * webgpu and tensorflow are probed. An explicit request whose probe fails (the package or adapter
 * missing) is `unavailable`, with the reason; "auto" always starts something.
 */
async function resolveBackend(
  choice: BackendChoice,
  probe: (c: BackendChoice) => Promise<BackendProbe>,
): Promise<BackendProbe> {
  const effective = choice === "auto" ? backendFromEnv() ?? "auto" : choice;
  if (effective === "cpu") return { name: effective, gpu: false };
  if (effective === "wasm" || effective === "wasm+blas") {
    const w = wasmEngine(effective);
    return "name" in w
      ? { name: w.name, gpu: false }
      : { name: effective, gpu: false, unavailable: w.unavailable };
  }
  try {
    return await probe(choice);
  } catch (e) {
    if (effective === "auto") return { name: "cpu", gpu: false };
    return { name: effective, gpu: false, unavailable: (e as Error).message };
  }
}

/**
 * The labels `--methods` selects: each value split at commas (a value that is a label as a whole
 * is kept whole, so a label with a comma can be named too), trimmed.
 *
 * @param values the `--methods` values (the flag may be repeated)
 * @param labels the profile's method labels
 * @param profile the profile's name, for the error
 * @returns the selected labels, in the order given
 * @throws UsageError naming an empty or unknown label and listing the profile's labels
 */
export function selectMethods(
  values: readonly string[],
  labels: readonly string[],
  profile: string,
): Set<string> {
  const known = () =>
    `profile "${profile}" has the methods ${labels.map((l) => `"${l}"`).join(", ")}`;
  const selected = new Set<string>();
  for (const value of values) {
    const parts = labels.includes(value) ? [value] : value.split(",").map((p) => p.trim());
    for (const part of parts) {
      if (part === "") {
        throw new UsageError(`--methods "${value}": an empty label; ${known()}`);
      }
      if (!labels.includes(part)) {
        // The dry-run's per-task run label, `Prompt-Tuning[cola]`: the method is its label.
        const base = /^(.*)\[[^\]]*\]$/.exec(part)?.[1];
        const hint = base !== undefined && labels.includes(base)
          ? ` (a per-task method is selected whole, by "${base}")`
          : "";
        throw new UsageError(`--methods: unknown method label "${part}"${hint}; ${known()}`);
      }
      selected.add(part);
    }
  }
  return selected;
}

/** Rethrows `e`, an argument or profile check's error, as a {@link UsageError} (exit code 2). */
function asUsageError(e: unknown): never {
  return usageChecked(() => {
    throw e;
  });
}

if (import.meta.main) {
  // A write past `ulimit -f` then throws "File too large (os error 27)" naming the file, for
  // the error paths to report, instead of SIGXFSZ ending the process silently (exit 153).
  ignoreFileSizeSignal();
  Deno.exit(await main(Deno.args));
}
