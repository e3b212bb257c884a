/**
 * Prompt-Tuning (Lester et al. 2021; spec §2.4) and MTL-Prompt (spec §2.5): a per-task soft prompt
 * of `length` rows prepended to the embedded encoder input through the `encoderInput` hook, with
 * mask ones (prompt and tokens see each other; the decoder cross-attends to the prompt rows too).
 * Prompt-Tuning freezes the backbone; MTL-Prompt trains it.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { T5Config } from "../config.ts";
import type { T5Hooks } from "../hooks.ts";
import type { Method, MethodContext, MethodInstance } from "../method.ts";
import {
  backboneTrainable,
  ConfigReader,
  type FreezeBackbone,
  trainedBackboneParams,
} from "./_config.ts";
import { contextTasks, deriveSeed, VarPlan } from "./_init.ts";
import { checkBatch, groupTasks, rows } from "./_tensor.ts";

/** Prompt-Tuning / MTL-Prompt configuration. */
export interface PromptTuningConfig {
  /** Prompt length l (rows per task). */
  readonly length: number;
  /**
   * `"uniform"`: U(−uniformScale, uniformScale) (the official default, `uniform(scale=0.5)`);
   * `"class_label"`: row i < (number of labels) is the mean of the embeddings of label word i's
   * sub-word tokens (`MethodContext.labelTokenIds`, in label order, at most `length` labels), as
   * the official `prompts.from_embedded_list` / `from_class_labels.gin` and Lester et al. §2.2
   * do; the remaining rows are embeddings of distinct tokens drawn (seeded) from the first
   * `vocabSampleSize` ids, label sub-words excluded (unless every one of those ids is a label
   * sub-word, e.g. a tiny vocabulary: then none is excluded). Embeddings come from the table the
   * encoder uses (`encoder.embed_tokens.weight` when the checkpoint has its own, else
   * `shared.weight`).
   */
  readonly init: "uniform" | "class_label";
  /** Half-width of the uniform initialiser. */
  readonly uniformScale: number;
  /** Ids [0, vocabSampleSize) are the pool for the class-label init's extra rows (5,000 in S7). */
  readonly vocabSampleSize: number;
  /** Backbone freezing. */
  readonly freezeBackbone: FreezeBackbone;
  /** Keep the text task prefix (spec A12 default: kept). */
  readonly keepTaskPrefix: boolean;
}

/** Small deterministic PRNG (mulberry32) for index sampling. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Which token embeddings make up each row of one task's class-label prompt: row i < (number of
 * labels) is label word i's sub-word ids (the row is their mean embedding); each remaining row is
 * one token id drawn (seeded) from [0, pool), distinct and not a label sub-word while the pool
 * lasts, then with replacement. When every id of the pool is a label sub-word (a tiny vocabulary
 * or `vocabSampleSize`), the draws exclude none (the official `from_sample_of_embeddings`
 * excludes no id at all): the label rows come first, the rest repeat label tokens.
 *
 * @param labels the task's label words, each as its sub-word token ids (non-empty)
 * @param length prompt length (labels beyond it are dropped)
 * @param pool ids [0, pool) to sample the remaining rows from (an integer >= 1)
 * @param seed sampling seed
 * @returns `length` lists of token ids, one per prompt row
 */
export function classLabelRows(
  labels: readonly (readonly number[])[],
  length: number,
  pool: number,
  seed: number,
): number[][] {
  const rows = labels.slice(0, length).map((ids) => [...ids]);
  const need = length - rows.length;
  if (need > 0) {
    if (!Number.isInteger(pool) || pool < 1) {
      throw new Error(
        `prompt_tuning.ts classLabelRows: the pool of token ids [0, pool) to sample prompt rows ` +
          `from must be an integer >= 1, got ${pool}`,
      );
    }
    const taken = new Set(labels.flat());
    let candidates: number[] = [];
    for (let i = 0; i < pool; i++) if (!taken.has(i)) candidates.push(i);
    // Every id of the pool is a label sub-word: draw from all of them rather than fail.
    if (candidates.length === 0) candidates = Array.from({ length: pool }, (_, i) => i);
    const rand = mulberry32(seed);
    // Partial Fisher-Yates: distinct draws while the pool lasts, then with replacement.
    for (let k = 0; k < need; k++) {
      if (k < candidates.length) {
        const j = k + Math.floor(rand() * (candidates.length - k));
        [candidates[k], candidates[j]] = [candidates[j]!, candidates[k]!];
        rows.push([candidates[k]!]);
      } else {
        rows.push([candidates[Math.floor(rand() * candidates.length)]!]);
      }
    }
  }
  return rows;
}

/**
 * Mean embedding of each row's token ids, `[rows.length, d]`: the rows are gathered once and
 * averaged in float64, then rounded once to float32 (the official code's float32 `jnp.mean` may
 * differ in the last bit or so).
 */
