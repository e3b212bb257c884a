import assert from "node:assert/strict";
import { join } from "node:path";
import { unzipSync, zipSync } from "fflate";
import * as tf from "@tensorflow/tfjs";
import {
  readTorchBinHeader,
  readTorchBinTensors,
  type TorchBinHeader,
  type TorchTensorRead,
} from "./torch_bin.ts";
import { bytesRead, shrinkingAtFirstRead } from "./read_meter_testing.ts";
import { CheckpointError, loadHfFolder } from "./checkpoint.ts";
import { sharedPath } from "./shared_dir.ts";

const DIR = new URL("./testdata/torch/", import.meta.url).pathname;
const DTYPES = join(DIR, "dtypes.bin");
const UNTIED = join(DIR, "t5-tiny-v1_1-untied.bin");

/** `arange(24) / 8 - 1`, the base of testdata/make_torch_bin.py's dtypes.bin (exact in f16, bf16). */
const BASE = Array.from({ length: 24 }, (_, i) => i / 8 - 1);

async function readAll(
  path: string,
  header?: TorchBinHeader,
): Promise<Map<string, TorchTensorRead>> {
  const out = new Map<string, TorchTensorRead>();
  for await (const t of readTorchBinTensors(path, header)) out.set(t.name, t);
  return out;
}

/** Row-major values of a strided view of `flat`. */
function view(flat: number[], shape: number[], stride: number[], offset = 0): number[] {
  const out: number[] = [];
  const rec = (d: number, at: number) => {
    if (d === shape.length) return void out.push(flat[at]!);
    for (let i = 0; i < shape[d]!; i++) rec(d + 1, at + i * stride[d]!);
  };
  rec(0, offset);
  return out;
}

Deno.test("readTorchBinTensors: dtypes, strided and offset views, tied, scalar, empty", async () => {
  const h = await readTorchBinHeader(DTYPES);
  assert.equal(h.archive, "dtypes");
  const want: Record<string, [string, number[], number[]]> = {
    f32: ["F32", [4, 6], BASE],
    f16: ["F16", [2, 12], BASE],
    bf16: ["BF16", [3, 8], BASE],
    i64: ["I64", [3, 4], Array.from({ length: 12 }, (_, i) => i - 6)],
    i32: ["I32", [5], [-2000, -1000, 0, 1000, 2000]],
    transposed: ["F32", [6, 4], view(BASE, [6, 4], [1, 6])],
    offset: ["F32", [2, 3], BASE.slice(10, 16)],
    tied_a: ["F32", [6, 4], BASE.map((x) => 2 * x)],
    scalar: ["F32", [], [2.5]],
    empty: ["F32", [0, 3], []],
    permuted: ["F32", [4, 2, 3], view(BASE, [4, 2, 3], [1, 12, 4])],
  };
  assert.deepEqual([...h.tensors.keys()], [
    "f32",
    "f16",
    "bf16",
    "i64",
    "i32",
    "transposed",
    "offset",
    "tied_a",
    "tied_b",
    "scalar",
    "empty",
    "permuted",
  ]);
  assert.deepEqual(h.tensors.get("transposed")!.stride, [1, 6]);
  assert.equal(h.tensors.get("offset")!.storageOffset, 10);
  assert.equal(h.tensors.get("tied_a")!.storage, h.tensors.get("tied_b")!.storage);
  const got = await readAll(DTYPES);
  for (const [name, [dtype, shape, values]] of Object.entries(want)) {
    const t = got.get(name)!;
    assert.equal(t.info.dtype, dtype, name);
    assert.deepEqual(t.info.shape, shape, name);
    assert.ok(t.values, name);
    assert.equal(t.values instanceof Int32Array, dtype[0] === "I", name);
    assert.deepEqual([...t.values], values, name);
  }
  const tied = got.get("tied_b")!;
  assert.equal(tied.sameAs, "tied_a");
  assert.equal(tied.values, undefined);
  // Only some names: the others are not read.
  const some = [];
  for await (const t of readTorchBinTensors(DTYPES, h, new Set(["offset"]))) some.push(t.name);
  assert.deepEqual(some, ["offset"]);
});

Deno.test("readTorchBinTensors: a module's state_dict() (with _metadata, set by BUILD)", async () => {
  // testdata/make_torch_bin.py: torch.nn.Linear(3, 2), weight arange(6) / 4, bias [0.5, -0.5].
  const got = await readAll(join(DIR, "module.bin"));
  assert.deepEqual([...got.keys()], ["weight", "bias"]);
  assert.deepEqual(got.get("weight")!.info.shape, [2, 3]);
  assert.deepEqual([...got.get("weight")!.values!], [0, 0.25, 0.5, 0.75, 1, 1.25]);
  assert.deepEqual([...got.get("bias")!.values!], [0.5, -0.5]);
});

