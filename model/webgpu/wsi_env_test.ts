/**
 * quietWaylandProbe (wsi_env.ts), each case in a fresh process with its own environment.
 */

import assert from "node:assert/strict";

const MODULE = new URL("./wsi_env.ts", import.meta.url).href;

async function run(
  script: string,
  env: Record<string, string>,
): Promise<{ out: string; err: string }> {
  const clean = { ...Deno.env.toObject() };
  delete clean["XDG_RUNTIME_DIR"];
  delete clean["DENO_WEBGPU_BACKEND"];
  const o = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--quiet", script],
    clearEnv: true,
    env: { ...clean, NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const err = new TextDecoder().decode(o.stderr);
  assert.equal(o.code, 0, err);
  return { out: new TextDecoder().decode(o.stdout).trim().split("\n").at(-1)!, err };
}

Deno.test("quietWaylandProbe sets XDG_RUNTIME_DIR to the temporary directory only when unset", async () => {
  const script = `
    import { quietWaylandProbe } from ${JSON.stringify(MODULE)};
    const set = quietWaylandProbe();
    console.log(JSON.stringify([set, Deno.env.get("XDG_RUNTIME_DIR") ?? null]));`;
  const linux = Deno.build.os === "linux";
  assert.deepEqual(JSON.parse((await run(script, { TMPDIR: "/var/tmp" })).out), [
    linux,
    linux ? "/var/tmp" : null,
  ]);
  assert.deepEqual(JSON.parse((await run(script, { XDG_RUNTIME_DIR: "/run/user/7" })).out), [
    false,
    "/run/user/7",
  ]);
});

Deno.test("an adapter request after quietWaylandProbe prints no XDG_RUNTIME_DIR error", async () => {
  const probe = `
    import { quietWaylandProbe } from ${JSON.stringify(MODULE)};
    quietWaylandProbe();
    console.log(JSON.stringify(!!(await navigator.gpu?.requestAdapter())));`;
  const { err } = await run(probe, {});
  assert.doesNotMatch(err, /XDG_RUNTIME_DIR/);
});
