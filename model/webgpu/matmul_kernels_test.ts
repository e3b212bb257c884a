/**
 * Tests of the tiled WebGPU matmul against tfjs's own webgpu kernel and the cpu backend.
 *
 * They run on whatever adapter Deno's WebGPU gives: here the llvmpipe software adapter (about
 * 3 GFLOP/s, and 2–13 s to compile each shader variant), so shapes are small, references come from
 * the cpu backend (one case also from the stock webgpu kernel) and inputs from a JS generator (no
 * GPU random kernels to compile). Cold, the file takes about 100 s here (nearly all shader
 * compilation); Mesa's on-disk shader cache makes reruns take about 1 s. Without any adapter the GPU
 * tests are ignored and their names say why.
 *
 * Tolerance: relative L2 error ≤ 1e-5 and max abs error ≤ 1e-4·max|ref| (see REL_L2_TOL below).
 * Both sides are float32 dot products of K ≤ 200 terms; different summation order alone gives
 * about √K·2⁻²⁴ ≈ 1e-6 relative, while any indexing or bounds bug gives errors of order 1.
 */

import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-webgpu";
import assert from "node:assert/strict";
import {
  chooseSplit,
  chooseTile,
  MATMUL_TILE_CANDIDATES,
  MATMUL_TILES,
  type MatMulTileName,
  planMatMul,
  scalarTile,
  splitPlan,
  tileByName,
  tiledMatMulSource,
  tileFor,
  tileWorkgroupBytes,
  vec4Fits,
} from "./matmul_kernels.ts";
import {
  registerWebgpuKernels,
  resetWebgpuKernelStats,
  selfCheckTunedChoices,
  selfCheckWebgpuKernels,
  splitKProduct,
  unregisterWebgpuKernels,
  webgpuKernelsInstalled,
  webgpuKernelStats,
} from "./mod.ts";
import { uniformValues } from "../../benchmarks/rng.ts";
import { HEAD_CONTEXT } from "../heads.ts";
import { registerInPlaceUpdates } from "../fused.ts";
import { doubledOutput, gpuTest, pipelineKeys, withWebgpuKernel } from "./testing.ts";
import { type MatMulTuningTable, TUNING_FORMAT, TUNING_VERSION } from "./tuning.ts";

// Error source: float32 rounding of K-term dot products (K ≤ 200, inputs uniform in [−1, 1)) summed
// in a different order (tile by tile, split-K slices added last) than the cpu backend's loop.
// Measured on the llvmpipe software adapter, worst of the file's 69 comparisons: relative L2
// 3.2e-7 and max abs 3.9e-7·max|ref| (t64v4k32, K = 45). A real GPU sums in yet another order and
// may contract a·b + c into an FMA (one rounding instead of two); its error is of the same
// statistical size √K·2⁻²⁴ ≈ 8.4e-7 relative, so REL_L2_TOL = 1e-5 leaves 12× over that estimate
// and 30× over the measured. MAX_ABS_REL_TOL bounds the single worst element, for which no √K
// averaging holds: the deterministic bound is K·2⁻²⁴·Σ|a·b| ≈ 200·6e-8·50 = 6e-4 against a
// max|ref| of about 3.5σ = 3.5·√(200/9) ≈ 16 over a few thousand outputs, i.e. 4e-5; 1e-4 sits at
// 2.5× that worst case, 250× over the measured, and still 10⁴× below an indexing bug's O(1).
const REL_L2_TOL = 1e-5;
const MAX_ABS_REL_TOL = 1e-4;

function compare(got: ArrayLike<number>, ref: ArrayLike<number>, what: string): void {
  assert.equal(got.length, ref.length, `${what}: length`);
  let num = 0, den = 0, maxErr = 0, maxRef = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = got[i]! - ref[i]!;
    num += d * d;
    den += ref[i]! * ref[i]!;
    maxErr = Math.max(maxErr, Math.abs(d));
    maxRef = Math.max(maxRef, Math.abs(ref[i]!));
  }
  const rel = Math.sqrt(num / Math.max(den, 1e-30));
  assert.ok(!Number.isNaN(rel), `${what}: NaN in result`);
  assert.ok(rel <= REL_L2_TOL, `${what}: relative L2 error ${rel} > ${REL_L2_TOL}`);
  assert.ok(
    maxErr <= MAX_ABS_REL_TOL * maxRef,
    `${what}: max abs error ${maxErr} > ${MAX_ABS_REL_TOL}·${maxRef}`,
  );
}

