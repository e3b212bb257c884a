/**
 * Offline T5-style vocabularies: train a SentencePiece-Unigram model with Debian's `spm_train`
 * and convert the `.model` protobuf to a Hugging Face `tokenizer.json` in T5's layout
 * (`<pad>`, `</s>`, `<unk>` at ids 0–2, 100 sentinels `<extra_id_0>` … `<extra_id_99>` at the end,
 * `<extra_id_0>` the highest id), readable by {@link T5Tokenizer}.
 *
 * The converter emits what transformers' T5 converter emits: a `Precompiled` normalizer with the
 * model's character map followed by `Replace(" {2,}" → " ")`, a `Metaspace("▁", always)`
 * pre-tokenizer and decoder, a `Unigram` model and a `$A </s>` template.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { isAbsolute, join, relative, resolve, sep } from "node:path";
import { CheckpointError } from "./checkpoint_error.ts";
import { writeFileAtomic } from "./fs.ts";
import { parseJsonFile } from "./json.ts";
import { checkTokenizerSize } from "./tokenizer.ts";

/** One piece of a SentencePiece model. */
export interface SentencePiece {
  /** The piece's text, with `▁` (U+2581) marking a word start. */
  readonly piece: string;
  /** Its Unigram log-probability (0 when the model stores none). */
  readonly score: number;
  /** 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte. */
  readonly type: number;
}

/** The parts of a SentencePiece `ModelProto` the converter needs. */
export interface SentencePieceModel {
  /** The pieces in id order (a piece's id is its index). */
  readonly pieces: readonly SentencePiece[];
  /** `normalizer_spec.precompiled_charsmap`; empty when the model has no normaliser. */
  readonly precompiledCharsmap: Uint8Array;
}

/** Number of sentinel tokens T5 appends to its vocabulary. */
export const NUM_SENTINELS = 100;

/** Reads a protobuf message; `base` is its first byte's offset in the file, for the messages. */
class ProtoReader {
  pos = 0;
  constructor(readonly buf: Uint8Array, readonly source: string, readonly base = 0) {}
  /** The file offset of the next byte. */
  get at(): number {
    return this.base + this.pos;
  }
  get done(): boolean {
    return this.pos >= this.buf.length;
  }
  varint(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      if (this.pos >= this.buf.length) {
        this.fail(`truncated protobuf varint at byte ${this.at}`);
      }
      const b = this.buf[this.pos++]!;
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return result;
      shift += 7;
      if (shift > 63) this.fail(`malformed varint at byte ${this.at}`);
    }
  }
  bytes(): Uint8Array {
    const n = this.varint();
    if (this.pos + n > this.buf.length) {
      this.fail(`truncated protobuf field (${n} bytes at byte ${this.at})`);
    }
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  /** A length-delimited field read as a message of its own, its offsets the file's. */
  message(): ProtoReader {
    const out = this.bytes();
    return new ProtoReader(out, this.source, this.at - out.length);
  }
  float32(): number {
    if (this.pos + 4 > this.buf.length) {
      this.fail(`truncated float at byte ${this.at}`);
    }
    const v = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 4).getFloat32(0, true);
    this.pos += 4;
    return v;
  }
  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) this.fixed(8);
    else if (wire === 2) this.bytes();
    else if (wire === 5) this.fixed(4);
    else this.fail(`unsupported protobuf wire type ${wire} at ${this.at}`);
  }
  /** Skips a fixed-width field (fixed64/double: 8 bytes; fixed32/float: 4), bounds-checked. */
  private fixed(n: number): void {
    if (this.pos + n > this.buf.length) {
      this.fail(
        `truncated protobuf fixed${n * 8} field at byte ${this.at} (${n} bytes needed, ${
          this.buf.length - this.pos
        } left)`,
      );
    }
    this.pos += n;
  }
  /** Throws the {@link CheckpointError} of the file, the message naming the byte position. */
  fail(message: string): never {
    // What it means for the user first: the protobuf detail is for whoever debugs the file.
    throw new CheckpointError(
      `${this.source}: not a SentencePiece model (${message}): replace it with the model's own ` +
        "spiece.model",
      { file: this.source },
    );
  }
}

