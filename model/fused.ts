/**
 * Fused ops of the T5 training step, each one custom tfjs kernel instead of a chain of small
 * ones: dropout, the gated GELU feed-forward activation `gelu_new(a) ⊙ b`, T5's RMS layer norm,
 * the attention softmax with its position bias and mask (each forward and backward), and the
 * AdamW and factored Adafactor updates.
 *
 * Why: on the wasm backend a T5 1.1 Small step spent ≈ 100 ms per forward pass generating
 * dropout masks in JavaScript (`tf.dropout` draws them with tfjs's seedrandom, outside any
 * kernel) and ran the gated GELU as ≈ 8 elementwise kernels forward and ≈ 12 backward, each a
 * full pass over a `[batch, length, d_ff]` tensor; the optimizers ran ≈ 12–25 kernels per
 * variable. On webgpu the same chains are as many dispatches, and `tf.dropout` uploads a
 * JS-generated mask every call.
 *
 * How: each op is a named kernel (`HpDropout`, `HpGatedGelu`, `HpRmsNorm`, `HpAttentionSoftmax`
 * and their gradient kernels; `HpAdamW`, `HpAdafactor`) with a gradient registered for it, so
 * tfjs's autodiff sees one node. Implementations exist for the `wasm` backend (SIMD kernels of
 * `wasm_simd.ts` on the wasm heap, {@link registerFusedWasmKernels}; the optimizers update in
 * place through `wasm_kernels.ts`) and the `webgpu` backend (WGSL,
 * `model/webgpu/fused_kernels.ts`). On any other backend (`cpu`, `tensorflow`, `webgl`), and for
 * the attention softmax on wasm, the ops fall back to the composite of stock ops, so the pure-JS
 * backend keeps its exact numbers.
 *
 * The dropout mask is counter-based: element `i` of the mask for `seed` depends only on
 * `(seed, i)` through two rounds of the murmur3 finaliser, so every backend and every
 * implementation produces the same mask, bit for bit, and no generator state is carried.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";
import { activeSimdKernels } from "./wasm_simd.ts";
import { adafactorInPlace, adafactorUnfactoredInPlace, adamwInPlace } from "./wasm_kernels.ts";
import { fmix32 } from "./hash.ts";

/** Kernel name of the dropout mask (no inputs; attrs `shape` and {@link DropoutMaskParams}). */
export const DROPOUT_MASK = "HpDropoutMask";
/**
 * Kernel name of dropout applied, `x ⊙ mask` (input `x`; attrs {@link DropoutMaskParams}). Its
 * gradient is the same kernel applied to `dy`, so no mask is stored for the backward pass.
 */
export const DROPOUT = "HpDropout";
/**
 * Kernel name of the residual with dropout, `x + h ⊙ mask` (inputs `x`, `h` of equal shape;
 * attrs {@link DropoutMaskParams}). Its gradient is `dy` for `x` and {@link DROPOUT} of `dy`
 * for `h`.
 */
export const DROPOUT_ADD = "HpDropoutAdd";
/**
 * Kernel name of the sum over the leading axis, `[B, ...rest]` → `[1, ...rest]` (input `x`): the
 * position bias's gradient. No gradient of its own (it is only used inside gradients).
 */
export const SUM_LEADING = "HpSumLeading";
/** Kernel name of `gelu_new(a) ⊙ b` (inputs `a`, `b` of equal shape). */
export const GATED_GELU = "HpGatedGelu";
/**
 * Kernel name of `dropout(gelu_new(a) ⊙ b)` (inputs `a`, `b`; attrs {@link DropoutMaskParams}):
 * the feed-forward's activation and its dropout in one pass.
 */
export const GATED_GELU_DROPOUT = "HpGatedGeluDropout";
/** Kernel name of its gradient (inputs `a`, `b`, `dy`; attrs the mask; outputs `[da, db]`). */
export const GATED_GELU_DROPOUT_GRAD = "HpGatedGeluDropoutGrad";
/** Kernel name of the gated GELU's gradient (inputs `a`, `b`, `dy`; outputs `[da, db]`). */
export const GATED_GELU_GRAD = "HpGatedGeluGrad";
/** Kernel name of T5's RMS norm (inputs `x` `[..., d]`, `w` `[d]`; attr `eps`). */
export const RMS_NORM = "HpRmsNorm";
/**
 * Kernel name of the RMS norm's gradient (inputs `x`, `w`, `dy`, and optionally `dr`, added to
 * dx: the gradient of {@link RMS_NORM_KEEP}'s second output; outputs `[dx, dw]`).
 */
export const RMS_NORM_GRAD = "HpRmsNormGrad";
/**
 * Kernel name of the RMS norm that also passes its input through (inputs `x`, `w`; attr `eps`;
 * outputs `[norm(x), x]`, the second sharing x's data): a pre-norm residual block reads the
 * residual from the second output, so x has one consumer and its gradient comes out of one
 * {@link RMS_NORM_GRAD} with `dr`, instead of the norm's gradient and tfjs's sum of the two.
 */
export const RMS_NORM_KEEP = "HpRmsNormKeep";
/**
 * Kernel name of the attention softmax `softmax(x + bias + mask)` over the last axis (inputs
 * `x` `[B, H, Q, K]`, `bias` and `mask` rank 4 with each of the first three dims 1 or full).
 */
export const ATTENTION_SOFTMAX = "HpAttentionSoftmax";
/** Kernel name of the softmax gradient `p ⊙ (dy − Σ p ⊙ dy)` (inputs `p`, `dy`). */
export const SOFTMAX_GRAD = "HpSoftmaxGrad";
/**
 * Kernel name of the per-token softmax cross-entropy (inputs `logits` `[n, V]`, `labels` int32
 * `[n]` in [0, V); attr `eps` (label smoothing)); output `[n, 2]`: each row's loss and its
 * log-sum-exp (kept for the gradient, so the backward pass reads the logits once).
 */
export const SOFTMAX_XENT = "HpSoftmaxXent";
/**
 * Kernel name of its gradient (inputs `logits`, `labels`, `dy` and `out` `[n, 2]`: the upstream
 * gradient and the forward output; attrs the forward's; output `[n, V]`). On the backends of
 * {@link LSE_GRAD_IN_KERNEL} (wasm, webgpu), with the attribute `lseGrad`, it also adds the
 * gradient through the log-sum-exp column, `dy[:, 1] · softmax(x)`.
 */
export const SOFTMAX_XENT_GRAD = "HpSoftmaxXentGrad";
/**
 * Kernel name of one factored Adafactor update of a matrix without first moment (inputs `p`
 * `[rows, cols]`, `g`, `vr` `[rows]`, `vc` `[cols]`; attrs {@link AdafactorAttrs}; outputs the
 * new `[p, vr, vc]`). Registered for webgpu; on wasm the update runs in place instead
 * (`model/wasm_kernels.ts` adafactorInPlace).
 */
export const ADAFACTOR = "HpAdafactor";
/**
 * Kernel name of one AdamW update (inputs `p`, `m`, `v`, `g`; attrs {@link AdamWAttrs}; outputs
 * the new `[p, m, v]`). Registered for webgpu; on wasm the update runs in place instead
 * (`model/wasm_kernels.ts` adamwInPlace).
 */
export const ADAMW = "HpAdamW";

// ---------------------------------------------------------------------------------------------
// Dropout mask

/** Parameters of one dropout mask, as the kernels consume them. */
export interface DropoutMaskParams {
  /** First key (u32), XORed into the element index before the first mixing round. */
  readonly key0: number;
  /** Second key (u32), XORed in before the second round. */
  readonly key1: number;
  /** An element is kept when its 32-bit hash is ≥ this (u32): `round(rate · 2³²)`. */
  readonly threshold: number;
  /** Value of kept elements, `1 / (1 − rate)` rounded to float32. */
  readonly scale: number;
}

/**
 * Validates a dropout rate and seed and derives the mask parameters.
 *
 * @param rate probability of dropping an element, in [0, 1)
 * @param seed any integer (taken modulo 2³²)
 * @returns keys, threshold and scale
 * @throws Error naming the bad argument
 */
