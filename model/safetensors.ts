/**
 * The safetensors file format: an 8-byte little-endian header length N, N bytes of JSON header
 * (`{"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}`, padded
 * with spaces to a multiple of 8 as the reference writer does), then the raw little-endian tensor
 * bytes. Offsets are relative to the first byte after the header.
 *
 * Decoding supports F32, F16, BF16 (to `Float32Array`), I32 and I64 (to `Int32Array`, range
 * checked). Encoding writes F32, F16, BF16 and I32 with round-to-nearest-even for the 16-bit
 * float formats. Assumes a little-endian host (every platform Deno runs on).
 *
 * @module
 */

import { f16ArrayToF32, f32BitsToBf16, f32BitsToF16 } from "./float16.ts";
import { type FileIdentity, fileIdentity } from "./fs.ts";
import { CheckpointError } from "./checkpoint_error.ts";

export { bf16BitsToF32, f16BitsToF32, f32BitsToBf16, f32BitsToF16 } from "./float16.ts";

/** A dtype this module can read. */
export type SafetensorsDtype = "F32" | "F16" | "BF16" | "I32" | "I64";

const DTYPE_BYTES: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2, I32: 4, I64: 8 };

/** Largest header accepted (the reference implementation's limit, 100 MB). */
export const MAX_HEADER_BYTES = 100_000_000;

/** One tensor's entry in a safetensors header. */
export interface TensorInfo {
  /** Element type. */
  readonly dtype: SafetensorsDtype;
  /** Shape (`[]` is a scalar). */
  readonly shape: readonly number[];
  /** Byte range [begin, end) relative to the start of the data section. */
  readonly dataOffsets: readonly [number, number];
}

/** A parsed and validated safetensors header. */
export interface SafetensorsHeader {
  /** Tensor entries in header order. */
  readonly tensors: Map<string, TensorInfo>;
  /** The `__metadata__` string map, if present. */
  readonly metadata: Record<string, string> | undefined;
  /** Absolute file offset of the data section (8 + header length). */
  readonly dataStart: number;
}

/** A tensor's raw bytes with its dtype and shape. */
export interface RawTensor {
  /** Element type. */
  readonly dtype: SafetensorsDtype;
  /** Shape. */
  readonly shape: readonly number[];
  /** Little-endian element bytes. */
  readonly data: Uint8Array;
}

