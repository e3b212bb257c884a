import assert from "node:assert/strict";
import { join } from "node:path";
import { sharedPath } from "../model/shared_dir.ts";
import { countRows } from "./data.ts";
import { convertRows, float32ToString, pyJson, type Row } from "./hf_convert.ts";
import { examplesFromBytes } from "./load.ts";
import { scoreTask } from "./metrics.ts";
import { type FileSpec, findTaskSource, TASK_SOURCES } from "./sources.ts";

const MIRROR = sharedPath("data");
const read = async (p: string) =>
  new TextDecoder("utf-8", { ignoreBOM: true }).decode(await Deno.readFile(join(MIRROR, p)));

function spec(task: string, path: string): FileSpec {
  const f = findTaskSource(task).files.find((x) => x.path === path);
  if (!f) throw new Error(`no ${path}`);
  return f;
}

/** What HF's loader makes of an official SuperGLUE line (labels → ClassLabel ints, -1 on test). */
function hfRowOf(config: string, o: Record<string, unknown>): Row {
  const cls: Record<string, string[]> = {
    cb: ["entailment", "contradiction", "neutral"],
    rte: ["entailment", "not_entailment"],
  };
  const label = o.label === undefined
    ? -1n
    : typeof o.label === "boolean"
    ? BigInt(o.label ? 1 : 0)
    : typeof o.label === "number"
    ? BigInt(o.label)
    : BigInt(cls[config]!.indexOf(o.label as string));
  const row: Row = { ...o, label };
  if (config === "wsc") {
    Object.assign(row, o.target as object);
    delete row.target;
  }
  delete row.version;
  return row;
}

Deno.test("SuperGLUE parquet rows convert back to the official files byte-exact (mirror)", async () => {
  const cases: [string, string][] = [
    ["rte_sg", "super_glue/RTE/train.jsonl"],
    ["rte_sg", "super_glue/RTE/val.jsonl"],
    ["rte_sg", "super_glue/RTE/test.jsonl"],
    ["cb", "super_glue/CB/train.jsonl"],
    ["cb", "super_glue/CB/test.jsonl"],
    ["boolq", "super_glue/BoolQ/val.jsonl"],
    ["copa", "super_glue/COPA/val.jsonl"],
    ["wic", "super_glue/WiC/val.jsonl"],
    ["wsc", "super_glue/WSC/val.jsonl"],
  ];
  for (const [task, path] of cases) {
    const src = findTaskSource(task);
    const text = await read(path);
    const rows = text.trim().split("\n").map((l) => hfRowOf(src.hfConfig, JSON.parse(l)));
    assert.equal(convertRows(src, spec(task, path), rows), text, path);
  }
});

Deno.test("GLUE parquet rows convert back to the official TSV where no column is missing", async () => {
  // RTE: index, sentence1, sentence2, label (strings ↔ ClassLabel 0/1).
  const rte = await read("glue/RTE/train.tsv");
  const rteRows = rte.trim().split("\n").slice(1).map((l) => {
    const [idx, s1, s2, lab] = l.split("\t");
    return {
      idx: Number(idx),
      sentence1: s1,
      sentence2: s2,
      label: BigInt(lab === "entailment" ? 0 : 1),
    };
  });
  assert.equal(convertRows(findTaskSource("rte"), spec("rte", "glue/RTE/train.tsv"), rteRows), rte);
  // SST-2 train (sentence, label) and test (index, sentence; label -1 in parquet).
  const sst = await read("glue/SST-2/dev.tsv");
  const sstRows = sst.trim().split("\n").slice(1).map((l, i) => {
    const [s, lab] = l.split("\t");
    return { sentence: s, label: BigInt(lab!), idx: i };
  });
  // split("\n") then trim() must not eat the trailing space of SST-2 sentences:
  assert.ok(sstRows[0]!.sentence!.endsWith(" "));
  assert.equal(
    convertRows(findTaskSource("sst2"), spec("sst2", "glue/SST-2/dev.tsv"), sstRows),
    sst,
  );
  const sstTest = await read("glue/SST-2/test.tsv");
  const sstTestRows = sstTest.trim().split("\n").slice(1).map((l) => {
    const [idx, s] = l.split("\t");
    return { sentence: s, label: -1n, idx: Number(idx) };
  });
  assert.equal(
    convertRows(findTaskSource("sst2"), spec("sst2", "glue/SST-2/test.tsv"), sstTestRows),
    sstTest,
  );
});

