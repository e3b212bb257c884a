/**
 * T5 configuration: the typed, validated form of a Hugging Face `config.json`, and presets for every
 * published T5 size plus tiny sizes for tests and CPU runs.
 *
 * Field names are camelCase versions of the HF names (`d_model` → `dModel`), so
 * {@link t5ConfigFromHf} and {@link t5ConfigToHf} map them one to one.
 *
 * @module
 */
import { CheckpointError } from "./checkpoint_error.ts";

/** Feed-forward variant: T5 1.0 uses ReLU (`wi`, `wo`); T5 1.1 uses gated GELU (`wi_0`, `wi_1`, `wo`). */
export type FeedForwardProj = "relu" | "gated-gelu";

/** A T5 encoder-decoder configuration. Every field is required once validated. */
export interface T5Config {
  /** Vocabulary size (rows of the embedding matrix; 32,128 for the published checkpoints). */
  readonly vocabSize: number;
  /** Model width d. */
  readonly dModel: number;
  /** Per-head width d_kv (inner attention width is numHeads · dKv). */
  readonly dKv: number;
  /** Feed-forward inner width. */
  readonly dFf: number;
  /** Attention heads h. */
  readonly numHeads: number;
  /** Encoder blocks. */
  readonly numLayers: number;
  /** Decoder blocks (equal to numLayers for every published size). */
  readonly numDecoderLayers: number;
  /** Relative-position buckets (32 in the published sizes). */
  readonly relativeAttentionNumBuckets: number;
  /** Distance beyond which relative positions share the last log-spaced bucket (128 published). */
  readonly relativeAttentionMaxDistance: number;
  /** Feed-forward variant. */
  readonly feedForwardProj: FeedForwardProj;
  /** Input and output embeddings tied (T5 1.0) or a separate `lm_head` (T5 1.1). */
  readonly tieWordEmbeddings: boolean;
  /** Multiply decoder output by dModel^-0.5 before the output projection (HF: defaults to the tie flag). */
  readonly scaleDecoderOutputs: boolean;
  /** RMS layer-norm epsilon. */
  readonly layerNormEpsilon: number;
  /** Dropout rate used in training (0 disables). */
  readonly dropoutRate: number;
  /** Padding token id (0 in T5). */
  readonly padTokenId: number;
  /** End-of-sequence token id (1 in T5). */
  readonly eosTokenId: number;
  /** First decoder input token (0 = pad in T5; read as `pad_token_id` when a config omits it). */
  readonly decoderStartTokenId: number;
  /**
   * Stacks whose token embedding is a table of their own (`encoder.embed_tokens.weight`,
   * `decoder.embed_tokens.weight`) rather than `shared.weight`. Not a `config.json` field (and
   * never written to one): `t5FromTensors` (model/t5.ts) sets it when a checkpoint holds per-stack
   * tables that are not `shared.weight`'s storage (transformers 5 saves them for untied models;
   * `loadHfFolder` merges copies equal to `shared.weight` into it). Absent
   * (= none) for every published checkpoint and preset. Counted by `countT5Params`.
   */
  readonly ownEmbeddings?: readonly ("encoder" | "decoder")[];
}

/** Names of the built-in presets. */
export type PresetName =
  | "t5-small"
  | "t5-base"
  | "t5-large"
  | "t5-3b"
  | "t5-11b"
  | "t5-v1_1-small"
  | "t5-v1_1-base"
  | "t5-v1_1-large"
  | "t5-v1_1-xl"
  | "t5-v1_1-xxl"
  | "tiny-v1_1"
  | "tiny-relu"
  | "mini-v1_1";

function t5v10(
  dModel: number,
  dFf: number,
  numHeads: number,
  dKv: number,
  numLayers: number,
): T5Config {
  return {
    vocabSize: 32128,
    dModel,
    dKv,
    dFf,
    numHeads,
    numLayers,
    numDecoderLayers: numLayers,
    relativeAttentionNumBuckets: 32,
    relativeAttentionMaxDistance: 128,
    feedForwardProj: "relu",
    tieWordEmbeddings: true,
    scaleDecoderOutputs: true,
    layerNormEpsilon: 1e-6,
    dropoutRate: 0.1,
    padTokenId: 0,
    eosTokenId: 1,
    decoderStartTokenId: 0,
  };
}

function t5v11(dModel: number, dFf: number, numHeads: number, numLayers: number): T5Config {
  return {
    ...t5v10(dModel, dFf, numHeads, 64, numLayers),
    feedForwardProj: "gated-gelu",
    tieWordEmbeddings: false,
    scaleDecoderOutputs: false,
  };
}

