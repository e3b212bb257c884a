/**
 * A tiled shared-memory WGSL matrix multiply for the tfjs `webgpu` backend that reads a
 * transposed operand directly.
 *
 * Why: tfjs-backend-webgpu 4.22's `BatchMatMul` only vectorises the untransposed case. With
 * `transposeB` (every T5 linear layer in HF orientation, `q·kᵀ`, and half of the backward pass) its
 * inner loads become strided scalar reads; on an H200 `[4096,3072]·[768,3072]ᵀ` ran at
 * 0.45 TFLOP/s against 5 TFLOP/s for an untransposed 4096³ (see `/work/shared/device/README.md`).
 *
 * How: each workgroup computes a `tileM × tileN` block of the output for one batch entry. Per step
 * of `tileK` along the shared dimension, all threads cooperatively copy an A tile and a B tile into
 * workgroup memory. Each thread loads elements that are consecutive in **memory** (along K when A
 * is untransposed, along M when A is transposed, and likewise for B), so global reads are coalesced
 * whatever the transpose flags, and writes them into a k-major layout (`[k][m]`, `[k][n]`, padded by
 * one vec4 per row against bank conflicts). The next tile is prefetched into registers while the
 * current one is multiplied. Each thread accumulates a `threadM × threadN` block (outer products of
 * vec4 fragments) in named registers; the shader text is generated with the loops unrolled.
 *
 * Products with a small output and a long K (weight gradients) can split K across workgroups
 * ({@link chooseSplit}): partial products, then one summing dispatch ({@link SplitKSumProgram}).
 *
 * The program plugs into tfjs's own pipeline (`backend.runWebGPUProgram`), so tensors, buffer reuse,
 * command batching and `tf.profile` timing work as for the built-in kernels.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import type { StridedMatMul } from "../heads.ts";
import { grid, i32 } from "./wgsl.ts";

/** Tile geometry of the custom matmul. Threads per workgroup = (tileM/threadM)·(tileN/threadN). */
export interface MatMulTile {
  /** Name used in shader keys, options and reports ("t128", "t64", "t32"). */
  readonly name: string;
  /** Output rows per workgroup. */
  readonly tileM: number;
  /** Output columns per workgroup. */
  readonly tileN: number;
  /** Shared-dimension step per workgroup-memory tile. */
  readonly tileK: number;
  /** Output rows per thread (multiple of 4). */
  readonly threadM: number;
  /** Output columns per thread (multiple of 4). */
  readonly threadN: number;
  /**
   * Read A and B from global memory as `vec4`s (four consecutive elements along each operand's
   * contiguous dimension) instead of scalars. Used only where that dimension, the row strides and
   * the batch offsets are multiples of 4 ({@link vec4Fits}); elsewhere the tile runs scalar loads.
   */
  readonly vec4?: boolean;
}

/** The tile configurations this module knows, largest first. */
export const MATMUL_TILES: readonly MatMulTile[] = [
  // 256 threads, 8×8 outputs each; workgroup memory 2·8·33·16 B = 8.4 KB.
  { name: "t128", tileM: 128, tileN: 128, tileK: 8, threadM: 8, threadN: 8 },
  // 256 threads, 4×4 outputs each; 2·16·17·16 B = 8.7 KB.
  { name: "t64", tileM: 64, tileN: 64, tileK: 16, threadM: 4, threadN: 4 },
  // 64 threads, 4×4 outputs each; 2·16·9·16 B = 4.6 KB (small outputs: more workgroups).
  { name: "t32", tileM: 32, tileN: 32, tileK: 16, threadM: 4, threadN: 4 },
];

/**
 * Further tile geometries that `auto` never picks: `benchmarks/gpu_check.ts` times them next to
 * {@link MATMUL_TILES} on the GPU machine, so that one session there can say whether a deeper K
 * step or a rectangular tile beats the defaults (they are tested on the software adapter like
 * the others). Each fits 16 KiB of workgroup memory, WebGPU's default limit, except the
 * deep-K ones at the end, which need up to 17.4 KB: tfjs asks for the adapter's own limit (48 KiB
 * on NVIDIA GPUs, 32 KiB on Mesa's software adapters), and `gpu_check` and the tuner
 * (`tuning.ts`) use a tile only where the device's limit allows it.
 */
export const MATMUL_TILE_CANDIDATES: readonly MatMulTile[] = [
  // 256 threads, 8×4 outputs each; 16·33·16 + 16·17·16 B = 12.8 KB.
  { name: "t128x64", tileM: 128, tileN: 64, tileK: 16, threadM: 8, threadN: 4 },
  // 256 threads, 4×8 outputs each; 12.8 KB.
  { name: "t64x128", tileM: 64, tileN: 128, tileK: 16, threadM: 4, threadN: 8 },
  // 256 threads, 4×4 outputs each, K step 24; 2·24·17·16 B = 13.1 KB.
  { name: "t64k24", tileM: 64, tileN: 64, tileK: 24, threadM: 4, threadN: 4 },
  // 128 threads, 8×8 outputs each over a 64×128 tile, K step 8; 8·17·16 + 8·33·16 B = 6.4 KB.
  { name: "t64x128t8", tileM: 64, tileN: 128, tileK: 8, threadM: 8, threadN: 8 },
  // t128 and t64 with vec4 global loads (a quarter of the load instructions).
  { name: "t128v4", tileM: 128, tileN: 128, tileK: 8, threadM: 8, threadN: 8, vec4: true },
  { name: "t64v4", tileM: 64, tileN: 64, tileK: 16, threadM: 4, threadN: 4, vec4: true },
  // Deep K steps (half or a quarter of the barriers per K): 16·16·66 B = 16.9 KB and
  // 16·32·34 B = 17.4 KB, over WebGPU's default 16 KiB.
  { name: "t128k16", tileM: 128, tileN: 128, tileK: 16, threadM: 8, threadN: 8 },
  { name: "t128v4k16", tileM: 128, tileN: 128, tileK: 16, threadM: 8, threadN: 8, vec4: true },
  { name: "t64v4k32", tileM: 64, tileN: 64, tileK: 32, threadM: 4, threadN: 4, vec4: true },
];

