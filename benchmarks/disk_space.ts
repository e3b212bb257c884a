/**
 * Disk space before a grid trains: what its runs write at once at most into the results folder,
 * from the memory preflight's estimates, against what the folder's file system has free.
 *
 * A run writes into `<out>/<run file stem>/`: its resumable checkpoints while it trains
 * (`train.checkpointEvery` > 0; `benchmarks/checkpointing.ts`: every trained variable and the
 * optimizer's slots, float32; the newest two are kept and a third is assembled while one is
 * saved, then pruned), removed once its result is written, and with `train.saveWeights` its
 * final weights, which stay. A grid runs one run at a time per process, so what it needs at once
 * is the largest run's checkpoints plus every kept weights folder. The estimate counts tensors'
 * bytes, not the small JSON beside them; a warning, never a refusal: a disk that fills fails the
 * run writing it (the error names the folder) and nothing written before is lost.
 *
 * @module
 */
import { statfsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import type { MemoryEstimate } from "./memory.ts";
import type { RunSpec } from "./spec.ts";
import { fmtGb } from "./device_memory.ts";

/** Checkpoints a training run holds at once at most: the newest two kept and one being saved. */
export const CHECKPOINTS_AT_ONCE = 3;

/** What a grid's runs write into the results folder at once at most (tensor bytes). */
export interface DiskNeed {
  /** The total: {@link checkpointBytes} plus {@link keptWeightsBytes}. */
  readonly bytes: number;
  /** The largest run's checkpoints at once ({@link CHECKPOINTS_AT_ONCE}); 0 where none writes. */
  readonly checkpointBytes: number;
  /** The run of {@link checkpointBytes}. */
  readonly largest: RunSpec | undefined;
  /** Every `train.saveWeights` run's final weights ({@link keptWeightsOf}). */
  readonly keptWeightsBytes: number;
  /** How many runs `keptWeightsBytes` counts. */
  readonly keptWeightsRuns: number;
  /** Runs that write to disk but have no estimate (a model whose size is unknown): not counted. */
  readonly unknown: number;
}

/**
 * The bytes of a run's kept weights (`run_one.ts` `saveFinalWeights`): the method's variables, and
 * where any backbone weight was trained the backbone's Hugging Face state dict (float32; its
 * tokenizer file beside it is not counted).
 *
 * @param e the run's memory estimate
 * @returns bytes
 */
export function keptWeightsOf(e: MemoryEstimate): number {
  const { method, trainedBackbone, backboneStateDict } = e.params;
  return 4 * (method + (trainedBackbone > 0 ? backboneStateDict : 0));
}

/**
 * The disk space `specs` need at once in their results folder, from each run's memory estimate
 * (`params.trained` float32 weights and `optimizerState` bytes per checkpoint; with
 * `train.saveWeights`, {@link keptWeightsOf}).
 *
 * @param specs the runs still to train
 * @param estimateOf a run's memory estimate (undefined: unknown, counted in `unknown`)
 * @returns the need
 */
export function estimateDiskNeed(
  specs: readonly RunSpec[],
  estimateOf: (spec: RunSpec) => MemoryEstimate | undefined,
): DiskNeed {
  let checkpointBytes = 0;
  let largest: RunSpec | undefined;
  let keptWeightsBytes = 0;
  let keptWeightsRuns = 0;
  let unknown = 0;
  for (const spec of specs) {
    const checkpoints = spec.train.checkpointEvery > 0;
    const kept = spec.train.saveWeights === true;
    if (!checkpoints && !kept) continue;
    const e = estimateOf(spec);
    if (e === undefined) {
      unknown++;
      continue;
    }
    if (checkpoints) {
      const b = CHECKPOINTS_AT_ONCE * (4 * e.params.trained + e.optimizerState);
      if (b > checkpointBytes) {
        checkpointBytes = b;
        largest = spec;
      }
    }
    if (kept) {
      keptWeightsBytes += keptWeightsOf(e);
      keptWeightsRuns++;
    }
  }
  return {
    bytes: checkpointBytes + keptWeightsBytes,
    checkpointBytes,
    largest,
    keptWeightsBytes,
    keptWeightsRuns,
    unknown,
  };
}

/**
 * The bytes free to an unprivileged user on the file system of `path`, or of its nearest existing
 * parent folder (a results folder not made yet); undefined where that cannot be read.
 *
 * @param path a folder
 * @returns free bytes, or undefined
 */
export function freeDiskBytes(path: string): number | undefined {
  let p = resolve(path);
  for (;;) {
    try {
      const s = statfsSync(p);
      return Number(s.bavail) * Number(s.bsize);
    } catch (e) {
      const parent = dirname(p);
      // node:fs errors carry Node's codes, not Deno's error classes.
      const missing = (e as { code?: unknown }).code === "ENOENT";
      if (!missing || parent === p) return undefined;
      p = parent;
    }
  }
}

/**
 * A line on what the runs write at once, for the dry run: the need, what it is made of, and the
 * free space where known; undefined when no run writes checkpoints or kept weights.
 *
 * @param need {@link estimateDiskNeed}'s
 * @param folder the results folder (as the user named it)
 * @param free {@link freeDiskBytes} of it
 * @param name a run's short name (id, model, method, benchmark, seed)
 * @returns the line, without a `note: ` prefix
 */
export function diskNeedLine(
  need: DiskNeed,
  folder: string,
  free: number | undefined,
  name: (spec: RunSpec) => string,
): string | undefined {
  if (need.bytes === 0 && need.unknown === 0) return undefined;
  const parts = [
    ...(need.largest === undefined ? [] : [
      `${fmtGb(need.checkpointBytes)} of checkpoints (${CHECKPOINTS_AT_ONCE} at once while one ` +
      `is saved) of the largest run, ${name(need.largest)}`,
    ]),
    ...(need.keptWeightsRuns === 0 ? [] : [
      `${fmtGb(need.keptWeightsBytes)} of final weights kept by ${need.keptWeightsRuns} ` +
      `run(s) (train.saveWeights)`,
    ]),
    ...(need.unknown === 0 ? [] : [`${need.unknown} run(s) of unknown size not counted`]),
  ];
  return `disk: the runs write up to about ${fmtGb(need.bytes)} at once in ${folder} (${
    parts.join("; ")
  }); ${free === undefined ? "its free space is unknown" : `${fmtGb(free)} free there`}`;
}

/**
 * The warning when the free space is less than the need; undefined when it is not, or unknown.
 *
 * @param need {@link estimateDiskNeed}'s
 * @param folder the results folder (as the user named it)
 * @param free {@link freeDiskBytes} of it
 * @param name a run's short name
 * @returns the warning, without the `warning: ` prefix
 */
export function diskSpaceWarning(
  need: DiskNeed,
  folder: string,
  free: number | undefined,
  name: (spec: RunSpec) => string,
): string | undefined {
  if (free === undefined || need.bytes <= free) return undefined;
  return `${diskNeedLine(need, folder, free, name)}: a run that fills the disk fails there ` +
    `(what was written before is kept); free space, or choose another --out`;
}
