import assert from "node:assert/strict";
import { sharedPath } from "../model/shared_dir.ts";
import { stripTaskPrefix } from "../benchmarks/batching.ts";
import { loadExamples } from "./load.ts";
import { getTask } from "./registry.ts";
import {
  compareCodePoints,
  dprSimpleInput,
  fixWsc,
  glueInput,
  multircInput,
  recordEntities,
  recordInput,
  recordPassage,
  roundHalfEven,
  sortedUnique,
  stsbTarget,
  wscSimpleInput,
} from "./text.ts";

Deno.test("roundHalfEven is banker's rounding", () => {
  const got = [0.5, 1.5, 2.5, 3.5, -0.5, -1.5, 2.4999, 2.5001].map(roundHalfEven);
  assert.deepEqual(got.map((x) => x + 0), [0, 2, 2, 4, 0, -2, 2, 3]); // +0 folds -0
});

Deno.test("STS-B targets: float32 and half-to-even, derived by hand", () => {
  // 0.5*5 = 2.5 exactly -> 2 -> 0.4.  f32(0.9) = 0.89999998; *5 = 4.4999999 rounds to 4.5 in f32
  // (half ulp there is 2.4e-7) -> 4 -> 0.8.  f32(1.7)*5 = 8.5000002 -> f32 8.5 -> 8 -> 1.6.
  // 2.5*5 = 12.5 -> 12 -> 2.4.  f32(4.1)*5 = 20.4999995 -> f32 20.5 -> 20 -> 4.0.  4.5 -> 22.5 -> 22 -> 4.4.
  const cases: Array<[number, string]> = [
    [0.5, "0.4"],
    [0.9, "0.8"],
    [1.7, "1.6"],
    [2.5, "2.4"],
    [4.1, "4.0"],
    [4.5, "4.4"],
    [3.8, "3.8"],
    [5, "5.0"],
    [0, "0.0"],
    [4.75, "4.8"],
    [0.3, "0.4"],
    [3.1, "3.2"],
    [2.2, "2.2"],
  ];
  for (const [x, s] of cases) assert.equal(stsbTarget(x), s, String(x));
});

Deno.test("STS-B train: 91 labels differ from double-precision Math.round, 26 classes", async () => {
  const ex = await loadExamples("stsb", "train", sharedPath("data"));
  const naive = (x: number) => (Math.round(x * 5) / 5).toFixed(1);
  const differ = ex.filter((e) => naive(e.label as number) !== e.target);
  assert.equal(differ.length, 91);
  assert.deepEqual(sortedUnique(differ.map((e) => String(e.label))), [
    "0.5",
    "0.9",
    "1.7",
    "2.5",
    "4.1",
    "4.5",
  ]);
  assert.equal(new Set(ex.map((e) => e.target)).size, 26);
});

Deno.test("glue join keeps whitespace verbatim; MultiRC markup removal", () => {
  assert.equal(glueInput("sst2", [["sentence", " a  b "]]), "sst2 sentence:  a  b ");
  assert.equal(
    multircInput("Q<b>?</b>", "A", "x<br>y<b>z</b> <bb>"),
    "multirc question: Q? answer: A paragraph: x yz <bb>",
  );
});

Deno.test("ReCoRD passage cleanup: punctuation keeps itself, others get a period", () => {
  assert.equal(
    recordPassage(
      "A.\n@highlight\nB\n@highlight\nC?\n@highlight\nD\"\n@highlight\nE'\n@highlight\nF!\n@highlight\nG",
    ),
    "A. B. C? D\" E' F! G",
  );
});

Deno.test('ReCoRD entities: text[start:end+1] in code points, sorted unique; input joins them with ", "', () => {
  // Code points: 😀 0, "Zoe" 1-3, "Ann" 9-11, "Bob" 17-19, "Bob Smith" 17-25, "Ａ" 27 (the
  // last one; U+FF21 sorts before U+1F600 by code point, after it in UTF-16 code units).
  const text = "\u{1F600}Zoe met Ann and Bob Smith \uFF21";
  assert.equal(Array.from(text).length, 28);
  const spans = [
    { start: 17, end: 25 },
    { start: 9, end: 11 },
    { start: 1, end: 3 },
    { start: 17, end: 19 },
    { start: 9, end: 11 },
    { start: 0, end: 0 },
    { start: 27, end: 27 },
  ];
  // The end is inclusive (TFDS: text[start:end + 1]); a one-code-point span is the whole emoji.
  assert.deepEqual(recordEntities(text, spans), {
    entities: ["Ann", "Bob", "Bob Smith", "Zoe", "\uFF21", "\u{1F600}"],
  });
  // Out of range: the first bad span's index, no entities.
  assert.deepEqual(recordEntities(text, [{ start: 1, end: 3 }, { start: 20, end: 28 }]), {
    entities: [],
    bad: 1,
  });
  assert.deepEqual(recordEntities(text, [{ start: 5, end: 4 }]), { entities: [], bad: 0 });
  assert.deepEqual(recordEntities(text, [{ start: -1, end: 2 }]), { entities: [], bad: 0 });
  // T5's record preprocessor: reduce_join(entities, separator=", "), fields joined by " ".
  assert.equal(
    recordInput(
      "@placeholder met Ann",
      ["Ann", "Bob Smith", "Zoe"],
      "Ann met Bob.\n@highlight\nZoe",
    ),
    "record query: @placeholder met Ann entities: Ann, Bob Smith, Zoe passage: Ann met Bob. Zoe",
  );
  assert.equal(recordInput("q", [], "p"), "record query: q entities:  passage: p");
});

