import assert from "node:assert/strict";
import {
  BENCHMARK_TASKS,
  checkTaskRegistry,
  CONVERTER_METRICS,
  evalSplits,
  getTask,
  labelWords,
  sourceId,
  taskInBenchmark,
  taskNames,
  TASKS,
  TRAIN_ONLY_TASKS,
} from "./registry.ts";
import { compareCodePoints } from "./text.ts";
import { examplesFromBytes } from "./load.ts";
import { groupScore, scoreTask } from "./metrics.ts";
import type { TaskSpec } from "./types.ts";
import { findTaskSource, TASK_SOURCES, type TaskSource } from "./sources.ts";

// T5 glue_utils.py GLUE_WEIGHT_MAPPING / SUPER_GLUE_WEIGHT_MAPPING (trained tasks).
const T5_WEIGHTS: Record<string, number> = {
  cola: 8551,
  sst2: 67349,
  mrpc: 3668,
  qqp: 363849,
  stsb: 5749,
  mnli: 392702,
  qnli: 104743,
  rte: 2490,
  boolq: 9427,
  cb: 250,
  copa: 400,
  multirc: 27243,
  record: 138854,
  rte_sg: 2490,
  wic: 5428,
  wsc: 259,
};

Deno.test("registry: 21 tasks, the 8+8 trained tasks and train-only DPR carry the T5 mixture weights", () => {
  assert.equal(taskNames().length, 21);
  for (const [name, w] of Object.entries(T5_WEIGHTS)) {
    const t = getTask(name);
    assert.equal(t.trainSize, w, name);
    assert.ok(t.inMixture && t.inAverage, name);
  }
  // The leaderboards' column order, as registry.ts documents it: the mixture's task order (so a
  // task's id in a run, benchmarks/runner.ts) and the scores.csv column order follow this list.
  assert.deepEqual(BENCHMARK_TASKS, {
    glue: ["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte"],
    super_glue: ["boolq", "cb", "copa", "multirc", "record", "rte_sg", "wic", "wsc"],
  });
  const trained = taskNames().filter((n) => TASKS[n]?.inMixture && !TASKS[n]?.trainOnly);
  assert.deepEqual(trained.sort(), [...BENCHMARK_TASKS.glue, ...BENCHMARK_TASKS.super_glue].sort());
  for (const n of ["wnli", "ax", "axb", "axg", "dpr"]) assert.ok(!getTask(n).inAverage, n);
  // DPR: T5's super_glue_v102_proportional trains dpr_simple with weight 1,322 (reference §3.5),
  // outside the SuperGLUE average (§2.2); train files only, so nothing to evaluate.
  const dpr = getTask("dpr_v001_simple");
  assert.equal(dpr.name, "dpr");
  assert.equal(dpr.trainSize, 1322);
  assert.ok(dpr.inMixture && dpr.trainOnly && dpr.benchmark === "super_glue");
  assert.deepEqual(TRAIN_ONLY_TASKS, { glue: [], super_glue: ["dpr"] });
  assert.deepEqual(Object.keys(dpr.files), ["train"]);
  assert.deepEqual(evalSplits("dpr"), []);
});

Deno.test("registry: input keys sorted unless T5 gives an explicit order", () => {
  const explicit = new Set(["multirc", "wic", "record", "stsb", "wsc", "dpr"]);
  for (const t of Object.values(TASKS)) {
    if (explicit.has(t.name)) continue;
    assert.deepEqual(t.inputKeys, [...t.inputKeys].sort(compareCodePoints), t.name);
    for (const k of t.inputKeys) assert.ok(k in t.fields, `${t.name}.${k}`);
  }
  assert.deepEqual(getTask("wic").inputKeys, ["sentence1", "sentence2", "word"]);
  assert.deepEqual(getTask("multirc").inputKeys, ["question", "answer", "paragraph"]);
});

