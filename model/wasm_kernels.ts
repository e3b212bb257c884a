/**
 * Matrix-multiply kernels for the tfjs `wasm` backend.
 *
 * Two replacements for the stock wasm `BatchMatMul` and `_FusedMatMul` kernels:
 *
 * 1. **Transpose fix** ({@link patchWasmMatMul} without BLAS). The stock kernels only take
 *    XNNPACK's fast path when neither operand is transposed; with `transposeA`/`transposeB` they
 *    run a generic loop 10–50× slower (every backward matmul has a transpose flag). Worse, stock
 *    `_FusedMatMul` with `transposeB` plus a bias or an activation returns WRONG values once sizes
 *    reach 256. The fix materialises each transposed operand with the wasm `Transpose` kernel
 *    and then calls the stock kernel with both flags false, which is both fast and correct. The
 *    stock kernels' other faults are kept away from them too: an empty sum (K = 0) left unwritten,
 *    batches broadcasting on both sides given too small an output, and `_FusedMatMul`'s bias
 *    added wrongly whenever the product has a batch (so the bias and activation are applied by
 *    the wasm Add and activation kernels instead).
 * 2. **OpenBLAS through Deno FFI** ({@link patchWasmMatMul} with a {@link BlasLibrary}). The wasm
 *    backend keeps tensors in its linear memory, so `cblas_sgemm` can read and write the heap
 *    directly (no copies); transposes map to `CblasTrans`, batch dimensions broadcast like numpy
 *    (rank 3, 4, …), and `_FusedMatMul` adds its bias (pre-filled C with beta = 1) and activation
 *    (the wasm elementwise kernels). Needs `--allow-ffi` and `libopenblas.so.0`
 *    (`apt-get install libopenblas0-pthread`).
 *
 * The kernel registry is global to the tfjs instance, so the patch is too; {@link patchWasmMatMul}
 * may be called again to switch mode, and {@link unpatchWasmMatMul} restores the stock kernels.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";
import { activeSimdKernels } from "./wasm_simd.ts";
import type { AdafactorAttrs, AdamWAttrs } from "./fused.ts";
import { HEAD_CONTEXT, HEAD_SCORES, headProduct, stridedOffset } from "./heads.ts";

/** Which matmul kernels are installed on the wasm backend. */
export type WasmMatMulMode = "stock" | "transpose-fix" | "blas";

/** An opened OpenBLAS shared library. */
export interface BlasLibrary {
  /** The file name or path that was opened. */
  readonly path: string;
  /** Threads OpenBLAS uses (`openblas_get_num_threads`), or 1 when the symbol is absent. */
  readonly threads: number;
  /** OpenBLAS build description (`openblas_get_config`), or "" when the symbol is absent. */
  readonly config: string;
  /** Row-major `cblas_sgemm`: C = alpha·op(A)·op(B) + beta·C. */
  sgemm(
    transA: boolean,
    transB: boolean,
    m: number,
    n: number,
    k: number,
    alpha: number,
    a: Float32Array,
    lda: number,
    b: Float32Array,
    ldb: number,
    beta: number,
    c: Float32Array,
    ldc: number,
  ): void;
  /**
   * Close this handle (only after {@link unpatchWasmMatMul} or a switch to another mode). The
   * library itself stays loaded: {@link openBlas} pins it for the life of the process.
   */
  close(): void;
  /** Whether the library is pinned in the process (see {@link openBlas}); false off Linux. */
  readonly pinned: boolean;
}

const RTLD_NOW = 2;
const RTLD_NODELETE = 0x1000; // glibc

/**
 * Keeps a shared library loaded until the process exits: one `dlopen(path, RTLD_NOW |
 * RTLD_NODELETE)` through libc that is never closed. Deno closes a `Deno.dlopen` handle when the
 * isolate that opened it ends (each `deno test` module runs in its own), and an unloaded OpenBLAS
 * shuts its thread pool down and is initialised again by the next module that opens it: dozens of
 * times in one test run, where `deno task bench` loads it once. Shutdown and re-initialisation
 * is the path of several crash reports in OpenBLAS's tracker (OpenMathLib/OpenBLAS#1692, #1720);
 * once per process is what NumPy and the benchmark itself do. Linux (glibc) only; elsewhere, or
 * when libc cannot be opened, nothing is pinned and the handles behave as Deno's do.
 *
 * @returns whether the library is pinned
 */
function pinLibrary(path: string): boolean {
  if (Deno.build.os !== "linux") return false;
  try {
    const libc = Deno.dlopen("libc.so.6", {
      dlopen: { parameters: ["buffer", "i32"], result: "pointer" },
    });
    try {
      const name = new TextEncoder().encode(path + "\0");
      return libc.symbols.dlopen(name, RTLD_NOW | RTLD_NODELETE) !== null;
    } finally {
      libc.close(); // libc itself is never unloaded
    }
  } catch {
    return false;
  }
}

/** Result of {@link openBlas}: the library, or why it could not be opened and what to do. */
export type OpenBlasResult =
  | { readonly ok: true; readonly blas: BlasLibrary }
  | { readonly ok: false; readonly reason: string };

/** Library names tried in order by {@link openBlas}. */
export const BLAS_LIBRARY_NAMES: readonly string[] = [
  "libopenblas.so.0",
  "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
  "libopenblas.so",
  "libopenblas.dylib",
];

const CBLAS_ROW_MAJOR = 101;
const CBLAS_NO_TRANS = 111;
const CBLAS_TRANS = 112;

const SGEMM_DEF = {
  cblas_sgemm: {
    parameters: [
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "f32",
      "buffer",
      "i32",
      "buffer",
      "i32",
      "f32",
      "buffer",
      "i32",
    ],
    result: "void",
  },
} as const;

const OPTIONAL_DEFS = {
  openblas_get_num_threads: { parameters: [], result: "i32", optional: true },
  openblas_get_config: { parameters: [], result: "pointer", optional: true },
} as const;

/**
 * Open OpenBLAS through Deno FFI. Never throws: returns `{ok: false, reason}` naming the missing
 * permission or package when it cannot. On Linux the library is then pinned in the process (never
 * unloaded when a handle closes; see `pinLibrary`).
 *
 * @param names Library names or paths to try, in order (default {@link BLAS_LIBRARY_NAMES}).
 */
