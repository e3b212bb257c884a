/**
 * Custom WGSL kernels for the tfjs `webgpu` backend.
 *
 * Call {@link registerWebgpuKernels} once after `tf.setBackend("webgpu")` has succeeded (e.g. in
 * `model/backend.ts`). It replaces the backend's `BatchMatMul` kernel with one that sends float32
 * products with a transposed operand (by default) to the tiled kernel of `matmul_kernels.ts` and
 * everything else to the stock kernel, and registers the fused kernels of `fused_kernels.ts`
 * (dropout mask, gated GELU, RMS norm, AdamW; the ops of `model/fused.ts` use them), and packs
 * the uniforms of all dispatches of a submit into one buffer (`uniform_arena.ts`) and reuses
 * repeated bind groups (`bind_group_cache.ts`). The kernel registry is global to the tfjs instance, so this
 * affects every later `tf.matMul` on webgpu, forward and backward (tfjs's matMul gradient is
 * itself two matMuls with transpose flags). {@link unregisterWebgpuKernels} restores the stock
 * kernel.
 *
 * Which kernel runs each product follows {@link ruleOfThumb} unless a tuning table (`tuning.ts`,
 * measured per device by `deno task tune`) is given as the `tuning` option: then the table's
 * choice for that shape, or for a listed shape that differs from it in one dimension by ≤ 2×.
 *
 * Environment: `HYPERPROMPT_WEBGPU_KERNELS=0` makes {@link registerWebgpuKernels} a no-op (an
 * escape hatch if a driver miscompiles the shader); `=all` or `=transposed` overrides `cover`.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import {
  chooseSplit,
  chooseTile,
  MATMUL_TILES,
  type MatMulPlan,
  type MatMulTile,
  type MatMulTileChoice,
  type MatMulTileName,
  planMatMul,
  runStridedMatMul,
  runTiledMatMul,
  splitFits,
  splitPlan,
  stridedDecline,
  tileByName,
  tileFor,
  type WebGpuBackendLike,
} from "./matmul_kernels.ts";
import {
  HEAD_CONTEXT,
  HEAD_SCORES,
  headContext,
  type HeadContextAttrs,
  headContextReference,
  headContextShape,
  headProduct,
  headScores,
  type HeadScoresAttrs,
  headScoresReference,
  headScoresShape,
} from "../heads.ts";
import { registerWebgpuFusedKernels, unregisterWebgpuFusedKernels } from "./fused_kernels.ts";
import {
  type MatMulChoice,
  type MatMulShape,
  type MatMulTuningTable,
  noteTunedRun,
  parseChoice,
  parseShapeKey,
  setActiveTuning,
  shapeKey,
  tunedChoice,
} from "./tuning.ts";
import { installUniformArena, uninstallUniformArena } from "./uniform_arena.ts";
import { DEFAULT_SUBMIT_BATCH, submitBatchFromEnv } from "./submit_batch.ts";
import { webgpuKernelsFromEnv } from "./kernels_env.ts";
import { installBindGroupCache, uninstallBindGroupCache } from "./bind_group_cache.ts";
import {
  adafactorFactoredReference,
  adamwAttrs,
  attentionSoftmax,
  dropoutAdd,
  dropoutMask,
  dropoutMaskParams,
  fillDropoutMask,
  gatedGelu,
  gatedGeluDropout,
  gatedGeluRows,
  rmsNorm,
  rmsNormGradRows,
  rmsNormKeep,
  rmsNormRows,
  softmaxCrossEntropy,
  softmaxCrossEntropyWithLse,
  updateAdafactorMany,
  updateAdafactorUnfactoredMany,
  updateAdamWMany,
} from "../fused.ts";

export {
  chooseSplit,
  chooseTile,
  MATMUL_TILE_CANDIDATES,
  MATMUL_TILES,
  type MatMulTile,
  type MatMulTileChoice,
  type MatMulTileName,
  tileByName,
  tiledMatMulSource,
  tileWorkgroupBytes,
} from "./matmul_kernels.ts";
export { type BindGroupCacheStats, bindGroupCacheStats } from "./bind_group_cache.ts";
export { uniformArenaInstalled } from "./uniform_arena.ts";
export { adamwGroupSize } from "./in_place.ts";
export { DEFAULT_SUBMIT_BATCH, SUBMIT_BATCH_ENV, submitBatchFromEnv } from "./submit_batch.ts";
export { WEBGPU_KERNELS_ENV, webgpuKernelsFromEnv } from "./kernels_env.ts";
export {
  type AdapterId,
  adapterId,
  adapterSlug,
  choiceName,
  DEFAULT_TUNING_DIR,
  findTuningTable,
  type FoundTuning,
  type MatMulChoice,
  type MatMulShape,
  type MatMulTuningTable,
  mergeTuningTables,
  parseShapeKey,
  parseTuningTable,
  sameAdapter,
  serializeTuningTable,
  shapeKey,
  tuneShape,
  TUNING_FORMAT,
  TUNING_VERSION,
  tuningCandidates,
  type TuningEntry,
} from "./tuning.ts";

/** Options of {@link registerWebgpuKernels}. */
export interface WebgpuKernelOptions {
  /**
   * Which `BatchMatMul` calls the tiled kernel takes: "transposed" (a transpose flag is set: the
   * cases measured 6–11× slower than untransposed in stock tfjs) or "all" float32 calls.
   * @default "transposed"
   */
  readonly cover?: "transposed" | "all";
  /** Tile for every call, or "auto" to choose per call with {@link chooseTile}. @default "auto" */
  readonly tile?: MatMulTileChoice;
  /** For "auto": prefer the largest tile giving at least this many workgroups. @default 256 */
  readonly minWorkgroups?: number;
  /**
   * Split the shared dimension of a product across workgroups, summing the partial products in
   * one more dispatch (`SplitKSumProgram`): "auto" where {@link chooseSplit} says so (the tile is
   * "auto" and K is long against a small output, as in weight gradients); "off" never; a number n
   * ≥ 1 splits every tiled product into up to n slices (for tests and measurements). A split that
   * would exceed the device's dispatch or index limits is not made.
   * @default "auto"
   */
  readonly splitK?: "auto" | "off" | number;
  /**
   * Also register the fused kernels of `fused_kernels.ts` (dropout, gated GELU, RMS norm,
   * attention softmax, AdamW); false installs the matMul alone, for A/B measurements.
   * @default true
   */
  readonly fused?: boolean;
  /**
   * With the fused kernels: update the optimizer's parameters in groups, as many per dispatch as
   * the device's binding limits allow (`in_place.ts`: AdamW, Adafactor), instead of one (or four,
   * factored Adafactor) dispatches per parameter. The numbers are the same either way (tested
   * bit for bit); on the software adapter the grouped elementwise programs run slower (llvmpipe
   * seems to run every variable's branch of the shader, masked), so `benchmarks/gpu_check.ts`
   * times both on the GPU (`tiled-ungrouped`).
   * @default true
   */
  readonly groupUpdates?: boolean;
  /**
   * Pack every dispatch's uniforms into one arena buffer written once per submit
   * (`uniform_arena.ts`) instead of a pooled buffer and a `writeBuffer` per dispatch.
   * @default true
   */
  readonly uniformArena?: boolean;
  /**
   * Reuse bind groups whose layout and buffers repeat (`bind_group_cache.ts`) instead of
   * creating one per dispatch.
   * @default true
   */
  readonly bindGroupCache?: boolean;
  /**
   * Measured kernel choices per product shape for this device (`tuning.ts`; made by
   * `deno task tune`): a listed shape runs its table's choice (stock or a tile and K split),
   * whatever `cover`, `tile` and `splitK` say; other shapes follow those options. The table must
   * come from the adapter in use (`model/backend.ts` checks).
   * @default null
   */
  readonly tuning?: MatMulTuningTable | null;
  /**
   * Dispatches tfjs records before it submits a command buffer (its
   * `WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE` flag, 15 by default; restored by
   * {@link unregisterWebgpuKernels}). Fewer, larger command buffers cost less host time: a T5 1.1
   * Base step recorded with submit a no-op took 88–104 ms at 64 against 93–166 ms at 15 here
   * (README, "Performance"). `HYPERPROMPT_WEBGPU_SUBMIT_BATCH` overrides it.
   * @default 64
   */
  readonly submitBatch?: number;
}

