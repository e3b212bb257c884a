import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";
import { adafactorFactoredAxes, createOptimizer, type OptimizerConfig } from "./optim.ts";
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
    { kind: "adafactor", weightDecayRate: 0.05 },
    { kind: "adafactor", multiplyByParameterScale: true, weightDecayRate: 0.05 },
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

/**
 * Float64 Adafactor for any shape, written from Mesh TF's `AdafactorOptimizer` independently of
 * `optim.ts` and `model/fused.ts`: `dims` are the two factored dimensions `[d0, d1]` (vr is the
 * mean over d0, vc the mean over d1, r = vr / mean_d1(vr)) or null for a full second moment.
 * Decay 1 - t^-0.8, eps1 1e-30, clipping threshold 1, no first moment; with `scale` the step is
 * lr · max(1e-3, RMS(p)).
 */
function refAdafactorNd(
  shape: number[],
  p0: number[],
  grads: number[][],
  lr: number,
  dims: [number, number] | null,
  scale: boolean,
): number[] {
  const n = p0.length;
  const strides = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
  const coord = (flat: number, axis: number) => Math.floor(flat / strides[axis]!) % shape[axis]!;
  /** Key of `flat` with the coordinate on `axis` dropped. */
  const drop = (flat: number, axis: number) =>
    shape.map((_, a) => (a === axis ? "*" : coord(flat, a))).join(",");
  const p = [...p0];
  const vr = new Map<string, number>(), vc = new Map<string, number>();
  const v = new Array<number>(n).fill(0);
  grads.forEach((g, step) => {
    const b = 1 - Math.pow(step + 1, -0.8);
    const g2 = g.map((x) => x * x + 1e-30);
    const u = new Array<number>(n);
    if (dims === null) {
      for (let i = 0; i < n; i++) {
        v[i] = b * v[i]! + (1 - b) * g2[i]!;
        u[i] = g[i]! / Math.sqrt(v[i]!);
      }
    } else {
      const [d0, d1] = dims;
      const meanOver = (axis: number) => {
        const acc = new Map<string, number>();
        for (let i = 0; i < n; i++) {
          const k = drop(i, axis);
          acc.set(k, (acc.get(k) ?? 0) + g2[i]! / shape[axis]!);
        }
        return acc;
      };
      for (const [k, x] of meanOver(d0)) vr.set(k, b * (vr.get(k) ?? 0) + (1 - b) * x);
      for (const [k, x] of meanOver(d1)) vc.set(k, b * (vc.get(k) ?? 0) + (1 - b) * x);
      // long_term_mean = mean of vr over d1, per remaining coordinates
      const ltm = new Map<string, number>();
      for (const [k, x] of vr) {
        const parts = k.split(",");
        parts[d1] = "*";
        const kk = parts.join(",");
        ltm.set(kk, (ltm.get(kk) ?? 0) + x / shape[d1]!);
      }
      for (let i = 0; i < n; i++) {
        const kr = drop(i, d0);
        const parts = kr.split(",");
        parts[d1] = "*";
        const r = vr.get(kr)! / ltm.get(parts.join(","))!;
        u[i] = g[i]! / Math.sqrt(r) / Math.sqrt(vc.get(drop(i, d1))!);
      }
    }
    const rmsU = Math.sqrt(u.reduce((a, x) => a + x * x, 0) / n);
    const rmsP = Math.sqrt(p.reduce((a, x) => a + x * x, 0) / n);
    const s = scale ? lr * Math.max(1e-3, rmsP) : lr;
    for (let i = 0; i < n; i++) p[i] = p[i]! - s * u[i]! / Math.max(1, rmsU);
  });
  return p;
}

/** Three steps of `cfg` on a parameter of `shape`: its values and its slot names and shapes. */
async function stepsNd(cfg: OptimizerConfig, shape: number[], p0: number[], grads: number[][]) {
  const init = tf.tensor(p0, shape);
  const w = tf.variable(init);
  init.dispose();
  const opt = createOptimizer(cfg);
  for (const g of grads) {
    const gt = tf.tensor(g, shape);
    opt.apply(new Map([["w", w]]), new Map([["w", gt]]), 0.01);
    gt.dispose();
  }
  const slots = [...opt.slots()].map(([k, t]) => `${k}:${t.shape.join("x")}`);
  const values = Array.from(await w.data());
  opt.dispose();
  w.dispose();
  return { values, slots };
}

function wave(n: number, k: number, a: number): number[] {
  return Array.from({ length: n }, (_, i) => a * Math.sin(0.7 * i * k + k));
}

