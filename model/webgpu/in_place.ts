/**
 * In-place compute dispatches on tfjs's webgpu backend: a WGSL shader whose storage bindings are
 * existing tensors' buffers, some of them written (`read_write`), recorded into tfjs's own command
 * stream. tfjs programs have exactly one output, which they allocate; an optimizer update written
 * that way costs one dispatch and one new buffer per written tensor (AdamW: three per variable)
 * plus the `assign`s. In place it is one dispatch per variable and no allocation.
 *
 * This uses internals of `@tensorflow/tfjs-backend-webgpu` 4.22.0 (pinned in deno.json): the
 * backend's `tensorMap`, `uploadToGPU`, `makeUniforms`, command encoder, compute pass, submit
 * batching and profiling timers, the same steps as its `recordAndSubmit`. {@link inPlaceSupport}
 * says whether they are all present, so that another tfjs version falls back to the kernel path
 * instead of failing.
 *
 * Writing a tensor's buffer in place is correct only when nothing else refers to that buffer: the
 * caller makes each written tensor the sole owner of its data first (`model/fused.ts` ownBuffer).
 * WebGPU orders the dispatches of a queue, so kernels recorded earlier (a forward pass that read
 * the old weights) see the old values. A CPU copy that tfjs cached by an earlier read is dropped
 * after the write.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import type { AdafactorAttrs, AdamWAttrs } from "../fused.ts";
import { f32, grid as gridWithin, reduceWgsl, u32, type UniformField } from "./wgsl.ts";

/** The parts of tfjs's WebGPUBackend that an in-place dispatch uses (internal API, 4.22.0). */
interface BackendInternals {
  device: GPUDevice;
  tensorMap: {
    get(dataId: tf.DataId): { resource?: unknown; values?: unknown; dtype: string } | undefined;
  };
  uploadToGPU(dataId: tf.DataId): void;
  makeUniforms(fields: UniformField[]): GPUBufferBinding;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  getQueryTime(): Promise<number>;
  commandEncoder: GPUCommandEncoder | null;
  computePassEncoder: GPUComputePassEncoder | null;
  dispatchCountInPass: number;
  commandQueueOwnedIds: WeakSet<object>;
  activeTimers: { name: string; query: Promise<number> }[] | null | undefined;
  supportTimestampQuery: boolean;
  querySet: GPUQuerySet | null | undefined;
  querySetCount: number;
}

/** In-place writes per data id, so that a read in flight across one does not cache old data. */
const writes = new WeakMap<object, number>();
/** Backend instances whose `read` is wrapped by {@link guardReads}. */
const guarded = new WeakSet<object>();

/**
 * Wraps the backend's `read` (once per instance) so that a read which was in flight while an
 * in-place dispatch wrote its tensor does not leave the values it read cached: tfjs's `read`
 * stores what it fetched as the tensor's CPU copy when the fetch ends, after the write cleared
 * it, and every later `data()` would return the old values. The read itself still returns what
 * the tensor held when it was issued. Installed when the in-place updates are registered (a read
 * issued before the wrapper existed is not covered), and it stays: without in-place writes it
 * changes nothing.
 */
function guardReads(be: BackendInternals): void {
  if (guarded.has(be) || typeof (be as unknown as { read?: unknown }).read !== "function") return;
  guarded.add(be);
  const target = be as unknown as { read(dataId: tf.DataId): Promise<unknown> };
  const read = target.read;
  target.read = async function (this: BackendInternals, dataId: tf.DataId) {
    const before = writes.get(dataId as object) ?? 0;
    const vals = await read.call(this, dataId);
    if ((writes.get(dataId as object) ?? 0) !== before) {
      const data = this.tensorMap.get(dataId);
      if (data !== undefined) data.values = null;
    }
    return vals;
  };
}

/**
 * Installs the read guard of in-place writes ({@link guardReads}) on the webgpu backend instance,
 * if there is one: called when the in-place updates are registered, before any read that could
 * be in flight across one of them.
 */
export function guardInPlaceReads(): void {
  let be: unknown;
  try {
    be = tf.findBackend("webgpu");
  } catch {
    be = undefined;
  }
  if (be != null) guardReads(be as BackendInternals);
}

