/**
 * Counts the GPU work the webgpu backend records: tfjs programs (`runWebGPUProgram`) and compute
 * dispatches (`GPUComputePassEncoder.dispatchWorkgroups`, which also counts the in-place
 * dispatches of `in_place.ts` that are not tfjs programs), and the host's share of a step
 * ({@link hostOnlySteps}), and {@link waitFor}, the end of a timed span. Used by `deno task perf`
 * (`gpuDispatches`, `hostOnlyMs`), `benchmarks/gpu_check.ts`, the tuner (`tuning.ts`) and the
 * kernel tests.
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

/**
 * Runs `step` `reps` times with `GPUQueue.prototype.submit` replaced by a no-op, so nothing
 * reaches the GPU: every dispatch is still recorded (tfjs's engine, autodiff, pipelines, bind
 * groups, uniforms, command encoding and `finish`), which measures the host's share of a step on
 * any adapter. The GPU computes nothing meanwhile: the values read are garbage, and every
 * variable a step updates (weights, optimizer moments) is left holding never-computed values, so
 * a caller that measures anything afterwards saves and restores them around this call
 * (`snapshotTraining` in `benchmarks/optim.ts`); `submit` is restored afterwards.
 *
 * @param step one training step, awaited
 * @param reps how many
 * @returns ms per step (0.1 ms resolution)
 */
export async function hostOnlySteps(step: () => Promise<void>, reps: number): Promise<number[]> {
  const proto = GPUQueue.prototype;
  const real = proto.submit;
  const ms: number[] = [];
  proto.submit = function () {};
  try {
    for (let i = 0; i < reps; i++) {
      const t0 = performance.now();
      await step();
      ms.push(Math.round((performance.now() - t0) * 10) / 10);
    }
  } finally {
    proto.submit = real;
  }
  return ms;
}

/**
 * Waits until the work that produced `t` (and everything queued before it: backends run their
 * queue in order) is done, by reading one element of it back: the end of a timed span that does
 * not pay for copying the whole result.
 *
 * @param t a tensor (kept; the one-element read is freed)
 */
export async function waitFor(t: tf.Tensor): Promise<void> {
  const one = tf.tidy(() => t.reshape([-1]).slice(0, 1));
  await one.data();
  one.dispose();
}
