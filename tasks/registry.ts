/**
 * The GLUE and SuperGLUE task registry: one data entry per task (files in the official layout,
 * T5 input template and label words, metrics, mixture weight). Sources: T5 `glue_utils.py`,
 * `preprocessors.py`, `tasks.py`, `eval_utils.py` and TFDS `glue.py` / `super_glue.py` as
 * summarised in `shared/reference/glue-superglue.md`.
 *
 * Canonical names (registry keys):
 * - GLUE: `cola sst2 mrpc qqp stsb mnli qnli rte wnli ax`. MNLI is one task; its eval splits are
 *   `validation_matched` and `validation_mismatched` (scored as `accuracy_matched` /
 *   `accuracy_mismatched`, group = their mean).
 * - SuperGLUE: `boolq cb copa multirc record rte_sg wic wsc axb axg`. `rte_sg` is SuperGLUE RTE
 *   (GLUE RTE stays `rte`); `wsc` is T5's `wsc_simple` on TFDS `wsc.fixed`.
 * Aliases accepted by {@link getTask}: the data engineer's ids (`glue/cola`, `super_glue/rte`, …)
 * and any benchmark prefix `findTaskSource` accepts (`super_glue_rte`, `sg/rte`), `wsc_simple`,
 * `sst-2`, `sts-b`, `ax-b`, `ax-g`. MNLI's halves are splits, not tasks (`mnli` with split
 * `validation_matched` / `validation_mismatched`).
 *
 * Adding a task: (1) its entry in {@link TASKS} (`converter` a key of {@link CONVERTER_METRICS},
 * `metrics` among what that converter computes); (2) a download source in `sources.ts`
 * `TASK_SOURCES` whose `name` is the entry's key, with the same files (`TaskSource` says what it
 * needs; {@link checkTaskRegistry} checks they agree; `availableTasks` in
 * `data.ts` finds only tasks listed there, so without one a run reports the task's files
 * missing). A registered task with train and validation files can then be listed in a profile's
 * `tasks` (`benchmarks/runner.ts` `TRAINABLE_TASKS`) and gets its own `scores.csv` column, outside
 * the average; (3) to make it part of the benchmark, its name in {@link BENCHMARK_TASKS}: every
 * profile without a `tasks` list then trains it, the benchmark average needs its score, and
 * `paper-*` profiles need its files. {@link checkTaskRegistry} runs on the
 * registry when this module loads and names the entry and field of a mistake.
 *
 * Train-only: `dpr` (T5's `dpr_v001_simple` on TFDS `definite_pronoun_resolution`, weight 1,322 in
 * T5's SuperGLUE mixture; not in the official SuperGLUE downloads, fetched from its authors'
 * site): train files only, never evaluated nor averaged ({@link TRAIN_ONLY_TASKS}); a profile
 * adds it to its SuperGLUE mixture with `extraTrainTasks` (`benchmarks/spec.ts`), as the paper
 * profiles do. Not registered: T5's `glue_wnli_v002_simple_eval` (WNLI recast as `wsc:`).
 *
 * @module
 */
import type { BenchmarkName, TaskFile, TaskSpec, TaskSplit } from "./types.ts";
import { TASK_SOURCES, type TaskSource } from "./sources.ts";

const GLUE_VERSION = "1.0.0";
const SG_VERSION = "1.0.2";

function glueFiles(
  folder: string,
  rows: [number | number[], number, number],
  noHeaderColumns?: string[],
): Partial<Record<TaskSplit, TaskFile[]>> {
  const d = `glue/${folder}`;
  return {
    train: [{ path: `${d}/train.tsv`, rows: rows[0], columns: noHeaderColumns }],
    validation: [{ path: `${d}/dev.tsv`, rows: rows[1], columns: noHeaderColumns }],
    test: [{ path: `${d}/test.tsv`, rows: rows[2] }],
  };
}

function sgFiles(
  folder: string,
  rows: [number, number, number],
): Partial<Record<TaskSplit, TaskFile[]>> {
  const d = `super_glue/${folder}`;
  return {
    train: [{ path: `${d}/train.jsonl`, rows: rows[0] }],
    validation: [{ path: `${d}/val.jsonl`, rows: rows[1] }],
    test: [{ path: `${d}/test.jsonl`, rows: rows[2] }],
  };
}

const BIN = { "0": 0, "1": 1 };
const NLI2 = { entailment: 0, not_entailment: 1 };
const MNLI_LABELS = ["entailment", "neutral", "contradiction"];
const COLA_COLUMNS = ["source", "label", "author_label", "sentence"];

const glueBase = {
  benchmark: "glue" as BenchmarkName,
  version: GLUE_VERSION,
  format: "tsv" as const,
};
const sgBase = {
  benchmark: "super_glue" as BenchmarkName,
  version: SG_VERSION,
  format: "jsonl" as const,
};

