import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { preset, type T5Config } from "../model/config.ts";
import { disposeT5, forward, initT5, type T5Model } from "../model/t5.ts";
import type { MethodInstance } from "../model/method.ts";
import { getMethod } from "../model/methods/mod.ts";
import { DEFAULT_TRAIN, SpecError, type TaskEval, type TrainSpec, validateTrain } from "./spec.ts";
import { Rng, seedFor } from "./rng.ts";
import { createOptimizer, type OptimizerConfig } from "./optim.ts";
import { gpuTest } from "../model/webgpu/testing.ts";
import { collate, disposeBatch } from "./batching.ts";
import {
  disposeCheckpoint,
  listCheckpoints,
  loadCheckpoint,
  NO_RESUME_ADVICE,
  saveCheckpoint,
} from "./checkpointing.ts";
import { bestPerTask, evaluate } from "./evaluator.ts";
import {
  type BatchSource,
  clearStopRequest,
  DEFAULT_CHECKPOINT_MINUTES,
  lossAndGrads,
  NonFiniteLossError,
  NonFiniteVariablesError,
  optimizerConfigFor,
  optimizerSlotShapes,
  requestStop,
  rowsPerPass,
  stopRequested,
  train,
  trainedVariables,
  TrainingInterruptedError,
  type TrainOptions,
  type TrainOutcome,
  watchCheckpointingLoops,
  YIELD_EVERY_MS,
  yielder,
} from "./trainer.ts";

import { selectBackend } from "../model/backend.ts";

// wasm with the project's kernel patches: ~5x faster than cpu for these tiny models.
await selectBackend("wasm", { log: () => {} });

// cpu, as tfjs picks without the webgpu package (imported here for one test, it would outrank cpu).
await tf.setBackend("cpu");

const CONFIG: T5Config = { ...preset("tiny-v1_1"), vocabSize: 64, dropoutRate: 0.1 };
const IDS = { padTokenId: 0, eosTokenId: 1, decoderStartTokenId: 0 };

/**
 * 8 fixed (input, target) pairs; batches of 4 drawn by a seeded Rng whose state is resumable.
 * With `varied`, targets have 1 to 3 tokens, so rows count unequally in the token-mean loss.
 */
class ToySource implements BatchSource {
  readonly rng = new Rng(11);
  readonly data;
  constructor(varied = false) {
    this.data = Array.from({ length: 8 }, (_, i) => ({
      input: [2 + i, 10 + (i % 3), 20 + i, 1].slice(0, 2 + (i % 3)).concat([1]),
      target: varied ? [40 + (i % 2), 45 + i, 1].slice(i % 3) : [40 + (i % 2), 1],
      taskId: i % 2,
    }));
  }
  next() {
    return collate(Array.from({ length: 4 }, () => this.data[this.rng.nextInt(8)]!), IDS);
  }
  state() {
    return this.rng.state();
  }
  restore(s: unknown) {
    this.rng.restore(s as ReturnType<Rng["state"]>);
  }
}

function fullFinetune(trainable: (n: string) => boolean = () => true): MethodInstance {
  return {
    name: "toy",
    variables: new Map(),
    keepTaskPrefix: true,
    isBackboneTrainable: trainable,
    hooks: () => ({}),
    dispose: () => {},
  };
}

const SPEC: TrainSpec = {
  ...DEFAULT_TRAIN,
  learningRate: 1e-2,
  steps: 8,
  batchSize: 4,
  labelSmoothing: 0.1,
  clipNorm: 1.0,
  evalEvery: 4,
  checkpointEvery: 2,
};

function opts(model: T5Model, extra: Partial<TrainOptions> = {}): TrainOptions {
  return {
    model,
    instance: fullFinetune(),
    train: SPEC,
    seed: 3,
    taskNames: ["a", "b"],
    source: new ToySource(),
    ...extra,
  };
}

/**
 * A run killed after step `killAt` (its `onStep` throws there): a fresh model (seed 1) trained
 * with `extra(model)`, the rejection checked, the model released. What it leaves is on disk.
 */
async function killedRun(
  killAt: number,
  extra: (model: T5Model) => Partial<TrainOptions>,
): Promise<void> {
  const model = initT5(CONFIG, { seed: 1 });
  try {
    await assert.rejects(
      () =>
        train(opts(model, {
          ...extra(model),
          onStep: (s) => {
            if (s === killAt) throw new Error("simulated kill");
          },
        })),
      /simulated kill/,
    );
  } finally {
    disposeT5(model);
  }
}

/**
 * An uninterrupted run of {@link opts} (run key "k", {@link evalFn}'s evaluation, `extra` on
 * top) from a fresh model: what it returned and its final weights.
 */
async function referenceRun(
  extra: Partial<TrainOptions> = {},
): Promise<{ ra: TrainOutcome; va: Map<string, Float32Array> }> {
  const dir = await Deno.makeTempDir();
  const a = initT5(CONFIG, { seed: 1 });
  try {
    const ra = await train(
      opts(a, { checkpointDir: dir, runKey: "k", evaluate: evalFn(a), ...extra }),
    );
    return { ra, va: await snapshot(a) };
  } finally {
    disposeT5(a);
    await Deno.remove(dir, { recursive: true });
  }
}

/** Asserts a resumed run's losses, evaluations, token count and every weight equal the reference's. */
async function assertSameAsReference(
  rb: TrainOutcome,
  model: T5Model,
  ref: { ra: TrainOutcome; va: Map<string, Float32Array> },
): Promise<void> {
  assert.deepEqual(rb.losses, ref.ra.losses);
  assert.deepEqual(rb.evals, ref.ra.evals);
  assert.equal(rb.tokens, ref.ra.tokens, "token count carried over the resume");
  const vb = await snapshot(model);
  for (const [n, x] of ref.va) assert.deepEqual(vb.get(n), x, n);
}

/**
 * An evaluation whose score is the first weight of `shared.weight`: results that differ when
 * the weights at that step differ.
 */
function evalFn(model: T5Model): (step: number) => Promise<TaskEval[]> {
  return async (step) => {
    const v = (await model.params.get("shared.weight")!.data())[0]!;
    return [{ step, task: "a", metrics: { probe: v }, groupScore: v }];
  };
}

/**
 * The options of a run of key "k" that checkpoints into `dir`, evaluates with {@link evalFn} and
 * logs its resume notes into `log`.
 */
function resumingIn(dir: string, log: string[]): (m: T5Model) => Partial<TrainOptions> {
  return (m) => ({ checkpointDir: dir, runKey: "k", evaluate: evalFn(m), log: (l) => log.push(l) });
}

async function snapshot(model: T5Model): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [n, v] of model.params) out.set(n, (await v.data()) as Float32Array);
  return out;
}

Deno.test("train() lowers the loss and leaks no tensors", async () => {
  const model = initT5(CONFIG, { seed: 1 });
  const before = tf.memory().numTensors;
  const counts: number[] = [];
  const r = await train(opts(model, {
    train: { ...SPEC, steps: 60 },
    onStep: () => {
      counts.push(tf.memory().numTensors);
    },
  }));
  assert.equal(r.losses.length, 60);
  const first = r.losses.slice(0, 3).reduce((a, b) => a + b.loss, 0) / 3;
  const last = r.losses.slice(-3).reduce((a, b) => a + b.loss, 0) / 3;
  // Memorising 8 pairs: the loss (ln 64 = 4.16 at init) must fall clearly.
  assert.ok(last < first - 1, `loss ${first} -> ${last}`);
  // Slots are created at step 1; after that nothing may accumulate.
  assert.equal(counts[counts.length - 1], counts[1], `numTensors per step: ${counts}`);
  assert.equal(tf.memory().numTensors, before, "optimizer slots released at the end");
  assert.ok(r.tokens > 0 && r.trainSeconds > 0);
  disposeT5(model);
});

Deno.test("train() updates only trained variables", async () => {
  const model = initT5(CONFIG, { seed: 1 });
  const start = await snapshot(model);
  const isLn = (n: string) => n.includes("layer_norm");
  await train(opts(model, { instance: fullFinetune(isLn), train: { ...SPEC, steps: 2 } }));
  const end = await snapshot(model);
  // Both kinds present: layer norms (trained) and others (frozen).
  assert.ok([...start.keys()].some(isLn) && [...start.keys()].some((n) => !isLn(n)));
  for (const [n, a] of start) {
    const changed = a.some((x, i) => x !== end.get(n)![i]);
    assert.equal(changed, isLn(n), `${n} changed=${changed}`);
  }
  disposeT5(model);
});

Deno.test("train() passes train.adafactor to the optimizer", async () => {
  const after = async (adafactor?: TrainSpec["adafactor"]) => {
    const model = initT5(CONFIG, { seed: 1 });
    const t: TrainSpec = {
      ...SPEC,
      optimizer: "adafactor",
      steps: 1, // one update: what differs is the update rule, not yet the gradients
      checkpointEvery: 0,
      ...(adafactor ? { adafactor } : {}),
    };
    await train(opts(model, { train: t }));
    const s = await snapshot(model);
    disposeT5(model);
    return s;
  };
  const differs = (a: Map<string, Float32Array>, b: Map<string, Float32Array>) =>
    [...a].filter(([n, x]) => x.some((v, i) => v !== b.get(n)![i])).map(([n]) => n);
  const plain = await after();
  assert.deepEqual(differs(plain, await after()), [], "the same settings train identically");
  // Parameter scaling multiplies each update by the variable's RMS: every update changes but
  // the layer norms' (initialised to 1, RMS 1); a factoring threshold above every dimension
  // changes the factored (rank-2) ones only.
  const scaled = differs(plain, await after({ multiplyByParameterScale: true }));
  const notNorms = [...plain.keys()].filter((n) => !n.includes("layer_norm"));
  assert.deepEqual(scaled, notNorms);
  const unfactored = differs(plain, await after({ minDimSizeToFactor: 1 << 20 }));
  assert.ok(unfactored.length > 0, "minDimSizeToFactor reached the optimizer");
  assert.ok(unfactored.every((n) => !n.includes("layer_norm")), unfactored.join(", "));
  // T5X's weight decay rate: one step takes rate·p0 more off every variable than the plain
  // step (p1 = (1 − rate)·p0 − update). float32: each side is rounded at ≈ 6e-8 of |p|, so
  // 1e-6 of the largest |p0| bounds the difference's error.
  const init = initT5(CONFIG, { seed: 1 });
  const p0 = await snapshot(init);
  disposeT5(init);
  const rate = 0.01;
  const decayed = await after({ weightDecayRate: rate });
  for (const [n, x0] of p0) {
    const tol = 1e-6 * Math.max(1, ...Array.from(x0, Math.abs));
    x0.forEach((v, i) => {
      const d = plain.get(n)![i]! - decayed.get(n)![i]!;
      assert.ok(Math.abs(d - rate * v) <= tol, `${n}[${i}]: ${d} vs ${rate * v}`);
    });
  }
});

Deno.test("train() adds train.zLoss to the loss (z·mean log_z²), and zLoss 0 trains as before", async () => {
  const run = async (zLoss?: number) => {
    const model = initT5(CONFIG, { seed: 1 });
    const t: TrainSpec = {
      ...SPEC,
      steps: 2,
      checkpointEvery: 0,
      ...(zLoss === undefined ? {} : { zLoss }),
    };
    const r = await train(opts(model, { train: t }));
    const s = await snapshot(model);
    disposeT5(model);
    return { losses: r.losses.map((l) => l.loss), s };
  };
  const plain = await run();
  const zero = await run(0);
  assert.deepEqual(zero.losses, plain.losses, "zLoss 0: the same losses");
  for (const [n, x] of plain.s) assert.deepEqual(zero.s.get(n), x, `zLoss 0: ${n}`);
  const z = await run(0.01);
  // Step 1 sees the same logits (same weights, same dropout): the loss is larger by
  // z·mean(log_z²) > 0, and the gradients, so the weights after it, differ.
  assert.ok(z.losses[0]! > plain.losses[0]! + 1e-4, `${z.losses[0]} vs ${plain.losses[0]}`);
  const moved = [...plain.s].filter(([n, x]) => x.some((v, i) => v !== z.s.get(n)![i]));
  assert.ok(moved.length > 0, "the z-loss gradient reached the update");
});

Deno.test("train() passes train.labelSmoothing to the loss: step 1's loss is (1−ε)·nll + ε·mean_v(−log p_v)", async () => {
  const before = tf.memory().numTensors;
  // Step 1's recorded loss, before any update: the initial weights (seed 1, no dropout) on the
  // source's first batch. Read independently here: the logits of that batch, in float64.
  const model = initT5(NO_DROPOUT, { seed: 1 });
  const batch = new ToySource().next();
  const { logits, encoderOutput } = forward(model, batch, { hooks: {}, training: true });
  encoderOutput.dispose();
  const x = await logits.data();
  const labels = await batch.labels.data();
  const v = logits.shape[2];
  logits.dispose();
  disposeBatch(batch);
  disposeT5(model);
  let nll = 0;
  let smooth = 0;
  let count = 0;
  labels.forEach((label, t) => {
    if (label === -100) return;
    const row = Array.from(x.subarray(t * v, (t + 1) * v));
    const top = Math.max(...row);
    const lse = top + Math.log(row.reduce((s, r) => s + Math.exp(r - top), 0));
    nll += lse - row[label]!;
    smooth += lse - row.reduce((s, r) => s + r, 0) / v;
    count++;
  });
  nll /= count;
  smooth /= count;
  const run = async (labelSmoothing: number) => {
    const m = initT5(NO_DROPOUT, { seed: 1 });
    const t: TrainSpec = { ...SPEC, steps: 1, checkpointEvery: 0, labelSmoothing };
    const r = await train(opts(m, { train: t }));
    disposeT5(m);
    return r.losses[0]!.loss;
  };
  const eps = 0.3;
  const plain = await run(0);
  const smoothed = await run(eps);
  const want = (1 - eps) * nll + eps * smooth;
  // fp32: a log-sum-exp over 64 logits and a mean over 8 tokens, ~1e-5 relative per op; 1e-5
  // of the loss (~17 here) is ~2e-4, while smoothing moves it by ε·|smooth − nll| (~1 here),
  // checked to stay far above that.
  const tol = 1e-5 * Math.max(nll, smooth);
  assert.ok(
    eps * Math.abs(smooth - nll) > 100 * tol,
    `smoothing moves it by ${eps * (smooth - nll)}`,
  );
  assert.ok(Math.abs(plain - nll) <= tol, `ε 0: loss ${plain} vs nll ${nll}`);
  assert.ok(Math.abs(smoothed - want) <= tol, `ε ${eps}: loss ${smoothed} vs ${want}`);
  assert.equal(tf.memory().numTensors, before, "no leaked tensors");
});

