import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { preset, type T5Config } from "../model/config.ts";
import { disposeT5, greedyDecode, initT5 } from "../model/t5.ts";
import type { MethodInstance } from "../model/method.ts";
import type { Example, TaskSplit } from "../tasks/types.ts";
import {
  benchmarkAverages,
  bestPerTask,
  bestStepAverage,
  evalSubset,
  evaluate,
  EvaluationStoppedError,
  improvesOn,
  makeEvalSet,
  type Scorer,
} from "./evaluator.ts";
import { predictionsDigest, type TaskEval } from "./spec.ts";
import { benchmarkAverage } from "../tasks/metrics.ts";
import { BENCHMARK_TASKS } from "../tasks/registry.ts";
import { clearStopRequest, requestStop } from "./trainer.ts";

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
  assert.equal(a.length, 15, "whole groups of 5 until 12 or more");
  const groups = new Set(a.map((e) => e.group));
  for (const g of groups) assert.equal(a.filter((e) => e.group === g).length, 5, "whole groups");
  const idx = a.map((e) => xs.indexOf(e));
  assert.deepEqual(idx, [...idx].sort((p, q) => p - q));
  assert.notDeepEqual(evalSubset(xs, 12, "other").map((e) => e.id), a.map((e) => e.id));
  assert.equal(evalSubset(xs, null, "k"), xs);
  const singles = Array.from({ length: 30 }, (_, i) => ex(i));
  assert.equal(evalSubset(singles, 7, "k").length, 7);
});

Deno.test("evalSubset(): a group's size does not decide whether it is taken (no bias to small groups)", () => {
  // 400 questions of 1 to 12 answers (6.5 on average). Every subset is the groups drawn until
  // the cap is reached, so over many keys the kept questions average about 6.5 answers too;
  // skipping groups that would pass the cap kept 4.4 at cap 20.
  const xs: ReturnType<typeof ex>[] = [];
  for (let q = 0; q < 400; q++) {
    for (let a = 0; a < 1 + (q * 7) % 12; a++) xs.push(ex(xs.length, `q${q}`));
  }
  const all = xs.length / 400;
  let answers = 0, questions = 0;
  for (let k = 0; k < 200; k++) {
    const sub = evalSubset(xs, 20, `k${k}`);
    const groups = new Set(sub.map((e) => e.group));
    // At the cap or past it by less than the last group.
    assert.ok(sub.length >= 20 && sub.length < 20 + 12, `${sub.length}`);
    answers += sub.length;
    questions += groups.size;
  }
  // Tolerance: the sample mean of ~700 group sizes (sd 3.5) has an sd of ~0.13; the cut at the
  // cap drops a group's overshoot, not its size. 0.6 is about 4.5 sd: no chance failure.
  const kept = answers / questions;
  assert.ok(Math.abs(kept - all) < 0.6, `kept ${kept.toFixed(2)} answers a question, all ${all}`);
});

Deno.test("makeEvalSet() splits the cap over splits and tightens decoding for labels", () => {
  const xs = Array.from({ length: 20 }, (_, i) => ex(i));
  const s = makeEvalSet("mnli", 2, [["validation_matched", xs], ["validation_mismatched", xs]], {
    cap: 6,
    encodeInput: (e) => [Number(e.input.slice(1)) + 2, 1],
    maxTargetLength: 10,
    labels: { words: ["a", "b"], tokenIds: [[5, 1], [6, 7, 1]] },
  });
  assert.equal(s.examples.length, 6);
  assert.equal(s.maxNewTokens, 4);
  assert.deepEqual(s.untightened, { labelWords: ["a", "b"], maxNewTokens: 10 });
  assert.equal(s.taskId, 2);
  assert.deepEqual(s.inputs[0], [Number(s.examples[0]!.input.slice(1)) + 2, 1]);
  const common = { cap: null, encodeInput: () => [1], maxTargetLength: 4 };
  // No labels (STS-B, ReCoRD, WSC), or labels too long to tighten: the run's limit, as it is.
  const free = makeEvalSet("stsb", 0, [["validation", xs]], common);
  assert.equal(free.maxNewTokens, 4);
  assert.equal(free.untightened, undefined);
  const long = makeEvalSet("rte", 0, [["validation", xs]], {
    ...common,
    labels: { words: ["a", "b"], tokenIds: [[5, 1], [6, 7, 1]] },
  });
  assert.equal(long.maxNewTokens, 4);
  assert.equal(long.untightened, undefined);
  assert.throws(
    () =>
      makeEvalSet("rte", 0, [["validation", xs]], {
        ...common,
        labels: { words: ["a"], tokenIds: [[5, 1], [6, 1]] },
      }),
    /task rte has 1 label words but 2 token id lists/,
  );
});

