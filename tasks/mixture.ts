/**
 * Multi-task sampling, seeded and resumable.
 *
 * - `proportional` (T5 `glue_v002_proportional` / `super_glue_v102_proportional`): every example
 *   of a batch independently picks its task with probability ∝ the task's size (optionally capped
 *   at `cap`, T5's `rate_num_examples(maximum=…)`; no cap by default), so batches mix tasks. Within
 *   a task, examples come in a shuffled order, reshuffled each epoch (like T5's shuffled, repeated
 *   task datasets).
 * - `temperature` (HyperFormer): each batch picks one task with p ∝ (n/N)^(1/T) (T = 10 by
 *   default); all examples of the batch come from that task, drawn uniformly with replacement.
 *
 * Randomness: own xoshiro128** generator seeded by splitmix32 (no Math.random). `state()` is a
 * small JSON-able object (generator words + per-task epoch/position); `restore()` continues the
 * identical stream. Epoch permutations are regenerated from (seed, task, epoch), so they are not
 * stored.
 *
 * @module
 */
import { isUint32 } from "../model/hash.ts";

/** splitmix32 step: returns [next state, output]. */
function splitmix32(s: number): [number, number] {
  s = (s + 0x9e3779b9) >>> 0;
  let z = s;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return [s, (z ^ (z >>> 16)) >>> 0];
}

/** xoshiro128** pseudo-random generator over four uint32 words. */
export class Xoshiro128 {
  /** Generator words (uint32). */
  s: [number, number, number, number];

  /** Seeds the four words from `seed` (any integer) with splitmix32. */
  constructor(seed: number) {
    let st = seed >>> 0;
    const w: number[] = [];
    for (let i = 0; i < 4; i++) {
      const [n, out] = splitmix32(st);
      st = n;
      w.push(out);
    }
    if (!w.some((x) => x !== 0)) w[0] = 1;
    this.s = w as [number, number, number, number];
  }