Deno.test("STS-B: float32 scores print as short decimals; placeholders fill the missing columns", async () => {
  assert.equal(float32ToString(Math.fround(3.8)), "3.8");
  assert.equal(float32ToString(Math.fround(4.75)), "4.75");
  assert.equal(float32ToString(Math.fround(0.2)), "0.2");
  const dev = await read("glue/STS-B/dev.tsv");
  const lines = dev.trim().split("\n");
  const rows = lines.slice(1).map((l) => {
    const c = l.split("\t");
    return {
      sentence1: c[7],
      sentence2: c[8],
      label: Math.fround(Number(c[9])),
      idx: Number(c[0]),
    };
  });
  const out = convertRows(findTaskSource("stsb"), spec("stsb", "glue/STS-B/dev.tsv"), rows).trim()
    .split("\n");
  assert.equal(out[0], lines[0], "same header");
  out.slice(1).forEach((l, i) => {
    const a = l.split("\t");
    const b = lines[i + 1]!.split("\t");
    assert.equal(a.length, 10);
    assert.deepEqual([a[0], a[7], a[8]], [b[0], b[7], b[8]]);
    // HF stores scores as float32: equal once rounded to float32 (e.g. 2.33333333333333).
    assert.equal(Math.fround(Number(a[9])), Math.fround(Number(b[9])), `row ${i} score`);
  });
});

Deno.test("CoLA, MNLI dev, AX: official column layout with placeholders", () => {
  const cola = convertRows(findTaskSource("cola"), spec("cola", "glue/CoLA/train.tsv"), [
    { sentence: "Ok.", label: 1n, idx: 0 },
    { sentence: "Bad bad.", label: 0n, idx: 1 },
  ]);
  assert.equal(cola, "hf\t1\t\tOk.\nhf\t0\t*\tBad bad.\n");
  const mnli = convertRows(findTaskSource("mnli"), spec("mnli", "glue/MNLI/dev_matched.tsv"), [
    { premise: "P.", hypothesis: "H.", label: 2n, idx: 0 },
  ]).split("\n");
  assert.equal(mnli[0]!.split("\t").length, 16);
  assert.equal(mnli[0]!.split("\t")[15], "gold_label");
  assert.equal(mnli[1]!.split("\t")[15], "contradiction");
  assert.equal(mnli[1]!.split("\t")[8], "P.");
  const ax = convertRows(findTaskSource("ax"), spec("ax", "glue/diagnostic/diagnostic.tsv"), [
    { premise: "P.", hypothesis: "H.", label: -1n, idx: 0 },
  ]);
  assert.equal(ax, "index\tsentence1\tsentence2\n0\tP.\tH.\n");
  assert.throws(
    () =>
      convertRows(findTaskSource("rte"), spec("rte", "glue/RTE/train.tsv"), [
        { sentence1: "a\tb", sentence2: "c", label: 0n, idx: 0 },
      ]),
    /glue\/RTE\/train\.tsv \(parquet row 0\) field sentence1: contains a tab/,
  );
  // A column the conversion reads is missing (another version of the dataset): the message says
  // so and lists the columns the parquet has; a field of the wrong type says its type.
  assert.throws(
    () =>
      convertRows(findTaskSource("rte"), spec("rte", "glue/RTE/train.tsv"), [
        { sentence1: "a", sentence2: "c", idx: 0 },
      ]),
    new RegExp(
      "^Error: glue/RTE/train\\.tsv \\(parquet row 0\\) field label: missing \\(expected a " +
        "number\\); the parquet's columns: sentence1, sentence2, idx \\(another version of the " +
        "dataset than glue/rte's conversion expects\\)$",
    ),
  );
  assert.throws(
    () =>
      convertRows(findTaskSource("rte"), spec("rte", "glue/RTE/train.tsv"), [
        { sentence1: "a", premise: "c", label: 0n, idx: 0 },
      ]),
    /field sentence2: missing \(expected a string\); the parquet's columns: sentence1, premise, /,
  );
  assert.throws(
    () =>
      convertRows(findTaskSource("rte"), spec("rte", "glue/RTE/train.tsv"), [
        { sentence1: "a", sentence2: 7, label: 0n, idx: 0 },
      ]),
    /^Error: glue\/RTE\/train\.tsv \(parquet row 0\) field sentence2: expected a string, got number$/,
  );
  // The parquet column is named, wherever it lands in the TSV line (MNLI: premise is column 9).
  for (const [bad, what] of [["a\nb", "line break"], ["a\rb", "line break"], ["a\tb", "tab"]]) {
    assert.throws(
      () =>
        convertRows(findTaskSource("mnli"), spec("mnli", "glue/MNLI/train.tsv"), [
          { premise: "P.", hypothesis: "H.", label: 0n, idx: 0 },
          { premise: bad, hypothesis: "H.", label: 0n, idx: 1 },
        ]),
      new RegExp(`glue/MNLI/train\\.tsv \\(parquet row 1\\) field premise: contains a .*${what}`),
    );
  }
});

