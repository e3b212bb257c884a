/**
 * The GPU's memory and the bench preflight: before any training, `deno task bench` estimates
 * each GPU run's peak memory (benchmarks/memory.ts) and, where the device's memory is known,
 * picks a micro-batch that fits (gradient accumulation) or refuses the run.
 *
 * The device's memory comes from, in this order: `--device-memory GB`, the environment variable
 * `HYPERPROMPT_DEVICE_MEMORY_GB`, `nvidia-smi --query-gpu=memory.total` (the smallest GPU it
 * lists; each nvidia-smi call stopped after 20 s). WebGPU exposes no total memory, so without
 * those it is unknown, and {@link probeDeviceMemory} says why (no nvidia-smi, it failed, it gave
 * no figure, or a GPU is in MIG mode, whose instance's memory nvidia-smi does not report).
 *
 * Runs on the `wasm` and `wasm+blas` backends are checked too, against the wasm heap
 * ({@link WASM_HEAP_BYTES}), whatever `--device-memory` says: tfjs-backend-wasm keeps every tensor
 * in one 32-bit WebAssembly memory, and a run that outgrows it dies mid-training with a trap
 * after which the module cannot be used again in the process (model/backend.ts
 * `explainBackendFailure`), so every later run of the grid would fail too. The project's wasm
 * kernels allocate there as well (model/fused.ts, model/wasm_simd.ts work on that memory);
 * OpenBLAS (model/wasm_kernels.ts, Deno FFI) reads and writes the heap in place and keeps its own
 * work buffers in native memory, outside it.
 *
 * @module
 */
import type { T5Config } from "../model/config.ts";
import { decimalNumber, UsageError } from "../model/usage.ts";
import { wasmStockElementwiseFromEnv } from "../model/backend.ts";
import {
  type BackpropMode,
  DEFAULT_BACKPROP,
  estimateTrainingMemory,
  fitsDevice,
  type KernelSet,
  largestFittingMicroBatch,
  type MemoryEstimate,
  type MemoryInput,
  type OptimizerMemory,
} from "./memory.ts";
import type { OptimizerConfig } from "./optim.ts";
import { learningRateAt } from "./schedule.ts";
import { conditionedTasks, perTaskTag, type RunSpec, type TrainSpec } from "./spec.ts";
import { optimizerConfigFor, rowsPerPass } from "./trainer.ts";

/** The environment variable that states the device's memory in GB (10^9 bytes). */
export const DEVICE_MEMORY_ENV = "HYPERPROMPT_DEVICE_MEMORY_GB";

/**
 * The most the tfjs wasm heap can hold, in bytes: 4 GiB less one 64 KiB page, 4,294,901,760.
 * tfjs-backend-wasm 4.22's module declares a memory of at most 65,536 pages (4 GiB, the wasm32
 * limit), but its emscripten glue grows it to at most `getHeapMax()` = 4,294,901,760 bytes
 * (`dist/tf-backend-wasm.node.js`), and a `malloc` beyond that fails (an abort of the module).
 */
export const WASM_HEAP_BYTES = 4_294_901_760;

/** Whether a backend keeps its tensors on the 32-bit wasm heap (`wasm`, `wasm+blas`). */
export function isWasmBackend(name: string): boolean {
  return name === "wasm" || name === "wasm+blas";
}

/** The wasm heap as a {@link DeviceMemory}: what a wasm run is checked against. */
export const WASM_HEAP: DeviceMemory = {
  bytes: WASM_HEAP_BYTES,
  source: "tfjs-backend-wasm's 32-bit heap limit",
};

/** Fraction of the device's memory the preflight keeps free (memory.ts `fitsDevice`). */
export const DEVICE_MARGIN = 0.1;

/**
 * Fraction of the wasm heap the preflight keeps free. The heap's high-water mark is above the
 * live tensors the estimate counts (the allocator's fragmentation; nothing is returned to the
 * heap): `deno task perf`'s measured high-water marks of T5 1.1 Small and Base training steps
 * (results/perf, 128 / 16 tokens, tfjs's backward pass, the backward pass then in use; checked by
 * benchmarks/perf_test.ts) are 1.04–1.12 times this estimate for the same steps, and
 * 1 / (1 − 0.15) = 1.18. Part of that is the heap's growth step (emscripten grows it by up to 20 %,
 * at most 96 MiB past the request), which the 4 GiB ceiling clips. On 2026-11-27 (low-memory
 * backward pass, AdamW, one step): wasm+blas 1.10 (Small, 8 × 128 / 16) and 1.15 (mini-v1_1,
 * 64 × 128 / 16); plain wasm, with XNNPACK's packed copies counted (memory.ts
 * `MemoryInput.xnnMatMul`), 1.13 (Small, 8 × 128 / 16), 1.15 (Small, 16 × 64 / 16) and 1.23 (mini,
 * 64 × 128 / 16: activations, not weights, dominate there; above this margin, hence
 * {@link WASM_XNN_HEAP_MARGIN} for plain wasm).
 */
export const WASM_HEAP_MARGIN = 0.15;

/**
 * Fraction of the wasm heap the preflight keeps free on plain wasm (tfjs's XNNPACK matMul,
 * `MemoryInput.xnnMatMul`): its measured high-water marks reach 1.23 times the estimate
 * ({@link WASM_HEAP_MARGIN}'s measurements), and 1 / (1 − 0.2) = 1.25.
 */
export const WASM_XNN_HEAP_MARGIN = 0.2;

/**
 * The fraction of the wasm heap kept free for a run: {@link WASM_XNN_HEAP_MARGIN} with tfjs's own
 * XNNPACK matMul, else {@link WASM_HEAP_MARGIN}.
 *
 * @param xnnMatMul whether the run multiplies with tfjs-wasm's XNNPACK matMul (plain wasm)
 * @returns the margin
 */
