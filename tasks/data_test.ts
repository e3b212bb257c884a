import assert from "node:assert/strict";
import { basename, join } from "node:path";
import { sharedPath } from "../model/shared_dir.ts";
import { isFileSync, makeHeldTempDirSync } from "../model/fs.ts";
import { flushesOf, recordFlushes } from "../model/fs_testing.ts";
import {
  availableTasks,
  checkDataDir,
  chooseDataDir,
  CORPUS_TASKS,
  corpusSplits,
  countRows,
  countRowsBytes,
  defaultCacheDir,
  defaultDataDir,
  missingTasksMessage,
  partitionTasks,
  resolveDataDir,
  taskFileStatus,
} from "./data.ts";
import { sha256Hex } from "./download.ts";
import { findTaskSource, TASK_SOURCES } from "./sources.ts";
import { BENCHMARK_TASKS, TASKS, TRAIN_ONLY_TASKS } from "./registry.ts";

const MIRROR = sharedPath("data");

Deno.test("every mirror file matches the source table: full sha256 and row count", async () => {
  const sums = (await Deno.readTextFile(join(MIRROR, "SHA256SUMS"))).trim().split("\n");
  const specs = new Map(TASK_SOURCES.flatMap((t) => t.files.map((f) => [f.path, f] as const)));
  let checked = 0;
  for (const line of sums) {
    const [hash, rel] = line.split(/\s+/);
    const path = rel!.replace(/^\.\//, "");
    if (path === "glue/MRPC/dev_ids.tsv") continue; // raw input of the MRPC build
    const spec = specs.get(path);
    assert.ok(spec, `mirror file ${path} is in TASK_SOURCES`);
    assert.equal(spec.sha256, hash, `${path}: sha256 in sources.ts`);
    const bytes = await Deno.readFile(join(MIRROR, path));
    assert.equal(sha256Hex(bytes), hash, `${path}: mirror digest`);
    assert.equal(countRows(new TextDecoder().decode(bytes), spec, path), spec.rows, `${path} rows`);
    checked++;
  }
  assert.equal(checked, 25);
});

Deno.test("availableTasks on the mirror: train+validation by default, per split on request", () => {
  const avail = availableTasks(MIRROR);
  assert.deepEqual(avail, ["cola", "sst2", "mrpc", "stsb", "rte", "cb", "rte_sg"]);
  const val = availableTasks(MIRROR, { splits: ["validation"] });
  for (const t of ["boolq", "copa", "wic", "wsc"]) assert.ok(val.includes(t), t);
  assert.ok(!val.includes("qqp") && !val.includes("multirc"));
  const boolq = taskFileStatus(MIRROR).find((s) => s.task === "boolq")!;
  assert.deepEqual(boolq.splits, { train: false, validation: true, test: false });
  assert.deepEqual(boolq.missing, ["super_glue/BoolQ/train.jsonl", "super_glue/BoolQ/test.jsonl"]);
});

Deno.test("missingTasksMessage names missing tasks, files, and how to get them", () => {
  assert.equal(missingTasksMessage(MIRROR, ["cola", "rte"]), undefined);
  const msg = missingTasksMessage(MIRROR, ["cola", "qqp", "boolq"])!;
  assert.match(msg, /2 task\(s\): qqp, boolq/);
  assert.match(msg, /glue\/QQP\/train\.tsv/);
  assert.match(msg, /super_glue\/BoolQ\/train\.jsonl/);
  assert.match(msg, /deno task download --tasks qqp,boolq/);
  assert.match(msg, /--data-dir/);
  assert.match(msg, /tasks present: cola/);
  assert.deepEqual(partitionTasks(MIRROR, ["cola", "qqp"]).present, ["cola"]);
});

Deno.test("resolveDataDir: --data-dir wins and must exist; else cache dir; env overrides", () => {
  assert.equal(resolveDataDir({ dataDir: MIRROR, cacheDir: "/x" }), MIRROR);
  assert.throws(
    () => resolveDataDir({ dataDir: "/no/such/dir/xyz" }),
    /^Error: --data-dir \/no\/such\/dir\/xyz: no such folder$/,
  );
  const file = join(MIRROR, "glue/CoLA/train.tsv");
  assert.throws(
    () => resolveDataDir({ dataDir: file }),
    new RegExp(`^Error: --data-dir ${file}: is a file, not a folder$`),
  );
  assert.equal(resolveDataDir({ cacheDir: "/tmp/c" }), "/tmp/c");
  const old = Deno.env.get("HYPERPROMPT_CACHE");
  try {
    Deno.env.set("HYPERPROMPT_CACHE", "/tmp/hpc");
    assert.equal(defaultCacheDir(), "/tmp/hpc/data");
    assert.equal(resolveDataDir(), "/tmp/hpc/data");
  } finally {
    if (old === undefined) Deno.env.delete("HYPERPROMPT_CACHE");
    else Deno.env.set("HYPERPROMPT_CACHE", old);
  }
});

Deno.test("checkDataDir: one message for a missing folder or a file, naming the flag or variable", () => {
  checkDataDir(MIRROR);
  checkDataDir(MIRROR, "HYPERPROMPT_DATA");
  const file = join(MIRROR, "glue/CoLA/train.tsv");
  const cases: [string, string | undefined, string][] = [
    ["/no/such/dir/xyz", undefined, "--data-dir /no/such/dir/xyz: no such folder"],
    ["/no/such/dir/xyz", "HYPERPROMPT_DATA", "HYPERPROMPT_DATA=/no/such/dir/xyz: no such folder"],
    [join(file, "x"), "--data-dir", `--data-dir ${join(file, "x")}: no such folder`],
    [file, undefined, `--data-dir ${file}: is a file, not a folder`],
    [file, "HYPERPROMPT_DATA", `HYPERPROMPT_DATA=${file}: is a file, not a folder`],
  ];
  for (const [dir, namedBy, message] of cases) {
    assert.throws(() => checkDataDir(dir, namedBy), { message });
  }
});

Deno.test("findTaskSource accepts ids, registry names and common spellings", () => {
  assert.equal(findTaskSource("rte").id, "glue/rte");
  assert.equal(findTaskSource("rte_sg").id, "super_glue/rte");
  assert.equal(findTaskSource("super_glue/rte").id, "super_glue/rte");
  assert.equal(findTaskSource("superglue-rte").id, "super_glue/rte");
  assert.equal(findTaskSource("SST-2").id, "glue/sst2");
  assert.equal(findTaskSource("AX-b").id, "super_glue/axb");
  assert.equal(findTaskSource("CoLA").name, "cola");
  assert.throws(() => findTaskSource("squad"), /unknown task "squad"; known: glue\/cola/);
});

Deno.test("countRows: JSON counts for MultiRC answers and ReCoRD queries; errors name the line", () => {
  const mrc = JSON.stringify({
    passage: { questions: [{ answers: [{}, {}] }, { answers: [{}] }] },
  });
  assert.equal(countRows(`${mrc}\n${mrc}\n`, { count: "multirc_answers", header: false }, "m"), 6);
  const rec = JSON.stringify({ qas: [{}, {}, {}] });
  assert.equal(countRows(`${rec}\n`, { count: "record_queries", header: false }, "r"), 3);
  assert.throws(
    () => countRows(`${rec}\n{bad\n`, { count: "record_queries", header: false }, "f.jsonl"),
    /f\.jsonl:2: invalid JSON/,
  );
  assert.equal(countRows("h\na\nb", { header: true }, "t"), 2, "no final newline (CoLA dev)");
});

Deno.test("countRowsBytes agrees with countRows on the mirror and names the bad JSON line", async () => {
  for (const t of TASK_SOURCES) {
    for (const f of t.files) {
      let bytes: Uint8Array;
      try {
        bytes = await Deno.readFile(join(MIRROR, f.path));
      } catch {
        continue;
      }
      assert.equal(countRowsBytes(bytes, f, f.path), f.rows, f.path);
    }
  }
  const enc = new TextEncoder();
  const spec = { count: "record_queries" as const, header: false };
  assert.equal(countRowsBytes(enc.encode('{"qas": [1]}\r\n\n{"qas": [1, 2]}'), spec, "r"), 3);
  assert.throws(
    () => countRowsBytes(enc.encode('{"qas": []}\n{"qas": [1]}\n{oops\n'), spec, "f.jsonl"),
    /f\.jsonl:3: invalid JSON/,
  );
});

/** Runs `f` with the given environment variables set (undefined: unset), then restores them. */
function withEnv<T>(vars: Record<string, string | undefined>, f: () => T): T {
  const old = Object.fromEntries(Object.keys(vars).map((k) => [k, Deno.env.get(k)]));
  const set = (v: Record<string, string | undefined>) => {
    for (const [k, x] of Object.entries(v)) {
      x === undefined ? Deno.env.delete(k) : Deno.env.set(k, x);
    }
  };
  set(vars);
  try {
    return f();
  } finally {
    set(old);
  }
}

/** Writes `files` (layout path → text) under `root` and lists them in its manifest. */
async function fakeCache(root: string, files: Record<string, string>, listed = true) {
  const manifest = { version: 1, files: {} as Record<string, unknown>, archives: {} };
  await Deno.mkdir(root, { recursive: true });
  for (const [path, text] of Object.entries(files)) {
    await Deno.mkdir(join(root, path, ".."), { recursive: true });
    await Deno.writeTextFile(join(root, path), text);
    if (listed) manifest.files[path] = { task: "t", sha256: "", bytes: text.length, rows: 1 };
  }
  await Deno.writeTextFile(join(root, "manifest.json"), JSON.stringify(manifest));
}

Deno.test("defaultDataDir: an empty or unlisted download cache does not hide the mirror", async () => {
  const root = await Deno.makeTempDir();
  try {
    const env = { HYPERPROMPT_CACHE: root, HYPERPROMPT_DATA: undefined };
    // A failed download leaves the cache folder (and an empty manifest) behind.
    await fakeCache(join(root, "data"), {});
    assert.equal(withEnv(env, defaultDataDir), MIRROR);
    // Files the manifest does not list (or with another size) are not the cache's.
    await fakeCache(join(root, "data"), { "glue/CoLA/train.tsv": "x\t1\t\ty\n" }, false);
    assert.equal(withEnv(env, defaultDataDir), MIRROR);
    assert.equal(withEnv({ ...env, HYPERPROMPT_DATA: "/some/dir" }, defaultDataDir), "/some/dir");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("chooseDataDir: cache files where the manifest lists them, the mirror for the rest", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const cache = join(tmp, "cache", "data");
    const mirror = join(tmp, "mirror");
    const qqp = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n";
    await fakeCache(cache, { "glue/QQP/train.tsv": qqp + "0\t1\t2\ta\tb\t0\n" });
    // A cache file whose size no longer matches the manifest is not used.
    await Deno.writeTextFile(join(cache, "glue/QQP/dev.tsv"), qqp);
    const mirrorFiles: [string, string][] = [
      ["glue/CoLA/train.tsv", "mirror cola\n"],
      ["glue/QQP/dev.tsv", "mirror dev\n"],
    ];
    for (const [p, text] of mirrorFiles) {
      await Deno.mkdir(join(mirror, p, ".."), { recursive: true });
      await Deno.writeTextFile(join(mirror, p), text);
    }
    const manifest = JSON.parse(await Deno.readTextFile(join(cache, "manifest.json")));
    manifest.files["glue/QQP/dev.tsv"] = { task: "t", sha256: "", bytes: 1, rows: 0 };
    await Deno.writeTextFile(join(cache, "manifest.json"), JSON.stringify(manifest));
    const notes: string[] = [];
    let dir = "";
    const flushes = await recordFlushes(() => {
      dir = chooseDataDir({ cacheDir: cache, mirrorDir: mirror, log: (l) => notes.push(l) });
    });
    // The link folder's rename into merged/ is followed by a flush of merged/, and preceded by
    // the flush of each of its folders (under the temporary name, deepest first).
    if (Deno.build.os !== "windows") {
      const merged = join(cache, "merged");
      assert.deepEqual(flushesOf(flushes, merged), [[basename(dir)]]);
      const before = flushes.slice(0, flushes.findIndex((f) => f.dir === merged));
      const tmp = before.at(-1)!.dir;
      assert.match(basename(tmp), new RegExp(`^${basename(dir)}\\.tmp-${Deno.pid}-`));
      const order = before.map((f) => f.dir.slice(tmp.length));
      assert.deepEqual([...order].sort(), ["", "/glue", "/glue/CoLA", "/glue/QQP"]);
      assert.deepEqual(order.slice(2), ["/glue", ""]);
      assert.deepEqual(before.at(-1)!.entries, [".complete", "glue"]);
    }
    assert.notEqual(dir, cache);
    assert.notEqual(dir, mirror);
    assert.equal(
      await Deno.readTextFile(join(dir, "glue/QQP/train.tsv")),
      qqp + "0\t1\t2\ta\tb\t0\n",
    );
    assert.equal(await Deno.readTextFile(join(dir, "glue/CoLA/train.tsv")), "mirror cola\n");
    assert.equal(await Deno.readTextFile(join(dir, "glue/QQP/dev.tsv")), "mirror dev\n");
    assert.ok(!isFileSync(join(dir, "glue/SST-2/train.tsv")));
    assert.match(notes.join("\n"), /1 file\(s\) from the download cache .*, 2 from the mirror/);
    // The same choice again reuses the same folder, and sweeps the temporary link folders of
    // killed builds (nobody holds them: pid 999999999 is above any pid_max); a build this
    // process holds, legacy names still young, and other names stay.
    const merged = join(cache, "merged");
    const digest = dir.slice(merged.length + 1);
    const dead = `${digest}.tmp-999999999-0123456789ab`;
    const legacy = `${digest}.tmp-999999999-01234567-89ab-cdef-0123-456789abcdef`;
    const kept = [
      legacy,
      `${digest}.tmp-1`,
      "0123456789abcdef.bak",
      `x${digest}.tmp-2-0123456789ab`,
    ];
    for (const n of [dead, ...kept]) await Deno.mkdir(join(merged, n));
    const live = makeHeldTempDirSync(merged, digest);
    try {
      assert.equal(chooseDataDir({ cacheDir: cache, mirrorDir: mirror, log: () => {} }), dir);
      assert.deepEqual(
        [...Deno.readDirSync(merged)].map((e) => e.name).sort(),
        [digest, basename(live.path), ...kept].sort(),
      );
    } finally {
      live.release();
    }
    // Only one root has files: that root itself.
    assert.equal(
      chooseDataDir({ cacheDir: cache, mirrorDir: join(tmp, "none"), log: () => {} }),
      cache,
    );
    assert.equal(
      chooseDataDir({ cacheDir: join(tmp, "none"), mirrorDir: mirror, log: () => {} }),
      mirror,
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("corpusSplits: the fixed corpus tasks' train and test splits present, never a scored split (CORPUS_TASKS, not the registry's keys: the registry is frozen, so no test can register a later task)", () => {
  // Every task of the benchmarks, their train-only tasks and diagnostics is a corpus task, and
  // every corpus task is registered; the list is fixed (CORPUS_TASKS), not the registry's keys.
  const named = [
    ...BENCHMARK_TASKS.glue,
    ...BENCHMARK_TASKS.super_glue,
    ...TRAIN_ONLY_TASKS.glue,
    ...TRAIN_ONLY_TASKS.super_glue,
    "ax",
    "axb",
    "axg",
  ];
  for (const t of named) assert.ok(CORPUS_TASKS.includes(t), t);
  for (const t of CORPUS_TASKS) assert.ok(Object.hasOwn(TASKS, t), t);
  assert.ok(Object.isFrozen(CORPUS_TASKS));
  const data = sharedPath("data");
  const splits = corpusSplits(data);
  const has = (task: string, split: string) => splits.some(([t, s]) => t === task && s === split);
  assert.ok(has("rte", "train") && has("cola", "train"), JSON.stringify(splits));
  // The diagnostics' test splits are what the benchmark scores: never in the corpus.
  for (const d of ["ax", "axb", "axg"]) assert.ok(!has(d, "test"), d);
  for (const [t] of splits) assert.ok(CORPUS_TASKS.includes(t), t);
  // In task-name order.
  const names = splits.map(([t]) => t);
  assert.deepEqual(names, [...names].sort());
  // An empty folder: an empty corpus.
  const empty = Deno.makeTempDirSync();
  try {
    assert.deepEqual(corpusSplits(empty), []);
  } finally {
    Deno.removeSync(empty);
  }
});
