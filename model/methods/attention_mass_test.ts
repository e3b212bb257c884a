import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { PRESETS, type T5Config } from "../config.ts";
import { disposeT5, forward } from "../t5.ts";
import { attentionMass } from "./attention_mass.ts";
import type { MethodInstance } from "../method.ts";
import { METHODS } from "./mod.ts";
import { context, disposeBatch, makeBatch, tinyModel } from "./_test_util.ts";
import { gpuTest } from "../webgpu/testing.ts";
import { registerWebgpuKernels } from "../webgpu/mod.ts";

// The cpu tests run on cpu (importing the webgpu test helpers registers webgpu, which tfjs would
// otherwise pick first).
await tf.setBackend("cpu");

const TINY: T5Config = { ...PRESETS["tiny-v1_1"], vocabSize: 256 };
const GLOBAL = { length: 4, bottleneck: 4, embeddingDim: 8, hiddenDim: 16, projectedDim: 8 };

Deno.test("attentionMass() matches a direct average over non-padded queries, heads, examples", async () => {
  const model = tinyModel(TINY);
  const inst = METHODS.hyperprompt_global.create(
    context(model),
    METHODS.hyperprompt_global.parseConfig(GLOBAL, "test"),
  );
  const { batch, labels } = makeBatch(TINY, 3, 6, 3);
  const taskIds = [0, 2, 1];
  const before = tf.memory().numTensors;
  const mass = await attentionMass(model, inst, batch, taskIds);
  assert.equal(tf.memory().numTensors, before, "attentionMass leaked tensors");
  assert.equal(mass.encoder.length, TINY.numLayers);
  assert.equal(mass.decoder.length, TINY.numDecoderLayers);
  for (const m of [...mass.encoder, ...mass.decoder]) assert.ok(m > 0 && m < 1, `mass ${m}`);

  // Direct computation for encoder layer 1 from the full probabilities.
  const mask = batch.attentionMask.arraySync();
  let direct = NaN;
  tf.tidy(() => {
    const hooks = inst.hooks(taskIds);
    forward(model, batch, {
      hooks: {
        ...hooks,
        onAttention(stack, layer, sublayer, probs, prefixLength) {
          if (stack !== "encoder" || layer !== 1 || sublayer !== "self_attention") return;
          const p = probs.arraySync();
          let sum = 0;
          for (const [b, ex] of p.entries()) {
            let exSum = 0, count = 0;
            for (const head of ex) {
              for (const [q, row] of head.entries()) {
                if (mask[b]![q] === 0) continue;
                exSum += row.slice(0, prefixLength).reduce((a, x) => a + x, 0);
                count++;
              }
            }
            sum += exSum / count;
          }
          direct = sum / p.length;
        },
      },
    });
  });
  // fp32 sums of a few dozen probabilities in a different order.
  assert.ok(Math.abs(direct - mass.encoder[1]!) < 1e-6, `${direct} vs ${mass.encoder[1]}`);

  // Extra padding columns change neither the encoder nor the decoder masses.
  const padded = tf.tidy(() => ({
    inputIds: tf.concat([batch.inputIds, tf.zeros([3, 4], "int32")], 1) as tf.Tensor2D,
    attentionMask: tf.concat([batch.attentionMask, tf.zeros([3, 4])], 1) as tf.Tensor2D,
    decoderInputIds: batch.decoderInputIds.clone(),
  }));
  const mass2 = await attentionMass(model, inst, padded, taskIds);
  for (const s of ["encoder", "decoder"] as const) {
    for (const [i, m] of mass[s].entries()) {
      assert.ok(Math.abs(m - mass2[s][i]!) < 1e-5, `${s} ${i}: ${m} vs ${mass2[s][i]}`);
    }
  }
  disposeBatch(padded);
  disposeBatch(batch);
  labels.dispose();
  inst.dispose();
  disposeT5(model);
});

Deno.test("attentionMass() is zero without prompt columns (mtl, unconditioned stacks)", async () => {
  const model = tinyModel(TINY);
  const { batch, labels } = makeBatch(TINY, 2, 5, 2);
  const mtl = METHODS.mtl.create(context(model), METHODS.mtl.defaults);
  assert.deepEqual(await attentionMass(model, mtl, batch, [0, 1]), {
    encoder: [0, 0],
    decoder: [0, 0],
  });
  const share = METHODS.hyperprompt_share.create(
    context(model),
    METHODS.hyperprompt_share.parseConfig({ length: 3, bottleneck: 4, stacks: ["encoder"] }, "t"),
  );
  const m = await attentionMass(model, share, batch, [1, 1]);
  assert.deepEqual(m.decoder, [0, 0]);
  assert.ok(m.encoder.every((x) => x > 0));
  share.dispose();
  disposeBatch(batch);
  labels.dispose();
  disposeT5(model);
});

