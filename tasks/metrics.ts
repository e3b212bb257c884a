/**
 * Metrics exactly as T5 computes them (`t5/evaluation/metrics.py`, scikit-learn and SciPy
 * definitions), per-task scoring with T5 postprocessing, group scores and benchmark averages
 * (`t5/evaluation/eval_utils.py`). The raw metric functions return fractions (0-1, as sklearn);
 * {@link scoreTask}, {@link groupScore} and {@link benchmarkAverage} use 0-100.
 *
 * @module
 */
import { BENCHMARK_TASKS, getTask } from "./registry.ts";
import { classLabel, normalizeSquad, pyWords, stringToFloat, wscSimple } from "./postprocess.ts";
import { pyFloat } from "./parse.ts";
import type { BenchmarkName, Example } from "./types.ts";

function checkLengths(a: readonly unknown[], b: readonly unknown[], what: string): void {
  if (a.length !== b.length) {
    throw new Error(`${what}: ${a.length} targets but ${b.length} predictions`);
  }
  if (a.length === 0) throw new Error(`${what}: no examples`);
}

/** sklearn `accuracy_score`. */
export function accuracy(targets: readonly number[], predictions: readonly number[]): number {
  checkLengths(targets, predictions, "accuracy");
  let ok = 0;
  for (let i = 0; i < targets.length; i++) if (targets[i] === predictions[i]) ok++;
  return ok / targets.length;
}

/**
 * sklearn `matthews_corrcoef`, multiclass form (an invalid prediction -1 is its own class, as in
 * T5 where it reaches sklearn unchanged); 0 when a covariance is 0.
 */
export function matthewsCorrcoef(
  targets: readonly number[],
  predictions: readonly number[],
): number {
  checkLengths(targets, predictions, "matthews_corrcoef");
  const tSum = new Map<number, number>();
  const pSum = new Map<number, number>();
  let correct = 0;
  const n = targets.length;
  for (let i = 0; i < n; i++) {
    const t = targets[i] as number;
    const p = predictions[i] as number;
    tSum.set(t, (tSum.get(t) ?? 0) + 1);
    pSum.set(p, (pSum.get(p) ?? 0) + 1);
    if (t === p) correct++;
  }
  let tp = 0;
  for (const [k, v] of tSum) tp += v * (pSum.get(k) ?? 0);
  const sq = (m: Map<number, number>) => [...m.values()].reduce((s, v) => s + v * v, 0);
  const covTP = correct * n - tp;
  const covPP = n * n - sq(pSum);
  const covTT = n * n - sq(tSum);
  if (covPP * covTT === 0) return 0;
  return covTP / Math.sqrt(covTT * covPP);
}

function f1FromCounts(tp: number, fp: number, fn: number): number {
  const d = 2 * tp + fp + fn;
  return d === 0 ? 0 : (2 * tp) / d;
}

/**
 * T5 `f1_score_with_invalid`: binary F1 (positive class 1) where every prediction other than 0
 * or 1 is set to `1 - target` (always wrong).
 */
export function f1WithInvalid(targets: readonly number[], predictions: readonly number[]): number {
  checkLengths(targets, predictions, "f1");
  let tp = 0, fp = 0, fn = 0;
  for (let i = 0; i < targets.length; i++) {
    const t = targets[i] as number;
    if (t !== 0 && t !== 1) throw new Error(`f1: target ${t} at ${i} is not 0 or 1`);
    let p = predictions[i] as number;
    if (p !== 0 && p !== 1) p = 1 - t;
    if (p === 1 && t === 1) tp++;
    else if (p === 1) fp++;
    else if (t === 1) fn++;
  }
  return f1FromCounts(tp, fp, fn);
}

/**
 * T5 `mean_multiclass_f1`: sklearn `fbeta_score(beta=1, labels=range(n), average="macro")`
 * (invalid predictions count against the true class only; 0 for an empty class).
 */
