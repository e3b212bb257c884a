/**
 * Tests of the fused kernels (model/fused.ts) and the wasm SIMD kernels behind them
 * (model/wasm_simd.ts), on the wasm backend with SIMD, with JavaScript loops, and on cpu.
 *
 * References are float64 evaluations of the same formulas. Tolerances:
 * - dropout masks are integer hashes: equal bit for bit on every path;
 * - exp: 4 ulp (Cephes expf is within 2 ulp of the true value; the two-factor scaling adds at
 *   most one rounding): relative 4·2⁻²³ ≈ 4.8e-7;
 * - gated GELU and its gradient: relative 2e-6 plus 2⁻²³·|exp argument| (the argument is
 *   rounded to float32 before exp, whose condition number is |argument|), absolute 1e-20 (see
 *   GELU_ABS). A float32 chain of ≈ 15 operations (exp, a division, products) accumulates
 *   ≲ 15 half-ulp ≈ 9e-7 relative; an error in the formula or in the tail loop is O(1).
 */
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";
import assert from "node:assert/strict";
import {
  adamwAttrs,
  dropout,
  DROPOUT_MASK,
  dropoutAdd,
  dropoutMask,
  dropoutMaskParams,
  fillDropoutMask,
  gatedGelu,
  gatedGeluDropout,
  geluNew,
  registerFusedWasmKernels,
  RMS_NORM_GRAD,
  rmsNorm,
  rmsNormKeep,
  SOFTMAX_XENT,
  SOFTMAX_XENT_GRAD,
  softmaxCrossEntropy,
  unregisterFusedWasmKernels,
} from "./fused.ts";
import { activeSimdKernels, enableSimdKernels, simdModuleWat } from "./wasm_simd.ts";
import {
  adafactorInPlace,
  adamwInPlace,
  addInPlace,
  patchWasmElementwise,
  unpatchWasmElementwise,
} from "./wasm_kernels.ts";
import { uniformValues } from "../benchmarks/rng.ts";
import { PRESETS } from "./config.ts";
import { crossEntropyLoss, disposeT5, forward, initT5, shiftRight } from "./t5.ts";
import {
  assertClose,
  assertGeluClose,
  crossEntropyAndGrad,
  crossEntropyReference,
  gatedGeluReference,
  gelu64,
  geluInputs,
  maxAbs,
  rmsNormReference,
} from "./fused_testing.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };
const EXP_TOL = 4 * 2 ** -23;
type Path = "wasm-simd" | "wasm-js" | "cpu";

async function use(path: Path): Promise<void> {
  if (path === "cpu") {
    assert.ok(await tf.setBackend("cpu"));
    return;
  }
  assert.ok(await tf.setBackend("wasm"));
  await enableSimdKernels(path === "wasm-simd" ? tf.backend() as BackendWasm : undefined);
  registerFusedWasmKernels();
}

async function reset(): Promise<void> {
  await enableSimdKernels(undefined);
  unregisterFusedWasmKernels();
}

Deno.test("wasm SIMD module assembles with every kernel", async () => {
  const wat = simdModuleWat();
  for (
    const k of [
      "dropout_mask",
      "dropout_apply",
      "gated_gelu",
      "gated_gelu_grad",
      "exp",
      "adamw",
      "add_into",
      "rms_norm",
      "rms_norm_grad",
    ]
  ) {
    assert.ok(wat.includes(`(export "${k}")`), k);
  }
  assert.ok(await tf.setBackend("wasm"));
  await enableSimdKernels(tf.backend() as BackendWasm);
  assert.ok(activeSimdKernels() !== undefined);
  await reset();
  assert.equal(activeSimdKernels(), undefined);
});

