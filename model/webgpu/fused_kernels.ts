/**
 * WGSL implementations of the fused kernels of `model/fused.ts` for the tfjs `webgpu` backend:
 * the dropout mask and dropout, gated GELU (forward and both gradients), T5's RMS norm (forward
 * and gradient), the attention softmax with its position bias and mask (forward and gradient)
 * and the AdamW update.
 *
 * Why: op by op, tfjs-webgpu runs the gated GELU as ≈ 8 dispatches forward and ≈ 12 backward,
 * the RMS norm as 6 and ≈ 12, AdamW as ≈ 12 per variable, and `tf.dropout` draws every mask in
 * JavaScript and uploads it. Each fused kernel here is one dispatch (two for the gated GELU's
 * gradient and the RMS norm's, three for AdamW: tfjs programs have one output each), reads its
 * inputs once and writes its output once. AdamW normally runs in place instead, one dispatch per
 * variable (`in_place.ts`); its three-output kernel is the fallback.
 *
 * The formulas are those of `model/wasm_simd.ts` (float32): GELU as `x·sigmoid(2u)` with the
 * exp argument clamped to [−87.3, 88.3], the dropout mask as the same integer hash (bit-identical
 * masks on every backend). Every kernel is tested against the JavaScript reference of
 * `model/fused.ts` on the software adapter (`fused_kernels_test.ts`).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import {
  ADAFACTOR,
  type AdafactorAttrs,
  ADAMW,
  type AdamWAttrs,
  ATTENTION_SOFTMAX,
  DROPOUT,
  DROPOUT_ADD,
  DROPOUT_MASK,
  type DropoutMaskParams,
  GATED_GELU,
  GATED_GELU_DROPOUT,
  GATED_GELU_DROPOUT_GRAD,
  GATED_GELU_GRAD,
  registerInPlaceUpdates,
  RMS_NORM,
  RMS_NORM_GRAD,
  RMS_NORM_KEEP,
  SOFTMAX_GRAD,
  SOFTMAX_XENT,
  SOFTMAX_XENT_GRAD,
  SUM_LEADING,
} from "../fused.ts";
import { view, type WebGpuBackendLike, type WebGpuProgramLike } from "./matmul_kernels.ts";
import { f32, grid, i32, reduceWgsl, u32 } from "./wgsl.ts";
import {
  adafactorFactoredInPlaceWebgpu,
  adafactorFactoredManyInPlaceWebgpu,
  adafactorUnfactoredInPlaceWebgpu,
  adafactorUnfactoredManyInPlaceWebgpu,
  adamwInPlaceWebgpu,
  adamwManyInPlaceWebgpu,
  dispatchInPlace,
  guardInPlaceReads,
  inPlaceSupport,
} from "./in_place.ts";

/** Threads per workgroup of the elementwise programs. */
const EW_THREADS = 256;
/** Threads per workgroup (one workgroup per row) of the row programs. */
const ROW_THREADS = 64;

const GELU_WGSL = `
  fn geluParts(x : f32) -> vec2<f32> {
    let u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
    let e = exp(clamp(-2.0 * u, -87.3, 88.3));
    return vec2<f32>(1.0 / (1.0 + e), e);
  }`;

const FMIX_WGSL = `
  fn fmix32(h0 : u32) -> u32 {
    var h = h0;
    h = h ^ (h >> 16u);
    h = h * 0x85ebca6bu;
    h = h ^ (h >> 13u);
    h = h * 0xc2b2ae35u;
    h = h ^ (h >> 16u);
    return h;
  }`;

/** Uniforms of the programs that apply a dropout mask (`maskUniforms` fills them). */
const MASK_UNIFORMS = "key0 : u32, key1 : u32, threshold : u32, scale : f32,";

/**
 * `dropoutKeep(index)`: the dropout mask at a flat index, 0 or the scale `1/(1−rate)`: the hash
 * of `model/fused.ts` (`fillDropoutMask`), so every backend draws the same mask.
 */
const MASK_WGSL = FMIX_WGSL + `
  fn dropoutKeep(index : i32) -> f32 {
    let h = fmix32(fmix32(u32(index) ^ uniforms.key0) ^ uniforms.key1);
    return select(0.0, uniforms.scale, h >= uniforms.threshold);
  }`;

/**
 * The elementwise programs: their inputs, uniforms and per-element WGSL. A program must read
 * every input it binds: tfjs builds pipelines with the "auto" layout, which drops unused
 * bindings, and the mismatched bind group then fails validation and takes the whole submitted
 * command buffer down with it (every result of that batch reads as zeros).
 */
