/**
 * `deno task perf`: engine speed on this machine, per tfjs backend.
 *
 * For each backend (cpu, wasm, wasm+blas; webgpu when a non-fallback adapter exists, or with
 * `--include-fallback-webgpu`) it measures:
 *
 * - float32 `matMul` GFLOP/s at n×n×n (median of 3 batches after warm-up; a batch queues its
 *   products and reads back one element of the last one, which waits for all of them);
 * - one training step (forward + backward + AdamW from benchmarks/optim.ts) of T5-shaped workloads: a self-contained
 *   T5-style encoder block ("block", the reference workload of shared/reference/engine-notes.md)
 *   and the real T5 from model/t5.ts (forward + crossEntropyLoss) at tiny and T5 1.1 Small shape;
 *   milliseconds per step, tokens/s, and effective GFLOP/s = matmul FLOPs of the step / time.
 *
 * Results are written atomically to `results/perf/<date>-<backends>.json` with the machine (CPU
 * model, cores, OS), versions and git commit.
 *
 * On wasm backends it also times the elementwise work behind the fused ops in ns per element: the
 * JavaScript loops against the SIMD kernels.
 *
 * Options: `--backends cpu,wasm,wasm+blas` `--sizes 256,512,1024,2048` `--workloads block,t5:tiny-v1_1,...`
 * `--quick` (CI: small shapes, seconds) `--include-fallback-webgpu` `--steps N` `--profile`
 * (per-kernel times of one step) `--out-dir DIR` `--no-save` `--max-seconds S` (skip a
 * measurement whose estimate exceeds S seconds, or time it once, with a line saying so, when only
 * its full count would) `--rounds N` (repeat the backend list N times so
 * that A/B variants alternate). A backend written `wasm+blas/stock` (or `wasm/stock`) keeps tfjs's
 * own wasm elementwise kernels, for before/after comparisons of model/wasm_kernels.ts;
 * `webgpu/stock` runs tfjs's own webgpu kernels (no model/webgpu/ kernels, op-by-op optimizer).
 * `wasm+blas/no-heads` and `webgpu/no-heads` unregister the attention head products of
 * model/heads.ts, so heads are split and merged by transposes (before/after of that change);
 * `webgpu/ungrouped` updates the optimizer's parameters one per dispatch instead of in groups
 * (`groupUpdates` of model/webgpu/mod.ts).
 * `--optimizer adamw|adafactor` (default adamw; Adafactor's factored state is what lets T5 1.1 Base
 * fit the 4 GiB wasm heap). Each step also reports the tensor bytes between steps, the wasm heap
 * size before and after it (the process's high-water mark: a workload that does not grow it
 * reports an earlier one's) and the process RSS; with `--profile`, the peak tensor bytes.
 *
 * A T5 workload written `t5:<preset>:B,Li,Lt/M` runs each step as B/M micro-batches of M with
 * summed gradients and one update (the trainer's `microBatchSize`, benchmarks/trainer.ts
 * `lossAndGrads`), so batches whose activations exceed tfjs's 4 GiB wasm heap can be measured;
 * tokens/s and effective GFLOP/s count the whole batch of B. On wasm the micro-batch is chosen
 * (at most M) so that the estimated peak fits the heap, by the estimate and margin `deno task
 * bench`'s preflight uses for wasm runs (benchmarks/memory.ts, benchmarks/device_memory.ts), for
 * the kernels and backward pass installed and the optimizer; a workload that cannot fit at all is
 * skipped with the reason ({@link planWasmT5}) instead of aborting the wasm module. `t5:<preset>@N:…`
 * gives the model N encoder and N decoder layers instead of the preset's (a layer's shapes at a
 * fraction of the time, e.g. to list which matmul kernels one layer of T5 1.1 Base runs).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { requestTfjsAdapter } from "../model/webgpu/adapter.ts";
import process from "node:process";
import { type BackendInfo, selectBackend } from "../model/backend.ts";
import { ignoreFileSizeSignal } from "../model/file_size_signal.ts";
import { preset as getPreset, type T5Config } from "../model/config.ts";
import { crossEntropyLoss, disposeT5, forward, initT5, shiftRight } from "../model/t5.ts";
import { t5Flops } from "../model/accounting.ts";
import {
  type BackpropMode,
  estimateTrainingMemory,
  type KernelSet,
  largestFittingMicroBatch,
} from "./memory.ts";
import { fmtGb, WASM_HEAP_BYTES, wasmHeapMargin } from "./device_memory.ts";
import { lowMemoryBackpropInstalled } from "../model/backprop.ts";
import { createOptimizer, type Optimizer, withTrainingRestored } from "./optim.ts";
import { lossAndGrads } from "./trainer.ts";
import { DEFAULT_TRAIN, firstRepeat } from "./spec.ts";
import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";
import { activeSimdKernels, wasmBackendMemory } from "../model/wasm_simd.ts";
import {
  dropoutMaskParams,
  fillDropoutMask,
  gatedGeluRows,
  RMS_NORM,
  updatePathsTaken,
} from "../model/fused.ts";
import { checkOutputFolder, entryExists, writeFileAtomic } from "../model/fs.ts";
import {
  type CliOptions,
  commaList,
  decimalNumber,
  flagError,
  type FlagValues,
  parseFlags,
  runCli,
  UsageError,
  withHelpPointer,
} from "../model/usage.ts";
import { countGpuWork, hostOnlySteps } from "../model/webgpu/counters.ts";
import { timeQueued } from "./queued_timing.ts";
import {
  resetWebgpuKernelStats,
  webgpuKernelsInstalled,
  type WebgpuKernelStats,
  webgpuKernelStats,
} from "../model/webgpu/mod.ts";
import { HEAD_CONTEXT, HEAD_SCORES } from "../model/heads.ts";
import { wasmMatMulState } from "../model/wasm_kernels.ts";
import { uniformValues } from "./rng.ts";
import { gitState, readCpuinfo } from "./provenance.ts";
import { quietWaylandProbe } from "../model/webgpu/wsi_env.ts";

/** One matmul measurement. */
export interface MatMulResult {
  /** Matrix size n (n×n times n×n). */
  n: number;
  /** GFLOP/s of the median batch (2n³ FLOPs per product). */
  gflops: number;
  /**
   * Milliseconds per product of the median, fastest and slowest batch (a batch's time / its
   * products: the products of a batch are queued and only its last one is waited for).
   */
  medianMs: number;
  minMs: number;
  maxMs: number;
  /** Products per timed batch (after warm-up). */
  reps: number;
  /** Timed batches. Absent in reports from before batching: each product was waited for alone. */
  batches?: number;
}

