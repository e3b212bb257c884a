import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { join } from "node:path";
import { CheckpointError } from "./checkpoint_error.ts";
import { sharedPath } from "./shared_dir.ts";
import { MAX_TOKENIZER_BYTES, T5_UNK_SURFACE, T5Tokenizer, truncateWithEos } from "./tokenizer.ts";
import { buildCharsmap, SMALL_MAP } from "./precompiled_testing.ts";
import { convertSpieceFolder, sentencePieceToTokenizerJson, withSentinels } from "./spm.ts";

const DIR = sharedPath("fixtures", "tokenizer", "unigram-glue-4k");

interface Case {
  text: string;
  ids: number[];
  tokens: string[];
  decoded: string;
}

/**
 * A matcher for `assert.throws` and `assert.rejects`: a {@link CheckpointError} whose `file` and
 * `field` are the ones given and whose message matches `message`.
 */
function checkpointError(file: string, field: string | undefined, message: RegExp) {
  return (e: unknown): true => {
    assert.ok(e instanceof CheckpointError, `a CheckpointError, got ${String(e)}`);
    assert.equal(e.file, file, "file");
    assert.equal(e.field, field, "field");
    assert.match(e.message, message);
    return true;
  };
}

const REF: { cases: Case[] } = JSON.parse(await Deno.readTextFile(join(DIR, "reference.json")));

Deno.test("ids, tokens and decoded text match the Rust tokenizers on all reference cases", async () => {
  const tok = await T5Tokenizer.fromFile(join(DIR, "tokenizer.json"));
  assert.equal(REF.cases.length, 47);
  for (const c of REF.cases) {
    const label = JSON.stringify(c.text);
    assert.deepEqual(tok.encode(c.text), c.ids, `ids of ${label}`);
    const e = tok.encodeWithTokens(c.text);
    assert.deepEqual(e.ids, c.ids, `ids of ${label}`);
    assert.deepEqual(e.tokens, c.tokens, `tokens of ${label}`);
    assert.equal(tok.decode(c.ids), c.decoded, `decoded ${label}`);
    assert.equal(c.ids[c.ids.length - 1], tok.eosTokenId, "ends with </s>");
    assert.deepEqual(tok.encodeNoEos(c.text), c.ids.slice(0, -1));
  }
});

Deno.test("vocabulary, special ids and decode options", async () => {
  const tok = await T5Tokenizer.fromFile(DIR); // a folder works too
  assert.equal(tok.vocabSize, 4000);
  assert.equal(tok.tokenToId("<pad>"), 0);
  assert.equal(tok.tokenToId("</s>"), 1);
  assert.equal(tok.tokenToId("<unk>"), 2);
  assert.equal(tok.eosTokenId, 1);
  assert.equal(tok.padTokenId, 0);
  assert.equal(tok.tokenToId("no-such-piece"), undefined);
  assert.equal(tok.idToToken(tok.tokenToId("▁the")!), "▁the");
  const ids = tok.encode("it 's good , really");
  assert.equal(tok.decode(ids), "it 's good , really");
  assert.equal(tok.decode(ids, { skipSpecialTokens: false }), "it 's good , really</s>");
  assert.equal(tok.decode(ids, { cleanUpTokenizationSpaces: true }), "it's good, really");
  assert.equal(tok.decode([0, ...ids, 0, 0]), "it 's good , really", "padding skipped");
});

Deno.test("a tokenizer.json without a post-processor still gets </s> appended", async () => {
  const json = JSON.parse(await Deno.readTextFile(join(DIR, "tokenizer.json")));
  for (const variant of ["null", "absent"]) {
    if (variant === "null") json.post_processor = null;
    else delete json.post_processor;
    const tok = T5Tokenizer.fromJson(json, "no-post.json");
    for (const c of REF.cases.slice(0, 5)) {
      assert.deepEqual(tok.encode(c.text), c.ids, variant);
      assert.deepEqual(tok.encodeWithTokens(c.text).tokens, c.tokens, variant);
    }
  }
});

