/**
 * T5 tokenizer: a Hugging Face `tokenizer.json` (SentencePiece Unigram with the NFKC normalizer,
 * Metaspace pre-tokenizer and a TemplateProcessing post-processor that appends `</s>`) run by
 * the pure-JS `@huggingface/tokenizers`, which reproduces the Rust `tokenizers` library's ids,
 * tokens and decoded text (checked against its output in `tokenizer_test.ts`). That library's
 * Unigram model ignores `byte_fallback`; {@link T5Tokenizer} applies it as the Rust library
 * does (a piece the vocabulary lacks becomes its UTF-8 bytes `<0xNN>`, or `<unk>` when one of
 * those byte pieces is missing). Its `Precompiled` normalizer ignores the charsmap; here it
 * applies it as the Rust library does (`precompiled.ts`).
 *
 * @module
 */
import { PrecompiledNormalizer, Tokenizer } from "@huggingface/tokenizers";
import { CheckpointError } from "./checkpoint_error.ts";
import { briefJson, parseJsonFile } from "./json.ts";
import { PrecompiledCharsmap } from "./precompiled.ts";

/**
 * Parsed charsmaps of the `Precompiled` normalizer configs that {@link T5Tokenizer.fromJson}
 * validated, keyed by the config object the library keeps as the normalizer's `config`.
 */
const charsmaps = new WeakMap<object, PrecompiledCharsmap>();

// The library's Precompiled normalizer ignores the charsmap and approximates it with NFKC and a
// fixed list of characters mapped to a space (U+200D ZERO WIDTH JOINER among them, which the
// charsmap keeps). Every Precompiled normalizer it builds applies the charsmap instead, as the
// Rust library does (see precompiled.ts); added tokens it normalizes while building go through
// this too.
PrecompiledNormalizer.prototype.normalize = function (this: PrecompiledNormalizer, text: string) {
  const config = this.config as { precompiled_charsmap?: unknown };
  let map = charsmaps.get(config);
  if (map === undefined) {
    map = PrecompiledCharsmap.fromBase64(
      String(config.precompiled_charsmap ?? ""),
      "Precompiled normalizer",
    );
    charsmaps.set(config, map);
  }
  return map.normalize(text);
};

/** Options of {@link T5Tokenizer.decode}. */
export interface DecodeOptions {
  /** Drop special tokens (`<pad>`, `</s>`, `<unk>`, ids outside the vocabulary). Default true. */
  skipSpecialTokens?: boolean;
  /**
   * Write this text for `<unk>`, each sentinel (`<extra_id_N>`) and each id outside the
   * vocabulary instead of dropping them (with `skipSpecialTokens`), as T5 decodes a generation:
   * seqio's `SentencePieceVocabulary` maps the ids past the base vocabulary (the sentinels) to
   * `<unk>`, which SentencePiece writes as {@link T5_UNK_SURFACE}. So a generation such as
   * `<extra_id_0> entailment` is not the label word. Default: dropped.
   */
  unknownAs?: string;
  /**
   * Apply transformers' `clean_up_tokenization_spaces` (" ," → ","). Default false, as the
   * `tokenizers` library decodes and as T5's own checkpoints are configured.
   */
  cleanUpTokenizationSpaces?: boolean;
}

/** How SentencePiece writes `<unk>` when it decodes (its `unk_surface`, " \u2047 "). */
export const T5_UNK_SURFACE = " \u2047 ";

/** Throws the {@link CheckpointError} of an invalid tokenizer `source`, naming `field` if any. */
function fail(source: string, message: string, field?: string): never {
  throw new CheckpointError(`${source}: invalid tokenizer: ${message}`, { file: source, field });
}

/** Parse every `Precompiled` charsmap of a normalizer config (nested in `Sequence`s). */
function validateNormalizer(n: unknown, field: string, source: string): void {
  if (typeof n !== "object" || n === null) return;
  const o = n as Record<string, unknown>;
  if (o.type === "Sequence" && Array.isArray(o.normalizers)) {
    o.normalizers.forEach((c, i) => validateNormalizer(c, `${field}.normalizers[${i}]`, source));
  } else if (o.type === "Precompiled") {
    const name = `${field}.precompiled_charsmap`;
    const f = `field "${name}"`;
    if (typeof o.precompiled_charsmap !== "string") {
      fail(source, `${f} must be a base64 string`, name);
    }
    let map: PrecompiledCharsmap;
    try {
      map = PrecompiledCharsmap.fromBase64(
        o.precompiled_charsmap,
        `${source}: invalid tokenizer: ${f}`,
      );
    } catch (e) {
      // Its message already names the source and the field.
      throw CheckpointError.from(e, source, name);
    }
    charsmaps.set(o, map);
  }
}

