/**
 * Pure tensor primitives of T5, written to compute what Hugging Face's `modeling_t5.py` computes:
 * linear maps with weights in HF orientation `[out, in]`, RMS layer norm (scale only, no mean
 * subtraction, no bias), relative-position buckets and bias, attention without 1/√d scaling
 * (optionally with prefix keys/values from {@link AttentionPrefix}), additive masks, and the two
 * feed-forward variants (ReLU; gated GELU with the tanh approximation `gelu_new`).
 *
 * Nothing here owns variables or calls hooks; `t5.ts` wires these together. Every function
 * returns new tensors and leaves its inputs alone; callers run them inside `tf.tidy`.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { AttentionPrefix } from "./hooks.ts";
import { attentionSoftmax, dropout, gatedGelu, gatedGeluDropout } from "./fused.ts";
import { headContext, headScores } from "./heads.ts";

/**
 * Additive value for masked attention scores. Large enough that `exp` underflows to exactly 0 in
 * float32 after the softmax's max subtraction (HF uses the dtype minimum; both give probability
 * 0), small enough that adding two of them (padding + causal) stays finite.
 */
export const MASK_VALUE = -1e9;

/**
 * Linear map without bias: `x · Wᵀ` for `x` of shape `[..., in]` and `w` of shape `[out, in]`
 * (PyTorch / HF orientation).
 *
 * @param x input, any rank ≥ 2... or rank 1 treated as a single row
 * @param w weight `[out, in]`
 * @returns `[..., out]`
 */
export function linear(x: tf.Tensor, w: tf.Tensor2D): tf.Tensor {
  const inDim = w.shape[1];
  const lead = x.shape.slice(0, -1);
  if (x.shape[x.shape.length - 1] !== inDim) {
    throw new Error(
      `model/layers.ts linear: input last dim ${
        x.shape[x.shape.length - 1]
      } != weight in-dim ${inDim}`,
    );
  }
  const flat = x.reshape([-1, inDim]) as tf.Tensor2D;
  const y = tf.matMul(flat, w, false, true);
  return y.reshape([...lead, w.shape[0]]);
}

/**
 * Rows of `table` at `indices` (`tf.gather` on axis 0) with a gradient that works on every
 * backend: tfjs differentiates `gather` through `UnsortedSegmentSum`, which the wasm backend lacks;
 * here the gradient is a `scatterND` into the table's shape (duplicate indices are summed).
 *
 * @param table `[rows, ...]`, differentiable
 * @param indices int32 of any shape, values in `[0, rows)`; not differentiated
 * @returns `[...indices.shape, ...table.shape.slice(1)]`
 */
export function gatherRows(table: tf.Tensor, indices: tf.Tensor): tf.Tensor {
  if (indices.dtype !== "int32") {
    throw new Error(`model/layers.ts gatherRows: indices must be int32, got ${indices.dtype}`);
  }
  const rowShape = table.shape.slice(1);
  const flat = indices.reshape([-1]);
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const t = args[0] as tf.Tensor;
    const save = args[1] as tf.GradSaveFunc;
    save([flat]); // kept by the tape: the caller's tidy may dispose `flat` before backward runs
    const value = tf.gather(t, flat);
    const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const idx = saved[0]!;
      return tf.scatterND(idx.reshape([-1, 1]), dy.reshape([idx.size, ...rowShape]), t.shape);
    };
    return { value, gradFunc };
  });
  return f(table).reshape([...indices.shape, ...rowShape]);
}

export { rmsNorm, rmsNormKeep } from "./fused.ts";

/**
 * T5's relative-position bucket of one relative position `key − query`, as in HF
 * `_relative_position_bucket`: bidirectional (encoder) halves the buckets by sign; causal
 * (decoder) maps future positions to bucket 0; distances below half the (remaining) buckets are
 * exact, larger ones log-spaced up to `maxDistance`, beyond which they share the last bucket.
 * The log term is evaluated with float32 rounding at every step like PyTorch's float32 tensors.
 *
 * @param relativePosition key position minus query position
 * @param bidirectional true for the encoder, false for the decoder
 * @param numBuckets total buckets (config `relative_attention_num_buckets`)
 * @param maxDistance config `relative_attention_max_distance`
 * @returns bucket index in `[0, numBuckets)`
 */
