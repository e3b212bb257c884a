/**
 * Tests of the WGSL fused kernels (fused_kernels.ts) through the ops of model/fused.ts on the
 * webgpu backend, against the float64 references of model/fused_testing.ts, the JavaScript
 * dropout mask, and tfjs's own kernels (the composite ops, on the cpu backend). They run on whatever adapter Deno's WebGPU gives (here the llvmpipe software
 * adapter; each shader costs seconds to compile the first time); without an adapter they are
 * ignored and their names say why.
 *
 * Tolerances are those of the wasm SIMD kernels (model/fused_test.ts): the WGSL computes the same
 * float32 formulas, except that WGSL's `exp` and `sqrt` may be less exact than Cephes' (the
 * WGSL spec allows 3 + 2·|x| ulp for exp): GELU results are checked with the relative bound of
 * `assertGeluClose` times 4. Dropout masks are integer hashes and must match bit for bit.
 */

import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-webgpu";
import assert from "node:assert/strict";
import {
  ADAFACTOR,
  ADAMW,
  ATTENTION_SOFTMAX,
  attentionSoftmax,
  dropout,
  DROPOUT_ADD,
  dropoutAdd,
  dropoutMask,
  dropoutMaskParams,
  fillDropoutMask,
  GATED_GELU,
  GATED_GELU_DROPOUT,
  gatedGelu,
  gatedGeluDropout,
  registerInPlaceUpdates,
  RMS_NORM_GRAD,
  rmsNorm,
  rmsNormKeep,
  SOFTMAX_XENT,
  SOFTMAX_XENT_GRAD,
  softmaxCrossEntropy,
} from "../fused.ts";
import { registerWebgpuKernels, selfCheckWebgpuKernels, unregisterWebgpuKernels } from "./mod.ts";
import { preset } from "../config.ts";
import { crossEntropyLoss, disposeT5, forward, initT5, shiftRight } from "../t5.ts";
import { normGradSource, rowProgramsNormGrad, rowProgramSource } from "./fused_kernels.ts";
import { f32, grid, i32 } from "./wgsl.ts";
import { createOptimizer, type OptimizerConfig } from "../../benchmarks/optim.ts";
import { threeSteps } from "../../benchmarks/optim_testing.ts";
import { uniformValues } from "../../benchmarks/rng.ts";
import { doubledOutput, gpuTest, withWebgpuKernel } from "./testing.ts";
import { countGpuWork } from "./counters.ts";
import {
  assertClose,
  crossEntropyAndGrad,
  crossEntropyReference,
  gatedGeluReference,
  GELU_ABS,
  geluInputs,
  maxAbs,
  rmsNormReference,
} from "../fused_testing.ts";

/**
 * Runs `f` on webgpu (asserting that it leaks no tensor), then on the cpu backend; gives both
 * results and leaves webgpu selected.
 */
async function gpuThenCpu<T>(f: () => Promise<T>, what: string): Promise<[T, T]> {
  const before = tf.memory().numTensors;
  const gpu = await f();
  assert.equal(tf.memory().numTensors, before, `${what}: tensors leaked on webgpu`);
  await tf.setBackend("cpu");
  try {
    return [gpu, await f()];
  } finally {
    await tf.setBackend("webgpu");
  }
}

/** gpuTest with the custom kernels registered. */
function fusedTest(name: string, fn: () => Promise<void>): void {
  gpuTest(name, fn, () => assert.ok(registerWebgpuKernels()));
}

Deno.test("row program source: one barrier loop, two sums only for dx", () => {
  assert.match(rowProgramSource("norm"), /workgroupBarrier/);
  assert.doesNotMatch(rowProgramSource("norm"), /wgDot/);
  assert.match(rowProgramSource("dx"), /var<workgroup> wgDot/);
  assert.match(rowProgramSource("rinv"), /result\[row\] = r/);
  assert.match(rowProgramSource("dxr"), /var<workgroup> wgDot/);
  assert.match(rowProgramSource("dxr"), /result\[base \+ j\] = g \+ DR\[base \+ j\]/);
  assert.doesNotMatch(rowProgramSource("dx"), /DR/);
  // The in-place gradient rows: dx and r written in one dispatch, the residual's added with it.
  for (const residual of [false, true]) {
    const src = normGradSource(residual);
    assert.match(src, /var<storage, read_write> DX /);
    assert.match(src, /var<storage, read_write> RINV /);
    assert.equal(/var<storage, read> DR /.test(src), residual);
    assert.match(src, residual ? /DX\[base \+ j\] = g \+ DR\[base \+ j\]/ : /DX\[base \+ j\] = g;/);
  }
});

fusedTest("webgpu RMS norm gradient: dx and r in one dispatch, dw in one more", async () => {
  // [70, 37]: more rows than dw's 16 lanes, a partial block of 16 columns; [9, 200]: fewer rows.
  for (const [rows, d] of [[9, 200], [70, 37]] as const) {
    await normGradCase(rows, d);
  }
});

fusedTest(
  "webgpu RMS norm gradient of no rows: empty dx and zero dw as on cpu, no dispatch, no error",
  async () => {
    // x [0, 5] (an empty batch): the in-place dispatch got the grid [0, NaN, 1] and threw, and
    // the row programs bound the empty x, a WebGPU validation error.
    const d = 5;
    const [x, dy, dr] = [0, 1, 2].map(() => tf.zeros([0, d]));
    const w = tf.tensor1d([1, 2, 3, 4, 5]);
    const device = (tf.backend() as unknown as { device: GPUDevice }).device;
    for (const withResidual of [false, true]) {
      const before = tf.memory().numTensors;
      device.pushErrorScope("validation");
      const stop = countGpuWork()!;
      let outs: tf.Tensor[];
      let error: GPUError | null;
      try {
        outs = tf.engine().runKernel(
          RMS_NORM_GRAD,
          withResidual ? { x: x!, w, dy: dy!, dr: dr! } : { x: x!, w, dy: dy! },
          { eps: 1e-6 },
        ) as tf.Tensor[];
      } finally {
        assert.equal(stop().dispatches, 0, "nothing to dispatch");
        error = await device.popErrorScope(); // closed whatever happened
      }
      const [gx, gw] = outs;
      assert.deepEqual(gx!.shape, [0, d]);
      assert.deepEqual(Array.from(await gw!.data()), [0, 0, 0, 0, 0]);
      assert.equal(error, null, "no validation error");
      tf.dispose(outs);
      assert.equal(tf.memory().numTensors, before, "tensors leaked");
    }
    // The stock ops' gradient (the composite, on cpu) of the same empty batch: the same.
    const [gx, gw] = await gpuThenCpu(async () => {
      const g = tf.grads((a: tf.Tensor, b: tf.Tensor) => rmsNorm(a, b as tf.Tensor1D, 1e-6))(
        [x!, w],
        dy!,
      );
      const v = [g[0]!.shape, Array.from(await g[1]!.data())] as const;
      tf.dispose(g);
      return v;
    }, "empty rms norm gradient");
    assert.deepEqual(gx, gw);
    tf.dispose([x!, dy!, dr!, w]);
    assert.deepEqual(grid(0, 65535), [0, 1, 1], "an empty grid has no NaN");
    assert.deepEqual(grid(70000, 65535), [65535, 2, 1]);
  },
);