/** Counters of {@link registerWebgpuKernels}'s `BatchMatMul` since the last reset. */
export interface WebgpuKernelStats {
  /** Calls run by the tiled kernel, by tile name (`t128/k8`: split into 8 K slices). */
  readonly tiled: Record<string, number>;
  /** Calls passed to the stock kernel, by reason. */
  readonly stock: Record<string, number>;
  /**
   * Calls by product shape (`tuning.ts`'s `shapeKey`, e.g. `"1x1 m4096 n768 k768 TN"`) and by
   * what ran them ("stock" or the tile name as in `tiled`); calls the kernel could not plan
   * (non-rank-2+ shapes, empty operands) are not listed.
   */
  readonly shapes: Record<string, Record<string, number>>;
}

interface Installed {
  readonly original: tf.KernelConfig;
  /** The options in effect (the uniform arena and bind-group cache false when not installed). */
  options: Required<WebgpuKernelOptions>;
  /** Why a requested part is not installed (e.g. `uniform arena: no webgpu backend instance`). */
  notInstalled: string[];
}

let installed: Installed | undefined;
let stats: {
  tiled: Record<string, number>;
  stock: Record<string, number>;
  shapes: Record<string, Record<string, number>>;
} = { tiled: {}, stock: {}, shapes: {} };

function bump(rec: Record<string, number>, key: string): void {
  rec[key] = (rec[key] ?? 0) + 1;
}

function bumpShape(key: string, kernel: string): void {
  const rec = stats.shapes[key] ?? (stats.shapes[key] = {});
  bump(rec, kernel);
}

/** The shape of a planned product, as tuning tables key it. */
function planShape(plan: MatMulPlan, transposeA: boolean, transposeB: boolean): MatMulShape {
  return {
    batchA: plan.a3[0]!,
    batchB: plan.b3[0]!,
    m: plan.m,
    n: plan.n,
    k: plan.k,
    transposeA,
    transposeB,
  };
}

/**
 * What the BatchMatMul kernel runs for a float32 product without a tuning table: tfjs's stock
 * kernel for untransposed products unless `cover` is "all"; otherwise the tiled kernel with
 * {@link chooseSplit}'s tile and K slices (`tile` and `splitK` "auto"), {@link chooseTile}'s or
 * the forced tile, and the forced or no split. Slices are rounded by `splitPlan` and dropped where
 * they would exceed the device's dispatch limit.
 *
 * @param shape the product
 * @param opts kernel options (default: those installed, else the defaults)
 * @param maxDispatch the device's `maxComputeWorkgroupsPerDimension`
 * @returns the choice
 */
export function ruleOfThumb(
  shape: MatMulShape,
  opts: WebgpuKernelOptions = installed?.options ?? {},
  maxDispatch = 65535,
): MatMulChoice {
  const c = ruleChoice(shape, resolveOptions(opts));
  if (c.kernel === "stock") return c;
  const tile = tileByName(c.tile);
  return { ...c, splits: fittedSplits(shape, tile, c.splits, maxDispatch) };
}

/**
 * {@link ruleOfThumb} for options already resolved, with the K slices as asked (not yet rounded
 * or fitted to the device: {@link fittedSplits}). The BatchMatMul kernel calls this on every
 * product, so it does not validate the options again.
 */
function ruleChoice(shape: MatMulShape, options: Required<WebgpuKernelOptions>): MatMulChoice {
  if (options.cover === "transposed" && !shape.transposeA && !shape.transposeB) {
    return { kernel: "stock" };
  }
  const batch = Math.max(shape.batchA, shape.batchB);
  const { m, n, k } = shape;
  const auto = options.tile === "auto" && options.splitK === "auto"
    ? chooseSplit(batch, m, n, k, options.minWorkgroups)
    : undefined;
  const tile = auto?.tile ??
    (options.tile === "auto"
      ? chooseTile(batch, m, n, options.minWorkgroups)
      : tileByName(options.tile));
  const splits = typeof options.splitK === "number" ? options.splitK : auto?.splits ?? 1;
  return { kernel: "tiled", tile: tile.name as MatMulTileName, splits };
}

/**
 * The K slices a product runs with when `asked` are asked for: rounded by `splitPlan` (none
 * empty), and none (1) where they would exceed the device's dispatch or index limits.
 */
function fittedSplits(
  shape: MatMulShape,
  tile: MatMulTile,
  asked: number,
  maxDispatch: number,
): number {
  const splits = splitPlan(shape.k, asked, tile.tileK).splits;
  const batch = Math.max(shape.batchA, shape.batchB);
  return splitFits({ batch, m: shape.m, n: shape.n }, splits, maxDispatch) ? splits : 1;
}

const SUBMIT_FLAG = "WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE";
/** tfjs's own value of {@link SUBMIT_FLAG}, kept while the kernels are installed. */
let submitFlagBefore: number | undefined;

function resolveOptions(opts: WebgpuKernelOptions): Required<WebgpuKernelOptions> {
  const cover = opts.cover ?? "transposed";
  if (cover !== "transposed" && cover !== "all") {
    throw new Error(
      `model/webgpu/mod.ts registerWebgpuKernels: cover must be "transposed" or "all", got ${
        String(cover)
      }`,
    );
  }
  const tile = opts.tile ?? "auto";
  if (tile !== "auto") tileByName(tile);
  const minWorkgroups = opts.minWorkgroups ?? 256;
  const fused = opts.fused ?? true;
  const groupUpdates = opts.groupUpdates ?? true;
  const uniformArena = opts.uniformArena ?? true;
  const bindGroupCache = opts.bindGroupCache ?? true;
  if (!Number.isInteger(minWorkgroups) || minWorkgroups < 1) {
    throw new Error(
      `model/webgpu/mod.ts registerWebgpuKernels: minWorkgroups must be a positive integer, got ${minWorkgroups}`,
    );
  }
  const splitK = opts.splitK ?? "auto";
  if (
    splitK !== "auto" && splitK !== "off" &&
    !(typeof splitK === "number" && Number.isInteger(splitK) && splitK >= 1)
  ) {
    throw new Error(
      `model/webgpu/mod.ts registerWebgpuKernels: splitK must be "auto", "off" or a positive integer, got ${
        String(splitK)
      }`,
    );
  }
  const tuning = opts.tuning ?? null;
  const submitBatch = opts.submitBatch ?? DEFAULT_SUBMIT_BATCH;
  if (!Number.isInteger(submitBatch) || submitBatch < 1) {
    throw new Error(
      `model/webgpu/mod.ts registerWebgpuKernels: submitBatch must be a positive integer, got ${
        String(submitBatch)
      }`,
    );
  }
  return {
    cover,
    tile,
    minWorkgroups,
    splitK,
    fused,
    groupUpdates,
    uniformArena,
    bindGroupCache,
    tuning,
    submitBatch,
  };
}

