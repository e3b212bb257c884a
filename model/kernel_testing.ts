/**
 * Test helper: {@link withKernel} runs code with one registered tfjs kernel of one backend replaced
 * (e.g. one that throws, counts its calls or returns wrong numbers) and restores the original
 * afterwards, also when the code throws. Not used by the library itself.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";

/**
 * Runs `fn` with kernel `kernelName` of backend `backendName` replaced by `wrap` of the registered
 * kernel function, then registers the original again, whether `fn` returned or threw. The
 * replacement keeps the original's setup and dispose functions. Nested calls restore in turn.
 *
 * @param backendName the backend the kernel is registered for, e.g. "cpu" or "webgpu"
 * @param kernelName a kernel registered for that backend, e.g. "BatchMatMul"
 * @param wrap builds the replacement from the registered kernel function
 * @param fn runs while the replacement is registered
 * @returns what `fn` returns
 * @throws Error naming the backend and kernel when no such kernel is registered (nothing is
 *   replaced then), or what `wrap` or `fn` throws (the original is registered again)
 */
export async function withKernel<T>(
  backendName: string,
  kernelName: string,
  wrap: (real: tf.KernelFunc) => tf.KernelFunc,
  fn: () => T | Promise<T>,
): Promise<T> {
  const real = tf.getKernel(kernelName, backendName);
  if (real === undefined) {
    throw new Error(`model/kernel_testing.ts: no ${backendName} kernel ${kernelName} registered`);
  }
  const kernelFunc = wrap(real.kernelFunc);
  tf.unregisterKernel(kernelName, backendName);
  try {
    tf.registerKernel({ ...real, kernelFunc });
    return await fn();
  } finally {
    if (tf.getKernel(kernelName, backendName) !== undefined) {
      tf.unregisterKernel(kernelName, backendName);
    }
    tf.registerKernel(real);
  }
}