const ELEMENTWISE = {
  dropoutMask: {
    inputs: [],
    uniforms: MASK_UNIFORMS,
    prelude: MASK_WGSL,
    body: `result[index] = dropoutKeep(index);`,
  },
  dropoutApply: {
    inputs: ["X"],
    uniforms: MASK_UNIFORMS,
    prelude: MASK_WGSL,
    body: `result[index] = X[index] * dropoutKeep(index);`,
  },
  xentGrad: {
    // d logits = s·exp(x − lse) − a·ε/v − a·(1−ε)·[j = label], a = DY[2·row] the loss column's
    // gradient. s = a, or with lseGrad (z-loss: softmaxCrossEntropyWithLse differentiates the
    // lse column too, d lse / dx = softmax) s = a + DY[2·row + 1], the wasm kernel's row scale
    // (model/fused.ts LSE_GRAD_IN_KERNEL). Without lseGrad nothing downstream uses that column.
    inputs: ["LOGITS", "LABELS", "DY", "OUT"],
    uniforms: "v : i32, eps : f32, lseGrad : i32,",
    prelude: "",
    body: `let row = index / uniforms.v;
        let col = index % uniforms.v;
        let a = DY[2 * row];
        var s = a;
        if (uniforms.lseGrad != 0) { s = a + DY[2 * row + 1]; }
        var g = s * exp(LOGITS[index] - OUT[2 * row + 1]) - a * uniforms.eps / f32(uniforms.v);
        let label = LABELS[row];
        if (col == label) { g = g - a * (1.0 - uniforms.eps); }
        // A label outside [0, v) makes its row NaN, as in the forward pass.
        if (label < 0 || label >= uniforms.v) { g = bitcast<f32>(0x7fc00000u); }
        result[index] = g;`,
  },
  sumLeading: {
    // result[i] = Σ_r X[r·size + i] over the leading axis (rows).
    inputs: ["X"],
    uniforms: "rows : i32,",
    prelude: "",
    body: `var s = 0.0;
        for (var r = 0; r < uniforms.rows; r = r + 1) { s = s + X[r * uniforms.size + index]; }
        result[index] = s;`,
  },
  dropoutAdd: {
    inputs: ["X", "H"],
    uniforms: MASK_UNIFORMS,
    prelude: MASK_WGSL,
    body: `result[index] = X[index] + H[index] * dropoutKeep(index);`,
  },
  gatedGelu: {
    inputs: ["A", "B"],
    uniforms: "",
    prelude: GELU_WGSL,
    body: `let x = A[index];
        let p = geluParts(x);
        result[index] = x * p.x * B[index];`,
  },
  gatedGeluGradA: {
    inputs: ["A", "B", "DY"],
    uniforms: "",
    prelude: GELU_WGSL,
    body: `let x = A[index];
        let p = geluParts(x);
        let dg = p.x + x * (p.x * p.x * p.y) * 1.5957691216057308 * (1.0 + 0.134145 * x * x);
        result[index] = DY[index] * B[index] * dg;`,
  },
  gatedGeluGradB: {
    inputs: ["A", "DY"],
    uniforms: "",
    prelude: GELU_WGSL,
    body: `let x = A[index];
        result[index] = DY[index] * x * geluParts(x).x;`,
  },
  gatedGeluDropout: {
    inputs: ["A", "B"],
    uniforms: MASK_UNIFORMS,
    prelude: MASK_WGSL + GELU_WGSL,
    body: `let x = A[index];
        let p = geluParts(x);
        let y = x * p.x * B[index];
        result[index] = y * dropoutKeep(index);`,
  },
  gatedGeluDropoutGradA: {
    inputs: ["A", "B", "DY"],
    uniforms: MASK_UNIFORMS,
    prelude: MASK_WGSL + GELU_WGSL,
    body: `let x = A[index];
        let p = geluParts(x);
        let d = DY[index] * dropoutKeep(index);
        let dg = p.x + x * (p.x * p.x * p.y) * 1.5957691216057308 * (1.0 + 0.134145 * x * x);
        result[index] = d * B[index] * dg;`,
  },
  gatedGeluDropoutGradB: {
    inputs: ["A", "DY"],
    uniforms: MASK_UNIFORMS,
    prelude: MASK_WGSL + GELU_WGSL,
    body: `let x = A[index];
        let d = DY[index] * dropoutKeep(index);
        result[index] = d * x * geluParts(x).x;`,
  },
  adamwM: {
    inputs: ["M", "G"],
    uniforms: ADAMW_UNIFORMS(),
    prelude: "",
    body: `result[index] = uniforms.b1 * M[index] + uniforms.c1 * G[index];`,
  },
  adamwV: {
    inputs: ["V", "G"],
    uniforms: ADAMW_UNIFORMS(),
    prelude: "",
    body: `let g = G[index];
        result[index] = uniforms.b2 * V[index] + uniforms.c2 * g * g;`,
  },
  adamwP: {
    inputs: ["P", "M", "V", "G"],
    uniforms: ADAMW_UNIFORMS(),
    prelude: "",
    body: `let g = G[index];
        let m = uniforms.b1 * M[index] + uniforms.c1 * g;
        let v = uniforms.b2 * V[index] + uniforms.c2 * g * g;
        result[index] = P[index] * uniforms.decay -
          uniforms.step * m / (sqrt(v) * uniforms.invSqrtBc2 + uniforms.eps);`,
  },
  adafactorCol: {
    // One thread per column: the new factored column moment of a [rows, cols] gradient.
    inputs: ["G", "VC"],
    uniforms: "rows : i32, cols : i32, b : f32, eps1 : f32,",
    prelude: "",
    body: `var s = 0.0;
        for (var r = 0; r < uniforms.rows; r = r + 1) {
          let v = G[r * uniforms.cols + index];
          s = s + v * v + uniforms.eps1;
        }
        result[index] = VC[index] * uniforms.b + s / f32(uniforms.rows) * (1.0 - uniforms.b);`,
  },
  adafactorUpdate: {
    // p·decay − g·rsqrt(vr[r])·rsqrt(vc[c])·F[0], F from adafactorFinalSource.
    inputs: ["P", "G", "NVR", "NVC", "F"],
    uniforms: "cols : i32, decay : f32,",
    prelude: "",
    body: `let r = index / uniforms.cols;
        let c = index % uniforms.cols;
        result[index] = P[index] * uniforms.decay -
          G[index] * inverseSqrt(NVR[r]) * inverseSqrt(NVC[c]) * F[0];`,
  },
} as const;

function ADAMW_UNIFORMS(): string {
  return "b1 : f32, c1 : f32, b2 : f32, c2 : f32, decay : f32, step : f32, invSqrtBc2 : f32, " +
    "eps : f32,";
}

/** Name of an elementwise program. */
export type ElementwiseKind = keyof typeof ELEMENTWISE;

/** One elementwise fused program over a flat output of `n` float32. */
export class FusedElementwiseProgram implements WebGpuProgramLike {
  /** @inheritdoc */
  outputShape: number[];
  /** @inheritdoc */
  shaderKey: string;
  /** @inheritdoc */
  dispatchLayout = { x: [0] };
  /** @inheritdoc */
  dispatch: [number, number, number];
  /** @inheritdoc */
  workgroupSize: [number, number, number] = [EW_THREADS, 1, 1];
  /** @inheritdoc */
  variableNames: string[];
  /** @inheritdoc */
  uniforms?: string;
  /** tfjs adds the `size` uniform (element count). */
  size = true;
  private readonly kind: ElementwiseKind;

  /**
   * @param kind which program
   * @param n output elements
   * @param maxDispatch the device's `maxComputeWorkgroupsPerDimension`
   */
  constructor(kind: ElementwiseKind, n: number, maxDispatch: number) {
    this.kind = kind;
    this.outputShape = [n];
    this.dispatch = grid(Math.ceil(n / EW_THREADS), maxDispatch);
    this.variableNames = [...ELEMENTWISE[kind].inputs];
    const u = ELEMENTWISE[kind].uniforms;
    if (u !== "") this.uniforms = u;
    this.shaderKey = `hpFused_${kind}`;
  }

  /** @inheritdoc */
  getUserCode(): string {
    const k = ELEMENTWISE[this.kind];
    return `${k.prelude}
    fn main(index : i32) {
      if (index < uniforms.size) {
        ${k.body}
      }
    }`;
  }
}

/**
 * The WGSL of a row program (one workgroup of {@link ROW_THREADS} per row of `d`; the workgroup
 * arrays are prefixed so that they shadow no WGSL builtin used by tfjs's prelude): "norm" writes
 * `x·r·w`; "dx" writes `r·w·dy − x·r³·Σ(dy·w·x)/d`; "dxr" the same plus `dr` (the gradient of
 * the residual that `HpRmsNormKeep` passes through); "rinv" writes `r` (one value per row).
 */