export function openBlas(names: readonly string[] = BLAS_LIBRARY_NAMES): OpenBlasResult {
  if (typeof Deno === "undefined" || typeof Deno.dlopen !== "function") {
    return { ok: false, reason: "Deno.dlopen is not available in this runtime" };
  }
  try {
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
      return {
        ok: false,
        reason: "needs --allow-ffi to call OpenBLAS through Deno FFI (run deno with --allow-ffi)",
      };
    }
  } catch {
    // permissions API unavailable: let dlopen decide
  }
  const errors: string[] = [];
  for (const name of names) {
    let lib: Deno.DynamicLibrary<typeof SGEMM_DEF & typeof OPTIONAL_DEFS>;
    try {
      lib = Deno.dlopen(name, { ...SGEMM_DEF, ...OPTIONAL_DEFS });
    } catch (e) {
      // Deno 2.9 repeats its prefix ("Could not open library: Could not open library: …").
      const msg = (e instanceof Error ? e.message : String(e)).replace(/^(.+?: )\1+/, "$1");
      errors.push(`${name}: ${msg}`);
      continue;
    }
    const s = lib.symbols;
    const pinned = pinLibrary(name);
    const threads = s.openblas_get_num_threads ? s.openblas_get_num_threads() : 1;
    let config = "";
    const cfgPtr = s.openblas_get_config ? s.openblas_get_config() : null;
    if (cfgPtr !== null) config = Deno.UnsafePointerView.getCString(cfgPtr).trim();
    const blas: BlasLibrary = {
      path: name,
      threads,
      config,
      pinned,
      sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) {
        s.cblas_sgemm(
          CBLAS_ROW_MAJOR,
          transA ? CBLAS_TRANS : CBLAS_NO_TRANS,
          transB ? CBLAS_TRANS : CBLAS_NO_TRANS,
          m,
          n,
          k,
          alpha,
          a,
          lda,
          b,
          ldb,
          beta,
          c,
          ldc,
        );
      },
      close() {
        lib.close();
      },
    };
    return { ok: true, blas };
  }
  return {
    ok: false,
    reason: `cannot open OpenBLAS (${errors.join("; ")}); install it with ` +
      "`apt-get install -y libopenblas0-pthread`",
  };
}

// ---------------------------------------------------------------------------------------------
// Kernel plumbing

// deno-lint-ignore no-explicit-any
type AnyAttrs = any;
interface KernelArgs {
  inputs: Record<string, tf.TensorInfo | undefined>;
  backend: BackendWasm;
  attrs: AnyAttrs;
}
type KernelFn = (args: KernelArgs) => tf.TensorInfo;

const MATMUL_KERNELS = ["BatchMatMul", "_FusedMatMul"] as const;
type MatMulKernel = typeof MATMUL_KERNELS[number];

let stock: Map<MatMulKernel, tf.KernelConfig> | undefined;
let mode: WasmMatMulMode = "stock";
let activeBlas: BlasLibrary | undefined;

function wasmKernel(name: string): KernelFn {
  const k = tf.getKernel(name, "wasm");
  if (k === undefined) {
    throw new Error(
      `model/wasm_kernels.ts: wasm kernel ${name} is not registered; ` +
        'import "@tensorflow/tfjs-backend-wasm" first',
    );
  }
  return k.kernelFunc as unknown as KernelFn;
}

function need(x: tf.TensorInfo | undefined, what: string): tf.TensorInfo {
  if (x === undefined) throw new Error(`model/wasm_kernels.ts: matmul input ${what} is missing`);
  return x;
}

function swapLastTwo(rank: number): number[] {
  const perm = [...Array(rank).keys()];
  perm[rank - 2] = rank - 1;
  perm[rank - 1] = rank - 2;
  return perm;
}

/**
 * Stock kernel with transposed operands materialised first (fast and correct), and the cases the
 * stock kernels get wrong handled around it:
 *
 * - an empty sum (K = 0) or an empty output: XNNPACK refuses the product and leaves the output
 *   unwritten (heap garbage instead of zeros); answered without the kernel;
 * - batch dims that broadcast on both sides (e.g. `[2, 1, …]` by `[1, 3, …]`): the stock
 *   `BatchMatMul` allocates the larger operand's batch only but labels it with the broadcast
 *   shape; such operands are tiled to the output's batch first;
 * - `_FusedMatMul` with a bias: the stock kernel adds it wrongly whenever the product has a batch
 *   (rank > 2 inputs, even untransposed) and refuses a rank-2 bias, so float32 products run
 *   without bias and activation and get them from the wasm Add and activation kernels.
 */
function transposeFixed(orig: KernelFn, fused: boolean): KernelFn {
  const transpose = wasmKernel("Transpose");
  return ({ inputs, backend, attrs }) => {
    const { transposeA, transposeB } = attrs;
    const a = need(inputs.a, "a");
    const b = need(inputs.b, "b");
    const float = a.dtype === "float32" && b.dtype === "float32";
    if (!float) return orig({ inputs, backend, attrs }); // the stock kernel explains
    const epilogue = (y: tf.TensorInfo) =>
      fused ? biasAndActivation(backend, y, inputs.bias, attrs, inputs) : y;
    const zero = trivialProduct(backend, a, b, !!transposeA, !!transposeB);
    if (zero !== undefined) return epilogue(zero);
    const tmp: tf.TensorInfo[] = [];
    const tr = (x: tf.TensorInfo): tf.TensorInfo => {
      const y = transpose({
        inputs: { x },
        backend,
        attrs: { perm: swapLastTwo(x.shape.length) },
      });
      tmp.push(y);
      return y;
    };
    const outBatch = tf.broadcast_util.assertAndGetBroadcastShape(
      a.shape.slice(0, -2),
      b.shape.slice(0, -2),
    );
    const expand = (x: tf.TensorInfo): tf.TensorInfo => {
      const nx = sizeOf(x.shape.slice(0, -2));
      if (nx === 1 || nx === sizeOf(outBatch)) return x;
      const y = tileToBatch(backend, x, outBatch);
      tmp.push(y);
      return y;
    };
    let y: tf.TensorInfo;
    try {
      y = orig({
        inputs: { a: expand(transposeA ? tr(a) : a), b: expand(transposeB ? tr(b) : b) },
        backend,
        attrs: fused
          ? { ...attrs, transposeA: false, transposeB: false, activation: "linear" }
          : { ...attrs, transposeA: false, transposeB: false },
      });
    } finally {
      for (const t of tmp) backend.disposeData(t.dataId);
    }
    return epilogue(y);
  };
}

/**
 * The result of `op(a)·op(b)` when nothing is to be computed: zeros for an empty sum (K = 0), or
 * an empty output (XNNPACK refuses both); undefined otherwise (the kernel computes it).
 */
function trivialProduct(
  backend: BackendWasm,
  a: tf.TensorInfo,
  b: tf.TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
): tf.TensorInfo | undefined {
  const ra = a.shape.length;
  const rb = b.shape.length;
  const k = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
  const kB = transposeB ? b.shape[rb - 1] : b.shape[rb - 2];
  if (k !== kB) return undefined; // the stock kernel reports the mismatch
  const outShape = [
    ...tf.broadcast_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2)),
    transposeA ? a.shape[ra - 1]! : a.shape[ra - 2]!,
    transposeB ? b.shape[rb - 2]! : b.shape[rb - 1]!,
  ];
  if (k !== 0 && sizeOf(outShape) !== 0) return undefined;
  const out = backend.makeOutput(outShape, "float32");
  backend.typedArrayFromHeap(out).fill(0);
  return out;
}

