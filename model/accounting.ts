/**
 * Closed-form parameter and FLOP accounting of the T5 backbone, checked against PyTorch's counts
 * of Hugging Face's model (`shared/fixtures/t5_sizes.json`) and against the instantiated
 * variables of `initT5` (model/t5.ts).
 *
 * @module
 */
import type { T5Config } from "./config.ts";
import { checkSizes } from "./t5_sizes.ts";
import type { Stack } from "./hooks.ts";

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
 * @throws Error naming a size field of `config` that is not a positive integer
 */
export function countT5Params(config: T5Config): number {
  checkSizes("model/accounting.ts", "countT5Params", config);
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
  /**
   * Forward plus backward (a training step without the optimizer update): the forward pass and
   * the gradient matmuls the backward pass runs for the trained parameters.
   */
  readonly train: number;
}

/**
 * What is trained, and where a method's trained tensors enter T5 (through the hooks of
 * `model/hooks.ts`): this decides which gradient matmuls a training step runs. Without a method
 * part it describes the backbone alone.
 */
export interface FlopPlan {
  /**
   * Which backbone weights are trained (a method's `freezeBackbone`): `false` all of them
   * (embeddings, projections, norms, position biases, `lm_head`), `"all"` none,
   * `"except_layer_norms"` only the LayerNorm scales.
   */
  readonly freezeBackbone: false | "all" | "except_layer_norms";
  /** `encoderInput`: trained rows prepended to the embedded encoder input (Prompt-Tuning's l). */
  readonly encoderPrompt?: number;
  /**
   * `selfAttentionPrefix`: `length` keys and values, made from trained parameters, prepended to
   * the self-attention of every block of `stacks` (HyperPrompt).
   */
  readonly selfAttentionPrefix?: { readonly length: number; readonly stacks: readonly Stack[] };
  /**
   * `afterSublayer`: a bottleneck adapter (down d→a, up a→d, weights trained or generated from
   * trained parameters) after each of `positions` in every block of `stacks` (adapters,
   * HyperFormer++).
   */
  readonly adapters?: {
    readonly bottleneck: number;
    readonly stacks: readonly Stack[];
    readonly positions: readonly ("self_attention" | "feed_forward")[];
  };
  /**
   * `afterSublayer` without a matmul of its own: trained tensors combined elementwise with the
   * output of each of `positions` in every block of `stacks` (a per-task bias or scale; tfjs's
   * elementwise ops are not counted). Adds no forward FLOPs, but from the first such sublayer on
   * the hidden state depends on a trained tensor, so with a frozen backbone the matmuls after it
   * run their input gradients. A plan that leaves such tensors out counts too little (with a
   * frozen backbone and nothing else trained, the forward pass alone).
   */
  readonly elementwise?: {
    readonly stacks: readonly Stack[];
    readonly positions: readonly ("self_attention" | "feed_forward")[];
    /**
     * How the trained tensor is combined with the sublayer's output: `"add"` (a bias) or
     * `"mul"` (a scale). It does not change the FLOP count (elementwise ops are not counted,
     * and either op makes the hidden state depend on the trained tensor alike); the memory
     * estimate (benchmarks/memory.ts) models each op's saved tensors and gradients: an Add
     * passes its output's gradient on as the sublayer output's, a Mul makes a new one (and a
     * product of the output's size for the broadcast tensor's gradient). Absent: counted as a
     * Mul, the larger of the two (an upper bound for a bias).
     */
    readonly op?: "add" | "mul";
  };
}

