/**
 * Optimizers with inspectable, checkpointable state: Adafactor (Shazeer & Stern 2018) and AdamW
 * (Loshchilov & Hutter, PyTorch's formulation).
 *
 * Adafactor's update follows Mesh TensorFlow's `AdafactorOptimizer` (decay 1 - t^-0.8 with t from
 * 1, eps1 1e-30, update clipping at RMS 1, no first moment, relative step min(1e-2, 1/sqrt(t))
 * when no learning rate is given). Its defaults are **not** Mesh TF's: they are Hugging Face's
 * recommended Adafactor for T5 fine-tuning (`Adafactor(scale_parameter=False,
 * relative_step=False, lr=1e-3)`), i.e. no parameter scale (the learning rate is an absolute
 * step) and every variable of rank >= 2 factored over its last two axes. Mesh TF / T5 set
 * `multiply_by_parameter_scale=True` and `min_dim_size_to_factor=128` (factor over the two
 * largest dimensions, and only when the smaller of them is >= 128); both are options here
 * ({@link AdafactorConfig}), and a profile sets them through `train.adafactor`.
 *
 * Both keep their slots as non-trainable `tf.Variable`s keyed `"<variable name>/<slot>"`, so a
 * checkpoint can save them bit-exactly and {@link Optimizer.restore} can put them back; a
 * resumed run then continues with exactly the numbers of an uninterrupted one.
 *
 * Where this differs from the references, by design:
 * - A fine-tuning run's step count starts at 1 with zero slots, so its first Adafactor update has
 *   beta2 = 0 (as Hugging Face's Adafactor on a fresh optimizer). T5's Mesh TF fine-tuning goes
 *   on counting from the pretrained checkpoint's global step (5e5 to 1e6: beta2 ≈ 0.99997 from
 *   the first update); Hugging Face checkpoints carry neither that step nor Adafactor's slots,
 *   and a large step over zero slots would not be T5's either.
 * - AdamW's bias correction uses the optimizer's step, not PyTorch's per-parameter step: the
 *   same while every trained variable has a gradient at every step, which holds for every method
 *   here (a per-task variable's gradient is zero in the rows of tasks a batch lacks, never
 *   absent).
 * - A method's per-task parameters are one `[T, …]` variable, so Adafactor's update clipping and
 *   parameter scale take the RMS over all tasks' rows together (the update's rows of tasks
 *   absent from the batch are zeros), not per task as one variable per task would.
 * - Weight decay (`weightDecay`, `weightDecayRate`) applies to every trained variable, layer
 *   norms, biases and prompts included; Hugging Face's Trainer leaves biases and layer norms out
 *   of AdamW's decay. No profile here sets `weightDecay`; Prompt-Tuning's `weightDecayRate`
 *   decays only its prompt (the backbone is frozen), as T5X does.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { waitFor } from "../model/webgpu/counters.ts";
import {
  type AdafactorAttrs,
  type AdafactorUnfactoredUpdateItem,
  type AdafactorUpdateItem,
  adamwAttrs,
  type AdamWUpdateItem,
  updateAdafactorMany,
  updateAdafactorUnfactoredMany,
  updateAdamWMany,
} from "../model/fused.ts";

/**
 * Adafactor options. Defaults: Hugging Face's T5 fine-tuning Adafactor (no parameter scale,
 * every rank >= 2 variable factored over its last two axes); Mesh TF's `AdafactorOptimizer` is
 * `{multiplyByParameterScale: true, minDimSizeToFactor: 128}` (see the module documentation).
 */
