/**
 * Registry of the multi-task methods compared in the benchmark. Adding a method is one file in
 * this folder plus one line here.
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
