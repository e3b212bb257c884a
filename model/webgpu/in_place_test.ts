/**
 * Tests of the in-place webgpu dispatch (in_place.ts) through `model/fused.ts` updateAdamW and
 * `benchmarks/optim.ts`, on whatever adapter Deno's WebGPU gives (here the llvmpipe software
 * adapter); ignored, with the reason in their names, without one.
 *
 * Tolerance: the in-place shader computes the same float32 expressions as the three-dispatch
 * `HpAdamW` kernel, so the two agree to within float32 rounding (a compiler may contract a
 * multiply-add differently in the vec4 and scalar forms): 1e-6 relative to the parameter scale.
 */

import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-webgpu";
import assert from "node:assert/strict";
import {
  adamwAttrs,
  registerInPlaceUpdates,
  updateAdafactor,
  updateAdamW,
  updateAdamWMany,
} from "../fused.ts";
import { registerWebgpuKernels, selfCheckWebgpuKernels } from "./mod.ts";
import {
  adafactorFactoredGroupSize,
  adafactorFactoredInPlaceWebgpu,
  adafactorFactoredManyInPlaceWebgpu,
  adafactorFactoredSource,
  adafactorUnfactoredGroupSize,
  adafactorUnfactoredInPlaceWebgpu,
  adafactorUnfactoredManyInPlaceWebgpu,
  adafactorUnfactoredSource,
  ADAMW_GROUP_MAX,
  adamwGroupSize,
  adamwInPlaceWebgpu,
  adamwManyInPlaceSource,
  adamwManyInPlaceWebgpu,
  dispatchInPlace,
  inPlaceSupport,
} from "./in_place.ts";
import { f32 } from "./wgsl.ts";
import { uniformValues } from "../../benchmarks/rng.ts";
import { createOptimizer, snapshotTraining, withTrainingRestored } from "../../benchmarks/optim.ts";
import { gpuTest } from "./testing.ts";
import { countGpuWork, hostOnlySteps } from "./counters.ts";
import { assertClose } from "../fused_testing.ts";

const ATTRS = adamwAttrs({ lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 }, 2);

Deno.test("grouped AdamW source: four bindings per variable, then the uniforms", () => {
  for (const w of [1, 4] as const) {
    const s = adamwManyInPlaceSource(w, 3);
    for (let j = 0; j < 3; j++) {
      for (const [i, b] of ["P", "M", "V"].entries()) {
        assert.match(
          s,
          new RegExp(`@binding\\(${4 * j + i}\\) var<storage, read_write> ${b}${j} `),
        );
      }
      assert.match(s, new RegExp(`@binding\\(${4 * j + 3}\\) var<storage, read> G${j} `));
    }
    assert.match(s, /@binding\(12\) var<uniform> u : U;/);
    assert.match(s, /v : array<vec4<u32>, 3>/);
    assert.match(s, w === 4 ? /array<vec4<f32>>/ : /array<f32>/);
  }
  assert.throws(() => adamwManyInPlaceSource(4, 0), /k must be 1…16, got 0/);
  assert.throws(() => adamwManyInPlaceSource(4, ADAMW_GROUP_MAX + 1), /got 17/);
});

Deno.test("grouped Adafactor sources: each matrix's own bindings after the shared ones", () => {
  const u = adafactorUnfactoredSource(2);
  for (
    const [i, d] of ["read_write> P0", "read_write> V0", "read> G0", "read_write> P1"].entries()
  ) {
    assert.ok(u.includes(`@binding(${i}) var<storage, ${d} `), `${d} at ${i}`);
  }
  assert.match(u, /@binding\(6\) var<uniform> u : U;/);
  const want = {
    moments: ["read_write> VR0", "read_write> VC0", "read> G0", "read_write> VR1"],
    rows: ["read_write> ROWS", "read> G0", "read> VR0", "read> VC0", "read> P0", "read> G1"],
    factor: ["read_write> F", "read> ROWS", "read> VR0", "read> VR1"],
    p: ["read> F", "read_write> P0", "read> G0", "read> VR0", "read> VC0", "read_write> P1"],
  };
  for (const [kind, decls] of Object.entries(want)) {
    const src = adafactorFactoredSource(kind as keyof typeof want, 2);
    for (const [i, d] of decls.entries()) {
      assert.ok(src.includes(`@binding(${i}) var<storage, ${d} `), `${kind}: ${d} at ${i}`);
    }
    assert.match(src, /v : array<vec4<u32>, 2>/);
  }
  assert.throws(() => adafactorFactoredSource("p", 17), /k must be 1…16, got 17/);
  assert.throws(() => adafactorUnfactoredSource(0), /k must be 1…16, got 0/);
});

