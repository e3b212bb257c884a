/**
 * Tuning a workload's matmuls on the current webgpu device: list the `BatchMatMul` shapes one
 * step runs ({@link recordShapes}), time the candidates of each ({@link tuneShapes}), and make a
 * table ({@link newTuningTable}). Used by `deno task tune` (`benchmarks/tune.ts`) and by the `tune`
 * section of `benchmarks/gpu_check.ts`; separate from `tuning.ts` because it needs the installed
 * kernel's rule of thumb (`mod.ts`).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { resetWebgpuKernelStats, ruleOfThumb, webgpuKernelStats } from "./mod.ts";
import {
  type AdapterId,
  type MatMulChoice,
  type MatMulTuningTable,
  parseShapeKey,
  tuneShape,
  TUNING_FORMAT,
  TUNING_VERSION,
  tuningCandidates,
  type TuningEntry,
} from "./tuning.ts";

/**
 * The candidates a quick tuning run times (`deno task tune --quick`, `gpu_check --quick`): CI on
 * the software adapter checks the mechanics, not the speed, so three choices stand for all.
 */
export const QUICK_TUNE_CANDIDATES: readonly string[] = ["stock", "t32", "t64"];

/**
 * Runs `step` once with the kernel counters reset and returns how many times it ran each
 * `BatchMatMul` shape (`shapeKey`). The custom kernels must be installed (`registerWebgpuKernels`).
 *
 * @param step one gradient pass (or anything that runs the products), awaited to completion
 * @returns calls per shape key
 */
export async function recordShapes(step: () => Promise<void>): Promise<Record<string, number>> {
  resetWebgpuKernelStats();
  await step();
  const calls: Record<string, number> = {};
  for (const [key, byKernel] of Object.entries(webgpuKernelStats().shapes)) {
    calls[key] = Object.values(byKernel).reduce((x, y) => x + y, 0);
  }
  return calls;
}

/**
 * {@link recordShapes} of one gradient pass (`tf.variableGrads(loss, vars)`, awaited, its tensors
 * freed): the products a training step's forward and backward run.
 *
 * @param loss the scalar loss
 * @param vars the variables it is differentiated by
 * @returns calls per shape key
 */
export function recordGradientShapes(
  loss: () => tf.Scalar,
  vars: tf.Variable[],
): Promise<Record<string, number>> {
  return recordShapes(async () => {
    const g = tf.variableGrads(loss, vars);
    await g.value.data();
    tf.dispose([g.value, ...Object.values(g.grads)]);
  });
}

/**
 * {@link recordGradientShapes} of a workload, which is then disposed, also when the gradient pass
 * throws (the error is rethrown): the shapes to tune are all `deno task tune` and the `tune` section
 * of `benchmarks/gpu_check.ts` need of a workload before timing them.
 *
 * @param work the loss, its variables, and how to free them (the workload's tensors and model)
 * @returns calls per shape key
 */
export async function recordGradientShapesAndDispose(work: {
  readonly loss: () => tf.Scalar;
  readonly vars: tf.Variable[];
  readonly dispose: () => void;
}): Promise<Record<string, number>> {
  try {
    return await recordGradientShapes(work.loss, work.vars);
  } finally {
    work.dispose();
  }
}

/** Options of {@link tuneShapes}. */
export interface TuneShapesOptions {
  /** Products per timed round. */
  readonly reps: number;
  /** Timed rounds per candidate (median). */
  readonly rounds: number;
  /** Only these choices (and the rule of thumb's); default `tuningCandidates` per shape. */
  readonly candidates?: readonly MatMulChoice[];
  /** Entries already measured in this run (not timed again). */
  readonly done?: Readonly<Record<string, TuningEntry>>;
  /** Progress lines. */
  readonly log?: (line: string) => void;
}

/** What {@link tuneShapes} measured. */
export interface TuneShapesResult {
  /** Per shape key, with `calls`. */
  readonly entries: Record<string, TuningEntry>;
  /** Σ calls × ms of the rule of thumb's choice (each product timed alone). */
  readonly ruleMs: number;
  /** Σ calls × ms of the tuned choice. */
  readonly tunedMs: number;
  /**
   * Shapes where the rule of thumb's own choice gave a wrong product on this device (not in
   * `ruleMs`): the kernel is broken there, whatever the table says for other devices.
   */
  readonly ruleRejected: string[];
}

/**
 * Times the candidates of each shape (largest products first) with `tuneShape` on the current
 * webgpu backend, against the installed kernel's rule of thumb.
 *
 * @param calls calls per shape key ({@link recordShapes})
 * @param opts repetitions, candidates, progress
 * @returns the entries and the step's matmul ms by rule and tuned
 */
export async function tuneShapes(
  calls: Readonly<Record<string, number>>,
  opts: TuneShapesOptions,
): Promise<TuneShapesResult> {
  const limits = (tf.backend() as unknown as { device: GPUDevice }).device.limits;
  const size = (key: string) => {
    const s = parseShapeKey(key, "tuneShapes");
    return Math.max(s.batchA, s.batchB) * s.m * s.n * s.k;
  };
  const keys = Object.keys(calls).sort((x, y) => size(y) - size(x));
  const entries: Record<string, TuningEntry> = {};
  let ruleMs = 0, tunedMs = 0;
  const ruleRejected: string[] = [];
  for (const key of keys) {
    const shape = parseShapeKey(key, "tuneShapes");
    const n = calls[key]!;
    const entry = opts.done?.[key] ?? await tuneShape(shape, {
      reps: opts.reps,
      rounds: opts.rounds,
      heuristic: ruleOfThumb(shape, undefined, limits.maxComputeWorkgroupsPerDimension),
      limits,
      candidates: opts.candidates ?? tuningCandidates(shape, limits),
    });
    entries[key] = { ...entry, calls: n };
    const rule = entry.ms[entry.heuristic];
    if (rule === undefined) ruleRejected.push(key);
    else ruleMs += n * rule;
    tunedMs += n * entry.ms[entry.choice]!;
    opts.log?.(
      `${key} ×${n}: ${entry.heuristic} ${
        rule ?? "rejected (wrong product)"
      } ms -> ${entry.choice} ${entry.ms[entry.choice]} ms${
        entry.rejected ? `; rejected: ${Object.keys(entry.rejected).join(", ")}` : ""
      }`,
    );
  }
  const r3 = (x: number) => Math.round(x * 1e3) / 1e3;
  return { entries, ruleMs: r3(ruleMs), tunedMs: r3(tunedMs), ruleRejected };
}

/**
 * A new table for an adapter.
 *
 * @param adapter the adapter measured
 * @param entries the entries
 * @param provenance how they were measured (command, workloads, reps, versions, commit)
 */
export function newTuningTable(
  adapter: AdapterId,
  entries: Record<string, TuningEntry>,
  provenance: Record<string, string | number>,
): MatMulTuningTable {
  return {
    format: TUNING_FORMAT,
    version: TUNING_VERSION,
    adapter,
    created: new Date().toISOString(),
    provenance: { ...provenance, tfjs: tf.version.tfjs, deno: Deno.version.deno },
    entries,
  };
}