/** `x` (`[...batch, r, c]`) tiled to `[...outBatch, r, c]` (its batch dims broadcast to outBatch). */
function tileToBatch(
  backend: BackendWasm,
  x: tf.TensorInfo,
  outBatch: readonly number[],
): tf.TensorInfo {
  const lead = outBatch.length + 2 - x.shape.length;
  const shape = [...new Array<number>(lead).fill(1), ...x.shape];
  const reps = shape.map((d, i) => (i < outBatch.length && d === 1 ? outBatch[i]! : 1));
  return wasmKernel("Tile")({
    inputs: { x: { dataId: x.dataId, shape, dtype: x.dtype } },
    backend,
    attrs: { reps },
  });
}

function sizeOf(shape: readonly number[]): number {
  let s = 1;
  for (const d of shape) s *= d;
  return s;
}

/**
 * C = op(A)·op(B) on the wasm heap with numpy batch broadcasting. When `biasRow` is given, each
 * output row is first filled with it and sgemm runs with beta = 1 (C = A·B + bias).
 */
function blasMatMul(
  blas: BlasLibrary,
  backend: BackendWasm,
  a: tf.TensorInfo,
  b: tf.TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
  bias?: tf.TensorInfo,
): tf.TensorInfo {
  const ra = a.shape.length;
  const rb = b.shape.length;
  if (ra < 2 || rb < 2) {
    throw new Error(`model/wasm_kernels.ts: matMul needs rank >= 2, got ${ra} and ${rb}`);
  }
  const aRows = a.shape[ra - 2]!;
  const aCols = a.shape[ra - 1]!;
  const bRows = b.shape[rb - 2]!;
  const bCols = b.shape[rb - 1]!;
  const M = transposeA ? aCols : aRows;
  const K = transposeA ? aRows : aCols;
  const kB = transposeB ? bCols : bRows;
  const N = transposeB ? bRows : bCols;
  if (K !== kB) {
    throw new Error(
      `model/wasm_kernels.ts: matMul inner shapes ${K} and ${kB} of [${a.shape}] and ` +
        `[${b.shape}] (transposeA=${transposeA}, transposeB=${transposeB}) must match`,
    );
  }
  const batchA = a.shape.slice(0, -2);
  const batchB = b.shape.slice(0, -2);
  const outBatch = tf.broadcast_util.assertAndGetBroadcastShape(batchA, batchB);
  const out = backend.makeOutput([...outBatch, M, N], "float32");
  const nBatch = sizeOf(outBatch);
  if (nBatch === 0 || M === 0 || N === 0) return out;
  // Heap views only AFTER makeOutput: malloc may grow the heap and detach older views.
  const av = backend.typedArrayFromHeap(a) as Float32Array;
  const bv = backend.typedArrayFromHeap(b) as Float32Array;
  const ov = backend.typedArrayFromHeap(out) as Float32Array;
  const mn = M * N;
  let beta = 0;
  if (bias !== undefined) {
    const bsv = backend.typedArrayFromHeap(bias) as Float32Array;
    const rows = nBatch * M;
    for (let r = 0; r < rows; r++) ov.set(bsv, r * N);
    beta = 1;
  }
  if (K === 0) {
    if (bias === undefined) ov.fill(0);
    return out;
  }
  const lda = aCols;
  const ldb = bCols;
  const nA = sizeOf(batchA);
  const nB = sizeOf(batchB);
  // One big GEMM when B is shared and A's batches are contiguous rows of an untransposed matrix.
  if (nB === 1 && !transposeA && nA === nBatch) {
    blas.sgemm(false, transposeB, nBatch * M, N, K, 1, av, lda, bv, ldb, beta, ov, N);
    return out;
  }
  const mk = M * K;
  const kn = K * N;
  const simple = (nA === nBatch || nA === 1) && (nB === nBatch || nB === 1);
  // General broadcasting: strides of A and B over the output batch index.
  const r = outBatch.length;
  const strideA = new Array<number>(r).fill(0);
  const strideB = new Array<number>(r).fill(0);
  if (!simple) {
    let sa = 1;
    let sb = 1;
    for (let i = r - 1; i >= 0; i--) {
      const da = batchA[i - (r - batchA.length)] ?? 1;
      const db = batchB[i - (r - batchB.length)] ?? 1;
      strideA[i] = da === 1 ? 0 : sa;
      strideB[i] = db === 1 ? 0 : sb;
      sa *= da;
      sb *= db;
    }
  }
  for (let i = 0; i < nBatch; i++) {
    let ia = nA === 1 ? 0 : i;
    let ib = nB === 1 ? 0 : i;
    if (!simple) {
      ia = 0;
      ib = 0;
      let rem = i;
      for (let d = r - 1; d >= 0; d--) {
        const dim = outBatch[d]!;
        const idx = rem % dim;
        rem = (rem - idx) / dim;
        ia += idx * strideA[d]!;
        ib += idx * strideB[d]!;
      }
    }
    blas.sgemm(
      transposeA,
      transposeB,
      M,
      N,
      K,
      1,
      av.subarray(ia * mk),
      lda,
      bv.subarray(ib * kn),
      ldb,
      beta,
      ov.subarray(i * mn, (i + 1) * mn),
      N,
    );
  }
  return out;
}

function blasBatchMatMul(blas: BlasLibrary, fallback: KernelFn): KernelFn {
  return ({ inputs, backend, attrs }) => {
    const a = need(inputs.a, "a");
    const b = need(inputs.b, "b");
    if (a.dtype !== "float32" || b.dtype !== "float32") {
      return fallback({ inputs, backend, attrs });
    }
    return blasMatMul(blas, backend, a, b, !!attrs.transposeA, !!attrs.transposeB);
  };
}

const ACTIVATION_KERNELS: Record<string, string> = {
  relu: "Relu",
  relu6: "Relu6",
  elu: "Elu",
  sigmoid: "Sigmoid",
  leakyrelu: "LeakyRelu",
  prelu: "Prelu",
};

function blasFusedMatMul(blas: BlasLibrary, fallback: KernelFn): KernelFn {
  return ({ inputs, backend, attrs }) => {
    const a = need(inputs.a, "a");
    const b = need(inputs.b, "b");
    const { bias } = inputs;
    const activation: string = attrs.activation ?? "linear";
    const actKernel = ACTIVATION_KERNELS[activation];
    if (
      a.dtype !== "float32" || b.dtype !== "float32" ||
      (activation !== "linear" && actKernel === undefined) ||
      (bias !== undefined && (bias.dtype !== "float32" || bias.shape.length > 2))
    ) {
      return fallback({ inputs, backend, attrs });
    }
    const transposeA = !!attrs.transposeA;
    const transposeB = !!attrs.transposeB;
    const N = transposeB ? b.shape[b.shape.length - 2]! : b.shape[b.shape.length - 1]!;
    // A bias of N values (shape [N] or [1, N]) is pre-filled into C; any other rank <= 2 bias
    // (e.g. [M, N] or [M, 1]) is added with the wasm Add kernel, which broadcasts.
    const rowBias = bias !== undefined && sizeOf(bias.shape) === N &&
      bias.shape[bias.shape.length - 1] === N;
    const y = blasMatMul(blas, backend, a, b, transposeA, transposeB, rowBias ? bias : undefined);
    return biasAndActivation(backend, y, rowBias ? undefined : bias, attrs, inputs);
  };
}

