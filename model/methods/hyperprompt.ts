/**
 * HyperPrompt-Share and HyperPrompt-Sep (spec §1.4): one global prompt P_τ ∈ R^{l×d} per task,
 * mapped at every conditioned block m by local HyperNetworks to key and value hyper-prompts
 * P^K = U_k(ReLU(D_k(P_τ))), P^V = U_v(ReLU(D_v(P_τ))), prepended to the projected keys and
 * values of self-attention through the `selfAttentionPrefix` hook. Share: D, U per block, shared
 * by the tasks. Sep: D, U per task per block.
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs";
import type { T5Config } from "../config.ts";
import type { Stack, T5Hooks } from "../hooks.ts";
import type { Method, MethodContext, MethodInstance } from "../method.ts";
import {
  backboneTrainable,
  ConfigReader,
  innerDim,
  stackLayers,
  trainedBackboneParams,
} from "./_config.ts";
import { contextTasks, VarPlan } from "./_init.ts";
import { checkBatch, groupTasks, presentTasks, toBatch } from "./_tensor.ts";
import {
  BASE_DEFAULTS,
  conditionedBlocks,
  hyperPrompt,
  type HyperPromptBaseConfig,
  hyperPromptFlopPlan,
  type LocalNet,
  readBaseConfig,
} from "./_hyperprompt.ts";

/** HyperPrompt-Share / -Sep configuration (the shared options only). */
export type HyperPromptLocalConfig = HyperPromptBaseConfig;

function makeLocal(kind: "share" | "sep"): Method<HyperPromptLocalConfig> {
  const name = `hyperprompt_${kind}`;
  const sep = kind === "sep";
  /**
   * The variables (what `create` makes, `variableShapes` states): the global prompts
   * U(−promptInitScale, promptInitScale), and per conditioned block the key and value local
   * networks D, U N(0, hypernetInitStd²) (per task for Sep) with zero biases.
   */
  const plan = (config: T5Config, cfg: HyperPromptLocalConfig, numTasks: number): VarPlan => {
    const d = config.dModel;
    const inner = innerDim(config);
    const b = cfg.bottleneck;
    const lead = sep ? [numTasks] : [];
    const w = { kind: "normal", std: cfg.hypernetInitStd } as const;
    const out = new VarPlan(name);
    out.add("prompts", [numTasks, cfg.length, d], { kind: "uniform", scale: cfg.promptInitScale });
    for (const stack of cfg.stacks) {
      for (let layer = 0; layer < stackLayers(config, stack); layer++) {
        for (const kv of ["key", "value"]) {
          const p = `${stack}.${layer}.${kv}`;
          out.add(`${p}.down`, [...lead, d, b], w);
          out.add(`${p}.up`, [...lead, b, inner], w);
          if (cfg.biases) {
            out.add(`${p}.down_bias`, sep ? [numTasks, 1, b] : [b], { kind: "zeros" });
            out.add(`${p}.up_bias`, sep ? [numTasks, 1, inner] : [inner], { kind: "zeros" });
          }
        }
      }
    }
    return out;
  };
  return {
    name,
    description: sep
      ? "HyperPrompt-Sep: global task prompts, per-task local hypernetworks per block"
      : "HyperPrompt-Share: global task prompts, local hypernetworks per block shared by tasks",
    defaults: BASE_DEFAULTS,
    parseConfig(raw: unknown, source: string): HyperPromptLocalConfig {
      const r = new ConfigReader(raw, source, name);
      const cfg = readBaseConfig(r, BASE_DEFAULTS);
      r.done();
      return cfg;
    },
    create(ctx: MethodContext, cfg: HyperPromptLocalConfig): MethodInstance {
      const config = ctx.config;
      const numTasks = contextTasks(ctx, `model/methods/hyperprompt.ts ${name}.create`);
      const store = plan(config, cfg, numTasks).create(ctx.seed);
      const prompts = store.vars.get(`${name}.prompts`)!;
      const v = (n: string) => store.vars.get(`${name}.${n}`);
      return {
        name,
        variables: store.vars,
        keepTaskPrefix: cfg.keepTaskPrefix,
        isBackboneTrainable: (n) => backboneTrainable(cfg.freezeBackbone, n, ctx.config),
        hooks(taskIds: readonly number[]): T5Hooks {
          const g = groupTasks(taskIds, numTasks, `model/methods/hyperprompt.ts ${name}`);
          return {
            selfAttentionPrefix(stack: Stack, layer: number, batch: number) {
              checkBatch(g, batch);
              if (!cfg.stacks.includes(stack)) return undefined;
              const pick = (t: tf.Tensor | undefined) =>
                t === undefined ? undefined : sep ? presentTasks(t, g) : t;
              const net = (kv: string): LocalNet => {
                const p = `${stack}.${layer}.${kv}`;
                const downBias = pick(v(`${p}.down_bias`));
                const upBias = pick(v(`${p}.up_bias`));
                return {
                  down: pick(v(`${p}.down`))!,
                  up: pick(v(`${p}.up`))!,
                  ...(downBias ? { downBias } : {}),
                  ...(upBias ? { upBias } : {}),
                };
              };
              const pu = presentTasks(prompts, g) as tf.Tensor3D;
              return {
                key: toBatch(hyperPrompt(pu, net("key"), config), g),
                value: toBatch(hyperPrompt(pu, net("value"), config), g),
                positionBias: cfg.positionBias,
              };
            },
          };
        },
        dispose: () => store.dispose(),
      };
    },
    /**
     * Spec §5.4: G = T·l·d global prompts; Share adds 2·M·(d·b + b·h·d_kv) (= 4·M·b·d when
     * h·d_kv = d), Sep T times that; biases add 2·(b + h·d_kv) per block (and task).
     */
    countParams(config: T5Config, cfg: HyperPromptLocalConfig, numTasks: number) {
      const inner = innerDim(config);
      const b = cfg.bottleneck;
      const perBlock = 2 * (config.dModel * b + b * inner) + (cfg.biases ? 2 * (b + inner) : 0);
      const m = conditionedBlocks(config, cfg.stacks);
      return {
        extra: numTasks * cfg.length * config.dModel + (sep ? numTasks : 1) * m * perBlock,
        trainedBackbone: trainedBackboneParams(config, cfg.freezeBackbone),
      };
    },
    variableShapes(config: T5Config, cfg: HyperPromptLocalConfig, numTasks: number) {
      return plan(config, cfg, numTasks).shapes();
    },
    flopPlan(_config: T5Config, cfg: HyperPromptLocalConfig) {
      return hyperPromptFlopPlan(cfg);
    },
  };
}

/**
 * HyperPrompt-Share.
 *
 * @example
 * ```ts
 * import { hyperpromptShare } from "./hyperprompt.ts";
 * console.assert(hyperpromptShare.defaults.length === 16);
 * ```
 */
export const hyperpromptShare: Method<HyperPromptLocalConfig> = makeLocal("share");

/**
 * HyperPrompt-Sep.
 *
 * @example
 * ```ts
 * import { hyperpromptSep } from "./hyperprompt.ts";
 * console.assert(hyperpromptSep.name === "hyperprompt_sep");
 * ```
 */
export const hyperpromptSep: Method<HyperPromptLocalConfig> = makeLocal("sep");