const METHODS = [
  "uploadToGPU",
  "makeUniforms",
  "ensureCommandEncoderReady",
  "endComputePassEncoder",
  "submitQueue",
  "getQueryTime",
] as const;

/**
 * Whether the active backend is tfjs's webgpu backend with the internals an in-place dispatch
 * needs.
 *
 * @returns undefined when it is, otherwise why not
 */
export function inPlaceSupport(): string | undefined {
  if (tf.getBackend() !== "webgpu") return `the backend is ${tf.getBackend()}, not webgpu`;
  const be = tf.backend() as unknown as Record<string, unknown>;
  // The answer depends on the tfjs version only: checked once per backend instance (every update
  // and every dispatch asks).
  if (!supportOf.has(be)) supportOf.set(be, checkSupport(be));
  return supportOf.get(be);
}

/** {@link inPlaceSupport}'s answer per webgpu backend instance. */
const supportOf = new WeakMap<object, string | undefined>();

function checkSupport(be: Record<string, unknown>): string | undefined {
  for (const m of METHODS) {
    if (typeof be[m] !== "function") return `tfjs-backend-webgpu has no ${m}()`;
  }
  if (!(be["tensorMap"] && typeof (be["tensorMap"] as { get?: unknown }).get === "function")) {
    return "tfjs-backend-webgpu has no tensorMap";
  }
  if (!(be["commandQueueOwnedIds"] instanceof WeakSet)) {
    return "tfjs-backend-webgpu has no commandQueueOwnedIds";
  }
  if (typeof be["dispatchCountInPass"] !== "number") {
    return "tfjs-backend-webgpu has no dispatchCountInPass";
  }
  return undefined;
}

/** Pipelines by device and program key. */
const pipelines = new WeakMap<GPUDevice, Map<string, GPUComputePipeline>>();

/** One binding of an in-place program: a tensor, read or written. */
export interface InPlaceBinding {
  /** The tensor whose buffer is bound. */
  readonly tensor: tf.TensorInfo;
  /** Whether the shader writes it (`read_write`); its CPU copy, if any, is then dropped. */
  readonly write: boolean;
}

/** A WGSL program for {@link dispatchInPlace}. */
export interface InPlaceProgram {
  /** Cache key of the compiled pipeline (unique per source). */
  readonly key: string;
  /** Name shown by `tf.profile` for this dispatch. */
  readonly name: string;
  /**
   * The whole WGSL source. Bindings in group 0: the tensors in order from 0, then the uniform
   * buffer; entry point `main`.
   */
  readonly source: string;
}

/**
 * Records one dispatch of `program` over `bindings` in tfjs's command stream (submitted with
 * tfjs's batching; timed by `tf.profile` like tfjs's own programs).
 *
 * @param program the shader
 * @param bindings the tensors bound at 0, 1, …
 * @param uniforms the uniform buffer's fields (bound after the tensors)
 * @param workgroups the dispatch grid
 * @throws Error when the backend lacks the internals ({@link inPlaceSupport}) or a tensor is not float32
 */