/**
 * The epilogue of a `_FusedMatMul` on its product `y` (released here): `bias` added with the wasm
 * Add kernel (which broadcasts), then the activation of `attrs`.
 */
function biasAndActivation(
  backend: BackendWasm,
  y: tf.TensorInfo,
  bias: tf.TensorInfo | undefined,
  attrs: AnyAttrs,
  inputs: Record<string, tf.TensorInfo | undefined>,
): tf.TensorInfo {
  const activation: string = attrs.activation ?? "linear";
  const actKernel = ACTIVATION_KERNELS[activation];
  const alpha = inputs.preluActivationWeights;
  if ((activation !== "linear" && actKernel === undefined) || (activation === "prelu" && !alpha)) {
    backend.disposeData(y.dataId);
    throw new Error(
      `model/wasm_kernels.ts: _FusedMatMul activation ${activation} is unknown or lacks weights`,
    );
  }
  if (bias !== undefined) {
    const z = wasmKernel("Add")({ inputs: { a: y, b: bias }, backend, attrs: {} });
    backend.disposeData(y.dataId);
    y = z;
  }
  if (actKernel !== undefined) {
    const actInputs: Record<string, tf.TensorInfo | undefined> = { x: y };
    if (activation === "prelu") actInputs.alpha = alpha;
    const z = wasmKernel(actKernel)({
      inputs: actInputs,
      backend,
      attrs: activation === "leakyrelu" ? { alpha: attrs.leakyreluAlpha ?? 0.2 } : {},
    });
    backend.disposeData(y.dataId);
    y = z;
  }
  return y;
}

/**
 * A head kernel (`HpHeadScores` / `HpHeadContext`, `model/heads.ts`) in OpenBLAS: one sgemm per
 * (batch, head) entry of its strided product, reading and writing each head in place through the
 * row strides (`lda`, `ldb`, `ldc` = heads·dKv where a head is a column block), so no head is
 * transposed.
 */
function blasHeadKernel(blas: BlasLibrary, kernelName: string): KernelFn {
  return ({ inputs, backend, attrs }) => {
    const { a, b, spec } = headProduct(kernelName, inputs, attrs);
    const out = backend.makeOutput(spec.outShape, "float32");
    if (out.shape.some((d) => d === 0)) return out;
    // Heap views only AFTER makeOutput: malloc may grow the heap and detach older views.
    const av = backend.typedArrayFromHeap(a) as Float32Array;
    const bv = backend.typedArrayFromHeap(b) as Float32Array;
    const ov = backend.typedArrayFromHeap(out) as Float32Array;
    if (spec.k === 0) {
      ov.fill(0);
      return out;
    }
    for (let z = 0; z < spec.batch; z++) {
      blas.sgemm(
        spec.transposeA,
        spec.transposeB,
        spec.m,
        spec.n,
        spec.k,
        1,
        av.subarray(stridedOffset(spec.a, z)),
        spec.a.ld,
        bv.subarray(stridedOffset(spec.b, z)),
        spec.b.ld,
        0,
        ov.subarray(stridedOffset(spec.out, z)),
        spec.out.ld,
      );
    }
    return out;
  };
}

const HEAD_KERNELS = [HEAD_SCORES, HEAD_CONTEXT] as const;

function registerHeadKernels(blas: BlasLibrary | undefined): void {
  for (const name of HEAD_KERNELS) {
    if (tf.getKernel(name, "wasm") !== undefined) tf.unregisterKernel(name, "wasm");
  }
  if (blas === undefined) return; // the ops run their reshape/transpose/matMul composite
  for (const kernelName of HEAD_KERNELS) {
    tf.registerKernel({
      kernelName,
      backendName: "wasm",
      kernelFunc: blasHeadKernel(blas, kernelName) as unknown as tf.KernelFunc,
    });
  }
}

function registerWasm(name: MatMulKernel, kernelFunc: KernelFn, setupFunc: tf.KernelSetupFunc) {
  if (tf.getKernel(name, "wasm") !== undefined) tf.unregisterKernel(name, "wasm");
  tf.registerKernel({
    kernelName: name,
    backendName: "wasm",
    setupFunc,
    kernelFunc: kernelFunc as unknown as tf.KernelFunc,
  });
}

/** The stock wasm kernels of `names`, remembered before they are replaced. */
function stockKernels<K extends string>(names: readonly K[]): Map<K, tf.KernelConfig> {
  const saved = new Map<K, tf.KernelConfig>();
  for (const name of names) {
    const k = tf.getKernel(name, "wasm");
    if (k === undefined) {
      throw new Error(
        `model/wasm_kernels.ts: wasm kernel ${name} is not registered; ` +
          'import "@tensorflow/tfjs-backend-wasm" and await tf.setBackend("wasm") first',
      );
    }
    saved.set(name, k);
  }
  return saved;
}

/**
 * Install fast matmul kernels on the wasm backend: OpenBLAS `cblas_sgemm` when `blas` is given,
 * otherwise the transpose fix. Call after `await tf.setBackend("wasm")` (the stock kernels must
 * be registered). Calling again switches mode; the stock kernels are remembered from the first
 * call.
 *
 * @returns the mode now installed.
 */
export function patchWasmMatMul(opts: { blas?: BlasLibrary } = {}): WasmMatMulMode {
  stock ??= stockKernels(MATMUL_KERNELS);
  for (const name of MATMUL_KERNELS) {
    const orig = stock.get(name)!;
    const fixed = transposeFixed(orig.kernelFunc as unknown as KernelFn, name === "_FusedMatMul");
    let fn = fixed;
    if (opts.blas !== undefined) {
      fn = name === "BatchMatMul"
        ? blasBatchMatMul(opts.blas, fixed)
        : blasFusedMatMul(opts.blas, fixed);
    }
    registerWasm(name, fn, orig.setupFunc as tf.KernelSetupFunc);
  }
  registerHeadKernels(opts.blas);
  activeBlas = opts.blas;
  mode = opts.blas !== undefined ? "blas" : "transpose-fix";
  return mode;
}