/** The four (transposeA, transposeB) combinations. */
const TRANSPOSE_PAIRS = [[false, false], [false, true], [true, false], [true, true]] as const;

interface Case {
  a: number[];
  b: number[];
  tA: boolean;
  tB: boolean;
}

/** Shapes of A and B for logical [batchA.., M, K]·[batchB.., K, N] with the given flags. */
function shapes(
  batchA: number[],
  batchB: number[],
  m: number,
  k: number,
  n: number,
  tA: boolean,
  tB: boolean,
): Case {
  return {
    a: [...batchA, ...(tA ? [k, m] : [m, k])],
    b: [...batchB, ...(tB ? [n, k] : [k, n])],
    tA,
    tB,
  };
}

function size(shape: number[]): number {
  return shape.reduce((p, d) => p * d, 1);
}

/**
 * Runs each case with the tiled kernel on webgpu and compares with tfjs's own BatchMatMul: the cpu
 * backend's (`reference: "cpu"`, cheap) or the stock webgpu kernel's (`"stock"`; on the software
 * adapter each new stock shader variant costs seconds to compile).
 */
async function checkCases(
  cases: Case[],
  tile: MatMulTileName | "auto",
  seed: number,
  reference: "cpu" | "stock" = "cpu",
  opts: { splitK?: number | "auto"; minWorkgroups?: number; expect?: string } = {},
) {
  for (const [i, c] of cases.entries()) {
    const av = uniformValues(size(c.a), seed + 2 * i);
    const bv = uniformValues(size(c.b), seed + 2 * i + 1);
    let ref: Float32Array;
    let refShape: number[];
    if (reference === "cpu") await tf.setBackend("cpu");
    else unregisterWebgpuKernels();
    {
      const a = tf.tensor(av, c.a), b = tf.tensor(bv, c.b);
      const y = tf.matMul(a, b, c.tA, c.tB);
      ref = (await y.data()) as Float32Array;
      refShape = y.shape;
      tf.dispose([a, b, y]);
    }
    await tf.setBackend("webgpu");
    registerWebgpuKernels({
      tile,
      cover: "all",
      ...(opts.splitK === undefined ? {} : { splitK: opts.splitK }),
      ...(opts.minWorkgroups === undefined ? {} : { minWorkgroups: opts.minWorkgroups }),
    });
    resetWebgpuKernelStats();
    const a = tf.tensor(av, c.a), b = tf.tensor(bv, c.b);
    const dataIds = tf.engine().backend.numDataIds();
    const gotT = tf.matMul(a, b, c.tA, c.tB);
    const got = await gotT.data();
    const what = `${tile} A${JSON.stringify(c.a)}${c.tA ? "ᵀ" : ""}·B${JSON.stringify(c.b)}${
      c.tB ? "ᵀ" : ""
    } vs ${reference}`;
    assert.deepEqual(gotT.shape, refShape, `${what}: shape`);
    // The product is the only backend data left (a split's partial products are released).
    assert.equal(tf.engine().backend.numDataIds(), dataIds + 1, `${what}: backend data`);
    // A vec4 tile on rows that are not multiples of 4 runs (and is recorded as) its scalar twin.
    const plan = planMatMul(c.a, c.b, c.tA, c.tB, 65535);
    const ran = tile === "auto" || typeof plan === "string"
      ? tile
      : tileFor(plan, tileByName(tile)).name;
    assert.deepEqual(
      webgpuKernelStats().tiled,
      { [opts.expect ?? ran]: 1 },
      `${what}: tiled kernel ran`,
    );
    compare(got, ref, what);
    tf.dispose([a, b, gotT]);
  }
}

Deno.test("planMatMul: rank-3 views, broadcast batch and declines", () => {
  const p = planMatMul([2, 3, 5, 7], [7, 4], false, false, 65535, 32);
  assert.ok(typeof p !== "string");
  assert.deepEqual(
    [p.batch, p.m, p.n, p.k, p.a3, p.b3, p.outShape],
    [6, 5, 4, 7, [6, 5, 7], [1, 7, 4], [2, 3, 5, 4]],
  );
  const q = planMatMul([1, 7, 5], [3, 4, 7], true, true, 65535, 32);
  assert.ok(typeof q !== "string");
  assert.deepEqual([q.batch, q.m, q.n, q.k, q.outShape], [3, 5, 4, 7, [3, 5, 4]]);
  const r = planMatMul([1, 1, 5, 7], [5, 7, 2], false, false, 65535, 32);
  assert.ok(typeof r !== "string");
  assert.deepEqual(r.outShape, [1, 5, 5, 2]);
  assert.equal(typeof planMatMul([2, 5, 7], [3, 7, 4], false, false, 65535, 32), "string");
  assert.equal(typeof planMatMul([2, 1, 5, 7], [1, 3, 7, 4], false, false, 65535, 32), "string");
  assert.equal(typeof planMatMul([5, 7], [6, 4], false, false, 65535, 32), "string");
  assert.equal(typeof planMatMul([5, 0], [0, 4], false, false, 65535, 32), "string");
  assert.equal(typeof planMatMul([5, 7], [7, 4000], false, false, 100, 32), "string");
});

