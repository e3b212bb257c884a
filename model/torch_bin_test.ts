import assert from "node:assert/strict";
import { join } from "node:path";
import { unzipSync, zipSync } from "fflate";
import { readTorchBinHeader, readTorchBinTensors, type TorchTensorRead } from "./torch_bin.ts";
import { bytesRead } from "./read_meter_testing.ts";

const DIR = new URL("./testdata/torch/", import.meta.url).pathname;
const DTYPES = join(DIR, "dtypes.bin");
const UNTIED = join(DIR, "t5-tiny-v1_1-untied.bin");

/** `arange(24) / 8 - 1`, the base of testdata/make_torch_bin.py's dtypes.bin (exact in f16, bf16). */
const BASE = Array.from({ length: 24 }, (_, i) => i / 8 - 1);

async function readAll(path: string): Promise<Map<string, TorchTensorRead>> {
  const out = new Map<string, TorchTensorRead>();
  for await (const t of readTorchBinTensors(path)) out.set(t.name, t);
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
  await rejectsWith(legacy, /legacy format of torch < 1\.6.*Re-save it in the zip format/);
  await rejectsWith(latin1("hello world, not a checkpoint"), /not a PyTorch checkpoint/);
  // Before: 'this file starts with )', quoting no bytes.
  await rejectsWith(new Uint8Array(0), /: not a PyTorch checkpoint \(an empty file\)$/);
  const good = await Deno.readFile(DTYPES);
  await rejectsWith(good.subarray(0, 2000), /not a zip file|truncated/);
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
  const s = (x: string) => "X" + String.fromCharCode(x.length) + "\x00\x00\x00" + x;
  const big = "J\x00\x00\x00\x40"; // BININT 2^30
  const pkl = "\x80\x02ccollections\nOrderedDict\n)R(" + s("w") +
    "ctorch._utils\n_rebuild_tensor_v2\n((" + s("storage") + "ctorch\nFloatStorage\n" + s("0") +
    s("cpu") + "K\x01tQK\x00(" + big + big + big + "t(K\x00K\x00K\x00t\x89" +
    "ccollections\nOrderedDict\n)RtRu.";
  await rejectsWith(
    zip(latin1(pkl), { "0": new Uint8Array(4) }),
    /tensor "w": shape \[1073741824, 1073741824, 1073741824\] has \S+ elements, more than any/,
  );
});