export function meanMulticlassF1(
  targets: readonly number[],
  predictions: readonly number[],
  numClasses: number,
): number {
  checkLengths(targets, predictions, "mean_multiclass_f1");
  let sum = 0;
  for (let c = 0; c < numClasses; c++) {
    let tp = 0, fp = 0, fn = 0;
    for (let i = 0; i < targets.length; i++) {
      const t = targets[i] === c, p = predictions[i] === c;
      if (t && p) tp++;
      else if (p) fp++;
      else if (t) fn++;
    }
    sum += f1FromCounts(tp, fp, fn);
  }
  return sum / numClasses;
}

/** True when every value equals the first exactly (SciPy's `(x == x[0]).all()`). */
function isConstant(x: readonly number[]): boolean {
  const first = x[0];
  return x.every((v) => v === first);
}

/**
 * SciPy `pearsonr` coefficient. NaN when an input is constant, tested as SciPy does by exact
 * equality with the first value (before any floating-point mean is taken, so a constant 3.8 is
 * NaN too, not a rounding residue of about 1e-16); NaN when an input holds a NaN; exactly ±1 for
 * two points, as SciPy.
 */
export function pearson(x: readonly number[], y: readonly number[]): number {
  checkLengths(x, y, "pearson");
  if (isConstant(x) || isConstant(y)) return NaN;
  const n = x.length;
  // Two points lie on a line: exactly ±1, as SciPy answers (the sums below can give 0.9999999999999998).
  if (n === 2) {
    return Math.sign((x[1] as number) - (x[0] as number)) *
      Math.sign((y[1] as number) - (y[0] as number));
  }
  let mx = 0, my = 0;
  for (let i = 0; i < n; i++) {
    mx += x[i] as number;
    my += y[i] as number;
  }
  mx /= n;
  my /= n;
  let sxy = 0, sxx = 0, syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = (x[i] as number) - mx, dy = (y[i] as number) - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  if (sxx === 0 || syy === 0) return NaN;
  const r = sxy / (Math.sqrt(sxx) * Math.sqrt(syy));
  return Math.max(-1, Math.min(1, r));
}

/**
 * SciPy `rankdata(method="average")`: 1-based ranks, ties get their mean rank. With a NaN in `x`
 * every rank is NaN (SciPy's default `nan_policy="propagate"`).
 */
export function averageRanks(x: readonly number[]): number[] {
  if (x.some(Number.isNaN)) return x.map(() => NaN);
  const order = x.map((_, i) => i).sort((a, b) => (x[a] as number) - (x[b] as number));
  const ranks = new Array<number>(x.length);
  for (let i = 0; i < order.length;) {
    let j = i;
    while (j + 1 < order.length && x[order[j + 1] as number] === x[order[i] as number]) j++;
    const r = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) ranks[order[k] as number] = r;
    i = j + 1;
  }
  return ranks;
}

/**
 * SciPy `spearmanr` coefficient: Pearson on average ranks; NaN when either input holds a NaN
 * (a generated `"nan"` prediction), as SciPy's default `nan_policy="propagate"`.
 */
export function spearman(x: readonly number[], y: readonly number[]): number {
  checkLengths(x, y, "spearman");
  if (x.some(Number.isNaN) || y.some(Number.isNaN)) return NaN;
  return pearson(averageRanks(x), averageRanks(y));
}

function tokenF1(target: string, prediction: string): number {
  const p = pyWords(prediction), t = pyWords(target);
  const counts = new Map<string, number>();
  for (const w of t) counts.set(w, (counts.get(w) ?? 0) + 1);
  let same = 0;
  for (const w of p) {
    const c = counts.get(w) ?? 0;
    if (c > 0) {
      same++;
      counts.set(w, c - 1);
    }
  }
  if (same === 0) return 0;
  const precision = same / p.length, recall = same / t.length;
  return (2 * precision * recall) / (precision + recall);
}

/**
 * T5 `metrics.squad`: SQuAD-normalised exact match and token F1, max over each example's gold
 * answers, averaged (fractions 0-1).
 */