Deno.test("makeEvalSet() gives each split ceil(cap / splits) examples: an odd cap over MNLI's two scores one more", () => {
  const split = (name: TaskSplit) =>
    Array.from({ length: 20 }, (_, i) => ({ ...ex(i), id: `mnli/${name}/${i}` }));
  const bySplit = (names: TaskSplit[]) => names.map((n) => [n, split(n)] as const);
  /** Examples kept from each split, in the order given. */
  const counts = (names: TaskSplit[], cap: number) => {
    const s = makeEvalSet("mnli", 2, bySplit(names), {
      cap,
      encodeInput: () => [1],
      maxTargetLength: 4,
    });
    return names.map((n) => s.examples.filter((e) => e.id.startsWith(`mnli/${n}/`)).length);
  };
  const mnli: TaskSplit[] = ["validation_matched", "validation_mismatched"];
  // ceil(7 / 2) = 4 each: 8 in all, one more than the cap (rounding down would give 3 + 3).
  assert.deepEqual(counts(mnli, 7), [4, 4]);
  assert.deepEqual(counts(mnli, 1), [1, 1]);
  assert.deepEqual(counts(mnli, 6), [3, 3]);
  // A cap at or above the examples (20 per split) keeps every one of each split.
  assert.deepEqual(counts(mnli, 40), [20, 20]);
  assert.deepEqual(counts(mnli, 41), [20, 20]);
  assert.deepEqual(counts(mnli, 1000), [20, 20]);
  // Three splits, cap 7: ceil(7/3) = 3 each, where rounding to nearest or down gives 2.
  assert.deepEqual(counts(["validation", ...mnli], 7), [3, 3, 3]);
});

Deno.test("evalSubset() returns all examples for a cap at or above their number, a group past a smaller cap", () => {
  const xs = Array.from({ length: 10 }, (_, i) => ex(i, `q${Math.floor(i / 5)}`));
  // The examples themselves, not a copy: nothing is drawn.
  for (const cap of [10, 11, 1000]) assert.equal(evalSubset(xs, cap, "k"), xs, `cap ${cap}`);
  // A cap at or below the first group drawn keeps that group whole (5 examples), never nothing.
  for (const cap of [1, 3, 5]) {
    const got = evalSubset(xs, cap, "k");
    assert.equal(got.length, 5, `cap ${cap}`);
    assert.equal(new Set(got.map((e) => e.group)).size, 1, `cap ${cap}: one group`);
  }
  // Past the first group, the next is drawn whole: 10.
  assert.equal(evalSubset(xs, 9, "k").length, 10);
});

Deno.test("evalSubset(), makeEvalSet(): a cap that is not a positive integer is refused, naming cap", () => {
  const xs = Array.from({ length: 20 }, (_, i) => ex(i));
  const bySplit = [["validation_matched", xs], ["validation_mismatched", xs]] as const;
  for (const cap of [0, -1, 1.5, NaN, Infinity]) {
    assert.throws(
      () => makeEvalSet("mnli", 2, bySplit, { cap, encodeInput: () => [1], maxTargetLength: 4 }),
      new RegExp(
        `^Error: benchmarks/evaluator\\.ts makeEvalSet: task mnli: cap must be a positive integer or null, got ${cap}$`,
      ),
      `makeEvalSet cap ${cap}`,
    );
    assert.throws(
      () => evalSubset(xs, cap, "rte/validation"),
      new RegExp(
        `^Error: benchmarks/evaluator\\.ts evalSubset \\(rte/validation\\): cap must be a positive integer or null, got ${cap}$`,
      ),
      `evalSubset cap ${cap}`,
    );
  }
});

