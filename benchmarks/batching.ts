/**
 * Text-to-text examples → padded `Seq2SeqBatch` tensors with per-example task ids.
 *
 * Lengths follow T5 (seqio `append_eos_after_trim`): the token ids are truncated to
 * `maxLength - 1` and then `</s>` is appended, so a truncated sequence still ends with EOS.
 * Labels are padded with -100 (ignored by the loss); decoder inputs are the labels shifted right
 * with `decoderStartTokenId` in front (pad where the label is -100), as Hugging Face's
 * `_shift_right` does. Batches are padded to their longest row (not to the maximum length),
 * which gives the same loss as padding to the maximum and is much cheaper on CPU.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { Example } from "../tasks/types.ts";
import { truncateWithEos } from "../model/tokenizer.ts";

export { truncateWithEos };

/** The part of a tokenizer batching needs (`model/tokenizer.ts` `T5Tokenizer` satisfies it). */
export interface TokenEncoder {
  /** Token ids of a text; may end with `</s>`. */
  encode(text: string): number[];
}

/** Special token ids batching needs (a `T5Config` satisfies it). */
export interface SpecialIds {
  readonly padTokenId: number;
  readonly eosTokenId: number;
  readonly decoderStartTokenId: number;
}

/** One tokenized example. */
export interface EncodedExample {
  /** Encoder ids, ending with EOS, at most `maxInputLength` long. */
  readonly input: readonly number[];
  /** Target ids, ending with EOS, at most `maxTargetLength` long. */
  readonly target: readonly number[];
  /** Task id (index into the run's task list). */
  readonly taskId: number;
}

/** A padded batch (matches `model/t5.ts` `Seq2SeqBatch` plus the labels). */
export interface TrainBatch {
  /** `[batch, inputLen]` int32. */
  readonly inputIds: tf.Tensor2D;
  /** `[batch, inputLen]` float32, 1 on real tokens. */
  readonly attentionMask: tf.Tensor2D;
  /** `[batch, targetLen]` int32: labels shifted right. */
  readonly decoderInputIds: tf.Tensor2D;
  /** `[batch, targetLen]` int32, -100 on padding. */
  readonly labels: tf.Tensor2D;
  /** Task id of each row. */
  readonly taskIds: readonly number[];
  /** Non-padding input + target tokens (for tokens/s). */
  readonly numTokens: number;
}

/**
 * Remove the text task prefix (`"rte sentence1: …"` → `"sentence1: …"`), for methods that
 * condition on the task otherwise (HyperFormer's `add_prefix=False`). Leaves the text unchanged
 * when it does not start with the prefix.
 *
 * @param input the T5 input string
 * @param prefix the task's first word (`tasks` `TaskSpec.prefix`)
 */
export function stripTaskPrefix(input: string, prefix: string): string {
  return input.startsWith(prefix + " ") ? input.slice(prefix.length + 1) : input;
}

/** Options of {@link encodeExample}. */
export interface EncodeOptions {
  readonly maxInputLength: number;
  readonly maxTargetLength: number;
  readonly eosTokenId: number;
  /** Whether to keep the task prefix of the input (default true). */
  readonly keepTaskPrefix?: boolean;
  /** The task's prefix word; required when `keepTaskPrefix` is false. */
  readonly taskPrefix?: string;
}

/**
 * Tokenize one example.
 *
 * @param ex the example
 * @param taskId its task id
 * @param tok the tokenizer
 * @param opts lengths and prefix handling
 * @returns the encoded example
 */
export function encodeExample(
  ex: Pick<Example, "input" | "target">,
  taskId: number,
  tok: TokenEncoder,
  opts: EncodeOptions,
): EncodedExample {
  let text = ex.input;
  if (opts.keepTaskPrefix === false) {
    if (opts.taskPrefix === undefined) {
      throw new Error(
        `benchmarks/batching.ts: taskPrefix is required when keepTaskPrefix is false`,
      );
    }
    text = stripTaskPrefix(text, opts.taskPrefix);
  }
  return {
    input: truncateWithEos(tok.encode(text), opts.maxInputLength, opts.eosTokenId),
    target: truncateWithEos(tok.encode(ex.target), opts.maxTargetLength, opts.eosTokenId),
    taskId,
  };
}

/**
 * Pad encoded examples into tensors (padded to the longest row).
 *
 * @param rows encoded examples (at least one)
 * @param ids pad / decoder-start ids
 * @returns the batch; dispose it with {@link disposeBatch}
 * @throws Error for an empty batch
 */
export function collate(rows: readonly EncodedExample[], ids: SpecialIds): TrainBatch {
  if (rows.length === 0) throw new Error(`benchmarks/batching.ts collate: empty batch`);
  const b = rows.length;
  const li = Math.max(...rows.map((r) => r.input.length));
  const lt = Math.max(...rows.map((r) => r.target.length));
  const inp = new Int32Array(b * li).fill(ids.padTokenId);
  const mask = new Float32Array(b * li);
  const lab = new Int32Array(b * lt).fill(-100);
  const dec = new Int32Array(b * lt).fill(ids.padTokenId);
  let numTokens = 0;
  rows.forEach((r, i) => {
    inp.set(r.input, i * li);
    mask.fill(1, i * li, i * li + r.input.length);
    lab.set(r.target, i * lt);
    dec[i * lt] = ids.decoderStartTokenId;
    dec.set(r.target.slice(0, lt - 1), i * lt + 1);
    numTokens += r.input.length + r.target.length;
  });
  return {
    inputIds: tf.tensor2d(inp, [b, li], "int32"),
    attentionMask: tf.tensor2d(mask, [b, li], "float32"),
    decoderInputIds: tf.tensor2d(dec, [b, lt], "int32"),
    labels: tf.tensor2d(lab, [b, lt], "int32"),
    taskIds: rows.map((r) => r.taskId),
    numTokens,
  };
}

/** Dispose a batch's tensors. */
export function disposeBatch(batch: TrainBatch): void {
  batch.inputIds.dispose();
  batch.attentionMask.dispose();
  batch.decoderInputIds.dispose();
  batch.labels.dispose();
}