/** Name of a tile in {@link MATMUL_TILES} or {@link MATMUL_TILE_CANDIDATES}. */
export type MatMulTileName =
  | "t128"
  | "t64"
  | "t32"
  | "t128x64"
  | "t64x128"
  | "t64k24"
  | "t64x128t8"
  | "t128v4"
  | "t64v4"
  | "t128k16"
  | "t128v4k16"
  | "t64v4k32";

/** A tile name, or "auto" to choose per call among {@link MATMUL_TILES}. */
export type MatMulTileChoice = "auto" | MatMulTileName;

/** Bytes of workgroup memory a tile's shader declares (both padded operand tiles). */
export function tileWorkgroupBytes(t: MatMulTile): number {
  return 16 * t.tileK * (t.tileM / 4 + 1 + t.tileN / 4 + 1);
}

/**
 * Picks the tile for one product: the largest tile that still gives at least `minWorkgroups`
 * workgroups (big GPUs need many resident workgroups to be busy), else the smallest tile.
 *
 * @param batch number of independent products
 * @param m output rows
 * @param n output columns
 * @param minWorkgroups workgroup count below which a smaller tile is preferred
 * @returns one of {@link MATMUL_TILES}
 */
export function chooseTile(batch: number, m: number, n: number, minWorkgroups: number): MatMulTile {
  for (const t of MATMUL_TILES) {
    const groups = batch * Math.ceil(m / t.tileM) * Math.ceil(n / t.tileN);
    if (groups >= minWorkgroups) return t;
  }
  return MATMUL_TILES[MATMUL_TILES.length - 1]!;
}

/**
 * Looks a tile up by name.
 *
 * @param name a name from {@link MATMUL_TILES} or {@link MATMUL_TILE_CANDIDATES}
 * @returns the tile
 * @throws Error naming this file and the known names when `name` is unknown
 */
export function tileByName(name: string): MatMulTile {
  const all = [...MATMUL_TILES, ...MATMUL_TILE_CANDIDATES];
  const t = all.find((x) => x.name === name);
  if (t === undefined) {
    throw new Error(
      `model/webgpu/matmul_kernels.ts tileByName: unknown tile "${name}"; known: ${
        all.map((x) => x.name).join(", ")
      }`,
    );
  }
  return t;
}

function checkTile(t: MatMulTile): { wx: number; wy: number; threads: number } {
  const wx = t.tileN / t.threadN;
  const wy = t.tileM / t.threadM;
  const threads = wx * wy;
  const ok = t.threadM % 4 === 0 && t.threadN % 4 === 0 && Number.isInteger(wx) &&
    Number.isInteger(wy) && threads <= 256 && (t.tileM * t.tileK) % threads === 0 &&
    (t.tileN * t.tileK) % threads === 0 && t.tileK % 4 === 0 &&
    (!t.vec4 ||
      ((t.tileM * t.tileK) / threads % 4 === 0 && (t.tileN * t.tileK) / threads % 4 === 0));
  if (!ok) {
    throw new Error(`model/webgpu/matmul_kernels.ts: invalid tile ${JSON.stringify(t)}`);
  }
  return { wx, wy, threads };
}

/** How one operand (A or B) of the tiled matmul is loaded from memory into its workgroup tile. */
interface TileOperand {
  /** Global binding. */
  readonly buf: "A" | "B";
  /** Workgroup tile (`[k][outer]` vec4s) and its vec4s per k-row, padded. */
  readonly tile: "tileA" | "tileB";
  readonly stride: number;
  /** Tile extent along M (A) or N (B). */
  readonly tileOuter: number;
  /** Memory is contiguous along the outer dimension, i.e. the operand is stored `[k][outer]`. */
  readonly contiguousIsOuter: boolean;
  /** WGSL names of the outer extent, the operand's base offset and the tile's first outer index. */
  readonly outerDim: string;
  readonly base: string;
  readonly outerStart: string;
  /** WGSL row stride of a strided operand (else the dense one: the outer extent or `dimK`). */
  readonly rowStride?: string;
}

/** Loading geometry shared by both operands. */
interface TileLoads {
  readonly threads: number;
  readonly tileK: number;
  /** Elements per global load: 1 (scalar) or 4 (`vec4`, the binding is `array<vec4<f32>>`). */
  readonly width: 1 | 4;
  /** WGSL bound of the shared index: `dimK`, or `kEnd` (the end of this workgroup's K slice). */
  readonly kEnd: string;
}

/**
 * WGSL expressions for the (outer, k) position inside a tile of load `s` of this thread (its first
 * element for vec4 loads): consecutive threads walk the dimension that is contiguous in memory, so
 * loads coalesce.
 */
function tileCoords(op: TileOperand, g: TileLoads, s: number): { o: string; k: string } {
  const e = `(li + ${s * g.threads})`;
  const units = (op.contiguousIsOuter ? op.tileOuter : g.tileK) / g.width;
  const along = g.width === 1 ? `${e} % ${units}` : `(${e} % ${units}) * ${g.width}`;
  const across = `${e} / ${units}`;
  return op.contiguousIsOuter ? { o: along, k: across } : { o: across, k: along };
}

