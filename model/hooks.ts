/**
 * The only seam between the T5 model and the parameter-efficient methods.
 *
 * The T5 code imports this file and never imports a method. A method builds a {@link T5Hooks}
 * object for one batch (it knows each example's task id) and passes it to the forward pass; the
 * model calls whichever hooks are present at fixed points. Every hook is called inside a
 * `tf.tidy` of the forward pass: `encoderInput` in the forward pass's own, the others in the
 * `tf.tidy` of the sublayer that calls them (`model/t5.ts` runs each self-attention,
 * cross-attention and feed-forward sublayer in its own). Tensors a hook creates are released when
 * that scope ends, so a hook must not cache a tensor it made for reuse by a later call (variables
 * and tensors made outside the forward pass are not affected; tfjs keeps what backprop needs).
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs";

/** Which stack of the encoder-decoder a block belongs to. */
export type Stack = "encoder" | "decoder";

/** The sublayers of a T5 block (the decoder has all three, the encoder no cross-attention). */
export type Sublayer = "self_attention" | "cross_attention" | "feed_forward";

/**
 * Extra keys and values prepended to one self-attention layer (HyperPrompt, prefix-style methods).
 * Shapes: `[batch or 1, l, numHeads·dKv]`; a leading 1 broadcasts over the batch.
 */
export interface AttentionPrefix {
  /**
   * Prefix keys `[batch or 1, l, heads·dKv]`, already in the projected (post-W_K) space, heads
   * side by side as in the projection's output (head h is columns `h·dKv … (h+1)·dKv − 1`).
   */
  readonly key: tf.Tensor3D;
  /** Prefix values `[batch or 1, l, heads·dKv]`, already in the projected (post-W_V) space. */
  readonly value: tf.Tensor3D;
  /**
   * Relative-position bias on the l prefix columns: `"zero"` adds none (a position-free memory,
   * the specification's default reading A4); `"relative"` places the prefix at positions
   * -l … -1 before the first token and uses the layer's relative-position buckets (as a prefix
   * in Hugging Face's past keys/values): far from the start the l slots share one logarithmic
   * bucket, with tokens to the query's left (T5's 32 buckets, distance 128, l = 16: all 16 in one
   * bucket for encoder queries from position 45 on, decoder ones from 112 on).
   */
  readonly positionBias: "zero" | "relative";
}

/**
 * Per-batch hooks. All optional; an empty object leaves T5 unchanged. A method's hooks are built
 * for one batch's task ids, and each hook with per-task state refuses a batch of another size
 * (`MethodInstance.hooks` in `model/method.ts`).
 */
export interface T5Hooks {
  /**
   * Called once on the embedded encoder input (after token embedding, before dropout and the
   * first block). May prepend rows (Prompt-Tuning). Must return the embeddings and the matching
   * `[batch, length]` float32 mask of 1 (attend) and 0 (padding).
   */
  encoderInput?(
    embeds: tf.Tensor3D,
    mask: tf.Tensor2D,
  ): { embeds: tf.Tensor3D; mask: tf.Tensor2D };
  /**
   * Keys and values to prepend to the self-attention of block `layer` (0-based) of `stack`, for a
   * batch of `batch` examples (hooks check it against the task ids they were built for).
   * Every query, padded or causal, may attend to all prefix columns. Return `undefined` for none.
   */
  selfAttentionPrefix?(stack: Stack, layer: number, batch: number): AttentionPrefix | undefined;
  /**
   * Transforms a sublayer's output `y` ([batch, length, dModel]) before dropout and the residual
   * addition: `out = x + dropout(afterSublayer(y))` (adapter placement of Houlsby/HyperFormer).
   */
  afterSublayer?(stack: Stack, layer: number, sublayer: Sublayer, y: tf.Tensor3D): tf.Tensor3D;
  /**
   * Observes attention probabilities `[batch, numHeads, queries, prefixLength + keys]` of an
   * attention layer; `prefixLength` columns come first. Used for the attention-mass analysis.
   * Observers must not keep the tensor (it is disposed with the forward pass); read what is
   * needed inside the call, e.g. with `tf.keep` on a reduced copy.
   */
  onAttention?(
    stack: Stack,
    layer: number,
    sublayer: Sublayer,
    probs: tf.Tensor4D,
    prefixLength: number,
  ): void;
}
