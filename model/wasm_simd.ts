/**
 * WebAssembly SIMD kernels that run on the tfjs wasm backend's own heap.
 *
 * Why: plain JavaScript loops over the heap cost 5–20 ns per element in the V8 of Deno 2.9 on
 * these machines (a dropout hash 5.6 ns, gated GELU 18 ns, `Math.exp` 20–40 ns), and the stock
 * tfjs wasm `Exp` kernel 15 ns. The same loops as 128-bit wasm SIMD run 4 lanes at a time in
 * compiled code.
 *
 * How: the WebAssembly text of each kernel is generated here from one description per kernel
 * (the emitter {@link Emit} writes either the `f32x4`/`i32x4` form or the scalar `f32`/`i32` form,
 * so the main loop and the tail loop for the last `n mod 4` elements are the same arithmetic),
 * assembled at start-up with wabt (npm `wabt`, pinned), and instantiated with the tfjs wasm
 * module's `WebAssembly.Memory` as its imported memory: kernels read and write tensors in place
 * by their heap byte offsets, with no copies.
 *
 * Numerics: float32 throughout. `exp` is Cephes' `expf` (range reduction by ln 2 in two parts,
 * degree-6 polynomial, a few ulp), with IEEE overflow to +∞ and gradual underflow. GELU uses
 * `1 + tanh(u) = 2·sigmoid(2u)`, which has no cancellation for negative inputs; inside GELU the
 * exp argument is clamped to [−87.3, 88.3] so that `s²·e` in the gradient never meets 0·∞.
 *
 * @module
 */

import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";
import wabtInit from "wabt";

type Kind = "f" | "i";

/**
 * Emits WebAssembly text for one lane width: `vector` (v128 = 4 × f32/i32) or scalar. Every
 * method returns an s-expression string; {@link Emit.let} declares a local.
 */
class Emit {
  readonly locals = new Map<string, Kind>();
  /**
   * Vector constants, splatted once before the loop into locals `$k<n>` (V8 does not hoist a
   * splat out of a wasm loop; inline, each costs two instructions per use per iteration).
   */
  readonly constants = new Map<string, string>();
  constructor(readonly vector: boolean) {}
  private op(f: string, i?: string) {
    return this.vector ? f : i ?? f;
  }
  private constant(splat: string): string {
    let name = this.constants.get(splat);
    if (name === undefined) {
      name = `$k${this.constants.size}`;
      this.constants.set(splat, name);
    }
    return `(local.get ${name})`;
  }
  /** A float constant. */
  f(c: number): string {
    const lit = `(f32.const ${Number.isFinite(c) ? c.toPrecision(9) : c})`;
    return this.vector ? this.constant(`(f32x4.splat ${lit})`) : lit;
  }
  /** An integer constant (u32 or i32). */
  i(c: number): string {
    const lit = `(i32.const ${c | 0})`;
    return this.vector ? this.constant(`(i32x4.splat ${lit})`) : lit;
  }
  /** A float parameter of the function (splatted once before the vector loop). */
  pf(name: string): string {
    return this.vector ? `(local.get $${name}_v)` : `(local.get $${name})`;
  }
  /** An integer parameter of the function (splatted once before the vector loop). */
  pi(name: string): string {
    return this.vector ? `(local.get $${name}_v)` : `(local.get $${name})`;
  }
  add(a: string, b: string) {
    return `(${this.vector ? "f32x4" : "f32"}.add ${a} ${b})`;
  }
  sub(a: string, b: string) {
    return `(${this.vector ? "f32x4" : "f32"}.sub ${a} ${b})`;
  }
  mul(a: string, b: string) {
    return `(${this.vector ? "f32x4" : "f32"}.mul ${a} ${b})`;
  }
  div(a: string, b: string) {
    return `(${this.vector ? "f32x4" : "f32"}.div ${a} ${b})`;
  }
  sqrt(a: string) {
    return `(${this.vector ? "f32x4" : "f32"}.sqrt ${a})`;
  }
  /**
   * `a < b ? b : a` (vector: `f32x4.pmax`, one `maxps`; the NaN-propagating `f32x4.max` costs
   * several instructions on x86). A NaN `a` passes through.
   */
  pmax(a: string, b: string) {
    return `(${this.vector ? "f32x4.pmax" : "f32.max"} ${a} ${b})`;
  }
  /** `b < a ? b : a` (vector: `f32x4.pmin`). A NaN `a` passes through. */
  pmin(a: string, b: string) {
    return `(${this.vector ? "f32x4.pmin" : "f32.min"} ${a} ${b})`;
  }
  /** Float bits as int. */
  fBits(a: string) {
    return this.vector ? a : `(i32.reinterpret_f32 ${a})`;
  }
  /** Reinterpret int bits as float. */
  bitsToF(a: string) {
    return this.vector ? a : `(f32.reinterpret_i32 ${a})`;
  }
  iadd(a: string, b: string) {
    return `(${this.op("i32x4.add", "i32.add")} ${a} ${b})`;
  }
  isub(a: string, b: string) {
    return `(${this.op("i32x4.sub", "i32.sub")} ${a} ${b})`;
  }
  shrS(a: string, k: number) {
    return `(${this.op("i32x4.shr_s", "i32.shr_s")} ${a} (i32.const ${k}))`;
  }
  imul(a: string, b: string) {
    return `(${this.op("i32x4.mul", "i32.mul")} ${a} ${b})`;
  }
  xor(a: string, b: string) {
    return `(${this.op("v128.xor", "i32.xor")} ${a} ${b})`;
  }
  shl(a: string, k: number) {
    return `(${this.op("i32x4.shl", "i32.shl")} ${a} (i32.const ${k}))`;
  }
  shrU(a: string, k: number) {
    return `(${this.op("i32x4.shr_u", "i32.shr_u")} ${a} (i32.const ${k}))`;
  }
  /** `cond ? a : b` per lane, cond from {@link geU}. */
  select(cond: string, a: string, b: string) {
    return this.vector ? `(v128.bitselect ${a} ${b} ${cond})` : `(select ${a} ${b} ${cond})`;
  }
  /** Unsigned a ≥ b (a lane mask, or 0/1). */
  geU(a: string, b: string) {
    return `(${this.op("i32x4.ge_u", "i32.ge_u")} ${a} ${b})`;
  }
  /** Element `i` (+ lane) of a float array at heap byte offset `$ptr`. */
  load(ptr: string) {
    return `(${this.op("v128.load", "f32.load")} ${addr(ptr)})`;
  }
  /** Store to element `i` of a float array. */
  store(ptr: string, value: string) {
    return `(${this.op("v128.store", "f32.store")} ${addr(ptr)} ${value})`;
  }
  /** The element index (per lane) plus a parameter offset. */
  index(offsetParam: string): string {
    const base = `(i32.add (local.get $${offsetParam}) (local.get $i))`;
    return this.vector ? `(i32x4.add (i32x4.splat ${base}) (v128.const i32x4 0 1 2 3))` : base;
  }
  /** Declares local `name` (float or int) set to `value`; returns the statement. */
  let(name: string, kind: Kind, value: string): string {
    this.locals.set(name, kind);
    return `(local.set $${name} ${value})`;
  }
  get(name: string): string {
    return `(local.get $${name})`;
  }
  /** Local declarations of this lane width (suffixed so both widths coexist). */
  declarations(suffix: string): string {
    return [...this.locals].map(([n, k]) =>
      `(local $${n}${suffix} ${this.vector ? "v128" : k === "f" ? "f32" : "i32"})`
    ).join(" ");
  }
}

