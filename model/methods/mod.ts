/**
 * Registry of the multi-task methods compared in the benchmark.
 *
 * Adding a method (`mtl.ts` is the smallest example, `adapter.ts` one with per-task variables):
 * 1. one file in this folder exporting a {@link Method} (`model/method.ts`): parse its config
 *    with `ConfigReader` (`_config.ts`: unknown and malformed fields are errors naming the
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
