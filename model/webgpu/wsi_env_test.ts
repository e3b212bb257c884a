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

Deno.test("quietWaylandProbe sets XDG_RUNTIME_DIR to a private directory only when unset or invalid", async () => {
  const script = `
    import { quietWaylandProbe } from ${JSON.stringify(MODULE)};
    const set = quietWaylandProbe();
    const dir = Deno.env.get("XDG_RUNTIME_DIR") ?? null;
    const st = set ? Deno.statSync(dir) : null;
    const empty = set ? [...Deno.readDirSync(dir)].length === 0 : null;
    console.log(JSON.stringify([set, dir, st && st.isDirectory, st && (st.mode & 0o777), empty]));`;
  const linux = Deno.build.os === "linux";
  // Unset, empty, and relative (libwayland-client rejects the last two as it does the first).
  for (const given of [undefined, "", "run/user/7"]) {
    const tmp = await Deno.makeTempDir();
    try {
      const env: Record<string, string> = { TMPDIR: tmp };
      if (given !== undefined) env["XDG_RUNTIME_DIR"] = given;
      const [set, dir, isDir, mode, empty] = JSON.parse((await run(script, env)).out);
      assert.equal(set, linux, `XDG_RUNTIME_DIR=${given}`);
      if (linux) {
        // A fresh directory of its own under $TMPDIR, 0700 and empty; gone when the process ended.
        assert.match(dir, new RegExp(`^${tmp}/hyperprompt-xdg-`));
        assert.deepEqual([isDir, mode, empty], [true, 0o700, true]);
        assert.deepEqual([...Deno.readDirSync(tmp)], []);
      } else assert.equal(dir, given ?? null);
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  }
  assert.deepEqual(JSON.parse((await run(script, { XDG_RUNTIME_DIR: "/run/user/7" })).out), [
    false,
    "/run/user/7",
    null,
    null,
    null,
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
