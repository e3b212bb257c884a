/**
 * Reuses bind groups on tfjs's webgpu device instead of creating one per dispatch.
 *
 * tfjs-webgpu creates a bind group for every dispatch (`device.createBindGroup`), ≈ 25 µs of host
 * time through Deno's WebGPU here, the largest host cost of a small dispatch once the uniform
 * arena is in place. A training step repeats the same dispatches with the same buffers: tfjs's
 * buffer pool hands out the same buffers step after step, and the uniform arena the same slots.
 * {@link installBindGroupCache} wraps the device's `createBindGroup` so that a descriptor with the
 * same layout and the same (buffer, offset, size) entries returns the bind group made before.
 *
 * tfjs's buffer pool returns the most recently freed buffer of a size, and the order in which
 * buffers are freed varies, so the same dispatch gets other buffers each step. While the cache is
 * installed the pool hands out the free buffer it has known longest instead (the lowest id), which
 * makes the assignment a function of the step's allocations alone: a repeated step then
 * repeats its descriptors (in a tiny T5 step every dispatch after the second step hits).
 *
 * Why it is safe: a bind group refers to buffers, not to tensors, so reusing one whose entries are
 * identical is exactly what creating a new one would give. A destroyed buffer is never handed to
 * `createBindGroup` again, so an entry naming one is never hit (it is dropped with the rest when
 * the cache reaches its size bound). tfjs asks for the pipeline's layout
 * (`getBindGroupLayout(0)`) anew for every dispatch, which gives a new object each time; while the
 * cache is installed that call returns one layout object per pipeline and index, so layouts can
 * be compared by identity.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";

/** Counters of the bind group cache. */
export interface BindGroupCacheStats {
  /** Descriptors answered from the cache. */
  hits: number;
  /** Bind groups created (and cached). */
  misses: number;
  /** Descriptors passed through uncached (an entry that is not a whole-buffer binding). */
  bypassed: number;
  /** Entries now held. */
  size: number;
  /** Times the cache was emptied on reaching its bound. */
  clears: number;
}

/** Default bound on cached bind groups (each is a few hundred bytes on the device). */
export const BIND_GROUP_CACHE_LIMIT = 20_000;

/** tfjs-webgpu's BufferManager, the parts used here (internal API, 4.22.0). */
interface BufferPool {
  freeBuffers: Map<string, GPUBuffer[]>;
  acquireBuffer(size: number, usage: number, ...rest: unknown[]): GPUBuffer;
}

interface Installed {
  device: GPUDevice;
  restore: () => void;
  stats: BindGroupCacheStats;
}

let installed: Installed | undefined;

/**
 * Installs the cache on the webgpu backend's device (idempotent).
 *
 * @param limit entries at which the cache is emptied (at least 1)
 * @returns undefined when installed (or already), otherwise why not
 */
export function installBindGroupCache(limit = BIND_GROUP_CACHE_LIMIT): string | undefined {
  if (!(Number.isInteger(limit) && limit >= 1)) {
    throw new Error(
      `model/webgpu/bind_group_cache.ts: limit must be a positive integer, got ${limit}`,
    );
  }
  let device: GPUDevice | undefined;
  try {
    device = (tf.findBackend("webgpu") as unknown as { device?: GPUDevice } | undefined)?.device;
  } catch {
    device = undefined;
  }
  if (device == null) return "no webgpu backend instance";
  if (installed?.device === device) return undefined;
  uninstallBindGroupCache();
  if (typeof GPUComputePipeline === "undefined" || typeof device.createBindGroup !== "function") {
    return "no GPUComputePipeline / createBindGroup";
  }
  const target = device;
  const pool = (tf.findBackend("webgpu") as unknown as { bufferManager?: BufferPool })
    ?.bufferManager;
  const stats: BindGroupCacheStats = { hits: 0, misses: 0, bypassed: 0, size: 0, clears: 0 };
  const cache = new Map<string, GPUBindGroup>();
  // Ids kept on the objects themselves (a symbol-keyed property: faster than a WeakMap here).
  const ID = Symbol("hpBindGroupCacheId");
  let nextId = 1;
  const idOf = (o: object) => {
    const tagged = o as { [ID]?: number };
    return tagged[ID] ?? (tagged[ID] = nextId++);
  };
  // One layout object per (pipeline, index), so that layouts compare by identity.
  const proto = GPUComputePipeline.prototype;
  const origLayout = proto.getBindGroupLayout;
  const layouts = new WeakMap<GPUComputePipeline, Map<number, GPUBindGroupLayout>>();
  proto.getBindGroupLayout = function (this: GPUComputePipeline, index: number) {
    let m = layouts.get(this);
    if (m === undefined) layouts.set(this, m = new Map());
    let l = m.get(index);
    if (l === undefined) m.set(index, l = origLayout.call(this, index));
    return l;
  };
  const hadOwn = Object.prototype.hasOwnProperty.call(target, "createBindGroup");
  const origCreate = target.createBindGroup;
  target.createBindGroup = function (this: GPUDevice, desc: GPUBindGroupDescriptor) {
    let key = `${idOf(desc.layout)}`;
    for (const e of desc.entries) {
      const r = e.resource as GPUBufferBinding;
      if (r == null || typeof r !== "object" || !(r.buffer instanceof GPUBuffer)) {
        stats.bypassed++;
        return origCreate.call(this, desc);
      }
      key += `|${e.binding}:${idOf(r.buffer)}:${r.offset ?? 0}:${r.size ?? -1}`;
    }
    const hit = cache.get(key);
    if (hit !== undefined) {
      stats.hits++;
      return hit;
    }
    if (cache.size >= limit) {
      cache.clear();
      stats.clears++;
    }
    const g = origCreate.call(this, desc);
    cache.set(key, g);
    stats.misses++;
    stats.size = cache.size;
    return g;
  };
  // The pool: take the free buffer with the lowest id (known longest) instead of the last freed.
  const origAcquire = pool?.acquireBuffer;
  const poolHadOwn = pool !== undefined &&
    Object.prototype.hasOwnProperty.call(pool, "acquireBuffer");
  if (pool !== undefined && typeof origAcquire === "function" && pool.freeBuffers instanceof Map) {
    pool.acquireBuffer = function (this: BufferPool, size: number, usage: number, ...rest) {
      const list = this.freeBuffers.get(`${size}_${usage}`); // tfjs's getBufferKey
      if (list !== undefined && list.length > 1) {
        let best = list.length - 1;
        for (let i = 0; i < list.length - 1; i++) {
          if (idOf(list[i]!) < idOf(list[best]!)) best = i;
        }
        const last = list.length - 1;
        [list[best], list[last]] = [list[last]!, list[best]!]; // tfjs pops the last one
      }
      return origAcquire.call(this, size, usage, ...rest);
    };
  }
  installed = {
    device: target,
    stats,
    restore: () => {
      proto.getBindGroupLayout = origLayout;
      if (pool !== undefined && typeof origAcquire === "function") {
        if (poolHadOwn) pool.acquireBuffer = origAcquire;
        else delete (pool as Partial<BufferPool>).acquireBuffer;
      }
      if (hadOwn) target.createBindGroup = origCreate;
      else delete (target as Partial<GPUDevice>).createBindGroup;
      cache.clear();
      stats.size = 0;
    },
  };
  return undefined;
}

/** Removes the cache (no-op when none is installed). */
export function uninstallBindGroupCache(): void {
  installed?.restore();
  installed = undefined;
}

/** The cache's counters, or undefined when it is not installed. */
export function bindGroupCacheStats(): BindGroupCacheStats | undefined {
  return installed === undefined ? undefined : { ...installed.stats };
}
