import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { PRESETS, type T5Config } from "../config.ts";
import { countT5Params, sharedEmbeddingUnused, t5Flops } from "../accounting.ts";
import { loadHfFolder } from "../checkpoint.ts";
import { sharedPath } from "../shared_dir.ts";
import { crossEntropyLoss, disposeT5, forward, initT5, shiftRight, t5FromTensors } from "../t5.ts";
import { installLowMemoryBackprop, uninstallLowMemoryBackprop } from "../backprop.ts";
import { disposeBatch, makeBatch } from "./_test_util.ts";
import { methodAccounting } from "./accounting.ts";
import { type MethodName, METHODS } from "./mod.ts";
import { attentionMass } from "./attention_mass.ts";
import type { Method } from "../method.ts";
import * as root from "../../mod.ts";
import { profiledMatmulFlops, TINY_FLOP_CONFIG } from "../accounting_testing.ts";

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
  // Prompt-Tuning: the backbone at input length n + l; MTL-Prompt trains it all (3 × forward).
  const pt = methodAccounting(cfg, "prompt_tuning", {}, 8, shape);
  assert.equal(pt.forwardFlops, t5Flops(cfg, { ...shape, inputLength: 228 }).forward);
  const mp = methodAccounting(cfg, "mtl_prompt", { length: 100 }, 8, shape);
  assert.equal(mp.forwardFlops, pt.forwardFlops);
  assert.equal(mp.trainFlops, 3 * mp.forwardFlops!);
  // Frozen, it needs no weight gradients: between 1 and 2 forwards more, not 2.
  assert.ok(pt.trainFlops! > 2 * pt.forwardFlops! && pt.trainFlops! < 3 * pt.forwardFlops!);
  assert.equal(methodAccounting(cfg, "adapter", {}, 8).forwardFlops, null);
});

/**
 * A hand-sized T5 1.0 (ReLU, tied): d = 8, i = h·d_kv = 8, f = 16, V = 32, 2 + 2 blocks, with
 * S = 5 input and T = 3 target tokens. Per matmul of m·k·n multiply-adds the forward is 2·m·k·n;
 * written below as p(m, k, n).
 */
const HAND: T5Config = {
  ...PRESETS["tiny-relu"],
  dModel: 8,
  numHeads: 2,
  dKv: 4,
  dFf: 16,
  vocabSize: 32,
  numLayers: 2,
  numDecoderLayers: 2,
};
const HAND_SHAPE = { inputLength: 5, targetLength: 3 };

