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
 *    and then calls the stock kernel with both flags false, which is both fast and correct.
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
  /** Close the library (only after {@link unpatchWasmMatMul} or a switch to another mode). */
  close(): void;
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
 * permission or package when it cannot.
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
      errors.push(`${name}: ${e instanceof Error ? e.message : String(e)}`);
      continue;
    }
    const s = lib.symbols;
    const threads = s.openblas_get_num_threads ? s.openblas_get_num_threads() : 1;
    let config = "";
    const cfgPtr = s.openblas_get_config ? s.openblas_get_config() : null;
    if (cfgPtr !== null) config = Deno.UnsafePointerView.getCString(cfgPtr).trim();
    const blas: BlasLibrary = {
      path: name,
      threads,
      config,
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

/** Stock kernel with transposed operands materialised first (fast and correct). */
function transposeFixed(orig: KernelFn): KernelFn {
  const transpose = wasmKernel("Transpose");
  return ({ inputs, backend, attrs }) => {
    const { transposeA, transposeB } = attrs;
    if (!transposeA && !transposeB) return orig({ inputs, backend, attrs });
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
    try {
      const a = need(inputs.a, "a");
      const b = need(inputs.b, "b");
      return orig({
        inputs: { ...inputs, a: transposeA ? tr(a) : a, b: transposeB ? tr(b) : b },
        backend,
        attrs: { ...attrs, transposeA: false, transposeB: false },
      });
    } finally {
      for (const t of tmp) backend.disposeData(t.dataId);
    }
  };
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
    const { bias, preluActivationWeights } = inputs;
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
    let y = blasMatMul(blas, backend, a, b, transposeA, transposeB, rowBias ? bias : undefined);
    if (bias !== undefined && !rowBias) {
      const z = wasmKernel("Add")({ inputs: { a: y, b: bias }, backend, attrs: {} });
      backend.disposeData(y.dataId);
      y = z;
    }
    if (actKernel !== undefined) {
      const actInputs: Record<string, tf.TensorInfo | undefined> = { x: y };
      if (activation === "prelu") actInputs.alpha = need(preluActivationWeights, "prelu weights");
      const z = wasmKernel(actKernel)({
        inputs: actInputs,
        backend,
        attrs: activation === "leakyrelu" ? { alpha: attrs.leakyreluAlpha ?? 0.2 } : {},
      });
      backend.disposeData(y.dataId);
      y = z;
    }
    return y;
  };
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

/**
 * Install fast matmul kernels on the wasm backend: OpenBLAS `cblas_sgemm` when `blas` is given,
 * otherwise the transpose fix. Call after `await tf.setBackend("wasm")` (the stock kernels must
 * be registered). Calling again switches mode; the stock kernels are remembered from the first
 * call.
 *
 * @returns the mode now installed.
 */
export function patchWasmMatMul(opts: { blas?: BlasLibrary } = {}): WasmMatMulMode {
  if (stock === undefined) {
    const saved = new Map<MatMulKernel, tf.KernelConfig>();
    for (const name of MATMUL_KERNELS) {
      const k = tf.getKernel(name, "wasm");
      if (k === undefined) {
        throw new Error(
          `model/wasm_kernels.ts: wasm kernel ${name} is not registered; ` +
            'import "@tensorflow/tfjs-backend-wasm" and await tf.setBackend("wasm") first',
        );
      }
      saved.set(name, k);
    }
    stock = saved;
  }
  for (const name of MATMUL_KERNELS) {
    const orig = stock.get(name)!;
    const fixed = transposeFixed(orig.kernelFunc as unknown as KernelFn);
    let fn = fixed;
    if (opts.blas !== undefined) {
      fn = name === "BatchMatMul"
        ? blasBatchMatMul(opts.blas, fixed)
        : blasFusedMatMul(opts.blas, fixed);
    }
    registerWasm(name, fn, orig.setupFunc as tf.KernelSetupFunc);
  }
  activeBlas = opts.blas;
  mode = opts.blas !== undefined ? "blas" : "transpose-fix";
  return mode;
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
  activeBlas = undefined;
  mode = "stock";
}

/** The matmul kernels currently installed on the wasm backend, and the BLAS library if any. */
export function wasmMatMulState(): { mode: WasmMatMulMode; blas?: BlasLibrary } {
  return activeBlas === undefined ? { mode } : { mode, blas: activeBlas };
}