Deno.test(
  "dropout mask: same bits on wasm SIMD, wasm JS and cpu; rate and seed behave",
  opts,
  async () => {
    const shape = [3, 7, 11]; // 231 elements: SIMD body plus a tail of 3
    const n = 231;
    const want = new Float32Array(n);
    fillDropoutMask(want, dropoutMaskParams(0.3, 12345));
    for (const path of ["wasm-simd", "wasm-js", "cpu"] as const) {
      await use(path);
      const m = dropoutMask(shape, 0.3, 12345);
      assert.deepEqual(m.shape, shape);
      assert.deepEqual(await m.data(), want, path);
      m.dispose();
    }
    await reset();
    // Offsets: the mask of elements [k, k + len) equals the tail of the whole mask.
    const part = new Float32Array(100);
    fillDropoutMask(part, dropoutMaskParams(0.3, 12345), 131);
    assert.deepEqual(part, want.subarray(131));
    // Kept fraction over 1e6 elements within 5 standard deviations, kept value 1/(1-rate).
    for (const rate of [0.1, 0.5, 0.9]) {
      const big = new Float32Array(1_000_000);
      const p = dropoutMaskParams(rate, 99);
      fillDropoutMask(big, p);
      let kept = 0;
      for (const v of big) {
        if (v !== 0) {
          kept++;
          assert.equal(v, Math.fround(1 / (1 - rate)));
        }
      }
      const sd = Math.sqrt(big.length * rate * (1 - rate));
      assert.ok(Math.abs(kept - big.length * (1 - rate)) < 5 * sd, `rate ${rate}: kept ${kept}`);
    }
    // Different seeds give different masks; neighbouring elements are not correlated.
    const a = new Float32Array(10_000);
    const b = new Float32Array(10_000);
    fillDropoutMask(a, dropoutMaskParams(0.5, 1));
    fillDropoutMask(b, dropoutMaskParams(0.5, 2));
    let same = 0;
    let pairs = 0;
    for (let i = 0; i < a.length; i++) {
      if (a[i] === b[i]) same++;
      if (i > 0 && (a[i] === 0) === (a[i - 1] === 0)) pairs++;
    }
    assert.ok(Math.abs(same - 5000) < 5 * 50, `seed 1 vs 2 agree on ${same} of 10000`);
    assert.ok(Math.abs(pairs - 5000) < 5 * 50, `adjacent agreement ${pairs} of 9999`);
    assert.throws(() => dropoutMaskParams(1, 0), /rate must be in \[0, 1\)/);
    assert.throws(() => dropoutMaskParams(-0.1, 0), /rate/);
    assert.throws(() => dropoutMaskParams(0.1, 1.5), /seed must be an integer/);
  },
);

Deno.test(
  "dropoutAdd: x + dropout(h) on wasm and cpu, gradients dy and dy ⊙ mask",
  opts,
  async () => {
    const shape = [3, 7, 11];
    const mask = new Float32Array(231);
    fillDropoutMask(mask, dropoutMaskParams(0.3, 7));
    const xv = uniformValues(231, 3);
    const hv = uniformValues(231, 4);
    for (const path of ["wasm-simd", "cpu"] as const) {
      await use(path);
      const before = tf.memory().numTensors;
      const x = tf.tensor(xv, shape);
      const h = tf.tensor(hv, shape);
      const y = dropoutAdd(x, h, 0.3, 7);
      const [gx, gh] = tf.grads((a: tf.Tensor, b: tf.Tensor) => dropoutAdd(a, b, 0.3, 7))([x, h]);
      const y0 = dropoutAdd(x, h, 0, 7);
      const [yv, gxv, ghv, y0v] = await Promise.all([y, gx!, gh!, y0].map((t) => t.data()));
      for (let i = 0; i < 231; i++) {
        assert.equal(
          yv![i],
          Math.fround(xv[i]! + Math.fround(hv[i]! * mask[i]!)),
          `${path} y[${i}]`,
        );
        assert.equal(gxv![i], 1, `${path} dx[${i}]`);
        assert.equal(ghv![i], mask[i], `${path} dh[${i}]`);
        assert.equal(y0v![i], Math.fround(xv[i]! + hv[i]!), `${path} rate 0`);
      }
      tf.dispose([x, h, y, gx!, gh!, y0]);
      assert.equal(tf.memory().numTensors, before, `${path}: tensors leaked`);
    }
    await reset();
  },
);

