/**
 * Compute-engine selection for tfjs in Deno.
 *
 * {@link selectBackend} starts one tfjs backend and records what it got in a {@link BackendInfo}
 * (printed and returned; every result row should carry it). Preference order for `"auto"`:
 *
 * 1. `tensorflow`: `@tensorflow/tfjs-node-gpu`, then `@tensorflow/tfjs-node`, when they import
 *    AND run a tiny op. They are not dependencies of this project (their install script downloads
 *    libtensorflow from Google's storage host); a deployment that can install them adds them to
 *    deno.json "imports".
 * 2. `webgpu`: when `navigator.gpu` gives an adapter that is not a fallback (software) adapter.
 *    The custom kernels of `model/webgpu/` are installed after an on-device self-check, with the
 *    matmul tuning table of this adapter (`results/tuning/<adapter>.json`, made by
 *    `deno task tune`) when there is one.
 * 3. `wasm+blas`: the wasm backend with `BatchMatMul`/`_FusedMatMul` sent to OpenBLAS through
 *    Deno FFI (see model/wasm_kernels.ts).
 * 4. `wasm`: the wasm backend with the transpose fix.
 * 5. `cpu`: the pure-JS reference backend.
 *
 * Environment: `HYPERPROMPT_BACKEND` replaces a request of `"auto"` (an explicit request wins);
 * `HYPERPROMPT_NO_BLAS=1` forces the pure-wasm path; `HYPERPROMPT_WASM_STOCK_ELEMENTWISE=1` keeps
 * tfjs's own (slower) wasm elementwise kernels; `HYPERPROMPT_WEBGPU_TUNING` names a tuning table
 * file to use instead of the adapter's committed one, or `off` for none;
 * `HYPERPROMPT_STOCK_BACKPROP=1` keeps tfjs's own backward pass (see below).
 *
 * Backward pass: every selection installs the low-memory backward pass of `model/backprop.ts`
 * (bit-identical gradients; each intermediate's gradient is freed once no later node reads it,
 * which more than halves a training step's peak: −49 % measured on a tiny T5 step,
 * `model/backprop_test.ts`), unless `HYPERPROMPT_STOCK_BACKPROP=1`, which restores
 * tfjs's own. Which one runs is one of {@link BackendInfo.notes}, so it is in every run's
 * provenance.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { tfjsAdapterOptions } from "./webgpu/adapter.ts";
import * as tfwasm from "@tensorflow/tfjs-backend-wasm";
import { registerFusedWasmKernels, unregisterFusedWasmKernels } from "./fused.ts";
import { enableSimdKernels } from "./wasm_simd.ts";
import { type AdapterId, adapterId, type MatMulTuningTable } from "./webgpu/tuning.ts";
import type { TunedSelfCheck } from "./webgpu/mod.ts";
import { quietWaylandProbe } from "./webgpu/wsi_env.ts";
import { UsageError } from "./usage.ts";
import { readEnv as env } from "./env.ts";
import {
  BACKPROP_TFJS_VERSION,
  installLowMemoryBackprop,
  uninstallLowMemoryBackprop,
} from "./backprop.ts";
import {
  type BlasLibrary,
  openBlas,
  patchWasmElementwise,
  patchWasmMatMul,
  unpatchWasmElementwise,
  wasmMatMulState,
} from "./wasm_kernels.ts";

/** Backends a caller may ask for. `"wasm+blas"` is `"wasm"` that must get BLAS (throws if not). */
export type BackendName = "auto" | "tensorflow" | "webgpu" | "wasm" | "wasm+blas" | "cpu";

/** All accepted {@link BackendName}s. */
export const BACKEND_NAMES: readonly BackendName[] = [
  "auto",
  "tensorflow",
  "webgpu",
  "wasm",
  "wasm+blas",
  "cpu",
];

/** What {@link selectBackend} started. */
export interface BackendInfo {
  /** The name asked for (after the `HYPERPROMPT_BACKEND` override of `"auto"`). */
  readonly requested: BackendName;
  /** What runs: "tensorflow", "webgpu", "wasm+blas", "wasm" or "cpu". */
  readonly name: string;
  /** `tf.getBackend()` after selection. */
  readonly tfBackend: string;
  /**
   * WebGPU adapter description (vendor, device, fallback flag), the BLAS library in use, or for
   * tensorflow the package (`@tensorflow/tfjs-node-gpu` or `@tensorflow/tfjs-node`; the former
   * followed by {@link TFJS_NODE_GPU_ON_CPU} when TensorFlow found no GPU and runs on the CPU).
   */
  readonly adapter?: string;
  /**
   * True when webgpu runs on a software fallback adapter (only when asked for explicitly, or with
   * {@link SelectBackendOptions.allowFallbackAdapter}): it is not a GPU for speed, so callers
   * choosing work by speed (the default profile of `deno task bench`) must not count it as one.
   * Absent otherwise.
   */
  readonly fallbackAdapter?: true;
  /** CPU threads the heavy kernels use (OpenBLAS threads for wasm+blas). */
  readonly threads: number;
  /** Why each preferred engine was skipped, and anything else worth recording. */
  readonly notes: string[];
}