export function wasmHeapMargin(xnnMatMul: boolean | undefined): number {
  return xnnMatMul === true ? WASM_XNN_HEAP_MARGIN : WASM_HEAP_MARGIN;
}

/**
 * Runs a command and returns its exit status and standard output, or `undefined` when the
 * program does not exist (tests inject a fake).
 */
export type CommandRunner = (
  cmd: string,
  args: readonly string[],
) => Promise<{ readonly success: boolean; readonly stdout: string } | undefined>;

/**
 * How long one `nvidia-smi` call may take before it is stopped and read as failed (it usually
 * answers in well under a second; a first call without persistence mode in a few).
 */
export const NVIDIA_SMI_TIMEOUT_MS = 20_000;

/** How long a program stopped by {@link timedCommandRunner} is given to end before it is let go. */
const KILL_GRACE_MS = 1_000;

/**
 * How long {@link timedCommandRunner} reads a program's output after the program ended: what it
 * wrote is in the pipe by then; a process it left behind (a grandchild) may hold the pipe open for
 * good, and is not waited for.
 */
export const PIPE_GRACE_MS = 500;

/** What {@link timedCommandRunner} uses of a started program (a `Deno.ChildProcess`). */
export type SpawnedProgram = Pick<Deno.ChildProcess, "status" | "kill" | "unref"> & {
  /** Its standard output. */
  readonly stdout: ReadableStream<Uint8Array>;
};

/** Starts `cmd` with `args`, its standard output piped, stdin and stderr null. */
function spawnPiped(cmd: string, args: readonly string[]): SpawnedProgram {
  return new Deno.Command(cmd, {
    args: [...args],
    stdout: "piped",
    stderr: "null",
    stdin: "null",
  }).spawn();
}

/**
 * A {@link CommandRunner} through `Deno.Command` that stops the program after `ms` milliseconds:
 * a hung `nvidia-smi` (a known state of a driver in trouble) would otherwise hang bench's
 * preflight, or gpu_check's memory section until the device call's limit. The program is killed
 * with SIGKILL (a SIGTERM can be ignored), and when even that does not end it within a second (a
 * process stuck in the driver, in uninterruptible sleep) it is let go: not waited for, and not
 * keeping Deno from exiting. A program stopped so, or one that fails, is `success: false`, its
 * `stdout` then saying it was stopped; a missing one (or no permission to run it) is `undefined`.
 * When reading its output fails, the program is stopped the same way and the call is
 * `success: false`, its `stdout` saying why. A program that ended is answered by its exit status
 * and the output read until {@link PIPE_GRACE_MS} after it ended, also when a process it left
 * behind keeps the pipe open.
 *
 * @param ms the time limit of one call
 * @param spawn starts the program (default `Deno.Command`; tests give a program whose output
 *   fails)
 * @returns the runner
 */
export function timedCommandRunner(
  ms: number,
  spawn: (cmd: string, args: readonly string[]) => SpawnedProgram = spawnPiped,
): CommandRunner {
  return async (cmd, args) => {
    let child: SpawnedProgram;
    try {
      child = spawn(cmd, args);
    } catch {
      return undefined; // NotFound (no nvidia-smi), NotCapable/PermissionDenied: unknown
    }
    const reader = child.stdout.getReader();
    const chunks: Uint8Array[] = [];
    // Never rejects: the error, or undefined at the end of the output (or once cancelled).
    const read = (async (): Promise<{ error: unknown } | undefined> => {
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) return undefined;
          chunks.push(value);
        }
      } catch (error) {
        return { error };
      }
    })();
    /** Kills the program, stops reading its output, and waits a grace for its end. */
    const stop = async () => {
      try {
        child.kill("SIGKILL");
      } catch {
        // It ended meanwhile.
      }
      // Its output is not wanted any more; a grandchild holding the pipe must not keep us here.
      await reader.cancel().catch(() => {});
      await read;
      if ((await within(child.status, KILL_GRACE_MS)) === undefined) child.unref();
    };
    // The program's end, or a failed read of its output (a read that ends waits for the end).
    type First = { status: Deno.CommandStatus } | { error: unknown };
    const exited = child.status.then((status): First => ({ status }));
    const first = await within(
      Promise.race([exited, read.then((r): First | Promise<First> => r ?? exited)]),
      ms,
    );
    if (first === undefined) {
      await stop();
      return { success: false, stdout: `${cmd} did not answer within ${ms} ms; stopped` };
    }
    if (!("status" in first)) {
      await stop();
      return {
        success: false,
        stdout: `${cmd}'s output could not be read (${why(first.error)}); stopped`,
      };
    }
    // Ended: what it wrote is in the pipe; a process it left behind may hold the pipe open.
    const settled = await within(read.then((r) => ({ r })), PIPE_GRACE_MS);
    let failed = settled?.r;
    if (settled === undefined) {
      await reader.cancel().catch(() => {}); // the pending read then ends
      failed = await read;
    }
    if (failed !== undefined) {
      return { success: false, stdout: `${cmd}'s output could not be read (${why(failed.error)})` };
    }
    const bytes = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    let at = 0;
    for (const c of chunks) {
      bytes.set(c, at);
      at += c.length;
    }
    return { success: first.status.success, stdout: new TextDecoder().decode(bytes) };
  };
}

