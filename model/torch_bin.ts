/**
 * PyTorch checkpoints (`pytorch_model.bin`) as `torch.save` writes them since torch 1.6: a zip
 * archive (entries stored, uncompressed; ZIP64 when large) holding `<archive>/data.pkl`, a pickle
 * of the state dict (name → tensor), and one entry `<archive>/data/<key>` of raw little-endian
 * bytes per storage. A tensor is a view of a storage: element offset, shape and strides, so
 * several tensors may share one storage (tied weights) and a tensor may be non-contiguous.
 *
 * The pickle is read by a small, safe unpickler that runs no code: it knows only the opcodes
 * `torch.save` emits and only the globals `collections.OrderedDict`, `torch._utils`'s
 * `_rebuild_tensor_v2`, `_rebuild_parameter` and `_rebuild_parameter_with_state`, and the
 * `torch.*Storage` types; anything else is refused with an error naming the file, the opcode or
 * global, and its byte (a GLOBAL's module and class names are UTF-8, as Python 3 reads them). The
 * zip's central directory and the pickle are read first
 * ({@link readTorchBinHeader}: names, dtypes, shapes, no tensor data), then each tensor's bytes
 * alone ({@link readTorchBinTensors}), so a 44 GB checkpoint is never held whole in memory.
 * F32, F16 and BF16 become float32, I32 and I64 int32, as model/safetensors.ts does.
 *
 * The legacy format of torch < 1.6 (`_use_new_zipfile_serialization=False`, as some 2019–2020
 * hub checkpoints are) is read too, with the same unpickler and allow-list: pickles of torch's
 * magic number, protocol version 1001, a sys_info dict, the state dict (persistent ids
 * ('storage', type, key, location, numel, view metadata)) and the list of storage keys, then per
 * key an 8-byte element count and the storage's bytes. Its header is the pickles (read in
 * growing chunks: they state no length) and each count; the storages are seeked past. Files saved
 * under Python 2 (pickle protocol 2, its `str` as SHORT_BINSTRING and BINSTRING) are read too,
 * each such string decoded as torch.load decodes it (UTF-8, its default encoding; latin-1 when
 * not UTF-8, as `encoding="latin1"` gives). The older tar format of torch < 0.4 is not read.
 * A tensor of more than {@link MAX_TENSOR_ELEMENTS} elements is refused from the header.
 *
 * @module
 */
import {
  dtypeBytes,
  numElements,
  openWeightsFile,
  readAt,
  type SafetensorsDtype,
  toTypedArray,
} from "./safetensors.ts";
import { checkUnchanged, type FileIdentity, fileIdentity } from "./fs.ts";
import { CheckpointError } from "./checkpoint_error.ts";
import { crc32 } from "node:zlib";

/** Largest `data.pkl` accepted (a T5-XXL state dict's is under 1 MB). */
export const MAX_PICKLE_BYTES = 256 * 1024 * 1024;

/**
 * Most elements one tensor may have (2^31 - 1; T5-XXL's largest has 2^27): tfjs indexes a
 * tensor's elements with int32, and a view may hold many more elements than its storage (a
 * stride-0 view repeats one), so its row-major copy is refused from the header instead of
 * failing to allocate.
 */
export const MAX_TENSOR_ELEMENTS = 2 ** 31 - 1;

/**
 * The element a strided view of a non-empty shape reaches last, counted from its first (the
 * view then spans this many elements plus one).
 */
function lastElement(shape: readonly number[], stride: readonly number[]): number {
  return shape.reduce((a, s, i) => a + (s - 1) * stride[i]!, 0);
}

/** A storage type of `torch.save`, with its dtype here (undefined: not read) and element size. */
const STORAGE_TYPES: Record<string, { dtype?: SafetensorsDtype; bytes: number; what: string }> = {
  FloatStorage: { dtype: "F32", bytes: 4, what: "float32" },
  HalfStorage: { dtype: "F16", bytes: 2, what: "float16" },
  BFloat16Storage: { dtype: "BF16", bytes: 2, what: "bfloat16" },
  IntStorage: { dtype: "I32", bytes: 4, what: "int32" },
  LongStorage: { dtype: "I64", bytes: 8, what: "int64" },
  DoubleStorage: { bytes: 8, what: "float64" },
  ShortStorage: { bytes: 2, what: "int16" },
  CharStorage: { bytes: 1, what: "int8" },
  ByteStorage: { bytes: 1, what: "uint8" },
  BoolStorage: { bytes: 1, what: "bool" },
  ComplexFloatStorage: { bytes: 8, what: "complex64" },
  ComplexDoubleStorage: { bytes: 16, what: "complex128" },
};

/** One tensor of a PyTorch checkpoint: a view of one of its storages. */
export interface TorchTensorInfo {
  /** Element type (that of its storage). */
  readonly dtype: SafetensorsDtype;
  /** Shape (`[]` is a scalar). */
  readonly shape: readonly number[];
  /** Strides in elements, one per dimension. */
  readonly stride: readonly number[];
  /** The view's first element in its storage. */
  readonly storageOffset: number;
  /** The storage's key (in the zip format, its entry is `<archive>/data/<key>`). */
  readonly storage: string;
}

/** One storage of a PyTorch checkpoint: where its bytes are (a zip entry, or a file offset). */
export interface TorchStorage {
  /** Element type. */
  readonly dtype: SafetensorsDtype;
  /** Number of elements. */
  readonly numel: number;
  /** The zip entry holding its bytes (zip format). */
  readonly entry?: ZipEntry;
  /** The file offset of its bytes (legacy format; checked to lie within the file). */
  readonly start?: number;
}

/** The metadata of a PyTorch checkpoint: what {@link readTorchBinHeader} reads. */
export interface TorchBinHeader {
  /** Name → tensor, in the pickle's order. */
  readonly tensors: Map<string, TorchTensorInfo>;
  /** Storage key → storage. */
  readonly storages: Map<string, TorchStorage>;
  /** The archive's top folder (`archive`, or the file's name when it was saved; "": legacy). */
  readonly archive: string;
  /** torch.save's zip format (torch >= 1.6) or its legacy one (torch < 1.6). */
  readonly format: "zip" | "legacy";
  /**
   * The file as it was when this header was read ({@link readTorchBinHeader} sets it):
   * {@link readTorchBinTensors} refuses a file that is no longer the same.
   */
  readonly identity?: FileIdentity;
}

