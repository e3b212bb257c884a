import assert from "node:assert/strict";
import { MixtureSampler, type MixtureState, Xoshiro128 } from "./mixture.ts";

/** Empirical rate vs p within 5 binomial standard deviations sqrt(p(1-p)/n) (false alarm ~6e-7). */
function assertRate(count: number, n: number, p: number, what: string) {
  const sd = Math.sqrt((p * (1 - p)) / n);
  const rate = count / n;
  assert.ok(
    Math.abs(rate - p) <= 5 * sd + 1e-12,
    `${what}: rate ${rate.toFixed(5)} vs expected ${p.toFixed(5)} (5 sd = ${(5 * sd).toFixed(5)})`,
  );
}

// T5 GLUE mixture sizes (reference §3.6); rte-sized and zero (eval-only) tasks included.
const GLUE = [
  { task: "cola", size: 8551 },
  { task: "sst2", size: 67349 },
  { task: "mrpc", size: 3668 },
  { task: "qqp", size: 363849 },
  { task: "stsb", size: 5749 },
  { task: "mnli", size: 392702 },
  { task: "qnli", size: 104743 },
  { task: "rte", size: 2490 },
  { task: "ax", size: 0 },
];

Deno.test("proportional: mixed-task batches at rates = sizes / total", () => {
  const s = new MixtureSampler(GLUE, { kind: "proportional", seed: 1, batchSize: 64 });
  const total = GLUE.reduce((a, d) => a + d.size, 0);
  GLUE.forEach((d, i) => assert.ok(Math.abs(s.probs[i]! - d.size / total) < 1e-12));
  const counts = GLUE.map(() => 0);
  let mixed = 0;
  const batches = 3000;
  for (let b = 0; b < batches; b++) {
    const batch = s.nextBatch();
    assert.equal(batch.length, 64);
    if (new Set(batch.map((e) => e.task)).size > 1) mixed++;
    for (const e of batch) {
      counts[e.task]!++;
      assert.ok(e.index >= 0 && e.index < GLUE[e.task]!.size);
    }
  }
  const n = batches * 64;
  GLUE.forEach((d, i) => assertRate(counts[i]!, n, d.size / total, d.task));
  assert.equal(counts[8], 0, "size-0 task never sampled");
  assert.ok(mixed > batches * 0.99, "batches mix tasks");
});

Deno.test("proportional with cap: rates ∝ min(size, cap)", () => {
  const ds = [{ task: "a", size: 100 }, { task: "b", size: 10000 }, { task: "c", size: 300 }];
  const s = new MixtureSampler(ds, { kind: "proportional", seed: 5, batchSize: 50, cap: 1000 });
  const w = [100, 1000, 300];
  const counts = [0, 0, 0];
  for (let b = 0; b < 2000; b++) for (const e of s.nextBatch()) counts[e.task]!++;
  w.forEach((x, i) => assertRate(counts[i]!, 100000, x / 1400, ds[i]!.task));
});

Deno.test("proportional: within a task each epoch is a permutation", () => {
  const ds = [{ task: "small", size: 7 }, { task: "big", size: 50 }];
  const s = new MixtureSampler(ds, { kind: "proportional", seed: 9, batchSize: 8 });
  const seen: number[] = [];
  while (seen.length < 21) for (const e of s.nextBatch()) if (e.task === 0) seen.push(e.index);
  for (let ep = 0; ep < 3; ep++) {
    assert.deepEqual([...seen.slice(ep * 7, ep * 7 + 7)].sort((a, b) => a - b), [
      0,
      1,
      2,
      3,
      4,
      5,
      6,
    ]);
  }
  assert.notDeepEqual(seen.slice(0, 7), seen.slice(7, 14), "reshuffled each epoch");
});

