/**
 * The test preload's backend choice (test_backend.ts), each case in a fresh process so that this
 * process's own environment and WebGPU instance are not involved.
 */

import assert from "node:assert/strict";

const MODULE = new URL("./test_backend.ts", import.meta.url).href;

/** Runs `deno eval` that imports the preload and prints the resulting settings. */
async function choice(env: Record<string, string>): Promise<Record<string, string | null>> {
  const script = `
    import { chooseTestWebgpuBackend } from ${JSON.stringify(MODULE)};
    console.log(JSON.stringify({
      returned: chooseTestWebgpuBackend() ?? null,
      backend: Deno.env.get("DENO_WEBGPU_BACKEND") ?? null,
      probed: Deno.env.get("HYPERPROMPT_TEST_WEBGPU_PROBED") ?? null,
    }));`;
  const clean = { ...Deno.env.toObject() };
  delete clean["DENO_WEBGPU_BACKEND"];
  delete clean["HYPERPROMPT_TEST_WEBGPU_PROBED"];
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--quiet", script],
    clearEnv: true,
    env: { ...clean, ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
}

/** Whether Vulkan gives an adapter here, asked directly. */
async function vulkanHere(): Promise<boolean> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "console.log(!!(await navigator.gpu?.requestAdapter()))"],
    env: { DENO_WEBGPU_BACKEND: "vulkan" },
    stdout: "piped",
    stderr: "null",
  }).output();
  return new TextDecoder().decode(out.stdout).trim().endsWith("true");
}

Deno.test("test preload: Vulkan when it gives an adapter, else wgpu's default; set once", async () => {
  const vulkan = Deno.build.os === "linux" && await vulkanHere();
  const first = await choice({});
  assert.deepEqual(first, {
    returned: vulkan ? "vulkan" : null,
    backend: vulkan ? "vulkan" : null,
    probed: "1",
  });
  // A setting given by the user is kept, and nothing is probed.
  assert.deepEqual(await choice({ DENO_WEBGPU_BACKEND: "gl" }), {
    returned: "gl",
    backend: "gl",
    probed: null,
  });
  // Later modules of the same process (marker set, no backend chosen) do not probe again.
  assert.deepEqual(await choice({ HYPERPROMPT_TEST_WEBGPU_PROBED: "1" }), {
    returned: null,
    backend: null,
    probed: "1",
  });
});

Deno.test("a plain deno test (no preload) of a webgpu test module gets the same choice", async () => {
  const vulkan = Deno.build.os === "linux" && await vulkanHere();
  const testing = new URL("./testing.ts", import.meta.url).href;
  const clean = { ...Deno.env.toObject() };
  delete clean["DENO_WEBGPU_BACKEND"];
  delete clean["HYPERPROMPT_TEST_WEBGPU_PROBED"];
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      "--quiet",
      `await import(${JSON.stringify(testing)});
       console.log(JSON.stringify(Deno.env.get("DENO_WEBGPU_BACKEND") ?? null));`,
    ],
    clearEnv: true,
    env: clean,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const last = new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!;
  assert.equal(JSON.parse(last), vulkan ? "vulkan" : null);
});