/** An error's message (or the thrown value as a string). */
function why(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** `p`'s value, or undefined when it has not settled within `ms` (the timer is cleared). */
async function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The default {@link CommandRunner}: `Deno.Command`, each call stopped after
 * {@link NVIDIA_SMI_TIMEOUT_MS} ({@link timedCommandRunner}); a missing program (or no permission)
 * gives undefined.
 */
export const denoCommandRunner: CommandRunner = timedCommandRunner(NVIDIA_SMI_TIMEOUT_MS);

/** One GPU's line of an `nvidia-smi --query-gpu=memory.*` answer: MiB, or why it has none. */
type GpuMib =
  | { readonly gpu: number; readonly mib: number; readonly problem?: undefined }
  | { readonly gpu: number; readonly problem: string; readonly unavailable: boolean };

/**
 * Reads one `nvidia-smi --query-gpu=memory.* --format=csv,noheader[,nounits]` line per GPU (GPU
 * `i` on line `i`): MiB with or without the ` MiB` unit; `[N/A]` or `[Not Supported]` is an
 * unavailable figure; another unit, a figure below `min` or anything else is a problem.
 */
function parseMibLines(stdout: string, min: number): GpuMib[] {
  return stdout.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== "").map(
    (line, gpu): GpuMib => {
      const m = /^(\d+(?:\.\d+)?)(?:\s*(\S+))?$/.exec(line);
      if (m === null) {
        return /^\[.*\]$/.test(line)
          ? { gpu, problem: `GPU ${gpu} printed "${line}"`, unavailable: true }
          : { gpu, problem: `GPU ${gpu} printed "${line}", no number`, unavailable: false };
      }
      if (m[2] !== undefined && m[2] !== "MiB") {
        return {
          gpu,
          problem: `GPU ${gpu} printed "${line}": unit "${m[2]}", not MiB`,
          unavailable: false,
        };
      }
      const mib = Number(m[1]);
      return mib >= min
        ? { gpu, mib }
        : { gpu, problem: `GPU ${gpu} printed "${line}", below ${min} MiB`, unavailable: false };
    },
  );
}

/** The GPU's total memory as `nvidia-smi` gives it: bytes, or `undefined` with the reason. */
export type NvidiaSmiTotal =
  | {
    readonly bytes: number;
    /** Set when some GPUs gave no figure (`[N/A]`): which, and that they were not counted. */
    readonly note?: string;
    readonly reason?: undefined;
  }
  | { readonly bytes: undefined; readonly reason: string };

/**
 * Parses `nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits` (MiB per GPU, one
 * line each; the ` MiB` unit that nvidia-smi prints without `nounits` is accepted) into bytes: the
 * smallest GPU listed (a run uses one GPU, and which one is not known here: tfjs-webgpu takes the
 * adapter the Vulkan driver lists first, whose order need not be nvidia-smi's; on a mixed machine
 * the smallest is the safe figure). A GPU that prints `[N/A]` is left out of the minimum and the
 * `note` says so; when none gives a figure, or a line is not a MiB figure (another unit, no
 * number), the memory is unknown and the `reason` says which line.
 *
 * @param stdout the command's output
 * @returns bytes (with a note when some GPUs were left out), or the reason there are none
 */
export function parseNvidiaSmiMemory(stdout: string): NvidiaSmiTotal {
  const gpus = parseMibLines(stdout, 1);
  if (gpus.length === 0) {
    return { bytes: undefined, reason: "nvidia-smi printed no memory.total line" };
  }
  const bad = gpus.find((g) => g.problem !== undefined && !g.unavailable);
  if (bad !== undefined) {
    return { bytes: undefined, reason: `nvidia-smi's memory.total unreadable: ${bad.problem}` };
  }
  const known = gpus.flatMap((g) => (g.problem === undefined ? [g.mib] : []));
  const missing = gpus.flatMap((g) => (g.problem === undefined ? [] : [g.problem]));
  if (known.length === 0) {
    return {
      bytes: undefined,
      reason: `nvidia-smi gave no memory.total figure: ${missing.join(", ")}`,
    };
  }
  return {
    bytes: Math.min(...known) * 2 ** 20,
    ...(missing.length === 0 ? {} : {
      note: `${missing.join(", ")}: not counted, the smallest of the other GPUs taken`,
    }),
  };
}

/** A sample of the GPU's memory in use: bytes, or `null` with the reason it is unknown. */
export type DeviceMemoryUsed =
  | {
    readonly bytes: number;
    readonly reason?: undefined;
    /**
     * Set only when some GPUs gave no figure (`[N/A]`): the GPUs summed (nvidia-smi's indices).
     * Two samples' delta is meaningful only when both summed the same GPUs.
     */
    readonly gpus?: readonly number[];
    /** With `gpus`: which GPUs gave no figure. */
    readonly note?: string;
  }
  | { readonly bytes: null; readonly reason: string };

/**
 * The GPU memory in use now, by every process, from `nvidia-smi --query-gpu=memory.used
 * --format=csv,noheader,nounits` (MiB per GPU, one line each, with or without the ` MiB` unit).
 * Summed over the GPUs, so that a delta between two samples is this process's change whichever
 * GPU it runs on: tfjs-webgpu takes the adapter the Vulkan driver lists first (usually GPU 0, but
 * Vulkan's order need not be nvidia-smi's, so no line can be named the run's); other processes on
 * other GPUs add their changes to it. A GPU that prints `[N/A]` is left out of the sum, and the
 * sample says which GPUs it summed (`gpus`, `note`). Never throws: without nvidia-smi (a software
 * adapter, CI), or when it fails, no GPU gives a figure or a line is not a MiB figure, the bytes
 * are `null` and the reason says which.
 *
 * @param run the command runner (default {@link denoCommandRunner}: stopped after 20 s)
 * @returns the sample
 */