Deno.test("readTorchBinHeader reads the zip directory and data.pkl, no tensor data", async () => {
  const bytes = await Deno.readFile(UNTIED);
  const pkl = Object.values(unzipSync(bytes, { filter: (f) => f.name.endsWith("/data.pkl") }))[0]!;
  const eocd = new DataView(bytes.buffer, bytes.byteLength - 22);
  const cd = eocd.getUint32(12, true);
  let n = 0;
  const read = await bytesRead(async () => {
    n = (await readTorchBinHeader(UNTIED)).tensors.size;
  });
  assert.equal(n, 68);
  // The file's start and end (58 bytes), two local headers with their names (< 128 bytes each).
  assert.ok(read <= pkl.byteLength + cd + 58 + 256, `${read} bytes read of ${bytes.byteLength}`);
});

/** A zip like torch.save's (entries stored) holding `data.pkl` and storages. */
function zip(pkl: Uint8Array, storages: Record<string, Uint8Array> = {}, level = 0): Uint8Array {
  const files: Record<string, [Uint8Array, { level: 0 | 6 }]> = {
    "archive/data.pkl": [pkl, { level: level as 0 | 6 }],
  };
  for (const [k, v] of Object.entries(storages)) files[`archive/data/${k}`] = [v, { level: 0 }];
  return zipSync(files);
}

const latin1 = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));