/**
 * Emits the statements that load load `s` of this thread (one element, or four consecutive along
 * the contiguous dimension) of one operand tile into register `reg`. With vec4 loads the base, row
 * stride and contiguous extent are multiples of 4, so a vec4 is all in bounds or all out.
 */
function loadSnippet(op: TileOperand, g: TileLoads, reg: string, s: number): string {
  const { o, k } = tileCoords(op, g, s);
  const addr = op.contiguousIsOuter
    ? `${op.base} + gk * ${op.rowStride ?? op.outerDim} + go`
    : `${op.base} + go * ${op.rowStride ?? "dimK"} + gk`;
  const [zero, read] = g.width === 1
    ? ["0.0", `${op.buf}[${addr}]`]
    : ["vec4<f32>(0.0)", `${op.buf}[(${addr}) / 4]`];
  return `{
      let go = ${op.outerStart} + ${o};
      let gk = k0 + ${k};
      ${reg} = ${zero};
      if (go < ${op.outerDim} && gk < ${g.kEnd}) { ${reg} = ${read}; }
    }`;
}

/**
 * Emits the statements that store register `reg` (load s of this thread) into the k-major tile:
 * one scalar, one vec4 (contiguous along the outer dimension), or four scalars down the k rows.
 */
function storeSnippet(op: TileOperand, g: TileLoads, reg: string, s: number): string {
  const { o, k } = tileCoords(op, g, s);
  const t = op.tile, st = op.stride;
  if (g.width === 1) return `{ let o = ${o}; ${t}[(${k}) * ${st} + o / 4][o % 4] = ${reg}; }`;
  if (op.contiguousIsOuter) return `${t}[(${k}) * ${st} + (${o}) / 4] = ${reg};`;
  const parts = ["x", "y", "z", "w"].map((c, i) =>
    `${t}[(${k} + ${i}) * ${st} + o / 4][o % 4] = ${reg}.${c};`
  );
  return `{ let o = ${o}; ${parts.join(" ")} }`;
}

/**
 * WGSL body (everything after tfjs's generated prelude) of the tiled matmul for one tile and pair
 * of transpose flags. Bindings come from the prelude: `result`, `A`, `B` (f32 arrays),
 * `uniforms.aShape`/`bShape` (rank-3 views) and the program uniforms `dimM`, `dimN`, `dimK`.
 *
 * With `strided`, A, B and the result are not dense `[batch, rows, cols]` arrays but strided
 * views (see `StridedLayout` in `model/heads.ts`): for batch entry z, operand X starts at
 * `(z / XHeads)·XS0 + (z % XHeads)·XS1` and its rows are `XLd` elements apart, with the uniforms
 * `aHeads, aS0, aS1, aLd`, `bHeads, …`, `oHeads, …`. This is how `HpHeadScores` and
 * `HpHeadContext` read and write `[batch, length, heads·dKv]` tensors one head at a time.
 *
 * With `splitK`, the shared dimension is cut into `uniforms.splits` slices of `uniforms.kChunk`
 * (a multiple of `tileK`): workgroup z covers batch entry `z / splits` over slice `z % splits` and
 * writes its partial product to entry z of a `[batch·splits, M, N]` result, which
 * {@link SplitKSumProgram} then sums. Products whose output is small and K long (the weight
 * gradients `dyᵀ·x`, K = tokens) otherwise run too few workgroups to fill a big GPU.
 *
 * @param tile tile geometry
 * @param transposeA A is stored `[batch, K, M]` instead of `[batch, M, K]`
 * @param transposeB B is stored `[batch, N, K]` instead of `[batch, K, N]`
 * @param strided operands and result are strided views
 * @param splitK each workgroup covers one slice of K and writes a partial product
 * @returns WGSL source defining `fn main()`
 */
