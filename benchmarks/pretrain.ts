/**
 * Offline pretraining of tiny T5 backbones with T5's span-corruption objective, so that CPU and CI
 * runs compare the methods on a pretrained backbone rather than a random network.
 *
 * `deno task pretrain` (or {@link ensurePretrainedBackbone}, called by the runner for profiles whose
 * backbone is `"pretrained"`):
 * 1. gathers a corpus: by default the unlabeled input text of the GLUE/SuperGLUE **train and test**
 *    splits present in the data folder (never dev/val, which would leak into evaluation), or the
 *    text files the user names;
 * 2. trains a T5-layout SentencePiece-Unigram vocabulary on it with `spm_train` unless a
 *    `tokenizer.json` is given, cached on its own by corpus hash and size
 *    ({@link ensureTaskTokenizer}), so random-init runs share it;
 * 3. trains the preset on span corruption (noise density 0.15, mean span 3) over packed chunks,
 *    each batch's chunks drawn uniformly with replacement (T5 streams C4 without replacement; the
 *    corpus holds many times the chunks a pretraining draws, so repeats are rare);
 * 4. writes a Hugging Face folder (`config.json`, `model.safetensors`, `tokenizer.json`,
 *    `pretrain.json`) into a cache keyed by a hash of the corpus and every setting, so it is built
 *    once and reused.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { basename, dirname, join, resolve } from "node:path";
import { existsSync } from "node:fs";
import { createHash } from "node:crypto";
import { preset, type T5Config } from "../model/config.ts";
import { ignoreFileSizeSignal } from "../model/file_size_signal.ts";
import {
  crossEntropyLoss,
  disposeT5,
  forward,
  initT5,
  type T5Model,
  t5StateDict,
} from "../model/t5.ts";
import {
  type CheckpointFileRecord,
  fileDigest,
  removeStaleSaveTemps,
  saveHfFolder,
} from "../model/checkpoint.ts";
import { T5Tokenizer } from "../model/tokenizer.ts";
import { NUM_SENTINELS, trainSentencePiece, withSentinels } from "../model/spm.ts";
import { sharedPath } from "../model/shared_dir.ts";
import {
  checkOutputFolder,
  fsError,
  isDirectory,
  isDirectorySync,
  isFileSync as isFile,
  makeHeldTempDir,
  removeStaleTemps,
  syncDir,
  syncFile,
  TEMP_TAG_SOURCE,
  type TempPattern,
  withFileLock,
  writeFileAtomic,
} from "../model/fs.ts";
import { thisHost } from "./run_claim.ts";
import { codeGitState } from "./provenance.ts";
import { parseJsonFile } from "../model/json.ts";
import {
  decimalNumber,
  exitCodeOf,
  parseFlags,
  usageChecked,
  UsageError,
  wrapHelp,
} from "../model/usage.ts";
import {
  BACKEND_NAMES,
  backendFromEnv,
  backendHint,
  type BackendName,
  currentBackendInfo,
  selectBackend,
} from "../model/backend.ts";
import { noiseCounts, spanCorrupt, T5_SPAN_CORRUPTION } from "../tasks/span_corruption.ts";
import {
  checkDataDir,
  corpusReadNote,
  corpusSplits,
  defaultCacheDir as defaultDataCacheDir,
  defaultDataDir,
  defaultDataRoots,
  noMirrorNote,
  resolveDataDir,
} from "../tasks/data.ts";
import { loadExamples } from "../tasks/load.ts";
import { DataError } from "../tasks/parse.ts";
import { createOptimizer, type Optimizer } from "./optim.ts";
import { YIELD_EVERY_MS, yielder } from "./trainer.ts";
import { Rng, seedFor } from "./rng.ts";

/**
 * The reference tokenizer of `shared/fixtures` (a T5-layout Unigram vocabulary trained on GLUE
 * text): used for random-initialised tiny models and for pretraining when `spm_train` is missing.
 * A function, read when called (`HYPERPROMPT_SHARED`), so that importing the suite reads no
 * environment variable.
 *
 * @returns the file's path
 */
export function referenceTokenizer(): string {
  return sharedPath("fixtures/tokenizer/unigram-glue-4k/tokenizer.json");
}

/** Settings of one pretraining run; all of them enter the cache key. */
export interface PretrainOptions {
  /** Model preset (a tiny T5 1.1 layout by default). */
  readonly preset: string;
  /** Text files (one document per line); default: the task corpus of `dataDir`. */
  readonly corpusFiles?: readonly string[];
  /** Offline mirror or cache in the official layout, for the default corpus. */
  readonly dataDir?: string;
  /** An existing `tokenizer.json` (must contain `<extra_id_0>` … sentinels); default: train one. */
  readonly tokenizer?: string;
  /** Vocabulary size of a trained tokenizer (including 100 sentinels). */
  readonly vocabSize: number;
  /** Optimizer steps. */
  readonly steps: number;
  /** Sequences per batch. */
  readonly batchSize: number;
  /** Tokens per packed chunk before corruption. */
  readonly chunkLength: number;
  /** AdamW learning rate (linear warm-up over the first 5 % of steps). */
  readonly learningRate: number;
  /** Root seed. */
  readonly seed: number;
  /** Cache folder holding `backbones/<hash>/` and `tokenizers/<hash>/`. */
  readonly cacheDir: string;
  /**
   * Backend of the pretraining (default `"auto"`, wasm+blas on a CPU host). Part of the cache key
   * when given. wasm+blas rebuilds bit-identical weights on one host, but OpenBLAS picks
   * CPU-specific kernels; `"wasm"` (pure wasm here, never OpenBLAS) and `"cpu"` (pure JS,
   * slower) build the same weights on every host.
   */
  readonly backend?: BackendName;
  /** The `spm_train` executable (default: from PATH); without one the reference tokenizer is used. */
  readonly spmTrain?: string;
  /** Progress lines (default: console.error). */
  readonly log?: (line: string) => void;
  /**
   * The clock of the loop's turns of the event loop (`trainer.ts` `yielder`: once a second, for
   * timers such as a run claim's heartbeat), in ms; default `performance.now` (tests pass one).
   */
  readonly now?: () => number;
}

/** Defaults: small enough to finish in a few minutes on 2 cores with `mini-v1_1`. */
export const PRETRAIN_DEFAULTS = {
  preset: "mini-v1_1",
  vocabSize: 4096,
  steps: 300,
  batchSize: 16,
  chunkLength: 64,
  learningRate: 2e-3,
  seed: 0,
} as const;

/**
 * Version of the pretraining code in the backbone cache key: bump it whenever a change makes
 * {@link pretrainBackbone} build other weights from the same settings (`initT5`, the optimizer,
 * the span-corruption objective, the loss, the batching or corpus order, the backend setup), so
 * that no cached backbone of the old code is reused. The test "pretraining fingerprint" in
 * pretrain_test.ts runs a 3-step pretraining on the cpu backend and compares its losses and a
 * hash of its weights with values committed for this version: a change it sees fails there,
 * asking for this bump (a change only another backend sees, it cannot). A fingerprint computed
 * at run time instead would cost a pretraining per lookup and differ between backends.
 *
 * 4: the corpus's lines in a seeded order (`corpusStream`).
 */
export const PRETRAIN_CODE_VERSION = 4;

