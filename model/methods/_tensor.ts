/**
 * Tensor helpers shared by the methods (re-exported by `model/methods/mod.ts` for method
 * authors): per-task grouping of a mixed-task batch, GELU (tanh approximation, "gelu_new"),
 * LayerNorm, per-task gathering, and per-task adapters over a mixed-task batch.
 *
 * `rows`, `presentTasks`, `toBatch`, `geluNew` and `layerNorm` leave nothing but their result,
 * inside a `tf.tidy` or not. `taskAdapters` leaves its intermediates in the caller's scope, as the
 * primitives of model/layers.ts do: call it inside `tf.tidy` (the methods' hooks run inside
 * model/t5.ts's scopes).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { gatherRows } from "../layers.ts";
import { GELU_C, GELU_K, geluNew as geluNewComposite } from "../fused.ts";

/**
 * Rows of `table` on axis 0, differentiable on every backend (tfjs's own `gather` gradient needs
 * `UnsortedSegmentSum`, which the wasm backend lacks). A single index drops the axis. Runs in its
 * own `tf.tidy`: only the result is left, outside a tidy too (the slice, the index tensor and the
 * gather's own output are freed; under a gradient tape what the backward pass needs is kept by the
 * tape).
 *
 * @param table `[rows, ...]`
 * @param idx one row index or a list of them
 * @returns `[...rest]` for one index, `[idx.length, ...rest]` for a list
 */
export function rows<T extends tf.Tensor>(table: T, idx: number | readonly number[]): T {
  return tf.tidy(() => {
    if (typeof idx === "number") {
      const size = table.shape.map((s, i) => (i === 0 ? 1 : s));
      const begin = table.shape.map((_, i) => (i === 0 ? idx : 0));
      return table.slice(begin, size).reshape(table.shape.slice(1));
    }
    return gatherRows(table, tf.tensor1d([...idx], "int32"));
  }) as T;
}

/** How a batch's examples split into tasks. */
export interface TaskGrouping {
  /** Distinct task ids present, ascending. */
  readonly tasks: readonly number[];
  /** For each entry of `tasks`, the example indices of that task, ascending. */
  readonly members: readonly (readonly number[])[];
  /** For each example, the index into `tasks` of its task. */
  readonly slot: readonly number[];
  /** Batch size. */
  readonly size: number;
  /**
   * The method file (and the method, where one file holds several), for error messages (e.g.
   * `"model/methods/adapter.ts"`, `"model/methods/hyperprompt.ts hyperprompt_share"`).
   */
  readonly where: string;
}

/**
 * Groups a batch's examples by task.
 *
 * @param taskIds task id of each example
 * @param numTasks number of tasks (ids must be in [0, numTasks))
 * @param where the caller, for error messages
 * @returns the grouping
 */
export function groupTasks(
  taskIds: readonly number[],
  numTasks: number,
  where: string,
): TaskGrouping {
  if (taskIds.length === 0) throw new Error(`${where}: hooks() needs at least one task id`);
  for (const [i, t] of taskIds.entries()) {
    if (!Number.isInteger(t) || t < 0 || t >= numTasks) {
      throw new Error(`${where}: taskIds[${i}] = ${t} is not a task id in [0, ${numTasks})`);
    }
  }
  const tasks = [...new Set(taskIds)].sort((a, b) => a - b);
  const members = tasks.map((t) => taskIds.flatMap((u, i) => (u === t ? [i] : [])));
  const slot = taskIds.map((t) => tasks.indexOf(t));
  return { tasks, members, slot, size: taskIds.length, where };
}

/**
 * Checks that a hook is applied to a batch of as many examples as it has task ids: with one task
 * present the per-task tensors broadcast, so a mismatch would otherwise pass silently.
 *
 * @param g the grouping the hooks were built for
 * @param batch the batch size the hook sees
 * @throws Error naming the method and both sizes
 */
export function checkBatch(g: TaskGrouping, batch: number): void {
  if (batch !== g.size) {
    throw new Error(`${g.where}: batch of ${batch} but hooks() got ${g.size} task ids`);
  }
}

/**
 * One adapter's parameters for the tasks present in a batch: row `s` of each is the task
 * `g.tasks[s]`'s (u = `g.tasks.length` rows).
 */
export interface TaskAdapterParams {
  /** Down-projection weights `[u, d, a]`. */
  readonly downWeight: tf.Tensor;
  /** Down-projection biases `[u, a]`. */
  readonly downBias: tf.Tensor;
  /** Up-projection weights `[u, a, d]`. */
  readonly upWeight: tf.Tensor;
  /** Up-projection biases `[u, d]`. */
  readonly upBias: tf.Tensor;
  /**
   * The post-adapter LayerNorm's γ and β: `[d]` (shared by the tasks) or `[u, d]` (one row per
   * task present); absent: no LayerNorm.
   */
  readonly layerNorm?: { readonly gamma: tf.Tensor; readonly beta: tf.Tensor };
}

