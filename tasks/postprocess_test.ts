/**
 * Tests of T5's postprocessors (postprocess.ts) beside those of the metrics that use them
 * (metrics_test.ts): the label word of a prediction is matched exactly, and `wsc_simple`'s
 * determiner and apostrophe rules, each checked on a case that only that rule decides.
 */
import assert from "node:assert/strict";
import { classLabel, pyWords, wscSimple } from "./postprocess.ts";

Deno.test("classLabel: the exact label word's index; any other string (spaces, case) is -1", () => {
  const words = ["entailment", "not_entailment"];
  assert.equal(classLabel("entailment", words), 0);
  assert.equal(classLabel("not_entailment", words), 1);
  // string_label_to_class_id compares whole strings: no stripping, no case folding.
  for (const s of [" entailment", "entailment ", "Entailment", "entail", ""]) {
    assert.equal(classLabel(s, words), -1, JSON.stringify(s));
  }
});

Deno.test("wscSimple: each determiner rule and the apostrophe rule decide a case of their own", () => {
  // "a" and "the" dropped from both sides: {dog} ⊂ {cat, dog}; kept, neither set holds the other.
  assert.equal(wscSimple("a dog", "the cat dog"), 1);
  assert.equal(wscSimple("A", "the dog"), -1, "a determiner alone is an empty prediction");
  // The words are a subset, but one side has an apostrophe and the other not: no match.
  assert.equal(wscSimple("hat", "Bob's hat"), 0);
  assert.equal(wscSimple("Bob's hat", "hat"), 0);
  assert.equal(wscSimple("bob's", "Bob's hat"), 1);
});

Deno.test("pyWords splits on runs of Python whitespace", () => {
  assert.deepEqual(pyWords(" a\tb\n\u3000c  "), ["a", "b", "c"]);
  assert.deepEqual(pyWords(""), []);
});
