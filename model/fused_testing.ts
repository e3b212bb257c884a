/**
 * Float64 references and tolerance checks shared by the tests of the fused kernels
 * (`fused_test.ts` for wasm and cpu, `webgpu/fused_kernels_test.ts` for webgpu). Not used by the
 * library itself.
 *
 * @module
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { crossEntropyLoss } from "./t5.ts";

const C = Math.sqrt(2 / Math.PI);
const K = 0.044715;

/** gelu_new(x) = x·sigmoid(2u) in float64 (no cancellation for negative x). */
export function gelu64(x: number): number {
  return x / (1 + Math.exp(-2 * C * (x + K * x * x * x)));
}

/** gelu_new′(x) in float64. */
export function geluGrad64(x: number): number {
  const e = Math.exp(-2 * C * (x + K * x * x * x));
  const s = 1 / (1 + e);
  const oneMinusS = e === Infinity ? 1 : e / (1 + e);
  return s + x * s * oneMinusS * 2 * C * (1 + 3 * K * x * x);
}

/**
 * Where the true value underflows (x < −10: gelu_new(x) < 1e-37), the exp argument is clamped
 * at 88.3 and the kernels return values below 1e-20 in magnitude instead of 0.
 */
export const GELU_ABS = 1e-20;
/** Relative tolerance of the float32 GELU kernels before the exp-argument term (see below). */
export const GELU_REL = 2e-6;

/** Expected gated GELU outputs and gradients for inputs `a`, `b`, upstream `dy`. */
export function gatedGeluReference(a: Float32Array, b: Float32Array, dy: Float32Array) {
  return {
    y: Array.from(a, (x, i) => gelu64(x) * b[i]!),
    da: Array.from(a, (x, i) => dy[i]! * b[i]! * geluGrad64(x)),
    db: Array.from(a, (x, i) => dy[i]! * gelu64(x)),
    // gelu_new′ = s + x·s(1−s)·2u′ has a root near x = −0.75 where its two terms cancel: the
    // rounding there is relative to the terms' size, not to the result's.
    daTerms: Array.from(a, (x, i) => {
      const s = gelu64(x) / x || 0.5;
      return dy[i]! * b[i]! * (s + Math.abs(geluGrad64(x) - s));
    }),
  };
}

/**
 * Asserts a float32 GELU-kernel result against its float64 reference: relative GELU_REL plus
 * 2⁻²³·|exp argument| (the argument is rounded to float32 before exp, whose condition number is
 * |argument|), relative to `terms` (the size of the summed terms), plus GELU_ABS.
 */
export function assertGeluClose(
  got: ArrayLike<number>,
  want: readonly number[],
  a: Float32Array,
  what: string,
  terms: readonly number[] = want,
): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    const x = a[i]!;
    const arg = Math.abs(2 * C * (x + K * x * x * x));
    const tol = (GELU_REL + 2 ** -23 * Math.min(arg, 88.3)) * Math.abs(terms[i]!) + GELU_ABS;
    assert.ok(
      Math.abs(got[i]! - want[i]!) <= tol,
      `${what}[${i}] at x = ${x}: got ${got[i]}, want ${want[i]}`,
    );
  }
}

/** Inputs: random in [−8, 8] plus edge values; `n` long. */
export function geluInputs(random: Float32Array): Float32Array {
  const edge = [0, -0, 1e-8, -1e-8, 0.5, -0.5, 3, -3, 6, -6, 10, -10, 20, -20, 60, -60, 1e4, -1e4];
  return Float32Array.from([...edge, ...random.subarray(edge.length).map((v) => 8 * v)]);
}