// ---------------------------------------------------------------------------------------------
// Elementwise kernels
//
// Several stock wasm kernels are far slower than memory bandwidth allows (measured on 1M-element
// float32 tensors, 2-vCPU EPYC: Add 0.3 ms, but Equal 7.5 ms and 120 ms when broadcasting a
// column, Greater 170 ms broadcast, Tile/BroadcastTo of a column 94 ms, Tanh 52 ms, Pow 40-48 ms,
// Select 24 ms), and Identity / same-dtype Cast copy their input. T5's loss gradient (logSumExp →
// Equal with a column broadcast), gated-GELU (Pow, Tanh) and gradient bookkeeping (Identity) hit
// them every step. These replacements work on the wasm heap in JS (or share the buffer) and fall
// back to the stock kernel for anything they do not cover.

/** Per output dim, the input's element stride (0 where the input broadcasts). */
function broadcastStrides(inShape: readonly number[], outShape: readonly number[]): number[] {
  const r = outShape.length;
  const st = new Array<number>(r).fill(0);
  let acc = 1;
  for (let i = r - 1; i >= 0; i--) {
    const d = inShape[i - (r - inShape.length)] ?? 1;
    st[i] = d === 1 ? 0 : acc;
    acc *= d;
  }
  return st;
}

type Row = (
  out: Float32Array | Uint8Array | Int32Array,
  o: number,
  a: ArrayLike<number>,
  ia: number,
  sa: number,
  b: ArrayLike<number>,
  ib: number,
  sb: number,
  n: number,
) => void;

/** Apply `row` over the broadcast of a and b into out, one innermost row at a time. */
function broadcastBinary(
  row: Row,
  out: Float32Array | Uint8Array | Int32Array,
  outShape: readonly number[],
  a: ArrayLike<number>,
  aShape: readonly number[],
  b: ArrayLike<number>,
  bShape: readonly number[],
): void {
  const total = out.length;
  if (total === 0) return;
  const aSize = a.length;
  const bSize = b.length;
  if (aSize === total && bSize === total) return row(out, 0, a, 0, 1, b, 0, 1, total);
  if (bSize === 1 && aSize === total) return row(out, 0, a, 0, 1, b, 0, 0, total);
  if (aSize === 1 && bSize === total) return row(out, 0, a, 0, 0, b, 0, 1, total);
  const r = outShape.length;
  const sa = broadcastStrides(aShape, outShape);
  const sb = broadcastStrides(bShape, outShape);
  const n = outShape[r - 1]!;
  const rows = total / n;
  const idx = new Array<number>(Math.max(r - 1, 0)).fill(0);
  let ia = 0;
  let ib = 0;
  for (let k = 0; k < rows; k++) {
    row(out, k * n, a, ia, sa[r - 1]!, b, ib, sb[r - 1]!, n);
    // advance the outer multi-index (dims 0..r-2)
    for (let d = r - 2; d >= 0; d--) {
      idx[d]!++;
      ia += sa[d]!;
      ib += sb[d]!;
      if (idx[d]! < outShape[d]!) break;
      ia -= sa[d]! * outShape[d]!;
      ib -= sb[d]! * outShape[d]!;
      idx[d] = 0;
    }
  }
}

const ROWS: Record<string, Row> = {
  Equal(out, o, a, ia, sa, b, ib, sb, n) {
    for (let j = 0; j < n; j++) out[o + j] = a[ia + j * sa] === b[ib + j * sb] ? 1 : 0;
  },
  NotEqual(out, o, a, ia, sa, b, ib, sb, n) {
    for (let j = 0; j < n; j++) out[o + j] = a[ia + j * sa] !== b[ib + j * sb] ? 1 : 0;
  },
  Greater(out, o, a, ia, sa, b, ib, sb, n) {
    for (let j = 0; j < n; j++) out[o + j] = a[ia + j * sa]! > b[ib + j * sb]! ? 1 : 0;
  },
  GreaterEqual(out, o, a, ia, sa, b, ib, sb, n) {
    for (let j = 0; j < n; j++) out[o + j] = a[ia + j * sa]! >= b[ib + j * sb]! ? 1 : 0;
  },
  Less(out, o, a, ia, sa, b, ib, sb, n) {
    for (let j = 0; j < n; j++) out[o + j] = a[ia + j * sa]! < b[ib + j * sb]! ? 1 : 0;
  },
  LessEqual(out, o, a, ia, sa, b, ib, sb, n) {
    for (let j = 0; j < n; j++) out[o + j] = a[ia + j * sa]! <= b[ib + j * sb]! ? 1 : 0;
  },
  Pow(out, o, a, ia, sa, b, ib, sb, n) {
    for (let j = 0; j < n; j++) out[o + j] = Math.pow(a[ia + j * sa]!, b[ib + j * sb]!);
  },
};

function powScalar(out: Float32Array, x: Float32Array, e: number): boolean {
  const n = out.length;
  if (e === 2) { for (let i = 0; i < n; i++) out[i] = x[i]! * x[i]!; }
  else if (e === 3) { for (let i = 0; i < n; i++) out[i] = x[i]! * x[i]! * x[i]!; }
  else if (e === 1) out.set(x);
  else if (e === 0.5) {
    // pow, not sqrt, at the two points where they differ: pow(−∞, 0.5) = +∞, pow(−0, 0.5) = +0.
    for (let i = 0; i < n; i++) out[i] = x[i] === -Infinity ? Infinity : Math.sqrt(x[i]!) + 0;
  } else return false;
  return true;
}

function binaryKernel(name: string, fallback: KernelFn): KernelFn {
  const row = ROWS[name]!;
  const isPow = name === "Pow";
  return ({ inputs, backend, attrs }) => {
    const a = need(inputs.a, "a");
    const b = need(inputs.b, "b");
    if (
      a.dtype === "string" || b.dtype === "string" || a.dtype !== b.dtype ||
      (isPow && a.dtype !== "float32")
    ) {
      return fallback({ inputs, backend, attrs });
    }
    const outShape = tf.broadcast_util.assertAndGetBroadcastShape(a.shape, b.shape);
    const out = backend.makeOutput(outShape, isPow ? a.dtype : "bool");
    if (sizeOf(outShape) === 0) return out;
    const ov = backend.typedArrayFromHeap(out);
    const av = backend.typedArrayFromHeap(a);
    const bv = backend.typedArrayFromHeap(b);
    if (
      isPow && bv.length === 1 && av.length === ov.length &&
      powScalar(ov as Float32Array, av as Float32Array, bv[0]!)
    ) {
      return out;
    }
    broadcastBinary(row, ov, outShape, av, a.shape, bv, b.shape);
    return out;
  };
}

/** 2^k for k in [0, 64] (exact doubles). */
const POW2 = Float64Array.from({ length: 65 }, (_, k) => 2 ** k);

/**
 * tanh in double precision, rounded once to float32 (error < 1e-7 relative). Math.tanh and
 * Math.exp cost 20-40 ns per element here, so exp(2|x|) is evaluated as 2^k · p(r) with
 * r = 2|x| − k·ln2, |r| ≤ ln2/2, and p the degree-7 Taylor polynomial (relative error < 6e-9).
 */
