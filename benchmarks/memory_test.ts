import { DEFAULT_SUBMIT_BATCH } from "../model/webgpu/submit_batch.ts";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { preset, PRESETS } from "../model/config.ts";
import { globalGradNorm, lossAndGrads } from "./trainer.ts";
import { collate } from "./batching.ts";
import { createOptimizer } from "./optim.ts";
import { installLowMemoryBackprop, uninstallLowMemoryBackprop } from "../model/backprop.ts";
import {
  type BackpropMode,
  estimateTrainingMemory,
  type KernelSet,
  largestFittingMicroBatch,
  type MemoryInput,
  type OptimizerMemory,
} from "./memory.ts";
import { tinyTrainingStep } from "./trainer_testing.ts";
import { methodTrainingStep } from "./training_step.ts";
import { DEFAULT_TRAIN } from "./spec.ts";
import type { TrainSpec } from "./spec.ts";
import { greedyDecode, t5ParamShapes } from "../model/t5.ts";
import { bufferMeter } from "../model/buffer_meter_testing.ts";
import { LSE_GRAD_IN_KERNEL, updatePathsTaken } from "../model/fused.ts";
import { ADAFACTOR_UNFACTORED_MAX } from "../model/webgpu/in_place.ts";
import { selectBackend } from "../model/backend.ts";
import { METHODS } from "../model/methods/mod.ts";
import type { Method, MethodContext, MethodInstance } from "../model/method.ts";
import type { T5Config } from "../model/config.ts";
import type { FlopPlan } from "../model/accounting.ts";
import {
  backboneTrainable,
  ConfigReader,
  type FreezeBackbone,
  trainedBackboneParams,
} from "../model/methods/_config.ts";

await tf.setBackend("cpu");

const OPT: OptimizerMemory = { kind: "adafactor", minDimSizeToFactor: 128 };

/** T5 1.1 Base MTL at the paper profiles' batch 128, 512 / 84 tokens, Mesh TF Adafactor. */
const BASE_MTL: MemoryInput = {
  config: PRESETS["t5-v1_1-base"],
  method: "mtl",
  optimizer: OPT,
  batchSize: 128,
  inputLength: 512,
  targetLength: 84,
  dropout: true,
};

/**
 * A buffer meter started before the tiny training step of `method` on preset `name` (batch `b`,
 * `li` input and `lt` target tokens, `train`'s overrides) is built, so that its peak counts the
 * step's weights; restore the meter when done. With `ownEmbeddings`, the model has those stacks'
 * own token tables (as model/t5.ts t5FromTensors makes for such a checkpoint), built as
 * tinyTrainingStep builds the rest.
 */
function meteredStep(
  name: string,
  method: string,
  b: number,
  li: number,
  lt: number,
  methodConfig: unknown,
  train?: Partial<TrainSpec>,
  vocabSize?: number,
  ownEmbeddings?: readonly ("encoder" | "decoder")[],
): { meter: ReturnType<typeof bufferMeter>; t: ReturnType<typeof tinyTrainingStep> } {
  const meter = bufferMeter();
  if (ownEmbeddings !== undefined) {
    // tinyTrainingStep's model, method, tasks, seeds and rows, with the tables.
    const t = methodTrainingStep({
      config: { ...preset(name), vocabSize: vocabSize ?? 256, dropoutRate: 0.1, ownEmbeddings },
      modelSeed: 1,
      method,
      methodConfig,
      tasks: ["a", "b"],
      methodSeed: 3,
      train: { ...DEFAULT_TRAIN, batchSize: b, ...train },
      batchSize: b,
      inputLength: li,
      targetLength: lt,
      where: "memory_test",
    });
    return { meter, t };
  }
  const t = tinyTrainingStep({
    presetName: name,
    ...(vocabSize === undefined ? {} : { vocabSize }),
    method,
    methodConfig,
    b,
    li,
    lt,
    ...(train === undefined ? {} : { train }),
    where: "memory_test",
  });
  return { meter, t };
}

/**
 * The measured peak of one training step (loss and gradients as the trainer computes them,
 * gradient norm, Adafactor update) after a first step made the optimizer slots, counted from the
 * first byte the step's model allocated (weights and slots included), and the estimate; with
 * the backward pass `backprop` installed (`model/backprop.ts`) or tfjs's own.
 */
async function measure(
  backprop: BackpropMode,
  name: string,
  method: string,
  b: number,
  li: number,
  lt: number,
  micro: number,
  methodConfig: unknown = {},
  kernels: KernelSet = "composite",
  more: {
    readonly zLoss?: number;
    readonly labelSmoothing?: number;
    /** The tiny model's vocabulary (default trainer_testing.ts's 256). */
    readonly vocabSize?: number;
    /** The optimizer, run and estimated (default {@link OPT}). */
    readonly optimizer?: OptimizerMemory;
    /** Stacks with their own token table (`T5Config.ownEmbeddings`; default none). */
    readonly ownEmbeddings?: readonly ("encoder" | "decoder")[];
  } = {},
) {
  const { zLoss = 0, labelSmoothing = 0, optimizer = OPT } = more;
  const { meter, t } = meteredStep(
    name,
    method,
    b,
    li,
    lt,
    methodConfig,
    {
      labelSmoothing,
      clipNorm: null,
      ...(micro < b ? { microBatchSize: micro } : {}),
      ...(zLoss > 0 ? { zLoss } : {}),
    },
    more.vocabSize,
    more.ownEmbeddings,
  );
  const { params, varList, options: o } = t;
  const config = t.model.config;
  const byVar = new Map([...params].map(([n, v]) => [v.name, n]));
  const opt = createOptimizer(
    optimizer.kind === "adamw" ? { kind: "adamw", weightDecay: optimizer.weightDecay ?? 0 } : {
      kind: "adafactor",
      ...(optimizer.minDimSizeToFactor === undefined
        ? {}
        : { minDimSizeToFactor: optimizer.minDimSizeToFactor }),
      multiplyByParameterScale: optimizer.multiplyByParameterScale ?? false,
      weightDecay: optimizer.weightDecay ?? 0,
      weightDecayRate: optimizer.weightDecayRate ?? 0,
      beta1: optimizer.beta1 ?? 0,
    },
  );
  let normPeak = 0, updatePeak = 0;
  const step = async () => {
    const batch = t.batch();
    const { value, grads: g } = await lossAndGrads(o, batch, varList, 5);
    const grads = new Map(Object.entries(g).map(([k, v]) => [byVar.get(k) ?? k, v]));
    value.dispose();
    const stepPeak = meter.peak;
    meter.peak = meter.now;
    const norm = globalGradNorm(grads.values());
    await norm.data();
    norm.dispose();
    normPeak = meter.peak;
    meter.peak = meter.now;
    opt.apply(params, grads, 1e-3);
    updatePeak = meter.peak;
    meter.peak = Math.max(stepPeak, normPeak, updatePeak);
    tf.dispose([...grads.values(), batch.inputIds, batch.attentionMask, batch.decoderInputIds]);
    batch.labels.dispose();
  };
  let peak: number;
  let slotBytes = 0;
  const tensors = tf.memory().numTensors;
  if (backprop === "low-memory") assert.ok(installLowMemoryBackprop());
  else uninstallLowMemoryBackprop();
  try {
    await step();
    meter.peak = meter.now;
    await step();
    peak = meter.peak;
    slotBytes = [...opt.slots().values()].reduce((a, t) => a + t.size * 4, 0);
  } finally {
    uninstallLowMemoryBackprop();
    meter.restore();
    opt.dispose();
    t.dispose();
  }
  const input: MemoryInput = {
    config,
    method,
    methodConfig,
    numTasks: 2,
    optimizer,
    batchSize: b,
    microBatchSize: micro,
    inputLength: li,
    targetLength: lt,
    dropout: true,
    kernels,
    backprop,
    ...(zLoss > 0 ? { zLoss } : {}),
    ...(labelSmoothing > 0 ? { labelSmoothing } : {}),
  };
  return {
    peak,
    normPeak,
    updatePeak,
    slotBytes,
    estimate: estimateTrainingMemory(input),
    tensorsBefore: tensors,
  };
}

// Tolerance: the estimate replays the ops of model/t5.ts and of the methods' hooks on shapes,
// index tensors included (the batch's ids and masks, Prompt-Tuning's mask of ones, the position
// buckets, the gathers' indices, the loss's label masks; before they were counted the
// gradient-norm phase read 1.3-5.3 KB under, the norm rows 0.998-0.9996, and each peak row
// 0.0003-0.0015 lower than below); it does not replay scalars (the norm phase's remaining gap,
// about 200 bytes), nor the temporaries tfjs's gradient functions make inside their
// own tidies beyond those the replay names per op (what is left of the gap with the stock
// backward pass: 111-782 KB at the rows below, against 7-294 KB with the low-memory pass, which
// frees each node's inputs' gradients at once).
//
// Measured estimate/measured peak (cpu, deterministic; `HYPERPROMPT_MEMORY_RATIOS=1 deno task
// test benchmarks/memory_test.ts` prints each), stock / low-memory backward pass, since
// the composite attention Softmax's gradient is counted whole (memory.ts T5Replay.softmax: dy·y,
// its row sum, their product and dx; stock tfjs keeps dy·y to the end of the pass): every
// default row 0.997-0.999 / 1.0000-1.0001 (MTL, tiny-relu, Prompt-Tuning at lengths 16 and 100,
// the HyperPrompts, the adapters, z-loss, vocabulary 4096, own token tables; the scratch per-task
// bias 0.997 / 1.0008), Mesh TF's Adafactor (minDimSizeToFactor 128) 0.979 stock, with parameter
// scale and weight decay 0.995 low-memory; wasm+blas 1.0000-1.0001; gradient-norm phase
// 0.9999-1.0000 everywhere. Before (memory.ts at f2ae627 and after ba4c23d): MTL 0.976-0.986 /
// 0.985-1.000 (tiny-relu 0.973 / 0.985), Prompt-Tuning 0.979 / 0.995 (at length 100 0.963 /
// 0.970, where the encoder's Softmax gradient sets the low-memory peak), HyperPrompt-Global
// 0.992 / 1.000, -Share and -Sep 0.986 / 0.994, Vanilla Adapter 0.987 / 1.000, HyperFormer++
// 0.993 / 1.000, z-loss 0.986 / 1.000, vocabulary 4096 0.972 / 0.995-1.000, own token tables
// 0.981-0.986 / 0.990-1.000; wasm+blas (plain wasm, HYPERPROMPT_NO_BLAS=1, within 0.004 of it):
// Vanilla Adapter 0.989, HyperPrompt-Share and -Sep 0.992, z-loss 0.988. Each row 0.1-0.6 points
// lower while the shared lookup's gathered rows were counted freed after the forward pass
// (ba4c23d: gatherRows' Reshape saves them); Prompt-Tuning's stock row 0.974 while its prompt
// was a leaf and 0.977 while Concat's gradient slice of the frozen embedded tokens was not
// counted.
// History: MTL -7 %..-5 % / -9 %..-5 %, Prompt-Tuning -5 % / -7 %, HyperPrompt-Global -2.5 % /
// -2.5 %, Vanilla Adapter -4 % / -5 %, HyperFormer++ -2.5 % / -2.8 % while a Reshape was counted
// saving its input only where nothing else kept it (a364ed6); HyperPrompt-Share and -Sep
// -4.8 %..-5.2 % / -2.4 %..-3.0 % while their local networks were two per-example leaves per
// block (fc7c2f7); HyperPrompt-Global +1 % / +11 % while its hypernetwork was one leaf
// (c21ba88); HyperFormer++ -2 % / -1 % while its Adafactor state was counted unfactored; -21 % /
// -18 % and -27 % / -20 % before the adapters' norms, biases and gathers were modelled.
//
// So a band of 0.96..1.02 (PEAK): the lowest default row (Mesh TF's Adafactor stock, 0.979) keeps
// 1.9 points of margin, while the regressions above (every one 2.5 points or more) fail it; above
// 1.02 the preflight would pick a smaller micro-batch than needed for no reason the replay
// knows of (the highest row reads 1.0008, the scratch per-task bias with the low-memory pass). Rows known to sit lower get their own band, each
// with its reason where it is used (LABEL_SMOOTHING_STOCK). The
// gradient-norm phase (weights, slots, gradients, one square) within 0.99..1.01 (NORM).
/** An allowed range of estimate / measured. */
interface Band {
  readonly lo: number;
  readonly hi: number;
}
const PEAK: Band = { lo: 0.96, hi: 1.02 };
const NORM: Band = { lo: 0.99, hi: 1.01 };
/** Set to `1`, every comparison prints its ratio (the figures this file's comments quote). */
const PRINT_RATIOS = Deno.env.get("HYPERPROMPT_MEMORY_RATIOS") === "1";

