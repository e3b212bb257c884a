/**
 * Integer hashing shared by the seeded streams of the project (benchmarks/rng.ts seed derivation,
 * model/fused.ts dropout masks).
 *
 * @module
 */

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