/** One training-step measurement. */
export interface StepResult {
  /** Workload name, e.g. "block" or "t5:t5-v1_1-small". */
  workload: string;
  /** Shapes: batch, input (encoder) length, target (decoder) length, model sizes. */
  shape: Record<string, number | string>;
  /** Median, fastest and slowest milliseconds per step (forward + backward + Adam). */
  medianMs: number;
  minMs: number;
  maxMs: number;
  reps: number;
  /** (input + target tokens of the batch) / median step time. */
  tokensPerSec: number;
  /** Matmul FLOPs of one training step (forward + backward) for the whole batch. */
  trainFlops: number;
  /** Where trainFlops came from. */
  flopsSource: string;
  /** trainFlops / median step time, in GFLOP/s. */
  effectiveGflops: number;
  /** Optimizer (benchmarks/optim.ts) and how it ran: "adamw" or "adafactor", plus the path. */
  optimizer: string;
  /** Median milliseconds of the optimizer update within a timed step (host time of `apply`). */
  optimizerMs: number;
  /**
   * With --profile: peak bytes of tfjs-tracked tensors during one step (`tf.profile().peakBytes`).
   * tfjs counts a buffer once per tensor that views it (reshapes, identities), so this is an upper
   * bound of the memory the tensors occupy; `wasmHeapBytes` is the real figure on wasm.
   */
  peakTensorBytes?: number;
  /** Bytes of tfjs-tracked tensors between steps (weights and optimizer state). */
  tensorBytes: number;
  /**
   * wasm backends: size of the wasm heap after the steps: the high-water mark of the whole process
   * so far (wasm memory never shrinks, and the wasm backends share it), not of this workload alone.
   */
  wasmHeapBytes?: number;
  /**
   * wasm backends: size of the wasm heap before this workload was allocated. Equal to
   * `wasmHeapBytes` when the workload did not grow the heap: it then used at most that much, a
   * figure set by earlier work in the process (the matMuls, earlier workloads or backends; run the
   * workload alone in its process for its own peak).
   */
  wasmHeapBytesBefore?: number;
  /**
   * wasm backends, T5 workloads: the peak that {@link planWasmT5} estimated for the step as run
   * (benchmarks/memory.ts, the micro-batch chosen), to compare with `wasmHeapBytes` (a workload
   * run alone in its process: the heap's high-water mark is 1.04–1.15 times it with OpenBLAS,
   * 1.13–1.23 on plain wasm, benchmarks/device_memory.ts `wasmHeapMargin`).
   */
  wasmHeapEstimateBytes?: number;
  /**
   * With `wasmHeapEstimateBytes`: whether that estimate counted tfjs-wasm's own matMul (XNNPACK's
   * packed copies, benchmarks/memory.ts `MemoryInput.xnnMatMul`: plain wasm) or not (OpenBLAS).
   */
  wasmXnnMatMul?: boolean;
  /** Resident set size of the process after the steps. */
  rssBytes: number;
  /** Process CPU milliseconds per timed step (all threads; less sensitive to a busy host). */
  cpuMsPerStep: number;
  /** tf.memory().numTensors after the 2nd and the last step (a leak shows as a difference). */
  numTensors: [number, number];
  /** With --profile: the kernels with the largest total time in one step, ms. */
  profile?: { kernel: string; ms: number; count: number }[];
  /**
   * webgpu: compute dispatches recorded in the last timed step (tfjs programs and the in-place
   * ones). Each costs host time (JavaScript, bind group, uniforms) whatever its size, so on a
   * fast GPU their number bounds the step time from below; it does not depend on the adapter.
   */
  gpuDispatches?: number;
  /**
   * webgpu: ms of 2 steps run with `GPUQueue.submit` a no-op (`hostOnlySteps`,
   * `model/webgpu/counters.ts`): everything recorded, nothing run on the device, i.e. the host's
   * share of a step on this machine. A step time close to it is bound by the host.
   */
  hostOnlyMs?: number[];
  /** webgpu: dispatches per command buffer (tfjs's `WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE`). */
  gpuSubmitBatch?: number;
  /**
   * webgpu with the custom kernels: the `BatchMatMul` calls of the last timed step by tiled
   * kernel (tile, `/kN` for a K split into N slices) and by reason for the stock kernel
   * (`webgpuKernelStats`).
   */
  gpuMatMuls?: WebgpuKernelStats;
}

/** A skipped measurement and why. */
export interface Skipped {
  what: string;
  why: string;
}

/** Everything measured for one backend. */
export interface BackendResult {
  backend: string;
  info?: BackendInfo;
  /** Why the backend could not start (nothing of it measured; exit 1 when `--backends` named it). */
  error?: string;
  matmul: MatMulResult[];
  /**
   * wasm backends: nanoseconds per element of elementwise work on the heap, the JavaScript
   * reference loops of `model/fused.ts` against the SIMD kernels of `model/wasm_simd.ts`.
   */
  elementwise?: { name: string; nsPerElement: number }[];
  steps: StepResult[];
  skipped: Skipped[];
  /**
   * Measurements that threw (e.g. out of memory), with the error: the others are still saved,
   * and the command then exits 1.
   */
  failed?: { what: string; error: string }[];
}

