import assert from "node:assert/strict";
import { join } from "node:path";
import { main } from "./gate.ts";
import { CI_BASELINE as CI, ciBaselineFiles, fakeRuns, fakeSpec } from "./results_testing.ts";
import { runFileName } from "./spec.ts";
import { PROFILES_DIR } from "./profile.ts";

/** `deno task gate` with its output captured. */
async function gate(args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, { log: (s) => out.push(s), error: (s) => err.push(s) });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

Deno.test("deno task gate: the CI baseline against itself passes at the ci profile's tolerances (its own profile by default)", async () => {
  const r = await gate(["--baseline", CI, "--runs", CI]);
  assert.deepEqual([r.code, r.err], [0, ""]);
  assert.equal(r.out.split("\n")[0], "Regression gate: PASS (21 runs compared, 0 failures)");
});

Deno.test("deno task gate: a score moved beyond tolerance, or a run missing, fails with exit 3; --partial gates the runs present; shards' folders are read as one", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const names = await ciBaselineFiles(join(dir, "cur"));
    // One run's CB score 6.25 points up: past the ci profile's tolerance.
    const edited = names.find((n) => n.includes("super_glue--mtl--"))!;
    const r = JSON.parse(await Deno.readTextFile(join(dir, "cur", edited)));
    const [metric] = Object.keys(r.best.cb.metrics);
    r.best.cb.metrics[metric!] += 6.25;
    // The evaluation it is of too: a result whose best is not its evaluations' is refused.
    const at = r.evals.find((e: { task: string; step: number }) =>
      e.task === "cb" && e.step === r.best.cb.step
    );
    at.metrics[metric!] += 6.25;
    await Deno.writeTextFile(join(dir, "cur", edited), JSON.stringify(r));
    const moved = await gate(["--baseline", CI, "--runs", join(dir, "cur")]);
    assert.equal(moved.code, 3, moved.err);
    assert.match(moved.out, /^Regression gate: FAIL \(21 runs compared, 1 failure\)/);
    assert.match(
      moved.out,
      new RegExp(`FAIL ci/tiny-v1_1/pretrained/super_glue/mtl/s0: best\\.cb\\.${metric}`),
    );
    // Half the runs in one folder, half in another: one result set.
    await Deno.mkdir(join(dir, "a"));
    await Deno.mkdir(join(dir, "b"));
    for (const [i, n] of names.entries()) {
      await Deno.copyFile(join(CI, n), join(dir, i < 8 ? "a" : "b", n));
    }
    const split = await gate([
      "--baseline",
      CI,
      "--runs",
      join(dir, "a"),
      "--runs",
      join(dir, "b"),
    ]);
    assert.equal(split.code, 0, split.out);
    // One shard's folder: the others' runs missing fail, unless --partial.
    const one = await gate(["--baseline", CI, "--runs", join(dir, "a")]);
    assert.equal(one.code, 3);
    assert.match(one.out, /run: baseline present, current missing/);
    const partial = await gate(["--baseline", CI, "--runs", join(dir, "a"), "--partial"]);
    assert.equal(partial.code, 0, partial.out);
    assert.match(partial.out, /^Regression gate: PASS \(8 runs compared, 0 failures\)/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno task gate: bad arguments exit 2 in one line, naming the flag", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(join(dir, "empty"));
    await Deno.writeTextFile(join(dir, "notes.json"), '{"note": "x"}');
    const first = (await ciBaselineFiles(join(dir, "copies")))[0]!;
    await Deno.copyFile(join(CI, first), join(dir, "copies", "copy.json"));
    // A baseline of a profile that is no built-in one: its tolerances cannot be guessed.
    const [mine] = await fakeRuns([fakeSpec("mine", "tiny-v1_1", "mtl", "mtl", 0, "glue")]);
    await Deno.mkdir(join(dir, "mine"));
    await Deno.writeTextFile(join(dir, "mine", runFileName(mine!.spec)), JSON.stringify(mine));
    const cases: [string[], RegExp][] = [
      [["--runs", CI], /^--baseline is required: /],
      [["--baseline", CI], /^--runs is required: /],
      [
        ["--baseline", join(dir, "nope"), "--runs", CI],
        /^--baseline .*nope: no such folder or file/,
      ],
      [["--baseline", join(dir, "empty"), "--runs", CI], /^--baseline .*empty: no run results/],
      [["--baseline", CI, "--runs", CI, "--runs", `${CI}/`], /the same folder as --runs/],
      [
        ["--baseline", join(dir, "mine"), "--runs", join(dir, "mine")],
        /^--profile is needed: the baseline's runs are of profile "mine", no built-in one; /,
      ],
      [
        ["--baseline", CI, "--runs", CI, "--profile", "nope"],
        /^Unknown profile "nope"; built-in /,
      ],
      [["--baseline", CI, "--runs", CI, "--partial=yes"], /^--partial takes no value/],
      // A file that is no result, in the baseline or --runs: named, an argument error.
      [
        ["--baseline", join(dir, "notes.json"), "--runs", CI],
        /^--baseline .*notes\.json: \$\.spec is missing/,
      ],
      [
        ["--baseline", CI, "--runs", join(dir, "notes.json")],
        /^--runs .*notes\.json: \$\.spec is missing/,
      ],
      // A folder and a file in it: one file named twice, not two results of a run.
      [
        ["--baseline", CI, "--runs", CI, "--runs", join(CI, first)],
        new RegExp(`^--runs: .*${first.replaceAll(".", "\\.")} is read twice \\(as `),
      ],
      // Two results of one run (a renamed copy) in --runs: refused, both files named.
      [
        ["--baseline", CI, "--runs", join(dir, "copies")],
        /^--runs: Two results for the same run key .*: .*copy\.json.* remove the stale one/,
      ],
    ];
    for (const [args, want] of cases) {
      const r = await gate(args);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.err}`);
      assert.ok(!r.err.includes("\n"), r.err);
      assert.match(r.err, want);
    }
    // Named by its JSON file, the baseline's profile's tolerances gate it.
    const ci = JSON.parse(await Deno.readTextFile(join(PROFILES_DIR, "ci.json")));
    await Deno.writeTextFile(join(dir, "mine.json"), JSON.stringify({ ...ci, name: "mine" }));
    const named = await gate([
      "--baseline",
      join(dir, "mine"),
      "--runs",
      join(dir, "mine"),
      "--profile",
      join(dir, "mine.json"),
    ]);
    assert.equal(named.code, 0, named.err);
    // Another profile's tolerances are refused (smoke's would pass what ci's fail).
    for (
      const [baseline, profile, of] of [[join(dir, "mine"), "ci", "mine"], [CI, "smoke", "ci"]]
    ) {
      const other = await gate([
        "--baseline",
        baseline!,
        "--runs",
        baseline!,
        "--profile",
        profile!,
      ]);
      assert.equal(other.code, 2, other.err);
      assert.equal(
        other.err,
        `--profile ${profile}: its tolerances are profile "${profile}"'s, but the baseline's runs ` +
          `are of profile "${of}": name the baseline's profile (or its JSON file), whose ` +
          "tolerances it was made for",
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