function meanEmbeddings(table: tf.Tensor2D, rowIds: readonly (readonly number[])[]): tf.Tensor2D {
  if (tf.getBackend() === "webgpu") return meanEmbeddingsOnDevice(table, rowIds);
  const d = table.shape[1];
  const flat = rowIds.flat();
  const gathered = tf.tidy(() => tf.gather(table, tf.tensor1d(flat, "int32")));
  const values = gathered.dataSync();
  gathered.dispose();
  const out = new Float32Array(rowIds.length * d);
  let k = 0;
  for (const [r, ids] of rowIds.entries()) {
    for (let j = 0; j < d; j++) {
      let sum = 0;
      for (let t = 0; t < ids.length; t++) sum += values[(k + t) * d + j]!;
      out[r * d + j] = sum / ids.length;
    }
    k += ids.length;
  }
  return tf.tensor2d(out, [rowIds.length, d]);
}

/**
 * {@link meanEmbeddings} where data cannot be read back synchronously (webgpu in Deno: tfjs reads
 * GPU data synchronously through a canvas, which Deno lacks), on the device: the gathered rows
 * times a matrix of weights 1/n, in float32. Equal to the float64 mean rounded once for words of
 * one or two sub-words (weights 1 and 1/2 are exact); for n ≥ 3 within (n + 2)·2^-24·mean|x_t|
 * of it (a float32 n-term sum's error bound, plus the rounding of 1/n and of the float64 mean),
 * which is an ulp or two of the mean only where the sub-words' embeddings do not cancel.
 */
function meanEmbeddingsOnDevice(
  table: tf.Tensor2D,
  rowIds: readonly (readonly number[])[],
): tf.Tensor2D {
  const flat = rowIds.flat();
  const weights = new Float32Array(rowIds.length * flat.length);
  let k = 0;
  for (const [r, ids] of rowIds.entries()) {
    for (let t = 0; t < ids.length; t++) weights[r * flat.length + k + t] = 1 / ids.length;
    k += ids.length;
  }
  return tf.tidy(() =>
    tf.matMul(
      tf.tensor2d(weights, [rowIds.length, flat.length]),
      tf.gather(table, tf.tensor1d(flat, "int32")),
    )
  );
}

