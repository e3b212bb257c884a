import { deepEqual, equal, ok, throws } from "node:assert/strict";
import { Rng } from "../benchmarks/rng.ts";
import {
  noiseCounts,
  randomSpansNoiseMask,
  reassemble,
  spanCorrupt,
  spansToSentinels,
  T5_SPAN_CORRUPTION,
} from "./span_corruption.ts";

Deno.test("noiseCounts() rounds in float32 half to even as T5 does", () => {
  // 10 · 0.15 and 30 · 0.15 round to exactly 1.5 and 4.5 in float32: half to even gives 2 and 4
  // (half up would give 5).
  deepEqual(noiseCounts(10), { noiseTokens: 2, noiseSpans: 1 });
  deepEqual(noiseCounts(30), { noiseTokens: 4, noiseSpans: 1 });
  deepEqual(noiseCounts(100), { noiseTokens: 15, noiseSpans: 5 });
  deepEqual(noiseCounts(1), { noiseTokens: 1, noiseSpans: 1 });
  // 512 · 0.15 = 76.8 → 77 noise tokens; 77 / 3 = 25.67 → 26 spans.
  deepEqual(noiseCounts(512), { noiseTokens: 77, noiseSpans: 26 });
});

Deno.test("randomSpansNoiseMask() has exactly T5's token and span counts on every draw", () => {
  const rng = new Rng(7);
  let spansSeen = 0;
  let noiseSeen = 0;
  for (let draw = 0; draw < 2000; draw++) {
    const length = 5 + (draw % 300);
    const mask = randomSpansNoiseMask(length, () => rng.next());
    equal(mask.length, length);
    const { noiseTokens, noiseSpans } = noiseCounts(length);
    const noise = mask.filter((m) => m).length;
    const spans = mask.filter((m, i) => m && (i === 0 || !mask[i - 1])).length;
    equal(noise, noiseTokens, `noise tokens at length ${length}`);
    equal(spans, noiseSpans, `noise spans at length ${length}`);
    equal(mask[0], false, "the first token is never noise");
    spansSeen += spans;
    noiseSeen += noise;
  }
  // Mean span length over all draws is noise tokens / spans; T5's rounding keeps it near 3.
  const mean = noiseSeen / spansSeen;
  ok(Math.abs(mean - T5_SPAN_CORRUPTION.meanNoiseSpanLength) < 0.1, `mean span length ${mean}`);
});

Deno.test("randomSpansNoiseMask() draws each split of the noise tokens into spans equally often", () => {
  // 3 noise tokens in 2 spans (length 20, density 0.15, mean span 1.5): spans of 1 then 2, or 2
  // then 1, each with probability 1/2 under T5's uniform shuffle. A biased shuffle (one that
  // never leaves an element in place) gives one split only. Binomial sd over 2000 draws ≈ 22:
  // the ±150 band is about 7 sd.
  const opts = { noiseDensity: 0.15, meanNoiseSpanLength: 1.5 };
  deepEqual(noiseCounts(20, opts), { noiseTokens: 3, noiseSpans: 2 });
  const rng = new Rng(5);
  const draws = 2000;
  let firstIsOne = 0;
  for (let d = 0; d < draws; d++) {
    const mask = randomSpansNoiseMask(20, () => rng.next(), opts);
    const start = mask.indexOf(true);
    if (!mask[start + 1]) firstIsOne++;
  }
  ok(Math.abs(firstIsOne - draws / 2) < 150, `first noise span of length 1 in ${firstIsOne}`);
});

Deno.test("randomSpansNoiseMask() spreads spans: positions away from the ends are noise at about the density", () => {
  // Over many draws at a fixed length, each non-initial position's noise rate stays near
  // 15/100 (binomial sd over 4000 draws ≈ 0.0056; 6 sd band = ±0.034, plus edge effects: the
  // worst position of 10–79 measured 0.032 off at this seed, 0.031–0.038 at seeds 1–5, so 0.06
  // is 1.6× the worst seen, and far below a mask that ignores the density).
  const rng = new Rng(11);
  const counts = new Array<number>(100).fill(0);
  const draws = 4000;
  for (let d = 0; d < draws; d++) {
    randomSpansNoiseMask(100, () => rng.next()).forEach((m, i) => m && counts[i]!++);
  }
  const rates = counts.map((c) => c / draws);
  for (let i = 10; i < 80; i++) {
    ok(Math.abs(rates[i]! - 0.15) < 0.06, `position ${i}: ${rates[i]}`);
  }
  // T5's interleaving ends with a noise span, so the last token is always corrupted.
  equal(rates[99], 1);
});

Deno.test("spanCorrupt() inputs and targets reassemble into the original ids", () => {
  const rng = new Rng(3);
  const vocab = 1000;
  const sentinel = (i: number) => vocab - 1 - i;
  const isSentinel = (id: number) => id >= vocab - 100;
  for (let n = 1; n < 200; n += 7) {
    const ids = Array.from({ length: n }, (_, i) => 3 + ((i * 37) % 800));
    const { inputs, targets } = spanCorrupt(ids, () => rng.next(), sentinel);
    deepEqual(reassemble(inputs, targets, isSentinel), ids);
    if (n >= 2) {
      equal(targets[0], sentinel(0), "targets start with <extra_id_0>");
      ok(inputs.includes(sentinel(0)), "inputs contain <extra_id_0>");
    }
  }
});