export async function deviceMemoryUsed(
  run: CommandRunner = denoCommandRunner,
): Promise<DeviceMemoryUsed> {
  let r;
  try {
    r = await run("nvidia-smi", ["--query-gpu=memory.used", "--format=csv,noheader,nounits"]);
  } catch (e) {
    return { bytes: null, reason: `nvidia-smi could not be run: ${oneLine((e as Error).message)}` };
  }
  if (r === undefined) return { bytes: null, reason: "nvidia-smi not found (no NVIDIA driver)" };
  const out = oneLine(r.stdout);
  if (!r.success) return { bytes: null, reason: `nvidia-smi failed: "${out}"` };
  const gpus = parseMibLines(r.stdout, 0);
  const bad = gpus.find((g) => g.problem !== undefined && !g.unavailable);
  const known = gpus.flatMap((g) => (g.problem === undefined ? [g] : []));
  if (gpus.length === 0 || bad !== undefined || known.length === 0) {
    return {
      bytes: null,
      reason: `nvidia-smi printed no memory.used number: ${
        bad?.problem ?? (gpus.length === 0 ? `"${out}"` : "no GPU gave a figure")
      }`,
    };
  }
  const bytes = known.reduce((a, g) => a + g.mib, 0) * 2 ** 20;
  if (known.length === gpus.length) return { bytes };
  const missing = gpus.flatMap((g) => (g.problem === undefined ? [] : [g.problem]));
  return {
    bytes,
    gpus: known.map((g) => g.gpu),
    note: `${missing.join(", ")}: summed over GPU ${known.map((g) => g.gpu).join(", ")} only`,
  };
}

/**
 * Parses a memory size in GB (10^9 bytes) given by `name` (a flag or environment variable).
 *
 * @param text the value
 * @param name what gave it, for the error
 * @returns bytes
 * @throws UsageError naming `name` when it is not a positive finite number
 */
export function parseDeviceMemoryGb(text: string, name: string): number {
  const gb = decimalNumber(text);
  if (!Number.isFinite(gb) || gb <= 0) {
    // "80GB" or "80 GiB": the number is wanted without its unit.
    const unit = /^\s*\d*\.?\d+\s*[a-z]+\s*$/i.test(text)
      ? " (the number alone, without a unit)"
      : "";
    throw new UsageError(
      `${name} must be the GPU's memory in GB of 10⁹ bytes (a positive number, e.g. 85.5 for ` +
        `an 80 GB H100, whose nvidia-smi says 81559 MiB), got "${text}"${unit}`,
    );
  }
  return gb * 1e9;
}

/** The device's memory and where it came from. */
export interface DeviceMemory {
  /** Bytes. */
  readonly bytes: number;
  /** `--device-memory`, the environment variable, or `nvidia-smi`. */
  readonly source: string;
}

/**
 * The override of the device's memory (`--device-memory`, else `HYPERPROMPT_DEVICE_MEMORY_GB`),
 * validated; checked before any work so a bad value is refused at once.
 *
 * @param flag the `--device-memory` value, if given
 * @param env the environment variable's value, if set
 * @returns the override, or undefined
 * @throws UsageError naming the flag or the variable
 */
export function deviceMemoryOverride(
  flag: string | undefined,
  env: string | undefined = Deno.env.get(DEVICE_MEMORY_ENV),
): DeviceMemory | undefined {
  if (flag !== undefined) {
    return { bytes: parseDeviceMemoryGb(flag, "--device-memory"), source: "--device-memory" };
  }
  if (env !== undefined && env !== "") {
    return { bytes: parseDeviceMemoryGb(env, DEVICE_MEMORY_ENV), source: DEVICE_MEMORY_ENV };
  }
  return undefined;
}

/** The device's memory when it is not known, and why (one line, for the log). */
export interface UnknownDeviceMemory {
  /** No figure. */
  readonly bytes: null;
  /** Why: no nvidia-smi, it failed or was stopped, it printed no figure, or a GPU is in MIG mode. */
  readonly reason: string;
}

/**
 * The GPU's total memory: the override when given, else `nvidia-smi`'s (`memory.total`, the
 * smallest GPU: {@link parseNvidiaSmiMemory}; `source` says `nvidia-smi`, with the GPUs left out
 * when some printed `[N/A]`), else unknown with the reason: nvidia-smi absent, failing, stopped
 * after {@link NVIDIA_SMI_TIMEOUT_MS} (the default runner), printing no figure, or throwing.
 *
 * Under MIG (a GPU with `mig.mode.current` Enabled), `memory.total` is the whole card's, not the
 * MIG instance's this process is given (which `nvidia-smi --query-gpu` does not report), so the
 * memory is unknown and the reason says so; `--device-memory GB` states the instance's. The MIG
 * mode is asked in a second call, only once a total was read; a driver that does not know the
 * field (before MIG) fails that call, which counts as no MIG.
 *
 * @param override {@link deviceMemoryOverride}'s result
 * @param run the command runner (default {@link denoCommandRunner}: each call stopped after 20 s)
 * @returns the memory, or `{ bytes: null, reason }`
 */
