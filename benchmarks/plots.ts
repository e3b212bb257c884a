/**
 * Small hand-written SVG plots of run results: benchmark average against extra parameters (the
 * paper's Pareto figure, §4.2) and attention mass on hyper-prompts per layer (§4.6).
 *
 * @module
 */
import { BENCHMARK_TASKS } from "../tasks/registry.ts";
import { type BenchmarkName, configId, METHOD_NAMES, type RunResult } from "./spec.ts";
import { missingTaskRuns } from "./per_task.ts";
import { compareLabels, type RunLabels, runLabels } from "./labels.ts";
import { setupOfRuns, setupPairs } from "./setups.ts";

const W = 680;
const H = 400;
const M = { left: 60, right: 220, top: 30, bottom: 50 };
/**
 * Series colours: Tableau's 10, then 10 darker ones, so up to 20 series differ in colour; the
 * lines of series 21 and later differ from the earlier ones of their colour by their dash pattern
 * ({@link seriesStyle}).
 */
const COLORS = [
  "#1f77b4",
  "#ff7f0e",
  "#2ca02c",
  "#d62728",
  "#9467bd",
  "#8c564b",
  "#e377c2",
  "#7f7f7f",
  "#bcbd22",
  "#17becf",
  "#393b79",
  "#8c6d31",
  "#637939",
  "#843c39",
  "#7b4173",
  "#3182bd",
  "#e6550d",
  "#31a354",
  "#756bb1",
  "#252525",
];
const DASHES = ["", "6 3", "2 3", "8 3 2 3"];

/**
 * The colour and dash pattern of the `i`-th series: no two of the first 80 series share both.
 *
 * @param i series index (0-based)
 * @returns the SVG colour and `stroke-dasharray` ("" for a solid line)
 */
export function seriesStyle(i: number): { color: string; dash: string } {
  return {
    color: COLORS[i % COLORS.length]!,
    dash: DASHES[Math.floor(i / COLORS.length) % DASHES.length]!,
  };
}

/** Marker shapes of a scatter plot's points. */
type Shape = "circle" | "square" | "triangle";

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(
    /"/g,
    "&quot;",
  );
}

const fmt = (
  x: number,
) => (Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 1 ? x.toFixed(1) : x.toPrecision(2));

/**
 * Ticks at round values inside [lo, hi]: the multiples of a step of 1, 2, 2.5 or 5 times a power
 * of ten, the step whose count of ticks is nearest 5 (the larger step on a tie; at least 3 ticks
 * over any range wider than a rounding error), each labelled with the step's decimals (`25`, not
 * `25.0`; `0.25`; no `-0`).
 *
 * @param lo the axis's lower end
 * @param hi its upper end (> lo)
 * @returns the ticks, in increasing order
 */
export function niceTicks(lo: number, hi: number): { value: number; label: string }[] {
  const span = hi - lo;
  if (!(span > 0) || !Number.isFinite(span)) return [{ value: lo, label: fmt(lo) }];
  const count = (step: number) => Math.floor(hi / step + 1e-9) - Math.ceil(lo / step - 1e-9) + 1;
  const top = Math.floor(Math.log10(span));
  let best: { step: number; decimals: number; n: number } | undefined;
  for (let e = top - 2; e <= top + 1; e++) {
    for (const m of [1, 2, 2.5, 5]) {
      const step = m * 10 ** e;
      const n = count(step);
      if (n < 3) continue;
      // Ascending steps: a later one wins a tie.
      if (best === undefined || Math.abs(n - 5) <= Math.abs(best.n - 5)) {
        best = { step, decimals: Math.max(0, -e + (m === 2.5 ? 1 : 0)), n };
      }
    }
  }
  const { step, decimals } = best!;
  const out: { value: number; label: string }[] = [];
  for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k++) {
    const value = k * step;
    out.push({
      value,
      // A multiple of the step shown to the step's decimals is 0 only at k = 0 (never "-0").
      label: (value === 0 ? 0 : value).toFixed(decimals),
    });
  }
  return out;
}

