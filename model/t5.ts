/**
 * T5 encoder-decoder in TensorFlow.js, computing what Hugging Face's
 * `T5ForConditionalGeneration` computes (T5 1.0 and 1.1 layouts), with the method seam of
 * {@link T5Hooks}.
 *
 * Parameters live in a `Map` keyed by Hugging Face names (`shared.weight`,
 * `encoder.block.0.layer.0.SelfAttention.q.weight`, …, `lm_head.weight`), linear weights in HF
 * orientation `[out, in]`, so checkpoints load and save by name without renaming.
 *
 * Semantics (HF `modeling_t5.py`): pre-norm blocks with RMS norm; attention without 1/√d
 * scaling; a relative-position bias table owned by block 0 of each stack and shared by its blocks
 * (bidirectional buckets in the encoder, causal in the decoder, none in cross-attention); dropout
 * after the embedding, on attention probabilities, after the feed-forward activation, on each
 * sublayer output before the residual, and after each final norm; tied output projection scaled by
 * dModel^-0.5 when `scaleDecoderOutputs`, else an untied `lm_head`. Decoder padding is not
 * masked (HF default without `decoder_attention_mask`).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { type T5Config, t5ConfigToHf } from "./config.ts";
import { checkSizes, SIZE_FIELDS } from "./t5_sizes.ts";
import { CheckpointError } from "./checkpoint_error.ts";
import { dropout, dropoutAdd, softmaxCrossEntropy, softmaxCrossEntropyWithLse } from "./fused.ts";
import type { AttentionPrefix, Stack, Sublayer, T5Hooks } from "./hooks.ts";
import { wasmMatMulState } from "./wasm_kernels.ts";
import {
  attention,
  causalMask,
  feedForward,
  type FeedForwardWeights,
  gatherRows,
  linear,
  paddingMask,
  positionBias,
  rmsNorm,
  rmsNormKeep,
} from "./layers.ts";

let warnedStockWasm = false;

/**
 * Says once, on stderr, that a model is being built on tfjs's wasm backend as shipped (a script
 * that imported the library without `selectBackend`: tfjs then picks wasm), whose fused matMul
 * with a transposed operand and a bias or relu gives wrong numbers at sizes ≥ 256
 * (`../shared/reference/engine-notes.md`), and whose transposed matMuls are slow.
 */
function warnIfStockWasm(): void {
  if (warnedStockWasm || tf.getBackend() !== "wasm" || wasmMatMulState().mode !== "stock") return;
  warnedStockWasm = true;
  console.warn(
    "model/t5.ts: tfjs's wasm backend runs as shipped (no selectBackend): its fused matMul with " +
      "a transposed operand and a bias or relu gives wrong numbers at sizes of 256 and more, and " +
      'its transposed matMuls are slow; call selectBackend("auto") (model/backend.ts) first',
  );
}

/** A T5 model: its configuration and its variables by Hugging Face name. */
export interface T5Model {
  /** The configuration the variables were built for. */
  readonly config: T5Config;
  /**
   * Variables by HF name. Always `shared.weight`; `lm_head.weight` when untied;
   * `encoder.embed_tokens.weight` / `decoder.embed_tokens.weight` only when a checkpoint holds
   * per-stack embeddings that differ from `shared.weight` (they are then used by their stack).
   */
  readonly params: Map<string, tf.Variable>;
}

/** One encoder-decoder batch. */
export interface Seq2SeqBatch {
  /** Encoder token ids, int32 `[batch, inputLength]`. */
  inputIds: tf.Tensor2D;
  /** Encoder mask, float32 `[batch, inputLength]`, 1 = token, 0 = padding. */
  attentionMask: tf.Tensor2D;
  /**
   * Decoder input ids (labels shifted right, see {@link shiftRight}), int32
   * `[batch, targetLength]`.
   */
  decoderInputIds: tf.Tensor2D;
}

/** Options of {@link forward}. */
export interface ForwardOptions {
  /** Method hooks for this batch. */
  hooks?: T5Hooks;
  /** Apply dropout at `config.dropoutRate` (default false). */
  training?: boolean;
  /**
   * Seed of this step's dropout masks (training only). The same seed gives the same masks;
   * without one the masks are drawn unseeded.
   */
  dropoutSeed?: number;
}

/** Output of {@link forward}. */
export interface ForwardResult {
  /** Next-token logits `[batch, targetLength, vocabSize]`. */
  logits: tf.Tensor3D;
  /**
   * Encoder output after the final layer norm `[batch, encoderLength, dModel]` (includes rows a
   * hook prepended).
   */
  encoderOutput: tf.Tensor3D;
}

// ---------------------------------------------------------------------------------------------
// Names and shapes

function attnNames(prefix: string): string[] {
  return ["q", "k", "v", "o"].map((p) => `${prefix}.${p}.weight`);
}

function ffNames(prefix: string, gated: boolean): string[] {
  return gated
    ? [`${prefix}.wi_0.weight`, `${prefix}.wi_1.weight`, `${prefix}.wo.weight`]
    : [`${prefix}.wi.weight`, `${prefix}.wo.weight`];
}

/**
 * Every parameter of a model with this configuration and its shape, in HF names and orientation,
 * in the order HF's `named_parameters()` lists them, then a per-stack `embed_tokens` table for
 * each stack in `config.ownEmbeddings` (none in published checkpoints, whose per-stack tables are
 * the shared matrix).
 *
 * @param config the model configuration
 * @returns name → shape
 */
export function t5ParamShapes(config: T5Config): Map<string, number[]> {
  const { vocabSize: v, dModel: d, dFf: ff, numHeads: h, relativeAttentionNumBuckets: nb } = config;
  const inner = h * config.dKv;
  const gated = config.feedForwardProj === "gated-gelu";
  const shapes = new Map<string, number[]>();
  shapes.set("shared.weight", [v, d]);
  const attn = (prefix: string, bias: boolean) => {
    const [q, k, vv, o] = attnNames(prefix) as [string, string, string, string];
    shapes.set(q, [inner, d]);
    shapes.set(k, [inner, d]);
    shapes.set(vv, [inner, d]);
    shapes.set(o, [d, inner]);
    if (bias) shapes.set(`${prefix}.relative_attention_bias.weight`, [nb, h]);
  };
  const ffn = (prefix: string) => {
    const names = ffNames(prefix, gated);
    for (const n of names.slice(0, -1)) shapes.set(n, [ff, d]);
    shapes.set(names[names.length - 1]!, [d, ff]);
  };
  for (let i = 0; i < config.numLayers; i++) {
    const b = `encoder.block.${i}`;
    attn(`${b}.layer.0.SelfAttention`, i === 0);
    shapes.set(`${b}.layer.0.layer_norm.weight`, [d]);
    ffn(`${b}.layer.1.DenseReluDense`);
    shapes.set(`${b}.layer.1.layer_norm.weight`, [d]);
  }
  shapes.set("encoder.final_layer_norm.weight", [d]);
  for (let i = 0; i < config.numDecoderLayers; i++) {
    const b = `decoder.block.${i}`;
    attn(`${b}.layer.0.SelfAttention`, i === 0);
    shapes.set(`${b}.layer.0.layer_norm.weight`, [d]);
    attn(`${b}.layer.1.EncDecAttention`, false);
    shapes.set(`${b}.layer.1.layer_norm.weight`, [d]);
    ffn(`${b}.layer.2.DenseReluDense`);
    shapes.set(`${b}.layer.2.layer_norm.weight`, [d]);
  }
  shapes.set("decoder.final_layer_norm.weight", [d]);
  if (!config.tieWordEmbeddings) shapes.set("lm_head.weight", [v, d]);
  for (const stack of ["encoder", "decoder"] as const) {
    if (config.ownEmbeddings?.includes(stack)) shapes.set(`${stack}.embed_tokens.weight`, [v, d]);
  }
  return shapes;
}

