import assert from "node:assert/strict";
import { withEnv } from "../env_testing.ts";
import { UsageError } from "../usage.ts";
import { WEBGPU_KERNELS_ENV, webgpuKernelsFromEnv } from "./kernels_env.ts";

/** webgpuKernelsFromEnv() with the variable set to `value` (undefined: unset). */
function read(value: string | undefined): Promise<string | undefined> {
  return withEnv({ [WEBGPU_KERNELS_ENV]: value }, () => Promise.resolve(webgpuKernelsFromEnv()));
}

Deno.test("webgpuKernelsFromEnv: unset or empty is undefined; 0/off, all, transposed are read; anything else is a UsageError naming the variable and its values", async () => {
  assert.equal(await read(undefined), undefined);
  assert.equal(await read(""), undefined);
  assert.equal(await read("0"), "off");
  assert.equal(await read("off"), "off");
  assert.equal(await read("all"), "all");
  assert.equal(await read("transposed"), "transposed");
  // Before, any other value was ignored: "1", "none" or "ALL" ran the default kernels silently.
  for (const bad of ["1", "none", "ALL", "false"]) {
    await assert.rejects(read(bad), (e: unknown) => {
      assert.ok(e instanceof UsageError);
      assert.equal(
        e.message,
        "HYPERPROMPT_WEBGPU_KERNELS must be 0 or off (tfjs's own kernels), all or transposed " +
          `(the custom matMul's cover; transposed is the default), got "${bad}"`,
      );
      return true;
    });
  }
});
