/**
 * Counts the GPU work the webgpu backend records: tfjs programs (`runWebGPUProgram`) and compute
 * dispatches (`GPUComputePassEncoder.dispatchWorkgroups`, which also counts the in-place
 * dispatches of `in_place.ts` that are not tfjs programs). Used by `deno task perf`
 * (`gpuDispatches`) and the kernel tests.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";

/** What {@link countGpuWork} counted. */
export interface GpuWorkCount {
  /** tfjs programs run. */
  programs: number;
  /** tfjs programs run, by program class (e.g. `TransposeProgram`). */
  byProgram: Record<string, number>;
  /** Compute dispatches recorded (tfjs programs and in-place dispatches). */
  dispatches: number;
}

/**
 * Starts counting on the active webgpu backend.
 *
 * @returns a function that stops counting (restoring the wrapped methods) and gives the counts,
 *   or undefined when the active backend is not webgpu
 */
export function countGpuWork(): (() => GpuWorkCount) | undefined {
  if (tf.getBackend() !== "webgpu" || typeof GPUComputePassEncoder === "undefined") {
    return undefined;
  }
  const be = tf.backend() as unknown as { runWebGPUProgram: (...x: unknown[]) => unknown };
  const hadOwn = Object.prototype.hasOwnProperty.call(be, "runWebGPUProgram");
  const run = be.runWebGPUProgram;
  const pass = GPUComputePassEncoder.prototype;
  const dispatch = pass.dispatchWorkgroups;
  const count: GpuWorkCount = { programs: 0, byProgram: {}, dispatches: 0 };
  be.runWebGPUProgram = function (this: unknown, ...x: unknown[]) {
    count.programs++;
    const name = (x[0] as object).constructor.name;
    count.byProgram[name] = (count.byProgram[name] ?? 0) + 1;
    return run.apply(this, x);
  };
  pass.dispatchWorkgroups = function (this: GPUComputePassEncoder, ...x) {
    count.dispatches++;
    return dispatch.apply(this, x);
  };
  return () => {
    if (hadOwn) be.runWebGPUProgram = run;
    else delete (be as Partial<typeof be>).runWebGPUProgram;
    pass.dispatchWorkgroups = dispatch;
    return { ...count, byProgram: { ...count.byProgram } };
  };
}