/** What a pretraining run records beside the weights (`pretrain.json`). */
export interface PretrainInfo {
  readonly key: string;
  readonly preset: string;
  readonly corpus: {
    readonly files: readonly string[];
    readonly sha256: string;
    readonly lines: number;
  };
  readonly tokenizer: string;
  readonly steps: number;
  readonly batchSize: number;
  readonly chunkLength: number;
  readonly learningRate: number;
  readonly seed: number;
  readonly losses: readonly { readonly step: number; readonly loss: number }[];
  readonly wallSeconds: number;
  readonly backend: string;
  /**
   * The backend asked for (`auto`, or what `--backend`, the profile's `pretrain.backend` or
   * `HYPERPROMPT_BACKEND` named), beside `backend`, what ran; absent in older records.
   */
  readonly requestedBackend?: string;
  /** The WebGPU adapter or BLAS library the backend used, when it names one. */
  readonly adapter?: string;
  /** The code that trained it (`git rev-parse HEAD` and uncommitted changes); absent in older records. */
  readonly code?: { readonly gitSha: string; readonly gitDirty: boolean };
  /**
   * Size and sha256 of each other file of the folder (weights, config, tokenizer) as written,
   * which a later use of the cached folder checks; absent in folders written before it was kept.
   */
  readonly files?: Readonly<Record<string, CheckpointFileRecord>>;
}

/** Default cache root: the parent of the data cache (`$HYPERPROMPT_CACHE`, else `~/.cache/hyperprompt-bench`). */
export function defaultCacheDir(): string {
  return dirname(defaultDataCacheDir());
}

/** A malformed task file of a data folder the command named: exit 2, without the --help hint. */
class NamedDataError extends Error {}

/**
 * The default corpus: input text (T5 format, no targets) of every train and test split present,
 * except a split the benchmark scores (the diagnostics `ax`, `axb` and `axg` are scored on their
 * test split, see `evalSplits`), in task-name order, duplicates dropped.
 *
 * @param dataDir folder in the official layout
 * @returns one line per example
 * @throws DataError of the first malformed file, its detail saying that the corpus read it: every
 *   run on the tiny presets' task tokenizer or pretrained backbone reads every task's files, so a
 *   run of one benchmark can fail for a file of another
 */
export async function taskCorpus(dataDir: string): Promise<string[]> {
  const lines: string[] = [];
  for (const [name, split] of corpusSplits(dataDir)) {
    let examples;
    try {
      examples = await loadExamples(name, split, dataDir);
    } catch (e) {
      if (!(e instanceof DataError)) throw e;
      throw new DataError(
        e.file,
        e.line,
        `${e.detail} ${corpusReadNote(dataDir)}`,
        e.field,
      );
    }
    for (const ex of examples) lines.push(ex.input.replace(/\s+/g, " ").trim());
  }
  return [...new Set(lines)];
}

/**
 * The token stream a pretraining packs into chunks: the corpus lines in a seeded random order,
 * each tokenized without its EOS, until `wanted` tokens (tokenizing is the slow part of start-up,
 * so it stops at 8× the tokens a run draws). The order is a sample of the whole corpus: in the
 * corpus's own order (by task name) a run would see only the first tasks' text.
 *
 * @param lines the corpus, one example per line
 * @param encode the tokenizer (its last id, EOS, is dropped)
 * @param wanted tokens after which to stop (at the end of a line)
 * @param seed the order's seed
 * @returns the token ids
 */
export function corpusStream(
  lines: readonly string[],
  encode: (line: string) => readonly number[],
  wanted: number,
  seed: number,
): number[] {
  const stream: number[] = [];
  for (const line of new Rng(seed).shuffle([...lines])) {
    const ids = encode(line);
    for (let i = 0; i < ids.length - 1; i++) stream.push(ids[i]!);
    if (stream.length >= wanted) break;
  }
  return stream;
}

/**
 * The `spm_train` character coverage for a corpus: 1.0 (every character a piece, as the small
 * mirror needs nothing else) while its distinct characters take at most a quarter of the pieces;
 * beyond that (a full download: QQP and ReCoRD bring thousands of rare characters) SentencePiece's
 * default 0.9995, which leaves the rarest to `<unk>` — with 1.0, `spm_train` would refuse a
 * vocabulary smaller than the character count, or fill it with characters alone. A function of
 * the corpus and the size, both in the tokenizer's cache key.
 *
 * @param corpusText the corpus
 * @param vocabSize the vocabulary size, sentinels included
 * @returns 1 or 0.9995
 */
export function characterCoverage(corpusText: string, vocabSize: number): number {
  const chars = new Set(corpusText.normalize("NFKC").replace(/\s/g, ""));
  return chars.size <= (vocabSize - 100) / 4 ? 1 : 0.9995;
}

function sha256(data: string): string {
  return createHash("sha256").update(data).digest("hex");
}

function roundUp(n: number, m: number): number {
  return Math.ceil(n / m) * m;
}

/** Pads id rows into an int32 tensor. */
function padRows(rows: number[][], length: number): tf.Tensor2D {
  const data = new Int32Array(rows.length * length);
  rows.forEach((r, i) => data.set(r.slice(0, length), i * length));
  return tf.tensor2d(data, [rows.length, length], "int32");
}

/** Options of {@link ensureTaskTokenizer}. */
export interface TaskTokenizerOptions {
  /** Vocabulary size including the 100 sentinels. */
  readonly vocabSize: number;
  /** Cache root holding `tokenizers/<hash>/tokenizer.json`. */
  readonly cacheDir: string;
  /** Progress lines (default: console.error). */
  readonly log?: (line: string) => void;
  /** The `spm_train` executable (default: from PATH). */
  readonly spmTrain?: string;
}

/** A cached task tokenizer. */
export interface TaskTokenizer {
  /** The `tokenizer.json` file. */
  readonly path: string;
  /** Cache key: hash of the corpus and the vocabulary size. */
  readonly key: string;
  /** Whether it was already in the cache. */
  readonly cached: boolean;
}

/** Raised when a tokenizer must be trained but `spm_train` is not installed. */
export class SpmUnavailableError extends Error {
  /** Create the error; `message` says what needed the tokenizer. */
  constructor(message: string) {
    super(message);
    this.name = "SpmUnavailableError";
  }
}

/**
 * Whether `spm_train` (Debian's sentencepiece package) can be started.
 *
 * @param exe executable name or path
 * @returns true when it runs
 */
export async function hasSpmTrain(exe = "spm_train"): Promise<boolean> {
  try {
    await new Deno.Command(exe, { args: ["--help"], stdout: "null", stderr: "null" }).output();
    return true;
  } catch {
    return false;
  }
}

/**
 * The temporary folders {@link corpusTokenizer} trains in, under `<cacheDir>/tokenizers/`:
 * `.tmp-<pid>-<12 hex>` (held locked while it trains), and the unlocked `.tmp-<random>` of
 * earlier versions (from `Deno.makeTempDir`).
 */
const TOKENIZER_TEMPS: TempPattern = {
  kind: "directory",
  held: new RegExp(String.raw`^\.tmp-${TEMP_TAG_SOURCE}$`),
  legacy: /^\.tmp-[0-9A-Za-z]+$/,
};

/**
 * Trains (or reuses) the SentencePiece tokenizer of a corpus, keyed by its hash and size. Opening
 * the cache removes the temporary folders of trainings that were killed.
 */
