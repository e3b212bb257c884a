/**
 * The high-level model API: load a Hugging Face T5 (a local folder or a hub id), compute
 * teacher-forced logits and loss on text, and decode greedily to text.
 *
 * @example
 * ```ts ignore
 * import { generate, loadT5, teacherForced } from "./mod.ts";
 * const t5 = await loadT5("path/to/t5-folder"); // or "google/t5-v1_1-small" when online
 * const { logits, loss } = await teacherForced(
 *   t5,
 *   ["rte sentence1: A. sentence2: B."],
 *   ["entailment"],
 * );
 * logits.dispose();
 * console.log(loss, await generate(t5, ["cola sentence: The book was read."]));
 * ```
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { join } from "node:path";
import {
  type CheckpointFileRecord,
  fileDigest,
  type FolderTensorInfo,
  loadHfFolder,
  readJsonFile,
  weightFileNames,
} from "./checkpoint.ts";
import {
  fetchHubFiles,
  fetchHubModel,
  type FetchHubOptions,
  HubOfflineError,
  isHubRepoId,
} from "./hub.ts";
import { CheckpointError } from "./checkpoint_error.ts";
import { type T5Config, t5ConfigFromHf } from "./config.ts";
import {
  checkT5Checkpoint,
  crossEntropyLoss,
  disposeT5,
  forward,
  greedyDecode,
  t5FromTensors,
} from "./t5.ts";
import type { T5Model } from "./t5.ts";
import type { T5Hooks } from "./hooks.ts";
import { T5Tokenizer, truncateWithEos } from "./tokenizer.ts";
import { isDirectory, pathExists } from "./fs.ts";
import { convertSpieceFolder } from "./spm.ts";

/** A loaded model with its tokenizer. */
export interface LoadedT5 {
  /** The backbone, built from the folder's `config.json` and weights (safetensors, or PyTorch's `.bin`). */
  readonly model: T5Model;
  /**
   * The folder's `tokenizer.json` (else its `spiece.model`, converted in memory:
   * {@link loadFolderTokenizer}), or the one named by {@link LoadT5Options.tokenizer}.
   */
  readonly tokenizer: T5Tokenizer;
  /** Where the tokenizer came from ({@link FolderTokenizer.source}, or the file given). */
  readonly tokenizerSource: string;
  /** The local folder the weights came from. */
  readonly dir: string;
}

/** Options of {@link loadT5}. */
export interface LoadT5Options {
  /**
   * A `tokenizer.json` to use instead of the folder's own (needed when the folder has neither
   * `tokenizer.json` nor `spiece.model`).
   */
  readonly tokenizer?: string;
  /**
   * Where the line saying that `spiece.model` was converted goes (default `console.warn`);
   * nothing else is logged.
   */
  readonly log?: (line: string) => void;
  /** Hub revision (branch, tag or commit) for hub ids. */
  readonly revision?: string;
  /** Hub cache folder. */
  readonly cacheDir?: string;
  /** Hub base URL (a mirror) for hub ids; default `HF_ENDPOINT`, else https://huggingface.co. */
  readonly endpoint?: string;
}

/**
 * Loads a T5 from a local Hugging Face folder (`config.json`, `model.safetensors` or a sharded
 * index, else PyTorch's `pytorch_model.bin` or its index, `tokenizer.json` or `spiece.model`: see
 * {@link loadFolderTokenizer}) or, when `source`
 * is not a folder, from the Hugging Face hub.
 *
 * @param source a folder path or a hub id such as `google/t5-v1_1-small`
 * @param opts tokenizer fallback and hub options
 * @returns model, tokenizer and folder; release with {@link disposeLoadedT5}
 * @throws CheckpointError naming the folder and file (its `file`, and `field`) when something
 *   is missing, malformed or mismatched (the tokenizer too); HubOfflineError (model/hub.ts)
 *   saying that the hub is unreachable (or `HF_HUB_OFFLINE=1` and the cache lacks a file) and
 *   how to use a local folder instead; Error for another hub failure (an HTTP status)
 */
export async function loadT5(source: string, opts: LoadT5Options = {}): Promise<LoadedT5> {
  const { convertedFrom: _, ...t5 } = await loadCheckpoint(await locateCheckpoint(source, opts), {
    ...opts,
    noTokenizerAlternative: `pass { tokenizer: "FILE" }`,
  });
  return t5;
}

/**
 * A checkpoint folder to load ({@link locateCheckpoint}): a local folder, or a hub cache folder
 * that holds, until {@link loadCheckpoint} has checked them, only `config.json` and the tokenizer
 * files ({@link fetchHubConfigFiles}).
 */
export interface CheckpointFolder {
  /** The folder. */
  readonly dir: string;
  /** The hub id it caches (its weights are downloaded into it once the checks pass). */
  readonly hubId?: string;
}