/**
 * Std of HF `_init_weights` (initializer_factor 1) for one parameter name; 0 marks a norm (ones).
 */
function initStd(name: string, config: T5Config): number {
  const d = config.dModel;
  if (name.endsWith("layer_norm.weight")) return 0;
  if (
    name === "shared.weight" || name === "lm_head.weight" || name.endsWith("embed_tokens.weight")
  ) {
    return 1.0;
  }
  if (name.endsWith("relative_attention_bias.weight")) return d ** -0.5;
  if (/\.(wi|wi_0|wi_1)\.weight$/.test(name)) return d ** -0.5;
  if (/\.wo\.weight$/.test(name)) return config.dFf ** -0.5;
  if (/\.q\.weight$/.test(name)) return (d * config.dKv) ** -0.5;
  if (/\.(k|v)\.weight$/.test(name)) return d ** -0.5;
  if (/\.o\.weight$/.test(name)) return (config.numHeads * config.dKv) ** -0.5;
  throw new Error(`model/t5.ts initStd: no initialiser for parameter "${name}"`);
}

/** 32-bit FNV-1a of a string mixed with a seed: a stable per-name seed. */
function hashSeed(seed: number, text: string): number {
  let h = (0x811c9dc5 ^ (seed >>> 0)) >>> 0;
  h = Math.imul(h ^ (seed / 4294967296 >>> 0), 16777619) >>> 0;
  for (let i = 0; i < text.length; i++) {
    h = Math.imul(h ^ text.charCodeAt(i), 16777619) >>> 0;
  }
  return h;
}

/** Integer mixer (splitmix-like) for dropout seeds: distinct (seed, counter) → distinct seeds. */
function mixSeed(seed: number, counter: number): number {
  let x = (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(counter + 1, 0x85ebca77)) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x7feb352d) >>> 0;
  x = Math.imul(x ^ (x >>> 15), 0x846ca68b) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

/**
 * A freshly initialised model, like HF `T5PreTrainedModel._init_weights` with
 * `initializer_factor` 1: normal(0, σ) with σ = 1 for embeddings and `lm_head`, dModel^-½ for
 * `wi*`, `k`, `v` and the position bias, dFf^-½ for `wo`, (dModel·dKv)^-½ for `q`,
 * (heads·dKv)^-½ for `o`; norms are ones. Each tensor's seed is derived from `seed` and its name,
 * so the result does not depend on creation order or backend.
 *
 * @param config the configuration
 * @param opts.seed root seed, an integer (`Number.isSafeInteger`)
 * @returns the model, whose variables the caller releases with {@link disposeT5}
 * @throws Error naming a size field of `config` that is not a positive integer, or a seed that is
 *   not an integer (before any tensor is made)
 */
export function initT5(config: T5Config, opts: { seed: number }): T5Model {
  checkSizes("model/t5.ts", "initT5", config);
  warnIfStockWasm();
  const seed: unknown = opts?.seed;
  if (!Number.isSafeInteger(seed)) {
    throw new Error(`model/t5.ts initT5: opts.seed must be an integer, got ${seed}`);
  }
  const params = new Map<string, tf.Variable>();
  for (const [name, shape] of t5ParamShapes(config)) {
    const std = initStd(name, config);
    const value = tf.tidy(() =>
      std === 0
        ? tf.ones(shape)
        : tf.randomNormal(shape, 0, std, "float32", hashSeed(opts.seed, name))
    );
    params.set(name, tf.variable(value, true));
    value.dispose();
  }
  return { config, params };
}

/** Names a checkpoint may hold that HF ignores on load (unused cross-attention bias tables). */
const IGNORED = /^decoder\.block\.\d+\.layer\.1\.EncDecAttention\.relative_attention_bias\.weight$/;

/** Names listed in full by {@link checkT5Checkpoint}'s error, per kind; the rest are counted. */
const LISTED_NAMES = 8;

/** A checkpoint tensor's dtype and shape (a loaded tensor, or a safetensors header entry). */
export interface CheckpointTensor {
  /** Element type: a tfjs dtype (`float32`), or a safetensors one (`F32`, `BF16`). */
  readonly dtype: string;
  /** Shape. */
  readonly shape: readonly number[];
  /** The file holding it, named by errors about it (default: the checkpoint's `source`). */
  readonly file?: string;
}

/** Options of {@link checkT5Checkpoint}. */
export interface CheckT5CheckpointOptions {
  /** The dtypes a weight may have. */
  readonly dtypes: readonly string[];
  /** The configuration's file, named by the errors (e.g. the folder's `config.json`). */
  readonly configSource?: string;
}

function quoteNames(names: readonly string[], label: (name: string) => string): string {
  const shown = names.slice(0, LISTED_NAMES).map(label).join(", ");
  return names.length > LISTED_NAMES ? `${shown}, and ${names.length - LISTED_NAMES} more` : shown;
}

/** Blocks a stack's names index (highest block index + 1), 0 when none. */
function blocksNamed(names: Iterable<string>, stack: "encoder" | "decoder"): number {
  const re = new RegExp(`^${stack}\\.block\\.(\\d+)\\.`);
  let n = 0;
  for (const name of names) {
    const m = re.exec(name);
    if (m) n = Math.max(n, Number(m[1]) + 1);
  }
  return n;
}

/**
 * The `config.json` field that decides the one dimension in which a weight's shape differs from
 * the configuration's, found by changing each size field in turn (`t5_sizes.ts` `SIZE_FIELDS`; the
 * layer counts and the bucket distance move no weight's shape) and seeing which dimensions of
 * {@link t5ParamShapes} follow (so the shapes' own formulas decide, not a copy of them), and named
 * as `config.json` names it ({@link t5ConfigToHf}). Undefined when the ranks differ, when more
 * than one dimension differs, or when no single field or `num_heads`·`d_kv` decides it.
 *
 * @param config the configuration (sizes already checked)
 * @param name the weight
 * @param got the shape the checkpoint gives it
 * @returns the dimension, its label for the message (`"d_ff"`, `"num_heads" × "d_kv"`), and
 *   `field` when one field alone decides it
 */
function decidingField(
  config: T5Config,
  name: string,
  got: readonly number[],
): { axis: number; label: string; field?: string } | undefined {
  const want = t5ParamShapes(config).get(name);
  if (want === undefined || want.length !== got.length) return undefined;
  const axes = want.flatMap((n, i) => n === got[i] ? [] : [i]);
  if (axes.length !== 1) return undefined;
  const axis = axes[0]!;
  const hf = t5ConfigToHf(config);
  const fields: string[] = [];
  for (const f of SIZE_FIELDS) {
    const changed = { ...config, [f]: config[f] + 1 };
    if (t5ParamShapes(changed).get(name)?.[axis] === want[axis]) continue;
    const changedHf = t5ConfigToHf(changed);
    // The key whose value follows the field (the arrays, `architectures`, are other objects).
    const key = Object.keys(hf).find((k) => typeof hf[k] !== "object" && hf[k] !== changedHf[k]);
    if (key !== undefined) fields.push(key);
  }
  if (fields.length === 1) return { axis, label: `"${fields[0]}"`, field: fields[0]! };
  // The attention projections' inner width is the product of the two.
  if (fields.length === 2 && fields.includes("num_heads") && fields.includes("d_kv")) {
    return { axis, label: `"num_heads" × "d_kv"` };
  }
  return undefined;
}

