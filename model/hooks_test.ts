/**
 * How T5 applies a `selfAttentionPrefix` (spec §1.3, A4, A5), observed through `onAttention`:
 * the prefix keys are all zero, so a prefix column's score is its position bias alone and the
 * ratio of two prefix columns' probabilities is exp(bias difference), which is computed here from
 * the layer's own relative-attention table. "zero" gives every prefix column bias 0; "relative"
 * places the prefix at positions −l … −1 before the first token (bidirectional buckets in the
 * encoder, causal ones in the decoder, queries at their absolute positions in cached decoding).
 * Every query sees every prefix column (padding and the causal mask never hide them), the causal
 * mask still hides later decoder keys, and cross-attention gets no prefix.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { PRESETS, type T5Config } from "./config.ts";
import type { AttentionPrefix, Stack, Sublayer, T5Hooks } from "./hooks.ts";
import { relativePositionBucket } from "./layers.ts";
import { disposeT5, forward, greedyDecode, initT5, type T5Model } from "./t5.ts";

await tf.setBackend("cpu");

const CFG: T5Config = { ...PRESETS["tiny-v1_1"], vocabSize: 64 };
const L = 3;
/** Softmax in float32: log-ratios of probabilities of order 1e-2 are good to ~1e-5. */
const TOL = 1e-4;

interface Seen {
  stack: Stack;
  layer: number;
  sublayer: Sublayer;
  prefixLength: number;
  /** `[batch][head][query][column]` */
  probs: number[][][][];
}

function hooksFor(positionBias: AttentionPrefix["positionBias"], seen: Seen[]): T5Hooks {
  const w = CFG.numHeads * CFG.dKv;
  return {
    selfAttentionPrefix: (_stack, _layer, batch) => ({
      key: tf.zeros([1, L, w]) as tf.Tensor3D,
      value: tf.randomNormal([batch, L, w], 0, 1, "float32", 3) as tf.Tensor3D,
      positionBias,
    }),
    onAttention(stack, layer, sublayer, probs, prefixLength) {
      seen.push({
        stack,
        layer,
        sublayer,
        prefixLength,
        probs: probs.arraySync() as number[][][][],
      });
    },
  };
}

/** Bias of head h for a key at `key` and a query at `query` in `stack`. */
function biasOf(model: T5Model, stack: Stack, query: number, key: number): number[] {
  const table = model.params.get(
    `${stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight`,
  )!.arraySync() as number[][];
  const bucket = relativePositionBucket(
    key - query,
    stack === "encoder",
    CFG.relativeAttentionNumBuckets,
    CFG.relativeAttentionMaxDistance,
  );
  return table[bucket]!;
}

/**
 * Checks every self-attention observation: prefix columns come first with the expected biases,
 * `queryStart` is the absolute position of the decoder's first query.
 */
function checkPrefix(
  model: T5Model,
  seen: Seen[],
  positionBias: AttentionPrefix["positionBias"],
  queryStart: number,
): { checked: number; causal: number } {
  let checked = 0;
  let causal = 0;
  for (const s of seen) {
    if (s.sublayer === "cross_attention") {
      assert.equal(s.prefixLength, 0, "cross-attention has no prefix");
      continue;
    }
    assert.equal(s.prefixLength, L, `${s.stack}.${s.layer}`);
    const start = s.stack === "decoder" ? queryStart : 0;
    for (const [bi, heads] of s.probs.entries()) {
      for (const [h, queries] of heads.entries()) {
        for (const [qi, row] of queries.entries()) {
          const q = start + qi;
          // The causal mask still hides every later decoder key behind the prefix columns.
          if (s.stack === "decoder") {
            for (let key = q + 1; key < row.length - L; key++) {
              assert.equal(row[L + key], 0, `${s.stack}.${s.layer} b${bi} h${h} q${q}: key ${key}`);
              causal++;
            }
          }
          for (let j = 0; j < L; j++) {
            assert.ok(row[j]! > 0, `${s.stack}.${s.layer} b${bi} h${h} q${q}: prefix ${j} hidden`);
            const got = Math.log(row[j]! / row[0]!);
            const want = positionBias === "zero"
              ? 0
              : biasOf(model, s.stack, q, -L + j)[h]! - biasOf(model, s.stack, q, -L)[h]!;
            assert.ok(
              Math.abs(got - want) <= TOL,
              `${s.stack}.${s.layer} ${positionBias} b${bi} h${h} q${q} col ${j}: ${got} vs ${want}`,
            );
            checked++;
          }
        }
      }
    }
  }
  return { checked, causal };
}

