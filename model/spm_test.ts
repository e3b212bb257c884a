import { deepEqual, equal, match, ok, rejects, throws } from "node:assert/strict";
import { Tokenizer } from "@huggingface/tokenizers";
import { isAbsolute, join, relative } from "node:path";
import {
  convertSpieceFolder,
  NUM_SENTINELS,
  parseSentencePieceModel,
  sentencePieceToTokenizerJson,
  t5TokenizerConfig,
  trainSentencePiece,
  withSentinels,
} from "./spm.ts";
import { CheckpointError } from "./checkpoint_error.ts";
import { inTempDir } from "./fs_testing.ts";
import { sharedPath } from "./shared_dir.ts";
import { HAS_SPM, spmEncode, trainTinySpiece } from "./spm_testing.ts";
import { T5Tokenizer } from "./tokenizer.ts";

/**
 * A matcher for `throws` and `rejects`: a {@link CheckpointError} whose `file` and `field` are
 * the ones given and whose message matches `message`.
 */
function checkpointError(file: string, field: string | undefined, message: RegExp) {
  return (e: unknown): true => {
    ok(e instanceof CheckpointError, `a CheckpointError, got ${String(e)}`);
    equal(e.file, file, "file");
    equal(e.field, field, "field");
    match(e.message, message);
    return true;
  };
}

const hasSpm = await new Deno.Command("spm_encode", {
  args: ["--help"],
  stdout: "null",
  stderr: "null",
})
  .output().then(() => true, () => false);

async function corpus(dir: string): Promise<string> {
  // Sentences from the SST-2 and RTE train files of the offline mirror (column text only).
  const lines: string[] = [];
  const sst = await Deno.readTextFile(sharedPath("data/glue/SST-2/train.tsv"));
  for (const l of sst.split("\n").slice(1, 4001)) lines.push(l.split("\t")[0] ?? "");
  const rte = await Deno.readTextFile(sharedPath("data/glue/RTE/train.tsv"));
  for (const l of rte.split("\n").slice(1, 800)) lines.push(...l.split("\t").slice(1, 3));
  const path = `${dir}/corpus.txt`;
  await Deno.writeTextFile(path, lines.join("\n"));
  return path;
}

/** A test of `spm_train`/`spm_encode` (ignored where they are not installed) in a temporary folder. */
function spmTest(name: string, body: (dir: string) => Promise<void>): void {
  Deno.test({ name, ignore: !hasSpm, fn: () => inTempDir(body) });
}

/** A tokenizer.json's added tokens as `[id, content, special]` triples. */
function addedTokens(json: Record<string, unknown>): [number, string, boolean][] {
  const added = json.added_tokens as { id: number; content: string; special: boolean }[];
  return added.map((t) => [t.id, t.content, t.special]);
}

spmTest(
  "trainSentencePiece() gives a T5-layout tokenizer.json that encodes as spm_encode does",
  async (dir) => {
    const text = await corpus(dir);
    const path = await trainSentencePiece([text], { vocabSize: 1100, outDir: `${dir}/tok` });
    const json = JSON.parse(await Deno.readTextFile(path));
    const vocab = json.model.vocab as [string, number][];
    equal(vocab.length, 1100);
    deepEqual(vocab.slice(0, 3).map((v) => v[0]), ["<pad>", "</s>", "<unk>"]);
    equal(vocab[1099]![0], "<extra_id_0>");
    equal(vocab[1100 - NUM_SENTINELS]![0], "<extra_id_99>");
    const tok = new Tokenizer(json, {});
    const cases = [
      "the movie was surprisingly good .",
      "A man is  playing a guitar!",
      "café 漢字 ½ ｆｕｌｌ-width",
      "Unseen ☃ characters ⌘",
      "",
    ];
    for (const c of cases) {
      const ref = await spmEncode(`${dir}/tok/spiece.model`, c);
      deepEqual(tok.encode(c).ids, [...ref, 1], `ids of ${JSON.stringify(c)}`);
    }
    deepEqual(tok.encode("<extra_id_0> good").ids.slice(0, 1), [1099]);
  },
);

