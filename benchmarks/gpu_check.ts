/**
 * One prepared GPU check for a session that has a GPU machine for a few minutes (see
 * `benchmarks/gpu_check.md`). Sections, in order of importance, each written to the JSON report as
 * soon as it finishes (so a timeout keeps what was measured):
 *
 * 1. `adapter`: what `navigator.gpu.requestAdapter()` returns.
 * 2. `correctness`: the fused kernels' self-check, and the tiled matmul of `model/webgpu` against
 *    the stock tfjs webgpu kernel for
 *    every tile and transpose pair on ragged shapes (relative L2 error; pass if ≤ 1e-5).
 * 3. `memory`: GPU memory (`nvidia-smi`'s `memory.used`, and tfjs-webgpu's count of its buffers)
 *    of T5 1.1 Base training steps against `benchmarks/memory.ts`'s estimate, which drives the
 *    bench's memory preflight: the `t5` step with tfjs's and with model/backprop.ts's backward
 *    pass, Base at 512 / 84 tokens at the micro-batch the preflight would choose for
 *    paper-base on this GPU (at most 32), and the Vanilla Adapter's step on paper-base's 8 GLUE
 *    tasks through the trainer's path (`benchmarks/training_step.ts`, `lossAndGrads`). Without
 *    nvidia-smi its figures are `null` with the reason.
 * 4. `tune`: the matmul tuning of `deno task tune` for a T5 1.1 Base step (one layer each side:
 *    every layer runs the same shapes): per shape, stock vs every tile and K split; the table is
 *    written beside the report (`<report>-tuning.json`, e.g. `$OUT/gpu_check-tuning.json`), to be
 *    committed as `results/tuning/<adapter>.json`.
 * 5. `t5`: one T5 1.1 Base training step (batch 32, 128 input / 16 target tokens,
 *    `model/t5.ts`) with the backward pass `deno task bench` runs (model/backprop.ts's, or tfjs's
 *    own with `HYPERPROMPT_STOCK_BACKPROP=1`, as `selectBackend` chooses; recorded as `backprop`):
 *    `tiled-tuned` (with the table of `tune`), `tiled`, `tiled-stock-backprop` (the default kernels
 *    with the other backward pass; `tiled-low-memory-backprop` when bench's is tfjs's own),
 *    `tiled-ungrouped` (one AdamW dispatch per parameter instead of a group per dispatch),
 *    `tiled-submit15` (tfjs's 15 dispatches per command buffer instead of the kernels' 64),
 *    `tiled-nosplit`, `tiled-matmul-only`, `stock`, with the same profile as `encoder`.
 * 6. `matmul`: ms and TFLOP/s of 4096³ and the T5-Base backward shapes, stock vs tiled (auto and
 *    each tile forced).
 * 7. `encoder`: training step (forward + gradients + AdamW) of 4 T5-Base-shaped encoder layers,
 *    batch 32 × 128, built from `model/layers.ts`: wall time, forward-only and gradients-only time,
 *    and one `tf.profile`d step (kernel time vs wall time, top kernels), for stock, tiled
 *    (transposed only, the default) and tiled (all float32 matmuls).
 *
 * Every section trains with the backward pass `deno task bench` runs (the report's `backprop`:
 * `mode` and `chosenBy`), except the memory rows and the `t5` variant that name another.
 *
 * Usage: `deno run -A benchmarks/gpu_check.ts [--quick] [--sections=a,b] [--budget-s=N]
 * [--out=file.json] [--git=SHA]` ({@link GPU_CHECK_USAGE}; `--git` names the commit where the
 * folder has no `.git`, as on the GPU machine). `--budget-s` is checked before each section and
 * before each variant (`t5`, `encoder`) or row (`matmul`, `memory`) of one, whose partial results are saved
 * as they come (`partial: true`) and kept if the section throws. `--quick` uses tiny shapes (for checking the script
 * on the software adapter). The report goes to `$OUT/gpu_check.json` when `OUT` is set, else
 * `results/perf/gpu_check-<time>.json`. Exit codes ({@link cli}): 0 the report was written (a
 * section's error is recorded in it) or `--help`, 1 a failure outside the sections (the webgpu
 * backend, writing the report), 2 bad arguments (nothing run).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { requestTfjsAdapter } from "../model/webgpu/adapter.ts";
import "@tensorflow/tfjs-backend-webgpu";
import { raiseWebgpuLimits } from "../model/webgpu/device_limits.ts";
import {
  adamwGroupSize,
  MATMUL_TILE_CANDIDATES,
  MATMUL_TILES,
  type MatMulTileName,
  registerWebgpuKernels,
  resetWebgpuKernelStats,
  selfCheckWebgpuKernels,
  tileByName,
  tileWorkgroupBytes,
  unregisterWebgpuKernels,
  type WebgpuKernelOptions,
  webgpuKernelStats,
} from "../model/webgpu/mod.ts";
import { attention, feedForward, linear, rmsNorm } from "../model/layers.ts";
import { HEAD_CONTEXT, HEAD_SCORES, headContext, headScores } from "../model/heads.ts";
import { crossEntropyLoss, disposeT5, forward, initT5, shiftRight } from "../model/t5.ts";
import { t5Flops } from "../model/accounting.ts";
import { PRESETS } from "../model/config.ts";
import { checkOutputFile, writeFileAtomic } from "../model/fs.ts";
import {
  type CliOptions,
  commaList,
  decimalNumber,
  parseFlags,
  runCli,
  UsageError,
} from "../model/usage.ts";
import { quietWaylandProbe } from "../model/webgpu/wsi_env.ts";
import { hostOnlySteps } from "../model/webgpu/counters.ts";
import {
  newTuningTable,
  QUICK_TUNE_CANDIDATES,
  recordGradientShapesAndDispose,
  tuneShapes,
} from "../model/webgpu/autotune.ts";
import {
  adapterId,
  adapterSlug,
  type MatMulTuningTable,
  median,
  parseChoice,
  serializeTuningTable,
} from "../model/webgpu/tuning.ts";
import { createOptimizer, type Optimizer, withTrainingRestored } from "./optim.ts";
import { globalGradNorm, lossAndGrads } from "./trainer.ts";
import { methodTrainingStep } from "./training_step.ts";
import { DEFAULT_TRAIN, type TrainSpec } from "./spec.ts";
import { disposeBatch } from "./batching.ts";
import {
  type CommandRunner,
  denoCommandRunner,
  DEVICE_MARGIN,
  type DeviceMemoryUsed,
  deviceMemoryUsed,
  fmtGb,
  probeDeviceMemory,
} from "./device_memory.ts";
import {
  type BackpropMode,
  estimateTrainingMemory,
  largestFittingMicroBatch,
  type MemoryInput,
} from "./memory.ts";
import {
  BACKPROP_TFJS_VERSION,
  installLowMemoryBackprop,
  lowMemoryBackpropInstalled,
  uninstallLowMemoryBackprop,
} from "../model/backprop.ts";
import { backpropFromEnv, STOCK_BACKPROP_ENV } from "../model/backend.ts";
import { gitState } from "./provenance.ts";
import { repoPath } from "../model/shared_dir.ts";
import { fileURLToPath } from "node:url";
import { timeQueued } from "./queued_timing.ts";

/** A kernel configuration compared by the check. */
export interface Variant {
  readonly name: string;
  /** undefined = stock tfjs kernels */
  readonly kernels?: WebgpuKernelOptions;
  /** The backward pass; undefined = the run's ({@link runBackprop}, what `deno task bench` runs). */
  readonly backprop?: BackpropMode;
}

const STOCK: Variant = { name: "stock" };
/**
 * The default: tiled matMul for transposed operands, the fused kernels, the uniform arena and the
 * bind group cache.
 */
const TILED: Variant = { name: "tiled", kernels: {} };
/** The tiled matMul alone (no fused kernels, no uniform arena or bind group cache). */
const MATMUL_ONLY: Variant = {
  name: "tiled-matmul-only",
  kernels: { fused: false, uniformArena: false, bindGroupCache: false },
};
const TILED_ALL: Variant = { name: "tiled-all", kernels: { cover: "all" } };
/** The default without split-K (`chooseTile`'s smaller tiles for weight gradients instead). */
const TILED_NOSPLIT: Variant = { name: "tiled-nosplit", kernels: { splitK: "off" } };

/**
 * The default kernels with tfjs's 15 dispatches per command buffer instead of their 64
 * (`submitBatch`).
 */
const TILED_SUBMIT15: Variant = { name: "tiled-submit15", kernels: { submitBatch: 15 } };
/**
 * The default kernels with one optimizer dispatch per parameter instead of a group of
 * parameters per dispatch (`groupUpdates`).
 */
const TILED_UNGROUPED: Variant = { name: "tiled-ungrouped", kernels: { groupUpdates: false } };

function useVariant(v: Variant): void {
  unregisterWebgpuKernels();
  if (v.kernels !== undefined && !registerWebgpuKernels(v.kernels)) {
    throw new Error(`benchmarks/gpu_check.ts: the custom kernels of variant ${v.name} are off`);
  }
  resetWebgpuKernelStats();
}

/**
 * What a section gets besides `quick`: `partial` saves what it measured so far (a section that
 * throws, or a run the device tool stops, keeps it), and `overBudget` says, before each variant
 * or row, whether the run is past `--budget-s` (the reason, then the rest of the section is
 * written as skipped).
 */
export interface SectionContext {
  readonly partial: (out: Record<string, unknown>) => Promise<void>;
  readonly overBudget: () => string | undefined;
}

