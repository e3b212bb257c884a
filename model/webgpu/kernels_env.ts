/**
 * `HYPERPROMPT_WEBGPU_KERNELS`, checked: which of the custom WebGPU kernels
 * `model/webgpu/mod.ts` installs. Apart from that module so that the command line's argument
 * checks (`benchmarks/cli.ts`) refuse a bad value before any run without loading the kernels.
 *
 * @module
 */

import { UsageError } from "../usage.ts";
import { readEnv } from "../env.ts";

/** The environment variable {@link webgpuKernelsFromEnv} reads. */
export const WEBGPU_KERNELS_ENV = "HYPERPROMPT_WEBGPU_KERNELS";

/**
 * What `HYPERPROMPT_WEBGPU_KERNELS` asks for: `"off"` (`0` or `off`: tfjs's own kernels only),
 * `"all"` (the custom matMul also for untransposed products) or `"transposed"` (the default
 * cover, named).
 *
 * @returns the choice, or undefined when the variable is unset or empty (or env access is denied)
 * @throws UsageError naming the variable, its value and the values it takes
 */
export function webgpuKernelsFromEnv(): "off" | "all" | "transposed" | undefined {
  const value = readEnv(WEBGPU_KERNELS_ENV); // unreadable (no --allow-env): the options as given
  if (value === undefined || value === "") return undefined;
  if (value === "0" || value === "off") return "off";
  if (value === "all" || value === "transposed") return value;
  throw new UsageError(
    `${WEBGPU_KERNELS_ENV} must be 0 or off (tfjs's own kernels), all or transposed (the ` +
      `custom matMul's cover; transposed is the default), got "${value}"`,
  );
}
