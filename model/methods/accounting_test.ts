import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { PRESETS } from "../config.ts";
import { countT5Params, sharedEmbeddingUnused, t5Flops } from "../accounting.ts";
import { loadHfFolder } from "../checkpoint.ts";
import { sharedPath } from "../shared_dir.ts";
import { crossEntropyLoss, disposeT5, forward, shiftRight, t5FromTensors } from "../t5.ts";
import { methodAccounting } from "./accounting.ts";
import { METHODS } from "./mod.ts";

Deno.test("methodAccounting() reproduces HyperFormer++ on t5-base, 8 tasks, r = 32 (spec §5.3)", () => {
  const a = methodAccounting(
    PRESETS["t5-base"],
    "hyperformer_pp",
    { freezeBackbone: "except_layer_norms" },
    8,
  );
  assert.equal(a.backbone, 222_903_552);
  assert.equal(a.extra, 5_163_440);
  assert.equal(a.total, 222_903_552 + 5_163_440);
  assert.equal(a.ratio.toFixed(4), "1.0232");
  assert.equal(a.trained, 5_211_056);
  assert.equal(a.trainedPerTaskPct.toFixed(3), "0.292");
  // Default (spec A16): backbone trained too.
  const full = methodAccounting(PRESETS["t5-base"], "hyperformer_pp", {}, 8);
  assert.equal(full.trained, 222_903_552 + 5_163_440);
});

Deno.test("methodAccounting() follows spec §5.4 for HyperPrompt Share/Sep/Global (Configs A and B)", () => {
  const configA = { length: 16, bottleneck: 16 };
  const globalA = { ...configA, embeddingDim: 32, hiddenDim: 32, projectedDim: 32 };
  const configB = { length: 100, bottleneck: 16 };
  const globalB = { ...configB, embeddingDim: 64, hiddenDim: 128, projectedDim: 64 };
  const rows: [string, string, Record<string, unknown>, number][] = [
    ["t5-v1_1-base", "hyperprompt_share", configA, 1_277_952],
    ["t5-v1_1-base", "hyperprompt_sep", configA, 9_535_488],
    ["t5-v1_1-base", "hyperprompt_global", globalA, 1_675_328],
    ["t5-v1_1-large", "hyperprompt_share", configA, 3_276_800],
    ["t5-v1_1-large", "hyperprompt_sep", configA, 25_296_896],
    ["t5-v1_1-large", "hyperprompt_global", globalA, 2_233_152],
    ["t5-v1_1-xxl", "hyperprompt_global", globalA, 8_917_824],
    ["t5-v1_1-base", "hyperprompt_share", configB, 1_794_048],
    ["t5-v1_1-base", "hyperprompt_sep", configB, 10_051_584],
    ["t5-v1_1-base", "hyperprompt_global", globalB, 3_786_944],
    ["t5-v1_1-xl", "hyperprompt_global", globalB, 10_055_360],
    ["t5-v1_1-xxl", "hyperprompt_sep", configB, 103_940_096],
  ];
  for (const [size, name, cfg, extra] of rows) {
    const a = methodAccounting(PRESETS[size as "t5-base"], name, cfg, 8);
    assert.equal(a.extra, extra, `${size} ${name}`);
  }
  const b = methodAccounting(PRESETS["t5-v1_1-base"], "hyperprompt_global", globalB, 8);
  assert.equal(b.extraPct.toFixed(3), "1.530");
  assert.equal(b.ratio.toFixed(3), "1.015");
  // Defaults are l = 16, b = 16, t' = 64, e = 128, t = 64.
  assert.deepEqual(
    methodAccounting(PRESETS["t5-v1_1-base"], "hyperprompt_global", {}, 8).extra,
    8 * 16 * 768 + (8 + 24) * 64 + 24_768 + 4 * 768 * 16 * 64,
  );
});

Deno.test("methodAccounting() counts Prompt-Tuning prompts as T·l·d (spec §5.2)", () => {
  const a = methodAccounting(PRESETS["t5-v1_1-xxl"], "prompt_tuning", { length: 100 }, 1);
  assert.equal(a.extra, 409_600);
  assert.equal(a.trained, 409_600);
  assert.equal(a.extraPct.toFixed(4), "0.0037");
  const m = methodAccounting(PRESETS["t5-v1_1-base"], "mtl", {}, 8);
  assert.equal(m.extra, 0);
  assert.equal(m.trained, countT5Params(PRESETS["t5-v1_1-base"]));
});