const T3 = -1 / 3, T5 = 2 / 15, T7 = -17 / 315, T9 = 62 / 2835;
const C2 = 1 / 2, C3 = 1 / 6, C4 = 1 / 24, C5 = 1 / 120, C6 = 1 / 720, C7 = 1 / 5040;
function tanhRow(out: Float32Array, x: Float32Array): void {
  const LN2 = Math.LN2;
  const LOG2E = Math.LOG2E;
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    const av = Math.abs(v);
    if (av < 0.125) {
      const v2 = v * v; // Taylor series to x^9: error < 3e-12 relative at 0.125
      out[i] = v * (1 + v2 * (T3 + v2 * (T5 + v2 * (T7 + v2 * T9))));
    } else if (av >= 16 || av !== av) {
      out[i] = av !== av ? v : v < 0 ? -1 : 1;
    } else {
      const y = 2 * av;
      const k = Math.floor(y * LOG2E + 0.5);
      const r = y - k * LN2;
      const p = 1 + r * (1 + r * (C2 + r * (C3 + r * (C4 + r * (C5 + r * (C6 + r * C7))))));
      const t = 1 - 2 / (p * POW2[k]! + 1);
      out[i] = v < 0 ? -t : t;
    }
  }
}

function tanhKernel(fallback: KernelFn): KernelFn {
  return ({ inputs, backend, attrs }) => {
    const x = need(inputs.x, "x");
    if (x.dtype !== "float32") return fallback({ inputs, backend, attrs });
    const out = backend.makeOutput(x.shape, "float32");
    tanhRow(
      backend.typedArrayFromHeap(out) as Float32Array,
      backend.typedArrayFromHeap(x) as Float32Array,
    );
    return out;
  };
}

/** float32 exp through the SIMD kernel (Cephes expf, ≤ 2 ulp); the stock kernel otherwise. */
function expKernel(fallback: KernelFn): KernelFn {
  return ({ inputs, backend, attrs }) => {
    const x = need(inputs.x, "x");
    const simd = activeSimdKernels();
    if (x.dtype !== "float32" || simd === undefined) return fallback({ inputs, backend, attrs });
    const out = backend.makeOutput(x.shape, "float32");
    const ov = backend.typedArrayFromHeap(out);
    simd.exp(ov.byteOffset, backend.typedArrayFromHeap(x).byteOffset, ov.length);
    return out;
  };
}

/** Share the input's buffer (as the wasm Reshape kernel does) instead of copying it. */
function shareKernel(fallback: KernelFn, castAttr: boolean): KernelFn {
  return ({ inputs, backend, attrs }) => {
    const x = need(inputs.x, "x");
    if (x.dtype === "string" || (castAttr && attrs.dtype !== x.dtype)) {
      return fallback({ inputs, backend, attrs });
    }
    backend.incRef(x.dataId);
    return { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype };
  };
}

function selectKernel(fallback: KernelFn): KernelFn {
  return ({ inputs, backend, attrs }) => {
    const c = need(inputs.condition, "condition");
    const t = need(inputs.t, "t");
    const e = need(inputs.e, "e");
    const n = sizeOf(t.shape);
    if (
      t.dtype === "string" || t.dtype !== e.dtype || sizeOf(e.shape) !== n ||
      sizeOf(c.shape) !== n
    ) {
      return fallback({ inputs, backend, attrs });
    }
    const out = backend.makeOutput(t.shape, t.dtype);
    const ov = backend.typedArrayFromHeap(out);
    const cv = backend.typedArrayFromHeap(c);
    const tv = backend.typedArrayFromHeap(t);
    const ev = backend.typedArrayFromHeap(e);
    for (let i = 0; i < n; i++) ov[i] = cv[i] ? tv[i]! : ev[i]!;
    return out;
  };
}

function tileKernel(fallback: KernelFn): KernelFn {
  return ({ inputs, backend, attrs }) => {
    const x = need(inputs.x, "x");
    const reps: number[] = attrs.reps;
    const r = x.shape.length;
    if (x.dtype === "string" || r === 0 || reps.length !== r) {
      return fallback({ inputs, backend, attrs });
    }
    const outShape = x.shape.map((d, i) => d * reps[i]!);
    const out = backend.makeOutput(outShape, x.dtype);
    const total = sizeOf(outShape);
    if (total === 0) return out;
    const ov = backend.typedArrayFromHeap(out);
    const xv = backend.typedArrayFromHeap(x);
    const inLast = x.shape[r - 1]!;
    const outLast = outShape[r - 1]!;
    const xStrides = new Array<number>(r).fill(1);
    for (let i = r - 2; i >= 0; i--) xStrides[i] = xStrides[i + 1]! * x.shape[i + 1]!;
    const rows = total / outLast;
    const idx = new Array<number>(r).fill(0);
    for (let k = 0; k < rows; k++) {
      let src = 0;
      for (let d = 0; d < r - 1; d++) src += (idx[d]! % x.shape[d]!) * xStrides[d]!;
      const o = k * outLast;
      if (inLast === 1) ov.fill(xv[src]!, o, o + outLast);
      else {
        const seg = xv.subarray(src, src + inLast);
        for (let j = 0; j < outLast; j += inLast) ov.set(seg, o + j);
      }
      for (let d = r - 2; d >= 0; d--) {
        idx[d]!++;
        if (idx[d]! < outShape[d]!) break;
        idx[d] = 0;
      }
    }
    return out;
  };
}

/**
 * GatherV2 along axis 0 (no batch dims) as one heap-to-heap row copy per index. The stock wasm
 * kernel computes every output element's source index separately (42 ns per element measured:
 * 11 ms to look up 512 embedding rows of 512). Indices are checked like the cpu backend's.
 */
function gatherKernel(fallback: KernelFn): KernelFn {
  return ({ inputs, backend, attrs }) => {
    const x = need(inputs.x, "x");
    const indices = need(inputs.indices, "indices");
    const axis = attrs.axis as number;
    if (
      (axis !== 0 && axis !== -x.shape.length) || (attrs.batchDims ?? 0) !== 0 ||
      x.dtype === "string" || x.dtype === "complex64" || indices.dtype !== "int32" ||
      x.shape.length === 0
    ) {
      return fallback({ inputs, backend, attrs });
    }
    const rows = x.shape[0]!;
    const row = sizeOf(x.shape.slice(1));
    // Indices are checked before the output exists, so a bad one leaves nothing allocated.
    for (const r of backend.typedArrayFromHeap(indices) as Int32Array) {
      if (!(r >= 0 && r < rows)) {
        throw new Error(`GatherV2: the index value ${r} is not in [0, ${rows - 1}]`);
      }
    }
    const out = backend.makeOutput([...indices.shape, ...x.shape.slice(1)], x.dtype);
    // Views taken after makeOutput, which may grow (and so detach) the heap.
    const iv = backend.typedArrayFromHeap(indices) as Int32Array;
    if (iv.length === 0 || row === 0) return out;
    const xv = backend.typedArrayFromHeap(x);
    const ov = backend.typedArrayFromHeap(out);
    // One view of the whole heap in the element type: copyWithin moves rows without allocating.
    const all = new (xv.constructor as Float32ArrayConstructor)(xv.buffer);
    const src = xv.byteOffset / xv.BYTES_PER_ELEMENT;
    const dst = ov.byteOffset / ov.BYTES_PER_ELEMENT;
    for (let i = 0; i < iv.length; i++) {
      const r = iv[i]!;
      all.copyWithin(dst + i * row, src + r * row, src + (r + 1) * row);
    }
    return out;
  };
}

