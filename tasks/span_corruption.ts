/**
 * T5's span-corruption pretraining objective on token ids.
 *
 * Follows the T5 library's `random_spans_noise_mask` and `noise_span_to_unique_sentinel`
 * (text-to-text-transfer-transformer, `t5/data/preprocessors.py`): the number of noise tokens is
 * `round(length · density)` (float32, half to even, clamped to [1, length − 1]), the number of
 * noise spans `round(noiseTokens / meanSpanLength)` (at least 1); noise and non-noise lengths are
 * uniformly random compositions into that many positive parts, interleaved starting with a
 * non-noise span. Each noise span is replaced in the input by one sentinel (`<extra_id_0>` for
 * the first span, then `<extra_id_1>` …); the target holds the same sentinels, each followed by
 * the tokens it replaced. EOS is appended to both by the caller's batching.
 *
 * @module
 */

/** A uniform [0, 1) random source (seeded by the caller; never `Math.random` in runs). */
export type RandomSource = () => number;

/** Options of the span-corruption objective (T5 defaults). */
export interface SpanCorruptionOptions {
  /** Fraction of tokens corrupted (T5: 0.15). */
  readonly noiseDensity: number;
  /** Mean length of a corrupted span (T5: 3). */
  readonly meanNoiseSpanLength: number;
}

/** T5's defaults: noise density 0.15, mean noise span length 3. */
export const T5_SPAN_CORRUPTION: SpanCorruptionOptions = {
  noiseDensity: 0.15,
  meanNoiseSpanLength: 3,
};

