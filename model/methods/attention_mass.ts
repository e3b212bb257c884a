/**
 * Attention mass on hyper-prompts (spec §3.4, §4.6): for each self-attention layer, the softmax
 * probability that falls on the l prompt columns, summed over those columns per query, averaged
 * over the non-padded queries of each example and over the heads, then over the examples.
 * Layers without prompt columns report 0.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { Stack } from "../hooks.ts";
import type { MethodInstance } from "../method.ts";
import { forward, type Seq2SeqBatch, type T5Model } from "../t5.ts";

/** Per-layer attention mass on prompt columns, by stack. */
export interface AttentionMass {
  /** One value per encoder block, in [0, 1]. */
  readonly encoder: number[];
  /** One value per decoder block, in [0, 1]. */
  readonly decoder: number[];
}

/** Options of {@link attentionMass}. */
export interface AttentionMassOptions {
  /**
   * Float32 `[batch, targetLength]` mask of the decoder queries to count (1) or skip (0, padding).
   * Default: every decoder position counts.
   */
  readonly decoderMask?: tf.Tensor2D;
}

/**
 * Measures the attention mass on prompt columns with the `onAttention` hook (one forward pass,
 * no dropout). Leaves no tensors behind.
 *
 * @param model the backbone
 * @param instance the method (its hooks for `taskIds` are used)
 * @param batch the examples (e.g. 100 validation examples)
 * @param taskIds task id of each example
 * @param opts decoder query mask
 * @returns per-layer mass for the encoder and decoder self-attention
 * @example
 * ```ts ignore
 * const mass = await attentionMass(model, instance, batch, taskIds);
 * console.log(mass.encoder); // e.g. [0.21, 0.34]
 * ```
 */
export async function attentionMass(
  model: T5Model,
  instance: MethodInstance,
  batch: Seq2SeqBatch,
  taskIds: readonly number[],
  opts: AttentionMassOptions = {},
): Promise<AttentionMass> {
  const kept: Record<Stack, (tf.Tensor1D | undefined)[]> = { encoder: [], decoder: [] };
  const hooks = instance.hooks(taskIds);
  const queryMask = (stack: Stack, b: number, q: number): tf.Tensor2D => {
    const m = stack === "encoder" ? batch.attentionMask : opts.decoderMask;
    if (m === undefined) return tf.ones([b, q]);
    const extra = q - m.shape[1];
    if (extra < 0) {
      throw new Error(
        `attention_mass.ts: ${stack} mask has ${m.shape[1]} columns for ${q} queries`,
      );
    }
    // Rows a hook prepended to the encoder input (soft prompts) are real queries.
    return extra === 0 ? m : tf.concat([tf.ones([b, extra]), m], 1);
  };
  try {
    tf.tidy(() => {
      const out = forward(model, batch, {
        training: false,
        hooks: {
          ...hooks,
          onAttention(stack, layer, sublayer, probs, prefixLength) {
            hooks.onAttention?.(stack, layer, sublayer, probs, prefixLength);
            if (sublayer !== "self_attention") return;
            const [b, , q] = probs.shape;
            const perExample = tf.tidy(() => {
              const mask = queryMask(stack, b, q);
              if (prefixLength === 0) return tf.zeros([b]) as tf.Tensor1D;
              const mass = probs.slice([0, 0, 0, 0], [-1, -1, -1, prefixLength]).sum(-1).mean(1);
              return mass.mul(mask).sum(1).div(mask.sum(1).maximum(1)) as tf.Tensor1D;
            });
            kept[stack][layer]?.dispose();
            kept[stack][layer] = tf.keep(perExample);
          },
        },
      });
      out.logits.dispose();
      out.encoderOutput.dispose();
    });
    // Asynchronous reads: webgpu in Deno has no synchronous one (tfjs reads GPU data back
    // synchronously through a canvas, which Deno lacks).
    const read = (s: Stack) =>
      Promise.all(Array.from(kept[s], async (t) => {
        if (t === undefined) return 0;
        const v = Array.from(await t.data());
        return v.reduce((a, x) => a + x, 0) / v.length;
      }));
    return { encoder: await read("encoder"), decoder: await read("decoder") };
  } finally {
    for (const s of ["encoder", "decoder"] as const) for (const t of kept[s]) t?.dispose();
  }
}
