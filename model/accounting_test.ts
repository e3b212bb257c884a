/**
 * Accounting against PyTorch's counts of HF T5 (`shared/fixtures/t5_sizes.json`) and against the
 * variables the model actually creates.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { preset, PRESETS, PUBLISHED_PRESETS } from "./config.ts";
import { countT5Params, type FlopPlan, t5Flops } from "./accounting.ts";
import type { T5Hooks } from "./hooks.ts";
import { sharedPath } from "./shared_dir.ts";
import { crossEntropyLoss, disposeT5, forward, initT5, shiftRight, t5ParamShapes } from "./t5.ts";
import { profiledMatmulFlops, TINY_FLOP_CONFIG } from "./accounting_testing.ts";

interface SizeRow {
  name: string;
  d_model: number;
  d_ff: number;
  d_kv: number;
  num_heads: number;
  num_layers: number;
  feed_forward_proj: string;
  tie_word_embeddings: boolean;
  vocab_size: number;
  relative_attention_num_buckets: number;
  n_params: number;
  [k: string]: unknown;
}

const sizes = JSON.parse(
  await Deno.readTextFile(sharedPath("fixtures", "t5_sizes.json")),
) as { models: SizeRow[] };

Deno.test("presets match the published configurations", () => {
  assert.deepEqual(sizes.models.map((m) => m.name).sort(), [...PUBLISHED_PRESETS].sort());
  for (const m of sizes.models) {
    const c = preset(m.name);
    assert.deepEqual(
      [c.dModel, c.dFf, c.dKv, c.numHeads, c.numLayers, c.numDecoderLayers, c.feedForwardProj],
      [m.d_model, m.d_ff, m.d_kv, m.num_heads, m.num_layers, m.num_layers, m.feed_forward_proj],
      m.name,
    );
    assert.deepEqual(
      [c.tieWordEmbeddings, c.vocabSize, c.relativeAttentionNumBuckets],
      [m.tie_word_embeddings, m.vocab_size, m.relative_attention_num_buckets],
      m.name,
    );
  }
});

Deno.test("countT5Params equals the fixture's totals for all ten published sizes (transformers' count for T5 1.0, the published checkpoints' for T5 1.1)", () => {
  for (const m of sizes.models) assert.equal(countT5Params(preset(m.name)), m.n_params, m.name);
});

Deno.test("t5Flops equals FlopCounterMode's counts for all ten sizes (forward and train), exactly", () => {
  for (const m of sizes.models) {
    for (const [s, t] of [[128, 16], [512, 128]] as const) {
      const got = t5Flops(preset(m.name), { inputLength: s, targetLength: t });
      const fwd = m[`fwd_flops_${s}_${t}`] as number;
      const fb = m[`fwdbwd_flops_${s}_${t}`] as number;
      // Integers below 2^53: the closed form is exact, so equal, not merely close.
      assert.equal(got.forward, fwd, `${m.name} ${s}/${t} forward`);
      assert.equal(got.train, fb, `${m.name} ${s}/${t} train`);
    }
  }
});

Deno.test("t5Flops rejects bad lengths", () => {
  assert.throws(
    () => t5Flops(PRESETS["tiny-relu"], { inputLength: 0, targetLength: 4 }),
    /inputLength/,
  );
});

Deno.test("countT5Params equals the shapes (t5-v1_1-small, all tiny) and the variables (tiny)", () => {
  const sumShapes = (name: string) => {
    let n = 0;
    for (const s of t5ParamShapes(preset(name)).values()) n += s.reduce((a, b) => a * b, 1);
    return n;
  };
  assert.equal(sumShapes("t5-v1_1-small"), countT5Params(preset("t5-v1_1-small")));
  assert.equal(sumShapes("t5-small"), countT5Params(preset("t5-small")));
  for (const name of ["tiny-relu", "tiny-v1_1", "mini-v1_1"]) {
    assert.equal(sumShapes(name), countT5Params(preset(name)), name);
    const model = initT5(preset(name), { seed: 1 });
    let n = 0;
    for (const v of model.params.values()) n += v.size;
    assert.equal(n, countT5Params(preset(name)), name);
    disposeT5(model);
  }
  assert.equal(tf.memory().numTensors, 0);
});

Deno.test("t5Flops plan.elementwise: a trained bias or scale after a sublayer of a frozen T5 counts the matmuls tfjs runs", async () => {
  await tf.setBackend("cpu");
  const config = TINY_FLOP_CONFIG;
  const [S, T] = [6, 3];
  const before = tf.memory().numTensors;
  const model = initT5(config, { seed: 5 });
  const bias = tf.tidy(() => tf.variable(tf.fill([config.dModel], 0.1), true, "acct_test_bias"));
  // The op (Add: a bias; Mul: a scale) does not change the count: both make the hidden state
  // depend on the trained tensor from that sublayer on, and neither is a matmul.
  const cases: NonNullable<FlopPlan["elementwise"]>[] = [
    { stacks: ["decoder"], positions: ["feed_forward"] },
    { stacks: ["encoder", "decoder"], positions: ["self_attention"], op: "add" },
    { stacks: ["encoder"], positions: ["feed_forward"], op: "mul" },
  ];
  for (const where of cases) {
    const hooks: T5Hooks = {
      afterSublayer: (stack, _layer, sublayer, y) =>
        where.stacks.includes(stack) && (where.positions as string[]).includes(sublayer)
          ? where.op === "mul" ? tf.mul(y, bias) : tf.add(y, bias)
          : y,
    };
    // The matmuls of one step's gradient with respect to the bias alone (frozen backbone); the
    // difference of two batch sizes leaves the per-example FLOPs.
    const measure = async (rows: number) => {
      const ids = (n: number, len: number, k: number) =>
        tf.tensor2d(Array.from({ length: n * len }, (_, j) => 2 + (j * k) % 60), [n, len], "int32");
      const labels = ids(rows, T, 7);
      const batch = {
        inputIds: ids(rows, S, 5),
        attentionMask: tf.ones([rows, S]) as tf.Tensor2D,
        decoderInputIds: shiftRight(labels, config),
      };
      const loss = () =>
        crossEntropyLoss(forward(model, batch, { hooks }).logits, labels) as tf.Scalar;
      const flops = profiledMatmulFlops(
        (await tf.profile(() => {
          const { value, grads } = tf.variableGrads(loss, [bias]);
          tf.dispose([value, ...Object.values(grads)]);
          return [];
        })).kernels,
      );
      tf.dispose([labels, batch.inputIds, batch.attentionMask, batch.decoderInputIds]);
      return flops;
    };
    const train = ((await measure(3)) - (await measure(1))) / 2;
    const shape = { inputLength: S, targetLength: T };
    const plan: FlopPlan = { freezeBackbone: "all", elementwise: where };
    assert.equal(t5Flops(config, shape, plan).train, train, JSON.stringify(where));
    // The tensors add no forward FLOPs; without them the plan counts too little.
    assert.equal(t5Flops(config, shape, plan).forward, t5Flops(config, shape).forward);
    assert.ok(t5Flops(config, shape, { freezeBackbone: "all" }).train < train);
  }
  bias.dispose();
  disposeT5(model);
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("countT5Params / t5Flops refuse a size field that is not a positive integer, naming it", () => {
  const base = preset("tiny-v1_1");
  for (const bad of [0, -1, 1.5, NaN]) {
    for (const key of ["dModel", "numHeads", "relativeAttentionMaxDistance"] as const) {
      const config = { ...base, [key]: bad };
      assert.throws(() => countT5Params(config), {
        message: `model/accounting.ts countT5Params: config.${key} must be a positive integer, ` +
          `got ${bad}`,
      });
      assert.throws(() => t5Flops(config, { inputLength: 8, targetLength: 4 }), {
        message:
          `model/accounting.ts t5Flops: config.${key} must be a positive integer, got ${bad}`,
      });
    }
  }
  assert.ok(countT5Params(base) > 0, "a valid configuration is counted");
});
