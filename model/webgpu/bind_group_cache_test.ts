/**
 * Tests of the bind group cache (bind_group_cache.ts) on whatever adapter Deno's WebGPU gives
 * (here the software one): identical descriptors share one bind group, any other buffer, offset,
 * size or layout gets its own, the bound empties the cache, and uninstalling restores the device.
 * End to end, `fused_kernels_test.ts` trains a tiny T5 on webgpu with the cache on and compares
 * it with the cpu backend.
 */

import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-webgpu";
import assert from "node:assert/strict";
import {
  bindGroupCacheStats,
  installBindGroupCache,
  uninstallBindGroupCache,
} from "./bind_group_cache.ts";
import { registerWebgpuKernels } from "./mod.ts";
import { gpuTest } from "./testing.ts";

const SHADER = `
@group(0) @binding(0) var<storage, read_write> a : array<f32>;
@group(0) @binding(1) var<storage, read> b : array<f32>;
@compute @workgroup_size(1) fn main() { a[0] = b[0]; }`;

gpuTest(
  "bind group cache: same descriptor → same bind group; other buffer, offset, size or layout → new",
  // deno-lint-ignore require-await
  async () => {
    uninstallBindGroupCache();
    assert.equal(installBindGroupCache(3), undefined);
    const device = (tf.backend() as unknown as { device: GPUDevice }).device;
    const pipe = device.createComputePipeline({
      layout: "auto",
      compute: { module: device.createShaderModule({ code: SHADER }), entryPoint: "main" },
    });
    const pipe2 = device.createComputePipeline({
      layout: "auto",
      compute: { module: device.createShaderModule({ code: SHADER }), entryPoint: "main" },
    });
    const usage = GPUBufferUsage.STORAGE;
    const [x, y, z] = [0, 1, 2].map(() => device.createBuffer({ size: 512, usage }));
    const group = (p: GPUComputePipeline, a: GPUBuffer, b: GPUBuffer, offset = 0, size = 256) =>
      device.createBindGroup({
        layout: p.getBindGroupLayout(0),
        entries: [
          { binding: 0, resource: { buffer: a } },
          { binding: 1, resource: { buffer: b, offset, size } },
        ],
      });
    assert.equal(pipe.getBindGroupLayout(0), pipe.getBindGroupLayout(0), "one layout per pipeline");
    const g1 = group(pipe, x!, y!);
    assert.equal(group(pipe, x!, y!), g1, "same entries: cached");
    assert.notEqual(group(pipe, x!, z!), g1, "other buffer");
    assert.notEqual(group(pipe, x!, y!, 256), g1, "other offset");
    assert.deepEqual(bindGroupCacheStats(), {
      hits: 1,
      misses: 3,
      bypassed: 0,
      size: 3,
      clears: 0,
    });
    group(pipe2, x!, y!); // a fourth entry: the bound (3) empties the cache first
    const s = bindGroupCacheStats()!;
    assert.equal(s.clears, 1);
    assert.equal(s.size, 1);
    const g2 = group(pipe, x!, y!);
    assert.notEqual(g2, g1, "emptied: made anew");
    // The same buffers and offsets with another size (as a uniform arena slice of another length
    // at a reused offset): a bind group of its own, else the shader would get the other range.
    const g3 = group(pipe, x!, y!, 0, 128);
    assert.notEqual(g3, g2, "other size");
    assert.equal(group(pipe, x!, y!, 0, 128), g3, "same size again: cached");
    assert.equal(bindGroupCacheStats()!.size, 3);
    uninstallBindGroupCache();
    assert.equal(bindGroupCacheStats(), undefined);
    assert.notEqual(pipe.getBindGroupLayout(0), pipe.getBindGroupLayout(0), "restored");
    for (const b of [x, y, z]) b!.destroy();
    assert.throws(() => installBindGroupCache(0), /limit must be a positive integer/);
  },
  () => assert.ok(registerWebgpuKernels()),
);

gpuTest(
  "bind group cache: a repeated training-like step hits for nearly every dispatch",
  async () => {
    const stats0 = bindGroupCacheStats();
    assert.ok(stats0 !== undefined, "installed by registerWebgpuKernels");
    const init = tf.randomNormal([64, 64], 0, 1, "float32", 1);
    const w = tf.variable(init);
    init.dispose();
    const x = tf.randomNormal([32, 64], 0, 1, "float32", 2);
    const step = async () => {
      const { value, grads } = tf.variableGrads(
        () => tf.tidy(() => tf.mean(tf.square(tf.relu(tf.matMul(x, w, false, true))))),
        [w],
      );
      await value.data();
      tf.dispose([value, ...Object.values(grads)]);
    };
    await step();
    await step();
    const a = bindGroupCacheStats()!;
    await step();
    const b = bindGroupCacheStats()!;
    const calls = b.hits + b.misses - a.hits - a.misses;
    assert.ok(calls > 0);
    // Measured: every dispatch of the third step hits (tfjs's pool hands out the same buffers).
    assert.ok(b.hits - a.hits >= 0.8 * calls, `${b.hits - a.hits} hits of ${calls}`);
    tf.dispose([w, x]);
  },
  () => assert.ok(registerWebgpuKernels()),
);
