import assert from "node:assert/strict";
import { join } from "node:path";
import { fakeRunOne } from "./_fake_run_one.ts";
import {
  compareResults,
  formatComparison,
  formatDifference,
  loadResults,
  runKey,
  shownScores,
  specDifferences,
  toleranceFor,
} from "./compare.ts";
import { BENCHMARK_TASKS, TASKS } from "../tasks/registry.ts";
import { repoPath, sharedPath } from "../model/shared_dir.ts";
import { loadProfile } from "./profile.ts";
import { defaultTaskCatalog, expandGrid } from "./runner.ts";
import {
  DEFAULT_TRAIN,
  predictionsDigest,
  runId,
  type RunResult,
  type RunSpec,
  type Tolerances,
  validateProfile,
} from "./spec.ts";

function spec(
  label: string,
  seed = 0,
  backbone: RunSpec["backbone"] = "random",
  steps = 4,
): RunSpec {
  const body: Omit<RunSpec, "id"> = {
    profile: "ci",
    model: "tiny-v1_1",
    backbone,
    benchmark: "super_glue",
    tasks: ["cb", "rte_sg"],
    method: { name: label === "mtl" ? "mtl" : "hyperprompt_global", label, config: {} },
    seed,
    train: { ...DEFAULT_TRAIN, steps, evalEvery: 2 },
    backend: "cpu",
  };
  return { id: runId(body), ...body };
}

async function fixtures(): Promise<RunResult[]> {
  const opts = { outDir: "/nonexistent", dataDir: "/nonexistent" };
  return [await fakeRunOne(spec("mtl"), opts), await fakeRunOne(spec("hp"), opts)];
}

const TOL: Tolerances = { default: 0.5, metrics: { "cb/mean_3class_f1": 2, accuracy: 1 } };

/**
 * A copy of `r` with one best metric moved by `delta`, in `best` and in the evaluation it is of
 * (the group score left as is), so that it stays a result `loadResults` accepts.
 */
function moved(r: RunResult, task: string, metric: string, delta: number): RunResult {
  const b = r.best[task]!;
  const metrics = { ...b.metrics, [metric]: b.metrics[metric]! + delta };
  return {
    ...r,
    evals: r.evals.map((e) => (e.task === task && e.step === b.step ? { ...e, metrics } : e)),
    best: { ...r.best, [task]: { ...b, metrics } },
  };
}

Deno.test("toleranceFor() prefers task/metric, then metric, then default", async () => {
  assert.equal(toleranceFor(TOL, "cb", "mean_3class_f1"), 2);
  assert.equal(toleranceFor(TOL, "cb", "accuracy"), 1);
  assert.equal(toleranceFor(TOL, "multirc", "f1"), 0.5);
  // TOL's keys are real: a profile may use them, and the fake reports those metrics for CB.
  const profile = validateProfile(
    {
      name: "t",
      models: ["tiny-v1_1"],
      benchmarks: ["super_glue"],
      methods: [{ name: "mtl" }],
      tolerances: TOL,
    },
    { file: "t.json" },
    { taskMetrics: { cb: TASKS.cb!.metrics, rte_sg: TASKS.rte_sg!.metrics } },
  );
  assert.deepEqual(profile.tolerances, TOL);
  const [r] = await fixtures();
  assert.deepEqual(Object.keys(r!.best["cb"]!.metrics), ["mean_3class_f1", "accuracy"]);
});

Deno.test("compareResults() passes identical results and moves within tolerance", async () => {
  const base = await fixtures();
  const same = compareResults(base, base, TOL);
  assert.equal(same.ok, true);
  assert.equal(same.compared, 2);
  const within = compareResults(
    [moved(base[0]!, "cb", "mean_3class_f1", 1.9), base[1]!],
    base,
    TOL,
  );
  assert.equal(within.ok, true, formatComparison(within));
  assert.match(within.notes.join("\n"), /best\.cb\.mean_3class_f1 .* \(within 2\)/);
  // A benchmark average that moved within its tolerance is noted as a score is.
  const avg = base[0]!.averages.super_glue!;
  const shifted = { ...base[0]!, averages: { ...base[0]!.averages, super_glue: avg + 0.25 } };
  const withinAvg = compareResults([shifted, base[1]!], base, TOL);
  assert.equal(withinAvg.ok, true, formatComparison(withinAvg));
  assert.deepEqual(withinAvg.notes, [
    `ci/tiny-v1_1/random/super_glue/mtl/s0: averages.super_glue ${Math.round(avg * 1e4) / 1e4} -> ${
      Math.round((avg + 0.25) * 1e4) / 1e4
    } (within 0.5)`,
  ]);
});

Deno.test("compareResults() notes a merged per-task average that moved within tolerance", async () => {
  const p = validateProfile({
    name: "pt",
    seeds: [0],
    models: ["tiny-v1_1"],
    benchmarks: ["glue"],
    methods: [{ name: "prompt_tuning", label: "PT", perTask: true }],
    train: { steps: 4, evalEvery: 2, batchSize: 8 },
  }, { file: "pt.json" });
  const specs = expandGrid(p, {
    dataDir: "/nonexistent",
    catalog: { benchmarkTasks: (b) => BENCHMARK_TASKS[b], isAvailable: () => true },
  });
  const opts = { outDir: "/nonexistent", dataDir: "/nonexistent" };
  const rs = await Promise.all(specs.map((s) => fakeRunOne(s, opts)));
  // CoLA's score up 0.4 (within the default 0.5): its run and the merged GLUE average (up 0.05,
  // the mean of 8 tasks) are notes, not failures.
  const up = rs.map((r) => {
    if (r.spec.tasks[0] !== "cola") return r;
    const x = structuredClone(r);
    const b = x.best.cola! as { groupScore: number; metrics: Record<string, number> };
    b.groupScore += 0.4;
    for (const k of Object.keys(b.metrics)) b.metrics[k]! += 0.4;
    return x;
  });
  const c = compareResults(up, rs, { default: 0.5, metrics: {} });
  assert.equal(c.ok, true, formatComparison(c));
  const merged = c.notes.filter((n) => n.includes("per-task runs merged"));
  assert.equal(merged.length, 1, c.notes.join("\n"));
  assert.match(
    merged[0]!,
    /^pt\/tiny-v1_1\/random\/glue\/PT\/s0: averages\.glue \(per-task runs merged\) [\d.]+ -> [\d.]+ \(within 0\.5\)$/,
  );
  assert.ok(c.notes.some((n) => /PT\[cola\]\/s0: best\.cola\./.test(n)), c.notes.join("\n"));
});