/**
 * `x · mask` for a constant 0/1 `mask` broadcast along `x`'s axis 1, whose gradient is
 * `dy · mask`: the tape keeps only the mask (tfjs's Mul would keep `x` too, of the masked
 * activations' size).
 */
function maskRows(x: tf.Tensor3D, mask: tf.Tensor3D): tf.Tensor3D {
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xi, m] = args as tf.Tensor[];
    (args[2] as tf.GradSaveFunc)([m!]);
    const value = xi!.mul(m!);
    const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]) => [
      dy.mul(saved[0]!),
      tf.zerosLike(saved[0]!),
    ];
    return { value, gradFunc };
  });
  return f(x, mask) as tf.Tensor3D;
}

/** {@link blockMasks}' arrays of each grouping (one batch's hooks), by bottleneck width. */
const BLOCK_MASKS = new WeakMap<
  TaskGrouping,
  Map<number, { oneHot: Float32Array; mask: Float32Array }>
>();

/**
 * The host arrays of {@link taskAdapters}' constants for a grouping and bottleneck width `a`: the
 * one-hot `[batch, u]` of each example's task and the 0/1 block mask `[batch, 1, u·a]` (ones on
 * the example's own task's block). Built on the first adapter call of a batch and reused by the
 * batch's other calls (every layer and position); kept with the grouping, so they go with the
 * batch's hooks. The tensors themselves are made per call: a tensor kept beyond the call would
 * need an end-of-batch signal that the hooks do not get.
 */
function blockMasks(g: TaskGrouping, a: number): { oneHot: Float32Array; mask: Float32Array } {
  let byWidth = BLOCK_MASKS.get(g);
  if (!byWidth) BLOCK_MASKS.set(g, byWidth = new Map());
  let m = byWidth.get(a);
  if (!m) {
    const u = g.tasks.length, ua = u * a;
    m = { oneHot: new Float32Array(g.size * u), mask: new Float32Array(g.size * ua) };
    for (const [ex, s] of g.slot.entries()) {
      m.oneHot[ex * u + s] = 1;
      m.mask.fill(1, ex * ua + s * a, ex * ua + (s + 1) * a);
    }
    byWidth.set(a, m);
  }
  return m;
}

/**
 * Per-task bottleneck adapters, `LN(up_t(gelu_new(down_t(y)))) + y` with each example's task
 * `t`, in a fixed number of ops whatever the number of tasks present (u), where running each
 * task's rows on their own dispatched about twenty kernels per task and direction (about 34,800
 * per T5 1.1 Base training step with 8 tasks, host-bound on WebGPU). The masked block
 * formulation: with the N = batch·n rows x of `y`,
 * `h = gelu_new(x · [W_down,1 … W_down,u] + [b_down,1 … b_down,u])` (`[N, u·a]`), the blocks of
 * the other tasks zeroed by a 0/1 row mask on the pre-activation (so that they are
 * `gelu_new(0) = 0`), `up = h · [W_up,1; …; W_up,u] + onehot · b_up`
 * (`[N, d]`), then the LayerNorm (a shared γ, β, or each example's row by `onehot · γ`) and the
 * residual. A task's own block computes the same dot products as its rows alone, and the masked
 * blocks add exact zeros, so values and gradients equal the per-task loop's up to fp32 summation
 * order (model/methods/adapter_test.ts). The masked matmuls multiply by zero u − 1 blocks of
 * every row: (u − 1)·4·d·a extra FLOPs per token, an implementation cost that the methods' FLOP
 * accounting (flopPlan) does not count as the method's. With one task present no mask is made
 * and the ops are the plain adapter's.
 *
 * Non-finite values are not isolated per task as in the per-task loop: the masks multiply, and
 * 0 · ±∞ = NaN, so an infinite or NaN pre-activation in another present task's block (its
 * `x · W_down + b_down` overflowed), or an infinite or NaN `W_up`, `b_up` (or per-task γ, β) row
 * of another present task, makes an example's output NaN where its own task's adapter alone would
 * be finite (model/methods/adapter_test.ts). A select (`tf.where`) would keep such blocks zero
 * but costs two Tiles and a Select per call (it broadcasts the `[b, 1, u·a]` condition and the
 * zero to `[b, n, u·a]`), a min/max clamp one kernel more than the Mul; the step is NaN anyway
 * once the other task's own rows overflow.
 *
 * Leaves its intermediates in the caller's scope: call it inside `tf.tidy` (the adapters' hooks
 * run inside model/t5.ts's sublayer scopes).
 *
 * @param y `[batch, n, d]`
 * @param g the batch grouping (`g.size` = batch)
 * @param p the adapter's parameters for `g.tasks`
 * @returns `[batch, n, d]`
 * @throws Error (see {@link checkBatch}) when `y` has not `g.size` rows, or naming the parameter
 *   whose shape does not fit
 */