Deno.test("chooseTile: largest tile with enough workgroups, else the smallest", () => {
  assert.equal(chooseTile(1, 4096, 3072, 256).name, "t128");
  assert.equal(chooseTile(1, 4096, 768, 256).name, "t64");
  assert.equal(chooseTile(1, 768, 768, 256).name, "t32");
  assert.equal(chooseTile(1, 100, 100, 256).name, "t32");
  assert.equal(chooseTile(384, 128, 128, 256).name, "t128");
});

Deno.test("splitPlan: slices a multiple of tileK, none empty", () => {
  assert.deepEqual(splitPlan(45, 3, 16), { chunk: 16, splits: 3 });
  assert.deepEqual(splitPlan(45, 3, 8), { chunk: 16, splits: 3 });
  assert.deepEqual(splitPlan(1000, 8, 8), { chunk: 128, splits: 8 });
  assert.deepEqual(splitPlan(20, 8, 16), { chunk: 16, splits: 2 }); // 8 asked, 2 non-empty
  assert.deepEqual(splitPlan(4096, 1, 8), { chunk: 4096, splits: 1 });
  assert.deepEqual(splitPlan(7, 0, 8), { chunk: 8, splits: 1 });
});

Deno.test("chooseSplit: K-dominant small outputs split K with the largest tile, the rest as chooseTile", () => {
  // T5-Base weight gradients (K = 32 × 128 tokens): t128 gives 36 and 96 workgroups.
  assert.deepEqual(split(1, 768, 768, 4096), ["t128", 8]);
  assert.deepEqual(split(1, 768, 2048, 4096), ["t128", 3]);
  // T5-Base's d_ff 3072: K < 2·3072, chooseTile's t64 (576 workgroups).
  assert.deepEqual(split(1, 768, 3072, 4096), ["t64", 1]);
  // Forward products and short K keep chooseTile's choice.
  assert.deepEqual(split(1, 4096, 768, 768), [chooseTile(1, 4096, 768, 256).name, 1]);
  assert.deepEqual(split(1, 768, 768, 512), ["t32", 1]); // K < 2·max(M, N)
  assert.deepEqual(split(1, 4096, 4096, 8192), ["t128", 1]); // 1024 workgroups already
  // K-dominant, but 16 slices of t128 give 144 workgroups: t64 reaches 256 with 8.
  assert.deepEqual(split(1, 384, 384, 4096), ["t64", 8]);
  // Slices of ≥ 256 (at most 4 here) take the smallest tile to reach 256 workgroups.
  assert.deepEqual(split(1, 256, 256, 1024), ["t32", 4]);
  // Nothing reaches the target: chooseTile's smallest tile, unsplit.
  assert.deepEqual(split(1, 32, 32, 300), ["t32", 1]);
  function split(b: number, m: number, n: number, k: number): [string, number] {
    const c = chooseSplit(b, m, n, k, 256);
    return [c.tile.name, c.splits];
  }
});

Deno.test("tiledMatMulSource: one shader per tile and flag pair, loads follow memory order", () => {
  const t = MATMUL_TILES[1]!;
  const nn = tiledMatMulSource(t, false, false);
  const tt = tiledMatMulSource(t, true, true);
  assert.notEqual(nn, tt);
  // Untransposed A is [M][K]: address go·dimK + gk. Transposed A is [K][M]: gk·dimM + go.
  assert.match(nn, /A\[baseA \+ go \* dimK \+ gk\]/);
  assert.match(tt, /A\[baseA \+ gk \* dimM \+ go\]/);
  assert.match(nn, /B\[baseB \+ gk \* dimN \+ go\]/);
  assert.match(tt, /B\[baseB \+ go \* dimK \+ gk\]/);
  assert.throws(
    () => tiledMatMulSource({ ...t, threadM: 3 }, false, false),
    /matmul_kernels\.ts: invalid tile/,
  );
});

