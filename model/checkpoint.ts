/**
 * Hugging Face checkpoint folders: `config.json` + `model.safetensors` (or sharded
 * `model-0000i-of-0000n.safetensors` with `model.safetensors.index.json`), as `save_pretrained`
 * writes them, or PyTorch weights (`pytorch_model.bin`, or `pytorch_model.bin.index.json` and its
 * shards; see model/torch_bin.ts) when the folder has no safetensors, as transformers reads them.
 * Loading gives float32 tensors keyed by HF parameter name; saving writes safetensors (float32,
 * float16 or bfloat16) atomically.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { basename, dirname, join, relative } from "node:path";
import { type T5Config, t5ConfigFromHf, t5ConfigToHf } from "./config.ts";
import {
  dtypeBytes,
  encodeHeader,
  encodeTypedArray,
  numElements,
  openWeightsFile,
  readAt,
  readOpenSafetensorsHeader,
  readSafetensorsHeader,
  type SafetensorsDtype,
  type SafetensorsFileHeader,
  type SafetensorsHeader,
  type TensorInfo,
  toTypedArray,
} from "./safetensors.ts";
import {
  checkUnchanged,
  type FileIdentity,
  fileIdentity,
  fsError,
  makeHeldTempDir,
  pathExists,
  recoverAsideFolders,
  removeStaleTemps,
  swapFolderInto,
  syncDir,
  TEMP_TAG_SOURCE,
  type TempPattern,
  tempTagOf,
  writeFileAtomic,
} from "./fs.ts";
import { readTorchBinHeader, readTorchBinTensors, type TorchBinHeader } from "./torch_bin.ts";

import { parseJsonFile } from "./json.ts";
import { CheckpointError } from "./checkpoint_error.ts";
import { recordedSha256, sha256File } from "./hash.ts";

export { CheckpointError } from "./checkpoint_error.ts";
export { fetchHubModel, type FetchHubOptions } from "./hub.ts";

/** Weights file of an unsharded checkpoint. */
export const WEIGHTS_NAME = "model.safetensors";
/** Index file of a sharded checkpoint. */
export const WEIGHTS_INDEX_NAME = "model.safetensors.index.json";
/** PyTorch weights file of an unsharded checkpoint (read when there are no safetensors). */
export const TORCH_WEIGHTS_NAME = "pytorch_model.bin";
/** Index file of a sharded PyTorch checkpoint (read when there are no safetensors). */
export const TORCH_WEIGHTS_INDEX_NAME = "pytorch_model.bin.index.json";

/**
 * Weight files (or their shard indexes) of the other formats `save_pretrained` writes, which
 * {@link loadHfFolder} does not read.
 */
export const OTHER_WEIGHTS: readonly string[] = [
  "tf_model.h5",
  "tf_model.h5.index.json",
  "flax_model.msgpack",
  "flax_model.msgpack.index.json",
];

/**
 * How to convert TensorFlow or Flax (or PyTorch) weights into the safetensors this loader reads,
 * with transformers on a machine that has it.
 *
 * @param from the folder (or hub id) holding them, named in the command
 * @param to the folder to write (default `from`)
 */
export function convertHint(from: string, to = from): string {
  const [f, t] = [JSON.stringify(from), JSON.stringify(to)];
  return `Convert it once with transformers (it saves safetensors by default): python -c ` +
    `'from transformers import AutoModelForSeq2SeqLM as M; M.from_pretrained(${f}).save_pretrained(${t})'` +
    ` (add from_tf=True or from_flax=True to from_pretrained for TensorFlow or Flax weights).`;
}

/** A loaded checkpoint. */
export interface HfCheckpoint {
  /** The validated configuration from `config.json`. */
  config: T5Config;
  /** HF parameter name → tensor (float32 for float dtypes, int32 for integer dtypes). */
  tensors: Map<string, tf.Tensor>;
}

async function readText(path: string, what: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new CheckpointError(`${path}: not found`, { file: path, cause: e });
    }
    throw new CheckpointError(`${path}: cannot read ${what}: ${(e as Error).message}`, {
      file: path,
      cause: e,
    });
  }
}

/**
 * Read and parse a JSON file.
 *
 * @param path the file
 * @param what what it is, for the error of a file that cannot be read
 * @returns the parsed JSON
 * @throws CheckpointError naming the file when it is not found, cannot be read or is not valid
 *   JSON (with the line and column)
 */
export async function readJsonFile(path: string, what = "JSON file"): Promise<unknown> {
  const text = await readText(path, what);
  try {
    return parseJsonFile(text, path);
  } catch (e) {
    throw CheckpointError.from(e, path);
  }
}

/**
 * The names under which a T5 checkpoint may store its token embedding table: HF ties them, and
 * transformers 5 saves each as an equal copy.
 */
const EMBEDDING_TABLES: readonly string[] = [
  "shared.weight",
  "encoder.embed_tokens.weight",
  "decoder.embed_tokens.weight",
];