Deno.test("temperature T=10: single-task batches, p ∝ (n/N)^(1/T)", () => {
  const ds = [{ task: "mnli", size: 392702 }, { task: "rte", size: 2490 }, {
    task: "cola",
    size: 8551,
  }];
  const s = new MixtureSampler(ds, { kind: "temperature", seed: 3, batchSize: 4 });
  const N = 392702 + 2490 + 8551;
  const w = ds.map((d) => Math.pow(d.size / N, 0.1));
  const z = w.reduce((a, b) => a + b, 0);
  const p = w.map((x) => x / z);
  // Hand check of the first probability: (392702/403743)^0.1 = 0.99723…
  assert.ok(Math.abs(w[0]! - 0.997231) < 1e-5);
  p.forEach((x, i) => assert.ok(Math.abs(s.probs[i]! - x) < 1e-12));
  const counts = [0, 0, 0];
  const batches = 40000;
  const idxHist = new Map<number, number>();
  for (let b = 0; b < batches; b++) {
    const batch = s.nextBatch();
    const t = batch[0]!.task;
    assert.ok(batch.every((e) => e.task === t), "single-task batch");
    counts[t]!++;
    for (const e of batch) {
      assert.ok(e.index >= 0 && e.index < ds[t]!.size);
      if (t === 1) idxHist.set(e.index, (idxHist.get(e.index) ?? 0) + 1);
    }
  }
  p.forEach((x, i) => assertRate(counts[i]!, batches, x, ds[i]!.task));
  // Uniform with replacement within a task: rte draws ~ batches*p1*4 ≈ 36k over 2490 items;
  // with replacement, repeats happen well before the items run out.
  assert.ok(idxHist.size > 2000, `rte coverage ${idxHist.size}`);
});

Deno.test("temperature: a tiny T tends to the largest task (its weights do not underflow to NaN); a huge T to uniform", () => {
  const ds = [{ task: "cola", size: 8551 }, { task: "rte", size: 2490 }];
  const probs = (temperature: number) =>
    new MixtureSampler(ds, { kind: "temperature", temperature, seed: 1, batchSize: 2 }).probs;
  // (n/N)^(1/T) underflowed for both at T = 1e-4: NaN probabilities, every batch from rte.
  for (const t of [1e-4, 1e-3, 1e-6, 5e-324]) assert.deepEqual(probs(t), [1, 0], `T=${t}`);
  const huge = probs(1e308);
  assert.ok(Math.abs(huge[0]! - 0.5) < 1e-12 && Math.abs(huge[1]! - 0.5) < 1e-12, `${huge}`);
  const s = new MixtureSampler(ds, {
    kind: "temperature",
    temperature: 1e-4,
    seed: 1,
    batchSize: 2,
  });
  for (let b = 0; b < 50; b++) assert.equal(s.nextBatch()[0]!.task, 0);
});

for (const kind of ["proportional", "temperature"] as const) {
  Deno.test(`${kind}: state()/restore() continues the identical stream`, () => {
    const ds = [{ task: "a", size: 5 }, { task: "b", size: 13 }, { task: "c", size: 0 }, {
      task: "d",
      size: 40,
    }];
    const opts = { kind, seed: 42, batchSize: 6 };
    const a = new MixtureSampler(ds, opts);
    for (let i = 0; i < 37; i++) a.nextBatch();
    const saved = JSON.parse(JSON.stringify(a.state())) as MixtureState;
    const rest = Array.from({ length: 50 }, () => a.nextBatch());
    const b = new MixtureSampler(ds, opts);
    b.nextBatch(); // drawn state is overwritten by restore
    b.restore(saved);
    assert.equal(b.batchCount, 37);
    assert.deepEqual(Array.from({ length: 50 }, () => b.nextBatch()), rest);
    // Same seed from scratch: same stream; another seed: different.
    const c = new MixtureSampler(ds, opts);
    const d = new MixtureSampler(ds, { ...opts, seed: 43 });
    const first = Array.from({ length: 10 }, () => c.nextBatch());
    const e = new MixtureSampler(ds, opts);
    assert.deepEqual(Array.from({ length: 10 }, () => e.nextBatch()), first);
    assert.notDeepEqual(Array.from({ length: 10 }, () => d.nextBatch()), first);
    assert.throws(() => d.restore(saved), /seed=42/);
  });
}