Deno.test("adafactorFactoredAxes(): Hugging Face's last-two-axes rule, Mesh TF's two largest dims >= min", () => {
  // Default (absent threshold): every rank >= 2 variable over its last two axes.
  assert.deepEqual(adafactorFactoredAxes([3, 16, 32], true, undefined), [2, 1]);
  assert.deepEqual(adafactorFactoredAxes([32, 4], true, undefined), [1, 0]);
  assert.equal(adafactorFactoredAxes([64], true, undefined), null);
  assert.equal(adafactorFactoredAxes([64, 64], false, undefined), null);
  // Mesh TF (128): a prompt [T, l, d] with l < 128, a relative attention bias [32, heads], a
  // small hypernetwork matrix: unfactored; a [d_model, d_ff] matrix: factored.
  assert.equal(adafactorFactoredAxes([3, 16, 512], true, 128), null);
  assert.equal(adafactorFactoredAxes([32, 12], true, 128), null);
  assert.equal(adafactorFactoredAxes([64, 100], true, 128), null);
  assert.deepEqual(adafactorFactoredAxes([768, 3072], true, 128), [1, 0]);
  // The two largest dimensions, wherever they are; ties keep the earlier axis.
  assert.deepEqual(adafactorFactoredAxes([512, 8, 256], true, 128), [2, 0]);
  assert.deepEqual(adafactorFactoredAxes([128, 128, 128], true, 128), [1, 0]);
});

Deno.test("Adafactor minDimSizeToFactor: a [T, 16, d] prompt keeps a full second moment at 128; matches a float64 reference", async () => {
  const shape = [3, 16, 8];
  const n = 3 * 16 * 8;
  const p0 = wave(n, 1, 0.5);
  const grads = [1, 2, 3].map((k) => wave(n, k + 1, 0.3 * k));
  for (const scale of [false, true]) {
    const mesh = await stepsNd(
      { kind: "adafactor", minDimSizeToFactor: 128, multiplyByParameterScale: scale },
      shape,
      p0,
      grads,
    );
    assert.deepEqual(mesh.slots, ["w/v:3x16x8"]);
    close(mesh.values, refAdafactorNd(shape, p0, grads, 0.01, null, scale), `mesh ${scale}`);
    // The default factors it over its last two axes (Hugging Face's rule).
    const hf = await stepsNd(
      { kind: "adafactor", multiplyByParameterScale: scale },
      shape,
      p0,
      grads,
    );
    assert.deepEqual(hf.slots, ["w/vr:3x16", "w/vc:3x8"]);
    close(hf.values, refAdafactorNd(shape, p0, grads, 0.01, [2, 1], scale), `hf ${scale}`);
    assert.notDeepEqual(hf.values, mesh.values);
  }
});

Deno.test("Adafactor minDimSizeToFactor factors over the two largest dims, not the last two", async () => {
  const shape = [10, 2, 9];
  const n = 180;
  const p0 = wave(n, 3, 0.4);
  const grads = [1, 2, 3].map((k) => wave(n, k + 4, 0.2 * k));
  for (const scale of [false, true]) {
    const got = await stepsNd(
      { kind: "adafactor", minDimSizeToFactor: 8, multiplyByParameterScale: scale },
      shape,
      p0,
      grads,
    );
    assert.deepEqual(got.slots, ["w/vr:10x2", "w/vc:2x9"]);
    close(got.values, refAdafactorNd(shape, p0, grads, 0.01, [2, 0], scale), `nd ${scale}`);
    // Independent of which of the two dims is reduced for vr.
    close(got.values, refAdafactorNd(shape, p0, grads, 0.01, [0, 2], scale), `swapped ${scale}`);
  }
  // At a threshold above the second-largest dim (9): unfactored.
  const full = await stepsNd({ kind: "adafactor", minDimSizeToFactor: 10 }, shape, p0, grads);
  assert.deepEqual(full.slots, ["w/v:10x2x9"]);
  close(full.values, refAdafactorNd(shape, p0, grads, 0.01, null, false), "full");
});

Deno.test("Adafactor parameter scale multiplies the step by max(eps2, RMS(p)) (float64 reference)", async () => {
  // Parameters with RMS well away from 1 and from eps2, so scaling changes the result.
  const shape = [4, 6];
  const p0 = wave(24, 2, 0.05);
  const grads = [1, 2, 3].map((k) => wave(24, k + 2, 0.3));
  const off = await stepsNd({ kind: "adafactor" }, shape, p0, grads);
  const on = await stepsNd({ kind: "adafactor", multiplyByParameterScale: true }, shape, p0, grads);
  close(off.values, refAdafactorNd(shape, p0, grads, 0.01, [1, 0], false), "unscaled");
  close(on.values, refAdafactorNd(shape, p0, grads, 0.01, [1, 0], true), "scaled");
  // The scaled step is about RMS(p) ≈ 0.035 times the unscaled one.
  const moved = (v: number[]) => v.reduce((a, x, i) => a + Math.abs(x - p0[i]!), 0);
  assert.ok(moved(on.values) < 0.1 * moved(off.values), `${moved(on.values)} ${moved(off.values)}`);
});