export function dropoutMaskParams(rate: number, seed: number): DropoutMaskParams {
  if (!(rate >= 0 && rate < 1)) {
    throw new Error(`model/fused.ts dropout: rate must be in [0, 1), got ${rate}`);
  }
  if (!Number.isInteger(seed)) {
    throw new Error(`model/fused.ts dropout: seed must be an integer, got ${seed}`);
  }
  const s = seed >>> 0;
  return {
    key0: fmix32(s ^ 0x9e3779b9),
    key1: fmix32(Math.imul(s, 0x85ebca77) ^ 0x27d4eb2f),
    threshold: Math.min(Math.round(rate * 2 ** 32), 2 ** 32 - 1),
    scale: Math.fround(1 / (1 - rate)),
  };
}

/**
 * Fills `out` with the dropout mask of elements `offset … offset + out.length − 1`: `scale` where
 * `fmix32(fmix32(i ⊕ key0) ⊕ key1) ≥ threshold`, else 0. The reference every kernel matches.
 *
 * @param out destination
 * @param p parameters from {@link dropoutMaskParams}
 * @param offset index of `out[0]` in the whole mask
 */
export function fillDropoutMask(out: Float32Array, p: DropoutMaskParams, offset = 0): void {
  const { key0, key1, threshold, scale } = p;
  for (let j = 0; j < out.length; j++) {
    let h = ((offset + j) ^ key0) >>> 0;
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    h = (h ^ key1) >>> 0;
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    out[j] = (h >>> 0) >= threshold ? scale : 0;
  }
}

function hasKernel(name: string): boolean {
  return tf.getKernel(name, tf.getBackend()) !== undefined;
}

/**
 * The dropout mask for a tensor of `shape`: float32, each element `1/(1−rate)` (kept) or 0
 * (dropped), a pure function of `(rate, seed, index)` and the same on every backend.
 *
 * @param shape the shape of the tensor it will multiply
 * @param rate drop probability in [0, 1)
 * @param seed integer seed; equal seeds give equal masks
 * @returns the mask (a new tensor)
 */
export function dropoutMask(shape: readonly number[], rate: number, seed: number): tf.Tensor {
  const p = dropoutMaskParams(rate, seed);
  const n = shape.reduce((a, b) => a * b, 1);
  if (n >= 2 ** 32) throw new Error(`model/fused.ts dropout: ${n} elements exceed 2^32`);
  if (hasKernel(DROPOUT_MASK)) {
    return tf.engine().runKernel(DROPOUT_MASK, {}, {
      shape: [...shape],
      ...p,
    } as unknown as tf.NamedAttrMap) as tf.Tensor;
  }
  const values = new Float32Array(n);
  fillDropoutMask(values, p);
  return tf.tensor(values, [...shape], "float32");
}

/**
 * Inverted dropout: `x ⊙ mask` with {@link dropoutMask} (kept elements scaled by `1/(1−rate)`).
 * Rate 0 returns `x` itself. Where the backend has the fused kernel (wasm, webgpu) the mask is
 * recomputed from the seed in one pass, forward and backward (its gradient is dropout of `dy`
 * with the same mask), and never stored; elsewhere it is a Multiply by the mask tensor. Both give
 * the same float32 products.
 *
 * @param x input
 * @param rate drop probability in [0, 1)
 * @param seed integer seed of this mask
 */
export function dropout<T extends tf.Tensor>(x: T, rate: number, seed: number): T {
  const p = dropoutMaskParams(rate, seed);
  if (rate === 0) return x;
  if (x.dtype === "float32" && hasKernel(DROPOUT) && x.size < 2 ** 31) {
    return tf.engine().runKernel(DROPOUT, { x }, { ...p } as unknown as tf.NamedAttrMap) as T;
  }
  return tf.tidy(() => tf.mul(x, dropoutMask(x.shape, rate, seed)) as T);
}

/**
 * The residual connection with dropout, `x + dropout(h)`: one kernel where the backend has it
 * (webgpu: one dispatch instead of two, and no `[batch, length, d]` temporary), else
 * `tf.add(x, dropout(h))`; the same mask as {@link dropout} with this rate and seed.
 *
 * @param x residual stream
 * @param h sublayer output, same shape as `x`
 * @param rate drop probability in [0, 1)
 * @param seed integer seed of this mask
 */
export function dropoutAdd<T extends tf.Tensor>(x: T, h: T, rate: number, seed: number): T {
  const p = dropoutMaskParams(rate, seed);
  if (rate === 0) return tf.add(x, h);
  if (
    x.dtype === "float32" && h.dtype === "float32" && hasKernel(DROPOUT_ADD) &&
    hasKernel(DROPOUT) && tf.util.arraysEqual(x.shape, h.shape) && x.size < 2 ** 31
  ) {
    return tf.engine().runKernel(
      DROPOUT_ADD,
      { x, h },
      { ...p } as unknown as tf.NamedAttrMap,
    ) as T;
  }
  return tf.tidy(() => tf.add(x, dropout(h, rate, seed)));
}

// ---------------------------------------------------------------------------------------------
// Gated GELU

/** `gelu_new`'s tanh approximation: √(2/π), the factor inside the tanh. */
export const GELU_C: number = Math.sqrt(2 / Math.PI);
/** `gelu_new`'s tanh approximation: the cubic term's coefficient. */
export const GELU_K = 0.044715;

/**
 * The tanh approximation of GELU that HF calls `gelu_new`, as stock ops:
 * `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
 */
export function geluNew<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => {
    const cube = tf.mul(tf.mul(x, x), x); // x³ by products: Pow is slower on wasm and cpu
    const inner = tf.mul(tf.add(x, tf.mul(cube, GELU_K)), GELU_C);
    return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(inner))) as T;
  });
}

/**
 * `out[i] = gelu_new(a[i]) · b[i]` in double precision rounded once to float32, as
 * `x · sigmoid(2u)` (`1 + tanh(u) = 2·sigmoid(2u)`: no cancellation for negative x).
 *
 * @param out destination (may not alias the inputs)
 * @param a gate pre-activations
 * @param b linear branch
 */
export function gatedGeluRows(out: Float32Array, a: Float32Array, b: Float32Array): void {
  for (let i = 0; i < out.length; i++) {
    const x = a[i]!;
    out[i] = (x / (1 + Math.exp(-2 * GELU_C * (x + GELU_K * x * x * x)))) * b[i]!;
  }
}

/**
 * Gradient of {@link gatedGeluRows}: `da = dy·b·gelu_new′(a)`, `db = dy·gelu_new(a)`, with
 * `gelu_new′(x) = s + x·s(1−s)·2u′`, `s = sigmoid(2u)`, `u = √(2/π)(x + 0.044715x³)`.
 *
 * @param da destination for the gradient of `a`
 * @param db destination for the gradient of `b`
 * @param a gate pre-activations
 * @param b linear branch
 * @param dy upstream gradient
 */
export function gatedGeluGradRows(
  da: Float32Array,
  db: Float32Array,
  a: Float32Array,
  b: Float32Array,
  dy: Float32Array,
): void {
  for (let i = 0; i < da.length; i++) {
    const x = a[i]!;
    const x2 = x * x;
    const e = Math.exp(-2 * GELU_C * (x + GELU_K * x2 * x));
    const s = 1 / (1 + e);
    const oneMinusS = e === Infinity ? 1 : e * s;
    const dg = s + x * s * oneMinusS * 2 * GELU_C * (1 + 3 * GELU_K * x2);
    const d = dy[i]!;
    da[i] = d * b[i]! * dg;
    db[i] = d * x * s;
  }
}

/**
 * The gated GELU of T5 1.1's feed-forward, `gelu_new(a) ⊙ b`, as one kernel where the backend has
 * it (wasm, webgpu) and as stock ops elsewhere.
 *
 * @param a `wi_0 · x`
 * @param b `wi_1 · x`, same shape as `a`
 * @returns `gelu_new(a) ⊙ b`
 */
export function gatedGelu(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  if (!tf.util.arraysEqual(a.shape, b.shape)) {
    throw new Error(
      `model/fused.ts gatedGelu: a ${JSON.stringify(a.shape)} and b ${
        JSON.stringify(b.shape)
      } must have one shape`,
    );
  }
  if (
    a.dtype === "float32" && b.dtype === "float32" && hasKernel(GATED_GELU) &&
    hasKernel(GATED_GELU_GRAD)
  ) {
    return tf.engine().runKernel(GATED_GELU, { a, b }) as tf.Tensor;
  }
  return tf.tidy(() => tf.mul(geluNew(a), b));
}

/**
 * `dropout(gelu_new(a) ⊙ b)` with {@link dropout}'s mask for this rate and seed: one kernel where
 * the backend has it (webgpu: one dispatch forward and two backward instead of two and three),
 * else {@link gatedGelu} then {@link dropout}. Both give the same float32 products.
 *
 * @param a `wi_0 · x`
 * @param b `wi_1 · x`, same shape as `a`
 * @param rate drop probability in [0, 1)
 * @param seed integer seed of this mask
 */