export function tiledMatMulSource(
  tile: MatMulTile,
  transposeA: boolean,
  transposeB: boolean,
  strided = false,
  splitK = false,
): string {
  if (strided && splitK) {
    throw new Error("model/webgpu/matmul_kernels.ts: split-K is not implemented for strided views");
  }
  const { wx, wy, threads } = checkTile(tile);
  const { tileM, tileN, tileK, threadM, threadN } = tile;
  const strideA = tileM / 4 + 1; // vec4s per k-row of the A tile, padded
  const strideB = tileN / 4 + 1;
  const g: TileLoads = {
    threads,
    tileK,
    width: tile.vec4 ? 4 : 1,
    kEnd: splitK ? "kEnd" : "dimK",
  };
  const loadsA = (tileM * tileK) / threads / g.width;
  const loadsB = (tileN * tileK) / threads / g.width;
  const opA: TileOperand = {
    buf: "A",
    tile: "tileA",
    stride: strideA,
    tileOuter: tileM,
    contiguousIsOuter: transposeA,
    outerDim: "dimM",
    base: "baseA",
    outerStart: "m0",
    ...(strided ? { rowStride: "uniforms.aLd" } : {}),
  };
  const opB: TileOperand = {
    buf: "B",
    tile: "tileB",
    stride: strideB,
    tileOuter: tileN,
    contiguousIsOuter: !transposeB,
    outerDim: "dimN",
    base: "baseB",
    outerStart: "n0",
    ...(strided ? { rowStride: "uniforms.bLd" } : {}),
  };
  const fm = threadM / 4; // vec4 fragments of A per thread
  const fn = threadN / 4;
  const lines: string[] = [];
  lines.push(`var<workgroup> tileA : array<vec4<f32>, ${tileK * strideA}>;`);
  lines.push(`var<workgroup> tileB : array<vec4<f32>, ${tileK * strideB}>;`);
  lines.push(`fn main() {`);
  lines.push(`  let dimM = uniforms.dimM; let dimN = uniforms.dimN; let dimK = uniforms.dimK;`);
  lines.push(`  let li = i32(localIndex);`);
  lines.push(`  let lx = i32(localId.x); let ly = i32(localId.y);`);
  if (splitK) {
    lines.push(`  let batch = i32(workgroupId.z) / uniforms.splits;`);
    lines.push(`  let kBegin = (i32(workgroupId.z) % uniforms.splits) * uniforms.kChunk;`);
    lines.push(`  let kEnd = min(dimK, kBegin + uniforms.kChunk);`);
  } else {
    lines.push(`  let batch = i32(workgroupId.z);`);
  }
  lines.push(`  let m0 = i32(workgroupId.y) * ${tileM}; let n0 = i32(workgroupId.x) * ${tileN};`);
  if (strided) {
    for (const x of ["a", "b", "o"]) {
      const X = x === "o" ? "Out" : x.toUpperCase();
      lines.push(
        `  let base${X} = (batch / uniforms.${x}Heads) * uniforms.${x}S0 + ` +
          `(batch % uniforms.${x}Heads) * uniforms.${x}S1;`,
      );
    }
  } else {
    lines.push(
      `  let baseA = select(batch, 0, uniforms.aShape.x == 1) * uniforms.aShape.y * uniforms.aShape.z;`,
    );
    lines.push(
      `  let baseB = select(batch, 0, uniforms.bShape.x == 1) * uniforms.bShape.y * uniforms.bShape.z;`,
    );
  }
  for (let i = 0; i < threadM; i++) {
    for (let j = 0; j < fn; j++) lines.push(`  var acc${i}_${j} = vec4<f32>(0.0);`);
  }
  const zero = tile.vec4 ? "vec4<f32>(0.0)" : "0.0";
  for (let s = 0; s < loadsA; s++) lines.push(`  var ra${s} = ${zero};`);
  for (let s = 0; s < loadsB; s++) lines.push(`  var rb${s} = ${zero};`);
  const loadAll = (indent: string) => {
    for (let s = 0; s < loadsA; s++) lines.push(indent + loadSnippet(opA, g, `ra${s}`, s));
    for (let s = 0; s < loadsB; s++) lines.push(indent + loadSnippet(opB, g, `rb${s}`, s));
  };
  if (splitK) {
    lines.push(`  let numTiles = (kEnd - kBegin + ${tileK - 1}) / ${tileK};`);
    lines.push(`  var k0 = kBegin;`);
  } else {
    lines.push(`  let numTiles = (dimK + ${tileK - 1}) / ${tileK};`);
    lines.push(`  var k0 = 0;`);
  }
  loadAll("  ");
  lines.push(`  for (var t = 0; t < numTiles; t++) {`);
  for (let s = 0; s < loadsA; s++) lines.push("    " + storeSnippet(opA, g, `ra${s}`, s));
  for (let s = 0; s < loadsB; s++) lines.push("    " + storeSnippet(opB, g, `rb${s}`, s));
  lines.push(`    workgroupBarrier();`);
  lines.push(`    k0 = k0 + ${tileK};`);
  lines.push(`    if (t + 1 < numTiles) {`);
  loadAll("      ");
  lines.push(`    }`);
  lines.push(`    for (var k = 0; k < ${tileK}; k++) {`);
  for (let i = 0; i < fm; i++) {
    lines.push(`      let a${i} = tileA[k * ${strideA} + ly + ${i * wy}];`);
  }
  for (let j = 0; j < fn; j++) {
    lines.push(`      let b${j} = tileB[k * ${strideB} + lx + ${j * wx}];`);
  }
  const comp = ["x", "y", "z", "w"];
  for (let i = 0; i < fm; i++) {
    for (let c = 0; c < 4; c++) {
      const r = i * 4 + c;
      for (let j = 0; j < fn; j++) {
        lines.push(
          `      acc${r}_${j} = fma(vec4<f32>(a${i}.${comp[c]}), b${j}, acc${r}_${j});`,
        );
      }
    }
  }
  lines.push(`    }`);
  lines.push(`    workgroupBarrier();`);
  lines.push(`  }`);
  // Thread (lx, ly) owns rows (ly + i·wy)·4 + c and columns (lx + j·wx)·4 + d of the tile.
  lines.push(
    strided
      ? `  let outBase = baseOut;`
      : `  let outBase = ${splitK ? "i32(workgroupId.z)" : "batch"} * dimM * dimN;`,
  );
  for (let i = 0; i < fm; i++) {
    for (let c = 0; c < 4; c++) {
      const r = i * 4 + c;
      lines.push(`  {`);
      lines.push(`    let row = m0 + (ly + ${i * wy}) * 4 + ${c};`);
      lines.push(`    if (row < dimM) {`);
      for (let j = 0; j < fn; j++) {
        lines.push(`      {`);
        lines.push(`        let col = n0 + (lx + ${j * wx}) * 4;`);
        lines.push(`        let o = outBase + row * ${strided ? "uniforms.oLd" : "dimN"} + col;`);
        for (let d = 0; d < 4; d++) {
          lines.push(
            `        if (col + ${d} < dimN) { result[o + ${d}] = acc${r}_${j}.${comp[d]}; }`,
          );
        }
        lines.push(`      }`);
      }
      lines.push(`    }`);
      lines.push(`  }`);
    }
  }
  lines.push(`}`);
  return lines.join("\n");
}

