/**
 * A lower-memory backward pass for tfjs 4.22.0: the same operations in the same order as
 * `Engine.gradients` (`tfjs-core/dist/engine.js`) and `backpropagateGradients`
 * (`tfjs-core/dist/tape.js`), so the gradients are bit-identical, but each tape node's output
 * gradients are released as soon as the node has been processed, instead of when the whole
 * backward pass returns.
 *
 * Stock tfjs runs the backward walk inside one `tidy("backward")` and keeps the accumulated
 * gradient of every intermediate tensor in its map until that tidy ends, so the backward peak is
 * the saved activations plus one gradient per intermediate on the path. The tape is in forward
 * order and walked in reverse: when the walk reaches the node that produced a tensor, that
 * tensor's gradient is complete, and once the node's input gradients are made it is never read
 * again. Here it is disposed right there, so the peak is the saved activations plus the
 * gradients live at one time.
 *
 * What is released, and only that: tensors the stock `tidy("backward")` would dispose when it
 * ends (made in that scope, not `tf.keep`-ed), once nothing in the gradient map refers to them:
 * - a tensor's accumulated gradient after the last tape node that reads or accumulates it (never
 *   the gradient of one of the `xs`: those are returned);
 * - scratch tensors a node's gradient made in the backward scope that ended up nowhere in the
 *   map (the zeros tfjs makes for outputs without a gradient, the intermediates of a
 *   `tf.customGrad` gradient function, a gradient superseded by an `add`).
 *
 * Never released: `dy` (the caller's), the tensors the tape saved for the backward pass (kept;
 * tfjs disposes them at the end as before), forward tensors, variables, anything kept.
 * Nested differentiation (a `tf.grad` inside the function of another) records the backward ops
 * on the outer tape; that case, and any tfjs version other than {@link BACKPROP_TFJS_VERSION},
 * runs stock tfjs unchanged.
 *
 * Opt-in: {@link installLowMemoryBackprop} replaces the `gradients` method of the tfjs engine
 * instance (every `tf.variableGrads`, `tf.grad(s)`, `tf.valueAndGrad(s)` and optimizer
 * `minimize` goes through it); {@link uninstallLowMemoryBackprop} restores it.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";

/** The tfjs-core version this module mirrors; any other leaves tfjs alone. */
export const BACKPROP_TFJS_VERSION = "4.22.0";

/** A tape node of tfjs-core 4.22 (`tape.ts` `TapeNode`). */
interface TapeNode {
  id: number;
  kernelName: string;
  outputs: tf.Tensor[];
  inputs: Record<string, tf.Tensor>;
  gradient?: (dys: (tf.Tensor | null)[]) => Record<string, () => tf.Tensor>;
  saved?: tf.Tensor[];
}

/** The tfjs-core 4.22 `Engine` members used here. */
interface EngineInternals {
  state: {
    activeTape: TapeNode[] | null;
    gradientDepth: number;
    activeScope: { id: number; track: tf.Tensor[] } | null;
  };
  tidy<T>(nameOrFn: string | (() => T), fn?: () => T): T;
  scopedRun<T>(start: () => void, end: () => void, f: () => T): T;
  startTape(): void;
  endTape(): void;
  gradients: GradientsFn;
}

type GradientsFn = <T extends tf.Tensor>(
  f: () => T,
  xs: tf.Tensor[],
  dy?: T,
  allowNoGradients?: boolean,
) => { value: T; grads: tf.Tensor[] };

/** Tensor fields of tfjs-core 4.22 read here (public in its typings, not in the API docs). */
interface TensorInternals {
  kept: boolean;
  scopeId: number;
  readonly isDisposed: boolean;
}

/**
 * `tape.js` `getFilteredNodesXToY` of tfjs-core 4.22.0, verbatim in behaviour: the nodes that
 * lead from `xs` to `y`, in tape order, each a copy with the inputs not from `xs` pruned.
 */
function filteredNodesXToY(tape: TapeNode[], xs: tf.Tensor[], y: tf.Tensor): TapeNode[] {
  const tensorsFromX: Record<number, boolean> = {};
  const nodesFromX: Record<number, boolean> = {};
  for (const x of xs) tensorsFromX[x.id] = true;
  for (const node of tape) {
    for (const inputName in node.inputs) {
      const input = node.inputs[inputName]!;
      if (xs.length > 0 && tensorsFromX[input.id]) {
        node.outputs.forEach((output) => tensorsFromX[output.id] = true);
        nodesFromX[node.id] = true;
        break;
      }
    }
  }
  const tensorsLeadToY: Record<number, boolean> = {};
  tensorsLeadToY[y.id] = true;
  const nodesToY: Record<number, boolean> = {};
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i]!;
    for (let j = 0; j < node.outputs.length; j++) {
      if (tensorsLeadToY[node.outputs[j]!.id]) {
        for (const inputName in node.inputs) {
          tensorsLeadToY[node.inputs[inputName]!.id] = true;
          nodesToY[node.id] = true;
        }
        break;
      }
    }
  }
  const filtered: TapeNode[] = [];
  for (const node of tape) {
    if (nodesFromX[node.id] && nodesToY[node.id]) {
      const prunedInputs: Record<string, tf.Tensor> = {};
      for (const inputName in node.inputs) {
        const nodeInput = node.inputs[inputName]!;
        if (tensorsFromX[nodeInput.id]) prunedInputs[inputName] = nodeInput;
      }
      const prunedNode = Object.assign({}, node);
      prunedNode.inputs = prunedInputs;
      prunedNode.outputs = node.outputs;
      filtered.push(prunedNode);
    }
  }
  return filtered;
}

