/**
 * The two products of multi-head attention, read and written in the projected layout
 * `[batch, length, heads·dKv]`, so no tensor is transposed to `[batch, heads, length, dKv]` and
 * back:
 *
 * - {@link headScores}: `S[b, h, i, j] = Σ_d Q[b, i, h·D + d] · K[b, j, h·D + d]` → `[B, H, Lq, Lk]`
 * - {@link headContext}: `O[b, i, h·D + d] = Σ_j P[b, h, i, j] · V[b, j, h·D + d]` → `[B, Lq, H·D]`
 *   (with `transposeP`, `P[b, h, j, i]`)
 *
 * Why: splitting heads with a reshape and a transpose (and merging them back) costs four
 * transposes per attention layer forward and as many backward. On the GPU each is a dispatch
 * (288 of the ≈ 2,400 of a T5 1.1 Base training step); on the CPU each is a pass over the tensor.
 * Both products only need a row stride (`heads·dKv` instead of `dKv`) and a per-head offset, which
 * BLAS (`lda`) and a tiled WGSL kernel take directly.
 *
 * How: each product is a named kernel (`HpHeadScores`, `HpHeadContext`) whose gradients are the
 * same two kernels with other operands (so autodiff adds no transposes either):
 * `dQ = context(dS, K)`, `dK = context(dS, Q, transposeP)`, `dV = context(P, dO, !transposeP)`,
 * `dP = scores(dO, V)` (or `scores(V, dO)` when `transposeP`). Each call is described once, as a
 * strided batched product ({@link headProduct}: per (batch, head) entry, operand offsets and row
 * strides), which every backend's kernel runs. Kernels exist for `wasm` with
 * matMul in OpenBLAS (`model/wasm_kernels.ts`) and for `webgpu` (`model/webgpu/mod.ts`); on any
 * other backend, or when a kernel is not registered, the ops run the reshape + transpose +
 * `tf.matMul` composite, so the `cpu` backend keeps its exact numbers.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";

/** Kernel name of {@link headScores} (inputs `q`, `k`; attr `heads`). */
export const HEAD_SCORES = "HpHeadScores";
/** Kernel name of {@link headContext} (inputs `p`, `v`; attrs `heads`, `transposeP`). */
export const HEAD_CONTEXT = "HpHeadContext";

/** Attributes of {@link HEAD_SCORES}. */
export interface HeadScoresAttrs {
  /** Number of heads H; the last dim of both inputs is H·D. */
  readonly heads: number;
}

/** Attributes of {@link HEAD_CONTEXT}. */
export interface HeadContextAttrs {
  /** Number of heads H; the last dim of `v` is H·D. */
  readonly heads: number;
  /** `p` is stored `[B, H, N, M]` and used transposed. */
  readonly transposeP: boolean;
}

/** Shapes of one {@link headScores} call. */
export interface HeadScoresShape {
  readonly batch: number;
  readonly heads: number;
  /** Query rows. */
  readonly lq: number;
  /** Key rows. */
  readonly lk: number;
  /** Per-head width D. */
  readonly dk: number;
}

/** Shapes of one {@link headContext} call: `P'` is `[B, H, M, N]`, `V` `[B, N, H·D]`. */
export interface HeadContextShape {
  readonly batch: number;
  readonly heads: number;
  /** Output rows. */
  readonly m: number;
  /** Rows of V (the summed axis). */
  readonly n: number;
  /** Per-head width D. */
  readonly dk: number;
}

function fail(fn: string, msg: string): never {
  throw new Error(`model/heads.ts ${fn}: ${msg}`);
}

/**
 * Checks the operands of a scores product and returns its sizes.
 *
 * @throws Error naming the operand whose shape is wrong
 */