fusedTest(
  "webgpu RMS norm gradient without the in-place dispatch: the row programs agree",
  async () => {
    const [rows, d] = [70, 37];
    const x = tf.tensor(uniformValues(rows * d, 61).map((v) => 3 * v), [rows, d]);
    const w = tf.tensor1d(uniformValues(d, 62).map((v) => v + 1.5));
    const dy = tf.tensor(uniformValues(rows * d, 63), [rows, d]);
    const dr = tf.tensor(uniformValues(rows * d, 64), [rows, d]);
    const backend = tf.backend() as unknown as Parameters<typeof rowProgramsNormGrad>[0];
    const xs = Array.from(await x.data());
    for (const withResidual of [false, true]) {
      const before = tf.memory().numTensors;
      // The in-place path (the kernel as registered).
      const [wantDx, wantDw] = tf.engine().runKernel(
        RMS_NORM_GRAD,
        withResidual ? { x, w, dy, dr } : { x, w, dy },
        { eps: 1e-6 },
      ) as tf.Tensor[];
      const got = rowProgramsNormGrad(
        backend,
        x,
        w,
        dy,
        withResidual ? dr : undefined,
        [i32(rows), i32(d), f32(1e-6)],
      );
      const dx = tf.engine().makeTensorFromTensorInfo(got.dx);
      const r = tf.engine().makeTensorFromTensorInfo(got.rinv);
      // The same WGSL sums in the same order as the in-place dispatch: equal bit for bit here.
      assert.deepEqual(await dx.data(), await wantDx!.data(), `dx r:${withResidual}`);
      const rv = await r.data();
      for (let row = 0; row < rows; row++) {
        const ms = xs.slice(row * d, (row + 1) * d).reduce((a, v) => a + v * v, 0) / d;
        const want = 1 / Math.sqrt(ms + 1e-6);
        // A float32 sum of 37 squares against float64: 1e-5 relative.
        assert.ok(Math.abs(rv[row]! - want) <= 1e-5 * want, `r of row ${row}: ${rv[row]} ${want}`);
      }
      tf.dispose([dx, r, wantDx!, wantDw!]);
      assert.equal(tf.memory().numTensors, before, "tensors leaked");
    }
    tf.dispose([x, w, dy, dr]);
  },
);

/** The RMS norm's gradient kernel on `[rows, d]`, with and without dr: dispatches and values. */
async function normGradCase(rows: number, d: number): Promise<void> {
  const x = uniformValues(rows * d, 51).map((v) => 3 * v);
  const w = uniformValues(d, 52).map((v) => v + 1.5);
  const dy = uniformValues(rows * d, 53);
  const dr = uniformValues(rows * d, 54);
  const want = rmsNormReference(x, w, dy, 1e-6);
  const [xt, wt, dyt, drt] = [
    tf.tensor(x, [rows, d]),
    tf.tensor1d(w),
    tf.tensor(dy, [rows, d]),
    tf.tensor(dr, [rows, d]),
  ];
  for (const withResidual of [false, true]) {
    const before = tf.memory().numTensors;
    const stop = countGpuWork()!;
    const [dx, dw] = tf.engine().runKernel(
      RMS_NORM_GRAD,
      withResidual ? { x: xt, w: wt, dy: dyt, dr: drt } : { x: xt, w: wt, dy: dyt },
      { eps: 1e-6 },
    ) as tf.Tensor[];
    const { dispatches, programs } = stop();
    assert.equal(dispatches, 2, "dx and r together, then dw");
    assert.equal(programs, 1, "dw is the one tfjs program");
    const wantDx = withResidual ? want.dx.map((v, i) => v + dr[i]!) : want.dx;
    // As the RMS norm test: float32 sums of 200 terms, 1e-5 of the largest term.
    assertClose(await dx!.data(), wantDx, 1e-5, `dx r:${withResidual}`, 1e-5 * maxAbs(wantDx));
    assertClose(await dw!.data(), want.dw, 1e-5, `dw r:${withResidual}`, 1e-5 * maxAbs(want.dw));
    tf.dispose([dx!, dw!]);
    assert.equal(tf.memory().numTensors, before, "the scratch r is released");
  }
  tf.dispose([xt, wt, dyt, drt]);
}

fusedTest("webgpu dropout mask equals the JavaScript mask bit for bit", async () => {
  assert.ok(tf.getKernel(GATED_GELU, "webgpu") !== undefined, "fused kernels registered");
  const shape = [3, 7, 41]; // 861: not a multiple of the 256-thread workgroup
  const want = new Float32Array(861);
  fillDropoutMask(want, dropoutMaskParams(0.1, 4242));
  const m = dropoutMask(shape, 0.1, 4242);
  assert.deepEqual(m.shape, shape);
  assert.deepEqual(await m.data(), want);
  // Applied: x ⊙ mask as one kernel, and its gradient dy ⊙ mask, the same float32 products.
  const xv = uniformValues(861, 5);
  const x = tf.tensor(xv, shape);
  const y = dropout(x, 0.1, 4242);
  const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(dropout(t, 0.1, 4242), 2)))(x);
  const [yv, gv] = await Promise.all([y.data(), g.data()]);
  for (let i = 0; i < 861; i++) {
    assert.equal(yv[i], Math.fround(xv[i]! * want[i]!), `y[${i}]`);
    assert.equal(gv[i], Math.fround(2 * want[i]!), `grad[${i}]`);
  }
  tf.dispose([m, x, y, g]);
});

