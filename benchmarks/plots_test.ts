import assert from "node:assert/strict";
import { fakeRuns, fakeSpec, on } from "./results_testing.ts";
import { attentionMassSvg, niceTicks, scoreVsParamsSvg } from "./plots.ts";
import { configId, DEFAULT_TRAIN, type RunResult, type RunSpec } from "./spec.ts";
import { mergePerTaskRuns } from "./per_task.ts";
import { describeResult } from "./compare.ts";
import { BENCHMARK_TASKS } from "../tasks/registry.ts";

/** A run of `tiny-v1_1` on GLUE's RTE and CoLA (random backbone), 4 steps unless `edit` says. */
function spec(
  profile: string,
  name: RunSpec["method"]["name"],
  label: string,
  seed: number,
  edit: Partial<Omit<RunSpec, "id">> = {},
): RunSpec {
  return fakeSpec(profile, "tiny-v1_1", name, label, seed, "glue", "random", edit);
}

const runs = fakeRuns;

/** Each point's marker title (`<name> <label>: (x, y)`) or line title, in drawing order. */
const titles = (svg: string) => [...svg.matchAll(/<title>([^<]*)<\/title>/g)].map((m) => m[1]!);

/** The legend's entries (wrapped lines joined), the scope line first. */
const legend = (svg: string) =>
  [...svg.matchAll(/<text [^>]*>((?:<tspan[^>]*>[^<]*<\/tspan>)+)<\/text>/g)]
    .map((m) => m[1]!.replace(/<\/tspan><tspan[^>]*>/g, " ").replace(/<[^>]+>/g, ""));

Deno.test("scoreVsParamsSvg(): one configuration under two profiles is two points named by profile", async () => {
  const rs = await runs([
    spec("ci", "mtl", "mtl", 0),
    spec("ci", "mtl", "mtl", 1),
    spec("smoke", "mtl", "mtl", 0),
  ]);
  // The same configuration apart from the profile: the ids differ only because they hash it.
  assert.notEqual(configId(rs[0]!.spec), configId(rs[2]!.spec));
  const svg = scoreVsParamsSvg(rs);
  const t = titles(svg);
  assert.equal(t.length, 2, t.join("\n"));
  assert.ok(t[0]!.startsWith("mtl ci tiny-v1_1 random glue 2/8 tasks: "), t[0]!);
  assert.ok(t[1]!.startsWith("mtl smoke tiny-v1_1 random glue 2/8 tasks: "), t[1]!);
  // ci's point is the mean of ci's two seeds only, smoke's its one run: each point's values
  // (`(x, y)` in its title) are those of a plot of that profile's runs alone.
  const values = (x: string) => x.slice(x.lastIndexOf(": "));
  assert.equal(values(t[0]!), values(titles(scoreVsParamsSvg(rs.slice(0, 2)))[0]!));
  assert.equal(values(t[1]!), values(titles(scoreVsParamsSvg(rs.slice(2)))[0]!));
  // Told apart by the profile, as the tables' rows are, not by a configuration id.
  assert.doesNotMatch(svg, /config /);
  // One profile: the scope line names it and the points do not repeat it.
  const one = scoreVsParamsSvg(rs.slice(0, 2));
  assert.deepEqual(titles(one).map((x) => x.split(":")[0]), [
    "mtl tiny-v1_1 random glue 2/8 tasks",
  ]);
  assert.equal(legend(one)[0], "profile ci; model tiny-v1_1");
});

Deno.test("scoreVsParamsSvg(): with several profiles, a configuration id only where one profile has two", async () => {
  const steps8 = { train: { ...DEFAULT_TRAIN, steps: 8, evalEvery: 4 } };
  const rs = await runs([
    spec("ci", "mtl", "mtl", 0),
    spec("ci", "mtl", "mtl", 0, steps8),
    spec("smoke", "mtl", "mtl", 0),
  ]);
  const names = titles(scoreVsParamsSvg(rs)).map((x) => x.split(":")[0]).sort();
  const base = "tiny-v1_1 random glue 2/8 tasks";
  assert.deepEqual(
    names,
    [
      `mtl ci ${base} config ${configId(rs[0]!.spec)}`,
      `mtl ci ${base} config ${configId(rs[1]!.spec)}`,
      `mtl smoke ${base}`,
    ].sort(),
  );
});

Deno.test("attentionMassSvg(): one configuration under two profiles is two lines named by profile", async () => {
  const rs = await runs([
    spec("ci", "hyperprompt_global", "HP", 0),
    spec("smoke", "hyperprompt_global", "HP", 0),
  ]);
  const svg = attentionMassSvg(rs);
  assert.equal(svg.match(/<polyline /g)?.length, 2);
  assert.deepEqual(legend(svg), [
    "profiles ci, smoke; model tiny-v1_1",
    "HP ci tiny-v1_1 random glue",
    "HP smoke tiny-v1_1 random glue",
  ]);
  assert.doesNotMatch(svg, /config /);
  // One profile: named by the scope line only.
  assert.deepEqual(legend(attentionMassSvg(rs.slice(1))), [
    "profile smoke; model tiny-v1_1",
    "HP tiny-v1_1 random glue",
  ]);
});