/**
 * Resolves a checkpoint source: a local folder as it is, else a hub id whose `config.json` and
 * tokenizer files (no weights) are downloaded ({@link fetchHubConfigFiles} through
 * {@link fetchHubSource}, whose errors say that a file, or a path that is no hub id, was given).
 * {@link loadT5} and `benchmarks/run_one.ts`'s `{hf}` backbones resolve their sources with it.
 *
 * @param source a folder path or a hub id
 * @param opts revision, cache folder, endpoint
 * @returns the folder, and the hub id when it is a hub cache folder
 */
export async function locateCheckpoint(
  source: string,
  opts: HubSourceOptions = {},
): Promise<CheckpointFolder> {
  if (await isDirectory(source)) return { dir: source };
  return { dir: await fetchHubSource(source, fetchHubConfigFiles, opts), hubId: source };
}

/** Options of {@link loadCheckpoint}. */
export interface LoadCheckpointOptions extends HubSourceOptions {
  /** {@link LoadT5Options.tokenizer}: a `tokenizer.json` used instead of the folder's own. */
  readonly tokenizer?: string;
  /** Where the line saying that `spiece.model` was converted goes (default `console.warn`). */
  readonly log?: (line: string) => void;
  /** What else the caller accepts when the folder has no tokenizer ({@link noTokenizerError}). */
  readonly noTokenizerAlternative?: string;
  /**
   * A further check of the folder's configuration, run after it is read and before the
   * tokenizer is checked against it (no weight is read or downloaded before it passes).
   */
  readonly checkConfig?: (config: T5Config, configPath: string) => void;
  /** Fields set over the folder's configuration for the model built (e.g. `dropoutRate`). */
  readonly configOverrides?: Partial<T5Config>;
}

/** A checkpoint loaded by {@link loadCheckpoint}. */
export interface LoadedCheckpoint extends LoadedT5 {
  /** The `spiece.model` the folder's tokenizer was converted from, when it has no `tokenizer.json`. */
  readonly convertedFrom?: string;
}

/**
 * Loads a located checkpoint ({@link locateCheckpoint}), refusing it before any weight is read
 * or downloaded: its tokenizer (`opts.tokenizer`, else the folder's own:
 * {@link loadFolderTokenizer}; neither is {@link noTokenizerError}), its `config.json`
 * ({@link readFolderConfig}), `opts.checkConfig`, the tokenizer against the config
 * ({@link checkTokenizerFits}); then, for a hub folder, the weights are downloaded into it, and
 * {@link loadT5Weights} checks their headers and reads them (`config.json` and each header read
 * once). {@link loadT5} and `benchmarks/run_one.ts` `buildBackbone` load checkpoints with it.
 *
 * @param folder the folder (and hub id)
 * @param opts tokenizer, log, extra check, config overrides, hub options
 * @returns model, tokenizer and folder; release with {@link disposeLoadedT5}
 * @throws CheckpointError naming the folder and file when something is missing, malformed or
 *   mismatched, as {@link loadT5} does (HubOfflineError, Error for a hub failure)
 */
export async function loadCheckpoint(
  folder: CheckpointFolder,
  opts: LoadCheckpointOptions = {},
): Promise<LoadedCheckpoint> {
  const { dir, hubId } = folder;
  let tokenizer: T5Tokenizer;
  let tokenizerSource: string;
  let own: FolderTokenizer | undefined;
  if (opts.tokenizer !== undefined) {
    tokenizer = await T5Tokenizer.fromFile(opts.tokenizer);
    // The file read: a folder's tokenizer.json (as T5Tokenizer.fromFile reads it).
    tokenizerSource = await isDirectory(opts.tokenizer)
      ? join(opts.tokenizer, "tokenizer.json")
      : opts.tokenizer;
  } else {
    // Trained weights index their embedding rows by their own vocabulary: no other tokenizer.
    own = await loadFolderTokenizer(dir);
    if (own === undefined) {
      // A folder without config.json is no checkpoint folder: that, not the tokenizer, is said.
      await readFolderConfig(dir);
      throw noTokenizerError(dir, hubId, opts.noTokenizerAlternative);
    }
    ({ tokenizer, source: tokenizerSource } = own);
  }
  // The config and the weights' headers (safetensors, or the `.bin` pickle) first: a mismatched
  // tokenizer, or a weight missing, unexpected, or of the wrong dtype or shape, is refused before
  // the weights are read (a T5-XXL's are 44 GB).
  const { config, path: configPath } = await readFolderConfig(dir);
  opts.checkConfig?.(config, configPath);
  checkTokenizerFits(tokenizer, config, configPath);
  // The weights, into the same folder.
  const weightsDir = hubId === undefined ? dir : await fetchHubSource(hubId, fetchHubModel, opts);
  if (
    own?.convertedFrom !== undefined && hubId !== undefined &&
    await pathExists(join(weightsDir, "tokenizer.json"))
  ) {
    // The hub's folder gained tokenizer.json with the weights: the hub named a newer commit of
    // the branch than the one its 404 was recorded for, which the files checked first (read
    // from the cache without the network while that record was fresh) could not know. The
    // folder's own tokenizer is now that file, as on every later load: checked in its turn.
    own = await loadFolderTokenizer(weightsDir);
    if (own === undefined) throw noTokenizerError(weightsDir, hubId, opts.noTokenizerAlternative);
    ({ tokenizer, source: tokenizerSource } = own);
    checkTokenizerFits(tokenizer, config, configPath);
  }
  const convertedFrom = own?.convertedFrom;
  if (own !== undefined && convertedFrom !== undefined) (opts.log ?? console.warn)(own.note);
  const model = await loadT5Weights(weightsDir, { ...config, ...opts.configOverrides }, configPath);
  return {
    model,
    tokenizer,
    tokenizerSource,
    dir: weightsDir,
    ...(convertedFrom !== undefined ? { convertedFrom } : {}),
  };
}

