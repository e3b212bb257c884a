import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { gpuTest } from "../webgpu/testing.ts";
import { selectBackend } from "../backend.ts";
import { installLowMemoryBackprop, uninstallLowMemoryBackprop } from "../backprop.ts";
import { openBlas } from "../wasm_kernels.ts";
import { bufferMeter } from "../buffer_meter_testing.ts";
import { geluNew as geluNewComposite } from "../fused.ts";
import { geluNew, groupTasks, layerNorm, presentTasks, rows, toBatch } from "./_tensor.ts";

// cpu first (the webgpu package imported for the gpu test would outrank it).
await tf.setBackend("cpu");

/**
 * The reference: layerNorm as it was before its custom gradient (plain tfjs ops, differentiated
 * by tfjs's tape).
 */
function layerNormComposite(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, eps = 1e-5) {
  return tf.tidy(() => {
    const { mean, variance } = tf.moments(x, -1, true);
    return x.sub(mean).div(variance.add(eps).sqrt()).mul(gamma).add(beta);
  });
}

/** Seeded U(lo, hi) of a shape. */
function uniform(shape: number[], seed: number, lo = -1, hi = 1): tf.Tensor {
  return tf.randomUniform(shape, lo, hi, "float32", seed);
}

/** One differentiated function: its inputs (made fresh per call) and the function. */
interface Case {
  readonly name: string;
  readonly inputs: () => tf.Tensor[];
  readonly custom: (...xs: tf.Tensor[]) => tf.Tensor;
  readonly reference: (...xs: tf.Tensor[]) => tf.Tensor;
}

const D = 48;
const CASES: Case[] = [
  {
    // Vanilla Adapter, shared LayerNorm: γ, β of [d]; rows offset and scaled (mean 3, large var).
    name: "layerNorm [20, 48], γ β [48]",
    inputs: () => [uniform([20, D], 1, 1, 5), uniform([D], 2, 0.5, 1.5), uniform([D], 3)],
    custom: (x, g, b) => layerNorm(x, g!, b!),
    reference: (x, g, b) => layerNormComposite(x!, g!, b!),
  },
  {
    // HyperFormer++'s conditional LayerNorm: a generated row [1, d]; input of rank 3.
    name: "layerNorm [2, 5, 48], γ β [1, 48]",
    inputs: () => [uniform([2, 5, D], 4), uniform([1, D], 5), uniform([1, D], 6)],
    custom: (x, g, b) => layerNorm(x, g!, b!),
    reference: (x, g, b) => layerNormComposite(x!, g!, b!),
  },
  {
    // Per-task γ, β of a [numTasks, d] table gathered per row ([rows, d]); HyperFormer++'s
    // projector LayerNorm eps 1e-6 on a small-variance input (variance about 3e-5).
    name: "layerNorm [7, 48], γ β gathered per row from [3, 48], eps 1e-6",
    inputs: () => [uniform([7, D], 7, -0.01, 0.01), uniform([3, D], 8), uniform([3, D], 9)],
    custom: (x, g, b) => {
      const idx = [2, 0, 1, 1, 2, 0, 2];
      return layerNorm(x!, rows(g!, idx), rows(b!, idx), 1e-6);
    },
    reference: (x, g, b) => {
      const idx = [2, 0, 1, 1, 2, 0, 2];
      return layerNormComposite(x!, rows(g!, idx), rows(b!, idx), 1e-6);
    },
  },
  {
    // x a row broadcast against per-row γ: dx sums the rows' gradients.
    name: "layerNorm [1, 48] broadcast by γ [6, 48]",
    inputs: () => [uniform([1, D], 10), uniform([6, D], 11), uniform([D], 12)],
    custom: (x, g, b) => layerNorm(x, g!, b!),
    reference: (x, g, b) => layerNormComposite(x!, g!, b!),
  },
  {
    // Saturating and near-zero inputs of tanh (|x| up to 6).
    name: "geluNew [24, 40]",
    inputs: () => [uniform([24, 40], 13, -6, 6)],
    custom: (x) => geluNew(x!),
    reference: (x) => geluNewComposite(x!),
  },
  {
    // The adapter: LN(up(gelu_new(down(x)))) with biases, every input differentiated.
    name: "adapter chain [2, 6, 48] → 12 → 48",
    inputs: () => [
      uniform([12, D], 14),
      uniform([D, 12], 15, -0.3, 0.3),
      uniform([12], 16),
      uniform([12, D], 17, -0.3, 0.3),
      uniform([D], 18),
      uniform([D], 19, 0.5, 1.5),
      uniform([D], 20),
    ],
    custom: (x, wd, bd, wu, bu, g, b) =>
      layerNorm(geluNew(x!.matMul(wd!).add(bd!)).matMul(wu!).add(bu!), g!, b!),
    reference: (x, wd, bd, wu, bu, g, b) =>
      layerNormComposite(
        geluNewComposite(x!.matMul(wd!).add(bd!)).matMul(wu!).add(bu!),
        g!,
        b!,
      ),
  },
];