/**
 * Presets: the published T5 1.0 (`t5-*`) and T5 1.1 (`t5-v1_1-*`) sizes, whose parameter totals
 * are checked against `shared/fixtures/t5_sizes.json`, and tiny sizes (`tiny-*`) for tests and
 * 2-core CPU runs. Tiny presets take their vocabulary size from the tokenizer they are used with;
 * 4,096 is the default of the offline tokenizer.
 */
export const PRESETS: Readonly<Record<PresetName, T5Config>> = {
  "t5-small": t5v10(512, 2048, 8, 64, 6),
  "t5-base": t5v10(768, 3072, 12, 64, 12),
  "t5-large": t5v10(1024, 4096, 16, 64, 24),
  "t5-3b": t5v10(1024, 16384, 32, 128, 24),
  "t5-11b": t5v10(1024, 65536, 128, 128, 24),
  "t5-v1_1-small": t5v11(512, 1024, 6, 8),
  "t5-v1_1-base": t5v11(768, 2048, 12, 12),
  "t5-v1_1-large": t5v11(1024, 2816, 16, 24),
  "t5-v1_1-xl": t5v11(2048, 5120, 32, 24),
  "t5-v1_1-xxl": t5v11(4096, 10240, 64, 24),
  /** T5 1.1 layout, d 64, 2+2 blocks: unit tests and the ci profile. */
  "tiny-v1_1": {
    ...t5v11(64, 128, 4, 2),
    vocabSize: 4096,
    dKv: 16,
    relativeAttentionNumBuckets: 16,
    relativeAttentionMaxDistance: 64,
  },
  /** T5 1.0 layout (ReLU, tied), d 64, 2+2 blocks. */
  "tiny-relu": {
    ...t5v10(64, 128, 4, 16, 2),
    vocabSize: 4096,
    relativeAttentionNumBuckets: 16,
    relativeAttentionMaxDistance: 64,
  },
  /** T5 1.1 layout, d 128, 4+4 blocks: the smoke profile on 2 CPU cores. */
  "mini-v1_1": {
    ...t5v11(128, 256, 4, 4),
    vocabSize: 4096,
    dKv: 32,
    relativeAttentionNumBuckets: 32,
    relativeAttentionMaxDistance: 128,
  },
};

/** Published sizes only (the keys of {@link PRESETS} that name a released checkpoint). */
export const PUBLISHED_PRESETS: readonly PresetName[] = [
  "t5-small",
  "t5-base",
  "t5-large",
  "t5-3b",
  "t5-11b",
  "t5-v1_1-small",
  "t5-v1_1-base",
  "t5-v1_1-large",
  "t5-v1_1-xl",
  "t5-v1_1-xxl",
];

/**
 * Whether a model reference names a preset with no released checkpoint (the tiny ones): its
 * pretrained backbone is built here by span corruption, and its tokenizer is trained on the task
 * corpus, where a published preset's come from the hub.
 *
 * @param model a preset name, or anything else a profile allows (`{"hf": ...}`)
 * @returns true for an unpublished preset's name
 */
export function isUnpublishedPreset(model: unknown): boolean {
  return typeof model === "string" && !PUBLISHED_PRESETS.includes(model as PresetName);
}

/**
 * Look up a preset by name.
 *
 * @param name a key of {@link PRESETS}
 * @returns the preset configuration
 * @throws Error naming the unknown preset and listing the known ones
 */
export function preset(name: string): T5Config {
  if (!Object.hasOwn(PRESETS, name)) {
    throw new Error(
      `Unknown T5 preset "${name}"; known presets: ${Object.keys(PRESETS).join(", ")}`,
    );
  }
  return PRESETS[name as PresetName];
}

type HfJson = Record<string, unknown>;

function field<T>(
  json: HfJson,
  key: string,
  kind: "number" | "boolean" | "string",
  source: string,
  fallback?: T,
): T {
  const v = json[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new CheckpointError(`${source}: missing field "${key}" (expected a ${kind})`, {
      file: source,
      field: key,
    });
  }
  const actual: string = typeof v;
  if (actual !== kind) {
    throw new CheckpointError(
      `${source}: field "${key}" must be a ${kind}, got ${JSON.stringify(v)} (${typeof v})`,
      { file: source, field: key },
    );
  }
  if (kind === "number" && !Number.isFinite(v as number)) {
    throw new CheckpointError(
      `${source}: field "${key}" must be a finite number, got ${String(v)}`,
      { file: source, field: key },
    );
  }
  return v as T;
}