/** Words of `s` packed greedily into lines of at most `n` characters (a longer word is cut). */
function wrap(s: string, n: number): string[] {
  const lines: string[] = [];
  for (const word of s.split(" ").flatMap((w) => w.match(new RegExp(`.{1,${n}}`, "g")) ?? [""])) {
    const last = lines.at(-1);
    if (last !== undefined && last.length + 1 + word.length <= n) {
      lines[lines.length - 1] += ` ${word}`;
    } else lines.push(word);
  }
  return lines;
}

/** A marker at (cx, cy): filled, or hollow (white inside, coloured outline). */
function marker(
  shape: Shape,
  cx: number,
  cy: number,
  color: string,
  hollow: boolean,
  title?: string,
): string {
  const paint = `fill="${hollow ? "white" : color}" stroke="${color}" stroke-width="1.5"`;
  const t = title === undefined ? "" : `<title>${esc(title)}</title>`;
  const [x, y] = [cx.toFixed(1), cy.toFixed(1)];
  if (shape === "square") {
    return `<rect x="${(cx - 3.5).toFixed(1)}" y="${
      (cy - 3.5).toFixed(1)
    }" width="7" height="7" ${paint}>${t}</rect>`;
  }
  if (shape === "triangle") {
    const pts = [[cx, cy - 4.5], [cx - 4, cy + 3], [cx + 4, cy + 3]]
      .map(([a, b]) => `${a!.toFixed(1)},${b!.toFixed(1)}`).join(" ");
    return `<polygon points="${pts}" ${paint}>${t}</polygon>`;
  }
  return `<circle cx="${x}" cy="${y}" r="3.5" ${paint}>${t}</circle>`;
}

/** A named series of points (each drawn as its `shape`, default a circle, filled unless hollow). */
interface Series {
  readonly name: string;
  readonly points: readonly {
    readonly x: number;
    readonly y: number;
    readonly label?: string;
    readonly shape?: Shape;
    readonly hollow?: boolean;
  }[];
}

/** A legend line that explains a marker (shape or fill) rather than a series. */
interface LegendKey {
  readonly shape: Shape;
  readonly hollow: boolean;
  readonly text: string;
}

function frame(
  title: string,
  xLabel: string,
  yLabel: string,
  body: string[],
  legend: string[],
  height = H,
): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${height}" viewBox="0 0 ${W} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${height}" fill="white"/>`,
    `<text x="${M.left}" y="18" font-size="13" font-weight="bold">${esc(title)}</text>`,
    `<text x="${(M.left + W - M.right) / 2}" y="${H - 10}" text-anchor="middle">${
      esc(xLabel)
    }</text>`,
    `<text transform="translate(14 ${
      (M.top + H - M.bottom) / 2
    }) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`,
    ...body,
    ...legend,
    "</svg>",
    "",
  ].join("\n");
}

/** Options of {@link plot}. */
interface PlotOptions {
  /** Log-scale x axis; x = 0 sits a decade left of the smallest positive x, its tick says "0". */
  readonly logX?: boolean;
  /** Join each series' points with a line (in its dash pattern). */
  readonly lines?: boolean;
  /** Ticks at whole numbers of x only (layer indices). */
  readonly integerX?: boolean;
  /** A fixed y range (a fraction: [0, 1]) instead of the data's range. */
  readonly yRange?: readonly [number, number];
  /** Dashed vertical lines with a label at the top (e.g. where the decoder's layers start). */
  readonly vLines?: readonly { readonly x: number; readonly label: string }[];
  /** Legend lines that explain marker shapes and fills, after the series. */
  readonly keys?: readonly LegendKey[];
  /** What the plotted runs come from ({@link plotScope}), at the top of the legend. */
  readonly scope?: string;
}