Deno.test("evaluate() with a tightened limit scores as decoding to the run's limit", async () => {
  // The same random model and inputs as below; greedy outputs over 10 tokens (measured):
  //   [3,4,5,6,1] → 18 ×10   [7,1] → 18,12,18,12,…   [8,9,10,1] → EOS
  //   [11,12,1] → 3,10,25,15,13,2,16,25,15,13   [13,1] → 3,11,6,21,5,26,11,25,19,25
  // A tokenizer that skips every id as special except 2 ("yes") and 18 ("q"): the fourth row's
  // first 3 tokens decode to "" but its first 10 to "yes", a label word. Labels of 1 token + EOS
  // tighten the limit to 3.
  const model = initT5(CONFIG, { seed: 5 });
  const inputs = [[3, 4, 5, 6, 1], [7, 1], [8, 9, 10, 1], [11, 12, 1], [13, 1]];
  const examples = inputs.map((_, i) => ex(i));
  const xs = inputs.map((r) => [...r]);
  const set = makeEvalSet("t", 0, [["validation", examples]], {
    cap: null,
    encodeInput: (e) => xs[Number(e.input.slice(1))]!,
    maxTargetLength: 10,
    labels: { words: ["yes", "no"], tokenIds: [[5, 1], [6, 1]] },
  });
  assert.equal(set.maxNewTokens, 3);
  const decode = (ids: number[]) =>
    ids.map((i) => (i === 2 ? "yes" : i === 18 ? "q" : "")).join("");
  let seen: string[] = [];
  const scorer: Scorer = {
    scoreTask: (_t, _exs, preds) => {
      seen = preds;
      return { accuracy: 100 * preds.filter((p) => p === "yes").length / preds.length };
    },
    groupScore: (_t, m) => m.accuracy!,
  };
  const before = tf.memory().numTensors;
  const [r] = await evaluate(model, NO_METHOD, [set], {
    step: 1,
    batchSize: 2,
    ids: IDS,
    tokenizer: { decode },
    scorer,
  });
  assert.equal(tf.memory().numTensors, before);
  // Rows 0 and 1 ("qqq", "qq") can become no label word: kept as cut (as invalid as their full
  // text). Row 3 is decoded again to 10 tokens: "yes", as untightened decoding scores it.
  assert.deepEqual(seen, ["qqq", "qq", "", "yes", ""]);
  assert.equal(r!.groupScore, 20);
  // Without invalidPredictions, none recorded; with it, the count of the decoded predictions.
  assert.equal(r!.invalid, undefined);
  const counted: string[][] = [];
  const [v] = await evaluate(model, NO_METHOD, [set], {
    step: 1,
    batchSize: 2,
    ids: IDS,
    tokenizer: { decode },
    scorer: {
      ...scorer,
      invalidPredictions: (
        _t,
        preds,
      ) => (counted.push([...preds]), preds.filter((p) => p !== "yes" && p !== "no").length),
    },
  });
  assert.deepEqual(counted, [["qqq", "qq", "", "yes", ""]]);
  assert.deepEqual(v!.invalid, { count: 4, of: 5 });
  // The best evaluation keeps it.
  assert.deepEqual(bestPerTask([v!]).t, {
    step: 1,
    metrics: v!.metrics,
    groupScore: 20,
    invalid: v!.invalid,
  });
  // A scorer that counts none for the task (ReCoRD): nothing recorded.
  const [u] = await evaluate(model, NO_METHOD, [set], {
    step: 1,
    batchSize: 2,
    ids: IDS,
    tokenizer: { decode },
    scorer: { ...scorer, invalidPredictions: () => undefined },
  });
  assert.equal(Object.hasOwn(u!, "invalid"), false);
  disposeT5(model);
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
  const options: unknown[] = [];
  const before = tf.memory().numTensors;
  const r = await evaluate(model, NO_METHOD, [set], {
    step: 7,
    batchSize: 2,
    ids: IDS,
    tokenizer: { decode: (ids, o) => (options.push(o), decode(ids)) },
    scorer,
  });
  // Decoded as T5 does: <unk> and the sentinels written as SentencePiece's " ⁇ ", not dropped.
  assert.deepEqual(options, inputs.map(() => ({ skipSpecialTokens: true, unknownAs: " \u2047 " })));
  assert.equal(tf.memory().numTensors, before);
  assert.deepEqual(r, [{
    step: 7,
    task: "t",
    metrics: { accuracy: 50, f1: 70 },
    groupScore: 60,
    // The digest of what was scored: each example's id with its prediction.
    predictionsSha256: predictionsDigest(examples.map((e) => e.id), seen),
  }]);
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

Deno.test("evaluate() leaks nothing when decoding throws partway (a hook failing in the second batch's decoder)", async () => {
  const model = initT5(CONFIG, { seed: 5 });
  const inputs = [[3, 4, 1], [5, 1], [6, 7, 8, 1], [9, 1]];
  const set = {
    task: "t",
    taskId: 0,
    examples: inputs.map((_, i) => ex(i)),
    inputs,
    maxNewTokens: 3,
  };
  let batches = 0;
  const failing: MethodInstance = {
    ...NO_METHOD,
    hooks: () => {
      batches++;
      return {
        afterSublayer: (stack, _layer, _sublayer, y) => {
          if (batches === 2 && stack === "decoder") throw new Error("hook failed");
          return y;
        },
      };
    },
  };
  const scorer: Scorer = { scoreTask: () => ({ accuracy: 0 }), groupScore: () => 0 };
  const before = tf.memory().numTensors;
  await assert.rejects(
    evaluate(model, failing, [set], {
      step: 1,
      batchSize: 2,
      ids: IDS,
      tokenizer: { decode: () => "" },
      scorer,
    }),
    /hook failed/,
  );
  assert.equal(batches, 2, "the first batch decoded, the second failed");
  assert.equal(tf.memory().numTensors, before, "the batch's input ids and mask are freed");
  disposeT5(model);
});

Deno.test("evaluate() refuses a batch size that is not a positive integer", async () => {
  // 0 and NaN failed inside tfjs with a shape error naming no option; 1.5 decoded a row twice
  // (rows [0, 1.5) then [1.5, 3) = rows 1 and 2).
  const model = initT5(CONFIG, { seed: 5 });
  const inputs = [[3, 4, 1], [7, 1], [8, 9, 1]];
  const set = {
    task: "t",
    taskId: 0,
    examples: inputs.map((_, i) => ex(i)),
    inputs,
    maxNewTokens: 2,
  };
  let scored = 0;
  const scorer: Scorer = {
    scoreTask: () => (scored++, { accuracy: 1 }),
    groupScore: () => 1,
  };
  const before = tf.memory().numTensors;
  for (const batchSize of [0, -2, 1.5, NaN]) {
    await assert.rejects(
      () =>
        evaluate(model, NO_METHOD, [set], {
          step: 1,
          batchSize,
          ids: IDS,
          tokenizer: { decode: (ids) => ids.join(" ") },
          scorer,
        }),
      new RegExp(
        `^Error: benchmarks/evaluator\\.ts evaluate: batchSize must be a positive integer, got ${batchSize}$`,
      ),
      String(batchSize),
    );
  }
  assert.equal(scored, 0, "nothing scored");
  assert.equal(tf.memory().numTensors, before);
  disposeT5(model);
});

Deno.test("evaluate() abandons its decoding between batches on a stop request, keeping no tensor", async () => {
  const model = initT5(CONFIG, { seed: 5 });
  const inputs = [[3, 4, 1], [7, 1], [8, 9, 1], [5, 1], [6, 2, 1]];
  const set = { task: "t", taskId: 0, examples: inputs.map((_, i) => ex(i)), inputs };
  let scored = 0;
  const scorer: Scorer = { scoreTask: () => (scored++, { accuracy: 1 }), groupScore: () => 1 };
  // decode() runs once per row after its batch is decoded: it counts the rows decoded and, at
  // `stopAt`, asks to stop (as a signal would, while that batch ran).
  const run = async (stopAt: number, shouldStop?: () => string | undefined) => {
    let decoded = 0;
    const err = await evaluate(model, NO_METHOD, [{ ...set, maxNewTokens: 2 }], {
      step: 6,
      batchSize: 2,
      ids: IDS,
      tokenizer: {
        decode: (ids) => {
          if (++decoded === stopAt) requestStop("SIGTERM");
          return ids.join(" ");
        },
      },
      scorer,
      ...(shouldStop === undefined ? {} : { shouldStop }),
    }).then(() => undefined, (e) => e);
    return { err, decoded };
  };
  const before = tf.memory().numTensors;
  try {
    // Default: the process-wide request. Requested in the second batch (rows 3-4 of 5): the
    // third batch is not decoded.
    const a = await run(3);
    assert.ok(a.err instanceof EvaluationStoppedError, String(a.err));
    assert.equal(a.err.evaluationStopped, true);
    assert.deepEqual([a.err.reason, a.err.step, a.err.task, a.err.decoded, a.err.rows], [
      "SIGTERM",
      6,
      "t",
      4,
      5,
    ]);
    assert.match(a.err.message, /^evaluation of step 6 stopped by SIGTERM \(task t, after 4 of/);
    assert.equal(a.decoded, 4, "no batch decoded after the request");
    clearStopRequest();
    // A request already pending: nothing is decoded.
    requestStop("SIGINT");
    const b = await run(0);
    assert.equal(b.decoded, 0);
    assert.equal((b.err as EvaluationStoppedError).reason, "SIGINT");
    clearStopRequest();
    // An explicit shouldStop replaces the process-wide request.
    const c = await run(1, () => undefined);
    assert.equal(c.err, undefined, "the process-wide request is not consulted");
    assert.equal(c.decoded, 5);
    assert.equal(scored, 1, "only the evaluation that finished was scored");
    clearStopRequest();
    let calls = 0;
    const d = await run(0, () => ++calls === 2 ? "custom" : undefined);
    assert.equal(d.decoded, 2);
    assert.equal((d.err as EvaluationStoppedError).reason, "custom");
    assert.equal(tf.memory().numTensors, before, "nothing kept by the abandoned evaluations");
  } finally {
    clearStopRequest();
    disposeT5(model);
  }
});

Deno.test("evaluate() sees a real signal's stop request at a batch boundary (it yields to the event loop)", async () => {
  // A signal listener runs only when the event loop turns; decoding on cpu/wasm awaits only
  // settled promises, so without a yield the request would be seen after the whole evaluation.
  const model = initT5(CONFIG, { seed: 5 });
  // 12 batches of 2 rows of one length (decoded in example order).
  const inputs = Array.from({ length: 24 }, (_, i) => [3 + (i % 8), 1]);
  const set = { task: "t", taskId: 0, examples: inputs.map((_, i) => ex(i)), inputs };
  const scorer: Scorer = { scoreTask: () => ({ accuracy: 1 }), groupScore: () => 1 };
  const listener = () => requestStop("SIGTERM");
  Deno.addSignalListener("SIGTERM", listener);
  let decoded = 0;
  try {
    const err = await evaluate(model, NO_METHOD, [{ ...set, maxNewTokens: 2 }], {
      step: 2,
      batchSize: 2,
      ids: IDS,
      tokenizer: {
        decode: (ids) => {
          // The signal arrives while the first batch is decoded (synchronous code). Deno hands
          // it to the event loop from another thread, a few ms later (7 ms for a process's
          // first signal here, tens under load): each row takes 10 ms of synchronous work here
          // (the first after the signal), so that it has arrived by a batch boundary, as in a
          // real decode.
          if (++decoded === 1) Deno.kill(Deno.pid, "SIGTERM");
          const t0 = performance.now();
          while (performance.now() - t0 < 10);
          return ids.join(" ");
        },
      },
      scorer,
    }).then(() => undefined, (e) => e);
    // Normally after the first batch (2 rows); a batch or more later on a loaded machine.
    // Without the yield it is never seen: every row is decoded and nothing stops.
    assert.ok(err instanceof EvaluationStoppedError, `${err}: not stopped (${decoded} decoded)`);
    assert.ok(
      err.decoded >= 2 && err.decoded < inputs.length,
      `stopped after ${err.decoded} rows, expected 2 (more under load)`,
    );
    assert.equal(decoded, err.decoded, "nothing decoded after the stop");
  } finally {
    Deno.removeSignalListener("SIGTERM", listener);
    clearStopRequest();
    disposeT5(model);
  }
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
  // A task outside the benchmark's average (WNLI, the AX diagnostics: NaN group score) is left
  // out of the partial mean as the official average leaves it out; it was averaged in (NaN).
  const withAx = {
    ...best,
    axb: { step: 2, metrics: { matthews_corrcoef: 10 }, groupScore: NaN },
  };
  assert.deepEqual(benchmarkAverages("super_glue", withAx, ["rte", "cb", "wic"], () => -1), {
    super_glue: 55,
  });
  assert.deepEqual(benchmarkAverages("super_glue", { axb: withAx.axb }, ["rte"], () => -1), {});
});

Deno.test("improvesOn(): bestPerTask's rule, one evaluation at a time", () => {
  const e = (step: number, groupScore: number) => ({ step, groupScore });
  assert.equal(improvesOn(e(4, NaN), undefined), true, "anything beats no best");
  assert.equal(improvesOn(e(8, 0), e(4, NaN)), true, "NaN counts as -Infinity");
  assert.equal(improvesOn(e(8, NaN), e(4, NaN)), false, "a later NaN ties, and loses");
  assert.equal(improvesOn(e(8, 50), e(4, 50)), false, "a later tie loses");
  assert.equal(improvesOn(e(2, 50), e(4, 50)), true, "an earlier tie wins");
  assert.equal(improvesOn(e(8, 50.5), e(4, 50)), true);
  assert.equal(improvesOn(e(8, 49), e(4, 50)), false);
  // bestPerTask folds exactly this rule over the evaluations in any order.
  const evals: TaskEval[] = [e(8, 60), e(4, 60), e(12, NaN), e(2, 10)].map((x) => ({
    ...x,
    task: "cb",
    metrics: {},
  }));
  let best: TaskEval | undefined;
  for (const x of evals) if (improvesOn(x, best)) best = x;
  assert.equal(bestPerTask(evals).cb!.step, best!.step);
  assert.equal(best!.step, 4);
});

/** GLUE group scores at one step, as evaluations (the brief's worked example's shape). */
function stepEvals(step: number, scores: Record<string, number>): TaskEval[] {
  return Object.entries(scores).map(([task, groupScore]) => ({
    step,
    task,
    metrics: {},
    groupScore,
  }));
}

const SHARED = { mrpc: 85, stsb: 85, qqp: 85, mnli: 80, qnli: 88 };
const WORKED: TaskEval[] = [
  ...stepEvals(2000, { ...SHARED, cola: 60, sst2: 90, rte: 70 }),
  ...stepEvals(4000, { ...SHARED, cola: 50, sst2: 94, rte: 78 }),
];

Deno.test("bestStepAverage(): T5 parse_tb's max over steps of the step average, below the mean of per-task bests", () => {
  const glue = BENCHMARK_TASKS.glue;
  // Step 2000: (60+90+85+85+85+80+88+70)/8 = 80.375; step 4000: (50+94+...+78)/8 = 80.625.
  assert.equal(bestStepAverage("glue", WORKED, glue, benchmarkAverage), 80.625);
  // The main column takes CoLA from step 2000 and SST-2, RTE from 4000: (60+94+...+78)/8.
  assert.deepEqual(
    benchmarkAverages("glue", bestPerTask(WORKED), glue, benchmarkAverage),
    { glue: 81.875 },
  );
  // A step lacking one task (RTE) is skipped, however high its other scores; a task outside the
  // average (AX, NaN group score) neither completes nor spoils a step.
  const { rte: _rte, ...noRte } = { ...SHARED, cola: 99, sst2: 99, rte: 0 };
  const more = [
    ...WORKED,
    ...stepEvals(6000, { ...noRte, mrpc: 99, ax: NaN }),
    ...stepEvals(2000, { ax: NaN }),
  ];
  assert.equal(bestStepAverage("glue", more, glue, benchmarkAverage), 80.625);
  // A step whose average is NaN ranks below every number (improvesOn's rule), wherever it is.
  const nanFirst = [...stepEvals(1000, { ...SHARED, cola: NaN, sst2: 99, rte: 99 }), ...WORKED];
  assert.equal(bestStepAverage("glue", nanFirst, glue, benchmarkAverage), 80.625);
  assert.ok(Number.isNaN(bestStepAverage("glue", nanFirst.slice(0, 8), glue, benchmarkAverage)!));
  // The average function is the caller's (the run's scorer), applied to the complete steps only.
  const seen: number[] = [];
  const avg = (_b: string, s: Record<string, number>) => {
    seen.push(Object.keys(s).length);
    return s["cola"]!;
  };
  assert.equal(bestStepAverage("glue", more, glue, avg), 60);
  assert.deepEqual(seen, [8, 8]);
  // No step evaluated every task (a partial run, or no evaluations at all): no value.
  assert.equal(
    bestStepAverage("glue", WORKED.filter((e) => e.task !== "rte"), glue, avg),
    undefined,
  );
  assert.equal(bestStepAverage("glue", [], glue, avg), undefined);
  assert.throws(
    () => bestStepAverage("glue", [...WORKED, ...stepEvals(4000, { rte: 1 })], glue, avg),
    /task rte has two evaluations at step 4000/,
  );
});