/**
 * The files of a checkpoint folder that a load reads, each with its size and sha256
 * ({@link fileDigest}: hashed once per process while the file is unchanged, and not read at all
 * when a hub download recorded its sha256 beside it and the file is unchanged since):
 * `config.json`, the tokenizer's ({@link folderTokenizerFiles}, the files
 * {@link loadFolderTokenizer} reads) and, with
 * `opts.weights`, the weight files (the single file, or the sharded index and its shards:
 * {@link weightFileNames}). Hashing reads every byte: about as long again as loading the weights
 * the first time (a T5-XXL's 44 GB take minutes; the tiny test checkpoints, milliseconds). A
 * local folder is hashed; a hub cache folder's files (kept under their names, not under the hub's
 * content hash) have the sha256 their download computed (and, for LFS files, checked against the
 * hub's) recorded beside them.
 *
 * @param dir the folder, as loaded ({@link LoadedT5.dir})
 * @param opts whether the weights were read (not for a random init from the folder's config)
 * @returns relative file name → size and sha256, sorted by name
 * @throws CheckpointError naming a file that cannot be read
 */
export async function checkpointFiles(
  dir: string,
  opts: { readonly weights: boolean },
): Promise<Record<string, CheckpointFileRecord>> {
  const names = ["config.json", ...await folderTokenizerFiles(dir)];
  if (opts.weights) names.push(...await weightFileNames(dir));
  const out: Record<string, CheckpointFileRecord> = {};
  for (const name of [...new Set(names)].sort()) out[name] = await fileDigest(join(dir, name));
  return out;
}

/**
 * A checkpoint folder's `config.json`, validated ({@link t5ConfigFromHf}); {@link loadCheckpoint}
 * reads it before any weight, `benchmarks/run_one.ts` for a random init from a folder.
 *
 * @param folder the folder
 * @returns the configuration and the file's path (for errors)
 * @throws CheckpointError naming the file (and field) that is missing or malformed
 */
export async function readFolderConfig(
  folder: string,
): Promise<{ config: T5Config; path: string }> {
  const path = join(folder, "config.json");
  if (!(await pathExists(path)) && await isDirectory(folder)) {
    // Not a checkpoint folder at all (a parent, a transformers cache's repo folder): say so.
    throw new CheckpointError(
      `${path}: not found: ${folder} is no Hugging Face checkpoint folder (save_pretrained ` +
        `writes config.json beside the weights and the tokenizer)${await snapshotHint(folder)}`,
      { file: path },
    );
  }
  return { config: t5ConfigFromHf(await readJsonFile(path, "config.json"), path), path };
}

/**
 * For a transformers cache's repo folder (`models--org--name`, whose files are under
 * `snapshots/<commit>/`): the snapshot folders holding a `config.json`, as advice.
 */
async function snapshotHint(folder: string): Promise<string> {
  const snapshots = join(folder, "snapshots");
  if (!(await isDirectory(snapshots))) return "";
  const found: string[] = [];
  for await (const e of Deno.readDir(snapshots)) {
    if (await pathExists(join(snapshots, e.name, "config.json"))) {
      found.push(join(snapshots, e.name));
    }
  }
  return found.length === 0
    ? ""
    : `; a transformers cache keeps the checkpoint in ${found.sort().join(" or ")}: give that ` +
      "folder";
}

/** Hub download options of {@link fetchHubConfigFiles} (those of `fetchHubModel`). */
export type HubConfigFilesOptions = Omit<FetchHubOptions, "force">;

