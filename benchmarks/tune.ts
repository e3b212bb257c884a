/**
 * `deno task tune`: measures which matmul kernel is fastest for each product shape of a training
 * step on this machine's GPU and writes a tuning table (`model/webgpu/tuning.ts`).
 *
 * For each workload (default: one encoder and one decoder layer of T5 1.1 Base and of T5 1.1
 * Small at batch 32, 128 input / 16 target tokens: every layer of a model runs the same shapes) it
 * runs one gradient pass on webgpu with the custom kernels and lists the `BatchMatMul` shapes it
 * ran, then times, per shape, tfjs's stock kernel and every tile and K split of the tiled kernel
 * (`tuningCandidates`; `--candidates` narrows the list) and keeps the fastest, unless the rule of
 * thumb's choice is within `TUNING_MARGIN` of it. The table goes to
 * `results/tuning/<adapter>.json` (entries of other workloads already there are kept), where
 * `model/backend.ts` finds it for this adapter on later runs.
 *
 * A software (fallback) adapter is refused unless `--include-fallback`: its times say nothing
 * about a GPU (the tests use it to check the mechanics).
 *
 * Exit codes ({@link cli}): 0 the table was written (or `--help`), 1 the tuning failed (no adapter,
 * a bad table at the default path, a table of another adapter, a kernel error), 2 bad arguments
 * (nothing measured; an `--out` that is a folder, or that holds a file that is not a readable
 * tuning table).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { requestTfjsAdapter } from "../model/webgpu/adapter.ts";
import "@tensorflow/tfjs-backend-webgpu";
import { raiseWebgpuLimits } from "../model/webgpu/device_limits.ts";
import { ignoreFileSizeSignal } from "../model/file_size_signal.ts";
import { dirname, join } from "node:path";
import {
  adapterId,
  adapterSlug,
  type MatMulChoice,
  type MatMulTuningTable,
  mergeTuningTables,
  parseTuningTable,
  registerWebgpuKernels,
  sameAdapter,
  selfCheckWebgpuKernels,
  serializeTuningTable,
  type TuningEntry,
} from "../model/webgpu/mod.ts";
import {
  newTuningTable,
  QUICK_TUNE_CANDIDATES,
  recordGradientShapesAndDispose,
  tuneShapes,
} from "../model/webgpu/autotune.ts";
import { describeAdapter, parseChoice, tuningPathFor } from "../model/webgpu/tuning.ts";
import { makeWorkload, parseWorkload } from "./perf.ts";
import { firstRepeat } from "./spec.ts";
import { checkOutputFile, writeFileAtomic } from "../model/fs.ts";
import {
  type CliOptions,
  commaList,
  decimalNumber,
  flagError,
  parseFlags,
  runCli,
  usageChecked,
  UsageError,
  withHelpPointer,
} from "../model/usage.ts";
import { gitState } from "./provenance.ts";
import { quietWaylandProbe } from "../model/webgpu/wsi_env.ts";

/** Workloads tuned by default (one layer each: every layer runs the same shapes). */
export const DEFAULT_TUNE_WORKLOADS = [
  "t5:t5-v1_1-base@1:32,128,16",
  "t5:t5-v1_1-small@1:32,128,16",
];
/** `--quick`: a tiny model and three candidates, for CI on the software adapter. */
const QUICK_WORKLOADS = ["t5:tiny-v1_1@1:2,16,4"];
const QUICK_CANDIDATES = QUICK_TUNE_CANDIDATES.join(",");

export const TUNE_USAGE = `deno task tune [options]   per-shape matmul kernel choice for this GPU

  --workloads LIST      ";"-separated t5:<preset>[@N][:B,Li,Lt] (default: ${
  DEFAULT_TUNE_WORKLOADS.join(";")
})
  --reps N              products per timed round (default 20)
  --rounds N            timed rounds per candidate, the median counts (default 3)
  --candidates LIST     choice names to time (stock,t128,t64/k8,...; default: all that fit)
  --out FILE            the table (default: results/tuning/<adapter>.json of this repository,
                        wherever it runs from; merged if it exists)
  --include-fallback    run on a software adapter too (its times say nothing about a GPU)
  --quick               CI: a tiny model, 1 rep, 1 round, candidates ${QUICK_CANDIDATES}
  --help                this text

Exit codes: 0 the table was written, 1 a failure (no WebGPU adapter, a software one without
--include-fallback, a measurement or the table's write), 2 bad arguments (nothing run).`;

