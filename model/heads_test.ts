import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import assert from "node:assert/strict";
import {
  HEAD_CONTEXT,
  HEAD_SCORES,
  headContext,
  type HeadContextAttrs,
  headContextReference,
  headContextShape,
  headScores,
  type HeadScoresAttrs,
  headScoresReference,
  headScoresShape,
} from "./heads.ts";
import { openBlas, patchWasmMatMul, unpatchWasmMatMul } from "./wasm_kernels.ts";
import { gpuTest, pipelineKeys } from "./webgpu/testing.ts";
import { registerWebgpuKernels, resetWebgpuKernelStats, webgpuKernelStats } from "./webgpu/mod.ts";
import { countGpuWork } from "./webgpu/counters.ts";

// Tolerances. Forward results are compared with float64 references: a float32 dot product of K
// terms is within ≈ sqrt(K)·6e-8 relative L2 of it (K ≤ 64 here: ≈ 5e-7), so 1e-5 passes any
// summation order and catches a wrong index (error O(1)). Gradients (two products chained) are
// compared with the reshape/transpose/matMul composite differentiated by tfjs on the cpu backend,
// 1e-5 likewise.
const TOL = 1e-5;

function relL2(got: ArrayLike<number>, want: ArrayLike<number>): number {
  assert.equal(got.length, want.length, "length");
  let num = 0;
  let den = 0;
  for (let i = 0; i < got.length; i++) {
    num += (got[i]! - want[i]!) ** 2;
    den += want[i]! ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1e-30));
}

interface Case {
  readonly b: number;
  readonly h: number;
  readonly lq: number;
  readonly lk: number;
  readonly dk: number;
}

const SMALL: Case = { b: 2, h: 3, lq: 5, lk: 7, dk: 4 };
const WIDE: Case = { b: 2, h: 4, lq: 33, lk: 70, dk: 64 };

function values(n: number, seed: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.731 + seed * 1.3) * 1.5);
}

/** Forward values and gradients of a scalar loss built from both products, on the active backend. */
async function run(c: Case) {
  const w = c.h * c.dk;
  const q = tf.tensor3d(values(c.b * c.lq * w, 1), [c.b, c.lq, w]);
  const k = tf.tensor3d(values(c.b * c.lk * w, 2), [c.b, c.lk, w]);
  const v = tf.tensor3d(values(c.b * c.lk * w, 3), [c.b, c.lk, w]);
  const pT = tf.tensor4d(values(c.b * c.h * c.lk * c.lq, 4), [c.b, c.h, c.lk, c.lq]);
  const wS = tf.tensor4d(values(c.b * c.h * c.lq * c.lk, 5), [c.b, c.h, c.lq, c.lk]);
  const wO = tf.tensor3d(values(c.b * c.lq * w, 6), [c.b, c.lq, w]);
  const wT = tf.tensor3d(values(c.b * c.lq * w, 7), [c.b, c.lq, w]);
  const before = tf.memory().numTensors;
  const f = (qq: tf.Tensor, kk: tf.Tensor, vv: tf.Tensor, pp: tf.Tensor) => {
    const s = headScores(qq as tf.Tensor3D, kk as tf.Tensor3D, c.h);
    const o = headContext(s, vv as tf.Tensor3D, c.h);
    const t = headContext(pp as tf.Tensor4D, vv as tf.Tensor3D, c.h, true);
    return tf.addN([tf.sum(tf.mul(s, wS)), tf.sum(tf.mul(o, wO)), tf.sum(tf.mul(t, wT))]);
  };
  const kept = tf.tidy(() => {
    const s = headScores(q, k, c.h);
    const o = headContext(s, v, c.h);
    const t = headContext(pT, v, c.h, true);
    const g = tf.grads(f)([q, k, v, pT]);
    return [s, o, t, ...g];
  });
  assert.equal(tf.memory().numTensors, before + kept.length, "only the outputs are left");
  const out = await Promise.all(kept.map(async (x) => Float32Array.from(await x.data())));
  tf.dispose([...kept, q, k, v, pT, wS, wO, wT]);
  const [scores, context, contextT, ...grads] = out;
  return { scores: scores!, context: context!, contextT: contextT!, grads };
}

async function onCpu<T>(fn: () => Promise<T>): Promise<T> {
  const prev = tf.getBackend();
  await tf.setBackend("cpu");
  try {
    return await fn();
  } finally {
    if (prev) await tf.setBackend(prev);
  }
}