async function rejectsWith(bytes: Uint8Array, pattern: RegExp): Promise<void> {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "pytorch_model.bin");
  try {
    await Deno.writeFile(path, bytes);
    await assert.rejects(readTorchBinHeader(path), (e: Error) => {
      assert.match(e.message, pattern);
      assert.ok(e.message.startsWith(path), `names the file: ${e.message}`);
      assert.ok(e instanceof CheckpointError, `not a CheckpointError: ${e}`);
      assert.equal(e.file, path);
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("readTorchBinHeader refuses a pickle that would run code, naming the global or opcode", async () => {
  // pickle.dumps of os.system("ls") by reduce: GLOBAL 'os system', ('ls',), REDUCE.
  const osSystem = latin1("\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03.");
  await rejectsWith(zip(osSystem), /refused global os\.system \(GLOBAL\).*pickle byte 2\)/);
  await rejectsWith(
    zip(latin1("\x80\x02cbuiltins\neval\nX\x01\x00\x00\x001\x85R.")),
    /refused global builtins\.eval/,
  );
  // GLOBAL's module and class names are UTF-8, as Python 3 decodes them (before, windows-1252:
  // "mÃ³dulo"); a name that is not UTF-8 is refused naming the file and the opcode's offset.
  await rejectsWith(
    zip(Uint8Array.from([...latin1("\x80\x02c"), ...new TextEncoder().encode("módulo\nα\n.")])),
    /refused global módulo\.α \(GLOBAL\).*pickle byte 2\)$/,
  );
  await rejectsWith(
    zip(latin1("\x80\x02ctorch\x80\n_utils\n.")),
    /archive\/data\.pkl: GLOBAL module or class name is not UTF-8 \(pickle byte 2\)$/,
  );
  // Protocol 4's STACK_GLOBAL too.
  await rejectsWith(
    zip(latin1("\x80\x04\x8c\x02os\x94\x8c\x06system\x94\x93.")),
    /refused global os\.system \(STACK_GLOBAL\)/,
  );
  // INST (protocol 0's call) is no opcode torch.save emits.
  await rejectsWith(
    zip(latin1("(ios\nsystem\n.")),
    /opcode 0x69 'i' \(INST\) is not one torch\.save/,
  );
  // An allowed global that is no function: a storage type called.
  await rejectsWith(
    zip(latin1("\x80\x02ctorch\nFloatStorage\n)R.")),
    /REDUCE of torch\.FloatStorage/,
  );
  // Not a state dict.
  await rejectsWith(zip(latin1("\x80\x02K\x05.")), /holds 5, not a state dict/);
});

Deno.test("readTorchBinHeader: legacy format, repacked, truncated and inconsistent files", async () => {
  const legacy = new Uint8Array([
    0x80,
    0x02,
    0x8a,
    0x0a,
    0x6c,
    0xfc,
    0x9c,
    0x46,
    0xf9,
    0x20,
    0x6a,
    0xa8,
    0x50,
    0x19,
    0x2e,
  ]);
  // A legacy file (torch < 1.6) that ends after its magic number. Before: refused as legacy.
  await rejectsWith(legacy, /protocol version pickle: truncated pickle \(byte 15\)$/);
  await rejectsWith(latin1("hello world, not a checkpoint"), /not a PyTorch checkpoint/);
  // Before: 'this file starts with )', quoting no bytes.
  await rejectsWith(new Uint8Array(0), /: not a PyTorch checkpoint \(an empty file\)$/);
  const good = await Deno.readFile(DTYPES);
  // Cut short: it starts as a zip but has no end record, which is said (not "not a zip file").
  await rejectsWith(
    good.subarray(0, 2000),
    /: a zip file cut short \(no end of central directory record after 2000 bytes\): an interrupted download or copy\? fetch the file again$/,
  );
  const entries = unzipSync(good);
  const pkl = entries["dtypes/data.pkl"]!;
  const storages: Record<string, Uint8Array> = {};
  for (const [k, v] of Object.entries(entries)) {
    const m = k.match(/^dtypes\/data\/(\d+)$/);
    if (m) storages[m[1]!] = v;
  }
  // The archive's name is data.pkl's folder, whatever it is.
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "x.bin");
    await Deno.writeFile(path, zip(pkl, storages));
    assert.equal((await readTorchBinHeader(path)).tensors.size, 12);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  await rejectsWith(zip(pkl, storages, 6), /data\.pkl" is compressed \(method 8\)/);
  await rejectsWith(
    zip(pkl, { ...storages, "0": storages["0"]!.subarray(0, 50) }),
    /tensor "f32": storage entry archive\/data\/0 has 50 bytes, but 24 float32 elements need 96/,
  );
  const { "3": _, ...without3 } = storages;
  await rejectsWith(
    zip(pkl, without3),
    /tensor "i64": its storage entry archive\/data\/3 is missing/,
  );
});

Deno.test("a flipped byte in a storage is refused by the CRC-32 the zip records (none recorded: read as it is)", async () => {
  const h = await readTorchBinHeader(DTYPES);
  const entry = h.storages.get(h.tensors.get("f32")!.storage)!.entry!;
  assert.notEqual(entry.crc32, 0, "torch.save records one");
  const bytes = (await Deno.readFile(DTYPES)).slice();
  const local = new DataView(bytes.buffer, entry.localHeaderOffset);
  assert.equal(local.getUint32(0, true), 0x04034b50);
  const start = entry.localHeaderOffset + 30 + local.getUint16(26, true) +
    local.getUint16(28, true);
  bytes[start + 5]! ^= 0xff;
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "flipped.bin");
    await Deno.writeFile(path, bytes);
    await assert.rejects(
      readAll(path),
      (e: unknown) =>
        e instanceof CheckpointError && e.file === path &&
        new RegExp(
          `^${
            path.replaceAll(".", "\\.")
          }: tensor "f32": the bytes of its zip entry "${entry.name}" ` +
            `do not match the CRC-32 the zip records \\(0x${
              entry.crc32.toString(16).padStart(8, "0")
            }, ` +
            `read 0x[0-9a-f]{8}\\): the file is damaged`,
        ).test(e.message),
    );
    // An entry written without a CRC (0: torch's set_crc32_options(False)) is read unchecked.
    let p = 0;
    for (;;) {
      p = bytes.indexOf(0x50, p);
      if (p < 0) break;
      const v = new DataView(bytes.buffer, p);
      if (
        p + 46 <= bytes.length && v.getUint32(0, true) === 0x02014b50 &&
        v.getUint32(42, true) === entry.localHeaderOffset
      ) {
        v.setUint32(16, 0, true);
        break;
      }
      p++;
    }
    assert.ok(p > 0, "the central directory entry");
    await Deno.writeFile(path, bytes);
    const got = await readAll(path);
    assert.notDeepEqual([...got.get("f32")!.values!], BASE, "the flipped byte, read as it is");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readZipDirectory follows the ZIP64 end record", async () => {
  // torch.save writes ZIP64 end records; saturate the classic end record's fields so that the
  // reader must take the counts and offsets from the ZIP64 one (as in a > 4 GB checkpoint).
  const bytes = (await Deno.readFile(DTYPES)).slice();
  const end = new DataView(bytes.buffer, bytes.byteLength - 22);
  assert.equal(end.getUint32(0, true), 0x06054b50);
  end.setUint16(8, 0xffff, true);
  end.setUint16(10, 0xffff, true);
  end.setUint32(12, 0xffffffff, true);
  end.setUint32(16, 0xffffffff, true);
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "zip64.bin");
    await Deno.writeFile(path, bytes);
    const got = await readAll(path);
    assert.deepEqual([...got.get("offset")!.values!], BASE.slice(10, 16));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readTorchBinHeader: hostile zip extra fields, pickle runs and view sizes name the file", async () => {
  // A central directory entry whose extra field claims more bytes than the entry has (with its
  // size saturated, so that the ZIP64 field is read): before, a RangeError naming nothing.
  const z = zip(latin1("\x80\x02}."));
  const v = new DataView(z.buffer);
  const cdAt = v.getUint32(z.byteLength - 22 + 16, true);
  const entryLen = 46 + v.getUint16(cdAt + 28, true) + v.getUint16(cdAt + 30, true);
  const entry = z.slice(cdAt, cdAt + entryLen);
  new DataView(entry.buffer).setUint32(24, 0xffffffff, true);
  new DataView(entry.buffer).setUint16(30, v.getUint16(cdAt + 30, true) + 4, true);
  const cd = new Uint8Array([...entry, 0x01, 0x00, 0xf0, 0xff]);
  const end = z.slice(z.byteLength - 22);
  new DataView(end.buffer).setUint32(12, cd.byteLength, true);
  await rejectsWith(
    new Uint8Array([...z.subarray(0, cdAt), ...cd, ...end]),
    /malformed zip central directory \(entry 0's extra field 0x0001 overruns its 4 bytes\)/,
  );
  // APPENDS of a million items (spread as arguments before: call stack overflow).
  await rejectsWith(zip(latin1("\x80\x02](" + "N".repeat(1_000_000) + "e.")), /holds list/);
  // A stride-0 view of one stored float with 2^90 elements: refused from the header.
  await rejectsWith(
    zip(latin1(strideZeroView(["J\x00\x00\x00\x40", "J\x00\x00\x00\x40", "J\x00\x00\x00\x40"])), {
      "0": new Uint8Array(4),
    }),
    /tensor "w": shape \[1073741824, 1073741824, 1073741824\] has \S+ elements, more than the 2147483647 one tensor may have$/,
  );
});