const ELEMENTWISE_KERNELS = [
  ...Object.keys(ROWS),
  "Tanh",
  "Exp",
  "GatherV2",
  "Identity",
  "Cast",
  "Select",
  "Tile",
] as const;

let stockElementwise: Map<string, tf.KernelConfig> | undefined;

/**
 * Replace slow stock wasm elementwise kernels (comparisons, Pow, Tanh, Select, Tile, and the
 * copying Identity / same-dtype Cast) with faster ones. Idempotent. Call after
 * `await tf.setBackend("wasm")`.
 */
export function patchWasmElementwise(): void {
  stockElementwise ??= stockKernels(ELEMENTWISE_KERNELS);
  for (const [name, orig] of stockElementwise) {
    const fb = orig.kernelFunc as unknown as KernelFn;
    let fn: KernelFn;
    if (name in ROWS) fn = binaryKernel(name, fb);
    else if (name === "Tanh") fn = tanhKernel(fb);
    else if (name === "Exp") fn = expKernel(fb);
    else if (name === "GatherV2") fn = gatherKernel(fb);
    else if (name === "Identity") fn = shareKernel(fb, false);
    else if (name === "Cast") fn = shareKernel(fb, true);
    else if (name === "Select") fn = selectKernel(fb);
    else fn = tileKernel(fb);
    tf.unregisterKernel(name, "wasm");
    tf.registerKernel({
      kernelName: name,
      backendName: "wasm",
      setupFunc: orig.setupFunc as tf.KernelSetupFunc,
      kernelFunc: fn as unknown as tf.KernelFunc,
    });
  }
}

/** Restore the stock wasm elementwise kernels (no-op when never patched). */
export function unpatchWasmElementwise(): void {
  if (stockElementwise === undefined) return;
  for (const [name, orig] of stockElementwise) {
    tf.unregisterKernel(name, "wasm");
    tf.registerKernel(orig);
  }
}

/** Restore the stock wasm matmul kernels (no-op when never patched). */
export function unpatchWasmMatMul(): void {
  if (stock === undefined) return;
  for (const name of MATMUL_KERNELS) {
    const orig = stock.get(name)!;
    registerWasm(
      name,
      orig.kernelFunc as unknown as KernelFn,
      orig.setupFunc as tf.KernelSetupFunc,
    );
  }
  registerHeadKernels(undefined);
  activeBlas = undefined;
  mode = "stock";
}

/** The matmul kernels currently installed on the wasm backend, and the BLAS library if any. */
export function wasmMatMulState(): { mode: WasmMatMulMode; blas?: BlasLibrary } {
  return activeBlas === undefined ? { mode } : { mode, blas: activeBlas };
}

// ---------------------------------------------------------------------------------------------
// Fused optimizer update

/**
 * `dst += src` in place on the wasm heap (SIMD kernel), for gradient accumulation without a new
 * tensor per addition. Refuses (returns false) unless the wasm SIMD kernels are active, both are
 * float32 of one size, `dst` owns its buffer (refCount 1) and the two do not share a buffer.
 *
 * @param dst accumulator, modified
 * @param src addend, unchanged
 * @returns whether the addition was done
 */
export function addInPlace(dst: tf.Tensor, src: tf.Tensor): boolean {
  const simd = activeSimdKernels();
  if (simd === undefined || tf.getBackend() !== "wasm") return false;
  if (dst.dtype !== "float32" || src.dtype !== "float32" || dst.size !== src.size) return false;
  if (dst.isDisposed || src.isDisposed || dst.dataId === src.dataId) return false;
  const backend = tf.backend() as unknown as BackendWasm;
  if (backend.refCount(dst.dataId) !== 1) return false;
  const d = backend.typedArrayFromHeap(dst);
  simd.add_into(d.byteOffset, backend.typedArrayFromHeap(src).byteOffset, d.length);
  return true;
}

/**
 * Heap views of tensors an in-place update writes (`written`) and reads (`read`), or undefined
 * when it must not run: the backend is not wasm, a tensor is not float32 of the first one's size
 * or is disposed, a written tensor shares its buffer with another tensor (refCount ≠ 1), or two
 * of them are the same buffer.
 */
function inPlaceViews(
  written: readonly tf.Tensor[],
  read: readonly tf.Tensor[],
): Float32Array[] | undefined {
  if (tf.getBackend() !== "wasm") return undefined;
  const all = [...written, ...read];
  const n = all[0]!.size;
  if (all.some((t) => t.dtype !== "float32" || t.size !== n || t.isDisposed)) return undefined;
  const backend = tf.backend() as unknown as BackendWasm;
  if (written.some((t) => backend.refCount(t.dataId) !== 1)) return undefined;
  if (new Set(all.map((t) => t.dataId)).size !== all.length) return undefined; // aliased
  return all.map((t) => backend.typedArrayFromHeap(t) as Float32Array);
}

/**
 * One unfactored Adafactor update (no first moment) of `p` and its second moment `v` in place on
 * the wasm heap, in double precision and rounded once per value (the parameters it serves, T5's
 * layer-norm vectors, are small: a JavaScript loop is enough): `v ← b·v + (1−b)·(g² + ε1)`,
 * `u = g/√v`, `s = lr` (× max(eps2, RMS(p)) with `parameterScaleEps2`),
 * `p ← p·(1 − s·wd) − s·u / max(1, RMS(u)/threshold)`. The op-by-op version runs ≈ 15 kernels.
 * Refuses (false) unless the wasm backend is active, the three are float32 of one size, and p and
 * v own distinct buffers.
 *
 * @returns whether the update was done
 */
export function adafactorUnfactoredInPlace(
  p: tf.Tensor,
  v: tf.Tensor,
  g: tf.Tensor,
  h: AdafactorAttrs,
): boolean {
  const views = inPlaceViews([p, v], [g]);
  if (views === undefined) return false;
  const [pv, vv, gv] = views as [Float32Array, Float32Array, Float32Array];
  const n = p.size;
  if (n === 0) return true;
  const b = h.beta2t;
  let sumU = 0;
  let sumP = 0;
  for (let i = 0; i < n; i++) {
    const gi = gv[i]!;
    const vi = b * vv[i]! + (1 - b) * (gi * gi + h.eps1);
    vv[i] = vi;
    const u = gi / Math.sqrt(Math.fround(vi));
    sumU += u * u;
    sumP += pv[i]! * pv[i]!;
  }
  const s = h.parameterScaleEps2 === undefined
    ? h.lr
    : h.lr * Math.max(h.parameterScaleEps2, Math.sqrt(sumP / n));
  const clip = h.clippingThreshold > 0 ? Math.max(1, Math.sqrt(sumU / n) / h.clippingThreshold) : 1;
  const decay = 1 - s * h.weightDecay;
  for (let i = 0; i < n; i++) {
    pv[i] = pv[i]! * decay - s * (gv[i]! / Math.sqrt(vv[i]!)) / clip;
  }
  return true;
}

