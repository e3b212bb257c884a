import assert from "node:assert/strict";
import { join } from "node:path";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { pathUnder, repoPath, sharedPath } from "./shared_dir.ts";
import { withEnv } from "./env_testing.ts";

const BESIDE = fileURLToPath(new URL("../../shared", import.meta.url));

Deno.test("sharedPath: HYPERPROMPT_SHARED overrides; unset or empty means ../shared beside the repo", async () => {
  const at = (v: string | undefined) =>
    withEnv({ HYPERPROMPT_SHARED: v }, () => Promise.resolve(sharedPath("data", "glue")));
  assert.equal(await at("/elsewhere"), "/elsewhere/data/glue");
  assert.equal(await at(undefined), join(BESIDE, "data", "glue"));
  assert.equal(await at(""), join(BESIDE, "data", "glue"), "empty is not a relative root");
  assert.equal(
    await withEnv({ HYPERPROMPT_SHARED: undefined }, () => Promise.resolve(sharedPath())),
    BESIDE,
    "no trailing separator",
  );
});

Deno.test("pathUnder: a file path under a file: folder; a web address under another (imported from a server)", () => {
  assert.equal(
    pathUnder(new URL("file:///srv/repo/"), ["benchmarks", "profiles"]),
    join("/srv/repo/benchmarks/profiles"),
  );
  assert.equal(pathUnder(new URL("file:///srv/repo/"), []), join("/srv/repo"));
  assert.equal(pathUnder(new URL("file:///"), []), "/");
  assert.equal(
    pathUnder(new URL("https://example.org/hp/v1/"), ["benchmarks", "profiles"]),
    "https://example.org/hp/v1/benchmarks/profiles",
  );
});

Deno.test("repoPath: paths under the repository root", () => {
  assert.equal(
    repoPath("deno.json"),
    join(fileURLToPath(new URL("..", import.meta.url)), "deno.json"),
  );
  assert.ok(Deno.statSync(repoPath("deno.json")).isFile);
});

Deno.test("the reference bundle (../shared, or HYPERPROMPT_SHARED) is there: the tests that read its fixtures and data need it", () => {
  // One failure naming the folder and the variable, before the many that would each name a file.
  const missing = ["fixtures", "data"].filter((d) => !existsSync(sharedPath(d)));
  assert.deepEqual(
    missing,
    [],
    `${sharedPath()} lacks ${missing.join(" and ")}: the reference bundle (README, "The two ` +
      `commands") is not there; put it beside the repository as ../shared, or set ` +
      `HYPERPROMPT_SHARED to its folder`,
  );
});