export function rowProgramSource(kind: RowKind): string {
  const t = ROW_THREADS;
  const twoSums = kind === "dx" || kind === "dxr";
  const lines = [
    `var<workgroup> wgSq : array<f32, ${t}>;`,
    twoSums ? `var<workgroup> wgDot : array<f32, ${t}>;` : "",
    `fn main() {`,
    `  let row = i32(workgroupId.x) + i32(workgroupId.y) * i32(numWorkgroups.x);`,
    `  let valid = row < uniforms.rows;`,
    `  let d = uniforms.d;`,
    `  let base = row * d;`,
    `  let t = i32(localId.x);`,
    `  var s = 0.0;`,
    twoSums ? `  var q = 0.0;` : "",
    `  if (valid) {`,
    `    for (var j = t; j < d; j = j + ${t}) {`,
    `      let v = X[base + j];`,
    `      s = s + v * v;`,
    twoSums ? `      q = q + DY[base + j] * W[j] * v;` : "",
    `    }`,
    `  }`,
    `  wgSq[t] = s;`,
    twoSums ? `  wgDot[t] = q;` : "",
    ...reduceWgsl(twoSums ? ["wgSq", "wgDot"] : "wgSq", "+", ROW_THREADS),
    `  let r = 1.0 / sqrt(wgSq[0] / f32(d) + uniforms.eps);`,
  ];
  if (kind === "rinv") {
    lines.push(`  if (valid && t == 0) { result[row] = r; }`);
  } else {
    lines.push(
      twoSums ? `  let c = r * r * r * wgDot[0] / f32(d);` : "",
      `  if (valid) {`,
      `    for (var j = t; j < d; j = j + ${t}) {`,
      kind === "norm"
        ? `      result[base + j] = X[base + j] * r * W[j];`
        : kind === "dx"
        ? `      result[base + j] = r * W[j] * DY[base + j] - X[base + j] * c;`
        : `      let g = r * W[j] * DY[base + j] - X[base + j] * c;\n` +
          `      result[base + j] = g + DR[base + j];`,
      `    }`,
      `  }`,
    );
  }
  lines.push(`}`);
  return lines.filter((l) => l !== "").join("\n");
}

/**
 * WGSL of the RMS norm's gradient rows as one in-place dispatch (`in_place.ts`) that writes two
 * tensors, which a tfjs program cannot: `DX` (the "dx" row program's, plus `DR` with `residual`:
 * "dxr") and `RINV`, each row's `r` (the "rinv" row program's), which the weight gradient
 * (`RmsNormDwProgram`) reads. The same sums in the same order as those programs, in one pass over
 * x instead of two and one dispatch instead of two.
 *
 * @param residual add the residual's gradient `DR` (`HpRmsNormKeep`)
 */
export function normGradSource(residual: boolean): string {
  const t = ROW_THREADS;
  return `
struct U { rows : u32, d : u32, eps : f32, pad : u32 };
@group(0) @binding(0) var<storage, read_write> DX : array<f32>;
@group(0) @binding(1) var<storage, read_write> RINV : array<f32>;
@group(0) @binding(2) var<storage, read> X : array<f32>;
@group(0) @binding(3) var<storage, read> W : array<f32>;
@group(0) @binding(4) var<storage, read> DY : array<f32>;
${residual ? "@group(0) @binding(5) var<storage, read> DR : array<f32>;" : ""}
@group(0) @binding(${residual ? 6 : 5}) var<uniform> u : U;
var<workgroup> wgSq : array<f32, ${t}>;
var<workgroup> wgDot : array<f32, ${t}>;
@compute @workgroup_size(${t})
fn main(@builtin(local_invocation_index) t : u32, @builtin(workgroup_id) wid : vec3<u32>,
        @builtin(num_workgroups) nwg : vec3<u32>) {
  let row = wid.x + wid.y * nwg.x;
  let valid = row < u.rows;
  let d = u.d;
  let base = row * d;
  var s = 0.0;
  var q = 0.0;
  if (valid) {
    for (var j = t; j < d; j = j + ${t}u) {
      let v = X[base + j];
      s = s + v * v;
      q = q + DY[base + j] * W[j] * v;
    }
  }
  wgSq[t] = s;
  wgDot[t] = q;
${reduceWgsl(["wgSq", "wgDot"], "+", t, "u32").join("\n")}
  let r = 1.0 / sqrt(wgSq[0] / f32(d) + u.eps);
  let c = r * r * r * wgDot[0] / f32(d);
  if (valid) {
    if (t == 0u) { RINV[row] = r; }
    for (var j = t; j < d; j = j + ${t}u) {
      let g = r * W[j] * DY[base + j] - X[base + j] * c;
      DX[base + j] = ${residual ? "g + DR[base + j]" : "g"};
    }
  }
}`;
}

const NORM_GRAD_PROGRAMS = {
  plain: { key: "hpInPlace_normGrad", name: "HpRmsNormGrad_dx", source: normGradSource(false) },
  residual: {
    key: "hpInPlace_normGradResidual",
    name: "HpRmsNormGrad_dxr",
    source: normGradSource(true),
  },
} as const;

/** Common shape of the programs that give each row of the output one workgroup. */
abstract class RowProgramBase implements WebGpuProgramLike {
  /** @inheritdoc */
  outputShape: number[];
  /** @inheritdoc */
  shaderKey: string;
  /** @inheritdoc */
  dispatchLayout = { x: [1], y: [0] };
  /** @inheritdoc */
  dispatch: [number, number, number];
  /** @inheritdoc */
  workgroupSize: [number, number, number] = [ROW_THREADS, 1, 1];
  /** @inheritdoc */
  variableNames: string[];
  /** @inheritdoc */
  uniforms: string;

  /**
   * @param outputShape `[rows, columns]`
   * @param maxDispatch the device's `maxComputeWorkgroupsPerDimension`
   * @param variableNames input bindings
   * @param uniforms extra uniform fields
   * @param shaderKey cache key
   */
  constructor(
    outputShape: [number, number],
    maxDispatch: number,
    variableNames: string[],
    uniforms: string,
    shaderKey: string,
  ) {
    this.outputShape = outputShape;
    this.dispatch = grid(outputShape[0], maxDispatch);
    this.variableNames = variableNames;
    this.uniforms = uniforms;
    this.shaderKey = shaderKey;
  }

  /** @inheritdoc */
  abstract getUserCode(): string;
}

/** The row programs of {@link rowProgramSource}. */
export type RowKind = "norm" | "dx" | "dxr" | "rinv";

/** Inputs of each row program. */
const ROW_INPUTS: Record<RowKind, string[]> = {
  norm: ["X", "W"],
  dx: ["X", "W", "DY"],
  dxr: ["X", "W", "DY", "DR"],
  rinv: ["X"],
};

