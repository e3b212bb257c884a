/**
 * Vanilla Adapter (spec §2.2, default reading A17): task-specific Houlsby-style bottleneck adapters
 * on the self-attention and feed-forward sublayer outputs of every encoder and decoder block
 * (`afterSublayer` hook, before dropout and the residual):
 * `adapter(y) = LN(up(gelu_new(down(y)))) + y`, with down d → d/r and up d/r → d (both with bias)
 * and an optional post-adapter LayerNorm (γ, β). As in S6's `AdapterController`, the adapters are
 * per task and the LayerNorm of each adapter position is shared by the tasks (`layerNorm:
 * "shared"`, default); `"per_task"` gives each task its own γ, β (the only reading before
 * 2026-11-27, when it was called `"post"`, still accepted). Backbone trained by default.
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs";
import type { T5Config } from "../config.ts";
import type { Stack, Sublayer, T5Hooks } from "../hooks.ts";
import type { Method, MethodContext, MethodInstance } from "../method.ts";
import {
  backboneTrainable,
  ConfigReader,
  type FreezeBackbone,
  stackLayers,
  trainedBackboneParams,
} from "./_config.ts";
import { contextTasks, VarPlan } from "./_init.ts";
import { groupTasks, presentTasks, taskAdapters } from "./_tensor.ts";

/** Sublayers that can carry an adapter. */
export type AdapterPosition = "self_attention" | "feed_forward";

/** Vanilla Adapter configuration. */
export interface AdapterConfig {
  /** Reduction factor r; bottleneck a = floor(d / r) (32 as in HyperFormer's default config). */
  readonly reduction: number;
  /**
   * Post-adapter LayerNorm with learned γ, β: one per adapter position shared by the tasks
   * ("shared", default, S6's `AdapterController`), one per task and position ("per_task"), or
   * none.
   */
  readonly layerNorm: AdapterLayerNorm;
  /** Sublayers with adapters (default both). */
  readonly positions: readonly AdapterPosition[];
  /** Stacks with adapters (default both). */
  readonly stacks: readonly Stack[];
  /** Std of the N(0, std²) weight init (biases 0, γ 1, β 0). */
  readonly initStd: number;
  /** Backbone freezing (default false, as MTL and HyperPrompt). */
  readonly freezeBackbone: FreezeBackbone;
  /** Keep the text task prefix (spec A12 default). */
  readonly keepTaskPrefix: boolean;
}

const DEFAULTS: AdapterConfig = {
  reduction: 32,
  layerNorm: "shared",
  positions: ["self_attention", "feed_forward"],
  stacks: ["encoder", "decoder"],
  initStd: 0.01,
  freezeBackbone: false,
  keepTaskPrefix: true,
};

/** Where the post-adapter LayerNorm's γ, β live (see {@link AdapterConfig.layerNorm}). */
export type AdapterLayerNorm = "shared" | "per_task" | "none";

/** Accepted values of `layerNorm`: {@link AdapterLayerNorm}, and "post", the old "per_task". */
const LAYER_NORMS = ["shared", "per_task", "none", "post"] as const;

function parseLayerNorm(v: (typeof LAYER_NORMS)[number]): AdapterLayerNorm {
  return v === "post" ? "per_task" : v;
}

/** The `positions` field (absent: both; `null` or anything else but a valid list is an error). */
function parsePositions(raw: unknown, source: string): AdapterPosition[] {
  if (raw === undefined) return [...DEFAULTS.positions];
  const ok = Array.isArray(raw) && raw.length > 0 &&
    raw.every((p) => p === "self_attention" || p === "feed_forward") &&
    new Set(raw).size === raw.length;
  if (!ok) {
    throw new Error(
      `${source}: adapter config field "positions" must be a non-empty list of distinct "self_attention", "feed_forward", got ${
        JSON.stringify(raw)
      }`,
    );
  }
  return [...raw] as AdapterPosition[];
}

/**
 * What is wrong with a reduction factor r at model width d (undefined: nothing), worded to follow
 * "reduction r" in a message: the bottleneck floor(d / r) must be at least 1, i.e. r <= d.
 * Adapter and HyperFormer++ share it; a profile checks it against each preset model of its grid
 * before anything runs.
 *
 * @param dModel the model width d
 * @param reduction the reduction factor r (an integer >= 1, as `parseConfig` reads it)
 * @returns the problem, in words, or undefined
 * @example
 * ```ts
 * import { reductionProblem } from "./adapter.ts";
 * console.assert(reductionProblem(64, 64) === undefined);
 * console.assert(reductionProblem(64, 65)!.includes("at most 64"));
 * ```
 */
export function reductionProblem(dModel: number, reduction: number): string | undefined {
  if (Math.floor(dModel / reduction) >= 1) return undefined;
  return `leaves no bottleneck for d ${dModel} ` +
    `(floor(${dModel} / ${reduction}) = 0; the reduction must be at most ${dModel})`;
}

/** Bottleneck width a = floor(d / r); throws when that is 0 ({@link reductionProblem}). */
export function bottleneck(config: T5Config, reduction: number): number {
  const problem = reductionProblem(config.dModel, reduction);
  if (problem !== undefined) throw new Error(`adapter.ts: reduction ${reduction} ${problem}`);
  return Math.floor(config.dModel / reduction);
}

/**
 * The variables (what `create` makes, `variableShapes` states): per adapter position, per-task
 * down/up weights N(0, initStd²) and zero biases, and the LayerNorm's γ one, β zero.
 */