Deno.test("registry: label maps agree with label words; official file layout", () => {
  for (const t of Object.values(TASKS)) {
    if (t.labelMap) {
      for (const [raw, i] of Object.entries(t.labelMap)) {
        assert.ok(i >= 0 && i < t.labelWords.length, `${t.name} ${raw}`);
        if (!/^\d$/.test(raw)) assert.equal(t.labelWords[i], raw, `${t.name} ${raw}`);
      }
    }
    for (const files of Object.values(t.files)) {
      for (const f of files ?? []) {
        assert.ok(f.path.startsWith(`${t.dir}/`), f.path);
        assert.match(
          f.path,
          t.benchmark === "glue"
            ? /^glue\/[^/]+\/[^/]+\.tsv$/
            : t.format === "dpr"
            ? /^super_glue\/DPR\/[^/]+\.c\.txt$/
            : /^super_glue\/[^/]+\/[^/]+\.jsonl$/,
        );
      }
    }
  }
  assert.deepEqual(labelWords("wnli"), ["not_entailment", "entailment"]);
  assert.deepEqual(labelWords("cb"), ["entailment", "contradiction", "neutral"]);
  assert.equal(getTask("boolq").files.validation?.[0]?.path, "super_glue/BoolQ/val.jsonl");
});

Deno.test("getTask aliases, evalSplits, sourceId", () => {
  assert.equal(getTask("super_glue/rte").name, "rte_sg");
  assert.equal(getTask("glue/rte").name, "rte");
  assert.equal(getTask("super_glue_rte").name, "rte_sg");
  assert.equal(getTask("glue/cola").name, "cola");
  assert.equal(getTask("SST-2").name, "sst2");
  assert.equal(getTask("wsc_simple").name, "wsc");
  assert.equal(getTask("super_glue/dpr").name, "dpr");
  assert.equal(getTask("definite_pronoun_resolution").name, "dpr");
  assert.throws(() => getTask("glue/dpr"), /dpr is a SuperGLUE task, not GLUE/);
  assert.throws(() => getTask("dpr_test"), /unknown task "dpr_test"; known tasks: cola, sst2/);
  // MNLI's halves are splits of one task, not tasks that would load (and score) both halves.
  assert.throws(() => getTask("mnli_matched"), /unknown task "mnli_matched"/);
  assert.throws(() => getTask("mnli_mismatched"), /unknown task "mnli_mismatched"/);
  assert.deepEqual(evalSplits("mnli"), ["validation_matched", "validation_mismatched"]);
  assert.deepEqual(evalSplits("cola"), ["validation"]);
  assert.deepEqual(evalSplits("axg"), ["test"]);
  assert.equal(sourceId("rte_sg"), "super_glue/rte");
  assert.equal(sourceId("ax"), "glue/ax");
});

Deno.test("getTask benchmark prefixes agree with findTaskSource", () => {
  for (
    const n of [
      "superglue/rte",
      "sg/rte",
      "sg_rte",
      "super_glue-rte",
      "SuperGLUE:RTE",
      "super_glue/rte",
      "super_glue_rte",
      "glue/rte",
      "glue_cola",
      "glue/sst-2",
      "super_glue/ax-b",
      "sg/axg",
      "super_glue/wsc.fixed",
    ]
  ) {
    assert.equal(getTask(n).name, findTaskSource(n).name, n);
  }
  assert.equal(getTask("superglue/rte").name, "rte_sg");
  assert.equal(getTask("sg/rte").name, "rte_sg");
  assert.throws(
    () => getTask("glue/boolq"),
    /task "glue\/boolq": boolq is a SuperGLUE task, not GLUE/,
  );
  assert.throws(
    () => getTask("super_glue/ax"),
    /task "super_glue\/ax": ax is a GLUE task, not SuperGLUE/,
  );
  assert.throws(() => findTaskSource("super_glue/ax"), /unknown task/);
});