/** An error's message for the report (a non-Error thrown value as text). */
function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function round(x: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

function fill(shape: number[], seed: number): tf.Tensor {
  return tf.randomUniform(shape, -1, 1, "float32", seed);
}

// ---------------------------------------------------------------------------------------------
// Sections

async function adapterSection(): Promise<Record<string, unknown>> {
  const adapter = await requestTfjsAdapter();
  if (!adapter) throw new Error("benchmarks/gpu_check.ts: requestAdapter() returned null");
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  return {
    description: info.description,
    vendor: info.vendor,
    architecture: info.architecture,
    device: info.device,
    isFallbackAdapter: info.isFallbackAdapter ?? false,
    features: [...adapter.features].sort(),
    maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
    maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize,
    maxComputeInvocationsPerWorkgroup: adapter.limits.maxComputeInvocationsPerWorkgroup,
    // The grouped AdamW update (`groupUpdates`) of the device the backend opened, whose limits
    // raiseWebgpuLimits raised: what `tiled-ungrouped` is compared against.
    adamwVariablesPerDispatch: adamwGroupSize(
      (tf.backend() as unknown as { device: GPUDevice }).device.limits,
    ),
    env: {
      DENO_WEBGPU_BACKEND: Deno.env.get("DENO_WEBGPU_BACKEND") ?? null,
    },
  };
}

/**
 * The tiles to check and time: the defaults and the candidates (`MATMUL_TILE_CANDIDATES`) that
 * fit this device's workgroup memory.
 */
function tileNames(): MatMulTileName[] {
  const limit = (tf.backend() as unknown as { device: GPUDevice }).device.limits
    .maxComputeWorkgroupStorageSize;
  return [...MATMUL_TILES, ...MATMUL_TILE_CANDIDATES]
    .filter((t) => tileWorkgroupBytes(t) <= limit)
    .map((t) => t.name as MatMulTileName);
}

async function correctnessSection(quick: boolean): Promise<Record<string, unknown>> {
  const odd = quick ? [37, 29, 23] : [257, 129, 193];
  // vec4-load tiles need multiples of 4 (elsewhere they load scalars, which `odd` would test).
  const aligned = quick ? [36, 28, 20] : [260, 132, 196];
  const batch = quick ? 2 : 3;
  const rows: (CorrectnessRow & Record<string, unknown>)[] = [];
  // Every tile unsplit, then the default tiles with K split into 3 slices (`splitK`, which
  // `auto` uses for weight gradients): partial products and their sum.
  const runs: [MatMulTileName, number][] = [
    ...tileNames().map((t): [MatMulTileName, number] => [t, 1]),
    ...MATMUL_TILES.map((t): [MatMulTileName, number] => [t.name as MatMulTileName, 3]),
  ];
  for (const [tile, splitK] of runs) {
    const [m, k, n] = (tileByName(tile).vec4 ? aligned : odd) as [number, number, number];
    for (const tA of [false, true]) {
      for (const tB of [false, true]) {
        let rel = Infinity;
        let tiled = 0;
        let kernel = ""; // which tiled kernel ran (e.g. "t128/k3")
        let error: string | undefined;
        // Every tensor of the step, freed whatever throws (a shader this driver rejects, a read).
        const made: tf.Tensor[] = [];
        try {
          const a = fill([batch, ...(tA ? [k, m] : [m, k])], 1);
          made.push(a);
          const b = fill([tB ? [n, k] : [k, n]].flat(), 2); // broadcast B over A's batch
          made.push(b);
          useVariant(STOCK);
          const ref = tf.matMul(a, b, tA, tB);
          made.push(ref);
          useVariant({ name: tile, kernels: { tile, cover: "all", splitK } });
          const got = tf.matMul(a, b, tA, tB);
          made.push(got);
          const relT = tf.tidy(() => tf.norm(tf.sub(got, ref)).div(tf.norm(ref).add(1e-30)));
          made.push(relT);
          rel = (await relT.data())[0]!;
          const calls = webgpuKernelStats().tiled;
          tiled = Object.values(calls).reduce((x, y) => x + y, 0);
          kernel = Object.keys(calls).join();
          if (tiled === 0) {
            // tfjs's kernel ran both products: agreeing with itself says nothing.
            throw new Error(`the tiled kernel did not run (relative L2 ${rel} stock vs stock)`);
          }
        } catch (e) {
          error = errorText(e); // e.g. a shader this driver rejects
        } finally {
          tf.dispose(made);
        }
        rows.push({
          tile,
          splitK,
          kernel,
          transposeA: tA,
          transposeB: tB,
          mkn: [m, k, n],
          relL2: rel,
          tiledCalls: tiled,
          error,
        });
      }
    }
  }
  // The fused kernels (dropout mask, gated GELU, RMS norm) against their JavaScript references,
  // inside a WebGPU validation error scope (model/webgpu/mod.ts selfCheckWebgpuKernels).
  useVariant({ name: "tiled", kernels: {} });
  const fused = await selfCheckWebgpuKernels();
  useVariant(STOCK);
  const verdict = correctnessVerdict(
    rows,
    new Set<string>(MATMUL_TILES.map((t) => t.name)),
    fused.ok,
  );
  return {
    shape: { batch, odd, aligned },
    tolerance: CORRECTNESS_TOLERANCE,
    pass: verdict.pass,
    worst: verdict.worst,
    candidatesPass: verdict.candidatesPass,
    worstCandidate: verdict.worstCandidate,
    rows,
    fused,
  };
}

/** Largest relative L2 error of a tiled product against tfjs's kernel the correctness check passes. */
export const CORRECTNESS_TOLERANCE = 1e-5;

/** A row of the correctness section, as {@link correctnessVerdict} reads it. */
export interface CorrectnessRow {
  /** The tile that ran. */
  readonly tile: string;
  /** Relative L2 error against tfjs's kernel (Infinity or NaN where it was not measured). */
  readonly relL2: number;
  /** Why the row failed to run or to check (a shader rejected, the tiled kernel not run). */
  readonly error?: string | undefined;
}

/**
 * The correctness section's verdict: the worst error over the default tiles (`MATMUL_TILES`, what
 * `auto` runs) and over the other candidates, a row with an error or a NaN figure counting as
 * Infinity whatever its figure; `pass` when the default tiles' worst is at most
 * {@link CORRECTNESS_TOLERANCE} and the fused kernels pass their self-check, `candidatesPass`
 * when the candidates' is (whether one may be promoted).
 *
 * @param rows the section's rows
 * @param defaults the names of the default tiles
 * @param fusedOk whether the fused kernels passed their self-check
 * @returns the verdict and the two worst errors
 */
export function correctnessVerdict(
  rows: readonly CorrectnessRow[],
  defaults: ReadonlySet<string>,
  fusedOk: boolean,
): { pass: boolean; worst: number; candidatesPass: boolean; worstCandidate: number } {
  let worst = 0;
  let worstCandidate = 0;
  for (const row of rows) {
    const r = row.error !== undefined || Number.isNaN(row.relL2) ? Infinity : row.relL2;
    if (defaults.has(row.tile)) worst = Math.max(worst, r);
    else worstCandidate = Math.max(worstCandidate, r);
  }
  return {
    pass: worst <= CORRECTNESS_TOLERANCE && fusedOk,
    worst,
    candidatesPass: worstCandidate <= CORRECTNESS_TOLERANCE,
    worstCandidate,
  };
}

interface MatMulCase {
  readonly name: string;
  readonly a: number[];
  readonly b: number[];
  readonly tA: boolean;
  readonly tB: boolean;
}

function matmulCases(quick: boolean): MatMulCase[] {
  if (quick) {
    return [
      { name: "64^3", a: [64, 64], b: [64, 64], tA: false, tB: false },
      { name: "x·Wᵀ", a: [96, 32], b: [64, 32], tA: false, tB: true },
      { name: "dyᵀ·x", a: [96, 64], b: [96, 32], tA: true, tB: false },
      // Batched, as the full run's attention-score rows.
      { name: "scores", a: [6, 16, 8], b: [6, 16, 8], tA: false, tB: true },
    ];
  }
  const T = 4096, d = 768, ff = 3072, B = 32 * 12, L = 128, dk = 64;
  return [
    { name: "4096^3", a: [T, T], b: [T, T], tA: false, tB: false },
    { name: "ffn wo fwd: h[4096,3072]·Wo[768,3072]ᵀ", a: [T, ff], b: [d, ff], tA: false, tB: true },
    { name: "ffn wi fwd: x[4096,768]·Wi[3072,768]ᵀ", a: [T, d], b: [ff, d], tA: false, tB: true },
    { name: "ffn wo dx: dy[4096,768]·Wo[768,3072]", a: [T, d], b: [d, ff], tA: false, tB: false },
    { name: "ffn wo dW: dy[4096,768]ᵀ·h[4096,3072]", a: [T, d], b: [T, ff], tA: true, tB: false },
    { name: "attn q fwd: x[4096,768]·Wq[768,768]ᵀ", a: [T, d], b: [d, d], tA: false, tB: true },
    { name: "attn q dW: dy[4096,768]ᵀ·x[4096,768]", a: [T, d], b: [T, d], tA: true, tB: false },
    // T5 1.1 Base's gated feed-forward (d_ff 2048): `auto` splits K in this weight gradient.
    {
      name: "ffn wi dW (T5 1.1): dy[4096,2048]ᵀ·x[4096,768]",
      a: [T, 2048],
      b: [T, d],
      tA: true,
      tB: false,
    },
    {
      name: "scores: q[384,128,64]·k[384,128,64]ᵀ",
      a: [B, L, dk],
      b: [B, L, dk],
      tA: false,
      tB: true,
    },
    {
      name: "scores dq: ds[384,128,128]·k[384,128,64]",
      a: [B, L, L],
      b: [B, L, dk],
      tA: false,
      tB: false,
    },
    {
      name: "scores dk: ds[384,128,128]ᵀ·q[384,128,64]",
      a: [B, L, L],
      b: [B, L, dk],
      tA: true,
      tB: false,
    },
  ];
}

/**
 * Times `op` under the kernels installed now: wall ms per call over `reps` queued calls (after 2
 * warm-ups; only the last call is read back, the queue runs in order: `timeQueued`), `tf.time`
 * kernel ms of one more call, and the rates for `flop` per call.
 */
async function timeOp(op: () => tf.Tensor, reps: number, flop: number) {
  const ms = (await timeQueued(op, { reps, warm: 2 })).batchMs[0]!;
  const timed = await tf.time(() => op().dispose());
  const kernelMs = typeof timed.kernelMs === "number" ? timed.kernelMs : null;
  return { ...matmulRates(flop, ms, kernelMs), tiles: webgpuKernelStats().tiled };
}

/**
 * A matmul row's figures: wall ms per call and TFLOP/s (`flop` per call), and the same for the
 * kernel time `tf.time` gave (null where it gave none, or 0); ms to 3 decimals, TFLOP/s to 4.
 *
 * @param flop FLOPs per call (2 · batch · M · N · K)
 * @param ms wall ms per call
 * @param kernelMs kernel ms of one call, or null
 * @returns the row's rounded figures
 */
export function matmulRates(
  flop: number,
  ms: number,
  kernelMs: number | null,
): { ms: number; tflops: number; kernelMs: number | null; kernelTflops: number | null } {
  return {
    ms: round(ms),
    tflops: round(flop / ms / 1e9, 4),
    kernelMs: kernelMs === null ? null : round(kernelMs),
    kernelTflops: kernelMs ? round(flop / kernelMs / 1e9, 4) : null,
  };
}

/** Times one matMul case under one kernel variant ({@link timeOp}). */
function timeMatMul(
  v: Variant,
  a: tf.Tensor,
  b: tf.Tensor,
  c: MatMulCase,
  reps: number,
  flop: number,
): Promise<Record<string, unknown>> {
  useVariant(v);
  return timeOp(() => tf.matMul(a, b, c.tA, c.tB), reps, flop);
}

async function matmulSection(
  quick: boolean,
  ctx: SectionContext,
): Promise<Record<string, unknown>> {
  const reps = quick ? 2 : 10;
  const variants: Variant[] = [
    STOCK,
    TILED_ALL,
    { name: "tiled-all-nosplit", kernels: { cover: "all", splitK: "off" } },
    ...tileNames().map((tile) => ({
      name: `tiled-${tile}`,
      kernels: { tile, cover: "all" as const },
    })),
  ];
  const rows: Record<string, unknown>[] = [];
  for (const c of matmulCases(quick)) {
    const over = ctx.overBudget();
    if (over !== undefined) {
      rows.push({ name: c.name, skipped: over });
      continue;
    }
    const m = c.tA ? c.a[c.a.length - 1]! : c.a[c.a.length - 2]!;
    const k = c.tA ? c.a[c.a.length - 2]! : c.a[c.a.length - 1]!;
    const n = c.tB ? c.b[c.b.length - 2]! : c.b[c.b.length - 1]!;
    const batch = c.a.length === 3 ? c.a[0]! : 1;
    const flop = 2 * batch * m * n * k;
    const row: Record<string, unknown> = { name: c.name, flop };
    // The operands are freed whatever throws (the second one's allocation, a variant's restore).
    const operands: tf.Tensor[] = [];
    try {
      const a = fill(c.a, 3);
      operands.push(a);
      const b = fill(c.b, 4);
      operands.push(b);
      for (const v of variants) {
        try {
          row[v.name] = await timeMatMul(v, a, b, c, reps, flop);
        } catch (e) {
          row[v.name] = { error: errorText(e) }; // the others go on
        }
      }
    } finally {
      tf.dispose(operands);
    }
    rows.push(row);
    await ctx.partial({ reps, rows, partial: true });
  }
  const over = ctx.overBudget();
  if (over === undefined) rows.push(...(await headRows(quick, reps)));
  else rows.push({ name: "heads", skipped: over });
  useVariant(STOCK);
  return { reps, rows };
}

/**
 * The attention head products of `model/heads.ts` at T5-Base shape (batch 32, 12 heads, 128
 * tokens, d_kv 64; tiny in quick mode): `strided` is the strided tiled matmul that reads each
 * head in place, `composite` the same op with its kernel unregistered (reshape + transpose +
 * tiled matmul, what the model ran before the head products), both with the default kernels;
 * `strided-t64v4` the strided kernel with the vec4-load t64 tile.
 */
async function headRows(quick: boolean, reps: number): Promise<Record<string, unknown>[]> {
  const [B, H, L, dk] = quick ? [2, 3, 9, 8] : [32, 12, 128, 64];
  const w = H * dk;
  const flop = 2 * B * H * L * L * dk;
  // The operands are freed whatever throws (an allocation, a variant's restore).
  const operands: tf.Tensor[] = [];
  try {
    const q = fill([B, L, w], 5) as tf.Tensor3D;
    operands.push(q);
    const k = fill([B, L, w], 6) as tf.Tensor3D;
    operands.push(k);
    const p = fill([B, H, L, L], 7) as tf.Tensor4D;
    operands.push(p);
    const cases: [string, () => tf.Tensor][] = [
      [`heads scores: q[${B},${L},${w}]·kᵀ per head`, () => headScores(q, k, H)],
      [`heads context: p[${B},${H},${L},${L}]·v per head`, () => headContext(p, k, H)],
      [`heads context pᵀ (dK, dV)`, () => headContext(p, k, H, true)],
    ];
    const rows: Record<string, unknown>[] = [];
    for (const [name, op] of cases) {
      const row: Record<string, unknown> = { name, flop };
      for (const variant of ["composite", "strided", "strided-t64v4"] as const) {
        try {
          useVariant(
            variant === "strided-t64v4" ? { name: variant, kernels: { tile: "t64v4" } } : TILED,
          );
          if (variant === "composite") {
            for (const kn of [HEAD_SCORES, HEAD_CONTEXT]) tf.unregisterKernel(kn, "webgpu");
          }
          row[variant] = await timeOp(op, reps, flop);
        } catch (e) {
          row[variant] = { error: errorText(e) };
        }
      }
      rows.push(row);
    }
    return rows;
  } finally {
    tf.dispose(operands);
  }
}

/** What {@link measureSteps} measures of a training step. */
export interface StepResult {
  /** The first step: shader compilation included. */
  warmupMs: number;
  stepMs: number[];
  forwardMs: number;
  gradsMs: number;
  host: Record<string, unknown>;
  /**
   * ms of steps recorded with `GPUQueue.submit` made a no-op (see {@link hostOnlySteps}): the host
   * cost of a step alone. A median `stepMs` close to it means the step is bound by the host.
   */
  hostOnlyMs: number[];
  profile: Record<string, unknown>;
  matmuls: unknown;
}

/**
 * Times a training step: `loss` builds the scalar loss from the trainable `vars`. The optimizer's
 * state is freed even when a step throws.
 */
async function timeStep(
  loss: () => tf.Scalar,
  vars: tf.Variable[],
  steps: number,
): Promise<StepResult> {
  // The project's AdamW (benchmarks/optim.ts): the fused WGSL update where the fused kernels are
  // registered, op by op otherwise (the reference PyTorch figure is an AdamW step too).
  const opt = createOptimizer({ kind: "adamw" });
  try {
    return await measureSteps(opt, loss, vars, steps);
  } finally {
    opt.dispose();
  }
}

/**
 * The measurements of {@link timeStep} with a given optimizer: a warm-up step, `steps` timed
 * steps, the forward pass and the gradients alone, one instrumented step ({@link hostBreakdown}),
 * `max(steps, 2)` host-only steps (`hostOnlySteps`, between a snapshot of the weights and the
 * optimizer's state and its restore, since the GPU computes nothing for them) and one profiled
 * step. So the weights and the optimizer end as after `steps + 3` plain training steps.
 *
 * @param opt the optimizer the steps apply (kept; the caller disposes it)
 * @param loss the scalar loss of `vars`
 * @param vars the trained variables, by their names
 * @param steps the timed steps
 * @returns the timings
 */
export async function measureSteps(
  opt: Optimizer,
  loss: () => tf.Scalar,
  vars: tf.Variable[],
  steps: number,
): Promise<StepResult> {
  const params = new Map(vars.map((v) => [v.name, v]));
  // Each step frees its loss and gradients even when it throws (a variant that fails on this
  // driver must not leave a model's worth of gradients to the variants and sections after it).
  const step = async () => {
    const { value, grads } = tf.variableGrads(loss, vars);
    try {
      opt.apply(params, new Map(Object.entries(grads)), 1e-4);
      await value.data();
    } finally {
      tf.dispose([value, ...Object.values(grads)]);
    }
  };
  let t0 = performance.now();
  await step(); // warm-up: shader compilation, AdamW slots
  const warmupMs = performance.now() - t0;
  const stepMs: number[] = [];
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    await step();
    stepMs.push(performance.now() - t0);
  }
  t0 = performance.now();
  const f = loss();
  let forwardMs: number;
  try {
    await f.data();
    forwardMs = performance.now() - t0;
  } finally {
    f.dispose();
  }
  t0 = performance.now();
  const g = tf.variableGrads(loss, vars);
  let gradsMs: number;
  try {
    // Reading the loss submits everything recorded so far and the queue runs in order, so its
    // completion means every gradient is computed (no per-gradient reads in the timed span).
    await g.value.data();
    gradsMs = performance.now() - t0;
  } finally {
    tf.dispose([g.value, ...Object.values(g.grads)]);
  }
  const host = await hostBreakdown(
    loss,
    vars,
    (grads) => opt.apply(params, new Map(Object.entries(grads)), 1e-4),
  );
  // Host-only steps leave never-computed weights and moments behind: put the real ones back.
  const hostOnlyMs = await withTrainingRestored(
    params,
    opt,
    () => hostOnlySteps(step, Math.max(steps, 2)),
  );
  resetWebgpuKernelStats();
  t0 = performance.now();
  const info = await tf.profile(step);
  const wallMs = performance.now() - t0;
  const byKernel = new Map<string, { ms: number; n: number }>();
  let kernelMs = 0;
  for (const k of info.kernels) {
    const ms = typeof k.kernelTimeMs === "number" ? k.kernelTimeMs : 0;
    kernelMs += ms;
    const e = byKernel.get(k.name) ?? { ms: 0, n: 0 };
    e.ms += ms;
    e.n += 1;
    byKernel.set(k.name, e);
  }
  const top = [...byKernel.entries()].sort((x, y) => y[1].ms - x[1].ms).slice(0, 12)
    .map(([name, e]) => ({ name, ms: round(e.ms), count: e.n }));
  return {
    warmupMs: round(warmupMs, 1),
    stepMs: stepMs.map((x) => round(x, 1)),
    forwardMs: round(forwardMs, 1),
    gradsMs: round(gradsMs, 1),
    host,
    hostOnlyMs,
    profile: {
      wallMs: round(wallMs, 1),
      kernelMs: round(kernelMs, 1),
      kernels: info.kernels.length,
      newTensors: info.newTensors,
      top,
    },
    matmuls: webgpuKernelStats(),
  };
}

