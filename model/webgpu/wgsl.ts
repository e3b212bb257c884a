/**
 * Pieces shared by the WGSL programs of this folder: the dispatch grid of a flat program, a
 * workgroup tree reduction and uniform fields.
 *
 * @module
 */

/**
 * Workgroup grid covering `groups` workgroups within the per-dimension limit (x first, then y).
 *
 * @param groups workgroups needed
 * @param max the device's `maxComputeWorkgroupsPerDimension`
 */
export function grid(groups: number, max: number): [number, number, number] {
  if (groups === 0) return [0, 1, 1]; // ceil(0 / 0) would make y NaN, which WebGPU rejects
  const x = Math.min(groups, max);
  return [x, Math.ceil(groups / x), 1];
}

/**
 * WGSL statements of a workgroup tree reduction of each of `arrs` (workgroup arrays of `threads`
 * entries, a power of two, indexed by the thread's `t`; reduced side by side in one loop) with
 * `op`: a barrier, then halving strides, each followed by a barrier; the results end in
 * `arr[0]`, the same pairing (hence the same float32 sums) whatever the caller.
 *
 * @param arrs workgroup array name(s)
 * @param op "max" or "+"
 * @param threads entries per array (the workgroup size)
 * @param index the type of `t`: `i32` (tfjs programs' `i32(localId.x)`) or `u32`
 *   (`local_invocation_index`)
 * @returns lines, indented for a function body
 */
export function reduceWgsl(
  arrs: string | readonly string[],
  op: "max" | "+",
  threads: number,
  index: "i32" | "u32" = "i32",
): string[] {
  const combine = (arr: string) =>
    op === "max" ? `max(${arr}[t], ${arr}[t + stride])` : `${arr}[t] + ${arr}[t + stride]`;
  const steps = (typeof arrs === "string" ? [arrs] : arrs).map((a) => `${a}[t] = ${combine(a)};`);
  const u = index === "u32" ? "u" : "";
  return [
    `  workgroupBarrier();`,
    `  for (var stride = ${threads / 2}${u}; stride > 0${u}; stride = stride >> 1u) {`,
    `    if (t < stride) { ${steps.join(" ")} }`,
    `    workgroupBarrier();`,
    `  }`,
  ];
}

/** A uniform field in tfjs's `makeUniforms` format (what programs' uniforms are given as). */
export interface UniformField {
  /** "float32", "int32" or "uint32". */
  readonly type: "float32" | "int32" | "uint32";
  /** One to four values. */
  readonly data: number[];
}

/** A float32 uniform. */
export function f32(v: number): UniformField {
  return { type: "float32", data: [v] };
}

/** An int32 uniform. */
export function i32(v: number): UniformField {
  return { type: "int32", data: [v] };
}

/** A uint32 uniform (`v` taken modulo 2³², as a hash key may need). */
export function u32(v: number): UniformField {
  return { type: "uint32", data: [v >>> 0] };
}