/**
 * Installs the custom webgpu kernels (currently `BatchMatMul`). Safe to call again: a second call
 * replaces the options and keeps the original stock kernel for delegation.
 *
 * @param opts see {@link WebgpuKernelOptions}
 * @returns whether the kernels are installed (false when `HYPERPROMPT_WEBGPU_KERNELS=0` or the
 *   webgpu backend is not registered, i.e. `@tensorflow/tfjs-backend-webgpu` was not imported)
 */
export function registerWebgpuKernels(opts: WebgpuKernelOptions = {}): boolean {
  const env = webgpuKernelsFromEnv(); // a bad value throws, naming it
  if (env === "off") {
    unregisterWebgpuKernels();
    return false;
  }
  const batchEnv = submitBatchFromEnv();
  const options = resolveOptions({
    ...opts,
    ...(env === undefined ? {} : { cover: env }),
    ...(batchEnv === undefined ? {} : { submitBatch: batchEnv }),
  });
  const original = installed?.original ?? tf.getKernel("BatchMatMul", "webgpu");
  if (original === undefined) return false;
  installed = { original, options, notInstalled: [] };
  const kernelFunc: tf.KernelFunc = (args) => {
    const { inputs, backend, attrs } = args;
    const a = inputs["a"] as tf.TensorInfo;
    const b = inputs["b"] as tf.TensorInfo;
    const transposeA = attrs?.["transposeA"] === true;
    const transposeB = attrs?.["transposeB"] === true;
    const gpu = backend as unknown as WebGpuBackendLike;
    const maxDispatch = gpu.device.limits.maxComputeWorkgroupsPerDimension;
    const plan = planMatMul(a.shape, b.shape, transposeA, transposeB, maxDispatch);
    if (plan === "empty operand") {
      // K = 0 (an empty sum): zeros, whatever the cover, not the stock kernel, whose zero-sized
      // bindings fail WebGPU validation and so void every other dispatch of the submitted batch
      // (they read as zeros).
      const zeros = emptySumProduct(gpu, a, b, transposeA, transposeB);
      if (zeros !== undefined) return zeros;
    }
    const shape = typeof plan === "string" ? undefined : planShape(plan, transposeA, transposeB);
    const key = shape === undefined ? undefined : shapeKey(shape);
    const float = a.dtype === "float32" && b.dtype === "float32";
    const tuned = key === undefined || !float ? undefined : tunedChoice(shape!, key);
    const stock = (why: string) => {
      bump(stats.stock, why);
      if (key !== undefined) bumpShape(key, "stock");
      if (tuned !== undefined) noteTunedRun("stock");
      return original.kernelFunc(args);
    };
    if (tuned?.kernel === "stock") return stock("tuned");
    if (tuned === undefined) {
      if (options.cover === "transposed" && !transposeA && !transposeB) {
        return stock("untransposed");
      }
      if (!float) return stock("dtype");
    }
    if (typeof plan === "string") return stock(plan);
    const choice = tuned ?? ruleChoice(shape!, options);
    if (choice.kernel === "stock") return stock("untransposed");
    // The tile that runs: a vec4 choice (a near shape's tuned entry, the rule of thumb) runs
    // with scalar loads where the operands' rows are not multiples of 4, and is recorded so.
    const tile = tileFor(plan, tileByName(choice.tile));
    const splits = fittedSplits(shape!, tile, choice.splits, maxDispatch);
    const name = splits > 1 ? `${tile.name}/k${splits}` : tile.name;
    bump(stats.tiled, name);
    bumpShape(key!, name);
    if (tuned !== undefined) noteTunedRun(name);
    return runTiledMatMul(gpu, a, b, plan, transposeA, transposeB, tile, splits);
  };
  setActiveTuning(options.tuning ?? undefined);
  submitFlagBefore ??= tf.env().getNumber(SUBMIT_FLAG);
  tf.env().set(SUBMIT_FLAG, options.submitBatch);
  tf.unregisterKernel("BatchMatMul", "webgpu");
  tf.registerKernel({ kernelName: "BatchMatMul", backendName: "webgpu", kernelFunc });
  if (options.fused) {
    registerWebgpuFusedKernels(options.groupUpdates);
    registerHeadKernels(options);
  } else {
    unregisterWebgpuFusedKernels();
    unregisterHeadKernels();
  }
  // The arena and the cache patch the backend instance; where they cannot, the kernels still
  // work without them, and the options in effect and the reasons say so.
  const arenaWhy = options.uniformArena ? installUniformArena() : uninstallUniformArena();
  const cacheWhy = options.bindGroupCache ? installBindGroupCache() : uninstallBindGroupCache();
  if (typeof arenaWhy === "string") {
    installed.options = { ...installed.options, uniformArena: false };
    installed.notInstalled.push(`uniform arena: ${arenaWhy}`);
  }
  if (typeof cacheWhy === "string") {
    installed.options = { ...installed.options, bindGroupCache: false };
    installed.notInstalled.push(`bind-group cache: ${cacheWhy}`);
  }
  return true;
}

/**
 * Why parts requested of {@link registerWebgpuKernels} are not installed (the uniform arena or
 * the bind-group cache could not patch this tfjs version or backend instance); empty when all are.
 */
export function webgpuKernelsNotInstalled(): readonly string[] {
  return installed?.notInstalled ?? [];
}

/** Restores the stock webgpu kernels replaced by {@link registerWebgpuKernels} (no-op if none). */
export function unregisterWebgpuKernels(): void {
  unregisterWebgpuFusedKernels();
  unregisterHeadKernels();
  uninstallBindGroupCache();
  uninstallUniformArena();
  setActiveTuning(undefined);
  if (submitFlagBefore !== undefined) {
    tf.env().set(SUBMIT_FLAG, submitFlagBefore);
    submitFlagBefore = undefined;
  }
  if (installed === undefined) return;
  tf.unregisterKernel("BatchMatMul", "webgpu");
  tf.registerKernel(installed.original);
  installed = undefined;
}

type KernelArgs = Parameters<tf.KernelFunc>[0];

function webgpuKernel(name: string): tf.KernelFunc {
  const k = tf.getKernel(name, "webgpu");
  if (k === undefined) {
    throw new Error(`model/webgpu/mod.ts: no ${name} kernel registered for webgpu`);
  }
  return k.kernelFunc;
}