/** What {@link instrumentBackend} collected. */
interface HostCounters {
  /** Inclusive ms and calls per wrapped method. */
  methods: Record<string, { ms: number; calls: number }>;
  /** tfjs programs run, by program class (e.g. `TransposeProgram`). */
  programs: Record<string, number>;
}

/**
 * Wraps host-side methods of the webgpu backend (and its buffer manager, queue and device, and
 * `GPUComputePassEncoder.dispatchWorkgroups`, which also counts the in-place dispatches of
 * `model/webgpu/in_place.ts`) with timers, to find where the time outside GPU kernels goes.
 * Times are inclusive (runWebGPUProgram contains recordAndSubmit, which contains makeUniforms,
 * createBindGroup, ...). Shader compiles (`device.createShaderModule` / `createComputePipeline*`)
 * and GPU→CPU reads (`backend.read*`, `getBufferData`) inside a warm step point at recompiled
 * shaders and synchronisation points.
 */
function instrumentBackend(): () => HostCounters {
  // deno-lint-ignore no-explicit-any
  const be = tf.backend() as any;
  const acc: Record<string, { ms: number; calls: number }> = {};
  const programs: Record<string, number> = {};
  const restore: (() => void)[] = [];
  // deno-lint-ignore no-explicit-any
  const wrap = (obj: any, owner: string, names: string[], onCall?: (args: unknown[]) => void) => {
    if (obj == null) return;
    for (const name of names) {
      const orig = obj[name];
      if (typeof orig !== "function") continue;
      const key = `${owner}.${name}`;
      const hadOwn = Object.prototype.hasOwnProperty.call(obj, name);
      try {
        obj[name] = function (this: unknown, ...args: unknown[]) {
          onCall?.(args);
          const t0 = performance.now();
          try {
            return orig.apply(this, args);
          } finally {
            const e = acc[key] ?? (acc[key] = { ms: 0, calls: 0 });
            e.ms += performance.now() - t0;
            e.calls += 1;
          }
        };
        restore.push(() => {
          if (hadOwn) obj[name] = orig;
          else delete obj[name];
        });
      } catch {
        // a frozen or accessor property: leave it unmeasured
      }
    }
  };
  wrap(be, "backend", ["runWebGPUProgram"], (args) => {
    const name = (args[0] as { constructor?: { name?: string } })?.constructor?.name ?? "?";
    programs[name] = (programs[name] ?? 0) + 1;
  });
  wrap(be, "backend", [
    "recordAndSubmit",
    "makeUniforms",
    "submitQueue",
    "uploadToGPU",
    "disposeData",
    "makeTensorInfo",
    "ensureCommandEncoderReady",
    "endComputePassEncoder",
    "tensorToBinding",
    "read",
    "readSync",
    "getBufferData",
  ]);
  wrap(be.bufferManager, "bufferManager", ["acquireBuffer", "releaseBuffer"]);
  wrap(be.queue, "queue", ["writeBuffer", "submit", "onSubmittedWorkDone"]);
  wrap(be.device, "device", [
    "createBindGroup",
    "createBuffer",
    "createCommandEncoder",
    "createShaderModule",
    "createComputePipeline",
    "createComputePipelineAsync",
  ]);
  if (typeof GPUComputePassEncoder !== "undefined") {
    wrap(GPUComputePassEncoder.prototype, "pass", ["dispatchWorkgroups"]);
  }
  return () => {
    for (const r of restore.reverse()) r();
    const methods: Record<string, { ms: number; calls: number }> = {};
    for (const [k, v] of Object.entries(acc)) methods[k] = { ms: round(v.ms, 1), calls: v.calls };
    return { methods, programs };
  };
}