/**
 * Parses a SentencePiece `.model` file (a `ModelProto`): field 1 holds the pieces (1 piece,
 * 2 score, 3 type), field 3 the normaliser spec whose field 2 is the precompiled character map.
 *
 * @param bytes the file's bytes
 * @param source file name for error messages
 * @returns the pieces in id order and the character map
 * @throws CheckpointError naming the file (its `file`) and the byte position when the protobuf
 *   is truncated or malformed, or a piece is not UTF-8; the file when it holds no pieces
 */
export function parseSentencePieceModel(bytes: Uint8Array, source: string): SentencePieceModel {
  const r = new ProtoReader(bytes, source);
  const pieces: SentencePiece[] = [];
  let charsmap = new Uint8Array(0);
  const text = new TextDecoder("utf-8", { fatal: true });
  while (!r.done) {
    const key = r.varint();
    const fieldNo = Math.floor(key / 8);
    const wire = key & 7;
    if (fieldNo === 1 && wire === 2) {
      const sub = r.message();
      let piece = "";
      let score = 0;
      let type = 1;
      while (!sub.done) {
        const k = sub.varint();
        const f = Math.floor(k / 8);
        const w = k & 7;
        if (f === 1 && w === 2) {
          const raw = sub.bytes();
          const at = sub.at - raw.length;
          try {
            piece = text.decode(raw);
          } catch (e) {
            throw new CheckpointError(
              `${source}: piece ${pieces.length} (at byte ${at}) is not valid UTF-8`,
              { file: source, cause: e },
            );
          }
        } else if (f === 2 && w === 5) score = sub.float32();
        else if (f === 3 && w === 0) type = sub.varint();
        else sub.skip(w);
      }
      pieces.push({ piece, score, type });
    } else if (fieldNo === 3 && wire === 2) {
      const sub = r.message();
      while (!sub.done) {
        const k = sub.varint();
        if (Math.floor(k / 8) === 2 && (k & 7) === 2) charsmap = new Uint8Array(sub.bytes());
        else sub.skip(k & 7);
      }
    } else {
      r.skip(wire);
    }
  }
  if (pieces.length === 0) {
    throw new CheckpointError(`${source}: no pieces found; not a SentencePiece model`, {
      file: source,
    });
  }
  return { pieces, precompiledCharsmap: charsmap };
}

function addedToken(id: number, content: string) {
  return {
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  };
}

/** How the converted tokenizer is shaped beyond the pieces (transformers' `T5Tokenizer` arguments). */
export interface T5TokenizerExtras {
  /**
   * `additional_special_tokens`: each becomes a special added token, at its id when the
   * vocabulary (pieces and sentinels) has it, else appended after the sentinels in list order,
   * as transformers' fast tokenizer adds them. Default none.
   */
  readonly additionalSpecialTokens?: readonly string[];
  /**
   * The Metaspace `prepend_scheme`: `"always"` (T5's default, `legacy` unset or true), `"first"`
   * (`legacy: false`) or `"never"` (`add_prefix_space: false`).
   */
  readonly prependScheme?: "always" | "first" | "never";
}

/**
 * Converts a parsed SentencePiece model to a T5 `tokenizer.json` object, appending
 * {@link NUM_SENTINELS} sentinels as T5 does (`<extra_id_0>` gets the highest id), as
 * transformers' `T5Converter` does. Every piece keeps its score, of whatever type (the sentinels
 * score 0). Control pieces (type 3) become special added tokens, user-defined pieces (type 4)
 * added tokens (matched whole before segmentation, as SentencePiece matches them), special only
 * when the piece is one of the tokenizer's special tokens (`<pad>`, `</s>`, `<unk>`, the
 * additional special tokens, the sentinels), as transformers marks them. A model whose own pieces
 * include a sentinel's text (a user-defined `<extra_id_i>`; `spm_train` as
 * {@link trainSentencePiece} runs it never makes one) keeps that piece in the vocabulary, but the
 * string is one added token, at the appended sentinel's id, as in transformers' tokenizer.
 *
 * @param model the parsed model; ids 0, 1, 2 must be `<pad>`, `</s>`, `<unk>`
 * @param source file name for error messages
 * @param numSentinels sentinels to append (100 as T5)
 * @param extras additional special tokens and the Metaspace prepend scheme
 * @returns a JSON-serialisable tokenizer description
 */