Deno.test("spanCorrupt() is reproducible for a seed", () => {
  const ids = Array.from({ length: 64 }, (_, i) => i + 3);
  const a = new Rng(5);
  const b = new Rng(5);
  deepEqual(
    spanCorrupt(ids, () => a.next(), (i) => 999 - i),
    spanCorrupt(ids, () => b.next(), (i) => 999 - i),
  );
});

Deno.test("span corruption options out of range throw naming the option", () => {
  const rnd = () => 0.5;
  throws(
    () => noiseCounts(10, { noiseDensity: 1.2, meanNoiseSpanLength: 3 }),
    /noiseDensity must be in \[0, 1\), got 1\.2/,
  );
  throws(
    () => noiseCounts(10, { noiseDensity: -0.1, meanNoiseSpanLength: 3 }),
    /noiseDensity must be in \[0, 1\), got -0\.1/,
  );
  throws(
    () => noiseCounts(10, { noiseDensity: NaN, meanNoiseSpanLength: 3 }),
    /noiseDensity must be in \[0, 1\), got NaN/,
  );
  throws(
    () => noiseCounts(10, { noiseDensity: 0.15, meanNoiseSpanLength: 0.5 }),
    /meanNoiseSpanLength must be a finite number >= 1, got 0\.5/,
  );
  // Density 0.6 with spans of 1 at length 10: 6 spans need 6 separating non-noise tokens, 4 exist.
  throws(
    () => randomSpansNoiseMask(10, rnd, { noiseDensity: 0.6, meanNoiseSpanLength: 1 }),
    /6 noise spans need at least 6 non-noise tokens, length 10 leaves 4 \(noiseDensity 0\.6, meanNoiseSpanLength 1\)/,
  );
});

Deno.test("noise density 0 corrupts nothing (T5 returns an all-false mask)", () => {
  const opts = { noiseDensity: 0, meanNoiseSpanLength: 3 };
  deepEqual(noiseCounts(20, opts), { noiseTokens: 0, noiseSpans: 0 });
  deepEqual(randomSpansNoiseMask(20, () => 0.5, opts), new Array<boolean>(20).fill(false));
  const ids = Array.from({ length: 8 }, (_, i) => i + 1);
  // As T5's noise_span_to_unique_sentinel: the inputs are untouched and the targets, whose mask
  // is all noise, collapse into one sentinel.
  deepEqual(spanCorrupt(ids, () => 0.5, (i) => 100 + i, opts), { inputs: ids, targets: [100] });
});

Deno.test("spanCorrupt(): sentinels count up in order in both halves, inputs alternate kept/sentinel as T5", () => {
  // T5's noise_span_to_unique_sentinel on a known mask: inputs keep the non-noise spans and put
  // <extra_id_0>, <extra_id_1>, … for the noise spans in order; the targets do the reverse.
  const ids = [11, 12, 13, 14, 15, 16, 17, 18, 19];
  const mask = [false, false, true, true, false, true, false, false, true];
  const sentinel = (i: number) => 999 - i;
  deepEqual(spansToSentinels(ids, mask, sentinel), [11, 12, 999, 15, 998, 17, 18, 997]);
  deepEqual(
    spansToSentinels(ids, mask.map((m) => !m), sentinel),
    [999, 13, 14, 998, 16, 997, 19],
  );
  // On random draws: inputs and targets hold sentinel(0), sentinel(1), … each once, in order,
  // the same number in both (the sequence ends with noise), and no two sentinels are adjacent.
  const rng = new Rng(9);
  for (let n = 2; n < 300; n += 11) {
    const seq = Array.from({ length: n }, (_, i) => 3 + i);
    const { inputs, targets } = spanCorrupt(seq, () => rng.next(), sentinel);
    const spans = noiseCounts(n).noiseSpans;
    const order = Array.from({ length: spans }, (_, i) => sentinel(i));
    deepEqual(inputs.filter((t) => t > 900), order, `inputs at length ${n}`);
    deepEqual(targets.filter((t) => t > 900), order, `targets at length ${n}`);
    equal(targets[0], sentinel(0));
    ok(inputs[0]! < 900, "inputs start with a kept token");
    ok(targets.at(-1)! < 900, "targets end with the last noise token");
    for (const half of [inputs, targets]) {
      ok(half.every((t, i) => i === 0 || !(t > 900 && half[i - 1]! > 900)), "adjacent sentinels");
    }
    equal(inputs.length, n - noiseCounts(n).noiseTokens + spans);
    equal(targets.length, noiseCounts(n).noiseTokens + spans);
  }
});

Deno.test("reassemble() refuses an input sentinel that the targets do not fill, naming it", () => {
  const isSentinel = (id: number) => id >= 990;
  deepEqual(reassemble([1, 999, 4], [999, 2, 3], isSentinel), [1, 2, 3, 4]);
  throws(
    () => reassemble([1, 999, 4, 998], [999, 2, 3], isSentinel),
    /reassemble: sentinel 998 of the inputs is missing in the targets/,
  );
});
