import assert from "node:assert/strict";
import { withEnv } from "./env_testing.ts";
import { readEnv } from "./env.ts";

const NAME = "HYPERPROMPT_ENV_TEST_VARIABLE";

Deno.test("readEnv: a set variable's value (empty too), undefined when unset", async () => {
  await withEnv({ [NAME]: "on" }, () => Promise.resolve(assert.equal(readEnv(NAME), "on")));
  await withEnv({ [NAME]: "" }, () => Promise.resolve(assert.equal(readEnv(NAME), "")));
  await withEnv(
    { [NAME]: undefined },
    () => Promise.resolve(assert.equal(readEnv(NAME), undefined)),
  );
});

Deno.test({
  name: "readEnv: without permission to read the environment, undefined instead of an error",
  permissions: { env: false },
  fn() {
    // The variable is set (PATH), but reading it throws here: readEnv must not.
    assert.throws(() => Deno.env.get("PATH"));
    assert.equal(readEnv("PATH"), undefined);
  },
});
