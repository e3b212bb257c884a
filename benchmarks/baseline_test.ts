/**
 * Checks of the committed ci baseline (`results/baselines/ci/`) that need no training: it is
 * complete for the ci grid, passes the gate against itself, and its parameter and FLOP counts
 * equal today's analytic accounting (so an accounting change is caught without a run).
 */
import assert from "node:assert/strict";
import { preset } from "../model/config.ts";
import { repoPath, sharedPath } from "../model/shared_dir.ts";
import { compareResults, loadResults } from "./compare.ts";
import { defaultTaskCatalog, expandGrid } from "./runner.ts";
import { loadProfile } from "./profile.ts";
import { loadAccounting } from "./tables.ts";

const BASELINE = repoPath("results", "baselines", "ci");

Deno.test("ci baseline covers the ci grid run for run (same ids) and passes the gate", async () => {
  const profile = await loadProfile("ci");
  const grid = expandGrid(profile, {
    dataDir: sharedPath("data"),
    catalog: await defaultTaskCatalog(),
  });
  const base = await loadResults(BASELINE);
  assert.deepEqual(base.map((r) => r.spec.id).sort(), grid.map((s) => s.id).sort());
  const c = compareResults(base, base, profile.tolerances);
  assert.equal(c.ok, true);
  assert.equal(c.compared, grid.length);
  // With the profile's own tolerances, a prediction changed at a step that is no task's best (its
  // scores are not gated) fails through that evaluation's digest (h383: a gate that skipped the
  // check under ci's tolerances passed every test).
  const r = base[0]!;
  const other = r.evals.find((e) => e.step !== r.best[e.task]!.step)!;
  const changed = {
    ...r,
    evals: r.evals.map((e) => e === other ? { ...e, predictionsSha256: "0".repeat(64) } : e),
  };
  const moved = compareResults([changed, ...base.slice(1)], base, profile.tolerances);
  assert.deepEqual(moved.failures.map((f) => f.field), [
    `evals[step ${other.step}].${other.task}.predictionsSha256`,
  ]);
  // The gate is tight (see benchmarks/README.md): every step's loss and every evaluation's
  // predictions are compared, scores within half a point. Pinned whole: a tolerance loosened in
  // the commit under test would pass what the baseline's own fail (h381).
  assert.deepEqual(profile.tolerances, {
    default: 0.5,
    metrics: {},
    loss: 1e-5,
    predictions: true,
  });
  for (const r of base) {
    // Made from a committed tree, so the baseline names the code that produced it.
    assert.equal(r.provenance.gitDirty, false, `${r.spec.id} was made from a dirty tree`);
    assert.match(r.provenance.gitSha, /^[0-9a-f]{40}$/);
    assert.equal(r.losses.length, r.spec.train.steps);
    // Two evaluations per task, so the best-checkpoint choice is part of what is gated.
    for (const t of r.spec.tasks) {
      assert.ok(r.evals.filter((e) => e.task === t).length >= 2, `${r.spec.id}: ${t} evals`);
    }
    // Each evaluation's predictions are recorded, so the gate compares them.
    for (const e of r.evals) {
      assert.match(
        e.predictionsSha256 ?? "",
        /^[0-9a-f]{64}$/,
        `${r.spec.id}: ${e.task}@${e.step}`,
      );
    }
    assert.equal(r.provenance.backend.name, "cpu");
    // Fine-tuned from the offline span-corruption backbone, with its tokenizer.
    assert.equal(r.spec.backbone, "pretrained");
    assert.match(r.backboneSource, /backbones\/tiny-v1_1-[0-9a-f]{16}$/);
    assert.equal(r.tokenizer, "backbone");
    for (const t of r.spec.tasks) assert.ok(r.best[t], `${r.spec.id} has no best ${t}`);
  }
});

Deno.test("ci baseline parameter and FLOP counts equal the analytic accounting", async () => {
  const acc = await loadAccounting();
  assert.ok(acc);
  for (const r of await loadResults(BASELINE)) {
    const s = r.spec;
    const a = acc(preset(s.model as string), s.method.name, s.method.config, s.tasks.length, {
      inputLength: s.train.maxInputLength,
      targetLength: s.train.maxTargetLength,
    });
    const where = `${s.benchmark}/${s.method.label}`;
    assert.equal(r.params.total, a.total, where);
    assert.equal(r.params.extra, a.extra, where);
    assert.equal(r.params.trained, a.trained, where);
    assert.equal(r.flops.trainPerExample, a.trainFlops, where);
    assert.equal(r.flops.inferencePerExample, a.forwardFlops, where);
  }
});
