import assert from "node:assert/strict";
import { basename, join } from "node:path";
import { unzipSync } from "fflate";
import { loadExamples } from "../tasks/load.ts";
import { BENCHMARK_TASKS, getTask } from "../tasks/registry.ts";
import type { Example, TaskSplit } from "../tasks/types.ts";
import { sharedPath } from "../model/shared_dir.ts";
import { declaredFlags, HELP_WIDTH } from "../model/usage.ts";
import { fakeRuns, fakeSpec } from "./results_testing.ts";
import { runFileName, type RunSpec } from "./spec.ts";
import { UsageError } from "../model/usage.ts";
import { pathExists } from "../model/fs.ts";
import {
  buildSubmission,
  convertFile,
  main,
  SUBMISSION_FILES,
  SUBMISSION_USAGE,
  type SubmissionFile,
  writeSubmission,
} from "./submission.ts";

const MIRROR = sharedPath("data");
const enc = JSON.stringify;

/**
 * The prediction of the i-th test example of a task: its label words in turn, every 7th garbage;
 * STS-B 0.0, 0.2, ... 4.8, then 5.2 (out of range: clipped to 5.0).
 */
function predictionOf(task: string, i: number): string {
  if (i % 7 === 0) return "garbage!";
  const t = getTask(task);
  if (t.converter === "stsb") return i % 26 === 25 ? "5.2" : ((i % 26) / 5).toFixed(1);
  if (t.converter === "record") return `answer ${i}`;
  if (t.converter === "wsc_simple") return i % 2 === 0 ? "the nobody" : "";
  return t.labelWords[i % t.labelWords.length]!;
}

/** The test splits a task's prediction file covers (as the run writes them). */
function testSplits(task: string): TaskSplit[] {
  return task === "mnli" ? ["test_matched", "test_mismatched"] : ["test"];
}

/**
 * Writes a fake run's result JSON into `dir`, with `testPredictions` for `tasks` (each task's
 * prediction file made from the test files of `dataDir`, its best step the file's step).
 */
async function writeRun(
  dir: string,
  spec: RunSpec,
  dataDir: string,
  tasks: readonly string[],
  edit: (r: Record<string, unknown>) => void = () => {},
  predict: (task: string, i: number) => string = predictionOf,
): Promise<string> {
  const [result] = await fakeRuns([spec]);
  const stem = runFileName(spec).replace(/\.json$/, "");
  const rel = join("test_predictions", stem);
  const files: Record<string, { step: number; examples: number }> = {};
  for (const task of tasks) {
    const lines: string[] = [];
    for (const split of testSplits(task)) {
      const ex = await loadExamples(task, split, dataDir, { checkRows: false });
      ex.forEach((e, i) =>
        lines.push(enc({ id: e.id, split: e.split ?? "test", prediction: predict(task, i) }))
      );
    }
    const trained = { ax: "mnli", axb: "rte_sg", axg: "rte_sg" }[task] ?? task;
    const step = result!.best[trained]?.step ?? 2;
    files[task] = { step, examples: lines.length };
    await Deno.mkdir(join(dir, rel), { recursive: true });
    await Deno.writeTextFile(join(dir, rel, `${task}.jsonl`), lines.join("\n") + "\n");
  }
  const raw = { ...result, testPredictions: { dir: rel, files } } as Record<string, unknown>;
  edit(raw);
  const path = join(dir, runFileName(spec));
  await Deno.writeTextFile(path, JSON.stringify(raw));
  return path;
}

async function writeTsv(path: string, rows: string[][]): Promise<void> {
  await Deno.mkdir(join(path, ".."), { recursive: true });
  await Deno.writeTextFile(path, rows.map((r) => r.join("\t")).join("\n") + "\n");
}

async function writeJsonl(path: string, rows: unknown[]): Promise<void> {
  await Deno.mkdir(join(path, ".."), { recursive: true });
  await Deno.writeTextFile(path, rows.map((r) => enc(r) + "\n").join(""));
}

/** The first `n` rows of a mirror's jsonl file, labels removed (a test file's shape). */
async function unlabelled(rel: string, n: number): Promise<unknown[]> {
  const text = await Deno.readTextFile(join(MIRROR, rel));
  return text.split("\n").filter((l) => l !== "").slice(0, n).map((l) => {
    const { label: _l, ...rest } = JSON.parse(l);
    return rest;
  });
}

/**
 * A data folder: links to the mirror's test files of `real` (layout paths), plus tiny
 * synthetic test files in the official layout for the tasks the mirror has no test file of.
 */
async function dataDir(real: readonly string[]): Promise<string> {
  const d = await Deno.makeTempDir();
  for (const rel of real) {
    await Deno.mkdir(join(d, rel, ".."), { recursive: true });
    await Deno.symlink(join(MIRROR, rel), join(d, rel));
  }
  const nli = (n: number) =>
    Array.from({ length: n }, (_, i) => [String(i), `premise ${i}`, `hypothesis ${i}`]);
  await writeTsv(join(d, "glue/QQP/test.tsv"), [["id", "question1", "question2"], ...nli(5)]);
  await writeTsv(join(d, "glue/QNLI/test.tsv"), [["index", "question", "sentence"], ...nli(4)]);
  await writeTsv(join(d, "glue/WNLI/test.tsv"), [["index", "sentence1", "sentence2"], ...nli(3)]);
  await writeTsv(join(d, "glue/MNLI/test_matched.tsv"), [
    ["index", "sentence1", "sentence2"],
    ...nli(4),
  ]);
  // Indices as the official mismatched file: its own, not a continuation of matched.
  await writeTsv(join(d, "glue/MNLI/test_mismatched.tsv"), [
    ["index", "sentence1", "sentence2"],
    ...nli(3).map(([i, a, b]) => [String(100 + Number(i)), a!, b!]),
  ]);
  await writeTsv(join(d, "glue/diagnostic/diagnostic.tsv"), [
    ["index", "sentence1", "sentence2"],
    ...nli(6),
  ]);
  const sg = (t: string) => join(d, "super_glue", t);
  await writeJsonl(
    join(sg("BoolQ"), "test.jsonl"),
    await unlabelled("super_glue/BoolQ/val.jsonl", 4),
  );
  await writeJsonl(
    join(sg("COPA"), "test.jsonl"),
    await unlabelled("super_glue/COPA/val.jsonl", 4),
  );
  await writeJsonl(join(sg("WiC"), "test.jsonl"), await unlabelled("super_glue/WiC/val.jsonl", 4));
  await writeJsonl(join(sg("WSC"), "test.jsonl"), await unlabelled("super_glue/WSC/val.jsonl", 4));
  await writeJsonl(join(sg("MultiRC"), "test.jsonl"), [
    {
      idx: 0,
      version: 1.1,
      passage: {
        text: "Sent 1: Ann ran.",
        questions: [
          {
            question: "Who ran?",
            idx: 0,
            answers: [{ text: "Ann", idx: 0 }, { text: "Bo", idx: 1 }],
          },
          { question: "Did Ann run?", idx: 1, answers: [{ text: "yes", idx: 2 }] },
        ],
      },
    },
    {
      idx: 1,
      version: 1.1,
      passage: {
        text: "Sent 1: Bo sat.",
        questions: [{ question: "Who sat?", idx: 2, answers: [{ text: "Bo", idx: 3 }] }],
      },
    },
  ]);
  await writeJsonl(join(sg("ReCoRD"), "test.jsonl"), [{
    idx: 5,
    source: "x",
    passage: { text: "Alice met Bob.", entities: [{ start: 0, end: 4 }, { start: 10, end: 12 }] },
    qas: [{ query: "@placeholder met Bob.", idx: 70 }, {
      query: "Alice met @placeholder.",
      idx: 71,
    }],
  }]);
  await writeJsonl(join(sg("AX-b"), "AX-b.jsonl"), [
    { sentence1: "A b.", sentence2: "A.", idx: "0", label: "entailment" },
    { sentence1: "C d.", sentence2: "E.", idx: "1", label: "not_entailment" },
  ]);
  await writeJsonl(join(sg("AX-g"), "AX-g.jsonl"), [
    { premise: "He ran.", hypothesis: "He moved.", idx: 0, pair_id: 1, label: "entailment" },
    { premise: "She ran.", hypothesis: "She moved.", idx: 1, pair_id: 1, label: "entailment" },
  ]);
  return d;
}