/**
 * data.pkl of a state dict of one tensor "w": a view with strides 0 and the given sizes (pickle
 * ints) of storage "0", one float32.
 */
function strideZeroView(sizes: string[]): string {
  const s = (x: string) => "X" + String.fromCharCode(x.length) + "\x00\x00\x00" + x;
  return "\x80\x02ccollections\nOrderedDict\n)R(" + s("w") +
    "ctorch._utils\n_rebuild_tensor_v2\n((" + s("storage") + "ctorch\nFloatStorage\n" + s("0") +
    s("cpu") + "K\x01tQK\x00(" + sizes.join("") + "t(" + "K\x00".repeat(sizes.length) + "t\x89" +
    "ccollections\nOrderedDict\n)RtRu.";
}

Deno.test("a view of more elements than a tensor may have is refused naming the file and tensor, before allocating", async () => {
  // A stride-0 view [2^24, 2^24] (2^48 elements) of one stored float: its numel × 4 bytes is a
  // safe integer, so the header passed, and the row-major copy failed allocating with a bare
  // "RangeError: Array buffer allocation failed".
  const twoTo24 = "J\x00\x00\x00\x01";
  const bytes = zip(latin1(strideZeroView([twoTo24, twoTo24])), { "0": new Uint8Array(4) });
  const tooMany =
    /tensor "w": shape \[16777216, 16777216\] has 281474976710656 elements, more than the 2147483647 one tensor may have$/;
  await rejectsWith(bytes, tooMany);
  // A header given by the caller is checked again before the copy is allocated.
  const h = await readTorchBinHeader(DTYPES);
  const f32 = h.tensors.get("f32")!;
  const tensors = new Map([["w", { ...f32, shape: [2 ** 24, 2 ** 24], stride: [0, 0] }]]);
  await assert.rejects(
    readAll(DTYPES, { ...h, tensors }),
    (e: Error) => {
      assert.ok(e.message.startsWith(`${DTYPES}: tensor "w": `), e.message);
      assert.match(e.message, tooMany);
      return true;
    },
  );
});

