/**
 * Initialisation of every method variable (spec §1.8, A13; S6 for the adapters): prompts
 * U(−0.5, 0.5), hypernetwork and adapter weights N(0, 0.01²), task / layer / position embeddings
 * N(0, 1), biases and LayerNorm β zero, LayerNorm γ one; the scales follow their options; no two
 * random variables share a draw.
 *
 * Statistics: for n samples the sample mean of N(0, σ²) or U(−a, a) has standard error σ/√n and
 * the sample standard deviation about σ/√(2n) (normal; less for the uniform); the bounds below are
 * 6 standard errors, so a correct initialiser fails with probability < 1e-8 while a wrong scale
 * (e.g. 0.02 for 0.01, or N(0, 1) for U(−0.5, 0.5)) fails for the smallest tensors tested (n ≥ 96).
 */
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { PRESETS } from "../config.ts";
import { disposeT5 } from "../t5.ts";
import { getMethod, type MethodName } from "./mod.ts";
import { context, tinyModel } from "./_test_util.ts";
import { deriveSeed, VarPlan, VarStore } from "./_init.ts";

await tf.setBackend("cpu");

type Expect =
  | { kind: "normal"; std: number }
  | { kind: "uniform"; scale: number }
  | { kind: "const"; value: number };

function check(name: string, v: tf.Variable, e: Expect): void {
  const x = Array.from(v.dataSync());
  const n = x.length;
  if (e.kind === "const") {
    assert.ok(x.every((y) => y === e.value), `${name}: expected all ${e.value}`);
    return;
  }
  assert.ok(n >= 96, `${name}: only ${n} values, too few to test`);
  const mean = x.reduce((s, y) => s + y, 0) / n;
  const std = Math.sqrt(x.reduce((s, y) => s + (y - mean) ** 2, 0) / n);
  const sigma = e.kind === "normal" ? e.std : e.scale / Math.sqrt(3);
  assert.ok(Math.abs(mean) <= 6 * sigma / Math.sqrt(n), `${name}: mean ${mean} (σ ${sigma})`);
  assert.ok(
    Math.abs(std - sigma) <= 6 * sigma / Math.sqrt(2 * n),
    `${name}: std ${std}, expected ${sigma}`,
  );
  if (e.kind === "uniform") {
    assert.ok(x.every((y) => Math.abs(y) <= e.scale), `${name}: a value outside ±${e.scale}`);
  }
}

/** The expected initialiser of each variable by its name, for the options `raw`. */
function expected(method: MethodName, name: string, raw: Record<string, number>): Expect {
  const w = (key: string, dflt: number): Expect => ({ kind: "normal", std: raw[key] ?? dflt });
  if (/(^|\.)(bias|down_bias|up_bias)$/.test(name) || name.endsWith("layer_norm.bias")) {
    return { kind: "const", value: 0 };
  }
  if (name.endsWith("layer_norm.weight")) return { kind: "const", value: 1 };
  if (name === "prompts" || name === "prompt") {
    const key = method.startsWith("hyperprompt") ? "promptInitScale" : "uniformScale";
    return { kind: "uniform", scale: raw[key] ?? 0.5 };
  }
  if (name.endsWith("_embedding")) return w("embeddingStd", 1);
  if (method.startsWith("hyperprompt")) {
    return w("hypernetInitStd", 0.01);
  }
  return w("initStd", 0.01);
}

const CASES: [MethodName, Record<string, number>][] = [
  ["prompt_tuning", { length: 8 }],
  ["mtl_prompt", { length: 8 }],
  ["mtl_prompt", { length: 8, uniformScale: 0.2 }],
  ["adapter", { reduction: 16 }],
  ["adapter", { reduction: 16, initStd: 0.05 }],
  ["hyperformer_pp", { reduction: 16 }],
  ["hyperformer_pp", { reduction: 16, initStd: 0.03, embeddingStd: 0.5 }],
  ["hyperprompt_share", { length: 4, bottleneck: 4 }],
  ["hyperprompt_sep", { length: 4, bottleneck: 4, promptInitScale: 0.1, hypernetInitStd: 0.1 }],
  ["hyperprompt_global", { embeddingDim: 32 }],
  ["hyperprompt_global", { embeddingDim: 32, embeddingStd: 0.3, hypernetInitStd: 0.02 }],
];