function addr(ptr: string): string {
  return `(i32.add (local.get $${ptr}) (i32.shl (local.get $i) (i32.const 2)))`;
}

/**
 * Cephes expf. `clamp` bounds the argument first: [−104, 89] keeps IEEE behaviour (overflow to
 * +∞ above 88.72, denormals and then 0 below −87.3: the scale 2^k is applied as two factors
 * 2^⌊k/2⌋ · 2^(k−⌊k/2⌋), each a normal float); [−87.3, 88.3] keeps results normal and finite.
 */
function expOf(
  e: Emit,
  x: string,
  tag: string,
  clamp: readonly [number, number],
): { code: string[]; value: string } {
  // Clamp (pmax/pmin keep a NaN input), then k = round(x·log2 e) by the 1.5·2²³ trick: adding it
  // rounds to an integer in float32 and leaves the integer in the low mantissa bits, so k as a
  // float is j − M and as an int bits(j) − bits(M) (no float→int conversion instructions).
  const c = e.pmin(e.pmax(x, e.f(clamp[0])), e.f(clamp[1]));
  const code = [
    e.let(`${tag}x`, "f", c),
    e.let(`${tag}j`, "f", e.add(e.mul(e.get(`${tag}x`), e.f(Math.LOG2E)), e.f(ROUND_MAGIC))),
    e.let(`${tag}k`, "f", e.sub(e.get(`${tag}j`), e.f(ROUND_MAGIC))),
    e.let(
      `${tag}r`,
      "f",
      e.sub(
        e.sub(e.get(`${tag}x`), e.mul(e.get(`${tag}k`), e.f(0.693359375))),
        e.mul(e.get(`${tag}k`), e.f(-2.12194440e-4)),
      ),
    ),
  ];
  const r = e.get(`${tag}r`);
  let p = e.f(1.9875691500e-4);
  for (
    const k of [1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1]
  ) {
    p = e.add(e.mul(p, r), e.f(k));
  }
  code.push(e.let(`${tag}p`, "f", e.add(e.add(e.mul(e.mul(p, r), r), r), e.f(1))));
  code.push(e.let(`${tag}i`, "i", e.isub(e.fBits(e.get(`${tag}j`)), e.i(ROUND_MAGIC_BITS))));
  code.push(e.let(`${tag}h`, "i", e.shrS(e.get(`${tag}i`), 1)));
  const pow2 = (k: string) => e.bitsToF(e.shl(e.iadd(k, e.i(127)), 23));
  return {
    code,
    value: e.mul(
      e.mul(e.get(`${tag}p`), pow2(e.get(`${tag}h`))),
      pow2(e.isub(e.get(`${tag}i`), e.get(`${tag}h`))),
    ),
  };
}

