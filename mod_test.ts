import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { inTempDir } from "./model/fs_testing.ts";
import * as tf from "@tensorflow/tfjs";
import * as hp from "./mod.ts";
import { NonFiniteLossError, TrainingInterruptedError } from "./benchmarks/trainer.ts";
import { ClaimLostError } from "./benchmarks/run_claim.ts";
import { createOptimizer } from "./benchmarks/optim.ts";

const ROOT = fileURLToPath(new URL(".", import.meta.url));

Deno.test("mod.ts is importable from another project's script (the clone's --config), asking for no permission at all", () =>
  inTempDir(async (dir) => {
    // A script outside the repository, as a library user's: it imports the suite by path and
    // runs under the clone's import map, with no --allow-* flag (importing reads no environment,
    // file, network or command).
    const main = join(dir, "main.ts");
    await Deno.writeTextFile(
      main,
      `import * as hp from ${JSON.stringify(new URL("./mod.ts", import.meta.url).href)};\n` +
        `console.log(typeof hp.initT5, typeof hp.benchmarks.runOne, hp.benchmarks.PROFILES_DIR);\n`,
    );
    // Deno logs every permission the script asks for (granted or not) to this file: an
    // environment read would prompt on a terminal, though under --no-prompt it only fails.
    const audit = join(dir, "audit.jsonl");
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", "--no-check", "--config", join(ROOT, "deno.json"), main],
      cwd: dir,
      env: { NO_COLOR: "1", DENO_AUDIT_PERMISSIONS: audit },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, text);
    assert.equal(text, `function function ${join(ROOT, "benchmarks", "profiles")}\n`);
    const asked = await Deno.readTextFile(audit).catch(() => "");
    assert.equal(asked, "", "no permission is asked for on import");
  }));

Deno.test("mod.ts exports what runOne throws, the stop request and the optimizers runOne trains with", () => {
  assert.equal(hp.benchmarks.NonFiniteLossError, NonFiniteLossError);
  assert.equal(hp.benchmarks.TrainingInterruptedError, TrainingInterruptedError);
  assert.equal(hp.benchmarks.ClaimLostError, ClaimLostError);
  assert.equal(hp.benchmarks.createOptimizer, createOptimizer);
  const opt = hp.benchmarks.createOptimizer(
    hp.benchmarks.optimizerConfigFor({ ...hp.benchmarks.DEFAULT_TRAIN, optimizer: "adamw" }),
  );
  assert.equal(opt.kind, "adamw");
  opt.dispose();
  assert.equal(hp.benchmarks.stopRequested(), undefined);
  assert.equal(typeof hp.benchmarks.requestStop, "function");
  assert.equal(typeof hp.benchmarks.clearStopRequest, "function");
});

// The type-only exports a training loop or grid of one's own needs: a compile error when one goes.
type _ExportedTypes = [
  hp.benchmarks.ClaimStopOption,
  hp.benchmarks.Optimizer,
  hp.benchmarks.OptimizerConfig,
  hp.benchmarks.AdafactorConfig,
  hp.benchmarks.AdamWConfig,
  hp.TuningRun,
  hp.TensorInfo,
];

Deno.test("mod.ts: a method of one's own (not registered) trains with runOne's loop, backbone and method variables both, no tensor left", async () => {
  await hp.selectBackend("cpu");
  const before = tf.memory().numTensors;
  const model = hp.initT5({ ...hp.preset("tiny-v1_1"), vocabSize: 64, dropoutRate: 0 }, {
    seed: 1,
  });
  // A per-task output scale after every feed-forward sublayer: one variable, its own hook.
  const scale = tf.tidy(() =>
    tf.variable(tf.ones([2, model.config.dModel]), true, "my_method/scale")
  );
  const instance: hp.MethodInstance = {
    name: "my_method",
    variables: new Map([["my_method/scale", scale]]),
    keepTaskPrefix: true,
    isBackboneTrainable: () => true,
    hooks: (taskIds) => ({
      afterSublayer: (_stack, _layer, sublayer, y) =>
        sublayer === "feed_forward"
          ? tf.mul(y, tf.expandDims(tf.gather(scale, taskIds), 1)) as typeof y
          : y,
    }),
    dispose: () => scale.dispose(),
  };
  try {
    const trained = hp.benchmarks.trainedVariables(model, instance);
    assert.equal(trained.size, model.params.size + 1, "the backbone's weights and the method's");
    const ids = { padTokenId: 0, eosTokenId: 1, decoderStartTokenId: 0 };
    const rows = Array.from({ length: 4 }, (_, i) => ({
      input: [2 + i, 1],
      target: [40 + (i % 2), 1],
      taskId: i % 2,
    }));
    const scale0 = scale.dataSync().slice();
    const emb0 = model.params.get("shared.weight")!.dataSync().slice();
    const out = await hp.benchmarks.train({
      model,
      instance,
      train: { ...hp.benchmarks.DEFAULT_TRAIN, steps: 3, batchSize: 4, evalEvery: 0 },
      seed: 1,
      taskNames: ["rte", "cb"],
      source: {
        next: () => hp.benchmarks.collate(rows, ids),
        state: () => null,
        restore: () => {},
      },
    });
    assert.deepEqual(out.losses.map((l) => l.step), [1, 2, 3]);
    assert.ok(out.losses.every((l) => Number.isFinite(l.loss)), JSON.stringify(out.losses));
    // Both trained: the method's variable and a backbone weight moved.
    assert.ok(scale.dataSync().some((v, i) => v !== scale0[i]), "the method's variable moved");
    assert.ok(
      model.params.get("shared.weight")!.dataSync().some((v, i) => v !== emb0[i]),
      "a backbone weight moved",
    );
  } finally {
    instance.dispose();
    hp.disposeT5(model);
  }
  assert.equal(tf.memory().numTensors, before, "no tensor left");
});
