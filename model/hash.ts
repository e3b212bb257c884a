/**
 * Integer hashing shared by the seeded streams of the project (benchmarks/rng.ts seed derivation,
 * model/fused.ts dropout masks), and the streaming sha256 of a file (tasks/download.ts data files,
 * model/checkpoint.ts checkpoint files).
 *
 * @module
 */
import { createHash } from "node:crypto";

/**
 * murmur3's 32-bit finaliser (fmix32): a bijection of u32 that spreads every input bit over the
 * output.
 *
 * @param x any number (taken modulo 2³²)
 * @returns a u32
 */
export function fmix32(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Whether `x` is an unsigned 32-bit integer, as a generator's saved state word must be (a larger
 * one would be wrapped modulo 2³² into another stream).
 *
 * @param x any value
 * @returns true for an integer in [0, 2³² − 1]
 */
export function isUint32(x: unknown): x is number {
  return Number.isInteger(x) && (x as number) >= 0 && (x as number) <= 0xffffffff;
}

/**
 * The hex sha256 of a file, read streaming 1 MiB at a time (Web Crypto has no streaming sha256,
 * so node:crypto's): memory stays flat however large the file (a T5-XXL's 44 GB of weights).
 *
 * @param path the file
 * @returns its 64 lowercase hex digits
 * @throws Deno.errors.NotFound (or another open/read error) as `Deno.open` and `read` throw it
 */
export async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  using f = await Deno.open(path);
  const buf = new Uint8Array(1 << 20);
  for (;;) {
    const n = await f.read(buf);
    if (n === null) break;
    h.update(buf.subarray(0, n));
  }
  return h.digest("hex");
}