export function gatedGeluDropout(
  a: tf.Tensor,
  b: tf.Tensor,
  rate: number,
  seed: number,
): tf.Tensor {
  const p = dropoutMaskParams(rate, seed);
  if (rate === 0) return gatedGelu(a, b);
  if (
    a.dtype === "float32" && b.dtype === "float32" && tf.util.arraysEqual(a.shape, b.shape) &&
    hasKernel(GATED_GELU_DROPOUT) && hasKernel(GATED_GELU_DROPOUT_GRAD) && a.size < 2 ** 31
  ) {
    return tf.engine().runKernel(GATED_GELU_DROPOUT, { a, b }, {
      ...p,
    } as unknown as tf.NamedAttrMap) as tf.Tensor;
  }
  return tf.tidy(() => dropout(gatedGelu(a, b), rate, seed));
}

// ---------------------------------------------------------------------------------------------
// RMS norm

/**
 * `out = x·r·w` per row of `d`, `r = 1/√(mean(x²) + eps)`, in double rounded once.
 *
 * @param out destination `[rows·d]`
 * @param x input `[rows·d]`
 * @param w scale `[d]`
 * @param eps added to the mean square
 */
export function rmsNormRows(out: Float32Array, x: Float32Array, w: Float32Array, eps: number) {
  const d = w.length;
  for (let o = 0; o < x.length; o += d) {
    let sq = 0;
    for (let j = 0; j < d; j++) sq += x[o + j]! * x[o + j]!;
    const r = 1 / Math.sqrt(sq / d + eps);
    for (let j = 0; j < d; j++) out[o + j] = x[o + j]! * r * w[j]!;
  }
}

/**
 * Gradient of {@link rmsNormRows}: `dx = r·w·dy − x·r³·Σ(dy·w·x)/d` per row and
 * `dw = Σ_rows dy·x·r` (overwritten).
 *
 * @param dx destination `[rows·d]`
 * @param dw destination `[d]`
 * @param x input
 * @param w scale
 * @param dy upstream gradient
 * @param eps added to the mean square
 */
export function rmsNormGradRows(
  dx: Float32Array,
  dw: Float32Array,
  x: Float32Array,
  w: Float32Array,
  dy: Float32Array,
  eps: number,
): void {
  const d = w.length;
  const acc = new Float64Array(d);
  for (let o = 0; o < x.length; o += d) {
    let sq = 0;
    let dot = 0;
    for (let j = 0; j < d; j++) {
      sq += x[o + j]! * x[o + j]!;
      dot += dy[o + j]! * w[j]! * x[o + j]!;
    }
    const r = 1 / Math.sqrt(sq / d + eps);
    const c = (r * r * r * dot) / d;
    for (let j = 0; j < d; j++) {
      dx[o + j] = r * w[j]! * dy[o + j]! - x[o + j]! * c;
      acc[j]! += dy[o + j]! * x[o + j]! * r;
    }
  }
  dw.set(acc);
}

/** Throws unless `weight` is `[d]` for `x`'s last axis d, naming `fn`. */
function checkNormWeight(fn: string, x: tf.Tensor, weight: tf.Tensor): void {
  const d = x.shape[x.shape.length - 1];
  if (weight.rank !== 1 || weight.shape[0] !== d) {
    throw new Error(`model/fused.ts ${fn}: weight ${JSON.stringify(weight.shape)} must be [${d}]`);
  }
}

/**
 * T5 layer norm (RMS norm): `weight · x / √(mean(x²) + eps)` over the last axis, as one kernel
 * (forward and backward) where the backend has it, else as stock ops.
 *
 * @param x `[..., d]`
 * @param weight `[d]`
 * @param eps epsilon added to the mean square
 */
export function rmsNorm(x: tf.Tensor, weight: tf.Tensor1D, eps: number): tf.Tensor {
  checkNormWeight("rmsNorm", x, weight);
  if (
    x.dtype === "float32" && weight.dtype === "float32" && hasKernel(RMS_NORM) &&
    hasKernel(RMS_NORM_GRAD)
  ) {
    return tf.engine().runKernel(RMS_NORM, { x, w: weight }, { eps }) as tf.Tensor;
  }
  return tf.tidy(() => {
    const variance = tf.mean(tf.square(x), -1, true);
    return tf.mul(tf.mul(x, tf.rsqrt(tf.add(variance, eps))), weight);
  });
}

/**
 * {@link rmsNorm} of `x` and `x` itself, for a pre-norm residual block `x + f(norm(x))` that adds
 * the second: where the backend has the kernels, one {@link RMS_NORM_KEEP} (its second output
 * shares x's data) whose gradient is one {@link RMS_NORM_GRAD} with the residual's gradient added
 * in (one dispatch fewer per block on webgpu, one pass fewer on wasm); elsewhere `[rmsNorm(x), x]`.
 * The numbers are the same either way.
 *
 * @param x `[..., d]`
 * @param weight `[d]`
 * @param eps epsilon added to the mean square
 * @returns `[normed, residual]`
 */
export function rmsNormKeep(
  x: tf.Tensor,
  weight: tf.Tensor1D,
  eps: number,
): [tf.Tensor, tf.Tensor] {
  if (
    x.dtype === "float32" && weight.dtype === "float32" && hasKernel(RMS_NORM_KEEP) &&
    hasKernel(RMS_NORM_GRAD)
  ) {
    checkNormWeight("rmsNormKeep", x, weight);
    const [y, r] = tf.engine().runKernel(RMS_NORM_KEEP, { x, w: weight }, { eps }) as tf.Tensor[];
    return [y!, r!];
  }
  return [rmsNorm(x, weight, eps), x];
}

// ---------------------------------------------------------------------------------------------
// Attention softmax

/** Sums `g` over the axes where `shape` is 1 and `g` is not, giving a tensor of `shape`. */
function reduceTo(g: tf.Tensor, shape: readonly number[]): tf.Tensor {
  const axes = shape.flatMap((d, i) => (d === 1 && g.shape[i] !== 1 ? [i] : []));
  if (axes.length === 0) return g;
  // Only the leading axis (a bias shared over the batch): one pass where the backend has the
  // kernel (webgpu's Sum over axis 0 is a Transpose and a Reduce).
  if (axes.length === 1 && axes[0] === 0 && g.dtype === "float32" && hasKernel(SUM_LEADING)) {
    return tf.engine().runKernel(SUM_LEADING, { x: g }) as tf.Tensor;
  }
  return tf.sum(g, axes, true);
}

/**
 * Attention probabilities `softmax(scores + bias + mask)` over the key axis, as one kernel where
 * the backend has it (webgpu: one dispatch forward, one for the gradient, instead of two Adds, a
 * Softmax and ≈ 5 kernels backward) and as those stock ops elsewhere (cpu and wasm keep their
 * exact numbers).
 *
 * @param scores `[B, H, Q, K]`
 * @param bias position bias, rank 4, each of its first three dims 1 or equal to scores'
 * @param mask additive mask, rank 4, likewise
 * @returns `[B, H, Q, K]`
 */
export function attentionSoftmax(
  scores: tf.Tensor4D,
  bias?: tf.Tensor,
  mask?: tf.Tensor,
): tf.Tensor4D {
  const k = scores.shape[3];
  for (const [name, t] of [["bias", bias], ["mask", mask]] as const) {
    if (
      t !== undefined &&
      (t.rank !== 4 || t.shape[3] !== k ||
        t.shape.slice(0, 3).some((d, i) => d !== 1 && d !== scores.shape[i]))
    ) {
      throw new Error(
        `model/fused.ts attentionSoftmax: ${name} ${JSON.stringify(t.shape)} does not broadcast ` +
          `to scores ${JSON.stringify(scores.shape)}`,
      );
    }
  }
  if (
    scores.dtype === "float32" && hasKernel(ATTENTION_SOFTMAX) && hasKernel(SOFTMAX_GRAD) &&
    [bias, mask].every((t) => t === undefined || t.dtype === "float32")
  ) {
    return tf.tidy(() => {
      const zero = () => tf.zeros([1, 1, 1, k]);
      return tf.engine().runKernel(ATTENTION_SOFTMAX, {
        x: scores,
        bias: bias ?? zero(),
        mask: mask ?? zero(),
      }) as tf.Tensor4D;
    });
  }
  return tf.tidy(() => {
    let x: tf.Tensor = scores;
    if (bias) x = tf.add(x, bias);
    if (mask) x = tf.add(x, mask);
    return tf.softmax(x, -1) as tf.Tensor4D;
  });
}

