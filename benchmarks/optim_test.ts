import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";
import { createOptimizer, type OptimizerConfig } from "./optim.ts";
import { enableSimdKernels } from "../model/wasm_simd.ts";
import { threeSteps } from "./optim_testing.ts";
import { adafactorFactoredReference } from "../model/fused.ts";

await tf.setBackend("cpu");

/** The paths AdamW can take: op by op (cpu), fused JS loop (wasm), fused SIMD (wasm). */
const ADAMW_PATHS = ["cpu", "wasm", "wasm+simd"] as const;

async function usePath(path: typeof ADAMW_PATHS[number]): Promise<void> {
  assert.ok(await tf.setBackend(path === "cpu" ? "cpu" : "wasm"));
  await enableSimdKernels(path === "wasm+simd" ? tf.backend() as BackendWasm : undefined);
}

/**
 * Float64 reference of Adafactor (Mesh TF / HF formulation) for a 2-D parameter: the one-step
 * reference of `model/fused.ts` over the steps, with decay 1 − t^−0.8, ε1 1e-30, threshold 1 and
 * (`scale`) the parameter-RMS step with eps2 1e-3.
 */
function refAdafactor2d(
  p: number[][],
  grads: number[][][],
  lr: number,
  opts: { scale: boolean; wd: number },
): number[][] {
  const R = p.length, C = p[0]!.length;
  let state: ReturnType<typeof adafactorFactoredReference> = {
    p: Float64Array.from(p.flat()),
    vr: new Float64Array(R),
    vc: new Float64Array(C),
  };
  grads.forEach((g, i) => {
    state = adafactorFactoredReference(state.p, g.flat(), state.vr, state.vc, {
      beta2t: 1 - Math.pow(i + 1, -0.8),
      eps1: 1e-30,
      clippingThreshold: 1,
      lr,
      weightDecay: opts.wd,
      ...(opts.scale ? { parameterScaleEps2: 1e-3 } : {}),
    });
  });
  return Array.from({ length: R }, (_, r) => Array.from(state.p.subarray(r * C, (r + 1) * C)));
}

function refAdafactor1d(p: number[], grads: number[][], lr: number): number[] {
  let v = new Array(p.length).fill(0);
  const w = [...p];
  grads.forEach((g, i) => {
    const b = 1 - Math.pow(i + 1, -0.8);
    v = v.map((x, j) => b * x + (1 - b) * (g[j]! * g[j]! + 1e-30));
    const u = g.map((x, j) => x / Math.sqrt(v[j]));
    const rmsU = Math.sqrt(u.reduce((a, y) => a + y * y, 0) / u.length);
    const clip = Math.max(1, rmsU);
    for (let j = 0; j < w.length; j++) w[j] = w[j]! - lr * u[j]! / clip;
  });
  return w;
}

function refAdamW(p: number[], grads: number[][], lr: number, wd: number): number[] {
  const [b1, b2, eps] = [0.9, 0.999, 1e-8];
  let m = new Array(p.length).fill(0), v = new Array(p.length).fill(0);
  const w = [...p];
  grads.forEach((g, i) => {
    const t = i + 1;
    m = m.map((x, j) => b1 * x + (1 - b1) * g[j]!);
    v = v.map((x, j) => b2 * x + (1 - b2) * g[j]! * g[j]!);
    for (let j = 0; j < w.length; j++) {
      w[j] = w[j]! - lr * wd * w[j]!;
      const denom = Math.sqrt(v[j]) / Math.sqrt(1 - Math.pow(b2, t)) + eps;
      w[j] = w[j]! - (lr / (1 - Math.pow(b1, t))) * m[j]! / denom;
    }
  });
  return w;
}

/** A variable that owns its initial value (tf.variable keeps the init tensor alive). */
function mkVar(x: number[][]): tf.Variable {
  const t = tf.tensor(x);
  const v = tf.variable(t);
  t.dispose();
  return v;
}

const P2 = [[0.5, -0.2, 0.1], [0.3, 0.05, -0.4]];
const G2 = [
  [[0.1, -0.3, 0.2], [0.05, 0.4, -0.1]],
  [[-0.2, 0.1, 0.0], [0.3, -0.05, 0.2]],
  [[0.01, 0.02, -0.5], [0.2, 0.2, 0.2]],
];

function close(a: number[], b: number[], what: string) {
  // fp32 vs fp64 over 3 steps of ~10 ops each: 1e-5 relative to the parameter scale.
  assert.equal(a.length, b.length);
  a.forEach((x, i) =>
    assert.ok(
      Math.abs(x - b[i]!) < 1e-5 * Math.max(1, Math.abs(b[i]!)),
      `${what}[${i}]: ${x} vs ${b[i]}`,
    )
  );
}