Deno.test("grouped Adafactor: parameters per dispatch from the device's binding limits", () => {
  const lim = (storage: number) => ({
    maxStorageBuffersPerShaderStage: storage,
    maxBindingsPerBindGroup: 1000,
  });
  // Unfactored: p, v, g per vector. Factored: p, g, vr, vc per matrix plus the shared factors.
  assert.deepEqual([8, 32, 64].map((n) => adafactorUnfactoredGroupSize(lim(n))), [2, 10, 16]);
  assert.deepEqual([8, 32, 64].map((n) => adafactorFactoredGroupSize(lim(n))), [1, 7, 15]);
});

Deno.test("grouped AdamW: variables per dispatch from the device's binding limits", () => {
  const g = (storage: number, bindings = 1000) =>
    adamwGroupSize({ maxStorageBuffersPerShaderStage: storage, maxBindingsPerBindGroup: bindings });
  assert.equal(g(8), 2, "WebGPU's default limits");
  assert.equal(g(32), 8);
  assert.equal(g(64), 16);
  assert.equal(g(1 << 20), ADAMW_GROUP_MAX, "capped");
  assert.equal(g(64, 13), 3, "the uniform buffer takes one binding");
  assert.equal(g(3), 1, "never below one");
});

Deno.test("in-place dispatch declines other backends with the reason", async () => {
  await tf.setBackend("cpu");
  assert.match(inPlaceSupport() ?? "", /backend is cpu/);
  const t = tf.zeros([4]);
  assert.equal(adamwInPlaceWebgpu(t, t, t, t, ATTRS), false);
  assert.deepEqual(adamwManyInPlaceWebgpu([{ p: t, m: t, v: t, g: t }], ATTRS), [false]);
  t.dispose();
});

gpuTest(
  "grouped AdamW shader: a variable's elements past its count are left alone",
  async () => {
    // Out-of-bounds accesses are dropped or clamped by WebGPU's robustness rules, and every tfjs
    // tensor's buffer is exactly its size, so a bound of `i <= n` would not show through
    // adamwManyInPlaceWebgpu. Here the shader's own source is dispatched over buffers one
    // element (or one vec4) longer than the count in the uniforms: that last element, a
    // sentinel, is in bounds for WebGPU and must keep its value. Two variables in one dispatch,
    // so the second branch's bound is checked too; counts not multiples of 256, so a thread with
    // i = n exists. Exact comparisons: the sentinel must be untouched bit for bit, and the
    // elements before it come from the same shader as adamwInPlaceWebgpu's over exactly-sized
    // tensors of the same values (the same float32 operations per element).
    const SENTINEL = 12345;
    const a = ATTRS;
    for (const width of [1, 4] as const) {
      const counts = width === 1 ? [5, 3] : [2, 1]; // in units of `width` floats
      const before = tf.memory().numTensors;
      const init = counts.map((n, j) =>
        [1, 0.1, 0.01, 1].map((scale, s) =>
          Array.from(
            uniformValues(n * width, 200 + 10 * j + s).map((x) => Math.abs(x) * scale),
          )
        )
      );
      const padded = init.map((arrs) =>
        arrs.map((x) => tf.tensor1d([...x, ...Array(width).fill(SENTINEL)]))
      );
      let start = 0;
      const ranges = counts.map((n) => {
        const r = { type: "uint32" as const, data: [n, start, 0, 0] };
        start += Math.ceil(n / 256);
        return r;
      });
      dispatchInPlace(
        {
          key: `test_adamwSentinel${width}_${counts.length}`,
          name: "HpAdamWSentinelTest",
          source: adamwManyInPlaceSource(width, counts.length),
        },
        padded.flatMap((ts) => ts.map((tensor, k) => ({ tensor, write: k < 3 }))),
        [...[a.b1, a.c1, a.b2, a.c2, a.decay, a.step, a.invSqrtBc2, a.eps].map(f32), ...ranges],
        [start, 1, 1],
      );
      for (const [j, arrs] of init.entries()) {
        const n = counts[j]! * width;
        const exact = arrs.map((x) => tf.tensor1d(x));
        assert.ok(adamwInPlaceWebgpu(exact[0]!, exact[1]!, exact[2]!, exact[3]!, a));
        for (const [k, name] of ["p", "m", "v"].entries()) {
          const got = Array.from(await padded[j]![k]!.data());
          assert.deepEqual(
            got.slice(n),
            Array(width).fill(SENTINEL),
            `width ${width}, variable ${j}: ${name}'s element past the count is untouched`,
          );
          const want = Array.from(await exact[k]!.data());
          assert.notDeepEqual(want, arrs[k], `${name} was updated`);
          assert.deepEqual(got.slice(0, n), want, `width ${width}, variable ${j}: ${name}`);
        }
        tf.dispose(exact);
      }
      tf.dispose(padded.flat());
      assert.equal(tf.memory().numTensors, before, "no tensor leaked");
    }
  },
  () => assert.ok(registerWebgpuKernels()),
);

