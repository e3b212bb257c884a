/**
 * Test helper shared by `model/accounting_test.ts` and `model/methods/accounting_test.ts`: the
 * matmul FLOPs of the kernels tfjs ran, to compare the closed-form accounting with.
 *
 * @module
 */
import { PRESETS, type T5Config } from "./config.ts";

/**
 * The T5 1.1 layout (gated GELU, untied lm_head) at a size small enough for a quick profiled
 * training step on cpu: d 16, 2 heads of 8, d_ff 24, vocabulary 64.
 */
export const TINY_FLOP_CONFIG: T5Config = Object.freeze({
  ...PRESETS["tiny-v1_1"],
  dModel: 16,
  numHeads: 2,
  dKv: 8,
  dFf: 24,
  vocabSize: 64,
});

/** A kernel record of `tf.profile`, as far as the count needs it. */
export interface ProfiledKernel {
  readonly name: string;
  readonly inputShapes: (number[] | null)[];
  readonly outputShapes: number[][];
}

/**
 * FLOPs of the matmul kernels in a `tf.profile` (`BatchMatMul`, `_FusedMatMul`, `MatMul`):
 * 2·|out|·k per kernel (2 per multiply-add), k = (a's last two dims) / out's rows. A convolution
 * or einsum kernel, which the count would miss, is an error.
 *
 * @param kernels the profile's kernels
 * @returns the total
 */
export function profiledMatmulFlops(kernels: readonly ProfiledKernel[]): number {
  let total = 0;
  for (const k of kernels) {
    if (/conv|einsum/i.test(k.name)) throw new Error(`unexpected kernel ${k.name}`);
    if (k.name !== "BatchMatMul" && k.name !== "_FusedMatMul" && k.name !== "MatMul") continue;
    const a = k.inputShapes[0]!;
    const out = k.outputShapes[0]!;
    const inner = (a[a.length - 2]! * a[a.length - 1]!) / out[out.length - 2]!;
    total += 2 * out.reduce((x, y) => x * y, 1) * inner;
  }
  return total;
}