fusedTest(
  "webgpu residual with dropout: x + h ⊙ mask in one dispatch, gradients dy and dy ⊙ mask",
  async () => {
    assert.ok(tf.getKernel(DROPOUT_ADD, "webgpu") !== undefined, "kernel registered");
    const shape = [3, 7, 41];
    const mask = new Float32Array(861);
    fillDropoutMask(mask, dropoutMaskParams(0.1, 99));
    const xv = uniformValues(861, 11);
    const hv = uniformValues(861, 12);
    const before = tf.memory().numTensors;
    const x = tf.tensor(xv, shape);
    const h = tf.tensor(hv, shape);
    const stop = countGpuWork()!;
    const y = dropoutAdd(x, h, 0.1, 99);
    assert.equal(stop().dispatches, 1, "one dispatch");
    const [gx, gh] = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
      tf.sum(tf.mul(dropoutAdd(a, b, 0.1, 99), 3))
    )([x, h]);
    const [yv, gxv, ghv] = await Promise.all([y.data(), gx!.data(), gh!.data()]);
    for (let i = 0; i < 861; i++) {
      // x + h·m: the same two float32 roundings as tf.add(x, dropout(h)), unless the shader
      // compiler contracts them into one fma (then within one rounding of the product).
      const want = Math.fround(xv[i]! + Math.fround(hv[i]! * mask[i]!));
      assert.ok(Math.abs(yv[i]! - want) <= 2 ** -23 * Math.abs(want) + 1e-30, `y[${i}]`);
      assert.equal(gxv[i], 3, `dx[${i}]`);
      assert.equal(ghv[i], Math.fround(3 * mask[i]!), `dh[${i}]`);
    }
    tf.dispose([x, h, y, gx!, gh!]);
    assert.equal(tf.memory().numTensors, before, "tensors leaked");
  },
);

fusedTest(
  "webgpu gated GELU with dropout: one dispatch, equal bit for bit to gated GELU then dropout",
  async () => {
    assert.ok(tf.getKernel(GATED_GELU_DROPOUT, "webgpu") !== undefined, "kernel registered");
    const a = geluInputs(uniformValues(300, 17));
    const b = Float32Array.from(uniformValues(a.length, 18), (v) => 2 * v + 0.1);
    const dy = uniformValues(a.length, 19);
    const before = tf.memory().numTensors;
    const [at, bt, dyt] = [a, b, dy].map((v) => tf.tensor(v, [3, 100]));
    const stop = countGpuWork()!;
    const fused = gatedGeluDropout(at!, bt!, 0.2, 31);
    assert.equal(stop().dispatches, 1, "one dispatch forward");
    const composite = tf.tidy(() => dropout(gatedGelu(at!, bt!), 0.2, 31));
    const f = (x: tf.Tensor, z: tf.Tensor) => gatedGeluDropout(x, z, 0.2, 31);
    const c = (x: tf.Tensor, z: tf.Tensor) => dropout(gatedGelu(x, z), 0.2, 31);
    const gf = tf.grads(f)([at!, bt!], dyt);
    const gc = tf.grads(c)([at!, bt!], dyt);
    const [yf, yc, daf, dac, dbf, dbc] = await Promise.all(
      [fused, composite, gf[0]!, gc[0]!, gf[1]!, gc[1]!].map((t) => t.data()),
    );
    assert.deepEqual(yf, yc, "forward");
    assert.deepEqual(daf, dac, "da");
    assert.deepEqual(dbf, dbc, "db");
    assert.ok(yf!.some((v) => v === 0) && yf!.some((v) => v !== 0), "some dropped, some kept");
    tf.dispose([at!, bt!, dyt!, fused, composite, ...gf, ...gc]);
    assert.equal(tf.memory().numTensors, before, "tensors leaked");
  },
);

fusedTest("webgpu softmax cross-entropy: loss and gradient equal the cpu composite", async () => {
  assert.ok(tf.getKernel(SOFTMAX_XENT, "webgpu") !== undefined, "kernel registered");
  // 6 tokens (one ignored) over 300 logits: several strides of the 64-thread rows.
  const [b, l, v] = [2, 3, 300];
  const logits = uniformValues(b * l * v, 71).map((x) => 6 * x);
  const labels = [3, 299, -100, 0, 170, 64];
  // Without and with T5X's z-loss (0.05: the kernel's log-sum-exp column, and the gradient
  // term 2z·lse·softmax that the gradient kernel folds into its row scale: 2z·lse ≈ 0.6 here, so
  // a kernel that left it out would be off by more than half of the softmax term).
  for (const [eps, z] of [[0, 0], [0.1, 0], [0, 0.05], [0.1, 0.05]] as const) {
    // gpuThenCpu checks that nothing is left behind on webgpu.
    const [got, want] = await gpuThenCpu(
      () => crossEntropyAndGrad(logits, labels, [b, l, v], eps, z),
      `xent eps=${eps} z=${z}`,
    );
    // float32 sums over 300 logits in another order (√300·2⁻²⁴ ≈ 1e-6) and exp at |x| ≤ 12
    // (WGSL: ≤ 27 ulp ≈ 1.6e-6 on a GPU at the bound): 1e-5 relative. Measured on the llvmpipe
    // adapter: loss ≤ 1.5e-7 relative, gradient ≤ 1.9e-7 of its max.
    assertClose(got[0]!, want[0]!, 1e-5, `loss eps=${eps} z=${z}`);
    assertClose(got[1]!, want[1]!, 0, `grad eps=${eps} z=${z}`, 1e-5 * maxAbs(want[1]!));
  }
});

