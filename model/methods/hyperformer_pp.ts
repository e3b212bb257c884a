/**
 * HyperFormer++ (Karimi Mahabadi et al., ACL 2021), exactly as in the official code (spec §2.3):
 * task-conditioned adapters on the self-attention and feed-forward sublayer outputs of every
 * encoder and decoder block, `adapter(y) = LN_cond(up(gelu_new(down(y)))) + y`, whose weights,
 * biases and LayerNorm γ, β are generated per (task, layer, position) by one hypernetwork
 * controller per stack from `[task emb; layer-id emb; position emb]` through a task projector
 * Linear(3t' → e) → ReLU → Linear(e → t) → LayerNorm(t). Task embeddings are shared by the stacks.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
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
import { addTaskProjector, contextTasks, VarPlan } from "./_init.ts";
import { groupTasks, layerNorm, rows, taskAdapters } from "./_tensor.ts";
import { bottleneck } from "./adapter.ts";

/** HyperFormer++ configuration (defaults: S6's `hyperformer++.json`). */
export interface HyperFormerPPConfig {
  /** Reduction factor r; adapter bottleneck a = floor(d / r). */
  readonly reduction: number;
  /** Task / layer-id / position embedding width t' (64). */
  readonly taskEmbeddingDim: number;
  /** Task projector hidden width e (128). */
  readonly hiddenDim: number;
  /** Projected (generator input) width t (64). */
  readonly projectedDim: number;
  /** LayerNorm(t) after the task projector (`unique_hyper_net_layer_norm`, true). */
  readonly projectorLayerNorm: boolean;
  /** Generated post-adapter LayerNorm (`conditional_layer_norm`, true). */
  readonly conditionalLayerNorm: boolean;
  /** Std of the N(0, std²) init of every Linear weight (biases zero); 0.01 in S6. */
  readonly initStd: number;
  /** Std of the task / layer-id / position embeddings (N(0, 1), `torch.randn`). */
  readonly embeddingStd: number;
  /**
   * Backbone freezing: the original setting is `"except_layer_norms"`; HyperPrompt's main and
   * ablation tables train everything (spec A16), hence the default `false`.
   */
  readonly freezeBackbone: FreezeBackbone;
  /** Keep the text task prefix (spec A12 default: kept; HyperFormer itself drops it). */
  readonly keepTaskPrefix: boolean;
}

const DEFAULTS: HyperFormerPPConfig = {
  reduction: 32,
  taskEmbeddingDim: 64,
  hiddenDim: 128,
  projectedDim: 64,
  projectorLayerNorm: true,
  conditionalLayerNorm: true,
  initStd: 0.01,
  embeddingStd: 1,
  freezeBackbone: false,
  keepTaskPrefix: true,
};

const STACKS: readonly Stack[] = ["encoder", "decoder"];
/**
 * Epsilon of the LayerNorm after the task projector: S6 builds it as
 * `nn.LayerNorm(t, eps=self.layer_norm_epsilon)` with `layer_norm_epsilon = 1e-6`
 * (`AdapterLayersOneHyperNetController`). It matters: at initialisation the projector's outputs
 * have a variance of about 1e-4. The conditional post-adapter LayerNorm is `F.layer_norm` with
 * PyTorch's default 1e-5.
 */
const PROJECTOR_LAYER_NORM_EPS = 1e-6;
/** Position embedding rows: 0 feed-forward, 1 self-attention (S6 order). */
const POSITION_ROW: Record<"feed_forward" | "self_attention", number> = {
  feed_forward: 0,
  self_attention: 1,
};

/** Generator outputs: name → width, for d and a. */
function generators(
  d: number,
  a: number,
  cfg: HyperFormerPPConfig,
): [string, number][] {
  const g: [string, number][] = [
    ["up_weight", d * a],
    ["up_bias", d],
    ["down_weight", a * d],
    ["down_bias", a],
  ];
  if (cfg.conditionalLayerNorm) g.push(["ln_gamma", d], ["ln_beta", d]);
  return g;
}

/**
 * The variables (what `create` makes, `variableShapes` states): the task embeddings, and per
 * stack the layer-id and position embeddings N(0, embeddingStd²), the task projector and the
 * generators (weights N(0, initStd²), biases zero, LayerNorm γ one, β zero).
 */