// ---------------------------------------------------------------------------------------------
// Softmax cross-entropy

/**
 * Per-token softmax cross-entropy with label smoothing, `(1−ε)(lse − x[label]) + ε(lse − mean x)`
 * per row, as one kernel forward and one backward where the backend has them (wasm: two SIMD
 * passes per row instead of Max, Sub, Exp, Sum, Log, a gather and ≈ 8 kernels backward; webgpu:
 * one row program and one elementwise dispatch, where a label out of range makes its row's loss
 * and gradient NaN, as a GPU kernel cannot throw; wasm throws).
 *
 * @param logits `[n, V]` float32
 * @param labels `[n]` int32 in [0, V) (map ignored positions to any valid label and weight them
 *   out afterwards, as `crossEntropyLoss` does)
 * @param eps label smoothing in [0, 1)
 * @returns the `[n]` losses, or undefined where no kernel is registered (the caller then runs
 *   its composite)
 */
export function softmaxCrossEntropy(
  logits: tf.Tensor2D,
  labels: tf.Tensor1D,
  eps: number,
): tf.Tensor1D | undefined {
  if (
    !hasKernel(SOFTMAX_XENT) || !hasKernel(SOFTMAX_XENT_GRAD) || logits.dtype !== "float32" ||
    labels.dtype !== "int32" || labels.size !== logits.shape[0]
  ) {
    return undefined;
  }
  return tf.tidy(() => {
    const out = tf.engine().runKernel(SOFTMAX_XENT, { logits, labels }, { eps }) as tf.Tensor2D;
    return tf.reshape(tf.slice(out, [0, 0], [-1, 1]), [-1]) as tf.Tensor1D;
  });
}

/**
 * {@link softmaxCrossEntropy} that also gives each row's log-sum-exp `log_z` (the kernel's second
 * output column) as a differentiable result, for T5X's z-loss `z·log_z²`: the gradient with
 * respect to the logits then has the extra term `dlog_z · softmax(x)`, added to the kernel's
 * (the attribute `lseGrad` asks for it; {@link softmaxCrossEntropy} does not set it, so its
 * gradient is unchanged). On wasm and webgpu ({@link LSE_GRAD_IN_KERNEL}) the gradient kernel
 * folds it into its one pass over the logits (row scale `dloss + dlog_z`); on a backend whose
 * kernel does not, it is added with stock ops (four more passes over `[n, V]`).
 *
 * @param logits `[n, V]` float32
 * @param labels `[n]` int32 in [0, V)
 * @param eps label smoothing in [0, 1)
 * @returns the `[n]` losses and `[n]` log-sum-exps, or undefined where no kernel is registered
 */
export function softmaxCrossEntropyWithLse(
  logits: tf.Tensor2D,
  labels: tf.Tensor1D,
  eps: number,
): { loss: tf.Tensor1D; lse: tf.Tensor1D } | undefined {
  if (
    !hasKernel(SOFTMAX_XENT) || !hasKernel(SOFTMAX_XENT_GRAD) || logits.dtype !== "float32" ||
    labels.dtype !== "int32" || labels.size !== logits.shape[0]
  ) {
    return undefined;
  }
  return tf.tidy(() => {
    const out = tf.engine().runKernel(
      SOFTMAX_XENT,
      { logits, labels },
      { eps, lseGrad: true },
    ) as tf.Tensor2D;
    return {
      loss: tf.reshape(tf.slice(out, [0, 0], [-1, 1]), [-1]) as tf.Tensor1D,
      lse: tf.reshape(tf.slice(out, [0, 1], [-1, 1]), [-1]) as tf.Tensor1D,
    };
  });
}

/**
 * Log-sum-exp and Σx of row `r` of the `[n, v]` logits `xv` for the wasm cross-entropy kernels:
 * the SIMD `row_stats` pass when available (its three results land in `stats`), else a
 * JavaScript loop in double precision.
 */
function xentRow(
  simd: ReturnType<typeof activeSimdKernels>,
  xv: Float32Array,
  stats: Float32Array,
  r: number,
  v: number,
): { lse: number; sum: number } {
  if (simd !== undefined) {
    simd.row_stats(xv.byteOffset + 4 * r * v, v, stats.byteOffset);
    const sum = stats[2]!;
    // A NaN logit makes Σx NaN (the SIMD max skips NaNs): the loss is NaN, as the composite's.
    return { lse: Number.isNaN(sum) ? NaN : stats[0]! + Math.log(stats[1]!), sum };
  }
  let max = -Infinity;
  let sum = 0;
  for (let j = r * v; j < (r + 1) * v; j++) {
    max = Math.max(max, xv[j]!);
    sum += xv[j]!;
  }
  let se = 0;
  for (let j = r * v; j < (r + 1) * v; j++) se += Math.exp(xv[j]! - max);
  return { lse: max + Math.log(se), sum };
}

/** Checks every label before a kernel allocates anything, so that a throw leaves nothing behind. */
function checkLabels(labels: Int32Array, v: number): void {
  for (let r = 0; r < labels.length; r++) {
    const label = labels[r]!;
    if (!(label >= 0 && label < v)) {
      throw new Error(
        `model/fused.ts softmaxCrossEntropy: label ${label} of row ${r} is not in [0, ${v})`,
      );
    }
  }
}

// ---------------------------------------------------------------------------------------------
// AdamW

/** Constants of one AdamW update, as the kernels take them ({@link adamwAttrs} derives them). */
export interface AdamWAttrs {
  /** β1 and 1 − β1. */
  readonly b1: number;
  readonly c1: number;
  /** β2 and 1 − β2. */
  readonly b2: number;
  readonly c2: number;
  /** 1 − lr·weightDecay. */
  readonly decay: number;
  /** lr / (1 − β1^t). */
  readonly step: number;
  /** 1 / √(1 − β2^t). */
  readonly invSqrtBc2: number;
  readonly eps: number;
}

/**
 * The kernel constants of AdamW (PyTorch form) at step `t` (1-based).
 *
 * @param h learning rate, moment decays, epsilon and decoupled weight decay
 * @param t the step
 */
export function adamwAttrs(
  h: {
    readonly lr: number;
    readonly beta1: number;
    readonly beta2: number;
    readonly eps: number;
    readonly weightDecay: number;
  },
  t: number,
): AdamWAttrs {
  return {
    b1: h.beta1,
    c1: 1 - h.beta1,
    b2: h.beta2,
    c2: 1 - h.beta2,
    decay: 1 - h.lr * h.weightDecay,
    step: h.lr / (1 - Math.pow(h.beta1, t)),
    invSqrtBc2: 1 / Math.sqrt(1 - Math.pow(h.beta2, t)),
    eps: h.eps,
  };
}

/** Replaces three variables' values with kernel outputs (and releases those). */
function assignAll(vars: readonly tf.Variable[], next: readonly tf.Tensor[]): void {
  vars.forEach((v, i) => v.assign(next[i]!));
  tf.dispose([...next]);
}

/**
 * Makes a variable the only owner of its buffer (an exact copy when the buffer is shared, e.g.
 * after `assign` of a tensor that is still alive), so that an in-place update may write it.
 *
 * @param v the variable
 */
function ownBuffer(v: tf.Variable): void {
  if (v.isDisposed) return;
  const backend = tf.backend() as unknown as { refCount(dataId: tf.DataId): number };
  if (backend.refCount(v.dataId) === 1) return;
  const copy = tf.tidy(() => tf.mul(v, tf.scalar(1, v.dtype))); // x·1 = x exactly, −0 and NaN too
  v.assign(copy);
  copy.dispose(); // the variable keeps the data
}

/** One variable of {@link updateAdamWMany}: the parameter, its moments and its gradient. */
export interface AdamWUpdateItem {
  readonly p: tf.Variable;
  readonly m: tf.Variable;
  readonly v: tf.Variable;
  readonly g: tf.Tensor;
}

/**
 * An in-place AdamW of many variables at once (webgpu: several per dispatch): per item, false
 * when it cannot take that item (nothing changed for it).
 */
export type AdamWManyInPlace = (
  items: readonly { p: tf.Tensor; m: tf.Tensor; v: tf.Tensor; g: tf.Tensor }[],
  attrs: AdamWAttrs,
) => boolean[];

