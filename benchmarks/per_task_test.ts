import assert from "node:assert/strict";
import { countingRunOne, fakeRunOne } from "./_fake_run_one.ts";
import { expandGrid, runGrid } from "./runner.ts";
import { configId, type RunResult, type RunSpec, validateProfile } from "./spec.ts";
import {
  isPerTaskRun,
  mergedThroughput,
  mergePerTaskRuns,
  missingTaskRuns,
  perTaskParts,
} from "./per_task.ts";
import { flopsTable, scoresTable } from "./tables.ts";
import { scoreVsParamsSvg } from "./plots.ts";
import { compareResults, loadResults, runKey } from "./compare.ts";
import { BENCHMARK_TASKS } from "../tasks/mod.ts";

const ALL = BENCHMARK_TASKS;

/** A profile with MTL (multi-task) and Prompt-Tuning per task on every GLUE task. */
function profile(perTask: unknown = true) {
  return validateProfile({
    name: "pt",
    seeds: [0, 1],
    models: ["tiny-v1_1"],
    benchmarks: ["glue"],
    methods: [
      { name: "mtl" },
      {
        name: "prompt_tuning",
        label: "Prompt-Tuning",
        perTask,
        train: { steps: 6, batchSize: 4, learningRate: 0.3 },
      },
    ],
    train: { steps: 4, evalEvery: 2, batchSize: 8 },
  }, { file: "pt.json" });
}

function grid(p = profile()): RunSpec[] {
  return expandGrid(p, {
    dataDir: "/nonexistent",
    catalog: { benchmarkTasks: (b) => BENCHMARK_TASKS[b], isAvailable: () => true },
  });
}

async function results(specs: readonly RunSpec[]): Promise<RunResult[]> {
  return await Promise.all(specs.map((s) => fakeRunOne(s, { outDir: "", dataDir: "" })));
}

function column(t: (string | number)[][], row: (string | number)[], name: string) {
  return row[t[0]!.indexOf(name)];
}

Deno.test("mergePerTaskRuns() makes one result per seed: every task's best, the benchmark average as a multi-task run's, summed prompts", async () => {
  const specs = grid();
  const pt = specs.filter((s) => s.perTaskOf !== undefined);
  const rs = await results(specs);
  const merged = mergePerTaskRuns(rs);
  // 2 MTL runs untouched + one merged Prompt-Tuning result per seed.
  assert.equal(merged.length, 2 + 2);
  const m0 = merged.find((r) => perTaskParts(r) !== undefined && r.spec.seed === 0)!;
  assert.equal(isPerTaskRun(m0), false);
  assert.deepEqual(m0.spec.tasks, ALL.glue);
  assert.deepEqual(m0.spec.perTaskOf, ALL.glue);
  assert.deepEqual(missingTaskRuns(m0), []);
  const parts = rs.filter((r) => r.spec.perTaskOf !== undefined && r.spec.seed === 0);
  assert.equal(parts.length, 8);
  assert.deepEqual(perTaskParts(m0), parts); // in task order
  // Hand computation: the GLUE average is the unweighted mean of the 8 tasks' best group scores
  // (T5's benchmark average, the same function a multi-task run's result uses); each task's
  // best comes from its own run.
  const byHand = parts.reduce((a, r) => a + r.best[r.spec.tasks[0]!]!.groupScore, 0) / 8;
  assert.ok(Math.abs(m0.averages.glue! - byHand) <= 1e-12, `${m0.averages.glue} vs ${byHand}`);
  for (const r of parts) assert.deepEqual(m0.best[r.spec.tasks[0]!], r.best[r.spec.tasks[0]!]);
  // Frozen part shared, trained part per task: the fake trains `extra` for prompt_tuning.
  const p = parts[0]!.params;
  const extra = parts.reduce((a, r) => a + r.params.extra, 0);
  assert.equal(m0.params.extra, extra);
  assert.equal(m0.params.total, p.total - p.extra + extra);
  assert.equal(m0.params.trained, extra);
  assert.ok(Math.abs(m0.params.trainedPerTaskPct - 100 * extra / 8 / (p.total - p.extra)) < 1e-12);
  assert.equal(m0.wallSeconds, 8);
  assert.equal(pt.length, 16);
  // Throughput: all tokens over all training seconds of the task runs (their recorded totals),
  // not the mean of their rates, nor weighted by wall time (mostly evaluation): a run that
  // evaluated 100 times longer does not count more.
  const tokens = parts.reduce((a, r) => a + r.trainTokens!, 0);
  const seconds = parts.reduce((a, r) => a + r.trainSeconds!, 0);
  assert.equal(m0.trainTokens, tokens);
  assert.equal(m0.trainSeconds, seconds);
  assert.equal(m0.tokensPerSecond, tokens / seconds);
  const rates = parts.map((r) => r.tokensPerSecond);
  const mean = rates.reduce((a, b) => a + b, 0) / 8;
  assert.ok(new Set(parts.map((r) => r.trainSeconds)).size > 1, "the fake's seconds differ");
  assert.ok(Math.abs(m0.tokensPerSecond - mean) > 1, `total rate ${m0.tokensPerSecond} = mean`);
  const slow = rs.map((r) => r === parts[0] ? { ...r, wallSeconds: 100 } : r);
  const m0slow = mergePerTaskRuns(slow).find((r) => r.spec.perTaskOf && r.spec.seed === 0)!;
  assert.equal(m0slow.tokensPerSecond, m0.tokensPerSecond);
  assert.equal(m0slow.wallSeconds, 107);
});

