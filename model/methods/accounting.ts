/**
 * Closed-form parameter and FLOP accounting of a method on a backbone: total, extra and trained
 * parameters, and per-example matmul FLOPs of the backbone with the method (`t5Flops` with the
 * method's `Method.flopPlan`: its own matmuls, and a backward pass that runs only the gradients
 * the trained parameters need, so a frozen backbone costs less than 3 × forward). The counts
 * equal the instantiated variables (tested per method).
 *
 * @module
 */
import type { T5Config } from "../config.ts";
import type { Method, SequenceShape } from "../method.ts";
import { countT5Params, t5Flops } from "../accounting.ts";
import { getMethod } from "./mod.ts";

/** Result of {@link methodAccounting}. */
export interface MethodAccounting {
  /** Backbone parameters (countT5Params). */
  readonly backbone: number;
  /** Backbone + method parameters. */
  readonly total: number;
  /** Parameters the method adds. */
  readonly extra: number;
  /** 100 · extra / backbone. */
  readonly extraPct: number;
  /** total / backbone (the paper's "1.02x"). */
  readonly ratio: number;
  /** Trained parameters: trained backbone weights + every method parameter. */
  readonly trained: number;
  /** 100 · trained / numTasks / backbone (HyperFormer's "% trained per task"). */
  readonly trainedPerTaskPct: number;
  /** Forward matmul FLOPs per example (null without a sequence shape). */
  readonly forwardFlops: number | null;
  /**
   * Forward + backward matmul FLOPs per example (null without a sequence shape): 3 × forward when
   * every weight is trained; with a frozen backbone (`freezeBackbone` "all" or
   * "except_layer_norms") the frozen weights' gradients are not computed, so most matmuls cost
   * forward + input gradient and those before the first trained tensor no backward at all.
   */
  readonly trainFlops: number | null;
}

/**
 * Parameter and FLOP accounting for a method: a registered one by its key, or any
 * {@link Method} object (e.g. one being written, before it is registered in `METHODS`).
 *
 * @param config the backbone
 * @param method a key of METHODS, or the method itself
 * @param cfg the method configuration (raw partial JSON or parsed; defaults fill the rest)
 * @param numTasks number of co-trained tasks
 * @param shape sequence lengths for the FLOP figures
 * @returns the accounting
 * @throws Error for an unknown method name, a `numTasks` that is not a positive integer, or a
 *   config the method's `parseConfig` refuses
 * @example
 * ```ts
 * import { methodAccounting } from "./accounting.ts";
 * import { PRESETS } from "../config.ts";
 * const a = methodAccounting(PRESETS["t5-base"], "hyperformer_pp", {}, 8);
 * console.assert(a.extra === 5_163_440);
 * ```
 */
export function methodAccounting(
  config: T5Config,
  method: string | Method<unknown>,
  cfg: unknown,
  numTasks: number,
  shape?: SequenceShape,
): MethodAccounting {
  if (!Number.isInteger(numTasks) || numTasks < 1) {
    throw new Error(`methodAccounting: numTasks must be a positive integer, got ${numTasks}`);
  }
  const m = typeof method === "string" ? getMethod(method) : method;
  const parsed = m.parseConfig(cfg, `methodAccounting(${m.name})`);
  const backbone = countT5Params(config);
  const { extra, trainedBackbone } = m.countParams(config, parsed, numTasks);
  const trained = trainedBackbone + extra;
  let forwardFlops: number | null = null;
  let trainFlops: number | null = null;
  if (shape !== undefined) {
    const flops = t5Flops(config, shape, m.flopPlan(config, parsed));
    forwardFlops = flops.forward;
    trainFlops = flops.train;
  }
  return {
    backbone,
    total: backbone + extra,
    extra,
    extraPct: (100 * extra) / backbone,
    ratio: (backbone + extra) / backbone,
    trained,
    trainedPerTaskPct: (100 * trained) / numTasks / backbone,
    forwardFlops,
    trainFlops,
  };
}