  /** Next uint32. */
  nextU32(): number {
    const s = this.s;
    const r = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] = (s[2] ^ s[0]) >>> 0;
    s[3] = (s[3] ^ s[1]) >>> 0;
    s[1] = (s[1] ^ s[2]) >>> 0;
    s[0] = (s[0] ^ s[3]) >>> 0;
    s[2] = (s[2] ^ t) >>> 0;
    s[3] = rotl(s[3], 11);
    return r;
  }

  /** Uniform float in [0, 1) with 53 random bits. */
  nextFloat(): number {
    const hi = this.nextU32() >>> 5; // 27 bits
    const lo = this.nextU32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform integer in [0, n), n ≤ 2^32, without modulo bias (rejection sampling). */
  nextInt(n: number): number {
    if (!(n >= 1 && n <= 0x100000000 && Number.isInteger(n))) {
      throw new Error(`nextInt: bad bound ${n}`);
    }
    const limit = 0x100000000 - (0x100000000 % n);
    for (;;) {
      const x = this.nextU32();
      if (x < limit) return x % n;
    }
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** Mixes integers into one uint32 seed (for per-task, per-epoch permutations). */
function mixSeed(...xs: number[]): number {
  let h = 0x811c9dc5;
  for (const x of xs) {
    const [, out] = splitmix32((h ^ (x >>> 0)) >>> 0);
    h = Math.imul(out ^ (x >>> 16), 0x01000193) >>> 0;
  }
  return h;
}

/** One task given to the sampler. */
export interface MixtureDataset {
  /** Task name (only for messages). */
  task: string;
  /** Number of training examples (0 = never sampled, e.g. eval-only tasks). */
  size: number;
}

/** Options of {@link MixtureSampler}. */
export interface MixtureOptions {
  /** `proportional` (T5, mixed-task batches) or `temperature` (HyperFormer, single-task batches). */
  kind: "proportional" | "temperature";
  /** Temperature T for `temperature` (default 10). */
  temperature?: number;
  /** `proportional` only: rate of a task = min(size, cap). No cap by default. */
  cap?: number;
  /** Seed (integer). */
  seed: number;
  /** Examples per batch. */
  batchSize: number;
}

/** A resumable sampler position (JSON-able). */
export interface MixtureState {
  /** The sampler's {@link MixtureOptions.kind}; restore refuses a state of another kind. */
  kind: "proportional" | "temperature";
  /** The sampler's {@link MixtureOptions.seed}; restore refuses a state of another seed. */
  seed: number;
  /** The xoshiro128** generator's four words, unsigned 32-bit integers, not all 0. */
  rng: [number, number, number, number];
  /** Per task: completed epochs and position within the current epoch (proportional only). */
  epochs: number[];
  /**
   * Per task: examples already taken from the current epoch's shuffled order, in
   * `[0, size)` (0 for an empty task); stays 0 under `temperature`.
   */
  positions: number[];
  /** Batches drawn so far ({@link MixtureSampler.batchCount}). */
  batches: number;
}

/** Seeded multi-task sampler; see the module doc for the two schemes. */
export class MixtureSampler {
  /** Sampling probability of each task (sums to 1). */
  readonly probs: readonly number[];
  private readonly sizes: number[];
  private readonly cdf: number[];
  private readonly opts: MixtureOptions;
  private rng: Xoshiro128;
  private epochs: number[];
  private positions: number[];
  private perms: (Uint32Array | undefined)[];
  private batches = 0;

  /** Builds a sampler over `datasets` (indices in batches refer to this order). */
  constructor(datasets: readonly MixtureDataset[], opts: MixtureOptions) {
    if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1) {
      throw new Error(
        `MixtureSampler: batchSize must be a positive integer, got ${opts.batchSize}`,
      );
    }
    if (!Number.isInteger(opts.seed)) {
      throw new Error(`MixtureSampler: seed must be an integer, got ${opts.seed}`);
    }
    datasets.forEach((d, i) => {
      if (!Number.isInteger(d.size) || d.size < 0) {
        throw new Error(
          `MixtureSampler: dataset ${i} (${d.task}) size must be a non-negative integer, got ${d.size}`,
        );
      }
    });
    this.opts = { ...opts };
    this.sizes = datasets.map((d) => d.size);
    const total = this.sizes.reduce((a, b) => a + b, 0);
    if (total === 0) throw new Error("MixtureSampler: all datasets are empty");
    let w: number[];
    if (opts.kind === "proportional") {
      const cap = opts.cap ?? Infinity;
      if (!(cap > 0)) throw new Error(`MixtureSampler: cap must be > 0, got ${cap}`);
      w = this.sizes.map((n) => Math.min(n, cap));
    } else if (opts.kind === "temperature") {
      const t = opts.temperature ?? 10;
      if (!(t > 0)) throw new Error(`MixtureSampler: temperature must be > 0, got ${t}`);
      // (n/total)^(1/t), scaled by the largest task's: the same probabilities, but the largest
      // weight is 1, so that a tiny temperature cannot underflow every weight to 0 (NaN
      // probabilities, which sent every batch to the last task): it tends to the largest task.
      // Through the logarithm: below ~5.6e-309, 1/t is Infinity and 1^Infinity is NaN.
      const largest = Math.max(...this.sizes);
      w = this.sizes.map((n) => (n === 0 ? 0 : Math.exp(Math.log(n / largest) / t)));
    } else {
      throw new Error(`MixtureSampler: unknown kind ${(opts as { kind: string }).kind}`);
    }
    const sw = w.reduce((a, b) => a + b, 0);
    this.probs = w.map((x) => x / sw);
    let acc = 0;
    this.cdf = this.probs.map((p) => (acc += p));
    this.rng = new Xoshiro128(opts.seed);
    this.epochs = this.sizes.map(() => 0);
    this.positions = this.sizes.map(() => 0);
    this.perms = this.sizes.map(() => undefined);
  }

  /** Draws a task index from {@link MixtureSampler.probs} with one generator draw (inverse CDF). */
  private pickTask(): number {
    const u = this.rng.nextFloat();
    let lo = 0;
    let hi = this.cdf.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (u < this.cdf[mid]!) hi = mid;
      else lo = mid + 1;
    }
    // Guard against rounding at the top end landing on a zero-probability task.
    while (this.probs[lo] === 0 && lo > 0) lo--;
    return lo;
  }

  /** The task's shuffled order for this epoch, made from (seed, task, epoch) at first use. */
  private perm(task: number): Uint32Array {
    let p = this.perms[task];
    if (!p) {
      const n = this.sizes[task]!;
      p = new Uint32Array(n);
      for (let i = 0; i < n; i++) p[i] = i;
      const r = new Xoshiro128(mixSeed(this.opts.seed, task, this.epochs[task]!));
      for (let i = n - 1; i > 0; i--) {
        const j = r.nextInt(i + 1);
        const t = p[i]!;
        p[i] = p[j]!;
        p[j] = t;
      }
      this.perms[task] = p;
    }
    return p;
  }

  /** The task's next example in its epoch order; past the last, a new epoch and order begin. */
  private nextIndexShuffled(task: number): number {
    const idx = this.perm(task)[this.positions[task]!]!;
    this.positions[task]!++;
    if (this.positions[task] === this.sizes[task]) {
      this.positions[task] = 0;
      this.epochs[task]!++;
      this.perms[task] = undefined;
    }
    return idx;
  }

  /** The next batch: `batchSize` pairs of (task position in `datasets`, example index). */
  nextBatch(): { task: number; index: number }[] {
    const out: { task: number; index: number }[] = [];
    if (this.opts.kind === "proportional") {
      for (let i = 0; i < this.opts.batchSize; i++) {
        const task = this.pickTask();
        out.push({ task, index: this.nextIndexShuffled(task) });
      }
    } else {
      const task = this.pickTask();
      const n = this.sizes[task]!;
      for (let i = 0; i < this.opts.batchSize; i++) out.push({ task, index: this.rng.nextInt(n) });
    }
    this.batches++;
    return out;
  }

  /** Number of batches drawn so far. */
  get batchCount(): number {
    return this.batches;
  }

  /** A JSON-able snapshot from which {@link restore} continues the identical stream. */
  state(): MixtureState {
    return {
      kind: this.opts.kind,
      seed: this.opts.seed,
      rng: [...this.rng.s],
      epochs: [...this.epochs],
      positions: [...this.positions],
      batches: this.batches,
    };
  }

  /** Continues from a {@link state} taken from a sampler built with the same datasets and options. */
  restore(st: MixtureState): void {
    if (st.kind !== this.opts.kind || st.seed !== this.opts.seed) {
      throw new Error(
        `MixtureSampler.restore: state is for kind=${st.kind} seed=${st.seed}, sampler is kind=${this.opts.kind} seed=${this.opts.seed}`,
      );
    }
    if (
      st.epochs.length !== this.sizes.length || st.positions.length !== this.sizes.length ||
      st.rng.length !== 4
    ) {
      throw new Error(
        `MixtureSampler.restore: state has ${st.epochs.length} tasks, sampler has ${this.sizes.length}`,
      );
    }
    if (!st.rng.every(isUint32) || st.rng.every((x) => x === 0)) {
      // Words past 32 bits would wrap into another stream; all zero is xoshiro's fixed point (every
      // draw 0, so every batch from the first task).
      throw new Error(
        `MixtureSampler.restore: field "rng" must be 4 unsigned 32-bit integers, not all 0, got ${
          JSON.stringify(st.rng)
        }`,
      );
    }
    st.epochs.forEach((e, i) => {
      if (!(Number.isInteger(e) && e >= 0)) {
        throw new Error(`MixtureSampler.restore: epoch ${e} of task ${i} is not a count`);
      }
    });
    if (!(Number.isInteger(st.batches) && st.batches >= 0)) {
      throw new Error(`MixtureSampler.restore: batches ${st.batches} is not a count`);
    }
    st.positions.forEach((p, i) => {
      if (!(Number.isInteger(p) && p >= 0 && (p < this.sizes[i]! || p === 0))) {
        throw new Error(
          `MixtureSampler.restore: position ${p} out of range for task ${i} (size ${
            this.sizes[i]
          })`,
        );
      }
    });
    this.rng.s = [st.rng[0] >>> 0, st.rng[1] >>> 0, st.rng[2] >>> 0, st.rng[3] >>> 0];
    this.epochs = [...st.epochs];
    this.positions = [...st.positions];
    this.perms = this.sizes.map(() => undefined);
    this.batches = st.batches;
  }
}