/** A row program over `rows` rows of `d` (see {@link rowProgramSource}). */
export class FusedRowProgram extends RowProgramBase {
  private readonly kind: RowKind;

  /**
   * @param kind which program
   * @param rows rows
   * @param d row length
   * @param maxDispatch the device's `maxComputeWorkgroupsPerDimension`
   */
  constructor(kind: RowKind, rows: number, d: number, maxDispatch: number) {
    super(
      kind === "rinv" ? [rows, 1] : [rows, d],
      maxDispatch,
      ROW_INPUTS[kind],
      "rows : i32, d : i32, eps : f32,",
      `hpFusedRow_${kind}`,
    );
    this.kind = kind;
  }

  /** @inheritdoc */
  getUserCode(): string {
    return rowProgramSource(this.kind);
  }
}

/**
 * The WGSL of the attention softmax (one workgroup per row of `k` scores): the row's bias and mask
 * rows are found by broadcasting (a dimension of size 1 repeats), then max, sum of exp, and the
 * normalised exp are computed in three strided passes with workgroup reductions. "grad" writes
 * `p·(dy − Σ p·dy)` for the probabilities `P` and upstream `DY`.
 */
export function softmaxProgramSource(kind: "forward" | "grad"): string {
  const t = ROW_THREADS;
  const lines = [
    `var<workgroup> wgRed : array<f32, ${t}>;`,
    `fn main() {`,
    `  let row = i32(workgroupId.x) + i32(workgroupId.y) * i32(numWorkgroups.x);`,
    `  let valid = row < uniforms.rows;`,
    `  let k = uniforms.k;`,
    `  let base = row * k;`,
    `  let t = i32(localId.x);`,
  ];
  if (kind === "forward") {
    lines.push(
      `  let q = row % uniforms.q;`,
      `  let h = (row / uniforms.q) % uniforms.h;`,
      `  let b = row / (uniforms.q * uniforms.h);`,
      `  let bRow = (((b % uniforms.bb) * uniforms.bh + h % uniforms.bh) * uniforms.bq + q % uniforms.bq) * k;`,
      `  let mRow = (((b % uniforms.mb) * uniforms.mh + h % uniforms.mh) * uniforms.mq + q % uniforms.mq) * k;`,
      `  var m = -3.4028234663852886e38;`,
      `  if (valid) {`,
      `    for (var j = t; j < k; j = j + ${t}) { m = max(m, X[base + j] + BIAS[bRow + j] + MASK[mRow + j]); }`,
      `  }`,
      `  wgRed[t] = m;`,
      ...reduceWgsl("wgRed", "max", ROW_THREADS),
      `  let rowMax = wgRed[0];`,
      `  workgroupBarrier();`,
      `  var s = 0.0;`,
      `  if (valid) {`,
      `    for (var j = t; j < k; j = j + ${t}) { s = s + exp(X[base + j] + BIAS[bRow + j] + MASK[mRow + j] - rowMax); }`,
      `  }`,
      `  wgRed[t] = s;`,
      ...reduceWgsl("wgRed", "+", ROW_THREADS),
      `  let inv = 1.0 / wgRed[0];`,
      `  if (valid) {`,
      `    for (var j = t; j < k; j = j + ${t}) { result[base + j] = exp(X[base + j] + BIAS[bRow + j] + MASK[mRow + j] - rowMax) * inv; }`,
      `  }`,
      `}`,
    );
  } else {
    lines.push(
      `  var s = 0.0;`,
      `  if (valid) {`,
      `    for (var j = t; j < k; j = j + ${t}) { s = s + P[base + j] * DY[base + j]; }`,
      `  }`,
      `  wgRed[t] = s;`,
      ...reduceWgsl("wgRed", "+", ROW_THREADS),
      `  let rowDot = wgRed[0];`,
      `  if (valid) {`,
      `    for (var j = t; j < k; j = j + ${t}) { result[base + j] = P[base + j] * (DY[base + j] - rowDot); }`,
      `  }`,
      `}`,
    );
  }
  return lines.join("\n");
}

/** The attention softmax or its gradient over `rows` rows of `k` (see {@link softmaxProgramSource}). */
export class SoftmaxProgram extends RowProgramBase {
  private readonly kind: "forward" | "grad";

  /**
   * @param kind forward (inputs X, BIAS, MASK) or grad (inputs P, DY)
   * @param rows rows
   * @param k row length
   * @param maxDispatch the device's `maxComputeWorkgroupsPerDimension`
   */
  constructor(kind: "forward" | "grad", rows: number, k: number, maxDispatch: number) {
    super(
      [rows, k],
      maxDispatch,
      kind === "forward" ? ["X", "BIAS", "MASK"] : ["P", "DY"],
      kind === "forward"
        ? "rows : i32, k : i32, h : i32, q : i32, bb : i32, bh : i32, bq : i32, mb : i32, " +
          "mh : i32, mq : i32,"
        : "rows : i32, k : i32,",
      `hpFusedSoftmax_${kind}`,
    );
    this.kind = kind;
  }

  /** @inheritdoc */
  getUserCode(): string {
    return softmaxProgramSource(this.kind);
  }
}

/**
 * WGSL of the per-token softmax cross-entropy (one workgroup per row of `v` logits): the row's max,
 * then Σ exp(x − max) and Σ x in one strided pass with workgroup reductions; thread 0 writes the
 * loss `(1−ε)(lse − x[label]) + ε(lse − mean x)` and the log-sum-exp (kept for the gradient) to
 * `result[2·row]`, `result[2·row + 1]`. A kernel cannot throw, so a label outside [0, v) makes
 * its row's loss NaN (the wasm kernel throws; the op's callers map ignored positions to a valid
 * label, and the trainer stops on a non-finite loss).
 */