/**
 * The largest tokenizer file read (tokenizer.json, spiece.model): far above any T5's (T5's
 * tokenizer.json is 2.4 MB, mT5's 16 MB); a 41 MB one of 2M pieces took 1.3 GiB to load, so a
 * damaged or hostile file of hundreds of MB would take the machine's memory (h382).
 */
export const MAX_TOKENIZER_BYTES = 256 * 2 ** 20;

/**
 * Refuses a tokenizer file over {@link MAX_TOKENIZER_BYTES}, naming it (a missing one is left to
 * the read, which names it).
 *
 * @param file the file
 * @throws CheckpointError when it is larger
 */
export function checkTokenizerSize(file: string): void {
  let size: number;
  try {
    size = Deno.statSync(file).size;
  } catch {
    return;
  }
  if (size > MAX_TOKENIZER_BYTES) {
    throw new CheckpointError(
      `${file}: ${size} bytes, more than ${MAX_TOKENIZER_BYTES} (256 MiB): no T5 tokenizer comes ` +
        "near it (a damaged or hostile file)",
      { file },
    );
  }
}

/** The `model.type`s `@huggingface/tokenizers` implements (Rust's WordLevel it does not). */
const MODEL_TYPES: readonly string[] = ["Unigram", "BPE", "WordPiece"];

function validate(json: unknown, source: string): Record<string, unknown> {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    fail(source, "tokenizer.json must be a JSON object");
  }
  const j = json as Record<string, unknown>;
  const model = j.model;
  if (typeof model !== "object" || model === null || Array.isArray(model)) {
    fail(source, `missing or invalid field "model" (expected an object)`, "model");
  }
  const m = model as Record<string, unknown>;
  if (typeof m.type !== "string") fail(source, `missing field "model.type"`, "model.type");
  // The library builds any other type that has an array "vocab" as a Unigram model (and others as
  // a legacy word model), so a misspelled "Unigramm" or an unsupported "WordLevel" loaded
  // silently, without the Unigram checks below.
  if (!MODEL_TYPES.includes(m.type)) {
    fail(
      source,
      `field "model.type" must be one of ${MODEL_TYPES.join(", ")} (T5's is Unigram), got ${
        JSON.stringify(m.type)
      }`,
      "model.type",
    );
  }
  if (m.type === "Unigram") {
    if (!Array.isArray(m.vocab) || m.vocab.length === 0) {
      fail(
        source,
        `field "model.vocab" must be a non-empty array of [piece, score] pairs`,
        "model.vocab",
      );
    }
    m.vocab.forEach((e: unknown, i: number) => {
      if (!Array.isArray(e) || typeof e[0] !== "string" || typeof e[1] !== "number") {
        fail(
          source,
          `field "model.vocab[${i}]" must be a [piece, score] pair`,
          `model.vocab[${i}]`,
        );
      }
    });
    // Rust's Unigram reads it as an optional usize: a negative, fractional or string id (which
    // the JS library would hand out as a token id) is refused there too.
    const unk = m.unk_id;
    if (
      unk !== undefined && unk !== null &&
      !(typeof unk === "number" && Number.isInteger(unk) && unk >= 0 && unk < m.vocab.length)
    ) {
      fail(
        source,
        `field "model.unk_id" must be an index into "model.vocab" (an integer in 0..${
          m.vocab.length - 1
        }) or null, got ${JSON.stringify(unk)}`,
        "model.unk_id",
      );
    }
  }
  if (j.added_tokens !== undefined && !Array.isArray(j.added_tokens)) {
    fail(source, `field "added_tokens" must be an array`, "added_tokens");
  }
  // Each added token is written at its id: a fractional or string id became another piece's
  // (the same embedding row, silently), a negative or huge one failed only at the first batch
  // without naming this file, and one far past the vocabulary sized a random init's embedding by
  // it (h382). Ids run past the model's own vocabulary by at most one per added token.
  const added = (j.added_tokens ?? []) as unknown[];
  const modelVocab = Array.isArray(m.vocab)
    ? m.vocab.length
    : typeof m.vocab === "object" && m.vocab !== null
    ? Object.keys(m.vocab).length
    : 0;
  const idLimit = modelVocab + added.length;
  added.forEach((t, i) => {
    const at = `added_tokens[${i}]`;
    if (typeof t !== "object" || t === null || Array.isArray(t)) {
      fail(source, `field "${at}" must be an object with "id" and "content"`, at);
    }
    const { id, content } = t as Record<string, unknown>;
    if (typeof content !== "string" || content === "") {
      fail(
        source,
        `field "${at}.content" must be a non-empty string, got ${briefJson(content)}`,
        `${at}.content`,
      );
    }
    if (!(typeof id === "number" && Number.isInteger(id) && id >= 0 && id < idLimit)) {
      fail(
        source,
        `field "${at}.id" must be an integer in 0..${idLimit - 1} (the model's ${modelVocab} ` +
          `pieces and ${added.length} added tokens), got ${briefJson(id)}`,
        `${at}.id`,
      );
    }
  });
  validateNormalizer(j.normalizer, "normalizer", source);
  return j;
}