function plot(
  title: string,
  xLabel: string,
  yLabel: string,
  series: readonly Series[],
  opts: PlotOptions,
): string {
  // Undefined scores (NaN) are not drawn.
  series = series.map((s) => ({ ...s, points: s.points.filter((p) => Number.isFinite(p.y)) }));
  const all = series.flatMap((s) => s.points);
  const positive = all.map((p) => p.x).filter((x) => x > 0);
  const floor = positive.length ? Math.min(...positive) / 10 : 1e-3;
  if (all.length === 0) {
    return frame(title, xLabel, yLabel, [`<text x="${M.left}" y="${H / 2}">no data</text>`], []);
  }
  // On a log axis x = 0 is drawn at the left edge (`floor`); its tick reads 0, not `floor`.
  const zeroAtEdge = opts.logX === true && all.some((p) => p.x <= 0);
  if (zeroAtEdge) xLabel = `${xLabel}, 0 drawn at the left edge`;
  const tx = (x: number) => (opts.logX ? Math.log10(Math.max(x, floor)) : x);
  let [x0, x1] = [Math.min(...all.map((p) => tx(p.x))), Math.max(...all.map((p) => tx(p.x)))];
  let [y0, y1] = [Math.min(...all.map((p) => p.y)), Math.max(...all.map((p) => p.y))];
  // Every x 0 on a log axis (an MTL-only table: no extra parameters): the points at the left
  // edge, whose tick reads 0, and no other tick (the axis has no scale to show).
  const onlyZero = zeroAtEdge && positive.length === 0;
  if (opts.integerX) [x0, x1] = [x0 - 0.5, x1 + 0.5];
  if (onlyZero) x1 = x0 + 1;
  else if (x1 === x0) [x0, x1] = [x0 - 1, x1 + 1];
  if (opts.yRange !== undefined) {
    [y0, y1] = [Math.min(y0, opts.yRange[0]), Math.max(y1, opts.yRange[1])];
  } else {
    if (y1 === y0) [y0, y1] = [y0 - 1, y1 + 1];
    const padY = (y1 - y0) * 0.08;
    [y0, y1] = [y0 - padY, y1 + padY];
  }
  const px = (x: number) => M.left + ((tx(x) - x0) / (x1 - x0)) * (W - M.left - M.right);
  const py = (y: number) => H - M.bottom - ((y - y0) / (y1 - y0)) * (H - M.top - M.bottom);
  const body: string[] = [
    `<rect x="${M.left}" y="${M.top}" width="${W - M.left - M.right}" height="${
      H - M.top - M.bottom
    }" fill="none" stroke="#999"/>`,
  ];
  const xTick = (xpos: number, text: string) =>
    `<text x="${xpos.toFixed(1)}" y="${H - M.bottom + 14}" text-anchor="middle">${text}</text>`;
  for (const { value, label } of niceTicks(y0, y1)) {
    body.push(
      `<text x="${M.left - 4}" y="${
        py(value).toFixed(1)
      }" text-anchor="end" dominant-baseline="middle">${label}</text>`,
    );
  }
  for (let i = 0; i <= 4; i++) {
    if (opts.integerX || (onlyZero && i > 0)) continue;
    const xt = x0 + ((x1 - x0) * i) / 4;
    const xv = opts.logX ? 10 ** xt : xt;
    const xpos = M.left + (i / 4) * (W - M.left - M.right);
    body.push(xTick(xpos, i === 0 && zeroAtEdge ? "0" : fmt(xv)));
  }
  if (opts.integerX) {
    const step = Math.max(1, Math.ceil((x1 - x0) / 10));
    for (let x = Math.ceil(x0); x <= x1; x += step) body.push(xTick(px(x), String(x)));
  }
  for (const v of opts.vLines ?? []) {
    const x = px(v.x).toFixed(1);
    body.push(
      `<line x1="${x}" y1="${M.top}" x2="${x}" y2="${
        H - M.bottom
      }" stroke="#999" stroke-dasharray="4 3"/>`,
      `<text x="${x}" y="${M.top + 12}" dx="4">${esc(v.label)}</text>`,
    );
  }
  const legend: string[] = [];
  let legendY = M.top + 6;
  const lx = W - M.right + 10;
  // A legend entry's text at legendY, which it moves past. A long text wraps onto lines of 26
  // characters (the right margin) instead of being cut: the part that tells two series apart
  // (benchmark, configuration id) is at its end.
  const legendText = (text: string): string => {
    const ly = legendY;
    const parts = wrap(text, 26);
    legendY += 15 + (parts.length - 1) * 12;
    return `<text x="${lx + 14}" y="${ly}" dominant-baseline="middle">${
      parts.map((p, k) => `<tspan x="${lx + 14}" dy="${k === 0 ? 0 : 12}">${esc(p)}</tspan>`)
        .join("")
    }</text>`;
  };
  if (opts.scope) {
    legend.push(legendText(opts.scope));
    legendY += 6;
  }
  series.forEach((s, i) => {
    const { color: c, dash } = seriesStyle(i);
    const dashAttr = dash === "" ? "" : ` stroke-dasharray="${dash}"`;
    const pts = s.points.map((p) => `${px(p.x).toFixed(1)},${py(p.y).toFixed(1)}`);
    if (opts.lines && pts.length > 1) {
      body.push(
        `<polyline points="${
          pts.join(" ")
        }" fill="none" stroke="${c}" stroke-width="1.5"${dashAttr}/>`,
      );
    }
    for (const p of s.points) {
      const title = `${s.name}${p.label ? ` ${p.label}` : ""}: (${fmt(p.x)}, ${fmt(p.y)})`;
      body.push(marker(p.shape ?? "circle", px(p.x), py(p.y), c, p.hollow ?? false, title));
    }
    const ly = legendY;
    legend.push(
      opts.lines
        ? `<line x1="${lx - 4}" y1="${ly}" x2="${
          lx + 12
        }" y2="${ly}" stroke="${c}" stroke-width="2"${dashAttr}/>`
        : `<rect x="${lx}" y="${ly - 5}" width="10" height="10" fill="${c}"/>`,
      legendText(s.name),
    );
  });
  if ((opts.keys ?? []).length > 0) legendY += 6;
  for (const k of opts.keys ?? []) {
    legend.push(marker(k.shape, lx + 5, legendY, "#444", k.hollow), legendText(k.text));
  }
  // A legend longer than the plot makes the picture taller rather than running off its bottom.
  return frame(title, xLabel, yLabel, body, legend, Math.max(H, Math.ceil(legendY)));
}

