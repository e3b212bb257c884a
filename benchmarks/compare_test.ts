import assert from "node:assert/strict";
import { join } from "node:path";
import { fakeRunOne } from "./_fake_run_one.ts";
import { compareResults, formatComparison, loadResults, runKey, toleranceFor } from "./compare.ts";
import { DEFAULT_TRAIN, runId, type RunResult, type RunSpec, type Tolerances } from "./spec.ts";

function spec(label: string, seed = 0, backbone: RunSpec["backbone"] = "random"): RunSpec {
  const body: Omit<RunSpec, "id"> = {
    profile: "ci",
    model: "tiny-v1_1",
    backbone,
    benchmark: "super_glue",
    tasks: ["cb", "rte_sg"],
    method: { name: label === "mtl" ? "mtl" : "hyperprompt_global", label, config: {} },
    seed,
    train: { ...DEFAULT_TRAIN, steps: 4, evalEvery: 2 },
    backend: "cpu",
  };
  return { id: runId(body), ...body };
}

async function fixtures(): Promise<RunResult[]> {
  const opts = { outDir: "/nonexistent", dataDir: "/nonexistent" };
  return [await fakeRunOne(spec("mtl"), opts), await fakeRunOne(spec("hp"), opts)];
}

const TOL: Tolerances = { default: 0.5, metrics: { "cb/f1": 2, accuracy: 1 } };

/** A copy of `r` with one best metric moved by `delta` (and the group score left as is). */
function moved(r: RunResult, task: string, metric: string, delta: number): RunResult {
  const b = r.best[task]!;
  return {
    ...r,
    best: {
      ...r.best,
      [task]: { ...b, metrics: { ...b.metrics, [metric]: b.metrics[metric]! + delta } },
    },
  };
}

Deno.test("toleranceFor() prefers task/metric, then metric, then default", () => {
  assert.equal(toleranceFor(TOL, "cb", "f1"), 2);
  assert.equal(toleranceFor(TOL, "cb", "accuracy"), 1);
  assert.equal(toleranceFor(TOL, "rte_sg", "f1"), 0.5);
});

Deno.test("compareResults() passes identical results and moves within tolerance", async () => {
  const base = await fixtures();
  const same = compareResults(base, base, TOL);
  assert.equal(same.ok, true);
  assert.equal(same.compared, 2);
  const within = compareResults([moved(base[0]!, "cb", "f1", 1.9), base[1]!], base, TOL);
  assert.equal(within.ok, true, formatComparison(within));
  assert.match(within.notes.join("\n"), /best\.cb\.f1 .* \(within 2\)/);
});

Deno.test("compareResults() fails on a score beyond tolerance, count changes, missing runs", async () => {
  const base = await fixtures();
  const worse = compareResults([moved(base[0]!, "cb", "accuracy", -1.5), base[1]!], base, TOL);
  assert.equal(worse.ok, false);
  assert.deepEqual(worse.failures.map((f) => f.field), ["best.cb.accuracy"]);
  const text = formatComparison(worse);
  assert.match(text, /^Regression gate: FAIL \(2 runs compared, 1 failures\)/);
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

  const missing = compareResults([base[0]!], base, TOL);
  assert.deepEqual(missing.failures.map((f) => `${f.run} ${f.field}`), [
    "ci/tiny-v1_1/random/super_glue/hp/s0 run",
  ]);
  assert.equal(compareResults([base[0]!], base, TOL, { partial: true }).ok, true);

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
    /arr\.json\[1\]: \$\.params\.total must be a number/,
  );
  await assert.rejects(() => loadResults(join(dir, "nope")), /Cannot read results/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("compareResults() treats NaN (null in JSON) as equal only to NaN", async () => {
  const base = await fixtures();
  const nan = moved(base[0]!, "cb", "f1", NaN);
  const roundTrip = JSON.parse(JSON.stringify(nan));
  assert.equal(roundTrip.best.cb.metrics.f1, null);
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(join(dir, "a.json"), JSON.stringify(nan));
  const [loaded] = await loadResults(dir);
  assert.ok(Number.isNaN(loaded!.best["cb"]!.metrics["f1"]));
  assert.equal(compareResults([loaded!], [loaded!], TOL).ok, true);
  const c = compareResults([base[0]!], [loaded!], TOL);
  assert.deepEqual(c.failures.map((f) => f.field), ["best.cb.f1"]);
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
});