Deno.test("train() gives each update the schedule's rate at its 0-based step, as Adafactor's absolute step", async () => {
  const base: TrainSpec = {
    ...SPEC,
    optimizer: "adafactor",
    clipNorm: null,
    labelSmoothing: 0,
    checkpointEvery: 0,
  };
  /** Snapshots after each step of a run of `t`; the rates its losses record. */
  const rates: (number | undefined)[][] = [];
  const run = async (t: TrainSpec) => {
    const model = initT5(NO_DROPOUT, { seed: 1 });
    const snaps = [await snapshot(model)];
    const out = await train(
      opts(model, { train: t, onStep: async () => void snaps.push(await snapshot(model)) }),
    );
    rates.push(out.losses.map((l) => l.lr));
    disposeT5(model);
    return snaps;
  };
  const moved = (a: Map<string, Float32Array>, b: Map<string, Float32Array>) => {
    let sum = 0;
    for (const [n, x] of a) x.forEach((v, i) => (sum += Math.abs(b.get(n)![i]! - v)));
    return sum;
  };
  // warmup_linear over 2 warmup steps: the first update (step 0) has rate 0 and changes nothing,
  // the second has rate lr / 2.
  const warm = await run({
    ...base,
    steps: 2,
    schedule: { kind: "warmup_linear", warmupSteps: 2 },
  });
  assert.equal(moved(warm[0]!, warm[1]!), 0, "first update at rate 0");
  assert.ok(moved(warm[1]!, warm[2]!) > 0, "second update at rate lr / 2");
  // Constant rate: Adafactor's first update (no parameter scale) is the rate times a function
  // of the gradient, so doubling the rate doubles every change (a relative step, which ignores
  // the rate, would not). The ratio of the summed changes: float32 rounding of p − lr·u, with
  // |lr·u| ~ 1e-3 against |p| ~ 1, is ~1e-4 of each change; 1e-3 allows it.
  const one = await run({ ...base, steps: 1, learningRate: 1e-3 });
  const two = await run({ ...base, steps: 1, learningRate: 2e-3 });
  const ratio = moved(two[0]!, two[1]!) / moved(one[0]!, one[1]!);
  assert.ok(Math.abs(ratio - 2) < 1e-3, `ratio ${ratio}`);
  // Each step's loss records the rate its update used: 0 then lr / 2 under the warmup.
  assert.deepEqual(rates, [[0, base.learningRate / 2], [1e-3], [2e-3]]);
});

Deno.test("train() clips the global gradient norm before the update (PyTorch clip_grad_norm_)", async () => {
  // One AdamW step (no weight decay) from the same weights and batch: m̂ = g', sqrt(v̂) = |g'|, so
  // each weight moves by lr · g' / (|g'| + 1e-8), g' the gradient as given to the optimizer. With
  // a clip of 1e-6, g' = g · 1e-6 / (‖g‖ + 1e-6) is so small that eps 1e-8 dominates many entries
  // and the move depends on the clip; with a clip above the norm, g' = g (≈ lr · sign(g)).
  const base: TrainSpec = {
    ...SPEC,
    optimizer: "adamw",
    learningRate: 0.1,
    labelSmoothing: 0,
    steps: 1,
    checkpointEvery: 0,
  };
  const model0 = initT5(NO_DROPOUT, { seed: 1 });
  const p0 = await snapshot(model0);
  const batch = new ToySource().next();
  const { value, grads } = await lossAndGrads(
    opts(model0, { train: base }),
    batch,
    [...model0.params.values()],
    0,
  );
  const byName = new Map<string, Float32Array>();
  for (const [n, v] of model0.params) {
    byName.set(n, (await grads[v.name]!.data()) as Float32Array);
  }
  tf.dispose([value, ...Object.values(grads)]);
  disposeBatch(batch);
  disposeT5(model0);
  let sq = 0;
  for (const g of byName.values()) for (const x of g) sq += x * x;
  const norm = Math.sqrt(sq);
  assert.ok(norm > 1e-3, `gradient norm ${norm}`);
  // A clip far below the norm, one just below it (a scale of 0.7: still applied), one above.
  for (const clipNorm of [1e-6, 0.7 * norm, 1e9]) {
    const model = initT5(NO_DROPOUT, { seed: 1 });
    await train(opts(model, { train: { ...base, clipNorm } }));
    const p1 = await snapshot(model);
    disposeT5(model);
    const coef = Math.min(1, clipNorm / (norm + 1e-6));
    let worst = 0;
    let epsBound = 0; // entries whose move the clip shrank below half of lr
    for (const [n, g] of byName) {
      const a = p0.get(n)!, b = p1.get(n)!;
      g.forEach((gi, i) => {
        const gc = gi * coef;
        const want = -0.1 * gc / (Math.abs(gc) + 1e-8);
        if (Math.abs(want) < 0.05) epsBound++;
        // float32: rounding p − Δ costs half an ulp of p (<= 4.8e-7 for |p| < 8, checked below)
        // and Δ's own ops ~1e-6 of |Δ| <= 0.1; 2e-6 covers both and is far below the clip's
        // effect (moved entries: < 0.05 with the clip, ≈ 0.1 without).
        assert.ok(Math.abs(a[i]!) < 8, `${n}[${i}] = ${a[i]}`);
        worst = Math.max(worst, Math.abs((b[i]! - a[i]!) - want));
      });
    }
    assert.ok(worst <= 2e-6, `clip ${clipNorm}: largest deviation ${worst}`);
    if (clipNorm < 1) assert.ok(epsBound > 100, `the clip shrank only ${epsBound} moves`);
  }
});

Deno.test("train() passes train.weightDecay to either optimizer (decoupled: p · lr · wd)", async () => {
  // One step from the same weights and batch with and without weight decay: the gradient step is
  // the same, so the two results differ by exactly lr · wd · p0 for both AdamW and Adafactor
  // (no parameter scale: its step is lr). float32: half an ulp of each result (<= 4.8e-7 for
  // |p| < 8); 1e-6 allows it, against differences up to lr · wd · |p| ~ 1e-2.
  const lr = 0.01, wd = 0.5;
  for (const optimizer of ["adamw", "adafactor"] as const) {
    const after = async (weightDecay: number) => {
      const model = initT5(NO_DROPOUT, { seed: 1 });
      const p0 = await snapshot(model);
      const t: TrainSpec = {
        ...SPEC,
        optimizer,
        learningRate: lr,
        weightDecay,
        steps: 1,
        checkpointEvery: 0,
      };
      await train(opts(model, { train: t }));
      const p1 = await snapshot(model);
      disposeT5(model);
      return { p0, p1 };
    };
    const plain = await after(0);
    const decayed = await after(wd);
    let worst = 0, largest = 0;
    for (const [n, p0] of plain.p0) {
      const a = plain.p1.get(n)!, b = decayed.p1.get(n)!;
      p0.forEach((x, i) => {
        assert.ok(Math.abs(x) < 8, `${n}[${i}] = ${x}`);
        worst = Math.max(worst, Math.abs((a[i]! - b[i]!) - lr * wd * x));
        largest = Math.max(largest, Math.abs(a[i]! - b[i]!));
      });
    }
    assert.ok(worst <= 1e-6, `${optimizer}: largest deviation ${worst}`);
    assert.ok(largest > 1e-3, `${optimizer}: weight decay changed nothing (${largest})`);
  }
});

Deno.test("train() resumed after a kill is bit-identical to an uninterrupted run", async () => {
  const ref = await referenceRun();

  for (const killAfter of [3, 5]) {
    const dirB = await Deno.makeTempDir();
    await killedRun(killAfter, (m) => ({ checkpointDir: dirB, runKey: "k", evaluate: evalFn(m) }));
    // A fresh process: new model (same init), new source (fresh RNG), resume from disk.
    const b2 = initT5(CONFIG, { seed: 1 });
    const rb = await train(opts(b2, { checkpointDir: dirB, runKey: "k", evaluate: evalFn(b2) }));
    assert.equal(rb.resumedFrom, killAfter === 3 ? 2 : 4);
    await assertSameAsReference(rb, b2, ref);
    // A different run key refuses the checkpoint.
    await assert.rejects(
      () => train(opts(b2, { checkpointDir: dirB, runKey: "other" })),
      /belongs to run/,
    );
    disposeT5(b2);
    await Deno.remove(dirB, { recursive: true });
  }
});

Deno.test("train() stopped by a request saves that step's checkpoint; the resume is bit-identical", async () => {
  const ref = await referenceRun();
  // Step 3 has no scheduled checkpoint (every 2): the stop saves one; step 4 has one (and an
  // evaluation), which the stop reuses.
  for (const stopAfter of [3, 4]) {
    const dir = await Deno.makeTempDir();
    const m = initT5(CONFIG, { seed: 1 });
    const before = tf.memory().numTensors;
    let graceful: boolean | undefined;
    const seen: boolean[] = [];
    const unwatch = watchCheckpointingLoops((running) => seen.push(running));
    try {
      const err = await train(opts(m, {
        checkpointDir: dir,
        runKey: "k",
        evaluate: evalFn(m),
        // The process-wide request, as the bench's signal handler makes it.
        onStep: (s) => {
          if (s === stopAfter) graceful = requestStop("SIGINT");
        },
      })).then(() => undefined, (e) => e);
      assert.ok(err instanceof TrainingInterruptedError, String(err));
      assert.equal(err.interrupted, true);
      assert.equal(err.step, stopAfter);
      assert.equal(err.checkpoint, `${dir}/step-0000000${stopAfter}`);
      assert.match(err.message, new RegExp(`SIGINT after step ${stopAfter} of 8; checkpoint`));
      assert.match(err.message, /--resume continues from step/);
    } finally {
      unwatch();
      clearStopRequest();
    }
    assert.equal(graceful, true, "a checkpointing loop was running: the stop waits for it");
    assert.deepEqual(seen, [true, false], "observers see the loop start and end");
    assert.equal(tf.memory().numTensors, before, "nothing leaked by the stop");
    disposeT5(m);
    // Stopped at a step boundary, nothing is owed: the state is as before `evalOwed` existed (an
    // old checkpoint), and resumes as such below.
    const state = JSON.parse(await Deno.readTextFile(`${dir}/step-0000000${stopAfter}/state.json`));
    assert.equal(Object.hasOwn(state, "evalOwed"), false);
    const b = initT5(CONFIG, { seed: 1 });
    const rb = await train(opts(b, { checkpointDir: dir, runKey: "k", evaluate: evalFn(b) }));
    assert.equal(rb.resumedFrom, stopAfter);
    await assertSameAsReference(rb, b, ref);
    disposeT5(b);
    await Deno.remove(dir, { recursive: true });
  }

  assert.equal(requestStop("SIGTERM"), false, "no loop running: nothing to wait for");
  assert.equal(stopRequested(), "SIGTERM");
  clearStopRequest();
  assert.equal(stopRequested(), undefined);
});