/** An in-place AdamW of one backend: false when it cannot take this call (nothing changed). */
export type AdamWInPlace = (
  p: tf.Tensor,
  m: tf.Tensor,
  v: tf.Tensor,
  g: tf.Tensor,
  attrs: AdamWAttrs,
) => boolean;

/**
 * An in-place unfactored Adafactor update (no first moment) of one backend: false when it cannot
 * take this call (nothing changed).
 */
export type AdafactorUnfactoredInPlace = (
  p: tf.Tensor,
  v: tf.Tensor,
  g: tf.Tensor,
  attrs: AdafactorAttrs,
) => boolean;

/**
 * An in-place factored Adafactor update (no first moment) of one backend: false when it cannot
 * take this call (nothing changed).
 */
export type AdafactorFactoredInPlace = (
  p: tf.Tensor,
  vr: tf.Tensor,
  vc: tf.Tensor,
  g: tf.Tensor,
  attrs: AdafactorAttrs,
) => boolean;

/** The in-place optimizer updates a backend's kernel module provides. */
export interface InPlaceUpdates {
  /** Factored Adafactor ({@link updateAdafactor}). */
  readonly adafactorFactored?: AdafactorFactoredInPlace;
  /** AdamW ({@link updateAdamW}). */
  readonly adamw?: AdamWInPlace;
  /** AdamW of many variables at once ({@link updateAdamWMany}; without it, one by one). */
  readonly adamwMany?: AdamWManyInPlace;
  /** Factored Adafactor of many matrices at once ({@link updateAdafactorMany}). */
  readonly adafactorFactoredMany?: (
    items: readonly { p: tf.Tensor; vr: tf.Tensor; vc: tf.Tensor; g: tf.Tensor }[],
    attrs: AdafactorAttrs,
  ) => boolean[];
  /** Unfactored Adafactor of many parameters at once ({@link updateAdafactorUnfactoredMany}). */
  readonly adafactorUnfactoredMany?: (
    items: readonly { p: tf.Tensor; v: tf.Tensor; g: tf.Tensor }[],
    attrs: AdafactorAttrs,
  ) => boolean[];
  /** Unfactored Adafactor ({@link updateAdafactorUnfactored}). */
  readonly adafactorUnfactored?: AdafactorUnfactoredInPlace;
}

/**
 * In-place updates by backend name, registered by the backends' kernel modules (wasm's, which
 * need no registration step of their own, here).
 */
const inPlaceBy = new Map<string, InPlaceUpdates>([["wasm", {
  adamw: adamwInPlace,
  adafactorFactored: adafactorInPlace,
  adafactorUnfactored: adafactorUnfactoredInPlace,
}]]);

/**
 * Registers (or, with `undefined`, removes) the in-place optimizer updates that
 * {@link updateAdamW}, {@link updateAdafactor} and {@link updateAdafactorUnfactored} use on a
 * backend (`model/webgpu/fused_kernels.ts` registers webgpu's with its fused kernels).
 *
 * @param backendName tfjs backend name
 * @param fns the updates
 */
export function registerInPlaceUpdates(backendName: string, fns: InPlaceUpdates | undefined): void {
  if (fns === undefined) inPlaceBy.delete(backendName);
  else inPlaceBy.set(backendName, fns);
}

/**
 * The active backend's in-place update of `kind`, after making each variable it writes the sole
 * owner of its buffer; undefined when the backend has none.
 */
function inPlaceFor<K extends keyof InPlaceUpdates>(
  kind: K,
  written: readonly tf.Variable[],
): InPlaceUpdates[K] | undefined {
  const fn = inPlaceBy.get(tf.getBackend())?.[kind];
  if (fn !== undefined) { for (const x of written) ownBuffer(x); }
  return fn;
}

/**
 * The fallback where no in-place update took the call: the backend's fused kernel `name`, whose
 * outputs replace `vars`; false when the backend has no such kernel.
 */
function kernelUpdate(
  name: string,
  vars: readonly tf.Variable[],
  inputs: tf.NamedTensorMap,
  attrs: object,
): boolean {
  if (!hasKernel(name)) return false;
  assignAll(
    vars,
    tf.engine().runKernel(name, inputs, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[],
  );
  return true;
}

/** How an optimizer update ran: in place, as a fused kernel, or not at all (op by op). */
export type UpdatePath = "in place" | "kernel" | "op by op";

const pathsTaken = new Map<keyof InPlaceUpdates, Set<UpdatePath>>();

function taken(kind: keyof InPlaceUpdates, path: "in place" | "kernel" | false): boolean {
  const set = pathsTaken.get(kind) ?? new Set();
  set.add(path === false ? "op by op" : path);
  pathsTaken.set(kind, set);
  return path !== false;
}

/**
 * The paths the fused optimizer updates ({@link updateAdamW}, {@link updateAdafactor},
 * {@link updateAdafactorUnfactored}) took since the last reset, by update kind ("op by op": the
 * update returned false and the caller ran the composite): what a benchmark reports as the
 * optimizer's path, measured rather than assumed from the backend's name.
 *
 * @param reset clear the record after reading it
 * @returns kind → the paths taken (sorted)
 */
export function updatePathsTaken(
  reset = false,
): Partial<Record<keyof InPlaceUpdates, UpdatePath[]>> {
  const out: Partial<Record<keyof InPlaceUpdates, UpdatePath[]>> = {};
  for (const [k, set] of pathsTaken) out[k] = [...set].sort();
  if (reset) pathsTaken.clear();
  return out;
}

/**
 * One AdamW update of `p` and its moments `m`, `v` as one fused step where the backend has one:
 * `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`, `p ← p·decay − step·m / (√v·invSqrtBc2 + eps)`,
 * on wasm in place in one pass (`wasm_kernels.ts` adamwInPlace), on webgpu in place as one
 * dispatch (`webgpu/in_place.ts`), each after making p, m and v the sole owners of their buffers;
 * otherwise as the registered `HpAdamW` kernel (three outputs, assigned). Each backend always
 * takes the same path, so resumed runs stay bit-identical.
 *
 * @returns whether the update was done; false leaves everything unchanged (the caller then runs
 *   the op-by-op update)
 */
export function updateAdamW(
  p: tf.Variable,
  m: tf.Variable,
  v: tf.Variable,
  g: tf.Tensor,
  attrs: AdamWAttrs,
): boolean {
  if ([p, m, v, g].some((t) => t.dtype !== "float32")) return taken("adamw", false);
  if (inPlaceFor("adamw", [p, m, v])?.(p, m, v, g, attrs)) return taken("adamw", "in place");
  return taken("adamw", kernelUpdate(ADAMW, [p, m, v], { p, m, v, g }, attrs) && "kernel");
}

/**
 * {@link updateAdamW} of many variables with the same constants: where the backend updates
 * several variables in one step (webgpu: one dispatch per group of variables,
 * `webgpu/in_place.ts` adamwManyInPlaceWebgpu), fewer dispatches for the same numbers; the
 * variables it does not take go through {@link updateAdamW} one by one.
 *
 * @param items the variables, their moments and gradients
 * @param attrs the step's constants
 * @returns per item, whether it was updated (false: unchanged, the caller runs the op-by-op update)
 */
export function updateAdamWMany(
  items: readonly AdamWUpdateItem[],
  attrs: AdamWAttrs,
): boolean[] {
  const many = inPlaceBy.get(tf.getBackend())?.adamwMany;
  return updateGrouped(
    "adamw",
    many && ((its) => many(its, attrs)),
    items,
    (it) => [it.p, it.m, it.v, it.g],
    (it) => [it.p, it.m, it.v],
    (it) => updateAdamW(it.p, it.m, it.v, it.g, attrs),
  );
}

/**
 * The grouped form of an update of `kind`: the float32 items go to the backend's grouped in-place
 * update `many` (after each variable they write is made the sole owner of its buffer), and the
 * items it does not take, or all where there is none, to the one-variable update `one`.
 */
function updateGrouped<I>(
  kind: keyof InPlaceUpdates,
  many: ((items: readonly I[]) => boolean[]) | undefined,
  items: readonly I[],
  tensorsOf: (it: I) => tf.Tensor[],
  writtenOf: (it: I) => tf.Variable[],
  one: (it: I) => boolean,
): boolean[] {
  const done = items.map(() => false);
  if (many !== undefined) {
    const at: number[] = [];
    items.forEach((it, i) => {
      if (tensorsOf(it).every((t) => t.dtype === "float32")) at.push(i);
    });
    for (const i of at) for (const x of writtenOf(items[i]!)) ownBuffer(x);
    const r = many(at.map((i) => items[i]!));
    at.forEach((i, j) => {
      if (r[j] === true) done[i] = taken(kind, "in place");
    });
  }
  return items.map((it, i) => done[i] || one(it));
}

/** Constants of one factored Adafactor update (no first moment), as the kernels take them. */
export interface AdafactorAttrs {
  /** Second-moment decay of this step, 1 − t^(−decayRate). */
  readonly beta2t: number;
  /** Added to squared gradients. */
  readonly eps1: number;
  /** Update clipping threshold (≤ 0: none). */
  readonly clippingThreshold: number;
  /** Learning rate of this step. */
  readonly lr: number;
  /** Decoupled weight decay: p ← p·(1 − lr·weightDecay) before the update. */
  readonly weightDecay: number;
  /**
   * Set to scale the step by max(this, RMS(p)) (Mesh TF's `multiply_by_parameter_scale`, eps2).
   * The factored update supports it in place (wasm, webgpu) but not as the `HpAdafactor`
   * kernel; the unfactored one everywhere it is fused.
   */
  readonly parameterScaleEps2?: number;
}

/**
 * Float64 reference of one factored Adafactor update ({@link updateAdafactor}'s formulas; with
 * `parameterScaleEps2` the step is `lr · max(eps2, RMS(p))`, as the op-by-op update does), for
 * device self-checks and tests.
 *
 * @param p `[rows·cols]` parameter (row-major)
 * @param g its gradient
 * @param vr `[rows]` row moment
 * @param vc `[cols]` column moment
 * @returns the new p, vr and vc
 */
export function adafactorFactoredReference(
  p: ArrayLike<number>,
  g: ArrayLike<number>,
  vr: ArrayLike<number>,
  vc: ArrayLike<number>,
  a: AdafactorAttrs,
): { p: Float64Array; vr: Float64Array; vc: Float64Array } {
  const rows = vr.length, cols = vc.length;
  const b = a.beta2t;
  const nvr = new Float64Array(rows);
  const nvc = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const q = g[r * cols + c]! ** 2 + a.eps1;
      nvr[r]! += q / cols;
      nvc[c]! += q / rows;
    }
  }
  for (let r = 0; r < rows; r++) nvr[r] = b * vr[r]! + (1 - b) * nvr[r]!;
  for (let c = 0; c < cols; c++) nvc[c] = b * vc[c]! + (1 - b) * nvc[c]!;
  const meanR = nvr.reduce((x, y) => x + y, 0) / rows;
  const u = new Float64Array(rows * cols);
  let sq = 0;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const x = g[r * cols + c]! / Math.sqrt(nvr[r]! / meanR) / Math.sqrt(nvc[c]!);
      u[r * cols + c] = x;
      sq += x * x;
    }
  }
  const rms = Math.sqrt(sq / (rows * cols));
  const clip = a.clippingThreshold > 0 ? Math.max(1, rms / a.clippingThreshold) : 1;
  let step = a.lr;
  if (a.parameterScaleEps2 !== undefined) {
    let pp = 0;
    for (let i = 0; i < u.length; i++) pp += p[i]! ** 2;
    step *= Math.max(a.parameterScaleEps2, Math.sqrt(pp / u.length));
  }
  const np = Float64Array.from(u, (x, i) => p[i]! * (1 - step * a.weightDecay) - step * x / clip);
  return { p: np, vr: nvr, vc: nvc };
}

