/**
 * Private helpers: seeded variable creation for methods. Every variable's initialiser seed is
 * derived from the method seed and the variable's name, so a variable's initial value does not
 * depend on creation order or on which other variables exist.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";

/** How a variable is initialised. */
export type Init =
  | { readonly kind: "zeros" }
  | { readonly kind: "ones" }
  | { readonly kind: "normal"; readonly std: number }
  | { readonly kind: "uniform"; readonly scale: number }
  | { readonly kind: "tensor"; readonly value: () => tf.Tensor };

/**
 * Derives a 31-bit seed from a root seed and a name (FNV-1a over the name, mixed with the seed).
 *
 * @param seed root seed
 * @param name purpose, e.g. a variable name
 * @returns a non-negative integer seed
 */
export function deriveSeed(seed: number, name: string): number {
  let h = (0x811c9dc5 ^ (seed >>> 0)) >>> 0;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  h ^= Math.floor(seed / 0x100000000) >>> 0;
  h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) >>> 0;
  return (h ^ (h >>> 12)) & 0x7fffffff;
}

/** Collects a method's variables by name; creation is seeded per name. */
export class VarStore {
  /** The variables, in creation order. */
  readonly vars = new Map<string, tf.Variable>();
  readonly #seed: number;
  readonly #prefix: string;

  /**
   * @param seed the method seed
   * @param prefix name prefix (the method name), joined with a dot
   */
  constructor(seed: number, prefix: string) {
    this.#seed = seed;
    this.#prefix = prefix;
  }

  /**
   * Creates a trainable variable `prefix.name` of `shape`.
   *
   * @param name variable name under the prefix
   * @param shape its shape
   * @param init how to initialise it
   * @returns the variable
   */
  add(name: string, shape: number[], init: Init): tf.Variable {
    const full = `${this.#prefix}.${name}`;
    if (this.vars.has(full)) throw new Error(`_init.ts: duplicate method variable "${full}"`);
    const seed = deriveSeed(this.#seed, full);
    const value = tf.tidy(() => {
      switch (init.kind) {
        case "zeros":
          return tf.zeros(shape);
        case "ones":
          return tf.ones(shape);
        case "normal":
          return tf.randomNormal(shape, 0, init.std, "float32", seed);
        case "uniform":
          return tf.randomUniform(shape, -init.scale, init.scale, "float32", seed);
        case "tensor": {
          const t = init.value();
          if (t.shape.join(",") !== shape.join(",")) {
            throw new Error(
              `_init.ts: initial value of "${full}" has shape [${t.shape}], expected [${shape}]`,
            );
          }
          return t.toFloat();
        }
      }
    });
    const v = tf.variable(value, true);
    value.dispose();
    this.vars.set(full, v);
    return v;
  }

  /** Disposes every variable. */
  dispose(): void {
    for (const v of this.vars.values()) v.dispose();
    this.vars.clear();
  }
}