/**
 * Checks a checkpoint's tensor names, dtypes and shapes against a T5 configuration, from their
 * descriptions alone (no values are read: a loader checks the safetensors headers before reading
 * any tensor data). The names are checked first, in one error that lists both the missing and the
 * unexpected ones (a renamed tensor is both), with the blocks each stack's names index when that
 * differs from the configuration's `num_layers` / `num_decoder_layers`. Accepted besides the
 * configuration's weights: `encoder.embed_tokens.weight` and `decoder.embed_tokens.weight`,
 * `lm_head.weight` of a tied model and the unused cross-attention bias tables (HF ignores both on
 * load). A `ownEmbeddings` in `config` is ignored (the tensors decide it, see
 * {@link t5FromTensors}).
 *
 * @param config the configuration the tensors must follow
 * @param tensors name → dtype, shape and file
 * @param source the checkpoint (a folder, weights file or shard index), named by the names error
 * @param opts the dtypes accepted, and the configuration's file for the messages
 * @throws CheckpointError naming `source` (its `file`) with the missing and unexpected names, or
 *   the file holding a tensor whose dtype or shape is wrong (its `file`: the shard where the
 *   tensors name one); a wrong shape's message names the `config.json` field that gives the
 *   one dimension that differs (`"d_ff"`, `"num_heads" × "d_kv"`), and its `field` is that field
 *   when one alone decides it (a field of `opts.configSource`, not of the weights `file`); Error
 *   for a size field of `config` that is not a positive integer (the configuration object, not a
 *   file)
 */
export function checkT5Checkpoint(
  config: T5Config,
  tensors: ReadonlyMap<string, CheckpointTensor>,
  source: string,
  opts: CheckT5CheckpointOptions,
): void {
  checkSizes("model/t5.ts", "checkT5Checkpoint", config);
  const { ownEmbeddings: _ignored, ...plain } = config;
  const shapes = t5ParamShapes(plain);
  const optional = ["encoder.embed_tokens.weight", "decoder.embed_tokens.weight"];
  const forConfig = opts.configSource === undefined ? "" : ` for ${opts.configSource}`;
  const unexpected = [...tensors.keys()].filter((name) =>
    !(shapes.has(name) || optional.includes(name) || IGNORED.test(name) ||
      (name === "lm_head.weight" && config.tieWordEmbeddings))
  );
  const missing = [...shapes.keys()].filter((name) => !tensors.has(name));
  if (missing.length > 0 || unexpected.length > 0) {
    const parts = [
      missing.length === 0
        ? "none missing"
        : `${missing.length} missing (${quoteNames(missing, (n) => `"${n}"`)})`,
      unexpected.length === 0
        ? "none unexpected"
        : `${unexpected.length} unexpected (${
          quoteNames(unexpected, (n) => {
            const file = tensors.get(n)!.file;
            return file === undefined || file === source ? `"${n}"` : `"${n}" in ${file}`;
          })
        })`,
    ];
    const layers: string[] = [];
    for (
      const [stack, field, want] of [
        ["encoder", "num_layers", config.numLayers],
        ["decoder", "num_decoder_layers", config.numDecoderLayers],
      ] as const
    ) {
      const got = blocksNamed(tensors.keys(), stack);
      if (got !== want) layers.push(`${got} ${stack} blocks where "${field}" is ${want}`);
    }
    throw new CheckpointError(
      `${source}: the tensor names do not match the T5 configuration${forConfig}: ` +
        parts.join(" and ") +
        (layers.length > 0 ? `; the checkpoint has ${layers.join(", ")}` : ""),
      { file: source },
    );
  }
  const dtypes = opts.dtypes.length === 1
    ? opts.dtypes[0]
    : `${opts.dtypes.slice(0, -1).join(", ")} or ${opts.dtypes[opts.dtypes.length - 1]}`;
  const check = (name: string, shape: readonly number[]) => {
    const t = tensors.get(name);
    if (t === undefined) return;
    const file = t.file ?? source;
    const where = `${file}: tensor "${name}"`;
    if (!opts.dtypes.includes(t.dtype)) {
      throw new CheckpointError(`${where} has dtype ${t.dtype}, expected ${dtypes}`, { file });
    }
    if (t.shape.join(",") !== shape.join(",")) {
      const decides = decidingField(plain, name, t.shape);
      const why = decides === undefined
        ? ""
        : ` (${decides.label} gives dimension ${decides.axis}: ${shape[decides.axis]})`;
      throw new CheckpointError(
        `${where} has shape [${t.shape.join(", ")}], expected [${
          shape.join(", ")
        }]${forConfig}${why}`,
        decides?.field === undefined ? { file } : { file, field: decides.field },
      );
    }
  };
  for (const [name, shape] of shapes) check(name, shape);
  for (const name of optional) check(name, [config.vocabSize, config.dModel]);
}

/**
 * Whether two tensors hold one storage (the same tensor, a clone of it, or a variable made from
 * it): tfjs keys a tensor's data by its `dataId`, which these share. Decided without reading the
 * data, so on every backend (webgpu in Deno cannot read back synchronously).
 */
function sameStorage(a: tf.Tensor, b: tf.Tensor): boolean {
  return a.dataId === b.dataId;
}

/**
 * A model whose variables take the values of named tensors (e.g. a loaded HF checkpoint).
 * Validates the names, shapes and float32 dtype first ({@link checkT5Checkpoint}: one error
 * listing every missing and unexpected name).
 * `encoder.embed_tokens.weight` / `decoder.embed_tokens.weight` become separate variables only
 * when they are not the storage of `shared.weight` (the same tensor, a clone of it or a variable
 * made from it, as {@link t5StateDict} gives): whether they are is decided without reading any
 * values, so this works on every backend. A checkpoint that stores equal copies under the three
 * names (transformers 5 saves them untied) gets one tensor for them from `loadHfFolder`, which
 * compares the bytes as it reads them; a caller building `tensors` itself passes `shared.weight`
 * under the stack's name for a tied table (a distinct tensor of equal values is taken as the
 * stack's own table, trained apart from `shared.weight`). The returned
 * model's config then lists those stacks in `ownEmbeddings`, so that `countT5Params` counts them
 * (`shared.weight` is kept even when both stacks have their own table and the output is untied:
 * it is then unused, see `sharedEmbeddingUnused`). `lm_head.weight` of a tied model and unused
 * cross-attention bias tables are ignored. The input tensors are not
 * disposed; the variables share no storage the caller must keep (disposing them is safe).
 *
 * @param config the configuration the tensors follow
 * @param tensors name → tensor
 * @param source where the tensors came from, for error messages
 * @returns the model, with `ownEmbeddings` in its config when a stack has its own table; its
 *   variables are the caller's to release with {@link disposeT5}
 * @throws CheckpointError naming `source` and the missing and unexpected tensors, or the tensor
 *   that is misshapen or not float32 ({@link checkT5Checkpoint}); Error for a size field of
 *   `config` that is not a positive integer
 */
