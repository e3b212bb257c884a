/**
 * Behaviour of the T5 model beyond HF parity (see parity_test.ts): names and initialisation,
 * loading validation, hooks, dropout seeding, the loss, and cached vs uncached greedy decoding
 * (with and without prefixes). cpu backend, tiny presets.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { installLowMemoryBackprop, uninstallLowMemoryBackprop } from "./backprop.ts";
import { loadHfFolder } from "./checkpoint.ts";
import { CheckpointError } from "./checkpoint_error.ts";
import { preset, type T5Config } from "./config.ts";
import {
  DROPOUT,
  type DropoutMaskParams,
  dropoutMaskParams,
  registerFusedWasmKernels,
  unregisterFusedWasmKernels,
} from "./fused.ts";
import type { AttentionPrefix, Stack, T5Hooks } from "./hooks.ts";
import { METHODS } from "./methods/mod.ts";
import type { Method } from "./method.ts";
import { sharedPath } from "./shared_dir.ts";
import { gpuTest } from "./webgpu/testing.ts";
import {
  type CheckpointTensor,
  checkT5Checkpoint,
  crossEntropyLoss,
  disposeT5,
  forward,
  greedyDecode,
  initT5,
  type Seq2SeqBatch,
  shiftRight,
  sublayerScopes,
  t5FromTensors,
  type T5Model,
  t5ParamShapes,
  t5StateDict,
} from "./t5.ts";
import { bufferMeter } from "./buffer_meter_testing.ts";

await tf.setBackend("cpu");

/** A small config with a short vocabulary so random models produce varied tokens. */
function small(name: "tiny-relu" | "tiny-v1_1", over: Partial<T5Config> = {}): T5Config {
  return { ...preset(name), vocabSize: 64, ...over };
}

function makeBatch(): Seq2SeqBatch {
  return {
    inputIds: tf.tensor2d(
      [[5, 9, 13, 2, 1], [7, 8, 1, 0, 0], [3, 4, 6, 10, 1]],
      undefined,
      "int32",
    ),
    attentionMask: tf.tensor2d([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]),
    decoderInputIds: tf.tensor2d([[0, 4, 5, 6], [0, 7, 1, 0], [0, 9, 9, 9]], undefined, "int32"),
  };
}

function disposeBatch(b: Seq2SeqBatch): void {
  tf.dispose([b.inputIds, b.attentionMask, b.decoderInputIds]);
}

function maxAbs(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!);
}

function logitsOf(model: T5Model, batch: Seq2SeqBatch, opts = {}): tf.Tensor3D {
  const r = forward(model, batch, opts);
  r.encoderOutput.dispose();
  return r.logits;
}

Deno.test("t5ParamShapes: HF names, orientation and variant-specific tensors", () => {
  const relu = t5ParamShapes(preset("tiny-relu"));
  assert.deepEqual(relu.get("encoder.block.1.layer.0.SelfAttention.q.weight"), [64, 64]);
  assert.deepEqual(relu.get("encoder.block.0.layer.1.DenseReluDense.wi.weight"), [128, 64]);
  assert.deepEqual(relu.get("decoder.block.1.layer.2.DenseReluDense.wo.weight"), [64, 128]);
  assert.deepEqual(
    relu.get("decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"),
    [
      16,
      4,
    ],
  );
  assert.ok(!relu.has("decoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight"));
  assert.ok(!relu.has("lm_head.weight"));
  const g = t5ParamShapes(preset("tiny-v1_1"));
  assert.deepEqual(g.get("lm_head.weight"), [4096, 64]);
  assert.ok(g.has("decoder.block.1.layer.2.DenseReluDense.wi_1.weight"));
  assert.ok(!g.has("decoder.block.1.layer.2.DenseReluDense.wi.weight"));
  // q/k/v inner width = heads · dKv (16 · 4 = 64 for tiny-v1_1)
  assert.deepEqual(g.get("decoder.block.1.layer.1.EncDecAttention.o.weight"), [64, 64]);
});

Deno.test("initT5: deterministic per seed, HF standard deviations, norms are ones", () => {
  const cfg = preset("mini-v1_1");
  const a = initT5(cfg, { seed: 3 });
  const b = initT5(cfg, { seed: 3 });
  const c = initT5(cfg, { seed: 4 });
  const name = "encoder.block.2.layer.0.SelfAttention.q.weight";
  assert.equal(maxAbs(a.params.get(name)!, b.params.get(name)!), 0);
  // σ = (d·dKv)^-0.5 = 0.016: the largest difference of two independent draws is ~6σ (measured
  // 0.099); 0.01 fails only when the seed is ignored.
  assert.ok(maxAbs(a.params.get(name)!, c.params.get(name)!) > 0.01);
  const std = (n: string) =>
    tf.tidy(() => tf.moments(a.params.get(n)!).variance.sqrt().dataSync()[0]!);
  const d = cfg.dModel;
  const want: Record<string, number> = {
    "shared.weight": 1,
    "lm_head.weight": 1,
    [name]: (d * cfg.dKv) ** -0.5,
    "encoder.block.2.layer.0.SelfAttention.k.weight": d ** -0.5,
    "decoder.block.1.layer.1.EncDecAttention.o.weight": (cfg.numHeads * cfg.dKv) ** -0.5,
    "decoder.block.3.layer.2.DenseReluDense.wi_0.weight": d ** -0.5,
    "decoder.block.3.layer.2.DenseReluDense.wo.weight": cfg.dFf ** -0.5,
  };
  for (const [n, s] of Object.entries(want)) {
    // ≥ 16k samples each: the sample std is within ~1.5% of σ; allow 5%.
    assert.ok(Math.abs(std(n) / s - 1) < 0.05, `${n}: std ${std(n)} vs ${s}`);
  }
  const ln = a.params.get("decoder.final_layer_norm.weight")!;
  assert.deepEqual([...ln.dataSync()], new Array(cfg.dModel).fill(1));
  [a, b, c].forEach(disposeT5);
});