/** 1.5·2²³: float32 values in [2²³, 2²⁴) have unit spacing, so adding it rounds to an integer. */
const ROUND_MAGIC = 12582912;
/** Its float32 bit pattern. */
const ROUND_MAGIC_BITS = 0x4b400000;

/** Argument range of the general exp kernel (IEEE overflow and underflow). */
const EXP_IEEE: readonly [number, number] = [-104, 89];
/** Argument range inside GELU (finite, normal results; see geluParts). */
const EXP_FINITE: readonly [number, number] = [-87.3, 88.3];

const GELU_C = Math.sqrt(2 / Math.PI);
const GELU_K = 0.044715;

/** s = sigmoid(2u) and e = exp(−2u) for u = √(2/π)(x + 0.044715x³). */
function geluParts(e: Emit, x: string): string[] {
  const u = e.mul(e.f(GELU_C), e.add(x, e.mul(e.f(GELU_K), e.mul(e.mul(x, x), x))));
  const ex = expOf(e, e.mul(e.f(-2), u), "g", EXP_FINITE);
  return [
    ...ex.code,
    e.let("ge", "f", ex.value),
    e.let("gs", "f", e.div(e.f(1), e.add(e.f(1), e.get("ge")))),
  ];
}

/** The dropout hash of the element index into local `h` (see `model/fused.ts`). */
function dropoutHash(e: Emit): string[] {
  const mix = (h: string) => [
    e.let("h", "i", e.xor(h, e.shrU(h, 16))),
    e.let("h", "i", e.imul(e.get("h"), e.i(0x85ebca6b))),
    e.let("h", "i", e.xor(e.get("h"), e.shrU(e.get("h"), 13))),
    e.let("h", "i", e.imul(e.get("h"), e.i(0xc2b2ae35))),
    e.let("h", "i", e.xor(e.get("h"), e.shrU(e.get("h"), 16))),
  ];
  return [
    e.let("h0", "i", e.xor(e.index("offset"), e.pi("key0"))),
    ...mix(e.get("h0")),
    e.let("h0", "i", e.xor(e.get("h"), e.pi("key1"))),
    ...mix(e.get("h0")),
  ];
}

/** `scale` where the hash `h` is ≥ `threshold` (unsigned), else 0. */
function maskValue(e: Emit): string {
  return e.vector
    ? `(v128.and ${e.geU(e.get("h"), e.pi("threshold"))} ${e.pf("scale")})`
    : e.select(e.geU(e.get("h"), e.pi("threshold")), e.pf("scale"), e.f(0));
}

/** One kernel: parameters (pointers, the length `n`, scalars) and a per-element body. */
interface KernelSpec {
  readonly name: string;
  /** Heap byte offsets of float32 arrays. */
  readonly ptrs: readonly string[];
  /** Scalar float parameters. */
  readonly floats?: readonly string[];
  /** Scalar int parameters. */
  readonly ints?: readonly string[];
  readonly body: (e: Emit) => string[];
}