export function t5FromTensors(
  config: T5Config,
  tensors: Map<string, tf.Tensor>,
  source: string,
): T5Model {
  // The per-stack tables are decided by the tensors, not by a caller's `ownEmbeddings`.
  checkSizes("model/t5.ts", "t5FromTensors", config);
  warnIfStockWasm();
  const { ownEmbeddings: _ignored, ...plain } = config;
  const shapes = t5ParamShapes(plain);
  // Checked before any variable is made: a refused tensor leaves nothing allocated.
  checkT5Checkpoint(config, tensors, source, { dtypes: ["float32"] });
  const shared = tensors.get("shared.weight")!;
  const params = new Map<string, tf.Variable>();
  // A variable made from a tensor shares its storage by reference count: disposing the input
  // afterwards leaves the variable intact.
  const copy = (t: tf.Tensor) => tf.variable(t, true);
  for (const name of shapes.keys()) params.set(name, copy(tensors.get(name)!));
  const own: ("encoder" | "decoder")[] = [];
  for (const stack of ["encoder", "decoder"] as const) {
    const name = `${stack}.embed_tokens.weight`;
    const t = tensors.get(name);
    if (!t) continue;
    if (!sameStorage(t, shared)) {
      params.set(name, copy(t));
      own.push(stack);
    }
  }
  if (own.length === 0 && config.ownEmbeddings === undefined) return { config, params };
  return { config: own.length === 0 ? plain : { ...plain, ownEmbeddings: own }, params };
}

/**
 * The model's tensors under the names a Hugging Face checkpoint uses, for saving: every
 * variable, plus `encoder.embed_tokens.weight` and `decoder.embed_tokens.weight` pointing at
 * `shared.weight` when the model has no distinct per-stack embedding (published checkpoints
 * store the matrix under all three names, and transformers 5 loads an untied model's per-stack
 * embeddings from their own names). The tensors are the live variables: do not dispose them.
 *
 * @param model the model
 * @returns name → tensor, in {@link t5ParamShapes} order followed by the embedding aliases
 */
export function t5StateDict(model: T5Model): Map<string, tf.Tensor> {
  const out = new Map<string, tf.Tensor>(model.params);
  const shared = param(model, "shared.weight");
  for (const stack of ["encoder", "decoder"] as const) {
    const name = `${stack}.embed_tokens.weight`;
    if (!out.has(name)) out.set(name, shared);
  }
  return out;
}

/**
 * Releases every variable of a model.
 *
 * @param model the model; unusable afterwards
 */
export function disposeT5(model: T5Model): void {
  for (const v of model.params.values()) v.dispose();
  model.params.clear();
}

// ---------------------------------------------------------------------------------------------
// Forward

interface Ctx {
  readonly model: T5Model;
  readonly hooks: T5Hooks;
  readonly rate: number;
  readonly seed: number | undefined;
  counter: number;
}

/**
 * Whether {@link forward} and {@link greedyDecode} run each sublayer of a block (self-attention,
 * cross-attention, feed-forward, each with its residual) in its own `tf.tidy`. On by default: the
 * intermediates a sublayer makes and the tape does not save (tfjs keeps its own clones of the
 * tensors a gradient needs, sharing their buffers) are released when the sublayer ends instead of
 * when the whole forward pass returns, which lowers the forward-pass peak; the same ops run in the
 * same order, so results are bit-identical either way. Hook tensors made inside a sublayer are
 * released with it (see {@link T5Hooks}); tensors made before it (the position bias, the masks,
 * the cross-attention keys/values) are not. Switch it off only to compare (tests, memory
 * measurements); it is read at every sublayer.
 */
export const sublayerScopes: { enabled: boolean } = { enabled: true };

/** `fn` in its own `tf.tidy` when {@link sublayerScopes} is on, else in the caller's scope. */
function scoped<R extends tf.TensorContainer>(fn: () => R): R {
  return sublayerScopes.enabled ? tf.tidy(fn) : fn();
}

function param(model: T5Model, name: string): tf.Tensor2D {
  const p = model.params.get(name);
  if (!p) throw new Error(`model/t5.ts: model has no parameter "${name}"`);
  return p as tf.Tensor as tf.Tensor2D;
}

function dropoutOf(ctx: Ctx): { rate: number; seed: number } | undefined {
  if (ctx.rate <= 0) return undefined;
  const seed = ctx.seed === undefined
    ? Math.floor(Math.random() * 2 ** 32)
    : mixSeed(ctx.seed, ctx.counter);
  ctx.counter++;
  return { rate: ctx.rate, seed };
}

function drop<T extends tf.Tensor>(ctx: Ctx, x: T): T {
  const d = dropoutOf(ctx);
  return d ? dropout(x, d.rate, d.seed) : x;
}

/**
 * Encoder and decoder token embeddings as one lookup when both stacks share one table (T5's
 * `shared.weight`): the table's gradient is then one scatter instead of two dense `[vocab, d]`
 * gradients and their sum. Undefined when the stacks have their own tables.
 */
function sharedLookup(
  model: T5Model,
  inputIds: tf.Tensor2D,
  decoderInputIds: tf.Tensor2D,
): { encoder: tf.Tensor3D; decoder: tf.Tensor3D } | undefined {
  const table = embeddingOf(model, "encoder");
  if (table !== embeddingOf(model, "decoder")) return undefined;
  const ne = inputIds.size;
  const ids = tf.concat([tf.reshape(inputIds, [-1]), tf.reshape(decoderInputIds, [-1])]);
  const rows = gatherRows(table, ids) as tf.Tensor2D;
  const d = table.shape[1];
  // One split, not two slices: its gradient is one concat of the two row gradients, where each
  // slice's is a zero-padded copy of the whole [rows, d] and then their sum (same values).
  const [enc, dec] = tf.split(rows, [ne, ids.size - ne], 0) as [tf.Tensor2D, tf.Tensor2D];
  return {
    encoder: tf.reshape(enc, [...inputIds.shape, d]),
    decoder: tf.reshape(dec, [...decoderInputIds.shape, d]),
  };
}

function embeddingOf(model: T5Model, stack: Stack): tf.Tensor2D {
  return (model.params.get(`${stack}.embed_tokens.weight`) as tf.Tensor2D | undefined) ??
    param(model, "shared.weight");
}

function residual(
  ctx: Ctx,
  stack: Stack,
  layer: number,
  sublayer: Sublayer,
  x: tf.Tensor3D,
  y: tf.Tensor3D,
): tf.Tensor3D {
  let h = y;
  if (ctx.hooks.afterSublayer) {
    h = ctx.hooks.afterSublayer(stack, layer, sublayer, y);
    // A smaller result (one row, one position) would broadcast into the residual unnoticed.
    if (h.shape.join() !== y.shape.join()) {
      throw new Error(
        `model/t5.ts: afterSublayer hook (${stack} block ${layer} ${sublayer}) returned ` +
          `[${h.shape}] for an input of shape [${y.shape}]`,
      );
    }
  }
  const d = dropoutOf(ctx);
  return d ? dropoutAdd(x, h, d.rate, d.seed) : tf.add(x, h);
}

/**
 * Checks what a `selfAttentionPrefix` hook returned, right after the call, so that a mistake
 * names the hook, stack and block (model/layers.ts would report it after broadcasting, naming
 * neither, and read any `positionBias` but "relative" as "zero"). The hook's tensors are freed
 * with the sublayer's `tf.tidy` when this throws.
 *
 * @throws Error naming the hook, stack and block, what was returned and what was expected
 */