Deno.test("mergePerTaskRuns(): task runs without training totals (older results) merge to the mean of their rates", async () => {
  const rs = await results(grid());
  const parts = rs.filter((r) => r.spec.perTaskOf !== undefined && r.spec.seed === 0);
  const mean = parts.reduce((a, r) => a + r.tokensPerSecond, 0) / 8;
  const strip = (r: RunResult): RunResult => {
    const { trainTokens: _t, trainSeconds: _s, ...rest } = r;
    return rest;
  };
  // One task run written before the fields existed is enough: its share of the total is unknown.
  for (const old of [parts.map(strip), [strip(parts[0]!), ...parts.slice(1)]]) {
    const m = mergePerTaskRuns(old)[0]!;
    assert.deepEqual(perTaskParts(m), old);
    assert.ok(Math.abs(m.tokensPerSecond - mean) <= 1e-12 * mean, `${m.tokensPerSecond}`);
    assert.equal(m.trainTokens, undefined);
    assert.equal(m.trainSeconds, undefined);
    assert.equal(mergedThroughput(old).mean, true);
    // flops.csv says so, though the row has one seed (one merged result).
    const f = flopsTable(old);
    const row = f.find((r) => r[f[0]!.indexOf("method")] === "Prompt-Tuning")!;
    assert.equal(row[f[0]!.indexOf("tokens_per_second_from")], "mean of rates");
  }
  assert.equal(mergedThroughput(parts).mean, false);
  // Totals of no training time: a rate of 0, never NaN (0 / 0) in flops.csv.
  const idle = parts.map((r) => ({ ...r, trainTokens: 0, trainSeconds: 0 }));
  assert.deepEqual(mergedThroughput(idle), {
    tokensPerSecond: 0,
    trainTokens: 0,
    trainSeconds: 0,
    mean: false,
  });
});

Deno.test("mergePerTaskRuns(): a missing task run leaves no average and is named; a duplicate is refused", async () => {
  const rs = await results(grid());
  const without = rs.filter((r) =>
    !(r.spec.seed === 1 && r.spec.tasks[0] === "rte" && r.spec.perTaskOf)
  );
  const m1 = mergePerTaskRuns(without).find((r) => r.spec.perTaskOf && r.spec.seed === 1)!;
  assert.deepEqual(missingTaskRuns(m1), ["rte"]);
  assert.deepEqual(m1.averages, {});
  assert.equal("rte" in m1.best, false);
  // The row still serves 8 tasks: the absent run's prompt is counted (every task run of the
  // configuration trains the same number of parameters), so params.csv and the plot's x do not
  // shrink to 7 prompts while trained_per_task_pct stays one task's share.
  const whole = mergePerTaskRuns(rs).find((r) => r.spec.perTaskOf && r.spec.seed === 1)!;
  assert.deepEqual(m1.params, whole.params);
  const one = mergePerTaskRuns(rs.filter((r) => !r.spec.perTaskOf || r.spec.tasks[0] === "cola"));
  const part = rs.find((r) => r.spec.perTaskOf && r.spec.seed === 0 && r.spec.tasks[0] === "cola")!;
  const backbone = part.params.total - part.params.extra;
  const m0 = one.find((r) => r.spec.perTaskOf && r.spec.seed === 0)!;
  assert.equal(m0.params.extra, 8 * part.params.extra);
  assert.ok(
    Math.abs(m0.params.trainedPerTaskPct - 100 * part.params.trained / backbone) < 1e-12,
    `${m0.params.trainedPerTaskPct}`,
  );
  const dup = rs.find((r) => r.spec.perTaskOf && r.spec.tasks[0] === "cola")!;
  const copy = structuredClone(dup);
  assert.throws(
    () => mergePerTaskRuns([...rs, copy], (r) => (r === copy ? "copy.json" : "orig.json")),
    /Two results for the cola run of configuration .* and seed 0: orig\.json and copy\.json/,
  );
});

