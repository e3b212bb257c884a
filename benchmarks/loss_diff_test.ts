import assert from "node:assert/strict";
import { loadResults } from "./compare.ts";
import { lossDiffs } from "./loss_diff.ts";
import type { RunResult } from "./spec.ts";
import { repoPath } from "../model/shared_dir.ts";

Deno.test("lossDiffs: relative loss differences and equal averages by run key, backend aside", async () => {
  const base = await loadResults(repoPath("results", "baselines", "ci"));
  // The same runs on another backend (another run id); run 3's third loss moved by 1e-6 relative.
  const cur: RunResult[] = base.map((r, i) => ({
    ...r,
    spec: { ...r.spec, backend: "webgpu", id: `x${i}` },
    losses: r.losses.map((l, s) => (i === 3 && s === 2 ? { ...l, loss: l.loss * (1 + 1e-6) } : l)),
  }));
  const diffs = lossDiffs(base, cur);
  assert.equal(diffs.length, base.length);
  const nonzero = diffs.filter((d) => d.maxRelLossDiff > 0);
  assert.equal(nonzero.length, 1);
  assert.ok(
    Math.abs(nonzero[0]!.maxRelLossDiff - 1e-6) < 1e-12,
    String(nonzero[0]!.maxRelLossDiff),
  );
  assert.ok(diffs.every((d) => d.averagesEqual && d.steps === base[0]!.losses.length));
  // Another average, a missing run and another step count are told apart.
  const other = cur.map((r, i) => (i === 0 ? { ...r, averages: { ...r.averages, glue: 99 } } : r));
  assert.equal(lossDiffs(base, other).filter((d) => !d.averagesEqual).length, 1);
  assert.throws(() => lossDiffs(base, cur.slice(1)), /no current run /);
  const short = cur.map((r, i) => (i === 0 ? { ...r, losses: r.losses.slice(1) } : r));
  assert.throws(() => lossDiffs(base, short), /steps against/);
});