export async function probeDeviceMemory(
  override: DeviceMemory | undefined,
  run: CommandRunner = denoCommandRunner,
): Promise<DeviceMemory | UnknownDeviceMemory> {
  if (override !== undefined) return override;
  let r;
  try {
    r = await run("nvidia-smi", ["--query-gpu=memory.total", "--format=csv,noheader,nounits"]);
  } catch (e) {
    return { bytes: null, reason: `nvidia-smi could not be run: ${oneLine((e as Error).message)}` };
  }
  if (r === undefined) return { bytes: null, reason: "nvidia-smi not found (no NVIDIA driver)" };
  if (!r.success) return { bytes: null, reason: `nvidia-smi failed: "${oneLine(r.stdout)}"` };
  const total = parseNvidiaSmiMemory(r.stdout);
  if (total.bytes === undefined) return { bytes: null, reason: total.reason };
  let mig;
  try {
    mig = await run("nvidia-smi", ["--query-gpu=mig.mode.current", "--format=csv,noheader"]);
  } catch {
    mig = undefined; // as a driver without the field: no MIG known
  }
  if (mig?.success === true) {
    const on = mig.stdout.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== "")
      .flatMap((l, gpu) => (l === "Enabled" ? [gpu] : []));
    if (on.length > 0) {
      return {
        bytes: null,
        reason: `GPU ${on.join(", ")} ${on.length === 1 ? "is" : "are"} in MIG mode: ` +
          `nvidia-smi's memory.total (${fmtGb(total.bytes)}) is the whole card's, and the MIG ` +
          `instance's memory is not known`,
      };
    }
  }
  return {
    bytes: total.bytes,
    source: total.note === undefined ? "nvidia-smi" : `nvidia-smi; ${total.note}`,
  };
}

/** A program's output or an error message as one line of at most 200 characters. */
function oneLine(text: string): string {
  const s = text.replace(/\s+/g, " ").trim();
  return s.length > 200 ? `${s.slice(0, 199)}…` : s;
}

/**
 * The kernel set a backend trains with: the fused kernels of `model/fused.ts` / `model/heads.ts`
 * on webgpu (`"fused"`) and wasm (`"fused-wasm-blas"` on `wasm+blas`, with OpenBLAS's head
 * products; `"fused-wasm"` on plain `wasm`, which bench plans only where OpenBLAS does not load or
 * is turned off: `cli.ts` resolves `--backend wasm` as `model/backend.ts` `wasmEngine` does),
 * stock tfjs ops on cpu and tensorflow (tfjs-node,
 * tfjs-node-gpu). With `HYPERPROMPT_WASM_STOCK_ELEMENTWISE=1`, `selectBackend` leaves the wasm
 * fused kernels out (model/backend.ts `startWasm`), so a wasm run is estimated as `"composite"`
 * (as benchmarks/perf.ts `installedWasmHeapModel` reads it): the larger estimate, as OpenBLAS's
 * head products and the in-place optimizer updates stay installed.
 *
 * @param backend the backend's name (`selectBackend`'s `name`)
 * @param stockElementwise whether wasm keeps tfjs's stock elementwise kernels (default:
 *   `HYPERPROMPT_WASM_STOCK_ELEMENTWISE=1`, what `selectBackend` reads)
 */
export function kernelSetFor(
  backend: string,
  stockElementwise: boolean = wasmStockElementwiseFromEnv(),
): KernelSet {
  if (backend === "webgpu") return "fused";
  if (!backend.startsWith("wasm") || stockElementwise) return "composite";
  return backend === "wasm+blas" ? "fused-wasm-blas" : "fused-wasm";
}

/**
 * What the memory estimate needs of an optimizer configuration (memory.ts `OptimizerMemory`):
 * every field of `cfg` that changes its slots or its update's temporaries, defaults left out
 * (so the input, and the preflight's cache key, is that of a configuration without them).
 *
 * @param cfg the optimizer's configuration (benchmarks/trainer.ts `optimizerConfigFor`)
 * @param zeroLearningRateStep whether some update runs at learning rate 0
 *   ({@link hasZeroLearningRateStep}); it matters only with Adafactor's `weightDecayRate`
 * @returns the estimate's optimizer input
 */
export function optimizerMemoryFor(
  cfg: OptimizerConfig,
  zeroLearningRateStep: boolean,
): OptimizerMemory {
  const wd = (cfg.weightDecay ?? 0) > 0 ? { weightDecay: cfg.weightDecay! } : {};
  if (cfg.kind === "adamw") return { kind: "adamw", ...wd };
  const rate = cfg.weightDecayRate ?? 0;
  return {
    kind: "adafactor",
    ...(cfg.factored === false ? { factored: false } : {}),
    ...(cfg.minDimSizeToFactor === undefined ? {} : { minDimSizeToFactor: cfg.minDimSizeToFactor }),
    ...((cfg.beta1 ?? 0) > 0 ? { beta1: cfg.beta1! } : {}),
    ...(cfg.multiplyByParameterScale ? { multiplyByParameterScale: true } : {}),
    ...wd,
    ...(rate > 0
      ? { weightDecayRate: rate, ...(zeroLearningRateStep ? { zeroLearningRateStep } : {}) }
      : {}),
  };
}

/**
 * Whether some update of a run has learning rate 0 (benchmarks/schedule.ts `learningRateAt`):
 * the first, or none. The warmups ramp up from the first update (`warmup_linear`'s is 0 when it
 * has warmup steps) and the decays stay above 0 before the run's end, so the first update's rate
 * decides (a peak rate of 0 makes every update's 0).
 *
 * @param t the run's training settings
 */
export function hasZeroLearningRateStep(t: TrainSpec): boolean {
  return t.steps > 0 && !(learningRateAt(t.schedule, t.learningRate, 0, t.steps) > 0);
}

/**
 * The memory estimate's input for a run.
 *
 * @param spec the run
 * @param config its model's configuration
 * @param kernels the kernel set of the backend it runs on
 * @param microBatchSize rows per pass (default the spec's `train.microBatchSize`, else the batch)
 * @param backprop the backward pass the run will use (`model/backend.ts` `backpropFromEnv()`;
 *   default the low-memory one `selectBackend` installs)
 * @param submitBatch webgpu's dispatches per command buffer
 *   (`model/webgpu/submit_batch.ts` `submitBatchFromEnv()`; default the kernels' own)
 * @param xnnMatMul whether the products run on tfjs-wasm's own matMul (XNNPACK's packed copies,
 *   memory.ts `MemoryInput.xnnMatMul`; {@link xnnMatMulFor}); default false
 */