export function xentProgramSource(): string {
  const t = ROW_THREADS;
  return [
    `var<workgroup> wgRed : array<f32, ${t}>;`,
    `var<workgroup> wgSum : array<f32, ${t}>;`,
    `fn main() {`,
    `  let row = i32(workgroupId.x) + i32(workgroupId.y) * i32(numWorkgroups.x);`,
    `  let valid = row < uniforms.rows;`,
    `  let v = uniforms.v;`,
    `  let base = row * v;`,
    `  let t = i32(localId.x);`,
    `  var m = -3.4028234663852886e38;`,
    `  if (valid) {`,
    `    for (var j = t; j < v; j = j + ${t}) { m = max(m, LOGITS[base + j]); }`,
    `  }`,
    `  wgRed[t] = m;`,
    ...reduceWgsl("wgRed", "max", ROW_THREADS),
    `  let rowMax = wgRed[0];`,
    `  workgroupBarrier();`,
    `  var s = 0.0;`,
    `  var sx = 0.0;`,
    `  if (valid) {`,
    `    for (var j = t; j < v; j = j + ${t}) {`,
    `      let x = LOGITS[base + j];`,
    `      s = s + exp(x - rowMax);`,
    `      sx = sx + x;`,
    `    }`,
    `  }`,
    `  wgRed[t] = s;`,
    `  wgSum[t] = sx;`,
    ...reduceWgsl(["wgRed", "wgSum"], "+", ROW_THREADS),
    `  if (valid && t == 0) {`,
    `    let lse = rowMax + log(wgRed[0]);`,
    `    let label = LABELS[row];`,
    `    let picked = LOGITS[base + clamp(label, 0, v - 1)];`,
    `    var loss = lse - picked;`,
    `    if (uniforms.eps > 0.0) {`,
    `      loss = loss * (1.0 - uniforms.eps) + (lse - wgSum[0] / f32(v)) * uniforms.eps;`,
    `    }`,
    `    if (label < 0 || label >= v) { loss = bitcast<f32>(0x7fc00000u); }`,
    `    result[2 * row] = loss;`,
    `    result[2 * row + 1] = lse;`,
    `  }`,
    `}`,
  ].join("\n");
}

/** The cross-entropy forward over `rows` rows of `v` logits (see {@link xentProgramSource}). */
export class XentProgram extends RowProgramBase {
  /**
   * @param rows rows
   * @param maxDispatch the device's `maxComputeWorkgroupsPerDimension`
   */
  constructor(rows: number, maxDispatch: number) {
    super(
      [rows, 2],
      maxDispatch,
      ["LOGITS", "LABELS"],
      "rows : i32, v : i32, eps : f32,",
      "hpXent",
    );
  }

  /** @inheritdoc */
  getUserCode(): string {
    return xentProgramSource();
  }
}

/**
 * WGSL of the Adafactor row programs (one workgroup per row of a `[rows, cols]` gradient G):
 * "vr" writes the new row moment `VR[r]·b + mean_c(g² + eps1)·(1 − b)`; "s" writes
 * `Σ_c g² / NVC[c] / NVR[r]` (the row's share of Σ u² before the mean-of-rows factor).
 */
export function adafactorRowSource(kind: "vr" | "s"): string {
  const t = ROW_THREADS;
  const term = kind === "vr" ? `v * v + uniforms.eps1` : `v * v / NVC[j]`;
  const done = kind === "vr"
    ? `VR[row] * uniforms.b + wgRed[0] / f32(cols) * (1.0 - uniforms.b)`
    : `wgRed[0] / NVR[row]`;
  return [
    `var<workgroup> wgRed : array<f32, ${t}>;`,
    `fn main() {`,
    `  let row = i32(workgroupId.x) + i32(workgroupId.y) * i32(numWorkgroups.x);`,
    `  let valid = row < uniforms.rows;`,
    `  let cols = uniforms.cols;`,
    `  let t = i32(localId.x);`,
    `  var s = 0.0;`,
    `  if (valid) {`,
    `    for (var j = t; j < cols; j = j + ${t}) { let v = G[row * cols + j]; s = s + ${term}; }`,
    `  }`,
    `  wgRed[t] = s;`,
    ...reduceWgsl("wgRed", "+", ROW_THREADS),
    `  if (valid && t == 0) { result[row] = ${done}; }`,
    `}`,
  ].join("\n");
}

/**
 * WGSL of the Adafactor step factor (one workgroup): with meanR = mean(NVR) and
 * S = Σ_r ROWS[r], the update u = g·rsqrt(vr/meanR)·rsqrt(vc) has RMS √(meanR·S/n); the factor
 * written is √meanR · lr / max(1, RMS/threshold) (no clipping when threshold ≤ 0).
 */
export function adafactorFinalSource(): string {
  const t = ROW_THREADS;
  return [
    `var<workgroup> wgRed : array<f32, ${t}>;`,
    `var<workgroup> wgRed2 : array<f32, ${t}>;`,
    `fn main() {`,
    `  let t = i32(localId.x);`,
    `  var s1 = 0.0;`,
    `  var s2 = 0.0;`,
    `  for (var r = t; r < uniforms.rows; r = r + ${t}) { s1 = s1 + NVR[r]; s2 = s2 + ROWS[r]; }`,
    `  wgRed[t] = s1;`,
    `  wgRed2[t] = s2;`,
    ...reduceWgsl(["wgRed", "wgRed2"], "+", ROW_THREADS),
    `  if (t == 0) {`,
    `    let meanR = wgRed[0] / f32(uniforms.rows);`,
    `    let rms = sqrt(meanR * wgRed2[0] / (f32(uniforms.rows) * f32(uniforms.cols)));`,
    `    let clip = select(1.0, max(1.0, rms / uniforms.thr), uniforms.thr > 0.0);`,
    `    result[0] = sqrt(meanR) * uniforms.lr / clip;`,
    `  }`,
    `}`,
  ].join("\n");
}

/** One of the Adafactor workgroup programs (see {@link adafactorRowSource}). */
export class AdafactorProgram extends RowProgramBase {
  private readonly kind: "vr" | "s" | "final";

  /**
   * @param kind "vr" (inputs G, VR), "s" (G, NVR, NVC) or "final" (NVR, ROWS; one workgroup)
   * @param rows rows of the parameter
   * @param maxDispatch the device's `maxComputeWorkgroupsPerDimension`
   */
  constructor(kind: "vr" | "s" | "final", rows: number, maxDispatch: number) {
    super(
      kind === "final" ? [1, 1] : [rows, 1],
      maxDispatch,
      kind === "vr" ? ["G", "VR"] : kind === "s" ? ["G", "NVR", "NVC"] : ["NVR", "ROWS"],
      kind === "vr"
        ? "rows : i32, cols : i32, b : f32, eps1 : f32,"
        : kind === "s"
        ? "rows : i32, cols : i32,"
        : "rows : i32, cols : i32, lr : f32, thr : f32,",
      `hpFusedAdafactor_${kind}`,
    );
    this.kind = kind;
  }

  /** @inheritdoc */
  getUserCode(): string {
    return this.kind === "final" ? adafactorFinalSource() : adafactorRowSource(this.kind);
  }
}

/** Columns per workgroup of {@link RmsNormDwProgram}, and the row lanes of each column. */
const DW_COLS = 16;
const DW_LANES = 16;

