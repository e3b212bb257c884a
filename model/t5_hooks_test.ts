/**
 * What `forward` checks of a `selfAttentionPrefix` hook's result, right after the call: a wrong
 * shape or position bias is refused naming the hook, stack and block, and leaves no tensor.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { preset, type T5Config } from "./config.ts";
import type { AttentionPrefix, Stack, T5Hooks } from "./hooks.ts";
import { disposeT5, forward, initT5, type Seq2SeqBatch } from "./t5.ts";

/** tiny-relu (2 + 2 blocks, numHeads·dKv = 64) with a 64-token vocabulary. */
const CFG: T5Config = { ...preset("tiny-relu"), vocabSize: 64 };
const WIDTH = CFG.numHeads * CFG.dKv;

function makeBatch(): Seq2SeqBatch {
  return {
    inputIds: tf.tensor2d(
      [[5, 9, 13, 2, 1], [7, 8, 1, 0, 0], [3, 4, 6, 10, 1]],
      undefined,
      "int32",
    ),
    attentionMask: tf.tensor2d([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]),
    decoderInputIds: tf.tensor2d([[0, 4, 5, 6], [0, 7, 1, 0], [0, 9, 9, 9]], undefined, "int32"),
  };
}

/** Hooks whose prefix is `make()` in block `layer` of `stack` only (none elsewhere). */
function prefixAt(stack: Stack, layer: number, make: () => AttentionPrefix): T5Hooks {
  return {
    selfAttentionPrefix: (s, l) => (s === stack && l === layer ? make() : undefined),
  };
}

function prefix(
  keyShape: number[],
  valueShape: number[] = keyShape,
  positionBias = "zero",
): () => AttentionPrefix {
  return () => ({
    key: tf.zeros<tf.Rank>(keyShape) as tf.Tensor3D,
    value: tf.zeros<tf.Rank>(valueShape) as tf.Tensor3D,
    positionBias: positionBias as AttentionPrefix["positionBias"],
  });
}

Deno.test("forward refuses a selfAttentionPrefix result of a wrong shape or bias, naming the hook, stack and block, leak-free", () => {
  const model = initT5(CFG, { seed: 6 });
  const batch = makeBatch();
  const run = (hooks: T5Hooks) => {
    const r = forward(model, batch, { hooks });
    tf.dispose([r.logits, r.encoderOutput]);
  };
  // Accepted: a prefix of batch 1 (broadcast) or of the batch, with either bias.
  const before = tf.memory().numTensors;
  run(prefixAt("encoder", 0, prefix([1, 3, WIDTH])));
  run(prefixAt("decoder", 1, prefix([3, 2, WIDTH], [3, 2, WIDTH], "relative")));
  assert.equal(tf.memory().numTensors, before, "an accepted prefix left tensors");
  const expected = `expected \\[1 or 3 \\(the batch\\), l, ${WIDTH} \\(numHeads·dKv = ` +
    `${CFG.numHeads}·${CFG.dKv}\\)\\]`;
  const cases: [string, T5Hooks, RegExp][] = [
    [
      "key one column too wide",
      prefixAt("encoder", 0, prefix([1, 3, WIDTH + 1], [1, 3, WIDTH])),
      new RegExp(
        `^Error: model/t5\\.ts: selfAttentionPrefix hook \\(encoder block 0\\) returned key of shape ` +
          `\\[1,3,${WIDTH + 1}\\]; ${expected}$`,
      ),
    ],
    [
      "value of a batch neither 1 nor 3",
      prefixAt("decoder", 1, prefix([1, 3, WIDTH], [2, 3, WIDTH])),
      new RegExp(
        `selfAttentionPrefix hook \\(decoder block 1\\) returned value of shape ` +
          `\\[2,3,${WIDTH}\\]; ${expected}$`,
      ),
    ],
    [
      "rank-2 key",
      prefixAt("encoder", 1, prefix([3, WIDTH], [1, 3, WIDTH])),
      new RegExp(
        `\\(encoder block 1\\) returned key of shape \\[3,${WIDTH}\\]; ${expected}$`,
      ),
    ],
    [
      // Kills the mutant dropping the rank check (its first three dims are right).
      "rank-4 key",
      prefixAt("encoder", 0, prefix([1, 3, WIDTH, 1], [1, 3, WIDTH])),
      new RegExp(
        `\\(encoder block 0\\) returned key of shape \\[1,3,${WIDTH},1\\]; ${expected}$`,
      ),
    ],
    [
      // Kills the mutant dropping the tensor check (it would fail reading undefined's shape).
      "value not a tensor",
      prefixAt("decoder", 0, () => ({
        key: tf.zeros([1, 3, WIDTH]) as tf.Tensor3D,
        value: undefined as unknown as tf.Tensor3D,
        positionBias: "zero",
      })),
      new RegExp(`\\(decoder block 0\\) returned value undefined, not a tensor; ${expected}$`),
    ],
    [
      "key and value of different lengths",
      prefixAt("decoder", 0, prefix([1, 3, WIDTH], [1, 2, WIDTH])),
      new RegExp(
        `\\(decoder block 0\\) returned key of shape \\[1,3,${WIDTH}\\] and value of shape ` +
          `\\[1,2,${WIDTH}\\]; expected equal lengths l$`,
      ),
    ],
    [
      "positionBias none",
      prefixAt("encoder", 1, prefix([1, 3, WIDTH], [1, 3, WIDTH], "none")),
      /\(encoder block 1\) returned positionBias "none"; expected "zero" or "relative"$/,
    ],
  ];
  for (const [label, hooks, message] of cases) {
    const start = tf.memory().numTensors;
    assert.throws(() => run(hooks), message, label);
    // The hook's tensors and the forward pass's are freed by the sublayer's tidy.
    assert.equal(tf.memory().numTensors, start, `${label}: tensors leaked`);
  }
  tf.dispose([batch.inputIds, batch.attentionMask, batch.decoderInputIds]);
  disposeT5(model);
});
