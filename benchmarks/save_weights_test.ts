/**
 * Tests of `train.saveWeights`: the profile field (validated, in the spec and the run id only
 * when true), a tiny real run through `runGrid` that keeps its method's variables under
 * `<out>/weights/<run name>/` with the result's `weights` field, the same run without it keeping
 * nothing, and `keepWeights`' folder handling.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { inTempDir } from "../model/fs_testing.ts";
import { sharedPath } from "../model/shared_dir.ts";
import { preset } from "../model/config.ts";
import { disposeT5, initT5 } from "../model/t5.ts";
import { getMethod, loadMethodVariables } from "../model/methods/mod.ts";
import { parseProfile } from "./profile.ts";
import { keepWeights, runGrid } from "./runner.ts";
import { runOne } from "./run_one.ts";
import { fakeRunOne } from "./_fake_run_one.ts";
import {
  DEFAULT_TRAIN,
  runFileName,
  runId,
  type RunResult,
  type RunSpec,
  trainedTasks,
  validateRunResult,
  weightsDir,
} from "./spec.ts";

const DATA = sharedPath("data");
const HAVE = existsSync(sharedPath("data/super_glue/CB/train.jsonl"));

/** A 2-step Prompt-Tuning run on CB (frozen backbone), with or without `saveWeights`. */
function spec(saveWeights: boolean): RunSpec {
  const s: Omit<RunSpec, "id"> = {
    profile: "test",
    model: "tiny-v1_1",
    backbone: "random",
    benchmark: "super_glue",
    tasks: ["cb"],
    method: { name: "prompt_tuning", label: "prompt_tuning", config: { length: 4 } },
    seed: 1,
    backend: "cpu",
    train: {
      ...DEFAULT_TRAIN,
      learningRate: 1e-2,
      steps: 2,
      batchSize: 4,
      maxInputLength: 32,
      maxTargetLength: 4,
      evalEvery: 2,
      checkpointEvery: 0,
      evalMaxExamples: 4,
      ...(saveWeights ? { saveWeights } : {}),
    },
  };
  return { ...s, id: runId(s) };
}

Deno.test("train.saveWeights: validated where the other train fields are, in the run id only when true", () => {
  const json = (v: string) =>
    `{\n  "name": "x",\n  "models": ["tiny-v1_1"],\n  "benchmarks": ["glue"],\n` +
    `  "methods": [{ "name": "mtl" }],\n  "train": {\n    "saveWeights": ${v}\n  }\n}\n`;
  assert.throws(() => parseProfile(json('"yes"'), "p.json"), {
    message: 'p.json:7: $.train.saveWeights must be true or false, got "yes"',
  });
  assert.equal(parseProfile(json("true"), "p.json").train.saveWeights, true);
  const off = parseProfile(json("false"), "p.json").train;
  assert.equal("saveWeights" in off, false);
  assert.deepEqual(off, DEFAULT_TRAIN);
  assert.notEqual(spec(true).id, spec(false).id);
});

Deno.test("validateRunResult() checks weights, naming the field", async () => {
  const s = spec(true);
  const base = await fakeRunOne(s, { outDir: "", dataDir: "" });
  const ok = { dir: weightsDir(s), step: 2, backboneTrained: false };
  validateRunResult(structuredClone(base), { file: "r.json" });
  validateRunResult(structuredClone({ ...base, weights: ok }), { file: "r.json" });
  const cases: [unknown, string][] = [
    [{ ...ok, dir: "../w" }, "$.weights.dir must be a folder inside the results folder"],
    [{ ...ok, step: -1 }, "$.weights.step must be"],
    [{ ...ok, backboneTrained: "no" }, "$.weights.backboneTrained must be true or false"],
    [{ ...ok, extra: 1 }, "$.weights"],
  ];
  for (const [w, msg] of cases) {
    assert.throws(
      () => validateRunResult(structuredClone({ ...base, weights: w }), { file: "r.json" }),
      (e: unknown) => (e as Error).message.startsWith(`r.json: ${msg}`),
      msg,
    );
  }
});

Deno.test({
  name: "runGrid + runOne with train.saveWeights keeps the method's variables and says where",
  ignore: !HAVE,
  fn: async () => {
    await tf.ready();
    await inTempDir(async (out) => {
      const s = spec(true);
      const summary = await runGrid([s], { outDir: out, dataDir: DATA, runOne });
      assert.equal(summary.failed.length, 0, summary.failed.map((f) => f.error.message).join());
      const file = join(out, runFileName(s));
      const result = validateRunResult(JSON.parse(await Deno.readTextFile(file)), { file });
      const stem = runFileName(s).slice(0, -".json".length);
      assert.deepEqual(result.weights, {
        dir: `weights/${stem}`,
        step: 2,
        backboneTrained: false,
      });
      const kept = join(out, "weights", stem);
      assert.deepEqual([...Deno.readDirSync(kept)].map((e) => e.name), ["method.safetensors"]);
      // No temporary or aside folder left beside it, and the work folder is gone.
      assert.deepEqual([...Deno.readDirSync(join(out, "weights"))].map((e) => e.name), [stem]);
      assert.equal(existsSync(join(out, stem)), false);
      // Loadable into an instance built as the run built it (names and shapes checked).
      const model = initT5(preset("tiny-v1_1"), { seed: 3 });
      const method = getMethod("prompt_tuning");
      const instance = method.create({
        config: model.config,
        tasks: trainedTasks(s),
        seed: 5,
        backbone: model.params,
        labelTokenIds: new Map([["cb", [[5], [6], [7]]]]),
      }, method.parseConfig({ length: 4 }, "t"));
      try {
        const tensors = tf.memory().numTensors;
        await loadMethodVariables(join(kept, "method.safetensors"), instance);
        assert.equal(tf.memory().numTensors, tensors);
      } finally {
        instance.dispose();
        disposeT5(model);
      }
    });
  },
});

Deno.test({
  name: "runGrid + runOne without train.saveWeights keeps no weights",
  ignore: !HAVE,
  fn: async () => {
    await inTempDir(async (out) => {
      const s = spec(false);
      const summary = await runGrid([s], { outDir: out, dataDir: DATA, runOne });
      assert.equal(summary.failed.length, 0, summary.failed.map((f) => f.error.message).join());
      const file = join(out, runFileName(s));
      const result: RunResult = JSON.parse(await Deno.readTextFile(file));
      assert.equal("weights" in result, false);
      assert.equal(existsSync(join(out, "weights")), false);
    });
  },
});

Deno.test("keepWeights(): replaces an earlier folder, refuses a run that wrote none", async () => {
  await inTempDir(async (out) => {
    const from = join(out, "run", "final");
    const dest = join(out, "weights", "run");
    await Deno.mkdir(from, { recursive: true });
    await Deno.writeTextFile(join(from, "method.safetensors"), "new");
    await Deno.mkdir(dest, { recursive: true });
    await Deno.writeTextFile(join(dest, "method.safetensors"), "old");
    await Deno.writeTextFile(join(dest, "stale.txt"), "old");
    await keepWeights(from, dest);
    assert.equal(existsSync(from), false);
    assert.deepEqual([...Deno.readDirSync(dest)].map((e) => e.name), ["method.safetensors"]);
    assert.equal(await Deno.readTextFile(join(dest, "method.safetensors")), "new");
    assert.deepEqual([...Deno.readDirSync(join(out, "weights"))].map((e) => e.name), ["run"]);
    await assert.rejects(() => keepWeights(from, dest), {
      message: `${from}: not found: the run's result names weights, but it wrote none there`,
    });
  });
});