function assertClose(what: string, estimate: number, measured: number, band: Band = PEAK) {
  const ratio = estimate / measured;
  if (PRINT_RATIOS) console.log(`estimate/measured ${what}: ${ratio.toFixed(4)}`);
  assert.ok(
    ratio >= band.lo && ratio <= band.hi,
    `${what}: estimate ${estimate} vs measured ${measured} (ratio ${ratio.toFixed(4)}, allowed ` +
      `${band.lo}..${band.hi})`,
  );
}

for (
  const [label, args] of [
    ["mtl tiny-v1_1 b4 32/8", ["tiny-v1_1", "mtl", 4, 32, 8, 4]],
    ["mtl tiny-v1_1 b8 64/16 micro 4", ["tiny-v1_1", "mtl", 8, 64, 16, 4]],
    ["mtl tiny-relu b4 48/12", ["tiny-relu", "mtl", 4, 48, 12, 4]],
    ["hyperprompt_global tiny-v1_1 b8 32/8 micro 2", [
      "tiny-v1_1",
      "hyperprompt_global",
      8,
      32,
      8,
      2,
    ]],
    ["hyperprompt_share tiny-v1_1 b8 32/8 micro 2", [
      "tiny-v1_1",
      "hyperprompt_share",
      8,
      32,
      8,
      2,
    ]],
    ["hyperprompt_sep tiny-v1_1 b8 32/8 micro 2", ["tiny-v1_1", "hyperprompt_sep", 8, 32, 8, 2]],
    ["adapter tiny-v1_1 b4 32/8", ["tiny-v1_1", "adapter", 4, 32, 8, 4]],
    ["hyperformer_pp tiny-v1_1 b8 32/8 micro 2", ["tiny-v1_1", "hyperformer_pp", 8, 32, 8, 2]],
  ] as const
) {
  Deno.test(`memory: estimate within ${PEAK.lo}..${PEAK.hi} of the measured peak, both backward passes (${label})`, async () => {
    const [n, m, b, li, lt, micro] = args;
    const peaks: number[] = [];
    for (const mode of ["stock", "low-memory"] as const) {
      const { peak, normPeak, estimate, slotBytes } = await measure(mode, n, m, b, li, lt, micro);
      peaks.push(peak);
      assertClose(mode, estimate.peak, peak);
      // The gradient-norm phase alone (weights, slots, the batch, gradients, one square):
      // 0.9999-1.0000 (0.998-0.9996 while the batch's index tensors were not counted).
      assertClose(`${mode}: gradient norm`, estimate.phases["gradient norm"], normPeak, NORM);
      // The optimizer's slots (a method's too, factored by their stated shapes) exactly as the
      // optimizer made them (counted unfactored before: HyperFormer++ read 1.158 of them,
      // HyperPrompt-Global 1.032).
      assert.equal(estimate.optimizerState, slotBytes, `${mode}: optimizer state vs slots`);
      // Without the slots, the norm phase (weights, gradients, squares) alone: within -1 %/+2 %.
      // Measured 0.997-0.9996 while the batch's index tensors were not counted (up to 5.3 KB);
      // with a method's variables squared as one tensor (before their shapes were used) the
      // HyperFormer++ row read 1.136 and HyperPrompt-Global's 1.20.
      const norm = (estimate.phases["gradient norm"] - estimate.optimizerState) /
        (normPeak - slotBytes);
      assert.ok(norm >= 0.99 && norm <= 1.02, `${mode}: gradient norm less slots ${norm}`);
    }
    // The low-memory pass measurably lowers the peak (by 36-43 % at these shapes).
    assert.ok(peaks[1]! < 0.8 * peaks[0]!, `low-memory peak ${peaks[1]} vs stock ${peaks[0]}`);
  });
}

Deno.test("memory: at a 4096-token vocabulary (the embedding the largest variable) the op-by-op update's temporaries are counted; cpu, both backward passes", async () => {
  // benchmarks/optim.ts updates each variable op by op in its own tidy on the stock ops (cpu,
  // tfjs-node): 8 (factored) to 10 (unfactored) temporaries of its size at the defaults, more with
  // the parameter scale, a decay term or AdamW (memory.ts opByOpUpdateElems). Counted as 6 of
  // the largest variable's size before, the update phase of tiny-v1_1 at vocabulary 4096 (an
  // unfactored [4096, 64] embedding and lm_head) read 0.78 of the measured (14.95 vs 19.15 MB)
  // and set the peak with the low-memory pass; at 256 it read 0.92 and the backward pass set the
  // peak. Measured now: 1.000 of the update phase (factored, Hugging Face's rule: 0.995, the
  // factored moments' row and column means not counted), so a tolerance of 2 % for it.
  const before = tf.memory().numTensors;
  const V = 4096;
  const runs: [BackpropMode, OptimizerMemory][] = [
    ["stock", OPT],
    ["low-memory", OPT],
    ["low-memory", { kind: "adafactor", multiplyByParameterScale: true, weightDecay: 0.01 }],
    ["low-memory", { kind: "adamw", weightDecay: 0.01 }],
  ];
  for (const [mode, optimizer] of runs) {
    const what = `${mode} ${JSON.stringify(optimizer)}`;
    const { peak, updatePeak, estimate } = await measure(
      mode,
      "tiny-v1_1",
      "mtl",
      4,
      32,
      8,
      4,
      {},
      "composite",
      { vocabSize: V, optimizer },
    );
    assertClose(what, estimate.peak, peak);
    const ratio = estimate.phases.update / updatePeak;
    assert.ok(
      ratio >= 0.98 && ratio <= 1.02,
      `${what}: update phase ${estimate.phases.update} vs ${updatePeak} (${ratio.toFixed(3)})`,
    );
  }
  assert.equal(tf.memory().numTensors, before, "no tensors leaked");
});

/**
 * The update phase's temporaries (its peak beyond weights, optimizer state, gradients and the
 * batch) of a
 * step of batch 2, 8 input and 4 target tokens, MTL's input unless `input` says.
 */
function updateTemporaries(input: Partial<MemoryInput>): number {
  const e = estimateTrainingMemory({
    ...BASE_MTL,
    ...input,
    batchSize: 2,
    inputLength: 8,
    targetLength: 4,
  });
  return e.phases.update - (e.weights + e.optimizerState + e.gradients + e.batchTensors);
}

Deno.test("memory: on the fused sets the variables their in-place updates decline are counted as updated op by op", async () => {
  const base = (config: T5Config, optimizer: OptimizerMemory, kernels: KernelSet) =>
    updateTemporaries({ config, optimizer, kernels });
  // webgpu: an unfactored variable over ADAFACTOR_UNFACTORED_MAX (a d-64 model's [32128, 64]
  // embedding at minDimSizeToFactor 128) runs op by op: 10 temporaries of its size
  // (unfactored, memory.ts opByOpUpdateElems); before, none were counted.
  const big = { ...PRESETS["tiny-v1_1"], vocabSize: 32128 };
  assert.ok(32128 * 64 > ADAFACTOR_UNFACTORED_MAX);
  assert.equal(base(big, OPT, "fused"), 10 * 32128 * 64 * 4);
  assert.equal(base(PRESETS["tiny-v1_1"], OPT, "fused"), 0, "[4096, 64] is updated in place");
  // wasm: a factored matrix whose columns are not a multiple of 4 (T5 1.1 small's [32, 6]
  // relative attention bias, factored at the default rule) runs op by op: 8 of its size.
  const small = PRESETS["t5-v1_1-small"];
  const hf: OptimizerMemory = { kind: "adafactor" };
  assert.equal(base(small, hf, "fused-wasm"), 8 * 32 * 6 * 4);
  assert.equal(base(small, hf, "fused"), 0, "webgpu takes any matrix");
  assert.equal(base(small, OPT, "fused-wasm"), 0, "[32, 6] unfactored at 128: in place");
  assert.equal(base(small, { kind: "adamw" }, "fused-wasm"), 0);
  // The premise on wasm: the [32, 6] matrix is declined by the fused update, a [32, 8] one not.
  const info = await selectBackend("wasm", { log: () => {} });
  try {
    const before = tf.memory().numTensors;
    for (const [cols, path] of [[6, "op by op"], [8, "in place"]] as const) {
      const p = tf.tidy(() => tf.variable(tf.ones([32, cols])));
      const g = tf.onesLike(p);
      const opt = createOptimizer({ kind: "adafactor" });
      updatePathsTaken(true);
      opt.apply(new Map([["w", p]]), new Map([["w", g]]), 1e-3);
      assert.deepEqual(
        updatePathsTaken(true).adafactorFactored,
        [path],
        `${info.name} [32, ${cols}]`,
      );
      tf.dispose([p, g, ...opt.slots().values()]);
    }
    assert.equal(tf.memory().numTensors, before, "no tensors leaked");
  } finally {
    await tf.setBackend("cpu");
  }
});

