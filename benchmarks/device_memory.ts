/**
 * The GPU's memory and the bench preflight: before any training, `deno task bench` estimates
 * each GPU run's peak memory (benchmarks/memory.ts) and, where the device's memory is known,
 * picks a micro-batch that fits (gradient accumulation) or refuses the run.
 *
 * The device's memory comes from, in this order: `--device-memory GB`, the environment variable
 * `HYPERPROMPT_DEVICE_MEMORY_GB`, `nvidia-smi --query-gpu=memory.total` (the smallest GPU it
 * lists). WebGPU exposes no total memory, so without those it is unknown.
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
import { UsageError } from "../model/usage.ts";
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
} from "./memory.ts";
import { perTaskTag, type RunSpec } from "./spec.ts";

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
 * 1 / (1 − 0.15) = 1.18.
 */
export const WASM_HEAP_MARGIN = 0.15;

/**
 * Runs a command and returns its exit status and standard output, or `undefined` when the
 * program does not exist (tests inject a fake).
 */
export type CommandRunner = (
  cmd: string,
  args: readonly string[],
) => Promise<{ readonly success: boolean; readonly stdout: string } | undefined>;

/** {@link CommandRunner} through `Deno.Command`; a missing program (or no permission) gives undefined. */
export async function denoCommandRunner(
  cmd: string,
  args: readonly string[],
): Promise<{ readonly success: boolean; readonly stdout: string } | undefined> {
  try {
    const out = await new Deno.Command(cmd, {
      args: [...args],
      stdout: "piped",
      stderr: "null",
      stdin: "null",
    }).output();
    return { success: out.success, stdout: new TextDecoder().decode(out.stdout) };
  } catch {
    // Deno.errors.NotFound (no nvidia-smi), NotCapable/PermissionDenied: unknown, not a crash.
    return undefined;
  }
}

/**
 * Parses `nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits` (MiB per GPU, one
 * line each) into bytes: the smallest GPU listed (a run uses one GPU; on a mixed machine the
 * smallest is the safe figure).
 *
 * @param stdout the command's output
 * @returns bytes, or undefined when no line is a positive number (e.g. "[N/A]")
 */
export function parseNvidiaSmiMemory(stdout: string): number | undefined {
  const mib = stdout.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== "").map(Number)
    .filter((n) => Number.isFinite(n) && n > 0);
  return mib.length === 0 ? undefined : Math.min(...mib) * 2 ** 20;
}

/** A sample of the GPU's memory in use: bytes, or `null` with the reason it is unknown. */
export type DeviceMemoryUsed =
  | { readonly bytes: number; readonly reason?: undefined }
  | { readonly bytes: null; readonly reason: string };

/**
 * The GPU memory in use now, by every process, from `nvidia-smi --query-gpu=memory.used
 * --format=csv,noheader,nounits` (MiB per GPU, one line each; summed, so that a delta between two
 * samples is this process's change whichever GPU it runs on). Never throws: without nvidia-smi
 * (a software adapter, CI), or when it fails or prints no number, the bytes are `null` and the
 * reason says which.
 *
 * @param run the command runner (default `Deno.Command`)
 * @returns the sample
 */