/**
 * One factored Adafactor update (no first moment) of a `[rows, cols]` parameter in place on the
 * wasm heap, with the SIMD passes of `wasm_simd.ts`: row and column sums of g² + eps1, the new
 * factored second moments `vr`, `vc` (written in place), the RMS of the update for clipping,
 * and `p ← p·(1 − lr·wd) − g·rf·cf·lr/clip`. The op-by-op version runs ≈ 20 kernels per
 * variable (≈ 790 ms per T5 1.1 Small step here). Refuses (false) unless the SIMD kernels are
 * active, `p` is float32 rank 2 with `cols % 4 === 0`, `vr` is `[rows]`, `vc` `[cols]`, and
 * p, vr, vc own their buffers; the caller then runs the op-by-op update.
 *
 * @returns whether the update was done
 */
export function adafactorInPlace(
  p: tf.Tensor,
  vr: tf.Tensor,
  vc: tf.Tensor,
  g: tf.Tensor,
  h: AdafactorAttrs,
): boolean {
  const simd = activeSimdKernels();
  if (simd === undefined || tf.getBackend() !== "wasm" || p.rank !== 2) return false;
  const [rows, cols] = p.shape as [number, number];
  if (
    cols % 4 !== 0 || [p, vr, vc, g].some((t) => t.dtype !== "float32" || t.isDisposed) ||
    g.size !== p.size || vr.size !== rows || vc.size !== cols
  ) {
    return false;
  }
  const backend = tf.backend() as unknown as BackendWasm;
  for (const t of [p, vr, vc]) if (backend.refCount(t.dataId) !== 1) return false;
  // Scratch on the heap: row sums, row sums of u², column sums (zeroed), rf, cf.
  const scratch = tf.zeros([3 * rows + 2 * cols]);
  try {
    const sv = backend.typedArrayFromHeap(scratch) as Float32Array;
    const rowSum = sv.subarray(0, rows);
    const rowSq = sv.subarray(rows, 2 * rows);
    const rf = sv.subarray(2 * rows, 3 * rows);
    const colSum = sv.subarray(3 * rows, 3 * rows + cols);
    const cf = sv.subarray(3 * rows + cols);
    const gv = backend.typedArrayFromHeap(g) as Float32Array;
    const pv = backend.typedArrayFromHeap(p) as Float32Array;
    const vrv = backend.typedArrayFromHeap(vr) as Float32Array;
    const vcv = backend.typedArrayFromHeap(vc) as Float32Array;
    simd.sq_sums(gv.byteOffset, rows, cols, h.eps1, rowSum.byteOffset, colSum.byteOffset);
    const b = h.beta2t;
    let meanR = 0;
    for (let r = 0; r < rows; r++) {
      vrv[r] = vrv[r]! * b + (rowSum[r]! / cols) * (1 - b);
      meanR += vrv[r]!;
    }
    meanR /= rows;
    for (let r = 0; r < rows; r++) rf[r] = 1 / Math.sqrt(vrv[r]! / meanR);
    for (let c = 0; c < cols; c++) {
      vcv[c] = vcv[c]! * b + (colSum[c]! / rows) * (1 - b);
      cf[c] = 1 / Math.sqrt(vcv[c]!);
    }
    let stepLr = h.lr;
    if (h.parameterScaleEps2 !== undefined) {
      let sq = 0;
      for (let i = 0; i < pv.length; i++) sq += pv[i]! * pv[i]!;
      stepLr *= Math.max(h.parameterScaleEps2, Math.sqrt(sq / pv.length));
    }
    let clip = 1;
    if (h.clippingThreshold > 0) {
      simd.scaled_row_sumsq(gv.byteOffset, cf.byteOffset, rows, cols, rowSq.byteOffset);
      let sq = 0;
      for (let r = 0; r < rows; r++) sq += rowSq[r]! * rf[r]! * rf[r]!;
      clip = Math.max(1, Math.sqrt(sq / (rows * cols)) / h.clippingThreshold);
    }
    const decay = h.weightDecay > 0 ? 1 - stepLr * h.weightDecay : 1;
    simd.factored_update(
      pv.byteOffset,
      gv.byteOffset,
      rf.byteOffset,
      cf.byteOffset,
      rows,
      cols,
      decay,
      stepLr / clip,
    );
    return true;
  } finally {
    scratch.dispose();
  }
}

/**
 * One AdamW update of `p` (and its slots `m`, `v`) in a single pass over the wasm heap, in
 * place: m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²; p ← p·decay − step·m / (√v·invSqrtBc2 + ε)
 * (constants from `fused.ts` adamwAttrs).
 * tfjs's op-by-op version runs ~12 elementwise kernels and allocates as many temporaries per
 * variable. Values are computed in double and rounded once (agrees with the op-by-op float32
 * result to ~1e-7 relative).
 *
 * Returns false (and changes nothing) unless the wasm backend is active, all four tensors are
 * float32 with equal sizes, and p, m and v each own their buffer (refCount 1; a buffer shared
 * with another tensor must not be written in place). The caller then uses the op-by-op update.
 */
export function adamwInPlace(
  p: tf.Tensor,
  m: tf.Tensor,
  v: tf.Tensor,
  g: tf.Tensor,
  h: AdamWAttrs,
): boolean {
  const views = inPlaceViews([p, m, v], [g]);
  if (views === undefined) return false;
  const [pv, mv, vv, gv] = views as [Float32Array, Float32Array, Float32Array, Float32Array];
  const n = p.size;
  const { b1, c1, b2, c2, decay, step, invSqrtBc2, eps } = h;
  const simd = activeSimdKernels();
  if (simd) {
    simd.adamw(
      pv.byteOffset,
      mv.byteOffset,
      vv.byteOffset,
      gv.byteOffset,
      n,
      b1,
      c1,
      b2,
      c2,
      decay,
      step,
      invSqrtBc2,
      eps,
    );
    return true;
  }
  for (let i = 0; i < n; i++) {
    const gi = gv[i]!;
    const mi = b1 * mv[i]! + c1 * gi;
    const vi = b2 * vv[i]! + c2 * gi * gi;
    mv[i] = mi;
    vv[i] = vi;
    pv[i] = pv[i]! * decay - (step * mi) / (Math.sqrt(vi) * invSqrtBc2 + eps);
  }
  return true;
}