/** Every task, keyed by canonical name. */
export const TASKS: Readonly<Record<string, TaskSpec>> = Object.freeze(
  {
    cola: {
      ...glueBase,
      name: "cola",
      displayName: "CoLA",
      t5Name: "glue_cola_v002",
      dir: "glue/CoLA",
      files: glueFiles("CoLA", [8551, 1043, 1063], COLA_COLUMNS),
      converter: "classify",
      prefix: "cola",
      inputKeys: ["sentence"],
      fields: { sentence: "sentence" },
      labelField: "label",
      labelKind: "map",
      labelMap: BIN,
      idField: "index",
      labelWords: ["unacceptable", "acceptable"],
      metrics: ["matthews_corrcoef"],
      groupMetrics: ["matthews_corrcoef"],
      trainSize: 8551,
      inMixture: true,
      inAverage: true,
      notes: "train/dev have no header (4 columns); test has `index\\tsentence`.",
    },
    sst2: {
      ...glueBase,
      name: "sst2",
      displayName: "SST-2",
      t5Name: "glue_sst2_v002",
      dir: "glue/SST-2",
      files: glueFiles("SST-2", [67349, 872, 1821]),
      converter: "classify",
      prefix: "sst2",
      inputKeys: ["sentence"],
      fields: { sentence: "sentence" },
      labelField: "label",
      labelKind: "map",
      labelMap: BIN,
      idField: "index",
      labelWords: ["negative", "positive"],
      metrics: ["accuracy"],
      groupMetrics: ["accuracy"],
      trainSize: 67349,
      inMixture: true,
      inAverage: true,
    },
    mrpc: {
      ...glueBase,
      name: "mrpc",
      displayName: "MRPC",
      t5Name: "glue_mrpc_v002",
      dir: "glue/MRPC",
      files: glueFiles("MRPC", [3668, 408, 1725]),
      converter: "classify",
      prefix: "mrpc",
      inputKeys: ["sentence1", "sentence2"],
      fields: { sentence1: "#1 String", sentence2: "#2 String" },
      labelField: "Quality",
      labelKind: "map",
      labelMap: BIN,
      idField: "index",
      labelWords: ["not_equivalent", "equivalent"],
      metrics: ["f1", "accuracy"],
      groupMetrics: ["f1", "accuracy"],
      trainSize: 3668,
      inMixture: true,
      inAverage: true,
      notes: "train/dev headers start with a UTF-8 BOM (stripped).",
    },
    qqp: {
      ...glueBase,
      name: "qqp",
      displayName: "QQP",
      t5Name: "glue_qqp_v002",
      dir: "glue/QQP",
      files: glueFiles("QQP", [[363846, 363849], 40430, 390965]),
      converter: "classify",
      prefix: "qqp",
      inputKeys: ["question1", "question2"],
      fields: { question1: "question1", question2: "question2" },
      labelField: "is_duplicate",
      labelKind: "map",
      labelMap: BIN,
      idField: "id",
      labelWords: ["not_duplicate", "duplicate"],
      metrics: ["f1", "accuracy"],
      groupMetrics: ["f1", "accuracy"],
      trainSize: 363849,
      inMixture: true,
      inAverage: true,
      skipShortRows: true,
      notes:
        "Train rows with missing fields are dropped as TFDS does (old QQP.zip) and reported; " +
        "a short dev/test row is an error. QQP-clean has none.",
    },
    stsb: {
      ...glueBase,
      name: "stsb",
      displayName: "STS-B",
      t5Name: "glue_stsb_v002",
      dir: "glue/STS-B",
      files: glueFiles("STS-B", [5749, 1500, 1379]),
      converter: "stsb",
      prefix: "stsb",
      inputKeys: ["sentence1", "sentence2"],
      fields: { sentence1: "sentence1", sentence2: "sentence2" },
      labelField: "score",
      labelKind: "float",
      idField: "index",
      labelWords: [],
      metrics: ["pearson_corrcoef", "spearman_corrcoef"],
      groupMetrics: ["pearson_corrcoef", "spearman_corrcoef"],
      trainSize: 5749,
      inMixture: true,
      inAverage: true,
      notes: "Target = float32 round-half-even(label*5)/5 printed with one decimal (26 classes).",
    },
    mnli: {
      ...glueBase,
      name: "mnli",
      displayName: "MNLI",
      t5Name: "glue_mnli_v002",
      dir: "glue/MNLI",
      files: {
        train: [{ path: "glue/MNLI/train.tsv", rows: 392702 }],
        validation_matched: [{
          path: "glue/MNLI/dev_matched.tsv",
          rows: 9815,
          split: "validation_matched",
        }],
        validation_mismatched: [
          { path: "glue/MNLI/dev_mismatched.tsv", rows: 9832, split: "validation_mismatched" },
        ],
        test_matched: [{ path: "glue/MNLI/test_matched.tsv", rows: 9796, split: "test_matched" }],
        test_mismatched: [{
          path: "glue/MNLI/test_mismatched.tsv",
          rows: 9847,
          split: "test_mismatched",
        }],
        validation: [
          { path: "glue/MNLI/dev_matched.tsv", rows: 9815, split: "validation_matched" },
          { path: "glue/MNLI/dev_mismatched.tsv", rows: 9832, split: "validation_mismatched" },
        ],
        test: [
          { path: "glue/MNLI/test_matched.tsv", rows: 9796, split: "test_matched" },
          { path: "glue/MNLI/test_mismatched.tsv", rows: 9847, split: "test_mismatched" },
        ],
      },
      converter: "classify",
      prefix: "mnli",
      inputKeys: ["hypothesis", "premise"],
      fields: { premise: "sentence1", hypothesis: "sentence2" },
      labelField: "gold_label",
      labelKind: "map",
      labelMap: { entailment: 0, neutral: 1, contradiction: 2 },
      idField: "index",
      labelWords: MNLI_LABELS,
      metrics: ["accuracy_matched", "accuracy_mismatched"],
      groupMetrics: ["accuracy_matched", "accuracy_mismatched"],
      trainSize: 392702,
      inMixture: true,
      inAverage: true,
      notes: "Columns located by header name (train 12, dev 16, test 10 columns).",
    },
    qnli: {
      ...glueBase,
      name: "qnli",
      displayName: "QNLI",
      t5Name: "glue_qnli_v002",
      dir: "glue/QNLI",
      files: glueFiles("QNLI", [104743, 5463, 5463]),
      converter: "classify",
      prefix: "qnli",
      inputKeys: ["question", "sentence"],
      fields: { question: "question", sentence: "sentence" },
      labelField: "label",
      labelKind: "map",
      labelMap: NLI2,
      idField: "index",
      labelWords: ["entailment", "not_entailment"],
      metrics: ["accuracy"],
      groupMetrics: ["accuracy"],
      trainSize: 104743,
      inMixture: true,
      inAverage: true,
    },
    rte: {
      ...glueBase,
      name: "rte",
      displayName: "RTE",
      t5Name: "glue_rte_v002",
      dir: "glue/RTE",
      files: glueFiles("RTE", [2490, 277, 3000]),
      converter: "classify",
      prefix: "rte",
      inputKeys: ["sentence1", "sentence2"],
      fields: { sentence1: "sentence1", sentence2: "sentence2" },
      labelField: "label",
      labelKind: "map",
      labelMap: NLI2,
      idField: "index",
      labelWords: ["entailment", "not_entailment"],
      metrics: ["accuracy"],
      groupMetrics: ["accuracy"],
      trainSize: 2490,
      inMixture: true,
      inAverage: true,
    },
    wnli: {
      ...glueBase,
      name: "wnli",
      displayName: "WNLI",
      t5Name: "glue_wnli_v002",
      dir: "glue/WNLI",
      files: glueFiles("WNLI", [635, 71, 146]),
      converter: "classify",
      prefix: "wnli",
      inputKeys: ["sentence1", "sentence2"],
      fields: { sentence1: "sentence1", sentence2: "sentence2" },
      labelField: "label",
      labelKind: "map",
      labelMap: BIN,
      idField: "index",
      labelWords: ["not_entailment", "entailment"],
      metrics: ["accuracy"],
      // Not averaged, but a profile may list it (its best step and scores.csv column).
      groupMetrics: ["accuracy"],
      trainSize: 635,
      inMixture: false,
      inAverage: false,
      notes:
        "Not trained by default and not averaged (T5 trains WSC/DPR instead); a profile may list it.",
    },
    ax: {
      ...glueBase,
      name: "ax",
      displayName: "AX",
      t5Name: "glue_ax_v002",
      dir: "glue/diagnostic",
      files: { test: [{ path: "glue/diagnostic/diagnostic.tsv", rows: 1104 }] },
      converter: "classify",
      prefix: "mnli",
      inputKeys: ["hypothesis", "premise"],
      fields: { premise: "sentence1", hypothesis: "sentence2" },
      idField: "index",
      labelWords: MNLI_LABELS,
      metrics: [],
      groupMetrics: [],
      trainSize: 0,
      inMixture: false,
      inAverage: false,
      notes: "Test only, unlabelled; cast as MNLI (predict with the MNLI model).",
    },
    boolq: {
      ...sgBase,
      name: "boolq",
      displayName: "BoolQ",
      t5Name: "super_glue_boolq_v102",
      dir: "super_glue/BoolQ",
      files: sgFiles("BoolQ", [9427, 3270, 3245]),
      converter: "classify",
      prefix: "boolq",
      inputKeys: ["passage", "question"],
      fields: { passage: "passage", question: "question" },
      labelField: "label",
      labelKind: "bool",
      idField: "idx",
      labelWords: ["False", "True"],
      metrics: ["accuracy"],
      groupMetrics: ["accuracy"],
      trainSize: 9427,
      inMixture: true,
      inAverage: true,
    },
    cb: {
      ...sgBase,
      name: "cb",
      displayName: "CB",
      t5Name: "super_glue_cb_v102",
      dir: "super_glue/CB",
      files: sgFiles("CB", [250, 56, 250]),
      converter: "classify",
      prefix: "cb",
      inputKeys: ["hypothesis", "premise"],
      fields: { premise: "premise", hypothesis: "hypothesis" },
      labelField: "label",
      labelKind: "map",
      labelMap: { entailment: 0, contradiction: 1, neutral: 2 },
      idField: "idx",
      labelWords: ["entailment", "contradiction", "neutral"],
      metrics: ["mean_3class_f1", "accuracy"],
      groupMetrics: ["mean_3class_f1", "accuracy"],
      trainSize: 250,
      inMixture: true,
      inAverage: true,
    },
    copa: {
      ...sgBase,
      name: "copa",
      displayName: "COPA",
      t5Name: "super_glue_copa_v102",
      dir: "super_glue/COPA",
      files: sgFiles("COPA", [400, 100, 500]),
      converter: "classify",
      prefix: "copa",
      inputKeys: ["choice1", "choice2", "premise", "question"],
      fields: { premise: "premise", choice1: "choice1", choice2: "choice2", question: "question" },
      labelField: "label",
      labelKind: "int",
      idField: "idx",
      labelWords: ["choice1", "choice2"],
      metrics: ["accuracy"],
      groupMetrics: ["accuracy"],
      trainSize: 400,
      inMixture: true,
      inAverage: true,
    },
    multirc: {
      ...sgBase,
      name: "multirc",
      displayName: "MultiRC",
      t5Name: "super_glue_multirc_v102",
      dir: "super_glue/MultiRC",
      files: sgFiles("MultiRC", [27243, 4848, 9693]),
      converter: "multirc",
      prefix: "multirc",
      inputKeys: ["question", "answer", "paragraph"],
      fields: {},
      labelKind: "bool",
      labelWords: ["False", "True"],
      metrics: ["f1", "exact_match"],
      groupMetrics: ["f1", "exact_match"],
      trainSize: 27243,
      inMixture: true,
      inAverage: true,
      notes: "One example per answer (rows = answers); group = question idx; <br> and <b> removed.",
    },
    record: {
      ...sgBase,
      name: "record",
      displayName: "ReCoRD",
      t5Name: "super_glue_record_v102",
      dir: "super_glue/ReCoRD",
      files: sgFiles("ReCoRD", [100730, 10000, 10000]),
      converter: "record",
      prefix: "record",
      inputKeys: ["query", "entities", "passage"],
      fields: {},
      labelWords: [],
      metrics: ["em", "f1"],
      groupMetrics: ["f1", "em"],
      trainSize: 138854,
      inMixture: true,
      inAverage: true,
      notes: "rows = queries. Train: one example per (query, unique answer); eval: one per query.",
    },
    rte_sg: {
      ...sgBase,
      name: "rte_sg",
      displayName: "RTE (SuperGLUE)",
      t5Name: "super_glue_rte_v102",
      dir: "super_glue/RTE",
      files: sgFiles("RTE", [2490, 277, 3000]),
      converter: "classify",
      prefix: "rte",
      inputKeys: ["hypothesis", "premise"],
      fields: { premise: "premise", hypothesis: "hypothesis" },
      labelField: "label",
      labelKind: "map",
      labelMap: NLI2,
      idField: "idx",
      labelWords: ["entailment", "not_entailment"],
      metrics: ["accuracy"],
      groupMetrics: ["accuracy"],
      trainSize: 2490,
      inMixture: true,
      inAverage: true,
    },
    wic: {
      ...sgBase,
      name: "wic",
      displayName: "WiC",
      t5Name: "super_glue_wic_v102",
      dir: "super_glue/WiC",
      files: sgFiles("WiC", [5428, 638, 1400]),
      converter: "classify",
      prefix: "wic",
      inputKeys: ["sentence1", "sentence2", "word"],
      fields: { sentence1: "sentence1", sentence2: "sentence2", word: "word" },
      labelField: "label",
      labelKind: "bool",
      idField: "idx",
      labelWords: ["False", "True"],
      metrics: ["accuracy"],
      groupMetrics: ["accuracy"],
      trainSize: 5428,
      inMixture: true,
      inAverage: true,
    },
    wsc: {
      ...sgBase,
      name: "wsc",
      displayName: "WSC",
      t5Name: "super_glue_wsc_v102_simple_train",
      dir: "super_glue/WSC",
      files: sgFiles("WSC", [554, 104, 146]),
      converter: "wsc_simple",
      prefix: "wsc:",
      inputKeys: ["text"],
      fields: {
        text: "text",
        span1_index: "target.span1_index",
        span2_index: "target.span2_index",
        span1_text: "target.span1_text",
        span2_text: "target.span2_text",
      },
      labelField: "label",
      labelKind: "bool",
      idField: "idx",
      labelWords: [],
      metrics: ["accuracy"],
      groupMetrics: ["accuracy"],
      trainSize: 259,
      inMixture: true,
      inAverage: true,
      notes:
        "wsc_simple on wsc.fixed: target = span1_text (also on test); train keeps label==True " +
        "rows only (259 of 554); eval = `super_glue_wsc_v102_simple_eval`.",
    },
    dpr: {
      ...sgBase,
      name: "dpr",
      displayName: "DPR",
      // TFDS definite_pronoun_resolution 1.1.0, T5's version pin `:1.1.0`.
      version: "1.1.0",
      t5Name: "dpr_v001_simple",
      dir: "super_glue/DPR",
      format: "dpr",
      files: { train: [{ path: "super_glue/DPR/train.c.txt", rows: 1322 }] },
      converter: "dpr_simple",
      prefix: "wsc:",
      inputKeys: ["sentence", "pronoun"],
      fields: {},
      labelWords: [],
      // Never evaluated (T5 scores dpr_v001_simple by accuracy, but only trains it here).
      metrics: [],
      groupMetrics: [],
      trainSize: 1322,
      inMixture: true,
      inAverage: false,
      trainOnly: true,
      // Its examples are WSC's format and train WSC's task variables: the paper's 8 SuperGLUE tasks.
      sharesTaskIdWith: "wsc",
      notes: "Train only (T5's SuperGLUE mixture trains it beside wsc_simple; not in the " +
        "SuperGLUE average): `wsc: ` + the sentence with its first ` <pronoun>` before a space, " +
        "`.` or `,` marked `*<pronoun>*`; target = the correct candidate. TFDS's test.c.txt " +
        "(564) is not used.",
    },
    axb: {
      ...sgBase,
      name: "axb",
      displayName: "AX-b",
      t5Name: "super_glue_axb_v102",
      dir: "super_glue/AX-b",
      files: { test: [{ path: "super_glue/AX-b/AX-b.jsonl", rows: 1104 }] },
      converter: "classify",
      prefix: "rte",
      inputKeys: ["hypothesis", "premise"],
      fields: { premise: "sentence1", hypothesis: "sentence2" },
      labelField: "label",
      labelKind: "map",
      labelMap: NLI2,
      idField: "idx",
      labelWords: ["entailment", "not_entailment"],
      metrics: ["matthews_corrcoef"],
      groupMetrics: [],
      trainSize: 0,
      inMixture: false,
      inAverage: false,
      notes:
        "Test only, labelled; cast as RTE. T5 reports no metric; we add the leaderboard's MCC.",
    },
    axg: {
      ...sgBase,
      name: "axg",
      displayName: "AX-g",
      t5Name: "super_glue_axg_v102",
      dir: "super_glue/AX-g",
      files: { test: [{ path: "super_glue/AX-g/AX-g.jsonl", rows: 356 }] },
      converter: "classify",
      prefix: "rte",
      inputKeys: ["hypothesis", "premise"],
      fields: { premise: "premise", hypothesis: "hypothesis", pair_id: "pair_id" },
      labelField: "label",
      labelKind: "map",
      labelMap: NLI2,
      idField: "idx",
      labelWords: ["entailment", "not_entailment"],
      metrics: ["accuracy", "gender_parity"],
      groupMetrics: [],
      trainSize: 0,
      inMixture: false,
      inAverage: false,
      notes: "Test only, labelled; cast as RTE. T5 reports no metric; we add accuracy and gender " +
        "parity (% of pair_id pairs with equal predictions).",
    },
  } satisfies Record<string, TaskSpec>,
);