/**
 * Downloads (into the hub cache folder that `fetchHubModel` completes later) what the checks of a
 * checkpoint, and a random initialisation from its configuration, read: `config.json` and
 * `tokenizer.json`, or, when the repo has no `tokenizer.json` (the 2020 T5 checkpoints such as
 * google/t5-v1_1-base), `spiece.model` and `tokenizer_config.json`, asked for only then, so a repo
 * with `tokenizer.json` costs no more requests. No weights.
 *
 * @param hubId the repo id
 * @param opts revision, cache folder, endpoint
 * @returns the cache folder
 */
export async function fetchHubConfigFiles(
  hubId: string,
  opts: HubConfigFilesOptions = {},
): Promise<string> {
  const folder = await fetchHubFiles(hubId, CONFIG_FILES, opts);
  if (await pathExists(join(folder, "tokenizer.json"))) return folder;
  return await fetchHubFiles(hubId, SPIECE_FILES, opts);
}

/** The files a checkpoint is checked by, and a random init reads: no weights. */
const CONFIG_FILES = { required: ["config.json"], optional: ["tokenizer.json"] } as const;

/** The tokenizer files of a repo without `tokenizer.json`: `spiece.model` and its settings. */
const SPIECE_FILES = { required: [], optional: ["spiece.model", "tokenizer_config.json"] } as const;

/**
 * The error for a checkpoint folder with neither `tokenizer.json` nor `spiece.model`. For a hub
 * cache folder it adds that a cache completed before `spiece.model` was among the files
 * downloaded, or while a recorded 404 of them held, lacks them although the repo may have them
 * (deleting the folder downloads them again).
 *
 * @param dir the folder
 * @param hubId the hub id the folder caches, if it is a hub cache folder
 * @param alternative what else the caller accepts (e.g. an option naming a tokenizer)
 * @returns the error, naming the folder and both files (its `file`: the folder)
 */
export function noTokenizerError(
  dir: string,
  hubId?: string,
  alternative?: string,
): CheckpointError {
  const cache = hubId === undefined ? "" : `; if the hub repo "${hubId}" has tokenizer.json or ` +
    `spiece.model, this cache folder was completed without them (by a version that did not ` +
    `download spiece.model, or within a day of the hub answering HTTP 404 for them, which ` +
    `${join(dir, ".absent.json")} records): delete ${dir} and run again`;
  return new CheckpointError(
    `${dir}: no tokenizer.json and no spiece.model beside the weights; a checkpoint needs its ` +
      `own tokenizer (put the model's tokenizer.json, or its spiece.model and ` +
      `tokenizer_config.json, in the folder${alternative ? `, or ${alternative}` : ""})${cache}`,
    { file: dir },
  );
}

/** A folder's own tokenizer ({@link loadFolderTokenizer}). */
export interface FolderTokenizer {
  /** The tokenizer. */
  readonly tokenizer: T5Tokenizer;
  /**
   * Where it came from: the folder's `tokenizer.json`, or `<folder>/spiece.model (converted to
   * tokenizer.json in memory)`.
   */
  readonly source: string;
  /** The `spiece.model` it was converted from, when the folder has no `tokenizer.json`. */
  readonly convertedFrom?: string;
  /** One line for the log saying what was used (and, for a conversion, with which settings). */
  readonly note: string;
}

/**
 * The files a folder's own tokenizer is read from ({@link loadFolderTokenizer}), relative to it:
 * `tokenizer.json`; else `spiece.model` and, when present, the `tokenizer_config.json` whose
 * settings its conversion follows; else none. {@link checkpointFiles} records these, so the files
 * a result names are the ones its tokenizer came from.
 *
 * @param dir the folder
 * @returns the file names, in the order above (empty when the folder has no tokenizer)
 */
export async function folderTokenizerFiles(dir: string): Promise<string[]> {
  if (await pathExists(join(dir, "tokenizer.json"))) return ["tokenizer.json"];
  if (!(await pathExists(join(dir, "spiece.model")))) return [];
  return await pathExists(join(dir, "tokenizer_config.json"))
    ? ["spiece.model", "tokenizer_config.json"]
    : ["spiece.model"];
}

/**
 * The tokenizer of a Hugging Face T5 folder: its `tokenizer.json`, else its `spiece.model`
 * converted in memory as transformers' `T5Converter` converts it on load (`model/spm.ts`
 * `convertSpieceFolder`: `extra_ids` sentinels, default 100, `<extra_id_0>` the highest id, and
 * the folder's `tokenizer_config.json` settings), so a checkpoint published without
 * `tokenizer.json` (google/t5-v1_1-*) loads. The folder is never written to; the conversion is
 * repeated on each load (a 32,000-piece model takes well under a second).
 *
 * @param dir the folder
 * @returns the tokenizer and where it came from, or undefined when the folder has neither file
 * @throws CheckpointError naming the file that is malformed or cannot be read (its `file`, and
 *   the field its `field` when one is at fault)
 */
