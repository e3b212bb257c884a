import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { examplesFromBytes } from "./load.ts";
import {
  DataError,
  decodeUtf8,
  parseDpr,
  parseJsonl,
  parseTsv,
  pyFloat,
  splitLines,
} from "./parse.ts";
import type { TaskSplit } from "./types.ts";

function testdata(name: string): string {
  return fileURLToPath(new URL(`./testdata/${name}`, import.meta.url));
}

function loadBroken(task: string, split: TaskSplit, name: string): () => void {
  return () => {
    examplesFromBytes(task, split, Deno.readFileSync(testdata(name)), name);
  };
}

// Each hand-made broken file and the message it must produce (file:line: field "x": detail).
const BROKEN: Array<[string, TaskSplit, string, RegExp]> = [
  [
    "cola",
    "train",
    "cola_wrong_columns.tsv",
    /^cola_wrong_columns\.tsv:3: field "sentence": expected 4 tab-separated columns, found 3$/,
  ],
  [
    "rte",
    "train",
    "rte_unknown_label.tsv",
    /^rte_unknown_label\.tsv:3: field "label": unknown label "maybe" \(expected entailment, not_entailment\)$/,
  ],
  [
    "rte",
    "validation",
    "rte_truncated.tsv",
    /^rte_truncated\.tsv:3: field "label": expected 4 tab-separated columns, found 3; the file ends mid-line here: cut short\? fetch it again \(deno task download --tasks glue\/rte\)$/,
  ],
  [
    "mnli",
    "train",
    "mnli_missing_column.tsv",
    /^mnli_missing_column\.tsv:1: field "gold_label": missing column/,
  ],
  [
    "stsb",
    "train",
    "stsb_bad_score.tsv",
    /^stsb_bad_score\.tsv:3: field "score": expected a score in \[0, 5\], got "four"$/,
  ],
  [
    "sst2",
    "train",
    "sst2_invalid_utf8.tsv",
    /^sst2_invalid_utf8\.tsv:3: invalid UTF-8 at byte 5 of the line \(ff fe 20 66\)$/,
  ],
  [
    "cb",
    "train",
    "cb_invalid_json.jsonl",
    // The column within the row, not V8's "(line 1 column 70)" of the row alone.
    /^cb_invalid_json\.jsonl:2: invalid JSON: Expected double-quoted property name \(column 70\)$/,
  ],
  [
    "cb",
    "train",
    "cb_truncated.jsonl",
    /^cb_truncated\.jsonl:2: invalid JSON: .*; the file ends mid-line here: cut short\? fetch it again \(deno task download --tasks super_glue\/cb\)$/,
  ],
  [
    "cb",
    "train",
    "cb_missing_field.jsonl",
    /^cb_missing_field\.jsonl:1: field "hypothesis": missing$/,
  ],
  [
    "boolq",
    "train",
    "boolq_bad_label.jsonl",
    /^boolq_bad_label\.jsonl:2: field "label": unknown label "yes" \(expected true\/false\)$/,
  ],
  [
    "multirc",
    "train",
    "multirc_missing_label.jsonl",
    /^multirc_missing_label\.jsonl:1: field "passage\.questions\.0\.answers\.1\.label": missing$/,
  ],
  [
    "record",
    "validation",
    "record_bad_span.jsonl",
    /^record_bad_span\.jsonl:1: field "passage\.entities\.1": span out of range of passage\.text$/,
  ],
  [
    "wsc",
    "validation",
    "wsc_bad_span.jsonl",
    /^wsc_bad_span\.jsonl:1: field "target": word 3 of the text is "that", not span2_text "he"$/,
  ],
];

Deno.test("hand-made broken files give errors naming file, line and field", () => {
  for (const [task, split, name, re] of BROKEN) {
    assert.throws(loadBroken(task, split, name), (e: unknown) => {
      assert.ok(e instanceof DataError, `${name}: ${e}`);
      assert.match(e.message, re, name);
      return true;
    });
  }
});