Deno.test("methodAccounting() FLOPs: backbone plus the method's per-token terms (spec §5.6)", () => {
  const cfg = PRESETS["t5-v1_1-base"];
  const shape = { inputLength: 128, targetLength: 8 };
  const base = t5Flops(cfg, shape);
  const mtl = methodAccounting(cfg, "mtl", {}, 8, shape);
  assert.equal(mtl.forwardFlops, base.forward);
  assert.equal(mtl.trainFlops, base.train);
  // HyperPrompt: 2·l·d MACs per query per conditioned layer (l = 16, Base: 24,576 MACs).
  const hp = methodAccounting(cfg, "hyperprompt_global", {}, 8, shape);
  assert.equal(hp.forwardFlops! - base.forward, 2 * 24_576 * 12 * (128 + 8));
  assert.equal(hp.trainFlops! - base.train, 3 * 2 * 24_576 * 12 * (128 + 8));
  // HyperFormer++ (r = 32): d²/8 MACs per token per block (Base: 73,728).
  const hf = methodAccounting(cfg, "hyperformer_pp", {}, 8, shape);
  assert.equal(hf.forwardFlops! - base.forward, 2 * 73_728 * 12 * (128 + 8));
  // Prompt-Tuning: the backbone at input length n + l.
  const pt = METHODS.prompt_tuning.extraFlops(cfg, METHODS.prompt_tuning.defaults, shape);
  assert.equal(pt.forward, t5Flops(cfg, { ...shape, inputLength: 228 }).forward - base.forward);
  assert.equal(methodAccounting(cfg, "adapter", {}, 8).forwardFlops, null);
});

Deno.test("methodAccounting() rejects bad task counts and configs", () => {
  assert.throws(() => methodAccounting(PRESETS["t5-base"], "mtl", {}, 0), /numTasks/);
  assert.throws(
    () => methodAccounting(PRESETS["t5-base"], "adapter", { reduction: "x" }, 8),
    /"reduction"/,
  );
});

Deno.test("untied per-stack embeddings (transformers 5 layout): counts equal the variables, an unused shared.weight is not trained", async () => {
  // The fixture's encoder/decoder embed_tokens differ from shared.weight; HF's n_params (68,640)
  // counts all three V×d tables, and HF gives shared.weight no gradient.
  const dir = sharedPath("fixtures", "hf-t5", "t5-tiny-v1_1-untied");
  const { config, tensors } = await loadHfFolder(dir);
  const model = t5FromTensors(config, tensors, dir);
  tf.dispose([...tensors.values()]);
  const ref = JSON.parse(await Deno.readTextFile(`${dir}/reference.json`)) as {
    n_params: number;
    grad_l2_norms: Record<string, number>;
  };
  assert.deepEqual(model.config.ownEmbeddings, ["encoder", "decoder"]);
  assert.ok(sharedEmbeddingUnused(model.config));
  let held = 0;
  for (const v of model.params.values()) held += v.size;
  assert.equal(held, ref.n_params);
  assert.equal(countT5Params(model.config), held);
  // Which variables get a gradient: those HF gives one to, i.e. not shared.weight.
  const batch = {
    inputIds: tf.tensor2d([[5, 6, 7, 1]], undefined, "int32"),
    attentionMask: tf.ones([1, 4]) as tf.Tensor2D,
  };
  const labels = tf.tensor2d([[8, 9, 1]], undefined, "int32");
  const decoderInputIds = shiftRight(labels, model.config);
  const names = new Map([...model.params].map(([n, v]) => [v.name, n]));
  const { value, grads } = tf.variableGrads(
    () =>
      crossEntropyLoss(forward(model, { ...batch, decoderInputIds }).logits, labels) as tf.Scalar,
    [...model.params.values()],
  );
  const withGrad = new Set(Object.keys(grads).map((k) => names.get(k)!));
  tf.dispose([value, ...Object.values(grads), batch.inputIds, batch.attentionMask, labels]);
  decoderInputIds.dispose();
  assert.deepEqual([...withGrad].sort(), Object.keys(ref.grad_l2_norms).sort());
  assert.ok(!withGrad.has("shared.weight"));
  // Every method and freezing option: the closed-form trained count equals the variables it
  // trains, and those are exactly variables with a gradient.
  const cases: [string, Record<string, unknown>][] = [
    ["mtl", {}],
    ["mtl", { freezeBackbone: "except_layer_norms" }],
    ["adapter", { reduction: 8 }],
    ["prompt_tuning", { length: 3, init: "uniform" }],
    ["mtl_prompt", { length: 3 }],
    ["hyperprompt_global", { length: 2, bottleneck: 4, embeddingDim: 4, hiddenDim: 8 }],
  ];
  for (const [name, raw] of cases) {
    const m = METHODS[name as keyof typeof METHODS];
    const cfg = m.parseConfig(raw, "accounting_test.ts") as never;
    const inst = m.create(
      { config: model.config, tasks: ["rte", "cola"], seed: 1, backbone: model.params },
      cfg,
    );
    let trained = 0;
    for (const v of inst.variables.values()) trained += v.size;
    for (const [n, v] of model.params) {
      if (!inst.isBackboneTrainable(n)) continue;
      assert.ok(
        withGrad.has(n),
        `${name} ${JSON.stringify(raw)}: trains ${n}, which has no gradient`,
      );
      trained += v.size;
    }
    const acc = methodAccounting(model.config, name, raw, 2);
    assert.equal(acc.trained, trained, `${name} ${JSON.stringify(raw)}: trained`);
    assert.equal(acc.total, held + acc.extra, `${name}: total`);
    inst.dispose();
  }
  // Published layout (per-stack tables equal to shared.weight): unchanged, nothing extra.
  const plain = PRESETS["t5-v1_1-base"];
  assert.equal(sharedEmbeddingUnused(plain), false);
  assert.equal(methodAccounting(plain, "mtl", {}, 8).trained, countT5Params(plain));
  disposeT5(model);
});