/** Number of elements of a shape (1 for a scalar). */
export function numElements(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Bytes per element of a dtype. */
export function dtypeBytes(dtype: SafetensorsDtype): number {
  return DTYPE_BYTES[dtype];
}

/**
 * Read the 8-byte header length from the first bytes of a file.
 *
 * @param prefix at least the first 8 bytes of the file
 * @param fileSize total file size in bytes
 * @param source file name for errors
 * @returns the header length N
 * @throws CheckpointError naming the source when the file is too short or N is out of range
 */
export function parseHeaderLength(prefix: Uint8Array, fileSize: number, source: string): number {
  if (prefix.byteLength < 8 || fileSize < 8) {
    throw new CheckpointError(
      `${source}: truncated safetensors file (${fileSize} bytes; the 8-byte header length is missing)`,
      { file: source },
    );
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw new CheckpointError(
      `${source}: safetensors header length ${n} exceeds ${MAX_HEADER_BYTES} bytes`,
      { file: source },
    );
  }
  const len = Number(n);
  if (8 + len > fileSize) {
    throw new CheckpointError(
      `${source}: truncated safetensors header: header length ${len} needs ${
        8 + len
      } bytes but the file has ${fileSize}`,
      { file: source },
    );
  }
  return len;
}

/**
 * Parse and validate a safetensors header.
 *
 * @param headerBytes the N header bytes (without the 8-byte length prefix)
 * @param fileSize total file size, used to bound `data_offsets`
 * @param source file name for errors
 * @returns the parsed header
 * @throws CheckpointError naming the source and tensor for invalid JSON, unknown dtypes, bad
 *   shapes, offsets out of range (a data section shorter than they say: "the file is truncated"),
 *   overlapping tensors, or a size that does not match shape × dtype
 */
export function parseHeader(
  headerBytes: Uint8Array,
  fileSize: number,
  source: string,
): SafetensorsHeader {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(headerBytes));
  } catch (e) {
    throw new CheckpointError(
      `${source}: safetensors header is not valid JSON: ${(e as Error).message}`,
      { file: source },
    );
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new CheckpointError(`${source}: safetensors header must be a JSON object`, {
      file: source,
    });
  }
  const dataStart = 8 + headerBytes.byteLength;
  const dataLen = fileSize - dataStart;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> | undefined;
  for (const [name, v] of Object.entries(json as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (typeof v !== "object" || v === null || Array.isArray(v)) {
        throw new CheckpointError(`${source}: "__metadata__" must be an object of strings`, {
          file: source,
        });
      }
      for (const [k, s] of Object.entries(v)) {
        if (typeof s !== "string") {
          throw new CheckpointError(
            `${source}: "__metadata__"."${k}" must be a string, got ${typeof s}`,
            { file: source },
          );
        }
      }
      metadata = v as Record<string, string>;
      continue;
    }
    const where = `${source}: tensor "${name}"`;
    if (typeof v !== "object" || v === null) {
      throw new CheckpointError(`${where}: entry must be an object`, { file: source });
    }
    const e = v as Record<string, unknown>;
    const dtype = e.dtype;
    if (typeof dtype !== "string" || !Object.hasOwn(DTYPE_BYTES, dtype)) {
      throw new CheckpointError(
        `${where}: unknown or unsupported dtype ${JSON.stringify(dtype)} (supported: ${
          Object.keys(DTYPE_BYTES).join(", ")
        })`,
        { file: source },
      );
    }
    const shape = e.shape;
    if (
      !Array.isArray(shape) ||
      !shape.every((d) => typeof d === "number" && Number.isInteger(d) && d >= 0)
    ) {
      throw new CheckpointError(`${where}: "shape" must be an array of non-negative integers`, {
        file: source,
      });
    }
    const off = e.data_offsets;
    if (
      !Array.isArray(off) || off.length !== 2 ||
      !off.every((d) =>
        typeof d === "number" && Number.isInteger(d) && d >= 0 && d <= Number.MAX_SAFE_INTEGER
      )
    ) {
      // Past 2^53 a number is no byte offset (1e300 was shown rounded and called a truncation).
      throw new CheckpointError(
        `${where}: "data_offsets" must be [begin, end] non-negative integers (at most 2^53 - 1)`,
        { file: source },
      );
    }
    const [begin, end] = off as [number, number];
    if (begin > end || end > dataLen) {
      // A data section shorter than the header's offsets say: the file was cut short.
      const truncated = begin <= end ? " (the file is truncated: an interrupted download?)" : "";
      throw new CheckpointError(
        `${where}: data_offsets [${begin}, ${end}] out of range (data section has ${dataLen} ` +
          `bytes)${truncated}`,
        { file: source },
      );
    }
    const want = numElements(shape as number[]) * DTYPE_BYTES[dtype as SafetensorsDtype];
    if (end - begin !== want) {
      throw new CheckpointError(
        `${where}: data_offsets span ${end - begin} bytes but shape [${
          shape.join(", ")
        }] x ${dtype} needs ${want}`,
        { file: source },
      );
    }
    tensors.set(name, {
      dtype: dtype as SafetensorsDtype,
      shape: shape as number[],
      dataOffsets: [begin, end],
    });
  }
  // Like the reference implementation (safetensors `validate`): sorted by offsets, the tensors
  // must tile the data section from byte 0 to the end of the file, with no overlap, hole or
  // trailing bytes ("MetadataIncompleteBuffer"). Empty tensors sit at the running offset.
  const sorted = [...tensors.entries()].sort((a, b) =>
    a[1].dataOffsets[0] - b[1].dataOffsets[0] || a[1].dataOffsets[1] - b[1].dataOffsets[1]
  );
  let cursor = 0;
  let prev: [string, TensorInfo] | undefined;
  for (const [name, t] of sorted) {
    const [begin, end] = t.dataOffsets;
    if (begin < cursor) {
      const [pn, p] = prev!;
      throw new CheckpointError(
        `${source}: tensors "${pn}" [${
          p.dataOffsets.join(", ")
        }] and "${name}" [${begin}, ${end}] overlap`,
        { file: source },
      );
    }
    if (begin > cursor) {
      throw new CheckpointError(
        `${source}: data section not fully covered: tensor "${name}" starts at byte ${begin} but ${
          prev === undefined ? "the data section starts at 0" : `"${prev[0]}" ends at ${cursor}`
        } (a hole of ${begin - cursor} bytes)`,
        { file: source },
      );
    }
    cursor = end;
    prev = [name, t];
  }
  if (cursor !== dataLen) {
    throw new CheckpointError(
      `${source}: data section not fully covered: ${dataLen - cursor} trailing bytes after ${
        prev === undefined ? "the header (no tensors)" : `tensor "${prev[0]}" (ends at ${cursor})`
      }; the last tensor must end at the end of the file`,
      { file: source },
    );
  }
  return { tensors, metadata, dataStart };
}