Deno.test("attentionMass() of a method with both prompt key/value columns and encoder-input prompt rows counts only the key/value columns", async () => {
  // No built-in method has both, but the hooks allow it (model/hooks.ts: encoderInput and
  // selfAttentionPrefix) and a FlopPlan may declare both (encoderPrompt, selfAttentionPrefix), so
  // an added method can: HyperPrompt-Global's 4 key/value prompts in every self-attention, and
  // Prompt-Tuning's 3 rows prepended to the embedded encoder input. An encoder self-attention's
  // columns are then [4 prompt keys | 3 soft-prompt rows | 6 tokens]: the mass is the first 4
  // only, over the queries [3 soft-prompt rows (real) | the 6 tokens, padding skipped].
  const P = 3;
  const model = tinyModel(TINY);
  const hp = METHODS.hyperprompt_global.create(
    context(model),
    METHODS.hyperprompt_global.parseConfig(GLOBAL, "test"),
  );
  const pt = METHODS.prompt_tuning.create(
    context(model),
    METHODS.prompt_tuning.parseConfig({ length: P, init: "uniform" }, "test"),
  );
  const both: MethodInstance = {
    name: "hyperprompt_and_prompt_tuning",
    variables: new Map([...hp.variables, ...pt.variables]),
    keepTaskPrefix: true,
    isBackboneTrainable: () => true,
    hooks: (ids) => ({ ...hp.hooks(ids), encoderInput: pt.hooks(ids).encoderInput }),
    dispose: () => {
      hp.dispose();
      pt.dispose();
    },
  };
  const { batch, labels } = makeBatch(TINY, 3, 6, 3);
  const taskIds = [0, 2, 1];
  const before = tf.memory().numTensors;
  const mass = await attentionMass(model, both, batch, taskIds);
  assert.equal(tf.memory().numTensors, before, "attentionMass leaked tensors");

  // Direct computation for every self-attention layer, from the full probabilities.
  const tokenMask = batch.attentionMask.arraySync();
  const direct = { encoder: [] as number[], decoder: [] as number[] };
  // The same average over the first 4 + 3 columns (key/value prompts and soft prompts together).
  const withSoft: number[] = [];
  tf.tidy(() => {
    const hooks = both.hooks(taskIds);
    forward(model, batch, {
      hooks: {
        ...hooks,
        onAttention(stack, layer, sublayer, probs, prefixLength) {
          if (sublayer !== "self_attention") return;
          const p = probs.arraySync();
          const [b, heads, q, cols] = probs.shape;
          assert.equal(prefixLength, GLOBAL.length);
          const tokens = stack === "encoder" ? 6 : 3;
          const rows = stack === "encoder" ? P + tokens : tokens;
          assert.deepEqual([b, heads, q, cols], [3, TINY.numHeads, rows, prefixLength + rows]);
          const average = (columns: number) => {
            let sum = 0;
            for (const [i, ex] of p.entries()) {
              let exSum = 0, count = 0;
              for (const head of ex) {
                for (const [r, row] of head.entries()) {
                  // The soft-prompt rows come first and are real queries; decoder rows all count.
                  const counts = stack === "decoder" || r < P || tokenMask[i]![r - P] === 1;
                  if (!counts) continue;
                  exSum += row.slice(0, columns).reduce((a, x) => a + x, 0);
                  count++;
                }
              }
              sum += exSum / count;
            }
            return sum / p.length;
          };
          direct[stack][layer] = average(prefixLength);
          if (stack === "encoder") withSoft[layer] = average(prefixLength + P);
        },
      },
    });
  });
  for (const s of ["encoder", "decoder"] as const) {
    assert.equal(mass[s].length, s === "encoder" ? TINY.numLayers : TINY.numDecoderLayers);
    for (const [i, m] of mass[s].entries()) {
      assert.ok(m > 0 && m < 1, `${s} ${i}: mass ${m}`);
      // fp32 sums of a few dozen probabilities in a different order, as above.
      assert.ok(Math.abs(direct[s][i]! - m) < 1e-6, `${s} ${i}: ${direct[s][i]} vs ${m}`);
    }
  }
  // The soft-prompt columns hold mass of their own, so counting them would show here: this
  // random tiny model attends almost uniformly, so 3 of the 13 columns hold about 3/13 = 0.23
  // (measured 0.25 and 0.26 in the two encoder layers); 0.05 is a fifth of that, yet 5e4 times
  // the 1e-6 within which the mass must equal the key/value columns' share above.
  for (const [i, m] of mass.encoder.entries()) {
    assert.ok(withSoft[i]! - m > 0.05, `encoder ${i}: soft-prompt columns add ${withSoft[i]! - m}`);
  }
  disposeBatch(batch);
  labels.dispose();
  both.dispose();
  disposeT5(model);
});

/** HyperPrompt-Global's attention mass on a 3-example batch, on the current backend. */
async function globalMass() {
  const model = tinyModel(TINY);
  const inst = METHODS.hyperprompt_global.create(
    context(model),
    METHODS.hyperprompt_global.parseConfig(GLOBAL, "test"),
  );
  const { batch, labels } = makeBatch(TINY, 3, 6, 3);
  const before = tf.memory().numTensors;
  try {
    return await attentionMass(model, inst, batch, [0, 2, 1]);
  } finally {
    assert.equal(tf.memory().numTensors, before, `${tf.getBackend()}: attentionMass leaked`);
    disposeBatch(batch);
    labels.dispose();
    inst.dispose();
    disposeT5(model);
  }
}

gpuTest(
  "attentionMass() on webgpu (custom kernels) equals cpu's",
  async () => {
    // The GPU benchmark measures it after every HyperPrompt run; a synchronous read of the
    // per-layer masses threw there (tfjs reads GPU data back synchronously through a canvas).
    const gpu = await globalMass();
    await tf.setBackend("cpu");
    let cpu;
    try {
      cpu = await globalMass();
    } finally {
      await tf.setBackend("webgpu");
    }
    // Means of a few dozen probabilities summed in other orders: ~1e-7 apart; 1e-6 allowed (as
    // the direct computation above).
    for (const s of ["encoder", "decoder"] as const) {
      assert.equal(gpu[s].length, cpu[s].length);
      for (const [i, m] of cpu[s].entries()) {
        assert.ok(m > 0 && m < 1, `${s} ${i}: ${m}`);
        assert.ok(Math.abs(gpu[s][i]! - m) < 1e-6, `${s} ${i}: webgpu ${gpu[s][i]} vs cpu ${m}`);
      }
    }
  },
  () => assert.ok(registerWebgpuKernels()),
);