export function headScoresShape(
  q: readonly number[],
  k: readonly number[],
  heads: number,
): HeadScoresShape {
  if (!Number.isInteger(heads) || heads < 1) fail("headScores", `heads must be ≥ 1, got ${heads}`);
  if (q.length !== 3) fail("headScores", `q must be [batch, length, heads·dKv], got [${q}]`);
  if (k.length !== 3) fail("headScores", `k must be [batch, length, heads·dKv], got [${k}]`);
  const [b, lq, w] = q as [number, number, number];
  if (w % heads !== 0) fail("headScores", `q width ${w} is not divisible by ${heads} heads`);
  if (k[0] !== b || k[2] !== w) {
    fail("headScores", `k [${k}] does not match q [${q}] in batch and width`);
  }
  return { batch: b, heads, lq, lk: k[1]!, dk: w / heads };
}

/**
 * Checks the operands of a context product and returns its sizes.
 *
 * @throws Error naming the operand whose shape is wrong
 */
export function headContextShape(
  p: readonly number[],
  v: readonly number[],
  heads: number,
  transposeP: boolean,
): HeadContextShape {
  if (!Number.isInteger(heads) || heads < 1) fail("headContext", `heads must be ≥ 1, got ${heads}`);
  if (p.length !== 4) fail("headContext", `p must be [batch, heads, rows, cols], got [${p}]`);
  if (v.length !== 3) fail("headContext", `v must be [batch, length, heads·dKv], got [${v}]`);
  const [b, h, r, c] = p as [number, number, number, number];
  const [vb, vn, w] = v as [number, number, number];
  if (h !== heads) fail("headContext", `p has ${h} heads, expected ${heads}`);
  if (w % heads !== 0) fail("headContext", `v width ${w} is not divisible by ${heads} heads`);
  const m = transposeP ? c : r;
  const n = transposeP ? r : c;
  if (vb !== b || vn !== n) {
    fail(
      "headContext",
      `v [${v}] does not match p [${p}]${transposeP ? " (transposed)" : ""}: need [${b}, ${n}, …]`,
    );
  }
  return { batch: b, heads, m, n, dk: w / heads };
}

/**
 * Where one operand (or the result) of a strided product lives: batch entry z starts at
 * `(z / heads)·s0 + (z % heads)·s1` and consecutive rows of its stored matrix are `ld` elements
 * apart (elements within a row are contiguous). A dense `[batch, rows, cols]` array is
 * `{ heads: 1, s0: rows·cols, s1: 0, ld: cols }`; head h of a `[B, L, H·D]` tensor is
 * `{ heads: H, s0: L·H·D, s1: D, ld: H·D }`.
 */
export interface StridedLayout {
  readonly heads: number;
  readonly s0: number;
  readonly s1: number;
  readonly ld: number;
}

/** One strided batched product `out[z] = op(A[z])·op(B[z])` for z < batch. */
export interface StridedMatMul {
  /** Number of products (dispatch z). */
  readonly batch: number;
  /** Output rows. */
  readonly m: number;
  /** Output columns. */
  readonly n: number;
  /** Shared dimension. */
  readonly k: number;
  /** A stored `[K, M]` per entry. */
  readonly transposeA: boolean;
  /** B stored `[N, K]` per entry. */
  readonly transposeB: boolean;
  readonly a: StridedLayout;
  readonly b: StridedLayout;
  readonly out: StridedLayout;
  /** Shape of the result tensor (its size must cover every output element). */
  readonly outShape: number[];
}

function dense(rows: number, cols: number): StridedLayout {
  return { heads: 1, s0: rows * cols, s1: 0, ld: cols };
}

/** Head h of a `[B, len, heads·dk]` tensor, for z = b·heads + h. */
function headColumns(heads: number, len: number, dk: number): StridedLayout {
  return { heads, s0: len * heads * dk, s1: dk, ld: heads * dk };
}

/**
 * The strided product of `HpHeadScores`: for z = b·H + h, `Q[b, :, h·D…]·K[b, :, h·D…]ᵀ` into a
 * dense `[B, H, Lq, Lk]` result.
 */
export function headScoresMatMul(
  batch: number,
  heads: number,
  lq: number,
  lk: number,
  dk: number,
): StridedMatMul {
  return {
    batch: batch * heads,
    m: lq,
    n: lk,
    k: dk,
    transposeA: false,
    transposeB: true,
    a: headColumns(heads, lq, dk),
    b: headColumns(heads, lk, dk),
    out: dense(lq, lk),
    outShape: [batch, heads, lq, lk],
  };
}