/**
 * For an embedding table `name` (see {@link EMBEDDING_TABLES}), the already loaded table under
 * another of those names whose values are bit-identical to `values`, if any: the checkpoint then
 * gets one tensor under both names, which `t5FromTensors` (model/t5.ts) takes as a tied table
 * without reading values back (webgpu in Deno cannot read synchronously), and which is stored
 * once. The bytes are compared here, where they are host memory; the earlier table is read with
 * `data()`, asynchronous and immediate for a tensor not yet used on a device.
 */
async function equalTable(
  into: Map<string, tf.Tensor>,
  name: string,
  values: Float32Array | Int32Array,
  shape: readonly number[],
  dtype: tf.DataType,
): Promise<tf.Tensor | undefined> {
  if (!EMBEDDING_TABLES.includes(name)) return undefined;
  for (const other of EMBEDDING_TABLES) {
    const t = into.get(other);
    if (other === name || t === undefined || t.dtype !== dtype) continue;
    if (t.shape.join(",") !== shape.join(",")) continue;
    if (sameBits((await t.data()) as Float32Array | Int32Array, values)) return t;
  }
  return undefined;
}

/**
 * Whether two decoded tables (or chunks of them) hold the same bit patterns: the loader's test of
 * an equal embedding table copy ({@link EMBEDDING_TABLES}). Bit patterns, not numbers: -0 and 0
 * differ, a NaN equals the same NaN.
 *
 * @param a the first values
 * @param b the second values
 * @returns whether they have the same length and bits
 */
export function sameBits(a: Float32Array | Int32Array, b: Float32Array | Int32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/**
 * Load tensors from one safetensors file, reading one tensor at a time (peak memory is one
 * tensor's bytes, not the whole file).
 *
 * @param path the file
 * @param only load only these names (all when omitted)
 * @param into map to add the tensors to; on error, tensors added by this call are disposed
 * @returns `into`; a token embedding table bit-identical to one loaded before under another of
 *   its names (`shared.weight`, `encoder.embed_tokens.weight`, `decoder.embed_tokens.weight`) is
 *   the same tensor under both names (disposing each entry of the map stays safe: a second
 *   dispose does nothing)
 */
export async function loadSafetensorsFile(
  path: string,
  only?: ReadonlySet<string>,
  into: Map<string, tf.Tensor> = new Map(),
): Promise<Map<string, tf.Tensor>> {
  return await loadSafetensorsWith(path, undefined, only, into);
}

/**
 * {@link loadSafetensorsFile}, given the file's header when it was read already (then only the
 * tensor data is read, after checking that the file is still the one the header was read from:
 * same size, modification and status-change times, inode and device). A file written to while its
 * data is read is refused too (its times moved).
 */
async function loadSafetensorsWith(
  path: string,
  read: SafetensorsFileHeader | undefined,
  only: ReadonlySet<string> | undefined,
  into: Map<string, tf.Tensor>,
  finite = false,
): Promise<Map<string, tf.Tensor>> {
  const { file, stat } = await openWeightsFile(path, "safetensors file");
  try {
    const identity = fileIdentity(stat);
    let header: SafetensorsHeader;
    if (read === undefined) {
      header = await readOpenSafetensorsHeader(file, stat.size, path);
    } else {
      // Rewritten since its header was read (even to the same size, or another file renamed over
      // it): the old header's offsets would read the new file's bytes as the old tensors.
      sameFile(path, read.identity, identity, "since its header was read");
      header = read;
    }
    if (only) {
      for (const name of only) {
        if (!header.tensors.has(name)) {
          throw new CheckpointError(`${path}: tensor "${name}" not found`, { file: path });
        }
      }
    }
    await putFileTensors(path, into, async (put) => {
      for (const [name, info] of header.tensors) {
        if (only && !only.has(name)) continue;
        await put(name, async () => {
          const [b, e] = info.dataOffsets;
          const where = `${path}: tensor "${name}"`;
          const bytes = await readAt(file, header.dataStart + b, e - b, where, "its data", path);
          return {
            values: toTypedArray(info.dtype, bytes, where, path),
            shape: info.shape,
          };
        });
      }
      // Written to in place meanwhile: some tensors may be of the old file, some of the new (the
      // open file stays the same inode whatever is renamed over its path).
      sameFile(
        path,
        identity,
        fileIdentity(await file.stat()),
        "while its tensors were read",
      );
    }, finite);
    return into;
  } finally {
    file.close();
  }
}

/** `checkUnchanged` (model/fs.ts), throwing the {@link CheckpointError} of `path`. */
function sameFile(path: string, was: FileIdentity, now: FileIdentity, since: string): void {
  try {
    checkUnchanged(path, was, now, since);
  } catch (e) {
    throw CheckpointError.from(e, path);
  }
}

/** The non-finite values of `values` (NaN, ±Infinity): how many, the first and its index. */
function nonFinite(
  values: Float32Array,
): { count: number; first: number; index: number } | undefined {
  let count = 0;
  let index = -1;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    // v - v is NaN exactly for NaN and ±Infinity.
    if (v - v !== 0) {
      if (count === 0) index = i;
      count++;
    }
  }
  return count === 0 ? undefined : { count, first: values[index]!, index };
}

