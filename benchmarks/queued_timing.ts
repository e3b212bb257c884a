/**
 * Timing an op by queueing its repeats: the products are all issued, and only the last one is
 * waited for (one read of one element, `waitFor`), so the time covers the work of every repeat
 * (the backends run their queue in order) but only one round trip to the device. Waiting for each
 * repeat instead adds a full round trip per repeat, which on webgpu can cost more than a small
 * product itself. Used by `deno task perf` (matMul GFLOP/s) and `benchmarks/gpu_check.ts`.
 *
 * @module
 */

import type * as tf from "@tensorflow/tfjs";
import { waitFor } from "../model/webgpu/counters.ts";

/**
 * Runs `op` `count` times, queued, and waits for the last result only; every result is freed
 * (also when one throws).
 *
 * @param op makes one result (a new tensor each call)
 * @param count how many calls (≥ 1)
 * @returns wall milliseconds from the first call to the end of the wait
 */
export async function runQueued(op: () => tf.Tensor, count: number): Promise<number> {
  if (!(Number.isInteger(count) && count >= 1)) {
    throw new Error(`benchmarks/queued_timing.ts: count must be a positive integer, got ${count}`);
  }
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const y = op();
    try {
      if (i === count - 1) await waitFor(y);
    } finally {
      y.dispose();
    }
  }
  return performance.now() - t0;
}

/** What {@link timeQueued} measured. */
export interface QueuedTiming {
  /** Milliseconds per call of each batch (batch wall time / calls per batch). */
  readonly batchMs: number[];
  /** Calls per batch. */
  readonly reps: number;
}

/**
 * Times `op`: `warm` untimed calls (queued, one wait at their end: shader compilation and
 * buffer allocation), then `batches` batches of `reps` queued calls, each batch ended by one wait
 * ({@link runQueued}).
 *
 * @param op makes one result
 * @param opts calls per batch, batches (default 1), warm-up calls (default 2; 0 for none)
 * @returns ms per call of each batch
 */
export async function timeQueued(
  op: () => tf.Tensor,
  opts: { reps: number; batches?: number; warm?: number },
): Promise<QueuedTiming> {
  const { reps, batches = 1, warm = 2 } = opts;
  if (!(Number.isInteger(batches) && batches >= 1) || !(Number.isInteger(warm) && warm >= 0)) {
    throw new Error(
      `benchmarks/queued_timing.ts: batches must be a positive and warm a non-negative integer, ` +
        `got ${batches}, ${warm}`,
    );
  }
  if (warm > 0) await runQueued(op, warm);
  const batchMs: number[] = [];
  for (let i = 0; i < batches; i++) batchMs.push((await runQueued(op, reps)) / reps);
  return { batchMs, reps };
}