/** The backbone trained whole, no method: every matmul needs both operands' gradients. */
const BACKBONE_TRAINED: FlopPlan = { freezeBackbone: false };

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
 * forward = 2 · (L_enc·enc + L_dec·dec + out). A method's `plan` adds its own matmuls: an
 * encoder prompt of l rows makes the encoder input S + l long (encoder blocks and cross-attention
 * keys/values grow), a self-attention prefix of l keys/values adds l key columns to q·kᵀ and
 * probs·v of each conditioned block (4·l·i FLOPs per query), an adapter 4·d·a FLOPs per token,
 * an elementwise trained tensor none (added or multiplied alike).
 *
 * Backward, per matmul Y = A·B of m·k·n multiply-adds: dA = dY·Bᵀ (2·m·k·n FLOPs) only when A
 * depends on a trained parameter, dB = Aᵀ·dY (the same) only when B does, as tfjs runs it
 * (`getFilteredNodesXToY` in tfjs-core's `tape.js`, and `model/backprop.ts`, prune the inputs that
 * do not come from the trained variables, and the matmul gradients are lazy per input). A weight
 * depends on a trained parameter when it is trained itself (or generated from trained ones, as
 * HyperFormer++'s adapters); an activation when any trained tensor lies upstream of it, which is
 * followed through the network at tensor granularity: a block input depends once a trained tensor
 * has entered (the embedding when the backbone is trained; the LayerNorm scales with
 * `"except_layer_norms"`; a prompt from the encoder input on; a prefix from the first block that
 * has one; an adapter or elementwise tensor from the first one on; the encoder output into every
 * cross-attention's k, v), and q·kᵀ, probs·v differentiate only the operands that depend on one.
 * The embedding's own gradient is a scatter-add, not a matmul, and is not counted.
 *
 * With every weight trained (the default plan) every operand depends on a trained parameter, so
 * train = 3 · forward; this reproduces `t5_sizes.json` exactly for all ten published sizes. With
 * a frozen backbone most matmuls cost one forward and one input gradient, and those before the
 * first trained tensor (e.g. a Prompt-Tuning decoder's first self-attention, which sees only the
 * frozen decoder embedding) cost no backward at all.
 *
 * @param config the configuration
 * @param shape input (S) and target (T) lengths in tokens
 * @param plan what is trained and the method's additions (default: backbone trained, no method)
 * @returns forward and forward+backward FLOPs per example
 * @throws Error naming a size field of `config` or a length that is not a positive integer
 */
export function t5Flops(
  config: T5Config,
  shape: { inputLength: number; targetLength: number },
  plan: FlopPlan = BACKBONE_TRAINED,
): T5Flops {
  checkSizes("model/accounting.ts", "t5Flops", config);
  const { inputLength: s0, targetLength: t } = shape;
  if (!(Number.isInteger(s0) && s0 > 0 && Number.isInteger(t) && t > 0)) {
    throw new Error(
      `model/accounting.ts t5Flops: inputLength and targetLength must be positive integers, got ${s0}, ${t}`,
    );
  }
  const l = plan.encoderPrompt ?? 0;
  const prefix = plan.selfAttentionPrefix;
  const adapters = plan.adapters;
  const counts = [l, prefix?.length ?? 1, adapters?.bottleneck ?? 1];
  if (!counts.every((n) => Number.isInteger(n) && n >= 0) || counts[1] === 0 || counts[2] === 0) {
    throw new Error(
      `model/accounting.ts t5Flops: plan lengths must be integers (encoderPrompt >= 0, prefix ` +
        `length and adapter bottleneck >= 1), got ${JSON.stringify(plan)}`,
    );
  }
  const d = config.dModel;
  const i = config.numHeads * config.dKv;
  const gated = config.feedForwardProj === "gated-gelu";
  const f = config.dFf;
  const weights = plan.freezeBackbone === false;
  const norms = plan.freezeBackbone !== "all";
  let forward = 0;
  let backward = 0;
  /** Y = A·B with m·k·n multiply-adds; returns whether Y depends on a trained parameter. */
  const mm = (m: number, k: number, n: number, a: boolean, b: boolean): boolean => {
    const c = 2 * m * k * n;
    forward += c;
    backward += (a ? c : 0) + (b ? c : 0);
    return a || b;
  };
  const linear = (rows: number, din: number, dout: number, x: boolean) =>
    mm(rows, din, dout, x, weights);
  /** Self- or cross-attention of `q` queries over `keys` keys (prefix included). */
  const attend = (
    q: number,
    keys: number,
    deps: { q: boolean; k: boolean; v: boolean; bias: boolean },
  ) => {
    const scores = mm(q, i, keys, deps.q, deps.k);
    return mm(q, keys, i, scores || deps.bias, deps.v);
  };
  const adapter = (
    stack: Stack,
    pos: "self_attention" | "feed_forward",
    rows: number,
    y: boolean,
  ) => {
    const scaled = plan.elementwise !== undefined && plan.elementwise.stacks.includes(stack) &&
      plan.elementwise.positions.includes(pos);
    if (!adapters || !adapters.stacks.includes(stack) || !adapters.positions.includes(pos)) {
      return y || scaled;
    }
    const a = adapters.bottleneck;
    mm(rows, d, a, y, true);
    return mm(rows, a, d, true, true);
  };
  const feedForward = (stack: Stack, rows: number, x: boolean) => {
    const normed = x || norms;
    const h = gated
      ? [linear(rows, d, f, normed), linear(rows, d, f, normed)].some(Boolean)
      : linear(rows, d, f, normed);
    const y = adapter(stack, "feed_forward", rows, linear(rows, f, d, h));
    return x || y;
  };
  const selfAttention = (stack: Stack, rows: number, x: boolean) => {
    const normed = x || norms;
    const q = linear(rows, d, i, normed);
    const k = linear(rows, d, i, normed);
    const v = linear(rows, d, i, normed);
    const p = prefix && prefix.stacks.includes(stack) ? prefix.length : 0;
    // The relative-position bias is a backbone weight: trained with the backbone.
    const out = attend(rows, rows + p, { q, k: k || p > 0, v: v || p > 0, bias: weights });
    const y = adapter(stack, "self_attention", rows, linear(rows, i, d, out));
    return x || y;
  };
  // Encoder over S = inputLength + prompt rows.
  const s = s0 + l;
  let h = weights || l > 0;
  for (let b = 0; b < config.numLayers; b++) {
    h = selfAttention("encoder", s, h);
    h = feedForward("encoder", s, h);
  }
  const encoded = h || norms;
  // Decoder over T target tokens.
  h = weights;
  for (let b = 0; b < config.numDecoderLayers; b++) {
    h = selfAttention("decoder", t, h);
    const q = linear(t, d, i, h || norms);
    const k = linear(s, d, i, encoded);
    const v = linear(s, d, i, encoded);
    const y = linear(t, i, d, attend(t, s, { q, k, v, bias: false }));
    h = h || y;
    h = feedForward("decoder", t, h);
  }
  linear(t, d, config.vocabSize, h || norms);
  return { forward, train: forward + backward };
}