/**
 * The tfjs-backend-webgpu `WebGPUProgram` shape this module fills in (declared here rather than
 * imported from the package's internal `dist/webgpu_program` path).
 */
export interface WebGpuProgramLike {
  /** Output shape (the program writes a rank-3 `[batch, M, N]` result). */
  outputShape: number[];
  /** Cache key prefix; tfjs appends ranks, dtypes and broadcast info. */
  shaderKey: string;
  /** Which output dimensions map to dispatch x, y, z (used by tfjs's prelude only). */
  dispatchLayout: { x: number[]; y?: number[]; z?: number[] };
  /** Workgroups per dispatch dimension. */
  dispatch: [number, number, number];
  /** Threads per workgroup. */
  workgroupSize: [number, number, number];
  /** Names of the input bindings, in order. */
  variableNames: string[];
  /** Extra uniform fields, WGSL struct syntax. */
  uniforms?: string;
  /** Returns the WGSL after the prelude. */
  getUserCode: () => string;
}

/**
 * One tiled matmul as a tfjs WebGPU program. The class name is what `tf.profile` reports for it.
 */
export class TiledMatMulProgram implements WebGpuProgramLike {
  /** @inheritdoc */
  outputShape: number[];
  /** @inheritdoc */
  shaderKey: string;
  /** @inheritdoc */
  dispatchLayout = { x: [2], y: [1], z: [0] };
  /** @inheritdoc */
  dispatch: [number, number, number];
  /** @inheritdoc */
  workgroupSize: [number, number, number];
  /** @inheritdoc */
  variableNames = ["A", "B"];
  /** @inheritdoc */
  uniforms = "dimM : i32, dimN : i32, dimK : i32,";
  /** `[4, 4]` when the tile loads vec4s (tfjs then binds A and B as `array<vec4<f32>>`). */
  variableComponents?: number[];
  private readonly tile: MatMulTile;
  private readonly transposeA: boolean;
  private readonly transposeB: boolean;
  private readonly splitK: boolean;

  /**
   * @param batch output batch (max of the operands' batches; the other is the same or 1)
   * @param m output rows
   * @param n output columns
   * @param tile tile geometry
   * @param transposeA A is stored `[batch, K, M]`
   * @param transposeB B is stored `[batch, N, K]`
   * @param splits K slices (1: the whole product; more: partial products `[batch·splits, M, N]`,
   *   with the uniforms `kChunk` and `splits` appended)
   */
  constructor(
    batch: number,
    m: number,
    n: number,
    tile: MatMulTile,
    transposeA: boolean,
    transposeB: boolean,
    splits = 1,
  ) {
    const { wx, wy } = checkTile(tile);
    this.tile = tile;
    this.transposeA = transposeA;
    this.transposeB = transposeB;
    this.splitK = splits > 1;
    this.outputShape = [batch * splits, m, n];
    this.workgroupSize = [wx, wy, 1];
    this.dispatch = [Math.ceil(n / tile.tileN), Math.ceil(m / tile.tileM), batch * splits];
    if (tile.vec4) this.variableComponents = [4, 4];
    if (this.splitK) this.uniforms += " kChunk : i32, splits : i32,";
    this.shaderKey =
      `hpTiledMatMul_${tile.name}_${tile.tileM}_${tile.tileN}_${tile.tileK}_${tile.threadM}_${tile.threadN}_${transposeA}_${transposeB}${
        tile.vec4 ? "_v4" : ""
      }${this.splitK ? "_splitk" : ""}`;
  }

  /** @inheritdoc */
  getUserCode(): string {
    return tiledMatMulSource(this.tile, this.transposeA, this.transposeB, false, this.splitK);
  }
}

/** Threads per workgroup of {@link SplitKSumProgram}. */
const SUM_THREADS = 256;

/**
 * Sums the `splits` partial products of a split-K matmul: output element `[b, r]` (r over the
 * `M·N` entries) is `Σ_s P[b·splits + s, r]`, added in slice order (deterministic).
 */
export class SplitKSumProgram implements WebGpuProgramLike {
  /** @inheritdoc */
  outputShape: number[];
  /** @inheritdoc */
  shaderKey = "hpSplitKSum";
  /** @inheritdoc */
  dispatchLayout = { x: [0] };
  /** @inheritdoc */
  dispatch: [number, number, number];
  /** @inheritdoc */
  workgroupSize: [number, number, number] = [SUM_THREADS, 1, 1];
  /** @inheritdoc */
  variableNames = ["P"];
  /** @inheritdoc */
  uniforms = "mn : i32, splits : i32,";
  /** tfjs adds the `size` uniform (element count). */
  size = true;

  /**
   * @param n output elements (`batch·M·N`)
   * @param maxDispatch the device's `maxComputeWorkgroupsPerDimension`
   */
  constructor(n: number, maxDispatch: number) {
    this.outputShape = [n];
    this.dispatch = grid(Math.ceil(n / SUM_THREADS), maxDispatch);
  }

  /** @inheritdoc */
  getUserCode(): string {
    return `
    fn main(index : i32) {
      if (index < uniforms.size) {
        let b = index / uniforms.mn;
        let base = (b * uniforms.splits) * uniforms.mn + (index - b * uniforms.mn);
        var s = 0.0;
        for (var j = 0; j < uniforms.splits; j = j + 1) {
          s = s + P[base + j * uniforms.mn];
        }
        result[index] = s;
      }
    }`;
  }
}

