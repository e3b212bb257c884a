import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import {
  collate,
  disposeBatch,
  encodeExample,
  stripTaskPrefix,
  truncateWithEos,
} from "./batching.ts";

await tf.setBackend("cpu");

/** A fake tokenizer: one id per word (its length + 2), then EOS = 1, like T5Tokenizer.encode. */
const tok = {
  encode: (s: string) => [...s.split(/\s+/).filter((w) => w).map((w) => w.length + 2), 1],
};
const ids = { padTokenId: 0, eosTokenId: 1, decoderStartTokenId: 0 };

Deno.test("truncateWithEos() trims then appends EOS (T5 append_eos_after_trim)", () => {
  assert.deepEqual(truncateWithEos([5, 6, 7, 1], 3, 1), [5, 6, 1]);
  assert.deepEqual(truncateWithEos([5, 6, 7], 10, 1), [5, 6, 7, 1]);
  assert.deepEqual(truncateWithEos([5, 6, 7, 1], 1, 1), [1]);
  assert.deepEqual(truncateWithEos([], 4, 1), [1]);
  assert.throws(() => truncateWithEos([1], 0, 1), /maxLength/);
});

Deno.test("encodeExample() keeps or strips the task prefix", () => {
  const ex = { input: "rte sentence1: aa bbb", target: "entailment" };
  assert.deepEqual(
    encodeExample(ex, 3, tok, { maxInputLength: 8, maxTargetLength: 4, eosTokenId: 1 }),
    {
      input: [5, 12, 4, 5, 1],
      target: [12, 1],
      taskId: 3,
    },
  );
  const stripped = encodeExample(ex, 0, tok, {
    maxInputLength: 3,
    maxTargetLength: 4,
    eosTokenId: 1,
    keepTaskPrefix: false,
    taskPrefix: "rte",
  });
  assert.deepEqual(stripped.input, [12, 4, 1]);
  assert.equal(stripTaskPrefix("cola sentence: x", "rte"), "cola sentence: x");
  // The prefix is a whole word: "rte" does not strip "rtex".
  assert.equal(stripTaskPrefix("rtex sentence: x", "rte"), "rtex sentence: x");
  assert.throws(
    () =>
      encodeExample(ex, 0, tok, {
        maxInputLength: 3,
        maxTargetLength: 4,
        eosTokenId: 1,
        keepTaskPrefix: false,
      }),
    /taskPrefix/,
  );
});

Deno.test("collate() pads, masks, shifts labels right and counts tokens", async () => {
  const before = tf.memory().numTensors;
  const b = collate([
    { input: [5, 6, 1], target: [7, 1], taskId: 0 },
    { input: [8, 1], target: [9, 10, 11, 1], taskId: 2 },
  ], ids);
  assert.deepEqual(await b.inputIds.array(), [[5, 6, 1], [8, 1, 0]]);
  assert.deepEqual(await b.attentionMask.array(), [[1, 1, 1], [1, 1, 0]]);
  assert.deepEqual(await b.labels.array(), [[7, 1, -100, -100], [9, 10, 11, 1]]);
  assert.deepEqual(await b.decoderInputIds.array(), [[0, 7, 1, 0], [0, 9, 10, 11]]);
  assert.equal(b.inputIds.dtype, "int32");
  assert.deepEqual(b.taskIds, [0, 2]);
  assert.equal(b.numTokens, 3 + 2 + 2 + 4);
  disposeBatch(b);
  // The decoder starts from decoderStartTokenId, padding is padTokenId (here distinct ids).
  const other = collate([
    { input: [5, 1], target: [7, 8, 1], taskId: 0 },
    { input: [5, 1], target: [1], taskId: 0 },
  ], { padTokenId: 2, eosTokenId: 1, decoderStartTokenId: 3 });
  assert.deepEqual(await other.decoderInputIds.array(), [[3, 7, 8], [3, 1, 2]]);
  disposeBatch(other);
  assert.equal(tf.memory().numTensors, before);
  assert.throws(() => collate([], ids), /empty/);
});