/**
 * The strided product of `HpHeadContext`: for z = b·H + h, `P'[b, h]·V[b, :, h·D…]` into head h's
 * columns of a `[B, M, H·D]` result, where `P'` is `P` or (`transposeP`) its transpose.
 */
export function headContextMatMul(
  batch: number,
  heads: number,
  m: number,
  n: number,
  dk: number,
  transposeP: boolean,
): StridedMatMul {
  return {
    batch: batch * heads,
    m,
    n: dk,
    k: n,
    transposeA: transposeP,
    transposeB: false,
    a: transposeP ? dense(n, m) : dense(m, n),
    b: headColumns(heads, n, dk),
    out: headColumns(heads, m, dk),
    outShape: [batch, m, heads * dk],
  };
}

/** Element offset of batch entry `z` of a strided operand. */
export function stridedOffset(l: StridedLayout, z: number): number {
  return Math.floor(z / l.heads) * l.s0 + (z % l.heads) * l.s1;
}

/**
 * The operands and strided product of one head kernel call: `HpHeadScores` (inputs `q`, `k`) or
 * `HpHeadContext` (inputs `p`, `v`), shapes checked. What every backend's kernel starts from.
 *
 * @throws Error naming the operand whose shape is wrong, or an unknown kernel
 */
export function headProduct<T extends { readonly shape: readonly number[] }>(
  kernelName: string,
  inputs: Readonly<Record<string, T | undefined>>,
  attrs: unknown,
): { a: T; b: T; spec: StridedMatMul } {
  const need = (name: string) => {
    const x = inputs[name];
    if (x === undefined) fail(kernelName, `input ${name} is missing`);
    return x;
  };
  if (kernelName === HEAD_SCORES) {
    const [q, k] = [need("q"), need("k")];
    const { heads } = attrs as HeadScoresAttrs;
    const s = headScoresShape(q.shape, k.shape, heads);
    return { a: q, b: k, spec: headScoresMatMul(s.batch, heads, s.lq, s.lk, s.dk) };
  }
  if (kernelName === HEAD_CONTEXT) {
    const [p, v] = [need("p"), need("v")];
    const { heads, transposeP } = attrs as HeadContextAttrs;
    const s = headContextShape(p.shape, v.shape, heads, !!transposeP);
    return { a: p, b: v, spec: headContextMatMul(s.batch, heads, s.m, s.n, s.dk, !!transposeP) };
  }
  return fail("headProduct", `unknown kernel ${kernelName}`);
}

function hasKernel(name: string): boolean {
  return tf.getKernel(name, tf.getBackend()) !== undefined;
}

function split(x: tf.Tensor, heads: number): tf.Tensor4D {
  const [b, l, w] = x.shape as [number, number, number];
  return x.reshape([b, l, heads, w / heads]).transpose([0, 2, 1, 3]);
}

function merge(x: tf.Tensor4D): tf.Tensor3D {
  const [b, h, l, d] = x.shape;
  return x.transpose([0, 2, 1, 3]).reshape([b, l, h * d]);
}

/**
 * Attention scores per head, `q·kᵀ` for each head, from the projected layout.
 *
 * @param q `[B, Lq, H·D]` float32
 * @param k `[B, Lk, H·D]` float32
 * @param heads H
 * @returns `[B, H, Lq, Lk]`
 */
export function headScores(q: tf.Tensor3D, k: tf.Tensor3D, heads: number): tf.Tensor4D {
  headScoresShape(q.shape, k.shape, heads);
  if (q.dtype === "float32" && k.dtype === "float32" && hasKernel(HEAD_SCORES)) {
    return tf.engine().runKernel(
      HEAD_SCORES,
      { q, k },
      { heads } as unknown as tf.NamedAttrMap,
    ) as tf.Tensor4D;
  }
  return tf.tidy(() => tf.matMul(split(q, heads), split(k, heads), false, true) as tf.Tensor4D);
}