export function taskAdapters(
  y: tf.Tensor3D,
  g: TaskGrouping,
  p: TaskAdapterParams,
): tf.Tensor3D {
  const [b, n, d] = y.shape;
  checkBatch(g, b);
  const u = g.tasks.length;
  const a = p.downWeight.shape[p.downWeight.rank - 1]!;
  const want: [string, tf.Tensor, number[]][] = [
    ["downWeight", p.downWeight, [u, d, a]],
    ["downBias", p.downBias, [u, a]],
    ["upWeight", p.upWeight, [u, a, d]],
    ["upBias", p.upBias, [u, d]],
  ];
  if (p.layerNorm) {
    const ln = p.layerNorm.gamma.rank === 1 ? [d] : [u, d];
    want.push(["layerNorm.gamma", p.layerNorm.gamma, ln], ["layerNorm.beta", p.layerNorm.beta, ln]);
  }
  for (const [name, t, shape] of want) {
    if (t.shape.join() !== shape.join()) {
      throw new Error(
        `${g.where}: adapter parameter ${name} has shape [${t.shape}], expected [${shape}]`,
      );
    }
  }
  const x = y.reshape([b * n, d]);
  if (u === 1) {
    let h = geluNew(x.matMul(p.downWeight.reshape([d, a])).add(p.downBias));
    h = h.matMul(p.upWeight.reshape([a, d])).add(p.upBias);
    if (p.layerNorm) h = layerNorm(h, p.layerNorm.gamma, p.layerNorm.beta);
    return h.reshape([b, n, d]).add(y);
  }
  const ua = u * a;
  const { oneHot, mask } = blockMasks(g, a);
  const rowTask = tf.tensor2d(oneHot, [b, u]);
  // [u, d, a] → [d, u·a]: column block s is task s's W_down.
  const wDown = p.downWeight.transpose([1, 0, 2]).reshape([d, ua]);
  // The mask goes on the pre-activation, before gelu_new: a masked block is then gelu_new(0) = 0
  // and its gradient is read at 0, whatever finite value the other task's block held (masking
  // gelu_new's output instead left its gradient there, NaN from |x| ≳ 1e19: 0 · ∞).
  const pre = x.matMul(wDown).add(p.downBias.reshape([ua])).reshape([b, n, ua]) as tf.Tensor3D;
  const h = geluNew(maskRows(pre, tf.tensor3d(mask, [b, 1, ua])));
  // Each example's bias row (onehot · b_up: its row times 1 plus exact zeros), broadcast over n.
  const perRow = (t: tf.Tensor) => rowTask.matMul(t).reshape([b, 1, d]);
  let out = h.reshape([b * n, ua]).matMul(p.upWeight.reshape([ua, d]))
    .reshape([b, n, d]).add(perRow(p.upBias)) as tf.Tensor3D;
  if (p.layerNorm) {
    const { gamma, beta } = p.layerNorm;
    out = gamma.rank === 1
      ? layerNorm(out, gamma, beta)
      : layerNorm(out, perRow(gamma), perRow(beta));
  }
  return out.add(y);
}

/**
 * Expands per-task rows (`[numTasksPresent, ...]`, in `g.tasks` order) to the batch: returns them
 * as they are (leading 1, broadcast) when one task is present, else gathers one row per example
 * ({@link rows}: nothing but the result is left, outside a tidy too).
 *
 * @param perTaskRows `[g.tasks.length, ...]`
 * @param g the batch grouping
 * @returns `[1 or batch, ...]`
 */
export function toBatch<T extends tf.Tensor>(perTaskRows: T, g: TaskGrouping): T {
  if (g.tasks.length === 1) return perTaskRows;
  return rows(perTaskRows, g.slot);
}

/**
 * Rows `g.tasks` of a per-task stack `[numTasks, ...]`: `stack` itself when every task is present
 * (no op; the caller must not dispose the result then), a slice for one task, else a gather
 * ({@link rows}). Nothing but the result is left, outside a tidy too. The rows of absent tasks get
 * exact zero gradients in every case.
 *
 * @param stack `[numTasks, ...]`
 * @param g the batch grouping
 * @returns `[g.tasks.length, ...]`
 */