Deno.test("Adafactor parameter scale: a zero parameter (RMS 0) still moves, by lr·eps2 (cpu, fused wasm)", async () => {
  // Zero-initialised tensors (HyperPrompt's biases, LayerNorm β) have RMS(p) = 0: the step is
  // lr·max(eps2, 0) = lr·1e-3, not 0, or they would never train. A factored [4, 8] (rows a
  // multiple of 4: wasm+simd's fused factored kernel) and a vector [8] (its unfactored kernel).
  // The moves are ~1e-5 (lr 0.01 × eps2 × |u| ≲ 2), below close()'s absolute 1e-5 bound, so
  // compare to 1e-5 of the largest reference move instead (float32 against float64 over two
  // steps: ~1e-6 relative; a step without eps2 leaves the parameter at 0, 100 % off).
  const cases: [number[], [number, number] | null][] = [[[4, 8], [1, 0]], [[8], null]];
  for (const [shape, dims] of cases) {
    const n = shape.reduce((a, b) => a * b, 1);
    const p0 = new Array<number>(n).fill(0);
    const grads = [1, 2].map((k) => wave(n, k + 1, 0.3));
    const want = refAdafactorNd(shape, p0, grads, 0.01, dims, true);
    const scale = Math.max(...want.map(Math.abs));
    assert.ok(scale > 1e-5 && scale < 1e-4, `reference moves by lr·eps2·u: ${scale}`);
    for (const path of ["cpu", "wasm+simd"] as const) {
      await usePath(path);
      const cfg = { kind: "adafactor", multiplyByParameterScale: true } as const;
      const got = await stepsNd(cfg, shape, p0, grads);
      got.values.forEach((x, i) =>
        assert.ok(
          Math.abs(x - want[i]!) <= 1e-5 * scale,
          `zero parameter ${JSON.stringify(shape)} ${path}[${i}]: ${x} vs ${want[i]}`,
        )
      );
    }
  }
  await enableSimdKernels(undefined);
  await tf.setBackend("cpu");
});

Deno.test("Adafactor option validation names the field", () => {
  for (const bad of [0, -1, 1.5, NaN]) {
    assert.throws(
      () => createOptimizer({ kind: "adafactor", minDimSizeToFactor: bad }),
      /field "minDimSizeToFactor" must be a positive integer/,
    );
  }
  assert.throws(
    () =>
      createOptimizer({
        kind: "adafactor",
        multiplyByParameterScale: "yes" as unknown as boolean,
      }),
    /field "multiplyByParameterScale" must be true or false/,
  );
  for (const bad of [-1e-5, 0.6, NaN]) {
    assert.throws(
      () => createOptimizer({ kind: "adafactor", weightDecayRate: bad }),
      /field "weightDecayRate" must be in \[0, 0.5\]/,
    );
  }
});

Deno.test("Adafactor weightDecayRate, T5X's p ← (1 − rate)·p − update: hand-computed one and two steps", async () => {
  // The same hand values as the test below (its comments derive u); float32 results of a few
  // operations on values <= 4: 2e-6 relative (about 4 ulps). Rate 0.05 at lr 0.1: T5X's decay
  // takes 5 % of p per step, the decoupled weightDecay 0.05 would take 0.5 %.
  const near = (got: number[], want: number[], what: string) =>
    want.forEach((w, i) =>
      assert.ok(
        Math.abs(got[i]! - w) <= 2e-6 * Math.max(1, Math.abs(w)),
        `${what}[${i}]: ${got[i]} vs ${w}`,
      )
    );
  const u = [Math.sqrt(0.6), 2 * Math.sqrt(0.3), 3 * Math.sqrt(3) / 5, 4 * Math.sqrt(0.06)];
  const p = [[3, 4], [1, -2]];
  const g = [[[1, 2], [3, 4]]];
  const p0 = [3, 4, 1, -2];
  // On cpu op by op; on wasm the fused in-place updates (the rate folded into their decay) and,
  // with the parameter scale, op by op with the rate term itself.
  for (const path of ADAMW_PATHS) {
    await usePath(path);
    near(
      await runOpt({ kind: "adafactor", weightDecayRate: 0.05 }, p, g, 0.1),
      p0.map((x, i) => 0.95 * x - 0.1 * u[i]!),
      `${path} factored, rate`,
    );
    // With the decoupled weightDecay 0.1 too: p·(1 − 0.1·0.1 − 0.05) − 0.1·u.
    near(
      await runOpt({ kind: "adafactor", weightDecay: 0.1, weightDecayRate: 0.05 }, p, g, 0.1),
      p0.map((x, i) => 0.94 * x - 0.1 * u[i]!),
      `${path} factored, rate + weightDecay`,
    );
    // Parameter scale: the step is 0.1·RMS(p) = 0.1·sqrt(30/4); the rate is not scaled.
    const step = 0.1 * Math.sqrt(30 / 4);
    near(
      await runOpt(
        { kind: "adafactor", multiplyByParameterScale: true, weightDecayRate: 0.05 },
        p,
        g,
        0.1,
      ),
      p0.map((x, i) => 0.95 * x - step * u[i]!),
      `${path} factored, scaled, rate`,
    );
    // Unfactored, two steps at lr 1 from p = [1, 2], rate 0.1: u1 = [1, 1],
    // p1 = 0.9·[1, 2] − u1 = [−0.1, 0.8]; u2 (clipped) = [1.127089999, 0.854206143],
    // p2 = 0.9·p1 − u2 = [−1.217089999, −0.134206143].
    near(
      await runOpt({ kind: "adafactor", weightDecayRate: 0.1 }, [1, 2], [[0.1, 0.1]], 1),
      [-0.1, 0.8],
      `${path} unfactored, one step`,
    );
    near(
      await runOpt({ kind: "adafactor", weightDecayRate: 0.1 }, [1, 2], [[0.1, 0.1], [10, 0.1]], 1),
      [-1.217089999, -0.134206143],
      `${path} unfactored, two steps`,
    );
    // Learning rate 0 (e.g. the first step of a linear warmup): the decay alone, p ← 0.9·p.
    near(
      await runOpt({ kind: "adafactor", weightDecayRate: 0.1 }, p, g, 0),
      p0.map((x) => 0.9 * x),
      `${path} lr 0`,
    );
  }
  await enableSimdKernels(undefined);
  await tf.setBackend("cpu");
});