export interface AdafactorConfig {
  readonly kind: "adafactor";
  /** Second-moment decay exponent: beta2_t = 1 - t^-decayRate. @default 0.8 */
  readonly decayRate?: number;
  /** Update clipping: divide the update by max(1, RMS(update) / threshold). @default 1.0 */
  readonly clippingThreshold?: number;
  /** Added to squared gradients. @default 1e-30 */
  readonly eps1?: number;
  /** Lower bound of the parameter RMS used by the parameter scale. @default 1e-3 */
  readonly eps2?: number;
  /**
   * Multiply the step by max(eps2, RMS(parameter)). Mesh TF's default is true; Hugging Face's
   * recommended T5 fine-tuning setting (explicit LR 1e-3) is false. @default false
   */
  readonly multiplyByParameterScale?: boolean;
  /** Factor second moments of rank >= 2 variables (see `minDimSizeToFactor`). @default true */
  readonly factored?: boolean;
  /**
   * Mesh TF's factoring rule: factor over a variable's two largest dimensions (the earlier axis
   * on ties) only when the smaller of the two is at least this size; otherwise keep a full
   * second moment. Absent (the default): Hugging Face's rule, every variable of rank >= 2 is
   * factored over its last two axes. A positive integer.
   */
  readonly minDimSizeToFactor?: number;
  /** First-moment decay; 0 keeps no first moment (T5's setting). @default 0 */
  readonly beta1?: number;
  /**
   * Decoupled weight decay: p -= weightDecay * lr * p (lr times the parameter scale when
   * `multiplyByParameterScale` is on). @default 0
   */
  readonly weightDecay?: number;
  /**
   * T5X's `weight_decay_rate`, in [0, 0.5]: p ← (1 − weightDecayRate)·p − update, not multiplied
   * by the learning rate (T5X's form without `weight_decay_rate_lr_exponent`). Added to
   * `weightDecay`'s term when both are set: p ← p·(1 − lr·weightDecay − weightDecayRate) −
   * update. @default 0
   */
  readonly weightDecayRate?: number;
}

/** AdamW options (PyTorch / Hugging Face `AdamW`). */
export interface AdamWConfig {
  readonly kind: "adamw";
  /** @default 0.9 */
  readonly beta1?: number;
  /** @default 0.999 */
  readonly beta2?: number;
  /** @default 1e-8 */
  readonly eps?: number;
  /** Decoupled weight decay: p -= lr * weightDecay * p. @default 0 */
  readonly weightDecay?: number;
}

/** Either optimizer's options. */
export type OptimizerConfig = AdafactorConfig | AdamWConfig;

/** A stateful optimizer over named variables. */
export interface Optimizer {
  /** Which algorithm. */
  readonly kind: OptimizerConfig["kind"];
  /** Updates applied so far. */
  readonly step: number;
  /**
   * Apply one update. Only variables that have a gradient are touched.
   * @param params variables by name
   * @param grads gradients by the same names (not disposed here)
   * @param lr learning rate; Adafactor with `undefined` uses its relative step min(1e-2, 1/sqrt(t))
   */
  apply(
    params: ReadonlyMap<string, tf.Variable>,
    grads: ReadonlyMap<string, tf.Tensor>,
    lr: number | undefined,
  ): void;
  /** The slots by `"<variable>/<slot>"` name (live references; copy before mutating). */
  slots(): Map<string, tf.Tensor>;
  /**
   * Replace the state with a saved one.
   * @param step updates applied when the state was saved
   * @param slots slot tensors by name (copied; the caller keeps ownership)
   */
  restore(step: number, slots: ReadonlyMap<string, tf.Tensor>): void;
  /** Dispose every slot. */
  dispose(): void;
}

/**
 * Copies of variables and of an optimizer's state (step and slots), made by computation (so no
 * later in-place update can reach them) and finished before this returns, and a function that
 * puts them back and frees the copies. For measurements whose steps must not change what later
 * ones train from: `hostOnlySteps` (`model/webgpu/counters.ts`) records steps whose work never
 * reaches the GPU, which leaves never-computed values in every variable they update.
 *
 * @param params the trained variables by name
 * @param opt their optimizer
 * @returns restore: reassigns the variables and the optimizer's state, disposes the copies
 */