/** Runs `f` counting tfjs programs and compute dispatches (counters.ts). */
async function counting<T>(f: () => T | Promise<T>): Promise<
  { result: T; programs: number; dispatches: number }
> {
  const stop = countGpuWork();
  assert.ok(stop !== undefined, "webgpu is active");
  let result: T;
  try {
    result = await f();
  } catch (e) {
    stop(); // restore the wrapped methods
    throw e;
  }
  return { result, ...stop() };
}

/** p, m, v variables and a gradient of `n` elements from seeds. */
function state(n: number, seed: number) {
  const make = (s: number, scale: number) => {
    const init = tf.tensor(uniformValues(n, s).map((x) => x * scale));
    const v = tf.variable(init);
    init.dispose();
    return v;
  };
  const p = make(seed, 1), m = make(seed + 1, 0.1), v = make(seed + 2, 0.01);
  tf.tidy(() => v.assign(tf.abs(v))); // a second moment is non-negative
  const g = tf.tensor(uniformValues(n, seed + 3));
  return { p, m, v, g, dispose: () => tf.dispose([p, m, v, g]) };
}

gpuTest(
  "in-place AdamW equals the three-dispatch kernel, with one dispatch and no new tensor",
  async () => {
    // 1031 (odd: the scalar form, more than one workgroup), 1030 (even but not a multiple of 4:
    // the scalar form too; as vec4 its last two elements would be left out) and 4096 (vec4).
    for (const n of [1031, 1030, 4096]) {
      const a = state(n, 10), b = state(n, 10);
      // Reference: the HpAdamW kernel (three dispatches), with the in-place path unregistered.
      registerInPlaceUpdates("webgpu", undefined);
      assert.ok(updateAdamW(a.p, a.m, a.v, a.g, ATTRS));
      registerWebgpuKernels();
      const before = tf.memory().numTensors;
      const { result: done, programs, dispatches } = await counting(() =>
        updateAdamW(b.p, b.m, b.v, b.g, ATTRS)
      );
      assert.ok(done);
      assert.equal(programs, 0, "no tfjs program: the update is our own dispatch");
      assert.equal(dispatches, 1, "one dispatch for p, m and v");
      assert.equal(tf.memory().numTensors, before, "no tensor allocated or leaked");
      // Both are elementwise float32 updates of the same formula on the same device (no sums),
      // so only operation order and FMA contraction in the two shaders can differ: a few ulp
      // per element. Measured on the llvmpipe adapter: bit-identical (0 difference in p, m and v
      // at n = 1031 and 4096). 1e-6 relative (≈ 8 ulp, 1e-6 of the scale for values near 0)
      // leaves room for another driver's contraction choices while catching a changed formula.
      for (const k of ["p", "m", "v"] as const) {
        const want = await a[k].data();
        const scale = Math.max(...Array.from(want, Math.abs));
        assertClose(await b[k].data(), Array.from(want), 1e-6, `${k} n=${n}`, 1e-6 * scale);
      }
      a.dispose();
      b.dispose();
    }
  },
  () => assert.ok(registerWebgpuKernels()),
);

gpuTest(
  "grouped AdamW equals one dispatch per variable, in ceil(n/k) dispatches per form",
  async () => {
    const k = adamwGroupSize((tf.backend() as unknown as { device: GPUDevice }).device.limits);
    // Sizes of both forms (vec4: divisible by 4; scalar: not), several workgroups (1031, 4096)
    // and one element; more variables of the vec4 form than one group holds.
    const vec4 = [4096, 8, 12, 260, 4, 16, 1024, 32, 64, 128, 20, 44, 4, 8, 36, 40, 1028, 52];
    const scalar = [1031, 3, 1, 255, 7];
    const sizes = [...vec4.slice(0, 3), ...scalar, ...vec4.slice(3)];
    const a = sizes.map((n, i) => state(n, 100 + 10 * i));
    const b = sizes.map((n, i) => state(n, 100 + 10 * i));
    for (const s of a) assert.ok(adamwInPlaceWebgpu(s.p, s.m, s.v, s.g, ATTRS));
    const before = tf.memory().numTensors;
    const { result, programs, dispatches } = await counting(() => updateAdamWMany(b, ATTRS));
    assert.deepEqual(result, sizes.map(() => true));
    assert.equal(programs, 0, "no tfjs program");
    assert.equal(
      dispatches,
      Math.ceil(vec4.length / k) + Math.ceil(scalar.length / k),
      `${dispatches} dispatches for ${vec4.length} + ${scalar.length} variables, ${k} per group`,
    );
    assert.ok(k >= 2, `${k} variables per dispatch`);
    assert.equal(tf.memory().numTensors, before, "no tensor allocated or leaked");
    for (const [i, n] of sizes.entries()) {
      for (const key of ["p", "m", "v"] as const) {
        // The same WGSL expressions per element as the one-variable shader: bit for bit here.
        assert.deepEqual(await b[i]![key].data(), await a[i]![key].data(), `${key} of ${n}`);
      }
    }
    for (const s of [...a, ...b]) s.dispose();
  },
  () => assert.ok(registerWebgpuKernels()),
);