export function sentencePieceToTokenizerJson(
  model: SentencePieceModel,
  source: string,
  numSentinels = NUM_SENTINELS,
  extras: T5TokenizerExtras = {},
): Record<string, unknown> {
  if (!Number.isInteger(numSentinels) || numSentinels < 0) {
    throw new Error(
      `${source}: the number of sentinels must be an integer >= 0, got ${numSentinels}`,
    );
  }
  const expect = ["<pad>", "</s>", "<unk>"];
  expect.forEach((p, i) => {
    if (model.pieces[i]?.piece !== p) {
      throw new CheckpointError(
        `${source}: piece ${i} must be "${p}" (T5 layout: train with --pad_id=0 --eos_id=1 ` +
          `--unk_id=2 --bos_id=-1), got "${model.pieces[i]?.piece}"`,
        { file: source },
      );
    }
  });
  // Every piece keeps its own score, whatever its type, as transformers' T5Converter
  // (`[(piece.piece, piece.score) for piece in proto.pieces]`): the Unigram lattice still holds
  // control and user-defined pieces, and the unknown piece's penalty follows the lowest score.
  // The sentinels follow, <extra_id_0> the highest id, as T5Converter's `vocab()` appends them.
  const vocab: [string, number][] = model.pieces.map((p) => [p.piece, p.score]);
  for (let i = numSentinels - 1; i >= 0; i--) vocab.push([`<extra_id_${i}>`, 0]);
  // A string's id in the Unigram model: its last entry, as the Rust library's `Unigram::from`
  // fills `token_to_ids` (a map insert per entry, so a later entry wins). Only a sentinel can
  // be there twice: a model whose own pieces include `<extra_id_i>` (a user-defined symbol)
  // also has it appended, and the string then means the appended id, as in transformers.
  const modelIds = new Map<string, number>();
  vocab.forEach(([p], id) => modelIds.set(p, id));
  // Added tokens as the Rust library's `AddedVocabulary::add_tokens` records them: one per
  // string, at the id the string already has (the model's, or that of the new entry an earlier
  // add made: `modelIds` holds both), a new id after everything otherwise; adding it again
  // updates its flags.
  const addedAt = new Map<number, ReturnType<typeof addedToken>>();
  const add = (content: string, special: boolean) => {
    let id = modelIds.get(content);
    if (id === undefined) {
      // Not a piece: a new id after everything, as the fast tokenizer's add_special_tokens.
      id = vocab.length;
      vocab.push([content, 0]);
      modelIds.set(content, id);
    }
    addedAt.set(id, { ...addedToken(id, content), special });
  };
  for (const p of expect) add(p, true);
  // Control (3) and user-defined (4) pieces are added tokens, as transformers' SpmConverter
  // adds them (`if p.type in [3, 4]`): special when control, or when the piece is one of the
  // tokenizer's special tokens (`p.type == 3 or p.piece in self.special_tokens`; T5TokenizerFast
  // then marks its special tokens, here <pad>, </s>, <unk>, the additional special tokens and
  // the sentinels). Other pieces, an unknown (2) one included, are the Unigram model's alone
  // (SentencePiece allows one unknown piece, <unk> at 2, special as the unk token).
  const sentinels = Array.from({ length: numSentinels }, (_, i) => `<extra_id_${i}>`);
  const specialTokens = new Set([
    ...expect,
    ...(extras.additionalSpecialTokens ?? []),
    ...sentinels,
  ]);
  model.pieces.forEach((p, id) => {
    if (id > 2 && (p.type === 3 || p.type === 4)) {
      add(p.piece, p.type === 3 || specialTokens.has(p.piece));
    }
  });
  // Then T5TokenizerFast's special tokens: the sentinels, `<extra_id_0>` last (highest id), and
  // the additional special tokens in list order.
  for (let i = numSentinels - 1; i >= 0; i--) add(sentinels[i]!, true);
  for (const token of extras.additionalSpecialTokens ?? []) add(token, true);
  const added = [...addedAt.values()].sort((a, b) => a.id - b.id);
  const normalizers: unknown[] = [];
  if (model.precompiledCharsmap.length > 0) {
    normalizers.push({
      type: "Precompiled",
      precompiled_charsmap: Buffer.from(model.precompiledCharsmap).toString("base64"),
    });
  }
  normalizers.push({ type: "Replace", pattern: { Regex: " {2,}" }, content: " " });
  const metaspace = {
    type: "Metaspace",
    replacement: "▁",
    prepend_scheme: extras.prependScheme ?? "always",
    split: true,
  };
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: { type: "Sequence", normalizers },
    pre_tokenizer: metaspace,
    post_processor: {
      type: "TemplateProcessing",
      single: [{ Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "</s>", type_id: 0 } }],
      pair: [
        { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: "</s>", type_id: 0 } },
        { Sequence: { id: "B", type_id: 0 } },
        { SpecialToken: { id: "</s>", type_id: 0 } },
      ],
      special_tokens: { "</s>": { id: "</s>", ids: [1], tokens: ["</s>"] } },
    },
    decoder: metaspace,
    model: { type: "Unigram", unk_id: 2, vocab, byte_fallback: false },
  };
}