/** Runs a webgpu kernel by name on kernel inputs (the tensor infos it returns are the caller's). */
type RunKernel = (
  name: string,
  inputs: tf.NamedTensorInfoMap,
  attrs: tf.NamedAttrMap,
) => tf.TensorInfo;

/**
 * A head product's op composite (`model/heads.ts`: reshape + transpose + `BatchMatMul`) as
 * kernels, for products the strided kernel declines.
 */
function headComposite(
  run: RunKernel,
  kernelName: string,
  a: tf.TensorInfo,
  b: tf.TensorInfo,
  attrs: tf.NamedAttrMap,
  outShape: number[],
): tf.TensorInfo {
  const heads = (attrs as unknown as HeadScoresAttrs).heads;
  const split = (x: tf.TensorInfo) => {
    const [n, l, w] = x.shape as [number, number, number];
    const r = run("Reshape", { x }, { shape: [n, l, heads, w / heads] });
    return run("Transpose", { x: r }, { perm: [0, 2, 1, 3] });
  };
  if (kernelName === HEAD_SCORES) {
    return run("BatchMatMul", { a: split(a), b: split(b) }, {
      transposeA: false,
      transposeB: true,
    });
  }
  const transposeP = !!(attrs as unknown as HeadContextAttrs).transposeP;
  const o = run("BatchMatMul", { a, b: split(b) }, { transposeA: transposeP, transposeB: false });
  const t = run("Transpose", { x: o }, { perm: [0, 2, 1, 3] });
  return run("Reshape", { x: t }, { shape: outShape });
}

/**
 * Runs a head kernel as the strided tiled matmul, or, where the device cannot take it in one
 * dispatch, as the op's composite ({@link headComposite}).
 */
function runHeadProduct(
  args: KernelArgs,
  options: Required<WebgpuKernelOptions>,
  kernelName: string,
): tf.TensorInfo {
  const gpu = args.backend as unknown as WebGpuBackendLike;
  const { a, b, spec } = headProduct(kernelName, args.inputs, args.attrs);
  const why = stridedDecline(
    spec,
    gpu.device.limits.maxComputeWorkgroupsPerDimension,
    [prodOf(a.shape), prodOf(b.shape), prodOf(spec.outShape)],
  );
  if (why !== undefined) {
    bump(stats.stock, `heads: ${why}`);
    const temps: tf.TensorInfo[] = [];
    const run: RunKernel = (name, inputs, attrs) => {
      const y = webgpuKernel(name)({ inputs, backend: args.backend, attrs }) as tf.TensorInfo;
      temps.push(y);
      return y;
    };
    try {
      const out = headComposite(run, kernelName, a, b, args.attrs ?? {}, spec.outShape);
      temps.splice(temps.indexOf(out), 1);
      return out;
    } finally {
      for (const t of temps) gpu.disposeData(t.dataId);
    }
  }
  const tile = options.tile === "auto"
    ? chooseTile(spec.batch, spec.m, spec.n, options.minWorkgroups)
    : tileByName(options.tile);
  bump(stats.tiled, `heads-${tile.name}`);
  return runStridedMatMul(gpu, a, b, spec, tile);
}

function prodOf(shape: readonly number[]): number {
  return shape.reduce((x, y) => x * y, 1);
}

const HEAD_KERNELS = [HEAD_SCORES, HEAD_CONTEXT] as const;

function registerHeadKernels(options: Required<WebgpuKernelOptions>): void {
  unregisterHeadKernels();
  for (const kernelName of HEAD_KERNELS) {
    tf.registerKernel({
      kernelName,
      backendName: "webgpu",
      kernelFunc: (args) => runHeadProduct(args, options, kernelName),
    });
  }
}

function unregisterHeadKernels(): void {
  for (const name of HEAD_KERNELS) {
    if (tf.getKernel(name, "webgpu") !== undefined) tf.unregisterKernel(name, "webgpu");
  }
}

/**
 * The product of a float32 `BatchMatMul` whose shared dimension K is 0 and whose output is not
 * empty: zeros of the output shape, made without a dispatch (undefined for any other call).
 */
function emptySumProduct(
  backend: WebGpuBackendLike,
  a: tf.TensorInfo,
  b: tf.TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
): tf.TensorInfo | undefined {
  const ra = a.shape.length, rb = b.shape.length;
  if (a.dtype !== "float32" || b.dtype !== "float32" || ra < 2 || rb < 2) return undefined;
  const k = transposeA ? a.shape[ra - 2]! : a.shape[ra - 1]!;
  const kb = transposeB ? b.shape[rb - 1]! : b.shape[rb - 2]!;
  if (k !== 0 || kb !== 0) return undefined;
  let outer: number[];
  try {
    outer = tf.broadcast_util.assertAndGetBroadcastShape(
      a.shape.slice(0, -2),
      b.shape.slice(0, -2),
    );
  } catch {
    return undefined; // the stock kernel reports the error
  }
  const m = transposeA ? a.shape[ra - 1]! : a.shape[ra - 2]!;
  const n = transposeB ? b.shape[rb - 2]! : b.shape[rb - 1]!;
  const shape = [...outer, m, n];
  const size = prodOf(shape);
  if (size === 0) return undefined; // an empty output: the stock kernel dispatches nothing
  const be = backend as unknown as {
    makeTensorInfo(shape: number[], dtype: tf.DataType, values: Float32Array): tf.TensorInfo;
  };
  return be.makeTensorInfo(shape, "float32", new Float32Array(size));
}

/** Whether {@link registerWebgpuKernels} is in effect, and with which options. */
export function webgpuKernelsInstalled(): Required<WebgpuKernelOptions> | undefined {
  return installed?.options;
}

/** Counters of tiled vs stock `BatchMatMul` calls since the last {@link resetWebgpuKernelStats}. */
export function webgpuKernelStats(): WebgpuKernelStats {
  return {
    tiled: { ...stats.tiled },
    stock: { ...stats.stock },
    shapes: Object.fromEntries(Object.entries(stats.shapes).map(([k, v]) => [k, { ...v }])),
  };
}

/** Zeroes the counters of {@link webgpuKernelStats}. */
export function resetWebgpuKernelStats(): void {
  stats = { tiled: {}, stock: {}, shapes: {} };
}

/** Result of {@link selfCheckWebgpuKernels}. */
export interface WebgpuSelfCheck {
  /** Whether every product and fused kernel was within tolerance. */
  readonly ok: boolean;
  /**
   * Largest relative L2 error (matmuls, head products, gated GELU, RMS norm, AdamW, Adafactor);
   * Infinity for a wrong mask.
   */
  readonly maxRelErr: number;
  /** A WebGPU validation error raised while the fused kernels ran, if any. */
  readonly error?: string;
}

/**
 * Checks the installed kernels on the current device before a run trusts them: products with
 * every transpose combination (batched, sizes that are not tile multiples) against a float64
 * reference computed in JavaScript from the same inputs, the attention head products likewise,
 * then the fused kernels against their JavaScript references. Tolerance 1e-5 relative L2: float32
 * sums of 45 terms differ from float64 by ~1e-7, an indexing or driver fault by ~1.
 *
 * @returns whether the kernels agree, and the worst error
 */