/**
 * Opens a weights file for reading: the open file and its stat (the caller closes the file).
 *
 * @param path the file
 * @param kind what it should be, for errors, e.g. `safetensors file`
 * @returns the open file and its stat
 * @throws CheckpointError naming the file when it is missing, cannot be opened or is no file
 */
export async function openWeightsFile(
  path: string,
  kind: string,
): Promise<{ file: Deno.FsFile; stat: Deno.FileInfo }> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new CheckpointError(`${path}: missing ${kind}`, { file: path, cause: e });
    }
    throw new CheckpointError(`${path}: cannot open: ${(e as Error).message}`, {
      file: path,
      cause: e,
    });
  }
  try {
    const stat = await file.stat();
    if (!stat.isFile) {
      throw new CheckpointError(`${path}: not a ${kind} (a folder or other non-file)`, {
        file: path,
      });
    }
    return { file, stat };
  } catch (e) {
    file.close();
    throw e;
  }
}

/**
 * The header of an open safetensors file of `size` bytes (the tensor data is not read).
 *
 * @param file the open file
 * @param size its size when it was opened
 * @param path the file, for errors
 * @returns the parsed header
 * @throws CheckpointError naming the file when it is truncated (or shrank since it was opened)
 *   or malformed
 */
export async function readOpenSafetensorsHeader(
  file: Deno.FsFile,
  size: number,
  path: string,
): Promise<SafetensorsHeader> {
  const len = parseHeaderLength(
    await readAt(file, 0, Math.min(8, size), path, "its header length"),
    size,
    path,
  );
  return parseHeader(await readAt(file, 8, len, path, "its header"), size, path);
}

/** A safetensors file's header, with the identity of the file it was read from. */
export interface SafetensorsFileHeader extends SafetensorsHeader {
  /**
   * The file as it was when this header was read (size, times, inode, device): a loader that
   * reads the tensor data later checks that the file is still this one (`checkUnchanged`).
   */
  readonly identity: FileIdentity;
}

/**
 * Read only the header of a safetensors file (the tensor data is not read).
 *
 * @param path the file
 * @returns the parsed header, and the file's identity when it was read
 * @throws CheckpointError naming the file when it is missing, truncated or malformed
 */
export async function readSafetensorsHeader(path: string): Promise<SafetensorsFileHeader> {
  const { file, stat } = await openWeightsFile(path, "safetensors file");
  try {
    return {
      ...await readOpenSafetensorsHeader(file, stat.size, path),
      identity: fileIdentity(stat),
    };
  } finally {
    file.close();
  }
}

/**
 * Read `length` bytes at `position` from an open file.
 *
 * @throws Error when the file ends early
 */
export async function readExactly(
  file: Deno.FsFile,
  position: number,
  length: number,
): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  await file.seek(position, Deno.SeekMode.Start);
  let got = 0;
  while (got < length) {
    const n = await file.read(out.subarray(got));
    if (n === null) throw new Error(`unexpected end of file at byte ${position + got}`);
    got += n;
  }
  return out;
}