/**
 * One training step (`tf.variableGrads`, then `update` with the gradients) with the backend
 * instrumented: wall time vs host-side method time. `recordMs` is the time until every kernel
 * was recorded, `waitMs` the rest (the GPU finishing). A step that throws is an error (the
 * instrumentation removed), not a measurement.
 *
 * @param loss the scalar loss
 * @param vars the variables it is differentiated by
 * @param update applies the gradients (the optimizer)
 * @returns the breakdown
 */
export async function hostBreakdown(
  loss: () => tf.Scalar,
  vars: tf.Variable[],
  update: (grads: tf.NamedTensorMap) => void,
): Promise<Record<string, unknown>> {
  const stop = instrumentBackend();
  const t0 = performance.now();
  let recordedMs: number, wallMs: number;
  let counters: HostCounters;
  let g: tf.TensorContainer | undefined;
  try {
    const { value, grads } = tf.variableGrads(loss, vars);
    g = [value, ...Object.values(grads)];
    update(grads);
    recordedMs = performance.now() - t0; // all kernels recorded, GPU may still be running
    // One read: it submits everything recorded (the update included) and completes after it, so
    // the record's reads and dispatches are the step's own plus this one.
    await value.data();
    tf.dispose(g);
    g = undefined;
    wallMs = performance.now() - t0;
  } finally {
    counters = stop();
    if (g !== undefined) tf.dispose(g); // the update or the read threw: still freed
  }
  const { methods, programs } = counters;
  return {
    wallMs: round(wallMs, 1),
    recordMs: round(recordedMs, 1),
    waitMs: round(wallMs - recordedMs, 1),
    dispatches: methods["pass.dispatchWorkgroups"]?.calls ?? null,
    methods,
    programs,
  };
}

async function encoderSection(
  quick: boolean,
  ctx: SectionContext,
): Promise<Record<string, unknown>> {
  const [layers, batch, len, d, heads, ff] = quick
    ? [1, 2, 16, 64, 4, 128]
    : [4, 32, 128, 768, 12, 3072];
  const steps = quick ? 1 : 3;
  const T = batch * len;
  const forwardFlop = layers * (8 * T * d * d + 4 * T * d * ff + 4 * batch * len * len * d);
  const vars: tf.Variable[] = [];
  const own = (init: tf.Tensor) => {
    const x = tf.variable(init);
    init.dispose(); // tf.variable copies; the initial tensor would otherwise stay alive
    vars.push(x);
    return x;
  };
  const v = (shape: number[], seed: number, scale: number) =>
    own(tf.tidy(() => fill(shape, seed).mul(scale)));
  const w = Array.from({ length: layers }, (_, i) => ({
    ln1: own(tf.ones([d])),
    q: v([d, d], 10 * i + 1, 0.03),
    k: v([d, d], 10 * i + 2, 0.03),
    vv: v([d, d], 10 * i + 3, 0.03),
    o: v([d, d], 10 * i + 4, 0.03),
    ln2: own(tf.ones([d])),
    wi: v([ff, d], 10 * i + 5, 0.03),
    wo: v([d, ff], 10 * i + 6, 0.02),
  }));
  const x = fill([batch, len, d], 99);
  const bias = tf.tidy(() => fill([1, heads, len, len], 98).mul(0.1));
  const loss = () =>
    tf.tidy(() => {
      let h: tf.Tensor = x;
      for (const l of w) {
        const n = rmsNorm(h, l.ln1 as tf.Tensor1D, 1e-6);
        const a = attention(
          linear(n, l.q as tf.Tensor2D) as tf.Tensor3D,
          linear(n, l.k as tf.Tensor2D) as tf.Tensor3D,
          linear(n, l.vv as tf.Tensor2D) as tf.Tensor3D,
          heads,
          { bias },
        );
        h = tf.add(h, linear(a.out, l.o as tf.Tensor2D));
        const n2 = rmsNorm(h, l.ln2 as tf.Tensor1D, 1e-6);
        h = tf.add(h, feedForward(n2, { wi: l.wi as tf.Tensor2D, wo: l.wo as tf.Tensor2D }));
      }
      return tf.mean(tf.square(h)) as tf.Scalar;
    });
  const out: Record<string, unknown> = {
    shape: { layers, batch, len, d, heads, ff },
    trainFlop: 3 * forwardFlop,
  };
  try {
    await timeVariants(
      [STOCK, MATMUL_ONLY, TILED, TILED_NOSPLIT, TILED_ALL],
      ctx,
      out,
      async () => {
        const r = await timeStep(loss, vars, steps);
        return { ...r, tflops: round((3 * forwardFlop) / median(r.stepMs) / 1e9, 4) };
      },
    );
  } finally {
    tf.dispose([x, bias, ...vars]);
  }
  return out;
}

/**
 * Runs `measure` under each variant in turn (its kernels, and its backward pass or else the one
 * installed now) and writes its record, with `backprop` (which backward pass ran), to
 * `out[variant.name]`, saving the section after each (`ctx.partial`); the budget is read before
 * each variant, and one that would start after it is written as skipped. A variant whose
 * measurement throws is recorded as `{ backprop, error }` and the next one runs. The stock kernels
 * and the backward pass installed before are back afterwards.
 *
 * @param variants the kernel configurations, in order
 * @param ctx the section's saving and budget
 * @param out the section's record, written per variant
 * @param measure one variant's measurement, under its kernels and backward pass
 */
export async function timeVariants(
  variants: readonly Variant[],
  ctx: SectionContext,
  out: Record<string, unknown>,
  measure: () => Promise<Record<string, unknown>>,
): Promise<void> {
  const base = installedBackprop();
  try {
    for (const variant of variants) {
      const over = ctx.overBudget();
      if (over !== undefined) {
        out[variant.name] = { skipped: over };
        continue;
      }
      const backprop = variant.backprop ?? base;
      try {
        useVariant(variant);
        out[variant.name] = setBackprop(backprop)
          ? { backprop, ...(await measure()) }
          : { skipped: `model/backprop.ts does not support tfjs-core ${tf.version_core}` };
      } catch (e) {
        // One variant's failure (e.g. a shader this driver rejects) is its record; the others,
        // `stock` included, still run, as the matmul rows' do.
        out[variant.name] = { backprop, error: errorText(e) };
      }
      await ctx.partial({ ...out, partial: true });
    }
  } finally {
    setBackprop(base);
    useVariant(STOCK);
  }
}

/** Rows and token lengths of a T5 training step. */
export interface StepShape {
  readonly batch: number;
  readonly inLen: number;
  readonly outLen: number;
}

/** The step of the `t5`, `tune` and `memory` sections: batch 32 × 128 / 16 (2 × 16 / 4 quick). */
function t5StepShape(quick: boolean): StepShape {
  return quick ? { batch: 2, inLen: 16, outLen: 4 } : { batch: 32, inLen: 128, outLen: 16 };
}

/** The T5 step the `t5` and `tune` sections run: T5 1.1 Base (tiny in quick mode). */
function t5Workload(quick: boolean, layers?: number, shape?: StepShape) {
  const preset = PRESETS[quick ? "tiny-v1_1" : "t5-v1_1-base"];
  const config = layers === undefined
    ? preset
    : { ...preset, numLayers: layers, numDecoderLayers: layers };
  const { batch, inLen, outLen } = shape ?? t5StepShape(quick);
  const model = initT5(config, { seed: 0 });
  const vars = [...model.params.values()];
  const ids = (shape: [number, number], seed: number) =>
    tf.tidy(() => tf.randomUniform(shape, 2, config.vocabSize, "int32", seed)) as tf.Tensor2D;
  // The model and inputs are freed when a later input cannot be made (out of memory).
  const made: tf.Tensor[] = [];
  const keep = <T extends tf.Tensor>(t: T): T => (made.push(t), t);
  let inputIds: tf.Tensor2D, labels: tf.Tensor2D, attentionMask: tf.Tensor2D;
  let decoderInputIds: tf.Tensor2D;
  try {
    inputIds = keep(ids([batch, inLen], 1));
    labels = keep(ids([batch, outLen], 2));
    attentionMask = keep(tf.ones([batch, inLen]) as tf.Tensor2D);
    decoderInputIds = keep(shiftRight(labels, config));
  } catch (e) {
    tf.dispose(made);
    disposeT5(model);
    throw e;
  }
  const loss = () =>
    tf.tidy(() => {
      // Training mode (dropout 0.1), as Hugging Face's reference step runs.
      const { logits } = forward(model, { inputIds, attentionMask, decoderInputIds }, {
        training: true,
        dropoutSeed: 1,
      });
      return crossEntropyLoss(logits, labels);
    });
  const dispose = () => {
    tf.dispose([inputIds, labels, attentionMask, decoderInputIds]);
    disposeT5(model);
  };
  return { config, batch, inLen, outLen, vars, loss, dispose };
}

/**
 * The matmul tuning table made by the `tune` section in this run, for the `t5` section's
 * `tiled-tuned` variant.
 */
let tunedTable: MatMulTuningTable | undefined;

/**
 * Tunes the matmuls of a T5 1.1 Base step (one encoder and one decoder layer: every layer runs the
 * same shapes) as `deno task tune` does, and writes the table to `tablePath` (copy it to
 * `results/tuning/<adapter>.json` to make it the adapter's default).
 */
async function tuneSection(
  quick: boolean,
  tablePath: string,
  git: { sha: string; dirty: boolean },
): Promise<Record<string, unknown>> {
  useVariant(TILED);
  const calls = await recordGradientShapesAndDispose(t5Workload(quick, 1));
  const [reps, rounds] = quick ? [1, 1] : [5, 3];
  const candidates = quick ? QUICK_TUNE_CANDIDATES.map((c) => parseChoice(c, "quick")) : undefined;
  const r = await tuneShapes(calls, { reps, rounds, ...(candidates ? { candidates } : {}) });
  const adapter = await requestTfjsAdapter();
  if (adapter === null) throw new Error("benchmarks/gpu_check.ts: requestAdapter() returned null");
  const workload = quick ? "t5:tiny-v1_1@1:2,16,4" : "t5:t5-v1_1-base@1:32,128,16";
  const table = newTuningTable(adapterId(adapter.info), r.entries, {
    command: "benchmarks/gpu_check.ts --sections=tune",
    workloads: workload,
    reps,
    rounds,
    candidates: quick ? QUICK_TUNE_CANDIDATES.join(",") : "all",
    git: `${git.sha}${git.dirty ? "+dirty" : ""}`,
  });
  await writeFileAtomic(tablePath, serializeTuningTable(table));
  tunedTable = table;
  useVariant(STOCK);
  const changed: Record<string, unknown> = {};
  for (const [key, e] of Object.entries(r.entries)) {
    if (e.choice !== e.heuristic) {
      changed[key] = {
        calls: e.calls,
        from: e.heuristic,
        to: e.choice,
        ms: [e.ms[e.heuristic], e.ms[e.choice]],
      };
    }
  }
  return {
    workload,
    tablePath,
    slug: adapterSlug(table.adapter),
    shapes: Object.keys(r.entries).length,
    ruleMs: r.ruleMs,
    tunedMs: r.tunedMs,
    ruleRejected: r.ruleRejected,
    rejected: Object.fromEntries(
      Object.entries(r.entries).filter(([, e]) => e.rejected).map(([k, e]) => [k, e.rejected]),
    ),
    changed,
    table,
  };
}

