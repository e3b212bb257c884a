/**
 * Unit tests of the T5 tensor primitives (cpu backend; values are small and exact to ~1e-6).
 *
 * Tolerances are absolute, on values of magnitude ≤ 10, and each states its error source and the
 * worst difference measured here. Two kinds: float64 hand values (float32 rounding of a few ops, a
 * few ulp of ≤ 1.2e-7 each) and compositions of the same tfjs cpu ops (0 today, as both sides run
 * the same kernels in the same order; the bound admits a reordering of layers.ts's sums, at most
 * n·2⁻²⁴ of the sum of |terms| for an n-term sum).
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import {
  attention,
  causalMask,
  feedForward,
  gatherRows,
  geluNew,
  linear,
  MASK_VALUE,
  paddingMask,
  positionBias,
  relativePositionBucket,
  rmsNorm,
} from "./layers.ts";

await tf.setBackend("cpu");

function close(a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(a.length, b.length, `${what}: length`);
  for (let i = 0; i < a.length; i++) {
    assert.ok(Math.abs(a[i]! - b[i]!) <= tol, `${what}[${i}]: ${a[i]} vs ${b[i]}`);
  }
}

Deno.test("relativePositionBucket: T5 values for 32 buckets, max distance 128", () => {
  // Hand-derived from the HF formula (encoder halves buckets by sign; decoder is causal).
  const enc = (rp: number) => relativePositionBucket(rp, true, 32, 128);
  const dec = (rp: number) => relativePositionBucket(rp, false, 32, 128);
  assert.deepEqual([0, -1, 1, -7, 7, -8, -16, -128, -1000, 1000].map(enc), [
    0,
    1,
    17,
    7,
    23,
    8,
    10,
    15,
    15,
    31,
  ]);
  // log region start: 8 + trunc(ln(16/8)/ln(16)·8) = 10 at 16; 8 + trunc(ln(3)/ln(16)·8) = 11 at 24
  assert.equal(enc(-24), 11);
  assert.deepEqual([5, 0, -5, -15, -16, -32, -128, -500].map(dec), [0, 0, 5, 15, 16, 21, 31, 31]);
});

Deno.test("relativePositionBucket is monotone in distance and within range", () => {
  for (const [nb, md] of [[32, 128], [16, 64], [8, 16]] as const) {
    let prev = -1;
    for (let n = 0; n < 400; n++) {
      const b = relativePositionBucket(-n, false, nb, md);
      assert.ok(b >= prev && b < nb, `causal nb ${nb} n ${n}: ${b}`);
      prev = b;
      const e = relativePositionBucket(n + 1, true, nb, md);
      assert.ok(e >= nb / 2 && e < nb, `bidirectional positive n ${n}: ${e}`);
    }
  }
});

Deno.test("positionBias gathers the table per (query, key) and head", () => {
  const table = tf.tensor2d([[0, 10], [1, 11], [2, 12], [3, 13], [4, 14], [5, 15], [6, 16], [
    7,
    17,
  ]]);
  const b = positionBias(table, 0, 2, -1, 3, false, 16); // queries 0,1; keys -1,0,1
  assert.deepEqual(b.shape, [1, 2, 2, 3]);
  const want = (h: number) =>
    [[-1, 0, 1], [-2, -1, 0]].map((r) =>
      r.map((rp) => relativePositionBucket(rp, false, 8, 16) + 10 * h)
    );
  assert.deepEqual(b.arraySync(), [[want(0), want(1)]]);
  tf.dispose([table, b]);
});

Deno.test("rmsNorm: scale only, no mean subtraction", () => {
  const x = tf.tensor2d([[1, 2, 3, 4], [-1, 0, 0, 1]]);
  const w = tf.tensor1d([1, 2, 1, 0.5]);
  const y = rmsNorm(x, w, 1e-6).arraySync() as number[][];
  const r0 = Math.sqrt((1 + 4 + 9 + 16) / 4 + 1e-6);
  const r1 = Math.sqrt(2 / 4 + 1e-6);
  // float32 square, mean, sqrt, divide, scale: ≲ 4 ulp of |y| ≤ 1.5 (≈ 5e-7); measured 4.7e-8.
  close(y[0]!, [1 / r0, 4 / r0, 3 / r0, 2 / r0], 1e-6, "row0");
  close(y[1]!, [-1 / r1, 0, 0, 0.5 / r1], 1e-6, "row1");
  tf.dispose([x, w]);
});

Deno.test("geluNew is the tanh approximation", () => {
  const y = tf.tidy(() => geluNew(tf.tensor1d([1, -2, 0])).dataSync());
  // ~10 float32 ops (cube, tanh, ...) on |y| ≤ 0.85: ≲ 10 ulp ≈ 6e-7; measured 1.7e-8.
  close(y, [0.8411919906082768, -0.04540230591222494, 0], 1e-6, "gelu_new");
});

Deno.test("linear uses HF orientation [out, in]", () => {
  const y = tf.tidy(() =>
    linear(tf.tensor3d([[[1, 2]]]), tf.tensor2d([[1, 0], [0, 1], [1, 1]])).arraySync()
  );
  assert.deepEqual(y, [[[1, 2, 3]]]);
  assert.throws(
    () => linear(tf.zeros([1, 3]), tf.zeros([2, 2]) as tf.Tensor2D),
    /layers\.ts linear/,
  );
});

Deno.test("masks: padding and causal are additive with MASK_VALUE", () => {
  const p = tf.tidy(() => paddingMask(tf.tensor2d([[1, 1, 0]])).arraySync());
  assert.deepEqual(p, [[[[0, 0, MASK_VALUE]]]]);
  const c = tf.tidy(() => causalMask(1, 2, 3).arraySync());
  assert.deepEqual(c, [[[[0, 0, MASK_VALUE], [0, 0, 0]]]]);
});

Deno.test("feedForward: relu and gated gelu match hand-written compositions", () => {
  tf.tidy(() => {
    const x = tf.randomNormal([2, 3, 4], 0, 1, "float32", 1);
    const wi = tf.randomNormal([5, 4], 0, 1, "float32", 2) as tf.Tensor2D;
    const wi1 = tf.randomNormal([5, 4], 0, 1, "float32", 3) as tf.Tensor2D;
    const wo = tf.randomNormal([4, 5], 0, 1, "float32", 4) as tf.Tensor2D;
    const x2 = x.reshape([6, 4]);
    const relu = tf.matMul(tf.relu(tf.matMul(x2, wi.transpose())), wo.transpose());
    // Same cpu kernels: measured 0 for relu and gated. A reordered 4- or 5-term sum of terms
    // ≤ ~10 (|out| ≤ 9.5, ulp 9.5e-7) differs by ≲ 5·½ulp ≈ 2.5e-6; 1e-5 is 4× that.
    close(feedForward(x, { wi, wo }).dataSync(), relu.dataSync(), 1e-5, "relu");
    const g = tf.matMul(
      tf.mul(geluNew(tf.matMul(x2, wi.transpose())), tf.matMul(x2, wi1.transpose())),
      wo.transpose(),
    );
    // The gated reference uses geluNew itself: this checks feedForward's wiring (which weight
    // is gated, transposes); geluNew's own values are pinned against fixed numbers above.
    close(feedForward(x, { wi0: wi, wi1, wo }).dataSync(), g.dataSync(), 1e-5, "gated");
    assert.throws(() => feedForward(x, { wo }), /feedForward/);
  });
});

Deno.test("gatherRows: value and gradient equal tf.gather's (duplicate indices summed)", () => {
  tf.tidy(() => {
    const table = tf.randomNormal([5, 3], 0, 1, "float32", 7);
    const idx = tf.tensor2d([[1, 1], [4, 0]], undefined, "int32");
    const w = tf.randomNormal([2, 2, 3], 0, 1, "float32", 8);
    const f1 = (t: tf.Tensor) => tf.sum(tf.mul(gatherRows(t, idx), w));
    const f2 = (t: tf.Tensor) => tf.sum(tf.mul(tf.gather(t, idx), w));
    close(gatherRows(table, idx).dataSync(), tf.gather(table, idx).dataSync(), 0, "value");
    // Row 1's gradient adds two terms (|grad| ≤ 2.4): one rounding in either order, ≤ 1.2e-7;
    // measured 0.
    close(tf.grad(f1)(table).dataSync(), tf.grad(f2)(table).dataSync(), 1e-6, "grad");
    assert.throws(() => gatherRows(table, tf.tensor1d([0])), /int32/);
  });
});

Deno.test("attention: prefix columns are prepended, never masked, broadcast from batch 1", () => {
  tf.tidy(() => {
    const [b, h, lq, lk, l, dk] = [2, 2, 3, 3, 2, 4];
    const w = h * dk;
    const q = tf.randomNormal([b, lq, w], 0, 1, "float32", 1) as tf.Tensor3D;
    const k = tf.randomNormal([b, lk, w], 0, 1, "float32", 2) as tf.Tensor3D;
    const v = tf.randomNormal([b, lk, w], 0, 1, "float32", 3) as tf.Tensor3D;
    const pk = tf.randomNormal([1, l, w], 0, 1, "float32", 4) as tf.Tensor3D;
    const pv = tf.randomNormal([1, l, w], 0, 1, "float32", 5) as tf.Tensor3D;
    const bias = tf.randomNormal([1, h, lq, lk], 0, 1, "float32", 6);
    // row 2 pads every real key: all its mass must go to the prefix
    const mask = paddingMask(tf.tensor2d([[1, 1, 0], [0, 0, 0]]));
    const res = attention(q, k, v, h, {
      bias,
      mask,
      prefix: { key: pk, value: pv, positionBias: "zero" },
    });
    assert.equal(res.prefixLength, l);
    assert.deepEqual(res.probs.shape, [b, h, lq, l + lk]);
    assert.deepEqual(res.out.shape, [b, lq, w]);
    // reference: heads split explicitly (HF's view(b, l, h, d).transpose(1, 2)), explicit
    // concatenation with zero bias / zero mask on the prefix columns
    const split = (x: tf.Tensor) =>
      x.reshape([x.shape[0]!, x.shape[1]!, h, dk]).transpose([0, 2, 1, 3]);
    const kk = tf.concat([split(tf.tile(pk, [b, 1, 1])), split(k)], 2);
    const vv = tf.concat([split(tf.tile(pv, [b, 1, 1])), split(v)], 2);
    const fullBias = tf.concat([tf.zeros([1, h, lq, l]), bias], 3);
    const fullMask = tf.concat([tf.zeros([b, 1, 1, l]), mask], 3);
    const p = tf.softmax(tf.add(tf.add(tf.matMul(split(q), kk, false, true), fullBias), fullMask));
    // Same cpu ops, measured 0 for probs, out and the mass. probs ≤ 1: a softmax over 5 columns
    // in another order (exp, 5-term sum, divide) is off ≲ 4 ulp ≈ 2.4e-7 (bound 1e-6); out: 5
    // terms p·v with |out| ≤ 1.5, ≲ 5·½ulp ≈ 6e-7 (bound 1e-5, as feedForward's matmuls); the
    // mass sums 12 probabilities to 6 (ulp 4.8e-7): ≲ 12·½ulp ≈ 2.9e-6 (bound 1e-5).
    close(res.probs.dataSync(), p.dataSync(), 1e-6, "probs");
    const merged = tf.matMul(p, vv).transpose([0, 2, 1, 3]).reshape([b, lq, w]);
    close(res.out.dataSync(), merged.dataSync(), 1e-5, "out");
    const prefixMass = tf.sum(res.probs.slice([1, 0, 0, 0], [1, h, lq, l])).dataSync()[0]!;
    close([prefixMass], [h * lq], 1e-5, "prefix mass of fully padded row");
    // "relative" uses the supplied prefix bias; batch-B prefix equals broadcast batch-1 prefix
    const pb = tf.randomNormal([1, h, lq, l], 0, 1, "float32", 9);
    const r2 = attention(q, k, v, h, {
      bias,
      mask,
      prefix: {
        key: tf.tile(pk, [b, 1, 1]) as tf.Tensor3D,
        value: pv,
        positionBias: "relative",
      },
      prefixBias: pb,
    });
    const p2 = tf.softmax(
      tf.add(tf.add(tf.matMul(split(q), kk, false, true), tf.concat([pb, bias], 3)), fullMask),
    );
    // As "probs" above: measured 0.
    close(r2.probs.dataSync(), p2.dataSync(), 1e-6, "relative probs");
    assert.throws(
      () =>
        attention(q, k, v, h, { prefix: { key: pk, value: pv, positionBias: "relative" }, bias }),
      /prefixBias/,
    );
    // Without a key bias too: "relative" without prefixBias was silently taken as zero bias.
    assert.throws(
      () => attention(q, k, v, h, { prefix: { key: pk, value: pv, positionBias: "relative" } }),
      /"relative" prefix bias needs prefixBias/,
    );
    // ... and with it, the prefix columns get prefixBias and the key columns none.
    const r3 = attention(q, k, v, h, {
      mask,
      prefix: { key: pk, value: pv, positionBias: "relative" },
      prefixBias: pb,
    });
    const p3 = tf.softmax(
      tf.add(
        tf.add(tf.matMul(split(q), kk, false, true), tf.concat([pb, tf.zeros([1, h, lq, lk])], 3)),
        fullMask,
      ),
    );
    // As "probs" above: measured 0.
    close(r3.probs.dataSync(), p3.dataSync(), 1e-6, "relative probs without key bias");
    assert.throws(
      () =>
        attention(q, k, v, h, {
          prefix: { key: tf.zeros([3, l, w]) as tf.Tensor3D, value: pv, positionBias: "zero" },
        }),
      /batch 3/,
    );
    assert.throws(
      () =>
        attention(q, k, v, h, {
          prefix: { key: tf.zeros([1, l, w + 1]) as tf.Tensor3D, value: pv, positionBias: "zero" },
        }),
      /width/,
    );
    assert.throws(() => attention(q, k, v, 3), /not divisible by 3 heads/);
  });
});

Deno.test("layers leak nothing inside tf.tidy: values, gradients and refused inputs", () => {
  // layers.ts's contract is that callers run its primitives inside tf.tidy; what must hold then is
  // that nothing escapes the scope: no tensor kept by a custom gradient (gatherRows saves its
  // indices for the tape), and none kept (tf.keep) or made a variable on a path that throws. A
  // tensor merely made before an error (attention broadcasts a batch-1 prefix before it checks
  // the prefix's width and length) is freed by the tidy itself, which ends its scope on a throw:
  // the refused cases below catch a kept one only (and check each refusal's message).
  const [b, h, lq, dk] = [2, 2, 3, 4];
  const w = h * dk;
  const q = tf.randomNormal([b, lq, w], 0, 1, "float32", 1) as tf.Tensor3D;
  const table = tf.randomNormal([8, h], 0, 1, "float32", 2) as tf.Tensor2D;
  const wi = tf.randomNormal([6, w], 0, 1, "float32", 3) as tf.Tensor2D;
  const wo = tf.randomNormal([w, 6], 0, 1, "float32", 4) as tf.Tensor2D;
  const pk = tf.randomNormal([1, 2, w], 0, 1, "float32", 5) as tf.Tensor3D;
  const pv = tf.randomNormal([1, 2, w], 0, 1, "float32", 6) as tf.Tensor3D;
  const mask = tf.tensor2d([[1, 1, 0], [1, 1, 1]]);
  const inputs = [q, table, wi, wo, pk, pv, mask];
  const before = tf.memory().numTensors;
  const flat = (what: string, f: () => void) => {
    const n = tf.memory().numTensors;
    tf.tidy(f);
    assert.equal(tf.memory().numTensors, n, `${what}: tensors leaked`);
  };
  // One loss over every primitive, differentiated in the query, the bias table and the weights.
  const loss = (x: tf.Tensor, t: tf.Tensor, a: tf.Tensor, o: tf.Tensor) => {
    const bias = positionBias(t as tf.Tensor2D, 0, lq, -2, lq + 2, true, 16);
    const att = attention(x as tf.Tensor3D, x as tf.Tensor3D, x as tf.Tensor3D, h, {
      bias: bias.slice([0, 0, 0, 2], [1, h, lq, lq]),
      mask: tf.add(paddingMask(mask), causalMask(0, lq, lq)),
      prefix: { key: pk, value: pv, positionBias: "relative" },
      prefixBias: bias.slice([0, 0, 0, 0], [1, h, lq, 2]),
      dropout: { rate: 0.1, seed: 7 },
    });
    const ff = feedForward(rmsNorm(att.out, tf.ones([w]) as tf.Tensor1D, 1e-6), {
      wi: a as tf.Tensor2D,
      wo: o as tf.Tensor2D,
    }, { rate: 0.1, seed: 8 });
    return tf.sum(tf.add(linear(ff, o.transpose() as tf.Tensor2D), 0));
  };
  flat("value", () => {
    loss(q, table, wi, wo);
  });
  flat("gradient", () => {
    const grads = tf.grads(loss)([q, table, wi, wo]);
    assert.equal(grads.length, 4);
    for (const g of grads) assert.ok(g.dataSync().every(Number.isFinite), "finite gradient");
  });
  flat("gatherRows gradient", () => {
    tf.grad((t: tf.Tensor) => tf.sum(gatherRows(t, tf.tensor1d([1, 1, 3], "int32"))))(table);
  });
  const refused = (what: string, opts: () => Parameters<typeof attention>[4], re: RegExp) =>
    flat(what, () => assert.throws(() => attention(q, q, q, h, opts()), re));
  const narrow = tf.zeros([1, 2, w - 1]) as tf.Tensor3D;
  const longer = tf.zeros([1, 3, w]) as tf.Tensor3D;
  refused(
    "width",
    () => ({ prefix: { key: narrow, value: narrow, positionBias: "zero" } }),
    /width/,
  );
  refused("length", () => ({ prefix: { key: pk, value: longer, positionBias: "zero" } }), /length/);
  refused("batch", () => ({
    prefix: { key: tf.tile(pk, [3, 1, 1]) as tf.Tensor3D, value: pv, positionBias: "zero" },
  }), /neither 1 nor the batch/);
  flat("feedForward weights", () =>
    assert.throws(
      () => feedForward(q, { wi, wo: tf.zeros([w, 5]) as tf.Tensor2D }),
      /input last dim 6 != weight in-dim 5/,
    ));
  tf.dispose([narrow, longer]);
  tf.dispose(inputs);
  assert.equal(tf.memory().numTensors, before - inputs.length, "inputs disposed");
});