Deno.test("train() sees a real signal's stop request at the next step boundary (it yields to the event loop)", async () => {
  // A signal listener (the bench's) runs only when the event loop turns; a step on cpu/wasm
  // awaits only settled promises, so without a yield the request would be seen only at the next
  // checkpoint's file writes or evaluation (step 16 here, the last), steps later.
  const dir = await Deno.makeTempDir();
  const m = initT5(CONFIG, { seed: 1 });
  const listener = () => requestStop("SIGTERM");
  Deno.addSignalListener("SIGTERM", listener);
  try {
    const err = await train(opts(m, {
      train: { ...SPEC, steps: 16, checkpointEvery: 16, evalEvery: 16 },
      checkpointDir: dir,
      runKey: "k",
      // The signal arrives during step 1 (synchronous code; nothing awaited after it).
      onStep: (s) => {
        if (s === 1) Deno.kill(Deno.pid, "SIGTERM");
      },
    })).then(() => undefined, (e) => e);
    assert.ok(err instanceof TrainingInterruptedError, String(err));
    // Normally step 1, the step the signal came in. Deno hands a signal to the event loop from
    // its own thread, so on a loaded machine (2 cores running other tests and training) it may
    // reach the loop some steps later (seen: steps 2 and 4). Without the yield it would be seen
    // only at step 16's checkpoint writes, which this bound still tells apart.
    assert.ok(
      err.step >= 1 && err.step < 16,
      `stopped at step ${err.step}, expected 1 (a few more under load), before the last (16)`,
    );
    assert.deepEqual(await listCheckpoints(dir), [err.step]);
  } finally {
    Deno.removeSignalListener("SIGTERM", listener);
    clearStopRequest();
    disposeT5(m);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("yielder(): turns the event loop only when its interval has passed since the last turn", async () => {
  let clock = 0;
  const due = yielder(1000, () => clock);
  let ran = 0;
  const timer = () => setTimeout(() => ran++, 0);
  timer();
  await due(); // 0 ms since: no turn, the timer waits
  assert.equal(ran, 0);
  clock = 999;
  await due();
  assert.equal(ran, 0);
  clock = 1000;
  await due(); // due: the timer ran
  assert.equal(ran, 1);
  timer();
  clock = 1500;
  await due(); // 500 ms since the last turn
  assert.equal(ran, 1);
  clock = 2000;
  await due();
  assert.equal(ran, 2);
});

Deno.test("train() without checkpoints lets timers run between steps once a second (a run claim's heartbeat), deterministic all the same", async () => {
  const m = initT5(CONFIG, { seed: 1 });
  const spec = { ...SPEC, steps: 6, checkpointEvery: 0, evalEvery: 100 };
  try {
    // A clock one interval on per reading: every step boundary is due.
    let clock = 0;
    let beats = 0;
    const beating = setInterval(() => beats++, 0);
    let r: Awaited<ReturnType<typeof train>>;
    try {
      r = await train(opts(m, {
        train: spec,
        now: () => (clock += YIELD_EVERY_MS),
      }));
    } finally {
      clearInterval(beating);
    }
    assert.ok(beats >= spec.steps - 1, `timers ran between steps: ${beats}`);
    // The same losses as a run whose clock never comes due (no turn at all).
    const m2 = initT5(CONFIG, { seed: 1 });
    try {
      const still = await train(opts(m2, { train: spec, now: () => 0 }));
      assert.deepEqual(r.losses, still.losses);
    } finally {
      disposeT5(m2);
    }
  } finally {
    disposeT5(m);
  }
});

Deno.test("train() lets the event loop turn after its last checkpoint before the loop ends, so a signal that came then is a stop request when it returns", async () => {
  // A signal the process received just before the loop ends is dispatched only when the event
  // loop turns; the loop lets it turn before it reports its end, so that one dispatched at once
  // is a stop request when train() returns (runOne then stops before the attention mass).
  // One dispatched later (Deno took 2-13 ms on 2 loaded cores, sometimes past the loop's one
  // turn) is not lost either: the bench keeps its listeners until the run's result is written
  // (cli.ts interruptWhileCheckpointing; cli_test's real-SIGTERM test of a signal after the
  // loop's end).
  // A real signal's dispatch time is not the loop's to promise; what the loop does promise is
  // checked: a zero-delay timer set in the final save's
  // synchronous code (where a signal's dispatch would wait) has run before the loop's end is
  // reported. Without the turn it has not: the end follows the save in microtasks alone.
  const dir = await Deno.makeTempDir();
  const m = initT5(CONFIG, { seed: 1 });
  const spec = { ...SPEC, steps: 2, checkpointEvery: 2, evalEvery: 100 };
  let ended: { turned: boolean } | undefined;
  let last = false;
  let set = false;
  let turned = false;
  const unwatch = watchCheckpointingLoops((running) => {
    if (!running) ended = { turned };
  });
  try {
    const before = tf.memory().numTensors;
    const r = await train(opts(m, {
      train: spec,
      checkpointDir: dir,
      runKey: "k",
      onStep: (s) => {
        last = s === spec.steps;
      },
      // Read once after each save: after the final one, in synchronous code.
      now: () => {
        if (last && !set) {
          set = true;
          setTimeout(() => turned = true, 0);
        }
        return performance.now();
      },
    }));
    assert.ok(set, "the timer was set after the final checkpoint");
    assert.equal(r.losses.length, spec.steps, "training had finished: it returns normally");
    assert.deepEqual(await listCheckpoints(dir), [spec.steps], "the final state is saved");
    assert.deepEqual(ended, { turned: true }, "the event loop turned before the loop's end");
    assert.equal(tf.memory().numTensors, before, "nothing leaked");
  } finally {
    unwatch();
    disposeT5(m);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train() stopped during an evaluation: the checkpoint owes it, the resume redoes it first and ends bit-identical", async () => {
  const inputs = [[3, 4, 1], [7, 1], [8, 9, 1], [5, 1]];
  const examples = inputs.map((_, i) => ({ task: "a", id: `a/${i}`, input: "", target: "" }));
  /**
   * The evaluator on 4 rows in batches of 2, scored by the predicted text and a weight probe (so
   * that each evaluation depends on its step's weights). `log` gets the step of each row
   * decoded; `stopAt(step, row)` true asks the process-wide stop there, as the bench's SIGTERM
   * handler does while a batch decodes.
   */
  const evalFn = (
    model: T5Model,
    log: number[] = [],
    stopAt: (step: number, row: number) => boolean = () => false,
  ) =>
  async (step: number, shouldStop: () => string | undefined) => {
    const probe = (await model.params.get("shared.weight")!.data())[0]!;
    let row = 0;
    return await evaluate(model, fullFinetune(), [{
      task: "a",
      taskId: 0,
      examples,
      inputs,
      maxNewTokens: 3,
    }], {
      step,
      batchSize: 2,
      ids: IDS,
      shouldStop,
      tokenizer: {
        decode: (ids) => {
          log.push(step);
          if (stopAt(step, ++row)) requestStop("SIGTERM");
          return ids.join(" ");
        },
      },
      scorer: {
        scoreTask: (_t, _e, preds) => ({
          probe,
          text: [...preds.join("|")].reduce((h, c) => (h * 31 + c.charCodeAt(0)) % 1e9, 7),
        }),
        groupScore: (_t, m) => m.probe!,
      },
    });
  };
  const stateOf = async (dir: string, step: number) =>
    JSON.parse(await Deno.readTextFile(`${dir}/step-${String(step).padStart(8, "0")}/state.json`));
  // Step 3 (evalEvery 3) has no scheduled checkpoint (every 2): the stop saves one; step 8, the
  // last, has one, which the resume saves again once the evaluation is done.
  for (const [spec, s] of [[{ ...SPEC, evalEvery: 3 }, 3], [SPEC, 8]] as const) {
    const dirA = await Deno.makeTempDir();
    const a = initT5(CONFIG, { seed: 1 });
    const ra = await train(opts(a, { train: spec, checkpointDir: dirA, evaluate: evalFn(a) }));
    const va = await snapshot(a);
    disposeT5(a);
    await Deno.remove(dirA, { recursive: true });
    assert.ok(ra.evals.some((e) => e.step === s), "the reference evaluates step s");
    const dir = await Deno.makeTempDir();
    const run = (m: T5Model, extra: Partial<TrainOptions> = {}) =>
      train(opts(m, { train: spec, checkpointDir: dir, evaluate: evalFn(m), ...extra }));
    const m = initT5(CONFIG, { seed: 1 });
    const before = tf.memory().numTensors;
    const log: number[] = [];
    let err;
    try {
      // The stop arrives while the first batch (rows 1-2 of 4) of step s's evaluation decodes.
      err = await run(m, { evaluate: evalFn(m, log, (st, row) => st === s && row === 1) })
        .then(() => undefined, (e) => e);
    } finally {
      clearStopRequest();
    }
    assert.ok(err instanceof TrainingInterruptedError, String(err));
    assert.equal(err.interrupted, true);
    assert.equal(err.evaluationOwed, true);
    assert.equal(err.step, s);
    assert.equal(err.checkpoint, `${dir}/step-0000000${s}`);
    assert.equal(
      err.message,
      `stopped by SIGTERM during the evaluation of step ${s} of 8; checkpoint ${dir}/step-0000000${s}: --resume redoes the evaluation of step ${s}, then continues from step ${s}`,
    );
    assert.equal(log.filter((x) => x === s).length, 2, "no batch decoded after the stop");
    assert.equal(tf.memory().numTensors, before, "nothing leaked by the abandoned evaluation");
    disposeT5(m);
    const owed = await stateOf(dir, s);
    assert.equal(owed.evalOwed, s, "the checkpoint owes the evaluation");
    assert.deepEqual(owed.evals, ra.evals.filter((e) => e.step < s), "and holds the earlier ones");
    if (s === 3) {
      // A stop already requested when the resume starts: the owed evaluation stops before its
      // first batch, and the checkpoint that owes it stays as it is.
      const b = initT5(CONFIG, { seed: 1 });
      const log2: number[] = [];
      requestStop("SIGINT");
      try {
        const e2 = await run(b, { evaluate: evalFn(b, log2) }).then(() => undefined, (e) => e);
        assert.ok(e2 instanceof TrainingInterruptedError && e2.evaluationOwed, String(e2));
        assert.equal(e2.checkpoint, `${dir}/step-00000003`);
      } finally {
        clearStopRequest();
      }
      assert.deepEqual(log2, []);
      assert.deepEqual(await stateOf(dir, 3), owed);
      // A stop in its last batch: the evaluation ends, then the loop stops before step 4 and saves
      // step 3 again, owing nothing.
      const onEval: number[] = [];
      try {
        const e3 = await run(b, {
          evaluate: evalFn(b, [], (st, row) => st === 3 && row === 4),
          onEval: (st) => onEval.push(st),
        }).then(() => undefined, (e) => e);
        assert.ok(e3 instanceof TrainingInterruptedError && !e3.evaluationOwed, String(e3));
        assert.equal(e3.step, 3);
      } finally {
        clearStopRequest();
      }
      assert.deepEqual(onEval, [3], "the owed evaluation first, before any step");
      const paid = await stateOf(dir, 3);
      assert.equal(Object.hasOwn(paid, "evalOwed"), false);
      assert.deepEqual(paid.evals, ra.evals.filter((e) => e.step <= 3));
      disposeT5(b);
    }
    const c = initT5(CONFIG, { seed: 1 });
    const seen: string[] = [];
    const rc = await run(c, {
      onEval: (st) => void seen.push(`eval ${st}`),
      onResume: (st) => void seen.push(`resume ${st}`),
    });
    assert.equal(rc.resumedFrom, s);
    // Owed (s = 8): redone first; paid by the second stop (s = 3): not again. The resume's step
    // is reported before either (at the last step too, where no step is left).
    assert.deepEqual(seen, s === 8 ? ["resume 8", "eval 8"] : ["resume 3", "eval 6", "eval 8"]);
    await assertSameAsReference(rc, c, { ra, va });
    assert.deepEqual(bestPerTask(rc.evals), bestPerTask(ra.evals));
    disposeT5(c);
    if (s === 8) {
      assert.equal(Object.hasOwn(await stateOf(dir, 8), "evalOwed"), false, "saved again, paid");
    }
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train() also checkpoints when checkpointMinutes have passed (injected clock); the resume is bit-identical", async () => {
  // No scheduled checkpoint before the last step: every other one is the clock's.
  const spec = { ...SPEC, checkpointEvery: 100 };
  /**
   * A run whose clock advances 10 minutes per step (in onStep, before the step's evaluation and
   * checkpoint), with a 25-minute interval: saves after steps 3 and 6 (30 minutes each), and 8
   * (the last step). `killAt` throws in that step's onStep, before its checkpoint.
   */
  const timed = (
    model: T5Model,
    dir: string,
    killAt?: number,
    extra: Partial<TrainOptions> = {},
  ) => {
    let clock = 0;
    return train(opts(model, {
      train: spec,
      checkpointDir: dir,
      runKey: "k",
      evaluate: evalFn(model),
      checkpointMinutes: 25,
      now: () => clock,
      onStep: (s) => {
        clock += 10 * 60_000;
        if (s === killAt) throw new Error("simulated kill");
      },
      ...extra,
    }));
  };
  const dirA = await Deno.makeTempDir();
  const a = initT5(CONFIG, { seed: 1 });
  const ra = await timed(a, dirA);
  assert.deepEqual(await listCheckpoints(dirA), [6, 8], "the newest two kept, as for step ones");
  const va = await snapshot(a);
  disposeT5(a);
  await Deno.remove(dirA, { recursive: true });
  for (const [killAt, saved] of [[5, [3]], [7, [3, 6]]] as const) {
    const dir = await Deno.makeTempDir();
    const m = initT5(CONFIG, { seed: 1 });
    const before = tf.memory().numTensors;
    await assert.rejects(() => timed(m, dir, killAt), /simulated kill/);
    assert.equal(tf.memory().numTensors, before, "nothing leaked");
    disposeT5(m);
    assert.deepEqual(await listCheckpoints(dir), saved, `killed at step ${killAt}`);
    // A fresh process: new model (same init), new source, resume from the clock's checkpoint.
    const b = initT5(CONFIG, { seed: 1 });
    const rb = await timed(b, dir);
    assert.equal(rb.resumedFrom, saved[saved.length - 1]);
    await assertSameAsReference(rb, b, { ra, va });
    disposeT5(b);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train() checkpointMinutes: 0 is off, DEFAULT_CHECKPOINT_MINUTES by default, no checkpoints without checkpointEvery, bad values refused", async () => {
  assert.equal(DEFAULT_CHECKPOINT_MINUTES, 30);
  const m = initT5(CONFIG, { seed: 1 });
  const spec = { ...SPEC, steps: 4, evalEvery: 4, checkpointEvery: 100 };
  /** Steps saved by a run killed after step 3 whose clock advances 10 minutes per step. */
  const savedBy = async (extra: Partial<TrainOptions>, train_ = spec): Promise<number[]> => {
    const dir = await Deno.makeTempDir();
    let clock = 0;
    try {
      await assert.rejects(
        () =>
          train(opts(m, {
            train: train_,
            checkpointDir: dir,
            now: () => clock,
            onStep: (s) => {
              clock += 10 * 60_000;
              if (s === 3) throw new Error("simulated kill");
            },
            ...extra,
          })),
        /simulated kill/,
      );
      return await listCheckpoints(dir);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  };
  try {
    assert.deepEqual(await savedBy({}), [], "the default 30 minutes: not by step 3 (10 min/step)");
    assert.deepEqual(await savedBy({ checkpointMinutes: 15 }), [2], "15 minutes: after step 2");
    assert.deepEqual(await savedBy({ checkpointMinutes: 25 }), [], "25 minutes: not by step 3");
    assert.deepEqual(await savedBy({ checkpointMinutes: 0 }), [], "0: off");
    assert.deepEqual(
      await savedBy({ checkpointMinutes: 5 }, { ...spec, checkpointEvery: 0 }),
      [],
      "a run that writes no checkpoints writes no timed ones either",
    );
    await assert.rejects(
      () => train(opts(m, { train: spec, checkpointMinutes: -1 })),
      /checkpointMinutes must be a number of minutes ≥ 0 \(0: off\), got -1/,
    );
    await assert.rejects(
      () => train(opts(m, { train: spec, checkpointMinutes: NaN })),
      /train\(\): checkpointMinutes must be a number of minutes ≥ 0 \(0: off\), got NaN/,
    );
  } finally {
    disposeT5(m);
  }
});

Deno.test("train() without checkpoints stops at once on a request, saying a resume starts over", async () => {
  const m = initT5(CONFIG, { seed: 1 });
  const spec = { ...SPEC, steps: 4, checkpointEvery: 0 };
  let graceful: boolean | undefined;
  const seen: boolean[] = [];
  const unwatch = watchCheckpointingLoops((running) => seen.push(running));
  try {
    const dir = await Deno.makeTempDir();
    await assert.rejects(
      () =>
        train(opts(m, {
          train: spec,
          checkpointDir: dir,
          onStep: (s) => {
            if (s === 1) graceful = requestStop("SIGTERM");
          },
        })),
      (e: unknown) =>
        e instanceof TrainingInterruptedError && e.step === 1 && e.checkpoint === undefined &&
        /SIGTERM after step 1 of 4; this run writes no checkpoints .*from step 0/.test(e.message),
    );
    assert.deepEqual([...Deno.readDirSync(dir)], [], "no checkpoint written");
    await Deno.remove(dir);
    // A stop requested before the first step: nothing trained, nothing saved.
    await assert.rejects(
      () => train(opts(m, { train: spec, shouldStop: () => "SIGINT" })),
      /SIGINT after step 0 of 4/,
    );
  } finally {
    unwatch();
    clearStopRequest();
    disposeT5(m);
  }
  assert.equal(graceful, false, "no checkpoint to wait for: the caller may stop at once");
  assert.deepEqual(seen, [], "a loop without checkpoints is not reported");
});

Deno.test("train() refuses to resume a checkpoint trained on other inputs (a data file's digest), naming it", async () => {
  const dir = await Deno.makeTempDir();
  const spec = { ...SPEC, steps: 4, evalEvery: 4, checkpointEvery: 2 };
  const inputs = {
    "data:glue/RTE/train.tsv": "a".repeat(64),
    "backbone:config.json": "c".repeat(64),
  };
  await killedRun(3, () => ({ train: spec, checkpointDir: dir, runKey: "k", inputs }));
  const state = JSON.parse(await Deno.readTextFile(`${dir}/step-00000002/state.json`));
  assert.deepEqual(state.inputs, inputs, "recorded in the checkpoint");
  const m = initT5(CONFIG, { seed: 1 });
  const lines: string[] = [];
  const resume = (given?: Record<string, string>) =>
    train(opts(m, {
      train: spec,
      checkpointDir: dir,
      runKey: "k",
      ...(given === undefined ? {} : { inputs: given }),
      log: (l) => lines.push(l),
    }));
  // Another train.tsv (edited, or another data folder's): refused, the file named. Before, the
  // run resumed, training steps 3-4 on the new file and recording only it.
  await assert.rejects(
    resume({ ...inputs, "data:glue/RTE/train.tsv": "b".repeat(64) }),
    new RegExp(
      "step-00000002: checkpoint was trained on other inputs than this run reads: " +
        "data:glue/RTE/train\\.tsv was sha256 a{12}…, is now sha256 b{12}…; put that file " +
        "back to resume it, or train the run from step 0 \\(bench: --restart, which deletes its " +
        "checkpoints\\)$",
    ),
  );
  // A file only one side has (another task set would change the run id; another backbone's
  // files would not).
  await assert.rejects(
    resume({ "data:glue/RTE/train.tsv": "a".repeat(64) }),
    /backbone:config\.json was sha256 c{12}…, is now absent/,
  );
  // The same inputs resume; so does a caller that gives none (nothing to compare).
  assert.equal((await resume(inputs)).resumedFrom, 2);
  assert.equal((await resume()).resumedFrom, 4);
  assert.deepEqual(lines, [], "a checkpoint with its inputs: nothing to say");
  // A checkpoint written before inputs were recorded resumes as before, and says that its
  // inputs go unchecked (h379: a changed data file passed without a word).
  const last = `${dir}/step-00000004/state.json`;
  const { inputs: _drop, ...legacy } = JSON.parse(await Deno.readTextFile(last));
  await Deno.writeTextFile(last, JSON.stringify(legacy));
  assert.equal((await resume({ "data:other": "d".repeat(64) })).resumedFrom, 4);
  assert.deepEqual(lines, [
    `${dir}/step-00000004/state.json has no "inputs" (written before checkpoints recorded them): ` +
    "the data and tokenizer its steps trained on cannot be checked against this run's; if they " +
    "changed since, train the run from step 0 (bench: --restart)",
  ]);
  // A caller that gives no inputs of its own has nothing to check: no line.
  lines.length = 0;
  assert.equal((await resume()).resumedFrom, 4);
  assert.deepEqual(lines, []);
  disposeT5(m);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("train() stores the code version in checkpoints and reports it on resume", async () => {
  const dir = await Deno.makeTempDir();
  const spec = { ...SPEC, steps: 4, evalEvery: 4, checkpointEvery: 2 };
  const oldCode = { sha: "a".repeat(40), dirty: true, backend: "webgpu" };
  await killedRun(3, () => ({ train: spec, checkpointDir: dir, runKey: "k", code: oldCode }));
  const state = JSON.parse(await Deno.readTextFile(`${dir}/step-00000002/state.json`));
  assert.deepEqual(state.code, oldCode, "the checkpoint names the code and backend that wrote it");
  const m2 = initT5(CONFIG, { seed: 1 });
  const before = tf.memory().numTensors;
  const r = await train(opts(m2, {
    train: spec,
    checkpointDir: dir,
    runKey: "k",
    code: { sha: "b".repeat(40), dirty: false },
  }));
  assert.equal(r.resumedFrom, 2);
  assert.deepEqual(r.resumedCode, oldCode);
  assert.equal(tf.memory().numTensors, before);
  disposeT5(m2);
  // A fresh start reports no checkpoint code; a checkpoint without a code field reads "unknown".
  const m3 = initT5(CONFIG, { seed: 1 });
  const fresh = await train(opts(m3, { train: { ...spec, steps: 2, checkpointEvery: 0 } }));
  assert.equal(fresh.resumedFrom, 0);
  assert.equal(fresh.resumedCode, undefined);
  const last = `${dir}/step-00000004/state.json`;
  // (Written before checkpoints recorded any code: neither `code` nor `codes`.)
  const { code: _drop, codes: _dropToo, ...legacy } = JSON.parse(await Deno.readTextFile(last));
  await Deno.writeTextFile(last, JSON.stringify(legacy));
  const again = await train(opts(m3, { train: spec, checkpointDir: dir, runKey: "k" }));
  assert.equal(again.resumedFrom, 4);
  assert.deepEqual(again.resumedCode, { sha: "unknown", dirty: false });
  disposeT5(m3);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("train() reports an earlier segment's other backend or code after a second resume", async () => {
  const spec = { ...SPEC, steps: 3, evalEvery: 3, checkpointEvery: 1 };
  const wasm = { sha: "a".repeat(40), dirty: false, backend: "wasm" };
  const webgpu = { sha: "a".repeat(40), dirty: false, backend: "webgpu" };
  const newer = { sha: "b".repeat(40), dirty: false, backend: "wasm" };
  // Step 1 (checkpoint 1) ran under `first`, step 2 (checkpoint 2) under `second`; the third
  // segment, under `third`, resumes from checkpoint 2, which `second` wrote.
  const cases: [string, typeof wasm, typeof wasm, typeof wasm, object][] = [
    ["A, B, B: step 1 ran on wasm", wasm, webgpu, webgpu, wasm],
    ["A, B, A: step 2 ran on webgpu", wasm, webgpu, wasm, webgpu],
    ["commit a, then b twice: step 1 ran commit a", wasm, newer, newer, wasm],
    ["one code throughout: nothing other", wasm, wasm, wasm, wasm],
  ];
  for (const [what, first, second, third, want] of cases) {
    const dir = await Deno.makeTempDir();
    await killedRun(2, () => ({ train: spec, checkpointDir: dir, runKey: "k", code: first }));
    await killedRun(3, () => ({ train: spec, checkpointDir: dir, runKey: "k", code: second }));
    const m = initT5(CONFIG, { seed: 1 });
    const r = await train(opts(m, { train: spec, checkpointDir: dir, runKey: "k", code: third }));
    disposeT5(m);
    assert.equal(r.resumedFrom, 2, what);
    assert.deepEqual(r.resumedCode, want, what);
    await Deno.remove(dir, { recursive: true });
  }
});

/** The `state.json` of a checkpoint folder's step. */
function statePath(dir: string, step: number): string {
  return `${dir}/step-${String(step).padStart(8, "0")}/state.json`;
}

/** Cuts a checkpoint's weights file short (a partial copy, a disk error). */
async function truncateWeights(dir: string, step: number): Promise<string> {
  const file = `${dir}/step-${String(step).padStart(8, "0")}/variables.safetensors`;
  const bytes = await Deno.readFile(file);
  await Deno.writeFile(file, bytes.subarray(0, bytes.length >> 1));
  return file;
}

Deno.test("train() falls back past a newest checkpoint that does not load; the resume is bit-identical and keeps the older one; onResume gets the step loaded", async () => {
  const dirA = await Deno.makeTempDir();
  const dir = await Deno.makeTempDir();
  try {
    // The reports of each segment, in order (onResume, onEval, onStep).
    let seen: string[] = [];
    const reports: Partial<TrainOptions> = {
      onResume: (s) => void seen.push(`resume ${s}`),
      onEval: (s) => void seen.push(`eval ${s}`),
    };
    const a = initT5(CONFIG, { seed: 1 });
    const ra = await train(opts(a, {
      checkpointDir: dirA,
      runKey: "k",
      evaluate: evalFn(a),
      ...reports,
    }));
    assert.deepEqual(seen, ["eval 4", "eval 8"], "a fresh run reports no resume");
    const va = await snapshot(a);
    disposeT5(a);
    const log: string[] = [];
    const resumeOpts = resumingIn(dir, log);
    await killedRun(7, resumeOpts); // checkpoints of steps 4 and 6 kept
    assert.deepEqual(await listCheckpoints(dir), [4, 6]);
    const bad = await truncateWeights(dir, 6);
    const badBytes = await Deno.readFile(bad);
    // Resumed from step 4, saving every step, killed after step 6 (before saving it): the save
    // of step 5 must not prune step 4 in favour of the bad step 6.
    seen = [];
    await killedRun(6, (m) => ({
      ...resumeOpts(m),
      ...reports,
      train: { ...SPEC, checkpointEvery: 1 },
    }));
    assert.deepEqual(seen, ["resume 4"], "the older kept checkpoint's step, once, first");
    const skipLine = (from: number) =>
      new RegExp(
        `^${dir}/step-00000006: cannot be resumed \\(${bad}: .+\\); resuming from the older ${dir}/step-0000000${from} instead \\(the folder is left as it is\\)$`,
      );
    assert.equal(log.length, 1, log.join("\n"));
    assert.match(log[0]!, skipLine(4));
    assert.deepEqual(await listCheckpoints(dir), [4, 5, 6], "the older ones kept, the bad one too");
    assert.deepEqual(await Deno.readFile(bad), badBytes, "the bad folder left as it is");
    // The last segment: step 6 skipped again, resumed from 5, to the end.
    const b = initT5(CONFIG, { seed: 1 });
    const before = tf.memory().numTensors;
    seen = [];
    const rb = await train(opts(b, {
      ...resumeOpts(b),
      ...reports,
      onStep: (s) => void seen.push(`step ${s}`),
    }));
    assert.deepEqual(seen, ["resume 5", "step 6", "step 7", "step 8", "eval 8"]);
    assert.equal(tf.memory().numTensors, before);
    assert.equal(log.length, 2);
    assert.match(log[1]!, skipLine(5));
    assert.equal(rb.resumedFrom, 5);
    await assertSameAsReference(rb, b, { ra, va });
    disposeT5(b);
    // Step 6 was saved again over the bad folder; pruning is back to the newest two.
    assert.deepEqual(await listCheckpoints(dir), [6, 8]);
  } finally {
    await Deno.remove(dirA, { recursive: true });
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train() skips a newest checkpoint whose source state the batch source refuses; the resume from the older one is bit-identical; another run's is still refused", async () => {
  const ref = await referenceRun();
  const dir = await Deno.makeTempDir();
  try {
    const log: string[] = [];
    const resumeOpts = resumingIn(dir, log);
    await killedRun(7, resumeOpts); // checkpoints of steps 4 and 6 kept
    const s6 = JSON.parse(await Deno.readTextFile(statePath(dir, 6)));
    // Rng.restore refuses a generator state of 3 words: this run's folder (its runKey), damaged.
    const damaged = JSON.stringify({ ...s6, source: { s: [1, 2, 3] } });
    await Deno.writeTextFile(statePath(dir, 6), damaged);
    // Also another run's: refused for that (checkState, before the source), not skipped.
    await Deno.writeTextFile(
      statePath(dir, 6),
      JSON.stringify({ ...JSON.parse(damaged), runKey: "o" }),
    );
    const m = initT5(CONFIG, { seed: 1 });
    const before = tf.memory().numTensors;
    await assert.rejects(
      () => train(opts(m, resumeOpts(m))),
      /step-00000006: checkpoint belongs to run "o", not k/,
    );
    assert.deepEqual(log, []);
    assert.equal(tf.memory().numTensors, before);
    // This run's: skipped, naming the field and the source's reason, for step 4.
    await Deno.writeTextFile(statePath(dir, 6), damaged);
    const rb = await train(opts(m, resumeOpts(m)));
    assert.equal(tf.memory().numTensors, before);
    assert.equal(log.length, 1, log.join("\n"));
    assert.match(
      log[0]!,
      new RegExp(
        `^${dir}/step-00000006: cannot be resumed \\(${
          statePath(dir, 6)
        }: field "source": benchmarks/rng\\.ts Rng\\.restore: field "s" must be 4 unsigned 32-bit integers, got \\[1,2,3\\]\\); resuming from the older ${dir}/step-00000004 instead`,
      ),
    );
    assert.equal(rb.resumedFrom, 4);
    await assertSameAsReference(rb, m, ref);
    disposeT5(m);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train() refuses, not skips, another run's checkpoint; names every folder when none can be resumed", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await killedRun(5, () => ({ checkpointDir: dir, runKey: "k" })); // steps 2 and 4
    const log: string[] = [];
    const m = initT5(CONFIG, { seed: 1 });
    const before = tf.memory().numTensors;
    const resume = () =>
      train(opts(m, { checkpointDir: dir, runKey: "k", log: (l) => log.push(l) }));
    const s4 = await Deno.readTextFile(statePath(dir, 4));
    const other = (text: string) => JSON.stringify({ ...JSON.parse(text), runKey: "other" });
    // The newest loads but is another run's: refused, even though step 2 is this run's.
    await Deno.writeTextFile(statePath(dir, 4), other(s4));
    await assert.rejects(resume, /step-00000004: checkpoint belongs to run "other", not k/);
    // The newest does not load, the older is another run's: refused too.
    await Deno.writeTextFile(statePath(dir, 4), s4);
    const bad = await truncateWeights(dir, 4);
    await Deno.writeTextFile(statePath(dir, 2), other(await Deno.readTextFile(statePath(dir, 2))));
    await assert.rejects(resume, /step-00000002: checkpoint belongs to run "other", not k/);
    // The newest is another run's and its weights do not load, the older is this run's: refused
    // for being another run's (its state.json says so), not passed over for the older one.
    const s2 = JSON.stringify({
      ...JSON.parse(await Deno.readTextFile(statePath(dir, 2))),
      runKey: "k",
    });
    await Deno.writeTextFile(statePath(dir, 2), s2);
    await Deno.writeTextFile(statePath(dir, 4), other(s4));
    await assert.rejects(resume, /step-00000004: checkpoint belongs to run "other", not k/);
    // Its state.json without a runKey (not this run's either): refused, saying so.
    const { runKey: _none, ...keyless } = JSON.parse(s4);
    await Deno.writeTextFile(statePath(dir, 4), JSON.stringify(keyless));
    await assert.rejects(
      resume,
      /step-00000004: checkpoint belongs to run \(none: its state\.json has no runKey\), not k/,
    );
    assert.deepEqual(log, [], "nothing skipped: every folder was refused or none resumed");
    await Deno.writeTextFile(statePath(dir, 4), s4);
    // Neither can be resumed: one error naming both, newest first, with the reasons.
    await Deno.writeTextFile(statePath(dir, 2), "{");
    await assert.rejects(resume, (e: Error) => {
      assert.match(
        e.message,
        new RegExp(
          `^${dir}: no checkpoint can be resumed \\(2 tried, newest first\\): step-00000004: ${bad}: .+; step-00000002: ${
            statePath(dir, 2)
          }: cannot read checkpoint state: .+$`,
        ),
      );
      return true;
    });
    assert.equal(tf.memory().numTensors, before, "nothing kept of the refused checkpoints");
    assert.deepEqual(await listCheckpoints(dir), [2, 4], "nothing removed");
    disposeT5(m);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train() skips a checkpoint whose variable has another shape, naming it, and leaks nothing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const spec = { ...SPEC, steps: 4, evalEvery: 4, checkpointEvery: 2 };
    await killedRun(3, () => ({ train: spec, checkpointDir: dir, runKey: "k" })); // step 2
    const ck = await loadCheckpoint(`${dir}/step-00000002`);
    const [name, first] = [...ck.variables][0]!;
    const wrong = tf.zeros([3]);
    await saveCheckpoint(dir, {
      variables: new Map([...ck.variables, [name, wrong]]),
      slots: ck.slots,
      state: ck.state,
    });
    const shape = first.shape;
    disposeCheckpoint(ck);
    wrong.dispose();
    const m = initT5(CONFIG, { seed: 1 });
    const before = tf.memory().numTensors;
    await assert.rejects(
      () => train(opts(m, { train: spec, checkpointDir: dir, runKey: "k" })),
      (e: Error) => {
        assert.equal(
          e.message,
          `${dir}: no checkpoint can be resumed (1 tried, newest first): step-00000002: ${dir}/step-00000002/variables.safetensors: variable "${name}" is float32 [3], this run's is float32 [${shape}]; ${NO_RESUME_ADVICE}`,
        );
        return true;
      },
    );
    assert.equal(tf.memory().numTensors, before, "nothing kept of the refused checkpoint");
    disposeT5(m);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train() skips a checkpoint whose optimizer slots this run's optimizer would not make, naming the slot, before restoring anything", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const spec = { ...SPEC, steps: 4, evalEvery: 4, checkpointEvery: 2 };
    const a = initT5(CONFIG, { seed: 1 });
    await train(opts(a, { train: spec, checkpointDir: dir, runKey: "k" })); // steps 2 and 4
    disposeT5(a);
    const step4 = `${dir}/step-00000004`;
    const good = await loadCheckpoint(step4);
    // A matrix's factored slots (Adafactor, the default optimizer): vr and vc.
    const vr = [...good.slots.keys()].find((k) => k.endsWith("/vr"))!;
    const name = vr.slice(0, -3);
    const shape = good.slots.get(vr)!.shape;
    const three = tf.zeros([3]);
    const without = (key: string) => new Map([...good.slots].filter(([k]) => k !== key));
    const cases: [string, Map<string, tf.Tensor>, string][] = [
      [
        "another shape",
        new Map([...good.slots, [vr, three]]),
        `slot "${vr}" is float32 [3], this run's optimizer makes float32 [${shape}]`,
      ],
      [
        "a slot the optimizer does not keep",
        new Map([...good.slots, [`${name}/m`, three]]),
        `slot "${name}/m": this run's adafactor keeps "${name}/vr", "${name}/vc" for that variable`,
      ],
      [
        "a slot of no trained variable",
        new Map([...good.slots, ["nope/v", three]]),
        `slot "nope/v" is not "<variable>/<slot>" of a variable this run trains`,
      ],
      [
        "one of a variable's slots missing",
        without(`${name}/vc`),
        `variable "${name}" has slot "${name}/vr" but not "${name}/vc"`,
      ],
      [
        "no slots after 4 updates",
        new Map(),
        `no slots, but state.json's "optimizerStep" says 4 updates were made`,
      ],
    ];
    for (const [what, slots, reason] of cases) {
      await saveCheckpoint(dir, { variables: good.variables, slots, state: good.state });
      const m = initT5(CONFIG, { seed: 1 });
      const before = tf.memory().numTensors;
      const log: string[] = [];
      const out = await train(
        opts(m, { train: spec, checkpointDir: dir, runKey: "k", log: (l) => log.push(l) }),
      );
      // Skipped for the older step 2 (so nothing of step 4 was restored), trained to the end.
      assert.deepEqual(log, [
        `${step4}: cannot be resumed (${step4}/optimizer.safetensors: ${reason}); resuming from the older ${dir}/step-00000002 instead (the folder is left as it is)`,
      ], what);
      assert.equal(out.resumedFrom, 2, what);
      assert.equal(tf.memory().numTensors, before, `${what}: tensors leaked`);
      disposeT5(m);
    }
    // The intact folder is resumed as before.
    await saveCheckpoint(dir, good);
    const m = initT5(CONFIG, { seed: 1 });
    const log: string[] = [];
    const out = await train(
      opts(m, { train: spec, checkpointDir: dir, runKey: "k", log: (l) => log.push(l) }),
    );
    assert.deepEqual(log, []);
    assert.equal(out.resumedFrom, 4);
    disposeT5(m);
    disposeCheckpoint(good);
    three.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("optimizerSlotShapes: the slots each optimizer makes at its first update, by name and shape", () => {
  const shapes: Record<string, number[]> = {
    matrix: [64, 32],
    prompts: [4, 16, 32],
    wide: [256, 4, 128],
    narrow: [130, 3],
    vector: [8],
  };
  const configs: OptimizerConfig[] = [
    { kind: "adafactor" },
    { kind: "adafactor", minDimSizeToFactor: 128 },
    { kind: "adafactor", beta1: 0.9, factored: false },
    { kind: "adamw" },
  ];
  for (const cfg of configs) {
    const params = new Map(Object.entries(shapes).map(([n, s]) => [n, tf.variable(tf.ones(s))]));
    const grads = new Map([...params].map(([n, v]) => [n, tf.onesLike(v)]));
    const opt = createOptimizer(cfg);
    opt.apply(params, grads, 1e-3);
    const made = [...opt.slots()].map(([k, t]) => `${k} [${t.shape}]`).sort();
    const want = Object.entries(shapes).flatMap(([n, s]) =>
      [...optimizerSlotShapes(cfg, s)].map(([k, shape]) => `${n}/${k} [${shape}]`)
    ).sort();
    assert.deepEqual(made, want, JSON.stringify(cfg));
    opt.dispose();
    tf.dispose([...params.values(), ...grads.values()]);
  }
});

Deno.test("optimizerConfigFor: train.optimizer, train.weightDecay and train.adafactor, Hugging Face's Adafactor by default", () => {
  assert.deepEqual(optimizerConfigFor({ ...SPEC, optimizer: "adamw", weightDecay: 0.01 }), {
    kind: "adamw",
    weightDecay: 0.01,
  });
  // An override to AdamW drops Adafactor's settings (spec.ts TrainSpec.adafactor).
  assert.deepEqual(
    optimizerConfigFor({ ...SPEC, optimizer: "adamw", adafactor: { minDimSizeToFactor: 128 } }),
    { kind: "adamw", weightDecay: 0 },
  );
  assert.deepEqual(optimizerConfigFor({ ...SPEC, optimizer: "adafactor" }), {
    kind: "adafactor",
    weightDecay: 0,
    multiplyByParameterScale: false,
  });
  const adafactor = {
    multiplyByParameterScale: true,
    minDimSizeToFactor: 128,
    weightDecayRate: 1e-5,
  };
  assert.deepEqual(optimizerConfigFor({ ...SPEC, optimizer: "adafactor", adafactor }), {
    kind: "adafactor",
    weightDecay: 0,
    ...adafactor,
  });
});

Deno.test("train() creates its optimizer from optimizerConfigFor(train): the slots it saves are that configuration's", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const trains: TrainSpec[] = [
      { ...SPEC, optimizer: "adafactor" },
      // Above every dimension: no variable factored (a full `v` instead of `vr` and `vc`).
      { ...SPEC, optimizer: "adafactor", adafactor: { minDimSizeToFactor: 1 << 20 } },
      { ...SPEC, optimizer: "adamw", weightDecay: 0.01 },
    ];
    const made = new Set<string>();
    for (const [i, spec] of trains.entries()) {
      const t = { ...spec, steps: 1, checkpointEvery: 1 };
      const m = initT5(CONFIG, { seed: 1 });
      try {
        await train(opts(m, { train: t, checkpointDir: `${dir}/${i}` }));
        const ck = await loadCheckpoint(`${dir}/${i}/step-00000001`);
        const have = [...ck.slots].map(([k, x]) => `${k} [${x.shape}]`).sort();
        disposeCheckpoint(ck);
        const want = [...m.params].flatMap(([n, v]) =>
          [...optimizerSlotShapes(optimizerConfigFor(t), v.shape)].map(([k, s]) =>
            `${n}/${k} [${s}]`
          )
        ).sort();
        assert.deepEqual(have, want, JSON.stringify(spec.adafactor ?? spec.optimizer));
        made.add(have.join());
      } finally {
        disposeT5(m);
      }
    }
    assert.equal(made.size, trains.length, "each configuration makes other slots");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train() without an evaluate callback refuses a checkpoint that owes an evaluation, keeping the debt and the batch source as they were", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await killedRun(3, (m) => ({ checkpointDir: dir, runKey: "k", evaluate: evalFn(m) }));
    // As a stop during step 2's evaluation leaves it (SPEC evaluates every 4; 2 is made owed).
    const file = statePath(dir, 2);
    const owing = JSON.stringify({ ...JSON.parse(await Deno.readTextFile(file)), evalOwed: 2 });
    await Deno.writeTextFile(file, owing);
    const m = initT5(CONFIG, { seed: 1 });
    const source = new ToySource();
    const fresh = JSON.stringify(source.state());
    await assert.rejects(
      () => train(opts(m, { checkpointDir: dir, runKey: "k", source })),
      (e: Error) => {
        assert.equal(
          e.message,
          `${dir}/step-00000002/state.json: field "evalOwed": the checkpoint owes the evaluation of step 2 (a stop abandoned it), but this resume has no evaluate callback to redo it; resume it with one (as runOne does), or the run's results would lack that evaluation`,
        );
        return true;
      },
    );
    assert.equal(await Deno.readTextFile(file), owing, "the debt is kept");
    // Refused before the checkpoint's batch-source state is restored (step 2's differs).
    assert.equal(JSON.stringify(source.state()), fresh, "the batch source is left as it was");
    assert.deepEqual(await listCheckpoints(dir), [2]);
    // A resume that can pay it does so first.
    const onEval: number[] = [];
    const r = await train(opts(m, {
      checkpointDir: dir,
      runKey: "k",
      evaluate: evalFn(m),
      onEval: (s) => onEval.push(s),
    }));
    assert.deepEqual(onEval, [2, 4, 8]);
    assert.deepEqual(r.evals.map((e) => e.step), [2, 4, 8]);
    disposeT5(m);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("rowsPerPass: train.microBatchSize below the batch, else the batch; one that does not divide it is refused", () => {
  const rows = (microBatchSize?: number) =>
    rowsPerPass({ ...SPEC, batchSize: 8, ...(microBatchSize ? { microBatchSize } : {}) });
  assert.deepEqual([rows(), rows(8), rows(16), rows(4), rows(1)], [8, 8, 8, 4, 1]);
  assert.throws(() => rows(3), /microBatchSize 3 does not divide the batch of 8 rows/);
});

Deno.test("train() records every session's micro-batch (state.json microBatchSizes); a checkpoint without it reads as unknown", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const spec = { ...SPEC, steps: 4, evalEvery: 4, checkpointEvery: 2 };
    // The first session trains in micro-batches of 2 rows (a preflight's choice), the second
    // whole batches of 4 (another device's).
    await killedRun(3, () => ({ train: { ...spec, microBatchSize: 2 }, checkpointDir: dir }));
    assert.deepEqual(JSON.parse(await Deno.readTextFile(statePath(dir, 2))).microBatchSizes, [2]);
    const m = initT5(CONFIG, { seed: 1 });
    const r = await train(opts(m, { train: spec, checkpointDir: dir }));
    assert.equal(r.resumedFrom, 2);
    assert.deepEqual(r.microBatchSizes, [2, 4], "mixed");
    const last = statePath(dir, 4);
    assert.deepEqual(JSON.parse(await Deno.readTextFile(last)).microBatchSizes, [2, 4]);
    // A session with one already recorded adds nothing; a microBatchSize not below the batch
    // is the whole batch.
    const again = await train(
      opts(m, { train: { ...spec, microBatchSize: 2 }, checkpointDir: dir }),
    );
    assert.deepEqual(again.microBatchSizes, [2, 4]);
    const whole = await train(
      opts(m, { train: { ...spec, microBatchSize: 8 }, checkpointDir: dir }),
    );
    assert.deepEqual(whole.microBatchSizes, [2, 4]);
    // Written before the field existed: the earlier sessions' micro-batch is unknown (null).
    const { microBatchSizes: _drop, ...legacy } = JSON.parse(await Deno.readTextFile(last));
    await Deno.writeTextFile(last, JSON.stringify(legacy));
    const old = await train(opts(m, { train: spec, checkpointDir: dir }));
    assert.equal(old.resumedFrom, 4);
    assert.deepEqual(old.microBatchSizes, [null, 4]);
    // A run never resumed: its own only.
    const fresh = await train(opts(m, { train: { ...spec, steps: 1, checkpointEvery: 0 } }));
    assert.deepEqual(fresh.microBatchSizes, [4]);
    disposeT5(m);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train() resumed from a checkpoint without tokens/trainMs counts only the steps since, says so, and carries that on", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const spec = { ...SPEC, steps: 4, evalEvery: 4, checkpointEvery: 2 };
    const m = initT5(CONFIG, { seed: 1 });
    // The whole run's tokens: the batches depend on the source's seed only.
    const whole = await train(opts(m, { train: { ...spec, checkpointEvery: 0 } }));
    assert.equal(whole.throughputFromStep, 0);
    assert.equal(whole.checkpoint, undefined, "no checkpoints written");
    await killedRun(3, () => ({ train: spec, checkpointDir: dir, runKey: "k" }));
    const file = statePath(dir, 2);
    const { tokens: early, trainMs: _ms, ...legacy } = JSON.parse(await Deno.readTextFile(file));
    assert.ok(early > 0 && early < whole.tokens, `${early} of ${whole.tokens}`);
    assert.equal(Object.hasOwn(legacy, "tokensFromStep"), false, "a whole run's state has none");
    // Written before checkpoints carried the totals (trainer 50bcbf7).
    await Deno.writeTextFile(file, JSON.stringify(legacy));
    const lines: string[] = [];
    const r = await train(
      opts(m, { train: spec, checkpointDir: dir, runKey: "k", log: (l) => lines.push(l) }),
    );
    assert.equal(r.resumedFrom, 2);
    assert.equal(r.throughputFromStep, 2);
    assert.equal(r.tokens, whole.tokens - early, "steps 3-4 only, not 0 for steps 1-2");
    assert.ok(r.trainSeconds > 0);
    assert.equal(r.checkpoint, `${dir}/step-00000004`);
    assert.deepEqual(lines, [
      `${dir}/step-00000002/state.json has no "tokens" or "trainMs" (written before checkpoints recorded them): the run's throughput counts only the steps after 2`,
    ]);
    // The next checkpoint says from which step it counts, so a later resume does not take its
    // totals for the whole run's.
    const last = JSON.parse(await Deno.readTextFile(statePath(dir, 4)));
    assert.equal(last.tokensFromStep, 2);
    assert.equal(last.tokens, r.tokens);
    const again = await train(opts(m, { train: spec, checkpointDir: dir, runKey: "k" }));
    assert.equal(again.resumedFrom, 4);
    assert.equal(again.throughputFromStep, 2);
    assert.equal(again.tokens, r.tokens);
    assert.equal(again.checkpoint, `${dir}/step-00000004`, "the one resumed from");
    disposeT5(m);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train() carries the run's wall time in its checkpoints (wallMs); one without it counts its trainMs, or 0, and says so", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const spec = { ...SPEC, steps: 4, evalEvery: 4, checkpointEvery: 2 };
    const m = initT5(CONFIG, { seed: 1 });
    // A standing clock: each session's wall time is exactly now - clockStart.
    await killedRun(3, () => ({
      train: spec,
      checkpointDir: dir,
      runKey: "k",
      now: () => 5_000,
      clockStart: 1_000,
    }));
    const first = JSON.parse(await Deno.readTextFile(statePath(dir, 2)));
    assert.equal(first.wallMs, 4_000, "the first session's, up to its save");
    const lines: string[] = [];
    const resume = (clockStart: number) =>
      train(opts(m, {
        train: spec,
        checkpointDir: dir,
        runKey: "k",
        now: () => 10_000,
        clockStart,
        log: (l) => lines.push(l),
      }));
    const r = await resume(9_500);
    assert.equal(r.resumedFrom, 2);
    assert.equal(r.resumedWallSeconds, 4, "the checkpoint's, not this session's alone");
    const last = JSON.parse(await Deno.readTextFile(statePath(dir, 4)));
    assert.equal(last.wallMs, 4_000 + 500, "carried on: the first session's and this one's");
    assert.deepEqual(lines, []);
    // Written before checkpoints carried it: the earlier sessions count as their trainMs.
    const { wallMs: _w, ...noWall } = last;
    assert.ok(noWall.trainMs > 0);
    await Deno.writeTextFile(statePath(dir, 4), JSON.stringify(noWall));
    const old = await resume(10_000);
    assert.equal(old.resumedFrom, 4);
    assert.equal(old.resumedWallSeconds, noWall.trainMs / 1000);
    assert.deepEqual(lines, [
      `${dir}/step-00000004/state.json has no "wallMs" (written before checkpoints recorded it): the run's wall time counts the sessions before step 4 as their training steps' ${
        noWall.trainMs / 1000
      } s ("trainMs")`,
    ]);
    // ... and without trainMs either (trainer 50bcbf7): as 0.
    const { tokens: _t, trainMs: _ms, ...legacy } = noWall;
    await Deno.writeTextFile(statePath(dir, 4), JSON.stringify(legacy));
    lines.length = 0;
    const older = await resume(10_000);
    assert.equal(older.resumedWallSeconds, 0);
    assert.equal(lines.length, 2, lines.join("\n"));
    assert.equal(
      lines[1],
      `${dir}/step-00000004/state.json has no "wallMs" (written before checkpoints recorded it): the run's wall time counts the sessions before step 4 as 0 s (it has no "trainMs" either)`,
    );
    disposeT5(m);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train() frees every tensor when a step fails after its gradients exist, or in its forward pass", async () => {
  const m = initT5(CONFIG, { seed: 1 });
  const dir = await Deno.makeTempDir();
  try {
    const before = tf.memory().numTensors;
    // The learning rate is read after the gradients (and their clipped copies) exist; an
    // unknown schedule kind (a spec that skipped validateTrain) throws there, at step 1.
    const bogus = { ...SPEC.schedule, kind: "bogus" } as unknown as TrainSpec["schedule"];
    await assert.rejects(
      () =>
        train(opts(m, { train: { ...SPEC, schedule: bogus }, checkpointDir: dir, runKey: "k" })),
      /field "kind" must be constant, warmup_linear or warmup_rsqrt, got "bogus"/,
    );
    assert.equal(tf.memory().numTensors, before, "the step's gradients freed");
    // A method hook that throws inside the forward pass of step 3 (after two checkpoints' steps).
    let calls = 0;
    const instance: MethodInstance = {
      ...fullFinetune(),
      hooks: () => {
        if (++calls === 3) throw new Error("hook failed");
        return {};
      },
    };
    await assert.rejects(
      () => train(opts(m, { instance, train: { ...SPEC, checkpointEvery: 1 } })),
      /hook failed/,
    );
    assert.equal(tf.memory().numTensors, before, "the forward pass's tensors freed");
  } finally {
    disposeT5(m);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train() stops on a non-finite loss with a diagnostic", async () => {
  const model = initT5(CONFIG, { seed: 1 });
  const before = tf.memory().numTensors;
  const bad = "decoder.final_layer_norm.weight";
  const losses: number[] = [];
  const err = await train(opts(model, {
    onStep: (s, l) => {
      losses.push(l);
      if (s === 2) {
        const v = model.params.get(bad)!;
        const nan = tf.fill(v.shape, NaN);
        v.assign(nan);
        nan.dispose();
      }
    },
  })).then(() => undefined, (e) => e);
  assert.ok(err instanceof NonFiniteLossError, String(err));
  assert.equal(err.step, 3);
  assert.equal(err.lastFiniteLoss, losses[1]);
  assert.ok(err.badVariables.includes(bad), err.message);
  assert.equal(err.taskNames.length, 4);
  assert.match(err.message, /non-finite training loss NaN at step 3;/);
  assert.equal(tf.memory().numTensors, before);
  disposeT5(model);
});

/** An `onStep` that fills `name` of `model` with NaN after step `step`'s update (an overflow). */
function poisonAt(model: T5Model, step: number, name: string): (s: number) => void {
  return (s) => {
    if (s !== step) return;
    const v = model.params.get(name)!;
    const nan = tf.fill(v.shape, NaN);
    v.assign(nan);
    nan.dispose();
  };
}

Deno.test("train() refuses the variables the last update left non-finite: no evaluation, no checkpoint of them, an error naming them", async () => {
  // The last step's loss is finite (computed before its update), so only a check of the
  // variables sees an update that overflowed; here the update's result is replaced by NaN.
  const dir = await Deno.makeTempDir();
  const model = initT5(CONFIG, { seed: 1 });
  try {
    const bad = "decoder.final_layer_norm.weight";
    const evaluated: number[] = [];
    const before = tf.memory().numTensors;
    const err = await train(opts(model, {
      train: { ...SPEC, steps: 2, evalEvery: 1, checkpointEvery: 1 },
      checkpointDir: dir,
      runKey: "k",
      evaluate: (step) => {
        evaluated.push(step);
        return Promise.resolve([]);
      },
      onStep: poisonAt(model, 2, bad),
    })).then(() => undefined, (e) => e);
    assert.ok(err instanceof NonFiniteVariablesError, String(err));
    assert.equal(err.step, 2);
    assert.deepEqual(err.badVariables, [bad]);
    assert.match(
      err.message,
      /^benchmarks\/trainer\.ts: the update of step 2 left non-finite variables: decoder\.final_layer_norm\.weight \(its training loss [0-9.]+ was finite: the training diverged; /,
    );
    assert.deepEqual(evaluated, [1], "step 2's model is not evaluated");
    assert.deepEqual(await listCheckpoints(dir), [1], "nor saved");
    assert.equal(tf.memory().numTensors, before);
    // A step with a checkpoint but no evaluation (of 3 steps, evaluated at the last): the save
    // checks, so no checkpoint of step 2 (whose resume would fail at once).
    const other = await Deno.makeTempDir();
    const m3 = initT5(CONFIG, { seed: 1 });
    try {
      const err3 = await train(opts(m3, {
        train: { ...SPEC, steps: 3, evalEvery: 3, checkpointEvery: 1 },
        checkpointDir: other,
        runKey: "k",
        onStep: poisonAt(m3, 2, bad),
      })).then(() => undefined, (e) => e);
      assert.ok(err3 instanceof NonFiniteVariablesError, String(err3));
      assert.equal(err3.step, 2);
      assert.deepEqual(await listCheckpoints(other), [1]);
    } finally {
      disposeT5(m3);
      await Deno.remove(other, { recursive: true });
    }
    // Without checkpoints the checks before an evaluation and at the end stand alone: the first
    // update (nothing evaluated), a middle one (evaluated up to it), the last one of a library
    // caller that neither evaluates nor saves (NaN weights never returned as trained).
    for (
      const [spec, poisonStep, evaluates, wantEvaluated] of [
        [{ ...SPEC, steps: 1, evalEvery: 1, checkpointEvery: 0 }, 1, true, []],
        [{ ...SPEC, steps: 3, evalEvery: 1, checkpointEvery: 0 }, 2, true, [1]],
        [{ ...SPEC, steps: 2, evalEvery: 1, checkpointEvery: 0 }, 2, false, []],
      ] as const
    ) {
      const m = initT5(CONFIG, { seed: 1 });
      const seen: number[] = [];
      try {
        const e = await train(opts(m, {
          train: spec,
          ...(evaluates
            ? {
              evaluate: (step: number) => {
                seen.push(step);
                return Promise.resolve([]);
              },
            }
            : {}),
          onStep: poisonAt(m, poisonStep, bad),
        })).then(() => undefined, (x) => x);
        const what = `steps ${spec.steps}, poisoned at ${poisonStep}`;
        assert.ok(e instanceof NonFiniteVariablesError, `${what}: ${e}`);
        assert.equal(e.step, poisonStep, what);
        assert.deepEqual(seen, wantEvaluated, what);
      } finally {
        disposeT5(m);
      }
    }
    // A checkpoint saved after a divergence (by code before this check): its resume is refused,
    // naming the folder, not skipped for an older one that would diverge the same way.
    const ck = await loadCheckpoint(`${dir}/step-00000001`);
    const nan = tf.fill(ck.variables.get(bad)!.shape, NaN);
    await saveCheckpoint(dir, {
      variables: new Map([...ck.variables, [bad, nan]]),
      slots: ck.slots,
      state: ck.state,
    });
    nan.dispose();
    disposeCheckpoint(ck);
    const m = initT5(CONFIG, { seed: 1 });
    const resumed = await train(opts(m, {
      train: { ...SPEC, steps: 2, evalEvery: 1, checkpointEvery: 1 },
      checkpointDir: dir,
      runKey: "k",
    })).then(() => undefined, (e) => e);
    disposeT5(m);
    assert.ok(resumed instanceof NonFiniteVariablesError, String(resumed));
    assert.equal(
      resumed.message,
      `benchmarks/trainer.ts: ${dir}/step-00000001 (step 1) holds non-finite variables: ${bad}: ` +
        "it was saved after the training diverged, and resuming it would fail again; its " +
        "settings diverge (bench: --restart trains it from step 0; a lower learning rate, " +
        "train.clipNorm or a warmup is another run)",
    );
  } finally {
    disposeT5(model);
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * A full fine-tuning method with one more trained variable, `probe` (`[1]`, 0), that enters the
 * encoder's input embeddings as `term(probe)` added to them (a term whose value is 0).
 */
function probeMethod(
  term: (probe: tf.Variable) => tf.Tensor,
): { instance: MethodInstance; probe: tf.Variable } {
  const zero = tf.zeros([1]);
  const probe = tf.variable(zero, true);
  zero.dispose();
  const instance: MethodInstance = {
    ...fullFinetune(),
    variables: new Map([["probe", probe]]),
    hooks: () => ({
      encoderInput: (embeds, mask) => ({
        embeds: tf.add(embeds, term(probe)) as tf.Tensor3D,
        mask,
      }),
    }),
  };
  return { instance, probe };
}

Deno.test("train() names a non-finite gradient norm as such when the loss is finite", async () => {
  // A method variable at 0 entering the forward pass as sqrt(w)·0: the loss is finite, but
  // d/dw = 0 / (2·sqrt(0)) = NaN. The error must say the gradient norm was not finite and give
  // the step's real (finite) loss, not call the loss NaN.
  const model = initT5(NO_DROPOUT, { seed: 1 });
  const { instance, probe } = probeMethod((p) => tf.mul(tf.sqrt(p), 0));
  const start = await snapshot(model);
  const before = tf.memory().numTensors;
  const err = await train(opts(model, { instance, train: { ...SPEC, checkpointEvery: 0 } }))
    .then(() => undefined, (e) => e);
  assert.ok(err instanceof NonFiniteLossError, String(err));
  assert.equal(err.step, 1);
  assert.ok(Number.isFinite(err.loss) && err.loss > 0, `loss ${err.loss}`);
  assert.ok(Number.isNaN(err.gradNorm), `gradNorm ${err.gradNorm}`);
  assert.deepEqual(err.badGradients, ["probe"]);
  assert.match(
    err.message,
    new RegExp(`non-finite gradient norm NaN at step 1 \\(training loss ${err.loss} is finite\\)`),
  );
  assert.doesNotMatch(err.message, /training loss NaN/);
  assert.equal(tf.memory().numTensors, before);
  // Nothing was updated at that step.
  const end = await snapshot(model);
  for (const [n, x] of start) assert.deepEqual(end.get(n), x, n);
  assert.deepEqual(Array.from(await probe.data()), [0]);
  probe.dispose();
  disposeT5(model);
});

Deno.test("train() names an infinite gradient norm of finite gradients as an overflow", async () => {
  // A method variable at 0 entering the forward pass as w·1e30: the loss is unchanged, and w's
  // gradient (1e30 times a sum of small ones) is finite, but its square overflows float32.
  const model = initT5(NO_DROPOUT, { seed: 1 });
  const { instance, probe } = probeMethod((p) => tf.mul(p, 1e30));
  const before = tf.memory().numTensors;
  const err = await train(opts(model, { instance, train: { ...SPEC, checkpointEvery: 0 } }))
    .then(() => undefined, (e) => e);
  assert.ok(err instanceof NonFiniteLossError, String(err));
  assert.equal(err.gradNorm, Infinity);
  assert.deepEqual(err.badGradients, []);
  assert.match(
    err.message,
    /non-finite gradient norm Infinity at step 1 \(training loss [0-9.]+ is finite; every gradient is finite: the sum of their squares overflows float32\)/,
  );
  assert.equal(tf.memory().numTensors, before);
  probe.dispose();
  disposeT5(model);
});

Deno.test("NonFiniteLossError: an infinite norm with a non-finite gradient names that gradient, not an overflow", () => {
  const bad = new NonFiniteLossError(3, 1.5, ["cola"], 1.4, [], ["w"], Infinity);
  assert.match(
    bad.message,
    /non-finite gradient norm Infinity at step 3 \(training loss 1\.5 is finite\);/,
  );
  assert.match(bad.message, /non-finite gradients: w$/);
  assert.doesNotMatch(bad.message, /overflows/);
  // A NaN norm of finite gradients is no overflow either.
  assert.doesNotMatch(
    new NonFiniteLossError(3, 1.5, ["cola"], 1.4, [], [], NaN).message,
    /overflows/,
  );
  assert.match(
    new NonFiniteLossError(3, 1.5, ["cola"], 1.4, [], [], Infinity).message,
    /every gradient is finite: the sum of their squares overflows float32/,
  );
});

Deno.test("train() with a hyper-prompt method: method variables train, numTensors stays flat", async () => {
  const model = initT5(CONFIG, { seed: 1 });
  const m = getMethod("hyperprompt_global");
  const instance = m.create(
    { config: CONFIG, tasks: ["a", "b"], seed: 2, backbone: model.params },
    m.parseConfig({}, "test"),
  );
  const before = new Map<string, Float32Array>();
  for (const [n, v] of instance.variables) before.set(n, (await v.data()) as Float32Array);
  const counts: number[] = [];
  await train(opts(model, {
    instance,
    train: { ...SPEC, steps: 20 },
    onStep: () => {
      counts.push(tf.memory().numTensors);
    },
  }));
  assert.equal(counts[counts.length - 1], counts[1], `numTensors per step: ${counts}`);
  let changed = 0;
  for (const [n, v] of instance.variables) {
    const now = (await v.data()) as Float32Array;
    if (now.some((x, i) => x !== before.get(n)![i])) changed++;
  }
  assert.ok(changed > 0, "method variables were updated");
  instance.dispose();
  disposeT5(model);
});

// ---------------------------------------------------------------------------------------------
// Gradient accumulation (train.microBatchSize)

const NO_DROPOUT: T5Config = { ...CONFIG, dropoutRate: 0 };

/** Largest |a - b| over |b|'s largest magnitude, over all elements of two equal-length arrays. */
function relMaxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  let m = 0;
  for (let i = 0; i < b.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    m = Math.max(m, Math.abs(b[i]!));
  }
  return m === 0 ? d : d / m;
}

Deno.test("lossAndGrads: micro-batches of 1 and of 2 rows, counting unequal target tokens, give the full batch's loss and gradients", async () => {
  const model = initT5(NO_DROPOUT, { seed: 1 });
  const varList = [...model.params.values()];
  // Rows of 3, 1, 2 and 3 target tokens (the rest of each row's labels -100): micro-batches of
  // 2 count 4 and 5 tokens (weights 4/9, 5/9), and without their last rows 3 and 2 (3/5, 2/5),
  // so a count that misses or mis-weighs any row of a micro-batch changes the sum.
  const data = new ToySource(true).data;
  const batch = collate([data[0]!, data[2]!, data[1]!, data[3]!], IDS);
  const labels = await batch.labels.data();
  const width = batch.labels.shape[1];
  const perRow = [0, 1, 2, 3].map((r) =>
    Array.from({ length: width }, (_, c) => labels[r * width + c]).filter((l) => l !== -100).length
  );
  assert.deepEqual(perRow, [3, 1, 2, 3], "target tokens per row");
  const o = opts(model, { train: { ...SPEC, labelSmoothing: 0.1 } });
  const full = await lossAndGrads(o, batch, varList, 5);
  const lf = (await full.value.data())[0]!;
  for (const microBatchSize of [1, 2]) {
    const before = tf.memory().numTensors;
    const acc = await lossAndGrads(
      { ...o, train: { ...o.train, microBatchSize } },
      batch,
      varList,
      5,
    );
    assert.equal(
      tf.memory().numTensors - before,
      1 + Object.keys(acc.grads).length,
      `micro-batches of ${microBatchSize}: only results kept`,
    );
    assert.deepEqual(Object.keys(acc.grads).sort(), Object.keys(full.grads).sort());
    const la = (await acc.value.data())[0]!;
    // fp32: a sum of 2-4 weighted terms vs one mean over 9 tokens: a few ulps of a loss ~15,
    // far below 1e-5 relative (weights 3/5, 2/5 instead of 4/9, 5/9 move it by ~6%).
    assert.ok(
      Math.abs(la - lf) <= 1e-5 * Math.abs(lf),
      `micro-batches of ${microBatchSize}: loss ${la} vs ${lf}`,
    );
    for (const [n, g] of Object.entries(full.grads)) {
      // Each gradient is the same sum of per-token terms, added in another order (and through
      // per-micro-batch layer sums): relative 1e-4 of the tensor's largest entry allows ~1e-5
      // per op over the depth of the tiny model's backward pass.
      const r = relMaxDiff(await acc.grads[n]!.data(), await g.data());
      assert.ok(
        r <= 1e-4,
        `micro-batches of ${microBatchSize}: ${n}: relative max difference ${r}`,
      );
    }
    tf.dispose([acc.value, ...Object.values(acc.grads)]);
  }
  tf.dispose([full.value, ...Object.values(full.grads)]);
  disposeBatch(batch);
  disposeT5(model);
});

Deno.test("lossAndGrads: micro-batch k draws its dropout from seedFor(seed, micro:k), not one mask for all", async () => {
  // Two copies of one row, micro-batches of 1: the loss is the mean of the row's loss under
  // micro:0's dropout and under micro:1's, each as a one-row batch with that seed gives it.
  const before = tf.memory().numTensors;
  const model = initT5(CONFIG, { seed: 1 });
  const varList = [...model.params.values()];
  const row = new ToySource().data[0]!;
  const two = collate([row, row], IDS);
  const one = collate([row], IDS);
  const o = opts(model, { train: { ...SPEC, labelSmoothing: 0 } });
  const lossOf = async (batch: typeof one, train: TrainSpec, seed: number) => {
    const r = await lossAndGrads({ ...o, train }, batch, varList, seed);
    const v = (await r.value.data())[0]!;
    tf.dispose([r.value, ...Object.values(r.grads)]);
    return v;
  };
  const l0 = await lossOf(one, o.train, seedFor(5, "micro:0"));
  const l1 = await lossOf(one, o.train, seedFor(5, "micro:1"));
  const acc = await lossOf(two, { ...o.train, microBatchSize: 1 }, 5);
  // Dropout 0.1 moves the loss by far more than fp32 rounding (1e-5 relative per op).
  assert.ok(Math.abs(l0 - l1) > 1e-3, `the two masks give ${l0} and ${l1}`);
  const want = (l0 + l1) / 2;
  assert.ok(Math.abs(acc - want) <= 1e-5 * Math.abs(want), `loss ${acc} vs ${want}`);
  disposeBatch(two);
  disposeBatch(one);
  disposeT5(model);
  assert.equal(tf.memory().numTensors, before, "no leaked tensors");
});

Deno.test("train() with microBatchSize: same losses and variables as the full batch", async () => {
  const spec: TrainSpec = { ...SPEC, steps: 3, optimizer: "adamw", learningRate: 1e-3 };
  const run = async (microBatchSize?: number) => {
    const model = initT5(NO_DROPOUT, { seed: 1 });
    const r = await train(opts(model, {
      source: new ToySource(true),
      train: microBatchSize === undefined ? spec : { ...spec, microBatchSize },
    }));
    const v = await snapshot(model);
    disposeT5(model);
    return { losses: r.losses, tokens: r.tokens, v };
  };
  const full = await run();
  const acc = await run(1);
  assert.equal(acc.tokens, full.tokens);
  for (const [i, l] of full.losses.entries()) {
    // Same as above per step; the variables fed back after an update keep it small.
    assert.ok(Math.abs(acc.losses[i]!.loss - l.loss) <= 1e-5 * l.loss, `step ${i + 1}`);
  }
  for (const [n, x] of full.v) {
    // AdamW moves each weight by ~lr per step whatever the gradient's size, so rounding can
    // only matter where a gradient is near 0; bound the difference by 3 steps x lr / 10.
    const a = acc.v.get(n)!;
    let d = 0;
    for (let i = 0; i < x.length; i++) d = Math.max(d, Math.abs(a[i]! - x[i]!));
    assert.ok(d <= 3e-4, `${n}: max |difference| ${d}`);
  }
});

Deno.test("train() with microBatchSize and dropout: resumed run is bit-identical, numTensors flat", async () => {
  const spec: TrainSpec = { ...SPEC, microBatchSize: 2 };
  const dirA = await Deno.makeTempDir();
  const a = initT5(CONFIG, { seed: 1 });
  const counts: number[] = [];
  const before = tf.memory().numTensors;
  const ra = await train(opts(a, {
    train: spec,
    checkpointDir: dirA,
    runKey: "k",
    onStep: () => {
      counts.push(tf.memory().numTensors);
    },
  }));
  assert.equal(counts[counts.length - 1], counts[1], `numTensors per step: ${counts}`);
  assert.equal(tf.memory().numTensors, before, "optimizer slots released at the end");
  const va = await snapshot(a);
  disposeT5(a);
  // Dropout differs per micro-batch: the accumulated run is not the full-batch run.
  const c = initT5(CONFIG, { seed: 1 });
  const rc = await train(opts(c, { train: { ...SPEC, steps: 1 } }));
  disposeT5(c);
  assert.notEqual(rc.losses[0]!.loss, ra.losses[0]!.loss);

  const dirB = await Deno.makeTempDir();
  await killedRun(5, () => ({ train: spec, checkpointDir: dirB, runKey: "k" }));
  const b2 = initT5(CONFIG, { seed: 1 });
  const rb = await train(opts(b2, { train: spec, checkpointDir: dirB, runKey: "k" }));
  assert.equal(rb.resumedFrom, 4);
  assert.deepEqual(rb.losses, ra.losses);
  const vb = await snapshot(b2);
  for (const [n, x] of va) assert.deepEqual(vb.get(n), x, n);
  disposeT5(b2);
  await Deno.remove(dirA, { recursive: true });
  await Deno.remove(dirB, { recursive: true });
});

Deno.test("validateTrain: microBatchSize must be a positive integer dividing batchSize", () => {
  const src = {
    file: "p.json",
    locate: (path: string) => (path.endsWith("microBatchSize") ? 9 : 4),
  };
  assert.equal(
    validateTrain({ batchSize: 32, microBatchSize: 8 }, src, "$.train").microBatchSize,
    8,
  );
  // Absent: the key is absent too, so canonical JSON and run ids of existing specs are unchanged.
  assert.equal("microBatchSize" in validateTrain({ batchSize: 32 }, src, "$.train"), false);
  const bad: [unknown, number, RegExp][] = [
    [0, 32, /^p\.json:9: \$\.train\.microBatchSize must be >= 1, got 0$/],
    [2.5, 32, /^p\.json:9: \$\.train\.microBatchSize must be an integer, got 2\.5$/],
    ["8", 32, /^p\.json:9: \$\.train\.microBatchSize must be an integer, got "8"$/],
    [5, 32, /^p\.json:9: \$\.train\.microBatchSize must divide batchSize \(32\), got 5$/],
  ];
  for (const [micro, batchSize, re] of bad) {
    assert.throws(
      () => validateTrain({ batchSize, microBatchSize: micro }, src, "$.train"),
      (e: unknown) => e instanceof SpecError && re.test(e.message),
      String(micro),
    );
  }
  // An override that changes only batchSize is checked against the inherited microBatchSize.
  const base = validateTrain({ batchSize: 32, microBatchSize: 8 }, src, "$.train");
  assert.throws(
    () => validateTrain({ batchSize: 12 }, src, "$.trainOverrides.glue", base),
    (e: unknown) =>
      e instanceof SpecError &&
      e.message ===
        "p.json:4: $.trainOverrides.glue.batchSize must be a multiple of microBatchSize (8), got 12",
  );
});

Deno.test("train() refuses a checkpoint state without the fields a resume restores, naming file and field", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const spec = { ...SPEC, steps: 4, evalEvery: 4, checkpointEvery: 2 };
    await killedRun(3, () => ({ train: spec, checkpointDir: dir, runKey: "k" }));
    const file = `${dir}/step-00000002/state.json`;
    const good = JSON.parse(await Deno.readTextFile(file));
    const m2 = initT5(CONFIG, { seed: 1 });
    const before = tf.memory().numTensors;
    const cases: [Record<string, unknown>, RegExp][] = [
      [
        { ...good, optimizerStep: undefined },
        /field "optimizerStep" is missing \(must be a non-neg/,
      ],
      [
        { ...good, optimizerStep: -1 },
        /field "optimizerStep" must be a non-negative integer, got -1/,
      ],
      [
        { ...good, losses: undefined },
        /field "losses" is missing \(must be .* 2 steps\); to train the run from step 0/,
      ],
      [{ ...good, losses: good.losses.slice(1) }, /field "losses" .*, got 1 entries/],
      [{ ...good, evals: {} }, /field "evals" must be an array, got \{\}/],
      [{ ...good, source: null }, /field "source": /],
      [{ ...good, evalOwed: 1 }, /field "evalOwed" must be absent, null or its step 2, got 1/],
      [{ ...good, evalOwed: "2" }, /field "evalOwed" must be .*, got "2"/],
      [
        { ...good, evalOwed: 2, evals: [{ step: 2, task: "a", metrics: {}, groupScore: 1 }] },
        /field "evalOwed" owes the evaluation of step 2, but field "evals" already holds/,
      ],
      [{ ...good, codes: [] }, /field "codes" must be a non-empty array .*, got 0 entries/],
      [{ ...good, codes: [{ sha: "x" }] }, /field "codes" must be .*, got 1 entries/],
      [{ ...good, codes: "x" }, /field "codes" must be .*, got "x"/],
      [{ ...good, microBatchSizes: [] }, /field "microBatchSizes" must be a non-empty array/],
      [{ ...good, microBatchSizes: [2, 0] }, /field "microBatchSizes" .*, got 2 entries/],
      [{ ...good, microBatchSizes: 4 }, /field "microBatchSizes" .*, got 4/],
      [{ ...good, tokens: "9" }, /field "tokens" must be a non-negative integer, got "9"/],
      [{ ...good, tokens: 2.5 }, /field "tokens" must be a non-negative integer, got 2\.5/],
      [{ ...good, trainMs: -1 }, /field "trainMs" must be a non-negative number, got -1/],
      [{ ...good, wallMs: -1 }, /field "wallMs" must be a non-negative number, got -1/],
      [{ ...good, wallMs: "9" }, /field "wallMs" must be a non-negative number, got "9"/],
      [
        { ...good, trainMs: undefined },
        /field "trainMs" is missing \(must be given with field "tokens"\)/,
      ],
      [
        { ...good, tokens: undefined },
        /field "tokens" is missing \(must be given with field "trainMs"\)/,
      ],
      [{ ...good, tokensFromStep: 3 }, /field "tokensFromStep" must be .* from 1 to 2 .*, got 3/],
      [{ ...good, tokensFromStep: 0 }, /field "tokensFromStep" must be .*, got 0/],
      [
        { ...good, tokens: undefined, trainMs: undefined, tokensFromStep: 1 },
        /field "tokensFromStep" must be absent, or a step from 1 to 2 given with field "tokens"/,
      ],
    ];
    for (const [state, want] of cases) {
      await Deno.writeTextFile(file, JSON.stringify(state));
      await assert.rejects(
        () => train(opts(m2, { train: spec, checkpointDir: dir, runKey: "k" })),
        (e: Error) => {
          // A state that is not a trainer's (its `source` included) is skipped like a checkpoint
          // that does not load; with no older one, the error names it.
          assert.ok(
            e.message.startsWith(
              `${dir}: no checkpoint can be resumed (1 tried, newest first): step-00000002: ${file}: field "`,
            ),
            e.message,
          );
          assert.match(e.message, want);
          return true;
        },
      );
      assert.equal(tf.memory().numTensors, before, "nothing kept of the refused checkpoint");
    }
    // The checkpoint as written resumes, and so does one with `evalOwed: null` (owes nothing).
    assert.equal(Object.hasOwn(good, "evalOwed"), false);
    await Deno.writeTextFile(file, JSON.stringify({ ...good, evalOwed: null }));
    const r = await train(opts(m2, { train: spec, checkpointDir: dir, runKey: "k" }));
    assert.equal(r.resumedFrom, 2);
    disposeT5(m2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

gpuTest(
  "train() on webgpu: a non-finite loss is diagnosed (the variables read asynchronously)",
  async () => {
    // On webgpu the weights live in GPU buffers, which Deno's tfjs cannot read synchronously:
    // the diagnostic must read them with data(), or the step fails with a canvas TypeError.
    const model = initT5(CONFIG, { seed: 1 });
    try {
      const bad = "decoder.final_layer_norm.weight";
      const before = tf.memory().numTensors;
      const err = await train(opts(model, {
        train: { ...SPEC, steps: 3 },
        onStep: (s) => {
          if (s === 1) {
            const v = model.params.get(bad)!;
            const nan = tf.tidy(() => tf.mul(v, NaN)); // computed on the device
            v.assign(nan);
            nan.dispose();
          }
        },
      })).then(() => undefined, (e) => e);
      assert.ok(err instanceof NonFiniteLossError, String(err));
      assert.equal(err.step, 2);
      assert.deepEqual(err.badVariables, [bad]);
      assert.equal(tf.memory().numTensors, before);
    } finally {
      disposeT5(model);
      await tf.setBackend("cpu"); // the other tests' backend
    }
  },
);

Deno.test("train() clips by max_norm / (norm + 1e-6) as PyTorch does: with a gradient norm below 1e-6 the epsilon more than halves the factor", async () => {
  // A frozen backbone and one trained vector added to the encoder input at scale 1e-7: its
  // gradient is 1e-7 times the input gradient, a norm ~7e-7 (measured), where clip_grad_norm_'s
  // factor max_norm / (norm + 1e-6) is under half of max_norm / norm. One AdamW step from 0 moves each
  // entry by lr · g' / (|g'| + 1e-8) (m̂ = g', sqrt(v̂) = |g'|), g' the clipped gradient: with
  // entries of g' near 1e-8 that move follows the factor, so the epsilon shows in the weights.
  const SCALE = 1e-7;
  const lr = 0.1;
  const base: TrainSpec = {
    ...SPEC,
    optimizer: "adamw",
    learningRate: lr,
    labelSmoothing: 0,
    steps: 1,
    checkpointEvery: 0,
  };
  const withBias = (): { instance: MethodInstance; bias: tf.Variable } => {
    const bias = tf.tidy(() => tf.variable(tf.zeros([CONFIG.dModel])));
    return {
      bias,
      instance: {
        name: "toy_input_bias",
        variables: new Map([["toy.input_bias", bias]]),
        keepTaskPrefix: true,
        isBackboneTrainable: () => false,
        hooks: () => ({
          encoderInput: (embeds, mask) => ({
            embeds: tf.add(embeds, tf.mul(bias, SCALE)) as tf.Tensor3D,
            mask,
          }),
        }),
        dispose: () => bias.dispose(),
      },
    };
  };
  const before = tf.memory().numTensors;
  // The gradient of the first batch (ToySource's first draw is train()'s step 1).
  const model0 = initT5(NO_DROPOUT, { seed: 1 });
  const m0 = withBias();
  const batch = new ToySource().next();
  const { value, grads } = await lossAndGrads(
    opts(model0, { instance: m0.instance, train: base }),
    batch,
    [m0.bias],
    0,
  );
  const g = (await grads[m0.bias.name]!.data()) as Float32Array;
  tf.dispose([value, ...Object.values(grads)]);
  disposeBatch(batch);
  m0.instance.dispose();
  disposeT5(model0);
  const norm = Math.hypot(...g);
  assert.ok(norm > 1e-7 && norm < 1e-6, `gradient norm ${norm}: the premise is a norm near 1e-6`);
  // A clip at half the norm: applied with or without the epsilon (factors ~0.21 and 0.5).
  const clipNorm = norm / 2;
  const model = initT5(NO_DROPOUT, { seed: 1 });
  const m = withBias();
  await train(opts(model, { instance: m.instance, train: { ...base, clipNorm } }));
  const moved = (await m.bias.data()) as Float32Array;
  m.instance.dispose();
  disposeT5(model);
  const moveFor = (coef: number) =>
    Array.from(g, (gi) => -lr * (gi * coef) / (Math.abs(gi * coef) + 1e-8));
  const want = moveFor(clipNorm / (norm + 1e-6));
  const withoutEps = moveFor(clipNorm / norm);
  // float32: moves <= lr = 0.1 from 0, each op ~1e-7 relative; 2e-6 allows it, far below the
  // epsilon's effect (checked to exceed 1e-3 here, so the test can tell the two apart).
  const worst = Math.max(...want.map((w, i) => Math.abs(moved[i]! - w)));
  const gap = Math.max(...want.map((w, i) => Math.abs(withoutEps[i]! - w)));
  assert.ok(gap > 1e-3, `the epsilon changes the moves by only ${gap}`);
  assert.ok(worst <= 2e-6, `largest deviation ${worst} (without the epsilon: ${gap})`);
  assert.equal(tf.memory().numTensors, before, "no leaked tensors");
});

Deno.test("train(): step s draws dropout seedFor(seed, dropout:<s-1>), a new mask each step, and counts each batch's numTokens", async () => {
  // The same batch every step and a learning rate of 0 (AdamW, no weight decay: the weights
  // never change): each step's loss is the dropout mask's alone, so step s's loss is
  // lossAndGrads' with the seed of step s - 1, and two steps' losses differ.
  const rows = new ToySource().data.slice(0, 4);
  const fixed = collate(rows, IDS);
  const source: BatchSource = {
    next: () => collate(rows, IDS),
    state: () => null,
    restore: () => {},
  };
  const t: TrainSpec = {
    ...SPEC,
    optimizer: "adamw",
    learningRate: 0,
    labelSmoothing: 0,
    steps: 3,
    checkpointEvery: 0,
  };
  const model = initT5(CONFIG, { seed: 1 });
  const o = opts(model, { train: t, source });
  const r = await train(o);
  const varList = [...model.params.values()];
  for (const [k, { step, loss }] of r.losses.entries()) {
    assert.equal(step, k + 1);
    const want = await lossAndGrads(o, fixed, varList, seedFor(o.seed, `dropout:${k}`));
    const w = (await want.value.data())[0]!;
    tf.dispose([want.value, ...Object.values(want.grads)]);
    // The same ops on the same weights and mask: equal up to fp32 rounding (1e-6 relative).
    assert.ok(Math.abs(loss - w) <= 1e-6 * Math.abs(w), `step ${step}: ${loss} vs ${w}`);
  }
  // Dropout 0.1 moves the loss by far more than rounding: a mask reused would give equal losses.
  const [l1, l2, l3] = r.losses.map((l) => l.loss);
  assert.ok(Math.abs(l1! - l2!) > 1e-3 && Math.abs(l2! - l3!) > 1e-3, `${l1}, ${l2}, ${l3}`);
  assert.equal(r.tokens, 3 * fixed.numTokens, "the batches' input + target tokens");
  disposeBatch(fixed);
  disposeT5(model);
});

Deno.test("trainedVariables: a method variable named like a backbone weight is refused, frozen backbone or not", () => {
  const model = initT5(CONFIG, { seed: 1 });
  const v = tf.tidy(() => tf.variable(tf.zeros([2])));
  try {
    for (const trainable of [true, false]) {
      const instance: MethodInstance = {
        ...fullFinetune(() => trainable),
        variables: new Map([["shared.weight", v]]),
      };
      assert.throws(
        () => trainedVariables(model, instance),
        /method variable "shared\.weight" collides with a backbone name/,
        `backbone trainable: ${trainable}`,
      );
    }
    // Another name is taken, beside the trainable backbone weights.
    const ok = trainedVariables(model, {
      ...fullFinetune(() => false),
      variables: new Map([["toy.v", v]]),
    });
    assert.deepEqual([...ok.keys()], ["toy.v"]);
  } finally {
    v.dispose();
    disposeT5(model);
  }
});
