import assert from "node:assert/strict";
import { loadResults } from "./compare.ts";
import { lossDiffs, main } from "./loss_diff.ts";
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
  // More steps in CURRENT is another step count too, not compared over the baseline's.
  const long = cur.map((r, i) => (i === 0 ? { ...r, losses: [...r.losses, r.losses[0]!] } : r));
  assert.throws(
    () => lossDiffs(base, long),
    new RegExp(`${base[0]!.losses.length + 1} steps against ${base[0]!.losses.length}`),
  );
});

Deno.test("main: 0 compared, 1 a run missing from CURRENT, 2 bad arguments; one line, no stack", async () => {
  const ci = repoPath("results", "baselines", "ci");
  const run = async (args: string[]) => {
    const out: string[] = [];
    const err: string[] = [];
    const code = await main(args, { log: (s) => out.push(s), error: (s) => err.push(s) });
    return { code, out, err };
  };
  const same = await run([ci, ci]);
  assert.equal(same.code, 0, same.err.join("\n"));
  const n = (await loadResults(ci)).length;
  assert.equal(same.out.length, n + 1);
  assert.equal(
    same.out.at(-1),
    `${n} runs: max relative loss difference 0.00e+0; 0 with other averages`,
  );
  const dir = await Deno.makeTempDir();
  try {
    // CURRENT holds one of the baseline's runs only: the others are missing (a failure, 1).
    const first = [...Deno.readDirSync(ci)].map((e) => e.name).filter((f) => f.endsWith(".json"))
      .sort()[0]!;
    await Deno.copyFile(`${ci}/${first}`, `${dir}/${first}`);
    const missing = await run([ci, dir]);
    assert.equal(missing.code, 1);
    assert.match(missing.err.join("\n"), /^benchmarks\/loss_diff\.ts: no current run /);
    for (
      const [args, message] of [
        [[ci], /takes two folders, BASELINE CURRENT; got 1 argument/],
        [[ci, `${dir}/none`], /^CURRENT .*none: no such folder or file$/],
        [[ci, ci, "--quiet"], /^unknown flag --quiet; /],
        [["-q", ci], /^unknown flag -q; /], // not read as a folder named -q
      ] as const
    ) {
      const r = await run([...args]);
      assert.equal(r.code, 2, args.join(" "));
      assert.match(r.err.join("\n"), message);
      assert.deepEqual(r.out, []);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