Deno.test("methodAccounting() training FLOPs by hand on a tiny config, frozen and not", () => {
  const p = (m: number, k: number, n: number) => 2 * m * k * n;
  const [S, T, d, i, f, V] = [5, 3, 8, 8, 16, 32];
  const acc = (name: string, cfg: Record<string, unknown>) =>
    methodAccounting(HAND, name, cfg, 2, HAND_SHAPE);
  // MTL: q, k, v, o, two products, wi, wo per encoder block; the decoder adds cross-attention.
  const encF = 4 * p(S, d, i) + 2 * p(S, S, i) + 2 * p(S, d, f);
  const decF = 4 * p(T, d, i) + 2 * p(T, T, i) + 2 * p(T, d, i) + 2 * p(S, d, i) +
    2 * p(T, S, i) + 2 * p(T, d, f);
  const fwd = 2 * encF + 2 * decF + p(T, d, V);
  assert.equal(fwd, 25_152);
  const mtl = acc("mtl", {});
  assert.deepEqual([mtl.forwardFlops, mtl.trainFlops], [25_152, 3 * 25_152]);
  // Only the norms trained: every input needs its gradient, no weight does; q·kᵀ and probs·v
  // still differentiate both operands.
  const ln = acc("mtl", { freezeBackbone: "except_layer_norms" });
  const products = 2 * 2 * p(S, S, i) + 2 * (2 * p(T, T, i) + 2 * p(T, S, i));
  assert.deepEqual([ln.forwardFlops, ln.trainFlops], [fwd, 2 * fwd + products]);
  assert.equal(ln.trainFlops, 53_440);

  // Prompt-Tuning, frozen, l = 2: S' = 7 encoder rows. Every encoder matmul input depends on the
  // prompt (×2: forward + dX; products ×3). Decoder block 0: its self-attention sees only the
  // frozen embedding (×1); cross q ×1, k, v ×2, q·kᵀ needs dK only (×2), probs·v ×3, o ×2;
  // block 1 and the output as everywhere (×2, products ×3).
  const s2 = S + 2;
  const ptEnc = 2 * 4 * p(s2, d, i) + 3 * 2 * p(s2, s2, i) + 2 * 2 * p(s2, d, f);
  const ptDec0 = 4 * p(T, d, i) + 2 * p(T, T, i) + p(T, d, i) + 2 * 2 * p(s2, d, i) +
    2 * p(T, i, s2) + 3 * p(T, s2, i) + 2 * p(T, i, d) + 2 * 2 * p(T, d, f);
  const ptDec1 = 2 * 4 * p(T, d, i) + 3 * 2 * p(T, T, i) + 2 * 2 * p(T, d, i) +
    2 * 2 * p(s2, d, i) + 3 * 2 * p(T, s2, i) + 2 * 2 * p(T, d, f);
  const pt = acc("prompt_tuning", { length: 2, init: "uniform" });
  assert.equal(pt.forwardFlops, 32_192);
  assert.equal(pt.trainFlops, 2 * ptEnc + ptDec0 + ptDec1 + 2 * p(T, d, V));
  assert.equal(pt.trainFlops, 66_608);
  assert.equal(acc("mtl_prompt", { length: 2 }).trainFlops, 3 * 32_192);

  // HyperPrompt-Global, l = 2 prefix keys/values in every block: frozen, the first block of each
  // stack runs q, k, v without gradients (×1), q·kᵀ over the S + l keys with dK only (×2),
  // probs·v ×3, o ×2; later blocks, the decoder's cross-attention and the output as above.
  const hp = { length: 2, bottleneck: 4, embeddingDim: 4, hiddenDim: 8 };
  const self = (r: number, first: boolean) =>
    (first ? 3 * p(r, d, i) + 2 * p(r, i, r + 2) : 2 * 3 * p(r, d, i) + 3 * p(r, i, r + 2)) +
    3 * p(r, r + 2, i) + 2 * p(r, i, d) + 2 * 2 * p(r, d, f);
  const cross = 2 * 2 * p(T, d, i) + 2 * 2 * p(S, d, i) + 3 * 2 * p(T, S, i);
  const hpFwd = fwd + 2 * (2 * p(S, 2, i)) + 2 * (2 * p(T, 2, i));
  const hpFrozen = acc("hyperprompt_global", { ...hp, freezeBackbone: "all" });
  assert.equal(hpFrozen.forwardFlops, hpFwd);
  assert.equal(hpFwd, 26_176);
  assert.equal(
    hpFrozen.trainFlops,
    self(S, true) + self(S, false) + self(T, true) + self(T, false) + 2 * cross + 2 * p(T, d, V),
  );
  assert.equal(hpFrozen.trainFlops, 52_640);
  const hpTrained = acc("hyperprompt_global", hp);
  assert.deepEqual([hpTrained.forwardFlops, hpTrained.trainFlops], [26_176, 3 * 26_176]);

  // Adapter (r = 4: a = 2) after self-attention and feed-forward of every block, frozen: the
  // first adapter of each stack gets no input gradient (down ×2, up ×3), the others ×3; the
  // matmuls before it (the stack's first self-attention) no backward at all.
  const ad = (r: number, first: boolean) => (first ? 2 : 3) * p(r, d, 2) + 3 * p(r, 2, d);
  const enc0 = 4 * p(S, d, i) + 2 * p(S, S, i) + ad(S, true) + 2 * 2 * p(S, d, f) + ad(S, false);
  const enc1 = 2 * 4 * p(S, d, i) + 3 * 2 * p(S, S, i) + ad(S, false) + 2 * 2 * p(S, d, f) +
    ad(S, false);
  const dec0 = 4 * p(T, d, i) + 2 * p(T, T, i) + ad(T, true) + cross + 2 * 2 * p(T, d, f) +
    ad(T, false);
  const dec1 = 2 * 4 * p(T, d, i) + 3 * 2 * p(T, T, i) + ad(T, false) + cross +
    2 * 2 * p(T, d, f) + ad(T, false);
  const adapter = acc("adapter", { reduction: 4, freezeBackbone: "all" });
  assert.equal(
    adapter.forwardFlops,
    fwd + 2 * 2 * (p(S, d, 2) + p(S, 2, d) + p(T, d, 2) + p(T, 2, d)),
  );
  assert.equal(adapter.forwardFlops, 27_200);
  assert.equal(adapter.trainFlops, enc0 + enc1 + dec0 + dec1 + 2 * p(T, d, V));
  assert.equal(adapter.trainFlops, 53_056);
  const adapterTrained = acc("adapter", { reduction: 4 });
  assert.equal(adapterTrained.trainFlops, 3 * 27_200);
});

