import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { sharedPath } from "../model/shared_dir.ts";
import { examplesFromBytes, loadExamples, type LoadOptions } from "./load.ts";
import { scoreTask } from "./metrics.ts";
import { DataError, parseDpr } from "./parse.ts";
import type { Example, TaskSplit } from "./types.ts";

const DATA = sharedPath("data");

// Official row counts, as listed in shared/data/README.md.
const COUNTS: Array<[string, TaskSplit, number]> = [
  ["cola", "train", 8551],
  ["cola", "validation", 1043],
  ["cola", "test", 1063],
  ["sst2", "train", 67349],
  ["sst2", "validation", 872],
  ["sst2", "test", 1821],
  ["mrpc", "train", 3668],
  ["mrpc", "validation", 408],
  ["mrpc", "test", 1725],
  ["stsb", "train", 5749],
  ["stsb", "validation", 1500],
  ["stsb", "test", 1379],
  ["rte", "train", 2490],
  ["rte", "validation", 277],
  ["rte", "test", 3000],
  ["cb", "train", 250],
  ["cb", "validation", 56],
  ["cb", "test", 250],
  ["rte_sg", "train", 2490],
  ["rte_sg", "validation", 277],
  ["rte_sg", "test", 3000],
  ["boolq", "validation", 3270],
  ["copa", "validation", 100],
  ["wic", "validation", 638],
  ["wsc", "validation", 104],
];

const cache = new Map<string, Example[]>();
async function load(task: string, split: TaskSplit): Promise<Example[]> {
  const key = `${task}/${split}`;
  let ex = cache.get(key);
  if (ex === undefined) {
    ex = await loadExamples(task, split, DATA);
    cache.set(key, ex);
  }
  return ex;
}

function byId(examples: Example[], id: string): Example {
  const ex = examples.find((e) => e.id === id);
  assert.ok(ex, `no example ${id}`);
  return ex;
}

Deno.test("every file in shared/data parses to its official row count", async () => {
  for (const [task, split, n] of COUNTS) {
    const ex = await load(task, split);
    assert.equal(ex.length, n, `${task} ${split}`);
    assert.equal(new Set(ex.map((e) => e.id)).size, n, `${task} ${split} ids unique`);
    const unlabelled = split === "test";
    for (const e of ex) {
      assert.equal(e.label === undefined, unlabelled, `${e.id} label presence`);
      // T5: "<unk>" for an unlabelled row, STS-B's "-1.0" (its label -1, rounded and printed).
      if (unlabelled) assert.equal(e.target, task === "stsb" ? "-1.0" : "<unk>", e.id);
    }
  }
});

Deno.test("CoLA: header-less train/dev (dev without final newline), test with header", async () => {
  const train = await load("cola", "train");
  // glue/CoLA/train.tsv line 1: gj04 1 (empty) Our friends won't buy this analysis, ...
  assert.deepEqual(
    [train[0]?.input, train[0]?.target, train[0]?.line],
    [
      "cola sentence: Our friends won't buy this analysis, let alone the next one we propose.",
      "acceptable",
      1,
    ],
  );
  const dev = await load("cola", "validation");
  assert.equal(dev[0]?.input, "cola sentence: The sailors rode the breeze clear of the rocks.");
  assert.equal(dev.at(-1)?.line, 1043);
  const test = await load("cola", "test");
  assert.deepEqual([test[0]?.id, test[0]?.input, test[0]?.line], [
    "cola/test/0",
    "cola sentence: Bill whistled past the house.",
    2,
  ]);
});

Deno.test("CoLA: a header line added to a header-less file is named as such, not only as a label", () => {
  const rows = "gj04\t1\t\tOur friends won't buy this.\ngj04\t0\t*\tThey drank the pub.\n";
  const header = "source\tlabel\tauthor_label\tsentence\n";
  const bytes = new TextEncoder().encode(header + rows);
  assert.throws(
    () => examplesFromBytes("cola", "train", bytes, "train.tsv", { checkRows: false }),
    (e: Error) => {
      assert.match(
        e.message,
        /^train\.tsv:1: field "label": unknown label "label" \(expected 0, 1\); line 1 reads as a header \("source", "label", "author_label", "sentence"\); the official file has none \(its columns: source, label, author_label, sentence\): remove that line$/,
      );
      return true;
    },
  );
  // A bad label on line 1 that is no column name: the plain error, no header hint.
  const bad = new TextEncoder().encode("gj04\t2\t\tA.\n" + rows);
  assert.throws(
    () => examplesFromBytes("cola", "train", bad, "train.tsv", { checkRows: false }),
    (e: Error) => /unknown label "2" \(expected 0, 1\)$/.test(e.message),
  );
  // Without the added line the same rows load.
  const ok = examplesFromBytes("cola", "train", new TextEncoder().encode(rows), "train.tsv", {
    checkRows: false,
  });
  assert.equal(ok.examples.length, 2);
});

Deno.test("SST-2 keeps the trailing space; MRPC BOM header and quotes kept verbatim", async () => {
  const sst = await load("sst2", "train");
  assert.equal(sst[0]?.input, "sst2 sentence: hide new secretions from the parental units ");
  assert.equal(sst[0]?.target, "negative");
  const mrpc = await load("mrpc", "train");
  assert.equal(
    mrpc[0]?.input,
    'mrpc sentence1: Amrozi accused his brother, whom he called "the witness", of deliberately ' +
      'distorting his evidence. sentence2: Referring to him as only "the witness", Amrozi accused ' +
      "his brother of deliberately distorting his evidence.",
  );
  assert.equal(mrpc[0]?.target, "equivalent");
  const dev = await load("mrpc", "validation");
  // An unbalanced quote opens sentence2 of dev row 1: no quote handling must keep it.
  assert.equal(
    dev[0]?.input,
    "mrpc sentence1: He said the foodservice pie business doesn't fit the company's long-term " +
      'growth strategy. sentence2: "The foodservice pie business does not fit our long-term growth strategy.',
  );
});