const KERNELS: readonly KernelSpec[] = [
  {
    // Dropout mask: scale where fmix32(fmix32(i ^ key0) ^ key1) >= threshold (u32), else 0.
    name: "dropout_mask",
    ptrs: ["out"],
    ints: ["offset", "key0", "key1", "threshold"],
    floats: ["scale"],
    body: (e) => [...dropoutHash(e), e.store("out", maskValue(e))],
  },
  {
    // Dropout applied: out = x * mask (the same float32 product as x times the mask tensor).
    name: "dropout_apply",
    ptrs: ["out", "x"],
    ints: ["offset", "key0", "key1", "threshold"],
    floats: ["scale"],
    body: (e) => [...dropoutHash(e), e.store("out", e.mul(e.load("x"), maskValue(e)))],
  },
  {
    // out = gelu_new(a) * b = a * sigmoid(2u) * b.
    name: "gated_gelu",
    ptrs: ["out", "a", "b"],
    body: (e) => [
      e.let("x", "f", e.load("a")),
      ...geluParts(e, e.get("x")),
      e.store("out", e.mul(e.mul(e.get("x"), e.get("gs")), e.load("b"))),
    ],
  },
  {
    // da = dy * b * gelu'(a), db = dy * gelu(a); gelu'(x) = s + x * s(1-s) * 2u'(x), 1-s = e*s.
    name: "gated_gelu_grad",
    ptrs: ["da", "db", "a", "b", "dy"],
    body: (e) => [
      e.let("x", "f", e.load("a")),
      ...geluParts(e, e.get("x")),
      e.let("d", "f", e.load("dy")),
      e.let(
        "dg",
        "f",
        e.add(
          e.get("gs"),
          e.mul(
            e.mul(e.get("x"), e.mul(e.mul(e.get("gs"), e.get("gs")), e.get("ge"))),
            e.mul(
              e.f(2 * GELU_C),
              e.add(e.f(1), e.mul(e.f(3 * GELU_K), e.mul(e.get("x"), e.get("x")))),
            ),
          ),
        ),
      ),
      e.store("da", e.mul(e.mul(e.get("d"), e.load("b")), e.get("dg"))),
      e.store("db", e.mul(e.get("d"), e.mul(e.get("x"), e.get("gs")))),
    ],
  },
  {
    name: "exp",
    ptrs: ["out", "x"],
    body: (e) => {
      const ex = expOf(e, e.load("x"), "e", EXP_IEEE);
      return [...ex.code, e.store("out", ex.value)];
    },
  },
  {
    // Softmax cross-entropy gradient rows: out = a·exp(x − shift) − b.
    name: "exp_affine",
    ptrs: ["out", "x"],
    floats: ["shift", "a", "b"],
    body: (e) => {
      const ex = expOf(e, e.sub(e.load("x"), e.pf("shift")), "e", EXP_IEEE);
      return [...ex.code, e.store("out", e.sub(e.mul(e.pf("a"), ex.value), e.pf("b")))];
    },
  },
  {
    // AdamW (PyTorch form), in place: m, v moments; p ← p·decay − step·m / (√v·invSqrtBc2 + eps).
    name: "adamw",
    ptrs: ["p", "m", "v", "g"],
    floats: ["b1", "c1", "b2", "c2", "decay", "step", "invsqrtbc2", "eps"],
    body: (e) => [
      e.let("gr", "f", e.load("g")),
      e.let("mm", "f", e.add(e.mul(e.pf("b1"), e.load("m")), e.mul(e.pf("c1"), e.get("gr")))),
      e.let(
        "vv",
        "f",
        e.add(
          e.mul(e.pf("b2"), e.load("v")),
          e.mul(e.pf("c2"), e.mul(e.get("gr"), e.get("gr"))),
        ),
      ),
      e.store("m", e.get("mm")),
      e.store("v", e.get("vv")),
      e.store(
        "p",
        e.sub(
          e.mul(e.load("p"), e.pf("decay")),
          e.div(
            e.mul(e.pf("step"), e.get("mm")),
            e.add(e.mul(e.sqrt(e.get("vv")), e.pf("invsqrtbc2")), e.pf("eps")),
          ),
        ),
      ),
    ],
  },
  {
    // dst += src (gradient accumulation).
    name: "add_into",
    ptrs: ["dst", "src"],
    body: (e) => [e.store("dst", e.add(e.load("dst"), e.load("src")))],
  },
];

function kernelWat(k: KernelSpec): string {
  const ve = new Emit(true);
  const se = new Emit(false);
  const vbody = k.body(ve).join("\n      ");
  const sbody = k.body(se).join("\n      ");
  const rename = (code: string, locals: Map<string, Kind>, suffix: string) => {
    let out = code;
    for (const n of locals.keys()) {
      out = out.replaceAll(new RegExp(`\\$${n}(?![A-Za-z0-9_])`, "g"), `$${n}${suffix}`);
    }
    return out;
  };
  const floats = k.floats ?? [];
  const ints = k.ints ?? [];
  const params = [
    ...k.ptrs.map((p) => `(param $${p} i32)`),
    "(param $n i32)",
    ...ints.map((p) => `(param $${p} i32)`),
    ...floats.map((p) => `(param $${p} f32)`),
  ].join(" ");
  const splats = [
    ...ints.map((p) => `(local.set $${p}_v (i32x4.splat (local.get $${p})))`),
    ...floats.map((p) => `(local.set $${p}_v (f32x4.splat (local.get $${p})))`),
  ].join("\n    ");
  const splatLocals = [...ints, ...floats].map((p) => `(local $${p}_v v128)`).join(" ");
  const constLocals = [...ve.constants.values()].map((n) => `(local ${n} v128)`).join(" ");
  const constSets = [...ve.constants].map(([splat, n]) => `(local.set ${n} ${splat})`).join(
    "\n    ",
  );
  return `
  (func (export "${k.name}") ${params}
    (local $i i32) (local $end4 i32) ${splatLocals} ${constLocals}
    ${ve.declarations("_v")} ${se.declarations("_s")}
    ${splats}
    ${constSets}
    (local.set $end4 (i32.and (local.get $n) (i32.const -4)))
    (block $vdone (loop $vloop
      (br_if $vdone (i32.ge_u (local.get $i) (local.get $end4)))
      ${rename(vbody, ve.locals, "_v")}
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $vloop)))
    (block $sdone (loop $sloop
      (br_if $sdone (i32.ge_u (local.get $i) (local.get $n)))
      ${rename(sbody, se.locals, "_s")}
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $sloop))))`;
}

/**
 * `row_stats(x, n, out)`: for one row of `n` floats writes `out[0] = max(x)`,
 * `out[1] = Σ exp(x − max)` and `out[2] = Σ x`, the statistics of a softmax cross-entropy
 * (log-sum-exp = max + log out[1]; the caller takes the log). The max skips NaNs (one `maxps`
 * per vector instead of NaN-propagating code); a NaN in the row shows in `out[2]`.
 */
