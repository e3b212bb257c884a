import { deepEqual, equal, ok } from "node:assert/strict";
import { join } from "node:path";
import { loadHfFolder } from "../model/checkpoint.ts";
import { T5Tokenizer } from "../model/tokenizer.ts";
import { sharedPath } from "../model/shared_dir.ts";
import { loadExamples } from "../tasks/load.ts";
import { pretrainBackbone, taskCorpus } from "./pretrain.ts";

const hasSpm = await new Deno.Command("spm_train", {
  args: ["--help"],
  stdout: "null",
  stderr: "null",
})
  .output().then(() => true, () => false);

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

Deno.test({
  name:
    "pretrainBackbone() lowers the span-corruption loss, saves a loadable folder, reuses the cache",
  ignore: !hasSpm,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const rte = await Deno.readTextFile(sharedPath("data/glue/RTE/train.tsv"));
      const corpus = join(dir, "corpus.txt");
      await Deno.writeTextFile(
        corpus,
        rte.split("\n").slice(1).flatMap((l) => l.split("\t").slice(1, 3)).join("\n"),
      );
      const opts = {
        preset: "tiny-v1_1",
        corpusFiles: [corpus],
        vocabSize: 600,
        steps: 40,
        batchSize: 8,
        chunkLength: 32,
        learningRate: 3e-3,
        seed: 1,
        cacheDir: join(dir, "cache"),
        log: () => {},
      };
      const first = await pretrainBackbone(opts);
      equal(first.cached, false);
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

      const again = await pretrainBackbone(opts);
      equal(again.cached, true);
      equal(again.dir, first.dir);
      deepEqual(again.info.losses, first.info.losses);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