Deno.test("every testdata file is covered by a broken-file case", () => {
  // Files only: testdata/official/ holds well-formed files in the official layout (load_test.ts).
  const names = [...Deno.readDirSync(fileURLToPath(new URL("./testdata/", import.meta.url)))]
    .filter((e) => e.isFile).map((e) => e.name);
  assert.deepEqual(names.sort(), BROKEN.map((b) => b[2]).sort());
});

Deno.test("TSV: no quote handling, BOM stripped, CRLF tolerated, header columns required", () => {
  const t = parseTsv('\ufeffa\tb\n"x\t"y\r\n', "f.tsv", { required: ["a"] });
  assert.deepEqual(t.header, ["a", "b"]);
  assert.deepEqual(t.rows, [{ line: 2, cells: { a: '"x', b: '"y' } }]);
  assert.throws(
    () => parseTsv("a\tb\n", "f.tsv", { required: ["c"] }),
    /^DataError: f\.tsv:1: field "c": missing column/,
  );
  assert.throws(() => parseTsv("", "f.tsv"), /f\.tsv: empty file/);
  // QQP mode drops short rows, except a short final line without newline (truncation).
  const q = parseTsv("a\tb\n1\n2\t3\n", "q.tsv", { skipShortRows: true });
  assert.deepEqual([q.rows.length, q.skipped], [1, [2]]);
  assert.throws(
    () => parseTsv("a\tb\n2\t3\n1", "q.tsv", { skipShortRows: true }),
    /q\.tsv:3: .*truncated/,
  );
  // Only short rows are dropped: a row with too many columns is still an error.
  assert.throws(
    () => parseTsv("a\tb\n1\t2\t3\n2\t3\n", "q.tsv", { skipShortRows: true }),
    /q\.tsv:2: .*expected 2 tab-separated columns, found 3/,
  );
});

Deno.test("TSV: a fully empty line is skipped (as csv.DictReader does) and still counted in line numbers", () => {
  // LF and CRLF blank lines, in a file with a header: no row, the next row keeps its line number.
  const t = parseTsv("a\tb\n1\t2\n\n3\t4\r\n\r\n5\t6\n\n", "f.tsv");
  assert.deepEqual(t.rows.map((r) => [r.line, r.cells.a, r.cells.b]), [
    [2, "1", "2"],
    [4, "3", "4"],
    [6, "5", "6"],
  ]);
  assert.deepEqual(t.skipped, []);
  // A header-less file (CoLA train/dev) too.
  const c = parseTsv("x\ty\n\nz\tw", "cola.tsv", { columns: ["a", "b"] });
  assert.deepEqual(c.rows.map((r) => r.line), [1, 3]);
  // A later error names its line counting the skipped blank lines.
  assert.throws(
    () => parseTsv("a\tb\n\n\n1\t2\n3\n", "f.tsv"),
    /^DataError: f\.tsv:5: field "b": expected 2 tab-separated columns, found 1$/,
  );
  // A line of only tabs is not empty: a wrong column count is an error naming file:line.
  assert.throws(
    () => parseTsv("a\tb\n\n\t\t\n", "f.tsv"),
    /^DataError: f\.tsv:3: field "b": expected 2 tab-separated columns, found 3$/,
  );
  // Nor is a line of spaces.
  assert.throws(() => parseTsv("a\tb\n \n", "f.tsv"), /^DataError: f\.tsv:2: .*found 1$/);
  // An empty header line is no header.
  assert.throws(
    () => parseTsv("\na\tb\n1\t2\n", "f.tsv"),
    /^DataError: f\.tsv:1: empty header line/,
  );
  // QQP mode: a blank line is no short row (so a validation file with one still loads).
  const q = parseTsv("a\tb\n\n1\n2\t3\n", "q.tsv", { skipShortRows: true });
  assert.deepEqual([q.rows.map((r) => r.line), q.skipped], [[4], [3]]);
  const qqp = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n\n7\t1\t2\tA?\tB?\t1\n";
  const ex = examplesFromBytes("qqp", "validation", new TextEncoder().encode(qqp), "v.tsv");
  assert.deepEqual(ex.examples.map((e) => [e.id, e.line, e.target]), [
    ["qqp/validation/7", 3, "duplicate"],
  ]);
  assert.deepEqual([ex.rows, ex.skipped], [1, []]);
});

