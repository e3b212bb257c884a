import assert from "node:assert/strict";
import { badFolders } from "./cli_testing.ts";
import { inTempDir } from "../model/fs_testing.ts";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { sharedPath } from "../model/shared_dir.ts";
import { hubEnv, withEnv } from "../model/env_testing.ts";
import { serveHub } from "../model/hub_testing.ts";
import { fetchHubModel } from "../model/hub.ts";
import { wasmEngine } from "../model/backend.ts";
import { fetchHubConfigFiles } from "../model/pretrained.ts";
import {
  barName,
  claimLines,
  estimateRun,
  evaluationsAfter,
  failedLines,
  fmtDuration,
  hubCacheNotes,
  interruptHandler,
  interruptWhileCheckpointing,
  invalidPredictionsNote,
  isGpuBackend,
  leftToOthersNote,
  main,
  malformedTaskFiles,
  missingDiagnosticTests,
  modelConfig,
  preflightModelConfig,
  progressInfo,
  progressReporter,
  readsTaskCorpus,
  statedMemoryUse,
  undefinedMetricsNotes,
  unusableCheckpoints,
  weightsFolder,
} from "./cli.ts";
import { loadResults, runKey } from "./compare.ts";
import { methodAccounting } from "../model/methods/accounting.ts";
import { dataProvenance } from "./provenance.ts";
import { dataFiles } from "./run_one.ts";
import { corpusReadNote } from "../tasks/data.ts";
import { defaultTaskCatalog, expandGrid, runLockFile } from "./runner.ts";
import {
  runFileName,
  runId,
  type RunOneFn,
  type RunProgress,
  type RunResult,
  type RunSpec,
} from "./spec.ts";
import { DEFAULT_CHECKPOINT_MINUTES, requestStop, stopRequested } from "./trainer.ts";
import { toyTrain } from "./trainer_testing.ts";
import { preset, type T5Config } from "../model/config.ts";
import { readSafetensorsHeader } from "../model/safetensors.ts";
import { estimateTrainingMemory } from "./memory.ts";
import {
  DEVICE_MARGIN,
  memoryInputFor,
  WASM_HEAP_BYTES,
  WASM_HEAP_MARGIN,
  WASM_XNN_HEAP_MARGIN,
} from "./device_memory.ts";
import { loadProfile } from "./profile.ts";
import { Writable } from "node:stream";
import process from "node:process";
import { countingRunOne, fakeRunOne } from "./_fake_run_one.ts";
import { closedStderr } from "../model/stderr_testing.ts";
import { metricsTable, toCsv, writeTables } from "./tables.ts";
import { DownloadError, type DownloadOptions, type TaskResult } from "../tasks/download.ts";

const DATA = sharedPath("data");
const CLI = fileURLToPath(new URL("./cli.ts", import.meta.url));

const TINY = {
  name: "tiny-grid",
  seeds: [0, 1],
  models: ["tiny-v1_1"],
  benchmarks: ["glue", "super_glue"],
  tasks: { glue: ["rte", "cola"], super_glue: ["cb"] },
  methods: [
    { name: "mtl" },
    { name: "prompt_tuning", config: { length: 4 } },
    { name: "hyperprompt_global", config: { length: 4 } },
  ],
  train: { steps: 4, evalEvery: 2, batchSize: 2, maxInputLength: 32, maxTargetLength: 4 },
  tolerances: { default: 0.5 },
};

async function tmpProfile(dir: string, extra: Record<string, unknown> = {}): Promise<string> {
  const file = join(dir, "tiny.json");
  await Deno.writeTextFile(file, JSON.stringify({ ...TINY, ...extra }, null, 2));
  return file;
}

/**
 * A profile in `dir` (MTL on GLUE unless `extra` says) whose tiny steps' peak is set by
 * activations, not weights (input 64: batch 8 > micro 4 > 2), and its grid.
 */
async function memoryGrid(
  dir: string,
  extra: Record<string, unknown> = {},
): Promise<{ profile: string; grid: RunSpec[] }> {
  const profile = await tmpProfile(dir, {
    benchmarks: ["glue"],
    methods: [{ name: "mtl" }],
    train: { steps: 2, evalEvery: 2, batchSize: 8, maxInputLength: 64, maxTargetLength: 4 },
    ...extra,
  });
  const grid = expandGrid(await loadProfile(profile), {
    dataDir: DATA,
    catalog: await defaultTaskCatalog(),
  });
  return { profile, grid };
}

/**
 * Runs `body` in a fresh temporary folder `dir` (removed afterwards whatever happens) holding the
 * {@link TINY} profile at `profile`; `out` is `<dir>/out`, not created.
 */
function inTinyProfileDir(
  body: (p: { dir: string; profile: string; out: string }) => Promise<void>,
): Promise<void> {
  return inTempDir(async (dir) =>
    body({ dir, profile: await tmpProfile(dir), out: join(dir, "out") })
  );
}

/** `s` as a regular expression matching it literally. */
function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return {
    out,
    err,
    opts: { log: (s: string) => out.push(s), error: (s: string) => err.push(s), progress: false },
  };
}

/**
 * A `runCommand` that must not be called: it records each call (and rejects, as a missing
 * program would not: since probeDeviceMemory reads a rejection as "memory unknown", only the
 * record shows an accidental call). Tests assert `calls` is empty.
 */
function forbiddenCommand(): {
  calls: string[];
  runCommand: (cmd: string, args: readonly string[]) => Promise<never>;
} {
  const calls: string[] = [];
  return {
    calls,
    runCommand: (cmd, args) => {
      calls.push([cmd, ...args].join(" "));
      return Promise.reject(new Error(`${cmd} must not run here`));
    },
  };
}

function readAll(dir: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const e of Deno.readDirSync(dir)) {
    if (e.isFile) m.set(e.name, Deno.readTextFileSync(join(dir, e.name)));
  }
  return m;
}

Deno.test("cli --shard i/3 in three parallel processes merges into the tables of one unsharded run", () =>
  inTinyProfileDir(async ({ dir, profile }) => {
    const sharded = join(dir, "sharded");
    const procs = [0, 1, 2].map((i) =>
      new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          CLI,
          "--profile",
          profile,
          "--data-dir",
          DATA,
          "--out",
          sharded,
          "--shard",
          `${i}/3`,
        ],
        env: { HYPERPROMPT_FAKE_RUN_ONE: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output()
    );
    const outs = await Promise.all(procs);
    for (const o of outs) assert.equal(o.code, 0, new TextDecoder().decode(o.stderr));
    const logs = outs.map((o) => new TextDecoder().decode(o.stderr)).join("\n");
    assert.match(logs, /shard 0\/3: 4 of 12 runs/);

    const whole = join(dir, "whole");
    const c = capture();
    assert.equal(
      await main(["--profile", profile, "--data-dir", DATA, "--out", whole], {
        ...c.opts,
        runOne: fakeRunOne,
      }),
      0,
    );
    // An unsharded run writes the tables after its runs; shards write none.
    assert.ok(Deno.statSync(join(whole, "tables", "scores.csv")).isFile);
    assert.match(c.err.join("\n"), /Tables: 8 files/);
    assert.throws(() => Deno.statSync(join(sharded, "tables")), Deno.errors.NotFound);
    const a = readAll(sharded);
    const b = readAll(whole);
    assert.equal(a.size, 12);
    assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());

    await writeTables(sharded, join(dir, "ta"), { accounting: null });
    await writeTables(whole, join(dir, "tb"), { accounting: null });
    const ta = readAll(join(dir, "ta"));
    const tb = readAll(join(dir, "tb"));
    assert.equal(ta.size, 8);
    for (const [name, text] of tb) assert.equal(ta.get(name), text, name);
    assert.equal(ta.get("scores.csv")!.trim().split("\n").length, 1 + 3);
    // metrics.csv: every run's every task and metric (none left out), as metricsTable gives them.
    const all = await loadResults(whole);
    assert.equal(ta.get("metrics.csv"), toCsv(metricsTable(all)));
    const rows = metricsTable(all).length - 1;
    const metrics = new Set(
      all.flatMap((r) =>
        Object.entries(r.best).flatMap(([t, b]) =>
          Object.keys(b.metrics).map((m) => `${r.spec.benchmark}/${t}/${m}`)
        )
      ),
    );
    assert.equal(rows, 3 * metrics.size, "a row per group, task and metric");
  }));

Deno.test("main(): tasks listed for a benchmark not in the grid are a note, once, dry run or not", () =>
  inTempDir(async (dir) => {
    const profile = await tmpProfile(dir, {
      seeds: [0],
      benchmarks: ["glue"],
      tasks: { glue: ["rte"], super_glue: ["cb"] },
      methods: [{ name: "mtl" }],
    });
    const note = `note: profile "tiny-grid" lists "tasks" for super_glue (cb), which no run ` +
      `trains: super_glue is not in its "benchmarks" (glue)`;
    const args = ["--profile", profile, "--data-dir", DATA, "--backend", "cpu", "--no-tables"];
    for (const extra of [["--dry-run"], ["--out", join(dir, "runs")]]) {
      const c = capture();
      const opts = { ...c.opts, runOne: fakeRunOne };
      assert.equal(await main([...args, ...extra], opts), 0, c.err.join("\n"));
      assert.deepEqual(
        c.err.filter((l) => l.includes("which no run trains")),
        [note],
        extra.join(" "),
      );
    }
    // A profile whose every list is of a benchmark it trains gets no such note.
    const both = await tmpProfile(dir, { seeds: [0], methods: [{ name: "mtl" }] });
    const c = capture();
    assert.equal(await main(["--profile", both, "--data-dir", DATA, "--dry-run"], c.opts), 0);
    assert.ok(!c.err.some((l) => l.includes("which no run trains")), c.err.join("\n"));
  }));

Deno.test("main() reports bad arguments and profiles with exit code 2", () =>
  inTempDir(async (dir) => {
    let c = capture();
    assert.equal(await main(["--profile", "nope"], c.opts), 2);
    assert.match(c.err.join("\n"), /Unknown profile "nope"; built-in profiles: .*ci/);
    c = capture();
    assert.equal(await main(["--profile", "ci", "--backend", "tpu"], c.opts), 2);
    assert.match(c.err.join("\n"), /Unknown --backend "tpu"/);
    c = capture();
    assert.equal(await main(["--bogus"], c.opts), 2);
    assert.deepEqual(c.err, ["unknown flag --bogus; deno task bench --help lists the flags"]);
    c = capture();
    const bad = await tmpProfile(dir, { methods: [{ name: "mtl" }, { name: "lora" }] });
    assert.equal(await main(["--profile", bad, "--data-dir", DATA], c.opts), 2);
    assert.match(c.err.join("\n"), /tiny\.json:\d+: \$\.methods\[1\]\.name must be one of/);
    c = capture();
    const missing = await tmpProfile(dir, { tasks: { glue: ["qqp"] } });
    assert.equal(await main(["--profile", missing, "--data-dir", DATA], c.opts), 2);
    assert.match(c.err.join("\n"), /missing glue task files for qqp/);
    // The folder was named: the advice is to fill it or drop the flag, not to pass the flag.
    assert.match(c.err.join("\n"), /that folder was named by --data-dir: put the files there/);
    assert.doesNotMatch(c.err.join("\n"), /or pass --data-dir/);
    c = capture();
    assert.equal(await main(["--help"], c.opts), 0);
    assert.match(c.out.join("\n"), /--shard i\/n[\s\S]*smoke/);
    assert.match(c.out.join("\n"), /--checkpoint-minutes N\n +a run that writes checkpoints/);
    assert.match(c.out.join("\n"), /exits 130 \(SIGINT\) or 143 \(SIGTERM\)[^]*A second signal/);
    // The wasm heap's usable share is the preflight's, per backend (plain wasm keeps more free).
    assert.match(
      c.out.join("\n"),
      new RegExp(
        `wasm heap \\(${Math.round(100 * (1 - WASM_HEAP_MARGIN))}% usable,\\s+` +
          `${Math.round(100 * (1 - WASM_XNN_HEAP_MARGIN))}%\\s+on\\s+plain\\s+wasm`,
      ),
    );
    // The profiles' descriptions start in one column, ablation-large's too, and so do their
    // continuation lines (wrapped to 100 columns).
    const profileLines = c.out.join("\n").split("\nProfiles:\n")[1]!.split("\n");
    assert.ok(profileLines.some((l) => l.startsWith("  ablation-large ")), profileLines.join("\n"));
    const starts = new Set(profileLines.map((l) => /^ {2}(\S+)? +/.exec(l)![0].length));
    assert.equal(starts.size, 1, profileLines.join("\n"));
    assert.ok(profileLines.every((l) => l.length <= 100), profileLines.join("\n"));
    // -h too, and after other flags, a mistyped one included, as in every tool (runCli).
    c = capture();
    assert.equal(await main(["--bogus", "--out", "-h"], c.opts), 0);
    assert.deepEqual(c.err, []);
    assert.match(c.out.join("\n"), /--shard i\/n[\s\S]*smoke/);
  }));