function checkPrefix(
  pre: AttentionPrefix,
  stack: Stack,
  layer: number,
  batch: number,
  cfg: T5Config,
): void {
  const where = `model/t5.ts: selfAttentionPrefix hook (${stack} block ${layer}) returned`;
  const width = cfg.numHeads * cfg.dKv;
  const expected = `[1 or ${batch} (the batch), l, ${width} (numHeads·dKv = ${cfg.numHeads}·` +
    `${cfg.dKv})]`;
  for (const part of ["key", "value"] as const) {
    const t: unknown = pre[part];
    if (!(t instanceof tf.Tensor)) {
      throw new Error(`${where} ${part} ${String(t)}, not a tensor; expected ${expected}`);
    }
    const [b, , w] = t.shape;
    if (t.rank !== 3 || (b !== 1 && b !== batch) || w !== width) {
      throw new Error(`${where} ${part} of shape [${t.shape}]; expected ${expected}`);
    }
  }
  if (pre.key.shape[1] !== pre.value.shape[1]) {
    throw new Error(
      `${where} key of shape [${pre.key.shape}] and value of shape [${pre.value.shape}]; ` +
        `expected equal lengths l`,
    );
  }
  if (pre.positionBias !== "zero" && pre.positionBias !== "relative") {
    throw new Error(
      `${where} positionBias ${JSON.stringify(pre.positionBias)}; expected "zero" or "relative"`,
    );
  }
}

/**
 * The feed-forward sublayer `prefix` (e.g. `encoder.block.3.layer.1`) of a block, with its
 * residual.
 */
function feedForwardSublayer(
  ctx: Ctx,
  stack: Stack,
  layer: number,
  prefix: string,
  x: tf.Tensor3D,
): tf.Tensor3D {
  const [normed, kept] = normKeep(ctx, `${prefix}.layer_norm.weight`, x);
  const f = feedForward(
    normed,
    ffWeights(ctx.model, `${prefix}.DenseReluDense`),
    dropoutOf(ctx),
  ) as tf.Tensor3D;
  return residual(ctx, stack, layer, "feed_forward", kept, f);
}

/** Keys and values of one attention layer `[batch, length, heads·dKv]`. */
type KV = {
  k: tf.Tensor3D;
  v: tf.Tensor3D;
};

function projectKV(ctx: Ctx, prefix: string, x: tf.Tensor3D): KV {
  return {
    k: linear(x, param(ctx.model, `${prefix}.k.weight`)) as tf.Tensor3D,
    v: linear(x, param(ctx.model, `${prefix}.v.weight`)) as tf.Tensor3D,
  };
}

/**
 * Self-attention of one block. `queryStart` is the position of the first query; `past` holds
 * keys/values of earlier positions (incremental decoding). Returns the sublayer output and the
 * full keys/values (past + new, without any prefix).
 */
function selfAttention(
  ctx: Ctx,
  stack: Stack,
  layer: number,
  x: tf.Tensor3D,
  bias: tf.Tensor4D,
  mask: tf.Tensor4D,
  queryStart: number,
  past: KV | undefined,
): { y: tf.Tensor3D; kv: KV } {
  const cfg = ctx.model.config;
  const prefix = `${stack}.block.${layer}.layer.0.SelfAttention`;
  const q = linear(x, param(ctx.model, `${prefix}.q.weight`)) as tf.Tensor3D;
  let kv = projectKV(ctx, prefix, x);
  if (past) kv = { k: tf.concat([past.k, kv.k], 1), v: tf.concat([past.v, kv.v], 1) };
  const pre = ctx.hooks.selfAttentionPrefix?.(stack, layer, x.shape[0]);
  if (pre !== undefined) checkPrefix(pre, stack, layer, x.shape[0], cfg);
  let prefixBias: tf.Tensor | undefined;
  if (pre && pre.positionBias === "relative") {
    const l = pre.key.shape[1];
    prefixBias = positionBias(
      param(ctx.model, `${stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight`),
      queryStart,
      x.shape[1],
      -l,
      l,
      stack === "encoder",
      cfg.relativeAttentionMaxDistance,
    );
  }
  const res = attention(q, kv.k, kv.v, cfg.numHeads, {
    bias,
    mask,
    prefix: pre,
    prefixBias,
    dropout: dropoutOf(ctx),
  });
  ctx.hooks.onAttention?.(stack, layer, "self_attention", res.probs, res.prefixLength);
  const y = linear(res.out, param(ctx.model, `${prefix}.o.weight`)) as tf.Tensor3D;
  return { y, kv };
}

function crossAttention(
  ctx: Ctx,
  layer: number,
  x: tf.Tensor3D,
  kv: KV,
  mask: tf.Tensor4D,
): tf.Tensor3D {
  const cfg = ctx.model.config;
  const prefix = `decoder.block.${layer}.layer.1.EncDecAttention`;
  const q = linear(x, param(ctx.model, `${prefix}.q.weight`)) as tf.Tensor3D;
  const res = attention(q, kv.k, kv.v, cfg.numHeads, { mask, dropout: dropoutOf(ctx) });
  ctx.hooks.onAttention?.("decoder", layer, "cross_attention", res.probs, 0);
  return linear(res.out, param(ctx.model, `${prefix}.o.weight`)) as tf.Tensor3D;
}

function ffWeights(model: T5Model, prefix: string): FeedForwardWeights {
  if (model.config.feedForwardProj === "gated-gelu") {
    return {
      wi0: param(model, `${prefix}.wi_0.weight`),
      wi1: param(model, `${prefix}.wi_1.weight`),
      wo: param(model, `${prefix}.wo.weight`),
    };
  }
  return {
    wi: param(model, `${prefix}.wi.weight`),
    wo: param(model, `${prefix}.wo.weight`),
  };
}

function norm(ctx: Ctx, name: string, x: tf.Tensor3D): tf.Tensor3D {
  return rmsNorm(
    x,
    param(ctx.model, name) as tf.Tensor as tf.Tensor1D,
    ctx.model.config.layerNormEpsilon,
  ) as tf.Tensor3D;
}

/**
 * The layer norm `name` of `x` and `x` itself, for a pre-norm residual block that adds the second
 * (`model/fused.ts` rmsNormKeep: x's gradient then comes out of one kernel).
 */
function normKeep(ctx: Ctx, name: string, x: tf.Tensor3D): [tf.Tensor3D, tf.Tensor3D] {
  return rmsNormKeep(
    x,
    param(ctx.model, name) as tf.Tensor as tf.Tensor1D,
    ctx.model.config.layerNormEpsilon,
  ) as [tf.Tensor3D, tf.Tensor3D];
}

interface Encoded {
  hidden: tf.Tensor3D;
  mask: tf.Tensor2D;
}