Deno.test("methodAccounting() FLOPs equal the matmul kernels tfjs runs for one training step (cpu)", async () => {
  await tf.setBackend("cpu");
  const config: T5Config = TINY_FLOP_CONFIG;
  const [S, T] = [6, 3];
  const before = tf.memory().numTensors;
  const model = initT5(config, { seed: 5 });
  const hp = { length: 2, bottleneck: 4, embeddingDim: 4, hiddenDim: 8 };
  // Typed by registry key, so a method added to METHODS must bring its cases (a flopPlan that
  // misses where its trained tensors enter shows here as a train-FLOP mismatch).
  const byMethod: Record<MethodName, Record<string, unknown>[]> = {
    mtl: [{}, { freezeBackbone: "except_layer_norms" }],
    prompt_tuning: [{ length: 3, init: "uniform" }],
    mtl_prompt: [{ length: 3 }],
    adapter: [{ reduction: 4, freezeBackbone: "all" }, {
      reduction: 4,
      freezeBackbone: "all",
      stacks: ["decoder"],
      positions: ["feed_forward"],
    }],
    hyperformer_pp: [{ reduction: 4, freezeBackbone: "except_layer_norms" }],
    hyperprompt_global: [
      { ...hp, freezeBackbone: "all" },
      { ...hp, freezeBackbone: "all", stacks: ["decoder"] },
      hp,
    ],
    hyperprompt_share: [{ length: 2, bottleneck: 4, freezeBackbone: "all" }],
    hyperprompt_sep: [{ length: 2, bottleneck: 4, freezeBackbone: "all", stacks: ["encoder"] }],
  };
  const cases = (Object.entries(byMethod) as [MethodName, Record<string, unknown>[]][])
    .flatMap(([name, raws]) => raws.map((raw) => [name, raw] as const));
  for (const [name, raw] of cases) {
    const beforeCase = tf.memory().numTensors;
    const m = METHODS[name];
    const inst = m.create(
      { config, tasks: ["rte", "cola"], seed: 3, backbone: model.params },
      m.parseConfig(raw, "accounting_test.ts") as never,
    );
    const vars = [
      ...[...model.params].filter(([n]) => inst.isBackboneTrainable(n)).map(([, v]) => v),
      ...inst.variables.values(),
    ];
    // Per-step work that does not grow with the batch (generating hyper-prompts or adapter
    // weights per task) cancels in the difference of two batch sizes of one task.
    const measure = async (rows: number) => {
      const { batch, labels } = makeBatch(config, rows, S, T);
      const hooks = inst.hooks(new Array(rows).fill(1));
      const loss = () =>
        crossEntropyLoss(forward(model, batch, { hooks }).logits, labels) as tf.Scalar;
      // tfjs hands back one profile object per engine, so each is read before the next.
      const forwardFlops = profiledMatmulFlops(
        (await tf.profile(() => {
          tf.tidy(loss).dispose();
          return [];
        })).kernels,
      );
      const step = async () =>
        profiledMatmulFlops(
          (await tf.profile(() => {
            const { value, grads } = tf.variableGrads(loss, vars);
            tf.dispose([value, ...Object.values(grads)]);
            return [];
          })).kernels,
        );
      const trainFlops = await step();
      // model/backprop.ts's backward pass (what bench installs) prunes like tfjs's.
      assert.ok(installLowMemoryBackprop(() => {}));
      const lowMemory = await step();
      uninstallLowMemoryBackprop();
      disposeBatch(batch);
      labels.dispose();
      return { forward: forwardFlops, train: trainFlops, lowMemory };
    };
    const [one, three] = [await measure(1), await measure(3)];
    const acc = methodAccounting(config, name, raw, 2, { inputLength: S, targetLength: T });
    const where = `${name} ${JSON.stringify(raw)}`;
    assert.equal((three.forward - one.forward) / 2, acc.forwardFlops, `${where}: forward`);
    assert.equal((three.train - one.train) / 2, acc.trainFlops, `${where}: train`);
    assert.equal((three.lowMemory - one.lowMemory) / 2, acc.trainFlops, `${where}: low-memory`);
    inst.dispose();
    // Per case, so that a leak names the method and config that left it.
    assert.equal(tf.memory().numTensors, beforeCase, `${where}: tensors leaked`);
  }
  disposeT5(model);
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("methodAccounting() takes an unregistered Method object; it and attentionMass reach mod.ts", () => {
  // A per-task bias after each encoder feed-forward sublayer on a frozen backbone, written here
  // and registered nowhere (its create is never called by the accounting).
  const bias: Method<{ readonly freezeBackbone: "all" }> = {
    name: "task_bias",
    description: "per-task bias (test)",
    defaults: { freezeBackbone: "all" },
    parseConfig(raw: unknown, source: string) {
      const r = new root.ConfigReader(raw, source, "task_bias");
      r.done();
      return { freezeBackbone: "all" } as const;
    },
    create() {
      throw new Error("task_bias.create is not called by methodAccounting");
    },
    countParams: (config, _cfg, numTasks) => ({
      extra: numTasks * config.numLayers * config.dModel,
      trainedBackbone: 0,
    }),
    flopPlan: () => ({
      freezeBackbone: "all",
      elementwise: { stacks: ["encoder"], positions: ["feed_forward"], op: "add" },
    }),
  };
  const config = PRESETS["t5-v1_1-small"];
  const shape = { inputLength: 16, targetLength: 4 };
  const a = methodAccounting(config, bias as Method<unknown>, {}, 4, shape);
  const extra = 4 * config.numLayers * config.dModel;
  const backbone = countT5Params(config);
  assert.equal(a.backbone, backbone);
  assert.equal(a.extra, extra);
  assert.equal(a.total, backbone + extra);
  assert.equal(a.trained, extra);
  assert.equal(a.trainedPerTaskPct, (100 * extra) / 4 / backbone);
  const flops = t5Flops(config, shape, bias.flopPlan(config, { freezeBackbone: "all" }));
  assert.equal(a.forwardFlops, flops.forward);
  assert.equal(a.trainFlops, flops.train);
  // The method's own name in a config error, as for a registered one.
  assert.throws(
    () => methodAccounting(config, bias as Method<unknown>, { x: 1 }, 4),
    /methodAccounting\(task_bias\): unknown task_bias config field "x"/,
  );
  // A registered method by key or as an object: the same figures.
  assert.deepEqual(
    methodAccounting(config, METHODS.adapter as Method<unknown>, {}, 4, shape),
    methodAccounting(config, "adapter", {}, 4, shape),
  );
  assert.equal(root.methodAccounting, methodAccounting, "mod.ts methodAccounting");
  assert.equal(root.attentionMass, attentionMass, "mod.ts attentionMass");
  const typed: root.MethodAccounting = root.methodAccounting(config, "mtl", {}, 1);
  assert.equal(typed.extra, 0);
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
