/**
 * Tests of autotune.ts's bookkeeping: {@link tuneShapes} with every shape already measured (so
 * nothing is timed and no GPU is needed; a stand-in backend gives the device limits it reads) and
 * {@link newTuningTable}, and {@link recordGradientShapesAndDispose}'s order and cleanup (on cpu no
 * custom kernel counts a shape). Timing itself runs in `benchmarks/tune_test.ts` on a real adapter.
 */
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { newTuningTable, recordGradientShapesAndDispose, tuneShapes } from "./autotune.ts";
import { TUNING_FORMAT, TUNING_VERSION } from "./tuning.ts";

// cpu, not the webgpu backend that mod.ts's import registers (no adapter is needed here).
await tf.setBackend("cpu");

Deno.test("tuneShapes: per-step ms weighted by calls, the rule's and the tuned choice's; a rejected rule named", async () => {
  const name = "hp-test-autotune";
  const cpu = tf.findBackend("cpu")!;
  tf.registerBackend(name, () => {
    const be = new (cpu.constructor as new () => tf.KernelBackend)();
    // What tuneShapes reads of a webgpu backend: its device's limits.
    return Object.assign(be, { device: { limits: { maxComputeWorkgroupsPerDimension: 65535 } } });
  }, 0);
  try {
    assert.ok(await tf.setBackend(name));
    const calls = { "1x1 m8 n8 k8 NN": 3, "1x1 m64 n64 k64 NT": 2, "1x1 m4 n4 k4 NN": 1 };
    const done = {
      "1x1 m8 n8 k8 NN": { choice: "t32", heuristic: "stock", ms: { stock: 2, t32: 1 } },
      "1x1 m64 n64 k64 NT": { choice: "t64", heuristic: "t32", ms: { t32: 5, t64: 4 } },
      // The rule's own choice gave a wrong product here: not timed, so not in ms.
      "1x1 m4 n4 k4 NN": { choice: "t32", heuristic: "stock", ms: { t32: 0.5 } },
    };
    const log: string[] = [];
    const r = await tuneShapes(calls, { reps: 1, rounds: 1, done, log: (l) => log.push(l) });
    assert.equal(r.ruleMs, 3 * 2 + 2 * 5);
    assert.equal(r.tunedMs, 3 * 1 + 2 * 4 + 1 * 0.5);
    assert.deepEqual(r.ruleRejected, ["1x1 m4 n4 k4 NN"]);
    for (const [key, n] of Object.entries(calls)) {
      assert.deepEqual(r.entries[key], { ...done[key as keyof typeof done], calls: n }, key);
    }
    // Largest products first.
    assert.deepEqual(log.map((l) => l.split(" ×")[0]), [
      "1x1 m64 n64 k64 NT",
      "1x1 m8 n8 k8 NN",
      "1x1 m4 n4 k4 NN",
    ]);
    assert.match(log[2]!, /stock rejected \(wrong product\) ms -> t32 0\.5 ms/);
  } finally {
    await tf.setBackend("cpu");
    tf.removeBackend(name);
  }
});

Deno.test("newTuningTable: format, version, adapter, entries, and the versions that measured them", () => {
  const adapter = { vendor: "v", architecture: "a", device: "d", description: "GPU" };
  const entries = {
    "1x1 m8 n8 k8 NN": { choice: "t32", heuristic: "stock", ms: { stock: 2, t32: 1 } },
  };
  const t0 = Date.now();
  const t = newTuningTable(adapter, entries, { command: "tune", reps: 3 });
  const t1 = Date.now();
  assert.equal(t.format, TUNING_FORMAT);
  assert.equal(t.version, TUNING_VERSION);
  assert.deepEqual(t.adapter, adapter);
  assert.deepEqual(t.entries, entries);
  assert.deepEqual(t.provenance, {
    command: "tune",
    reps: 3,
    tfjs: tf.version.tfjs,
    deno: Deno.version.deno,
  });
  // Stamped when it is made: between the two readings of the clock around the call (ISO, ms).
  const created = Date.parse(t.created);
  assert.ok(t0 <= created && created <= t1, `${t.created} not in [${t0}, ${t1}]`);
});

Deno.test("recordGradientShapesAndDispose: one gradient pass, then the workload disposed; also when the pass throws", async () => {
  const before = tf.memory().numTensors;
  const workload = (fail: boolean) => {
    const events: string[] = [];
    const init = tf.tensor1d([1, 2, 3]);
    const w = tf.variable(init);
    init.dispose(); // the variable holds its own reference to the data
    const x = tf.tensor1d([4, 5, 6]);
    return {
      events,
      vars: [w],
      loss: (): tf.Scalar => {
        events.push("loss");
        if (fail) throw new Error("out of memory");
        return tf.sum(tf.mul(w, x)) as tf.Scalar;
      },
      dispose: () => {
        events.push("dispose");
        tf.dispose([w, x]);
      },
    };
  };
  const ok = workload(false);
  // On cpu no custom webgpu kernel ran, so no shape is counted; the pass still ran before dispose.
  assert.deepEqual(await recordGradientShapesAndDispose(ok), {});
  assert.deepEqual(ok.events, ["loss", "dispose"]);
  assert.equal(tf.memory().numTensors, before, "the gradients and the workload are freed");

  const bad = workload(true);
  await assert.rejects(recordGradientShapesAndDispose(bad), /out of memory/);
  assert.deepEqual(bad.events, ["loss", "dispose"]);
  assert.equal(tf.memory().numTensors, before, "freed when the pass throws");
});