Deno.test("scoresTable() shows one Prompt-Tuning row from its task runs; a failed task run blanks the average and is named", async () => {
  const rs = await results(grid());
  const t = scoresTable(rs, []);
  const rows = t.slice(1).filter((r) => column(t, r, "method") === "Prompt-Tuning");
  assert.equal(rows.length, 1);
  const row = rows[0]!;
  assert.equal(column(t, row, "seeds"), 2);
  assert.equal(column(t, row, "glue_tasks"), 8);
  const parts = rs.filter((r) => r.spec.perTaskOf !== undefined);
  const r2 = (x: number) => Math.round(x * 100) / 100;
  for (const task of ALL.glue) {
    const xs = parts.filter((r) => r.spec.tasks[0] === task).map((r) => r.best[task]!.groupScore);
    assert.equal(column(t, row, `glue/${task}`), r2((xs[0]! + xs[1]!) / 2), task);
  }
  const avg = (seed: number) =>
    parts.filter((r) => r.spec.seed === seed).reduce(
      (a, r) => a + r.best[r.spec.tasks[0]!]!.groupScore,
      0,
    ) / 8;
  assert.equal(column(t, row, "glue_avg"), r2((avg(0) + avg(1)) / 2));
  assert.equal(column(t, row, "missing_runs"), "");
  assert.equal(column(t, row, "config"), `glue:${configId(parts[0]!.spec)}`);
  // The MTL row is as before: one multi-task run per seed.
  const mtl = t.slice(1).find((r) => column(t, r, "method") === "mtl")!;
  assert.equal(column(t, mtl, "glue_avg"), r2((rs[0]!.averages.glue! + rs[1]!.averages.glue!) / 2));

  const failed = rs.filter((r) =>
    !(r.spec.perTaskOf && r.spec.seed === 1 && r.spec.tasks[0] === "qqp")
  );
  const t2 = scoresTable(failed, []);
  const row2 = t2.slice(1).find((r) => column(t2, r, "method") === "Prompt-Tuning")!;
  assert.equal(column(t2, row2, "missing_runs"), "glue/s1:qqp");
  for (const c of ["glue_avg", "glue_std", "glue_partial_avg", "glue_partial_std", "glue_tasks"]) {
    assert.equal(column(t2, row2, c), "", c);
  }
  // The task's other seed still shows in its column, as a per-task mean over the runs there.
  const qqp0 = parts.find((r) => r.spec.seed === 0 && r.spec.tasks[0] === "qqp")!;
  assert.equal(column(t2, row2, "glue/qqp"), r2(qqp0.best.qqp!.groupScore));
  // flops.csv: the whole row's wall time is the sum of its task runs (mean over seeds), blank
  // while one is missing (the sum of the runs present would pass for it).
  const f = flopsTable(rs);
  const frow = f.slice(1).find((r) => column(f, r, "method") === "Prompt-Tuning")!;
  const wall = (seed: number) =>
    parts.filter((r) => r.spec.seed === seed).reduce((a, r) => a + r.wallSeconds, 0);
  assert.equal(column(f, frow, "wall_seconds"), r2((wall(0) + wall(1)) / 2));
  const f2 = flopsTable(failed);
  const frow2 = f2.slice(1).find((r) => column(f2, r, "method") === "Prompt-Tuning")!;
  assert.equal(column(f2, frow2, "wall_seconds"), "");
  assert.equal(typeof column(f2, frow2, "tokens_per_second"), "number");
  // tokens_per_second: every task run of every seed, total tokens over total seconds (the
  // seeds' merged results carry their task runs' totals).
  const sum = (f: (r: RunResult) => number) => parts.reduce((a, r) => a + f(r), 0);
  assert.equal(
    column(f, frow, "tokens_per_second"),
    r2(sum((r) => r.trainTokens!) / sum((r) => r.trainSeconds!)),
  );
  assert.equal(column(f, frow, "tokens_per_second_from"), "totals");
});