export function dispatchInPlace(
  program: InPlaceProgram,
  bindings: readonly InPlaceBinding[],
  uniforms: UniformField[],
  workgroups: readonly [number, number, number],
): void {
  const why = inPlaceSupport();
  if (why !== undefined) throw new Error(`model/webgpu/in_place.ts: ${why}`);
  const be = tf.backend() as unknown as BackendInternals;
  const device = be.device;
  let cache = pipelines.get(device);
  if (cache === undefined) pipelines.set(device, cache = new Map());
  let pipeline = cache.get(program.key);
  if (pipeline === undefined) {
    pipeline = device.createComputePipeline({
      label: program.name,
      layout: "auto",
      compute: {
        module: device.createShaderModule({ code: program.source, label: program.name }),
        entryPoint: "main",
      },
    });
    cache.set(program.key, pipeline);
  }
  const entries: GPUBindGroupEntry[] = bindings.map((b, i) => {
    if (b.tensor.dtype !== "float32") {
      throw new Error(
        `model/webgpu/in_place.ts: ${program.name} binding ${i} is ${b.tensor.dtype}, not float32`,
      );
    }
    be.uploadToGPU(b.tensor.dataId);
    const data = be.tensorMap.get(b.tensor.dataId)!;
    return { binding: i, resource: { buffer: data.resource as GPUBuffer } };
  });
  entries.push({ binding: bindings.length, resource: be.makeUniforms(uniforms) });
  const bindGroup = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
  guardReads(be);
  for (const b of bindings) {
    be.commandQueueOwnedIds.add(b.tensor.dataId as object);
    if (b.write) {
      be.tensorMap.get(b.tensor.dataId)!.values = null; // a cached read is now stale
      const id = b.tensor.dataId as object;
      writes.set(id, (writes.get(id) ?? 0) + 1); // and so is one still in flight
    }
  }
  // What tfjs's recordAndSubmit does after it has made the bind group.
  const timed = be.activeTimers != null;
  be.ensureCommandEncoderReady();
  if (timed && be.supportTimestampQuery) {
    be.endComputePassEncoder();
    if (be.querySet == null) {
      be.querySet = device.createQuerySet({ type: "timestamp", count: be.querySetCount });
    }
    be.computePassEncoder = be.commandEncoder!.beginComputePass({
      timestampWrites: {
        querySet: be.querySet,
        beginningOfPassWriteIndex: 0,
        endOfPassWriteIndex: 1,
      },
    });
  } else if (!be.computePassEncoder) {
    be.computePassEncoder = be.commandEncoder!.beginComputePass({});
  }
  be.computePassEncoder.setPipeline(pipeline);
  be.computePassEncoder.setBindGroup(0, bindGroup);
  be.computePassEncoder.dispatchWorkgroups(...workgroups);
  be.dispatchCountInPass++;
  const batch = tf.env().getNumber("WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE");
  if (timed || batch <= be.dispatchCountInPass) {
    be.endComputePassEncoder();
    if (timed) be.activeTimers!.push({ name: program.name, query: be.getQueryTime() });
    else be.submitQueue();
  }
}

/** Threads per workgroup of the in-place elementwise programs. */
const THREADS = 256;

/** Grid of `groups` workgroups within the current device's per-dimension limit. */
function grid(groups: number): [number, number, number] {
  return gridWithin(
    groups,
    (tf.backend() as unknown as BackendInternals).device.limits.maxComputeWorkgroupsPerDimension,
  );
}

/**
 * WGSL of the in-place AdamW update over `n` elements, as `vec4` (width 4, n divisible by 4) or
 * scalars (width 1): the formulas of the three-dispatch kernel (`fused_kernels.ts` adamwP/M/V).
 *
 * @param width elements per thread
 */
export function adamwInPlaceSource(width: 1 | 4): string {
  const t = width === 4 ? "vec4<f32>" : "f32";
  return `
struct U { b1 : f32, c1 : f32, b2 : f32, c2 : f32, decay : f32, step : f32, invSqrtBc2 : f32,
  eps : f32, n : u32, pad0 : u32, pad1 : u32, pad2 : u32 };
@group(0) @binding(0) var<storage, read_write> P : array<${t}>;
@group(0) @binding(1) var<storage, read_write> M : array<${t}>;
@group(0) @binding(2) var<storage, read_write> V : array<${t}>;
@group(0) @binding(3) var<storage, read> G : array<${t}>;
@group(0) @binding(4) var<uniform> u : U;
@compute @workgroup_size(${THREADS})
fn main(@builtin(global_invocation_id) gid : vec3<u32>, @builtin(num_workgroups) nwg : vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * ${THREADS}u;
  if (i >= u.n) { return; }
  let g = G[i];
  let m = u.b1 * M[i] + u.c1 * g;
  let v = u.b2 * V[i] + u.c2 * g * g;
  M[i] = m;
  V[i] = v;
  P[i] = P[i] * u.decay - u.step * m / (sqrt(v) * u.invSqrtBc2 + u.eps);
}`;
}

const ADAMW_PROGRAMS = {
  1: { key: "hpInPlace_adamw1", name: "HpAdamWInPlace", source: adamwInPlaceSource(1) },
  4: { key: "hpInPlace_adamw4", name: "HpAdamWInPlace", source: adamwInPlaceSource(4) },
} as const;

