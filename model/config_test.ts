import assert from "node:assert/strict";
import { sharedPath } from "./shared_dir.ts";
import { preset, PRESETS, t5ConfigFromHf, t5ConfigToHf } from "./config.ts";
import { CheckpointError } from "./checkpoint_error.ts";

// The config.json of published checkpoints, as on the hub (task_specific_params and other fields
// transformers ignores for the architecture left out).
const T5_SMALL = {
  architectures: ["T5ForConditionalGeneration"],
  d_ff: 2048,
  d_kv: 64,
  d_model: 512,
  decoder_start_token_id: 0,
  dropout_rate: 0.1,
  eos_token_id: 1,
  initializer_factor: 1.0,
  is_encoder_decoder: true,
  layer_norm_epsilon: 1e-06,
  model_type: "t5",
  n_positions: 512,
  num_heads: 8,
  num_layers: 6,
  output_past: true,
  pad_token_id: 0,
  relative_attention_num_buckets: 32,
  vocab_size: 32128,
};
const T5_V1_1_SMALL = {
  architectures: ["T5ForConditionalGeneration"],
  d_ff: 1024,
  d_kv: 64,
  d_model: 512,
  decoder_start_token_id: 0,
  dropout_rate: 0.1,
  eos_token_id: 1,
  feed_forward_proj: "gated-gelu",
  initializer_factor: 1.0,
  is_encoder_decoder: true,
  layer_norm_epsilon: 1e-06,
  model_type: "t5",
  num_decoder_layers: 8,
  num_heads: 6,
  num_layers: 8,
  output_past: true,
  pad_token_id: 0,
  relative_attention_num_buckets: 32,
  tie_word_embeddings: false,
  vocab_size: 32128,
};
const FLAN_T5_SMALL = {
  ...T5_V1_1_SMALL,
  dense_act_fn: "gelu_new",
  is_gated_act: true,
  n_positions: 512,
  relative_attention_max_distance: 128,
  torch_dtype: "float32",
  transformers_version: "4.23.1",
  use_cache: true,
};
const MT5_SMALL = {
  ...T5_V1_1_SMALL,
  architectures: ["MT5ForConditionalGeneration"],
  model_type: "mt5",
  tokenizer_class: "T5Tokenizer",
  vocab_size: 250112,
};

Deno.test("t5ConfigFromHf: published T5 1.0, T5 1.1, Flan-T5 and mT5 configs give the presets", () => {
  // T5 1.0 configs have no feed_forward_proj, tie_word_embeddings or num_decoder_layers: ReLU,
  // tied and scaled, as many decoder blocks as encoder blocks (transformers' defaults).
  assert.deepEqual(t5ConfigFromHf(T5_SMALL, "t5-small"), preset("t5-small"));
  assert.deepEqual(t5ConfigFromHf(T5_V1_1_SMALL, "v1_1"), preset("t5-v1_1-small"));
  assert.deepEqual(t5ConfigFromHf(FLAN_T5_SMALL, "flan"), preset("t5-v1_1-small"));
  assert.deepEqual(t5ConfigFromHf(MT5_SMALL, "mt5"), {
    ...preset("t5-v1_1-small"),
    vocabSize: 250112,
  });
  // Fields left out take transformers' defaults for the model_type: MT5Config's are gated-GELU
  // and untied (T5Config's, ReLU and tied, were applied to mT5 too).
  const { feed_forward_proj: _ff, tie_word_embeddings: _tie, ...bareMt5 } = MT5_SMALL;
  const mt5Defaults = t5ConfigFromHf(bareMt5, "mt5");
  assert.deepEqual(
    [mt5Defaults.feedForwardProj, mt5Defaults.tieWordEmbeddings, mt5Defaults.scaleDecoderOutputs],
    ["gated-gelu", false, false],
  );
  const bareT5 = t5ConfigFromHf({ ...bareMt5, model_type: "t5" }, "t5");
  assert.deepEqual([bareT5.feedForwardProj, bareT5.tieWordEmbeddings], ["relu", true]);
  // "gated-gelu_new" is the same activation as "gated-gelu" (transformers maps that to gelu_new).
  assert.equal(
    t5ConfigFromHf({ ...T5_V1_1_SMALL, feed_forward_proj: "gated-gelu_new" }, "x").feedForwardProj,
    "gated-gelu",
  );
  // scale_decoder_outputs (transformers 5) defaults to tie_word_embeddings, and is read when set.
  const untiedScaled = t5ConfigFromHf({ ...T5_SMALL, tie_word_embeddings: false }, "x");
  assert.equal(untiedScaled.scaleDecoderOutputs, false);
  assert.equal(
    t5ConfigFromHf({ ...T5_SMALL, scale_decoder_outputs: false }, "x").scaleDecoderOutputs,
    false,
  );
  assert.equal(t5ConfigFromHf({ ...T5_SMALL, num_decoder_layers: null }, "x").numDecoderLayers, 6);
});