/** One tensor's data as a weights file gives it: its values, or the name of a tensor it is. */
type FileTensor =
  | { values: Float32Array | Int32Array; shape: readonly number[] }
  | { sameAs: string };

/**
 * Adds one weights file's tensors to `into`, as `read` gives them to `put` in turn: a name already
 * in `into` is refused (before `load` runs), a `sameAs` tensor is the tensor of that name, and an
 * embedding table bit-identical to one loaded before is that tensor ({@link equalTable}). Should
 * `read` throw, every name it added is removed and every tensor it made disposed; an alias of a
 * table an earlier file loaded stays with that table's name.
 *
 * @param path the file, for the error
 * @param into map to add the tensors to
 * @param read gives each tensor's name and, through `load`, its data
 * @param finite refuse a float tensor with a NaN or infinite value (a {@link CheckpointError}
 *   naming it, the count and the first), once `read` is done
 */
async function putFileTensors(
  path: string,
  into: Map<string, tf.Tensor>,
  read: (put: (name: string, load: () => Promise<FileTensor>) => Promise<void>) => Promise<void>,
  finite = false,
): Promise<void> {
  const added: string[] = [];
  const created = new Set<tf.Tensor>();
  // Thrown once `read` is done: after its check that the file did not change while it was read
  // (a rewritten file's bytes are no weights of the checkpoint's, finite or not).
  let notFinite: CheckpointError | undefined;
  try {
    await read(async (name, load) => {
      if (into.has(name)) {
        throw new CheckpointError(`${path}: tensor "${name}" appears in two files`, { file: path });
      }
      const data = await load();
      if (
        finite && notFinite === undefined && "values" in data && data.values instanceof Float32Array
      ) {
        const bad = nonFinite(data.values);
        if (bad !== undefined) {
          notFinite = new CheckpointError(
            `${path}: tensor "${name}" has ${bad.count} value${bad.count === 1 ? "" : "s"} ` +
              `that ${bad.count === 1 ? "is" : "are"} not finite (the first, ${bad.first}, at ` +
              `flat index ${bad.index}): a checkpoint saved after its training diverged, or a ` +
              `damaged file; training from it would give NaN losses`,
            { file: path },
          );
        }
      }
      let tensor: tf.Tensor;
      if ("sameAs" in data) {
        tensor = into.get(data.sameAs)!;
      } else {
        const dtype = data.values instanceof Int32Array ? "int32" : "float32";
        const same = await equalTable(into, name, data.values, data.shape, dtype);
        tensor = same ?? tf.tensor(data.values, [...data.shape], dtype);
        if (same === undefined) created.add(tensor);
      }
      into.set(name, tensor);
      added.push(name);
    });
    if (notFinite !== undefined) throw notFinite;
  } catch (e) {
    for (const n of added) {
      const t = into.get(n);
      into.delete(n);
      if (t !== undefined && created.has(t)) t.dispose();
    }
    throw e;
  }
}

/**
 * Parse a `model.safetensors.index.json` object.
 *
 * @returns shard file name → tensor names stored in it
 * @throws CheckpointError naming the file (its `file`) and the bad field (its `field`)
 */
export function parseIndex(json: unknown, source: string): Map<string, string[]> {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new CheckpointError(`${source}: index must be a JSON object`, { file: source });
  }
  const wm = (json as Record<string, unknown>).weight_map;
  if (typeof wm !== "object" || wm === null || Array.isArray(wm)) {
    throw new CheckpointError(
      `${source}: missing or invalid field "weight_map" (expected an object)`,
      { file: source, field: "weight_map" },
    );
  }
  const shards = new Map<string, string[]>();
  for (const [name, file] of Object.entries(wm)) {
    if (
      typeof file !== "string" || /^\.*$/.test(file) || file.includes("/") || file.includes("\\")
    ) {
      throw new CheckpointError(
        `${source}: field "weight_map"."${name}" must be a shard file name, got ${
          JSON.stringify(file)
        }`,
        { file: source, field: "weight_map" },
      );
    }
    const list = shards.get(file) ?? [];
    list.push(name);
    shards.set(file, list);
  }
  if (shards.size === 0) {
    throw new CheckpointError(`${source}: field "weight_map" is empty`, {
      file: source,
      field: "weight_map",
    });
  }
  return shards;
}