export async function selfCheckWebgpuKernels(): Promise<WebgpuSelfCheck> {
  return await disposingScope(selfCheckWebgpuKernelsScoped);
}

async function selfCheckWebgpuKernelsScoped(): Promise<WebgpuSelfCheck> {
  const [batch, m, k, n] = [2, 37, 45, 33];
  let maxRelErr = 0;
  for (const transposeA of [false, true]) {
    for (const transposeB of [false, true]) {
      const aShape: [number, number, number] = transposeA ? [batch, k, m] : [batch, m, k];
      const bShape: [number, number, number] = transposeB ? [batch, n, k] : [batch, k, n];
      const a = tf.randomUniform(aShape, -1, 1, "float32", 11) as tf.Tensor3D;
      const b = tf.randomUniform(bShape, -1, 1, "float32", 12) as tf.Tensor3D;
      const c = tf.matMul(a, b, transposeA, transposeB);
      // The split-K path too (`chooseSplit` takes it for weight gradients on big GPUs): K = 45
      // as 3 slices (16, 16, 13) of the largest tile, then the sum of the partial products.
      const split = installed !== undefined && installed.options.splitK !== "off"
        ? splitKProduct(a, b, transposeA, transposeB, MATMUL_TILES[0]!, 3)
        : undefined;
      const [av, bv, cv, sv] = await Promise.all([
        a.data(),
        b.data(),
        c.data(),
        split?.data(),
      ]);
      tf.dispose([a, b, c, ...(split === undefined ? [] : [split])]);
      const want = productReference(av as Float32Array, bv as Float32Array, {
        batchA: batch,
        batchB: batch,
        m,
        n,
        k,
        transposeA,
        transposeB,
      });
      maxRelErr = Math.max(maxRelErr, relL2(cv as Float32Array, want));
      if (sv !== undefined) maxRelErr = Math.max(maxRelErr, relL2(sv as Float32Array, want));
    }
  }
  maxRelErr = Math.max(maxRelErr, await selfCheckHeads());
  const fused = await selfCheckFused();
  const step = await selfCheckStepKernels();
  const error = fused.error ?? step.error;
  return {
    ok: maxRelErr <= 1e-5 && fused.ok && step.ok,
    maxRelErr: Math.max(maxRelErr, fused.maxRelErr, step.maxRelErr),
    ...(error === undefined ? {} : { error }),
  };
}

/** `a·b` in float64 for a rank-3 product of `shape` (a batch of 1 broadcasts). */
function productReference(av: Float32Array, bv: Float32Array, shape: MatMulShape): Float64Array {
  const { batchA, batchB, m, n, k, transposeA, transposeB } = shape;
  const batch = Math.max(batchA, batchB);
  const want = new Float64Array(batch * m * n);
  for (let p = 0; p < batch; p++) {
    const oa = batchA === 1 ? 0 : p * m * k;
    const ob = batchB === 1 ? 0 : p * k * n;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let q = 0; q < k; q++) {
          const x = transposeA ? av[oa + q * m + i]! : av[oa + i * k + q]!;
          const y = transposeB ? bv[ob + j * k + q]! : bv[ob + q * n + j]!;
          s += x * y;
        }
        want[p * m * n + i * n + j] = s;
      }
    }
  }
  return want;
}

/** Result of {@link selfCheckTunedChoices}. */
export interface TunedSelfCheck extends WebgpuSelfCheck {
  /** What was checked, one line per tiled choice, transposes and batch pattern of the table. */
  readonly checked: readonly string[];
}

/**
 * The product part of {@link selfCheckWebgpuKernels} for the kernels a tuning table selects:
 * that check runs the rule of thumb's tiles, but a table can route products to other tiles (t64,
 * vec4 loads, deep K, split K) on a driver newer than the one it was measured with (tables are
 * keyed by adapter, not driver version). One small product per distinct tiled choice, transpose
 * pair and batch pattern of the table's entries, sizes not multiples of the tile (multiples of 4
 * for vec4 tiles, so the vec4 loads run), K long enough for the choice's slices, against a float64
 * reference; 1e-5 relative L2 as in {@link selfCheckWebgpuKernels}. Cost: one pipeline build and
 * a product of ~2·37·33·K per line: three lines (t64, t64v4, t128/k8) took 0.14 s, pipelines
 * cold, on the software adapter here.
 *
 * @param table the tuning table in effect (entries choosing `stock` need no check)
 * @param product runs one tiled product ({@link splitKProduct}; tests pass a faulty one)
 * @returns whether every tuned choice agrees, the worst error, and what was checked
 */
export async function selfCheckTunedChoices(
  table: MatMulTuningTable,
  product: typeof splitKProduct = splitKProduct,
): Promise<TunedSelfCheck> {
  return await disposingScope(() =>
    closingErrorScope(() => selfCheckTunedChoicesScoped(table, product))
  );
}

async function selfCheckTunedChoicesScoped(
  table: MatMulTuningTable,
  product: typeof splitKProduct,
): Promise<TunedSelfCheck> {
  const cases = new Map<string, { shape: MatMulShape; tile: MatMulTile; splits: number }>();
  for (const [key, entry] of Object.entries(table.entries)) {
    const choice = parseChoice(entry.choice, `tuning table entries["${key}"].choice`);
    if (choice.kernel !== "tiled") continue;
    const tuned = parseShapeKey(key, `tuning table entries["${key}"]`);
    const tile = tileByName(choice.tile);
    const v4 = tile.vec4 === true;
    const k0 = Math.max(45, choice.splits * tile.tileK + 5);
    const shape: MatMulShape = {
      batchA: tuned.batchA === 1 ? 1 : 2,
      batchB: tuned.batchB === 1 ? 1 : 2,
      m: v4 ? 36 : 37,
      n: v4 ? 44 : 33,
      k: v4 ? Math.ceil(k0 / 4) * 4 : k0,
      transposeA: tuned.transposeA,
      transposeB: tuned.transposeB,
    };
    const line = `${entry.choice} ${shapeKey(shape)}`;
    if (!cases.has(line)) cases.set(line, { shape, tile, splits: choice.splits });
  }
  const device = (tf.backend() as unknown as { device?: GPUDevice }).device;
  device?.pushErrorScope("validation");
  let maxRelErr = 0;
  let seed = 21;
  // A throw leaves its tensors to disposingScope and the error scope to closingErrorScope.
  for (const { shape, tile, splits } of cases.values()) {
    const { batchA, batchB, m, n, k, transposeA, transposeB } = shape;
    const aShape = transposeA ? [batchA, k, m] : [batchA, m, k];
    const bShape = transposeB ? [batchB, n, k] : [batchB, k, n];
    const a = tf.randomUniform(aShape, -1, 1, "float32", seed++);
    const b = tf.randomUniform(bShape, -1, 1, "float32", seed++);
    const c = product(a, b, transposeA, transposeB, tile, splits);
    const [av, bv, cv] = await Promise.all([a.data(), b.data(), c.data()]);
    tf.dispose([a, b, c]);
    const want = productReference(av as Float32Array, bv as Float32Array, shape);
    maxRelErr = Math.max(maxRelErr, relL2(cv as Float32Array, want));
  }
  const error = await device?.popErrorScope();
  const checked = [...cases.keys()];
  if (error) return { ok: false, maxRelErr, error: error.message, checked };
  return { ok: maxRelErr <= 1e-5, maxRelErr, checked };
}