Deno.test(
  "gatedGeluDropout without its kernel (wasm, cpu) is gatedGelu then dropout",
  opts,
  async () => {
    const av = uniformValues(231, 5), bv = uniformValues(231, 6);
    for (const path of ["wasm-simd", "cpu"] as const) {
      await use(path);
      const before = tf.memory().numTensors;
      const [y, want, y0, want0] = tf.tidy(() => {
        const a = tf.tensor(av, [21, 11]), b = tf.tensor(bv, [21, 11]);
        return [
          gatedGeluDropout(a, b, 0.3, 8),
          dropout(gatedGelu(a, b), 0.3, 8),
          gatedGeluDropout(a, b, 0, 8),
          gatedGelu(a, b),
        ];
      });
      const [yv, wv, y0v, w0v] = await Promise.all([y!, want!, y0!, want0!].map((t) => t.data()));
      assert.deepEqual(yv, wv, path);
      assert.deepEqual(y0v, w0v, `${path} rate 0`);
      tf.dispose([y!, want!, y0!, want0!]);
      assert.equal(tf.memory().numTensors, before, `${path}: tensors leaked`);
    }
    await reset();
  },
);

Deno.test(
  "dropout: x ⊙ mask, gradient is the mask, rate 0 is identity, no leaks",
  opts,
  async () => {
    for (const path of ["wasm-simd", "cpu"] as const) {
      await use(path);
      const before = tf.memory().numTensors;
      const x = tf.tensor(uniformValues(4 * 9 + 1, 3), [37]);
      const mask = dropoutMask([37], 0.25, 5);
      const y = dropout(x, 0.25, 5);
      const [xv, mv, yv] = await Promise.all([x.data(), mask.data(), y.data()]);
      for (let i = 0; i < 37; i++) {
        assert.equal(
          yv[i],
          Math.fround(xv[i]! * mv[i]!),
          `${path} y[${i}]`,
        );
      }
      const g = tf.grad((t: tf.Tensor) => tf.sum(dropout(t, 0.25, 5)))(x);
      assert.deepEqual(await g.data(), mv, `${path} gradient`);
      assert.equal(dropout(x, 0, 5), x);
      tf.dispose([x, mask, y, g]);
      assert.equal(tf.memory().numTensors, before, `${path}: tensors leaked`);
    }
    await reset();
  },
);

Deno.test("exp kernel: within 4 ulp of exp, IEEE overflow and underflow", opts, async () => {
  assert.ok(await tf.setBackend("wasm"));
  await enableSimdKernels(tf.backend() as BackendWasm);
  patchWasmElementwise();
  const xs = Float32Array.from([
    ...uniformValues(4 * 100, 11).map((v) => 88 * v),
    0,
    -0,
    1,
    -1,
    88.7,
    -87,
    -95,
    -103,
    89,
    100,
    -200,
    Infinity,
    -Infinity,
    NaN,
    1e-20, // 15 elements past the SIMD body: the tail loop runs 3 of them
  ]);
  const t = tf.tensor(xs);
  const e = tf.exp(t);
  const got = await e.data();
  tf.dispose([t, e]);
  for (let i = 0; i < xs.length; i++) {
    const x = xs[i]!;
    const want = Math.fround(Math.exp(x));
    const g = got[i]!;
    if (Number.isNaN(x)) assert.ok(Number.isNaN(g), "exp(NaN)");
    else if (want === Infinity || want === 0) assert.equal(g, want, `exp(${x})`);
    else if (want < 2 ** -126) {
      // Denormal results: absolute error within a few denormal steps.
      assert.ok(Math.abs(g - want) <= 4 * 2 ** -149, `exp(${x}) = ${g}, want ${want}`);
    } else {
      assert.ok(Math.abs(g - want) <= EXP_TOL * want, `exp(${x}) = ${g}, want ${want}`);
    }
  }
  unpatchWasmElementwise();
  await reset();
});