/** Options of {@link selectBackend}. */
export interface SelectBackendOptions {
  /** Where the one-line summary goes (default `console.error`, keeping stdout clean). */
  log?: (line: string) => void;
  /** Allow OpenBLAS for wasm (default true unless `HYPERPROMPT_NO_BLAS=1`). */
  blas?: boolean;
  /** Accept a WebGPU fallback (software) adapter for `"auto"` (default false). */
  allowFallbackAdapter?: boolean;
  /**
   * Install the faster wasm elementwise kernels and the fused kernels of `fused.ts` (default true unless
   * `HYPERPROMPT_WASM_STOCK_ELEMENTWISE=1`), and on webgpu the custom WGSL kernels of
   * `model/webgpu/` (unless `HYPERPROMPT_WEBGPU_KERNELS=0`). Turning them off (tfjs's own
   * kernels) is for A/B benchmarks.
   */
  fastElementwise?: boolean;
  /**
   * Imports `@tensorflow/tfjs-node-gpu` or `@tensorflow/tfjs-node` (default: a dynamic `import()`
   * of the specifier; tests pass a stand-in that registers a "tensorflow" backend, or throws as a
   * missing package does).
   */
  importTensorflow?: (specifier: string) => Promise<unknown>;
}

let current: BackendInfo | undefined;
let blasLib: BlasLibrary | undefined;
let blasError: string | undefined;

/** The environment variable that keeps tfjs's stock wasm elementwise kernels. */
export const WASM_STOCK_ELEMENTWISE_ENV = "HYPERPROMPT_WASM_STOCK_ELEMENTWISE";

/**
 * Whether `HYPERPROMPT_WASM_STOCK_ELEMENTWISE=1` asks {@link selectBackend} to leave the wasm
 * module's own elementwise kernels in place (and with them the fused wasm kernels off); the
 * memory preflight reads it to model the same kernel set.
 *
 * @returns true when the variable is `1`
 */
export function wasmStockElementwiseFromEnv(): boolean {
  return env(WASM_STOCK_ELEMENTWISE_ENV) === "1";
}

function errText(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  const [first, second] = msg.split("\n");
  // tfjs-node's native errors put the cause on a second line: "Invalid TF_Status: 13\nMessage:
  // cuDNN launch failure" (its binding's EnsureTFOK).
  const line = second !== undefined && /^\s*Message:/.test(second)
    ? `${first} (${second.trim()})`
    : first!;
  return line.slice(0, 300);
}

/** True when `name` is a {@link BackendName}. */
export function isBackendName(name: string): name is BackendName {
  return (BACKEND_NAMES as readonly string[]).includes(name);
}

/**
 * What to add to a refusal of a backend name that is none of {@link BACKEND_NAMES}: the name in
 * other case or with spaces (`WebGPU`, ` cpu`), where a word for a GPU (`gpu`, `cuda`,
 * `vulkan`, …) leads, or a package name of the tensorflow backend (`tfjs-node`, `node`).
 *
 * @param value the name given
 * @returns `""`, or text starting `"; "`
 */
export function backendHint(value: string): string {
  const plain = value.trim().toLowerCase();
  if (isBackendName(plain)) return `; did you mean ${plain}?`;
  if (
    /^(gpu|cuda|nvidia|vulkan|metal|d3d12|dx12|(@tensorflow\/)?tfjs-node-gpu|node-gpu)$/.test(plain)
  ) {
    return "; a GPU is reached through webgpu (WebGPU: Vulkan, Metal or D3D12) or tensorflow " +
      "(tfjs-node-gpu: CUDA), and auto takes the GPU when there is one";
  }
  if (/^(@tensorflow\/)?(tfjs-node|node|libtensorflow)$/.test(plain)) {
    return "; did you mean tensorflow? (tfjs-node or tfjs-node-gpu, whichever imports)";
  }
  return "";
}