fusedTest(
  "webgpu softmax cross-entropy with z-loss: one [n, V] kernel in the step, float64 gradient",
  async () => {
    // The gradient kernel adds z-loss's 2z·lse·softmax in its one pass (LSE_GRAD_IN_KERNEL):
    // against a float64 hand computation, per counted row r and logit j,
    // d/dx_j = [(1 + 2z·lse)·softmax_j − (1−ε)·[j = label] − ε/V] / count. WGSL exp (3 + 2|x|
    // ulp) and float32 sums over V = 203 logits: 1e-5 of the largest gradient (the wasm kernels'
    // bound, model/fused_test.ts), and 1e-5 relative on the loss. Measured on the llvmpipe
    // adapter (whose exp is nearly correctly rounded): loss 9.0e-8 relative, gradient 1.6e-7 of
    // its max (60× inside). Not tighter: logits are in [−8, 8), so exp(x − max) sees |x| ≤ 16,
    // where a GPU at WGSL's bound may be 35 ulp ≈ 2.1e-6 relative off per exp — the bound keeps
    // 5× over that, plus the sums' √V·2⁻²⁴ ≈ 8.5e-7 in any order.
    const [b, l, v] = [2, 3, 203];
    const logits = uniformValues(b * l * v, 79).map((x) => 8 * x);
    const labels = [3, 202, -100, 0, 117, 5];
    for (const [eps, z] of [[0, 0.05], [0.1, 1e-4]] as const) {
      const { loss: want, grad: wantGrad } = crossEntropyReference(logits, labels, v, eps, z);
      const before = tf.memory().numTensors;
      const [loss, grad] = await crossEntropyAndGrad(logits, labels, [b, l, v], eps, z);
      assert.equal(tf.memory().numTensors, before, `eps=${eps} z=${z}: tensors leaked`);
      assertClose(loss!, [want], 1e-5, `loss eps=${eps} z=${z}`);
      assertClose(grad!, wantGrad, 0, `grad eps=${eps} z=${z}`, 1e-5 * maxAbs(wantGrad));
      // Every kernel of the step (forward and backward) that writes a full [n, V] tensor
      // (Reshape and Identity share their input's data): the gradient kernel only. Before the
      // fold the backward added Sub, Exp, Mul and Add of that size (the fused kernels'
      // programs, counted too: FusedElementwiseProgram's xentGrad is the only full-size one).
      const init = tf.tensor3d(logits, [b, l, v]);
      const x = tf.variable(init);
      init.dispose();
      const y = tf.tensor2d(labels, [b, l], "int32");
      const stop = countGpuWork()!;
      const info = await tf.profile(() => {
        const { value, grads } = tf.variableGrads(
          () =>
            crossEntropyLoss(x as tf.Tensor as tf.Tensor3D, y, { labelSmoothing: eps, zLoss: z }),
          [x],
        );
        tf.dispose([value, ...Object.values(grads)]);
      });
      const programs = stop().byProgram;
      const full = info.kernels.filter((k) =>
        k.name !== "Reshape" && k.name !== "Identity" &&
        k.outputShapes.some((s) => s !== undefined && s.reduce((p, d) => p * d, 1) === b * l * v)
      ).map((k) => k.name);
      assert.deepEqual(full, [SOFTMAX_XENT_GRAD], `eps=${eps} z=${z}`);
      assert.equal(
        programs["FusedElementwiseProgram"],
        1,
        `eps=${eps} z=${z}: ${JSON.stringify(programs)}`,
      );
      tf.dispose([x, y]);
      assert.equal(tf.memory().numTensors, before, `eps=${eps} z=${z}: tensors leaked`);
    }
  },
);

fusedTest(
  "webgpu softmax cross-entropy: a label out of range makes its row NaN (wasm throws)",
  async () => {
    const before = tf.memory().numTensors;
    const logits = tf.tensor2d(uniformValues(4 * 5, 72), [4, 5]);
    const labels = tf.tensor1d([1, 5, -1, 4], "int32"); // v = 5: rows 1 and 2 are out of range
    const loss = softmaxCrossEntropy(logits, labels, 0)!;
    const grad = tf.grad((x: tf.Tensor) =>
      tf.sum(softmaxCrossEntropy(x as tf.Tensor2D, labels, 0)!)
    )(
      logits,
    );
    const [lv, gv] = [await loss.data(), await grad.data()];
    assert.deepEqual(Array.from(lv, Number.isNaN), [false, true, true, false], `loss ${lv}`);
    for (let r = 0; r < 4; r++) {
      const row = Array.from(gv.subarray(5 * r, 5 * r + 5));
      const bad = r === 1 || r === 2;
      assert.ok(row.every((g) => Number.isNaN(g) === bad), `grad row ${r}: ${row}`);
    }
    tf.dispose([logits, labels, loss, grad]);
    assert.equal(tf.memory().numTensors, before, "tensors leaked");
  },
);

fusedTest("webgpu gated GELU: forward and both gradients match float64", async () => {
  const a = geluInputs(uniformValues(300, 7));
  const b = Float32Array.from(uniformValues(a.length, 8), (v) => 2 * v + 0.1);
  const dy = uniformValues(a.length, 9);
  const want = gatedGeluReference(a, b, dy);
  const before = tf.memory().numTensors;
  const at = tf.tensor(a, [3, 100]);
  const bt = tf.tensor(b, [3, 100]);
  const dyt = tf.tensor(dy, [3, 100]);
  const y = gatedGelu(at, bt);
  const [da, db] = tf.grads((x: tf.Tensor, z: tf.Tensor) => gatedGelu(x, z))([at, bt], dyt);
  const check = async (t: tf.Tensor, w: number[], terms: number[], what: string) => {
    const got = await t.data();
    for (let i = 0; i < w.length; i++) {
      const x = a[i]!;
      const arg = Math.abs(2 * Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x));
      const tol = 4 * (2e-6 + 2 ** -23 * Math.min(arg, 88.3)) * Math.abs(terms[i]!) + GELU_ABS;
      assert.ok(Math.abs(got[i]! - w[i]!) <= tol, `${what}[${i}] x=${x}: ${got[i]} vs ${w[i]}`);
    }
  };
  await check(y, want.y, want.y, "y");
  await check(da!, want.da, want.daTerms, "da");
  await check(db!, want.db, want.db, "db");
  tf.dispose([at, bt, dyt, y, da!, db!]);
  assert.equal(tf.memory().numTensors, before, "tensors leaked");
});

fusedTest("webgpu RMS norm: forward and gradients match float64", async () => {
  for (const [rows, d] of [[5, 12], [3, 200]]) {
    const x = uniformValues(rows! * d!, 21).map((v) => 3 * v);
    const w = uniformValues(d!, 22).map((v) => v + 1.5);
    const dy = uniformValues(rows! * d!, 23);
    const want = rmsNormReference(x, w, dy, 1e-6);
    const before = tf.memory().numTensors;
    const xt = tf.tensor(x, [1, rows!, d!]);
    const wt = tf.tensor1d(w);
    const dyt = tf.tensor(dy, [1, rows!, d!]);
    const y = rmsNorm(xt, wt, 1e-6);
    const [dx, dw] = tf.grads((p: tf.Tensor, q: tf.Tensor) => rmsNorm(p, q as tf.Tensor1D, 1e-6))(
      [xt, wt],
      dyt,
    );
    assert.deepEqual(y.shape, [1, rows, d]);
    // Float32 sums of d ≤ 200 terms in a different order than float64: 1e-5 relative to the
    // largest term.
    assertClose(await y.data(), want.y, 1e-5, `y ${rows}x${d}`, 1e-5 * maxAbs(want.y));
    assertClose(await dx!.data(), want.dx, 1e-5, `dx ${rows}x${d}`, 1e-5 * maxAbs(want.dx));
    assertClose(await dw!.data(), want.dw, 1e-5, `dw ${rows}x${d}`, 1e-5 * maxAbs(want.dw));
    tf.dispose([xt, wt, dyt, y, dx!, dw!]);
    assert.equal(tf.memory().numTensors, before, "tensors leaked");
  }
});