/**
 * One AdamW update of `p` and its moments `m`, `v` in place, as one dispatch:
 * `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`, `p ← p·decay − step·m / (√v·invSqrtBc2 + eps)`.
 * The caller makes p, m and v the sole owners of their buffers first.
 *
 * @returns false (nothing done) when the backend lacks the internals or a tensor is not float32
 *   of p's size
 */
export function adamwInPlaceWebgpu(
  p: tf.Tensor,
  m: tf.Tensor,
  v: tf.Tensor,
  g: tf.Tensor,
  a: AdamWAttrs,
): boolean {
  const n = p.size;
  if (inPlaceSupport() !== undefined) return false;
  if ([p, m, v, g].some((x) => x.dtype !== "float32" || x.size !== n)) return false;
  if (n === 0) return true;
  const width = n % 4 === 0 ? 4 : 1;
  dispatchInPlace(
    ADAMW_PROGRAMS[width],
    [
      { tensor: p, write: true },
      { tensor: m, write: true },
      { tensor: v, write: true },
      { tensor: g, write: false },
    ],
    [
      ...[a.b1, a.c1, a.b2, a.c2, a.decay, a.step, a.invSqrtBc2, a.eps].map(f32),
      ...[n / width, 0, 0, 0].map(u32),
    ],
    grid(Math.ceil(n / width / THREADS)),
  );
  return true;
}

/** Most variables one grouped AdamW dispatch updates ({@link adamwManyInPlaceWebgpu}). */
export const ADAMW_GROUP_MAX = 16;

/**
 * How many variables one grouped AdamW dispatch may bind on this device: each takes four
 * storage bindings (p, m, v, g) and the dispatch one uniform buffer, so WebGPU's default limits
 * (8 storage buffers per shader stage) allow 2; a device created with higher limits
 * (`model/webgpu/device_limits.ts`) allows up to {@link ADAMW_GROUP_MAX}.
 *
 * @param limits the device's limits
 */
export function adamwGroupSize(
  limits: Pick<GPUSupportedLimits, "maxStorageBuffersPerShaderStage" | "maxBindingsPerBindGroup">,
): number {
  const byStorage = Math.floor(limits.maxStorageBuffersPerShaderStage / 4);
  const byBindings = Math.floor((limits.maxBindingsPerBindGroup - 1) / 4);
  return Math.max(1, Math.min(ADAMW_GROUP_MAX, byStorage, byBindings));
}

/**
 * WGSL of the in-place AdamW update of `k` variables in one dispatch, as `vec4` (width 4, every
 * size divisible by 4) or scalars (width 1). Variable j has bindings 4j…4j+3 (P, M, V read-write,
 * G read) and owns the workgroups from `u.v[j].y` on, `u.v[j].x` elements (of `width`) in all;
 * the binding after the last G is the uniform block. Each element is updated by the formulas of
 * {@link adamwInPlaceSource}, written the same way, so a grouped update equals one dispatch per
 * variable.
 *
 * @param width elements per thread
 * @param k variables (1 … {@link ADAMW_GROUP_MAX})
 */
export function adamwManyInPlaceSource(width: 1 | 4, k: number): string {
  if (!(Number.isInteger(k) && k >= 1 && k <= ADAMW_GROUP_MAX)) {
    throw new Error(`adamwManyInPlaceSource: k must be 1…${ADAMW_GROUP_MAX}, got ${k}`);
  }
  const t = width === 4 ? "vec4<f32>" : "f32";
  const decls: string[] = [];
  const branches: string[] = [];
  for (let j = 0; j < k; j++) {
    const b = 4 * j;
    decls.push(
      `@group(0) @binding(${b}) var<storage, read_write> P${j} : array<${t}>;`,
      `@group(0) @binding(${b + 1}) var<storage, read_write> M${j} : array<${t}>;`,
      `@group(0) @binding(${b + 2}) var<storage, read_write> V${j} : array<${t}>;`,
      `@group(0) @binding(${b + 3}) var<storage, read> G${j} : array<${t}>;`,
    );
    const cond = j + 1 < k ? `if (w < u.v[${j + 1}].y) ` : "";
    branches.push(`${j === 0 ? "" : " else "}${cond}{
    let i = (w - u.v[${j}].y) * ${THREADS}u + t;
    if (i < u.v[${j}].x) {
      let g = G${j}[i];
      let m = u.b1 * M${j}[i] + u.c1 * g;
      let v = u.b2 * V${j}[i] + u.c2 * g * g;
      M${j}[i] = m;
      V${j}[i] = v;
      P${j}[i] = P${j}[i] * u.decay - u.step * m / (sqrt(v) * u.invSqrtBc2 + u.eps);
    }
  }`);
  }
  return `
struct U { b1 : f32, c1 : f32, b2 : f32, c2 : f32, decay : f32, step : f32, invSqrtBc2 : f32,
  eps : f32, v : array<vec4<u32>, ${k}> };
${decls.join("\n")}
@group(0) @binding(${4 * k}) var<uniform> u : U;
@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) t : u32,
        @builtin(num_workgroups) nwg : vec3<u32>) {
  let w = wid.x + wid.y * nwg.x;
  ${branches.join("")}
}`;
}