function plan(config: T5Config, cfg: HyperFormerPPConfig, numTasks: number): VarPlan {
  const d = config.dModel;
  const a = bottleneck(config, cfg.reduction);
  const { taskEmbeddingDim: te, hiddenDim: e, projectedDim: t } = cfg;
  const out = new VarPlan("hyperformer_pp");
  const emb = { kind: "normal", std: cfg.embeddingStd } as const;
  const w = { kind: "normal", std: cfg.initStd } as const;
  const zeros = { kind: "zeros" } as const;
  out.add("task_embedding", [numTasks, te], emb);
  for (const s of STACKS) {
    out.add(`${s}.layer_embedding`, [stackLayers(config, s), te], emb);
    out.add(`${s}.position_embedding`, [2, te], emb);
    addTaskProjector(out, `${s}.projector`, [3 * te, e, t], cfg.projectorLayerNorm, w);
    for (const [g, width] of generators(d, a, cfg)) {
      out.add(`${s}.${g}.weight`, [t, width], w);
      out.add(`${s}.${g}.bias`, [width], zeros);
    }
  }
  return out;
}

/**
 * The HyperFormer++ method.
 *
 * @example
 * ```ts
 * import { hyperformerPP } from "./hyperformer_pp.ts";
 * import { PRESETS } from "../config.ts";
 * const { extra } = hyperformerPP.countParams(PRESETS["t5-base"], hyperformerPP.defaults, 8);
 * console.assert(extra === 5_163_440);
 * ```
 */