gpuTest(
  "BatchMatMul t32 vs cpu: all transpose flags, ragged, batched, broadcast",
  async () => {
    const cases: Case[] = [];
    for (const tA of [false, true]) {
      for (const tB of [false, true]) {
        cases.push(shapes([], [], 37, 53, 29, tA, tB)); // nothing a multiple of the tile
        cases.push(shapes([3], [3], 70, 45, 66, tA, tB)); // batched, several tiles per dim
      }
    }
    cases.push(shapes([2, 3], [], 17, 19, 23, false, true)); // B broadcast over a rank-4 A
    cases.push(shapes([], [4], 9, 31, 40, true, false)); // A broadcast over B's batch
    cases.push(shapes([1], [2], 1, 1, 1, false, false)); // 1×1×1
    cases.push(shapes([], [], 1, 200, 5, false, true)); // one row, K ≫ tileK
    cases.push(shapes([], [], 64, 32, 96, true, true)); // exact multiples of the tile
    await checkCases(cases, "t32", 100);
  },
);

gpuTest(
  "BatchMatMul t64 and t128 vs cpu and stock webgpu (each A/B loader variant once)",
  async () => {
    await checkCases(
      [shapes([2], [2], 70, 45, 130, false, true), shapes([], [], 64, 64, 64, true, false)],
      "t64",
      200,
    );
    await checkCases([shapes([2], [2], 70, 45, 130, false, true)], "t64", 250, "stock");
    await checkCases([shapes([], [], 130, 37, 131, true, true)], "t128", 300);
  },
);

Deno.test("tile geometries are valid and fit 16 KiB of workgroup memory (the deep-K candidates 32 KiB); auto never picks a candidate", () => {
  const deepK = new Set(["t128k16", "t128v4k16", "t64v4k32"]);
  for (const t of [...MATMUL_TILES, ...MATMUL_TILE_CANDIDATES]) {
    assert.ok(tiledMatMulSource(t, false, true).length > 0, t.name); // throws on an invalid tile
    const limit = deepK.has(t.name) ? 32768 : 16384;
    assert.ok(tileWorkgroupBytes(t) <= limit, `${t.name}: ${tileWorkgroupBytes(t)} B`);
  }
  // The default tiles fit every device.
  for (const t of MATMUL_TILES) assert.ok(tileWorkgroupBytes(t) <= 16384, t.name);
  const names = new Set(MATMUL_TILE_CANDIDATES.map((t) => t.name));
  for (const [b, m, n] of [[1, 4096, 3072], [1, 4096, 768], [384, 128, 64], [1, 64, 64]]) {
    assert.ok(!names.has(chooseTile(b!, m!, n!, 256).name));
  }
});

gpuTest(
  "BatchMatMul with each candidate tile vs cpu (ragged, batched; the four transpose pairs spread)",
  async () => {
    // One transpose pair per candidate, in turn (each shader costs seconds to compile on the
    // software adapter); gpu_check's correctness section runs every pair for every tile.
    for (const [i, t] of MATMUL_TILE_CANDIDATES.entries()) {
      const tA = (i & 1) === 1, tB = (i & 2) === 2;
      await checkCases([shapes([2], [2], 70, 45, 130, tA, tB)], t.name as MatMulTileName, 400 + i);
    }
  },
);

gpuTest(
  "vec4-load tiles vs cpu on shapes that fit them (every transpose pair), and scalar loads where not",
  async () => {
    // m, k, n multiples of 4 but not of the tiles; batched and broadcast B.
    for (const [i, [tA, tB]] of TRANSPOSE_PAIRS.entries()) {
      await checkCases([shapes([2], [], 68, 44, 132, tA, tB)], i % 2 ? "t64v4" : "t128v4", 500 + i);
    }
    assert.ok(
      pipelineKeys().some((k) => /^hpTiledMatMul_t128v4_.*_v4_/.test(k)),
      "vec4 shader built",
    );
    // The deep-K vec4 tiles over several full K steps (k = 100: 6 of 16 or 3 of 32, and a rest).
    for (const [i, [tA, tB]] of TRANSPOSE_PAIRS.entries()) {
      await checkCases(
        [shapes([2], [], 36, 100, 20, tA, tB)],
        i % 2 ? "t64v4k32" : "t128v4k16",
        520 + i,
      );
    }
    // k = 45: the vec4 tile falls back to scalar loads (another shader), still exact.
    await checkCases([shapes([2], [2], 36, 45, 20, false, true)], "t64v4", 510);
    assert.ok(
      pipelineKeys().some((k) => /^hpTiledMatMul_t64v4-scalar_[^v]*_true_(?!v4)/.test(k)),
      pipelineKeys().join(),
    );
    assert.ok(vec4Fits([4, 8, 12]) && !vec4Fits([4, 6]));
    assert.equal(scalarTile(tileByName("t64v4")).vec4, undefined);
    assert.equal(scalarTile(tileByName("t64v4")).name, "t64v4-scalar");
    assert.deepEqual(scalarTile(tileByName("t64")), tileByName("t64"));
    assert.ok(tiledMatMulSource(tileByName("t64v4"), true, false).includes("vec4<f32>(0.0);"));
  },
);