Deno.test("a labelled split's row with HF's unlabelled -1 (or any non-0/1 label) is refused, not written", () => {
  const conv = (task: string, path: string, row: Row) => () =>
    convertRows(findTaskSource(task), spec(task, path), [row]);
  // BoolQ, WiC, WSC used to write -1 and 2 as false; the others wrote -1 for the loader to trip on.
  const cases: Array<[string, string, Row]> = [
    ["boolq", "super_glue/BoolQ/val.jsonl", { question: "q", passage: "p", idx: 0 }],
    ["copa", "super_glue/COPA/val.jsonl", {
      premise: "p",
      choice1: "a",
      choice2: "b",
      question: "cause",
      idx: 0,
    }],
    ["wic", "super_glue/WiC/val.jsonl", {
      word: "w",
      sentence1: "a",
      sentence2: "b",
      idx: 0,
      start1: 0,
      start2: 0,
      end1: 1,
      end2: 1,
    }],
    ["sst2", "glue/SST-2/train.tsv", { sentence: "s", idx: 0 }],
    ["cola", "glue/CoLA/train.tsv", { sentence: "s", idx: 0 }],
    ["mrpc", "glue/MRPC/train.tsv", { sentence1: "a", sentence2: "b", idx: 0 }],
  ];
  for (const [task, path, row] of cases) {
    for (const label of [-1n, 2n]) {
      assert.throws(
        conv(task, path, { ...row, label }),
        new RegExp(
          `^Error: ${path} \\(parquet row 0\\) field label: expected the label 0 or 1 in a ` +
            `labelled split, got ${label}$`,
        ),
        `${task} ${label}`,
      );
    }
    assert.doesNotThrow(conv(task, path, { ...row, label: 1n }), task);
  }
  const multirc = {
    idx: { paragraph: 0, question: 0, answer: 0 },
    paragraph: "p",
    question: "q",
    answer: "a",
    label: -1n,
  };
  assert.throws(
    conv("multirc", "super_glue/MultiRC/train.jsonl", multirc),
    /field label: expected the label 0 or 1 in a labelled split, got -1$/,
  );
  for (const label of [-1, Number.NaN, 5.5]) {
    assert.throws(
      conv("stsb", "glue/STS-B/train.tsv", { sentence1: "a", sentence2: "b", idx: 0, label }),
      new RegExp(`field label: expected a score in \\[0, 5\\], got ${label}$`),
    );
  }
});

Deno.test("MultiRC rows regroup into passages/questions/answers; test has no labels", () => {
  const row = (p: number, q: number, a: number, label: bigint) => ({
    paragraph: `para ${p}`,
    question: `q ${q}`,
    answer: `a ${a}`,
    idx: { paragraph: p, question: q, answer: a },
    label,
  });
  const rows = [row(0, 0, 0, 1n), row(0, 0, 1, 0n), row(0, 1, 2, 1n), row(1, 2, 3, 0n)];
  const f = spec("multirc", "super_glue/MultiRC/val.jsonl");
  const text = convertRows(findTaskSource("multirc"), f, rows);
  const objs = text.trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(objs.length, 2);
  assert.deepEqual(objs[0].passage.questions[0].answers, [{ text: "a 0", idx: 0, label: 1 }, {
    text: "a 1",
    idx: 1,
    label: 0,
  }]);
  assert.equal(objs[0].passage.questions[1].idx, 1);
  assert.equal(countRows(text, f, "x"), 4);
  const t = convertRows(
    findTaskSource("multirc"),
    spec("multirc", "super_glue/MultiRC/test.jsonl"),
    [
      row(5, 6, 7, -1n),
    ],
  );
  assert.deepEqual(JSON.parse(t).passage.questions[0].answers[0], { text: "a 7", idx: 7 });
});

