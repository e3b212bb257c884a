import { deepEqual, equal, ok, rejects } from "node:assert/strict";
import { codeGitState } from "./provenance.ts";
import { basename, dirname, join } from "node:path";
import { createHash } from "node:crypto";
import { withEnv } from "../model/env_testing.ts";
import * as tf from "@tensorflow/tfjs";
import { type BackendName, currentBackendInfo, selectBackend } from "../model/backend.ts";
import { loadHfFolder } from "../model/checkpoint.ts";
import { isDirectory, makeHeldTempDir, withFileLock } from "../model/fs.ts";
import { fileFlushes, flushesOf, recordFlushes } from "../model/fs_testing.ts";
import { T5Tokenizer } from "../model/tokenizer.ts";
import { sharedPath } from "../model/shared_dir.ts";
import { loadExamples } from "../tasks/load.ts";
import { DataError } from "../tasks/parse.ts";
import { evalSplits } from "../tasks/registry.ts";
import { trainSentencePiece } from "../model/spm.ts";
import {
  characterCoverage,
  corpusStream,
  ensureTaskTokenizer,
  hasSpmTrain,
  main,
  PRETRAIN_CODE_VERSION,
  pretrainBackbone,
  type PretrainOptions,
  referenceTokenizer,
  SpmUnavailableError,
  taskCorpus,
} from "./pretrain.ts";
import { defaultTokenizer, randomInitTokenizer } from "./run_one.ts";
import { DEFAULT_TRAIN, runId, type RunSpec } from "./spec.ts";

/** A data folder holding only RTE's train split (a small corpus: spm_train takes ~1 s). */
async function rteOnlyDataDir(root: string): Promise<string> {
  const data = join(root, "data");
  await Deno.mkdir(join(data, "glue", "RTE"), { recursive: true });
  await Deno.copyFile(
    sharedPath("data/glue/RTE/train.tsv"),
    join(data, "glue", "RTE", "train.tsv"),
  );
  return data;
}

// Without spm_train (Deno's output() throws for a missing executable rather than rejecting, so a
// `.then(…, () => false)` here failed the whole module), the tests that need it are ignored.
const hasSpm = await hasSpmTrain();

Deno.test("taskCorpus() holds train and test inputs and never dev/val text", async () => {
  const dataDir = sharedPath("data");
  const corpus = new Set(await taskCorpus(dataDir));
  const train = await loadExamples("rte", "train", dataDir);
  const test = await loadExamples("rte", "test", dataDir);
  ok(corpus.has(train[0]!.input.replace(/\s+/g, " ").trim()), "a train input is in the corpus");
  ok(corpus.has(test[0]!.input.replace(/\s+/g, " ").trim()), "a test input is in the corpus");
  for (const task of ["rte", "cb", "cola", "stsb"]) {
    const allowed = new Set(
      [...await loadExamples(task, "train", dataDir), ...await loadExamples(task, "test", dataDir)]
        .map((e) => e.input.replace(/\s+/g, " ").trim()),
    );
    for (const e of await loadExamples(task, "validation", dataDir)) {
      const line = e.input.replace(/\s+/g, " ").trim();
      // A dev input may coincide with a train/test input; only then may it be in the corpus.
      if (!allowed.has(line)) ok(!corpus.has(line) || line === "", `${task} dev text leaked`);
    }
  }
  for (const e of await loadExamples("boolq", "validation", dataDir)) {
    ok(!corpus.has(e.input.replace(/\s+/g, " ").trim()), "BoolQ val (no train file here) leaked");
  }
});