Deno.test("main(): every flag that takes a value refuses an empty one in one line naming it (exit 2, nothing run or written)", () =>
  inTinyProfileDir(async ({ dir, profile }) => {
    // Each flag of OPTIONS that takes a value, and what --help says it takes.
    const flags: [string, string][] = [
      ["profile", "a built-in profile name or a profile JSON file"],
      ["data-dir", "a folder"],
      ["out", "a folder"],
      ["methods", "method labels, comma-separated"],
      ["shard", "i/n, e.g. 0/4"],
      ["compare", "a baseline folder or JSON file"],
      ["backend", "auto|tensorflow|webgpu|wasm|wasm+blas|cpu"],
      ["tables", "a folder"],
      ["device-memory", "the GPU's memory in GB of 10⁹ bytes, e.g. 85.5 (an 80 GB H100)"],
      ["checkpoint-minutes", "minutes, e.g. 30 (0: off)"],
    ];
    const valid = ["--data-dir", DATA, "--out", join(dir, "out"), "--no-download"];
    const { calls, runOne } = countingRunOne();
    for (const [flag, takes] of flags) {
      // Both spellings, after a valid profile (the value is refused, not the profile).
      for (const empty of [[`--${flag}=`], [`--${flag}`, ""]]) {
        const args = [...(flag === "profile" ? [] : ["--profile", profile]), ...empty];
        const c = capture();
        assert.equal(await main(args, { ...c.opts, runOne }), 2, args.join(" "));
        assert.deepEqual(c.err, [
          `--${flag} needs a value (${takes}), got an empty one ("": an unset variable?); ` +
          `deno task bench --help lists the flags`,
        ]);
        assert.deepEqual(c.out, []);
      }
    }
    // With everything else valid (a run, no dry run): still refused before anything runs.
    const c = capture();
    assert.equal(
      await main(["--profile", profile, ...valid, "--compare= "], { ...c.opts, runOne }),
      2,
    );
    assert.match(c.err.join("\n"), /^--compare needs a value .*, got an empty one \(" ": /);
    assert.equal(calls.length, 0);
    assert.ok(!existsSync(join(dir, "out")), "no output folder made");
  }));

Deno.test("main() refuses every bad flag, value and combination in one line naming them (exit 2, no usage text)", () =>
  inTinyProfileDir(async ({ dir, profile }) => {
    const badJson = join(dir, "bad.json");
    await Deno.writeTextFile(badJson, "{\n");
    // Checked before the profile's grid: none of these reads data or runs anything.
    const cases: [string[], RegExp][] = [
      [
        ["--device-memory", "-3"],
        /^--device-memory must be .*\(a positive number, e\.g\. 85\.5 for an 80 GB H100, whose nvidia-smi says 81559 MiB\), got "-3"$/,
      ],
      [["--device-memory=-3"], /^--device-memory must be .*got "-3"$/],
      [["--device-memory", "0"], /^--device-memory must be .*got "0"$/],
      [["--device-memory", "80GB"], /got "80GB" \(the number alone, without a unit\)$/],
      [
        ["--device-memory"],
        /^--device-memory needs a value \(the GPU's memory in GB of 10⁹ bytes, e\.g\. 85\.5 \(an 80 GB H100\)\); .*--help/,
      ],
      [
        ["--profile"],
        /^--profile needs a value \(a built-in profile name or a profile JSON file\)/,
      ],
      [["--profile", "--dry-run"], /^--profile needs a value .*, got the flag --dry-run after it;/],
      [
        ["--profile", ""],
        /^--profile needs a value \(a built-in profile name or a profile JSON file\), got an empty one \("": an unset variable\?\); deno task bench --help lists the flags$/,
      ],
      [["--profile", "nope"], /^Unknown profile "nope"; built-in profiles: /],
      [
        ["--profile", profile, "--profile", "ci"],
        /^--profile given twice \(".*tiny\.json", then "ci"\)/,
      ],
      [
        ["--backend"],
        /^--backend needs a value \(auto\|tensorflow\|webgpu\|wasm\|wasm\+blas\|cpu\)/,
      ],
      [
        ["--profile", profile, "--backend", "tpu"],
        /^Unknown --backend "tpu"; expected one of auto, .*cpu$/,
      ],
      [
        ["--profile", profile, "--backend", "gpu"],
        /^Unknown --backend "gpu"; expected one of auto, .*cpu; a GPU is reached through webgpu /,
      ],
      [
        ["--profile", profile, "--backend", "WASM+BLAS"],
        /^Unknown --backend "WASM\+BLAS"; expected one of .*; did you mean wasm\+blas\?$/,
      ],
      [["--profile", profile, "--methods"], /^--methods needs a value/],
      [
        ["--profile", profile, "--methods", "lora"],
        /^--methods: unknown method label "lora"; profile "tiny-grid" has the methods "mtl", /,
      ],
      [["--shard", "-1/2"], /^Cannot parse --shard "-1\/2": expected i\/n with 0 <= i < n/],
      [["--shard", "2/2"], /^--shard "2\/2": i must be < n \(0-based/],
      [["--shard", "01/02"], /^Cannot parse --shard "01\/02": .*no sign, spaces or leading zeros/],
      [["--shard", " 1/2"], /^Cannot parse --shard " 1\/2": /],
      [
        ["--profile", join(dir, "missing.json")],
        /^--profile .*missing\.json: no such file \(built-in profiles: .*ci.*\)$/,
      ],
      [
        ["--profile", dir],
        /^--profile .*: is a folder, not a profile JSON file \(built-in profiles: /,
      ],
      [["--profile", badJson], /^.*bad\.json:2:1: invalid JSON: /],
      [
        ["--shard", "1/99999999999999999999"],
        /^--shard "1\/99999999999999999999": n must be at most 9007199254740991$/,
      ],
      [
        ["--shard", "0/2", "--tables", dir],
        /^--tables .* with --shard 0\/2: a shard writes no tables/,
      ],
      [["--tables", dir, "--no-tables"], /^--tables .* with --no-tables: .*give one of them$/],
      [
        ["--out", "-x"],
        /^--out needs a value \(a folder\), got "-x", which reads as a flag \(if it is the value: --out=-x\)/,
      ],
      [["--profile", profile, "--out", ""], /^--out needs a value \(a folder\), got an empty one/],
      [
        ["--profile", profile, "--data-dir", join(dir, "nope")],
        /^--data-dir .*nope: no such folder$/,
      ],
      [
        ["--profile", profile, "--compare", join(dir, "nope")],
        /^--compare: \S*nope: no such folder or file \(of run results\)$/,
      ],
      [["--dry-run=yes"], /^--dry-run takes no value, got "--dry-run=yes"; deno task bench --help/],
      [["--resume", "yes"], /^unexpected argument "yes" after --resume, which takes no value: /],
      [["ci"], /^unexpected argument "ci": deno task bench takes only flags; /],
      [["--dry"], /^unknown flag --dry \(did you mean --dry-run\?\); deno task bench --help/],
      [["--device-mem", "80"], /^unknown flag --device-mem \(did you mean --device-memory\?\)/],
      [["--tasks", "rte"], /^unknown flag --tasks: the profile chooses the tasks/],
      [["-x"], /^unknown flag -x; deno task bench --help lists the flags$/],
    ];
    for (const [args, expected] of cases) {
      const c = capture();
      assert.equal(await main(args, c.opts), 2, args.join(" "));
      assert.equal(c.out.length, 0, args.join(" "));
      assert.equal(c.err.length, 1, `${args.join(" ")}: ${c.err.join("\n")}`);
      assert.ok(!c.err[0]!.includes("\n"), `${args.join(" ")}: ${c.err[0]}`);
      assert.match(c.err[0]!, expected, args.join(" "));
    }
    // The same flag twice with the same value, and a value that starts with a dash written
    // inline, are fine.
    const c = capture();
    const ok = ["--profile", profile, "--profile", profile, "--data-dir", DATA, "--dry-run"];
    assert.equal(await main([...ok, "--out=-x", "--no-tables"], c.opts), 0, c.err.join("\n"));
    assert.ok(!existsSync("-x")); // a dry run creates no output folder
    // As a user runs it: one line on stderr, nothing on stdout.
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", CLI, "--device-memory", "-3"],
      env: { NO_COLOR: "1" },
    }).output();
    assert.equal(out.code, 2);
    assert.equal(new TextDecoder().decode(out.stdout), "");
    assert.equal(
      new TextDecoder().decode(out.stderr),
      `--device-memory must be the GPU's memory in GB of 10⁹ bytes (a positive number, e.g. ` +
        `85.5 for an 80 GB H100, whose nvidia-smi says 81559 MiB), got "-3"\n`,
    );
  }));

Deno.test("main() --dry-run names two folders of one name as the tables do (labels.ts runLabels)", () =>
  inTempDir(async (dir) => {
    const a = join(dir, "a", "t5-base");
    const b = join(dir, "b", "t5-base");
    for (const f of [a, b]) await Deno.mkdir(f, { recursive: true });
    const profile = await tmpProfile(dir, {
      seeds: [0],
      models: [{ hf: a }, { hf: b }],
      backbone: [{ hf: a }, { hf: `${b}/` }],
      benchmarks: ["glue"],
      tasks: { glue: ["rte"] },
      methods: [{ name: "mtl" }],
    });
    const c = capture();
    const args = ["--profile", profile, "--data-dir", DATA, "--dry-run", "--backend", "cpu"];
    assert.equal(await main(args, c.opts), 0, c.err.join("\n"));
    assert.equal(c.out.length, 1 + 4 + 1, c.out.join("\n"));
    const cells = c.out.slice(1, 5).map((line) => line.split(/\s{2,}/).slice(2, 4));
    assert.deepEqual(cells, [
      ["a/t5-base", "a/t5-base"],
      ["a/t5-base", "b/t5-base"],
      ["b/t5-base", "a/t5-base"],
      ["b/t5-base", "b/t5-base"],
    ]);
  }));

Deno.test("main() --dry-run lists the grid with FLOPs and time; --compare gates the results", () =>
  inTinyProfileDir(async ({ dir, profile }) => {
    let c = capture();
    assert.equal(
      await main(
        ["--profile", profile, "--data-dir", DATA, "--dry-run", "--backend", "cpu"],
        c.opts,
      ),
      0,
    );
    assert.equal(c.out.length, 1 + 12 + 1);
    assert.match(c.out[0]!, /^#\s+id\s+model\s+backbone\s+benchmark\s+method\s+seed\s+tasks/);
    assert.match(c.out[1]!, /tiny-v1_1\s+random\s+glue\s+mtl\s+s0\s+2\s+4x2\s+\d/);
    assert.match(
      c.out.at(-1)!,
      /^12 runs; .* FLOPs; about .* \(cpu\); every row at the maximum lengths, an upper bound \(benchmarks\/README\.md, --assume-tflops\)$/,
    );
    // The summary names the rate assumed for the backend that will run: wasm is wasm+blas where
    // OpenBLAS loads (as selectBackend starts it), pure wasm with HYPERPROMPT_NO_BLAS=1.
    const engine = wasmEngine("wasm");
    const wasmRuns = "name" in engine ? engine.name : "";
    for (
      const [noBlas, want] of [
        ["1", /at an assumed 4\.00GFLOP\/s \(wasm\); every row at /],
        [
          "0",
          wasmRuns === "wasm+blas"
            ? /at an assumed 15\.0GFLOP\/s \(wasm\+blas\); every row at /
            : /at an assumed 4\.00GFLOP\/s \(wasm\); every row at /,
        ],
      ] as const
    ) {
      c = capture();
      assert.equal(
        await withEnv(
          { HYPERPROMPT_NO_BLAS: noBlas },
          () =>
            main(
              ["--profile", profile, "--data-dir", DATA, "--dry-run", "--backend", "wasm"],
              c.opts,
            ),
        ),
        0,
      );
      assert.match(c.out.at(-1)!, new RegExp(`^12 runs; .* FLOPs; about .* ${want.source}`));
    }
    // Models known only by a hub id the hub cache (an empty one here) lacks have no size yet: no
    // "0 FLOPs, about 0 s" line, and a note says why.
    c = capture();
    await Deno.mkdir(join(dir, "hub"));
    const hub = await tmpProfile(join(dir, "hub"), { models: [{ hf: "google/t5-v1_1-small" }] });
    const cache = join(dir, "empty-cache");
    assert.equal(
      await withEnv(
        { HYPERPROMPT_CACHE: cache },
        () => main(["--profile", hub, "--data-dir", DATA, "--dry-run", "--backend", "cpu"], c.opts),
      ),
      0,
    );
    assert.match(c.out.at(-1)!, /^12 runs; no FLOP or time estimate \(.*in the hub cache\)$/);
    assert.ok(
      c.err.includes(
        `note: "google/t5-v1_1-small" is not in the hub cache (no ${
          join(cache, "hub", "models--google--t5-v1_1-small", "main")
        }/config.json): its 12 runs get no memory or FLOP estimate and are not checked against ` +
          `the memory before training; a run downloads it there (or name a local folder holding ` +
          `it instead), and the next preflight reads it; the preflight never downloads`,
      ),
      c.err.join("\n"),
    );
    // A per-task method's runs name their task (they differ only by id otherwise).
    c = capture();
    await Deno.mkdir(join(dir, "pt"));
    const pt = await tmpProfile(join(dir, "pt"), {
      seeds: [0],
      methods: [{ name: "prompt_tuning", config: { length: 4 }, perTask: true }],
    });
    assert.equal(
      await main(["--profile", pt, "--data-dir", DATA, "--dry-run", "--backend", "cpu"], c.opts),
      0,
    );
    assert.equal(c.out.length, 1 + 3 + 1);
    assert.match(c.out[1]!, /glue\s+prompt_tuning\[rte\]\s+s0\s+1\s/);
    assert.match(c.out[2]!, /glue\s+prompt_tuning\[cola\]\s+s0\s+1\s/);
    assert.match(c.out[3]!, /super_glue\s+prompt_tuning\[cb\]\s+s0\s+1\s/);

    const base = join(dir, "base");
    c = capture();
    assert.equal(
      await main(["--profile", profile, "--data-dir", DATA, "--out", base], {
        ...c.opts,
        runOne: fakeRunOne,
      }),
      0,
    );
    c = capture();
    const out = join(dir, "out");
    const args = ["--profile", profile, "--data-dir", DATA, "--out", out, "--compare", base];
    assert.equal(await main(args, { ...c.opts, runOne: fakeRunOne }), 0);
    assert.match(c.out.join("\n"), /Regression gate: PASS \(12 runs compared/);
    // A dry run with --compare checks the baseline against the grid, gates nothing, and says so.
    c = capture();
    assert.equal(
      await main([...args, "--dry-run", "--backend", "cpu"], { ...c.opts, runOne: fakeRunOne }),
      0,
    );
    assert.ok(!c.out.join("\n").includes("Regression gate"), c.out.join("\n"));
    assert.ok(
      c.err.includes(
        `note: --compare ${base}: its 12 runs were checked against the grid; the gate compares ` +
          "trained results, so it runs only without --dry-run (exit 3 if it fails)",
      ),
      c.err.join("\n"),
    );
    assert.ok(!c.err.some((l) => l.includes("no baseline run")), c.err.join("\n"));
    // A baseline with a run's file removed: before training, that run is said to be ungated.
    const fewer = join(dir, "fewer");
    await Deno.mkdir(fewer);
    const files = [...Deno.readDirSync(base)].map((e) => e.name).filter((n) => n.endsWith(".json"))
      .sort();
    for (const f of files.slice(1)) await Deno.copyFile(join(base, f), join(fewer, f));
    const dropped = JSON.parse(await Deno.readTextFile(join(base, files[0]!)));
    c = capture();
    assert.equal(
      await main(
        ["--profile", profile, "--data-dir", DATA, "--out", out, "--compare", fewer, "--dry-run"],
        { ...c.opts, runOne: fakeRunOne },
      ),
      0,
    );
    assert.ok(
      c.err.includes(
        `note: --compare ${fewer}: 1 of the 12 runs has no baseline run, so the gate will not ` +
          `gate it (run ${runKey(dropped)})`,
      ),
      c.err.join("\n"),
    );
    // A runOne whose CB accuracy regressed by 5 points (at its best step; the group score kept)
    // fails the gate with a readable diff.
    const worse: typeof fakeRunOne = async (spec, o) => {
      const r = await fakeRunOne(spec, o);
      const cb = r.best["cb"];
      if (!cb) return r;
      const metrics = { ...cb.metrics, accuracy: cb.metrics["accuracy"]! - 5 };
      return {
        ...r,
        evals: r.evals.map((e) => e.task === "cb" && e.step === cb.step ? { ...e, metrics } : e),
        best: { ...r.best, cb: { ...cb, metrics } },
      };
    };
    c = capture();
    assert.equal(
      await main([...args.map((a) => (a === out ? join(dir, "out2") : a))], {
        ...c.opts,
        runOne: worse,
      }),
      3,
    );
    assert.match(
      c.out.join("\n"),
      /FAIL tiny-grid\/tiny-v1_1\/random\/super_glue\/mtl\/s0: best\.cb\.accuracy: .*\(diff -5, tolerance 0\.5\)/,
    );
    // --resume over a truncated result: the run is rerun, and the log says why.
    const victim = [...Deno.readDirSync(out)].find((e) => e.name.endsWith(".json"))!.name;
    await Deno.writeTextFile(join(out, victim), '{\n  "spec": {');
    // The checkpoints of the same run under another id (started with other settings): noted.
    const other = victim.replace(/--[^-]+\.json$/, "--000000000000");
    await Deno.mkdir(join(out, other, "step-00000002"), { recursive: true });
    c = capture();
    assert.equal(await main([...args, "--resume"], { ...c.opts, runOne: fakeRunOne }), 0);
    const notes = c.err.filter((l) => l.startsWith("note: --resume: "));
    assert.deepEqual(notes.length, 1, c.err.join("\n"));
    assert.ok(
      notes[0]!.startsWith(
        `note: --resume: ${join(out, other)} holds checkpoints of the same run as ` +
          `${victim.slice(0, -".json".length)} under another run id (other settings: `,
      ),
      String(notes[0]),
    );
    await Deno.remove(join(out, other), { recursive: true });
    assert.match(
      c.err.join("\n"),
      new RegExp(
        `rerunning .*: its result file cannot be used \\(.*${victim}:\\d+:\\d+: invalid JSON`,
      ),
    );
    assert.match(c.err.join("\n"), /1 run done, 11 skipped, 0 failed/);
  }));

Deno.test("main() without --profile picks smoke when the backend is not a GPU", async () => {
  // The fake run makes the probe report the cpu backend; withEnv restores the caller's value.
  await withEnv({ HYPERPROMPT_FAKE_RUN_ONE: "1" }, async () => {
    const c = capture();
    assert.equal(await main(["--dry-run", "--data-dir", DATA], c.opts), 0);
    assert.match(c.err.join("\n"), /No --profile: using "smoke" \(backend cpu, no GPU\)/);
    assert.ok(c.out.some((l) => /^32 runs; .*\(cpu\); every row at /.test(l)), c.out.join("\n"));
    // Its two backbones give each cell two rows, told apart by the backbone column.
    assert.equal(c.out.filter((l) => /\smini-v1_1\s+pretrained\s+glue\s+mtl\s/.test(l)).length, 1);
    assert.equal(c.out.filter((l) => /\smini-v1_1\s+random\s+glue\s+mtl\s/.test(l)).length, 1);
    // The pure-JS cpu backend is far too slow for the smoke profile's 10-minute budget.
    assert.match(
      c.out.at(-1)!,
      /^warning: the estimate exceeds the profile's time budget of 10m00s$/,
    );
  });
});

/** TINY over every GLUE task, skipping those without files (the mirror has 5 of the 8). */
const EVERY_GLUE_TASK = {
  seeds: [0],
  benchmarks: ["glue"],
  tasks: undefined,
  skipMissingTasks: true,
  methods: [{ name: "mtl" }],
};

Deno.test("main() --dry-run with predictTest: a trained task's missing test file is planned as downloaded, not warned of", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // A mirror with RTE's train and dev files only (no test.tsv, no WNLI).
    const shared = join(dir, "shared");
    await Deno.mkdir(join(shared, "data", "glue", "RTE"), { recursive: true });
    for (const f of ["train.tsv", "dev.tsv"]) {
      await Deno.copyFile(join(DATA, "glue", "RTE", f), join(shared, "data", "glue", "RTE", f));
    }
    const env = {
      HYPERPROMPT_DATA: undefined,
      HYPERPROMPT_CACHE: join(dir, "cache"),
      HYPERPROMPT_SHARED: shared,
    };
    await withEnv(env, async () => {
      const profile = await tmpProfile(dir, {
        seeds: [0],
        benchmarks: ["glue"],
        tasks: { glue: ["rte"] },
        methods: [{ name: "mtl" }],
        train: { ...TINY.train, predictTest: true },
      });
      const c = capture();
      const args = [
        "--profile",
        profile,
        "--out",
        join(dir, "out"),
        "--dry-run",
        "--backend",
        "cpu",
      ];
      assert.equal(await main(args, c.opts), 0, c.err.join("\n"));
      const err = c.err.join("\n");
      assert.match(err, /^A run would first download: glue\/rte, glue\/wnli; the plan below /m);
      assert.doesNotMatch(err, /missing glue test files/);
      // With --no-download, nothing comes: the dry run warns of it (a run would refuse).
      const off = capture();
      assert.equal(await main([...args, "--no-download"], off.opts), 0, off.err.join("\n"));
      assert.match(
        off.err.join("\n"),
        /^warning: Profile "[^"]+": missing glue test files for rte /m,
      );
      // A run asks the download for it first (offline here), then refuses before training.
      const asked: string[][] = [];
      const run = capture();
      const { calls, runOne } = countingRunOne();
      const code = await main(args.filter((a) => a !== "--dry-run"), {
        ...run.opts,
        runOne,
        download: (o: DownloadOptions) => {
          asked.push([...o.tasks]);
          return Promise.reject(new DownloadError([{ task: "glue/rte", reason: "offline" }], []));
        },
      });
      assert.equal(code, 1, run.err.join("\n"));
      assert.deepEqual(asked, [["glue/rte", "glue/wnli"]]);
      assert.match(run.err.join("\n"), /missing glue test files for rte \(glue\/RTE\/test\.tsv: /);
      assert.deepEqual(calls, [], "nothing trained");
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main() downloads the tasks the profile needs and the data lacks; offline it goes on", async () => {
  const dir = await Deno.makeTempDir();
  const env = { HYPERPROMPT_DATA: undefined, HYPERPROMPT_CACHE: join(dir, "cache") };
  await withEnv(env, async () => {
    const profile = await tmpProfile(dir, EVERY_GLUE_TASK);
    const asked: DownloadOptions[] = [];
    const offline = (o: DownloadOptions): Promise<TaskResult[]> => {
      asked.push(o);
      o.log?.("glue/qqp: official: dns error; retrying in 1 s");
      return Promise.reject(
        new DownloadError([
          { task: "glue/mnli", reason: "official: error sending request: dns error" },
          { task: "glue/qnli", reason: "official: dns error" },
          { task: "glue/qqp", reason: "official: dns error" },
        ], []),
      );
    };
    let c = capture();
    const out = join(dir, "out");
    const args = ["--profile", profile, "--out", out, "--no-tables"];
    assert.equal(await main(args, { ...c.opts, runOne: fakeRunOne, download: offline }), 0);
    // In the benchmark's task order.
    assert.deepEqual(asked.map((a) => a.tasks), [["glue/qqp", "glue/mnli", "glue/qnli"]]);
    assert.equal(asked[0]!.cacheDir, join(dir, "cache", "data"));
    const err = c.err.join("\n");
    assert.match(
      err,
      /Downloading 3 task\(s\) the profile needs into .*: glue\/qqp, glue\/mnli, glue\/qnli/,
    );
    // The download's own lines (its retries, its waits for another process) are shown, marked.
    assert.match(err, /^download: glue\/qqp: official: dns error; retrying in 1 s$/m);
    assert.match(
      err,
      /warning: download failed for 3 task\(s\) \(first: glue\/mnli: official: error sending request: dns error\); going on with the tasks present/,
    );
    // The run went on with the mirror's five GLUE tasks.
    const [result] = [...readAll(out).values()].map((t) => JSON.parse(t));
    assert.deepEqual(result.spec.tasks.length, 5);
    // A local file error stops the download: the tasks after it, not tried, are counted apart
    // (before, "download failed for 3 task(s)"), the first failure named is the one tried.
    const full = "official: /cache/glue/QQP/train.tsv: writing failed: No space left on device";
    const stopped = (): Promise<TaskResult[]> =>
      Promise.reject(
        new DownloadError([
          { task: "glue/qqp", reason: full },
          ...["glue/mnli", "glue/qnli"].map((task) => ({
            task,
            reason: "not tried: the previous write failed on the local disk",
            notTried: true as const,
          })),
        ], []),
      );
    c = capture();
    const outFull = join(dir, "out-full");
    assert.equal(
      await main(["--profile", profile, "--out", outFull, "--no-tables"], {
        ...c.opts,
        runOne: fakeRunOne,
        download: stopped,
      }),
      0,
    );
    assert.ok(
      c.err.includes(
        `warning: download failed for 1 task(s), 2 not tried (first: glue/qqp: ${full}); going ` +
          `on with the tasks present where the profile allows it (skipMissingTasks, for a ` +
          `benchmark whose tasks it does not list; else bench stops, naming them); --no-download ` +
          `skips this step, --data-dir names an offline mirror`,
      ),
      c.err.join("\n"),
    );
    // A long reason (several sources' errors, URLs) is cut to 300 characters, marked by "…".
    const long = `official: GET https://dl.example/${"x".repeat(400)}`;
    c = capture();
    assert.equal(
      await main(["--profile", profile, "--out", join(dir, "out-long"), "--no-tables"], {
        ...c.opts,
        runOne: fakeRunOne,
        download: () => Promise.reject(new DownloadError([{ task: "glue/qqp", reason: long }], [])),
      }),
      0,
    );
    const cut = `glue/qqp: ${long}`.slice(0, 299);
    assert.ok(
      c.err.some((l) => l.includes(`(first: ${cut}…); going on`)),
      c.err.join("\n"),
    );
    // --no-download, --data-dir and --dry-run download nothing (the dry run says what it would).
    asked.length = 0;
    for (
      const extra of [["--no-download"], ["--data-dir", DATA], ["--dry-run", "--backend", "cpu"]]
    ) {
      c = capture();
      const o = join(dir, `out-${extra[0]}`);
      assert.equal(
        await main(["--profile", profile, "--out", o, "--no-tables", ...extra], {
          ...c.opts,
          runOne: fakeRunOne,
          download: offline,
        }),
        0,
        c.err.join("\n"),
      );
      if (extra[0] === "--dry-run") {
        assert.match(
          c.err.join("\n"),
          /A run would first download: glue\/qqp, glue\/mnli, glue\/qnli; the plan below counts them as downloaded$/m,
        );
        // The plan is the grid a run trains once they are in: no task left out for them.
        assert.doesNotMatch(c.err.join("\n"), /leaving out glue tasks/);
        const withoutDownload = capture();
        await main([
          "--profile",
          profile,
          "--out",
          o,
          "--dry-run",
          "--backend",
          "cpu",
          "--no-download",
        ], {
          ...withoutDownload.opts,
          runOne: fakeRunOne,
          download: offline,
        });
        assert.match(withoutDownload.err.join("\n"), /leaving out glue tasks qqp, mnli, qnli/);
        assert.notDeepEqual(dryRunIds(c.out), dryRunIds(withoutDownload.out), "other task sets");
      }
    }
    assert.equal(asked.length, 0);
  }).finally(() => Deno.remove(dir, { recursive: true }));
});

Deno.test("main() refuses a bad HYPERPROMPT_DATA_ENDPOINTS or HF_ENDPOINT up front when it would download, and names the mirrors used", async () => {
  const dir = await Deno.makeTempDir();
  const env = {
    HYPERPROMPT_DATA: undefined,
    HYPERPROMPT_CACHE: join(dir, "cache"),
    HYPERPROMPT_DATA_ENDPOINTS: undefined,
    HF_ENDPOINT: undefined,
  };
  await withEnv(env, async () => {
    const profile = await tmpProfile(dir, EVERY_GLUE_TASK);
    const asked: DownloadOptions[] = [];
    const offline = (o: DownloadOptions): Promise<TaskResult[]> => {
      asked.push(o);
      return Promise.reject(new DownloadError(o.tasks.map((task) => ({ task, reason: "x" })), []));
    };
    const bench = async (extra: string[], vars: Record<string, string | undefined>) => {
      const c = capture();
      const out = join(dir, `out-${asked.length}-${extra.join("")}`);
      const code = await withEnv(
        vars,
        () =>
          main(["--profile", profile, "--out", out, "--no-tables", ...extra], {
            ...c.opts,
            runOne: fakeRunOne,
            download: offline,
          }),
      );
      return { code, err: c.err.join("\n"), out };
    };
    // Refused (2) before the grid: one line naming the variable, nothing downloaded or written.
    for (
      const [vars, want] of [
        [
          { HYPERPROMPT_DATA_ENDPOINTS: "gleu=https://m/glue" },
          /^HYPERPROMPT_DATA_ENDPOINTS: unknown endpoint "gleu"/,
        ],
        [{ HYPERPROMPT_DATA_ENDPOINTS: "glue=ftp://m/glue" }, /^HYPERPROMPT_DATA_ENDPOINTS: glue/],
        [{ HF_ENDPOINT: "not a url" }, /^HF_ENDPOINT/],
      ] as const
    ) {
      for (const extra of [[], ["--dry-run", "--backend", "cpu"]]) {
        const r = await bench(extra, vars);
        assert.equal(r.code, 2, r.err);
        assert.match(r.err, want);
        assert.match(r.err, /deno task bench reads it to download .*\(--no-download or --data-dir/);
        assert.equal(r.err.split("\n").length, 1, r.err);
        assert.ok(!existsSync(r.out), "nothing written");
      }
    }
    assert.equal(asked.length, 0);
    // Where bench downloads nothing, the variable is not read: the runs go on (0).
    for (const extra of [["--no-download"], ["--data-dir", DATA]]) {
      const r = await bench([...extra, "--dry-run", "--backend", "cpu"], {
        HYPERPROMPT_DATA_ENDPOINTS: "gleu=https://m/glue",
        HF_ENDPOINT: "not a url",
      });
      assert.equal(r.code, 0, r.err);
      assert.doesNotMatch(r.err, /ENDPOINT/);
    }
    // A good value: the download's first line (and the dry run's) names the mirrors used.
    const mirrors = {
      HYPERPROMPT_DATA_ENDPOINTS: "glue=https://mirror.example/glue",
      HF_ENDPOINT: "https://hf.example",
    };
    const named = "glue=https://mirror.example/glue (HYPERPROMPT_DATA_ENDPOINTS), " +
      "hf=https://hf.example (HF_ENDPOINT)";
    const dry = await bench(["--dry-run", "--backend", "cpu"], mirrors);
    assert.equal(dry.code, 0, dry.err);
    assert.ok(
      dry.err.includes(
        `A run would first download: glue/qqp, glue/mnli, glue/qnli (endpoints: ${named})`,
      ),
      dry.err,
    );
    const real = await bench([], mirrors);
    assert.equal(real.code, 0, real.err);
    assert.equal(asked.length, 1);
    assert.ok(
      real.err.includes(`: glue/qqp, glue/mnli, glue/qnli (endpoints: ${named})`),
      real.err,
    );
    assert.match(real.err, /^Downloading 3 task\(s\) the profile needs into /m);
  }).finally(() => Deno.remove(dir, { recursive: true }));
});

Deno.test("main() reads the tasks a partly failed download wrote, from the cache beside the mirror", async () => {
  const dir = await Deno.makeTempDir();
  const env = { HYPERPROMPT_DATA: undefined, HYPERPROMPT_CACHE: join(dir, "cache") };
  await withEnv(env, async () => {
    const profile = await tmpProfile(dir, EVERY_GLUE_TASK);
    // Writes QQP's train and dev files (and their manifest entries), fails MNLI and QNLI. The
    // files hold the official row counts, as bench reads every file before training.
    const qqp = (rows: number) =>
      "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n" +
      Array.from({ length: rows }, (_, i) => `${i}\t${2 * i}\t${2 * i + 1}\tA?\tB?\t${i % 2}\n`)
        .join("");
    const partly = async (o: DownloadOptions): Promise<TaskResult[]> => {
      const cache = o.cacheDir!;
      const files = ["glue/QQP/train.tsv", "glue/QQP/dev.tsv"];
      const manifest: Record<string, unknown> = {};
      for (const [f, rows] of [[files[0]!, 363_846], [files[1]!, 40_430]] as const) {
        await Deno.mkdir(join(cache, "glue/QQP"), { recursive: true });
        const text = qqp(rows);
        await Deno.writeTextFile(join(cache, f), text);
        manifest[f] = { task: "glue/qqp", bytes: new TextEncoder().encode(text).length };
      }
      await Deno.writeTextFile(
        join(cache, "manifest.json"),
        JSON.stringify({ version: 1, files: manifest, archives: {} }),
      );
      throw new DownloadError(
        [{ task: "glue/mnli", reason: "official: dns error" }, {
          task: "glue/qnli",
          reason: "official: dns error",
        }],
        [{ task: "glue/qqp", status: "official", files }],
      );
    };
    const c = capture();
    const out = join(dir, "out");
    const args = ["--profile", profile, "--out", out, "--no-tables"];
    assert.equal(await main(args, { ...c.opts, runOne: fakeRunOne, download: partly }), 0);
    const err = c.err.join("\n");
    assert.match(err, /^ {2}glue\/qqp: 2 file\(s\) written and verified \(official\)$/m);
    assert.match(
      err,
      /warning: download failed for 2 task\(s\) \(first: glue\/mnli: official: dns error\); going on/,
    );
    // The data folder was worked out again: links to the cache's QQP and the mirror's others.
    assert.match(err, /; data .*cache\/data\/merged\/[0-9a-f]{16}; out /);
    const [result] = [...readAll(out).values()].map((t) => JSON.parse(t));
    assert.deepEqual(result.spec.tasks.length, 6);
    assert.ok(result.spec.tasks.includes("qqp"), result.spec.tasks.join(" "));
  }).finally(() => Deno.remove(dir, { recursive: true }));
});

Deno.test("main() with no cache and no mirror still downloads first, then names the missing folder", async () => {
  const dir = await Deno.makeTempDir();
  const env = {
    HYPERPROMPT_DATA: undefined,
    HYPERPROMPT_CACHE: join(dir, "cache"),
    HYPERPROMPT_SHARED: join(dir, "no-shared"), // no ../shared/data mirror
  };
  const profile = await tmpProfile(dir, { seeds: [0], methods: [{ name: "mtl" }] });
  await withEnv(env, async () => {
    const asked: (readonly string[])[] = [];
    const c = capture();
    const rc = await main(["--profile", profile, "--out", join(dir, "out")], {
      ...c.opts,
      runOne: fakeRunOne,
      download: (o) => {
        asked.push(o.tasks);
        return Promise.reject(
          new DownloadError(o.tasks.map((task) => ({ task, reason: "offline" })), []),
        );
      },
    });
    // A failure while working (the download brought nothing), not a bad argument.
    assert.equal(rc, 1);
    assert.deepEqual(asked, [["glue/rte", "glue/cola", "super_glue/cb"]]);
    // It names the mirror looked for, and says the download failed rather than advising it.
    assert.match(
      c.err.at(-1)!,
      new RegExp(
        `^no data folder: .* does not exist \\(no download cache and no offline mirror at ` +
          `"${escapeRegExp(join(dir, "no-shared", "data"))}"; HYPERPROMPT_SHARED=DIR names ` +
          `it\\); bench could not download the tasks \\(the warning above says why\\): once ` +
          `that is fixed, rerun, ` +
          `or pass --data-dir$`,
      ),
    );
    // A dry run says why the tasks would download: HYPERPROMPT_SHARED names no mirror (h388:
    // said only once the download had failed).
    // (With no data folder at all the dry run then stops, as the run would before its download.)
    const dry = capture();
    await main(["--profile", profile, "--out", join(dir, "out"), "--dry-run", "--backend", "cpu"], {
      ...dry.opts,
      runOne: fakeRunOne,
    });
    assert.ok(
      dry.err.includes(
        `A run would first download: glue/rte, glue/cola, super_glue/cb (no offline mirror at "${
          join(dir, "no-shared", "data")
        }"; HYPERPROMPT_SHARED=DIR names it); the plan below counts them as downloaded`,
      ),
      dry.err.join("\n"),
    );
    // Bad arguments and profiles are still refused (2), and before any download.
    asked.length = 0;
    const unknownTask = await tmpProfile(dir, { tasks: { glue: ["nope"] } });
    const refused: [string[], RegExp][] = [
      [["--profile", profile, "--bogus"], /^unknown flag --bogus; /],
      [["--profile", profile, "--shard", "3/3"], /^--shard "3\/3": i must be < n/],
      [["--profile", profile, "--backend", "tpu"], /^Unknown --backend "tpu"/],
      [["--profile", join(dir, "none.json")], /^--profile .*none\.json: no such file \(built-in/],
      [["--profile", unknownTask], /unknown glue task "nope"/],
    ];
    for (const [args, want] of refused) {
      const r = capture();
      const code = await main([...args, "--out", join(dir, "out")], {
        ...r.opts,
        runOne: fakeRunOne,
        download: () => Promise.reject(new Error("must not be called")),
      });
      assert.equal(code, 2, args.join(" "));
      assert.match(r.err.join("\n"), want);
    }
  }).finally(() => Deno.remove(dir, { recursive: true }));
});

Deno.test("main() whose download leaves a listed task missing from the default data folder exits 1", async () => {
  const dir = await Deno.makeTempDir();
  const env = { HYPERPROMPT_DATA: undefined, HYPERPROMPT_CACHE: join(dir, "cache") };
  const profile = await tmpProfile(dir, { seeds: [0], tasks: { glue: ["rte", "qqp"] } });
  await withEnv(env, async () => {
    const c = capture();
    const rc = await main(["--profile", profile, "--out", join(dir, "out")], {
      ...c.opts,
      runOne: fakeRunOne,
      download: (o) =>
        Promise.reject(
          new DownloadError(o.tasks.map((task) => ({ task, reason: "offline" })), []),
        ),
    });
    assert.equal(rc, 1, c.err.join("\n"));
    // The warning says bench goes on only where the profile allows it (a listed task is needed),
    // and the error that follows says the download failed (not to download again), naming the
    // default data's two roots: the cache and the mirror, each looked in.
    assert.match(
      c.err.join("\n"),
      /^warning: download failed for 7 task\(s\) \(first: glue\/qqp: offline\); going on with the tasks present where the profile allows it \(skipMissingTasks, for a benchmark whose tasks it does not list; else bench stops, naming them\); --no-download skips this step, --data-dir names an offline mirror$/m,
    );
    const cache = escapeRegExp(join(dir, "cache", "data"));
    const mirror = escapeRegExp(DATA);
    assert.match(
      c.err.at(-1)!,
      new RegExp(
        `^Profile "tiny-grid": missing glue task files for qqp \\(glue/QQP/train\\.tsv, ` +
          `glue/QQP/dev\\.tsv\\) under the download cache ` +
          `"${cache}" or the offline mirror "${mirror}"; bench could not download them \\(the ` +
          `warning above says why\\); once that is fixed, rerun, or pass --data-dir naming a ` +
          `folder that has them$`,
      ),
    );
    assert.equal(c.err.filter((l) => /^Profile "tiny-grid": missing/.test(l)).length, 1);
    // Without the download (--no-download) the same message advises it, naming the same roots.
    const n = capture();
    const args = ["--profile", profile, "--out", join(dir, "out"), "--no-download"];
    assert.equal(await main(args, { ...n.opts, runOne: fakeRunOne }), 1, n.err.join("\n"));
    assert.match(
      n.err.at(-1)!,
      new RegExp(
        `for qqp \\([^)]*\\) under the download cache "${cache}" or the offline mirror "${mirror}"; ` +
          `download them \\(deno task download\\) or pass --data-dir$`,
      ),
    );
  }).finally(() => Deno.remove(dir, { recursive: true }));
});

Deno.test("main() with the default data folder and no mirror says where the mirror was looked for", async () => {
  const dir = await Deno.makeTempDir();
  const noShared = join(dir, "no-shared");
  const env = {
    HYPERPROMPT_DATA: undefined,
    HYPERPROMPT_CACHE: join(dir, "cache"),
    HYPERPROMPT_SHARED: noShared,
  };
  // A cache folder with no task in it: the default data folder exists, and lacks every task.
  await Deno.mkdir(join(dir, "cache", "data"), { recursive: true });
  const profile = await tmpProfile(dir, { seeds: [0], methods: [{ name: "mtl" }] });
  await withEnv(env, async () => {
    const c = capture();
    const args = ["--profile", profile, "--out", join(dir, "out"), "--no-download"];
    assert.equal(await main(args, { ...c.opts, runOne: fakeRunOne }), 1, c.err.join("\n"));
    assert.equal(
      c.err.at(-1)!,
      `Profile "tiny-grid": missing glue task files for rte, cola (glue/RTE/train.tsv, ` +
        `glue/RTE/dev.tsv, glue/CoLA/train.tsv, glue/CoLA/dev.tsv) under the download cache ` +
        `"${join(dir, "cache", "data")}" (no offline mirror at "${join(noShared, "data")}"; ` +
        `HYPERPROMPT_SHARED=DIR names it); download them (deno task download) or pass --data-dir`,
    );
  }).finally(() => Deno.remove(dir, { recursive: true }));
});

Deno.test("main() where no cache folder can be named warns and runs with the mirror's tasks", async () => {
  const dir = await Deno.makeTempDir();
  const profile = await tmpProfile(dir, EVERY_GLUE_TASK);
  const env = {
    HYPERPROMPT_DATA: undefined,
    HYPERPROMPT_CACHE: undefined,
    XDG_CACHE_HOME: undefined,
    HOME: undefined,
    USERPROFILE: undefined,
  };
  await withEnv(env, async () => {
    const c = capture();
    const rc = await main(["--profile", profile, "--out", join(dir, "out"), "--no-tables"], {
      ...c.opts,
      runOne: fakeRunOne,
      download: () => Promise.reject(new Error("must not be called without a cache folder")),
    });
    assert.equal(rc, 0, c.err.join("\n"));
    assert.match(
      c.err.join("\n"),
      /warning: cannot download glue\/qqp, glue\/mnli, glue\/qnli: cannot find a cache folder: set HYPERPROMPT_CACHE; going on with the tasks present/,
    );
  }).finally(() => Deno.remove(dir, { recursive: true }));
});

Deno.test("main() checks --data-dir, HYPERPROMPT_DATA, --out, --tables, --compare, HYPERPROMPT_BACKEND and HYPERPROMPT_STOCK_BACKPROP before any run", () =>
  inTinyProfileDir(async ({ dir, profile }) => {
    const { file, empty, broken } = await badFolders(dir);
    await Deno.symlink(join(dir, "missing-target"), join(dir, "dangling"));
    // A baseline holding one run twice (a stale copy beside it): which one gates would depend on
    // the file order, so it is refused up front like a malformed one, not after the whole grid.
    const twice = join(dir, "twice");
    await Deno.mkdir(twice);
    const baselineDir = fileURLToPath(new URL("../results/baselines/ci", import.meta.url));
    const first = [...Deno.readDirSync(baselineDir)].map((e) => e.name)
      .filter((n) => n.endsWith(".json")).sort()[0]!;
    const one = await Deno.readTextFile(join(baselineDir, first));
    for (const name of ["a.json", "b.json"]) await Deno.writeTextFile(join(twice, name), one);
    const { calls, runOne } = countingRunOne();
    const out = join(dir, "out");
    const base = ["--profile", profile, "--data-dir", DATA, "--out", out];
    // Two spellings of one model reference: one reference once the profile holds it in its one
    // spelling (spec.ts normalHfRef, as the gate's refKey keys it), so the profile repeats a model
    // and is refused when it loads, before any run. (Two references ending alike are two.)
    await Deno.mkdir(join(dir, "twins", "t5-base"), { recursive: true });
    const twins = await tmpProfile(join(dir, "twins"), {
      models: [{ hf: join(dir, "twins", "t5-base") }, { hf: `${dir}//twins/t5-base/` }],
    });
    const cases: [string[], Record<string, string>, RegExp][] = [
      [
        ["--profile", profile, "--data-dir", file],
        {},
        /^--data-dir .*a-file: is a file, not a folder$/,
      ],
      [
        ["--profile", profile],
        { HYPERPROMPT_DATA: join(dir, "nope") },
        /^HYPERPROMPT_DATA=.*nope: no such folder$/,
      ],
      [
        ["--profile", profile, "--data-dir", DATA, "--out", file],
        {},
        /^--out .*a-file: is a file, not a folder$/,
      ],
      [
        [...base, "--tables", join(file, "t")],
        {},
        /^--tables .*a-file\/t: .*a-file is a file, not a folder$/,
      ],
      // A link to nothing (mkdir would say "File exists"), and a cache root that is a file: said
      // before any run, not as each run's failure.
      [
        ["--profile", profile, "--data-dir", DATA, "--out", join(dir, "dangling")],
        {},
        /^--out .*dangling: is a link to .*missing-target, which does not exist; create that folder or remove the link$/,
      ],
      [base, { HYPERPROMPT_CACHE: file }, /^HYPERPROMPT_CACHE .*a-file: is a file, not a folder$/],
      [
        [...base, "--compare", join(dir, "nope")],
        {},
        /^--compare: \S*nope: no such folder or file \(of run results\)$/,
      ],
      [[...base, "--compare", empty], {}, /^--compare .*empty: no run results \(\*\.json\) there/],
      [[...base, "--compare", broken], {}, /^--compare: .*broken\/r\.json:1:10: invalid JSON/],
      [
        [...base, "--compare", twice],
        {},
        /^--compare: Two results for the same baseline run key .*: .*a\.json and .*b\.json; /,
      ],
      [
        ["--profile", twins, "--data-dir", DATA, "--out", out, "--compare", baselineDir],
        {},
        /^\S+\/twins\/tiny\.json:\d+: \$\.models\[1\] repeats model \{"hf":"\/.*\(\$\.models\[0\]\)$/,
      ],
      // The ci baseline shares no run with this grid (another profile): the gate could only fail
      // every run as missing, or, in a shard, compare nothing, after all of them trained.
      [
        [...base, "--compare", baselineDir],
        {},
        /^--compare .*baselines\/ci: none of its 21 runs \(profile "ci"\) is a run of this grid \(profile "tiny-grid": 12 runs\); the gate would compare nothing$/,
      ],
      [
        [...base, "--shard", "1/3", "--compare", baselineDir],
        {},
        /^--compare .*: none of its 21 runs \(profile "ci"\) is a run of this shard \(profile "tiny-grid", shard \d\/\d: 4 runs\)/,
      ],
      // An unset variable (--out "$DIR"): the runs would be written into the current folder.
      [
        ["--profile", profile, "--data-dir", DATA, "--out", ""],
        {},
        /^--out needs a value \(a folder\), got an empty one \("": an unset variable\?\); /,
      ],
      [[...base, "--tables", ""], {}, /^--tables needs a value \(a folder\), got an empty one /],
      // A shard writes no tables: an explicit --tables would be ignored.
      [
        [...base, "--shard", "0/2", "--tables", join(dir, "t")],
        {},
        /^--tables .*t with --shard 0\/2: a shard writes no tables .*; once all have finished: deno task tables --runs .*out --out .*t$/,
      ],
      [
        base,
        { HYPERPROMPT_BACKEND: "gpu" },
        /^HYPERPROMPT_BACKEND="gpu" is not one of auto, tensorflow, webgpu, wasm, wasm\+blas, cpu; a GPU is reached through webgpu .* and auto takes the GPU when there is one$/,
      ],
      [
        base,
        { HYPERPROMPT_STOCK_BACKPROP: "yes" },
        /^HYPERPROMPT_STOCK_BACKPROP="yes" must be 1 \(tfjs's own backward pass\) or 0 \/ unset/,
      ],
      [
        base,
        { HYPERPROMPT_WEBGPU_SUBMIT_BATCH: "lots" },
        /^HYPERPROMPT_WEBGPU_SUBMIT_BATCH must be a positive integer at most 1000000, got "lots"$/,
      ],
      [
        base,
        { HYPERPROMPT_WEBGPU_KERNELS: "none" },
        /^HYPERPROMPT_WEBGPU_KERNELS must be 0 or off \(tfjs's own kernels\), all or transposed /,
      ],
      [
        base,
        { HYPERPROMPT_RUN_LOCK_STALE_S: "10" },
        /^HYPERPROMPT_RUN_LOCK_STALE_S="10": expected .* at least 60/,
      ],
    ];
    for (const [args, env, want] of cases) {
      const c = capture();
      const code = await withEnv(env, () => main(args, { ...c.opts, runOne }));
      assert.equal(code, 2, args.join(" "));
      assert.match(c.err.at(-1)!, want);
    }
    assert.equal(calls.length, 0, "no run started");
    assert.ok(!(await Deno.stat(out).then(() => true, () => false)), "--out was not created");
    // --tables with --no-tables asks for two things: refused, whatever the folder.
    const c = capture();
    const args = [...base, "--no-tables", "--tables", join(file, "t")];
    assert.equal(await main(args, { ...c.opts, runOne }), 2);
    assert.match(c.err.join("\n"), /^--tables .* with --no-tables: /);
    // Without --tables, --no-tables writes none and checks no tables folder.
    const c2 = capture();
    assert.equal(await main([...base, "--no-tables"], { ...c2.opts, runOne }), 0);
    assert.ok(!existsSync(join(out, "tables")));
  }));

Deno.test("main(): --out or --tables on a disk that takes no new file is refused before any run, not in a dry run; HYPERPROMPT_CACHE only when it does not exist yet", () =>
  inTinyProfileDir(async ({ dir, profile }) => {
    // A read-only disk: root writes past permission bits, so the refusal is injected.
    const ro = join(dir, "ro");
    await Deno.mkdir(ro);
    const asked: string[] = [];
    const cannotWrite = (
      d: string,
    ) => (asked.push(d), d === ro ? "Read-only file system" : undefined);
    const { calls, runOne } = countingRunOne();
    const run = async (args: string[], env: Record<string, string> = {}) => {
      const c = capture();
      const code = await withEnv(env, () => main(args, { ...c.opts, runOne, cannotWrite }));
      return { code, err: c.err.join("\n") };
    };
    const base = ["--profile", profile, "--data-dir", DATA];
    const out = await run([...base, "--out", join(ro, "out")]);
    assert.equal(out.code, 2, out.err);
    assert.match(
      out.err,
      /^--out \S*ro\/out: its nearest existing folder \S*ro cannot be written \(Read-only file system\); name a folder on a writable disk$/,
    );
    const tables = await run([...base, "--out", join(dir, "out"), "--tables", join(ro, "t")]);
    assert.equal(tables.code, 2, tables.err);
    assert.match(
      tables.err,
      /^--tables \S*ro\/t: its nearest existing folder \S*ro cannot be written/,
    );
    assert.equal(calls.length, 0, "no run started");
    // A dry run writes nothing there: not asked.
    asked.length = 0;
    const dry = await run([...base, "--out", join(ro, "out"), "--dry-run"]);
    assert.equal(dry.code, 0, dry.err);
    assert.deepEqual(asked, []);
    // The cache root is checked as a folder, not for writing when it exists (a read-only cache
    // that holds everything is used as it is)...
    const cached = await run([...base, "--out", join(dir, "out2"), "--dry-run"], {
      HYPERPROMPT_CACHE: ro,
    });
    assert.equal(cached.code, 0, cached.err);
    assert.deepEqual(asked, []);
    const existing = await run([...base, "--out", join(dir, "out3")], { HYPERPROMPT_CACHE: ro });
    assert.equal(existing.code, 0, existing.err);
    assert.ok(!(asked as string[]).includes(ro), `asked: ${asked}`);
    // ... but one that does not exist yet must be creatable (h388: every run failed on its lock
    // file's folder, exit 1, instead).
    // A dry run writes nothing there: not asked.
    asked.length = 0;
    const missingDry = await run([...base, "--out", join(dir, "out4"), "--dry-run"], {
      HYPERPROMPT_CACHE: join(ro, "cache"),
    });
    assert.equal(missingDry.code, 0, missingDry.err);
    assert.deepEqual(asked, []);
    const missing = await run([...base, "--out", join(dir, "out4")], {
      HYPERPROMPT_CACHE: join(ro, "cache"),
    });
    assert.equal(missing.code, 2, missing.err);
    assert.match(
      missing.err,
      /^HYPERPROMPT_CACHE \S*ro\/cache: its nearest existing folder \S*ro cannot be written \(Read-only file system\); name a folder on a writable disk$/,
    );
  }));

Deno.test("main(): after the grid, one note gives each task's share of predictions that are no answer", () =>
  inTinyProfileDir(async ({ profile, out }) => {
    // Runs whose CB evaluations had 4 of 16 predictions that are no label word.
    let withCb = 0;
    const runOne: RunOneFn = async (spec, o) => {
      const r = await fakeRunOne(spec, o);
      if (r.best["cb"] === undefined) return r;
      withCb++;
      const invalid = { count: 4, of: 16 };
      return {
        ...r,
        evals: r.evals.map((e) => (e.task === "cb" ? { ...e, invalid } : e)),
        best: { ...r.best, cb: { ...r.best["cb"], invalid } },
      };
    };
    const c = capture();
    assert.equal(
      await main(["--profile", profile, "--data-dir", DATA, "--out", out], { ...c.opts, runOne }),
      0,
      c.err.join("\n"),
    );
    assert.ok(withCb > 1, `${withCb} runs with CB`);
    const notes = c.err.filter((l) => l.startsWith("note: predictions that are no answer"));
    assert.deepEqual(notes, [
      "note: predictions that are no answer (no label word; for STS-B no number, for WSC no " +
      `word), scored as wrong as T5 scores them, at each task's best step: cb 25% of ${
        16 * withCb
      } (${withCb} runs)`,
    ]);
    // metrics.csv has the share, per row.
    const csv = await Deno.readTextFile(join(out, "tables", "metrics.csv"));
    assert.match(csv, /,super_glue,cb,invalid_predictions_pct,25,/);
  }));

Deno.test("main() --shard checks no default tables folder: it writes none", () =>
  inTinyProfileDir(async ({ profile, out }) => {
    // A shard writes no tables, so <out>/tables is neither checked nor touched: here it is a file,
    // which the check of an unsharded run refuses (exit 2) before any run.
    await Deno.mkdir(out);
    await Deno.writeTextFile(join(out, "tables"), "not a folder");
    const base = ["--profile", profile, "--data-dir", DATA, "--out", out];
    const unsharded = capture();
    assert.equal(await main(base, { ...unsharded.opts, runOne: fakeRunOne }), 2);
    assert.match(unsharded.err.at(-1)!, /^--tables .*out\/tables: is a file, not a folder$/);
    const { calls, runOne } = countingRunOne();
    const c = capture();
    assert.equal(await main([...base, "--shard", "0/3"], { ...c.opts, runOne }), 0);
    assert.equal(calls.length, 4, "the shard's runs (12 in the grid)");
    assert.match(c.err.join("\n"), /Shard done; when every shard has finished: deno task tables/);
    assert.equal(await Deno.readTextFile(join(out, "tables")), "not a folder");
  }));

Deno.test("main() whose tables fail after the runs says so and exits 1, keeping the results", () =>
  inTinyProfileDir(async ({ profile, out }) => {
    const c = capture();
    const args = ["--profile", profile, "--data-dir", DATA, "--out", out];
    // A file that is no result, put into --out while the runs train (the preflight saw none).
    const runOne: RunOneFn = async (spec, opts) => {
      await Deno.writeTextFile(join(out, "notes.json"), '{"a": 1}');
      return fakeRunOne(spec, opts);
    };
    assert.equal(await main(args, { ...c.opts, runOne }), 1);
    assert.match(
      c.err.join("\n"),
      /Tables not written: .*notes\.json: \$\.spec is missing: not a run result .*The run results are in /,
    );
    const results = [...Deno.readDirSync(out)].filter((e) => e.name.endsWith(".json"));
    assert.equal(results.length, 12 + 1, "every run's result and notes.json");
  }));

Deno.test("main() refuses before training what would fail the tables in --out: a file that is no result, a copy of a run's result, an edited one (exit 2; a dry run warns; --no-tables passes)", () =>
  inTinyProfileDir(async ({ profile, out }) => {
    const args = ["--profile", profile, "--data-dir", DATA, "--out", out];
    // One finished grid to copy a result from.
    assert.equal(await main(args, { ...capture().opts, runOne: fakeRunOne }), 0);
    const own = [...Deno.readDirSync(out)].map((e) => e.name).filter((n) => n.endsWith(".json"))
      .sort();
    assert.equal(own.length, 12);
    // Each run's own file, malformed, is no problem: the run writes it again.
    await Deno.writeTextFile(join(out, own[0]!), "{");
    assert.equal(await main(args, { ...capture().opts, runOne: fakeRunOne }), 0);
    const raw = JSON.parse(await Deno.readTextFile(join(out, own[1]!)));
    const edited = structuredClone(raw);
    edited.spec.seed = 9;
    // A result of another profile, twice: no run of this grid, two results of one run (h383).
    const foreign = structuredClone(raw);
    foreign.spec.profile = "other";
    const { id: _id, ...body } = foreign.spec;
    foreign.spec.id = runId(body);
    const cases: [string, string, RegExp, string?][] = [
      ["notes.json", '{"a": 1}', /notes\.json: \$\.spec is missing: not a run result/],
      [
        "twice-a.json",
        JSON.stringify(foreign),
        new RegExp(
          `Two results for the same run id ${foreign.spec.id}: .*twice-a\\.json and .*twice-b\\.json; ` +
            "remove one \\(a copy, or a rerun into another folder\\)",
        ),
        "twice-b.json",
      ],
      [
        "copy.json",
        JSON.stringify(raw),
        new RegExp(
          `copy\\.json is a result of run ${raw.spec.id} of this grid, whose own file is ${
            own[1]!.replaceAll(".", "\\.")
          }: two results of one run; remove the copy`,
        ),
      ],
      [
        "edited.json",
        JSON.stringify(edited),
        new RegExp(
          `edited\\.json: its spec hashes to [0-9a-f]{12}, not to its id ${raw.spec.id}: edited ` +
            "after the run wrote it\\? Restore the file, or move it out of the folder \\(--no-tables",
        ),
      ],
    ];
    for (const [name, text, want, twin] of cases) {
      await Deno.writeTextFile(join(out, name), text);
      if (twin !== undefined) await Deno.writeTextFile(join(out, twin), text);
      const { calls, runOne } = countingRunOne();
      const c = capture();
      assert.equal(await main(args, { ...c.opts, runOne }), 2, name);
      assert.equal(calls.length, 0, `${name}: no run trained`);
      const last = c.err.at(-1)!;
      assert.match(
        last,
        new RegExp(
          `^Refused before training: the tables, written after the runs from every result in ` +
            `--out .*, would fail: `,
        ),
      );
      assert.match(last, want);
      assert.match(last, /\(--no-tables skips them\)$/);
      // A dry run says it and plans on.
      const d = capture();
      assert.equal(await main([...args, "--dry-run"], d.opts), 0, name);
      assert.ok(
        d.err.some((l) => l.startsWith("warning: the tables, written after") && want.test(l)),
      );
      // Without tables, nothing reads the file.
      assert.equal(await main([...args, "--no-tables"], { ...capture().opts, runOne }), 0, name);
      await Deno.remove(join(out, name));
      if (twin !== undefined) await Deno.remove(join(out, twin));
    }
  }));

Deno.test("main() where every run fails writes no tables and says why; a skipped run's tables are written", () =>
  inTinyProfileDir(async ({ profile, out }) => {
    const args = ["--profile", profile, "--data-dir", DATA, "--out", out];
    const allFail = countingRunOne(() => true);
    const c = capture();
    assert.equal(await main(args, { ...c.opts, runOne: allFail.runOne }), 1);
    assert.equal(allFail.calls.length, 12);
    const err = c.err.join("\n");
    assert.match(err, /^0 runs done, 0 skipped, 12 failed$/m);
    // One cause: one summary line naming every run (each run's own line came as it failed).
    assert.ok(
      c.err.includes(`  FAILED ${allFail.ids().join(", ")} (12 runs): this run broke`),
      err,
    );
    assert.equal(c.err.filter((l) => l.startsWith("  FAILED")).length, 1, err);
    assert.equal(c.err.at(-1), "No tables: no run succeeded (see the FAILED lines above)");
    assert.doesNotMatch(err, /Tables not written|deno task tables/);
    assert.ok(!existsSync(join(out, "tables")), "no tables folder");
    // Earlier results in --out: with --resume they are skipped, the failing runs left out, and
    // the tables are written from the skipped ones (exit 1 for the failures all the same).
    const mtl = ["--methods", "mtl"];
    assert.equal(await main([...args, ...mtl], { ...capture().opts, runOne: fakeRunOne }), 0);
    const r = capture();
    assert.equal(await main([...args, "--resume"], { ...r.opts, runOne: allFail.runOne }), 1);
    assert.match(r.err.join("\n"), /^0 runs done, 4 skipped, 8 failed$/m);
    assert.match(r.err.at(-1)!, /^Tables: 8 files in .*out\/tables$/);
    const scores = await Deno.readTextFile(join(out, "tables", "scores.csv"));
    assert.match(scores, /\nmtl,|,mtl,/);
    assert.doesNotMatch(scores, /hyperprompt_global/);
  }));

Deno.test("main() --compare counts a run that failed as missing, not its stale result file", () =>
  inTinyProfileDir(async ({ profile, out }) => {
    const args = ["--profile", profile, "--data-dir", DATA, "--out", out, "--no-tables"];
    assert.equal(await main(args, { ...capture().opts, runOne: fakeRunOne }), 0);
    // The same grid again, gated against the first results, with one run now failing: its
    // result file of the first attempt is still in --out.
    const { runOne } = countingRunOne((spec) =>
      spec.method.label === "mtl" && spec.benchmark === "super_glue" && spec.seed === 0
    );
    const c = capture();
    assert.equal(await main([...args, "--compare", out], { ...c.opts, runOne }), 3);
    assert.match(c.err.join("\n"), /11 runs done, 0 skipped, 1 failed/);
    assert.match(c.out.join("\n"), /^Regression gate: FAIL \(11 runs compared, 1 failure\)/);
    assert.match(
      c.out.join("\n"),
      /FAIL tiny-grid\/tiny-v1_1\/random\/super_glue\/mtl\/s0: run: baseline present, current missing/,
    );
  }));

Deno.test("main() --compare refuses before any run a baseline holding a result of another profile, naming it", () =>
  inTinyProfileDir(async ({ dir, profile, out }) => {
    const args = ["--profile", profile, "--data-dir", DATA, "--no-tables"];
    assert.equal(await main([...args, "--out", out], { ...capture().opts, runOne: fakeRunOne }), 0);
    // The grid's 12 results plus one of the ci profile (copied from its baseline).
    const ci = fileURLToPath(new URL("../results/baselines/ci", import.meta.url));
    const stray = [...Deno.readDirSync(ci)].map((e) => e.name).filter((n) => n.endsWith(".json"))
      .sort()[0]!;
    await Deno.copyFile(join(ci, stray), join(out, stray));
    for (const more of [[], ["--shard", "0/2"]]) {
      const { calls, runOne } = countingRunOne();
      const c = capture();
      const rc = await main([...args, ...more, "--out", join(dir, "again"), "--compare", out], {
        ...c.opts,
        runOne,
      });
      assert.equal(rc, 2, c.err.join("\n"));
      assert.equal(calls.length, 0, "refused before any run");
      assert.equal(c.err.length, 1, c.err.join("\n"));
      assert.equal(
        c.err[0],
        `--compare ${out}: 1 of its 13 runs is of another profile than this grid's "tiny-grid": ` +
          `${join(out, stray)} (profile "ci"); move it out of the baseline (the gate would fail ` +
          `it as missing after the whole grid has trained)`,
      );
    }
    // Four such files: three named, then how many more.
    const strays = [...Deno.readDirSync(ci)].map((e) => e.name).filter((n) => n.endsWith(".json"))
      .sort().slice(1, 4);
    for (const n of strays) await Deno.copyFile(join(ci, n), join(out, n));
    const c = capture();
    const rc = await main([...args, "--out", join(dir, "again"), "--compare", out], c.opts);
    assert.equal(rc, 2, c.err.join("\n"));
    assert.match(
      c.err[0] ?? "",
      /: 4 of its 16 runs are of another profile than this grid's "tiny-grid": (.*\(profile "ci"\), ){3}1 more; move them out of the baseline \(the gate would fail them as/,
    );
  }));

Deno.test("main() --compare says before training which runs' configuration differs from their baseline run, and still trains and gates them", () =>
  inTinyProfileDir(async ({ dir, profile, out }) => {
    const args = ["--data-dir", DATA, "--no-tables", "--methods", "prompt_tuning"];
    assert.equal(
      await main(["--profile", profile, ...args, "--out", out], {
        ...capture().opts,
        runOne: fakeRunOne,
      }),
      0,
    );
    // The same grid: no such line, and the gate passes.
    const same = capture();
    const again = ["--profile", profile, ...args, "--compare", out];
    assert.equal(
      await main([...again, "--out", join(dir, "same")], { ...same.opts, runOne: fakeRunOne }),
      0,
    );
    assert.doesNotMatch(same.err.join("\n"), /configuration differs/);
    // Prompt-Tuning's length edited: its 4 runs (2 benchmarks, 2 seeds) have new run ids.
    await Deno.mkdir(join(dir, "edited"));
    const edited = await tmpProfile(join(dir, "edited"), {
      methods: [{ name: "prompt_tuning", config: { length: 5 } }],
    });
    const { calls, runOne } = countingRunOne();
    const c = capture();
    const rc = await main(
      ["--profile", edited, ...args, "--compare", out, "--out", join(dir, "e")],
      {
        ...c.opts,
        runOne,
      },
    );
    assert.equal(rc, 3, "the gate fails them on spec.id");
    assert.equal(calls.length, 4, "said, not refused: every run trains");
    const said = c.err.findIndex((l) => l.includes("configuration differs"));
    assert.ok(said >= 0, c.err.join("\n"));
    assert.ok(
      said < c.err.findIndex((l) => l.startsWith('Profile "tiny-grid"')),
      "before training",
    );
    assert.match(
      c.err[said]!,
      new RegExp(
        `^--compare ${escapeRegExp(out)}: 4 runs' configuration differs from their baseline ` +
          `run's: (tiny-grid/tiny-v1_1/[^ ]+/prompt_tuning/s[01] \\(spec\\.method\\.config\\.length: ` +
          `baseline 4, current 5\\), ){3}1 more; the gate will fail them on spec\\.id \\(exit 3\\) ` +
          `after training\\. If the change is intended, regenerate the baseline`,
      ),
    );
  }));

Deno.test("main() --compare refuses before any run a baseline's results of this profile that are no run of its grid", () =>
  inTinyProfileDir(async ({ dir, profile, out }) => {
    const args = ["--profile", profile, "--data-dir", DATA, "--no-tables"];
    assert.equal(await main([...args, "--out", out], { ...capture().opts, runOne: fakeRunOne }), 0);
    // Seed 2 of two methods, from the same profile with a third seed (since removed from it).
    await Deno.mkdir(join(dir, "wider"));
    const wider = await tmpProfile(join(dir, "wider"), { seeds: [0, 1, 2] });
    const extra = join(dir, "extra");
    const more = ["--methods", "prompt_tuning,hyperprompt_global"];
    assert.equal(
      await main(["--profile", wider, "--data-dir", DATA, "--no-tables", ...more, "--out", extra], {
        ...capture().opts,
        runOne: fakeRunOne,
      }),
      0,
    );
    const stale = [...Deno.readDirSync(extra)].map((e) => e.name)
      .filter((n) => n.endsWith(".json") && n.includes("--s2--")).sort();
    assert.equal(stale.length, 4);
    for (const n of stale) await Deno.copyFile(join(extra, n), join(out, n));
    const key = (n: string) => {
      const [p, model, backbone, bench, label] = n.split("--");
      return `${p}/${model}/${backbone}/${bench}/${label}/s2`;
    };
    const named = (ns: string[]) => ns.map((n) => `${join(out, n)} (${key(n)})`).join(", ");
    const refusal = (n: number, ns: string) =>
      `--compare ${out}: ${n} of its 16 runs are no run of this grid (profile "tiny-grid": 12 ` +
      `runs): ${ns}; regenerate the baseline, or move them out of it (the gate would fail them ` +
      `as missing after the whole grid has trained)`;
    const cases: [string[], string | undefined][] = [
      [[], refusal(4, `${named(stale.slice(0, 3))}, 1 more`)],
      // The other shard's runs are in the grid: only the stale ones are refused, in any shard.
      [["--shard", "0/2"], refusal(4, `${named(stale.slice(0, 3))}, 1 more`)],
      [["--shard", "1/2"], refusal(4, `${named(stale.slice(0, 3))}, 1 more`)],
      [
        ["--methods", "prompt_tuning"],
        refusal(2, named(stale.filter((n) => n.includes("--prompt_tuning--")))),
      ],
      // The gate does not count the baseline's runs of unselected methods: not refused either.
      [["--methods", "mtl"], undefined],
    ];
    for (const [i, [flags, want]] of cases.entries()) {
      const { calls, runOne } = countingRunOne();
      const c = capture();
      const rc = await main(
        [...args, ...flags, "--out", join(dir, `again${i}`), "--compare", out],
        {
          ...c.opts,
          runOne,
        },
      );
      if (want === undefined) {
        assert.equal(rc, 0, `${flags.join(" ")}: ${c.err.join("\n")}`);
        assert.equal(calls.length, 4);
        assert.match(c.out.join("\n"), /^Regression gate: PASS \(4 runs compared/);
        continue;
      }
      assert.equal(rc, 2, `${flags.join(" ")}: ${c.err.join("\n")}`);
      assert.equal(calls.length, 0, "refused before any run");
      assert.deepEqual(c.err, [want], flags.join(" "));
    }
  }));

Deno.test("main() leaves a run that failed out of the tables, not its earlier attempt's result file", () =>
  inTinyProfileDir(async ({ dir, profile, out }) => {
    const args = ["--profile", profile, "--data-dir", DATA, "--out", out];
    assert.equal(await main(args, { ...capture().opts, runOne: fakeRunOne }), 0);
    const before = Deno.readTextFileSync(join(out, "tables", "scores.csv"));
    // The same grid again with one run now failing: its first attempt's result stays in --out.
    type Spec = Parameters<typeof fakeRunOne>[0];
    const failing = (spec: Spec) =>
      spec.method.label === "mtl" && spec.benchmark === "super_glue" && spec.seed === 0;
    const { runOne } = countingRunOne(failing);
    const c = capture();
    assert.equal(await main(args, { ...c.opts, runOne }), 1);
    assert.match(c.err.join("\n"), /11 runs done, 0 skipped, 1 failed/);
    const stale = [...Deno.readDirSync(out)].filter((e) =>
      e.isFile && failing(JSON.parse(Deno.readTextFileSync(join(out, e.name))).spec)
    );
    assert.equal(stale.length, 1, "the earlier result file is kept, not deleted");
    // The tables equal those of the folder without that file.
    const without = join(dir, "without");
    await Deno.mkdir(without);
    for (const e of Deno.readDirSync(out)) {
      if (e.isFile && e.name !== stale[0]!.name) {
        await Deno.copyFile(join(out, e.name), join(without, e.name));
      }
    }
    await writeTables(without, join(without, "tables"));
    const after = Deno.readTextFileSync(join(out, "tables", "scores.csv"));
    assert.equal(after, Deno.readTextFileSync(join(without, "tables", "scores.csv")));
    assert.notEqual(after, before, "the failed run's cell changed (fewer seeds)");
  }));

Deno.test("isGpuBackend(): webgpu on hardware and tfjs-node-gpu pick paper-base; a software adapter, tfjs-node (CPU) and wasm do not", () => {
  assert.equal(isGpuBackend({ name: "webgpu", adapter: "NVIDIA H200" }), true);
  // A software adapter, which an explicit --backend webgpu (or HYPERPROMPT_BACKEND) accepts.
  const llvmpipe = "llvmpipe (LLVM 15.0.6, 256 bits) (vendor 65541, device 0, fallback adapter)";
  assert.equal(isGpuBackend({ name: "webgpu", adapter: llvmpipe, fallbackAdapter: true }), false);
  assert.equal(isGpuBackend({ name: "tensorflow", adapter: "@tensorflow/tfjs-node-gpu" }), true);
  assert.equal(isGpuBackend({ name: "tensorflow", adapter: "@tensorflow/tfjs-node" }), false);
  assert.equal(isGpuBackend({ name: "wasm+blas", adapter: "libopenblas.so.0" }), false);
  assert.equal(isGpuBackend({ name: "cpu" }), false);
});

Deno.test("fmtDuration() rounds before splitting into units: no 2m60s or 1h60m", () => {
  const cases: [number | null, string][] = [
    [null, "n/a"],
    [0, "0s"],
    [0.04, "0.04s"],
    [0.6, "0.6s"],
    [0.96, "1s"],
    [59.4, "59s"],
    [59.6, "1m00s"],
    [60, "1m00s"],
    [179.6, "3m00s"],
    [185, "3m05s"],
    [3599.4, "59m59s"],
    [3599.6, "1h00m"],
    [3600 + 59 * 60 + 45, "2h00m"],
    [3600 + 2 * 60 + 10, "1h02m"],
  ];
  for (const [s, want] of cases) assert.equal(fmtDuration(s), want, String(s));
});

Deno.test("progressReporter() on stderr: a closed pipe (bench … 2>&1 | head) drops the lines and bars, the run goes on", async () => {
  const cli = new URL("./cli.ts", import.meta.url).href;
  const out = await closedStderr(`
import { progressReporter } from ${JSON.stringify(cli)};
console.error("first");
await new Promise((r) => setTimeout(r, 300));
const r = progressReporter(3, false);
for (let i = 0; i < 20; i++) {
  r.log(\`line \${i}\\n\`);
  await new Promise((r) => setTimeout(r, 10));
}
r.stop();
await new Promise((r) => setTimeout(r, 100));
console.log("survived");
`);
  assert.equal(out.code, 0, `${out.stdout}\n${out.stderr}`);
  assert.equal(out.stdout, "survived\n");
});

Deno.test("progressReporter(): runs skipped as done leave the grid bar, whose ETA stays unknown until a run it trains is done", async () => {
  const { chunks, stream } = recordingStream(true, 120);
  const dir = await Deno.makeTempDir();
  const grid = expandGrid(await loadProfile(await tmpProfile(dir)), { dataDir: DATA });
  await Deno.remove(dir, { recursive: true });
  const [a, b, c] = grid as [RunSpec, RunSpec, RunSpec];
  const reporter = progressReporter(3, true, stream);
  reporter.onEvent({ kind: "skip", spec: a, index: 0 });
  reporter.onEvent({ kind: "skip", spec: b, index: 1 });
  reporter.onEvent({ kind: "start", spec: c, index: 2 });
  await new Promise((r) => setTimeout(r, 300)); // a redraw
  const before = chunks.join("");
  reporter.onEvent({
    kind: "done",
    spec: c,
    index: 2,
    result: await fakeRunOne(c, { outDir: "out", dataDir: DATA }),
    file: `out/${c.id}.json`,
  });
  reporter.stop();
  const text = chunks.join("");
  assert.match(before, /grid .*\| 0\/1 runs \| ETA \? \|/);
  assert.doesNotMatch(text, /\/3 runs/, "skipped runs are not the grid's to train");
  assert.match(text, /grid .*\| 1\/1 runs/);
  // Every run skipped: nothing left, said as such.
  const all = recordingStream(true, 120);
  const allSkipped = progressReporter(2, true, all.stream);
  allSkipped.onEvent({ kind: "skip", spec: a, index: 0 });
  allSkipped.onEvent({ kind: "skip", spec: b, index: 1 });
  allSkipped.stop();
  assert.match(all.chunks.join(""), /grid .*\| 0\/0 runs \| ETA 0s \|/);
});

/** A writable stream that records what is written, as a terminal (`tty`) of `columns` or not. */
function recordingStream(tty: boolean, columns: number): { chunks: string[]; stream: Writable } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      chunks.push(String(chunk));
      done();
    },
  });
  Object.assign(stream, { isTTY: tty, columns });
  return { chunks, stream };
}

Deno.test("progressReporter() on a terminal hides no cursor, keeps wrapping and cuts lines to its width", async () => {
  // Ctrl-C ends the process by SIGINT's default action (exit 130), which restores nothing: a
  // hidden cursor (ESC[?25l) or wrapping turned off (ESC[?7l) would stay so in the user's shell.
  const { chunks, stream } = recordingStream(true, 100);
  const dir = await Deno.makeTempDir();
  const [spec] = expandGrid(await loadProfile(await tmpProfile(dir)), { dataDir: DATA });
  await Deno.remove(dir, { recursive: true });
  const reporter = progressReporter(1, true, stream);
  reporter.onEvent({ kind: "start", spec: spec!, index: 0 });
  // A redraw of the bars before any step (a terminal's bars redraw on a timer).
  await new Promise((r) => setTimeout(r, 300));
  for (let step = 1; step <= spec!.train.steps; step++) {
    reporter.onEvent({
      kind: "progress",
      spec: spec!,
      index: 0,
      progress: { phase: "train", step, totalSteps: spec!.train.steps, loss: 1 / step },
    });
  }
  const result = await fakeRunOne(spec!, { outDir: dir, dataDir: DATA });
  reporter.onEvent({ kind: "done", spec: spec!, index: 0, result, file: `out/${spec!.id}.json` });
  reporter.stop();
  const text = chunks.join("");
  assert.match(text, /grid .*\| 1\/1 runs/, "the bars were drawn");
  // Before any run is done the grid's ETA is unknown, not "0s".
  assert.match(text, /grid .*\| 0\/1 runs \| ETA \? \|/);
  assert.doesNotMatch(text, /0\/1 runs \| ETA 0s/);
  // Once a run is done, a time.
  assert.match(text, /grid .*\| 1\/1 runs \| ETA \d+s \|/);
  assert.ok(!text.includes("\x1b[?25l"), "the cursor was hidden");
  assert.ok(!text.includes("\x1b[?7l"), "line wrapping was turned off");
  // deno-lint-ignore no-control-regex
  const lines = text.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "").split(/[\r\n]/);
  assert.ok(lines.every((l) => l.length <= 100), `a line is wider than the terminal: ${lines}`);
});

Deno.test("progressReporter().stop() writes a message still queued (the last run's FAILED line)", async () => {
  // Without a terminal the bars redraw (and write queued messages) every 10 s: a run that fails
  // just before the grid ends had its FAILED line dropped by stop().
  const dir = await Deno.makeTempDir();
  const [spec] = expandGrid(await loadProfile(await tmpProfile(dir)), { dataDir: DATA });
  await Deno.remove(dir, { recursive: true });
  for (const tty of [false, true]) {
    const { chunks, stream } = recordingStream(tty, 200);
    const reporter = progressReporter(1, tty, stream);
    reporter.onEvent({ kind: "start", spec: spec!, index: 0 });
    reporter.onEvent({ kind: "error", spec: spec!, index: 0, error: new Error("out of memory") });
    reporter.stop();
    const text = chunks.join("");
    assert.match(text, new RegExp(`FAILED ${spec!.id} \\(.*\\): out of memory`), `tty ${tty}`);
    assert.match(text, /grid .*\| 1\/1 runs/, `tty ${tty}: the final bars were drawn`);
    // The message is written once, before the final bars.
    assert.equal(text.split("out of memory").length, 2, `tty ${tty}`);
    assert.ok(text.indexOf("out of memory") < text.lastIndexOf("1/1 runs"), `tty ${tty}`);
  }
});

Deno.test("progressReporter() without a terminal writes a line at once, not at the bars' next redraw (10 s later, or never)", async () => {
  const dir = await Deno.makeTempDir();
  const [spec] = expandGrid(await loadProfile(await tmpProfile(dir)), { dataDir: DATA });
  await Deno.remove(dir, { recursive: true });
  const { chunks, stream } = recordingStream(false, 200);
  const reporter = progressReporter(1, false, stream);
  try {
    reporter.onEvent({ kind: "start", spec: spec!, index: 0 });
    const before = chunks.join("").length;
    reporter.log(`run ${spec!.id}: its claim was taken over by other pid 1`);
    // Synchronously: no timer has run.
    assert.ok(
      chunks.join("").slice(before).includes(`run ${spec!.id}: its claim was taken over`),
      chunks.join(""),
    );
    reporter.onEvent({ kind: "error", spec: spec!, index: 0, error: new Error("boom") });
    assert.match(chunks.join("").slice(before), new RegExp(`FAILED ${spec!.id} .*: boom`));
  } finally {
    reporter.stop();
  }
});

Deno.test("progressReporter(): a stopped run's bar says so; its reason and checkpoint are left to main()'s summary", async () => {
  const dir = await Deno.makeTempDir();
  const [spec] = expandGrid(await loadProfile(await tmpProfile(dir)), { dataDir: DATA });
  await Deno.remove(dir, { recursive: true });
  for (const tty of [false, true]) {
    const { chunks, stream } = recordingStream(tty, 200);
    const reporter = progressReporter(2, tty, stream);
    reporter.onEvent({ kind: "start", spec: spec!, index: 0 });
    const why = Object.assign(
      new Error("stopped by SIGINT after step 1 of 4; checkpoint X/step-00000001: --resume"),
      { interrupted: true },
    );
    reporter.onEvent({ kind: "interrupted", spec: spec!, index: 0, error: why });
    reporter.stop();
    const text = chunks.join("");
    assert.match(text, /\| stopped/, `tty ${tty}: the bar says stopped`);
    assert.doesNotMatch(text, /STOPPED|step-00000001|SIGINT/, `tty ${tty}`);
  }
});

Deno.test("main() on a GPU: the largest fitting micro-batch, recorded; a run that cannot fit is refused; unknown memory changes nothing", () =>
  inTempDir(async (dir) => {
    const { profile, grid } = await memoryGrid(dir);
    assert.equal(grid.length, 2); // two seeds, one configuration
    const peak = (m: number) =>
      estimateTrainingMemory(memoryInputFor(grid[0]!, preset("tiny-v1_1"), "fused", m)).peak;
    // A device on which micro-batch 2 fits with the 10% margin and 4 does not.
    const gb = String((peak(2) / 0.9) * 1.001 / 1e9);
    assert.ok(peak(4) > 0.9 * Number(gb) * 1e9);
    const smi = forbiddenCommand(); // --device-memory is given: nvidia-smi is not asked
    const gpu = {
      probe: () => Promise.resolve({ name: "webgpu", gpu: true }),
      runCommand: smi.runCommand,
    };
    const { calls, runOne } = countingRunOne();
    // The micro-batch each run was given (the preflight's choice).
    const micro = () => calls.map((call) => call.opts.microBatchSize);
    const args = (
      out: string,
    ) => ["--profile", profile, "--data-dir", DATA, "--out", out, "--no-tables"];
    const c = capture();
    const out = join(dir, "out");
    assert.equal(
      await main([...args(out), "--device-memory", gb], { ...c.opts, ...gpu, runOne }),
      0,
      c.err.join("\n"),
    );
    assert.deepEqual(micro(), [2, 2]);
    assert.equal(c.err.filter((l) => l.includes("training with micro-batches of 2")).length, 1);
    for (const s of grid) {
      const r = JSON.parse(Deno.readTextFileSync(join(out, runFileName(s))));
      assert.equal(r.effectiveMicroBatchSize, 2);
      assert.equal(r.spec.id, s.id);
    }

    // Not even one row fits: exit 2 before any run, naming the runs, estimate and device.
    calls.length = 0;
    const c2 = capture();
    const tiny = String(peak(1) * 0.5 / 1e9);
    assert.equal(
      await main([...args(join(dir, "out2")), "--device-memory", tiny], {
        ...c2.opts,
        ...gpu,
        runOne,
      }),
      2,
    );
    assert.equal(calls.length, 0);
    const msg = c2.err.join("\n");
    assert.match(msg, /Refused before training: 2 run\(s\) cannot fit the GPU's memory/);
    assert.match(msg, new RegExp(`run ${grid[0]!.id} \\(tiny-v1_1, mtl, glue, s0\\)`));
    assert.match(msg, /even at micro-batch 1 .*--device-memory/);
    assert.deepEqual(smi.calls, [], "nvidia-smi was not run with --device-memory");

    // Memory unknown (WebGPU, no nvidia-smi): runs as specified, said once, with the reason.
    const c3 = capture();
    assert.equal(
      await main(args(join(dir, "out3")), {
        ...c3.opts,
        probe: gpu.probe,
        runCommand: () => Promise.resolve(undefined),
        runOne,
      }),
      0,
    );
    assert.deepEqual(micro(), [undefined, undefined]);
    const unknown = c3.err.filter((l) => l.includes("memory is unknown"));
    assert.equal(unknown.length, 1);
    assert.match(
      unknown[0]!,
      /^note: the GPU's memory is unknown \(WebGPU reports no total memory; nvidia-smi not found \(no NVIDIA driver\)\): runs are not checked/,
    );
    // nvidia-smi answers but under MIG: the reason probeDeviceMemory gives, in the one line.
    calls.length = 0;
    const c4 = capture();
    const mig: string[] = [];
    assert.equal(
      await main(args(join(dir, "out4")), {
        ...c4.opts,
        probe: gpu.probe,
        runCommand: (_cmd, a) => {
          mig.push(a[0]!);
          return Promise.resolve({
            success: true,
            stdout: a[0] === "--query-gpu=memory.total" ? "81559\n" : "Enabled\n",
          });
        },
        runOne,
      }),
      0,
    );
    assert.deepEqual(mig, ["--query-gpu=memory.total", "--query-gpu=mig.mode.current"]);
    assert.deepEqual(micro(), [undefined, undefined], "unknown: the runs train as specified");
    const migNote = c4.err.filter((l) => l.includes("memory is unknown"));
    assert.equal(migNote.length, 1, c4.err.join("\n"));
    assert.match(migNote[0]!, /\(WebGPU reports no total memory; GPU 0 is in MIG mode: .*\): runs/);
    assert.doesNotMatch(migNote[0]!, /\n/, "one line");
    assert.doesNotMatch(c4.err.join("\n"), /nvidia-smi gave none|GPU memory: /);
  }));

Deno.test("statedMemoryUse: a stated size is used on a GPU, planned in a dry run elsewhere, and otherwise said to be ignored", () => {
  const stated = { bytes: 85.5e9, source: "--device-memory" };
  const gpu = { name: "webgpu", gpu: true };
  const software = { name: "webgpu", gpu: false };
  // A GPU among the runs' backends: the preflight uses the size; nothing to say.
  assert.deepEqual(statedMemoryUse([gpu], stated, false), { simulate: false });
  assert.deepEqual(statedMemoryUse([gpu, { name: "cpu", gpu: false }], stated, true), {
    simulate: false,
  });
  // No size stated: nothing to ignore.
  assert.deepEqual(statedMemoryUse([software], undefined, false), { simulate: false });
  // A software WebGPU adapter is no GPU: the real run ignores the size and says so in one line;
  // the dry run plans as on a GPU of that size and says the real run will not.
  const real = statedMemoryUse([software], stated, false);
  assert.equal(real.simulate, false);
  assert.equal(
    real.ignored,
    "note: --device-memory (85.5 GB) is ignored: no run here is on a GPU (webgpu on a software " +
      "adapter, not a GPU), and the memory preflight checks GPU runs only; the runs train as " +
      "specified (--dry-run shows what a GPU of that size would do)",
  );
  const dry = statedMemoryUse([software], stated, true);
  assert.equal(dry.simulate, true);
  assert.match(dry.ignored!, /^note: no run here is on a GPU \(webgpu on a software adapter/);
  assert.match(dry.ignored!, /without --dry-run --device-memory is ignored and the runs train as/);
  // wasm only: checked against the wasm heap, dry run or not; no GPU simulated.
  const env = { bytes: 80e9, source: "HYPERPROMPT_DEVICE_MEMORY_GB" };
  for (const dryRun of [false, true]) {
    const wasm = statedMemoryUse([{ name: "wasm+blas", gpu: false }], env, dryRun);
    assert.equal(wasm.simulate, false);
    assert.equal(
      wasm.ignored,
      "note: HYPERPROMPT_DEVICE_MEMORY_GB (80.0 GB) is ignored: no run here is on a GPU " +
        "(wasm+blas: checked against the wasm heap instead)",
    );
  }
});

Deno.test("main(): --device-memory on a software WebGPU adapter: the dry run and the real run agree that nothing is refused", () =>
  inTempDir(async (dir) => {
    const { profile, grid } = await memoryGrid(dir);
    const one = estimateTrainingMemory(memoryInputFor(grid[0]!, preset("tiny-v1_1"), "fused", 1));
    // Half of what one row needs: a GPU of this size would refuse every run.
    const tiny = String(one.peak * 0.5 / 1e9);
    const smi = forbiddenCommand(); // no GPU here: nvidia-smi is not asked
    const software = {
      probe: () => Promise.resolve({ name: "webgpu", gpu: false }),
      runCommand: smi.runCommand,
    };
    const { calls, runOne } = countingRunOne();
    // The micro-batch each run was given (the preflight's choice).
    const micro = () => calls.map((call) => call.opts.microBatchSize);
    const args = (out: string) => [
      "--profile",
      profile,
      "--data-dir",
      DATA,
      "--out",
      out,
      "--no-tables",
      "--backend",
      "webgpu",
      "--device-memory",
      tiny,
    ];
    // Dry run: the table is as on a GPU of that size, but it does not claim the real run refuses.
    const c = capture();
    assert.equal(
      await main([...args(join(dir, "o1")), "--dry-run"], { ...c.opts, ...software }),
      0,
    );
    const err = c.err.join("\n");
    assert.doesNotMatch(err, /without --dry-run this is refused/);
    assert.equal(c.err.filter((l) => l.startsWith("note: no run here is on a GPU")).length, 1, err);
    assert.match(
      err,
      /warning: on a GPU of .* \(--device-memory\) this would be refused \(here, with no GPU, the runs train as specified\)/,
    );
    assert.match(c.out[1]!.slice(c.out[0]!.indexOf("est. peak GB")), /\(does not fit\)/);
    // The real run: trains as specified (no micro-batch, no refusal), and says once that the size
    // is ignored.
    const c2 = capture();
    assert.equal(
      await main(args(join(dir, "o2")), { ...c2.opts, ...software, runOne }),
      0,
      c2.err.join("\n"),
    );
    assert.deepEqual(micro(), [undefined, undefined]);
    const ignored = c2.err.filter((l) => /--device-memory .* is ignored/.test(l));
    assert.equal(ignored.length, 1, c2.err.join("\n"));
    assert.match(
      ignored[0]!,
      /^note: --device-memory \(.*\) is ignored: no run here is on a GPU \(webgpu on a software adapter/,
    );
    assert.doesNotMatch(c2.err.join("\n"), /Refused|micro-batches of/);
    assert.deepEqual(smi.calls, []);
  }));

Deno.test("main() --dry-run: an est. peak column for the run's backend; --device-memory and HYPERPROMPT_DEVICE_MEMORY_GB are checked", () =>
  inTempDir(async (dir) => {
    const { profile, grid: [spec] } = await memoryGrid(dir);
    const bytes = (m: number, k: "fused" | "composite") =>
      estimateTrainingMemory(memoryInputFor(spec!, preset("tiny-v1_1"), k, m)).peak;
    const peak = (m: number, k: "fused" | "composite") => (bytes(m, k) / 1e9).toFixed(1);
    const args = ["--profile", profile, "--data-dir", DATA, "--dry-run"];
    // cpu: no GPU, composite kernels, the batch as specified.
    const c = capture();
    assert.equal(await main([...args, "--backend", "cpu"], c.opts), 0);
    const head = c.out[0]!;
    assert.ok(head.trimEnd().endsWith("est. peak GB"), head);
    const col = head.indexOf("est. peak GB");
    assert.equal(c.out[1]!.slice(col).trim(), peak(8, "composite"));
    // A GPU whose memory nvidia-smi reports: the micro-batch it would train with, fused kernels.
    const mib = Math.round((bytes(2, "fused") / 0.9) * 1.05 / 2 ** 20);
    const c2 = capture();
    assert.equal(
      await main(args, {
        ...c2.opts,
        probe: () => Promise.resolve({ name: "webgpu", gpu: true }),
        runCommand: () => Promise.resolve({ success: true, stdout: `${mib}\n` }),
      }),
      0,
    );
    assert.ok(c2.err.some((l) => /^GPU memory: .* \(nvidia-smi\)$/.test(l)), c2.err.join("\n"));
    const col2 = c2.out[0]!.indexOf("est. peak GB");
    const cell = c2.out[1]!.slice(col2).trim();
    assert.match(cell, /^\d+\.\d \(micro [1-4]\)$/);
    // A dry run with a stated size plans as on a GPU of that size, also off the GPU machine
    // (here cpu: composite kernels).
    const gb = (bytes(2, "composite") / 0.9) * 1.05 / 1e9;
    const c5 = capture();
    assert.equal(
      await main([...args, "--backend", "cpu", "--device-memory", String(gb)], c5.opts),
      0,
    );
    assert.match(
      c5.out[1]!.slice(c5.out[0]!.indexOf("est. peak GB")).trim(),
      /^\d+\.\d \(micro 2\)$/,
    );
    // HYPERPROMPT_WEBGPU_SUBMIT_BATCH changes how long webgpu's pool holds freed buffers: the
    // preflight's estimate follows it. On a GPU where the whole batch just fits at the kernels'
    // 64 dispatches per command buffer, 4096 makes it train in micro-batches.
    const fused = (submitBatch?: number) =>
      estimateTrainingMemory(
        memoryInputFor(spec!, preset("tiny-v1_1"), "fused", 8, "low-memory", submitBatch),
      ).peak;
    assert.ok(fused(4096) > 1.05 * fused(), `${fused(4096)} vs ${fused()}`);
    const fits = String((fused() / 0.9) * 1.02 / 1e9);
    const at = async (env: Record<string, string>) => {
      const c6 = capture();
      await withEnv(env, async () => {
        assert.equal(
          await main([...args, "--backend", "webgpu", "--device-memory", fits], c6.opts),
          0,
        );
      });
      return c6.out[1]!.slice(c6.out[0]!.indexOf("est. peak GB")).trim();
    };
    assert.match(await at({}), /^\d+\.\d$/);
    assert.match(
      await at({ HYPERPROMPT_WEBGPU_SUBMIT_BATCH: "4096" }),
      /^\d+\.\d \(micro [1-4]\)$/,
    );
    // Bad values: exit 2 naming the flag or the variable, before anything else.
    const c3 = capture();
    assert.equal(await main([...args, "--device-memory", "eighty"], c3.opts), 2);
    assert.match(c3.err.join("\n"), /--device-memory must be .*"eighty"/);
    const c4 = capture();
    await withEnv({ HYPERPROMPT_DEVICE_MEMORY_GB: "-1" }, async () => {
      assert.equal(await main(args, c4.opts), 2);
    });
    assert.match(c4.err.join("\n"), /HYPERPROMPT_DEVICE_MEMORY_GB must be .*"-1"/);
    // Number() would read "0x50" as 80 GB.
    const hex = capture();
    assert.equal(await main([...args, "--device-memory", "0x50"], hex.opts), 2);
    assert.match(hex.err.join("\n"), /--device-memory must be .*"0x50"/);
  }));

Deno.test("barName keeps the seed and a per-task run's task visible in 28 characters", () => {
  const spec = (label: string, tasks: string[], perTaskOf?: string[]) =>
    ({
      benchmark: "super_glue",
      method: { name: "prompt_tuning", label, config: {} },
      seed: 1,
      tasks,
      ...(perTaskOf === undefined ? {} : { perTaskOf }),
    }) as unknown as Parameters<typeof barName>[0];
  assert.equal(barName(spec("mtl", ["cb"])), "super_glue/mtl/s1".padEnd(28));
  const pt = barName(spec("Prompt-Tuning", ["multirc"], ["cb", "multirc"]));
  assert.equal(pt, "super_glue/Prom…[multirc]/s1");
  assert.equal(pt.length, 28);
  const long = barName(spec("HyperPrompt-Global (long label)", ["cb"]));
  assert.equal(long.length, 28);
  assert.equal(long, "super_glue/HyperPrompt-G…/s1");
});

/** The run ids of a dry run's table (its second column), in its order. */
function dryRunIds(out: readonly string[]): string[] {
  return out.slice(1, -1).map((l) => l.trim().split(/\s+/)[1]!);
}

Deno.test("main() --methods keeps the profile's runs of those labels: dry run, shard, gate, resume; an unknown label is refused", () =>
  inTinyProfileDir(async ({ dir, profile }) => {
    const base = ["--profile", profile, "--data-dir", DATA];
    const dry = async (...extra: string[]) => {
      const c = capture();
      assert.equal(await main([...base, "--dry-run", "--backend", "cpu", ...extra], c.opts), 0);
      return c;
    };
    // Two of the three methods: their 8 runs of the 12, and nothing else.
    const c = await dry("--methods", "prompt_tuning,mtl");
    assert.match(c.out.at(-1)!, /^8 runs; /);
    const methodCol = c.out[0]!.indexOf("method");
    const methods = c.out.slice(1, -1).map((l) => l.slice(methodCol).split(/\s+/)[0]);
    assert.deepEqual([...new Set(methods)].sort(), ["mtl", "prompt_tuning"]);
    assert.match(c.err.join("\n"), /\(methods prompt_tuning, mtl: 8 of 12 runs\)/);
    // The flag repeated (and spaces after commas) selects the same runs.
    const again = await dry("--methods", "mtl", "--methods", " prompt_tuning");
    assert.deepEqual(dryRunIds(again.out).sort(), dryRunIds(c.out).sort());

    // With --shard: the shard of the whole grid, then its runs of the method. A run's shard does
    // not depend on --methods; the shards stay disjoint and together are the selection.
    const all = dryRunIds((await dry("--methods", "hyperprompt_global")).out);
    assert.equal(all.length, 4);
    const seen: string[] = [];
    for (const i of [0, 1, 2]) {
      const whole = new Set(dryRunIds((await dry("--shard", `${i}/3`)).out));
      const mine = dryRunIds(
        (await dry("--shard", `${i}/3`, "--methods", "hyperprompt_global")).out,
      );
      for (const id of mine) assert.ok(whole.has(id), `${id} of shard ${i}/3`);
      seen.push(...mine);
    }
    assert.deepEqual(seen.sort(), [...all].sort());
    // 12 shards of 12 runs, 4 of the method: some shard keeps none of them, and the dry run says
    // the selection is empty (not that a model's size is unknown).
    let empty: string[] | undefined;
    for (let i = 0; i < 12 && empty === undefined; i++) {
      const out = (await dry("--shard", `${i}/12`, "--methods", "hyperprompt_global")).out;
      if (dryRunIds(out).length === 0) empty = out;
    }
    assert.ok(empty !== undefined, "a shard of 12 with no hyperprompt_global run");
    assert.equal(empty.at(-1), "0 runs: the selection is empty, nothing to estimate");
    // All it prints: the table's head (line 0, as in every dry run, which dryRunIds relies on)
    // and that line.
    assert.equal(empty.length, 2);
    assert.match(empty[0]!, /^#\s+id\s+model\s+backbone\s+benchmark\s+method\s+seed\s+tasks\s/);
    // A selection of one run is not empty: its estimate is summed.
    const one = (await dry("--shard", "0/12")).out;
    assert.equal(dryRunIds(one).length, 1);
    assert.match(one.at(-1)!, /^1 run; .+ FLOPs; about /);

    // Unknown labels: exit 2 before anything runs, naming the label and the profile's labels.
    for (
      const [arg, want] of [
        [
          "mtl,lora",
          /--methods: unknown method label "lora"; profile "tiny-grid" has the methods "mtl", "prompt_tuning", "hyperprompt_global"/,
        ],
        [
          "prompt_tuning[rte]",
          /unknown method label "prompt_tuning\[rte\]" \(a per-task method is selected whole, by "prompt_tuning"\)/,
        ],
        ["mtl,", /--methods "mtl,": an empty label/],
        // An unknown method with a task suffix: no per-task hint (it names no label either).
        ["lora[rte]", /unknown method label "lora\[rte\]"; profile "tiny-grid" has/],
      ] as const
    ) {
      const bad = capture();
      assert.equal(await main([...base, "--methods", arg, "--out", join(dir, "x")], bad.opts), 2);
      assert.match(bad.err.join("\n"), want);
    }
    assert.equal(existsSync(join(dir, "x")), false);

    // The gate compares the selected method's runs with the baseline's runs of that method only:
    // the whole-grid baseline's other 8 runs are not missing.
    const baseline = join(dir, "baseline");
    assert.equal(
      await main([...base, "--out", baseline, "--no-tables"], {
        ...capture().opts,
        runOne: fakeRunOne,
      }),
      0,
    );
    const out = join(dir, "out");
    const gated = [...base, "--out", out, "--no-tables", "--methods", "mtl", "--compare", baseline];
    const g = capture();
    const { calls, runOne } = countingRunOne();
    assert.equal(await main(gated, { ...g.opts, runOne }), 0, g.out.join("\n"));
    assert.deepEqual(calls.map((call) => call.spec.method.label), ["mtl", "mtl", "mtl", "mtl"]);
    assert.match(g.out.join("\n"), /Regression gate: PASS \(4 runs compared/);
    assert.ok(
      g.out.includes(
        "  note --methods: 4 of the baseline's 12 runs gated (the others are of methods not " +
          "selected)",
      ),
      g.out.join("\n"),
    );
    // A selected method's regression still fails it.
    const worse: typeof fakeRunOne = async (spec, o) => {
      const r = await fakeRunOne(spec, o);
      return { ...r, params: { ...r.params, total: r.params.total + 1 } };
    };
    const w = capture();
    assert.equal(
      await main([...gated.map((a) => (a === out ? join(dir, "out2") : a))], {
        ...w.opts,
        runOne: worse,
      }),
      3,
    );
    assert.match(
      w.out.join("\n"),
      /FAIL tiny-grid\/tiny-v1_1\/random\/glue\/mtl\/s0: params\.total/,
    );
    // In a shard the gate is partial: the baseline's runs of the other shard are not missing.
    let compared = 0;
    for (const i of [0, 1]) {
      const s = capture();
      const shardOut = join(dir, `shard${i}`);
      const args = gated.map((a) => (a === out ? shardOut : a));
      assert.equal(
        await main([...args, "--shard", `${i}/2`], { ...s.opts, runOne: fakeRunOne }),
        0,
      );
      compared += Number(/Regression gate: PASS \((\d+) runs compared/.exec(s.out.join("\n"))![1]);
    }
    assert.equal(compared, 4, "the two shards' gates together compare the selection's 4 runs");
    // --resume skips the selection's finished runs and runs no other method's.
    const r = capture();
    assert.equal(await main([...gated, "--resume"], { ...r.opts, runOne }), 0);
    assert.match(r.err.join("\n"), /0 runs done, 4 skipped, 0 failed/);
    // A baseline with no run of the selection is refused before any run, naming the selection.
    const other = capture();
    const ci = fileURLToPath(new URL("../results/baselines/ci", import.meta.url));
    assert.equal(
      await main([...gated.map((a) => (a === baseline ? ci : a)), "--shard", "0/2"], {
        ...other.opts,
        runOne,
      }),
      2,
    );
    assert.match(
      other.err.join("\n"),
      /none of its \d+ runs \(profile "ci"\) is a run of this selection \(profile "[^"]+", shard 0\/2, methods mtl: 2 runs\); the /,
    );
    assert.equal(calls.length, 4);
  }));

Deno.test("main() on a GPU that fits only some methods: the refusal names them and the --methods that trains them", () =>
  inTempDir(async (dir) => {
    const { profile, grid } = await memoryGrid(dir, {
      seeds: [0],
      methods: [{ name: "mtl" }, { name: "prompt_tuning", config: { length: 4 } }],
    });
    const one = (label: string) =>
      estimateTrainingMemory(
        memoryInputFor(
          grid.find((s) => s.method.label === label)!,
          preset("tiny-v1_1"),
          "fused",
          1,
        ),
      ).peak;
    // A device on which Prompt-Tuning's frozen backbone fits at one row and MTL does not.
    const bytes = (one("prompt_tuning") + one("mtl")) / 2 / 0.9;
    assert.ok(one("prompt_tuning") < 0.9 * bytes && 0.9 * bytes < one("mtl"));
    const smi = forbiddenCommand(); // --device-memory is given: nvidia-smi is not asked
    const gpu = {
      probe: () => Promise.resolve({ name: "webgpu", gpu: true }),
      runCommand: smi.runCommand,
    };
    const { calls, runOne } = countingRunOne();
    const args = [
      "--profile",
      profile,
      "--data-dir",
      DATA,
      "--out",
      join(dir, "out"),
      "--no-tables",
      "--device-memory",
      String(bytes / 1e9),
    ];
    const c = capture();
    assert.equal(await main(args, { ...c.opts, ...gpu, runOne }), 2);
    assert.equal(calls.length, 0);
    assert.match(
      c.err.join("\n"),
      /Refused before training: 1 run\(s\) cannot fit[^]*\nEvery run of "prompt_tuning" fits; "mtl" has runs that do not\. To train only the methods that fit, add --methods prompt_tuning$/,
    );
    // The same advice under --dry-run's warning.
    const d = capture();
    assert.equal(await main([...args, "--dry-run"], { ...d.opts, ...gpu }), 0);
    assert.match(
      d.err.join("\n"),
      /without --dry-run this is refused[^]*add --methods prompt_tuning/,
    );
    // Following it trains the methods that fit.
    const f = capture();
    assert.equal(
      await main([...args, "--methods", "prompt_tuning"], { ...f.opts, ...gpu, runOne }),
      0,
      f.err.join("\n"),
    );
    assert.deepEqual(calls.map((call) => call.spec.method.label), ["prompt_tuning"]);
    assert.deepEqual(smi.calls, [], "nvidia-smi was not run with --device-memory");
  }));

Deno.test("modelConfig(): a preset, a folder's config.json, undefined for a hub id not downloaded; bad JSON names file:line:column", async () => {
  assert.deepEqual(modelConfig("tiny-v1_1"), preset("tiny-v1_1"));
  assert.equal(modelConfig({ hf: "org/not-downloaded-here" }), undefined);
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/config.json`;
    const relu = sharedPath("fixtures", "hf-t5", "t5-tiny-relu", "config.json");
    const good = JSON.parse(await Deno.readTextFile(relu));
    // With a byte-order mark, as some editors save it: read as JSON all the same.
    await Deno.writeTextFile(file, "\ufeff" + JSON.stringify(good, null, 2));
    assert.equal(modelConfig({ hf: dir })?.dModel, good.d_model);
    // A trailing comma: before, JSON.parse's message named neither the file nor the line.
    await Deno.writeTextFile(file, `{\n  "d_model": 64,\n  "num_layers": 2,\n}\n`);
    assert.throws(() => modelConfig({ hf: dir }), (e: Error) => {
      assert.ok(e.message.startsWith(`${file}:4:1: invalid JSON: `), e.message);
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("unusableCheckpoints(): each unusable config.json of the folders the runs read, and a backbone folder without weights or tokenizer, once, with its runs", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const good = join(dir, "good");
    const badJson = join(dir, "bad-json");
    const badField = join(dir, "bad-field");
    const empty = join(dir, "empty");
    for (const f of [good, badJson, badField, empty]) await Deno.mkdir(f);
    const relu = sharedPath("fixtures", "hf-t5", "t5-tiny-relu", "config.json");
    await Deno.copyFile(relu, join(good, "config.json"));
    // A backbone's folder needs weights and its own tokenizer too (names only are looked at).
    await Deno.writeTextFile(join(good, "model.safetensors"), "");
    await Deno.writeTextFile(join(good, "tokenizer.json"), "");
    const noWeights = join(dir, "no-weights");
    const noTokenizer = join(dir, "no-tokenizer");
    for (const [f, file] of [[noWeights, "spiece.model"], [noTokenizer, "pytorch_model.bin"]]) {
      await Deno.mkdir(f!);
      await Deno.copyFile(relu, join(f!, "config.json"));
      await Deno.writeTextFile(join(f!, file!), "");
    }
    // A folder of a weight file's name is no weights (h388: it passed, the run failed at start);
    // a folder named tokenizer.json is no tokenizer.
    await Deno.mkdir(join(noWeights, "model.safetensors"));
    await Deno.mkdir(join(noTokenizer, "tokenizer.json"));
    await Deno.writeTextFile(join(badJson, "config.json"), `{\n  "d_model": 64,\n}\n`);
    const cfg = JSON.parse(await Deno.readTextFile(relu));
    delete cfg.num_layers;
    await Deno.writeTextFile(join(badField, "config.json"), JSON.stringify(cfg));
    const spec = (id: string, model: RunSpec["model"], backbone: RunSpec["backbone"]) =>
      ({ id, model, backbone }) as RunSpec;
    assert.deepEqual(
      unusableCheckpoints([
        spec("r0", "tiny-v1_1", "pretrained"),
        spec("r1", { hf: good }, "pretrained"),
        // A hub id whose cache folder has no config.json yet: the run downloads it.
        spec("r2", { hf: "org/not-downloaded-here" }, "random"),
        spec("r3", { hf: badJson }, "random"),
        // A backbone folder is read too; the model's and the backbone's folder the same: once.
        spec("r4", "tiny-v1_1", { hf: badField }),
        spec("r5", { hf: badField }, { hf: badField }),
        spec("r6", { hf: empty }, "pretrained"),
        spec("r7", { hf: badJson }, "pretrained"),
        // Random init from a folder reads its config (and its tokenizer, if any) only.
        spec("r8", { hf: noWeights }, "random"),
        spec("r9", { hf: noWeights }, "pretrained"),
        spec("r10", "tiny-v1_1", { hf: noTokenizer }),
      ]),
      [
        `${badJson}/config.json:3:1: invalid JSON: Expected double-quoted property name ` +
        `(JSON allows no comments or trailing commas) (runs r3, r7)`,
        `${badField}/config.json: missing field "num_layers" (expected a number) (runs r4, r5)`,
        `${empty}/config.json: missing (a Hugging Face model folder holds its config.json) (run r6)`,
        `${noWeights}: no model.safetensors, model.safetensors.index.json, pytorch_model.bin or ` +
        "pytorch_model.bin.index.json: the backbone's weights are read from this folder (run r9)",
        `${noTokenizer}: no tokenizer.json and no spiece.model beside the weights; a checkpoint ` +
        "needs its own tokenizer (put the model's tokenizer.json, or its spiece.model and " +
        "tokenizer_config.json, in the folder) (run r10)",
      ],
    );
    // More than three runs of one file: the first three and a count.
    const many = ["a", "b", "c", "d", "e"].map((id) => spec(id, { hf: empty }, "random"));
    assert.match(unusableCheckpoints(many)[0]!, /\(runs a, b, c and 2 more\)$/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A data folder under `dir` with the mirror's RTE, CoLA and CB, and the profile over it. */
async function copiedData(dir: string): Promise<string> {
  const data = join(dir, "data");
  for (const f of ["glue/RTE", "glue/CoLA", "super_glue/CB"]) {
    await Deno.mkdir(join(data, f), { recursive: true });
    for (const e of Deno.readDirSync(join(DATA, f))) {
      await Deno.copyFile(join(DATA, f, e.name), join(data, f, e.name));
    }
  }
  return data;
}

/**
 * A one-seed MTL profile in `dir` over a copy of the task data there ({@link copiedData}), its
 * results folder, and bench's arguments for it (no tables).
 */
async function copiedDataGrid(
  dir: string,
): Promise<{ data: string; profile: string; out: string; args: string[] }> {
  const data = await copiedData(dir);
  const profile = await tmpProfile(dir, { seeds: [0], methods: [{ name: "mtl" }] });
  const out = join(dir, "out");
  return {
    data,
    profile,
    out,
    args: ["--profile", profile, "--data-dir", data, "--out", out, "--no-tables"],
  };
}

Deno.test("main() --resume: a kept result of another backend is named; one whose data file changed is retrained, so its file is checked first", () =>
  inTempDir(async (dir) => {
    const { data, args } = await copiedDataGrid(dir);
    // As runOne records it: each data file read, with its sha256 (the fake records none).
    const withData: RunOneFn = async (spec, o) => {
      const r = await fakeRunOne(spec, o);
      return {
        ...r,
        provenance: {
          ...r.provenance,
          data: await dataProvenance(o.dataDir, dataFiles(spec.tasks)),
        },
      };
    };
    assert.equal(await main(args, { ...capture().opts, runOne: withData }), 0);
    // The fake records backend "fake"; here the runs' "auto" resolves to another.
    const kept = capture();
    const none = countingRunOne();
    assert.equal(await main([...args, "--resume"], { ...kept.opts, runOne: none.runOne }), 0);
    assert.deepEqual(none.calls, []);
    assert.match(
      kept.err.join("\n"),
      /note: 2 finished result\(s\) in .* were trained on another backend than their runs resolve to here \(fake \(run id's backend "auto", now /,
    );
    // CB's validation file made unparsable: the SuperGLUE result is retrained (its data changed),
    // so the file is read before any run and refused (exit 2), not found broken mid-grid.
    await Deno.writeTextFile(join(data, "super_glue/CB/val.jsonl"), "{\n", { append: true });
    const c = capture();
    const runs = countingRunOne();
    assert.equal(await main([...args, "--resume"], { ...c.opts, runOne: runs.runOne }), 2);
    assert.deepEqual(runs.calls, []);
    assert.match(
      c.err.join("\n"),
      /Refused before training: 1 task file problem\(s\):\n {2}\S+\/super_glue\/CB\/val\.jsonl/,
    );
  }));

Deno.test("readsTaskCorpus(): a tiny preset from no checkpoint folder, random or pretrained; not a published preset or an hf model or backbone", () => {
  assert.equal(readsTaskCorpus({ model: "tiny-v1_1", backbone: "random" }), true);
  assert.equal(readsTaskCorpus({ model: "tiny-v1_1", backbone: "pretrained" }), true);
  assert.equal(readsTaskCorpus({ model: "t5-v1_1-small", backbone: "random" }), false);
  assert.equal(readsTaskCorpus({ model: "tiny-v1_1", backbone: { hf: "/ck/tiny" } }), false);
  assert.equal(readsTaskCorpus({ model: { hf: "/ck/tiny" }, backbone: "pretrained" }), false);
});

Deno.test("malformedTaskFiles(): each file the runs read that does not parse, once, with its runs; test files only with predictTest", () =>
  inTempDir(async (dir) => {
    const data = await copiedData(dir);
    const grid = expandGrid(await loadProfile(await tmpProfile(dir, { seeds: [0] })), {
      dataDir: data,
    });
    assert.deepEqual(await malformedTaskFiles(grid, data), [], "the mirror's files parse");
    // CB train: a cut JSON line; RTE dev: a renamed label column; CoLA test: a short row.
    const cb = join(data, "super_glue/CB/train.jsonl");
    const lines = (await Deno.readTextFile(cb)).split("\n");
    lines[4] = lines[4]!.slice(0, 30);
    await Deno.writeTextFile(cb, lines.join("\n"));
    const rte = join(data, "glue/RTE/dev.tsv");
    const text = await Deno.readTextFile(rte);
    await Deno.writeTextFile(rte, text.replace("\tlabel\n", "\tgold\n"));
    const cola = join(data, "glue/CoLA/test.tsv");
    await Deno.writeTextFile(
      cola,
      (await Deno.readTextFile(cola)).replace(/\n(\d+)\t[^\n]*\n/, "\n$1\n"),
    );
    // Runs from a published checkpoint read only their own tasks' files (no task corpus).
    const published = grid.map((s) => ({ ...s, model: "t5-small" as const }));
    const ids = (benchmark: string) =>
      published.filter((s) => s.benchmark === benchmark).map((s) => s.id);
    // Three runs per benchmark (three methods, one seed): all named.
    const three = (xs: string[]) => (assert.equal(xs.length, 3), xs.join(", "));
    const rteLine = `${rte}:1: field "label": missing column (header: index | sentence1 | ` +
      "sentence2 | gold)";
    const cbLine = `${cb}:5: invalid JSON: Unterminated string (column 31)`;
    assert.deepEqual(await malformedTaskFiles(published, data), [
      `${rteLine} (runs ${three(ids("glue"))})`,
      `${cbLine} (runs ${three(ids("super_glue"))})`,
    ]);
    // The tiny preset's runs read the task corpus too (every task's train and test files, at
    // their start): CB's train for the glue runs as well, and CoLA's test file, which no run
    // trains or evaluates on, is named with why it was read.
    assert.ok(grid.every(readsTaskCorpus));
    const all = grid.map((s) => s.id);
    const six = `${all.slice(0, 3).join(", ")} and 3 more`;
    const glueFirst = grid.filter((s) => s.benchmark === "glue").map((s) => s.id);
    assert.deepEqual(await malformedTaskFiles(grid, data), [
      `${rteLine} (runs ${three(glueFirst)})`,
      `${cbLine} (runs ${six})`,
      `${cola}:2: field "sentence": expected 2 tab-separated columns, found 1 ` +
      `${corpusReadNote(data)} (runs ${six})`,
    ]);
    // One run reading it: "run <id>"; the test split is read with predictTest only.
    const one = published.filter((s) => s.benchmark === "glue").slice(0, 1).map((s) => ({
      ...s,
      train: { ...s.train, predictTest: true },
    }));
    const got = await malformedTaskFiles(one, data);
    assert.equal(got.length, 2, got.join("\n"));
    assert.match(got[0]!, new RegExp(`^${rte}:1: .* \\(run ${one[0]!.id}\\)$`));
    assert.match(got[1]!, new RegExp(`^${cola}:\\d+: .* \\(run ${one[0]!.id}\\)$`));
  }));

Deno.test("main() refuses a grid whose task file does not parse before any run (exit 2 for --data-dir, nothing written); --resume skips the finished runs' files", () =>
  inTempDir(async (dir) => {
    const { data, profile, out, args } = await copiedDataGrid(dir);
    // The super_glue run trains first, then the file it read breaks.
    const grid = expandGrid(await loadProfile(profile), { dataDir: data });
    const sg = grid.filter((s) => s.benchmark === "super_glue").map((s) => s.method.label);
    assert.equal(sg.length, 1);
    const first = countingRunOne();
    assert.equal(await main(args, { ...capture().opts, runOne: first.runOne }), 0);
    const cb = join(data, "super_glue/CB/val.jsonl");
    await Deno.writeTextFile(cb, "{\n", { append: true });
    // Without --resume every run trains again: refused, no run started, nothing written.
    await Deno.remove(out, { recursive: true });
    const runs = countingRunOne();
    const c = capture();
    assert.equal(await main(args, { ...c.opts, runOne: runs.runOne }), 2, c.err.join("\n"));
    assert.deepEqual(runs.calls, []);
    assert.match(
      c.err.join("\n"),
      /Refused before training: 1 task file problem\(s\):\n {2}\S+\/super_glue\/CB\/val\.jsonl:\d+: invalid JSON: .* \(run \w{12}\)/,
    );
    assert.equal(existsSync(out), false, "nothing written");
    // With --resume and that run's result in OUT, its files are not read: the others train.
    const sgRun = grid.find((s) => s.benchmark === "super_glue")!;
    await Deno.mkdir(out);
    await Deno.writeTextFile(
      join(out, runFileName(sgRun)),
      JSON.stringify(await fakeRunOne(sgRun, { outDir: out, dataDir: data })),
    );
    const resumed = countingRunOne();
    const r = capture();
    assert.equal(
      await main([...args, "--resume"], { ...r.opts, runOne: resumed.runOne }),
      0,
      r.err.join("\n"),
    );
    assert.deepEqual(resumed.ids(), grid.filter((s) => s !== sgRun).map((s) => s.id));
    // A result --resume would not keep (cut short: the run trains again) does not excuse the
    // run's files: refused before any run, as without --resume.
    const file = join(out, runFileName(sgRun));
    await Deno.writeTextFile(file, (await Deno.readTextFile(file)).slice(0, 100));
    const again = countingRunOne();
    const a = capture();
    assert.equal(
      await main([...args, "--resume"], { ...a.opts, runOne: again.runOne }),
      2,
      a.err.join("\n"),
    );
    assert.deepEqual(again.calls, []);
    assert.match(a.err.join("\n"), /Refused before training: 1 task file problem\(s\):/);
  }));

Deno.test("main() refuses to start over runs with checkpoints of an unfinished attempt unless told --resume or --restart", () =>
  inTempDir(async (dir) => {
    const profile = await tmpProfile(dir, { seeds: [0], methods: [{ name: "mtl" }] });
    const out = join(dir, "out");
    const args = ["--profile", profile, "--out", out, "--no-tables"];
    const grid = expandGrid(await loadProfile(profile), {
      dataDir: sharedPath("data"),
      catalog: await defaultTaskCatalog(),
    });
    const stopped = grid[0]!;
    // A stopped (or preempted) run's checkpoint of step 4, no claim left.
    const ckpt = join(out, runFileName(stopped).slice(0, -".json".length), "checkpoints");
    await Deno.mkdir(join(ckpt, "step-00000004"), { recursive: true });
    // Without a flag: refused before any run, the checkpoint kept. Before, the run deleted it
    // and trained from step 0, then said --resume would have continued it.
    const none = countingRunOne();
    const c = capture();
    assert.equal(await main(args, { ...c.opts, runOne: none.runOne }), 2, c.err.join("\n"));
    assert.deepEqual(none.calls, []);
    assert.match(
      c.err.join("\n"),
      new RegExp(
        `Refused before training: 1 run\\(s\\) of the grid have checkpoints in ${out} of an ` +
          `earlier attempt that did not finish \\(run ${stopped.id} \\(.*\\.json\\): step 4 of ` +
          `${stopped.train.steps}\\): --resume continues them from there .*; --restart trains ` +
          `them from step 0, deleting their checkpoints`,
      ),
    );
    assert.ok(existsSync(join(ckpt, "step-00000004")), "kept");
    // The dry run warns.
    const d = capture();
    assert.equal(await main([...args, "--dry-run"], d.opts), 0, d.err.join("\n"));
    assert.match(d.err.join("\n"), /warning: a run would be refused: 1 run\(s\) of the grid/);
    // Both flags: refused.
    const both = capture();
    assert.equal(await main([...args, "--resume", "--restart"], both.opts), 2);
    assert.match(both.err.join("\n"), /--resume with --restart: .*give one of them/);
    // --restart: every run trains, the stopped one from step 0, saying so.
    const restarted = countingRunOne();
    const r = capture();
    assert.equal(
      await main([...args, "--restart"], { ...r.opts, runOne: restarted.runOne }),
      0,
      r.err.join("\n"),
    );
    assert.deepEqual(restarted.ids(), grid.map((s) => s.id));
    assert.match(
      r.err.join("\n"),
      new RegExp(
        `run ${stopped.id} \\(.*\\): discarding its checkpoint of step 4 of \\d+ and ` +
          `training from step 0 \\(--restart\\)`,
      ),
    );
  }));

Deno.test("main() --dry-run --resume estimates what is left: finished runs none, a stopped one from its checkpoint", () =>
  inTempDir(async (dir) => {
    const profile = await tmpProfile(dir, { seeds: [0], methods: [{ name: "mtl" }] });
    const out = join(dir, "out");
    const args = ["--profile", profile, "--out", out, "--dry-run", "--backend", "cpu"];
    const grid = expandGrid(await loadProfile(profile), {
      dataDir: sharedPath("data"),
      catalog: await defaultTaskCatalog(),
      backend: "cpu",
    });
    assert.equal(grid.length, 2);
    const [done, stopped] = [grid[0]!, grid[1]!];
    const totalLine = (err: string) => err.split("\n").find((l) => /^2 runs/.test(l)) ?? "";
    const flopsOf = (line: string) => line.match(/; ([\d.]+\w?) FLOPs;/)?.[1];
    const before = capture();
    assert.equal(await main([...args, "--resume"], before.opts), 0);
    const all = totalLine(before.out.join("\n") + before.err.join("\n"));
    assert.match(all, /^2 runs \(with --resume: 0 finished, 0 resuming/);
    await Deno.mkdir(out, { recursive: true });
    await Deno.writeTextFile(
      join(out, runFileName(done)),
      JSON.stringify(await fakeRunOne(done, { outDir: out, dataDir: sharedPath("data") })),
    );
    const half = stopped.train.steps / 2;
    const checkpoint = (spec: RunSpec, step: number) =>
      Deno.mkdir(
        join(
          out,
          runFileName(spec).slice(0, -".json".length),
          "checkpoints",
          `step-${String(step).padStart(8, "0")}`,
        ),
        { recursive: true },
      );
    await checkpoint(stopped, half);
    // A finished run whose checkpoints are still there (stopped between writing its result and
    // removing its folder) is finished, not resuming.
    await checkpoint(done, half);
    const c = capture();
    assert.equal(await main([...args, "--resume"], c.opts), 0, c.err.join("\n"));
    const text = c.out.join("\n") + "\n" + c.err.join("\n");
    const line = totalLine(text);
    assert.match(
      line,
      /^2 runs \(with --resume: 1 finished, 1 resuming from a checkpoint; the FLOPs and time are those left\)/,
    );
    assert.notEqual(flopsOf(line), flopsOf(all), "less is left");
    // Exactly: nothing of the finished run, the second half of the stopped one (its training
    // and its evaluations alike).
    const left = estimateRun(stopped, methodAccounting, "cpu").seconds! / 2;
    assert.match(line, new RegExp(`; about ${fmtDuration(left)} at an assumed `));
    // Nothing left of the finished run: "0" FLOPs (not "0.00") and 0 s.
    assert.match(text, new RegExp(`${done.id} .* 0 +0s .* finished`));
    assert.match(text, new RegExp(`${stopped.id} .* from ${half}`));
    // A checkpoint that owes its step's evaluation (a stop abandoned it): that evaluation too.
    await Deno.writeTextFile(
      join(
        out,
        runFileName(stopped).slice(0, -".json".length),
        "checkpoints",
        `step-${String(half).padStart(8, "0")}`,
        "state.json",
      ),
      JSON.stringify({ step: half, evalOwed: half }),
    );
    const owed = capture();
    assert.equal(await main([...args, "--resume"], owed.opts), 0, owed.err.join("\n"));
    const owedText = owed.out.join("\n") + "\n" + owed.err.join("\n");
    const e = estimateRun(stopped, methodAccounting, "cpu");
    const oneEval = e.seconds! * (e.evalFlops! / e.totalFlops!);
    assert.ok(oneEval > 0);
    assert.match(
      totalLine(owedText),
      new RegExp(`; about ${fmtDuration(left + oneEval)} at an assumed `),
    );
    assert.match(owedText, new RegExp(`${stopped.id} .* from ${half} \\(evaluation owed\\)`));
  }));

Deno.test("evaluationsAfter(): one every evalEvery steps and one at the last, after a checkpoint's step", () => {
  const t = { steps: 10, evalEvery: 4 }; // evaluations at 4, 8 and 10
  assert.deepEqual([0, 3, 4, 7, 8, 9, 10].map((s) => evaluationsAfter(t, s)), [
    3,
    3,
    2,
    2,
    1,
    1,
    0,
  ]);
  assert.equal(evaluationsAfter({ steps: 8, evalEvery: 4 }, 4), 1);
  assert.equal(evaluationsAfter({ steps: 8, evalEvery: 4 }, 8), 0);
});

Deno.test("main(): a run on the host's memory (cpu) whose estimated peak exceeds 90% of the machine's is warned of, once per configuration; trained all the same", () =>
  inTempDir(async (dir) => {
    const profile = await tmpProfile(dir, { seeds: [0, 1], methods: [{ name: "mtl" }] });
    const args = (out: string, extra: string[] = []) => [
      ...["--profile", profile, "--out", join(dir, out), "--backend", "cpu", "--no-tables"],
      ...extra,
    ];
    const warned = (err: string[]) => err.filter((l) => l.startsWith("warning: "));
    // Plenty: nothing said.
    const big = capture();
    assert.equal(await main(args("a", ["--dry-run"]), { ...big.opts, hostMemory: 1e12 }), 0);
    assert.deepEqual(warned(big.err), []);
    // 1 MB: every run (one estimate: GLUE's and SuperGLUE's lengths are alike here), in one
    // line naming two, by a dry run and a real one.
    for (const extra of [["--dry-run"], []]) {
      const c = capture();
      const { calls, runOne } = countingRunOne();
      assert.equal(
        await main(args(`b${extra.length}`, extra), { ...c.opts, runOne, hostMemory: 1e6 }),
        0,
      );
      const w = warned(c.err);
      assert.equal(w.length, 1, c.err.join("\n"));
      assert.match(
        w[0]!,
        /^warning: 4 runs \(run \w{12} \(tiny-v1_1, mtl, glue, s0\); run \w{12} \(tiny-v1_1, mtl, glue, s1\); and 2 more\): estimated peak [\d.]+ MB, more than 90% of this machine's memory \(1\.0 MB\): they may run out of memory or swap; train\.microBatchSize splits each batch into passes that need less$/,
      );
      assert.equal(calls.length, extra.length === 0 ? 4 : 0, "a warning, not a refusal");
    }
    // This machine's own memory, as bench reads it: a batch no host holds is warned of.
    const huge = await tmpProfile(dir, {
      seeds: [0],
      methods: [{ name: "mtl" }],
      train: { ...TINY.train, batchSize: 4_000_000 },
    });
    const own = capture();
    const ownArgs = ["--profile", huge, "--out", join(dir, "h"), "--backend", "cpu", "--dry-run"];
    assert.equal(await main(ownArgs, own.opts), 0, own.err.join("\n"));
    assert.match(
      warned(own.err).join("\n"),
      /^warning: 2 runs .* more than 90% of this machine's memory \([\d.]+ GB\): /,
    );
  }));

Deno.test("main(): a backend asked for by name that cannot start here is refused before any run trains; a dry run warns; HYPERPROMPT_NO_BLAS is checked", () =>
  inTempDir(async (dir) => {
    const profile = await tmpProfile(dir, { seeds: [0], methods: [{ name: "mtl" }] });
    const args = (out: string, backend: string, extra: string[] = []) => [
      ...["--profile", profile, "--out", join(dir, out), "--backend", backend, "--no-tables"],
      ...extra,
    ];
    const probe = () => Promise.reject(new Error("webgpu unavailable: no adapter (simulated)"));
    const refusal =
      "a backend that cannot start here: 2 run(s) on webgpu: webgpu unavailable: no adapter " +
      "(simulated)";
    // A real run: refused (exit 1: this machine, not the command), no run called.
    const c = capture();
    const { calls, runOne } = countingRunOne();
    assert.equal(await main(args("a", "webgpu"), { ...c.opts, runOne, probe }), 1);
    assert.deepEqual(calls, []);
    assert.ok(c.err.includes(`Refused before training: ${refusal}`), c.err.join("\n"));
    // A dry run: its plan, and the warning.
    const d = capture();
    assert.equal(await main(args("b", "webgpu", ["--dry-run"]), { ...d.opts, probe }), 0);
    assert.ok(
      d.err.includes(`warning: without --dry-run this is refused: ${refusal}`),
      d.err.join("\n"),
    );
    // With --resume, runs whose results are kept need no backend: a finished grid is not
    // refused where its GPU is gone (tables and the gate still run).
    const gpu = () => Promise.resolve({ name: "webgpu", gpu: true });
    const trained = capture();
    assert.equal(
      await main(args("done", "webgpu"), { ...trained.opts, runOne, probe: gpu }),
      0,
      trained.err.join("\n"),
    );
    assert.equal(calls.length, 2);
    const kept = capture();
    assert.equal(
      await main(args("done", "webgpu", ["--resume"]), { ...kept.opts, runOne, probe }),
      0,
      kept.err.join("\n"),
    );
    assert.equal(calls.length, 2, "nothing trained again");
    assert.ok(!kept.err.some((l) => /cannot start here/.test(l)), kept.err.join("\n"));
    // Its dry run plans the same: no warning of a refusal the run would not make.
    const keptDry = capture();
    assert.equal(
      await main(args("done", "webgpu", ["--resume", "--dry-run"]), { ...keptDry.opts, probe }),
      0,
    );
    assert.ok(!keptDry.err.some((l) => /cannot start here/.test(l)), keptDry.err.join("\n"));
    // wasm+blas with BLAS turned off: refused too (its runs would each fail at their start).
    const b = capture();
    assert.equal(
      await withEnv(
        { HYPERPROMPT_NO_BLAS: "1" },
        () => main(args("c", "wasm+blas"), { ...b.opts, runOne }),
      ),
      1,
    );
    assert.ok(
      b.err.includes(
        "Refused before training: a backend that cannot start here: 2 run(s) on wasm+blas: " +
          "BLAS is disabled (unset HYPERPROMPT_NO_BLAS)",
      ),
      b.err.join("\n"),
    );
    assert.equal(calls.length, 2);
    // A value of HYPERPROMPT_NO_BLAS that is not 0/1 is a usage error before anything runs.
    const v = capture();
    assert.equal(
      await withEnv(
        { HYPERPROMPT_NO_BLAS: "true" },
        () => main(args("d", "cpu"), { ...v.opts, runOne }),
      ),
      2,
    );
    assert.match(
      v.err.join("\n"),
      /HYPERPROMPT_NO_BLAS="true" must be 1 \(wasm without OpenBLAS\)/,
    );
    assert.equal(calls.length, 2);
    // "auto" always starts something (cpu at worst): a probe that fails is no refusal.
    const auto = capture();
    assert.equal(
      await withEnv(
        { HYPERPROMPT_BACKEND: undefined },
        () => main(args("f", "auto"), { ...auto.opts, runOne, probe }),
      ),
      0,
      auto.err.join("\n"),
    );
    assert.equal(calls.length, 4);
    assert.ok(!auto.err.some((l) => /cannot start here/.test(l)), auto.err.join("\n"));
    // Without --profile, the default profile's backend is resolved the same way: a dry run warns.
    const dflt = capture();
    assert.equal(
      await main(
        ["--out", join(dir, "e"), "--backend", "webgpu", "--dry-run", "--data-dir", DATA],
        { ...dflt.opts, probe },
      ),
      0,
      dflt.err.join("\n"),
    );
    assert.ok(
      dflt.err.includes('No --profile: using "smoke" (backend webgpu, which cannot start here)'),
      dflt.err.join("\n"),
    );
    assert.ok(dflt.err.some((l) => l.startsWith("warning: without --dry-run this is refused: ")));
  }));

Deno.test("main(): HYPERPROMPT_BACKEND where every run names its backend is said to do nothing; where a run asks for auto, nothing is said", () =>
  inTempDir(async (dir) => {
    const profile = await tmpProfile(dir, { seeds: [0], methods: [{ name: "mtl" }] });
    const noted = async (extra: string[]) => {
      const c = capture();
      const args = ["--profile", profile, "--out", join(dir, "o"), "--dry-run", ...extra];
      assert.equal(await withEnv({ HYPERPROMPT_BACKEND: "cpu" }, () => main(args, c.opts)), 0);
      return c.err.filter((l) => l.includes("HYPERPROMPT_BACKEND"));
    };
    assert.deepEqual(await noted(["--backend", "wasm"]), [
      'note: HYPERPROMPT_BACKEND=cpu is not used: it replaces "auto", and every run names its ' +
      "backend (wasm: --backend); without --backend it replaces the profile's auto, if any",
    ]);
    // The profile's auto: the variable chooses the backend, nothing to say.
    assert.deepEqual(await noted([]), []);
    // The ci profile names cpu for its runs and wasm for its pretraining.
    const c = capture();
    assert.equal(
      await withEnv(
        { HYPERPROMPT_BACKEND: "wasm" },
        () =>
          main(
            ["--profile", "ci", "--out", join(dir, "ci"), "--dry-run", "--data-dir", DATA],
            c.opts,
          ),
      ),
      0,
    );
    assert.ok(
      c.err.includes(
        'note: HYPERPROMPT_BACKEND=wasm is not used: it replaces "auto", and every run names ' +
          "its backend (cpu: profile ci); --backend chooses another",
      ),
      c.err.join("\n"),
    );
  }));

Deno.test("main(): without --resume, runs whose result is in --out already are said to be trained again and replaced", () =>
  inTempDir(async (dir) => {
    const profile = await tmpProfile(dir, {
      seeds: [0],
      methods: [{ name: "mtl" }],
      train: { ...TINY.train, checkpointEvery: 0 },
    });
    const args = ["--profile", profile, "--out", join(dir, "o"), "--backend", "cpu", "--no-tables"];
    const said = async (extra: string[]) => {
      const c = capture();
      const { runOne } = countingRunOne();
      assert.equal(await main([...args, ...extra], { ...c.opts, runOne }), 0, c.err.join("\n"));
      return c.err.filter((l) => /already/.test(l));
    };
    assert.deepEqual(await said([]), [], "nothing there yet");
    assert.deepEqual(await said([]), [
      `note: 2 run(s) of the grid have a result in ${join(dir, "o")} already: they train again ` +
      "and their results are replaced (--resume keeps them)",
    ]);
    assert.deepEqual(await said(["--resume"]), [], "--resume keeps them");
  }));

Deno.test("main(): the disk space the runs write at once into --out: said by a dry run, warned of when more than is free; trained all the same", () =>
  inTempDir(async (dir) => {
    const profile = await tmpProfile(dir, {
      seeds: [0],
      methods: [{ name: "mtl" }],
      train: { ...TINY.train, checkpointEvery: 2 },
    });
    const args = (out: string, extra: string[] = []) => [
      ...["--profile", profile, "--out", join(dir, out), "--backend", "cpu", "--no-tables"],
      ...extra,
    ];
    const asked: string[] = [];
    const disk = (bytes: number) => (d: string) => (asked.push(d), bytes);
    const dry = capture();
    assert.equal(
      await main(args("a", ["--dry-run"]), { ...dry.opts, freeDiskBytes: disk(1e12) }),
      0,
    );
    assert.deepEqual(asked, [join(dir, "a")]);
    const note = dry.err.filter((l) => l.startsWith("note: disk: "));
    assert.equal(note.length, 1, dry.err.join("\n"));
    assert.match(
      note[0]!,
      /^note: disk: the runs write up to about [\d.]+ MB at once in .*\/a \([\d.]+ MB of checkpoints \(3 at once while one is saved\) of the largest run, run \w{12} \(tiny-v1_1, mtl, (glue|super_glue), s0\)\); 1000\.0 GB free there$/,
    );
    // Enough room: a real run says nothing of the disk.
    const roomy = capture();
    const { runOne: quiet } = countingRunOne();
    assert.equal(
      await main(args("b"), { ...roomy.opts, runOne: quiet, freeDiskBytes: disk(1e12) }),
      0,
    );
    assert.deepEqual(roomy.err.filter((l) => /disk/.test(l)), []);
    // 1 KB free: warned of before training, and the runs train.
    const c = capture();
    const { calls, runOne } = countingRunOne();
    assert.equal(await main(args("c"), { ...c.opts, runOne, freeDiskBytes: disk(1000) }), 0);
    const w = c.err.filter((l) => l.startsWith("warning: disk: "));
    assert.equal(w.length, 1, c.err.join("\n"));
    assert.match(
      w[0]!,
      /; 1000 B free there: a run that fills the disk fails there \(what was written before is kept\); free space, or choose another --out$/,
    );
    assert.equal(calls.length, 2, "a warning, not a refusal");
    // With --resume, runs whose results are kept write nothing more: no warning of them.
    const resumed = capture();
    assert.equal(
      await main(args("c", ["--resume"]), { ...resumed.opts, runOne, freeDiskBytes: disk(1000) }),
      0,
    );
    assert.equal(calls.length, 2, "nothing trained again");
    assert.deepEqual(resumed.err.filter((l) => /disk/.test(l)), []);
    // A dry run on that disk warns too (not a note).
    const small = capture();
    assert.equal(
      await main(args("e", ["--dry-run"]), { ...small.opts, freeDiskBytes: disk(1000) }),
      0,
    );
    assert.equal(small.err.filter((l) => l.startsWith("warning: disk: ")).length, 1);
    assert.deepEqual(small.err.filter((l) => l.startsWith("note: disk: ")), []);
    // Runs that write no checkpoint need no disk here: nothing said, even by a dry run.
    const none = await tmpProfile(dir, {
      seeds: [0],
      methods: [{ name: "mtl" }],
      train: { ...TINY.train, checkpointEvery: 0 },
    });
    const n = capture();
    assert.equal(
      await main(
        ["--profile", none, "--out", join(dir, "d"), "--backend", "cpu", "--dry-run"],
        { ...n.opts, freeDiskBytes: disk(0) },
      ),
      0,
    );
    assert.deepEqual(n.err.filter((l) => /disk/.test(l)), []);
  }));

Deno.test("main() --dry-run: WebGPU on a software adapter is estimated at its own rate, not a GPU's, unless planning as on a GPU of a stated size", () =>
  inTempDir(async (dir) => {
    const profile = await tmpProfile(dir, { seeds: [0], methods: [{ name: "mtl" }] });
    const args = [
      "--profile",
      profile,
      "--out",
      join(dir, "out"),
      "--dry-run",
      "--backend",
      "webgpu",
    ];
    const total = async (gpu: boolean, extra: string[] = []) => {
      const c = capture();
      const probe = () => Promise.resolve({ name: "webgpu", gpu });
      // A host of 1 MB: every run on it would be warned of.
      const o = { ...c.opts, probe, hostMemory: 1e6 };
      assert.equal(await main([...args, ...extra], o), 0, c.err.join("\n"));
      const line = [...c.out, ...c.err].find((l) => /^2 runs;/.test(l)) ?? "";
      return { line, warned: c.err.filter((l) => l.startsWith("warning: ") && /memory/.test(l)) };
    };
    const gpu = await total(true);
    assert.match(gpu.line, /at an assumed 2\.00TFLOP\/s \(webgpu\); /);
    assert.deepEqual(gpu.warned, [], "a GPU run is not on the host's memory");
    // Lavapipe ran the ci grid at 0.05 GFLOP/s: a GPU's rate made 3 minutes read as 0.005 s.
    const software = await total(false);
    assert.match(software.line, /at an assumed 50\.0MFLOP\/s \(webgpu \(software adapter\)\); /);
    assert.equal(software.warned.length, 1, "a software adapter is on the host's memory");
    // Planning as on a GPU of a stated size (README's step 3, off the GPU machine): a GPU's rate,
    // and no warning of this host's memory, which the plan is not for.
    const planned = await total(false, ["--device-memory", "85.5"]);
    assert.match(planned.line, /at an assumed 2\.00TFLOP\/s \(webgpu\); /);
    assert.deepEqual(planned.warned, []);
  }));

Deno.test("main() --assume-tflops sets the dry run's rate; a bad value is refused; without --dry-run a note", () =>
  inTempDir(async (dir) => {
    const profile = await tmpProfile(dir, { seeds: [0], methods: [{ name: "mtl" }] });
    const args = ["--profile", profile, "--out", join(dir, "out"), "--dry-run", "--backend", "cpu"];
    const total = async (extra: string[]) => {
      const c = capture();
      assert.equal(await main([...args, ...extra], c.opts), 0, c.err.join("\n"));
      return [...c.out, ...c.err].find((l) => /^2 runs;/.test(l)) ?? "";
    };
    assert.match(await total([]), /at an assumed 200MFLOP\/s \(cpu\); /);
    assert.match(
      await total(["--assume-tflops", "2.5"]),
      /at an assumed 2\.50TFLOP\/s \(cpu, --assume-tflops\); /,
    );
    // The time is the runs' FLOPs at that rate: 0.0001 TFLOP/s (100 MFLOP/s) against cpu's 110.
    const grid = expandGrid(await loadProfile(profile), {
      dataDir: sharedPath("data"),
      catalog: await defaultTaskCatalog(),
      backend: "cpu",
    });
    const at = (rate?: number) =>
      fmtDuration(
        grid.reduce((a, s) => a + estimateRun(s, methodAccounting, "cpu", rate).seconds!, 0),
      );
    assert.notEqual(at(1e8), at());
    assert.match(await total(["--assume-tflops", "0.0001"]), new RegExp(`; about ${at(1e8)} at `));
    assert.match(await total([]), new RegExp(`; about ${at()} at `));
    for (const bad of ["0", "-1", "x", "0x10", "Infinity", "1e400"]) {
      const c = capture();
      assert.equal(await main([...args, `--assume-tflops=${bad}`], c.opts), 2, bad);
      assert.match(c.err.join("\n"), /--assume-tflops must be a rate in TFLOP\/s above 0/);
    }
    const run = capture();
    const runs = countingRunOne();
    assert.equal(
      await main(
        ["--profile", profile, "--out", join(dir, "out2"), "--no-tables", "--assume-tflops", "3"],
        { ...run.opts, runOne: runs.runOne },
      ),
      0,
    );
    assert.match(
      run.err.join("\n"),
      /note: --assume-tflops changes only a dry run's time estimates/,
    );
  }));

Deno.test("main() refuses a grid whose checkpoint config.json cannot be used before any run (exit 2, nothing written); --dry-run lists it and warns", () =>
  inTempDir(async (dir) => {
    const broken = join(dir, "broken");
    await Deno.mkdir(broken);
    await Deno.writeTextFile(join(broken, "config.json"), "{}");
    const profile = await tmpProfile(dir, {
      seeds: [0],
      models: ["tiny-v1_1", { hf: broken }],
      benchmarks: ["glue"],
      tasks: { glue: ["rte"] },
      methods: [{ name: "mtl" }],
    });
    const out = join(dir, "out");
    const runs = countingRunOne();
    const c = capture();
    const args = ["--profile", profile, "--data-dir", DATA, "--out", out, "--backend", "cpu"];
    assert.equal(await main(args, { ...c.opts, runOne: runs.runOne }), 2, c.err.join("\n"));
    assert.deepEqual(runs.calls, [], "no run started: not even the good model's");
    assert.match(
      c.err.join("\n"),
      /Refused before training: 1 checkpoint folder problem\(s\) \(config\.json, weights, tokenizer\):\n {2}\S+\/broken\/config\.json: missing field "\w+" .*\(run \w{12}\)/,
    );
    assert.equal(existsSync(out), false, "nothing written");
    const d = capture();
    assert.equal(await main([...args, "--dry-run"], d.opts), 0, d.err.join("\n"));
    assert.equal(d.out.length, 1 + 2 + 1, "both runs listed");
    assert.match(d.out[2]!, /broken .* n\/a /);
    assert.match(
      d.err.join("\n"),
      /warning: without --dry-run this is refused: 1 checkpoint folder problem\(s\) \(config\.json, weights, tokenizer\):\n {2}\S+\/broken\/config\.json: missing field/,
    );
  }));

/**
 * Two copies under `dir` of the untied HF fixture (three different token tables): `own`, whose
 * decoder table is made a bit-identical copy of `shared.weight` (only the encoder's is its own
 * once loaded), and `copy`, whose two stack tables both are (transformers 5's save of a tied
 * model; the loader merges them).
 */
async function ownTableCheckpoints(dir: string): Promise<{ own: string; copy: string }> {
  const src = sharedPath("fixtures", "hf-t5", "t5-tiny-v1_1-untied");
  const weights = join(src, "model.safetensors");
  const header = await readSafetensorsHeader(weights);
  const range = (name: string) => {
    const [b, e] = header.tensors.get(name)!.dataOffsets;
    return [header.dataStart + b, header.dataStart + e] as const;
  };
  const make = async (name: string, copied: readonly string[]) => {
    const folder = join(dir, name);
    await Deno.mkdir(folder);
    await Deno.copyFile(join(src, "config.json"), join(folder, "config.json"));
    const bytes = await Deno.readFile(weights);
    const table = bytes.slice(...range("shared.weight"));
    for (const stack of copied) bytes.set(table, range(`${stack}.embed_tokens.weight`)[0]);
    await Deno.writeFile(join(folder, "model.safetensors"), bytes);
    return folder;
  };
  return { own: await make("own", ["decoder"]), copy: await make("copy", ["encoder", "decoder"]) };
}

Deno.test("preflightModelConfig: the encoder's own token table of the checkpoint a run loads, not a byte-equal copy's", () =>
  inTempDir(async (dir) => {
    const { own, copy } = await ownTableCheckpoints(dir);
    const tiny = "tiny-v1_1";
    // The checkpoint loaded: the hf model of a "pretrained" backbone, or an hf backbone.
    assert.deepEqual(
      await preflightModelConfig({ model: { hf: own }, backbone: "pretrained" }),
      { ...modelConfig({ hf: own })!, ownEmbeddings: ["encoder"] },
    );
    assert.deepEqual(
      await preflightModelConfig({ model: tiny, backbone: { hf: own } }),
      { ...preset(tiny), ownEmbeddings: ["encoder"] },
    );
    // Equal copies are merged by the loader; a random init loads no weights at all.
    const plain = modelConfig({ hf: copy });
    assert.equal(plain?.ownEmbeddings, undefined);
    assert.deepEqual(
      await preflightModelConfig({ model: { hf: copy }, backbone: "pretrained" }),
      plain,
    );
    assert.deepEqual(
      await preflightModelConfig({ model: { hf: own }, backbone: "random" }),
      modelConfig({ hf: own }),
    );
    // A folder whose index cannot be read: one shared table (the run itself says what is wrong).
    await Deno.remove(join(own, "model.safetensors"));
    assert.deepEqual(
      await preflightModelConfig({ model: { hf: own }, backbone: "pretrained" }),
      modelConfig({ hf: own }),
    );
  }));

Deno.test("modelConfig, weightsFolder, preflightModelConfig, --dry-run: a hub id is read from the run's hub cache, never downloaded", async () => {
  const dir = await Deno.makeTempDir();
  const { own } = await ownTableCheckpoints(dir);
  const cache = join(dir, "cache");
  // The stand-in hub has all three repos: a download would succeed, so only the request log and
  // the forbidden fetch show that none is attempted.
  const hub = serveHub({ "org/own@main": own, "org/partial@main": own, "org/absent@main": own });
  const realFetch = globalThis.fetch;
  try {
    await withEnv(hubEnv(hub.endpoint, cache), async () => {
      // What runs leave in the cache: a completed download (a pretrained backbone), and the files
      // a random init reads (config.json, no weights).
      const full = await fetchHubModel("org/own");
      const partial = await fetchHubConfigFiles("org/partial");
      assert.equal(full, join(cache, "hub", "models--org--own", "main"));
      const absent = join(cache, "hub", "models--org--absent", "main");
      const requests = hub.requests.length;
      let fetched = 0;
      globalThis.fetch = (() => {
        fetched++;
        return Promise.reject(new Error("the preflight must not use the network"));
      }) as typeof fetch;
      try {
        const want = modelConfig({ hf: own })!;
        const pretrained = (hf: string) => ({ model: { hf }, backbone: "pretrained" as const });
        // Completed: its config, its folder, and the encoder's own table the loader would give.
        assert.deepEqual(modelConfig({ hf: "org/own" }), want);
        assert.equal(weightsFolder(pretrained("org/own")), full);
        assert.equal(weightsFolder({ model: "tiny-v1_1", backbone: { hf: "org/own" } }), full);
        assert.deepEqual(await preflightModelConfig(pretrained("org/own")), {
          ...want,
          ownEmbeddings: ["encoder"],
        });
        // config.json only: the size is known, the weights are not (one shared table assumed).
        assert.deepEqual(modelConfig({ hf: "org/partial" }), want);
        assert.equal(weightsFolder(pretrained("org/partial")), undefined);
        assert.deepEqual(await preflightModelConfig(pretrained("org/partial")), want);
        // Not in the cache at all: unknown, as before.
        assert.equal(modelConfig({ hf: "org/absent" }), undefined);
        assert.equal(await preflightModelConfig(pretrained("org/absent")), undefined);
        const specs = [
          pretrained("org/own"),
          pretrained("org/partial"),
          pretrained("org/absent"),
          { model: { hf: "org/absent" }, backbone: "random" as const },
        ];
        // One run: "its run gets … and is", not "its 1 run get … and are".
        assert.match(
          hubCacheNotes([pretrained("org/absent")])[0]!,
          /: its run gets no memory or FLOP estimate and is not checked against the memory /,
        );
        assert.deepEqual(hubCacheNotes(specs), [
          `"org/absent" is not in the hub cache (no ${absent}/config.json): its 2 runs get no ` +
          `memory or FLOP estimate and are not checked against the memory before training; a ` +
          `run downloads it there (or name a local folder holding it instead), and the next ` +
          `preflight reads it; the preflight never downloads`,
          `the weights of "org/partial" are not in the hub cache (no completed download in ` +
          `${partial}): its run is estimated with one token table shared by the encoder and ` +
          `decoder, which the checkpoint may not have (a table of a stack's own needs more); a ` +
          `run downloads it there (or name a local folder holding it instead), and the next ` +
          `preflight reads it; the preflight never downloads`,
        ]);
        // The dry run: the cached model is estimated, the absent one is not, and a note says why.
        const at = join(dir, "profile");
        await Deno.mkdir(at);
        const { profile } = await memoryGrid(at, {
          models: [{ hf: "org/own" }, { hf: "org/absent" }],
          backbone: "pretrained",
          seeds: [0],
        });
        const c = capture();
        const args = ["--profile", profile, "--data-dir", DATA, "--dry-run", "--backend", "cpu"];
        assert.equal(await main(args, c.opts), 0, c.err.join("\n"));
        const col = c.out[0]!.indexOf("est. peak GB");
        const rows = c.out.slice(1, -1).filter((l) => l.length > col);
        const cells = (m: string) =>
          rows.filter((l) => new RegExp(`\\s${m}\\s`).test(l)).map((l) => l.slice(col).trim());
        assert.ok(cells("own").length > 0 && cells("own").every((x) => /^\d+\.\d$/.test(x)));
        assert.ok(cells("absent").length > 0 && cells("absent").every((x) => x === "n/a"));
        assert.match(c.out.at(-1)!, /; \d+ without estimate; every row at the maximum lengths/);
        assert.ok(c.err.some((l) => l.startsWith(`note: "org/absent" is not in the hub cache`)));
        // A completed download whose weights file has gone is not what the loader would read.
        await Deno.remove(join(full, "model.safetensors"));
        assert.equal(weightsFolder(pretrained("org/own")), undefined);
        assert.equal(hubCacheNotes([pretrained("org/own")]).length, 1);
      } finally {
        globalThis.fetch = realFetch;
      }
      assert.equal(fetched, 0, "fetch was called");
      assert.equal(hub.requests.length, requests, JSON.stringify(hub.requests.slice(requests)));
    });
  } finally {
    await hub.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main() --dry-run: a checkpoint with its own encoder table is estimated with it, a byte-equal copy is not", () =>
  inTempDir(async (dir) => {
    const { own, copy } = await ownTableCheckpoints(dir);
    // One profile folder per checkpoint (memoryGrid writes tiny.json into it).
    const grid = async (folder: string) => {
      const at = `${folder}-profile`;
      await Deno.mkdir(at);
      return await memoryGrid(at, { models: [{ hf: folder }], backbone: "pretrained" });
    };
    const [g1, g2] = [await grid(copy), await grid(own)];
    const config = modelConfig({ hf: copy })!;
    const peak = (spec: RunSpec, c: T5Config) =>
      estimateTrainingMemory(memoryInputFor(spec, c, "composite", 8)).peak;
    const shared = peak(g1.grid[0]!, config);
    const withOwn = peak(g2.grid[0]!, { ...config, ownEmbeddings: ["encoder"] });
    // At this fixture's 96-row vocabulary the encoder's own table (weights, gradient, two Adam
    // slots: 4 x 12 KB) weighs less than the rows its separate lookup frees early, so its
    // estimate is the lower one (~15.45 vs 15.50 MB); at T5's 32k rows it is far higher. Either
    // way the preflight must plan with it: a stated size between the two fits only the lower.
    assert.ok(Math.abs(withOwn - shared) > 10_000, `${withOwn} vs ${shared}`);
    const gb = String((shared + withOwn) / 2 / (1 - DEVICE_MARGIN) / 1e9);
    const cells = async (profile: string) => {
      const c = capture();
      const args = ["--profile", profile, "--data-dir", DATA, "--dry-run", "--backend", "cpu"];
      assert.equal(await main([...args, "--device-memory", gb], c.opts), 0, c.err.join("\n"));
      const col = c.out[0]!.indexOf("est. peak GB");
      return c.out.slice(1, -1).filter((l) => l.length > col).map((l) => l.slice(col).trim());
    };
    const ofCopy = await cells(g1.profile);
    const ofOwn = await cells(g2.profile);
    assert.ok(ofCopy.length > 0 && ofCopy.length === ofOwn.length, `${ofCopy} / ${ofOwn}`);
    const [fits, micro] = withOwn < shared ? [ofOwn, ofCopy] : [ofCopy, ofOwn];
    for (const cell of fits) assert.match(cell, /^\d+\.\d$/);
    for (const cell of micro) assert.match(cell, /^\d+\.\d \(micro [1-4]\)$/);
  }));

Deno.test("main() on wasm: runs are checked against the wasm heap, a micro-batch chosen or the run refused (exit 2), also in --dry-run's est. peak column", () =>
  inTempDir(async (dir) => {
    // tiny-v1_1 at batch 256 x 480 tokens: about 12.9 GB estimated as one pass, 3.2 GB in passes
    // of 64, which fits 85% of the 4.29 GB heap (WASM_HEAP_MARGIN); 128 does not. (512 tokens,
    // 3.65 GB at 64, no longer fit once the attention Softmax's gradient was counted whole.)
    const big = await tmpProfile(dir, {
      seeds: [0],
      benchmarks: ["glue"],
      methods: [{ name: "mtl" }],
      train: { steps: 2, evalEvery: 2, batchSize: 256, maxInputLength: 480, maxTargetLength: 4 },
    });
    const [spec] = expandGrid(await loadProfile(big), {
      dataDir: DATA,
      catalog: await defaultTaskCatalog(),
    });
    const heap = (m: number) =>
      estimateTrainingMemory(memoryInputFor(spec!, preset("tiny-v1_1"), "fused-wasm-blas", m)).peak;
    assert.ok(heap(64) <= 0.85 * WASM_HEAP_BYTES && heap(128) > 0.85 * WASM_HEAP_BYTES);
    const smi = forbiddenCommand(); // no GPU: nvidia-smi is not asked
    const wasm = {
      probe: () => Promise.resolve({ name: "wasm+blas", gpu: false }),
      runCommand: smi.runCommand,
    };
    const { calls, runOne } = countingRunOne();
    // The micro-batch each run was given (the preflight's choice).
    const micro = () => calls.map((call) => call.opts.microBatchSize);
    const args = (
      profile: string,
      out: string,
    ) => ["--profile", profile, "--data-dir", DATA, "--out", out, "--no-tables"];
    const c = capture();
    const out = join(dir, "out");
    // --device-memory is the GPU's: it does not change the wasm heap's check.
    assert.equal(
      await main([...args(big, out), "--device-memory", "80"], { ...c.opts, ...wasm, runOne }),
      0,
      c.err.join("\n"),
    );
    assert.deepEqual(micro(), [64]);
    const note = c.err.filter((l) => l.includes("training with micro-batches of 64"));
    assert.equal(note.length, 1, c.err.join("\n"));
    assert.match(note[0]!, /usable \(85%\) of the wasm heap's 4\.3 GB/);
    // Named with its benchmark: a method's GLUE and SuperGLUE runs have lines of their own.
    assert.match(note[0]!, new RegExp(`^Memory: \\S+ ${spec!.benchmark} \\S+, batch `));
    assert.equal(
      JSON.parse(Deno.readTextFileSync(join(out, runFileName(spec!)))).effectiveMicroBatchSize,
      64,
    );
    // --dry-run: the est. peak column shows the micro-batch.
    const c2 = capture();
    assert.equal(
      await main([...args(big, join(dir, "o2")), "--dry-run"], { ...c2.opts, ...wasm }),
      0,
    );
    const col = c2.out[0]!.indexOf("est. peak GB");
    assert.equal(c2.out[1]!.slice(col).trim(), `${(heap(64) / 1e9).toFixed(1)} (micro 64)`);

    // T5 1.1 Base with AdamW: weights, gradients, accumulator and two moments do not fit even at
    // micro-batch 1 (README "Against the CPU target": "T5 1.1 Base fits only with Adafactor"):
    // refused before any run.
    const baseAdamw = await tmpProfile(dir, {
      seeds: [0],
      models: ["t5-v1_1-base"],
      benchmarks: ["glue"],
      methods: [{ name: "mtl" }],
      train: {
        steps: 2,
        evalEvery: 2,
        batchSize: 8,
        maxInputLength: 32,
        maxTargetLength: 4,
        optimizer: "adamw",
      },
    });
    calls.length = 0;
    const c3 = capture();
    assert.equal(
      await main(args(baseAdamw, join(dir, "o3")), { ...c3.opts, ...wasm, runOne }),
      2,
    );
    assert.equal(calls.length, 0);
    const msg = c3.err.join("\n");
    assert.match(msg, /Refused before training: 1 run\(s\) cannot fit the wasm heap:/);
    assert.match(
      msg,
      /even at micro-batch 1 .* of the wasm heap's 4\.3 GB .*Adafactor instead of AdamW/,
    );
    assert.doesNotMatch(msg, /--device-memory GB overrides/);
    // The same in a dry run: a warning and the cell, exit 0.
    const c4 = capture();
    assert.equal(
      await main([...args(baseAdamw, join(dir, "o4")), "--dry-run"], { ...c4.opts, ...wasm }),
      0,
    );
    assert.match(
      c4.out[1]!.slice(c4.out[0]!.indexOf("est. peak GB")).trim(),
      /^\d+\.\d \(does not fit\)$/,
    );
    assert.match(
      c4.err.join("\n"),
      /without --dry-run this is refused: 1 run\(s\) cannot fit the wasm heap/,
    );
    assert.deepEqual(smi.calls, [], "nvidia-smi was not run for wasm runs");
    assert.doesNotMatch(
      [...c.err, ...c4.err].join("\n"),
      /memory is unknown/,
      "no GPU: its memory is not looked for",
    );
  }));

Deno.test("interruptHandler(): a first signal waits for the checkpoint, a second or a needless wait exits", () => {
  const make = (training: boolean) => {
    const calls = {
      exits: [] as number[],
      lines: [] as string[],
      pending: undefined as string | undefined,
    };
    const handle = interruptHandler({
      requestStop: (r) => {
        calls.pending ??= r;
        return training;
      },
      stopRequested: () => calls.pending,
      exit: (code) => calls.exits.push(code),
      error: (line) => calls.lines.push(line),
      out: "OUT",
    });
    return { calls, handle };
  };
  // A run that writes checkpoints is training: the first Ctrl-C asks it to stop, the second exits.
  const a = make(true);
  a.handle("SIGINT");
  assert.deepEqual(a.calls.exits, []);
  assert.equal(a.calls.pending, "SIGINT");
  assert.match(a.calls.lines[0]!, /SIGINT: the run in progress stops after its current step/);
  assert.match(a.calls.lines[0]!, /--resume with the same flags continues from that step/);
  assert.match(a.calls.lines[0]!, /Ctrl-C again stops at once/);
  a.handle("SIGINT");
  assert.deepEqual(a.calls.exits, [130]);
  assert.match(
    a.calls.lines[1]!,
    /SIGINT: stopped at once \(a second signal\)\. .* in OUT; .*--resume/,
  );
  // Nothing would be saved by waiting: exit at once, with SIGTERM's code.
  const b = make(false);
  b.handle("SIGTERM");
  assert.deepEqual(b.calls.exits, [143]);
  assert.match(b.calls.lines[0]!, /^\nSIGTERM: stopped at once\. The results of the finished runs/);
});

Deno.test("interruptWhileCheckpointing(): listeners from a checkpointing loop's start until the check after its run; a signal in between lets the run finish", () => {
  const make = (sigterm: boolean) => {
    const live = new Map<() => void, Deno.Signal>();
    const calls = {
      exits: [] as number[],
      lines: [] as string[],
      pending: undefined as string | undefined,
    };
    const loop = { running: false, observer: undefined as ((r: boolean) => void) | undefined };
    const windows = interruptWhileCheckpointing(
      {
        requestStop: (r) => {
          calls.pending ??= r;
          return loop.running;
        },
        stopRequested: () => calls.pending,
        exit: (code) => calls.exits.push(code),
        error: (line) => calls.lines.push(line),
        out: "OUT",
      },
      {
        add: (signal, l) => {
          if (signal === "SIGTERM" && !sigterm) throw new Error("not supported");
          live.set(l, signal);
        },
        remove: (signal, l) => {
          assert.equal(live.get(l), signal, "removes what it added");
          live.delete(l);
        },
      },
      (observer) => {
        loop.observer = observer;
        return () => loop.observer = undefined;
      },
    );
    const setLoop = (running: boolean) => {
      loop.running = running;
      loop.observer!(running);
    };
    const signals = () => [...live.values()].sort();
    const fire = (signal: Deno.Signal) => {
      for (const [l, s] of [...live]) if (s === signal) l();
    };
    return { calls, windows, setLoop, signals, fire, loop };
  };
  const a = make(true);
  // Downloads, pretraining, runs without checkpoints, between runs: the default action.
  assert.deepEqual(a.signals(), []);
  a.windows.betweenRuns();
  a.setLoop(true);
  assert.deepEqual(a.signals(), ["SIGINT", "SIGTERM"], "installed at the loop's start");
  a.windows.betweenRuns();
  assert.deepEqual(a.signals(), ["SIGINT", "SIGTERM"], "kept while the loop runs");
  a.setLoop(false);
  assert.deepEqual(a.signals(), ["SIGINT", "SIGTERM"], "kept after the loop: no result yet");
  // A signal after the last checkpoint: a stop request, no exit; the run writes its result.
  a.fire("SIGTERM");
  assert.deepEqual(a.calls.exits, []);
  assert.equal(a.calls.pending, "SIGTERM");
  assert.match(
    a.calls.lines[0]!,
    /^\nSIGTERM: the run in progress has trained its last step and saved its checkpoint; it finishes and writes its result .*then the grid stops: no other run starts\. SIGTERM again stops at once$/,
  );
  a.fire("SIGTERM");
  assert.deepEqual(a.calls.exits, [143], "a second signal stops at once");
  a.windows.betweenRuns();
  assert.deepEqual(a.signals(), [], "removed after the run: the default action is back");
  // The next run's loop opens a window again; closing the grid removes it while the loop runs.
  a.setLoop(true);
  assert.deepEqual(a.signals(), ["SIGINT", "SIGTERM"]);
  a.windows.close();
  assert.deepEqual(a.signals(), [], "every listener removed");
  assert.equal(a.loop.observer, undefined, "stopped watching");
  // Where SIGTERM cannot be listened to (Windows), SIGINT's window is the same.
  const b = make(false);
  b.setLoop(true);
  assert.deepEqual(b.signals(), ["SIGINT"]);
  b.setLoop(false);
  b.windows.betweenRuns();
  assert.deepEqual(b.signals(), []);
  b.windows.close();
});

/**
 * A runOne that really trains a tiny T5 (4 steps, checkpoints every 2), so that the bench's
 * signal handling meets the trainer's stop request; with `signalAt`, the first run sends this
 * process SIGTERM after that step (SIGINT would stop `deno test` itself, which listens to it)
 * and waits until the handler has seen it. `log.steps` counts the steps trained; with `killAt`,
 * every run fails after that step, before its checkpoint (a kill nothing can catch). With
 * `stepMinutes`, the trainer's clock (`TrainOptions.now`, what `--checkpoint-minutes` is measured
 * on) is a scripted one of each run's own: 0 at the start, `stepMinutes` later after each step.
 */
function trainingRunOne(
  signalAt?: number,
  log = { steps: 0 },
  killAt?: number,
  stepMinutes?: number,
): RunOneFn {
  let signalled = false;
  return async (spec, opts) => {
    let ms = 0;
    const outcome = await toyTrain(spec, opts, {
      ...(stepMinutes === undefined ? {} : { now: () => ms }),
      onStep: async (step, loss) => {
        ms += 60_000 * (stepMinutes ?? 0);
        log.steps++;
        // Reported as run_one.ts does (toyTrain reports a resume's checkpoint step first).
        opts.onProgress?.({ phase: "train", step, totalSteps: spec.train.steps, loss });
        if (step === killAt) throw new Error("simulated kill");
        if (step !== signalAt || signalled) return;
        signalled = true;
        Deno.kill(Deno.pid, "SIGTERM");
        for (let i = 0; i < 500 && stopRequested() === undefined; i++) {
          await new Promise((r) => setTimeout(r, 10));
        }
        assert.equal(stopRequested(), "SIGTERM", "the bench's handler saw the signal");
      },
    }, 11 + spec.seed);
    // The steps were reported above; the fake's own reports (every step from 1) would not be.
    const { onProgress: _, ...quiet } = opts;
    return { ...await fakeRunOne(spec, quiet), losses: outcome.losses };
  };
}

/** Two seeds of MTL on RTE, each saving a checkpoint every 2 steps (the signal tests). */
const CHECKPOINTING_GRID = {
  seeds: [0, 1],
  benchmarks: ["glue"],
  tasks: { glue: ["rte"] },
  methods: [{ name: "mtl" }],
  train: { ...TINY.train, checkpointEvery: 2 },
};

Deno.test("main(): SIGTERM mid-run saves a checkpoint and exits 143; --resume finishes bit-identically", async () => {
  const dir = await Deno.makeTempDir();
  const profile = await tmpProfile(dir, CHECKPOINTING_GRID);
  const base = ["--profile", profile, "--data-dir", DATA, "--no-tables"];
  // Should the handler not be installed, this keeps the signal from ending the test process.
  const guard = () => {};
  Deno.addSignalListener("SIGTERM", guard);
  try {
    const ref = join(dir, "ref");
    assert.equal(
      await main([...base, "--out", ref], { ...capture().opts, runOne: trainingRunOne() }),
      0,
    );
    const out = join(dir, "out");
    const exits: number[] = [];
    const c = capture();
    const code = await main([...base, "--out", out], {
      ...c.opts,
      runOne: trainingRunOne(3),
      exit: (n) => exits.push(n),
    });
    const err = c.err.join("\n");
    assert.equal(code, 143, err);
    assert.deepEqual(exits, [], "the first signal waited for the step's checkpoint");
    assert.match(err, /SIGTERM: the run in progress stops after its current step/);
    assert.match(
      err,
      /Stopped by SIGTERM: 0 runs done, 0 skipped, 0 failed, 1 not started; run \w+ stopped after step 3 of 4; checkpoint .*step-00000003: --resume continues from step 3/,
    );
    // The reason and the checkpoint are said once (the signal's own line names neither).
    assert.equal(err.split("step-00000003").length, 2, err);
    assert.equal(err.split(/stopped by SIGTERM/i).length, 2, err);
    const left = [...Deno.readDirSync(out)].map((e) => e.name);
    assert.ok(left.every((n) => !n.endsWith(".json")), `no result file: ${left}`);
    assert.equal(stopRequested(), undefined, "the request ended with the grid");

    const r = capture();
    const log = { steps: 0 };
    assert.equal(
      await main([...base, "--out", out, "--resume"], {
        ...r.opts,
        runOne: trainingRunOne(undefined, log),
      }),
      0,
    );
    assert.equal(log.steps, 1 + 4, "the stopped run resumed after step 3; the other ran whole");
    assert.match(r.err.join("\n"), /2 runs done, 0 skipped, 0 failed/);
    for (const name of readAll(ref).keys()) {
      const a = JSON.parse(Deno.readTextFileSync(join(ref, name)));
      const b = JSON.parse(Deno.readTextFileSync(join(out, name)));
      assert.deepEqual(b.losses, a.losses, name);
    }
    assert.deepEqual([...readAll(out).keys()].sort(), [...readAll(ref).keys()].sort());
  } finally {
    Deno.removeSignalListener("SIGTERM", guard);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main(): SIGTERM just after a run's training loop ends: the run writes its result, then the grid stops with 143", async () => {
  const dir = await Deno.makeTempDir();
  const profile = await tmpProfile(dir, CHECKPOINTING_GRID);
  // Should the bench's listener be gone (as it was at the loop's end before), the signal goes
  // here instead of ending the test process, and the run's assertion below fails.
  const guard = () => {};
  Deno.addSignalListener("SIGTERM", guard);
  try {
    const out = join(dir, "out");
    let sent = false;
    const runOne: RunOneFn = async (spec, opts) => {
      const outcome = await toyTrain(spec, opts, {}, 11 + spec.seed);
      if (!sent) {
        sent = true;
        // The loop has ended with its last checkpoint; the run has yet to return and be written.
        Deno.kill(Deno.pid, "SIGTERM");
        // Deno dispatches the signal milliseconds later (up to ~15 under load), while the run's
        // remaining work (attention mass, result) would go on: this waits as that work would.
        for (let i = 0; i < 500 && stopRequested() === undefined; i++) {
          await new Promise((r) => setTimeout(r, 10));
        }
        assert.equal(stopRequested(), "SIGTERM", "the bench's listener, still installed, saw it");
      }
      return { ...await fakeRunOne(spec, opts), losses: outcome.losses };
    };
    const exits: number[] = [];
    const c = capture();
    const code = await main(
      ["--profile", profile, "--data-dir", DATA, "--no-tables", "--out", out],
      { ...c.opts, runOne, exit: (n) => exits.push(n) },
    );
    const err = c.err.join("\n");
    assert.equal(code, 143, err);
    assert.deepEqual(exits, [], "the signal did not stop the process at once");
    assert.match(err, /SIGTERM: the run in progress has trained its last step/);
    assert.match(err, /Stopped by SIGTERM: 1 run done, 0 skipped, 0 failed, 1 not started/);
    const results = [...readAll(out).keys()].filter((n) => n.endsWith(".json"));
    assert.equal(results.length, 1, `the first run's result is written: ${results}`);
    const result = JSON.parse(Deno.readTextFileSync(join(out, results[0]!)));
    assert.equal(result.losses.length, 4, "the result of the whole run");
    assert.deepEqual(
      [...Deno.readDirSync(out)].filter((e) => e.isDirectory).map((e) => e.name),
      [],
      "its checkpoints were removed with the result written; the second run never started",
    );
    assert.equal(stopRequested(), undefined, "the request ended with the grid");
  } finally {
    Deno.removeSignalListener("SIGTERM", guard);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main(): a stop request while the last run finishes writes no tables and exits with the signal's code", () =>
  inTempDir(async (dir) => {
    const profile = await tmpProfile(dir, {
      seeds: [0],
      benchmarks: ["glue"],
      tasks: { glue: ["rte"] },
      methods: [{ name: "mtl" }],
    });
    const out = join(dir, "out");
    const c = capture();
    // The request comes during the last run, which (as a loop that ended on that step) finishes.
    const code = await main(["--profile", profile, "--data-dir", DATA, "--out", out], {
      ...c.opts,
      runOne: (spec, opts) => (requestStop("SIGTERM"), fakeRunOne(spec, opts)),
    });
    const err = c.err.join("\n");
    assert.equal(code, 143, err);
    assert.match(err, /Stopped by SIGTERM: 1 run done, 0 skipped, 0 failed, 0 not started/);
    assert.match(err, /Every run had finished; no tables or gate were written: .*--resume/);
    assert.equal(existsSync(join(out, "tables")), false, "no tables");
    assert.equal(stopRequested(), undefined, "the request ended with the grid");
  }));

Deno.test("main(): a run that fails for a full disk or the file size limit stops the grid, exits 1 and says what to do", () =>
  inTempDir(async (dir) => {
    const profile = await tmpProfile(dir, {
      seeds: [0, 1],
      benchmarks: ["glue"],
      tasks: { glue: ["rte"] },
      methods: [{ name: "mtl" }],
    });
    const cases: { error: (out: string) => Error; stopped: RegExp; advice: RegExp }[] = [
      {
        error: (out) =>
          Object.assign(
            new Error(`No space left on device (os error 28): write '${out}/x/weights.bin'`),
            { code: "ENOSPC" },
          ),
        stopped:
          /Stopped by no space left on device: 0 runs done, 0 skipped, 0 failed, 1 not started; run \w+ No space left on device \(os error 28\): write '.*weights\.bin'/,
        advice: /To continue: free space on that disk, then deno task bench --resume/,
      },
      {
        // As Deno gives it once SIGXFSZ is listened to (no code on the error).
        error: (out) => new Error(`File too large (os error 27): writefile '${out}/x.json'`),
        stopped:
          /Stopped by file size limit exceeded: 0 runs done, 0 skipped, 0 failed, 1 not started; run \w+ File too large/,
        advice:
          /To continue: raise the file size limit \(ulimit -f\), then deno task bench --resume/,
      },
    ];
    for (const [i, { error, stopped, advice }] of cases.entries()) {
      const out = join(dir, `out${i}`);
      const c = capture();
      let runs = 0;
      const code = await main(["--profile", profile, "--data-dir", DATA, "--out", out], {
        ...c.opts,
        runOne: () => {
          runs++;
          return Promise.reject(error(out));
        },
      });
      const err = c.err.join("\n");
      assert.equal(code, 1, err);
      assert.equal(runs, 1, "the second run did not start");
      assert.match(err, stopped);
      assert.match(err, advice);
      assert.equal(existsSync(join(out, "tables")), false, "no tables");
    }
  }));

Deno.test("claimLines(): lines for runs other processes train, taken over or done; the waiting line once a minute", async () => {
  const dir = await Deno.makeTempDir();
  const { grid } = await memoryGrid(dir, { seeds: [0, 1] }).finally(() =>
    Deno.remove(dir, { recursive: true })
  );
  const [a, b] = [grid[0]!, grid[1]!];
  const holder = { host: "node7", pid: 42, started: "2026-01-01T00:00:00Z", token: "t" };
  const line = claimLines();
  assert.match(
    line({ kind: "claimed", spec: a, index: 0, holder })!,
    new RegExp(`^run ${a.id} is being trained by node7 pid 42 \\(.*\\.lock\\); this grid waits`),
  );
  assert.equal(
    line({ kind: "takeover", spec: a, index: 0, previous: holder, why: "pid 42 is gone" }),
    `run ${a.id}: taking over the stale claim of node7 pid 42: pid 42 is gone`,
  );
  assert.equal(
    line({ kind: "skip", spec: a, index: 0, doneBy: holder }),
    `run ${a.id} done by node7 pid 42`,
  );
  assert.equal(
    line({ kind: "skip", spec: a, index: 0, doneBy: null }),
    `run ${a.id} done by another process`,
  );
  assert.equal(line({ kind: "skip", spec: a, index: 0 }), undefined, "a plain resume skip");
  const waiting = {
    kind: "waiting" as const,
    spec: a,
    index: 0,
    runs: [{ spec: a, index: 0, holder }, { spec: b, index: 1, holder: null }],
  };
  assert.equal(
    line(waiting, 1_000),
    `waiting for 2 run(s) that other processes train: ${a.id} (node7 pid 42), ${b.id} (another process)`,
  );
  assert.equal(line(waiting, 30_000), undefined, "not again within a minute");
  assert.ok(line(waiting, 61_000));
});

Deno.test("main() --checkpoint-minutes: validated in one line, given to the runs' train() for the grid only", () =>
  inTempDir(async (dir) => {
    const profile = await tmpProfile(dir, {
      seeds: [0],
      benchmarks: ["glue"],
      methods: [{ name: "mtl" }],
    });
    const base = ["--profile", profile, "--data-dir", DATA, "--no-tables"];
    const { calls, runOne } = countingRunOne();
    // The checkpoint minutes each run was given.
    const seen = () => calls.map((call) => call.opts.checkpointMinutes);
    // ("" is refused by parseFlags as every empty value: the empty-value test above.)
    // Hexadecimal and binary (which Number() reads) too; "+5" and "3e1" are decimal, accepted below.
    for (const bad of ["abc", "30min", "0x1e", "0b1", "Infinity", "1_000"]) {
      const c = capture();
      assert.equal(
        await main([...base, "--out", join(dir, "bad"), `--checkpoint-minutes=${bad}`], {
          ...c.opts,
          runOne,
        }),
        2,
        bad,
      );
      assert.deepEqual(c.err, [
        `--checkpoint-minutes must be a number of minutes ≥ 0 (0: off; e.g. 30), got ` +
        `${JSON.stringify(bad)}; deno task bench --help lists the flags`,
      ]);
    }
    // A negative value reads as a flag; its = spelling reaches the check.
    const neg = capture();
    assert.equal(await main([...base, "--checkpoint-minutes=-1"], { ...neg.opts, runOne }), 2);
    assert.match(neg.err.join("\n"), /^--checkpoint-minutes must be .*got "-1"/);
    assert.deepEqual(seen(), [], "refused before any run");
    for (
      const [args, want] of [
        [[], DEFAULT_CHECKPOINT_MINUTES],
        [["--checkpoint-minutes", "5"], 5],
        [
          ["--checkpoint-minutes", "0"],
          0,
        ],
        [["--checkpoint-minutes", "0.5"], 0.5],
        [["--checkpoint-minutes", "3e1"], 30],
        [
          ["--checkpoint-minutes=+5"],
          5,
        ],
      ] as const
    ) {
      calls.length = 0;
      const c = capture();
      const out = join(dir, `out-${want}`);
      assert.equal(await main([...base, "--out", out, ...args], { ...c.opts, runOne }), 0);
      assert.deepEqual(seen(), [want], String(args));
      assert.doesNotMatch(c.err.join("\n"), /changes nothing/);
    }
    // A profile whose runs write no checkpoints: the flag is said to change nothing.
    const none = await tmpProfile(dir, {
      seeds: [0],
      benchmarks: ["glue"],
      methods: [{ name: "mtl" }],
      train: { ...TINY.train, checkpointEvery: 0 },
    });
    const args = (out: string, flag: string) => [
      ...["--profile", none, "--data-dir", DATA, "--out", join(dir, out)],
      ...["--checkpoint-minutes", "5", flag],
    ];
    const c = capture();
    assert.equal(await main(args("n", "--no-tables"), { ...c.opts, runOne }), 0);
    assert.ok(
      c.err.includes(
        "note: --checkpoint-minutes 5 changes nothing here: no run writes checkpoints " +
          "(train.checkpointEvery 0)",
      ),
      c.err.join("\n"),
    );
    // A dry run says it too (it shows what the command would do), and trains nothing.
    const dry = capture();
    const counted = countingRunOne();
    assert.equal(await main(args("d", "--dry-run"), { ...dry.opts, runOne: counted.runOne }), 0);
    assert.deepEqual(counted.calls, []);
    assert.ok(
      dry.err.some((l) => l.startsWith("note: --checkpoint-minutes 5 changes nothing here")),
      dry.err.join("\n"),
    );
  }));

Deno.test("main() --resume: each resumed run says in one line the checkpoint step it resumes from, an older kept one when the newest does not load; a fresh run says none", () =>
  inTempDir(async (dir) => {
    const profile = await tmpProfile(dir, {
      ...CHECKPOINTING_GRID,
      train: { ...CHECKPOINTING_GRID.train, steps: 6 },
    });
    const base = ["--profile", profile, "--data-dir", DATA, "--no-tables"];
    const out = join(dir, "out");
    // Both runs killed after step 5: their checkpoints of steps 2 and 4 are kept.
    const k = capture();
    assert.equal(
      await main([...base, "--out", out], {
        ...k.opts,
        runOne: trainingRunOne(undefined, { steps: 0 }, 5),
      }),
      1,
    );
    assert.ok(!k.err.some((l) => l.includes("resumed")), k.err.join("\n"));
    const work = [...Deno.readDirSync(out)].filter((e) => e.isDirectory).map((e) => e.name).sort();
    assert.equal(work.length, 2, `${work}`);
    const idOf = (seed: number) => work.find((n) => n.includes(`--s${seed}--`))!.split("--").pop();
    // Seed 1's newest checkpoint does not load (its weights cut short): it resumes from step 2.
    const s1 = work.find((n) => n.includes("--s1--"))!;
    const ck = join(out, s1, "checkpoints", "step-00000004");
    const weights = [...Deno.readDirSync(ck)].find((e) => e.name.startsWith("variables"))!.name;
    Deno.writeTextFileSync(join(ck, weights), "cut");
    const r = capture();
    const log = { steps: 0 };
    assert.equal(
      await main([...base, "--out", out, "--resume"], {
        ...r.opts,
        runOne: trainingRunOne(undefined, log),
      }),
      0,
      r.err.join("\n"),
    );
    assert.equal(log.steps, 2 + 4, "seed 0 trained steps 5-6, seed 1 steps 3-6");
    assert.deepEqual(r.err.filter((l) => l.includes("resumed")), [
      `run ${idOf(0)} (glue/mtl/s0): resumed from its checkpoint of step 4 of 6`,
      `run ${idOf(1)} (glue/mtl/s1): resumed from its checkpoint of step 2 of 6`,
    ]);
    // A fresh run under --resume says nothing of the kind.
    const f = capture();
    assert.equal(
      await main([...base, "--out", join(dir, "fresh"), "--resume"], {
        ...f.opts,
        runOne: trainingRunOne(),
      }),
      0,
    );
    assert.ok(!f.err.some((l) => l.includes("resumed")), f.err.join("\n"));
  }));

Deno.test("progressReporter(): a resumed run's line is written with or without a terminal", async () => {
  const dir = await Deno.makeTempDir();
  const [spec] = expandGrid(await loadProfile(await tmpProfile(dir)), { dataDir: DATA });
  await Deno.remove(dir, { recursive: true });
  for (const tty of [false, true]) {
    const { chunks, stream } = recordingStream(tty, 200);
    const reporter = progressReporter(1, tty, stream);
    reporter.onEvent({ kind: "start", spec: spec!, index: 0 });
    reporter.onEvent({ kind: "resumed", spec: spec!, index: 0, step: 2 });
    reporter.stop();
    const text = chunks.join("");
    const want = `run ${spec!.id} (${
      barName(spec!).trim()
    }): resumed from its checkpoint of step 2 of ${spec!.train.steps}\n`;
    assert.ok(text.includes(want), `tty ${tty}: ${JSON.stringify(text)}`);
    assert.equal(text.split("resumed from").length, 2, `tty ${tty}: once`);
  }
});

Deno.test("main() --checkpoint-minutes: a run killed between scheduled checkpoints resumes from the timed one, bit-identically, same run id", () =>
  inTempDir(async (dir) => {
    // checkpointEvery 100 > steps: before the last step only the wall clock saves checkpoints.
    const profile = await tmpProfile(dir, {
      seeds: [0],
      benchmarks: ["glue"],
      tasks: { glue: ["rte"] },
      methods: [{ name: "mtl" }],
      train: { ...TINY.train, checkpointEvery: 100 },
    });
    const base = ["--profile", profile, "--data-dir", DATA, "--no-tables"];
    const ref = join(dir, "ref");
    assert.equal(
      await main([...base, "--out", ref], { ...capture().opts, runOne: trainingRunOne() }),
      0,
    );
    // The trainer's clock is scripted (one minute per step), so no real time decides: every
    // 2 minutes is a checkpoint after step 2 only (step 3 is a minute after it); the kill after
    // step 4 comes before that step's, so the run's newest checkpoint is step 2's.
    const out = join(dir, "out");
    const k = capture();
    assert.equal(
      await main([...base, "--out", out, "--checkpoint-minutes", "2"], {
        ...k.opts,
        runOne: trainingRunOne(undefined, { steps: 0 }, 4, 1),
      }),
      1,
    );
    assert.match(k.err.join("\n"), /FAILED \w+: simulated kill/);
    const log = { steps: 0 };
    const r = capture();
    assert.equal(
      await main([...base, "--out", out, "--resume"], {
        ...r.opts,
        runOne: trainingRunOne(undefined, log),
      }),
      0,
      r.err.join("\n"),
    );
    assert.equal(log.steps, 2, "resumed after step 2: steps 3 and 4 trained");
    const names = [...readAll(ref).keys()];
    assert.deepEqual([...readAll(out).keys()].sort(), names.sort(), "the same run id");
    for (const name of names) {
      const a = JSON.parse(Deno.readTextFileSync(join(ref, name)));
      const b = JSON.parse(Deno.readTextFileSync(join(out, name)));
      assert.equal(b.losses.length, 4);
      assert.deepEqual(b.losses, a.losses, name);
    }
    // Without the flag (default 30 minutes), the same kill (4 minutes in) leaves nothing to
    // resume from.
    const out2 = join(dir, "out2");
    assert.equal(
      await main([...base, "--out", out2], {
        ...capture().opts,
        runOne: trainingRunOne(undefined, { steps: 0 }, 4, 1),
      }),
      1,
    );
    const log2 = { steps: 0 };
    assert.equal(
      await main([...base, "--out", out2, "--resume"], {
        ...capture().opts,
        runOne: trainingRunOne(undefined, log2),
      }),
      0,
    );
    assert.equal(log2.steps, 4, "no timed checkpoint within 30 minutes: from step 0");
  }));

Deno.test("progressInfo(): each progress phase has its own bar label", () => {
  assert.equal(progressInfo({ phase: "train", step: 2, totalSteps: 4 }), "train");
  assert.equal(
    progressInfo({ phase: "train", step: 2, totalSteps: 4, loss: 1.23456 }),
    "loss 1.2346",
  );
  assert.equal(progressInfo({ phase: "eval", step: 2, totalSteps: 4 }), "eval");
  assert.equal(progressInfo({ phase: "resume", step: 2, totalSteps: 4 }), "resumed");
  // An untyped caller's unknown phase is drawn under its own name, not as another phase.
  const odd = { phase: "warmup", step: 1, totalSteps: 4 } as unknown as RunProgress;
  assert.equal(progressInfo(odd), "warmup");
});

Deno.test("progressReporter().log writes runGrid's own lines above the bars, once, with or without a terminal", async () => {
  const dir = await Deno.makeTempDir();
  const [spec] = expandGrid(await loadProfile(await tmpProfile(dir)), { dataDir: DATA });
  await Deno.remove(dir, { recursive: true });
  for (const tty of [false, true]) {
    const { chunks, stream } = recordingStream(tty, 200);
    const reporter = progressReporter(1, tty, stream);
    reporter.onEvent({ kind: "start", spec: spec!, index: 0 });
    reporter.log(`run ${spec!.id}: its claim was taken over by another process; leaving it`);
    reporter.stop();
    const text = chunks.join("");
    const want = `run ${spec!.id}: its claim was taken over by another process; leaving it\n`;
    assert.ok(text.includes(want), `tty ${tty}: ${JSON.stringify(text)}`);
    assert.equal(text.split("leaving it").length, 2, `tty ${tty}: once`);
    assert.ok(text.indexOf("leaving it") < text.lastIndexOf("runs"), `tty ${tty}: before the bars`);
  }
});

/** `fakeRunOne`, whose result's best evaluation of its first task has an undefined `pearson`. */
const undefinedPearsonRunOne: RunOneFn = async (spec, opts) => {
  const result = await fakeRunOne(spec, opts);
  const [task, best] = Object.entries(result.best)[0]!;
  const metrics = { ...best.metrics, pearson: NaN };
  return { ...result, best: { ...result.best, [task]: { ...best, metrics } } };
};

Deno.test("main(): runs whose best evaluations have undefined metrics are named once the grid ends, grouped by metric", () =>
  inTinyProfileDir(async ({ profile, out }) => {
    const args = ["--profile", profile, "--data-dir", DATA, "--methods", "mtl", "--no-tables"];
    const c = capture();
    assert.equal(
      await main([...args, "--out", out], { ...c.opts, runOne: undefinedPearsonRunOne }),
      0,
      c.err.join("\n"),
    );
    const notes = c.err.filter((l) => l.includes("undefined metrics"));
    // 2 benchmarks × 2 seeds: one note per set of metrics (GLUE's first task, SuperGLUE's).
    assert.equal(notes.length, 2, c.err.join("\n"));
    for (const n of notes) {
      assert.match(
        n,
        /^note: undefined metrics \(constant predictions or gold\), each counted as 0 in its group score: \w+ pearson, in 2 runs: [0-9a-f]{12}, [0-9a-f]{12}$/,
      );
    }
    // After the summary line.
    const summary = c.err.findIndex((l) => /^4 runs done/.test(l));
    assert.ok(summary >= 0 && c.err.indexOf(notes[0]!) > summary, c.err.join("\n"));
    // Nothing is said of runs whose metrics are all numbers.
    const plain = capture();
    assert.equal(
      await main([...args, "--out", `${out}2`], { ...plain.opts, runOne: fakeRunOne }),
      0,
    );
    assert.ok(!plain.err.some((l) => l.includes("undefined metrics")), plain.err.join("\n"));
  }));

Deno.test("undefinedMetricsNotes(): one note per set of metrics, its first four runs and the count", () => {
  const runs = ["a", "b", "c", "d", "e"].map((id) => ({ id, what: "stsb pearson_corrcoef" }));
  assert.deepEqual(undefinedMetricsNotes([]), []);
  assert.deepEqual(undefinedMetricsNotes([...runs, { id: "f", what: "cb x" }]), [
    "note: undefined metrics (constant predictions or gold), each counted as 0 in its group " +
    "score: stsb pearson_corrcoef, in 5 runs: a, b, c, d, … (5)",
    "note: undefined metrics (constant predictions or gold), each counted as 0 in its group " +
    "score: cb x, in 1 run: f",
  ]);
});

Deno.test("invalidPredictionsNote(): per task, the runs' invalid predictions at their best steps summed; none without any", () => {
  const run = (best: Record<string, { count: number; of: number } | undefined>) =>
    ({
      best: Object.fromEntries(
        Object.entries(best).map((
          [t, invalid],
        ) => [t, { step: 1, metrics: {}, groupScore: 0, ...(invalid ? { invalid } : {}) }]),
      ),
    }) as unknown as RunResult;
  assert.equal(invalidPredictionsNote([]), undefined);
  // Recorded but none invalid, or not recorded (ReCoRD, older results): no note.
  assert.equal(
    invalidPredictionsNote([run({ rte: { count: 0, of: 16 }, record: undefined })]),
    undefined,
  );
  assert.equal(
    invalidPredictionsNote([
      run({ rte: { count: 16, of: 16 }, cb: { count: 1, of: 16 } }),
      run({ rte: { count: 15, of: 16 }, cb: { count: 0, of: 16 }, record: undefined }),
      run({ cola: { count: 2, of: 3 } }),
    ]),
    "note: predictions that are no answer (no label word; for STS-B no number, for WSC no " +
      "word), scored as wrong as T5 scores them, at each task's best step: rte 96.9% of 32 " +
      "(2 runs), cb 3.13% of 32 (2 runs), cola 66.7% of 3 (1 run)",
  );
});

/**
 * A `runOne` under which another process takes over the claim of the run whose id is `id` while
 * it trains (writes its own claim file), and writes that run's result itself: runGrid leaves the
 * run to it and counts it as done by it.
 */
function takenOverRunOne(out: string, id: () => string | undefined): RunOneFn {
  return async (spec, opts) => {
    const result = await fakeRunOne(spec, opts);
    if (spec.id !== id()) return result;
    const file = join(out, runFileName(spec));
    await Deno.writeTextFile(runLockFile(file), "{}");
    await Deno.writeTextFile(file, JSON.stringify({ ...result, wallSeconds: 99 }, null, 2));
    return result;
  };
}

Deno.test("main(): a run whose claim another process took over is said in bench's own stream (not on console.error) and in the summary, counted once", () =>
  inTinyProfileDir(async ({ profile, out }) => {
    const args = ["--profile", profile, "--data-dir", DATA, "--out", out, "--methods", "mtl"];
    let first: string | undefined;
    const c = capture();
    const runOne = takenOverRunOne(out, () => first);
    const code = await main([...args, "--no-tables"], {
      ...c.opts,
      runOne: (spec, opts) => {
        first ??= spec.id;
        return runOne(spec, opts);
      },
    });
    assert.equal(code, 0, c.err.join("\n"));
    const err = c.err.join("\n");
    assert.match(
      err,
      new RegExp(
        `^run ${first}: its claim was taken over by another process while this process`,
        "m",
      ),
    );
    // Counted once, as done by the other process (skipped), and said so.
    assert.match(
      err,
      /^3 runs done, 1 skipped \(1 done by other processes\), 0 failed; 1 run left to the process that took its claim over while this one was paused \(counted above: 1 done by it\)$/m,
    );
  }));

Deno.test("failedLines(): runs that failed alike share a line, in order of first failure", () => {
  const f = (id: string, message: string) => ({ spec: { id }, error: new Error(message) });
  assert.deepEqual(failedLines([]), []);
  assert.deepEqual(failedLines([f("a", "x: broke")]), ["  FAILED a: x: broke"]);
  assert.deepEqual(
    failedLines([f("a", "data.tsv:5: bad"), f("b", "oom"), f("c", "data.tsv:5: bad")]),
    ["  FAILED a, c (2 runs): data.tsv:5: bad", "  FAILED b: oom"],
  );
  // Messages that differ only in part are different causes: one line each.
  assert.deepEqual(failedLines([f("a", "step 3: NaN"), f("b", "step 4: NaN")]), [
    "  FAILED a: step 3: NaN",
    "  FAILED b: step 4: NaN",
  ]);
});

Deno.test("leftToOthersNote(): a run left to the process that took its claim over is said where it was counted, never counted again", () => {
  const spec = (id: string) => ({ id }) as RunSpec;
  const [a, b, c, d] = ["a", "b", "c", "d"].map(spec) as [RunSpec, RunSpec, RunSpec, RunSpec];
  const base = { done: 0, skipped: 0, failed: [] };
  assert.equal(leftToOthersNote(base), "");
  assert.equal(leftToOthersNote({ ...base, leftToOthers: [] }), "");
  const head = "left to the process that took";
  // Done by it (skipped), done here after all, failed here; a run taken over twice is one run.
  assert.equal(
    leftToOthersNote({
      done: 1,
      skipped: 1,
      doneElsewhere: [{ spec: a }],
      failed: [{ spec: c, error: new Error("x") }],
      leftToOthers: [{ spec: a }, { spec: b }, { spec: c }, { spec: b }],
    }),
    `; 3 runs ${head} their claims over while this one was paused (counted above: 1 done by it, ` +
      "1 done here after all, 1 failed here)",
  );
  // A stopped grid: the run it stopped is said; the others were done here or not started.
  assert.equal(
    leftToOthersNote({
      ...base,
      leftToOthers: [{ spec: a }, { spec: d }],
      interrupted: { reason: "SIGINT", spec: d, notStarted: 1 },
    }),
    `; 2 runs ${head} their claims over while this one was paused (counted above: 1 done here ` +
      "or not started, 1 stopped here)",
  );
});

Deno.test("main(): the tasks skipMissingTasks leaves out are one note, run or --dry-run", () =>
  inTempDir(async (dir) => {
    const profile = await tmpProfile(dir, EVERY_GLUE_TASK);
    for (const extra of [[], ["--dry-run", "--backend", "cpu"]]) {
      const c = capture();
      const args = ["--profile", profile, "--data-dir", DATA, "--out", join(dir, "out")];
      const code = await main([...args, "--no-tables", ...extra], {
        ...c.opts,
        runOne: fakeRunOne,
      });
      assert.equal(code, 0, c.err.join("\n"));
      const notes = c.err.filter((l) => l.includes("leaving out"));
      assert.deepEqual(notes, [
        `note: Profile "tiny-grid": leaving out glue tasks qqp, mnli, qnli (skipMissingTasks; no ` +
        `train and validation files under "${DATA}"): its glue averages cover the other 5 tasks ` +
        "only",
      ], `${extra}`);
    }
  }));

Deno.test("main() routes the grid's own notes above the bars when it draws them, else to error", () =>
  inTinyProfileDir(async ({ profile, out }) => {
    const args = ["--profile", profile, "--data-dir", DATA, "--no-tables", "--methods", "mtl"];
    const run = [...args, "--out", out];
    assert.equal(await main(run, { ...capture().opts, runOne: fakeRunOne }), 0);
    // The fake's results record commit "fake": --resume keeps them and notes the other code.
    const note = /note: 4 finished result\(s\) in .* were trained at other code \(fake/;
    const plain = capture();
    assert.equal(await main([...run, "--resume"], { ...plain.opts, runOne: fakeRunOne }), 0);
    assert.match(plain.err.join("\n"), note, "without bars: through error");
    // With bars (progress not turned off): on the bars' stream (stderr), not through error,
    // which would draw it across them.
    const barred = capture();
    const { progress: _, ...withBars } = barred.opts;
    const written: string[] = [];
    const write = process.stderr.write;
    process.stderr.write = ((chunk: string | Uint8Array) => {
      written.push(typeof chunk === "string" ? chunk : new TextDecoder().decode(chunk));
      return true;
    }) as typeof process.stderr.write;
    try {
      assert.equal(await main([...run, "--resume"], { ...withBars, runOne: fakeRunOne }), 0);
    } finally {
      process.stderr.write = write;
    }
    assert.doesNotMatch(barred.err.join("\n"), note);
    assert.match(written.join(""), note, "above the bars");
  }));

Deno.test("missingDiagnosticTests(): a predictTest run of SuperGLUE RTE whose AX-b / AX-g test files are missing is named before training (and by a dry run); none without predictTest or with the files", () =>
  inTempDir(async (dir) => {
    const data = join(dir, "data");
    await Deno.mkdir(join(data, "super_glue"), { recursive: true });
    for (const t of ["CB", "RTE"]) {
      await Deno.symlink(join(DATA, "super_glue", t), join(data, "super_glue", t));
    }
    const profile = await tmpProfile(dir, {
      seeds: [0],
      benchmarks: ["super_glue"],
      tasks: { super_glue: ["cb", "rte_sg"] },
      methods: [{ name: "mtl" }, { name: "hyperprompt_global", config: { length: 4 } }],
      train: { ...TINY.train, predictTest: true },
    });
    const grid = expandGrid(await loadProfile(profile), { dataDir: data });
    const ids = grid.map((s) => s.id).join(", ");
    const line = (name: string, file: string, id: string) =>
      `no ${name} test predictions: ${join(data, "super_glue", file)} not found, so these ` +
      `runs will predict no ${name}, whose predictions the leaderboard zip needs and only a run ` +
      `writes; get the file first (deno task download --tasks super_glue/${id}) if you will ` +
      `submit (runs ${ids})`;
    assert.deepEqual(missingDiagnosticTests(grid, data), [
      line("AX-b", "AX-b/AX-b.jsonl", "axb"),
      line("AX-g", "AX-g/AX-g.jsonl", "axg"),
    ]);
    // Without predictTest nothing is predicted, so nothing is missing.
    const plain = grid.map((s) => ({ ...s, train: { ...s.train, predictTest: false } }));
    assert.deepEqual(missingDiagnosticTests(plain, data), []);
    // With AX-b's file there, AX-g's alone.
    await Deno.mkdir(join(data, "super_glue/AX-b"));
    await Deno.writeTextFile(join(data, "super_glue/AX-b/AX-b.jsonl"), "");
    assert.deepEqual(missingDiagnosticTests(grid, data), [line("AX-g", "AX-g/AX-g.jsonl", "axg")]);
    // A dry run says it too.
    const c = capture();
    assert.equal(await main(["--profile", profile, "--data-dir", data, "--dry-run"], c.opts), 0);
    assert.ok(
      c.err.includes(`note: ${line("AX-g", "AX-g/AX-g.jsonl", "axg")}`),
      c.err.join("\n"),
    );
  }));
