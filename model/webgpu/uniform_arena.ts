/**
 * One uniform buffer per submit instead of one per dispatch, for tfjs's webgpu backend.
 *
 * tfjs-webgpu gives every dispatch its own uniform buffer (shapes, strides, the program's
 * constants): it takes a buffer from its pool and calls `queue.writeBuffer` for those few bytes.
 * Through Deno's WebGPU that write costs ≈ 16 µs of host time per dispatch, about a third of the
 * host cost of a small dispatch here. {@link installUniformArena} replaces the backend's
 * `makeUniforms` with one that packs the same bytes (tfjs's layout, tested byte for byte) into
 * slices of a large arena buffer, at the device's uniform offset alignment, and writes the used
 * part of the arena once, just before the backend submits its command encoder.
 *
 * Reusing the arena after a submit is safe for the same reason tfjs's own reuse of pooled
 * uniform buffers is: queue operations run in order, so a `writeBuffer` issued after a submit
 * happens after that submit's dispatches have read the old contents.
 *
 * This patches internals of `@tensorflow/tfjs-backend-webgpu` 4.22.0 (pinned): `makeUniforms`,
 * `submitQueue`, `device`, `queue`. {@link installUniformArena} checks they exist and otherwise
 * leaves the backend alone.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";

/** A uniform field as tfjs's `makeUniforms` takes it. */
export interface UniformFieldLike {
  type: string;
  data: number[];
}

/**
 * tfjs-webgpu's uniform layout: each field aligned by its length (1 → 4 bytes, 2 → 8, 3–6 →
 * 16; a field after one of length 5 or 6 → 16), the whole rounded up to its largest alignment.
 * Fields with no data become `[1]`, as tfjs does.
 *
 * @param fields the fields, in order
 * @param offsets filled with each field's byte offset
 * @returns the total size in bytes
 */
function uniformLayout(fields: UniformFieldLike[], offsets: number[]): number {
  let offset = 0;
  let preLength = 0;
  let maxAlign = 1;
  offsets.length = 0;
  for (const d of fields) {
    if (d.data.length === 0) d.data = [1];
    const n = d.data.length;
    if (n < 1 || n > 6) {
      throw new Error(`model/webgpu/uniform_arena.ts: a uniform of ${n} values (1–6 allowed)`);
    }
    let align = n === 1 ? 4 : n === 2 ? 8 : 16;
    if (preLength === 5 || preLength === 6) align = 16;
    if (align > maxAlign) maxAlign = align;
    offset = Math.ceil(offset / align) * align;
    preLength = n;
    offsets.push(offset);
    offset += n * 4;
  }
  return Math.ceil(offset / maxAlign) * maxAlign;
}

/**
 * Writes the fields at `at` in `view` in tfjs's layout (little-endian, as WebGPU reads them);
 * bytes of the padding are left as they are.
 */
function writeUniforms(
  fields: UniformFieldLike[],
  offsets: readonly number[],
  view: DataView,
  at: number,
): void {
  for (let i = 0; i < fields.length; i++) {
    const d = fields[i]!;
    const base = at + offsets[i]!;
    const data = d.data;
    if (d.type === "int32") {
      for (let j = 0; j < data.length; j++) view.setInt32(base + 4 * j, data[j]!, true);
    } else if (d.type === "uint32") {
      for (let j = 0; j < data.length; j++) view.setUint32(base + 4 * j, data[j]!, true);
    } else {
      for (let j = 0; j < data.length; j++) view.setFloat32(base + 4 * j, data[j]!, true);
    }
  }
}

/**
 * The bytes tfjs-webgpu writes for these uniform fields (see {@link uniformLayout}).
 *
 * @param fields the fields, in order
 * @returns the bytes tfjs would write
 */
export function packUniforms(fields: UniformFieldLike[]): Uint8Array {
  const offsets: number[] = [];
  const out = new Uint8Array(uniformLayout(fields, offsets));
  writeUniforms(fields, offsets, new DataView(out.buffer), 0);
  return out;
}

/** The backend internals the arena uses. */
interface ArenaBackend {
  device: GPUDevice;
  queue: GPUQueue;
  makeUniforms(fields: UniformFieldLike[]): GPUBufferBinding;
  submitQueue(): void;
}

/** Bytes of one arena buffer. */
const ARENA_BYTES = 1 << 16;