Deno.test("taskInBenchmark: <benchmark>/<x> by the source id or name, no naming convention", () => {
  // Every source entry, by its id (through getTask too) and by its registry name.
  for (const t of TASK_SOURCES) {
    const x = t.id.slice(t.benchmark.length + 1);
    assert.equal(taskInBenchmark(t.benchmark, x), t.name, t.id);
    assert.equal(taskInBenchmark(t.benchmark, t.name), t.name, t.name);
    assert.equal(getTask(t.id).name, t.name, t.id);
    assert.equal(getTask(t.id.toUpperCase()).name, t.name, t.id);
  }
  assert.equal(taskInBenchmark("super_glue", "rte"), "rte_sg");
  assert.equal(taskInBenchmark("glue", "rte"), "rte");
  assert.equal(taskInBenchmark("glue", "SST-2"), "sst2");
  assert.equal(taskInBenchmark("glue", "boolq"), undefined);
  assert.equal(taskInBenchmark("super_glue", "constructor"), undefined);
  // A synthetic entry whose name is not its id's last part plus "_sg" is found by its id only
  // in its own benchmark.
  const sources = [{ name: "rte_copy", id: "super_glue/rte2", benchmark: "super_glue" as const }];
  assert.equal(taskInBenchmark("super_glue", "RTE2", sources), "rte_copy");
  assert.equal(taskInBenchmark("super_glue", "rte_copy", sources), "rte_copy");
  assert.equal(taskInBenchmark("glue", "rte2", sources), undefined);
  assert.equal(taskInBenchmark("super_glue", "rte", sources), undefined);
});

Deno.test("getTask: names of Object's members are unknown tasks, with or without a prefix", () => {
  // "glue/constructor" found Object (an inherited member of the alias table) and failed with
  // a TypeError (base.replace is not a function) instead of naming the known tasks.
  for (
    const n of ["constructor", "__proto__", "glue/constructor", "sg/__proto__", "glue_valueof"]
  ) {
    assert.throws(() => getTask(n), (e: unknown) => {
      assert.ok(e instanceof Error && !(e instanceof TypeError), `${n}: ${e}`);
      assert.match(e.message, new RegExp(`^unknown task "${n}"; known tasks: cola`), n);
      return true;
    });
  }
});

Deno.test("registry files and official counts agree with the downloader's (sources.ts)", () => {
  // The loader checks the registry's counts, the downloader verifies sources.ts's: a file the
  // downloader accepts must load. Each task's files are the same paths in both, every count the
  // downloader expects is one the loader accepts (QQP: the registry also takes the old 363,849).
  // Every entry of every split is checked: MNLI lists each dev/test file twice (under its own
  // split and under validation/test), and the loader reads whichever split it is asked for.
  for (const t of Object.values(TASKS)) {
    const src = findTaskSource(sourceId(t.name));
    const paths = new Set<string>();
    for (const [split, files] of Object.entries(t.files)) {
      for (const f of files ?? []) {
        paths.add(f.path);
        const want = src.files.find((s) => s.path === f.path);
        assert.ok(want !== undefined, `${t.name}.files.${split}: ${f.path} not in sources.ts`);
        const rows = f.rows === undefined ? [] : ([] as number[]).concat(f.rows);
        assert.ok(
          rows.includes(want.rows),
          `${t.name}.files.${split} ${f.path}: ${rows} vs ${want.rows}`,
        );
      }
    }
    assert.deepEqual(
      [...paths].sort(),
      src.files.map((f) => f.path).sort(),
      `${t.name}: registry and sources.ts name the same files`,
    );
  }
  assert.equal(TASK_SOURCES.length, taskNames().length, "one source per registered task");
});