export function memoryInputFor(
  spec: RunSpec,
  config: T5Config,
  kernels: KernelSet,
  microBatchSize?: number,
  backprop: BackpropMode = DEFAULT_BACKPROP,
  submitBatch?: number,
  xnnMatMul = false,
): MemoryInput {
  const t = spec.train;
  const micro = microBatchSize ?? t.microBatchSize;
  return {
    config,
    method: spec.method.name,
    methodConfig: spec.method.config ?? {},
    // The per-task variables of every task the method tells apart (DPR's unless it shares WSC's).
    numTasks: conditionedTasks(spec).length,
    // The optimizer benchmarks/trainer.ts `train` creates (one source: `optimizerConfigFor`).
    optimizer: optimizerMemoryFor(optimizerConfigFor(t), hasZeroLearningRateStep(t)),
    batchSize: t.batchSize,
    ...(micro === undefined ? {} : { microBatchSize: micro }),
    inputLength: t.maxInputLength,
    targetLength: t.maxTargetLength,
    dropout: t.dropout > 0,
    ...(t.zLoss ? { zLoss: t.zLoss } : {}),
    ...(t.labelSmoothing ? { labelSmoothing: t.labelSmoothing } : {}),
    kernels,
    backprop,
    ...(submitBatch === undefined ? {} : { submitBatch }),
    ...(xnnMatMul ? { xnnMatMul } : {}),
  };
}

/**
 * Whether a backend's matrix products run on tfjs-wasm's own `BatchMatMul` (XNNPACK, which keeps
 * a packed copy of every weight the backward pass multiplies untransposed: memory.ts
 * `MemoryInput.xnnMatMul`): plain `wasm` (bench resolves `--backend wasm` to `wasm+blas` where
 * OpenBLAS loads, so a `wasm` plan is of a run without it), not `wasm+blas` (every float32
 * product in OpenBLAS, model/wasm_kernels.ts mode `"blas"`) nor any other backend.
 *
 * @param backend the backend's name (`selectBackend`'s `name`)
 */
export function xnnMatMulFor(backend: string): boolean {
  return backend === "wasm";
}

/** The backend a run would use, as the preflight sees it. */
export interface RunBackend {
  /** `selectBackend`'s name (webgpu, tensorflow, wasm+blas, wasm, cpu). */
  readonly name: string;
  /** Whether it is a GPU (`cli.ts` `isGpuBackend`). */
  readonly gpu: boolean;
}

/** The preflight's view of one run. */
export interface RunMemoryPlan {
  /** The kernel set of its backend. */
  readonly kernels: KernelSet;
  /** Rows per pass it would train with (the spec's micro-batch, the chosen one, or the batch). */
  readonly microBatchSize: number;
  /** True when the preflight chose `microBatchSize` (the spec sets none; the batch does not fit). */
  readonly chosen: boolean;
  /** The estimate at `microBatchSize`. */
  readonly estimate: MemoryEstimate;
  /**
   * Whether it fits the device (undefined: memory unknown or not a GPU or wasm run); for a wasm
   * run, the wasm heap.
   */
  readonly fits?: boolean;
  /** True for a run checked against the wasm heap ({@link WASM_HEAP}) rather than a GPU. */
  readonly wasmHeap?: boolean;
}

/** What {@link planDeviceMemory} decided. */
export interface DeviceMemoryPlan {
  /** Per run id; absent for a run whose model size is unknown (a hub id not downloaded). */
  readonly runs: ReadonlyMap<string, RunMemoryPlan>;
  /** The micro-batch sizes the preflight chose, by run id (for `runGrid`). */
  readonly microBatchSizes: ReadonlyMap<string, number>;
  /** One message per GPU or wasm run that cannot fit (before training: refuse). */
  readonly refusals: readonly string[];
  /**
   * Lines to log: one per distinct configuration the preflight changed, and once each what the
   * estimate of a method outside the built-in ones assumes or cannot count
   * ({@link MemoryEstimate.notes}).
   */
  readonly notes: readonly string[];
}

/**
 * Bytes as GB with one decimal, or `decimals` (MB or bytes below 0.1 GB, so that a small size is
 * not 0.0).
 */
export function fmtGb(bytes: number, decimals = 1): string {
  if (bytes >= 1e8) return `${(bytes / 1e9).toFixed(decimals)} GB`;
  return bytes >= 1e5 ? `${(bytes / 1e6).toFixed(decimals)} MB` : `${Math.round(bytes)} B`;
}

/**
 * Two sizes for "`over` exceeds `limit`", as {@link fmtGb} writes them, with one decimal more (up
 * to 3) while two different sizes would read the same ("135.7 GB exceeds 135.7 GB").
 *
 * @returns `over` and `limit`, formatted
 */
export function fmtGbPair(over: number, limit: number): [string, string] {
  let d = 1;
  while (d < 3 && over !== limit && fmtGb(over, d) === fmtGb(limit, d)) d++;
  return [fmtGb(over, d), fmtGb(limit, d)];
}

/** The share of the machine's memory above which a run on the host's memory is warned of. */
export const HOST_MEMORY_SHARE = 0.9;