spmTest(
  "trainSentencePiece(): the same corpus beside the output folder gives the same spiece.model bytes in any folder",
  async (dir) => {
    // As pretrain's temporary folders: <tmp-N>/corpus.txt and <tmp-N>/tok/. spiece.model records
    // its trainer's input paths and model prefix, which held each temporary folder's name.
    const text = await Deno.readTextFile(await corpus(dir));
    const models: Uint8Array[] = [];
    for (const tmp of [".tmp-1-aaaa", ".tmp-22-bbbbbbbb"]) {
      await Deno.mkdir(`${dir}/${tmp}`);
      await Deno.writeTextFile(`${dir}/${tmp}/corpus.txt`, text);
      await trainSentencePiece([`${dir}/${tmp}/corpus.txt`], {
        vocabSize: 600,
        outDir: `${dir}/${tmp}/tok`,
      });
      models.push(await Deno.readFile(`${dir}/${tmp}/tok/spiece.model`));
    }
    deepEqual(models[0], models[1]);
    ok(!new TextDecoder().decode(models[0]).includes(".tmp-"), "no temporary folder's name");
    // spm_train named by a path relative to this process's folder (the child runs in outDir).
    await Deno.mkdir(`${dir}/tools`);
    const spm = new TextDecoder().decode(
      (await new Deno.Command("sh", { args: ["-c", "command -v spm_train"], stdout: "piped" })
        .output()).stdout,
    ).trim();
    await Deno.symlink(spm, `${dir}/tools/spm_train`);
    const rel = relative(Deno.cwd(), `${dir}/tools/spm_train`);
    ok(!isAbsolute(rel) && rel.includes("/"), rel);
    await Deno.mkdir(`${dir}/rel`);
    await Deno.writeTextFile(`${dir}/rel/corpus.txt`, text);
    await trainSentencePiece([`${dir}/rel/corpus.txt`], {
      vocabSize: 600,
      outDir: `${dir}/rel/tok`,
      spmTrain: rel,
    });
    deepEqual(await Deno.readFile(`${dir}/rel/tok/spiece.model`), models[0]);
  },
);