Deno.test("a checkpoint that shrinks while being read: the error names the file and what was read", async () => {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "pytorch_model.bin");
  const names = (re: RegExp) => (e: Error) => {
    assert.ok(e.message.startsWith(`${path}: `), `names the file: ${e.message}`);
    assert.match(e.message, re);
    assert.ok(e instanceof CheckpointError, `not a CheckpointError: ${e}`);
    assert.equal(e.file, path);
    return true;
  };
  try {
    // Tensor data: the first tensor read, then the file cut short (after its size was taken).
    // Before: "unexpected end of file at byte N", naming no file.
    await Deno.copyFile(DTYPES, path);
    const it = readTorchBinTensors(path, await readTorchBinHeader(path));
    assert.equal((await it.next()).value?.name, "f32");
    await Deno.truncate(path, 100);
    await assert.rejects(
      it.next(),
      names(
        /: tensor "f16": zip entry "dtypes\/data\/1": unexpected end of file at byte \d+ while reading its local header .*truncated or rewritten/,
      ),
    );
    // The zip directory, the file cut after it was opened and its size taken.
    await Deno.copyFile(DTYPES, path);
    await shrinkingAtFirstRead(path, 100, async () => {
      await assert.rejects(
        readTorchBinHeader(path),
        names(/: unexpected end of file at byte \d+ while reading the zip end records/),
      );
    });
    // A legacy file's pickles.
    await Deno.writeFile(path, legacyFile(legacyMain(), ["k0"], [[6n, SIX]]));
    await shrinkingAtFirstRead(path, 20, async () => {
      await assert.rejects(
        readTorchBinHeader(path),
        names(/: unexpected end of file at byte \d+ while reading the legacy format's pickles/),
      );
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("legacy format saved under Python 2: its str as SHORT_BINSTRING and BINSTRING", async () => {
  // Python 2's pickle (protocol 2) writes a str of under 256 bytes as SHORT_BINSTRING, a longer
  // one as BINSTRING (4-byte length). Before: BINSTRING refused as an opcode torch.save does not
  // emit, and SHORT_BINSTRING decoded as latin-1 where torch.load decodes UTF-8.
  const py2 = (bytes: string) => {
    const n = bytes.length;
    return n < 256
      ? "U" + String.fromCharCode(n) + bytes
      : "T" + String.fromCharCode(n & 255, (n >> 8) & 255, (n >> 16) & 255, n >>> 24) + bytes;
  };
  /** The UTF-8 bytes of `s`, one character each (as `latin1` takes them). */
  const utf8 = (s: string) => String.fromCharCode(...new TextEncoder().encode(s));
  const prelude = PRELUDE.replace(uni("little_endian"), py2("little_endian"));
  const long = "encoder." + "x".repeat(300) + ".weight";
  const cases: [string, string][] = [
    [long, long], // BINSTRING
    [utf8("café"), "café"], // UTF-8, torch.load's default encoding
    ["caf\xe9", "café"], // not UTF-8: latin-1, as encoding="latin1" gives
    // Latin-1 (ISO-8859-1) maps each byte to the code point of its value; WHATWG's "latin1"
    // label (windows-1252) would read 0x80 and 0x9f as "€" and "Ÿ".
    ["a\x80\x9fb", "a\u0080\u009fb"],
  ];
  for (const [bytes, name] of cases) {
    const file = legacyFile(
      legacyMain(undefined, undefined, undefined, { str: py2, name: bytes, key: "1" }),
      ["1"],
      [[6n, SIX]],
      { prelude, str: py2 },
    );
    const got = await readBytes(file);
    assert.deepEqual([...got.keys()], [name]);
    assert.deepEqual([...got.get(name)!.values!], [0, 1, 2, 3, 4, 5]);
  }
  await rejectsWith(
    legacyFile("\x80\x02T\xff\xff\xff\xff.", [], [], { prelude }),
    /state dict pickle: BINSTRING of negative length -1 \(byte \d+\)$/,
  );
  await rejectsWith(
    legacyFile("\x80\x02T\x10\x00\x00\x00abc", [], [], { prelude }),
    /state dict pickle: truncated pickle \(byte \d+\)$/,
  );
  // Still no code: a global named by Python 2 strings is refused.
  await rejectsWith(
    zip(latin1("\x80\x02U\x02osU\x06system\x93.")),
    /refused global os\.system \(STACK_GLOBAL\)/,
  );
});

// The legacy format of torch < 1.6 (testdata/make_torch_bin.py writes testdata/torch/legacy/, the
// same state dicts as the zip files above, with torch.save(..., _use_new_zipfile_serialization=
// False)).
const LEGACY = join(DIR, "legacy");
const FILES = [
  "dtypes.bin",
  "module.bin",
  "t5-tiny-v1_1-untied.bin",
  "t5-tiny-relu/pytorch_model-00001-of-00002.bin",
  "t5-tiny-relu/pytorch_model-00002-of-00002.bin",
];

Deno.test("readTorchBinTensors: legacy-format files read bit-identical to the zip ones", async () => {
  for (const f of FILES) {
    const [zh, lh] = [
      await readTorchBinHeader(join(DIR, f)),
      await readTorchBinHeader(join(LEGACY, f)),
    ];
    assert.equal(zh.format, "zip", f);
    assert.equal(lh.format, "legacy", f);
    assert.deepEqual([...lh.tensors.keys()], [...zh.tensors.keys()], f);
    // Same views (the storage keys differ: the legacy format's are memory addresses), and the
    // same tensors share a storage (tied weights, q/k/v of one storage).
    const shared = (h: typeof zh, a: string, b: string) =>
      h.tensors.get(a)!.storage === h.tensors.get(b)!.storage;
    const names = [...zh.tensors.keys()];
    for (const [name, z] of zh.tensors) {
      const l = lh.tensors.get(name)!;
      assert.deepEqual([l.dtype, l.shape, l.stride, l.storageOffset], [
        z.dtype,
        z.shape,
        z.stride,
        z.storageOffset,
      ], `${f}: ${name}`);
      for (const other of names) {
        assert.equal(shared(lh, name, other), shared(zh, name, other), `${f}: ${name}, ${other}`);
      }
    }
    const [z, l] = [await readAll(join(DIR, f)), await readAll(join(LEGACY, f))];
    for (const [name, want] of z) {
      const got = l.get(name)!;
      assert.equal(got.sameAs, want.sameAs, `${f}: ${name}`);
      if (want.values === undefined) continue;
      assert.equal(got.values?.constructor, want.values.constructor, `${f}: ${name}`);
      assert.equal(got.values!.length, want.values.length, `${f}: ${name}`);
      assert.ok(want.values.every((v, i) => Object.is(v, got.values![i])), `${f}: ${name} differs`);
    }
  }
});

Deno.test("loadHfFolder reads legacy pytorch_model.bin (single and sharded) as the safetensors, leak-free", async () => {
  await tf.setBackend("cpu");
  for (const fixture of ["t5-tiny-v1_1-untied", "t5-tiny-relu"]) {
    const src = sharedPath("fixtures", "hf-t5", fixture);
    const dir = await Deno.makeTempDir();
    try {
      await Deno.copyFile(join(src, "config.json"), join(dir, "config.json"));
      if (fixture === "t5-tiny-relu") {
        for await (const e of Deno.readDir(join(LEGACY, fixture))) {
          await Deno.copyFile(join(LEGACY, fixture, e.name), join(dir, e.name));
        }
      } else {
        await Deno.copyFile(join(LEGACY, `${fixture}.bin`), join(dir, "pytorch_model.bin"));
      }
      const before = tf.memory().numTensors;
      const st = await loadHfFolder(src);
      const pt = await loadHfFolder(dir);
      for (const [name, want] of st.tensors) {
        const got = pt.tensors.get(name);
        assert.ok(got, `${fixture}: ${name} missing`);
        assert.deepEqual(got.shape, want.shape, name);
        const [a, b] = [await got.data(), await want.data()];
        assert.ok(a.every((v, i) => Object.is(v, b[i])), `${fixture}: ${name} values differ`);
      }
      for (const t of new Set([...st.tensors.values(), ...pt.tensors.values()])) t.dispose();
      assert.equal(tf.memory().numTensors, before, "no leaked tensors");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});

Deno.test("readTorchBinHeader of a legacy file reads its pickles and counts, no storage data", async () => {
  const path = join(LEGACY, "t5-tiny-v1_1-untied.bin");
  const size = (await Deno.stat(path)).size;
  let h = await readTorchBinHeader(path);
  const read = await bytesRead(async () => {
    h = await readTorchBinHeader(path);
  });
  // The pickles end 8 bytes (a count) before the first storage; they are read in chunks that
  // double from 4 KiB, so at most as many bytes again past their end, plus each 8-byte count.
  const starts = [...h.storages.values()].map((s) => s.start!);
  const pickles = Math.min(...starts) - 8;
  const bound = Math.max(4096, 2 * pickles) + 8 * starts.length + 16;
  assert.equal(h.tensors.size, 68);
  assert.ok(read <= bound, `${read} bytes read, more than ${bound} (pickles: ${pickles})`);
  assert.ok(read < size / 10, `${read} bytes read of ${size}`);
});

/** BINUNICODE of `x` (ASCII). */
const uni = (x: string) => {
  const n = x.length;
  return "X" + String.fromCharCode(n & 255, n >> 8, 0, 0) + x;
};
/** The pickles before a legacy file's state dict: magic number, protocol version, sys_info. */
const PRELUDE = "\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19." + "\x80\x02M\xe9\x03." +
  "\x80\x02}" + uni("little_endian") + "\x88s.";

/**
 * A state dict of one float32 tensor `w` ("k0": six floats 0–5), pickled as torch < 1.6 did,
 * with the given view metadata (pickle text), size and stride tuples (pickle text).
 */
function legacyMain(
  viewMeta = "N",
  size = "K\x02K\x03\x86",
  stride = "K\x03K\x01\x86",
  { str = uni, name = "w", key = "k0" } = {},
): string {
  return "\x80\x02ccollections\nOrderedDict\n)R(" + str(name) +
    "ctorch._utils\n_rebuild_tensor_v2\n((" + str("storage") + "ctorch\nFloatStorage\n" +
    str(key) + str("cpu") + "K\x06" + viewMeta + "tQK\x00" + size + stride + "\x89" +
    "ccollections\nOrderedDict\n)RtRu.";
}

/**
 * A legacy file: PRELUDE (or `prelude`), `main`, the list of `keys` (strings made by `str`), then
 * each [count, bytes].
 */
function legacyFile(
  main: string,
  keys: string[],
  storages: [bigint, Uint8Array][],
  { prelude = PRELUDE, str = uni } = {},
): Uint8Array {
  const head = latin1(prelude + main + "\x80\x02](" + keys.map(str).join("") + "e.");
  const parts: Uint8Array[] = [head];
  for (const [count, bytes] of storages) {
    const c = new Uint8Array(8);
    new DataView(c.buffer).setBigUint64(0, count, true);
    parts.push(c, bytes);
  }
  const out = new Uint8Array(parts.reduce((a, p) => a + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

const SIX = new Uint8Array(new Float32Array([0, 1, 2, 3, 4, 5]).buffer);

async function readBytes(bytes: Uint8Array): Promise<Map<string, TorchTensorRead>> {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "pytorch_model.bin");
    await Deno.writeFile(path, bytes);
    return await readAll(path);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("legacy format: hand-made files, storage views, and hostile ones refused naming the file", async () => {
  // The helpers make what torch reads: one tensor, [2, 3] of 0–5.
  const ok = await readBytes(legacyFile(legacyMain(), ["k0"], [[6n, SIX]]));
  assert.deepEqual([...ok.get("w")!.values!], [0, 1, 2, 3, 4, 5]);
  // View metadata (torch < 1.0's storage views): the tensor [2, 2] at offset 0 of a view of
  // elements 2–5 of "k0".
  const view = "(" + uni("v") + "K\x02K\x04t";
  const viewed = await readBytes(
    legacyFile(legacyMain(view, "K\x02K\x02\x86", "K\x02K\x01\x86"), ["k0"], [[6n, SIX]]),
  );
  assert.deepEqual([...viewed.get("w")!.values!], [2, 3, 4, 5]);
  assert.equal(viewed.get("w")!.info.storageOffset, 2);
  await rejectsWith(
    legacyFile(legacyMain(view), ["k0"], [[6n, SIX]]),
    /state dict pickle: tensor of shape \[2,3\], strides \[3,1\] at offset 0 reaches element 5 of a storage view of 4/,
  );
  await rejectsWith(
    legacyFile(legacyMain("(" + uni("v") + "K\x04K\x04t"), ["k0"], [[6n, SIX]]),
    /storage view of 4 elements at 4 overruns storage "k0" of 6/,
  );
  // Bad magic: a pickle of another number first.
  const bad = latin1(PRELUDE);
  bad[13] = bad[13]! ^ 1;
  await rejectsWith(
    bad,
    /not a PyTorch checkpoint: a pickle whose first value is \d+, not torch's magic number 0x1950a86a20f9469cfc6c/,
  );
  await rejectsWith(latin1("\x80\x02K\x05."), /first value is 5, not torch's magic number/);
  await rejectsWith(
    latin1(PRELUDE.replace("M\xe9\x03", "M\xe8\x03")),
    /legacy PyTorch checkpoint of protocol version 1000; only 1001/,
  );
  await rejectsWith(
    latin1(PRELUDE.replace("\x88s.", "\x89s.")),
    /storages are big-endian; only little-endian is read/,
  );
  // A GLOBAL os.system in the state dict pickle, or in place of the magic number.
  const osSystem = "\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03.";
  await rejectsWith(
    legacyFile(osSystem, [], []),
    new RegExp(
      `state dict pickle: refused global os\\.system \\(GLOBAL\\).*\\(byte ${
        PRELUDE.length + 2
      }\\)$`,
    ),
  );
  await rejectsWith(latin1(osSystem), /magic number pickle: refused global os\.system/);
  // A zip checkpoint's 5-tuple persistent id is not the legacy format's.
  await rejectsWith(
    legacyFile(legacyMain().replace("K\x06N", "K\x06"), ["k0"], [[6n, SIX]]),
    /persistent id tuple is not a torch storage \('storage', type, key, location, numel, view metadata\)/,
  );
  // Truncated: in the middle of a count, or of the storage's bytes.
  const whole = legacyFile(legacyMain(), ["k0"], [[6n, SIX]]);
  const countAt = whole.byteLength - 24 - 8;
  await rejectsWith(
    whole.subarray(0, countAt + 4),
    new RegExp(
      `storage "k0" \\(float32\\[6\\]\\): truncated file: its element count at byte ${countAt} ends past`,
    ),
  );
  await rejectsWith(
    whole.subarray(0, whole.byteLength - 1),
    /storage "k0" \(float32\[6\]\): truncated file: its 24 bytes at byte \d+ end past the file's/,
  );
  // A count that lies (the bytes follow the pickle's numel, as torch checks).
  await rejectsWith(
    legacyFile(legacyMain(), ["k0"], [[7n, SIX]]),
    new RegExp(
      `storage "k0" \\(float32\\[6\\]\\): the element count at byte ${countAt} says 7, but the state dict says 6`,
    ),
  );
  await rejectsWith(
    legacyFile(legacyMain(), ["k0"], [[2n ** 63n, SIX]]),
    /the element count at byte \d+ says 9223372036854775808, but the state dict says 6/,
  );
  // Storage key lists that do not match the state dict.
  await rejectsWith(
    legacyFile(legacyMain(), [], []),
    /tensor "w": its storage "k0" is not in the file's storage key list/,
  );
  await rejectsWith(
    legacyFile(legacyMain(), ["k0", "k1"], [[6n, SIX]]),
    /lists storage "k1" that its state dict does not use/,
  );
  await rejectsWith(
    legacyFile(legacyMain(), ["k0", "k0"], [[6n, SIX], [6n, SIX]]),
    /lists storage "k0" twice/,
  );
  // A pickle that never ends (no STOP): read in growing chunks up to the file's end, then refused.
  await rejectsWith(
    latin1(PRELUDE + "\x80\x02](" + "N".repeat(20_000)),
    /state dict pickle: truncated pickle \(byte 20\d\d\d\)$/,
  );
});

Deno.test("readTorchBinTensors refuses a file rewritten since its header was read, or while its tensors are read", async () => {
  // Before, a header read earlier was used with whatever file the path then held: a same-size
  // rewrite was read at the old file's offsets, silently.
  const dir = await Deno.makeTempDir();
  const path = join(dir, "pytorch_model.bin");
  try {
    const bytes = await Deno.readFile(DTYPES);
    await Deno.writeFile(path, bytes);
    const header = await readTorchBinHeader(path);
    assert.ok(header.identity !== undefined, "readTorchBinHeader records the file's identity");
    // The same bytes and modification time, written beside it and renamed over it: its inode.
    const stat = await Deno.stat(path);
    await Deno.writeFile(`${path}.new`, bytes);
    await Deno.utime(`${path}.new`, stat.atime!, stat.mtime!);
    await Deno.rename(`${path}.new`, path);
    await assert.rejects(readAll(path, header), (e: Error) => {
      assert.match(
        e.message,
        /^(.*): changed while being read \(since its header was read: inode \d+ → \d+\); rerun$/,
      );
      assert.ok(e.message.startsWith(`${path}: `), e.message);
      return true;
    });
    // Its own header is read fine; its modification time moved while its tensors are read (as a
    // write in place moves it; set 2 s later, beyond the timestamp granularity), it is refused.
    const fresh = await readTorchBinHeader(path);
    assert.equal((await readAll(path, fresh)).size, fresh.tensors.size);
    await assert.rejects(
      (async () => {
        for await (const t of readTorchBinTensors(path, fresh)) {
          if (t.name === [...fresh.tensors.keys()][0]) {
            await Deno.utime(path, stat.atime!, new Date(stat.mtime!.getTime() + 2000));
          }
        }
      })(),
      (e: Error) => {
        assert.match(
          e.message,
          /: changed while being read \(while its tensors were read: modification time \S+ → \S+\); rerun$/,
        );
        assert.ok(e.message.startsWith(`${path}: `), e.message);
        return true;
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the unpickler's integer and memo opcodes: BININT2 is unsigned, LONG1 signed, MEMOIZE numbers from 0", async () => {
  const dir = await Deno.makeTempDir();
  const header = async (pkl: string) => {
    const path = join(dir, "pytorch_model.bin");
    await Deno.writeFile(path, zip(latin1(pkl), { "0": new Uint8Array(4) }));
    return await readTorchBinHeader(path);
  };
  try {
    // BININT2 (pickle's form of 256–65535): 40000 = 0x9c40 is a size, not -25536.
    const wide = await header(strideZeroView(["M\x40\x9c"]));
    assert.deepEqual(wide.tensors.get("w")!.shape, [40000]);
    // LONG1 is two's complement: \xff is -1 (refused as a size), not 255.
    await rejectsWith(
      zip(latin1(strideZeroView(["\x8a\x01\xff"])), { "0": new Uint8Array(4) }),
      /tensor size must be a non-negative integer, got -1\b/,
    );
    // Protocol 4 memoizes with MEMOIZE (no index: the memo's size) and refers back with BINGET:
    // the second OrderedDict global is memo entry 0.
    const p4 = strideZeroView(["K\x03"])
      .replace("\x80\x02ccollections\nOrderedDict\n", "\x80\x04ccollections\nOrderedDict\n\x94")
      .replace(/ccollections\nOrderedDict\n\)RtRu\.$/, "h\x00)RtRu.");
    assert.ok(p4.includes("\x94") && p4.includes("h\x00)RtRu."), "the protocol 4 pickle");
    const memo = await header(p4);
    assert.deepEqual(memo.tensors.get("w")!.shape, [3]);
    assert.deepEqual(memo.tensors.get("w")!.stride, [0]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
