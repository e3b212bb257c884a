/**
 * Seed derivation and a small seeded PRNG.
 *
 * Every random stream of a run (backbone init, method init, data order, dropout of step k, eval
 * subset) gets its own seed derived from the run's root seed and a purpose string, so adding a
 * new consumer never shifts the others (AlgoPerf-style `fold_in`).
 *
 * @module
 */
import { fmix32, isUint32 } from "../model/hash.ts";

/** 32-bit FNV-1a over the UTF-16 code units of a string. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * Derive a stable seed for one purpose from a root seed.
 *
 * The result depends only on `root` and `purpose` (no global state), is the same on every
 * platform, and lies in [0, 2^31) so it is a valid seed for tfjs initialisers and dropout.
 *
 * @param root the run's root seed (an integer; non-integers are rejected)
 * @param purpose what the seed is for, e.g. `"init"`, `"data"`, `"dropout:17"`
 * @returns a non-negative 31-bit integer
 * @throws Error if `root` is not a safe integer
 * @example
 * ```ts
 * import { seedFor } from "./rng.ts";
 * console.assert(seedFor(1, "init") === seedFor(1, "init"));
 * console.assert(seedFor(1, "init") !== seedFor(1, "data"));
 * ```
 */
export function seedFor(root: number, purpose: string): number {
  if (!Number.isSafeInteger(root)) {
    throw new Error(`benchmarks/rng.ts seedFor: root seed must be a safe integer, got ${root}`);
  }
  const lo = root >>> 0;
  const hi = Math.floor(root / 4294967296) >>> 0;
  let h = fmix32(fnv1a(purpose) ^ 0x9e3779b9);
  h = fmix32(h ^ lo);
  h = fmix32(Math.imul(h, 0x27d4eb2d) ^ hi);
  return h & 0x7fffffff;
}

/** Serialisable state of {@link Rng} (for checkpoints). */
export interface RngState {
  /** The four 32-bit words of the sfc32 generator. */
  readonly s: readonly [number, number, number, number];
}

/**
 * A small, fast, seeded PRNG (Chris Doty-Humphrey's sfc32, 128-bit state). Its state can be
 * saved and restored exactly, which checkpoint resume relies on.
 */
export class Rng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  /**
   * @param seed any 32-bit integer; equal seeds give equal streams
   */
  constructor(seed: number) {
    this.#a = 0x9e3779b9;
    this.#b = 0x243f6a88;
    this.#c = 0xb7e15162;
    this.#d = seed >>> 0;
    for (let i = 0; i < 12; i++) this.nextUint32();
  }

  /** The next uniform 32-bit unsigned integer. */
  nextUint32(): number {
    const t = (((this.#a + this.#b) >>> 0) + this.#d) >>> 0;
    this.#d = (this.#d + 1) >>> 0;
    this.#a = (this.#b ^ (this.#b >>> 9)) >>> 0;
    this.#b = (this.#c + (this.#c << 3)) >>> 0;
    this.#c = ((this.#c << 21) | (this.#c >>> 11)) >>> 0;
    this.#c = (this.#c + t) >>> 0;
    return t;
  }

  /** A uniform float in [0, 1) with 32 random bits. */
  next(): number {
    return this.nextUint32() / 4294967296;
  }

  /**
   * A uniform integer in [0, n).
   * @param n exclusive upper bound, a positive integer below 2^32
   * @throws Error if n is not a positive integer
   */
  nextInt(n: number): number {
    if (!Number.isInteger(n) || n <= 0 || n > 4294967296) {
      throw new Error(`benchmarks/rng.ts Rng.nextInt: n must be a positive integer, got ${n}`);
    }
    // Rejection sampling: no modulo bias.
    const limit = 4294967296 - (4294967296 % n);
    for (;;) {
      const x = this.nextUint32();
      if (x < limit) return x % n;
    }
  }

  /**
   * Shuffle an array in place (Fisher-Yates) and return it.
   * @param xs the array
   */
  shuffle<T>(xs: T[]): T[] {
    for (let i = xs.length - 1; i > 0; i--) {
      const j = this.nextInt(i + 1);
      const tmp = xs[i] as T;
      xs[i] = xs[j] as T;
      xs[j] = tmp;
    }
    return xs;
  }

  /** The generator's state, for checkpoints. */
  state(): RngState {
    return { s: [this.#a >>> 0, this.#b >>> 0, this.#c >>> 0, this.#d >>> 0] };
  }

  /**
   * Restore a state produced by {@link Rng.state}.
   * @param state the saved state
   * @throws Error if the state is malformed
   */
  restore(state: RngState): void {
    const s = state?.s;
    if (
      !Array.isArray(s) || s.length !== 4 ||
      !s.every(isUint32)
    ) {
      throw new Error(
        `benchmarks/rng.ts Rng.restore: field "s" must be 4 unsigned 32-bit integers, got ${
          JSON.stringify(s)
        }`,
      );
    }
    [this.#a, this.#b, this.#c, this.#d] = s.map((x) => x >>> 0) as [
      number,
      number,
      number,
      number,
    ];
  }
}

/**
 * `n` deterministic uniform values in [-1, 1) from {@link Rng} (test and benchmark inputs built
 * in JavaScript, so no backend's random kernels are involved).
 *
 * @param n how many values
 * @param seed any 32-bit integer
 */
export function uniformValues(n: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.next() * 2 - 1;
  return out;
}