Deno.test("initT5, t5FromTensors, checkT5Checkpoint: a size that is not a positive integer, or a seed that is not an integer, is refused by name before any tensor", () => {
  const cfg = small("tiny-relu");
  const before = tf.memory().numTensors;
  const sizes = [
    "vocabSize",
    "dModel",
    "dKv",
    "dFf",
    "numHeads",
    "numLayers",
    "numDecoderLayers",
    "relativeAttentionNumBuckets",
    "relativeAttentionMaxDistance",
  ] as const;
  for (const key of sizes) {
    for (const bad of [0, -1, 1.5, NaN, undefined]) {
      const over = { ...cfg, [key]: bad } as unknown as T5Config;
      const re = new RegExp(`config\\.${key} must be a positive integer, got ${bad}$`);
      assert.throws(() => initT5(over, { seed: 0 }), new RegExp(`initT5: ${re.source}`), key);
      assert.throws(
        () => t5FromTensors(over, new Map(), "mem"),
        new RegExp(`t5FromTensors: ${re.source}`),
        key,
      );
      assert.throws(
        () => checkT5Checkpoint(over, new Map(), "mem", { dtypes: ["float32"] }),
        new RegExp(`checkT5Checkpoint: ${re.source}`),
        key,
      );
    }
  }
  for (const seed of [undefined, NaN, 1.5, Infinity, 2 ** 53]) {
    assert.throws(
      () => initT5(cfg, { seed } as unknown as { seed: number }),
      new RegExp(`model/t5\\.ts initT5: opts\\.seed must be an integer, got ${seed}$`),
      String(seed),
    );
  }
  assert.equal(tf.memory().numTensors, before, "a refused config left tensors");
  // Any safe integer is a seed, negative ones included.
  for (const seed of [-1, 2 ** 53 - 1]) disposeT5(initT5(cfg, { seed }));
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("t5FromTensors: validates names, shapes, dtypes; per-stack embeddings only when distinct", () => {
  const cfg = small("tiny-v1_1");
  const src = initT5(cfg, { seed: 1 });
  const tensors = new Map<string, tf.Tensor>(src.params);
  const m1 = t5FromTensors(cfg, tensors, "mem");
  assert.equal(m1.params.size, src.params.size);
  // published T5 1.1 layout: embed_tokens is shared.weight (the tensor or a clone, which shares
  // its storage) → not a separate variable
  const shared = src.params.get("shared.weight")!;
  const withSame = new Map(tensors).set("encoder.embed_tokens.weight", shared);
  const m2 = t5FromTensors(cfg, withSame, "mem");
  assert.ok(!m2.params.has("encoder.embed_tokens.weight"));
  assert.equal(m2.config.ownEmbeddings, undefined);
  const clone = shared.clone();
  const m2c = t5FromTensors(cfg, new Map(tensors).set("decoder.embed_tokens.weight", clone), "c");
  assert.ok(!m2c.params.has("decoder.embed_tokens.weight"));
  // A distinct tensor of equal values is the stack's own table (decided without a readback;
  // loadHfFolder gives equal copies in a checkpoint as one tensor).
  const copy = tf.tensor(shared.dataSync(), shared.shape);
  const m2d = t5FromTensors(cfg, new Map(tensors).set("encoder.embed_tokens.weight", copy), "d");
  assert.deepEqual(m2d.config.ownEmbeddings, ["encoder"]);
  assert.ok(m2d.params.has("encoder.embed_tokens.weight"));
  tf.dispose([clone, copy]);
  [m2c, m2d].forEach(disposeT5);
  const other = tf.randomNormal(shared.shape, 0, 1, "float32", 5);
  const m3 = t5FromTensors(cfg, new Map(tensors).set("decoder.embed_tokens.weight", other), "mem");
  assert.ok(m3.params.has("decoder.embed_tokens.weight"));
  // and it is the one the decoder uses
  const batch = makeBatch();
  const l1 = logitsOf(m1, batch);
  const l3 = logitsOf(m3, batch);
  assert.ok(maxAbs(l1, l3) > 1e-3);
  tf.dispose([l1, l3]);

  const missing = new Map(tensors);
  missing.delete("decoder.block.1.layer.1.EncDecAttention.k.weight");
  assert.throws(
    () => t5FromTensors(cfg, missing, "ckpt.safetensors"),
    /ckpt\.safetensors: the tensor names do not match the T5 configuration: 1 missing \("decoder\.block\.1\.layer\.1\.EncDecAttention\.k\.weight"\) and none unexpected$/,
  );
  const bad = tf.zeros([3, 3]);
  assert.throws(
    () => t5FromTensors(cfg, new Map(tensors).set("lm_head.weight", bad), "x"),
    /x: tensor "lm_head\.weight" has shape \[3, 3\], expected \[64, 64\]/,
  );
  const int = tf.zeros([64], "int32");
  assert.throws(
    () => t5FromTensors(cfg, new Map(tensors).set("encoder.final_layer_norm.weight", int), "x"),
    /dtype int32/,
  );
  assert.throws(
    () => t5FromTensors(cfg, new Map(tensors).set("encoder.block.9.foo", bad), "x"),
    /none missing and 1 unexpected \("encoder\.block\.9\.foo"\); the checkpoint has 10 encoder blocks where "num_layers" is 2$/,
  );
  [m1, m2, m3].forEach(disposeT5);
  // the new model's variables survive disposing the source tensors
  const m4 = t5FromTensors(cfg, tensors, "mem");
  disposeT5(src);
  const l4 = logitsOf(m4, batch);
  assert.ok(Number.isFinite(l4.sum().dataSync()[0]!));
  tf.dispose([l4, other, bad, int]);
  disposeT5(m4);
  disposeBatch(batch);
});

Deno.test("t5StateDict: HF layout with embedding aliases, round-trips through t5FromTensors", () => {
  const cfg = small("tiny-relu");
  const model = initT5(cfg, { seed: 4 });
  const sd = t5StateDict(model);
  assert.equal(sd.size, model.params.size + 2);
  assert.equal(sd.get("encoder.embed_tokens.weight"), model.params.get("shared.weight"));
  const back = t5FromTensors(cfg, sd, "state dict");
  assert.deepEqual([...back.params.keys()], [...model.params.keys()]);
  const batch = makeBatch();
  const a = logitsOf(model, batch);
  const b = logitsOf(back, batch);
  assert.equal(maxAbs(a, b), 0);
  tf.dispose([a, b]);
  disposeBatch(batch);
  disposeT5(back);
  disposeT5(model);
});

Deno.test("forward: shapes, batch validation, padding does not leak into real tokens", () => {
  const model = initT5(small("tiny-relu"), { seed: 2 });
  const batch = makeBatch();
  const { logits, encoderOutput } = forward(model, batch);
  assert.deepEqual(logits.shape, [3, 4, 64]);
  assert.deepEqual(encoderOutput.shape, [3, 5, 64]);
  // Row 2 alone without its padding gives the same logits (padding is masked).
  const solo: Seq2SeqBatch = {
    inputIds: tf.tensor2d([[7, 8, 1]], undefined, "int32"),
    attentionMask: tf.tensor2d([[1, 1, 1]]),
    decoderInputIds: tf.tensor2d([[0, 7, 1, 0]], undefined, "int32"),
  };
  const s = logitsOf(model, solo);
  const row = logits.slice([1, 0, 0], [1, 4, 64]);
  // Measured 0 on cpu (logits up to ~4); 1e-5 leaves fp32 room for another summation order, far
  // below what one unmasked padded key moves.
  assert.ok(maxAbs(s, row) < 1e-5, `padding leaked: ${maxAbs(s, row)}`);
  tf.dispose([logits, encoderOutput, s, row]);
  disposeBatch(solo);
  const wrong = { ...batch, inputIds: tf.zeros([3, 5]) as tf.Tensor2D };
  assert.throws(() => forward(model, wrong), /inputIds must be int32/);
  const short = { ...batch, attentionMask: tf.ones([3, 4]) as tf.Tensor2D };
  assert.throws(() => forward(model, short), /attentionMask \[3,4\] != inputIds \[3,5\]/);
  tf.dispose([wrong.inputIds, short.attentionMask]);
  disposeBatch(batch);
  disposeT5(model);
});

Deno.test("dropout: off in eval, seeded in training (same seed same output)", () => {
  const model = initT5(small("tiny-v1_1", { dropoutRate: 0.2 }), { seed: 2 });
  const batch = makeBatch();
  const ev = logitsOf(model, batch);
  const a = logitsOf(model, batch, { training: true, dropoutSeed: 11 });
  const b = logitsOf(model, batch, { training: true, dropoutSeed: 11 });
  const c = logitsOf(model, batch, { training: true, dropoutSeed: 12 });
  assert.equal(maxAbs(a, b), 0);
  // Another dropout seed, or eval, moves the logits by ~37 (measured): far above fp32 noise.
  assert.ok(maxAbs(a, c) > 1e-3);
  assert.ok(maxAbs(a, ev) > 1e-3);
  const ev2 = logitsOf(model, batch, { training: false, dropoutSeed: 11 });
  assert.equal(maxAbs(ev, ev2), 0);
  tf.dispose([ev, a, b, c, ev2]);
  disposeBatch(batch);
  disposeT5(model);
});

/**
 * Where Hugging Face's T5 applies dropout (`modeling_t5.py`), in the order a forward pass reaches
 * it: each stack's embeddings; in every attention (self and cross) the softmax weights and the
 * sublayer output before the residual add; in the feed-forward the activation (gated GELU's
 * product for v1.1) and the output; each stack's final layer norm. As `[site, shape]`.
 */
function hfDropoutSites(cfg: T5Config, b: number, li: number, lt: number): [string, number[]][] {
  const { dModel: d, dFf: ff, numHeads: h } = cfg;
  const sites: [string, number[]][] = [["encoder embeddings", [b, li, d]]];
  for (let l = 0; l < cfg.numLayers; l++) {
    sites.push(
      [`encoder.${l} self-attention weights`, [b, h, li, li]],
      [`encoder.${l} self-attention output`, [b, li, d]],
      [`encoder.${l} feed-forward activation`, [b, li, ff]],
      [`encoder.${l} feed-forward output`, [b, li, d]],
    );
  }
  sites.push(["encoder final layer norm", [b, li, d]], ["decoder embeddings", [b, lt, d]]);
  for (let l = 0; l < cfg.numDecoderLayers; l++) {
    sites.push(
      [`decoder.${l} self-attention weights`, [b, h, lt, lt]],
      [`decoder.${l} self-attention output`, [b, lt, d]],
      [`decoder.${l} cross-attention weights`, [b, h, lt, li]],
      [`decoder.${l} cross-attention output`, [b, lt, d]],
      [`decoder.${l} feed-forward activation`, [b, lt, ff]],
      [`decoder.${l} feed-forward output`, [b, lt, d]],
    );
  }
  sites.push(["decoder final layer norm", [b, lt, d]]);
  return sites;
}

Deno.test("dropout sites: the places and shapes of Hugging Face's T5, in its order", async () => {
  const saved = tf.getBackend();
  await tf.setBackend("cpu"); // no fused dropout-add kernels: every site goes through HpDropout
  assert.equal(tf.getKernel(DROPOUT, "cpu"), undefined, "no cpu dropout kernel to replace");
  const seen: number[][] = [];
  const scales = new Set<number>();
  tf.registerKernel({
    kernelName: DROPOUT,
    backendName: "cpu",
    kernelFunc: ({ inputs, attrs, backend }) => {
      seen.push([...(inputs["x"] as tf.TensorInfo).shape]);
      scales.add((attrs as unknown as DropoutMaskParams).scale);
      return tf.getKernel("Identity", "cpu")!.kernelFunc({ inputs, backend, attrs: {} });
    },
  });
  try {
    for (const name of ["tiny-v1_1", "tiny-relu"] as const) {
      const cfg = small(name, { dropoutRate: 0.1, numDecoderLayers: 3 }); // unequal stacks
      const model = initT5(cfg, { seed: 2 });
      const batch = makeBatch();
      seen.length = 0;
      scales.clear();
      tf.dispose(logitsOf(model, batch, { training: true, dropoutSeed: 11 }));
      const want = hfDropoutSites(cfg, 3, 5, 4);
      assert.deepEqual(
        seen.map((shape, i): [string, number[]] => [want[i]?.[0] ?? `extra dropout ${i}`, shape]),
        want,
        `${name}: dropout sites`,
      );
      assert.deepEqual([...scales], [dropoutMaskParams(0.1, 0).scale], `${name}: rate 0.1 each`);
      seen.length = 0;
      tf.dispose(logitsOf(model, batch));
      assert.equal(seen.length, 0, `${name}: evaluation applies no dropout`);
      disposeBatch(batch);
      disposeT5(model);
    }
  } finally {
    tf.unregisterKernel(DROPOUT, "cpu");
    await tf.setBackend(saved);
  }
});

Deno.test("crossEntropyLoss: ignores -100, mean over counted tokens, label smoothing", () => {
  tf.tidy(() => {
    const logits = tf.tensor3d([[[1, 2, 3], [0, 0, 0]], [[2, -1, 0.5], [3, 3, 1]]]);
    const labels = tf.tensor2d([[2, -100], [0, 1]], undefined, "int32");
    const lp = (row: number[], k: number) => {
      const m = Math.max(...row);
      const lse = m + Math.log(row.reduce((s, x) => s + Math.exp(x - m), 0));
      return row[k]! - lse;
    };
    const rows = [[1, 2, 3], [2, -1, 0.5], [3, 3, 1]];
    const ks = [2, 0, 1];
    const nll = rows.map((r, i) => -lp(r, ks[i]!));
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const got = crossEntropyLoss(logits, labels).dataSync()[0]!;
    // Against float64 here: a float32 log-sum-exp of 3 logits (≤ 3.76) and a mean of ≤ 3 terms
    // err by a few ulp of ~3.8 (2.4e-7 each); 1e-6 allows 4, while a wrong token, count or
    // smoothing term moves these losses by more than 0.03.
    assert.ok(Math.abs(got - mean(nll)) < 1e-6, `${got} vs ${mean(nll)}`);
    const eps = 0.1;
    const smooth = rows.map((r) => -mean(r.map((_, k) => lp(r, k))));
    const want = mean(nll.map((n, i) => (1 - eps) * n + eps * smooth[i]!));
    const gotS = crossEntropyLoss(logits, labels, { labelSmoothing: eps }).dataSync()[0]!;
    assert.ok(Math.abs(gotS - want) < 1e-6, `${gotS} vs ${want}`);
    // One counted token: the mean is that token's loss (the denominator is the count, 1).
    const one = tf.tensor2d([[2, -100], [-100, -100]], undefined, "int32");
    const gotOne = crossEntropyLoss(logits, one).dataSync()[0]!;
    assert.ok(Math.abs(gotOne - nll[0]!) < 1e-6, `${gotOne} vs ${nll[0]}`);
    const none = tf.fill([2, 2], -100, "int32") as tf.Tensor2D;
    assert.equal(crossEntropyLoss(logits, none).dataSync()[0], 0);
    assert.throws(() => crossEntropyLoss(logits, labels, { labelSmoothing: 1 }), /labelSmoothing/);
    assert.throws(() => crossEntropyLoss(logits, tf.zeros([2, 2]) as tf.Tensor2D), /int32/);
  });
});

Deno.test("crossEntropyLoss zLoss: T5X's z·log_z² per counted token, value and gradient by hand (cpu)", async () => {
  // Hand computation in float64: per counted token (1−ε)·nll + ε·smooth + z·lse², averaged over
  // the counted tokens; d/dx_j = [(1 + 2z·lse)·softmax_j − (1−ε)·[j = label] − ε/V] / count,
  // ignored rows 0. A float32 chain of a few ops over 4 logits: 2e-6 relative (values O(1-10)).
  const rows = [[1, 2, 3, -1], [0, 0, 0, 0], [2, -1, 0.5, 4], [3, 3, 1, -2]];
  const ks = [2, -100, 0, 1];
  const v = 4;
  const logits = tf.tensor3d([rows.slice(0, 2), rows.slice(2)]);
  const labels = tf.tensor2d([ks.slice(0, 2), ks.slice(2)], undefined, "int32");
  const x = tf.variable(logits);
  for (const [z, eps] of [[1e-4, 0], [0.05, 0], [0.05, 0.1]] as const) {
    const counted = rows.map((_, i) => i).filter((i) => ks[i] !== -100);
    let want = 0;
    const wantGrad = new Float64Array(rows.length * v);
    for (const i of counted) {
      const r = rows[i]!;
      const m = Math.max(...r);
      const lse = m + Math.log(r.reduce((s, y) => s + Math.exp(y - m), 0));
      const nll = lse - r[ks[i]!]!;
      const smooth = lse - r.reduce((a, b) => a + b, 0) / v;
      want += ((1 - eps) * nll + eps * smooth + z * lse * lse) / counted.length;
      r.forEach((y, j) => {
        const onehot = j === ks[i] ? 1 : 0;
        wantGrad[i * v + j] = ((1 + 2 * z * lse) * Math.exp(y - lse) - (1 - eps) * onehot -
          eps / v) / counted.length;
      });
    }
    const before = tf.memory().numTensors;
    const { value, grads } = tf.variableGrads(
      () =>
        crossEntropyLoss(x as tf.Tensor as tf.Tensor3D, labels, { labelSmoothing: eps, zLoss: z }),
      [x],
    );
    const got = (await value.data())[0]!;
    const g = await grads[x.name]!.data();
    tf.dispose([value, ...Object.values(grads)]);
    assert.equal(tf.memory().numTensors, before, "tensors leaked");
    assert.ok(Math.abs(got - want) < 2e-6 * Math.abs(want), `z=${z} ε=${eps}: ${got} vs ${want}`);
    wantGrad.forEach((w, j) =>
      assert.ok(
        Math.abs(g[j]! - w) < 2e-6 * Math.max(Math.abs(w), 0.1),
        `grad[${j}]: ${g[j]} vs ${w}`,
      )
    );
    // The z-loss term is visible at these tolerances: without it the value differs.
    const plain = crossEntropyLoss(logits, labels, { labelSmoothing: eps });
    assert.ok(Math.abs((await plain.data())[0]! - got) > 1e-3 * z, `z=${z} changes the loss`);
    plain.dispose();
  }
  // zLoss 0 is the plain cross-entropy bit for bit; a negative or non-finite one is refused.
  const a = crossEntropyLoss(logits, labels, { zLoss: 0 });
  const b = crossEntropyLoss(logits, labels);
  assert.deepEqual(await a.data(), await b.data());
  for (const bad of [-1e-4, NaN, Infinity]) {
    assert.throws(
      () => crossEntropyLoss(logits, labels, { zLoss: bad }),
      /zLoss must be a finite number >= 0/,
    );
  }
  tf.dispose([a, b, x, logits, labels]);
});

Deno.test("crossEntropyLoss: a label outside the vocabulary (not -100) is refused by position (cpu, wasm, wasm fused)", async () => {
  // The composite reads row r's label j at flat index r·V + j, so without the check label V
  // scored the next row's first logit and -1 the previous row's last (a finite, wrong loss); the
  // wasm fused kernel refuses it too, but by its flattened row. Every backend whose labels are
  // host memory names the label by [batch][position], with and without the z-loss's kernel.
  const paths = [["cpu", false], ["wasm", false], ["wasm", true]] as const;
  try {
    for (const [backend, fused] of paths) {
      assert.ok(await tf.setBackend(backend));
      if (fused) registerFusedWasmKernels();
      const logits = tf.tensor3d([[[1, 2, 3], [0, 5, 0]], [[2, -1, 0.5], [3, 3, 1]]]);
      for (
        const [rows, where] of [
          [[[2, 3], [0, 1]], "labels\\[0\\]\\[1\\] is 3"],
          [[[2, -100], [-1, 1]], "labels\\[1\\]\\[0\\] is -1"],
          [[[2, 1], [0, -101]], "labels\\[1\\]\\[1\\] is -101"],
        ] as const
      ) {
        const labels = tf.tensor2d(rows.map((r) => [...r]), undefined, "int32");
        for (const zLoss of [0, 1e-4]) {
          const what = `${backend}${fused ? " fused" : ""} zLoss ${zLoss}: ${where}`;
          await refuses(
            what,
            new RegExp(
              `^Error: model/t5\\.ts crossEntropyLoss: ${where}, neither -100 \\(ignored\\) nor in ` +
                `the vocabulary \\[0, 3\\)$`,
            ),
            () => crossEntropyLoss(logits, labels, { zLoss }),
          );
        }
        labels.dispose();
      }
      // Every valid label, -100 included, still gives the loss: fp32 log-sum-exp of 3 logits.
      const ok = tf.tensor2d([[2, -100], [0, 2]], undefined, "int32");
      const loss = crossEntropyLoss(logits, ok);
      const lse = (xs: number[]) => Math.log(xs.reduce((a, x) => a + Math.exp(x), 0));
      const want = ((lse([1, 2, 3]) - 3) + (lse([2, -1, 0.5]) - 2) + (lse([3, 3, 1]) - 1)) / 3;
      const got = loss.dataSync()[0]!;
      assert.ok(Math.abs(got - want) < 1e-6, `${backend} fused ${fused}: ${got} vs ${want}`);
      tf.dispose([logits, ok, loss]);
      if (fused) unregisterFusedWasmKernels();
    }
  } finally {
    unregisterFusedWasmKernels();
    await tf.setBackend("cpu"); // this file's other tests run on cpu
  }
});

Deno.test("shiftRight: start token, drop last, -100 → pad", () => {
  const cfg = { ...preset("tiny-relu"), decoderStartTokenId: 7, padTokenId: 3 };
  const out = tf.tidy(() =>
    shiftRight(tf.tensor2d([[5, 6, 1], [8, 1, -100]], undefined, "int32"), cfg).arraySync()
  );
  assert.deepEqual(out, [[7, 5, 6], [7, 8, 1]]);
});

/** A hook set prepending deterministic prefixes to every self-attention layer. */
function prefixHooks(
  cfg: T5Config,
  bias: AttentionPrefix["positionBias"],
  batch: number,
  stacks: Stack[] = ["encoder", "decoder"],
): T5Hooks {
  return {
    selfAttentionPrefix(stack, layer) {
      if (!stacks.includes(stack)) return undefined;
      const seed = (stack === "encoder" ? 100 : 200) + layer;
      const shape: [number, number, number] = [batch, 3, cfg.numHeads * cfg.dKv];
      return {
        key: tf.randomNormal(shape, 0, 2, "float32", seed) as tf.Tensor3D,
        value: tf.randomNormal(shape, 0, 2, "float32", seed + 50) as tf.Tensor3D,
        positionBias: bias,
      };
    },
  };
}

Deno.test("prefix hooks: batch-1 prefixes equal tiled ones; zero/relative differ; grads reach prefixes", () => {
  const cfg = small("tiny-v1_1");
  const model = initT5(cfg, { seed: 5 });
  const batch = makeBatch();
  const plain = logitsOf(model, batch);
  const p1 = logitsOf(model, batch, { hooks: prefixHooks(cfg, "zero", 1) });
  const pb = logitsOf(model, batch, { hooks: prefixHooks(cfg, "zero", 3) });
  const pr = logitsOf(model, batch, { hooks: prefixHooks(cfg, "relative", 1) });
  // prefixHooks(…, 3) draws a [3,…] tensor, whose first row differs from the [1,…] draw, so
  // compare broadcasting against an explicit tile of the same batch-1 draw instead.
  const base = prefixHooks(cfg, "zero", 1);
  const tiled: T5Hooks = {
    selfAttentionPrefix(stack, layer, batch) {
      const p = base.selfAttentionPrefix!(stack, layer, batch)!;
      return { ...p, key: tf.tile(p.key, [3, 1, 1]), value: tf.tile(p.value, [3, 1, 1]) };
    },
  };
  const pt = logitsOf(model, batch, { hooks: tiled });
  // Measured on cpu (logits up to ~23): broadcast vs tiled 0; the three changes 30, 27 and 1.5,
  // so each threshold is far from both fp32 noise and the effect it checks.
  assert.ok(maxAbs(p1, pt) < 1e-5, "broadcast vs tiled");
  assert.ok(maxAbs(plain, p1) > 1e-3, "prefix changes the output");
  assert.ok(maxAbs(p1, pb) > 1e-3, "per-example prefixes are used");
  assert.ok(maxAbs(p1, pr) > 1e-4, "relative bias changes the output");
  tf.dispose([plain, p1, pb, pr, pt]);

  // Gradient flows into prefix tensors (what HyperPrompt trains).
  const pk = tf.variable(tf.randomNormal([1, 2, cfg.numHeads * cfg.dKv], 0, 1, "float32", 9));
  const pv = tf.variable(tf.randomNormal([1, 2, cfg.numHeads * cfg.dKv], 0, 1, "float32", 10));
  const labels = tf.tensor2d([[4, 5, 6, 1], [7, 1, -100, -100], [9, 9, 9, 1]], undefined, "int32");
  const hooks: T5Hooks = {
    selfAttentionPrefix: (stack, layer) =>
      stack === "decoder" && layer === 1
        ? {
          key: pk as tf.Tensor as tf.Tensor3D,
          value: pv as tf.Tensor as tf.Tensor3D,
          positionBias: "zero",
        }
        : undefined,
  };
  const { value, grads } = tf.variableGrads(
    () => crossEntropyLoss(logitsOf(model, batch, { hooks }), labels),
    [pk, pv],
  );
  const gn = tf.tidy(
    () => [tf.norm(grads[pk.name]!).dataSync()[0]!, tf.norm(grads[pv.name]!).dataSync()[0]!],
  );
  assert.ok(gn[0]! > 0 && gn[1]! > 0, `prefix grads ${gn}`);
  tf.dispose([value, ...Object.values(grads), pk, pv, labels]);
  disposeBatch(batch);
  disposeT5(model);
});

Deno.test("hooks: encoderInput, afterSublayer and onAttention are called where specified", () => {
  const cfg = small("tiny-relu");
  const model = initT5(cfg, { seed: 6 });
  const batch = makeBatch();
  const plain = logitsOf(model, batch);
  const calls: string[] = [];
  const identity: T5Hooks = {
    afterSublayer(stack, layer, sub, y) {
      calls.push(`${stack}.${layer}.${sub}`);
      assert.equal(y.shape[2], cfg.dModel);
      return y;
    },
  };
  const same = logitsOf(model, batch, { hooks: identity });
  // Identity hooks run the same ops: measured 0 on cpu; 1e-6 is a summation-order margin.
  assert.ok(maxAbs(plain, same) < 1e-6);
  assert.equal(calls.length, cfg.numLayers * 2 + cfg.numDecoderLayers * 3);
  assert.deepEqual(calls.slice(0, 3), [
    "encoder.0.self_attention",
    "encoder.0.feed_forward",
    "encoder.1.self_attention",
  ]);
  assert.ok(calls.includes("decoder.1.cross_attention"));

  // Prompt-tuning style: prepend 2 rows; mask must follow; encoder output grows by 2.
  let seen = 0;
  const prompt: T5Hooks = {
    encoderInput(embeds, mask) {
      seen++;
      const [b] = embeds.shape;
      const p = tf.broadcastTo(tf.randomNormal([1, 2, cfg.dModel], 0, 1, "float32", 1), [
        b,
        2,
        cfg.dModel,
      ]);
      return {
        embeds: tf.concat([p, embeds], 1) as tf.Tensor3D,
        mask: tf.concat([tf.ones([b, 2]), mask], 1) as tf.Tensor2D,
      };
    },
  };
  const r = forward(model, batch, { hooks: prompt });
  assert.equal(seen, 1);
  assert.deepEqual(r.encoderOutput.shape, [3, 7, cfg.dModel]);
  tf.dispose([r.logits, r.encoderOutput]);

  // onAttention: probability rows sum to 1, prefix columns first, padded keys get 0.
  const obs: { where: string; shape: number[]; l: number; rowSum: number; padMass: number }[] = [];
  const hooks: T5Hooks = {
    ...prefixHooks(cfg, "zero", 1),
    onAttention(stack, layer, sub, probs, l) {
      const rowSum = tf.tidy(() => tf.max(tf.abs(tf.sub(tf.sum(probs, -1), 1))).dataSync()[0]!);
      let padMass = 0;
      if (stack === "encoder") {
        // batch row 1 has padding at its last two real key columns
        padMass = tf.tidy(() =>
          tf.sum(probs.slice([1, 0, 0, l + 3], [1, cfg.numHeads, probs.shape[2], 2])).dataSync()[0]!
        );
      }
      obs.push({ where: `${stack}.${layer}.${sub}`, shape: probs.shape, l, rowSum, padMass });
    },
  };
  const o = logitsOf(model, batch, { hooks });
  o.dispose();
  assert.equal(obs.length, cfg.numLayers + 2 * cfg.numDecoderLayers);
  for (const x of obs) {
    // fp32 softmax row sums: measured 1.2e-7 (one ulp of 1); 1e-5 is a margin for the exp sum.
    assert.ok(x.rowSum < 1e-5, `${x.where} rows sum to 1`);
    assert.equal(x.padMass, 0, `${x.where} padded keys`);
  }
  const dec = obs.find((x) => x.where === "decoder.0.self_attention")!;
  assert.deepEqual([dec.shape, dec.l], [[3, cfg.numHeads, 4, 3 + 4], 3]);
  const cross = obs.find((x) => x.where === "decoder.0.cross_attention")!;
  assert.deepEqual([cross.shape, cross.l], [[3, cfg.numHeads, 4, 5], 0]);
  tf.dispose([plain, same]);
  disposeBatch(batch);
  disposeT5(model);
});

/**
 * Re-draws every matrix with a large std (4/√fan-in) so a random model's greedy output varies
 * from step to step (at HF's init scale tiny models repeat one token, which would make the
 * cache comparison weak).
 */
function scramble(model: T5Model): void {
  let i = 0;
  for (const [n, v] of model.params) {
    if (n.includes("layer_norm") || v.rank !== 2) continue;
    const fresh = tf.randomNormal(v.shape, 0, 4 / Math.sqrt(v.shape[1]!), "float32", 1000 + i++);
    v.assign(fresh);
    fresh.dispose();
  }
}

Deno.test("greedyDecode: cached equals uncached, with and without prefixes; EOS handling", async () => {
  for (const name of ["tiny-relu", "tiny-v1_1"] as const) {
    const cfg = small(name);
    const model = initT5(cfg, { seed: 8 });
    scramble(model);
    const batch = makeBatch();
    const input = { inputIds: batch.inputIds, attentionMask: batch.attentionMask };
    const variants: [string, T5Hooks | undefined][] = [
      ["none", undefined],
      ["zero", prefixHooks(cfg, "zero", 1)],
      ["relative", prefixHooks(cfg, "relative", 3)],
      ["decoder-relative", prefixHooks(cfg, "relative", 1, ["decoder"])],
    ];
    const outs: number[][][] = [];
    for (const [label, hooks] of variants) {
      const before = tf.memory().numTensors;
      const opts = { maxNewTokens: 12, hooks, stopAtEos: false };
      const cached = await greedyDecode(model, input, opts);
      const uncached = await greedyDecode(model, input, { ...opts, useCache: false });
      assert.deepEqual(cached, uncached, `${name}/${label}`);
      assert.equal(tf.memory().numTensors, before, `${name}/${label}: no tensors left`);
      assert.ok(cached.every((r) => r.length === 12));
      outs.push(cached);
    }
    // the runs are not trivially constant: every row of the plain run has ≥ 3 distinct tokens
    // (checked for these seeds), and prefixes change the output
    assert.ok(outs[0]!.every((r) => new Set(r).size >= 3), `${name}: ${JSON.stringify(outs[0])}`);
    assert.notDeepEqual(outs[0], outs[1]);
    // EOS: declare the third generated token of row 0 to be EOS; stopAtEos truncates after the
    // first EOS (kept) and rows are never longer than maxNewTokens.
    const eosCfg = { ...cfg, eosTokenId: outs[0]![0]![2]! };
    const eosModel: T5Model = { config: eosCfg, params: model.params };
    const stopped = await greedyDecode(eosModel, input, { maxNewTokens: 12 });
    const row0 = stopped[0]!;
    assert.deepEqual(row0, outs[0]![0]!.slice(0, outs[0]![0]!.indexOf(eosCfg.eosTokenId) + 1));
    assert.ok(stopped.every((r) => r.length <= 12));
    disposeBatch(batch);
    disposeT5(model);
  }
});

/** Both HF fixtures (T5 1.0 ReLU tied; T5 1.1 gated-GELU untied), read from the shared folder. */
async function fixtureModel(name: string): Promise<T5Model> {
  const { config, tensors } = await loadHfFolder(sharedPath("fixtures", "hf-t5", name));
  try {
    return t5FromTensors(config, tensors, name);
  } finally {
    for (const t of tensors.values()) t.dispose();
  }
}

Deno.test("greedyDecode on the HF fixtures: cached = uncached and = each row alone, for every method's hooks, mixed tasks, padding, rows ending early", async () => {
  const tasks = ["rte", "sst2", "cola"];
  // Rows of 7, 4, 2 and 5 tokens (padded to 7), from tasks 0, 2, 1, 0.
  const rows = [[5, 17, 42, 9, 63, 88, 1], [7, 22, 3, 1], [11, 1], [30, 31, 32, 33, 1]];
  const taskIds = [0, 2, 1, 0];
  const padded = (ids: number[][]) => {
    const len = Math.max(...ids.map((r) => r.length));
    return {
      inputIds: tf.tensor2d(
        ids.map((r) => [...r, ...Array(len - r.length).fill(0)]),
        undefined,
        "int32",
      ),
      attentionMask: tf.tensor2d(
        ids.map((r) => r.map(() => 1).concat(Array(len - r.length).fill(0))),
      ),
    };
  };
  for (const fixture of ["t5-tiny-relu", "t5-tiny-v1_1-untied"]) {
    const model = await fixtureModel(fixture);
    // At the fixtures' init scale every row repeats one token; larger weights vary the output.
    scramble(model);
    const input = padded(rows);
    let plain: number[][] | undefined;
    for (const [name, method] of Object.entries(METHODS) as [string, Method<unknown>][]) {
      const what = `${fixture}/${name}`;
      const inst = method.create({
        config: model.config,
        tasks,
        seed: 5,
        backbone: model.params,
        labelTokenIds: new Map([["rte", [[5], [6, 7]]], ["sst2", [[7, 8], [9]]], ["cola", [[10]]]]),
      }, method.defaults);
      // Method variables of std 0.5: at their initial scale (e.g. Global's ~1e-5 prompts) the
      // hooks would barely change the tokens, and a cache that dropped them could pass.
      let j = 0;
      for (const v of inst.variables.values()) {
        tf.tidy(() => v.assign(tf.randomNormal(v.shape, 0, 0.5, "float32", 7 + j++)));
      }
      const before = tf.memory().numTensors;
      const hooks = inst.hooks(taskIds);
      const opts = { maxNewTokens: 10, hooks, stopAtEos: false };
      const full = await greedyDecode(model, input, opts);
      assert.deepEqual(await greedyDecode(model, input, { ...opts, useCache: false }), full, what);
      // Not trivially constant: at least two rows change token along the way (checked for
      // these seeds).
      assert.ok(full.every((r) => r.length === 10), what);
      assert.ok(full.filter((r) => new Set(r).size >= 2).length >= 2, `${what}: ${full}`);
      // Padding and the other rows' tasks change nothing: each row decoded alone, unpadded.
      for (let i = 0; i < rows.length; i++) {
        const one = padded([rows[i]!]);
        const alone = await greedyDecode(model, one, { ...opts, hooks: inst.hooks([taskIds[i]!]) });
        assert.deepEqual(alone[0], full[i], `${what}: row ${i} alone`);
        tf.dispose([one.inputIds, one.attentionMask]);
      }
      if (name === "mtl") plain = full;
      else assert.notDeepEqual(full, plain, `${what}: the hooks change the tokens`);
      // EOS: a token that ends some row early (at step ≥ 1) while another row never emits it;
      // finished rows are fed padding, and the others go on to the limit.
      const eos = full.flat().find((t) =>
        full.some((r) => r.indexOf(t) >= 1) && full.some((r) => !r.includes(t))
      );
      assert.ok(eos !== undefined, `${what}: no token ends a row early: ${JSON.stringify(full)}`);
      const eosModel: T5Model = {
        config: { ...model.config, eosTokenId: eos },
        params: model.params,
      };
      const stopped = await greedyDecode(eosModel, input, { maxNewTokens: 10, hooks });
      const stoppedUncached = await greedyDecode(eosModel, input, {
        maxNewTokens: 10,
        hooks,
        useCache: false,
      });
      assert.deepEqual(stoppedUncached, stopped, `${what}: EOS`);
      assert.deepEqual(
        stopped,
        full.map((r) => (r.includes(eos) ? r.slice(0, r.indexOf(eos) + 1) : r)),
        `${what}: rows end at their first EOS`,
      );
      assert.ok(stopped.some((r) => r.length < 10) && stopped.some((r) => r.length === 10));
      assert.equal(tf.memory().numTensors, before, `${what}: no tensors left`);
      inst.dispose();
    }
    tf.dispose([input.inputIds, input.attentionMask]);
    disposeT5(model);
  }
});

/** Runs `f`, which must throw an error whose message matches `re`, and leave no tensor behind. */
async function refuses(what: string, re: RegExp, f: () => unknown): Promise<void> {
  const before = tf.memory().numTensors;
  await assert.rejects(
    async () => {
      await f();
    },
    re,
    what,
  );
  assert.equal(tf.memory().numTensors, before, `${what}: tensors left`);
}

Deno.test("bad inputs: forward, greedyDecode, crossEntropyLoss and hooks' results are refused by name, leaving nothing", async () => {
  const cfg = small("tiny-relu");
  const model = initT5(cfg, { seed: 1 });
  const batch = makeBatch(); // [3, 5] inputs, [3, 4] decoder inputs
  const input = { inputIds: batch.inputIds, attentionMask: batch.attentionMask };
  const keep = (ts: tf.Tensor[]) => ts; // created outside `refuses`, disposed at the end
  const [wideMask, rowMask, empty, emptyMask, short, shortMask, oov, neg] = keep([
    tf.ones([3, 6]),
    tf.ones([1, 5]), // would broadcast over the batch
    tf.zeros([0, 5], "int32"),
    tf.zeros([0, 5]),
    tf.zeros([3, 0], "int32"),
    tf.zeros([3, 0]),
    tf.tensor2d([[5, 9, 64, 2, 1], [7, 8, 1, 0, 0], [3, 4, 6, 10, 1]], undefined, "int32"),
    tf.tensor2d([[5, 9, 13, 2, 1], [7, 8, 1, 0, 0], [3, -4, 6, 10, 1]], undefined, "int32"),
  ]) as tf.Tensor2D[];
  const g = (inp: typeof input, maxNewTokens = 3) => greedyDecode(model, inp, { maxNewTokens });
  await refuses(
    "greedy mask [3,6]",
    /greedyDecode: attentionMask \[3,6\] != inputIds \[3,5\]/,
    () => g({ ...input, attentionMask: wideMask! }),
  );
  await refuses(
    "greedy mask [1,5]",
    /greedyDecode: attentionMask \[1,5\] != inputIds \[3,5\]/,
    () => g({ ...input, attentionMask: rowMask! }),
  );
  await refuses(
    "greedy empty batch",
    /greedyDecode: inputIds \[0,5\] is empty/,
    () => g({ inputIds: empty!, attentionMask: emptyMask! }),
  );
  await refuses(
    "greedy empty rows",
    /greedyDecode: inputIds \[3,0\] is empty/,
    () => g({ inputIds: short!, attentionMask: shortMask! }),
  );
  await refuses(
    "greedy id = vocab",
    /greedyDecode: inputIds\[0\]\[2\] is 64, outside the vocabulary \[0, 64\)/,
    () => g({ ...input, inputIds: oov! }),
  );
  await refuses(
    "greedy id < 0",
    /greedyDecode: inputIds\[2\]\[1\] is -4, outside/,
    () => g({ ...input, inputIds: neg! }),
  );
  // forward on cpu (host memory): the ids are checked, each field named with the position.
  const fwd = (b: Partial<Seq2SeqBatch>) => forward(model, { ...batch, ...b });
  await refuses(
    "forward inputIds id = vocab",
    /forward: inputIds\[0\]\[2\] is 64, outside the vocabulary \[0, 64\)/,
    () => fwd({ inputIds: oov! }),
  );
  await refuses(
    "forward inputIds id < 0",
    /forward: inputIds\[2\]\[1\] is -4, outside the vocabulary \[0, 64\)/,
    () => fwd({ inputIds: neg! }),
  );
  const badDecoder = tf.tensor2d([[0, 4, 5, 6], [0, 7, 1, 0], [0, 9, 9, 100]], undefined, "int32");
  await refuses(
    "forward decoderInputIds id > vocab",
    /forward: decoderInputIds\[2\]\[3\] is 100, outside the vocabulary \[0, 64\)/,
    () => fwd({ decoderInputIds: badDecoder as tf.Tensor2D }),
  );
  badDecoder.dispose();
  for (const n of [0, -1, 1.5, NaN]) {
    await refuses(
      `maxNewTokens ${n}`,
      /greedyDecode: maxNewTokens must be a positive integer/,
      () => g(input, n),
    );
  }
  const f = (b: Partial<Seq2SeqBatch>, hooks?: T5Hooks) => {
    const r = forward(model, { ...batch, ...b }, hooks ? { hooks } : {});
    tf.dispose([r.logits, r.encoderOutput]);
  };
  await refuses(
    "forward mask [1,5]",
    /forward: attentionMask \[1,5\] != inputIds \[3,5\]/,
    () => f({ attentionMask: rowMask! }),
  );
  await refuses(
    "forward empty batch",
    /forward: inputIds \[0,5\] is empty/,
    () => f({ inputIds: empty!, attentionMask: emptyMask! }),
  );
  await refuses(
    "forward empty decoder",
    /forward: decoderInputIds \[3,0\] is empty/,
    () => f({ decoderInputIds: short! }),
  );
  await refuses(
    "afterSublayer of one row",
    /afterSublayer hook \(encoder block 0 self_attention\) returned \[1,5,64\] for an input of shape \[3,5,64\]/,
    () => f({}, { afterSublayer: (_s, _l, _u, y) => y.slice([0, 0, 0], [1, -1, -1]) }),
  );
  await refuses(
    "encoderInput of another batch",
    /encoderInput hook returned embeds \[6,5,64\] with mask \[6,5\]; expected \[3, length, 64\]/,
    () =>
      f({}, {
        encoderInput: (e, m) => ({ embeds: tf.concat([e, e]), mask: tf.concat([m, m]) }),
      }),
  );
  // cpu gives a result for all of these without the checks (broadcast or empty tensors).
  const logits2d = tf.zeros([3, 4]);
  const labels = tf.zeros([3, 4], "int32");
  await refuses(
    "loss of rank-2 logits",
    /crossEntropyLoss: logits must be rank 3/,
    () => crossEntropyLoss(logits2d as unknown as tf.Tensor3D, labels as tf.Tensor2D),
  );
  tf.dispose([logits2d, labels, wideMask!, rowMask!, empty!, emptyMask!, short!, shortMask!]);
  tf.dispose([oov!, neg!]);
  disposeBatch(batch);
  disposeT5(model);
});

Deno.test("t5FromTensors / checkT5Checkpoint: one error lists the missing and the unexpected names, with the layer counts", () => {
  const cfg = small("tiny-v1_1");
  const model = initT5(cfg, { seed: 2 });
  const before = tf.memory().numTensors;
  try {
    // A renamed tensor is both missing (its own name) and unexpected (the new one): before, only
    // the unexpected name was reported.
    const old = "decoder.block.1.layer.0.SelfAttention.o.weight";
    const renamed = new Map<string, tf.Tensor>(model.params);
    renamed.delete(old);
    renamed.set("decoder.block.1.layer.0.SelfAttention.out.weight", model.params.get(old)!);
    assert.throws(
      () => t5FromTensors(cfg, renamed, "ck"),
      (e: Error) => {
        assert.equal(
          e.message,
          `ck: the tensor names do not match the T5 configuration: 1 missing ("${old}") and ` +
            `1 unexpected ("decoder.block.1.layer.0.SelfAttention.out.weight")`,
        );
        return true;
      },
    );
    // A checkpoint of more layers than the configuration (num_layers mismatch): the names are
    // counted beyond the first few, and the blocks of each stack are compared with the config.
    const deeper = initT5({ ...cfg, numLayers: 4, numDecoderLayers: 3 }, { seed: 2 });
    try {
      assert.throws(
        () => t5FromTensors(cfg, deeper.params, "deep"),
        (e: Error) => {
          assert.match(e.message, /^deep: the tensor names do not match the T5 configuration: /);
          assert.match(e.message, / none missing and 32 unexpected \("encoder\.block\.2\./);
          assert.match(
            e.message,
            /, and 24 more\); the checkpoint has 4 encoder blocks where "num_layers" is 2, 3 decoder blocks where "num_decoder_layers" is 2$/,
          );
          return true;
        },
      );
      // And fewer layers than the configuration: the missing names, and headers only (a
      // safetensors entry's dtype and shape, named by its file).
      const headers = new Map<string, CheckpointTensor>();
      for (const [name, shape] of t5ParamShapes(cfg)) {
        if (!name.startsWith("decoder.block.1.")) {
          headers.set(name, { dtype: "BF16", shape, file: "f" });
        }
      }
      assert.throws(
        () =>
          checkT5Checkpoint(cfg, headers, "idx", { dtypes: ["F32", "BF16"], configSource: "c" }),
        /^CheckpointError: idx: the tensor names do not match the T5 configuration for c: 14 missing \("decoder\.block\.1\.layer\.0\.SelfAttention\.q\.weight", .*, and 6 more\) and none unexpected; the checkpoint has 1 decoder blocks where "num_decoder_layers" is 2$/,
      );
      const complete = new Map<string, CheckpointTensor>();
      for (const [name, shape] of t5ParamShapes(cfg)) {
        complete.set(name, { dtype: "BF16", shape, file: "f" });
      }
      checkT5Checkpoint(cfg, complete, "idx", { dtypes: ["F32", "BF16"] });
      complete.set("lm_head.weight", {
        dtype: "I64",
        shape: [cfg.vocabSize, cfg.dModel],
        file: "g",
      });
      assert.throws(
        () => checkT5Checkpoint(cfg, complete, "idx", { dtypes: ["F32", "F16", "BF16"] }),
        /^CheckpointError: g: tensor "lm_head\.weight" has dtype I64, expected F32, F16 or BF16$/,
      );
      // Typed for a direct caller too (not only through loadT5): the file is the tensor's own
      // (its shard), else the source; the names error's is the source.
      const fileOf = (f: () => void) => {
        try {
          f();
        } catch (e) {
          assert.ok(e instanceof CheckpointError, String(e));
          return e.file;
        }
        assert.fail("no error");
      };
      assert.equal(
        fileOf(() => checkT5Checkpoint(cfg, complete, "idx", { dtypes: ["F32", "BF16"] })),
        "g",
      );
      // A misshapen tensor of a shard: the file is that shard, as for a wrong dtype.
      complete.set("lm_head.weight", { dtype: "F32", shape: [1, 1], file: "g" });
      assert.equal(
        fileOf(() => checkT5Checkpoint(cfg, complete, "idx", { dtypes: ["F32", "BF16"] })),
        "g",
      );
      complete.set("lm_head.weight", { dtype: "F32", shape: [1, 1] });
      assert.equal(
        fileOf(() => checkT5Checkpoint(cfg, complete, "idx", { dtypes: ["F32", "BF16"] })),
        "idx",
      );
      assert.equal(
        fileOf(() => checkT5Checkpoint(cfg, headers, "idx", { dtypes: ["BF16"] })),
        "idx",
      );
    } finally {
      disposeT5(deeper);
    }
    assert.equal(tf.memory().numTensors, before, "a refused checkpoint made no variable");
  } finally {
    disposeT5(model);
  }
});

Deno.test("checkT5Checkpoint: a misshapen weight names the config.json field that decides the wrong dimension", () => {
  // tiny-v1_1 with d_kv 8 and num_heads 4 (unequal to each other and to the other sizes, so a
  // mistaken field could not give the same numbers).
  const cfg: T5Config = { ...preset("tiny-v1_1"), dKv: 8, numHeads: 4 };
  const { vocabSize: v, dModel: d, dFf: ff } = cfg;
  const inner = cfg.numHeads * cfg.dKv;
  const cases: [string, number[], string, string | undefined][] = [
    // [weight, its shape in the checkpoint, the message's tail, the error's field]
    [
      "decoder.block.1.layer.2.DenseReluDense.wo.weight",
      [d, ff + 1],
      ` ("d_ff" gives dimension 1: ${ff})`,
      "d_ff",
    ],
    [
      "encoder.block.0.layer.1.DenseReluDense.wi_0.weight",
      [ff, d + 2],
      ` ("d_model" gives dimension 1: ${d})`,
      "d_model",
    ],
    ["shared.weight", [v + 128, d], ` ("vocab_size" gives dimension 0: ${v})`, "vocab_size"],
    [
      "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
      [cfg.relativeAttentionNumBuckets * 2, cfg.numHeads],
      ` ("relative_attention_num_buckets" gives dimension 0: ${cfg.relativeAttentionNumBuckets})`,
      "relative_attention_num_buckets",
    ],
    [
      "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
      [cfg.relativeAttentionNumBuckets, cfg.numHeads + 1],
      ` ("num_heads" gives dimension 1: ${cfg.numHeads})`,
      "num_heads",
    ],
    // Two fields decide it: both named, no single field.
    [
      "decoder.block.0.layer.1.EncDecAttention.q.weight",
      [inner * 2, d],
      ` ("num_heads" × "d_kv" gives dimension 0: ${inner})`,
      undefined,
    ],
    // Two dimensions, or the rank, differ: no field is named.
    ["encoder.block.0.layer.0.SelfAttention.o.weight", [inner, d], "", undefined],
    ["encoder.final_layer_norm.weight", [d, 1], "", undefined],
  ];
  for (const [name, shape, tail, field] of cases) {
    const tensors = new Map<string, CheckpointTensor>();
    for (const [n, s] of t5ParamShapes(cfg)) tensors.set(n, { dtype: "F32", shape: s });
    tensors.set(name, { dtype: "F32", shape, file: "shard" });
    const want = t5ParamShapes(cfg).get(name)!;
    assert.throws(
      () => checkT5Checkpoint(cfg, tensors, "idx", { dtypes: ["F32"], configSource: "c.json" }),
      (e: Error) => {
        assert.ok(e instanceof CheckpointError, String(e));
        assert.equal(
          e.message,
          `shard: tensor "${name}" has shape [${shape.join(", ")}], expected [${
            want.join(", ")
          }] for c.json${tail}`,
        );
        assert.equal(e.file, "shard");
        assert.equal(e.field, field, name);
        return true;
      },
    );
  }
});

Deno.test("t5FromTensors: a refused per-stack embedding table leaves no variable behind", () => {
  const cfg = small("tiny-v1_1");
  const model = initT5(cfg, { seed: 2 });
  const tensors = new Map<string, tf.Tensor>(model.params);
  const bad = tf.zeros([cfg.vocabSize, cfg.dModel + 1]);
  tensors.set("decoder.embed_tokens.weight", bad);
  const before = tf.memory().numTensors;
  assert.throws(
    () => t5FromTensors(cfg, tensors, "ck"),
    /ck: tensor "decoder.embed_tokens.weight" has shape \[64, 65\], expected \[64, 64\]/,
  );
  assert.equal(tf.memory().numTensors, before, "variables made before the check were left");
  bad.dispose();
  disposeT5(model);
});

gpuTest(
  "t5FromTensors on webgpu: tied and own embedding tables of GPU-resident tensors, no readback",
  async () => {
    // The weights of a model trained on webgpu live in GPU buffers, where a synchronous read
    // (dataSync) throws in Deno: deciding whether a stack's table is shared.weight must not read.
    const cfg = small("tiny-v1_1");
    const before = tf.memory().numTensors;
    const src = initT5(cfg, { seed: 6 });
    try {
      // One op on the device per weight: every value is now only in a GPU buffer.
      // (assign shares the value's storage: the value itself is disposed with the tidy)
      for (const v of src.params.values()) tf.tidy(() => v.assign(tf.mul(v, 2)));
      const own = tf.tidy(() => tf.add(src.params.get("shared.weight")!, 1));
      const tied = t5FromTensors(cfg, t5StateDict(src), "gpu");
      const sd = t5StateDict(src).set("decoder.embed_tokens.weight", own);
      const untied = t5FromTensors(cfg, sd, "gpu");
      own.dispose(); // the variable keeps the storage
      assert.equal(tied.config.ownEmbeddings, undefined);
      assert.deepEqual([...tied.params.keys()], [...src.params.keys()]);
      assert.deepEqual(untied.config.ownEmbeddings, ["decoder"]);
      const got = await untied.params.get("decoder.embed_tokens.weight")!.data();
      const want = await src.params.get("shared.weight")!.data();
      assert.ok(got.every((x, i) => x === Math.fround(want[i]! + 1)));
      [tied, untied].forEach(disposeT5);
      disposeT5(src);
      assert.equal(tf.memory().numTensors, before);
    } finally {
      disposeT5(src);
      await tf.setBackend("cpu"); // this file's other tests run on cpu
    }
  },
);

gpuTest(
  "crossEntropyLoss on stock webgpu: a label outside the vocabulary makes the loss NaN, no readback",
  async () => {
    // No fused kernel here (the custom kernels are not registered), so the composite runs; the
    // labels stay on the device, so a bad one is marked NaN rather than read back and named.
    const logits = tf.tensor3d([[[1, 2, 3], [0, 5, 0]], [[2, -1, 0.5], [3, 3, 1]]]);
    try {
      const before = tf.memory().numTensors;
      for (const rows of [[[2, 3], [0, 1]], [[2, -100], [-1, 1]], [[2, 1], [0, -101]]]) {
        const labels = tf.tensor2d(rows, undefined, "int32");
        const loss = crossEntropyLoss(logits, labels);
        assert.ok(Number.isNaN((await loss.data())[0]!), JSON.stringify(rows));
        tf.dispose([labels, loss]);
      }
      // Valid labels (-100 included) give the cpu's loss: fp32 log-sum-exp of 3 logits, 1e-6.
      const ok = tf.tensor2d([[2, -100], [0, 2]], undefined, "int32");
      const loss = crossEntropyLoss(logits, ok);
      const got = (await loss.data())[0]!;
      const lse = (xs: number[]) => Math.log(xs.reduce((a, x) => a + Math.exp(x), 0));
      const want = ((lse([1, 2, 3]) - 3) + (lse([2, -1, 0.5]) - 2) + (lse([3, 3, 1]) - 1)) / 3;
      assert.ok(Math.abs(got - want) < 1e-6, `${got} vs ${want}`);
      tf.dispose([ok, loss]);
      assert.equal(tf.memory().numTensors, before);
    } finally {
      logits.dispose();
      await tf.setBackend("cpu"); // this file's other tests run on cpu
    }
  },
);

Deno.test("sublayerScopes: per-sublayer tidies lower the forward peak, same loss and gradients bit for bit (MTL, HyperPrompt-Global; cpu, wasm)", async () => {
  const b = 4, li = 32, lt = 8;
  const ids = (len: number, k: number) =>
    tf.tensor2d(
      Array.from({ length: b }, (_, i) =>
        Array.from({ length: len }, (_, j) => 2 + ((i * k + j) % 200))),
      [b, len],
      "int32",
    );
  const peaks: Record<string, { fwd: number[]; step: number[] }> = {};
  try {
    for (const backend of ["cpu", "wasm"] as const) {
      assert.ok(await tf.setBackend(backend));
      const config = small("tiny-v1_1", { vocabSize: 256, dropoutRate: 0.1 });
      const model = initT5(config, { seed: 1 });
      const batch: Seq2SeqBatch = {
        inputIds: ids(li, 7),
        attentionMask: tf.ones([b, li]) as tf.Tensor2D,
        decoderInputIds: ids(lt, 3),
      };
      const labels = ids(lt, 5);
      assert.ok(installLowMemoryBackprop(() => {}));
      try {
        for (const name of ["mtl", "hyperprompt_global"] as const) {
          const method = METHODS[name] as Method<unknown>;
          const inst = method.create(
            { config, tasks: ["a", "b"], seed: 3, backbone: model.params },
            method.defaults,
          );
          const vars = [...model.params.values(), ...inst.variables.values()]
            .filter((v) => v.trainable);
          const run = async (enabled: boolean) => {
            sublayerScopes.enabled = enabled;
            const before = tf.memory().numTensors;
            const meter = bufferMeter();
            let fwd = 0, step = 0;
            let loss: Float32Array, grads: Float32Array[];
            try {
              const { value, grads: g } = tf.variableGrads(() => {
                const { logits, encoderOutput } = forward(model, batch, {
                  hooks: inst.hooks([0, 1, 0, 1]),
                  training: true,
                  dropoutSeed: 11,
                });
                encoderOutput.dispose();
                const l = crossEntropyLoss(logits, labels);
                fwd = meter.peak; // everything so far ran in the forward pass
                return l;
              }, vars);
              step = meter.peak;
              loss = (await value.data()) as Float32Array;
              grads = await Promise.all(
                vars.map((v) => g[v.name]!.data() as Promise<Float32Array>),
              );
              tf.dispose([value, ...Object.values(g)]);
            } finally {
              meter.restore();
              sublayerScopes.enabled = true;
            }
            assert.equal(tf.memory().numTensors, before, `${name}: tensors leaked`);
            return { fwd, step, loss, grads };
          };
          const off = await run(false);
          const on = await run(true);
          const what = `${backend}/${name}`;
          peaks[what] = { fwd: [off.fwd, on.fwd], step: [off.step, on.step] };
          assert.deepEqual(on.loss, off.loss, `${what}: loss`);
          assert.equal(on.grads.length, vars.length);
          for (let i = 0; i < vars.length; i++) {
            assert.deepEqual(on.grads[i], off.grads[i], `${what}: gradient of ${vars[i]!.name}`);
          }
          inst.dispose();
        }
      } finally {
        uninstallLowMemoryBackprop();
        tf.dispose([batch.inputIds, batch.attentionMask, batch.decoderInputIds, labels]);
        disposeT5(model);
      }
    }
  } finally {
    sublayerScopes.enabled = true;
    await tf.setBackend("cpu");
  }
  // Peaks (bytes of data buffers made during the step, weights excluded), measured without / with
  // the scopes: cpu MTL forward 5,623,968 / 5,623,968, HyperPrompt-Global 6,958,960 / 6,958,960
  // (the composite ops save nearly every intermediate and a cpu clone shares its input's buffer:
  // nothing to free); stock wasm (tf.setBackend("wasm") here, without selectBackend's
  // patchWasmElementwise, whose Identity shares the buffer as cpu's does; so these wasm figures
  // do not describe production wasm/wasm+blas), whose Identity kernel copies, so a saved clone
  // does not hold the original: MTL forward 12,480,384 / 10,751,872 (-13.9 %), step 12,480,384 / 11,534,816
  // (-7.6 %); HyperPrompt-Global forward 19,901,424 / 17,096,480 (-14.1 %), step 19,901,424 /
  // 19,389,820 (-2.6 %). Asserted: never higher; on wasm a forward peak at least 8 % lower.
  for (const [what, p] of Object.entries(peaks)) {
    assert.ok(p.fwd[1]! <= p.fwd[0]!, `${what}: forward peak ${p.fwd[1]} > ${p.fwd[0]} unscoped`);
    assert.ok(p.step[1]! <= p.step[0]!, `${what}: step peak ${p.step[1]} > ${p.step[0]} unscoped`);
    if (what.startsWith("wasm/")) {
      assert.ok(p.fwd[1]! <= 0.92 * p.fwd[0]!, `${what}: forward peak ${p.fwd[1]} vs ${p.fwd[0]}`);
    }
  }
});

Deno.test("shared embedding table: one lookup, its backward concatenates the two stacks' row gradients", async () => {
  // The tied table's gradient must equal the sum of what two own tables of the same values get
  // (one scatter of all rows against two scatters, fp32 sums of the same few terms in another
  // order: 1e-6 of the largest entry), and the backward joins the encoder's and decoder's row
  // gradients with one Concat, not a zero-padded [rows, d] copy per stack and their sum.
  const cfg = small("tiny-v1_1");
  const before = tf.memory().numTensors;
  const tied = initT5(cfg, { seed: 8 });
  const shared = tied.params.get("shared.weight")!;
  const sd = t5StateDict(tied)
    // (a clone shares the storage and would count as the same table: add 0 copies it)
    .set("encoder.embed_tokens.weight", tf.add(shared, 0))
    .set("decoder.embed_tokens.weight", tf.add(shared, 0));
  const untied = t5FromTensors(cfg, sd, "test");
  for (const name of ["encoder", "decoder"]) sd.get(`${name}.embed_tokens.weight`)!.dispose();
  assert.deepEqual(untied.config.ownEmbeddings, ["encoder", "decoder"]);
  const batch = makeBatch();
  const labels = tf.tensor2d([[4, 5, 6, 1], [7, 1, -100, -100], [9, 9, 9, 1]], undefined, "int32");
  // The loss and its gradients with respect to the named variables, in that order.
  const gradOf = (model: T5Model, names: string[]): [tf.Scalar, ...tf.Tensor[]] => {
    const vars = names.map((n) => model.params.get(n) as tf.Variable);
    const { value, grads } = tf.variableGrads(
      () => crossEntropyLoss(logitsOf(model, batch), labels),
      vars,
    );
    return [value, ...vars.map((v) => grads[v.name]!)];
  };
  const profiled = await tf.profile(() => {
    const [value, g] = gradOf(tied, ["shared.weight"]);
    value.dispose();
    return g!;
  });
  const kernels = profiled.kernels.map((k) => k.name);
  const got = profiled.result as tf.Tensor;
  const [ownValue, gEnc, gDec] = gradOf(untied, [
    "encoder.embed_tokens.weight",
    "decoder.embed_tokens.weight",
  ]);
  const want = tf.add(gEnc!, gDec!);
  const scale = tf.tidy(() => tf.max(tf.abs(want)).dataSync()[0]!);
  assert.ok(scale > 0, "the embedding gets a gradient");
  assert.ok(maxAbs(got, want) <= 1e-6 * scale, `tied vs own tables: ${maxAbs(got, want)}`);
  assert.equal(kernels.filter((k) => k === "PadV2").length, 0, `kernels: ${kernels.join()}`);
  assert.ok(kernels.includes("Concat"), "a Concat joins them");
  tf.dispose([got, want, ownValue, gEnc!, gDec!, labels]);
  disposeBatch(batch);
  disposeT5(untied);
  disposeT5(tied);
  assert.equal(tf.memory().numTensors, before, "tensors leaked");
});
