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
import { disposeT5, initT5, t5StateDict } from "../model/t5.ts";
import { fileDigest, sameBits } from "../model/checkpoint.ts";
import { disposeLoadedT5, loadT5 } from "../model/pretrained.ts";
import { seedFor } from "./rng.ts";
import { getMethod, loadMethodVariables } from "../model/methods/mod.ts";
import { parseProfile } from "./profile.ts";
import { keepWeights, runGrid } from "./runner.ts";
import { defaultTokenizer, runOne, saveFinalWeights } from "./run_one.ts";
import { fakeRunOne } from "./_fake_run_one.ts";
import {
  conditionedTasks,
  DEFAULT_TRAIN,
  runFileName,
  runId,
  type RunResult,
  type RunSpec,
  validateRunResult,
  weightsDir,
} from "./spec.ts";

const DATA = sharedPath("data");
const HAVE = existsSync(sharedPath("data/super_glue/CB/train.jsonl"));

/**
 * A 2-step run on CB, with or without `saveWeights`: Prompt Tuning (frozen backbone) or MTL
 * (`trainBackbone`: the whole backbone trained).
 */
function spec(saveWeights: boolean, trainBackbone = false): RunSpec {
  const s: Omit<RunSpec, "id"> = {
    profile: "test",
    model: "tiny-v1_1",
    backbone: "random",
    benchmark: "super_glue",
    tasks: ["cb"],
    method: trainBackbone
      ? { name: "mtl", label: "mtl", config: {} }
      : { name: "prompt_tuning", label: "prompt_tuning", config: { length: 4 } },
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
  const trained = { ...ok, backboneTrained: true, backbone: "backbone" };
  validateRunResult(structuredClone({ ...base, weights: trained }), { file: "r.json" });
  const noTok = { ...trained, backboneTokenizerMissing: "backbone" };
  validateRunResult(structuredClone({ ...base, weights: noTok }), { file: "r.json" });
  // A result written before the trained backbone was kept.
  const older = { ...ok, backboneTrained: true };
  validateRunResult(structuredClone({ ...base, weights: older }), { file: "r.json" });
  const cases: [unknown, string][] = [
    [{ ...ok, dir: "../w" }, "$.weights.dir must be a folder inside the results folder"],
    // Kill the mutants dropping the absolute-path check and reading ".." at the start only.
    [{ ...ok, dir: "/tmp/w" }, "$.weights.dir must be a folder inside the results folder"],
    [{ ...ok, dir: "weights/../../w" }, "$.weights.dir must be a folder inside the results folder"],
    [{ ...ok, step: -1 }, "$.weights.step must be"],
    [{ ...ok, backboneTrained: "no" }, "$.weights.backboneTrained must be true or false"],
    [{ ...ok, extra: 1 }, "$.weights"],
    [{ ...ok, backbone: "backbone" }, "$.weights.backbone must be absent when backboneTrained"],
    [{ ...ok, backboneTrained: true, backbone: "b" }, '$.weights.backbone must be "backbone"'],
    [
      { ...ok, backboneTrained: true, backbone: 1 },
      "$.weights.backbone must be a non-empty string",
    ],
    [
      { ...ok, backboneTokenizerMissing: "x" },
      "$.weights.backboneTokenizerMissing must be absent when no backbone is kept",
    ],
    [
      { ...ok, backboneTrained: true, backbone: "backbone", backboneTokenizerMissing: "" },
      "$.weights.backboneTokenizerMissing must be a non-empty string",
    ],
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
        tasks: conditionedTasks(s),
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

Deno.test({
  name: "runGrid + runOne with train.saveWeights keeps a trained backbone with the run's tokenizer",
  ignore: !HAVE,
  fn: async () => {
    await tf.ready();
    await inTempDir(async (out) => {
      const s = spec(true, true);
      const summary = await runGrid([s], { outDir: out, dataDir: DATA, runOne });
      assert.equal(summary.failed.length, 0, summary.failed.map((f) => f.error.message).join());
      const file = join(out, runFileName(s));
      const result = validateRunResult(JSON.parse(await Deno.readTextFile(file)), { file });
      const stem = runFileName(s).slice(0, -".json".length);
      assert.deepEqual(result.weights, {
        dir: `weights/${stem}`,
        step: 2,
        backboneTrained: true,
        backbone: "backbone",
      });
      const kept = join(out, "weights", stem);
      assert.deepEqual(
        [...Deno.readDirSync(kept)].map((e) => e.name).sort(),
        ["backbone", "method.safetensors"],
      );
      const folder = join(kept, "backbone");
      assert.deepEqual(
        [...Deno.readDirSync(folder)].map((e) => e.name).sort(),
        ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json"],
      );
      // The run's tokenizer (a task-spm or fixture tokenizer.json), byte for byte.
      const source = result.tokenizer ?? "";
      const tokFile = source.replace(/^(task-spm|fixture):/, "");
      assert.notEqual(tokFile, source, source);
      assert.deepEqual(
        await Deno.readFile(join(folder, "tokenizer.json")),
        await Deno.readFile(tokFile),
      );
      // Loadable as {hf}; every tensor shaped as the run's backbone, and trained: the shared
      // embedding is not the run's seeded initialisation any more (bit-for-bit equality to the
      // trained state is the saveFinalWeights test's).
      const loaded = await loadT5(folder, { log: () => {} });
      const init = initT5(loaded.model.config, { seed: seedFor(s.seed, "backbone-init") });
      try {
        assert.equal(loaded.tokenizerSource, join(folder, "tokenizer.json"));
        assert.deepEqual([...loaded.model.params.keys()].sort(), [...init.params.keys()].sort());
        for (const [name, v] of init.params) {
          assert.deepEqual(loaded.model.params.get(name)!.shape, v.shape, name);
        }
        const a = await loaded.model.params.get("shared.weight")!.data() as Float32Array;
        const b = await init.params.get("shared.weight")!.data() as Float32Array;
        assert.equal(sameBits(a, b), false, "shared.weight is the initialisation: not trained");
      } finally {
        disposeLoadedT5(loaded);
        disposeT5(init);
      }
    });
  },
});

Deno.test("saveFinalWeights(): a trained backbone bit for bit with its folder's tokenizer; a changed tokenizer is left out and named", async () => {
  await tf.ready();
  await inTempDir(async (out) => {
    const s = spec(true, true);
    const model = initT5(preset("tiny-v1_1"), { seed: 3 });
    // A "trained" backbone: weights no initialisation gives.
    const shared = model.params.get("shared.weight")!;
    shared.assign(tf.tidy(() => shared.add(tf.randomNormal(shared.shape, 0, 1, "float32", 7))));
    const method = getMethod("mtl");
    const instance = method.create({
      config: model.config,
      tasks: conditionedTasks(s),
      seed: 5,
      backbone: model.params,
      labelTokenIds: new Map([["cb", [[5], [6], [7]]]]),
    }, method.parseConfig({}, "t"));
    // The checkpoint folder the run read its tokenizer from, with the digest it recorded.
    const ck = join(out, "ck");
    await Deno.mkdir(ck);
    await Deno.copyFile(defaultTokenizer(), join(ck, "tokenizer.json"));
    const record = await fileDigest(join(ck, "tokenizer.json"));
    const checkpoint = { dir: ck, files: { "tokenizer.json": record } };
    try {
      const tensors = tf.memory().numTensors;
      const work = join(out, "work");
      await Deno.mkdir(work);
      const w = await saveFinalWeights(s, work, model, instance, {
        tokenizerSource: "backbone",
        checkpoint,
      });
      assert.equal(tf.memory().numTensors, tensors);
      assert.deepEqual(w, {
        dir: weightsDir(s),
        step: 2,
        backboneTrained: true,
        backbone: "backbone",
      });
      assert.deepEqual([...Deno.readDirSync(work)].map((e) => e.name), ["final"]);
      const folder = join(work, "final", "backbone");
      assert.deepEqual(
        await Deno.readFile(join(folder, "tokenizer.json")),
        await Deno.readFile(defaultTokenizer()),
      );
      const loaded = await loadT5(folder, { log: () => {} });
      try {
        // Bit for bit: float32 weights written and read as F32, no arithmetic in between.
        const want = t5StateDict(model);
        assert.deepEqual([...loaded.model.params.keys()].sort(), [...model.params.keys()].sort());
        for (const [name, v] of loaded.model.params) {
          const a = await v.data() as Float32Array;
          const b = await want.get(name)!.data() as Float32Array;
          assert.ok(sameBits(a, b), name);
        }
      } finally {
        disposeLoadedT5(loaded);
      }
      // The folder's tokenizer changed since the run read it: the backbone is kept without it.
      await Deno.writeTextFile(join(ck, "tokenizer.json"), "{}");
      const again = await saveFinalWeights(s, work, model, instance, {
        tokenizerSource: "backbone",
        checkpoint,
      });
      assert.equal(again.backboneTokenizerMissing, "backbone");
      assert.deepEqual(
        [...Deno.readDirSync(folder)].map((e) => e.name).sort(),
        ["config.json", "generation_config.json", "model.safetensors"],
      );
      // A source that is no file: the same.
      const none = await saveFinalWeights(s, work, model, instance, { tokenizerSource: "memory" });
      assert.equal(none.backboneTokenizerMissing, "memory");
      assert.deepEqual([...Deno.readDirSync(work)].map((e) => e.name), ["final"]);
      assert.equal(tf.memory().numTensors, tensors);
    } finally {
      instance.dispose();
      disposeT5(model);
    }
  });
});