function runEncoder(
  ctx: Ctx,
  inputIds: tf.Tensor2D,
  attentionMask: tf.Tensor2D,
  embedded?: tf.Tensor3D,
): Encoded {
  const cfg = ctx.model.config;
  let x = embedded ?? gatherRows(embeddingOf(ctx.model, "encoder"), inputIds) as tf.Tensor3D;
  let mask = attentionMask;
  if (ctx.hooks.encoderInput) {
    const [b, , d] = x.shape;
    const r = ctx.hooks.encoderInput(x, mask);
    x = r.embeds;
    mask = r.mask;
    if (
      x.rank !== 3 || x.shape[0] !== b || x.shape[2] !== d || mask.rank !== 2 ||
      mask.shape[0] !== x.shape[0] || mask.shape[1] !== x.shape[1]
    ) {
      throw new Error(
        `model/t5.ts: encoderInput hook returned embeds [${x.shape}] with mask [${mask.shape}]; ` +
          `expected [${b}, length, ${d}] and [${b}, length]`,
      );
    }
  }
  x = drop(ctx, x);
  const len = x.shape[1];
  const bias = positionBias(
    param(ctx.model, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"),
    0,
    len,
    0,
    len,
    true,
    cfg.relativeAttentionMaxDistance,
  );
  const pad = paddingMask(mask);
  for (let i = 0; i < cfg.numLayers; i++) {
    const b = `encoder.block.${i}`;
    const input = x;
    x = scoped(() => {
      const [normed, kept] = normKeep(ctx, `${b}.layer.0.layer_norm.weight`, input);
      const { y } = selfAttention(ctx, "encoder", i, normed, bias, pad, 0, undefined);
      return residual(ctx, "encoder", i, "self_attention", kept, y);
    });
    const attended = x;
    x = scoped(() => feedForwardSublayer(ctx, "encoder", i, `${b}.layer.1`, attended));
  }
  const hidden = drop(ctx, norm(ctx, "encoder.final_layer_norm.weight", x));
  return { hidden, mask };
}

function crossKVs(ctx: Ctx, enc: Encoded): KV[] {
  const out: KV[] = [];
  for (let i = 0; i < ctx.model.config.numDecoderLayers; i++) {
    out.push(projectKV(ctx, `decoder.block.${i}.layer.1.EncDecAttention`, enc.hidden));
  }
  return out;
}

/**
 * Decoder over `ids` whose first position is `queryStart`, with optional cached self-attention
 * keys/values of the earlier positions. Returns logits and, with `keepKVs`, the full
 * self-attention keys/values (else none).
 */
function runDecoder(
  ctx: Ctx,
  ids: tf.Tensor2D,
  queryStart: number,
  past: KV[] | undefined,
  cross: KV[],
  encMask: tf.Tensor2D,
  keepKVs: boolean,
  embedded?: tf.Tensor3D,
): { logits: tf.Tensor3D; kvs: KV[] } {
  const cfg = ctx.model.config;
  let x = drop(
    ctx,
    embedded ?? gatherRows(embeddingOf(ctx.model, "decoder"), ids) as tf.Tensor3D,
  );
  const lq = ids.shape[1];
  const lk = queryStart + lq;
  const bias = positionBias(
    param(ctx.model, "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"),
    queryStart,
    lq,
    0,
    lk,
    false,
    cfg.relativeAttentionMaxDistance,
  );
  const causal = causalMask(queryStart, lq, lk);
  const crossMask = paddingMask(encMask);
  const kvs: KV[] = [];
  for (let i = 0; i < cfg.numDecoderLayers; i++) {
    const b = `decoder.block.${i}`;
    const input = x;
    const self = scoped(() => {
      const [normed, kept] = normKeep(ctx, `${b}.layer.0.layer_norm.weight`, input);
      const { y, kv } = selfAttention(
        ctx,
        "decoder",
        i,
        normed,
        bias,
        causal,
        queryStart,
        past?.[i],
      );
      const out = residual(ctx, "decoder", i, "self_attention", kept, y);
      // The keys/values leave the sublayer only for a cache (else they would outlive it).
      return keepKVs ? { x: out, k: kv.k, v: kv.v } : { x: out };
    });
    if (self.k && self.v) kvs.push({ k: self.k, v: self.v });
    const attended = self.x;
    x = scoped(() => {
      const [normedX, keptX] = normKeep(ctx, `${b}.layer.1.layer_norm.weight`, attended);
      const c = crossAttention(ctx, i, normedX, cross[i]!, crossMask);
      return residual(ctx, "decoder", i, "cross_attention", keptX, c);
    });
    const crossed = x;
    x = scoped(() => feedForwardSublayer(ctx, "decoder", i, `${b}.layer.2`, crossed));
  }
  let h: tf.Tensor3D = drop(ctx, norm(ctx, "decoder.final_layer_norm.weight", x));
  if (cfg.scaleDecoderOutputs) h = tf.mul(h, cfg.dModel ** -0.5);
  const out = cfg.tieWordEmbeddings
    ? param(ctx.model, "shared.weight")
    : param(ctx.model, "lm_head.weight");
  return { logits: linear(h, out as tf.Tensor2D) as tf.Tensor3D, kvs };
}

/**
 * Checks one batch field: rank 2 `[batch, length]`, the dtype, and at least one row and one
 * position (an empty batch or sequence has nothing to attend to: wasm fails on it with "divide by
 * zero", cpu returns empty or made-up results).
 */
function checkIds(fn: string, t: tf.Tensor, field: string, dtype: tf.DataType): void {
  if (t.rank !== 2) {
    throw new Error(`model/t5.ts ${fn}: ${field} must be rank 2 [batch, length], got [${t.shape}]`);
  }
  if (t.dtype !== dtype) {
    throw new Error(`model/t5.ts ${fn}: ${field} must be ${dtype}, got ${t.dtype}`);
  }
  if (t.shape[0] === 0 || t.shape[1] === 0) {
    throw new Error(
      `model/t5.ts ${fn}: ${field} [${t.shape}] is empty (need at least one row and one position)`,
    );
  }
}

/** Checks that `attentionMask` has the shape of `inputIds` (a smaller one would broadcast). */
function checkMask(fn: string, inputIds: tf.Tensor2D, attentionMask: tf.Tensor2D): void {
  if (attentionMask.shape.join() !== inputIds.shape.join()) {
    throw new Error(
      `model/t5.ts ${fn}: attentionMask [${attentionMask.shape}] != inputIds [${inputIds.shape}]`,
    );
  }
}

/**
 * Checks that every id is a row of the embedding table, `[0, vocabSize)`: out of range, the
 * gather fails on cpu and wasm with a message that names no argument, and on other backends
 * silently reads zeros or another row. With `ignored` (labels' -100), that id passes too.
 */
function checkVocab(
  fn: string,
  field: string,
  ids: ArrayLike<number>,
  t: tf.Tensor,
  v: number,
  ignored?: number,
) {
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    if (id !== ignored && (id < 0 || id >= v)) {
      const w = t.shape[1]!;
      throw new Error(
        `model/t5.ts ${fn}: ${field}[${Math.floor(i / w)}][${i % w}] is ${id}, ` +
          (ignored === undefined
            ? `outside the vocabulary [0, ${v})`
            : `neither ${ignored} (ignored) nor in the vocabulary [0, ${v})`),
      );
    }
  }
}

/** Backends whose tensors are host memory: reading ids there is synchronous and cheap. */
const HOST_BACKENDS: readonly string[] = ["cpu", "wasm"];

/**
 * Checks a batch's token ids against the vocabulary where that costs no device round trip: on
 * the cpu and wasm backends the ids are host memory (`dataSync` is a view on cpu, a copy of the
 * ids out of the wasm heap on wasm; with the scan, about 1.4 µs per 16×66 + 16×24 batch on cpu).
 * On webgpu they would have to be read back from the GPU, stalling every training step, so they
 * are not checked there: an id outside `[0, vocabSize)` reads a zero row of the embedding table
 * (tfjs's gather on webgpu returns 0 out of range), and training goes on on it.
 */