/**
 * What a plot's results come from, the first line of its legend: `profile ci; model tiny-v1_1`
 * (several: listed, sorted; more than three: counted), so a picture taken out of its folder still
 * says which runs it shows. Models are named as the tables name them (`labels.ts`: two folders of
 * one name by enough of their paths to tell them apart).
 *
 * @param results the plotted results
 * @param labels the model labels (default: those of `results`)
 * @returns the scope, or "" without results
 */
export function plotScope(
  results: readonly RunResult[],
  labels: RunLabels = runLabels(results.map((r) => r.spec)),
): string {
  if (results.length === 0) return "";
  const list = (what: string, xs: readonly string[]) => {
    const u = [...new Set(xs)].sort();
    return u.length > 3
      ? `${u.length} ${what}s`
      : `${what}${u.length > 1 ? "s" : ""} ${u.join(", ")}`;
  };
  return `${list("profile", results.map((r) => r.spec.profile))}; ${
    list("model", results.map((r) => labels.model(r.spec)))
  }`;
}

/**
 * The profile at the start of a point's or line's name when the plotted results come from several
 * profiles (`ci `), else "" (the legend's scope names the one profile). The tables key their rows
 * on the profile first, so the plots do too: the same configuration under two profiles is two
 * points told apart by their profile, not by a configuration id (which hashes the profile).
 */