export function squad(
  targets: ReadonlyArray<readonly string[]>,
  predictions: readonly string[],
): { em: number; f1: number } {
  checkLengths(targets, predictions, "squad");
  let em = 0, f1 = 0;
  for (let i = 0; i < targets.length; i++) {
    const golds = (targets[i] as readonly string[]).map(normalizeSquad);
    if (golds.length === 0) throw new Error(`squad: example ${i} has no gold answers`);
    const p = normalizeSquad(predictions[i] as string);
    em += Math.max(...golds.map((g) => (g === p ? 1 : 0)));
    f1 += Math.max(...golds.map((g) => tokenF1(g, p)));
  }
  return { em: em / targets.length, f1: f1 / targets.length };
}

/**
 * T5 `mean_group_metric(all_match)`: per group, 1 when every prediction equals its target; the
 * mean over groups (fraction).
 */
export function groupExactMatch(
  groups: readonly string[],
  targets: readonly number[],
  predictions: readonly number[],
): number {
  checkLengths(targets, predictions, "exact_match");
  const all = new Map<string, boolean>();
  for (let i = 0; i < groups.length; i++) {
    const g = groups[i] as string;
    all.set(g, (all.get(g) ?? true) && targets[i] === predictions[i]);
  }
  let ok = 0;
  for (const v of all.values()) if (v) ok++;
  return ok / all.size;
}

/**
 * AX-g gender parity: fraction of `pair_id` pairs whose two predictions are equal. Throws naming
 * the first `pair_id` that does not have exactly 2 examples (e.g. a placeholder id shared by
 * every row), since such a group is not a pair and its parity would be made up.
 */
export function genderParity(groups: readonly string[], predictions: readonly number[]): number {
  if (groups.length !== predictions.length) {
    throw new Error(
      `gender_parity: ${groups.length} groups but ${predictions.length} predictions`,
    );
  }
  if (groups.length === 0) throw new Error("gender_parity: no examples");
  const byGroup = new Map<string, number[]>();
  groups.forEach((g, i) => {
    const ps = byGroup.get(g);
    if (ps) ps.push(predictions[i] as number);
    else byGroup.set(g, [predictions[i] as number]);
  });
  let same = 0;
  for (const [g, ps] of byGroup) {
    if (ps.length !== 2) {
      throw new Error(
        `gender_parity: pair_id ${JSON.stringify(g)} has ${ps.length} example${
          ps.length === 1 ? "" : "s"
        }, expected exactly 2`,
      );
    }
    if (ps[0] === ps[1]) same++;
  }
  return same / byGroup.size;
}

function targetClass(ex: Example, words: readonly string[]): number {
  const c = classLabel(ex.target, words);
  if (c < 0) {
    throw new Error(`example ${ex.id} has no gold label (target ${JSON.stringify(ex.target)})`);
  }
  return c;
}

/**
 * Scores one task's predictions with T5's postprocessing and metrics, on 0-100. Keys are T5's
 * metric names (`accuracy`, `matthews_corrcoef`, `f1`, `pearson_corrcoef`, `spearman_corrcoef`,
 * `mean_3class_f1`, `exact_match`, `em`); MNLI gives `accuracy_matched` / `accuracy_mismatched`
 * for the splits present (merge the objects of separate calls); AX gives `{}`. AX-g gives
 * `gender_parity` only when its examples carry `pair_id` groups (the official file; the Hugging
 * Face fallback has none, so the metric is left out rather than made up).
 * Targets are postprocessed from the target strings as T5 does (STS-B: the rounded target).
 */