function positiveInt(n: number, key: string, source: string): number {
  if (!Number.isInteger(n) || n <= 0) {
    throw new CheckpointError(`${source}: field "${key}" must be a positive integer, got ${n}`, {
      file: source,
      field: key,
    });
  }
  const max = SIZE_LIMITS[key];
  if (max !== undefined && n > max) {
    throw new CheckpointError(
      `${source}: field "${key}" must be at most ${max} (no T5 comes near it: a damaged or ` +
        `hostile file), got ${n}`,
      { file: source, field: key },
    );
  }
  return n;
}

/**
 * Upper bounds of a config.json's sizes, far above any T5 (T5-11B: 24 layers, d_model 1024, d_ff
 * 65536, 128 heads of d_kv 128; mT5's vocabulary 250112): a billion layers spent a minute and 3
 * GiB building parameter names before a bare RangeError, a d_model of 2^24 failed an allocation
 * without naming the file (h382).
 */
const SIZE_LIMITS: Readonly<Record<string, number>> = {
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

/**
 * Parse and validate a Hugging Face T5 `config.json` object.
 *
 * @param json the parsed JSON
 * @param source where it came from, used in error messages (a file path)
 * @returns the validated configuration
 * @throws CheckpointError naming the source (its `file`) and the offending field (its `field`;
 *   also for a `model_type` other than `t5` or `mt5`: other architectures share field names but
 *   not weights)
 * @example
 * ```ts
 * const cfg = t5ConfigFromHf({ d_model: 32, d_kv: 8, d_ff: 64, num_heads: 4, num_layers: 2,
 *   vocab_size: 96, feed_forward_proj: "relu" }, "inline");
 * console.assert(cfg.numDecoderLayers === 2);
 * ```
 */
export function t5ConfigFromHf(json: unknown, source: string): T5Config {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new CheckpointError(`${source}: a T5 config must be a JSON object`, { file: source });
  }
  const j = json as HfJson;
  const modelType = j.model_type;
  if (modelType !== undefined && modelType !== "t5" && modelType !== "mt5") {
    throw new CheckpointError(
      `${source}: field "model_type" is ${JSON.stringify(modelType)}; only T5 and mT5 ` +
        `checkpoints ("t5", "mt5") are supported`,
      { file: source, field: "model_type" },
    );
  }
  // An encoder-only checkpoint (sentence-embedding T5s) has no decoder to train or generate with:
  // said in one line, not as the decoder's missing tensors.
  const arch = (j as { architectures?: unknown }).architectures;
  const encoderOnly = Array.isArray(arch) && arch.length > 0 &&
    arch.every((a) => typeof a === "string" && /EncoderModel$/.test(a));
  if (encoderOnly) {
    throw new CheckpointError(
      `${source}: field "architectures" is ${JSON.stringify(arch)}: an encoder-only ` +
        "checkpoint; an encoder-decoder one (T5ForConditionalGeneration, " +
        "MT5ForConditionalGeneration) is needed",
      { file: source, field: "architectures" },
    );
  }
  const numLayers = positiveInt(field(j, "num_layers", "number", source), "num_layers", source);
  // A field the file leaves out takes transformers' default for its model_type: MT5Config's
  // are gated-GELU and untied, T5Config's ReLU and tied.
  const mt5 = modelType === "mt5";
  const ffRaw = field<string>(
    j,
    "feed_forward_proj",
    "string",
    source,
    mt5 ? "gated-gelu" : "relu",
  );
  let feedForwardProj: FeedForwardProj;
  if (ffRaw === "relu") feedForwardProj = "relu";
  else if (ffRaw === "gated-gelu" || ffRaw === "gated-gelu_new") feedForwardProj = "gated-gelu";
  else {
    throw new CheckpointError(
      `${source}: field "feed_forward_proj" must be "relu" or "gated-gelu", got "${ffRaw}"`,
      { file: source, field: "feed_forward_proj" },
    );
  }
  // transformers' T5Config derives these two from feed_forward_proj, and save_pretrained writes
  // them; a config.json whose own values differ (a hand edit) would be read by transformers with
  // them (kwargs set after the derivation), by this loader without: refused, not guessed.
  const derived = {
    dense_act_fn: ffRaw === "relu" ? "relu" : "gelu_new",
    is_gated_act: ffRaw !== "relu",
  };
  for (const [key, want] of Object.entries(derived)) {
    const got = (j as Record<string, unknown>)[key];
    if (got !== undefined && got !== want) {
      throw new CheckpointError(
        `${source}: field "${key}" is ${JSON.stringify(got)}, but "feed_forward_proj" ` +
          `"${ffRaw}" means ${JSON.stringify(want)}: transformers derives one from the other ` +
          `(save_pretrained writes both), so one of them was edited; make them agree (or drop ` +
          `"${key}")`,
        { file: source, field: key },
      );
    }
  }
  const tie = field<boolean>(j, "tie_word_embeddings", "boolean", source, !mt5);
  const padTokenId = field<number>(j, "pad_token_id", "number", source, 0);
  const cfg: T5Config = {
    vocabSize: positiveInt(field(j, "vocab_size", "number", source), "vocab_size", source),
    dModel: positiveInt(field(j, "d_model", "number", source), "d_model", source),
    dKv: positiveInt(field(j, "d_kv", "number", source), "d_kv", source),
    dFf: positiveInt(field(j, "d_ff", "number", source), "d_ff", source),
    numHeads: positiveInt(field(j, "num_heads", "number", source), "num_heads", source),
    numLayers,
    numDecoderLayers: positiveInt(
      field(j, "num_decoder_layers", "number", source, numLayers),
      "num_decoder_layers",
      source,
    ),
    relativeAttentionNumBuckets: positiveInt(
      field(j, "relative_attention_num_buckets", "number", source, 32),
      "relative_attention_num_buckets",
      source,
    ),
    relativeAttentionMaxDistance: positiveInt(
      field(j, "relative_attention_max_distance", "number", source, 128),
      "relative_attention_max_distance",
      source,
    ),
    feedForwardProj,
    tieWordEmbeddings: tie,
    scaleDecoderOutputs: field<boolean>(j, "scale_decoder_outputs", "boolean", source, tie),
    layerNormEpsilon: field(j, "layer_norm_epsilon", "number", source, 1e-6),
    dropoutRate: field(j, "dropout_rate", "number", source, 0.1),
    padTokenId,
    eosTokenId: field(j, "eos_token_id", "number", source, 1),
    // T5 starts decoding from the pad token; without the field, from the config's pad id.
    decoderStartTokenId: field(j, "decoder_start_token_id", "number", source, padTokenId),
  };
  for (
    const [key, id] of [
      ["pad_token_id", cfg.padTokenId],
      ["eos_token_id", cfg.eosTokenId],
      ["decoder_start_token_id", cfg.decoderStartTokenId],
    ] as const
  ) {
    if (!Number.isInteger(id) || id < 0 || id >= cfg.vocabSize) {
      throw new CheckpointError(
        `${source}: field "${key}" must be a token id in [0, ${cfg.vocabSize}) ("vocab_size"), ` +
          `got ${id}`,
        { file: source, field: key },
      );
    }
  }
  if (cfg.dropoutRate < 0 || cfg.dropoutRate >= 1) {
    throw new CheckpointError(
      `${source}: field "dropout_rate" must be in [0, 1), got ${cfg.dropoutRate}`,
      { file: source, field: "dropout_rate" },
    );
  }
  if (!(cfg.layerNormEpsilon > 0)) {
    throw new CheckpointError(
      `${source}: field "layer_norm_epsilon" must be positive, got ${cfg.layerNormEpsilon}`,
      { file: source, field: "layer_norm_epsilon" },
    );
  }
  return cfg;
}