function rowStatsWat(): string {
  const ve = new Emit(true);
  const se = new Emit(false);
  const vexp = expOf(ve, `(f32x4.sub (v128.load ${addr("x")}) (local.get $mvec))`, "v", EXP_IEEE);
  const sexp = expOf(se, `(f32.sub (f32.load ${addr("x")}) (local.get $rmax))`, "s", EXP_IEEE);
  const constLocals = [...ve.constants.values()].map((n) => `(local ${n} v128)`).join(" ");
  const constSets = [...ve.constants].map(([splat, n]) => `(local.set ${n} ${splat})`).join(" ");
  const loop = (label: string, step: number, end: string, body: string) => `
    (local.set $i (i32.const 0))
    ${label === "t" ? "(local.set $i (local.get $end4))" : ""}
    (block $${label}done (loop $${label}loop
      (br_if $${label}done (i32.ge_u (local.get $i) ${end}))
      ${body}
      (local.set $i (i32.add (local.get $i) (i32.const ${step})))
      (br $${label}loop)))`;
  const lane = (v: string, k: number) => `(f32x4.extract_lane ${k} ${v})`;
  return `
  (func (export "row_stats") (param $x i32) (param $n i32) (param $out i32)
    (local $i i32) (local $end4 i32) (local $acc v128) (local $sum v128) (local $v v128)
    (local $rmax f32) (local $sumx f32) (local $sume f32) (local $fv f32) (local $mvec v128)
    ${constLocals} ${ve.declarations("")} ${se.declarations("")}
    ${constSets}
    (local.set $end4 (i32.and (local.get $n) (i32.const -4)))
    (local.set $acc (f32x4.splat (f32.const -inf)))
    (local.set $sum (v128.const f32x4 0 0 0 0))
    (local.set $rmax (f32.const -inf))
    ${
    loop(
      "a",
      4,
      "(local.get $end4)",
      `(local.set $v (v128.load ${addr("x")}))
      (local.set $acc (f32x4.pmax (local.get $acc) (local.get $v)))
      (local.set $sum (f32x4.add (local.get $sum) (local.get $v)))`,
    )
  }
    ${
    loop(
      "t",
      1,
      "(local.get $n)",
      `(local.set $fv (f32.load ${addr("x")}))
      (local.set $rmax (f32.max (local.get $rmax) (local.get $fv)))
      (local.set $sumx (f32.add (local.get $sumx) (local.get $fv)))`,
    )
  }
    (local.set $rmax (f32.max (local.get $rmax) (f32.max (f32.max ${lane("(local.get $acc)", 0)}
      ${lane("(local.get $acc)", 1)}) (f32.max ${lane("(local.get $acc)", 2)} ${
    lane("(local.get $acc)", 3)
  }))))
    (local.set $sumx (f32.add (local.get $sumx) ${hsum("(local.get $sum)")}))
    (local.set $mvec (f32x4.splat (local.get $rmax)))
    (local.set $sum (v128.const f32x4 0 0 0 0))
    ${
    loop(
      "b",
      4,
      "(local.get $end4)",
      `${vexp.code.join(" ")}
      (local.set $sum (f32x4.add (local.get $sum) ${vexp.value}))`,
    )
  }
    ${
    loop(
      "u",
      1,
      "(local.get $n)",
      `${sexp.code.join(" ")}
      (local.set $sume (f32.add (local.get $sume) ${sexp.value}))`,
    ).replace("(local.set $i (i32.const 0))", "(local.set $i (local.get $end4))")
  }
    (local.set $sume (f32.add (local.get $sume) ${hsum("(local.get $sum)")}))
    (f32.store (local.get $out) (local.get $rmax))
    (f32.store (i32.add (local.get $out) (i32.const 4)) (local.get $sume))
    (f32.store (i32.add (local.get $out) (i32.const 8)) (local.get $sumx)))`;
}

/** Sum of the four lanes of a v128 of f32. */
function hsum(v: string): string {
  return `(f32.add (f32.add (f32x4.extract_lane 0 ${v}) (f32x4.extract_lane 1 ${v})) ` +
    `(f32.add (f32x4.extract_lane 2 ${v}) (f32x4.extract_lane 3 ${v})))`;
}

/**
 * T5's RMS norm over rows of `d` floats (`d` a multiple of 4), forward and backward:
 * `y = x·r·w` with `r = 1/√(mean(x²) + eps)`; `dx = r·w·dy − x·r³·Σ(dy·w·x)/d`,
 * `dw += Σ_rows dy·x·r` (the caller zeroes `dw`).
 */
