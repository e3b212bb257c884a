/**
 * Method-author helpers (re-exported by `model/methods/mod.ts`) for parsing method configurations
 * (partial JSON objects merged over defaults) and for the backbone-freezing option every method
 * shares.
 *
 * @module
 */
import type { T5Config } from "../config.ts";
import { countT5Params, sharedEmbeddingUnused } from "../accounting.ts";
import { nearestName } from "../usage.ts";

/**
 * Which backbone weights stay fixed: `false` trains every T5 weight, `"all"` freezes the backbone,
 * `"except_layer_norms"` freezes it except the (scale-only) T5 LayerNorms (HyperFormer++'s original
 * setting). JSON `true` is read as `"all"`.
 */
export type FreezeBackbone = false | "all" | "except_layer_norms";

/**
 * The largest value {@link ConfigReader.int} accepts for a method's size field (prompt `length`,
 * `bottleneck`, `reduction`, the hypernetworks' `*Dim` fields): 2^15 = 32,768. A sanity bound,
 * not a fit check (the memory preflight sizes a run on its device): at it, a Prompt-Tuning
 * prompt prepended to the input makes each attention matrix of one example and head at least
 * 2^30 scores (4 GiB in f32), a HyperPrompt's keys and values per block 2^15 × d_model per
 * example; a `reduction` above it exceeds every T5's d_model (at most 4,096), leaving no
 * bottleneck; the hypernetwork sizes are 256 times the paper's largest (128), and at it one
 * HyperFormer++ generator weight (`projectedDim` × d_model·d_model/r) has 2^34 elements on T5 1.1
 * XXL at the default r, past a TF.js tensor's 2^31. Every paper setting is 100 or less (5,000 for
 * `vocabSampleSize`, which has its own bound). Beyond it, a profile passed and its run crashed
 * allocating (V8 out of memory, naming no file or field).
 */
export const MAX_SIZE_FIELD = 2 ** 15;

/** A JSON object being read field by field; unknown keys are an error. */
export class ConfigReader {
  readonly #obj: Record<string, unknown>;
  readonly #source: string;
  readonly #method: string;
  readonly #seen = new Set<string>();

  /**
   * A reader of one method's `config` object, which must be a JSON object.
   *
   * @param raw the parsed JSON (undefined or null mean `{}`)
   * @param source where it came from (a file path), for error messages
   * @param method the method name, for error messages
   */
  constructor(raw: unknown, source: string, method: string) {
    if (raw === undefined || raw === null) raw = {};
    if (typeof raw !== "object" || Array.isArray(raw)) {
      throw new Error(
        `${source}: ${method} config must be a JSON object, got ${JSON.stringify(raw)}`,
      );
    }
    this.#obj = raw as Record<string, unknown>;
    this.#source = source;
    this.#method = method;
  }