Deno.test("memory: a method's variables are counted in the update phase by their stated shapes, as the backbone's", () => {
  // The update's temporaries beyond weights, slots and gradients (memory.ts opByOpUpdateElems of
  // the variable with the most, among those updated op by op), with the backbone frozen so that
  // only the method's variables are updated.
  const tmp = (
    method: string,
    methodConfig: Record<string, unknown>,
    optimizer: OptimizerMemory,
    kernels: KernelSet,
  ) =>
    updateTemporaries({
      config: PRESETS["tiny-v1_1"],
      method,
      methodConfig: { ...methodConfig, freezeBackbone: "all" },
      numTasks: 2,
      optimizer,
      kernels,
    });
  const hf: OptimizerMemory = { kind: "adafactor" };
  // Prompt-Tuning's one [T, l, d] = [2, 16, 64] variable. Unfactored at minDimSizeToFactor 128:
  // 10 of its size op by op (before: 6), in place on webgpu and wasm. Factored (Hugging Face's
  // rule) it has three axes, which no fused update takes: 8 of its size on every kernel set
  // (before: 6 on the stock ops, none on the fused sets).
  const prompt = 2 * 16 * 64 * 4;
  const pt = { init: "uniform", length: 16 };
  assert.equal(tmp("prompt_tuning", pt, OPT, "composite"), 10 * prompt);
  assert.equal(tmp("prompt_tuning", pt, OPT, "fused"), 0);
  assert.equal(tmp("prompt_tuning", pt, OPT, "fused-wasm"), 0);
  for (const kernels of ["composite", "fused", "fused-wasm"] as const) {
    assert.equal(tmp("prompt_tuning", pt, hf, kernels), 8 * prompt, kernels);
  }
  // HyperFormer++ with a projector of width 6: its factored [3·t', 6] first layer has a column
  // count that is not a multiple of 4, which wasm's in-place update declines (8 of its size op
  // by op); webgpu takes it; at width 8 wasm takes it too.
  const hpp = { reduction: 8, taskEmbeddingDim: 8, projectedDim: 8 };
  assert.equal(tmp("hyperformer_pp", { ...hpp, hiddenDim: 6 }, hf, "fused-wasm"), 8 * 24 * 6 * 4);
  assert.equal(tmp("hyperformer_pp", { ...hpp, hiddenDim: 6 }, hf, "fused"), 0);
  assert.equal(tmp("hyperformer_pp", { ...hpp, hiddenDim: 8 }, hf, "fused-wasm"), 0);
  // With a first moment every variable runs op by op: the largest method variable's 10
  // (factored, + 2 for the moment) of the Vanilla Adapter's [T, d, a] = [2, 64, 8] matrices.
  assert.equal(
    tmp("adapter", { reduction: 8 }, { kind: "adafactor", beta1: 0.9 }, "fused"),
    10 * 2 * 64 * 8 * 4,
  );
});

/**
 * The saved activations a step of tiny-v1_1 is estimated to keep: batch 2, 16 input and 4 target
 * tokens, no dropout, composite kernels (the closed-form method tests below).
 */
function tinySavedActivations(
  method: string,
  methodConfig: Record<string, unknown>,
  numTasks: number,
): number {
  return estimateTrainingMemory({
    ...BASE_MTL,
    config: PRESETS["tiny-v1_1"],
    method,
    methodConfig,
    numTasks,
    batchSize: 2,
    inputLength: 16,
    targetLength: 4,
    dropout: false,
    kernels: "composite",
  }).savedActivations;
}

Deno.test("memory: HyperFormer++'s task projector is replayed op by op, its activations per (stack, layer, position) kept", () => {
  // model/methods/hyperformer_pp.ts generate() runs the projector again for every adapter:
  // fc1's output (saved by its bias Add), the Add's (saved by ReLU) and ReLU's (saved by fc2's
  // matMul) are [u, hiddenDim] each, u = 2 tasks present. Counted as one op of the projector's
  // parameters before (nothing of hiddenDim saved), the estimate of the measured row above
  // (b8 32/8 micro 2, stock pass) missed 79 KB of saved tensors and 50 KB of gradients more
  // than MTL's at the same shapes; with the ops replayed its gap to the measured peak no longer
  // changes with hiddenDim (128 or 512) or projectedDim (64 or 256): -363068 bytes stock and
  // -260276 low-memory at each (Adafactor state counted factored; MTL: -345276, -276532).
  const cfg = PRESETS["tiny-v1_1"];
  const saved = (hiddenDim: number) => tinySavedActivations("hyperformer_pp", { hiddenDim }, 2);
  const uses = 2 * (cfg.numLayers + cfg.numDecoderLayers);
  assert.equal(saved(160) - saved(128), uses * 3 * 2 * 32 * 4);
});

Deno.test("memory: HyperPrompt-Share's and -Sep's local networks are replayed op by op, their activations per block kept", () => {
  // model/methods/_hyperprompt.ts hyperPrompt, per conditioned block, keys and values: P·D
  // [u·l, b] (saved by ReLU, and by the bias Add when there is one), the Add's output (saved by
  // ReLU) and ReLU's (saved by ·U). Counted as two per-example [b, l, h·d_kv] leaves per block
  // before (nothing of the bottleneck saved), the rows of the measured test above read 0.952 /
  // 0.976 (Share) and 0.948 / 0.970 (Sep) of the peak, stock / low-memory; now 0.982 / 0.990.
  const cfg = PRESETS["tiny-v1_1"];
  const [u, l] = [2, 16];
  const saved = (method: string, bottleneck: number, biases: boolean) =>
    tinySavedActivations(method, { bottleneck, biases, length: l }, u);
  const blocks = cfg.numLayers + cfg.numDecoderLayers;
  for (const method of ["hyperprompt_share", "hyperprompt_sep"]) {
    for (const [biases, perUnit] of [[false, 2], [true, 3]] as const) {
      assert.equal(
        saved(method, 24, biases) - saved(method, 16, biases),
        blocks * 2 * perUnit * u * l * 8 * 4,
        `${method} biases ${biases}`,
      );
    }
  }
});

Deno.test("memory: HyperPrompt's relative prefix position bias is replayed per conditioned block (closed form; measured on cpu, low-memory pass)", async () => {
  // positionBias "relative" (model/methods/_hyperprompt.ts): model/t5.ts selfAttention looks the
  // prefix columns' bias up in the stack's table in every conditioned block (gatherRows, reshape,
  // transpose, expandDims: the gather's [lq, l, h] and the transpose's [h, lq, l] kept by the
  // reshapes); "zero" joins one tf.zeros [h, lq, l] (kept by the Concat). So per block one
  // [h, lq, l] more is saved. The estimate joined zeros for both before: 0 more.
  const cfg = PRESETS["tiny-v1_1"];
  const [li, lt, l, h] = [16, 4, 16, cfg.numHeads]; // tinySavedActivations' shapes
  // Per block [h, lq, l] float32 and the int32 buckets [lq, l] the gather saves.
  const want = 4 * (h + 1) * l * (cfg.numLayers * li + cfg.numDecoderLayers * lt);
  for (const method of ["hyperprompt_share", "hyperprompt_sep", "hyperprompt_global"]) {
    const saved = (positionBias: string) =>
      tinySavedActivations(method, { positionBias, length: l }, 2);
    assert.equal(saved("relative") - saved("zero"), want, method);
  }
  // Measured (Share, b8 32/8 micro 2, backbone trained): what "relative" adds to the peak,
  // estimated and measured: 25856 and 25856 bytes (stock 47104 and 47104). The int32 bucket
  // indices [lq, l] per block (5120 bytes) are part of it: while the estimate left them out
  // (as it did every index tensor), it read 20736 (stock 41984). So within 256 bytes (64 int32
  // elements of slack), which leaving the buckets out fails.
  const before = tf.memory().numTensors;
  const [b, mi, mt, micro] = [8, 32, 8, 2];
  const indices = 4 * l * (cfg.numLayers * mi + cfg.numDecoderLayers * mt);
  for (const mode of ["stock", "low-memory"] as const) {
    const run = (positionBias: string) =>
      measure(mode, "tiny-v1_1", "hyperprompt_share", b, mi, mt, micro, { positionBias });
    const zero = await run("zero"), rel = await run("relative");
    assertClose(`${mode} relative`, rel.estimate.peak, rel.peak);
    const measured = rel.peak - zero.peak, estimated = rel.estimate.peak - zero.estimate.peak;
    assert.ok(measured > indices, `${mode}: premise: relative adds ${measured} bytes`);
    assert.ok(
      Math.abs(measured - estimated) <= 256,
      `${mode} relative: estimated +${estimated} bytes, measured +${measured} (of which ` +
        `bucket indices ${indices})`,
    );
  }
  assert.equal(tf.memory().numTensors, before, "no tensors leaked");
});

Deno.test("memory: the adapters' reshapes keep HyperFormer++'s generated W_down and the pre-activation", () => {
  // taskAdapters (model/methods/_tensor.ts) reshapes the generated W_down ([u, d·a] → [u, d, a])
  // before transposing it, and the pre-activation ([rows, u·a] → [b, n, u·a]) before the mask;
  // tfjs's Reshape saves its input, which keeps both (nothing else saves them). Per adapter and
  // element of a, u = 2 tasks present, b = 2: the generated W_down and W_up (matMul and bias-Add
  // outputs: 4d), W_down transposed (d), b_down (2), the pre-activation's matMul and Add outputs,
  // the masked one and gelu_new's output (4 rows), the mask (b). Before the reshapes were
  // counted, the sum missed the Add outputs of W_down and the pre-activation (40960 bytes for
  // 51712), and the row above (b8 32/8 micro 2, stock) fell 95 KB further below its measured
  // peak at reduction 4 than at 32 (gaps -458044 and -363068 bytes; ratios 0.978, 0.974); now
  // -351548 and -349756 (0.983, 0.975), as MTL's -345276.
  const cfg = PRESETS["tiny-v1_1"];
  // tinySavedActivations' shapes: batch 2, 16 / 4 tokens; 2 tasks present.
  const [b, li, lt, u] = [2, 16, 4, 2];
  const saved = (reduction: number) => tinySavedActivations("hyperformer_pp", { reduction }, u);
  const d = cfg.dModel;
  let perA = 0;
  for (const [layers, len] of [[cfg.numLayers, li], [cfg.numDecoderLayers, lt]] as const) {
    perA += 2 * layers * (5 * d + 2 + 4 * b * len + b);
  }
  // a = 2 at reduction 32, 4 at 16.
  assert.equal(saved(16) - saved(32), 4 * u * 2 * perA);
});