/** Options of {@link loadHfFolder}. */
export interface LoadHfFolderOptions {
  /**
   * The folder's `config.json` as the caller read and validated it (maybe with training-only
   * fields changed): the file is then not read again, and this is the checkpoint's config.
   */
  readonly config?: T5Config;
  /**
   * Called with the tensors the weights' headers list (what {@link inspectHfFolder} returns; a
   * copy the check may change) before any tensor data is read: what it throws refuses the
   * checkpoint with nothing loaded.
   */
  readonly check?: (found: {
    tensors: Map<string, FolderTensorInfo>;
    source: string;
  }) => void;
  /**
   * Refuse a float tensor with a NaN or infinite value (default true): a {@link CheckpointError}
   * naming the file, the tensor, how many and the first, since a model built from it trains to
   * NaN losses. False reads such values as they are (a half-precision round trip's overflow).
   */
  readonly finite?: boolean;
}

/**
 * Load a Hugging Face checkpoint folder: `config.json` plus `model.safetensors` or the sharded
 * index and its shards, else `pytorch_model.bin` or its sharded index and shards (torch.save's
 * zip format or torch < 1.6's legacy one, model/torch_bin.ts). Float tensors (F32/F16/BF16) load as
 * float32. Every header (a PyTorch file's zip directory and pickle) is read and checked (see
 * {@link inspectHfFolder}) before any tensor data: a shard without a tensor its index names, or a
 * tensor in two files, is refused before anything is read. Every tensor of each shard the index
 * names is loaded, also one the index's `weight_map` omits (as transformers loads each shard
 * whole), so that a caller's name check sees it rather than a silently shorter checkpoint. A
 * PyTorch tensor that is the same view of the same storage as another (tied weights) is the same
 * tensor under both names.
 *
 * Each file is read once: `config.json` (not at all when `opts.config` is given), each header,
 * then each tensor's data.
 *
 * @param dir the folder
 * @param opts the config already read, and a check of the headers' tensors before any data
 * @returns config and tensors (the caller owns and disposes the tensors)
 * @throws CheckpointError naming the file (its `file`) and tensor/field for any missing,
 *   malformed or truncated part (a missing shard with the index that lists it), or what
 *   `opts.check` throws
 */
export async function loadHfFolder(
  dir: string,
  opts: LoadHfFolderOptions = {},
): Promise<HfCheckpoint> {
  const layout = await readFolderLayout(dir, opts.config);
  const { config, files } = layout;
  const headers = await readHeaders(layout);
  opts.check?.({ tensors: new Map(headers.tensors), source: layout.source });
  const tensors = new Map<string, tf.Tensor>();
  const finite = opts.finite ?? true;
  try {
    for (const { path } of files) {
      const header = headers.torch.get(path);
      if (header === undefined) {
        await loadSafetensorsWith(path, headers.safetensors.get(path)!, undefined, tensors, finite);
      } else {
        await loadTorchBinFile(path, header, tensors, finite);
      }
    }
  } catch (e) {
    for (const t of tensors.values()) t.dispose();
    throw e;
  }
  return { config, tensors };
}

/**
 * Load the tensors of one PyTorch weights file (see {@link loadSafetensorsFile}, which this
 * mirrors): one tensor at a time, a tied view as the same tensor, an embedding table equal to one
 * loaded before as that tensor.
 *
 * @param path the `.bin` file
 * @param header its header ({@link readTorchBinHeader})
 * @param into map to add the tensors to; on error, tensors added by this call are disposed
 */
async function loadTorchBinFile(
  path: string,
  header: TorchBinHeader,
  into: Map<string, tf.Tensor>,
  finite = false,
): Promise<void> {
  await putFileTensors(path, into, async (put) => {
    for await (const { name, info, values, sameAs } of readTorchBinTensors(path, header)) {
      await put(
        name,
        () =>
          Promise.resolve(
            sameAs !== undefined ? { sameAs } : { values: values!, shape: info.shape },
          ),
      );
    }
  }, finite);
}

/** Where a checkpoint folder's weights are (see {@link readFolderLayout}). */
interface FolderLayout {
  /** The validated `config.json`. */
  config: T5Config;
  /** The weight files, each with the names the sharded index maps to it. */
  files: { path: string; names?: string[] }[];
  /** `model.safetensors`, `pytorch_model.bin`, or the sharded index. */
  source: string;
  /** The weight files' format. */
  format: "safetensors" | "torch";
}

/**
 * The weight files of a checkpoint folder (names per shard when sharded): safetensors first, as
 * transformers prefers them, then PyTorch's; undefined when it has neither.
 */
async function findWeights(dir: string): Promise<Omit<FolderLayout, "config"> | undefined> {
  const formats = [
    ["safetensors", WEIGHTS_NAME, WEIGHTS_INDEX_NAME],
    ["torch", TORCH_WEIGHTS_NAME, TORCH_WEIGHTS_INDEX_NAME],
  ] as const;
  for (const [format, name, index] of formats) {
    const single = join(dir, name);
    if (await pathExists(single)) return { files: [{ path: single }], source: single, format };
    const indexPath = join(dir, index);
    if (!(await pathExists(indexPath))) continue;
    const shards = parseIndex(await readJsonFile(indexPath, "index"), indexPath);
    return {
      files: [...shards].map(([file, names]) => ({ path: join(dir, file), names })),
      source: indexPath,
      format,
    };
  }
  return undefined;
}

