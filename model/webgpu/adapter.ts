/**
 * The WebGPU adapter tfjs-backend-webgpu itself runs on. tfjs requests it with its own descriptor
 * (`powerPreference: "high-performance"`, or `"low-power"` under the `WEBGPU_USE_LOW_POWER_GPU`
 * flag); a probe with no options may get another adapter on a machine with two (integrated and
 * discrete), so backend selection, the notes in every result, the matmul tuning table lookup
 * and the benchmarks ask through {@link requestTfjsAdapter}.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";

/**
 * The options tfjs-backend-webgpu 4.22 passes to `navigator.gpu.requestAdapter`.
 *
 * @returns the request options
 */
export function tfjsAdapterOptions(): GPURequestAdapterOptions {
  let lowPower = false;
  try {
    lowPower = tf.env().getBool("WEBGPU_USE_LOW_POWER_GPU");
  } catch {
    // The flag is registered by tfjs-backend-webgpu; before that import it is tfjs's default.
  }
  return { powerPreference: lowPower ? "low-power" : "high-performance" };
}

/**
 * Requests the adapter tfjs-backend-webgpu would use.
 *
 * @returns the adapter, or null when there is none (or no `navigator.gpu`)
 */
export async function requestTfjsAdapter(): Promise<GPUAdapter | null> {
  if (typeof navigator === "undefined" || navigator.gpu === undefined) return null;
  return await navigator.gpu.requestAdapter(tfjsAdapterOptions());
}
