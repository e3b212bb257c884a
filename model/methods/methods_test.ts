/**
 * Contract tests over every METHODS entry on tiny presets: closed-form counts equal the
 * instantiated variables, one training step touches exactly the trained variables, tasks are
 * conditioned differently, mixed-task batches equal per-task runs, no tensor leaks, and a few
 * Adam steps lower the loss.
 */
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { repoPath } from "../shared_dir.ts";
import { PRESETS, type T5Config } from "../config.ts";
import type { MethodContext, MethodInstance } from "../method.ts";
import { crossEntropyLoss, disposeT5, forward, type Seq2SeqBatch, type T5Model } from "../t5.ts";
import { selectBackend } from "../backend.ts";
import { getMethod, type MethodName, METHODS } from "./mod.ts";
import { context, disposeBatch, makeBatch, subBatch, TASKS, tinyModel } from "./_test_util.ts";
import * as root from "../../mod.ts";
import * as configHelpers from "./_config.ts";
import * as initHelpers from "./_init.ts";
import * as tensorHelpers from "./_tensor.ts";

// wasm (with the project's matmul kernels): about 4x faster than cpu for the training loops here.
await selectBackend("wasm", { log: () => {} });

/** Small per-method settings so that every test runs in well under a second per step. */
const SMALL: Record<MethodName, Record<string, unknown>> = {
  mtl: {},
  prompt_tuning: { length: 4 },
  mtl_prompt: { length: 4 },
  adapter: { reduction: 8 },
  hyperformer_pp: { reduction: 8, taskEmbeddingDim: 8, hiddenDim: 16, projectedDim: 8 },
  hyperprompt_share: { length: 4, bottleneck: 4 },
  hyperprompt_sep: { length: 4, bottleneck: 4 },
  hyperprompt_global: {
    length: 4,
    bottleneck: 4,
    embeddingDim: 8,
    hiddenDim: 16,
    projectedDim: 8,
  },
};

/** Variants exercising every option that changes the variables. */
const VARIANTS: [MethodName, Record<string, unknown>][] = [
  ...Object.entries(SMALL) as [MethodName, Record<string, unknown>][],
  ["prompt_tuning", { length: 3, init: "uniform" }],
  ["adapter", { reduction: 16, layerNorm: "none", positions: ["feed_forward"] }],
  ["adapter", { reduction: 8, stacks: ["decoder"] }],
  ["adapter", { reduction: 8, layerNorm: "per_task" }],
  ["hyperformer_pp", {
    ...SMALL.hyperformer_pp,
    projectorLayerNorm: false,
    conditionalLayerNorm: false,
  }],
  ["hyperprompt_share", { ...SMALL.hyperprompt_share, biases: true, stacks: ["encoder"] }],
  ["hyperprompt_sep", { ...SMALL.hyperprompt_sep, biases: true, stacks: ["decoder"] }],
  ["hyperprompt_global", { ...SMALL.hyperprompt_global, biases: true, layerNorm: true }],
  ["hyperprompt_global", { ...SMALL.hyperprompt_global, perStackHypernets: true }],
  ["hyperprompt_global", { ...SMALL.hyperprompt_global, stacks: ["decoder"] }],
];

const NAMES = Object.keys(METHODS) as MethodName[];
/** tiny-v1_1 with a 256-token vocabulary: the output layer dominates the cost on cpu. */
const TINY: T5Config = { ...PRESETS["tiny-v1_1"], vocabSize: 256 };

function create(model: T5Model, name: MethodName, raw: Record<string, unknown>) {
  const m = getMethod(name);
  const cfg = m.parseConfig(raw, "methods_test.ts");
  return { m, cfg, inst: m.create(context(model), cfg) };
}

function lossOf(
  model: T5Model,
  inst: MethodInstance,
  batch: Seq2SeqBatch,
  labels: tf.Tensor2D,
  taskIds: number[],
) {
  return () =>
    crossEntropyLoss(forward(model, batch, { hooks: inst.hooks(taskIds) }).logits, labels);
}

function trainedVars(model: T5Model, inst: MethodInstance): Map<string, tf.Variable> {
  const out = new Map(inst.variables);
  for (const [n, v] of model.params) if (inst.isBackboneTrainable(n)) out.set(n, v);
  return out;
}