/** The 8 trained tasks of each benchmark (the ones in the T5 averages), in leaderboard order. */
export const BENCHMARK_TASKS: Readonly<{ glue: string[]; super_glue: string[] }> = Object.freeze({
  glue: ["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte"],
  super_glue: ["boolq", "cb", "copa", "multirc", "record", "rte_sg", "wic", "wsc"],
});

/**
 * The train-only tasks of each benchmark (`trainOnly` entries of {@link TASKS}, in registry
 * order): what a profile's `extraTrainTasks` may list. They are trained in a multi-task run's
 * mixture after its evaluated tasks, never evaluated and never averaged.
 */
export const TRAIN_ONLY_TASKS: Readonly<{ glue: string[]; super_glue: string[] }> = Object.freeze({
  glue: trainOnlyOf("glue"),
  super_glue: trainOnlyOf("super_glue"),
});

function trainOnlyOf(b: BenchmarkName): string[] {
  return Object.values(TASKS).filter((t) => t.trainOnly && t.benchmark === b).map((t) => t.name);
}

/**
 * The checks of a `classify` entry: label words that can be told apart (non-empty, no space at
 * either end, distinct), as many as a `bool` or `int` label has (2), a label field wherever a
 * label kind says how to read one (and a label kind wherever a metric needs labels), input keys
 * that `fields` says where to read, and metrics that fit the labels and files: `f1` needs 2 label
 * words, `mean_3class_f1` 3, `accuracy_matched` / `accuracy_mismatched` validation files of that
 * split, `gender_parity` a `pair_id` field.
 */