Deno.test("method variables start from the specified initialisers (spec §1.8)", () => {
  const model = tinyModel({ ...PRESETS["tiny-v1_1"], vocabSize: 128 });
  for (const [method, raw] of CASES) {
    const m = getMethod(method);
    const cfg = m.parseConfig(
      method === "prompt_tuning"
        ? { ...raw, init: "uniform" }
        : method === "hyperprompt_global"
        ? { ...raw, biases: true, layerNorm: true }
        : method.startsWith("hyperprompt")
        ? { ...raw, biases: true }
        : raw,
      "init_test.ts",
    );
    const inst = m.create(context(model), cfg);
    const draws = new Set<string>();
    for (const [name, v] of inst.variables) {
      const short = name.slice(method.length + 1);
      const e = expected(method, short, raw);
      check(`${method} ${JSON.stringify(raw)} ${short}`, v, e);
      if (e.kind !== "const") {
        const key = Array.from(v.dataSync().slice(0, 4)).join();
        assert.ok(!draws.has(key), `${method} ${short} repeats another variable's draw`);
        draws.add(key);
      }
    }
    inst.dispose();
  }
  disposeT5(model);
});

Deno.test("VarPlan: shapes() is what create() makes; a duplicate name or a failed init is refused, leak-free", () => {
  const plan = new VarPlan("m");
  plan.add("w", [2, 3], { kind: "normal", std: 0.01 });
  plan.add("b", [3], { kind: "zeros" });
  assert.throws(() => plan.add("w", [1], { kind: "ones" }), /duplicate method variable "m\.w"/);
  const before = tf.memory().numTensors;
  const store = plan.create(5);
  assert.deepEqual(
    [...store.vars].map(([n, v]) => [n, v.shape]),
    [...plan.shapes()].map(([n, s]) => [n, [...s]]),
  );
  // Seeded per full name, as VarStore.add: the same value as a variable made directly.
  const direct = new VarStore(5, "m");
  direct.add("w", [2, 3], { kind: "normal", std: 0.01 });
  assert.deepEqual(store.vars.get("m.w")!.dataSync(), direct.vars.get("m.w")!.dataSync());
  direct.dispose();
  store.dispose();
  assert.equal(tf.memory().numTensors, before, "disposed");
  // The third variable's value has the wrong shape: the two made before it are released.
  plan.add("p", [2, 2], { kind: "tensor", value: () => tf.zeros([4]) });
  assert.throws(() => plan.create(5), /initial value of "m\.p" has shape \[4\], expected \[2,2\]/);
  assert.equal(tf.memory().numTensors, before, "a failed create() releases what it made");
});

Deno.test("deriveSeed: every bit of the root seed and the name count; VarStore seeds by the full name", async () => {
  const before = tf.memory().numTensors;
  const name = "adapter.encoder.0.down.weight";
  // 109 root seeds: 0..59, every single bit 2^k up to 2^52 (a mix that drops or merges bit k maps
  // 2^k onto 0 or another root; 0..59 alone differ in bits 0..5 only), 2^32 + 1 and 2^53 - 1;
  // and 3 names of one method (they share the method prefix): 327 distinct seeds (a chance
  // collision among 327 31-bit values has probability < 3e-5). Names that differ in their first
  // character only are not separated: the seed is XORed into FNV's basis, as the first character
  // is (deriveSeed(2, "a.w") === deriveSeed(1, "b.w")); a method's names never differ there.
  const roots = [
    ...Array.from({ length: 60 }, (_, i) => i),
    ...Array.from({ length: 53 - 6 }, (_, k) => 2 ** (k + 6)),
    2 ** 32 + 1,
    2 ** 53 - 1,
  ];
  assert.equal(new Set(roots).size, 109);
  const seeds = roots.flatMap((r) =>
    [name, "adapter.a.w", "adapter.b.w"].map((n) => deriveSeed(r, n))
  );
  assert.equal(new Set(seeds).size, seeds.length, "a repeated derived seed");
  assert.ok(seeds.every((x) => Number.isInteger(x) && x >= 0 && x < 2 ** 31));
  // Pinned (computed independently in Python from the FNV-1a definition): a change of
  // deriveSeed changes every initial value, and with it the CI baseline.
  assert.deepEqual([deriveSeed(7, name), deriveSeed(0, name)], [2066320975, 1404431770]);
  // A variable's draw is tfjs's with deriveSeed(method seed, "prefix.name"): another method
  // seed or another prefix draws other values.
  const value = async (seed: number, prefix: string) => {
    const store = new VarStore(seed, prefix);
    const v = [...await store.add("w", [4, 8], { kind: "normal", std: 1 }).data()];
    store.dispose();
    return v;
  };
  const want = tf.randomNormal([4, 8], 0, 1, "float32", deriveSeed(5, "m.w"));
  assert.deepEqual(await value(5, "m"), [...await want.data()]);
  want.dispose();
  assert.notDeepEqual(await value(6, "m"), await value(5, "m"), "the method seed is used");
  assert.notDeepEqual(await value(5, "n"), await value(5, "m"), "the prefix is part of the name");
  assert.equal(tf.memory().numTensors, before, "no leaked tensors");
});