export function presentTasks<T extends tf.Tensor>(stack: T, g: TaskGrouping): T {
  const u = g.tasks.length;
  // g.tasks are distinct ids in [0, numTasks), ascending: as many as rows means all, in order.
  if (u === stack.shape[0]) return stack;
  if (u === 1) {
    const begin = stack.shape.map((_, i) => (i === 0 ? g.tasks[0]! : 0));
    return stack.slice(begin, [1, ...stack.shape.slice(1)]) as T;
  }
  return rows(stack, g.tasks);
}

/**
 * Sums `t` over the axes it was broadcast along and reshapes it to `shape` (the gradient of a
 * broadcast input), as tfjs's own binary-op gradients do.
 */
function reduceTo(t: tf.Tensor, shape: readonly number[]): tf.Tensor {
  const axes = tf.backend_util.getReductionAxes([...shape], t.shape);
  return (axes.length > 0 ? t.sum(axes) : t).reshape([...shape]);
}

/**
 * GELU, tanh approximation (Hugging Face `gelu_new`), the adapters' activation: the value is
 * model/fused.ts's `geluNew` (the same ops in the same order, so the same bits), with a custom
 * gradient that keeps only the input for the backward pass (the composite op's tape kept about
 * eight intermediates of its size) and computes
 * `gelu_new′(x) = ½(1 + tanh u) + ½x(1 − tanh²u)·√(2/π)(1 + 3·0.044715x²)`,
 * `u = √(2/π)(x + 0.044715x³)`.
 *
 * @param x input
 * @returns `gelu_new(x)`, same shape
 */
export function geluNew<T extends tf.Tensor>(x: T): T {
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const input = args[0] as tf.Tensor;
    (args[1] as tf.GradSaveFunc)([input]);
    const value = geluNewComposite(input);
    const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]) =>
      tf.tidy(() => {
        const v = saved[0]!;
        const v2 = v.mul(v);
        const th = v.add(v2.mul(v).mul(GELU_K)).mul(GELU_C).tanh();
        const du = v2.mul(3 * GELU_K).add(1).mul(GELU_C);
        const d = th.add(1).mul(0.5).add(v.mul(0.5).mul(tf.sub(1, th.mul(th))).mul(du));
        return dy.mul(d);
      });
    return { value, gradFunc };
  });
  return f(x) as T;
}

/**
 * LayerNorm over the last axis (PyTorch `F.layer_norm`): (x − mean)/√(var + eps)·γ + β.
 *
 * The value is computed by the same ops in the same order as the plain composite
 * (`tf.moments`, sub, div by `√(var + eps)`, mul γ, add β: the same bits). The gradient is a
 * custom one that keeps only x̂ = (x − mean)/σ (x's size), σ = √(var + eps) (one per row) and γ
 * for the backward pass, where the composite's tape kept about six tensors of x's size, and
 * computes the exact gradients: with g = dy·γ,
 * dx = (g − mean(g) − x̂·mean(g·x̂))/σ (rows of the last axis), dγ = Σ dy·x̂ and dβ = Σ dy over
 * the axes γ and β are broadcast along.
 *
 * @param x input
 * @param gamma scale, broadcastable to x
 * @param beta shift, broadcastable to x
 * @param eps variance epsilon (PyTorch default 1e-5)
 * @returns the normalized, scaled and shifted x (x's shape broadcast with γ's and β's)
 */
export function layerNorm<T extends tf.Tensor>(
  x: T,
  gamma: tf.Tensor,
  beta: tf.Tensor,
  eps = 1e-5,
): T {
  const xShape = x.shape, gammaShape = gamma.shape, betaShape = beta.shape;
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xi, g, b] = args as tf.Tensor[];
    const save = args[3] as tf.GradSaveFunc;
    const { mean, variance } = tf.moments(xi!, -1, true);
    const sd = variance.add(eps).sqrt();
    const xhat = xi!.sub(mean).div(sd);
    save([xhat, sd, g!]);
    const value = xhat.mul(g!).add(b!);
    const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]) =>
      tf.tidy(() => {
        const [xh, s, gm] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
        const dBeta = reduceTo(dy, betaShape);
        // Each temporary of x's size is freed once read: at most three are alive at a time.
        const dyx = dy.mul(xh);
        const dGamma = reduceTo(dyx, gammaShape);
        dyx.dispose();
        const gy = dy.mul(gm);
        const m1 = gy.mean(-1, true);
        const gx = gy.mul(xh);
        const m2 = gx.mean(-1, true);
        gx.dispose();
        const c = xh.mul(m2);
        const e = gy.sub(c);
        tf.dispose([gy, c]);
        const e2 = e.sub(m1);
        e.dispose();
        const dxFull = e2.div(s);
        e2.dispose();
        // x itself broadcast (a row shared by several γ rows): sum those rows' gradients.
        return [reduceTo(dxFull, xShape), dGamma, dBeta];
      });
    return { value, gradFunc };
  });
  return f(x, gamma, beta) as T;
}