/**
 * Appends T5's sentinels to an existing Unigram `tokenizer.json` that lacks them (e.g. a
 * vocabulary trained without `--user_defined_symbols`), so span corruption can use it: 100
 * `<extra_id_i>` tokens after the last id, `<extra_id_0>` the highest, as special added tokens.
 * A tokenizer that already has `<extra_id_0>` is returned unchanged.
 *
 * @param json a parsed `tokenizer.json` with a Unigram model
 * @param source file name for error messages
 * @param numSentinels how many to append (100 as T5)
 * @returns a new object; the input is not modified
 */
export function withSentinels(
  json: Record<string, unknown>,
  source: string,
  numSentinels = NUM_SENTINELS,
): Record<string, unknown> {
  const model = json["model"] as { type?: string; vocab?: unknown } | undefined;
  if (model?.type !== "Unigram" || !Array.isArray(model.vocab)) {
    throw new CheckpointError(
      `${source}: field "model" must be a Unigram model with a vocab list`,
      {
        file: source,
        field: "model",
      },
    );
  }
  const vocab = model.vocab as [string, number][];
  if (vocab.some((v) => v[0] === "<extra_id_0>")) return json;
  const added = Array.isArray(json["added_tokens"]) ? [...json["added_tokens"] as unknown[]] : [];
  const newVocab = [...vocab];
  const n = vocab.length;
  for (let i = numSentinels - 1; i >= 0; i--) {
    newVocab.push([`<extra_id_${i}>`, 0]);
    added.push(addedToken(n + (numSentinels - 1 - i), `<extra_id_${i}>`));
  }
  return { ...json, added_tokens: added, model: { ...model, vocab: newVocab } };
}

/** `spm_train`'s default `--max_sentence_length`, in bytes. */
const SPM_DEFAULT_MAX_SENTENCE_BYTES = 4192;

/**
 * The length in bytes of the longest line of `files` (lines end at `\n`), read in chunks: what
 * {@link trainSentencePiece} passes as `spm_train`'s `--max_sentence_length`, so no line is
 * skipped.
 *
 * @param files text files
 * @returns the longest line's byte count (0 for empty files)
 */
async function longestLineBytes(files: readonly string[]): Promise<number> {
  let longest = 0;
  for (const path of files) {
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path);
    } catch (e) {
      throw new Error(`${path}: cannot read the corpus file: ${(e as Error).message}`, {
        cause: e,
      });
    }
    let line = 0;
    for await (const chunk of file.readable) {
      let start = 0;
      for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, start)) {
        longest = Math.max(longest, line + i - start);
        line = 0;
        start = i + 1;
      }
      line += chunk.length - start;
    }
    longest = Math.max(longest, line);
  }
  return longest;
}

/** Options of {@link trainSentencePiece}. */
export interface TrainSentencePieceOptions {
  /**
   * Vocabulary size including the 100 sentinels (spm_train is asked for vocabSize − 100). A
   * corpus too small to give that many pieces gives fewer (`--hard_vocab_limit=false`), the
   * sentinels right after them; one with more distinct characters than pieces is an error.
   */
  readonly vocabSize: number;
  /** Folder receiving `spiece.model` and `tokenizer.json`. */
  readonly outDir: string;
  /** spm_train's `--character_coverage` (default 1.0: every character of the corpus a piece). */
  readonly characterCoverage?: number;
  /** Path of the spm_train binary (default: `spm_train` on PATH). */
  readonly spmTrain?: string;
}