gpuTest(
  "split-K products vs cpu: every transpose pair, ragged last slice, batched and broadcast, vec4",
  async () => {
    for (const [i, [tA, tB]] of TRANSPOSE_PAIRS.entries()) {
      // K = 45 in slices of 16, 16 and 13 (t32's K step is 16).
      await checkCases([shapes([3], [3], 37, 45, 29, tA, tB)], "t32", 600 + i, "cpu", {
        splitK: 3,
        expect: "t32/k3",
      });
    }
    // B broadcast over a rank-4 A; 4 slices asked of K = 70 become 3 of 32, 32 and 6 (none empty).
    await checkCases([shapes([2, 2], [], 17, 70, 9, true, false)], "t32", 610, "cpu", {
      splitK: 4,
      expect: "t32/k3",
    });
    await checkCases([shapes([], [], 36, 64, 20, true, false)], "t64v4", 611, "cpu", {
      splitK: 4,
      expect: "t64v4/k4",
    });
    // "auto" splits a K-dominant product when its workgroups are few (here the target is 8).
    await checkCases([shapes([], [], 32, 2048, 32, true, false)], "auto", 612, "cpu", {
      minWorkgroups: 8,
      expect: "t128/k8",
    });
    await checkCases([shapes([], [], 32, 2048, 32, true, false)], "auto", 613, "cpu", {
      minWorkgroups: 8,
      splitK: "auto",
      expect: "t128/k8",
    });
  },
);

gpuTest(
  "default cover: transposed calls go to the tiled kernel, untransposed to stock",
  async () => {
    assert.equal(registerWebgpuKernels({ tile: "t32" }), true);
    assert.equal(webgpuKernelsInstalled()?.cover, "transposed");
    resetWebgpuKernelStats();
    const a = tf.randomNormal([5, 6], 0, 1, "float32", 1);
    const b = tf.randomNormal([6, 7], 0, 1, "float32", 2);
    const ai = tf.randomNormal([5, 6], 0, 1, "float32", 3).toInt();
    const y = [tf.matMul(a, b), tf.matMul(a, b.transpose(), false, true), tf.matMul(ai, ai, true)];
    await Promise.all(y.map((t) => t.data()));
    assert.deepEqual(webgpuKernelStats(), {
      tiled: { t32: 1 },
      stock: { untransposed: 1, dtype: 1 },
      // By shape (batch of A x batch of B, M, N, K, transposes) and what ran it.
      shapes: {
        "1x1 m5 n7 k6 NN": { stock: 1 },
        "1x1 m5 n7 k6 NT": { t32: 1 },
        "1x1 m6 n6 k5 TN": { stock: 1 },
      },
    });
    unregisterWebgpuKernels();
    assert.equal(webgpuKernelsInstalled(), undefined);
    tf.dispose([a, b, ai, ...y]);
  },
);

gpuTest(
  "a vec4 tile on rows that are not multiples of 4 runs, and is recorded, as its scalar twin",
  async () => {
    assert.equal(registerWebgpuKernels({ tile: "t64v4" }), true);
    resetWebgpuKernelStats();
    const a = tf.randomNormal([5, 6], 0, 1, "float32", 1);
    const b = tf.randomNormal([7, 6], 0, 1, "float32", 2);
    const a8 = tf.randomNormal([5, 8], 0, 1, "float32", 3);
    const b8 = tf.randomNormal([12, 8], 0, 1, "float32", 4);
    const y = [tf.matMul(a, b, false, true), tf.matMul(a8, b8, false, true)];
    const got = await Promise.all(y.map((t) => t.data()));
    assert.deepEqual(webgpuKernelStats().tiled, { "t64v4-scalar": 1, t64v4: 1 });
    unregisterWebgpuKernels();
    // Against tfjs's own kernel (same backend, stock BatchMatMul): fp32, K ≤ 8, ~1e-6.
    const want = await Promise.all(
      [tf.matMul(a, b, false, true), tf.matMul(a8, b8, false, true)].map((t) => t.data()),
    );
    for (let i = 0; i < 2; i++) {
      for (let j = 0; j < want[i]!.length; j++) {
        assert.ok(Math.abs(got[i]![j]! - want[i]![j]!) <= 1e-5, `product ${i} [${j}]`);
      }
    }
    tf.dispose([a, b, a8, b8, ...y]);
  },
);