export const hyperformerPP: Method<HyperFormerPPConfig> = {
  name: "hyperformer_pp",
  description:
    "HyperFormer++: adapters and conditional LayerNorms generated by a shared hypernetwork",
  defaults: DEFAULTS,
  parseConfig(raw: unknown, source: string): HyperFormerPPConfig {
    const r = new ConfigReader(raw, source, "hyperformer_pp");
    const cfg: HyperFormerPPConfig = {
      reduction: r.int("reduction", DEFAULTS.reduction),
      taskEmbeddingDim: r.int("taskEmbeddingDim", DEFAULTS.taskEmbeddingDim),
      hiddenDim: r.int("hiddenDim", DEFAULTS.hiddenDim),
      projectedDim: r.int("projectedDim", DEFAULTS.projectedDim),
      projectorLayerNorm: r.bool("projectorLayerNorm", DEFAULTS.projectorLayerNorm),
      conditionalLayerNorm: r.bool("conditionalLayerNorm", DEFAULTS.conditionalLayerNorm),
      initStd: r.positive("initStd", DEFAULTS.initStd),
      embeddingStd: r.positive("embeddingStd", DEFAULTS.embeddingStd),
      freezeBackbone: r.freeze("freezeBackbone", DEFAULTS.freezeBackbone),
      keepTaskPrefix: r.bool("keepTaskPrefix", DEFAULTS.keepTaskPrefix),
    };
    r.done();
    return cfg;
  },
  create(ctx: MethodContext, cfg: HyperFormerPPConfig): MethodInstance {
    const d = ctx.config.dModel;
    const a = bottleneck(ctx.config, cfg.reduction);
    const numTasks = contextTasks(ctx, "model/methods/hyperformer_pp.ts hyperformer_pp.create");
    const store = plan(ctx.config, cfg, numTasks).create(ctx.seed);
    const v = (n: string) => store.vars.get(`hyperformer_pp.${n}`)!;

    /** Generated adapter parameters for the present tasks: name → [u, width]. */
    function generate(
      tasks: readonly number[],
      stack: Stack,
      layer: number,
      pos: "feed_forward" | "self_attention",
    ): Map<string, tf.Tensor2D> {
      const u = tasks.length;
      const taskEmb = rows(v("task_embedding"), tasks) as tf.Tensor2D;
      const layerEmb = rows(v(`${stack}.layer_embedding`), [layer]).tile([u, 1]);
      const posEmb = rows(v(`${stack}.position_embedding`), [POSITION_ROW[pos]]).tile([u, 1]);
      const p = `${stack}.projector`;
      let z = tf.concat([taskEmb, layerEmb, posEmb], 1)
        .matMul(v(`${p}.fc1.weight`)).add(v(`${p}.fc1.bias`)).relu()
        .matMul(v(`${p}.fc2.weight`)).add(v(`${p}.fc2.bias`)) as tf.Tensor2D;
      if (cfg.projectorLayerNorm) {
        z = layerNorm(
          z,
          v(`${p}.layer_norm.weight`),
          v(`${p}.layer_norm.bias`),
          PROJECTOR_LAYER_NORM_EPS,
        );
      }
      const out = new Map<string, tf.Tensor2D>();
      for (const [g] of generators(d, a, cfg)) {
        out.set(g, z.matMul(v(`${stack}.${g}.weight`)).add(v(`${stack}.${g}.bias`)));
      }
      return out;
    }

    return {
      name: "hyperformer_pp",
      variables: store.vars,
      keepTaskPrefix: cfg.keepTaskPrefix,
      isBackboneTrainable: (n) => backboneTrainable(cfg.freezeBackbone, n, ctx.config),
      hooks(taskIds: readonly number[]): T5Hooks {
        const grp = groupTasks(taskIds, numTasks, "model/methods/hyperformer_pp.ts");
        return {
          afterSublayer(stack: Stack, layer: number, sublayer: Sublayer, y: tf.Tensor3D) {
            if (sublayer === "cross_attention") return y;
            const gen = generate(grp.tasks, stack, layer, sublayer);
            const u = grp.tasks.length;
            const gg = (name: string) => gen.get(name)!;
            return taskAdapters(y, grp, {
              downWeight: gg("down_weight").reshape([u, d, a]),
              downBias: gg("down_bias"),
              upWeight: gg("up_weight").reshape([u, a, d]),
              upBias: gg("up_bias"),
              ...(cfg.conditionalLayerNorm
                ? { layerNorm: { gamma: gg("ln_gamma"), beta: gg("ln_beta") } }
                : {}),
            });
          },
        };
      },
      dispose: () => store.dispose(),
    };
  },
  /**
   * Spec §5.3: per stack L·t' + 2t' + (3t'·e + e) + (e·t + t) [+ 2t projector LN]
   * + (t·d·a + d·a) + (t·d + d) + (t·a·d + a·d) + (t·a + a) [+ 2(t·d + d) conditional LN];
   * total = Σ stacks + T·t'.
   */
  countParams(config: T5Config, cfg: HyperFormerPPConfig, numTasks: number) {
    const d = config.dModel;
    const a = bottleneck(config, cfg.reduction);
    const { taskEmbeddingDim: te, hiddenDim: e, projectedDim: t } = cfg;
    let extra = numTasks * te;
    for (const s of STACKS) {
      extra += stackLayers(config, s) * te + 2 * te;
      extra += 3 * te * e + e + e * t + t + (cfg.projectorLayerNorm ? 2 * t : 0);
      for (const [, width] of generators(d, a, cfg)) extra += t * width + width;
    }
    return {
      extra,
      trainedBackbone: trainedBackboneParams(config, cfg.freezeBackbone),
    };
  },
  variableShapes(config: T5Config, cfg: HyperFormerPPConfig, numTasks: number) {
    return plan(config, cfg, numTasks).shapes();
  },
  /**
   * Two adapters in every block of both stacks (after self-attention and feed-forward): per token
   * down d·a + up a·d multiply-adds = 4·d·a FLOPs each. Their weights are generated from trained
   * parameters, so the backward pass runs their gradients. The hypernetwork generation runs once
   * per (task, layer, position) per step, not per example, and is not included. Nor are the
   * multiply-by-zero blocks of a mixed-task batch's masked matmuls (`taskAdapters`,
   * model/methods/_tensor.ts): the implementation's, not the method's.
   */
  flopPlan(config: T5Config, cfg: HyperFormerPPConfig) {
    return {
      freezeBackbone: cfg.freezeBackbone,
      adapters: {
        bottleneck: bottleneck(config, cfg.reduction),
        stacks: ["encoder", "decoder"] as const,
        positions: ["self_attention", "feed_forward"] as const,
      },
    };
  },
};
