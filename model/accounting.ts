/**
 * Closed-form parameter and FLOP accounting of the T5 backbone, checked against PyTorch's counts
 * of Hugging Face's model (`shared/fixtures/t5_sizes.json`) and against the instantiated
 * variables of `initT5` (model/t5.ts).
 *
 * @module
 */
import type { T5Config } from "./config.ts";

/**
 * Parameter total of a T5 model in the standard layout: the shared embedding, an `lm_head` when
 * untied, and per stack its blocks, its relative-position bias table (owned by block 0) and its
 * final norm. With d = dModel, i = numHeads·dKv, f = dFf, g = 2 (ReLU) or 3 (gated GELU),
 * V = vocabSize, b = buckets·heads:
 *
 * ```
 * V·d·(tied ? 1 : 2)
 *   + L_enc·(4·d·i + g·d·f + 2·d) + b + d      (encoder: attention, FFN, 2 norms per block)
 *   + L_dec·(8·d·i + g·d·f + 3·d) + b + d      (decoder: self + cross attention, FFN, 3 norms)
 * ```
 *
 * plus V·d for each stack in `config.ownEmbeddings` (a checkpoint with distinct per-stack
 * `embed_tokens`). This is PyTorch's count with shared tensors once (an unused `shared.weight`
 * included, as PyTorch counts it); it equals the sum over `t5ParamShapes` and the variables of
 * `initT5` / `t5FromTensors`.
 *
 * @param config the configuration
 * @returns number of parameters
 */
export function countT5Params(config: T5Config): number {
  const d = config.dModel;
  const inner = config.numHeads * config.dKv;
  const g = config.feedForwardProj === "gated-gelu" ? 3 : 2;
  const ffn = g * d * config.dFf;
  const bias = config.relativeAttentionNumBuckets * config.numHeads;
  const emb = config.vocabSize * d *
    ((config.tieWordEmbeddings ? 1 : 2) + (config.ownEmbeddings?.length ?? 0));
  const enc = config.numLayers * (4 * d * inner + ffn + 2 * d) + bias + d;
  const dec = config.numDecoderLayers * (8 * d * inner + ffn + 3 * d) + bias + d;
  return emb + enc + dec;
}

/**
 * Whether `shared.weight` takes no part in the model: untied output and both stacks with their own
 * embedding (`config.ownEmbeddings`). Such a table gets no gradient and is never trained (as in
 * Hugging Face, where it is a parameter without a gradient); it is still held and counted.
 *
 * @param config the configuration
 * @returns true when `shared.weight` is unused
 */
export function sharedEmbeddingUnused(config: T5Config): boolean {
  return !config.tieWordEmbeddings && (config.ownEmbeddings?.length ?? 0) === 2;
}

/** Matmul FLOPs of one example (2 per multiply-add). */
export interface T5Flops {
  /** One forward pass. */
  readonly forward: number;
  /** Forward plus backward (a training step without the optimizer update). */
  readonly train: number;
}

/**
 * Matmul FLOPs (2 per multiply-add) of T5 for one example of `inputLength` S encoder tokens and
 * `targetLength` T decoder tokens, counting what PyTorch's `FlopCounterMode` counts on HF's model
 * (matmuls only: no softmax, norms, elementwise ops, embedding lookups or position-bias gathers).
 * With d = dModel, i = numHeads·dKv (heads·per-head width), f = dFf, g = 2 (ReLU) or 3 (gated
 * GELU), V = vocabSize, multiply-adds are:
 *
 * ```
 * encoder block:  4·S·d·i            q, k, v, o projections
 *               + 2·S·S·i            q·kᵀ and probs·v (summed over heads)
 *               + g·S·d·f            feed-forward (wi or wi_0 + wi_1, and wo)
 * decoder block:  4·T·d·i + 2·T·T·i  self-attention (full T×T, masked, as HF computes it)
 *               + 2·T·d·i + 2·S·d·i  cross-attention q, o on T rows; k, v on S encoder rows
 *               + 2·T·S·i            cross q·kᵀ and probs·v
 *               + g·T·d·f            feed-forward
 * output:         T·d·V              lm_head or tied projection
 * ```
 *
 * forward = 2 · (L_enc·enc + L_dec·dec + out). Backward: every matmul `y = x·W` costs two more
 * matmuls of the same size (dx = dy·Wᵀ and dW = xᵀ·dy; for attention both operands' gradients),
 * including the first projections, whose input gradient flows into the trainable embedding; the
 * embedding's own gradient is a scatter-add, not a matmul, and is not counted. So
 * train = 3 · forward. This reproduces `t5_sizes.json` exactly for all ten published sizes.
 *
 * @param config the configuration
 * @param shape input (S) and target (T) lengths in tokens
 * @returns forward and forward+backward FLOPs per example
 */
export function t5Flops(
  config: T5Config,
  shape: { inputLength: number; targetLength: number },
): T5Flops {
  const { inputLength: s, targetLength: t } = shape;
  if (!(Number.isInteger(s) && s > 0 && Number.isInteger(t) && t > 0)) {
    throw new Error(
      `model/accounting.ts t5Flops: inputLength and targetLength must be positive integers, got ${s}, ${t}`,
    );
  }
  const d = config.dModel;
  const i = config.numHeads * config.dKv;
  const g = config.feedForwardProj === "gated-gelu" ? 3 : 2;
  const f = config.dFf;
  const enc = 4 * s * d * i + 2 * s * s * i + g * s * d * f;
  const dec = 4 * t * d * i + 2 * t * t * i + 2 * t * d * i + 2 * s * d * i + 2 * t * s * i +
    g * t * d * f;
  const out = t * d * config.vocabSize;
  const forward = 2 * (config.numLayers * enc + config.numDecoderLayers * dec + out);
  return { forward, train: 3 * forward };
}