Deno.test("ReCoRD rows regroup per passage; answer spans from entity spans (inclusive end)", () => {
  const text = "Héllo Bob met Ann.\n@highlight\nBob won";
  const spans = { text: ["Bob", "Ann", "Bob"], start: [6, 14, 30], end: [8, 16, 32] };
  const rows = [
    {
      passage: text,
      query: "@placeholder met Ann",
      entities: ["Bob", "Ann"],
      entity_spans: spans,
      answers: ["Bob"],
      idx: { passage: 3, query: 10 },
    },
    {
      passage: text,
      query: "Bob met @placeholder",
      entities: ["Bob", "Ann"],
      entity_spans: spans,
      answers: ["Ann"],
      idx: { passage: 3, query: 11 },
    },
  ];
  const f = spec("record", "super_glue/ReCoRD/val.jsonl");
  const out = convertRows(findTaskSource("record"), f, rows);
  assert.ok(out.includes("H\\u00e9llo"), "Python-style ASCII escapes");
  const o = JSON.parse(out);
  assert.equal(o.idx, 3);
  assert.equal(o.passage.text, text);
  assert.deepEqual(o.passage.entities, [{ start: 6, end: 8 }, { start: 14, end: 16 }, {
    start: 30,
    end: 32,
  }]);
  assert.deepEqual(o.qas[0].answers, [{ start: 6, end: 8, text: "Bob" }, {
    start: 30,
    end: 32,
    text: "Bob",
  }]);
  assert.deepEqual(o.qas[1].answers, [{ start: 14, end: 16, text: "Ann" }]);
  assert.equal(countRows(out, f, "x"), 2);
  // Without entity_spans: spans found by searching, in code points (é is one code point).
  const noSpans = rows.map(({ entity_spans: _, ...r }) => r);
  const o2 = JSON.parse(convertRows(findTaskSource("record"), f, noSpans));
  assert.deepEqual(o2.passage.entities, [{ start: 6, end: 8 }, { start: 14, end: 16 }, {
    start: 30,
    end: 32,
  }]);
});

Deno.test("pyJson matches Python json.dumps defaults", () => {
  assert.equal(
    pyJson({ a: 'x"y\\\n', b: [1, true, null], c: 1.1, d: undefined, e: "\u2019\x7f" }),
    '{"a": "x\\"y\\\\\\n", "b": [1, true, null], "c": 1.1, "e": "\\u2019\\u007f"}',
  );
});

Deno.test("AX-g from parquet: no made-up pair_id, so gender parity is not scored", () => {
  const src = findTaskSource("axg");
  const file = spec("axg", "super_glue/AX-g/AX-g.jsonl");
  const rows = [0, 1, 2, 3].map((i) => ({
    premise: `P${i}.`,
    hypothesis: `H${i}.`,
    idx: i,
    label: BigInt(i % 2),
  }));
  const text = convertRows(src, file, rows);
  assert.equal(
    text.split("\n")[0],
    '{"hypothesis": "H0.", "idx": 0, "label": "entailment", "premise": "P0."}',
  );
  const ex = examplesFromBytes("axg", "test", new TextEncoder().encode(text), file.path).examples;
  assert.deepEqual(ex.map((e) => e.group), [undefined, undefined, undefined, undefined]);
  // Labels alternate entailment / not_entailment, so half the predictions are right.
  const preds = ["entailment", "entailment", "entailment", "entailment"];
  assert.deepEqual(scoreTask("axg", ex, preds), { accuracy: 50 });
  // A parquet that does carry pair_id keeps it.
  const paired = convertRows(
    src,
    file,
    rows.map((r) => ({ ...r, pair_id: 7n + BigInt(r.idx >> 1) })),
  );
  assert.equal(
    paired.split("\n")[0],
    '{"hypothesis": "H0.", "idx": 0, "label": "entailment", "pair_id": 7, "premise": "P0."}',
  );
  const pairedEx = examplesFromBytes("axg", "test", new TextEncoder().encode(paired), file.path);
  assert.deepEqual(scoreTask("axg", pairedEx.examples, preds), {
    accuracy: 50,
    gender_parity: 100,
  });
});