function profileTag(plotted: readonly RunResult[]): (r: RunResult) => string {
  const several = new Set(plotted.map((r) => r.spec.profile)).size > 1;
  return (r) => (several ? `${r.spec.profile} ` : "");
}

/** A setup's (backend, device) pairs ({@link setupPairs}). */
type Setup = readonly (readonly [string, string])[];

/**
 * A setup as a point's label ends with it, among the (distinct) setups of its configuration: its
 * backends (`cpu`; `cpu + webgpu` for a per-task seed whose task runs ran on both) where they tell
 * those setups apart, else each backend with its device (`webgpu (NVIDIA H100)`), as the tables'
 * `backend` and `device` columns tell their rows apart.
 */
function setupText(setup: Setup, among: readonly Setup[]): string {
  const backends = (x: Setup) => [...new Set(x.map(([b]) => b))].join(" + ");
  const byBackend = new Set(among.map(backends)).size === among.length;
  return byBackend ? backends(setup) : setup.map(([b, d]) => `${b} (${d})`).join(" + ");
}

/** The marker of a benchmark's average in {@link scoreVsParamsSvg}. */
const BENCHMARK_SHAPES: Readonly<Record<string, Shape>> = { glue: "circle", super_glue: "square" };
const BENCHMARK_TITLES: Readonly<Record<string, string>> = {
  glue: "GLUE",
  super_glue: "SuperGLUE",
};

/**
 * The model and backbone of a run as the tables' `model` and `backbone` columns say them
 * (`random` too; two folders of one name told apart by their paths, `labels.ts`), labelled
 * among `results`.
 */
function labelsOf(results: readonly RunResult[]) {
  const labels = runLabels(results.map((r) => r.spec));
  return {
    labels,
    modelOf: (r: RunResult) => labels.model(r.spec),
    backboneOf: (r: RunResult) => labels.backbone(r.spec),
  };
}

/**
 * Benchmark average (mean over seeds, 0-100) against extra parameters (% of the backbone, log
 * scale): one colour per method label; the marker's shape says the benchmark (circle GLUE, square
 * SuperGLUE) and a hollow marker a randomly initialised backbone, as the legend's key explains;
 * one point per profile, model, backbone, benchmark, configuration and setup, as `scores.csv` has
 * one row: seeds are averaged only within one {@link configId} and one setup (the backends and
 * devices they ran on, `setups.ts` {@link setupOfRuns}, the tables' key), so a CPU seed and a GPU
 * seed of one configuration are two points. A point's label starts with its profile when the plot
 * shows several; a point whose label shares its profile, model and benchmark with another
 * configuration's carries the id; a configuration's points of several setups end with theirs
 * (`on cpu`, `on webgpu`; with the devices, `on webgpu (NVIDIA H100)`, where the backends alone do
 * not tell them apart). A run on a task subset is labelled with its task count (`glue 2/8 tasks`),
 * as the tables put it in `<benchmark>_partial_avg`, and the y axis says so when any point is. A
 * per-task method's configuration and setup with a task run missing in any seed (`per_task.ts`
 * `missingTaskRuns` of a merged result) has no point, as its table row has no average.
 *
 * @param results run results (per-task runs merged by `mergePerTaskRuns`)
 * @returns SVG text
 */
