/**
 * Measured matmul kernel choices per product shape and device ("tuning tables").
 *
 * Which kernel runs a `BatchMatMul` is otherwise a rule of thumb (`chooseSplit` / `chooseTile`
 * in `matmul_kernels.ts`, tfjs's stock kernel for untransposed products). A tuning table records,
 * for one adapter, the fastest of tfjs's stock kernel and each tile and K split of the tiled
 * kernel for each product shape a training step runs, timed on that device
 * (`deno task tune`, or the `tune` section of `benchmarks/gpu_check.ts`). `registerWebgpuKernels`
 * takes a table as its `tuning` option; `model/backend.ts` installs the committed table of the
 * adapter it runs on (`results/tuning/<adapter>.json`). Shapes a table does not list keep the
 * rule of thumb.
 *
 * The BatchMatMul kernel of `mod.ts` asks {@link tunedChoice} for each call's shape and reports
 * what it ran with {@link noteTunedRun}; {@link tuneShape} relies on that to check that its forced
 * choice really ran.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { waitFor } from "./counters.ts";
import { parseJsonFile } from "../json.ts";
import {
  MATMUL_TILE_CANDIDATES,
  MATMUL_TILES,
  type MatMulTile,
  type MatMulTileName,
  SPLIT_K_MAX,
  SPLIT_K_MIN_CHUNK,
  splitPlan,
  tileWorkgroupBytes,
  vec4Fits,
} from "./matmul_kernels.ts";

/** The `format` field of a tuning table file. */
export const TUNING_FORMAT = "hyperprompt-webgpu-matmul-tuning";
/** The `version` field this code reads and writes. */
export const TUNING_VERSION = 1;
/**
 * A tuned choice replaces the rule of thumb only when it is this much faster (median over
 * rounds): wall-clock medians of the same kernel differ by a few percent run to run, and a choice
 * made from noise would change kernels for nothing.
 */
export const TUNING_MARGIN = 0.03;
/**
 * Largest relative L2 difference from tfjs's stock kernel a candidate's product may have to be
 * timed at all. Both are float32 sums of K terms in different orders, which differ by about
 * √K·2⁻²⁴ (≈ 8e-6 at K = 16,384); a miscompiled or mis-indexed kernel differs by order 1.
 */
export const TUNING_CHECK_TOLERANCE = 1e-4;

/** One product shape as the BatchMatMul kernel sees it (after its rank-3 view). */
export interface MatMulShape {
  /** Batch of A (1 when broadcast). */
  readonly batchA: number;
  /** Batch of B (1 when broadcast). */
  readonly batchB: number;
  /** Output rows. */
  readonly m: number;
  /** Output columns. */
  readonly n: number;
  /** Shared dimension. */
  readonly k: number;
  /** A stored `[K, M]`. */
  readonly transposeA: boolean;
  /** B stored `[N, K]`. */
  readonly transposeB: boolean;
}

/** The key of a shape in a table, e.g. `"1x1 m4096 n768 k3072 NT"` (batch of A x batch of B). */
export function shapeKey(s: MatMulShape): string {
  return `${s.batchA}x${s.batchB} m${s.m} n${s.n} k${s.k} ${s.transposeA ? "T" : "N"}${
    s.transposeB ? "T" : "N"
  }`;
}

const KEY_RE = /^(\d+)x(\d+) m(\d+) n(\d+) k(\d+) ([NT])([NT])$/;

/**
 * Reads a key written by {@link shapeKey}.
 *
 * @param key the key
 * @param where what to name in the error (file and field)
 * @throws Error naming `where` when the key is malformed or a dimension is 0
 */
export function parseShapeKey(key: string, where: string): MatMulShape {
  const m = KEY_RE.exec(key);
  const dims = m?.slice(1, 6).map(Number);
  if (m === null || dims === undefined || dims.some((d) => !(d >= 1))) {
    throw new Error(
      `${where}: "${key}" is not a product shape like "1x1 m4096 n768 k3072 NT" ` +
        "(batch of A x batch of B, output rows, output columns, shared dimension, N/T per operand)",
    );
  }
  const [batchA, batchB, mm, n, k] = dims as [number, number, number, number, number];
  if (batchA !== 1 && batchB !== 1 && batchA !== batchB) {
    throw new Error(`${where}: "${key}": the batches must be equal or one of them 1`);
  }
  return { batchA, batchB, m: mm, n, k, transposeA: m[6] === "T", transposeB: m[7] === "T" };
}