const RMS_NORM_WAT = `
  (func (export "rms_norm") (param $out i32) (param $x i32) (param $w i32) (param $rows i32)
    (param $d i32) (param $eps f32)
    (local $r i32) (local $j i32) (local $bytes i32) (local $acc v128) (local $v v128)
    (local $s v128)
    (local.set $bytes (i32.shl (local.get $d) (i32.const 2)))
    (block $rdone (loop $rloop
      (br_if $rdone (i32.ge_u (local.get $r) (local.get $rows)))
      (local.set $acc (v128.const f32x4 0 0 0 0))
      (local.set $j (i32.const 0))
      (block $d1 (loop $l1
        (br_if $d1 (i32.ge_u (local.get $j) (local.get $bytes)))
        (local.set $v (v128.load (i32.add (local.get $x) (local.get $j))))
        (local.set $acc (f32x4.add (local.get $acc) (f32x4.mul (local.get $v) (local.get $v))))
        (local.set $j (i32.add (local.get $j) (i32.const 16)))
        (br $l1)))
      (local.set $s (f32x4.splat (f32.div (f32.const 1) (f32.sqrt (f32.add
        (f32.div ${hsum("(local.get $acc)")} (f32.convert_i32_u (local.get $d)))
        (local.get $eps))))))
      (local.set $j (i32.const 0))
      (block $d2 (loop $l2
        (br_if $d2 (i32.ge_u (local.get $j) (local.get $bytes)))
        (v128.store (i32.add (local.get $out) (local.get $j))
          (f32x4.mul (f32x4.mul (v128.load (i32.add (local.get $x) (local.get $j))) (local.get $s))
            (v128.load (i32.add (local.get $w) (local.get $j)))))
        (local.set $j (i32.add (local.get $j) (i32.const 16)))
        (br $l2)))
      (local.set $x (i32.add (local.get $x) (local.get $bytes)))
      (local.set $out (i32.add (local.get $out) (local.get $bytes)))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br $rloop))))
  (func (export "rms_norm_grad") (param $dx i32) (param $dw i32) (param $x i32) (param $w i32)
    (param $dy i32) (param $rows i32) (param $d i32) (param $eps f32)
    (local $r i32) (local $j i32) (local $bytes i32) (local $sq v128) (local $dot v128)
    (local $v v128) (local $g v128) (local $rs f32) (local $rv v128) (local $c v128)
    (local.set $bytes (i32.shl (local.get $d) (i32.const 2)))
    (block $rdone (loop $rloop
      (br_if $rdone (i32.ge_u (local.get $r) (local.get $rows)))
      (local.set $sq (v128.const f32x4 0 0 0 0))
      (local.set $dot (v128.const f32x4 0 0 0 0))
      (local.set $j (i32.const 0))
      (block $d1 (loop $l1
        (br_if $d1 (i32.ge_u (local.get $j) (local.get $bytes)))
        (local.set $v (v128.load (i32.add (local.get $x) (local.get $j))))
        (local.set $sq (f32x4.add (local.get $sq) (f32x4.mul (local.get $v) (local.get $v))))
        (local.set $dot (f32x4.add (local.get $dot) (f32x4.mul (local.get $v)
          (f32x4.mul (v128.load (i32.add (local.get $dy) (local.get $j)))
            (v128.load (i32.add (local.get $w) (local.get $j)))))))
        (local.set $j (i32.add (local.get $j) (i32.const 16)))
        (br $l1)))
      (local.set $rs (f32.div (f32.const 1) (f32.sqrt (f32.add
        (f32.div ${hsum("(local.get $sq)")} (f32.convert_i32_u (local.get $d)))
        (local.get $eps)))))
      (local.set $rv (f32x4.splat (local.get $rs)))
      (local.set $c (f32x4.splat (f32.div
        (f32.mul (f32.mul (local.get $rs) (f32.mul (local.get $rs) (local.get $rs)))
          ${hsum("(local.get $dot)")})
        (f32.convert_i32_u (local.get $d)))))
      (local.set $j (i32.const 0))
      (block $d2 (loop $l2
        (br_if $d2 (i32.ge_u (local.get $j) (local.get $bytes)))
        (local.set $v (v128.load (i32.add (local.get $x) (local.get $j))))
        (local.set $g (v128.load (i32.add (local.get $dy) (local.get $j))))
        (v128.store (i32.add (local.get $dx) (local.get $j))
          (f32x4.sub
            (f32x4.mul (f32x4.mul (local.get $rv) (v128.load (i32.add (local.get $w) (local.get $j))))
              (local.get $g))
            (f32x4.mul (local.get $v) (local.get $c))))
        (v128.store (i32.add (local.get $dw) (local.get $j))
          (f32x4.add (v128.load (i32.add (local.get $dw) (local.get $j)))
            (f32x4.mul (f32x4.mul (local.get $g) (local.get $v)) (local.get $rv))))
        (local.set $j (i32.add (local.get $j) (i32.const 16)))
        (br $l2)))
      (local.set $x (i32.add (local.get $x) (local.get $bytes)))
      (local.set $dy (i32.add (local.get $dy) (local.get $bytes)))
      (local.set $dx (i32.add (local.get $dx) (local.get $bytes)))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br $rloop))))`;

/**
 * Adafactor on a `[rows, cols]` parameter (`cols` a multiple of 4), in three passes:
 * `sq_sums` writes `rowOut[r] = Σ_c (g² + eps1)` and adds `Σ_r (g² + eps1)` into `colOut[c]`;
 * `scaled_row_sumsq` writes `out[r] = Σ_c (g·cf[c])²` (the caller multiplies by rf[r]² and adds
 * the rows in double precision); `factored_update` sets `p ← p·decay − g·rf[r]·cf[c]·scale`.
 */