Deno.test("plots name two folders of one name by their paths, never alike", async () => {
  const rs = await runs(
    ["/data/a/t5-base", "/data/b/t5-base"].map((m) =>
      spec("ci", "hyperprompt_global", "HP", 0, { model: { hf: m } })
    ),
  );
  const points = titles(scoreVsParamsSvg(rs)).map((x) => x.split(":")[0]);
  assert.deepEqual(points, [
    "HP a/t5-base random glue 2/8 tasks",
    "HP b/t5-base random glue 2/8 tasks",
  ]);
  assert.deepEqual(legend(attentionMassSvg(rs)), [
    "profile ci; models a/t5-base, b/t5-base",
    "HP a/t5-base random glue",
    "HP b/t5-base random glue",
  ]);
  // Told apart by their paths, not by configuration ids.
  assert.doesNotMatch(scoreVsParamsSvg(rs) + attentionMassSvg(rs), /config /);
  // One of them alone is named by its folder's name, as before.
  assert.deepEqual(legend(attentionMassSvg(rs.slice(1))), [
    "profile ci; model t5-base",
    "HP t5-base random glue",
  ]);
});

Deno.test("scoreVsParamsSvg(): seeds of one configuration on two setups are two points, as in scores.csv", async () => {
  // backend "auto": seeds 0 and 2 on the CPU, seed 1 on a GPU; one configuration.
  const rs = (await runs([0, 1, 2].map((seed) => spec("ci", "mtl", "mtl", seed))))
    .map((r) => r.spec.seed === 1 ? on(r, "webgpu", "NVIDIA H100") : r);
  assert.equal(new Set(rs.map((r) => configId(r.spec))).size, 1);
  const cpu = rs.filter((r) => r.spec.seed !== 1);
  const values = (x: string) => x.slice(x.lastIndexOf(": "));
  const alone = (xs: RunResult[]) => values(titles(scoreVsParamsSvg(xs))[0]!);
  // The three seeds pooled (all on one setup) give another value, else a pooled point would pass.
  assert.notEqual(alone(cpu), alone(rs.map((r) => on(r, "fake", "fake"))));
  const t = titles(scoreVsParamsSvg(rs));
  const base = "mtl tiny-v1_1 random glue 2/8 tasks";
  // One point per setup, told apart by its backend, each the mean of its own seeds only (the
  // values in `(x, y)` are those of a plot of that setup's runs alone).
  assert.deepEqual(t.map((x) => x.split(":")[0]), [`${base} on fake`, `${base} on webgpu`]);
  assert.equal(values(t[0]!), alone(cpu));
  assert.equal(values(t[1]!), alone([rs[1]!]));
  // One setup alone: no suffix, as before.
  assert.deepEqual(titles(scoreVsParamsSvg(cpu)).map((x) => x.split(":")[0]), [base]);
  // Same backend, other devices: the devices tell them apart.
  const twoGpus = rs.map((r) => on(r, "webgpu", r.spec.seed === 1 ? "NVIDIA H100" : "AMD MI300"));
  assert.deepEqual(titles(scoreVsParamsSvg(twoGpus)).map((x) => x.split(":")[0]), [
    `${base} on webgpu (AMD MI300)`,
    `${base} on webgpu (NVIDIA H100)`,
  ]);
});

Deno.test("scoreVsParamsSvg(): a per-task seed missing a task run drops its own setup's point only", async () => {
  // Prompt-Tuning's GLUE task runs: seed 0 all on the CPU, seed 1 on a GPU without CoLA. As in
  // scores.csv, the GPU row has no average and the CPU row keeps its own.
  const all = [...BENCHMARK_TASKS.glue];
  const onGpu = (r: RunResult) => on(r, "webgpu", "NVIDIA H100");
  const raw = await runs(
    [0, 1].flatMap((seed) =>
      all.filter((t) => seed === 0 || t !== "cola").map((task) =>
        spec("p", "prompt_tuning", "PT", seed, { tasks: [task], perTaskOf: all })
      )
    ),
  );
  const rs = raw.map((r) => r.spec.seed === 1 ? onGpu(r) : r);
  const merged = mergePerTaskRuns(rs, describeResult);
  const cpuOnly = mergePerTaskRuns(rs.filter((r) => r.spec.seed === 0), describeResult);
  const t = titles(scoreVsParamsSvg(merged));
  assert.deepEqual(t, titles(scoreVsParamsSvg(cpuOnly)));
  assert.deepEqual(t.map((x) => x.split(":")[0]), ["PT tiny-v1_1 random glue"]);
  // On one setup, the missing task run leaves the configuration no point at all.
  const oneSetup = mergePerTaskRuns(raw, describeResult);
  assert.deepEqual(titles(scoreVsParamsSvg(oneSetup)), []);
});