/** The JSON written by `deno task perf`. */
export interface PerfReport {
  date: string;
  gitSha: string;
  machine: {
    cpuModel: string;
    hardwareConcurrency: number;
    osRelease: string;
    os: string;
    memoryGiB: number;
    /** 1/5/15-minute load averages at the end (a busy shared host slows wall-clock times). */
    loadavg: number[];
    /**
     * `DENO_WEBGPU_BACKEND` (wgpu's driver API: `vulkan`, `gl`; the adapter's name is the same
     * under each, its times are not), `(default)` when unset; absent in older reports.
     */
    webgpuBackend?: string;
  };
  versions: { deno: string; v8: string; typescript: string; tfjs: string };
  args: string[];
  backends: BackendResult[];
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** CPU seconds (user + system, all threads) this process has used. */
function cpuSeconds(): number {
  try {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  } catch {
    return NaN;
  }
}

/** Batches of queued products {@link timeMatMul} times (median, fastest and slowest of these). */
export const MATMUL_BATCHES = 3;

/** Untimed products before {@link timeMatMul}'s batches, in `deno task perf`. */
const MATMUL_WARM = 2;

/**
 * How many products per batch `deno task perf` times at a matMul size: about 2 s in all over
 * {@link MATMUL_BATCHES} batches by the estimate `est` (2 to 10; 2 with `quick`; 10 when
 * nothing is known, `est` 0), 1 when that count would take longer than `maxSeconds` by the
 * bound, none (skipped) when even 1 would.
 *
 * @param est seconds per product from the rate at the size before (0: none before)
 * @param bound the seconds per product the limit is checked with (`est`, or the first size's
 *   product timed first)
 * @param maxSeconds `--max-seconds`
 * @param quick `--quick`
 * @returns the products per batch, the time the usual count would take, and the estimate
 *   that skips the size (undefined: measured)
 */
export function matmulReps(
  est: number,
  bound: number,
  maxSeconds: number,
  quick: boolean,
): { nrep: number; full: number; skip?: number } {
  const products = (reps: number) => MATMUL_WARM + MATMUL_BATCHES * reps;
  let nrep = quick
    ? 2
    : Math.max(2, Math.min(10, Math.floor(2 / MATMUL_BATCHES / Math.max(est, 1e-3))));
  const full = bound * products(nrep);
  if (full > maxSeconds) nrep = 1;
  const one = bound * products(nrep);
  return one > maxSeconds ? { nrep, full, skip: one } : { nrep, full };
}

/**
 * The seconds of one n×n×n matMul, its result read back, on the current backend: the first
 * size's estimate for `--max-seconds` (no rate is known yet). The first product on a backend
 * includes its warm-up (kernel compilation, allocation), so this overestimates: a limit it
 * keeps is kept.
 *
 * @param n the size
 * @returns seconds
 */
export async function probeMatMulSeconds(n: number): Promise<number> {
  const a = tf.tensor2d(uniformValues(n * n, n), [n, n]);
  const b = tf.tensor2d(uniformValues(n * n, n + 1), [n, n]);
  try {
    const t0 = performance.now();
    const c = tf.matMul(a, b);
    try {
      await c.data();
    } finally {
      c.dispose();
    }
    return (performance.now() - t0) / 1000;
  } finally {
    tf.dispose([a, b]);
  }
}

/**
 * Times matmuls at n: `warm` untimed products, then {@link MATMUL_BATCHES} batches of `reps`
 * products, queued, each batch ended by one read of one element of its last product
 * (`timeQueued`, benchmarks/queued_timing.ts): the time covers every product's work but one
 * round trip to the device per batch, not per product (on webgpu a round trip per product
 * understated GFLOP/s, the more so the smaller n).
 *
 * @param n matrix size (n×n times n×n)
 * @param warm untimed products first
 * @param reps products per timed batch
 * @returns the rates of the batches (ms per product = batch time / reps)
 */
export async function timeMatMul(n: number, warm: number, reps: number): Promise<MatMulResult> {
  const a = tf.tensor2d(uniformValues(n * n, n), [n, n]);
  const b = tf.tensor2d(uniformValues(n * n, n + 1), [n, n]);
  let times: number[];
  try {
    times = (await timeQueued(() => tf.matMul(a, b), { reps, batches: MATMUL_BATCHES, warm }))
      .batchMs;
  } finally {
    tf.dispose([a, b]); // also when a product throws (the run goes on)
  }
  const med = median(times);
  return {
    n,
    gflops: (2 * n ** 3) / (med * 1e6),
    medianMs: med,
    minMs: Math.min(...times),
    maxMs: Math.max(...times),
    reps,
    batches: MATMUL_BATCHES,
  };
}

// ---------------------------------------------------------------------------------------------
// Workloads

/** A measured training step: its variables, loss, FLOPs and how to free it. */
export interface Workload {
  name: string;
  shape: Record<string, number | string>;
  tokens: number;
  trainFlops: number;
  flopsSource: string;
  vars: tf.Variable[];
  loss: () => tf.Scalar;
  /**
   * Loss and gradients of one step by another route (gradient accumulation through
   * benchmarks/trainer.ts `lossAndGrads`); absent: `tf.variableGrads(loss, vars)`.
   */
  grads?: () => Promise<{ value: tf.Scalar; grads: tf.NamedTensorMap }>;
  dispose: () => void;
}

interface BlockShape {
  batch: number;
  seq: number;
  dModel: number;
  dFf: number;
  heads: number;
}

/**
 * The engine-notes reference: one T5-style encoder block (pre-RMSNorm, self-attention without
 * 1/√d scaling, ReLU FFN), MSE loss against a fixed target.
 */
function blockWorkload(s: BlockShape): Workload {
  const { batch: B, seq: S, dModel: D, dFf: F, heads: H } = s;
  const dh = D / H;
  let seed = 1;
  const own = (t: tf.Tensor) => {
    const vr = tf.variable(t);
    t.dispose(); // the variable then owns its buffer (the in-place AdamW needs that)
    return vr;
  };
  const v = (shape: number[], scale: number) =>
    own(
      tf.tidy(() =>
        tf.tensor(uniformValues(shape.reduce((x, y) => x * y, 1), seed++), shape).mul(scale)
      ),
    );
  const w = {
    ln1: own(tf.ones([D])),
    q: v([D, D], D ** -0.5),
    k: v([D, D], D ** -0.5),
    v: v([D, D], D ** -0.5),
    o: v([D, D], D ** -0.5),
    ln2: own(tf.ones([D])),
    wi: v([F, D], D ** -0.5),
    wo: v([D, F], F ** -0.5),
  };
  const x = tf.tensor3d(uniformValues(B * S * D, 99), [B, S, D]);
  const target = tf.tensor3d(uniformValues(B * S * D, 98), [B, S, D]);
  const norm = (t: tf.Tensor2D, g: tf.Variable) =>
    tf.mul(tf.mul(t, tf.rsqrt(tf.add(tf.mean(tf.square(t), -1, true), 1e-6))), g) as tf.Tensor2D;
  const lin = (t: tf.Tensor2D, m: tf.Variable) => tf.matMul(t, m as tf.Tensor2D, false, true);
  const heads = (t: tf.Tensor) => t.reshape([B, S, H, dh]).transpose([0, 2, 1, 3]);
  const loss = () =>
    tf.tidy(() => {
      const x2 = x.reshape([B * S, D]) as tf.Tensor2D;
      const h1 = norm(x2, w.ln1);
      const q = heads(lin(h1, w.q));
      const k = heads(lin(h1, w.k));
      const vv = heads(lin(h1, w.v));
      const p = tf.softmax(tf.matMul(q, k, false, true));
      const ctx = tf.matMul(p, vv).transpose([0, 2, 1, 3]).reshape([B * S, D]) as tf.Tensor2D;
      const r1 = tf.add(x2, lin(ctx, w.o)) as tf.Tensor2D;
      const h2 = norm(r1, w.ln2);
      const out = tf.add(r1, lin(tf.relu(lin(h2, w.wi)) as tf.Tensor2D, w.wo));
      return tf.mean(tf.square(tf.sub(out, target.reshape([B * S, D])))) as tf.Scalar;
    });
  // Per token: q,k,v,o (4·2·D²), FFN (2·2·D·F), scores and context (2·2·S·D).
  const fwd = B * S * (8 * D * D + 4 * D * F + 4 * S * D);
  return {
    name: "block",
    shape: { batch: B, seq: S, dModel: D, dFf: F, heads: H },
    tokens: B * S,
    trainFlops: 3 * fwd,
    flopsSource: "analytic (3 × forward matmul FLOPs)",
    vars: Object.values(w),
    loss,
    dispose: () => tf.dispose([x, target, ...Object.values(w)]),
  };
}

/**
 * The T5 configuration of a t5 workload: its preset, with `@N` (`t5:<preset>@N:…`) N encoder and
 * N decoder layers instead of the preset's, e.g. to list what one layer of T5 1.1 Base runs.
 */
function workloadConfig(w: WorkloadSpec): T5Config {
  const config = getPreset(w.preset);
  return w.layers === undefined
    ? config
    : { ...config, numLayers: w.layers, numDecoderLayers: w.layers };
}

function t5Workload(w: WorkloadSpec): Workload {
  const config = workloadConfig(w);
  const [batch, inputLength, targetLength] = w.nums as [number, number, number];
  const microBatch = w.micro;
  const preset = w.layers === undefined ? w.preset : `${w.preset}@${w.layers}`;
  const model = initT5(config, { seed: 1 });
  const B = batch;
  const ids = new Int32Array(B * inputLength);
  const labels = new Int32Array(B * targetLength);
  for (let i = 0; i < ids.length; i++) ids[i] = 2 + ((i * 7919) % (config.vocabSize - 2));
  for (let i = 0; i < labels.length; i++) labels[i] = 2 + ((i * 104729) % (config.vocabSize - 2));
  const inputIds = tf.tensor2d(ids, [B, inputLength], "int32");
  const attentionMask = tf.ones([B, inputLength]) as tf.Tensor2D;
  const labelT = tf.tensor2d(labels, [B, targetLength], "int32");
  const decoderInputIds = shiftRight(labelT, config);
  const loss = () =>
    tf.tidy(() => {
      const { logits } = forward(model, { inputIds, attentionMask, decoderInputIds }, {
        training: true,
        dropoutSeed: 1,
      });
      return crossEntropyLoss(logits, labelT);
    });
  // Gradient accumulation exactly as the trainer runs it (benchmarks/trainer.ts lossAndGrads).
  const grads = microBatch === undefined || microBatch >= B ? undefined : () =>
    lossAndGrads(
      {
        model,
        instance: {
          name: "full-finetune",
          variables: new Map(),
          keepTaskPrefix: true,
          isBackboneTrainable: () => true,
          hooks: () => ({}),
          dispose: () => {},
        },
        train: { ...DEFAULT_TRAIN, batchSize: B, labelSmoothing: 0, microBatchSize: microBatch },
        seed: 1,
        taskNames: ["perf"],
        source: {
          next: () => {
            throw new Error("benchmarks/perf.ts: unused");
          },
          state: () => null,
          restore: () => {},
        },
      },
      {
        inputIds,
        attentionMask,
        decoderInputIds,
        labels: labelT,
        taskIds: new Array<number>(B).fill(0),
        numTokens: B * (inputLength + targetLength),
      },
      [...model.params.values()],
      1,
    );
  return {
    name: `t5:${preset}`,
    shape: {
      batch: B,
      inputLength,
      targetLength,
      dModel: config.dModel,
      dFf: config.dFf,
      layers: config.numLayers,
      heads: config.numHeads,
      vocab: config.vocabSize,
      ff: config.feedForwardProj,
      ...(grads === undefined ? {} : { microBatch: microBatch!, microBatches: B / microBatch! }),
    },
    tokens: B * (inputLength + targetLength),
    trainFlops: B * t5Flops(config, { inputLength, targetLength }).train,
    flopsSource: "model/accounting.ts t5Flops().train (matmul FLOPs)",
    vars: [...model.params.values()],
    loss,
    ...(grads === undefined ? {} : { grads }),
    dispose: () => {
      tf.dispose([inputIds, attentionMask, labelT, decoderInputIds]);
      disposeT5(model);
    },
  };
}

/** A parsed `--workloads` entry. */
export interface WorkloadSpec {
  kind: "block" | "t5";
  preset: string;
  nums: number[];
  /** Micro-batch size (gradient accumulation), t5 workloads only. */
  micro?: number;
  /** Encoder and decoder layers instead of the preset's (`t5:<preset>@N`), t5 workloads only. */
  layers?: number;
}

/**
 * Parse and validate a workload spec "block[:B,S,D,F,H]" or "t5:<preset>[@N][:B,Li,Lt[/M]]";
 * `/M` runs the batch of B as B/M micro-batches of M with summed gradients (M must divide B);
 * `@N` gives the model N encoder and N decoder layers.
 *
 * @throws UsageError naming the spec (it comes from `--workloads`) and what is wrong with it
 */
export function parseWorkload(spec: string): WorkloadSpec {
  const parts = spec.split(":");
  const nums = (s: string | undefined, n: number, def: number[]) => {
    if (s === undefined) return def;
    const v = s.split(",").map(decimalNumber);
    if (v.length !== n || v.some((x) => !Number.isInteger(x) || x <= 0)) {
      throw new UsageError(
        `--workloads "${spec}": expected ${n} positive integers`,
      );
    }
    return v;
  };
  if (parts[0] === "block" && parts.length <= 2) {
    const v = nums(parts[1], 5, [16, 64, 256, 1024, 4]);
    if (v[2]! % v[4]! !== 0) {
      throw new UsageError(
        `--workloads "${spec}": the width D ${v[2]} must be a multiple of ` +
          `the heads H ${v[4]}`,
      );
    }
    return { kind: "block", preset: "", nums: v };
  }
  if (parts[0] === "t5" && parts[1] !== undefined && parts.length <= 3) {
    const [preset, layerText, ...more] = parts[1].split("@") as [string, ...string[]];
    try {
      getPreset(preset);
    } catch (e) {
      // Its message lists the presets; say which workload named the unknown one.
      throw new UsageError(`--workloads "${spec}": ${(e as Error).message}`);
    }
    const layers = layerText === undefined ? undefined : decimalNumber(layerText);
    if (more.length > 0 || (layers !== undefined && !(Number.isInteger(layers) && layers > 0))) {
      throw new UsageError(
        `--workloads "${spec}": the layer count after "@" must be a ` +
          `positive integer`,
      );
    }
    const base = { kind: "t5" as const, preset, ...(layers === undefined ? {} : { layers }) };
    const [shape, micro, ...rest] = (parts[2] ?? "").split("/");
    const v = nums(shape === "" ? undefined : shape, 3, [8, 64, 16]);
    if (micro === undefined) return { ...base, nums: v };
    const m = decimalNumber(micro);
    if (rest.length > 0 || shape === "" || !Number.isInteger(m) || m <= 0 || v[0]! % m !== 0) {
      throw new UsageError(
        `--workloads "${spec}": the micro-batch after "/" must be a ` +
          `positive integer dividing the batch ${v[0]}`,
      );
    }
    return { ...base, nums: v, micro: m };
  }
  throw new UsageError(
    `unknown workload "${spec}" (block[:B,S,D,F,H] or ` +
      `t5:<preset>[@N][:B,Li,Lt[/M]])`,
  );
}

/** The kernels and backward pass a wasm T5 step runs with: what {@link planWasmT5} models. */
export interface WasmHeapModel {
  /**
   * The kernel set of benchmarks/memory.ts: `"fused-wasm-blas"` (the fused kernels and the
   * attention head products), `"fused-wasm"` (no head products: pure wasm, or `/no-heads`), or
   * `"composite"` (tfjs's own elementwise kernels, `/stock`).
   */
  readonly kernels: KernelSet;
  /** The backward pass installed (model/backprop.ts, unless `HYPERPROMPT_STOCK_BACKPROP=1`). */
  readonly backprop: BackpropMode;
  /**
   * Whether the products run on tfjs-wasm's own `BatchMatMul` (XNNPACK: benchmarks/memory.ts
   * `MemoryInput.xnnMatMul`, its packed copies of the weights), i.e. not on OpenBLAS.
   */
  readonly xnnMatMul: boolean;
}

/**
 * What the running wasm backend has installed: its kernel set, read from the kernels registered
 * now (model/fused.ts's fused kernels, model/heads.ts's head products), the backward pass
 * (`lowMemoryBackpropInstalled`), and the matmul kernels (model/wasm_kernels.ts
 * `wasmMatMulState`: `"blas"` sends every float32 product to OpenBLAS; `"transpose-fix"` and
 * `"stock"` run tfjs-wasm's own, XNNPACK's, with its packed copies).
 */
export function installedWasmHeapModel(): WasmHeapModel {
  const has = (kernel: string) => tf.getKernel(kernel, "wasm") !== undefined;
  return {
    kernels: !has(RMS_NORM) ? "composite" : has(HEAD_SCORES) ? "fused-wasm-blas" : "fused-wasm",
    backprop: lowMemoryBackpropInstalled() ? "low-memory" : "stock",
    xnnMatMul: wasmMatMulState().mode !== "blas",
  };
}

/** How a T5 workload is run on the wasm heap, or why it cannot be. */
export interface WasmPlan {
  /** Micro-batch size to use (the batch itself when it fits in one pass). */
  readonly micro: number;
  /** Estimated peak bytes at that micro-batch (benchmarks/memory.ts `estimateTrainingMemory`). */
  readonly bytes: number;
}

/**
 * Plans a T5 training step on the wasm heap with the model `deno task bench`'s preflight uses
 * (benchmarks/device_memory.ts): benchmarks/memory.ts's estimate of the step (weights,
 * gradients, the accumulator with micro-batches, the optimizer's state, and what one
 * micro-batch's forward and backward pass keep, for the kernels and backward pass given) against
 * {@link WASM_HEAP_BYTES} less its margin (device_memory.ts `wasmHeapMargin`: 15 %, 20 % on plain
 * wasm). The workload is the trainer's full
 * fine-tuning (method `mtl`, one task) with the preset's dropout. Returns the largest micro-batch
 * (a divisor of the batch, at most the one asked for) whose estimate fits, or a reason when none
 * does.
 *
 * @param w the workload (its `/M`, if any, is an upper bound)
 * @param optimizer which optimizer's state to count (benchmarks/optim.ts defaults)
 * @param heap the kernels and backward pass the step runs with ({@link installedWasmHeapModel})
 * @returns the plan, or why the workload cannot fit
 */
export function planWasmT5(
  w: WorkloadSpec,
  optimizer: "adamw" | "adafactor",
  heap: WasmHeapModel,
): WasmPlan | string {
  const config = workloadConfig(w);
  const [batch, inputLength, targetLength] = w.nums as [number, number, number];
  const input = {
    config,
    method: "mtl",
    optimizer: { kind: optimizer },
    batchSize: batch,
    inputLength,
    targetLength,
    dropout: config.dropoutRate > 0,
    kernels: heap.kernels,
    backprop: heap.backprop,
    xnnMatMul: heap.xnnMatMul,
  };
  const margin = wasmHeapMargin(heap.xnnMatMul);
  const micro = largestFittingMicroBatch(input, WASM_HEAP_BYTES, margin, w.micro);
  if (micro !== undefined) {
    return { micro, bytes: estimateTrainingMemory({ ...input, microBatchSize: micro }).peak };
  }
  const one = estimateTrainingMemory({ ...input, microBatchSize: 1 });
  const fixed = one.weights + one.gradients + one.accumulator + one.optimizerState;
  return `estimated peak ${fmtGb(one.peak)} even at micro-batch 1 (weights, gradients${
    one.accumulator > 0 ? ", accumulator" : ""
  } and ${optimizer === "adamw" ? "AdamW moments" : "Adafactor state"} alone: ${
    fmtGb(fixed)
  }) exceeds ${fmtGb(WASM_HEAP_BYTES * (1 - margin))} usable (${
    Math.round(100 * (1 - margin))
  }%) of the wasm heap's ${fmtGb(WASM_HEAP_BYTES)}; ${heap.kernels} kernels, ${heap.backprop} ` +
    `backward pass${optimizer === "adamw" ? "; try --optimizer adafactor" : ""}`;
}

/** Allocates a parsed workload (its model, inputs and loss); the caller calls `dispose`. */
export function makeWorkload(w: WorkloadSpec): Workload {
  const n = w.nums as [number, number, number, number, number];
  if (w.kind === "block") {
    return blockWorkload({ batch: n[0], seq: n[1], dModel: n[2], dFf: n[3], heads: n[4] });
  }
  return t5Workload(w);
}

/**
 * trainFlops of a workload without allocating it (for the time estimate): the `trainFlops` that
 * {@link makeWorkload} gives it.
 *
 * @param w the parsed workload
 * @returns matmul FLOPs of one training step (forward + backward) for the whole batch
 */
export function estimateFlops(w: WorkloadSpec): number {
  const n = w.nums as [number, number, number, number, number];
  if (w.kind === "block") {
    const [B, S, D, F] = n;
    return 3 * B * S * (8 * D * D + 4 * D * F + 4 * S * D);
  }
  return n[0] * t5Flops(workloadConfig(w), { inputLength: n[1], targetLength: n[2] }).train;
}

async function timeSteps(
  w: Workload,
  warm: number,
  reps: number,
  profile: boolean,
  optimizer: "adamw" | "adafactor",
) {
  // The project's optimizers (benchmarks/optim.ts): on wasm AdamW updates each variable in place
  // in one SIMD pass, on webgpu with one fused kernel, elsewhere op by op in one tidy per
  // variable. (tf.train.adam keeps every variable's temporaries alive until the end of one big
  // tidy, ~12× the parameter bytes, which overflows the 4 GiB wasm heap at T5 1.1 Small size.)
  const opt = createOptimizer({ kind: optimizer });
  const params = new Map(w.vars.map((v) => [v.name, v]));
  const optTimes: number[] = [];
  updatePathsTaken(true); // record the optimizer paths of these steps only
  const step = async () => {
    const { value, grads } = w.grads ? await w.grads() : tf.variableGrads(w.loss, w.vars);
    try {
      const t0 = performance.now();
      opt.apply(params, new Map(Object.entries(grads)), 1e-4);
      optTimes.push(performance.now() - t0);
      await value.data();
    } finally {
      tf.dispose([value, ...Object.values(grads)]);
    }
  };
  // A step that throws (e.g. the wasm heap ran out) frees the optimizer's state too: the run goes
  // on with the next workload.
  try {
    return await measureSteps({ step, opt, params, optTimes }, warm, reps, profile);
  } finally {
    opt.dispose();
  }
}

/**
 * The steps of {@link timeSteps}: `step` trains `params` with `opt`, timing it in `optTimes`;
 * on webgpu then 2 host-only steps, after which `params` and `opt` hold what the last timed step
 * left (exported for `perf_test.ts`, which checks that).
 *
 * @param run the step, its optimizer and variables, and where `step` records optimizer times
 * @param warm untimed steps first
 * @param reps timed steps
 * @param profile one more step under `tf.profile`
 * @returns the step's measurements
 */
export async function measureSteps(
  { step, opt, params, optTimes }: {
    step: () => Promise<void>;
    opt: Optimizer;
    params: Map<string, tf.Variable>;
    optTimes: number[];
  },
  warm: number,
  reps: number,
  profile: boolean,
) {
  const times: number[] = [];
  let after2 = 0;
  let cpu0 = 0;
  let gpuDispatches: number | undefined;
  let gpuMatMuls: WebgpuKernelStats | undefined;
  for (let i = 0; i < warm + reps; i++) {
    if (i === warm) cpu0 = cpuSeconds();
    const last = i === warm + reps - 1;
    const stopCounting = last ? countGpuWork() : undefined;
    if (stopCounting !== undefined) resetWebgpuKernelStats();
    const t0 = performance.now();
    try {
      await step();
    } finally {
      if (stopCounting) {
        gpuDispatches = stopCounting().dispatches;
        if (webgpuKernelsInstalled() !== undefined) gpuMatMuls = webgpuKernelStats();
      }
    }
    const dt = performance.now() - t0;
    if (i === 1) after2 = tf.memory().numTensors;
    if (i >= warm) times.push(dt);
  }
  // The optimizer's share (host time of opt.apply; on webgpu the queued kernels are not waited
  // for, so there it is the recording cost only).
  const optimizerMs = median(optTimes.slice(warm));
  const optimizerPaths = updatePathsTaken();
  const cpuMsPerStep = ((cpuSeconds() - cpu0) * 1000) / reps;
  const numTensors: [number, number] = [after2, tf.memory().numTensors];
  let hostOnlyMs: number[] | undefined;
  if (tf.getBackend() === "webgpu") {
    // Host-only steps leave never-computed weights and moments behind: put the real ones back
    // (the --profile step below trains from them).
    hostOnlyMs = await withTrainingRestored(params, opt, () => hostOnlySteps(step, 2));
  }
  // With --profile, one more step under tf.profile: per-kernel times and the peak of tfjs-tracked
  // tensor bytes. (Not by default: it costs a step, and tfjs's profiler overflows the call stack
  // computing the peak of a step with ~10⁵ kernels, e.g. T5 1.1 Base as 32 micro-batches.)
  let prof: StepResult["profile"];
  let peakBytes: number | undefined;
  if (profile) {
    try {
      const info = await tf.profile(step);
      peakBytes = info.peakBytes;
      const agg = new Map<string, { ms: number; count: number }>();
      for (const k of info.kernels) {
        const ms = typeof k.kernelTimeMs === "number" ? k.kernelTimeMs : 0;
        const e = agg.get(k.name) ?? { ms: 0, count: 0 };
        e.ms += ms;
        e.count++;
        agg.set(k.name, e);
      }
      prof = [...agg.entries()].map(([kernel, e]) => ({ kernel, ms: e.ms, count: e.count }))
        .sort((a, b) => b.ms - a.ms);
    } catch (e) {
      console.log(`    (--profile failed: ${e instanceof Error ? e.message : String(e)})`);
    }
  }
  const tensorBytes = tf.memory().numBytes;
  return {
    times,
    cpuMsPerStep,
    numTensors,
    prof,
    peakBytes,
    tensorBytes,
    optimizerMs,
    optimizerPaths,
    gpuDispatches,
    gpuMatMuls,
    hostOnlyMs,
  };
}

/** Bytes of the wasm backend's heap (its high-water mark: wasm memory never shrinks). */
function wasmHeapBytes(): number | undefined {
  if (tf.getBackend() !== "wasm") return undefined;
  try {
    return wasmBackendMemory(tf.backend() as BackendWasm).buffer.byteLength;
  } catch {
    return undefined;
  }
}

/**
 * Best of 5 timings, in ns per element over `n` elements, of the JavaScript loops and the SIMD
 * kernels (when active) behind the fused wasm ops, on buffers of the wasm heap.
 */
function timeElementwise(n: number): { name: string; nsPerElement: number }[] {
  const backend = tf.backend() as BackendWasm;
  const [a, b, out] = [uniformValues(n, 1), uniformValues(n, 2), new Float32Array(n)].map((v) =>
    tf.tensor(v)
  ) as [tf.Tensor, tf.Tensor, tf.Tensor];
  const [av, bv, ov] = [a, b, out].map((t) => backend.typedArrayFromHeap(t) as Float32Array) as [
    Float32Array,
    Float32Array,
    Float32Array,
  ];
  const mask = dropoutMaskParams(0.1, 1);
  const cases: [string, () => void][] = [
    ["dropout mask (JavaScript)", () => fillDropoutMask(ov, mask)],
    ["gated GELU (JavaScript)", () => gatedGeluRows(ov, av, bv)],
  ];
  const simd = activeSimdKernels();
  if (simd !== undefined) {
    const [o, x, y] = [ov.byteOffset, av.byteOffset, bv.byteOffset];
    cases.push(
      [
        "dropout mask (SIMD)",
        () => simd.dropout_mask(o, n, 0, mask.key0, mask.key1, mask.threshold, mask.scale),
      ],
      ["gated GELU (SIMD)", () => simd.gated_gelu(o, x, y, n)],
      ["exp (SIMD)", () => simd.exp(o, x, n)],
      ["add in place (SIMD)", () => simd.add_into(o, x, n)],
    );
  }
  const result = cases.map(([name, f]) => {
    let best = Infinity;
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      f();
      best = Math.min(best, performance.now() - t0);
    }
    return { name, nsPerElement: (best * 1e6) / n };
  });
  tf.dispose([a, b, out]);
  return result;
}