function makePromptMethod(
  name: "prompt_tuning" | "mtl_prompt",
  description: string,
  defaults: PromptTuningConfig,
): Method<PromptTuningConfig> {
  /**
   * The variable (what `create` makes, `variableShapes` states): the prompts `[T, l, d]`,
   * U(−uniformScale, uniformScale), or for the class-label init the value `classLabel` computes
   * (given by `create`, which has the backbone and label words; shapes alone need none).
   */
  const plan = (
    config: T5Config,
    cfg: PromptTuningConfig,
    numTasks: number,
    classLabel?: (shape: readonly number[]) => tf.Tensor,
  ): VarPlan => {
    const out = new VarPlan(name);
    out.add(
      "prompt",
      [numTasks, cfg.length, config.dModel],
      cfg.init === "uniform" ? { kind: "uniform", scale: cfg.uniformScale } : {
        kind: "tensor",
        value: classLabel ?? (() => {
          throw new Error(`prompt_tuning.ts: the class-label prompt is computed by create()`);
        }),
      },
    );
    return out;
  };
  return {
    name,
    description,
    defaults,
    parseConfig(raw: unknown, source: string): PromptTuningConfig {
      const r = new ConfigReader(raw, source, name);
      const cfg: PromptTuningConfig = {
        length: r.int("length", defaults.length),
        init: r.oneOf("init", ["uniform", "class_label"] as const, defaults.init),
        uniformScale: r.num("uniformScale", defaults.uniformScale),
        // Capped at the vocabulary when used, so only a bound on any id: token ids are int32.
        vocabSampleSize: r.int("vocabSampleSize", defaults.vocabSampleSize, 1, 2 ** 31 - 1),
        freezeBackbone: r.freeze("freezeBackbone", defaults.freezeBackbone),
        keepTaskPrefix: r.bool("keepTaskPrefix", defaults.keepTaskPrefix),
      };
      r.done();
      return cfg;
    },
    create(ctx: MethodContext, cfg: PromptTuningConfig): MethodInstance {
      const numTasks = contextTasks(ctx, `model/methods/prompt_tuning.ts ${name}.create`);
      let classLabel: ((shape: readonly number[]) => tf.Tensor) | undefined;
      if (cfg.init === "class_label") {
        // The table the encoder embeds its input with (t5.ts: its own table when it has one).
        const emb = (ctx.backbone.get("encoder.embed_tokens.weight") ??
          ctx.backbone.get("shared.weight")) as tf.Tensor2D | undefined;
        if (emb === undefined) {
          throw new Error(`prompt_tuning.ts: init "class_label" needs backbone "shared.weight"`);
        }
        if (ctx.labelTokenIds === undefined) {
          throw new Error(
            `prompt_tuning.ts: init "class_label" needs MethodContext.labelTokenIds (or set init "uniform")`,
          );
        }
        const pool = Math.min(cfg.vocabSampleSize, ctx.config.vocabSize);
        const rowIds = ctx.tasks.flatMap((task) => {
          const labels = ctx.labelTokenIds?.get(task);
          if (labels === undefined) {
            throw new Error(`prompt_tuning.ts: labelTokenIds has no entry for task "${task}"`);
          }
          for (const [i, ids] of labels.entries()) {
            if (ids.length === 0) {
              throw new Error(`prompt_tuning.ts: label ${i} of task "${task}" has no token ids`);
            }
            for (const id of ids) {
              if (!Number.isInteger(id) || id < 0 || id >= ctx.config.vocabSize) {
                throw new Error(
                  `prompt_tuning.ts: token id ${id} of label ${i} of task "${task}" is not in [0, ${ctx.config.vocabSize})`,
                );
              }
            }
          }
          return classLabelRows(labels, cfg.length, pool, deriveSeed(ctx.seed, `${name}.${task}`));
        });
        classLabel = (shape) => tf.tidy(() => meanEmbeddings(emb, rowIds).reshape([...shape]));
      }
      const store = plan(ctx.config, cfg, numTasks, classLabel).create(ctx.seed);
      const prompt = store.vars.get(`${name}.prompt`)!;
      return {
        name,
        variables: store.vars,
        keepTaskPrefix: cfg.keepTaskPrefix,
        isBackboneTrainable: (n) => backboneTrainable(cfg.freezeBackbone, n, ctx.config),
        hooks(taskIds: readonly number[]): T5Hooks {
          const g = groupTasks(taskIds, numTasks, `model/methods/prompt_tuning.ts ${name}`);
          const ids = [...taskIds];
          return {
            encoderInput(embeds, mask) {
              const b = embeds.shape[0];
              checkBatch(g, b);
              const p = rows(prompt, ids) as tf.Tensor3D;
              return {
                embeds: tf.concat([p, embeds], 1),
                mask: tf.concat([tf.ones([b, cfg.length]), mask], 1),
              };
            },
          };
        },
        dispose: () => store.dispose(),
      };
    },
    countParams(config: T5Config, cfg: PromptTuningConfig, numTasks: number) {
      return {
        extra: numTasks * cfg.length * config.dModel,
        trainedBackbone: trainedBackboneParams(config, cfg.freezeBackbone),
      };
    },
    variableShapes(config: T5Config, cfg: PromptTuningConfig, numTasks: number) {
      return plan(config, cfg, numTasks).shapes();
    },
    /**
     * The prompt lengthens the encoder input by l (encoder blocks and the decoder's
     * cross-attention keys/values grow); being trained, it makes every encoder matmul's input
     * need its gradient even with the backbone frozen.
     */
    flopPlan(_config: T5Config, cfg: PromptTuningConfig) {
      return { freezeBackbone: cfg.freezeBackbone, encoderPrompt: cfg.length };
    },
  };
}

/**
 * Prompt-Tuning: per-task soft input prompts, frozen backbone. Defaults follow spec A15 (Lester
 * defaults): length 100, class-label init.
 *
 * @example
 * ```ts
 * import { promptTuning } from "./prompt_tuning.ts";
 * console.assert(promptTuning.defaults.freezeBackbone === "all");
 * ```
 */
export const promptTuning: Method<PromptTuningConfig> = makePromptMethod(
  "prompt_tuning",
  "Prompt-Tuning: per-task soft input prompts, backbone frozen",
  {
    length: 100,
    init: "class_label",
    uniformScale: 0.5,
    vocabSampleSize: 5000,
    freezeBackbone: "all",
    keepTaskPrefix: true,
  },
);

/**
 * MTL-Prompt (spec §2.5): MTL plus per-task soft input prompts, whole model trained; length 16
 * (the HyperPrompt default l) and uniform(0.5) init.
 *
 * @example
 * ```ts
 * import { mtlPrompt } from "./prompt_tuning.ts";
 * console.assert(mtlPrompt.defaults.freezeBackbone === false);
 * ```
 */
export const mtlPrompt: Method<PromptTuningConfig> = makePromptMethod(
  "mtl_prompt",
  "MTL-Prompt: per-task soft input prompts with the whole model trained",
  {
    length: 16,
    init: "uniform",
    uniformScale: 0.5,
    vocabSampleSize: 5000,
    freezeBackbone: false,
    keepTaskPrefix: true,
  },
);