Deno.test("METHODS countParams() and variableShapes() equal the instantiated variables on tiny presets", () => {
  // Both tiny presets have h·d_kv = d and as many decoder as encoder blocks; the third config
  // (h·d_kv = 32 ≠ d = 64, 2 encoder and 3 decoder blocks, like T5 1.0 3B/11B's h·d_kv ≠ d)
  // makes a count that used d for h·d_kv, or one stack's depth for both, fail.
  const configs: Record<string, T5Config> = {
    "tiny-v1_1": PRESETS["tiny-v1_1"],
    "tiny-relu": PRESETS["tiny-relu"],
    "inner-32-dec-3": { ...PRESETS["tiny-v1_1"], vocabSize: 128, dKv: 8, numDecoderLayers: 3 },
  };
  for (const [preset, config] of Object.entries(configs)) {
    const model = tinyModel(config);
    for (const [name, raw] of VARIANTS) {
      const { m, cfg, inst } = create(model, name, raw);
      let size = 0;
      for (const v of inst.variables.values()) size += v.size;
      const counts = m.countParams(model.config, cfg, TASKS.length);
      assert.equal(counts.extra, size, `${preset} ${name} ${JSON.stringify(raw)}`);
      // The stated shapes (what the memory estimate's update phase reads): every created
      // variable's name and shape, and no other name. Required of every registered method.
      assert.ok(m.variableShapes, `${name}: Method.variableShapes is missing`);
      const stated = m.variableShapes(model.config, cfg, TASKS.length);
      const created = new Map([...inst.variables].map(([n, v]) => [n, v.shape]));
      assert.deepEqual(
        new Map([...stated].map(([n, s]) => [n, [...s]])),
        created,
        `${preset} ${name} ${JSON.stringify(raw)}: variableShapes`,
      );
      let trainable = 0;
      for (const [n, v] of model.params) if (inst.isBackboneTrainable(n)) trainable += v.size;
      assert.equal(counts.trainedBackbone, trainable, `${preset} ${name} trained backbone`);
      inst.dispose();
    }
    disposeT5(model);
  }
});

Deno.test("METHODS one training step changes exactly the trained variables, no leaks", () => {
  const model = tinyModel(TINY);
  const { batch, labels } = makeBatch(TINY, 4, 7, 3);
  const taskIds = [0, 2, 1, 0];
  const cases: [MethodName, Record<string, unknown>][] = [
    ...NAMES.map((n) => [n, SMALL[n]] as [MethodName, Record<string, unknown>]),
    ["hyperformer_pp", { ...SMALL.hyperformer_pp, freezeBackbone: "except_layer_norms" }],
    ["hyperprompt_global", { ...SMALL.hyperprompt_global, freezeBackbone: "all" }],
  ];
  for (const [name, raw] of cases) {
    const before = tf.memory().numTensors;
    const { inst } = create(model, name, raw);
    const trained = trainedVars(model, inst);
    const snapshot = new Map(
      [...model.params, ...inst.variables].map(([n, v]) => [n, v.dataSync().slice()]),
    );
    const opt = tf.train.adam(1e-2);
    const { value, grads } = tf.variableGrads(lossOf(model, inst, batch, labels, taskIds), [
      ...trained.values(),
    ]);
    for (const [n, v] of trained) {
      const g = grads[v.name];
      assert.ok(g !== undefined, `${name}: no gradient for ${n}`);
      const norm = tf.tidy(() => g.abs().max().dataSync()[0]!);
      assert.ok(norm > 0 && Number.isFinite(norm), `${name}: zero or bad gradient for ${n}`);
    }
    opt.applyGradients(grads as tf.NamedTensorMap as Record<string, tf.Variable>);
    tf.dispose([value, ...Object.values(grads)]);
    for (const [n, v] of [...model.params, ...inst.variables]) {
      const same = v.dataSync().every((x, i) => Object.is(x, snapshot.get(n)![i]));
      assert.equal(same, !trained.has(n), `${name} ${JSON.stringify(raw)}: ${n} changed=${!same}`);
    }
    // Restore the backbone for the next method.
    for (const [n, v] of model.params) {
      tf.tidy(() => v.assign(tf.tensor(snapshot.get(n)!, v.shape)));
    }
    opt.dispose();
    inst.dispose();
    assert.equal(tf.memory().numTensors, before, `${name}: tensors leaked`);
  }
  disposeBatch(batch);
  labels.dispose();
  disposeT5(model);
});