/**
 * How benchmarks/optim.ts ran the optimizer's updates in the timed steps, as recorded by
 * model/fused.ts (`updatePathsTaken`): e.g. `in place`, or for Adafactor `matrices in place,
 * vectors op by op`; `op by op` where no fused update ran.
 */
export function optimizerPath(
  kind: "adamw" | "adafactor",
  paths: ReturnType<typeof updatePathsTaken>,
): string {
  const show = (p: readonly string[] | undefined) => (p === undefined ? "op by op" : p.join(" + "));
  if (kind === "adamw") return show(paths.adamw);
  const m = show(paths.adafactorFactored);
  const v = show(paths.adafactorUnfactored);
  return m === v ? m : `matrices ${m}, vectors ${v}`;
}

// ---------------------------------------------------------------------------------------------
// Machine and versions

function cpuModel(): string {
  const txt = readCpuinfo();
  const m = txt.match(/^model name\s*:\s*(.+)$/m);
  const flags = txt.match(/^flags\s*:\s*(.+)$/m)?.[1] ?? "";
  const simd = ["avx2", "avx512f", "avx512_bf16", "amx_tile"].filter((f) =>
    flags.split(" ").includes(f)
  );
  return `${m?.[1]?.trim() ?? "unknown"}${simd.length ? ` [${simd.join(",")}]` : ""}`;
}

