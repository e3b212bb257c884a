/**
 * Test helpers shared by the webgpu kernel tests: whether an adapter exists, and `gpuTest`, a
 * `Deno.test` that is ignored (with the reason in its name) where there is none. Not used by the
 * library itself.
 *
 * @module
 */
// First: the tests' WebGPU backend choice (Vulkan where it works), also for a plain `deno test`
// without `deno task test`'s preload; it must run before any adapter is requested.
import "./test_backend.ts";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-webgpu";
import { unregisterWebgpuKernels } from "./mod.ts";
import { raiseWebgpuLimits } from "./device_limits.ts";
import { withKernel } from "../kernel_testing.ts";

/** Why no WebGPU adapter can be had here, or undefined when one can. */
export async function probeAdapter(): Promise<string | undefined> {
  if (typeof navigator === "undefined" || navigator.gpu === undefined) {
    return "navigator.gpu is undefined";
  }
  try {
    const adapter = await navigator.gpu.requestAdapter();
    if (adapter === null) {
      return "requestAdapter() returned null (no driver, or DENO_WEBGPU_BACKEND is empty/unknown)";
    }
  } catch (e) {
    return `requestAdapter() threw: ${e instanceof Error ? e.message : String(e)}`;
  }
  return undefined;
}

// The device the tests get has the limits the library's backend selection asks for.
raiseWebgpuLimits();

/** The reason GPU tests are skipped in this process, if they are. */
export const noGpu: string | undefined = await probeAdapter();
if (noGpu !== undefined) console.warn(`model/webgpu tests skipped: ${noGpu}`);

/**
 * A `Deno.test` on the webgpu backend: ignored (reason in the name) without an adapter; runs
 * `setup` (e.g. registering kernels) first and unregisters the custom kernels afterwards.
 *
 * @param name test name
 * @param fn the test
 * @param setup run after the backend is selected, before `fn`
 */
export function gpuTest(name: string, fn: () => Promise<void>, setup?: () => void): void {
  Deno.test({
    name: noGpu === undefined ? name : `${name} [SKIPPED: ${noGpu}]`,
    ignore: noGpu !== undefined,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      await tf.setBackend("webgpu");
      await tf.ready();
      try {
        setup?.();
        await fn();
      } finally {
        unregisterWebgpuKernels();
      }
    },
  });
}

/**
 * Runs `fn` with webgpu kernel `kernelName` replaced by `wrap` of the registered one (e.g. one
 * that drops an attribute, to check that a self-check catches it), and restores it afterwards,
 * also when `fn` throws: {@link withKernel} on the webgpu backend.
 *
 * @param kernelName a kernel registered for webgpu
 * @param wrap builds the replacement from the registered kernel function
 * @param fn runs while the replacement is registered
 * @returns what `fn` returns
 */
export function withWebgpuKernel<T>(
  kernelName: string,
  wrap: (real: tf.KernelFunc) => tf.KernelFunc,
  fn: () => Promise<T>,
): Promise<T> {
  return withKernel("webgpu", kernelName, wrap, fn);
}

/**
 * A {@link withWebgpuKernel} wrapper whose kernel returns twice the registered one's (single)
 * output: wrong numbers with the right shape, which nothing downstream rejects by an exception.
 *
 * @param real the registered kernel function
 * @returns the doubling kernel function
 */
export function doubledOutput(real: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const r = real(args) as tf.TensorInfo;
    const add = tf.getKernel("Add", "webgpu")!.kernelFunc;
    const out = add({ inputs: { a: r, b: r }, backend: args.backend, attrs: {} });
    (args.backend as tf.KernelBackend).disposeData(r.dataId);
    return out;
  };
}

/** Keys of the shaders tfjs's webgpu backend has compiled so far (internal `pipelineCache`). */
export function pipelineKeys(): string[] {
  return Object.keys((tf.backend() as unknown as { pipelineCache: object }).pipelineCache);
}