export async function snapshotTraining(
  params: ReadonlyMap<string, tf.Variable>,
  opt: Optimizer,
): Promise<() => void> {
  const copy = (t: tf.Tensor) => tf.tidy(() => tf.mul(t, 1));
  const weights = new Map([...params].map(([k, v]) => [k, copy(v)]));
  const step = opt.step;
  const slots = new Map([...opt.slots()].map(([k, t]) => [k, copy(t)]));
  // Backends run their queue in order: once the last copy is readable, all of them are done.
  const last = [...weights.values(), ...slots.values()].at(-1);
  if (last !== undefined) await waitFor(last);
  return () => {
    for (const [k, v] of params) v.assign(weights.get(k)!);
    opt.restore(step, slots);
    tf.dispose([...weights.values(), ...slots.values()]);
  };
}

/**
 * Runs `fn` between a {@link snapshotTraining} and its restore, which runs also when `fn` throws.
 *
 * @param params the trained variables by name
 * @param opt their optimizer
 * @param fn the measurement that leaves garbage in them (e.g. `hostOnlySteps`)
 * @returns what `fn` returned
 */
export async function withTrainingRestored<T>(
  params: ReadonlyMap<string, tf.Variable>,
  opt: Optimizer,
  fn: () => Promise<T>,
): Promise<T> {
  const restore = await snapshotTraining(params, opt);
  try {
    return await fn();
  } finally {
    restore();
  }
}

function checkNumber(v: number, name: string, lo: number, hi: number): number {
  if (!Number.isFinite(v) || v < lo || v > hi) {
    throw new Error(`benchmarks/optim.ts: field "${name}" must be in [${lo}, ${hi}], got ${v}`);
  }
  return v;
}

function checkBoolean(v: unknown, name: string): boolean {
  if (typeof v !== "boolean") {
    throw new Error(`benchmarks/optim.ts: field "${name}" must be true or false, got ${v}`);
  }
  return v;
}

abstract class SlotOptimizer {
  protected readonly slotVars = new Map<string, tf.Variable>();
  #step = 0;

  get step(): number {
    return this.#step;
  }

  protected bumpStep(): number {
    return ++this.#step;
  }

  protected slot(name: string, shape: readonly number[]): tf.Variable {
    let v = this.slotVars.get(name);
    if (v === undefined) {
      const init = tf.zeros([...shape]);
      v = tf.variable(init, false);
      init.dispose();
      this.slotVars.set(name, v);
    }
    return v;
  }

  slots(): Map<string, tf.Tensor> {
    return new Map(this.slotVars);
  }

  restore(step: number, slots: ReadonlyMap<string, tf.Tensor>): void {
    if (!Number.isInteger(step) || step < 0) {
      throw new Error(
        `benchmarks/optim.ts restore: step must be a non-negative integer, got ${step}`,
      );
    }
    this.dispose();
    for (const [name, t] of slots) {
      const copy = t.clone();
      this.slotVars.set(name, tf.variable(copy, false));
      copy.dispose();
    }
    this.#step = step;
  }

  dispose(): void {
    for (const v of this.slotVars.values()) v.dispose();
    this.slotVars.clear();
  }
}

/**
 * The axes over which Adafactor factors a variable's second moment, or `null` for a full
 * (unfactored) second moment: `[a0, a1]` with `a1 < a0`; the row slot `vr` is the mean of the
 * squared gradient over axis `a0`, the column slot `vc` the mean over axis `a1`.
 *
 * - `factored` false, or rank < 2: `null`.
 * - `minDimSizeToFactor` undefined (Hugging Face's rule): the last two axes.
 * - otherwise (Mesh TF's `_factored_dims`): the two largest dimensions (stable order on ties),
 *   or `null` when the smaller of them is below `minDimSizeToFactor`.
 *
 * @param shape the variable's shape
 * @param factored whether factoring is on
 * @param minDimSizeToFactor Mesh TF's threshold, or undefined for Hugging Face's rule
 * @returns the two axes, or null
 * @example
 * ```ts
 * import { adafactorFactoredAxes } from "./optim.ts";
 * console.assert(adafactorFactoredAxes([4, 16, 32], true, 128) === null); // a prompt [T, l, d]
 * console.assert(adafactorFactoredAxes([4, 16, 32], true, undefined)?.join() === "2,1");
 * console.assert(adafactorFactoredAxes([512, 8, 256], true, 128)?.join() === "2,0");
 * ```
 */