/** Value and the gradients of every input for upstream `dy` (seeded), read back asynchronously. */
async function valueAndGrads(
  fn: (...xs: tf.Tensor[]) => tf.Tensor,
  xs: tf.Tensor[],
  seed: number,
): Promise<Float32Array[]> {
  const y = tf.tidy(() => fn(...xs));
  const dy = uniform(y.shape, seed);
  const { value, grads } = tf.valueAndGrads((...a: tf.Tensor[]) => fn(...a))(xs, dy);
  const out = [y, value, ...grads];
  try {
    const read: Float32Array[] = [];
    for (const t of out) read.push(new Float32Array(await t.data()));
    return read;
  } finally {
    tf.dispose([...out, dy]);
  }
}

/**
 * Tolerance of a gradient against the composite's, relative to its largest element. Both are the
 * exact gradient in fp32 by different op sequences: each op rounds to about 6e-8 relative, and the
 * LayerNorm gradient sums d = 48 terms per row (mean(g), mean(g·x̂)) whose rounding, as the
 * cancellation in g − mean(g) − x̂·mean(g·x̂), is relative to the row's largest term. Measured
 * at most 2.2e-7 on cpu, wasm (stock and the project's kernels), wasm+blas and webgpu (the
 * software Vulkan adapter); 1e-5, the project's fp32 budget, is 45 times that.
 */
const GRAD_TOL = 1e-5;

/**
 * Every case on the current backend, with tfjs's backward pass and model/backprop.ts's: forward
 * values bit-identical to the composite's (the same ops in the same order), gradients of every
 * input within {@link GRAD_TOL}, no tensor left behind.
 */
async function checkAgainstComposite(backend: string): Promise<void> {
  let worst = 0;
  for (const mode of ["stock", "low-memory"] as const) {
    if (mode === "low-memory") assert.ok(installLowMemoryBackprop());
    else uninstallLowMemoryBackprop();
    try {
      for (const [k, c] of CASES.entries()) {
        const what = `${backend}, ${mode} backward pass, ${c.name}`;
        const xs = c.inputs();
        const before = tf.memory().numTensors;
        const got = await valueAndGrads(c.custom, xs, 100 + k);
        assert.equal(tf.memory().numTensors, before, `${what}: tensors leaked`);
        const want = await valueAndGrads(c.reference, xs, 100 + k);
        tf.dispose(xs);
        assert.equal(got.length, want.length);
        for (let i = 0; i < 2; i++) {
          // the value out of the tape (i = 0) and under it (i = 1)
          assert.deepEqual(got[i], want[i], `${what}: value ${i} differs from the composite's`);
        }
        for (let i = 2; i < got.length; i++) {
          let scale = 0, err = 0;
          for (let j = 0; j < want[i]!.length; j++) {
            scale = Math.max(scale, Math.abs(want[i]![j]!));
            err = Math.max(err, Math.abs(got[i]![j]! - want[i]![j]!));
          }
          assert.ok(scale > 0, `${what}: gradient of input ${i - 2} is all zeros`);
          worst = Math.max(worst, err / scale);
          assert.ok(
            err <= GRAD_TOL * scale,
            `${what}: gradient of input ${i - 2}: max abs diff ${err} > ${GRAD_TOL} × ${scale}`,
          );
        }
      }
    } finally {
      uninstallLowMemoryBackprop();
    }
  }
  console.log(`_tensor ${backend}: worst gradient diff ${worst.toExponential(2)} of max`);
}

/** Why OpenBLAS cannot be used here (named in the skipped test's name), or undefined. */
const noBlas = (() => {
  const r = openBlas();
  if (r.ok) r.blas.close();
  return r.ok ? undefined : r.reason;
})();

Deno.test("layerNorm, geluNew: composite values, gradients within 1e-5, no leaks (cpu)", () =>
  checkAgainstComposite("cpu"));

// Stock wasm first: selectBackend patches the wasm kernels for the rest of the process.
Deno.test("layerNorm, geluNew: composite values, gradients within 1e-5, no leaks (wasm)", async () => {
  assert.ok(await tf.setBackend("wasm"));
  await checkAgainstComposite("wasm");
});