/** What runs a product: tfjs's own kernel, or the tiled kernel with a tile and K slices. */
export type MatMulChoice =
  | { readonly kernel: "stock" }
  | { readonly kernel: "tiled"; readonly tile: MatMulTileName; readonly splits: number };

/** A choice's name: `"stock"`, a tile name (`"t128"`), or tile and slices (`"t128/k8"`). */
export function choiceName(c: MatMulChoice): string {
  if (c.kernel === "stock") return "stock";
  return c.splits > 1 ? `${c.tile}/k${c.splits}` : c.tile;
}

/**
 * Reads a name written by {@link choiceName}.
 *
 * @param name the name
 * @param where what to name in the error
 * @throws Error naming `where` for an unknown tile or a bad slice count
 */
export function parseChoice(name: string, where: string): MatMulChoice {
  if (name === "stock") return { kernel: "stock" };
  const m = /^([a-z0-9]+)(?:\/k(\d+))?$/.exec(name);
  const splits = m?.[2] === undefined ? 1 : Number(m[2]);
  if (m === null || !(splits >= 1 && splits <= SPLIT_K_MAX) || m[2]?.startsWith("0")) {
    throw new Error(
      `${where}: "${name}" is not a kernel choice ("stock", a tile such as "t128", or a tile ` +
        `and K slices such as "t128/k8", 1 to ${SPLIT_K_MAX} slices)`,
    );
  }
  if (!tileNames().includes(m[1]!)) {
    throw new Error(
      `${where}: "${name}": unknown tile "${m[1]}"; known choices: ${knownChoices()}`,
    );
  }
  return { kernel: "tiled", tile: m[1] as MatMulTileName, splits };
}

/** The names of every tile, the heuristic's and the tuning candidates. */
function tileNames(): string[] {
  return [...MATMUL_TILES, ...MATMUL_TILE_CANDIDATES].map((t) => t.name);
}

/**
 * Every name {@link parseChoice} reads, for an error: `stock`, each tile, and the `<tile>/kS`
 * form.
 *
 * @returns the list, e.g. `stock, t32, t64, …; each tile also as <tile>/kS, S K slices 1 to 16
 *   (e.g. t64/k8)`
 */
export function knownChoices(): string {
  return `stock, ${tileNames().join(", ")}; each tile also as <tile>/kS, S K slices 1 to ` +
    `${SPLIT_K_MAX} (e.g. t64/k8)`;
}

/** Which adapter a table was measured on (`GPUAdapterInfo`'s fields). */
export interface AdapterId {
  /** `GPUAdapterInfo.vendor`, e.g. `nvidia` (empty when the adapter does not say). */
  readonly vendor: string;
  /** `GPUAdapterInfo.architecture`, e.g. `hopper`. */
  readonly architecture: string;
  /** `GPUAdapterInfo.device` (often empty). */
  readonly device: string;
  /** `GPUAdapterInfo.description`, e.g. `NVIDIA H200`. */
  readonly description: string;
}

/** The adapter's identity from `GPUAdapter.info`. */
export function adapterId(info: GPUAdapterInfo): AdapterId {
  return {
    vendor: info.vendor ?? "",
    architecture: info.architecture ?? "",
    device: info.device ?? "",
    description: info.description ?? "",
  };
}

/** Whether two adapter identities are the same device and driver description. */
export function sameAdapter(a: AdapterId, b: AdapterId): boolean {
  return a.vendor === b.vendor && a.architecture === b.architecture && a.device === b.device &&
    a.description === b.description;
}

/**
 * An adapter's identity in words, every field {@link sameAdapter} compares, e.g.
 * `"llvmpipe (LLVM 15.0.6, 256 bits)" (vendor "65541", architecture "", device "0")`: two
 * adapters that differ in one field only are told apart.
 */
export function describeAdapter(id: AdapterId): string {
  return `"${id.description}" (vendor "${id.vendor}", architecture "${id.architecture}", ` +
    `device "${id.device}")`;
}

/**
 * A file name stem for an adapter: its description (and vendor and device id), lower case,
 * runs of other characters as one `-`, at most 80 characters; e.g.
 * `llvmpipe-llvm-15-0-6-256-bits-65541-0`.
 */
export function adapterSlug(id: AdapterId): string {
  const s = `${id.description} ${id.vendor} ${id.device}`.toLowerCase().replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "").slice(0, 80).replace(/-+$/, "");
  return s === "" ? "unknown-adapter" : s;
}