async function corpusTokenizer(
  corpusText: string,
  corpusHash: string,
  opts: TaskTokenizerOptions,
): Promise<TaskTokenizer> {
  const log = opts.log ?? ((l: string) => console.error(l));
  const key = sha256(JSON.stringify({ v: 2, corpusHash, vocabSize: opts.vocabSize }))
    .slice(0, 16);
  const tokenizers = join(opts.cacheDir, "tokenizers");
  await removeStaleTemps(tokenizers, TOKENIZER_TEMPS);
  const dir = join(tokenizers, `spm${opts.vocabSize}-${key}`);
  const path = join(dir, "tokenizer.json");
  // The cached file: true when it reads as a tokenizer, false when there is none, else why not (a
  // truncated copy, a hand edit: trained again, said, rather than failing every run that reads it).
  const cached = async (): Promise<boolean | Error> => {
    if (!isFile(path)) return false;
    try {
      T5Tokenizer.fromJson(readTokenizerJson(await Deno.readTextFile(path), path), path);
      return true;
    } catch (e) {
      return e as Error;
    }
  };
  const before = await cached();
  if (before === true) return { path, key, cached: true };
  if (!(await hasSpmTrain(opts.spmTrain))) {
    throw new SpmUnavailableError(
      `spm_train not found: cannot train the ${opts.vocabSize}-piece task tokenizer (install ` +
        "Debian's sentencepiece package: apt-get install -y sentencepiece)" +
        (before instanceof Error ? `; the cached ${path} cannot be used (${before.message})` : ""),
    );
  }
  // Other runs training the same tokenizer (a grid's parallel shards, a pretraining beside a
  // random run) take turns on a lock: the first trains, the others find its folder.
  const lock = join(tokenizers, ".locks", `${basename(dir)}.lock`);
  return await withFileLock(lock, async () => {
    // Looked at again under the lock: another run may have trained it, or found it broken and
    // trained it again, meanwhile (a broken folder is removed only by the lock's holder).
    const found = await cached();
    if (found === true) return { path, key, cached: true };
    if (found instanceof Error) {
      log(`tokenizer: the cached ${path} cannot be used (${found.message}); training it again`);
      await Deno.remove(dir, { recursive: true });
    }
    await Deno.mkdir(tokenizers, { recursive: true });
    const held = await makeHeldTempDir(tokenizers, "");
    const work = held.path;
    try {
      const corpusPath = join(work, "corpus.txt");
      // A full disk names the cache's tokenizer folder, not only the temporary file.
      await Deno.writeTextFile(corpusPath, corpusText).catch((e) => {
        throw fsError(e, tokenizers, `writing the tokenizer's training corpus (${corpusPath})`);
      });
      const lines = corpusText.split("\n").length;
      const coverage = characterCoverage(corpusText, opts.vocabSize);
      log(
        `tokenizer: training a ${opts.vocabSize}-piece vocabulary on ${lines} lines ` +
          `(character coverage ${coverage})`,
      );
      const trained = await trainSentencePiece([corpusPath], {
        vocabSize: opts.vocabSize,
        characterCoverage: coverage,
        outDir: join(work, "tok"),
        ...(opts.spmTrain === undefined ? {} : { spmTrain: opts.spmTrain }),
      });
      const final = join(work, "final");
      await Deno.mkdir(final);
      await Deno.rename(trained, join(final, "tokenizer.json"));
      // spm_train wrote the model without a flush (tokenizer.json's data is on disk: written by
      // writeFileAtomic); both, and then the folder's entries, before the rename below
      // publishes it.
      const model = join(work, "tok", "spiece.model");
      await syncFile(model);
      await Deno.rename(model, join(final, "spiece.model"));
      await syncDir(final);
      try {
        // Atomic publish: a concurrent builder that won the race leaves its folder in place.
        await Deno.rename(final, dir);
        await syncDir(tokenizers); // the new name survives a power cut
      } catch (e) {
        if (!isFile(path)) throw e;
      }
      log(`tokenizer: wrote ${path}`);
      return { path, key, cached: false };
    } finally {
      await Deno.remove(work, { recursive: true }).catch(() => {});
      held.release();
    }
  }, {
    remove: true,
    onWait: () =>
      log(`tokenizer: waiting for another run training the same tokenizer ${dir} (lock ${lock})`),
  });
}

/**
 * The tokenizer of the task corpus (train and test inputs of `dataDir`, see {@link taskCorpus}):
 * a T5-layout SentencePiece-Unigram vocabulary trained with `spm_train` and cached as
 * `<cacheDir>/tokenizers/spm<vocabSize>-<hash>/tokenizer.json`, the hash covering the corpus
 * and the size. {@link pretrainBackbone} uses the same file, so random-init and pretrained runs
 * of a tiny preset share one vocabulary.
 *
 * @param dataDir data folder in the official layout
 * @param opts vocabulary size, cache root, log
 * @returns the tokenizer file, its key and whether it was cached
 * @throws SpmUnavailableError when it is not cached and `spm_train` is missing
 */
export async function ensureTaskTokenizer(
  dataDir: string,
  opts: TaskTokenizerOptions,
): Promise<TaskTokenizer> {
  const lines = await taskCorpus(dataDir);
  if (lines.length === 0) {
    throw new Error(
      `tokenizer: the task corpus is empty: ${emptyCorpus(dataDir, isDefaultDataDir(dataDir))}`,
    );
  }
  const text = lines.join("\n");
  return await corpusTokenizer(text, sha256(text), opts);
}

/**
 * The data folder of the task corpus: the one given (which must exist), else the default, which
 * must exist too when `HYPERPROMPT_DATA` names it.
 */
function corpusDataDir(dataDir: string | undefined): string {
  if (dataDir !== undefined) return resolveDataDir({ dataDir });
  const dir = defaultDataDir();
  if (dataDirFromEnv()) checkDataDir(dir, "HYPERPROMPT_DATA");
  return dir;
}

/**
 * What the default data folder was made of, for an error about it: ` (HYPERPROMPT_DATA)`,
 * else the download cache and the mirror it is chosen from (`tasks/data.ts` defaultDataRoots),
 * or that there is no mirror and how to name one (`tasks/data.ts` noMirrorNote).
 */
function defaultFolders(): string {
  if (dataDirFromEnv()) return " (HYPERPROMPT_DATA)";
  const { cache, noCache, mirror } = defaultDataRoots();
  return ` (the default data folder: per file the download cache ${
    cache ?? `(none: ${noCache})`
  } where its manifest lists it, ${
    isDirectorySync(mirror) ? `else the mirror ${mirror}` : noMirrorNote(mirror)
  })`;
}

/**
 * Why a task corpus read from `dataDir` is empty and what to do, for both empty-corpus errors:
 * the folder, what it was made of when it is the default data folder ({@link defaultFolders}),
 * and the remedy.
 */
function emptyCorpus(dataDir: string, isDefault: boolean): string {
  return `no train or test split of any task in ${dataDir}${isDefault ? defaultFolders() : ""}` +
    "; run `deno task download`, or pass --data-dir (a folder in the official layout: " +
    "glue/<Task>/…, super_glue/<Task>/…)";
}

/**
 * Whether `dataDir` is the default data folder: the one `HYPERPROMPT_DATA` names, else the
 * download cache or the mirror (`tasks/data.ts` defaultDataDir picks one of them whole when no
 * file of the other counts, as for an empty corpus; a folder of links has files).
 */
function isDefaultDataDir(dataDir: string): boolean {
  const dir = resolve(dataDir);
  if (dataDirFromEnv()) return dir === resolve(Deno.env.get("HYPERPROMPT_DATA")!);
  const { cache, mirror } = defaultDataRoots();
  return dir === cache || dir === mirror;
}

/** Whether `HYPERPROMPT_DATA` names the default data folder (set and not empty). */
function dataDirFromEnv(): boolean {
  return (Deno.env.get("HYPERPROMPT_DATA") ?? "") !== "";
}

/**
 * The record of a finished backbone folder, or undefined when it has none (no folder there).
 *
 * @throws Error naming the file when `pretrain.json` is not valid JSON
 */
async function cachedInfo(dir: string): Promise<PretrainInfo | undefined> {
  const text = await recordText(dir);
  return text === undefined
    ? undefined
    : parseJsonFile(text, join(dir, "pretrain.json")) as PretrainInfo;
}

