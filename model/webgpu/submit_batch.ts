/**
 * How many dispatches the custom WebGPU kernels let tfjs-webgpu queue before it submits a command
 * buffer: the default, and the `HYPERPROMPT_WEBGPU_SUBMIT_BATCH` override, checked. Apart from
 * `model/webgpu/mod.ts` (which sets it) so that the memory estimate (`benchmarks/memory.ts`,
 * where a freed buffer stays in the pool until its command buffer is submitted) and the command
 * line's argument checks read the same value without loading the kernels.
 *
 * @module
 */

import { UsageError } from "../usage.ts";
import { readEnv } from "../env.ts";

/** Dispatches per command buffer while the custom kernels are installed (tfjs's own is 15). */
export const DEFAULT_SUBMIT_BATCH = 64;

/**
 * The largest submit batch accepted: far above any useful value (a T5 1.1 Base step dispatches a
 * few thousand kernels), and an integer a double holds exactly.
 */
export const MAX_SUBMIT_BATCH = 1_000_000;

/** The environment variable that overrides {@link DEFAULT_SUBMIT_BATCH}. */
export const SUBMIT_BATCH_ENV = "HYPERPROMPT_WEBGPU_SUBMIT_BATCH";

/**
 * The submit batch `HYPERPROMPT_WEBGPU_SUBMIT_BATCH` names.
 *
 * @returns the value, or undefined when the variable is unset or empty (or env access is denied)
 * @throws UsageError naming the variable and its value when it is not a positive integer of at
 *   most {@link MAX_SUBMIT_BATCH}
 */
export function submitBatchFromEnv(): number | undefined {
  const value = readEnv(SUBMIT_BATCH_ENV); // unreadable (no --allow-env): the options as given
  if (value === undefined || value === "") return undefined;
  if (!/^[1-9][0-9]*$/.test(value) || Number(value) > MAX_SUBMIT_BATCH) {
    throw new UsageError(
      `${SUBMIT_BATCH_ENV} must be a positive integer at most ${MAX_SUBMIT_BATCH}, got "${value}"`,
    );
  }
  return Number(value);
}