const ADAFACTOR_WAT = `
  (func (export "sq_sums") (param $g i32) (param $rows i32) (param $cols i32) (param $eps1 f32)
    (param $rowOut i32) (param $colOut i32)
    (local $r i32) (local $j i32) (local $bytes i32) (local $acc v128) (local $v v128)
    (local $e v128)
    (local.set $bytes (i32.shl (local.get $cols) (i32.const 2)))
    (local.set $e (f32x4.splat (local.get $eps1)))
    (block $rdone (loop $rloop
      (br_if $rdone (i32.ge_u (local.get $r) (local.get $rows)))
      (local.set $acc (v128.const f32x4 0 0 0 0))
      (local.set $j (i32.const 0))
      (block $d1 (loop $l1
        (br_if $d1 (i32.ge_u (local.get $j) (local.get $bytes)))
        (local.set $v (v128.load (i32.add (local.get $g) (local.get $j))))
        (local.set $v (f32x4.add (f32x4.mul (local.get $v) (local.get $v)) (local.get $e)))
        (local.set $acc (f32x4.add (local.get $acc) (local.get $v)))
        (v128.store (i32.add (local.get $colOut) (local.get $j))
          (f32x4.add (v128.load (i32.add (local.get $colOut) (local.get $j))) (local.get $v)))
        (local.set $j (i32.add (local.get $j) (i32.const 16)))
        (br $l1)))
      (f32.store (i32.add (local.get $rowOut) (i32.shl (local.get $r) (i32.const 2)))
        ${hsum("(local.get $acc)")})
      (local.set $g (i32.add (local.get $g) (local.get $bytes)))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br $rloop))))
  (func (export "scaled_row_sumsq") (param $g i32) (param $cf i32) (param $rows i32)
    (param $cols i32) (param $out i32)
    (local $r i32) (local $j i32) (local $bytes i32) (local $acc v128) (local $v v128)
    (local.set $bytes (i32.shl (local.get $cols) (i32.const 2)))
    (block $rdone (loop $rloop
      (br_if $rdone (i32.ge_u (local.get $r) (local.get $rows)))
      (local.set $acc (v128.const f32x4 0 0 0 0))
      (local.set $j (i32.const 0))
      (block $d1 (loop $l1
        (br_if $d1 (i32.ge_u (local.get $j) (local.get $bytes)))
        (local.set $v (f32x4.mul (v128.load (i32.add (local.get $g) (local.get $j)))
          (v128.load (i32.add (local.get $cf) (local.get $j)))))
        (local.set $acc (f32x4.add (local.get $acc) (f32x4.mul (local.get $v) (local.get $v))))
        (local.set $j (i32.add (local.get $j) (i32.const 16)))
        (br $l1)))
      (f32.store (i32.add (local.get $out) (i32.shl (local.get $r) (i32.const 2)))
        ${hsum("(local.get $acc)")})
      (local.set $g (i32.add (local.get $g) (local.get $bytes)))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br $rloop))))
  (func (export "factored_update") (param $p i32) (param $g i32) (param $rf i32) (param $cf i32)
    (param $rows i32) (param $cols i32) (param $decay f32) (param $scale f32)
    (local $r i32) (local $j i32) (local $bytes i32) (local $s v128) (local $d v128)
    (local.set $bytes (i32.shl (local.get $cols) (i32.const 2)))
    (local.set $d (f32x4.splat (local.get $decay)))
    (block $rdone (loop $rloop
      (br_if $rdone (i32.ge_u (local.get $r) (local.get $rows)))
      (local.set $s (f32x4.splat (f32.mul (local.get $scale)
        (f32.load (i32.add (local.get $rf) (i32.shl (local.get $r) (i32.const 2)))))))
      (local.set $j (i32.const 0))
      (block $d1 (loop $l1
        (br_if $d1 (i32.ge_u (local.get $j) (local.get $bytes)))
        (v128.store (i32.add (local.get $p) (local.get $j))
          (f32x4.sub (f32x4.mul (v128.load (i32.add (local.get $p) (local.get $j))) (local.get $d))
            (f32x4.mul (f32x4.mul (v128.load (i32.add (local.get $g) (local.get $j)))
              (v128.load (i32.add (local.get $cf) (local.get $j)))) (local.get $s))))
        (local.set $j (i32.add (local.get $j) (i32.const 16)))
        (br $l1)))
      (local.set $p (i32.add (local.get $p) (local.get $bytes)))
      (local.set $g (i32.add (local.get $g) (local.get $bytes)))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br $rloop))))`;

/** The whole module's WebAssembly text (exported for inspection and tests). */
export function simdModuleWat(): string {
  return `(module\n  (memory (import "env" "memory") 1)${
    KERNELS.map(kernelWat).join("\n")
  }\n${RMS_NORM_WAT}\n${ADAFACTOR_WAT}\n${rowStatsWat()}\n)`;
}

