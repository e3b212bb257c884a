import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { runQueued, timeQueued } from "./queued_timing.ts";
import { countReads } from "./queued_timing_testing.ts";

Deno.test("timeQueued: one read per batch (and one after the warm-up), every result freed", async () => {
  await tf.setBackend("cpu");
  const a = tf.ones([8, 8]);
  let calls = 0;
  const before = tf.memory().numTensors;
  const t0 = performance.now();
  const { value, reads } = await countReads(() =>
    timeQueued(() => {
      calls++;
      // Busy for ≥ 2 ms per call: the batch time must cover every call's work.
      const t0 = performance.now();
      while (performance.now() - t0 < 2);
      return tf.matMul(a, a);
    }, { reps: 4, batches: 3, warm: 2 })
  );
  assert.equal(calls, 2 + 3 * 4);
  // Waiting for each call would read 14 times.
  assert.equal(reads, 1 + 3);
  assert.equal(value.reps, 4);
  assert.equal(value.batchMs.length, 3);
  const wall = performance.now() - t0;
  assert.ok(value.batchMs.every((ms) => ms >= 2), JSON.stringify(value));
  // Per call, not per batch: the batches' times (ms per call x calls) fit in the whole call's.
  const batchesMs = value.batchMs.reduce((x, y) => x + y, 0) * value.reps;
  assert.ok(batchesMs <= wall, `${batchesMs} > ${wall}`);
  assert.equal(tf.memory().numTensors, before, "results freed");
  a.dispose();
});

Deno.test("runQueued: a call that throws frees the earlier results; bad counts are refused", async () => {
  await tf.setBackend("cpu");
  const before = tf.memory().numTensors;
  let calls = 0;
  await assert.rejects(
    runQueued(() => {
      if (++calls === 3) throw new Error("stand-in for an abort");
      return tf.zeros([4]);
    }, 5),
    /stand-in for an abort/,
  );
  assert.equal(tf.memory().numTensors, before);
  await assert.rejects(
    runQueued(() => tf.zeros([1]), 0),
    /count must be a positive integer, got 0/,
  );
  // A fractional count would never reach its last call, so never wait for the device.
  await assert.rejects(
    runQueued(() => tf.zeros([1]), 2.5),
    /count must be a positive integer, got 2.5/,
  );
  await assert.rejects(
    timeQueued(() => tf.zeros([1]), { reps: 1, batches: 0 }),
    /batches must be a positive/,
  );
  for (const warm of [-1, 0.5]) {
    await assert.rejects(
      timeQueued(() => tf.zeros([1]), { reps: 1, warm }),
      new RegExp(`warm a non-negative integer, got 1, ${warm}`),
    );
  }
  assert.equal(tf.memory().numTensors, before);
});

/** The values of each backend read (`data()` of any tensor) while `fn` runs. */
async function valuesRead(fn: () => Promise<unknown>): Promise<number[][]> {
  const be = tf.backend() as unknown as { read: (...x: unknown[]) => Promise<ArrayLike<number>> };
  const read = be.read;
  const got: number[][] = [];
  be.read = async function (this: unknown, ...x: unknown[]) {
    const v = await read.apply(this, x);
    got.push(Array.from(v));
    return v;
  };
  try {
    await fn();
    return got;
  } finally {
    be.read = read;
  }
}

Deno.test("runQueued waits by one element of the last call's result; warm 1 is one untimed call", async () => {
  await tf.setBackend("cpu");
  const before = tf.memory().numTensors;
  let calls = 0;
  // Call k's result is 100 values k: a read shows which call's result it was and how much of it.
  const op = () => tf.fill([100], ++calls);
  assert.deepEqual(await valuesRead(() => runQueued(op, 3)), [[3]]);
  calls = 0;
  const read = await valuesRead(() => timeQueued(op, { reps: 2, batches: 2, warm: 1 }));
  assert.equal(calls, 1 + 2 * 2);
  assert.deepEqual(read, [[1], [3], [5]], "after the warm-up call, then each batch's last");
  assert.equal(tf.memory().numTensors, before);
});