Deno.test("checkTaskRegistry: an added or edited entry's mistakes name the entry, field and what is allowed", () => {
  checkTaskRegistry(TASKS, BENCHMARK_TASKS); // the registry itself passes
  const rte = TASKS.rte!;
  const bad = (entry: Partial<TaskSpec>, key = "rte2", bench = BENCHMARK_TASKS) => () =>
    checkTaskRegistry({ ...TASKS, [key]: { ...rte, name: key, ...entry } }, bench, "reg.ts");
  // A copy of RTE under a new name, trained but not listed: what a first attempt looks like.
  assert.throws(
    bad({}),
    /^Error: reg\.ts: TASKS\.rte2 has inAverage true but is not in BENCHMARK_TASKS\.glue; add it there/,
  );
  assert.throws(bad({ inAverage: false }), /TASKS\.rte2 has inMixture true but is not in/);
  const listed = { ...BENCHMARK_TASKS, glue: [...BENCHMARK_TASKS.glue, "rte2"] };
  // Listed, it still needs a download source (sources.ts) to be found present or fetched.
  assert.throws(
    () => checkTaskRegistry({ ...TASKS, rte2: { ...rte, name: "rte2" } }, listed, "reg.ts"),
    /^Error: reg\.ts: TASKS\.rte2 has no entry in tasks\/sources\.ts TASK_SOURCES/,
  );
  assert.throws(
    bad({ inMixture: false, inAverage: false, metrics: ["accuracy", "f1_macro"] }),
    /TASKS\.rte2\.metrics\[1\] "f1_macro" is not a metric the "classify" converter computes \(scoreTask would leave it out\); allowed: "accuracy", "matthews_corrcoef"/,
  );
  assert.throws(
    bad({ inMixture: false, inAverage: false, groupMetrics: ["f1"] }),
    /TASKS\.rte2\.groupMetrics\[0\] "f1" is not in TASKS\.rte2\.metrics \("accuracy"\)/,
  );
  assert.throws(bad({ name: "rte3" }), /TASKS\.rte2\.name is "rte3"; it must equal the key/);
  assert.throws(
    bad({ labelMap: { entailment: 0, not_entailment: 2 } }, "rte2", listed),
    /TASKS\.rte2\.labelMap\["not_entailment"\] is 2; it must index labelWords \(0 to 1\)/,
  );
  assert.throws(
    bad({ dir: "glue/RTE2" }, "rte2", listed),
    /TASKS\.rte2\.files\.train\[0\]\.path "glue\/RTE\/train\.tsv" is not under dir "glue\/RTE2\/"/,
  );
  assert.throws(
    bad({ converter: "span" as TaskSpec["converter"] }, "rte2", listed),
    /TASKS\.rte2\.converter is "span"; allowed: "classify", "stsb"/,
  );
  assert.throws(
    bad({ files: { validation: rte.files.validation! } }, "rte2", listed),
    /TASKS\.rte2\.files needs train and validation files: inMixture is true/,
  );
  assert.throws(
    bad({ inMixture: false }, "rte2", listed),
    /BENCHMARK_TASKS\.glue\[8\] "rte2" must have inMixture and inAverage true/,
  );
  assert.throws(
    () => checkTaskRegistry(TASKS, { ...BENCHMARK_TASKS, glue: [...BENCHMARK_TASKS.glue, "cb"] }),
    /BENCHMARK_TASKS\.glue\[8\] "cb" is a SuperGLUE task/,
  );
  assert.throws(
    () => checkTaskRegistry(TASKS, { ...BENCHMARK_TASKS, glue: ["rtee"] }),
    /BENCHMARK_TASKS\.glue\[0\] "rtee" is not a key of TASKS/,
  );
});