Deno.test("compareResults() gates each task run under its own key and the merged average; a missing task run fails", async () => {
  const rs = await results(grid());
  const tol = { default: 0.5, metrics: {} };
  const keys = rs.map(runKey);
  assert.equal(new Set(keys).size, keys.length);
  assert.ok(keys.includes("pt/tiny-v1_1/random/glue/Prompt-Tuning[cola]/s0"));
  assert.ok(keys.includes("pt/tiny-v1_1/random/glue/mtl/s0"));
  assert.equal(compareResults(rs, rs, tol).ok, true);

  const lost = rs.filter((r) =>
    !(r.spec.perTaskOf && r.spec.seed === 0 && r.spec.tasks[0] === "rte")
  );
  const c = compareResults(lost, rs, tol);
  assert.equal(c.ok, false);
  assert.deepEqual(c.failures.map((f) => [f.run, f.field, f.current]), [
    ["pt/tiny-v1_1/random/glue/Prompt-Tuning[rte]/s0", "run", "missing"],
    [
      "pt/tiny-v1_1/random/glue/Prompt-Tuning/s0",
      "averages.glue (per-task runs merged)",
      "missing (no run of rte)",
    ],
  ]);
  // A shard: the missing run and the incomplete average are not failures, the average a note.
  const shard = compareResults(lost, rs, tol, { partial: true });
  assert.equal(shard.ok, true);
  assert.ok(
    shard.notes.some((n) =>
      /Prompt-Tuning\/s0: averages\.glue .* not compared: missing \(no run of rte\)/.test(n)
    ),
  );

  // A baseline that lacks a task run cannot gate the merged average: a note says so (it was
  // passed over silently), while the current run's extra task run is noted as ungated too.
  const noBase = compareResults(rs, lost, tol);
  assert.equal(noBase.ok, true);
  assert.ok(
    noBase.notes.includes(
      "pt/tiny-v1_1/random/glue/Prompt-Tuning/s0: averages.glue (per-task runs merged) not " +
        "gated: the baseline has no run of rte",
    ),
    noBase.notes.join("\n"),
  );

  // One task's score moved beyond tolerance in seed 1: that task run fails, and so does the
  // merged average when it moved by more than its tolerance (1/8 of a 10-point move).
  const moved = rs.map((r) => {
    if (!(r.spec.perTaskOf && r.spec.seed === 1 && r.spec.tasks[0] === "cola")) return r;
    const x = structuredClone(r);
    const b = x.best.cola! as { groupScore: number; metrics: Record<string, number> };
    b.groupScore += 10;
    for (const k of Object.keys(b.metrics)) b.metrics[k]! += 10;
    return x;
  });
  const m = compareResults(moved, rs, tol);
  assert.deepEqual(m.failures.map((f) => [f.run, f.field.split(".")[0]]), [
    ["pt/tiny-v1_1/random/glue/Prompt-Tuning[cola]/s1", "best"],
    ["pt/tiny-v1_1/random/glue/Prompt-Tuning/s1", "averages"],
  ]);
  const avg = m.failures[1]!;
  // Unrounded float64 means of 8 scores near 80: rounding ~1e-14, so 1e-9 (1e-3 would let a
  // wrong divisor of 8.006 pass).
  assert.ok(Math.abs((avg.current as number) - (avg.baseline as number) - 10 / 8) < 1e-9);
});