/** The compiled kernels, bound to one tfjs wasm heap. Pointers are heap byte offsets. */
export interface SimdKernels {
  /** Dropout mask of `n` elements starting at mask index `offset` (see `model/fused.ts`). */
  dropout_mask(
    out: number,
    n: number,
    offset: number,
    key0: number,
    key1: number,
    threshold: number,
    scale: number,
  ): void;
  /** `out = x · mask` for the dropout mask of the same parameters. */
  dropout_apply(
    out: number,
    x: number,
    n: number,
    offset: number,
    key0: number,
    key1: number,
    threshold: number,
    scale: number,
  ): void;
  /** `out = gelu_new(a) · b`. */
  gated_gelu(out: number, a: number, b: number, n: number): void;
  /** `da = dy · b · gelu_new′(a)`, `db = dy · gelu_new(a)`. */
  gated_gelu_grad(da: number, db: number, a: number, b: number, dy: number, n: number): void;
  /** `out = exp(x)` (Cephes expf; +∞ above 88.72, denormals then 0 below −87.3). */
  exp(out: number, x: number, n: number): void;
  /** `out = a·exp(x − shift) − b`. */
  exp_affine(out: number, x: number, n: number, shift: number, a: number, b: number): void;
  /** One row's max, Σ exp(x − max) and Σ x into `out[0..2]`. */
  row_stats(x: number, n: number, out: number): void;
  /** One AdamW update in place. */
  adamw(
    p: number,
    m: number,
    v: number,
    g: number,
    n: number,
    b1: number,
    c1: number,
    b2: number,
    c2: number,
    decay: number,
    step: number,
    invSqrtBc2: number,
    eps: number,
  ): void;
  /** `dst += src`. */
  add_into(dst: number, src: number, n: number): void;
  /** RMS norm of `rows` rows of `d` floats (`d % 4 === 0`): `out = x·r·w`. */
  rms_norm(out: number, x: number, w: number, rows: number, d: number, eps: number): void;
  /** Adafactor pass 1: row sums into `rowOut`, column sums added into `colOut`, of g² + eps1. */
  sq_sums(
    g: number,
    rows: number,
    cols: number,
    eps1: number,
    rowOut: number,
    colOut: number,
  ): void;
  /** Adafactor pass 2: `out[r] = Σ_c (g·cf[c])²`. */
  scaled_row_sumsq(g: number, cf: number, rows: number, cols: number, out: number): void;
  /** Adafactor pass 3: `p ← p·decay − g·rf[r]·cf[c]·scale`. */
  factored_update(
    p: number,
    g: number,
    rf: number,
    cf: number,
    rows: number,
    cols: number,
    decay: number,
    scale: number,
  ): void;
  /** Its gradient: writes `dx`, adds into `dw` (zero it first). */
  rms_norm_grad(
    dx: number,
    dw: number,
    x: number,
    w: number,
    dy: number,
    rows: number,
    d: number,
    eps: number,
  ): void;
}

let compiled: Promise<WebAssembly.Module> | undefined;

async function compile(): Promise<WebAssembly.Module> {
  const wabt = await wabtInit();
  const parsed = wabt.parseWat("model/wasm_simd.wat", simdModuleWat(), { simd: true });
  try {
    parsed.validate();
    const { buffer } = parsed.toBinary({});
    return await WebAssembly.compile(buffer as Uint8Array<ArrayBuffer>);
  } finally {
    parsed.destroy();
  }
}

/** The wasm `Memory` of a tfjs wasm backend (the emscripten module's exported memory). */
export function wasmBackendMemory(backend: BackendWasm): WebAssembly.Memory {
  const mod = backend.wasm as unknown as { asm?: { memory?: unknown } };
  const mem = mod.asm?.memory;
  if (!(mem instanceof WebAssembly.Memory)) {
    throw new Error("model/wasm_simd.ts: the tfjs wasm module exports no WebAssembly.Memory");
  }
  return mem;
}

/**
 * Compiles (once per process) and instantiates the SIMD kernels on a tfjs wasm backend's heap.
 *
 * @param backend the tfjs wasm backend (`tf.backend()` after `tf.setBackend("wasm")`)
 * @returns the kernels
 * @throws Error if wabt cannot assemble the module or the runtime lacks wasm SIMD
 */
export async function instantiateSimdKernels(backend: BackendWasm): Promise<SimdKernels> {
  compiled ??= compile();
  const module = await compiled;
  const instance = await WebAssembly.instantiate(module, {
    env: { memory: wasmBackendMemory(backend) },
  });
  return instance.exports as unknown as SimdKernels;
}

let active: SimdKernels | undefined;

/**
 * Makes {@link activeSimdKernels} return kernels bound to `backend`'s heap (the kernels of
 * `model/fused.ts` and `model/wasm_kernels.ts` then use them), or clears them with `undefined`.
 *
 * @param backend the tfjs wasm backend, or undefined to go back to the JavaScript loops
 */
export async function enableSimdKernels(backend: BackendWasm | undefined): Promise<void> {
  active = backend === undefined ? undefined : await instantiateSimdKernels(backend);
}

/** The SIMD kernels in use, if {@link enableSimdKernels} installed them. */
export function activeSimdKernels(): SimdKernels | undefined {
  return active;
}