/** Round half to even in float32, as `tf.math.round` on a float32 tensor. */
function roundHalfEvenF32(x: number): number {
  const v = Math.fround(x);
  const f = Math.floor(v);
  const diff = v - f;
  if (diff > 0.5) return f + 1;
  if (diff < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** Throws naming the option when `opts` is outside what T5's mask construction supports. */
function checkOptions(opts: SpanCorruptionOptions): void {
  const d = opts.noiseDensity;
  if (!(Number.isFinite(d) && d >= 0 && d < 1)) {
    throw new RangeError(`span corruption: noiseDensity must be in [0, 1), got ${d}`);
  }
  const m = opts.meanNoiseSpanLength;
  if (!(Number.isFinite(m) && m >= 1)) {
    throw new RangeError(
      `span corruption: meanNoiseSpanLength must be a finite number >= 1, got ${m}`,
    );
  }
}

/**
 * Counts of noise tokens and spans for a sequence length, exactly as T5 computes them; both 0 for
 * noise density 0 (T5 then corrupts nothing).
 *
 * @throws RangeError when `noiseDensity` is outside [0, 1) or `meanNoiseSpanLength` below 1 (the
 *   message names the option), or when there are more noise spans than non-noise tokens to
 *   separate them (T5's mask construction fails there too)
 */
export function noiseCounts(
  length: number,
  opts: SpanCorruptionOptions = T5_SPAN_CORRUPTION,
): { noiseTokens: number; noiseSpans: number } {
  checkOptions(opts);
  if (opts.noiseDensity === 0) return { noiseTokens: 0, noiseSpans: 0 };
  const len = Math.max(length, 2);
  let noiseTokens = roundHalfEvenF32(Math.fround(len) * Math.fround(opts.noiseDensity));
  noiseTokens = Math.min(Math.max(noiseTokens, 1), len - 1);
  const noiseSpans = Math.max(
    roundHalfEvenF32(Math.fround(noiseTokens) / Math.fround(opts.meanNoiseSpanLength)),
    1,
  );
  if (noiseSpans > len - noiseTokens) {
    throw new RangeError(
      `span corruption: ${noiseSpans} noise spans need at least ${noiseSpans} non-noise tokens, ` +
        `length ${len} leaves ${len - noiseTokens} (noiseDensity ${opts.noiseDensity}, ` +
        `meanNoiseSpanLength ${opts.meanNoiseSpanLength})`,
    );
  }
  return { noiseTokens, noiseSpans };
}

/** Random composition of `items` into `segments` positive parts (T5 `_random_segmentation`). */
function randomSegmentation(items: number, segments: number, random: RandomSource): number[] {
  // A shuffled 0/1 vector of length items − 1 with segments − 1 ones marks segment starts.
  const starts = new Array<number>(items - 1).fill(0);
  for (let i = 0; i < segments - 1; i++) starts[i] = 1;
  for (let i = starts.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [starts[i], starts[j]] = [starts[j]!, starts[i]!];
  }
  const lengths = new Array<number>(segments).fill(0);
  let seg = 0;
  lengths[0] = 1;
  for (const s of starts) {
    seg += s;
    lengths[seg]! += 1;
  }
  return lengths;
}

/**
 * The noise mask of T5's span corruption for a sequence of `length` tokens.
 *
 * @param length sequence length (tokens before EOS)
 * @param random seeded uniform source
 * @param opts noise density and mean span length
 * @returns `true` where a token is corrupted; the first token is never noise; all `false` for
 *   noise density 0
 * @throws RangeError for options out of range (see {@link noiseCounts})
 */
export function randomSpansNoiseMask(
  length: number,
  random: RandomSource,
  opts: SpanCorruptionOptions = T5_SPAN_CORRUPTION,
): boolean[] {
  const len = Math.max(length, 2);
  const { noiseTokens, noiseSpans } = noiseCounts(length, opts);
  if (noiseTokens === 0) return new Array<boolean>(Math.max(length, 0)).fill(false);
  const noise = randomSegmentation(noiseTokens, noiseSpans, random);
  const nonNoise = randomSegmentation(len - noiseTokens, noiseSpans, random);
  const mask: boolean[] = [];
  for (let s = 0; s < noiseSpans; s++) {
    for (let i = 0; i < nonNoise[s]!; i++) mask.push(false);
    for (let i = 0; i < noise[s]!; i++) mask.push(true);
  }
  return mask.slice(0, length);
}

/**
 * Replaces each run of masked tokens by one sentinel (`sentinel(0)` for the first run, …).
 *
 * @param ids token ids
 * @param mask which ids are replaced
 * @param sentinel id of the i-th sentinel token
 */
export function spansToSentinels(
  ids: readonly number[],
  mask: readonly boolean[],
  sentinel: (i: number) => number,
): number[] {
  const out: number[] = [];
  let span = 0;
  for (let i = 0; i < ids.length; i++) {
    if (!mask[i]) out.push(ids[i]!);
    else if (i === 0 || !mask[i - 1]) out.push(sentinel(span++));
  }
  return out;
}

/**
 * One span-corruption example: inputs with noise spans replaced by sentinels, targets with the
 * kept spans replaced by sentinels (so each sentinel is followed by the tokens it hid).
 *
 * @param ids token ids without EOS
 * @param random seeded uniform source
 * @param sentinel id of `<extra_id_i>`
 * @param opts noise density and mean span length
 */
export function spanCorrupt(
  ids: readonly number[],
  random: RandomSource,
  sentinel: (i: number) => number,
  opts: SpanCorruptionOptions = T5_SPAN_CORRUPTION,
): { inputs: number[]; targets: number[] } {
  const mask = randomSpansNoiseMask(ids.length, random, opts);
  return {
    inputs: spansToSentinels(ids, mask, sentinel),
    targets: spansToSentinels(ids, mask.map((m) => !m), sentinel),
  };
}

/**
 * Reassembles the original ids from a span-corruption pair (the inverse of {@link spanCorrupt}).
 *
 * @throws Error when a sentinel of the inputs has no counterpart in the targets
 */
export function reassemble(
  inputs: readonly number[],
  targets: readonly number[],
  isSentinel: (id: number) => boolean,
): number[] {
  const fills = new Map<number, number[]>();
  let current: number[] | undefined;
  for (const t of targets) {
    if (isSentinel(t)) {
      current = [];
      fills.set(t, current);
    } else if (current) current.push(t);
  }
  const out: number[] = [];
  for (const t of inputs) {
    if (!isSentinel(t)) {
      out.push(t);
      continue;
    }
    const fill = fills.get(t);
    if (!fill) throw new Error(`reassemble: sentinel ${t} of the inputs is missing in the targets`);
    out.push(...fill);
  }
  return out;
}