/**
 * Write a configuration as a Hugging Face `config.json` object (readable by `transformers`).
 *
 * @param cfg the configuration
 * @returns a JSON-serialisable object with HF field names
 */
export function t5ConfigToHf(cfg: T5Config): Record<string, unknown> {
  const gated = cfg.feedForwardProj === "gated-gelu";
  return {
    architectures: ["T5ForConditionalGeneration"],
    model_type: "t5",
    is_encoder_decoder: true,
    vocab_size: cfg.vocabSize,
    d_model: cfg.dModel,
    d_kv: cfg.dKv,
    d_ff: cfg.dFf,
    num_heads: cfg.numHeads,
    num_layers: cfg.numLayers,
    num_decoder_layers: cfg.numDecoderLayers,
    relative_attention_num_buckets: cfg.relativeAttentionNumBuckets,
    relative_attention_max_distance: cfg.relativeAttentionMaxDistance,
    feed_forward_proj: cfg.feedForwardProj,
    dense_act_fn: gated ? "gelu_new" : "relu",
    is_gated_act: gated,
    tie_word_embeddings: cfg.tieWordEmbeddings,
    scale_decoder_outputs: cfg.scaleDecoderOutputs,
    layer_norm_epsilon: cfg.layerNormEpsilon,
    dropout_rate: cfg.dropoutRate,
    pad_token_id: cfg.padTokenId,
    eos_token_id: cfg.eosTokenId,
    decoder_start_token_id: cfg.decoderStartTokenId,
    initializer_factor: 1.0,
    use_cache: true,
  };
}