Deno.test("code-point order (Python sorted) differs from UTF-16 order above U+FFFF", () => {
  const astral = "\u{1F600}";
  const bmpHigh = "\uFF21";
  assert.ok(compareCodePoints(bmpHigh, astral) < 0);
  assert.ok([bmpHigh, astral].sort()[0] === astral); // JS default sort would put the emoji first
  assert.deepEqual(sortedUnique(["b", astral, "a", bmpHigh, "b"]), ["a", "b", bmpHigh, astral]);
});

Deno.test("WSC simple input and wsc.fixed repairs", () => {
  const base = {
    text: "Tom told Bob that he was late .",
    span1_index: 0,
    span1_text: "Tom",
    span2_index: 4,
    span2_text: "he",
  };
  assert.equal(wscSimpleInput(base), "wsc: Tom told Bob that *he* was late .");
  // T5's regex_replace is global: a word "X" already in the text is marked as well (T5's quirk).
  assert.equal(
    wscSimpleInput({ ...base, text: "Tom met X and he left .", span2_index: 4 }),
    "wsc: Tom met *he* and *he* left .",
  );
  // Case repair and trailing-dot removal, as TFDS wsc.fixed does.
  const fixed = fixWsc({
    ...base,
    text: "Then the cat ran . It slept .",
    span1_index: 1,
    span1_text: "The cat.",
    span2_index: 5,
    span2_text: "It",
  });
  assert.equal(fixed.span1_text, "the cat");
  // The first T5 special case: "Good for him," -> "Good for X ," -> "Good for *him* ,".
  const t1 =
    'The boy continued to whip the pony , and eventually the pony threw him over. John laughed out quite loud. "Good for him," he said. ';
  assert.equal(
    wscSimpleInput({
      text: t1,
      span1_index: 0,
      span1_text: "The boy",
      span2_index: 21,
      span2_text: "him",
    }),
    'wsc: The boy continued to whip the pony , and eventually the pony threw him over. John laughed out quite loud. "Good for *him* ," he said.',
  );
  assert.throws(
    () => wscSimpleInput({ ...base, span2_index: 0 }),
    /span2_index 0 must be in 1\.\.7/,
  );
});

Deno.test("dprSimpleInput: T5's first ` pronoun` before a space, `.` or `,` is starred, nothing else", () => {
  // Marked before a space, a full stop and a comma; the first match only (the second "he" stays).
  assert.equal(
    dprSimpleInput("John told Bill he said he was late.", "he"),
    "wsc: John told Bill *he* said he was late.",
  );
  assert.equal(
    dprSimpleInput("The cat chased the dog, so it ran.", "it"),
    "wsc: The cat chased the dog, so it ran.".replace("it ran", "*it* ran"),
  );
  assert.equal(
    dprSimpleInput("Mary hugged Sue because she.", "she"),
    "wsc: Mary hugged Sue because *she*.",
  );
  assert.equal(
    dprSimpleInput("Tom paid Al because he, too, owed.", "he"),
    "wsc: Tom paid Al because *he*, too, owed.",
  );
  // Sentence-initial: no space before it, so it is not marked; the later one is.
  assert.equal(dprSimpleInput("He saw Tom and he left.", "He"), "wsc: He saw Tom and he left.");
  assert.equal(dprSimpleInput("He saw Tom and he left.", "he"), "wsc: He saw Tom and *he* left.");
  // Case-sensitive; a pronoun inside a word or before another character is not a match.
  assert.equal(dprSimpleInput("They thanked them.", "the"), "wsc: They thanked them.");
  assert.equal(dprSimpleInput("Ann met him; him!", "him"), "wsc: Ann met him; him!");
  // A regex metacharacter in the pronoun matches itself only; `$` in the text stays literal.
  assert.equal(dprSimpleInput("It cost $5 so h.s paid.", "h.s"), "wsc: It cost $5 so *h.s* paid.");
  assert.equal(dprSimpleInput("It cost $5 so his paid.", "h.s"), "wsc: It cost $5 so his paid.");
});

Deno.test("a task's registry prefix is the first word of the inputs its builder writes (what keepTaskPrefix: false strips)", () => {
  // The classify/stsb inputs are built from the registry prefix itself; these four builders
  // write their own, and benchmarks/batching.ts stripTaskPrefix removes `${prefix} ` only when
  // the input starts with it, so a registry prefix that differs is silently never stripped.
  const inputs: Record<string, string> = {
    wsc: wscSimpleInput({
      text: "Tom told Bob that he was late .",
      span1_index: 0,
      span1_text: "Tom",
      span2_index: 4,
      span2_text: "he",
    }),
    dpr: dprSimpleInput("John told Bill he was late.", "he"),
    multirc: multircInput("Q?", "A", "P."),
    record: recordInput("@placeholder met Ann", ["Ann"], "Ann met Bob."),
  };
  for (const [task, input] of Object.entries(inputs)) {
    const prefix = getTask(task).prefix;
    assert.ok(input.startsWith(`${prefix} `), `${task}: ${JSON.stringify(prefix)} vs ${input}`);
    assert.equal(stripTaskPrefix(input, prefix), input.slice(prefix.length + 1), task);
  }
});
