/**
 * In-place compute dispatches on tfjs's webgpu backend: a WGSL shader whose storage bindings are
 * existing tensors' buffers, some of them written (`read_write`), recorded into tfjs's own command
 * stream. tfjs programs have exactly one output, which they allocate; an optimizer update written
 * that way costs one dispatch and one new buffer per written tensor (AdamW: three per variable)
 * plus the `assign`s. In place it is one dispatch per variable and no allocation, or fewer:
 * the grouped updates bind several variables in one dispatch, as many as the device's
 * storage-binding limit allows, one branch of the shader per variable.
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

/** The active webgpu backend's device limits. */
function deviceLimits(): GPUSupportedLimits {
  return (tf.backend() as unknown as BackendInternals).device.limits;
}

/** Grid of `groups` workgroups within the current device's per-dimension limit. */
function grid(groups: number): [number, number, number] {
  return gridWithin(
    groups,
    deviceLimits().maxComputeWorkgroupsPerDimension,
  );
}

/** The device limits that bound how many variables one grouped dispatch may bind. */
export type BindingLimits = Pick<
  GPUSupportedLimits,
  "maxStorageBuffersPerShaderStage" | "maxBindingsPerBindGroup"
>;

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
  limits: BindingLimits,
): number {
  return groupSize(limits, 4, 0, ADAMW_GROUP_MAX);
}

/**
 * WGSL of the in-place AdamW update of `k` variables in one dispatch, as `vec4` (width 4, every
 * size divisible by 4) or scalars (width 1). Variable j has bindings 4j…4j+3 (P, M, V read-write,
 * G read) and owns the workgroups from `u.v[j].y` on, `u.v[j].x` elements (of `width`) in all;
 * the binding after the last G is the uniform block. Each element is updated by
 * `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`, `p ← p·decay − step·m / (√v·invSqrtBc2 + eps)`
 * (the three-dispatch kernel's, `fused_kernels.ts` adamwP/M/V), so a variable's numbers do not
 * depend on `k` or its place in the group.
 *
 * @param width elements per thread
 * @param k variables (1 … {@link ADAMW_GROUP_MAX})
 */