Deno.test("taskCorpus() leaves out a test split the benchmark scores (the diagnostics')", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const dataDir = await rteOnlyDataDir(dir);
    // AX is scored on its test split (evalSplits): its text must not be pretrained on.
    await Deno.mkdir(join(dataDir, "glue", "diagnostic"), { recursive: true });
    await Deno.writeTextFile(
      join(dataDir, "glue", "diagnostic", "diagnostic.tsv"),
      "index\tsentence1\tsentence2\n0\tA diagnostic premise.\tA diagnostic hypothesis.\n",
    );
    deepEqual(evalSplits("ax"), ["test"]);
    const corpus = await taskCorpus(dataDir);
    ok(corpus.length > 100, `RTE's train inputs are there: ${corpus.length}`);
    deepEqual(corpus.filter((l) => l.includes("diagnostic")), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("taskCorpus() names a malformed file of any task, and why the corpus read it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const dataDir = await rteOnlyDataDir(dir);
    // A SuperGLUE file broken on its line 2: a GLUE-only run reads it too, through the corpus.
    await Deno.mkdir(join(dataDir, "super_glue", "CB"), { recursive: true });
    const cb = (await Deno.readTextFile(sharedPath("data/super_glue/CB/train.jsonl"))).split("\n");
    cb[1] = cb[1]!.slice(0, 30);
    await Deno.writeTextFile(join(dataDir, "super_glue", "CB", "train.jsonl"), cb.join("\n"));
    await rejects(() => taskCorpus(dataDir), (e: unknown) => {
      ok(e instanceof DataError, String(e));
      equal(e.line, 2);
      ok(e.file.endsWith(join("super_glue", "CB", "train.jsonl")), e.file);
      ok(e.detail.startsWith("invalid JSON: "), e.detail);
      ok(
        e.message.endsWith(
          "(read for the task corpus of the tiny presets' tokenizer and pretrained backbone: " +
            `the GLUE and SuperGLUE tasks' train and test files under ${dataDir}; fix or remove the file)`,
        ),
        e.message,
      );
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("corpusStream() samples the whole corpus in a seeded order, not its first lines", () => {
  // Two tasks' lines in corpus order; a token per line (its first letter) plus EOS.
  const lines = [
    ...Array.from({ length: 100 }, (_, i) => `a${i}`),
    ...Array.from({ length: 100 }, (_, i) => `b${i}`),
  ];
  const ids = (l: string) => [l.charCodeAt(0), 1];
  const head = corpusStream(lines, ids, 20, 7);
  equal(head.length, 20);
  ok(head.includes(97) && head.includes(98), `both tasks in the first 20 tokens: ${head}`);
  deepEqual(corpusStream(lines, ids, 20, 7), head, "the same seed gives the same stream");
  // Asked for more than there is: every line once (EOS dropped), in another order per seed.
  const all = (seed: number) =>
    corpusStream(lines, (l) => [Number(l.slice(1)) + 1000 * l.charCodeAt(0), 1], 1e9, seed);
  deepEqual(
    [...all(7)].sort((x, y) => x - y),
    lines.map((l) => Number(l.slice(1)) + 1000 * l.charCodeAt(0)).sort((x, y) => x - y),
  );
  ok(all(7).join() !== all(8).join(), "another seed, another order");
});

Deno.test({
  name:
    "pretrainBackbone() lowers the span-corruption loss, saves a loadable folder, reuses the cache",
  ignore: !hasSpm,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const dataDir = await rteOnlyDataDir(dir);
      const opts = {
        preset: "tiny-v1_1",
        dataDir,
        vocabSize: 600,
        steps: 40,
        batchSize: 8,
        chunkLength: 32,
        learningRate: 3e-3,
        seed: 1,
        cacheDir: join(dir, "cache"),
        log: () => {},
      };
      await tf.ready();
      const tensorsBefore = tf.memory().numTensors;
      const first = await pretrainBackbone(opts);
      equal(first.cached, false);
      // Nothing of the pretraining stays behind (weights, optimizer slots, the scaled lm_head).
      equal(tf.memory().numTensors, tensorsBefore);
      const losses = first.info.losses;
      equal(losses[0]!.step, 1);
      equal(losses.at(-1)!.step, 40);
      // ln(600) ≈ 6.4 at the start; unigram statistics alone bring it well below within 40 steps.
      ok(
        losses.at(-1)!.loss < losses[0]!.loss - 1,
        `loss ${losses[0]!.loss} -> ${losses.at(-1)!.loss}`,
      );

      const ckpt = await loadHfFolder(first.dir);
      equal(ckpt.config.dModel, 64);
      equal(ckpt.config.vocabSize % 128, 0);
      for (const t of ckpt.tensors.values()) t.dispose();
      const tok = await T5Tokenizer.fromFile(join(first.dir, "tokenizer.json"));
      ok(tok.tokenToId("<extra_id_0>") !== undefined, "tokenizer has sentinels");
      ok(tok.vocabSize <= ckpt.config.vocabSize);

      // The backbone's vocabulary is the cached task tokenizer (one tokenizer for random and
      // pretrained runs), trained once.
      const task = await ensureTaskTokenizer(dataDir, {
        vocabSize: 600,
        cacheDir: join(dir, "cache"),
        log: () => {},
      });
      equal(task.cached, true);
      equal(
        await Deno.readTextFile(join(first.dir, "tokenizer.json")),
        await Deno.readTextFile(task.path),
      );

      // A save killed part-way left a temporary beside the cached folders: opening the cache
      // removes it (nobody holds it; pid 999999999 is above any pid_max).
      const killed = join(dir, "cache", "backbones", ".tiny-v1_1-x.tmp-999999999-0123456789ab");
      await Deno.mkdir(killed);
      const again = await pretrainBackbone(opts);
      equal(again.cached, true);
      equal(await isDirectory(killed), false);
      equal(again.dir, first.dir);
      deepEqual(again.info.losses, first.info.losses);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "ensureTaskTokenizer() on a full disk names the cache's tokenizer folder and leaves no temporary folder",
  ignore: !hasSpm,
  async fn() {
    const dir = await Deno.makeTempDir();
    const write = Deno.writeTextFile;
    try {
      const dataDir = await rteOnlyDataDir(dir);
      const cacheDir = join(dir, "cache");
      Deno.writeTextFile = (path, data, o) =>
        String(path).endsWith("corpus.txt")
          ? Promise.reject(new Error("No space left on device (os error 28)"))
          : write(path, data, o);
      await rejects(
        () => ensureTaskTokenizer(dataDir, { vocabSize: 500, cacheDir, log: () => {} }),
        (e: unknown) =>
          e instanceof Error &&
          e.message.startsWith(
            `${join(cacheDir, "tokenizers")}: writing the tokenizer's training corpus (`,
          ) && e.message.endsWith("corpus.txt) failed: No space left on device (os error 28)"),
      );
      Deno.writeTextFile = write;
      deepEqual(
        [...Deno.readDirSync(join(cacheDir, "tokenizers"))].map((e) => e.name).filter((n) =>
          n !== ".locks"
        ),
        [],
        "no temporary folder left",
      );
    } finally {
      Deno.writeTextFile = write;
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "ensureTaskTokenizer() trains once per corpus and size, then serves the cache without spm",
  ignore: !hasSpm,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const dataDir = await rteOnlyDataDir(dir);
      const cacheDir = join(dir, "cache");
      const opts = { vocabSize: 500, cacheDir, log: () => {} };
      const a = await ensureTaskTokenizer(dataDir, opts);
      equal(a.cached, false);
      ok(a.path.startsWith(join(cacheDir, "tokenizers", "spm500-")), a.path);
      const tok = await T5Tokenizer.fromFile(a.path);
      ok(tok.tokenToId("<extra_id_99>") !== undefined, "sentinels present");
      ok(tok.vocabSize <= 500 && tok.vocabSize > 400, `vocab ${tok.vocabSize}`);
      const text = await Deno.readTextFile(a.path);
      // Cached: same file, untouched, and no spm_train needed.
      const b = await ensureTaskTokenizer(dataDir, { ...opts, spmTrain: "/nonexistent/spm" });
      deepEqual([b.cached, b.path, b.key], [true, a.path, a.key]);
      equal(await Deno.readTextFile(b.path), text);
      // A cached file that no longer reads as a tokenizer (a truncated copy) is trained again,
      // said, to the same file.
      await Deno.writeTextFile(a.path, text.slice(0, 5000));
      const lines: string[] = [];
      const rebuilt = await ensureTaskTokenizer(dataDir, { ...opts, log: (l) => lines.push(l) });
      deepEqual([rebuilt.cached, rebuilt.path], [false, a.path]);
      equal(await Deno.readTextFile(a.path), text);
      const said = lines.find((l) =>
        l.startsWith(`tokenizer: the cached ${a.path} cannot be used (`)
      );
      ok(said?.includes("invalid JSON") && said.endsWith("; training it again"), lines.join("\n"));
      // Broken, and no spm_train to train it again: the error says both.
      await Deno.writeTextFile(a.path, text.slice(0, 5000));
      await rejects(
        () => ensureTaskTokenizer(dataDir, { ...opts, spmTrain: "/nonexistent/spm" }),
        (e: unknown) =>
          e instanceof SpmUnavailableError && e.message.startsWith("spm_train not found") &&
          e.message.includes(`; the cached ${a.path} cannot be used (`),
      );
      // Broken while another run holds the lock and republishes it: the waiter takes the
      // republished folder (it removed the broken one before taking the lock, and with it the
      // holder's new one).
      const lock = join(cacheDir, "tokenizers", ".locks", `${basename(dirname(a.path))}.lock`);
      const waiting: string[] = [];
      let waiter: Promise<{ cached: boolean }> | undefined;
      await withFileLock(lock, async () => {
        waiter = ensureTaskTokenizer(dataDir, { ...opts, log: (l) => waiting.push(l) });
        for (let i = 0; i < 200 && !waiting.some((l) => l.includes("waiting for")); i++) {
          await new Promise((r) => setTimeout(r, 10));
        }
        ok(waiting.some((l) => l.includes("waiting for")), waiting.join("\n"));
        await Deno.writeTextFile(a.path, text); // the holder's republished tokenizer
      }, { remove: true });
      deepEqual((await waiter!).cached, true);
      equal(await Deno.readTextFile(a.path), text);
      // Another size is another key; without spm_train it cannot be built.
      await rejects(
        () => ensureTaskTokenizer(dataDir, { ...opts, vocabSize: 600, spmTrain: "/nonexistent" }),
        (e: unknown) => e instanceof SpmUnavailableError && /spm_train not found/.test(e.message),
      );
      // Another corpus (one more task) is another key.
      await Deno.mkdir(join(dataDir, "super_glue", "CB"), { recursive: true });
      await Deno.copyFile(
        sharedPath("data/super_glue/CB/train.jsonl"),
        join(dataDir, "super_glue", "CB", "train.jsonl"),
      );
      const c = await ensureTaskTokenizer(dataDir, opts);
      equal(c.cached, false);
      ok(c.key !== a.key);
      const entries = [...Deno.readDirSync(join(cacheDir, "tokenizers"))].map((e) => e.name)
        .filter((n) => n !== ".locks");
      equal(entries.length, 2, `only the two published folders remain: ${entries}`);
      deepEqual([...Deno.readDirSync(join(cacheDir, "tokenizers", ".locks"))], [], "no lock left");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "ensureTaskTokenizer(): runs asking for the same tokenizer at once take turns: one trains, the others find its folder",
  ignore: !hasSpm,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const dataDir = await rteOnlyDataDir(dir);
      const cacheDir = join(dir, "cache");
      // spm_train, counting its trainings (not the --help probe).
      const count = join(dir, "trainings");
      const spm = join(dir, "spm_train");
      await Deno.writeTextFile(
        spm,
        `#!/bin/sh\ncase "$1" in --help) ;; *) echo x >> ${count};; esac\nexec spm_train "$@"\n`,
      );
      await Deno.chmod(spm, 0o755);
      const lines: string[] = [];
      const opts = { vocabSize: 500, cacheDir, spmTrain: spm, log: (l: string) => lines.push(l) };
      const got = await Promise.all([0, 1, 2].map(() => ensureTaskTokenizer(dataDir, opts)));
      equal((await Deno.readTextFile(count)).trim().split("\n").length, 1, "trained once");
      deepEqual(got.map((t) => t.cached).sort(), [false, true, true]);
      equal(new Set(got.map((t) => t.path)).size, 1);
      ok(
        lines.some((l) => l.startsWith("tokenizer: waiting for another run training the same ")),
        lines.join("\n"),
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "ensureTaskTokenizer() flushes spm_train's model and the trained folder, then the tokenizer cache once it is published",
  ignore: !hasSpm || Deno.build.os === "windows", // syncDir does nothing on Windows
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const dataDir = await rteOnlyDataDir(dir);
      const cacheDir = join(dir, "cache");
      const tokenizers = join(cacheDir, "tokenizers");
      let path = "";
      let files: string[] = [];
      const flushes = await recordFlushes(async () => {
        files = await fileFlushes(async () => {
          path = (await ensureTaskTokenizer(dataDir, { vocabSize: 500, cacheDir, log: () => {} }))
            .path;
        });
      });
      // spm_train's model (written without a flush) is flushed before it is moved into place.
      ok(files.some((f) => f.endsWith(join("tok", "spiece.model"))), files.join(", "));
      const published = basename(join(path, ".."));
      // (The training's temporary folder is still there: it is removed after; and the lock's.)
      deepEqual(
        flushesOf(flushes, tokenizers).map((names) =>
          names.filter((n) => !n.startsWith(".tmp-") && n !== ".locks")
        ),
        [[published]],
      );
      // Before that, the folder it renamed into place, under its temporary name.
      const at = flushes.findIndex((f) => f.dir === tokenizers);
      const final = flushes.slice(0, at).filter((f) => basename(f.dir) === "final");
      deepEqual(final.map((f) => f.entries), [["spiece.model", "tokenizer.json"]]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("ensureTaskTokenizer() refuses an empty corpus naming the folder, and what the default data folder was made of", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const named = join(dir, "named");
    const cache = join(dir, "cache");
    const shared = join(dir, "shared");
    for (const d of [named, join(cache, "data")]) await Deno.mkdir(d, { recursive: true });
    const opts = { vocabSize: 500, cacheDir: join(dir, "tok"), log: () => {} };
    const remedy = "; run `deno task download`, or pass --data-dir (a folder in the official " +
      "layout: glue/<Task>/…, super_glue/<Task>/…)";
    const cases: [Record<string, string | undefined>, string, string][] = [
      // A folder of its own: named, without the default folder's roots.
      [{ HYPERPROMPT_DATA: undefined }, named, named],
      // The default data folder (here the download cache: no mirror), with the roots it is
      // chosen from, as pretrainBackbone says it.
      [
        { HYPERPROMPT_DATA: undefined },
        join(cache, "data"),
        `${cache}/data (the default data folder: per file the download cache ${cache}/data where ` +
        `its manifest lists it, no offline mirror at "${shared}/data"; HYPERPROMPT_SHARED=DIR ` +
        "names it)",
      ],
      [{ HYPERPROMPT_DATA: named }, named, `${named} (HYPERPROMPT_DATA)`],
    ];
    for (const [env, dataDir, where] of cases) {
      await withEnv(
        { HYPERPROMPT_SHARED: shared, HYPERPROMPT_CACHE: cache, ...env },
        () =>
          rejects(() => ensureTaskTokenizer(dataDir, opts), {
            message: `tokenizer: the task corpus is empty: no train or test split of any task in ` +
              `${where}${remedy}`,
          }),
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ensureTaskTokenizer() removes the temporaries of killed trainings when it opens the cache", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const dataDir = await rteOnlyDataDir(dir);
    const cacheDir = join(dir, "cache");
    const tokenizers = join(cacheDir, "tokenizers");
    await Deno.mkdir(tokenizers, { recursive: true });
    const dead = ".tmp-999999999-0123456789ab"; // nobody holds it: its training was killed
    // An earlier version's unlocked name (kept until a day old), other names, and a training
    // of this process in progress are kept.
    const kept = [".tmp-0123456789abcdef", "spm500-0123456789abcdef", ".tmp-1-2", "tmp-3"];
    for (const n of [dead, ...kept]) await Deno.mkdir(join(tokenizers, n));
    const live = await makeHeldTempDir(tokenizers, "");
    try {
      await rejects(
        () => ensureTaskTokenizer(dataDir, { vocabSize: 500, cacheDir, spmTrain: "/nonexistent" }),
        SpmUnavailableError,
      );
      deepEqual(
        [...Deno.readDirSync(tokenizers)].map((e) => e.name).sort(),
        [...kept, basename(live.path)].sort(),
      );
    } finally {
      live.release();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

function tinyRandomSpec(model: string): RunSpec {
  const body: Omit<RunSpec, "id"> = {
    profile: "t",
    model,
    backbone: "random",
    pretrain: { vocabSize: 500 },
    benchmark: "glue",
    tasks: ["rte"],
    method: { name: "mtl", label: "mtl", config: {} },
    seed: 0,
    train: DEFAULT_TRAIN,
    backend: "cpu",
  };
  return { id: runId(body), ...body };
}

Deno.test({
  name: "randomInitTokenizer(): the task tokenizer for tiny presets, else the fixture tokenizer",
  ignore: !hasSpm,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const dataDir = await rteOnlyDataDir(dir);
      const cache = join(dir, "cache");
      // No spm_train on PATH and nothing cached: the shared fixture tokenizer.
      const none = await withEnv(
        { HYPERPROMPT_CACHE: cache, PATH: "/nonexistent" },
        () => randomInitTokenizer(tinyRandomSpec("tiny-v1_1"), dataDir),
      );
      ok(none.source.startsWith("fixture:"), none.source);
      const fixture = await T5Tokenizer.fromFile(defaultTokenizer());
      equal(none.source, `fixture:${defaultTokenizer()}`);
      equal(none.tokenizer.vocabSize, fixture.vocabSize);
      const task = await withEnv(
        { HYPERPROMPT_CACHE: cache },
        () => randomInitTokenizer(tinyRandomSpec("tiny-v1_1"), dataDir),
      );
      const built = await ensureTaskTokenizer(dataDir, {
        vocabSize: 500,
        cacheDir: cache,
        log: () => {},
      });
      equal(built.cached, true);
      equal(task.source, `task-spm:${built.path}`);
      // Published presets keep the fixture tokenizer (their checkpoints bring their own).
      const pub = await withEnv(
        { HYPERPROMPT_CACHE: cache },
        () => randomInitTokenizer(tinyRandomSpec("t5-small"), dataDir),
      );
      ok(pub.source.startsWith("fixture:"), pub.source);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("pretrainBackbone() without spm_train uses the reference tokenizer with T5 sentinels", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const rte = await Deno.readTextFile(sharedPath("data/glue/RTE/train.tsv"));
    const corpus = join(dir, "corpus.txt");
    await Deno.writeTextFile(
      corpus,
      rte.split("\n").slice(1, 400).flatMap((l) => l.split("\t").slice(1, 3)).join("\n"),
    );
    const opts = {
      preset: "tiny-v1_1",
      corpusFiles: [corpus],
      vocabSize: 600,
      steps: 3,
      batchSize: 4,
      chunkLength: 16,
      learningRate: 1e-3,
      seed: 2,
      cacheDir: join(dir, "cache"),
      spmTrain: "/nonexistent/spm_train",
      log: () => {},
    };
    const r = await pretrainBackbone(opts);
    ok(r.info.tokenizer.startsWith("reference "), r.info.tokenizer);
    const tok = await T5Tokenizer.fromFile(join(r.dir, "tokenizer.json"));
    equal(tok.vocabSize, 4100, "4,000 reference pieces + 100 sentinels");
    equal(tok.tokenToId("<extra_id_0>"), 4099);
    const ref = await T5Tokenizer.fromFile(referenceTokenizer());
    deepEqual(tok.encode("a b c"), ref.encode("a b c"), "ordinary ids unchanged");
    // With spm_train the corpus tokenizer differs, so the backbone lands under another key.
    if (hasSpm) {
      const { spmTrain: _, ...rest } = opts;
      const withSpm = await pretrainBackbone(rest);
      ok(withSpm.dir !== r.dir, "cache key covers the tokenizer");
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pretrainBackbone() without dataDir checks the folder HYPERPROMPT_DATA names", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await withEnv({ HYPERPROMPT_DATA: join(dir, "nope") }, () =>
      rejects(
        pretrainBackbone({
          preset: "tiny-v1_1",
          vocabSize: 500,
          steps: 1,
          batchSize: 1,
          chunkLength: 8,
          learningRate: 1e-3,
          seed: 0,
          cacheDir: join(dir, "cache"),
          log: () => {},
        }),
        { message: `HYPERPROMPT_DATA=${join(dir, "nope")}: no such folder` },
      ));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main() (deno task pretrain): every flag that takes a value refuses an empty one in one line (exit 2, nothing pretrained)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // Everything else valid: an accepted "" would pretrain (--data-dir "" and --seed "" were
    // read as no folder and seed 0).
    const cache = join(dir, "cache");
    const flags: [string, string][] = [
      ["preset", "a model preset, e.g. tiny-v1_1"],
      ["data-dir", "a folder"],
      ["corpus", "a text file"],
      ["tokenizer", "a tokenizer.json file"],
      ["vocab-size", "an integer >= 116"],
      ["steps", "a positive integer"],
      ["batch-size", "a positive integer"],
      ["chunk-length", "a positive integer"],
      ["lr", "a positive number, e.g. 1e-3"],
      ["seed", "an integer >= 0"],
      ["backend", "auto|tensorflow|webgpu|wasm|wasm+blas|cpu"],
      ["cache-dir", "a folder"],
    ];
    let pretrained = 0;
    const pretrain: typeof pretrainBackbone = () => {
      pretrained++;
      return Promise.reject(new Error("not reached"));
    };
    for (const [flag, takes] of flags) {
      for (const empty of [[`--${flag}=`], [`--${flag}`, ""]]) {
        const args = [...(flag === "cache-dir" ? [] : ["--cache-dir", cache]), ...empty];
        const err: string[] = [];
        equal(await main(args, { error: (s) => err.push(s), pretrain }), 2, args.join(" "));
        deepEqual(err, [
          `--${flag} needs a value (${takes}), got an empty one ("": an unset ` +
          `variable?); deno task pretrain --help lists the flags`,
        ]);
      }
    }
    equal(pretrained, 0, "nothing was pretrained");
    deepEqual([...Deno.readDirSync(dir)], [], "no cache folder made");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main() (deno task pretrain) checks every argument before the corpus is read (exit 2), then fails with 1", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = join(dir, "a-file");
    await Deno.writeTextFile(file, "not json");
    const cache = join(dir, "cache");
    const base = ["--preset", "tiny-v1_1", "--cache-dir", cache];
    // A folder without a train or test split: the task corpus would be empty.
    const empty = join(dir, "empty");
    await Deno.mkdir(join(empty, "glue", "RTE"), { recursive: true });
    await Deno.writeTextFile(join(empty, "glue", "RTE", "dev.tsv"), "x\n"); // a scored split
    const bpe = join(dir, "bpe.json");
    await Deno.writeTextFile(bpe, JSON.stringify({ model: { type: "BPE", vocab: {} } }));
    // Corpus files with only blank lines (spaces, tabs, CRLF) between them.
    const blank = join(dir, "blank.txt");
    await Deno.writeTextFile(blank, "\n  \n\t\r\n");
    const blank2 = join(dir, "blank2.txt");
    await Deno.writeTextFile(blank2, "");
    const list = join(dir, "list.json");
    await Deno.writeTextFile(list, "[1]");
    // Unigram but not a tokenizer T5Tokenizer can build: the check goes past withSentinels.
    const unigram = join(dir, "unigram.json");
    await Deno.writeTextFile(unigram, JSON.stringify({ model: { type: "Unigram", vocab: [] } }));
    const cases: [string[], RegExp][] = [
      [
        ["--stpes", "3"],
        /^unknown flag --stpes \(did you mean --steps\?\); deno task pretrain --help lists the flags$/,
      ],
      [
        ["--steps"],
        /^--steps needs a value \(a positive integer\); deno task pretrain --help lists the flags$/,
      ],
      [
        ["--lr", "--steps", "3"],
        /^--lr needs a value \(.*\), got the flag --steps after it; /,
      ],
      [
        ["--seed", "1", "--seed", "2"],
        /^--seed given twice \("1", then "2"\); give it once; /,
      ],
      [
        ["tiny"],
        /^unexpected argument "tiny": deno task pretrain takes only flags; .*flags$/,
      ],
      [
        [...base, "--seed", "-1"],
        /^--seed must be an integer >= 0, got "-1"; deno task pretrain --help lists the flags$/,
      ],
      [[...base, "--data-dir", join(dir, "nope")], /^--data-dir .*nope: no such folder/],
      [[...base, "--backend", "gpu"], /^--backend must be one of auto, .*cpu, got "gpu"/],
      [[...base, "--vocab-size", "50"], /^--vocab-size must be an integer >= 116, got "50"/],
      [[...base, "--lr", "Infinity"], /^--lr must be a positive number, got "Infinity"/],
      // Number() reads these as 16, 3 and 1: typos, not values.
      [[...base, "--steps", "0x10"], /^--steps must be a positive integer, got "0x10"/],
      [[...base, "--seed", "0b11"], /^--seed must be an integer >= 0, got "0b11"/],
      [[...base, "--lr", "0x1"], /^--lr must be a positive number, got "0x1"/],
      [
        [...base, "--chunk-length", "2100"],
        /^--chunk-length 2100 gives 105 noise spans, more than the task tokenizer's 100 sentinels: use 2009 or less; deno task pretrain --help lists the flags$/,
      ],
      [[...base, "--corpus", join(dir, "nope.txt")], /^--corpus .*nope\.txt: no such file/],
      [[...base, "--tokenizer", dir], /^--tokenizer .*: is a folder, not a file/],
      [
        [...base, "--corpus", blank, "--corpus", blank2],
        /^--corpus \/\S*blank\.txt, \/\S*blank2\.txt: no non-blank line in any of the files, so /,
      ],
      [
        [...base, "--data-dir", empty],
        new RegExp(
          `^--data-dir ${empty}: no train or test split of any task there, so the task corpus ` +
            "would be empty; put the files there in the official layout \\(glue/<Task>/…, " +
            "super_glue/<Task>/…\\), or pass --corpus; deno task pretrain --help lists the flags$",
        ),
      ],
      // A file named on the command line that cannot be used: 2, the flag first, then the file.
      [
        [...base, "--tokenizer", bpe],
        /^--tokenizer \/\S*bpe\.json: field "model" must be a Unigram model with a vocab list;/,
      ],
      [
        [...base, "--tokenizer", file],
        /^--tokenizer \/\S*a-file:1:2: invalid JSON: Unexpected token 'o'; deno task pretrain/,
      ],
      [
        [...base, "--tokenizer", list],
        /^--tokenizer \/\S*list\.json: must be a tokenizer\.json object, got an array;/,
      ],
      [[...base, "--tokenizer", unigram], /^--tokenizer \/\S*unigram\.json: /],
      // Pairs of which one would be dropped silently (the first named file is never read).
      [
        [...base, "--tokenizer", bpe, "--vocab-size", "512"],
        /^--tokenizer \/\S*bpe\.json and --vocab-size 512 contradict: --vocab-size sizes a vocab/,
      ],
      [
        [...base, "--corpus", blank, "--data-dir", empty],
        /^--corpus and --data-dir \/\S*empty contradict: --data-dir is read only for the task /,
      ],
      [["--preset", "tiny-v1_1", "--cache-dir", file], /^--cache-dir .*a-file: is a file/],
      // A cache folder to create on a disk that takes no file (the injected read-only one; h388:
      // a bare "Permission denied" from a lock file's folder, exit 1).
      [
        ["--preset", "tiny-v1_1", "--cache-dir", join(dir, "ro", "cache")],
        /^--cache-dir \S*ro\/cache: its nearest existing folder \S*ro cannot be written \(Read-only file system\)/,
      ],
      [["--preset", "nosuch"], /^Unknown T5 preset "nosuch"/],
    ];
    let pretrained = 0;
    const pretrain: typeof pretrainBackbone = () => {
      pretrained++;
      return Promise.reject(new Error("not reached"));
    };
    await Deno.mkdir(join(dir, "ro"));
    const cannotWrite = (d: string) => d === join(dir, "ro") ? "Read-only file system" : undefined;
    for (const [args, want] of cases) {
      const err: string[] = [];
      equal(
        await main(args, { error: (s) => err.push(s), pretrain, cannotWrite }),
        2,
        args.join(" "),
      );
      equal(err.length, 1);
      ok(want.test(err[0]!), `${args.join(" ")}: ${err[0]}`);
    }
    equal(pretrained, 0, "nothing was pretrained");
    // An existing cache on that disk is used as it is (a read-only one that holds the backbone).
    const found: typeof pretrainBackbone = () =>
      Promise.resolve(
        { dir: join(dir, "ro"), info: { losses: [], steps: 0 } } as unknown as Awaited<
          ReturnType<typeof pretrainBackbone>
        >,
      );
    const roErr: string[] = [];
    equal(
      await main(["--preset", "tiny-v1_1", "--cache-dir", join(dir, "ro")], {
        error: (s) => roErr.push(s),
        log: () => {},
        pretrain: found,
        cannotWrite,
      }),
      0,
      roErr.join("\n"),
    );
    // HYPERPROMPT_DATA, standing in for --data-dir, is checked as well when the task corpus is
    // read from it; not with --corpus (then no data folder is read).
    const named: [string, RegExp][] = [
      [join(dir, "nope"), /^HYPERPROMPT_DATA=.*nope: no such folder; deno task pretrain --help/],
      [file, /^HYPERPROMPT_DATA=.*a-file: is a file, not a folder; deno task pretrain --help/],
      [empty, /^HYPERPROMPT_DATA=.*empty: no train or test split of any task there, so the /],
    ];
    for (const [data, want] of named) {
      const err: string[] = [];
      const code = await withEnv(
        { HYPERPROMPT_DATA: data },
        () => main(base, { error: (s) => err.push(s), pretrain }),
      );
      equal(code, 2, data);
      deepEqual(err.length, 1);
      ok(want.test(err[0]!), String(err[0]));
    }
    equal(pretrained, 0, "nothing was pretrained");
    // HYPERPROMPT_BACKEND, standing in for --backend auto, is refused before any work as well.
    const backendErr: string[] = [];
    const backendCode = await withEnv(
      { HYPERPROMPT_BACKEND: "gpu9" },
      () => main(base, { error: (s) => backendErr.push(s), pretrain }),
    );
    equal(backendCode, 2, "HYPERPROMPT_BACKEND=gpu9");
    deepEqual(backendErr, [
      'HYPERPROMPT_BACKEND="gpu9" is not one of auto, tensorflow, webgpu, wasm, ' +
      "wasm+blas, cpu; deno task pretrain --help lists the flags",
    ]);
    equal(pretrained, 0, "nothing was pretrained");
    const corpusFile = join(dir, "c.txt");
    await Deno.writeTextFile(corpusFile, "text\n");
    await withEnv(
      { HYPERPROMPT_DATA: join(dir, "nope") },
      () => main([...base, "--corpus", corpusFile], { error: () => {}, pretrain }),
    );
    equal(pretrained, 1, "with --corpus the data folder is not read");
    // A malformed task file of a folder named by --data-dir or HYPERPROMPT_DATA: that folder
    // cannot be used (2, as bench refuses it, no --help hint); of the default folder, 1.
    const withTrain = join(dir, "with-train");
    await Deno.mkdir(join(withTrain, "glue", "RTE"), { recursive: true });
    await Deno.writeTextFile(join(withTrain, "glue", "RTE", "train.tsv"), "x\n");
    const malformed: typeof pretrainBackbone = () =>
      Promise.reject(new DataError("glue/RTE/train.tsv", 5, "expected 4 columns", "sentence1"));
    const wantLine = 'glue/RTE/train.tsv:5: field "sentence1": expected 4 columns';
    for (
      const [args, env, code] of [
        [[...base, "--data-dir", withTrain], {}, 2],
        [base, { HYPERPROMPT_DATA: withTrain }, 2],
        [base, { HYPERPROMPT_DATA: undefined }, 1],
      ] as const
    ) {
      const e: string[] = [];
      const got = await withEnv(
        env,
        () => main([...args], { error: (l) => e.push(l), pretrain: malformed }),
      );
      equal(got, code, `${args.join(" ")} ${JSON.stringify(env)}`);
      deepEqual(e, [wantLine]);
    }
    // A tokenizer file that is not JSON is named by pretrainBackbone too.
    const corpus = join(dir, "corpus.txt");
    await Deno.writeTextFile(corpus, "a few words\nof text\n");
    await rejects(pretrainBackbone(quickOptions(dir, corpus, { tokenizer: file })), {
      message: `${file}:1:2: invalid JSON: Unexpected token 'o'`,
    });
    // The default data folder (no --data-dir, no HYPERPROMPT_DATA) without a split: a failure
    // while working (1, as data missing after a download), naming the folders it was made of.
    const err: string[] = [];
    const mirrorless = join(dir, "shared");
    const code = await withEnv(
      { HYPERPROMPT_DATA: undefined, HYPERPROMPT_SHARED: mirrorless, HYPERPROMPT_CACHE: empty },
      () => main([...base, "--steps", "1"], { error: (s) => err.push(s), log: () => {} }),
    );
    equal(code, 1, "a failure while working");
    deepEqual(err, [
      `pretrain: the task corpus is empty: no train or test split of any task in ${empty}/data ` +
      `(the default data folder: per file the download cache ${empty}/data where its manifest ` +
      `lists it, no offline mirror at "${mirrorless}/data"; HYPERPROMPT_SHARED=DIR names it); ` +
      "run `deno task download`, or pass --data-dir (a folder in the official layout: " +
      "glue/<Task>/…, super_glue/<Task>/…) or --corpus",
    ]);
    // A mirror that exists but holds no task: named as the mirror read.
    await Deno.mkdir(join(mirrorless, "data"), { recursive: true });
    err.length = 0;
    await withEnv(
      { HYPERPROMPT_DATA: undefined, HYPERPROMPT_SHARED: mirrorless, HYPERPROMPT_CACHE: empty },
      () => main([...base, "--steps", "1"], { error: (s) => err.push(s), log: () => {} }),
    );
    equal(err.length, 1);
    ok(
      err[0]!.includes(`where its manifest lists it, else the mirror ${mirrorless}/data); `),
      err[0]!,
    );
    const out: string[] = [];
    equal(await main(["--help"], { log: (s) => out.push(s) }), 0);
    equal(await main(["-h"], { log: () => {} }), 0, "-h is --help");
    // As in every tool (runCli): --help after other flags, even a mistyped one, prints the usage.
    equal(await main(["--stpes", "3", "--help"], { log: (s) => out.push(s) }), 0);
    equal(out.length, 2);
    equal(out[1], out[0]);
    ok(
      /--backend X +auto, tensorflow, webgpu, wasm, wasm\+blas, cpu/.test(out[0]!),
      String(out[0]),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A corpus file of RTE train sentences (a few hundred lines). */
/**
 * Options of a one-step pretraining on the reference tokenizer (no spm_train): tiny-v1_1, 600
 * ids, batch 2 of 16 tokens, lr 1e-3, seed 0, cpu, the cache under `dir`; `extra` overrides.
 */
function quickOptions(dir: string, corpus: string, extra: Partial<PretrainOptions> = {}) {
  return {
    preset: "tiny-v1_1",
    corpusFiles: [corpus],
    tokenizer: referenceTokenizer(),
    vocabSize: 600,
    steps: 1,
    batchSize: 2,
    chunkLength: 16,
    learningRate: 1e-3,
    seed: 0,
    backend: "cpu" as BackendName,
    cacheDir: join(dir, "cache"),
    log: () => {},
    ...extra,
  };
}

Deno.test("pretrainBackbone() lets timers run between its steps once a second (a run claim's heartbeat, which it runs inside)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const corpus = await rteCorpusFile(dir, 60);
    let clock = 0;
    let beats = 0;
    // The timer's count at each reading of the loop's clock (once per step, once before).
    const seen: number[] = [];
    const beating = setInterval(() => beats++, 0);
    try {
      // A clock one interval on per reading: every step is due.
      await pretrainBackbone(quickOptions(dir, corpus, {
        steps: 4,
        now: () => {
          seen.push(beats);
          return clock += 1000;
        },
      }));
    } finally {
      clearInterval(beating);
    }
    ok(seen.length >= 5, `the clock was read at each step: ${seen}`);
    // Between the readings of the steps, the timer ran (the steps await no I/O of their own).
    const ran = seen.slice(1).filter((b, i) => b > seen[i]!).length;
    ok(ran >= 3, `timers ran between steps: ${seen}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function rteCorpusFile(dir: string, lines = 400): Promise<string> {
  const rte = await Deno.readTextFile(sharedPath("data/glue/RTE/train.tsv"));
  const corpus = join(dir, "corpus.txt");
  await Deno.writeTextFile(
    corpus,
    rte.split("\n").slice(1, lines).flatMap((l) => l.split("\t").slice(1, 3)).join("\n"),
  );
  return corpus;
}

/**
 * What 3 steps of `pretrainBackbone` on the cpu backend give (quickOptions, 60 RTE lines) under
 * {@link PRETRAIN_CODE_VERSION} `codeVersion`: the logged losses (steps 1 and 3) and the first 16
 * hex digits of a SHA-256 of every saved tensor's name and float32 bytes, in name order. The cpu
 * backend is plain JavaScript (IEEE float32 arithmetic, V8's portable Math functions), so these
 * are exact on every host: any change to the init, optimizer, objective, loss, batching or corpus
 * order changes them.
 */
const PRETRAIN_FINGERPRINT = {
  codeVersion: 4,
  losses: [9.09110164642334, 7.986204147338867],
  weights: "fbdbe352554ad459",
};

Deno.test("pretraining fingerprint: 3 cpu steps give the weights committed for PRETRAIN_CODE_VERSION", async () => {
  // The backbone cache is keyed by the settings and PRETRAIN_CODE_VERSION, not by the code: a
  // change to what pretraining computes must bump the version, or stale backbones are reused.
  const dir = await Deno.makeTempDir();
  try {
    const r = await pretrainBackbone(
      quickOptions(dir, await rteCorpusFile(dir, 60), { steps: 3 }),
    );
    const ck = await loadHfFolder(r.dir);
    const hash = createHash("sha256");
    try {
      for (const name of [...ck.tensors.keys()].sort()) {
        const t = ck.tensors.get(name)!;
        const values = (await t.data()) as Float32Array;
        hash.update(`${name} ${t.dtype} [${t.shape}]\n`);
        hash.update(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
      }
    } finally {
      for (const t of ck.tensors.values()) t.dispose();
    }
    const got = {
      codeVersion: PRETRAIN_CODE_VERSION,
      losses: r.info.losses.map((l) => l.loss),
      weights: hash.digest("hex").slice(0, 16),
    };
    deepEqual(
      got,
      PRETRAIN_FINGERPRINT,
      "pretraining behaviour changed: bump PRETRAIN_CODE_VERSION in benchmarks/pretrain.ts and " +
        `update this fingerprint (PRETRAIN_FINGERPRINT in benchmarks/pretrain_test.ts) to ` +
        JSON.stringify({ ...got, codeVersion: "the new PRETRAIN_CODE_VERSION" }),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pretrainBackbone() that fails while training releases the model and optimizer and gives the backend back", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // The caller (a bench run) had selected wasm; the pretraining runs on cpu.
    await selectBackend("wasm", { log: () => {} });
    const before = tf.memory().numTensors;
    // AdamW's first step moves every weight by about lr: 1e30 overflows float32 at step 2.
    await rejects(
      pretrainBackbone(
        quickOptions(dir, await rteCorpusFile(dir), { steps: 3, learningRate: 1e30 }),
      ),
      /pretrain: non-finite loss NaN at step 2; lower --lr/,
    );
    equal(tf.memory().numTensors, before, "weights and optimizer slots were disposed");
    equal(currentBackendInfo()?.requested, "wasm", "the caller's backend is selected again");
    equal(tf.getBackend(), "wasm");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pretrainBackbone() refuses a chunk length whose noise spans outnumber the sentinels, before tokenizing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const opts = quickOptions(dir, await rteCorpusFile(dir, 40), { batchSize: 4 });
    // 2010 tokens: round(301.5) = 302 noise tokens in round(100.67) = 101 spans; 100 sentinels.
    await rejects(
      pretrainBackbone({ ...opts, chunkLength: 2010 }),
      new RegExp(
        "pretrain: a chunk of 2010 tokens has 101 noise spans but .*tokenizer\\.json has " +
          "100 sentinels \\(<extra_id_0> … <extra_id_99>\\); lower --chunk-length to 2009 or less",
      ),
    );
    // 2009 tokens: 301 noise tokens, 100 spans; it goes on (and this small corpus is too short).
    await rejects(
      pretrainBackbone({ ...opts, chunkLength: 2009 }),
      /the corpus gives \d+ chunks of 2009 tokens, fewer than one batch/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pretrainBackbone(): every setting that changes the weights is in the cache key, and only those reuse it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const corpus = await rteCorpusFile(dir, 60);
    const tokenizer = join(dir, "tokenizer.json");
    const ref = JSON.parse(await Deno.readTextFile(referenceTokenizer()));
    await Deno.writeTextFile(tokenizer, JSON.stringify(ref));
    const base = quickOptions(dir, corpus, { tokenizer });
    const first = await pretrainBackbone(base);
    equal(first.cached, false);
    // The same settings (a vocabSize that a given tokenizer ignores, another log) reuse it.
    const same = await pretrainBackbone({ ...base, vocabSize: 700, log: () => {} });
    deepEqual([same.cached, same.dir], [true, first.dir]);
    // Another corpus, tokenizer, preset or training setting is another backbone.
    const otherCorpus = join(dir, "corpus2.txt");
    await Deno.writeTextFile(otherCorpus, (await Deno.readTextFile(corpus)) + "\none more line");
    const otherTokenizer = join(dir, "tokenizer2.json");
    ref.model.vocab[10][1] -= 1; // one piece's score: another segmentation
    await Deno.writeTextFile(otherTokenizer, JSON.stringify(ref));
    const variants: [string, Partial<typeof base>][] = [
      ["corpus", { corpusFiles: [otherCorpus] }],
      ["tokenizer", { tokenizer: otherTokenizer }],
      ["preset", { preset: "tiny-relu" }],
      ["steps", { steps: 2 }],
      ["batchSize", { batchSize: 3 }],
      ["chunkLength", { chunkLength: 17 }],
      ["learningRate", { learningRate: 2e-3 }],
      ["seed", { seed: 1 }],
      ["backend", { backend: "wasm" }],
    ];
    const dirs = new Set([first.dir]);
    const built = new Map<string, string>();
    for (const [what, change] of variants) {
      const r = await pretrainBackbone({ ...base, ...change });
      equal(r.cached, false, what);
      ok(!dirs.has(r.dir), `${what}: a new folder`);
      dirs.add(r.dir);
      built.set(what, r.dir);
    }
    // "auto" is keyed by what it resolves to here: to cpu, the cpu backbone (the same
    // computation); to another backend, another folder. Before, every "auto" was one key, so the
    // first machine to fill a shared cache decided the weights the others read.
    // The caller's backend is selected again after "auto" is resolved for the key, on a cache
    // hit and after a build alike (a fine-tuning run calls this after selecting its own).
    const auto = async (to: string) => {
      await selectBackend("cpu", { log: () => {} });
      const r = await withEnv(
        { HYPERPROMPT_BACKEND: to },
        () => pretrainBackbone({ ...base, backend: "auto" }),
      );
      equal(currentBackendInfo()?.requested, "cpu", `the caller's cpu again after auto → ${to}`);
      return r;
    };
    const autoCpu = await auto("cpu");
    deepEqual([autoCpu.cached, autoCpu.dir], [true, first.dir]);
    await selectBackend("wasm", { log: () => {} });
    const hit = await withEnv(
      { HYPERPROMPT_BACKEND: "cpu" },
      () => pretrainBackbone({ ...base, backend: "auto" }),
    );
    deepEqual([hit.cached, currentBackendInfo()?.requested], [true, "wasm"], "a cache hit too");
    // HYPERPROMPT_BACKEND=wasm asks for wasm as --backend wasm does: the pure-wasm backbone
    // (before, selectBackend's wasm+blas, whose weights depend on the host's CPU).
    const autoWasm = await auto("wasm");
    deepEqual([autoWasm.cached, autoWasm.dir], [true, built.get("backend")]);
    equal(autoWasm.info.backend, "wasm");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pretrainBackbone() on wasm is pure wasm, never OpenBLAS, and gives the caller its BLAS back", async () => {
  // The ci profile's backbone ("backend": "wasm") must be the same on every host: OpenBLAS picks
  // its kernels by CPU family (and may be missing), tfjs's wasm kernels do not. Where OpenBLAS is
  // not installed this holds trivially; here it is (.ci/run installs it).
  const dir = await Deno.makeTempDir();
  try {
    const corpus = await rteCorpusFile(dir, 60);
    const caller = await selectBackend("wasm", { log: () => {} });
    const r = await pretrainBackbone(quickOptions(dir, corpus, { backend: "wasm" }));
    equal(r.info.backend, "wasm");
    equal(currentBackendInfo()?.name, caller.name, "the caller's backend, with its BLAS");
    // The record says what was asked for and which code trained it, as written.
    const record = JSON.parse(await Deno.readTextFile(join(r.dir, "pretrain.json")));
    equal(record.requestedBackend, "wasm");
    deepEqual(record.code, { gitSha: codeGitState().sha, gitDirty: codeGitState().dirty });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "characterCoverage(): 1 for the mirror's few characters, 0.9995 where thousands of rare ones would leave spm_train no room",
  ignore: !hasSpm,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const rte = (await loadExamples("rte", "train", sharedPath("data"))).map((e) => e.input);
      equal(characterCoverage(rte.join("\n"), 4096), 1);
      // 400 rare characters, each once (as QQP and ReCoRD bring in a full download).
      const rare = Array.from({ length: 400 }, (_, i) => `q ${String.fromCodePoint(0x4e00 + i)}`);
      const text = [...rte, ...rare].join("\n");
      equal(characterCoverage(text, 500), 0.9995);
      const corpus = join(dir, "corpus.txt");
      await Deno.writeTextFile(corpus, text);
      // With every character kept, 400 pieces cannot hold them; with the coverage chosen, they do.
      await rejects(
        trainSentencePiece([corpus], {
          vocabSize: 500,
          outDir: join(dir, "a"),
          characterCoverage: 1,
        }),
        /use a vocabSize of at least/,
      );
      const tok = await T5Tokenizer.fromFile(
        await trainSentencePiece([corpus], {
          vocabSize: 500,
          outDir: join(dir, "b"),
          characterCoverage: characterCoverage(text, 500),
        }),
      );
      ok(tok.vocabSize <= 500, `vocab ${tok.vocabSize}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("pretrainBackbone() keeps the folder that a concurrent pretraining of the same key published first", async () => {
  // Two bench processes on a cold cache both miss it and both pretrain. The first to finish
  // publishes the folder and goes on to load it; the second must not swap its own (identical)
  // folder in, which moves the first one's files away (and deletes them) under its reader.
  const dir = await Deno.makeTempDir();
  try {
    const base = {
      preset: "tiny-v1_1",
      corpusFiles: [await rteCorpusFile(dir, 60)],
      tokenizer: referenceTokenizer(),
      vocabSize: 600,
      steps: 2,
      batchSize: 2,
      chunkLength: 16,
      learningRate: 1e-3,
      seed: 0,
      backend: "cpu" as BackendName,
      log: () => {},
    };
    // The other process's folder: the key does not depend on the cache root.
    const theirs = await pretrainBackbone({ ...base, cacheDir: join(dir, "other") });
    const backbones = join(dir, "cache", "backbones");
    const target = join(backbones, basename(theirs.dir));
    // It is published while this process trains (its cache lookup has missed), with a marker
    // standing for the other process's use of it.
    const log = (line: string) => {
      if (!line.startsWith("pretrain: step 1/")) return;
      Deno.mkdirSync(target, { recursive: true });
      for (const e of Deno.readDirSync(theirs.dir)) {
        Deno.copyFileSync(join(theirs.dir, e.name), join(target, e.name));
      }
      Deno.writeTextFileSync(join(target, "in-use"), "the other process's folder");
    };
    const tensors = tf.memory().numTensors;
    const mine = await pretrainBackbone({ ...base, cacheDir: join(dir, "cache"), log });
    equal(mine.dir, target);
    equal(
      await Deno.readTextFile(join(target, "in-use")),
      "the other process's folder",
      "the published folder was replaced",
    );
    equal(mine.cached, true, "the folder returned is the one found in place");
    deepEqual(mine.info, theirs.info);
    deepEqual(
      [...Deno.readDirSync(backbones)].map((e) => e.name).sort(),
      [".locks", basename(target)],
      "nothing of this process's save is left beside it",
    );
    deepEqual([...Deno.readDirSync(join(backbones, ".locks"))], [], "no lock file left");
    equal(tf.memory().numTensors, tensors);

    // A folder of that name that is no finished backbone (no pretrain.json) is replaced.
    const stray = join(dir, "cache3", "backbones", basename(theirs.dir));
    await Deno.mkdir(stray, { recursive: true });
    await Deno.writeTextFile(join(stray, "stray.txt"), "not a backbone");
    const rebuilt = await pretrainBackbone({ ...base, cacheDir: join(dir, "cache3") });
    deepEqual([rebuilt.dir, rebuilt.cached], [stray, false]);
    deepEqual(
      [...Deno.readDirSync(stray)].map((e) => e.name).sort(),
      [...Deno.readDirSync(theirs.dir)].map((e) => e.name).sort(),
    );
    deepEqual(rebuilt.info.losses, theirs.info.losses);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pretrainBackbone() rebuilds a broken cached folder, saying why, and stops at a file in the folder's place", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const opts = quickOptions(dir, await rteCorpusFile(dir, 60));
    const first = await pretrainBackbone(opts);
    const weights = join(first.dir, "model.safetensors");
    const good = await Deno.readFile(weights);
    // The record lists what was written, with sizes and digests.
    const recorded = first.info.files!;
    deepEqual(Object.keys(recorded), [
      "config.json",
      "generation_config.json",
      "model.safetensors",
      "tokenizer.json",
    ]);
    equal(recorded["model.safetensors"]!.bytes, good.length);
    const file = join(first.dir, "pretrain.json");
    const record = await Deno.readTextFile(file);
    // Each break is found on the next use, said, and built again (the same weights).
    const breaks: [string, () => Promise<void>, RegExp][] = [
      [
        "invalid JSON",
        () => Deno.writeTextFile(file, '{"key": "x",\n  "steps": }'),
        /pretrain\.json:2:12: invalid JSON/,
      ],
      [
        "not a record",
        () => Deno.writeTextFile(file, "null"),
        /pretrain\.json: not a pretraining record/,
      ],
      ["weights gone", () => Deno.remove(weights), /model\.safetensors is missing/],
      [
        "weights truncated",
        () => Deno.writeFile(weights, good.subarray(0, 1000)),
        /model\.safetensors is not the file it was written as \(1000 bytes/,
      ],
      [
        "tokenizer gone",
        () => Deno.remove(join(first.dir, "tokenizer.json")),
        /tokenizer\.json is missing/,
      ],
      [
        "another folder's record",
        () =>
          Deno.writeTextFile(
            file,
            JSON.stringify({ ...JSON.parse(record), key: "0123456789abcdef" }),
          ),
        /the record of tiny-v1_1-0123456789abcdef, not of this folder/,
      ],
    ];
    for (const [what, edit, why] of breaks) {
      await edit();
      const lines: string[] = [];
      const again = await pretrainBackbone({ ...opts, log: (l) => lines.push(l) });
      equal(again.cached, false, what);
      const said = lines.find((l) => l.includes("is broken")) ?? "";
      ok(
        said.startsWith(`pretrain: the cached backbone ${first.dir} is broken (`),
        `${what}: ${lines}`,
      );
      ok(why.test(said), `${what}: ${said}`);
      ok(said.endsWith("; building it again"), said);
      deepEqual(await Deno.readFile(weights), good, `${what}: the same weights`);
    }
    // Whole again: used as it is.
    equal((await pretrainBackbone(opts)).cached, true);
    // A file where the folder should be fails at the lookup too, before any training.
    await Deno.remove(first.dir, { recursive: true });
    await Deno.writeTextFile(first.dir, "");
    const lines: string[] = [];
    await rejects(
      pretrainBackbone({ ...opts, log: (l) => lines.push(l) }),
      Deno.errors.NotADirectory,
    );
    deepEqual(lines.filter((l) => l.includes(" step ")), [], "no training started");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The lock and holder record of a backbone folder's pretraining (`withBackboneLock`). */
function backboneLock(folder: string): { lock: string; holder: string } {
  const locks = join(folder, "..", ".locks");
  return {
    lock: join(locks, `${basename(folder)}.lock`),
    holder: join(locks, `${basename(folder)}.holder.json`),
  };
}

/** Whether `path` names anything. */
async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** The line a pretraining logs once it starts training (one per training). */
const TRAINS = /^pretrain: \d+ tokens in \d+ chunks; \d+ steps$/;

Deno.test("pretrainBackbone() waits while another run holds the folder's lock, says for whom, then uses its backbone", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const base = quickOptions(dir, await rteCorpusFile(dir, 60), { steps: 2 });
    // The other run's folder (the key does not depend on the cache root).
    const theirs = await pretrainBackbone({ ...base, cacheDir: join(dir, "other") });
    const target = join(dir, "cache", "backbones", basename(theirs.dir));
    const { lock, holder } = backboneLock(target);
    const lines: string[] = [];
    const tensors = tf.memory().numTensors;
    let mine: Promise<Awaited<ReturnType<typeof pretrainBackbone>>> | undefined;
    // Another run holds the lock (recording itself as its holder does), pretrains and publishes.
    await withFileLock(lock, async () => {
      await Deno.writeTextFile(
        holder,
        JSON.stringify({ host: "elsewhere", pid: 4242, since: "2025-01-02T03:04:05.000Z" }),
      );
      mine = pretrainBackbone({ ...base, log: (l) => lines.push(l) });
      for (let i = 0; i < 600 && !lines.some((l) => l.includes("waiting")); i++) {
        await new Promise((r) => setTimeout(r, 50));
      }
      await Deno.mkdir(target, { recursive: true });
      for (const e of Deno.readDirSync(theirs.dir)) {
        await Deno.copyFile(join(theirs.dir, e.name), join(target, e.name));
      }
      await Deno.remove(holder);
    }, { remove: true });
    const got = await mine!;
    deepEqual(lines, [
      `pretrain: waiting for another run (pid 4242 on elsewhere, since ` +
      `2025-01-02T03:04:05.000Z) pretraining the same backbone ${target} to finish (lock ` +
      `${lock}); then this run uses it (or trains it, should that run publish none)`,
      `pretrain: using cached backbone ${target} (built by another run while this one waited)`,
    ]);
    deepEqual([got.dir, got.cached], [target, true]);
    deepEqual(got.info, theirs.info);
    equal(tf.memory().numTensors, tensors);
    deepEqual([await exists(lock), await exists(holder)], [false, false], "lock files left");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pretrainBackbone(): two concurrent pretrainings of one folder train once; the other uses that backbone", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const base = quickOptions(dir, await rteCorpusFile(dir, 60), { steps: 3 });
    const logs: string[][] = [[], []];
    const tensors = tf.memory().numTensors;
    const [a, b] = await Promise.all(
      logs.map((lines) => pretrainBackbone({ ...base, log: (l) => lines.push(l) })),
    );
    equal(logs.flat().filter((l) => TRAINS.test(l)).length, 1, logs.flat().join("\n"));
    deepEqual([a!.cached, b!.cached].sort(), [false, true]);
    equal(a!.dir, b!.dir);
    deepEqual(a!.info, b!.info);
    equal(tf.memory().numTensors, tensors);
    deepEqual([...Deno.readDirSync(join(a!.dir, "..", ".locks"))], [], "lock files left");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pretrainBackbone(): a holder stopped by SIGINT leaves a lock that the next process takes over at once", async () => {
  if (Deno.build.os === "windows") return; // no SIGINT to send there
  const dir = await Deno.makeTempDir();
  try {
    const base = quickOptions(dir, await rteCorpusFile(dir, 60), { steps: 2 });
    const script = join(dir, "holder.ts");
    const pretrainUrl = new URL("./pretrain.ts", import.meta.url).href;
    // The holder stops at its first step (blocking, as synchronous training would) until killed.
    await Deno.writeTextFile(
      script,
      `import { pretrainBackbone } from ${JSON.stringify(pretrainUrl)};
await pretrainBackbone({
  ...JSON.parse(Deno.args[0]),
  log: (l) => {
    console.log(l);
    if (l.startsWith("pretrain: step 1/")) {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 600_000);
    }
  },
});
`,
    );
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-check",
        "--config",
        new URL("../deno.json", import.meta.url).pathname,
        "--allow-read",
        "--allow-write",
        "--allow-env",
        "--allow-ffi",
        "--allow-sys",
        "--allow-run",
        script,
        JSON.stringify(base),
      ],
      stdout: "piped",
      stderr: "null",
    }).spawn();
    let out = "";
    const decoder = new TextDecoder();
    for await (const chunk of child.stdout) {
      out += decoder.decode(chunk, { stream: true });
      if (out.includes("pretrain: step 1/")) break;
    }
    ok(out.includes("pretrain: step 1/"), `the holder did not start training:\n${out}`);
    child.kill("SIGINT");
    const status = await child.status;
    equal(status.signal, "SIGINT");
    // It held the lock when it was stopped: the lock file and its record are left behind.
    const locks = join(base.cacheDir, "backbones", ".locks");
    const names = [...Deno.readDirSync(locks)].map((e) => e.name).sort();
    equal(names.length, 2, names.join(", "));
    const holder = JSON.parse(await Deno.readTextFile(join(locks, names[0]!)));
    equal(holder.pid, child.pid);
    ok(names[1]!.endsWith(".lock"), names.join(", "));

    const lines: string[] = [];
    let timer: ReturnType<typeof setTimeout> | undefined;
    const got = await Promise.race([
      pretrainBackbone({ ...base, log: (l) => lines.push(l) }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error("blocked by the stopped holder's lock")),
          60_000,
        );
      }),
    ]).finally(() => clearTimeout(timer));
    equal(got.cached, false);
    equal(lines.filter((l) => TRAINS.test(l)).length, 1, lines.join("\n"));
    deepEqual(lines.filter((l) => l.includes("waiting")), [], "it did not wait");
    deepEqual([...Deno.readDirSync(locks)], [], "the stale lock files are removed after use");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