export async function loadFolderTokenizer(dir: string): Promise<FolderTokenizer | undefined> {
  // The choice checkpointFiles records (the conversion reads tokenizer_config.json when present).
  const files = await folderTokenizerFiles(dir);
  if (files[0] === "tokenizer.json") {
    const file = join(dir, "tokenizer.json");
    return { tokenizer: await T5Tokenizer.fromFile(file), source: file, note: `tokenizer ${file}` };
  }
  if (files[0] !== "spiece.model") return undefined;
  const converted = await convertSpieceFolder(dir);
  if (converted === undefined) return undefined;
  const source = `${converted.spiece} (converted to tokenizer.json in memory)`;
  const tokenizer = T5Tokenizer.fromJson(converted.json, source);
  const { settings } = converted;
  const extra =
    settings.additionalSpecialTokens?.filter((t) => tokenizer.tokenToId(t) !== undefined)
      .length ?? 0;
  const note = `${dir}: no tokenizer.json; converted ${converted.spiece} in memory as ` +
    `transformers' T5Converter does (${converted.pieces} pieces, ${settings.extraIds} sentinels` +
    (settings.additionalSpecialTokens ? `, ${extra} additional special tokens` : "") +
    `, Metaspace prepend_scheme "${settings.prependScheme ?? "always"}"; ` +
    (converted.tokenizerConfig
      ? `settings of ${converted.tokenizerConfig}`
      : "no tokenizer_config.json: T5's defaults") +
    `; ${tokenizer.vocabSize} ids)`;
  return { tokenizer, source, convertedFrom: converted.spiece, note };
}

/**
 * Builds the model of a Hugging Face folder whose `config.json` the caller has read (and may have
 * given other training-only fields, such as `dropoutRate`): the names, dtypes and shapes of the
 * weights are checked from the weights' headers (safetensors, or the `.bin` pickle) first (no tensor data is read before they
 * pass), then the weights are read. A checkpoint without `shared.weight` takes the encoder's
 * table for it (as google/madlad400-* store it). {@link loadCheckpoint} uses it after its
 * tokenizer checks.
 *
 * @param dir the folder
 * @param config its `config.json` (see {@link t5ConfigFromHf}), the model's configuration
 * @param configPath the `config.json` named by the errors
 * @returns the model (release with `disposeT5`); no tensor is left on an error
 * @throws CheckpointError naming the weights file (or sharded index) and `config.json` for a
 *   missing, unexpected, misshapen or wrongly typed weight, or feed-forward weights of the other
 *   kind than `feed_forward_proj` (then `config.json` and that field are its `file` and `field`),
 *   or the file that cannot be read
 */
export async function loadT5Weights(
  dir: string,
  config: T5Config,
  configPath: string,
): Promise<T5Model> {
  // One pass over the folder: its headers are checked, then the tensors they describe are read
  // (config.json, which the caller read, and each header are read once).
  const ck = await loadHfFolder(dir, {
    config,
    check: ({ tensors, source }) => checkWeightHeaders(tensors, source, config, configPath),
  });
  try {
    // Some checkpoints (e.g. google/madlad400-*) store the token table only under the stacks'
    // names: the encoder's is the shared one (the decoder's, if different, stays its own).
    const encoderTable = ck.tensors.get("encoder.embed_tokens.weight");
    if (!ck.tensors.has("shared.weight") && encoderTable) {
      ck.tensors.set("shared.weight", encoderTable);
    }
    return t5FromTensors(config, ck.tensors, dir);
  } finally {
    for (const t of ck.tensors.values()) t.dispose();
  }
}

/** Where {@link fetchHubSource} fetches from: the hub options of {@link LoadT5Options}. */
export type HubSourceOptions = Pick<LoadT5Options, "revision" | "cacheDir" | "endpoint">;

/**
 * Fetches `source`, which is not a local folder, from the hub with `fetch` (`fetchHubModel`, or
 * {@link fetchHubConfigFiles} for the files checked before the weights); a source that is a
 * file, or a path rather than a hub id, is an error saying so, and a hub error says that the
 * source was taken as a hub id (a mistyped folder path that looks like `org/name` reaches the
 * hub). `loadT5` and `deno task bench`'s `{hf}` backbones resolve their sources through it.
 *
 * @param source the folder path or hub id as given
 * @param fetch what to download
 * @param opts revision, cache folder, endpoint
 * @returns the hub cache folder
 * @throws CheckpointError for a file or a path that is no hub id; HubOfflineError when `fetch`
 *   throws one (the hub unreachable); Error for another failure of `fetch`
 */
