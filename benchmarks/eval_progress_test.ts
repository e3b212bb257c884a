/**
 * Decode progress of evaluations and test-set predictions: `evaluator.ts` `decodeSet`'s
 * `onDecoded`, `runOne`'s `phase: "decode"` reports, and how the bench's bars draw them.
 */
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { existsSync } from "node:fs";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { preset, type T5Config } from "../model/config.ts";
import { disposeT5, initT5 } from "../model/t5.ts";
import type { MethodInstance } from "../model/method.ts";
import type { Example } from "../tasks/types.ts";
import { inTempDir } from "../model/fs_testing.ts";
import { sharedPath } from "../model/shared_dir.ts";
import { decodeSet, evaluate, makeEvalSet, type Scorer } from "./evaluator.ts";
import { runOneWith, type RunScorer } from "./run_one.ts";
import { progressInfo, progressReporter } from "./cli.ts";
import {
  DEFAULT_TRAIN,
  type RunDecodeProgress,
  runId,
  type RunProgress,
  type RunSpec,
} from "./spec.ts";

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
const DATA = sharedPath("data");
const HAVE_CB = existsSync(sharedPath("data/super_glue/CB/train.jsonl")) &&
  existsSync(sharedPath("data/super_glue/CB/test.jsonl"));

function ex(task: string, i: number): Example {
  return { task, id: `${task}/validation/${i}`, input: `x${i}`, target: "y" };
}

/**
 * Asserts that `calls` (one task's `[done, total]`, in order) start at 0 done, never go back,
 * never pass `total`, and end with all of `total` done, having reported at least `batches + 1`
 * times (the start, then each batch).
 */
function assertRising(calls: readonly (readonly [number, number])[], batches: number): void {
  const what = JSON.stringify(calls);
  assert.ok(calls.length >= batches + 1, `a report before and after each batch: ${what}`);
  assert.equal(calls[0]![0], 0, `starts at 0: ${what}`);
  for (let i = 1; i < calls.length; i++) {
    const [d0, t0] = calls[i - 1]!;
    const [d1, t1] = calls[i]!;
    assert.ok(d1 >= d0 && t1 >= t0, `never back: ${what}`);
    assert.ok(d1 > d0 || t1 > t0, `each report says something new: ${what}`);
  }
  for (const [d, t] of calls) assert.ok(d <= t, `done ≤ total: ${what}`);
  const [d, t] = calls[calls.length - 1]!;
  assert.equal(d, t, `ends done: ${what}`);
}

Deno.test("evaluate() reports each set's decoding: 0, then after every batch, up to its rows", async () => {
  const model = initT5(CONFIG, { seed: 5 });
  const a = [[3, 4, 5, 6, 1], [7, 1], [8, 9, 10, 1], [11, 12, 1], [13, 1]];
  const b = [[5, 1], [6, 7, 1], [9, 1]];
  const set = (task: string, inputs: number[][]) => ({
    task,
    taskId: 0,
    examples: inputs.map((_, i) => ex(task, i)),
    inputs,
    maxNewTokens: 4,
  });
  const scorer: Scorer = { scoreTask: () => ({ accuracy: 1 }), groupScore: () => 1 };
  const calls: [string, number, number][] = [];
  const before = tf.memory().numTensors;
  await evaluate(model, NO_METHOD, [set("a", a), set("b", b)], {
    step: 3,
    batchSize: 2,
    ids: IDS,
    tokenizer: { decode: (ids) => ids.join(" ") },
    scorer,
    onDecoded: (task, done, total) => void calls.push([task, done, total]),
  });
  assert.equal(tf.memory().numTensors, before);
  // No tightened limit: exactly the start and one report per batch of 2, set by set.
  assert.deepEqual(calls, [
    ["a", 0, 5],
    ["a", 2, 5],
    ["a", 4, 5],
    ["a", 5, 5],
    ["b", 0, 3],
    ["b", 2, 3],
    ["b", 3, 3],
  ]);
  disposeT5(model);
});