/** The piece of a byte in a byte-fallback vocabulary: `<0x0A>`, `<0xE6>`. */
function byteToken(b: number): string {
  return `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`;
}

/**
 * Truncate ids to `maxLength - 1`, then append EOS (T5's `append_eos_after_trim`). A trailing
 * EOS already present in `ids` (tokenizers append one) is removed first. Training
 * (`benchmarks/batching.ts`) and `loadT5`'s `teacherForced` / `generate` cut texts with it.
 *
 * @param ids token ids
 * @param maxLength the maximum length including EOS (>= 1)
 * @param eosId the EOS id
 * @returns a new array ending with `eosId`
 * @throws Error if maxLength < 1
 */
export function truncateWithEos(
  ids: readonly number[],
  maxLength: number,
  eosId: number,
): number[] {
  if (!Number.isInteger(maxLength) || maxLength < 1) {
    throw new Error(
      `model/tokenizer.ts truncateWithEos: maxLength must be a positive integer, got ${maxLength}`,
    );
  }
  const body = ids.length > 0 && ids[ids.length - 1] === eosId ? ids.slice(0, -1) : ids.slice();
  return [...body.slice(0, maxLength - 1), eosId];
}

/** A T5 tokenizer over a Hugging Face `tokenizer.json`. */
export class T5Tokenizer {
  readonly #tok: Tokenizer;
  readonly #appendEos: boolean;
  /** Byte value → id of its `<0xNN>` piece, for a Unigram model with `byte_fallback`. */
  readonly #byteIds: ReadonlyMap<number, number> | undefined;
  /** The unknown piece's id, which the library gives a piece the vocabulary lacks. */
  readonly #unkId: number | undefined;
  /**
   * Number of ids: the highest id of the vocabulary and its added tokens, plus one (32,100 for
   * the published T5 tokenizer), so the rows a model's embedding table needs. Not the number of
   * distinct strings: a string at two ids (a user-defined `<extra_id_i>` piece and the appended
   * sentinel of that name, as transformers' T5Converter lays out such a `spiece.model`) counts
   * both, and an added token's id past the model's vocabulary counts up to that id.
   */
  readonly vocabSize: number;
  /** Id of `</s>`. */
  readonly eosTokenId: number;
  /** Id of `<pad>`. */
  readonly padTokenId: number;
  /** Where the tokenizer came from (for messages). */
  readonly source: string;

