/**
 * Test helper for the timing loops (benchmarks/queued_timing.ts and its users).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";

/**
 * Counts the active backend's reads (`data()` of any tensor) while `fn` runs.
 *
 * @param fn the work to watch
 * @returns its value and the number of reads
 */
export async function countReads<T>(fn: () => Promise<T>): Promise<{ value: T; reads: number }> {
  const be = tf.backend() as unknown as { read: (...x: unknown[]) => Promise<unknown> };
  const read = be.read;
  let reads = 0;
  be.read = function (this: unknown, ...x: unknown[]) {
    reads++;
    return read.apply(this, x);
  };
  try {
    const value = await fn();
    return { value, reads };
  } finally {
    be.read = read;
  }
}
