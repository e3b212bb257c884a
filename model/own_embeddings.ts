/**
 * Which stacks of a checkpoint folder have a token embedding table of their own, as
 * `loadHfFolder` (model/checkpoint.ts) and `t5FromTensors` (model/t5.ts) would decide it,
 * without loading the checkpoint: for a memory estimate made before a run (benchmarks/cli.ts's
 * preflight).
 *
 * @module
 */
import { type FolderTensorInfo, inspectHfFolder, sameBits } from "./checkpoint.ts";
import {
  dtypeBytes,
  numElements,
  openWeightsFile,
  readAt,
  readSafetensorsHeader,
  type SafetensorsDtype,
  toTypedArray,
} from "./safetensors.ts";
import { readTorchBinTensors } from "./torch_bin.ts";

/** A stack that may have a token table of its own (`T5Config.ownEmbeddings`). */
export type EmbeddingStack = "encoder" | "decoder";

/** Elements compared per read of a safetensors table (4 MB of float32 per table at a time). */
const CHUNK_ELEMENTS = 1 << 20;

const isFloat = (d: SafetensorsDtype) => d === "F32" || d === "F16" || d === "BF16";

/**
 * Whether two safetensors tensors decode to the same values, bit for bit (float32 after the
 * loader's conversion), read chunk by chunk by offset: only these two tensors' bytes are read,
 * and reading stops at the first chunk that differs.
 */
async function equalSafetensors(
  [aName, a]: [string, FolderTensorInfo],
  [bName, b]: [string, FolderTensorInfo],
  chunkElements: number,
): Promise<boolean> {
  const n = numElements(a.shape);
  const starts = new Map<string, number>();
  for (const f of new Set([a.file, b.file])) {
    starts.set(f, (await readSafetensorsHeader(f)).dataStart);
  }
  const opened = new Map<string, Deno.FsFile>();
  try {
    for (const f of starts.keys()) {
      opened.set(f, (await openWeightsFile(f, "safetensors file")).file);
    }
    const chunk = async (t: FolderTensorInfo, name: string, from: number, count: number) => {
      const es = dtypeBytes(t.dtype);
      const where = `${t.file}: tensor "${name}"`;
      const at = starts.get(t.file)! + t.dataOffsets![0] + from * es;
      return toTypedArray(
        t.dtype,
        await readAt(opened.get(t.file)!, at, count * es, where, "its data", t.file),
        where,
        t.file,
      );
    };
    for (let from = 0; from < n; from += chunkElements) {
      const count = Math.min(chunkElements, n - from);
      const [x, y] = [
        await chunk(a, aName, from, count),
        await chunk(b, bName, from, count),
      ];
      if (!sameBits(x, y)) return false;
    }
    return true;
  } finally {
    for (const f of opened.values()) f.close();
  }
}

/**
 * The embedding tables of a PyTorch checkpoint, decoded (each file's tables in one pass; a view
 * of the same storage as an earlier table is that table's values).
 */
async function torchTables(
  tables: Map<string, FolderTensorInfo>,
): Promise<Map<string, Float32Array | Int32Array>> {
  const byFile = new Map<string, Set<string>>();
  for (const [name, t] of tables) byFile.set(t.file, (byFile.get(t.file) ?? new Set()).add(name));
  const values = new Map<string, Float32Array | Int32Array>();
  for (const [file, names] of byFile) {
    for await (const read of readTorchBinTensors(file, undefined, names)) {
      values.set(read.name, read.sameAs !== undefined ? values.get(read.sameAs)! : read.values!);
    }
  }
  return values;
}

/**
 * The stacks whose `<stack>.embed_tokens.weight` in a checkpoint folder would be a table of its
 * own once loaded: present, and not bit-identical (as float32, after the loader's conversion) to
 * `shared.weight`. This is the loader's rule: `loadHfFolder` (model/checkpoint.ts) gives a
 * table bit-identical to `shared.weight` the same tensor, and `t5FromTensors` lists a stack in
 * `ownEmbeddings` when its table is not `shared.weight`'s storage. The tensor index is read from
 * the safetensors headers (or the sharded index and its shards' headers, or a PyTorch file's zip
 * directory and pickle); of the tensor data, only the tables are read: a safetensors table chunk
 * by chunk by offset,
 * stopping at the first difference (a checkpoint that stores equal copies is read through both
 * tables); a PyTorch file's tables whole (as its loader does).
 *
 * @param dir the checkpoint folder
 * @param opts `chunkElements`: elements of a safetensors table read at a time (default 2^20;
 *   tests make it small to cross chunk boundaries)
 * @returns the stacks in `encoder`, `decoder` order (empty when there is no `shared.weight`: the
 *   loader refuses such a checkpoint, and the run says why)
 * @throws Error naming the file (and tensor) when the folder, an index or a header is missing or
 *   malformed, or a table cannot be read, as `loadHfFolder` does
 */
export async function checkpointOwnEmbeddings(
  dir: string,
  opts: { readonly chunkElements?: number } = {},
): Promise<EmbeddingStack[]> {
  const { tensors } = await inspectHfFolder(dir);
  const shared = tensors.get("shared.weight");
  if (shared === undefined) return [];
  const tables = new Map<string, FolderTensorInfo>([["shared.weight", shared]]);
  for (const stack of ["encoder", "decoder"] as const) {
    const t = tensors.get(`${stack}.embed_tokens.weight`);
    if (t !== undefined) tables.set(`${stack}.embed_tokens.weight`, t);
  }
  const torch = shared.dataOffsets === undefined ? await torchTables(tables) : undefined;
  const own: EmbeddingStack[] = [];
  for (const stack of ["encoder", "decoder"] as const) {
    const t = tables.get(`${stack}.embed_tokens.weight`);
    if (t === undefined) continue;
    // The loader compares only tables of one kind (float or integer) and shape.
    const comparable = isFloat(t.dtype) === isFloat(shared.dtype) &&
      t.shape.join(",") === shared.shape.join(",");
    let equal = false;
    if (comparable && torch !== undefined) {
      equal = sameBits(torch.get("shared.weight")!, torch.get(`${stack}.embed_tokens.weight`)!);
    } else if (comparable) {
      equal = await equalSafetensors(
        ["shared.weight", shared],
        [`${stack}.embed_tokens.weight`, t],
        opts.chunkElements ?? CHUNK_ELEMENTS,
      );
    }
    if (!equal) own.push(stack);
  }
  return own;
}