Deno.test("METHODS condition on the task: a task change changes the logits (except mtl)", () => {
  const model = tinyModel(TINY);
  const { batch, labels } = makeBatch(TINY, 2, 6, 3);
  for (const name of NAMES) {
    const { inst } = create(model, name, SMALL[name]);
    // Perturb every method variable so tasks differ beyond their initial values.
    tf.tidy(() => {
      for (const v of inst.variables.values()) {
        v.assign(v.add(tf.randomNormal(v.shape, 0, 0.5, "float32", 5)));
      }
    });
    const diff = tf.tidy(() => {
      const a = forward(model, batch, { hooks: inst.hooks([0, 0]) }).logits;
      const b = forward(model, batch, { hooks: inst.hooks([1, 1]) }).logits;
      return a.sub(b).abs().max().dataSync()[0]!;
    });
    if (name === "mtl") assert.equal(diff, 0);
    else assert.ok(diff > 1e-4, `${name}: tasks 0 and 1 give the same logits (max diff ${diff})`);
    inst.dispose();
  }
  disposeBatch(batch);
  labels.dispose();
  disposeT5(model);
});

Deno.test("METHODS a mixed-task batch gives the logits of per-task batches", () => {
  const model = tinyModel(TINY);
  const { batch, labels } = makeBatch(TINY, 5, 6, 4);
  const taskIds = [2, 0, 1, 0, 2];
  const cases: [MethodName, Record<string, unknown>][] = [
    ...NAMES.map((n) => [n, SMALL[n]] as [MethodName, Record<string, unknown>]),
    ["hyperprompt_share", { ...SMALL.hyperprompt_share, positionBias: "relative", biases: true }],
  ];
  for (const [name, raw] of cases) {
    const { inst } = create(model, name, raw);
    tf.tidy(() => {
      for (const v of inst.variables.values()) {
        v.assign(v.add(tf.randomNormal(v.shape, 0, 0.5, "float32", 9)));
      }
    });
    const before = tf.memory().numTensors;
    const worst = tf.tidy(() => {
      const mixed = forward(model, batch, { hooks: inst.hooks(taskIds) }).logits;
      let worst = 0;
      for (const t of [0, 1, 2]) {
        const idx = taskIds.flatMap((u, i) => (u === t ? [i] : []));
        const sub = subBatch(batch, idx);
        const alone = forward(model, sub, { hooks: inst.hooks(idx.map(() => t)) }).logits;
        const ref = tf.gather(mixed, idx);
        // fp32: the same per-row ops in another batch layout. Relative to the largest logit,
        // because wasm matmuls sum in a batch-size-dependent order (mtl alone differs ~1e-6 rel).
        const scale = Math.max(1, ref.abs().max().dataSync()[0]!);
        worst = Math.max(worst, ref.sub(alone).abs().max().dataSync()[0]! / scale);
      }
      return worst;
    });
    assert.equal(tf.memory().numTensors, before, `${name}: forward leaked tensors`);
    assert.ok(worst <= 1e-5, `${name}: mixed vs per-task max relative diff ${worst}`);
    console.log(`${name}: mixed vs per-task max relative diff ${worst.toExponential(2)}`);
    inst.dispose();
  }
  disposeBatch(batch);
  labels.dispose();
  disposeT5(model);
});

/** Where each method's hooks say they are, as errors name it: a file that exists, and the method. */
const HOOK_WHERE: Record<string, string> = {
  prompt_tuning: "model/methods/prompt_tuning.ts prompt_tuning",
  mtl_prompt: "model/methods/prompt_tuning.ts mtl_prompt",
  adapter: "model/methods/adapter.ts",
  hyperformer_pp: "model/methods/hyperformer_pp.ts",
  hyperprompt_share: "model/methods/hyperprompt.ts hyperprompt_share",
  hyperprompt_sep: "model/methods/hyperprompt.ts hyperprompt_sep",
  hyperprompt_global: "model/methods/hyperprompt_global.ts",
};

/** `s` as a regular expression matching it literally. */
function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