  #fail(key: string, what: string, v: unknown): never {
    throw new Error(
      `${this.#source}: ${this.#method} config field "${key}" must be ${what}, got ${
        JSON.stringify(v)
      }`,
    );
  }

  #get(key: string): unknown {
    this.#seen.add(key);
    return this.#obj[key];
  }

  /** The raw value of a field (undefined when absent), for callers that validate it themselves. */
  raw(key: string): unknown {
    return this.#get(key);
  }

  /** An integer field in `[min, max]` (by default a size: 1 to {@link MAX_SIZE_FIELD}). */
  int(key: string, fallback: number, min = 1, max = MAX_SIZE_FIELD): number {
    const v = this.#get(key);
    if (v === undefined) return fallback;
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
      this.#fail(key, `an integer from ${min} to ${max}`, v);
    }
    return v;
  }

  /** A finite number field `>= min`. */
  num(key: string, fallback: number, min = 0): number {
    const v = this.#get(key);
    if (v === undefined) return fallback;
    if (typeof v !== "number" || !Number.isFinite(v) || v < min) {
      this.#fail(key, `a finite number >= ${min}`, v);
    }
    return v;
  }

  /**
   * A finite number field `> 0`: for initialiser scales where 0 would leave weights that can
   * never leave zero (every gradient through them is exactly 0, so the method silently never
   * trains).
   */
  positive(key: string, fallback: number): number {
    const v = this.#get(key);
    if (v === undefined) return fallback;
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) {
      this.#fail(key, "a finite number > 0", v);
    }
    return v;
  }

  /** A boolean field. */
  bool(key: string, fallback: boolean): boolean {
    const v = this.#get(key);
    if (v === undefined) return fallback;
    if (typeof v !== "boolean") this.#fail(key, "true or false", v);
    return v;
  }

  /** A string field restricted to `allowed`. */
  oneOf<T extends string>(key: string, allowed: readonly T[], fallback: T): T {
    const v = this.#get(key);
    if (v === undefined) return fallback;
    if (typeof v !== "string" || !(allowed as readonly string[]).includes(v)) {
      this.#fail(key, `one of ${allowed.map((a) => `"${a}"`).join(", ")}`, v);
    }
    return v as T;
  }

  /** The `freezeBackbone` field: false, true (= "all"), "all" or "except_layer_norms". */
  freeze(key: string, fallback: FreezeBackbone): FreezeBackbone {
    const v = this.#get(key);
    if (v === undefined) return fallback;
    if (v === false) return false;
    if (v === true || v === "all") return "all";
    if (v === "except_layer_norms") return v;
    return this.#fail(key, `false, true, "all" or "except_layer_norms"`, v);
  }

  /** The `stacks` field: a non-empty subset of ["encoder", "decoder"]. */
  stacks(key: string, fallback: readonly ("encoder" | "decoder")[]): ("encoder" | "decoder")[] {
    const v = this.#get(key);
    if (v === undefined) return [...fallback];
    const ok = Array.isArray(v) && v.length > 0 &&
      v.every((s) => s === "encoder" || s === "decoder") && new Set(v).size === v.length;
    if (!ok) this.#fail(key, `a non-empty list of distinct "encoder", "decoder"`, v);
    // Canonical order: encoder before decoder (fixes the global block index m).
    return (["encoder", "decoder"] as const).filter((s) => (v as string[]).includes(s));
  }

  /** Throws on keys that were never read (typos). Call after reading every field. */
  done(): void {
    for (const k of Object.keys(this.#obj)) {
      if (!this.#seen.has(k)) {
        const near = nearestName(k, [...this.#seen]);
        throw new Error(
          `${this.#source}: unknown ${this.#method} config field "${k}"${
            near === undefined ? "" : ` (did you mean ${near}?)`
          }; known fields: ${[...this.#seen].join(", ")}`,
        );
      }
    }
  }
}

/**
 * Whether a backbone weight (Hugging Face name) is trained under a freezing option. An unused
 * `shared.weight` (both stacks with their own embedding, untied output: it gets no gradient) is
 * never trained.
 *
 * @param freeze the option
 * @param name e.g. `encoder.block.0.layer.0.layer_norm.weight`
 * @param config the backbone
 * @returns true when the weight is trained
 */
export function backboneTrainable(
  freeze: FreezeBackbone,
  name: string,
  config: T5Config,
): boolean {
  if (name === "shared.weight" && sharedEmbeddingUnused(config)) return false;
  if (freeze === false) return true;
  if (freeze === "all") return false;
  return name.includes("layer_norm");
}

/**
 * Number of T5 LayerNorm scale parameters: encoder blocks 2·d, decoder blocks 3·d, two final norms.
 *
 * @param config the backbone
 * @returns the count
 */
export function t5LayerNormParams(config: T5Config): number {
  const d = config.dModel;
  return config.numLayers * 2 * d + config.numDecoderLayers * 3 * d + 2 * d;
}

/**
 * Trained backbone parameters under a freezing option (all of `backboneTotal` but an unused
 * `shared.weight`, only the norms, or none).
 *
 * @param config the backbone
 * @param freeze the option
 * @returns the count
 */
export function trainedBackboneParams(config: T5Config, freeze: FreezeBackbone): number {
  if (freeze === false) {
    return countT5Params(config) -
      (sharedEmbeddingUnused(config) ? config.vocabSize * config.dModel : 0);
  }
  if (freeze === "all") return 0;
  return t5LayerNormParams(config);
}

/** Layers per stack. */
export function stackLayers(config: T5Config, stack: "encoder" | "decoder"): number {
  return stack === "encoder" ? config.numLayers : config.numDecoderLayers;
}

/** Attention inner width h·d_kv. */
export function innerDim(config: T5Config): number {
  return config.numHeads * config.dKv;
}
