import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { preset } from "../model/config.ts";
import { DEFAULT_TRAIN } from "./spec.ts";
import { lossAndGrads } from "./trainer.ts";
import {
  methodTrainingStep,
  type MethodTrainingStepOptions,
  SYNTHETIC_MAX_ID,
  syntheticRows,
} from "./training_step.ts";
import { disposeBatch } from "./batching.ts";
import { getMethod } from "../model/methods/mod.ts";
import { disposeT5, initT5 } from "../model/t5.ts";

await tf.setBackend("cpu");

const CONFIG = { ...preset("tiny-v1_1"), vocabSize: 256, numLayers: 1, numDecoderLayers: 1 };

Deno.test("syntheticRows: tasks cycle row by row, ragged rows shorter, bad sizes named", () => {
  const rows = syntheticRows(5, 6, 4, 3, true);
  assert.deepEqual(rows.map((r) => r.taskId), [0, 1, 2, 0, 1]);
  assert.deepEqual(rows.map((r) => r.input.length), [6, 5, 4, 6, 5]);
  assert.deepEqual(rows.map((r) => r.target.length), [4, 3, 4, 3, 4]);
  assert.deepEqual(rows[1]!.input.slice(0, 2), [9, 10]);
  assert.deepEqual(rows[1]!.target.slice(0, 2), [5, 6]);
  for (const r of syntheticRows(64, 300, 2, 8)) {
    assert.ok([...r.input, ...r.target].every((id) => id >= 2 && id <= 201), "no pad or EOS");
  }
  assert.throws(() => syntheticRows(2, 2, 4, 1, true), /input length must be an integer >= 3/);
  assert.throws(() => syntheticRows(0, 4, 4, 1), /rows must be an integer >= 1, got 0/);
  assert.throws(() => syntheticRows(2, 4, 4, 0), /numTasks must be an integer >= 1, got 0/);
});

Deno.test("methodTrainingStep: the method's hooks run per task through lossAndGrads, nothing leaks", async () => {
  const before = tf.memory().numTensors;
  // Four tasks, three rows: tasks 0-2 are in the batch, task 3 is not.
  const tasks = ["cola", "sst2", "rte", "qqp"];
  const s = methodTrainingStep({
    config: CONFIG,
    modelSeed: 0,
    method: "adapter",
    tasks,
    methodSeed: 3,
    train: { ...DEFAULT_TRAIN, batchSize: 3, labelSmoothing: 0 },
    batchSize: 3,
    inputLength: 8,
    targetLength: 3,
    where: "training_step_test",
  });
  try {
    assert.equal(s.options.taskNames, tasks);
    assert.equal(s.varList.length, s.params.size);
    // The backbone is trained by the adapter's default; every method variable is trained too.
    assert.equal(s.params.size, s.model.params.size + s.instance.variables.size);
    assert.equal(s.allVariables.length, s.params.size);
    const batch = s.options.source.next();
    try {
      assert.deepEqual(batch.taskIds, [0, 1, 2]);
      assert.deepEqual(batch.inputIds.shape, [3, 8]);
      const { value, grads } = await lossAndGrads(s.options, batch, s.varList, 1);
      try {
        assert.ok(Number.isFinite((await value.data())[0]!));
        // The adapters' weights are stacked by task ([tasks, a, d]): the hooks gathered each
        // task's rows, so the tasks in the batch get a gradient and the absent one exactly 0.
        const up = s.params.get("adapter.encoder.0.self_attention.up.weight")!;
        const g = grads[up.name]!;
        const perTask = tf.tidy(() => tf.sum(tf.abs(g), [1, 2]));
        const sums = [...await perTask.data()];
        perTask.dispose();
        assert.ok(sums.slice(0, 3).every((x) => x > 0), `tasks in the batch: ${sums}`);
        assert.equal(sums[3], 0, "the task absent from the batch");
      } finally {
        tf.dispose([value, ...Object.values(grads)]);
      }
    } finally {
      disposeBatch(batch);
    }
  } finally {
    s.dispose();
  }
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("methodTrainingStep: a bad method configuration names the caller and leaks no weights", () => {
  const before = tf.memory().numTensors;
  const o: MethodTrainingStepOptions = {
    config: CONFIG,
    modelSeed: 0,
    method: "adapter",
    tasks: ["a"],
    methodSeed: 3,
    train: DEFAULT_TRAIN,
    batchSize: 1,
    inputLength: 4,
    targetLength: 2,
    where: "my caller",
  };
  assert.throws(() => methodTrainingStep({ ...o, methodConfig: { reduction: "x" } }), /my caller/);
  assert.throws(
    () => methodTrainingStep({ ...o, tasks: [] }),
    /\(my caller\): at least one task is needed/,
  );
  // A vocabulary the synthetic ids would overrun (WebGPU reads past a table silently).
  assert.throws(
    () => methodTrainingStep({ ...o, config: { ...CONFIG, vocabSize: SYNTHETIC_MAX_ID } }),
    /\(my caller\): the synthetic rows use token ids up to 201; the config's vocabSize 201/,
  );
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("methodTrainingStep: the backbone from modelSeed, the method's variables from methodSeed", async () => {
  const before = tf.memory().numTensors;
  const tasks = ["a", "b"];
  const s = methodTrainingStep({
    config: CONFIG,
    modelSeed: 1,
    method: "adapter",
    tasks,
    methodSeed: 3,
    train: DEFAULT_TRAIN,
    batchSize: 2,
    inputLength: 4,
    targetLength: 2,
    where: "training_step_test",
  });
  const m = getMethod("adapter");
  const ref = m.create(
    { config: CONFIG, tasks, seed: 3, backbone: s.model.params },
    m.parseConfig({}, "training_step_test"),
  );
  const model = initT5(CONFIG, { seed: 1 });
  try {
    const values = (vars: ReadonlyMap<string, tf.Variable>) =>
      Promise.all([...vars].map(async ([n, v]) => [n, [...await v.data()]]));
    assert.deepEqual(await values(s.instance.variables), await values(ref.variables));
    assert.deepEqual(await values(s.model.params), await values(model.params));
  } finally {
    ref.dispose();
    disposeT5(model);
    s.dispose();
  }
  assert.equal(tf.memory().numTensors, before);
});
