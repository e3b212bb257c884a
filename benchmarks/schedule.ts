/**
 * Learning-rate schedules of {@link ScheduleSpec}: constant, linear warmup then linear decay
 * towards 0 (Hugging Face `get_linear_schedule_with_warmup`, exactly: with a warmup the first
 * rate is 0; the last is `peak / (total - warmup)`), and linear warmup then inverse-square-root
 * decay, the shape of fairseq's `inverse_sqrt` one update ahead: update k here has the rate
 * fairseq gives update k + 1 (fairseq's first update has its `warmup_init_lr`, 0 by default;
 * here `peak / warmup`, never 0). Neither is T5 pre-training's `rsqrt_decay`,
 * 1/sqrt(max(step, warmup)), which holds the peak rate through the warmup instead of ramping up
 * to it; after the warmup it and `warmup_rsqrt` (scaled to the peak) differ at update k
 * (0-based, T5's step k) by a factor sqrt(k / (k + 1)), which tends to 1.
 *
 * @module
 */
import type { ScheduleSpec } from "./spec.ts";

/**
 * The learning rate of one update.
 *
 * `step` counts updates already applied (0 for the first update), as Hugging Face's
 * `LambdaLR` does, so with warmup the first update has rate 0 under `warmup_linear`:
 * - `constant`: `peak`
 * - `warmup_linear`: `peak · step / warmup` while `step < warmup`, then
 *   `peak · max(0, (total - step) / (total - warmup))`
 * - `warmup_rsqrt`: `peak · (step + 1) / warmup` while `step + 1 < warmup`, then
 *   `peak · sqrt(max(warmup, 1) / (step + 1))` (continuous at the end of warmup; never 0)
 *
 * @param schedule the schedule
 * @param peak the peak learning rate
 * @param step updates applied before this one (0-based)
 * @param totalSteps updates in the whole run
 * @returns the learning rate, >= 0
 * @throws Error for a negative or non-integer step or an unknown kind
 * @example
 * ```ts
 * import { learningRateAt } from "./schedule.ts";
 * const s = { kind: "warmup_linear", warmupSteps: 10 } as const;
 * console.assert(learningRateAt(s, 1, 5, 110) === 0.5);
 * ```
 */
export function learningRateAt(
  schedule: ScheduleSpec,
  peak: number,
  step: number,
  totalSteps: number,
): number {
  if (!Number.isInteger(step) || step < 0) {
    throw new Error(`benchmarks/schedule.ts: step must be a non-negative integer, got ${step}`);
  }
  const w = schedule.warmupSteps;
  switch (schedule.kind) {
    case "constant":
      return peak;
    case "warmup_linear":
      if (step < w) return (peak * step) / w;
      return peak * Math.max(0, (totalSteps - step) / Math.max(1, totalSteps - w));
    case "warmup_rsqrt": {
      const t = step + 1;
      if (t < w) return (peak * t) / w;
      return peak * Math.sqrt(Math.max(w, 1) / t);
    }
    default:
      throw new Error(
        `benchmarks/schedule.ts: field "kind" must be constant, warmup_linear or warmup_rsqrt, got ${
          JSON.stringify((schedule as { kind?: unknown }).kind)
        }`,
      );
  }
}
