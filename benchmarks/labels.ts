/**
 * Labels of models and backbones for the tables, plots and submission rows: the short label
 * (`spec.ts` `modelLabel`: a preset's name, `random`, `pretrained`, or an `hf` reference's last
 * path segment) wherever it names one reference only, else enough of each reference's path to
 * tell them apart. Runs are told apart by their whole reference (`compare.ts` {@link refKey}),
 * never by a label.
 *
 * @module
 */
import { refKey } from "./compare.ts";
import type { BackboneRef, ModelRef, RunSpec } from "./spec.ts";

/** A model or backbone reference. */
type Ref = ModelRef | BackboneRef;

/**
 * The path segments of a reference as {@link refKey} normalises it: a string reference (a preset,
 * `random`, `pretrained`) is one segment; an `hf` reference its normalised path split at `/`, an
 * absolute path starting with an empty segment (`/data/a/t5-base` -> `["", "data", "a",
 * "t5-base"]`), so that joining any suffix with `/` gives back that part of the path.
 */
function segmentsOf(key: string): string[] {
  if (!key.startsWith("hf:")) return [key];
  const path = JSON.parse(key.slice(3)) as string;
  return path.split("/");
}

/**
 * Distinct labels for the distinct references among `refs`, keyed by {@link refKey}.
 *
 * A reference whose short label (the last segment of its normalised path; a string reference as
 * it is) no other reference shares keeps it, so tables of unambiguous models read as before. Of
 * references sharing a short label, each `hf` one gets the shortest suffix of its path that no
 * other of them ends with (`/data/a/t5-base` and `/data/b/t5-base`: `a/t5-base`, `b/t5-base`; a
 * preset `t5-v1_1-base` beside `google/t5-v1_1-base`: `t5-v1_1-base` and
 * `google/t5-v1_1-base`), or its whole path when every suffix is another's (`a/t5-base` beside
 * `/x/a/t5-base`: `a/t5-base` and `x/a/t5-base`); a string reference keeps its name. Labels
 * that would still coincide (a preset and a hub id of the same name) are each the whole
 * {@link refKey} (`t5-base`, `hf:"t5-base"`), which is unique.
 *
 * @param refs the references (repeats and other spellings of one reference are one)
 * @returns label of each reference's `refKey`
 */
export function distinctLabels(refs: Iterable<Ref>): Map<string, string> {
  const byShort = new Map<string, string[][]>();
  const keys = new Set<string>();
  for (const ref of refs) keys.add(refKey(ref));
  for (const key of keys) {
    const segs = segmentsOf(key);
    const short = segs.at(-1) || segs.join("/");
    byShort.set(short, [...(byShort.get(short) ?? []), [key, ...segs]]);
  }
  const labels = new Map<string, string>();
  for (const [short, members] of byShort) {
    if (members.length === 1) {
      labels.set(members[0]![0]!, short);
      continue;
    }
    for (const [key, ...segs] of members) {
      const endsLike = (k: number) =>
        members.some(([other, ...o]) =>
          other !== key && o.length >= k && o.slice(-k).join("/") === segs.slice(-k).join("/")
        );
      let k = 1;
      while (k < segs.length && endsLike(k)) k++;
      labels.set(key!, segs.slice(-k).join("/"));
    }
  }
  // Whatever still coincides (a preset and a one-segment hub id of one name) is named whole.
  const count = new Map<string, number>();
  for (const l of labels.values()) count.set(l, (count.get(l) ?? 0) + 1);
  for (const [key, l] of labels) if (count.get(l)! > 1) labels.set(key, key);
  return labels;
}

/** The model and backbone labels of a set of runs ({@link runLabels}). */
export interface RunLabels {
  /** The model's label: distinct among the runs' distinct models. */
  model(spec: Pick<RunSpec, "model">): string;
  /** The backbone's label (`random` when absent): distinct among the runs' distinct backbones. */
  backbone(spec: Pick<RunSpec, "backbone">): string;
}

/**
 * The labels of the models and of the backbones of `specs`, each set made distinct on its own
 * ({@link distinctLabels}): a table's `model` and `backbone` columns, a plot's names. A spec not
 * among `specs` gets its model's or backbone's label as if it were the only one.
 *
 * @param specs the runs' specs (all the runs of a table or plot, so every part labels alike)
 * @returns the labellers
 */
export function runLabels(specs: Iterable<Pick<RunSpec, "model" | "backbone">>): RunLabels {
  const all = [...specs];
  const models = distinctLabels(all.map((s) => s.model));
  const backbones = distinctLabels(all.map((s) => s.backbone ?? "random"));
  const of = (labels: Map<string, string>, ref: Ref) =>
    labels.get(refKey(ref)) ?? distinctLabels([ref]).get(refKey(ref))!;
  return {
    model: (s) => of(models, s.model),
    backbone: (s) => of(backbones, s.backbone ?? "random"),
  };
}

/**
 * The order of row labels in the tables and of series in the plots: numbers by value (the
 * ablation's `HyperPrompt-Global l=4`, `l=32`, `l=64`, `l=100`, not `l=100` first), then by code
 * unit where collation ties, so the order is total and the same on every host.
 *
 * @param a a label
 * @param b a label
 * @returns negative, zero or positive as `a` sorts before, with or after `b`
 */
export function compareLabels(a: string, b: string): number {
  return a.localeCompare(b, "en", { numeric: true }) || (a < b ? -1 : a > b ? 1 : 0);
}