/**
 * The rest of a T5 training step's fused kernels, each against tfjs's stock ops on this device
 * or a float64 reference, inside a validation error scope: the attention softmax with bias and
 * mask over 70 keys (more than a row program's 64 threads) and its gradients (scores, and the
 * bias's, a sum over the batch: `HpSumLeading`), the softmax cross-entropy with label smoothing
 * and its gradient, dropout fused into the residual add and into the gated GELU, and one
 * unfactored Adafactor update (in place where registered). 1e-5 relative L2 as above: float32
 * sums over 70 terms in another order differ by ~1e-7, a wrong index or mask by ~1. The whole
 * self-check's time is in `selectBackend`'s note ("self-check error …, N s"), so in every run's
 * provenance and in `deno task perf --backend webgpu`'s output.
 */
async function selfCheckStepKernels(): Promise<
  { ok: boolean; maxRelErr: number; error?: string }
> {
  return await closingErrorScope(selfCheckStepKernelsScoped);
}

async function selfCheckStepKernelsScoped(): Promise<
  { ok: boolean; maxRelErr: number; error?: string }
> {
  const device = (tf.backend() as unknown as { device?: GPUDevice }).device;
  device?.pushErrorScope("validation");
  const fill = (n: number, seed: number, scale = 1) =>
    Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.73 + seed) * scale);
  const [B, H, Q, K] = [2, 2, 3, 70];
  const sv = fill(B * H * Q * K, 1, 4);
  const bv = fill(H * Q * K, 2);
  const mv = Float32Array.from({ length: B * K }, (_, i) => (i % 17 === 5 ? -1e9 : 0));
  const dyv = fill(B * H * Q * K, 3);
  const softmaxOf = (fused: boolean) =>
    tf.tidy(() => {
      const s = tf.tensor4d(sv, [B, H, Q, K]);
      const bias = tf.tensor4d(bv, [1, H, Q, K]);
      const mask = tf.tensor4d(mv, [B, 1, 1, K]);
      const f = (x: tf.Tensor, y: tf.Tensor) =>
        fused
          ? attentionSoftmax(x as tf.Tensor4D, y, mask)
          : tf.softmax(tf.add(tf.add(x, y), mask), -1);
      const [ds, db] = tf.grads(f)([s, bias], tf.tensor4d(dyv, [B, H, Q, K]));
      return [f(s, bias), ds!, db!];
    });
  // Cross-entropy of [5, 70] logits with label smoothing 0.1 and T5X's z-loss 0.05 (its term
  // 2z·lse·softmax is folded into the gradient kernel: model/fused.ts LSE_GRAD_IN_KERNEL)
  // against float64.
  const [n, v, eps, zl] = [5, 70, 0.1, 0.05];
  const xv = fill(n * v, 4, 3);
  const labels = Int32Array.from({ length: n }, (_, i) => (i * 29) % v);
  const wv = Float32Array.from({ length: n }, (_, i) => 0.5 + i / n);
  // Skipped where the kernel is not registered (`fused: false`): the composite then runs.
  const xent = tf.getKernel("HpSoftmaxXent", "webgpu") === undefined ? [] : tf.tidy(() => {
    const x = tf.tensor2d(xv, [n, v]);
    const l = tf.tensor1d(labels, "int32");
    const w = tf.tensor1d(wv);
    const loss = (y: tf.Tensor) => {
      const r = softmaxCrossEntropyWithLse(y as tf.Tensor2D, l, eps)!;
      return tf.sum(tf.add(tf.mul(r.loss, w), tf.mul(tf.square(r.lse), zl)));
    };
    return [softmaxCrossEntropy(x, l, eps)!, tf.grad(loss)(x)];
  });
  const wantLoss = new Float64Array(n);
  const wantGrad = new Float64Array(n * v);
  for (let r = 0; r < n; r++) {
    const row = xv.subarray(r * v, (r + 1) * v);
    const max = Math.max(...row);
    let z = 0, sum = 0;
    for (const x of row) {
      z += Math.exp(x - max);
      sum += x;
    }
    const lse = max + Math.log(z);
    wantLoss[r] = (1 - eps) * (lse - row[labels[r]!]!) + eps * (lse - sum / v);
    for (let j = 0; j < v; j++) {
      const target = (j === labels[r] ? 1 - eps : 0) + eps / v;
      const p = Math.exp(row[j]! - lse);
      wantGrad[r * v + j] = wv[r]! * (p - target) + 2 * zl * lse * p;
    }
  }
  // Dropout fused into the residual add and the gated GELU (rate 0.3, seed 77), against the
  // JavaScript mask and gated GELU.
  const m = 4 * 37 + 1;
  const av = fill(m, 5, 4);
  const hv = fill(m, 6);
  const mask = new Float32Array(m);
  fillDropoutMask(mask, dropoutMaskParams(0.3, 77));
  const gelu = new Float32Array(m);
  gatedGeluRows(gelu, av, hv);
  const wantAdd = Float64Array.from(av, (x, i) => x + hv[i]! * mask[i]!);
  const wantGeluDrop = Float64Array.from(gelu, (x, i) => x * mask[i]!);
  const drops = tf.tidy(() => {
    const a = tf.tensor1d(av);
    const h = tf.tensor1d(hv);
    return [dropoutAdd(a, h, 0.3, 77), gatedGeluDropout(a, h, 0.3, 77)];
  });
  // Unfactored Adafactor updates (`updateAdafactorUnfactored`'s formula) of a 70-vector and a
  // 33-vector, grouped into one dispatch where the device allows.
  const ua = { beta2t: 0.3, eps1: 1e-30, clippingThreshold: 1, lr: 0.01, weightDecay: 0.1 };
  const unfactoredWant = (up: Float32Array, uv: Float32Array, ug: Float32Array) => {
    const wantV = Float64Array.from(
      uv,
      (x, i) => ua.beta2t * x + (1 - ua.beta2t) * (ug[i]! ** 2 + ua.eps1),
    );
    const u = Float64Array.from(ug, (g, i) => g / Math.sqrt(wantV[i]!));
    const rmsU = Math.sqrt(u.reduce((acc, x) => acc + x * x, 0) / up.length);
    const clip = Math.max(1, rmsU / ua.clippingThreshold);
    const wantP = Float64Array.from(
      up,
      (p, i) => p * (1 - ua.lr * ua.weightDecay) - (ua.lr * u[i]!) / clip,
    );
    return { wantP, wantV };
  };
  const variable = (x: Float32Array) => {
    const t = tf.tensor1d(x);
    const v = tf.variable(t); // shares t's data; t itself is not needed
    t.dispose();
    return v;
  };
  const unfactored = [[v, 7], [33, 10]].map(([len, seed]) => {
    const up = fill(len!, seed!);
    const uv = Float32Array.from(fill(len!, seed! + 1), (x) => x * x + 0.1);
    const ug = fill(len!, seed! + 2, 2);
    return {
      ...unfactoredWant(up, uv, ug),
      item: { p: variable(up), v: variable(uv), g: tf.tensor1d(ug) },
    };
  });
  const unfactoredDone = updateAdafactorUnfactoredMany(unfactored.map((x) => x.item), ua);
  const fusedSm = softmaxOf(true);
  const stockSm = softmaxOf(false);
  // Each result with what it must equal: another tensor of this device, or a reference.
  const pairs: [tf.Tensor, tf.Tensor | Float64Array][] = [
    [fusedSm[0]!, stockSm[0]!], // probabilities
    [fusedSm[1]!, stockSm[1]!], // d scores
    [fusedSm[2]!, stockSm[2]!], // d bias (summed over the batch)
    ...(xent.length === 2
      ? [[xent[0]!, wantLoss], [xent[1]!, wantGrad]] as [tf.Tensor, Float64Array][]
      : []),
    [drops[0]!, wantAdd],
    [drops[1]!, wantGeluDrop],
    ...unfactored.flatMap((x, i): [tf.Tensor, Float64Array][] =>
      unfactoredDone[i] ? [[x.item.p, x.wantP], [x.item.v, x.wantV]] : []
    ),
  ];
  const read = (t: tf.Tensor | Float64Array) =>
    t instanceof Float64Array ? Promise.resolve(t) : (t.data() as Promise<Float32Array>);
  const values = await Promise.all(pairs.map(([a, b]) => Promise.all([read(a), read(b)])));
  tf.dispose([...fusedSm, ...stockSm, ...xent, ...drops]);
  tf.dispose(unfactored.flatMap((x) => [x.item.p, x.item.v, x.item.g]));
  const error = await device?.popErrorScope();
  const maxRelErr = Math.max(
    ...values.map(([a, b]) => relL2(a as Float32Array, b as Float32Array | Float64Array)),
  );
  return {
    ok: !error && maxRelErr <= 1e-5,
    maxRelErr,
    ...(error ? { error: error.message } : {}),
  };
}