Deno.test("gated GELU: forward and both gradients match float64 on every path", opts, async () => {
  // Length 4k + 3 so that the SIMD kernels' scalar tail runs.
  const a = geluInputs(uniformValues(4 * 50 + 3, 7));
  const b = Float32Array.from(uniformValues(a.length, 8), (v) => 2 * v + 0.1);
  const dy = uniformValues(a.length, 9);
  const want = gatedGeluReference(a, b, dy);
  for (const path of ["wasm-simd", "wasm-js", "cpu"] as const) {
    await use(path);
    const before = tf.memory().numTensors;
    const at = tf.tensor(a);
    const bt = tf.tensor(b);
    const dyt = tf.tensor(dy);
    const y = gatedGelu(at, bt);
    const [da, db] = tf.grads((x: tf.Tensor, z: tf.Tensor) => gatedGelu(x, z))([at, bt], dyt);
    const got = { y: await y.data(), da: await da!.data(), db: await db!.data() };
    if (path !== "cpu") {
      assertGeluClose(got.y, want.y, a, `${path} y`);
      assertGeluClose(got.da, want.da, a, `${path} da`, want.daTerms);
      assertGeluClose(got.db, want.db, a, `${path} db`);
    } else {
      // tfjs's composite computes 1 + tanh, which cancels for negative inputs: an absolute
      // bound instead, |error| ≤ 1e-6 · (|x|·|b| + 1 + |want|).
      for (const k of ["y", "da", "db"] as const) {
        for (let i = 0; i < a.length; i++) {
          const bound = 1e-6 * (Math.abs(a[i]!) * Math.abs(b[i]!) + 1 + Math.abs(want[k][i]!));
          assert.ok(Math.abs(got[k][i]! - want[k][i]!) <= bound, `cpu ${k}[${i}]`);
        }
      }
    }
    tf.dispose([at, bt, dyt, y, da!, db!]);
    assert.equal(tf.memory().numTensors, before, `${path}: tensors leaked`);
  }
  await reset();
  assert.throws(
    () => tf.tidy(() => gatedGelu(tf.zeros([2, 3]), tf.zeros([3, 2]))),
    /must have one shape/,
  );
});

Deno.test("RMS norm: forward and gradients match float64 on every path", opts, async () => {
  // d = 12 (SIMD, multiple of 4) and d = 6 (JavaScript rows); 7 rows. eps 1e-6 (T5's) is lost
  // beside mean(x²) ≈ 3 in float32; eps 0.5 changes r by ≈ 7 %, so a dropped eps shows.
  for (const [d, eps] of [[12, 1e-6], [6, 1e-6], [12, 0.5], [6, 0.5]] as const) {
    const rows = 7;
    const x = uniformValues(rows * d, 21).map((v) => 3 * v);
    const w = uniformValues(d, 22).map((v) => v + 1.5);
    const dy = uniformValues(rows * d, 23);
    const { y: wantY, dx: wantDx, dw: wantDw } = rmsNormReference(x, w, dy, eps);
    for (const path of ["wasm-simd", "wasm-js", "cpu"] as const) {
      await use(path);
      const before = tf.memory().numTensors;
      const xt = tf.tensor(x, [rows, d]);
      const wt = tf.tensor1d(w);
      const dyt = tf.tensor(dy, [rows, d]);
      const y = rmsNorm(xt, wt, eps);
      const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => rmsNorm(a, b as tf.Tensor1D, eps))(
        [xt, wt],
        dyt,
      );
      // Float32 sums of d ≤ 12 products and a few more operations: 1e-5 relative to the size
      // of the terms (dx subtracts two terms of similar size).
      assertClose(await y.data(), wantY, 1e-5, `${path} d=${d} eps=${eps} y`, 1e-6 * maxAbs(wantY));
      assertClose(
        await dx!.data(),
        wantDx,
        1e-5,
        `${path} d=${d} eps=${eps} dx`,
        1e-5 * maxAbs(wantDx),
      );
      assertClose(
        await dw!.data(),
        wantDw,
        1e-5,
        `${path} d=${d} eps=${eps} dw`,
        1e-6 * maxAbs(wantDw),
      );
      tf.dispose([xt, wt, dyt, y, dx!, dw!]);
      assert.equal(tf.memory().numTensors, before, `${path}: tensors leaked`);
    }
  }
  await reset();
  assert.throws(
    () => rmsNorm(tf.zeros([2, 4]), tf.zeros([3]) as tf.Tensor1D, 1e-6),
    /must be \[4\]/,
  );
});