function checkClassifyEntry(t: TaskSpec, at: string, fail: (path: string, what: string) => never) {
  const words = t.labelWords;
  words.forEach((w, i) => {
    if (w === "" || w.trim() !== w) {
      fail(
        `${at}.labelWords[${i}]`,
        `${JSON.stringify(w)} is empty or has a space at an end: a prediction is matched to its ` +
          "label word exactly, as T5 does",
      );
    }
    const first = words.indexOf(w);
    if (first !== i) {
      fail(`${at}.labelWords[${i}]`, `${JSON.stringify(w)} is also labelWords[${first}]`);
    }
  });
  if ((t.labelKind === "bool" || t.labelKind === "int") && words.length !== 2) {
    fail(`${at}.labelWords`, `has ${words.length} words; labelKind "${t.labelKind}" has 2 classes`);
  }
  if (t.labelKind !== undefined && t.labelField === undefined) {
    fail(`${at}.labelField`, `is missing; labelKind is "${t.labelKind}" (which field holds it?)`);
  }
  if (t.metrics.length > 0 && (t.labelKind === undefined || words.length === 0)) {
    fail(
      `${at}.labelKind`,
      "and labelWords are needed: the task has metrics, and a classify task's are over labels",
    );
  }
  t.inputKeys.forEach((k, i) => {
    if (!Object.hasOwn(t.fields, k)) {
      fail(
        `${at}.inputKeys[${i}]`,
        `${JSON.stringify(k)} is not a key of ${at}.fields (${
          Object.keys(t.fields).join(", ")
        }): where would its text come from?`,
      );
    }
  });
  const needs: Record<string, [boolean, string]> = {
    f1: [
      words.length === 2,
      `needs 2 label words (binary F1 of the second class), not ${words.length}`,
    ],
    mean_3class_f1: [
      words.length === 3,
      `needs 3 label words (the mean F1 of 3 classes), not ${words.length}`,
    ],
    accuracy_matched: [
      (t.files.validation ?? []).some((f) => f.split === "validation_matched"),
      'needs a validation file of split "validation_matched"',
    ],
    accuracy_mismatched: [
      (t.files.validation ?? []).some((f) => f.split === "validation_mismatched"),
      'needs a validation file of split "validation_mismatched"',
    ],
    gender_parity: [Object.hasOwn(t.fields, "pair_id"), 'needs a "pair_id" field'],
  };
  t.metrics.forEach((m, i) => {
    const need = needs[m];
    if (need !== undefined && !need[0]) {
      fail(`${at}.metrics[${i}]`, `"${m}" ${need[1]}`);
    }
  });
}