Deno.test("STS-B, RTE (GLUE and SuperGLUE), CB, COPA, WiC, BoolQ exact strings", async () => {
  const stsb = await load("stsb", "train");
  assert.deepEqual([stsb[1]?.input, stsb[1]?.target, stsb[1]?.label], [
    "stsb sentence1: A man is playing a large flute. sentence2: A man is playing a flute.",
    "3.8",
    3.8,
  ]);
  const rte = await load("rte", "train");
  assert.equal(
    rte[0]?.input,
    "rte sentence1: No Weapons of Mass Destruction Found in Iraq Yet. sentence2: Weapons of Mass Destruction Found in Iraq.",
  );
  assert.equal(rte[0]?.target, "not_entailment");
  const rteSg = await load("rte_sg", "train");
  assert.equal(
    rteSg[0]?.input,
    "rte hypothesis: Weapons of Mass Destruction Found in Iraq. premise: No Weapons of Mass Destruction Found in Iraq Yet.",
  );
  const cb = await load("cb", "validation");
  assert.equal(
    cb[0]?.input,
    "cb hypothesis: Valence was helping premise: Valence the void-brain, Valence the virtuous valet. " +
      "Why couldn't the figger choose his own portion of titanic anatomy to shaft? Did he think he was helping?",
  );
  assert.deepEqual([cb[0]?.target, cb[0]?.label], ["contradiction", 1]);
  const copa = await load("copa", "validation");
  assert.equal(
    copa[0]?.input,
    "copa choice1: The toilet filled with water. choice2: Water flowed from the spout. " +
      "premise: The man turned on the faucet. question: effect",
  );
  assert.equal(copa[0]?.target, "choice2");
  const wic = await load("wic", "validation");
  assert.equal(
    byId(wic, "wic/validation/1").input,
    "wic sentence1: Businessmen of every stripe joined in opposition to the proposal. " +
      "sentence2: They earned their stripes in Kuwait. word: stripe",
  );
  assert.equal(byId(wic, "wic/validation/1").target, "False");
  const boolq = await load("boolq", "validation");
  const b = byId(boolq, "boolq/validation/1");
  assert.ok(
    b.input.startsWith("boolq passage: Property tax -- Property tax or 'house tax' is a local tax"),
  );
  assert.ok(
    b.input.endsWith(
      "falling in the first two brackets. question: is house tax and property tax are same",
    ),
  );
  assert.equal(b.target, "True");
});

Deno.test("WSC simple: pronoun starred, wsc.fixed case repair, T5 special case", async () => {
  const wsc = await load("wsc", "validation");
  const e1 = byId(wsc, "wsc/validation/1");
  assert.equal(
    e1.input,
    "wsc: Mr. Moncrieff visited Chester 's luxurious New York apartment, thinking that it belonged to " +
      "his son Edward . The result was that Mr. Moncrieff has decided to cancel Edward 's allowance on " +
      "the ground that he no longer requires *his* financial support.",
  );
  assert.deepEqual([e1.target, e1.label], ["Mr. Moncrieff", 1]);
  // span1_text "The table" is not in the text; wsc.fixed lower-cases it like the word at index 6.
  const e5 = byId(wsc, "wsc/validation/5");
  assert.equal(
    e5.input,
    "wsc: The large ball crashed right through the table because *it* was made of styrofoam.",
  );
  assert.equal(e5.target, "the table");
  // T5 hard-codes this text (span2_index points at "use", not "it").
  const e42 = byId(wsc, "wsc/validation/42");
  assert.equal(
    e42.input,
    "wsc: When they had eventually calmed down a bit , and had gotten home, Mr. Farley put the magic " +
      "pebble in an iron safe . Some day they might want to use *it* , but really for now, what more " +
      "could they wish for?",
  );
  assert.deepEqual([e42.target, e42.label], ["safe", 0]);
});

Deno.test("WSC train keeps only label==True rows; test targets are span1_text", () => {
  const line = (label: boolean | undefined, idx: number) =>
    JSON.stringify({
      text: "Tom told Bob that he was late .",
      target: { span2_index: 4, span1_index: 0, span1_text: "Tom", span2_text: "he" },
      idx,
      ...(label === undefined ? {} : { label }),
    });
  const bytes = new TextEncoder().encode(
    [line(true, 0), line(false, 1), line(true, 2)].join("\n") + "\n",
  );
  const train = examplesFromBytes("wsc", "train", bytes, "train.jsonl");
  assert.equal(train.rows, 3);
  assert.deepEqual(train.examples.map((e) => e.id), ["wsc/train/0", "wsc/train/2"]);
  assert.equal(train.examples[0]?.input, "wsc: Tom told Bob that *he* was late .");
  const testBytes = new TextEncoder().encode(line(undefined, 0) + "\n");
  const test = examplesFromBytes("wsc", "test", testBytes, "test.jsonl");
  assert.deepEqual([test.examples[0]?.target, test.examples[0]?.label], ["Tom", undefined]);
  // The same unlabelled row in a labelled split is an error naming the field.
  assert.throws(
    () => examplesFromBytes("wsc", "validation", testBytes, "val.jsonl"),
    /^DataError: val\.jsonl:1: field "label": missing$/,
  );
});

Deno.test("MultiRC flattened per answer with markup removed; groups by question", () => {
  const row = {
    idx: 7,
    version: 1.1,
    passage: {
      text: "<b>Sent 1: </b>Bob ran.<br><b>Sent 2: </b>He won.<br>",
      questions: [
        {
          question: "Who won?",
          idx: 3,
          answers: [{ text: "Bob", idx: 10, label: 1 }, { text: "Tom", idx: 11, label: 0 }],
        },
        { question: "Did he run?", idx: 4, answers: [{ text: "yes", idx: 12, label: true }] },
      ],
    },
  };
  const bytes = new TextEncoder().encode(JSON.stringify(row) + "\n");
  const { examples, rows } = examplesFromBytes("multirc", "validation", bytes, "val.jsonl");
  assert.equal(rows, 3);
  assert.deepEqual(examples.map((e) => [e.id, e.target, e.group, e.label]), [
    ["multirc/validation/7-3-10", "True", "3", 1],
    ["multirc/validation/7-3-11", "False", "3", 0],
    ["multirc/validation/7-4-12", "True", "4", 1],
  ]);
  assert.equal(
    examples[0]?.input,
    "multirc question: Who won? answer: Bob paragraph: Sent 1: Bob ran. Sent 2: He won. ",
  );
});

Deno.test("ReCoRD: passage cleanup, sorted unique entities, per-answer train / per-query eval", () => {
  const text =
    "Bob Smith met Ann.\n@highlight\nAnn wins\n@highlight\nBob loses \u00e9t\u00e9 \u{1F600}X";
  // Entity spans are inclusive code-point offsets: "Bob Smith" 0-8, "Ann" 14-16 and 30-32,
  // "Bob" 50-52, "X" 65 (after the emoji, code-unit offsets would be one more).
  const row = {
    idx: 5,
    source: "Daily mail",
    passage: {
      text,
      entities: [
        { start: 0, end: 8 },
        { start: 14, end: 16 },
        { start: 30, end: 32 },
        { start: 50, end: 52 },
        { start: 65, end: 65 },
      ],
    },
    qas: [
      {
        query: "@placeholder won",
        idx: 9,
        answers: [{ start: 14, end: 16, text: "Ann" }, { start: 30, end: 32, text: "Ann" }, {
          start: 0,
          end: 8,
          text: "Bob Smith",
        }],
      },
    ],
  };
  const cps = Array.from(text);
  assert.equal(cps.slice(30, 33).join(""), "Ann");
  assert.equal(cps.slice(50, 53).join(""), "Bob");
  assert.equal(cps[65], "X");
  const bytes = new TextEncoder().encode(JSON.stringify(row) + "\n");
  const input = "record query: @placeholder won entities: Ann, Bob, Bob Smith, X passage: " +
    "Bob Smith met Ann. Ann wins. Bob loses \u00e9t\u00e9 \u{1F600}X";
  const train = examplesFromBytes("record", "train", bytes, "train.jsonl");
  assert.equal(train.rows, 1);
  assert.deepEqual(train.examples.map((e) => [e.input, e.target, e.group]), [
    [input, "Ann", "5/9"],
    [input, "Bob Smith", "5/9"],
  ]);
  const val = examplesFromBytes("record", "validation", bytes, "val.jsonl");
  assert.equal(val.examples.length, 1);
  assert.deepEqual(val.examples[0]?.answers, ["Ann", "Bob Smith"]);
  assert.equal(val.examples[0]?.target, "Ann");
});