/**
 * Trains a T5-layout Unigram vocabulary with `spm_train` (Debian package `sentencepiece`) on
 * text files and writes `spiece.model` and `tokenizer.json` into `outDir`. The result depends on
 * the corpus and the options only: spm_train reads every line in order, without sampling (its
 * `--random_seed` is fixed at 0 all the same), however long (`--max_sentence_length` is set to the
 * longest line's bytes, at least spm_train's default of 4192, which would skip longer lines), on a
 * fixed 2 threads (its pieces depend on the thread count: 1 and 2 threads give different
 * vocabularies of the same corpus, so changing it changes every trained tokenizer).
 *
 * @param corpusFiles plain-text files, one sentence or document per line
 * @param opts vocabulary size and output folder
 * @returns the path of the written `tokenizer.json`
 * @throws Error saying how to install spm_train when it is missing, or spm_train's stderr
 */
export async function trainSentencePiece(
  corpusFiles: readonly string[],
  opts: TrainSentencePieceOptions,
): Promise<string> {
  if (corpusFiles.length === 0) throw new Error("trainSentencePiece: no corpus files given");
  const pieces = opts.vocabSize - NUM_SENTINELS;
  if (!Number.isInteger(pieces) || pieces < 16) {
    throw new Error(
      `trainSentencePiece: vocabSize must be an integer >= 116, got ${opts.vocabSize}`,
    );
  }
  const longest = await longestLineBytes(corpusFiles);
  await Deno.mkdir(opts.outDir, { recursive: true });
  const prefix = `${opts.outDir}/spiece`;
  // spiece.model records its trainer's arguments, the input paths and the model prefix among
  // them: spm_train runs in `outDir` with paths relative to it where they stay near (a corpus
  // beside the output folder, as pretrain's temporary folder has it), so the same corpus gives
  // the same bytes in any folder; a corpus elsewhere is named by its absolute path.
  const inputs = corpusFiles.map((f) => {
    const rel = relative(opts.outDir, f);
    return isAbsolute(rel) || rel.startsWith(`..${sep}..`) ? resolve(f) : rel;
  });
  const args = [
    `--input=${inputs.join(",")}`,
    "--model_prefix=spiece",
    "--model_type=unigram",
    `--vocab_size=${pieces}`,
    "--pad_id=0",
    "--eos_id=1",
    "--unk_id=2",
    "--bos_id=-1",
    `--character_coverage=${opts.characterCoverage ?? 1.0}`,
    "--input_sentence_size=2000000",
    "--shuffle_input_sentence=false",
    // spm_train skips (with a warning on stderr only) every line longer than this, 4192 bytes by
    // default: a MultiRC paragraph or a ReCoRD passage would be left out of the vocabulary.
    `--max_sentence_length=${Math.max(SPM_DEFAULT_MAX_SENTENCE_BYTES, longest)}`,
    // Unused without sampling (above), so the pieces do not change; fixed should that ever change.
    "--random_seed=0",
    "--num_threads=2",
    "--hard_vocab_limit=false",
  ];
  // A path of the program is resolved here: the child runs in outDir, where a relative one would
  // be looked up (a name alone is looked up on the PATH).
  const program = opts.spmTrain === undefined
    ? "spm_train"
    : /[\\/]/.test(opts.spmTrain)
    ? resolve(opts.spmTrain)
    : opts.spmTrain;
  let out: Deno.CommandOutput;
  try {
    out = await outputStoppedWithUs(
      new Deno.Command(program, {
        args,
        cwd: opts.outDir,
        stdout: "null",
        stderr: "piped",
      }),
    );
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(
        "spm_train not found: install Debian's sentencepiece package " +
          "(apt-get install -y sentencepiece) or pass an existing tokenizer.json",
      );
    }
    throw e;
  }
  if (!out.success) {
    const stderr = new TextDecoder().decode(out.stderr);
    // spm_train counts pieces without the sentinels: say it in the caller's vocabSize terms.
    const chars = stderr.match(/Vocabulary size is smaller than required_chars\. \d+ vs (\d+)/);
    if (chars) {
      const need = Number(chars[1]);
      throw new Error(
        `trainSentencePiece: vocabSize ${opts.vocabSize} leaves ${pieces} pieces beside the ` +
          `${NUM_SENTINELS} sentinels, but spm_train needs ${need} for this corpus (every ` +
          `character, <pad>, </s> and <unk>); use a vocabSize of at least ${need + NUM_SENTINELS}`,
      );
    }
    const err = stderr.split("\n").slice(-8).join("\n");
    throw new Error(`spm_train failed (exit ${out.code}):\n${err}`);
  }
  const modelPath = `${prefix}.model`;
  const json = sentencePieceToTokenizerJson(
    parseSentencePieceModel(await Deno.readFile(modelPath), modelPath),
    modelPath,
  );
  const target = `${opts.outDir}/tokenizer.json`;
  await writeFileAtomic(target, JSON.stringify(json));
  await Deno.remove(`${prefix}.vocab`).catch(() => {});
  return target;
}