  private constructor(
    tok: Tokenizer,
    source: string,
    byteFallback: boolean,
    unkId: number | undefined,
  ) {
    this.#tok = tok;
    this.source = source;
    this.#unkId = unkId;
    if (byteFallback) {
      const ids = new Map<number, number>();
      for (let b = 0; b < 256; b++) {
        const id = tok.token_to_id(byteToken(b));
        if (id !== undefined) ids.set(b, id);
      }
      this.#byteIds = ids;
    }
    // The library keeps id -> string in `model.vocab`, added tokens written at their ids (holes
    // where no id is): its length is the highest id + 1. `get_vocab(true).size` counted distinct
    // strings, one fewer for each string held at two ids, which let a model one embedding row
    // too small pass checkTokenizerFits.
    const byId = tok.model?.vocab ?? [];
    let size = byId.length;
    while (size > 0 && byId[size - 1] === undefined) size--;
    this.vocabSize = size;
    const eos = tok.token_to_id("</s>");
    const pad = tok.token_to_id("<pad>");
    if (eos === undefined) fail(source, `the vocabulary has no "</s>" token`);
    if (pad === undefined) fail(source, `the vocabulary has no "<pad>" token`);
    this.eosTokenId = eos;
    this.padTokenId = pad;
    // T5 tokenizers append </s> through their post-processor; append it ourselves when absent.
    const probe = this.#encode("a", true).ids;
    this.#appendEos = probe[probe.length - 1] !== eos;
  }

  /**
   * Build a tokenizer from a parsed `tokenizer.json`.
   *
   * @param json the parsed object
   * @param source where it came from, used in error messages
   * @returns the tokenizer
   * @throws CheckpointError naming the source (its `file`) and the invalid field (its `field`,
   *   when one is at fault; the library's own refusal names none)
   */
  static fromJson(json: unknown, source = "tokenizer.json"): T5Tokenizer {
    const j = validate(json, source);
    let tok: Tokenizer;
    try {
      // tokenizer.json may omit optional components; the library wants them present (null).
      const full = {
        normalizer: null,
        pre_tokenizer: null,
        post_processor: null,
        decoder: null,
        ...j,
      };
      tok = new Tokenizer(full, {});
      tok.encode("a b");
    } catch (e) {
      fail(source, (e as Error).message);
    }
    const model = j.model as Record<string, unknown>;
    return new T5Tokenizer(
      tok,
      source,
      model.type === "Unigram" && model.byte_fallback === true,
      typeof model.unk_id === "number" ? model.unk_id : undefined,
    );
  }