/** The text of a backbone folder's `pretrain.json`, or undefined when it has none. */
async function recordText(dir: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(join(dir, "pretrain.json"));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e; // e.g. a file where the folder should be: before any training, as ever
  }
}

/**
 * Whether a chunk of `chunkLength` tokens has more noise spans than `sentinels` (one sentinel a
 * span): its span count and the longest chunk that fits, else undefined.
 */
function chunkOverflow(
  chunkLength: number,
  sentinels: number,
): { spans: number; fits: number } | undefined {
  const spans = (n: number) => noiseCounts(n, T5_SPAN_CORRUPTION).noiseSpans;
  if (spans(chunkLength) <= sentinels) return undefined;
  let fits = chunkLength - 1;
  while (fits > 1 && spans(fits) > sentinels) fits--;
  return { spans: spans(chunkLength), fits };
}

/**
 * A cached backbone folder as a run would use it: its record, when the folder is finished and
 * whole, else what is wrong with it (undefined: no finished folder there). Whole: `pretrain.json`
 * is valid JSON holding a record of this folder (its key the folder's), the folder has its
 * `config.json`, `tokenizer.json` and weights, and every file the record lists has the size and
 * sha256 it was written with (a folder written before they were recorded: present).
 */
async function cachedBackbone(
  dir: string,
): Promise<{ info: PretrainInfo } | { problem: string } | undefined> {
  const text = await recordText(dir);
  if (text === undefined) return undefined;
  let record: unknown;
  try {
    record = parseJsonFile(text, join(dir, "pretrain.json"));
  } catch (e) {
    return { problem: (e as Error).message };
  }
  const info = record as PretrainInfo;
  if (
    typeof record !== "object" || record === null || Array.isArray(record) ||
    typeof info.key !== "string" || !Array.isArray(info.losses) || typeof info.steps !== "number"
  ) {
    return { problem: `${join(dir, "pretrain.json")}: not a pretraining record` };
  }
  if (basename(dir) !== `${info.preset}-${info.key}`) {
    return {
      problem: `${join(dir, "pretrain.json")}: the record of ${info.preset}-${info.key}, not of ` +
        `this folder`,
    };
  }
  // Each of these, one of its names (the weights unsharded or by their index).
  const needed = [["config.json"], ["tokenizer.json"], [
    "model.safetensors",
    "model.safetensors.index.json",
  ]];
  for (const names of needed) {
    if (!names.some((n) => isFile(join(dir, n)))) {
      return { problem: `${join(dir, names[0]!)} is missing` };
    }
  }
  for (const [name, want] of Object.entries(info.files ?? {})) {
    const path = join(dir, name);
    const got = await fileDigest(path).catch(() => undefined);
    if (got === undefined) return { problem: `${path} is missing` };
    if (got.bytes !== want.bytes || got.sha256 !== want.sha256) {
      return {
        problem: `${path} is not the file it was written as (${got.bytes} bytes, sha256 ` +
          `${got.sha256.slice(0, 12)}…; written ${want.bytes} bytes, ${want.sha256.slice(0, 12)}…)`,
      };
    }
  }
  return { info };
}

/** Size and sha256 of every file of a folder but `pretrain.json`, by name, in name order. */
async function folderDigests(dir: string): Promise<Record<string, CheckpointFileRecord>> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && e.name !== "pretrain.json") names.push(e.name);
  }
  names.sort();
  const out: Record<string, CheckpointFileRecord> = {};
  for (const n of names) out[n] = await fileDigest(join(dir, n));
  return out;
}

/**
 * Puts the backbone folder that `save` writes in place as `dir` unless a finished one is there
 * already. Pretrainings of one folder take turns ({@link withBackboneLock}), so normally the
 * second finds the first one's folder and trains nothing; this is the fallback where the lock
 * excludes no one (a file system without working `flock`, a process of older code). Two
 * processes that then both pretrain: the first to finish publishes and goes on to load the
 * folder. The second must not swap its own in (the same settings, so the same weights): a swap
 * moves the first one's folder aside and deletes it under its reader. So the folder is built in
 * a held temporary beside `dir` (`.<name>.tmp-<tag>`, which `removeStaleSaveTemps` sweeps once
 * its builder has ended) and renamed in, which fails where `dir` exists. A `dir` without
 * `pretrain.json` (not a finished backbone) is replaced by `save(dir)`, as before.
 *
 * @returns undefined when this folder was published, else the record of the one found in place
 */
async function publishIfAbsent(
  dir: string,
  save: (folder: string) => Promise<void>,
): Promise<PretrainInfo | undefined> {
  const parent = dirname(dir);
  await Deno.mkdir(parent, { recursive: true });
  const held = await makeHeldTempDir(parent, `.${basename(dir)}`);
  try {
    const built = join(held.path, "backbone");
    await save(built);
    try {
      await Deno.rename(built, dir);
    } catch (e) {
      const found = await cachedInfo(dir);
      if (found !== undefined) return found;
      if (!(await isDirectory(dir))) throw e;
      await save(dir);
      return undefined;
    }
    await syncDir(parent); // the new name survives a power cut
    return undefined;
  } finally {
    await Deno.remove(held.path, { recursive: true }).catch(() => {});
    held.release();
  }
}

/** How long a pretraining waits for its backbone's lock before it says what it waits for. */
const LOCK_NOTE_MS = 250;

/** Who holds a backbone's lock: `.locks/<folder>.holder.json`, written by the holder. */
interface BackboneLockHolder {
  readonly host: string;
  readonly pid: number;
  /** When it took the lock (ISO 8601). */
  readonly since: string;
}

/** The holder recorded in `file`, or undefined when there is none (or it cannot be read). */
function readLockHolder(file: string): BackboneLockHolder | undefined {
  try {
    const v = JSON.parse(Deno.readTextFileSync(file)) as Partial<BackboneLockHolder>;
    return typeof v.host === "string" && typeof v.pid === "number" && typeof v.since === "string"
      ? v as BackboneLockHolder
      : undefined;
  } catch {
    return undefined; // none, or half written: the note then names no holder
  }
}

/**
 * Runs `fn` (look the backbone `dir` up again, else pretrain and publish it) holding the lock
 * `<backbones>/.locks/<folder>.lock` (`model/fs.ts` `withFileLock`, removed by its holder after
 * use): pretrainings of the same folder, in other processes or in this one, take turns, so only
 * the first trains and the others find its folder. The kernel drops the lock when its holder
 * ends, however it ends (Ctrl-C, a kill): a lock file left behind is taken over by the next
 * process, never waited on. The holder records its host, pid and start in
 * `<folder>.holder.json` beside the lock (the lock file itself must stay empty), and removes it
 * when done; a process still waiting after {@link LOCK_NOTE_MS} says once what it waits for.
 */
async function withBackboneLock<T>(
  dir: string,
  log: (line: string) => void,
  fn: () => Promise<T>,
): Promise<T> {
  const locks = join(dirname(dir), ".locks");
  const lock = join(locks, `${basename(dir)}.lock`);
  const holderFile = join(locks, `${basename(dir)}.holder.json`);
  let holding = false;
  const note = setTimeout(() => {
    if (holding) return;
    const h = readLockHolder(holderFile);
    const who = h === undefined
      ? "another run"
      : `another run (pid ${h.pid} on ${h.host}, since ${h.since})`;
    log(
      `pretrain: waiting for ${who} pretraining the same backbone ${dir} to finish (lock ${lock}); ` +
        "then this run uses it (or trains it, should that run publish none)",
    );
  }, LOCK_NOTE_MS);
  try {
    return await withFileLock(lock, async () => {
      holding = true;
      clearTimeout(note);
      const holder: BackboneLockHolder = {
        host: thisHost(),
        pid: Deno.pid,
        since: new Date().toISOString(),
      };
      // Only a note for waiters: a failed write costs the pid in their line, not the run.
      await Deno.writeTextFile(holderFile, JSON.stringify(holder)).catch(() => {});
      try {
        return await fn();
      } finally {
        await Deno.remove(holderFile).catch(() => {});
      }
    }, { remove: true });
  } finally {
    clearTimeout(note);
  }
}