/**
 * `dw[j] = Σ_rows dy[r, j]·x[r, j]·rinv[r]`: a workgroup per 16 columns, each column's rows
 * split over 16 lanes (lane l sums rows l, l + 16, …, in order), the lanes then summed as a tree.
 * One thread per column looping over every row gave a T5 1.1 Base step at batch 32 (4,096 rows of
 * d = 768) 12 workgroups with 4,096 iterations each; this gives 48 with 256.
 */
export class RmsNormDwProgram implements WebGpuProgramLike {
  /** @inheritdoc */
  outputShape: number[];
  /** @inheritdoc */
  shaderKey = "hpFusedRmsDwLanes";
  /** @inheritdoc (not flat, so tfjs calls `main()` as for the row programs) */
  dispatchLayout = { x: [0], y: [1] };
  /** @inheritdoc */
  dispatch: [number, number, number];
  /** @inheritdoc */
  workgroupSize: [number, number, number] = [DW_COLS * DW_LANES, 1, 1];
  /** @inheritdoc */
  variableNames = ["X", "DY", "R"];
  /** @inheritdoc */
  uniforms = "rows : i32, d : i32,";

  /**
   * @param rows rows
   * @param d columns
   * @param maxDispatch the device's `maxComputeWorkgroupsPerDimension`
   */
  constructor(rows: number, d: number, maxDispatch: number) {
    this.outputShape = [d];
    this.dispatch = grid(Math.ceil(d / DW_COLS), maxDispatch);
    void rows;
  }

  /** @inheritdoc */
  getUserCode(): string {
    return `
    var<workgroup> dwLanes : array<f32, ${DW_COLS * DW_LANES}>;
    fn main() {
      let t = i32(localId.x);
      let wg = i32(workgroupId.x) + i32(workgroupId.y) * i32(numWorkgroups.x);
      let col = wg * ${DW_COLS} + t % ${DW_COLS};
      let lane = t / ${DW_COLS};
      var s = 0.0;
      if (col < uniforms.d) {
        for (var r = lane; r < uniforms.rows; r = r + ${DW_LANES}) {
          let o = r * uniforms.d + col;
          s = s + DY[o] * X[o] * R[r];
        }
      }
      dwLanes[t] = s;
      workgroupBarrier();
      for (var stride = ${DW_LANES / 2}; stride > 0; stride = stride >> 1u) {
        if (lane < stride) { dwLanes[t] = dwLanes[t] + dwLanes[t + stride * ${DW_COLS}]; }
        workgroupBarrier();
      }
      if (lane == 0 && col < uniforms.d) { result[col] = dwLanes[t]; }
    }`;
  }
}

type KernelArgs = {
  inputs: tf.NamedTensorInfoMap;
  backend: WebGpuBackendLike;
  attrs?: tf.NamedAttrMap;
};

function need(inputs: tf.NamedTensorInfoMap, name: string): tf.TensorInfo {
  const x = inputs[name];
  if (x === undefined) throw new Error(`model/webgpu/fused_kernels.ts: input "${name}" missing`);
  return x;
}

function sizeOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * Runs `program` on `inputs`, each first viewed with its given shape (a reshape shares the
 * buffer), and returns the output viewed as `outShape`; the temporary views are released.
 */
function runShaped(
  backend: WebGpuBackendLike,
  program: WebGpuProgramLike,
  inputs: ReadonlyArray<readonly [tf.TensorInfo, number[]]>,
  outShape: number[],
  uniforms: { type: string; data: number[] }[] = [],
): tf.TensorInfo {
  const views = inputs.map(([t, shape]) => view(backend, t, shape));
  try {
    const out = backend.runWebGPUProgram(program, views, "float32", uniforms);
    const shaped = view(backend, out, outShape);
    backend.disposeData(out.dataId);
    return shaped;
  } finally {
    for (const t of views) backend.disposeData(t.dataId);
  }
}

/** Runs an elementwise program on inputs by binding name and gives the result `shape`. */
function runElementwise(
  backend: WebGpuBackendLike,
  kind: ElementwiseKind,
  inputs: Readonly<Record<string, tf.TensorInfo>>,
  shape: number[],
  uniforms: { type: string; data: number[] }[] = [],
): tf.TensorInfo {
  const n = sizeOf(shape);
  const max = backend.device.limits.maxComputeWorkgroupsPerDimension;
  const flat = ELEMENTWISE[kind].inputs.map((name) => {
    const t = inputs[name];
    if (t === undefined) throw new Error(`model/webgpu/fused_kernels.ts: ${kind} needs ${name}`);
    // Programs index their inputs as flat arrays; most are n long, some (Adafactor) shorter.
    return [t, [sizeOf(t.shape)]] as [tf.TensorInfo, number[]];
  });
  return runShaped(backend, new FusedElementwiseProgram(kind, n, max), flat, shape, uniforms);
}

/** The uniforms of a dropout mask (key0, key1, threshold, scale) from kernel attrs. */
function maskUniforms(attrs: unknown) {
  const a = attrs as DropoutMaskParams;
  return [u32(a.key0), u32(a.key1), u32(a.threshold), f32(a.scale)];
}

/**
 * The RMS norm's dx (plus `dr` where given) and each row's r as two tfjs row programs: the path
 * where the in-place dispatch is not available (another tfjs version's internals). Exported for
 * its test, which runs it beside the in-place path.
 *
 * @param backend the webgpu backend
 * @param x `[..., d]`
 * @param w `[d]`
 * @param dy the norm's upstream gradient
 * @param dr the residual's gradient, added to dx (or undefined)
 * @param u the uniforms `rows`, `d`, `eps`
 * @returns dx and r `[rows, 1]` (the caller disposes both)
 */
export function rowProgramsNormGrad(
  backend: WebGpuBackendLike,
  x: tf.TensorInfo,
  w: tf.TensorInfo,
  dy: tf.TensorInfo,
  dr: tf.TensorInfo | undefined,
  u: { type: string; data: number[] }[],
): { dx: tf.TensorInfo; rinv: tf.TensorInfo } {
  const d = w.shape[0]!;
  const rows = sizeOf(x.shape) / d;
  const max = backend.device.limits.maxComputeWorkgroupsPerDimension;
  const dx = runShaped(
    backend,
    new FusedRowProgram(dr === undefined ? "dx" : "dxr", rows, d, max),
    [
      [x, [rows, d]],
      [w, [d]],
      [dy, [rows, d]],
      ...(dr === undefined ? [] : [[dr, [rows, d]] as [tf.TensorInfo, number[]]]),
    ],
    [...x.shape],
    u,
  );
  const rinv = runShaped(
    backend,
    new FusedRowProgram("rinv", rows, d, max),
    [[x, [rows, d]]],
    [rows, 1],
    u,
  );
  return { dx, rinv };
}