Deno.test("runGrid() with a failing task run: the others are written, resume reruns only it, the tables name it until then", async () => {
  const dir = await Deno.makeTempDir({ prefix: "per_task_" });
  try {
    const specs = grid();
    const bad = specs.find((s) => s.perTaskOf && s.seed === 0 && s.tasks[0] === "mnli")!;
    const failing = countingRunOne((s) => s.id === bad.id);
    const first = await runGrid(specs, { outDir: dir, dataDir: "", runOne: failing.runOne });
    assert.equal(first.done, specs.length - 1);
    assert.deepEqual(first.failed.map((f) => f.spec.id), [bad.id]);
    const files = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".json"));
    assert.equal(files.length, specs.length - 1);
    assert.ok(
      files.some((f) => f.startsWith("pt--tiny-v1_1--random--glue--Prompt-Tuning--cola--s0--")),
    );
    const t = scoresTable(await loadResults(dir), []);
    const row = t.slice(1).find((r) => column(t, r, "method") === "Prompt-Tuning")!;
    assert.equal(column(t, row, "missing_runs"), "glue/s0:mnli");
    assert.equal(column(t, row, "glue_avg"), "");

    const rerun = countingRunOne();
    const again = await runGrid(specs, {
      outDir: dir,
      dataDir: "",
      resume: true,
      runOne: rerun.runOne,
    });
    assert.deepEqual(rerun.ids(), [bad.id]);
    assert.equal(again.skipped, specs.length - 1);
    const t2 = scoresTable(await loadResults(dir), []);
    const row2 = t2.slice(1).find((r) => column(t2, r, "method") === "Prompt-Tuning")!;
    assert.equal(column(t2, row2, "missing_runs"), "");
    assert.equal(typeof column(t2, row2, "glue_avg"), "number");
    assert.deepEqual(
      scoresTable(await loadResults(dir), []),
      scoresTable(await results(specs), []),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a profile's perTask must be true or false, named by its path", () => {
  assert.throws(() => profile("yes"), {
    message: 'pt.json: $.methods[1].perTask must be true or false, got "yes"',
  });
  // false is the default: the same grid as without the field.
  const noField = validateProfile({
    ...JSON.parse(JSON.stringify({
      name: "pt",
      seeds: [0, 1],
      models: ["tiny-v1_1"],
      benchmarks: ["glue"],
      methods: [{ name: "mtl" }, {
        name: "prompt_tuning",
        label: "Prompt-Tuning",
        train: { steps: 6, batchSize: 4, learningRate: 0.3 },
      }],
      train: { steps: 4, evalEvery: 2, batchSize: 8 },
    })),
  }, { file: "pt.json" });
  assert.deepEqual(grid(profile(false)).map((s) => s.id), grid(noField).map((s) => s.id));
});

Deno.test("scoreVsParamsSvg() of merged runs: a Prompt-Tuning seed without a task run leaves no point, as the table's average is blank", async () => {
  const rs = await results(grid());
  // Data points: markers with a hover title (the legend's markers have none).
  const circles = (svg: string) => svg.match(/<(circle|rect|polygon) [^>]*><title>/g)?.length ?? 0;
  const titles = (svg: string) => [...svg.matchAll(/<title>([^<]*)<\/title>/g)].map((m) => m[1]!);
  const all = scoreVsParamsSvg(mergePerTaskRuns(rs));
  assert.equal(circles(all), 2); // MTL and Prompt-Tuning, each a mean over both seeds
  const failed = rs.filter((r) =>
    !(r.spec.perTaskOf && r.spec.seed === 1 && r.spec.tasks[0] === "qqp")
  );
  const svg = scoreVsParamsSvg(mergePerTaskRuns(failed));
  // Only MTL: seed 0's complete Prompt-Tuning average alone is not the row's mean over seeds.
  assert.equal(circles(svg), 1, titles(svg).join("; "));
  assert.ok(titles(svg).every((t) => t.startsWith("mtl ")), titles(svg).join("; "));
});