/**
 * The backend `auto` resolves to in this process (`selectBackend`, with HYPERPROMPT_BACKEND
 * and what is installed), the backend the caller had selected selected again after.
 */
async function resolvedAutoBackend(): Promise<string> {
  const previous = currentBackendInfo()?.requested as BackendName | undefined;
  const info = await selectBackend("auto", { log: () => {} });
  if (previous !== undefined && previous !== "auto") {
    await selectBackend(previous, { log: () => {} });
  }
  return info.name;
}

/**
 * Builds (or reuses from the cache) a span-corruption-pretrained backbone.
 *
 * @param opts settings (see {@link PretrainOptions})
 * @returns the folder (a Hugging Face T5 folder with `tokenizer.json`) and whether it was cached
 */
export async function pretrainBackbone(
  opts: PretrainOptions,
): Promise<{ dir: string; cached: boolean; info: PretrainInfo }> {
  const log = opts.log ?? ((l: string) => console.error(l));
  const base = preset(opts.preset);
  const dataDir = opts.corpusFiles ? undefined : corpusDataDir(opts.dataDir);
  const corpusLines = dataDir === undefined
    ? (await Promise.all(opts.corpusFiles!.map((f) => Deno.readTextFile(f))))
      .flatMap((t) => t.split("\n")).map((l) => l.trim()).filter((l) => l !== "")
    : await taskCorpus(dataDir);
  if (corpusLines.length === 0) {
    // The folder read, as resolved: a --data-dir is refused before this by `deno task pretrain`.
    throw new Error(
      dataDir === undefined
        ? `pretrain: the corpus is empty: no non-blank line in ${opts.corpusFiles!.join(", ")}`
        : `pretrain: the task corpus is empty: ${
          emptyCorpus(dataDir, opts.dataDir === undefined)
        } or --corpus`,
    );
  }
  const corpusText = corpusLines.join("\n");
  const corpusHash = sha256(corpusText);
  // Resolve the tokenizer first: its exact content is part of the cache key, so a backbone built
  // with the reference tokenizer (no spm_train) is never reused with another vocabulary.
  let tokenizerFile = opts.tokenizer;
  let tokenizerLabel = opts.tokenizer ?? `spm_train unigram ${opts.vocabSize}`;
  if (tokenizerFile === undefined) {
    try {
      tokenizerFile = (await corpusTokenizer(corpusText, corpusHash, {
        vocabSize: opts.vocabSize,
        cacheDir: opts.cacheDir,
        log,
        ...(opts.spmTrain === undefined ? {} : { spmTrain: opts.spmTrain }),
      })).path;
    } catch (e) {
      const reference = referenceTokenizer();
      if (!(e instanceof SpmUnavailableError) || !isFile(reference)) throw e;
      log(`pretrain: ${e.message}; using the reference tokenizer ${reference}`);
      tokenizerFile = reference;
      tokenizerLabel = `reference ${reference}`;
    }
  }
  // Span corruption needs T5's sentinels; a tokenizer without them gets them appended.
  const tokenizerJson = readTokenizerJson(await Deno.readTextFile(tokenizerFile), tokenizerFile);
  const tokenizerText = JSON.stringify(tokenizerJson);
  // The backend the weights are computed on: "auto" as it resolves here (its kernels round
  // otherwise: a cache shared by a GPU and a CPU machine, or HYPERPROMPT_BACKEND, would give one
  // key two backbones), selected for a moment and the caller's selected again.
  // HYPERPROMPT_BACKEND stands in for "auto" as the request it names: "wasm" there is the pure
  // wasm of an explicit "wasm" (the same weights on every host), not selectBackend's wasm+blas.
  const requested = opts.backend === undefined || opts.backend === "auto"
    ? backendFromEnv() ?? opts.backend
    : opts.backend;
  const auto = requested === undefined || requested === "auto";
  const backendKey = auto ? await resolvedAutoBackend() : requested;
  const key = (sha256(JSON.stringify({
    v: PRETRAIN_CODE_VERSION,
    base,
    corpusHash,
    tokenizer: sha256(tokenizerText),
    steps: opts.steps,
    batchSize: opts.batchSize,
    chunkLength: opts.chunkLength,
    learningRate: opts.learningRate,
    seed: opts.seed,
    objective: T5_SPAN_CORRUPTION,
    backend: backendKey,
    // "wasm" is pure wasm (see below); a folder built before that used OpenBLAS where installed.
    ...(requested === "wasm" ? { blas: false } : {}),
  }))).slice(0, 16);
  const backbones = join(opts.cacheDir, "backbones");
  // Saves killed part-way leave temporaries (or the previous folder moved aside) here.
  await removeStaleSaveTemps(backbones);
  const dir = join(backbones, `${opts.preset}-${key}`);
  const found = await cachedBackbone(dir);
  if (found !== undefined && "info" in found) {
    log(`pretrain: using cached backbone ${dir}`);
    return { dir, cached: true, info: found.info };
  }
  // Missed (or a broken folder): take turns with other pretrainings of this folder (two bench
  // processes on a cold cache), so that the second waits and uses the first one's backbone
  // instead of training too.
  return await withBackboneLock(dir, log, async () => {
    const built = await cachedBackbone(dir);
    if (built !== undefined && "info" in built) {
      log(`pretrain: using cached backbone ${dir} (built by another run while this one waited)`);
      return { dir, cached: true, info: built.info };
    }
    if (built !== undefined) {
      // A killed copy, a full disk, a hand edit: no run could load it. Rebuilt under the lock.
      log(`pretrain: the cached backbone ${dir} is broken (${built.problem}); building it again`);
      await Deno.remove(dir, { recursive: true });
    }
    return await build();
  });

  /** Pretrains the backbone and publishes it as `dir` (under the lock). */
  async function build(): Promise<{ dir: string; cached: boolean; info: PretrainInfo }> {
    // Released in the `finally` below, also when the pretraining fails (a bench grid goes on in
    // this process): the weights, the optimizer's slots, and the backend the caller had selected.
    let heldModel: T5Model | undefined;
    let heldOptimizer: Optimizer | undefined;
    let restoreBackend: BackendName | undefined;
    try {
      const tokenizerPath = tokenizerFile;
      const tokenizer = T5Tokenizer.fromJson(tokenizerJson, tokenizerFile);
      // The sentinels' ids, <extra_id_0> first, looked up once.
      const sentinelIds: number[] = [];
      for (;;) {
        const id = tokenizer.tokenToId(`<extra_id_${sentinelIds.length}>`);
        if (id === undefined) break;
        sentinelIds.push(id);
      }
      if (sentinelIds.length === 0) {
        throw new Error(`${tokenizerPath}: no <extra_id_0> sentinel; span corruption needs them`);
      }
      const sentinel = (i: number): number => {
        const id = sentinelIds[i];
        if (id === undefined) throw new Error(`${tokenizerPath}: missing sentinel <extra_id_${i}>`);
        return id;
      };
      // Each noise span takes one sentinel, and a full chunk has the most spans: refuse a chunk
      // length that would run out of them before the corpus is tokenized.
      const sentinels = sentinelIds.length;
      const over = chunkOverflow(opts.chunkLength, sentinels);
      if (over !== undefined) {
        throw new Error(
          `pretrain: a chunk of ${opts.chunkLength} tokens has ${over.spans} noise ` +
            `spans but ${tokenizerPath} has ${sentinels} sentinels (<extra_id_0> … ` +
            `<extra_id_${sentinels - 1}>); lower --chunk-length to ${over.fits} or less`,
        );
      }
      const config: T5Config = {
        ...base,
        vocabSize: roundUp(tokenizer.vocabSize, 128),
        dropoutRate: 0,
      };

      // Pack the tokenized corpus into fixed-length chunks (without EOS), as T5 does.
      const stream = corpusStream(
        corpusLines,
        (line) => tokenizer.encode(line),
        8 * opts.steps * opts.batchSize * opts.chunkLength,
        seedFor(opts.seed, "pretrain/corpus-order"),
      );
      const chunks: number[][] = [];
      for (let i = 0; i + opts.chunkLength <= stream.length; i += opts.chunkLength) {
        chunks.push(stream.slice(i, i + opts.chunkLength));
      }
      if (chunks.length < opts.batchSize) {
        throw new Error(
          `pretrain: the corpus gives ${chunks.length} chunks of ${opts.chunkLength} tokens, ` +
            `fewer than one batch (${opts.batchSize}); add text or lower --chunk-length`,
        );
      }
      log(`pretrain: ${stream.length} tokens in ${chunks.length} chunks; ${opts.steps} steps`);

      const previous = currentBackendInfo()?.requested as BackendName | undefined;
      // "wasm" is the pure wasm engine here, never OpenBLAS (which selectBackend's "wasm" takes when
      // installed): its kernels have no CPU-specific paths, so the weights are the same on every
      // host (the ci profile's backbone); OpenBLAS picks its kernels by CPU family.
      const pureWasm = requested === "wasm";
      const backend = await selectBackend(requested ?? "auto", {
        log: () => {},
        ...(pureWasm ? { blas: false } : {}),
      });
      // Give the caller (a fine-tuning run) back the backend it had selected (its BLAS too).
      if (previous !== undefined && (previous !== backend.requested || pureWasm)) {
        restoreBackend = previous;
      }
      const model: T5Model = initT5(config, { seed: seedFor(opts.seed, "pretrain/init") });
      heldModel = model;
      // HF's init gives an untied lm_head std 1, so logits start with std ≈ √d and the first loss
      // is ~5× ln(vocab). From scratch, scale it by d^-½ (the tied layout's output scaling) so
      // training starts near ln(vocab).
      const head = model.params.get("lm_head.weight");
      // assign() shares the new value's data, so the value itself is disposed with the tidy.
      if (head) tf.tidy(() => head.assign(tf.mul(head, config.dModel ** -0.5)));
      log(`pretrain: backend ${backend.name}${backend.adapter ? ` (${backend.adapter})` : ""}`);
      const optimizer = createOptimizer({ kind: "adamw", weightDecay: 0 });
      heldOptimizer = optimizer;
      const rng = new Rng(seedFor(opts.seed, "pretrain/data"));
      const losses: { step: number; loss: number }[] = [];
      const inLen = opts.chunkLength + 2;
      const tgtLen = Math.ceil(opts.chunkLength * 0.15) * 2 + 4;
      const t0 = performance.now();
      const warmup = Math.max(1, Math.floor(opts.steps * 0.05));
      const params = model.params as ReadonlyMap<string, tf.Variable>;
      // tf.variableGrads keys gradients by the tfjs variable name; map them back to HF names.
      const hfName = new Map([...params].map(([name, v]) => [v.name, name]));
      // Timers between steps, once a second: the pretraining runs inside a run's claim, whose
      // heartbeat must go on (trainer.ts yielder).
      const due = yielder(YIELD_EVERY_MS, opts.now);
      for (let step = 1; step <= opts.steps; step++) {
        await due();
        const inputs: number[][] = [];
        const targets: number[][] = [];
        for (let b = 0; b < opts.batchSize; b++) {
          const chunk = chunks[rng.nextInt(chunks.length)]!;
          const ex = spanCorrupt(chunk, () => rng.next(), sentinel);
          inputs.push([...ex.inputs, config.eosTokenId]);
          targets.push([...ex.targets, config.eosTokenId]);
        }
        const lr = opts.learningRate * Math.min(1, step / warmup);
        const loss = tf.tidy(() => {
          const inputIds = padRows(inputs, inLen);
          const attentionMask = tf.cast(tf.notEqual(inputIds, 0), "float32") as tf.Tensor2D;
          const labelsRaw = padRows(targets, tgtLen);
          const labels = tf.where(
            tf.notEqual(labelsRaw, 0),
            labelsRaw,
            tf.fill(labelsRaw.shape, -100, "int32"),
          ) as tf.Tensor2D;
          const decoderInputIds = tf.concat([
            tf.fill([opts.batchSize, 1], config.decoderStartTokenId, "int32"),
            labelsRaw.slice([0, 0], [opts.batchSize, tgtLen - 1]),
          ], 1) as tf.Tensor2D;
          const { value, grads } = tf.variableGrads(() => {
            const { logits } = forward(model, { inputIds, attentionMask, decoderInputIds }, {
              training: true,
            });
            return crossEntropyLoss(logits, labels);
          });
          const named = new Map(Object.entries(grads).map(([k, g]) => [hfName.get(k) ?? k, g]));
          optimizer.apply(params, named, lr);
          return value;
        });
        const v = (await loss.data())[0]!;
        loss.dispose();
        if (!Number.isFinite(v)) {
          throw new Error(`pretrain: non-finite loss ${v} at step ${step}; lower --lr`);
        }
        if (step === 1 || step % 20 === 0 || step === opts.steps) {
          losses.push({ step, loss: v });
          const sec = (performance.now() - t0) / 1000;
          log(`pretrain: step ${step}/${opts.steps} loss ${v.toFixed(4)} (${sec.toFixed(1)} s)`);
        }
      }
      const git = codeGitState();
      const info: PretrainInfo = {
        key,
        preset: opts.preset,
        corpus: {
          files: opts.corpusFiles ?? [`tasks:${corpusDataDir(opts.dataDir)}`],
          sha256: corpusHash,
          lines: corpusLines.length,
        },
        tokenizer: tokenizerLabel,
        steps: opts.steps,
        batchSize: opts.batchSize,
        chunkLength: opts.chunkLength,
        learningRate: opts.learningRate,
        seed: opts.seed,
        losses,
        wallSeconds: (performance.now() - t0) / 1000,
        backend: backend.name,
        requestedBackend: backend.requested,
        ...(backend.adapter === undefined ? {} : { adapter: backend.adapter }),
        code: { gitSha: git.sha, gitDirty: git.dirty },
      };
      const tensors = t5StateDict(model);
      let written = info;
      const published = await publishIfAbsent(
        dir,
        async (folder) => {
          await saveHfFolder(folder, config, tensors, {
            extraFiles: { "tokenizer.json": tokenizerText },
          });
          // Last, with the digests of what was written: a folder with it is finished.
          written = { ...info, files: await folderDigests(folder) };
          await writeFileAtomic(join(folder, "pretrain.json"), JSON.stringify(written, null, 2));
        },
      );
      if (published !== undefined) {
        log(
          `pretrain: ${dir} was published meanwhile by another run of the same settings; using it`,
        );
        return { dir, cached: true, info: published };
      }
      log(`pretrain: wrote ${dir}`);
      return { dir, cached: false, info: written };
    } finally {
      heldOptimizer?.dispose();
      if (heldModel !== undefined) disposeT5(heldModel);
      if (restoreBackend !== undefined) await selectBackend(restoreBackend, { log: () => {} });
    }
  }
}