function memoryGiB(): number {
  try {
    return Math.round(Deno.systemMemoryInfo().total / 2 ** 30 * 10) / 10;
  } catch {
    return 0;
  }
}

// ---------------------------------------------------------------------------------------------
// Main

const QUICK_WORKLOADS = ["block:2,16,64,128,4", "t5:tiny-v1_1:2,16,8"];
/**
 * The issue's shapes: the tiny presets and T5 1.1 Small and Base at batch 32, 128 input / 16
 * target tokens (on wasm split into micro-batches that fit the heap, see {@link planWasmT5}),
 * plus T5 1.1 Small at batch 4 and the encoder block of the engine notes for comparison with
 * earlier measurements.
 */
export const DEFAULT_WORKLOADS: readonly string[] = [
  "block",
  "t5:tiny-v1_1:32,64,16",
  "t5:mini-v1_1:16,64,16",
  "t5:t5-v1_1-small:4,128,16",
  "t5:t5-v1_1-small:32,128,16",
  "t5:t5-v1_1-base:32,128,16",
];

/**
 * The backends measured without `--backends` (webgpu only on a real adapter; naming it in
 * `--backends` measures any adapter, a software one with a warning).
 */
export const DEFAULT_BACKENDS: readonly string[] = ["cpu", "wasm", "wasm+blas", "webgpu"];