/** One tuned shape. */
export interface TuningEntry {
  /** The choice the kernel makes for this shape ({@link choiceName}). */
  readonly choice: string;
  /** What the rule of thumb would run (without a table). */
  readonly heuristic: string;
  /** Median ms per product of every choice timed, by name (the rule of thumb's included). */
  readonly ms: Readonly<Record<string, number>>;
  /** How many times one step of the tuned workload ran this shape (for weighting), if known. */
  readonly calls?: number;
  /**
   * Choices not timed because their product differed from the stock kernel's by more than
   * {@link TUNING_CHECK_TOLERANCE}, by name, with the error.
   */
  readonly rejected?: Readonly<Record<string, string>>;
}

/** A tuning table: measured kernel choices for one adapter. */
export interface MatMulTuningTable {
  /** What the file is ({@link TUNING_FORMAT}). */
  readonly format: typeof TUNING_FORMAT;
  /** The layout's version ({@link TUNING_VERSION}); another version is not read. */
  readonly version: typeof TUNING_VERSION;
  /** The adapter the times were measured on. */
  readonly adapter: AdapterId;
  /** ISO time of the (last) tuning run. */
  readonly created: string;
  /** How it was measured: versions, repetitions, the workload (the last run's). */
  readonly provenance: Readonly<Record<string, string | number>>;
  /** By {@link shapeKey}. */
  readonly entries: Readonly<Record<string, TuningEntry>>;
  /**
   * The earlier runs whose entries the table still holds ({@link mergeTuningTables}), oldest
   * first: each one's `created` and `provenance` and the keys of the entries it measured. The
   * entries no earlier run names are the last run's. Absent in a table of one run.
   */
  readonly earlier?: readonly TuningRun[];
}