fusedTest(
  "webgpu RMS norm keep: the norm, x itself, and x's gradient with the residual's",
  async () => {
    for (const [rows, d] of [[5, 12], [3, 200]]) {
      const x = uniformValues(rows! * d!, 41).map((v) => 3 * v);
      const w = uniformValues(d!, 42).map((v) => v + 1.5);
      const dy = uniformValues(rows! * d!, 43);
      const dr = uniformValues(rows! * d!, 44);
      const want = rmsNormReference(x, w, dy, 1e-6);
      const wantDx = want.dx.map((v, i) => v + dr[i]!);
      const before = tf.memory().numTensors;
      const [xt, wt, dyt, drt] = [
        tf.tensor(x, [1, rows!, d!]),
        tf.tensor1d(w),
        tf.tensor(dy, [1, rows!, d!]),
        tf.tensor(dr, [1, rows!, d!]),
      ];
      const [y, r] = rmsNormKeep(xt, wt, 1e-6);
      const plain = rmsNorm(xt, wt, 1e-6);
      assert.deepEqual(await y.data(), await plain.data(), "the same norm");
      assert.deepEqual(await r.data(), await xt.data(), "x passed through");
      const [dx, dw] = tf.grads((p: tf.Tensor, q: tf.Tensor) => {
        const [n, k] = rmsNormKeep(p, q as tf.Tensor1D, 1e-6);
        return tf.add(tf.sum(tf.mul(n, dyt)), tf.sum(tf.mul(k, drt)));
      })([xt, wt]);
      // Float32 sums of d ≤ 200 terms in a different order than float64: 1e-5 relative to the
      // largest term.
      assertClose(await dx!.data(), wantDx, 1e-5, `dx ${rows}x${d}`, 1e-5 * maxAbs(wantDx));
      assertClose(await dw!.data(), want.dw, 1e-5, `dw ${rows}x${d}`, 1e-5 * maxAbs(want.dw));
      tf.dispose([xt, wt, dyt, drt, y, r, plain, dx!, dw!]);
      assert.equal(tf.memory().numTensors, before, "tensors leaked");
    }
  },
);

/**
 * `attentionSoftmax(scores, bias, mask)` on the current backend/**
 * `attentionSoftmax(scores, bias, mask)` on the current backend and its gradients with respect
 * to the scores and the bias for the upstream gradient `dyv`, read back (nothing left behind).
 */
async function softmaxAndGrads(
  sv: Float32Array,
  shape: [number, number, number, number],
  bv: Float32Array,
  biasShape: number[],
  mv: Float32Array,
  maskShape: number[],
  dyv: Float32Array,
): Promise<Float32Array[]> {
  const s0 = tf.tensor(sv, shape) as tf.Tensor4D;
  const b0 = tf.tensor(bv, biasShape);
  const m0 = tf.tensor(mv, maskShape);
  const dy = tf.tensor(dyv, shape);
  const p = attentionSoftmax(s0, b0, m0);
  const [ds, db] = tf.grads((x: tf.Tensor, y: tf.Tensor) =>
    attentionSoftmax(x as tf.Tensor4D, y, m0)
  )([s0, b0], dy);
  const out = await Promise.all([p, ds!, db!].map((t) => t.data() as Promise<Float32Array>));
  tf.dispose([s0, b0, m0, dy, p, ds!, db!]);
  return out;
}

fusedTest("webgpu attention softmax with bias and mask: probabilities and gradients", async () => {
  const shape: [number, number, number, number] = [2, 3, 5, 7]; // 7 keys: fewer than the 64 threads of a row, not a multiple of 4
  const sv = uniformValues(2 * 3 * 5 * 7, 51).map((v) => 4 * v);
  const bv = uniformValues(3 * 5 * 7, 52);
  const mv = Float32Array.from({ length: 2 * 7 }, (_, i) => (i === 3 || i === 12 ? -1e9 : 0));
  const dyv = uniformValues(sv.length, 53);
  const run = () => softmaxAndGrads(sv, shape, bv, [1, 3, 5, 7], mv, [2, 1, 1, 7], dyv);
  const stop = countGpuWork()!;
  let programs: string[] = [];
  let got: Float32Array[];
  try {
    got = await run();
  } finally {
    programs = Object.keys(stop().byProgram);
  }
  // The bias gradient (a sum over the batch) is one pass, not tfjs's Transpose + Reduce.
  assert.ok(
    !programs.some((n) => /^(Transpose|Reduce)Program/.test(n)),
    programs.join(", "),
  );
  await tf.setBackend("cpu"); // the composite: Add, Add, Softmax and tfjs's gradients
  const want = await run();
  await tf.setBackend("webgpu");
  // Float32 sums over 7 keys (and, for the bias, 2 batch rows) in another order: 1e-5 relative
  // to the largest value.
  for (const [i, name] of ["probs", "d scores", "d bias"].entries()) {
    assertClose(got[i]!, want[i]!, 1e-5, name, 1e-6 * maxAbs(want[i]!));
  }
  assert.equal(got[0]![3], 0, "masked key gets probability 0");
  assert.throws(
    () => attentionSoftmax(tf.zeros([2, 3, 5, 7]) as tf.Tensor4D, tf.zeros([1, 2, 5, 7])),
    /bias \[1,2,5,7\] does not broadcast/,
  );
});

fusedTest(
  "webgpu attention softmax over 150 keys with a causal mask and a batch-broadcast bias",
  async () => {
    // 150 keys: more than the 64 threads of a row (each thread folds several keys, then the
    // workgroup reduces), not a multiple of 4; a per-query causal mask [1, 1, Q, K], as the
    // decoder's self-attention uses, and a bias shared over the batch.
    const [b, h, q, k] = [2, 2, 9, 150];
    const shape: [number, number, number, number] = [b, h, q, k];
    const sv = uniformValues(b * h * q * k, 61).map((v) => 6 * v);
    const bv = uniformValues(h * q * k, 62);
    const mv = Float32Array.from({ length: q * k }, (_, i) => (i % k > i / k + 140 ? -1e9 : 0));
    const dyv = uniformValues(sv.length, 63);
    const [got, want] = await gpuThenCpu(
      () => softmaxAndGrads(sv, shape, bv, [1, h, q, k], mv, [1, 1, q, k], dyv),
      "softmax k=150",
    );
    // Float32 sums over 150 keys in another order (and 2 batch rows for the bias): 1e-5 relative.
    for (const [i, name] of ["probs", "d scores", "d bias"].entries()) {
      assertClose(got[i]!, want[i]!, 1e-5, name, 1e-6 * maxAbs(want[i]!));
    }
    // Query 0 sees keys 0..140 only; the masked ones get probability 0 and no gradient.
    assert.equal(got[0]![141], 0);
    assert.equal(Math.abs(got[1]![149]!), 0);
    const row0 = got[0]!.slice(0, k).reduce((x, y) => x + y, 0);
    assert.ok(Math.abs(row0 - 1) < 1e-5, `row sums to ${row0}`);
  },
);