Deno.test("t5ConfigFromHf: numeric fields left out take T5Config's defaults", () => {
  // transformers' T5Config: layer_norm_epsilon 1e-6, dropout_rate 0.1, 32 buckets up to distance
  // 128, eos 1, pad 0. Published configs spell most of them out, so only a bare one tests these.
  const {
    layer_norm_epsilon: _eps,
    dropout_rate: _drop,
    relative_attention_num_buckets: _buckets,
    eos_token_id: _eos,
    pad_token_id: _pad,
    ...bare
  } = T5_SMALL;
  const c = t5ConfigFromHf(bare, "bare");
  assert.deepEqual(
    [
      c.layerNormEpsilon,
      c.dropoutRate,
      c.relativeAttentionNumBuckets,
      c.relativeAttentionMaxDistance,
      c.eosTokenId,
      c.padTokenId,
    ],
    [1e-6, 0.1, 32, 128, 1, 0],
  );
});

Deno.test("t5ConfigFromHf: without decoder_start_token_id, decoding starts from the pad token", () => {
  // T5 starts the decoder from pad; a config with another pad id and no start id used to start
  // from token 0 (a real token there) instead.
  const { decoder_start_token_id: _, ...noStart } = T5_SMALL;
  assert.equal(t5ConfigFromHf(noStart, "x").decoderStartTokenId, 0);
  const padded = t5ConfigFromHf({ ...noStart, pad_token_id: 3 }, "x");
  assert.deepEqual([padded.padTokenId, padded.decoderStartTokenId], [3, 3]);
  // An explicit start id still wins.
  const explicit = t5ConfigFromHf({ ...T5_SMALL, pad_token_id: 3 }, "x");
  assert.deepEqual([explicit.padTokenId, explicit.decoderStartTokenId], [3, 0]);
});

Deno.test("t5ConfigToHf writes what transformers wrote for the fixtures, and reads back the same", async () => {
  for (const name of ["t5-tiny-relu", "t5-tiny-v1_1-untied"]) {
    const path = sharedPath("fixtures", "hf-t5", name, "config.json");
    const hf = JSON.parse(await Deno.readTextFile(path));
    const written = t5ConfigToHf(t5ConfigFromHf(hf, path));
    // Every field transformers 5.17 wrote, except those that describe the writer or the stored
    // dtype (saveHfFolder adds "dtype"), has the same value in ours.
    for (const [k, v] of Object.entries(hf)) {
      if (["transformers_version", "dtype", "classifier_dropout", "is_decoder"].includes(k)) {
        continue;
      }
      assert.deepEqual(written[k], v, `${name}: field "${k}"`);
    }
  }
  for (const [name, cfg] of Object.entries(PRESETS)) {
    assert.deepEqual(t5ConfigFromHf(t5ConfigToHf(cfg), name), cfg, name);
  }
});

Deno.test("t5ConfigFromHf: other architectures and bad token ids are errors naming the field", () => {
  const file = "some/config.json";
  for (const modelType of ["umt5", "bart", "longt5"]) {
    assert.throws(
      () => t5ConfigFromHf({ ...T5_V1_1_SMALL, model_type: modelType }, file),
      new RegExp(
        `^CheckpointError: some/config\\.json: field "model_type" is "${modelType}"; only T5 and mT5`,
      ),
    );
  }
  assert.throws(
    () => t5ConfigFromHf({ ...T5_SMALL, feed_forward_proj: "gated-silu" }, file),
    /some\/config\.json: field "feed_forward_proj" must be "relu" or "gated-gelu", got "gated-silu"/,
  );
  // transformers derives dense_act_fn and is_gated_act from feed_forward_proj (save_pretrained
  // writes them): equal values load, a hand-edited other one is refused by name.
  const gated = { ...T5_V1_1_SMALL, feed_forward_proj: "gated-gelu" };
  t5ConfigFromHf({ ...gated, dense_act_fn: "gelu_new", is_gated_act: true }, file);
  t5ConfigFromHf({ ...T5_SMALL, feed_forward_proj: "relu", dense_act_fn: "relu" }, file);
  for (
    const [cfg, key, got, want] of [
      [{ ...gated, dense_act_fn: "gelu" }, "dense_act_fn", '"gelu"', '"gelu_new"'],
      [{ ...gated, is_gated_act: false }, "is_gated_act", "false", "true"],
      [
        { ...T5_SMALL, feed_forward_proj: "relu", dense_act_fn: "gelu_new" },
        "dense_act_fn",
        '"gelu_new"',
        '"relu"',
      ],
    ] as const
  ) {
    assert.throws(
      () => t5ConfigFromHf(cfg, file),
      (e: unknown) =>
        e instanceof CheckpointError && e.field === key &&
        e.message.startsWith(
          `some/config.json: field "${key}" is ${got}, but "feed_forward_proj" `,
        ) &&
        e.message.includes(`means ${want}`),
    );
  }
  for (
    const [key, value] of [
      ["pad_token_id", -1],
      ["eos_token_id", 32128],
      ["decoder_start_token_id", 0.5],
    ] as const
  ) {
    assert.throws(
      () => t5ConfigFromHf({ ...T5_SMALL, [key]: value }, file),
      new RegExp(
        `field "${key}" must be a token id in \\[0, 32128\\) \\("vocab_size"\\), got ${value}`,
      ),
    );
  }
  assert.throws(
    () => t5ConfigFromHf({ ...T5_SMALL, eos_token_id: [1] }, file),
    /field "eos_token_id" must be a number, got \[1\]/,
  );
});