export function relativePositionBucket(
  relativePosition: number,
  bidirectional: boolean,
  numBuckets: number,
  maxDistance: number,
): number {
  let buckets = numBuckets;
  let bucket = 0;
  let n: number;
  if (bidirectional) {
    buckets = Math.floor(buckets / 2);
    if (relativePosition > 0) bucket += buckets;
    n = Math.abs(relativePosition);
  } else {
    n = -Math.min(relativePosition, 0);
  }
  const maxExact = Math.floor(buckets / 2);
  if (n < maxExact) return bucket + n;
  const f = Math.fround;
  const ratio = f(Math.log(f(n / maxExact)));
  const scaled = f(f(ratio / f(Math.log(maxDistance / maxExact))) * (buckets - maxExact));
  const large = Math.min(maxExact + Math.trunc(scaled), buckets - 1);
  return bucket + large;
}

/**
 * Bucket indices for every (query, key) pair of consecutive positions.
 *
 * @param queryStart position of the first query
 * @param queryLength number of queries
 * @param keyStart position of the first key (negative for prefix slots before the first token)
 * @param keyLength number of keys
 * @returns int32 `[queryLength, keyLength]`
 */
export function positionBuckets(
  queryStart: number,
  queryLength: number,
  keyStart: number,
  keyLength: number,
  bidirectional: boolean,
  numBuckets: number,
  maxDistance: number,
): tf.Tensor2D {
  const key =
    `${queryStart},${queryLength},${keyStart},${keyLength},${bidirectional},${numBuckets},${maxDistance}`;
  let out = bucketCache.get(key);
  if (!out) {
    out = new Int32Array(queryLength * keyLength);
    for (let i = 0; i < queryLength; i++) {
      for (let j = 0; j < keyLength; j++) {
        out[i * keyLength + j] = relativePositionBucket(
          keyStart + j - (queryStart + i),
          bidirectional,
          numBuckets,
          maxDistance,
        );
      }
    }
    if (bucketCache.size >= BUCKET_CACHE_SIZE) {
      bucketCache.delete(bucketCache.keys().next().value!);
    }
    bucketCache.set(key, out);
  }
  return tf.tensor2d(out.slice(), [queryLength, keyLength], "int32"); // copy: backends may keep the array
}

/** Bucket tables are pure functions of their arguments; the last few are kept (FIFO). */
const BUCKET_CACHE_SIZE = 64;
const bucketCache = new Map<string, Int32Array>();

/**
 * Relative-position bias `[1, numHeads, queryLength, keyLength]` looked up in a stack's bias table
 * (`relative_attention_bias.weight`, `[numBuckets, numHeads]`). Differentiable in `table`.
 */
export function positionBias(
  table: tf.Tensor2D,
  queryStart: number,
  queryLength: number,
  keyStart: number,
  keyLength: number,
  bidirectional: boolean,
  maxDistance: number,
): tf.Tensor4D {
  const [numBuckets, numHeads] = table.shape;
  const idx = positionBuckets(
    queryStart,
    queryLength,
    keyStart,
    keyLength,
    bidirectional,
    numBuckets,
    maxDistance,
  );
  const vals = gatherRows(table, idx); // [q, k, h]
  return vals.reshape([queryLength, keyLength, numHeads]).transpose([2, 0, 1]).expandDims(0);
}

/**
 * Additive key-padding mask `[batch, 1, 1, length]`: 0 where `mask` is 1, {@link MASK_VALUE}
 * where it is 0.
 *
 * @param mask float32 `[batch, length]` of 0/1
 */
export function paddingMask(mask: tf.Tensor2D): tf.Tensor4D {
  const [b, l] = mask.shape;
  return tf.mul(tf.sub(mask, 1), -MASK_VALUE).reshape([b, 1, 1, l]);
}