async function runOpt(
  cfg: OptimizerConfig,
  p: number[][] | number[],
  grads: unknown[],
  lr: number,
) {
  const w = tf.variable(tf.tensor(p as number[]));
  const opt = createOptimizer(cfg);
  for (const g of grads) {
    const gt = tf.tensor(g as number[]);
    opt.apply(new Map([["w", w]]), new Map([["w", gt]]), lr);
    gt.dispose();
  }
  const out = Array.from(await w.data());
  assert.equal(opt.step, grads.length);
  opt.dispose();
  w.dispose();
  return out;
}

Deno.test("Adafactor matches a float64 reference (factored, unscaled and scaled, wd)", async () => {
  for (const opts of [{ scale: false, wd: 0 }, { scale: true, wd: 0.1 }]) {
    const got = await runOpt(
      { kind: "adafactor", multiplyByParameterScale: opts.scale, weightDecay: opts.wd },
      P2,
      G2,
      0.01,
    );
    close(got, refAdafactor2d(P2, G2, 0.01, opts).flat(), `2d ${JSON.stringify(opts)}`);
  }
  // Large gradients: exercise the update clipping (RMS(update) > 1 at step 1 is always 1, later
  // not); op by op on cpu, and the fused in-place update on wasm
  // (model/fused.ts updateAdafactorUnfactored).
  const G1 = [[1, 0, -2], [5, 1, 0.5], [-3, 2, 1]];
  for (const path of ["cpu", "wasm"] as const) {
    await usePath(path);
    const got1 = await runOpt({ kind: "adafactor" }, [1, 2, 3], G1, 0.1);
    close(got1, refAdafactor1d([1, 2, 3], G1, 0.1), `1d ${path}`);
  }
  // …which runs no tfjs kernel at all (op by op it is ≈ 15).
  const init = tf.tensor([1, 2, 3]);
  const w = tf.variable(init);
  init.dispose();
  const g = tf.tensor([1, 0, -2]);
  const opt = createOptimizer({ kind: "adafactor" });
  opt.apply(new Map([["w", w]]), new Map([["w", g]]), 0.1); // creates the slot
  const prof = await tf.profile(() => opt.apply(new Map([["w", w]]), new Map([["w", g]]), 0.1));
  assert.deepEqual(prof.kernels.map((k) => k.name), []);
  tf.dispose([w, g]);
  opt.dispose();
  await tf.setBackend("cpu");
});

Deno.test("AdamW matches a float64 reference (op by op on cpu, fused on wasm)", async () => {
  const g = [[0.1, -0.2, 0.3], [0.3, 0.1, -0.1], [-0.5, 0.2, 0.0]];
  for (const path of ADAMW_PATHS) {
    await usePath(path);
    const got = await runOpt({ kind: "adamw", weightDecay: 0.01 }, [0.5, -1, 2], g, 0.01);
    close(got, refAdamW([0.5, -1, 2], g, 0.01, 0.01), `adamw ${path}`);
  }
  await enableSimdKernels(undefined);
  await tf.setBackend("cpu");
});

Deno.test("fused Adafactor on wasm matches the op-by-op update on cpu", async () => {
  // Three steps on matrices whose rows are a multiple of 4 (SIMD path), are not (op by op on
  // wasm too), and a vector; configurations exercise clipping, parameter scaling and weight
  // decay. float32 sums in another order: 1e-5 relative to the parameter scale.
  const shapes = [[6, 8], [5, 6], [8]];
  const cfgs: OptimizerConfig[] = [
    { kind: "adafactor" },
    { kind: "adafactor", multiplyByParameterScale: true, weightDecay: 0.1 },
    { kind: "adafactor", clippingThreshold: 0 },
  ];
  for (const cfg of cfgs) {
    for (const shape of shapes) {
      await usePath("cpu");
      const want = await threeSteps(cfg, shape);
      await usePath("wasm+simd");
      const got = await threeSteps(cfg, shape);
      const what = `${JSON.stringify(cfg)} ${JSON.stringify(shape)}`;
      assert.equal(got.length, want.length, what);
      got.forEach((g, i) => close(Array.from(g), Array.from(want[i]!), `${what} [${i}]`));
    }
  }
  await enableSimdKernels(undefined);
  await tf.setBackend("cpu");
});

