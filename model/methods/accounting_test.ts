import assert from "node:assert/strict";
import { PRESETS } from "../config.ts";
import { countT5Params, t5Flops } from "../accounting.ts";
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