export function adafactorFactoredAxes(
  shape: readonly number[],
  factored: boolean,
  minDimSizeToFactor: number | undefined,
): [number, number] | null {
  if (!factored || shape.length < 2) return null;
  if (minDimSizeToFactor === undefined) return [shape.length - 1, shape.length - 2];
  const bySize = shape.map((_, i) => i).sort((a, b) => shape[b]! - shape[a]! || a - b);
  const [x, y] = [bySize[0]!, bySize[1]!];
  if (shape[y]! < minDimSizeToFactor) return null;
  return [Math.max(x, y), Math.min(x, y)];
}

function rms(x: tf.Tensor): tf.Scalar {
  return tf.sqrt(tf.mean(tf.square(x)));
}

class Adafactor extends SlotOptimizer implements Optimizer {
  readonly kind = "adafactor" as const;
  readonly #c: Required<Omit<AdafactorConfig, "kind" | "minDimSizeToFactor">>;
  readonly #minDim: number | undefined;

  constructor(cfg: AdafactorConfig) {
    super();
    const minDim = cfg.minDimSizeToFactor;
    if (minDim !== undefined && (!Number.isInteger(minDim) || minDim < 1)) {
      throw new Error(
        `benchmarks/optim.ts: field "minDimSizeToFactor" must be a positive integer, got ${minDim}`,
      );
    }
    this.#minDim = minDim;
    this.#c = {
      decayRate: checkNumber(cfg.decayRate ?? 0.8, "decayRate", 0, 1),
      clippingThreshold: checkNumber(cfg.clippingThreshold ?? 1.0, "clippingThreshold", 0, 1e9),
      eps1: checkNumber(cfg.eps1 ?? 1e-30, "eps1", 0, 1),
      eps2: checkNumber(cfg.eps2 ?? 1e-3, "eps2", 0, 1),
      multiplyByParameterScale: checkBoolean(
        cfg.multiplyByParameterScale ?? false,
        "multiplyByParameterScale",
      ),
      factored: cfg.factored ?? true,
      beta1: checkNumber(cfg.beta1 ?? 0, "beta1", 0, 0.999999),
      weightDecay: checkNumber(cfg.weightDecay ?? 0, "weightDecay", 0, 1e3),
      weightDecayRate: checkNumber(cfg.weightDecayRate ?? 0, "weightDecayRate", 0, 0.5),
    };
  }

  apply(
    params: ReadonlyMap<string, tf.Variable>,
    grads: ReadonlyMap<string, tf.Tensor>,
    lr: number | undefined,
  ): void {
    const c = this.#c;
    const t = this.bumpStep();
    const beta2t = 1 - Math.pow(t, -c.decayRate);
    const baseLr = lr ?? Math.min(1e-2, 1 / Math.sqrt(t));
    // T5X's weight decay rate r (p ← (1 − r)·p − update). Without the parameter scale every
    // variable's step is baseLr, so it is the decoupled factor 1 − baseLr·wd with wd raised by
    // r / baseLr: one per-step number, the same on every path (op by op, wasm, webgpu grouped).
    // With the parameter scale (the step differs per variable) or a zero learning rate it cannot
    // be folded in: those steps run op by op with the term r·p itself (`rateApart`).
    const rate = c.weightDecayRate;
    const rateApart = rate > 0 && (c.multiplyByParameterScale || !(baseLr > 0));
    const weightDecay = rate > 0 && !rateApart ? c.weightDecay + rate / baseLr : c.weightDecay;
    const attrs: AdafactorAttrs = {
      beta2t,
      eps1: c.eps1,
      clippingThreshold: c.clippingThreshold,
      lr: baseLr,
      weightDecay,
      ...(c.multiplyByParameterScale ? { parameterScaleEps2: c.eps2 } : {}),
    };
    /** A variable's slots, and its gradient. */
    interface Entry {
      p: tf.Variable;
      g0: tf.Tensor;
      axes: [number, number] | null;
      vr?: tf.Variable;
      vc?: tf.Variable;
      v?: tf.Variable;
      m?: tf.Variable;
    }
    const factored: (AdafactorUpdateItem & { entry: Entry })[] = [];
    const unfactored: (AdafactorUnfactoredUpdateItem & { entry: Entry })[] = [];
    const opByOp: Entry[] = [];
    for (const [name, p] of params) {
      const g0 = grads.get(name);
      if (g0 === undefined) continue;
      const axes = adafactorFactoredAxes(p.shape, c.factored, this.#minDim);
      const shape = p.shape;
      const without = (axis: number) => shape.filter((_, i) => i !== axis);
      // Slots are created here, outside any tidy, so they survive it.
      const entry: Entry = {
        p,
        g0,
        axes,
        ...(axes
          ? {
            vr: this.slot(`${name}/vr`, without(axes[0])),
            vc: this.slot(`${name}/vc`, without(axes[1])),
          }
          : { v: this.slot(`${name}/v`, shape) }),
        ...(c.beta1 > 0 ? { m: this.slot(`${name}/m`, shape) } : {}),
      };
      const { vr, vc, v, m } = entry;
      const lastTwo = axes !== null && axes[0] === shape.length - 1 &&
        axes[1] === shape.length - 2;
      // A matrix factored over its two axes, no first moment: fused where the backend has it
      // (wasm SIMD in place, webgpu in place, several matrices per dispatch), else op by op.
      if (vr !== undefined && vc !== undefined && lastTwo && m === undefined) {
        factored.push({ entry, p, vr, vc, g: g0 });
      } else if (v !== undefined && m === undefined) {
        // Unfactored (a vector, a small variable, or factoring off), no first moment: likewise.
        unfactored.push({ entry, p, v, g: g0 });
      } else opByOp.push(entry);
    }
    const fusedF = rateApart ? factored.map(() => false) : updateAdafactorMany(factored, attrs);
    const fusedU = rateApart
      ? unfactored.map(() => false)
      : updateAdafactorUnfactoredMany(unfactored, attrs);
    opByOp.push(
      ...factored.filter((_, i) => !fusedF[i]).map((it) => it.entry),
      ...unfactored.filter((_, i) => !fusedU[i]).map((it) => it.entry),
    );
    for (const { p, g0, axes, vr, vc, v, m } of opByOp) {
      tf.tidy(() => {
        const g = g0.toFloat();
        const g2 = tf.add(tf.square(g), c.eps1);
        let u: tf.Tensor;
        if (vr !== undefined && vc !== undefined && axes !== null) {
          const [a0, a1] = axes; // a1 < a0, so a1 is also its axis in vr
          const newR = tf.add(tf.mul(vr, beta2t), tf.mul(tf.mean(g2, a0), 1 - beta2t));
          const newC = tf.add(tf.mul(vc, beta2t), tf.mul(tf.mean(g2, a1), 1 - beta2t));
          vr.assign(newR);
          vc.assign(newC);
          const rFactor = tf.expandDims(tf.rsqrt(tf.div(newR, tf.mean(newR, a1, true))), a0);
          const cFactor = tf.expandDims(tf.rsqrt(newC), a1);
          u = tf.mul(tf.mul(g, rFactor), cFactor);
        } else {
          const newV = tf.add(tf.mul(v!, beta2t), tf.mul(g2, 1 - beta2t));
          v!.assign(newV);
          u = tf.mul(g, tf.rsqrt(newV));
        }
        if (c.clippingThreshold > 0) {
          u = tf.div(u, tf.maximum(1, tf.div(rms(u), c.clippingThreshold)));
        }
        let stepLr: tf.Scalar | number = baseLr;
        if (c.multiplyByParameterScale) stepLr = tf.mul(tf.maximum(c.eps2, rms(p)), baseLr);
        u = tf.mul(u, stepLr);
        if (m !== undefined) {
          const newM = tf.add(tf.mul(m, c.beta1), tf.mul(u, 1 - c.beta1));
          m.assign(newM);
          u = newM;
        }
        let next = p as tf.Tensor;
        if (weightDecay > 0) next = tf.sub(next, tf.mul(next, tf.mul(stepLr, weightDecay)));
        if (rateApart) next = tf.sub(next, tf.mul(p, rate));
        p.assign(tf.sub(next, u));
      });
    }
  }
}