Deno.test("Hugging Face ClassLabel ints load as the right label word for every task", () => {
  // Reference §6 "Label integers" (ClassLabel order = TFDS label_classes = T5 label words). Watch
  // WNLI (0 = not_entailment, reversed from RTE/QNLI) and CB (contradiction before neutral).
  const classes: Record<string, string[]> = {
    cola: ["unacceptable", "acceptable"],
    sst2: ["negative", "positive"],
    mrpc: ["not_equivalent", "equivalent"],
    qqp: ["not_duplicate", "duplicate"],
    mnli: ["entailment", "neutral", "contradiction"],
    qnli: ["entailment", "not_entailment"],
    rte: ["entailment", "not_entailment"],
    wnli: ["not_entailment", "entailment"],
    boolq: ["False", "True"],
    cb: ["entailment", "contradiction", "neutral"],
    copa: ["choice1", "choice2"],
    multirc: ["False", "True"],
    rte_sg: ["entailment", "not_entailment"],
    wic: ["False", "True"],
    wsc: ["False", "True"],
    axb: ["entailment", "not_entailment"],
    axg: ["entailment", "not_entailment"],
  };
  const fields: Record<string, Row> = {
    cola: { sentence: "S." },
    sst2: { sentence: "s " },
    mrpc: { sentence1: "A.", sentence2: "B." },
    qqp: { question1: "A?", question2: "B?" },
    mnli: { premise: "P.", hypothesis: "H." },
    qnli: { question: "Q?", sentence: "S." },
    rte: { sentence1: "A.", sentence2: "B." },
    wnli: { sentence1: "A.", sentence2: "B." },
    boolq: { question: "q", passage: "p" },
    cb: { premise: "P.", hypothesis: "H." },
    copa: { premise: "P.", choice1: "a", choice2: "b", question: "cause" },
    rte_sg: { premise: "P.", hypothesis: "H." },
    wic: { word: "w", sentence1: "a w", sentence2: "b w", start1: 2, start2: 2, end1: 3, end2: 3 },
    wsc: {
      text: "Tom told Bob that he was late .",
      span1_index: 0,
      span2_index: 4,
      span1_text: "Tom",
      span2_text: "he",
    },
    axb: { sentence1: "A.", sentence2: "B." },
    axg: { premise: "P.", hypothesis: "H." },
  };
  for (const [task, words] of Object.entries(classes)) {
    const src = findTaskSource(task);
    // Labelled files: train, or MNLI's dev (16 columns) and the diagnostics' only (test) file.
    const file = src.files.find((f) => f.split === "train" && task !== "mnli") ??
      src.files.find((f) => f.hfSplit === "validation_matched") ?? src.files[0]!;
    const rows: Row[] = words.map((_, k) =>
      task === "multirc"
        ? {
          paragraph: "p",
          question: "q",
          answer: `a${k}`,
          idx: { paragraph: 0, question: 0, answer: k },
          label: BigInt(k),
        }
        : { ...fields[task], idx: k, label: BigInt(k) }
    );
    const text = convertRows(src, file, rows);
    const split = file.split === "test"
      ? "test"
      : file.hfSplit === "validation_matched"
      ? "validation_matched"
      : file.split === "train" && task === "wsc"
      ? "validation" // WSC train keeps label==True rows only
      : file.split;
    const ex = examplesFromBytes(task, split, new TextEncoder().encode(text), file.path).examples;
    const got = task === "wsc" ? ex.map((e) => words[e.label as number]) : ex.map((e) => e.target);
    assert.deepEqual(got, words, task);
  }
});

/** Python's csv.reader(delimiter="\t", quoting=QUOTE_NONE) over a text file: lines split on tab. */
function tsvCells(text: string): string[][] {
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  return lines.map((l) => l.split("\t"));
}

/**
 * The rows Hugging Face's GLUE script (`nyu-mll/glue`) makes of an official file: `idx` = the row
 * number (int32), the label as its ClassLabel int64 (-1 on test; STS-B's score as float32), text
 * columns as read with no quote handling. CoLA train/dev are read by position (no header), MRPC
 * past its byte-order mark.
 */
function hfGlueRows(config: string, text: string, test: boolean): Row[] {
  const cells = tsvCells(text.replace(/^\ufeff/, ""));
  if (config === "cola" && !test) {
    return cells.map((c, n) => ({ sentence: c[3], label: BigInt(c[1]!), idx: n }));
  }
  const head = cells[0]!;
  return cells.slice(1).map((c, n) => {
    const r = Object.fromEntries(head.map((h, j) => [h, c[j]!]));
    const cls = (col: string, names?: string[]) =>
      test ? -1n : BigInt(names ? names.indexOf(r[col]!) : Number(r[col]));
    switch (config) {
      case "cola":
      case "sst2":
        return { sentence: r.sentence, label: cls("label"), idx: n };
      case "mrpc":
        return {
          sentence1: r["#1 String"],
          sentence2: r["#2 String"],
          label: cls("Quality"),
          idx: n,
        };
      case "stsb":
        return {
          sentence1: r.sentence1,
          sentence2: r.sentence2,
          label: test ? -1 : Math.fround(Number(r.score)),
          idx: n,
        };
      case "rte":
        return {
          sentence1: r.sentence1,
          sentence2: r.sentence2,
          label: cls("label", ["entailment", "not_entailment"]),
          idx: n,
        };
    }
    throw new Error(`no HF row builder for ${config}`);
  });
}