Deno.test("decodeSet() counts the rows decoded again to the run's limit: the total grows once they are known", async () => {
  // evaluator_test's tightened case: rows 3 and 4 do not end within the tightened 3 tokens and
  // decode to "" (a prefix of every label word), so they are decoded again to 10 tokens.
  const model = initT5(CONFIG, { seed: 5 });
  const inputs = [[3, 4, 5, 6, 1], [7, 1], [8, 9, 10, 1], [11, 12, 1], [13, 1]];
  const examples = inputs.map((_, i) => ex("t", i));
  const set = makeEvalSet("t", 0, [["validation", examples]], {
    cap: null,
    encodeInput: (e) => inputs[Number(e.input.slice(1))]!,
    maxTargetLength: 10,
    labels: { words: ["yes", "no"], tokenIds: [[5, 1], [6, 1]] },
  });
  assert.equal(set.maxNewTokens, 3);
  const decode = (ids: number[]) =>
    ids.map((i) => (i === 2 ? "yes" : i === 18 ? "q" : "")).join("");
  const calls: [number, number][] = [];
  const before = tf.memory().numTensors;
  const out = await decodeSet(model, NO_METHOD, set, {
    step: 1,
    batchSize: 2,
    ids: IDS,
    tokenizer: { decode },
    onDecoded: (task, done, total) => {
      assert.equal(task, "t");
      calls.push([done, total]);
    },
  });
  assert.equal(tf.memory().numTensors, before);
  assert.deepEqual(out, ["qqq", "qq", "", "yes", ""]);
  assertRising(calls, 4);
  assert.deepEqual(calls, [[0, 5], [2, 5], [4, 5], [5, 5], [5, 7], [7, 7]]);
  disposeT5(model);
});

/** Exact-match accuracy (scores are not what is tested here). */
const EXACT: RunScorer = {
  scoreTask: (_t, exs, preds) => ({
    accuracy: (100 * preds.filter((p, i) => p === exs[i]!.target).length) / preds.length,
  }),
  groupScore: (_t, m) => m.accuracy!,
  benchmarkAverage: () => NaN,
};

Deno.test({
  name:
    "runOne() with predictTest reports phase decode: the validation set, then the test set, rising to their rows",
  ignore: !HAVE_CB,
  fn: async () => {
    await tf.ready();
    const before = tf.memory().numTensors;
    const unnamed: Omit<RunSpec, "id"> = {
      profile: "test",
      model: "tiny-v1_1",
      backbone: "random",
      benchmark: "super_glue",
      tasks: ["cb"],
      method: { name: "mtl", label: "mtl", config: {} },
      seed: 1,
      backend: "wasm",
      train: {
        ...DEFAULT_TRAIN,
        learningRate: 1e-2,
        steps: 2,
        batchSize: 8,
        maxInputLength: 48,
        maxTargetLength: 6,
        evalEvery: 2,
        checkpointEvery: 0,
        evalMaxExamples: 8,
        predictTest: true,
      },
    };
    const s: RunSpec = { ...unnamed, id: runId(unnamed) };
    const reports: RunProgress[] = [];
    await inTempDir(async (root) => {
      await runOneWith(s, {
        outDir: join(root, "work"),
        dataDir: DATA,
        onProgress: (p) => void reports.push(p),
      }, EXACT);
    });
    assert.equal(tf.memory().numTensors, before, "runOne releases every tensor");
    const decodes = reports.filter((p): p is RunDecodeProgress => p.phase === "decode");
    // The one evaluation (step 2) starts with its `eval` report, then decodes.
    const at = reports.findIndex((p) => p.phase === "eval");
    assert.deepEqual(reports[at], { phase: "eval", step: 2, totalSteps: 2 });
    assert.ok(reports.indexOf(decodes[0]!) > at, "decoding after the evaluation's start");
    for (const d of decodes) {
      // The JSON a consumer sees: these keys, nothing else.
      assert.deepEqual(Object.keys(d).sort(), [
        "done",
        "phase",
        "split",
        "step",
        "task",
        "total",
        "totalSteps",
      ]);
      assert.equal(d.step, 2);
      assert.equal(d.totalSteps, 2);
      assert.equal(d.task, "cb");
    }
    const validation = decodes.filter((d) => d.split === "validation");
    const test = decodes.filter((d) => d.split === "test");
    assert.equal(validation.length + test.length, decodes.length, "no other split");
    assert.ok(
      decodes.indexOf(validation[validation.length - 1]!) < decodes.indexOf(test[0]!),
      "the validation set first, then the test set",
    );
    // 8 validation rows (evalMaxExamples), 250 test rows; batches of 8, and maybe rows again.
    assertRising(validation.map((d) => [d.done, d.total]), 1);
    assert.equal(validation[0]!.total, 8);
    assertRising(test.map((d) => [d.done, d.total]), 32);
    assert.equal(test[0]!.total, 250);
    // Each report per batch: at most 8 rows apart.
    for (let i = 1; i < test.length; i++) assert.ok(test[i]!.done - test[i - 1]!.done <= 8);
  },
});