function checkBatchVocab(model: T5Model, batch: Seq2SeqBatch): void {
  if (!HOST_BACKENDS.includes(tf.getBackend())) return;
  const v = model.config.vocabSize;
  for (const field of ["inputIds", "decoderInputIds"] as const) {
    checkVocab("forward", field, batch[field].dataSync(), batch[field], v);
  }
}

function makeCtx(model: T5Model, opts: ForwardOptions): Ctx {
  return {
    model,
    hooks: opts.hooks ?? {},
    rate: opts.training ? model.config.dropoutRate : 0,
    seed: opts.dropoutSeed,
    counter: 0,
  };
}

/**
 * Teacher-forced forward pass. Runs inside its own `tf.tidy` (hooks too), so only the two
 * returned tensors stay allocated; differentiable with `tf.variableGrads`. Each sublayer runs in a
 * nested `tf.tidy` ({@link sublayerScopes}): what it made and the tape did not save is released
 * when it ends, so under a gradient tape the pass holds the saved tensors plus one sublayer's.
 *
 * @param model the model
 * @param batch encoder ids and mask, decoder input ids
 * @param opts hooks, training (dropout) and the dropout seed
 * @returns logits and the encoder output
 * @throws Error naming the batch field with a wrong rank, dtype or batch size, or an empty one;
 *   on the cpu and wasm backends, also a token id outside `[0, vocabSize)` (its field, row,
 *   position and the vocabulary size). On webgpu the ids stay on the device unchecked (a read
 *   would stall every step): such an id embeds as a row of zeros.
 */
export function forward(
  model: T5Model,
  batch: Seq2SeqBatch,
  opts: ForwardOptions = {},
): ForwardResult {
  checkIds("forward", batch.inputIds, "inputIds", "int32");
  checkIds("forward", batch.attentionMask, "attentionMask", "float32");
  checkIds("forward", batch.decoderInputIds, "decoderInputIds", "int32");
  checkMask("forward", batch.inputIds, batch.attentionMask);
  if (batch.decoderInputIds.shape[0] !== batch.inputIds.shape[0]) {
    throw new Error(
      `model/t5.ts forward: decoderInputIds batch ${
        batch.decoderInputIds.shape[0]
      } != inputIds batch ${batch.inputIds.shape[0]}`,
    );
  }
  checkBatchVocab(model, batch);
  return tf.tidy(() => {
    const ctx = makeCtx(model, opts);
    const embedded = sharedLookup(model, batch.inputIds, batch.decoderInputIds);
    const enc = runEncoder(ctx, batch.inputIds, batch.attentionMask, embedded?.encoder);
    const { logits } = runDecoder(
      ctx,
      batch.decoderInputIds,
      0,
      undefined,
      crossKVs(ctx, enc),
      enc.mask,
      false,
      embedded?.decoder,
    );
    return { logits, encoderOutput: enc.hidden };
  });
}

/**
 * Mean token cross-entropy of `logits` against `labels`, ignoring positions labelled -100 (the
 * mean is over counted tokens, as PyTorch's `CrossEntropyLoss(ignore_index=-100)`). With label
 * smoothing ε the per-token loss is `(1−ε)·nll + ε·mean_v(−log p_v)` (PyTorch's definition).
 * If every label is ignored the loss is 0 (PyTorch gives NaN).
 *
 * With `zLoss` z > 0, T5X's z-loss (`cross_entropy_with_logits`) is added to each counted
 * token's loss: `z · log_z²` with `log_z` the logsumexp of the token's logits, so it is averaged
 * over the same tokens with the same denominator, and its gradient, `2z·log_z·softmax`, flows
 * through `log_z`. z = 0 (the default) runs exactly the code without it.
 *
 * @param logits `[batch, length, vocab]`
 * @param labels int32 `[batch, length]`
 * @param opts.labelSmoothing ε in [0, 1) (default 0)
 * @param opts.zLoss z ≥ 0 (default 0)
 * @returns the mean loss over counted tokens, a float32 scalar (0 when every label is -100)
 * @throws Error naming a label that is neither -100 nor in `[0, vocab)` (cpu and wasm; on webgpu
 *   and tfjs-node, whose labels would have to be read back from the device, that token's loss,
 *   and so the mean, is NaN instead)
 */
export function crossEntropyLoss(
  logits: tf.Tensor3D,
  labels: tf.Tensor2D,
  opts: { labelSmoothing?: number; zLoss?: number } = {},
): tf.Scalar {
  const eps = opts.labelSmoothing ?? 0;
  if (!(eps >= 0 && eps < 1)) {
    throw new Error(`model/t5.ts crossEntropyLoss: labelSmoothing must be in [0, 1), got ${eps}`);
  }
  const z = opts.zLoss ?? 0;
  if (!(z >= 0 && Number.isFinite(z))) {
    throw new Error(`model/t5.ts crossEntropyLoss: zLoss must be a finite number >= 0, got ${z}`);
  }
  if (logits.rank !== 3) {
    throw new Error(
      `model/t5.ts crossEntropyLoss: logits must be rank 3 [batch, length, vocab], got [${logits.shape}]`,
    );
  }
  const [b, l, v] = logits.shape;
  if (
    labels.rank !== 2 || labels.shape[0] !== b || labels.shape[1] !== l ||
    labels.dtype !== "int32"
  ) {
    throw new Error(
      `model/t5.ts crossEntropyLoss: labels must be int32 [${b}, ${l}], got ${labels.dtype} [${labels.shape}]`,
    );
  }
  // On cpu and wasm the labels are host memory (`dataSync` is a view on cpu, a copy out of the
  // wasm heap on wasm): a label outside the vocabulary is named by its position before any
  // kernel runs, whichever path computes the loss (the wasm kernel's own check names only a
  // flattened row). Elsewhere (webgpu, tfjs-node) reading them back would stall every step: see
  // the composite below.
  const onHost = HOST_BACKENDS.includes(tf.getBackend());
  if (onHost) checkVocab("crossEntropyLoss", "labels", labels.dataSync(), labels, v, -100);
  return tf.tidy(() => {
    const n = b * l;
    const flat = logits.reshape([n, v]);
    const valid = tf.notEqual(labels.reshape([n]), -100);
    const safe = tf.where(valid, labels.reshape([n]), tf.zerosLike(labels.reshape([n])));
    // One fused kernel where the backend has it (wasm, webgpu), else the composite below. With
    // a z-loss the kernel's log-sum-exp column is used too (its gradient then includes it).
    let perToken: tf.Tensor | undefined;
    if (z > 0) {
      const fused = softmaxCrossEntropyWithLse(flat as tf.Tensor2D, safe as tf.Tensor1D, eps);
      if (fused !== undefined) perToken = tf.add(fused.loss, tf.mul(tf.square(fused.lse), z));
    } else {
      perToken = softmaxCrossEntropy(flat as tf.Tensor2D, safe as tf.Tensor1D, eps);
    }
    if (perToken === undefined) {
      // The composite reads label j of row r at flat index r·v + j: a label outside [0, v) would
      // silently score a logit of a neighbouring row. On cpu and wasm such a label was refused
      // above. Elsewhere (stock webgpu, tfjs-node) that token's loss is NaN instead, as the
      // webgpu kernel makes it, and training stops on the non-finite loss.
      const lse = tf.logSumExp(flat, -1); // [n]
      const rows = tf.range(0, n, 1, "int32");
      const picked = gatherRows(
        flat.reshape([n * v]),
        tf.add(tf.mul(rows, tf.scalar(v, "int32")), safe),
      );
      perToken = tf.sub(lse, picked);
      if (eps > 0) {
        const smooth = tf.sub(lse, tf.mean(flat, -1));
        perToken = tf.add(tf.mul(perToken, 1 - eps), tf.mul(smooth, eps));
      }
      if (z > 0) perToken = tf.add(perToken, tf.mul(tf.square(lse), z));
      if (!onHost) {
        const ids = labels.reshape([n]);
        const outside = tf.logicalAnd(
          valid,
          tf.logicalOr(tf.less(ids, 0), tf.greaterEqual(ids, v)),
        );
        perToken = tf.where(outside, tf.fill([n], NaN), perToken);
      }
    }
    const w = tf.cast(valid, "float32");
    const count = tf.maximum(tf.sum(w), 1);
    return tf.div(tf.sum(tf.mul(perToken, w)), count) as tf.Scalar;
  });
}