Deno.test("compareResults() fails on a score beyond tolerance, count changes, missing runs", async () => {
  const base = await fixtures();
  const worse = compareResults([moved(base[0]!, "cb", "accuracy", -1.5), base[1]!], base, TOL);
  assert.equal(worse.ok, false);
  assert.deepEqual(worse.failures.map((f) => f.field), ["best.cb.accuracy"]);
  const text = formatComparison(worse);
  assert.match(text, /^Regression gate: FAIL \(2 runs compared, 1 failure\)\n/);
  assert.match(
    text,
    /FAIL ci\/tiny-v1_1\/random\/super_glue\/mtl\/s0: best\.cb\.accuracy: baseline [\d.]+, current [\d.]+ \(diff -1\.5, tolerance 1\)/,
  );

  const params = { ...base[1]!, params: { ...base[1]!.params, extra: base[1]!.params.extra + 1 } };
  const flops = { ...base[0]!, flops: { ...base[0]!.flops, trainPerExample: 1 } };
  const counts = compareResults([flops, params], base, TOL);
  assert.deepEqual(counts.failures.map((f) => f.field).sort(), [
    "flops.trainPerExample",
    "params.extra",
  ]);
  assert.match(formatComparison(counts), /params\.extra: .*must be equal/);
  assert.match(formatComparison(counts), /^Regression gate: FAIL \(2 runs compared, 2 failures\)/);

  const missing = compareResults([base[0]!], base, TOL);
  assert.deepEqual(missing.failures.map((f) => `${f.run} ${f.field}`), [
    "ci/tiny-v1_1/random/super_glue/hp/s0 run",
  ]);
  assert.equal(compareResults([base[0]!], base, TOL, { partial: true }).ok, true);
  // A shard none of whose runs has a baseline run (another profile's baseline) compares
  // nothing: that fails rather than passing; a shard with no runs at all has nothing to gate.
  const other = await fakeRunOne(spec("adapter"), { outDir: "/nonexistent", dataDir: "/x" });
  const unmatched = compareResults([other], base, TOL, { partial: true });
  assert.equal(unmatched.ok, false);
  assert.equal(unmatched.compared, 0);
  assert.match(
    formatComparison(unmatched),
    /FAIL \(all runs\): runs compared: baseline 2 runs, current none of 1 runs has a baseline run/,
  );
  assert.equal(compareResults([], base, TOL, { partial: true }).ok, true);

  const respec = { ...base[0]!, spec: { ...base[0]!.spec, id: "000000000000" } };
  assert.deepEqual(compareResults([respec, base[1]!], base, TOL).failures.map((f) => f.field), [
    "spec.id",
  ]);
});

