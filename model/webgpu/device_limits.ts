/**
 * Device limits above WebGPU's defaults for the device that tfjs's webgpu backend creates.
 *
 * tfjs asks its device for the adapter's workgroup, buffer and storage-size limits and leaves the
 * binding counts at WebGPU's defaults: 8 storage buffers per shader stage, which lets one grouped
 * AdamW dispatch (`in_place.ts` adamwManyInPlaceWebgpu, four bindings per variable) update 2
 * variables. {@link raiseWebgpuLimits} wraps tfjs's registered backend factory so that, while it
 * creates the device, `GPUAdapter.requestDevice` also asks for {@link RAISED_LIMITS}, each capped
 * at what the adapter supports (an adapter that supports no more gets the default). It changes
 * nothing else about the backend, and it must run before the backend starts: a started backend
 * keeps its device.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { ADAMW_GROUP_MAX } from "./in_place.ts";

/** The limits asked for, each at most the adapter's. */
export const RAISED_LIMITS: Readonly<Record<string, number>> = {
  maxStorageBuffersPerShaderStage: 4 * ADAMW_GROUP_MAX,
};

/** Factories already wrapped (a second call is a no-op). */
const wrapped = new WeakSet<object>();

/**
 * The device descriptor `desc` with {@link RAISED_LIMITS} added where the adapter's `limits`
 * allow more than `desc` (or the default) asks.
 *
 * @param desc what tfjs asks for
 * @param adapterLimits the adapter's limits
 */
export function withRaisedLimits(
  desc: GPUDeviceDescriptor | undefined,
  adapterLimits: GPUSupportedLimits,
): GPUDeviceDescriptor {
  const asked: Record<string, number> = { ...(desc?.requiredLimits as Record<string, number>) };
  const have = adapterLimits as unknown as Record<string, number>;
  for (const [k, want] of Object.entries(RAISED_LIMITS)) {
    const supported = have[k];
    if (typeof supported !== "number") continue;
    const v = Math.min(supported, want);
    if (v > (asked[k] ?? 0)) asked[k] = v;
  }
  return { ...desc, requiredLimits: asked };
}

/**
 * Makes tfjs's `webgpu` backend factory create its device with {@link RAISED_LIMITS}. Call it
 * after `@tensorflow/tfjs-backend-webgpu` is imported (which registers the factory) and before
 * the backend starts; `model/backend.ts`, the WebGPU tests and the GPU benchmarks do.
 *
 * @param backendName the tfjs backend whose factory creates the device (tests use another)
 * @returns undefined when the factory asks for the raised limits (now or already), otherwise why
 *   not: no webgpu factory is registered, or the backend has already started with its device
 */
export function raiseWebgpuLimits(backendName = "webgpu"): string | undefined {
  const engine = tf.engine() as unknown as {
    registry: Record<string, unknown>;
    backendName: string | null;
    pendingBackendInit: Promise<boolean> | null;
    registryFactory: Record<string, { factory: () => Promise<tf.KernelBackend>; priority: number }>;
  };
  const entry = engine.registryFactory[backendName];
  if (entry === undefined) return `no ${backendName} backend is registered`;
  if (wrapped.has(entry.factory)) return undefined;
  const starting = engine.backendName === backendName && engine.pendingBackendInit != null;
  if (engine.registry[backendName] !== undefined || starting) {
    return `the ${backendName} backend had started (or was starting) before its device limits could be raised`;
  }
  const factory = entry.factory;
  const raising = async (): Promise<tf.KernelBackend> => {
    if (typeof GPUAdapter === "undefined") return await factory(); // no WebGPU: tfjs says so
    const proto = GPUAdapter.prototype;
    const requestDevice = proto.requestDevice;
    proto.requestDevice = function (this: GPUAdapter, desc?: GPUDeviceDescriptor) {
      return requestDevice.call(this, withRaisedLimits(desc, this.limits));
    };
    try {
      return await factory();
    } finally {
      proto.requestDevice = requestDevice;
    }
  };
  wrapped.add(raising);
  // removeBackend disposes a started instance only, and there is none (checked above).
  tf.removeBackend(backendName);
  tf.registerBackend(backendName, raising, entry.priority);
  return undefined;
}
