import assert from "node:assert/strict";
import {
  bf16BitsToF32,
  f16ArrayToF32,
  f16BitsToF32,
  f32BitsToBf16,
  f32BitsToF16,
} from "./float16.ts";

function f32Bits(x: number): number {
  return new Uint32Array(new Float32Array([x]).buffer)[0]!;
}

Deno.test("every float16 value survives decode → encode exactly; the table matches", () => {
  const all = new Uint16Array(65536).map((_, i) => i);
  const table = f16ArrayToF32(all);
  for (let h = 0; h < 65536; h++) {
    const x = f16BitsToF32(h);
    assert.ok(Object.is(table[h], Math.fround(x)), `table[${h}]`);
    if (Number.isNaN(x)) continue;
    assert.equal(f32BitsToF16(f32Bits(x)), h, `f16 ${h.toString(16)}`);
  }
});

Deno.test("every bfloat16 value survives decode → encode exactly", () => {
  for (let h = 0; h < 65536; h++) {
    const x = bf16BitsToF32(h);
    if (Number.isNaN(x)) {
      assert.ok(Number.isNaN(bf16BitsToF32(f32BitsToBf16(f32Bits(x)))));
      continue;
    }
    assert.equal(f32BitsToBf16(f32Bits(x)), h, `bf16 ${h.toString(16)}`);
  }
  assert.equal(bf16BitsToF32(0x3f80), 1);
  assert.equal(bf16BitsToF32(0xc040), -3);
});

Deno.test("f32 → f16: every magnitude from 65520 up is ±Inf, a NaN of any payload stays NaN", () => {
  // [65536, 131072) has the float16 exponent field 31 itself: an encoder that refused only larger
  // exponents wrote these as NaN bit patterns (0x7c00 | mantissa) instead of Inf.
  for (const x of [65520, 65536, 70000, 1e5, 131071.99, 131072, 1e30, 3.4e38]) {
    assert.equal(f32BitsToF16(f32Bits(x)), 0x7c00, `f16(${x})`);
    assert.equal(f32BitsToF16(f32Bits(-x)), 0xfc00, `f16(${-x})`);
  }
  // NaNs whose payload is only in the 13 low mantissa bits that float16 drops (a signalling NaN
  // among them) must not become Inf; the sign is kept.
  for (const bits of [0x7f800001, 0x7f801fff, 0xff800001, 0x7fc00000, 0x7fffffff]) {
    const h = f32BitsToF16(bits >>> 0);
    assert.ok(
      Number.isNaN(f16BitsToF32(h)),
      `f16 of NaN 0x${bits.toString(16)}: 0x${h.toString(16)}`,
    );
    assert.equal(h & 0x8000, (bits >>> 16) & 0x8000, `sign of 0x${bits.toString(16)}`);
  }
});