export async function deviceMemoryUsed(
  run: CommandRunner = denoCommandRunner,
): Promise<DeviceMemoryUsed> {
  let r;
  try {
    r = await run("nvidia-smi", ["--query-gpu=memory.used", "--format=csv,noheader,nounits"]);
  } catch (e) {
    return { bytes: null, reason: `nvidia-smi could not be run: ${(e as Error).message}` };
  }
  if (r === undefined) return { bytes: null, reason: "nvidia-smi not found (no NVIDIA driver)" };
  const out = r.stdout.trim().slice(0, 200);
  if (!r.success) return { bytes: null, reason: `nvidia-smi failed: "${out}"` };
  const lines = r.stdout.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== "");
  const mib = lines.map(Number);
  if (lines.length === 0 || mib.some((n) => !Number.isFinite(n) || n < 0)) {
    return { bytes: null, reason: `nvidia-smi printed no memory.used number: "${out}"` };
  }
  return { bytes: mib.reduce((a, b) => a + b, 0) * 2 ** 20 };
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
  const gb = text.trim() === "" ? NaN : Number(text);
  if (!Number.isFinite(gb) || gb <= 0) {
    // "80GB" or "80 GiB": the number is wanted without its unit.
    const unit = /^\s*\d*\.?\d+\s*[a-z]+\s*$/i.test(text)
      ? " (the number alone, without a unit)"
      : "";
    throw new UsageError(
      `${name} must be the GPU's memory in GB (a positive number, e.g. 80), got "${text}"${unit}`,
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

/**
 * The GPU's total memory: the override when given, else `nvidia-smi`'s, else undefined (no
 * nvidia-smi, it failed, or it printed no number).
 *
 * @param override {@link deviceMemoryOverride}'s result
 * @param run the command runner (default `Deno.Command`)
 * @returns the memory, or undefined when unknown
 */
export async function deviceMemory(
  override: DeviceMemory | undefined,
  run: CommandRunner = denoCommandRunner,
): Promise<DeviceMemory | undefined> {
  if (override !== undefined) return override;
  const r = await run("nvidia-smi", [
    "--query-gpu=memory.total",
    "--format=csv,noheader,nounits",
  ]);
  if (r === undefined || !r.success) return undefined;
  const bytes = parseNvidiaSmiMemory(r.stdout);
  return bytes === undefined ? undefined : { bytes, source: "nvidia-smi" };
}

/**
 * The kernel set a backend trains with: the fused kernels of `model/fused.ts` / `model/heads.ts`
 * on webgpu (`"fused"`) and wasm (`"fused-wasm-blas"` with OpenBLAS's head products,
 * `"fused-wasm"` without: `--backend wasm` takes OpenBLAS only where it loads, and the estimate
 * without its head kernels is the larger), stock tfjs ops on cpu and tensorflow (tfjs-node,
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
 */
export function memoryInputFor(
  spec: RunSpec,
  config: T5Config,
  kernels: KernelSet,
  microBatchSize?: number,
  backprop: BackpropMode = DEFAULT_BACKPROP,
  submitBatch?: number,
): MemoryInput {
  const t = spec.train;
  const micro = microBatchSize ?? t.microBatchSize;
  return {
    config,
    method: spec.method.name,
    methodConfig: spec.method.config ?? {},
    numTasks: spec.tasks.length,
    optimizer: t.optimizer === "adamw" ? { kind: "adamw" } : {
      kind: "adafactor",
      ...(t.adafactor?.minDimSizeToFactor === undefined
        ? {}
        : { minDimSizeToFactor: t.adafactor.minDimSizeToFactor }),
    },
    batchSize: t.batchSize,
    ...(micro === undefined ? {} : { microBatchSize: micro }),
    inputLength: t.maxInputLength,
    targetLength: t.maxTargetLength,
    dropout: t.dropout > 0,
    kernels,
    backprop,
    ...(submitBatch === undefined ? {} : { submitBatch }),
  };
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
  /** Lines to log (one per distinct configuration the preflight changed). */
  readonly notes: readonly string[];
}

/** Bytes as GB with one decimal (MB or bytes below 0.1 GB, so that a small size is not 0.0). */
export function fmtGb(bytes: number): string {
  if (bytes >= 1e8) return `${(bytes / 1e9).toFixed(1)} GB`;
  return bytes >= 1e5 ? `${(bytes / 1e6).toFixed(1)} MB` : `${Math.round(bytes)} B`;
}

/** A short name of a run for messages. */
function runName(spec: RunSpec, model: string): string {
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
    const input = memoryInputFor(spec, config, kernels, undefined, o.backprop, o.submitBatch);
    // A wasm run is checked against the wasm heap, whatever the GPU's memory.
    const wasm = isWasmBackend(backend.name);
    const device = wasm ? WASM_HEAP : backend.gpu ? o.device : undefined;
    const key = JSON.stringify([input, device, wasm]);
    let plan = cache.get(key);
    if (plan === undefined) {
      plan = decide(spec, input, device, o.modelName(spec), backend.name, wasm);
      cache.set(key, plan);
      if (plan.note !== undefined) notes.push(plan.note);
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
  const explicit = t.microBatchSize !== undefined && t.microBatchSize < t.batchSize;
  const own = explicit ? t.microBatchSize! : t.batchSize;
  const estimate = estimateTrainingMemory(input);
  const base = {
    kernels: input.kernels!,
    microBatchSize: own,
    chosen: false,
    estimate,
    ...(wasm ? { wasmHeap: true } : {}),
  };
  if (device === undefined) return base;
  const margin = wasm ? WASM_HEAP_MARGIN : DEVICE_MARGIN;
  const usable = device.bytes * (1 - margin);
  const where = `${fmtGb(usable)} usable (${Math.round(100 * (1 - margin))}%) of ${
    wasm ? "the wasm heap's" : "the GPU's"
  } ${
    fmtGb(device.bytes)
  } (${device.source}); ${backend}, ${input.kernels} kernels, ${input.backprop} backward pass`;
  // What to do when not even one row fits.
  const bigger = wasm
    ? `train on a GPU backend (--backend webgpu or tensorflow), or use ${
      input.optimizer.kind === "adamw" ? "Adafactor instead of AdamW (no moment matrices), " : ""
    }shorter sequences or a smaller model`
    : "use a GPU with more memory or a smaller model";
  if (fitsDevice(estimate, device.bytes, margin)) return { ...base, fits: true };
  const best = largestFittingMicroBatch(input, device.bytes, margin);
  if (explicit) {
    return {
      ...base,
      fits: false,
      refusal: `estimated peak ${
        fmtGb(estimate.peak)
      } at train.microBatchSize ${own} exceeds ${where}; ${
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
    return {
      ...base,
      fits: false,
      refusal:
        `estimated peak ${fmtGb(estimate.peak)} at batch ${t.batchSize}, ${
          fmtGb(one.peak)
        } even at micro-batch 1 (weights, gradients, accumulator and optimizer state alone: ${
          fmtGb(one.weights + one.gradients + one.accumulator + one.optimizerState)
        }), exceeds ${where}: ${bigger} (this trainer keeps fp32 weights and gradients on one ` +
        `device)${wasm ? "" : "; --device-memory GB overrides the size if it is wrong"}`,
    };
  }
  const chosen = estimateTrainingMemory({ ...input, microBatchSize: best });
  return {
    ...base,
    microBatchSize: best,
    chosen: true,
    estimate: chosen,
    fits: true,
    note: `Memory: ${model} ${spec.method.label}, batch ${t.batchSize}: estimated peak ${
      fmtGb(estimate.peak)
    } exceeds ${where}; training with micro-batches of ${best} (${
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