/** Shortest K slice {@link chooseSplit} makes (it keeps each workgroup's loop long). */
export const SPLIT_K_MIN_CHUNK = 256;
/** Most K slices {@link chooseSplit} makes. */
export const SPLIT_K_MAX = 16;

/**
 * The K slices a split-K product really runs: each slice `chunk` long (a multiple of `tileK`,
 * the last one shorter), as many as needed to cover K with at most `splits`, so none is empty.
 *
 * @param k shared dimension
 * @param splits slices asked for (≥ 1)
 * @param tileK the tile's K step
 * @returns the slice length and count (count 1: no split)
 */
export function splitPlan(k: number, splits: number, tileK: number): {
  chunk: number;
  splits: number;
} {
  const chunk = Math.ceil(Math.ceil(k / Math.max(1, splits)) / tileK) * tileK;
  return { chunk, splits: Math.max(1, Math.ceil(k / chunk)) };
}

/**
 * Picks the tile and the K split for one product. Products whose shared dimension is at least
 * twice their larger output dimension (weight gradients, K = tokens) and that the largest tile
 * would cover with fewer than `minWorkgroups` workgroups take the largest tile whose workgroups,
 * times a split of K into slices of at least {@link SPLIT_K_MIN_CHUNK} (at most
 * {@link SPLIT_K_MAX}), reach `minWorkgroups`, instead of smaller tiles; everything else is
 * {@link chooseTile}'s choice, unsplit.
 *
 * @param batch number of independent products
 * @param m output rows
 * @param n output columns
 * @param k shared dimension
 * @param minWorkgroups workgroup count to reach
 * @returns the tile and the number of K slices (1: no split)
 */
export function chooseSplit(
  batch: number,
  m: number,
  n: number,
  k: number,
  minWorkgroups: number,
): { tile: MatMulTile; splits: number } {
  if (k >= 2 * Math.max(m, n)) {
    const most = Math.min(SPLIT_K_MAX, Math.floor(k / SPLIT_K_MIN_CHUNK));
    for (const t of MATMUL_TILES) {
      const groups = batch * Math.ceil(m / t.tileM) * Math.ceil(n / t.tileN);
      if (groups >= minWorkgroups) return { tile: t, splits: 1 };
      const want = Math.min(most, Math.ceil(minWorkgroups / groups));
      const { splits } = splitPlan(k, want, t.tileK);
      if (splits > 1 && groups * splits >= minWorkgroups) return { tile: t, splits };
    }
  }
  return { tile: chooseTile(batch, m, n, minWorkgroups), splits: 1 };
}

/** The tiled matmul over strided views (`StridedLayout`, `model/heads.ts`); `tf.profile` reports this name. */
export class StridedMatMulProgram implements WebGpuProgramLike {
  /** @inheritdoc */
  outputShape: number[];
  /** @inheritdoc */
  shaderKey: string;
  /** @inheritdoc */
  dispatchLayout: { x: number[]; y: number[]; z: number[] };
  /** @inheritdoc */
  dispatch: [number, number, number];
  /** @inheritdoc */
  workgroupSize: [number, number, number];
  /** @inheritdoc */
  variableNames = ["A", "B"];
  /** @inheritdoc */
  uniforms = "dimM : i32, dimN : i32, dimK : i32, " +
    ["a", "b", "o"].map((x) => `${x}Heads : i32, ${x}S0 : i32, ${x}S1 : i32, ${x}Ld : i32,`)
      .join(" ");
  /** `[4, 4]` when the tile loads vec4s. */
  variableComponents?: number[];
  private readonly tile: MatMulTile;
  private readonly transposeA: boolean;
  private readonly transposeB: boolean;

  /**
   * @param spec the product
   * @param tile tile geometry
   */
  constructor(spec: StridedMatMul, tile: MatMulTile) {
    const { wx, wy } = checkTile(tile);
    this.tile = tile;
    this.transposeA = spec.transposeA;
    this.transposeB = spec.transposeB;
    this.outputShape = [...spec.outShape];
    const r = spec.outShape.length;
    this.dispatchLayout = { x: [r - 1], y: [r - 2], z: [...Array(r - 2).keys()] };
    this.workgroupSize = [wx, wy, 1];
    this.dispatch = [Math.ceil(spec.n / tile.tileN), Math.ceil(spec.m / tile.tileM), spec.batch];
    if (tile.vec4) this.variableComponents = [4, 4];
    this.shaderKey =
      `hpStridedMatMul_${tile.name}_${tile.tileM}_${tile.tileN}_${tile.tileK}_${tile.threadM}_${tile.threadN}_${spec.transposeA}_${spec.transposeB}${
        tile.vec4 ? "_v4" : ""
      }`;
  }

  /** @inheritdoc */
  getUserCode(): string {
    return tiledMatMulSource(this.tile, this.transposeA, this.transposeB, true);
  }
}

/**
 * Says why a strided product cannot run as one dispatch (undefined when it can): empty, too
 * many workgroups in a dimension, or an index past i32.
 *
 * @param spec the product
 * @param maxDispatch the device's `maxComputeWorkgroupsPerDimension`
 * @param sizes element counts of A, B and the result
 */
export function stridedDecline(
  spec: StridedMatMul,
  maxDispatch: number,
  sizes: readonly number[],
): MatMulDecline {
  const minTile = MATMUL_TILES[MATMUL_TILES.length - 1]!.tileM;
  if (spec.batch === 0 || spec.m === 0 || spec.n === 0 || spec.k === 0) return "empty operand";
  if (
    Math.ceil(spec.n / minTile) > maxDispatch || Math.ceil(spec.m / minTile) > maxDispatch ||
    spec.batch > maxDispatch
  ) {
    return "dispatch too large";
  }
  if (sizes.some((x) => x >= 2 ** 31)) return "index over i32";
  return undefined;
}