gpuTest(
  "tf.grads through matMul on webgpu with the tiled kernel equals the cpu backend",
  async () => {
    for (const [tA, tB] of TRANSPOSE_PAIRS) {
      const c = shapes([3], [3], 13, 21, 10, tA, tB);
      const inputs = {
        a: Array.from(tf.randomNormal(c.a, 0, 1, "float32", 7).dataSync()),
        b: Array.from(tf.randomNormal(c.b, 0, 1, "float32", 8).dataSync()),
        w: Array.from(tf.randomNormal([3, 13, 10], 0, 1, "float32", 9).dataSync()),
      };
      const run = async (): Promise<Float32Array[]> => {
        const a = tf.tensor(inputs.a, c.a), b = tf.tensor(inputs.b, c.b);
        const w = tf.tensor(inputs.w, [3, 13, 10]);
        const f = (x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(tf.matMul(x, y, tA, tB), w));
        const g = tf.grads(f)([a, b]);
        const out = await Promise.all(g.map((t) => t.data() as Promise<Float32Array>));
        tf.dispose([a, b, w, ...g]);
        return out;
      };
      await tf.setBackend("cpu");
      const ref = await run();
      await tf.setBackend("webgpu");
      registerWebgpuKernels({ tile: "t32", cover: "all" });
      resetWebgpuKernelStats();
      const got = await run();
      // forward + two gradient matmuls, all tiled
      assert.equal(webgpuKernelStats().tiled["t32"], 3, `tA=${tA} tB=${tB}: tiled calls`);
      compare(got[0]!, ref[0]!, `grad a tA=${tA} tB=${tB}`);
      compare(got[1]!, ref[1]!, `grad b tA=${tA} tB=${tB}`);
      // With K split in two where it is longer than one K step (the forward's K = 21).
      registerWebgpuKernels({ tile: "t32", cover: "all", splitK: 2 });
      resetWebgpuKernelStats();
      const split = await run();
      assert.deepEqual(webgpuKernelStats().tiled, { "t32/k2": 1, t32: 2 }, `tA=${tA} tB=${tB}`);
      compare(split[0]!, ref[0]!, `grad a, split, tA=${tA} tB=${tB}`);
      compare(split[1]!, ref[1]!, `grad b, split, tA=${tA} tB=${tB}`);
      unregisterWebgpuKernels();
    }
  },
);

gpuTest(
  "a product with K = 0 is zeros as on cpu, and the other products of its batch stay right",
  async () => {
    // tfjs's stock kernel binds the empty operands, a WebGPU validation error that voided the
    // whole submitted batch: the products recorded with it read as zeros.
    const device = (tf.backend() as unknown as { device: GPUDevice }).device;
    const av = uniformValues(6, 31), bv = uniformValues(12, 32);
    const run = async () => {
      const before = tf.memory().numTensors;
      const a = tf.tensor(av, [2, 3]), b = tf.tensor(bv, [4, 3]);
      const outs = tf.tidy(() => [
        tf.matMul(a, b, false, true), // the tiled kernel
        tf.matMul(tf.ones([2, 3, 0]), tf.ones([4, 0]), false, true), // K = 0, B broadcast
        tf.matMul(tf.ones([0, 5]), tf.ones([0, 2]), true, false), // K = 0, untransposed cover
        tf.matMul(tf.ones([2, 0]), tf.ones([0, 3])), // K = 0, stock cover
        tf.add(a, 1),
      ]);
      const values = await Promise.all(
        outs.map(async (t) => [t.shape, Array.from(await t.data())]),
      );
      tf.dispose([a, b, ...outs]);
      return { values, leaked: tf.memory().numTensors - before };
    };
    for (const cover of ["transposed", "all"] as const) {
      registerWebgpuKernels({ cover });
      device.pushErrorScope("validation");
      let got: Awaited<ReturnType<typeof run>>;
      try {
        got = await run();
      } finally {
        const error = await device.popErrorScope();
        assert.equal(error, null, `cover ${cover}: no validation error`);
      }
      await tf.setBackend("cpu");
      const want = await run();
      await tf.setBackend("webgpu");
      assert.equal(got.leaked, 0, "tensors leaked");
      assert.deepEqual(got.values[1], [[2, 3, 4], new Array(24).fill(0)]);
      for (const [i, w] of want.values.entries()) {
        const [shape, v] = got.values[i]!;
        assert.deepEqual(shape, w[0], `product ${i}: shape`);
        compare(v as number[], w[1] as number[], `cover ${cover}, product ${i}`);
      }
    }
  },
);

