import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { PrecompiledCharsmap } from "./precompiled.ts";
import { buildCharsmap, SMALL_MAP } from "./precompiled_testing.ts";

/** normalizeString() of the Rust tokenizers 0.23.2 Precompiled normalizer on SMALL_MAP. */
const RUST_SMALL: [string, string][] = [
  ["\ufb01ne\u00a0day", "fine day"],
  ["cafe\u0301 e\u0301\u0301", "caf\u00e9 \u00e9"],
  ["q\u0301 qu\u0301", "k ku\u0301"],
  ["q\u0301\u0301\u0301 x", "k\u0301\u0301\u0301 x"],
  [
    "\ud83d\udc68\u200d\ud83d\udc69\u200d\ud83d\udc67 a\u3000b",
    "\ud83d\udc68\u200d\ud83d\udc69\u200d\ud83d\udc67 a b",
  ],
  ["\u2126 \u0001x\r\nq", "\u03a9 x\r\nk"],
  ["", ""],
];

Deno.test("PrecompiledCharsmap.normalize() gives the Rust library's output (clusters, prefixes)", () => {
  const cm = new PrecompiledCharsmap(buildCharsmap(SMALL_MAP), "small");
  for (const [text, want] of RUST_SMALL) {
    assert.equal(cm.normalize(text), want, JSON.stringify(text));
  }
  const b64 = Buffer.from(buildCharsmap(SMALL_MAP)).toString("base64");
  assert.equal(PrecompiledCharsmap.fromBase64(b64, "small").normalize("\ufb01 q"), "fi k");
});

Deno.test("a malformed precompiled_charsmap is refused, naming where it is", () => {
  const good = buildCharsmap(SMALL_MAP);
  const cases: [Uint8Array, RegExp][] = [
    [new Uint8Array(0), /^Error: t\.json: field: precompiled_charsmap has 0 bytes/],
    [
      good.slice(0, good.length - 400),
      /^Error: t\.json: field: precompiled_charsmap declares a trie/,
    ],
    [new Uint8Array([6, 0, 0, 0, 1, 2, 3, 4, 5, 6]), /declares a trie of 6 bytes/],
    [new Uint8Array([4, 0, 0, 0, 0, 0, 0, 0, 0xff, 0]), /replacement strings are not UTF-8/],
  ];
  for (const [bytes, re] of cases) {
    assert.throws(() => new PrecompiledCharsmap(bytes, "t.json: field"), re);
  }
  assert.throws(
    () => PrecompiledCharsmap.fromBase64("%%%", "t.json: f"),
    /t\.json: f: .*not base64/,
  );
});

Deno.test("PrecompiledCharsmap: CR LF is one cluster on the ASCII path too; replacements of any length", () => {
  // A map with a rule for the cluster CR LF and replacements of 6 and 12 UTF-8 bytes.
  const cm = new PrecompiledCharsmap(
    buildCharsmap({ "\r\n": "\n", "\u337b": "\u5e73\u6210", "\u3300": "\u30a2\u30d1\u30fc\u30c8" }),
    "crlf",
  );
  // ASCII text (no segmenter) and text with a non-ASCII character (segmented) agree.
  assert.equal(cm.normalize("a\r\nb\rc\nd"), "a\nb\rc\nd");
  assert.equal(cm.normalize("\u00e9\r\nb"), "\u00e9\nb");
  assert.equal(cm.normalize("\u337b \u3300."), "\u5e73\u6210 \u30a2\u30d1\u30fc\u30c8.");
});