/** An earlier tuning run of a merged table ({@link MatMulTuningTable.earlier}). */
export interface TuningRun {
  /** ISO time of the run. */
  readonly created: string;
  /** How it measured (as {@link MatMulTuningTable.provenance}). */
  readonly provenance: Readonly<Record<string, string | number>>;
  /** The keys of the table's entries it measured. */
  readonly entries: readonly string[];
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/**
 * Parses and validates a tuning table file.
 *
 * @param text the file's text
 * @param source the file's path (named in errors)
 * @returns the table
 * @throws Error naming `source` and the field (e.g. `entries["1x1 m8 n8 k8 NT"].choice`)
 */
export function parseTuningTable(text: string, source: string): MatMulTuningTable {
  // A syntax error names line and column (a hand-edited table), a byte-order mark is ignored.
  const raw: unknown = parseJsonFile(text, source);
  const fail = (field: string, what: string): never => {
    throw new Error(`${source}: ${field} ${what}`);
  };
  if (!isRecord(raw)) return fail("(top level)", "must be an object");
  if (raw.format === undefined) {
    fail("format", `is missing (must be "${TUNING_FORMAT}"): not a tuning table`);
  }
  if (raw.format !== TUNING_FORMAT) {
    fail("format", `must be "${TUNING_FORMAT}", got ${JSON.stringify(raw.format)}`);
  }
  if (raw.version !== TUNING_VERSION) {
    fail(
      "version",
      raw.version === undefined
        ? `is missing (must be ${TUNING_VERSION})`
        : `must be ${TUNING_VERSION}, got ${JSON.stringify(raw.version)}`,
    );
  }
  const ad = raw.adapter;
  if (!isRecord(ad)) return fail("adapter", "must be an object");
  for (const f of ["vendor", "architecture", "device", "description"]) {
    if (typeof ad[f] !== "string") fail(`adapter.${f}`, "must be a string");
  }
  // A run's `created` and `provenance`: the table's (the last run's), and each earlier run's.
  const runOf = (x: Record<string, unknown>, at: string) => {
    if (typeof x.created !== "string" || Number.isNaN(Date.parse(x.created))) {
      fail(`${at}created`, `must be an ISO date, got ${JSON.stringify(x.created)}`);
    }
    const prov = x.provenance;
    if (!isRecord(prov)) return fail(`${at}provenance`, "must be an object");
    for (const [k, v] of Object.entries(prov)) {
      if (typeof v !== "string" && typeof v !== "number") {
        fail(`${at}provenance.${k}`, "must be a string or a number");
      }
    }
    return {
      created: x.created as string,
      provenance: { ...(prov as Record<string, string | number>) },
    };
  };
  const last = runOf(raw, "");
  if (!isRecord(raw.entries)) return fail("entries", "must be an object");
  const entries: Record<string, TuningEntry> = {};
  for (const [key, e] of Object.entries(raw.entries)) {
    const at = `entries[${JSON.stringify(key)}]`;
    parseShapeKey(key, `${source}: ${at}`);
    if (!isRecord(e)) return fail(at, "must be an object");
    for (const f of ["choice", "heuristic"] as const) {
      if (typeof e[f] !== "string") fail(`${at}.${f}`, "must be a string");
      parseChoice(e[f] as string, `${source}: ${at}.${f}`);
    }
    if (!isRecord(e.ms)) return fail(`${at}.ms`, "must be an object");
    for (const [name, ms] of Object.entries(e.ms)) {
      parseChoice(name, `${source}: ${at}.ms`);
      if (typeof ms !== "number" || !Number.isFinite(ms) || ms < 0) {
        fail(`${at}.ms[${JSON.stringify(name)}]`, `must be a finite ms ≥ 0, got ${String(ms)}`);
      }
    }
    if (e.calls !== undefined && !(Number.isInteger(e.calls) && (e.calls as number) >= 1)) {
      fail(`${at}.calls`, `must be a positive integer, got ${JSON.stringify(e.calls)}`);
    }
    if (e.rejected !== undefined) {
      if (!isRecord(e.rejected)) return fail(`${at}.rejected`, "must be an object");
      for (const [name, why] of Object.entries(e.rejected)) {
        parseChoice(name, `${source}: ${at}.rejected`);
        if (typeof why !== "string") {
          fail(`${at}.rejected[${JSON.stringify(name)}]`, "must be a string");
        }
      }
      if (e.rejected[e.choice as string] !== undefined) {
        fail(`${at}.choice`, `"${e.choice}" is also listed as rejected`);
      }
    }
    // The choice is the fastest one timed, and the rule of thumb's was timed or rejected: a name
    // that is neither was never measured on this adapter.
    const timed = e.ms as Record<string, number>;
    if (!Object.hasOwn(timed, e.choice as string)) {
      fail(`${at}.choice`, `"${e.choice}" has no time in ${at}.ms`);
    }
    if (
      !Object.hasOwn(timed, e.heuristic as string) &&
      !(isRecord(e.rejected) && Object.hasOwn(e.rejected, e.heuristic as string))
    ) {
      fail(`${at}.heuristic`, `"${e.heuristic}" has no time in ${at}.ms and is not rejected`);
    }
    entries[key] = {
      choice: e.choice as string,
      heuristic: e.heuristic as string,
      ms: { ...(e.ms as Record<string, number>) },
      ...(e.calls === undefined ? {} : { calls: e.calls as number }),
      ...(e.rejected === undefined
        ? {}
        : { rejected: { ...(e.rejected as Record<string, string>) } }),
    };
  }
  let earlier: TuningRun[] | undefined;
  if (raw.earlier !== undefined) {
    if (!Array.isArray(raw.earlier)) return fail("earlier", "must be an array");
    earlier = [];
    const named = new Map<string, number>();
    for (const [i, run] of (raw.earlier as unknown[]).entries()) {
      const at = `earlier[${i}]`;
      if (!isRecord(run)) return fail(at, "must be an object");
      const { created, provenance } = runOf(run, `${at}.`);
      if (!Array.isArray(run.entries)) return fail(`${at}.entries`, "must be an array");
      for (const [j, key] of (run.entries as unknown[]).entries()) {
        if (typeof key !== "string" || !Object.hasOwn(entries, key)) {
          fail(`${at}.entries[${j}]`, `must be a key of entries, got ${JSON.stringify(key)}`);
        }
        const before = named.get(key as string);
        if (before !== undefined) {
          fail(`${at}.entries[${j}]`, `${JSON.stringify(key)} is named by earlier[${before}] too`);
        }
        named.set(key as string, i);
      }
      earlier.push({ created, provenance, entries: [...(run.entries as string[])] });
    }
  }
  return {
    format: TUNING_FORMAT,
    version: TUNING_VERSION,
    adapter: adapterId(ad as unknown as GPUAdapterInfo),
    ...last,
    entries,
    ...(earlier === undefined ? {} : { earlier }),
  };
}

/** The table as the file's text (entries sorted by key, so reruns diff cleanly). */
export function serializeTuningTable(t: MatMulTuningTable): string {
  const entries: Record<string, TuningEntry> = {};
  for (const key of Object.keys(t.entries).sort()) entries[key] = t.entries[key]!;
  return JSON.stringify({ ...t, entries }, null, 2) + "\n";
}

/**
 * A table with `fresh`'s entries over `old`'s (other workloads' shapes kept), `fresh`'s
 * `created` and `provenance`, and in `earlier` the runs of `old` whose entries it keeps, each
 * with the keys of those entries: every entry's measurement stays described by the run that
 * made it (times, repetitions, candidates, workload, commit).
 *
 * @throws Error when the two were measured on different adapters
 */
export function mergeTuningTables(
  old: MatMulTuningTable,
  fresh: MatMulTuningTable,
): MatMulTuningTable {
  if (!sameAdapter(old.adapter, fresh.adapter)) {
    throw new Error(
      `model/webgpu/tuning.ts: cannot merge tables of different adapters ` +
        `(${describeAdapter(old.adapter)} / ${describeAdapter(fresh.adapter)})`,
    );
  }
  const kept = (key: string) => !Object.hasOwn(fresh.entries, key);
  const byEarlier = new Set((old.earlier ?? []).flatMap((r) => r.entries));
  const earlier = [
    ...(old.earlier ?? []),
    {
      created: old.created,
      provenance: old.provenance,
      entries: Object.keys(old.entries).filter((k) => !byEarlier.has(k)).sort(),
    },
  ].map((r) => ({ ...r, entries: r.entries.filter(kept) })).filter((r) => r.entries.length > 0);
  const { earlier: _, ...last } = fresh;
  return {
    ...last,
    entries: { ...old.entries, ...fresh.entries },
    ...(earlier.length === 0 ? {} : { earlier }),
  };
}

// ---------------------------------------------------------------------------------------------
// The choices in effect (read by the BatchMatMul kernel of mod.ts)

/**
 * Farthest a listed shape's token dimension may be from a call's (as a ratio) for the call to
 * take that shape's choice when its own shape is not listed.
 */
export const TUNING_NEAR_RATIO = 2;

interface ActiveTuning {
  /** By {@link shapeKey}. */
  readonly exact: Map<string, MatMulChoice>;
  /**
   * By the shape with one dimension left out (`m|…`, `n|…`, `k|…`): the listed values of that
   * dimension and their choices.
   */
  readonly near: Map<string, { value: number; choice: MatMulChoice }[]>;
}

const DIMS = ["m", "n", "k"] as const;

function nearKey(s: MatMulShape, free: typeof DIMS[number]): string {
  const rest = DIMS.filter((d) => d !== free).map((d) => `${d}${s[d]}`).join(" ");
  return `${free}|${s.batchA}x${s.batchB} ${rest} ${s.transposeA ? "T" : "N"}${
    s.transposeB ? "T" : "N"
  }`;
}

function compile(entries: Iterable<[string, MatMulChoice]>, near: boolean): ActiveTuning {
  const t: ActiveTuning = { exact: new Map(), near: new Map() };
  for (const [key, choice] of entries) {
    t.exact.set(key, choice);
    if (!near) continue;
    const shape = parseShapeKey(key, "tuning entry");
    for (const d of DIMS) {
      const k = nearKey(shape, d);
      const list = t.near.get(k) ?? [];
      list.push({ value: shape[d], choice });
      t.near.set(k, list);
    }
  }
  return t;
}

let active: ActiveTuning = compile([], false);
let lastRun: string | undefined;

/** Makes `table`'s choices the ones {@link tunedChoice} gives (none when undefined). */
export function setActiveTuning(table: MatMulTuningTable | undefined): void {
  active = compile(
    Object.entries(table?.entries ?? {}).map((
      [key, e],
    ): [string, MatMulChoice] => [key, parseChoice(e.choice, `tuning entry ${key}`)]),
    true,
  );
}

/**
 * The tuned choice for a product, if a table is in effect: its shape's own entry, else the entry
 * of the listed shape that differs from it in one dimension only, by at most a factor
 * {@link TUNING_NEAR_RATIO} (the nearest on a log scale). Batches are padded to their longest
 * row, so the token count (M of the forward and input-gradient products, K of the weight
 * gradients) changes from batch to batch while the model's dimensions stay.
 *
 * @param shape the product
 * @param key its {@link shapeKey} (when the caller has it)
 */
export function tunedChoice(
  shape: MatMulShape,
  key: string = shapeKey(shape),
): MatMulChoice | undefined {
  if (active.exact.size === 0) return undefined;
  const hit = active.exact.get(key);
  if (hit !== undefined || active.near.size === 0) return hit;
  let best: MatMulChoice | undefined;
  let bestDist = Math.log(TUNING_NEAR_RATIO) + 1e-12;
  for (const d of DIMS) {
    for (const e of active.near.get(nearKey(shape, d)) ?? []) {
      const dist = Math.abs(Math.log(e.value / shape[d]));
      if (dist <= bestDist) [best, bestDist] = [e.choice, dist];
    }
  }
  return best;
}

/** Called by the BatchMatMul kernel with the name of the choice it ran for a tuned shape. */
export function noteTunedRun(name: string): void {
  lastRun = name;
}

// ---------------------------------------------------------------------------------------------
// Measuring

/**
 * The tiles {@link tuningCandidates} also times with K split: the square 128- and 64-wide ones
 * `chooseSplit` uses and their vec4-load twins (each split count of each tile is one more
 * candidate to time per long-K shape, so the list is kept short).
 */
export const SPLIT_TILES: ReadonlySet<string> = new Set(["t128", "t64", "t128v4", "t64v4"]);

/** Device limits a candidate must fit. */
export interface TuningLimits {
  readonly maxComputeWorkgroupStorageSize: number;
  readonly maxComputeInvocationsPerWorkgroup: number;
}

function fitsDevice(t: MatMulTile, limits: TuningLimits): boolean {
  const threads = (t.tileM / t.threadM) * (t.tileN / t.threadN);
  return tileWorkgroupBytes(t) <= limits.maxComputeWorkgroupStorageSize &&
    threads <= limits.maxComputeInvocationsPerWorkgroup;
}

/**
 * The choices {@link tuneShape} times for a shape: tfjs's stock kernel; every tile that fits the
 * device, unsplit (the vec4-load tiles only where the shape allows vec4 loads, since elsewhere
 * they run as their scalar twins); and where K is at least 2 × {@link SPLIT_K_MIN_CHUNK}, the
 * tiles of {@link SPLIT_TILES} with K in 2, 4, 8 and 16 slices of at least
 * {@link SPLIT_K_MIN_CHUNK}.
 *
 * @param shape the product
 * @param limits the device's limits
 * @returns the choices, stock first
 */
export function tuningCandidates(shape: MatMulShape, limits: TuningLimits): MatMulChoice[] {
  const out: MatMulChoice[] = [{ kernel: "stock" }];
  const aCols = shape.transposeA ? shape.m : shape.k;
  const bCols = shape.transposeB ? shape.k : shape.n;
  const vec4 = vec4Fits([aCols, bCols]);
  const tiles = [...MATMUL_TILES, ...MATMUL_TILE_CANDIDATES].filter((t) =>
    fitsDevice(t, limits) && (!t.vec4 || vec4)
  );
  for (const t of tiles) out.push({ kernel: "tiled", tile: t.name as MatMulTileName, splits: 1 });
  if (shape.k >= 2 * SPLIT_K_MIN_CHUNK) {
    for (const t of tiles.filter((t) => SPLIT_TILES.has(t.name))) {
      for (const s of [2, 4, 8, 16]) {
        const plan = splitPlan(shape.k, s, t.tileK);
        if (plan.splits === s && plan.chunk >= SPLIT_K_MIN_CHUNK) {
          out.push({ kernel: "tiled", tile: t.name as MatMulTileName, splits: s });
        }
      }
    }
  }
  return out;
}

/** How {@link tuneShape} times each choice. */
export interface TuneOptions {
  /** Products per timed round (after one warm-up product). @default 10 */
  readonly reps?: number;
  /** Timed rounds; the median round counts. @default 3 */
  readonly rounds?: number;
  /** What the rule of thumb runs for this shape (timed too, and kept unless beaten). */
  readonly heuristic: MatMulChoice;
  /** The choices to time (default {@link tuningCandidates}). */
  readonly candidates?: readonly MatMulChoice[];
  /** The device's limits (default: the current webgpu backend's device). */
  readonly limits?: TuningLimits;
}

/**
 * Times every candidate kernel for one product shape on the current webgpu backend and picks the
 * fastest. Each candidate is forced through the installed BatchMatMul kernel (so
 * `registerWebgpuKernels` must be in effect; the previous tuned choices are restored after), run
 * once to compile its shader and to check its product against tfjs's stock kernel (a candidate
 * off by more than {@link TUNING_CHECK_TOLERANCE} is listed in `rejected`, never chosen), then
 * `rounds` times `reps` products, each round ended by a read of one element; a candidate's figure
 * is its median round divided by `reps`. The stock kernel is always timed. The rule of thumb's
 * choice stays unless another is faster by more than {@link TUNING_MARGIN}. A candidate the kernel
 * cannot run as asked (a split over the device's dispatch limits runs unsplit) is recorded under
 * the name of what ran.
 *
 * @param shape the product
 * @param opts repetitions, the rule of thumb's choice, candidates
 * @returns the entry (without `calls`)
 * @throws Error when the custom BatchMatMul kernel is not installed (a forced choice did not run)
 */
export async function tuneShape(shape: MatMulShape, opts: TuneOptions): Promise<TuningEntry> {
  const reps = opts.reps ?? 10;
  const rounds = opts.rounds ?? 3;
  if (!(Number.isInteger(reps) && reps >= 1) || !(Number.isInteger(rounds) && rounds >= 1)) {
    throw new Error(
      `model/webgpu/tuning.ts tuneShape: reps and rounds must be positive integers, got ${reps}, ${rounds}`,
    );
  }
  const limits = opts.limits ??
    (tf.backend() as unknown as { device: GPUDevice }).device.limits;
  const candidates = [...(opts.candidates ?? tuningCandidates(shape, limits))];
  const heuristic = choiceName(opts.heuristic);
  if (!candidates.some((c) => choiceName(c) === heuristic)) candidates.push(opts.heuristic);
  if (!candidates.some((c) => c.kernel === "stock")) candidates.unshift({ kernel: "stock" });
  const key = shapeKey(shape);
  const aShape = [
    shape.batchA,
    shape.transposeA ? shape.k : shape.m,
    shape.transposeA ? shape.m : shape.k,
  ];
  const bShape = [
    shape.batchB,
    shape.transposeB ? shape.n : shape.k,
    shape.transposeB ? shape.k : shape.n,
  ];
  const a = tf.randomUniform(aShape, -1, 1, "float32", 1);
  const b = tf.randomUniform(bShape, -1, 1, "float32", 2);
  const saved = active;
  const ms: Record<string, number> = {};
  const rejected: Record<string, string> = {};
  const ranAs = new Map<string, string>();
  const run = () => tf.matMul(a, b, shape.transposeA, shape.transposeB);
  /** Runs `fn` with `c` forced for this shape; returns the product and the name of what ran. */
  const forced = (c: MatMulChoice) => {
    active = compile([[key, c]], false);
    lastRun = undefined;
    const y = run();
    const ran = lastRun as string | undefined;
    if (ran === undefined) {
      y.dispose();
      throw new Error(
        `model/webgpu/tuning.ts tuneShape: the BatchMatMul kernel did not apply the choice ` +
          `${choiceName(c)} for ${key}; call registerWebgpuKernels() first`,
      );
    }
    return { y, ran };
  };
  let ref: tf.Tensor | undefined;
  try {
    // tfjs's own kernel is the reference every candidate's product is checked against.
    ref = forced({ kernel: "stock" }).y;
    for (const c of candidates) {
      const name = choiceName(c);
      const { y: warm, ran } = forced(c);
      ranAs.set(name, ran);
      if (ran in ms || ran in rejected) {
        warm.dispose(); // e.g. a split that ran unsplit: already timed
        continue;
      }
      const errT = tf.tidy(() =>
        tf.div(tf.norm(tf.sub(warm, ref!)), tf.maximum(tf.norm(ref!), 1e-30))
      );
      warm.dispose();
      const err = (await errT.data())[0]!;
      errT.dispose();
      if (!(err <= TUNING_CHECK_TOLERANCE)) {
        rejected[ran] = `relative L2 error ${err} against the stock kernel`;
        continue;
      }
      ms[ran] = Math.round((await timeProducts(run, reps, rounds)) * 1e4) / 1e4;
    }
  } finally {
    active = saved;
    tf.dispose([a, b]);
    ref?.dispose();
  }
  const ruleRan = ranAs.get(heuristic) ?? heuristic;
  return {
    choice: pickTunedChoice(ms, ruleRan),
    heuristic: ruleRan,
    ms,
    ...(Object.keys(rejected).length > 0 ? { rejected } : {}),
  };
}

/**
 * Times one candidate as {@link tuneShape} does: `rounds` rounds of `reps` queued products, each
 * round ended by a read of one element of its last product (the queue runs in order, so that
 * waits for all of them); every product but the last is freed as the next is queued.
 *
 * @param run queues one product
 * @param reps products per round
 * @param rounds rounds
 * @param now the clock, ms (default `performance.now`; tests pass their own)
 * @returns the median round's ms per product
 */
export async function timeProducts(
  run: () => tf.Tensor,
  reps: number,
  rounds: number,
  now: () => number = () => performance.now(),
): Promise<number> {
  const times: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = now();
    let last: tf.Tensor | undefined;
    try {
      for (let i = 0; i < reps; i++) {
        last?.dispose();
        last = run();
      }
      await waitFor(last!);
    } finally {
      last?.dispose();
    }
    times.push((now() - t0) / reps);
  }
  return median(times);
}