/**
 * The pretrained backbone a profile asks for (`backbone: "pretrained"`), built on first use.
 *
 * @param presetName model preset
 * @param dataDir data folder whose train/test text is the corpus
 * @param opts overrides (cache folder, steps, log)
 * @returns the backbone folder
 */
export async function ensurePretrainedBackbone(
  presetName: string,
  dataDir: string,
  opts: Partial<Omit<PretrainOptions, "preset" | "dataDir">> = {},
): Promise<string> {
  const { dir } = await pretrainBackbone({
    ...PRETRAIN_DEFAULTS,
    cacheDir: defaultCacheDir(),
    ...opts,
    preset: presetName,
    dataDir,
  });
  return dir;
}

/** The smallest `--vocab-size`: 100 sentinels and 16 pieces (`model/spm.ts`). */
const MIN_VOCAB_SIZE = 116;

const HELP = `deno task pretrain [options]

Pretrains a tiny T5 on span corruption and caches it as a Hugging Face folder.

  --preset NAME        model preset (default ${PRETRAIN_DEFAULTS.preset})
  --data-dir DIR       data folder in the official layout (default: $HYPERPROMPT_DATA, else per
                       file the download cache where its manifest lists it, else
                       ../shared/data, $HYPERPROMPT_SHARED/data when set)
  --corpus FILE        text file(s), one document per line (repeatable); replaces the task corpus
  --tokenizer FILE     existing tokenizer.json with sentinels (default: train one with spm_train)
  --vocab-size N       size of a trained vocabulary incl. 100 sentinels
                       (>= ${MIN_VOCAB_SIZE}; default ${PRETRAIN_DEFAULTS.vocabSize})
  --steps N            optimizer steps (default ${PRETRAIN_DEFAULTS.steps})
  --batch-size N       sequences per step (default ${PRETRAIN_DEFAULTS.batchSize})
  --chunk-length N     tokens per packed chunk (default ${PRETRAIN_DEFAULTS.chunkLength})
  --lr X               AdamW learning rate (default ${PRETRAIN_DEFAULTS.learningRate})
  --seed N             root seed (default ${PRETRAIN_DEFAULTS.seed})
  --backend X          ${BACKEND_NAMES.join(", ")}
                       (default auto, which $HYPERPROMPT_BACKEND replaces when set; cpu is
                       pure JS and wasm is pure wasm, never OpenBLAS: the same weights on
                       every host)
  --cache-dir DIR      cache root (default $HYPERPROMPT_CACHE, else
                       $XDG_CACHE_HOME/hyperprompt-bench, else ~/.cache/hyperprompt-bench)
  --help               this text

Prints the backbone's folder and its first and last loss. A backbone of the same corpus and
settings already in the cache is reused, not trained again.

Exit codes: 0 written (or found in the cache), 1 the pretraining failed, 2 bad arguments (nothing
run; a malformed task file of the folder --data-dir or HYPERPROMPT_DATA names too).`;

