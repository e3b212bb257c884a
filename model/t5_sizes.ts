/**
 * The size fields of a T5 configuration and their check, shared by the model code (`t5.ts`) and
 * the accounting (`accounting.ts`); not part of the library's API (`mod.ts` does not export it).
 *
 * @module
 */
import type { T5Config } from "./config.ts";

/** The size fields of {@link T5Config}, each a positive integer (as `t5ConfigFromHf` reads it). */
export const SIZE_FIELDS = [
  "vocabSize",
  "dModel",
  "dKv",
  "dFf",
  "numHeads",
  "numLayers",
  "numDecoderLayers",
  "relativeAttentionNumBuckets",
  "relativeAttentionMaxDistance",
] as const satisfies readonly (keyof T5Config)[];

/**
 * Checks that every size field of `config` is a positive integer, before anything is allocated:
 * a zero or fractional width would otherwise make tensors that fail later with a tfjs error
 * naming no field, and NaN would make shapes tfjs refuses (and counts NaN).
 *
 * @param file the calling module, as its messages name it (`model/t5.ts`)
 * @param fn the calling function
 * @param config the configuration
 * @throws Error naming the field and its value
 */
export function checkSizes(file: string, fn: string, config: T5Config): void {
  for (const key of SIZE_FIELDS) {
    const n = config[key];
    if (!Number.isInteger(n) || n <= 0) {
      throw new Error(`${file} ${fn}: config.${key} must be a positive integer, got ${n}`);
    }
  }
}
