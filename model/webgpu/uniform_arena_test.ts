/**
 * Tests of the uniform arena (uniform_arena.ts): its packing against tfjs-webgpu's own
 * `makeUniforms` byte for byte (no GPU needed), and on the adapter (software here) that programs
 * recorded with it compute what they compute without it, across submits and arena roll-overs.
 * Results must be identical: the arena changes where the uniform bytes live, not the arithmetic.
 */

import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-webgpu";
import { WebGPUBackend } from "@tensorflow/tfjs-backend-webgpu";
import assert from "node:assert/strict";
import {
  installUniformArena,
  packUniforms,
  uniformArenaInstalled,
  type UniformFieldLike,
  uninstallUniformArena,
} from "./uniform_arena.ts";
import {
  registerWebgpuKernels,
  unregisterWebgpuKernels,
  webgpuKernelsInstalled,
  webgpuKernelsNotInstalled,
} from "./mod.ts";
import { gpuTest } from "./testing.ts";
import { uniformValues } from "../../benchmarks/rng.ts";

/** The bytes tfjs's own makeUniforms writes for `fields` (run on a stand-in backend object). */
function tfjsBytes(fields: UniformFieldLike[]): Uint8Array {
  let written: Uint8Array | undefined;
  const fake = {
    bufferManager: { acquireBuffer: (size: number) => ({ size }) },
    queue: {
      writeBuffer: (_b: unknown, _o: number, data: ArrayBuffer, off: number, size: number) => {
        written = new Uint8Array(data, off, size).slice();
      },
    },
    uniformPendingDisposal: [] as unknown[],
  };
  const make = (WebGPUBackend.prototype as unknown as {
    makeUniforms: (this: unknown, f: UniformFieldLike[]) => unknown;
  }).makeUniforms;
  make.call(fake, fields.map((f) => ({ type: f.type, data: [...f.data] })));
  assert.ok(written !== undefined, "tfjs wrote no uniforms");
  return written;
}

Deno.test("uniform packing equals tfjs-webgpu's makeUniforms byte for byte", () => {
  // Layouts tfjs makes: NaN/Infinity, then shapes and strides of rank 1–6, then program fields.
  const cases: UniformFieldLike[][] = [
    [{ type: "float32", data: [0.5] }],
    [{ type: "float32", data: [NaN] }, { type: "float32", data: [Infinity] }],
    [{ type: "int32", data: [1, 2, 3] }, { type: "float32", data: [0.25] }],
    [{ type: "int32", data: [] }, { type: "uint32", data: [4294967295] }],
  ];
  // Random sequences of field lengths 1–6 and types, seeded.
  const r = uniformValues(400, 7);
  let k = 0;
  const next = () => Math.abs(r[k++ % r.length]!);
  for (let c = 0; c < 40; c++) {
    const n = 1 + Math.floor(next() * 8);
    const fields: UniformFieldLike[] = [];
    for (let i = 0; i < n; i++) {
      const len = 1 + Math.floor(next() * 6) % 6;
      const type = ["float32", "int32", "uint32"][Math.floor(next() * 3) % 3]!;
      fields.push({
        type,
        data: Array.from(
          { length: len },
          () => type === "float32" ? next() : Math.floor(next() * 999),
        ),
      });
    }
    cases.push(fields);
  }
  for (const fields of cases) {
    const want = tfjsBytes(fields);
    const got = packUniforms(fields.map((f) => ({ type: f.type, data: [...f.data] })));
    assert.deepEqual(got, want, JSON.stringify(fields));
  }
  assert.throws(() => packUniforms([{ type: "int32", data: [1, 2, 3, 4, 5, 6, 7] }]), /7 values/);
});

Deno.test("installUniformArena names why it cannot install without a webgpu backend", async () => {
  await tf.setBackend("cpu");
  const why = installUniformArena();
  // Either no instance exists yet, or (after GPU tests in this process) one does and installs.
  if (why !== undefined) assert.match(why, /webgpu/);
  uninstallUniformArena();
  assert.equal(uniformArenaInstalled(), false);
});

/**
 * `count` small programs whose uniforms differ (the shapes and strides of a broadcast add of
 * varying width, which index the inputs by them), read back; also how many `queue.writeBuffer`
 * calls they took.
 */
