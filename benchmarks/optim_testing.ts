/**
 * A test helper shared by the optimizer tests of every backend (`optim_test.ts` for cpu and
 * wasm, `model/webgpu/fused_kernels_test.ts` for webgpu): three deterministic updates of one
 * parameter on the current backend. Not used by the library itself.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { createOptimizer, type OptimizerConfig } from "./optim.ts";

/**
 * Applies three updates (learning rate 0.01) to a parameter of `shape` starting at
 * `0.5·sin(i + 1)`, with gradients `0.3·cos(i·k)` for k = 1, 2, 3.
 *
 * @param cfg the optimizer
 * @param shape the parameter's shape
 * @returns the parameter's values, then each optimizer slot's, in slot order
 */
export async function threeSteps(
  cfg: OptimizerConfig,
  shape: number[],
): Promise<Float32Array[]> {
  const n = shape.reduce((a, b) => a * b, 1);
  const init = tf.tensor(Array.from({ length: n }, (_, i) => Math.sin(i + 1) * 0.5), shape);
  const w = tf.variable(init);
  init.dispose();
  const opt = createOptimizer(cfg);
  for (const k of [1, 2, 3]) {
    const g = tf.tensor(Array.from({ length: n }, (_, i) => Math.cos(i * k) * 0.3), shape);
    opt.apply(new Map([["w", w]]), new Map([["w", g]]), 0.01);
    g.dispose();
  }
  const out = [
    (await w.data()) as Float32Array,
    ...(await Promise.all([...opt.slots().values()].map((t) => t.data() as Promise<Float32Array>))),
  ];
  opt.dispose();
  w.dispose();
  return out;
}