gpuTest(
  "registerWebgpuKernels({groupUpdates: false}): one dispatch per variable, the same numbers",
  async () => {
    const run = async (groupUpdates: boolean) => {
      assert.ok(registerWebgpuKernels({ groupUpdates }));
      const xs = [64, 128, 256].map((n, i) => state(n, 900 + 10 * i));
      const { dispatches } = await counting(() => updateAdamWMany(xs, ATTRS));
      const ps = await Promise.all(xs.map((x) => x.p.data()));
      for (const x of xs) x.dispose();
      return { dispatches, ps };
    };
    const grouped = await run(true);
    const ungrouped = await run(false);
    assert.equal(grouped.dispatches, 1);
    assert.equal(ungrouped.dispatches, 3);
    assert.deepEqual(ungrouped.ps, grouped.ps);
  },
);

gpuTest(
  "grouped AdamW takes what it can: other dtypes are left to the caller, empty ones are done",
  async () => {
    const s = state(64, 7);
    const e = state(0, 8);
    const intP = tf.variable(tf.zeros([4], "int32"));
    const p0 = Array.from(await s.p.data());
    const out = updateAdamWMany([
      { p: intP, m: s.m, v: s.v, g: s.g },
      { p: s.p, m: s.m, v: s.v, g: s.g },
      { p: e.p, m: e.m, v: e.v, g: e.g },
    ], ATTRS);
    assert.deepEqual(out, [false, true, true]);
    assert.notDeepEqual(Array.from(await s.p.data()), p0, "the float32 variable was updated");
    assert.deepEqual(Array.from(await intP.data()), [0, 0, 0, 0], "the int32 one was not");
    tf.dispose(intP);
    s.dispose();
    e.dispose();
  },
  () => assert.ok(registerWebgpuKernels()),
);

gpuTest(
  "in-place AdamW: a cached CPU copy is refreshed and a shared buffer is copied first",
  async () => {
    const n = 64;
    const s = state(n, 20);
    const before = await s.p.data(); // tfjs now caches these values on the CPU
    const alias = tf.clone(s.m); // shares m's buffer: the update must not write through it
    const aliasBefore = await alias.data();
    const m0 = tf.memory().numTensors;
    assert.ok(updateAdamW(s.p, s.m, s.v, s.g, ATTRS));
    assert.equal(tf.memory().numTensors, m0, "ownBuffer's copy replaced m's data; nothing leaked");
    const after = await s.p.data();
    assert.notDeepEqual(Array.from(after), Array.from(before), "p changed, not a stale cache");
    assert.deepEqual(await alias.data(), aliasBefore, "the tensor sharing m's old buffer kept it");
    // The values read back are those of a fresh device read (a clone forces a GPU copy).
    const fresh = tf.tidy(() => tf.add(s.p, 0));
    assert.deepEqual(await fresh.data(), after);
    tf.dispose([alias, fresh]);
    s.dispose();
  },
  () => assert.ok(registerWebgpuKernels()),
);

gpuTest(
  "in-place AdamW under tf.time: the same result, later work still recorded",
  async () => {
    const a = state(256, 30), b = state(256, 30);
    assert.ok(updateAdamW(a.p, a.m, a.v, a.g, ATTRS));
    const info = await tf.time(() => {
      assert.ok(updateAdamW(b.p, b.m, b.v, b.g, ATTRS));
    });
    assert.ok(Number.isFinite(info.kernelMs as number), `kernelMs ${String(info.kernelMs)}`);
    assert.deepEqual(await b.p.data(), await a.p.data(), "timed dispatch = untimed dispatch");
    // Work recorded after a timed dispatch still runs.
    const y = tf.tidy(() => tf.add(b.p, 1));
    const want = Array.from(await b.p.data(), (x) => Math.fround(x + 1));
    assert.deepEqual(Array.from(await y.data()), want);
    tf.dispose(y);
    a.dispose();
    b.dispose();
  },
  () => assert.ok(registerWebgpuKernels()),
);

