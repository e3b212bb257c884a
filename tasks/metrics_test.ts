import assert from "node:assert/strict";
import { sharedPath } from "../model/shared_dir.ts";
import {
  accuracy,
  averageRanks,
  benchmarkAverage,
  f1WithInvalid,
  genderParity,
  groupScore,
  invalidPredictions,
  matthewsCorrcoef,
  meanMulticlassF1,
  pearson,
  scoreTask,
  spearman,
  squad,
} from "./metrics.ts";
import { normalizeSquad, stringToFloat, wscSimple } from "./postprocess.ts";
import type { Example } from "./types.ts";

interface Case {
  binary_targets: number[];
  binary_predictions: number[];
  matthews: number;
  f1: number;
  accuracy: number;
  three_targets?: number[];
  three_predictions?: number[];
  macro_f1_3class?: number;
  score_targets?: number[];
  score_predictions?: number[];
  pearson?: number;
  spearman?: number;
}

// sklearn / SciPy values in double precision; our sums differ only in order (a few ulps of the
// terms: measured ≤ 6.7e-16 on the 0–1 scale, 7.1e-14 on STS-B's 0–100): 1e-12 relative to the
// reference's magnitude (at least 1), over 100× the measured.
const TOL = 1e-12;
function close(a: number, b: number, what: string): void {
  assert.ok(Math.abs(a - b) <= TOL * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
}

Deno.test("metrics equal sklearn/SciPy on metrics_reference.json within 1e-12 relative", () => {
  const ref = JSON.parse(
    Deno.readTextFileSync(sharedPath("fixtures", "metrics", "metrics_reference.json")),
  );
  const cases = ref.cases as Case[];
  assert.equal(cases.length, 4);
  // The optional fields' checks below run on the cases that have them: counted, so that a renamed
  // field cannot skip them unseen.
  let threeClass = 0;
  let correlations = 0;
  for (const [i, c] of cases.entries()) {
    close(matthewsCorrcoef(c.binary_targets, c.binary_predictions), c.matthews, `case ${i} mcc`);
    close(f1WithInvalid(c.binary_targets, c.binary_predictions), c.f1, `case ${i} f1`);
    close(accuracy(c.binary_targets, c.binary_predictions), c.accuracy, `case ${i} acc`);
    if (c.three_targets && c.three_predictions && c.macro_f1_3class !== undefined) {
      close(
        meanMulticlassF1(c.three_targets, c.three_predictions, 3),
        c.macro_f1_3class,
        `case ${i} f1 3`,
      );
      threeClass++;
    }
    if (
      c.score_targets && c.score_predictions && c.pearson !== undefined && c.spearman !== undefined
    ) {
      close(pearson(c.score_targets, c.score_predictions), c.pearson, `case ${i} pearson`);
      close(spearman(c.score_targets, c.score_predictions), c.spearman, `case ${i} spearman`);
      // Through scoreTask: strings in, 0-100 out.
      const ex = c.score_targets.map((t, j) => ({
        task: "stsb",
        id: `${j}`,
        input: "",
        target: t.toFixed(1),
      }));
      const s = scoreTask("stsb", ex, c.score_predictions.map((p) => p.toFixed(1)));
      close(s.pearson_corrcoef as number, 100 * c.pearson, `case ${i} stsb pearson`);
      close(s.spearman_corrcoef as number, 100 * c.spearman, `case ${i} stsb spearman`);
      correlations++;
    }
  }
  assert.deepEqual({ threeClass, correlations }, { threeClass: 3, correlations: 3 });
});

Deno.test("average ranks for ties; invalid predictions", () => {
  assert.deepEqual(averageRanks([3, 1, 3, 2, 3]), [4, 1, 4, 2, 4]);
  // f1_score_with_invalid: -1 becomes 1 - target. Targets [1,1,0,0], preds [1,-1,-1,0]
  // -> [1,0,1,0]: tp 1, fp 1, fn 1 -> F1 = 2/4.
  assert.equal(f1WithInvalid([1, 1, 0, 0], [1, -1, -1, 0]), 0.5);
  // MCC with a -1 class (sklearn multiclass): t [0,1,1,0], p [0,1,-1,0]:
  // n=4, correct=3, t_sum {0:2,1:2}, p_sum {0:2,1:1,-1:1}; cov_tp = 12 - (4+2) = 6,
  // cov_pp = 16 - 6 = 10, cov_tt = 16 - 8 = 8 -> 6/sqrt(80).
  close(matthewsCorrcoef([0, 1, 1, 0], [0, 1, -1, 0]), 6 / Math.sqrt(80), "mcc -1");
  // Macro F1 over 3 classes with an invalid prediction: t [0,1,2,2], p [0,1,-1,2]
  // class 0: 1, class 1: 1, class 2: tp1 fn1 -> 2/3; mean = 8/9.
  close(meanMulticlassF1([0, 1, 2, 2], [0, 1, -1, 2], 3), 8 / 9, "macro f1");
});

function ex(task: string, target: string, extra: Partial<Example> = {}): Example {
  return { task, id: `${task}/${Math.random()}`, input: "", target, ...extra };
}

Deno.test("classification scoring: exact label words, anything else invalid", () => {
  const exs = ["equivalent", "equivalent", "not_equivalent", "not_equivalent"].map((t) =>
    ex("mrpc", t)
  );
  const s = scoreTask("mrpc", exs, ["equivalent", "Equivalent", "yes", "not_equivalent"]);
  // preds -> [1, -1, -1, 0]; accuracy 2/4; F1 with invalid = 0.5 (see above)
  assert.deepEqual(s, { f1: 50, accuracy: 50 });
  assert.equal(groupScore("mrpc", s), 50);
  assert.throws(
    () => scoreTask("mrpc", [ex("mrpc", "<unk>")], ["equivalent"]),
    /has no gold label/,
  );
  assert.throws(() => scoreTask("mrpc", exs, ["x"]), /4 targets but 1 predictions/);
});

Deno.test("STS-B: invalid strings become -1.0 (Python float), targets are the rounded strings", () => {
  assert.equal(stringToFloat("3.8"), 3.8);
  assert.equal(stringToFloat(" 4 "), 4);
  assert.equal(stringToFloat("four"), -1);
  assert.equal(stringToFloat(""), -1);
  const targets = ["1.0", "2.0", "3.0", "4.0"];
  const exs = targets.map((t) => ex("stsb", t));
  // predictions -> [1, -1, 3, 4]; Pearson of [1,2,3,4] vs [1,-1,3,4]:
  // means 2.5 and 1.75; dx = [-1.5,-.5,.5,1.5], dy = [-.75,-2.75,1.25,2.25]
  // sxy = 1.125+1.375+.625+3.375 = 6.5; sxx = 5; syy = .5625+7.5625+1.5625+5.0625 = 14.75
  const s = scoreTask("stsb", exs, ["1.0", "n/a", "3", "4.0"]);
  close(s.pearson_corrcoef as number, (100 * 6.5) / Math.sqrt(5 * 14.75), "pearson");
  // ranks of [1,-1,3,4] = [2,1,3,4] vs [1,2,3,4]: Pearson of ranks = 0.8
  close(s.spearman_corrcoef as number, 80, "spearman");
});

Deno.test("MNLI: matched and mismatched accuracies, group = their mean", () => {
  const m = [
    ex("mnli", "entailment", { split: "validation_matched" }),
    ex("mnli", "neutral", { split: "validation_matched" }),
  ];
  const mm = [ex("mnli", "contradiction", { split: "validation_mismatched" })];
  const both = scoreTask("mnli", [...m, ...mm], ["entailment", "contradiction", "contradiction"]);
  assert.deepEqual(both, { accuracy_matched: 50, accuracy_mismatched: 100 });
  const merged = {
    ...scoreTask("mnli", m, ["entailment", "x"]),
    ...scoreTask("mnli", mm, ["neutral"]),
  };
  assert.deepEqual(merged, { accuracy_matched: 50, accuracy_mismatched: 0 });
  assert.equal(groupScore("mnli", both), 75);
  assert.throws(
    () => groupScore("mnli", { accuracy_matched: 50 }),
    /metric "accuracy_mismatched" missing/,
  );
});

Deno.test("MultiRC: F1a over answers and per-question exact match", () => {
  // q1: answers T,F ; q2: answers T ; q3: answers F,F
  const t = [["True", "1"], ["False", "1"], ["True", "2"], ["False", "3"], ["False", "3"]];
  const exs = t.map(([target, group]) => ex("multirc", target as string, { group }));
  const preds = ["True", "False", "False", "True", "maybe"];
  // values: t [1,0,1,0,0], p [1,0,0,1,-1 -> 1 (=1-0)]: tp 1, fp 2, fn 1 -> F1 = 2/5 = 0.4
  // EM: q1 all match, q2 no, q3 no -> 1/3
  const s = scoreTask("multirc", exs, preds);
  close(s.f1 as number, 40, "f1a");
  close(s.exact_match as number, 100 / 3, "em");
  close(groupScore("multirc", s), (40 + 100 / 3) / 2, "group");
});

Deno.test("ReCoRD: SQuAD normalisation, max over answers, dedup per query", () => {
  assert.equal(normalizeSquad("The  Quick, brown-fox!  "), "quick brownfox");
  assert.equal(normalizeSquad("An apple a day"), "apple day");
  assert.equal(normalizeSquad("théâtre the"), "théâtre"); // "th" in "théâtre" is not an article word
  const q1 = { answers: ["Barack Obama", "Obama"], group: "0/1" };
  const q2 = { answers: ["the United States"], group: "0/2" };
  const exs = [
    ex("record", "Barack Obama", q1),
    ex("record", "Obama", q1), // duplicate of query 0/1 (train-style flattening): ignored
    ex("record", "the United States", q2),
  ];
  // q1: "obama" == "obama" -> EM 1, F1 1. q2: "United Kingdom" vs "united states": EM 0,
  // F1: 1 common of 2 and 2 -> 0.5. Mean: EM 50, F1 75.
  const s = scoreTask("record", exs, ["obama.", "Barack", "United Kingdom"]);
  assert.deepEqual(s, { em: 50, f1: 75 });
  assert.equal(groupScore("record", s), 62.5);
  assert.deepEqual(squad([["x y z"]], ["y z w"]), { em: 0, f1: 2 / 3 });
  // "a" is an article: "a b c" normalises to "b c"; vs "b c d": P 2/3, R 1 -> F1 0.8.
  assert.deepEqual(squad([["a b c"]], ["b c d"]), { em: 0, f1: 0.8 });
});

Deno.test("WSC simple postprocess: determiners, subsets, apostrophes, empty", () => {
  assert.equal(wscSimple("the dog", "The dog"), 1);
  assert.equal(wscSimple("fuzzy bunny", "bunny"), 1);
  assert.equal(wscSimple("bunny", "the fuzzy bunny"), 1);
  assert.equal(wscSimple("Bob", "Bob's hat"), 0);
  assert.equal(wscSimple("Bob's", "Bob's hat"), 1);
  assert.equal(wscSimple("the cat", "the dog"), 0);
  assert.equal(wscSimple("  The  ", "the dog"), -1);
  const exs = [
    ex("wsc", "the table", { label: 1 }),
    ex("wsc", "the ball", { label: 0 }),
    ex("wsc", "Tom", { label: 1 }),
  ];
  // preds -> [1 (table ⊆ table), 1 (ball), -1 (empty)] vs labels [1,0,1] -> 1/3
  close(scoreTask("wsc", exs, ["Table", "ball", "the"]).accuracy as number, 100 / 3, "wsc acc");
});

Deno.test("CoLA MCC, CB F1+accuracy, AX-g parity, AX empty", () => {
  const cola = ["acceptable", "acceptable", "unacceptable", "unacceptable"].map((t) =>
    ex("cola", t)
  );
  assert.equal(
    scoreTask("cola", cola, ["acceptable", "acceptable", "unacceptable", "unacceptable"])
      .matthews_corrcoef,
    100,
  );
  const cb = ["entailment", "contradiction", "neutral", "neutral"].map((t) => ex("cb", t));
  const s = scoreTask("cb", cb, ["entailment", "contradiction", "neutral", "entailment"]);
  // class F1: e 2/3, c 1, n 2/3 -> 7/9; accuracy 3/4
  close(s.mean_3class_f1 as number, 700 / 9, "cb f1");
  assert.equal(s.accuracy, 75);
  const axg = [["entailment", "p1"], ["entailment", "p1"], ["not_entailment", "p2"], [
    "entailment",
    "p2",
  ]]
    .map(([t, g]) => ex("axg", t as string, { group: g }));
  assert.deepEqual(
    scoreTask("axg", axg, ["entailment", "entailment", "entailment", "not_entailment"]),
    {
      accuracy: 50,
      gender_parity: 50,
    },
  );
  assert.deepEqual(scoreTask("ax", [ex("ax", "<unk>")], ["neutral"]), {});
  // WNLI is outside the average but trainable (a profile may list it): its accuracy.
  assert.equal(groupScore("wnli", { accuracy: 50 }), 50);
  assert.ok(Number.isNaN(groupScore("axg", { accuracy: 50, gender_parity: 50 })));
});

Deno.test("matthewsCorrcoef keeps its sign: worse than chance is negative, as sklearn", () => {
  // Inverted predictions: -1 exactly (cov_tp = 0·4 - 8 = -8, cov_pp = cov_tt = 8).
  assert.equal(matthewsCorrcoef([0, 0, 1, 1], [1, 1, 0, 0]), -1);
  // t [1,1,0,0,1], p [0,1,1,1,0]: tp 1, tn 0, fp 2, fn 2 -> (1·0 - 2·2)/sqrt(3·3·2·2) = -2/3.
  close(matthewsCorrcoef([1, 1, 0, 0, 1], [0, 1, 1, 1, 0]), -2 / 3, "mcc -2/3");
  // Through CoLA's scoring: a model that always answers the other word scores -100, not 100.
  const words = ["acceptable", "acceptable", "unacceptable", "unacceptable"];
  const cola = words.map((t) => ex("cola", t));
  assert.equal(scoreTask("cola", cola, [...words].reverse()).matthews_corrcoef, -100);
});

Deno.test("benchmark averages: mean of 8 group scores; WNLI/AX ignored; missing tasks throw", () => {
  const glue = {
    cola: 60,
    sst2: 90,
    mrpc: 85,
    stsb: 88,
    qqp: 89,
    mnli: 84,
    qnli: 91,
    rte: 70,
    wnli: 0,
    ax: 0,
  };
  assert.equal(benchmarkAverage("glue", glue), (60 + 90 + 85 + 88 + 89 + 84 + 91 + 70) / 8);
  const sg = {
    boolq: 80,
    cb: 90,
    copa: 70,
    multirc: 60,
    record: 75,
    rte_sg: 80,
    wic: 68,
    wsc: 77,
    axb: 0,
  };
  assert.equal(benchmarkAverage("super_glue", sg), (80 + 90 + 70 + 60 + 75 + 80 + 68 + 77) / 8);
  // "super_glue/rte" is an alias of rte_sg.
  const { rte_sg, ...rest } = sg;
  assert.equal(
    benchmarkAverage("super_glue", { ...rest, "super_glue/rte": rte_sg }),
    benchmarkAverage("super_glue", sg),
  );
  assert.throws(() => benchmarkAverage("glue", { cola: 1 }), /missing group scores for sst2, mrpc/);
  assert.equal(benchmarkAverage("glue", { cola: 10, rte: 20 }, { partial: true }), 15);
});

Deno.test("real validation sets: predicting the targets scores 100", async () => {
  const { loadExamples } = await import("./load.ts");
  const data = sharedPath("data");
  // Each task's metrics are named: a task scored with no metrics ({}) would pass a loop over them.
  const metrics: Record<string, string[]> = {
    cola: ["matthews_corrcoef"],
    mrpc: ["accuracy", "f1"],
    stsb: ["pearson_corrcoef", "spearman_corrcoef"],
    cb: ["accuracy", "mean_3class_f1"],
    copa: ["accuracy"],
    rte_sg: ["accuracy"],
  };
  for (const [task, names] of Object.entries(metrics)) {
    const exs = await loadExamples(task, "validation", data);
    assert.ok(exs.length > 0, `${task}: no validation examples`);
    const s = scoreTask(task, exs, exs.map((e) => e.target));
    assert.deepEqual(Object.keys(s).sort(), names, task);
    for (const [k, v] of Object.entries(s)) close(v, 100, `${task} ${k}`);
  }
  // WSC: the target is span1_text, a correct referent only when label is 1.
  const wsc = await loadExamples("wsc", "validation", data);
  const positives = wsc.filter((e) => e.label === 1).length;
  close(
    scoreTask("wsc", wsc, wsc.map((e) => e.target)).accuracy as number,
    (100 * positives) / wsc.length,
    "wsc",
  );
});

Deno.test("groupScore() counts an undefined (NaN) correlation as 0; the metric stays NaN", () => {
  // A constant prediction: SciPy's pearsonr/spearmanr are undefined (NaN).
  const examples = ["1.0", "2.0", "3.0"].map((target, i) => ({
    task: "stsb",
    id: String(i),
    input: "stsb sentence1: a sentence2: b",
    target,
  }));
  const s = scoreTask("stsb", examples, ["2.0", "2.0", "2.0"]);
  assert.ok(Number.isNaN(s["pearson_corrcoef"]!));
  assert.ok(Number.isNaN(s["spearman_corrcoef"]!));
  assert.equal(groupScore("stsb", s), 0);
  assert.equal(groupScore("stsb", { pearson_corrcoef: NaN, spearman_corrcoef: 80 }), 40);
});

Deno.test("spearman: a NaN in either input gives NaN, as SciPy's nan_policy='propagate'", () => {
  assert.ok(Number.isNaN(spearman([1, 2, 3, 4], [1, NaN, 3, 4])));
  assert.ok(Number.isNaN(spearman([NaN, 2, 3, 4], [1, 2, 3, 4])));
  assert.ok(Number.isNaN(averageRanks([1, NaN, 3])[0]!));
  // A generated "nan" (Python float("nan")) reaches both correlations as NaN.
  const stsb = ["1.0", "2.0", "3.0", "4.0"].map((t) => ex("stsb", t));
  const s = scoreTask("stsb", stsb, ["1.0", "nan", "3.0", "4.0"]);
  assert.ok(Number.isNaN(s.pearson_corrcoef!), `pearson ${s.pearson_corrcoef}`);
  assert.ok(Number.isNaN(s.spearman_corrcoef!), `spearman ${s.spearman_corrcoef}`);
});

Deno.test("pearson: a constant input gives NaN even when its value is not exact in binary", () => {
  for (const v of [3.8, 0.1, 2.6, 4.2, 1.4]) {
    for (const n of [3, 10, 1500]) {
      const c = new Array<number>(n).fill(v);
      const y = Array.from({ length: n }, (_, i) => ((i * 7) % 26) / 5);
      assert.ok(Number.isNaN(pearson(y, c)), `pearson(y, ${v} x ${n}) = ${pearson(y, c)}`);
      assert.ok(Number.isNaN(pearson(c, y)), `pearson(${v} x ${n}, y) = ${pearson(c, y)}`);
    }
  }
  const stsb = ["1.0", "2.2", "3.4"].map((t) => ex("stsb", t));
  const s = scoreTask("stsb", stsb, ["3.8", "3.8", "3.8"]);
  assert.ok(Number.isNaN(s.pearson_corrcoef!));
  assert.equal(groupScore("stsb", s), 0);
});

Deno.test("genderParity: every pair_id group must have exactly 2 predictions", () => {
  assert.equal(genderParity(["a", "a", "b", "b"], [0, 0, 0, 1]), 0.5);
  assert.throws(
    () => genderParity(["-1", "-1", "-1", "-1"], [0, 0, 0, 0]),
    /gender_parity: pair_id "-1" has 4 examples, expected exactly 2/,
  );
  assert.throws(
    () => genderParity(["a", "a", "b"], [0, 0, 1]),
    /gender_parity: pair_id "b" has 1 example, expected exactly 2/,
  );
  assert.throws(() => genderParity(["a", "a"], [0]), /2 groups but 1 predictions/);
});

Deno.test("AX-g without pair_id (HF fallback) reports no gender_parity; mixed groups throw", () => {
  const noPairs = ["entailment", "entailment", "not_entailment"].map((t) => ex("axg", t));
  const s = scoreTask("axg", noPairs, ["entailment", "entailment", "entailment"]);
  assert.deepEqual(Object.keys(s), ["accuracy"]);
  close(s.accuracy!, 200 / 3, "axg accuracy");
  const mixed = [ex("axg", "entailment", { group: "1" }), ex("axg", "entailment")];
  assert.throws(
    () => scoreTask("axg", mixed, ["entailment", "entailment"]),
    /scoreTask\(axg\): 1 of 2 examples have no pair_id/,
  );
});

Deno.test("benchmarkAverage: two keys of one canonical task throw; MNLI halves are no alias", () => {
  const base = { cola: 60, sst2: 90, mrpc: 85, stsb: 88, qqp: 89, qnli: 91, rte: 70 };
  assert.throws(
    () => benchmarkAverage("glue", { ...base, mnli: 50, "glue/mnli": 40 }),
    /benchmarkAverage\(glue\): keys "mnli" and "glue\/mnli" both name task mnli/,
  );
  // mnli_matched / mnli_mismatched are not task names: MNLI stays missing.
  assert.throws(
    () => benchmarkAverage("glue", { ...base, mnli_matched: 90, mnli_mismatched: 10 }),
    /missing group scores for mnli/,
  );
  assert.equal(benchmarkAverage("glue", { ...base, mnli: 50 }), 77.875);
});

Deno.test("scoreTask: unlabelled STS-B and ReCoRD examples are refused, naming the example", () => {
  // Test rows have target "<unk>" (STS-B) or no answers (ReCoRD). Without the check STS-B scored
  // "<unk>" as -1.0 (string_to_float) and ReCoRD named only its index among deduplicated queries.
  const stsb = [ex("stsb", "1.0", { id: "stsb/v/0" }), ex("stsb", "<unk>", { id: "stsb/test/7" })];
  assert.throws(
    () => scoreTask("stsb", stsb, ["1.0", "2.0"]),
    /^Error: example stsb\/test\/7 has no gold score \(target "<unk>"\)$/,
  );
  // What the loader gives an unlabelled STS-B row (tasks/load.ts: T5's round(-1 · 5) / 5).
  const stsbTest = [
    ex("stsb", "1.0", { id: "stsb/v/0" }),
    ex("stsb", "-1.0", { id: "stsb/test/8" }),
  ];
  assert.throws(
    () => scoreTask("stsb", stsbTest, ["1.0", "2.0"]),
    /^Error: example stsb\/test\/8 has no gold score \(target "-1\.0"\)$/,
  );
  const rec = [
    ex("record", "a", { id: "record/v/0/1/0", group: "0/1", answers: ["a", "b"] }),
    ex("record", "b", { id: "record/v/0/1/1", group: "0/1", answers: ["a", "b"] }),
    ex("record", "<unk>", { id: "record/test/3/4", group: "3/4", answers: [] }),
  ];
  assert.throws(
    () => scoreTask("record", rec, ["a", "a", "x"]),
    /^Error: example record\/test\/3\/4 has no gold answers/,
  );
  const noField = [ex("record", "<unk>", { id: "record/test/5/6", group: "5/6" })];
  assert.throws(
    () => scoreTask("record", noField, ["x"]),
    /example record\/test\/5\/6 has no gold/,
  );
});

Deno.test("metric edge cases follow scikit-learn: no positives, absent class, empty input", () => {
  // f1_score with no positive target or prediction: zero_division ("warn") gives 0.
  assert.equal(f1WithInvalid([0, 0, 0], [0, 0, 0]), 0);
  // An invalid prediction on a negative target becomes a false positive (1 - target).
  assert.equal(f1WithInvalid([0, 0], [0, -1]), 0);
  // mean_3class_f1 passes labels=range(3): a class absent from targets and predictions scores
  // 0 and still counts in the mean (CB on a small evaluation subset without "neutral").
  close(meanMulticlassF1([0, 1, 0], [0, 1, 0], 3), 2 / 3, "absent class");
  const cb = ["entailment", "contradiction", "entailment"].map((t) => ex("cb", t));
  const s = scoreTask("cb", cb, ["entailment", "contradiction", "entailment"]);
  close(s.mean_3class_f1 as number, 200 / 3, "cb absent class");
  assert.equal(s.accuracy, 100);
  // All predictions invalid: one predicted class, so MCC's covariance is 0 and sklearn gives 0.
  assert.equal(matthewsCorrcoef([0, 1, 0, 1], [-1, -1, -1, -1]), 0);
  for (const f of [accuracy, matthewsCorrcoef, f1WithInvalid, pearson, spearman]) {
    assert.throws(() => f([], []), /no examples/, f.name);
  }
  assert.throws(() => scoreTask("cola", [], []), /scoreTask\(cola\): no examples/);
});

Deno.test("pearson: two points give exactly ±1, as SciPy's pearsonr (not 0.9999999999999998)", () => {
  // SciPy 1.x: pearsonr([1, 2], [2, 4]) is 1.0 and pearsonr([0.1, 0.7], [3.3, 1.2]) is -1.0.
  assert.equal(pearson([1, 2], [2, 4]), 1);
  assert.equal(pearson([0.1, 0.7], [3.3, 1.2]), -1);
  assert.equal(pearson([0.7, 0.1], [3.3, 1.2]), 1);
  assert.ok(Number.isNaN(pearson([1, NaN], [2, 4])));
  assert.ok(Number.isNaN(pearson([1, 1], [2, 4])), "constant");
});

Deno.test("benchmark average is two-stage: metrics → group means → mean of the 8 groups", () => {
  // Reference §2.2 (T5 compute_avg_glue): MRPC, STS-B, QQP and MNLI first average their two
  // metrics, then the 8 groups are averaged. A flat mean over every metric value (HyperFormer's
  // convention, §2.3) differs on these values, so the test tells the two conventions apart.
  const metrics: Record<string, Record<string, number>> = {
    cola: { matthews_corrcoef: 40 },
    sst2: { accuracy: 90 },
    mrpc: { f1: 80, accuracy: 60 },
    stsb: { pearson_corrcoef: 70, spearman_corrcoef: 50 },
    qqp: { f1: 66, accuracy: 88 },
    mnli: { accuracy_matched: 84, accuracy_mismatched: 82 },
    qnli: { accuracy: 91 },
    rte: { accuracy: 70 },
  };
  const groups = Object.fromEntries(
    Object.entries(metrics).map(([t, m]) => [t, groupScore(t, m)]),
  );
  assert.deepEqual(groups, {
    cola: 40,
    sst2: 90,
    mrpc: 70,
    stsb: 60,
    qqp: 77,
    mnli: 83,
    qnli: 91,
    rte: 70,
  });
  const avg = benchmarkAverage("glue", groups);
  assert.equal(avg, (40 + 90 + 70 + 60 + 77 + 83 + 91 + 70) / 8);
  const flat = Object.values(metrics).flatMap((m) => Object.values(m));
  assert.equal(flat.length, 12);
  assert.notEqual(avg, flat.reduce((a, b) => a + b, 0) / flat.length);
  // SuperGLUE: CB, MultiRC and ReCoRD are two-metric groups; AX-b and AX-g stay out.
  const sg: Record<string, Record<string, number>> = {
    boolq: { accuracy: 80 },
    cb: { mean_3class_f1: 70, accuracy: 90 },
    copa: { accuracy: 60 },
    multirc: { f1: 75, exact_match: 35 },
    record: { f1: 72, em: 70 },
    rte_sg: { accuracy: 85 },
    wic: { accuracy: 65 },
    wsc: { accuracy: 62 },
  };
  const sgGroups = Object.fromEntries(Object.entries(sg).map(([t, m]) => [t, groupScore(t, m)]));
  assert.equal(
    benchmarkAverage("super_glue", { ...sgGroups, axb: 0, axg: 0 }),
    (80 + 80 + 60 + 55 + 71 + 85 + 65 + 62) / 8,
  );
});

Deno.test("invalidPredictions(): the predictions T5's postprocessing reads as no answer, per converter", () => {
  // A label word exactly (case and spacing count, as string_label_to_class_id compares).
  assert.equal(invalidPredictions("rte", ["entailment", "not_entailment", "Entailment", ""]), 2);
  assert.equal(invalidPredictions("cb", ["neutral", "contradiction", "entailment"]), 0);
  assert.equal(invalidPredictions("multirc", ["True", "False", "true"]), 1);
  assert.equal(invalidPredictions("axb", ["entailment", "ent"]), 1);
  // STS-B: a number (string_to_float's -1.0 otherwise), whatever its range.
  assert.equal(invalidPredictions("stsb", ["3.2", "4", "7.5", "four", " ⁇ ", ""]), 3);
  // WSC: nothing left once cleaned (wsc_simple's -1); any words are an answer.
  assert.equal(invalidPredictions("wsc", ["the dog", "", "the"]), 2);
  // ReCoRD's free-text answers are never invalid as such; AX (no metrics) has none.
  assert.equal(invalidPredictions("record", ["x", ""]), undefined);
  assert.equal(invalidPredictions("ax", ["entailment", "x"]), undefined);
  // As scored: an invalid RTE prediction is wrong, a valid wrong one too; the count tells them
  // apart.
  const ex = (target: string, i: number): Example => ({
    id: `r${i}`,
    task: "rte",
    input: "x",
    target,
  });
  const examples = ["entailment", "not_entailment"].map(ex);
  assert.deepEqual(scoreTask("rte", examples, ["xx", "yy"]), { accuracy: 0 });
  assert.equal(invalidPredictions("rte", ["xx", "yy"]), 2);
  assert.equal(invalidPredictions("rte", ["not_entailment", "entailment"]), 0);
});
