import assert from "node:assert/strict";
import { join } from "node:path";
import { sharedPath } from "./shared_dir.ts";
import { shrinkingAtFirstRead } from "./read_meter_testing.ts";
import { CheckpointError } from "./checkpoint_error.ts";
import {
  bf16BitsToF32,
  decodeSafetensors,
  encodeSafetensors,
  encodeTypedArray,
  f16BitsToF32,
  f32BitsToBf16,
  f32BitsToF16,
  parseHeader,
  type RawTensor,
  readSafetensorsHeader,
  toTypedArray,
} from "./safetensors.ts";

const FIXTURE = sharedPath("fixtures", "hf-t5", "t5-tiny-relu", "model.safetensors");

function f32Bits(x: number): number {
  return new Uint32Array(new Float32Array([x]).buffer)[0]!;
}

function bytesOf(a: Float32Array | Int32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

Deno.test("header-only read of the HF fixture: names, shapes, padding, metadata", async () => {
  const h = await readSafetensorsHeader(FIXTURE);
  assert.deepEqual(h.metadata, { format: "pt" });
  assert.equal(h.dataStart % 8, 0, "reference writer pads the header to 8 bytes");
  const q = h.tensors.get("encoder.block.0.layer.0.SelfAttention.q.weight");
  assert.ok(q);
  assert.equal(q.dtype, "F32");
  assert.deepEqual(q.shape, [32, 32]);
  const size = (await Deno.stat(FIXTURE)).size;
  const maxEnd = Math.max(...[...h.tensors.values()].map((t) => t.dataOffsets[1]));
  assert.equal(h.dataStart + maxEnd, size, "data section ends at the end of the file");
});

Deno.test("our encoder reproduces the reference writer byte for byte on the fixture", async () => {
  const bytes = await Deno.readFile(FIXTURE);
  const { tensors, metadata } = decodeSafetensors(bytes, FIXTURE);
  const again = encodeSafetensors(tensors, metadata);
  assert.equal(again.byteLength, bytes.byteLength);
  assert.ok(again.every((b, i) => b === bytes[i]), "re-encoded file differs");
});

Deno.test("encode/decode round trip with all dtypes, scalar and empty tensors", () => {
  const f = new Float32Array([1.5, -2.25, 3e-8, 65504, Infinity]);
  const i = new Int32Array([1, -2, 2147483647, -2147483648]);
  const t = new Map<string, RawTensor>([
    ["f32", { dtype: "F32", shape: [5], data: encodeTypedArray(f, "F32") }],
    ["f16", { dtype: "F16", shape: [5], data: encodeTypedArray(f, "F16") }],
    ["bf16", { dtype: "BF16", shape: [1, 5], data: encodeTypedArray(f, "BF16") }],
    ["i32", { dtype: "I32", shape: [2, 2], data: encodeTypedArray(i, "I32") }],
    ["i64", { dtype: "I64", shape: [4], data: encodeTypedArray(i, "I64") }],
    ["scalar", { dtype: "F32", shape: [], data: bytesOf(new Float32Array([7])) }],
    ["empty", { dtype: "F32", shape: [0, 3], data: new Uint8Array(0) }],
  ]);
  const bytes = encodeSafetensors(t, { note: "x" });
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal(n % 8, 0);
  assert.equal(bytes[8 + n - 1], 0x20, "header padded with spaces");
  const back = decodeSafetensors(bytes, "mem");
  assert.deepEqual(back.metadata, { note: "x" });
  const g = (k: string) => {
    const r = back.tensors.get(k)!;
    return Array.from(toTypedArray(r.dtype, r.data));
  };
  assert.deepEqual(g("f32"), Array.from(f));
  assert.deepEqual(g("f16"), [1.5, -2.25, f16BitsToF32(1), 65504, Infinity]);
  assert.deepEqual(g("i32"), Array.from(i));
  assert.deepEqual(g("i64"), Array.from(i));
  assert.deepEqual(g("scalar"), [7]);
  assert.deepEqual(g("empty"), []);
  assert.deepEqual(back.tensors.get("bf16")!.shape, [1, 5]);
  // bfloat16 keeps float32's exponent and 8 significant bits: 1.5 and -2.25 are exact, 3e-8 is
  // rounded to its nearest bfloat16 (0x3301), 65504 (11 bits) to 65536, Infinity stays.
  assert.deepEqual(g("bf16"), [1.5, -2.25, bf16BitsToF32(0x3301), 65536, Infinity]);
  assert.notEqual(bf16BitsToF32(0x3301), 0);
  assert.ok(
    Math.abs(bf16BitsToF32(0x3301) - 3e-8) < 3e-8 * 2 ** -8,
    "the nearest bfloat16 of 3e-8",
  );
});

Deno.test("f16 rounding: nearest even, subnormals, overflow, inf, nan", () => {
  const cases: [number, number][] = [
    [1, 0x3c00],
    [-2, 0xc000],
    [65504, 0x7bff],
    [65520, 0x7c00], // halfway between max and 2^16 rounds to even → inf
    [65519, 0x7bff],
    [1e6, 0x7c00],
    [-Infinity, 0xfc00],
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -25, 0x0000], // tie between 0 and min subnormal → even (0)
    [3 * 2 ** -25, 0x0002], // tie between 1 and 2 (×2^-24) → even (2)
    [2 ** -26, 0x0000],
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -14 - 2 ** -25, 0x0400], // tie at the subnormal/normal edge (0x3ff|1 odd) → 0x400
    [1 + 2 ** -11, 0x3c00], // tie between 1 and next → even (1)
    [1 + 3 * 2 ** -11, 0x3c02], // tie between 0x3c01 and 0x3c02 → even
    [1 + 2 ** -11 + 2 ** -20, 0x3c01], // just above the tie rounds up
    [-0, 0x8000],
  ];
  for (const [x, want] of cases) {
    assert.equal(f32BitsToF16(f32Bits(x)), want, `f16(${x})`);
  }
  const nan = f32BitsToF16(f32Bits(NaN));
  assert.equal(nan & 0x7c00, 0x7c00);
  assert.notEqual(nan & 0x3ff, 0);
  assert.ok(Number.isNaN(f16BitsToF32(nan)));
  assert.equal(f16BitsToF32(0x0001), 2 ** -24);
  assert.equal(f16BitsToF32(0x7bff), 65504);
  assert.equal(f16BitsToF32(0xfc00), -Infinity);
});