/** One variable of a grouped AdamW update: the parameter, its moments and its gradient. */
export interface AdamWItem {
  readonly p: tf.Tensor;
  readonly m: tf.Tensor;
  readonly v: tf.Tensor;
  readonly g: tf.Tensor;
}

/**
 * AdamW updates of many variables in place, grouped into as few dispatches as the device's
 * binding limits allow ({@link adamwGroupSize}; variables of one group share the vec4 or the
 * scalar form): T5 1.1 Base's 282 variables take 141 dispatches under WebGPU's default limits
 * instead of 282, fewer where the device allows more bindings. Each element gets exactly the
 * arithmetic of {@link adamwInPlaceWebgpu}. The caller makes every p, m and v the sole owner of
 * its buffer first.
 *
 * @returns per item, whether it was updated (false: nothing done for it, as
 *   {@link adamwInPlaceWebgpu} declines: no internals, not float32, sizes differ)
 */
export function adamwManyInPlaceWebgpu(
  items: readonly AdamWItem[],
  a: AdamWAttrs,
): boolean[] {
  if (inPlaceSupport() !== undefined) return items.map(() => false);
  const done = items.map(({ p, m, v, g }) =>
    [p, m, v, g].every((x) => x.dtype === "float32" && x.size === p.size)
  );
  const limits = (tf.backend() as unknown as BackendInternals).device.limits;
  const k = adamwGroupSize(limits);
  for (const width of [4, 1] as const) {
    const todo = items.filter((it, i) =>
      done[i] && it.p.size > 0 && (it.p.size % 4 === 0) === (width === 4)
    );
    for (let s = 0; s < todo.length; s += k) {
      const group = todo.slice(s, s + k);
      let start = 0;
      const ranges = group.map((it) => {
        const n = it.p.size / width;
        const r: UniformField = { type: "uint32", data: [n, start, 0, 0] };
        start += Math.ceil(n / THREADS);
        return r;
      });
      dispatchInPlace(
        adamwManyProgram(width, group.length),
        group.flatMap((it) => [
          { tensor: it.p, write: true },
          { tensor: it.m, write: true },
          { tensor: it.v, write: true },
          { tensor: it.g, write: false },
        ]),
        [...[a.b1, a.c1, a.b2, a.c2, a.decay, a.step, a.invSqrtBc2, a.eps].map(f32), ...ranges],
        grid(start),
      );
    }
  }
  return done;
}

/** The grouped AdamW programs by width and group size (sources made once). */
const adamwManyPrograms = new Map<string, InPlaceProgram>();

function adamwManyProgram(width: 1 | 4, k: number): InPlaceProgram {
  const key = `hpInPlace_adamwMany${width}_${k}`;
  let prog = adamwManyPrograms.get(key);
  if (prog === undefined) {
    prog = { key, name: "HpAdamWInPlace", source: adamwManyInPlaceSource(width, k) };
    adamwManyPrograms.set(key, prog);
  }
  return prog;
}

/** Largest parameter the single-workgroup unfactored Adafactor takes (larger: op by op). */
export const ADAFACTOR_UNFACTORED_MAX = 1 << 20;

/**
 * WGSL of the unfactored Adafactor update in place, as one workgroup of {@link THREADS} threads
 * (the parameters it serves are layer-norm vectors): a first pass writes the new second moment
 * and sums u² and p², a workgroup reduction gives the clipping factor and the step, a second
 * pass writes p. Each thread revisits only the elements it wrote, so no barrier is needed
 * between the passes beyond the reduction's.
 */