/** An entry of a zip file's central directory. */
export interface ZipEntry {
  /** Path in the archive. */
  readonly name: string;
  /** Compression method (0: stored). */
  readonly method: number;
  /** General-purpose flags (bit 0: encrypted). */
  readonly flags: number;
  /** Uncompressed size in bytes. */
  readonly size: number;
  /** Compressed size in bytes. */
  readonly compressedSize: number;
  /** File offset of its local header. */
  readonly localHeaderOffset: number;
  /** CRC-32 of its bytes, as the central directory records it (0: none recorded). */
  readonly crc32: number;
}

async function openFile(
  path: string,
): Promise<{ file: Deno.FsFile; size: number; identity: FileIdentity }> {
  const { file, stat } = await openWeightsFile(path, "PyTorch checkpoint");
  return { file, size: stat.size, identity: fileIdentity(stat) };
}

/** Little-endian unsigned 64-bit integer at `off` of `v`, which must be a safe integer. */
function u64(v: DataView, off: number, path: string, what: string): number {
  const n = v.getBigUint64(off, true);
  if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`${path}: zip ${what} ${n} too large`);
  return Number(n);
}

/**
 * Read a zip file's central directory (ZIP64 included) from its end: the bytes read are the end
 * records and the directory itself.
 *
 * @returns entry name → entry
 * @throws Error naming the file when it is not a zip file, is truncated, or spans disks
 */