export function adamwManyInPlaceSource(width: 1 | 4, k: number): string {
  checkGroup("adamwManyInPlaceSource", k, ADAMW_GROUP_MAX);
  const t = width === 4 ? "vec4<f32>" : "f32";
  const decls: string[] = [];
  const blocks: string[] = [];
  for (let j = 0; j < k; j++) {
    const b = 4 * j;
    decls.push(
      `@group(0) @binding(${b}) var<storage, read_write> P${j} : array<${t}>;`,
      `@group(0) @binding(${b + 1}) var<storage, read_write> M${j} : array<${t}>;`,
      `@group(0) @binding(${b + 2}) var<storage, read_write> V${j} : array<${t}>;`,
      `@group(0) @binding(${b + 3}) var<storage, read> G${j} : array<${t}>;`,
    );
    blocks.push(`
    let i = (w - u.v[${j}].y) * ${THREADS}u + t;
    if (i < u.v[${j}].x) {
      let g = G${j}[i];
      let m = u.b1 * M${j}[i] + u.c1 * g;
      let v = u.b2 * V${j}[i] + u.c2 * g * g;
      M${j}[i] = m;
      V${j}[i] = v;
      P${j}[i] = P${j}[i] * u.decay - u.step * m / (sqrt(v) * u.invSqrtBc2 + u.eps);
    }
  `);
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
  ${branchChain(blocks, (j) => `u.v[${j}].y`)}
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
 * instead of 282, fewer where the device allows more bindings. The caller makes every p, m and v the
 * sole owner of its buffer first.
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
  const k = adamwGroupSize(deviceLimits());
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

function adamwManyProgram(width: 1 | 4, k: number): InPlaceProgram {
  return programFor(
    `hpInPlace_adamwMany${width}_${k}`,
    "HpAdamWInPlace",
    () => adamwManyInPlaceSource(width, k),
  );
}

/**
 * One AdamW update of `p` and its moments `m`, `v` in place, as one dispatch
 * ({@link adamwManyInPlaceWebgpu} of one variable):
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
  return adamwManyInPlaceWebgpu([{ p, m, v, g }], a)[0]!;
}

/** Largest parameter the single-workgroup unfactored Adafactor takes (larger: op by op). */
export const ADAFACTOR_UNFACTORED_MAX = 1 << 20;

/** Most variables one grouped Adafactor dispatch updates (factored or unfactored). */
export const ADAFACTOR_GROUP_MAX = 16;

/**
 * Variables per grouped dispatch on a device: each takes `perVariable` storage bindings, the
 * dispatch `shared` more and one uniform buffer; at least 1, at most `max`.
 */
function groupSize(
  limits: BindingLimits,
  perVariable: number,
  shared: number,
  max: number,
): number {
  const byStorage = Math.floor((limits.maxStorageBuffersPerShaderStage - shared) / perVariable);
  const byBindings = Math.floor((limits.maxBindingsPerBindGroup - 1 - shared) / perVariable);
  return Math.max(1, Math.min(max, byStorage, byBindings));
}

/**
 * Vectors per grouped unfactored Adafactor dispatch (three bindings each: p, v, g): 2 under
 * WebGPU's default limits, up to {@link ADAFACTOR_GROUP_MAX}.
 *
 * @param limits the device's limits
 */
export function adafactorUnfactoredGroupSize(
  limits: BindingLimits,
): number {
  return groupSize(limits, 3, 0, ADAFACTOR_GROUP_MAX);
}

/**
 * Matrices per grouped factored Adafactor update (its widest dispatch binds p, g, vr and vc of
 * each and one shared buffer): 1 under WebGPU's default limits, up to {@link ADAFACTOR_GROUP_MAX}.
 *
 * @param limits the device's limits
 */
export function adafactorFactoredGroupSize(
  limits: BindingLimits,
): number {
  return groupSize(limits, 4, 1, ADAFACTOR_GROUP_MAX);
}

/** `if (w < bound1) {…} else if (w < bound2) {…} … else {…}` over the variables' blocks. */
function branchChain(blocks: readonly string[], bound: (j: number) => string): string {
  return blocks.map((b, j) =>
    `${j === 0 ? "" : " else "}${j + 1 < blocks.length ? `if (w < ${bound(j + 1)}) ` : ""}{${b}}`
  ).join("");
}

/**
 * WGSL of the unfactored Adafactor update in place of `k` vectors, one workgroup of
 * {@link THREADS} threads each (workgroup j: vector j, bindings 3j…3j+2 = P, V read-write and G
 * read, `u.v[j].x` elements): a first pass writes the new second moment and sums u² and p², a
 * workgroup reduction gives the clipping factor and the step, a second pass writes p. Each
 * thread revisits only the elements it wrote, so no barrier is needed between the passes beyond
 * the reduction's. A vector's numbers do not depend on `k` or its place in the group.
 *
 * @param k vectors (1 … {@link ADAFACTOR_GROUP_MAX})
 */
export function adafactorUnfactoredSource(k: number): string {
  checkGroup("adafactorUnfactoredSource", k, ADAFACTOR_GROUP_MAX);
  const decls: string[] = [];
  const first: string[] = [];
  const second: string[] = [];
  for (let j = 0; j < k; j++) {
    decls.push(
      `@group(0) @binding(${3 * j}) var<storage, read_write> P${j} : array<f32>;`,
      `@group(0) @binding(${3 * j + 1}) var<storage, read_write> V${j} : array<f32>;`,
      `@group(0) @binding(${3 * j + 2}) var<storage, read> G${j} : array<f32>;`,
    );
    first.push(`
    for (var i = t; i < u.v[${j}].x; i = i + ${THREADS}u) {
      let g = G${j}[i];
      let v = u.b * V${j}[i] + u.c * (g * g + u.eps1);
      V${j}[i] = v;
      let x = g * inverseSqrt(v);
      su = su + x * x;
      let p = P${j}[i];
      sp = sp + p * p;
    }
  `);
    second.push(`
    for (var i = t; i < u.v[${j}].x; i = i + ${THREADS}u) {
      P${j}[i] = P${j}[i] * decay - step * (G${j}[i] * inverseSqrt(V${j}[i])) / clip;
    }
  `);
  }
  const bound = (j: number) => `${j}u`;
  return `
struct U { b : f32, c : f32, eps1 : f32, thr : f32, lr : f32, wd : f32, eps2 : f32, scale : u32,
  v : array<vec4<u32>, ${k}> };
${decls.join("\n")}
@group(0) @binding(${3 * k}) var<uniform> u : U;
var<workgroup> sumU : array<f32, ${THREADS}>;
var<workgroup> sumP : array<f32, ${THREADS}>;
@compute @workgroup_size(${THREADS})
fn main(@builtin(local_invocation_index) t : u32, @builtin(workgroup_id) wid : vec3<u32>) {
  let w = wid.x;
  var su = 0.0;
  var sp = 0.0;
  ${branchChain(first, bound)}
  sumU[t] = su;
  sumP[t] = sp;
${reduceWgsl(["sumU", "sumP"], "+", THREADS, "u32").join("\n")}
  let n = f32(u.v[w].x);
  var step = u.lr;
  if (u.scale != 0u) { step = u.lr * max(u.eps2, sqrt(sumP[0] / n)); }
  var clip = 1.0;
  if (u.thr > 0.0) { clip = max(1.0, sqrt(sumU[0] / n) / u.thr); }
  let decay = 1.0 - step * u.wd;
  ${branchChain(second, bound)}
}`;
}

/** Throws unless `k` is a group size of 1 … `max`. */
function checkGroup(what: string, k: number, max: number): void {
  if (!(Number.isInteger(k) && k >= 1 && k <= max)) {
    throw new Error(`${what}: k must be 1…${max}, got ${k}`);
  }
}

/** Compiled-once program descriptions by key. */
const programs = new Map<string, InPlaceProgram>();

/** The program `key` (named `name`), its source made by `source` the first time. */
function programFor(key: string, name: string, source: () => string): InPlaceProgram {
  let prog = programs.get(key);
  if (prog === undefined) programs.set(key, prog = { key, name, source: source() });
  return prog;
}

/** One variable of a grouped unfactored Adafactor update. */
export interface AdafactorUnfactoredItem {
  readonly p: tf.Tensor;
  readonly v: tf.Tensor;
  readonly g: tf.Tensor;
}

/**
 * Unfactored Adafactor updates (formulas: `model/fused.ts` updateAdafactorUnfactored) of many
 * parameters in place, {@link adafactorUnfactoredGroupSize} per dispatch, one workgroup each. The
 * caller makes every p and v the sole owner of its buffer first.
 *
 * @returns per item, whether it was updated (false: nothing done for it: no internals, a tensor
 *   not float32 of p's size, or p larger than {@link ADAFACTOR_UNFACTORED_MAX})
 */
export function adafactorUnfactoredManyInPlaceWebgpu(
  items: readonly AdafactorUnfactoredItem[],
  a: AdafactorAttrs,
): boolean[] {
  if (inPlaceSupport() !== undefined) return items.map(() => false);
  const done = items.map(({ p, v, g }) =>
    p.size <= ADAFACTOR_UNFACTORED_MAX &&
    [p, v, g].every((x) => x.dtype === "float32" && x.size === p.size)
  );
  const todo = items.filter((it, i) => done[i] && it.p.size > 0);
  const k = adafactorUnfactoredGroupSize(deviceLimits());
  const shared = [
    ...[a.beta2t, 1 - a.beta2t, a.eps1, a.clippingThreshold, a.lr, a.weightDecay].map(f32),
    f32(a.parameterScaleEps2 ?? 0),
    u32(a.parameterScaleEps2 === undefined ? 0 : 1),
  ];
  for (let s = 0; s < todo.length; s += k) {
    const group = todo.slice(s, s + k);
    dispatchInPlace(
      programFor(
        `hpInPlace_adafactorUnfactored_${group.length}`,
        "HpAdafactorUnfactoredInPlace",
        () => adafactorUnfactoredSource(group.length),
      ),
      group.flatMap((it) => [
        { tensor: it.p, write: true },
        { tensor: it.v, write: true },
        { tensor: it.g, write: false },
      ]),
      [
        ...shared,
        ...group.map((it): UniformField => ({ type: "uint32", data: [it.p.size, 0, 0, 0] })),
      ],
      [group.length, 1, 1],
    );
  }
  return done;
}

/**
 * One unfactored Adafactor update of `p` and its second moment `v` in place, as one dispatch
 * ({@link adafactorUnfactoredManyInPlaceWebgpu} of one vector). The caller makes p and v the sole
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
  return adafactorUnfactoredManyInPlaceWebgpu([{ p, v, g }], a)[0]!;
}

/** Threads per workgroup of the factored Adafactor's row programs (one workgroup per row). */
const ROW = 64;

/**
 * The storage bindings of a factored Adafactor dispatch: the buffers shared by the group (the
 * per-row sums `ROWS` and the step factors `F`, one per matrix), then each matrix's own.
 */
const FACTORED_BINDINGS = {
  moments: { sharedW: [], sharedR: [], ownW: ["VR", "VC"], ownR: ["G"] },
  rows: { sharedW: ["ROWS"], sharedR: [], ownW: [], ownR: ["G", "VR", "VC", "P"] },
  factor: { sharedW: ["F"], sharedR: ["ROWS"], ownW: [], ownR: ["VR"] },
  p: { sharedW: [], sharedR: ["F"], ownW: ["P"], ownR: ["G", "VR", "VC"] },
} as const;

/** One of the four dispatches of the factored Adafactor update. */
export type FactoredKind = keyof typeof FACTORED_BINDINGS;

/**
 * Workgroups a matrix of `rows` × `cols` takes in dispatch `kind` (moments: one per row, then
 * one per 64 columns; rows: one per row; factor: one; p: one per {@link THREADS} elements).
 */
function factoredWorkgroups(kind: FactoredKind, rows: number, cols: number): number {
  switch (kind) {
    case "moments":
      return rows + Math.ceil(cols / ROW);
    case "rows":
      return rows;
    case "factor":
      return 1;
    case "p":
      return Math.ceil((rows * cols) / THREADS);
  }
}

/**
 * WGSL of one of the four dispatches of the factored Adafactor update in place, for a group of
 * `k` matrices (formulas of `fused_kernels.ts` adafactorRowSource / adafactorCol /
 * adafactorFinalSource / adafactorUpdate). Matrix j has `u.v[j]` = (rows, cols, its first
 * workgroup, its first row in `ROWS`) and `F[j]`. "moments" updates both moments in place, a
 * matrix's first `rows` workgroups one row of vr each and the rest one block of 64 columns of vc
 * each (a thread per column; both only read g, so one dispatch holds them); "rows" (a workgroup
 * per row) writes Σ_c g²/vc/vr per row and (at `u.total` + its row) Σ_c p²; "factor" (one
 * workgroup per matrix) the step factor √mean(vr)·step/clip, step = lr (× max(eps2, RMS(p)) with
 * the parameter scale), and at `F[k + j]` the decay 1 − step·wd; "p" (a thread per element) the
 * parameter in place. A matrix's numbers do
 * not depend on `k` or its place in the group.
 *
 * @param kind which dispatch
 * @param k matrices (1 … {@link ADAFACTOR_GROUP_MAX})
 */
export function adafactorFactoredSource(kind: FactoredKind, k: number): string {
  checkGroup("adafactorFactoredSource", k, ADAFACTOR_GROUP_MAX);
  const b = FACTORED_BINDINGS[kind];
  const lines: string[] = [];
  let at = 0;
  const decl = (name: string, write: boolean) =>
    lines.push(
      `@group(0) @binding(${at++}) var<storage, ${write ? "read_write" : "read"}> ${name} : ` +
        `array<f32>;`,
    );
  for (const n of b.sharedW) decl(n, true);
  for (const n of b.sharedR) decl(n, false);
  for (let j = 0; j < k; j++) {
    for (const n of b.ownW) decl(`${n}${j}`, true);
    for (const n of b.ownR) decl(`${n}${j}`, false);
  }
  lines.push(`@group(0) @binding(${at}) var<uniform> u : U;`);
  const head = `
struct U { b : f32, eps1 : f32, lr : f32, thr : f32, wd : f32, eps2 : f32, total : u32,
  scale : u32, v : array<vec4<u32>, ${k}> };
${lines.join("\n")}`;
  const blocks = Array.from({ length: k }, (_, j) => factoredBlock(kind, j, k));
  const chain = branchChain(blocks, (j) => `u.v[${j}].z`);
  const wg = kind === "p" ? THREADS : ROW;
  const shared = kind === "p"
    ? ""
    : kind === "factor" || kind === "rows"
    ? ["red", "red2", "red3"].map((r) => `var<workgroup> ${r} : array<f32, ${ROW}>;`).join("\n")
    : `var<workgroup> red : array<f32, ${ROW}>;`;
  return `${head}
${shared}
@compute @workgroup_size(${wg})
fn main(@builtin(local_invocation_index) t : u32, @builtin(workgroup_id) wid : vec3<u32>,
        @builtin(num_workgroups) nwg : vec3<u32>) {
  let w = wid.x + wid.y * nwg.x;
  ${chain}
}`;
}

/** The statements of matrix `j` in dispatch `kind` (see {@link adafactorFactoredSource}). */
function factoredBlock(kind: FactoredKind, j: number, k: number): string {
  const [R, C, S, O] = ["x", "y", "z", "w"].map((c) => `u.v[${j}].${c}`);
  const [G, VR, VC, P] = ["G", "VR", "VC", "P"].map((n) => `${n}${j}`);
  const sumRow = (term: string) => `
    var s = 0.0;
    if (row < ${R}) {
      for (var c = t; c < ${C}; c = c + ${ROW}u) { let v = ${G}[row * ${C} + c]; s = s + ${term}; }
    }
    red[t] = s;
${reduceWgsl("red", "+", ROW, "u32").map((l) => `  ${l}`).join("\n")}`;
  switch (kind) {
    case "moments":
      // Workgroups past the rows take vc; the barriers stay outside the role branches.
      return `
    let row = w - ${S};${sumRow("v * v + u.eps1")}
    if (row < ${R} && t == 0u) {
      ${VR}[row] = ${VR}[row] * u.b + red[0] / f32(${C}) * (1.0 - u.b);
    }
    if (row >= ${R}) {
      let i = (row - ${R}) * ${ROW}u + t;
      if (i < ${C}) {
        var c = 0.0;
        for (var r = 0u; r < ${R}; r = r + 1u) {
          let v = ${G}[r * ${C} + i];
          c = c + v * v + u.eps1;
        }
        ${VC}[i] = ${VC}[i] * u.b + c / f32(${R}) * (1.0 - u.b);
      }
    }
  `;
    case "rows":
      // Also Σ p² of the row (read only with the parameter scale on), reduced alongside.
      return `
    let row = w - ${S};
    var s = 0.0;
    var sp = 0.0;
    if (row < ${R}) {
      for (var c = t; c < ${C}; c = c + ${ROW}u) {
        let v = ${G}[row * ${C} + c];
        s = s + v * v / ${VC}[c];
        if (u.scale != 0u) { let q = ${P}[row * ${C} + c]; sp = sp + q * q; }
      }
    }
    red[t] = s;
    red2[t] = sp;
${reduceWgsl(["red", "red2"], "+", ROW, "u32").map((l) => `  ${l}`).join("\n")}
    if (row < ${R} && t == 0u) {
      ROWS[${O} + row] = red[0] / ${VR}[row];
      ROWS[u.total + ${O} + row] = red2[0];
    }
  `;
    case "factor":
      return `
    var s1 = 0.0;
    var s2 = 0.0;
    var s3 = 0.0;
    for (var r = t; r < ${R}; r = r + ${ROW}u) {
      s1 = s1 + ${VR}[r];
      s2 = s2 + ROWS[${O} + r];
      s3 = s3 + ROWS[u.total + ${O} + r];
    }
    red[t] = s1;
    red2[t] = s2;
    red3[t] = s3;
${reduceWgsl(["red", "red2", "red3"], "+", ROW, "u32").map((l) => `  ${l}`).join("\n")}
    if (t == 0u) {
      let n = f32(${R}) * f32(${C});
      let meanR = red[0] / f32(${R});
      let rms = sqrt(meanR * red2[0] / n);
      let clip = select(1.0, max(1.0, rms / u.thr), u.thr > 0.0);
      var step = u.lr;
      if (u.scale != 0u) { step = u.lr * max(u.eps2, sqrt(red3[0] / n)); }
      F[${j}] = sqrt(meanR) * step / clip;
      F[${k}u + ${j}u] = 1.0 - step * u.wd;
    }
  `;
    case "p":
      return `
    let i = (w - ${S}) * ${THREADS}u + t;
    if (i < ${R} * ${C}) {
      let r = i / ${C};
      let c = i % ${C};
      ${P}[i] = ${P}[i] * F[${k}u + ${j}u] - ${G}[i] * inverseSqrt(${VR}[r]) * inverseSqrt(${VC}[c]) * F[${j}];
    }
  `;
  }
}

/** One matrix of a grouped factored Adafactor update: `[rows, cols]`, its moments, its gradient. */
export interface AdafactorFactoredItem {
  readonly p: tf.Tensor;
  readonly vr: tf.Tensor;
  readonly vc: tf.Tensor;
  readonly g: tf.Tensor;
}

/**
 * Factored Adafactor updates (no first moment) of many `[rows, cols]` parameters and their
 * moments `vr` `[rows]`, `vc` `[cols]` in place: four dispatches per group of
 * {@link adafactorFactoredGroupSize} matrices (the `HpAdafactor` kernel takes five per matrix:
 * vr and vc apart), writing p, vr and vc where they are instead of into new buffers that are then
 * assigned (two small scratch buffers per group remain: the per-row sums and the step factors).
 * The caller makes every p, vr and vc the sole owner of its buffer first.
 *
 * With `parameterScaleEps2` set (Mesh TF's `multiplyByParameterScale`), each matrix's step is
 * lr·max(eps2, RMS(p)), RMS(p) from the per-row sums of p² of the "rows" dispatch.
 *
 * @returns per item, whether it was updated (false: nothing done for it: no internals, shapes
 *   that do not match, a tensor not float32)
 */
export function adafactorFactoredManyInPlaceWebgpu(
  items: readonly AdafactorFactoredItem[],
  a: AdafactorAttrs,
): boolean[] {
  if (inPlaceSupport() !== undefined) return items.map(() => false);
  const done = items.map(({ p, vr, vc, g }) => {
    if (p.rank !== 2) return false;
    const [rows, cols] = p.shape as [number, number];
    return [p, vr, vc, g].every((x) => x.dtype === "float32") && g.size === p.size &&
      vr.size === rows && vc.size === cols && rows * cols < 2 ** 31;
  });
  const todo = items.filter((it, i) => done[i] && it.p.size > 0);
  const k = adafactorFactoredGroupSize(deviceLimits());
  for (let s = 0; s < todo.length; s += k) factoredGroup(todo.slice(s, s + k), a);
  return done;
}

/** The four dispatches of one group of {@link adafactorFactoredManyInPlaceWebgpu}. */
function factoredGroup(group: readonly AdafactorFactoredItem[], a: AdafactorAttrs): void {
  const be = tf.backend() as unknown as {
    makeTensorInfo(shape: number[], dtype: tf.DataType): tf.TensorInfo;
    disposeData(dataId: tf.DataId): boolean;
  };
  const dims = group.map((it) => it.p.shape as [number, number]);
  const totalRows = dims.reduce((s, [r]) => s + r, 0);
  // Scratch: written before read, so no contents needed. ROWS: per row Σ g²/vc/vr, then (at
  // totalRows + row) Σ p²; F: per matrix the step factor, then (at k + j) the decay.
  const rowSums = be.makeTensorInfo([2 * totalRows], "float32");
  const factors = be.makeTensorInfo([2 * group.length], "float32");
  const scratch = { ROWS: rowSums, F: factors };
  const own = (it: AdafactorFactoredItem) => ({ G: it.g, VR: it.vr, VC: it.vc, P: it.p });
  const shared = [
    ...[a.beta2t, a.eps1, a.lr, a.clippingThreshold, a.weightDecay, a.parameterScaleEps2 ?? 0]
      .map(f32),
    ...[totalRows, a.parameterScaleEps2 === undefined ? 0 : 1].map(u32),
  ];
  try {
    for (const kind of ["moments", "rows", "factor", "p"] as const) {
      const b = FACTORED_BINDINGS[kind];
      const bindings: InPlaceBinding[] = [
        ...b.sharedW.map((n) => ({ tensor: scratch[n], write: true })),
        ...b.sharedR.map((n) => ({ tensor: scratch[n], write: false })),
        ...group.flatMap((it) => [
          ...b.ownW.map((n) => ({ tensor: own(it)[n], write: true })),
          ...b.ownR.map((n) => ({ tensor: own(it)[n], write: false })),
        ]),
      ];
      let start = 0, rowOffset = 0;
      const ranges = dims.map(([rows, cols]): UniformField => {
        const f: UniformField = { type: "uint32", data: [rows, cols, start, rowOffset] };
        start += factoredWorkgroups(kind, rows, cols);
        rowOffset += rows;
        return f;
      });
      dispatchInPlace(
        programFor(
          `hpInPlace_adafactor_${kind}_${group.length}`,
          `HpAdafactorInPlace_${kind}`,
          () => adafactorFactoredSource(kind, group.length),
        ),
        bindings,
        [...shared, ...ranges],
        grid(start),
      );
    }
  } finally {
    be.disposeData(rowSums.dataId); // released once the queued dispatches are submitted
    be.disposeData(factors.dataId);
  }
}

/**
 * One factored Adafactor update (no first moment) of a `[rows, cols]` parameter `p` and its
 * moments `vr` `[rows]`, `vc` `[cols]` in place: {@link adafactorFactoredManyInPlaceWebgpu} of
 * one matrix, four dispatches. The caller makes p, vr and vc the sole owners of their buffers
 * first.
 *
 * @returns false (nothing done) when the backend lacks the internals, the shapes do not match,
 *   or a tensor is not float32 (`parameterScaleEps2` is handled, as in the grouped update)
 */
export function adafactorFactoredInPlaceWebgpu(
  p: tf.Tensor,
  vr: tf.Tensor,
  vc: tf.Tensor,
  g: tf.Tensor,
  a: AdafactorAttrs,
): boolean {
  return adafactorFactoredManyInPlaceWebgpu([{ p, vr, vc, g }], a)[0]!;
}