/**
 * Runs `command` to its end, as `Command.output()`, but a SIGINT or SIGTERM that reaches this
 * process meanwhile stops the child too: the child gets the signal, then this process gets it
 * again with the listeners removed, so whatever handles it without them (the default action:
 * exit) does. Without this, `kill <deno pid>` (a job scheduler's stop, unlike Ctrl-C in a
 * terminal, which signals the whole process group) left `spm_train` running for minutes,
 * writing into the cache after the process that started it had gone.
 *
 * @param command the command (stdout and stderr as it sets them)
 * @returns the child's output
 */
export async function outputStoppedWithUs(command: Deno.Command): Promise<Deno.CommandOutput> {
  const child = command.spawn();
  const listeners: [Deno.Signal, () => void][] = [];
  const removeAll = () => {
    for (const [signal, listener] of listeners.splice(0)) {
      Deno.removeSignalListener(signal, listener);
    }
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    const listener = () => {
      try {
        child.kill(signal);
      } catch {
        // Already exited.
      }
      removeAll();
      Deno.kill(Deno.pid, signal);
    };
    try {
      Deno.addSignalListener(signal, listener);
      listeners.push([signal, listener]);
    } catch {
      // Not supported here (Windows: SIGTERM): its default action stays.
    }
  }
  try {
    return await child.output();
  } finally {
    removeAll();
  }
}

/** What a `tokenizer_config.json` says about the tokenizer converted from `spiece.model`. */
export interface T5TokenizerConfig extends T5TokenizerExtras {
  /** `extra_ids`: sentinels appended after the pieces (default {@link NUM_SENTINELS}). */
  readonly extraIds: number;
}

/**
 * Reads the fields of a `tokenizer_config.json` (transformers' `T5Tokenizer` arguments) that
 * shape a tokenizer converted from `spiece.model`: `extra_ids` (default 100),
 * `additional_special_tokens` (strings, or `{"content": …}` objects as transformers saves
 * `AddedToken`s), `legacy` (false: Metaspace prepends `▁` to the first section only) and
 * `add_prefix_space` (false: never). As transformers, a list holding `<extra_id_…>` tokens must
 * hold `extra_ids` of them when `extra_ids` > 0; a list without any gets the sentinels.
 *
 * @param config the parsed file (`undefined`: none, T5's defaults)
 * @param source the file, for error messages
 * @returns the settings
 * @throws CheckpointError naming the file (its `file`) and the field (its `field`) for a value
 *   of the wrong type, or sentinel counts that disagree
 */