Deno.test("classic Mac CR line endings: the error says so, and quotes at most a clipped line", () => {
  const long = "x".repeat(5000);
  const rows = ["index\tsentence\tlabel", `0\t${long}\t1`, `1\t${long}\t0`];
  // With a header: the whole file was the header line, quoted in full (over 10,000 characters).
  assert.throws(() => parseTsv(rows.join("\r") + "\r", "cr.tsv", { required: ["label"] }), (e) => {
    assert.ok(e instanceof DataError);
    assert.equal(e.line, 1);
    assert.match(e.message, /^cr\.tsv:1: the header line holds a bare carriage return \(\\r\)/);
    assert.match(e.message, /classic Mac OS CR/);
    assert.ok(e.message.length < 400, `message of ${e.message.length} characters`);
    return true;
  });
  // Header-less (CoLA): the column-count error gets the hint.
  assert.throws(
    () => parseTsv("a\t1\t\tx\rb\t0\t*\ty\r", "cola.tsv", { columns: ["s", "l", "o", "t"] }),
    /^DataError: cola\.tsv:1: field "t": expected 4 tab-separated columns, found 7; the line holds a bare carriage return/,
  );
  // JSONL: the syntax error gets the hint.
  assert.throws(
    () => parseJsonl('{"a":1}\r{"a":2}\r', "cr.jsonl"),
    /^DataError: cr\.jsonl:1: invalid JSON: .*; the line holds a bare carriage return \(\\r\)/,
  );
  // A file of CR lines that ends with its \r is complete: the hint alone, not "truncated file?"
  // as well (before, both were given, two diagnoses of one cause).
  assert.throws(() => parseJsonl('{"a":1}\r{"a":2}\r', "cr.jsonl"), (e) => {
    assert.ok(e instanceof DataError);
    assert.doesNotMatch(e.message, /truncated/);
    assert.equal(e.message.split("carriage return").length, 2, e.message);
    return true;
  });
  assert.throws(
    () => parseTsv("a\rb\r", "cola.tsv", { columns: ["s", "l", "o", "t"] }),
    (e) => {
      assert.ok(e instanceof DataError);
      assert.equal(
        e.message,
        `cola.tsv:1: field "l": expected 4 tab-separated columns, found 1; the line holds a ` +
          `bare carriage return (\\r): if the file's line endings are classic Mac OS CR, ` +
          `convert them to \\n (e.g. tr '\\r' '\\n')`,
      );
      return true;
    },
  );
  // Without that final \r, or cut between the \r and \n of a CRLF ending, it may be truncated.
  assert.throws(
    () => parseJsonl('{"a":1}\r{"a":2', "cr.jsonl"),
    /\(truncated file\?\); the line holds a bare carriage return/,
  );
  assert.throws(
    () => parseTsv("a\tb\r\n1\t2\r\n3\r", "crlf.tsv"),
    /^DataError: crlf\.tsv:3: field "b": expected 2 tab-separated columns, found 1 \(truncated file\?\)$/,
  );
  // A missing column still names the header, clipped.
  const wide = ["a", ...Array.from({ length: 500 }, (_, i) => `column${i}`)].join("\t") + "\n";
  assert.throws(() => parseTsv(wide, "w.tsv", { required: ["label"] }), (e) => {
    assert.match(
      String(e),
      /^DataError: w\.tsv:1: field "label": missing column \(header: a \| column0 \| /,
    );
    assert.ok((e as Error).message.length < 400, `message of ${(e as Error).message.length}`);
    return true;
  });
  // CRLF is still fine.
  assert.equal(parseTsv(rows.join("\r\n") + "\r\n", "crlf.tsv").rows.length, 2);
});

Deno.test("JSONL: blank lines skipped, non-objects rejected", () => {
  assert.deepEqual(parseJsonl('{"a":1}\n\n{"a":2}', "f.jsonl").map((r) => r.line), [1, 3]);
  assert.throws(() => parseJsonl("[1]\n", "f.jsonl"), /f\.jsonl:1: expected a JSON object/);
});

Deno.test("UTF-8: valid text decodes, invalid bytes name their line", () => {
  assert.equal(decodeUtf8(new Uint8Array([0xef, 0xbb, 0xbf, 0x61]), "f"), "a");
  const bad = (bytes: number[], re: RegExp) =>
    assert.throws(() => decodeUtf8(new Uint8Array(bytes), "f"), re);
  const e9 = [0x63, 0x61, 0x66, 0xe9]; // "caf" then Latin-1 "é" (e9), which UTF-8 reads as the lead byte of three
  // A download cut inside "é" (c3 a9): the last line ends in a lead byte.
  bad(
    [0x61, 0x0a, 0x62, 0x0a, 0xc3],
    /^DataError: f:3: invalid UTF-8: the file ends inside a multi-byte character at byte 1 of the line \(c3\) \(truncated file\?\)$/,
  );
  bad(
    [0x63, 0x61, 0x66, 0xc3, 0xa9, 0x0a, 0x61, 0xe2, 0x82],
    /^DataError: f:2: .*ends inside a multi-byte character at byte 2 of the line \(e2 82\) \(truncated/,
  );
  // Cut short before a line ending is no truncated file.
  bad(
    [0x61, 0xc3, 0x0a, 0x62, 0x0a],
    /^DataError: f:1: invalid UTF-8 at byte 2 of the line \(c3\): a multi-byte character cut short$/,
  );
  // Latin-1 "café " (e9 20), an overlong "/" (c0 af), a UTF-16 surrogate (ed a0 80), ff.
  bad([...e9, 0x20, 0x0a], /^DataError: f:1: invalid UTF-8 at byte 4 of the line \(e9 20\)$/);
  bad([0x0a, 0x61, 0xc0, 0xaf], /^DataError: f:2: invalid UTF-8 at byte 2 of the line \(c0 af\)$/);
  bad(
    [0xed, 0xa0, 0x80, 0x0a],
    /^DataError: f:1: invalid UTF-8 at byte 1 of the line \(ed a0 80\)$/,
  );
  bad(
    [0x61, 0x62, 0x63, 0xff, 0x64, 0x65],
    /^DataError: f:1: invalid UTF-8 at byte 4 of the line \(ff 64 65\)$/,
  );
  // Valid 4-byte characters pass the scan (the invalid byte after them is found).
  bad(
    [0xf0, 0x9f, 0x98, 0x80, 0xff],
    /^DataError: f:1: invalid UTF-8 at byte 5 of the line \(ff\)$/,
  );
  // Whole files that are not UTF-8 text say what they are.
  bad(
    [0xff, 0xfe, 0x61, 0x00],
    /^DataError: f: invalid UTF-8: the file is UTF-16 \(little-endian byte-order mark ff fe\); re-save it as UTF-8/,
  );
  bad([0xfe, 0xff, 0x00, 0x61], /^DataError: f: invalid UTF-8: the file is UTF-16 \(big-endian/);
  bad(
    [0x1f, 0x8b, 0x08, 0x00],
    /^DataError: f: invalid UTF-8: the file is gzip-compressed \(starts with 1f 8b\); decompress it/,
  );
  // Only both bytes name the kind: ff or fe then "a", 1f (a valid control character) then 8c,
  // or "a" then 8b, is an invalid byte of line 1.
  bad([0xff, 0x61, 0x0a], /^DataError: f:1: invalid UTF-8 at byte 1 of the line \(ff 61\)$/);
  bad([0xfe, 0x61, 0x0a], /^DataError: f:1: invalid UTF-8 at byte 1 of the line \(fe 61\)$/);
  bad([0x1f, 0x8c, 0x0a], /^DataError: f:1: invalid UTF-8 at byte 2 of the line \(8c\)$/);
  bad([0x61, 0x8b, 0x0a], /^DataError: f:1: invalid UTF-8 at byte 2 of the line \(8b\)$/);
  assert.deepEqual(splitLines("a\nb"), [{ line: 1, text: "a" }, { line: 2, text: "b" }]);
});

Deno.test("UTF-8: the invalid byte named agrees with TextDecoder at every boundary of Table 3-7", () => {
  // Each lead byte at a boundary of Unicode Table 3-7 (80, bf continuation; c0, c1 never; c2..df;
  // e0 with a0..bf; ed with 80..9f; f0 with 90..bf; f4 with 80..8f; f5..ff never), then up to 3
  // bytes at the boundaries of the continuation ranges, a tab or an invalid lead, on line 2
  // after "ab", the line ended by "\n" or by the file's end. The oracle is the WHATWG decoder:
  // the first U+FFFD of a non-fatal decode starts the first ill-formed sequence (no input holds
  // ef bf bd, U+FFFD's own encoding: bd is not in the lists), and that sequence is "cut short"
  // when a streaming fatal decode of it up to the line's end returns "" without error.
  const bytesOf = (hex: string) => hex.split(" ").map((h) => parseInt(h, 16));
  const leads = bytesOf("41 80 bf c0 c1 c2 df e0 e1 ec ed ee ef f0 f1 f3 f4 f5 f8 ff");
  const next = bytesOf("09 80 8f 90 9f a0 bf c0 ff");
  const hex = (bytes: Uint8Array) =>
    [...bytes].map((b) => b.toString(16).padStart(2, "0")).join(" ");
  // Three bytes after a lead of four (f0..f7 and beyond), two after any other.
  const tails: number[][] = [[]];
  for (let len = 1; len <= 3; len++) {
    for (const t of tails.filter((t) => t.length === len - 1)) {
      for (const b of next) tails.push([...t, b]);
    }
  }
  const head = [0x78, 0x0a, 0x61, 0x62]; // "x\nab"
  let checked = 0;
  for (const lead of leads) {
    for (const tail of tails.filter((t) => t.length < 3 || lead >= 0xf0)) {
      for (const end of [[0x0a], []]) {
        const bytes = new Uint8Array([...head, lead, ...tail, ...end]);
        let want: string;
        try {
          want = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
          assert.equal(decodeUtf8(bytes, "f"), want);
          continue;
        } catch (e) {
          if (e instanceof assert.AssertionError) throw e;
        }
        const lenient = new TextDecoder().decode(bytes);
        const at = new TextEncoder().encode(lenient.slice(0, lenient.indexOf("\ufffd"))).length;
        const lineEnd = bytes.length - end.length;
        let cut = false;
        try {
          cut = new TextDecoder("utf-8", { fatal: true })
            .decode(bytes.subarray(at, lineEnd), { stream: true }) === "";
        } catch {
          // Ill-formed before the line's end: not cut short.
        }
        const where = `at byte ${at - 2 + 1} of the line (${
          hex(bytes.subarray(at, Math.min(at + 4, lineEnd)))
        })`;
        want = cut && end.length === 0
          ? `f:2: invalid UTF-8: the file ends inside a multi-byte character ${where} ` +
            "(truncated file?)"
          : `f:2: invalid UTF-8 ${where}${cut ? ": a multi-byte character cut short" : ""}`;
        assert.throws(
          () => decodeUtf8(bytes, "f"),
          (e: unknown) => {
            assert.ok(e instanceof DataError);
            assert.equal(e.message, want, hex(bytes));
            return true;
          },
        );
        checked++;
      }
    }
  }
  // Most inputs are invalid; the valid ones (c2 80, e0 a0 80, f0 90 80 80, ...) decode above.
  assert.ok(checked > 10_000, `${checked} invalid inputs checked`);
});

Deno.test("pyFloat follows Python float()", () => {
  assert.equal(pyFloat(" 3.8\n"), 3.8);
  assert.equal(pyFloat("5"), 5);
  assert.equal(pyFloat(".5"), 0.5);
  assert.equal(pyFloat("5."), 5);
  assert.equal(pyFloat("1e1"), 10);
  assert.equal(pyFloat("1_0.5"), 10.5);
  assert.equal(pyFloat("-inf"), -Infinity);
  assert.ok(Number.isNaN(pyFloat("NaN")));
  for (const bad of ["", " ", "3.8.1", "abc", "1__0", "_1", "0x10", "3,8", "."]) {
    assert.equal(pyFloat(bad), undefined, JSON.stringify(bad));
  }
});

Deno.test("pyFloat: Unicode digits and spaces as CPython's float(), not str.strip()", () => {
  // Each value printed by CPython 3.11 float(): non-ASCII decimal digits count as digits,
  // non-ASCII whitespace is stripped, but \x1c-\x1f (whitespace to str.strip()) are not.
  const ok: Array<[string, number]> = [
    ["\uff13.\uff15", 3.5], // fullwidth
    ["\u0661\u0662", 12], // Arabic-Indic
    ["\u{1D7D7}", 9], // mathematical bold nine
    ["\u{1D7D9}.5", 1.5], // mathematical double-struck one (second run of the block)
    ["\u0663_\u0664", 34],
    ["\u3000 2.5\u00a0", 2.5],
    ["\x85-1e1_0", -1e10],
  ];
  for (const [s, v] of ok) assert.equal(pyFloat(s), v, JSON.stringify(s));
  for (const bad of ["\x1c1", "1\x1f", "1\u200b"]) {
    assert.equal(pyFloat(bad), undefined, JSON.stringify(bad));
  }
});

Deno.test("parseDpr: four stripped lines and a blank one per record, as TFDS reads them", () => {
  const text = "  The bee landed on the flower because it had pollen. \n it\n" +
    "The bee , the flower\nthe flower\n\n" +
    "Sam and Jo Ann met; she waved.\nshe\nSam,Jo Ann\nJo Ann\n";
  const recs = parseDpr(text, "d.txt");
  assert.deepEqual(recs, [
    {
      line: 1,
      sentence: "The bee landed on the flower because it had pollen.",
      pronoun: "it",
      candidates: ["The bee", "the flower"],
      label: 1,
    },
    // The last record may end the file without its blank line; a candidate may hold spaces.
    {
      line: 6,
      sentence: "Sam and Jo Ann met; she waved.",
      pronoun: "she",
      candidates: ["Sam", "Jo Ann"],
      label: 1,
    },
  ]);
  // CRLF line ends read the same (Python's strip removes the \r); reading stops at an empty
  // sentence line, blank lines after it are fine.
  assert.deepEqual(parseDpr(text.replaceAll("\n", "\r\n") + "\r\n\r\n", "d.txt"), recs);
  assert.deepEqual(parseDpr("", "d.txt"), []);
});

Deno.test("parseDpr: a bad record is an error naming the file, its line and what is wrong", () => {
  const rec = (s: string, p: string, c: string, a: string) => `${s}\n${p}\n${c}\n${a}\n\n`;
  const ok = rec("A hit B because he was angry.", "he", "A,B", "A");
  const fails = (text: string, re: RegExp) => {
    assert.throws(() => parseDpr(text, "super_glue/DPR/train.c.txt"), (e: unknown) => {
      assert.ok(e instanceof DataError, String(e));
      assert.match(e.message, re);
      return true;
    });
  };
  fails(
    ok + rec("C met D and she left.", "she", "C, D", "E"),
    /^super_glue\/DPR\/train\.c\.txt:9: field "correct antecedent": "E" is not one of the candidates "C", "D" \(line 8\)$/,
  );
  // A final record cut short by the end of the file names its first line.
  fails(
    ok + "C met D and she left.\nshe\nC,D\n",
    /train\.c\.txt:6: truncated record: the file ends after 3 of its 4 lines/,
  );
  fails(ok + "C met D and she left.\n", /:6: truncated record: the file ends after 1 of its 4/);
  fails(
    rec("A hit B.", "he", "A,B,C", "A"),
    /:3: field "candidates": expected two non-empty candidate antecedents/,
  );
  fails(rec("A hit B.", "he", "A", "A"), /:3: field "candidates"/);
  fails(rec("A hit B.", "  ", "A,B", "A"), /:2: field "pronoun": empty/);
  // Out of step (a record of five lines) and records after the blank line that ends them.
  fails("A hit B.\nhe\nA,B\nA\nextra\n", /:5: expected the blank line that ends a record/);
  fails(ok + "\n\n" + ok, /:8: text after the blank line 6 that ends the records/);
});
