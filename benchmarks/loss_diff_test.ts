import assert from "node:assert/strict";
import { loadResults, runKey } from "./compare.ts";
import { lossDiffs, main } from "./loss_diff.ts";
import type { RunResult } from "./spec.ts";
import { repoPath } from "../model/shared_dir.ts";

/** `s` as a regular expression matching it literally. */
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");

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
  // Every missing run is counted, the first three named in key order, and who lacks them said.
  const keys = base.map(runKey).sort();
  assert.throws(
    () => lossDiffs(base, cur.slice(4), "CURRENT dir"),
    (e: Error) => {
      const missingKeys = base.slice(0, 4).map(runKey).sort();
      assert.equal(
        e.message,
        `benchmarks/loss_diff.ts: CURRENT dir: no run for 4 of the ${base.length} baseline ` +
          `runs: ${missingKeys.slice(0, 3).join(", ")} and 1 more`,
      );
      return true;
    },
  );
  // In key order whatever the baseline's order (a folder's file order).
  assert.throws(
    () => lossDiffs([...base].reverse(), cur.slice(4), "CURRENT dir"),
    (e: Error) => {
      const first = base.slice(0, 4).map(runKey).sort().slice(0, 3).join(", ");
      assert.ok(e.message.endsWith(`runs: ${first} and 1 more`), e.message);
      return true;
    },
  );
  assert.throws(
    () => lossDiffs(base, cur.filter((r) => runKey(r) !== keys[0])),
    new RegExp(
      `^Error: benchmarks/loss_diff\\.ts: the current results: no run for 1 of the ` +
        `${base.length} baseline runs: ${escape(keys[0]!)}$`,
    ),
  );
  // Two results of one run key in one list are refused, not one of them kept silently.
  assert.throws(
    () => lossDiffs(base, [...cur, { ...cur[2]!, spec: { ...cur[2]!.spec, id: "y" } }]),
    new RegExp(`Two results for the same current run key ${escape(runKey(cur[2]!))}: `),
  );
  assert.throws(
    () => lossDiffs([...base, base[1]!], cur),
    new RegExp(`Two results for the same baseline run key ${escape(runKey(base[1]!))}: `),
  );
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
    assert.match(
      missing.err.join("\n"),
      new RegExp(
        `^benchmarks/loss_diff\\.ts: CURRENT ${escape(dir)}: no run for ${n - 1} of the ${n} ` +
          // Three run keys (a label may hold spaces, never a comma), then the count of the rest.
          `baseline runs: [^,]+, [^,]+, [^,]+ and ${n - 4} more$`,
      ),
    );
    assert.deepEqual(missing.out, []);
    // An empty folder (no run results) on either side is refused (2), not "0 runs" compared.
    const empty = `${dir}/empty`;
    await Deno.mkdir(empty);
    // A folder holding one run twice (a copy beside the original) is refused naming both files.
    const twice = `${dir}/twice`;
    await Deno.mkdir(twice);
    await Deno.copyFile(`${ci}/${first}`, `${twice}/a.json`);
    await Deno.copyFile(`${ci}/${first}`, `${twice}/b.json`);
    for (
      const [args, message] of [
        [[ci], /takes two folders, BASELINE CURRENT; got 1 argument/],
        [[ci, `${dir}/none`], /^CURRENT .*none: no such folder or file$/],
        [[ci, ci, "--quiet"], /^unknown flag --quiet; /],
        [["-q", ci], /^unknown flag -q; /], // not read as a folder named -q
        [
          [empty, ci],
          new RegExp(`^BASELINE ${escape(empty)}: no run results \\(\\*\\.json\\) there; `),
        ],
        [
          [ci, empty],
          new RegExp(`^CURRENT ${escape(empty)}: no run results \\(\\*\\.json\\) there; `),
        ],
        [
          [twice, ci],
          new RegExp(
            `^Two results for the same BASELINE run key [^:]+: .*twice/a\\.json and .*twice/b\\.json; ` +
              `remove the stale one`,
          ),
        ],
        [[ci, twice], /^Two results for the same CURRENT run key [^:]+: .*a\.json and .*b\.json; /],
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
