import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { withKernel } from "./kernel_testing.ts";

Deno.test("withKernel replaces a kernel while fn runs and restores it, also when fn throws", async () => {
  await tf.setBackend("cpu");
  const real = tf.getKernel("Neg", "cpu")!;
  const x = tf.tensor1d([1, -2]);
  const before = tf.memory().numTensors;
  const negX = async () => {
    const y = tf.neg(x);
    try {
      return [...(await y.data())];
    } finally {
      y.dispose();
    }
  };
  try {
    // The replacement runs instead of the original (here: the identity), with the original at hand.
    let calls = 0;
    const identity = (neg: tf.KernelFunc): tf.KernelFunc => (args) => {
      calls++;
      assert.equal(neg, real.kernelFunc, "wrap gets the registered kernel function");
      return tf.getKernel("Identity", "cpu")!.kernelFunc(args);
    };
    assert.deepEqual(await withKernel("cpu", "Neg", identity, negX), [1, -2]);
    assert.equal(calls, 1);
    assert.equal(tf.getKernel("Neg", "cpu"), real, "restored after fn returned");
    // fn throws (synchronously or by rejecting): the error passes through, the original is back.
    await assert.rejects(
      withKernel("cpu", "Neg", identity, () => {
        throw new Error("sync failure");
      }),
      /^Error: sync failure$/,
    );
    assert.equal(tf.getKernel("Neg", "cpu"), real, "restored after fn threw");
    await assert.rejects(
      withKernel("cpu", "Neg", identity, () => Promise.reject(new Error("async failure"))),
      /^Error: async failure$/,
    );
    assert.equal(tf.getKernel("Neg", "cpu"), real, "restored after fn rejected");
    // Nested replacements of the same kernel restore in turn.
    await withKernel("cpu", "Neg", identity, async () => {
      const outer = tf.getKernel("Neg", "cpu");
      await withKernel("cpu", "Neg", (f) => f, () => {});
      assert.equal(tf.getKernel("Neg", "cpu"), outer, "the outer replacement is back");
    });
    assert.equal(tf.getKernel("Neg", "cpu"), real);
    assert.deepEqual(await negX(), [-1, 2], "the original computes again");
    assert.equal(tf.memory().numTensors, before, "nothing leaked");
    // An unknown kernel is refused by name before anything is replaced.
    await assert.rejects(
      withKernel("cpu", "NoSuchKernel", identity, () => {}),
      /^Error: model\/kernel_testing\.ts: no cpu kernel NoSuchKernel registered$/,
    );
  } finally {
    x.dispose();
  }
});