export function scoreVsParamsSvg(results: readonly RunResult[]): string {
  const { labels, modelOf, backboneOf } = labelsOf(results);
  const profileOf = profileTag(results.filter((r) => r.averages[r.spec.benchmark] !== undefined));
  const baseKey = (r: RunResult) => {
    const b = r.spec.benchmark as BenchmarkName;
    const all = BENCHMARK_TASKS[b] ?? [];
    const n = all.filter((t) => t in r.best).length;
    const part = n < all.length ? ` ${n}/${all.length} tasks` : "";
    return `${profileOf(r)}${modelOf(r)} ${backboneOf(r)} ${b}${part}`;
  };
  // The tables' setup key: seeds of other backends or devices are never averaged together.
  const setupOf = (r: RunResult) => setupOfRuns([r]);
  const configs = new Map<string, Set<string>>();
  const setups = new Map<string, Map<string, Setup>>();
  for (const r of results) {
    const k = `${r.spec.method.label}\u0000${baseKey(r)}`;
    const set = configs.get(k) ?? new Set();
    set.add(configId(r.spec));
    configs.set(k, set);
    const ck = `${k}\u0000${configId(r.spec)}`;
    setups.set(ck, (setups.get(ck) ?? new Map()).set(setupOf(r), setupPairs([r])));
  }
  // As in the tables: a configuration and setup whose per-task method lacks a task run in any
  // seed (`per_task.ts`) has no average, never the mean of the seeds whose task runs all finished.
  const cellKey = (r: RunResult) => `${configId(r.spec)}\u0000${setupOf(r)}`;
  const incomplete = new Set(results.filter((r) => missingTaskRuns(r).length > 0).map(cellKey));
  type Acc = {
    label: string;
    x: number;
    ys: number[];
    shape: Shape;
    hollow: boolean;
    partial: boolean;
  };
  const acc = new Map<string, Map<string, Acc>>();
  for (const r of results) {
    const y = r.averages[r.spec.benchmark];
    if (y === undefined || incomplete.has(cellKey(r))) continue;
    const label = r.spec.method.label;
    const base = baseKey(r);
    const several = configs.get(`${label}\u0000${base}`)!.size > 1;
    const ofConfig = setups.get(`${label}\u0000${base}\u0000${configId(r.spec)}`)!;
    const pointLabel = `${base}${several ? ` config ${configId(r.spec)}` : ""}${
      ofConfig.size > 1 ? ` on ${setupText(setupPairs([r]), [...ofConfig.values()])}` : ""
    }`;
    // Keyed by the setup too, not by the label alone: two setups are never one point.
    const key = `${pointLabel}\u0000${setupOf(r)}`;
    const m = acc.get(label) ?? new Map();
    acc.set(label, m);
    const p = m.get(key) ?? {
      label: pointLabel,
      x: r.params.extraPct,
      ys: [],
      shape: BENCHMARK_SHAPES[r.spec.benchmark] ?? "triangle",
      hollow: (r.spec.backbone ?? "random") === "random",
      partial: BENCHMARK_TASKS[r.spec.benchmark as BenchmarkName]?.some((t) => !(t in r.best)) ??
        false,
    };
    p.ys.push(y);
    m.set(key, p);
  }
  const order = (label: string) => {
    const r = results.find((x) => x.spec.method.label === label)!;
    return METHOD_NAMES.indexOf(r.spec.method.name);
  };
  const series: Series[] = [...acc.keys()].sort((a, b) =>
    order(a) - order(b) || compareLabels(a, b)
  )
    .map((name) => ({
      name,
      points: [...acc.get(name)!].sort(([a], [b]) => (a < b ? -1 : 1)).map(([, p]) => ({
        x: p.x,
        y: p.ys.reduce((a, b) => a + b, 0) / p.ys.length,
        label: p.label,
        shape: p.shape,
        hollow: p.hollow,
      })),
    }));
  const points = [...acc.values()].flatMap((m) => [...m.values()]);
  const keys: LegendKey[] = [];
  for (const [b, shape] of Object.entries(BENCHMARK_SHAPES)) {
    if (points.some((p) => p.shape === shape)) {
      keys.push({ shape, hollow: false, text: `${BENCHMARK_TITLES[b]} average` });
    }
  }
  if (points.some((p) => p.shape === "triangle")) {
    keys.push({ shape: "triangle", hollow: false, text: "other benchmark" });
  }
  if (points.some((p) => p.hollow)) {
    keys.push({ shape: "circle", hollow: true, text: "hollow: random backbone" });
  }
  const partial = points.some((p) => p.partial);
  return plot(
    "Benchmark average vs extra parameters",
    "extra parameters (% of backbone, log scale)",
    partial ? "average score (0-100; some over a task subset)" : "average score (0-100)",
    series,
    {
      logX: true,
      keys,
      scope: plotScope(
        results.filter((r) => r.averages[r.spec.benchmark] !== undefined),
        labels,
      ),
    },
  );
}

