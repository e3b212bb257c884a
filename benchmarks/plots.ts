/**
 * Small hand-written SVG plots of run results: benchmark average against extra parameters (the
 * paper's Pareto figure, §4.2) and attention mass on hyper-prompts per layer (§4.6).
 *
 * @module
 */
import { BENCHMARK_TASKS } from "../tasks/registry.ts";
import {
  backboneLabel,
  type BenchmarkName,
  configId,
  METHOD_NAMES,
  modelLabel,
  type RunResult,
} from "./spec.ts";
import { missingTaskRuns } from "./per_task.ts";

const W = 640;
const H = 400;
const M = { left: 60, right: 180, top: 30, bottom: 50 };
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
];

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(
    /"/g,
    "&quot;",
  );
}

const fmt = (
  x: number,
) => (Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 1 ? x.toFixed(1) : x.toPrecision(2));

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

/** A named series of points. */
interface Series {
  readonly name: string;
  readonly points: readonly { readonly x: number; readonly y: number; readonly label?: string }[];
}

function frame(
  title: string,
  xLabel: string,
  yLabel: string,
  body: string[],
  legend: string[],
): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
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

function plot(
  title: string,
  xLabel: string,
  yLabel: string,
  series: readonly Series[],
  opts: { logX?: boolean; lines?: boolean },
): string {
  // Undefined scores (NaN) are not drawn; on a log axis, x = 0 sits a decade left of the
  // smallest positive x.
  series = series.map((s) => ({ ...s, points: s.points.filter((p) => Number.isFinite(p.y)) }));
  const all = series.flatMap((s) => s.points);
  const positive = all.map((p) => p.x).filter((x) => x > 0);
  const floor = positive.length ? Math.min(...positive) / 10 : 1e-3;
  if (all.length === 0) {
    return frame(title, xLabel, yLabel, [`<text x="${M.left}" y="${H / 2}">no data</text>`], []);
  }
  const tx = (x: number) => (opts.logX ? Math.log10(Math.max(x, floor)) : x);
  let [x0, x1] = [Math.min(...all.map((p) => tx(p.x))), Math.max(...all.map((p) => tx(p.x)))];
  let [y0, y1] = [Math.min(...all.map((p) => p.y)), Math.max(...all.map((p) => p.y))];
  if (x1 === x0) [x0, x1] = [x0 - 1, x1 + 1];
  if (y1 === y0) [y0, y1] = [y0 - 1, y1 + 1];
  const padY = (y1 - y0) * 0.08;
  [y0, y1] = [y0 - padY, y1 + padY];
  const px = (x: number) => M.left + ((tx(x) - x0) / (x1 - x0)) * (W - M.left - M.right);
  const py = (y: number) => H - M.bottom - ((y - y0) / (y1 - y0)) * (H - M.top - M.bottom);
  const body: string[] = [
    `<rect x="${M.left}" y="${M.top}" width="${W - M.left - M.right}" height="${
      H - M.top - M.bottom
    }" fill="none" stroke="#999"/>`,
  ];
  for (let i = 0; i <= 4; i++) {
    const y = y0 + ((y1 - y0) * i) / 4;
    body.push(
      `<text x="${M.left - 4}" y="${
        py(y).toFixed(1)
      }" text-anchor="end" dominant-baseline="middle">${fmt(y)}</text>`,
    );
    const xt = x0 + ((x1 - x0) * i) / 4;
    const xv = opts.logX ? 10 ** xt : xt;
    const xpos = M.left + (i / 4) * (W - M.left - M.right);
    body.push(
      `<text x="${xpos.toFixed(1)}" y="${H - M.bottom + 14}" text-anchor="middle">${
        fmt(xv)
      }</text>`,
    );
  }
  const legend: string[] = [];
  let legendY = M.top + 6;
  series.forEach((s, i) => {
    const c = COLORS[i % COLORS.length]!;
    const pts = s.points.map((p) => `${px(p.x).toFixed(1)},${py(p.y).toFixed(1)}`);
    if (opts.lines && pts.length > 1) {
      body.push(
        `<polyline points="${pts.join(" ")}" fill="none" stroke="${c}" stroke-width="1.5"/>`,
      );
    }
    for (const p of s.points) {
      body.push(
        `<circle cx="${px(p.x).toFixed(1)}" cy="${py(p.y).toFixed(1)}" r="3.5" fill="${c}"><title>${
          esc(`${s.name}${p.label ? ` ${p.label}` : ""}: (${fmt(p.x)}, ${fmt(p.y)})`)
        }</title></circle>`,
      );
    }
    // A long name wraps onto lines of 28 characters (the right margin) instead of being cut: the
    // part that tells two series apart (benchmark, configuration id) is at its end.
    const ly = legendY;
    const parts = wrap(s.name, 28);
    legendY += 15 + (parts.length - 1) * 12;
    legend.push(
      `<rect x="${W - M.right + 10}" y="${ly - 5}" width="10" height="10" fill="${c}"/>`,
      `<text x="${W - M.right + 24}" y="${ly}" dominant-baseline="middle">${
        parts.map((p, k) =>
          `<tspan x="${W - M.right + 24}" dy="${k === 0 ? 0 : 12}">${esc(p)}</tspan>`
        ).join("")
      }</text>`,
    );
  });
  return frame(title, xLabel, yLabel, body, legend);
}