/**
 * One factored Adafactor update (Mesh TF / T5 form, no first moment) of a matrix `p` and its
 * moments `vr` `[rows]`, `vc` `[cols]` as one fused step where the backend has one: on wasm in
 * place in three SIMD passes (`wasm_kernels.ts` adafactorInPlace), on webgpu as four dispatches
 * instead of ≈ 25, in place where registered (`webgpu/in_place.ts`; else the `HpAdafactor`
 * kernel, five dispatches, whose outputs are assigned): `vr ← b·vr + (1−b)·mean_c(g² + ε1)`,
 * `vc` likewise over rows, `u = g·rsqrt(vr/mean(vr))·rsqrt(vc)`,
 * `p ← p·(1 − lr·wd) − lr·u / max(1, RMS(u)/threshold)`.
 *
 * @returns whether the update was done; false leaves everything unchanged (the caller then runs
 *   the op-by-op update)
 */
export function updateAdafactor(
  p: tf.Variable,
  vr: tf.Variable,
  vc: tf.Variable,
  g: tf.Tensor,
  attrs: AdafactorAttrs,
): boolean {
  if (
    p.rank !== 2 || [p, g, vr, vc].some((t) => t.dtype !== "float32") || g.size !== p.size ||
    vr.size !== p.shape[0] || vc.size !== p.shape[1]
  ) {
    return taken("adafactorFactored", false);
  }
  if (inPlaceFor("adafactorFactored", [p, vr, vc])?.(p, vr, vc, g, attrs)) {
    return taken("adafactorFactored", "in place");
  }
  // The kernel does not scale by the parameter's RMS: such a step runs op by op.
  return taken(
    "adafactorFactored",
    attrs.parameterScaleEps2 === undefined &&
      kernelUpdate(ADAFACTOR, [p, vr, vc], { p, g, vr, vc }, attrs) && "kernel",
  );
}

/**
 * One unfactored Adafactor update (a vector, or any parameter when factoring is off; no first
 * moment) of `p` and its second moment `v` as one fused step where the backend has one:
 * `v ← b·v + (1−b)·(g² + ε1)`, `u = g·rsqrt(v)`, `s = lr` (× max(eps2, RMS(p)) when
 * `parameterScaleEps2` is set), `p ← p·(1 − s·wd) − s·u / max(1, RMS(u)/threshold)`. On wasm in
 * place in one pass over the heap (`wasm_kernels.ts` adafactorUnfactoredInPlace), on webgpu in
 * place as one single-workgroup dispatch (`webgpu/in_place.ts`). Op by op that is ≈ 15 kernels
 * per parameter, and T5 has one such vector per layer norm.
 *
 * @returns whether the update was done; false leaves everything unchanged (the caller then runs
 *   the op-by-op update)
 */
export function updateAdafactorUnfactored(
  p: tf.Variable,
  v: tf.Variable,
  g: tf.Tensor,
  attrs: AdafactorAttrs,
): boolean {
  if ([p, v, g].some((t) => t.dtype !== "float32") || g.size !== p.size || v.size !== p.size) {
    return taken("adafactorUnfactored", false);
  }
  return taken(
    "adafactorUnfactored",
    (inPlaceFor("adafactorUnfactored", [p, v])?.(p, v, g, attrs) ?? false) && "in place",
  );
}

/** One matrix of {@link updateAdafactorMany}: the parameter, its moments and its gradient. */
export interface AdafactorUpdateItem {
  readonly p: tf.Variable;
  readonly vr: tf.Variable;
  readonly vc: tf.Variable;
  readonly g: tf.Tensor;
}

/**
 * {@link updateAdafactor} of many matrices with the same constants: where the backend updates
 * several in one step (webgpu: four dispatches per group of matrices instead of four per
 * matrix, `webgpu/in_place.ts` adafactorFactoredManyInPlaceWebgpu), the same numbers in fewer
 * dispatches; the rest go through {@link updateAdafactor} one by one.
 *
 * @param items the parameters, their moments and gradients
 * @param attrs the step's constants
 * @returns per item, whether it was updated (false: unchanged, the caller runs the op-by-op update)
 */
export function updateAdafactorMany(
  items: readonly AdafactorUpdateItem[],
  attrs: AdafactorAttrs,
): boolean[] {
  const many = inPlaceBy.get(tf.getBackend())?.adafactorFactoredMany;
  return updateGrouped(
    "adafactorFactored",
    many && ((its) => many(its, attrs)),
    items,
    (it) => [it.p, it.vr, it.vc, it.g],
    (it) => [it.p, it.vr, it.vc],
    (it) => updateAdafactor(it.p, it.vr, it.vc, it.g, attrs),
  );
}

/** One parameter of {@link updateAdafactorUnfactoredMany}: it, its second moment, its gradient. */
export interface AdafactorUnfactoredUpdateItem {
  readonly p: tf.Variable;
  readonly v: tf.Variable;
  readonly g: tf.Tensor;
}