export function scoreTask(
  taskName: string,
  examples: readonly Example[],
  predictions: readonly string[],
): Record<string, number> {
  const spec = getTask(taskName);
  checkLengths(examples, predictions, `scoreTask(${spec.name})`);
  if (spec.metrics.length === 0) return {};
  const words = spec.labelWords;
  switch (spec.converter) {
    case "stsb": {
      // An unlabelled test row has no gold score: the loader gives it T5's target "-1.0" (TFDS
      // label -1, rounded as any label: tasks/load.ts), and a target that is no number ("<unk>")
      // would be -1.0 through string_to_float. Gold scores lie in [0, 5], so a negative one (or
      // no number) is refused, as the other tasks refuse "<unk>", instead of scored.
      const t = examples.map((e) => {
        const v = pyFloat(e.target);
        if (v === undefined || v < 0) {
          throw new Error(
            `example ${e.id} has no gold score (target ${JSON.stringify(e.target)})`,
          );
        }
        return v;
      });
      const p = predictions.map(stringToFloat);
      return { pearson_corrcoef: 100 * pearson(t, p), spearman_corrcoef: 100 * spearman(t, p) };
    }
    case "multirc": {
      const t = examples.map((e) => targetClass(e, words));
      const p = predictions.map((s) => classLabel(s, words));
      const g = examples.map((e) => e.group ?? e.id);
      return { f1: 100 * f1WithInvalid(t, p), exact_match: 100 * groupExactMatch(g, t, p) };
    }
    case "record": {
      const seen = new Set<string>();
      const golds: string[][] = [];
      const preds: string[] = [];
      examples.forEach((e, i) => {
        const g = e.group ?? e.id;
        if (seen.has(g)) return;
        seen.add(g);
        if (e.answers === undefined || e.answers.length === 0) {
          throw new Error(`example ${e.id} has no gold answers (an unlabelled test query?)`);
        }
        golds.push(e.answers);
        preds.push(predictions[i] as string);
      });
      const s = squad(golds, preds);
      return { em: 100 * s.em, f1: 100 * s.f1 };
    }
    case "wsc_simple": {
      const t = examples.map((e) => {
        if (e.label === undefined) throw new Error(`example ${e.id} has no gold label`);
        return Number(e.label);
      });
      const p = predictions.map((s, i) => wscSimple(s, (examples[i] as Example).target));
      return { accuracy: 100 * accuracy(t, p) };
    }
    default: {
      const t = examples.map((e) => targetClass(e, words));
      const p = predictions.map((s) => classLabel(s, words));
      const out: Record<string, number> = {};
      for (const m of spec.metrics) {
        if (m === "accuracy") out[m] = 100 * accuracy(t, p);
        else if (m === "matthews_corrcoef") out[m] = 100 * matthewsCorrcoef(t, p);
        else if (m === "f1") out[m] = 100 * f1WithInvalid(t, p);
        else if (m === "mean_3class_f1") out[m] = 100 * meanMulticlassF1(t, p, 3);
        else if (m === "gender_parity") {
          const missing = examples.filter((e) => e.group === undefined).length;
          if (missing === examples.length) continue; // no pair_id (HF fallback): not reported
          if (missing > 0) {
            throw new Error(
              `scoreTask(${spec.name}): ${missing} of ${examples.length} examples have no ` +
                `pair_id (first: ${examples.find((e) => e.group === undefined)?.id})`,
            );
          }
          out[m] = 100 * genderParity(examples.map((e) => e.group as string), p);
        } else if (m === "accuracy_matched" || m === "accuracy_mismatched") {
          const want = m === "accuracy_matched" ? "matched" : "mismatched";
          const idx = examples.flatMap((e, i) => (e.split?.endsWith(`_${want}`) ? [i] : []));
          if (idx.length > 0) {
            out[m] = 100 * accuracy(idx.map((i) => t[i] as number), idx.map((i) => p[i] as number));
          }
        }
      }
      if (spec.name === "mnli" && Object.keys(out).length === 0) {
        throw new Error(
          "scoreTask(mnli): examples carry no validation_matched/mismatched split tag",
        );
      }
      return out;
    }
  }
}

/**
 * How many of a task's predictions T5's postprocessing reads as no answer at all, which its
 * metrics score as wrong: for a classification task (and MultiRC), a text that is no label word
 * (`string_label_to_class_id`'s -1); for STS-B, a text that is no number (`string_to_float`'s
 * -1.0); for WSC, a text with no word left once cleaned. Undefined for ReCoRD, whose free-text
 * answers are scored by overlap (no answer is invalid as such), and for a task without metrics.
 * A score near 0 whose predictions are mostly invalid says the model has not learned the label
 * words yet, not that it chose the wrong labels.
 *
 * @param taskName the task
 * @param predictions the decoded predictions
 * @returns the count, or undefined where no prediction is invalid by definition
 * @example
 * ```ts
 * import { invalidPredictions } from "./metrics.ts";
 * console.assert(invalidPredictions("rte", ["entailment", "entail", "not_entailment"]) === 1);
 * console.assert(invalidPredictions("stsb", ["3.2", "four"]) === 1);
 * console.assert(invalidPredictions("record", ["anything"]) === undefined);
 * ```
 */