Deno.test("memory: HyperFormer++'s generated biases and LayerNorm rows are used as generated, not reshaped", () => {
  // model/methods/hyperformer_pp.ts reshapes only the generated weights ([u, d, a], [u, a, d]);
  // b_down, b_up, γ and β go to taskAdapters as the generators made them ([u, width]). With one
  // task present (u = 1) the adapter adds b_down and b_up (an Add saves both inputs) and the
  // conditional LayerNorm (model/methods/_tensor.ts layerNorm, a customGrad) saves x̂, σ and γ,
  // not β. So the conditional LayerNorm adds per adapter x̂ (rows·d), σ (rows), γ's and β's
  // generator products (saved by their bias Adds) and γ's row: rows·d + rows + 3d. The replay
  // reshaped every generated row (a Reshape saves its input), which kept β's row too (+d per
  // adapter) and put four reshape nodes per adapter that the code does not run into the
  // backward walk (on webgpu its deferred frees are counted in nodes).
  const cfg = PRESETS["tiny-v1_1"];
  const [b, li, lt] = [2, 16, 4];
  const d = cfg.dModel;
  const saved = (conditionalLayerNorm: boolean) =>
    tinySavedActivations("hyperformer_pp", { conditionalLayerNorm }, 1);
  let want = 0;
  for (const [layers, len] of [[cfg.numLayers, li], [cfg.numDecoderLayers, lt]] as const) {
    const rows = b * len;
    want += 2 * layers * (rows * d + rows + 3 * d) * 4;
  }
  assert.equal(saved(true) - saved(false), want);
});