export async function fetchHubSource(
  source: string,
  fetch: (id: string, o: HubConfigFilesOptions) => Promise<string>,
  opts: HubSourceOptions = {},
): Promise<string> {
  let isFile = false;
  try {
    isFile = (await Deno.stat(source)).isFile;
  } catch {
    // Absent: a hub id, or a folder path with a mistake.
  }
  if (isFile) {
    throw new CheckpointError(
      `${source}: is a file; expected a Hugging Face folder (config.json, ` +
        `model.safetensors or pytorch_model.bin, tokenizer.json or spiece.model) or a hub id ` +
        `such as "google/t5-v1_1-small"`,
      { file: source },
    );
  }
  if (!isHubRepoId(source)) {
    throw new CheckpointError(
      `${source}: folder not found (and not a hub id such as "google/t5-v1_1-small")`,
      { file: source },
    );
  }
  try {
    return await fetch(source, {
      ...(opts.revision ? { revision: opts.revision } : {}),
      ...(opts.cacheDir ? { cacheDir: opts.cacheDir } : {}),
      ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
    });
  } catch (e) {
    const message = `"${source}" is not a local folder, so it was taken as a hub id: ${
      (e as Error).message
    }`;
    // Offline stays a HubOfflineError, so that a caller can tell it from a bad checkpoint.
    if (e instanceof HubOfflineError) throw new HubOfflineError(message, { cause: e });
    throw new Error(message, { cause: e });
  }
}

/**
 * Checks the names, dtypes and shapes of the folder's weights against `config` from the
 * weights' headers alone (safetensors, or the `.bin` pickle; `loadHfFolder` runs it before it
 * reads any tensor data, so a `num_layers` mismatch or a renamed tensor of a 44 GB checkpoint
 * fails at once): one error names the weights file (or the sharded index) with every missing and
 * unexpected name, another the file holding a weight of the wrong dtype or shape. A checkpoint
 * without `shared.weight` takes the encoder's table for it, as {@link loadT5} does.
 *
 * @param tensors the tensors the headers list (a copy: the encoder's table may be added to it)
 * @param source the weights file or sharded index, named by the errors
 * @throws CheckpointError whose `file` is `source` for a weight missing, unexpected, or of the
 *   wrong dtype or shape (the message names the shard holding it); whose `file` is `configPath`
 *   and `field` `feed_forward_proj` for feed-forward weights of the other kind (see
 *   {@link checkFeedForwardKind})
 */
function checkWeightHeaders(
  tensors: Map<string, FolderTensorInfo>,
  source: string,
  config: T5Config,
  configPath: string,
): void {
  const encoderTable = tensors.get("encoder.embed_tokens.weight");
  if (!tensors.has("shared.weight") && encoderTable) tensors.set("shared.weight", encoderTable);
  checkFeedForwardKind(tensors.keys(), source, config, configPath);
  try {
    checkT5Checkpoint(config, tensors, source, {
      dtypes: ["F32", "F16", "BF16"],
      configSource: configPath,
    });
  } catch (e) {
    // A weight missing, unexpected, or of the wrong dtype or shape: a bad checkpoint.
    throw CheckpointError.from(e, source);
  }
}

/** The feed-forward input weights of each kind: ReLU's `wi`, gated-GELU's `wi_0` and `wi_1`. */
const FF_WEIGHTS = {
  relu: /\.DenseReluDense\.wi\.weight$/,
  "gated-gelu": /\.DenseReluDense\.wi_[01]\.weight$/,
} as const;

/**
 * Refuses weights whose feed-forward layers are all of the other kind than the configuration's
 * `feed_forward_proj` (gated-GELU's `wi_0`/`wi_1` against `"relu"`, ReLU's `wi` against
 * `"gated-gelu"`), naming the field, where the names check would only list every block's
 * feed-forward weights as missing and unexpected. Weights with both kinds are left to that check.
 *
 * @param names the weights' names
 * @param source the weights file or sharded index
 * @param config the configuration
 * @param configPath the `config.json` it came from
 * @throws CheckpointError whose `file` is `configPath` and `field` `feed_forward_proj`
 */
