/**
 * Registry of the multi-task methods compared in the benchmark.
 *
 * Adding a method (`mtl.ts` is the smallest example, `adapter.ts` one with per-task variables):
 * 1. one file in this folder exporting a {@link Method} (`model/method.ts`), using the helpers
 *    this module re-exports (so they are importable from the package's `mod.ts` too): parse its
 *    config with `ConfigReader` (`_config.ts`: unknown and malformed fields are errors naming the
 *    profile file and the field's line), list its variables once as a `VarPlan` (`_init.ts`:
 *    name, shape and initialiser, seeded per name) whose `shapes()` is its `variableShapes`
 *    (the memory estimate's update phase) and whose `create(seed)` makes them in `create`, so
 *    the two cannot disagree, reach T5 only through the hooks of `model/hooks.ts` (`_tensor.ts`
 *    `groupTasks`, `rows` for per-task rows of a mixed batch), and describe its FLOPs with
 *    `flopPlan` (`model/accounting.ts` `FlopPlan`: an encoder prompt, a self-attention prefix,
 *    a bottleneck adapter, or trained tensors combined elementwise after a sublayer, with the
 *    `op` that combines them, `"add"` or `"mul"`, for the memory estimate);
 * 2. one line in {@link METHODS} below (and its types in the exports): the profile validator
 *    (`benchmarks/spec.ts` `METHOD_NAMES`) takes the names from here, and a method outside
 *    `BUILTIN_METHOD_NAMES` (table order) sorts after the built-ins in the tables;
 * 3. its test settings: `SMALL` in `methods_test.ts` (the contract tests: counts equal the
 *    variables, a step trains exactly the trained variables, tasks condition the output,
 *    mixed batches equal per-task ones, no leaks, the loss falls; the stated shapes equal the
 *    created variables) and its cases in `accounting_test.ts` (FLOPs equal the matmuls tfjs
 *    runs); both are typed by {@link MethodName}, so the type check names what is missing;
 * 4. an entry in `benchmarks/profiles/smoke.json` (`benchmarks/profile_test.ts` requires every
 *    registered method there). The CI gate's profile `ci.json` must list the built-in methods
 *    only: adding the new one there changes the gate's grid, so `results/baselines/ci` must then
 *    be regenerated as `benchmarks/README.md` describes (`baseline_test.ts` checks it covers
 *    the grid).
 * A profile then names it in `methods` (`{ "name": "<key>", "config": {…} }`), and the tables
 * list it (the analytic parameter and FLOP rows cover every method at its defaults). The
 * README's "Adding a method or a task" walks through trying one.
 *
 * @module
 */
import type { Method } from "../method.ts";
import { adapter } from "./adapter.ts";
import { hyperformerPP } from "./hyperformer_pp.ts";
import { hyperpromptSep, hyperpromptShare } from "./hyperprompt.ts";
import { hyperpromptGlobal } from "./hyperprompt_global.ts";
import { mtl } from "./mtl.ts";
import { mtlPrompt, promptTuning } from "./prompt_tuning.ts";

export type { FreezeBackbone } from "./_config.ts";

// The method-author helpers the steps above name, re-exported so that they reach the package's
// `mod.ts` (the only entry of deno.json's exports). Each keeps its own documentation.

