/**
 * Private test helpers: a tiny backbone, a method context and deterministic batches.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { T5Config } from "../config.ts";
import type { MethodContext } from "../method.ts";
import { initT5, type Seq2SeqBatch, shiftRight, type T5Model } from "../t5.ts";

/** Task names used by the tests. */
export const TASKS = ["rte", "sst2", "cola"] as const;

/** A tiny model. */
export function tinyModel(config: T5Config, seed = 7): T5Model {
  return initT5(config, { seed });
}

/** A context with label-token ids for every test task. */
export function context(model: T5Model, seed = 11): MethodContext {
  return {
    config: model.config,
    tasks: TASKS,
    seed,
    backbone: model.params,
    // One id list per label word; some labels span several sub-words.
    labelTokenIds: new Map([["rte", [[5], [6, 7]]], ["sst2", [[7, 8], [9]]], ["cola", [[10]]]]),
  };
}

/** Deterministic pseudo-random ints in [lo, hi). */
function ints(n: number, lo: number, hi: number, seed: number): number[] {
  let a = seed >>> 0;
  return Array.from({ length: n }, () => {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    return lo + (a % (hi - lo));
  });
}

/** A batch with padding in the encoder input (row i has i trailing pads, capped) and labels. */
export function makeBatch(
  config: T5Config,
  rows: number,
  inputLength: number,
  targetLength: number,
  seed = 3,
): { batch: Seq2SeqBatch; labels: tf.Tensor2D } {
  return tf.tidy(() => {
    const ids = ints(rows * inputLength, 2, config.vocabSize, seed);
    const mask = Array.from(
      { length: rows * inputLength },
      (_, k) => (k % inputLength < inputLength - Math.min(Math.floor(k / inputLength), 3) ? 1 : 0),
    );
    const inputIds = tf.tensor2d(
      ids.map((v, k) => (mask[k] ? v : 0)),
      [rows, inputLength],
      "int32",
    );
    const labels = tf.tensor2d(
      ints(rows * targetLength, 2, 40, seed + 1),
      [rows, targetLength],
      "int32",
    );
    return {
      batch: {
        inputIds,
        attentionMask: tf.tensor2d(mask, [rows, inputLength], "float32"),
        decoderInputIds: shiftRight(labels, config),
      },
      labels,
    };
  });
}

/** Rows `idx` of a batch. */
export function subBatch(batch: Seq2SeqBatch, idx: number[]): Seq2SeqBatch {
  return tf.tidy(() => {
    const i = tf.tensor1d(idx, "int32");
    return {
      inputIds: tf.gather(batch.inputIds, i),
      attentionMask: tf.gather(batch.attentionMask, i),
      decoderInputIds: tf.gather(batch.decoderInputIds, i),
    };
  });
}

/** Disposes a batch. */
export function disposeBatch(batch: Seq2SeqBatch): void {
  tf.dispose([batch.inputIds, batch.attentionMask, batch.decoderInputIds]);
}