/**
 * Benchmark average (mean over seeds) against extra parameters (% of the backbone, log scale):
 * one series per method label, one point per model (and non-random backbone), benchmark and
 * configuration (as in the tables, seeds are averaged only within one {@link configId}; a point
 * whose label shares its model and benchmark with another configuration's carries the id). A
 * run on a task subset is labelled with its task count (`glue 2/8 tasks`), as the tables put it
 * in `<benchmark>_partial_avg`. A per-task method's configuration with a task run missing in any
 * seed (`per_task.ts` `missingTaskRuns` of a merged result) has no point, as its table row has no
 * average.
 *
 * @param results run results (per-task runs merged by `mergePerTaskRuns`)
 * @returns SVG text
 */
export function scoreVsParamsSvg(results: readonly RunResult[]): string {
  const baseKey = (r: RunResult) => {
    const bb = r.spec.backbone === undefined || r.spec.backbone === "random"
      ? ""
      : ` ${backboneLabel(r.spec.backbone)}`;
    const b = r.spec.benchmark as BenchmarkName;
    const all = BENCHMARK_TASKS[b] ?? [];
    const n = all.filter((t) => t in r.best).length;
    const part = n < all.length ? ` ${n}/${all.length} tasks` : "";
    return `${modelLabel(r.spec.model)}${bb} ${b}${part}`;
  };
  const configs = new Map<string, Set<string>>();
  for (const r of results) {
    const k = `${r.spec.method.label}\u0000${baseKey(r)}`;
    const set = configs.get(k) ?? new Set();
    set.add(configId(r.spec));
    configs.set(k, set);
  }
  // As in the tables: a configuration whose per-task method lacks a task run in any seed
  // (`per_task.ts`) has no average, never the mean of the seeds whose task runs all finished.
  const incomplete = new Set(
    results.filter((r) => missingTaskRuns(r).length > 0).map((r) => configId(r.spec)),
  );
  const acc = new Map<string, Map<string, { x: number; ys: number[] }>>();
  for (const r of results) {
    const y = r.averages[r.spec.benchmark];
    if (y === undefined || incomplete.has(configId(r.spec))) continue;
    const label = r.spec.method.label;
    const base = baseKey(r);
    const several = configs.get(`${label}\u0000${base}`)!.size > 1;
    const key = `${base}${several ? ` config ${configId(r.spec)}` : ""}`;
    const m = acc.get(label) ?? new Map();
    acc.set(label, m);
    const p = m.get(key) ?? { x: r.params.extraPct, ys: [] };
    p.ys.push(y);
    m.set(key, p);
  }
  const order = (label: string) => {
    const r = results.find((x) => x.spec.method.label === label)!;
    return METHOD_NAMES.indexOf(r.spec.method.name);
  };
  const series: Series[] = [...acc.keys()].sort((a, b) => order(a) - order(b) || (a < b ? -1 : 1))
    .map((name) => ({
      name,
      points: [...acc.get(name)!].sort(([a], [b]) => (a < b ? -1 : 1)).map(([label, p]) => ({
        x: p.x,
        y: p.ys.reduce((a, b) => a + b, 0) / p.ys.length,
        label,
      })),
    }));
  return plot(
    "Benchmark average vs extra parameters",
    "extra parameters (% of backbone, log)",
    "average score",
    series,
    {
      logX: true,
    },
  );
}

/**
 * Attention mass on hyper-prompts per layer (encoder layers, then decoder layers offset by the
 * encoder depth), mean over tasks and seeds: one line per method label, model, backbone and
 * benchmark; as in the tables, seeds are averaged only within one configuration ({@link configId};
 * a line that shares its name with another configuration's carries the id).
 *
 * @param results run results
 * @returns SVG text
 */
export function attentionMassSvg(results: readonly RunResult[]): string {
  const baseName = (r: RunResult) => {
    const bb = r.spec.backbone === undefined || r.spec.backbone === "random"
      ? ""
      : ` ${backboneLabel(r.spec.backbone)}`;
    return `${r.spec.method.label} ${modelLabel(r.spec.model)}${bb} ${r.spec.benchmark}`;
  };
  const configs = new Map<string, Set<string>>();
  for (const r of results) {
    if (r.attentionMass === undefined) continue;
    const base = baseName(r);
    const set = configs.get(base) ?? new Set();
    set.add(configId(r.spec));
    configs.set(base, set);
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
  const series: Series[] = [...acc.keys()].sort().map((name) => ({
    name,
    points: acc.get(name)!.map((vs, i) => ({ x: i, y: vs.reduce((a, b) => a + b, 0) / vs.length })),
  }));
  return plot(
    "Attention mass on hyper-prompts per layer",
    "layer (encoder, then decoder)",
    "mass",
    series,
    {
      lines: true,
    },
  );
}