gpuTest("tiled matmul leaks no tensors and no backend data", async () => {
  registerWebgpuKernels({ tile: "t32", cover: "all" });
  const a = tf.tensor(uniformValues(2 * 3 * 9 * 11, 11), [2, 3, 9, 11]);
  const b = tf.tensor(uniformValues(11 * 5, 12), [11, 5]);
  const warm = tf.matMul(a, b, false, false);
  await warm.data();
  warm.dispose();
  const tensors = tf.memory().numTensors;
  const dataIds = tf.engine().backend.numDataIds();
  for (let i = 0; i < 3; i++) {
    const y = tf.tidy(() => tf.matMul(a, b).add(1));
    await y.data();
    y.dispose();
  }
  assert.equal(tf.memory().numTensors, tensors);
  assert.equal(tf.engine().backend.numDataIds(), dataIds);
  tf.dispose([a, b]);
});

Deno.test("registerWebgpuKernels rejects bad options, naming the file and field", () => {
  assert.throws(
    () => registerWebgpuKernels({ tile: "t7" as "t32" }),
    /matmul_kernels\.ts tileByName: unknown tile "t7"/,
  );
  assert.throws(
    () => registerWebgpuKernels({ minWorkgroups: 0 }),
    /mod\.ts registerWebgpuKernels: minWorkgroups/,
  );
  for (const splitK of [0, 2.5, "on"]) {
    assert.throws(
      () => registerWebgpuKernels({ splitK: splitK as number }),
      /mod\.ts registerWebgpuKernels: splitK must be "auto", "off" or a positive integer/,
    );
  }
});

gpuTest("selfCheckWebgpuKernels() passes with the kernels and catches a wrong kernel", async () => {
  assert.equal(registerWebgpuKernels({ tile: "t32" }), true);
  try {
    const good = await selfCheckWebgpuKernels();
    assert.ok(good.ok, `self-check error ${good.maxRelErr}`);
    // It ran the split-K path too (partial products of the largest tile, then their sum).
    const keys = pipelineKeys();
    assert.ok(keys.some((k) => k.startsWith("hpSplitKSum")), keys.join());
    assert.ok(keys.some((k) => /^hpTiledMatMul_t128_.*_splitk/.test(k)), keys.join());
    // A product with wrong numbers (twice the right ones: no shape error, nothing throws) must
    // fail the check on its numbers.
    await withWebgpuKernel("BatchMatMul", doubledOutput, async () => {
      const bad = await selfCheckWebgpuKernels();
      assert.equal(bad.ok, false);
      assert.ok(bad.maxRelErr > 0.5, `error ${bad.maxRelErr}`);
    });
    // So must a head product that ignores transposeP.
    const noTransposeP = (real: tf.KernelFunc): tf.KernelFunc => (args) =>
      real({ ...args, attrs: { ...args.attrs, transposeP: false } });
    // The self-check's transposed P is square, so this gives wrong numbers, not a shape error:
    // no catch here, a throw would fail the test.
    await withWebgpuKernel(HEAD_CONTEXT, noTransposeP, async () => {
      const bad = await selfCheckWebgpuKernels();
      assert.equal(bad.ok, false, "a head product ignoring transposeP fails the self-check");
      assert.ok(bad.maxRelErr > 0.1 && Number.isFinite(bad.maxRelErr), `error ${bad.maxRelErr}`);
    });
    // And an in-place Adafactor that reports success without updating anything.
    registerInPlaceUpdates("webgpu", { adafactorFactored: () => true });
    try {
      const bad = await selfCheckWebgpuKernels();
      assert.equal(bad.ok, false, "a no-op Adafactor fails the self-check");
    } finally {
      registerWebgpuKernels({ tile: "t32" }); // registers the real in-place updates again
    }
  } finally {
    unregisterWebgpuKernels();
  }
});