/**
 * The choice {@link tuneShape} keeps among the timed ones: the fastest, unless the rule of thumb's
 * was timed and the fastest is not more than {@link TUNING_MARGIN} faster than it (a difference
 * within run-to-run noise changes no kernel). Where the rule's choice was not timed (its product
 * was wrong), the fastest.
 *
 * @param ms ms per product of each timed choice, by name
 * @param rule the name of what the rule of thumb ran
 * @returns the name of the choice
 */
export function pickTunedChoice(ms: Readonly<Record<string, number>>, rule: string): string {
  const ruleMs = ms[rule];
  let choice = rule;
  let best = ruleMs ?? Infinity;
  for (const [name, t] of Object.entries(ms)) {
    if (t < best) [choice, best] = [name, t];
  }
  return ruleMs !== undefined && best > ruleMs * (1 - TUNING_MARGIN) ? rule : choice;
}

// ---------------------------------------------------------------------------------------------
// Finding the table of an adapter

/** The folder of committed tables (`results/tuning/` of this repository). */
export const DEFAULT_TUNING_DIR: URL = new URL("../../results/tuning/", import.meta.url);

/**
 * Where the table of an adapter is kept: `<dir>/<adapterSlug>.json`.
 *
 * @param id the adapter
 * @param dir a folder path, or a `file:` URL of one (default {@link DEFAULT_TUNING_DIR}, this
 *   repository's `results/tuning/`, wherever the process runs from)
 * @returns a file path
 */