Deno.test("memory: prompt_tuning estimate within tolerance, both backward passes, no tensors leaked", async () => {
  const before = tf.memory().numTensors;
  for (const mode of ["stock", "low-memory"] as const) {
    const { peak, estimate } = await measure(mode, "tiny-v1_1", "prompt_tuning", 4, 32, 8, 4, {
      init: "uniform",
      length: 16,
    });
    assertClose(mode, estimate.peak, peak);
  }
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("memory: Prompt-Tuning at its default length 100 (the encoder's Softmax gradient sets the peak) within 0.5 % of the measured peak, both backward passes", async () => {
  // At length 100 the encoder (16 + 100 positions) makes the self-attention Softmax's gradient
  // the low-memory pass's peak: dy·y, sum(dy·y), its product with y and dx, 3·s + s/lk beyond dy
  // (s = b·h·le²), of which the replay counted 2·s (0.9704 here; 0.982 in a real run, tiny-v1_1
  // b8 48 / 8); stock tfjs keeps every dy·y to the end of the pass, one s per encoder layer
  // uncounted (0.9632). Counted, the rows read 1.0000 (88 bytes under: scalars) and 0.9997
  // (8 KB under: the loss's Sum gradient's ones, [tokens, vocab], which stock tfjs keeps too),
  // so within 0.5 %, which either omission fails; the length-16 row above read 0.9948 / 0.9791
  // with them missing, inside PEAK.
  const before = tf.memory().numTensors;
  const band: Band = { lo: 0.995, hi: 1.005 };
  for (const mode of ["stock", "low-memory"] as const) {
    const { peak, estimate } = await measure(mode, "tiny-v1_1", "prompt_tuning", 2, 16, 4, 2, {
      init: "uniform",
      length: 100,
    });
    assertClose(mode, estimate.peak, peak, band);
  }
  assert.equal(tf.memory().numTensors, before, "no tensors leaked");
});

Deno.test("memory: Prompt-Tuning's Concat gradient slice of the frozen embedded tokens is counted (stock: kept to the end of the pass)", async () => {
  // tfjs's Concat gradient splits dy into every input's slice, the embedded tokens' too though a
  // frozen backbone leaves them off the gradient's path; stock tfjs keeps that slice ([b, li, d])
  // to the end of the backward pass. Two runs with the same encoder length li + l = 48 (24 + 24,
  // 40 + 8): the encoder after the Concat is the same, the embedded tokens 16 rows longer and
  // the prompt 16 shorter. What the second adds, measured and estimated, is the same to the byte
  // (stock -7680, low-memory 512), index tensors included: the batch's input ids and mask and the
  // shared lookup's joined ids (b·16·4 bytes each) 16 rows longer, the prompt mask's ones
  // (tf.ones [b, l]) 16 shorter: +512. While the estimate left them out it read 512 under
  // (measured - estimated - 512 was within 1 KB); stock read 16896 under (+ the slice's
  // b·16·d·4 = 16384) while the slice was not counted. So within 256 bytes, which leaving the
  // index tensors out fails.
  const before = tf.memory().numTensors;
  const [b, lt] = [4, 8];
  for (const mode of ["stock", "low-memory"] as const) {
    const run = (li: number, length: number) =>
      measure(mode, "tiny-v1_1", "prompt_tuning", b, li, lt, b, { init: "uniform", length });
    const short = await run(24, 24), long = await run(40, 8);
    assertClose(`${mode} 40 + 8`, long.estimate.peak, long.peak);
    const measured = long.peak - short.peak;
    const estimated = long.estimate.peak - short.estimate.peak;
    assert.ok(
      Math.abs(measured - estimated) <= 256,
      `${mode}: longer input, shorter prompt: estimated ${estimated} bytes, measured ${measured}`,
    );
  }
  assert.equal(tf.memory().numTensors, before, "no tensors leaked");
});

Deno.test("memory: a stack's own token table (two lookups, not the shared one) within tolerance of the measured peak, both backward passes", async () => {
  // A checkpoint whose per-stack table is not shared.weight's storage (config.ownEmbeddings,
  // set by model/t5.ts t5FromTensors): sharedLookup declines, and the encoder and the decoder
  // each gather from their own table (each table's gradient its own scatter). Both tables own
  // (tiny-v1_1, untied: shared.weight unused, untrained), and the encoder's alone (tiny-relu,
  // tied: the decoder's lookup and the output projection share shared.weight's gradient). What
  // the tables add to the peak (MTL b4 32/8, against the same model without them), measured
  // and estimated, is the same to the byte: tiny-v1_1 +179584 stock / +212352 low-memory,
  // tiny-relu +48512 / +81280. With the replay's one shared lookup kept for them (their
  // weights, gradients and slots counted, as before), the estimate added -141056 / +188416 and
  // +131072 / +131072: off by 24-321 KB, while each row stayed inside PEAK (0.9647-0.9973),
  // so only this difference catches it; within 1 KB.
  const before = tf.memory().numTensors;
  const cases = [
    ["tiny-v1_1", ["encoder", "decoder"]],
    ["tiny-relu", ["encoder"]],
  ] as const;
  for (const [name, own] of cases) {
    for (const mode of ["stock", "low-memory"] as const) {
      const run = (more: { ownEmbeddings?: readonly ("encoder" | "decoder")[] }) =>
        measure(mode, name, "mtl", 4, 32, 8, 4, {}, "composite", more);
      const sep = await run({ ownEmbeddings: own }), plain = await run({});
      assertClose(`${name} ${own} ${mode}`, sep.estimate.peak, sep.peak);
      const measured = sep.peak - plain.peak;
      const estimated = sep.estimate.peak - plain.estimate.peak;
      assert.ok(
        Math.abs(measured - estimated) <= 1024,
        `${name} ${own} ${mode}: own tables estimated +${estimated} bytes, measured +${measured}`,
      );
    }
  }
  assert.equal(tf.memory().numTensors, before, "no tensors leaked");
});

Deno.test("memory: z-loss on cpu (stock ops, both backward passes) and wasm (folded into the gradient kernel) within tolerance of the measured peak", async () => {
  // Prompt-Tuning's profiles train with zLoss 1e-4. On the stock ops it adds lse², z·lse² and a
  // sum per target token (no [tokens, vocab] tensor: the log-sum-exp's gradient is the same); on
  // wasm the gradient kernel folds its term in (model/fused.ts LSE_GRAD_IN_KERNEL), so the same.
  // What it adds, measured and estimated (cpu stock 644 and 644 bytes, low-memory 388 and 388;
  // wasm 516 and 644, at 4 × 8 = 32 tokens of 256 logits): not one tensor of the logits' size,
  // and the estimate within two [tokens] float32 tensors of the measured.
  const tokens = 4 * 8, full = tokens * 256 * 4;
  const check = async (what: string, mode: BackpropMode, kernels: KernelSet) => {
    const args = ["tiny-v1_1", "mtl", 4, 32, 8, 4, {}, kernels] as const;
    const z = await measure(mode, ...args, { zLoss: 1e-4 });
    const plain = await measure(mode, ...args);
    assertClose(`${what} zLoss`, z.estimate.peak, z.peak);
    const measured = z.peak - plain.peak, estimated = z.estimate.peak - plain.estimate.peak;
    assert.ok(measured >= 0 && measured < full, `${what}: z-loss measured +${measured} bytes`);
    assert.ok(
      Math.abs(estimated - measured) <= 2 * tokens * 4,
      `${what}: z-loss estimated +${estimated} bytes, measured +${measured}`,
    );
  };
  const before = tf.memory().numTensors;
  for (const mode of ["stock", "low-memory"] as const) {
    await check(`cpu ${mode}`, mode, "composite");
  }
  assert.equal(tf.memory().numTensors, before, "no tensors leaked");
  const info = await selectBackend("wasm", { log: () => {} });
  try {
    const kernels: KernelSet = info.name === "wasm+blas" ? "fused-wasm-blas" : "fused-wasm";
    await check(info.name, "low-memory", kernels);
  } finally {
    await tf.setBackend("cpu");
  }
});

// Logits-dominated shapes (8 × 2 / 32 tokens of 1024 logits, each [tokens, vocab] 1 MiB): with the
// stock backward pass the estimate reads 0.9596 of the measured peak, 1.34 MB (1.28 of those
// tensors) under, with or without label smoothing (low-memory: 0.9993, 13 KB under; 0.9575 and
// 0.995 before the shared lookup's gathered rows were counted kept, ba4c23d). The stock pass's
// gap grows with the logits (MTL's at 256 logits: 212 KB), so some temporary of the loss's
// gradient at that size is not replayed (not attributed op by op); the band keeps 0.96 points
// of margin under it.
const LABEL_SMOOTHING_STOCK: Band = { lo: 0.95, hi: PEAK.hi };

Deno.test("memory: label smoothing on cpu (stock ops) within tolerance of the measured peak, both backward passes", async () => {
  // model/t5.ts crossEntropyLoss on the stock ops adds ε·(lse − mean(x)). Measured at 8 × 2 / 32
  // tokens of 1024 logits (the logits the largest tensors): label smoothing 0.1 adds 9224 bytes
  // stock and 6156 low-memory, estimated 8200 and 6152: the [tokens] terms only, since Mean's
  // three [tokens, vocab] in its gradient come first in the backward pass, when no other
  // gradient of the logits is alive, and do not reach the peak; the estimate within two [tokens]
  // float32 tensors of the measured.
  const V = 1024, tokens = 8 * 32, full = tokens * V * 4;
  const before = tf.memory().numTensors;
  for (const mode of ["stock", "low-memory"] as const) {
    const args = ["tiny-v1_1", "mtl", 8, 2, 32, 8, {}, "composite"] as const;
    const ls = await measure(mode, ...args, { labelSmoothing: 0.1, vocabSize: V });
    const plain = await measure(mode, ...args, { vocabSize: V });
    const band = mode === "stock" ? LABEL_SMOOTHING_STOCK : PEAK;
    assertClose(`${mode} labelSmoothing`, ls.estimate.peak, ls.peak, band);
    assertClose(`${mode} plain`, plain.estimate.peak, plain.peak, band);
    const measured = ls.peak - plain.peak, estimated = ls.estimate.peak - plain.estimate.peak;
    assert.ok(measured >= 0 && measured < full, `${mode}: label smoothing measured +${measured}`);
    assert.ok(
      Math.abs(estimated - measured) <= 2 * tokens * 4,
      `${mode}: label smoothing estimated +${estimated} bytes, measured +${measured}`,
    );
  }
  assert.equal(tf.memory().numTensors, before, "no tensors leaked");
});

Deno.test("memory: label smoothing costs the stock ops a few [tokens] at the peak, the fused kernels nothing", () => {
  // T5 1.1 Base MTL, 32 × 16 / 84 tokens (the short input makes the logits' gradient the
  // backward peak). Mean's gradient (ones, product, quotient: three [tokens, vocab] at once) is
  // the first node of the pass, when nothing else of the logits' size is alive, and stays below
  // the log-sum-exp's gradient nodes (Max's: its mask, the product and the summed gradient
  // beside the kept ones), as measured on cpu above; the fused kernels take ε as an attribute.
  const run: MemoryInput = { ...BASE_MTL, batchSize: 32, inputLength: 16 };
  const tokens = 32 * 84, full = tokens * 32128 * 4;
  for (const kernels of ["fused", "fused-wasm", "fused-wasm-blas", "composite"] as const) {
    for (const backprop of ["stock", "low-memory"] as const) {
      const base = estimateTrainingMemory({ ...run, kernels, backprop });
      const ls = estimateTrainingMemory({ ...run, kernels, backprop, labelSmoothing: 0.1 });
      const added = ls.peak - base.peak;
      if (kernels === "composite") {
        const what = `${kernels} ${backprop}: label smoothing +${added} bytes`;
        assert.ok(added > 0 && added <= 10 * tokens * 4 && added < full, what);
      } else assert.equal(added, 0, `${kernels} ${backprop}`);
    }
  }
  for (const bad of [-0.1, 1, NaN]) {
    assert.throws(
      () => estimateTrainingMemory({ ...run, labelSmoothing: bad }),
      new RegExp(`field "labelSmoothing" must be a number in \\[0, 1\\), got ${bad}`),
    );
  }
});

Deno.test("memory: z-loss adds four [tokens, vocab] temporaries to the backward pass only where the fused gradient does not fold it", () => {
  // Prompt-Tuning on T5 1.1 Base, 32 × 16 / 84 tokens (the short input makes the logits' gradient
  // the backward peak; at paper-base's 512 input tokens the encoder's attention gradients are,
  // and the temporaries, transient at the start of the pass, do not move it).
  const run: MemoryInput = { ...BASE_MTL, method: "prompt_tuning", batchSize: 32, inputLength: 16 };
  const tokens = 32 * 84, full = tokens * 32128 * 4;
  for (const kernels of ["fused", "fused-wasm", "fused-wasm-blas", "composite"] as const) {
    // Folded (webgpu and wasm: model/fused.ts LSE_GRAD_IN_KERNEL) or stock ops: a few [tokens].
    const base = estimateTrainingMemory({ ...run, kernels });
    const z = estimateTrainingMemory({ ...run, kernels, zLoss: 1e-4 });
    const added = z.peak - base.peak;
    assert.ok(added >= 0 && added <= 8 * tokens * 4, `${kernels}: z-loss +${added} bytes`);
  }
  // A backend whose kernel leaves the term to the registered gradient (webgpu and wasm before
  // they folded it): the kernel's dx, Sub, Exp, Mul and Add at once, where the pass had the dx.
  const wasm: MemoryInput = { ...run, kernels: "fused-wasm" };
  const inKernel = LSE_GRAD_IN_KERNEL as Set<string>;
  inKernel.delete("wasm");
  let unfolded;
  try {
    unfolded = estimateTrainingMemory({ ...wasm, zLoss: 1e-4 });
  } finally {
    inKernel.add("wasm");
  }
  const added = unfolded.peak - estimateTrainingMemory(wasm).peak;
  assert.ok(added > 3.9 * full && added <= 4 * full + 8 * tokens * 4, `unfolded: +${added} bytes`);
  assert.throws(
    () => estimateTrainingMemory({ ...run, zLoss: -1 }),
    /field "zLoss" must be a finite number >= 0, got -1/,
  );
});

Deno.test("memory: micro-batches shrink activations, add an accumulator; state rules", () => {
  const base = BASE_MTL;
  const full = estimateTrainingMemory(base);
  const half = estimateTrainingMemory({ ...base, microBatchSize: 64 });
  assert.equal(full.accumulator, 0);
  assert.equal(half.accumulator, half.gradients);
  // activations are linear in the rows of a pass
  const ratio = half.savedActivations / full.savedActivations;
  assert.ok(Math.abs(ratio - 0.5) < 0.01, `saved activations ratio ${ratio}`);
  // T5 1.1 Base: 247,577,856 parameters (published), fp32
  assert.equal(full.weights, 247_577_856 * 4);
  assert.equal(full.params.trained, 247_577_856);
  // AdamW: two moments of every trained parameter
  const adam = estimateTrainingMemory({ ...base, optimizer: { kind: "adamw" } });
  assert.equal(adam.optimizerState, 2 * 247_577_856 * 4);
  // Adafactor (Mesh TF rule): the embedding [32128, 768] keeps 32128 + 768 values
  assert.ok(full.optimizerState < 0.01 * full.weights);
  // a frozen backbone (Prompt-Tuning) has no backbone gradients
  const pt = estimateTrainingMemory({ ...base, method: "prompt_tuning", numTasks: 8 });
  assert.ok(pt.gradients < 0.01 * pt.weights);
  // Its gradient norm squares the prompts (before, only backbone variables were counted there,
  // so a frozen backbone's norm phase held no square at all).
  assert.equal(
    pt.phases["gradient norm"] - pt.weights - pt.optimizerState - pt.gradients - pt.batchTensors,
    pt.gradients,
  );
  assert.throws(
    () => estimateTrainingMemory({ ...base, microBatchSize: 48 }),
    /microBatchSize" 48 does not divide "batchSize" 128/,
  );
  // The default is the low-memory backward pass (what selectBackend installs); tfjs's own keeps
  // every intermediate's gradient: a larger backward phase, the rest unchanged.
  const stock = estimateTrainingMemory({ ...base, backprop: "stock" });
  assert.deepEqual(estimateTrainingMemory({ ...base, backprop: "low-memory" }), full);
  assert.ok(stock.phases.backward > 1.5 * full.phases.backward);
  assert.equal(stock.phases.forward, full.phases.forward);
  assert.equal(stock.savedActivations, full.savedActivations);
  assert.throws(
    () => estimateTrainingMemory({ ...base, backprop: "fast" as "stock" }),
    /field "backprop" must be "low-memory" or "stock", got "fast"/,
  );
  // webgpu's submit batch: a freed buffer waits for its command buffer, so more dispatches per
  // command buffer hold more of the backward pass's gradients (the default is the kernels' own).
  assert.deepEqual(estimateTrainingMemory({ ...base, submitBatch: DEFAULT_SUBMIT_BATCH }), full);
  const few = estimateTrainingMemory({ ...base, submitBatch: 15 });
  const many = estimateTrainingMemory({ ...base, submitBatch: 256 });
  assert.ok(few.phases.backward < full.phases.backward, "15 < 64");
  assert.ok(many.phases.backward > full.phases.backward, "256 > 64");
  // The forward pass's frees (a sublayer's tidy) wait for their command buffer too.
  assert.ok(few.phases.forward < full.phases.forward, "forward: 15 < 64");
  assert.ok(many.phases.forward > full.phases.forward, "forward: 256 > 64");
  // The composite set (cpu, tfjs-node) frees at once: no submit batch.
  const cpu = { ...base, kernels: "composite" as const };
  assert.deepEqual(
    estimateTrainingMemory({ ...cpu, submitBatch: 256 }),
    estimateTrainingMemory(cpu),
  );
  assert.throws(
    () => estimateTrainingMemory({ ...base, submitBatch: 0 }),
    /submitBatch must be a positive integer, got 0/,
  );
});

Deno.test("memory: webgpu's forward pass frees a sublayer's buffers one command batch late (adapters at paper-base)", () => {
  for (const method of ["mtl", "adapter", "hyperformer_pp"]) {
    const run: MemoryInput = { ...BASE_MTL, method, numTasks: 8 };
    const e = estimateTrainingMemory(run);
    // A submit batch longer than the forward pass's buffers (about 2,000 here) frees nothing
    // before the pass ends: every buffer it makes is alive at its end (the old forward model).
    const never = estimateTrainingMemory({ ...run, submitBatch: 1e6 });
    const fixed = e.weights + e.optimizerState + e.batchTensors;
    // What the tape saves stays; at 64 dispatches a freed buffer is back within a sublayer or two.
    assert.ok(e.forwardActivations >= e.savedActivations, method);
    assert.ok(e.forwardActivations < never.forwardActivations, method);
    assert.equal(e.phases.forward, fixed + e.forwardActivations, method);
    // Measured on the software Vulkan adapter (tiny-v1_1): the adapters' forward peak was 0.72-0.78
    // of the never-freeing model, which made their forward pass the estimate's peak (199.7 GB);
    // their backward pass (143.7 GB) sets it now, and MTL's (127.7 GB) is unchanged.
    if (method !== "mtl") assert.ok(never.phases.forward > 1.3 * e.phases.backward, method);
    assert.equal(e.peakPhase, "backward", method);
    assert.ok(
      e.phases.forward < 0.95 * e.phases.backward,
      `${method}: forward well below backward`,
    );
  }
});

Deno.test("memory: largestFittingMicroBatch picks the largest divisor that fits", () => {
  const run = BASE_MTL;
  const dev = 80e9;
  const m = largestFittingMicroBatch(run, dev);
  assert.ok(m !== undefined && 128 % m === 0);
  assert.ok(estimateTrainingMemory({ ...run, microBatchSize: m }).peak <= 0.9 * dev);
  const next = [...Array(128).keys()].map((i) => i + 1).find((k) => k > m && 128 % k === 0)!;
  assert.ok(estimateTrainingMemory({ ...run, microBatchSize: next }).peak > 0.9 * dev);
  assert.equal(largestFittingMicroBatch(run, 1e9), undefined);
  // A cap: the largest divisor of the batch at or below it (3 is no divisor of 128: 2).
  assert.equal(largestFittingMicroBatch(run, 1e12, 0.1, 3), 2);
  assert.equal(largestFittingMicroBatch(run, 1e12, 0.1, 1000), 128, "a cap above the batch");
  // Bad arguments are errors naming them, not "not even one row fits" (a cap of 0 tried nothing;
  // a margin of 1 or more fits nothing, a negative one more than the device).
  assert.throws(
    () => largestFittingMicroBatch(run, dev, 0.1, 0),
    /field "maxMicroBatch" must be a positive integer, got 0/,
  );
  for (const margin of [1, -0.1, NaN]) {
    assert.throws(
      () => largestFittingMicroBatch(run, dev, margin),
      /margin must be a fraction of the device's memory in \[0, 1\), got/,
    );
  }
});

Deno.test("memory: Adafactor's first moment (beta1 > 0) is counted for the method's variables too", () => {
  for (const method of ["mtl", "prompt_tuning", "adapter"]) {
    const run: MemoryInput = { ...BASE_MTL, method, numTasks: 8, inputLength: 16, targetLength: 4 };
    const plain = estimateTrainingMemory(run);
    const withM = estimateTrainingMemory({ ...run, optimizer: { ...OPT, beta1: 0.9 } });
    // One full-size moment per trained element, backbone and method alike (Prompt-Tuning trains
    // only its prompts: before, their first moment was left out).
    assert.equal(withM.optimizerState - plain.optimizerState, plain.gradients, method);
  }
  assert.throws(
    () => estimateTrainingMemory({ ...BASE_MTL, bytesPerElement: 0 }),
    /field "bytesPerElement" must be a positive integer, got 0/,
  );
});

Deno.test("memory: globalGradNorm equals the one-tidy formula, keeps one square alive, leaks nothing", async () => {
  // Gradient-like tensors of unequal sizes (the largest 3,000 elements).
  const sizes = [3000, 1200, 7, 1, 640];
  const grads = sizes.map((n, k) =>
    tf.tidy(() => tf.sin(tf.mul(tf.range(0, n, 1, "float32"), 0.37 + k)))
  );
  const before = tf.memory().numTensors;
  const meter = bufferMeter();
  let peakNew: number, peakOld: number, vNew: number, vOld: number;
  try {
    const base = meter.now;
    const a = globalGradNorm(grads);
    peakNew = meter.peak - base;
    vNew = (await a.data())[0]!;
    a.dispose();
    meter.peak = meter.now;
    const b = tf.tidy(() => tf.sqrt(tf.addN(grads.map((x) => tf.sum(tf.square(x))))));
    peakOld = meter.peak - base;
    vOld = (await b.data())[0]!;
    b.dispose();
  } finally {
    meter.restore();
  }
  assert.equal(tf.memory().numTensors, before);
  tf.dispose(grads);
  // Same sums added in the same order: equal within fp32 rounding (1e-6 relative; on cpu equal).
  assert.ok(Math.abs(vNew - vOld) <= 1e-6 * vOld, `${vNew} vs ${vOld}`);
  // Peak: the largest gradient's square plus the scalars (a few bytes each), not every square.
  const total = sizes.reduce((x, y) => x + y, 0) * 4;
  assert.ok(peakNew <= 3000 * 4 + 64, `new peak ${peakNew} B`);
  assert.ok(peakOld >= total, `old peak ${peakOld} B (all squares: ${total} B)`);
});

/**
 * The measured peak of greedy decoding (benchmarks/evaluator.ts's call: one task's rows, every
 * input `li` tokens, `lt` new tokens, no stop at EOS) counted from the first byte the model and
 * the method allocated, and the estimate's evaluation phase without the optimizer state (no
 * optimizer here; its slots are the closed-form term the training tests check).
 */
async function measureEval(
  name: string,
  method: string,
  b: number,
  li: number,
  lt: number,
  methodConfig: unknown = {},
) {
  const { meter, t } = meteredStep(name, method, b, li, lt, methodConfig);
  let peak: number;
  try {
    const ids = Array.from({ length: b * li }, (_, j) => 2 + ((j * 7) % 200));
    const inputIds = tf.tensor2d(ids, [b, li], "int32");
    const attentionMask = tf.ones([b, li]) as tf.Tensor2D;
    try {
      await greedyDecode(t.model, { inputIds, attentionMask }, {
        maxNewTokens: lt,
        stopAtEos: false,
        hooks: t.instance.hooks(Array(b).fill(1)),
      });
    } finally {
      tf.dispose([inputIds, attentionMask]);
    }
    peak = meter.peak;
  } finally {
    meter.restore();
    t.dispose();
  }
  const e = estimateTrainingMemory({
    config: t.model.config,
    method,
    methodConfig,
    numTasks: 2,
    optimizer: OPT,
    batchSize: 2 * b,
    microBatchSize: b,
    inputLength: li,
    targetLength: lt,
    dropout: true,
    kernels: "composite",
  });
  return { peak, estimate: e, evaluation: e.phases.evaluation - e.optimizerState };
}

Deno.test("memory: evaluation (greedy decoding) estimate within 1e-4 of the measured peak, no tensors leaked", async () => {
  const before = tf.memory().numTensors;
  for (
    const [n, m, b, li, lt, mc] of [
      ["tiny-v1_1", "mtl", 8, 64, 16, {}],
      ["tiny-relu", "prompt_tuning", 4, 48, 12, { init: "uniform", length: 16 }],
      ["tiny-v1_1", "hyperformer_pp", 4, 32, 8, {}],
      ["tiny-v1_1", "hyperprompt_sep", 4, 32, 8, {}],
    ] as const
  ) {
    const { peak, estimate, evaluation } = await measureEval(n, m, b, li, lt, mc);
    // Measured 1.0000 (equal to the byte) at these rows, since the evaluator's input ids and mask
    // (evalBatchTensors) and each step's decoder ids are counted; before, 0.9991-0.9996 (short
    // by exactly the ids and mask).
    // Within 1e-4: the regression it guards against (the ids and mask not counted) was 4e-4 off.
    const ratio = evaluation / peak;
    assert.ok(
      ratio >= 0.9999 && ratio <= 1.0001,
      `${m}: evaluation estimate ${evaluation} vs measured ${peak} (ratio ${ratio.toFixed(3)})`,
    );
    // Every buffer is modelled: within 256 bytes (room for a few scalars, which are not
    // counted), where leaving out the ids and mask [b, li] is 2·b·li·4 = 1-4 KB short here.
    assert.ok(
      Math.abs(evaluation - peak) <= 256,
      `${m}: evaluation estimate ${evaluation} vs measured ${peak} (${evaluation - peak} B)`,
    );
    assert.equal(estimate.evalBatchTensors, 2 * b * li * 4);
    // Evaluation runs at the micro-batch (benchmarks/run_one.ts), the peak is the larger phase.
    assert.equal(estimate.evalBatchSize, b);
    assert.equal(estimate.peak, Math.max(estimate.trainingPeak, estimate.phases.evaluation));
  }
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("memory: the batch terms are the bytes of the step's batch (collate), its micro-batch's slices and the evaluation's inputs", () => {
  // batchTensors and evalBatchTensors are small beside the activations, within every measured
  // band whether counted or not, so they are checked against the tensors themselves here.
  const b = 8, m = 2, li = 12, lt = 5, evalRows = 3;
  const input: MemoryInput = { ...BASE_MTL, batchSize: b, inputLength: li, targetLength: lt };
  const rows = Array.from({ length: b }, (_, i) => ({
    input: Array.from({ length: li }, (_, j) => 3 + ((i + j) % 50)),
    target: Array.from({ length: lt }, (_, j) => 3 + ((i * j) % 50)),
    taskId: 0,
  }));
  const before = tf.memory().numTensors;
  const batch = collate(rows, { padTokenId: 0, eosTokenId: 1, decoderStartTokenId: 0 });
  const four = [batch.inputIds, batch.attentionMask, batch.decoderInputIds, batch.labels];
  const bytes = (ts: readonly tf.Tensor[]) => ts.reduce((a, t) => a + 4 * t.size, 0);
  const firstRows = (ts: readonly tf.Tensor[], n: number) =>
    ts.map((t) => tf.slice(t, [0, 0], [n, -1]));
  const micro = firstRows(four, m);
  // The evaluator's inputIds and attentionMask (benchmarks/evaluator.ts): [rows, li], as here.
  const evalInputs = firstRows(four.slice(0, 2), evalRows);
  try {
    for (const t of four) assert.ok(t.dtype === "int32" || t.dtype === "float32", t.dtype);
    const full = estimateTrainingMemory({ ...input, evalBatchSize: evalRows });
    assert.equal(full.batchTensors, bytes(four));
    assert.equal(full.evalBatchTensors, bytes(evalInputs));
    const accumulating = estimateTrainingMemory({ ...input, microBatchSize: m });
    assert.equal(accumulating.batchTensors, bytes(four) + bytes(micro));
    // Whatever the weights' precision: ids and masks stay 4 bytes an element.
    const half = estimateTrainingMemory({ ...input, evalBatchSize: evalRows, bytesPerElement: 2 });
    assert.equal(half.batchTensors, full.batchTensors);
  } finally {
    tf.dispose([...four, ...micro, ...evalInputs]);
  }
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("memory: the evaluation phase grows with its batch and can set the peak", () => {
  // Prompt-Tuning on T5 1.1 Base: a frozen backbone, so a training micro-batch of 1 is small,
  // while greedy decoding 128 rows keeps 128 rows of encoder outputs, caches and logits.
  const pt: MemoryInput = { ...BASE_MTL, method: "prompt_tuning", numTasks: 8 };
  const one = estimateTrainingMemory({ ...pt, microBatchSize: 1 });
  const wide = estimateTrainingMemory({ ...pt, microBatchSize: 1, evalBatchSize: 128 });
  assert.equal(one.evalBatchSize, 1);
  assert.equal(wide.trainingPeak, one.trainingPeak);
  // 93 times: the rows' buffers scale with the batch, the position biases do not
  assert.ok(wide.evaluationActivations > 64 * one.evaluationActivations);
  assert.equal(wide.peakPhase, "evaluation");
  assert.equal(wide.peak, wide.phases.evaluation);
  assert.throws(
    () => estimateTrainingMemory({ ...pt, evalBatchSize: 0 }),
    /field "evalBatchSize" must be a positive integer, got 0/,
  );
});

// The wasm backends (wasm+blas where OpenBLAS loads, else wasm): the fused kernels registered there
// (model/fused.ts WASM_KERNELS; the head products with OpenBLAS only), frees at once (no command
// batches). Measured by the buffer meter (every tensor of the wasm heap, the kernels' scratch
// included; the heap also holds the module's own data and the allocator's fragmentation, which the
// preflight's 15 % wasm margin covers, device_memory.ts WASM_HEAP_MARGIN), low-memory backward
// pass, wasm+blas / plain wasm (HYPERPROMPT_NO_BLAS=1), the same in 3 runs: the Vanilla Adapter
// (b4 32/8) 0.9815 / 0.9826, HyperPrompt-Share 0.9870 / 0.9875 and -Sep 0.9875 / 0.9880 (0.969
// and 0.963 with their local networks as two per-example leaves per block; b8 32/8 micro 2);
// wasm+blas since the shared lookup's gathered rows are counted kept (ba4c23d): 0.9881, 0.9904,
// 0.9908; since the attention Softmax's gradient is counted whole, 1.0000-1.0001. The webgpu model
// (frees deferred by 64 dispatches) reads 1.09-1.45 there. Band: PEAK, as on cpu. MTL at b16
// 128/16 read 0.9494 of the heap's measured peak (4.32 MB under, about its attention scores) while
// that gradient's dx and row sum were not counted, and had a band of its own from 0.93; now 1.0000.

Deno.test("memory: the wasm estimate (fused-wasm kernels, frees at once) within tolerance of the wasm heap's measured peak", async () => {
  const info = await selectBackend("wasm", { log: () => {} });
  try {
    const kernels: KernelSet = info.name === "wasm+blas" ? "fused-wasm-blas" : "fused-wasm";
    for (
      const [n, m, b, li, lt, micro] of [
        ["tiny-v1_1", "mtl", 16, 128, 16, 16],
        ["tiny-v1_1", "adapter", 4, 32, 8, 4],
        ["tiny-v1_1", "hyperprompt_share", 8, 32, 8, 2],
        ["tiny-v1_1", "hyperprompt_sep", 8, 32, 8, 2],
      ] as const
    ) {
      const before = tf.memory().numTensors;
      const { peak, estimate } = await measure("low-memory", n, m, b, li, lt, micro, {}, kernels);
      assertClose(`${info.name} ${m} b${b} ${li}/${lt}`, estimate.peak, peak);
      assert.equal(tf.memory().numTensors, before, "no tensors leaked");
      // webgpu's deferred frees would over-estimate here (the model this kernel set replaces).
      const webgpu = estimateTrainingMemory({ ...estimateInput(estimate, n, m, b, li, lt, micro) });
      assert.ok(
        webgpu.peak > estimate.peak,
        `${m}: webgpu ${webgpu.peak} vs wasm ${estimate.peak}`,
      );
    }
  } finally {
    await tf.setBackend("cpu");
  }
});

/** The measured run's input on the webgpu kernel set (for the comparison above). */
function estimateInput(
  _e: unknown,
  name: string,
  method: string,
  b: number,
  li: number,
  lt: number,
  micro: number,
): MemoryInput {
  return {
    config: { ...PRESETS[name as "tiny-v1_1"], vocabSize: 256, dropoutRate: 0.1 },
    method,
    numTasks: 2,
    optimizer: OPT,
    batchSize: b,
    microBatchSize: micro,
    inputLength: li,
    targetLength: lt,
    dropout: true,
    kernels: "fused",
  };
}

Deno.test("memory: the wasm kernel sets free at once, keep the fused kernels' saved tensors; an unknown set is refused", () => {
  const run: MemoryInput = { ...BASE_MTL, batchSize: 8, microBatchSize: 8 };
  const webgpu = estimateTrainingMemory({ ...run, kernels: "fused" });
  const blas = estimateTrainingMemory({ ...run, kernels: "fused-wasm-blas" });
  const plain = estimateTrainingMemory({ ...run, kernels: "fused-wasm" });
  const cpu = estimateTrainingMemory({ ...run, kernels: "composite" });
  // webgpu's submit batch does not apply to wasm.
  assert.deepEqual(
    estimateTrainingMemory({ ...run, kernels: "fused-wasm", submitBatch: 4096 }),
    plain,
  );
  // No webgpu command batches, but the composite attention softmax (wasm has no
  // HpAttentionSoftmax): between the composite set and webgpu's here.
  assert.ok(blas.peak < cpu.peak, `${blas.peak} vs ${cpu.peak}`);
  assert.ok(blas.savedActivations < cpu.savedActivations);
  assert.ok(blas.savedActivations > webgpu.savedActivations);
  // Without OpenBLAS the head products are composite (transposed copies): at least as much.
  assert.ok(plain.peak >= blas.peak);
  // The fused optimizer updates in place on wasm: no update temporaries.
  assert.equal(
    blas.phases.update,
    blas.weights + blas.optimizerState + blas.batchTensors + blas.gradients,
  );
  assert.throws(
    () => estimateTrainingMemory({ ...run, kernels: "wasm" as KernelSet }),
    /field "kernels" must be one of "composite", "fused", "fused-wasm", "fused-wasm-blas", got "wasm"/,
  );
});

/**
 * Elements of the weights T5's linear maps multiply (model/layers.ts `linear`: q, k, v, o of
 * every attention, the feed-forward's wi (or wi_0, wi_1) and wo) and the output projection
 * (`lm_head`, or the tied shared embedding): what tfjs-wasm's XNNPACK matMul keeps a packed copy
 * of. Not the relative attention bias tables, the layer norms, or an embedding used only by a
 * gather.
 */
function linearWeightElems(cfg: typeof PRESETS["t5-v1_1-small"]): number {
  const d = cfg.dModel, inner = cfg.numHeads * cfg.dKv, ff = cfg.dFf;
  const attn = 4 * inner * d;
  const ffn = (cfg.feedForwardProj === "gated-gelu" ? 3 : 2) * ff * d;
  return cfg.numLayers * (attn + ffn) + cfg.numDecoderLayers * (2 * attn + ffn) +
    cfg.vocabSize * d;
}

Deno.test("memory: tfjs-wasm's XNNPACK matMul keeps packed copies of the linear weights, only with xnnMatMul", () => {
  // T5 1.1 Small (gated, untied lm_head), MTL at perf's 8 × 128 / 16, plain wasm's kernel set.
  const small: MemoryInput = {
    config: PRESETS["t5-v1_1-small"],
    method: "mtl",
    optimizer: { kind: "adamw" },
    batchSize: 8,
    inputLength: 128,
    targetLength: 16,
    dropout: true,
    kernels: "fused-wasm",
  };
  const off = estimateTrainingMemory(small);
  assert.equal(off.xnnPackedWeights, 0);
  assert.deepEqual(estimateTrainingMemory({ ...small, xnnMatMul: false }), off);
  const on = estimateTrainingMemory({ ...small, xnnMatMul: true });
  // 44.0M linear weights + 16.4M lm_head, fp32: 241,958,912 B.
  assert.equal(linearWeightElems(small.config), 60_489_728);
  assert.equal(on.xnnPackedWeights, 4 * 60_489_728);
  // Resident in every phase; the optimizer's phases hold nothing else of XNNPACK's.
  assert.equal(on.phases["gradient norm"], off.phases["gradient norm"] + on.xnnPackedWeights);
  assert.equal(on.phases.update, off.phases.update + on.xnnPackedWeights);
  // Forward and evaluation: also Wᵀ and its packed copy during each product (at most twice the
  // largest weight, lm_head's 16.4M).
  const lmHead = 4 * 32128 * 512;
  for (const p of ["forward", "evaluation"] as const) {
    const extra = on.phases[p] - off.phases[p] - on.xnnPackedWeights;
    assert.ok(extra > 0 && extra <= 2 * lmHead, `${p}: ${extra}`);
  }
  // Backward: also the packed copy of each saved linear input X that dW = dYᵀ·X reads (alive to
  // the end of the pass): at most the saved activations.
  const back = on.phases.backward - off.phases.backward - on.xnnPackedWeights;
  assert.ok(back > 0 && back <= off.savedActivations, `backward: ${back}`);
  // Measured (deno task perf, plain wasm, 2026-11-27): heap high-water mark 2.288e9 B.
  assert.ok(on.peak > 2.0e9 && on.peak < 2.288e9, String(on.peak));
  assert.throws(
    () => estimateTrainingMemory({ ...small, xnnMatMul: "yes" as unknown as boolean }),
    /field "xnnMatMul" must be a boolean, got "yes"/,
  );
});

Deno.test("memory: XNNPACK's packed weights: a tied output projection once, the method's variables as an upper bound", () => {
  // tiny-relu: one wi per feed-forward, the shared embedding tied as the output projection
  // (gathered and multiplied: one packed copy). Prompt-Tuning freezes the backbone: no weight
  // gradient, so no saved input is packed; its prompt (a method variable) is counted on top.
  const cfg = PRESETS["tiny-relu"];
  assert.equal(cfg.tieWordEmbeddings, true);
  const run: MemoryInput = {
    config: cfg,
    method: "prompt_tuning",
    optimizer: OPT,
    batchSize: 4,
    inputLength: 32,
    targetLength: 8,
    dropout: true,
    kernels: "fused-wasm",
  };
  const off = estimateTrainingMemory(run);
  const on = estimateTrainingMemory({ ...run, xnnMatMul: true });
  const extra = off.params.total - [...t5ParamShapes(cfg).values()]
    .reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0);
  assert.ok(extra > 0, "the prompt's parameters");
  assert.equal(on.xnnPackedWeights, 4 * (linearWeightElems(cfg) + extra));
  // No trained linear weight: the backward pass packs no saved input.
  assert.equal(on.phases.backward, off.phases.backward + on.xnnPackedWeights);
});

/**
 * The scratch method's configuration: `mul` multiplies its tensor in (a scale) instead of adding
 * it (a bias); `plan` false leaves it out of its flopPlan, `sayOp` false the plan's
 * `elementwise.op`.
 */
interface ScratchBiasConfig {
  readonly freezeBackbone: FreezeBackbone;
  readonly plan: boolean;
  readonly sayOp: boolean;
  readonly mul: boolean;
}

/**
 * A method the estimate has no op-by-op model of, as a user would add one: a per-task bias
 * `[tasks, d]` added (`afterSublayer`) after every self-attention and feed-forward sublayer of
 * both stacks, the backbone frozen; its flopPlan describes it with `elementwise` (unless `plan` is
 * false).
 */
const scratchBias: Method<ScratchBiasConfig> = {
  name: "memory_test_bias",
  description: "memory_test's per-task bias after every sublayer",
  defaults: { freezeBackbone: "all", plan: true, sayOp: true, mul: false },
  parseConfig(raw: unknown, source: string): ScratchBiasConfig {
    const r = new ConfigReader(raw, source, "memory_test_bias");
    const cfg = {
      freezeBackbone: r.freeze("freezeBackbone", "all"),
      plan: r.bool("plan", true),
      sayOp: r.bool("sayOp", true),
      mul: r.bool("mul", false),
    };
    r.done();
    return cfg;
  },
  create(ctx: MethodContext, cfg: ScratchBiasConfig): MethodInstance {
    const d = ctx.config.dModel;
    const variables = new Map<string, tf.Variable>();
    for (const stack of ["encoder", "decoder"] as const) {
      const layers = stack === "encoder" ? ctx.config.numLayers : ctx.config.numDecoderLayers;
      for (let i = 0; i < layers; i++) {
        for (const pos of ["self_attention", "feed_forward"]) {
          const name = `bias.${stack}.${i}.${pos}`;
          variables.set(
            name,
            tf.tidy(() => tf.variable(tf.fill([ctx.tasks.length, d], 0.01), true, name)),
          );
        }
      }
    }
    return {
      name: "memory_test_bias",
      variables,
      keepTaskPrefix: true,
      isBackboneTrainable: (n) => backboneTrainable(cfg.freezeBackbone, n, ctx.config),
      hooks: (taskIds) => ({
        afterSublayer: (stack, layer, sublayer, y) => {
          const table = variables.get(`bias.${stack}.${layer}.${sublayer}`);
          if (table === undefined) return y; // cross-attention
          const bias = tf.gather(table, tf.tensor1d([...taskIds], "int32"));
          const row = bias.reshape([taskIds.length, 1, d]);
          return cfg.mul ? tf.mul(y, row) : tf.add(y, row);
        },
      }),
      dispose: () => tf.dispose([...variables.values()]),
    };
  },
  countParams(config: T5Config, cfg: ScratchBiasConfig, numTasks: number) {
    return {
      extra: 2 * (config.numLayers + config.numDecoderLayers) * numTasks * config.dModel,
      trainedBackbone: trainedBackboneParams(config, cfg.freezeBackbone),
    };
  },
  flopPlan(_config: T5Config, cfg: ScratchBiasConfig): FlopPlan {
    return {
      freezeBackbone: cfg.freezeBackbone,
      ...(cfg.plan
        ? {
          elementwise: {
            stacks: ["encoder", "decoder"],
            positions: ["self_attention", "feed_forward"],
            ...(cfg.sayOp ? { op: cfg.mul ? "mul" as const : "add" as const } : {}),
          },
        }
        : {}),
    };
  },
};

Deno.test("memory: a registered method outside the built-in ones is estimated from its flopPlan (elementwise per-task bias), with a note; no tensors leaked", async () => {
  const registry = METHODS as unknown as Record<string, Method<unknown>>;
  registry[scratchBias.name] = scratchBias as Method<unknown>;
  const before = tf.memory().numTensors;
  const [b, li, lt] = [8, 32, 8];
  try {
    for (const mode of ["stock", "low-memory"] as const) {
      const { peak, estimate } = await measure(mode, "tiny-v1_1", scratchBias.name, b, li, lt, b);
      assertClose(mode, estimate.peak, peak);
      assert.equal(estimate.notes.length, 2, estimate.notes.join("\n"));
      assert.match(estimate.notes[0]!, /^method "memory_test_bias": .*elementwise tensors/);
      // It states no variableShapes: its update's temporaries are 6 of its parameter count.
      assert.match(
        estimate.notes[1]!,
        /^method "memory_test_bias": it states no variableShapes .* 6 × its 1024 parameters/,
      );
      // The same method whose plan leaves the bias out (what every method outside the built-in
      // ones got before its plan was read: no activations of its tensors): it says so, and
      // counts less than the plan that names the bias.
      const { peak: same, estimate: blind } = await measure(
        mode,
        "tiny-v1_1",
        scratchBias.name,
        b,
        li,
        lt,
        b,
        { plan: false },
      );
      assert.equal(same, peak);
      assert.equal(blind.notes.length, 2, blind.notes.join("\n"));
      assert.match(
        blind.notes[0]!,
        /^method "memory_test_bias": its flopPlan names no way its \d+ parameters enter T5/,
      );
      // Counted from the plan: after each of the 2·(L_enc + L_dec) sublayers, the example's bias
      // row (b·d) and the sublayer output the add saves (rows·d), 4 bytes each ...
      const cfg = PRESETS["tiny-v1_1"];
      const rows = 2 * (cfg.numLayers * b * li + cfg.numDecoderLayers * b * lt);
      const sites = 2 * (cfg.numLayers + cfg.numDecoderLayers);
      assert.equal(
        estimate.savedActivations - blind.savedActivations,
        4 * cfg.dModel * (rows + sites * b),
      );
      // ... which brings the estimate nearer the measured peak (stock: 0.984 against 0.529 of
      // it, the blind estimate's backward pass empty as nothing it knows of is trained;
      // low-memory: 0.994 against 0.914).
      assert.ok(
        Math.abs(estimate.peak - peak) < Math.abs(blind.peak - peak),
        `${mode}: from the plan ${estimate.peak}, without the bias ${blind.peak}, measured ${peak}`,
      );
      // The backbone frozen, the first sublayers (before the first bias) get no gradient: not
      // their attention scores either, as T5's position bias (a frozen table's rows) is off the
      // gradient's path. Measured 0.984 (stock) and 0.994 (low-memory) of the peak, the Add
      // modelled as the plan says (`op: "add"`); under by the unmodelled index tensors and the
      // bias rows' gather and reshape, as MTL's estimate is (-3.1 %..-1.7 % / -2.3 %..-0.6 %).
      // Read 0.997 while every elementwise tensor was counted as multiplied in (its over-count
      // of the Add hid part of that gap). With the position bias counted on the path (each
      // stack's first self-attention scores, softmax and dropout given gradients) the stock
      // estimate read 1.030.
      // Since the shared lookup's gathered rows are counted as kept (its Reshape saves them):
      // 0.9875 (stock) and 1.0001 (low-memory: over by 1.1 KB, the update temporaries counted
      // as 6 of its parameters without variableShapes), so up to 1.01. With the index tensors
      // counted: 0.9879 and 1.0008.
      const ratio = estimate.peak / peak;
      assert.ok(ratio >= 0.98 && ratio <= 1.01, `${mode}: ratio ${ratio.toFixed(4)}`);
      // The same tensor multiplied in (a scale), its plan not saying the op: counted as a Mul
      // (the larger), with a note saying so. What the Mul costs beyond the Add, measured and
      // estimated: stock 308224 and 309248 bytes (its gradient of the sublayer output a new
      // buffer, not the Add's dy, at each sublayer after the first bias), low-memory 0 and 0
      // (those gradients freed at once); within 1 % of the sublayer outputs' bytes (the size of
      // what a Mul can add).
      const scaled = await measure(mode, "tiny-v1_1", scratchBias.name, b, li, lt, b, {
        mul: true,
        sayOp: false,
      });
      assert.match(
        scaled.estimate.notes[0]!,
        /elementwise tensors .* multiplied in \(its flopPlan's elementwise.op does not say/,
      );
      assert.match(estimate.notes[0]!, /elementwise tensors .* added \(a per-task bias\)/);
      const costMeasured = scaled.peak - peak, costEstimated = scaled.estimate.peak - estimate.peak;
      assert.ok(
        Math.abs(costEstimated - costMeasured) <= 0.01 * 4 * cfg.dModel * rows,
        `${mode}: a Mul costs ${costMeasured} bytes more than an Add, estimated ${costEstimated}`,
      );
      assert.ok(costEstimated >= 0, `${mode}: the Mul (unsaid) is the upper bound`);
      if (mode === "stock") assert.ok(costMeasured > 0.5 * 4 * cfg.dModel * rows, "premise");
      assertClose(`${mode} scale`, scaled.estimate.peak, scaled.peak);
    }
    // `op: "mul"` said is what an unsaid op counts (a bad op: the malformed-plan test below).
    const at = (methodConfig: Partial<ScratchBiasConfig>) =>
      estimateTrainingMemory({
        ...BASE_MTL,
        config: PRESETS["tiny-v1_1"],
        method: scratchBias.name,
        methodConfig,
        numTasks: 2,
        batchSize: 4,
        kernels: "composite",
        backprop: "stock",
      });
    assert.equal(at({ mul: true }).peak, at({ mul: true, sayOp: false }).peak);
    assert.ok(at({}).peak < at({ sayOp: false }).peak);
  } finally {
    delete registry[scratchBias.name];
  }
  assert.equal(tf.memory().numTensors, before);
  // The built-in methods are replayed op by op: no notes.
  for (const method of Object.keys(METHODS)) {
    assert.deepEqual(estimateTrainingMemory({ ...BASE_MTL, method }).notes, [], method);
  }
});

Deno.test("memory: a method's malformed flopPlan or variableShapes is refused, naming the method and the field", () => {
  const registry = METHODS as unknown as Record<string, Method<unknown>>;
  const plan = (p: FlopPlan): Partial<Method<unknown>> => ({ flopPlan: () => p });
  // Stated shapes that are malformed, or hold other than countParams's count (2 tasks: 1024).
  const shapes = (s: Map<string, number[]>): Partial<Method<unknown>> => ({
    variableShapes: () => s,
  });
  const cases: [Partial<Method<unknown>>, RegExp][] = [
    [
      plan({
        freezeBackbone: "all",
        adapters: { bottleneck: 0, stacks: ["encoder"], positions: ["feed_forward"] },
      }),
      /method "memory_test_bad_plan" flopPlan: field "adapters.bottleneck" must be an integer >= 1, got 0/,
    ],
    [
      plan({ freezeBackbone: false, encoderPrompt: 2.5 }),
      /field "encoderPrompt" must be an integer >= 0, got 2.5/,
    ],
    [
      plan({
        freezeBackbone: false,
        elementwise: { stacks: ["encoder"], positions: ["cross_attention" as "feed_forward"] },
      }),
      /field "elementwise.positions" must list "self_attention" and\/or "feed_forward", got \["cross_attention"\]/,
    ],
    [
      plan({
        freezeBackbone: "all",
        elementwise: { stacks: ["encoder"], positions: ["feed_forward"], op: "sub" as "add" },
      }),
      /method "memory_test_bad_plan" flopPlan: field "elementwise.op" must be "add" or "mul", got "sub"/,
    ],
    [
      shapes(new Map([["w", [2, 0]]])),
      /method "memory_test_bad_plan" variableShapes: variable "w" has shape \[2,0\], not a list of positive integers/,
    ],
    [
      shapes(new Map([["w", [3]]])),
      /variableShapes: its 1 variables hold 3 elements, but countParams says 1024 extra parameters/,
    ],
  ];
  try {
    for (const [override, message] of cases) {
      registry.memory_test_bad_plan = {
        ...(scratchBias as Method<unknown>),
        ...override,
        name: "memory_test_bad_plan",
      };
      assert.throws(
        () =>
          estimateTrainingMemory({
            ...BASE_MTL,
            config: PRESETS["tiny-v1_1"],
            method: "memory_test_bad_plan",
            numTasks: 2,
          }),
        message,
      );
    }
  } finally {
    delete registry.memory_test_bad_plan;
  }
});