Deno.test("parseSentencePieceModel() names the file on truncated input", () => {
  throws(
    () => parseSentencePieceModel(new Uint8Array([0x0a, 0x20, 0x0a]), "x.model"),
    /x\.model: not a SentencePiece model \(truncated/,
  );
  throws(() => parseSentencePieceModel(new Uint8Array([]), "y.model"), /y\.model: no pieces/);
  // One piece ("a", score 0), then an unknown field cut short inside its fixed-width value: a
  // fixed32 (field 7, wire 5) with 2 of 4 bytes, a fixed64 (field 7, wire 1) with 5 of 8.
  const piece = [0x0a, 0x01, 0x61, 0x15, 0, 0, 0, 0];
  const model = (...tail: number[]) => new Uint8Array([0x0a, piece.length, ...piece, ...tail]);
  equal(parseSentencePieceModel(model(0x3d, 1, 2, 3, 4), "ok.model").pieces.length, 1);
  equal(parseSentencePieceModel(model(0x39, 1, 2, 3, 4, 5, 6, 7, 8), "ok.model").pieces.length, 1);
  throws(
    () => parseSentencePieceModel(model(0x3d, 1, 2), "f32.model"),
    /f32\.model: not a SentencePiece model \(truncated protobuf fixed32 field at byte 11 \(4 bytes needed, 2 left\)/,
  );
  throws(
    () => parseSentencePieceModel(model(0x39, 1, 2, 3, 4, 5), "f64.model"),
    /f64\.model: not a SentencePiece model \(truncated protobuf fixed64 field at byte 11 \(8 bytes needed, 5 left\)/,
  );
  // Inside a piece message too.
  // Inside a piece message too, at its offset in the file (the piece's message starts at byte 2).
  throws(
    () =>
      parseSentencePieceModel(
        new Uint8Array([0x0a, 0x05, 0x0a, 0x01, 0x61, 0x3d, 0x00]),
        "p.model",
      ),
    checkpointError(
      "p.model",
      undefined,
      /^p\.model: not a SentencePiece model \(truncated protobuf fixed32 field at byte 6 /,
    ),
  );
  // Every one is a CheckpointError of the file.
  for (
    const [bytes, message] of [
      [
        [0x0a, 0x20, 0x0a],
        /^x\.model: not a SentencePiece model \(truncated protobuf field \(32 bytes at byte 2\)\): replace it with the model's own spiece\.model$/,
      ],
      [
        [0x0a, 0x80],
        /^x\.model: not a SentencePiece model \(truncated protobuf varint at byte 2\): replace /,
      ],
      [
        [0x0a, ...Array(10).fill(0x80)],
        /^x\.model: not a SentencePiece model \(malformed varint at byte 11\): replace /,
      ],
      [
        [0x0a, 0x02, 0x15, 0x00],
        /^x\.model: not a SentencePiece model \(truncated float at byte 3\): replace /,
      ],
      [
        [0x0b],
        /^x\.model: not a SentencePiece model \(unsupported protobuf wire type 3 at 1\): replace /,
      ],
      [[], /^x\.model: no pieces found; not a SentencePiece model$/],
      // A piece (field 1 of the piece at byte 2, its 2 bytes at byte 4) that is not UTF-8.
      [
        [0x0a, 0x04, 0x0a, 0x02, 0xc3, 0x28],
        /^x\.model: piece 0 \(at byte 4\) is not valid UTF-8$/,
      ],
    ] as const
  ) {
    throws(
      () => parseSentencePieceModel(new Uint8Array(bytes), "x.model"),
      checkpointError("x.model", undefined, message),
      String(message),
    );
  }
});

Deno.test("sentencePieceToTokenizerJson() rejects a model without T5's special ids", () => {
  const model = {
    pieces: [{ piece: "<unk>", score: 0, type: 2 }, { piece: "a", score: -1, type: 1 }],
    precompiledCharsmap: new Uint8Array(),
  };
  throws(
    () => sentencePieceToTokenizerJson(model, "m.model"),
    checkpointError("m.model", undefined, /^m\.model: piece 0 must be "<pad>"/),
  );
});

/** Ids 0–4 of each hand-built model: T5's <pad>, </s> and <unk>, then "▁" and "x" (piece, score, type). */
const FIRST_PIECES: readonly [string, number, number][] = [
  ["<pad>", 0, 3],
  ["</s>", 0, 3],
  ["<unk>", 0, 2],
  ["▁", -2, 1],
  ["x", -3, 1],
];

/** A `ModelProto` holding `pieces` (field 1: piece 1, float32 score 2, type 3) and nothing else. */
function modelProto(pieces: readonly [string, number, number][]): Uint8Array {
  const out: number[] = [];
  for (const [piece, score, type] of pieces) {
    const text = [...new TextEncoder().encode(piece)];
    const f32 = new Uint8Array(new Float32Array([score]).buffer);
    const msg = [0x0a, text.length, ...text, 0x15, ...f32, 0x18, type];
    out.push(0x0a, msg.length, ...msg);
  }
  return new Uint8Array(out);
}

Deno.test("sentencePieceToTokenizerJson() keeps every piece's score, as T5Converter, whatever its type", () => {
  // spm_train scores control and user-defined pieces 0, so the model is built by hand: a
  // user-defined "▁x" and a control "<ctl>" with scores of their own (exact in float32).
  const pieces: [string, number, number][] = [
    ...FIRST_PIECES,
    ["y", -3, 1],
    ["▁x", -20, 4],
    ["<ctl>", -7.5, 3],
  ];
  const model = parseSentencePieceModel(modelProto(pieces), "scored.model");
  deepEqual(model.pieces, pieces.map(([piece, score, type]) => ({ piece, score, type })));
  const json = sentencePieceToTokenizerJson(model, "scored.model", 2);
  // transformers: vocab = [(piece.piece, piece.score) for piece in proto.pieces] + sentinels at 0.
  deepEqual((json.model as { vocab: unknown }).vocab, [
    ...pieces.map(([piece, score]) => [piece, score]),
    ["<extra_id_1>", 0],
    ["<extra_id_0>", 0],
  ]);
  deepEqual(
    addedTokens(json).filter(([id]) => id >= 3 && id < pieces.length),
    [[6, "▁x", false], [7, "<ctl>", true]],
  );
  // The score decides the segmentation: "x y" has no "▁x" before Metaspace, so the added-token
  // split leaves it to the Unigram lattice, where "▁x" at -20 loses to "▁" + "x" (-5); at 0 (the
  // old conversion) it would win.
  deepEqual(T5Tokenizer.fromJson(json, "scored").encode("x y"), [3, 4, 3, 5, 1]);
});

Deno.test("sentencePieceToTokenizerJson() adds control and user-defined pieces, special as transformers marks them", () => {
  // transformers' SpmConverter: `(id, p.piece, p.type == 3 or p.piece in special_tokens) ... if
  // p.type in [3, 4]`, and T5TokenizerFast marks its special tokens (<pad>, </s>, <unk>, the
  // additional special tokens, the sentinels) special. A piece of another type, an unknown (2)
  // one here too (SentencePiece itself allows only <unk>), is no added token.
  const pieces: [string, number, number][] = [
    ...FIRST_PIECES,
    ["<odd>", -9, 2],
    ["<usr>", 0, 4],
    ["<extra_id_0>", 0, 4],
    ["<ctl>", 0, 3],
    ["<sep>", 0, 4],
  ];
  const model = parseSentencePieceModel(modelProto(pieces), "types.model");
  const json = sentencePieceToTokenizerJson(model, "types.model", 2, {
    additionalSpecialTokens: ["<sep>"],
  });
  const added = addedTokens(json);
  deepEqual(
    added.filter(([id]) => id < pieces.length),
    [
      [0, "<pad>", true],
      [1, "</s>", true],
      [2, "<unk>", true],
      [6, "<usr>", false], // user-defined, not a special token
      [8, "<ctl>", true], // control
      [9, "<sep>", true], // user-defined, an additional special token
    ],
  );
  // The user-defined "<extra_id_0>" (id 7) is one of the sentinels: the string is added once, at
  // the appended sentinel's id (11); see the test below.
  deepEqual(added.filter(([, content]) => content === "<extra_id_0>").map(([id]) => id), [11]);
  // Each added piece once, at its own id; the unknown-typed piece stays in the Unigram vocabulary.
  equal(added.filter(([, content]) => content === "<sep>").length, 1);
  deepEqual((json.model as { vocab: [string, number][] }).vocab[5], ["<odd>", -9]);
  // Without the additional token, "<sep>" is an ordinary user-defined piece.
  const plain = sentencePieceToTokenizerJson(model, "types.model", 2);
  deepEqual(
    addedTokens(plain).filter(([id]) => id === 9).map(([, , special]) => special),
    [false],
  );
});

Deno.test("sentencePieceToTokenizerJson(): a control or user-defined piece right after <unk> (id 3) is an added token", () => {
  // Only ids 0..2 (<pad>, </s>, <unk>, added first) are skipped by the piece loop; id 3 is the
  // first piece it considers.
  const pieces: [string, number, number][] = [
    ["<pad>", 0, 3],
    ["</s>", 0, 3],
    ["<unk>", 0, 2],
    ["<usr>", 0, 4],
    ["<ctl>", 0, 3],
    ["\u2581", -2, 1],
    ["x", -3, 1],
  ];
  const model = parseSentencePieceModel(modelProto(pieces), "low.model");
  const json = sentencePieceToTokenizerJson(model, "low.model", 1);
  deepEqual(addedTokens(json), [
    [0, "<pad>", true],
    [1, "</s>", true],
    [2, "<unk>", true],
    [3, "<usr>", false],
    [4, "<ctl>", true],
    [7, "<extra_id_0>", true],
  ]);
  // Matched whole before segmentation, as SentencePiece matches a user-defined piece.
  deepEqual(T5Tokenizer.fromJson(json, "low").encode("x<usr>x"), [5, 6, 3, 5, 6, 1]);
});

Deno.test("sentencePieceToTokenizerJson(): a user-defined <extra_id_i> piece and the appended sentinel are one token, the sentinel's id, as transformers", () => {
  // T5's spiece.model has no <extra_id_i> pieces; a model trained with them as user-defined
  // symbols has each twice in T5Converter's vocabulary (its piece, then the appended sentinel).
  // The Rust Unigram model maps the string to its last entry (`token_to_ids.insert` per entry),
  // and SpmConverter's `add_tokens` takes that id, so transformers' tokenizer.json holds
  // "<extra_id_0>" once, at the sentinel's id; the piece's own id is never produced by encoding.
  const pieces: [string, number, number][] = [
    ...FIRST_PIECES,
    ["y", -3, 1],
    ["<extra_id_0>", 0, 4],
    ["<extra_id_5>", 0, 4], // not a sentinel with 2 of them: an ordinary user-defined piece
  ];
  const model = parseSentencePieceModel(modelProto(pieces), "dup.model");
  for (const extras of [{}, { additionalSpecialTokens: ["<extra_id_0>", "<extra_id_1>"] }]) {
    const json = sentencePieceToTokenizerJson(model, "dup.model", 2, extras);
    // The vocabulary is T5Converter's: every piece, then the sentinels (<extra_id_0> the highest).
    deepEqual(
      (json.model as { vocab: [string, number][] }).vocab.map((v) => v[0]),
      [...pieces.map((p) => p[0]), "<extra_id_1>", "<extra_id_0>"],
    );
    deepEqual(addedTokens(json), [
      [0, "<pad>", true],
      [1, "</s>", true],
      [2, "<unk>", true],
      [7, "<extra_id_5>", false],
      [8, "<extra_id_1>", true],
      [9, "<extra_id_0>", true],
    ]);
    const tok = T5Tokenizer.fromJson(json, "dup");
    equal(tok.tokenToId("<extra_id_0>"), 9);
    deepEqual(tok.encode("x <extra_id_0> y"), [3, 4, 3, 9, 3, 5, 1]);
  }
});

Deno.test("sentencePieceToTokenizerJson(): an additional special token listed twice is one added token, one new id", () => {
  // AddedVocabulary::add_tokens gives a string already added its earlier id, so "<new>" (not a
  // piece) takes one id after the pieces and sentinels (8), however often it is listed, and
  // "<extra_id_1>" keeps its sentinel's id.
  const pieces: [string, number, number][] = [...FIRST_PIECES, ["y", -3, 1]];
  const model = parseSentencePieceModel(modelProto(pieces), "twice.model");
  const json = sentencePieceToTokenizerJson(model, "twice.model", 2, {
    additionalSpecialTokens: ["<new>", "<extra_id_1>", "<new>"],
  });
  deepEqual(
    (json.model as { vocab: [string, number][] }).vocab.map((v) => v[0]),
    [...pieces.map((p) => p[0]), "<extra_id_1>", "<extra_id_0>", "<new>"],
  );
  deepEqual(addedTokens(json), [
    [0, "<pad>", true],
    [1, "</s>", true],
    [2, "<unk>", true],
    [6, "<extra_id_1>", true],
    [7, "<extra_id_0>", true],
    [8, "<new>", true],
  ]);
  const tok = T5Tokenizer.fromJson(json, "twice");
  equal(tok.vocabSize, 9);
  deepEqual(tok.encode("x<new>"), [3, 4, 8, 1]);
});

spmTest(
  "trainSentencePiece() never learns a sentinel's text as a piece: each <extra_id_i> once, the appended id, as T5's layout",
  async (dir) => {
    // A corpus that is mostly sentinel text, alone, inside words and after a space. spm_train is
    // given no --user_defined_symbols, and a learnt piece cannot cross from "<" or "_" (Common
    // script) to "extra" (Latin) while --split_by_unicode_script is on (its default), so no
    // piece spells a sentinel and each <extra_id_i> is only the sentinel appended after the
    // pieces. (With --user_defined_symbols=<extra_id_0> this fails: the string is a piece too.)
    const words = ["<extra_id_0>", "<extra_id_1>", "<extra_id_12>", "a<extra_id_0>b", "cat"];
    const lines = Array.from(
      { length: 300 },
      (_, i) => Array.from({ length: 8 }, (_, j) => words[(i * 3 + j * 7) % 5]).join(" "),
    );
    const text = `${dir}/sentinels.txt`;
    await Deno.writeTextFile(text, lines.join("\n") + "\n");
    const path = await trainSentencePiece([text], { vocabSize: 4096, outDir: `${dir}/tok` });
    const spiece = parseSentencePieceModel(
      await Deno.readFile(`${dir}/tok/spiece.model`),
      "spiece.model",
    );
    // Only <pad> and </s> are control pieces, <unk> the unknown one; every other is normal (1).
    deepEqual(spiece.pieces.slice(0, 3).map((p) => p.type), [3, 3, 2]);
    deepEqual(spiece.pieces.slice(3).filter((p) => p.type !== 1), []);
    deepEqual(spiece.pieces.filter((p) => p.piece.includes("<extra_id_")), []);
    const json = JSON.parse(await Deno.readTextFile(path));
    const vocab = (json.model.vocab as [string, number][]).map((v) => v[0]);
    const size = spiece.pieces.length + NUM_SENTINELS;
    equal(vocab.length, size);
    equal(new Set(vocab).size, size, "no string twice in the vocabulary");
    const added = (json.added_tokens as { content: string }[]).map((t) => t.content);
    equal(new Set(added).size, added.length, "no string twice in added_tokens");
    const tok = T5Tokenizer.fromJson(json, path);
    equal(tok.vocabSize, size);
    for (const i of [0, 1, 12, 99]) equal(tok.tokenToId(`<extra_id_${i}>`), size - 1 - i);
    deepEqual(tok.encode("<extra_id_12> cat").slice(0, 1), [size - 13]);
    deepEqual(tok.encode("a<extra_id_0>b").filter((id) => id >= spiece.pieces.length), [
      size - 1,
    ]);
  },
);

/** Whether process `pid` runs (a zombie, ended but not yet reaped, does not). */
async function running(pid: string): Promise<boolean> {
  if (Deno.build.os === "linux") {
    // Through cat: Deno lets only --allow-all read /proc.
    const cat = await new Deno.Command("cat", { args: [`/proc/${pid}/stat`], stderr: "null" })
      .output();
    return cat.success && !/^\d+ \(.*\) Z /.test(new TextDecoder().decode(cat.stdout));
  }
  return (await new Deno.Command("kill", { args: ["-0", pid], stderr: "null" }).output()).success;
}

Deno.test({
  name: "trainSentencePiece(): SIGTERM or SIGINT to this process stops spm_train too, then us",
  ignore: Deno.build.os === "windows",
  fn: () =>
    inTempDir(async (dir) => {
      // A stand-in for spm_train that says its pid and waits a minute: the process that runs
      // trainSentencePiece is signalled, as a job scheduler stops a job (not its process group).
      const fake = `${dir}/spm_train`;
      await Deno.writeTextFile(fake, `#!/bin/sh\necho $$ > "$SPM_PID"\nexec sleep 60\n`);
      await Deno.chmod(fake, 0o755);
      await Deno.writeTextFile(`${dir}/corpus.txt`, "a line\n");
      for (const signal of ["SIGTERM", "SIGINT"] as const) {
        const pidFile = `${dir}/${signal}.pid`;
        const script = `import { trainSentencePiece } from "${
          new URL("./spm.ts", import.meta.url).href
        }";
          await trainSentencePiece([${JSON.stringify(`${dir}/corpus.txt`)}], {
            vocabSize: 500, outDir: ${JSON.stringify(`${dir}/tok`)}, spmTrain: ${
          JSON.stringify(fake)
        } });
          console.log("finished");`;
        const proc = new Deno.Command(Deno.execPath(), {
          args: ["eval", "--quiet", script],
          env: { SPM_PID: pidFile, NO_COLOR: "1" },
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        let pid = "";
        for (let i = 0; i < 600 && pid === ""; i++) {
          await new Promise((r) => setTimeout(r, 100));
          pid = (await Deno.readTextFile(pidFile).catch(() => "")).trim();
        }
        ok(pid !== "", `${signal}: the fake spm_train started`);
        // The listeners are added right after the spawn: give them a moment.
        await new Promise((r) => setTimeout(r, 300));
        proc.kill(signal);
        const out = await proc.output();
        equal(out.signal, signal, `${signal}: the process ends by the signal`);
        equal(new TextDecoder().decode(out.stdout), "", `${signal}: nothing after the signal`);
        let alive = true;
        for (let i = 0; i < 50 && alive; i++) {
          alive = await running(pid);
          if (alive) await new Promise((r) => setTimeout(r, 100));
        }
        ok(!alive, `${signal}: spm_train (pid ${pid}) stopped with the process`);
      }
    }),
});

Deno.test("trainSentencePiece() explains a missing spm_train, and a missing corpus file", () =>
  inTempDir(async (dir) => {
    const text = `${dir}/corpus.txt`;
    await Deno.writeTextFile(text, "a line\n");
    await rejects(
      trainSentencePiece([text], { vocabSize: 500, outDir: `${dir}/tok`, spmTrain: "no-such-spm" }),
      (e: Error) => {
        match(e.message, /apt-get install -y sentencepiece/);
        return true;
      },
    );
    await rejects(
      trainSentencePiece([text, `${dir}/absent.txt`], { vocabSize: 500, outDir: `${dir}/tok` }),
      (e: Error) => {
        match(e.message, /absent\.txt: cannot read the corpus file: /);
        return true;
      },
    );
  }));

spmTest(
  "trainSentencePiece() learns from lines longer than spm_train's default 4192 bytes, the same vocabulary run after run",
  async (dir) => {
    // Short lines, and one 80,000-byte line (longer than a 64 KiB read chunk, so its length is
    // counted across chunks) holding the only q, j, k, v, w and x of the corpus. spm_train's
    // default --max_sentence_length (4192) skips it: those letters then have no piece and
    // "zqxjkvw" encodes to <unk>.
    const words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"];
    const lines = Array.from(
      { length: 200 },
      (_, i) => Array.from({ length: 10 }, (_, j) => words[(i * 7 + j * 3) % 8]).join(" "),
    );
    lines.splice(100, 0, "zqxjkvw ".repeat(10_000).trim());
    const text = `${dir}/long.txt`;
    await Deno.writeTextFile(text, lines.join("\n") + "\n");
    const path = await trainSentencePiece([text], { vocabSize: 160, outDir: `${dir}/tok` });
    const tok = await T5Tokenizer.fromFile(path);
    const ids = tok.encode("zqxjkvw");
    ok(!ids.includes(2), `"zqxjkvw" has <unk> (id 2) in ${JSON.stringify(ids)}`);
    ok(
      ids.length <= 3,
      `"zqxjkvw" is learnt as a word: ${JSON.stringify(tok.encodeWithTokens("zqxjkvw").tokens)}`,
    );
    // Reproducible: a second training of the same corpus gives the same tokenizer.json.
    const again = await trainSentencePiece([text], { vocabSize: 160, outDir: `${dir}/tok2` });
    equal(await Deno.readTextFile(again), await Deno.readTextFile(path));
  },
);

Deno.test("withSentinels() appends T5 sentinels to a tokenizer without them; ids stay put", async () => {
  const path = sharedPath("fixtures/tokenizer/unigram-glue-4k/tokenizer.json");
  const json = JSON.parse(await Deno.readTextFile(path));
  const before = new Tokenizer(json, {});
  const out = withSentinels(json, path);
  equal((json.model.vocab as unknown[]).length, 4000, "input untouched");
  const tok = new Tokenizer(out, {});
  const text = "the movie was surprisingly good .";
  deepEqual(tok.encode(text).ids, before.encode(text).ids);
  equal(tok.encode("<extra_id_0>").ids[0], 4099);
  equal(tok.encode("<extra_id_99>").ids[0], 4000);
  deepEqual(tok.encode("a <extra_id_1> b").ids.filter((i: number) => i >= 4000), [4098]);
  equal(withSentinels(out, path), out, "already has sentinels: unchanged");
  throws(
    () => withSentinels({ model: { type: "BPE" } }, "x.json"),
    checkpointError("x.json", "model", /^x\.json: field "model"/),
  );
});

spmTest(
  "trainSentencePiece() on a corpus too small for the size gives fewer pieces, sentinels still on top",
  async (dir) => {
    const text = `${dir}/tiny.txt`;
    await Deno.writeTextFile(text, "a few words\nof text\nthe cat sat on the mat\n");
    // spm_train reaches only a few dozen pieces here; --hard_vocab_limit=false takes them.
    const path = await trainSentencePiece([text], { vocabSize: 4096, outDir: `${dir}/tok` });
    const json = JSON.parse(await Deno.readTextFile(path));
    const vocab = (json.model.vocab as [string, number][]).map((v) => v[0]);
    const pieces = vocab.length - NUM_SENTINELS;
    ok(pieces > 3 && pieces < 100, `${pieces} pieces`);
    deepEqual(vocab.slice(0, 3), ["<pad>", "</s>", "<unk>"]);
    // T5's layout on the vocabulary there is: <extra_id_i> = size - 1 - i, right after the pieces.
    for (let i = 0; i < NUM_SENTINELS; i++) equal(vocab[vocab.length - 1 - i], `<extra_id_${i}>`);
    ok(vocab.slice(0, pieces).every((p) => !p.startsWith("<extra_id_")));
    const added = (json.added_tokens as { id: number; content: string }[])
      .filter((t) => t.content.startsWith("<extra_id_"));
    deepEqual(
      added.map((t) => [t.content, t.id]).sort((a, b) => Number(a[1]) - Number(b[1])),
      Array.from(
        { length: NUM_SENTINELS },
        (_, k) => [`<extra_id_${NUM_SENTINELS - 1 - k}>`, pieces + k],
      ),
    );
    const tok = new Tokenizer(json, {});
    deepEqual(tok.encode("the cat <extra_id_0>").ids.slice(-2), [vocab.length - 1, 1]);
  },
);

spmTest(
  "trainSentencePiece() says in vocabSize terms when the corpus has more characters than pieces",
  async (dir) => {
    const text = `${dir}/chars.txt`;
    // 40 distinct letters and digits, plus the space: spm_train needs a piece for each, and
    // <pad>, </s>, <unk>.
    await Deno.writeTextFile(text, "abcdefghijklmnopqrstuvwxyz 0123456789 ABCD\n".repeat(3));
    let suggested = 0;
    await rejects(
      trainSentencePiece([text], { vocabSize: 120, outDir: `${dir}/tok` }),
      (e: Error) => {
        match(
          e.message,
          /^trainSentencePiece: vocabSize 120 leaves 20 pieces beside the 100 sentinels, but spm_train needs (\d+) for this corpus \(every character, <pad>, <\/s> and <unk>\); use a vocabSize of at least (\d+)/,
        );
        const [, need, size] = e.message.match(/needs (\d+) .* at least (\d+)/)!;
        equal(Number(size), Number(need) + NUM_SENTINELS);
        suggested = Number(size);
        return true;
      },
    );
    // The size it suggests trains.
    await trainSentencePiece([text], { vocabSize: suggested, outDir: `${dir}/tok2` });
  },
);

Deno.test({
  name:
    "convertSpieceFolder() converts a folder's spiece.model as T5Converter: the converter's own tokenizer.json, spm_encode's ids",
  ignore: !HAS_SPM,
  fn: () =>
    inTempDir(async (root) => {
      const tiny = await trainTinySpiece(join(root, "tok"));
      const dir = join(root, "ckpt");
      await Deno.mkdir(dir);
      await Deno.copyFile(tiny.spiece, join(dir, "spiece.model"));
      equal(await convertSpieceFolder(root), undefined, "no spiece.model: nothing to convert");
      // No tokenizer_config.json: T5's defaults, the very tokenizer.json trainSentencePiece writes.
      const plain = await convertSpieceFolder(dir);
      ok(plain !== undefined);
      deepEqual(plain.json, JSON.parse(await Deno.readTextFile(tiny.tokenizerJson)));
      deepEqual([plain.spiece, plain.pieces, plain.tokenizerConfig], [
        join(dir, "spiece.model"),
        tiny.pieces,
        undefined,
      ]);
      const tok = T5Tokenizer.fromJson(plain.json, "converted");
      const n = tiny.pieces;
      equal(tok.vocabSize, n + 100);
      // T5's layout (32,099 = <extra_id_0> in the published 32,100-id vocabulary).
      deepEqual(
        [tok.tokenToId("<extra_id_0>"), tok.tokenToId("<extra_id_99>"), tok.eosTokenId],
        [n + 99, n, 1],
      );
      for (const text of ["the cat sat on the mat", "a  dog ran   home", "café ☃", ""]) {
        deepEqual(tok.encode(text), [...await spmEncode(tiny.spiece, text), 1], text);
      }
      deepEqual(tok.encode("the <extra_id_0> mat").filter((i) => i >= n), [n + 99]);
      // Metaspace prepend_scheme "always" (T5's legacy default): the text after a special token
      // gets its own "▁" as the text's start does ("first" would spell "mat" without it).
      deepEqual(tok.encode("<extra_id_0>mat"), [n + 99, ...tok.encode("mat")]);
      // tokenizer_config.json: 10 sentinels, listed as transformers saves them, one more token.
      const sentinels = Array.from({ length: 10 }, (_, i) => `<extra_id_${i}>`);
      await Deno.writeTextFile(
        join(dir, "tokenizer_config.json"),
        JSON.stringify({
          extra_ids: 10,
          additional_special_tokens: [...sentinels, { content: "<sep>", special: true }],
          legacy: false,
        }),
      );
      const cfg = await convertSpieceFolder(dir);
      ok(cfg !== undefined);
      equal(cfg.tokenizerConfig, join(dir, "tokenizer_config.json"));
      const small = T5Tokenizer.fromJson(cfg.json, "converted");
      equal(small.vocabSize, n + 11);
      deepEqual(
        [small.tokenToId("<extra_id_0>"), small.tokenToId("<extra_id_9>")],
        [n + 9, n],
      );
      equal(small.tokenToId("<extra_id_10>"), undefined);
      equal(small.tokenToId("<sep>"), n + 10, "an additional token after the sentinels");
      deepEqual(small.encode("the cat <sep> the mat").filter((i) => i >= n), [n + 10]);
      equal((cfg.json.pre_tokenizer as { prepend_scheme: string }).prepend_scheme, "first");
      // Text without special tokens: the same ids as spm_encode.
      deepEqual(small.encode("the dog sat"), [...await spmEncode(tiny.spiece, "the dog sat"), 1]);
    }),
});

Deno.test("t5TokenizerConfig() reads transformers' T5Tokenizer settings and names the file and field", async () => {
  deepEqual(t5TokenizerConfig(undefined, "c.json"), { extraIds: 100 });
  deepEqual(t5TokenizerConfig({ model_max_length: 512 }, "c.json"), {
    extraIds: 100,
    prependScheme: "always",
  });
  deepEqual(t5TokenizerConfig({ add_prefix_space: false, legacy: false }, "c.json"), {
    extraIds: 100,
    prependScheme: "never",
  });
  // A list without sentinels gets them from extra_ids (transformers appends them).
  deepEqual(t5TokenizerConfig({ extra_ids: 3, additional_special_tokens: ["<x>"] }, "c.json"), {
    extraIds: 3,
    prependScheme: "always",
    additionalSpecialTokens: ["<x>"],
  });
  const bad: [unknown, RegExp][] = [
    [[], /^CheckpointError: c\.json: must be a JSON object$/],
    [
      { extra_ids: -1 },
      /^CheckpointError: c\.json: field "extra_ids" must be an integer >= 0, got -1$/,
    ],
    [
      { extra_ids: "100" },
      /^CheckpointError: c\.json: field "extra_ids" must be an integer >= 0, got "100"$/,
    ],
    [
      { additional_special_tokens: "<x>" },
      /^CheckpointError: c\.json: field "additional_special_tokens" must be a list of tokens, got "<x>"$/,
    ],
    [
      { additional_special_tokens: ["<x>", { special: true }] },
      /^CheckpointError: c\.json: field "additional_special_tokens\[1\]" must be a non-empty string or an object/,
    ],
    [
      { extra_ids: 100, additional_special_tokens: ["<extra_id_0>", "<extra_id_1>"] },
      /^CheckpointError: c\.json: field "extra_ids" is 100 but "additional_special_tokens" holds 2 <extra_id_…> tokens/,
    ],
    [
      { legacy: "no" },
      /^CheckpointError: c\.json: field "legacy" must be true or false, got "no"$/,
    ],
  ];
  for (const [config, message] of bad) throws(() => t5TokenizerConfig(config, "c.json"), message);
  const fields = [undefined, "extra_ids", "extra_ids", "additional_special_tokens"];
  fields.push("additional_special_tokens[1]", "extra_ids", "legacy");
  bad.forEach(([config], i) =>
    throws(() => t5TokenizerConfig(config, "c.json"), checkpointError("c.json", fields[i], /./))
  );
  // In a folder: invalid JSON is located; a spiece.model that is not one is named.
  await inTempDir(async (dir) => {
    await Deno.writeFile(join(dir, "spiece.model"), new Uint8Array([0x0a, 0x20]));
    await Deno.writeTextFile(join(dir, "tokenizer_config.json"), '{\n  "extra_ids": 100,\n}');
    await rejects(
      convertSpieceFolder(dir),
      new RegExp(`^CheckpointError: ${join(dir, "tokenizer_config.json")}:3:1: invalid JSON`),
    );
    await rejects(
      convertSpieceFolder(dir),
      checkpointError(join(dir, "tokenizer_config.json"), undefined, /:3:1: invalid JSON/),
    );
    await Deno.remove(join(dir, "tokenizer_config.json"));
    await rejects(
      convertSpieceFolder(dir),
      new RegExp(
        `^CheckpointError: ${
          join(dir, "spiece.model")
        }: not a SentencePiece model \\(truncated protobuf field`,
      ),
    );
    await rejects(
      convertSpieceFolder(dir),
      checkpointError(
        join(dir, "spiece.model"),
        undefined,
        /: not a SentencePiece model \(truncated protobuf field/,
      ),
    );
    // A file that cannot be read (a folder) is named too.
    await Deno.writeTextFile(join(dir, "tokenizer_config.json"), "{}");
    await Deno.remove(join(dir, "spiece.model"));
    await Deno.mkdir(join(dir, "spiece.model"));
    await rejects(
      convertSpieceFolder(dir),
      checkpointError(join(dir, "spiece.model"), undefined, /spiece\.model: cannot read: /),
    );
  });
});