Deno.test("two configurations of one per-task method (an edited prompt length, a second profile), three seeds each: a row each, never merged or pooled", async () => {
  const pt = (name: string, config: Record<string, unknown>) =>
    grid(validateProfile({
      name,
      seeds: [0, 1, 2],
      models: ["tiny-v1_1"],
      benchmarks: ["glue"],
      methods: [{ name: "prompt_tuning", label: "Prompt-Tuning", perTask: true, config }],
      train: { steps: 4, evalEvery: 2, batchSize: 8 },
    }, { file: `${name}.json` }));
  // "pt" before and after its prompt length was edited (one label, stale results beside new
  // ones), and "pt2" with pt's first configuration: three configurations, 8 task runs x 3 seeds.
  const specs = [...pt("pt", {}), ...pt("pt", { length: 5 }), ...pt("pt2", {})];
  const ids = [...new Set(specs.map((s) => configId(s)))];
  assert.equal(ids.length, 3);
  // The stale configuration lacks one task run in seed 2: only its row may say so.
  const lost = (r: RunResult) =>
    configId(r.spec) === ids[1] && r.spec.seed === 2 && r.spec.tasks[0] === "rte";
  const all = await results(specs);
  const rs = all.filter((r) => !lost(r));
  assert.equal(rs.length, 3 * 3 * 8 - 1);

  const merged = mergePerTaskRuns(rs);
  assert.equal(merged.length, 3 * 3);
  for (const m of merged) {
    const parts = perTaskParts(m)!;
    assert.equal(parts.length, configId(m.spec) === ids[1] && m.spec.seed === 2 ? 7 : 8);
    assert.ok(
      parts.every((p) => configId(p.spec) === configId(m.spec) && p.spec.seed === m.spec.seed),
    );
  }

  const r2 = (x: number) => Math.round(x * 100) / 100;
  const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = (xs: readonly number[]) =>
    Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / (xs.length - 1));
  // Each configuration's seed averages by hand, from its own task runs only.
  const seedAvg = (id: string, seed: number) =>
    mean(
      all.filter((r) => configId(r.spec) === id && r.spec.seed === seed)
        .map((r) => r.best[r.spec.tasks[0]!]!.groupScore),
    );
  const avgOf = (id: string) => [0, 1, 2].map((s) => seedAvg(id, s));
  // The fake's scores hash the run id, so pooling any two configurations would change a mean.
  assert.notEqual(r2(mean(avgOf(ids[0]!))), r2(mean(avgOf(ids[2]!))));

  const t = scoresTable(rs, []);
  const rows = t.slice(1).filter((r) => column(t, r, "method") === "Prompt-Tuning");
  assert.equal(rows.length, 3);
  const rowOf = (id: string) => {
    const found = rows.filter((r) => column(t, r, "config") === `glue:${id}`);
    assert.equal(found.length, 1, id);
    return found[0]!;
  };
  for (const [i, id] of ids.entries()) {
    const row = rowOf(id);
    assert.equal(column(t, row, "profile"), i === 2 ? "pt2" : "pt");
    assert.equal(column(t, row, "seeds"), 3);
    assert.equal(column(t, row, "seed_values"), "0,1,2");
    for (const task of ALL.glue) {
      const xs = rs.filter((r) => configId(r.spec) === id && r.spec.tasks[0] === task)
        .map((r) => r.best[task]!.groupScore);
      assert.equal(xs.length, i === 1 && task === "rte" ? 2 : 3, task);
      assert.equal(column(t, row, `glue/${task}`), r2(mean(xs)), `${id} ${task}`);
    }
    if (i === 1) {
      assert.equal(column(t, row, "missing_runs"), "glue/s2:rte");
      assert.equal(column(t, row, "glue_avg"), "");
    } else {
      assert.equal(column(t, row, "missing_runs"), "");
      assert.equal(column(t, row, "glue_tasks"), 8);
      assert.equal(column(t, row, "glue_avg"), r2(mean(avgOf(id))));
      assert.equal(column(t, row, "glue_std"), r2(sd(avgOf(id))));
    }
  }

  // flops.csv: a row per configuration, each over its own task runs' totals.
  const f = flopsTable(rs);
  const frows = f.slice(1).filter((r) => column(f, r, "method") === "Prompt-Tuning");
  assert.deepEqual(frows.map((r) => column(f, r, "config")).sort(), [...ids].sort());
  for (const id of ids) {
    const own = rs.filter((r) => configId(r.spec) === id);
    const frow = frows.find((r) => column(f, r, "config") === id)!;
    const sum = (g: (r: RunResult) => number) => own.reduce((a, r) => a + g(r), 0);
    assert.equal(
      column(f, frow, "tokens_per_second"),
      r2(sum((r) => r.trainTokens!) / sum((r) => r.trainSeconds!)),
    );
  }

  // The plot: one point per complete configuration, named by its profile (two are plotted), and
  // pt's by its id too (pt has two configurations); the configuration with a missing task run
  // has none.
  const titles = [...scoreVsParamsSvg(merged).matchAll(/<title>([^<]*)<\/title>/g)]
    .map((m) => m[1]!.slice(0, m[1]!.lastIndexOf(": ")));
  assert.deepEqual(titles.sort(), [
    `Prompt-Tuning pt tiny-v1_1 random glue config ${ids[0]}`,
    "Prompt-Tuning pt2 tiny-v1_1 random glue",
  ]);
});

Deno.test("mergePerTaskRuns(): task runs read in any order merge as in task order", async () => {
  const rs = await results(grid());
  // Result files are listed in whatever order the folder gives (a shard's, a rerun's).
  const reversed = mergePerTaskRuns([...rs].reverse()).filter((r) => perTaskParts(r));
  const ordered = mergePerTaskRuns(rs).filter((r) => perTaskParts(r));
  assert.equal(reversed.length, 2);
  for (const m of reversed) {
    const twin = ordered.find((o) => o.spec.seed === m.spec.seed)!;
    assert.deepEqual(perTaskParts(m)!.map((r) => r.spec.tasks[0]), ALL.glue);
    assert.deepEqual(m.evals.map((e) => e.task), twin.evals.map((e) => e.task));
    assert.deepEqual(Object.keys(m.best), ALL.glue);
  }
});
