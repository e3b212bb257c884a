import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { repoPath, sharedPath } from "./shared_dir.ts";
import { withEnv } from "./env_testing.ts";

const BESIDE = fileURLToPath(new URL("../../shared", import.meta.url));

Deno.test("sharedPath: HYPERPROMPT_SHARED overrides; unset or empty means ../shared beside the repo", async () => {
  const at = (v: string | undefined) =>
    withEnv({ HYPERPROMPT_SHARED: v }, () => Promise.resolve(sharedPath("data", "glue")));
  assert.equal(await at("/elsewhere"), "/elsewhere/data/glue");
  assert.equal(await at(undefined), join(BESIDE, "data", "glue"));
  assert.equal(await at(""), join(BESIDE, "data", "glue"), "empty is not a relative root");
});

Deno.test("repoPath: paths under the repository root", () => {
  assert.equal(
    repoPath("deno.json"),
    join(fileURLToPath(new URL("..", import.meta.url)), "deno.json"),
  );
  assert.ok(Deno.statSync(repoPath("deno.json")).isFile);
});