/**
 * The metric names `scoreTask` (`tasks/metrics.ts`) computes for each converter; a name outside
 * these is never scored.
 */
export const CONVERTER_METRICS: Readonly<Record<TaskSpec["converter"], readonly string[]>> = Object
  .freeze({
    classify: [
      "accuracy",
      "matthews_corrcoef",
      "f1",
      "mean_3class_f1",
      "gender_parity",
      "accuracy_matched",
      "accuracy_mismatched",
    ],
    stsb: ["pearson_corrcoef", "spearman_corrcoef"],
    multirc: ["f1", "exact_match"],
    record: ["em", "f1"],
    wsc_simple: ["accuracy"],
    dpr_simple: ["accuracy"],
  });

/**
 * Checks a task registry and its benchmark lists for the mistakes an added or edited entry can
 * make, which would otherwise show up late or not at all: a key that differs from `name`, a
 * metric `scoreTask` does not compute (it would be skipped, so the task would have no score), a
 * group metric not among `metrics`, a label map that disagrees with the label words, an empty
 * prefix, a `classify` entry whose labels, fields or metrics do not fit (`checkClassifyEntry`:
 * label words empty, spaced or repeated, a label kind without a field, input keys without a
 * field, `f1` without 2 labels, `mean_3class_f1` without 3, …), a file
 * outside `dir`, a trained task without train and validation files, a task with train and
 * validation files but no group metrics (a profile may list it: its best evaluation and
 * `scores.csv` column are its group score), an entry without a `sources.ts` `TASK_SOURCES`
 * entry of the same `name` or whose benchmark or file paths differ from that entry's, and `BENCHMARK_TASKS` entries that are not the benchmark's averaged tasks, or averaged
 * tasks missing from it (`BENCHMARK_TASKS` are the tasks trained by default and averaged; a
 * profile's `tasks` may also list other registered tasks with train and validation files).
 * Run on {@link TASKS} when this module loads.
 *
 * @param tasks entries by registry key
 * @param benchmarkTasks the trained tasks of each benchmark
 * @param where how errors name the registry (default `tasks/registry.ts`)
 * @param sources the download sources each entry must have one of, matched by `name` (default
 *   `sources.ts` {@link TASK_SOURCES})
 * @throws Error naming `where`, the entry and field, the bad value and what is allowed
 * @example
 * ```ts
 * import { BENCHMARK_TASKS, checkTaskRegistry, TASKS } from "./registry.ts";
 * const bad = { ...TASKS, rte: { ...TASKS.rte!, metrics: ["acuracy"] } };
 * let message = "";
 * try {
 *   checkTaskRegistry(bad, BENCHMARK_TASKS);
 * } catch (e) {
 *   message = (e as Error).message;
 * }
 * console.assert(message.includes('TASKS.rte.metrics[0] "acuracy"'));
 * ```
 */