Deno.test("every GLUE file of the mirror: HF rows convert back to its bytes, less only the documented placeholders", async () => {
  const tasks: [string, string][] = [
    ["cola", "CoLA"],
    ["sst2", "SST-2"],
    ["mrpc", "MRPC"],
    ["stsb", "STS-B"],
    ["rte", "RTE"],
  ];
  let files = 0;
  let scoresReformatted = 0;
  for (const [task, folder] of tasks) {
    const src = findTaskSource(task);
    for (const f of src.files) {
      assert.ok(f.path.startsWith(`glue/${folder}/`));
      const official = await read(f.path);
      const test = f.split === "test";
      const got = convertRows(src, f, hfGlueRows(task, official, test));
      // The official text with the columns HF lacks replaced by the documented placeholders.
      const endsWithNewline = official.endsWith("\n");
      const expected = tsvCells(official).map((c, line) => {
        const header = f.header && line === 0;
        const n = line - (f.header ? 1 : 0); // HF's idx: the row number
        if (header) return c;
        if (task === "cola" && !test) return ["hf", c[1]!, c[1] === "0" ? "*" : "", c[3]!];
        if (task === "mrpc") return [c[0]!, `hf${n}a`, `hf${n}b`, c[3]!, c[4]!];
        if (task === "stsb") {
          const u = "unknown";
          const cells = [c[0]!, u, u, u, String(n), u, u, c[7]!, c[8]!];
          if (!test) {
            // HF keeps the score as float32: the shortest decimal of that float32 is written
            // ("5.000" → "5", "3.800" → "3.8"); it reads back to the same float32.
            const score = float32ToString(Math.fround(Number(c[9])));
            assert.equal(
              Math.fround(Number(score)),
              Math.fround(Number(c[9])),
              `${f.path}:${line}`,
            );
            if (score !== c[9]) scoresReformatted++;
            cells.push(score);
          }
          return cells;
        }
        return c;
      }).map((c) => c.join("\t")).join("\n") + (endsWithNewline ? "\n" : "");
      assert.equal(got, expected, f.path);
      const identical = ["cola", "sst2", "rte"].includes(task) && (task !== "cola" || test);
      assert.equal(
        got === official,
        identical,
        `${f.path}: byte-identical iff no column is missing`,
      );
      files++;
    }
  }
  assert.equal(files, 15);
  // Measured: 2,958 train and 1,162 dev scores are written in another form than the official one.
  assert.equal(scoresReformatted, 2958 + 1162);
});