function scrambleBias(model: T5Model): void {
  // A large relative-bias table so that bucket differences give clearly different log-ratios;
  // a different draw per stack, so that a stack reading the other's table fails (seeded by
  // the name's length, both stacks drew the same table and that went unseen).
  for (const [i, stack] of ["encoder", "decoder"].entries()) {
    const v = model.params.get(
      `${stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight`,
    )! as tf.Variable;
    tf.tidy(() => v.assign(tf.randomNormal(v.shape, 0, 2, "float32", 7 + i)));
  }
}

const BATCH = () => ({
  inputIds: tf.tensor2d([[5, 6, 7, 8, 1], [9, 10, 1, 0, 0]], undefined, "int32"),
  attentionMask: tf.tensor2d([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]),
  decoderInputIds: tf.tensor2d([[0, 11, 12, 13], [0, 14, 15, 16]], undefined, "int32"),
});

for (const positionBias of ["zero", "relative"] as const) {
  Deno.test(`selfAttentionPrefix "${positionBias}": prefix columns' position bias, never masked (forward)`, () => {
    const model = initT5(CFG, { seed: 4 });
    scrambleBias(model);
    const batch = BATCH();
    const seen: Seen[] = [];
    const out = forward(model, batch, { hooks: hooksFor(positionBias, seen) });
    tf.dispose([out.logits, out.encoderOutput]);
    assert.equal(seen.length, CFG.numLayers + 2 * CFG.numDecoderLayers);
    const { checked: n, causal } = checkPrefix(model, seen, positionBias, 0);
    // 2 rows × heads × (5 encoder + 4 decoder queries) × L columns, every layer
    assert.equal(n, 2 * CFG.numHeads * (5 * CFG.numLayers + 4 * CFG.numDecoderLayers) * L);
    // 4 decoder queries have 3 + 2 + 1 + 0 later keys: 2 rows × heads × 6, every decoder layer
    assert.equal(causal, 2 * CFG.numHeads * 6 * CFG.numDecoderLayers);
    if (positionBias === "relative") {
      // the bias is not trivially constant over the prefix columns
      const d = seen.find((s) => s.stack === "decoder" && s.sublayer === "self_attention")!;
      const row = d.probs[0]![0]![3]!;
      assert.ok(Math.abs(Math.log(row[0]! / row[L - 1]!)) > 1e-2, "flat relative bias");
    }
    tf.dispose(Object.values(batch));
    disposeT5(model);
  });

  Deno.test(`selfAttentionPrefix "${positionBias}": cached decoding puts each query at its position`, async () => {
    const model = initT5(CFG, { seed: 4 });
    scrambleBias(model);
    const batch = BATCH();
    const seen: Seen[] = [];
    let step = -1;
    const hooks = hooksFor(positionBias, seen);
    const base = hooks.onAttention!;
    // The encoder runs once (no step); then each decoder step has one query at position `step`.
    let checked = 0;
    const wrapped: T5Hooks = {
      ...hooks,
      onAttention(stack, layer, sublayer, probs, l) {
        if (stack === "decoder" && layer === 0 && sublayer === "self_attention") step++;
        base(stack, layer, sublayer, probs, l);
        const s = seen.pop()!;
        checked += checkPrefix(model, [s], positionBias, Math.max(step, 0)).checked;
      },
    };
    await greedyDecode(model, batch, { maxNewTokens: 4, hooks: wrapped, stopAtEos: false });
    assert.equal(step, 3);
    assert.equal(
      checked,
      2 * CFG.numHeads * (5 * CFG.numLayers + 4 * CFG.numDecoderLayers) * L,
    );
    tf.dispose(Object.values(batch));
    disposeT5(model);
  });
}