Deno.test("fused AdamW and Adafactor restore bit-identically while saved slots are alive", async () => {
  // The restored slots share their buffers with the saved tensors until those are disposed;
  // the fused update must copy them first (ownBuffer), not fall back to another formula.
  for (
    const [path, cfg] of [["wasm", "adamw"], ["wasm+simd", "adamw"], [
      "wasm+simd",
      "adafactor",
    ]] as const
  ) {
    await usePath(path);
    const before = tf.memory().numTensors;
    // [2, 4]: rows of a multiple of 4, so Adafactor takes its SIMD path on wasm.
    const pad = (m: number[][], x: number) => m.map((r) => [...r, x]);
    const P = pad(P2, 0.25);
    const grads = G2.concat(G2).map((g, i) => tf.tensor(pad(g, 0.1 * (i - 2))));
    const wA = mkVar(P);
    const a = createOptimizer({ kind: cfg });
    for (const g of grads) a.apply(new Map([["w", wA]]), new Map([["w", g]]), 0.01);
    const wB = mkVar(P);
    const b1 = createOptimizer({ kind: cfg });
    for (const g of grads.slice(0, 3)) b1.apply(new Map([["w", wB]]), new Map([["w", g]]), 0.01);
    const saved = new Map([...b1.slots()].map(([k, v]) => [k, tf.tensor(v.dataSync(), v.shape)]));
    b1.dispose();
    const b2 = createOptimizer({ kind: cfg });
    b2.restore(3, saved);
    const keptW = wB.clone(); // a second owner of the parameter's buffer, as after a restore
    for (const g of grads.slice(3)) b2.apply(new Map([["w", wB]]), new Map([["w", g]]), 0.01);
    assert.deepEqual(Array.from(await wB.data()), Array.from(await wA.data()), `${path} ${cfg}`);
    assert.notDeepEqual(Array.from(await keptW.data()), Array.from(await wB.data()), "copied");
    for (const t of saved.values()) t.dispose();
    tf.dispose([keptW, wA, wB, ...grads]);
    a.dispose();
    b2.dispose();
    assert.equal(tf.memory().numTensors, before, `${path} leaked tensors`);
  }
  await enableSimdKernels(undefined);
  await tf.setBackend("cpu");
});

Deno.test("optimizer restore continues bit-identically and does not leak", async () => {
  for (const cfg of [{ kind: "adafactor", beta1: 0.9 }, { kind: "adamw" }] as OptimizerConfig[]) {
    const before = tf.memory().numTensors;
    const grads = G2.concat(G2).map((g) => tf.tensor(g));
    const wA = mkVar(P2);
    const a = createOptimizer(cfg);
    for (const g of grads) a.apply(new Map([["w", wA]]), new Map([["w", g]]), 0.01);

    const wB = mkVar(P2);
    const b1 = createOptimizer(cfg);
    for (const g of grads.slice(0, 3)) b1.apply(new Map([["w", wB]]), new Map([["w", g]]), 0.01);
    const saved = new Map([...b1.slots()].map(([k, v]) => [k, tf.tensor(v.dataSync(), v.shape)]));
    const savedStep = b1.step;
    b1.dispose();
    const b2 = createOptimizer(cfg);
    b2.restore(savedStep, saved);
    for (const t of saved.values()) t.dispose();
    for (const g of grads.slice(3)) b2.apply(new Map([["w", wB]]), new Map([["w", g]]), 0.01);
    assert.deepEqual(Array.from(await wB.data()), Array.from(await wA.data()), cfg.kind);
    assert.equal(b2.step, 6);
    a.dispose();
    b2.dispose();
    wA.dispose();
    wB.dispose();
    grads.forEach((g) => g.dispose());
    assert.equal(tf.memory().numTensors, before, `${cfg.kind} leaked tensors`);
  }
});

Deno.test("Adafactor relative step and config validation", async () => {
  // lr undefined: relative step min(1e-2, 1/sqrt(t)) = 1e-2 for t < 10^4.
  const a = await runOpt(
    { kind: "adafactor" },
    [1, 2, 3],
    [[1, 0, -2]],
    undefined as unknown as number,
  );
  close(a, refAdafactor1d([1, 2, 3], [[1, 0, -2]], 1e-2), "relative step");
  assert.throws(() => createOptimizer({ kind: "adafactor", decayRate: -1 }), /decayRate/);
  assert.throws(() => createOptimizer({ kind: "sgd" } as unknown as OptimizerConfig), /kind/);
  const w = tf.variable(tf.zeros([2]));
  assert.throws(
    () => createOptimizer({ kind: "adamw" }).apply(new Map([["w", w]]), new Map(), undefined),
    /learning rate/,
  );
  w.dispose();
});