Deno.test(
  "RMS norm keep: the norm and x itself; x's gradient is the norm's plus the residual's",
  opts,
  async () => {
    // d = 12 (SIMD) and d = 6 (JavaScript rows); 7 rows.
    for (const d of [12, 6]) {
      const rows = 7;
      const x = uniformValues(rows * d, 31).map((v) => 3 * v);
      const w = uniformValues(d, 32).map((v) => v + 1.5);
      const dy = uniformValues(rows * d, 33);
      const dr = uniformValues(rows * d, 34);
      const eps = 1e-6;
      const want = rmsNormReference(x, w, dy, eps);
      const wantDx = want.dx.map((v, i) => v + dr[i]!);
      for (const path of ["wasm-simd", "wasm-js", "cpu"] as const) {
        await use(path);
        const before = tf.memory().numTensors;
        const [xt, wt, dyt, drt] = [
          tf.tensor(x, [rows, d]),
          tf.tensor1d(w),
          tf.tensor(dy, [rows, d]),
          tf.tensor(dr, [rows, d]),
        ];
        const [y, r] = rmsNormKeep(xt, wt, eps);
        const plain = rmsNorm(xt, wt, eps);
        assert.deepEqual(await y.data(), await plain.data(), `${path}: the same norm`);
        assert.deepEqual(await r.data(), await xt.data(), `${path}: x passed through`);
        // Both outputs used, the norm's alone, the residual's alone.
        const loss = (a: tf.Tensor, b: tf.Tensor, useY: boolean, useR: boolean) => {
          const [n, k] = rmsNormKeep(a, b as tf.Tensor1D, eps);
          const terms = [
            ...(useY ? [tf.sum(tf.mul(n, dyt))] : []),
            ...(useR ? [tf.sum(tf.mul(k, drt))] : []),
          ];
          return terms.length === 1 ? terms[0]! : tf.add(terms[0]!, terms[1]!);
        };
        const cases: [boolean, boolean, number[], number[] | undefined][] = [
          [true, true, wantDx, want.dw],
          [true, false, want.dx, want.dw],
          // The residual alone: w does not reach the loss (tfjs refuses its gradient when the
          // composite runs), so x's alone.
          [false, true, Array.from(dr), undefined],
        ];
        for (const [useY, useR, wx, ww] of cases) {
          const [gx, gw] = ww === undefined
            ? [tf.grad((a: tf.Tensor) => loss(a, wt, useY, useR))(xt), undefined]
            : tf.grads((a: tf.Tensor, b: tf.Tensor) => loss(a, b, useY, useR))([xt, wt]);
          // As the RMS norm test: float32 sums of d ≤ 12 terms, 1e-5 of the terms' size.
          const tag = `${path} d=${d} y:${useY} r:${useR}`;
          assertClose(await gx!.data(), wx, 1e-5, `${tag} dx`, 1e-5 * maxAbs(wx));
          if (ww !== undefined) {
            assertClose(await gw!.data(), ww, 1e-5, `${tag} dw`, 1e-6 * maxAbs(ww));
          }
          tf.dispose([gx!, ...(gw === undefined ? [] : [gw])]);
        }
        tf.dispose([xt, wt, dyt, drt, y, r, plain]);
        assert.equal(tf.memory().numTensors, before, `${path}: tensors leaked`);
      }
    }
    await reset();
  },
);

