/**
 * Tests of the raised device limits (device_limits.ts): the descriptor arithmetic, the factory
 * wrapper on a stand-in backend (so the real webgpu backend of this process is not touched), and
 * the device the WebGPU tests get (`testing.ts` raises the limits before the backend starts).
 */

import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { RAISED_LIMITS, raiseWebgpuLimits, withRaisedLimits } from "./device_limits.ts";
import { gpuTest } from "./testing.ts";

const limits = (o: Record<string, number>) => o as unknown as GPUSupportedLimits;

Deno.test("withRaisedLimits: asks for the raised limits up to the adapter's, keeps the rest", () => {
  const want = RAISED_LIMITS.maxStorageBuffersPerShaderStage!;
  const tfjs = { requiredLimits: { maxBufferSize: 1 << 30 }, requiredFeatures: [] };
  const big = withRaisedLimits(tfjs, limits({ maxStorageBuffersPerShaderStage: 1 << 20 }));
  assert.deepEqual(big.requiredLimits, {
    maxBufferSize: 1 << 30,
    maxStorageBuffersPerShaderStage: want,
  });
  assert.deepEqual(big.requiredFeatures, [], "the rest of the descriptor is kept");
  const small = withRaisedLimits(tfjs, limits({ maxStorageBuffersPerShaderStage: 10 }));
  assert.equal(small.requiredLimits!.maxStorageBuffersPerShaderStage, 10, "capped at the adapter");
  const higher = withRaisedLimits(
    { requiredLimits: { maxStorageBuffersPerShaderStage: 1000 } },
    limits({ maxStorageBuffersPerShaderStage: 2000 }),
  );
  assert.equal(higher.requiredLimits!.maxStorageBuffersPerShaderStage, 1000, "never lowered");
  assert.deepEqual(
    withRaisedLimits(undefined, limits({})).requiredLimits,
    {},
    "unknown: not asked",
  );
  assert.deepEqual(tfjs.requiredLimits, { maxBufferSize: 1 << 30 }, "the input is not changed");
});

Deno.test("raiseWebgpuLimits wraps a backend's factory only before it starts", async () => {
  const name = "hp-test-limits";
  assert.match(raiseWebgpuLimits(name) ?? "", /no hp-test-limits backend is registered/);
  const cpu = tf.findBackend("cpu") ?? (await tf.setBackend("cpu"), tf.findBackend("cpu"))!;
  const seen: string[] = [];
  const hasGpu = typeof GPUAdapter !== "undefined";
  const requestDevice = hasGpu ? GPUAdapter.prototype.requestDevice : undefined;
  const factory = () => {
    // While the wrapped factory runs, requestDevice is wrapped; not outside it.
    seen.push(hasGpu && GPUAdapter.prototype.requestDevice !== requestDevice ? "wrapped" : "plain");
    return new (cpu.constructor as new () => tf.KernelBackend)();
  };
  const previous = tf.getBackend() ?? "cpu";
  try {
    tf.registerBackend(name, factory, 0);
    assert.equal(raiseWebgpuLimits(name), undefined);
    assert.notEqual(tf.findBackendFactory(name), factory, "the factory was replaced");
    const raised = tf.findBackendFactory(name);
    assert.equal(raiseWebgpuLimits(name), undefined, "a second call is a no-op");
    assert.equal(tf.findBackendFactory(name), raised, "a second call does not wrap again");
    assert.ok(await tf.setBackend(name));
    assert.deepEqual(seen, [hasGpu ? "wrapped" : "plain"], "the original factory ran once");
    if (hasGpu) assert.equal(GPUAdapter.prototype.requestDevice, requestDevice, "restored");
    tf.removeBackend(name);
    // While it starts (its factory still running), then once it has started: too late.
    let release!: () => void;
    const gate = new Promise<void>((r) => release = r);
    tf.registerBackend(name, async () => {
      await gate;
      return factory();
    }, 0);
    const starting = tf.setBackend(name);
    assert.match(
      raiseWebgpuLimits(name) ?? "",
      /had started \(or was starting\) before its device limits/,
    );
    release();
    assert.ok(await starting);
    assert.match(
      raiseWebgpuLimits(name) ?? "",
      /had started \(or was starting\) before its device limits/,
    );
  } finally {
    await tf.setBackend(previous);
    tf.removeBackend(name);
  }
});

gpuTest("the WebGPU tests' device has the raised limits, up to the adapter's", async () => {
  const device = (tf.backend() as unknown as { device: GPUDevice }).device;
  const adapter = await navigator.gpu.requestAdapter();
  assert.ok(adapter);
  const want = Math.min(
    adapter.limits.maxStorageBuffersPerShaderStage,
    RAISED_LIMITS.maxStorageBuffersPerShaderStage!,
  );
  assert.equal(device.limits.maxStorageBuffersPerShaderStage, want);
  assert.ok(want > 8, `this adapter allows ${adapter.limits.maxStorageBuffersPerShaderStage}`);
});