export function checkTaskRegistry(
  tasks: Readonly<Record<string, TaskSpec>>,
  benchmarkTasks: Readonly<Record<BenchmarkName, readonly string[]>>,
  where = "tasks/registry.ts",
  sources: readonly Pick<TaskSource, "name" | "id" | "benchmark" | "files">[] = TASK_SOURCES,
): void {
  const fail = (path: string, what: string): never => {
    throw new Error(`${where}: ${path} ${what}`);
  };
  const list = (xs: readonly string[]) => xs.map((x) => JSON.stringify(x)).join(", ");
  for (const [key, t] of Object.entries(tasks)) {
    const at = `TASKS.${key}`;
    if (t.name !== key) fail(`${at}.name`, `is ${JSON.stringify(t.name)}; it must equal the key`);
    if (!(t.benchmark in BENCHMARK_LABEL)) {
      fail(`${at}.benchmark`, `is ${JSON.stringify(t.benchmark)}; allowed: "glue", "super_glue"`);
    }
    const known = own(CONVERTER_METRICS, t.converter);
    if (known === undefined) {
      fail(
        `${at}.converter`,
        `is ${JSON.stringify(t.converter)}; allowed: ${list(Object.keys(CONVERTER_METRICS))}`,
      );
    }
    t.metrics.forEach((m, i) => {
      if (!known!.includes(m)) {
        fail(
          `${at}.metrics[${i}]`,
          `${JSON.stringify(m)} is not a metric the "${t.converter}" converter computes ` +
            `(scoreTask would leave it out); allowed: ${list(known!)}`,
        );
      }
    });
    t.groupMetrics.forEach((m, i) => {
      if (!t.metrics.includes(m)) {
        fail(
          `${at}.groupMetrics[${i}]`,
          `${JSON.stringify(m)} is not in ${at}.metrics (${list(t.metrics)})`,
        );
      }
    });
    const hasTrainAndEval = hasTrainAndValidation(t);
    if (t.trainOnly === true) {
      if (t.files.train === undefined || hasTrainAndEval) {
        fail(
          `${at}.files`,
          "must have train files and no validation files: trainOnly is true (trained, never " +
            "evaluated); a task with validation files is an ordinary task a profile's tasks may list",
        );
      }
      if (!t.inMixture || t.inAverage || t.metrics.length > 0) {
        fail(
          `${at}.trainOnly`,
          "is true, so inMixture must be true, inAverage false and metrics empty (it is " +
            "trained, never scored)",
        );
      }
      if (!(t.trainSize > 0)) {
        fail(`${at}.trainSize`, `is ${t.trainSize}; a train-only task needs a weight > 0`);
      }
    }
    if (t.sharesTaskIdWith !== undefined) {
      const host = tasks[t.sharesTaskIdWith];
      if (t.trainOnly !== true) {
        fail(
          `${at}.sharesTaskIdWith`,
          "is set, but trainOnly is not true: an evaluated task has its own task id",
        );
      } else if (host === undefined || host.benchmark !== t.benchmark || host.trainOnly === true) {
        fail(
          `${at}.sharesTaskIdWith`,
          `${
            JSON.stringify(t.sharesTaskIdWith)
          } is not an evaluated ${t.benchmark} task of the registry`,
        );
      } else if (host.prefix !== t.prefix) {
        // One task id, one input format: a method keyed by task cannot tell the two apart.
        fail(
          `${at}.sharesTaskIdWith`,
          `names ${t.sharesTaskIdWith}, whose prefix ${JSON.stringify(host.prefix)} is not this ` +
            `task's ${JSON.stringify(t.prefix)}: tasks sharing a task id share its input format`,
        );
      }
    }
    if (t.inAverage && t.groupMetrics.length === 0) {
      fail(`${at}.groupMetrics`, "is empty, but inAverage is true: the average needs a score");
    }
    if (hasTrainAndEval && t.groupMetrics.length === 0) {
      fail(
        `${at}.groupMetrics`,
        "is empty, but the task has train and validation files, so a profile's tasks may list " +
          "it (benchmarks/runner.ts TRAINABLE_TASKS): its best evaluation and its scores.csv " +
          "column are its group score, NaN without group metrics; name the metrics it is scored by",
      );
    }
    if (t.prefix.trim() === "") {
      fail(`${at}.prefix`, "is empty; every input starts with its task's word");
    }
    if (t.converter === "classify") checkClassifyEntry(t, at, fail);
    if (t.labelKind === "map") {
      if (t.labelMap === undefined) fail(`${at}.labelMap`, `is missing; labelKind is "map"`);
      for (const [raw, i] of Object.entries(t.labelMap!)) {
        if (!Number.isInteger(i) || i < 0 || i >= t.labelWords.length) {
          fail(
            `${at}.labelMap[${JSON.stringify(raw)}]`,
            `is ${i}; it must index labelWords (0 to ${t.labelWords.length - 1})`,
          );
        }
      }
    }
    for (const [split, files] of Object.entries(t.files)) {
      (files ?? []).forEach((f, i) => {
        if (!f.path.startsWith(`${t.dir}/`)) {
          fail(`${at}.files.${split}[${i}].path`, `"${f.path}" is not under dir "${t.dir}/"`);
        }
      });
    }
    if (t.inMixture && t.trainOnly !== true) {
      if (!hasTrainAndEval) {
        fail(`${at}.files`, "needs train and validation files: inMixture is true (it is trained)");
      }
      if (!(t.trainSize > 0)) {
        fail(`${at}.trainSize`, `is ${t.trainSize}; a trained task (inMixture) needs a weight > 0`);
      }
    }
  }
  for (const b of Object.keys(BENCHMARK_LABEL) as BenchmarkName[]) {
    const listed = benchmarkTasks[b] ?? [];
    listed.forEach((n, i) => {
      const t = own(tasks, n);
      const at = `BENCHMARK_TASKS.${b}[${i}]`;
      if (t === undefined) fail(at, `"${n}" is not a key of TASKS`);
      if (t!.benchmark !== b) fail(at, `"${n}" is a ${BENCHMARK_LABEL[t!.benchmark]} task`);
      if (!t!.inMixture || !t!.inAverage) {
        fail(at, `"${n}" must have inMixture and inAverage true (it is trained and averaged)`);
      }
    });
    for (const t of Object.values(tasks)) {
      if (t.benchmark === b && t.trainOnly === true && listed.includes(t.name)) {
        fail(
          `TASKS.${t.name}`,
          `has trainOnly true but is in BENCHMARK_TASKS.${b}: a task there is evaluated and averaged`,
        );
      }
      if (
        t.benchmark === b && t.trainOnly !== true && (t.inAverage || t.inMixture) &&
        !listed.includes(t.name)
      ) {
        fail(
          `TASKS.${t.name}`,
          `has ${
            t.inAverage ? "inAverage" : "inMixture"
          } true but is not in BENCHMARK_TASKS.${b}; ` +
            `add it there (then every profile without a "tasks" list trains it, and the ` +
            `${BENCHMARK_LABEL[b]} average needs it), or set inMixture and inAverage false`,
        );
      }
    }
  }
  for (const t of Object.values(tasks)) {
    const src = sources.find((x) => x.name === t.name) ?? fail(
      `TASKS.${t.name}`,
      `has no entry in tasks/sources.ts TASK_SOURCES whose name is ${JSON.stringify(t.name)} ` +
        "(entries are matched by their name field, not by id or hfConfig; an entry gives the " +
        "task's files and download source): without one its files are never found present " +
        "(data.ts availableTasks) nor downloaded",
    );
    const from = `its tasks/sources.ts TASK_SOURCES entry (name ${JSON.stringify(t.name)}, id ` +
      `${JSON.stringify(src.id)})`;
    if (src.benchmark !== t.benchmark) {
      fail(`TASKS.${t.name}.benchmark`, `is "${t.benchmark}" but ${from} is "${src.benchmark}"`);
    }
    const mine = Object.values(t.files).flatMap((fs) => (fs ?? []).map((f) => f.path)).sort();
    const theirs = src.files.map((f) => f.path).sort();
    const onlyMine = mine.filter((p) => !theirs.includes(p));
    const onlyTheirs = theirs.filter((p) => !mine.includes(p));
    if (onlyMine.length > 0 || onlyTheirs.length > 0) {
      fail(
        `TASKS.${t.name}.files`,
        `and ${from} name different files: only here ${list(onlyMine) || "none"}; only there ` +
          `${list(onlyTheirs) || "none"} (the loader reads the registry's, the download writes ` +
          "the source's)",
      );
    }
  }
}