/**
 * The gradient map of the walk with a count of the entries holding each tensor object (a
 * gradient function may hand back `dy` itself, or one tensor for two inputs).
 */
class GradMap {
  readonly byId = new Map<number, tf.Tensor>();
  readonly refs = new Map<tf.Tensor, number>();
  get(id: number): tf.Tensor | undefined {
    return this.byId.get(id);
  }
  set(id: number, t: tf.Tensor): void {
    this.refs.set(t, (this.refs.get(t) ?? 0) + 1);
    const prev = this.byId.get(id);
    if (prev !== undefined) this.unref(prev);
    this.byId.set(id, t);
  }
  /** Drops entry `id`; returns its tensor when no other entry holds it. */
  drop(id: number): tf.Tensor | undefined {
    const t = this.byId.get(id);
    if (t === undefined) return undefined;
    this.byId.delete(id);
    return this.unref(t) ? t : undefined;
  }
  private unref(t: tf.Tensor): boolean {
    const n = this.refs.get(t)! - 1;
    if (n > 0) {
      this.refs.set(t, n);
      return false;
    }
    this.refs.delete(t);
    return true;
  }
}

/**
 * `Engine.gradients` of tfjs-core 4.22.0 with per-node release of gradients (see the module
 * documentation). Same arguments, result, errors and tidy/keep semantics as the stock method:
 * `value` and the `grads` are tracked in the caller's scope, entries of `grads` are `undefined`
 * for xs without a path to `y` when `allowNoGradients` is true.
 *
 * @param engine the tfjs engine (`tf.engine()`)
 * @param stock the engine's own `gradients`, run instead for nested differentiation
 * @param f the function to differentiate; returns a tensor
 * @param xs the tensors to differentiate with respect to (non-empty)
 * @param dy the gradient of the output (default ones); float32; not disposed
 * @param allowNoGradients do not throw when no tape node connects the xs to the output
 * @returns the output of `f` and the gradient of each x
 */
export function lowMemoryGradients<T extends tf.Tensor>(
  engine: ReturnType<typeof tf.engine>,
  stock: GradientsFn,
  f: () => T,
  xs: tf.Tensor[],
  dy?: T,
  allowNoGradients = false,
): { value: T; grads: tf.Tensor[] } {
  const eng = engine as unknown as EngineInternals;
  // Inside another gradient's forward pass the backward ops go on the outer tape: stock tfjs.
  if (eng.state.gradientDepth > 0) {
    return stock.call(engine, f, xs, dy, allowNoGradients) as { value: T; grads: tf.Tensor[] };
  }
  if (!(xs.length > 0)) throw new Error("gradients() received an empty list of xs.");
  if (dy != null && dy.dtype !== "float32") {
    throw new Error(`dy must have 'float32' dtype, but has '${dy.dtype}'`);
  }
  const y = eng.scopedRun(
    () => eng.startTape(),
    () => eng.endTape(),
    () => eng.tidy("forward", f),
  );
  if (!(y instanceof tf.Tensor)) throw new Error("The result y returned by f() must be a tensor.");
  const filteredTape = filteredNodesXToY(eng.state.activeTape!, xs, y);
  if (!allowNoGradients && filteredTape.length === 0 && xs.length > 0) {
    throw new Error(
      "Cannot compute gradient of y=f(x) with respect to x. Make sure " +
        "that the f you passed encloses all operations that lead from x " +
        "to y.",
    );
  }
  return eng.tidy("backward", () => {
    const scope = eng.state.activeScope!;
    const xIds = new Set(xs.map((x) => x.id));
    // What the backward tidy owns: it would dispose these when it ends.
    const owned = (t: tf.Tensor) => {
      const i = t as unknown as TensorInternals;
      return !i.kept && i.scopeId === scope.id && !i.isDisposed;
    };
    // The last node (in walk order) that reads or accumulates each tensor's gradient.
    const releaseAt: number[][] = filteredTape.map(() => []);
    const seen = new Set<number>();
    for (let i = 0; i < filteredTape.length; i++) {
      const node = filteredTape[i]!;
      const ids = [
        ...node.outputs.map((o) => o.id),
        ...Object.values(node.inputs).map((t) => t.id),
      ];
      for (const id of ids) {
        if (seen.has(id) || xIds.has(id)) continue;
        seen.add(id);
        releaseAt[i]!.push(id);
      }
    }
    const map = new GradMap();
    map.set(y.id, dy == null ? tf.ones(y.shape) : dy);
    for (let i = filteredTape.length - 1; i >= 0; i--) {
      const node = filteredTape[i]!;
      const trackedBefore = scope.track.length;
      const dys: (tf.Tensor | null)[] = node.outputs.map((o) => map.get(o.id) ?? null);
      if (node.gradient == null) {
        throw new Error(
          `Cannot compute gradient: gradient function not found for ${node.kernelName}.`,
        );
      }
      const inputGradients = node.gradient(dys);
      for (const inputName in node.inputs) {
        if (!(inputName in inputGradients)) {
          throw new Error(
            `Cannot backprop through input ${inputName}. ` +
              `Available gradients found: ${Object.keys(inputGradients)}.`,
          );
        }
        const dx = eng.tidy(() => inputGradients[inputName]!());
        if (dx.dtype !== "float32") {
          throw new Error(
            `Error in gradient for op ${node.kernelName}. The gradient of input ` +
              `${inputName} must have 'float32' dtype, but has '${dx.dtype}'`,
          );
        }
        const x = node.inputs[inputName]!;
        if (!tf.util.arraysEqual(dx.shape, x.shape)) {
          throw new Error(
            `Error in gradient for op ${node.kernelName}. The gradient of input ` +
              `'${inputName}' has shape '${dx.shape}', which does not match ` +
              `the shape of the input '${x.shape}'`,
          );
        }
        const cur = map.get(x.id);
        if (cur == null) {
          map.set(x.id, dx);
        } else {
          map.set(x.id, tf.add(cur, dx));
          cur.dispose();
        }
      }
      // This node's outputs' gradients (and any input gradient nobody reads) are done with.
      for (const id of releaseAt[i]!) {
        const t = map.drop(id);
        if (t !== undefined && owned(t)) t.dispose();
      }
      // Scratch the node's gradient left in the backward scope that no map entry holds.
      for (let k = trackedBefore; k < scope.track.length; k++) {
        const t = scope.track[k]!;
        if (owned(t) && !map.refs.has(t)) t.dispose();
      }
    }
    const grads = xs.map((x) => map.get(x.id)!);
    // Stock tfjs does this only at gradientDepth 0, which is always the case here (nested calls
    // ran stock tfjs above).
    eng.state.activeTape!.forEach((node) => {
      for (const tensor of node.saved!) tensor.dispose();
    });
    eng.state.activeTape = null;
    return { value: y, grads };
  });
}