fusedTest(
  "webgpu attention softmax: a per-batch bias shared over heads and a per-head mask broadcast",
  async () => {
    // The other broadcasts of the kernel's bias and mask rows: a bias [B, 1, Q, K] (its own per
    // batch row, shared over heads; its gradient sums over the heads, not the batch) and a mask
    // [1, H, 1, K] (its own per head, shared over batch and queries). 9 keys: not a multiple of 4.
    const [b, h, q, k] = [2, 3, 4, 9];
    const shape: [number, number, number, number] = [b, h, q, k];
    const sv = uniformValues(b * h * q * k, 71).map((v) => 4 * v);
    const bv = uniformValues(b * q * k, 72);
    const mv = Float32Array.from(
      { length: h * k },
      (_, i) => (i % k === Math.floor(i / k) ? -1e9 : 0),
    );
    const dyv = uniformValues(sv.length, 73);
    const [got, want] = await gpuThenCpu(
      () => softmaxAndGrads(sv, shape, bv, [b, 1, q, k], mv, [1, h, 1, k], dyv),
      "softmax per-batch bias, per-head mask",
    );
    // Float32 sums over 9 keys (and, for the bias, 3 heads) in another order: 1e-5 relative.
    for (const [i, name] of ["probs", "d scores", "d bias"].entries()) {
      assert.equal(got[i]!.length, want[i]!.length, `${name} size`);
      assertClose(got[i]!, want[i]!, 1e-5, name, 1e-6 * maxAbs(want[i]!));
    }
    // Head 1 masks key 1 for every batch row and query.
    assert.equal(got[0]![(1 * h + 1) * q * k + 2 * k + 1], 0, "masked key of head 1");
  },
);

fusedTest(
  "webgpu Adafactor kernel: optim.ts Adafactor matches its op-by-op update on cpu",
  async () => {
    assert.ok(tf.getKernel(ADAFACTOR, "webgpu") !== undefined);
    // Three steps on matrices (fused kernel, any width) and a vector (op by op), with clipping
    // active, clipping off, and weight decay. Tolerance |Δ| ≤ 1e-5·|want| + 1e-6·max|want|:
    // float32 row/column means of g² over ≤ 70 terms and the RMS clip's sum over ≤ 350, in
    // another order (√n·2⁻²⁴ ≤ 1.1e-6 relative), WGSL inverseSqrt (2 ulp), compounded over 3
    // steps. Measured on the llvmpipe adapter: worst |Δ| 1.8e-7 of max|want| (weight decay on),
    // at most 2.4% of the allowance anywhere; a real GPU's other order/FMA gives the same √n size.
    const cfgs: OptimizerConfig[] = [
      { kind: "adafactor" },
      { kind: "adafactor", clippingThreshold: 0, weightDecay: 0.1 },
    ];
    for (const cfg of cfgs) {
      for (const shape of [[6, 8], [5, 70], [9]]) {
        const what = `${JSON.stringify(cfg)} ${JSON.stringify(shape)}`;
        const [got, want] = await gpuThenCpu(() => threeSteps(cfg, shape), what);
        assert.equal(got.length, want.length, what);
        got.forEach((g, i) =>
          assertClose(g, want[i]!, 1e-5, `${what} [${i}]`, 1e-6 * maxAbs(want[i]!))
        );
      }
    }
  },
);

fusedTest("webgpu AdamW kernel: optim.ts AdamW matches float64 over 3 steps", async () => {
  assert.ok(tf.getKernel(ADAMW, "webgpu") !== undefined);
  const p0 = Array.from(uniformValues(37, 31));
  const grads = [0, 1, 2].map((k) => Array.from(uniformValues(37, 40 + k)));
  const lr = 0.01, wd = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8;
  const p = [...p0];
  const m = new Array<number>(37).fill(0);
  const v = new Array<number>(37).fill(0);
  grads.forEach((g, k) => {
    const t = k + 1;
    for (let i = 0; i < 37; i++) {
      m[i] = b1 * m[i]! + (1 - b1) * g[i]!;
      v[i] = b2 * v[i]! + (1 - b2) * g[i]! * g[i]!;
      const mh = m[i]! / (1 - b1 ** t);
      const vh = v[i]! / (1 - b2 ** t);
      p[i] = p[i]! - lr * wd * p[i]! - (lr * mh) / (Math.sqrt(vh) + eps);
    }
  });
  const before = tf.memory().numTensors;
  const init = tf.tensor(p0);
  const w = tf.variable(init);
  init.dispose();
  const opt = createOptimizer({ kind: "adamw", weightDecay: wd });
  for (const g of grads) {
    const gt = tf.tensor(g);
    opt.apply(new Map([["w", w]]), new Map([["w", gt]]), lr);
    gt.dispose();
  }
  // fp32 vs fp64 over 3 steps of ~10 operations: 1e-5 relative to the parameter scale.
  assertClose(await w.data(), p, 1e-5, "p", 1e-5);
  opt.dispose();
  w.dispose();
  assert.equal(tf.memory().numTensors, before, "tensors leaked");
});

fusedTest(
  "selfCheckWebgpuKernels() passes with the fused kernels and catches a wrong one",
  async () => {
    const before = tf.memory().numTensors;
    const good = await selfCheckWebgpuKernels();
    assert.ok(good.ok, `self-check error ${good.maxRelErr} ${good.error ?? ""}`);
    assert.equal(tf.memory().numTensors, before, "the self-check leaves no tensor behind");
    // A gated GELU kernel that forgets the gate must fail the check.
    const noGate = (real: tf.KernelFunc): tf.KernelFunc => (args) =>
      real({ ...args, inputs: { a: args.inputs["b"]!, b: args.inputs["b"]! } });
    await withWebgpuKernel(GATED_GELU, noGate, async () => {
      const bad = await selfCheckWebgpuKernels();
      assert.equal(bad.ok, false);
    });
    // So must each of the other fused kernels of a training step when its numbers are wrong
    // (no shape error, nothing throws): an input replaced by another of the same shape, or the
    // softmax's probabilities doubled. The identity replacement is the control: it must pass.
    const replace =
      (replaced: string, by: string) => (real: tf.KernelFunc): tf.KernelFunc => (args) =>
        real({ ...args, inputs: { ...args.inputs, [replaced]: args.inputs[by]! } });
    const cases: [string, (real: tf.KernelFunc) => tf.KernelFunc, boolean][] = [
      [ATTENTION_SOFTMAX, doubledOutput, false],
      [DROPOUT_ADD, replace("h", "x"), false],
      [GATED_GELU_DROPOUT, replace("a", "b"), false],
      [SOFTMAX_XENT, doubledOutput, false],
      // a gradient kernel that leaves out z-loss's term (the lse column's gradient)
      [
        SOFTMAX_XENT_GRAD,
        (real) => (args) => real({ ...args, attrs: { ...args.attrs, lseGrad: false } }),
        false,
      ],
      [RMS_NORM_GRAD, replace("dr", "dy"), false], // the residual's gradient
      [RMS_NORM_GRAD, replace("dy", "x"), false], // the norm's gradient, alone or with dr
      [DROPOUT_ADD, replace("x", "x"), true],
    ];
    for (const [kernel, wrap, ok] of cases) {
      await withWebgpuKernel(kernel, wrap, async () => {
        const r = await selfCheckWebgpuKernels();
        assert.equal(r.ok, ok, `${kernel}: error ${r.maxRelErr}`);
      });
    }
    // And an in-place unfactored Adafactor that reports success without updating anything.
    registerInPlaceUpdates("webgpu", { adafactorUnfactored: () => true });
    try {
      assert.equal((await selfCheckWebgpuKernels()).ok, false, "a no-op unfactored Adafactor");
    } finally {
      assert.ok(registerWebgpuKernels()); // the real in-place updates again
    }
  },
);

