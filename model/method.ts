/**
 * The interface every multi-task method implements (MTL, Prompt-Tuning, adapters, HyperFormer++,
 * HyperPrompt). One file per method under `model/methods/`, registered in `model/methods/mod.ts`
 * (whose module doc lists every step of adding one). A method reaches T5 only through
 * {@link T5Hooks}.
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs";
import type { FlopPlan } from "./accounting.ts";
import type { T5Config } from "./config.ts";
import type { T5Hooks } from "./hooks.ts";

/** What a method needs to build its variables. */
export interface MethodContext {
  /** The backbone's configuration. */
  readonly config: T5Config;
  /**
   * Task names, at least one (`create` refuses an empty list); the index of a name is its task id
   * in {@link MethodInstance.hooks}.
   */
  readonly tasks: readonly string[];
  /** Seed for the method's own initialisers (derived by purpose from the run's root seed). */
  readonly seed: number;
  /** Backbone variables by Hugging Face name (e.g. for class-label prompt initialisation). */
  readonly backbone: ReadonlyMap<string, tf.Variable>;
  /**
   * Token ids of each task's label words, by task name: one id list per label word (its
   * sub-words, without EOS), in label order. For class-label prompt initialisation (one prompt
   * row per label word, the mean of its sub-word embeddings); absent when not needed.
   * Prompt-Tuning's default `init: "class_label"` needs it: a run builds it as
   * `labelWords(task).map((w) => tokenizer.encode(w))`, each list without its final EOS.
   */
  readonly labelTokenIds?: ReadonlyMap<string, readonly (readonly number[])[]>;
}

/** Parameter counts of a method on a given backbone and task count. */
export interface MethodParamCounts {
  /** Parameters the method adds to the backbone. */
  readonly extra: number;
  /** Backbone parameters that are trained (all of them unless the backbone is frozen). */
  readonly trainedBackbone: number;
}

/** Sequence shape for FLOP accounting. */
export interface SequenceShape {
  /** Encoder input length in tokens, a positive integer (a run uses `train.maxInputLength`). */
  readonly inputLength: number;
  /** Decoder target length in tokens, a positive integer (a run uses `train.maxTargetLength`). */
  readonly targetLength: number;
}

/** A method instantiated for one backbone and task list. */
export interface MethodInstance {
  /** Registry name of the method. */
  readonly name: string;
  /** The method's own variables by name (saved under these names in checkpoints). */
  readonly variables: ReadonlyMap<string, tf.Variable>;
  /**
   * Whether the text task prefix ("rte sentence1: …") is kept in the inputs: the config's
   * `keepTaskPrefix` field, which every method's {@link Method.parseConfig} reads, default true
   * (spec A12: MTL's only task signal). `methods_test.ts` checks the default and that the
   * instance follows the field either way.
   */
  readonly keepTaskPrefix: boolean;
  /** Whether a backbone variable (Hugging Face name) is trained with this method. */
  isBackboneTrainable(name: string): boolean;
  /**
   * Hooks for a batch whose example i belongs to task `taskIds[i]` (ids index
   * {@link MethodContext.tasks}; `groupTasks` refuses others by index). Every hook that uses
   * per-task state (`encoderInput`, `selfAttentionPrefix`, `afterSublayer`, whichever the method
   * has) must refuse a batch whose size differs from `taskIds.length`, naming both (`checkBatch`
   * in `model/methods/_tensor.ts`, re-exported by `model/methods/mod.ts`): with one task present
   * the per-task tensors would broadcast over any batch, so the mismatch would pass silently.
   * `methods_test.ts` checks every registered method with one and with two ids for a batch of
   * 3; a method without per-task state (MTL) may ignore the ids.
   */
  hooks(taskIds: readonly number[]): T5Hooks;
  /** Releases the method's variables. */
  dispose(): void;
}

/** A method: its validated configuration and how to build, count and cost it. */
export interface Method<C> {
  /** Registry key, e.g. `"hyperprompt_global"`. */
  readonly name: string;
  /** One line for `--help` and tables. */
  readonly description: string;
  /**
   * Default configuration (every ambiguity of the specification is an option here). Every
   * method's configuration has a `keepTaskPrefix` field, default true (spec A12), that
   * {@link MethodInstance.keepTaskPrefix} follows (`methods_test.ts` checks both).
   */
  readonly defaults: C;
  /**
   * Validates a raw JSON configuration (partial; defaults fill the rest). `null` and `undefined`
   * mean `{}` (every default).
   *
   * @param raw the parsed JSON object
   * @param source where it came from (a file path), for error messages
   * @returns the full configuration
   * @throws Error naming `source` and the offending field, or saying `raw` is not an object
   */
  parseConfig(raw: unknown, source: string): C;
  /**
   * Creates the method's variables for a backbone and task list. The built-in methods list their
   * variables once (`VarPlan` in `model/methods/_init.ts`: name, shape, initialiser) and build
   * both this and {@link Method.variableShapes} from that list. They refuse an empty
   * `ctx.tasks` (`contextTasks` in `model/methods/_init.ts`) before making any variable.
   */
  create(ctx: MethodContext, cfg: C): MethodInstance;
  /** Closed-form parameter counts; must equal the instantiated variables. */
  countParams(config: T5Config, cfg: C, numTasks: number): MethodParamCounts;
  /**
   * The shape of each variable {@link Method.create} makes, by its full name, without allocating
   * them; must equal the instantiated variables' names and shapes (`methods_test.ts` checks every
   * registered method). The built-in methods return their `VarPlan`'s `shapes()`, the list their
   * `create` makes the variables from, so the two agree by construction. The memory estimate
   * (`benchmarks/memory.ts`) reads it to count the optimizer update's temporaries per variable,
   * as it does the backbone's: an op-by-op Adafactor update holds 8–10 × a variable's size, and
   * which variables the fused in-place updates take depends on their shapes. Optional in the
   * type only: a method runs once registered in `METHODS` (`model/methods/mod.ts`; profiles name
   * its keys), and the contract test `methods_test.ts` fails a registered method without it.
   * Without it (a method still in the making) the estimate counts the method's variables as one
   * tensor of all its parameters with unfactored optimizer state, takes its update's
   * temporaries as 6 × its parameter count on the stock ops (none on the fused kernel sets),
   * and logs a note saying so.
   */
  variableShapes?(
    config: T5Config,
    cfg: C,
    numTasks: number,
  ): ReadonlyMap<string, readonly number[]>;
  /**
   * What the method trains and where its trained tensors enter T5, for the closed-form matmul
   * FLOPs per example (`t5Flops(config, shape, plan)` in `model/accounting.ts`: the backbone, the
   * method's own per-token matmuls, and the gradient matmuls the backward pass runs for them).
   * A plan names the ways trained tensors enter: an encoder prompt, a self-attention prefix, a
   * bottleneck adapter, and `elementwise` tensors added or multiplied (`op`) after a sublayer
   * without a matmul of their own (e.g. a per-task bias in `afterSublayer`, whose input gradients
   * the backward pass then needs with a frozen backbone). A method whose trained tensors enter
   * some other way cannot be described, and its training FLOPs come out too low;
   * `accounting_test.ts` compares every method's plan with the matmuls tfjs runs, so such a
   * method fails there until `FlopPlan` (`model/accounting.ts`) learns its case.
   */
  flopPlan(config: T5Config, cfg: C): FlopPlan;
}