Deno.test("a repeated id (a copied line, an edited idx) is an error naming both lines", () => {
  const enc = new TextEncoder();
  // A copied TSV row keeps the row count, so only the id check sees it.
  const tsv = enc.encode(
    "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tc\td\tnot_entailment\n" +
      "0\ta\tb\tentailment\n",
  );
  assert.throws(
    () => examplesFromBytes("rte", "train", tsv, "glue/RTE/train.tsv"),
    /^DataError: glue\/RTE\/train\.tsv:4: field "index": duplicate id "0", already at line 2 /,
  );
  const cb = (idx: number) =>
    JSON.stringify({ premise: "p", hypothesis: "h", label: "neutral", idx });
  assert.throws(
    () => examplesFromBytes("cb", "validation", enc.encode([0, 1, 1].map(cb).join("\n")), "v"),
    /^DataError: v:3: field "idx": duplicate id "1", already at line 2 /,
  );
  // MultiRC: the id joins paragraph, question and answer idx; two answers with one idx clash.
  const multirc = {
    idx: 0,
    passage: {
      text: "t",
      questions: [{
        question: "q",
        idx: 0,
        answers: [{ text: "a", idx: 0, label: 0 }, { text: "b", idx: 0, label: 1 }],
      }],
    },
  };
  assert.throws(
    () => examplesFromBytes("multirc", "train", enc.encode(JSON.stringify(multirc)), "m"),
    /^DataError: m:1: duplicate id "0-0-0", already at line 1 /,
  );
  // Distinct ids load.
  assert.equal(
    examplesFromBytes("cb", "validation", enc.encode([0, 1, 2].map(cb).join("\n")), "v")
      .examples.length,
    3,
  );
});

Deno.test("a JSONL id must be a non-negative integer or a non-empty string, and present", () => {
  const enc = new TextEncoder();
  const cb = (extra: Record<string, unknown>) =>
    enc.encode(JSON.stringify({ premise: "p", hypothesis: "h", label: "neutral", ...extra }));
  // A missing idx used to become the row number, keying a submission line to a made-up id.
  assert.throws(
    () => examplesFromBytes("cb", "validation", cb({}), "v.jsonl"),
    /^DataError: v\.jsonl:1: field "idx": missing$/,
  );
  for (const bad of [2.5, -1, true, { a: 1 }, "", null, [0]]) {
    assert.throws(
      () => examplesFromBytes("cb", "validation", cb({ idx: bad }), "v.jsonl"),
      new RegExp(
        '^DataError: v\\.jsonl:1: field "idx": expected a non-negative integer or a ' +
          "non-empty string, got ",
      ),
      JSON.stringify(bad),
    );
  }
  // The official kinds load: an integer, and a string as AX-b has it.
  for (const [idx, id] of [[0, "cb/validation/0"], ["17", "cb/validation/17"]] as const) {
    assert.deepEqual(
      examplesFromBytes("cb", "validation", cb({ idx }), "v.jsonl").examples.map((e) => e.id),
      [id],
    );
  }
  // The converters' top-level and nested ids are checked the same way.
  const passage = { text: "t", entities: [{ start: 0, end: 0 }] };
  const record = { passage, qas: [{ query: "@placeholder", idx: 0 }] };
  assert.throws(
    () => examplesFromBytes("record", "test", enc.encode(JSON.stringify(record)), "r"),
    /^DataError: r:1: field "idx": missing$/,
  );
  const recordQ = { idx: 0, passage, qas: [{ query: "@placeholder", idx: 1.5 }] };
  assert.throws(
    () => examplesFromBytes("record", "test", enc.encode(JSON.stringify(recordQ)), "r"),
    /^DataError: r:1: field "qas\.0\.idx": expected a non-negative integer /,
  );
  const multirc = {
    passage: { text: "t", questions: [{ question: "q", idx: 0, answers: [] }] },
  };
  assert.throws(
    () => examplesFromBytes("multirc", "test", enc.encode(JSON.stringify(multirc)), "m"),
    /^DataError: m:1: field "idx": missing$/,
  );
  // MultiRC's question and answer idx are integers in every official file: no string, no sign.
  const multircAt = (qidx: unknown, aidx: unknown) => ({
    idx: 0,
    passage: {
      text: "t",
      questions: [{ question: "q", idx: qidx, answers: [{ text: "a", idx: aidx }] }],
    },
  });
  for (const [q, a, field] of [[-1, 0, "question"], [0, "1", "answer"]] as const) {
    const path = `passage\\.questions\\.0\\.${field === "question" ? "" : "answers\\.0\\."}idx`;
    assert.throws(
      () => examplesFromBytes("multirc", "test", enc.encode(JSON.stringify(multircAt(q, a))), "m"),
      new RegExp(`^DataError: m:1: field "${path}": expected a non-negative integer, got `),
    );
  }
  assert.deepEqual(
    examplesFromBytes("multirc", "test", enc.encode(JSON.stringify(multircAt(3, 4))), "m")
      .examples.map((e) => e.id),
    ["multirc/test/0-3-4"],
  );
  const wsc = {
    text: "Tom said he ran .",
    target: { span1_index: 0, span2_index: 2, span1_text: "Tom", span2_text: "he" },
    idx: -3,
  };
  assert.throws(
    () => examplesFromBytes("wsc", "test", enc.encode(JSON.stringify(wsc)), "w"),
    /^DataError: w:1: field "idx": expected a non-negative integer /,
  );
});