Deno.test("ReCoRD and MultiRC from HF's flattened rows load as the same examples as the official nesting", () => {
  const enc = new TextEncoder();
  const strip = (e: object) => ({ ...e, file: undefined, line: undefined });
  const load = (task: string, split: "train" | "validation" | "test", text: string) =>
    examplesFromBytes(task, split, enc.encode(text), "x").examples.map(strip);
  const paths = { train: "train.jsonl", validation: "val.jsonl", test: "test.jsonl" } as const;
  // ReCoRD: entities out of passage order with a duplicate span, offsets in code points after an
  // astral character, answers listing every mention. HF sorts the spans by start, keeps the
  // entity texts as a set and the answers as sorted unique texts (reference §6).
  const text = "\u{1F600} Bob met Ann in Paris.\n@highlight\nAnn and Bob won; Paris cheered";
  const at = (t: string, k = 0) => {
    let i = -1;
    for (let n = 0; n <= k; n++) i = text.indexOf(t, i + 1);
    const start = Array.from(text.slice(0, i)).length;
    return { start, end: start + Array.from(t).length - 1 };
  };
  const record = [{
    idx: 7,
    source: "Daily mail",
    passage: {
      text,
      entities: [at("Paris"), at("Bob"), at("Ann"), at("Ann", 1), at("Bob", 1), at("Bob")],
    },
    qas: [
      { query: "@placeholder met Ann", idx: 70, answers: [at("Bob"), at("Bob", 1)] },
      { query: "They cheered in @placeholder", idx: 71, answers: [at("Paris")] },
    ],
  }, {
    idx: 8,
    source: "x",
    passage: { text: "Z met Y.", entities: [{ start: 6, end: 6 }, { start: 0, end: 0 }] },
    qas: [{ query: "@placeholder met Y", idx: 80, answers: [{ start: 0, end: 0 }] }],
  }];
  const cut = (t: string, e: { start: number; end: number }) =>
    Array.from(t).slice(e.start, e.end + 1).join("");
  for (const split of ["train", "validation", "test"] as const) {
    const test = split === "test";
    const official = record.map((o) =>
      JSON.stringify({
        ...o,
        qas: o.qas.map(({ answers, ...q }) =>
          test ? q : { ...q, answers: answers.map((a) => ({ ...a, text: cut(o.passage.text, a) })) }
        ),
      })
    ).join("\n") + "\n";
    const rows: Row[] = record.flatMap((o) => {
      const spans = o.passage.entities.map((e) => ({ ...e, text: cut(o.passage.text, e) }))
        .sort((a, b) => a.start - b.start);
      return o.qas.map((qa) => ({
        passage: o.passage.text,
        query: qa.query,
        entities: [...new Set(spans.map((e) => e.text))],
        entity_spans: {
          text: spans.map((e) => e.text),
          start: spans.map((e) => e.start),
          end: spans.map((e) => e.end),
        },
        answers: test ? [] : [...new Set(qa.answers.map((a) => cut(o.passage.text, a)))].sort(),
        idx: { passage: o.idx, query: qa.idx },
      }));
    });
    const f = spec("record", `super_glue/ReCoRD/${paths[split]}`);
    const want = load("record", split, official);
    assert.ok(want.length >= 3);
    assert.deepEqual(load("record", split, convertRows(findTaskSource("record"), f, rows)), want);
    // An older parquet without entity_spans: spans found by searching the entity texts.
    const old = rows.map(({ entity_spans: _, ...r }) => r);
    assert.deepEqual(load("record", split, convertRows(findTaskSource("record"), f, old)), want);
  }
  // MultiRC: one HF row per answer, regrouped into passages, questions, answers in file order.
  const multirc = [{
    idx: 3,
    version: 1.1,
    passage: {
      text: "P one \u00e9 \u{1F600}.",
      questions: [
        {
          question: "Q a?",
          answers: [{ text: "x", idx: 10, label: 1 }, { text: "y", idx: 11, label: 0 }],
          idx: 5,
        },
        { question: "Q b?", answers: [{ text: "z", idx: 12, label: 0 }], idx: 6 },
      ],
    },
  }, {
    idx: 4,
    version: 1.1,
    passage: {
      text: "P two",
      questions: [{ question: "Q c?", answers: [{ text: "w", idx: 13, label: 1 }], idx: 7 }],
    },
  }];
  for (const split of ["train", "validation", "test"] as const) {
    const test = split === "test";
    const official = multirc.map((o) =>
      JSON.stringify({
        ...o,
        passage: {
          ...o.passage,
          questions: o.passage.questions.map((q) => ({
            ...q,
            answers: q.answers.map(({ label, ...a }) => test ? a : { ...a, label }),
          })),
        },
      })
    ).join("\n") + "\n";
    const rows: Row[] = multirc.flatMap((o) =>
      o.passage.questions.flatMap((q) =>
        q.answers.map((a) => ({
          paragraph: o.passage.text,
          question: q.question,
          answer: a.text,
          label: test ? -1n : BigInt(a.label),
          idx: { paragraph: o.idx, question: q.idx, answer: a.idx },
        }))
      )
    );
    const f = spec("multirc", `super_glue/MultiRC/${paths[split]}`);
    const want = load("multirc", split, official);
    assert.equal(want.length, 4);
    assert.deepEqual(load("multirc", split, convertRows(findTaskSource("multirc"), f, rows)), want);
  }
});