Deno.test("bf16 rounding: nearest even, inf, nan, subnormals", () => {
  const cases: [number, number][] = [
    [1, 0x3f80],
    [1 + 2 ** -8, 0x3f80], // tie → even
    [1 + 3 * 2 ** -8, 0x3f82], // tie → even (up)
    [1 + 2 ** -8 + 2 ** -20, 0x3f81],
    [3.4028234663852886e38, 0x7f80], // f32 max rounds up to inf
    [-Infinity, 0xff80],
    [2 ** -133, 0x0001], // f32 subnormal representable in bf16
  ];
  for (const [x, want] of cases) {
    assert.equal(f32BitsToBf16(f32Bits(x)), want, `bf16(${x})`);
  }
  const nan = f32BitsToBf16(0x7f800001); // signalling NaN whose payload is in the low bits
  assert.equal(nan & 0x7f80, 0x7f80);
  assert.notEqual(nan & 0x7f, 0, "NaN must not become Inf");
});

Deno.test("I64 outside int32 range is an error naming the tensor", () => {
  const big = new Uint8Array(new BigInt64Array([2n ** 40n]).buffer);
  assert.throws(() => toTypedArray("I64", big, 'f: tensor "x"'), /tensor "x".*does not fit/);
  // One past either end of int32 is refused too (it would wrap around in an Int32Array).
  for (const x of [2n ** 31n, -(2n ** 31n) - 1n]) {
    const b = new Uint8Array(new BigInt64Array([x]).buffer);
    assert.throws(() => toTypedArray("I64", b, "t"), /I64 value .* does not fit in int32/, `${x}`);
  }
});

function fileWithHeader(header: unknown, dataBytes: number, rawHeader?: string): Uint8Array {
  const json = new TextEncoder().encode(rawHeader ?? JSON.stringify(header));
  const out = new Uint8Array(8 + json.byteLength + dataBytes);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.byteLength), true);
  out.set(json, 8);
  return out;
}

/** Asserts that `fn` throws a {@link CheckpointError} of file `t.st` whose message matches `re`. */
function throwsCheckpoint(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof CheckpointError, `not a CheckpointError: ${e}`);
    assert.match(e.message, re);
    assert.equal(e.file, "t.st");
    return true;
  });
}