export function adafactorUnfactoredSource(): string {
  return `
struct U { b : f32, c : f32, eps1 : f32, thr : f32, lr : f32, wd : f32, eps2 : f32, scale : u32,
  n : u32, pad0 : u32, pad1 : u32, pad2 : u32 };
@group(0) @binding(0) var<storage, read_write> P : array<f32>;
@group(0) @binding(1) var<storage, read_write> V : array<f32>;
@group(0) @binding(2) var<storage, read> G : array<f32>;
@group(0) @binding(3) var<uniform> u : U;
var<workgroup> sumU : array<f32, ${THREADS}>;
var<workgroup> sumP : array<f32, ${THREADS}>;
@compute @workgroup_size(${THREADS})
fn main(@builtin(local_invocation_index) t : u32) {
  var su = 0.0;
  var sp = 0.0;
  for (var i = t; i < u.n; i = i + ${THREADS}u) {
    let g = G[i];
    let v = u.b * V[i] + u.c * (g * g + u.eps1);
    V[i] = v;
    let x = g * inverseSqrt(v);
    su = su + x * x;
    let p = P[i];
    sp = sp + p * p;
  }
  sumU[t] = su;
  sumP[t] = sp;
${reduceWgsl(["sumU", "sumP"], "+", THREADS, "u32").join("\n")}
  let n = f32(u.n);
  var step = u.lr;
  if (u.scale != 0u) { step = u.lr * max(u.eps2, sqrt(sumP[0] / n)); }
  var clip = 1.0;
  if (u.thr > 0.0) { clip = max(1.0, sqrt(sumU[0] / n) / u.thr); }
  let decay = 1.0 - step * u.wd;
  for (var i = t; i < u.n; i = i + ${THREADS}u) {
    P[i] = P[i] * decay - step * (G[i] * inverseSqrt(V[i])) / clip;
  }
}`;
}

const ADAFACTOR_UNFACTORED_PROGRAM: InPlaceProgram = {
  key: "hpInPlace_adafactorUnfactored",
  name: "HpAdafactorUnfactoredInPlace",
  source: adafactorUnfactoredSource(),
};

/**
 * One unfactored Adafactor update of `p` and its second moment `v` in place, as one dispatch
 * (formulas: `model/fused.ts` updateAdafactorUnfactored). The caller makes p and v the sole
 * owners of their buffers first.
 *
 * @returns false (nothing done) when the backend lacks the internals, a tensor is not float32 of
 *   p's size, or p has more than {@link ADAFACTOR_UNFACTORED_MAX} elements
 */
export function adafactorUnfactoredInPlaceWebgpu(
  p: tf.Tensor,
  v: tf.Tensor,
  g: tf.Tensor,
  a: AdafactorAttrs,
): boolean {
  const n = p.size;
  if (inPlaceSupport() !== undefined || n > ADAFACTOR_UNFACTORED_MAX) return false;
  if ([p, v, g].some((x) => x.dtype !== "float32" || x.size !== n)) return false;
  if (n === 0) return true;
  dispatchInPlace(
    ADAFACTOR_UNFACTORED_PROGRAM,
    [{ tensor: p, write: true }, { tensor: v, write: true }, { tensor: g, write: false }],
    [
      ...[a.beta2t, 1 - a.beta2t, a.eps1, a.clippingThreshold, a.lr, a.weightDecay].map(f32),
      f32(a.parameterScaleEps2 ?? 0),
      ...[a.parameterScaleEps2 === undefined ? 0 : 1, n, 0, 0, 0].map(u32),
    ],
    [1, 1, 1],
  );
  return true;
}

/** Threads per workgroup of the factored Adafactor's row programs (one workgroup per row). */
const ROW = 64;

/** Uniform block of the factored Adafactor programs (all four share it). */
const FACTORED_UNIFORMS = `
struct U { rows : u32, cols : u32, b : f32, eps1 : f32, lr : f32, thr : f32, decay : f32,
  pad0 : u32 };`;