/**
 * The weight files {@link loadHfFolder} reads from a folder, relative to it: the single file
 * (`model.safetensors`, else `pytorch_model.bin`), or the sharded index and each shard it names.
 *
 * @param dir the checkpoint folder
 * @returns the names, in the order read (none when the folder has no weights)
 * @throws CheckpointError naming a sharded index that is malformed
 */
export async function weightFileNames(dir: string): Promise<string[]> {
  const w = await findWeights(dir);
  if (w === undefined) return [];
  // `join` normalises (`./ck/x` is `ck/x`), so the names are taken relative, not sliced off.
  const rel = (path: string) => relative(dir, path);
  const shards = w.files.map((f) => rel(f.path));
  return w.source === w.files[0]?.path ? shards : [rel(w.source), ...shards];
}

/** A checkpoint file as a run read it: its size and content hash. */
export interface CheckpointFileRecord {
  /** Size in bytes. */
  readonly bytes: number;
  /** Hex sha256 of its bytes. */
  readonly sha256: string;
}

/** Digests of files hashed in this process, by real path, size and modification time. */
const DIGESTS = new Map<string, Promise<string>>();

/**
 * The size and sha256 of a file, read streaming (`model/hash.ts` `sha256File`, as
 * `tasks/download.ts` hashes data files). Each file is hashed once per process while its real
 * path, size and modification time stay the same (a grid runs many runs on one backbone): the
 * first call reads the whole file, at disk speed (the 44 GB of a T5-XXL's weights take minutes),
 * later ones only stat it. A file that a hub download recorded the sha256 of
 * (`.<name>.sha256.json` beside it: `model/hash.ts` `recordedSha256`) is not read at all while its
 * size and modification time are those recorded: the recorded digest is returned (a record that
 * does not fit the file is ignored, and the file hashed). Trade-off: a file changed in place
 * without a change of size or modification time (or a record edited to fit) is given the
 * recorded digest, not its bytes'.
 *
 * @param path the file
 * @returns its size and hex sha256
 * @throws CheckpointError naming the file when it cannot be read
 */
export async function fileDigest(path: string): Promise<CheckpointFileRecord> {
  try {
    const real = await Deno.realPath(path);
    const st = await Deno.stat(real);
    const key = `${real}\0${st.size}\0${st.mtime?.getTime() ?? "?"}`;
    let digest = DIGESTS.get(key);
    if (digest === undefined) {
      DIGESTS.set(
        key,
        digest = recordedSha256(real, st).then((recorded) => recorded ?? sha256File(real)),
      );
      digest.catch(() => DIGESTS.delete(key));
    }
    return { bytes: st.size, sha256: await digest };
  } catch (e) {
    throw new CheckpointError(`${path}: cannot hash (${(e as Error).message})`, {
      file: path,
      cause: e,
    });
  }
}

/**
 * The config and weight files of a checkpoint folder (names per shard when sharded): safetensors
 * first, as transformers prefers them, then PyTorch's.
 */
async function readFolderLayout(dir: string, read?: T5Config): Promise<FolderLayout> {
  const configPath = join(dir, "config.json");
  if (!(await pathExists(dir))) {
    throw new CheckpointError(`${dir}: checkpoint folder does not exist`, { file: dir });
  }
  const config = read ??
    t5ConfigFromHf(await readJsonFile(configPath, "config.json"), configPath);
  const weights = await findWeights(dir);
  if (weights !== undefined) return { config, ...weights };
  const other: string[] = [];
  for (const name of OTHER_WEIGHTS) if (await pathExists(join(dir, name))) other.push(name);
  throw new CheckpointError(
    `${dir}: no ${WEIGHTS_NAME}, ${WEIGHTS_INDEX_NAME}, ${TORCH_WEIGHTS_NAME} or ` +
      `${TORCH_WEIGHTS_INDEX_NAME}` +
      (other.length > 0
        ? `; it holds ${other.join(", ")}, which this loader does not read (safetensors and ` +
          `PyTorch only). ` + convertHint(dir)
        : ""),
    { file: dir },
  );
}

/**
 * One tensor of a checkpoint folder, from its file's header (safetensors) or pickle (PyTorch):
 * no tensor data is read to list it.
 */
export interface FolderTensorInfo {
  /** Element type. */
  readonly dtype: SafetensorsDtype;
  /** Shape (`[]` is a scalar). */
  readonly shape: readonly number[];
  /** The file holding it. */
  readonly file: string;
  /** Safetensors only: its byte range relative to the file's data section. */
  readonly dataOffsets?: TensorInfo["dataOffsets"];
}