gpuTest(
  "selfCheckTunedChoices checks each tiled choice of a table and catches a wrong one",
  async () => {
    const entry = (choice: string) => ({ choice, heuristic: "t32", ms: {} });
    const table: MatMulTuningTable = {
      format: TUNING_FORMAT,
      version: TUNING_VERSION,
      adapter: { vendor: "", architecture: "", device: "", description: "" },
      created: "2026-11-26T15:00:00.000Z",
      provenance: {},
      entries: {
        "1x1 m512 n512 k512 NN": entry("t64"),
        "1x1 m256 n512 k512 NN": entry("t64"), // same choice, transposes and batches: one check
        "4x1 m512 n512 k512 TN": entry("t64v4"), // vec4 loads, batch of B broadcast
        "1x1 m64 n64 k4096 NT": entry("t128/k8"), // split K
        "1x1 m8 n8 k8 NN": entry("stock"), // nothing to check
      },
    };
    await tf.ready();
    const before = tf.memory().numTensors;
    const good = await selfCheckTunedChoices(table);
    assert.ok(good.ok, `tuned self-check error ${good.maxRelErr} ${good.error ?? ""}`);
    assert.deepEqual(good.checked, [
      "t64 1x1 m37 n33 k45 NN",
      "t64v4 2x1 m36 n44 k48 TN",
      "t128/k8 1x1 m37 n33 k69 NT",
    ]);
    // The tiles and slices named ran (a vec4 pipeline for t64v4, eight K slices for t128/k8).
    const keys = pipelineKeys();
    assert.ok(keys.some((k) => /^hpTiledMatMul_t64v4_.*_v4_/.test(k)), keys.join());
    assert.ok(keys.some((k) => k.startsWith("hpSplitKSum")), keys.join());
    // A tiled product with wrong numbers (no exception) fails it on its numbers.
    const off: typeof splitKProduct = (a, b, ta, tb, tile, splits) =>
      tf.tidy(() => {
        const c = splitKProduct(a, b, ta, tb, tile, splits);
        return tile.name === "t64v4" ? tf.mul(c, 1.01) : c;
      });
    const bad = await selfCheckTunedChoices(table, off);
    assert.equal(bad.ok, false);
    assert.ok(bad.maxRelErr > 5e-3 && bad.maxRelErr < 2e-2, `error ${bad.maxRelErr}`);
    assert.equal(tf.memory().numTensors, before, "tensors leaked");
    // A product that throws after its inputs exist: rejected, its inputs disposed, and its
    // validation error scope closed (popping one now finds none).
    const throwing: typeof splitKProduct = (a, b, ta, tb, tile, splits) => {
      if (tile.name === "t64v4") throw new Error("pipeline rejected");
      return splitKProduct(a, b, ta, tb, tile, splits);
    };
    await assert.rejects(selfCheckTunedChoices(table, throwing), /pipeline rejected/);
    assert.equal(tf.memory().numTensors, before, "tensors left by the throw");
    const device = (tf.backend() as unknown as { device: GPUDevice }).device;
    await assert.rejects(device.popErrorScope(), "no error scope left open");
  },
);

gpuTest(
  "registerWebgpuKernels sets tfjs's submit batch (64 by default) and restores it",
  async () => {
    await tf.ready();
    const flag = "WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE";
    unregisterWebgpuKernels();
    const before = tf.env().getNumber(flag);
    registerWebgpuKernels({});
    assert.equal(tf.env().getNumber(flag), 64);
    registerWebgpuKernels({ submitBatch: 20 }); // a second call replaces the options
    assert.equal(tf.env().getNumber(flag), 20);
    unregisterWebgpuKernels();
    assert.equal(tf.env().getNumber(flag), before, "tfjs's value back");
    assert.throws(
      () => registerWebgpuKernels({ submitBatch: 0 }),
      /submitBatch must be a positive/,
    );
    Deno.env.set("HYPERPROMPT_WEBGPU_SUBMIT_BATCH", "32");
    try {
      registerWebgpuKernels({});
      assert.equal(tf.env().getNumber(flag), 32, "the environment variable wins");
      Deno.env.set("HYPERPROMPT_WEBGPU_SUBMIT_BATCH", "lots");
      assert.throws(() => registerWebgpuKernels({}), /HYPERPROMPT_WEBGPU_SUBMIT_BATCH must be/);
    } finally {
      Deno.env.delete("HYPERPROMPT_WEBGPU_SUBMIT_BATCH");
      unregisterWebgpuKernels();
    }
    assert.equal(tf.env().getNumber(flag), before);
  },
);