Deno.test("malformed tokenizer files give CheckpointErrors naming the file and the field", async () => {
  const tmp = await Deno.makeTempDir();
  const p = join(tmp, "tokenizer.json");
  try {
    await assert.rejects(
      T5Tokenizer.fromFile(p),
      checkpointError(p, undefined, /tokenizer\.json: tokenizer file not found/),
    );
    await assert.rejects(
      T5Tokenizer.fromFile(join(tmp, "absent")),
      checkpointError(join(tmp, "absent"), undefined, /absent: tokenizer file not found/),
    );
    await Deno.mkdir(join(tmp, "dir", "tokenizer.json"), { recursive: true });
    const unreadable = join(tmp, "dir", "tokenizer.json");
    await assert.rejects(
      // A folder's tokenizer.json that is a folder itself.
      T5Tokenizer.fromFile(join(tmp, "dir")),
      checkpointError(unreadable, undefined, /tokenizer\.json: cannot read tokenizer: /),
    );
    await Deno.writeTextFile(p, "{ nope");
    await assert.rejects(
      T5Tokenizer.fromFile(p),
      checkpointError(p, undefined, new RegExp(`^${p}:1:3: invalid JSON`)),
    );
    // A SentencePiece model given for a tokenizer.json: said to be one, by its name or bytes.
    const spm = join(tmp, "spiece.model");
    await Deno.writeFile(spm, new Uint8Array([0x0a, 0x05, 0x0a, 0x01, 0x61, 0x15, 0, 0, 0, 0]));
    for (const f of [spm, p]) {
      if (f === p) await Deno.copyFile(spm, p); // by its bytes alone
      await assert.rejects(
        T5Tokenizer.fromFile(f),
        checkpointError(
          f,
          undefined,
          /: invalid JSON: .*; is it a SentencePiece model\? this takes a tokenizer\.json /,
        ),
      );
    }
    await Deno.writeTextFile(p, JSON.stringify({ version: "1.0" }));
    await assert.rejects(
      T5Tokenizer.fromFile(p),
      checkpointError(
        p,
        "model",
        /tokenizer\.json: invalid tokenizer: missing or invalid field "model"/,
      ),
    );
    await Deno.writeTextFile(p, JSON.stringify({ model: { vocab: [] } }));
    await assert.rejects(
      T5Tokenizer.fromFile(p),
      checkpointError(p, "model.type", /invalid tokenizer: missing field "model\.type"/),
    );
    await Deno.writeTextFile(p, JSON.stringify({ model: { type: "Unigram", vocab: "x" } }));
    await assert.rejects(
      T5Tokenizer.fromFile(p),
      checkpointError(p, "model.vocab", /invalid tokenizer: field "model\.vocab"/),
    );
    await Deno.writeTextFile(
      p,
      JSON.stringify({ model: { type: "Unigram", vocab: [["a", 0], 1] } }),
    );
    await assert.rejects(
      T5Tokenizer.fromFile(p),
      checkpointError(p, "model.vocab[1]", /invalid tokenizer: field "model\.vocab\[1\]"/),
    );
    const json = JSON.parse(await Deno.readTextFile(join(DIR, "tokenizer.json")));
    await Deno.writeTextFile(p, JSON.stringify({ ...json, added_tokens: {} }));
    await assert.rejects(
      T5Tokenizer.fromFile(p),
      checkpointError(
        p,
        "added_tokens",
        /invalid tokenizer: field "added_tokens" must be an array/,
      ),
    );
    await Deno.writeTextFile(p, JSON.stringify({ ...json, normalizer: { type: "Precompiled" } }));
    await assert.rejects(
      T5Tokenizer.fromFile(p),
      checkpointError(
        p,
        "normalizer.precompiled_charsmap",
        /invalid tokenizer: field "normalizer\.precompiled_charsmap" must be a base64 string/,
      ),
    );
    await Deno.writeTextFile(
      p,
      JSON.stringify({
        ...json,
        added_tokens: json.added_tokens.filter((t: { content: string }) => t.content !== "</s>"),
        model: {
          ...json.model,
          vocab: json.model.vocab.filter(([piece]: [string, number]) => piece !== "</s>"),
        },
      }),
    );
    await assert.rejects(
      T5Tokenizer.fromFile(p),
      checkpointError(p, undefined, /invalid tokenizer: the vocabulary has no "<\/s>" token/),
    );
    // The library's own refusal names no field.
    json.normalizer = { type: "Weird" };
    await Deno.writeTextFile(p, JSON.stringify(json));
    await assert.rejects(
      T5Tokenizer.fromFile(p),
      checkpointError(p, undefined, /tokenizer\.json: invalid tokenizer: .*Weird/),
    );
    // A model type the library does not implement was built as a Unigram model, unchecked.
    for (const type of ["Unigramm", "unigram", "WordLevel"]) {
      const j = JSON.parse(await Deno.readTextFile(join(DIR, "tokenizer.json")));
      j.model.type = type;
      assert.throws(
        () => T5Tokenizer.fromJson(j, "t.json"),
        checkpointError("t.json", "model.type", /./),
      );
      assert.throws(
        () => T5Tokenizer.fromJson(j, "t.json"),
        new RegExp(
          `^CheckpointError: t\\.json: invalid tokenizer: field "model\\.type" must be one of Unigram, BPE, ` +
            `WordPiece \\(T5's is Unigram\\), got "${type}"$`,
        ),
      );
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("model.unk_id: an id that is no index is refused; without one, an unknown piece is an error, never a null id", async () => {
  const json = JSON.parse(await Deno.readTextFile(join(DIR, "tokenizer.json")));
  // The JS library took -1, 1.5 and "2" and handed them out as the id of every unknown piece.
  for (const bad of [-1, 1.5, "2", 4000]) {
    assert.throws(
      () => T5Tokenizer.fromJson({ ...json, model: { ...json.model, unk_id: bad } }, "bad.json"),
      checkpointError("bad.json", "model.unk_id", /./),
    );
    assert.throws(
      () => T5Tokenizer.fromJson({ ...json, model: { ...json.model, unk_id: bad } }, "bad.json"),
      new RegExp(
        `^CheckpointError: bad\\.json: invalid tokenizer: field "model\\.unk_id" must be an index into ` +
          `"model\\.vocab" \\(an integer in 0\\.\\.3999\\) or null, got ${
            JSON.stringify(bad).replace(".", "\\.")
          }$`,
      ),
      String(bad),
    );
  }
  for (const variant of ["null", "absent"]) {
    const model = { ...json.model, unk_id: null };
    if (variant === "absent") delete model.unk_id;
    const tok = T5Tokenizer.fromJson({ ...json, model }, "no-unk.json");
    // Known text is unchanged; the library gave "日本" the id null (absent: "日" and "本" each
    // undefined), which Rust refuses.
    for (const c of REF.cases.filter((c) => !c.ids.includes(2))) {
      assert.deepEqual(tok.encode(c.text), c.ids, `${variant}: ${JSON.stringify(c.text)}`);
    }
    const calls = [tok.encode, tok.encodeNoEos, tok.encodeWithTokens].map((f) => f.bind(tok));
    for (const encode of calls) {
      assert.throws(
        () => encode("a 日本"),
        /^Error: no-unk\.json: cannot encode the piece "日本?": it is not in the vocabulary and "model\.unk_id" is null or absent/,
        variant,
      );
    }
  }
});

Deno.test("added_tokens: an id that is no integer in range, or an entry without content, is refused naming the field (h382)", async () => {
  const json = JSON.parse(await Deno.readTextFile(join(DIR, "tokenizer.json")));
  const pieces = json.model.vocab.length as number;
  const withAdded = (extra: unknown) => ({
    ...json,
    added_tokens: [...(json.added_tokens ?? []), extra],
  });
  const n = (json.added_tokens ?? []).length + 1;
  const limit = pieces + n;
  const token = (id: unknown) => ({ id, content: "<big>", special: true });
  // 50.5 and "50" were taken as id 50 (another piece's row); -5 and 1e15 failed only at the
  // first batch; an id far past the vocabulary sized a random init's embedding by it.
  for (const id of [50.5, "50", -5, 1e15, limit]) {
    assert.throws(
      () => T5Tokenizer.fromJson(withAdded(token(id)), "bad.json"),
      checkpointError("bad.json", `added_tokens[${n - 1}].id`, /./),
      String(id),
    );
  }
  assert.throws(
    () => T5Tokenizer.fromJson(withAdded(token(1e15)), "bad.json"),
    new RegExp(
      `^CheckpointError: bad\\.json: invalid tokenizer: field "added_tokens\\[${n - 1}\\]\\.id" ` +
        `must be an integer in 0\\.\\.${
          limit - 1
        } \\(the model's ${pieces} pieces and ${n} added ` +
        `tokens\\), got 1000000000000000$`,
    ),
  );
  for (
    const [entry, field] of [
      [7, `added_tokens[${n - 1}]`],
      [{ id: 3 }, `added_tokens[${n - 1}].content`],
      [{ id: 3, content: "" }, `added_tokens[${n - 1}].content`],
      [{ id: 3, content: ["x".repeat(5000)] }, `added_tokens[${n - 1}].content`],
    ] as const
  ) {
    assert.throws(
      () => T5Tokenizer.fromJson(withAdded(entry), "bad.json"),
      checkpointError("bad.json", field, /^.{1,220}$/),
    );
  }
  // The last id in range, right after the pieces, loads.
  const ok = T5Tokenizer.fromJson(withAdded(token(pieces)), "ok.json");
  assert.equal(ok.tokenToId("<big>"), pieces);
});

Deno.test("T5Tokenizer.decode() with unknownAs writes <unk>, sentinels and unknown ids as T5 does, not dropped", async () => {
  const file = join(DIR, "tokenizer.json");
  const json = JSON.parse(await Deno.readTextFile(file));
  const tok = T5Tokenizer.fromJson(withSentinels(json, file), file);
  const label = tok.encodeNoEos("entailment");
  const sentinel = tok.tokenToId("<extra_id_0>")!;
  assert.ok(sentinel >= 4000, "appended after the pieces");
  const t5 = { unknownAs: T5_UNK_SURFACE };
  // Before, each of these decoded as the label word itself.
  for (
    const [ids, want] of [
      [[2, ...label], " \u2047 entailment"],
      [[sentinel, ...label], " \u2047 entailment"],
      [[...label, 2], "entailment \u2047 "],
      [[0, sentinel, 2, ...label], " \u2047  \u2047 entailment"],
      [[tok.vocabSize + 5, ...label], " \u2047 entailment"],
    ] as const
  ) {
    assert.equal(tok.decode(ids, t5), want, JSON.stringify(ids));
    assert.equal(tok.decode(ids), "entailment", "without unknownAs: dropped, as before");
  }
  // <pad> and </s> still go; a generation of the label alone is the label.
  assert.equal(tok.decode([0, ...label, 1], t5), "entailment");
  assert.equal(tok.decode([], t5), "");
  // Without skipping specials nothing is replaced.
  assert.equal(tok.decode([2, ...label], { ...t5, skipSpecialTokens: false }), "<unk> entailment");
});

Deno.test("T5Tokenizer.decode() of no ids is the empty string (an empty greedy decode)", async () => {
  const tok = await T5Tokenizer.fromFile(
    sharedPath("fixtures/tokenizer/unigram-glue-4k/tokenizer.json"),
  );
  assert.equal(tok.decode([]), "");
  assert.equal(tok.decode([1]), "");
});

Deno.test("truncateWithEos() drops a trailing EOS, keeps maxLength - 1 ids, then appends EOS", async () => {
  // A trailing EOS is removed before the cut, so an encoding that fits is returned as it is
  // (kept, it would end in two EOS); an EOS elsewhere, or another id, is text and stays.
  assert.deepEqual(truncateWithEos([5, 6, 1], 10, 1), [5, 6, 1]);
  assert.deepEqual(truncateWithEos([5, 6, 7, 1], 4, 1), [5, 6, 7, 1]);
  assert.deepEqual(truncateWithEos([5, 1, 6, 1], 10, 1), [5, 1, 6, 1]);
  assert.deepEqual(truncateWithEos([5, 1], 10, 9), [5, 1, 9]);
  // Too long: the first maxLength - 1 ids, then EOS (T5's append_eos_after_trim).
  assert.deepEqual(truncateWithEos([5, 6, 7, 8, 1], 3, 1), [5, 6, 1]);
  assert.deepEqual(truncateWithEos([5, 6, 7, 8], 3, 1), [5, 6, 1]);
  assert.deepEqual(truncateWithEos([5, 6, 1], 1, 1), [1]);
  assert.deepEqual(truncateWithEos([], 2, 1), [1]);
  const ids = [5, 6, 7, 1];
  assert.notEqual(truncateWithEos(ids, 10, 1), ids, "a new array");
  assert.deepEqual(ids, [5, 6, 7, 1], "the input is left as it was");
  for (const bad of [0, -1, 2.5, NaN]) {
    assert.throws(
      () => truncateWithEos([5, 1], bad, 1),
      /truncateWithEos: maxLength must be a positive integer, got/,
    );
  }
  // On a real encoding (ends with </s>): unchanged when it fits, cut to the length otherwise.
  const tok = await T5Tokenizer.fromFile(join(DIR, "tokenizer.json"));
  const enc = tok.encode("the movie was surprisingly good .");
  assert.ok(enc.length > 4 && enc[enc.length - 1] === tok.eosTokenId);
  assert.deepEqual(truncateWithEos(enc, enc.length, tok.eosTokenId), enc);
  assert.deepEqual(truncateWithEos(enc, 4, tok.eosTokenId), [...enc.slice(0, 3), tok.eosTokenId]);
});

Deno.test("Unigram byte_fallback: a piece the vocabulary lacks becomes its UTF-8 byte pieces", async () => {
  const json = JSON.parse(await Deno.readTextFile(join(DIR, "tokenizer.json")));
  const hex = (b: number) => `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`;
  // Byte pieces after the vocabulary, all but <0xF0> (the first byte of every 4-byte character).
  const byteId = new Map<number, number>();
  for (let b = 0; b < 256; b++) {
    if (b === 0xf0) continue;
    byteId.set(b, json.model.vocab.length);
    json.model.vocab.push([hex(b), 0]);
  }
  const plain = T5Tokenizer.fromJson(structuredClone(json), "plain.json");
  json.model.byte_fallback = true;
  json.decoder = { type: "Sequence", decoders: [{ type: "ByteFallback" }, json.decoder] };
  const tok = T5Tokenizer.fromJson(json, "byte-fallback.json");
  const space = tok.tokenToId("▁")!;
  const bytesOf = (s: string) => [...new TextEncoder().encode(s)];
  // What the Rust library's Unigram::tokenize gives: the unknown run "日本" (one fused unknown
  // piece) becomes the ids of <0xE6> <0x97> <0xA5> <0xE6> <0x9C> <0xAC>.
  assert.deepEqual(plain.encode("日本"), [space, 2, 1], "without byte_fallback: <unk>");
  const e = tok.encodeWithTokens("日本");
  assert.deepEqual(e.ids, [space, ...bytesOf("日本").map((b) => byteId.get(b)!), 1]);
  assert.deepEqual(e.tokens, ["▁", ...bytesOf("日本").map(hex), "</s>"]);
  assert.deepEqual(tok.encodeNoEos("日本"), e.ids.slice(0, -1));
  assert.equal(tok.decode(e.ids), "日本");
  // A byte below 0x10 is spelled with two hex digits too: a tab is <0x09>, never <0x9>.
  const tab = tok.encodeWithTokens("x\tb");
  assert.ok(tab.tokens.includes("<0x09>"), JSON.stringify(tab.tokens));
  assert.ok(tab.ids.includes(byteId.get(0x09)!), JSON.stringify(tab.ids));
  assert.ok(!tab.ids.includes(2), "the tab is not <unk>");
  assert.equal(tok.decode(tab.ids), "x\tb");
  // A byte piece missing (<0xF0> of 😀): the piece stays <unk>, as in Rust.
  assert.deepEqual(tok.encode("😀"), [space, 2, 1]);
  // Known text and special tokens are untouched.
  for (const c of REF.cases.filter((c) => !c.ids.includes(2))) {
    assert.deepEqual(tok.encode(c.text), c.ids, JSON.stringify(c.text));
  }
  assert.deepEqual(tok.encode("a <unk>"), plain.encode("a <unk>"));
  // Without an unknown id, byte fallback still applies, and a piece it cannot spell is an error.
  const noUnk = T5Tokenizer.fromJson({ ...json, model: { ...json.model, unk_id: null } }, "nu");
  assert.deepEqual(noUnk.encode("日本"), e.ids);
  assert.throws(() => noUnk.encode("😀"), /^Error: nu: cannot encode the piece "😀"/);
});

Deno.test("a Precompiled normalizer applies its charsmap, as the Rust library does", async () => {
  // The library behind T5Tokenizer ignored the charsmap (NFKC plus a fixed list of spaces):
  // "q" stayed "q" under a map sending it to "k", and U+200D became a space, splitting the
  // emoji sequence. Expected ids and tokens: Rust tokenizers 0.23.2 on this same JSON.
  const json = JSON.parse(await Deno.readTextFile(join(DIR, "tokenizer.json")));
  const charsmap = Buffer.from(buildCharsmap(SMALL_MAP)).toString("base64");
  json.normalizer = {
    type: "Sequence",
    normalizers: [
      { type: "Precompiled", precompiled_charsmap: charsmap },
      { type: "Replace", pattern: { Regex: " {2,}" }, content: " " },
    ],
  };
  const tok = T5Tokenizer.fromJson(json, "precompiled.json");
  const rust: [string, number[], string[]][] = [
    [
      "quite a queen\u00a0\u00a0is \ufb01ne",
      [3, 67, 52, 85, 13, 8, 3, 67, 52, 13, 63, 19, 859, 1],
      [
        "▁",
        "k",
        "u",
        "it",
        "e",
        "▁a",
        "▁",
        "k",
        "u",
        "e",
        "en",
        "▁is",
        "▁fine",
        "</s>",
      ],
    ],
    ["cafe\u0301 \u2126", [241, 44, 1461, 3, 2, 1], ["▁ca", "f", "é", "▁", "Ω", "</s>"]],
    ["emoji 👨\u200d👩\u200d👧 test", [3, 13, 318, 428, 28, 3, 2, 855, 1], [
      "▁",
      "e",
      "mo",
      "j",
      "i",
      "▁",
      "👨\u200d👩\u200d👧",
      "▁test",
      "</s>",
    ]],
    ["the\u3000end", [5, 283, 1], ["▁the", "▁end", "</s>"]],
  ];
  for (const [text, ids, tokens] of rust) {
    const e = tok.encodeWithTokens(text);
    assert.deepEqual(e.ids, ids, JSON.stringify(text));
    assert.deepEqual(e.tokens, tokens, JSON.stringify(text));
  }
  json.normalizer.normalizers[0].precompiled_charsmap = "AAAAAA==";
  assert.throws(
    () => T5Tokenizer.fromJson(json, "bad.json"),
    /^CheckpointError: bad\.json: invalid tokenizer: field "normalizer\.normalizers\[0\]\.precompiled_charsmap": precompiled_charsmap declares a trie of 0 bytes/,
  );
  assert.throws(
    () => T5Tokenizer.fromJson(json, "bad.json"),
    checkpointError("bad.json", "normalizer.normalizers[0].precompiled_charsmap", /./),
  );
});

Deno.test("vocabSize is the highest id + 1: a string at two ids and an added token past the vocabulary count", () => {
  // A spiece.model with a user-defined "<extra_id_0>" piece (id 6), converted as transformers'
  // T5Converter does: the pieces, then the sentinels <extra_id_1> (8) and <extra_id_0> (9). The
  // string is at ids 6 and 9 (encoding gives 9), so a model needs 10 embedding rows; counting
  // distinct strings said 9, and a 9-row model passed checkTokenizerFits.
  const piece = (p: string, score: number, type: number) => ({ piece: p, score, type });
  const model = {
    pieces: [
      piece("<pad>", 0, 3),
      piece("</s>", 0, 3),
      piece("<unk>", 0, 2),
      piece("\u2581", -2, 1),
      piece("x", -3, 1),
      piece("y", -3, 1),
      piece("<extra_id_0>", 0, 4),
      piece("z", -3, 1),
    ],
    precompiledCharsmap: new Uint8Array(),
  };
  const json = sentencePieceToTokenizerJson(model, "dup.model", 2);
  const tok = T5Tokenizer.fromJson(json, "dup");
  assert.equal(tok.idToToken(6), "<extra_id_0>");
  assert.equal(tok.tokenToId("<extra_id_0>"), 9);
  assert.equal(tok.vocabSize, 10);
  const ids = tok.encode("x <extra_id_0> z");
  assert.deepEqual(ids, [3, 4, 3, 9, 3, 7, 1]);
  assert.ok(ids.every((id) => id < tok.vocabSize));

  // An added token whose id lies past the model's vocabulary (ids 10 and 11 unused): 13 ids.
  const added = json.added_tokens as Record<string, unknown>[];
  const past = { ...added[added.length - 1], id: 12, content: "<sep>" };
  const wide = T5Tokenizer.fromJson({ ...json, added_tokens: [...added, past] }, "wide");
  assert.equal(wide.tokenToId("<sep>"), 12);
  assert.equal(wide.vocabSize, 13);
  assert.deepEqual(wide.encode("x<sep>"), [3, 4, 12, 1]);
});

Deno.test("vocabSize is the highest id + 1 also when two strings share an id (a WordPiece vocab)", () => {
  // The library sizes a WordPiece or BPE model's id -> string table by its number of strings (5
  // here) and fills it by id, so "a" and "b" at id 3 leave id 4 empty: ids 0..3, 4 rows needed.
  // Counting the table's length (or the strings) said 5.
  const json = {
    model: {
      type: "WordPiece",
      vocab: { "<pad>": 0, "</s>": 1, "[UNK]": 2, a: 3, b: 3 },
      unk_token: "[UNK]",
      continuing_subword_prefix: "##",
      max_input_chars_per_word: 100,
    },
    pre_tokenizer: { type: "WhitespaceSplit" },
    added_tokens: [],
  };
  const tok = T5Tokenizer.fromJson(json, "shared-id");
  assert.equal(tok.vocabSize, 4);
  assert.deepEqual(tok.encode("a b"), [3, 3, 1]);
});

Deno.test("a tokenizer file over 256 MiB is refused before it is read, naming it (h382)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // Sparse files: no disk or memory spent.
    for (const name of ["tokenizer.json", "spiece.model"]) {
      const file = join(dir, name);
      await Deno.writeTextFile(file, "{}");
      await Deno.truncate(file, MAX_TOKENIZER_BYTES + 1);
    }
    const want = (file: string) =>
      checkpointError(
        file,
        undefined,
        new RegExp(
          `^${file.replaceAll(".", "\\.")}: ${
            MAX_TOKENIZER_BYTES + 1
          } bytes, more than ${MAX_TOKENIZER_BYTES} \\(256 MiB\\): no T5 tokenizer comes near it`,
        ),
      );
    await assert.rejects(T5Tokenizer.fromFile(dir), want(join(dir, "tokenizer.json")));
    await assert.rejects(convertSpieceFolder(dir), want(join(dir, "spiece.model")));
    // At the bound: read (and refused for what it holds, not its size).
    await Deno.truncate(join(dir, "tokenizer.json"), 2);
    await assert.rejects(T5Tokenizer.fromFile(dir), (e: Error) => !/256 MiB/.test(e.message));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