/**
 * The backend `HYPERPROMPT_BACKEND` names, checked: a command-line tool calls it with its other
 * argument checks, so that a bad value stops the command before any work (exit code 2) instead
 * of failing in {@link selectBackend} once the work has started.
 *
 * @returns the name, or undefined when the variable is unset or empty
 * @throws UsageError naming the variable, its value and the choices
 */
export function backendFromEnv(): BackendName | undefined {
  const value = env("HYPERPROMPT_BACKEND");
  if (value === undefined || value === "") return undefined;
  if (!isBackendName(value)) {
    throw new UsageError(
      `HYPERPROMPT_BACKEND="${value}" is not one of ${BACKEND_NAMES.join(", ")}${
        backendHint(value)
      }`,
    );
  }
  return value;
}

/** Which backward pass training uses: `model/backprop.ts`'s or tfjs's own. */
export type BackpropMode = "low-memory" | "stock";

/** The environment variable that keeps tfjs's own backward pass (`1`; `0` or unset: not). */
export const STOCK_BACKPROP_ENV = "HYPERPROMPT_STOCK_BACKPROP";

/**
 * The backward pass {@link selectBackend} installs: `"stock"` when `HYPERPROMPT_STOCK_BACKPROP=1`
 * or the loaded tfjs-core is not the version `model/backprop.ts` mirrors (it then refuses to
 * install), else `"low-memory"`. A command-line tool calls it with its other argument checks, and
 * the memory preflight uses it to model the backward pass that will run.
 *
 * @returns the mode
 * @throws UsageError naming the variable when it is set to anything but `0`, `1` or empty
 */
export function backpropFromEnv(): BackpropMode {
  const value = env(STOCK_BACKPROP_ENV);
  if (value !== undefined && value !== "" && value !== "0" && value !== "1") {
    throw new UsageError(
      `${STOCK_BACKPROP_ENV}="${value}" must be 1 (tfjs's own backward pass) or 0 / unset ` +
        "(the low-memory backward pass of model/backprop.ts)",
    );
  }
  if (value === "1" || tf.version_core !== BACKPROP_TFJS_VERSION) return "stock";
  return "low-memory";
}

/** The environment variable that keeps the wasm backend off OpenBLAS (`1`; `0` or unset: not). */
export const NO_BLAS_ENV = "HYPERPROMPT_NO_BLAS";

/**
 * Whether `HYPERPROMPT_NO_BLAS=1` keeps wasm's matmuls off OpenBLAS (the pure-wasm path).
 *
 * @returns true when the variable is `1`
 * @throws UsageError naming the variable when it is set to anything but `0`, `1` or empty
 */
export function noBlasFromEnv(): boolean {
  const value = env(NO_BLAS_ENV);
  if (value !== undefined && value !== "" && value !== "0" && value !== "1") {
    throw new UsageError(
      `${NO_BLAS_ENV}="${value}" must be 1 (wasm without OpenBLAS) or 0 / unset (wasm+blas ` +
        "where OpenBLAS loads)",
    );
  }
  return value === "1";
}

/**
 * What {@link selectBackend} would run for a request of `"wasm"` or `"wasm+blas"`, without
 * starting it: `wasm+blas` where OpenBLAS loads (and `HYPERPROMPT_NO_BLAS` is not `1`), else
 * `wasm`; for `"wasm+blas"`, which must get BLAS, the reason it cannot start instead. The library
 * it opens stays loaded for the backend to use.
 *
 * @param requested `"wasm"` or `"wasm+blas"`
 * @returns the engine's name, or why the request cannot start
 * @throws UsageError for a bad `HYPERPROMPT_NO_BLAS` value
 */
export function wasmEngine(
  requested: "wasm" | "wasm+blas",
): { readonly name: "wasm" | "wasm+blas" } | { readonly unavailable: string } {
  const noBlas = noBlasFromEnv();
  if (noBlas) {
    return requested === "wasm"
      ? { name: "wasm" }
      : { unavailable: `BLAS is disabled (unset ${NO_BLAS_ENV})` };
  }
  if (getBlas() !== undefined) return { name: "wasm+blas" };
  return requested === "wasm" ? { name: "wasm" } : { unavailable: blasError ?? "no OpenBLAS" };
}

/**
 * Installs the backward pass {@link backpropFromEnv} names (idempotent: the engine is the same
 * for every backend) and returns the note that records it.
 */