/**
 * `a·b` on the webgpu backend through the tiled kernel with K split into up to `splits` slices,
 * whatever kernels are registered (the self-check's and the tests' way to reach that path).
 *
 * @param a A (float32, on webgpu)
 * @param b B (float32, on webgpu)
 * @param transposeA A stored `[.., K, M]`
 * @param transposeB B stored `[.., N, K]`
 * @param tile tile geometry
 * @param splits K slices asked for (rounded by `splitPlan`)
 * @returns the product (the caller disposes it)
 * @throws Error when the backend is not webgpu or the product is one the tiled kernel declines
 */
export function splitKProduct(
  a: tf.Tensor,
  b: tf.Tensor,
  transposeA: boolean,
  transposeB: boolean,
  tile: MatMulTile,
  splits: number,
): tf.Tensor {
  if (tf.getBackend() !== "webgpu") {
    throw new Error(`model/webgpu/mod.ts splitKProduct: backend is ${tf.getBackend()}, not webgpu`);
  }
  const gpu = tf.backend() as unknown as WebGpuBackendLike;
  const max = gpu.device.limits.maxComputeWorkgroupsPerDimension;
  const plan = planMatMul(a.shape, b.shape, transposeA, transposeB, max);
  if (typeof plan === "string") {
    throw new Error(`model/webgpu/mod.ts splitKProduct: the tiled kernel declines: ${plan}`);
  }
  const s = splitPlan(plan.k, splits, tile.tileK).splits;
  if (!splitFits(plan, s, max)) {
    throw new Error(`model/webgpu/mod.ts splitKProduct: ${s} slices exceed the device's limits`);
  }
  const info = runTiledMatMul(gpu, a, b, plan, transposeA, transposeB, tile, s);
  return tf.engine().makeTensorFromTensorInfo(info);
}

/** Relative L2 error of `got` against `want` (the self-checks' measure). */
function relL2(got: Float32Array, want: Float32Array | Float64Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < want.length; i++) {
    num += (got[i]! - want[i]!) ** 2;
    den += want[i]! ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1e-30));
}

/**
 * The head products (`model/heads.ts`: scores, context and context with P transposed, the
 * strided tiled matmul where registered) on small odd shapes against their float64 references.
 *
 * @returns the largest relative L2 error
 */
async function selfCheckHeads(): Promise<number> {
  const [b, h, lq, lk, dk] = [2, 3, 5, 7, 4];
  const w = h * dk;
  const fill = (n: number, seed: number) =>
    Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.61 + seed));
  const qv = fill(b * lq * w, 1);
  const kv = fill(b * lk * w, 2);
  // P square for the transposed product, so a kernel ignoring transposeP gives wrong numbers
  // rather than a shape error.
  const pv = fill(b * h * lk * lk, 3);
  const outs = tf.tidy(() => {
    const q = tf.tensor3d(qv, [b, lq, w]);
    const k = tf.tensor3d(kv, [b, lk, w]);
    const pT = tf.tensor4d(pv, [b, h, lk, lk]);
    const s = headScores(q, k, h);
    return [s, headContext(s, k, h), headContext(pT, k, h, true)];
  });
  const [s, o, t] = await Promise.all(outs.map((x) => x.data() as Promise<Float32Array>));
  tf.dispose(outs);
  const ws = headScoresReference(qv, kv, headScoresShape([b, lq, w], [b, lk, w], h));
  const wo = headContextReference(
    s!,
    kv,
    headContextShape([b, h, lq, lk], [b, lk, w], h, false),
    false,
  );
  const wt = headContextReference(
    pv,
    kv,
    headContextShape([b, h, lk, lk], [b, lk, w], h, true),
    true,
  );
  return Math.max(relL2(s!, ws), relL2(o!, wo), relL2(t!, wt));
}

/**
 * The fused kernels on small inputs against their JavaScript references (`model/fused.ts`), inside
 * a WebGPU validation error scope: the dropout mask must match bit for bit, gated GELU, RMS norm
 * and one AdamW and one factored Adafactor update (in place where registered) within 1e-5
 * relative L2 (float32 formulas; a wrong index or a shader that failed to build gives errors of
 * order 1 or zeros).
 */
async function selfCheckFused(): Promise<{ ok: boolean; maxRelErr: number; error?: string }> {
  return await closingErrorScope(selfCheckFusedScoped);
}

/**
 * Runs a self-check that pushes a validation error scope and pops it on its normal path; when it
 * throws instead, pops that scope before rethrowing, so that the device (which `selectBackend`
 * keeps using with tfjs's kernels) does not swallow every later validation error.
 */
async function closingErrorScope<T>(check: () => Promise<T>): Promise<T> {
  try {
    return await check();
  } catch (e) {
    const device = (tf.backend() as unknown as { device?: GPUDevice }).device;
    await device?.popErrorScope().catch(() => {}); // none left open if it threw after its pop
    throw e;
  }
}