/**
 * The runs of a plan that train on the host's memory (no GPU, not the wasm heap: the `cpu`
 * backend, tfjs-node on the CPU) whose estimated peak exceeds {@link HOST_MEMORY_SHARE} of the
 * machine's memory: a warning each (one per configuration), not a refusal (the estimate counts
 * tensors, and the operating system may swap).
 *
 * @param specs the runs
 * @param plan the preflight's plan (its estimates)
 * @param o the backend of each run, the machine's memory in bytes, a run's model name
 * @returns the warnings, without the `warning: ` prefix
 */
export function hostMemoryWarnings(
  specs: readonly RunSpec[],
  plan: DeviceMemoryPlan,
  o: {
    readonly backendOf: (spec: RunSpec) => RunBackend;
    readonly totalBytes: number;
    readonly modelName: (spec: RunSpec) => string;
  },
): string[] {
  const limit = HOST_MEMORY_SHARE * o.totalBytes;
  const byPeak = new Map<number, string[]>();
  for (const spec of specs) {
    const b = o.backendOf(spec);
    const p = plan.runs.get(spec.id);
    if (b.gpu || isWasmBackend(b.name) || p === undefined || !(p.estimate.peak > limit)) continue;
    byPeak.set(p.estimate.peak, [
      ...(byPeak.get(p.estimate.peak) ?? []),
      runName(spec, o.modelName(spec)),
    ]);
  }
  return [...byPeak].map(([peak, runs]) => {
    const [over, total] = fmtGbPair(peak, o.totalBytes);
    const named = runs.length <= 2 ? runs : [...runs.slice(0, 2), `and ${runs.length - 2} more`];
    return `${runs.length === 1 ? runs[0] : `${runs.length} runs (${named.join("; ")})`}: ` +
      `estimated peak ${over}, more than ${Math.round(100 * HOST_MEMORY_SHARE)}% of this ` +
      `machine's memory (${total}): ${runs.length === 1 ? "it" : "they"} may run out of memory ` +
      `or swap; train.microBatchSize splits each batch into passes that need less`;
  });
}

/**
 * A short name of a run for messages: `run <id> (<model>, <label>[ <task>], <benchmark>, s<seed>)`.
 *
 * @param spec the run
 * @param model its model's name as the messages show it
 * @returns the name
 */
export function runName(spec: RunSpec, model: string): string {
  return `run ${spec.id} (${model}, ${spec.method.label}${
    perTaskTag(spec)
  }, ${spec.benchmark}, s${spec.seed})`;
}

/**
 * The preflight: for each run, the estimate with its backend's kernel set; for a GPU run with
 * the device's memory known, or a wasm run (against the wasm heap, {@link WASM_HEAP}), the
 * largest micro-batch that divides the batch and fits (when the
 * spec sets no `train.microBatchSize` and the batch does not fit), or a refusal (not even one
 * row fits, or the spec's micro-batch does not). Other runs (cpu, tfjs-node), or GPU runs with
 * the memory unknown, are left as they are (their estimate is still returned, for `--dry-run`).
 *
 * @param specs the runs
 * @param o the backend of each run, the device's memory, the model configuration of a run
 *   (undefined: unknown, no estimate), its display name, the backward pass the runs will use
 *   (`model/backend.ts` `backpropFromEnv()`; default the low-memory one), and webgpu's dispatches
 *   per command buffer (`submitBatchFromEnv()`; default the kernels' own)
 * @returns the plan
 */
export function planDeviceMemory(
  specs: readonly RunSpec[],
  o: {
    readonly backendOf: (spec: RunSpec) => RunBackend;
    readonly device: DeviceMemory | undefined;
    readonly configOf: (spec: RunSpec) => T5Config | undefined;
    readonly modelName: (spec: RunSpec) => string;
    readonly backprop?: BackpropMode;
    readonly submitBatch?: number;
  },
): DeviceMemoryPlan {
  const runs = new Map<string, RunMemoryPlan>();
  const micro = new Map<string, number>();
  const refusals: string[] = [];
  const notes: string[] = [];
  // Estimates depend on the configuration, not the seed or id: one per distinct input.
  const cache = new Map<string, RunMemoryPlan & { note?: string; refusal?: string }>();
  for (const spec of specs) {
    const config = o.configOf(spec);
    if (config === undefined) continue;
    const backend = o.backendOf(spec);
    const kernels = kernelSetFor(backend.name);
    const input = memoryInputFor(
      spec,
      config,
      kernels,
      undefined,
      o.backprop,
      o.submitBatch,
      xnnMatMulFor(backend.name),
    );
    // A wasm run is checked against the wasm heap, whatever the GPU's memory.
    const wasm = isWasmBackend(backend.name);
    const device = wasm ? WASM_HEAP : backend.gpu ? o.device : undefined;
    const key = JSON.stringify([input, device, wasm]);
    let plan = cache.get(key);
    if (plan === undefined) {
      plan = decide(spec, input, device, o.modelName(spec), backend.name, wasm);
      cache.set(key, plan);
      if (plan.note !== undefined) notes.push(plan.note);
      // What the estimate of a method outside the built-in ones assumes or cannot count: once.
      for (const n of plan.estimate.notes) {
        const line = `Memory estimate: ${n}`;
        if (!notes.includes(line)) notes.push(line);
      }
    }
    const { note: _n, refusal, ...p } = plan;
    runs.set(spec.id, p);
    if (p.chosen) micro.set(spec.id, p.microBatchSize);
    if (refusal !== undefined) {
      refusals.push(`${runName(spec, o.modelName(spec))}: ${refusal}`);
    }
  }
  return { runs, microBatchSizes: micro, refusals, notes };
}