Deno.test("METHODS hooks name a file that exists", () => {
  for (const where of Object.values(HOOK_WHERE)) {
    assert.ok(existsSync(repoPath(where.split(" ")[0]!)), where);
  }
});

Deno.test("METHODS hooks reject a batch whose size differs from the task ids, naming both", () => {
  const model = tinyModel(TINY);
  const { batch, labels } = makeBatch(TINY, 3, 6, 3);
  const before = tf.memory().numTensors;
  for (const name of NAMES) {
    const { inst } = create(model, name, SMALL[name]);
    // One task id (its per-task tensors would broadcast) and two task ids, for a batch of 3.
    for (const ids of [[1], [0, 1]]) {
      const run = () => tf.tidy(() => forward(model, batch, { hooks: inst.hooks(ids) }).logits);
      if (name === "mtl") {
        tf.dispose(run()); // MTL has no per-task state: the ids are not used.
        continue;
      }
      assert.throws(
        run,
        new RegExp(
          `^Error: ${
            escapeRe(HOOK_WHERE[name]!)
          }: batch of 3 but hooks\\(\\) got ${ids.length} task ids$`,
        ),
        `${name} hooks(${JSON.stringify(ids)}) on a batch of 3: every hook with per-task ` +
          `state must refuse a batch whose size differs from the task ids, naming both ` +
          `(checkBatch; MethodInstance.hooks in model/method.ts)`,
      );
    }
    inst.dispose();
  }
  assert.equal(tf.memory().numTensors, before, "failed forwards leaked tensors");
  disposeBatch(batch);
  labels.dispose();
  disposeT5(model);
});

Deno.test("METHODS 20 Adam steps on a fixed tiny batch lower the loss", () => {
  const model = tinyModel(TINY);
  const { batch, labels } = makeBatch(TINY, 4, 6, 3);
  const taskIds = [0, 1, 2, 1];
  const snapshot = new Map([...model.params].map(([n, v]) => [n, v.dataSync().slice()]));
  for (const name of NAMES) {
    const { inst } = create(model, name, SMALL[name]);
    const trained = [...trainedVars(model, inst).values()];
    // Prompt-Tuning trains only the prompts: Lester et al. use a large LR (0.3 Adafactor).
    const opt = tf.train.adam(name === "prompt_tuning" ? 0.1 : 3e-3);
    const losses: number[] = [];
    for (let step = 0; step < 20; step++) {
      const loss = opt.minimize(lossOf(model, inst, batch, labels, taskIds), true, trained)!;
      losses.push(loss.dataSync()[0]!);
      loss.dispose();
    }
    const first = losses[0]!, last = losses[losses.length - 1]!;
    assert.ok(last < 0.8 * first, `${name}: loss ${first} -> ${last}`);
    for (const [n, v] of model.params) {
      tf.tidy(() => v.assign(tf.tensor(snapshot.get(n)!, v.shape)));
    }
    opt.dispose();
    inst.dispose();
  }
  disposeBatch(batch);
  labels.dispose();
  disposeT5(model);
});

Deno.test("getMethod() lists the known methods for an unknown name", () => {
  assert.throws(() => getMethod("lora"), /Unknown method "lora".*hyperprompt_global/);
});