gpuTest(
  "AdamW resumed from saved slots on webgpu continues bit-identically (slots still shared)",
  async () => {
    const before = tf.memory().numTensors;
    const n = 40;
    const mk = (seed: number) => {
      const t = tf.tensor(uniformValues(n, seed));
      const v = tf.variable(t);
      t.dispose();
      return v;
    };
    const grads = [1, 2, 3, 4, 5, 6].map((k) => tf.tensor(uniformValues(n, 50 + k)));
    const apply = (o: ReturnType<typeof createOptimizer>, w: tf.Variable, g: tf.Tensor) =>
      o.apply(new Map([["w", w]]), new Map([["w", g]]), 0.01);
    // A: six steps in one go.
    const wA = mk(9);
    const a = createOptimizer({ kind: "adamw", weightDecay: 0.01 });
    for (const g of grads) apply(a, wA, g);
    // B: three steps, save, restore into a new optimizer while the saved tensors stay alive
    // (restored slots then share their buffers), three more steps.
    const wB = mk(9);
    const b1 = createOptimizer({ kind: "adamw", weightDecay: 0.01 });
    for (const g of grads.slice(0, 3)) apply(b1, wB, g);
    const saved = new Map(
      await Promise.all(
        [...b1.slots()].map(async ([k, v]) => [k, tf.tensor(await v.data(), v.shape)] as const),
      ),
    );
    const savedCopies = new Map(
      await Promise.all([...saved].map(async ([k, v]) => [k, Array.from(await v.data())] as const)),
    );
    b1.dispose();
    const b2 = createOptimizer({ kind: "adamw", weightDecay: 0.01 });
    b2.restore(3, saved);
    for (const g of grads.slice(3)) apply(b2, wB, g);
    assert.deepEqual(Array.from(await wB.data()), Array.from(await wA.data()));
    for (const [k, v] of saved) {
      assert.deepEqual(Array.from(await v.data()), savedCopies.get(k), `saved ${k} untouched`);
    }
    tf.dispose([...saved.values(), ...grads, wA, wB]);
    a.dispose();
    b2.dispose();
    assert.equal(tf.memory().numTensors, before, "tensors leaked");
  },
  () => assert.ok(registerWebgpuKernels()),
);

gpuTest(
  "selfCheckWebgpuKernels() catches an in-place AdamW, one by one or grouped, that does not update",
  async () => {
    assert.ok((await selfCheckWebgpuKernels()).ok, "the real one passes");
    registerInPlaceUpdates("webgpu", { adamw: () => true }); // claims success, changes nothing
    const bad = await selfCheckWebgpuKernels();
    assert.equal(bad.ok, false);
    assert.ok(bad.maxRelErr > 1e-3, `${bad.maxRelErr}`);
    // A grouped update that updates only the first variable of each call.
    registerWebgpuKernels();
    registerInPlaceUpdates("webgpu", {
      adamw: adamwInPlaceWebgpu,
      adamwMany: (items, attrs) =>
        items.map((it, i) => i > 0 || adamwInPlaceWebgpu(it.p, it.m, it.v, it.g, attrs)),
    });
    const partial = await selfCheckWebgpuKernels();
    assert.equal(partial.ok, false, "the check's grouped update covers several variables");
    // Likewise grouped Adafactor updates that skip all but the first parameter of a group.
    for (const kind of ["adafactorFactoredMany", "adafactorUnfactoredMany"] as const) {
      registerWebgpuKernels();
      assert.ok((await selfCheckWebgpuKernels()).ok, `the real ${kind} passes`);
      // Updates the first parameter only and says it did them all.
      const factoredFirst = ((items, attrs) => {
        adafactorFactoredManyInPlaceWebgpu(items.slice(0, 1), attrs);
        return items.map(() => true);
      }) satisfies typeof adafactorFactoredManyInPlaceWebgpu;
      const unfactoredFirst = ((items, attrs) => {
        adafactorUnfactoredManyInPlaceWebgpu(items.slice(0, 1), attrs);
        return items.map(() => true);
      }) satisfies typeof adafactorUnfactoredManyInPlaceWebgpu;
      registerInPlaceUpdates("webgpu", {
        adafactorFactored: adafactorFactoredInPlaceWebgpu,
        adafactorUnfactored: adafactorUnfactoredInPlaceWebgpu,
        ...(kind === "adafactorFactoredMany"
          ? { adafactorFactoredMany: factoredFirst }
          : { adafactorUnfactoredMany: unfactoredFirst }),
      });
      assert.equal((await selfCheckWebgpuKernels()).ok, false, `a partial ${kind} is caught`);
    }
  },
  () => assert.ok(registerWebgpuKernels()),
);

gpuTest(
  "unfactored Adafactor on webgpu: one dispatch per vector, equal to the op-by-op update on cpu",
  async () => {
    // 2000 elements: eight per thread of the single workgroup; scaling, weight decay, clipping.
    const cfg = {
      kind: "adafactor" as const,
      multiplyByParameterScale: true,
      weightDecay: 0.1,
      clippingThreshold: 0.5,
    };
    const run = async () => {
      const init = tf.tensor(uniformValues(2000, 70));
      const w = tf.variable(init);
      init.dispose();
      const opt = createOptimizer(cfg);
      for (let k = 0; k < 3; k++) {
        const g = tf.tensor(uniformValues(2000, 71 + k).map((x) => x * (k + 1)));
        opt.apply(new Map([["w", w]]), new Map([["w", g]]), 0.05);
        g.dispose();
      }
      const out = await w.data();
      opt.dispose();
      w.dispose();
      return out;
    };
    const { result: got, programs, dispatches } = await counting(run);
    // Three updates: one dispatch each; tfjs programs only to upload/fill (zeros for the slot).
    assert.equal(dispatches - programs, 3, `${dispatches} dispatches, ${programs} tfjs programs`);
    await tf.setBackend("cpu");
    const want = await run();
    await tf.setBackend("webgpu");
    // float32 sums over 2000 elements in another order: 1e-5 of the parameter scale.
    assertClose(got, Array.from(want), 1e-5, "p", 1e-5 * Math.max(...Array.from(want, Math.abs)));
  },
  () => assert.ok(registerWebgpuKernels()),
);