fusedTest(
  "a self-check whose kernel throws leaves no tensor, variable or error scope behind",
  async () => {
    const device = (tf.backend() as unknown as { device: GPUDevice }).device;
    const variables = () => Object.keys(tf.engine().registeredVariables).length;
    const [tensors, vars] = [tf.memory().numTensors, variables()];
    // The attention softmax runs after the Adafactor check made its variables and gradient, and
    // inside a pushed validation error scope: the worst place to throw.
    const throwing = (): tf.KernelFunc => () => {
      throw new Error("driver rejected the shader");
    };
    await withWebgpuKernel(ATTENTION_SOFTMAX, throwing, async () => {
      await assert.rejects(selfCheckWebgpuKernels(), /driver rejected the shader/);
    });
    assert.equal(tf.memory().numTensors, tensors, "tensors made before the throw are disposed");
    assert.equal(variables(), vars, "variables made before the throw are disposed");
    // No validation scope is left open: popping one now finds none (an open one would swallow
    // every later validation error of this device).
    await assert.rejects(device.popErrorScope(), "no error scope left open");
    // A controlled validation error is still reported through a fresh scope.
    device.pushErrorScope("validation");
    device.createBuffer({ size: 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.STORAGE });
    assert.ok(await device.popErrorScope(), "a validation error after the failed check is seen");
    assert.ok((await selfCheckWebgpuKernels()).ok, "the restored kernel passes again");
    assert.equal(tf.memory().numTensors, tensors);
  },
);

/**
 * Counts, for one T5 training step on webgpu, the programs dispatched (counters.ts) and the bytes
 * uploaded from JavaScript (dropout masks drawn by tf.dropout, constants), the latter by wrapping
 * tfjs's WebGPUBackend `uploadToGPU` (internal API, with `tensorMap`).
 */
async function countStep(custom: boolean): Promise<{ programs: number; uploadBytes: number }> {
  if (custom) assert.ok(registerWebgpuKernels());
  const be = tf.backend() as unknown as Record<string, unknown> & {
    tensorMap: Map<unknown, { resource?: unknown; values?: ArrayBufferView }>;
  };
  const upload = be["uploadToGPU"] as (...a: unknown[]) => unknown;
  let uploadBytes = 0;
  be["uploadToGPU"] = function (this: unknown, ...a: unknown[]) {
    const d = be.tensorMap.get(a[0]);
    if (d !== undefined && d.resource == null) uploadBytes += d.values?.byteLength ?? 0;
    return upload.apply(this, a);
  };
  try {
    const config = { ...preset("tiny-v1_1"), vocabSize: 256 };
    const model = initT5(config, { seed: 1 });
    const [b, li, lt] = [2, 16, 4];
    const inputIds = tf.tensor2d(
      Int32Array.from({ length: b * li }, (_, i) => 2 + i),
      [b, li],
      "int32",
    );
    const attentionMask = tf.ones([b, li]) as tf.Tensor2D;
    const labels = tf.tensor2d(
      Int32Array.from({ length: b * lt }, (_, i) => 3 + i),
      [b, lt],
      "int32",
    );
    const decoderInputIds = shiftRight(labels, config);
    const vars = [...model.params.values()];
    const step = async () => {
      const r = tf.variableGrads(() =>
        crossEntropyLoss(
          forward(model, { inputIds, attentionMask, decoderInputIds }, {
            training: true,
            dropoutSeed: 1,
          }).logits,
          labels,
        ), vars);
      await r.value.data();
      tf.dispose([r.value, ...Object.values(r.grads)]);
    };
    await step(); // warm-up: weights uploaded once
    uploadBytes = 0;
    const stop = countGpuWork()!;
    await step();
    const { programs } = stop();
    tf.dispose([inputIds, attentionMask, labels, decoderInputIds]);
    disposeT5(model);
    return { programs, uploadBytes };
  } finally {
    be["uploadToGPU"] = upload;
    unregisterWebgpuKernels();
  }
}

gpuTest(
  "a T5 training step with the fused kernels: fewer dispatches, no mask uploads",
  async () => {
    const stock = await countStep(false);
    const fused = await countStep(true);
    console.log(
      `tiny T5 training step on webgpu: stock ${JSON.stringify(stock)}, fused ${
        JSON.stringify(fused)
      }`,
    );
    // Measured on the software adapter: 753 → 409 programs, 197,644 → 14,156 bytes uploaded (the
    // rest are scalar constants that tfjs creates on the CPU for ops such as x·0.5).
    assert.ok(fused.programs < 0.7 * stock.programs, `${fused.programs} vs ${stock.programs}`);
    assert.ok(
      fused.uploadBytes < stock.uploadBytes / 5,
      `${fused.uploadBytes} vs ${stock.uploadBytes}`,
    );
  },
);