Deno.test("GLUE rows of every labelled train file and every test file load with each column in its place (QQP, MNLI, QNLI, … not in the mirror)", () => {
  // T5's inputs name each field: a swapped pair of columns, or a label column too few, shows.
  const cases: [string, Row, string][] = [
    ["cola", { sentence: "S." }, "cola sentence: S."],
    ["sst2", { sentence: "S." }, "sst2 sentence: S."],
    ["mrpc", { sentence1: "A.", sentence2: "B." }, "mrpc sentence1: A. sentence2: B."],
    ["qqp", { question1: "A?", question2: "B?" }, "qqp question1: A? question2: B?"],
    ["mnli", { premise: "P.", hypothesis: "H." }, "mnli hypothesis: H. premise: P."],
    ["qnli", { question: "Q?", sentence: "S." }, "qnli question: Q? sentence: S."],
    ["rte", { sentence1: "A.", sentence2: "B." }, "rte sentence1: A. sentence2: B."],
    ["wnli", { sentence1: "A.", sentence2: "B." }, "wnli sentence1: A. sentence2: B."],
  ];
  for (const [task, fields, input] of cases) {
    const src = findTaskSource(task);
    for (const split of ["train", "test"] as const) {
      const file = src.files.find((f) => f.split === split)!;
      // Label 1 (train): every binary task's second class, MNLI's "neutral".
      const text = convertRows(src, file, [{
        ...fields,
        idx: 0,
        label: split === "test" ? -1n : 1n,
      }]);
      const ex = examplesFromBytes(task, split, new TextEncoder().encode(text), file.path).examples;
      assert.equal(ex.length, 1, `${file.path}`);
      assert.equal(ex[0]!.input, input, file.path);
      if (split === "train") assert.equal(ex[0]!.label, 1, `${file.path}: label`);
    }
  }
});

Deno.test("ReCoRD test rows carry no answers; a searched answer's end counts code points; AX-b's idx is a string", () => {
  const passage = "\u{1D538}nn met Bob.";
  const row = (answers: string[]) => ({
    passage,
    query: "@placeholder met Bob",
    entities: ["Bob"],
    answers,
    idx: { passage: 0, query: 0 },
  });
  const src = findTaskSource("record");
  // An answer that is no entity is searched in the passage: "𝔸nn" is 3 code points (4 UTF-16
  // units), at 0, so its inclusive end is 2.
  const dev = JSON.parse(
    convertRows(src, spec("record", "super_glue/ReCoRD/val.jsonl"), [row(["\u{1D538}nn"])]),
  );
  assert.deepEqual(dev.qas[0].answers, [{ start: 0, end: 2, text: "\u{1D538}nn" }]);
  assert.deepEqual(dev.passage.entities, [{ start: 8, end: 10 }]);
  // A searched answer that occurs more than once takes its first occurrence (code point 13 is
  // the second "Bob." here, past the entity "Bob" at 8).
  const twice = JSON.parse(
    convertRows(src, spec("record", "super_glue/ReCoRD/val.jsonl"), [
      { ...row(["Bob."]), passage: passage + " Bob." },
    ]),
  );
  assert.deepEqual(twice.qas[0].answers, [{ start: 8, end: 11, text: "Bob." }]);
  // An answer found nowhere (a corrupt row) is refused, naming the parquet row and field.
  assert.throws(
    () => convertRows(src, spec("record", "super_glue/ReCoRD/val.jsonl"), [row(["Tom"])]),
    new RegExp(
      '^Error: super_glue/ReCoRD/val\\.jsonl \\(parquet row 0\\) field answers: answer "Tom" ' +
        "is neither an entity nor in the passage$",
    ),
  );
  // Test: HF gives no answers ([]); the official test file has no "answers" key.
  const test = JSON.parse(
    convertRows(src, spec("record", "super_glue/ReCoRD/test.jsonl"), [row([])]),
  );
  assert.deepEqual(Object.keys(test.qas[0]), ["query", "idx"]);
  // AX-b: the official idx is a string ("0"), unlike the other SuperGLUE files.
  const axb = findTaskSource("axb");
  const line = convertRows(axb, axb.files[0]!, [
    { sentence1: "A.", sentence2: "B.", idx: 0, label: 1n },
  ]);
  assert.equal(
    line.split("\n")[0],
    '{"idx": "0", "label": "not_entailment", "sentence1": "A.", "sentence2": "B."}',
  );
});

Deno.test("no parquet rows convert to an empty file, never a lone newline, for every file", () => {
  let n = 0;
  for (const src of TASK_SOURCES) {
    for (const file of src.files) {
      assert.equal(convertRows(src, file, []), "", file.path);
      n++;
    }
  }
  assert.ok(n > 40, `${n} files`);
});