  /**
   * Load a `tokenizer.json` file (or the `tokenizer.json` inside a folder).
   *
   * @param path the file, or a folder holding `tokenizer.json`
   * @returns the tokenizer
   * @throws CheckpointError naming the file (its `file`) when it is missing, cannot be read, is
   *   not JSON (with line and column) or is not a valid tokenizer (with the field)
   */
  static async fromFile(path: string): Promise<T5Tokenizer> {
    let file = path;
    try {
      if ((await Deno.stat(path)).isDirectory) file = `${path.replace(/\/+$/, "")}/tokenizer.json`;
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        throw new CheckpointError(`${path}: tokenizer file not found`, { file: path, cause: e });
      }
      throw e;
    }
    checkTokenizerSize(file);
    let text: string;
    try {
      text = await Deno.readTextFile(file);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        throw new CheckpointError(`${file}: tokenizer file not found`, { file, cause: e });
      }
      throw new CheckpointError(`${file}: cannot read tokenizer: ${(e as Error).message}`, {
        file,
        cause: e,
      });
    }
    let json: unknown;
    try {
      json = parseJsonFile(text, file);
    } catch (e) {
      // `file:line:column: invalid JSON: …`; a SentencePiece model (a protobuf: its first byte
      // is field 1's tag, 0x0a) given for a tokenizer.json is said to be one.
      if (file.endsWith(".model") || text.charCodeAt(0) === 0x0a) {
        throw new CheckpointError(
          `${(e as Error).message}; is it a SentencePiece model? this takes a tokenizer.json ` +
            "(a checkpoint folder's spiece.model is read from the folder itself)",
          { file, cause: e },
        );
      }
      throw CheckpointError.from(e, file);
    }
    return T5Tokenizer.fromJson(json, file);
  }

  /**
   * The library's encoding, with Unigram byte fallback applied: a token the vocabulary lacks
   * (the library gives it the unknown id and keeps its text) becomes the `<0xNN>` pieces of its
   * UTF-8 bytes when the vocabulary has them all, as the Rust library's `Unigram::tokenize` does.
   * Without an unknown id (`"model.unk_id"` null or absent) the library gives such a token the id
   * `null`; that is refused here, as Rust refuses it (`MissingUnkId`), instead of being returned
   * as a token id.
   *
   * @throws Error naming the tokenizer and the piece, for a piece it has no id for
   */
  #encode(text: string, addSpecialTokens: boolean): { ids: number[]; tokens: string[] } {
    const e = this.#tok.encode(text, { add_special_tokens: addSpecialTokens });
    const bytes = this.#byteIds;
    if (bytes === undefined && this.#unkId !== undefined) {
      return { ids: [...e.ids], tokens: [...e.tokens] };
    }
    const ids: number[] = [];
    const tokens: string[] = [];
    const utf8 = new TextEncoder();
    e.ids.forEach((id, i) => {
      const token = e.tokens[i]!;
      const noId = !Number.isInteger(id);
      if (
        bytes !== undefined && (noId || id === this.#unkId) &&
        this.#tok.token_to_id(token) === undefined
      ) {
        const pieces = [...utf8.encode(token)].map((b) => bytes.get(b));
        if (pieces.every((p) => p !== undefined)) {
          ids.push(...pieces);
          tokens.push(...[...utf8.encode(token)].map(byteToken));
          return;
        }
      }
      if (noId) {
        throw new Error(
          `${this.source}: cannot encode the piece ${JSON.stringify(token)}: it is not in the ` +
            `vocabulary and "model.unk_id" is null or absent, so it has no id (the Rust ` +
            "tokenizers library refuses it too)",
        );
      }
      ids.push(id);
      tokens.push(token);
    });
    return { ids, tokens };
  }

  /** Encode text to ids ending with `</s>`. */
  encode(text: string): number[] {
    const ids = this.#encode(text, true).ids;
    if (this.#appendEos) ids.push(this.eosTokenId);
    return ids;
  }

  /** Encode text to ids and token strings (both ending with `</s>`). */
  encodeWithTokens(text: string): { ids: number[]; tokens: string[] } {
    const { ids, tokens } = this.#encode(text, true);
    if (this.#appendEos) {
      ids.push(this.eosTokenId);
      tokens.push("</s>");
    }
    return { ids, tokens };
  }

  /** Encode text to ids without the trailing `</s>`. */
  encodeNoEos(text: string): number[] {
    return this.#encode(text, false).ids;
  }

  /**
   * Decode ids to text.
   *
   * @param ids token ids (ids outside the vocabulary decode as `<unk>` or are skipped)
   * @param opts special-token skipping (default on), space clean-up (default off) and what
   *   `<unk>` and the sentinels become (default: as the other special tokens)
   */
  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    const { unknownAs } = opts;
    if (unknownAs !== undefined && (opts.skipSpecialTokens ?? true)) {
      // Each run between unknown ids decoded alone, the runs joined by the unknown's text.
      const runs: number[][] = [[]];
      for (const id of ids) {
        if (this.#unknown(id)) runs.push([]);
        else runs[runs.length - 1]!.push(id);
      }
      return runs.map((r) => this.decode(r, { ...opts, unknownAs: undefined })).join(unknownAs);
    }
    // The library rejects an empty id list; greedy decoding can legitimately produce one.
    if (ids.length === 0) return "";
    return this.#tok.decode([...ids], {
      skip_special_tokens: opts.skipSpecialTokens ?? true,
      clean_up_tokenization_spaces: opts.cleanUpTokenizationSpaces ?? false,
    });
  }

  /** Whether T5 decodes `id` as `<unk>`: it is `<unk>`, a sentinel, or no id of the vocabulary. */
  #unknown(id: number): boolean {
    const token = this.#tok.id_to_token(id);
    return token === undefined || id === this.#unkId || token === "<unk>" ||
      /^<extra_id_\d+>$/.test(token);
  }

  /** Id of a token string, or undefined when it is not in the vocabulary. */
  tokenToId(token: string): number | undefined {
    return this.#tok.token_to_id(token);
  }

  /** Token string of an id, or undefined when out of range. */
  idToToken(id: number): string | undefined {
    return this.#tok.id_to_token(id);
  }
}