const ALIASES: Readonly<Record<string, string>> = Object.freeze({
  wsc_simple: "wsc",
  "wsc.fixed": "wsc",
  dpr_simple: "dpr",
  dpr_v001_simple: "dpr",
  definite_pronoun_resolution: "dpr",
  "sst-2": "sst2",
  "sts-b": "stsb",
  "ax-b": "axb",
  "ax-g": "axg",
});

/** A benchmark prefix, the same grammar as `findTaskSource` in `sources.ts`. */
const BENCHMARK_PREFIX = /^(glue|super_?glue|sg)[_/\-:](.+)$/;

const BENCHMARK_LABEL: Readonly<Record<BenchmarkName, string>> = {
  glue: "GLUE",
  super_glue: "SuperGLUE",
};

/** `o[k]` for an own key only (a name like `constructor` must not find Object's members). */
function own<T>(o: Readonly<Record<string, T>>, k: string): T | undefined {
  return Object.hasOwn(o, k) ? o[k] : undefined;
}

/** Canonical task names, GLUE first. */
export function taskNames(): string[] {
  return Object.keys(TASKS);
}

/**
 * The registry name of the task `<benchmark>/<x>` names, by the `sources.ts` `TASK_SOURCES` table
 * (every registered task has an entry there, with its registry `name` and its source `id`): the
 * entry of `benchmark` whose `id` is `<benchmark>/<x>` (`super_glue/rte` -> `rte_sg`), else whose
 * `name` is `x` (`super_glue/rte_sg`). `x` is read case-insensitively, as a registry alias
 * (`sst-2`, `wsc.fixed`, …) where it is one, and failing that without its `-`s. No naming
 * convention (such as a `_sg` suffix) is assumed: a task is found by what its entry says.
 * {@link getTask} resolves a prefixed name with it, and `benchmarks/spec.ts` `resolveListedTask`
 * a name a profile lists under a benchmark.
 *
 * @param benchmark the benchmark the name's prefix (or the list it is in) names
 * @param x the name after the prefix
 * @param sources the source table (default `TASK_SOURCES`; tests pass their own)
 * @returns the registry name, or undefined when `benchmark` has no such task
 */