Deno.test(
  "T5 on wasm: each residual block's norm gradient carries the residual's (no Add)",
  opts,
  async () => {
    await use("wasm-simd");
    const config = { ...PRESETS["tiny-v1_1"], numLayers: 2, numDecoderLayers: 3 };
    const model = initT5(config, { seed: 1 });
    const ids = tf.tensor2d([[5, 6, 7, 1], [8, 9, 1, 0]], [2, 4], "int32");
    const labels = tf.tensor2d([[4, 1], [3, 1]], [2, 2], "int32");
    const mask = tf.tensor2d([[1, 1, 1, 1], [1, 1, 1, 0]], [2, 4], "float32");
    const dec = shiftRight(labels, config);
    const vars = [...model.params.values()];
    const prof = await tf.profile(() => {
      const g = tf.variableGrads(() =>
        crossEntropyLoss(
          forward(model, { inputIds: ids, attentionMask: mask, decoderInputIds: dec }).logits,
          labels,
        ), vars);
      tf.dispose([g.value, ...Object.values(g.grads)]);
    });
    const grads = prof.kernels.filter((k) => k.name === RMS_NORM_GRAD);
    // Two residual blocks per encoder layer and three per decoder layer take the residual's
    // gradient (four inputs); the two final norms have none (three inputs).
    assert.equal(grads.filter((k) => k.inputShapes.length === 4).length, 2 * 2 + 3 * 3);
    assert.equal(grads.filter((k) => k.inputShapes.length === 3).length, 2);
    tf.dispose([ids, labels, mask, dec]);
    disposeT5(model);
    await reset();
  },
);

Deno.test(
  "softmax cross-entropy: wasm kernels (SIMD and JS) equal the composite on cpu",
  opts,
  async () => {
    // crossEntropyLoss through the fused kernels against tfjs's composite (logSumExp, gather) on
    // cpu: loss and logits gradient, V = 37 (SIMD body + tail), an ignored label (−100), label
    // smoothing 0 and 0.1, without and with T5X's z-loss (0.05: the kernel's log-sum-exp column
    // and its gradient term). float32 sums over 37 logits: 1e-5 relative to the largest value.
    const [b, l, v] = [2, 3, 37];
    const logits = uniformValues(b * l * v, 71).map((x) => 6 * x);
    const labels = [3, 36, -100, 0, 17, 5];
    for (const [eps, z] of [[0, 0], [0.1, 0], [0, 0.05], [0.1, 0.05]] as const) {
      const run = (eps: number) => crossEntropyAndGrad(logits, labels, [b, l, v], eps, z);
      const results: Float32Array[][] = [];
      for (const path of ["cpu", "wasm-simd", "wasm-js"] as const) {
        await use(path);
        assert.equal(
          tf.getKernel(SOFTMAX_XENT, tf.getBackend()) !== undefined,
          path !== "cpu",
          path,
        );
        const before = tf.memory().numTensors;
        results.push(await run(eps));
        assert.equal(tf.memory().numTensors, before, `${path}: tensors leaked`);
      }
      const [want, ...gots] = results;
      for (const got of gots) {
        assertClose(got[0]!, want![0]!, 1e-5, `loss eps=${eps} z=${z}`);
        assertClose(got[1]!, want![1]!, 0, `grad eps=${eps} z=${z}`, 1e-5 * maxAbs(want![1]!));
      }
    }
    await reset();
  },
);