function installBackprop(mode: BackpropMode): string {
  if (mode === "low-memory" && installLowMemoryBackprop(() => {})) {
    return `backprop: low-memory backward pass (model/backprop.ts: each intermediate's gradient ` +
      `freed after its last use; bit-identical gradients; ${STOCK_BACKPROP_ENV}=1 for tfjs's own)`;
  }
  uninstallLowMemoryBackprop();
  return env(STOCK_BACKPROP_ENV) === "1"
    ? `backprop: tfjs's own backward pass (${STOCK_BACKPROP_ENV}=1; every intermediate's ` +
      "gradient kept until the backward pass ends)"
    : `backprop: tfjs's own backward pass (tfjs-core ${tf.version_core} is not ` +
      `${BACKPROP_TFJS_VERSION}, which model/backprop.ts mirrors)`;
}

async function tinyOpWorks(): Promise<void> {
  const r = tf.tidy(() => tf.matMul(tf.tensor2d([1, 2, 3, 4], [2, 2]), tf.eye(2)).sum());
  let v: number | undefined;
  try {
    v = (await r.data())[0];
  } finally {
    r.dispose();
  }
  if (v !== 10) throw new Error(`tiny op returned ${v}, expected 10`);
}

/**
 * tfjs-backend-cpu prints a five-line "install our node backend" banner at its first write under
 * Node (Deno counts as Node: tfjs's `IS_NODE`). The selection's own notes say why tensorflow was
 * skipped and what to install, so the banner is turned off through the backend's `firstUse` flag
 * (a tfjs that renamed the flag prints it again; nothing else changes).
 */
function muteCpuBanner(): void {
  const b = tf.backend() as { firstUse?: unknown };
  if (b.firstUse === true) b.firstUse = false;
}

async function trySetBackend(name: string): Promise<void> {
  let ok: boolean;
  try {
    ok = await tf.setBackend(name);
  } catch (e) {
    throw new Error(`tf.setBackend("${name}") threw: ${errText(e)}`);
  }
  if (!ok || tf.getBackend() !== name) {
    throw new Error(`tf.setBackend("${name}") failed (tfjs printed the cause above)`);
  }
  if (name === "cpu") muteCpuBanner();
  await tf.ready();
  await tinyOpWorks();
}

/** What {@link BackendInfo.adapter} says after the package name when tfjs-node-gpu has no GPU. */
export const TFJS_NODE_GPU_ON_CPU = " on the CPU (no GPU device)";

async function startTensorflow(
  notes: string[],
  importPackage: (specifier: string) => Promise<unknown>,
): Promise<string | undefined> {
  const tried: string[] = [];
  // A package that imported registered tfjs's "tensorflow" backend, and tfjs keeps the first
  // registration: another package's import would run that one's backend again (and be recorded
  // as the other), so none is tried after it.
  let registeredBy: string | undefined;
  for (const pkg of ["@tensorflow/tfjs-node-gpu", "@tensorflow/tfjs-node"]) {
    if (registeredBy !== undefined) {
      tried.push(
        `${pkg}: not tried (${registeredBy} registered tfjs's "tensorflow" backend first)`,
      );
      continue;
    }
    try {
      await importPackage(pkg);
    } catch (e) {
      tried.push(`${pkg}: ${errText(e)}`);
      continue;
    }
    try {
      if (tf.findBackendFactory("tensorflow") !== null) registeredBy = pkg;
      await trySetBackend("tensorflow");
      // The GPU package that failed before this one: why, in the record of every run.
      if (tried.length > 0) notes.push(`tensorflow: ${tried.join(" | ")}; using ${pkg}`);
      // tfjs-node-gpu runs on the CPU where TensorFlow finds no usable GPU (no CUDA or cuDNN
      // libraries, no device): its backend says so (NodeJSKernelBackend.isUsingGpuDevice). A
      // backend without the flag says nothing: the package's GPU is assumed.
      const onGpu = (tf.backend() as { isUsingGpuDevice?: unknown }).isUsingGpuDevice;
      if (pkg === "@tensorflow/tfjs-node-gpu" && onGpu === false) {
        notes.push(
          `tensorflow: ${pkg} found no GPU device (TensorFlow could not load CUDA/cuDNN or ` +
            "sees no GPU): it runs on the CPU",
        );
        return `${pkg}${TFJS_NODE_GPU_ON_CPU}`;
      }
      return pkg;
    } catch (e) {
      tried.push(`${pkg}: imported, but its backend failed: ${errText(e)}`);
    }
  }
  notes.push(
    `tensorflow skipped: ${tried.join(" | ")}. ${
      registeredBy === undefined
        ? "Install @tensorflow/tfjs-node(-gpu)@4.22.0 where libtensorflow can be downloaded " +
          "(its install script fetches it from storage.googleapis.com) and add it to deno.json " +
          "imports"
        : `${registeredBy} is installed but its backend does not run here (see why above)`
    }`,
  );
  return undefined;
}