export function tuningPathFor(id: AdapterId, dir: URL | string = DEFAULT_TUNING_DIR): string {
  const base = typeof dir === "string" ? dir.replace(/\/?$/, "/") : dir.href;
  const name = `${adapterSlug(id)}.json`;
  return base.startsWith("file:")
    ? decodeURIComponent(new URL(name, base).pathname)
    : `${base}${name}`;
}

/** What {@link findTuningTable} found. */
export interface FoundTuning {
  /** The table to install, if one applies. */
  readonly table?: MatMulTuningTable;
  /** One line for the backend's notes: what was used, or why none was. */
  readonly note: string;
}

/**
 * Finds the tuning table for an adapter: the file named by `setting` (the
 * `HYPERPROMPT_WEBGPU_TUNING` environment variable) when given, `off` or `0` for none, else
 * `<dir>/<adapterSlug>.json` when it exists.
 *
 * @param id the adapter in use
 * @param setting the environment variable's value, if set
 * @param dir the folder of committed tables (default {@link DEFAULT_TUNING_DIR})
 * @returns the table and a note; no table (with the reason) when none exists for the adapter or
 *   the file found by name was measured on another adapter with the same name stem
 * @throws Error naming the file and field when a table is malformed, or when the file named by
 *   `setting` is missing or belongs to another adapter (an explicit choice that cannot be honoured)
 */