/**
 * Additive causal mask `[1, 1, queryLength, keyLength]` for queries at positions
 * `queryStart …` over keys at positions `0 … keyLength−1`: a key after its query gets
 * {@link MASK_VALUE}.
 */
export function causalMask(
  queryStart: number,
  queryLength: number,
  keyLength: number,
): tf.Tensor4D {
  const out = new Float32Array(queryLength * keyLength);
  for (let i = 0; i < queryLength; i++) {
    for (let j = 0; j < keyLength; j++) {
      if (j > queryStart + i) out[i * keyLength + j] = MASK_VALUE;
    }
  }
  return tf.tensor4d(out, [1, 1, queryLength, keyLength]);
}

/** Inputs of {@link attention} besides queries, keys and values. */
export interface AttentionOptions {
  /** Position bias on the key columns (no prefix), broadcastable to `[batch, h, q, k]`. */
  readonly bias?: tf.Tensor;
  /** Additive mask on the key columns (no prefix), broadcastable to `[batch, h, q, k]`. */
  readonly mask?: tf.Tensor;
  /** Prefix keys/values prepended before the keys; never masked. */
  readonly prefix?: AttentionPrefix;
  /**
   * Position bias of the prefix columns, broadcastable to `[batch, h, q, l]`; required when the
   * prefix asks for `"relative"` bias, ignored for `"zero"`.
   */
  readonly prefixBias?: tf.Tensor;
  /** Dropout on the probabilities (training): rate and seed. */
  readonly dropout?: { readonly rate: number; readonly seed: number };
}

/** Output of {@link attention}. */
export interface AttentionResult {
  /** Attended values `[batch, q, heads·dKv]` (heads side by side, ready for the output projection). */
  readonly out: tf.Tensor3D;
  /** Softmax probabilities before dropout `[batch, h, q, prefixLength + k]`. */
  readonly probs: tf.Tensor4D;
  /** Number of prefix columns at the front of `probs`. */
  readonly prefixLength: number;
}

function batchPrefix(t: tf.Tensor3D, batch: number, what: string): tf.Tensor3D {
  const b = t.shape[0];
  if (b === batch) return t;
  if (b === 1) return tf.broadcastTo(t, [batch, t.shape[1], t.shape[2]]);
  throw new Error(
    `model/layers.ts attention: prefix ${what} batch ${b} is neither 1 nor the batch ${batch}`,
  );
}

/**
 * Scaled-free multi-head dot-product attention as in T5: per head, `softmax(q·kᵀ + bias + mask)·v`,
 * softmax in float32, with optional prefix keys/values concatenated before `k`/`v` along the key
 * axis. Queries, keys and values stay in the projected layout `[batch, length, heads·dKv]` (head
 * h is columns `h·dKv … (h+1)·dKv − 1`, the layout of HF's `view(b, l, h, d)`); the products
 * read the heads in place (`model/heads.ts`), so no tensor is transposed where the backend has
 * the head kernels.
 *
 * @param q `[batch, q, heads·dKv]`
 * @param k `[batch, k, heads·dKv]`
 * @param v `[batch, k, heads·dKv]`
 * @param heads number of heads
 */