interface Installed {
  engine: EngineInternals;
  fn: GradientsFn;
  /** The engine's own property `gradients` before installing, if it had one. */
  ownBefore: PropertyDescriptor | undefined;
}
let installed: Installed | undefined;
let warnedVersion = false;

/**
 * Replaces the tfjs engine's `gradients` by {@link lowMemoryGradients} (idempotent). Refused,
 * with one warning per process, when the loaded tfjs-core is not {@link BACKPROP_TFJS_VERSION}.
 *
 * @param log where the refusal is reported (default `console.warn`)
 * @returns whether the low-memory backward pass is installed now
 * @example
 * ```ts
 * import { installLowMemoryBackprop, uninstallLowMemoryBackprop } from "./backprop.ts";
 * installLowMemoryBackprop();
 * // ... training ...
 * uninstallLowMemoryBackprop();
 * ```
 */
export function installLowMemoryBackprop(log: (line: string) => void = console.warn): boolean {
  const engine = tf.engine() as unknown as EngineInternals;
  if (installed !== undefined && installed.engine === engine) return true;
  if (tf.version_core !== BACKPROP_TFJS_VERSION) {
    if (!warnedVersion) {
      warnedVersion = true;
      log(
        `model/backprop.ts: tfjs-core is ${tf.version_core}, not ${BACKPROP_TFJS_VERSION}: ` +
          "the low-memory backward pass is not installed (stock tfjs gradients are used)",
      );
    }
    return false;
  }
  const ownBefore = Object.getOwnPropertyDescriptor(engine, "gradients");
  const stock = engine.gradients;
  const fn: GradientsFn = (f, xs, dy, allowNoGradients) =>
    lowMemoryGradients(
      engine as unknown as ReturnType<typeof tf.engine>,
      stock,
      f,
      xs,
      dy,
      allowNoGradients,
    );
  engine.gradients = fn;
  installed = { engine, fn, ownBefore };
  return true;
}

/**
 * Restores the tfjs engine's own `gradients` (a no-op when not installed).
 *
 * @returns whether it was installed
 */
export function uninstallLowMemoryBackprop(): boolean {
  if (installed === undefined) return false;
  const { engine, fn, ownBefore } = installed;
  installed = undefined;
  // Someone replaced it after us: leave theirs.
  if (engine.gradients !== fn) return true;
  if (ownBefore === undefined) {
    delete (engine as unknown as Record<string, unknown>).gradients;
  } else Object.defineProperty(engine, "gradients", ownBefore);
  return true;
}

/** Whether {@link installLowMemoryBackprop} is in effect on the current tfjs engine. */
export function lowMemoryBackpropInstalled(): boolean {
  return installed !== undefined &&
    installed.engine === (tf.engine() as unknown as EngineInternals) &&
    installed.engine.gradients === installed.fn;
}