/**
 * Every tensor of the weight files from their headers: each shard must hold the names its index
 * maps to it, and no name may be in two files. A shard's tensor the index omits is included.
 * Each file's header is returned too (by path), for loading without reading it again. A shard
 * that is not there is an error naming the index (`source`) that lists it.
 */
async function readHeaders(
  { files, format, source }: Pick<FolderLayout, "files" | "format" | "source">,
): Promise<{
  tensors: Map<string, FolderTensorInfo>;
  torch: Map<string, TorchBinHeader>;
  safetensors: Map<string, SafetensorsFileHeader>;
}> {
  const tensors = new Map<string, FolderTensorInfo>();
  const torch = new Map<string, TorchBinHeader>();
  const safetensors = new Map<string, SafetensorsFileHeader>();
  for (const { path, names } of files) {
    let header: {
      tensors: ReadonlyMap<string, { dtype: SafetensorsDtype; shape: readonly number[] }>;
    };
    try {
      if (format === "torch") {
        const th = await readTorchBinHeader(path);
        torch.set(path, th);
        header = th;
      } else {
        const sh = await readSafetensorsHeader(path);
        safetensors.set(path, sh);
        header = sh;
      }
    } catch (e) {
      // A shard the index lists but the folder lacks: which index lists it.
      if (
        names !== undefined && e instanceof CheckpointError &&
        e.cause instanceof Deno.errors.NotFound
      ) {
        throw new CheckpointError(`${e.message} (a shard that ${source} lists)`, {
          file: path,
          cause: e,
        });
      }
      throw e;
    }
    for (const name of names ?? []) {
      if (!header.tensors.has(name)) {
        throw new CheckpointError(
          `${path}: tensor "${name}" not found (the index maps it to this shard)`,
          { file: path },
        );
      }
    }
    for (const [name, info] of header.tensors) {
      const other = tensors.get(name);
      if (other !== undefined) {
        throw new CheckpointError(
          `${path}: tensor "${name}" appears in two files (also in ${other.file})`,
          { file: path },
        );
      }
      tensors.set(
        name,
        "dataOffsets" in info
          ? {
            dtype: info.dtype,
            shape: info.shape,
            file: path,
            dataOffsets: info.dataOffsets as TensorInfo["dataOffsets"],
          }
          : { dtype: info.dtype, shape: info.shape, file: path },
      );
    }
  }
  return { tensors, torch, safetensors };
}

/**
 * Read a checkpoint folder's config and tensor dtypes/shapes from the safetensors headers, or
 * the PyTorch files' zip directories and pickles, only (no tensor data is read): cheap
 * inspection of large checkpoints. The tensors are those {@link loadHfFolder} loads: every tensor
 * of each weight file, also one a sharded index omits (a tied PyTorch tensor under each name).
 *
 * @param dir the folder
 * @returns config, name → header entry plus the file holding it, and `source`: the file that
 *   lists the weights (`model.safetensors`, `pytorch_model.bin`, or the sharded index)
 * @throws CheckpointError naming the file and tensor, as {@link loadHfFolder} does
 */
export async function inspectHfFolder(
  dir: string,
): Promise<{ config: T5Config; tensors: Map<string, FolderTensorInfo>; source: string }> {
  const layout = await readFolderLayout(dir);
  return {
    config: layout.config,
    tensors: (await readHeaders(layout)).tensors,
    source: layout.source,
  };
}

/** Options of {@link saveHfFolder}. */
export interface SaveOptions {
  /** Storage type of float tensors (int32 tensors stay I32). Default float32. */
  dtype?: "float32" | "float16" | "bfloat16";
  /** Start a new shard when one would exceed this many bytes. Default 5 GB. */
  maxShardBytes?: number;
  /** More files to write into the folder (e.g. `tokenizer.json`), name → contents. */
  extraFiles?: Record<string, string | Uint8Array>;
  /**
   * Called (and awaited) at each point of the swap, for tests of a kill there: `written` (the
   * new folder is complete under its temporary name), `aside` (an existing folder was renamed
   * aside), `swapped` (the new folder is in place; the old one not yet removed).
   */
  onSwap?: (point: SaveSwapPoint) => void | Promise<void>;
}

/** Where {@link SaveOptions.onSwap} is called. */
export type SaveSwapPoint = "written" | "aside" | "swapped";

const DTYPE_OF: Record<NonNullable<SaveOptions["dtype"]>, SafetensorsDtype> = {
  float32: "F32",
  float16: "F16",
  bfloat16: "BF16",
};

interface Entry {
  name: string;
  tensor: tf.Tensor;
  dtype: SafetensorsDtype;
  shape: number[];
  bytes: number;
}

/**
 * Writes one safetensors shard to `path` (a file of the save's temporary folder) and flushes it.
 * A failure to create, write or flush it (a full disk) is thrown through `fsError` naming
 * `target`, the file it becomes, and the temporary folder (class and code kept); a tensor that
 * cannot be read back passes unchanged.
 */
