/**
 * Method-author helpers (re-exported by `model/methods/mod.ts`): seeded variable creation for
 * methods. Every variable's initialiser seed is derived from the method seed and the variable's
 * name, so a variable's initial value does not depend on creation order or on which other
 * variables exist.
 *
 * A method lists its variables once, as a {@link VarPlan} (name, shape, initialiser): its
 * `variableShapes` returns the plan's {@link VarPlan.shapes} and its `create` the plan's
 * {@link VarPlan.create}, so the stated shapes and the created variables cannot disagree.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { MethodContext } from "../method.ts";

/**
 * The number of tasks a method's `create` builds its variables for: `ctx.tasks.length`, which
 * every built-in `create` (MTL's too) takes from here, so that an empty or missing task list is
 * refused before any variable is made (with none, a method's per-task tables have no rows and
 * its `hooks` accept no task id).
 *
 * @param ctx the context given to `create`
 * @param where the method, for the error (e.g. `model/methods/adapter.ts adapter.create`)
 * @returns `ctx.tasks.length`, at least 1
 * @throws Error naming `where` and `ctx.tasks` when it lists no task
 */
export function contextTasks(ctx: MethodContext, where: string): number {
  const tasks: unknown = ctx.tasks;
  if (!Array.isArray(tasks) || tasks.length === 0) {
    throw new Error(
      `${where}: ctx.tasks must list at least one task name, got ${JSON.stringify(tasks)}`,
    );
  }
  return tasks.length;
}

/** How a variable is initialised. */
export type Init =
  | { readonly kind: "zeros" }
  | { readonly kind: "ones" }
  | { readonly kind: "normal"; readonly std: number }
  | { readonly kind: "uniform"; readonly scale: number }
  /** A computed value; `shape` is the variable's, which the value must have. */
  | { readonly kind: "tensor"; readonly value: (shape: readonly number[]) => tf.Tensor };

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
  readonly vars: Map<string, tf.Variable> = new Map<string, tf.Variable>();
  readonly #seed: number;
  readonly #prefix: string;

  /**
   * An empty store whose variables are named `<prefix>.<name>` and seeded from `seed` by name.
   *
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
  add(name: string, shape: readonly number[], init: Init): tf.Variable {
    const full = `${this.#prefix}.${name}`;
    if (this.vars.has(full)) throw new Error(`_init.ts: duplicate method variable "${full}"`);
    const seed = deriveSeed(this.#seed, full);
    const value = tf.tidy(() => {
      const dims = [...shape];
      switch (init.kind) {
        case "zeros":
          return tf.zeros(dims);
        case "ones":
          return tf.ones(dims);
        case "normal":
          return tf.randomNormal(dims, 0, init.std, "float32", seed);
        case "uniform":
          return tf.randomUniform(dims, -init.scale, init.scale, "float32", seed);
        case "tensor": {
          const t = init.value(shape);
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

/** One variable of a {@link VarPlan}: its name under the method prefix, shape and initialiser. */
export interface VarSpec {
  /** Name under the prefix (the full name is `prefix.name`). */
  readonly name: string;
  /** Its shape. */
  readonly shape: readonly number[];
  /** How it is initialised. */
  readonly init: Init;
}

/**
 * A method's variables, listed once: what `Method.variableShapes` states and what
 * `Method.create` makes, so the two agree by construction.
 *
 * @example
 * ```ts
 * import { VarPlan } from "./_init.ts";
 * const plan = new VarPlan("m");
 * plan.add("w", [2, 3], { kind: "normal", std: 0.01 });
 * console.assert(plan.shapes().get("m.w")?.join() === "2,3");
 * ```
 */
export class VarPlan {
  /** The variables by full name (`prefix.name`), in creation order. */
  readonly specs: Map<string, VarSpec> = new Map<string, VarSpec>();
  readonly #prefix: string;

  /**
   * An empty collection whose names are `<prefix>.<name>`.
   *
   * @param prefix name prefix (the method name), joined with a dot
   */
  constructor(prefix: string) {
    this.#prefix = prefix;
  }

  /**
   * Adds a variable `prefix.name`.
   *
   * @param name variable name under the prefix
   * @param shape its shape
   * @param init how to initialise it
   * @throws Error naming a name already in the plan
   */
  add(name: string, shape: readonly number[], init: Init): void {
    const full = `${this.#prefix}.${name}`;
    if (this.specs.has(full)) throw new Error(`_init.ts: duplicate method variable "${full}"`);
    this.specs.set(full, { name, shape: [...shape], init });
  }

  /** Each variable's shape by full name, in creation order (`Method.variableShapes`). */
  shapes(): Map<string, readonly number[]> {
    return new Map([...this.specs].map(([full, s]) => [full, s.shape]));
  }

  /**
   * Creates the variables, in plan order, each seeded by its full name ({@link VarStore.add});
   * if one cannot be created, those already made are disposed before the error propagates.
   *
   * @param seed the method seed
   * @returns the variables
   */
  create(seed: number): VarStore {
    const store = new VarStore(seed, this.#prefix);
    try {
      for (const s of this.specs.values()) store.add(s.name, s.shape, s.init);
    } catch (e) {
      store.dispose();
      throw e;
    }
    return store;
  }
}

/**
 * Adds a task projector's variables (HyperFormer++'s, HyperPrompt-Global's): `prefix.fc1` [in,
 * hidden] and `prefix.fc2` [hidden, out], weights by `weight` and zero biases, then with
 * `layerNorm` its `prefix.layer_norm` γ (ones) and β (zeros), in that order.
 *
 * @param plan the method's variables
 * @param prefix the projector's name under the method prefix
 * @param dims input, hidden and output widths
 * @param layerNorm whether it ends in a LayerNorm
 * @param weight the weights' initialiser
 */
export function addTaskProjector(
  plan: VarPlan,
  prefix: string,
  [input, hidden, out]: readonly [number, number, number],
  layerNorm: boolean,
  weight: Init,
): void {
  const zeros = { kind: "zeros" } as const;
  plan.add(`${prefix}.fc1.weight`, [input, hidden], weight);
  plan.add(`${prefix}.fc1.bias`, [hidden], zeros);
  plan.add(`${prefix}.fc2.weight`, [hidden, out], weight);
  plan.add(`${prefix}.fc2.bias`, [out], zeros);
  if (layerNorm) {
    plan.add(`${prefix}.layer_norm.weight`, [out], { kind: "ones" });
    plan.add(`${prefix}.layer_norm.bias`, [out], zeros);
  }
}