function checkFeedForwardKind(
  names: Iterable<string>,
  source: string,
  config: T5Config,
  configPath: string,
): void {
  const want = config.feedForwardProj;
  // A value outside the type (from JavaScript) is left to the names check.
  if (!Object.hasOwn(FF_WEIGHTS, want)) return;
  const other = want === "relu" ? "gated-gelu" : "relu";
  let found: string | undefined;
  for (const name of names) {
    if (FF_WEIGHTS[want].test(name)) return;
    found ??= FF_WEIGHTS[other].test(name) ? name : undefined;
  }
  if (found === undefined) return;
  const kind = other === "relu" ? `ReLU ("wi")` : `gated-GELU ("wi_0", "wi_1")`;
  throw new CheckpointError(
    `${configPath}: field "feed_forward_proj" is "${want}" but the feed-forward weights of ` +
      `${source} are ${kind}, e.g. "${found}"; the checkpoint needs "feed_forward_proj": ` +
      `"${other}"`,
    { file: configPath, field: "feed_forward_proj" },
  );
}

/**
 * Refuses a tokenizer whose ids the model cannot embed (more ids than `vocab_size`, which gathers
 * out of range at the first batch, and silently on some backends) or whose `</s>` and `<pad>`
 * ids differ from the config's `eos_token_id` and `pad_token_id` (the tokenizer ends each text
 * with its own `</s>` while training and decoding stop, pad and mask by the config's ids, so
 * targets would end, and batches be padded, with other tokens). The decoder's start id is the
 * config's alone (the tokenizer has no such token); `t5ConfigFromHf` checks that it is an id.
 * {@link loadT5} and `benchmarks/run_one.ts` use it before any weight is read.
 *
 * @param tok the tokenizer
 * @param config the model's configuration
 * @param configPath where `config` came from (a `config.json`, or a preset's name), for errors
 * @throws CheckpointError naming the tokenizer file and `configPath` (its `file`, the field its
 *   `field`), with the sizes or the ids that differ
 */
export function checkTokenizerFits(tok: T5Tokenizer, config: T5Config, configPath: string): void {
  const where = `tokenizer ${tok.source} and ${configPath}`;
  if (tok.vocabSize > config.vocabSize) {
    throw new CheckpointError(
      `${where} do not match: the tokenizer has ${tok.vocabSize} ids but the model's ` +
        `"vocab_size" is ${config.vocabSize} (is it the model's own tokenizer?)`,
      { file: configPath, field: "vocab_size" },
    );
  }
  for (
    const [name, field, t, c] of [
      ["</s>", "eos_token_id", tok.eosTokenId, config.eosTokenId],
      ["<pad>", "pad_token_id", tok.padTokenId, config.padTokenId],
    ] as const
  ) {
    if (t !== c) {
      throw new CheckpointError(
        `${where} do not match: "${name}" is id ${t} but "${field}" is ${c}`,
        { file: configPath, field },
      );
    }
  }
}

/** Releases a model loaded by {@link loadT5}. */
export function disposeLoadedT5(t5: LoadedT5): void {
  disposeT5(t5.model);
}

function padIds(rows: readonly (readonly number[])[], pad: number): tf.Tensor2D {
  const len = Math.max(1, ...rows.map((r) => r.length));
  const data = new Int32Array(rows.length * len).fill(pad);
  rows.forEach((r, i) => data.set(r, i * len));
  return tf.tensor2d(data, [rows.length, len], "int32");
}

/**
 * The encoder mask of rows padded by {@link padIds}: 1 on each row's own tokens, by length (as
 * training's batches, `benchmarks/batching.ts` `collate`), so a `<pad>` id written in the text
 * is attended to, not taken for padding.
 */
function lengthMask(rows: readonly (readonly number[])[]): tf.Tensor2D {
  const len = Math.max(1, ...rows.map((r) => r.length));
  const data = new Float32Array(rows.length * len);
  rows.forEach((r, i) => data.fill(1, i * len, i * len + r.length));
  return tf.tensor2d(data, [rows.length, len], "float32");
}

/**
 * Token ids of `text`, cut to `maxLength` as training cuts them ({@link truncateWithEos}: a cut
 * sequence still ends with `</s>`); without `maxLength`, all of them.
 */
function encodeCut(
  t5: Pick<LoadedT5, "model" | "tokenizer">,
  text: string,
  maxLength: number | undefined,
): number[] {
  const ids = t5.tokenizer.encode(text);
  return maxLength === undefined
    ? ids
    : truncateWithEos(ids, maxLength, t5.model.config.eosTokenId);
}

function checkLength(fn: string, name: string, value: number | undefined): void {
  if (value !== undefined && !(Number.isInteger(value) && value >= 1)) {
    throw new Error(`${fn}: ${name} must be a positive integer, got ${value}`);
  }
}

/** Options of {@link teacherForced}. */
export interface TeacherForcedOptions {
  /** Method hooks, if any. */
  readonly hooks?: T5Hooks;
  /**
   * Encoder tokens per input at most, `</s>` included, cut as in training (the profile's
   * `maxInputLength`); default: the whole text.
   */
  readonly maxInputLength?: number;
  /**
   * Target tokens per target at most, `</s>` included, cut as in training (the profile's
   * `maxTargetLength`); default: the whole text.
   */
  readonly maxTargetLength?: number;
}