Deno.test("MixtureSampler.restore refuses a corrupted state: generator words, epochs, positions, batches", () => {
  const ds = [{ task: "a", size: 5 }, { task: "b", size: 13 }];
  const opts = { kind: "proportional" as const, seed: 42, batchSize: 6 };
  const a = new MixtureSampler(ds, opts);
  for (let i = 0; i < 3; i++) a.nextBatch();
  const good = JSON.parse(JSON.stringify(a.state())) as MixtureState;
  const cases: [Partial<MixtureState>, RegExp][] = [
    [
      { rng: [0, 0, 0, 0] },
      /field "rng" must be 4 unsigned 32-bit integers, not all 0, got \[0,0,0,0\]/,
    ],
    [{ rng: [2 ** 32, 1, 2, 3] }, /field "rng" must be 4 unsigned 32-bit integers/],
    [{ rng: [1.5, 1, 2, 3] }, /field "rng"/],
    [{ rng: [-1, 1, 2, 3] }, /field "rng"/],
    [{ epochs: [0, -1] }, /epoch -1 of task 1 is not a count/],
    [{ epochs: [0.5, 0] }, /epoch 0.5 of task 0 is not a count/],
    [{ positions: [1.5, 0] }, /position 1.5 out of range for task 0/],
    [{ batches: -2 }, /batches -2 is not a count/],
  ];
  for (const [change, want] of cases) {
    const b = new MixtureSampler(ds, opts);
    const before = JSON.stringify(b.state());
    assert.throws(() => b.restore({ ...good, ...change }), want, JSON.stringify(change));
    assert.equal(JSON.stringify(b.state()), before, "nothing restored");
  }
  const b = new MixtureSampler(ds, opts);
  b.restore(good);
  assert.deepEqual(b.nextBatch(), a.nextBatch(), "the intact state still restores");
});

Deno.test("Xoshiro128: floats in [0,1) with mean 1/2, nextInt unbiased over 3 buckets", () => {
  const r = new Xoshiro128(7);
  let sum = 0;
  const n = 100000;
  const buckets = [0, 0, 0];
  for (let i = 0; i < n; i++) {
    const u = r.nextFloat();
    assert.ok(u >= 0 && u < 1);
    sum += u;
    buckets[r.nextInt(3)]!++;
  }
  // Mean of n uniforms: sd = sqrt(1/12/n) ≈ 0.000913; 5 sd.
  assert.ok(Math.abs(sum / n - 0.5) < 5 * Math.sqrt(1 / 12 / n));
  buckets.forEach((c, i) => assertRate(c, n, 1 / 3, `bucket ${i}`));
  assert.throws(() => r.nextInt(0), /bad bound/);
});

Deno.test("MixtureSampler rejects bad input naming the field", () => {
  assert.throws(
    () =>
      new MixtureSampler([{ task: "x", size: -1 }], {
        kind: "proportional",
        seed: 1,
        batchSize: 2,
      }),
    /x\) size/,
  );
  assert.throws(
    () =>
      new MixtureSampler([{ task: "x", size: 0 }], { kind: "temperature", seed: 1, batchSize: 2 }),
    /empty/,
  );
  assert.throws(
    () =>
      new MixtureSampler([{ task: "x", size: 3 }], { kind: "proportional", seed: 1, batchSize: 0 }),
    /batchSize/,
  );
});

Deno.test("Xoshiro128 matches the xoshiro128** reference outputs for state [1,2,3,4]", () => {
  const r = new Xoshiro128(0);
  r.s = [1, 2, 3, 4];
  const got = Array.from({ length: 6 }, () => r.nextU32());
  assert.deepEqual(got, [11520, 0, 5927040, 70819200, 2031721883, 1637235492]);
});