export async function readZipDirectory(
  file: Deno.FsFile,
  size: number,
  path: string,
): Promise<Map<string, ZipEntry>> {
  // A file that starts as a zip but has no end record was cut short (torch.save writes one).
  const head = size >= 4 ? await readAt(file, 0, 4, path, "the first bytes") : new Uint8Array();
  const startsAsZip = head[0] === 0x50 && head[1] === 0x4b && head[2] === 3 && head[3] === 4;
  const notZip = startsAsZip
    ? `${path}: a zip file cut short (no end of central directory record after ${size} bytes): ` +
      "an interrupted download or copy? fetch the file again"
    : `${path}: not a zip file (no end of central directory record)`;
  if (size < 22) throw new Error(notZip);
  // The end record is 22 bytes plus a comment of up to 65,535; torch.save writes none, so the
  // last 42 bytes (with a ZIP64 locator before it) are tried first.
  let tailStart = Math.max(0, size - 42);
  const endRecords = "the zip end records";
  let tail = await readAt(file, tailStart, size - tailStart, path, endRecords);
  let at = findEnd(tail, tail.byteLength - 22);
  if (at < 0) {
    tailStart = Math.max(0, size - (22 + 65535 + 20));
    tail = await readAt(file, tailStart, size - tailStart, path, endRecords);
    at = findEnd(tail, tail.byteLength - 22);
  }
  if (at < 0) throw new Error(notZip);
  const end = new DataView(tail.buffer, tail.byteOffset + at, 22);
  if (end.getUint16(4, true) !== 0 || end.getUint16(6, true) !== 0) {
    throw new Error(`${path}: multi-disk zip files are not supported`);
  }
  let count = end.getUint16(10, true);
  let cdSize = end.getUint32(12, true);
  let cdOffset = end.getUint32(16, true);
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    // ZIP64: a 20-byte locator just before the end record gives the ZIP64 end record.
    const locAt = tailStart + at - 20;
    if (locAt < 0) throw new Error(`${path}: ZIP64 end of central directory locator missing`);
    const loc = new DataView(
      (await readAt(file, locAt, 20, path, "the ZIP64 end record locator")).buffer,
    );
    if (loc.getUint32(0, true) !== 0x07064b50) {
      throw new Error(`${path}: ZIP64 end of central directory locator missing`);
    }
    const recAt = u64(loc, 8, path, "ZIP64 end record offset");
    if (recAt + 56 > size) throw new Error(`${path}: ZIP64 end record beyond the end of the file`);
    const rec = new DataView((await readAt(file, recAt, 56, path, "the ZIP64 end record")).buffer);
    if (rec.getUint32(0, true) !== 0x06064b50) {
      throw new Error(`${path}: ZIP64 end of central directory record missing at byte ${recAt}`);
    }
    count = u64(rec, 32, path, "entry count");
    cdSize = u64(rec, 40, path, "central directory size");
    cdOffset = u64(rec, 48, path, "central directory offset");
  }
  if (cdOffset + cdSize > size) {
    throw new Error(
      `${path}: truncated zip file: its central directory (bytes ${cdOffset}–${
        cdOffset + cdSize
      }) lies beyond its ${size} bytes`,
    );
  }
  const cd = await readAt(file, cdOffset, cdSize, path, "the zip central directory");
  const v = new DataView(cd.buffer);
  const entries = new Map<string, ZipEntry>();
  let p = 0;
  const utf8 = new TextDecoder("utf-8", { fatal: true });
  for (let i = 0; i < count; i++) {
    if (p + 46 > cd.byteLength || v.getUint32(p, true) !== 0x02014b50) {
      throw new Error(
        `${path}: malformed zip central directory (entry ${i} at byte ${cdOffset + p})`,
      );
    }
    const nameLen = v.getUint16(p + 28, true);
    const extraLen = v.getUint16(p + 30, true);
    const commentLen = v.getUint16(p + 32, true);
    if (p + 46 + nameLen + extraLen + commentLen > cd.byteLength) {
      throw new Error(`${path}: malformed zip central directory (entry ${i} overruns it)`);
    }
    let name: string;
    try {
      name = utf8.decode(cd.subarray(p + 46, p + 46 + nameLen));
    } catch {
      throw new Error(`${path}: zip entry ${i} has a name that is not UTF-8`);
    }
    let compressedSize = v.getUint32(p + 20, true);
    let usize = v.getUint32(p + 24, true);
    let localHeaderOffset = v.getUint32(p + 42, true);
    // ZIP64 extra field (0x0001): the 64-bit values of the fields saturated above, in order.
    let e = p + 46 + nameLen;
    const extraEnd = e + extraLen;
    while (e + 4 <= extraEnd) {
      const id = v.getUint16(e, true);
      const len = v.getUint16(e + 2, true);
      if (e + 4 + len > extraEnd) {
        throw new Error(
          `${path}: malformed zip central directory (entry ${i}'s extra field 0x${
            id.toString(16).padStart(4, "0")
          } overruns its ${extraLen} bytes)`,
        );
      }
      if (id === 0x0001) {
        let q = e + 4;
        const next = (what: string) => {
          if (q + 8 > e + 4 + len) {
            throw new Error(`${path}: zip entry "${name}": short ZIP64 field`);
          }
          const n = u64(v, q, path, what);
          q += 8;
          return n;
        };
        if (usize === 0xffffffff) usize = next("entry size");
        if (compressedSize === 0xffffffff) compressedSize = next("entry size");
        if (localHeaderOffset === 0xffffffff) localHeaderOffset = next("entry offset");
      }
      e += 4 + len;
    }
    entries.set(name, {
      name,
      method: v.getUint16(p + 10, true),
      flags: v.getUint16(p + 8, true),
      size: usize,
      compressedSize,
      localHeaderOffset,
      crc32: v.getUint32(p + 16, true),
    });
    p += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

/** Offset in `b` of the end-of-central-directory signature, searching back from `from`. */
function findEnd(b: Uint8Array, from: number): number {
  for (let i = from; i >= 0; i--) {
    if (b[i] === 0x50 && b[i + 1] === 0x4b && b[i + 2] === 0x05 && b[i + 3] === 0x06) return i;
  }
  return -1;
}

/** The file offset of a stored entry's bytes (read from its local header), checked in range. */
async function entryDataStart(
  file: Deno.FsFile,
  size: number,
  entry: ZipEntry,
  path: string,
  tensor?: string,
): Promise<number> {
  const where = `${path}: ${
    tensor === undefined ? "" : `tensor "${tensor}": `
  }zip entry "${entry.name}"`;
  if (entry.flags & 1) throw new Error(`${where} is encrypted`);
  if (entry.method !== 0 || entry.compressedSize !== entry.size) {
    throw new Error(
      `${where} is compressed (method ${entry.method}); torch.save stores entries uncompressed, ` +
        `so this file was repacked: re-save it with torch.save`,
    );
  }
  if (entry.localHeaderOffset + 30 > size) {
    throw new Error(`${where}: local header beyond the file`);
  }
  const h = new DataView(
    (await readAt(file, entry.localHeaderOffset, 30, where, "its local header", path)).buffer,
  );
  if (h.getUint32(0, true) !== 0x04034b50) {
    throw new Error(`${where}: no local header at byte ${entry.localHeaderOffset}`);
  }
  const start = entry.localHeaderOffset + 30 + h.getUint16(26, true) + h.getUint16(28, true);
  if (start + entry.size > size) {
    throw new Error(
      `${where}: truncated file (its ${entry.size} bytes at byte ${start} end past the file's ${size})`,
    );
  }
  return start;
}

// ---------------------------------------------------------------------------------------------
// The unpickler.

class Tuple {
  constructor(readonly items: Value[]) {}
}
class List {
  constructor(readonly items: Value[]) {}
}
class Dict {
  readonly entries = new Map<string | number | boolean | null, Value>();
}
class Global {
  constructor(readonly module: string, readonly name: string) {}
  get full(): string {
    return `${this.module}.${this.name}`;
  }
}
class Storage {
  constructor(
    readonly type: string,
    readonly key: string,
    readonly numel: number,
    /** A legacy checkpoint's view of part of this storage: its first element and length. */
    readonly view?: { readonly offset: number; readonly numel: number },
  ) {}
}
class Tensor {
  constructor(
    readonly storage: Storage,
    readonly offset: number,
    readonly size: number[],
    readonly stride: number[],
  ) {}
}
type Value =
  | null
  | boolean
  | number
  | bigint
  | string
  | Tuple
  | List
  | Dict
  | Global
  | Storage
  | Tensor;

const ALLOWED_CALLS = new Set([
  "collections.OrderedDict",
  "torch._utils._rebuild_tensor_v2",
  "torch._utils._rebuild_parameter",
  "torch._utils._rebuild_parameter_with_state",
]);

function isAllowedGlobal(module: string, name: string): boolean {
  return ALLOWED_CALLS.has(`${module}.${name}`) ||
    (module === "torch" && Object.hasOwn(STORAGE_TYPES, name));
}

function describe(v: Value): string {
  if (v === null) return "None";
  if (typeof v !== "object") return typeof v === "string" ? JSON.stringify(v) : String(v);
  if (v instanceof Global) return v.full;
  return v.constructor.name.toLowerCase();
}

const OPNAMES: Record<number, string> = {
  0x63: "GLOBAL",
  0x93: "STACK_GLOBAL",
  0x52: "REDUCE",
  0x62: "BUILD",
  0x51: "BINPERSID",
  0x81: "NEWOBJ",
  0x69: "INST",
  0x6f: "OBJ",
  0x50: "PERSID",
};

/** Thrown by {@link unpickle} of a `partial` buffer when the pickle goes on past its end. */
const NEED_MORE = Symbol("pickle continues past the bytes read");

/** How {@link unpickle} reads a pickle. */
interface UnpickleOptions {
  /** Its first byte in the buffer (default 0). */
  readonly start?: number;
  /** The buffer is a prefix of the file: running past its end throws {@link NEED_MORE}. */
  readonly partial?: boolean;
  /**
   * The persistent ids it may hold: a zip checkpoint's ('storage', type, key, location, numel),
   * a legacy one's with view metadata added, or none.
   */
  readonly persistent: "zip" | "legacy" | "none";
  /** What errors call a byte position: "pickle byte" (in data.pkl) or "byte" (of the file). */
  readonly at?: string;
}

/** What {@link unpickle} read. */
interface Unpickled {
  readonly value: Value;
  /** The byte after its STOP. */
  readonly end: number;
  /** The storages its persistent ids named, by key. */
  readonly storages: Map<string, Storage>;
}

/**
 * `bytes` as ISO-8859-1, Python's latin-1: each byte is the code point of its value.
 * (TextDecoder's "latin1" label is windows-1252, which reads 0x80–0x9f as other characters, e.g.
 * 0x80 as "€".)
 */
function isoLatin1(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    s += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return s;
}

/**
 * Unpickle one pickle of a torch.save checkpoint safely (see the module doc): `data.pkl` of a
 * zip checkpoint, or one of the pickles of a legacy one.
 *
 * @param b the bytes holding the pickle
 * @param source the file and entry named by errors
 * @returns the unpickled value, where it ends and the storages it names
 */
function unpickle(b: Uint8Array, source: string, opts: UnpickleOptions): Unpickled {
  const stack: Value[] = [];
  const marks: number[] = [];
  const memo = new Map<number, Value>();
  const storages = new Map<string, Storage>();
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const utf8 = new TextDecoder("utf-8", { fatal: true });
  let p = opts.start ?? 0;
  let opAt = p;
  const fail = (why: string): never => {
    throw new Error(`${source}: ${why} (${opts.at ?? "pickle byte"} ${opAt})`);
  };
  const need = (n: number) => {
    if (p + n > b.byteLength) {
      if (opts.partial) throw NEED_MORE;
      fail("truncated pickle");
    }
  };
  const pop = (): Value => {
    if (stack.length === 0 || (marks.length > 0 && stack.length <= marks[marks.length - 1]!)) {
      fail("pickle stack underflow");
    }
    return stack.pop()!;
  };
  const popMark = (): Value[] => {
    const m = marks.pop();
    if (m === undefined) fail("pickle MARK missing");
    return stack.splice(m!);
  };
  const top = (): Value => {
    if (stack.length === 0) fail("pickle stack underflow");
    return stack[stack.length - 1]!;
  };
  /** The next `n` bytes decoded as UTF-8, else what `otherwise` makes of them. */
  const decoded = (n: number, otherwise: (s: Uint8Array) => string): string => {
    need(n);
    const s = b.subarray(p, p + n);
    p += n;
    try {
      return utf8.decode(s);
    } catch {
      return otherwise(s);
    }
  };
  const str = (n: number): string => decoded(n, () => fail("string is not UTF-8"));
  // A Python 2 str (bytes): as torch.load decodes it, with its default encoding="utf-8", or,
  // when that fails, as latin-1 (what torch.load(..., encoding="latin1") gives).
  const py2str = (n: number): string => decoded(n, isoLatin1);
  const line = (): string => {
    const end = b.indexOf(0x0a, p);
    if (end < 0 && opts.partial) throw NEED_MORE;
    if (end < 0) fail("truncated pickle (GLOBAL without newline)");
    const raw = b.subarray(p, end);
    p = end + 1;
    // As Python 3's Unpickler decodes a GLOBAL's module and class names: UTF-8, strictly.
    try {
      return utf8.decode(raw);
    } catch {
      return fail("GLOBAL module or class name is not UTF-8");
    }
  };
  const key = (k: Value): string | number | boolean | null => {
    if (k === null || (typeof k !== "object" && typeof k !== "bigint")) return k;
    return fail(`dict key of type ${describe(k)} is not supported`);
  };
  const setItems = (d: Value, items: Value[]) => {
    if (!(d instanceof Dict)) fail(`SETITEM(S) on ${describe(d)}, not a dict`);
    if (items.length % 2 !== 0) fail("SETITEMS with an odd number of items");
    for (let i = 0; i < items.length; i += 2) {
      (d as Dict).entries.set(key(items[i]!), items[i + 1]!);
    }
  };
  const int = (x: Value, what: string): number => {
    if (typeof x !== "number" || !Number.isSafeInteger(x) || x < 0) {
      fail(`${what} must be a non-negative integer, got ${describe(x)}`);
    }
    return x as number;
  };
  const ints = (x: Value, what: string): number[] => {
    if (!(x instanceof Tuple)) return fail(`${what} must be a tuple, got ${describe(x)}`);
    return x.items.map((i) => int(i, what));
  };
  const call = (f: Value, args: Value): Value => {
    if (!(f instanceof Global) || !ALLOWED_CALLS.has(f.full)) {
      return fail(`REDUCE of ${describe(f)} is not allowed`);
    }
    if (!(args instanceof Tuple)) return fail(`REDUCE arguments must be a tuple`);
    const a = args.items;
    switch (f.full) {
      case "collections.OrderedDict":
        if (a.length !== 0) fail("collections.OrderedDict with arguments is not supported");
        return new Dict();
      case "torch._utils._rebuild_tensor_v2": {
        if (a.length < 6 || a.length > 7) {
          fail(`_rebuild_tensor_v2 takes 6 or 7 arguments, got ${a.length}`);
        }
        const [storage, offset, size, stride] = a;
        if (!(storage instanceof Storage)) return fail("_rebuild_tensor_v2: not a storage");
        const sz = ints(size!, "tensor size");
        const st = ints(stride!, "tensor stride");
        if (sz.length !== st.length) fail(`tensor size ${sz} and stride ${st} differ in length`);
        const off = int(offset!, "storage offset");
        if (storage.view === undefined) return new Tensor(storage, off, sz, st);
        // A view of part of a storage (legacy format): the tensor must lie within the view.
        const { offset: base, numel: viewNumel } = storage.view;
        const last = off + lastElement(sz, st);
        if (sz.every((s) => s > 0) && last >= viewNumel) {
          fail(
            `tensor of shape [${sz}], strides [${st}] at offset ${off} reaches element ${last} ` +
              `of a storage view of ${viewNumel}`,
          );
        }
        return new Tensor(storages.get(storage.key)!, base + off, sz, st);
      }
      default: // _rebuild_parameter(data, requires_grad, hooks[, state])
        if (!(a[0] instanceof Tensor)) return fail(`${f.full} of ${describe(a[0] ?? null)}`);
        return a[0];
    }
  };
  for (;;) {
    opAt = p;
    need(1);
    const op = b[p++]!;
    switch (op) {
      case 0x80: // PROTO
        need(1);
        if (b[p]! < 2 || b[p]! > 5) fail(`pickle protocol ${b[p]} not supported`);
        p++;
        break;
      case 0x95: // FRAME
        need(8);
        p += 8;
        break;
      case 0x2e: // STOP
        if (stack.length !== 1 || marks.length !== 0) fail("pickle ends with a malformed stack");
        return { value: stack[0]!, end: p, storages };
      case 0x28: // MARK
        marks.push(stack.length);
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push(new Tuple([]));
        break;
      case 0x74: // TUPLE
        stack.push(new Tuple(popMark()));
        break;
      case 0x85: // TUPLE1
      case 0x86: // TUPLE2
      case 0x87: { // TUPLE3
        const n = op - 0x84;
        const items: Value[] = [];
        for (let i = 0; i < n; i++) items.unshift(pop());
        stack.push(new Tuple(items));
        break;
      }
      case 0x5d: // EMPTY_LIST
        stack.push(new List([]));
        break;
      case 0x6c: // LIST
        stack.push(new List(popMark()));
        break;
      case 0x61: { // APPEND
        const x = pop();
        const l = top();
        if (!(l instanceof List)) fail(`APPEND to ${describe(l)}, not a list`);
        (l as List).items.push(x);
        break;
      }
      case 0x65: { // APPENDS
        const xs = popMark();
        const l = top();
        if (!(l instanceof List)) fail(`APPENDS to ${describe(l)}, not a list`);
        // One at a time: spreading a long run as arguments overflows the call stack.
        for (const x of xs) (l as List).items.push(x);
        break;
      }
      case 0x7d: // EMPTY_DICT
        stack.push(new Dict());
        break;
      case 0x64: { // DICT
        const d = new Dict();
        setItems(d, popMark());
        stack.push(d);
        break;
      }
      case 0x73: { // SETITEM
        const val = pop();
        const k = pop();
        setItems(top(), [k, val]);
        break;
      }
      case 0x75: { // SETITEMS
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4a: // BININT
        need(4);
        stack.push(v.getInt32(p, true));
        p += 4;
        break;
      case 0x4b: // BININT1
        need(1);
        stack.push(b[p++]!);
        break;
      case 0x4d: // BININT2
        need(2);
        stack.push(v.getUint16(p, true));
        p += 2;
        break;
      case 0x8a: { // LONG1
        need(1);
        const n = b[p++]!;
        need(n);
        let x = 0n;
        for (let i = n - 1; i >= 0; i--) x = (x << 8n) | BigInt(b[p + i]!);
        if (n > 0 && b[p + n - 1]! & 0x80) x -= 1n << BigInt(8 * n);
        p += n;
        // Beyond 2^53 (the legacy format's magic number): a bigint, which no size accepts.
        const safe = x <= BigInt(Number.MAX_SAFE_INTEGER) && x >= -BigInt(Number.MAX_SAFE_INTEGER);
        stack.push(safe ? Number(x) : x);
        break;
      }
      case 0x47: // BINFLOAT
        need(8);
        stack.push(v.getFloat64(p, false));
        p += 8;
        break;
      case 0x58: // BINUNICODE
        need(4);
        p += 4;
        stack.push(str(v.getUint32(p - 4, true)));
        break;
      case 0x8c: // SHORT_BINUNICODE
        need(1);
        p += 1;
        stack.push(str(b[p - 1]!));
        break;
      case 0x55: // SHORT_BINSTRING (a Python 2 str)
        need(1);
        p += 1;
        stack.push(py2str(b[p - 1]!));
        break;
      case 0x54: { // BINSTRING (a Python 2 str of 256 bytes or more)
        need(4);
        const n = v.getInt32(p, true);
        if (n < 0) fail(`BINSTRING of negative length ${n}`);
        p += 4;
        stack.push(py2str(n));
        break;
      }
      case 0x71: // BINPUT
        need(1);
        memo.set(b[p++]!, top());
        break;
      case 0x72: // LONG_BINPUT
        need(4);
        memo.set(v.getUint32(p, true), top());
        p += 4;
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x68: // BINGET
      case 0x6a: { // LONG_BINGET
        const n = op === 0x68 ? 1 : 4;
        need(n);
        const i = n === 1 ? b[p]! : v.getUint32(p, true);
        p += n;
        if (!memo.has(i)) fail(`memo entry ${i} missing`);
        stack.push(memo.get(i)!);
        break;
      }
      case 0x30: // POP
        pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x63: // GLOBAL
      case 0x93: { // STACK_GLOBAL
        let module: string, name: string;
        if (op === 0x63) {
          module = line();
          name = line();
        } else {
          const n = pop();
          const m = pop();
          if (typeof m !== "string" || typeof n !== "string") fail("STACK_GLOBAL of non-strings");
          [module, name] = [m as string, n as string];
        }
        if (!isAllowedGlobal(module, name)) {
          fail(
            `refused global ${module}.${name} (${OPNAMES[op]}): a PyTorch state dict holds only ` +
              `tensors, and this loader runs no code from a pickle`,
          );
        }
        stack.push(new Global(module, name));
        break;
      }
      case 0x52: { // REDUCE
        const args = pop();
        const f = pop();
        stack.push(call(f, args));
        break;
      }
      case 0x62: { // BUILD
        const state = pop();
        const target = top();
        // An OrderedDict's state (a state dict's `_metadata`) is not needed; nothing else is built.
        if (!(target instanceof Dict)) fail(`BUILD of ${describe(target)} is not allowed`);
        void state;
        break;
      }
      case 0x51: { // BINPERSID
        const pid = pop();
        const items = pid instanceof Tuple ? pid.items : [];
        const [tag, type, k, , numel, viewMeta] = items;
        const legacy = opts.persistent === "legacy";
        if (
          opts.persistent === "none" || items.length !== (legacy ? 6 : 5) || tag !== "storage" ||
          !(type instanceof Global) || type.module !== "torch" ||
          !Object.hasOwn(STORAGE_TYPES, type.name) || typeof k !== "string"
        ) {
          fail(
            opts.persistent === "none"
              ? `persistent id ${describe(pid)} where none belongs`
              : `persistent id ${describe(pid)} is not a torch storage ('storage', type, key, ` +
                `location, numel${legacy ? ", view metadata" : ""})`,
          );
        }
        const n = int(numel!, "storage size");
        const t = (type as Global).name;
        const known = storages.get(k as string);
        if (known && (known.type !== t || known.numel !== n)) {
          fail(`storage "${k}" is referenced as ${known.type}[${known.numel}] and ${t}[${n}]`);
        }
        const s = known ?? new Storage(t, k as string, n);
        storages.set(s.key, s);
        if (viewMeta === undefined || viewMeta === null) {
          stack.push(s);
          break;
        }
        // Legacy view metadata: (view key, element offset, element count) within the storage.
        const vm = viewMeta instanceof Tuple ? viewMeta.items : [];
        if (vm.length !== 3 || typeof vm[0] !== "string") {
          fail(`storage view metadata ${describe(viewMeta)} is not (key, offset, size)`);
        }
        const offset = int(vm[1]!, "storage view offset");
        const size = int(vm[2]!, "storage view size");
        if (offset + size > n) {
          fail(`storage view of ${size} elements at ${offset} overruns storage "${k}" of ${n}`);
        }
        stack.push(new Storage(t, s.key, n, { offset, numel: size }));
        break;
      }
      default: {
        const c = op >= 0x20 && op < 0x7f ? ` '${String.fromCharCode(op)}'` : "";
        fail(
          `pickle opcode 0x${op.toString(16).padStart(2, "0")}${c}${
            OPNAMES[op] ? ` (${OPNAMES[op]})` : ""
          } is not one torch.save emits for a state dict; refused`,
        );
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------

/**
 * Read a PyTorch checkpoint's tensor names, dtypes, shapes and storages, no tensor data: of the
 * zip format, its central directory and `data.pkl`; of the legacy format, its pickles and each
 * storage's 8-byte element count (the storages themselves are seeked past). Checks that each
 * tensor lies within its storage and each storage has its size within the file.
 *
 * @param path the `.bin` file
 * @returns the tensors and storages
 * @throws CheckpointError naming the file (and tensor, opcode or global) when it is missing, not
 *   a PyTorch checkpoint, truncated, or its pickle holds anything but a mapping of names to
 *   tensors of F32, F16, BF16, I32 or I64
 */
export async function readTorchBinHeader(path: string): Promise<TorchBinHeader> {
  try {
    const { file, size, identity } = await openFile(path);
    try {
      return { ...await readHeaderOf(file, size, path), identity };
    } finally {
      file.close();
    }
  } catch (e) {
    throw CheckpointError.from(e, path);
  }
}

async function readHeaderOf(
  file: Deno.FsFile,
  size: number,
  path: string,
): Promise<TorchBinHeader> {
  if (size === 0) throw new Error(`${path}: not a PyTorch checkpoint (an empty file)`);
  const head = await readAt(file, 0, Math.min(size, 16), path, "its first bytes");
  if (head[0] === 0x80) return await readLegacyHeader(file, size, path);
  if (!(head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04)) {
    throw new Error(
      `${path}: not a PyTorch checkpoint (torch.save's zip format starts with "PK\\x03\\x04", ` +
        `its legacy format with a pickle's 0x80; this file starts with ${
          [...head.subarray(0, 4)].map((x) => x.toString(16).padStart(2, "0")).join(" ")
        })`,
    );
  }
  const entries = await readZipDirectory(file, size, path);
  const pkls = [...entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (pkls.length !== 1) {
    throw new Error(
      `${path}: not a torch.save checkpoint: ${
        pkls.length === 0 ? "no <archive>/data.pkl entry" : `several data.pkl entries (${pkls})`
      }`,
    );
  }
  const archive = pkls[0]!.slice(0, -"/data.pkl".length);
  const byteorder = entries.get(`${archive}/byteorder`);
  if (byteorder !== undefined) {
    if (byteorder.size > 16) throw new Error(`${path}: ${byteorder.name} is not "little" or "big"`);
    const start = await entryDataStart(file, size, byteorder, path);
    const order = new TextDecoder().decode(
      await readAt(file, start, byteorder.size, path, byteorder.name),
    );
    if (order !== "little") {
      throw new Error(
        `${path}: storages are ${JSON.stringify(order)}-endian; only little-endian is read`,
      );
    }
  }
  const pklEntry = entries.get(pkls[0]!)!;
  if (pklEntry.size > MAX_PICKLE_BYTES) {
    throw new Error(
      `${path}: ${pklEntry.name} is ${pklEntry.size} bytes (at most ${MAX_PICKLE_BYTES})`,
    );
  }
  const pkl = await readAt(
    file,
    await entryDataStart(file, size, pklEntry, path),
    pklEntry.size,
    path,
    pklEntry.name,
  );
  const { value: root } = unpickle(pkl, `${path}: ${pklEntry.name}`, { persistent: "zip" });
  const storages = new Map<string, TorchStorage>();
  const tensors = stateDict(root, path, pklEntry.name, (t, where) => {
    let storage = storages.get(t.storage.key);
    if (storage === undefined) {
      const type = STORAGE_TYPES[t.storage.type]!;
      const entry = entries.get(`${archive}/data/${t.storage.key}`);
      if (entry === undefined) {
        throw new Error(`${where}: its storage entry ${archive}/data/${t.storage.key} is missing`);
      }
      if (entry.size !== t.storage.numel * type.bytes) {
        throw new Error(
          `${where}: storage entry ${entry.name} has ${entry.size} bytes, but ${t.storage.numel} ` +
            `${type.what} elements need ${t.storage.numel * type.bytes}`,
        );
      }
      storage = { dtype: type.dtype!, numel: t.storage.numel, entry };
      storages.set(t.storage.key, storage);
    }
    return storage;
  });
  return { tensors, storages, archive, format: "zip" };
}

/**
 * The tensors of an unpickled state dict, each checked within its storage.
 *
 * @param root the unpickled value
 * @param path the file, named by errors
 * @param pickle which pickle of it (`archive/data.pkl`, or the legacy format's state dict)
 * @param storageOf the storage of a tensor (with F32, F16, BF16, I32 or I64 elements), checked
 *   against the file; `where` names the tensor for errors
 */
function stateDict(
  root: Value,
  path: string,
  pickle: string,
  storageOf: (t: Tensor, where: string) => TorchStorage,
): Map<string, TorchTensorInfo> {
  if (!(root instanceof Dict)) {
    throw new Error(
      `${path}: ${pickle} holds ${
        describe(root)
      }, not a state dict (a mapping of names to tensors)`,
    );
  }
  const tensors = new Map<string, TorchTensorInfo>();
  for (const [name, t] of root.entries) {
    if (typeof name !== "string") {
      throw new Error(`${path}: state dict key ${describe(name)} is not a string`);
    }
    const where = `${path}: tensor "${name}"`;
    if (!(t instanceof Tensor)) {
      throw new Error(
        `${where} is ${describe(t)}, not a tensor (a state dict nested in another mapping? ` +
          `save the state dict itself)`,
      );
    }
    const type = STORAGE_TYPES[t.storage.type]!;
    if (type.dtype === undefined) {
      throw new Error(
        `${where} has dtype ${type.what} (torch.${t.storage.type}), which this loader does not ` +
          `read (float32, float16, bfloat16, int32, int64)`,
      );
    }
    const storage = storageOf(t, where);
    const numel = numElements(t.size);
    if (numel > MAX_TENSOR_ELEMENTS) {
      throw new Error(tooLarge(where, t.size, numel));
    }
    const last = t.offset + lastElement(t.size, t.stride);
    if (numel > 0 && last >= storage.numel) {
      throw new Error(
        `${where}: shape [${t.size.join(", ")}], strides [${t.stride.join(", ")}] at offset ` +
          `${t.offset} reach element ${last} of a storage of ${storage.numel}`,
      );
    }
    tensors.set(name, {
      dtype: type.dtype,
      shape: t.size,
      stride: t.stride,
      storageOffset: t.offset,
      storage: t.storage.key,
    });
  }
  return tensors;
}

/** The error for a tensor of more than {@link MAX_TENSOR_ELEMENTS} elements. */
function tooLarge(where: string, shape: readonly number[], numel: number): string {
  return `${where}: shape [${shape.join(", ")}] has ${numel} elements, more than the ` +
    `${MAX_TENSOR_ELEMENTS} one tensor may have`;
}

/** The first value of a legacy checkpoint: `torch.serialization.MAGIC_NUMBER`. */
const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;
/** Its second: `torch.serialization.PROTOCOL_VERSION`. */
const LEGACY_PROTOCOL = 1001;

/**
 * The start of a file, read in growing chunks (4 KiB, then doubling, up to
 * {@link MAX_PICKLE_BYTES}) as its pickles need: the legacy format's pickles have no stated
 * length, so at most as many bytes again past their end are read (the first storages' bytes).
 */
class FilePrefix {
  bytes = new Uint8Array(0);
  constructor(
    readonly file: Deno.FsFile,
    readonly size: number,
    readonly path: string,
  ) {}
  /** Whether the bytes read stop short of the file's end. */
  get partial(): boolean {
    return this.bytes.byteLength < this.size;
  }
  /** Read more (only called while {@link partial}). */
  async grow(): Promise<void> {
    const have = this.bytes.byteLength;
    if (have >= MAX_PICKLE_BYTES) {
      throw new Error(
        `${this.path}: legacy PyTorch checkpoint whose pickles run past ${MAX_PICKLE_BYTES} bytes`,
      );
    }
    const n = Math.min(this.size, MAX_PICKLE_BYTES, Math.max(4096, 2 * have));
    const grown = new Uint8Array(n);
    grown.set(this.bytes);
    grown.set(
      await readAt(this.file, have, n - have, this.path, "the legacy format's pickles"),
      have,
    );
    this.bytes = grown;
  }
}

/**
 * Read the header of a checkpoint in the legacy format of torch < 1.6 (`_legacy_save` of
 * torch/serialization.py): pickles of the magic number, the protocol version (1001), a sys_info
 * dict and the state dict (persistent ids ('storage', type, root key, location, numel, view
 * metadata)), a pickle of the list of storage keys, then per key, in that order, an 8-byte
 * little-endian element count and the storage's bytes. Only the pickles and each count are read.
 */
async function readLegacyHeader(
  file: Deno.FsFile,
  size: number,
  path: string,
): Promise<TorchBinHeader> {
  const prefix = new FilePrefix(file, size, path);
  let at = 0;
  const next = async (
    what: string,
    persistent: UnpickleOptions["persistent"],
  ): Promise<Unpickled> => {
    for (;;) {
      try {
        const got = unpickle(prefix.bytes, `${path}: ${what}`, {
          start: at,
          partial: prefix.partial,
          persistent,
          at: "byte",
        });
        at = got.end;
        return got;
      } catch (e) {
        if (e !== NEED_MORE) throw e;
        await prefix.grow();
      }
    }
  };
  const magic = (await next("legacy format's magic number pickle", "none")).value;
  if (magic !== LEGACY_MAGIC) {
    throw new Error(
      `${path}: not a PyTorch checkpoint: a pickle whose first value is ${
        describe(magic)
      }, not torch's magic number 0x${LEGACY_MAGIC.toString(16)} (torch.save's legacy format)`,
    );
  }
  const version = (await next("legacy format's protocol version pickle", "none")).value;
  if (version !== LEGACY_PROTOCOL) {
    throw new Error(
      `${path}: legacy PyTorch checkpoint of protocol version ${
        describe(version)
      }; only ${LEGACY_PROTOCOL} (torch 0.4 to 1.5) is read`,
    );
  }
  const sysInfo = (await next("legacy format's sys_info pickle", "none")).value;
  if (!(sysInfo instanceof Dict)) {
    throw new Error(`${path}: legacy PyTorch checkpoint whose sys_info is ${describe(sysInfo)}`);
  }
  if (sysInfo.entries.get("little_endian") === false) {
    throw new Error(`${path}: storages are big-endian; only little-endian is read`);
  }
  const main = "legacy format's state dict pickle";
  const { value: root, storages: named } = await next(main, "legacy");
  const keysAt = at;
  const keys = (await next("legacy format's storage key list pickle", "none")).value;
  if (!(keys instanceof List) || !keys.items.every((k) => typeof k === "string")) {
    throw new Error(
      `${path}: legacy PyTorch checkpoint whose storage key list (byte ${keysAt}) is ${
        describe(keys)
      }, not a list of strings`,
    );
  }
  // Each storage: its 8-byte element count, then its bytes, in the list's order.
  const starts = new Map<string, number>();
  let off = at;
  for (const k of keys.items as string[]) {
    const s = named.get(k);
    if (s === undefined || starts.has(k)) {
      throw new Error(
        `${path}: legacy PyTorch checkpoint lists storage "${k}" ${
          s === undefined ? "that its state dict does not use" : "twice"
        } (storage key list at byte ${keysAt})`,
      );
    }
    const where = `${path}: storage "${k}" (${STORAGE_TYPES[s.type]!.what}[${s.numel}])`;
    if (off + 8 > size) {
      throw new Error(
        `${where}: truncated file: its element count at byte ${off} ends past the file's ${size} bytes`,
      );
    }
    const countBytes = await readAt(file, off, 8, where, "its element count", path);
    const count = new DataView(countBytes.buffer).getBigUint64(0, true);
    if (count !== BigInt(s.numel)) {
      throw new Error(
        `${where}: the element count at byte ${off} says ${count}, but the state dict says ${s.numel}`,
      );
    }
    const bytes = s.numel * STORAGE_TYPES[s.type]!.bytes;
    if (off + 8 + bytes > size) {
      throw new Error(
        `${where}: truncated file: its ${bytes} bytes at byte ${
          off + 8
        } end past the file's ${size}`,
      );
    }
    starts.set(k, off + 8);
    off += 8 + bytes;
  }
  const storages = new Map<string, TorchStorage>();
  const tensors = stateDict(root, path, main, (t, where) => {
    const start = starts.get(t.storage.key);
    if (start === undefined) {
      throw new Error(
        `${where}: its storage "${t.storage.key}" is not in the file's storage key list ` +
          `(byte ${keysAt}), so its bytes are not stored`,
      );
    }
    const storage = { dtype: STORAGE_TYPES[t.storage.type]!.dtype!, numel: t.storage.numel, start };
    storages.set(t.storage.key, storage);
    return storage;
  });
  return { tensors, storages, archive: "", format: "legacy" };
}

/** One tensor read by {@link readTorchBinTensors}. */
export interface TorchTensorRead {
  /** Its name. */
  readonly name: string;
  /** Its entry. */
  readonly info: TorchTensorInfo;
  /** Its values, row-major (float32 for float dtypes, int32 for integers); absent with `sameAs`. */
  readonly values?: Float32Array | Int32Array;
  /**
   * An earlier tensor of the file that is the same view of the same storage (tied weights):
   * its values were not read again.
   */
  readonly sameAs?: string;
}

/** Whether strides are the row-major ones of `shape` (dimensions of size 1 may have any). */
function isContiguous(shape: readonly number[], stride: readonly number[]): boolean {
  let want = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] !== 1 && stride[i] !== want) return false;
    want *= shape[i]!;
  }
  return true;
}

/**
 * Gather a strided view's elements into row-major order, moving element bits unchanged.
 *
 * @param src the storage's bytes from the view's first reachable element (offset 0 here)
 * @param es element size in bytes
 */
function gather(
  src: Uint8Array,
  es: number,
  shape: readonly number[],
  stride: readonly number[],
): Uint8Array {
  const numel = numElements(shape);
  const words = es >= 4 ? es / 4 : 1;
  const unit = es >= 4 ? 4 : es;
  const view = (buf: ArrayBufferLike, off: number, n: number) =>
    unit === 4
      ? new Uint32Array(buf, off, n)
      : unit === 2
      ? new Uint16Array(buf, off, n)
      : new Uint8Array(buf, off, n);
  const from = view(src.buffer, src.byteOffset, src.byteLength / unit);
  const out = view(new ArrayBuffer(numel * es), 0, numel * words);
  const rank = shape.length;
  const idx = new Array<number>(rank).fill(0);
  let at = 0;
  for (let o = 0; o < numel; o++) {
    for (let w = 0; w < words; w++) out[o * words + w] = from[at * words + w]!;
    for (let d = rank - 1; d >= 0; d--) {
      if (++idx[d]! < shape[d]!) {
        at += stride[d]!;
        break;
      }
      at -= (shape[d]! - 1) * stride[d]!;
      idx[d] = 0;
    }
  }
  return new Uint8Array(out.buffer);
}

/**
 * Read a PyTorch checkpoint's tensors one at a time, each from only its own bytes (peak memory is
 * about one tensor's bytes twice): contiguous or strided views, converted as
 * model/safetensors.ts converts (F32/F16/BF16 to float32, I32/I64 to int32). A tensor that is the
 * same view as an earlier one (tied weights) is yielded with `sameAs` instead of values.
 *
 * @param path the `.bin` file
 * @param header its {@link readTorchBinHeader} (read again when omitted)
 * @param only read only these names (all when omitted)
 * @throws CheckpointError naming the file and tensor when the file ends early, or naming the file
 *   ("changed while being read; rerun") when it is not the file `header` was read from (size,
 *   modification or status-change time, inode or device differ) or was written to while its
 *   tensors were read
 */
export async function* readTorchBinTensors(
  path: string,
  header?: TorchBinHeader,
  only?: ReadonlySet<string>,
): AsyncGenerator<TorchTensorRead> {
  try {
    yield* readTensorsOf(path, header, only);
  } catch (e) {
    throw CheckpointError.from(e, path);
  }
}

/** {@link readTorchBinTensors}, whose errors are plain. */
async function* readTensorsOf(
  path: string,
  header?: TorchBinHeader,
  only?: ReadonlySet<string>,
): AsyncGenerator<TorchTensorRead> {
  const { file, size, identity } = await openFile(path);
  try {
    // A header read before, from a file rewritten since (even to the same size), would read the
    // new file's bytes at the old file's offsets.
    if (header?.identity !== undefined) {
      checkUnchanged(path, header.identity, identity, "since its header was read");
    }
    const h = header ?? await readHeaderOf(file, size, path);
    const starts = new Map<string, number>();
    const views = new Map<string, string>();
    for (const [name, info] of h.tensors) {
      if (only && !only.has(name)) continue;
      const view = `${info.storage}|${info.storageOffset}|${info.shape}|${info.stride}`;
      const same = views.get(view);
      if (same !== undefined) {
        yield { name, info, sameAs: same };
        continue;
      }
      const storage = h.storages.get(info.storage)!;
      let start = starts.get(info.storage) ?? storage.start;
      if (start === undefined) {
        if (storage.entry === undefined) {
          throw new Error(
            `${path}: storage "${info.storage}" has neither a zip entry nor an offset`,
          );
        }
        start = await entryDataStart(file, size, storage.entry, path, name);
        starts.set(info.storage, start);
      }
      const es = dtypeBytes(storage.dtype);
      const numel = numElements(info.shape);
      const where = `${path}: tensor "${name}"`;
      // Checked by the header reader too; a header given by the caller is checked again here,
      // before its row-major copy is allocated.
      if (numel > MAX_TENSOR_ELEMENTS) throw new Error(tooLarge(where, info.shape, numel));
      let bytes: Uint8Array;
      if (numel === 0) {
        bytes = new Uint8Array(0);
      } else {
        const span = 1 + lastElement(info.shape, info.stride);
        const raw = await readAt(
          file,
          start + info.storageOffset * es,
          span * es,
          where,
          "its data",
          path,
        );
        // A tensor that spans its whole storage entry (most do) is checked against the CRC-32
        // the zip records, as torch.load's reader (miniz) checks it: a flipped byte would
        // otherwise load as a wrong weight. torch can write entries without one (0).
        const entry = storage.entry;
        if (
          entry !== undefined && entry.crc32 !== 0 && info.storageOffset === 0 &&
          span * es === entry.size && (crc32(raw) >>> 0) !== entry.crc32
        ) {
          throw new CheckpointError(
            `${where}: the bytes of its zip entry "${entry.name}" do not match the CRC-32 the ` +
              `zip records (0x${entry.crc32.toString(16).padStart(8, "0")}, read 0x${
                (crc32(raw) >>> 0).toString(16).padStart(8, "0")
              }): the file is damaged (a bad copy or disk); download or copy it again`,
            { file: path },
          );
        }
        bytes = isContiguous(info.shape, info.stride)
          ? raw
          : gather(raw, es, info.shape, info.stride);
      }
      views.set(view, name);
      yield { name, info, values: toTypedArray(storage.dtype, bytes, where, path) };
    }
    // Written to in place while its tensors were read: some may be of the old file, some of the
    // new (the open file is the same inode whatever is renamed over its path meanwhile).
    checkUnchanged(
      path,
      identity,
      fileIdentity(await file.stat()),
      "while its tensors were read",
    );
  } finally {
    file.close();
  }
}