async function t5Section(
  quick: boolean,
  ctx: SectionContext,
): Promise<Record<string, unknown>> {
  const { config, batch, inLen, outLen, vars, loss, dispose } = t5Workload(quick);
  const steps = quick ? 1 : 2;
  const trainFlop = t5Flops(config, { inputLength: inLen, targetLength: outLen }).train * batch;
  // The run's backward pass (runSections installed it): the one `deno task bench` runs.
  const backprop = installedBackprop();
  const other: BackpropMode = backprop === "stock" ? "low-memory" : "stock";
  const out: Record<string, unknown> = {
    preset: quick ? "tiny-v1_1" : "t5-v1_1-base",
    shape: { batch, inLen, outLen },
    trainFlop,
    backprop,
    // The default kernels with the other backward pass: what it costs or saves in time.
    otherBackprop: `tiled-${other}-backprop`,
  };
  // The default kernels first and each variant saved as it ends: if the device call runs out
  // of time, the figure that matters (the tiled + fused step against the target) is kept.
  const tuned: Variant[] = tunedTable === undefined
    ? []
    : [{ name: "tiled-tuned", kernels: { tuning: tunedTable } }];
  const variants = [
    TILED,
    { name: `tiled-${other}-backprop`, kernels: {}, backprop: other },
    TILED_UNGROUPED,
    TILED_SUBMIT15,
    TILED_NOSPLIT,
    MATMUL_ONLY,
    STOCK,
  ];
  try {
    await timeVariants([...tuned, ...variants], ctx, out, async () => {
      const r = await timeStep(loss, vars, steps);
      const ms = median(r.stepMs);
      return {
        ...r,
        tflops: round(trainFlop / ms / 1e9, 4),
        tokensPerS: Math.round((batch * (inLen + outLen)) / (ms / 1000)),
      };
    });
  } finally {
    dispose();
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// GPU memory, measured against the estimate of benchmarks/memory.ts

/** The fields of tfjs-webgpu's buffer pool (`BufferManager`, 4.22) the memory section reads. */
interface BufferPool {
  numBytesUsed: number;
  numBytesAllocated: number;
  numFreeBuffers: number;
  freeBuffers: Map<string, GPUBuffer[]>;
  acquireBuffer: (...args: unknown[]) => GPUBuffer;
}

function webgpuInternals() {
  return tf.backend() as unknown as {
    bufferManager: BufferPool;
    device: GPUDevice;
    uploadToGPU?: (dataId: object) => void;
  };
}

/**
 * Destroys the buffers the pool keeps for reuse (what earlier rows and sections released), so
 * that a row neither reuses them (its allocations would not show in `memory.used`) nor leaves
 * gigabytes of them to the sections after it.
 *
 * @returns the bytes destroyed
 */
function emptyFreePool(pool: BufferPool): number {
  let bytes = 0;
  for (const list of pool.freeBuffers.values()) {
    for (const b of list) {
      bytes += b.size;
      b.destroy();
    }
    list.length = 0; // the keys stay: releaseBuffer stops pooling when the map is empty
  }
  pool.numBytesAllocated -= bytes;
  pool.numFreeBuffers = 0;
  return bytes;
}

/**
 * Records the largest `numBytesUsed` (bytes of live tfjs buffers) from now until `restore`, by
 * wrapping the pool's `acquireBuffer` (over the bind group cache's wrapper, if any).
 */
function trackPoolPeak(pool: BufferPool): { peak: () => number; restore: () => void } {
  const own = Object.prototype.hasOwnProperty.call(pool, "acquireBuffer");
  const orig = pool.acquireBuffer;
  let peak = pool.numBytesUsed;
  const wrapped = function (this: BufferPool, ...args: unknown[]): GPUBuffer {
    const buffer = orig.apply(this, args);
    if (this.numBytesUsed > peak) peak = this.numBytesUsed;
    return buffer;
  };
  pool.acquireBuffer = wrapped;
  return {
    peak: () => peak,
    restore: () => {
      if (pool.acquireBuffer !== wrapped) return;
      if (own) pool.acquireBuffer = orig;
      else delete (pool as Partial<BufferPool>).acquireBuffer;
    },
  };
}

/** Installs the backward pass `mode` names; false when model/backprop.ts refuses this tfjs. */
function setBackprop(mode: BackpropMode): boolean {
  if (mode === "stock") {
    uninstallLowMemoryBackprop();
    return true;
  }
  return installLowMemoryBackprop(() => {});
}

/** The backward pass installed now. */
function installedBackprop(): BackpropMode {
  return lowMemoryBackpropInstalled() ? "low-memory" : "stock";
}

/**
 * Installs the backward pass `deno task bench` runs, as `selectBackend` does (model/backend.ts):
 * `mode` is {@link backpropFromEnv}'s (`HYPERPROMPT_STOCK_BACKPROP`), and a low-memory pass that
 * model/backprop.ts refuses for this tfjs-core is tfjs's own.
 *
 * @param mode what {@link backpropFromEnv} says
 * @returns the backward pass installed and why
 */
export function installBenchBackprop(mode: BackpropMode): { mode: BackpropMode; chosenBy: string } {
  if (mode === "low-memory" && setBackprop("low-memory")) {
    return {
      mode,
      chosenBy: `${STOCK_BACKPROP_ENV} unset or 0: model/backprop.ts's, as deno task bench runs`,
    };
  }
  setBackprop("stock");
  return {
    mode: "stock",
    chosenBy: tf.version_core === BACKPROP_TFJS_VERSION
      ? `${STOCK_BACKPROP_ENV}=1: tfjs's own, as deno task bench runs`
      : `tfjs-core ${tf.version_core} is not ${BACKPROP_TFJS_VERSION}, which model/backprop.ts ` +
        "mirrors: tfjs's own, as deno task bench runs",
  };
}

/**
 * A method a memory row trains through the trainer's path (`benchmarks/training_step.ts`: the
 * method's instance and hooks as `run_one.ts` builds them, `lossAndGrads`, `globalGradNorm`,
 * AdamW), with its default configuration, on `tasks` (the rows cycle through them).
 */
interface MemoryMethod {
  /** Method registry key (model/methods/mod.ts). */
  readonly name: string;
  /** Task names; a batch of at least as many rows has every task (the masked block ops run). */
  readonly tasks: readonly string[];
}

/** paper-base's GLUE tasks (`benchmarks/profiles/paper-base.json`): the adapter row's in full mode. */
const GLUE_TASKS = ["cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte"] as const;

/**
 * The estimate's input for the step a memory row trains: T5 1.1 Base (tiny in quick mode), the
 * method (`mtl`, every weight trained, by default; else `method` with its default configuration
 * and its number of tasks), AdamW, dropout on, the fused kernels of webgpu, `backprop`, and the
 * dispatches per command buffer the row ran with (`submitBatch`; default the kernels' own).
 */
function memoryInputOf(
  quick: boolean,
  shape: StepShape,
  backprop: BackpropMode,
  method?: MemoryMethod,
  submitBatch?: number,
): MemoryInput {
  return {
    config: PRESETS[quick ? "tiny-v1_1" : "t5-v1_1-base"],
    method: method?.name ?? "mtl",
    ...(method === undefined ? {} : { methodConfig: {}, numTasks: method.tasks.length }),
    optimizer: { kind: "adamw" },
    batchSize: shape.batch,
    inputLength: shape.inLen,
    targetLength: shape.outLen,
    dropout: true,
    kernels: "fused",
    backprop,
    ...(submitBatch === undefined ? {} : { submitBatch }),
  };
}

/** What one memory row plans to train. */
interface MemoryRowPlan {
  readonly shape: StepShape;
  readonly backprop: BackpropMode;
  /** A method trained through the trainer's path; absent: the `t5` section's plain T5 step (MTL). */
  readonly method?: MemoryMethod;
}

/** One memory row's training step: its variables, one step (loss read), and its disposal. */
interface MemoryWorkload {
  /** Every variable (trained or not), uploaded to the GPU before the weights are sampled. */
  readonly vars: tf.Variable[];
  /** One training step with `opt`; resolves once its loss has been read back. */
  step(opt: Optimizer, i: number): Promise<void>;
  dispose(): void;
}

/**
 * The `t5` section's step (plain T5, method `mtl`): `tf.variableGrads`, AdamW, the loss read.
 */
function mtlMemoryWorkload(quick: boolean, shape: StepShape): MemoryWorkload {
  const w = t5Workload(quick, undefined, shape);
  const params = new Map(w.vars.map((v) => [v.name, v]));
  return {
    vars: w.vars,
    // As the trainer's step (and the adapter row's): the loss read, the gradient norm read (the
    // estimate has a phase for it, which sets the peak at small shapes), the update.
    step: async (opt) => {
      const { value, grads } = tf.variableGrads(w.loss, w.vars);
      try {
        await value.data();
        const norm = globalGradNorm(Object.values(grads));
        await norm.data();
        norm.dispose();
        opt.apply(params, new Map(Object.entries(grads)), 1e-4);
      } finally {
        tf.dispose([value, ...Object.values(grads)]);
      }
    },
    dispose: w.dispose,
  };
}

/**
 * A method's training step as `benchmarks/trainer.ts` `train` runs one (without clipping, as
 * paper-base): the instance and hooks built by `benchmarks/training_step.ts` (T5 1.1 Base, tiny in
 * quick mode, initT5 seed 0, method seed 3), one synthetic batch of `shape` whose rows cycle
 * through the method's tasks, `lossAndGrads` (dropout 0.1), the loss read, `globalGradNorm` read,
 * AdamW's update.
 */
function methodMemoryWorkload(
  quick: boolean,
  shape: StepShape,
  method: MemoryMethod,
): MemoryWorkload {
  const config = PRESETS[quick ? "tiny-v1_1" : "t5-v1_1-base"];
  const train: TrainSpec = {
    ...DEFAULT_TRAIN,
    optimizer: "adamw",
    batchSize: shape.batch,
    maxInputLength: shape.inLen,
    maxTargetLength: shape.outLen,
    dropout: config.dropoutRate,
    labelSmoothing: 0,
    clipNorm: null,
  };
  const s = methodTrainingStep({
    config,
    modelSeed: 0,
    method: method.name,
    tasks: method.tasks,
    methodSeed: 3,
    train,
    batchSize: shape.batch,
    inputLength: shape.inLen,
    targetLength: shape.outLen,
    where: `benchmarks/gpu_check.ts memory (${method.name})`,
  });
  let batch: ReturnType<typeof s.batch>;
  try {
    batch = s.batch();
  } catch (e) {
    s.dispose(); // the model and the method's variables, when the batch cannot be made
    throw e;
  }
  const nameOf = new Map([...s.params].map(([n, v]) => [v.name, n]));
  return {
    vars: s.allVariables,
    step: async (opt, i) => {
      const { value, grads: g } = await lossAndGrads(s.options, batch, s.varList, 1 + i);
      const grads = new Map(Object.entries(g).map(([k, v]) => [nameOf.get(k) ?? k, v]));
      try {
        await value.data();
        const norm = globalGradNorm(grads.values());
        await norm.data();
        norm.dispose();
        opt.apply(s.params, grads, 1e-4);
      } finally {
        tf.dispose([value, ...grads.values()]);
      }
    },
    dispose: () => {
      disposeBatch(batch);
      s.dispose();
    },
  };
}

/** nvidia-smi's `memory.used` samples of a row, and their deltas from the first. */
function smiRecord(
  before: DeviceMemoryUsed,
  afterWeights: DeviceMemoryUsed,
  afterSteps: DeviceMemoryUsed[],
): Record<string, unknown> {
  const all = [before, afterWeights, ...afterSteps];
  const missing = all.find((s) => s.bytes === null);
  if (missing !== undefined || before.bytes === null) {
    return { bytes: null, reason: missing?.reason ?? "no sample" };
  }
  // Where a GPU printed no figure ([N/A]), each sample sums the others: deltas only between
  // samples that summed the same GPUs.
  const summed = (s: DeviceMemoryUsed) => JSON.stringify(s.bytes === null ? null : s.gpus ?? "all");
  const changed = all.find((s) => summed(s) !== summed(before));
  if (changed !== undefined) {
    return {
      bytes: null,
      reason: `the GPUs nvidia-smi gave a figure for changed between samples (${
        before.note ?? "all"
      }, then ${(changed.bytes === null ? undefined : changed.note) ?? "all"})`,
    };
  }
  const b = before.bytes;
  const steps = afterSteps.map((s) => s.bytes! - b);
  return {
    ...(before.note === undefined ? {} : { note: before.note }),
    before: b,
    afterWeights: afterWeights.bytes,
    afterSteps: afterSteps.map((s) => s.bytes),
    weights: afterWeights.bytes! - b,
    step: Math.max(...steps),
  };
}

/**
 * Trains `steps` steps of one shape with one backward pass and measures the GPU memory: the
 * pool's free buffers destroyed first, then `nvidia-smi`'s `memory.used` before the model exists,
 * after its weights are on the GPU, and after each step (tfjs-webgpu's pool keeps released
 * buffers, so it approximates the step's peak plus the pool's slack); and tfjs's own count of live
 * buffer bytes (its peak over the steps, `tfjs.peak`) and of buffers allocated (`tfjs.allocated`,
 * live + pooled). Each is compared with `estimateTrainingMemory`'s training-step peak
 * (`trainingPeak`, not the run's `peak`, which may be evaluation's; `ratio` = nvidia-smi's delta /
 * estimate, `tfjsPeakRatio` = tfjs's peak / estimate).
 */
async function memoryRow(
  quick: boolean,
  plan: MemoryRowPlan,
  steps: number,
  io: MemoryIo,
): Promise<Record<string, unknown>> {
  const { shape, backprop, method } = plan;
  const { run } = io;
  if (!setBackprop(backprop)) {
    return { skipped: `model/backprop.ts does not support tfjs-core ${tf.version_core}` };
  }
  useVariant(TILED);
  // Dispatches per command buffer while the row trains: tfjs-webgpu frees a disposed buffer only
  // when the batch reading it is submitted, which the estimate bounds by that many nodes
  // (benchmarks/memory.ts, kernel set "fused"; the kernels' 64, the environment's override being
  // set aside by main), so the estimate is given the value the row runs with.
  const submitBatch = tf.env().getNumber("WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE");
  const e = estimateTrainingMemory(memoryInputOf(quick, shape, backprop, method, submitBatch));
  const { evaluation: _, ...trainingPhases } = e.phases;
  const trainingPhase = (Object.keys(trainingPhases) as (keyof typeof trainingPhases)[])
    .reduce((a, k) => (trainingPhases[k] > trainingPhases[a] ? k : a));
  const be = webgpuInternals();
  const pool = be.bufferManager;
  const emptied = emptyFreePool(pool);
  await be.device.queue.onSubmittedWorkDone();
  const smiBefore = await deviceMemoryUsed(run);
  const used0 = pool.numBytesUsed;
  const alloc0 = pool.numBytesAllocated;
  const smiSteps: DeviceMemoryUsed[] = [];
  const stepMs: number[] = [];
  let weights: number, peak: number, allocated: number, smiWeights: DeviceMemoryUsed;
  // Built inside the try: a failure building the optimizer (or the workload, which frees what it
  // made) is the row's error, and what was built is freed.
  let built: MemoryWorkload | undefined;
  let builtOpt: Optimizer | undefined;
  try {
    const w = built = method === undefined
      ? mtlMemoryWorkload(quick, shape)
      : methodMemoryWorkload(quick, shape, method);
    const opt = builtOpt = io.createOptimizer({ kind: "adamw" });
    // initT5's weights are made on the host (tf.randomNormal): upload them and wait, so that the
    // sample after the weights sees them.
    for (const v of w.vars) be.uploadToGPU?.(v.dataId);
    const probe = tf.tidy(() => tf.sum(w.vars[0]!));
    await probe.data();
    probe.dispose();
    await be.device.queue.onSubmittedWorkDone();
    weights = pool.numBytesUsed - used0;
    smiWeights = await deviceMemoryUsed(run);
    const tracker = trackPoolPeak(pool);
    try {
      for (let i = 0; i < steps; i++) {
        const t0 = performance.now();
        await w.step(opt, i);
        stepMs.push(round(performance.now() - t0, 1));
        await be.device.queue.onSubmittedWorkDone();
        smiSteps.push(await deviceMemoryUsed(run));
      }
      peak = tracker.peak() - used0;
    } finally {
      tracker.restore();
    }
    allocated = pool.numBytesAllocated - alloc0;
  } finally {
    builtOpt?.dispose();
    built?.dispose();
  }
  const nvidiaSmi = smiRecord(smiBefore, smiWeights, smiSteps);
  const smiStep = nvidiaSmi["step"] as number | undefined;
  return {
    preset: quick ? "tiny-v1_1" : "t5-v1_1-base",
    method: method?.name ?? "mtl",
    ...(method === undefined ? {} : { tasks: method.tasks }),
    shape,
    backprop,
    submitBatch,
    steps,
    stepMs,
    // The training step's estimate (what the row measures); evaluation, which the preflight
    // also checks, is not run here and is recorded apart.
    estimate: {
      peak: e.trainingPeak,
      peakPhase: trainingPhase,
      phases: trainingPhases,
      evaluation: e.phases.evaluation,
      weights: e.weights,
      gradients: e.gradients,
      optimizerState: e.optimizerState,
      forwardActivations: e.forwardActivations,
      savedActivations: e.savedActivations,
      activationGradients: e.activationGradients,
    },
    nvidiaSmi,
    tfjs: { weights, peak, allocated, poolEmptiedBefore: emptied },
    ratio: smiStep === undefined ? null : round(smiStep / e.trainingPeak, 3),
    tfjsPeakRatio: round(peak / e.trainingPeak, 3),
    weightsRatio: smiStep === undefined
      ? null
      : round((nvidiaSmi["weights"] as number) / e.weights, 3),
  };
}

/**
 * The `adapter-low-memory` row: the Vanilla Adapter (default configuration) with the low-memory
 * backward pass, at the `t5` section's step (Base, 32 × 128 / 16) on paper-base's 8 GLUE tasks
 * (4 rows each), or in quick mode tiny at 4 × 16 / 4 on 4 of them (one row each: the batch of the
 * MTL quick rows, 2, would hold 2 tasks only).
 */
function adapterMemoryPlan(quick: boolean): MemoryRowPlan {
  return {
    shape: quick ? { batch: 4, inLen: 16, outLen: 4 } : t5StepShape(false),
    backprop: "low-memory",
    method: { name: "adapter", tasks: quick ? GLUE_TASKS.slice(0, 4) : GLUE_TASKS },
  };
}

/**
 * A memory row, or `{ error }` when it throws (e.g. the device runs out of memory in `step-stock`):
 * the rows after it, `adapter-low-memory` included, still run. memoryRow frees its model and
 * optimizer either way; the section restores the kernels and the backward pass.
 */
async function rowOrError(
  row: () => Promise<Record<string, unknown>>,
): Promise<Record<string, unknown>> {
  try {
    return await row();
  } catch (e) {
    return { error: errorText(e) };
  }
}

/**
 * The rows whose measured / estimated ratio the `micro-low-memory` row may divide the GPU's memory
 * by, in order of preference: `step-low-memory` (the same backward pass, what bench runs), then
 * `step-stock` (tfjs's backward pass: the same model, kernels and estimate, a different backward
 * phase; a measured ratio of the estimate still, where the preferred row has none). The rows after
 * `micro-low-memory` (`adapter-low-memory`) have not run when it chooses.
 */
export const MICRO_RATIO_ROWS = ["step-low-memory", "step-stock"] as const;

/** Why a memory row has no measured ratio: its error, its skip reason, absent, or none recorded. */
function noRatioReason(name: string, row: Record<string, unknown> | undefined): string {
  if (row === undefined) return `${name} did not run`;
  if (row["error"] !== undefined) return `${name} failed: ${String(row["error"])}`;
  if (row["skipped"] !== undefined) return `${name} skipped: ${String(row["skipped"])}`;
  return `${name} recorded no ratio`;
}

/**
 * What the `micro-low-memory` row divides the GPU's memory by before choosing its micro-batch: the
 * larger of a measured row's ratios (`ratio`, nvidia-smi's delta / estimate, and `tfjsPeakRatio`,
 * tfjs's live buffers / estimate), at least 1, so that an estimate that either count finds too low
 * does not run the GPU out of memory. (nvidia-smi's delta can read low where the driver kept memory
 * an earlier row freed; the larger ratio is the safe one.) The row is the first of
 * {@link MICRO_RATIO_ROWS} that measured one; `from` says which, and why the ones before it did
 * not. Where none did (e.g. `step-low-memory` ran out of memory, as `step-stock`, which needs more,
 * then did too), there is no ratio: the estimate is then least to be trusted, and dividing by 1
 * would trust it, so the result is `{ skipped }` with the reasons, and the row is not run.
 *
 * @param rows the memory section's records so far, by row name
 * @returns the divisor and where it came from (for `microBatchChosenBy`), or why there is none
 */
export function microBatchRatio(
  rows: Readonly<Record<string, unknown>>,
): { ratio: number; from: string } | { skipped: string } {
  const missing: string[] = [];
  for (const name of MICRO_RATIO_ROWS) {
    const row = rows[name] as Record<string, unknown> | undefined;
    const measured = row?.["error"] !== undefined || row?.["skipped"] !== undefined
      ? []
      : [row?.["ratio"], row?.["tfjsPeakRatio"]].filter(
        (x): x is number => typeof x === "number" && Number.isFinite(x) && x > 0,
      );
    if (measured.length > 0) {
      return {
        ratio: Math.max(1, ...measured),
        from: `${name}'s larger ratio, at least 1${
          missing.length === 0 ? "" : ` (${missing.join("; ")})`
        }`,
      };
    }
    missing.push(noRatioReason(name, row));
  }
  return { skipped: `no measured ratio: ${missing.join("; ")}` };
}

/** Paper-base's batch (`benchmarks/profile.ts`), from which the `micro` row's micro-batch is chosen. */
const PAPER_BATCH = 128;

/**
 * The `micro-low-memory` row's micro-batch: with the GPU's memory known,
 * `largestFittingMicroBatch` of paper-base's batch at 512 / 84 tokens (tiny at 64 / 16 in quick
 * mode) on that memory divided by {@link microBatchRatio}, at most 32 (4 quick) to bound its time;
 * with it unknown, the cap in quick mode (where the memory does not matter) and skipped otherwise.
 * Skipped also when no measured ratio exists or no micro-batch fits.
 *
 * @param quick the section's quick mode (tiny T5)
 * @param total the GPU's memory in bytes, or `{ unknown }` with why it is not known
 * @param rows the memory section's records so far, by row name
 * @returns the row's shape and how its micro-batch was chosen, or why it is skipped
 */
export function microBatchPlan(
  quick: boolean,
  total: number | { unknown: string },
  rows: Readonly<Record<string, unknown>>,
): { shape: StepShape; chosenBy: string } | { skipped: string } {
  const [inLen, outLen, cap] = quick ? [64, 16, 4] : [512, 84, 32];
  if (typeof total !== "number") {
    return quick
      ? {
        shape: { batch: cap, inLen, outLen },
        chosenBy: "quick: the GPU's memory does not matter",
      }
      : { skipped: `the GPU's memory is unknown (${total.unknown})` };
  }
  const r = microBatchRatio(rows);
  if ("skipped" in r) return r;
  const paper = memoryInputOf(quick, { batch: PAPER_BATCH, inLen, outLen }, "low-memory");
  const fits = largestFittingMicroBatch(paper, total / r.ratio, DEVICE_MARGIN);
  const why = `largestFittingMicroBatch(batch ${PAPER_BATCH}, ${inLen}/${outLen}) on ${
    fmtGb(total)
  } / ${round(r.ratio, 3)} (${r.from}): ${fits ?? "none"}, at most ${cap}`;
  return fits === undefined
    ? { skipped: `no micro-batch fits: ${why}` }
    : { shape: { batch: Math.min(cap, fits), inLen, outLen }, chosenBy: why };
}

/**
 * GPU memory against `benchmarks/memory.ts` (see {@link memoryRow}): the step of the `t5` section
 * with tfjs's backward pass (`step-stock`, what bench runs with `HYPERPROMPT_STOCK_BACKPROP=1`)
 * and with model/backprop.ts's (`step-low-memory`, what `deno task bench` runs by default), then
 * `micro-low-memory`: Base at the paper's 512 / 84 tokens (tiny at 64 / 16 in quick mode) with the
 * micro-batch the bench preflight would train paper-base's batch of 128 with on this GPU, its
 * memory divided by a measured ratio of the rows before ({@link microBatchPlan},
 * {@link microBatchRatio}: skipped where none measured one, or the GPU's memory is unknown outside
 * quick mode); then `adapter-low-memory` ({@link adapterMemoryPlan}). A row that throws is
 * recorded as `{ error }` and the rows after it run. The pool is emptied after the section, for
 * the sections after it.
 */
async function memorySection(
  quick: boolean,
  ctx: SectionContext,
  io: MemoryIo,
): Promise<Record<string, unknown>> {
  const probed = await probeDeviceMemory(undefined, io.run);
  const total = probed.bytes === null ? undefined : probed;
  const unknown = probed.bytes === null ? probed.reason : undefined;
  const out: Record<string, unknown> = {
    deviceTotal: probed.bytes,
    // Why it is unknown (no nvidia-smi, MIG, …), or which GPUs it counted.
    ...(unknown === undefined ? {} : { deviceTotalReason: unknown }),
    ...(total !== undefined && total.source !== "nvidia-smi"
      ? { deviceTotalSource: total.source }
      : {}),
    margin: DEVICE_MARGIN,
  };
  const step = t5StepShape(quick);
  const steps = 2;
  const restore: BackpropMode = lowMemoryBackpropInstalled() ? "low-memory" : "stock";
  const summary: string[] = [];
  const record = async (name: string, r: Record<string, unknown>) => {
    out[name] = r;
    if (r["error"] !== undefined) summary.push(`${name} error (${r["error"]})`);
    else if (r["skipped"] === undefined) {
      const est = r["estimate"] as { peak: number; peakPhase: string };
      const smi = r["nvidiaSmi"] as { step?: number; reason?: string };
      const tfjs = r["tfjs"] as { peak: number };
      const shape = r["shape"] as StepShape;
      summary.push(
        `${name} (${r["method"]}) ${shape.batch}x${shape.inLen}/${shape.outLen}: estimate ${
          fmtGb(est.peak)
        } (${est.peakPhase}), nvidia-smi ${
          smi.step === undefined
            ? `null (${smi.reason})`
            : `+${fmtGb(smi.step)} ratio ${r["ratio"]}`
        }, tfjs peak ${fmtGb(tfjs.peak)} ratio ${r["tfjsPeakRatio"]}`,
      );
    } else summary.push(`${name} skipped (${r["skipped"]})`);
    await ctx.partial({ ...out, partial: true });
  };
  try {
    for (const backprop of ["stock", "low-memory"] as const) {
      const name = `step-${backprop}`;
      const over = ctx.overBudget();
      await record(
        name,
        over
          ? { skipped: over }
          : await rowOrError(() => memoryRow(quick, { shape: step, backprop }, steps, io)),
      );
    }
    const name = "micro-low-memory";
    const over = ctx.overBudget();
    if (over !== undefined) await record(name, { skipped: over });
    else {
      const plan = microBatchPlan(quick, total?.bytes ?? { unknown: unknown ?? "no figure" }, out);
      if ("skipped" in plan) await record(name, plan);
      else {
        const r = await rowOrError(() =>
          memoryRow(quick, { shape: plan.shape, backprop: "low-memory" }, steps, io)
        );
        await record(name, { ...r, microBatchChosenBy: plan.chosenBy });
      }
    }
    // The Vanilla Adapter (the preflight trains it on an 80 GB card in micro-batches of 64 close
    // to the card's usable memory), through the trainer's path with its hooks, on enough rows
    // that every task is in the batch (the per-task gather, bias and LayerNorm of each adapter).
    const adapter = adapterMemoryPlan(quick);
    const over2 = ctx.overBudget();
    await record(
      "adapter-low-memory",
      over2 ? { skipped: over2 } : await rowOrError(() => memoryRow(quick, adapter, steps, io)),
    );
  } finally {
    setBackprop(restore);
    useVariant(STOCK);
    emptyFreePool(webgpuInternals().bufferManager);
  }
  console.log(`gpu_check: memory ${summary.join("; ")}`);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Driver

const SECTIONS = [
  "adapter",
  "correctness",
  "memory",
  "tune",
  "t5",
  "matmul",
  "encoder",
] as const;
type Section = typeof SECTIONS[number];

/** `benchmarks/gpu_check.ts --help`. */
export const GPU_CHECK_USAGE =
  `deno run -A benchmarks/gpu_check.ts [options]   the prepared GPU check (benchmarks/gpu_check.md)

  --quick            tiny shapes, to check the script on the software adapter
  --sections=LIST    comma-separated, of ${SECTIONS.join(", ")} (default: all)
  --budget-s=N       skip a section, or a variant (t5, encoder) or row (matmul, memory) of one,
                     that would start after N seconds; it is written as skipped (default 480)
  --out=FILE         the JSON report (default: $OUT/gpu_check.json when OUT is set, else
                     results/perf/gpu_check-<time>.json); the tune section's table goes beside it
  --git=SHA          the commit the code is from, recorded when the folder is no git checkout
                     of it (the GPU machine gets a copy of the tree without .git); a checkout
                     at another commit is refused
  --help             this text

Environment: HYPERPROMPT_STOCK_BACKPROP=1 trains with tfjs's own backward pass, as in deno task
bench (default: model/backprop.ts's); HYPERPROMPT_WEBGPU_KERNELS and
HYPERPROMPT_WEBGPU_SUBMIT_BATCH are set aside (the variants set the kernels; report: envIgnored).

Exit codes: 0 the report was written (a section's error is recorded in it), 1 a failure outside
the sections, 2 bad arguments (nothing run).`;

/** The repository state around the code, and whether that repository tracks the running file. */
export interface FoundGit {
  /** {@link gitState}'s: the commit, "unknown" outside a git repository. */
  readonly sha: string;
  readonly dirty: boolean;
  /**
   * Whether that repository tracks the running module (false: the repository is a parent
   * folder's and this tree an untracked copy inside it, or the module is a bundle).
   */
  readonly tracked?: boolean;
}

/**
 * The commit a report records: the checkout's, else (outside a git checkout, as on the GPU machine,
 * which gets a copy of the tree) the `--git` one, else "unknown".
 *
 * A repository that does not track the running code (`tracked: false`: the copy sits in a parent
 * folder's repository, or the code runs from the untracked bundle) says nothing of this code's
 * commit: `--git` is recorded if given, else "unknown", and `note` names what was found there. A
 * checkout that tracks the code and is at another commit than `--git` is a mistake (the report
 * would name a commit whose code did not run, e.g. an old `--git` pasted after a new commit): it is
 * refused, as it costs nothing there (no GPU machine holds a checkout of its own: its copy has no
 * `.git`, so there the case is the parent folder's, which is accepted).
 *
 * @param found {@link gitState} here, with {@link codeTracked}
 * @param given `--git`, if given
 * @returns the sha, whether the tree had changes, and a note when the repository found was set aside
 * @throws UsageError when `--git` names another commit than the checkout's (the report would lie)
 */
export function reportGit(
  found: FoundGit,
  given: string | undefined,
): { sha: string; dirty: boolean; note?: string } {
  if (found.sha === "unknown") return { sha: given ?? "unknown", dirty: false };
  if (found.tracked === false) {
    return {
      sha: given ?? "unknown",
      dirty: false,
      note: `the git repository around this code (at ${found.sha}) does not track it (a parent ` +
        `folder's repository, or a bundle): its commit is not this code's${
          given === undefined ? "" : "; --git's is recorded"
        }`,
    };
  }
  const own = { sha: found.sha, dirty: found.dirty };
  if (given === undefined) return own;
  if (!found.sha.startsWith(given)) {
    throw new UsageError(
      `benchmarks/gpu_check.ts: --git=${given} but this checkout is at ${found.sha}`,
    );
  }
  return own;
}

/**
 * Whether the git repository around the code ({@link gitState}'s, run in the repository root)
 * tracks the running module: `git ls-files --error-unmatch` on this file. False when the root is
 * an untracked copy inside another repository, or the module is a bundle (ignored); undefined
 * without git.
 */
export function codeTracked(): boolean | undefined {
  try {
    return new Deno.Command("git", {
      args: ["ls-files", "--error-unmatch", "--", fileURLToPath(import.meta.url)],
      cwd: repoPath(),
      stdout: "null",
      stderr: "null",
      stdin: "null",
    }).outputSync().success;
  } catch {
    return undefined; // no git, or not allowed to run it
  }
}

/**
 * Checks the report path before any GPU work: a folder there, or a file in the way of its folder,
 * is a {@link UsageError} naming where the path came from.
 */
function checkReportPath(outPath: string, namedBy: string): void {
  checkOutputFile(`benchmarks/gpu_check.ts: ${namedBy}`, outPath, "give the report's file name");
}

/**
 * The flags of the check, as `parseArgs` takes them. `--help` is declared as the other tools
 * declare it; {@link cli} answers it (`runCli`, before parsing).
 */
const GPU_CHECK_FLAGS = {
  quick: { type: "boolean", default: false },
  sections: { type: "string", default: SECTIONS.join(",") },
  "budget-s": { type: "string", default: "480" },
  out: { type: "string" },
  git: { type: "string" },
  help: { type: "boolean", short: "h", default: false },
} as const;

/** What each flag of {@link GPU_CHECK_FLAGS} that takes a value expects. */
const GPU_CHECK_TAKES = {
  sections: `sections, comma-separated, of ${SECTIONS.join(",")}`,
  "budget-s": "a positive number of seconds",
  out: "a JSON file",
  git: "a commit sha",
} as const;

/**
 * Runs the sections named by `args` (see the module doc and `gpu_check.md`) and writes the report.
 * The arguments and the report path are checked first; a bad one is a {@link UsageError}.
 *
 * @param args command-line arguments
 * @returns the report (also written to `--out`, `$OUT/gpu_check.json` or `results/perf/`)
 */
export async function main(
  args: string[],
  opts: GpuCheckOptions = {},
): Promise<Record<string, unknown>> {
  let values;
  try {
    values = parseFlags(args, {
      tool: "deno run -A benchmarks/gpu_check.ts",
      options: GPU_CHECK_FLAGS,
      takes: GPU_CHECK_TAKES,
      paths: { out: true },
    });
  } catch (e) {
    // The tool's errors all start with its file.
    throw new UsageError(`benchmarks/gpu_check.ts: ${(e as Error).message}`, { cause: e });
  }
  const quick = values.quick === true;
  const budgetS = decimalNumber(values["budget-s"]);
  if (!(budgetS > 0)) {
    throw new UsageError(
      `benchmarks/gpu_check.ts: --budget-s must be a positive number, got ${values["budget-s"]}`,
    );
  }
  // The backward pass bench would run (a bad HYPERPROMPT_STOCK_BACKPROP is a usage error here,
  // before any GPU work, as in bench).
  const benchBackprop = backpropFromEnv();
  const givenGit = values.git;
  if (givenGit !== undefined && !/^[0-9a-f]{7,40}$/.test(givenGit)) {
    throw new UsageError(
      `benchmarks/gpu_check.ts: --git must be a commit sha (7 to 40 hex digits), got "${givenGit}"`,
    );
  }
  // A stray comma (`adapter,`) is refused as every tool's lists are (model/usage.ts commaList).
  let wanted: string[];
  try {
    wanted = commaList(String(values.sections), "--sections", "section names");
  } catch (e) {
    throw new UsageError(`benchmarks/gpu_check.ts: ${(e as Error).message}`, { cause: e });
  }
  if (wanted.length === 0) {
    throw new UsageError(
      `benchmarks/gpu_check.ts: --sections "${values.sections}" names no section; known: ${
        SECTIONS.join(", ")
      }`,
    );
  }
  for (const s of wanted) {
    if (!(SECTIONS as readonly string[]).includes(s)) {
      throw new UsageError(
        `benchmarks/gpu_check.ts: unknown section "${s}"; known: ${SECTIONS.join(", ")}`,
      );
    }
  }
  const outDir = Deno.env.get("OUT");
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const outPath = values.out ??
    (outDir ? `${outDir}/gpu_check.json` : `results/perf/gpu_check-${stamp}.json`);
  checkReportPath(outPath, values.out !== undefined ? "--out" : outDir ? "$OUT" : "the report");
  // The tune section's table goes beside the report: checked now too, as the report's path (a
  // folder there would fail the section after minutes of GPU time).
  const tablePath = outPath.replace(/(\.json)?$/, "-tuning.json");
  if (wanted.includes("tune")) {
    checkOutputFile(
      "benchmarks/gpu_check.ts: the tune section's table",
      tablePath,
      "move it away or give another --out (the table is written beside the report)",
    );
  }
  const t0 = performance.now();
  const elapsedS = opts.elapsedS ?? (() => (performance.now() - t0) / 1000);
  const overBudget = (): string | undefined => {
    const elapsed = elapsedS();
    return elapsed > budgetS ? `budget: ${round(elapsed, 0)} s > ${budgetS} s` : undefined;
  };
  const git = reportGit({ ...gitState(), tracked: codeTracked() }, givenGit);
  const report: Record<string, unknown> = {
    started: new Date().toISOString(),
    args,
    git: `${git.sha}${git.dirty ? "+dirty" : ""}`,
    ...(git.note === undefined ? {} : { gitNote: git.note }),
    quick,
    deno: Deno.version.deno,
    tfjs: tf.version.tfjs,
    sections: {},
  };
  tunedTable = undefined; // a table of an earlier call in this process is not this run's
  const sections = report.sections as Record<string, unknown>;
  // The variants set the kernels' options themselves; these variables would override them
  // (HYPERPROMPT_WEBGPU_KERNELS=0 made every variant tfjs's stock kernels, so `correctness`
  // compared stock with stock and passed). They are set aside for the run, and recorded.
  const ignored: Record<string, string> = {};
  for (const name of KERNEL_ENV) {
    const value = Deno.env.get(name);
    if (value !== undefined && value !== "") ignored[name] = value;
  }
  if (Object.keys(ignored).length > 0) {
    report.envIgnored = ignored;
    console.log(`gpu_check: ignoring ${JSON.stringify(ignored)} (the variants set the kernels)`);
  }
  for (const name of Object.keys(ignored)) Deno.env.delete(name);
  const backpropBefore = installedBackprop();
  try {
    return await runSections();
  } finally {
    setBackprop(backpropBefore);
    for (const [name, value] of Object.entries(ignored)) Deno.env.set(name, value);
  }

  async function runSections(): Promise<Record<string, unknown>> {
    quietWaylandProbe();
    raiseWebgpuLimits(); // before the backend starts: more variables per AdamW dispatch
    await tf.setBackend("webgpu");
    await tf.ready();
    // Every section trains with the backward pass bench runs, unless it says otherwise (the
    // memory rows and the t5 section's other-backprop variant name theirs).
    report.backprop = installBenchBackprop(benchBackprop);
    console.log(`gpu_check: backend ${tf.getBackend()}, report -> ${outPath}`);
    const save = () => writeFileAtomic(outPath, JSON.stringify(report, null, 2) + "\n");
    const ctx = (s: Section): SectionContext => ({
      partial: async (out) => {
        sections[s] = out;
        await save();
      },
      overBudget,
    });
    const run: Record<Section, () => Promise<Record<string, unknown>>> = {
      adapter: adapterSection,
      correctness: () => correctnessSection(quick),
      tune: () => tuneSection(quick, tablePath, git),
      matmul: () => matmulSection(quick, ctx("matmul")),
      encoder: () => encoderSection(quick, ctx("encoder")),
      t5: () => t5Section(quick, ctx("t5")),
      memory: () =>
        memorySection(quick, ctx("memory"), {
          run: opts.runCommand ?? denoCommandRunner,
          createOptimizer: opts.createOptimizer ?? createOptimizer,
        }),
    };
    for (const s of SECTIONS) {
      if (!wanted.includes(s)) continue;
      const over = overBudget();
      if (over !== undefined) {
        sections[s] = { skipped: over };
        console.log(`gpu_check: ${s} skipped (budget)`);
        continue;
      }
      const s0 = performance.now();
      try {
        sections[s] = { ...(await run[s]()), seconds: round((performance.now() - s0) / 1000, 1) };
      } catch (e) {
        // What the section saved before it threw (e.g. the t5 variants measured) stays.
        const saved = sections[s] as Record<string, unknown> | undefined;
        const failed: Record<string, unknown> = {
          ...saved,
          error: e instanceof Error ? `${e.message}\n${e.stack}` : String(e),
        };
        sections[s] = failed;
        try {
          useVariant(STOCK);
        } catch (e2) {
          // e.g. the device was lost: recorded, and the report is still written and the next
          // sections tried, rather than the run ending here with this section unsaved.
          failed["restoreError"] = errorText(e2);
        }
      }
      console.log(`gpu_check: ${s} ${JSON.stringify(sections[s])}`);
      report.seconds = round((performance.now() - t0) / 1000, 1);
      report.numTensors = tf.memory().numTensors;
      await writeFileAtomic(outPath, JSON.stringify(report, null, 2) + "\n");
    }
    console.log(`gpu_check: done in ${report.seconds} s; wrote ${outPath}`);
    return report;
  }
}

/** Environment variables that override the custom kernels' options (`model/webgpu/mod.ts`). */
const KERNEL_ENV = ["HYPERPROMPT_WEBGPU_KERNELS", "HYPERPROMPT_WEBGPU_SUBMIT_BATCH"] as const;

/** Options of {@link main} (tests). */
export interface GpuCheckOptions {
  /**
   * Seconds since the start, read before each section, variant and row for `--budget-s`
   * (default: the wall clock).
   */
  readonly elapsedS?: () => number;
  /**
   * Runs `nvidia-smi` for the `memory` section (default device_memory.ts `denoCommandRunner`,
   * each call stopped after 20 s; tests inject a fake).
   */
  readonly runCommand?: CommandRunner;
  /** Makes the `memory` rows' AdamW (default optim.ts `createOptimizer`; tests make it throw). */
  readonly createOptimizer?: typeof createOptimizer;
}

/** What the `memory` section's rows run nvidia-smi with and build their optimizer with. */
interface MemoryIo {
  readonly run: CommandRunner;
  readonly createOptimizer: typeof createOptimizer;
}

/** Options of {@link cli} (tests capture the output and replace the check). */
export type GpuCheckCliOptions = CliOptions;

/**
 * The command line: `--help` prints {@link GPU_CHECK_USAGE}; otherwise {@link main}, with an
 * error printed as one line instead of an uncaught stack trace.
 *
 * @param args command-line arguments
 * @param opts output sinks and the check
 * @returns the exit code: 0 the report was written (or `--help`), 1 a failure outside the
 *   sections, 2 bad arguments (nothing run)
 */
export function cli(args: string[], opts: GpuCheckCliOptions = {}): Promise<number> {
  return runCli(main, args, GPU_CHECK_USAGE, opts);
}

if (import.meta.main) {
  const code = await cli(Deno.args);
  if (code !== 0) Deno.exit(code);
}
