import assert from "node:assert/strict";
import { withEnv } from "../env_testing.ts";
import { UsageError } from "../usage.ts";
import { MAX_SUBMIT_BATCH, SUBMIT_BATCH_ENV, submitBatchFromEnv } from "./submit_batch.ts";

/** submitBatchFromEnv() with the variable set to `value` (undefined: unset). */
function read(value: string | undefined): Promise<number | undefined> {
  return withEnv({ [SUBMIT_BATCH_ENV]: value }, () => Promise.resolve(submitBatchFromEnv()));
}

Deno.test("submitBatchFromEnv: unset or empty is undefined; a positive integer up to the bound is read; anything else is a UsageError naming the variable", async () => {
  assert.equal(await read(undefined), undefined);
  assert.equal(await read(""), undefined);
  assert.equal(await read("32"), 32);
  assert.equal(await read(String(MAX_SUBMIT_BATCH)), MAX_SUBMIT_BATCH);
  // 1e20 passed the digits-only check before and was read as a number no buffer count reaches.
  for (const bad of ["0", "-3", "lots", "1.5", "99999999999999999999", "1000001"]) {
    await assert.rejects(read(bad), (e: unknown) => {
      assert.ok(e instanceof UsageError);
      assert.equal(
        e.message,
        `HYPERPROMPT_WEBGPU_SUBMIT_BATCH must be a positive integer at most 1000000, got "${bad}"`,
      );
      return true;
    });
  }
});