Deno.test("official row count check catches a short file", () => {
  const bytes = new TextEncoder().encode(
    "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n",
  );
  assert.throws(
    () =>
      examplesFromBytes("rte", "train", bytes, "glue/RTE/train.tsv", {
        file: { path: "x", rows: 2490 },
      }),
    // What to do, for a CLI user too: the download command of that task.
    /glue\/RTE\/train\.tsv: expected 2490 rows \(official count\), found 1: .*\(deno task download --tasks glue\/rte fetches/,
  );
  const ok = examplesFromBytes("rte", "train", bytes, "t.tsv", {
    file: { path: "x", rows: 2490 },
    checkRows: false,
  });
  assert.equal(ok.examples.length, 1);
  // A row emptied by hand (a blank line between rows, TSV or JSON lines) is named; blank lines
  // at the end are not, nor are they in the count's message when there is none inside.
  const enc = new TextEncoder();
  const row = (i: number) =>
    JSON.stringify({ premise: "p", hypothesis: "h", label: "neutral", idx: i });
  const cases: [string, string, string, string][] = [
    [
      "rte",
      "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n\n2\tc\td\tentailment\n",
      "glue/RTE/train.tsv",
      " (line 3 is blank, ",
    ],
    ["cb", `${row(0)}\n  \n${row(2)}\n`, "super_glue/CB/train.jsonl", " (line 2 is blank, "],
    [
      "rte",
      "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n\n\n",
      "glue/RTE/train.tsv",
      "",
    ],
  ];
  for (const [task, text, path, hint] of cases) {
    assert.throws(
      () =>
        examplesFromBytes(task, "train", enc.encode(text), path, {
          file: { path: "x", rows: 250 },
        }),
      (e: Error) => {
        const tail = e.message.split("truncated or not the official file")[1] ?? "";
        assert.equal(tail.startsWith(hint === "" ? " (deno task" : hint), true, e.message);
        return true;
      },
    );
  }
});

Deno.test("a GLUE file cut mid-line in its last column is refused: the official one ends with \\n", async () => {
  const { getTask } = await import("./registry.ts");
  const cut = (b: Uint8Array, n = 1) => b.subarray(0, b.length - n);
  let checked = 0;
  for (const task of ["cola", "sst2", "mrpc", "stsb", "rte"]) {
    for (const split of ["train", "validation", "test"] as const) {
      const file = getTask(task).files[split]![0]!;
      const bytes = await Deno.readFile(join(DATA, file.path));
      const ends = bytes[bytes.length - 1] === 10;
      // The measurement the check rests on: every mirror file but CoLA dev ends with a newline.
      assert.equal(ends, file.path !== "glue/CoLA/dev.tsv", file.path);
      assert.equal(examplesFromBytes(task, split, bytes, file.path, { file }).rows, file.rows);
      if (!ends) {
        // CoLA dev cannot be told from a cut copy: a cut loads (every row, the last shorter).
        assert.equal(examplesFromBytes(task, split, cut(bytes), file.path, { file }).rows, 1043);
        continue;
      }
      // Every row is still there: a row count cannot see the cut.
      assert.equal(examplesFromBytes(task, split, cut(bytes), file.path).rows, file.rows);
      const lines = new TextDecoder().decode(bytes).split("\n").length - 1;
      for (const checkRows of [true, false]) {
        assert.throws(
          () => examplesFromBytes(task, split, cut(bytes), file.path, { file, checkRows }),
          new RegExp(
            `^DataError: ${file.path.replace(/[.]/g, "\\.")}:${lines}: the file ends mid-line ` +
              '\\(".*"\\), without the final newline the official file ends with: cut short',
          ),
          file.path,
        );
      }
      checked++;
    }
  }
  assert.equal(checked, 14);
  // Through loadExamples, the message names the file under the data folder.
  const dir = await Deno.makeTempDir();
  try {
    // Cut in the free-text last column: "\n" and two characters of sentence2.
    const bytes = cut(await Deno.readFile(join(DATA, "glue/RTE/test.tsv")), 3);
    const short = examplesFromBytes("rte", "test", bytes, "t").examples;
    assert.equal(short.length, 3000);
    assert.match(short[2999]!.input, / sentence2: .*[^.]$/);
    await Deno.mkdir(join(dir, "glue/RTE"), { recursive: true });
    await Deno.writeFile(join(dir, "glue/RTE/test.tsv"), bytes);
    await assert.rejects(
      () => loadExamples("rte", "test", dir, { checkRows: false }),
      (e: unknown) =>
        e instanceof DataError && e.file === join(dir, "glue/RTE/test.tsv") && e.line === 3001 &&
        /--tasks glue\/rte\), or end your own file with a newline$/.test(e.detail),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an empty data file is refused naming it and the download that fetches the official one", async () => {
  const { taskNames, getTask, sourceId } = await import("./registry.ts");
  const dir = await Deno.makeTempDir();
  try {
    const said = new Map<string, number>();
    for (const task of taskNames()) {
      for (const split of ["train", "validation", "test"] as const) {
        // The split's first file: MNLI's second would not be reached.
        const file = getTask(task).files[split]?.[0];
        if (file === undefined) continue;
        const abs = join(dir, file.path);
        await Deno.mkdir(join(abs, ".."), { recursive: true });
        await Deno.writeFile(abs, new Uint8Array());
        for (const checkRows of [true, false]) {
          let message: string;
          try {
            // A JSON or header-less file with no row check loads as no examples.
            const got = await loadExamples(task, split, dir, { checkRows });
            assert.ok(!checkRows && got.length === 0, `${file.path} ${checkRows}`);
            continue;
          } catch (e) {
            message = (e as Error).message;
          }
          const remedy = `deno task download --tasks ${sourceId(task)}`;
          assert.ok(message.includes(remedy), message);
          const kind = message.startsWith(`${abs}: empty file (no header line); fetch it again (`)
            ? "header"
            : message === `${abs}: empty file; fetch it again (${remedy})`
            ? "empty"
            : /: expected \d+ \w+ \(official count\), found 0: /.test(message)
            ? "rows"
            : message;
          said.set(kind, (said.get(kind) ?? 0) + 1);
        }
        await Deno.remove(abs);
      }
    }
    // TSVs with a header line (CoLA test, SST-2, MRPC, STS-B, RTE, ...) both ways; CoLA train
    // (no header line, and its official file ends with a newline) both ways; the others' counts.
    assert.deepEqual([...said.keys()].sort(), ["empty", "header", "rows"]);
    assert.equal(said.get("empty"), 2, "CoLA train, with and without the row check");
    assert.ok(said.get("header")! >= 20, JSON.stringify([...said]));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a row that does not parse on the last line of a file without its final newline is said to be cut, with the download", async () => {
  const { getTask } = await import("./registry.ts");
  const enc = new TextEncoder();
  const rte = getTask("rte").files.train![0]!;
  const text = new TextDecoder().decode(await Deno.readFile(join(DATA, rte.path)));
  const lines = text.split("\n").length - 1; // the official file ends with its newline
  // Cut inside the label ("not_enta"): before, "unknown label" alone, as if the file were edited.
  const inLabel = text.slice(0, text.lastIndexOf("entailment") + 4);
  assert.throws(
    () => examplesFromBytes("rte", "train", enc.encode(inLabel), rte.path, { file: rte }),
    (e: unknown) =>
      e instanceof DataError && e.line === lines && e.field === "label" &&
      /^unknown label "\w+" \(expected entailment, not_entailment\); the file ends mid-line here, without the final newline the official file ends with: cut short\? fetch it again \(deno task download --tasks glue\/rte\)$/
        .test(e.detail),
  );
  // Cut mid-row (columns missing): the parser's "(truncated file?)" becomes the same advice.
  const half = text.slice(0, text.indexOf("\t", text.length / 2));
  const at = half.split("\n").length;
  assert.throws(
    () => examplesFromBytes("rte", "train", enc.encode(half), rte.path, { file: rte }),
    (e: unknown) =>
      e instanceof DataError && e.line === at &&
      /found \d; the file ends mid-line here, without the final newline the official file ends with: cut short\? fetch it again \(deno task download --tasks glue\/rte\)$/
        .test(e.detail),
  );
  // A cut JSON line (SuperGLUE's final newline is not measured): the parser's guess, advised.
  const cb = getTask("cb").files.train![0]!;
  const jsonl = new TextDecoder().decode(await Deno.readFile(join(DATA, cb.path)));
  const cutJson = jsonl.slice(0, jsonl.length - 20);
  assert.throws(
    () => examplesFromBytes("cb", "train", enc.encode(cutJson), cb.path, { file: cb }),
    (e: unknown) =>
      e instanceof DataError && e.line === cutJson.split("\n").length &&
      /^invalid JSON: .*; the file ends mid-line here: cut short\? fetch it again \(deno task download --tasks super_glue\/cb\)$/
        .test(e.detail),
  );
  // A hand-made file of one row without a newline that lacks a field: no guess of a cut.
  assert.throws(
    () => examplesFromBytes("cb", "validation", enc.encode('{"premise": "p"}'), "v.jsonl"),
    (e: unknown) => e instanceof DataError && e.detail === "missing",
  );
  // A bad row that is not the last, or a last row in a file that ends with its newline: as it was.
  const edited = text.replace("\tentailment\n", "\tmaybe\n");
  assert.throws(
    () => examplesFromBytes("rte", "train", enc.encode(edited), rte.path, { file: rte }),
    (e: unknown) =>
      e instanceof DataError && /^unknown label "maybe" \(expected [^)]*\)$/.test(e.detail),
  );
});

Deno.test("a cut file's refusal quotes its last line's final 60 characters and its line; one row is enough", async () => {
  const { getTask } = await import("./registry.ts");
  const file = getTask("rte").files.test![0]!;
  const enc = new TextEncoder();
  const header = "index\tsentence1\tsentence2\n";
  // 61 characters after the tab, so the line is 63 long: the quote is "…" and its last 60.
  const long = "0\tp\t" + "abcdefghij".repeat(6) + "X";
  const cases: [string, string, number][] = [
    [header + long, `…${long.slice(-60)}`, 2],
    [header + "0\tp\th", "0\tp\th", 2], // 60 characters or fewer: the whole line
    [`${header}0\tp\th\n1\tq\tcut`, "1\tq\tcut", 3],
  ];
  for (const [text, tail, line] of cases) {
    for (const checkRows of [true, false]) {
      assert.throws(
        () => examplesFromBytes("rte", "test", enc.encode(text), "t.tsv", { file, checkRows }),
        (e: unknown) =>
          e instanceof DataError && e.line === line &&
          e.detail.startsWith(`the file ends mid-line (${JSON.stringify(tail)}), without `),
        `${JSON.stringify(text)} checkRows ${checkRows}`,
      );
    }
    // With its final newline the same text loads (the row count aside).
    const whole = examplesFromBytes("rte", "test", enc.encode(text + "\n"), "t.tsv", {
      file,
      checkRows: false,
    });
    assert.equal(whole.rows, line - 1);
  }
});

Deno.test("AX-g: pair_id, when present, is checked as an id and becomes the group; absent, no group", () => {
  const enc = new TextEncoder();
  const axg = (extra: Record<string, unknown>) =>
    enc.encode(
      JSON.stringify({ hypothesis: "h", premise: "p", idx: 0, label: "entailment", ...extra }),
    );
  const load = (extra: Record<string, unknown>) =>
    examplesFromBytes("axg", "test", axg(extra), "g.jsonl").examples.map((e) => [e.id, e.group]);
  // The Hugging Face fallback drops pair_id: the row loads, without a group (parity not scored).
  assert.deepEqual(load({}), [["axg/test/0", undefined]]);
  assert.deepEqual(load({ pair_id: 551646 }), [["axg/test/0", "551646"]]);
  assert.deepEqual(load({ pair_id: "237" }), [["axg/test/0", "237"]]);
  for (const bad of [-1, 1.5, "", null, true, [1]]) {
    assert.throws(
      () => load({ pair_id: bad }),
      new RegExp(
        '^DataError: g\\.jsonl:1: field "pair_id": expected a non-negative integer or a ' +
          `non-empty string, got ${JSON.stringify(bad).replace(/[.[\]]/g, "\\$&")}$`,
      ),
      JSON.stringify(bad),
    );
  }
});

Deno.test("missing file names the path and what to run; unknown split is an error; absent split is empty", async () => {
  await assert.rejects(
    () => loadExamples("qnli", "train", "/nonexistent-dir"),
    /missing data file .*glue\/QNLI\/train\.tsv/,
  );
  // The message says how to get the file: the download command for this task (by an id the
  // downloader accepts: SuperGLUE RTE is super_glue/rte, not rte) or a mirror folder.
  for (const [task, id] of [["qnli", "glue/qnli"], ["rte_sg", "super_glue/rte"]] as const) {
    const message = await loadExamples(task, "train", "/nonexistent-dir").then(
      () => "(no error)",
      (e: unknown) => String((e as Error).message),
    );
    assert.ok(message.includes(`deno task download --tasks ${id}`), message);
    assert.ok(message.includes("--data-dir"), message);
  }
  await assert.rejects(
    () => loadExamples("cola", "validation_matched", DATA),
    /no split "validation_matched"/,
  );
  assert.deepEqual(await loadExamples("ax", "train", DATA), []);
});

Deno.test("loadExamples(): a malformed file's error names it by its full path, line and field", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(join(dir, "glue/RTE"), { recursive: true });
    const file = join(dir, "glue/RTE/dev.tsv");
    await Deno.writeTextFile(
      file,
      "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tentailment\n1\tC.\tD.\tmaybe\n",
    );
    const err = await loadExamples("rte", "validation", dir, { checkRows: false }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof DataError, String(err));
    assert.equal(err.file, file);
    assert.deepEqual([err.line, err.field], [3, "label"]);
    assert.equal(
      err.message,
      `${file}:3: field "label": unknown label "maybe" (expected entailment, not_entailment)`,
    );
    // A huge bad value is quoted cut short (h388: a 20000-number list made a 109 KB line).
    await Deno.mkdir(join(dir, "super_glue/CB"), { recursive: true });
    const cb = join(dir, "super_glue/CB/val.jsonl");
    const huge = Array.from({ length: 20000 }, (_, i) => i);
    await Deno.writeTextFile(
      cb,
      JSON.stringify({ premise: huge, hypothesis: "h", label: "neutral", idx: 0 }) + "\n",
    );
    const long = await loadExamples("cb", "validation", dir, { checkRows: false }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(long instanceof DataError, String(long));
    assert.ok(long.message.length < 400, `${long.message.length} characters`);
    assert.match(
      long.message,
      new RegExp(
        `^${cb.replaceAll(".", "\\.")}:1: field "premise": expected a string, got \\[0,1,2,.*… ` +
          `\\(${JSON.stringify(huge).length} characters\\)$`,
      ),
    );
    // The official row count is checked too, and named the same way.
    await Deno.writeTextFile(file, "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tentailment\n");
    await assert.rejects(
      loadExamples("rte", "validation", dir),
      (e: unknown) => e instanceof DataError && e.message.startsWith(`${file}: expected 277 rows`),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Tiny synthetic files in the official layout (the mirror lacks these tasks). */
const FIXTURES = fileURLToPath(new URL("./testdata/official/", import.meta.url));
const loadFixture = (task: string, split: TaskSplit, opts: LoadOptions = {}) =>
  loadExamples(task, split, FIXTURES, { checkRows: false, ...opts });
const brief = (e: Example) => [e.id, e.input, e.target, e.label, e.split];

Deno.test("loadExamples(): a train or dev file without the label column is refused, naming the file and the column", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(join(dir, "glue/RTE"), { recursive: true });
    const unlabelled = "index\tsentence1\tsentence2\n0\tA.\tB.\n";
    for (const [split, name] of [["train", "train.tsv"], ["validation", "dev.tsv"]] as const) {
      const file = join(dir, "glue/RTE", name);
      await Deno.writeTextFile(file, unlabelled);
      const err = await loadExamples("rte", split, dir, { checkRows: false }).then(
        () => undefined,
        (e: unknown) => e,
      );
      // Before, without the label among the required columns, the rows loaded as unlabelled
      // ("<unk>" targets): training on them, or scoring against them, would be silent garbage.
      assert.ok(err instanceof DataError, `${split}: ${err}`);
      assert.equal(
        err.message,
        `${file}:1: field "label": missing column (header: index | sentence1 | sentence2)`,
      );
    }
    // A test file has no labels: the same columns load.
    await Deno.writeTextFile(join(dir, "glue/RTE/test.tsv"), unlabelled);
    const test = await loadExamples("rte", "test", dir, { checkRows: false });
    assert.deepEqual(test.map(brief), [
      ["rte/test/0", "rte sentence1: A. sentence2: B.", "<unk>", undefined, "test"],
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("MNLI: columns by header name (12/16/10), matched/mismatched tags, validation = both", async () => {
  assert.deepEqual((await loadFixture("mnli", "train")).map(brief), [
    [
      "mnli/train/0",
      "mnli hypothesis: Product and geography matter. premise: Cream skimming has two dimensions.",
      "neutral",
      1,
      "train",
    ],
    [
      "mnli/train/1",
      'mnli hypothesis: You lose the things. premise: you know "during" the season',
      "entailment",
      0,
      "train",
    ],
  ]);
  // Dev: gold_label is column 16, not label1 (which says neutral on row 0).
  const matched = await loadFixture("mnli", "validation_matched");
  assert.deepEqual(matched.map(brief), [
    [
      "mnli/validation_matched/0",
      "mnli hypothesis: Everyone really likes the newest benefits premise: The new rights are nice enough",
      "contradiction",
      2,
      "validation_matched",
    ],
    [
      "mnli/validation_matched/1",
      "mnli hypothesis: The site lists nothing. premise: This site includes a list.",
      "contradiction",
      2,
      "validation_matched",
    ],
  ]);
  const mismatched = await loadFixture("mnli", "validation_mismatched");
  assert.deepEqual(mismatched.map((e) => [e.id, e.target, e.split]), [
    ["mnli/validation_mismatched/0", "neutral", "validation_mismatched"],
  ]);
  const both = await loadFixture("mnli", "validation");
  assert.deepEqual(both.map((e) => e.id), [...matched, ...mismatched].map((e) => e.id));
  const s = scoreTask("mnli", both, ["contradiction", "neutral", "neutral"]);
  assert.deepEqual(s, { accuracy_matched: 50, accuracy_mismatched: 100 });
  const test = await loadFixture("mnli", "test");
  assert.deepEqual(test.map(brief), [
    [
      "mnli/test_matched/0",
      "mnli hypothesis: Hierbas is a name worth looking out for. premise: Hierbas, ans seco, ans dulce.",
      "<unk>",
      undefined,
      "test_matched",
    ],
    [
      "mnli/test_mismatched/0",
      "mnli hypothesis: I am sure. premise: What have you decided?",
      "<unk>",
      undefined,
      "test_mismatched",
    ],
  ]);
});

Deno.test("QQP: a short train row is skipped and reported with file and line", async () => {
  const reported: [string, number[]][] = [];
  const train = await loadFixture("qqp", "train", {
    onSkipped: (file, lines) => reported.push([file, lines]),
  });
  assert.deepEqual(reported, [["glue/QQP/train.tsv", [3]]]);
  assert.deepEqual(train.map(brief), [
    [
      "qqp/train/0",
      "qqp question1: How do I learn Deno? question2: What is the best way to learn Deno?",
      "duplicate",
      1,
      "train",
    ],
    [
      "qqp/train/2",
      'qqp question1: What is "strict" mode? question2: Who wrote Hamlet?',
      "not_duplicate",
      0,
      "train",
    ],
  ]);
  // Without onSkipped, one line on stderr names the file by its full path.
  const logged: string[] = [];
  const stderr = console.error;
  console.error = (s: string) => logged.push(s);
  try {
    await loadFixture("qqp", "train");
  } finally {
    console.error = stderr;
  }
  assert.deepEqual(logged, [
    `${join(FIXTURES, "glue/QQP/train.tsv")}: skipped 1 short row(s) with missing fields ` +
    "(as TFDS does) at line(s) 3",
  ]);
  const bytes = await Deno.readFile(`${FIXTURES}glue/QQP/train.tsv`);
  assert.deepEqual(examplesFromBytes("qqp", "train", bytes, "train.tsv").skipped, [3]);
  // A validation or test row must never disappear.
  for (const split of ["validation", "test"] as const) {
    assert.throws(
      () => examplesFromBytes("qqp", split, bytes, "glue/QQP/x.tsv"),
      /glue\/QQP\/x\.tsv:3: .*1 short row\(s\) \(line 3\); short rows are dropped from train only/,
    );
  }
  assert.deepEqual((await loadFixture("qqp", "validation")).map((e) => [e.id, e.target]), [
    ["qqp/validation/7", "not_duplicate"],
  ]);
  assert.deepEqual((await loadFixture("qqp", "test")).map(brief), [
    [
      "qqp/test/0",
      "qqp question1: Can cats swim? question2: Do cats like water?",
      "<unk>",
      undefined,
      "test",
    ],
  ]);
});

Deno.test("QNLI strings and WNLI's reversed 0/1 order load through the registry", async () => {
  assert.deepEqual((await loadFixture("qnli", "train")).map(brief), [
    [
      "qnli/train/0",
      "qnli question: When did the war end? sentence: The war ended in 1945.",
      "entailment",
      0,
      "train",
    ],
    [
      "qnli/train/1",
      "qnli question: Who won? sentence: The weather was cold.",
      "not_entailment",
      1,
      "train",
    ],
  ]);
  assert.deepEqual((await loadFixture("qnli", "test")).map((e) => [e.id, e.target]), [
    ["qnli/test/0", "<unk>"],
  ]);
  // WNLI: 1 = entailment, 0 = not_entailment; label words are in class order.
  assert.deepEqual((await loadFixture("wnli", "train")).map((e) => [e.input, e.target, e.label]), [
    [
      "wnli sentence1: I stuck a pin through a carrot. When I pulled the pin out, it had a hole. " +
      "sentence2: The carrot had a hole.",
      "entailment",
      1,
    ],
    [
      "wnli sentence1: John couldn't see the stage with Billy in front of him because he is so short. " +
      "sentence2: Billy is so short.",
      "not_entailment",
      0,
    ],
  ]);
  assert.deepEqual((await loadFixture("wnli", "validation")).map((e) => e.target), [
    "not_entailment",
  ]);
  assert.deepEqual((await loadFixture("wnli", "test")).map((e) => e.target), ["<unk>"]);
});

Deno.test("AX cast as MNLI; AX-b rekeyed with string idx and labels on test; AX-g pairs", async () => {
  assert.deepEqual((await loadFixture("ax", "test")).map(brief), [
    [
      "ax/test/0",
      "mnli hypothesis: The cat did not sit on the mat. premise: The cat sat on the mat.",
      "<unk>",
      undefined,
      "test",
    ],
    [
      "ax/test/1",
      "mnli hypothesis: When you've got snow, it's really hard to learn a snow sport. premise: " +
      "When you've got no snow, it's really hard to learn a snow sport.",
      "<unk>",
      undefined,
      "test",
    ],
  ]);
  const axb = await loadFixture("axb", "test");
  assert.deepEqual(axb.map(brief), [
    [
      "axb/test/0",
      "rte hypothesis: The cat did not sit on the mat. premise: The cat sat on the mat.",
      "not_entailment",
      1,
      "test",
    ],
    [
      "axb/test/1",
      "rte hypothesis: Tulsi Gabbard and Bernie disagree. premise: Tulsi Gabbard disagrees with Bernie.",
      "entailment",
      0,
      "test",
    ],
  ]);
  assert.deepEqual(scoreTask("axb", axb, ["not_entailment", "entailment"]), {
    matthews_corrcoef: 100,
  });
  const axg = await loadFixture("axg", "test");
  assert.deepEqual(axg.map((e) => [e.id, e.target, e.group]), [
    ["axg/test/0", "not_entailment", "551646"],
    ["axg/test/1", "entailment", "551646"],
    ["axg/test/2", "entailment", "237"],
    ["axg/test/3", "entailment", "237"],
  ]);
  assert.equal(
    axg[0]?.input,
    "rte hypothesis: The accountant sought help filing taxes. premise: The taxpayer met with the " +
      "accountant to get help filing his taxes.",
  );
  // Pair 551646 differs, pair 237 agrees: parity 50; rows 2 and 3 right: accuracy 50.
  assert.deepEqual(
    scoreTask("axg", axg, ["entailment", "not_entailment", "entailment", "entailment"]),
    { accuracy: 50, gender_parity: 50 },
  );
});

Deno.test("stringified boolean labels (OpenCompass mirrors) read as JSON booleans do", () => {
  const enc = (rows: unknown[]) =>
    new TextEncoder().encode(rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
  const boolq = (label: unknown, idx: number) => ({ question: "q", passage: "p", idx, label });
  const asBool = examplesFromBytes(
    "boolq",
    "validation",
    enc([boolq(false, 0), boolq(true, 1)]),
    "a",
  );
  const asText = examplesFromBytes(
    "boolq",
    "validation",
    enc([boolq("false", 0), boolq("True", 1)]),
    "b",
  );
  assert.deepEqual(asText.examples.map((e) => [e.target, e.label]), [["False", 0], ["True", 1]]);
  assert.deepEqual(
    asText.examples.map((e) => [e.input, e.target, e.label]),
    asBool.examples.map((e) => [e.input, e.target, e.label]),
  );
  const wic = {
    word: "w",
    sentence1: "a w",
    sentence2: "b w",
    idx: 0,
    label: "true",
    start1: 2,
    start2: 2,
    end1: 3,
    end2: 3,
    version: 1.1,
  };
  assert.equal(examplesFromBytes("wic", "validation", enc([wic]), "w").examples[0]?.label, 1);
  const wsc = {
    text: "Tom told Bob that he was late .",
    target: { span2_index: 4, span1_index: 0, span1_text: "Tom", span2_text: "he" },
    idx: 0,
    label: "false",
  };
  // Train keeps label==True rows only: a stringified "false" must be dropped, not kept.
  assert.equal(examplesFromBytes("wsc", "train", enc([wsc]), "t").examples.length, 0);
  assert.equal(examplesFromBytes("wsc", "validation", enc([wsc]), "v").examples[0]?.label, 0);
  assert.throws(
    () => examplesFromBytes("boolq", "validation", enc([boolq("no", 0)]), "c.jsonl"),
    /^DataError: c\.jsonl:1: field "label": unknown label "no" \(expected true\/false\)$/,
  );
});

Deno.test("unlabelled test files: MultiRC answers without label, ReCoRD queries without answers", () => {
  // gluon's MultiRC copy adds per-question fields; they are ignored like any unknown key.
  const multirc = {
    idx: 0,
    version: 1.1,
    passage: {
      text: "<b>Sent 1: </b>Bob ran.<br>",
      questions: [{
        question: "Who ran?",
        idx: 5,
        sentences_used: [0],
        multisent: false,
        answers: [{ text: "Bob", idx: 8 }, { text: "Tom", idx: 9 }],
      }],
    },
  };
  const bytes = new TextEncoder().encode(JSON.stringify(multirc) + "\n");
  const test = examplesFromBytes("multirc", "test", bytes, "test.jsonl");
  assert.equal(test.rows, 2);
  assert.deepEqual(test.examples.map((e) => [e.id, e.input, e.target, e.label, e.group]), [
    [
      "multirc/test/0-5-8",
      "multirc question: Who ran? answer: Bob paragraph: Sent 1: Bob ran. ",
      "<unk>",
      undefined,
      "5",
    ],
    [
      "multirc/test/0-5-9",
      "multirc question: Who ran? answer: Tom paragraph: Sent 1: Bob ran. ",
      "<unk>",
      undefined,
      "5",
    ],
  ]);
  // The same answers without labels in a labelled split are an error naming the answer.
  assert.throws(
    () => examplesFromBytes("multirc", "validation", bytes, "val.jsonl"),
    /^DataError: val\.jsonl:1: field "passage\.questions\.0\.answers\.0\.label": missing$/,
  );
  const record = {
    idx: 3,
    source: "CNN",
    passage: { text: "Ann met Bob.\n@highlight\nBob wins", entities: [{ start: 0, end: 2 }] },
    qas: [{ query: "@placeholder met Bob", idx: 4 }],
  };
  const rb = new TextEncoder().encode(JSON.stringify(record) + "\n");
  const rt = examplesFromBytes("record", "test", rb, "test.jsonl");
  assert.deepEqual(rt.examples.map((e) => [e.id, e.input, e.target, e.answers, e.group]), [[
    "record/test/3/4",
    "record query: @placeholder met Bob entities: Ann passage: Ann met Bob. Bob wins",
    "<unk>",
    [],
    "3/4",
  ]]);
  assert.throws(
    () => examplesFromBytes("record", "validation", rb, "val.jsonl"),
    /^DataError: val\.jsonl:1: field "qas\.0\.answers": missing$/,
  );
  // A classification task (BoolQ): no label gives "<unk>" on test, an error on validation.
  const bq = new TextEncoder().encode(
    JSON.stringify({ question: "q", passage: "p", idx: 7 }) + "\n",
  );
  const bt = examplesFromBytes("boolq", "test", bq, "test.jsonl").examples;
  assert.deepEqual(bt.map((e) => [e.id, e.target, e.label]), [[
    "boolq/test/7",
    "<unk>",
    undefined,
  ]]);
  assert.throws(
    () => examplesFromBytes("boolq", "validation", bq, "val.jsonl"),
    /^DataError: val\.jsonl:1: field "label": missing$/,
  );
});

Deno.test("mixture weights: the mirror's trained tasks load as many train examples as T5's weights", async () => {
  // benchmarks/run_one.ts sizes the proportional mixture by the loaded train examples, so they
  // must equal T5's fixed weights (reference §3.6, registry trainSize) for the sampling rates to
  // be T5's. (QQP-clean, 363,846 rows against T5's 363,849, and the tasks not in the mirror are
  // not checked here.)
  const { getTask } = await import("./registry.ts");
  for (const task of ["cola", "sst2", "mrpc", "stsb", "rte", "cb", "rte_sg"]) {
    assert.equal((await load(task, "train")).length, getTask(task).trainSize, task);
  }
});

Deno.test("DPR (dpr_v001_simple, train only): T5 text, official count, errors by full path", async () => {
  const text = "The bee landed on the flower because it had pollen.\nit\nThe bee,the flower\n" +
    "the flower\n\nHe told Jim that he, the tall one, was late.\nhe\nJim, the man\nthe man\n\n";
  const bytes = new TextEncoder().encode(text);
  const { examples, rows } = examplesFromBytes("dpr", "train", bytes, "super_glue/DPR/train.c.txt");
  assert.equal(rows, 2);
  assert.deepEqual(examples.map((e) => [e.id, e.input, e.target, e.label, e.line]), [
    [
      "dpr/train/0",
      "wsc: The bee landed on the flower because *it* had pollen.",
      "the flower",
      1,
      1,
    ],
    ["dpr/train/1", "wsc: He told Jim that *he*, the tall one, was late.", "the man", 1, 6],
  ]);
  // The registry's count (1,322 records) is checked like any official file's.
  assert.throws(
    () =>
      examplesFromBytes("dpr", "train", bytes, "super_glue/DPR/train.c.txt", {
        file: { path: "super_glue/DPR/train.c.txt", rows: 1322 },
      }),
    /train\.c\.txt: expected 1322 records \(official count\), found 2/,
  );
  // No validation or test split: nothing to evaluate.
  assert.deepEqual(await loadExamples("dpr", "validation", "/nonexistent-dir"), []);
  await assert.rejects(
    () => loadExamples("dpr", "train", "/nonexistent-dir"),
    /missing data file .*super_glue\/DPR\/train\.c\.txt .*deno task download --tasks super_glue\/dpr/,
  );
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(join(dir, "super_glue/DPR"), { recursive: true });
    const bad = text.replace("\nthe man\n", "\nthe boy\n");
    await Deno.writeTextFile(join(dir, "super_glue/DPR/train.c.txt"), bad);
    await assert.rejects(
      () => loadExamples("dpr", "train", dir),
      (e: unknown) => {
        assert.ok(e instanceof DataError);
        assert.equal(e.file, join(dir, "super_glue/DPR/train.c.txt"));
        assert.equal(e.line, 9);
        assert.match(e.message, /"the boy" is not one of the candidates "Jim", "the man"/);
        return true;
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("every data error quotes a huge value cut short: labels, scores, ids, integers, a header's cells, DPR's candidates (h388, h389)", () => {
  const big = "x".repeat(5000);
  const row = (o: Record<string, unknown>) => JSON.stringify(o) + "\n";
  const cases: [string, TaskSplit, string, string][] = [
    ["boolq", "validation", "val.jsonl", row({ question: "q", passage: "p", idx: 0, label: big })],
    ["cb", "validation", "val.jsonl", row({ premise: "p", hypothesis: "h", idx: 0, label: big })],
    [
      "stsb",
      "validation",
      "dev.tsv",
      "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n" +
      `0\ta\tb\tc\td\te\tf\tg\th\t${big}\n`,
    ],
    ["cola", "validation", "dev.tsv", `src\t${big}\t\tsent\n`],
    // A header line with a huge cell: the note lists the cells.
    ["cola", "validation", "dev.tsv", `source\tlabel\tauthor_label\t${big}\n`],
    [
      "cb",
      "validation",
      "val.jsonl",
      row({ premise: "p", hypothesis: "h", idx: big.split(""), label: "neutral" }),
    ],
    [
      "cb",
      "validation",
      "val.jsonl",
      [0, 1].map(() => row({ premise: "p", hypothesis: "h", idx: big, label: "neutral" })).join(""),
    ],
    [
      "record",
      "validation",
      "val.jsonl",
      row({ idx: 0, source: "s", passage: { text: "t", entities: [{ start: big, end: 1 }] } }),
    ],
    [
      "multirc",
      "validation",
      "val.jsonl",
      row({
        idx: 0,
        version: 1,
        passage: {
          text: "t",
          questions: [{ question: "q", idx: 0, answers: [{ text: "a", idx: 0, label: big }] }],
        },
      }),
    ],
  ];
  const messages = cases.map(([task, split, file, text]) => {
    try {
      examplesFromBytes(task, split, new TextEncoder().encode(text), file);
    } catch (e) {
      return (e as Error).message;
    }
    return `${task}: no error`;
  });
  try {
    parseDpr(`The cat sat.\ncat\n${big},dog\nmouse\n\n`, "dpr.txt");
    messages.push("dpr: no error");
  } catch (e) {
    messages.push((e as Error).message);
  }
  assert.equal(messages.length, cases.length + 1);
  for (const m of messages) {
    assert.ok(m.length < 500, `${m.length} characters: ${m.slice(0, 120)}`);
    // Cut to 200 characters, the full length said.
    assert.match(m, /… \(\d+ characters\)/, m.slice(0, 120));
  }
});