export function t5TokenizerConfig(config: unknown, source: string): T5TokenizerConfig {
  if (config === undefined) return { extraIds: NUM_SENTINELS };
  if (typeof config !== "object" || config === null || Array.isArray(config)) {
    throw new CheckpointError(`${source}: must be a JSON object`, { file: source });
  }
  const c = config as Record<string, unknown>;
  const extraIds = c["extra_ids"] ?? NUM_SENTINELS;
  if (typeof extraIds !== "number" || !Number.isInteger(extraIds) || extraIds < 0) {
    throw new CheckpointError(
      `${source}: field "extra_ids" must be an integer >= 0, got ${JSON.stringify(c["extra_ids"])}`,
      { file: source, field: "extra_ids" },
    );
  }
  let additional: string[] | undefined;
  const list = c["additional_special_tokens"];
  if (list !== undefined && list !== null) {
    if (!Array.isArray(list)) {
      throw new CheckpointError(
        `${source}: field "additional_special_tokens" must be a list of tokens, got ${
          JSON.stringify(list)
        }`,
        { file: source, field: "additional_special_tokens" },
      );
    }
    additional = list.map((t, i) => {
      const content = typeof t === "object" && t !== null
        ? (t as { content?: unknown }).content
        : t;
      if (typeof content !== "string" || content === "") {
        throw new CheckpointError(
          `${source}: field "additional_special_tokens[${i}]" must be a non-empty string or an ` +
            `object with a "content" string, got ${JSON.stringify(t)}`,
          { file: source, field: `additional_special_tokens[${i}]` },
        );
      }
      return content;
    });
    const sentinels = new Set(additional.filter((t) => t.includes("<extra_id_"))).size;
    if (sentinels > 0 && extraIds > 0 && sentinels !== extraIds) {
      throw new CheckpointError(
        `${source}: field "extra_ids" is ${extraIds} but "additional_special_tokens" holds ` +
          `${sentinels} <extra_id_…> tokens; transformers refuses this too (they must agree)`,
        { file: source, field: "extra_ids" },
      );
    }
  }
  for (const field of ["legacy", "add_prefix_space"]) {
    const v = c[field];
    if (v !== undefined && v !== null && typeof v !== "boolean") {
      throw new CheckpointError(
        `${source}: field "${field}" must be true or false, got ${JSON.stringify(v)}`,
        { file: source, field },
      );
    }
  }
  const prependScheme = c["add_prefix_space"] === false
    ? "never"
    : c["legacy"] === false
    ? "first"
    : "always";
  return {
    extraIds,
    prependScheme,
    ...(additional === undefined ? {} : { additionalSpecialTokens: additional }),
  };
}

/** A `tokenizer.json` converted from a folder's `spiece.model` ({@link convertSpieceFolder}). */
export interface ConvertedSpiece {
  /** The `tokenizer.json` object. */
  readonly json: Record<string, unknown>;
  /** The `spiece.model` it was converted from. */
  readonly spiece: string;
  /** The `tokenizer_config.json` whose settings it follows, when the folder has one. */
  readonly tokenizerConfig?: string;
  /** The settings used. */
  readonly settings: T5TokenizerConfig;
  /** SentencePiece pieces (without the sentinels and additional tokens). */
  readonly pieces: number;
}

/**
 * Converts the `spiece.model` of a Hugging Face T5 folder that has no `tokenizer.json` (as the
 * 2020 checkpoints such as google/t5-v1_1-base ship) to a `tokenizer.json` object, as
 * transformers' `T5Converter` does on load, following the folder's `tokenizer_config.json`
 * (see {@link t5TokenizerConfig}) when it has one. Nothing is written.
 *
 * @param dir the folder
 * @returns the converted tokenizer, or undefined when the folder has no `spiece.model`
 * @throws CheckpointError naming the file (its `file`): one that cannot be read, a malformed
 *   `spiece.model` (with the byte position) or `tokenizer_config.json` (with line and column for
 *   invalid JSON, the field for a bad value), or pieces 0–2 not T5's
 */
export async function convertSpieceFolder(dir: string): Promise<ConvertedSpiece | undefined> {
  const spiece = join(dir, "spiece.model");
  let bytes: Uint8Array;
  checkTokenizerSize(spiece);
  try {
    bytes = await Deno.readFile(spiece);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw new CheckpointError(`${spiece}: cannot read: ${(e as Error).message}`, {
      file: spiece,
      cause: e,
    });
  }
  const configPath = join(dir, "tokenizer_config.json");
  let configText: string | undefined;
  try {
    configText = await Deno.readTextFile(configPath);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      throw new CheckpointError(`${configPath}: cannot read: ${(e as Error).message}`, {
        file: configPath,
        cause: e,
      });
    }
  }
  let configJson: unknown;
  try {
    configJson = configText === undefined ? undefined : parseJsonFile(configText, configPath);
  } catch (e) {
    // `file:line:column: invalid JSON: …`
    throw CheckpointError.from(e, configPath);
  }
  const settings = t5TokenizerConfig(configJson, configPath);
  const model = parseSentencePieceModel(bytes, spiece);
  const json = sentencePieceToTokenizerJson(model, spiece, settings.extraIds, settings);
  return {
    json,
    spiece,
    settings,
    pieces: model.pieces.length,
    ...(configText === undefined ? {} : { tokenizerConfig: configPath }),
  };
}
