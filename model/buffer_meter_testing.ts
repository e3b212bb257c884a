/**
 * Test helper: live data-buffer bytes and their peak, as a GPU allocates them. tfjs's own counters
 * (`tf.memory().numBytes`, `tf.profile().peakBytes`) count every tensor handle, so a reshape or a
 * kept clone that shares its input's buffer counts twice; this meter counts each buffer once, when
 * it is made (`trackTensor` of a new data id) and when it is freed (`removeDataId`). Used by the
 * memory tests of benchmarks/memory.ts, model/backprop.ts and model/t5.ts's sublayer scopes.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";

/** A running meter: `now` and `peak` in bytes; `restore()` removes it from the engine. */
export interface BufferMeter {
  /** Bytes of the buffers alive now (made since the meter started, minus those freed). */
  now: number;
  /** The largest `now` seen. */
  peak: number;
  /** Puts the engine's own methods back. */
  restore: () => void;
}

/**
 * Starts counting data-buffer bytes made and freed on the current engine.
 *
 * @returns the meter (call `restore()` when done, also on failure)
 */
export function bufferMeter(): BufferMeter {
  const eng = tf.engine() as unknown as {
    state: { tensorInfo: Map<unknown, { bytes: number }> };
    trackTensor(a: tf.Tensor, b: unknown): void;
    removeDataId(d: unknown, b: unknown): void;
  };
  const m: BufferMeter = { now: 0, peak: 0, restore: () => {} };
  const track = eng.trackTensor, remove = eng.removeDataId;
  eng.trackTensor = function (a, b) {
    const had = eng.state.tensorInfo.has(a.dataId);
    track.call(eng, a, b);
    if (!had && eng.state.tensorInfo.has(a.dataId)) {
      m.now += eng.state.tensorInfo.get(a.dataId)!.bytes;
      m.peak = Math.max(m.peak, m.now);
    }
  };
  eng.removeDataId = function (d, b) {
    const info = eng.state.tensorInfo.get(d);
    remove.call(eng, d, b);
    if (info && !eng.state.tensorInfo.has(d)) m.now -= info.bytes;
  };
  m.restore = () => {
    eng.trackTensor = track;
    eng.removeDataId = remove;
  };
  return m;
}