function intArg(v: string | undefined, name: string, fallback: number, min = 1): number {
  if (v === undefined) return fallback;
  const n = decimalNumber(v);
  if (!Number.isInteger(n) || n < min) {
    throw new UsageError(
      min === 1
        ? `--${name} must be a positive integer, got "${v}"`
        : `--${name} must be an integer >= ${min}, got "${v}"`,
    );
  }
  return n;
}

function seedArg(v: string): number {
  const n = decimalNumber(v);
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new UsageError(`--seed must be an integer >= 0, got "${v}"`);
  }
  return n;
}

/** Throws unless `path`, named by `flag`, is a readable file. */
function fileArg(flag: string, path: string): void {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch (e) {
    throw new UsageError(
      e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory
        ? `${flag} ${path}: no such file`
        : `${flag} ${path}: ${(e as Error).message}`,
    );
  }
  if (!info.isFile) throw new UsageError(`${flag} ${path}: is a folder, not a file`);
}

/**
 * Throws a {@link UsageError} starting `--tokenizer` unless `path` reads as a tokenizer that
 * {@link pretrainBackbone} can use (JSON, a Unigram model, sentinels appended where missing, and
 * a T5 tokenizer built from it): the file named on the command line, refused before any work.
 */
async function checkTokenizerFile(path: string): Promise<void> {
  try {
    T5Tokenizer.fromJson(readTokenizerJson(await Deno.readTextFile(path), path), path);
  } catch (e) {
    if (e instanceof UsageError) throw e;
    const message = e instanceof Error ? e.message : String(e);
    // The messages name the file first (`<path>:<line>:<column>: …`, `<path>: field …`).
    throw new UsageError(
      `--tokenizer ${message.startsWith(path) ? message : `${path}: ${message}`}`,
      { cause: e },
    );
  }
}

/**
 * Throws a {@link UsageError} starting `--corpus` when the files named by `--corpus` hold no
 * non-blank line between them: the corpus {@link pretrainBackbone} would read is empty.
 */
async function checkCorpusFiles(paths: readonly string[]): Promise<void> {
  for (const p of paths) {
    if ((await Deno.readTextFile(p)).trim() !== "") return;
  }
  throw new UsageError(
    `--corpus ${paths.join(", ")}: no non-blank line in ${
      paths.length === 1 ? "the file" : "any of the files"
    }, so the corpus would be empty`,
  );
}

/**
 * A `tokenizer.json`'s text parsed, checked to be an object, with T5's sentinels appended where
 * it has none (span corruption needs them).
 *
 * @throws Error naming `path` (and the line for invalid JSON)
 */
function readTokenizerJson(text: string, path: string): Record<string, unknown> {
  const json = parseJsonFile(text, path);
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new Error(
      `${path}: must be a tokenizer.json object, got ${
        Array.isArray(json) ? "an array" : JSON.stringify(json)
      }`,
    );
  }
  return withSentinels(json as Record<string, unknown>, path);
}

/** Options of {@link main} (tests capture the output and replace the pretraining). */
export interface PretrainMainOptions {
  readonly log?: (s: string) => void;
  readonly error?: (s: string) => void;
  /** The pretraining (default {@link pretrainBackbone}). */
  readonly pretrain?: typeof pretrainBackbone;
  /**
   * Why a new file cannot be created in a folder, or undefined (`model/fs.ts`
   * `checkOutputFolder`'s `cannotWrite`; default: a probe file). Tests inject a read-only disk.
   */
  readonly cannotWrite?: (dir: string) => string | undefined;
}

/**
 * `deno task pretrain`: every argument is checked (numbers, `--backend`, the files and
 * folders named) before the corpus is read, and an error is one line naming the flag, never a
 * stack trace.
 *
 * @param args command-line arguments (see the help text)
 * @param opts output sinks and the pretraining
 * @returns the exit code: 0 written (or cached) or `--help`, 1 the pretraining failed, 2 bad
 *   arguments
 */