async function writeShard(path: string, shard: Entry[], target: string): Promise<void> {
  // Wider dtypes first, as the reference writer orders them (stable: insertion order within a
  // width): each tensor's data starts at a multiple of its element size (the header is padded
  // to 8), which insertion order does not give when an I32 tensor follows an odd number of
  // F16/BF16 elements.
  const entries = shard.slice().sort((a, b) => dtypeBytes(b.dtype) - dtypeBytes(a.dtype));
  const { prefix } = encodeHeader(entries, { format: "pt" });
  const where = `in the temporary folder ${basename(dirname(path))}`;
  const step = async <T>(doing: string, f: () => Promise<T>): Promise<T> => {
    try {
      return await f();
    } catch (e) {
      throw fsError(e, target, `${doing} (${where})`);
    }
  };
  const file = await step("creating", () => Deno.open(path, { write: true, createNew: true }));
  try {
    let at = 0;
    const write = async (data: Uint8Array) => {
      await step(`writing at ${at} B`, () => writeAll(file, data));
      at += data.byteLength;
    };
    await write(prefix);
    for (const e of entries) {
      // Read asynchronously: webgpu in Deno cannot read GPU data back synchronously.
      const values = (await e.tensor.data()) as Float32Array | Int32Array;
      await write(encodeTypedArray(values, e.dtype));
    }
    await step("flushing", () => file.sync());
  } finally {
    file.close();
  }
}

async function writeAll(file: Deno.FsFile, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.byteLength) off += await file.write(data.subarray(off));
}

function shardName(i: number, n: number): string {
  const p = (k: number) => String(k).padStart(5, "0");
  return `model-${p(i)}-of-${p(n)}.safetensors`;
}

/**
 * Save a checkpoint folder as `save_pretrained` does: `config.json`, `generation_config.json`
 * and `model.safetensors` (or shards plus `model.safetensors.index.json` when the weights exceed
 * `maxShardBytes`). Everything is written into a temporary sibling folder, then renamed into
 * place; an existing folder is renamed away first and removed after the swap.
 *
 * @param dir destination folder
 * @param config the model configuration
 * @param tensors HF name → tensor (float32 or int32)
 * @param opts storage dtype, shard size, extra files
 */
export async function saveHfFolder(
  dir: string,
  config: T5Config,
  tensors: ReadonlyMap<string, tf.Tensor>,
  opts: SaveOptions = {},
): Promise<void> {
  const floatType = DTYPE_OF[opts.dtype ?? "float32"];
  if (!floatType) throw new Error(`saveHfFolder: unknown dtype "${opts.dtype}"`);
  const maxShard = opts.maxShardBytes ?? 5e9;
  if (!(maxShard > 0)) throw new Error(`saveHfFolder: maxShardBytes must be positive`);
  const entries: Entry[] = [];
  for (const [name, tensor] of tensors) {
    if (tensor.isDisposed) throw new Error(`saveHfFolder: tensor "${name}" is disposed`);
    let dtype: SafetensorsDtype;
    if (tensor.dtype === "float32") dtype = floatType;
    else if (tensor.dtype === "int32") dtype = "I32";
    else throw new Error(`saveHfFolder: tensor "${name}" has unsupported dtype ${tensor.dtype}`);
    const bytes = numElements(tensor.shape) * (dtype === "F32" || dtype === "I32" ? 4 : 2);
    entries.push({ name, tensor, dtype, shape: tensor.shape, bytes });
  }
  const reserved = new Set(["config.json", "generation_config.json", WEIGHTS_INDEX_NAME]);
  for (const name of Object.keys(opts.extraFiles ?? {})) {
    if (
      !/^[\w.-]+$/.test(name) || name.startsWith(".") || reserved.has(name) ||
      /\.safetensors$/.test(name)
    ) {
      throw new Error(`saveHfFolder: invalid or reserved extra file name "${name}"`);
    }
  }
  // Greedy sharding in insertion order, as save_pretrained does.
  const shards: Entry[][] = [];
  let cur: Entry[] = [];
  let curBytes = 0;
  for (const e of entries) {
    if (cur.length > 0 && curBytes + e.bytes > maxShard) {
      shards.push(cur);
      cur = [];
      curBytes = 0;
    }
    cur.push(e);
    curBytes += e.bytes;
  }
  if (cur.length > 0 || shards.length === 0) shards.push(cur);

  const parent = dirname(dir);
  await Deno.mkdir(parent, { recursive: true });
  await removeStaleSaveTemps(parent);
  const held = await makeHeldTempDir(parent, `.${basename(dir)}`);
  const tmp = held.path;
  const tag = tempTagOf(tmp);
  liveSaves.add(tag);
  try {
    const hfConfig = { ...t5ConfigToHf(config), dtype: opts.dtype ?? "float32" };
    // Every file is flushed to disk (writeFileAtomic, writeShard) before the folder is renamed
    // into place, so that after a power loss the folder does not hold empty files either.
    await writeFileAtomic(join(tmp, "config.json"), JSON.stringify(hfConfig, null, 2) + "\n");
    const gen = {
      decoder_start_token_id: config.decoderStartTokenId,
      eos_token_id: config.eosTokenId,
      pad_token_id: config.padTokenId,
    };
    await writeFileAtomic(
      join(tmp, "generation_config.json"),
      JSON.stringify(gen, null, 2) + "\n",
    );
    if (shards.length === 1) {
      await writeShard(join(tmp, WEIGHTS_NAME), shards[0]!, join(dir, WEIGHTS_NAME));
    } else {
      const weightMap: Record<string, string> = {};
      let total = 0;
      for (let i = 0; i < shards.length; i++) {
        const name = shardName(i + 1, shards.length);
        await writeShard(join(tmp, name), shards[i]!, join(dir, name));
        for (const e of shards[i]!) {
          weightMap[e.name] = name;
          total += e.bytes;
        }
      }
      const sortedMap = Object.fromEntries(
        Object.entries(weightMap).sort(([a], [b]) => (a < b ? -1 : 1)),
      );
      await writeFileAtomic(
        join(tmp, WEIGHTS_INDEX_NAME),
        JSON.stringify({ metadata: { total_size: total }, weight_map: sortedMap }, null, 2) + "\n",
      );
    }
    for (const [name, content] of Object.entries(opts.extraFiles ?? {})) {
      await writeFileAtomic(join(tmp, name), content);
    }
    // The weights files were created in place (writeShard), not renamed in: flush the folder's
    // names too, or a power cut after the rename below could leave it without them.
    await syncDir(tmp);
    await opts.onSwap?.("written");
    await swapFolderInto(tmp, dir, opts.onSwap);
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  } finally {
    held.release();
    liveSaves.delete(tag);
  }
}