/** `deno task perf --help`. */
export const PERF_USAGE =
  `deno task perf [options]   training-step and matMul speed per tfjs backend

  --backends LIST       cpu,wasm,wasm+blas,webgpu (default list: all, webgpu only on a real
                        adapter; naming webgpu measures any adapter, a software one too);
                        append /stock to wasm, wasm+blas or webgpu for tfjs's own kernels,
                        /no-heads to wasm+blas or webgpu for heads split by transposes,
                        /ungrouped to webgpu for one optimizer dispatch per parameter
  --workloads LIST      ";"- or space-separated: block[:B,S,D,F,H] | t5:<preset>[@N][:B,Li,Lt[/M]]
                        (M: micro-batch upper bound; on wasm the heap plan may pick less;
                        @N: N encoder and N decoder layers instead of the preset's);
                        "" for none (matMuls only); default: ${DEFAULT_WORKLOADS.join(" ")}
  --sizes LIST          matMul sizes n (n×n×n), default 256,512,1024,2048; "" for none
  --steps N             timed steps per workload after 2 warm-up steps (default 5)
  --optimizer NAME      adamw (default) or adafactor
  --rounds N            repeat the backend list N times (A/B variants alternate; default 1)
  --max-seconds S       skip a measurement estimated over S seconds (default 60); one whose
                        full count only would exceed S is timed once (1 step, or 1 product per
                        batch), with a line saying so. A matMul size's estimate scales the rate
                        at the size before (the first size: one product timed first); a
                        workload's, the median matMul rate of --sizes (1 GFLOP/s without
                        sizes): with small sizes they are high
  --profile             per-kernel times of one step (tf.profile)
  --include-fallback-webgpu   also measure a software WebGPU adapter
  --quick               CI mode, seconds: default sizes 64,128, workloads
                        ${QUICK_WORKLOADS.join(";")}, 2 steps, --max-seconds 5
  --out-dir DIR         where the JSON goes (default results/perf)
  --no-save             print only
  --help                this text

Exit codes: 0 measured (what would not fit or would exceed --max-seconds is skipped, with the
reason; so is a backend of the default list that cannot start), 1 a measurement failed or a
backend named by --backends could not start (the others are still saved), 2 bad arguments
(nothing measured).`;

/** Where `deno task perf` saves its JSON report when `--out-dir` is not given. */
const DEFAULT_OUT_DIR = "results/perf";

/** The flags of `deno task perf`, as `parseArgs` takes them. */
const PERF_FLAGS = {
  backends: { type: "string" },
  sizes: { type: "string" },
  workloads: { type: "string" },
  quick: { type: "boolean", default: false },
  "include-fallback-webgpu": { type: "boolean", default: false },
  steps: { type: "string" },
  profile: { type: "boolean", default: false },
  "out-dir": { type: "string" },
  "no-save": { type: "boolean", default: false },
  "max-seconds": { type: "string" },
  rounds: { type: "string", default: "1" },
  optimizer: { type: "string", default: "adamw" },
  help: { type: "boolean", short: "h", default: false },
} as const;

/** What each flag of {@link PERF_FLAGS} that takes a value expects (as {@link PERF_USAGE} says). */
const PERF_TAKES = {
  backends: "backends, comma-separated, e.g. cpu,wasm+blas",
  sizes: "matMul sizes, comma-separated, e.g. 256,512",
  workloads: 'workloads, ";"- or space-separated, e.g. t5:tiny-v1_1',
  steps: "a positive integer",
  "out-dir": "a folder",
  "max-seconds": "a positive number of seconds",
  rounds: "a positive integer",
  optimizer: "adamw or adafactor",
} as const;

/**
 * Run the benchmark with command-line `args`; returns the report (also printed and saved). Every
 * argument (and `--out-dir`) is checked before anything is measured; a bad one is a
 * {@link UsageError}. A measurement that throws is recorded in its backend's `failed` (a backend
 * that cannot start, in its `error`) and the others go on; the report is saved, then an Error
 * names the failures (exit 1), a backend that could not start among them when `--backends` named
 * it.
 */