/**
 * Attention mass on hyper-prompts per layer (a fraction of the attention, 0-1, on a fixed 0-1
 * axis; encoder layers, then decoder layers offset by the encoder depth, with a dashed line where
 * the decoder starts when every line has the same encoder depth), mean over tasks and seeds: one
 * line per method label, profile (named after the label when the plot shows several), model,
 * backbone and benchmark; as in the tables, seeds are averaged only within one configuration
 * ({@link configId}; a line that shares its name with another configuration's carries the id).
 * Unlike {@link scoreVsParamsSvg}, seeds of one configuration that ran on other backends or
 * devices share its line, so that the plot shows what `attention_mass.csv` holds: one row per
 * configuration, that table having no backend or device column to tell two setups' rows apart
 * (attention mass describes the trained model, which every backend trains to one spec; no
 * throughput or time is averaged here).
 *
 * @param results run results
 * @returns SVG text
 */
export function attentionMassSvg(results: readonly RunResult[]): string {
  const { labels, modelOf, backboneOf } = labelsOf(results);
  const profileOf = profileTag(results.filter((r) => r.attentionMass !== undefined));
  const baseName = (r: RunResult) =>
    `${r.spec.method.label} ${profileOf(r)}${modelOf(r)} ${backboneOf(r)} ${r.spec.benchmark}`;
  const configs = new Map<string, Set<string>>();
  const encoderDepths = new Set<number>();
  for (const r of results) {
    if (r.attentionMass === undefined) continue;
    const base = baseName(r);
    const set = configs.get(base) ?? new Set();
    set.add(configId(r.spec));
    configs.set(base, set);
    for (const am of Object.values(r.attentionMass)) encoderDepths.add(am.encoder.length);
  }
  const acc = new Map<string, number[][]>();
  for (const r of results) {
    if (r.attentionMass === undefined) continue;
    const base = baseName(r);
    const name = configs.get(base)!.size > 1 ? `${base} config ${configId(r.spec)}` : base;
    const layers = acc.get(name) ?? [];
    acc.set(name, layers);
    for (const am of Object.values(r.attentionMass)) {
      [...am.encoder, ...am.decoder].forEach((v, i) => {
        (layers[i] ??= []).push(v);
      });
    }
  }
  const series: Series[] = [...acc.keys()].sort(compareLabels).map((name) => ({
    name,
    points: acc.get(name)!.map((vs, i) => ({ x: i, y: vs.reduce((a, b) => a + b, 0) / vs.length })),
  }));
  const [depth] = encoderDepths;
  const vLines = encoderDepths.size === 1 && depth! > 0
    ? [{ x: depth! - 0.5, label: "decoder" }]
    : [];
  return plot(
    "Attention mass on hyper-prompts per layer",
    encoderDepths.size === 1
      ? `layer (encoder 0-${depth! - 1}, then decoder from ${depth})`
      : "layer (encoder, then decoder)",
    "attention mass on hyper-prompts (fraction, 0-1)",
    series,
    {
      lines: true,
      integerX: true,
      yRange: [0, 1],
      vLines,
      scope: plotScope(results.filter((r) => r.attentionMass !== undefined), labels),
    },
  );
}