/**
 * {@link updateAdafactorUnfactored} of many parameters with the same constants: where the
 * backend updates several in one step (webgpu: one dispatch per group of vectors,
 * `webgpu/in_place.ts` adafactorUnfactoredManyInPlaceWebgpu), the same numbers in fewer
 * dispatches; the rest go through {@link updateAdafactorUnfactored} one by one.
 *
 * @param items the parameters, their second moments and gradients
 * @param attrs the step's constants
 * @returns per item, whether it was updated (false: unchanged, the caller runs the op-by-op update)
 */
export function updateAdafactorUnfactoredMany(
  items: readonly AdafactorUnfactoredUpdateItem[],
  attrs: AdafactorAttrs,
): boolean[] {
  const many = inPlaceBy.get(tf.getBackend())?.adafactorUnfactoredMany;
  return updateGrouped(
    "adafactorUnfactored",
    many && ((its) => many(its, attrs)),
    items,
    (it) => [it.p, it.v, it.g],
    (it) => [it.p, it.v],
    (it) => updateAdafactorUnfactored(it.p, it.v, it.g, attrs),
  );
}

/**
 * Backends whose {@link SOFTMAX_XENT_GRAD} kernel adds the lse column's gradient itself when the
 * attribute `lseGrad` is set (wasm: model/fused.ts `WASM_KERNELS`; webgpu:
 * model/webgpu/fused_kernels.ts `xentGrad`), so that z-loss's backward is the kernel's one pass
 * over the `[n, V]` logits; on another backend with the kernel the registered gradient adds
 * `dlse · exp(x − lse)` with stock ops (Sub, Exp, Mul, Add: four temporaries of the logits' size,
 * which benchmarks/memory.ts counts for such a backend).
 */
export const LSE_GRAD_IN_KERNEL: ReadonlySet<string> = new Set(["wasm", "webgpu"]);

let gradientRegistered = false;

/** Registers the gradient of {@link GATED_GELU} with tfjs (idempotent). */
export function registerFusedGradients(): void {
  if (gradientRegistered) return;
  tf.registerGradient({
    kernelName: GATED_GELU,
    inputsToSave: ["a", "b"],
    gradFunc: (dy, saved) => {
      const [a, b] = saved as [tf.Tensor, tf.Tensor];
      const [da, db] = tf.engine().runKernel(GATED_GELU_GRAD, {
        a,
        b,
        dy: dy as tf.Tensor,
      }) as tf.Tensor[];
      return { a: () => da!, b: () => db! };
    },
  });
  tf.registerGradient({
    kernelName: GATED_GELU_DROPOUT,
    inputsToSave: ["a", "b"],
    gradFunc: (dy, saved, attrs) => {
      const [a, b] = saved as [tf.Tensor, tf.Tensor];
      const [da, db] = tf.engine().runKernel(GATED_GELU_DROPOUT_GRAD, {
        a,
        b,
        dy: dy as tf.Tensor,
      }, attrs) as tf.Tensor[];
      return { a: () => da!, b: () => db! };
    },
  });
  tf.registerGradient({
    kernelName: ATTENTION_SOFTMAX,
    inputsToSave: ["bias", "mask"],
    outputsToSave: [true],
    gradFunc: (dy, saved) => {
      const [bias, mask, p] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
      const dx = tf.engine().runKernel(SOFTMAX_GRAD, { p, dy: dy as tf.Tensor }) as tf.Tensor;
      return {
        x: () => dx,
        bias: () => reduceTo(dx, bias.shape),
        mask: () => reduceTo(dx, mask.shape),
      };
    },
  });
  tf.registerGradient({
    kernelName: SOFTMAX_XENT,
    inputsToSave: ["logits", "labels"],
    outputsToSave: [true],
    gradFunc: (dy, saved, attrs) => {
      const [logits, labels, out] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
      return {
        logits: () => {
          const dx = tf.engine().runKernel(
            SOFTMAX_XENT_GRAD,
            { logits, labels, dy: dy as tf.Tensor, out },
            attrs,
          ) as tf.Tensor;
          // softmaxCrossEntropyWithLse (z-loss) also differentiates dy's lse column:
          // d lse / dx = softmax(x) = exp(x − lse). The wasm kernel folds that term into its one
          // pass over the row (scale a + dlse instead of a), and so does webgpu's; on another
          // backend whose kernel reads only the loss column it is added here, four more [n, V]
          // passes.
          if (
            !(attrs as { lseGrad?: boolean }).lseGrad ||
            LSE_GRAD_IN_KERNEL.has(tf.getBackend())
          ) {
            return dx;
          }
          const n = logits.shape[0]!;
          const lse = tf.slice(out, [0, 1], [n, 1]);
          const dLse = tf.slice(dy as tf.Tensor, [0, 1], [n, 1]);
          return tf.add(dx, tf.mul(tf.exp(tf.sub(logits, lse)), dLse));
        },
        labels: () => tf.zerosLike(labels),
      };
    },
  });
  tf.registerGradient({
    kernelName: DROPOUT,
    gradFunc: (dy, _saved, attrs) => ({
      x: () => tf.engine().runKernel(DROPOUT, { x: dy as tf.Tensor }, attrs) as tf.Tensor,
    }),
  });
  tf.registerGradient({
    kernelName: DROPOUT_ADD,
    gradFunc: (dy, _saved, attrs) => ({
      x: () => dy as tf.Tensor,
      h: () => tf.engine().runKernel(DROPOUT, { x: dy as tf.Tensor }, attrs) as tf.Tensor,
    }),
  });
  tf.registerGradient({
    kernelName: RMS_NORM_KEEP,
    inputsToSave: ["x", "w"],
    gradFunc: (dys, saved, attrs) => {
      const [x, w] = saved as [tf.Tensor, tf.Tensor];
      // tfjs gives null for an output that does not reach the loss.
      const [dy, dr] = dys as (tf.Tensor | null)[];
      if (dy == null) return { x: () => dr ?? tf.zerosLike(x), w: () => tf.zerosLike(w) };
      const [dx, dw] = tf.engine().runKernel(
        RMS_NORM_GRAD,
        dr == null ? { x, w, dy } : { x, w, dy, dr },
        { eps: (attrs as { eps: number }).eps },
      ) as tf.Tensor[];
      return { x: () => dx!, w: () => dw! };
    },
  });
  tf.registerGradient({
    kernelName: RMS_NORM,
    inputsToSave: ["x", "w"],
    gradFunc: (dy, saved, attrs) => {
      const [x, w] = saved as [tf.Tensor, tf.Tensor];
      const [dx, dw] = tf.engine().runKernel(RMS_NORM_GRAD, { x, w, dy: dy as tf.Tensor }, {
        eps: (attrs as { eps: number }).eps,
      }) as tf.Tensor[];
      return { x: () => dx!, w: () => dw! };
    },
  });
  gradientRegistered = true;
}
registerFusedGradients();

// ---------------------------------------------------------------------------------------------
// wasm implementations (loops over the wasm heap)

type WasmKernelArgs = {
  inputs: tf.NamedTensorInfoMap;
  backend: BackendWasm;
  attrs?: tf.NamedAttrMap;
};

function input(inputs: tf.NamedTensorInfoMap, name: string): tf.TensorInfo {
  const x = inputs[name];
  if (x === undefined) throw new Error(`model/fused.ts: kernel input "${name}" is missing`);
  if (x.dtype !== "float32") {
    throw new Error(`model/fused.ts: kernel input "${name}" must be float32, got ${x.dtype}`);
  }
  return x;
}

function heap(backend: BackendWasm, t: tf.TensorInfo): Float32Array {
  return backend.typedArrayFromHeap(t) as Float32Array;
}

/** Float32 views of several tensors on the wasm heap, in order. */
function heaps<T extends tf.TensorInfo[]>(
  backend: BackendWasm,
  ...ts: T
): { [K in keyof T]: Float32Array } {
  return ts.map((t) => heap(backend, t)) as { [K in keyof T]: Float32Array };
}

function ptr(backend: BackendWasm, t: tf.TensorInfo): number {
  return heap(backend, t).byteOffset;
}