export async function main(args: string[]): Promise<PerfReport> {
  // The commit of the code this process runs (read before measuring: the tree may change).
  const git = gitState();
  // Its errors are one line, as every tool's (runCli prints the message alone).
  const values: FlagValues<typeof PERF_FLAGS> = parseFlags(args, {
    tool: "deno task perf",
    options: PERF_FLAGS,
    takes: PERF_TAKES,
    paths: { "out-dir": true },
    // "" measures none of them (the other kind only), as PERF_USAGE says; both: refused below.
    allowEmpty: ["sizes", "workloads"],
  });
  const quick = values.quick;
  const list = (s: string | undefined, def: string[], flag: string, items: string) =>
    s === undefined ? def : withHelpPointer(PERF_TOOL, () => commaList(s, flag, items));
  const defaultSizes = quick ? ["64", "128"] : ["256", "512", "1024", "2048"];
  const sizes = list(values.sizes, defaultSizes, "--sizes", "matMul sizes").map(
    (x) => {
      const n = decimalNumber(x);
      if (!Number.isInteger(n) || n <= 0) {
        throw badFlag(
          `--sizes: "${x}" is not a positive integer (matMul sizes n, comma-separated, ` +
            `e.g. 256,512)`,
        );
      }
      return n;
    },
  );
  const workloadNames = values.workloads !== undefined
    ? values.workloads.split(";").flatMap((s) => s.split(/\s+/)).filter((x) => x !== "")
    : quick
    ? QUICK_WORKLOADS
    : [...DEFAULT_WORKLOADS];
  const workloads = workloadNames.map((spec) => ({
    spec,
    parsed: withHelpPointer(PERF_TOOL, () => parseWorkload(spec)),
  }));
  if (sizes.length === 0 && workloads.length === 0) {
    // A report of nothing would be saved as if measured.
    throw badFlag(
      `--sizes "${values.sizes ?? ""}" and --workloads ` +
        `"${values.workloads ?? ""}" leave nothing to measure; give a matMul size or a workload`,
    );
  }
  const reps = decimalNumber(values.steps ?? (quick ? "2" : "5"));
  if (!Number.isInteger(reps) || reps < 1) {
    throw badFlag(
      `--steps must be a positive integer, got "${values.steps}"`,
    );
  }
  const maxSeconds = decimalNumber(values["max-seconds"] ?? (quick ? "5" : "60"));
  if (!(maxSeconds > 0)) {
    throw badFlag(
      `--max-seconds must be a positive number, got "${values["max-seconds"]}"`,
    );
  }
  const backendList = list(values.backends, [...DEFAULT_BACKENDS], "--backends", "backends");
  if (backendList.length === 0) {
    // `--backends ,`: a report of no backend would be saved as if measured.
    throw badFlag(`--backends "${values.backends}" names no backend`);
  }
  for (const b of backendList) {
    if (
      !/^(cpu|(webgpu|wasm(\+blas)?)(\/stock)?|(webgpu|wasm\+blas)\/no-heads|webgpu\/ungrouped)$/
        .test(b)
    ) {
      throw badFlag(
        `--backends: unknown "${b}" (cpu, wasm, wasm+blas, webgpu; ` +
          `wasm, wasm+blas and webgpu take "/stock" for tfjs's own kernels, wasm+blas and ` +
          `webgpu "/no-heads" for attention heads split by transposes, webgpu "/ungrouped" ` +
          `for one optimizer dispatch per parameter)`,
      );
    }
  }
  const twice = firstRepeat(backendList);
  if (twice !== undefined) {
    // Measured twice in a row, then saved as one list: --rounds is the way to repeat.
    throw badFlag(
      `--backends names ${backendList[twice[0]]} twice; --rounds N repeats the whole list (A/B ` +
        `variants alternate)`,
    );
  }
  const optimizer = values.optimizer;
  if (optimizer !== "adamw" && optimizer !== "adafactor") {
    throw badFlag(
      `--optimizer must be adamw or adafactor, got "${optimizer}"`,
    );
  }
  const rounds = decimalNumber(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1) {
    throw badFlag(
      `--rounds must be a positive integer, got "${values.rounds}"`,
    );
  }
  if (values["no-save"] && values["out-dir"] !== undefined) {
    // One of them is a mistake: measuring for minutes, then not saving where asked, is worse.
    throw badFlag(
      `--no-save and --out-dir ${values["out-dir"]} contradict (print only, or save there); ` +
        "drop one",
    );
  }
  const outDir = values["out-dir"] ?? DEFAULT_OUT_DIR;
  // A bad --out-dir must stop the command now, not after every measurement has run.
  if (!values["no-save"]) checkOutputFolder("--out-dir", outDir, { writable: true });
  // Rounds repeat the whole backend list, so A/B variants alternate on a noisy host.
  const backends = Array.from({ length: rounds }, () => backendList).flat();

  const results: BackendResult[] = [];
  for (const b of backends) {
    const r: BackendResult = { backend: b, matmul: [], steps: [], skipped: [] };
    results.push(r);
    try {
      if (
        b.startsWith("webgpu") && values.backends === undefined &&
        !values["include-fallback-webgpu"]
      ) {
        // Only measure WebGPU by default when a real (non-fallback) adapter exists.
        quietWaylandProbe();
        const a = await requestTfjsAdapter();
        const fb = (a?.info as (GPUAdapterInfo & { isFallbackAdapter?: boolean }) | undefined)
          ?.isFallbackAdapter;
        if (!a || fb) {
          r.skipped.push({
            what: "all",
            why: !a
              ? "no WebGPU adapter"
              : `fallback adapter ${a.info.description} (use --include-fallback-webgpu)`,
          });
          console.log(`\n== ${b}: skipped (${r.skipped[0]!.why})`);
          continue;
        }
      }
      const [base, variant] = b.split("/") as [string, string | undefined];
      r.info = await selectBackend(base as "cpu" | "wasm" | "wasm+blas" | "webgpu", {
        blas: base !== "wasm",
        fastElementwise: variant !== "stock",
        log: (l) => console.log(`\n== ${b}\n${l}`),
      });
      if (variant === "no-heads") {
        // The attention products fall back to reshape + transpose + matMul (model/heads.ts).
        for (const k of [HEAD_SCORES, HEAD_CONTEXT]) {
          if (tf.getKernel(k, tf.getBackend())) tf.unregisterKernel(k, tf.getBackend());
        }
        console.log(`  ${HEAD_SCORES} / ${HEAD_CONTEXT} unregistered: heads split by transposes`);
      }
      if (variant === "ungrouped") {
        // The in-place optimizer updates one parameter per dispatch (groupUpdates: false).
        (await import("../model/webgpu/fused_kernels.ts")).registerWebgpuFusedKernels(false);
        console.log("  optimizer updates ungrouped: one in-place dispatch per parameter");
      }
    } catch (e) {
      r.error = e instanceof Error ? e.message : String(e);
      console.log(`\n== ${b}: cannot start: ${r.error}`);
      continue;
    }
    // Matmul sizes in increasing order; estimate from the last rate to skip hopeless sizes, and
    // the first size from one product timed first (its warm-up included: an overestimate).
    let lastRate = 0;
    for (const n of [...sizes].sort((x, y) => x - y)) {
      const est = lastRate > 0 ? (2 * n ** 3) / (lastRate * 1e9) : 0;
      let bound = est, from = "the rate at the size before";
      if (lastRate === 0) {
        try {
          bound = await probeMatMulSeconds(n);
        } catch (e) {
          failed(r, `matmul ${n}`, e);
          continue;
        }
        from = `one product timed first, ${+bound.toPrecision(3)} s`;
      }
      const warm = MATMUL_WARM;
      const { nrep, full, skip } = matmulReps(est, bound, maxSeconds, quick);
      if (skip !== undefined) {
        r.skipped.push({
          what: `matmul ${n}`,
          // 3 significant digits: a fixed decimal said "estimated 0 s" beside a limit of 0.5.
          why: `estimated ${+skip.toPrecision(3)} s > --max-seconds ${maxSeconds} (from ${from})`,
        });
        console.log(
          `  matmul n=${n}: skipped (estimated ${+bound.toPrecision(3)} s each, from ${from})`,
        );
        continue;
      }
      if (nrep === 1) {
        // Fewer products than the usual count: say why, or the report's reps look arbitrary.
        console.log(
          `  matmul n=${n}: 1 product per batch: estimated ${+full.toPrecision(3)} s > ` +
            `--max-seconds ${maxSeconds} (from ${from})`,
        );
      }
      let m: MatMulResult;
      try {
        m = await timeMatMul(n, warm, nrep);
      } catch (e) {
        failed(r, `matmul ${n}`, e);
        continue;
      }
      lastRate = m.gflops;
      r.matmul.push(m);
      console.log(
        `  matmul n=${String(n).padStart(4)}: ${m.gflops.toFixed(1).padStart(7)} GFLOP/s  ` +
          `(median ${m.medianMs.toFixed(2)} ms, ${m.minMs.toFixed(2)}–${
            m.maxMs.toFixed(2)
          }, ${m.batches} batches of ${m.reps})`,
      );
    }
    if (r.info?.tfBackend === "wasm") {
      r.elementwise = timeElementwise(quick ? 1 << 16 : 1 << 21);
      for (const e of r.elementwise) {
        console.log(`  ${e.name.padEnd(30)} ${e.nsPerElement.toFixed(2).padStart(6)} ns/element`);
      }
    }
    // Training steps.
    const rate = r.matmul.length ? median(r.matmul.map((m) => m.gflops)) : 1;
    for (const { spec, parsed } of workloads) {
      const flops = estimateFlops(parsed);
      // Whole steps run well below the matmul rate (elementwise ops, small matmuls): budget 4×.
      const est = (4 * flops) / (rate * 1e9);
      const warm = 2;
      let nrep = reps;
      const full = est * (warm + nrep);
      if (full > maxSeconds) nrep = 1;
      if (est * (warm + nrep) > maxSeconds) {
        r.skipped.push({
          what: spec,
          why: `estimated ${+est.toPrecision(3)} s/step > --max-seconds ${maxSeconds} / 3 steps`,
        });
        console.log(`  step ${spec}: skipped (estimated ${+est.toPrecision(3)} s/step)`);
        continue;
      }
      if (nrep < reps) {
        // Fewer steps than --steps: say why (the estimate scales the matMul rate, which small
        // --sizes understate), or the report's 1 rep looks like a bug.
        console.log(
          `  step ${spec}: ${stepsNote(full, maxSeconds, warm, reps, r.matmul.length > 0)}`,
        );
      }
      let run = parsed;
      let heapEstimate: number | undefined;
      let heapXnn: boolean | undefined;
      if (parsed.kind === "t5" && r.info?.tfBackend === "wasm") {
        // What is installed now (a /no-heads variant unregistered the head products).
        const heapModel = installedWasmHeapModel();
        const plan = planWasmT5(parsed, optimizer, heapModel);
        if (typeof plan === "string") {
          r.skipped.push({ what: spec, why: plan });
          console.log(`  step ${spec}: skipped (${plan})`);
          continue;
        }
        heapEstimate = plan.bytes;
        heapXnn = heapModel.xnnMatMul;
        if (plan.micro !== (parsed.micro ?? parsed.nums[0])) {
          run = { ...parsed, micro: plan.micro };
          console.log(
            `  step ${spec}: micro-batches of ${plan.micro} to fit the wasm heap (estimated peak ${
              fmtGb(plan.bytes)
            }; ${heapModel.kernels} kernels, ${heapModel.backprop} backward pass)`,
          );
        }
      }
      const heapBefore = wasmHeapBytes();
      const w = makeWorkload(run);
      try {
        const m = await timeSteps(w, warm, nrep, values.profile, optimizer);
        const { times, cpuMsPerStep, numTensors, prof, tensorBytes, optimizerMs } = m;
        const heap = wasmHeapBytes();
        const med = median(times);
        const s: StepResult = {
          workload: w.name,
          shape: w.shape,
          medianMs: med,
          minMs: Math.min(...times),
          maxMs: Math.max(...times),
          reps: nrep,
          tokensPerSec: w.tokens / (med / 1000),
          trainFlops: w.trainFlops,
          flopsSource: w.flopsSource,
          effectiveGflops: w.trainFlops / (med * 1e6),
          optimizer: `${optimizer} (${optimizerPath(optimizer, m.optimizerPaths)})`,
          optimizerMs,
          ...(m.peakBytes === undefined ? {} : { peakTensorBytes: m.peakBytes }),
          tensorBytes,
          ...(heap === undefined ? {} : { wasmHeapBytes: heap }),
          ...(heap === undefined || heapBefore === undefined
            ? {}
            : { wasmHeapBytesBefore: heapBefore }),
          ...(heapEstimate === undefined
            ? {}
            : { wasmHeapEstimateBytes: heapEstimate, wasmXnnMatMul: heapXnn! }),
          rssBytes: Deno.memoryUsage().rss,
          cpuMsPerStep,
          numTensors,
          ...(prof ? { profile: prof.slice(0, 25) } : {}),
          ...(m.gpuDispatches === undefined ? {} : { gpuDispatches: m.gpuDispatches }),
          ...(m.gpuMatMuls === undefined ? {} : { gpuMatMuls: m.gpuMatMuls }),
          ...(m.hostOnlyMs === undefined ? {} : {
            hostOnlyMs: m.hostOnlyMs,
            gpuSubmitBatch: tf.env().getNumber("WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE"),
          }),
        };
        r.steps.push(s);
        console.log(
          `  step ${spec.padEnd(28)} ${med.toFixed(1).padStart(9)} ms  ` +
            `(${s.minMs.toFixed(1)}–${s.maxMs.toFixed(1)}, ${nrep} reps)  ` +
            `${s.tokensPerSec.toFixed(0).padStart(7)} tok/s  ${
              s.effectiveGflops.toFixed(1).padStart(6)
            } GFLOP/s eff  cpu ${cpuMsPerStep.toFixed(0)} ms  optimizer ${
              optimizerMs.toFixed(0)
            } ms  ${
              heap === undefined
                ? `tensors ${(tensorBytes / 2 ** 30).toFixed(2)} GiB between steps`
                : `wasm heap ${(heap / 2 ** 30).toFixed(2)} GiB${
                  heap === heapBefore ? " (not grown by this workload: an upper bound)" : ""
                }`
            }` +
            (m.gpuDispatches === undefined ? "" : `  ${m.gpuDispatches} dispatches`) +
            (m.hostOnlyMs === undefined ? "" : `  host only ${m.hostOnlyMs.join(", ")} ms`) +
            (numTensors[0] !== numTensors[1] ? `  LEAK ${numTensors[0]}→${numTensors[1]}` : ""),
        );
        if (prof) {
          const total = prof.reduce((a, p) => a + p.ms, 0);
          console.log(`    kernel time in one profiled step: ${total.toFixed(1)} ms; top kernels:`);
          for (const p of prof.slice(0, 12)) {
            console.log(
              `    ${p.kernel.padEnd(24)} ${p.ms.toFixed(1).padStart(8)} ms  ×${p.count}`,
            );
          }
        }
      } catch (e) {
        failed(r, spec, e);
      } finally {
        w.dispose();
      }
    }
  }

  const report: PerfReport = {
    date: new Date().toISOString(),
    gitSha: git.sha + (git.dirty ? "+dirty" : ""),
    machine: {
      cpuModel: cpuModel(),
      hardwareConcurrency: navigator.hardwareConcurrency,
      osRelease: Deno.osRelease(),
      os: `${Deno.build.os}-${Deno.build.arch}`,
      memoryGiB: memoryGiB(),
      loadavg: Deno.loadavg(),
      webgpuBackend: Deno.env.get("DENO_WEBGPU_BACKEND") || "(default)",
    },
    versions: {
      deno: Deno.version.deno,
      v8: Deno.version.v8,
      typescript: Deno.version.typescript,
      tfjs: tf.version.tfjs,
    },
    args,
    backends: results,
  };
  let savedTo: string | undefined;
  if (!values["no-save"]) {
    const dir = outDir;
    await Deno.mkdir(dir, { recursive: true });
    const path = await freshReportPath(
      dir,
      report.date,
      `${backendList.join("_").replace(/[+/]/g, "-")}${quick ? "-quick" : ""}`,
    );
    await writeFileAtomic(path, JSON.stringify(report, null, 2) + "\n");
    console.log(`\nwrote ${path}`);
    savedTo = path;
  }
  // A backend named by --backends that cannot start is a failure too (nothing of it measured);
  // one of the default list is recorded only (e.g. wasm+blas on a machine without OpenBLAS).
  const failures = results.flatMap((b) => [
    ...(b.error !== undefined && values.backends !== undefined
      ? [`${b.backend}: cannot start: ${b.error}`]
      : []),
    ...(b.failed ?? []).map((f) => `${b.backend} ${f.what}: ${f.error}`),
  ]);
  if (failures.length > 0) {
    throw new Error(
      `${failures.length} measurement(s) failed (${failures.join("; ")})${
        savedTo === undefined ? "" : `; the others are saved in ${savedTo}`
      }`,
    );
  }
  return report;
}

