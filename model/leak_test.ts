/**
 * Tensor-leak checks: a training loop (variableGrads + Adam, dropout on, prefixes from a hook)
 * keeps `tf.memory().numTensors` flat, and forward / greedyDecode / the loss leave nothing.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";
import { registerFusedWasmKernels, unregisterFusedWasmKernels } from "./fused.ts";
import { enableSimdKernels } from "./wasm_simd.ts";
import { preset } from "./config.ts";
import type { T5Hooks } from "./hooks.ts";
import { crossEntropyLoss, disposeT5, forward, greedyDecode, initT5, shiftRight } from "./t5.ts";

async function trainingLoopIsFlat(backend: "cpu" | "wasm" | "wasm+fused"): Promise<void> {
  assert.ok(await tf.setBackend(backend === "cpu" ? "cpu" : "wasm"));
  if (backend === "wasm+fused") {
    await enableSimdKernels(tf.backend() as BackendWasm);
    registerFusedWasmKernels();
  } else {
    await enableSimdKernels(undefined);
    unregisterFusedWasmKernels();
  }
  const start = tf.memory().numTensors;
  const cfg = { ...preset("tiny-v1_1"), vocabSize: 128 };
  const model = initT5(cfg, { seed: 1 });
  const zeroVar = () => {
    const z = tf.zeros([1, 2, cfg.numHeads * cfg.dKv]);
    const v = tf.variable(z);
    z.dispose(); // the variable holds the storage; the init tensor would otherwise stay counted
    return v;
  };
  const prefixK = zeroVar();
  const prefixV = zeroVar();
  const hooks: T5Hooks = {
    selfAttentionPrefix: () => ({
      key: prefixK as tf.Tensor as tf.Tensor3D,
      value: prefixV as tf.Tensor as tf.Tensor3D,
      positionBias: "relative",
    }),
  };
  const inputIds = tf.tensor2d([[5, 9, 13, 2, 1], [7, 8, 1, 0, 0]], undefined, "int32");
  const attentionMask = tf.tensor2d([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]);
  const labels = tf.tensor2d([[4, 5, 1], [6, 1, -100]], undefined, "int32");
  const decoderInputIds = shiftRight(labels, cfg);
  const vars = [...model.params.values(), prefixK, prefixV];
  const opt = tf.train.adam(1e-3);
  const counts: number[] = [];
  const losses: number[] = [];
  for (let step = 0; step < 20; step++) {
    const { value, grads } = tf.variableGrads(() => {
      const out = forward(model, { inputIds, attentionMask, decoderInputIds }, {
        hooks,
        training: true,
        dropoutSeed: step,
      });
      return crossEntropyLoss(out.logits, labels, { labelSmoothing: 0.1 });
    }, vars);
    opt.applyGradients(grads as Record<string, tf.Variable>);
    losses.push((await value.data())[0]!);
    tf.dispose([value, ...Object.values(grads)]);
    counts.push(tf.memory().numTensors);
  }
  assert.equal(counts[19], counts[0], `${backend}: numTensors per step ${counts.join(",")}`);
  assert.ok(losses.every(Number.isFinite), `${backend}: losses ${losses}`);
  assert.ok(losses[19]! < losses[0]!, `${backend}: loss went down ${losses[0]} → ${losses[19]}`);

  // forward, loss and greedy decoding leave nothing behind
  const before = tf.memory().numTensors;
  const r = forward(model, { inputIds, attentionMask, decoderInputIds }, { hooks });
  const l = crossEntropyLoss(r.logits, labels);
  tf.dispose([r.logits, r.encoderOutput, l]);
  await greedyDecode(model, { inputIds, attentionMask }, { maxNewTokens: 5, hooks });
  await greedyDecode(model, { inputIds, attentionMask }, { maxNewTokens: 5, useCache: false });
  assert.equal(tf.memory().numTensors, before, `${backend}: forward/greedy left tensors`);

  opt.dispose();
  tf.dispose([inputIds, attentionMask, labels, decoderInputIds, prefixK, prefixV]);
  disposeT5(model);
  assert.equal(tf.memory().numTensors, start, `${backend}: everything released`);
}

Deno.test("no tensor leaks: 20 Adam steps, forward, loss, greedyDecode (cpu)", () =>
  trainingLoopIsFlat("cpu"));
Deno.test("no tensor leaks: 20 Adam steps, forward, loss, greedyDecode (wasm)", () =>
  trainingLoopIsFlat("wasm"));
Deno.test(
  "no tensor leaks: 20 Adam steps, forward, loss, greedyDecode (wasm, fused SIMD kernels)",
  async () => {
    await trainingLoopIsFlat("wasm+fused");
    await enableSimdKernels(undefined);
    unregisterFusedWasmKernels();
  },
);

Deno.test("no tensor leaks: greedyDecode whose hook throws mid-decode (cpu)", async () => {
  // By the throwing step greedyDecode holds the encoder output, its mask, the cross-attention
  // keys/values and (cached) the self-attention keys/values of the steps before: all must go.
  assert.ok(await tf.setBackend("cpu"));
  const cfg = { ...preset("tiny-v1_1"), vocabSize: 128 };
  const model = initT5(cfg, { seed: 3 });
  const inputIds = tf.tensor2d([[5, 9, 13, 2, 1], [7, 8, 1, 0, 0]], undefined, "int32");
  const attentionMask = tf.tensor2d([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]);
  const before = tf.memory().numTensors;
  for (const useCache of [true, false]) {
    for (const failAt of [0, 2]) {
      // Decoder self-attention sublayers seen so far; a step runs numDecoderLayers of them.
      let seen = 0;
      const hooks: T5Hooks = {
        afterSublayer: (stack, _layer, sublayer, y) => {
          if (stack === "decoder" && sublayer === "self_attention") {
            if (seen++ === failAt * cfg.numDecoderLayers) throw new Error(`hook fails`);
          }
          return y;
        },
      };
      await assert.rejects(
        () =>
          greedyDecode(model, { inputIds, attentionMask }, { maxNewTokens: 5, hooks, useCache }),
        /hook fails/,
      );
      assert.equal(seen, failAt * cfg.numDecoderLayers + 1, "failed at the planned step");
      assert.equal(
        tf.memory().numTensors,
        before,
        `useCache ${useCache}, hook throws at step ${failAt}: tensors left`,
      );
    }
  }
  tf.dispose([inputIds, attentionMask]);
  disposeT5(model);
});