Deno.test(
  "softmax cross-entropy with z-loss on wasm: float64 gradient, one [n, V] kernel in the backward",
  opts,
  async () => {
    // The wasm gradient kernel folds the z-loss term 2z·lse·softmax into its row scale
    // (dloss + dlse): against a float64 hand computation, per counted row r and logit j,
    // d/dx_j = [(1 + 2z·lse)·softmax_j − (1−ε)·[j = label] − ε/V] / count. float32 exp and a
    // sum over V = 203 logits: 1e-5 of the largest gradient (measured ≤ 1e-7 relative).
    const [b, l, v] = [2, 3, 203];
    const logits = uniformValues(b * l * v, 79).map((x) => 8 * x);
    const labels = [3, 202, -100, 0, 117, 5];
    for (const [eps, z] of [[0, 0.05], [0.1, 1e-4]] as const) {
      const { loss: want, grad: wantGrad } = crossEntropyReference(logits, labels, v, eps, z);
      for (const path of ["wasm-simd", "wasm-js"] as const) {
        await use(path);
        const before = tf.memory().numTensors;
        const [loss, grad] = await crossEntropyAndGrad(logits, labels, [b, l, v], eps, z);
        assert.equal(tf.memory().numTensors, before, `${path}: tensors leaked`);
        assertClose(loss!, [want], 1e-6, `${path} loss eps=${eps} z=${z}`);
        assertClose(grad!, wantGrad, 0, `${path} grad eps=${eps} z=${z}`, 1e-5 * maxAbs(wantGrad));
      }
      // Every kernel of the step (forward and backward) that writes a full [n, V] tensor
      // (Reshape and Identity share their input's data): the gradient kernel only (before the
      // fold, the backward added Sub, Exp, Mul and Add of that size).
      await use("wasm-simd");
      const x = tf.variable(tf.tensor3d(logits, [b, l, v]));
      const y = tf.tensor2d(labels, [b, l], "int32");
      const info = await tf.profile(() => {
        const { value, grads } = tf.variableGrads(
          () =>
            crossEntropyLoss(x as tf.Tensor as tf.Tensor3D, y, { labelSmoothing: eps, zLoss: z }),
          [x],
        );
        tf.dispose([value, ...Object.values(grads)]);
      });
      const full = info.kernels.filter((k) =>
        k.name !== "Reshape" && k.name !== "Identity" &&
        k.outputShapes.some((s) => s !== undefined && s.reduce((p, d) => p * d, 1) === b * l * v)
      ).map((k) => k.name);
      assert.deepEqual(full, [SOFTMAX_XENT_GRAD], `eps=${eps} z=${z}`);
      tf.dispose([x, y]);
    }
    await reset();
  },
);

Deno.test("softmax cross-entropy: a label out of range is an error on wasm", opts, async () => {
  await use("wasm-simd");
  const before = tf.memory().numTensors;
  const logits = tf.tensor2d(uniformValues(3 * 5, 73), [3, 5]);
  const dataIds = tf.engine().backend.numDataIds();
  for (const bad of [5, -1]) {
    const labels = tf.tensor1d([1, bad, 0], "int32");
    assert.throws(
      () => softmaxCrossEntropy(logits, labels, 0),
      new RegExp(`fused\\.ts softmaxCrossEntropy: label ${bad} of row 1 is not in \\[0, 5\\)`),
    );
    labels.dispose();
  }
  assert.equal(tf.engine().backend.numDataIds(), dataIds, "the kernel allocated nothing it kept");
  logits.dispose();
  assert.equal(tf.memory().numTensors, before, "tensors leaked");
  await reset();
});

Deno.test("geluNew composite agrees with float64", () => {
  const y = tf.tidy(() => geluNew(tf.tensor1d([1, -2, 0])).dataSync());
  assertClose(y, [gelu64(1), gelu64(-2), 0], 1e-6, "geluNew");
});

Deno.test(
  "adamw SIMD kernel equals the JavaScript loop within float32 rounding",
  opts,
  async () => {
    assert.ok(await tf.setBackend("wasm"));
    const n = 4 * 300 + 2;
    const h = adamwAttrs({ lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 }, 3);
    const run = async (simd: boolean) => {
      await enableSimdKernels(simd ? tf.backend() as BackendWasm : undefined);
      const own = (v: Float32Array) => {
        const z = tf.tensor(v);
        const s = tf.variable(z, false);
        z.dispose();
        return s;
      };
      const p = own(uniformValues(n, 1));
      const m = own(uniformValues(n, 2).map((v) => v * 0.1));
      const v = own(uniformValues(n, 3).map((x) => x * x * 0.01));
      const g = tf.tensor(uniformValues(n, 4));
      assert.ok(adamwInPlace(p, m, v, g, h));
      const out = await Promise.all([p.data(), m.data(), v.data()]);
      tf.dispose([p, m, v, g]);
      return out;
    };
    const simd = await run(true);
    const js = await run(false);
    // Float32 arithmetic (SIMD) against double rounded once (JS): a chain of ~8 operations, 2e-6
    // relative; where the two terms of m cancel, the float32 rounding of the terms bounds the
    // error instead: 2⁻²³ · max|value| absolute.
    for (let k = 0; k < 3; k++) {
      assertClose(simd[k]!, js[k]!, 2e-6, ["p", "m", "v"][k]!, 2 ** -23 * maxAbs(js[k]!));
    }
    await reset();
  },
);