/**
 * Runs a strided product on the webgpu backend; the caller owns the returned tensor info.
 *
 * @param backend the tfjs webgpu backend
 * @param a A (float32, any shape holding the layout)
 * @param b B (float32)
 * @param spec the product and its layouts
 * @param tile tile geometry
 * @returns the result, shaped `spec.outShape`
 */
export function runStridedMatMul(
  backend: WebGpuBackendLike,
  a: tf.TensorInfo,
  b: tf.TensorInfo,
  spec: StridedMatMul,
  tile: MatMulTile,
): tf.TensorInfo {
  const contigA = spec.transposeA ? spec.m : spec.k;
  const contigB = spec.transposeB ? spec.k : spec.n;
  const fits = vec4Fits([
    contigA,
    contigB,
    ...[spec.a, spec.b].flatMap((l) => [l.s0, l.s1, l.ld]),
  ]);
  const program = new StridedMatMulProgram(spec, tile.vec4 && !fits ? scalarTile(tile) : tile);
  const ints = [spec.m, spec.n, spec.k];
  for (const l of [spec.a, spec.b, spec.out]) ints.push(l.heads, l.s0, l.s1, l.ld);
  return backend.runWebGPUProgram(
    program,
    [a, b],
    "float32",
    ints.map(i32),
  );
}

/**
 * Whether vec4 global loads are exact for a product: every contiguous extent, row stride and
 * batch offset given is a multiple of 4, so each vec4 is aligned and wholly in or out of bounds.
 *
 * @param extents the operands' contiguous dimensions, row strides and batch strides
 */
export function vec4Fits(extents: readonly number[]): boolean {
  return extents.every((x) => x % 4 === 0);
}

/**
 * The same tile with scalar loads (for products {@link vec4Fits} rejects), named
 * `<name>-scalar` so that stats and tuning reports say which kernel ran.
 */
export function scalarTile(tile: MatMulTile): MatMulTile {
  const { vec4: _, ...rest } = tile;
  return tile.vec4 ? { ...rest, name: `${tile.name}-scalar` } : rest;
}

/**
 * The tile a product runs with: `tile`, or its scalar-load twin ({@link scalarTile}) when it
 * has vec4 loads and the operands' row lengths are not multiples of 4 ({@link vec4Fits}).
 *
 * @param plan the product
 * @param tile the chosen tile
 * @returns the tile {@link runTiledMatMul} runs
 */
export function tileFor(plan: MatMulPlan, tile: MatMulTile): MatMulTile {
  return tile.vec4 && !vec4Fits([plan.a3[2]!, plan.b3[2]!]) ? scalarTile(tile) : tile;
}

/** The parts of tfjs's `WebGPUBackend` this module uses. */
export interface WebGpuBackendLike {
  /** The WebGPU device (for limits). */
  readonly device: GPUDevice;
  /** Compiles (cached) and records one program; returns the output tensor info. */
  runWebGPUProgram(
    program: WebGpuProgramLike,
    inputs: tf.TensorInfo[],
    outputDtype: tf.DataType,
    programUniforms?: { type: string; data: number[] }[],
  ): tf.TensorInfo;
  /** Drops one reference to a tensor's data. */
  disposeData(dataId: tf.DataId): boolean;
  /** Adds one reference to a tensor's data. */
  incRef(dataId: tf.DataId): void;
}

/**
 * `x` viewed with another shape of the same size, sharing its data (one more reference, released
 * with `backend.disposeData` like any kernel output). What tfjs's webgpu `Reshape` kernel returns,
 * without its registry lookup and implicit-shape inference, which cost host time on every
 * dispatch of the custom kernels.
 *
 * @param backend the webgpu backend
 * @param x the tensor
 * @param shape the new shape (no -1)
 * @throws Error when the sizes differ
 */
export function view(
  backend: WebGpuBackendLike,
  x: tf.TensorInfo,
  shape: readonly number[],
): tf.TensorInfo {
  let a = 1, b = 1;
  for (const d of x.shape) a *= d;
  for (const d of shape) b *= d;
  if (a !== b) {
    throw new Error(
      `model/webgpu/matmul_kernels.ts view: shape [${shape}] does not hold the ${a} elements of [${x.shape}]`,
    );
  }
  backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: [...shape], dtype: x.dtype };
}

/** Why a call was not taken by the custom kernel (undefined when it was). */
export type MatMulDecline = string | undefined;

/** The rank-3 plan of a `BatchMatMul` call, or why the custom kernel declines it. */
export interface MatMulPlan {
  /** Output batch. */
  readonly batch: number;
  /** Output rows. */
  readonly m: number;
  /** Output columns. */
  readonly n: number;
  /** Shared dimension. */
  readonly k: number;
  /** A viewed as rank 3 (its stored orientation). */
  readonly a3: number[];
  /** B viewed as rank 3 (its stored orientation). */
  readonly b3: number[];
  /** Final output shape (broadcast outer dims, M, N). */
  readonly outShape: number[];
}

function prod(xs: readonly number[]): number {
  let p = 1;
  for (const x of xs) p *= x;
  return p;
}