/** The webgpu RMS norm: one row program. */
function rmsNormKernel({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const x = need(inputs, "x");
  const w = need(inputs, "w");
  const d = w.shape[0]!;
  const rows = sizeOf(x.shape) / d;
  const max = backend.device.limits.maxComputeWorkgroupsPerDimension;
  return runShaped(
    backend,
    new FusedRowProgram("norm", rows, d, max),
    [[x, [rows, d]], [w, [d]]],
    [...x.shape],
    [i32(rows), i32(d), f32((attrs as { eps: number }).eps)],
  );
}

/** The webgpu kernels, by kernel name. */
export const WEBGPU_FUSED_KERNELS: ReadonlyArray<[string, (args: KernelArgs) => unknown]> = [
  [DROPOUT_MASK, ({ backend, attrs }) => {
    const a = attrs as unknown as DropoutMaskParams & { shape: number[] };
    if (sizeOf(a.shape) >= 2 ** 31) {
      throw new Error("model/webgpu/fused_kernels.ts: dropout masks over 2^31 elements");
    }
    return runElementwise(backend, "dropoutMask", {}, [...a.shape], [
      u32(a.key0),
      u32(a.key1),
      u32(a.threshold),
      f32(a.scale),
    ]);
  }],
  [DROPOUT, ({ inputs, backend, attrs }) => {
    const x = need(inputs, "x");
    return runElementwise(backend, "dropoutApply", { X: x }, [...x.shape], maskUniforms(attrs));
  }],
  [SOFTMAX_XENT, ({ inputs, backend, attrs }) => {
    const logits = need(inputs, "logits");
    const labels = need(inputs, "labels");
    const [n, v] = logits.shape as [number, number];
    const max = backend.device.limits.maxComputeWorkgroupsPerDimension;
    return runShaped(
      backend,
      new XentProgram(n, max),
      [[logits, [n, v]], [labels, [n]]],
      [n, 2],
      [i32(n), i32(v), f32((attrs as { eps: number }).eps)],
    );
  }],
  [SOFTMAX_XENT_GRAD, ({ inputs, backend, attrs }) => {
    const logits = need(inputs, "logits");
    const v = logits.shape[1]!;
    // lseGrad (z-loss): the lse column's gradient is folded into the row scale, one pass.
    const { eps, lseGrad } = attrs as { eps: number; lseGrad?: boolean };
    return runElementwise(
      backend,
      "xentGrad",
      {
        LOGITS: logits,
        LABELS: need(inputs, "labels"),
        DY: need(inputs, "dy"),
        OUT: need(inputs, "out"),
      },
      [...logits.shape],
      [i32(v), f32(eps), i32(lseGrad === true ? 1 : 0)],
    );
  }],
  [SUM_LEADING, ({ inputs, backend }) => {
    const x = need(inputs, "x");
    const [rows, ...rest] = x.shape;
    return runElementwise(backend, "sumLeading", { X: x }, [1, ...rest], [i32(rows ?? 1)]);
  }],
  [DROPOUT_ADD, ({ inputs, backend, attrs }) => {
    const x = need(inputs, "x");
    return runElementwise(
      backend,
      "dropoutAdd",
      { X: x, H: need(inputs, "h") },
      [...x.shape],
      maskUniforms(attrs),
    );
  }],
  [GATED_GELU, ({ inputs, backend }) => {
    const a = need(inputs, "a");
    return runElementwise(backend, "gatedGelu", { A: a, B: need(inputs, "b") }, [...a.shape]);
  }],
  [GATED_GELU_GRAD, ({ inputs, backend }) => {
    const a = need(inputs, "a");
    const ins = { A: a, B: need(inputs, "b"), DY: need(inputs, "dy") };
    return [
      runElementwise(backend, "gatedGeluGradA", ins, [...a.shape]),
      runElementwise(backend, "gatedGeluGradB", ins, [...a.shape]),
    ];
  }],
  [GATED_GELU_DROPOUT, ({ inputs, backend, attrs }) => {
    const a = need(inputs, "a");
    return runElementwise(
      backend,
      "gatedGeluDropout",
      { A: a, B: need(inputs, "b") },
      [...a.shape],
      maskUniforms(attrs),
    );
  }],
  [GATED_GELU_DROPOUT_GRAD, ({ inputs, backend, attrs }) => {
    const a = need(inputs, "a");
    const ins = { A: a, B: need(inputs, "b"), DY: need(inputs, "dy") };
    return [
      runElementwise(backend, "gatedGeluDropoutGradA", ins, [...a.shape], maskUniforms(attrs)),
      runElementwise(backend, "gatedGeluDropoutGradB", ins, [...a.shape], maskUniforms(attrs)),
    ];
  }],
  [RMS_NORM, rmsNormKernel],
  [RMS_NORM_KEEP, (args) => {
    const x = need(args.inputs, "x");
    const y = rmsNormKernel(args);
    args.backend.incRef(x.dataId); // the second output is x itself
    return [y, { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype }];
  }],
  [RMS_NORM_GRAD, ({ inputs, backend, attrs }) => {
    const x = need(inputs, "x");
    const w = need(inputs, "w");
    const dy = need(inputs, "dy");
    const dr = inputs["dr"];
    const d = w.shape[0]!;
    const rows = sizeOf(x.shape) / d;
    const max = backend.device.limits.maxComputeWorkgroupsPerDimension;
    const eps = (attrs as { eps: number }).eps;
    const u = [i32(rows), i32(d), f32(eps)];
    const be = backend as unknown as {
      makeTensorInfo(shape: number[], dtype: tf.DataType, values?: Float32Array): tf.TensorInfo;
    };
    if (rows === 0 || d === 0) {
      // No rows: dx is empty and dw is zeros. No dispatch: its grid would be empty (the in-place
      // one was [0, NaN, 1], which dispatchWorkgroups rejects) and binding the empty x fails
      // WebGPU validation, which takes the rest of the submitted batch down with it.
      return [
        be.makeTensorInfo([...x.shape], "float32"),
        be.makeTensorInfo([d], "float32", new Float32Array(d)),
      ];
    }
    let dx: tf.TensorInfo, rinv: tf.TensorInfo;
    if (inPlaceSupport() === undefined) {
      // dx and r in one dispatch.
      dx = be.makeTensorInfo([...x.shape], "float32");
      rinv = be.makeTensorInfo([rows, 1], "float32");
      const read = (tensor: tf.TensorInfo) => ({ tensor, write: false });
      dispatchInPlace(
        NORM_GRAD_PROGRAMS[dr === undefined ? "plain" : "residual"],
        [
          { tensor: dx, write: true },
          { tensor: rinv, write: true },
          read(x),
          read(w),
          read(dy),
          ...(dr === undefined ? [] : [read(dr)]),
        ],
        [u32(rows), u32(d), f32(eps), u32(0)],
        grid(rows, max),
      );
    } else {
      ({ dx, rinv } = rowProgramsNormGrad(backend, x, w, dy, dr, u));
    }
    try {
      const dw = runShaped(
        backend,
        new RmsNormDwProgram(rows, d, max),
        [[x, [rows, d]], [dy, [rows, d]], [rinv, [rows, 1]]],
        [d],
        u.slice(0, 2),
      );
      return [dx, dw];
    } finally {
      backend.disposeData(rinv.dataId);
    }
  }],
  [ATTENTION_SOFTMAX, ({ inputs, backend }) => {
    const x = need(inputs, "x");
    const bias = need(inputs, "bias");
    const mask = need(inputs, "mask");
    const [b, h, q, k] = x.shape as [number, number, number, number];
    const rows = b * h * q;
    const max = backend.device.limits.maxComputeWorkgroupsPerDimension;
    return runShaped(
      backend,
      new SoftmaxProgram("forward", rows, k, max),
      [[x, [rows, k]], [bias, [...bias.shape]], [mask, [...mask.shape]]],
      [b, h, q, k],
      [rows, k, h, q, ...bias.shape.slice(0, 3), ...mask.shape.slice(0, 3)].map(i32),
    );
  }],
  [SOFTMAX_GRAD, ({ inputs, backend }) => {
    const p = need(inputs, "p");
    const dy = need(inputs, "dy");
    const k = p.shape[p.shape.length - 1]!;
    const rows = sizeOf(p.shape) / k;
    const max = backend.device.limits.maxComputeWorkgroupsPerDimension;
    return runShaped(
      backend,
      new SoftmaxProgram("grad", rows, k, max),
      [[p, [rows, k]], [dy, [rows, k]]],
      [...p.shape],
      [i32(rows), i32(k)],
    );
  }],
  [ADAFACTOR, ({ inputs, backend, attrs }) => {
    const a = attrs as unknown as AdafactorAttrs;
    const p = need(inputs, "p");
    const g = need(inputs, "g");
    const vr = need(inputs, "vr");
    const vc = need(inputs, "vc");
    const [rows, cols] = p.shape as [number, number];
    const max = backend.device.limits.maxComputeWorkgroupsPerDimension;
    const temps: tf.TensorInfo[] = [];
    const keep = (t: tf.TensorInfo) => (temps.push(t), t);
    try {
      const nvr = keep(runShaped(
        backend,
        new AdafactorProgram("vr", rows, max),
        [[g, [rows, cols]], [vr, [rows]]],
        [rows],
        [i32(rows), i32(cols), f32(a.beta2t), f32(a.eps1)],
      ));
      const nvc = keep(runElementwise(backend, "adafactorCol", { G: g, VC: vc }, [cols], [
        i32(rows),
        i32(cols),
        f32(a.beta2t),
        f32(a.eps1),
      ]));
      const rowS = keep(runShaped(
        backend,
        new AdafactorProgram("s", rows, max),
        [[g, [rows, cols]], [nvr, [rows]], [nvc, [cols]]],
        [rows],
        [i32(rows), i32(cols)],
      ));
      const factor = keep(runShaped(
        backend,
        new AdafactorProgram("final", rows, max),
        [[nvr, [rows]], [rowS, [rows]]],
        [1],
        [i32(rows), i32(cols), f32(a.lr), f32(a.clippingThreshold)],
      ));
      const np = runElementwise(
        backend,
        "adafactorUpdate",
        { P: p, G: g, NVR: nvr, NVC: nvc, F: factor },
        [rows, cols],
        [i32(cols), f32(1 - a.lr * a.weightDecay)],
      );
      // Views that outlive the temporaries (a reshape shares the buffer and counts a reference).
      return [np, view(backend, nvr, [...vr.shape]), view(backend, nvc, [...vc.shape])];
    } finally {
      for (const t of temps) backend.disposeData(t.dataId);
    }
  }],
  [ADAMW, ({ inputs, backend, attrs }) => {
    const a = attrs as unknown as AdamWAttrs;
    const ins = {
      P: need(inputs, "p"),
      M: need(inputs, "m"),
      V: need(inputs, "v"),
      G: need(inputs, "g"),
    };
    const shape = [...ins.P.shape];
    const u = [a.b1, a.c1, a.b2, a.c2, a.decay, a.step, a.invSqrtBc2, a.eps].map(f32);
    return [
      runElementwise(backend, "adamwP", ins, shape, u),
      runElementwise(backend, "adamwM", ins, shape, u),
      runElementwise(backend, "adamwV", ins, shape, u),
    ];
  }],
];

/**
 * Registers the kernels of {@link WEBGPU_FUSED_KERNELS} for webgpu (replacing earlier ones) and
 * the in-place updates of `in_place.ts`, each for one variable and for a group of them (as many
 * per dispatch as the device's binding limits allow): AdamW (one dispatch per group; the
 * `HpAdamW` kernel's three per variable stay the fallback), unfactored Adafactor (one dispatch per
 * group of vectors) and factored Adafactor (four dispatches per group of matrices, writing in
 * place; the `HpAdafactor` kernel's five per matrix are the fallback).
 *
 * @param groupUpdates register the grouped updates (false: one parameter per update, for A/B
 *   measurements)
 */
export function registerWebgpuFusedKernels(groupUpdates = true): void {
  guardInPlaceReads();
  registerInPlaceUpdates("webgpu", {
    adamw: adamwInPlaceWebgpu,
    adafactorUnfactored: adafactorUnfactoredInPlaceWebgpu,
    adafactorFactored: adafactorFactoredInPlaceWebgpu,
    ...(groupUpdates
      ? {
        adamwMany: adamwManyInPlaceWebgpu,
        adafactorUnfactoredMany: adafactorUnfactoredManyInPlaceWebgpu,
        adafactorFactoredMany: adafactorFactoredManyInPlaceWebgpu,
      }
      : {}),
  });
  for (const [kernelName, fn] of WEBGPU_FUSED_KERNELS) {
    if (tf.getKernel(kernelName, "webgpu") !== undefined) tf.unregisterKernel(kernelName, "webgpu");
    tf.registerKernel({
      kernelName,
      backendName: "webgpu",
      kernelFunc: fn as unknown as tf.KernelFunc,
    });
  }
}

/** Removes them (the ops of `model/fused.ts` then use their composite fallbacks). */
export function unregisterWebgpuFusedKernels(): void {
  registerInPlaceUpdates("webgpu", undefined);
  for (const [kernelName] of WEBGPU_FUSED_KERNELS) {
    if (tf.getKernel(kernelName, "webgpu") !== undefined) tf.unregisterKernel(kernelName, "webgpu");
  }
}