function decide(
  spec: RunSpec,
  input: MemoryInput,
  device: DeviceMemory | undefined,
  model: string,
  backend: string,
  wasm: boolean,
): RunMemoryPlan & { note?: string; refusal?: string } {
  const t = spec.train;
  // The rows per pass the trainer would use; smaller than the batch only when the spec sets them.
  const own = rowsPerPass(t);
  const explicit = own < t.batchSize;
  const estimate = estimateTrainingMemory(input);
  const base = {
    kernels: input.kernels!,
    microBatchSize: own,
    chosen: false,
    estimate,
    ...(wasm ? { wasmHeap: true } : {}),
  };
  if (device === undefined) return base;
  const margin = wasm ? wasmHeapMargin(input.xnnMatMul) : DEVICE_MARGIN;
  const usable = device.bytes * (1 - margin);
  // "<peak> … exceeds <usable> usable …": both with the decimals that tell them apart.
  const exceeds = (peak: number): [string, string] => {
    const [over, limit] = fmtGbPair(peak, usable);
    return [
      over,
      `${limit} usable (${Math.round(100 * (1 - margin))}%) of ${
        wasm ? "the wasm heap's" : "the GPU's"
      } ${
        fmtGb(device.bytes)
      } (${device.source}); ${backend}, ${input.kernels} kernels, ${input.backprop} backward pass`,
    ];
  };
  // What to do when not even one row fits.
  const bigger = wasm
    ? `train on a GPU backend (--backend webgpu or tensorflow), or use ${
      input.optimizer.kind === "adamw" ? "Adafactor instead of AdamW (no moment matrices), " : ""
    }shorter sequences or a smaller model`
    : "use a GPU with more memory or a smaller model";
  if (fitsDevice(estimate, device.bytes, margin)) return { ...base, fits: true };
  const best = largestFittingMicroBatch(input, device.bytes, margin);
  if (explicit) {
    const [peak, where] = exceeds(estimate.peak);
    return {
      ...base,
      fits: false,
      refusal: `estimated peak ${peak} at train.microBatchSize ${own} exceeds ${where}; ${
        best === undefined
          ? `no micro-batch fits (micro-batch 1: ${
            fmtGb(estimateTrainingMemory({ ...input, microBatchSize: 1 }).peak)
          }): ${bigger}`
          : `set train.microBatchSize to ${best} or less (a divisor of ${t.batchSize}), or remove it to let bench choose`
      }`,
    };
  }
  if (best === undefined) {
    const one = estimateTrainingMemory({ ...input, microBatchSize: 1 });
    // The smallest estimate is the one that must read as more than the usable memory.
    const [peakOne, where] = exceeds(one.peak);
    return {
      ...base,
      fits: false,
      refusal:
        `estimated peak ${
          fmtGb(estimate.peak)
        } at batch ${t.batchSize}, ${peakOne} even at micro-batch 1 (weights, gradients, accumulator and optimizer state alone: ${
          fmtGb(one.weights + one.gradients + one.accumulator + one.optimizerState)
        }), exceeds ${where}: ${bigger} (this trainer keeps fp32 weights and gradients on one ` +
        `device)${wasm ? "" : "; --device-memory GB overrides the size if it is wrong"}`,
    };
  }
  const chosen = estimateTrainingMemory({ ...input, microBatchSize: best });
  const [peak, where] = exceeds(estimate.peak);
  return {
    ...base,
    microBatchSize: best,
    chosen: true,
    estimate: chosen,
    fits: true,
    note:
      `Memory: ${model} ${spec.benchmark} ${spec.method.label}, batch ${t.batchSize}: estimated peak ${peak} exceeds ${where}; training with micro-batches of ${best} (${
        fmtGb(chosen.peak)
      }; gradient accumulation, same optimizer steps; set train.microBatchSize to choose)`,
  };
}

/**
 * A word as a POSIX shell reads it back unchanged: as it is when it holds only characters no
 * shell treats specially, else in single quotes (`'Vanilla Adapter'`).
 */
function shellWord(s: string): string {
  return /^[\w.,:=@%/+-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`;
}

/**
 * The `--methods` argument that selects `labels`: one comma-separated, shell-quoted value, or one
 * `--methods` per label when a label holds a comma (the CLI would split the joined value there).
 */
function methodsArgument(labels: readonly string[]): string {
  return labels.some((l) => l.includes(","))
    ? labels.map((l) => `--methods ${shellWord(l)}`).join(" ")
    : `--methods ${shellWord(labels.join(","))}`;
}

/**
 * For a preflight that refuses some runs: when the runs of some methods all pass it, the line
 * that names them, names the methods with a run that does not fit, and gives the `--methods`
 * argument that runs only the former (`deno task bench --methods`, which keeps a profile's runs
 * of the labels it lists). A method counts as fitting when none of its runs is refused (a run not
 * checked, its model's size unknown, is not refused).
 *
 * @param specs the runs the preflight planned
 * @param plan {@link planDeviceMemory}'s result for them
 * @returns the line, or undefined when nothing is refused or every method has a refused run
 */
export function fittingMethodsAdvice(
  specs: readonly RunSpec[],
  plan: DeviceMemoryPlan,
): string | undefined {
  if (plan.refusals.length === 0) return undefined;
  const labels: string[] = [];
  const refused = new Set<string>();
  for (const s of specs) {
    const label = s.method.label;
    if (!labels.includes(label)) labels.push(label);
    if (plan.runs.get(s.id)?.fits === false) refused.add(label);
  }
  const fit = labels.filter((l) => !refused.has(l));
  if (fit.length === 0 || refused.size === 0) return undefined;
  const names = (ls: readonly string[]) => ls.map((l) => `"${l}"`).join(", ");
  return `Every run of ${names(fit)} fits; ${names([...refused])} ${
    refused.size === 1 ? "has" : "have"
  } runs that do not. To train only the methods that fit, add ${methodsArgument(fit)}`;
}