export async function main(args: string[], opts: PretrainMainOptions = {}): Promise<number> {
  const log = opts.log ?? ((s: string) => console.log(s));
  const error = opts.error ?? ((s: string) => console.error(s));
  try {
    // As runCli (model/usage.ts) does for the other tools: --help anywhere prints the usage.
    if (args.includes("--help") || args.includes("-h")) {
      log(wrapHelp(HELP));
      return 0;
    }
    const values = parseFlags(args, {
      tool: "deno task pretrain",
      options: {
        preset: { type: "string" },
        "data-dir": { type: "string" },
        corpus: { type: "string", multiple: true },
        tokenizer: { type: "string" },
        "vocab-size": { type: "string" },
        steps: { type: "string" },
        "batch-size": { type: "string" },
        "chunk-length": { type: "string" },
        lr: { type: "string" },
        seed: { type: "string" },
        backend: { type: "string" },
        "cache-dir": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      takes: {
        preset: "a model preset, e.g. tiny-v1_1",
        "data-dir": "a folder",
        corpus: "a text file",
        tokenizer: "a tokenizer.json file",
        "vocab-size": `an integer >= ${MIN_VOCAB_SIZE}`,
        steps: "a positive integer",
        "batch-size": "a positive integer",
        "chunk-length": "a positive integer",
        lr: "a positive number, e.g. 1e-3",
        seed: "an integer >= 0",
        backend: BACKEND_NAMES.join("|"),
        "cache-dir": "a folder",
      },
      paths: { "data-dir": true, corpus: true, tokenizer: true, "cache-dir": true },
    });
    // Pairs where one flag would be dropped without a word: refused, naming what each one does.
    if (values.tokenizer !== undefined && values["vocab-size"] !== undefined) {
      throw new UsageError(
        `--tokenizer ${values.tokenizer} and --vocab-size ${values["vocab-size"]} contradict: ` +
          "--vocab-size sizes a vocabulary trained here with spm_train, --tokenizer uses an " +
          "existing one as it is; drop one",
      );
    }
    if (values.corpus !== undefined && values["data-dir"] !== undefined) {
      throw new UsageError(
        `--corpus and --data-dir ${values["data-dir"]} contradict: --data-dir is read only for ` +
          "the task corpus, which --corpus replaces; drop one",
      );
    }
    const lr = values.lr === undefined ? PRETRAIN_DEFAULTS.learningRate : decimalNumber(values.lr);
    if (!(lr > 0) || !Number.isFinite(lr)) {
      throw new UsageError(`--lr must be a positive number, got "${values.lr}"`);
    }
    const backend = values.backend;
    if (backend !== undefined && !(BACKEND_NAMES as readonly string[]).includes(backend)) {
      throw new UsageError(
        `--backend must be one of ${BACKEND_NAMES.join(", ")}, got "${backend}"${
          backendHint(backend)
        }`,
      );
    }
    backendFromEnv(); // the variable stands in for --backend auto: a bad value stops here too
    const presetName = values.preset ?? PRETRAIN_DEFAULTS.preset;
    usageChecked(() => preset(presetName)); // an unknown preset stops here, naming the known ones
    const dataDir = values["data-dir"];
    if (dataDir) usageChecked(() => resolveDataDir({ dataDir })); // a named folder must exist
    else if (values.corpus === undefined && dataDirFromEnv()) {
      // The task corpus is read from the folder HYPERPROMPT_DATA names: it must exist too.
      usageChecked(() => checkDataDir(defaultDataDir(), "HYPERPROMPT_DATA"));
    }
    if (values.corpus === undefined && (dataDir || dataDirFromEnv())) {
      // A named folder without any split of the task corpus is as unusable as a missing one.
      const dir = dataDir || defaultDataDir();
      if (corpusSplits(dir).length === 0) {
        throw new UsageError(
          `${dataDir ? `--data-dir ${dir}` : `HYPERPROMPT_DATA=${dir}`}: no train or test ` +
            "split of any task there, so the task corpus would be empty; put the files there in " +
            "the official layout (glue/<Task>/…, super_glue/<Task>/…), or pass --corpus",
        );
      }
    }
    for (const f of values.corpus ?? []) fileArg("--corpus", f);
    if (values.corpus !== undefined) await checkCorpusFiles(values.corpus);
    if (values.tokenizer !== undefined) {
      fileArg("--tokenizer", values.tokenizer);
      await checkTokenizerFile(values.tokenizer);
    }
    const cacheDir = values["cache-dir"] ?? usageChecked(defaultCacheDir);
    // A cache folder that does not exist yet must be creatable (h388: a bare "Permission denied"
    // from a lock file's folder); an existing one may be read-only if it holds the backbone.
    checkOutputFolder(
      values["cache-dir"] === undefined ? "the cache folder" : "--cache-dir",
      cacheDir,
      {
        writable: !existsSync(cacheDir),
        ...(opts.cannotWrite === undefined ? {} : { cannotWrite: opts.cannotWrite }),
      },
    );
    const settings: PretrainOptions = {
      preset: presetName,
      ...(values["data-dir"] ? { dataDir: values["data-dir"] } : {}),
      ...(values.corpus ? { corpusFiles: values.corpus } : {}),
      ...(values.tokenizer ? { tokenizer: values.tokenizer } : {}),
      vocabSize: intArg(
        values["vocab-size"],
        "vocab-size",
        PRETRAIN_DEFAULTS.vocabSize,
        MIN_VOCAB_SIZE,
      ),
      steps: intArg(values.steps, "steps", PRETRAIN_DEFAULTS.steps),
      batchSize: intArg(values["batch-size"], "batch-size", PRETRAIN_DEFAULTS.batchSize),
      chunkLength: intArg(values["chunk-length"], "chunk-length", PRETRAIN_DEFAULTS.chunkLength),
      learningRate: lr,
      seed: values.seed === undefined ? PRETRAIN_DEFAULTS.seed : seedArg(values.seed),
      ...(backend === undefined ? {} : { backend: backend as BackendName }),
      cacheDir,
    };
    // The trained and the reference tokenizer have T5's 100 sentinels, one per noise span: a
    // chunk with more spans is refused with the other argument errors (a given --tokenizer's
    // count is known once it is read).
    const over = settings.tokenizer === undefined
      ? chunkOverflow(settings.chunkLength, NUM_SENTINELS)
      : undefined;
    if (over !== undefined) {
      throw new UsageError(
        `--chunk-length ${settings.chunkLength} gives ${over.spans} noise spans, more than ` +
          `the task tokenizer's ${NUM_SENTINELS} sentinels: use ${over.fits} or less`,
      );
    }
    let made;
    try {
      made = await (opts.pretrain ?? pretrainBackbone)(settings);
    } catch (e) {
      // A malformed task file of a folder named by --data-dir or HYPERPROMPT_DATA: that folder
      // cannot be used (2, as bench refuses it); the default one's files are the work's (1).
      if (e instanceof DataError && values.corpus === undefined && (dataDir || dataDirFromEnv())) {
        throw new NamedDataError(e.message, { cause: e });
      }
      throw e;
    }
    const { dir, info } = made;
    const first = info.losses[0]?.loss;
    const last = info.losses.at(-1)?.loss;
    log(`${dir}\nloss ${first?.toFixed(4)} -> ${last?.toFixed(4)} in ${info.steps} steps`);
    return 0;
  } catch (e) {
    const code = e instanceof NamedDataError ? 2 : exitCodeOf(e);
    // parseFlags's lines end with their own pointer to --help; a data file's error needs none.
    const hint = code === 2 && !(e instanceof NamedDataError) &&
        !/--help lists the flags$/.test((e as Error).message)
      ? "; deno task pretrain --help lists the flags"
      : "";
    // One line, unprefixed, as every tool prints its errors (model/usage.ts runCli).
    error(`${e instanceof Error ? e.message : String(e)}${hint}`);
    return code;
  }
}

if (import.meta.main) {
  // A write past `ulimit -f` then throws "File too large (os error 27)" naming the file, for
  // the error paths to report, instead of SIGXFSZ ending the process silently (exit 153).
  ignoreFileSizeSignal();
  Deno.exit(await main(Deno.args));
}