Deno.test("checkTaskRegistry: a classify entry's labels, fields and metrics must fit, or its scores would be silently wrong", () => {
  const rte = TASKS.rte!;
  const bad = (entry: Partial<TaskSpec>) => () =>
    checkTaskRegistry(
      { ...TASKS, rte2: { ...rte, name: "rte2", inMixture: false, inAverage: false, ...entry } },
      BENCHMARK_TASKS,
      "reg.ts",
    );
  const cases: [Partial<TaskSpec>, RegExp][] = [
    // Two words alike: a perfect prediction scores F1 0 (both classes read as the first).
    [
      { labelWords: ["good", "good"] },
      /TASKS\.rte2\.labelWords\[1\] "good" is also labelWords\[0\]/,
    ],
    [
      { labelWords: ["good", " good"] },
      /labelWords\[1\] " good" is empty or has a space at an end/,
    ],
    [{ labelWords: ["", "good"] }, /labelWords\[0\] "" is empty or has a space at an end/],
    [
      { labelKind: "bool", labelWords: ["False", "True", "Maybe"], labelMap: undefined },
      /TASKS\.rte2\.labelWords has 3 words; labelKind "bool" has 2 classes/,
    ],
    [
      { labelKind: "bool", labelWords: ["True"], labelMap: undefined },
      /TASKS\.rte2\.labelWords has 1 words; labelKind "bool" has 2 classes/,
    ],
    [
      { labelKind: "int", labelWords: ["a", "b", "c"], labelMap: undefined },
      /TASKS\.rte2\.labelWords has 3 words; labelKind "int" has 2 classes/,
    ],
    [
      { labelWords: [], labelMap: {} },
      /TASKS\.rte2\.labelKind and labelWords are needed: the task has metrics/,
    ],
    [{ labelField: undefined }, /TASKS\.rte2\.labelField is missing; labelKind is "map"/],
    [
      { labelKind: undefined, labelMap: undefined },
      /TASKS\.rte2\.labelKind and labelWords are needed: the task has metrics/,
    ],
    [
      { inputKeys: ["sentence1", "sentence3"] },
      /TASKS\.rte2\.inputKeys\[1\] "sentence3" is not a key of TASKS\.rte2\.fields \(sentence1, sentence2\)/,
    ],
    [{ prefix: " " }, /TASKS\.rte2\.prefix is empty/],
    // A 2-class task scored by the 3-class mean F1: 66.67 for perfect predictions.
    [
      { metrics: ["mean_3class_f1"], groupMetrics: ["mean_3class_f1"] },
      /TASKS\.rte2\.metrics\[0\] "mean_3class_f1" needs 3 label words \(the mean F1 of 3 classes\), not 2/,
    ],
    [
      {
        labelWords: ["a", "b", "c"],
        labelMap: { a: 0, b: 1, c: 2 },
        metrics: ["f1"],
        groupMetrics: ["f1"],
      },
      /metrics\[0\] "f1" needs 2 label words \(binary F1 of the second class\), not 3/,
    ],
    [
      { labelWords: ["a"], labelMap: { a: 0 }, metrics: ["f1"], groupMetrics: ["f1"] },
      /metrics\[0\] "f1" needs 2 label words \(binary F1 of the second class\), not 1/,
    ],
    [
      {
        labelWords: ["a", "b", "c", "d"],
        labelMap: { a: 0, b: 1, c: 2, d: 3 },
        metrics: ["mean_3class_f1"],
        groupMetrics: ["mean_3class_f1"],
      },
      /metrics\[0\] "mean_3class_f1" needs 3 label words \(the mean F1 of 3 classes\), not 4/,
    ],
    [
      { metrics: ["accuracy_mismatched"], groupMetrics: ["accuracy_mismatched"] },
      /metrics\[0\] "accuracy_mismatched" needs a validation file of split "validation_mismatched"/,
    ],
    // scoreTask returns nothing for these without their splits or field: no score at all.
    [
      { metrics: ["accuracy_matched"], groupMetrics: ["accuracy_matched"] },
      /metrics\[0\] "accuracy_matched" needs a validation file of split "validation_matched"/,
    ],
    [
      { metrics: ["accuracy", "gender_parity"] },
      /metrics\[1\] "gender_parity" needs a "pair_id" field/,
    ],
  ];
  for (const [entry, want] of cases) assert.throws(bad(entry), want, JSON.stringify(entry));
});