/** The wasm RMS norm (SIMD rows where the row length is a multiple of 4). */
function wasmRmsNorm({ inputs, backend, attrs }: WasmKernelArgs): tf.TensorInfo {
  const x = input(inputs, "x");
  const w = input(inputs, "w");
  const eps = (attrs as { eps: number }).eps;
  const out = backend.makeOutput(x.shape, "float32");
  const [ov, xv, wv] = heaps(backend, out, x, w);
  const simd = activeSimdKernels();
  if (simd && wv.length % 4 === 0) {
    simd.rms_norm(
      ov.byteOffset,
      xv.byteOffset,
      wv.byteOffset,
      xv.length / wv.length,
      wv.length,
      eps,
    );
  } else {
    rmsNormRows(ov, xv, wv, eps);
  }
  return out;
}

const WASM_KERNELS: ReadonlyArray<[string, (args: WasmKernelArgs) => unknown]> = [
  [DROPOUT_MASK, ({ backend, attrs }) => {
    const a = attrs as unknown as DropoutMaskParams & { shape: number[] };
    const out = backend.makeOutput(a.shape, "float32");
    const o = heap(backend, out);
    const simd = activeSimdKernels();
    if (simd) simd.dropout_mask(o.byteOffset, o.length, 0, a.key0, a.key1, a.threshold, a.scale);
    else fillDropoutMask(o, a);
    return out;
  }],
  [DROPOUT, ({ inputs, backend, attrs }) => {
    const a = attrs as unknown as DropoutMaskParams;
    const x = input(inputs, "x");
    const out = backend.makeOutput(x.shape, "float32");
    const [o, xv] = heaps(backend, out, x);
    const simd = activeSimdKernels();
    if (simd) {
      simd.dropout_apply(
        o.byteOffset,
        xv.byteOffset,
        o.length,
        0,
        a.key0,
        a.key1,
        a.threshold,
        a.scale,
      );
    } else {
      fillDropoutMask(o, a);
      for (let i = 0; i < o.length; i++) o[i] = xv[i]! * o[i]!;
    }
    return out;
  }],
  [SOFTMAX_XENT, ({ inputs, backend, attrs }) => {
    const simd = activeSimdKernels();
    const logits = input(inputs, "logits");
    const labels = inputs["labels"]!;
    const eps = (attrs as { eps: number }).eps;
    const [n, v] = logits.shape as [number, number];
    checkLabels(backend.typedArrayFromHeap(labels) as Int32Array, v);
    const out = backend.makeOutput([n, 2], "float32");
    const stats = backend.makeOutput([3], "float32");
    try {
      const [ov, xv, sv] = heaps(backend, out, logits, stats);
      const lv = backend.typedArrayFromHeap(labels) as Int32Array; // (after the allocations)
      for (let r = 0; r < n; r++) {
        const { lse, sum } = xentRow(simd, xv, sv, r, v);
        const picked = xv[r * v + lv[r]!]!;
        ov[2 * r] = eps > 0 ? (lse - picked) * (1 - eps) + (lse - sum / v) * eps : lse - picked;
        ov[2 * r + 1] = lse;
      }
    } finally {
      backend.disposeData(stats.dataId);
    }
    return out;
  }],
  [SOFTMAX_XENT_GRAD, ({ inputs, backend, attrs }) => {
    const simd = activeSimdKernels();
    const logits = input(inputs, "logits");
    const labels = inputs["labels"]!;
    const dy = input(inputs, "dy");
    const fwd = input(inputs, "out");
    const { eps, lseGrad } = attrs as { eps: number; lseGrad?: boolean };
    const [n, v] = logits.shape as [number, number];
    checkLabels(backend.typedArrayFromHeap(labels) as Int32Array, v);
    const out = backend.makeOutput([n, v], "float32");
    {
      const [ov, xv, dyv, fv] = heaps(backend, out, logits, dy, fwd);
      const lv = backend.typedArrayFromHeap(labels) as Int32Array;
      for (let r = 0; r < n; r++) {
        const lse = fv[2 * r + 1]!;
        const a = dyv[2 * r]!;
        // With lseGrad (z-loss) dy[:, 1] is the lse column's gradient, and d lse / dx is the
        // softmax the row already computes: one scale a + dlse (LSE_GRAD_IN_KERNEL). Without
        // it nothing downstream uses that column.
        const s = lseGrad ? Math.fround(a + dyv[2 * r + 1]!) : a;
        if (simd === undefined) {
          for (let j = r * v; j < (r + 1) * v; j++) {
            ov[j] = s * Math.exp(xv[j]! - lse) - (a * eps) / v;
          }
        } else {
          simd.exp_affine(
            ov.byteOffset + 4 * r * v,
            xv.byteOffset + 4 * r * v,
            v,
            lse,
            s,
            (a * eps) / v,
          );
        }
        ov[r * v + lv[r]!]! -= a * (1 - eps);
      }
    }
    return out;
  }],
  [GATED_GELU, ({ inputs, backend }) => {
    const a = input(inputs, "a");
    const b = input(inputs, "b");
    const out = backend.makeOutput(a.shape, "float32");
    const o = heap(backend, out);
    const simd = activeSimdKernels();
    if (simd) simd.gated_gelu(o.byteOffset, ptr(backend, a), ptr(backend, b), o.length);
    else gatedGeluRows(o, heap(backend, a), heap(backend, b));
    return out;
  }],
  [GATED_GELU_GRAD, ({ inputs, backend }) => {
    const a = input(inputs, "a");
    const b = input(inputs, "b");
    const dy = input(inputs, "dy");
    const da = backend.makeOutput(a.shape, "float32");
    const db = backend.makeOutput(a.shape, "float32");
    const [dav, dbv, av, bv, dyv] = heaps(backend, da, db, a, b, dy);
    const simd = activeSimdKernels();
    if (simd) {
      simd.gated_gelu_grad(
        dav.byteOffset,
        dbv.byteOffset,
        av.byteOffset,
        bv.byteOffset,
        dyv.byteOffset,
        dav.length,
      );
    } else {
      gatedGeluGradRows(dav, dbv, av, bv, dyv);
    }
    return [da, db];
  }],
  [RMS_NORM, (args) => wasmRmsNorm(args)],
  [RMS_NORM_KEEP, (args) => {
    const x = input(args.inputs, "x");
    const y = wasmRmsNorm(args);
    args.backend.incRef(x.dataId); // the second output is x itself
    return [y, { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype }];
  }],
  [RMS_NORM_GRAD, ({ inputs, backend, attrs }) => {
    const x = input(inputs, "x");
    const w = input(inputs, "w");
    const dy = input(inputs, "dy");
    const dr = inputs["dr"];
    const eps = (attrs as { eps: number }).eps;
    const dx = backend.makeOutput(x.shape, "float32");
    const dw = backend.makeOutput(w.shape, "float32");
    const [dxv, dwv, xv, wv, dyv] = heaps(backend, dx, dw, x, w, dy);
    const simd = activeSimdKernels();
    if (simd && wv.length % 4 === 0) {
      dwv.fill(0);
      simd.rms_norm_grad(
        dxv.byteOffset,
        dwv.byteOffset,
        xv.byteOffset,
        wv.byteOffset,
        dyv.byteOffset,
        xv.length / wv.length,
        wv.length,
        eps,
      );
    } else {
      rmsNormGradRows(dxv, dwv, xv, wv, dyv, eps);
    }
    if (dr !== undefined) {
      // dx + dr, as tfjs's Add of the two gradients would give (one more pass, in place).
      const drv = backend.typedArrayFromHeap(dr) as Float32Array;
      if (simd) simd.add_into(dxv.byteOffset, drv.byteOffset, dxv.length);
      else for (let i = 0; i < dxv.length; i++) dxv[i]! += drv[i]!;
    }
    return [dx, dw];
  }],
];

/**
 * Registers the wasm implementations of the fused kernels (idempotent). Call after the wasm
 * backend is registered (`model/backend.ts` does).
 They use the SIMD kernels of `model/wasm_simd.ts` when those are
 * enabled, else JavaScript loops over the heap (same results up to float rounding: the loops
 * compute in double and round once; the dropout mask is identical bit for bit).
 */
export function registerFusedWasmKernels(): void {
  for (const [kernelName, fn] of WASM_KERNELS) {
    if (tf.getKernel(kernelName, "wasm") !== undefined) continue;
    tf.registerKernel({
      kernelName,
      backendName: "wasm",
      kernelFunc: fn as unknown as tf.KernelFunc,
    });
  }
}

/** Removes the wasm fused kernels (the ops then use their composite fallbacks). */
export function unregisterFusedWasmKernels(): void {
  for (const [kernelName] of WASM_KERNELS) {
    if (tf.getKernel(kernelName, "wasm") !== undefined) tf.unregisterKernel(kernelName, "wasm");
  }
}