/** RMS norm output and gradients in float64 for `rows` rows of `d`. */
export function rmsNormReference(
  x: Float32Array,
  w: Float32Array,
  dy: Float32Array,
  eps: number,
): { y: number[]; dx: number[]; dw: number[] } {
  const d = w.length;
  const y: number[] = [];
  const dx: number[] = [];
  const dw = new Array<number>(d).fill(0);
  for (let o = 0; o < x.length; o += d) {
    const xs = Array.from(x.subarray(o, o + d));
    const g = Array.from(dy.subarray(o, o + d));
    const r = 1 / Math.sqrt(xs.reduce((a, v) => a + v * v, 0) / d + eps);
    const dot = xs.reduce((a, v, j) => a + v * g[j]! * w[j]!, 0);
    xs.forEach((v, j) => {
      y.push(v * r * w[j]!);
      dx.push(r * w[j]! * g[j]! - (v * r * r * r * dot) / d);
      dw[j]! += g[j]! * v * r;
    });
  }
  return { y, dx, dw };
}

/**
 * Float64 reference of T5X's softmax cross-entropy with label smoothing ε and z-loss z over
 * `[rows, V]` logits: the mean over counted rows (label ≠ −100) of
 * (1−ε)·nll + ε·(lse − mean logit) + z·lse², and its gradient per row r and logit j,
 * [(1 + 2z·lse)·softmax_j − (1−ε)·[j = label] − ε/V] / count (0 for rows not counted).
 */
export function crossEntropyReference(
  logits: Float32Array,
  labels: readonly number[],
  v: number,
  eps: number,
  z: number,
): { loss: number; grad: Float64Array } {
  const counted = labels.flatMap((k, i) => k === -100 ? [] : [i]);
  let loss = 0;
  const grad = new Float64Array(labels.length * v);
  for (const r of counted) {
    const row = Array.from(logits.subarray(r * v, (r + 1) * v));
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((acc, y) => acc + Math.exp(y - m), 0));
    const nll = lse - row[labels[r]!]!;
    const smooth = lse - row.reduce((acc, y) => acc + y, 0) / v;
    loss += ((1 - eps) * nll + eps * smooth + z * lse * lse) / counted.length;
    row.forEach((y, j) => {
      const onehot = j === labels[r] ? 1 : 0;
      grad[r * v + j] = ((1 + 2 * z * lse) * Math.exp(y - lse) - (1 - eps) * onehot - eps / v) /
        counted.length;
    });
  }
  return { loss, grad };
}

/**
 * Asserts `|got − want| ≤ rel·|want| + abs` elementwise (NaN matches NaN).
 */
export function assertClose(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  rel: number,
  what: string,
  abs = 1e-30,
): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    const g = got[i]!;
    const w = want[i]!;
    const err = Math.abs(g - w);
    assert.ok(
      err <= rel * Math.abs(w) + abs || (Number.isNaN(g) && Number.isNaN(w)) || g === w,
      `${what}[${i}]: got ${g}, want ${w} (rel err ${err / Math.abs(w)})`,
    );
  }
}

/** The largest |value|. */
export function maxAbs(v: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < v.length; i++) m = Math.max(m, Math.abs(v[i]!));
  return m;
}

/**
 * `crossEntropyLoss` and its gradient with respect to the logits on the active backend: the loss
 * and the `[b·l·v]` gradient, read back; every tensor it creates is disposed.
 *
 * @param logits `[b, l, v]` values
 * @param labels `[b, l]` token ids (−100 ignored)
 * @param shape `[b, l, v]`
 * @param eps label smoothing
 * @param zLoss T5X's z-loss coefficient (0, the default, leaves the option out)
 */
export async function crossEntropyAndGrad(
  logits: Float32Array,
  labels: number[],
  shape: [number, number, number],
  eps: number,
  zLoss = 0,
): Promise<Float32Array[]> {
  const [b, l] = shape;
  const init = tf.tensor3d(logits, shape);
  const x = tf.variable(init);
  init.dispose();
  const y = tf.tensor2d(labels, [b, l], "int32");
  const { value, grads } = tf.variableGrads(
    () =>
      crossEntropyLoss(x as tf.Tensor as tf.Tensor3D, y, {
        labelSmoothing: eps,
        ...(zLoss > 0 ? { zLoss } : {}),
      }),
    [x],
  );
  const out = [
    (await value.data()) as Float32Array,
    (await grads[x.name]!.data()) as Float32Array,
  ];
  tf.dispose([x, y, value, ...Object.values(grads)]);
  return out;
}