gpuTest(
  "factored Adafactor in place: four dispatches, no tfjs program or tensor, equal to the kernel",
  async () => {
    // [70, 130]: 70 row workgroups and 3 column blocks of 64 (the last partial) in the moments
    // dispatch; clipping active.
    const [rows, cols] = [70, 130];
    const attrs = {
      beta2t: 0.3,
      eps1: 1e-30,
      clippingThreshold: 1,
      lr: 0.01,
      weightDecay: 0.1,
    };
    const make = () => {
      const own = (t: tf.Tensor) => {
        const v = tf.variable(t);
        t.dispose();
        return v;
      };
      const p = own(tf.tensor(uniformValues(rows * cols, 80), [rows, cols]));
      const vr = own(tf.tensor(uniformValues(rows, 81).map((x) => Math.abs(x) + 0.1)));
      const vc = own(tf.tensor(uniformValues(cols, 82).map((x) => Math.abs(x) + 0.1)));
      const g = tf.tensor(uniformValues(rows * cols, 83).map((x) => 3 * x), [rows, cols]);
      return { p, vr, vc, g, all: [p, vr, vc, g] };
    };
    const a = make(), b = make();
    registerInPlaceUpdates("webgpu", undefined); // reference: the HpAdafactor kernel
    assert.ok(updateAdafactor(a.p, a.vr, a.vc, a.g, attrs));
    registerWebgpuKernels();
    const before = tf.memory().numTensors;
    const { result, programs, dispatches } = await counting(() =>
      updateAdafactor(b.p, b.vr, b.vc, b.g, attrs)
    );
    assert.ok(result);
    assert.equal(programs, 0, "no tfjs program");
    assert.equal(dispatches, 4);
    assert.equal(tf.memory().numTensors, before, "no tensor allocated or leaked");
    for (const k of ["p", "vr", "vc"] as const) {
      const want = Array.from(await a[k].data());
      const scale = Math.max(...want.map(Math.abs));
      // The same float32 formulas: equal up to a compiler's contraction of a multiply-add.
      assertClose(await b[k].data(), want, 1e-6, k, 1e-6 * scale);
    }
    tf.dispose([...a.all, ...b.all]);
  },
  () => assert.ok(registerWebgpuKernels()),
);

/** Variables from seeded values (`abs`: a second moment, kept positive). */
function own(shape: number[], seed: number, abs = false): tf.Variable {
  const n = shape.reduce((a, b) => a * b, 1);
  const t = tf.tensor(uniformValues(n, seed).map((x) => abs ? Math.abs(x) + 0.1 : x), shape);
  const v = tf.variable(t);
  t.dispose();
  return v;
}

const ADAFACTOR = { beta2t: 0.3, eps1: 1e-30, clippingThreshold: 1, lr: 0.01, weightDecay: 0.1 };

gpuTest(
  "grouped factored Adafactor equals one matrix at a time, four dispatches per group",
  async () => {
    const k = adafactorFactoredGroupSize(
      (tf.backend() as unknown as { device: GPUDevice }).device.limits,
    );
    assert.ok(k >= 2, `${k} matrices per group`);
    // Shapes with partial column blocks, one row, one column, a multi-workgroup p; more matrices
    // than one group holds.
    const shapes = "70x130 1x5 9x1 33x64 2x300 5x7 64x65 3x3 17x200".split(" ")
      .map((d) => d.split("x").map(Number));
    const make = (i: number, [r, c]: number[]) => ({
      p: own([r!, c!], 300 + 10 * i),
      vr: own([r!], 301 + 10 * i, true),
      vc: own([c!], 302 + 10 * i, true),
      g: own([r!, c!], 303 + 10 * i),
    });
    const a = shapes.map((sh, i) => make(i, sh));
    const b = shapes.map((sh, i) => make(i, sh));
    for (const x of a) assert.ok(adafactorFactoredManyInPlaceWebgpu([x], ADAFACTOR)[0]);
    const before = tf.memory().numTensors;
    const { result, programs, dispatches } = await counting(() =>
      adafactorFactoredManyInPlaceWebgpu(b, ADAFACTOR)
    );
    assert.deepEqual(result, shapes.map(() => true));
    assert.equal(programs, 0, "no tfjs program");
    assert.equal(dispatches, 4 * Math.ceil(shapes.length / k));
    assert.equal(tf.memory().numTensors, before, "the scratch buffers are released");
    for (const [i, sh] of shapes.entries()) {
      for (const key of ["p", "vr", "vc"] as const) {
        // The same WGSL per matrix, the same reduction order: bit for bit here.
        assert.deepEqual(await b[i]![key].data(), await a[i]![key].data(), `${key} of ${sh}`);
      }
    }
    tf.dispose([...a, ...b].flatMap((x) => [x.p, x.vr, x.vc, x.g]));
  },
  () => assert.ok(registerWebgpuKernels()),
);