/**
 * A report path in `dir` that no file has: `<date, to the second>-<name>.json`, else the first of
 * `…-<name>-2.json`, `-3`, … that is free, so two runs in the same second keep both reports.
 *
 * @param dir the folder
 * @param date an ISO date (`Date.prototype.toISOString`)
 * @param name what the report covers (backends, `-quick`)
 * @returns the path to write
 */
export async function freshReportPath(dir: string, date: string, name: string): Promise<string> {
  const stamp = date.replace(/[:]/g, "").replace(/\.\d+Z$/, "Z");
  for (let n = 1;; n++) {
    const path = `${dir}/${stamp}-${name}${n === 1 ? "" : `-${n}`}.json`;
    if (!(await entryExists(path))) return path;
  }
}

/**
 * The line of a workload timed for 1 step instead of `--steps`, its full count's estimate over
 * `--max-seconds`.
 *
 * @param full the estimated seconds of `warm` + `reps` steps
 * @param maxSeconds `--max-seconds`
 * @param warm the warm-up steps
 * @param reps `--steps`
 * @param measuredRate whether the estimate scales a measured matMul rate (else 1 GFLOP/s)
 * @returns e.g. `1 step: estimated 12 s > --max-seconds 5 (2 warm-up + 5 steps at 4× ...)`
 */
export function stepsNote(
  full: number,
  maxSeconds: number,
  warm: number,
  reps: number,
  measuredRate: boolean,
): string {
  return `1 step: estimated ${+full.toPrecision(3)} s > --max-seconds ${maxSeconds} (${warm} ` +
    `warm-up + ${reps} steps at 4× the FLOPs over ${
      measuredRate ? "the median matMul rate of --sizes" : "1 GFLOP/s (no --sizes measured)"
    })`;
}

/** The command, as the errors' pointer to `--help` names it. */
const PERF_TOOL = "deno task perf";

/** A bad flag value (exit 2), ending with the pointer to `--help` (`flagError`). */
function badFlag(message: string): UsageError {
  return flagError(PERF_TOOL, message);
}

/** Records a measurement that threw in `r.failed` (the run goes on; {@link main} ends in error). */
function failed(r: BackendResult, what: string, e: unknown): void {
  const error = e instanceof Error ? e.message : String(e);
  (r.failed ??= []).push({ what, error });
  console.log(`  ${what}: FAILED: ${error}`);
}

/** Options of {@link cli} (tests capture the output and replace the benchmark). */
export type PerfCliOptions = CliOptions;

/**
 * `deno task perf`: `--help` prints {@link PERF_USAGE}; otherwise {@link main}, whose errors (a bad
 * option, an unusable `--out-dir`, a failed measurement or save) are printed as one message,
 * without a stack trace.
 *
 * @param args command-line arguments
 * @param opts output sinks and the benchmark
 * @returns the exit code: 0 measured (or `--help`), 1 the measurement or the save failed, 2 bad
 *   arguments (nothing measured)
 */
export function cli(args: string[], opts: PerfCliOptions = {}): Promise<number> {
  return runCli(main, args, PERF_USAGE, opts);
}

if (import.meta.main) {
  // A write past `ulimit -f` then throws "File too large (os error 27)" naming the file, for
  // the error paths to report, instead of SIGXFSZ ending the process silently (exit 153).
  ignoreFileSizeSignal();
  // Exit explicitly only on failure: a measured run ends as it always did.
  const code = await cli(Deno.args);
  if (code !== 0) Deno.exit(code);
}