/**
 * Teacher-forced forward pass on text pairs: logits for every target position and the mean
 * token cross-entropy (targets end with `</s>`; padding positions are ignored). With
 * `maxInputLength` / `maxTargetLength` the texts are cut as training cuts them.
 *
 * @param t5 a loaded model, or any model with its tokenizer (e.g. `initT5` of a preset with a
 *   task tokenizer: only `model` and `tokenizer` are read)
 * @param inputs encoder texts
 * @param targets decoder target texts, one per input
 * @param opts method hooks, and the lengths to cut to
 * @returns logits `[batch, targetLength, vocab]` (caller disposes) and the loss as a number
 * @throws Error for no inputs, a number of targets other than of inputs, or a length that is
 *   not a positive integer
 */
export async function teacherForced(
  t5: Pick<LoadedT5, "model" | "tokenizer">,
  inputs: readonly string[],
  targets: readonly string[],
  opts: TeacherForcedOptions = {},
): Promise<{ logits: tf.Tensor3D; loss: number }> {
  if (inputs.length !== targets.length || inputs.length === 0) {
    throw new Error(
      `teacherForced: need the same non-zero number of inputs and targets, got ${inputs.length} and ${targets.length}`,
    );
  }
  checkLength("teacherForced", "maxInputLength", opts.maxInputLength);
  checkLength("teacherForced", "maxTargetLength", opts.maxTargetLength);
  const cfg = t5.model.config;
  const inIds = inputs.map((s) => encodeCut(t5, s, opts.maxInputLength));
  const tgtIds = targets.map((s) => encodeCut(t5, s, opts.maxTargetLength));
  const out = tf.tidy(() => {
    const inputIds = padIds(inIds, cfg.padTokenId);
    const attentionMask = lengthMask(inIds);
    const labels = padIds(tgtIds, -100);
    const decoderInputIds = padIds(
      tgtIds.map((r) => [cfg.decoderStartTokenId, ...r.slice(0, -1)]),
      cfg.padTokenId,
    );
    const { logits } = forward(
      t5.model,
      { inputIds, attentionMask, decoderInputIds },
      opts.hooks ? { hooks: opts.hooks } : {},
    );
    return { logits, loss: crossEntropyLoss(logits, labels) };
  });
  // Read asynchronously: webgpu in Deno has no synchronous read (tfjs reads GPU data back
  // synchronously through a canvas, which Deno lacks).
  try {
    return { logits: out.logits, loss: (await out.loss.data())[0]! };
  } catch (e) {
    out.logits.dispose();
    throw e;
  } finally {
    out.loss.dispose();
  }
}

/** Options of {@link generate}. */
export interface GenerateOptions {
  /** Tokens to generate at most, `</s>` included (default 32). */
  readonly maxNewTokens?: number;
  /** Method hooks, if any. */
  readonly hooks?: T5Hooks;
  /**
   * Encoder tokens per input at most, `</s>` included, cut as in training and evaluation (the
   * profile's `maxInputLength`); default: the whole text.
   */
  readonly maxInputLength?: number;
}

/**
 * Greedy decoding of texts (with the key/value cache), stopping at `</s>`.
 *
 * @param t5 a loaded model, or any model with its tokenizer (only `model` and `tokenizer` are
 *   read)
 * @param inputs encoder texts (at least one)
 * @param opts maximum new tokens (default 32), method hooks, and the input length to cut to
 * @returns the decoded strings, special tokens removed
 * @throws Error for no inputs, or a `maxNewTokens` or `maxInputLength` that is not a positive
 *   integer
 */
export async function generate(
  t5: Pick<LoadedT5, "model" | "tokenizer">,
  inputs: readonly string[],
  opts: GenerateOptions = {},
): Promise<string[]> {
  if (inputs.length === 0) throw new Error(`generate: inputs is empty (need at least one text)`);
  checkLength("generate", "maxNewTokens", opts.maxNewTokens);
  checkLength("generate", "maxInputLength", opts.maxInputLength);
  const cfg = t5.model.config;
  const ids = inputs.map((s) => encodeCut(t5, s, opts.maxInputLength));
  const inputIds = padIds(ids, cfg.padTokenId);
  const attentionMask = lengthMask(ids);
  try {
    const rows = await greedyDecode(t5.model, { inputIds, attentionMask }, {
      maxNewTokens: opts.maxNewTokens ?? 32,
      ...(opts.hooks ? { hooks: opts.hooks } : {}),
    });
    return rows.map((r) => t5.tokenizer.decode(r));
  } finally {
    inputIds.dispose();
    attentionMask.dispose();
  }
}