Deno.test("parseConfig() rejects unknown and malformed fields, naming them", () => {
  assert.throws(
    () => METHODS.hyperprompt_global.parseConfig({ lenght: 3 }, "x.json"),
    /x\.json: unknown hyperprompt_global config field "lenght" \(did you mean length\?\); known /,
  );
  assert.throws(
    () => METHODS.adapter.parseConfig({ reduction: 0 }, "y.json"),
    /y\.json: adapter config field "reduction" must be an integer from 1 to 32768/,
  );
  // The adapter's LayerNorm: shared by default (S6), "post" is the old name of "per_task".
  assert.equal(METHODS.adapter.parseConfig({}, "a").layerNorm, "shared");
  assert.equal(METHODS.adapter.parseConfig({ layerNorm: "post" }, "a").layerNorm, "per_task");
  assert.throws(
    () => METHODS.adapter.parseConfig({ layerNorm: "pre" }, "a.json"),
    /a\.json: adapter config field "layerNorm" must be one of .*shared/,
  );
  // null is not "absent": it was read as the default list.
  assert.throws(
    () => METHODS.adapter.parseConfig({ positions: null }, "p.json"),
    /p\.json: adapter config field "positions" must be a non-empty list .*, got null$/,
  );
  assert.deepEqual(METHODS.adapter.parseConfig({}, "p").positions, [
    "self_attention",
    "feed_forward",
  ]);
  assert.throws(
    () => METHODS.hyperprompt_share.parseConfig({ stacks: [] }, "z.json"),
    /"stacks"/,
  );
  assert.equal(
    METHODS.hyperformer_pp.parseConfig({ freezeBackbone: true }, "j").freezeBackbone,
    "all",
  );
  // A fractional count is malformed, not rounded or kept (a prompt of 2.5 rows).
  assert.throws(
    () => METHODS.mtl_prompt.parseConfig({ length: 2.5 }, "f.json"),
    /f\.json: mtl_prompt config field "length" must be an integer from 1 to 32768, got 2\.5$/,
  );
  // An absurd size is refused when read (it used to pass and crash the run allocating), for
  // every method's size fields; the bound itself is valid. vocabSampleSize, capped at the
  // vocabulary when used, goes up to the largest int32 id.
  const sizes: [keyof typeof METHODS, string][] = [
    ["prompt_tuning", "length"],
    ["mtl_prompt", "length"],
    ["adapter", "reduction"],
    ["hyperformer_pp", "reduction"],
    ["hyperformer_pp", "taskEmbeddingDim"],
    ["hyperformer_pp", "hiddenDim"],
    ["hyperformer_pp", "projectedDim"],
    ["hyperprompt_share", "length"],
    ["hyperprompt_sep", "bottleneck"],
    ["hyperprompt_global", "length"],
    ["hyperprompt_global", "bottleneck"],
    ["hyperprompt_global", "embeddingDim"],
    ["hyperprompt_global", "hiddenDim"],
    ["hyperprompt_global", "projectedDim"],
  ];
  for (const [method, field] of sizes) {
    assert.throws(
      () => METHODS[method].parseConfig({ [field]: 1e9 }, "h.json"),
      new RegExp(
        `^Error: h\\.json: ${method} config field "${field}" must be an integer from 1 to ` +
          `32768, got 1000000000$`,
      ),
      `${method}.${field}`,
    );
    // The bound itself is the largest accepted: one above it is refused.
    assert.throws(
      () => METHODS[method].parseConfig({ [field]: 32769 }, "h.json"),
      /must be an integer from 1 to 32768, got 32769$/,
      `${method}.${field} 32769`,
    );
    const ok = METHODS[method].parseConfig({ [field]: 32768 }, "h.json") as unknown;
    assert.equal((ok as Record<string, unknown>)[field], 32768, `${method}.${field}`);
  }
  assert.equal(
    METHODS.prompt_tuning.parseConfig({ vocabSampleSize: 250112 }, "v").vocabSampleSize,
    250112,
  );
  assert.throws(
    () => METHODS.prompt_tuning.parseConfig({ vocabSampleSize: 2 ** 31 }, "v.json"),
    /v\.json: prompt_tuning config field "vocabSampleSize" must be an integer from 1 to 2147483647/,
  );
  // Stacks in canonical order whatever the JSON order (HyperPrompt's block index m counts the
  // encoder's blocks first).
  assert.deepEqual(
    METHODS.adapter.parseConfig({ stacks: ["decoder", "encoder"] }, "s").stacks,
    ["encoder", "decoder"],
  );
});