/** The storage bindings (0, 1, …, written ones first) and then the uniform block `u`. */
function bindings(written: string[], read: string[]): string {
  const lines = [
    ...written.map((n, i) =>
      `@group(0) @binding(${i}) var<storage, read_write> ${n} : array<f32>;`
    ),
    ...read.map((n, i) =>
      `@group(0) @binding(${written.length + i}) var<storage, read> ${n} : array<f32>;`
    ),
    `@group(0) @binding(${written.length + read.length}) var<uniform> u : U;`,
  ];
  return `${FACTORED_UNIFORMS}\n${lines.join("\n")}`;
}

/** The names a factored Adafactor dispatch binds: written ones, then read ones. */
const FACTORED_BINDINGS = {
  moments: [["VR", "VC"], ["G"]],
  rows: [["ROWS"], ["G", "VR", "VC"]],
  factor: [["F"], ["VR", "ROWS"]],
  p: [["P"], ["G", "VR", "VC", "F"]],
} as const;

/** One of the four dispatches of the factored Adafactor update. */
export type FactoredKind = keyof typeof FACTORED_BINDINGS;

/**
 * WGSL of the four dispatches of the factored Adafactor update in place (formulas of
 * `fused_kernels.ts` adafactorRowSource / adafactorCol / adafactorFinalSource /
 * adafactorUpdate): "moments" updates both moments in place, its first `rows` workgroups one row
 * of vr each and the rest one block of 64 columns of vc each (a thread per column; both only
 * read g, so one dispatch holds them), "rows" (a workgroup per row) writes Σ_c g²/vc/vr per row,
 * "factor" (one workgroup) the step factor √mean(vr)·lr/clip, "p" (a thread per element) the
 * parameter in place.
 *
 * @param kind which dispatch
 */
export function adafactorFactoredSource(kind: FactoredKind): string {
  const [w, r] = FACTORED_BINDINGS[kind];
  const head = bindings([...w], [...r]);
  const rowMain = `@compute @workgroup_size(${ROW})
fn main(@builtin(local_invocation_index) t : u32, @builtin(workgroup_id) wid : vec3<u32>,
        @builtin(num_workgroups) nwg : vec3<u32>) {
  let row = wid.x + wid.y * nwg.x;`;
  const flatMain = `@compute @workgroup_size(${THREADS})
fn main(@builtin(global_invocation_id) gid : vec3<u32>, @builtin(num_workgroups) nwg : vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * ${THREADS}u;`;
  const sumRow = (term: string) => `
  var s = 0.0;
  if (row < u.rows) {
    for (var j = t; j < u.cols; j = j + ${ROW}u) { let v = G[row * u.cols + j]; s = s + ${term}; }
  }
  red[t] = s;
${reduceWgsl("red", "+", ROW, "u32").join("\n")}`;
  switch (kind) {
    case "moments":
      // Workgroups past the rows take vc; the barriers stay outside the role branches.
      return `${head}
var<workgroup> red : array<f32, ${ROW}>;
${rowMain}${sumRow("v * v + u.eps1")}
  if (row < u.rows && t == 0u) { VR[row] = VR[row] * u.b + red[0] / f32(u.cols) * (1.0 - u.b); }
  if (row >= u.rows) {
    let i = (row - u.rows) * ${ROW}u + t;
    if (i < u.cols) {
      var c = 0.0;
      for (var r = 0u; r < u.rows; r = r + 1u) {
        let v = G[r * u.cols + i];
        c = c + v * v + u.eps1;
      }
      VC[i] = VC[i] * u.b + c / f32(u.rows) * (1.0 - u.b);
    }
  }
}`;
    case "rows":
      return `${head}
var<workgroup> red : array<f32, ${ROW}>;
${rowMain}${sumRow("v * v / VC[j]")}
  if (row < u.rows && t == 0u) { ROWS[row] = red[0] / VR[row]; }
}`;
    case "factor":
      return `${head}
var<workgroup> red : array<f32, ${ROW}>;
var<workgroup> red2 : array<f32, ${ROW}>;
@compute @workgroup_size(${ROW})
fn main(@builtin(local_invocation_index) t : u32) {
  var s1 = 0.0;
  var s2 = 0.0;
  for (var r = t; r < u.rows; r = r + ${ROW}u) { s1 = s1 + VR[r]; s2 = s2 + ROWS[r]; }
  red[t] = s1;
  red2[t] = s2;
${reduceWgsl(["red", "red2"], "+", ROW, "u32").join("\n")}
  if (t == 0u) {
    let meanR = red[0] / f32(u.rows);
    let rms = sqrt(meanR * red2[0] / (f32(u.rows) * f32(u.cols)));
    let clip = select(1.0, max(1.0, rms / u.thr), u.thr > 0.0);
    F[0] = sqrt(meanR) * u.lr / clip;
  }
}`;
    case "p":
      return `${head}
${flatMain}
  if (i >= u.rows * u.cols) { return; }
  let r = i / u.cols;
  let c = i % u.cols;
  P[i] = P[i] * u.decay - G[i] * inverseSqrt(VR[r]) * inverseSqrt(VC[c]) * F[0];
}`;
  }
}