Deno.test("scoreVsParamsSvg(): x on a log scale, 0 a decade left of the least positive x, ticks in %", async () => {
  const rs = (await runs([
    spec("ci", "mtl", "mtl", 0),
    spec("ci", "prompt_tuning", "PT", 0),
    spec("ci", "hyperprompt_global", "HP", 0),
  ])).map((r, i) => ({ ...r, params: { ...r.params, extraPct: [0, 0.5, 5][i]! } }));
  const svg = scoreVsParamsSvg(rs);
  const cx = new Map(
    [...svg.matchAll(/<circle cx="([\d.]+)"[^>]*><title>(\w+) /g)].map((m) => [m[2]!, +m[1]!]),
  );
  const [zero, half, five] = ["mtl", "PT", "HP"].map((l) => cx.get(l)!) as [number, number, number];
  // The axis spans log10 0.05 (a tenth of the least positive x, where 0 is drawn) to log10 5:
  // 0.5 sits halfway (a linear axis would put it at a tenth; 0 at the floor of 0.5, on it).
  // Positions are printed to 0.1 px of a 500-odd px axis: 1e-2 of the span is ample.
  assert.ok(zero < half && half < five, `${zero} ${half} ${five}`);
  assert.ok(Math.abs((half - zero) / (five - zero) - 0.5) < 1e-2, `${zero} ${half} ${five}`);
  // Ticks read percentages (10 ** the log position), 0 at the left edge.
  const ticks = [...svg.matchAll(/<text x="[\d.]+" y="364" text-anchor="middle">([^<]*)</g)]
    .map((m) => m[1]);
  assert.deepEqual(ticks, ["0", "0.16", "0.50", "1.6", "5.0"]);
});

Deno.test("scoreVsParamsSvg(): when every x is 0 (MTL alone), the points sit at the left edge, whose only tick reads 0", async () => {
  const rs = (await runs([spec("ci", "mtl", "mtl", 0), spec("ci", "mtl", "mtl", 1)]))
    .map((r) => ({ ...r, params: { ...r.params, extraPct: 0 } }));
  const svg = scoreVsParamsSvg(rs);
  const left = Number(svg.match(/<rect x="([\d.]+)"/)![1]);
  const cxs = [...svg.matchAll(/<circle cx="([\d.]+)"[^>]*><title>/g)].map((m) => +m[1]!);
  assert.ok(cxs.length > 0, svg);
  for (const cx of cxs) assert.equal(cx, left, `at the left edge (${left}), got ${cx}`);
  const ticks = [...svg.matchAll(/<text x="([\d.]+)" y="364" text-anchor="middle">([^<]*)</g)]
    .map((m) => [+m[1]!, m[2]]);
  assert.deepEqual(ticks, [[left, "0"]]);
  assert.match(svg, /0 drawn at the left edge/);
});

Deno.test("niceTicks(): round values inside the range, 3 to 6 of them, labelled with the step's decimals", () => {
  const labels = (lo: number, hi: number) => niceTicks(lo, hi).map((t) => t.label);
  assert.deepEqual(labels(-2.9, 39.1), ["0", "10", "20", "30"]);
  assert.deepEqual(labels(-0.08, 1.08), ["0.00", "0.25", "0.50", "0.75", "1.00"]);
  assert.deepEqual(labels(-1, 1), ["-1.0", "-0.5", "0.0", "0.5", "1.0"]);
  assert.deepEqual(labels(27.5, 28.7), ["27.50", "27.75", "28.00", "28.25", "28.50"]);
  // A step of 25 needs no decimal; a range of 2.6 still gets its ticks.
  assert.deepEqual(labels(0, 110), ["0", "25", "50", "75", "100"]);
  assert.deepEqual(labels(0.2, 2.8), ["0.5", "1.0", "1.5", "2.0", "2.5"]);
  for (
    const [lo, hi] of [[-2.9, 39.1], [0, 1e-4], [3, 3.5], [-100, 250], [0.12, 0.85], [0.2, 2.8]]
  ) {
    const t = niceTicks(lo!, hi!);
    assert.ok(t.length >= 3 && t.length <= 6, `${lo}..${hi}: ${t.length}`);
    for (const { value } of t) assert.ok(value >= lo! - 1e-12 && value <= hi! + 1e-12);
    assert.ok(!t.some((x) => x.label.startsWith("-0") && Number(x.label) === 0), "no -0");
  }
  // A range of nothing (one value) is one tick.
  assert.deepEqual(niceTicks(5, 5), [{ value: 5, label: "5.0" }]);
});

Deno.test("scoreVsParamsSvg(): the score axis's ticks are round numbers", async () => {
  const rs = (await runs([
    spec("ci", "mtl", "mtl", 0),
    spec("ci", "prompt_tuning", "PT", 0),
  ])).map((r, i) => ({
    ...r,
    params: { ...r.params, extraPct: [0, 0.5][i]! },
    averages: { glue: [-2.9, 36.11][i]! },
  }));
  const yTicks = [
    ...scoreVsParamsSvg(rs).matchAll(
      /text-anchor="end" dominant-baseline="middle">([^<]*)</g,
    ),
  ].map((m) => m[1]);
  assert.deepEqual(yTicks, ["0", "10", "20", "30"]);
});