fusedTest(
  "fused webgpu kernels agree with tfjs's own kernels (the composite ops on cpu)",
  async () => {
    // Each op through the fused webgpu kernel and through tfjs's stock kernels (model/fused.ts's
    // composite fallback, run on the cpu backend where no fused kernel is registered), on random
    // inputs in [−3, 3]. Tolerance: max |difference| ≤ 1e-5 · max |value| (float32 chains of
    // ≲ 20 operations differ by ≲ 2e-6 relative; the composite GELU's 1 + tanh cancels for
    // negative inputs, an absolute error of ~1e-7 · |x·b|). Measured on the llvmpipe adapter:
    // gatedGelu 1.9e-7, rmsNorm 9.2e-8 of max|value| (sums over 40 in tfjs's vs our order),
    // dropout 0 (same mask bits, one multiply); the bound is 5× the chain estimate for a GPU's
    // own order and exp/tanh ulps.
    const a = uniformValues(6 * 40, 61).map((v) => 3 * v);
    const b = uniformValues(6 * 40, 62).map((v) => 3 * v);
    const w = uniformValues(40, 63).map((v) => v + 1.2);
    const dy = uniformValues(6 * 40, 64);
    const ops: [string, () => tf.Tensor[]][] = [
      ["gatedGelu", () => {
        const [x, y, g] = [tf.tensor(a, [6, 40]), tf.tensor(b, [6, 40]), tf.tensor(dy, [6, 40])];
        const out = gatedGelu(x, y);
        const grads = tf.grads((p: tf.Tensor, q: tf.Tensor) => gatedGelu(p, q))([x, y], g);
        return [out, ...grads];
      }],
      ["rmsNorm", () => {
        const [x, wt, g] = [tf.tensor(a, [6, 40]), tf.tensor1d(w), tf.tensor(dy, [6, 40])];
        const out = rmsNorm(x, wt, 1e-6);
        const grads = tf.grads((p: tf.Tensor, q: tf.Tensor) => rmsNorm(p, q as tf.Tensor1D, 1e-6))(
          [x, wt],
          g,
        );
        return [out, ...grads];
      }],
      ["dropout", () => {
        const x = tf.tensor(a, [6, 40]);
        return [dropout(x, 0.2, 9), tf.grad((p: tf.Tensor) => tf.sum(dropout(p, 0.2, 9)))(x)];
      }],
    ];
    for (const [name, f] of ops) {
      const got = await Promise.all(
        tf.tidy(f).map(async (t) => {
          const v = await t.data();
          t.dispose();
          return v;
        }),
      );
      await tf.setBackend("cpu");
      const want = await Promise.all(
        tf.tidy(f).map(async (t) => {
          const v = await t.data();
          t.dispose();
          return v;
        }),
      );
      await tf.setBackend("webgpu");
      assert.equal(got.length, want.length, name);
      // Float32 sums of 40 terms (the RMS norm's mean square, a gradient's row sums) in another
      // order than cpu's: ≲ 40·2⁻²⁴ ≈ 2.4e-6 of the largest value at worst; 1e-5 is 4× that
      // (dropout's masks and scalings are the same bits: 0 measured).
      got.forEach((g, i) => assertClose(g, want[i]!, 0, `${name}[${i}]`, 1e-5 * maxAbs(want[i]!)));
    }
  },
);

gpuTest("registerWebgpuKernels({ fused: false }) installs the matMul alone", () => {
  assert.ok(registerWebgpuKernels({ fused: false }));
  assert.equal(tf.getKernel(GATED_GELU, "webgpu"), undefined);
  assert.ok(registerWebgpuKernels());
  assert.ok(tf.getKernel(GATED_GELU, "webgpu") !== undefined);
  unregisterWebgpuKernels();
  assert.equal(tf.getKernel(GATED_GELU, "webgpu"), undefined);
  return Promise.resolve();
});

/** Three AdamW training steps of a tiny T5 (dropout on); the losses and the final weights. */
async function trainTiny(): Promise<{ losses: number[]; weights: Map<string, Float32Array> }> {
  const config = { ...preset("tiny-v1_1"), vocabSize: 256 };
  const model = initT5(config, { seed: 3 });
  const [b, li, lt] = [2, 16, 4];
  const inputIds = tf.tensor2d(Int32Array.from({ length: b * li }, (_, i) => 2 + (i * 7) % 250), [
    b,
    li,
  ], "int32");
  const attentionMask = tf.tensor2d(
    Float32Array.from({ length: b * li }, (_, i) => (i % li < li - 3 * (i >= li ? 1 : 0) ? 1 : 0)),
    [b, li],
  );
  const labels = tf.tensor2d(Int32Array.from({ length: b * lt }, (_, i) => 3 + (i * 11) % 250), [
    b,
    lt,
  ], "int32");
  const decoderInputIds = shiftRight(labels, config);
  const names = [...model.params.keys()];
  const vars = [...model.params.values()];
  const opt = createOptimizer({ kind: "adamw", weightDecay: 0.01 });
  const losses: number[] = [];
  for (let step = 0; step < 3; step++) {
    const r = tf.variableGrads(() =>
      crossEntropyLoss(
        forward(model, { inputIds, attentionMask, decoderInputIds }, {
          training: true,
          dropoutSeed: 100 + step,
        }).logits,
        labels,
      ), vars);
    opt.apply(model.params, new Map(names.map((n, i) => [n, r.grads[vars[i]!.name]!])), 1e-3);
    losses.push((await r.value.data())[0]!);
    tf.dispose([r.value, ...Object.values(r.grads)]);
  }
  const weights = new Map<string, Float32Array>();
  for (const [n, v] of model.params) weights.set(n, (await v.data()) as Float32Array);
  opt.dispose();
  tf.dispose([inputIds, attentionMask, labels, decoderInputIds]);
  disposeT5(model);
  return { losses, weights };
}

fusedTest(
  "a tiny T5 trained 3 steps on webgpu (custom kernels, in-place AdamW, uniform arena, bind group cache) matches cpu",
  async () => {
    const [gpu, cpu] = await gpuThenCpu(trainTiny, "tiny T5 training");
    // Same initial weights, dropout bits and formulas; the backends sum in different orders.
    // Measured on the llvmpipe software adapter: the three losses equal to float32 (relative
    // difference 0; earlier runs ≤ 1e-7), weights within 2.1e-6 of their scale (worst of 52:
    // decoder block 0 EncDecAttention.q; next 1.6e-6, encoder block 1 wo). Adam's update divides
    // by √v, which magnifies the gradients' rounding differences in the first steps. Bounds: 1e-5
    // for both, ~5× the measured weight error — the tightest margin in this file: a GPU whose
    // softmax exp sits at WGSL's 3 + 2|x| ulp bound could push that toward the bound, so a
    // failure there by a small factor needs its own measurement before it is read as a bug.
    gpu.losses.forEach((l, i) =>
      assert.ok(
        Math.abs(l - cpu.losses[i]!) <= 1e-5 * Math.abs(cpu.losses[i]!),
        `loss ${i}: ${l} vs ${cpu.losses[i]}`,
      )
    );
    assert.ok(gpu.losses[2]! < gpu.losses[0]!, `training lowers the loss: ${gpu.losses}`);
    for (const [n, want] of cpu.weights) {
      assertClose(gpu.weights.get(n)!, want, 0, n, 1e-5 * maxAbs(want));
    }
  },
);
