import assert from "node:assert/strict";
import { basename, join } from "node:path";
import { sharedPath } from "../model/shared_dir.ts";
import { BENCHMARK_TASKS } from "../tasks/registry.ts";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { BackendFatalError, explainBackendFailure } from "../model/backend.ts";
import { countingRunOne, fakeRunOne } from "./_fake_run_one.ts";
import { fakeRuns } from "./results_testing.ts";
import {
  defaultTaskCatalog,
  diskLimitOf,
  expandGrid,
  type ExpandOptions,
  FILE_CATALOG,
  inspectFinished,
  missingProfileTasks,
  NO_SPACE_REASON,
  parseShard,
  readFinished,
  runGrid,
  runLockFile,
  runWorkDir,
  shardGrid,
  unfinishedCheckpoints,
  writeFileAtomic,
} from "./runner.ts";
import {
  makeHeldTempDir,
  pathExists,
  writeFileAtomic as sharedWriteFileAtomic,
} from "../model/fs.ts";
import {
  bareTaskName,
  DEFAULT_TRAIN,
  runFileName,
  runId,
  type RunOneFn,
  type RunProgress,
  type RunSpec,
  trainedTasks,
  validateProfile,
  weightsDir,
} from "./spec.ts";
import { toyTrain } from "./trainer_testing.ts";
import { bestPerTask, officialAverages } from "./evaluator.ts";
import { inTempDir } from "../model/fs_testing.ts";
import { TrainingInterruptedError } from "./trainer.ts";
import { resumeRecord, type RunProvenance } from "./provenance.ts";
import { checkpointDirName, listCheckpoints } from "./checkpointing.ts";
import { ClaimLostError, claimRun, type ClaimStopOption, thisHost } from "./run_claim.ts";
import { checkpointFiles } from "../model/pretrained.ts";
import { fileDigest } from "../model/checkpoint.ts";

const DATA = sharedPath("data");

function profile(extra: Record<string, unknown> = {}) {
  return validateProfile({
    name: "t",
    seeds: [0, 1],
    models: ["tiny-v1_1"],
    benchmarks: ["glue", "super_glue"],
    tasks: { glue: ["rte", "cola"], super_glue: ["cb"] },
    methods: [{ name: "mtl" }, { name: "hyperprompt_global", config: { length: 4 } }],
    train: { steps: 4, evalEvery: 2, batchSize: 2 },
    ...extra,
  }, { file: "t.json" });
}

/** A checkpoint folder of `step` in a run's work folder, as `listCheckpoints` finds one. */
async function fakeCheckpoint(work: string, step: number): Promise<string> {
  const dir = join(work, "checkpoints", checkpointDirName(step));
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(join(dir, "state.json"), "{}");
  return dir;
}

Deno.test("expandGrid() expands models x backbones x benchmarks x methods x seeds with stable ids", async () => {
  const catalog = await defaultTaskCatalog();
  const a = expandGrid(profile(), { dataDir: DATA, catalog });
  assert.equal(a.length, 1 * 2 * 2 * 2);
  const b = expandGrid(profile(), { dataDir: DATA, catalog });
  assert.deepEqual(a.map((s) => s.id), b.map((s) => s.id));
  assert.equal(new Set(a.map((s) => s.id)).size, a.length);
  assert.deepEqual(a[0]?.tasks, ["rte", "cola"]);
  assert.deepEqual(a.find((s) => s.benchmark === "super_glue")?.tasks, ["cb"]);
  const other = expandGrid(profile({ train: { steps: 5, evalEvery: 2, batchSize: 2 } }), {
    dataDir: DATA,
    catalog,
  });
  assert.notEqual(other[0]?.id, a[0]?.id);
  const cpu = expandGrid(profile(), { dataDir: DATA, catalog, backend: "cpu" });
  assert.equal(cpu[0]?.backend, "cpu");
});

Deno.test("expandGrid() repeats every cell per backbone; the pretrain overrides a run reads enter its id, others not", async () => {
  const catalog = await defaultTaskCatalog();
  const one = expandGrid(profile(), { dataDir: DATA, catalog });
  const two = expandGrid(profile({ backbone: ["pretrained", "random"] }), {
    dataDir: DATA,
    catalog,
  });
  assert.equal(two.length, 2 * one.length);
  assert.deepEqual(two.map((s) => s.backbone), [
    ...one.map(() => "pretrained"),
    ...one.map(() => "random"),
  ]);
  assert.equal(new Set(two.map((s) => s.id)).size, two.length);
  // The random half is the single-backbone grid, ids included: adding a backbone to a
  // profile keeps the ids (and baselines) of the runs it already had.
  assert.deepEqual(two.slice(one.length).map((s) => s.id), one.map((s) => s.id));
  // A single-backbone spec has exactly the fields it had before backbones and pretrain existed.
  const s0 = one[0]!;
  assert.equal(
    s0.id,
    runId({
      profile: "t",
      model: "tiny-v1_1",
      backbone: "random",
      benchmark: "glue",
      tasks: ["rte", "cola"],
      method: { name: "mtl", label: "mtl", config: {} },
      seed: 0,
      train: { ...DEFAULT_TRAIN, steps: 4, evalEvery: 2, batchSize: 2 },
      backend: "auto",
    }),
  );
  assert.equal("pretrain" in s0, false);
  const pre = expandGrid(profile({ backbone: "pretrained", pretrain: { steps: 7 } }), {
    dataDir: DATA,
    catalog,
  });
  assert.deepEqual(pre[0]?.pretrain, { steps: 7 });
  const pre8 = expandGrid(profile({ backbone: "pretrained", pretrain: { steps: 8 } }), {
    dataDir: DATA,
    catalog,
  });
  assert.notEqual(pre[0]?.id, pre8[0]?.id);
  // A run carries only the pretraining settings it reads: a random init, vocabSize alone (its
  // task tokenizer's size); a published preset, none. So its id (its --resume, its baseline)
  // does not follow pretraining settings it never uses.
  const mixed = (pretrain: Record<string, unknown>) =>
    expandGrid(
      profile({
        models: ["tiny-v1_1", "t5-v1_1-small"],
        backbone: ["pretrained", "random"],
        benchmarks: ["glue"],
        methods: [{ name: "mtl" }],
        seeds: [0],
        pretrain,
      }),
      { dataDir: DATA, catalog },
    );
  const m7 = mixed({ steps: 7, vocabSize: 2048 });
  const m8 = mixed({ steps: 8, vocabSize: 2048 });
  assert.deepEqual(m7.map((s) => [s.model, s.backbone, s.pretrain]), [
    ["tiny-v1_1", "pretrained", { steps: 7, vocabSize: 2048 }],
    ["tiny-v1_1", "random", { vocabSize: 2048 }],
    ["t5-v1_1-small", "pretrained", undefined],
    ["t5-v1_1-small", "random", undefined],
  ]);
  assert.deepEqual(m7.map((s, i) => s.id === m8[i]!.id), [false, true, true, true]);
  assert.equal("pretrain" in m7[2]!, false);
  // Without vocabSize a random run carries none, and has the id of a profile without pretrain.
  const steps = mixed({ steps: 7 });
  assert.equal("pretrain" in steps[1]!, false);
  assert.equal(steps[1]!.id, mixed({})[1]!.id);
  assert.notEqual(runFileName(two[0]!), runFileName(two[one.length]!));
  assert.match(runFileName(two[0]!), /^t--tiny-v1_1--pretrained--glue--mtl--s0--/);
});

Deno.test("expandGrid() errors on unknown or missing tasks, or skips missing ones", async () => {
  const catalog = await defaultTaskCatalog();
  assert.throws(
    () => expandGrid(profile({ tasks: { glue: ["rtee"] } }), { dataDir: DATA, catalog }),
    /Profile "t": \$\.tasks\.glue\[0\] names unknown glue task "rtee"; known: cola/,
  );
  assert.throws(
    () => expandGrid(profile({ tasks: { glue: ["mnli"] } }), { dataDir: DATA, catalog }),
    /missing glue task files for mnli \(glue\/MNLI\/train\.tsv, glue\/MNLI\/dev_matched\.tsv, [^)]*\) under .*; download them \(deno task download\) or pass --data-dir$/,
  );
  assert.throws(
    () =>
      expandGrid(profile({ tasks: { glue: ["mnli"] } }), {
        dataDir: DATA,
        catalog,
        dataDirNamedBy: "HYPERPROMPT_DATA",
      }),
    /for mnli \([^)]*\) under .*; that folder was named by HYPERPROMPT_DATA: .* leave HYPERPROMPT_DATA out/,
  );
  const noTasks = { tasks: undefined, benchmarks: ["glue"] };
  // No task listed and some present: skipMissingTasks is named as the other way out.
  assert.throws(() => expandGrid(profile(noTasks), { dataDir: DATA, catalog }), {
    message: `Profile "t": missing glue task files for qqp, mnli, qnli (glue/QQP/train.tsv, ` +
      "glue/QQP/dev.tsv, glue/MNLI/train.tsv, glue/MNLI/dev_matched.tsv, " +
      "glue/MNLI/dev_mismatched.tsv, glue/QNLI/train.tsv, glue/QNLI/dev.tsv" +
      `) under "${DATA}"; download ` +
      `them (deno task download) or pass --data-dir, or set "skipMissingTasks": true in the ` +
      "profile to run the tasks present (partial averages)",
  });
  // Not where it would not help: a listed task missing, or no task of the benchmark present.
  assert.throws(
    () => expandGrid(profile({ tasks: { glue: ["rte", "mnli"] } }), { dataDir: DATA, catalog }),
    (e: Error) =>
      /for mnli \([^)]*\) under/.test(e.message) && !e.message.includes("skipMissingTasks"),
  );
  const empty = await Deno.makeTempDir();
  try {
    assert.throws(
      () => expandGrid(profile(noTasks), { dataDir: empty, catalog }),
      (e: Error) => /missing glue task files for/.test(e.message) && !/skipMiss/.test(e.message),
    );
    // Each absent file is named; a folder in a file's place is said to be one (h388).
    await Deno.mkdir(join(empty, "glue", "RTE", "dev.tsv"), { recursive: true });
    assert.throws(
      () => expandGrid(profile({ tasks: { glue: ["rte"] } }), { dataDir: empty, catalog }),
      (e: Error) =>
        e.message.includes(
          "missing glue task files for rte (glue/RTE/train.tsv, glue/RTE/dev.tsv: a folder, not " +
            "a file) under",
        ),
    );
  } finally {
    await Deno.remove(empty, { recursive: true });
  }
  const smoke = expandGrid(profile({ ...noTasks, skipMissingTasks: true }), {
    dataDir: DATA,
    catalog,
  });
  assert.deepEqual(smoke[0]?.tasks.map(bareTaskName).sort(), [
    "cola",
    "mrpc",
    "rte",
    "sst2",
    "stsb",
  ]);
  // The file-layout fallback catalog agrees with the tasks module.
  const fb = expandGrid(profile({ ...noTasks, skipMissingTasks: true }), {
    dataDir: DATA,
    catalog: FILE_CATALOG,
  });
  assert.deepEqual(fb[0]?.tasks.slice().sort(), smoke[0]?.tasks.slice().sort());
});

Deno.test("parseShard() and shardGrid() split the grid into disjoint, complete slices", async () => {
  assert.deepEqual(parseShard("2/3"), { index: 2, count: 3 });
  // The right form with numbers out of range: said so, with the range.
  assert.throws(() => parseShard("3/3"), {
    message: '--shard "3/3": i must be < n (0-based: the shards of 3 are 0/3 to 2/3)',
  });
  assert.throws(() => parseShard("5/2"), /--shard "5\/2": i must be < n .*0\/2 to 1\/2\)$/);
  assert.throws(() => parseShard("0/0"), {
    message: '--shard "0/0": n must be at least 1, e.g. 0/4',
  });
  assert.throws(() => parseShard("1"), /Cannot parse --shard "1"/);
  assert.deepEqual(parseShard("0/1"), { index: 0, count: 1 });
  assert.deepEqual(parseShard("10/20"), { index: 10, count: 20 });
  // One shard, one spelling: leading zeros, spaces, signs, exponents and other digits refused.
  for (const text of ["01/02", "0/02", "00/2", " 1/2", "1/2 ", "1 /2", "1/ 2", "+1/2", "1e0/2"]) {
    assert.throws(
      () => parseShard(text),
      {
        message: new RegExp(`^Cannot parse --shard "${text.replace("+", "\\+")}": .*plain decimal`),
      },
      JSON.stringify(text),
    );
  }
  assert.throws(() => parseShard("1/\u0662"), /Cannot parse --shard/); // an Arabic-Indic 2
  assert.throws(
    () => parseShard("1/99999999999999999999"),
    { message: `--shard "1/99999999999999999999": n must be at most ${Number.MAX_SAFE_INTEGER}` },
  );
  const grid = expandGrid(profile(), { dataDir: DATA, catalog: await defaultTaskCatalog() });
  const parts = [0, 1, 2].map((index) => shardGrid(grid, { index, count: 3 }));
  const ids = parts.flat().map((s) => s.id);
  assert.equal(ids.length, grid.length);
  assert.deepEqual([...ids].sort(), grid.map((s) => s.id).sort());
  assert.ok(parts.every((p) => p.length >= 2 && p.length <= 3), "round-robin balance");
  // Independent of the input order.
  assert.deepEqual(
    shardGrid([...grid].reverse(), { index: 1, count: 3 }).map((s) => s.id).sort(),
    parts[1]!.map((s) => s.id).sort(),
  );
});