export function taskInBenchmark(
  benchmark: BenchmarkName,
  x: string,
  sources: readonly Pick<TaskSource, "name" | "id" | "benchmark">[] = TASK_SOURCES,
): string | undefined {
  const key = x.trim().toLowerCase();
  const base = own(ALIASES, key) ?? key;
  const ofBenchmark = sources.filter((t) => t.benchmark === benchmark);
  for (const c of [base, base.replace(/-/g, "")]) {
    const hit = ofBenchmark.find((t) => t.id === `${benchmark}/${c}`) ??
      ofBenchmark.find((t) => t.name === c);
    if (hit !== undefined) return hit.name;
  }
  return undefined;
}

/**
 * The registry entry of a task by canonical name or alias (`wsc_simple`, `sst-2`, …), optionally
 * with a benchmark prefix as `findTaskSource` (`sources.ts`) accepts it: `glue`, `super_glue`,
 * `superglue` or `sg`, then `/`, `_`, `-` or `:` (`glue/cola`, `super_glue/rte`, `sg_rte`,
 * `superglue-axb`). The prefix selects the benchmark and the rest is that benchmark's task by
 * source id or registry name ({@link taskInBenchmark}), so `superglue/rte` is SuperGLUE RTE
 * (`rte_sg`, id `super_glue/rte`) and `glue/rte` GLUE RTE; a task of the other benchmark
 * (`glue/boolq`, `super_glue/ax`) is an error. Throws listing the known names.
 */
export function getTask(name: string): TaskSpec {
  const key = name.trim().toLowerCase();
  const canonical = own(ALIASES, key) ?? key;
  const direct = own(TASKS, canonical);
  if (direct !== undefined) return direct;
  const m = BENCHMARK_PREFIX.exec(key);
  if (m !== null) {
    const bench: BenchmarkName = m[1] === "glue" ? "glue" : "super_glue";
    const rest = m[2] as string;
    const found = taskInBenchmark(bench, rest);
    const spec = found === undefined ? undefined : own(TASKS, found);
    if (spec !== undefined) return spec;
    const otherBench: BenchmarkName = bench === "glue" ? "super_glue" : "glue";
    const otherName = taskInBenchmark(otherBench, rest);
    const other = otherName === undefined ? undefined : own(TASKS, otherName);
    if (other !== undefined) {
      throw new Error(
        `task "${name}": ${other.name} is a ${BENCHMARK_LABEL[other.benchmark]} task, not ` +
          `${BENCHMARK_LABEL[bench]}`,
      );
    }
  }
  throw new Error(
    `unknown task "${name}"; known tasks: ${taskNames().join(", ")} ` +
      `(aliases: ${Object.keys(ALIASES).join(", ")}; a glue/ or super_glue/ prefix is allowed)`,
  );
}

/** The T5 label words (targets) of a task in class-index order; empty for STS-B, ReCoRD, WSC. */
export function labelWords(taskName: string): string[] {
  return [...getTask(taskName).labelWords];
}

/**
 * The splits a task is evaluated on: `["validation_matched", "validation_mismatched"]` for MNLI,
 * `["test"]` for the diagnostics (AX, AX-b, AX-g), none for a train-only task (DPR),
 * `["validation"]` otherwise. Each name is a
 * valid `split` for `loadExamples`.
 */
export function evalSplits(taskName: string): TaskSplit[] {
  const spec = getTask(taskName);
  if (spec.trainOnly === true) return [];
  if (spec.name === "mnli") return ["validation_matched", "validation_mismatched"];
  if (spec.files.validation === undefined) return ["test"];
  return ["validation"];
}

/**
 * Whether a registry entry has train and validation files (MNLI: `validation_matched`): what a
 * profile's `tasks` may list (`benchmarks/runner.ts` `TRAINABLE_TASKS`).
 */
export function hasTrainAndValidation(t: TaskSpec): boolean {
  return t.files.train !== undefined &&
    (t.files.validation !== undefined || t.files.validation_matched !== undefined);
}

/** The splits a task's registry entry has files for. */
export function taskSplits(taskName: string): TaskSplit[] {
  return Object.keys(getTask(taskName).files) as TaskSplit[];
}

/**
 * The data engineer's source id (`glue/cola`, `super_glue/rte`, …) of a task: the `id` of the
 * `sources.ts` `TASK_SOURCES` entry whose `name` is the task's registry name.
 */
export function sourceId(taskName: string): string {
  const name = getTask(taskName).name;
  const src = TASK_SOURCES.find((t) => t.name === name);
  // checkTaskRegistry, run when this module loads, gives every registered task a source.
  if (src === undefined) throw new Error(`task ${name} has no tasks/sources.ts TASK_SOURCES entry`);
  return src.id;
}

// Checked when the module loads, so an edited entry fails every tool at once, naming the field.
checkTaskRegistry(TASKS, BENCHMARK_TASKS);