function plan(config: T5Config, cfg: AdapterConfig, numTasks: number): VarPlan {
  const d = config.dModel;
  const a = bottleneck(config, cfg.reduction);
  const out = new VarPlan("adapter");
  const w = { kind: "normal", std: cfg.initStd } as const;
  for (const stack of cfg.stacks) {
    for (let layer = 0; layer < stackLayers(config, stack); layer++) {
      for (const pos of cfg.positions) {
        const p = `${stack}.${layer}.${pos}`;
        out.add(`${p}.down.weight`, [numTasks, d, a], w);
        out.add(`${p}.down.bias`, [numTasks, a], { kind: "zeros" });
        out.add(`${p}.up.weight`, [numTasks, a, d], w);
        out.add(`${p}.up.bias`, [numTasks, d], { kind: "zeros" });
        if (cfg.layerNorm !== "none") {
          const shape = cfg.layerNorm === "shared" ? [d] : [numTasks, d];
          out.add(`${p}.layer_norm.weight`, shape, { kind: "ones" });
          out.add(`${p}.layer_norm.bias`, shape, { kind: "zeros" });
        }
      }
    }
  }
  return out;
}

/**
 * The Vanilla Adapter method.
 *
 * @example
 * ```ts
 * import { adapter } from "./adapter.ts";
 * import { PRESETS } from "../config.ts";
 * const n = adapter.countParams(PRESETS["tiny-v1_1"], adapter.defaults, 2).extra;
 * console.assert(n > 0);
 * ```
 */
export const adapter: Method<AdapterConfig> = {
  name: "adapter",
  description: "Vanilla Adapter: task-specific bottleneck adapters after attention and FFN",
  defaults: DEFAULTS,
  parseConfig(raw: unknown, source: string): AdapterConfig {
    const r = new ConfigReader(raw, source, "adapter");
    const cfg: AdapterConfig = {
      reduction: r.int("reduction", DEFAULTS.reduction),
      layerNorm: parseLayerNorm(r.oneOf("layerNorm", LAYER_NORMS, DEFAULTS.layerNorm)),
      positions: parsePositions(r.raw("positions"), source),
      stacks: r.stacks("stacks", DEFAULTS.stacks),
      initStd: r.positive("initStd", DEFAULTS.initStd),
      freezeBackbone: r.freeze("freezeBackbone", DEFAULTS.freezeBackbone),
      keepTaskPrefix: r.bool("keepTaskPrefix", DEFAULTS.keepTaskPrefix),
    };
    r.done();
    return cfg;
  },
  create(ctx: MethodContext, cfg: AdapterConfig): MethodInstance {
    const numTasks = contextTasks(ctx, "model/methods/adapter.ts adapter.create");
    const store = plan(ctx.config, cfg, numTasks).create(ctx.seed);
    const get = (n: string) => store.vars.get(`adapter.${n}`)!;
    return {
      name: "adapter",
      variables: store.vars,
      keepTaskPrefix: cfg.keepTaskPrefix,
      isBackboneTrainable: (n) => backboneTrainable(cfg.freezeBackbone, n, ctx.config),
      hooks(taskIds: readonly number[]): T5Hooks {
        const g = groupTasks(taskIds, numTasks, "model/methods/adapter.ts");
        return {
          afterSublayer(stack: Stack, layer: number, sublayer: Sublayer, y: tf.Tensor3D) {
            if (!cfg.stacks.includes(stack)) return y;
            if (sublayer === "cross_attention" || !cfg.positions.includes(sublayer)) return y;
            const p = `${stack}.${layer}.${sublayer}`;
            const ln = (n: string) =>
              cfg.layerNorm === "shared" ? get(`${p}.${n}`) : presentTasks(get(`${p}.${n}`), g);
            return taskAdapters(y, g, {
              downWeight: presentTasks(get(`${p}.down.weight`), g),
              downBias: presentTasks(get(`${p}.down.bias`), g),
              upWeight: presentTasks(get(`${p}.up.weight`), g),
              upBias: presentTasks(get(`${p}.up.bias`), g),
              ...(cfg.layerNorm === "none"
                ? {}
                : { layerNorm: { gamma: ln("layer_norm.weight"), beta: ln("layer_norm.bias") } }),
            });
          },
        };
      },
      dispose: () => store.dispose(),
    };
  },
  countParams(config: T5Config, cfg: AdapterConfig, numTasks: number) {
    const d = config.dModel;
    const a = bottleneck(config, cfg.reduction);
    // Per task and position: the adapter, and its LayerNorm where each task has its own; a
    // shared LayerNorm counts once per position.
    const perTask = d * a + a + a * d + d + (cfg.layerNorm === "per_task" ? 2 * d : 0);
    const shared = cfg.layerNorm === "shared" ? 2 * d : 0;
    const blocks = cfg.stacks.reduce((s, st) => s + stackLayers(config, st), 0);
    return {
      extra: blocks * cfg.positions.length * (numTasks * perTask + shared),
      trainedBackbone: trainedBackboneParams(config, cfg.freezeBackbone),
    };
  },
  variableShapes(config: T5Config, cfg: AdapterConfig, numTasks: number) {
    return plan(config, cfg, numTasks).shapes();
  },
  /**
   * An adapter after each of `positions` in every block of `stacks`: per token down d·a and up
   * a·d multiply-adds = 4·d·a FLOPs. Its weights are trained, so the backward pass runs their
   * gradients; its input's gradient only where the sublayer output depends on a trained tensor
   * (with a frozen backbone, not at the first adapter). The method's FLOPs: the multiply-by-zero
   * blocks of a mixed-task batch's masked matmuls (`taskAdapters`, model/methods/_tensor.ts)
   * are the implementation's, not counted.
   */
  flopPlan(config: T5Config, cfg: AdapterConfig) {
    return {
      freezeBackbone: cfg.freezeBackbone,
      adapters: {
        bottleneck: bottleneck(config, cfg.reduction),
        stacks: cfg.stacks,
        positions: cfg.positions,
      },
    };
  },
};