function checkForward(c: Case, got: Awaited<ReturnType<typeof run>>, label: string): void {
  const w = c.h * c.dk;
  const q = values(c.b * c.lq * w, 1);
  const k = values(c.b * c.lk * w, 2);
  const v = values(c.b * c.lk * w, 3);
  const pT = values(c.b * c.h * c.lk * c.lq, 4);
  const sShape = headScoresShape([c.b, c.lq, w], [c.b, c.lk, w], c.h);
  const s = headScoresReference(q, k, sShape);
  const e1 = relL2(got.scores, s);
  const o = headContextReference(
    Float32Array.from(s),
    v,
    headContextShape([c.b, c.h, c.lq, c.lk], [c.b, c.lk, w], c.h, false),
    false,
  );
  const e2 = relL2(got.context, o);
  const t = headContextReference(
    pT,
    v,
    headContextShape([c.b, c.h, c.lk, c.lq], [c.b, c.lk, w], c.h, true),
    true,
  );
  const e3 = relL2(got.contextT, t);
  assert.ok(Math.max(e1, e2, e3) <= TOL, `${label}: forward rel L2 ${e1}, ${e2}, ${e3}`);
}

function checkGrads(got: ArrayLike<number>[], want: ArrayLike<number>[], label: string) {
  ["dq", "dk", "dv", "dp"].forEach((name, i) => {
    const e = relL2(got[i]!, want[i]!);
    assert.ok(e <= TOL, `${label}: ${name} rel L2 ${e}`);
  });
}

Deno.test("headScores/headContext composite (cpu) equal the float64 references", async () => {
  for (const c of [SMALL, WIDE]) checkForward(c, await onCpu(() => run(c)), "cpu");
});

Deno.test("head ops: shapes are checked with messages that name the operand", () => {
  assert.throws(() => headScoresShape([2, 3, 8], [2, 4, 8], 3), /not divisible by 3 heads/);
  assert.throws(() => headScoresShape([2, 3, 8], [1, 4, 8], 2), /k \[1,4,8\] does not match/);
  assert.throws(() => headScoresShape([2, 3, 8, 1], [2, 4, 8], 2), /q must be/);
  assert.throws(() => headContextShape([2, 2, 3, 4], [2, 5, 8], 2, false), /need \[2, 4, …\]/);
  assert.throws(() => headContextShape([2, 3, 3, 4], [2, 4, 8], 2, false), /3 heads, expected 2/);
  assert.deepEqual(headContextShape([2, 2, 3, 4], [2, 3, 8], 2, true), {
    batch: 2,
    heads: 2,
    m: 4,
    n: 3,
    dk: 4,
  });
});

// The registered gradients (dQ = context(dS, K), dK = context(dS, Q, ᵀ), dV, dP) only run where a
// backend has the kernels. Registering plain-JS kernels (the float64 references) for cpu checks
// them against tfjs's own autodiff of the composite without BLAS or a GPU.
Deno.test("head ops: registered gradients equal autodiff of the composite (cpu, JS kernels)", async () => {
  const want = (await onCpu(() => run(SMALL))).grads;
  const toInfo = (backend: unknown, data: Float64Array, shape: number[]) => {
    const cpu = backend as unknown as {
      makeTensorInfo(shape: number[], dtype: string, values: Float32Array): tf.TensorInfo;
    };
    return cpu.makeTensorInfo(shape, "float32", Float32Array.from(data));
  };
  const read = (backend: unknown, t: tf.TensorInfo) =>
    (backend as tf.KernelBackend).readSync(t.dataId) as Float32Array;
  tf.registerKernel({
    kernelName: HEAD_SCORES,
    backendName: "cpu",
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { q, k } = inputs as { q: tf.TensorInfo; k: tf.TensorInfo };
      const s = headScoresShape(q.shape, k.shape, (attrs as unknown as HeadScoresAttrs).heads);
      const out = headScoresReference(read(backend, q), read(backend, k), s);
      return toInfo(backend, out, [s.batch, s.heads, s.lq, s.lk]);
    },
  });
  tf.registerKernel({
    kernelName: HEAD_CONTEXT,
    backendName: "cpu",
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { p, v } = inputs as { p: tf.TensorInfo; v: tf.TensorInfo };
      const { heads, transposeP } = attrs as unknown as HeadContextAttrs;
      const s = headContextShape(p.shape, v.shape, heads, transposeP);
      const out = headContextReference(read(backend, p), read(backend, v), s, transposeP);
      return toInfo(backend, out, [s.batch, s.m, s.heads * s.dk]);
    },
  });
  try {
    const got = await onCpu(() => run(SMALL));
    checkForward(SMALL, got, "cpu JS kernels");
    checkGrads(got.grads, want, "cpu JS kernels");
  } finally {
    tf.unregisterKernel(HEAD_SCORES, "cpu");
    tf.unregisterKernel(HEAD_CONTEXT, "cpu");
  }
});