/**
 * `length` bytes at `position` of an open weights file, or an error naming the file (and what was
 * being read): when it ends early, it shrank after its size was taken (truncated or rewritten
 * meanwhile), which the size checks made at open cannot see, and the error says so; a read that
 * fails otherwise (a disk error) is named as it is.
 *
 * @param file the open file
 * @param position the first byte
 * @param length how many bytes
 * @param where the file, and the tensor or record being read, for errors
 * @param what what the bytes are, for errors
 * @param path the file, the error's `file` (default `where`)
 * @returns the bytes
 * @throws CheckpointError beginning with `where` when the read fails
 */
export async function readAt(
  file: Deno.FsFile,
  position: number,
  length: number,
  where: string,
  what: string,
  path: string = where,
): Promise<Uint8Array> {
  try {
    return await readExactly(file, position, length);
  } catch (e) {
    const message = (e as Error).message;
    // Only the end of the file says it shrank; another failure (a disk error) is given as it is.
    const shrank = message.startsWith("unexpected end of file")
      ? "; the file is shorter than when it was opened (truncated or rewritten meanwhile?)"
      : "";
    throw new CheckpointError(
      `${where}: ${message} while reading ${what} (bytes ${position}–${
        position + length
      })${shrank}`,
      { file: path, cause: e },
    );
  }
}

/**
 * Decode a whole safetensors file held in memory.
 *
 * @param bytes the file contents
 * @param source file name for errors
 * @returns the tensors (data are views into `bytes`) and metadata
 */
export function decodeSafetensors(
  bytes: Uint8Array,
  source: string,
): { tensors: Map<string, RawTensor>; metadata: Record<string, string> | undefined } {
  const len = parseHeaderLength(bytes, bytes.byteLength, source);
  const header = parseHeader(bytes.subarray(8, 8 + len), bytes.byteLength, source);
  const tensors = new Map<string, RawTensor>();
  for (const [name, t] of header.tensors) {
    const [b, e] = t.dataOffsets;
    tensors.set(name, {
      dtype: t.dtype,
      shape: t.shape,
      data: bytes.subarray(header.dataStart + b, header.dataStart + e),
    });
  }
  return { tensors, metadata: header.metadata };
}

/**
 * Convert raw little-endian tensor bytes to a fresh typed array: floats to `Float32Array`,
 * integers to `Int32Array`.
 *
 * @param dtype element type of `data`
 * @param data the bytes (any alignment; copied)
 * @param where tensor description for errors (I64 values outside the int32 range)
 * @param path the file, the error's `file` (default `where`)
 * @throws CheckpointError beginning with `where` for an I64 value outside the int32 range
 */
export function toTypedArray(
  dtype: SafetensorsDtype,
  data: Uint8Array,
  where = "tensor",
  path: string = where,
): Float32Array | Int32Array {
  const copy = data.slice();
  switch (dtype) {
    case "F32":
      return new Float32Array(copy.buffer, 0, copy.byteLength / 4);
    case "I32":
      return new Int32Array(copy.buffer, 0, copy.byteLength / 4);
    case "F16": {
      return f16ArrayToF32(new Uint16Array(copy.buffer, 0, copy.byteLength / 2));
    }
    case "BF16": {
      const h = new Uint16Array(copy.buffer, 0, copy.byteLength / 2);
      const out = new Float32Array(h.length);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < h.length; i++) bits[i] = h[i]! << 16;
      return out;
    }
    case "I64": {
      const v = new BigInt64Array(copy.buffer, 0, copy.byteLength / 8);
      const out = new Int32Array(v.length);
      for (let i = 0; i < v.length; i++) {
        const x = v[i]!;
        if (x > 2147483647n || x < -2147483648n) {
          throw new CheckpointError(
            `${where}: I64 value ${x} at index ${i} does not fit in int32`,
            { file: path },
          );
        }
        out[i] = Number(x);
      }
      return out;
    }
  }
}