Deno.test("runGrid() writes one JSON per run, resumes, and survives a failing run", () =>
  inTempDir(async (out) => {
    const grid = expandGrid(profile(), { dataDir: DATA, catalog: await defaultTaskCatalog() });
    const failing = grid[3]!.id;
    const failingEarly = grid[4]!.id;
    const runOne: typeof fakeRunOne = async (spec, opts) => {
      if (spec.id === failing) {
        // Fails after writing a checkpoint: its folder stays, for --resume.
        await Deno.mkdir(join(opts.outDir, "checkpoints", "step-00000001"), { recursive: true });
        await Deno.writeTextFile(
          join(opts.outDir, "checkpoints", "step-00000001", "state.json"),
          "{}",
        );
        throw new Error("boom");
      }
      if (spec.id === failingEarly) {
        // Fails before its first checkpoint (a corrupt data file): no empty folder is left.
        await Deno.mkdir(join(opts.outDir, "checkpoints"), { recursive: true });
        throw new Error("bad data");
      }
      return fakeRunOne(spec, opts);
    };
    const events: string[] = [];
    const s1 = await runGrid(grid, {
      outDir: out,
      dataDir: DATA,
      runOne,
      onEvent: (e) => events.push(e.kind),
    });
    assert.equal(s1.done, grid.length - 2);
    assert.equal(s1.failed.length, 2);
    assert.match(s1.failed[0]!.error.message, /boom/);
    assert.match(s1.failed[1]!.error.message, /bad data/);
    assert.ok(events.includes("progress"));
    const files = [...Deno.readDirSync(out)].filter((e) => e.name.endsWith(".json")).map((e) =>
      e.name
    );
    assert.equal(files.length, grid.length - 2);
    assert.ok(files.includes(runFileName(grid[0]!)));
    assert.equal([...Deno.readDirSync(out)].filter((e) => e.name.includes(".tmp")).length, 0);
    // Run folders are removed after success; a failed run's folder stays only with a checkpoint.
    assert.deepEqual([...Deno.readDirSync(out)].filter((e) => e.isDirectory).map((e) => e.name), [
      runFileName(grid[3]!).replace(/\.json$/, ""),
    ]);
    const s2 = await runGrid(grid, {
      outDir: out,
      dataDir: DATA,
      runOne: fakeRunOne,
      resume: true,
    });
    assert.equal(s2.skipped, grid.length - 2);
    assert.equal(s2.done, 2);
    const r = JSON.parse(await Deno.readTextFile(join(out, runFileName(grid[0]!))));
    assert.equal(r.spec.id, grid[0]!.id);
  }));

Deno.test("runGrid() with resume keeps results trained on another backend than theirs resolves to, and says so once", () =>
  inTempDir(async (out) => {
    const specs = expandGrid(profile(), { dataDir: DATA, catalog: await defaultTaskCatalog() })
      .slice(0, 3);
    // The fake records backend "fake"; the runs ask for "auto" (the profile's).
    await runGrid(specs, { outDir: out, dataDir: DATA, runOne: fakeRunOne, log: () => {} });
    const lines: string[] = [];
    const { runOne, ids } = countingRunOne();
    const resume = (resolved: string) =>
      runGrid(specs, {
        outDir: out,
        dataDir: DATA,
        runOne,
        resume: true,
        log: (line) => lines.push(line),
        code: () => ({ sha: "fake", dirty: false }),
        resolvedBackend: () => resolved,
      });
    assert.equal((await resume("fake")).skipped, 3);
    assert.deepEqual(lines, [], "the backend they ran on: no note");
    // "auto" now resolves to cpu (another machine, HYPERPROMPT_BACKEND): kept, and said. Before,
    // nothing was said (the run id records "auto" either way).
    assert.equal((await resume("cpu")).skipped, 3);
    assert.deepEqual(ids(), [], "kept");
    assert.deepEqual(lines, [
      `note: 3 finished result(s) in ${out} were trained on another backend than their runs ` +
      `resolve to here (fake (run id's backend "auto", now cpu)); they are kept (the run id ` +
      `records the requested backend, not the one it resolved to; their numbers differ in the ` +
      `last digits): rerun without --resume to retrain them`,
    ]);
  }));

Deno.test("runGrid() with resume keeps results trained at other code, and says so once per grid", () =>
  inTempDir(async (out) => {
    const grid = expandGrid(profile(), { dataDir: DATA, catalog: await defaultTaskCatalog() });
    const specs = grid.slice(0, 4);
    // Results of three commits: the fake's own ("fake", clean), one of "abc" dirty, one current.
    await runGrid(specs, { outDir: out, dataDir: DATA, runOne: fakeRunOne, log: () => {} });
    const rewrite = async (spec: RunSpec, gitSha: string, gitDirty: boolean) => {
      const file = join(out, runFileName(spec));
      const r = JSON.parse(await Deno.readTextFile(file));
      await Deno.writeTextFile(
        file,
        JSON.stringify({ ...r, provenance: { ...r.provenance, gitSha, gitDirty } }),
      );
    };
    await rewrite(specs[1]!, "abc", true);
    await rewrite(specs[2]!, "now1", false);
    await rewrite(specs[3]!, "now1", true); // the same commit, but dirty: other code too
    const lines: string[] = [];
    const { runOne, ids } = countingRunOne();
    const s = await runGrid(specs, {
      outDir: out,
      dataDir: DATA,
      runOne,
      resume: true,
      log: (line) => lines.push(line),
      code: () => ({ sha: "now1", dirty: false }),
    });
    assert.deepEqual(ids(), [], "every result is kept");
    assert.equal(s.skipped, 4);
    assert.deepEqual(lines, [
      `note: 3 finished result(s) in ${out} were trained at other code (fake, abc+dirty, ` +
      `now1+dirty, now now1); they are kept (the run id covers the spec, not the code): rerun ` +
      `without --resume to retrain them`,
    ]);
    // All at this code: no note.
    lines.length = 0;
    await runGrid(specs.slice(2, 3), {
      outDir: out,
      dataDir: DATA,
      runOne,
      resume: true,
      log: (line) => lines.push(line),
      code: () => ({ sha: "now1", dirty: false }),
    });
    assert.deepEqual(lines, []);
    // This process dirty at now1: a dirty now1 result is this code, a clean one is not (kills the
    // mutant judging a result by its own dirty flag alone, not against this process's).
    const dirtyLines: string[] = [];
    await runGrid(specs.slice(2, 4), {
      outDir: out,
      dataDir: DATA,
      runOne,
      resume: true,
      log: (line) => dirtyLines.push(line),
      code: () => ({ sha: "now1", dirty: true }),
    });
    assert.deepEqual(dirtyLines, [
      `note: 1 finished result(s) in ${out} were trained at other code (now1, now now1+dirty); ` +
      `they are kept (the run id covers the spec, not the code): rerun without --resume to ` +
      `retrain them`,
    ]);
    // Two results of one other commit: counted twice, named once (kills the mutants listing the
    // commit per result and counting commits instead of results).
    await rewrite(specs[2]!, "abc", true);
    const twiceLines: string[] = [];
    await runGrid(specs.slice(1, 3), {
      outDir: out,
      dataDir: DATA,
      runOne,
      resume: true,
      log: (line) => twiceLines.push(line),
      code: () => ({ sha: "now1", dirty: false }),
    });
    assert.deepEqual(twiceLines, [
      `note: 2 finished result(s) in ${out} were trained at other code (abc+dirty, now now1); ` +
      `they are kept (the run id covers the spec, not the code): rerun without --resume to ` +
      `retrain them`,
    ]);
    assert.deepEqual(ids(), [], "every result is kept");
  }));