Deno.test("Adafactor, hand-computed steps (HF formulas: decay 1 - t^-0.8, eps 1e-30, clip 1, scale, wd)", async () => {
  // float32 results of a few operations on values <= 4: 2e-6 relative (about 4 ulps).
  const near = (got: number[], want: number[], what: string) =>
    want.forEach((w, i) =>
      assert.ok(
        Math.abs(got[i]! - w) <= 2e-6 * Math.max(1, Math.abs(w)),
        `${what}[${i}]: ${got[i]} vs ${w}`,
      )
    );
  for (const path of ADAMW_PATHS) {
    await usePath(path);
    // Factored 2x2, step 1: beta2_1 = 1 - 1^-0.8 = 0, so the moments are the squared gradient's
    // means. g = [[1, 2], [3, 4]]: rows vr = [2.5, 12.5], columns vc = [5, 10];
    // r = vr / mean(vr) = [1/3, 5/3]; u_ij = g_ij / sqrt(r_i vc_j)
    //   = [[sqrt(3/5), 2 sqrt(0.3)], [3 sqrt(3) / 5, 4 sqrt(0.06)]], RMS(u) = sqrt(0.96) < 1: no clip.
    const u = [Math.sqrt(0.6), 2 * Math.sqrt(0.3), 3 * Math.sqrt(3) / 5, 4 * Math.sqrt(0.06)];
    const p = [[3, 4], [0, 0]];
    const g = [[[1, 2], [3, 4]]];
    near(
      await runOpt({ kind: "adafactor" }, p, g, 0.1),
      [3, 4, 0, 0].map((x, i) => x - 0.1 * u[i]!),
      `${path} plain`,
    );
    // Parameter scale: the rate is lr · max(1e-3, RMS(p)) = 0.1 · 2.5 = 0.25, and the decoupled
    // weight decay uses that rate too: p ← p − 0.1 · 0.25 · p − 0.25 · u.
    near(
      await runOpt(
        { kind: "adafactor", multiplyByParameterScale: true, weightDecay: 0.1 },
        p,
        g,
        0.1,
      ),
      [3, 4, 0, 0].map((x, i) => x * (1 - 0.025) - 0.25 * u[i]!),
      `${path} scaled`,
    );
    // Unfactored, two steps at lr 1. Step 1: v = g^2, u = sign(g) = [1, 1], p = [-1, -1].
    // Step 2: beta2_2 = 1 - 2^-0.8 = 0.4256508225; v = [0.0042565 + 0.5743492 · 100, 0.01]
    // = [57.43917426, 0.01]; u = [10 / sqrt(57.43917426), 1] = [1.319459019, 1];
    // RMS(u) = 1.170677604 > 1: clipped to u / 1.170677604 = [1.127089999, 0.854206143].
    near(
      await runOpt({ kind: "adafactor" }, [0, 0], [[0.1, 0.1], [10, 0.1]], 1),
      [-2.127089999, -1.854206143],
      `${path} unfactored, clipped`,
    );
  }
  await enableSimdKernels(undefined);
  await tf.setBackend("cpu");
});
