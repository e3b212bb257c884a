/**
 * Accounting against PyTorch's counts of HF T5 (`shared/fixtures/t5_sizes.json`) and against the
 * variables the model actually creates.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { preset, PRESETS, PUBLISHED_PRESETS } from "./config.ts";
import { countT5Params, t5Flops } from "./accounting.ts";
import { sharedPath } from "./shared_dir.ts";
import { disposeT5, initT5, t5ParamShapes } from "./t5.ts";

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

Deno.test("countT5Params equals PyTorch's totals for all ten published sizes", () => {
  for (const m of sizes.models) assert.equal(countT5Params(preset(m.name)), m.n_params, m.name);
});

Deno.test("t5Flops within 1% of FlopCounterMode for all ten sizes (forward and train)", () => {
  let worst = 0;
  for (const m of sizes.models) {
    for (const [s, t] of [[128, 16], [512, 128]] as const) {
      const got = t5Flops(preset(m.name), { inputLength: s, targetLength: t });
      const fwd = m[`fwd_flops_${s}_${t}`] as number;
      const fb = m[`fwdbwd_flops_${s}_${t}`] as number;
      for (const [g, w] of [[got.forward, fwd], [got.train, fb]] as const) {
        const rel = Math.abs(g - w) / w;
        worst = Math.max(worst, rel);
        assert.ok(rel < 0.01, `${m.name} ${s}/${t}: ${g} vs ${w}`);
      }
    }
  }
  // The closed form is exact, not merely within 1%.
  assert.equal(worst, 0);
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