/** What {@link main} returns. */
export interface TuneResult {
  /** Where the table was written. */
  readonly path: string;
  /** The table as written (merged with what was there). */
  readonly table: MatMulTuningTable;
  /** Per workload: shapes tuned and the summed ms per step, rule of thumb vs tuned. */
  readonly workloads: {
    spec: string;
    shapes: number;
    ruleMs: number;
    tunedMs: number;
  }[];
}

/** The command, as the errors' pointer to `--help` names it. */
const TUNE_TOOL = "deno task tune";

/** A bad flag value (exit 2), ending with the pointer to `--help` (`flagError`). */
function badFlag(message: string): UsageError {
  return flagError(TUNE_TOOL, message);
}

/**
 * One `--candidates` name as a choice: an unknown tile or a malformed name is refused by
 * `parseChoice`, whose error lists every choice, ending with the pointer to `--help`.
 *
 * @param name a choice name, e.g. `t64/k8`
 * @returns the choice
 * @throws UsageError naming `--candidates`, the name and what it takes
 */
export function candidateChoice(name: string): MatMulChoice {
  return withHelpPointer(TUNE_TOOL, () => usageChecked(() => parseChoice(name, "--candidates")));
}

function positiveInt(text: string, flag: string): number {
  const n = decimalNumber(text);
  if (!Number.isInteger(n) || n < 1) {
    throw badFlag(`${flag} must be a positive integer, got "${text}"`);
  }
  return n;
}

/**
 * Checks `--out` before the adapter is opened: a folder, or a path below a file, is an error
 * naming the flag (reading it later said only "Not a directory (os error 20)").
 */
function checkTableFile(out: string): void {
  checkOutputFile(
    "--out",
    out,
    `give the table's file name, e.g. ${join(out, "<adapter>.json")}`,
  );
}

/**
 * Reads and validates the table at `path`; undefined when there is none. A table named by `--out`
 * (`named`) that cannot be read or is not a tuning table is a {@link UsageError}, found before the
 * adapter is opened; at the default path (which needs the adapter) it is a failure while working.
 */
async function readTable(path: string, named: boolean): Promise<MatMulTuningTable | undefined> {
  const source = named ? `--out ${path}` : path;
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    const message = named
      ? `${source}: cannot read it: ${(e as Error).message}`
      : `cannot read the table ${path}: ${(e as Error).message}`;
    throw named ? new UsageError(message, { cause: e }) : new Error(message, { cause: e });
  }
  return named
    ? usageChecked(() => parseTuningTable(text, source))
    : parseTuningTable(text, source);
}

/**
 * Runs the tuning with command-line `args`. Every argument (and `--out`) is checked before the
 * adapter is opened; a bad one is a {@link UsageError}. `--help` is {@link cli}'s (`runCli`
 * prints the usage before any parsing); this function does not answer it.
 *
 * @param args command-line arguments (see {@link TUNE_USAGE})
 * @returns where the table went, the table, and per-workload totals
 */