Deno.test("METHODS defaults follow the spec's baselines; the instance keeps the configured task prefix", () => {
  // Spec §2.4 (Lester et al., A15): l = 100, class-label init with extra rows from the first
  // 5,000 ids, backbone frozen.
  const pt = METHODS.prompt_tuning.parseConfig({}, "d");
  assert.deepEqual(
    [pt.length, pt.init, pt.vocabSampleSize, pt.freezeBackbone],
    [100, "class_label", 5000, "all"],
  );
  // Spec §2.5: MTL-Prompt uses HyperPrompt's l and uniform(0.5), whole model trained.
  const mp = METHODS.mtl_prompt.parseConfig({}, "d");
  assert.equal(mp.length, METHODS.hyperprompt_share.parseConfig({}, "d").length);
  assert.deepEqual([mp.init, mp.uniformScale, mp.freezeBackbone], ["uniform", 0.5, false]);
  // Spec §2.2 (A17): reduction 32 (S6's default config), backbone trained as MTL's.
  const ad = METHODS.adapter.parseConfig({}, "d");
  assert.deepEqual([ad.reduction, ad.freezeBackbone], [32, false]);
  // Spec §2.1 and A12: the text task prefix is kept by default (MTL's only task signal), and
  // the instance follows the option either way.
  const model = tinyModel(TINY);
  for (const name of NAMES) {
    const m = getMethod(name);
    const dflt = m.parseConfig({}, "d") as { keepTaskPrefix: boolean };
    assert.equal(
      dflt.keepTaskPrefix,
      true,
      `${name}: parseConfig({}).keepTaskPrefix must default to true (spec A12; ` +
        `MethodInstance.keepTaskPrefix in model/method.ts)`,
    );
    for (const keep of [false, true]) {
      const inst = m.create(
        context(model),
        m.parseConfig({ ...SMALL[name], keepTaskPrefix: keep }, "d"),
      );
      assert.equal(
        inst.keepTaskPrefix,
        keep,
        `${name}: create() must give the instance the config's keepTaskPrefix (${keep})`,
      );
      inst.dispose();
    }
  }
  disposeT5(model);
});

Deno.test("METHODS create() refuses an empty task list by name, before making any variable (mtl too)", () => {
  const model = tinyModel(TINY);
  const before = tf.memory().numTensors;
  for (const name of NAMES) {
    const m = getMethod(name);
    const cfg = m.parseConfig(SMALL[name], "d");
    for (const [tasks, shown] of [[[], "\\[\\]"], [undefined, "undefined"]] as const) {
      assert.throws(
        () => m.create({ ...context(model), tasks } as unknown as MethodContext, cfg),
        new RegExp(
          `^Error: model/methods/\\w+\\.ts ${name}\\.create: ctx\\.tasks must list at least ` +
            `one task name, got ${shown}$`,
        ),
        `${name} ${shown}`,
      );
    }
    assert.equal(tf.memory().numTensors, before, `${name}: a refused create left tensors`);
  }
  disposeT5(model);
});

Deno.test("parseConfig() rejects a zero initialiser scale, which would leave the method untrainable", () => {
  const fields: [MethodName, string][] = [
    ["adapter", "initStd"],
    ["hyperformer_pp", "initStd"],
    ["hyperformer_pp", "embeddingStd"],
    ["hyperprompt_share", "promptInitScale"],
    ["hyperprompt_share", "hypernetInitStd"],
    ["hyperprompt_sep", "promptInitScale"],
    ["hyperprompt_sep", "hypernetInitStd"],
    ["hyperprompt_global", "promptInitScale"],
    ["hyperprompt_global", "hypernetInitStd"],
    ["hyperprompt_global", "embeddingStd"],
  ];
  for (const [name, field] of fields) {
    for (const bad of [0, -0.1]) {
      assert.throws(
        () => METHODS[name].parseConfig({ [field]: bad }, "m.json"),
        new RegExp(
          `^Error: m\\.json: ${name} config field "${field}" must be a finite number > 0, got ${
            String(bad).replace(".", "\\.")
          }$`,
        ),
      );
    }
    const ok = METHODS[name].parseConfig({ [field]: 0.02 }, "m.json") as unknown;
    assert.equal((ok as Record<string, unknown>)[field], 0.02);
  }
  // Why: with a zero scale (built here without parseConfig) every HyperPrompt variable's gradient
  // is exactly 0 (zero prompts, D/U or embeddings make every path through the ReLU and the
  // products zero), so training would never move them and the run would silently be MTL with l
  // inert key/value slots.
  const model = tinyModel(TINY);
  const { batch, labels } = makeBatch(TINY, 3, 6, 3);
  const before = tf.memory().numTensors;
  for (const [name, field] of fields.filter(([n]) => n.startsWith("hyperprompt"))) {
    const m = getMethod(name);
    const cfg = { ...(m.parseConfig(SMALL[name], "methods_test.ts") as object), [field]: 0 };
    const inst = m.create(context(model), cfg);
    const { value, grads } = tf.variableGrads(
      lossOf(model, inst, batch, labels, [0, 1, 2]) as () => tf.Scalar,
      [...inst.variables.values()],
    );
    for (const [n, v] of inst.variables) {
      const g = grads[v.name];
      const max = g === undefined ? 0 : tf.tidy(() => g.abs().max().dataSync()[0]!);
      assert.equal(max, 0, `${name} ${field} = 0: ${n} has a gradient`);
    }
    tf.dispose([value, ...Object.values(grads)]);
    inst.dispose();
  }
  assert.equal(tf.memory().numTensors, before, "tensors leaked");
  disposeBatch(batch);
  labels.dispose();
  disposeT5(model);
});

