/**
 * Preloaded into every test module by `deno task test` (`--preload`), and imported first by the
 * test modules that use WebGPU (`testing.ts`, `model/backend_test.ts`) so that a plain `deno test`
 * gets it too: picks wgpu's Vulkan backend for the tests (`DENO_WEBGPU_BACKEND=vulkan`) when it
 * gives an adapter here and the variable is not set already. Not used by the library or the
 * benchmarks.
 *
 * Why: with Mesa's software adapter through wgpu's GL backend (EGL, libglvnd), Deno 2.9.6 aborts
 * at exit in about one `deno test` run in ten after every test passed ("double free or corruption
 * (fasttop)", "corrupted size vs. prev_size in fastbins", "free(): invalid pointer"). A core dump
 * shows a test module's worker thread exiting and freeing its per-thread EGL state while the main
 * thread, in `exit()`, runs libEGL's destructor. Two test files that only dispatch a WGSL kernel
 * and read back, without tfjs or this project's code, show it: `.ci/webgpu_exit_repro.sh 40 gl`
 * aborted 4 and 1 of 40 runs in two tries here, `… 40 vulkan` (Mesa's lavapipe, Debian
 * `mesa-vulkan-drivers`, which `.ci/run` installs) none in two. The same code under `deno run`
 * (`… 40 gl run`: the GPU on the main thread, as `deno task bench` uses it) none.
 *
 * The choice is probed once per process, in a subprocess (an adapter request fixes the backends of
 * the isolate that makes it), and passed on to later modules through the environment.
 *
 * @module
 */

import { quietWaylandProbe } from "./wsi_env.ts";

const PROBED = "HYPERPROMPT_TEST_WEBGPU_PROBED";

function vulkanAdapterAvailable(): boolean {
  try {
    const out = new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        "--quiet",
        "const a = await navigator.gpu?.requestAdapter(); console.log(a ? 'yes' : 'no');",
      ],
      env: { DENO_WEBGPU_BACKEND: "vulkan", NO_COLOR: "1" },
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    return out.success && new TextDecoder().decode(out.stdout).trim().endsWith("yes");
  } catch {
    return false; // no --allow-run, or the probe failed: leave the default backends
  }
}

/**
 * Sets `DENO_WEBGPU_BACKEND=vulkan` for this process when it is unset and Vulkan gives an
 * adapter (probed once per process).
 *
 * @returns the backend setting the tests will use (undefined: wgpu's default, all backends)
 */
export function chooseTestWebgpuBackend(): string | undefined {
  try {
    const set = Deno.env.get("DENO_WEBGPU_BACKEND");
    if (set !== undefined || Deno.env.get(PROBED) !== undefined) return set;
    Deno.env.set(PROBED, "1");
    if (Deno.build.os === "linux" && vulkanAdapterAvailable()) {
      Deno.env.set("DENO_WEBGPU_BACKEND", "vulkan");
      quietWaylandProbe(); // see wsi_env.ts
    }
    return Deno.env.get("DENO_WEBGPU_BACKEND");
  } catch {
    return undefined; // no --allow-env
  }
}

chooseTestWebgpuBackend();