export async function findTuningTable(
  id: AdapterId,
  setting?: string,
  dir: URL | string = DEFAULT_TUNING_DIR,
): Promise<FoundTuning> {
  if (setting === "off" || setting === "0") {
    return { note: "webgpu: matmul tuning off (HYPERPROMPT_WEBGPU_TUNING)" };
  }
  const explicit = setting !== undefined && setting !== "";
  const path = explicit ? setting : tuningPathFor(id, dir);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    if (explicit) {
      throw new Error(`HYPERPROMPT_WEBGPU_TUNING=${setting}: no such file`);
    }
    return {
      note: `webgpu: no matmul tuning table for this adapter (${path}; deno task tune makes one)`,
    };
  }
  const table = parseTuningTable(text, path);
  if (!sameAdapter(table.adapter, id)) {
    const why = `${path} was measured on ${describeAdapter(table.adapter)}, not on ${
      describeAdapter(id)
    }`;
    if (explicit) throw new Error(`HYPERPROMPT_WEBGPU_TUNING: ${why}`);
    return { note: `webgpu: matmul tuning table not used: ${why}` };
  }
  return {
    table,
    note: `webgpu: matmul kernels tuned by ${path} (${
      Object.keys(table.entries).length
    } shapes, measured ${table.created})`,
  };
}

/**
 * The median of timings: the middle one, or the mean of the two middle ones for an even count
 * (an even `--rounds` used to keep the slower of the two).
 *
 * @param xs the values (not changed)
 * @returns their median
 * @throws Error for no values
 */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error("model/webgpu/tuning.ts median: no values");
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