/** Reads a method's JSON config field by field (`_config.ts`); unknown keys are an error. */
export { ConfigReader } from "./_config.ts";
/** The largest size field {@link ConfigReader} `int` accepts by default (`_config.ts`). */
export { MAX_SIZE_FIELD } from "./_config.ts";
/** Whether a backbone weight is trained under a {@link FreezeBackbone} option (`_config.ts`). */
export { backboneTrainable } from "./_config.ts";
/** Trained backbone parameters under a {@link FreezeBackbone} option (`_config.ts`). */
export { trainedBackboneParams } from "./_config.ts";
/** Number of T5 LayerNorm scale parameters of a backbone (`_config.ts`). */
export { t5LayerNormParams } from "./_config.ts";
/** Layers of the encoder or decoder stack (`_config.ts`). */
export { stackLayers } from "./_config.ts";
/** Attention inner width heads·d_kv (`_config.ts`). */
export { innerDim } from "./_config.ts";
/** A method's task count from its `create` context, refusing an empty task list (`_init.ts`). */
export { contextTasks } from "./_init.ts";
/** Seed of one variable, derived from the method seed and its name (`_init.ts`). */
export { deriveSeed } from "./_init.ts";
/** A method's variables listed once: `shapes()` for `variableShapes`, `create` (`_init.ts`). */
export { VarPlan } from "./_init.ts";
/** The variables a {@link VarPlan} creates, by full name (`_init.ts`). */
export { VarStore } from "./_init.ts";
/** One variable of a {@link VarPlan} and how it is initialised (`_init.ts`). */
export type { Init, VarSpec } from "./_init.ts";
/** Groups a batch's examples by task id, as a method's `hooks(taskIds)` does (`_tensor.ts`). */
export { groupTasks } from "./_tensor.ts";
/** How a batch's examples split into tasks (`_tensor.ts`). */
export type { TaskGrouping } from "./_tensor.ts";
/** Refuses a hook's batch whose size differs from the task ids of `hooks()` (`_tensor.ts`). */
export { checkBatch } from "./_tensor.ts";
/** Rows of a table on axis 0, differentiable on every backend (`_tensor.ts`). */
export { rows } from "./_tensor.ts";
/** Rows of the tasks present in a batch from a per-task stack (`_tensor.ts`). */
export { presentTasks } from "./_tensor.ts";
/** Per-task rows expanded to the batch, one row per example (`_tensor.ts`). */
export { toBatch } from "./_tensor.ts";

/** Parameter and FLOP accounting of a method, registered (by key) or not (`accounting.ts`). */
export { methodAccounting } from "./accounting.ts";
/** Result of {@link methodAccounting} (`accounting.ts`). */
export type { MethodAccounting } from "./accounting.ts";
/** Per-layer attention mass on a method's prompt columns (`attention_mass.ts`). */
export { attentionMass } from "./attention_mass.ts";
/** Result and options of {@link attentionMass} (`attention_mass.ts`). */
export type { AttentionMass, AttentionMassOptions } from "./attention_mass.ts";
/** A method instance's variables to and from one safetensors file (`weights.ts`). */
export { loadMethodVariables, saveMethodVariables } from "./weights.ts";
export type { HyperPromptBaseConfig } from "./_hyperprompt.ts";
export type { AdapterConfig, AdapterLayerNorm, AdapterPosition } from "./adapter.ts";
export type { HyperFormerPPConfig } from "./hyperformer_pp.ts";
export type { HyperPromptLocalConfig } from "./hyperprompt.ts";
export type { HyperPromptGlobalConfig } from "./hyperprompt_global.ts";
export type { MtlConfig } from "./mtl.ts";
export type { PromptTuningConfig } from "./prompt_tuning.ts";
export {
  adapter,
  hyperformerPP,
  hyperpromptGlobal,
  hyperpromptSep,
  hyperpromptShare,
  mtl,
  mtlPrompt,
  promptTuning,
};

/**
 * Every method by registry key.
 *
 * @example
 * ```ts
 * import { METHODS } from "./mod.ts";
 * console.assert(METHODS.hyperprompt_global.name === "hyperprompt_global");
 * ```
 */
export const METHODS = {
  mtl,
  prompt_tuning: promptTuning,
  mtl_prompt: mtlPrompt,
  adapter,
  hyperformer_pp: hyperformerPP,
  hyperprompt_share: hyperpromptShare,
  hyperprompt_sep: hyperpromptSep,
  hyperprompt_global: hyperpromptGlobal,
} as const;

/** A registry key. */
export type MethodName = keyof typeof METHODS;

/**
 * Looks a method up by name.
 *
 * @param name a key of {@link METHODS}
 * @returns the method
 * @throws Error naming the unknown method and listing the known ones
 * @example
 * ```ts
 * import { getMethod } from "./mod.ts";
 * console.assert(getMethod("adapter").name === "adapter");
 * ```
 */
export function getMethod(name: string): Method<unknown> {
  if (!Object.hasOwn(METHODS, name)) {
    throw new Error(
      `Unknown method "${name}"; known methods: ${Object.keys(METHODS).join(", ")}`,
    );
  }
  return METHODS[name as MethodName] as Method<unknown>;
}
