import assert from "node:assert/strict";
import { learningRateAt } from "./schedule.ts";

Deno.test("learningRateAt() constant ignores warmup and step", () => {
  for (const s of [0, 1, 999]) {
    assert.equal(learningRateAt({ kind: "constant", warmupSteps: 5 }, 1e-3, s, 1000), 1e-3);
  }
});

Deno.test("learningRateAt() warmup_linear rises then decays to 0 at the end", () => {
  const s = { kind: "warmup_linear", warmupSteps: 4 } as const;
  const lrs = Array.from({ length: 13 }, (_, i) => learningRateAt(s, 1, i, 12));
  assert.deepEqual(lrs.slice(0, 5), [0, 0.25, 0.5, 0.75, 1]);
  assert.equal(lrs[8], 0.5); // (12 - 8) / (12 - 4)
  assert.equal(lrs[12], 0);
  // Past the last step (a resumed run given fewer steps) the rate stays 0, never negative.
  assert.equal(learningRateAt(s, 1, 13, 12), 0);
  // Warm-up as long as the run: no 0/0 at the last step.
  assert.equal(learningRateAt({ kind: "warmup_linear", warmupSteps: 4 }, 1, 4, 4), 0);
  for (let i = 5; i < 13; i++) assert.ok(lrs[i]! < lrs[i - 1]!, "strictly decreasing after warmup");
});

Deno.test("learningRateAt() warmup_rsqrt is continuous and decays as 1/sqrt(t)", () => {
  const s = { kind: "warmup_rsqrt", warmupSteps: 4 } as const;
  assert.equal(learningRateAt(s, 1, 0, 100), 0.25);
  assert.equal(learningRateAt(s, 1, 3, 100), 1);
  assert.equal(learningRateAt(s, 1, 15, 100), 0.5); // sqrt(4 / 16)
  const noWarm = { kind: "warmup_rsqrt", warmupSteps: 0 } as const;
  assert.equal(learningRateAt(noWarm, 2, 0, 100), 2);
  assert.equal(learningRateAt(noWarm, 2, 3, 100), 1);
});

Deno.test("learningRateAt() rejects bad input", () => {
  assert.throws(() => learningRateAt({ kind: "constant", warmupSteps: 0 }, 1, -1, 10), /step/);
  for (const step of [1.5, NaN]) {
    assert.throws(
      () => learningRateAt({ kind: "constant", warmupSteps: 0 }, 1, step, 10),
      new RegExp(`step must be a non-negative integer, got ${step}`),
    );
  }
  assert.throws(
    () => learningRateAt({ kind: "cosine", warmupSteps: 0 } as never, 1, 0, 10),
    /kind/,
  );
});