Deno.test("the method-author helpers the docs name are exported from the package's mod.ts", () => {
  // deno.json exports only ./mod.ts: a method written against the package can use only what it
  // re-exports. Each helper is the module's own (not a copy), and the types compile from root.
  const same: [string, unknown, unknown][] = [
    ["ConfigReader", root.ConfigReader, configHelpers.ConfigReader],
    ["MAX_SIZE_FIELD", root.MAX_SIZE_FIELD, configHelpers.MAX_SIZE_FIELD],
    ["backboneTrainable", root.backboneTrainable, configHelpers.backboneTrainable],
    ["trainedBackboneParams", root.trainedBackboneParams, configHelpers.trainedBackboneParams],
    ["t5LayerNormParams", root.t5LayerNormParams, configHelpers.t5LayerNormParams],
    ["stackLayers", root.stackLayers, configHelpers.stackLayers],
    ["innerDim", root.innerDim, configHelpers.innerDim],
    ["contextTasks", root.contextTasks, initHelpers.contextTasks],
    ["deriveSeed", root.deriveSeed, initHelpers.deriveSeed],
    ["VarPlan", root.VarPlan, initHelpers.VarPlan],
    ["VarStore", root.VarStore, initHelpers.VarStore],
    ["groupTasks", root.groupTasks, tensorHelpers.groupTasks],
    ["checkBatch", root.checkBatch, tensorHelpers.checkBatch],
    ["rows", root.rows, tensorHelpers.rows],
    ["presentTasks", root.presentTasks, tensorHelpers.presentTasks],
    ["toBatch", root.toBatch, tensorHelpers.toBatch],
  ];
  for (const [name, fromRoot, own] of same) {
    assert.ok(fromRoot !== undefined, `mod.ts does not export ${name}`);
    assert.equal(fromRoot, own, `mod.ts ${name} is not model/methods' own`);
  }
  // A method author's use of them through mod.ts alone, types included.
  const cfg = new root.ConfigReader({ length: 3 }, "author.json", "author");
  assert.equal(cfg.int("length", 1, 1), 3);
  const init: root.Init = { kind: "zeros" };
  const plan = new root.VarPlan("author");
  plan.add("table", [2, 4], init);
  const spec: root.VarSpec | undefined = plan.specs.get("author.table");
  assert.deepEqual(spec?.shape, [2, 4]);
  const before = tf.memory().numTensors;
  const store: root.VarStore = plan.create(1);
  const g: root.TaskGrouping = root.groupTasks([1, 0, 1], 2, "author.ts");
  root.checkBatch(g, 3);
  assert.throws(() => root.checkBatch(g, 2), /author\.ts: batch of 2 but hooks\(\) got 3/);
  const table = store.vars.get("author.table")!;
  tf.dispose([root.toBatch(root.presentTasks(table, g), g), root.rows(table, 0)]);
  store.dispose();
  assert.equal(tf.memory().numTensors, before, "tensors leaked");
  // contextTasks reads ctx.tasks only.
  const ctx = { tasks: ["a", "b"] } as unknown as root.MethodContext;
  assert.equal(root.contextTasks(ctx, "author.ts"), 2);
  assert.equal(root.stackLayers(TINY, "decoder"), TINY.numDecoderLayers);
  assert.equal(root.innerDim(TINY), TINY.numHeads * TINY.dKv);
  assert.equal(
    root.trainedBackboneParams(TINY, "except_layer_norms"),
    root.t5LayerNormParams(TINY),
  );
  assert.equal(root.backboneTrainable("all", "shared.weight", TINY), false);
});