class AdamW extends SlotOptimizer implements Optimizer {
  readonly kind = "adamw" as const;
  readonly #c: Required<Omit<AdamWConfig, "kind">>;

  constructor(cfg: AdamWConfig) {
    super();
    this.#c = {
      beta1: checkNumber(cfg.beta1 ?? 0.9, "beta1", 0, 0.999999),
      beta2: checkNumber(cfg.beta2 ?? 0.999, "beta2", 0, 0.9999999),
      eps: checkNumber(cfg.eps ?? 1e-8, "eps", 0, 1),
      weightDecay: checkNumber(cfg.weightDecay ?? 0, "weightDecay", 0, 1e3),
    };
  }

  apply(
    params: ReadonlyMap<string, tf.Variable>,
    grads: ReadonlyMap<string, tf.Tensor>,
    lr: number | undefined,
  ): void {
    if (lr === undefined || !Number.isFinite(lr)) {
      throw new Error(`benchmarks/optim.ts AdamW.apply: a finite learning rate is required`);
    }
    const c = this.#c;
    const t = this.bumpStep();
    const bc1 = 1 - Math.pow(c.beta1, t);
    const sqrtBc2 = Math.sqrt(1 - Math.pow(c.beta2, t));
    const attrs = adamwAttrs({ lr, ...c }, t);
    const items: AdamWUpdateItem[] = [];
    for (const [name, p] of params) {
      const g = grads.get(name);
      if (g === undefined) continue;
      items.push({ p, m: this.slot(`${name}/m`, p.shape), v: this.slot(`${name}/v`, p.shape), g });
    }
    // Fused updates where the backend has them (wasm SIMD in place; webgpu in place, several
    // variables per dispatch), op by op for the rest.
    const fused = updateAdamWMany(items, attrs);
    items.forEach(({ p, m, v, g: g0 }, i) => {
      if (fused[i]) return;
      tf.tidy(() => {
        const g = g0.toFloat();
        const newM = tf.add(tf.mul(m, c.beta1), tf.mul(g, 1 - c.beta1));
        const newV = tf.add(tf.mul(v, c.beta2), tf.mul(tf.square(g), 1 - c.beta2));
        m.assign(newM);
        v.assign(newV);
        let next = p as tf.Tensor;
        if (c.weightDecay > 0) next = tf.sub(next, tf.mul(next, lr * c.weightDecay));
        const denom = tf.add(tf.div(tf.sqrt(newV), sqrtBc2), c.eps);
        p.assign(tf.sub(next, tf.mul(tf.div(newM, denom), lr / bc1)));
      });
    });
  }
}

/**
 * Create an optimizer.
 *
 * @param cfg the optimizer's options (`kind` selects the algorithm)
 * @returns a fresh optimizer with no slots
 * @throws Error naming the offending field
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { createOptimizer } from "./optim.ts";
 * const w = tf.variable(tf.ones([2, 3]));
 * const opt = createOptimizer({ kind: "adafactor" });
 * opt.apply(new Map([["w", w]]), new Map([["w", tf.onesLike(w)]]), 1e-3);
 * console.assert(opt.step === 1);
 * ```
 */
export function createOptimizer(cfg: OptimizerConfig): Optimizer {
  switch (cfg?.kind) {
    case "adafactor":
      return new Adafactor(cfg);
    case "adamw":
      return new AdamW(cfg);
    default:
      throw new Error(
        `benchmarks/optim.ts: field "kind" must be "adafactor" or "adamw", got ${
          JSON.stringify((cfg as { kind?: unknown })?.kind)
        }`,
      );
  }
}