export function invalidPredictions(
  taskName: string,
  predictions: readonly string[],
): number | undefined {
  const spec = getTask(taskName);
  if (spec.metrics.length === 0) return undefined;
  const count = (bad: (p: string) => boolean) => predictions.filter(bad).length;
  switch (spec.converter) {
    case "stsb":
      return count((p) => pyFloat(p) === undefined);
    case "record":
      return undefined;
    case "wsc_simple":
      // wscSimple's -1: nothing left of the prediction to compare with the referent.
      return count((p) => wscSimple(p, "x") === -1);
    default:
      return count((p) => classLabel(p, spec.labelWords) < 0);
  }
}

/**
 * A task's group score (T5 `METRIC_NAMES` groups): the mean of its group metrics (MRPC/QQP:
 * F1 and accuracy; STS-B: Pearson and Spearman; MNLI: matched and mismatched accuracy; CB: F1
 * and accuracy; MultiRC: F1a and EM; ReCoRD: F1 and EM; WNLI, not averaged but trainable when
 * a profile lists it: accuracy). NaN for the test-only diagnostics (AX, AX-b, AX-g), which have
 * no group metrics. Throws naming a missing metric.
 *
 * A metric that is NaN (Pearson or Spearman of a constant prediction: undefined, as in SciPy)
 * counts as 0 in the group score, as HyperFormer's evaluation does; the metric itself stays NaN
 * in the results. Without this one constant-predicting checkpoint makes every average NaN.
 */
export function groupScore(taskName: string, metrics: Readonly<Record<string, number>>): number {
  const spec = getTask(taskName);
  if (spec.groupMetrics.length === 0) return NaN;
  let sum = 0;
  for (const m of spec.groupMetrics) {
    const v = metrics[m];
    if (v === undefined) {
      throw new Error(
        `groupScore(${spec.name}): metric "${m}" missing (have: ${
          Object.keys(metrics).join(", ")
        })`,
      );
    }
    sum += Number.isNaN(v) ? 0 : v;
  }
  return sum / spec.groupMetrics.length;
}

/**
 * The T5 benchmark average: the unweighted mean of the 8 group scores of `BENCHMARK_TASKS`
 * (keys: canonical task names or aliases; other keys are ignored). Throws when two keys name the
 * same task (`rte_sg` and `super_glue/rte`), and listing the missing tasks unless `partial` is
 * set, in which case it averages the tasks present.
 */
export function benchmarkAverage(
  benchmark: BenchmarkName,
  groupScores: Readonly<Record<string, number>>,
  opts: { partial?: boolean } = {},
): number {
  const byName = new Map<string, number>();
  const keyOf = new Map<string, string>();
  for (const [k, v] of Object.entries(groupScores)) {
    let name: string;
    try {
      name = getTask(k).name;
    } catch {
      continue;
    }
    const prev = keyOf.get(name);
    if (prev !== undefined) {
      throw new Error(
        `benchmarkAverage(${benchmark}): keys "${prev}" and "${k}" both name task ${name}; ` +
          "pass one group score per task",
      );
    }
    keyOf.set(name, k);
    byName.set(name, v);
  }
  const tasks = BENCHMARK_TASKS[benchmark];
  const missing = tasks.filter((t) => !byName.has(t));
  if (missing.length > 0 && !opts.partial) {
    throw new Error(
      `benchmarkAverage(${benchmark}): missing group scores for ${missing.join(", ")}`,
    );
  }
  const present = tasks.filter((t) => byName.has(t));
  if (present.length === 0) throw new Error(`benchmarkAverage(${benchmark}): no group scores`);
  return present.reduce((s, t) => s + (byName.get(t) as number), 0) / present.length;
}