Deno.test("checkTaskRegistry: a task's source is found by its name, not its HF config", () => {
  // SuperGLUE RTE's key (rte_sg) is not its HF config (rte); its source is found all the same.
  assert.equal(findTaskSource(sourceId("rte_sg")).name, "rte_sg");
  assert.equal(findTaskSource(sourceId("rte_sg")).hfConfig, "rte");
  // A user's copy of GLUE RTE as rte_copy, outside the benchmark, its source falling back on
  // Hugging Face's "rte" config: found by the name, wherever its HF config points.
  const rte = TASKS.rte!;
  const moved = (p: string) => p.replace("glue/RTE/", "glue/RTE_copy/");
  const entry: TaskSpec = {
    ...rte,
    name: "rte_copy",
    dir: "glue/RTE_copy",
    inMixture: false,
    inAverage: false,
    files: Object.fromEntries(
      Object.entries(rte.files).map((
        [k, fs],
      ) => [k, fs!.map((f) => ({ ...f, path: moved(f.path) }))]),
    ),
  };
  const glueRte = findTaskSource("glue/rte");
  const source: TaskSource = {
    ...glueRte,
    name: "rte_copy",
    id: "glue/rte_copy",
    folder: "RTE_copy",
    files: glueRte.files.map((f) => ({ ...f, path: moved(f.path) })),
  };
  const tasks = { ...TASKS, rte_copy: entry };
  const check = (sources: readonly TaskSource[]) => () =>
    checkTaskRegistry(tasks, BENCHMARK_TASKS, "reg.ts", sources);
  check([...TASK_SOURCES, source])();
  // Without an entry of that name the message says what it matched on.
  assert.throws(
    check([...TASK_SOURCES, { ...source, name: "rte_cpy" }]),
    /^Error: reg\.ts: TASKS\.rte_copy has no entry in tasks\/sources\.ts TASK_SOURCES whose name is "rte_copy" \(entries are matched by their name field, not by id or hfConfig;/,
  );
  assert.throws(
    check([...TASK_SOURCES, { ...source, benchmark: "super_glue" }]),
    /TASKS\.rte_copy\.benchmark is "glue" but its tasks\/sources\.ts TASK_SOURCES entry \(name "rte_copy", id "glue\/rte_copy"\) is "super_glue"/,
  );
  assert.throws(
    check([...TASK_SOURCES, { ...source, files: source.files.slice(1) }]),
    /TASKS\.rte_copy\.files and its tasks\/sources\.ts TASK_SOURCES entry \(name "rte_copy", id "glue\/rte_copy"\) name different files: only here "glue\/RTE_copy\/train\.tsv"; only there none/,
  );
});

Deno.test("checkTaskRegistry: a train-only entry (DPR) has train files only, is trained and never scored", () => {
  const dpr = TASKS.dpr!;
  const bad = (entry: Partial<TaskSpec>, bench = BENCHMARK_TASKS) => () =>
    checkTaskRegistry({ ...TASKS, dpr: { ...dpr, ...entry } }, bench, "reg.ts");
  assert.throws(
    bad({ files: { ...dpr.files, validation: dpr.files.train! } }),
    /^Error: reg\.ts: TASKS\.dpr\.files must have train files and no validation files: trainOnly is true/,
  );
  assert.throws(bad({ files: {} }), /TASKS\.dpr\.files must have train files/);
  assert.throws(
    bad({ inAverage: true }),
    /TASKS\.dpr\.trainOnly is true, so inMixture must be true/,
  );
  assert.throws(bad({ inMixture: false }), /TASKS\.dpr\.trainOnly is true, so inMixture/);
  assert.throws(
    bad({ metrics: ["accuracy"] }),
    /TASKS\.dpr\.trainOnly is true, so .*metrics empty/,
  );
  assert.throws(
    bad({ trainSize: 0 }),
    /TASKS\.dpr\.trainSize is 0; a train-only task needs a weight > 0/,
  );
  assert.throws(
    bad({}, { ...BENCHMARK_TASKS, super_glue: [...BENCHMARK_TASKS.super_glue, "dpr"] }),
    /BENCHMARK_TASKS\.super_glue\[8\] "dpr" must have inMixture and inAverage true/,
  );
  // Without trainOnly it is an ordinary trained task, which must be evaluated and listed (and
  // has a task id of its own).
  const { sharesTaskIdWith: _, ...ownId } = dpr;
  assert.throws(
    () => checkTaskRegistry({ ...TASKS, dpr: { ...ownId, trainOnly: false } }, BENCHMARK_TASKS),
    /TASKS\.dpr\.files needs train and validation files/,
  );
  assert.throws(bad({ trainOnly: false }), /TASKS\.dpr\.sharesTaskIdWith is set, but trainOnly/);
  // The task whose id it shares: an evaluated task of its benchmark.
  assert.equal(dpr.sharesTaskIdWith, "wsc");
  for (const host of ["nope", "rte", "dpr"]) {
    assert.throws(
      bad({ sharesTaskIdWith: host }),
      new RegExp(
        `^Error: reg\\.ts: TASKS\\.dpr\\.sharesTaskIdWith "${host}" is not an evaluated ` +
          "super_glue task of the registry$",
      ),
      host,
    );
  }
  assert.throws(
    bad({ prefix: "dpr:" }),
    /^Error: reg\.ts: TASKS\.dpr\.sharesTaskIdWith names wsc, whose prefix "wsc:" is not this task's "dpr:": tasks sharing a task id share its input format$/,
  );
  const wsc = TASKS.wsc!;
  assert.throws(
    () => checkTaskRegistry({ ...TASKS, wsc: { ...wsc, sharesTaskIdWith: "cb" } }, BENCHMARK_TASKS),
    /TASKS\.wsc\.sharesTaskIdWith is set, but trainOnly is not true/,
  );
});

Deno.test("a task a profile may list outside the averages has a group score: its best step and scores.csv column", () => {
  // A registered task with train and validation files can be listed in a profile's tasks
  // (benchmarks/runner.ts TRAINABLE_TASKS): the evaluator picks its best step by group score and
  // scores.csv shows that score, so a NaN one (no groupMetrics) would make both meaningless.
  assert.equal(groupScore("wnli", { accuracy: 56.3 }), 56.3);
  const rte = TASKS.rte!;
  assert.throws(
    () =>
      checkTaskRegistry(
        {
          ...TASKS,
          rte2: { ...rte, name: "rte2", inMixture: false, inAverage: false, groupMetrics: [] },
        },
        BENCHMARK_TASKS,
        "reg.ts",
      ),
    /^Error: reg\.ts: TASKS\.rte2\.groupMetrics is empty, but the task has train and validation files/,
  );
  // The test-only tasks (the AX diagnostics) are never trained: no group score needed.
  for (const n of ["ax", "axb", "axg"]) assert.equal(TASKS[n]!.groupMetrics.length, 0, n);
  checkTaskRegistry(TASKS, BENCHMARK_TASKS);
});

Deno.test("CONVERTER_METRICS lists what scoreTask returns for each converter", () => {
  // One labelled example per converter's task, predicted right: every metric the converter
  // computes for it is a listed one (gender_parity and the MNLI halves need groups or splits).
  const cases: [string, string[]][] = [
    ["rte", ["entailment"]],
    ["stsb", ["3.0"]],
    ["multirc", ["True"]],
    ["wsc", ["the cat"]],
  ];
  for (const [task, preds] of cases) {
    const spec = getTask(task);
    const ex = {
      task,
      id: `${task}/0`,
      input: "x",
      target: preds[0]!,
      label: spec.converter === "wsc_simple" ? true : 0,
      group: "g",
      answers: preds,
    };
    const got = Object.keys(scoreTask(task, [ex], preds));
    assert.ok(got.length > 0, task);
    for (const m of got) assert.ok(CONVERTER_METRICS[spec.converter].includes(m), `${task} ${m}`);
  }
});

Deno.test("registry: every task's metrics and group metrics are T5's (reference §2.1, §2.2)", () => {
  // [metrics reported, metrics averaged into the task's group score]. T5 glue_utils.py
  // GLUE_METRICS / SUPERGLUE_METRICS and eval_utils.py METRIC_NAMES groups; WNLI's group is this
  // suite's (a profile may list it), the diagnostics' metrics are the leaderboards' (T5: none).
  const T5: Record<string, [string[], string[]]> = {
    cola: [["matthews_corrcoef"], ["matthews_corrcoef"]],
    sst2: [["accuracy"], ["accuracy"]],
    mrpc: [["accuracy", "f1"], ["accuracy", "f1"]],
    stsb: [["pearson_corrcoef", "spearman_corrcoef"], ["pearson_corrcoef", "spearman_corrcoef"]],
    qqp: [["accuracy", "f1"], ["accuracy", "f1"]],
    mnli: [["accuracy_matched", "accuracy_mismatched"], [
      "accuracy_matched",
      "accuracy_mismatched",
    ]],
    qnli: [["accuracy"], ["accuracy"]],
    rte: [["accuracy"], ["accuracy"]],
    wnli: [["accuracy"], ["accuracy"]],
    ax: [[], []],
    boolq: [["accuracy"], ["accuracy"]],
    cb: [["accuracy", "mean_3class_f1"], ["accuracy", "mean_3class_f1"]],
    copa: [["accuracy"], ["accuracy"]],
    multirc: [["exact_match", "f1"], ["exact_match", "f1"]],
    record: [["em", "f1"], ["em", "f1"]],
    rte_sg: [["accuracy"], ["accuracy"]],
    wic: [["accuracy"], ["accuracy"]],
    wsc: [["accuracy"], ["accuracy"]],
    axb: [["matthews_corrcoef"], []],
    axg: [["accuracy", "gender_parity"], []],
    // Train only: T5 scores dpr_v001_simple by accuracy, but the mixture only trains it.
    dpr: [[], []],
  };
  assert.deepEqual(taskNames().sort(), Object.keys(T5).sort());
  for (const [name, [metrics, group]] of Object.entries(T5)) {
    const t = getTask(name);
    assert.deepEqual([...t.metrics].sort(), metrics, `${name}.metrics`);
    assert.deepEqual([...t.groupMetrics].sort(), group, `${name}.groupMetrics`);
    // The group score is the unweighted mean of the group's metrics (distinct values: 10, 20, …).
    const values = Object.fromEntries(t.metrics.map((m, i) => [m, 10 * (i + 1)]));
    const want = group.length === 0
      ? NaN
      : group.reduce((s, m) => s + (values[m] as number), 0) / group.length;
    assert.deepEqual(groupScore(name, values), want, `${name} group score`);
  }
});

Deno.test("COPA's labels are the integers 0 and 1: a boolean label is refused, naming the field", () => {
  const row = (label: unknown) =>
    new TextEncoder().encode(
      JSON.stringify({
        premise: "The man broke his toe.",
        choice1: "He dropped a hammer on his foot.",
        choice2: "He got a hole in his sock.",
        question: "cause",
        idx: 0,
        label,
      }) + "\n",
    );
  assert.equal(examplesFromBytes("copa", "validation", row(1), "c.jsonl").examples[0]?.label, 1);
  assert.equal(examplesFromBytes("copa", "validation", row(0), "c.jsonl").examples[0]?.label, 0);
  for (const bad of [true, "1", 2]) {
    assert.throws(
      () => examplesFromBytes("copa", "validation", row(bad), "c.jsonl"),
      new RegExp(
        `^DataError: c\\.jsonl:1: field "label": unknown label ${
          JSON.stringify(bad)
        } \\(expected 0 or 1\\)$`,
      ),
    );
  }
});