async function chain(count: number): Promise<{ values: Float32Array[]; writes: number }> {
  const x = tf.tensor(uniformValues(300, 3), [3, 100]);
  const row = tf.tensor(uniformValues(100, 4), [1, 100]);
  const queue = (tf.backend() as unknown as { queue: GPUQueue }).queue;
  const write = queue.writeBuffer;
  let writes = 0;
  queue.writeBuffer = function (this: GPUQueue, ...a: Parameters<GPUQueue["writeBuffer"]>) {
    writes++;
    return write.apply(this, a);
  };
  const outs: tf.Tensor[] = [];
  // A validation error (a uniform slice at an offset the device refuses, say) leaves the
  // readback below waiting forever: seen here, it fails the test at once, named.
  const device = (tf.backend() as unknown as { device: GPUDevice }).device;
  device.pushErrorScope("validation");
  let invalid: GPUError | null = null;
  try {
    for (let i = 0; i < count; i++) {
      const w = 1 + (i * 37) % 100;
      outs.push(
        tf.tidy(() => tf.add(tf.slice(x, [0, 100 - w], [3, w]), tf.slice(row, [0, 0], [1, w]))),
      );
    }
  } finally {
    queue.writeBuffer = write;
    invalid = await device.popErrorScope();
  }
  if (invalid !== null) {
    tf.dispose([x, row, ...outs]);
    throw new Error(`GPU validation error while encoding the chain: ${invalid.message}`);
  }
  const values = await Promise.all(outs.map((t) => t.data() as Promise<Float32Array>));
  tf.dispose([x, row, ...outs]);
  return { values, writes };
}

gpuTest(
  "programs with the uniform arena compute exactly what they compute without it",
  async () => {
    assert.ok(uniformArenaInstalled());
    const batch = tf.env().getNumber("WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE");
    const forward = tf.env().getBool("WEBGPU_CPU_FORWARD");
    const before = tf.memory().numTensors;
    try {
      tf.env().set("WEBGPU_CPU_FORWARD", false); // small ops on the GPU too
      // 1000 dispatches in one submit: more than one 64 KiB arena buffer at 256-byte slots.
      tf.env().set("WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE", 1000);
      const withArena = await chain(300);
      tf.env().set("WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE", batch);
      const withArenaDefault = await chain(300);
      uninstallUniformArena();
      assert.equal(uniformArenaInstalled(), false);
      const without = await chain(300);
      assert.deepEqual(withArena.values, without.values);
      assert.deepEqual(withArenaDefault.values, without.values);
      // Without the arena one write per dispatch (≥ 300); with it one per submit or full buffer.
      assert.ok(without.writes >= 300, `${without.writes}`);
      assert.ok(withArena.writes < 20, `${withArena.writes}`);
      assert.ok(withArenaDefault.writes < without.writes / 5, `${withArenaDefault.writes}`);
      // tf.time (a submit per dispatch) with the arena.
      assert.equal(installUniformArena(), undefined);
      let y: tf.Tensor | undefined;
      await tf.time(() => {
        y = tf.tidy(() => tf.add(tf.mul(tf.ones([7]), 3), 1));
      });
      assert.deepEqual(Array.from(await y!.data()), new Array(7).fill(4));
      y!.dispose();
    } finally {
      tf.env().set("WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE", batch);
      tf.env().set("WEBGPU_CPU_FORWARD", forward);
    }
    assert.equal(tf.memory().numTensors, before, "tensors leaked");
  },
  () => assert.ok(registerWebgpuKernels()),
);

gpuTest(
  "registerWebgpuKernels() says when the arena cannot patch the backend, and runs without it",
  async () => {
    const be = tf.findBackend("webgpu") as unknown as Record<string, unknown>;
    unregisterWebgpuKernels();
    be["makeUniforms"] = undefined; // an instance without the method the arena replaces
    try {
      assert.equal(registerWebgpuKernels(), true);
      assert.equal(webgpuKernelsInstalled()?.uniformArena, false);
      assert.deepEqual(webgpuKernelsNotInstalled(), [
        "uniform arena: tfjs-backend-webgpu lacks makeUniforms/submitQueue/device/queue",
      ]);
    } finally {
      delete be["makeUniforms"];
      unregisterWebgpuKernels();
    }
    assert.equal(registerWebgpuKernels(), true);
    assert.equal(webgpuKernelsInstalled()?.uniformArena, true);
    assert.deepEqual(webgpuKernelsNotInstalled(), []);
    const y = tf.tidy(() => tf.matMul(tf.ones([3, 5]), tf.ones([4, 5]), false, true).sum());
    assert.equal((await y.data())[0], 60);
    y.dispose();
  },
);