/**
 * Decoder inputs from labels as HF `_shift_right`: prepend `decoderStartTokenId`, drop the last
 * label, and replace -100 by `padTokenId`.
 *
 * @param labels int32 `[batch, length]`
 * @param config supplies the start and pad ids
 * @returns the decoder input ids, int32 `[batch, length]`
 * @throws Error when `labels` is not int32 of rank 2
 */
export function shiftRight(labels: tf.Tensor2D, config: T5Config): tf.Tensor2D {
  if (labels.rank !== 2 || labels.dtype !== "int32") {
    throw new Error(
      `model/t5.ts shiftRight: labels must be int32 rank 2, got ${labels.dtype} [${labels.shape}]`,
    );
  }
  return tf.tidy(() => {
    const [b, l] = labels.shape;
    const start = tf.fill([b, 1], config.decoderStartTokenId, "int32");
    const shifted = tf.concat([start, labels.slice([0, 0], [b, l - 1])], 1);
    return tf.where(
      tf.equal(shifted, -100),
      tf.fill([b, l], config.padTokenId, "int32"),
      shifted,
    ) as tf.Tensor2D;
  });
}

/** Options of {@link greedyDecode}. */
export interface GreedyOptions {
  /** Tokens to generate at most (after the decoder start token), at least 1. */
  maxNewTokens: number;
  /** Method hooks (called for the encoder once and for the decoder at every step). */
  hooks?: T5Hooks;
  /**
   * Reuse decoder self-attention keys/values between steps (default true). On `cpu` the logits
   * are the full pass's bit for bit; on wasm and WebGPU a row's matmul sums in another order
   * alone than in a batch, so they agree to float rounding (about 1e-6 of the largest logit),
   * and a near-tie could take another token.
   */
  useCache?: boolean;
  /** Stop a row at its first EOS and the batch when all rows stopped (default true). */
  stopAtEos?: boolean;
}

/**
 * Greedy (argmax) decoding from `decoderStartTokenId`. The encoder and the cross-attention
 * keys/values run once; with `useCache` each step feeds only the newest token and appends its
 * self-attention keys/values to a cache. Leaves no tensors behind.
 *
 * @param model the model
 * @param input encoder token ids, int32 `[batch, inputLength]`, and their mask, float32
 *   `[batch, inputLength]` (1 = token, 0 = padding); neither is disposed
 * @param opts the number of tokens to generate, hooks, cache and EOS handling
 * @returns per row the generated tokens without the start token; with `stopAtEos` a row ends
 *   with its first EOS (kept), otherwise every row has `maxNewTokens` tokens
 * @throws Error naming the input with a wrong rank, dtype or shape, an empty batch, an id outside
 *   the vocabulary, or a `maxNewTokens` that is not a positive integer
 */
export async function greedyDecode(
  model: T5Model,
  input: { inputIds: tf.Tensor2D; attentionMask: tf.Tensor2D },
  opts: GreedyOptions,
): Promise<number[][]> {
  checkIds("greedyDecode", input.inputIds, "inputIds", "int32");
  checkIds("greedyDecode", input.attentionMask, "attentionMask", "float32");
  checkMask("greedyDecode", input.inputIds, input.attentionMask);
  if (!Number.isInteger(opts.maxNewTokens) || opts.maxNewTokens < 1) {
    throw new Error(
      `model/t5.ts greedyDecode: maxNewTokens must be a positive integer, got ${opts.maxNewTokens}`,
    );
  }
  const cfg = model.config;
  // Decoding reads every step's tokens back anyway; one more read checks the ids.
  checkVocab(
    "greedyDecode",
    "inputIds",
    await input.inputIds.data(),
    input.inputIds,
    cfg.vocabSize,
  );
  const useCache = opts.useCache ?? true;
  const stopAtEos = opts.stopAtEos ?? true;
  const ctx = makeCtx(model, { hooks: opts.hooks });
  const batch = input.inputIds.shape[0];
  const enc = tf.tidy(() => {
    const e = runEncoder(ctx, input.inputIds, input.attentionMask);
    // clone: the mask may be the caller's tensor, which must survive the final dispose
    return { hidden: e.hidden, mask: e.mask.clone(), cross: crossKVs(ctx, e) };
  });
  const rows: number[][] = Array.from({ length: batch }, () => [cfg.decoderStartTokenId]);
  const done: boolean[] = new Array(batch).fill(false);
  let cache: KV[] | undefined;
  try {
    for (let step = 0; step < opts.maxNewTokens; step++) {
      const out = tf.tidy(() => {
        const ids = useCache
          ? tf.tensor2d(rows.map((r) => [r[r.length - 1]!]), [batch, 1], "int32")
          : tf.tensor2d(rows, [batch, step + 1], "int32");
        const r = runDecoder(ctx, ids, useCache ? step : 0, cache, enc.cross, enc.mask, useCache);
        const last = r.logits.slice([0, r.logits.shape[1] - 1, 0], [batch, 1, cfg.vocabSize]);
        return {
          next: tf.argMax(last.reshape([batch, cfg.vocabSize]), -1),
          kvs: useCache ? r.kvs : [],
        };
      });
      if (cache) { for (const kv of cache) tf.dispose([kv.k, kv.v]); }
      cache = useCache ? out.kvs : undefined;
      let next: tf.TypedArray;
      try {
        next = (await out.next.data()) as tf.TypedArray;
      } finally {
        out.next.dispose(); // also when the read fails (a lost device)
      }
      for (let i = 0; i < batch; i++) {
        const tok = stopAtEos && done[i] ? cfg.padTokenId : next[i]!;
        rows[i]!.push(tok);
        if (tok === cfg.eosTokenId && !done[i]) done[i] = true;
      }
      if (stopAtEos && done.every((d) => d)) break;
    }
  } finally {
    if (cache) { for (const kv of cache) tf.dispose([kv.k, kv.v]); }
    tf.dispose([enc.hidden, enc.mask, ...enc.cross.flatMap((kv) => [kv.k, kv.v])]);
  }
  return rows.map((r) => {
    const gen = r.slice(1);
    if (!stopAtEos) return gen;
    const e = gen.indexOf(cfg.eosTokenId);
    return e < 0 ? gen : gen.slice(0, e + 1);
  });
}