/**
 * Works out the rank-3 view of a `BatchMatMul` call, or says why the custom kernel should leave it
 * to the stock kernel: non-float32 dtypes, empty tensors, batch shapes other than equal or one side
 * of size 1, dispatch sizes over the device limit.
 *
 * @param aShape shape of A as given
 * @param bShape shape of B as given
 * @param transposeA A's last two dims are `[K, M]`
 * @param transposeB B's last two dims are `[N, K]`
 * @param maxDispatch the device's `maxComputeWorkgroupsPerDimension`
 * @param minTile the smallest tile's edge (bounds the dispatch size; default: that of
 *   {@link MATMUL_TILES}, the smallest tile any choice runs)
 * @returns the plan, or a string reason to decline
 */
export function planMatMul(
  aShape: readonly number[],
  bShape: readonly number[],
  transposeA: boolean,
  transposeB: boolean,
  maxDispatch: number,
  minTile: number = MATMUL_TILES[MATMUL_TILES.length - 1]!.tileM,
): MatMulPlan | string {
  const ra = aShape.length;
  const rb = bShape.length;
  if (ra < 2 || rb < 2) return "rank < 2";
  const aRows = aShape[ra - 2]!, aCols = aShape[ra - 1]!;
  const bRows = bShape[rb - 2]!, bCols = bShape[rb - 1]!;
  const m = transposeA ? aCols : aRows;
  const k = transposeA ? aRows : aCols;
  const kb = transposeB ? bCols : bRows;
  const n = transposeB ? bRows : bCols;
  if (k !== kb) return "inner dims differ (the stock kernel reports the error)";
  const outerA = aShape.slice(0, -2);
  const outerB = bShape.slice(0, -2);
  const batchA = prod(outerA);
  const batchB = prod(outerB);
  let outer: number[];
  try {
    outer = tf.broadcast_util.assertAndGetBroadcastShape(outerA, outerB);
  } catch {
    return "batch dims do not broadcast (the stock kernel reports the error)";
  }
  if (batchA !== 1 && batchB !== 1 && !(batchA === batchB && prod(outer) === batchA)) {
    return "batch dims neither equal nor one side 1";
  }
  const batch = Math.max(batchA, batchB);
  if (m === 0 || n === 0 || k === 0 || batch === 0) return "empty operand";
  if (
    Math.ceil(n / minTile) > maxDispatch || Math.ceil(m / minTile) > maxDispatch ||
    batch > maxDispatch
  ) {
    return "dispatch too large";
  }
  if (batch * m * n >= 2 ** 31 || batchA * aRows * aCols >= 2 ** 31) return "index over i32";
  if (batchB * bRows * bCols >= 2 ** 31) return "index over i32";
  return {
    batch,
    m,
    n,
    k,
    a3: [batchA, aRows, aCols],
    b3: [batchB, bRows, bCols],
    outShape: [...outer, m, n],
  };
}

/**
 * Runs the tiled matmul on the webgpu backend for tensor infos already on that backend. The caller
 * owns the returned tensor info.
 *
 * @param backend the tfjs webgpu backend
 * @param a A (float32)
 * @param b B (float32)
 * @param plan from {@link planMatMul}
 * @param transposeA A stored `[.., K, M]`
 * @param transposeB B stored `[.., N, K]`
 * @param tile tile geometry
 * @param splits K slices asked for (1: one dispatch; more: partial products, then
 *   {@link SplitKSumProgram}; rounded by {@link splitPlan}; check {@link splitFits} first)
 * @returns the product, shaped `plan.outShape`
 */
export function runTiledMatMul(
  backend: WebGpuBackendLike,
  a: tf.TensorInfo,
  b: tf.TensorInfo,
  plan: MatMulPlan,
  transposeA: boolean,
  transposeB: boolean,
  tile: MatMulTile,
  splits = 1,
): tf.TensorInfo {
  const rs = (x: tf.TensorInfo, shape: number[]) => view(backend, x, shape);
  const a3 = rs(a, plan.a3);
  const b3 = rs(b, plan.b3);
  const { chunk, splits: s } = splitPlan(plan.k, splits, tile.tileK);
  const program = new TiledMatMulProgram(
    plan.batch,
    plan.m,
    plan.n,
    tileFor(plan, tile),
    transposeA,
    transposeB,
    s,
  );
  const ints = s > 1 ? [plan.m, plan.n, plan.k, chunk, s] : [plan.m, plan.n, plan.k];
  let out3: tf.TensorInfo | undefined;
  let sum: tf.TensorInfo | undefined;
  try {
    out3 = backend.runWebGPUProgram(
      program,
      [a3, b3],
      "float32",
      ints.map(i32),
    );
    if (s > 1) {
      const mn = plan.m * plan.n;
      sum = backend.runWebGPUProgram(
        new SplitKSumProgram(
          plan.batch * mn,
          backend.device.limits.maxComputeWorkgroupsPerDimension,
        ),
        [out3],
        "float32",
        [i32(mn), i32(s)],
      );
    }
    return rs(sum ?? out3, plan.outShape);
  } finally {
    backend.disposeData(a3.dataId);
    backend.disposeData(b3.dataId);
    if (out3 !== undefined) backend.disposeData(out3.dataId);
    if (sum !== undefined) backend.disposeData(sum.dataId);
  }
}

/**
 * Whether a product may run split into `splits` K slices on this device: the partial products'
 * dispatch and size stay within the limits {@link planMatMul} checks for the whole product.
 *
 * @param plan the product
 * @param splits K slices (after {@link splitPlan})
 * @param maxDispatch the device's `maxComputeWorkgroupsPerDimension`
 */
export function splitFits(
  plan: Pick<MatMulPlan, "batch" | "m" | "n">,
  splits: number,
  maxDispatch: number,
): boolean {
  return plan.batch * splits <= maxDispatch && plan.batch * splits * plan.m * plan.n < 2 ** 31;
}
