import assert from "node:assert/strict";
import { distinctLabels, runLabels } from "./labels.ts";
import { refKey } from "./compare.ts";
import type { ModelRef } from "./spec.ts";

/** The labels of `refs`, in the order given. */
function labelsOf(refs: readonly ModelRef[]): string[] {
  const m = distinctLabels(refs);
  return refs.map((r) => m.get(refKey(r))!);
}

Deno.test("distinctLabels(): an unambiguous model keeps its short label", () => {
  assert.deepEqual(
    labelsOf(["tiny-v1_1", { hf: "/data/a/t5-base" }, { hf: "google/t5-v1_1-large" }]),
    ["tiny-v1_1", "t5-base", "t5-v1_1-large"],
  );
  // Two spellings of one folder are one reference, one label.
  assert.deepEqual(labelsOf([{ hf: "/data/a/t5-base/" }, { hf: "/data//a/./t5-base" }]), [
    "t5-base",
    "t5-base",
  ]);
});

Deno.test("distinctLabels(): folders of one name get the shortest suffix that tells them apart", () => {
  assert.deepEqual(
    labelsOf([{ hf: "/data/a/t5-base" }, { hf: "/data/b/t5-base" }, { hf: "my-t5" }]),
    ["a/t5-base", "b/t5-base", "my-t5"],
  );
  // Only as much of the path as needed: `x/a` and `y/a` differ in their third segment from the end.
  assert.deepEqual(
    labelsOf([{ hf: "/m/x/a/t5-base" }, { hf: "/m/y/a/t5-base" }, { hf: "/m/b/t5-base" }]),
    ["x/a/t5-base", "y/a/t5-base", "b/t5-base"],
  );
  // A path that is the end of another's is named whole; absolute and relative differ by the `/`.
  assert.deepEqual(labelsOf([{ hf: "a/t5-base" }, { hf: "/x/a/t5-base" }]), [
    "a/t5-base",
    "x/a/t5-base",
  ]);
  assert.deepEqual(labelsOf([{ hf: "a/t5-base" }, { hf: "/a/t5-base" }]), [
    "a/t5-base",
    "/a/t5-base",
  ]);
  // A preset keeps its name beside a folder of that name; a hub id of the very same name is
  // told from it by the whole reference.
  assert.deepEqual(labelsOf(["t5-v1_1-base", { hf: "google/t5-v1_1-base" }]), [
    "t5-v1_1-base",
    "google/t5-v1_1-base",
  ]);
  assert.deepEqual(labelsOf(["t5-base", { hf: "t5-base" }]), ["t5-base", 'hf:"t5-base"']);
});

Deno.test("runLabels(): models and backbones each made distinct; random when absent", () => {
  const specs = [
    { model: { hf: "/a/t5-base" }, backbone: "pretrained" as const },
    { model: { hf: "/b/t5-base" }, backbone: { hf: "/c/t5-base" } },
  ];
  const l = runLabels(specs);
  assert.deepEqual(specs.map((s) => l.model(s)), ["a/t5-base", "b/t5-base"]);
  // The backbone `/c/t5-base` shares its name with no other backbone: the models do not count.
  assert.deepEqual(specs.map((s) => l.backbone(s)), ["pretrained", "t5-base"]);
  assert.equal(l.backbone({ backbone: undefined as never }), "random");
  // A spec not among those labelled gets its own short label.
  assert.equal(l.model({ model: { hf: "/z/t5-small" } }), "t5-small");
});