Deno.test("progressInfo() draws a decoding as eval or test, task, rows done of rows", () => {
  const d = { phase: "decode", step: 4, totalSteps: 4, task: "rte" } as const;
  assert.equal(
    progressInfo({ ...d, split: "validation", done: 1200, total: 3000 }),
    "eval rte 1,200/3,000",
  );
  assert.equal(
    progressInfo({ ...d, split: "test", done: 1200, total: 3000 }),
    "test rte 1,200/3,000",
  );
  assert.equal(
    progressInfo({ ...d, task: "qqp", split: "test", done: 0, total: 390965 }),
    "test qqp 0/390,965",
  );
  // The evaluation's start keeps its bare label.
  assert.equal(progressInfo({ phase: "eval", step: 4, totalSteps: 4 }), "eval");
});

function recordingStream(tty: boolean): { chunks: string[]; stream: Writable } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      chunks.push(String(chunk));
      done();
    },
  });
  Object.assign(stream, { isTTY: tty, columns: 200 });
  return { chunks, stream };
}

Deno.test("progressReporter() shows a decoding's rows on the run's line, its step and ETA kept, with or without a terminal", () => {
  const unnamed: Omit<RunSpec, "id"> = {
    profile: "test",
    model: "tiny-v1_1",
    backbone: "random",
    benchmark: "glue",
    tasks: ["rte"],
    method: { name: "hyperprompt_global", label: "hyperprompt_global", config: {} },
    seed: 0,
    backend: "cpu",
    train: { ...DEFAULT_TRAIN, steps: 4 },
  };
  const spec: RunSpec = { ...unnamed, id: runId(unnamed) };
  for (const tty of [false, true]) {
    const { chunks, stream } = recordingStream(tty);
    const reporter = progressReporter(1, tty, stream);
    const progress = (p: RunProgress) =>
      reporter.onEvent({ kind: "progress", spec, index: 0, progress: p });
    reporter.onEvent({ kind: "start", spec, index: 0 });
    progress({ phase: "train", step: 1, totalSteps: 4, loss: 1 });
    progress({ phase: "train", step: 2, totalSteps: 4, loss: 1 });
    progress({ phase: "eval", step: 2, totalSteps: 4 });
    for (let done = 0; done <= 3000; done += 100) {
      progress({
        phase: "decode",
        step: 2,
        totalSteps: 4,
        split: "test",
        task: "rte",
        done: Math.min(done, 1200),
        total: 3000,
      });
    }
    reporter.stop();
    // deno-lint-ignore no-control-regex
    const text = chunks.join("").replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "");
    const line = text.split(/[\r\n]/).filter((l) => l.includes("steps")).pop() ?? "";
    assert.match(line, /\| 2\/4 steps \|/, `tty ${tty}: the step stays the evaluation's: ${text}`);
    assert.match(line, /\| test rte 1,200\/3,000$/, `tty ${tty}: ${JSON.stringify(line)}`);
    // The 31 decode reports were not each a sample of step 2 for the ETA: it stays a time
    // (cli-progress draws a rate of 0 as `INF`, cut to `NFs`).
    assert.match(line, /\| ETA (\d+[hms])+ \|/, `tty ${tty}: ${JSON.stringify(line)}`);
  }
});