Deno.test("malformed files give errors naming the file and tensor", () => {
  const ok = { a: { dtype: "F32", shape: [2], data_offsets: [0, 8] } };
  throwsCheckpoint(() => decodeSafetensors(new Uint8Array(5), "t.st"), /t\.st: truncated/);
  const trunc = fileWithHeader(ok, 8).subarray(0, 12);
  throwsCheckpoint(() => decodeSafetensors(trunc, "t.st"), /t\.st: truncated safetensors header/);
  throwsCheckpoint(
    () => decodeSafetensors(fileWithHeader(null, 0, "{bad json"), "t.st"),
    /t\.st: safetensors header is not valid JSON/,
  );
  const bad = (h: unknown, n: number) => () => decodeSafetensors(fileWithHeader(h, n), "t.st");
  // A data section shorter than the header says: a cut-short file, which the error says.
  throwsCheckpoint(
    bad(ok, 4),
    /^t\.st: tensor "a": data_offsets \[0, 8\] out of range \(data section has 4 bytes\) \(the file is truncated: an interrupted download\?\)$/,
  );
  // Offsets that are backwards are no truncation.
  throwsCheckpoint(
    bad({ a: { dtype: "F32", shape: [2], data_offsets: [8, 0] } }, 8),
    /^t\.st: tensor "a": data_offsets \[8, 0\] out of range \(data section has 8 bytes\)$/,
  );
  throwsCheckpoint(
    bad({ a: { dtype: "F32", shape: [2], data_offsets: [1e300, 1e300 + 4] } }, 8),
    /^t\.st: tensor "a": "data_offsets" must be \[begin, end\] non-negative integers \(at most 2\^53 - 1\)$/,
  );
  throwsCheckpoint(
    bad({ a: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, 8),
    /tensor "a": data_offsets span 8 bytes but shape \[3\] x F32 needs 12/,
  );
  throwsCheckpoint(
    bad({ a: { dtype: "C64", shape: [1], data_offsets: [0, 8] } }, 8),
    /tensor "a": unknown or unsupported dtype "C64"/,
  );
  throwsCheckpoint(
    bad({
      a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
      b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
    }, 12),
    /tensors "a" \[0, 8\] and "b" \[4, 12\] overlap/,
  );
  throwsCheckpoint(
    bad({ a: { dtype: "F32", shape: [-1], data_offsets: [0, 8] } }, 8),
    /tensor "a": "shape"/,
  );
  throwsCheckpoint(() => parseHeader(new TextEncoder().encode("[]"), 10, "t.st"), /JSON object/);
});

Deno.test("the data section must be tiled exactly: trailing bytes and holes are errors", async () => {
  // The reference implementation rejects both ("MetadataIncompleteBuffer" / "InvalidOffset").
  const two = (bBegin: number, bEnd: number) => ({
    a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
    b: { dtype: "F32", shape: [1], data_offsets: [bBegin, bEnd] },
  });
  const st = (h: unknown, n: number) => () => decodeSafetensors(fileWithHeader(h, n), "t.st");
  // Exactly covered (and with an empty tensor at the end) is fine.
  assert.equal(st(two(8, 12), 12)().tensors.size, 2);
  const withEmpty = { ...two(8, 12), e: { dtype: "F32", shape: [0], data_offsets: [12, 12] } };
  assert.equal(st(withEmpty, 12)().tensors.size, 3);
  // Trailing garbage after the last tensor.
  assert.throws(
    st(two(8, 12), 25),
    /t\.st: data section not fully covered: 13 trailing bytes after tensor "b" \(ends at 12\)/,
  );
  // A 4-byte hole before b.
  assert.throws(
    st(two(12, 16), 16),
    /t\.st: data section not fully covered: tensor "b" starts at byte 12 but "a" ends at 8/,
  );
  // A hole at the start of the data section.
  assert.throws(
    st({ a: { dtype: "F32", shape: [1], data_offsets: [4, 8] } }, 8),
    /t\.st: data section not fully covered: tensor "a" starts at byte 4 but the data section/,
  );
  // No tensors but data bytes.
  assert.throws(
    st({}, 4),
    /t\.st: data section not fully covered: 4 trailing bytes after the header/,
  );
  // The header-only reader applies the same rule to a file on disk.
  const bytes = fileWithHeader(two(8, 12), 20);
  const dir = await Deno.makeTempDir();
  const path = join(dir, "trailing.safetensors");
  try {
    await Deno.writeFile(path, bytes);
    await assert.rejects(
      readSafetensorsHeader(path),
      (e: Error) => e.message.includes(path) && /8 trailing bytes/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("header-only read reports a missing file by name", async () => {
  const p = join(await Deno.makeTempDir(), "nope.safetensors");
  await assert.rejects(readSafetensorsHeader(p), (e: Error) => e.message.includes(p));
});

Deno.test("header-only read of a file cut short after it was opened names the file", async () => {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "model.safetensors");
  await Deno.copyFile(FIXTURE, path);
  // The file's size is taken when it is opened; the first read then finds it cut to 20 bytes,
  // inside the header (before: "unexpected end of file at byte 20", naming no file).
  try {
    await shrinkingAtFirstRead(path, 20, async () => {
      await assert.rejects(readSafetensorsHeader(path), (e: Error) => {
        assert.match(
          e.message,
          /: unexpected end of file at byte 20 while reading its header \(bytes 8–\d+\); the file is shorter than when it was opened/,
        );
        assert.ok(e.message.startsWith(`${path}: `), e.message);
        return true;
      });
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseHeader(): offsets past 4 GiB (a T5-11B shard) are offsets, not refused as too large", () => {
  const begin = 5e9;
  // A 5 GB tensor first, then one past it (only the header is read).
  const header = new TextEncoder().encode(JSON.stringify({
    big: { dtype: "F32", shape: [begin / 4], data_offsets: [0, begin] },
    a: { dtype: "F32", shape: [2], data_offsets: [begin, begin + 8] },
  }));
  const h = parseHeader(header, 8 + header.byteLength + begin + 8, "big.st");
  assert.deepEqual(h.tensors.get("a")?.dataOffsets, [begin, begin + 8]);
});