const FACTORED_PROGRAMS = Object.fromEntries(
  (Object.keys(FACTORED_BINDINGS) as FactoredKind[]).map((k) => [k, {
    key: `hpInPlace_adafactor_${k}`,
    name: `HpAdafactorInPlace_${k}`,
    source: adafactorFactoredSource(k),
  }]),
) as Record<FactoredKind, InPlaceProgram>;

/**
 * One factored Adafactor update (no first moment) of a `[rows, cols]` parameter `p` and its
 * moments `vr` `[rows]`, `vc` `[cols]` in place: four dispatches (the `HpAdafactor` kernel takes
 * five: vr and vc apart), writing p, vr and vc where they are instead of into new buffers that
 * are then assigned (two small scratch buffers remain: the per-row sums and the step factor). The caller makes p,
 * vr and vc the sole owners of their buffers first.
 *
 * @returns false (nothing done) when the backend lacks the internals, the shapes do not match,
 *   a tensor is not float32, or `parameterScaleEps2` is set (not supported here)
 */
export function adafactorFactoredInPlaceWebgpu(
  p: tf.Tensor,
  vr: tf.Tensor,
  vc: tf.Tensor,
  g: tf.Tensor,
  a: AdafactorAttrs,
): boolean {
  if (inPlaceSupport() !== undefined || a.parameterScaleEps2 !== undefined || p.rank !== 2) {
    return false;
  }
  const [rows, cols] = p.shape as [number, number];
  if (
    [p, vr, vc, g].some((x) => x.dtype !== "float32") || g.size !== p.size ||
    vr.size !== rows || vc.size !== cols || rows * cols >= 2 ** 31
  ) {
    return false;
  }
  if (p.size === 0) return true;
  const be = tf.backend() as unknown as {
    makeTensorInfo(shape: number[], dtype: tf.DataType): tf.TensorInfo;
    disposeData(dataId: tf.DataId): boolean;
  };
  // Scratch: written before read, so no contents needed.
  const rowSums = be.makeTensorInfo([rows], "float32");
  const factor = be.makeTensorInfo([1], "float32");
  const uniforms: UniformField[] = [
    u32(rows),
    u32(cols),
    ...[a.beta2t, a.eps1, a.lr, a.clippingThreshold, 1 - a.lr * a.weightDecay].map(f32),
    u32(0),
  ];
  const t = (tensor: tf.TensorInfo, write = false) => ({ tensor, write });
  try {
    dispatchInPlace(
      FACTORED_PROGRAMS.moments,
      [t(vr, true), t(vc, true), t(g)],
      uniforms,
      grid(rows + Math.ceil(cols / ROW)),
    );
    dispatchInPlace(
      FACTORED_PROGRAMS.rows,
      [t(rowSums, true), t(g), t(vr), t(vc)],
      uniforms,
      grid(rows),
    );
    dispatchInPlace(FACTORED_PROGRAMS.factor, [t(factor, true), t(vr), t(rowSums)], uniforms, [
      1,
      1,
      1,
    ]);
    dispatchInPlace(
      FACTORED_PROGRAMS.p,
      [t(p, true), t(g), t(vr), t(vc), t(factor)],
      uniforms,
      grid(Math.ceil((rows * cols) / THREADS)),
    );
  } finally {
    be.disposeData(rowSums.dataId); // released once the queued dispatches are submitted
    be.disposeData(factor.dataId);
  }
  return true;
}