Deno.test("layerNorm, geluNew: composite values, gradients within 1e-5, no leaks (wasm as selectBackend starts it, no BLAS)", async () => {
  const info = await selectBackend("wasm", { log: () => {}, blas: false });
  assert.equal(info.name, "wasm");
  await checkAgainstComposite("wasm (project kernels)");
});

Deno.test({
  name: "layerNorm, geluNew: composite values, gradients within 1e-5, no leaks (wasm+blas)" +
    (noBlas === undefined ? "" : ` [SKIPPED: ${noBlas}]`),
  ignore: noBlas !== undefined,
  fn: async () => {
    const info = await selectBackend("wasm+blas", { log: () => {} });
    assert.equal(info.name, "wasm+blas");
    await checkAgainstComposite("wasm+blas");
  },
});

gpuTest(
  "layerNorm, geluNew: composite values, gradients within 1e-5, no leaks (webgpu as selectBackend starts it)",
  async () => {
    const info = await selectBackend("webgpu", { log: () => {} });
    assert.equal(info.name, "webgpu");
    await checkAgainstComposite("webgpu");
  },
);

/**
 * Bytes the forward pass of `fn` leaves alive for its backward pass, beyond its input: measured
 * when the backward walk starts, by a sum with a custom gradient on the output (whose forward
 * saves nothing and whose gradient reads the meter before it makes anything). Alive then: what
 * the tape saved, the sum and its unit gradient (8 B); the output of `fn` is freed with the
 * forward scope unless saved.
 */
function heldForBackward(fn: (x: tf.Tensor) => tf.Tensor, x: tf.Tensor): number {
  let held = -1;
  const meter = bufferMeter();
  try {
    const probe = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const y = args[0] as tf.Tensor;
      return {
        value: y.sum(),
        gradFunc: (dy: tf.Tensor) => {
          held = meter.now;
          return tf.fill(y.shape, 1).mul(dy);
        },
      };
    });
    const g = tf.grad((a: tf.Tensor) => probe(fn(a)))(x);
    g.dispose();
  } finally {
    meter.restore();
  }
  assert.ok(held >= 0, "the probe's gradient did not run");
  return held;
}

Deno.test("layerNorm, geluNew keep only x̂ and σ, resp. the input, for the backward pass (cpu)", async () => {
  await tf.setBackend("cpu");
  const [r, d] = [64, 128];
  const n = r * d * 4; // bytes of one [r, d] tensor
  const x = uniform([r, d], 21), g = uniform([d], 22), b = uniform([d], 23);
  const before = tf.memory().numTensors;
  try {
    for (const mode of ["stock", "low-memory"] as const) {
      if (mode === "low-memory") assert.ok(installLowMemoryBackprop());
      try {
        // Saved by layerNorm: x̂ and σ (n + 4r B), against the composite's x − mean (moments'),
        // its square, the centred x, x̂ and x̂·γ and per-row tensors (measured 5n + 156 B; x is
        // the caller's).
        const ln = heldForBackward((a) => layerNorm(a, g, b), x);
        const lnOld = heldForBackward((a) => layerNormComposite(a, g, b), x);
        assert.equal(ln, n + 4 * r + 8, `${mode}: layerNorm held ${ln} B`);
        assert.ok(lnOld >= 4 * n, `${mode}: composite layerNorm held ${lnOld} B`);
        // geluNew saves only its input (the caller's buffer), against the composite's x², x³,
        // 0.044715x³, x + 0.044715x³, tanh u, x/2 and 1 + tanh u (measured 7n + 24 B).
        const ge = heldForBackward((a) => geluNew(a), x);
        const geOld = heldForBackward((a) => geluNewComposite(a), x);
        assert.equal(ge, 8, `${mode}: geluNew held ${ge} B`);
        assert.ok(geOld >= 6 * n, `${mode}: composite geluNew held ${geOld} B`);
        console.log(
          `_tensor held for backward, ${mode}: layerNorm ${ln} B (composite ${lnOld} B), geluNew ${ge} B (composite ${geOld} B), n = ${n} B`,
        );
      } finally {
        uninstallLowMemoryBackprop();
      }
    }
    // Without a tape (inference) nothing is saved, and nothing is left behind.
    const y = tf.tidy(() => layerNorm(geluNew(x), g, b));
    y.dispose();
    assert.equal(tf.memory().numTensors, before);
  } finally {
    tf.dispose([x, g, b]);
  }
});