export async function main(args: string[]): Promise<TuneResult> {
  const git = gitState();
  // Its errors are one line, as every tool's (runCli prints the message alone).
  const values = parseFlags(args, {
    tool: TUNE_TOOL,
    options: {
      workloads: { type: "string" },
      reps: { type: "string" },
      rounds: { type: "string" },
      candidates: { type: "string" },
      out: { type: "string" },
      "include-fallback": { type: "boolean", default: false },
      quick: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
    takes: {
      workloads: 'workloads, ";"-separated, e.g. t5:t5-v1_1-base@1:32,128,16',
      reps: "a positive integer",
      rounds: "a positive integer",
      candidates: "choice names, comma-separated, e.g. stock,t64/k8",
      out: "the table's JSON file",
    },
    paths: { out: true },
  });
  const quick = values.quick;
  const reps = positiveInt(values.reps ?? (quick ? "1" : "20"), "--reps");
  const rounds = positiveInt(values.rounds ?? (quick ? "1" : "3"), "--rounds");
  const specs = values.workloads !== undefined
    ? values.workloads.split(";").map((s) => s.trim()).filter((s) => s !== "")
    : quick
    ? QUICK_WORKLOADS
    : DEFAULT_TUNE_WORKLOADS;
  if (specs.length === 0) {
    // Nothing would be measured, and the (merged) table rewritten as if tuned.
    throw badFlag(
      `--workloads "${values.workloads}" names no workload`,
    );
  }
  const parsed = specs.map((spec) => {
    // Another kind is refused for what it is before its shape is read (which would only matter
    // to deno task perf).
    const onlyT5 = () =>
      badFlag(`--workloads "${spec}": only t5 workloads are tuned (t5:<preset>[@N][:B,Li,Lt])`);
    if (!spec.startsWith("t5:")) throw onlyT5();
    const w = withHelpPointer(TUNE_TOOL, () => parseWorkload(spec));
    if (w.kind !== "t5") throw onlyT5(); // not reached: narrows the type
    if (w.micro !== undefined) {
      throw badFlag(
        `--workloads "${spec}": micro-batches ("/M") are a wasm matter; ` +
          "give the batch the GPU runs",
      );
    }
    return { spec, w };
  });
  const candidateText = values.candidates ?? (quick ? QUICK_CANDIDATES : undefined);
  const names = candidateText === undefined
    ? undefined
    : withHelpPointer(TUNE_TOOL, () => commaList(candidateText, "--candidates", "choice names"));
  const only: MatMulChoice[] | undefined = names?.map(candidateChoice);
  if (only !== undefined && only.length === 0) {
    throw badFlag(`--candidates "${candidateText}" names no choice`);
  }
  const twice = names === undefined ? undefined : firstRepeat(names);
  if (twice !== undefined) {
    // Timed twice and kept once: --rounds is the way to more timings.
    throw badFlag(
      `--candidates names ${names![twice[0]]} twice; --rounds N times each candidate N times`,
    );
  }

  // A table already at --out is read now: one that is no tuning table stops the run here.
  let old: MatMulTuningTable | undefined;
  if (values.out !== undefined) {
    checkTableFile(values.out);
    old = await readTable(values.out, true);
  }

  quietWaylandProbe();
  const adapter = await requestTfjsAdapter();
  if (!adapter) {
    throw new Error(
      "no WebGPU adapter (navigator.gpu.requestAdapter() gave none); " +
        "tuning needs the GPU it tunes for",
    );
  }
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  const id = adapterId(info);
  if (info.isFallbackAdapter === true && !values["include-fallback"]) {
    throw new Error(
      `${id.description} is a software fallback adapter; its times say ` +
        "nothing about a GPU (--include-fallback to run anyway)",
    );
  }
  const path = values.out ?? tuningPathFor(id);
  // The default path needs the adapter: its table is read (and validated) now, before any time
  // is spent. Whose table it is can only be checked now: a foreign one stops here (exit 1).
  if (values.out === undefined) old = await readTable(path, false);
  // Any difference counts, not only one of the file name stem: merging used to relabel the old
  // entries as measured on this adapter (e.g. another architecture, or a description that
  // differs in case, punctuation or past the stem's 80 characters), and model/backend.ts then
  // applied them here as this adapter's.
  if (old !== undefined && !sameAdapter(old.adapter, id)) {
    const sameStem = adapterSlug(old.adapter) === adapterSlug(id);
    const name = (a: typeof id) =>
      sameStem ? describeAdapter(a) : `"${a.description}" (${adapterSlug(a)})`;
    throw new Error(
      `${path} holds the table of adapter ${name(old.adapter)}, not of ` +
        `${name(id)}, the adapter found; choose another --out (or remove ${path} to replace it)`,
    );
  }

  raiseWebgpuLimits(); // before the backend starts: more variables per AdamW dispatch
  await tf.setBackend("webgpu");
  await tf.ready();
  if (!registerWebgpuKernels({})) {
    throw new Error(
      "the custom webgpu kernels are disabled (HYPERPROMPT_WEBGPU_KERNELS=0)",
    );
  }
  const check = await selfCheckWebgpuKernels();
  if (!check.ok) {
    throw new Error(
      `the custom kernels fail their self-check on ${id.description} ` +
        `(error ${check.maxRelErr}${check.error ? `; ${check.error}` : ""}); nothing to tune`,
    );
  }
  console.error(`tune: ${id.description}; ${reps} reps × ${rounds} rounds per candidate`);

  const entries: Record<string, TuningEntry> = {};
  const totals: TuneResult["workloads"] = [];
  for (const { spec, w } of parsed) {
    const calls = await recordGradientShapesAndDispose(makeWorkload(w));
    const r = await tuneShapes(calls, {
      reps,
      rounds,
      ...(only === undefined ? {} : { candidates: only }),
      done: entries,
      log: (line) => console.error(`tune: ${spec} ${line}`),
    });
    Object.assign(entries, r.entries);
    totals.push({
      spec,
      shapes: Object.keys(calls).length,
      ruleMs: r.ruleMs,
      tunedMs: r.tunedMs,
    });
    if (r.ruleRejected.length > 0) {
      console.error(
        `tune: WARNING: the rule of thumb's kernel gave a wrong product for ${
          r.ruleRejected.join("; ")
        } on ${id.description}: the table avoids it, but without the table this device runs it`,
      );
    }
  }
  const fresh = newTuningTable(id, entries, {
    command: `deno task tune ${args.join(" ")}`.trim(),
    workloads: specs.join(";"),
    reps,
    rounds,
    candidates: candidateText ?? "all",
    git: `${git.sha}${git.dirty ? "+dirty" : ""}`,
    // wgpu's driver API (vulkan, gl): one adapter name, other kernels' times.
    webgpuBackend: Deno.env.get("DENO_WEBGPU_BACKEND") || "(default)",
  });
  const table = old === undefined ? fresh : mergeTuningTables(old, fresh);
  await Deno.mkdir(dirname(path), { recursive: true });
  await writeFileAtomic(path, serializeTuningTable(table));
  for (const t of totals) {
    console.log(
      `${t.spec}: ${t.shapes} shapes; matmuls of one step ${t.ruleMs} ms by the rule of thumb, ` +
        `${t.tunedMs} ms tuned (timed one by one)`,
    );
  }
  console.log(`tune: wrote ${path} (${Object.keys(table.entries).length} shapes)`);
  return { path, table, workloads: totals };
}

/** Options of {@link cli} (tests capture the help text and the error line). */
export type TuneCliOptions = Pick<CliOptions, "log" | "error">;

/**
 * `deno task tune`: {@link main}, with an error printed as one line instead of a stack trace;
 * `--help` or `-h` anywhere prints {@link TUNE_USAGE}.
 *
 * @param args command-line arguments (see {@link TUNE_USAGE})
 * @param opts where the help text (default console.log) and the error line (default
 *   console.error) go
 * @returns the exit code: 0 written (or `--help`), 1 the tuning failed, 2 bad arguments
 */
export function cli(args: string[], opts: TuneCliOptions = {}): Promise<number> {
  // --help anywhere prints the usage, as for the other tools: runCli answers it, before main
  // parses the flags (which declares --help only so that the parser knows it).
  return runCli(main, args, TUNE_USAGE, opts);
}

if (import.meta.main) {
  // A write past `ulimit -f` then throws "File too large (os error 27)" naming the file, for
  // the error paths to report, instead of SIGXFSZ ending the process silently (exit 153).
  ignoreFileSizeSignal();
  // Exit explicitly only on failure: a tuning run ends as it always did.
  const code = await cli(Deno.args);
  if (code !== 0) Deno.exit(code);
}
