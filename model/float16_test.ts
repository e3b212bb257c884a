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