Deno.test("groupTasks: ids, members and slots of the tasks present; an id outside [0, numTasks) is named", () => {
  const g = groupTasks([3, 1, 3, 0], 4, "x.ts");
  assert.deepEqual(g.tasks, [0, 1, 3]);
  assert.deepEqual(g.members, [[3], [1], [0, 2]]);
  assert.deepEqual(g.slot, [2, 1, 2, 0]);
  assert.equal(g.size, 4);
  // numTasks itself is one past the last row of a per-task table (gathered silently on WebGPU).
  for (const bad of [2, -1, 0.5, NaN]) {
    assert.throws(
      () => groupTasks([0, bad], 2, "x.ts"),
      new RegExp(
        `^Error: x\\.ts: taskIds\\[1\\] = ${
          String(bad).replace(".", "\\.")
        } is not a task id in \\[0, 2\\)$`,
      ),
    );
  }
  assert.throws(() => groupTasks([], 2, "x.ts"), /x\.ts: hooks\(\) needs at least one task id/);
});

Deno.test("rows, presentTasks, toBatch outside a tidy leave only their result, under a tape too", async () => {
  await tf.setBackend("cpu");
  // A [numTasks = 4, 3, 2] per-task stack of small integers (exact in float32): row t holds
  // 10·t + 0 … 5, so every value names its row.
  const rowOf = (t: number) => Array.from({ length: 6 }, (_, i) => 10 * t + i);
  const table = tf.tensor3d([0, 1, 2, 3].flatMap(rowOf), [4, 3, 2]);
  const mixed = groupTasks([3, 1, 3], 4, "x.ts"); // tasks [1, 3], slot [1, 0, 1]
  const one = groupTasks([2, 2], 4, "x.ts");
  const every = groupTasks([2, 0, 3, 1], 4, "x.ts");
  const twoRows = tf.tidy(() => presentTasks(table, mixed)); // rows 1 and 3
  const oneRow = tf.tidy(() => presentTasks(table, one)); // row 2
  // name, call, tensors it adds (1: its result; 0: it returns its input), the result's rows and
  // leading shape (a single index drops the axis; one task present keeps a leading 1)
  const cases: [string, () => tf.Tensor, number, number[], number[]][] = [
    ["rows(table, 2)", () => rows(table, 2), 1, [2], []],
    ["rows(table, [3, 0, 3])", () => rows(table, [3, 0, 3]), 1, [3, 0, 3], [3]],
    ["presentTasks, tasks 1 and 3", () => presentTasks(table, mixed), 1, [1, 3], [2]],
    ["presentTasks, task 2 only", () => presentTasks(table, one), 1, [2], [1]],
    ["presentTasks, every task", () => presentTasks(table, every), 0, [0, 1, 2, 3], [4]],
    ["toBatch, tasks 1 and 3", () => toBatch(twoRows, mixed), 1, [3, 1, 3], [3]],
    ["toBatch, task 2 only", () => toBatch(oneRow, one), 0, [2], [1]],
  ];
  try {
    for (const [name, call, adds, want, lead] of cases) {
      const before = tf.memory().numTensors;
      const out = call();
      assert.equal(tf.memory().numTensors - before, adds, `${name}: tensors added`);
      assert.deepEqual(out.shape, [...lead, 3, 2], `${name}: shape`);
      assert.deepEqual(
        Array.from(await out.data()),
        want.flatMap(rowOf),
        `${name}: values`,
      );
      if (adds === 1) out.dispose();
    }
    // Under a tape (stock and the project's backward pass): the gradient reaches the table's
    // rows through the scopes, and nothing but the value and the gradient is left.
    const cs = Array.from({ length: 18 }, (_, i) => i + 1);
    const c = tf.tensor3d(cs, [3, 3, 2]);
    for (const mode of ["stock", "low-memory"] as const) {
      if (mode === "low-memory") assert.ok(installLowMemoryBackprop());
      try {
        const before = tf.memory().numTensors;
        const { value, grads } = tf.valueAndGrads((t: tf.Tensor) =>
          toBatch(presentTasks(t, mixed), mixed).mul(c).sum()
        )([table]);
        assert.equal(tf.memory().numTensors - before, 2, `${mode}: tensors left by the tape`);
        // Examples 0 and 2 read row 3, example 1 row 1: row 3 gets c[0] + c[2], row 1 c[1].
        const grad = [
          ...new Array(6).fill(0),
          ...cs.slice(6, 12),
          ...new Array(6).fill(0),
          ...cs.slice(0, 6).map((x, i) => x + cs[12 + i]!),
        ];
        assert.deepEqual(Array.from(await grads[0]!.data()), grad, `${mode}: gradient`);
        const read = [3, 1, 3].flatMap(rowOf);
        assert.equal((await value.data())[0], cs.reduce((s, x, i) => s + x * read[i]!, 0));
        tf.dispose([value, ...grads]);
      } finally {
        uninstallLowMemoryBackprop();
      }
    }
    c.dispose();
  } finally {
    tf.dispose([table, twoRows, oneRow]);
  }
});