const blasOpen = openBlas();
Deno.test({
  name: `head ops on wasm + OpenBLAS equal the references and the cpu gradients${
    blasOpen.ok ? "" : ` [SKIPPED: ${blasOpen.reason}]`
  }`,
  ignore: !blasOpen.ok,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const want = [];
    for (const c of [SMALL, WIDE]) want.push((await onCpu(() => run(c))).grads);
    await tf.setBackend("wasm");
    patchWasmMatMul({ blas: blasOpen.ok ? blasOpen.blas : undefined });
    try {
      assert.ok(tf.getKernel(HEAD_SCORES, "wasm") !== undefined, "kernel registered with BLAS");
      for (const [i, c] of [SMALL, WIDE].entries()) {
        const got = await run(c);
        checkForward(c, got, `wasm+blas ${JSON.stringify(c)}`);
        checkGrads(got.grads, want[i]!, `wasm+blas ${JSON.stringify(c)}`);
      }
    } finally {
      unpatchWasmMatMul();
      await tf.setBackend("cpu");
    }
    assert.equal(tf.getKernel(HEAD_SCORES, "wasm"), undefined, "unpatch removes the kernels");
  },
});

gpuTest(
  "head ops on webgpu (strided tiled matmul) equal the references and the cpu gradients",
  async () => {
    const want = [];
    for (const c of [SMALL, WIDE]) want.push((await onCpu(() => run(c))).grads);
    await tf.setBackend("webgpu");
    registerWebgpuKernels();
    for (const [i, c] of [SMALL, WIDE].entries()) {
      const stop = countGpuWork()!;
      const got = await run(c);
      const counted = stop();
      checkForward(c, got, `webgpu ${JSON.stringify(c)}`);
      checkGrads(got.grads, want[i]!, `webgpu ${JSON.stringify(c)}`);
      assert.ok(counted.programs > 0, "programs counted");
    }
    const tiled = Object.keys(webgpuKernelStats().tiled).filter((t) => t.startsWith("heads-"));
    assert.ok(tiled.length > 0, "the strided kernel ran");
  },
);

gpuTest("head ops on webgpu with the vec4-load tile (t64v4) equal the references", async () => {
  // ALIGNED: every extent a multiple of 4, so all products load vec4s; WIDE: scores do, the
  // context products (rows of 70) fall back to scalar loads.
  const ALIGNED: Case = { b: 2, h: 2, lq: 12, lk: 20, dk: 8 };
  const want = [];
  for (const c of [ALIGNED, WIDE]) want.push((await onCpu(() => run(c))).grads);
  await tf.setBackend("webgpu");
  registerWebgpuKernels({ tile: "t64v4" });
  for (const [i, c] of [ALIGNED, WIDE].entries()) {
    const got = await run(c);
    checkForward(c, got, `webgpu t64v4 ${JSON.stringify(c)}`);
    checkGrads(got.grads, want[i]!, `webgpu t64v4 ${JSON.stringify(c)}`);
  }
  const keys = pipelineKeys();
  assert.ok(keys.some((k) => /^hpStridedMatMul_t64v4_.*_v4_/.test(k)), "vec4 strided shader built");
});

gpuTest("head ops on webgpu dispatch no Transpose", async () => {
  registerWebgpuKernels();
  const stop = countGpuWork()!;
  let names: string[] = [];
  try {
    await run(SMALL);
  } finally {
    names = Object.keys(stop().byProgram);
  }
  assert.ok(names.includes("StridedMatMulProgram"), names.join(","));
  assert.ok(!names.some((n) => n.startsWith("Transpose")), names.join(","));
});

gpuTest(
  "head ops on webgpu past the dispatch limit take tfjs's own path, and fail as it does",
  async () => {
    registerWebgpuKernels();
    resetWebgpuKernelStats();
    // batch × heads = 65,544 workgroups along z, over WebGPU's default limit of 65,535: the strided
    // kernel declines and the op runs reshape + transpose + BatchMatMul, whose dispatch tfjs 4.22
    // cannot split either, so the result is tfjs's own error, with no tensor left behind.
    const c: Case = { b: 5462, h: 12, lq: 1, lk: 2, dk: 1 };
    const before = tf.memory().numTensors;
    await assert.rejects(run(c), /Dispatch size exceeds WebGPU limits/);
    assert.equal(tf.memory().numTensors - before, 7, "only run()'s 7 inputs remain");
    const stock = webgpuKernelStats().stock;
    assert.equal(stock["heads: dispatch too large"], 1, JSON.stringify(stock));
    for (const k of [HEAD_SCORES, HEAD_CONTEXT]) tf.unregisterKernel(k, "webgpu");
    await assert.rejects(
      run(c),
      /Dispatch size exceeds WebGPU limits/,
      "the composite fails alike",
    );
  },
);