gpuTest(
  "grouped unfactored Adafactor equals one vector at a time, one dispatch per group",
  async () => {
    const k = adafactorUnfactoredGroupSize(
      (tf.backend() as unknown as { device: GPUDevice }).device.limits,
    );
    assert.ok(k >= 2, `${k} vectors per group`);
    const sizes = [768, 1, 2000, 255, 256, 257, 3, 64, 512, 100, 7, 1024, 9];
    // Parameter scale on: the step depends on each vector's own RMS.
    const attrs = { ...ADAFACTOR, parameterScaleEps2: 1e-3 };
    const make = (i: number, n: number) => ({
      p: own([n], 400 + 10 * i),
      v: own([n], 401 + 10 * i, true),
      g: own([n], 402 + 10 * i),
    });
    const a = sizes.map((n, i) => make(i, n));
    const b = sizes.map((n, i) => make(i, n));
    for (const x of a) assert.ok(adafactorUnfactoredManyInPlaceWebgpu([x], attrs)[0]);
    const before = tf.memory().numTensors;
    const { result, programs, dispatches } = await counting(() =>
      adafactorUnfactoredManyInPlaceWebgpu(b, attrs)
    );
    assert.deepEqual(result, sizes.map(() => true));
    assert.equal(programs, 0, "no tfjs program");
    assert.equal(dispatches, Math.ceil(sizes.length / k));
    assert.equal(tf.memory().numTensors, before);
    for (const [i, n] of sizes.entries()) {
      for (const key of ["p", "v"] as const) {
        assert.deepEqual(await b[i]![key].data(), await a[i]![key].data(), `${key} of ${n}`);
      }
    }
    tf.dispose([...a, ...b].flatMap((x) => [x.p, x.v, x.g]));
  },
  () => assert.ok(registerWebgpuKernels()),
);

gpuTest(
  "Adafactor.apply on webgpu: grouped updates, equal to the op-by-op update on cpu",
  async () => {
    // Matrices and vectors of a small model, three steps, clipping and weight decay on, without
    // and with Mesh TF's parameter scale (the paper profiles'; the weight decay then scales too),
    // and with T5X's weightDecayRate (lr-independent): folded into the grouped kernels' decay
    // without the scale, op by op (no in-place dispatch) with it.
    // The last matrix and vector start at zero: RMS(p) = 0, so with the parameter scale their step
    // is lr·eps2 (the floor), not 0 (benchmarks/optim_test.ts checks cpu against float64).
    const shapes = [[40, 24], [24, 40], [24], [24], [7, 24], [24, 24], [24], [8, 24], [8]];
    const zeroFrom = 7;
    const cases = [
      { multiplyByParameterScale: false, weightDecay: 0.1 },
      { multiplyByParameterScale: true, weightDecay: 0.1 },
      { multiplyByParameterScale: false, weightDecay: 0, weightDecayRate: 0.05 },
      { multiplyByParameterScale: true, weightDecay: 0.1, weightDecayRate: 0.05 },
    ];
    for (const c of cases) {
      const { multiplyByParameterScale } = c;
      const grouped = !(c.weightDecayRate !== undefined && multiplyByParameterScale);
      const run = async () => {
        const ws = shapes.map((sh, i) =>
          i >= zeroFrom ? tf.tidy(() => tf.variable(tf.zeros(sh))) : own(sh, 500 + i)
        );
        const params = new Map(ws.map((w, i) => [`w${i}`, w]));
        const opt = createOptimizer({ kind: "adafactor", ...c });
        for (let s = 0; s < 3; s++) {
          const grads = new Map(
            shapes.map((sh, i) => [`w${i}`, own(sh, 600 + 10 * s + i)] as const),
          );
          opt.apply(params, grads, 0.01);
          tf.dispose([...grads.values()]);
        }
        const out = await Promise.all(ws.map((w) => w.data()));
        opt.dispose();
        tf.dispose(ws);
        return out;
      };
      const { result: got, dispatches, programs } = await counting(run);
      // 5 matrices (one group), 4 vectors (one group): 5 in-place dispatches per step.
      assert.equal(
        dispatches - programs,
        grouped ? 3 * 5 : 0,
        `${JSON.stringify(c)}: ${dispatches} dispatches, ${programs} programs`,
      );
      await tf.setBackend("cpu");
      const want = await run();
      await tf.setBackend("webgpu");
      for (const [i, w] of want.entries()) {
        // float32 sums in another order: 1e-5 of the parameter scale.
        const scale = Math.max(...Array.from(w, Math.abs));
        // A zero parameter moved (by lr·eps2 ≈ 1e-5 per step with the scale): not left at 0.
        if (i >= zeroFrom) assert.ok(scale > 1e-6, `w${i} ${JSON.stringify(c)} moved: ${scale}`);
        assertClose(
          got[i]!,
          Array.from(w),
          1e-5,
          `w${i} ${JSON.stringify(c)}`,
          1e-5 * scale,
        );
      }
    }
  },
  () => assert.ok(registerWebgpuKernels()),
);