interface AdapterProbe {
  ok: boolean;
  fallback: boolean;
  description: string;
  why?: string;
  /** The adapter's identity (for its tuning table), when there is one. */
  id?: AdapterId;
}

async function probeWebGpu(): Promise<AdapterProbe> {
  quietWaylandProbe();
  const gpu = (globalThis.navigator as Navigator | undefined)?.gpu;
  if (gpu === undefined) {
    return { ok: false, fallback: false, description: "", why: "navigator.gpu is undefined" };
  }
  let adapter: GPUAdapter | null;
  try {
    adapter = await gpu.requestAdapter(tfjsAdapterOptions());
  } catch (e) {
    return {
      ok: false,
      fallback: false,
      description: "",
      why: `requestAdapter threw: ${errText(e)}`,
    };
  }
  if (adapter === null) {
    return {
      ok: false,
      fallback: false,
      description: "",
      why: "requestAdapter() returned null (no GPU driver; check DENO_WEBGPU_BACKEND" +
        `${webgpuBackendEnvNote()})`,
    };
  }
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  const fallback = info.isFallbackAdapter === true ||
    (adapter as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter === true;
  return {
    ok: true,
    fallback,
    description: adapterDescription(info, fallback),
    id: adapterId(info),
  };
}

/**
 * A WebGPU adapter as a run's provenance names it: its description, vendor, device and
 * architecture, its subgroup sizes where the adapter reports them, and whether it is a software
 * fallback one. The subgroup sizes tell apart two adapters that report the same names, as Mesa's
 * llvmpipe does through Vulkan (lavapipe: 8–8) and through GL (4–128), whose numbers differ.
 *
 * @example
 * ```ts
 * import { adapterDescription } from "./backend.ts";
 * const info = { description: "llvmpipe", vendor: "65541", device: "0", architecture: "",
 *   subgroupMinSize: 8, subgroupMaxSize: 8 };
 * console.assert(
 *   adapterDescription(info, true) ===
 *     "llvmpipe (vendor 65541, device 0, subgroups 8-8, fallback adapter)",
 * );
 * ```
 *
 * @param info the adapter's `info`
 * @param fallback whether it is a software fallback adapter
 * @returns the description
 */
export function adapterDescription(
  info: Pick<GPUAdapterInfo, "description" | "vendor" | "device" | "architecture"> & {
    readonly subgroupMinSize?: number;
    readonly subgroupMaxSize?: number;
  },
  fallback: boolean,
): string {
  const min = info.subgroupMinSize, max = info.subgroupMaxSize;
  const subgroups = typeof min === "number" && typeof max === "number" && max > 0
    ? `, subgroups ${min}-${max}`
    : "";
  return `${info.description || "?"} (vendor ${info.vendor || "?"}, device ${info.device || "?"}${
    info.architecture ? `, ${info.architecture}` : ""
  }${subgroups}${fallback ? ", fallback adapter" : ""})`;
}

async function startWebGpu(
  explicit: boolean,
  allowFallback: boolean,
  customKernels: boolean,
  notes: string[],
): Promise<{ description: string; fallback: boolean } | undefined> {
  const probe = await probeWebGpu();
  if (!probe.ok) {
    const why = `webgpu unavailable: ${probe.why}`;
    // Worded for every tool: bench's flag is --backend, perf's --backends.
    if (explicit) throw new Error(`model/backend.ts: ${why}; choose the wasm or cpu backend`);
    notes.push(why);
    return undefined;
  }
  if (probe.fallback && !allowFallback) {
    notes.push(
      `webgpu skipped: ${probe.description} is a software fallback adapter (about 10x slower ` +
        "than wasm here); ask for --backend webgpu to use it anyway",
    );
    return undefined;
  }
  if (probe.fallback) {
    notes.push(`webgpu runs on a software fallback adapter: ${probe.description}`);
  }
  try {
    await import("@tensorflow/tfjs-backend-webgpu");
    const notRaised = (await import("./webgpu/device_limits.ts")).raiseWebgpuLimits();
    if (notRaised !== undefined) notes.push(`webgpu: default device limits (${notRaised})`);
    await trySetBackend("webgpu");
  } catch (e) {
    const why = `webgpu backend failed to start on ${probe.description}: ${errText(e)}`;
    if (explicit) throw new Error(`model/backend.ts: ${why}`);
    notes.push(why);
    return undefined;
  }
  if (customKernels) await installWebgpuKernels(notes, probe.id);
  else {
    (await import("./webgpu/mod.ts")).unregisterWebgpuKernels();
    notes.push("webgpu: tfjs's own kernels only (custom kernels not installed)");
  }
  return { description: probe.description, fallback: probe.fallback };
}

/**
 * Installs the custom WGSL kernels (`model/webgpu/`) and keeps them only when they pass a
 * correctness self-check on this device; otherwise tfjs's own kernels stay, with a note.
 */
async function installWebgpuKernels(notes: string[], id?: AdapterId): Promise<void> {
  const kernels = await import("./webgpu/mod.ts");
  if (!kernels.registerWebgpuKernels()) {
    notes.push("webgpu: custom kernels disabled (HYPERPROMPT_WEBGPU_KERNELS=0)");
    return;
  }
  let check: Awaited<ReturnType<typeof kernels.selfCheckWebgpuKernels>>;
  const t0 = performance.now();
  try {
    check = await kernels.selfCheckWebgpuKernels();
  } catch (e) {
    // A kernel that throws (a shader the driver rejects, a lost device) is a failed check too.
    kernels.unregisterWebgpuKernels();
    notes.push(
      `webgpu: custom kernels' self-check threw (${errText(e)}); using tfjs's kernels`,
    );
    return;
  }
  const err = check.maxRelErr.toExponential(1);
  // Its cost, in every run's provenance: it runs at each backend selection.
  const took = ((performance.now() - t0) / 1000).toFixed(2);
  if (check.ok) {
    const missing = kernels.webgpuKernelsNotInstalled();
    const device = (tf.backend() as unknown as { device?: GPUDevice }).device;
    const group = device === undefined
      ? ""
      : `, AdamW ${kernels.adamwGroupSize(device.limits)} variables per dispatch`;
    notes.push(
      `webgpu: custom transposed-matMul and fused kernels installed (self-check error ${err}, ` +
        `${took} s${group})${missing.length > 0 ? `; not installed: ${missing.join("; ")}` : ""}`,
    );
    if (id !== undefined) {
      // A malformed table, or a missing or foreign one named by the variable, stops here.
      let found;
      try {
        found = await kernels.findTuningTable(id, env("HYPERPROMPT_WEBGPU_TUNING"));
      } catch (e) {
        kernels.unregisterWebgpuKernels();
        throw e;
      }
      notes.push(found.note);
      if (found.table !== undefined) await installTuningTable(found.table, notes);
    }
  } else {
    kernels.unregisterWebgpuKernels();
    notes.push(
      `webgpu: custom kernels failed their self-check (error ${err}${
        check.error ? `; ${check.error}` : ""
      }); using tfjs's kernels`,
    );
  }
}

/**
 * Installs `table` with the custom kernels (already registered and self-checked) and checks the
 * table's own tiled choices on the device: the kernels' self-check ran the rule of thumb's tiles,
 * and a table is keyed by adapter, not driver version. A table whose choices fail or whose check
 * throws is dropped with a note; the kernels stay, with the rule of thumb's tiles.
 *
 * @param table the tuning table found for this adapter
 * @param notes where the outcome is noted
 * @param check the table's check (tests pass a failing one)
 */
export async function installTuningTable(
  table: MatMulTuningTable,
  notes: string[],
  check?: (table: MatMulTuningTable) => Promise<TunedSelfCheck>,
): Promise<void> {
  const kernels = await import("./webgpu/mod.ts");
  kernels.registerWebgpuKernels({ tuning: table });
  let failed: string;
  try {
    const r = await (check ?? kernels.selfCheckTunedChoices)(table);
    failed = r.ok ? "" : `error ${r.maxRelErr.toExponential(1)}${r.error ? `; ${r.error}` : ""}`;
    if (r.ok) {
      notes.push(
        `webgpu: the tuning table's ${r.checked.length} tiled choices passed the self-check`,
      );
    }
  } catch (e) {
    failed = `threw: ${errText(e)}`;
  }
  if (failed !== "") {
    kernels.registerWebgpuKernels();
    notes.push(
      `webgpu: tuning table not used: its choices failed the self-check (${failed}); ` +
        "the rule of thumb's tiles run",
    );
  }
}

/** `, set to "<value>"` when DENO_WEBGPU_BACKEND is set (an empty value is a known trap). */
function webgpuBackendEnvNote(): string {
  const v = env("DENO_WEBGPU_BACKEND");
  return v === undefined ? "" : `, set to "${v}"`;
}

function getBlas(): BlasLibrary | undefined {
  if (blasLib !== undefined) return blasLib;
  if (blasError !== undefined) return undefined;
  const r = openBlas();
  if (r.ok) blasLib = r.blas;
  else blasError = r.reason;
  return blasLib;
}

async function startWasm(
  wantBlas: boolean,
  mustBlas: boolean,
  fastElementwise: boolean,
  notes: string[],
): Promise<{ name: string; adapter?: string; threads: number } | undefined> {
  try {
    await trySetBackend("wasm");
  } catch (e) {
    const why = `wasm backend failed to start: ${errText(e)}`;
    if (mustBlas) throw new Error(`model/backend.ts: ${why} (needs --allow-read --allow-env)`);
    notes.push(why);
    return undefined;
  }
  const wasmThreads = tfwasm.getThreadsCount();
  let blas: BlasLibrary | undefined;
  if (wantBlas) {
    blas = getBlas();
    if (blas === undefined) {
      if (mustBlas) {
        throw new Error(`model/backend.ts: wasm+blas unavailable: ${blasError}`);
      }
      notes.push(`BLAS skipped: ${blasError}; matmuls use the pure-wasm path (~7x slower)`);
    }
  } else {
    notes.push("BLAS disabled (HYPERPROMPT_NO_BLAS=1 or blas: false)");
  }
  patchWasmMatMul(blas !== undefined ? { blas } : {});
  if (fastElementwise) {
    let simd = "wasm SIMD kernels";
    try {
      await enableSimdKernels(tf.backend() as tfwasm.BackendWasm);
    } catch (e) {
      await enableSimdKernels(undefined);
      simd = `JavaScript loops (wasm SIMD kernels unavailable: ${errText(e)})`;
    }
    patchWasmElementwise();
    registerFusedWasmKernels();
    notes.push(
      "fast wasm elementwise kernels and fused dropout / gated-GELU / RMS-norm kernels " +
        `installed (model/wasm_kernels.ts, model/fused.ts) as ${simd}`,
    );
  } else {
    unpatchWasmElementwise();
    unregisterFusedWasmKernels();
    await enableSimdKernels(undefined);
    notes.push("stock wasm elementwise kernels (fast elementwise kernels disabled)");
  }
  // Check the patched matmul once (covers a transposed operand too).
  const check = tf.tidy(() =>
    tf.matMul(tf.tensor2d([1, 2, 3, 4], [2, 2]), tf.tensor2d([1, 0, 0, 1], [2, 2]), false, true)
  );
  const got = Array.from(await check.data());
  check.dispose();
  if (got.join(",") !== "1,2,3,4") {
    throw new Error(`model/backend.ts: patched wasm matMul self-check gave [${got}]`);
  }
  if (blas !== undefined) {
    notes.push(`wasm matmuls via OpenBLAS ${blas.path}${blas.config ? ` (${blas.config})` : ""}`);
    return {
      name: "wasm+blas",
      adapter: `OpenBLAS ${blas.path}`,
      threads: Math.max(blas.threads, wasmThreads),
    };
  }
  notes.push(`wasm matmul transpose fix installed (${wasmMatMulState().mode})`);
  return { name: "wasm", threads: wasmThreads };
}

/**
 * Start a tfjs backend and return (and log) what was started. An explicit request that cannot
 * start throws an Error saying why and what to do; `"auto"` falls through the preference order,
 * recording each skip in `notes`.
 */
export async function selectBackend(
  name: BackendName,
  opts: SelectBackendOptions = {},
): Promise<BackendInfo> {
  const log = opts.log ?? ((l: string) => console.error(l));
  let requested: BackendName = name;
  if (!isBackendName(requested)) {
    throw new Error(
      `model/backend.ts: unknown backend "${name}"; expected one of ${BACKEND_NAMES.join(", ")}${
        backendHint(name)
      }`,
    );
  }
  const notes: string[] = [];
  const envName = env("HYPERPROMPT_BACKEND");
  if (requested === "auto" && envName !== undefined && envName !== "") {
    if (!isBackendName(envName)) {
      throw new Error(
        `model/backend.ts: HYPERPROMPT_BACKEND="${envName}" is not one of ${
          BACKEND_NAMES.join(", ")
        }${backendHint(envName)}`,
      );
    }
    notes.push(`HYPERPROMPT_BACKEND=${envName} replaced "auto"`);
    requested = envName;
  }
  // Checked before any backend starts: a bad value stops here, not after minutes of setup.
  const backprop = backpropFromEnv();
  const noBlasEnv = noBlasFromEnv();
  const wantBlas = (opts.blas ?? true) && !noBlasEnv;
  if (requested === "wasm+blas" && !wantBlas) {
    throw new Error(
      "model/backend.ts: wasm+blas requested but BLAS is disabled " +
        (noBlasEnv ? "(unset HYPERPROMPT_NO_BLAS)" : "(by the caller's blas: false)"),
    );
  }

  let info: BackendInfo | undefined;
  const done = (
    n: string,
    threads: number,
    adapter?: string,
    fallbackAdapter = false,
  ): BackendInfo => ({
    requested,
    name: n,
    tfBackend: tf.getBackend(),
    ...(adapter !== undefined ? { adapter } : {}),
    ...(fallbackAdapter ? { fallbackAdapter: true as const } : {}),
    threads,
    notes,
  });
  const cores = typeof navigator !== "undefined" ? navigator.hardwareConcurrency ?? 1 : 1;

  if (requested === "tensorflow" || requested === "auto") {
    // A computed specifier keeps deno from resolving (and downloading) it ahead of time.
    const pkg = await startTensorflow(notes, opts.importTensorflow ?? ((spec) => import(spec)));
    if (pkg !== undefined) info = done("tensorflow", cores, pkg);
    else if (requested === "tensorflow") {
      throw new Error(`model/backend.ts: ${notes[notes.length - 1]}`);
    }
  }
  if (info === undefined && (requested === "webgpu" || requested === "auto")) {
    const explicit = requested === "webgpu";
    const started = await startWebGpu(
      explicit,
      explicit || !!opts.allowFallbackAdapter,
      opts.fastElementwise ?? true,
      notes,
    );
    if (started !== undefined) {
      info = done("webgpu", 1, started.description, started.fallback);
    }
  }
  if (
    info === undefined &&
    (requested === "wasm" || requested === "wasm+blas" || requested === "auto")
  ) {
    const fastEw = (opts.fastElementwise ?? true) && !wasmStockElementwiseFromEnv();
    const w = await startWasm(wantBlas, requested === "wasm+blas", fastEw, notes);
    if (w !== undefined) info = done(w.name, w.threads, w.adapter);
    else if (requested === "wasm") {
      throw new Error(
        `model/backend.ts: ${notes[notes.length - 1]} (needs --allow-read --allow-env)`,
      );
    }
  }
  if (info === undefined && (requested === "cpu" || requested === "auto")) {
    try {
      await trySetBackend("cpu");
    } catch (e) {
      throw new Error(`model/backend.ts: cpu backend failed: ${errText(e)}`);
    }
    if (requested === "auto") notes.push("falling back to the slow pure-JS cpu backend");
    info = done("cpu", 1);
  }
  if (info === undefined) {
    throw new Error(`model/backend.ts: no backend started for "${requested}": ${notes.join("; ")}`);
  }
  notes.push(installBackprop(backprop));
  current = info;
  log(
    `backend: ${info.name} (tfjs "${info.tfBackend}", ${info.threads} thread${
      info.threads === 1 ? "" : "s"
    }${info.adapter ? `, ${info.adapter}` : ""})${
      info.notes.length ? `\n  ${info.notes.join("\n  ")}` : ""
    }`,
  );
  return info;
}

/**
 * An error after which the backend cannot be used again in this process (e.g. the tfjs wasm
 * module aborted). `fatal` tells a caller running several jobs to stop instead of failing each.
 */
export class BackendFatalError extends Error {
  /** Always true: later work on this backend would fail too. */
  readonly fatal = true;
  /** The error class's name, `"BackendFatalError"` (shown in stack traces and messages). */
  override readonly name = "BackendFatalError";
}

/**
 * Explains a raw WebAssembly trap from the tfjs wasm module ("Aborted()", "memory access out of
 * bounds": in practice its 4 GiB heap ran out) as a {@link BackendFatalError} that says what to
 * change; any other error is returned as it is.
 *
 * @param e what was thrown
 * @param context who was running, e.g. "run ci--tiny-v1_1--…"
 * @returns the error to throw
 */
export function explainBackendFailure(e: unknown, context: string): unknown {
  if (!(e instanceof WebAssembly.RuntimeError) || tf.getBackend() !== "wasm") return e;
  return new BackendFatalError(
    `${context}: the tfjs wasm module stopped (${e.message.split("\n")[0]}); this almost always ` +
      `means its 4 GiB heap ran out. Run fewer examples per pass (train.microBatchSize), shorter ` +
      `sequences or a smaller model, Adafactor instead of AdamW (no moment matrices), or a GPU ` +
      `backend. The wasm module cannot be used again in this process.`,
    { cause: e },
  );
}

/** The last {@link BackendInfo} from {@link selectBackend}, if tfjs still runs that backend. */
export function currentBackendInfo(): BackendInfo | undefined {
  if (current === undefined || tf.getBackend() !== current.tfBackend) return undefined;
  return current;
}