/**
 * Attention output per head, `p·v` for each head, written in the projected layout.
 *
 * @param p `[B, H, M, N]` (or `[B, H, N, M]` with `transposeP`) float32
 * @param v `[B, N, H·D]` float32
 * @param heads H
 * @param transposeP use `p` transposed in its last two dims
 * @returns `[B, M, H·D]`
 */
export function headContext(
  p: tf.Tensor4D,
  v: tf.Tensor3D,
  heads: number,
  transposeP = false,
): tf.Tensor3D {
  headContextShape(p.shape, v.shape, heads, transposeP);
  if (p.dtype === "float32" && v.dtype === "float32" && hasKernel(HEAD_CONTEXT)) {
    return tf.engine().runKernel(HEAD_CONTEXT, { p, v }, {
      heads,
      transposeP,
    } as unknown as tf.NamedAttrMap) as tf.Tensor3D;
  }
  return tf.tidy(() => merge(tf.matMul(p, split(v, heads), transposeP, false) as tf.Tensor4D));
}

/**
 * Float64 reference of {@link headScores} on plain arrays (tests and device self-checks).
 *
 * @returns `[B, H, Lq, Lk]` row-major
 */
export function headScoresReference(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  s: HeadScoresShape,
): Float64Array {
  const { batch, heads, lq, lk, dk } = s;
  const w = heads * dk;
  const out = new Float64Array(batch * heads * lq * lk);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < lq; i++) {
        for (let j = 0; j < lk; j++) {
          let acc = 0;
          for (let d = 0; d < dk; d++) {
            acc += q[(b * lq + i) * w + h * dk + d]! * k[(b * lk + j) * w + h * dk + d]!;
          }
          out[((b * heads + h) * lq + i) * lk + j] = acc;
        }
      }
    }
  }
  return out;
}

/**
 * Float64 reference of {@link headContext} on plain arrays (tests and device self-checks).
 *
 * @returns `[B, M, H·D]` row-major
 */
export function headContextReference(
  p: ArrayLike<number>,
  v: ArrayLike<number>,
  s: HeadContextShape,
  transposeP: boolean,
): Float64Array {
  const { batch, heads, m, n, dk } = s;
  const w = heads * dk;
  const out = new Float64Array(batch * m * w);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      const pBase = (b * heads + h) * m * n;
      for (let i = 0; i < m; i++) {
        for (let d = 0; d < dk; d++) {
          let acc = 0;
          for (let j = 0; j < n; j++) {
            const pij = transposeP ? p[pBase + j * m + i]! : p[pBase + i * n + j]!;
            acc += pij * v[(b * n + j) * w + h * dk + d]!;
          }
          out[(b * m + i) * w + h * dk + d] = acc;
        }
      }
    }
  }
  return out;
}

let gradientsRegistered = false;

/** Registers the gradients of {@link HEAD_SCORES} and {@link HEAD_CONTEXT} (idempotent). */
export function registerHeadGradients(): void {
  if (gradientsRegistered) return;
  tf.registerGradient({
    kernelName: HEAD_SCORES,
    inputsToSave: ["q", "k"],
    gradFunc: (dy, saved, attrs) => {
      const [q, k] = saved as [tf.Tensor3D, tf.Tensor3D];
      const { heads } = attrs as unknown as HeadScoresAttrs;
      const ds = dy as tf.Tensor4D;
      return {
        q: () => headContext(ds, k, heads, false),
        k: () => headContext(ds, q, heads, true),
      };
    },
  });
  tf.registerGradient({
    kernelName: HEAD_CONTEXT,
    inputsToSave: ["p", "v"],
    gradFunc: (dy, saved, attrs) => {
      const [p, v] = saved as [tf.Tensor4D, tf.Tensor3D];
      const { heads, transposeP } = attrs as unknown as HeadContextAttrs;
      const dOut = dy as tf.Tensor3D;
      return {
        p: () => transposeP ? headScores(v, dOut, heads) : headScores(dOut, v, heads),
        v: () => headContext(p, dOut, heads, !transposeP),
      };
    },
  });
  gradientsRegistered = true;
}
registerHeadGradients();