Deno.test("runGrid() with resume says why it reruns over a result file it cannot use", async () => {
  const out = await Deno.makeTempDir();
  try {
    const grid = expandGrid(profile(), { dataDir: DATA, catalog: await defaultTaskCatalog() });
    const [a, b, c, d, e] = [grid[0]!, grid[1]!, grid[2]!, grid[3]!, grid[4]!];
    await runGrid([a, d, e], { outDir: out, dataDir: DATA, runOne: fakeRunOne });
    const fileOf = (s: RunSpec) => join(out, runFileName(s));
    // b: truncated JSON (a crash of an older version, or an editor); c: another run's result.
    await Deno.writeTextFile(fileOf(b), (await Deno.readTextFile(fileOf(a))).slice(0, 200));
    await Deno.copyFile(fileOf(a), fileOf(c));
    // d: its own id, its spec edited by hand (another learning rate): not this run's result.
    const edited = JSON.parse(await Deno.readTextFile(fileOf(d)));
    edited.spec.train.learningRate *= 2;
    await Deno.writeTextFile(fileOf(d), JSON.stringify(edited));
    // e: a best score edited by hand (its evaluations say otherwise).
    const scored = JSON.parse(await Deno.readTextFile(fileOf(e)));
    const task = Object.keys(scored.best)[0]!;
    scored.best[task].groupScore += 10;
    await Deno.writeTextFile(fileOf(e), JSON.stringify(scored));
    const starts = new Map<string, string | undefined>();
    const s = await runGrid([a, b, c, d, e], {
      outDir: out,
      dataDir: DATA,
      runOne: fakeRunOne,
      resume: true,
      onEvent: (e) => e.kind === "start" && starts.set(e.spec.id, e.replaces),
    });
    assert.deepEqual([s.skipped, s.done], [1, 4]);
    assert.equal(starts.has(a.id), false, "the valid result is kept");
    assert.match(
      starts.get(d.id)!,
      new RegExp(
        `${runFileName(d)}: its spec hashes to [0-9a-f]{12}, not to its id ${d.id}: edited after`,
      ),
    );
    assert.match(starts.get(b.id)!, new RegExp(`${runFileName(b)}:\\d+:\\d+: invalid JSON`));
    assert.match(
      starts.get(c.id)!,
      new RegExp(`${runFileName(c)}: holds run ${a.id}, not ${c.id}`),
    );
    assert.match(
      starts.get(e.id)!,
      new RegExp(`${runFileName(e)}: \\$\\.best\\.${task} holds .*: edited after the run wrote it`),
    );
    // Each was replaced by its own result.
    for (const x of [b, c, d, e]) {
      assert.equal(JSON.parse(await Deno.readTextFile(fileOf(x))).spec.id, x.id);
    }
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("unfinishedCheckpoints(): runs with checkpoints whose claim no live process holds, with their step", () =>
  inTempDir(async (out) => {
    const grid = expandGrid(profile(), { dataDir: DATA, catalog: await defaultTaskCatalog() });
    const [a, b, c] = [grid[0]!, grid[1]!, grid[2]!];
    const ckpt = (s: RunSpec, step: number) =>
      Deno.mkdir(
        join(runWorkDir(join(out, runFileName(s))), "checkpoints", checkpointDirName(step)),
        { recursive: true },
      );
    await ckpt(a, 4);
    await ckpt(a, 8);
    await ckpt(b, 2);
    assert.deepEqual(await unfinishedCheckpoints(out, [a, b, c], 60_000), [
      `${a.id} (${runFileName(a)}): step 8 of ${a.train.steps}`,
      `${b.id} (${runFileName(b)}): step 2 of ${b.train.steps}`,
    ]);
    // b's claim held by a live process (this one): its checkpoints are that process's work.
    const held = await claimRun(runLockFile(join(out, runFileName(b))), b.id, {
      host: thisHost(),
      heartbeatMs: 60_000,
      staleMs: 60_000,
      onTakeover: () => {},
    });
    assert.ok("held" in held);
    const claimFile = runLockFile(join(out, runFileName(b)));
    let text: string;
    try {
      assert.deepEqual(await unfinishedCheckpoints(out, [a, b, c], 60_000), [
        `${a.id} (${runFileName(a)}): step 8 of ${a.train.steps}`,
      ]);
      text = await Deno.readTextFile(claimFile);
    } finally {
      await held.held.release();
    }
    // The claim a killed (SIGKILL, preempted) process leaves: its pid gone, its heartbeat fresh.
    // Its checkpoints are nobody's work now: listed, as the ones without a claim.
    const dead = JSON.parse(text);
    dead.pid = 4_000_000;
    delete dead.pidStart;
    await Deno.writeTextFile(claimFile, JSON.stringify(dead));
    assert.deepEqual(await unfinishedCheckpoints(out, [a, b, c], 60_000), [
      `${a.id} (${runFileName(a)}): step 8 of ${a.train.steps}`,
      `${b.id} (${runFileName(b)}): step 2 of ${b.train.steps}`,
    ]);
    // a's result written, its work folder not yet deleted (a kill between the two): finished,
    // not listed (bench called it unfinished, and --restart would have trained it again).
    const [done] = await fakeRuns([a]);
    await Deno.writeTextFile(join(out, runFileName(a)), JSON.stringify(done));
    assert.deepEqual(await unfinishedCheckpoints(out, [a, b, c], 60_000), [
      `${b.id} (${runFileName(b)}): step 2 of ${b.train.steps}`,
    ]);
    // Another run's result under its name is no result of it: still listed.
    const [other] = await fakeRuns([c]);
    await Deno.writeTextFile(join(out, runFileName(a)), JSON.stringify(other));
    assert.equal((await unfinishedCheckpoints(out, [a, b, c], 60_000)).length, 2);
  }));

Deno.test("runGrid() with resume reruns a finished run whose recorded data files changed in the grid's data folder, naming the first; keeps one whose files did not", async () => {
  const out = await Deno.makeTempDir();
  const data = await Deno.makeTempDir();
  try {
    const grid = expandGrid(profile(), { dataDir: DATA, catalog: await defaultTaskCatalog() });
    const [a, b] = [grid[0]!, grid[1]!];
    await Deno.mkdir(join(data, "glue", "RTE"), { recursive: true });
    const dev = join(data, "glue", "RTE", "dev.tsv");
    const train = join(data, "glue", "RTE", "train.tsv");
    await Deno.writeTextFile(dev, "index\tsentence1\tsentence2\tlabel\n");
    await Deno.writeTextFile(train, "index\tsentence1\tsentence2\tlabel\n");
    // As runOne records them (provenance.data: each file read, its size and sha256; sorted, so
    // the train file comes second and is checked too); b records none, and a file without a
    // digest (a result written before they were recorded) is accepted.
    const withData: typeof fakeRunOne = async (spec, opts) => {
      const r = await fakeRunOne(spec, opts);
      if (spec.id === b.id) return r;
      const files = {
        "glue/RTE/dev.tsv": await fileDigest(dev),
        "glue/RTE/old.tsv": { bytes: 3 },
        "glue/RTE/train.tsv": await fileDigest(train),
      };
      const dataRecord = { dir: data, kind: "folder" as const, sources: [], files };
      return { ...r, provenance: { ...r.provenance, data: dataRecord } };
    };
    const trained: string[] = [];
    const starts = new Map<string, string | undefined>();
    const run = () =>
      runGrid([a, b], {
        outDir: out,
        dataDir: data,
        runOne: (spec, opts) => (trained.push(spec.id), withData(spec, opts)),
        resume: true,
        onEvent: (e) => e.kind === "start" && starts.set(e.spec.id, e.replaces),
      });
    await run();
    const old = (await fileDigest(train)).sha256;
    trained.length = 0;
    assert.deepEqual([(await run()).skipped, trained], [2, []], "nothing changed: kept");
    // The file edited (or another copy downloaded) under the same path: a trains again, saying
    // which file; before, its result of the old bytes was kept. b records no data: kept.
    await Deno.writeTextFile(train, "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n");
    const now = (await fileDigest(train)).sha256;
    const s = await run();
    assert.deepEqual([s.skipped, s.done, trained], [1, 1, [a.id]]);
    assert.equal(
      starts.get(a.id),
      `${join(out, runFileName(a))}: its data changed since it was trained (glue/RTE/train.tsv: ` +
        `sha256 ${old.slice(0, 12)}… now ${now.slice(0, 12)}… in ${data})`,
    );
    // The file missing from the grid's data folder counts as changed; readFinished checks too.
    await Deno.remove(train);
    assert.equal(await readFinished(out, a, data), undefined);
    assert.ok(await readFinished(out, a), "without a data folder: unchecked");
    assert.match(
      (await inspectFinished(out, a, { dataDir: data })).unusable ?? "",
      /\(glue\/RTE\/train\.tsv: missing in /,
    );
  } finally {
    await Deno.remove(out, { recursive: true });
    await Deno.remove(data, { recursive: true });
  }
});

Deno.test("runGrid() with resume reruns a finished run whose recorded checkpoint files changed (naming the first), and keeps one whose files did not or that records none", async () => {
  const out = await Deno.makeTempDir();
  const ck = await Deno.makeTempDir();
  try {
    const grid = expandGrid(profile(), { dataDir: DATA, catalog: await defaultTaskCatalog() });
    const [a, b, c, d] = [grid[0]!, grid[1]!, grid[2]!, grid[3]!];
    // Each new content has another size: fileDigest's per-process cache keys on (path, size,
    // mtime), and two writes within one millisecond would share an mtime.
    await Deno.writeTextFile(join(ck, "config.json"), `{"d_model": 8}`);
    await Deno.writeTextFile(join(ck, "model.safetensors"), "weights v1");
    await Deno.writeTextFile(join(ck, "tokenizer.json"), "{}");
    // As runOne records them (model/pretrained.ts checkpointFiles: name-sorted, size and sha256),
    // for a, b and c; d records none (a preset's random init, or a result older than the field).
    const withCheckpoint: typeof fakeRunOne = async (spec, opts) => {
      const r = await fakeRunOne(spec, opts);
      if (spec.id === d.id) return r;
      const files = await checkpointFiles(ck, { weights: true });
      return { ...r, provenance: { ...r.provenance, checkpoint: { dir: ck, files } } };
    };
    const trained: string[] = [];
    const starts = new Map<string, string | undefined>();
    const run = (specs: RunSpec[]) =>
      runGrid(specs, {
        outDir: out,
        dataDir: DATA,
        runOne: (spec, opts) => (trained.push(spec.id), withCheckpoint(spec, opts)),
        resume: true,
        onEvent: (e) => e.kind === "start" && starts.set(e.spec.id, e.replaces),
      });
    await run([a, b, d]);
    const firstOld = (await checkpointFiles(ck, { weights: true }))["model.safetensors"]!.sha256;
    trained.length = 0;
    starts.clear();
    // Nothing changed: every finished run is kept.
    assert.deepEqual([(await run([a, b, d])).skipped, trained], [3, []]);
    // The weights replaced under the same folder (same run ids): a and b train again, each
    // saying which file changed; d, without a record, is kept as before.
    await Deno.writeTextFile(join(ck, "model.safetensors"), "weights v22");
    const firstNew = (await checkpointFiles(ck, { weights: true }))["model.safetensors"]!.sha256;
    const s = await run([a, b, d]);
    assert.deepEqual([s.skipped, s.done, trained], [1, 2, [a.id, b.id]]);
    for (const x of [a, b]) {
      assert.equal(
        starts.get(x.id),
        `${join(out, runFileName(x))}: its checkpoint ${ck} changed since it was trained ` +
          `(model.safetensors: sha256 ${firstOld.slice(0, 12)}… now ${firstNew.slice(0, 12)}…)`,
      );
    }
    // Rewritten with the new digests: kept on the next resume.
    trained.length = 0;
    assert.deepEqual([(await run([a, b, d])).skipped, trained], [3, []]);
    // A recorded file gone (the tokenizer now spiece.model, say) counts as changed.
    await run([c]);
    await Deno.remove(join(ck, "tokenizer.json"));
    starts.clear();
    trained.length = 0;
    assert.deepEqual([(await run([c])).done, trained], [1, [c.id]]);
    assert.equal(
      starts.get(c.id),
      `${join(out, runFileName(c))}: its checkpoint ${ck} changed since it was trained ` +
        `(tokenizer.json: missing)`,
    );
    // Of several changed files, the first in the record's (sorted) order is named: of the
    // tokenizer (now missing) and the weights (now v3), the weights.
    await Deno.writeTextFile(join(ck, "model.safetensors"), "weights v333");
    await run([a]);
    assert.match(
      starts.get(a.id)!,
      /\(model\.safetensors: sha256 [0-9a-f]{12}… now [0-9a-f]{12}…\)$/,
    );
    // readFinished applies the same check; a result without a record is read as before.
    await Deno.writeTextFile(join(ck, "model.safetensors"), "weights v4444");
    assert.equal(await readFinished(out, a), undefined);
    assert.equal((await readFinished(out, d))?.spec.id, d.id);
    // The folder not here at all (another machine's, a cleared cache): it cannot be checked, and
    // the finished results are kept rather than trained again.
    await run([a, b]);
    await Deno.rename(ck, `${ck}-away`);
    trained.length = 0;
    try {
      assert.deepEqual([(await run([a, b])).skipped, trained], [2, []]);
    } finally {
      await Deno.rename(`${ck}-away`, ck);
    }
  } finally {
    await Deno.remove(out, { recursive: true });
    await Deno.remove(ck, { recursive: true });
  }
});

Deno.test("runGrid() writes results with the shared atomic helper; a failing write keeps the old result", async () => {
  // One helper for every atomic write (model/fs.ts), not a copy that can leak its temporary file.
  assert.equal(writeFileAtomic, sharedWriteFileAtomic);
  const out = await Deno.makeTempDir();
  try {
    const grid = expandGrid(profile(), { dataDir: DATA, catalog: await defaultTaskCatalog() });
    const spec = grid[0]!;
    const file = join(out, runFileName(spec));
    assert.equal(
      (await runGrid([spec], { outDir: out, dataDir: DATA, runOne: fakeRunOne })).done,
      1,
    );
    const before = await Deno.readTextFile(file);
    // A rerun whose result cannot be serialised fails; the previous result stays whole.
    const unserialisable: RunOneFn = async (s, o) => ({
      ...(await fakeRunOne(s, o)),
      toJSON: () => {
        throw new Error("cannot serialise");
      },
    });
    const s2 = await runGrid([spec], { outDir: out, dataDir: DATA, runOne: unserialisable });
    assert.match(s2.failed[0]!.error.message, /cannot serialise/);
    assert.equal(await Deno.readTextFile(file), before);
    assert.deepEqual(
      [...Deno.readDirSync(out)].filter((e) => e.isFile).map((e) => e.name),
      [runFileName(spec)],
    );
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("runGrid() stops at a fatal backend error and reports the rest as not run", () =>
  inTempDir(async (out) => {
    const grid = expandGrid(profile(), { dataDir: DATA, catalog: await defaultTaskCatalog() });
    const { runOne, ids } = countingRunOne((spec) =>
      spec.id === grid[1]!.id && new BackendFatalError("the wasm heap ran out")
    );
    const s = await runGrid(grid, { outDir: out, dataDir: DATA, runOne });
    assert.deepEqual(ids(), [grid[0]!.id, grid[1]!.id], "no run after the fatal one");
    assert.equal(s.done, 1);
    assert.equal(s.failed.length, grid.length - 1);
    assert.match(s.failed[0]!.error.message, /heap ran out/);
    assert.match(s.failed[1]!.error.message, /^not run: an earlier run stopped the backend/);
  }));

Deno.test("runGrid() stops at a stop request: the stopped run keeps its checkpoints, none after it starts", () =>
  inTempDir(async (out) => {
    const grid = expandGrid(profile(), { dataDir: DATA, catalog: await defaultTaskCatalog() });
    const started: string[] = [];
    const events: string[] = [];
    // Run 1 finishes; run 2 is stopped by SIGINT after writing a checkpoint file.
    const runOne: typeof fakeRunOne = async (spec, opts) => {
      started.push(spec.id);
      if (spec.id !== grid[1]!.id) return fakeRunOne(spec, opts);
      const ck = await fakeCheckpoint(opts.outDir, 3);
      throw new TrainingInterruptedError("SIGINT", 3, 4, ck);
    };
    const s = await runGrid(grid, {
      outDir: out,
      dataDir: DATA,
      runOne,
      onEvent: (e) => e.kind !== "progress" && events.push(`${e.kind}:${e.index}`),
    });
    assert.deepEqual(started, [grid[0]!.id, grid[1]!.id], "no run started after the stop");
    assert.equal(s.done, 1);
    assert.deepEqual(s.failed, [], "a stopped run is not a failed one");
    assert.equal(s.interrupted?.reason, "SIGINT");
    assert.equal(s.interrupted?.spec?.id, grid[1]!.id);
    assert.equal(s.interrupted?.notStarted, grid.length - 2);
    assert.match(s.interrupted?.error?.message ?? "", /--resume continues from step 3/);
    assert.deepEqual(events, ["start:0", "done:0", "start:1", "interrupted:1"]);
    const work = join(out, runFileName(grid[1]!).replace(/\.json$/, ""));
    assert.deepEqual(await listCheckpoints(join(work, "checkpoints")), [3], "checkpoint kept");
    assert.equal(await readFinished(out, grid[1]!), undefined, "no result for the stopped run");

    // A request between runs (shouldStop): the grid stops before the next run; --resume then
    // skips the finished run and goes on from the stopped one.
    const resumed = countingRunOne();
    let checks = 0;
    const s2 = await runGrid(grid, {
      outDir: out,
      dataDir: DATA,
      runOne: resumed.runOne,
      resume: true,
      shouldStop: () => ++checks > 2 ? "SIGTERM" : undefined,
    });
    assert.equal(s2.skipped, 1);
    assert.equal(s2.done, 1);
    assert.deepEqual(resumed.ids(), [grid[1]!.id]);
    assert.deepEqual(s2.interrupted, { reason: "SIGTERM", notStarted: grid.length - 2 });
    assert.ok(await readFinished(out, grid[1]!), "the stopped run finished on resume");

    // A request that comes while the last run finishes (its loop ended on that step, so it did not
    // stop): the grid is still reported stopped, so the bench writes no tables and exits 130.
    let requested: string | undefined;
    const last = grid.at(-1)!;
    const s3 = await runGrid(grid, {
      outDir: out,
      dataDir: DATA,
      runOne: (spec, opts) => {
        if (spec.id === last.id) requested = "SIGINT";
        return fakeRunOne(spec, opts);
      },
      resume: true,
      shouldStop: () => requested,
    });
    assert.equal(s3.done + s3.skipped, grid.length, "every run finished");
    assert.deepEqual(s3.interrupted, { reason: "SIGINT", notStarted: 0 });
    // Without a request, a whole grid is no stop.
    const s4 = await runGrid(grid, {
      outDir: out,
      dataDir: DATA,
      runOne: fakeRunOne,
      resume: true,
      shouldStop: () => undefined,
    });
    assert.equal(s4.interrupted, undefined);
    assert.equal(s4.skipped, grid.length);
  }));

Deno.test("explainBackendFailure() turns a wasm trap into a fatal error that says what to do", async () => {
  assert.ok(await tf.setBackend("wasm"));
  const trap = new WebAssembly.RuntimeError("Aborted(). Build with -sASSERTIONS for more info.");
  const e = explainBackendFailure(trap, "run x") as BackendFatalError;
  assert.ok(e instanceof BackendFatalError && e.fatal);
  assert.match(e.message, /^run x: the tfjs wasm module stopped \(Aborted\(\)\./);
  assert.match(e.message, /train\.microBatchSize/);
  assert.equal(e.cause, trap);
  const other = new Error("unrelated");
  assert.equal(explainBackendFailure(other, "run x"), other);
  await tf.setBackend("cpu");
  assert.equal(explainBackendFailure(trap, "run x"), trap, "only on the wasm backend");
});

/**
 * A `runOne` that really trains (a tiny T5 on 8 toy pairs, checkpoints in the run's work
 * folder, as `run_one.ts` does) and counts evaluations; `killAt` throws after that step.
 */
function toyRunOne(log: { evals: number; steps: number }, killAt?: number): RunOneFn {
  const code = { sha: "c".repeat(40), dirty: false };
  return async (spec, opts) => {
    const outcome = await toyTrain(spec, opts, {
      taskNames: ["cb"],
      code,
      evaluate: (step) => {
        log.evals++;
        return Promise.resolve([{ step, task: "cb", metrics: { accuracy: 50 }, groupScore: 50 }]);
      },
      onStep: (step) => {
        log.steps++;
        if (step === killAt) throw new Error("killed");
      },
    });
    const fake = await fakeRunOne(spec, opts);
    const resumedFrom = resumeRecord(outcome.resumedFrom, outcome.resumedCode, code);
    const provenance: RunProvenance = {
      ...fake.provenance,
      ...(resumedFrom === undefined ? {} : { resumedFrom }),
    };
    // Its best and averages from its own evaluations, as run_one.ts computes them.
    const best = bestPerTask(outcome.evals);
    const averages = officialAverages(spec.benchmark, best);
    return { ...fake, provenance, losses: outcome.losses, evals: outcome.evals, best, averages };
  };
}

Deno.test("runGrid(): a rerun without --resume retrains; --resume continues; checkpoints go after success", () =>
  inTempDir(async (out) => {
    await tf.ready();
    const body: Omit<RunSpec, "id"> = {
      profile: "t",
      model: "tiny-v1_1",
      backbone: "random",
      benchmark: "super_glue",
      tasks: ["cb"],
      method: { name: "mtl", label: "mtl", config: {} },
      seed: 0,
      train: { ...DEFAULT_TRAIN, steps: 4, batchSize: 2, evalEvery: 4, checkpointEvery: 2 },
      backend: "cpu",
    };
    const spec: RunSpec = { id: runId(body), ...body };
    const file = join(out, runFileName(spec));
    const work = file.replace(/\.json$/, "");
    const before = tf.memory().numTensors;
    const read = async () => JSON.parse(await Deno.readTextFile(file));

    // 1. Killed after step 3: the step-2 checkpoint stays in the run's folder.
    const log = { evals: 0, steps: 0 };
    const s1 = await runGrid([spec], { outDir: out, dataDir: DATA, runOne: toyRunOne(log, 3) });
    assert.equal(s1.failed.length, 1);
    assert.deepEqual(await listCheckpoints(join(work, "checkpoints")), [2]);

    // 2. --resume: continues from step 2 (steps 3 and 4 only), records it, then drops the folder.
    //    This runOne reports every step from 1 (fakeRunOne's), so the "resumed" event comes from
    //    the result's provenance, once, just before "done".
    Object.assign(log, { evals: 0, steps: 0 });
    const kinds: string[] = [];
    const s2 = await runGrid([spec], {
      outDir: out,
      dataDir: DATA,
      runOne: toyRunOne(log),
      resume: true,
      onEvent: (e) => kinds.push(e.kind === "resumed" ? `resumed ${e.step}` : e.kind),
    });
    assert.equal(s2.done, 1);
    assert.deepEqual(kinds.filter((k) => k !== "progress"), ["start", "resumed 2", "done"]);
    assert.deepEqual(log, { evals: 1, steps: 2 });
    const r2 = await read();
    assert.deepEqual(r2.provenance.resumedFrom, { step: 2 });
    assert.deepEqual(r2.losses.map((l: { step: number }) => l.step), [1, 2, 3, 4]);
    assert.equal(await Deno.stat(work).then(() => true, () => false), false, "checkpoints removed");

    // 3. --resume again: the finished run is skipped.
    const s3 = await runGrid([spec], {
      outDir: out,
      dataDir: DATA,
      runOne: toyRunOne(log),
      resume: true,
    });
    assert.equal(s3.skipped, 1);

    // 4. Killed again, then rerun without --resume: the leftover checkpoint is ignored (the
    //    folder is cleared), the run trains all 4 steps and evaluates anew.
    await runGrid([spec], { outDir: out, dataDir: DATA, runOne: toyRunOne(log, 3) });
    assert.deepEqual(await listCheckpoints(join(work, "checkpoints")), [2]);
    Object.assign(log, { evals: 0, steps: 0 });
    kinds.length = 0;
    const s4 = await runGrid([spec], {
      outDir: out,
      dataDir: DATA,
      runOne: toyRunOne(log),
      onEvent: (e) => kinds.push(e.kind),
    });
    assert.ok(!kinds.includes("resumed"), `a fresh run is not resumed: ${kinds}`);
    assert.equal(s4.done, 1);
    assert.deepEqual(log, { evals: 1, steps: 4 }, "trained from step 0 and evaluated");
    const r4 = await read();
    assert.equal(r4.provenance.resumedFrom, undefined);
    assert.equal(await Deno.stat(work).then(() => true, () => false), false, "checkpoints removed");

    // 5. A finished run rerun without --resume is trained again, not served from anything cached.
    Object.assign(log, { evals: 0, steps: 0 });
    await runGrid([spec], { outDir: out, dataDir: DATA, runOne: toyRunOne(log) });
    assert.deepEqual(log, { evals: 1, steps: 4 });
    assert.equal(tf.memory().numTensors, before);
  }));

Deno.test("runGrid(): runOne's 'resume' report is the run's 'resumed' event (not a progress one); nothing else makes one", () =>
  inTempDir(async (out) => {
    const [spec] = expandGrid(profile(), { dataDir: DATA, catalog: await defaultTaskCatalog() });
    const cases: {
      what: string;
      reports: RunProgress[];
      resumedFrom?: number;
      want: string[];
    }[] = [
      {
        what: "resumed from step 3, whose evaluation the checkpoint owes",
        reports: [
          { phase: "resume", step: 3, totalSteps: 4 },
          { phase: "eval", step: 3, totalSteps: 4 },
          { phase: "train", step: 4, totalSteps: 4, loss: 1 },
        ],
        resumedFrom: 3,
        want: ["start", "resumed 3", "eval 3", "train 4", "done"],
      },
      {
        what: "resumed at the last step: the report alone",
        reports: [{ phase: "resume", step: 4, totalSteps: 4 }],
        resumedFrom: 4,
        want: ["start", "resumed 4", "done"],
      },
      {
        what: "a runOne that reports no resume: none is guessed from its first step or provenance",
        reports: [{ phase: "train", step: 3, totalSteps: 4, loss: 1 }],
        resumedFrom: 2,
        want: ["start", "train 3", "done"],
      },
      {
        what: "a fresh run",
        reports: [{ phase: "train", step: 1, totalSteps: 4, loss: 1 }],
        want: ["start", "train 1", "done"],
      },
    ];
    for (const c of cases) {
      await Deno.remove(join(out, runFileName(spec!))).catch(() => {});
      const events: string[] = [];
      const runOne: RunOneFn = async (s, opts) => {
        for (const p of c.reports) opts.onProgress?.(p);
        const fake = await fakeRunOne(s, { ...opts, onProgress: () => {} });
        const provenance: RunProvenance = {
          ...fake.provenance,
          ...(c.resumedFrom === undefined ? {} : { resumedFrom: { step: c.resumedFrom } }),
        };
        return { ...fake, provenance };
      };
      await runGrid([spec!], {
        outDir: out,
        dataDir: DATA,
        runOne,
        resume: true,
        onEvent: (e) =>
          events.push(
            e.kind === "resumed"
              ? `resumed ${e.step}`
              : e.kind === "progress"
              ? `${e.progress.phase} ${e.progress.step}`
              : e.kind,
          ),
      });
      assert.deepEqual(events, c.want, c.what);
    }
  }));

Deno.test("runGrid(): work folders go through a .del- name; a removal or cleanup a kill cut short is finished", async () => {
  const out = await Deno.makeTempDir();
  try {
    const grid = expandGrid(profile(), { dataDir: DATA, catalog: await defaultTaskCatalog() });
    const spec = grid[0]!;
    const work = join(out, runFileName(spec)).replace(/\.json$/, "");
    const leaveCheckpoint = async () => {
      await fakeCheckpoint(work, 2);
    };
    // A fresh run clears its folder, and removes it after success, never deleting it in place
    // (a delete killed part-way would leave a partial step folder that --resume then loads).
    await leaveCheckpoint();
    const removed: string[] = [];
    const remove = Deno.remove;
    Deno.remove = (path, options) => {
      removed.push(String(path));
      return remove(path, options);
    };
    try {
      assert.equal(
        (await runGrid([spec], { outDir: out, dataDir: DATA, runOne: fakeRunOne })).done,
        1,
      );
    } finally {
      Deno.remove = remove;
    }
    // The run's claim file goes too (removed in place: it is one file, replaced atomically).
    const lock = `${work}.lock`;
    assert.ok(removed.includes(lock), `removals: ${removed}`);
    const folders = removed.filter((p) => p !== lock);
    assert.ok(folders.length >= 2, `removals: ${removed}`);
    for (const p of folders) {
      assert.notEqual(p, work, "the work folder is renamed before it is deleted");
      assert.match(
        p,
        new RegExp(`/\\.${runFileName(spec).replace(/\.json$/, "")}\\.del-\\d+-[0-9a-f]{12}$`),
      );
    }
    // A kill between writing the result and removing the checkpoints: --resume skips the run
    // and removes them; a removal cut short (its .del- folder, partial) is finished.
    await leaveCheckpoint();
    const cut = join(out, `.${basename(work)}.del-999999999-0123456789ab`);
    await Deno.mkdir(join(cut, "checkpoints", "step-00000004"), { recursive: true });
    const other = join(out, ".notes"); // not a removal: kept
    await Deno.mkdir(other);
    // Removals of names this grid never discards (another grid's run, test predictions of a run
    // that never starts afresh again) are finished at its start too; the folders themselves stay.
    const tp = join(out, "test_predictions");
    const leftovers = [
      join(out, ".p--m--b--glue--mtl--s0--0123.del-999999999-0123456789ab"),
      join(tp, ".p--m--b--glue--mtl--s0--0123.del-999999999-0123456789ab"),
    ];
    for (const d of [...leftovers, join(tp, "p--m--b--glue--mtl--s0--0123")]) {
      await Deno.mkdir(join(d, "x"), { recursive: true });
    }
    const s = await runGrid([spec], {
      outDir: out,
      dataDir: DATA,
      runOne: fakeRunOne,
      resume: true,
    });
    assert.equal(s.skipped, 1);
    assert.deepEqual(
      [...Deno.readDirSync(out)].map((e) => e.name).sort(),
      [".notes", runFileName(spec), "test_predictions"],
    );
    assert.deepEqual([...Deno.readDirSync(tp)].map((e) => e.name), [
      "p--m--b--glue--mtl--s0--0123",
    ]);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("expandGrid(): a perTask method gives one single-task run per task and seed, with its own train overrides", async () => {
  const catalog = await defaultTaskCatalog();
  const methods = [
    { name: "mtl" },
    { name: "hyperprompt_global", config: { length: 4 } },
    { name: "prompt_tuning", label: "PT", perTask: true, train: { steps: 6, batchSize: 4 } },
  ];
  const base = expandGrid(profile(), { dataDir: DATA, catalog });
  const grid = expandGrid(profile({ methods }), { dataDir: DATA, catalog });
  // The other methods' runs (and ids) are unchanged.
  assert.deepEqual(
    grid.filter((s) => s.method.label !== "PT").map((s) => s.id),
    base.map((s) => s.id),
  );
  const pt = grid.filter((s) => s.method.label === "PT");
  // glue: rte, cola; super_glue: cb; 2 seeds each. Tasks in mixture order, then seeds.
  assert.deepEqual(pt.map((s) => `${s.benchmark}/${s.tasks.join("+")}/s${s.seed}`), [
    "glue/rte/s0",
    "glue/rte/s1",
    "glue/cola/s0",
    "glue/cola/s1",
    "super_glue/cb/s0",
    "super_glue/cb/s1",
  ]);
  assert.deepEqual(pt.map((s) => s.perTaskOf), [
    ...Array(4).fill(["rte", "cola"]),
    ...Array(2).fill(["cb"]),
  ]);
  for (const s of pt) {
    assert.equal(s.train.steps, 6);
    assert.equal(s.train.batchSize, 4);
    assert.equal("perTask" in s.method, false);
    assert.equal(s.id, runId(s));
  }
  assert.equal(new Set(grid.map((s) => s.id)).size, grid.length);
  assert.equal(new Set(grid.map(runFileName)).size, grid.length);
  // Shards still cover every task run exactly once.
  const shards = [0, 1, 2].map((index) => shardGrid(grid, { index, count: 3 }));
  assert.deepEqual(shards.flat().map((s) => s.id).sort(), grid.map((s) => s.id).sort());
});

Deno.test("runGrid(): the preflight's micro-batch reaches runOne and the result JSON, not the id; a bad one is not a result", () =>
  inTempDir(async (out) => {
    const grid = expandGrid(profile({ train: { steps: 2, evalEvery: 2, batchSize: 4 } }), {
      dataDir: DATA,
      catalog: await defaultTaskCatalog(),
    }).slice(0, 2);
    const { runOne, calls } = countingRunOne();
    const s = await runGrid(grid, {
      outDir: out,
      dataDir: DATA,
      runOne,
      microBatchSizes: new Map([[grid[0]!.id, 2]]),
    });
    assert.equal(s.done, 2);
    assert.deepEqual(calls.map((c) => [c.spec.id, c.opts.microBatchSize]), [
      [grid[0]!.id, 2],
      [grid[1]!.id, undefined],
    ]);
    const r0 = JSON.parse(await Deno.readTextFile(join(out, runFileName(grid[0]!))));
    const r1 = JSON.parse(await Deno.readTextFile(join(out, runFileName(grid[1]!))));
    assert.equal(r0.effectiveMicroBatchSize, 2);
    assert.equal(r0.spec.id, grid[0]!.id);
    assert.equal(r0.spec.train.microBatchSize, undefined);
    assert.equal("effectiveMicroBatchSize" in r1, false);
    // --resume finds the run by its unchanged id; a value that does not divide the batch is refused.
    assert.ok(await readFinished(out, grid[0]!));
    await Deno.writeTextFile(
      join(out, runFileName(grid[0]!)),
      JSON.stringify({ ...r0, effectiveMicroBatchSize: 3 }),
    );
    const bad = await inspectFinished(out, grid[0]!);
    assert.equal(bad.result, undefined);
    assert.match(
      bad.unusable ?? "",
      /effectiveMicroBatchSize.*must divide \$\.spec\.train\.batchSize \(4\), got 3/,
    );
  }));

Deno.test("expandGrid(): a catalog without trainableTasks still accepts a registered task outside BENCHMARK_TASKS", () => {
  // cli.ts wraps the catalog as { benchmarkTasks, isAvailable } for its grid check.
  const grid = expandGrid(profile({ tasks: { glue: ["rte", "wnli"] } }), {
    dataDir: DATA,
    catalog: { benchmarkTasks: (b) => FILE_CATALOG.benchmarkTasks(b), isAvailable: () => true },
  });
  assert.deepEqual(grid[0]?.tasks, ["rte", "wnli"]);
});

Deno.test("missingProfileTasks(): with predictTest, the diagnostics its tasks' runs predict (AX-b, AX-g with SuperGLUE RTE) whose test files are missing; not without predictTest", async () => {
  const catalog = await defaultTaskCatalog();
  const sg = (train: Record<string, unknown>) =>
    profile({
      benchmarks: ["super_glue"],
      tasks: { super_glue: ["cb", "rte_sg"] },
      train: { steps: 4, evalEvery: 2, batchSize: 2, ...train },
    });
  // The mirror has CB and SuperGLUE RTE with their test files, not AX-b or AX-g.
  assert.deepEqual(missingProfileTasks(sg({}), { dataDir: DATA, catalog }), []);
  assert.deepEqual(missingProfileTasks(sg({ predictTest: true }), { dataDir: DATA, catalog }), [
    "super_glue/axb",
    "super_glue/axg",
  ]);
  // Present (a folder holding them): nothing to fetch.
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(join(dir, "super_glue"));
    for (const t of ["CB", "RTE"]) {
      await Deno.symlink(join(DATA, "super_glue", t), join(dir, "super_glue", t));
    }
    for (const f of ["AX-b/AX-b.jsonl", "AX-g/AX-g.jsonl"]) {
      await Deno.mkdir(join(dir, "super_glue", f, ".."), { recursive: true });
      await Deno.writeTextFile(join(dir, "super_glue", f), "");
    }
    assert.deepEqual(missingProfileTasks(sg({ predictTest: true }), { dataDir: dir, catalog }), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("missingProfileTasks(): with predictTest on GLUE, WNLI's test file for the submission's WNLI.tsv, which no run reads", async () => {
  const catalog = await defaultTaskCatalog();
  const glue = (train: Record<string, unknown>) =>
    profile({
      benchmarks: ["glue"],
      tasks: { glue: ["rte"] },
      train: { steps: 4, evalEvery: 2, batchSize: 2, ...train },
    });
  // The mirror has RTE with its test file, no WNLI.
  assert.deepEqual(missingProfileTasks(glue({}), { dataDir: DATA, catalog }), []);
  assert.deepEqual(missingProfileTasks(glue({ predictTest: true }), { dataDir: DATA, catalog }), [
    "glue/wnli",
  ]);
  // A profile that lists WNLI itself asks for it once.
  const withWnli = profile({
    benchmarks: ["glue"],
    tasks: { glue: ["rte", "wnli"] },
    train: { steps: 4, evalEvery: 2, batchSize: 2, predictTest: true },
  });
  assert.deepEqual(missingProfileTasks(withWnli, { dataDir: DATA, catalog }), ["glue/wnli"]);
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(join(dir, "glue", "WNLI"), { recursive: true });
    await Deno.symlink(join(DATA, "glue", "RTE"), join(dir, "glue", "RTE"));
    await Deno.writeTextFile(join(dir, "glue", "WNLI", "test.tsv"), "");
    assert.deepEqual(
      missingProfileTasks(glue({ predictTest: true }), { dataDir: dir, catalog }),
      [],
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("predictTest: a trained task whose own test file is missing is fetched first, and refused before any run when still missing", async () => {
  const catalog = await defaultTaskCatalog();
  const glue = (train: Record<string, unknown>) =>
    profile({
      benchmarks: ["glue"],
      tasks: { glue: ["rte", "cola"] },
      train: { steps: 4, evalEvery: 2, batchSize: 2, ...train },
    });
  const dir = await Deno.makeTempDir();
  try {
    // RTE with train and dev but no test.tsv; CoLA whole; WNLI's test file for the submission.
    await Deno.mkdir(join(dir, "glue", "RTE"), { recursive: true });
    await Deno.mkdir(join(dir, "glue", "WNLI"), { recursive: true });
    await Deno.writeTextFile(join(dir, "glue", "WNLI", "test.tsv"), "");
    for (const f of ["train.tsv", "dev.tsv"]) {
      await Deno.copyFile(join(DATA, "glue", "RTE", f), join(dir, "glue", "RTE", f));
    }
    await Deno.symlink(join(DATA, "glue", "CoLA"), join(dir, "glue", "CoLA"));
    assert.deepEqual(missingProfileTasks(glue({}), { dataDir: dir, catalog }), []);
    assert.deepEqual(
      missingProfileTasks(glue({ predictTest: true }), { dataDir: dir, catalog }),
      ["glue/rte"],
    );
    // Without predictTest the grid is as before; with it, the missing file is named at once.
    assert.equal(expandGrid(glue({}), { dataDir: dir, catalog }).length, 4);
    const message = `Profile "t": missing glue test files for rte (glue/RTE/test.tsv: ` +
      `train.predictTest predicts them) under "${dir}"; download them (deno task download) or ` +
      `pass --data-dir; they come with deno task download --tasks glue/rte; or set ` +
      `"predictTest": false`;
    assert.throws(() => expandGrid(glue({ predictTest: true }), { dataDir: dir, catalog }), {
      message,
    });
    // A dry run reports it and lists the grid; one that plans the download counts it as there.
    const reported: string[] = [];
    const grid = expandGrid(glue({ predictTest: true }), {
      dataDir: dir,
      catalog,
      onMissing: (m) => reported.push(m),
    });
    assert.deepEqual([grid.length, reported], [4, [message]]);
    const planned = { ...catalog, missingTestFiles: () => [] };
    assert.equal(
      expandGrid(glue({ predictTest: true }), { dataDir: dir, catalog: planned }).length,
      4,
    );
    // Only the methods that predict: one method's predictTest is enough to need the file.
    const one = profile({
      benchmarks: ["glue"],
      tasks: { glue: ["rte"] },
      methods: [{ name: "mtl" }, { name: "adapter", train: { predictTest: true } }],
      train: { steps: 4, evalEvery: 2, batchSize: 2 },
    });
    assert.throws(() => expandGrid(one, { dataDir: dir, catalog }), /missing glue test files/);
    // A task of two test files (MNLI's matched and mismatched): both named.
    await Deno.mkdir(join(dir, "glue", "MNLI"));
    for (const f of ["train.tsv", "dev_matched.tsv", "dev_mismatched.tsv"]) {
      await Deno.writeTextFile(join(dir, "glue", "MNLI", f), "");
    }
    const mnli = profile({
      benchmarks: ["glue"],
      tasks: { glue: ["mnli"] },
      train: { steps: 4, evalEvery: 2, batchSize: 2, predictTest: true },
    });
    assert.throws(
      () => expandGrid(mnli, { dataDir: dir, catalog: { ...catalog, isAvailable: () => true } }),
      /missing glue test files for mnli \(glue\/MNLI\/test_matched\.tsv, glue\/MNLI\/test_mismatched\.tsv: /,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("expandGrid(): extraTrainTasks (DPR) joins each multi-task run's mixture after its tasks, never a per-task run", async () => {
  const catalog = await defaultTaskCatalog();
  const methods = [
    { name: "mtl" },
    { name: "prompt_tuning", label: "PT", perTask: true },
  ];
  const base = expandGrid(profile({ methods }), { dataDir: DATA, catalog });
  // Without extraTrainTasks no spec has the field: the ids of existing profiles do not change.
  assert.ok(base.every((s) => !("trainOnlyTasks" in s)));
  // The mirror has no DPR: the "task files missing" error, naming the field and what to do.
  const withDpr = profile({ methods, extraTrainTasks: { super_glue: ["dpr_v001_simple"] } });
  assert.throws(
    () => expandGrid(withDpr, { dataDir: DATA, catalog }),
    /^Error: Profile "t": missing super_glue train-only task files for dpr \(\$\.extraTrainTasks\.super_glue: super_glue\/DPR\/train\.c\.txt\) under ".*"; download them \(deno task download\) or pass --data-dir \(deno task download --tasks super_glue\/dpr\)$/,
  );
  assert.deepEqual(missingProfileTasks(withDpr, { dataDir: DATA, catalog }), ["super_glue/dpr"]);
  // With onMissing the same message is reported, once, and DPR is never skipped: the multi-task
  // SuperGLUE runs keep it in their mixture (the run then fails on its files, not on a mixture
  // other than the profile's).
  const reported: string[] = [];
  const kept = expandGrid(withDpr, {
    dataDir: DATA,
    catalog,
    onMissing: (m) => reported.push(m),
  });
  assert.equal(reported.length, 1);
  assert.match(reported[0]!, /^Profile "t": missing super_glue train-only task files for dpr \(/);
  assert.deepEqual(
    kept.filter((s) => s.benchmark === "super_glue").map((s) => s.trainOnlyTasks),
    [["dpr"], ["dpr"], undefined, undefined],
  );
  // With its train file beside the mirror's (links to the mirror's folders).
  const dir = await Deno.makeTempDir();
  try {
    for (const b of ["glue", "super_glue"]) {
      await Deno.mkdir(join(dir, b));
      for await (const e of Deno.readDir(join(DATA, b))) {
        await Deno.symlink(join(DATA, b, e.name), join(dir, b, e.name));
      }
    }
    await Deno.mkdir(join(dir, "super_glue/DPR"));
    await Deno.writeTextFile(join(dir, "super_glue/DPR/train.c.txt"), "A hit B.\nhe\nA,B\nA\n");
    assert.deepEqual(missingProfileTasks(withDpr, { dataDir: dir, catalog }), []);
    for (const c of [catalog, FILE_CATALOG]) {
      const grid = expandGrid(withDpr, { dataDir: dir, catalog: c });
      const show = (s: RunSpec) =>
        `${s.benchmark}/${s.method.label}/${s.tasks.join("+")}/${
          s.trainOnlyTasks ?? "-"
        }/s${s.seed}`;
      assert.deepEqual(grid.map(show), [
        "glue/mtl/rte+cola/-/s0",
        "glue/mtl/rte+cola/-/s1",
        "glue/PT/rte/-/s0",
        "glue/PT/rte/-/s1",
        "glue/PT/cola/-/s0",
        "glue/PT/cola/-/s1",
        "super_glue/mtl/cb/dpr/s0",
        "super_glue/mtl/cb/dpr/s1",
        "super_glue/PT/cb/-/s0",
        "super_glue/PT/cb/-/s1",
      ]);
      // Only the SuperGLUE multi-task runs change (a new mixture, so new ids).
      const changed = grid.filter((s, i) => s.id !== base[i]!.id).map(show);
      assert.deepEqual(changed, ["super_glue/mtl/cb/dpr/s0", "super_glue/mtl/cb/dpr/s1"]);
      assert.deepEqual(trainedTasks(grid[6]!), ["cb", "dpr"]);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  // Unchecked profiles (no registry lists given to validateProfile) are checked here.
  assert.throws(
    () =>
      expandGrid(profile({ extraTrainTasks: { super_glue: ["wsc"] } }), { dataDir: DATA, catalog }),
    /Profile "t": \$\.extraTrainTasks\.super_glue\[0\] "wsc" is not a train-only super_glue task \(known: dpr\); an evaluated task goes under \$\.tasks/,
  );
});

Deno.test("expandGrid(): extraTrainTasks naming one train-only task twice is an error naming both entries", () => {
  // TRAIN_ONLY_TASKS has one SuperGLUE task (DPR), so a second entry can only be DPR again. A
  // profile validated without the registry's lists (here) takes two spellings of it; the grid
  // then trained the mixture "cb, dpr, dpr" (DPR twice, under two task ids).
  const all = { benchmarkTasks: () => ["cb"], isAvailable: () => true };
  const one = expandGrid(
    profile({ benchmarks: ["super_glue"], extraTrainTasks: { super_glue: ["dpr"] } }),
    { dataDir: "unused", catalog: all },
  );
  // 2 methods x 2 seeds, each evaluating cb and training cb then dpr.
  assert.deepEqual(
    one.map((s) => [s.method.name, s.seed, s.tasks, s.trainOnlyTasks, trainedTasks(s)]),
    [
      ["mtl", 0, ["cb"], ["dpr"], ["cb", "dpr"]],
      ["mtl", 1, ["cb"], ["dpr"], ["cb", "dpr"]],
      ["hyperprompt_global", 0, ["cb"], ["dpr"], ["cb", "dpr"]],
      ["hyperprompt_global", 1, ["cb"], ["dpr"], ["cb", "dpr"]],
    ],
  );
  for (const names of [["dpr", "super_glue/dpr_v001_simple"], ["DPR", "dpr"]]) {
    const twice = profile({ benchmarks: ["super_glue"], extraTrainTasks: { super_glue: names } });
    const expected =
      /^Error: Profile "t": \$\.extraTrainTasks\.super_glue\[1\] repeats task "dpr" \(already \$\.extraTrainTasks\.super_glue\[0\]\)$/;
    assert.throws(() => expandGrid(twice, { dataDir: "unused", catalog: all }), expected);
    assert.throws(() => missingProfileTasks(twice, { dataDir: "unused", catalog: all }), expected);
  }
});

/** A claim file as another process writes it (`run_claim.ts` `RunClaimHolder`). */
async function writeClaim(
  out: string,
  spec: RunSpec,
  holder: { host: string; pid: number; token?: string },
  ageMs = 0,
): Promise<string> {
  const path = runLockFile(join(out, runFileName(spec)));
  await Deno.writeTextFile(
    path,
    JSON.stringify({ started: new Date().toISOString(), token: "their-token", ...holder }),
  );
  const t = new Date(Date.now() - ageMs);
  await Deno.utime(path, t, t);
  return path;
}

/** Keeps a claim file fresh every 10 ms, as its holder's heartbeat does; clear it to stop. */
function beatClaim(lock: string): ReturnType<typeof setInterval> {
  return setInterval(() => {
    const now = new Date();
    Deno.utimeSync(lock, now, now);
  }, 10);
}

/** The names in `out` that are claim files or claims being taken over. */
function claimFiles(out: string): string[] {
  return [...Deno.readDirSync(out)].map((e) => e.name).filter((n) => n.includes(".lock"));
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Short claim timings for the tests (the defaults are 30 s, 3 min and 10 s).
const FAST = { heartbeatMs: 20, staleMs: 5_000, pollMs: 20 };

Deno.test("runGrid(): two concurrent grids on one folder train each run once", async () => {
  const out = await Deno.makeTempDir();
  try {
    const grid = expandGrid(profile(), { dataDir: DATA, catalog: await defaultTaskCatalog() });
    for (const resume of [false, true]) {
      if (resume) {
        // A second round into the same folder, with --resume: both skip every run.
        const { runOne, ids } = countingRunOne();
        const both = await Promise.all(
          [0, 1].map(() =>
            runGrid(grid, { outDir: out, dataDir: DATA, runOne, resume, runLock: FAST })
          ),
        );
        assert.deepEqual(ids(), []);
        assert.deepEqual(both.map((s) => s.skipped), [grid.length, grid.length]);
        continue;
      }
      const trained: string[][] = [[], []];
      const grids = [0, 1].map((g) =>
        runGrid(grid, {
          outDir: out,
          dataDir: DATA,
          // Each run takes a while, so that the two grids overlap on every run.
          runOne: async (spec, opts) => {
            trained[g]!.push(spec.id);
            await delay(15);
            return fakeRunOne(spec, opts);
          },
          runLock: FAST,
        })
      );
      const [a, b] = await Promise.all(grids);
      const all = [...trained[0]!, ...trained[1]!].sort();
      assert.deepEqual(all, grid.map((s) => s.id).sort(), "each run trained exactly once");
      assert.ok(trained[0]!.length > 0 && trained[1]!.length > 0, "both grids trained");
      for (const [s, mine] of [[a!, trained[0]!], [b!, trained[1]!]] as const) {
        assert.equal(s.done, mine.length);
        assert.equal(s.done + s.skipped, grid.length);
        assert.deepEqual(s.failed, []);
        assert.equal(s.doneElsewhere?.length ?? 0, s.skipped, "skipped: done by the other grid");
      }
      for (const s of grid) assert.ok(await readFinished(out, s));
      assert.deepEqual(claimFiles(out), [], "no claim file left");
    }
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("runGrid(): the claim names this process, beats while the run trains, and goes after done or failed", async () => {
  const out = await Deno.makeTempDir();
  try {
    const grid = expandGrid(profile(), { dataDir: DATA, catalog: await defaultTaskCatalog() });
    const seen: { host: string; pid: number; token: string; run: string }[] = [];
    let beat = false;
    const runOne: RunOneFn = async (spec, opts) => {
      const lock = runLockFile(join(out, runFileName(spec)));
      seen.push(JSON.parse(await Deno.readTextFile(lock)));
      // An old mtime is refreshed by the heartbeat within a few beats.
      const old = new Date(Date.now() - 3_600_000);
      await Deno.utime(lock, old, old);
      for (let i = 0; i < 50 && !beat; i++) {
        await delay(10);
        beat = Date.now() - (await Deno.stat(lock)).mtime!.getTime() < 60_000;
      }
      if (spec.id === grid[1]!.id) throw new Error("boom");
      return fakeRunOne(spec, opts);
    };
    const s = await runGrid(grid.slice(0, 2), {
      outDir: out,
      dataDir: DATA,
      runOne,
      runLock: FAST,
    });
    assert.equal(s.done, 1);
    assert.match(s.failed[0]!.error.message, /boom/);
    assert.ok(beat, "the heartbeat refreshed the claim's mtime");
    assert.deepEqual(seen.map((h) => [h.host, h.pid, h.run]), [
      [Deno.hostname(), Deno.pid, grid[0]!.id],
      [Deno.hostname(), Deno.pid, grid[1]!.id],
    ]);
    assert.notEqual(seen[0]!.token, seen[1]!.token);
    assert.deepEqual(claimFiles(out), [], "released after done and after failed");
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("runGrid(): a stale claim (dead pid here, this pid's earlier process, or an old heartbeat elsewhere) is taken over", async () => {
  const out = await Deno.makeTempDir();
  try {
    const grid = expandGrid(profile(), { dataDir: DATA, catalog: await defaultTaskCatalog() });
    const child = new Deno.Command("true").spawn();
    const deadPid = child.pid;
    await child.status;
    const host = Deno.hostname();
    await writeClaim(out, grid[0]!, { host, pid: deadPid });
    await writeClaim(out, grid[1]!, { host, pid: Deno.pid, token: "not-ours" });
    await writeClaim(out, grid[2]!, { host: "elsewhere.example", pid: 4242 }, 600_000);
    // A live claim from elsewhere, beating: not taken over (waited for, then stopped).
    const live = await writeClaim(out, grid[3]!, { host: "elsewhere.example", pid: 4243 });
    const takeovers: string[] = [];
    let waited = false;
    const s = await runGrid(grid.slice(0, 4), {
      outDir: out,
      dataDir: DATA,
      runOne: fakeRunOne,
      runLock: { ...FAST, staleMs: 60_000 },
      onEvent: (e) => {
        if (e.kind === "takeover") {
          takeovers.push(`${e.index} ${e.previous?.host} ${e.previous?.pid}: ${e.why}`);
        }
        if (e.kind === "waiting") waited = true;
      },
      shouldStop: () => waited ? "SIGINT" : undefined,
    });
    assert.equal(s.done, 3);
    assert.equal(takeovers.length, 3, takeovers.join("\n"));
    assert.match(takeovers[0]!, new RegExp(`^0 ${host} ${deadPid}: pid ${deadPid} is not running`));
    assert.match(takeovers[1]!, /^1 .*: pid \d+ is this process, which does not hold it/);
    assert.match(takeovers[2]!, /^2 elsewhere\.example 4242: its heartbeat is 600 s old/);
    assert.deepEqual(s.interrupted, { reason: "SIGINT", notStarted: 1 });
    assert.deepEqual(claimFiles(out), [basename(live)], "only the live claim is left, untouched");
    assert.equal(JSON.parse(await Deno.readTextFile(live)).pid, 4243);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("runGrid(): a run claimed by a live process is waited for and counted as done by it", async () => {
  const out = await Deno.makeTempDir();
  try {
    const grid = expandGrid(profile(), { dataDir: DATA, catalog: await defaultTaskCatalog() });
    const [a, b] = [grid[0]!, grid[1]!];
    const lock = await writeClaim(out, a, { host: "other-host", pid: 77 });
    // The other process: beats, then writes the result and releases its claim.
    const beating = beatClaim(lock);
    let finishing: Promise<void> | undefined;
    const trained = countingRunOne();
    const events: string[] = [];
    let s;
    try {
      s = await runGrid([a, b], {
        outDir: out,
        dataDir: DATA,
        runOne: trained.runOne,
        runLock: { ...FAST, staleMs: 1_000 },
        onEvent: (e) => {
          if (e.kind === "progress") return;
          events.push(e.kind === "skip" ? `skip by ${e.doneBy?.host}` : e.kind);
          if (e.kind === "waiting" && finishing === undefined) {
            assert.deepEqual(e.runs.map((r) => [r.spec.id, r.holder?.pid]), [[a.id, 77]]);
            finishing = (async () => {
              await delay(50); // a few polls see it still claimed
              const r = await fakeRunOne(a, { outDir: out, dataDir: DATA });
              await writeFileAtomic(join(out, runFileName(a)), JSON.stringify(r));
              clearInterval(beating);
              await Deno.remove(lock);
            })();
          }
        },
      });
    } finally {
      clearInterval(beating);
      await finishing;
    }
    assert.deepEqual(trained.ids(), [b.id], "the claimed run is not trained here");
    assert.equal(s.done, 1);
    assert.equal(s.skipped, 1);
    assert.deepEqual(s.doneElsewhere?.map((d) => [d.spec.id, d.holder?.host, d.holder?.pid]), [
      [a.id, "other-host", 77],
    ]);
    assert.deepEqual(events.slice(0, 4), ["claimed", "start", "done", "waiting"]);
    assert.equal(events.at(-1), "skip by other-host");
    assert.deepEqual(claimFiles(out), []);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("runGrid() without resume says it discards a stopped run's checkpoint (naming its step and --resume); with resume, or with none, no line", async () => {
  const out = await Deno.makeTempDir();
  try {
    const grid = expandGrid(profile(), { dataDir: DATA, catalog: await defaultTaskCatalog() });
    const a = grid[0]!;
    const work = join(out, runFileName(a)).replace(/\.json$/, "");
    const leave = async (steps = [2, 4]) => {
      for (const step of steps) await fakeCheckpoint(work, step);
    };
    const attempt = async (resume: boolean) => {
      const lines: string[] = [];
      const found: boolean[] = [];
      const s = await runGrid([a], {
        outDir: out,
        dataDir: DATA,
        resume,
        log: (l) => lines.push(l),
        runOne: async (spec, opts) => {
          found.push(await pathExists(join(opts.outDir, "checkpoints", "step-00000004")));
          return fakeRunOne(spec, opts);
        },
      });
      assert.equal(s.done, 1);
      await Deno.remove(join(out, runFileName(a)));
      return { lines, found };
    };
    await leave();
    const fresh = await attempt(false);
    assert.deepEqual(fresh.found, [false], "trained from step 0");
    assert.deepEqual(fresh.lines, [
      `run ${a.id} (${runFileName(a)}): discarding its checkpoint of step 4 of ` +
      `${a.train.steps} and training from step 0 (--restart)`,
    ]);
    // No checkpoint: nothing to say; a single one is named too.
    assert.deepEqual((await attempt(false)).lines, []);
    await leave([2]);
    assert.match(
      (await attempt(false)).lines.join("\n"),
      /^run \S+ \(.*\): discarding its checkpoint of step 2 of /,
    );
    // With --resume the run continues from it, and nothing is said.
    await leave();
    const resumed = await attempt(true);
    assert.deepEqual(resumed.found, [true]);
    assert.deepEqual(resumed.lines, []);
    // Beside its written result (a later attempt of a finished run, stopped): discarded as the
    // run trains again, and said so, not as a --restart nobody gave.
    const [done] = await fakeRuns([a]);
    await Deno.writeTextFile(join(out, runFileName(a)), JSON.stringify(done));
    await leave([6]);
    const again = await attempt(false);
    assert.deepEqual(again.found, [false]);
    assert.deepEqual(again.lines, [
      `run ${a.id} (${runFileName(a)}): discarding its checkpoint of step 6 of ` +
      `${a.train.steps} and training from step 0 (its result is written; a later attempt left ` +
      `them)`,
    ]);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("runGrid(): a claim that goes stale while waited for is taken over and the run continues from its checkpoints", async () => {
  const out = await Deno.makeTempDir();
  try {
    const grid = expandGrid(profile(), { dataDir: DATA, catalog: await defaultTaskCatalog() });
    const a = grid[0]!;
    await writeClaim(out, a, { host: "other-host", pid: 78 });
    const work = join(out, runFileName(a)).replace(/\.json$/, "");
    await fakeCheckpoint(work, 2);
    const found: boolean[] = [];
    const kinds: string[] = [];
    const s = await runGrid([a], {
      outDir: out,
      dataDir: DATA,
      // Without resume: a run taken over from a dead holder still keeps its checkpoints.
      runOne: async (spec, opts) => {
        found.push(await pathExists(join(opts.outDir, "checkpoints", "step-00000002")));
        return fakeRunOne(spec, opts);
      },
      // Long enough that the claim is still fresh when the grid first looks (a loaded runner),
      // short enough that the wait sees it go stale.
      runLock: { ...FAST, staleMs: 1_500 },
      onEvent: (e) => e.kind !== "progress" && kinds.push(e.kind),
    });
    assert.equal(s.done, 1);
    assert.deepEqual(found, [true], "the other's checkpoint was there to resume from");
    assert.equal(kinds[0], "claimed");
    assert.ok(kinds.includes("waiting"));
    assert.deepEqual(kinds.slice(-3), ["takeover", "start", "done"]);
    assert.deepEqual(claimFiles(out), []);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("runGrid(): a claim taken over while its run trained (this process paused): no result written, folder kept, one line, the run left to the taker", async () => {
  const out = await Deno.makeTempDir();
  try {
    const grid = expandGrid(profile(), { dataDir: DATA, catalog: await defaultTaskCatalog() });
    const [a, b] = [grid[0]!, grid[1]!];
    const fileA = join(out, runFileName(a));
    const workA = fileA.replace(/\.json$/, "");
    // What the taker (another host) wrote: its claim over ours, and its own result, later.
    const theirs = { ...(await fakeRunOne(a, { outDir: out, dataDir: DATA })), wallSeconds: 99 };
    const lines: string[] = [];
    const events: string[] = [];
    let beating: ReturnType<typeof setInterval> | undefined;
    let finishing: Promise<void> | undefined;
    let s;
    try {
      s = await runGrid([a, b], {
        outDir: out,
        dataDir: DATA,
        runLock: { ...FAST, staleMs: 60_000 },
        log: (line) => lines.push(line),
        // Run a: its checkpoint is written, then (this process paused past the stale window) the
        // claim is another's; the fake knows nothing of claimLost and returns its result.
        runOne: async (spec, opts) => {
          if (spec.id !== a.id) return fakeRunOne(spec, opts);
          await Deno.mkdir(join(opts.outDir, "checkpoints", "step-00000002"), { recursive: true });
          await Deno.writeTextFile(join(opts.outDir, "checkpoints", "step-00000002", "x"), "");
          const lock = await writeClaim(out, a, { host: "taker.example", pid: 4321 });
          beating = beatClaim(lock);
          return fakeRunOne(spec, opts);
        },
        onEvent: (e) => {
          if (e.kind === "progress") return;
          events.push(`${e.kind} ${e.spec.id === a.id ? "a" : "b"}`);
          if (e.kind === "waiting" && finishing === undefined) {
            finishing = (async () => {
              // Nothing of a's was written or removed by this grid, which is waiting for it.
              assert.equal(await pathExists(fileA), false, "no result written");
              assert.ok(await pathExists(join(workA, "checkpoints", "step-00000002", "x")));
              await writeFileAtomic(fileA, JSON.stringify(theirs));
              clearInterval(beating);
              await Deno.remove(runLockFile(fileA));
            })();
          }
        },
      });
    } finally {
      clearInterval(beating);
      await finishing;
    }
    assert.deepEqual(lines, [
      `run ${a.id}: its claim was taken over by taker.example pid 4321 while this process's ` +
      `heartbeat was late (paused or busy longer than the stale window, 60 s); leaving the run ` +
      `to it`,
    ]);
    // Not failed, not done: left to the taker, then counted as done by it (skipped).
    assert.equal(s.done, 1);
    assert.deepEqual(s.failed, []);
    assert.equal(s.skipped, 1);
    assert.deepEqual(s.leftToOthers?.map((l) => [l.spec.id, l.holder?.host, l.holder?.pid]), [
      [a.id, "taker.example", 4321],
    ]);
    assert.deepEqual(s.doneElsewhere?.map((d) => [d.spec.id, d.holder?.pid]), [[a.id, 4321]]);
    assert.deepEqual(events.slice(0, 4), ["start a", "start b", "done b", "waiting a"]);
    assert.equal(events.at(-1), "skip a");
    assert.equal(JSON.parse(await Deno.readTextFile(fileA)).wallSeconds, 99, "theirs is kept");
    assert.ok(await pathExists(join(workA, "checkpoints", "step-00000002", "x")), "not discarded");
    assert.deepEqual(claimFiles(out), []);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("runGrid(): a run taken over twice (trained again after the first taker let go) is left to others once, with its last taker", async () => {
  const out = await Deno.makeTempDir();
  try {
    const grid = expandGrid(profile(), { dataDir: DATA, catalog: await defaultTaskCatalog() });
    const a = grid[0]!;
    const fileA = join(out, runFileName(a));
    const theirs = { ...(await fakeRunOne(a, { outDir: out, dataDir: DATA })), wallSeconds: 99 };
    const lines: string[] = [];
    const events: string[] = [];
    let beating: ReturnType<typeof setInterval> | undefined;
    let calls = 0;
    let waits = 0;
    let letGo: Promise<void> | undefined;
    let s;
    try {
      s = await runGrid([a], {
        outDir: out,
        dataDir: DATA,
        runLock: { ...FAST, staleMs: 60_000 },
        log: (line) => lines.push(line),
        // Each attempt: another host's claim over ours while we trained (this process paused).
        runOne: async (spec, opts) => {
          calls++;
          const lock = await writeClaim(out, a, { host: `taker${calls}.example`, pid: calls });
          beating = beatClaim(lock);
          return fakeRunOne(spec, opts);
        },
        onEvent: (e) => {
          if (e.kind === "progress") return;
          events.push(e.kind);
          if (e.kind !== "waiting") return;
          waits++;
          // The first taker lets go without a result (the grid trains the run after all); the
          // second writes its result.
          const last = waits === 2;
          letGo = (async () => {
            clearInterval(beating);
            if (last) await writeFileAtomic(fileA, JSON.stringify(theirs));
            await Deno.remove(runLockFile(fileA));
          })();
        },
      });
    } finally {
      clearInterval(beating);
      await letGo;
    }
    assert.equal(calls, 2, events.join(" "));
    assert.equal(lines.length, 2, "one line per takeover");
    assert.match(lines[1]!, /taken over by taker2\.example pid 2 /);
    // Listed once, with the last taker; counted once, where its second wait ended.
    assert.deepEqual(s.leftToOthers?.map((l) => [l.spec.id, l.holder?.host]), [
      [a.id, "taker2.example"],
    ]);
    assert.equal(s.skipped, 1);
    assert.equal(s.done, 0);
    assert.deepEqual(s.failed, []);
    assert.equal(events.filter((k) => k === "claimed").length, 0, events.join(" "));
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("runGrid(): a run that stops on its lost claim (runOne's claimLost) is left to the taker, not failed", async () => {
  const out = await Deno.makeTempDir();
  try {
    const grid = expandGrid(profile(), { dataDir: DATA, catalog: await defaultTaskCatalog() });
    const a = grid[0]!;
    const lines: string[] = [];
    const seen: (string | undefined)[] = [];
    let stop: string | undefined;
    const s = await runGrid([a], {
      outDir: out,
      dataDir: DATA,
      runLock: { ...FAST, staleMs: 60_000 },
      log: (line) => lines.push(line),
      // As benchmarks/run_one.ts does: claimLost is checked after each step.
      runOne: async (spec, opts) => {
        const lost = (opts as ClaimStopOption).claimLost!;
        seen.push(lost());
        await Deno.writeTextFile(runLockFile(join(out, runFileName(spec))), "{}");
        for (let i = 0; i < 100 && lost() === undefined; i++) await delay(10);
        const reason = lost();
        seen.push(reason);
        throw reason === undefined ? new Error("never lost") : new ClaimLostError(reason, 3);
      },
      onEvent: (e) => {
        if (e.kind === "waiting") stop = "SIGTERM";
      },
      shouldStop: () => stop,
    });
    assert.equal(seen[0], undefined, "held at first");
    assert.match(seen[1] ?? "", /its claim was taken over by another process \(.*\.lock\)$/);
    assert.deepEqual(s.failed, []);
    assert.equal(s.done, 0);
    assert.deepEqual(s.leftToOthers?.map((l) => [l.spec.id, l.holder]), [[a.id, undefined]]);
    assert.deepEqual(s.interrupted, { reason: "SIGTERM", notStarted: 1 });
    assert.match(lines.join("\n"), /^run .*: its claim was taken over by another process while/);
    assert.deepEqual(claimFiles(out).length, 1, "the taker's claim file is left alone");
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("runGrid(): a stop while waiting ends the wait at once; a claimed finished run's folder is left alone", async () => {
  const out = await Deno.makeTempDir();
  try {
    const grid = expandGrid(profile(), { dataDir: DATA, catalog: await defaultTaskCatalog() });
    const [a, b] = [grid[0]!, grid[1]!];
    // b finished earlier; a live process reruns it (its work folder holds its checkpoint).
    await runGrid([b], { outDir: out, dataDir: DATA, runOne: fakeRunOne });
    const workB = join(out, runFileName(b)).replace(/\.json$/, "");
    await Deno.mkdir(workB);
    await Deno.writeTextFile(join(workB, "live"), "");
    await writeClaim(out, b, { host: "other-host", pid: 80 });
    await writeClaim(out, a, { host: "other-host", pid: 79 });
    let stop: string | undefined;
    const started = Date.now();
    const s = await runGrid([a, b], {
      outDir: out,
      dataDir: DATA,
      runOne: () => Promise.reject(new Error("must not train")),
      resume: true,
      runLock: { ...FAST, pollMs: 60_000, staleMs: 120_000 },
      onEvent: (e) => {
        if (e.kind === "waiting") stop = "SIGTERM";
      },
      shouldStop: () => stop,
    });
    assert.ok(Date.now() - started < 2_000, "the 60 s poll did not delay the stop");
    assert.equal(s.skipped, 1);
    assert.deepEqual(s.interrupted, { reason: "SIGTERM", notStarted: 1 });
    assert.deepEqual(s.failed, []);
    assert.ok(await pathExists(join(workB, "live")), "another process's work folder is kept");
    assert.equal(claimFiles(out).length, 2, "the other's claims are untouched");
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("runGrid(): a run that fails for a full disk (ENOSPC), quota or file size limit stops the grid, reported as interrupted", async () => {
  const out = await Deno.makeTempDir();
  try {
    const grid = expandGrid(profile(), { dataDir: DATA, catalog: await defaultTaskCatalog() });
    const ckpt = join(out, "ckpt", "weights.bin");
    // Deno's error for a full disk (as writeFile gives it, code and message), and the same
    // wrapped by a caller that names what it was saving (the code only on the cause).
    const enospc = () =>
      Object.assign(new Error(`No space left on device (os error 28): write '${ckpt}'`), {
        code: "ENOSPC",
      });
    const errors: [Error, string][] = [
      [enospc(), NO_SPACE_REASON],
      [
        new Error(`saving checkpoint step-3 to ${ckpt} failed`, { cause: enospc() }),
        NO_SPACE_REASON,
      ],
      // As Deno gives them without a code: ulimit -f (with SIGXFSZ listened to) and a full quota.
      [new Error(`File too large (os error 27): writefile '${ckpt}'`), "file size limit exceeded"],
      [new Error(`Disk quota exceeded (os error 122): write '${ckpt}'`), "disk quota exceeded"],
    ];
    for (const [thrown, reason] of errors) {
      const { runOne, ids } = countingRunOne((spec) => spec.id === grid[1]!.id && thrown);
      const s = await runGrid(grid, { outDir: out, dataDir: DATA, runOne, runLock: FAST });
      assert.deepEqual(ids(), [grid[0]!.id, grid[1]!.id], "no run starts after it");
      assert.equal(s.interrupted?.reason, reason);
      assert.equal(s.interrupted?.spec?.id, grid[1]!.id);
      assert.equal(s.interrupted?.notStarted, grid.length - 2);
      assert.equal(s.interrupted?.error, thrown, "its error names the path");
      assert.deepEqual(s.failed, []);
      assert.deepEqual(claimFiles(out), []);
    }
    // The claim file itself cannot be created (the disk filled up between runs): the same stop;
    // any other claim failure is that run's failure, and the grid goes on.
    const lock1 = runLockFile(join(out, runFileName(grid[1]!)));
    const open = Deno.open;
    for (
      const [thrown, stops] of [[enospc(), true], [
        new Deno.errors.PermissionDenied("no"),
        false,
      ]] as const
    ) {
      const { runOne, ids } = countingRunOne();
      Deno.open = (path, options) =>
        String(path) === lock1 ? Promise.reject(thrown) : open(path, options);
      let s;
      try {
        s = await runGrid(grid.slice(0, 3), {
          outDir: out,
          dataDir: DATA,
          runOne,
          runLock: FAST,
        });
      } finally {
        Deno.open = open;
      }
      const failure = stops ? s.interrupted?.error : s.failed[0]?.error;
      assert.match(failure?.message ?? "", /^cannot claim the run \(.*\.lock\): /);
      assert.equal(failure?.cause, thrown);
      assert.deepEqual(ids(), stops ? [grid[0]!.id] : [grid[0]!.id, grid[2]!.id]);
      assert.equal(s.interrupted?.reason, stops ? NO_SPACE_REASON : undefined);
    }
    assert.equal(diskLimitOf(new Error("boom", { cause: new Error("bad data") })), undefined);
    assert.equal(
      diskLimitOf(Object.assign(new Error("x"), { code: "ENOSPC" }))?.reason,
      NO_SPACE_REASON,
    );
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("expandGrid(): every model; without a tasks list the benchmark's tasks only; a repeated cell is refused", () => {
  const all = { ...FILE_CATALOG, isAvailable: () => true };
  const grid = expandGrid(profile({ models: ["tiny-v1_1", "mini-v1_1"], tasks: undefined }), {
    dataDir: "unused",
    catalog: all,
  });
  // models x benchmarks x methods x seeds, models outermost.
  assert.equal(grid.length, 2 * 2 * 2 * 2);
  assert.deepEqual(grid.map((s) => s.model), [
    ...Array(8).fill("tiny-v1_1"),
    ...Array(8).fill("mini-v1_1"),
  ]);
  // T5's mixtures (BENCHMARK_TASKS), not every trainable task: WNLI is listed-only.
  const glue = grid.find((s) => s.benchmark === "glue")!;
  assert.deepEqual(glue.tasks, [...BENCHMARK_TASKS.glue]);
  assert.ok(!glue.tasks.includes("wnli"));
  assert.deepEqual(grid.find((s) => s.benchmark === "super_glue")!.tasks, [
    ...BENCHMARK_TASKS.super_glue,
  ]);
  // A profile validated without registry lists may repeat a task (two spellings of one): an
  // error naming it, for a multi-task mixture and a per-task method alike.
  for (const methods of [[{ name: "mtl" }], [{ name: "prompt_tuning", perTask: true }]]) {
    const twice = profile({ tasks: { glue: ["rte", "glue/rte"] }, benchmarks: ["glue"], methods });
    assert.throws(
      () => expandGrid(twice, { dataDir: "unused", catalog: all }),
      /^Error: Profile "t": \$\.tasks\.glue\[1\] repeats task "rte" \(already \$\.tasks\.glue\[0\]\)$/,
    );
  }
  // Past the first two entries too: the first entry that repeats an earlier one, and that one.
  const later = profile({
    tasks: { glue: ["cola", "rte", "glue/rte", "glue/cola"] },
    benchmarks: ["glue"],
  });
  const laterError =
    /^Error: Profile "t": \$\.tasks\.glue\[2\] repeats task "rte" \(already \$\.tasks\.glue\[1\]\)$/;
  assert.throws(() => expandGrid(later, { dataDir: "unused", catalog: all }), laterError);
  assert.throws(() => missingProfileTasks(later, { dataDir: "unused", catalog: all }), laterError);
});

Deno.test("expandGrid(): with the default data's roots, a missing task names each root and what the download did", async () => {
  const catalog = await defaultTaskCatalog();
  const mnli = profile({ tasks: { glue: ["mnli"] } });
  const roots = { cache: "/c/data", mirror: DATA, mirrorExists: true };
  const message = (opts: Partial<ExpandOptions>, p = mnli) => {
    try {
      expandGrid(p, { dataDir: DATA, catalog, ...opts });
    } catch (e) {
      return (e as Error).message;
    }
    assert.fail("expected the missing-task error");
  };
  const where = `under the download cache "/c/data" or the offline mirror "${DATA}"`;
  const failed = "bench could not download them (the warning above says why); once that is " +
    "fixed, rerun, or pass --data-dir naming a folder that has them";
  const advise = "download them (deno task download) or pass --data-dir";
  const missing = 'Profile "t": missing glue task files for mnli (glue/MNLI/train.tsv, ' +
    "glue/MNLI/dev_matched.tsv, glue/MNLI/dev_mismatched.tsv)";
  assert.equal(message({ defaultData: roots }), `${missing} ${where}; ${advise}`);
  assert.equal(
    message({ defaultData: { ...roots, downloadFailed: true } }),
    `${missing} ${where}; ${failed}`,
  );
  // No mirror: the cache alone, and where the mirror was looked for.
  assert.equal(
    message({ defaultData: { ...roots, mirror: "/nowhere/data", mirrorExists: false } }),
    `${missing} under the download cache "/c/data" (no offline mirror at "/nowhere/data"; ` +
      `HYPERPROMPT_SHARED=DIR names it); ${advise}`,
  );
  // No cache folder can be named: the mirror alone.
  assert.equal(
    message({ defaultData: { mirror: DATA, mirrorExists: true, downloadFailed: true } }),
    `${missing} under the offline mirror "${DATA}"; ${failed}`,
  );
  // A train-only task: after a failed download, no "deno task download" either.
  const dpr = profile({ extraTrainTasks: { super_glue: ["dpr"] } });
  assert.equal(
    message({ defaultData: { ...roots, downloadFailed: true } }, dpr),
    'Profile "t": missing super_glue train-only task files for dpr ' +
      `($.extraTrainTasks.super_glue: super_glue/DPR/train.c.txt) ${where}; ${failed}`,
  );
  // A named folder: its own message, whatever the roots say.
  const named = message({
    dataDirNamedBy: "--data-dir",
    defaultData: { ...roots, downloadFailed: true },
  });
  assert.ok(
    named.startsWith(`${missing} under "${DATA}"; that folder was named by --data-dir: put`),
    named,
  );
});

Deno.test("expandGrid(): skipMissingTasks skips only unlisted tasks, says which, and never down to none", async () => {
  const catalog = await defaultTaskCatalog();
  // A task the profile lists is never skipped: its files missing is the usual error.
  assert.throws(
    () =>
      expandGrid(profile({ tasks: { glue: ["rte", "mnli"] }, skipMissingTasks: true }), {
        dataDir: DATA,
        catalog,
      }),
    /missing glue task files for mnli \(glue\/MNLI\/train\.tsv, [^)]*\) under/,
  );
  // The tasks it leaves out: one note per benchmark (onNote), none where none is left out.
  const notes: string[] = [];
  const onNote = (m: string) => notes.push(m);
  const every = profile({ tasks: undefined, skipMissingTasks: true });
  expandGrid(every, { dataDir: DATA, catalog, onNote });
  assert.equal(notes.length, 2, notes.join("\n"));
  assert.equal(
    notes[0],
    `Profile "t": leaving out glue tasks qqp, mnli, qnli (skipMissingTasks; no train and ` +
      `validation files under "${DATA}"): its glue averages cover the other 5 tasks only`,
  );
  assert.match(notes[1]!, /^Profile "t": leaving out super_glue tasks? [a-z_, ]+ \(skipMiss/);
  notes.length = 0;
  expandGrid(profile({ skipMissingTasks: true }), { dataDir: DATA, catalog, onNote });
  assert.deepEqual(notes, []);
  // An empty data folder leaves no task to train: an error, not a grid of empty mixtures.
  const empty = await Deno.makeTempDir();
  try {
    assert.throws(
      () =>
        expandGrid(profile({ tasks: undefined, benchmarks: ["glue"], skipMissingTasks: true }), {
          dataDir: empty,
          catalog,
        }),
      /^Error: Profile "t": no glue task has train and validation files under ".*"; download them/,
    );
  } finally {
    await Deno.remove(empty, { recursive: true });
  }
});

Deno.test("runGrid() with resume reruns a finished run whose kept weights folder is gone, and says why", () =>
  inTempDir(async (out) => {
    const grid = expandGrid(profile(), { dataDir: DATA, catalog: await defaultTaskCatalog() });
    const specs = grid.slice(0, 2);
    await runGrid(specs, { outDir: out, dataDir: DATA, runOne: fakeRunOne, log: () => {} });
    // Both results name kept weights (train.saveWeights); only the first one's folder is here.
    for (const spec of specs) {
      const file = join(out, runFileName(spec));
      const r = JSON.parse(await Deno.readTextFile(file));
      const weights = { dir: weightsDir(spec), step: 2, backboneTrained: false };
      await Deno.writeTextFile(file, JSON.stringify({ ...r, weights }));
    }
    await Deno.mkdir(join(out, weightsDir(specs[0]!)), { recursive: true });
    const { runOne, ids } = countingRunOne();
    const replaced: (string | undefined)[] = [];
    const s = await runGrid(specs, {
      outDir: out,
      dataDir: DATA,
      runOne,
      resume: true,
      log: () => {},
      onEvent: (e) => {
        if (e.kind === "start") replaced.push(e.replaces);
      },
    });
    assert.deepEqual(ids(), [specs[1]!.id], "the first kept, the second trained again");
    assert.equal(s.skipped, 1);
    assert.deepEqual(replaced, [
      `${join(out, runFileName(specs[1]!))}: its kept weights ` +
      `${join(out, weightsDir(specs[1]!))} are missing`,
    ]);
  }));

Deno.test("runGrid() sweeps what killed weight moves left in <out>/weights, and keeps a live one", () =>
  inTempDir(async (out) => {
    const grid = expandGrid(profile(), { dataDir: DATA, catalog: await defaultTaskCatalog() });
    const w = join(out, "weights");
    await Deno.mkdir(w);
    const dead = (n: number) => `999999-0123456789a${n}`; // tags of a process that has ended
    const folder = async (name: string) => {
      await Deno.mkdir(join(w, name));
      await Deno.writeTextFile(join(w, name, "method.safetensors"), name);
    };
    await folder(`.a.tmp-${dead(1)}`); // killed while moving weights in: nobody holds it
    await folder(`.b.old-${dead(2)}`); // killed between the swap's two renames: b is missing
    await folder("c");
    await folder(`.c.old-${dead(3)}`); // killed before removing the old c
    await folder(`.d.del-${dead(4)}`); // killed while removing
    const live = await makeHeldTempDir(w, ".e"); // another grid moving weights in now
    try {
      await runGrid(grid.slice(0, 1), {
        outDir: out,
        dataDir: DATA,
        runOne: fakeRunOne,
        log: () => {},
      });
      assert.deepEqual(
        [...Deno.readDirSync(w)].map((e) => e.name).sort(),
        [basename(live.path), "b", "c"],
      );
      assert.equal(
        await Deno.readTextFile(join(w, "b", "method.safetensors")),
        `.b.old-${dead(2)}`,
      );
      assert.equal(await Deno.readTextFile(join(w, "c", "method.safetensors")), "c");
    } finally {
      live.release();
    }
  }));

Deno.test("runGrid(): a claim taken over just after the result was written leaves the run's folder to its new holder", () =>
  inTempDir(async (out) => {
    const grid = expandGrid(profile(), { dataDir: DATA, catalog: await defaultTaskCatalog() });
    const spec = grid[0]!;
    const file = join(out, runFileName(spec));
    const workDir = file.slice(0, -".json".length);
    const s = await runGrid([spec], {
      outDir: out,
      dataDir: DATA,
      log: () => {},
      runOne: async (spec, opts) => {
        // A checkpoint: what the new holder would resume from.
        await Deno.writeTextFile(join(opts.outDir, "checkpoint.txt"), "step 2");
        return await fakeRunOne(spec, opts);
      },
      onResultWritten: async (_spec, written) => {
        assert.equal(written, file);
        await Deno.writeTextFile(runLockFile(file), "{}"); // another process's claim now
      },
    });
    // The result, written while the claim was still ours, stays and counts as done here; the
    // folder and the claim file are the new holder's.
    assert.equal(s.done, 1);
    assert.equal(s.failed.length, 0);
    assert.ok(await pathExists(file));
    assert.equal(await Deno.readTextFile(join(workDir, "checkpoint.txt")), "step 2");
    assert.equal(await Deno.readTextFile(runLockFile(file)), "{}");
  }));

Deno.test("FILE_CATALOG: a task needs its train and validation files, not its test files (MNLI's test_matched and test_mismatched too)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(join(dir, "glue", "MNLI"), { recursive: true });
    for (const f of ["train.tsv", "dev_matched.tsv", "dev_mismatched.tsv"]) {
      await Deno.writeTextFile(join(dir, "glue", "MNLI", f), "x\n");
    }
    assert.equal(FILE_CATALOG.isAvailable("glue", "mnli", dir), true);
    // As the default catalog says.
    assert.equal((await defaultTaskCatalog()).isAvailable("glue", "mnli", dir), true);
    await Deno.remove(join(dir, "glue", "MNLI", "dev_mismatched.tsv"));
    assert.equal(FILE_CATALOG.isAvailable("glue", "mnli", dir), false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