export function attention(
  q: tf.Tensor3D,
  k: tf.Tensor3D,
  v: tf.Tensor3D,
  heads: number,
  opts: AttentionOptions = {},
): AttentionResult {
  const [batch, lq, width] = q.shape;
  if (k.shape[2] !== width || v.shape[2] !== width || k.shape[1] !== v.shape[1]) {
    throw new Error(
      `model/layers.ts attention: q ${JSON.stringify(q.shape)}, k ${JSON.stringify(k.shape)} ` +
        `and v ${JSON.stringify(v.shape)} must share the width, and k and v the length`,
    );
  }
  let keys = k;
  let values = v;
  let bias: tf.Tensor | undefined = opts.bias;
  let mask: tf.Tensor | undefined = opts.mask;
  let prefixLength = 0;
  const p = opts.prefix;
  if (p) {
    if (p.positionBias === "relative" && !opts.prefixBias) {
      throw new Error(`model/layers.ts attention: "relative" prefix bias needs prefixBias`);
    }
    const pk = batchPrefix(p.key, batch, "key");
    const pv = batchPrefix(p.value, batch, "value");
    if (pk.shape[2] !== width || pv.shape[2] !== width) {
      throw new Error(
        `model/layers.ts attention: prefix shapes ${JSON.stringify(pk.shape)} / ` +
          `${JSON.stringify(pv.shape)} do not match the width heads·dKv = ${width}`,
      );
    }
    if (pk.shape[1] !== pv.shape[1]) {
      throw new Error(
        `model/layers.ts attention: prefix key length ${pk.shape[1]} != value length ${
          pv.shape[1]
        }`,
      );
    }
    prefixLength = pk.shape[1];
    keys = tf.concat([pk, k], 1);
    values = tf.concat([pv, v], 1);
    const lk = k.shape[1];
    if (bias) {
      let pb: tf.Tensor;
      if (p.positionBias === "relative") {
        pb = tf.broadcastTo(opts.prefixBias!, [bias.shape[0] ?? 1, heads, lq, prefixLength]);
      } else {
        pb = tf.zeros([bias.shape[0] ?? 1, heads, lq, prefixLength]);
      }
      bias = tf.concat([pb, tf.broadcastTo(bias, [bias.shape[0] ?? 1, heads, lq, lk])], 3);
    } else if (p.positionBias === "relative") {
      bias = tf.concat([
        tf.broadcastTo(opts.prefixBias!, [1, heads, lq, prefixLength]),
        tf.zeros([1, heads, lq, lk]),
      ], 3);
    }
    if (mask) {
      const mb = mask.shape[0] ?? 1;
      const mq = mask.shape[2] ?? 1;
      mask = tf.concat([
        tf.zeros([mb, 1, mq, prefixLength]),
        tf.broadcastTo(mask, [mb, 1, mq, lk]),
      ], 3);
    }
  }
  const scores = headScores(q, keys, heads);
  const probs = attentionSoftmax(scores, bias, mask);
  let attn: tf.Tensor4D = probs;
  if (opts.dropout && opts.dropout.rate > 0) {
    attn = dropout(probs, opts.dropout.rate, opts.dropout.seed);
  }
  const out = headContext(attn, values, heads);
  return { out, probs, prefixLength };
}

export { geluNew } from "./fused.ts";

/** Feed-forward weights in HF orientation; `wi` for ReLU, `wi0`/`wi1` for gated GELU. */
export interface FeedForwardWeights {
  readonly wi?: tf.Tensor2D;
  readonly wi0?: tf.Tensor2D;
  readonly wi1?: tf.Tensor2D;
  readonly wo: tf.Tensor2D;
}

/**
 * T5 feed-forward: ReLU (`wo · dropout(relu(wi · x))`) or gated GELU
 * (`wo · dropout(gelu_new(wi_0 · x) ⊙ (wi_1 · x))`).
 *
 * @param x `[..., d]`
 * @param w the weights; which are present selects the variant
 * @param drop rate and seed for the dropout after the activation (training), if any
 */
export function feedForward(
  x: tf.Tensor,
  w: FeedForwardWeights,
  drop?: { readonly rate: number; readonly seed: number },
): tf.Tensor {
  let h: tf.Tensor;
  const rate = drop?.rate ?? 0;
  if (w.wi) {
    h = tf.relu(linear(x, w.wi));
    if (rate > 0) h = dropout(h, rate, drop!.seed);
  } else if (w.wi0 && w.wi1) {
    const a = linear(x, w.wi0), b = linear(x, w.wi1);
    h = rate > 0 ? gatedGeluDropout(a, b, rate, drop!.seed) : gatedGelu(a, b);
  } else {
    throw new Error("model/layers.ts feedForward: need wi (relu) or wi0 and wi1 (gated-gelu)");
  }
  return linear(h, w.wo);
}