Deno.test("addInPlace adds exactly like tf.add and refuses shared buffers", opts, async () => {
  assert.ok(await tf.setBackend("wasm"));
  await enableSimdKernels(tf.backend() as BackendWasm);
  const a = uniformValues(4 * 25 + 3, 31);
  const b = uniformValues(4 * 25 + 3, 32);
  const want = await tf.tidy(() => tf.add(tf.tensor(a), tf.tensor(b))).data();
  const dst = tf.tensor(a);
  const src = tf.tensor(b);
  assert.ok(addInPlace(dst, src));
  assert.deepEqual(await dst.data(), want); // IEEE addition: the same bits
  assert.deepEqual(await src.data(), b);
  const shared = tf.reshape(dst, [-1]); // wasm Reshape shares the buffer
  assert.equal(addInPlace(dst, src), false, "dst shares its buffer");
  const one = tf.tensor([1]);
  assert.equal(addInPlace(src, one), false, "sizes differ");
  tf.dispose([shared, one]);
  await enableSimdKernels(undefined);
  assert.equal(addInPlace(dst, src), false, "no SIMD kernels");
  tf.dispose([dst, src]);
});

Deno.test("adafactorInPlace runs where it can and refuses what it cannot", opts, async () => {
  assert.ok(await tf.setBackend("wasm"));
  const own = (shape: number[], fill: number) => {
    const z = tf.fill(shape, fill);
    const v = tf.variable(z, false);
    z.dispose();
    return v;
  };
  const h = {
    beta2t: 0.5,
    eps1: 1e-30,
    clippingThreshold: 1,
    lr: 0.01,
    weightDecay: 0,
  };
  const case_ = (rows: number, cols: number) => {
    const p = own([rows, cols], 1);
    const vr = own([rows], 0);
    const vc = own([cols], 0);
    const g = tf.fill([rows, cols], 0.5);
    return { p, vr, vc, g, all: [p, vr, vc, g] };
  };
  const a = case_(3, 8);
  assert.equal(adafactorInPlace(a.p, a.vr, a.vc, a.g, h), false, "no SIMD kernels");
  await enableSimdKernels(tf.backend() as BackendWasm);
  assert.ok(adafactorInPlace(a.p, a.vr, a.vc, a.g, h));
  // g constant 0.5: vr = vc = 0.5·0.25 = 0.125, rf = 1, cf = 1/√0.125, u = 0.5·√8 = √2, RMS(u)
  // = √2 > 1 so the update is clipped to RMS 1: p = 1 − 0.01·1.
  assertClose(await a.p.data(), new Array(24).fill(0.99), 1e-6, "p");
  assertClose(await a.vr.data(), [0.125, 0.125, 0.125], 1e-6, "vr");
  const b = case_(3, 6);
  assert.equal(adafactorInPlace(b.p, b.vr, b.vc, b.g, h), false, "cols not a multiple of 4");
  const shared = tf.reshape(a.p, [-1]);
  assert.equal(adafactorInPlace(a.p, a.vr, a.vc, a.g, h), false, "p shares its buffer");
  tf.dispose([shared, ...a.all, ...b.all]);
  await reset();
});

Deno.test("fused kernels are absent on cpu and registered on wasm", opts, async () => {
  await use("wasm-simd");
  assert.ok(tf.getKernel(DROPOUT_MASK, "wasm") !== undefined);
  assert.equal(tf.getKernel(DROPOUT_MASK, "cpu"), undefined);
  await reset();
  assert.equal(tf.getKernel(DROPOUT_MASK, "wasm"), undefined);
});