const GLUE_REAL = ["CoLA", "SST-2", "MRPC", "STS-B", "RTE"].map((t) => `glue/${t}/test.tsv`);
const SG_REAL = ["CB", "RTE"].map((t) => `super_glue/${t}/test.jsonl`);

/** Runs `main`, capturing the output. */
async function cli(args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, { log: (s) => out.push(s), error: (s) => err.push(s) });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

/** The `index` column of a GLUE test file, read by splitting lines (independent of the loader). */
async function indexColumn(rel: string, column = "index"): Promise<string[]> {
  const lines = (await Deno.readTextFile(join(MIRROR, rel))).split("\n").filter((l) => l !== "");
  const at = lines[0]!.split("\t").indexOf(column);
  return lines.slice(1).map((l) => l.split("\t")[at]!);
}

function tsvRows(text: string): string[][] {
  return text.trimEnd().split("\n").map((l) => l.split("\t"));
}

Deno.test("GLUE: every official file from a multi-task run; mirror ids, row counts and label formats", async () => {
  const data = await dataDir(GLUE_REAL);
  const runs = await Deno.makeTempDir();
  try {
    const tasks = ["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte"];
    await writeRun(
      runs,
      fakeSpec("p", "tiny-v1_1", "mtl", "mtl", 0, "glue", "random", { tasks }),
      data,
      [...tasks, "ax"],
    );
    const log: string[] = [];
    // The synthetic QQP, MNLI, QNLI, WNLI and AX test files are not the official size.
    const sub = await buildSubmission({
      runs,
      criteria: { benchmark: "glue", method: "mtl" },
      dataDir: data,
      allowPartial: true,
      log: (s) => log.push(s),
    });
    assert.deepEqual(sub.missing, []);
    assert.deepEqual(
      [...sub.files.keys()],
      [...SUBMISSION_FILES.glue.map((f) => f.name), "README.txt"],
    );
    // Real mirror files: the official counts, the index column in file order.
    const real: [string, string, number][] = [
      ["CoLA.tsv", "glue/CoLA/test.tsv", 1063],
      ["SST-2.tsv", "glue/SST-2/test.tsv", 1821],
      ["MRPC.tsv", "glue/MRPC/test.tsv", 1725],
      ["STS-B.tsv", "glue/STS-B/test.tsv", 1379],
      ["RTE.tsv", "glue/RTE/test.tsv", 3000],
    ];
    for (const [name, rel, n] of real) {
      const rows = tsvRows(sub.files.get(name)!);
      assert.deepEqual(rows[0], ["index", "prediction"], name);
      assert.equal(rows.length - 1, n, name);
      assert.deepEqual(rows.slice(1).map((r) => r[0]), await indexColumn(rel), name);
      // Every 7th prediction (i = 0, 7, ...) is garbage and replaced.
      assert.equal(sub.replaced[name], Math.ceil(n / 7), name);
      assert.ok(
        log.some((l) =>
          l.startsWith(`${name}: ${n} rows`) && l.includes(`${Math.ceil(n / 7)} invalid`)
        ),
        name,
      );
    }
    const col = (name: string) => tsvRows(sub.files.get(name)!).slice(1).map((r) => r[1]);
    // CoLA: class index (i % 2 gives unacceptable/acceptable; garbage -> 0).
    assert.deepEqual(col("CoLA.tsv").slice(0, 4), ["0", "1", "0", "1"]);
    // STS-B: the float; garbage -> 0.0; an integer written with one decimal; 5.2 clipped to 5.0
    // (i = 25, 51, ... less the garbage 7th rows: 45 of the 1379), counted apart.
    assert.deepEqual(col("STS-B.tsv").slice(0, 6), ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
    assert.deepEqual(col("STS-B.tsv").slice(24, 27), ["4.8", "5.0", "0.0"]);
    const clipped = Array.from({ length: 1379 }, (_, i) => i)
      .filter((i) => i % 26 === 25 && i % 7 !== 0).length;
    assert.equal(clipped, 45);
    assert.equal(sub.clipped["STS-B.tsv"], clipped);
    const stsbLine = log.find((l) => l.startsWith("STS-B.tsv: "));
    assert.match(
      stsbLine ?? "",
      new RegExp(
        `; 197 invalid prediction\\(s\\) replaced by 0\\.0, ${clipped} out of \\[0, 5\\] clipped to it(;|$)`,
      ),
    );
    // Only said where there are some.
    assert.equal(log.filter((l) => l.includes("clipped")).length, 1, log.join("\n"));
    // RTE: the label word.
    assert.deepEqual(col("RTE.tsv").slice(0, 3), ["entailment", "not_entailment", "entailment"]);
    // MNLI's halves from one prediction file, each with its own test file's index.
    assert.deepEqual(tsvRows(sub.files.get("MNLI-m.tsv")!).slice(1), [
      ["0", "entailment"],
      ["1", "neutral"],
      ["2", "contradiction"],
      ["3", "entailment"],
    ]);
    // Mismatched: its own test file's rows (the fake predictions restart at i = 0 per split).
    assert.deepEqual(tsvRows(sub.files.get("MNLI-mm.tsv")!).slice(1), [
      ["100", "entailment"],
      ["101", "neutral"],
      ["102", "contradiction"],
    ]);
    assert.equal(sub.replaced["MNLI-mm.tsv"], 1);
    assert.deepEqual(col("QQP.tsv"), ["0", "1", "0", "1", "0"]);
    assert.deepEqual(col("AX.tsv"), [
      "entailment",
      "neutral",
      "contradiction",
      "entailment",
      "neutral",
      "contradiction",
    ]);
    // WNLI: the majority class on every test row, said so.
    assert.deepEqual(tsvRows(sub.files.get("WNLI.tsv")!).slice(1), [["0", "0"], ["1", "0"], [
      "2",
      "0",
    ]]);
    const readme = sub.files.get("README.txt")!;
    assert.match(
      readme,
      /WNLI\.tsv: 3 rows, all 0 \(not_entailment, the majority class\).*; the official test file has 146\n/,
    );
    assert.match(
      readme,
      /QQP\.tsv: 5 rows from qqp\.jsonl, .*; the official test file has 390965\n/,
    );
    assert.match(readme, /MNLI-mm\.tsv: 3 rows .*; the official test file has 9847\n/);
    assert.doesNotMatch(readme, /CoLA\.tsv: .*official/);
    assert.ok(readme.includes(`\n  ${stsbLine}\n`), readme);
    assert.match(readme, /STS-B predictions outside \[0, 5\] are clipped to it/);
    assert.match(readme, /WNLI\.tsv: 0 \(not_entailment, the majority class\) for every row/);
    assert.match(
      readme,
      /CoLA\.tsv: 1063 rows from cola\.jsonl, step \d+ of p--tiny-v1_1--random--glue--mtl--s0--/,
    );
    assert.ok(log.some((l) => l.includes("WNLI is never trained here")));
  } finally {
    await Deno.remove(runs, { recursive: true });
    await Deno.remove(data, { recursive: true });
  }
});

Deno.test("GLUE: STS-B predictions all in [0, 5]: README.txt has no line on clipping", async () => {
  // Kills the mutant that says the clipping line whenever an STS-B.tsv note exists.
  const data = await dataDir(GLUE_REAL);
  const runs = await Deno.makeTempDir();
  try {
    await writeRun(
      runs,
      fakeSpec("p", "tiny-v1_1", "mtl", "mtl", 0, "glue", "random", { tasks: ["stsb"] }),
      data,
      ["stsb"],
      undefined,
      // predictionOf's STS-B values without its 5.2 (each 26th row): 0.0 ... 5.0, garbage kept.
      (task, i) => i % 26 === 25 && i % 7 !== 0 ? "5.0" : predictionOf(task, i),
    );
    const log: string[] = [];
    const sub = await buildSubmission({
      runs,
      criteria: { benchmark: "glue", method: "mtl" },
      dataDir: data,
      allowMissing: true,
      allowPartial: true, // WNLI's synthetic test file
      log: (s) => log.push(s),
    });
    assert.equal(sub.clipped["STS-B.tsv"], 0);
    assert.equal(sub.replaced["STS-B.tsv"], 197);
    const readme = sub.files.get("README.txt")!;
    assert.match(readme, /\n {2}STS-B\.tsv: 1379 rows from stsb\.jsonl, /);
    assert.doesNotMatch(readme, /clipped/, readme);
    assert.equal(log.filter((l) => l.includes("clipped")).length, 0, log.join("\n"));
  } finally {
    await Deno.remove(runs, { recursive: true });
    await Deno.remove(data, { recursive: true });
  }
});

Deno.test("predictions of a task no leaderboard file takes are said to be unused, in the log and README.txt", async () => {
  const data = await dataDir(GLUE_REAL);
  const runs = await Deno.makeTempDir();
  try {
    const file = await writeRun(
      runs,
      fakeSpec("p", "tiny-v1_1", "mtl", "mtl", 0, "glue", "random", { tasks: ["rte"] }),
      data,
      ["rte"],
      // A file entry of a SuperGLUE task in a GLUE row (its file is never read).
      (r) => {
        const tp = r.testPredictions as { files: Record<string, unknown> };
        tp.files.boolq = { step: 2, examples: 3 };
      },
    );
    const log: string[] = [];
    const sub = await buildSubmission({
      runs,
      criteria: { benchmark: "glue", method: "mtl" },
      dataDir: data,
      allowMissing: true,
      allowPartial: true, // WNLI's synthetic test file
      log: (s) => log.push(s),
    });
    const line = `boolq: the test predictions of ${
      basename(file)
    } are not used: no GLUE leaderboard file takes boolq`;
    assert.equal(log.filter((l) => l === line).length, 1, log.join("\n"));
    const readme = sub.files.get("README.txt")!;
    assert.ok(readme.includes(`\n  ${line}\n`), readme);
    // Tasks a leaderboard file takes get no such line.
    assert.deepEqual(log.filter((l) => l.includes("are not used")), [line]);
    assert.ok(sub.files.has("RTE.tsv"));
  } finally {
    await Deno.remove(runs, { recursive: true });
    await Deno.remove(data, { recursive: true });
  }
});

Deno.test("SuperGLUE: every official file; idx from the test files, MultiRC nested, label formats", async () => {
  const data = await dataDir(SG_REAL);
  const runs = await Deno.makeTempDir();
  try {
    const tasks = [...BENCHMARK_TASKS.super_glue];
    await writeRun(
      runs,
      fakeSpec("p", "tiny-v1_1", "mtl", "mtl", 0, "super_glue", "random", { tasks }),
      data,
      [...tasks, "axb", "axg"],
    );
    const opts = {
      runs,
      criteria: { benchmark: "super_glue", method: "mtl" } as const,
      dataDir: data,
    };
    // Refused: every synthetic test file is partial, in the registry's units (MultiRC answers,
    // ReCoRD queries); the mirror's CB and RTE are the official size.
    const refused = await buildSubmission({ ...opts, log: () => {} }).then(
      () => assert.fail("a partial submission was built"),
      (e: Error) => e,
    );
    assert.ok(refused instanceof UsageError, String(refused));
    assert.match(
      refused.message,
      /^8 of the 10 leaderboard files would be partial, their test files not the official row count \(a leaderboard rejects them; --allow-partial writes them with a note\):/,
    );
    for (
      const [name, n, unit, rel, official] of [
        ["BoolQ.jsonl", 4, "rows", "super_glue/BoolQ/test.jsonl", 3245],
        ["COPA.jsonl", 4, "rows", "super_glue/COPA/test.jsonl", 500],
        ["MultiRC.jsonl", 4, "answers", "super_glue/MultiRC/test.jsonl", 9693],
        ["ReCoRD.jsonl", 2, "queries", "super_glue/ReCoRD/test.jsonl", 10000],
        ["WiC.jsonl", 4, "rows", "super_glue/WiC/test.jsonl", 1400],
        ["WSC.jsonl", 4, "rows", "super_glue/WSC/test.jsonl", 146],
        ["AX-b.jsonl", 2, "rows", "super_glue/AX-b/AX-b.jsonl", 1104],
        ["AX-g.jsonl", 2, "rows", "super_glue/AX-g/AX-g.jsonl", 356],
      ] as const
    ) {
      const want = `\n  ${name}: ${n} ${unit} in ${
        join(data, rel)
      }, the official test file has ${official}`;
      assert.ok(refused.message.includes(want), `${want} not in ${refused.message}`);
    }
    assert.doesNotMatch(refused.message, /(CB|RTE)\.jsonl/);
    const log: string[] = [];
    const sub = await buildSubmission({ ...opts, allowPartial: true, log: (s) => log.push(s) });
    assert.deepEqual(sub.missing, []);
    const rows = (name: string) =>
      sub.files.get(name)!.trimEnd().split("\n").map((l) => JSON.parse(l));
    // The mirror's real CB and RTE test files: every idx, in order, 250 and 3000 rows.
    for (
      const [name, rel, n] of [["CB.jsonl", "super_glue/CB/test.jsonl", 250], [
        "RTE.jsonl",
        "super_glue/RTE/test.jsonl",
        3000,
      ]] as const
    ) {
      const want = (await Deno.readTextFile(join(MIRROR, rel))).split("\n").filter((l) => l !== "")
        .map((l) => JSON.parse(l).idx);
      const got = rows(name);
      assert.equal(got.length, n, name);
      assert.deepEqual(got.map((r) => r.idx), want, name);
      assert.equal(sub.replaced[name], Math.ceil(n / 7), name);
    }
    assert.deepEqual(rows("CB.jsonl").slice(0, 4).map((r) => r.label), [
      "entailment", // garbage -> first class
      "contradiction",
      "neutral",
      "entailment",
    ]);
    assert.deepEqual(rows("BoolQ.jsonl"), [
      { idx: 0, label: "false" },
      { idx: 1, label: "true" },
      { idx: 2, label: "false" },
      { idx: 3, label: "true" },
    ]);
    assert.deepEqual(rows("WiC.jsonl").map((r) => r.label), ["false", "true", "false", "true"]);
    assert.deepEqual(rows("COPA.jsonl").map((r) => r.label), [0, 1, 0, 1]);
    // WSC: i = 0 garbage -> no referent words -> "False" (valid, not replaced); i = 1, 3 empty
    // (invalid -> "False", replaced); i = 2 "the nobody" names no referent -> "False".
    assert.deepEqual(rows("WSC.jsonl").map((r) => r.label), ["False", "False", "False", "False"]);
    assert.equal(sub.replaced["WSC.jsonl"], 2);
    // ReCoRD: the query idx, the predicted text as it is.
    assert.deepEqual(rows("ReCoRD.jsonl"), [
      { idx: 70, label: "garbage!" },
      { idx: 71, label: "answer 1" },
    ]);
    assert.equal(sub.replaced["ReCoRD.jsonl"], 0);
    assert.match(
      log.find((l) => l.startsWith("ReCoRD.jsonl: ")) ?? "",
      /; any text is an answer: nothing replaced(;|$)/,
    );
    assert.doesNotMatch(log.join("\n"), /replaced by \(none/);
    // MultiRC: nested per passage and question; answers 0..3 -> garbage (0), True, False, True.
    assert.deepEqual(rows("MultiRC.jsonl"), [
      {
        idx: 0,
        passage: {
          questions: [
            { idx: 0, answers: [{ idx: 0, label: 0 }, { idx: 1, label: 1 }] },
            { idx: 1, answers: [{ idx: 2, label: 0 }] },
          ],
        },
      },
      { idx: 1, passage: { questions: [{ idx: 2, answers: [{ idx: 3, label: 1 }] }] } },
    ]);
    // AX-b's string idx becomes the integer (T5's int(idx)); labels are RTE's words.
    assert.deepEqual(rows("AX-b.jsonl"), [
      { idx: 0, label: "entailment" },
      { idx: 1, label: "not_entailment" },
    ]);
    assert.deepEqual(rows("AX-g.jsonl"), [
      { idx: 0, label: "entailment" },
      { idx: 1, label: "not_entailment" },
    ]);
  } finally {
    await Deno.remove(runs, { recursive: true });
    await Deno.remove(data, { recursive: true });
  }
});

Deno.test("partial test files: one refusal lists every one with both counts beside the missing, nothing written; --allow-partial writes them with the note", async () => {
  const data = await dataDir(GLUE_REAL);
  const runs = await Deno.makeTempDir();
  const out = await Deno.makeTempDir();
  try {
    const tasks = ["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte"];
    // No AX predictions: AX.tsv is missing, not partial.
    await writeRun(
      runs,
      fakeSpec("p", "tiny-v1_1", "mtl", "mtl", 0, "glue", "random", { tasks }),
      data,
      tasks,
    );
    const args = (sub: string, ...flags: string[]) => [
      ...["--runs", runs, "--benchmark", "glue", "--method", "mtl", "--data-dir", data],
      ...["--out", join(out, sub), ...flags],
    ];
    const partial = [
      ["QQP.tsv", 5, "glue/QQP/test.tsv", 390965],
      ["MNLI-m.tsv", 4, "glue/MNLI/test_matched.tsv", 9796],
      ["MNLI-mm.tsv", 3, "glue/MNLI/test_mismatched.tsv", 9847],
      ["QNLI.tsv", 4, "glue/QNLI/test.tsv", 5463],
      ["WNLI.tsv", 3, "glue/WNLI/test.tsv", 146],
    ] as const;
    const listed = (err: string) => {
      for (const [name, n, rel, official] of partial) {
        const want = `\n  ${name}: ${n} rows in ${
          join(data, rel)
        }, the official test file has ${official}`;
        assert.ok(err.includes(want), `${want} not in ${err}`);
      }
      // The mirror's files are the official size.
      assert.doesNotMatch(err, /(CoLA|SST-2|MRPC|STS-B|RTE)\.tsv/);
    };
    // Missing and partial files refused at once, each listed.
    const both = await cli(args("a"));
    assert.equal(both.code, 2, both.err);
    assert.match(
      both.err,
      /missing 1 of the 11 leaderboard files \(--allow-missing writes the others\):\n {2}AX\.tsv: no ax test predictions/,
    );
    assert.match(
      both.err,
      /\n5 of the 11 leaderboard files would be partial, their test files not the official row count \(a leaderboard rejects them; --allow-partial writes them with a note\):\n {2}QQP\.tsv: /,
    );
    listed(both.err);
    // --allow-missing alone: still refused for the partial files only.
    const one = await cli(args("a", "--allow-missing"));
    assert.equal(one.code, 2, one.err);
    assert.doesNotMatch(one.err, /missing|AX\.tsv/);
    listed(one.err);
    // --allow-partial alone: refused for the missing file only.
    const other = await cli(args("a", "--allow-partial"));
    assert.equal(other.code, 2, other.err);
    assert.match(other.err, /^missing 1 of the 11 leaderboard files/);
    assert.doesNotMatch(other.err, /partial/);
    // Nothing written by a refusal: no folder, no zip.
    assert.deepEqual([...Deno.readDirSync(out)], []);
    // Both flags: written, each partial file's log line and README.txt line say so.
    const ok = await cli(args("ok", "--allow-missing", "--allow-partial"));
    assert.equal(ok.code, 0, ok.err);
    const readme = await Deno.readTextFile(join(out, "ok", "README.txt"));
    for (const [name, n, , official] of partial) {
      const note = new RegExp(
        `(^|\\n) *${
          name.replace(".", "\\.")
        }: ${n} rows[^\\n]*; the official test file has ${official}(\\n|$)`,
      );
      assert.match(ok.out, note, name);
      assert.match(readme, note, name);
    }
    assert.equal(readme.match(/official test file has/g)?.length, partial.length, readme);
    const names = [...Deno.readDirSync(join(out, "ok"))].map((e) => e.name);
    assert.equal(names.length, 11, names.join(", ")); // 10 files and README.txt
    const zipped = Object.keys(unzipSync(await Deno.readFile(join(out, "ok.zip"))));
    assert.deepEqual(zipped.sort(), names.filter((n) => n !== "README.txt").sort());
  } finally {
    for (const d of [data, runs, out]) await Deno.remove(d, { recursive: true });
  }
});

Deno.test("full-size test files need no --allow-partial; WNLI counted as the others", async () => {
  // The mirror's CoLA and RTE test files, and a WNLI test file of the official 146 rows.
  const data = await Deno.makeTempDir();
  const runs = await Deno.makeTempDir();
  const out = await Deno.makeTempDir();
  try {
    for (const rel of ["glue/CoLA/test.tsv", "glue/RTE/test.tsv"]) {
      await Deno.mkdir(join(data, rel, ".."), { recursive: true });
      await Deno.symlink(join(MIRROR, rel), join(data, rel));
    }
    const wnli = (n: number) =>
      writeTsv(join(data, "glue/WNLI/test.tsv"), [
        ["index", "sentence1", "sentence2"],
        ...Array.from({ length: n }, (_, i) => [String(i), `premise ${i}`, `hypothesis ${i}`]),
      ]);
    await wnli(146);
    const tasks = ["cola", "rte"];
    await writeRun(
      runs,
      fakeSpec("p", "tiny-v1_1", "mtl", "mtl", 0, "glue", "random", { tasks }),
      data,
      tasks,
    );
    const args = (sub: string) => [
      ...["--runs", runs, "--benchmark", "glue", "--method", "mtl", "--data-dir", data],
      ...["--out", join(out, sub), "--allow-missing"],
    ];
    const ok = await cli(args("ok"));
    assert.equal(ok.code, 0, ok.err);
    assert.match(ok.out, /\bWNLI\.tsv: 146 rows, all 0 /);
    assert.match(ok.out, /\bCoLA\.tsv: 1063 rows /);
    assert.match(ok.out, /\bRTE\.tsv: 3000 rows /);
    assert.doesNotMatch(ok.out, /official/);
    const readme = await Deno.readTextFile(join(out, "ok", "README.txt"));
    assert.doesNotMatch(readme, /official/);
    // One WNLI row fewer: refused, naming WNLI.tsv alone.
    await wnli(145);
    const cut = await cli(args("cut"));
    assert.equal(cut.code, 2, cut.err);
    assert.equal(
      cut.err,
      "1 of the 11 leaderboard files would be partial, their test files not the official row " +
        "count (a leaderboard rejects them; --allow-partial writes them with a note):\n  " +
        `WNLI.tsv: 145 rows in ${join(data, "glue/WNLI/test.tsv")}, the official test file has 146`,
    );
  } finally {
    for (const d of [data, runs, out]) await Deno.remove(d, { recursive: true });
  }
});

Deno.test("convertFile(): WSC by the wsc_simple rule against the referent; STS-B out of range clipped, no number replaced", () => {
  const ex = (i: number, target: string): Example => ({
    task: "wsc",
    id: `wsc/test/${i}`,
    input: "",
    target,
    split: "test",
  });
  const wsc: SubmissionFile = { name: "WSC.jsonl", task: "wsc", split: "test", format: "wsc" };
  const c = convertFile(wsc, [ex(0, "the dog"), ex(1, "Pete's"), ex(2, "Mark")], [
    "dog",
    "pete",
    "the",
  ]);
  // "dog" names "the dog"; "pete" lacks the apostrophe -> False; "the" is empty once the
  // determiner is dropped -> invalid, replaced by False.
  assert.deepEqual(c.text.trimEnd().split("\n").map((l) => JSON.parse(l).label), [
    "True",
    "False",
    "False",
  ]);
  assert.equal(c.replaced, 1);
  const stsb: SubmissionFile = { name: "STS-B.tsv", task: "stsb", split: "test", format: "float" };
  const preds = ["3.8", "7.5", "nan", "5", "-0.3", "5.2", "inf", "-inf", "x", "0"];
  const sx = preds.map((_, i) => ({ ...ex(i, "-1.0"), task: "stsb", id: `stsb/test/${i}` }));
  const s = convertFile(stsb, sx, preds);
  // A finite number out of [0, 5] is clipped to the nearer bound; nan, inf and text are 0.0.
  assert.deepEqual(
    tsvRows(s.text).slice(1).map((r) => r[1]),
    ["3.8", "5.0", "0.0", "5.0", "0.0", "5.0", "0.0", "0.0", "0.0", "0.0"],
  );
  assert.equal(s.replaced, 4);
  assert.equal(s.clipped, 3);
  // Other formats clip nothing.
  assert.equal(c.clipped, 0);
});

Deno.test("convertFile(): JSON Lines as T5's json.dumps writes them: ASCII only (non-ASCII and line separators escaped), a ReCoRD answer stripped", () => {
  const record: SubmissionFile = {
    name: "ReCoRD.jsonl",
    task: "record",
    split: "test",
    format: "text",
  };
  const ex = (q: number): Example => ({
    task: "record",
    id: `record/test/0/${q}`,
    input: "",
    target: "",
    split: "test",
  });
  const c = convertFile(record, [ex(7), ex(8), ex(9), ex(10)], [
    " Zürich \n",
    "a\u2028b",
    "😀",
    // Python's strip() takes \x1c (a separator), not U+FEFF; DEL is escaped.
    "\x1cx\x7f\ufeff",
  ]);
  // Byte for byte Python's json.dumps(..., ensure_ascii=True) but compact, as the other files.
  assert.equal(
    c.text,
    '{"idx":7,"label":"Z\\u00fcrich"}\n' +
      '{"idx":8,"label":"a\\u2028b"}\n' +
      '{"idx":9,"label":"\\ud83d\\ude00"}\n' +
      '{"idx":10,"label":"x\\u007f\\ufeff"}\n',
  );
  assert.ok([...c.text].every((ch) => ch.charCodeAt(0) < 0x7f), "printable ASCII only");
  // Three lines whichever separators a reader splits on; each parses back to the prediction.
  assert.deepEqual(
    c.text.trimEnd().split("\n").map((l) => JSON.parse(l).label),
    ["Zürich", "a\u2028b", "😀", "x\x7f\ufeff"],
  );
});

Deno.test("selection: two files of one run id exit 1 naming both, not 'narrow the choice'", async () => {
  const runs = await Deno.makeTempDir();
  const out = await Deno.makeTempDir();
  try {
    const spec = fakeSpec("p", "tiny-v1_1", "mtl", "mtl", 0, "glue");
    const file = await writeRun(runs, spec, MIRROR, ["rte"]);
    await Deno.copyFile(file, join(runs, "copy.json"));
    const r = await cli([
      ...["--runs", runs, "--benchmark", "glue", "--data-dir", MIRROR, "--method", "mtl"],
      ...["--out", join(out, "a")],
    ]);
    assert.equal(r.code, 1, r.err);
    assert.match(
      r.err,
      new RegExp(`Two results for the same run id ${spec.id}: .*copy\\.json and .*--s0--`),
    );
    assert.match(r.err, /remove one \(a copy\) from the folder/);
    assert.doesNotMatch(r.err, /narrow the choice/);
    await assert.rejects(Deno.stat(join(out, "a")), Deno.errors.NotFound);
  } finally {
    await Deno.remove(runs, { recursive: true });
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("selection: a perTask method's task runs merge; several rows or none exit 2 listing them", async () => {
  const runs = await Deno.makeTempDir();
  const out = await Deno.makeTempDir();
  try {
    const pt = (task: string) =>
      fakeSpec("p", "tiny-v1_1", "prompt_tuning", "Prompt-Tuning", 0, "glue", "pretrained", {
        tasks: [task],
        perTaskOf: BENCHMARK_TASKS.glue,
      });
    await writeRun(runs, pt("cola"), MIRROR, ["cola"]);
    await writeRun(runs, pt("rte"), MIRROR, ["rte"]);
    for (const seed of [0, 1]) {
      await writeRun(runs, fakeSpec("p", "tiny-v1_1", "mtl", "mtl", seed, "glue"), MIRROR, ["rte"]);
    }
    const base = ["--runs", runs, "--benchmark", "glue", "--data-dir", MIRROR];
    // Two seeds of MTL: ambiguous, both listed with the flags that choose them.
    const two = await cli([...base, "--method", "mtl", "--out", join(out, "a")]);
    assert.equal(two.code, 2, two.err);
    assert.match(two.err, /2 rows match --benchmark glue --method mtl; narrow/);
    assert.match(two.err, /--seed 0 \(config [0-9a-f]{12}: p--tiny-v1_1--random--glue--mtl--s0--/);
    assert.match(two.err, /--seed 1 \(config/);
    // A folder with no result at all: said as such (as tables says it), nothing written.
    const emptyRuns = join(out, "no-runs");
    await Deno.mkdir(emptyRuns);
    const nothing = await cli([
      ...base.map((a) => (a === runs ? emptyRuns : a)),
      "--method",
      "mtl",
      "--out",
      join(out, "a"),
    ]);
    assert.equal(nothing.code, 2, nothing.err);
    assert.match(
      nothing.err,
      /^--runs \S*no-runs: no run results \(\*\.json\) there; deno task bench writes them /,
    );
    assert.equal(await pathExists(join(out, "a")), false, "nothing written");
    // No such method: the rows there are, listed.
    const none = await cli([...base, "--method", "HyperPrompt", "--out", join(out, "a")]);
    assert.equal(none.code, 2);
    assert.match(none.err, /no run matches --benchmark glue --method HyperPrompt; the glue rows/);
    assert.match(
      none.err,
      /--method Prompt-Tuning --seed 0 \(config [0-9a-f]{12}: .*cola.*, .*rte/,
    );
    // The per-task runs together: CoLA from one run, RTE from the other; the rest missing.
    const pts = await cli([...base, "--method", "Prompt-Tuning", "--out", join(out, "pt")]);
    assert.equal(pts.code, 2);
    assert.match(
      pts.err,
      /missing 9 of the 11 leaderboard files \(--allow-missing writes the others\)/,
    );
    assert.match(pts.err, /\n {2}SST-2\.tsv: no sst2 test predictions in the row's runs/);
    // With how to get it: no run reads WNLI's test file, so bench may not have fetched it.
    assert.match(
      pts.err,
      /\n {2}WNLI\.tsv: no test file \S+; get it with deno task download --tasks glue\/wnli \(into the cache; --data-dir names another folder\)/,
    );
    assert.doesNotMatch(pts.err, /(CoLA|RTE)\.tsv:/);
    const ok = await cli([
      ...base,
      "--method",
      "Prompt-Tuning",
      "--out",
      join(out, "pt"),
      "--allow-missing",
    ]);
    assert.equal(ok.code, 0, ok.err);
    assert.match(
      ok.out,
      /CoLA\.tsv: 1063 rows from cola\.jsonl, step \d+ of p--.*--Prompt-Tuning--cola--s0--/,
    );
    assert.match(
      ok.out,
      /RTE\.tsv: 3000 rows from rte\.jsonl, step \d+ of p--.*--Prompt-Tuning--rte--s0--/,
    );
    assert.match(ok.out, /not written \(--allow-missing\):\n {2}SST-2\.tsv/);
    assert.match(
      ok.out,
      /\nwrote 2 leaderboard files and README\.txt to .*pt, the leaderboard files alone to .*pt\.zip; INCOMPLETE \(--allow-missing\): without SST-2\.tsv, MRPC\.tsv, .*, AX\.tsv, which a leaderboard rejects: use it to check the files, not to upload$/,
    );
    const names = [...Deno.readDirSync(join(out, "pt"))].map((e) => e.name).sort();
    assert.deepEqual(names, ["CoLA.tsv", "README.txt", "RTE.tsv"]);
    // The zip holds the leaderboard files alone at its root, as the servers expect (no
    // README.txt: glue-superglue.md 3.7 and T5's script write only the task files).
    const zip = unzipSync(await Deno.readFile(join(out, "pt.zip")));
    assert.deepEqual(Object.keys(zip).sort(), ["CoLA.tsv", "RTE.tsv"]);
    for (const n of Object.keys(zip)) {
      assert.deepEqual(zip[n], await Deno.readFile(join(out, "pt", n)), n);
    }
    const readme = await Deno.readTextFile(join(out, "pt", "README.txt"));
    assert.match(readme, /Not written:\n {2}SST-2\.tsv/);
    // No WNLI file here (no test file in the mirror), so no claim about its rows.
    assert.doesNotMatch(readme, /majority class/);
    // Nothing is overwritten: the folder (now full) and the zip are refused.
    const again = await cli([...base, "--method", "Prompt-Tuning", "--out", join(out, "pt")]);
    assert.equal(again.code, 2);
    assert.match(again.err, /--out .*pt: not empty; name a new folder/);
    await Deno.mkdir(join(out, "empty"));
    await Deno.writeTextFile(join(out, "empty.zip"), "x");
    const zipThere = await cli([...base, "--method", "Prompt-Tuning", "--out", join(out, "empty")]);
    assert.equal(zipThere.code, 2);
    assert.match(zipThere.err, /empty\.zip exists/);
  } finally {
    await Deno.remove(runs, { recursive: true });
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("selection: of two configurations of one row, the only one with test predictions is taken and said; the zip is the same bytes every time", async () => {
  const runs = await Deno.makeTempDir();
  const out = await Deno.makeTempDir();
  try {
    // A predictTest copy of a profile beside the run it copied (README's workflow): one row.
    const plain = fakeSpec("p", "tiny-v1_1", "mtl", "mtl", 0, "glue");
    const predicting = fakeSpec("p", "tiny-v1_1", "mtl", "mtl", 0, "glue", "random", {
      train: { ...plain.train, predictTest: true },
    });
    const plainFile = await writeRun(runs, plain, MIRROR, [], (r) => {
      delete r.testPredictions;
    });
    const predictingFile = await writeRun(runs, predicting, MIRROR, ["rte", "cola"]);
    const base = ["--runs", runs, "--benchmark", "glue", "--method", "mtl", "--data-dir", MIRROR];
    const args = (name: string) => [...base, "--out", join(out, name), "--allow-missing"];
    const a = await cli(args("a"));
    assert.equal(a.code, 0, a.err);
    assert.match(
      a.out,
      new RegExp(
        `^2 rows match --benchmark glue --method mtl; taking the only one with test ` +
          `predictions:\n {2}--profile p .*--seed 0 \\(config [0-9a-f]{12}: ` +
          `${basename(predictingFile).replaceAll(".", "\\.")}\\)\nthe other has none:\n {2}` +
          `--profile p .*: ${basename(plainFile).replaceAll(".", "\\.")}\\) ` +
          `\\(no test predictions\\)\n`,
      ),
    );
    assert.match(a.out, /RTE\.tsv: 3000 rows from rte\.jsonl, step \d+ of p--/);
    // Written twice, the zips are equal, byte for byte: every entry's time stamp is the DOS
    // epoch, 1980-01-01 00:00 (a local header's time and date at bytes 10-13: 0, 0x21), not the
    // clock's (two writes in one 2-second DOS tick would agree anyway).
    const b = await cli(args("b"));
    assert.equal(b.code, 0, b.err);
    const zipA = await Deno.readFile(join(out, "a.zip"));
    assert.deepEqual(zipA, await Deno.readFile(join(out, "b.zip")));
    assert.deepEqual([...zipA.subarray(0, 4)], [0x50, 0x4b, 3, 4], "a local file header");
    assert.deepEqual([...zipA.subarray(10, 14)], [0, 0, 0x21, 0]);
    // A per-task row counts as predicting when any of its task runs does (the others' files are
    // then missing, said as such): of it and a row without, it is taken.
    const pt = (task: string, lr: number) =>
      fakeSpec("p", "tiny-v1_1", "prompt_tuning", "PT", 0, "glue", "random", {
        tasks: [task],
        perTaskOf: BENCHMARK_TASKS.glue,
        train: { ...plain.train, learningRate: lr },
      });
    await writeRun(runs, pt("cola", 0.3), MIRROR, ["cola"]);
    await writeRun(runs, pt("rte", 0.3), MIRROR, [], (r) => {
      delete r.testPredictions;
    });
    for (const task of ["cola", "rte"]) {
      await writeRun(runs, pt(task, 0.5), MIRROR, [], (r) => {
        delete r.testPredictions;
      });
    }
    const ptArgs = [...base.map((a) => a === "mtl" ? "PT" : a), "--out", join(out, "pt")];
    const perTask = await cli([...ptArgs, "--allow-missing"]);
    assert.equal(perTask.code, 0, perTask.err);
    assert.match(perTask.out, /^2 rows match --benchmark glue --method PT; taking the only one /);
    assert.match(perTask.out, /CoLA\.tsv: 1063 rows from cola\.jsonl/);
    // Two configurations with predictions: still ambiguous, each listed.
    const other = fakeSpec("p", "tiny-v1_1", "mtl", "mtl", 0, "glue", "random", {
      train: { ...plain.train, predictTest: true, learningRate: 0.5 },
    });
    await writeRun(runs, other, MIRROR, ["rte"]);
    const two = await cli(args("c"));
    assert.equal(two.code, 2, two.err);
    assert.match(two.err, /^3 rows match .*; narrow the choice/);
    assert.equal((two.err.match(/\(no test predictions\)/g) ?? []).length, 1, two.err);
  } finally {
    await Deno.remove(runs, { recursive: true });
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("predictions the folder's manifest says another step wrote (a later attempt of the run) exit 1 naming both; an agreeing manifest passes", async () => {
  const runs = await Deno.makeTempDir();
  const out = await Deno.makeTempDir();
  try {
    const spec = fakeSpec("p", "tiny-v1_1", "mtl", "mtl", 0, "glue");
    const file = await writeRun(runs, spec, MIRROR, ["rte"]);
    const result = JSON.parse(await Deno.readTextFile(file));
    const dir = join(runs, result.testPredictions.dir);
    const { step, examples } = result.testPredictions.files.rte;
    const args = (name: string) => [
      ...["--runs", runs, "--benchmark", "glue", "--method", "mtl", "--data-dir", MIRROR],
      ...["--out", join(out, name), "--allow-missing"],
    ];
    const manifest = (m: unknown) =>
      Deno.writeTextFile(join(dir, "manifest.json"), JSON.stringify(m));
    await manifest({ rte: { step, examples } });
    const ok = await cli(args("ok"));
    assert.equal(ok.code, 0, ok.err);
    await manifest({ rte: { step: step + 2, examples } });
    const later = await cli(args("later"));
    assert.equal(later.code, 1, later.err);
    assert.equal(
      later.err,
      `${join(dir, "rte.jsonl")}: ${join(dir, "manifest.json")} says step ${
        step + 2
      } wrote it, but ${file} $.testPredictions.files.rte.step says ${step}: a later attempt of ` +
        `the run (stopped before writing its result) rewrote the predictions; train the run ` +
        `again (deno task bench --methods "mtl" without --resume, which skips a run with a ` +
        `result)`,
    );
    assert.equal(await pathExists(join(out, "later")), false, "nothing written");
    await manifest({});
    const none = await cli(args("none"));
    assert.equal(none.code, 1);
    assert.match(none.err, /manifest\.json says no step wrote it, but /);
  } finally {
    await Deno.remove(runs, { recursive: true });
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("writeSubmission(): the zip first, then the folder; a folder that cannot go in place takes the zip with it", async () => {
  const out = await Deno.makeTempDir();
  try {
    const files = new Map([["RTE.tsv", "index\tprediction\n0\tentailment\n"], ["README.txt", "x"]]);
    // The zip cannot be written (a folder is where it goes): nothing of the folder is in place.
    await Deno.mkdir(join(out, "a.zip"));
    await assert.rejects(writeSubmission(join(out, "a"), files));
    assert.equal(await pathExists(join(out, "a")), false, "no folder without its zip");
    // The folder cannot go in place (a file is there): the zip written before it is removed.
    await Deno.writeTextFile(join(out, "b"), "a file");
    await assert.rejects(writeSubmission(join(out, "b"), files), /exists and is not a directory/);
    assert.equal(await pathExists(join(out, "b.zip")), false, "no zip without its folder");
    assert.deepEqual(
      [...Deno.readDirSync(out)].map((e) => e.name).sort(),
      ["a.zip", "b"],
      "no temporary left",
    );
    // A full disk while its files are written: the submission folder named (not only the
    // temporary copy), nothing left.
    const write = Deno.writeFile;
    Deno.writeFile = () => Promise.reject(new Error("No space left on device (os error 28)"));
    try {
      await assert.rejects(
        writeSubmission(join(out, "d"), files),
        new RegExp(
          `^Error: ${
            join(out, "d")
          }: writing RTE\\.tsv \\(in the temporary folder \\S+\\) failed: No space left`,
        ),
      );
    } finally {
      Deno.writeFile = write;
    }
    assert.deepEqual(
      [...Deno.readDirSync(out)].map((e) => e.name).sort(),
      ["a.zip", "b"],
      "nothing of d left",
    );
    // Both in place otherwise.
    assert.equal(await writeSubmission(join(out, "c"), files), join(out, "c.zip"));
    assert.deepEqual(Object.keys(unzipSync(await Deno.readFile(join(out, "c.zip")))), ["RTE.tsv"]);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("--out named like the zip is refused; a zip left without its folder by a stop is said", async () => {
  const runs = await Deno.makeTempDir();
  const out = await Deno.makeTempDir();
  try {
    await writeRun(runs, fakeSpec("p", "tiny-v1_1", "mtl", "mtl", 0, "glue"), MIRROR, ["rte"]);
    const base = ["--runs", runs, "--benchmark", "glue", "--method", "mtl", "--data-dir", MIRROR];
    const zipOut = await cli([...base, "--out", join(out, "sub.zip"), "--allow-missing"]);
    assert.equal(zipOut.code, 2, zipOut.err);
    assert.match(
      zipOut.err,
      /^--out \S*sub\.zip: names the folder, not the zip; the zip is written beside it as <folder>\.zip \(--out \S*\/sub writes \S*\/sub\.zip\)/,
    );
    assert.deepEqual([...Deno.readDirSync(out)], [], "nothing written");
    for (const name of ["SUB.ZIP", "sub.zip/"]) {
      const r = await cli([...base, "--out", join(out, name), "--allow-missing"]);
      assert.equal(r.code, 2, `${name}: ${r.err}`);
      assert.match(r.err, /: names the folder, not the zip; /);
    }
    // The zip is written before the folder is renamed into place: a stop between them leaves
    // the zip alone, which the rerun names.
    await Deno.writeTextFile(join(out, "left.zip"), "x");
    const left = await cli([...base, "--out", join(out, "left"), "--allow-missing"]);
    assert.equal(left.code, 2, left.err);
    assert.match(
      left.err,
      /left\.zip exists; name a new folder \(nothing is overwritten\) \(without the folder \S*left: a write stopped before it finished\? remove the zip to write both again\)/,
    );
  } finally {
    await Deno.remove(runs, { recursive: true });
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("no leaderboard file to write (an empty --data-dir): exit 2 listing every file, nothing written, --allow-missing too", async () => {
  const data = await Deno.makeTempDir();
  const runs = await Deno.makeTempDir();
  const out = await Deno.makeTempDir();
  try {
    const spec = fakeSpec("p", "tiny-v1_1", "mtl", "mtl", 0, "glue", "random", { tasks: ["rte"] });
    await writeRun(runs, spec, MIRROR, ["rte"]);
    const args = ["--runs", runs, "--benchmark", "glue", "--method", "mtl", "--data-dir", data];
    for (const allow of [["--allow-missing"], ["--allow-missing", "--allow-partial"], []]) {
      const sub = join(out, `sub${allow.length}`);
      const c = await cli([...args, "--out", sub, ...allow]);
      assert.equal(c.code, 2, `${allow}: ${c.out}`);
      assert.match(
        c.err,
        /^no leaderboard file could be written \(all 11 missing; --allow-missing writes only the ones there are\):\n/,
      );
      // Every file, each with why, as the missing-file refusal lists them.
      assert.equal(c.err.split("\n").length, 12, c.err);
      assert.match(
        c.err,
        new RegExp(
          `\\n {2}RTE\\.tsv: no test file ${data}/glue/RTE/test\\.tsv; get it with deno task ` +
            "download --tasks glue/rte",
        ),
      );
      assert.match(c.err, /\n {2}CoLA\.tsv: no cola test predictions in the row's runs\n/);
      // A diagnostic's predictions are skipped by a run that starts without its test file: that
      // file's absence is said with them (a task's own, which fails its run, is not).
      assert.match(
        c.err,
        new RegExp(
          `\\n {2}AX\\.tsv: no ax test predictions in the row's runs; its test file ` +
            `${data}/glue/diagnostic/diagnostic\\.tsv is not there either(\\n|$)`,
        ),
      );
      assert.doesNotMatch(c.err, /CoLA\.tsv: .* not there either/);
      assert.doesNotMatch(c.out, /wrote/);
      assert.equal(await pathExists(sub), false);
      assert.equal(await pathExists(`${sub}.zip`), false);
    }
  } finally {
    for (const d of [data, runs, out]) await Deno.remove(d, { recursive: true });
  }
});

Deno.test("a test file cut mid-line in its free-text last column exits 1 naming the file", async () => {
  // The predictions come from the whole file; the copy read at submission lost its last two
  // characters and final newline: every id still matches, so only the missing newline tells.
  const data = await Deno.makeTempDir();
  const runs = await Deno.makeTempDir();
  const out = await Deno.makeTempDir();
  try {
    const spec = fakeSpec("p", "tiny-v1_1", "mtl", "mtl", 0, "glue", "random", { tasks: ["rte"] });
    await writeRun(runs, spec, MIRROR, ["rte"]);
    const rel = "glue/RTE/test.tsv";
    const bytes = await Deno.readFile(join(MIRROR, rel));
    await Deno.mkdir(join(data, "glue/RTE"), { recursive: true });
    await Deno.writeFile(join(data, rel), bytes.subarray(0, bytes.length - 3));
    const args = ["--runs", runs, "--benchmark", "glue", "--method", "mtl", "--data-dir", data];
    const c = await cli([...args, "--out", join(out, "sub"), "--allow-missing"]);
    assert.equal(c.code, 1, c.out);
    assert.match(
      c.err,
      new RegExp(
        `^${join(data, rel).replace(/[.]/g, "\\.")}:3001: the file ends mid-line \\(".*"\\), ` +
          "without the final newline the official file ends with: cut short",
      ),
    );
    // The whole file writes RTE.tsv.
    await Deno.writeFile(join(data, rel), bytes);
    const ok = await cli([...args, "--out", join(out, "ok"), "--allow-missing"]);
    assert.equal(ok.code, 0, ok.err);
    assert.match(ok.out, /\nwrote 1 leaderboard file and README\.txt to /);
  } finally {
    for (const d of [data, runs, out]) await Deno.remove(d, { recursive: true });
  }
});

Deno.test("bad input: a malformed testPredictions or prediction file exits 1 naming file and field", async () => {
  const runs = await Deno.makeTempDir();
  const out = await Deno.makeTempDir();
  try {
    const spec = (label: string) => fakeSpec("p", "tiny-v1_1", "mtl", label, 0, "glue");
    const args = (label: string) => [
      "--runs",
      runs,
      "--benchmark",
      "glue",
      "--method",
      label,
      "--data-dir",
      MIRROR,
      "--out",
      join(out, label),
      "--allow-missing",
    ];
    const f1 = await writeRun(runs, spec("a"), MIRROR, ["rte"], (r) => {
      (r.testPredictions as { files: Record<string, unknown> }).files.rte = {
        step: -1,
        examples: 3,
      };
    });
    const a = await cli(args("a"));
    assert.equal(a.code, 1);
    // Checked by validateRunResult when loadResults reads the folder: one line naming the file
    // and the field.
    assert.match(a.err, new RegExp(`^${f1}: \\$\\.testPredictions\\.files\\.rte\\.step must be `));
    await Deno.remove(f1); // a malformed result fails the loading of its whole folder
    const f2 = await writeRun(runs, spec("b"), MIRROR, ["rte"], (r) => {
      (r.testPredictions as { dir: string }).dir = "../elsewhere";
    });
    const b = await cli(args("b"));
    assert.equal(b.code, 1);
    assert.match(
      b.err,
      new RegExp(`^${f2}: \\$\\.testPredictions\\.dir must be a folder `),
    );
    // A prediction file with one line fewer than its examples count; then one with a foreign id.
    await Deno.remove(f2);
    const f3 = await writeRun(runs, spec("c"), MIRROR, ["rte"]);
    const r3 = JSON.parse(await Deno.readTextFile(f3));
    const predFile = join(runs, r3.testPredictions.dir, "rte.jsonl");
    const lines = (await Deno.readTextFile(predFile)).trimEnd().split("\n");
    await Deno.writeTextFile(predFile, lines.slice(1).join("\n") + "\n");
    const c = await cli(args("c"));
    assert.equal(c.code, 1);
    assert.match(
      c.err,
      /rte\.jsonl: 2999 predictions, but .* \$\.testPredictions\.files\.rte\.examples says 3000/,
    );
    const moved = [
      enc({ id: "rte/test/9999", split: "test", prediction: "entailment" }),
      ...lines.slice(1),
    ];
    await Deno.writeTextFile(predFile, moved.join("\n") + "\n");
    const d = await cli(args("c"));
    assert.equal(d.code, 1);
    assert.match(
      d.err,
      /rte\.jsonl: no prediction for test example rte\/test\/0 \(glue\/RTE\/test\.tsv:2\)/,
    );
    await Deno.writeTextFile(predFile, lines[0] + "\n" + lines[0] + "\n");
    const e = await cli(args("c"));
    assert.equal(e.code, 1);
    assert.match(e.err, /rte\.jsonl:2: id "rte\/test\/0" repeats line 1/);
    // Nothing was written by a failed command.
    assert.deepEqual([...Deno.readDirSync(out)], []);
    // A run trained without predictTest: its tasks are missing, and the message says why.
    const plain = (await fakeRuns([spec("d")]))[0]!;
    await Deno.writeTextFile(join(runs, runFileName(spec("d"))), JSON.stringify(plain));
    const g = await cli(args("d").filter((x) => x !== "--allow-missing"));
    assert.equal(g.code, 2);
    assert.match(
      g.err,
      /RTE\.tsv: no rte test predictions in the row's runs \(.*--d--s0--.*\.json has no testPredictions: trained without train\.predictTest\)/,
    );
  } finally {
    await Deno.remove(runs, { recursive: true });
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("submission --help: exit 0, lines within the width, the parser's flags; arguments checked", async () => {
  const help = await cli(["--help"]);
  assert.equal(help.code, 0);
  assert.deepEqual(help.out.split("\n").filter((l) => l.length > HELP_WIDTH), []);
  assert.equal(help.out.split("\n")[0], SUBMISSION_USAGE.split("\n")[0]);
  // The zip's contents as writeSubmission makes them: no README.txt.
  assert.match(help.out, /the leaderboard files alone \(no README\.txt,[^)]*\) into <out>\.zip/);
  const bad = await cli(["--zz"]);
  assert.equal(bad.code, 2);
  const listed = help.out.split("\n").flatMap((l) => /^ {2}--([a-z-]+)/.exec(l)?.[1] ?? []).sort();
  assert.deepEqual(listed, [...declaredFlags("deno task submission")!].sort());
  const missing = await cli(["--runs", "x", "--benchmark", "glue", "--method", "m"]);
  assert.equal(missing.code, 2);
  // Ends as every tool's flag errors do (benchmarks/README.md, "Exit codes").
  assert.equal(missing.err, "--out is required; deno task submission --help lists the flags");
  assert.match(bad.err, /; deno task submission --help lists the flags$/);
  const bench = await cli(["--runs", "x", "--benchmark", "glu", "--method", "m", "--out", "o"]);
  assert.equal(bench.code, 2);
  assert.match(bench.err, /--benchmark must be glue or super_glue, got "glu"/);
  // --data-dir: missing, or a file where the folder should be, said as bench says it.
  const runs = await Deno.makeTempDir();
  try {
    const file = join(runs, "a-file");
    await Deno.writeTextFile(file, "");
    const base = ["--runs", runs, "--benchmark", "glue", "--method", "m"];
    for (
      const [dir, why] of [[file, "is a file, not a folder"], [join(runs, "no"), "no such folder"]]
    ) {
      const r = await cli([...base, "--out", join(runs, "o"), "--data-dir", dir!]);
      assert.equal(r.code, 2, r.err);
      assert.equal(r.err, `--data-dir ${dir}: ${why}`);
    }
  } finally {
    await Deno.remove(runs, { recursive: true });
  }
});

Deno.test("selection: two folders of one name are two rows; --model by the name alone is ambiguous", async () => {
  const runs = await Deno.makeTempDir();
  const out = await Deno.makeTempDir();
  try {
    const at = (hf: string) =>
      fakeSpec("p", "tiny-v1_1", "mtl", "mtl", 0, "glue", "random", { model: { hf } });
    await writeRun(runs, at("/data/a/t5-base"), MIRROR, ["rte"]);
    const b = at("/data/b/t5-base");
    await writeRun(runs, b, MIRROR, ["rte"]);
    const base = ["--runs", runs, "--benchmark", "glue", "--method", "mtl", "--data-dir", MIRROR];
    // The folders' name matches both: refused, listing the labels that choose each.
    const two = await cli([...base, "--model", "t5-base", "--out", join(out, "x")]);
    assert.equal(two.code, 2, two.err);
    assert.match(two.err, /2 rows match --benchmark glue --method mtl --model t5-base; narrow/);
    assert.match(two.err, /\n {2}--profile p --model a\/t5-base --backbone random /);
    assert.match(two.err, /\n {2}--profile p --model b\/t5-base --backbone random /);
    // The label of one: that folder's run only.
    const one = await cli([
      ...base,
      "--model",
      "b/t5-base",
      "--out",
      join(out, "b"),
      "--allow-missing",
    ]);
    assert.equal(one.code, 0, one.err);
    assert.match(
      one.out,
      new RegExp(`RTE\\.tsv: 3000 rows from rte\\.jsonl, step \\d+ of .*${b.id}`),
    );
    const readme = await Deno.readTextFile(join(out, "b", "README.txt"));
    assert.match(readme, /^GLUE leaderboard submission: p \/ \/data\/b\/t5-base \/ random \/ mtl /);
    assert.match(readme, new RegExp(`run ${b.id}`));
    assert.equal(readme.match(/\(run [0-9a-f]+,/g)?.length, 1, readme);
    // A label no row has: none matches, the rows listed.
    const none = await cli([...base, "--model", "c/t5-base", "--out", join(out, "c")]);
    assert.equal(none.code, 2);
    assert.match(none.err, /no run matches .*--model c\/t5-base; the glue rows there are:/);
  } finally {
    await Deno.remove(runs, { recursive: true });
    await Deno.remove(out, { recursive: true });
  }
});