/**
 * Runs an asynchronous self-check inside a tfjs engine scope, then disposes every tensor and
 * variable the check made and left alive, whether it returned or threw (the checks return plain
 * numbers, never tensors): a kernel that throws halfway through a check would otherwise leave
 * its inputs and the optimizer-state variables behind on the device that `selectBackend` keeps
 * using. tfjs's scopes are synchronous bookkeeping, so nothing else may make tensors while the
 * check awaits its reads: backend selection awaits it alone.
 */
async function disposingScope<T>(check: () => Promise<T>): Promise<T> {
  const engine = tf.engine();
  const variablesBefore = new Set(Object.keys(engine.registeredVariables));
  engine.startScope("hyperprompt-self-check");
  try {
    return await check();
  } finally {
    engine.endScope(); // disposes the tensors made inside and still alive; variables are not tracked
    for (const [name, v] of Object.entries(engine.registeredVariables)) {
      if (!variablesBefore.has(name)) v.dispose();
    }
  }
}

async function selfCheckFusedScoped(): Promise<
  { ok: boolean; maxRelErr: number; error?: string }
> {
  const device = (tf.backend() as unknown as { device?: GPUDevice }).device;
  device?.pushErrorScope("validation");
  const n = 4 * 37 + 1;
  const a = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37) * 4);
  const b = Float32Array.from({ length: n }, (_, i) => Math.cos(i * 0.91) + 0.5);
  const w = Float32Array.from({ length: 12 }, (_, i) => 1 + i / 12);
  const x = a.subarray(0, 5 * 12);
  const wantMask = new Float32Array(n);
  fillDropoutMask(wantMask, dropoutMaskParams(0.3, 77));
  const wantGelu = new Float32Array(n);
  gatedGeluRows(wantGelu, a, b);
  const wantNorm = new Float32Array(x.length);
  rmsNormRows(wantNorm, x, w, 1e-6);
  // The in-place AdamW (read-write bindings, our own dispatch) on a copy of a and b.
  const h = adamwAttrs({ lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 }, 2);
  const wantP = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const g = b[i]!;
    const mm = h.b1 * 0.5 + h.c1 * g;
    const vv = h.b2 * 0.25 + h.c2 * g * g;
    wantP[i] = a[i]! * h.decay - h.step * mm / (Math.sqrt(vv) * h.invSqrtBc2 + h.eps);
  }
  const variables = (ts: tf.Tensor[]) =>
    ts.map((t) => {
      const v = tf.variable(t);
      t.dispose();
      return v;
    }) as [tf.Variable, tf.Variable, tf.Variable];
  // As three variables (77 scalar-form elements, then 40 and 32 in vec4 form, which one grouped
  // dispatch updates together), so that the grouped update runs on the device too.
  const parts = [[0, 77], [77, 117], [117, n]] as const;
  const adamItems = parts.map(([s, e]) => {
    const [p, m, v] = variables([
      tf.tensor(a.subarray(s, e)),
      tf.fill([e - s], 0.5),
      tf.fill([e - s], 0.25),
    ]);
    return { p, m, v, g: tf.tensor(b.subarray(s, e)) };
  });
  updateAdamWMany(adamItems, h);
  const p = tf.concat(adamItems.map((it) => it.p));
  // Factored Adafactor updates (in place where registered, grouped where the device allows) of
  // a [5, 12] and a [3, 7] matrix, clipping on.
  const fa = { beta2t: 0.3, eps1: 1e-30, clippingThreshold: 1, lr: 0.01, weightDecay: 0.1 };
  const positive = (x: Float32Array) => Float32Array.from(x, (y) => Math.abs(y) + 0.1);
  const factored = [
    { r: 5, c: 12, p: a.subarray(0, 60), g: a.subarray(60, 120), vr: b.subarray(0, 5) },
    {
      r: 3,
      c: 7,
      p: a.subarray(120, 141),
      g: b.subarray(20, 41),
      vr: positive(b.subarray(50, 53)),
    },
  ].map(({ r, c, p, g, vr }, i) => {
    const vc = i === 0 ? b.subarray(5, 17) : positive(b.subarray(60, 67));
    const [fp, fvr, fvc] = variables([tf.tensor2d(p, [r, c]), tf.tensor(vr), tf.tensor(vc)]);
    return {
      want: adafactorFactoredReference(p, g, vr, vc, fa),
      item: { p: fp, vr: fvr, vc: fvc, g: tf.tensor2d(g, [r, c]) },
    };
  });
  const factoredDone = updateAdafactorMany(factored.map((f) => f.item), fa).every((d) => d);
  // The norm's gradient (`fused_kernels.ts` normGradSource), alone and with a residual's added
  // (`rmsNormKeep`).
  const [ndy, ndr] = [b.subarray(0, 60), a.subarray(60, 120)];
  const wantPlainDx = new Float32Array(60);
  rmsNormGradRows(wantPlainDx, new Float32Array(12), x, w, ndy, 1e-6);
  const wantNormDx = Float32Array.from(wantPlainDx, (v, i) => v + ndr[i]!);
  const outs = tf.tidy(() => [
    dropoutMask([n], 0.3, 77),
    gatedGelu(tf.tensor(a), tf.tensor(b)),
    rmsNorm(tf.tensor(x, [5, 12]), tf.tensor1d(w), 1e-6),
    tf.grad((xt: tf.Tensor) =>
      tf.sum(tf.mul(rmsNorm(xt, tf.tensor1d(w), 1e-6), tf.tensor(ndy, [5, 12])))
    )(tf.tensor(x, [5, 12])),
    tf.grad((xt: tf.Tensor) => {
      const [y, r] = rmsNormKeep(xt, tf.tensor1d(w), 1e-6);
      return tf.add(
        tf.sum(tf.mul(y, tf.tensor(ndy, [5, 12]))),
        tf.sum(tf.mul(r, tf.tensor(ndr, [5, 12]))),
      );
    })(tf.tensor(x, [5, 12])),
  ]);
  const [mask, gelu, norm, plainDx, normDx, adam] = await Promise.all(
    [...outs, p].map((t) => t.data() as Promise<Float32Array>),
  );
  const factoredErr = await Promise.all(
    factored.flatMap(({ want, item }) =>
      (["p", "vr", "vc"] as const).map(async (k) =>
        relL2(await item[k].data() as Float32Array, want[k])
      )
    ),
  );
  tf.dispose([...outs, p, ...adamItems.flatMap((it) => [it.p, it.m, it.v, it.g])]);
  tf.dispose(factored.flatMap(({ item }) => [item.p, item.vr, item.vc, item.g]));
  const error = await device?.popErrorScope();
  const maxRelErr = Math.max(
    relL2(gelu!, wantGelu),
    relL2(norm!, wantNorm),
    relL2(plainDx!, wantPlainDx),
    relL2(normDx!, wantNormDx),
    relL2(adam!, wantP),
    ...factoredErr,
  );
  const maskOk = mask!.every((v, i) => v === wantMask[i]);
  return {
    ok: !error && maskOk && factoredDone && maxRelErr <= 1e-5,
    maxRelErr: maskOk ? maxRelErr : Infinity,
    ...(error ? { error: error.message } : {}),
  };
}