/** Arena state of one backend. */
class Arena {
  private readonly buffers: GPUBuffer[] = [];
  private readonly mirror = new Uint8Array(ARENA_BYTES);
  private readonly view = new DataView(this.mirror.buffer);
  /** Scratch for the field offsets of one placement. */
  private readonly offsets: number[] = [];
  private current = 0;
  private used = 0;
  private readonly align: number;

  constructor(private readonly device: GPUDevice, private readonly queue: GPUQueue) {
    this.align = Math.max(device.limits.minUniformBufferOffsetAlignment, 16);
  }

  /** A binding of the fields' bytes in the arena (written to the GPU at the next flush). */
  place(fields: UniformFieldLike[]): GPUBufferBinding {
    const size = uniformLayout(fields, this.offsets);
    let at = Math.ceil(this.used / this.align) * this.align;
    if (at + size > ARENA_BYTES) {
      this.flush(); // this buffer is complete: queue its bytes, go on in the next one
      this.current++;
      at = 0;
    }
    let buffer = this.buffers[this.current];
    if (buffer === undefined) {
      buffer = this.device.createBuffer({
        label: "hpUniformArena",
        size: ARENA_BYTES,
        usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      });
      this.buffers.push(buffer);
    }
    this.mirror.fill(0, at, at + size); // padding as tfjs leaves it: zero
    writeUniforms(fields, this.offsets, this.view, at);
    this.used = at + size;
    return { buffer, offset: at, size };
  }

  /** Queues the current buffer's used bytes (before the submit that reads them). */
  flush(): void {
    const buffer = this.buffers[this.current];
    if (buffer !== undefined && this.used > 0) {
      this.queue.writeBuffer(buffer, 0, this.mirror, 0, Math.ceil(this.used / 4) * 4);
    }
    this.used = 0;
  }

  /** After a submit: start again at the first buffer. */
  reset(): void {
    this.current = 0;
    this.used = 0;
  }

  destroy(): void {
    for (const b of this.buffers) b.destroy();
    this.buffers.length = 0;
  }
}

/** Installed arenas, with what to restore. */
const installed = new Map<object, { arena: Arena; restore: () => void }>();

/**
 * Installs the arena on the webgpu backend instance (idempotent).
 *
 * @returns undefined when installed (or already), otherwise why not (no webgpu backend, or an
 *   unexpected tfjs version)
 */
export function installUniformArena(): string | undefined {
  let be: ArenaBackend | undefined;
  try {
    be = tf.findBackend("webgpu") as unknown as ArenaBackend | undefined;
  } catch {
    be = undefined;
  }
  if (be == null) return "no webgpu backend instance";
  if (installed.has(be)) return undefined;
  if (
    typeof be.makeUniforms !== "function" || typeof be.submitQueue !== "function" ||
    be.device == null || be.queue == null
  ) {
    return "tfjs-backend-webgpu lacks makeUniforms/submitQueue/device/queue";
  }
  const target = be;
  const arena = new Arena(target.device, target.queue);
  const own = {
    makeUniforms: Object.prototype.hasOwnProperty.call(target, "makeUniforms"),
    submitQueue: Object.prototype.hasOwnProperty.call(target, "submitQueue"),
  };
  const origMake = target.makeUniforms;
  const origSubmit = target.submitQueue;
  target.makeUniforms = (fields) => arena.place(fields);
  target.submitQueue = function (this: ArenaBackend) {
    arena.flush();
    try {
      origSubmit.call(this);
    } finally {
      arena.reset();
    }
  };
  installed.set(target, {
    arena,
    restore: () => {
      if (own.makeUniforms) target.makeUniforms = origMake;
      else delete (target as Partial<ArenaBackend>).makeUniforms;
      if (own.submitQueue) target.submitQueue = origSubmit;
      else delete (target as Partial<ArenaBackend>).submitQueue;
    },
  });
  return undefined;
}

/**
 * Restores tfjs's per-dispatch uniform buffers. Work already recorded is submitted first (its
 * uniforms live in the arena), then the arena's buffers are destroyed.
 */
export function uninstallUniformArena(): void {
  for (const [be, { arena, restore }] of installed) {
    const b = be as ArenaBackend & { commandEncoder?: unknown };
    if (b.commandEncoder) {
      (b as unknown as { endComputePassEncoder?: () => void }).endComputePassEncoder?.();
      b.submitQueue();
    }
    restore();
    arena.destroy();
  }
  installed.clear();
}

/** Whether the arena is installed on the current webgpu backend. */
export function uniformArenaInstalled(): boolean {
  try {
    const be = tf.findBackend("webgpu");
    return be != null && installed.has(be);
  } catch {
    return false;
  }
}