Deno.test("t5ConfigFromHf: each bad or missing field is a CheckpointError with the file and field", () => {
  const file = "ck/config.json";
  const bare: Record<string, unknown> = { ...T5_SMALL };
  delete bare.d_model;
  for (
    const [json, field, message] of [
      [bare, "d_model", /: missing field "d_model" \(expected a number\)$/],
      [{ ...T5_SMALL, d_ff: "2048" }, "d_ff", /: field "d_ff" must be a number, got "2048"/],
      [
        { ...T5_SMALL, num_heads: 0 },
        "num_heads",
        /: field "num_heads" must be a positive integer/,
      ],
      [{ ...T5_SMALL, d_kv: Infinity }, "d_kv", /: field "d_kv" must be a finite number/],
      // Sizes no T5 comes near (h382: a billion layers spent a minute and 3 GiB first).
      [
        { ...T5_SMALL, num_layers: 1e9 },
        "num_layers",
        /: field "num_layers" must be at most 1024 \(no T5 comes near it: a damaged or hostile file\), got 1000000000$/,
      ],
      [{ ...T5_SMALL, d_model: 2 ** 24 }, "d_model", /: field "d_model" must be at most 65536 /],
      [
        { ...T5_SMALL, relative_attention_num_buckets: 2 ** 40 },
        "relative_attention_num_buckets",
        /: field "relative_attention_num_buckets" must be at most 4096 /,
      ],
      [
        { ...T5_SMALL, vocab_size: 2 ** 24 + 1 },
        "vocab_size",
        /: field "vocab_size" must be at most 16777216 /,
      ],
      [{ ...T5_SMALL, model_type: "bart" }, "model_type", /: field "model_type" is "bart"/],
      [
        { ...T5_SMALL, architectures: ["T5EncoderModel"] },
        "architectures",
        /: field "architectures" is \["T5EncoderModel"\]: an encoder-only checkpoint; an encoder-decoder one \(T5ForConditionalGeneration, MT5ForConditionalGeneration\) is needed$/,
      ],
      [
        { ...T5_SMALL, feed_forward_proj: "x" },
        "feed_forward_proj",
        /: field "feed_forward_proj" must/,
      ],
      [
        { ...T5_SMALL, pad_token_id: -1 },
        "pad_token_id",
        /: field "pad_token_id" must be a token id/,
      ],
      [{ ...T5_SMALL, dropout_rate: 1 }, "dropout_rate", /: field "dropout_rate" must be in/],
      [
        { ...T5_SMALL, layer_norm_epsilon: 0 },
        "layer_norm_epsilon",
        /: field "layer_norm_epsilon" must be positive/,
      ],
      [[T5_SMALL], undefined, /: a T5 config must be a JSON object$/],
    ] as const
  ) {
    assert.throws(() => t5ConfigFromHf(json, file), (e: unknown) => {
      assert.ok(e instanceof CheckpointError, `not a CheckpointError: ${e}`);
      assert.match(e.message, new RegExp(`^ck/config\\.json${message.source}`));
      assert.equal(e.file, file);
      assert.equal(e.field, field, e.message);
      return true;
    });
  }
  // An unknown preset is no checkpoint's error.
  assert.throws(() => preset("t5-nano"), (e: unknown) => !(e instanceof CheckpointError));
});

Deno.test("t5ConfigFromHf: each size field is capped, and its cap itself passes", () => {
  const caps: Record<string, number> = {
    vocab_size: 2 ** 24,
    d_model: 2 ** 16,
    d_kv: 2 ** 12,
    d_ff: 2 ** 20,
    num_heads: 2 ** 10,
    num_layers: 2 ** 10,
    num_decoder_layers: 2 ** 10,
    relative_attention_num_buckets: 2 ** 12,
    relative_attention_max_distance: 2 ** 20,
  };
  for (const [field, cap] of Object.entries(caps)) {
    assert.equal(
      (t5ConfigFromHf({ ...T5_SMALL, [field]: cap }, "c.json") as unknown as Record<
        string,
        number
      >)[field.replace(/_(\w)/g, (_, c) => c.toUpperCase())],
      cap,
      field,
    );
    assert.throws(
      () => t5ConfigFromHf({ ...T5_SMALL, [field]: cap + 1 }, "c.json"),
      (e: unknown) =>
        e instanceof CheckpointError && e.field === field &&
        e.message === `c.json: field "${field}" must be at most ${cap} (no T5 comes near it: a ` +
            `damaged or hostile file), got ${cap + 1}`,
      field,
    );
  }
});