/**
 * Encode values as little-endian bytes of a dtype (F32, F16, BF16 from floats; I32 from ints).
 *
 * @param values the elements
 * @param dtype the target type
 */
export function encodeTypedArray(
  values: Float32Array | Int32Array,
  dtype: SafetensorsDtype,
): Uint8Array {
  if (dtype === "I32" || dtype === "I64") {
    if (!(values instanceof Int32Array)) throw new Error(`cannot encode floats as ${dtype}`);
    if (dtype === "I32") return new Uint8Array(values.slice().buffer);
    const out = new BigInt64Array(values.length);
    for (let i = 0; i < values.length; i++) out[i] = BigInt(values[i]!);
    return new Uint8Array(out.buffer);
  }
  if (!(values instanceof Float32Array)) throw new Error(`cannot encode integers as ${dtype}`);
  if (dtype === "F32") return new Uint8Array(values.slice().buffer);
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  const conv = dtype === "F16" ? f32BitsToF16 : f32BitsToBf16;
  for (let i = 0; i < bits.length; i++) out[i] = conv(bits[i]!);
  return new Uint8Array(out.buffer);
}

/**
 * Build the header bytes (length prefix + space-padded JSON) for tensors laid out back to back
 * in the given order.
 *
 * @param entries name, dtype and shape of each tensor, in data order
 * @param metadata optional `__metadata__` string map
 * @returns the prefix bytes to write before the data, and each tensor's offsets
 */
export function encodeHeader(
  entries: readonly { name: string; dtype: SafetensorsDtype; shape: readonly number[] }[],
  metadata?: Record<string, string>,
): { prefix: Uint8Array; dataBytes: number } {
  const obj: Record<string, unknown> = {};
  if (metadata) obj.__metadata__ = metadata;
  let off = 0;
  for (const t of entries) {
    if (t.name === "__metadata__") throw new Error(`tensor name "__metadata__" is reserved`);
    if (Object.hasOwn(obj, t.name)) throw new Error(`duplicate tensor name "${t.name}"`);
    const n = numElements(t.shape) * DTYPE_BYTES[t.dtype];
    obj[t.name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [off, off + n] };
    off += n;
  }
  let json = new TextEncoder().encode(JSON.stringify(obj));
  const padded = Math.ceil(json.byteLength / 8) * 8;
  if (padded !== json.byteLength) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const prefix = new Uint8Array(8 + padded);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(padded), true);
  prefix.set(json, 8);
  return { prefix, dataBytes: off };
}

/**
 * Order tensors as the reference writer does: larger element size first, then by name, so each
 * tensor's data is aligned to its element size.
 */
export function referenceOrder<T extends { name: string; dtype: SafetensorsDtype }>(
  entries: readonly T[],
): T[] {
  return [...entries].sort((a, b) =>
    DTYPE_BYTES[b.dtype] - DTYPE_BYTES[a.dtype] || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
  );
}

/**
 * Encode tensors into a complete safetensors file in memory.
 *
 * @param tensors name → raw tensor (its `data.byteLength` must equal shape × dtype size)
 * @param metadata optional `__metadata__`
 */
export function encodeSafetensors(
  tensors: ReadonlyMap<string, RawTensor>,
  metadata?: Record<string, string>,
): Uint8Array {
  const entries = referenceOrder([...tensors].map(([name, t]) => ({ name, ...t })));
  for (const t of entries) {
    const want = numElements(t.shape) * DTYPE_BYTES[t.dtype];
    if (t.data.byteLength !== want) {
      throw new Error(
        `tensor "${t.name}": ${t.data.byteLength} data bytes but shape [${
          t.shape.join(", ")
        }] x ${t.dtype} needs ${want}`,
      );
    }
  }
  const { prefix, dataBytes } = encodeHeader(entries, metadata);
  const out = new Uint8Array(prefix.byteLength + dataBytes);
  out.set(prefix);
  let off = prefix.byteLength;
  for (const t of entries) {
    out.set(t.data, off);
    off += t.data.byteLength;
  }
  return out;
}
