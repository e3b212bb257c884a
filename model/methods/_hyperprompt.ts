/**
 * Private pieces shared by HyperPrompt-Share, -Sep and -Global (spec §1.3–1.5, §5.4, §6):
 * the common configuration, global prompts, the local HyperNetwork P·D → ReLU → ·U, and the
 * shape of generated hyper-prompts as the `[batch or 1, l, h·d_kv]` attention prefix.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { T5Config } from "../config.ts";
import type { Stack } from "../hooks.ts";
import type { FlopPlan } from "../accounting.ts";
import { type ConfigReader, type FreezeBackbone, stackLayers } from "./_config.ts";

/** Options shared by every HyperPrompt variant. */
export interface HyperPromptBaseConfig {
  /** Hyper-prompt length l (key/value slots per conditioned layer); 16, spec §3.3 [I]. */
  readonly length: number;
  /** Local HyperNetwork bottleneck b; 16, spec §3.3 [I]. */
  readonly bottleneck: number;
  /** Stacks whose self-attention gets hyper-prompts (A2: both; M = blocks of these stacks). */
  readonly stacks: readonly Stack[];
  /** Relative-position bias on the prompt columns (A4: "zero", position-free memory). */
  readonly positionBias: "zero" | "relative";
  /**
   * Biases (A6, default false): Share/Sep: on the local D (b) and U (h·d_kv);
   * Global: on the global hypernets W^{D_k}, W^{U_k}, W^{D_v}, W^{U_v}.
   */
  readonly biases: boolean;
  /** Global prompts P_τ ~ U(−promptInitScale, promptInitScale) (A13: 0.5, Prompt Tuning). */
  readonly promptInitScale: number;
  /** Std of N(0, std²) for D, U (Share/Sep), W^{·} and h_t (Global); A13: 0.01 (HyperFormer). */
  readonly hypernetInitStd: number;
  /** Backbone freezing (default false: the paper trains the whole network, spec §1.7). */
  readonly freezeBackbone: FreezeBackbone;
  /** Keep the text task prefix (A12 default: kept). */
  readonly keepTaskPrefix: boolean;
}

/** Defaults of {@link HyperPromptBaseConfig}. */
export const BASE_DEFAULTS: HyperPromptBaseConfig = {
  length: 16,
  bottleneck: 16,
  stacks: ["encoder", "decoder"],
  positionBias: "zero",
  biases: false,
  promptInitScale: 0.5,
  hypernetInitStd: 0.01,
  freezeBackbone: false,
  keepTaskPrefix: true,
};

/** Reads the shared fields (the caller reads its own and calls `r.done()`). */
export function readBaseConfig(
  r: ConfigReader,
  defaults: HyperPromptBaseConfig,
): HyperPromptBaseConfig {
  return {
    length: r.int("length", defaults.length),
    bottleneck: r.int("bottleneck", defaults.bottleneck),
    stacks: r.stacks("stacks", defaults.stacks),
    positionBias: r.oneOf("positionBias", ["zero", "relative"] as const, defaults.positionBias),
    biases: r.bool("biases", defaults.biases),
    promptInitScale: r.positive("promptInitScale", defaults.promptInitScale),
    hypernetInitStd: r.positive("hypernetInitStd", defaults.hypernetInitStd),
    freezeBackbone: r.freeze("freezeBackbone", defaults.freezeBackbone),
    keepTaskPrefix: r.bool("keepTaskPrefix", defaults.keepTaskPrefix),
  };
}

/** M: the number of conditioned blocks. */
export function conditionedBlocks(config: T5Config, stacks: readonly Stack[]): number {
  return stacks.reduce((s, st) => s + stackLayers(config, st), 0);
}

/** Global block index m of (stack, layer): encoder blocks first, over the conditioned stacks. */
export function blockIndex(
  config: T5Config,
  stacks: readonly Stack[],
  stack: Stack,
  layer: number,
): number {
  return stack === "decoder" && stacks.includes("encoder") ? config.numLayers + layer : layer;
}

/** Local HyperNetwork weights: `[d, b]`/`[b, inner]`, or batched `[u, d, b]`/`[u, b, inner]`. */
export interface LocalNet {
  readonly down: tf.Tensor;
  readonly up: tf.Tensor;
  /** `[b]` or `[u, 1, b]`. */
  readonly downBias?: tf.Tensor;
  /** `[inner]` or `[u, 1, inner]`. */
  readonly upBias?: tf.Tensor;
}

/**
 * Hyper-prompts of the present tasks: `U(ReLU(P·D))`, `[u, l, h·d_kv]` (heads side by side, the
 * layout of the attention's projected keys and values).
 *
 * @param prompts present tasks' global prompts `[u, l, d]`
 * @param net shared (2-D weights) or per-task (3-D, batched over u) local network
 * @param config the backbone (heads, d_kv)
 * @returns `[u, l, h·d_kv]`
 */
export function hyperPrompt(prompts: tf.Tensor3D, net: LocalNet, config: T5Config): tf.Tensor3D {
  const [u, l, d] = prompts.shape;
  let out: tf.Tensor;
  if (net.down.rank === 2) {
    let h = prompts.reshape([u * l, d]).matMul(net.down as tf.Tensor2D);
    if (net.downBias) h = h.add(net.downBias);
    h = h.relu().matMul(net.up as tf.Tensor2D);
    if (net.upBias) h = h.add(net.upBias);
    out = h;
  } else {
    let h: tf.Tensor = tf.matMul(prompts, net.down as tf.Tensor3D);
    if (net.downBias) h = h.add(net.downBias);
    h = tf.matMul(h.relu() as tf.Tensor3D, net.up as tf.Tensor3D);
    if (net.upBias) h = h.add(net.upBias);
    out = h;
  }
  return out.reshape([u, l, config.numHeads * config.dKv]) as tf.Tensor3D;
}

/**
 * Where HyperPrompt's trained tensors enter T5: l keys and values prepended to the
 * self-attention of every block of the conditioned stacks. Each query of a conditioned layer
 * scores l more keys (l·h·d_kv multiply-adds) and mixes l more values (same), i.e. 4·l·h·d_kv
 * FLOPs; encoder layers have `inputLength` queries, decoder layers `targetLength`. With a frozen
 * backbone the first conditioned block's q, k, v projections need no gradient (the prefix enters
 * after them). Generating the hyper-prompts (per task and block, once per step, never per token)
 * is not included.
 *
 * @param cfg the variant's shared options
 * @returns the FLOP plan
 */
export function hyperPromptFlopPlan(cfg: HyperPromptBaseConfig): FlopPlan {
  return {
    freezeBackbone: cfg.freezeBackbone,
    selfAttentionPrefix: { length: cfg.length, stacks: cfg.stacks },
  };
}