/**
 * The tags of this process's saves in progress (their temporary is held): a sweep of this process
 * leaves their moved-aside folders alone without asking the lock, which on NFS does not exclude
 * another handle of the same process.
 */
const liveSaves = new Set<string>();

/**
 * The temporary folders {@link saveHfFolder} builds a checkpoint in, beside it:
 * `.<name>.tmp-<pid>-<12 hex>` (held locked while the save runs), and the unlocked
 * `.<name>.tmp-<base36 time>-<base36>` of earlier versions.
 */
const SAVE_TEMPS: TempPattern = {
  kind: "directory",
  held: new RegExp(String.raw`^\..+\.tmp-${TEMP_TAG_SOURCE}$`),
  legacy: /^\..+\.tmp-[0-9a-z]+-[0-9a-z]{1,6}$/,
};

/** A folder {@link swapInto} moved aside: `.<name>.old-<tag of its save's temporary>`. */
const SAVE_OLD = new RegExp(
  String.raw`^\.(?<name>.+)\.old-(?<tag>${TEMP_TAG_SOURCE}|[0-9a-z]+-[0-9a-z]{1,6})$`,
);

/**
 * Cleans what saves killed part-way (SIGKILL, power cut) left in `parent`, the folder holding
 * checkpoint folders (e.g. the pretrained-backbone cache), and nothing else:
 * - temporary folders (`.<name>.tmp-<pid>-<12 hex>`) whose save has ended: a running save holds
 *   its folder locked (see `removeStaleTemps` in fs.ts; unlocked names of earlier versions go
 *   once a day old);
 * - folders moved aside (`.<name>.old-<tag>`) whose save has ended: its temporary
 *   `.<name>.tmp-<tag>` is gone (renamed into place, or swept as abandoned just before) or
 *   nobody holds it locked. The lock decides, not the pid in the name, so a process restarted
 *   under the same pid (a container) restores its backbone cache too; this process's own saves
 *   in progress are known by their tags. Names of earlier versions (unlocked) count once
 *   unchanged for `legacyMaxAgeMs`. When `<name>` itself is missing (the save died between its
 *   two renames) the folder is renamed back, restoring the previous checkpoint, and the dead
 *   save's temporary is removed; else the folder is removed;
 * - folders whose removal was killed part-way (`.<name>.del-<tag>`, fs.ts `discardFolder`, which
 *   removes old folders here so that a partial one never keeps a name that is restored).
 * Housekeeping never fails the caller.
 *
 * @param parent the folder holding checkpoint folders
 * @param opts `legacyMaxAgeMs`: age of abandoned names of earlier versions (default 24 hours);
 *   `now`: the clock (tests)
 * @returns the names removed or renamed back
 */
export async function removeStaleSaveTemps(
  parent: string,
  opts: {
    readonly legacyMaxAgeMs?: number;
    readonly now?: number;
  } = {},
): Promise<string[]> {
  return [
    ...await removeStaleTemps(parent, SAVE_TEMPS, opts),
    ...await recoverAsideFolders(parent, SAVE_OLD, { ...opts, liveTags: liveSaves }),
  ];
}
