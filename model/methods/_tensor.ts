/**
 * Private tensor helpers shared by the methods: per-task grouping of a mixed-task batch,
 * GELU (tanh approximation, "gelu_new"), LayerNorm, and per-task gathering.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { gatherRows } from "../layers.ts";

/**
 * Rows of `table` on axis 0, differentiable on every backend (tfjs's own `gather` gradient needs
 * `UnsortedSegmentSum`, which the wasm backend lacks). A single index drops the axis.
 *
 * @param table `[rows, ...]`
 * @param idx one row index or a list of them
 * @returns `[...rest]` for one index, `[idx.length, ...rest]` for a list
 */
export function rows<T extends tf.Tensor>(table: T, idx: number | readonly number[]): T {
  if (typeof idx === "number") {
    const size = table.shape.map((s, i) => (i === 0 ? 1 : s));
    const begin = table.shape.map((_, i) => (i === 0 ? idx : 0));
    return table.slice(begin, size).reshape(table.shape.slice(1)) as T;
  }
  return gatherRows(table, tf.tensor1d([...idx], "int32")) as T;
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
  /** The method file, for error messages (e.g. `"adapter.ts"`). */
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
 * Applies a per-task function to the rows of `x` (batch on axis 0) and reassembles the batch in its
 * original order. With one task present, `fn` sees the whole batch (no gathers). Results are the
 * same as running each task's examples on their own: every op inside `fn` is row-independent.
 *
 * @param x `[batch, ...]`
 * @param g the batch grouping
 * @param fn `(slot, rows) => out` for the task `g.tasks[slot]`
 * @returns `[batch, ...]` outputs in the original order
 * @throws Error (see {@link checkBatch}) when `x` has not `g.size` rows
 */
export function perTask<T extends tf.Tensor>(
  x: T,
  g: TaskGrouping,
  fn: (slot: number, rows: T) => T,
): T {
  checkBatch(g, x.shape[0]!);
  if (g.tasks.length === 1) return fn(0, x);
  const parts: T[] = [];
  const order: number[] = [];
  for (const [s, idx] of g.members.entries()) {
    parts.push(fn(s, rows(x, idx)));
    order.push(...idx);
  }
  const inverse = new Array<number>(order.length);
  for (const [pos, ex] of order.entries()) inverse[ex] = pos;
  return rows(tf.concat(parts, 0), inverse);
}

/**
 * Expands per-task rows (`[numTasksPresent, ...]`, in `g.tasks` order) to the batch: returns them
 * as they are (leading 1, broadcast) when one task is present, else gathers one row per example.
 *
 * @param perTaskRows `[g.tasks.length, ...]`
 * @param g the batch grouping
 * @returns `[1 or batch, ...]`
 */
export function toBatch<T extends tf.Tensor>(perTaskRows: T, g: TaskGrouping): T {
  if (g.tasks.length === 1) return perTaskRows;
  return rows(perTaskRows, g.slot);
}

/** Rows `g.tasks` of a per-task stack `[numTasks, ...]`. */
export function presentTasks<T extends tf.Tensor>(stack: T, g: TaskGrouping): T {
  return rows(stack, g.tasks);
}

/** GELU, tanh approximation (Hugging Face `gelu_new`); the same function as T5's FFN uses. */
export { geluNew } from "../fused.ts";

/**
 * LayerNorm over the last axis (PyTorch `F.layer_norm`): (x − mean)/√(var + eps)·γ + β.
 *
 * @param x input
 * @param gamma scale, broadcastable to x
 * @param beta shift, broadcastable to x
 * @param eps variance epsilon (PyTorch default 1e-5)
 */
export function layerNorm<T extends tf.Tensor>(
  x: T,
  gamma: tf.Tensor,
  beta: tf.Tensor,
  eps = 1e-5,
): T {
  return tf.tidy(() => {
    const { mean, variance } = tf.moments(x, -1, true);
    return x.sub(mean).div(variance.add(eps).sqrt()).mul(gamma).add(beta) as T;
  });
}