Deno.test("loadResults() reads a folder or a JSON array and names bad files", async () => {
  const base = await fixtures();
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(join(dir, "a.json"), JSON.stringify(base[0]));
  await Deno.writeTextFile(join(dir, "b.json"), JSON.stringify(base[1]));
  await Deno.writeTextFile(join(dir, "all.json.txt"), "ignored");
  assert.equal((await loadResults(dir)).length, 2);
  const arr = join(dir, "arr.json");
  await Deno.writeTextFile(arr, JSON.stringify(base));
  assert.equal((await loadResults(arr)).length, 2);
  await Deno.writeTextFile(arr, JSON.stringify([base[0], { ...base[1], params: { total: "x" } }]));
  await assert.rejects(
    () => loadResults(arr),
    /arr\.json\[1\]: \$\.params\.total must be a number.*; expected a run result \(or an array of them\) as bench writes, or a folder of them$/,
  );
  // In a folder, a broken file says that every *.json there is read, and what to do.
  await Deno.remove(arr);
  await Deno.writeTextFile(join(dir, "notes.json"), '{"todo": 1}');
  await assert.rejects(
    () => loadResults(dir),
    (e: Error) => {
      assert.match(
        e.message,
        new RegExp(
          `^${dir}/notes\\.json: .*; every \\*\\.json directly in ${dir} is read as a run ` +
            "result: fix this one or move it out of the folder$",
        ),
      );
      return true;
    },
  );
  await assert.rejects(
    () => loadResults(join(dir, "nope")),
    /nope: no such folder or file \(of run results\)$/,
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("loadResults() refuses a result whose best or averages are not what its evaluations give, naming file and field", async () => {
  const [r] = await fixtures();
  const bench = Object.keys(r!.averages)[0]!;
  const task = Object.keys(r!.best)[0]!;
  const b = r!.best[task]!;
  const other = r!.evals.find((e) => e.task === task && e.step !== b.step)!;
  const cases: [string, RunResult, RegExp][] = [
    // A best score edited without its evaluation.
    [
      "score",
      { ...r!, best: { ...r!.best, [task]: { ...b, groupScore: b.groupScore + 1 } } },
      new RegExp(
        `^.*score\\.json: \\$\\.best\\.${task} holds step ${b.step}, group score ${
          b.groupScore + 1
        }, .* but the best of \\$\\.evals for ${task} is step ${b.step}, group score ${b.groupScore}, `,
      ),
    ],
    // Another step's evaluation named best.
    [
      "step",
      { ...r!, best: { ...r!.best, [task]: { ...other } } },
      new RegExp(`\\$\\.best\\.${task} holds step ${other.step}, .* is step ${b.step}, `),
    ],
    // One metric edited alone (the group score kept), the step alone, a metric removed.
    [
      "metric",
      {
        ...r!,
        best: {
          ...r!.best,
          [task]: {
            ...b,
            metrics: Object.fromEntries(
              Object.entries(b.metrics).map(([k, v], i) => [k, i === 0 ? v + 5 : v]),
            ),
          },
        },
      },
      new RegExp(`\\$\\.best\\.${task} holds step ${b.step}, group score ${b.groupScore}, `),
    ],
    [
      "stepOnly",
      { ...r!, best: { ...r!.best, [task]: { ...b, step: b.step + 1 } } },
      new RegExp(`\\$\\.best\\.${task} holds step ${b.step + 1}, .* is step ${b.step}, `),
    ],
    [
      "noMetric",
      {
        ...r!,
        best: {
          ...r!.best,
          [task]: { ...b, metrics: Object.fromEntries(Object.entries(b.metrics).slice(1)) },
        },
      },
      new RegExp(`\\$\\.best\\.${task} holds step ${b.step}, `),
    ],
    // Invalid predictions added to the best alone.
    [
      "invalid",
      { ...r!, best: { ...r!.best, [task]: { ...b, invalid: { count: 1, of: 16 } } } },
      new RegExp(`\\$\\.best\\.${task} holds step ${b.step}, .* but the best of`),
    ],
    // A task without an evaluation, and a task's best removed.
    ["extra", { ...r!, best: { ...r!.best, nope: b } }, /\$\.best\.nope holds step .* is none/],
    [
      "missing",
      { ...r!, best: Object.fromEntries(Object.entries(r!.best).filter(([t]) => t !== task)) },
      new RegExp(`\\$\\.best\\.${task} holds none, but .* is step ${b.step}`),
    ],
    // An average edited, added or removed.
    [
      "average",
      { ...r!, averages: { [bench]: r!.averages[bench as "glue"]! + 0.5 } },
      new RegExp(
        `\\$\\.averages\\.${bench} is [0-9.]+, but the average of \\$\\.best's group scores is`,
      ),
    ],
    // An edit of a hundredth shows (the tolerance is 1e-9 relative, for summation order only).
    [
      "hundredth",
      { ...r!, averages: { [bench]: r!.averages[bench as "glue"]! + 0.01 } },
      new RegExp(`\\$\\.averages\\.${bench} is [0-9.]+, but the average`),
    ],
    ["absent", { ...r!, averages: {} }, new RegExp(`\\$\\.averages\\.${bench} is absent`)],
    [
      "foreign",
      { ...r!, averages: { ...r!.averages, glue: 50 } },
      /\$\.averages\.glue is 50, but .* is none \(no task of that benchmark\)/,
    ],
  ];
  const dir = await Deno.makeTempDir();
  try {
    // The unedited result loads, alone and in an array file.
    await Deno.writeTextFile(join(dir, "ok.json"), JSON.stringify(r));
    assert.equal((await loadResults(join(dir, "ok.json"))).length, 1);
    await Deno.writeTextFile(join(dir, "array.json"), JSON.stringify([r, r]));
    assert.equal((await loadResults(join(dir, "array.json"))).length, 2);
    for (const [name, edited, want] of cases) {
      const file = join(dir, `${name}.json`);
      await Deno.writeTextFile(file, JSON.stringify(edited));
      await assert.rejects(() => loadResults(file), want, name);
      await assert.rejects(
        () => loadResults(file),
        /edited after the run wrote it, damaged, or written by an older version of the suite that computed it otherwise\? Restore the file, or rerun the run/,
      );
    }
    // In an array file: the entry named.
    await Deno.writeTextFile(join(dir, "arr2.json"), JSON.stringify([r, cases[0]![1]]));
    await assert.rejects(
      () => loadResults(join(dir, "arr2.json")),
      new RegExp(`arr2\\.json\\[1\\]: \\$\\.best\\.${task} holds`),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("compareResults() treats NaN (null in JSON) as equal only to NaN", async () => {
  const base = await fixtures();
  const nan = moved(base[0]!, "cb", "mean_3class_f1", NaN);
  const roundTrip = JSON.parse(JSON.stringify(nan));
  assert.equal(roundTrip.best.cb.metrics.mean_3class_f1, null);
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(join(dir, "a.json"), JSON.stringify(nan));
  const [loaded] = await loadResults(dir);
  assert.ok(Number.isNaN(loaded!.best["cb"]!.metrics["mean_3class_f1"]));
  assert.equal(compareResults([loaded!], [loaded!], TOL).ok, true);
  const c = compareResults([base[0]!], [loaded!], TOL);
  assert.deepEqual(c.failures.map((f) => f.field), ["best.cb.mean_3class_f1"]);
  // A benchmark average undefined (NaN) in both did not move: no "within tolerance" note.
  const bench = Object.keys(base[0]!.averages)[0]!;
  const nanAvg = { ...base[0]!, averages: { ...base[0]!.averages, [bench]: NaN } };
  const same = compareResults([nanAvg], [nanAvg], TOL);
  assert.equal(same.ok, true, formatComparison(same));
  assert.deepEqual(same.notes, []);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("compareResults() matches runs by backbone too", async () => {
  const opts = { outDir: "/nonexistent", dataDir: "/nonexistent" };
  const rand = await fakeRunOne(spec("mtl", 0, "random"), opts);
  const pre = await fakeRunOne(spec("mtl", 0, "pretrained"), opts);
  assert.equal(runKey(pre), "ci/tiny-v1_1/pretrained/super_glue/mtl/s0");
  const both = compareResults([rand, pre], [rand, pre], TOL);
  assert.equal(both.ok, true);
  assert.equal(both.compared, 2);
  // A pretrained run is not gated against the random baseline of the same method.
  const c = compareResults([pre], [rand], TOL);
  assert.equal(c.ok, false);
  assert.deepEqual(c.failures.map((f) => [f.run, f.field]), [[runKey(rand), "run"]]);
  assert.match(c.notes.join("\n"), /pretrained\/super_glue\/mtl\/s0: no baseline run/);
  assert.deepEqual(c.ungated, [runKey(pre)]);
  // A pass that gated only some runs says how many were not, in its headline.
  const some = compareResults([rand, pre], [rand], TOL);
  assert.equal(some.ok, true);
  assert.match(
    formatComparison(some).split("\n")[0]!,
    /^Regression gate: PASS \(1 run compared, 1 run not gated \(no baseline run\), 0 failures\)$/,
  );
});

Deno.test("runKey() names an hf model or backbone by its whole reference: folders named alike are two keys", async () => {
  const opts = { outDir: "/nonexistent", dataDir: "/nonexistent" };
  const at = (model: RunSpec["model"], backbone: RunSpec["backbone"] = "random") => {
    const { id: _id, ...body } = spec("mtl");
    const b = { ...body, model, backbone };
    return { spec: { id: runId(b), ...b } };
  };
  const a = at({ hf: "/a/t5-base" });
  const b = at({ hf: "/b/t5-base" });
  assert.equal(runKey(a), 'ci/hf:"/a/t5-base"/random/super_glue/mtl/s0');
  assert.equal(runKey(b), 'ci/hf:"/b/t5-base"/random/super_glue/mtl/s0');
  // A local folder and a hub id ending alike; the same for backbones.
  assert.notEqual(runKey(at({ hf: "models/t5-base" })), runKey(at({ hf: "google/t5-base" })));
  assert.notEqual(
    runKey(at("tiny-v1_1", { hf: "/a/ckpt" })),
    runKey(at("tiny-v1_1", { hf: "/b/ckpt" })),
  );
  // One folder spelt two ways is one key (matched with its baseline, then gated on spec.id).
  for (const same of ["/a/t5-base/", "/a//t5-base", "/a/./t5-base", "\\a\\t5-base"]) {
    assert.equal(runKey(at({ hf: same })), runKey(a), same);
  }
  // A relative folder is not resolved, and its leading "./" (a folder, not a hub id) is kept.
  assert.equal(runKey(at({ hf: "./t5-base/" })), 'ci/hf:"./t5-base"/random/super_glue/mtl/s0');
  assert.notEqual(runKey(at({ hf: "./t5-base" })), runKey(at({ hf: "t5-base" })));
  // The gate keeps them apart: each run is compared with its own baseline run.
  const ra = await fakeRunOne(a.spec, opts);
  const rb = await fakeRunOne(b.spec, opts);
  const c = compareResults([ra, rb], [ra, rb], TOL);
  assert.equal(c.ok, true);
  assert.equal(c.compared, 2);
  const lost = compareResults([ra], [ra, rb], TOL);
  assert.deepEqual(lost.failures.map((f) => [f.run, f.field]), [[runKey(b), "run"]]);
});

Deno.test("runKey(): the committed ci baseline's runs keep their preset keys and match the ci grid's", async () => {
  const profile = await loadProfile("ci");
  const grid = expandGrid(profile, {
    dataDir: sharedPath("data"),
    catalog: await defaultTaskCatalog(),
  });
  const base = await loadResults(repoPath("results", "baselines", "ci"));
  const keys = base.map(runKey).sort();
  assert.deepEqual(grid.map((spec) => runKey({ spec })).sort(), keys);
  assert.equal(new Set(keys).size, keys.length);
  // A label, and a per-task run's task in brackets.
  for (const k of keys) {
    assert.match(k, /^ci\/tiny-v1_1\/pretrained\/(glue|super_glue)\/[^/]+(\[\w+\])?\/s0$/);
  }
  assert.ok(keys.includes("ci/tiny-v1_1/pretrained/glue/mtl/s0"));
  assert.ok(keys.includes("ci/tiny-v1_1/pretrained/super_glue/Prompt-Tuning (per task)[cb]/s0"));
});

Deno.test("compareResults() rejects a baseline holding two results for one run key, in any file order", async () => {
  const opts = { outDir: "/nonexistent", dataDir: "/nonexistent" };
  const now = await fakeRunOne(spec("mtl", 0, "random", 4), opts);
  const stale = await fakeRunOne(spec("mtl", 0, "random", 8), opts); // an older configuration
  const dir = await Deno.makeTempDir();
  const files = [join(dir, `x--${now.spec.id}.json`), join(dir, `x--${stale.spec.id}.json`)];
  await Deno.writeTextFile(files[0]!, JSON.stringify(now));
  await Deno.writeTextFile(files[1]!, JSON.stringify(stale));
  const base = await loadResults(dir);
  const key = runKey(now);
  for (const order of [base, [...base].reverse()]) {
    assert.throws(
      () => compareResults([now], order, TOL),
      (e: unknown) => {
        const m = (e as Error).message;
        return m.startsWith(`Two results for the same baseline run key ${key}: `) &&
          files.every((f) => m.includes(f)) && /remove the stale one/.test(m);
      },
    );
  }
  // Without file names (results built in memory) the run ids are named instead.
  assert.throws(
    () => compareResults([now], [now, stale], TOL),
    new RegExp(`the result of run ${now.spec.id} and the result of run ${stale.spec.id}`),
  );
  assert.throws(
    () => compareResults([now, stale], [now], TOL),
    /Two results for the same current run key/,
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("compareResults() gates a run whose method config was edited against its baseline run: spec.id fails, nothing is 'missing'", async () => {
  const opts = { outDir: "/nonexistent", dataDir: "/nonexistent" };
  const { id: _id, ...body } = spec("hp");
  const editedBody = { ...body, method: { ...body.method, config: { length: 5 } } };
  const base = await fakeRunOne(spec("hp"), opts);
  const now = await fakeRunOne({ id: runId(editedBody), ...editedBody }, opts);
  assert.notEqual(now.spec.id, base.spec.id);
  // One key, as the configuration is not part of it: the edited run is compared (its scores,
  // counts and losses too), and the changed configuration fails the gate by name.
  assert.equal(runKey(now), runKey(base));
  const c = compareResults([now], [base], TOL);
  assert.equal(c.compared, 1);
  assert.equal(c.ok, false);
  assert.deepEqual(c.failures[0], {
    run: runKey(base),
    field: "spec.id",
    baseline: base.spec.id,
    current: now.spec.id,
    detail: "the configuration changed: spec.method.config.length: baseline (absent), current 5. " +
      'If intended, regenerate the baseline (benchmarks/README.md "Regression gate")',
  });
  assert.match(
    formatComparison(c),
    /FAIL [^\n]*: spec\.id: baseline \w+, current \w+\n {4}the configuration changed: spec\.method\.config\.length: baseline \(absent\)/,
  );
  assert.ok(c.failures.every((f) => f.run === runKey(base) && f.field !== "run"));
  assert.doesNotMatch(c.notes.join("\n"), /no baseline run/);
});

Deno.test("compareResults() with a loss tolerance gates each step's loss, the tokenizer and the backbone", async () => {
  const [a, b] = await fixtures();
  const base = [a!, b!];
  const tol: Tolerances = { ...TOL, loss: 1e-5 };
  assert.ok(a!.losses.length >= 2, "the fake records losses");
  // Identical results pass; without `loss` a moved loss is not looked at.
  assert.equal(compareResults(base, base, tol).ok, true);
  const scaled = (r: RunResult, step: number, factor: number): RunResult => ({
    ...r,
    losses: r.losses.map((l) => (l.step === step ? { ...l, loss: l.loss * factor } : l)),
  });
  const step2 = a!.losses[1]!.step;
  assert.equal(compareResults([scaled(a!, step2, 1 + 1e-3), b!], base, TOL).ok, true);
  // Within 1e-5 relative: passes; beyond: fails at that step (only the first one reported).
  assert.equal(compareResults([scaled(a!, step2, 1 + 5e-6), b!], base, tol).ok, true);
  const bad = compareResults(
    [scaled(scaled(a!, step2, 1 + 1e-3), a!.losses[0]!.step, 2), b!],
    base,
    tol,
  );
  assert.equal(bad.ok, false);
  assert.deepEqual(bad.failures.map((f) => f.field), [`losses[step ${a!.losses[0]!.step}]`]);
  assert.match(formatComparison(bad), /losses\[step \d+\]: baseline [\d.]+, current [\d.]+/);
  assert.equal(bad.failures[0]!.detail, undefined, "the same backend and device: no detail");
  // On another backend (`auto` picks per machine) or, beyond plain-JS cpu, another device: the
  // failure says where each ran and what to do.
  const on = (r: RunResult, name: string, device: string): RunResult => ({
    ...r,
    provenance: {
      ...r.provenance,
      backend: { ...r.provenance.backend, name, requested: "auto" },
      device,
    },
  });
  const moved2 = scaled(a!, step2, 1 + 1e-3);
  const otherBackend = compareResults(
    [on(moved2, "webgpu", "NVIDIA H200 (webgpu)"), b!],
    base,
    tol,
  );
  assert.match(
    formatComparison(otherBackend),
    new RegExp(
      `losses\\[step ${step2}\\]: baseline [\\d.]+, current [\\d.]+ \\(diff [^\n]*\\)\n {4}` +
        `the baseline ran on ${a!.provenance.backend.name} \\(.*\\), this run on webgpu ` +
        `\\(NVIDIA H200 \\(webgpu\\)\\);.* rerun with --backend ${a!.provenance.backend.name} ` +
        `\\(this run's backend was "auto"\\)`,
    ),
  );
  const blas = (r: RunResult, device: string) => on(r, "wasm+blas", device);
  const otherDevice = compareResults(
    [blas(moved2, "AMD EPYC x16 (wasm+blas, 16 threads)"), b!],
    [blas(a!, "Intel Xeon x2 (wasm+blas, 2 threads)"), b!],
    tol,
  );
  assert.match(
    otherDevice.failures[0]!.detail ?? "",
    /--backend wasm\+blas on the baseline's device/,
  );
  const cpuDevices = compareResults(
    [on(moved2, "cpu", "AMD EPYC x16 (cpu, 1 threads)"), b!],
    [on(a!, "cpu", "Intel Xeon x2 (cpu, 1 threads)"), b!],
    tol,
  );
  assert.equal(cpuDevices.failures[0]!.detail, undefined, "plain-JS cpu: any device alike");
  // Fewer steps, another tokenizer or another backbone fail; the backbone's folder may move.
  const fewer = compareResults([{ ...a!, losses: a!.losses.slice(1) }, b!], base, tol);
  assert.deepEqual(fewer.failures.map((f) => f.field), ["losses.steps"]);
  // The same count of steps, one step number changed: the first entry that differs is named.
  const renumbered = a!.losses.map((l, i) => (i === 1 ? { ...l, step: l.step + 1 } : l));
  const shifted = compareResults([{ ...a!, losses: renumbered }, b!], base, tol);
  assert.deepEqual(
    shifted.failures.map((f) => [f.field, f.baseline, f.current]),
    [["losses.steps", `entry 1 is step ${step2}`, `entry 1 is step ${step2 + 1}`]],
  );
  const tok = compareResults([{ ...a!, tokenizer: "fixture:/x/tokenizer.json" }, b!], base, tol);
  assert.deepEqual(tok.failures.map((f) => f.field), ["tokenizer"]);
  assert.match(
    formatComparison(tok),
    /FAIL .*: tokenizer: baseline .*, current fixture:\/x\/tokenizer\.json\n {4}another tokenizer gives other losses: if that is intended, regenerate the baseline /,
  );
  // A baseline written before results recorded a tokenizer: said so, not "(none)".
  const { tokenizer: _, ...noTokenizer } = a!;
  const unrecorded = compareResults(
    [{ ...a!, tokenizer: "backbone" }, b!],
    [noTokenizer as RunResult, b!],
    tol,
  );
  assert.deepEqual(unrecorded.failures.map((f) => [f.field, f.baseline]), [[
    "tokenizer",
    "(not recorded: an older result)",
  ]]);
  // With both files' digests, the kind and the sha256 decide, not the path: the same file on
  // another machine passes; a vocabulary retrained in place (same path) fails, saying so.
  const spm = (path: string, sha: string): RunResult => ({
    ...a!,
    tokenizer: `task-spm:${path}`,
    provenance: { ...a!.provenance, tokenizerFile: { bytes: 9, sha256: sha.repeat(64) } },
  } as RunResult);
  const spmBase = [spm("/home/me/.cache/spm/tokenizer.json", "a"), b!];
  const elsewhere = compareResults([spm("/ci/cache/spm/tokenizer.json", "a"), b!], spmBase, tol);
  assert.equal(elsewhere.ok, true, formatComparison(elsewhere));
  const retrained = compareResults(
    [spm("/home/me/.cache/spm/tokenizer.json", "c"), b!],
    spmBase,
    tol,
  );
  assert.deepEqual(retrained.failures.map((f) => [f.field, f.baseline, f.current]), [[
    "tokenizer",
    `task-spm:/home/me/.cache/spm/tokenizer.json (sha256 ${"a".repeat(12)})`,
    `task-spm:/home/me/.cache/spm/tokenizer.json (sha256 ${"c".repeat(12)})`,
  ]]);
  // The same file as the fixture's is another tokenizer kind: fails.
  const fixture = { ...spm("/s/tokenizer.json", "a"), tokenizer: "fixture:/s/tokenizer.json" };
  assert.deepEqual(compareResults([fixture, b!], spmBase, tol).failures.map((f) => f.field), [
    "tokenizer",
  ]);
  // A baseline written before digests were recorded: the kind and the file name, not the cache
  // folder (another machine's, another cache key's: h379), which the losses check instead.
  const oldBase = [
    { ...spm("/home/me/.cache/spm-c3b83e/tokenizer.json", "a"), provenance: a!.provenance },
    b!,
  ];
  for (
    const path of ["/home/me/.cache/spm-c3b83e/tokenizer.json", "/ci/spm-f0af7a/tokenizer.json"]
  ) {
    const r = compareResults([spm(path, "c"), b!], oldBase, tol);
    assert.equal(r.ok, true, formatComparison(r));
  }
  for (
    const other of [{ tokenizer: "fixture:/home/me/.cache/spm-c3b83e/tokenizer.json" }, {
      tokenizer: "task-spm:/home/me/.cache/spm-c3b83e/spiece.json",
    }]
  ) {
    const r = compareResults([{ ...spm("/x/tokenizer.json", "a"), ...other }, b!], oldBase, tol);
    assert.deepEqual(r.failures.map((f) => [f.field, f.baseline]), [[
      "tokenizer",
      "task-spm:/home/me/.cache/spm-c3b83e/tokenizer.json",
    ]]);
  }
  const at = (dir: string, key: string) => ({ ...a!, backboneSource: `${dir}/backbones/${key}` });
  const moved = compareResults(
    [at("/ci/cache", "tiny-v1_1-0123456789abcdef"), b!],
    [at("/home/me/.cache", "tiny-v1_1-0123456789abcdef"), b!],
    tol,
  );
  assert.equal(moved.ok, true, formatComparison(moved));
  const other = compareResults(
    [at("/ci/cache", "tiny-v1_1-fedcba9876543210"), b!],
    [at("/ci/cache", "tiny-v1_1-0123456789abcdef"), b!],
    tol,
  );
  assert.deepEqual(other.failures.map((f) => f.field), ["backbone"]);
  assert.match(other.failures[0]!.detail ?? "", /^another backbone gives other losses: if /);
});

Deno.test("formatComparison() shows every failing difference as non-zero and beyond its tolerance", async () => {
  const [a, b] = await fixtures();
  const base = [a!, b!];
  const step = a!.losses[0]!.step;
  const withLoss = (r: RunResult, loss: number): RunResult => ({
    ...r,
    losses: r.losses.map((l, i) => (i === 0 ? { ...l, loss } : l)),
  });
  // The operator's case: a loss failing by 5.4e-7 against 1e-5 relative (2.34e-7) printed as
  // "diff 0" by 4-decimal rounding.
  const loss = compareResults(
    [withLoss(a!, 0.023417312651872635), b!],
    [withLoss(a!, 0.02341785468161106), b!],
    { ...TOL, loss: 1e-5 },
  );
  assert.equal(loss.ok, false);
  assert.match(
    formatComparison(loss),
    new RegExp(
      `losses\\[step ${step}\\]: baseline 0\\.02341785468161106, current 0\\.023417312651872635 ` +
        `\\(diff -5\\.42e-7, tolerance 1e-5 relative \\(2\\.34e-7\\)\\)`,
    ),
  );
  // A score beyond a tolerance of 0 by less than its 4 printed decimals, and one beyond 1 by
  // 3e-5: the unrounded difference, with the digits that tell it from the tolerance.
  const tiny = compareResults([moved(a!, "cb", "accuracy", 3e-6), b!], base, {
    ...TOL,
    metrics: { ...TOL.metrics, accuracy: 0 },
  });
  assert.deepEqual(tiny.failures.map((f) => f.field), ["best.cb.accuracy"]);
  assert.match(formatComparison(tiny), /best\.cb\.accuracy: .* \(diff 3e-6, tolerance 0\)/);
  const edge = compareResults([moved(a!, "cb", "accuracy", 1.00003), b!], base, TOL);
  assert.match(formatComparison(edge), /best\.cb\.accuracy: .* \(diff 1\.00003, tolerance 1\)/);
  // Counts: the exact integer difference.
  const big = { ...b!, params: { ...b!.params, total: b!.params.total + 123457 } };
  assert.match(
    formatComparison(compareResults([a!, big], base, TOL)),
    /params\.total: baseline \d+, current \d+ \(diff 123457, must be equal\)/,
  );
  // formatDifference itself: 3 significant digits, more only where needed.
  assert.deepEqual(formatDifference(-1.5000000000000036, 1), { diff: "-1.5", tolerance: "1" });
  assert.deepEqual(formatDifference(5.4203e-7, 2.3417e-7), {
    diff: "5.42e-7",
    tolerance: "2.34e-7",
  });
  assert.deepEqual(formatDifference(2.3449e-7, 2.3441e-7), {
    diff: "2.345e-7",
    tolerance: "2.344e-7",
  });
  assert.deepEqual(formatDifference(2.34549e-7, 2.34541e-7), {
    diff: "2.3455e-7",
    tolerance: "2.3454e-7",
  });
  assert.deepEqual(formatDifference(1234.567, 1), { diff: "1235", tolerance: "1" });
  assert.deepEqual(formatDifference(-7), { diff: "-7" });
  assert.deepEqual(formatDifference(Number.NaN, 1), { diff: "NaN", tolerance: "1" });
  // Neighbouring doubles (1 ulp apart): told apart at 17 digits.
  const [x, t] = [0.1 + 0.2, 0.1 + 0.2 - 2 ** -54];
  assert.ok(x > t);
  const exact = formatDifference(x, t);
  assert.ok(Number(exact.diff) > Number(exact.tolerance), JSON.stringify(exact));
});

Deno.test("a failing score's baseline and current are shown with the digits that tell them apart", async () => {
  const [a, b] = await fixtures();
  const bench = a!.spec.benchmark;
  // The operator's case: 79.9 against 79.900003 (diff 3e-6, tolerance 0), both read 79.9.
  const score = (r: RunResult, v: number): RunResult => ({
    ...r,
    best: { ...r.best, cb: { ...r.best.cb!, metrics: { ...r.best.cb!.metrics, accuracy: v } } },
    averages: { ...r.averages, [bench]: v },
  });
  const exact: Tolerances = { default: 0, metrics: {} };
  const c = compareResults([score(a!, 79.900003), b!], [score(a!, 79.9), b!], exact);
  assert.deepEqual(c.failures.map((f) => f.field), ["best.cb.accuracy", `averages.${bench}`]);
  const text = formatComparison(c);
  for (const field of ["best\\.cb\\.accuracy", `averages\\.${bench}`]) {
    assert.match(
      text,
      new RegExp(`${field}: baseline 79\\.9, current 79\\.900003 \\(diff 3e-6, tolerance 0\\)`),
    );
  }
  // A passing note likewise (within a tolerance of 1).
  const within = compareResults([score(a!, 79.900003), b!], [score(a!, 79.9), b!], {
    default: 1,
    metrics: {},
  });
  assert.ok(within.ok);
  assert.ok(within.notes.some((n) => n.endsWith("best.cb.accuracy 79.9 -> 79.900003 (within 1)")));
  // Four decimals where they differ (as before), more only where they would not.
  assert.deepEqual(shownScores(79.91234, 79.92345), [79.9123, 79.9235]);
  assert.deepEqual(shownScores(79.90004, 79.90006), [79.9, 79.9001]);
  assert.deepEqual(shownScores(79.900001, 79.900002), [79.900001, 79.900002]);
  // Never split at a coarser boundary than 4 decimals (not 70 and 80).
  assert.deepEqual(shownScores(74.99999, 75.00001), [74.99999, 75.00001]);
  assert.deepEqual(shownScores(0.00001, 0.00002), [0.00001, 0.00002]);
  assert.deepEqual(shownScores(50, 50), [50, 50]);
  assert.deepEqual(shownScores(Number.NaN, 50), [Number.NaN, 50]);
  // Neighbouring doubles: at 17 digits.
  const [x, y] = shownScores(0.1 + 0.2, 0.3);
  assert.ok(x !== y, `${x} ${y}`);
});

Deno.test("profile tolerances accept a non-negative loss tolerance and name a bad one", () => {
  const base = {
    name: "x",
    models: ["tiny-v1_1"],
    benchmarks: ["super_glue"],
    methods: [{ name: "mtl" }],
  };
  const p = validateProfile({ ...base, tolerances: { default: 0.5, loss: 1e-5 } }, {
    file: "x.json",
  });
  assert.equal(p.tolerances.loss, 1e-5);
  assert.equal(validateProfile(base, { file: "x.json" }).tolerances.loss, undefined);
  assert.throws(
    () => validateProfile({ ...base, tolerances: { loss: -1 } }, { file: "x.json" }),
    /\$\.tolerances\.loss/,
  );
});

Deno.test("compareResults() with tolerances.predictions gates every evaluation's predictions and invalid count, not only the best's scores", async () => {
  const PRED: Tolerances = { ...TOL, predictions: true };
  // Digests and invalid counts on every evaluation (the fake run records none).
  const digested = (r: RunResult): RunResult => ({
    ...r,
    evals: r.evals.map((e) => ({
      ...e,
      invalid: { count: 1, of: 16 },
      predictionsSha256: predictionsDigest([`${e.task}-0`], [`p${e.step}`]),
    })),
  });
  const base = (await fixtures()).map(digested);
  assert.equal(compareResults(base, base, PRED).ok, true);
  const r = base[0]!;
  const key = runKey(r);
  // A non-best evaluation: its scores are not gated, its predictions are.
  const other = r.evals.find((e) => e.step !== r.best[e.task]!.step)!;
  const field = `evals[step ${other.step}].${other.task}`;
  const edit = (f: (e: RunResult["evals"][number]) => RunResult["evals"][number]) => [
    { ...r, evals: r.evals.map((e) => (e === other ? f(e) : e)) },
    base[1]!,
  ];
  const changed = edit((e) => ({ ...e, predictionsSha256: predictionsDigest(["x"], ["y"]) }));
  const c1 = compareResults(changed, base, PRED);
  assert.deepEqual(c1.failures.map((f) => [f.run, f.field]), [[key, `${field}.predictionsSha256`]]);
  assert.match(c1.failures[0]!.detail!, /^other predictions, whatever the scores: /);
  assert.equal(c1.failures[0]!.baseline, other.predictionsSha256!.slice(0, 12));
  // Every evaluation changed (a training change): one failure, naming the others.
  const all = { ...r, evals: r.evals.map((e) => ({ ...e, predictionsSha256: "0".repeat(64) })) };
  const c0 = compareResults([all, base[1]!], base, PRED);
  assert.equal(c0.failures.length, 1, formatComparison(c0));
  const [firstEval, ...others] = r.evals;
  assert.equal(
    c0.failures[0]!.field,
    `evals[step ${firstEval!.step}].${firstEval!.task}.predictionsSha256`,
  );
  assert.match(
    c0.failures[0]!.detail!,
    new RegExp(
      `^other predictions, whatever the scores \\(and at ${others.length} more evaluations of ` +
        `this run: ${others.map((e) => `evals\\[step ${e.step}\\]\\.${e.task}`).join(", ")}\\): ` +
        "where the losses match",
    ),
  );
  // Many evaluations: three named, the rest counted (a profile evaluating often made a line of
  // several KB).
  const many = {
    ...r,
    evals: [...r.evals, ...[3, 5, 7, 9].map((step) => ({ ...r.evals[0]!, step: 100 + step }))],
  };
  const manyChanged = {
    ...many,
    evals: many.evals.map((e) => ({ ...e, predictionsSha256: "1".repeat(64) })),
  };
  const c6 = compareResults([manyChanged, base[1]!], [many, base[1]!], PRED);
  assert.equal(c6.failures.length, 1, formatComparison(c6));
  assert.match(
    c6.failures[0]!.detail!,
    new RegExp(
      `\\(and at ${many.evals.length - 1} more evaluations of this run: [^,]+, [^,]+, [^,]+, …\\)`,
    ),
  );
  // Without the tolerance the same change passes (only the best's metrics are gated).
  assert.equal(compareResults(changed, base, TOL).ok, true);
  const c2 = compareResults(edit((e) => ({ ...e, invalid: { count: 2, of: 16 } })), base, PRED);
  assert.deepEqual(c2.failures.map((f) => [f.field, f.baseline, f.current]), [
    [`${field}.invalid`, "1/16", "2/16"],
  ]);
  // An evaluation missing, or one the baseline lacks.
  const without = { ...r, evals: r.evals.filter((e) => e !== other) };
  const c3 = compareResults([without, base[1]!], base, PRED);
  assert.deepEqual(c3.failures.map((f) => [f.field, f.baseline, f.current]), [
    [field, "present", "missing"],
  ]);
  const c4 = compareResults(base, [without, base[1]!], PRED);
  assert.deepEqual(c4.failures.map((f) => [f.field, f.baseline, f.current]), [
    [field, "missing", "present"],
  ]);
  // A baseline written before the digests: regenerated, not trusted.
  const old = { ...r, evals: r.evals.map(({ predictionsSha256: _, ...e }) => e) };
  const c5 = compareResults(base, [old, base[1]!], PRED);
  assert.ok(c5.failures.length > 0);
  assert.ok(
    c5.failures.every((f) =>
      f.field.endsWith(".predictionsSha256") && f.baseline === "missing" &&
      /the baseline run lacks it/.test(f.detail ?? "")
    ),
    formatComparison(c5),
  );
  assert.equal(c5.failures.length, r.evals.length);
  // Neither result with digests (both older): nothing compared, said in a note.
  const c7 = compareResults([old, base[1]!], [old, base[1]!], PRED);
  assert.equal(c7.ok, true, formatComparison(c7));
  assert.deepEqual(c7.notes, [
    `${key}: ${r.evals.length} evaluations without a predictions digest in either result (both ` +
    "written before it was recorded): predictions not compared",
  ]);
});

Deno.test("profile tolerances: predictions is a boolean (false: left out)", () => {
  const base = {
    name: "x",
    models: ["tiny-v1_1"],
    benchmarks: ["super_glue"],
    methods: [{ name: "mtl" }],
  };
  const tol = (predictions: unknown) =>
    validateProfile({ ...base, tolerances: { default: 0.5, predictions } }, { file: "x.json" })
      .tolerances;
  assert.equal(tol(true).predictions, true);
  assert.equal("predictions" in tol(false), false);
  assert.throws(() => tol("yes"), /\$\.tolerances\.predictions/);
});

Deno.test("compareResults() fails on every gated count, and on a task, metric or average the current run lacks", async () => {
  const base = await fixtures();
  const r = base[0]!;
  // Each count on its own: a gate that skipped one of them would pass this run.
  const counts = [
    ["params.total", { ...r, params: { ...r.params, total: r.params.total + 1 } }],
    ["params.extra", { ...r, params: { ...r.params, extra: r.params.extra + 1 } }],
    ["params.trained", { ...r, params: { ...r.params, trained: r.params.trained + 1 } }],
    ["flops.trainPerExample", { ...r, flops: { ...r.flops, trainPerExample: 1 } }],
    ["flops.inferencePerExample", { ...r, flops: { ...r.flops, inferencePerExample: 1 } }],
  ] as const;
  for (const [field, changed] of counts) {
    const c = compareResults([changed, base[1]!], base, TOL);
    assert.deepEqual(c.failures.map((f) => f.field), [field], field);
  }
  // Missing is a failure, not a pass: a metric, a whole task, a benchmark average.
  const { accuracy: _, ...noAccuracy } = r.best["cb"]!.metrics;
  const lacking = { ...r, best: { ...r.best, cb: { ...r.best["cb"]!, metrics: noAccuracy } } };
  const { cb: __, ...noCb } = r.best;
  assert.ok(r.averages.super_glue !== undefined, "the fake run has a super_glue average");
  const noAverage = { ...r, averages: {} };
  for (
    const [field, current] of [
      ["best.cb.accuracy", lacking],
      ["best.cb", { ...r, best: noCb }],
      ["averages.super_glue", noAverage],
    ] as const
  ) {
    const c = compareResults([current, base[1]!], base, TOL);
    assert.deepEqual(c.failures.map((f) => [f.field, f.current]), [[field, "missing"]], field);
    // The other way round (the baseline lacks it): a failure too, not a pass that gates nothing.
    const back = compareResults(base, [current, base[1]!], TOL);
    assert.deepEqual(
      back.failures.map((f) => [f.field, f.baseline]),
      [[field, "missing"]],
      `${field}: ${formatComparison(back)}`,
    );
    assert.match(back.failures[0]!.detail ?? "", /^the baseline run lacks it .*: regenerate the /);
  }
});

Deno.test("compareResults() fails a baseline run whose spec was edited after it was written (its id kept)", async () => {
  const base = await fixtures();
  const b = structuredClone(base[0]!);
  (b.spec.train as { learningRate: number }).learningRate *= 2;
  const c = compareResults(base, [b, base[1]!], TOL);
  assert.deepEqual(c.failures.map((f) => [f.field, f.baseline]), [[
    "spec.id",
    `${b.spec.id} (its spec hashes to ${runId(b.spec)})`,
  ]]);
  assert.match(c.failures[0]!.detail!, /spec was edited after the run wrote it .*: regenerate/);
});

Deno.test("specDifferences() names each differing field by its dotted path, leaves out the top-level id", () => {
  const base = {
    id: "a",
    backend: "cpu",
    method: { name: "hp", config: { length: 4 } },
    tasks: ["rte", "cb"],
  };
  const now = {
    id: "b",
    backend: "wasm",
    method: { name: "hp", config: { length: 4, m: 2 } },
    tasks: ["rte", "copa"],
  };
  assert.deepEqual(specDifferences(base, now), [
    { path: "spec.backend", baseline: "cpu", current: "wasm" },
    { path: "spec.method.config.m", baseline: "(absent)", current: "2" },
    { path: "spec.tasks[1]", baseline: "cb", current: "copa" },
  ]);
  // A length change is one difference at the array's path; nested ids are fields like any other.
  assert.deepEqual(specDifferences({ x: [1] }, { x: [1, 2] }, "s"), [
    { path: "s.x", baseline: "[1]", current: "[1,2]" },
  ]);
  assert.deepEqual(specDifferences({ x: { id: 1 } }, { x: { id: 2 } }), [
    { path: "spec.x.id", baseline: "1", current: "2" },
  ]);
  assert.deepEqual(specDifferences(base, { ...base, id: "other" }), []);
  // Long values are cut to 60 characters.
  const long = specDifferences({ v: "" }, { v: { k: "x".repeat(100) } })[0]!;
  assert.equal(long.current.length, 60);
  assert.ok(long.current.endsWith("..."));
});

Deno.test("formatComparison() says 1 run, and prints a NaN loss's tolerance to 3 digits", () => {
  const c = {
    ok: false,
    compared: 1,
    ungated: [],
    notes: [],
    failures: [{
      run: "k",
      field: "losses[step 4]",
      baseline: 4.942928314208985,
      current: Number.NaN,
      tolerance: 4.942928314208985e-5,
      relativeTolerance: 1e-5,
    }],
  };
  const text = formatComparison(c);
  assert.match(text, /^Regression gate: FAIL \(1 run compared, 1 failure\)\n/);
  assert.match(text, /\(diff NaN, tolerance 1e-5 relative \(4\.94e-5\)\)$/m);
});
