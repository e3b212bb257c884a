import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { preset, type T5Config } from "../model/config.ts";
import { disposeT5, greedyDecode, initT5 } from "../model/t5.ts";
import type { MethodInstance } from "../model/method.ts";
import type { Example } from "../tasks/types.ts";
import {
  benchmarkAverages,
  bestPerTask,
  evalSubset,
  evaluate,
  makeEvalSet,
  type Scorer,
} from "./evaluator.ts";
import type { TaskEval } from "./spec.ts";

await tf.setBackend("cpu");

const CONFIG: T5Config = { ...preset("tiny-v1_1"), vocabSize: 32, dropoutRate: 0 };
const IDS = { padTokenId: 0, eosTokenId: 1, decoderStartTokenId: 0 };
const NO_METHOD: MethodInstance = {
  name: "none",
  variables: new Map(),
  keepTaskPrefix: true,
  isBackboneTrainable: () => true,
  hooks: () => ({}),
  dispose: () => {},
};

function ex(i: number, group?: string): Example {
  return {
    task: "t",
    id: `t/validation/${i}`,
    input: `x${i}`,
    target: "y",
    ...(group ? { group } : {}),
  };
}

Deno.test("evalSubset() is deterministic, capped, keeps groups whole and file order", () => {
  const xs = Array.from({ length: 50 }, (_, i) => ex(i, `q${Math.floor(i / 5)}`));
  const a = evalSubset(xs, 12, "k");
  assert.deepEqual(a, evalSubset(xs, 12, "k"));
  assert.ok(a.length <= 12 && a.length >= 10, `size ${a.length}`);
  const groups = new Set(a.map((e) => e.group));
  for (const g of groups) assert.equal(a.filter((e) => e.group === g).length, 5, "whole groups");
  const idx = a.map((e) => xs.indexOf(e));
  assert.deepEqual(idx, [...idx].sort((p, q) => p - q));
  assert.notDeepEqual(evalSubset(xs, 12, "other").map((e) => e.id), a.map((e) => e.id));
  assert.equal(evalSubset(xs, null, "k"), xs);
  const singles = Array.from({ length: 30 }, (_, i) => ex(i));
  assert.equal(evalSubset(singles, 7, "k").length, 7);
});

Deno.test("makeEvalSet() splits the cap over splits and tightens decoding for labels", () => {
  const xs = Array.from({ length: 20 }, (_, i) => ex(i));
  const s = makeEvalSet("mnli", 2, [["validation_matched", xs], ["validation_mismatched", xs]], {
    cap: 6,
    encodeInput: (e) => [Number(e.input.slice(1)) + 2, 1],
    maxTargetLength: 10,
    labelTokenIds: [[5, 1], [6, 7, 1]],
  });
  assert.equal(s.examples.length, 6);
  assert.equal(s.maxNewTokens, 4);
  assert.equal(s.taskId, 2);
  assert.deepEqual(s.inputs[0], [Number(s.examples[0]!.input.slice(1)) + 2, 1]);
});

Deno.test("evaluate() batches by length, matches one-by-one decoding, leaks nothing", async () => {
  const model = initT5(CONFIG, { seed: 5 });
  const inputs = [[3, 4, 5, 6, 1], [7, 1], [8, 9, 10, 1], [11, 12, 1], [13, 1]];
  const examples = inputs.map((_, i) => ex(i));
  const set = { task: "t", taskId: 0, examples, inputs, maxNewTokens: 4 };
  let seen: string[] = [];
  const scorer: Scorer = {
    scoreTask: (_t, exs, preds) => {
      assert.equal(exs, examples);
      seen = preds;
      return { accuracy: 50, f1: 70 };
    },
    groupScore: (_t, m) => (m.accuracy! + m.f1!) / 2,
  };
  const decode = (ids: number[]) => ids.map((i) => `t${i}`).join(" ");
  const before = tf.memory().numTensors;
  const r = await evaluate(model, NO_METHOD, [set], {
    step: 7,
    batchSize: 2,
    ids: IDS,
    tokenizer: { decode },
    scorer,
  });
  assert.equal(tf.memory().numTensors, before);
  assert.deepEqual(r, [{ step: 7, task: "t", metrics: { accuracy: 50, f1: 70 }, groupScore: 60 }]);
  for (let i = 0; i < inputs.length; i++) {
    const ids = tf.tensor2d([inputs[i]!], [1, inputs[i]!.length], "int32");
    const mask = tf.onesLike(ids).toFloat() as tf.Tensor2D;
    const [g] = await greedyDecode(model, { inputIds: ids, attentionMask: mask }, {
      maxNewTokens: 4,
    });
    tf.dispose([ids, mask]);
    const end = g!.indexOf(1);
    // Padding in a batch must not change a row's greedy output (masked keys get ~0 weight).
    assert.equal(seen[i], decode(end < 0 ? g! : g!.slice(0, end)), `row ${i}`);
  }
  disposeT5(model);
});

Deno.test("bestPerTask() takes each task's best step (earliest on ties); averages", () => {
  const evals: TaskEval[] = [
    { step: 2, task: "rte", metrics: { accuracy: 50 }, groupScore: 50 },
    { step: 2, task: "cb", metrics: { f1: 40, accuracy: 60 }, groupScore: 50 },
    { step: 4, task: "rte", metrics: { accuracy: 60 }, groupScore: 60 },
    { step: 4, task: "cb", metrics: { f1: 30, accuracy: 50 }, groupScore: 40 },
    { step: 6, task: "rte", metrics: { accuracy: 60 }, groupScore: 60 },
    { step: 6, task: "cb", metrics: { f1: NaN, accuracy: 70 }, groupScore: NaN },
  ];
  const best = bestPerTask(evals);
  assert.deepEqual(best.rte, { step: 4, metrics: { accuracy: 60 }, groupScore: 60 });
  assert.deepEqual(best.cb, { step: 2, metrics: { f1: 40, accuracy: 60 }, groupScore: 50 });
  // Partial benchmark: plain mean; complete: the official average function.
  assert.deepEqual(benchmarkAverages("super_glue", best, ["rte", "cb", "wic"], () => -1), {
    super_glue: 55,
  });
  assert.deepEqual(benchmarkAverages("super_glue", best, ["rte", "cb"], () => 42), {
    super_glue: 42,
  });
  assert.deepEqual(benchmarkAverages("glue", {}, ["rte"], () => 1), {});
});