gpuTest(
  "hostOnlySteps between snapshotTraining and its restore leaves weights and moments as they were",
  async () => {
    assert.ok(registerWebgpuKernels());
    for (const kind of ["adamw", "adafactor"] as const) {
      const p = tf.variable(tf.tensor2d(uniformValues(12 * 10, 71), [12, 10]), true, `p-${kind}`);
      const params = new Map([[p.name, p]]);
      const opt = createOptimizer({ kind });
      const x = tf.tensor2d(uniformValues(10 * 3, 72), [10, 3]);
      const step = async () => {
        const { value, grads } = tf.variableGrads(() => tf.sum(tf.square(tf.matMul(p, x))), [p]);
        opt.apply(params, new Map(Object.entries(grads)), 1e-2);
        await value.data();
        tf.dispose([value, ...Object.values(grads)]);
      };
      await step(); // moments exist
      const read = async () => ({
        p: Array.from(await p.data()),
        step: opt.step,
        slots: await Promise.all(
          [...opt.slots().values()].map(async (t) => Array.from(await t.data())),
        ),
      });
      const before = await read();
      const tensors = tf.memory().numTensors;
      const restore = await snapshotTraining(params, opt);
      await hostOnlySteps(step, 2);
      // (Without the restore this fails: the steps left never-computed values behind.)
      restore();
      assert.deepEqual(await read(), before, kind);
      assert.equal(tf.memory().numTensors, tensors, `${kind}: copies freed`);
      // withTrainingRestored restores also when the measurement throws part-way.
      await assert.rejects(
        withTrainingRestored(params, opt, async () => {
          await hostOnlySteps(step, 1);
          throw new Error("measurement failed");
        }),
        /measurement failed/,
      );
      assert.deepEqual(await read(), before, `${kind}: restored after a throw`);
      assert.equal(tf.memory().numTensors, tensors, `${kind}: copies freed after a throw`);
      // And training goes on from them as if nothing had happened.
      await step();
      assert.equal(opt.step, before.step + 1);
      opt.dispose();
      tf.dispose([p, x]);
    }
  },
);

gpuTest(
  "a read in flight across an in-place AdamW returns the old values and caches nothing stale",
  async () => {
    assert.ok(registerWebgpuKernels());
    // Small tensors otherwise run on the CPU and keep a CPU copy, which hides the race.
    const cpuForward = tf.env().getBool("WEBGPU_CPU_FORWARD");
    tf.env().set("WEBGPU_CPU_FORWARD", false);
    try {
      await readAcrossUpdate();
    } finally {
      tf.env().set("WEBGPU_CPU_FORWARD", cpuForward);
    }
  },
);

async function readAcrossUpdate(): Promise<void> {
  {
    const mk = (f: (i: number) => number) => {
      const t = tf.tensor(Float32Array.from({ length: 64 }, (_, i) => f(i)));
      const v = tf.variable(t);
      t.dispose();
      return v;
    };
    const [p, m, v] = [mk((i) => i), mk(() => 0), mk(() => 0)];
    const g = tf.ones([64]);
    const attrs = adamwAttrs({ lr: 0.5, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 }, 1);
    tf.tidy(() => tf.add(p, 0)).dispose(); // p lives on the GPU, no CPU copy
    const pending = p.data(); // e.g. an asynchronous log or checkpoint of the weights
    assert.ok(updateAdamW(p, m, v, g, attrs), "the in-place path ran");
    const old = await pending;
    assert.equal(old[1], 1, "the read issued before the update sees the old value");
    const fresh = tf.tidy(() => tf.add(p, 0));
    const gpu = await fresh.data();
    assert.ok(gpu[1]! < 1, `the update moved p[1] to ${gpu[1]}`);
    // Without the guard, the late read cached the old values and data() kept returning them.
    assert.deepEqual(Array.from(await p.data()), Array.from(gpu));
    tf.dispose([p, m, v, g, fresh]);
  }
}
