import * as tf from "@tensorflow/tfjs";
import { deepEqual, equal, ok, rejects } from "node:assert/strict";
import { basename, join } from "node:path";
import { saveHfFolder } from "./checkpoint.ts";
import { preset } from "./config.ts";
import { crossEntropyLoss, forward, initT5, t5StateDict } from "./t5.ts";
import { sharedPath } from "./shared_dir.ts";
import { bytesRead, headerBytes } from "./read_meter_testing.ts";
import {
  checkpointFiles,
  disposeLoadedT5,
  fetchHubConfigFiles,
  folderTokenizerFiles,
  generate,
  loadFolderTokenizer,
  loadT5,
  teacherForced,
} from "./pretrained.ts";
import { greedyDecode } from "./t5.ts";
import { collate, disposeBatch, encodeExample } from "../benchmarks/batching.ts";
import { gpuTest } from "./webgpu/testing.ts";
import { registerWebgpuKernels } from "./webgpu/mod.ts";
import { HAS_SPM, spmEncode, trainTinySpiece } from "./spm_testing.ts";
import { parseSentencePieceModel, sentencePieceToTokenizerJson } from "./spm.ts";
import { T5Tokenizer } from "./tokenizer.ts";
import { serveHub } from "./hub_testing.ts";
import { withEnv } from "./env_testing.ts";
import { CheckpointError } from "./checkpoint_error.ts";
import { HubOfflineError } from "./hub.ts";

/** A validator for `rejects`: a {@link CheckpointError} matching `re`, of `file` and `field`. */
function checkpointError(re: RegExp, file: string, field?: string): (e: unknown) => boolean {
  return (e) => {
    ok(e instanceof CheckpointError, `not a CheckpointError: ${e}`);
    ok(re.test(e.message), e.message);
    equal(e.file, file, e.message);
    equal(e.field, field, e.message);
    return true;
  };
}

const TOKENIZER = sharedPath("fixtures/tokenizer/unigram-glue-4k/tokenizer.json");

async function folder(): Promise<string> {
  const dir = await Deno.makeTempDir();
  const model = initT5({ ...preset("tiny-v1_1"), dropoutRate: 0 }, { seed: 3 });
  await saveHfFolder(join(dir, "t5"), model.config, t5StateDict(model), {
    extraFiles: { "tokenizer.json": await Deno.readTextFile(TOKENIZER) },
  });
  for (const v of model.params.values()) v.dispose();
  return dir;
}

Deno.test("loadT5() + teacherForced() + generate() on a saved folder", async () => {
  await tf.setBackend("cpu");
  const dir = await folder();
  const before = tf.memory().numTensors;
  const t5 = await loadT5(join(dir, "t5"));
  try {
    const loaded = tf.memory().numTensors;
    const { logits, loss } = await teacherForced(t5, [
      "rte sentence1: A dog. sentence2: An animal.",
      "cola sentence: Hi",
    ], [
      "entailment",
      "acceptable",
    ]);
    const tgt = t5.tokenizer.encode("entailment").length;
    equal(logits.shape[0], 2);
    ok(logits.shape[1] >= tgt);
    equal(logits.shape[2], t5.model.config.vocabSize);
    logits.dispose();
    // The same loss computed by hand from the token ids (labels padded with -100).
    const ids = t5.tokenizer.encode("cola sentence: Hi");
    const lab = t5.tokenizer.encode("acceptable");
    const manual = tf.tidy(() => {
      const { logits } = forward(t5.model, {
        inputIds: tf.tensor2d([ids], [1, ids.length], "int32"),
        attentionMask: tf.ones([1, ids.length]),
        decoderInputIds: tf.tensor2d([[0, ...lab.slice(0, -1)]], [1, lab.length], "int32"),
      });
      return crossEntropyLoss(logits, tf.tensor2d([lab], [1, lab.length], "int32")).dataSync()[0]!;
    });
    const single = await teacherForced(t5, ["cola sentence: Hi"], ["acceptable"]);
    single.logits.dispose();
    // fp32, a few dozen ops: 1e-5 relative.
    ok(Math.abs(single.loss - manual) <= 1e-5 * Math.abs(manual), `${single.loss} vs ${manual}`);
    ok(Number.isFinite(loss));
    const out = await generate(t5, ["cola sentence: Hi", "sst2 sentence: good"], {
      maxNewTokens: 4,
    });
    equal(out.length, 2);
    for (const s of out) equal(typeof s, "string");
    equal(tf.memory().numTensors, loaded, "teacherForced and generate leave no tensors");
    // { tokenizer } naming a folder: its tokenizer.json is read, and named as the source.
    const named = await loadT5(join(dir, "t5"), { tokenizer: join(dir, "t5") });
    equal(named.tokenizerSource, join(dir, "t5", "tokenizer.json"));
    disposeLoadedT5(named);
  } finally {
    disposeLoadedT5(t5);
    await Deno.remove(dir, { recursive: true });
  }
  equal(tf.memory().numTensors, before, "dispose releases the model");
});

Deno.test("loadT5() explains a folder without tokenizer.json and an offline hub id", async () => {
  const fixture = sharedPath("fixtures/hf-t5/t5-tiny-relu");
  await rejects(loadT5(fixture), checkpointError(/no tokenizer\.json/, fixture));
  // A folder that is no checkpoint folder at all (no config.json either): said so, not that the
  // tokenizer is missing; a transformers cache's repo folder names its snapshot.
  const repo = await Deno.makeTempDir({ prefix: "models--org--t5-" });
  const snapshot = join(repo, "snapshots", "0123abcd");
  await Deno.mkdir(snapshot, { recursive: true });
  await Deno.copyFile(join(fixture, "config.json"), join(snapshot, "config.json"));
  try {
    await rejects(
      loadT5(repo),
      checkpointError(
        new RegExp(
          `^${repo}/config\\.json: not found: ${repo} is no Hugging Face checkpoint folder ` +
            `\\(save_pretrained writes config\\.json beside the weights and the tokenizer\\); a ` +
            `transformers cache keeps the checkpoint in ${snapshot}: give that folder$`,
        ),
        join(repo, "config.json"),
      ),
    );
    await Deno.remove(join(repo, "snapshots"), { recursive: true });
    await rejects(
      loadT5(repo),
      checkpointError(
        /is no Hugging Face checkpoint folder \(save_pretrained [^;]*\)$/,
        join(repo, "config.json"),
      ),
    );
  } finally {
    await Deno.remove(repo, { recursive: true });
  }
  const cacheDir = await Deno.makeTempDir();
  Deno.env.set("HF_HUB_OFFLINE", "1");
  try {
    await rejects(loadT5("nobody/no-such-model", { cacheDir }), (e: Error) => {
      // Offline is its own class (the hub's error as the cause), not a bad checkpoint.
      ok(e instanceof HubOfflineError, `not a HubOfflineError: ${e}`);
      ok(!(e instanceof CheckpointError));
      ok(e.cause instanceof HubOfflineError);
      ok(/no-such-model/.test(e.message), e.message);
      ok(/HF_HUB_OFFLINE=1 \(offline mode\)/.test(e.message), e.message);
      ok(/local folder/.test(e.message), e.message);
      return true;
    });
  } finally {
    Deno.env.delete("HF_HUB_OFFLINE");
  }
  // An unreachable hub (a port that was just free: connection refused) is one too.
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const endpoint = `http://127.0.0.1:${(l.addr as Deno.NetAddr).port}`;
  l.close();
  try {
    await rejects(loadT5("nobody/no-such-model", { cacheDir, endpoint }), (e: Error) => {
      ok(e instanceof HubOfflineError, `not a HubOfflineError: ${e}`);
      ok(
        e.message.startsWith(
          `"nobody/no-such-model" is not a local folder, so it was taken as a hub id: `,
        ),
        e.message,
      );
      ok(/The hub is unreachable/.test(e.message), e.message);
      return true;
    });
  } finally {
    await Deno.remove(cacheDir, { recursive: true });
  }
});

Deno.test("loadT5() says when the source is a file or a missing folder, and when it went to the hub", async () => {
  const tmp = await Deno.makeTempDir();
  Deno.env.set("HF_HUB_OFFLINE", "1");
  try {
    const missing = join(tmp, "no-such-folder");
    await rejects(loadT5(missing), (e: Error) => {
      equal(
        e.message,
        `${missing}: folder not found (and not a hub id such as "google/t5-v1_1-small")`,
      );
      return true;
    });
    await rejects(
      loadT5("./t5-folder-typo"),
      /^CheckpointError: \.\/t5-folder-typo: folder not found/,
    );
    await rejects(loadT5(TOKENIZER), (e: Error) => {
      ok(e instanceof CheckpointError, `not a CheckpointError: ${e}`);
      equal(e.file, TOKENIZER);
      ok(e.message.startsWith(`${TOKENIZER}: is a file; expected a Hugging Face folder`));
      return true;
    });
    // A relative path without "./" has the form of a hub id: the error says it went there.
    await rejects(loadT5("models/t5-typo", { cacheDir: tmp }), (e: Error) => {
      ok(
        e.message.startsWith(`"models/t5-typo" is not a local folder, so it was taken as a hub id`),
      );
      ok(/HF_HUB_OFFLINE=1/.test(e.message), e.message);
      return true;
    });
  } finally {
    Deno.env.delete("HF_HUB_OFFLINE");
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("loadT5(): a malformed tokenizer.json, spiece.model or tokenizer_config.json is a CheckpointError naming it", async () => {
  await tf.setBackend("cpu");
  const dir = await folder();
  const t5 = join(dir, "t5");
  const tokenizer = join(t5, "tokenizer.json");
  const before = tf.memory().numTensors;
  try {
    await Deno.writeTextFile(tokenizer, "{\n  nope");
    await rejects(loadT5(t5), checkpointError(/tokenizer\.json:2:3: invalid JSON/, tokenizer));
    await Deno.writeTextFile(tokenizer, JSON.stringify({ model: { type: "WordLevel" } }));
    await rejects(
      loadT5(t5),
      checkpointError(
        /tokenizer\.json: invalid tokenizer: field "model\.type"/,
        tokenizer,
        "model.type",
      ),
    );
    // No tokenizer.json: spiece.model (converted in memory) and tokenizer_config.json.
    await Deno.remove(tokenizer);
    const spiece = join(t5, "spiece.model");
    await Deno.writeFile(spiece, new Uint8Array([0x0a, 0x20]));
    await rejects(
      loadT5(t5),
      checkpointError(
        /spiece\.model: not a SentencePiece model \(truncated protobuf field/,
        spiece,
      ),
    );
    const config = join(t5, "tokenizer_config.json");
    await Deno.writeTextFile(config, JSON.stringify({ extra_ids: -1 }));
    await rejects(
      loadT5(t5),
      checkpointError(/tokenizer_config\.json: field "extra_ids" must be/, config, "extra_ids"),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  equal(tf.memory().numTensors, before);
});

Deno.test("loadT5() refuses feed-forward weights of the other kind than config.json's feed_forward_proj, naming the field", async () => {
  await tf.setBackend("cpu");
  for (
    const [saved, claimed, kind, example] of [
      [
        "gated-gelu",
        "relu",
        `gated-GELU ("wi_0", "wi_1")`,
        "encoder.block.0.layer.1.DenseReluDense.wi_0.weight",
      ],
      ["relu", "gated-gelu", `ReLU ("wi")`, "encoder.block.0.layer.1.DenseReluDense.wi.weight"],
    ] as const
  ) {
    const dir = await Deno.makeTempDir();
    const model = initT5(
      { ...preset("tiny-v1_1"), feedForwardProj: saved, dropoutRate: 0 },
      { seed: 3 },
    );
    await saveHfFolder(dir, model.config, t5StateDict(model), {
      extraFiles: { "tokenizer.json": await Deno.readTextFile(TOKENIZER) },
    });
    for (const v of model.params.values()) v.dispose();
    const configPath = join(dir, "config.json");
    const config = JSON.parse(await Deno.readTextFile(configPath));
    // Edited as a person would, with the fields transformers derives from it (a disagreement of
    // those is its own error: config_test.ts).
    const { dense_act_fn: _act, is_gated_act: _gated, ...rest } = config;
    await Deno.writeTextFile(configPath, JSON.stringify({ ...rest, feed_forward_proj: claimed }));
    const before = tf.memory().numTensors;
    try {
      const read = await bytesRead(() =>
        rejects(
          loadT5(dir),
          checkpointError(
            new RegExp(
              `^${configPath}: field "feed_forward_proj" is "${claimed}" but the feed-forward ` +
                `weights of ${join(dir, "model.safetensors")} are ${
                  kind.replace(/[()]/g, "\\$&")
                }, e\\.g\\. "${example.replaceAll(".", "\\.")}"; the checkpoint needs ` +
                `"feed_forward_proj": "${saved}"$`,
            ),
            configPath,
            "feed_forward_proj",
          ),
        )
      );
      ok(read <= await headerBytes(dir), `${saved}: ${read} bytes read, more than the headers`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
    equal(tf.memory().numTensors, before, saved);
  }
  // Both kinds: left to the names check, which lists them.
  const wi = "encoder.block.0.layer.1.DenseReluDense.wi.weight";
  const dir = await editedFolder((t) => t.set(wi, tf.zeros([64, 32])));
  const configPath = join(dir, "config.json");
  const { dense_act_fn: _act, is_gated_act: _gated, ...config } = JSON.parse(
    await Deno.readTextFile(configPath),
  );
  await Deno.writeTextFile(configPath, JSON.stringify({ ...config, feed_forward_proj: "relu" }));
  try {
    await rejects(
      loadT5(dir),
      checkpointError(
        /model\.safetensors: the tensor names do not match the T5 configuration for .*: 3 missing/,
        join(dir, "model.safetensors"),
      ),
    );
  } finally {
    await Deno.remove(join(dir, ".."), { recursive: true });
  }
});

Deno.test("loadT5() refuses a tokenizer the model cannot embed, or with other </s>/<pad> ids, before reading weights", async () => {
  await tf.setBackend("cpu");
  const relu = sharedPath("fixtures/hf-t5/t5-tiny-relu");
  const before = tf.memory().numTensors;
  // The reference tokenizer has 4,000 ids; the fixture model embeds 96.
  await rejects(loadT5(relu, { tokenizer: TOKENIZER }), (e: Error) => {
    ok(e instanceof CheckpointError, `not a CheckpointError: ${e}`);
    equal(e.file, join(relu, "config.json"));
    equal(e.field, "vocab_size");
    equal(
      e.message,
      `tokenizer ${TOKENIZER} and ${join(relu, "config.json")} do not match: the tokenizer has ` +
        `4000 ids but the model's "vocab_size" is 96 (is it the model's own tokenizer?)`,
    );
    return true;
  });
  const tmp = await Deno.makeTempDir();
  try {
    const config = JSON.parse(await Deno.readTextFile(join(relu, "config.json")));
    // One id too many is refused too (the boundary): 4,000 ids into 3,999 rows.
    await Deno.writeTextFile(
      join(tmp, "config.json"),
      JSON.stringify({ ...config, vocab_size: 3999 }),
    );
    await rejects(
      loadT5(tmp, { tokenizer: TOKENIZER }),
      /the tokenizer has 4000 ids but the model's "vocab_size" is 3999/,
    );
    for (
      const [field, message] of [
        ["eos_token_id", /"<\/s>" is id 1 but "eos_token_id" is 3/],
        ["pad_token_id", /"<pad>" is id 0 but "pad_token_id" is 3/],
      ] as const
    ) {
      // No weights at all: the mismatch is found from config.json alone.
      await Deno.writeTextFile(
        join(tmp, "config.json"),
        JSON.stringify({ ...config, vocab_size: 4096, [field]: 3 }),
      );
      await rejects(
        loadT5(tmp, { tokenizer: TOKENIZER }),
        checkpointError(message, join(tmp, "config.json"), field),
      );
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
  equal(tf.memory().numTensors, before);
});

Deno.test("loadT5() of a hub id checks the config and tokenizer before it downloads any weight", async () => {
  await tf.setBackend("cpu");
  const root = await Deno.makeTempDir();
  const before = tf.memory().numTensors;
  try {
    // The fixture's weights (96 ids) beside a tokenizer of 4,000: refused from config.json and
    // tokenizer.json alone (before, the whole checkpoint was downloaded first).
    const repoDir = join(root, "repo");
    await Deno.mkdir(repoDir);
    const relu = sharedPath("fixtures/hf-t5/t5-tiny-relu");
    for (const f of ["config.json", "model.safetensors"]) {
      await Deno.copyFile(join(relu, f), join(repoDir, f));
    }
    await Deno.copyFile(TOKENIZER, join(repoDir, "tokenizer.json"));
    const repo = serveHub({ "org/mismatched@main": repoDir });
    try {
      await rejects(
        withEnv(
          { HF_ENDPOINT: repo.endpoint, HF_HUB_OFFLINE: undefined, HF_TOKEN: undefined },
          () => loadT5("org/mismatched", { cacheDir: join(root, "cache") }),
        ),
        /the tokenizer has 4000 ids but the model's "vocab_size" is 96/,
      );
      deepEqual(repo.requests.map((r) => r.path.split("/").pop()), [
        "config.json",
        "tokenizer.json",
      ]);
      // A repo that passes the checks still loads (its weights after them): the spiece.model
      // hub test below and benchmarks/hub_legacy_layout_test.ts.
    } finally {
      await repo.close();
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
  equal(tf.memory().numTensors, before);
});

/** A tiny T5 1.1 saved with its tensors changed by `edit`, with the reference tokenizer. */
async function editedFolder(
  edit: (tensors: Map<string, tf.Tensor>) => void,
  maxShardBytes?: number,
): Promise<string> {
  const dir = await Deno.makeTempDir();
  const model = initT5({ ...preset("tiny-v1_1"), dropoutRate: 0 }, { seed: 3 });
  const tensors = t5StateDict(model);
  const made = new Map(tensors);
  edit(tensors);
  await saveHfFolder(join(dir, "t5"), model.config, tensors, {
    ...(maxShardBytes ? { maxShardBytes } : {}),
    extraFiles: { "tokenizer.json": await Deno.readTextFile(TOKENIZER) },
  });
  for (const [name, t] of tensors) if (made.get(name) !== t) t.dispose();
  for (const v of model.params.values()) v.dispose();
  return join(dir, "t5");
}

Deno.test("loadT5() names the shard file of a weight with the wrong shape or dtype, before reading weights", async () => {
  await tf.setBackend("cpu");
  const name = "decoder.block.1.layer.2.DenseReluDense.wo.weight";
  const folders = [
    await editedFolder((t) => t.set(name, tf.zeros([64, 64])), 100_000),
    await editedFolder((t) => t.set(name, tf.zeros([64, 128], "int32")), 100_000),
  ];
  const before = tf.memory().numTensors;
  try {
    for (const [i, dir] of folders.entries()) {
      const index = JSON.parse(await Deno.readTextFile(join(dir, "model.safetensors.index.json")));
      const shard = join(dir, index.weight_map[name]);
      ok(/model-0000[2-9]-of-/.test(shard), `${shard}: not in the first shard`);
      await rejects(loadT5(dir), (e: Error) => {
        // A bad checkpoint: its file is the shard holding the tensor, as the message says.
        ok(e instanceof CheckpointError, `not a CheckpointError: ${e}`);
        equal(e.file, shard);
        // The config.json field that decides the wrong dimension (none for a wrong dtype).
        equal((e as CheckpointError).field, i === 0 ? "d_ff" : undefined);
        equal(
          e.message,
          i === 0
            ? `${shard}: tensor "${name}" has shape [64, 64], expected [64, 128] for ${
              join(dir, "config.json")
            } ("d_ff" gives dimension 1: 128)`
            : `${shard}: tensor "${name}" has dtype I32, expected F32, F16 or BF16`,
        );
        return true;
      });
    }
    equal(tf.memory().numTensors, before, "no tensor was loaded");
  } finally {
    for (const dir of folders) await Deno.remove(join(dir, ".."), { recursive: true });
  }
});

async function editIndex(dir: string, edit: (weightMap: Record<string, string>) => void) {
  const path = join(dir, "model.safetensors.index.json");
  const index = JSON.parse(await Deno.readTextFile(path));
  edit(index.weight_map);
  await Deno.writeTextFile(path, JSON.stringify(index));
}

Deno.test("loadT5() refuses missing and unexpected tensor names in one error, from the headers, before reading any weight", async () => {
  await tf.setBackend("cpu");
  const old = "decoder.block.1.layer.0.SelfAttention.o.weight";
  const renamed = "decoder.block.1.layer.0.SelfAttention.out.weight";
  const extra = "encoder.block.0.layer.0.SelfAttention.extra.weight";
  const folders = {
    // A renamed tensor: before, only the unexpected name was reported, after every weight was read.
    renamed: await editedFolder((t) => {
      t.set(renamed, t.get(old)!);
      t.delete(old);
    }, 100_000),
    // A config.json whose num_layers does not match the checkpoint's encoder blocks.
    layers: await editedFolder(() => {}),
    // A tensor that a shard holds but the index omits: before, it was skipped silently.
    // (Inserted among the encoder's weights, so that its shard holds others the index names.)
    unindexed: await editedFolder((t) => {
      const all = [...t];
      t.clear();
      for (const [n, v] of all) {
        t.set(n, v);
        if (n === "encoder.final_layer_norm.weight") t.set(extra, tf.zeros([4]));
      }
    }, 100_000),
  };
  try {
    const configOf = (dir: string) => join(dir, "config.json");
    const cfg = JSON.parse(await Deno.readTextFile(configOf(folders.layers)));
    equal(cfg.num_layers, 2, "the tiny T5 1.1 has two encoder blocks");
    await Deno.writeTextFile(configOf(folders.layers), JSON.stringify({ ...cfg, num_layers: 1 }));
    let extraShard = "";
    await editIndex(folders.unindexed, (wm) => {
      extraShard = join(folders.unindexed, wm[extra]!);
      delete wm[extra];
      ok(Object.values(wm).includes(basename(extraShard)), "its shard is indexed");
    });
    const index = (dir: string) => join(dir, "model.safetensors.index.json");
    const renamedShard = join(
      folders.renamed,
      JSON.parse(await Deno.readTextFile(index(folders.renamed))).weight_map[renamed],
    );
    const cases: [string, string][] = [
      [
        folders.renamed,
        `${index(folders.renamed)}: the tensor names do not match the T5 configuration for ${
          configOf(folders.renamed)
        }: 1 missing ("${old}") and 1 unexpected ("${renamed}" in ${renamedShard})`,
      ],
      [
        folders.layers,
        `${join(folders.layers, "model.safetensors")}: the tensor names do not match the T5 ` +
        `configuration for ${configOf(folders.layers)}: none missing and 9 unexpected ` +
        `("encoder.block.1.layer.0.SelfAttention.q.weight", ` +
        `"encoder.block.1.layer.0.SelfAttention.k.weight", ` +
        `"encoder.block.1.layer.0.SelfAttention.v.weight", ` +
        `"encoder.block.1.layer.0.SelfAttention.o.weight", ` +
        `"encoder.block.1.layer.0.layer_norm.weight", ` +
        `"encoder.block.1.layer.1.DenseReluDense.wi_0.weight", ` +
        `"encoder.block.1.layer.1.DenseReluDense.wi_1.weight", ` +
        `"encoder.block.1.layer.1.DenseReluDense.wo.weight", and 1 more); ` +
        `the checkpoint has 2 encoder blocks where "num_layers" is 1`,
      ],
      [
        folders.unindexed,
        `${index(folders.unindexed)}: the tensor names do not match the T5 configuration for ${
          configOf(folders.unindexed)
        }: none missing and 1 unexpected ("${extra}" in ${extraShard})`,
      ],
    ];
    const before = tf.memory().numTensors;
    for (const [dir, message] of cases) {
      const read = await bytesRead(() =>
        rejects(loadT5(dir), (e: Error) => {
          equal(e.message, message);
          return true;
        })
      );
      ok(read <= await headerBytes(dir), `${dir}: ${read} bytes read, more than the headers`);
    }
    equal(tf.memory().numTensors, before, "no tensor was made or left");
  } finally {
    for (const dir of Object.values(folders)) {
      await Deno.remove(join(dir, ".."), { recursive: true });
    }
  }
});

Deno.test("loadT5() loads a weight that its shard holds but the index omits", async () => {
  await tf.setBackend("cpu");
  const name = "encoder.final_layer_norm.weight";
  const dir = await editedFolder((t) => t.set(name, tf.fill([64], 0.5)), 100_000);
  try {
    await editIndex(dir, (wm) => {
      ok(wm[name] !== undefined);
      delete wm[name];
    });
    const t5 = await loadT5(dir);
    try {
      deepEqual([...await t5.model.params.get(name)!.data()], new Array(64).fill(0.5));
    } finally {
      disposeLoadedT5(t5);
    }
  } finally {
    await Deno.remove(join(dir, ".."), { recursive: true });
  }
});

Deno.test("loadT5() reads config.json, the index and each safetensors header once", async () => {
  await tf.setBackend("cpu");
  const dir = await editedFolder(() => {}, 100_000);
  const texts = new Map<string, number>();
  const readTextFile = Deno.readTextFile;
  Deno.readTextFile = (path: string | URL, opts?: Deno.ReadFileOptions) => {
    texts.set(String(path), (texts.get(String(path)) ?? 0) + 1);
    return readTextFile(path, opts);
  };
  try {
    const before = tf.memory().numTensors;
    let t5: Awaited<ReturnType<typeof loadT5>> | undefined;
    const read = await bytesRead(async () => {
      t5 = await loadT5(dir);
    });
    disposeLoadedT5(t5!);
    equal(tf.memory().numTensors, before);
    // Before: config.json 3 times (loadT5, then the header check and the load of loadT5Weights),
    // the index twice, and each shard's header 3 times (the check, the load's check, the load).
    equal(texts.get(join(dir, "config.json")), 1, "config.json reads");
    equal(texts.get(join(dir, "model.safetensors.index.json")), 1, "index reads");
    let files = 0;
    let size = 0;
    for await (const e of Deno.readDir(dir)) {
      if (!e.name.endsWith(".safetensors")) continue;
      files++;
      size += (await Deno.stat(join(dir, e.name))).size;
    }
    ok(files > 1, `${files} shards`);
    equal(read, size, `bytes read of the shards (headers ${await headerBytes(dir)} bytes)`);
  } finally {
    Deno.readTextFile = readTextFile;
    await Deno.remove(join(dir, ".."), { recursive: true });
  }
});

Deno.test("loadT5() of a checkpoint without shared.weight (only the stacks' tables) uses the encoder's", async () => {
  await tf.setBackend("cpu");
  const full = await editedFolder(() => {});
  const stacksOnly = await editedFolder((t) => t.delete("shared.weight"));
  const a = await loadT5(full);
  const b = await loadT5(stacksOnly);
  try {
    equal(b.model.config.ownEmbeddings, undefined, "one table, as in the full checkpoint");
    const x = await teacherForced(a, ["cola sentence: Hi there"], ["acceptable"]);
    const y = await teacherForced(b, ["cola sentence: Hi there"], ["acceptable"]);
    const [u, v] = [x.logits.dataSync(), y.logits.dataSync()];
    x.logits.dispose();
    y.logits.dispose();
    equal(u.length, v.length);
    ok(u.every((z, i) => Object.is(z, v[i])), "same logits, bit for bit");
  } finally {
    disposeLoadedT5(a);
    disposeLoadedT5(b);
    for (const dir of [full, stacksOnly]) await Deno.remove(join(dir, ".."), { recursive: true });
  }
});

Deno.test("teacherForced() and generate() cut and mask texts as training does (batching.ts), and refuse bad arguments by name", async () => {
  await tf.setBackend("cpu");
  const dir = await folder();
  const t5 = await loadT5(join(dir, "t5"));
  try {
    const cfg = t5.model.config;
    // Longer than the limits below; the first input holds a "<pad>" (id 0) the text asks for,
    // which training attends to (its mask is by length).
    const inputs = [
      "rte <pad> sentence1: A dog runs in the park with a ball. sentence2: An animal moves.",
      "cola sentence: Hi",
    ];
    const targets = ["not_entailment and more words here", "acceptable"];
    ok(t5.tokenizer.encode(inputs[0]!).length > 9 && t5.tokenizer.encode(targets[0]!).length > 4);
    const lengths = { maxInputLength: 9, maxTargetLength: 4 };
    const rows = inputs.map((input, i) =>
      encodeExample({ input, target: targets[i]! }, 0, t5.tokenizer, {
        ...lengths,
        eosTokenId: cfg.eosTokenId,
      })
    );
    ok(rows[0]!.input.includes(cfg.padTokenId), "the cut text holds a <pad>");
    const batch = collate(rows, cfg);
    const before = tf.memory().numTensors;
    try {
      const want = tf.tidy(() => {
        const { logits } = forward(t5.model, batch);
        return { logits, loss: crossEntropyLoss(logits, batch.labels).dataSync()[0]! };
      });
      const got = await teacherForced(t5, inputs, targets, lengths);
      equal(got.logits.shape.join(), want.logits.shape.join());
      // The same ids and masks through the same ops: identical numbers at every target position
      // (collate feeds a shorter row's EOS, not <pad>, after it, where the label is -100).
      const counted = tf.tidy(() => tf.notEqual(batch.labels, -100).expandDims(2));
      const diff = tf.tidy(() =>
        tf.max(tf.abs(tf.mul(tf.sub(got.logits, want.logits), counted))).dataSync()[0]
      );
      counted.dispose();
      equal(diff, 0);
      equal(got.loss, want.loss);
      tf.dispose([got.logits, want.logits]);
      const decoded = await greedyDecode(t5.model, batch, { maxNewTokens: 5 });
      const text = await generate(t5, inputs, { maxNewTokens: 5, maxInputLength: 9 });
      deepEqual(text, decoded.map((r) => t5.tokenizer.decode(r)));
      equal(tf.memory().numTensors, before, "no tensors left");

      const refused = async (what: string, re: RegExp, f: () => unknown) => {
        await rejects(
          async () => {
            await f();
          },
          re,
          what,
        );
        equal(tf.memory().numTensors, before, `${what}: tensors left`);
      };
      await refused("no inputs", /generate: inputs is empty/, () => generate(t5, []));
      for (const n of [0, -2, 2.5]) {
        await refused(
          `maxNewTokens ${n}`,
          /generate: maxNewTokens must be a positive integer/,
          () => generate(t5, inputs, { maxNewTokens: n }),
        );
        await refused(
          `maxInputLength ${n}`,
          /generate: maxInputLength must be a positive/,
          () => generate(t5, inputs, { maxInputLength: n }),
        );
        await refused(
          `maxTargetLength ${n}`,
          /teacherForced: maxTargetLength must be a positive integer/,
          () => teacherForced(t5, inputs, targets, { maxTargetLength: n }),
        );
      }
      await refused(
        "1 target for 2 inputs",
        /teacherForced: need the same non-zero number/,
        () => teacherForced(t5, inputs, targets.slice(1)),
      );
    } finally {
      disposeBatch(batch);
    }
  } finally {
    disposeLoadedT5(t5);
    await Deno.remove(dir, { recursive: true });
  }
});

gpuTest(
  "teacherForced() on webgpu (custom kernels) gives cpu's loss and logits",
  async () => {
    // The README's example on a GPU (selectBackend("auto") takes WebGPU there): the loss was read
    // with dataSync, which throws on webgpu in Deno (tfjs reads GPU data back synchronously
    // through a canvas).
    const inputs = ["rte sentence1: A dog. sentence2: An animal.", "cola sentence: Hi"];
    const targets = ["entailment", "acceptable"];
    await tf.setBackend("cpu");
    const dir = await folder();
    const run = async () => {
      const t5 = await loadT5(join(dir, "t5"));
      try {
        const before = tf.memory().numTensors;
        const { logits, loss } = await teacherForced(t5, inputs, targets);
        const values = await logits.data();
        logits.dispose();
        equal(tf.memory().numTensors, before, `${tf.getBackend()}: tensors left`);
        return { loss, values };
      } finally {
        disposeLoadedT5(t5);
      }
    };
    try {
      const cpu = await run();
      await tf.setBackend("webgpu");
      const gpu = await run();
      // float32 on both, summed in other orders: 1e-5 relative (as the parity tests' webgpu bound).
      ok(Math.abs(gpu.loss - cpu.loss) <= 1e-5 * cpu.loss, `loss ${gpu.loss} vs ${cpu.loss}`);
      let scale = 0;
      let err = 0;
      cpu.values.forEach((v, i) => {
        scale = Math.max(scale, Math.abs(v));
        err = Math.max(err, Math.abs(v - gpu.values[i]!));
      });
      equal(gpu.values.length, cpu.values.length);
      ok(err <= 1e-5 * scale, `logits: max abs diff ${err} > 1e-5 × ${scale}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
  () => ok(registerWebgpuKernels()),
);

/**
 * A copy of the t5-tiny-relu fixture (vocab_size 96) with a T5-layout spiece.model of the tiny
 * corpus and a tokenizer_config.json of 10 sentinels (100 would not fit 96 ids), but no
 * tokenizer.json, as the 2020 T5 checkpoints ship; returns the folder and the reference tokenizer
 * (the converter's output for those settings, written by no one into the folder).
 */
async function spieceFolder(root: string): Promise<{ dir: string; ref: T5Tokenizer; n: number }> {
  const tiny = await trainTinySpiece(join(root, "tok"));
  const dir = join(root, "t5");
  await Deno.mkdir(dir);
  const relu = sharedPath("fixtures/hf-t5/t5-tiny-relu");
  for (const f of ["config.json", "model.safetensors"]) {
    await Deno.copyFile(join(relu, f), join(dir, f));
  }
  await Deno.copyFile(tiny.spiece, join(dir, "spiece.model"));
  await Deno.writeTextFile(
    join(dir, "tokenizer_config.json"),
    JSON.stringify({
      extra_ids: 10,
      additional_special_tokens: Array.from({ length: 10 }, (_, i) => `<extra_id_${i}>`),
      eos_token: "</s>",
      pad_token: "<pad>",
      unk_token: "<unk>",
    }),
  );
  const model = parseSentencePieceModel(await Deno.readFile(tiny.spiece), tiny.spiece);
  const ref = T5Tokenizer.fromJson(sentencePieceToTokenizerJson(model, tiny.spiece, 10), "ref");
  return { dir, ref, n: tiny.pieces };
}

/**
 * Registers test `name` (skipped without spm_train): `fn` gets a {@link spieceFolder} in a
 * temporary root (removed afterwards), on the cpu backend, with the tensor count before it was
 * made; no tensor may be left when `fn` returns.
 */
function spieceTest(
  name: string,
  fn: (
    f: { root: string; dir: string; ref: T5Tokenizer; n: number; before: number },
  ) => Promise<void>,
): void {
  Deno.test({
    name,
    ignore: !HAS_SPM,
    async fn() {
      await tf.setBackend("cpu");
      const root = await Deno.makeTempDir();
      const before = tf.memory().numTensors;
      try {
        await fn({ root, ...(await spieceFolder(root)), before });
        equal(tf.memory().numTensors, before);
      } finally {
        await Deno.remove(root, { recursive: true });
      }
    },
  });
}

spieceTest(
  "loadT5() of a folder with spiece.model but no tokenizer.json converts it in memory, says so, writes nothing",
  async ({ dir, ref, n, before }) => {
    ok(n + 10 <= 96, `${n} pieces and 10 sentinels fit the fixture's 96 ids`);
    const files = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    const lines: string[] = [];
    const t5 = await loadT5(dir, { log: (l) => lines.push(l) });
    try {
      deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), files, "folder untouched");
      equal(
        t5.tokenizerSource,
        `${join(dir, "spiece.model")} (converted to tokenizer.json in memory)`,
      );
      equal(lines.length, 1);
      equal(
        lines[0],
        `${dir}: no tokenizer.json; converted ${join(dir, "spiece.model")} in memory as ` +
          `transformers' T5Converter does (${n} pieces, 10 sentinels, 10 additional special ` +
          `tokens, Metaspace prepend_scheme "always"; settings of ${
            join(dir, "tokenizer_config.json")
          }; ${n + 10} ids)`,
      );
      equal(t5.tokenizer.vocabSize, n + 10);
      deepEqual(
        [t5.tokenizer.tokenToId("<extra_id_0>"), t5.tokenizer.tokenToId("<extra_id_9>")],
        [n + 9, n],
      );
      for (const text of ["the cat sat on the mat", "a good  dog", "the <extra_id_3> park"]) {
        deepEqual(t5.tokenizer.encode(text), ref.encode(text), text);
      }
      deepEqual(
        t5.tokenizer.encode("the dog ran"),
        [...await spmEncode(join(dir, "spiece.model"), "the dog ran"), 1],
      );
      const { logits, loss } = await teacherForced(t5, ["the cat sat"], ["on the mat"]);
      logits.dispose();
      ok(Number.isFinite(loss), `${loss}`);
    } finally {
      disposeLoadedT5(t5);
    }
    equal(tf.memory().numTensors, before);
    // 100 sentinels (no tokenizer_config.json) do not fit 96 ids: refused by name.
    await Deno.remove(join(dir, "tokenizer_config.json"));
    await rejects(
      loadT5(dir, { log: () => {} }),
      (e: Error) => {
        equal(
          e.message,
          `tokenizer ${join(dir, "spiece.model")} (converted to tokenizer.json in memory) and ` +
            `${join(dir, "config.json")} do not match: the tokenizer has ${n + 100} ids but ` +
            `the model's "vocab_size" is 96 (is it the model's own tokenizer?)`,
        );
        return true;
      },
    );
    // Neither file: the error names both.
    await Deno.remove(join(dir, "spiece.model"));
    await rejects(loadT5(dir), /no tokenizer\.json and no spiece\.model/);
  },
);

spieceTest(
  "loadT5() of a hub repo without tokenizer.json downloads spiece.model and tokenizer_config.json and converts them",
  async ({ root, dir, ref }) => {
    const repo = serveHub({ "google/t5-spiece@main": dir });
    try {
      const cacheDir = join(root, "cache");
      const t5 = await withEnv(
        { HF_ENDPOINT: repo.endpoint, HF_HUB_OFFLINE: undefined, HF_TOKEN: undefined },
        () => loadT5("google/t5-spiece", { cacheDir, log: () => {} }),
      );
      try {
        const asked = repo.requests.map((r) => r.path.split("/").pop());
        ok(asked.includes("tokenizer.json"), `${asked}`);
        ok(asked.includes("spiece.model") && asked.includes("tokenizer_config.json"), `${asked}`);
        equal(t5.dir, join(cacheDir, "models--google--t5-spiece", "main"));
        ok(!(await Deno.stat(join(t5.dir, "tokenizer.json")).then(() => true, () => false)));
        equal(
          t5.tokenizerSource,
          `${join(t5.dir, "spiece.model")} (converted to tokenizer.json in memory)`,
        );
        equal(t5.tokenizer.vocabSize, ref.vocabSize);
        const text = "the cat <extra_id_0> on the mat";
        deepEqual(t5.tokenizer.encode(text), ref.encode(text));
      } finally {
        disposeLoadedT5(t5);
      }
      // A cache completed without spiece.model (as before it was fetched) says how to redo it.
      const cached = join(cacheDir, "models--google--t5-spiece", "main");
      await Deno.remove(join(cached, "spiece.model"));
      const marker = JSON.parse(await Deno.readTextFile(join(cached, ".complete.json")));
      marker.files = marker.files.filter((f: string) => f !== "spiece.model");
      await Deno.writeTextFile(join(cached, ".complete.json"), JSON.stringify(marker));
      await rejects(
        withEnv(
          { HF_ENDPOINT: repo.endpoint, HF_HUB_OFFLINE: undefined },
          () => loadT5("google/t5-spiece", { cacheDir }),
        ),
        (e: Error) => {
          equal(
            e.message,
            `${cached}: no tokenizer.json and no spiece.model beside the weights; a checkpoint ` +
              `needs its own tokenizer (put the model's tokenizer.json, or its spiece.model and ` +
              `tokenizer_config.json, in the folder, or pass { tokenizer: "FILE" }); if the ` +
              `hub repo "google/t5-spiece" has tokenizer.json or spiece.model, this cache ` +
              `folder was completed without them (by a version that did not download ` +
              `spiece.model, or within a day of the hub answering HTTP 404 for them, which ` +
              `${join(cached, ".absent.json")} records): delete ${cached} and run again`,
          );
          return true;
        },
      );
    } finally {
      await repo.close();
    }
  },
);

spieceTest(
  "loadT5() of a hub repo that gained tokenizer.json since its 404 was recorded uses it once the weights' download fetched it",
  async ({ root, dir, ref }) => {
    // The hub names the branch's commit in X-Repo-Commit; a random init's fetch of the config
    // files records tokenizer.json's 404 at commit a.
    let commit = "a".repeat(40);
    const repo = serveHub({ "google/t5-spiece@main": dir }, { commit: () => commit });
    const env = { HF_ENDPOINT: repo.endpoint, HF_HUB_OFFLINE: undefined, HF_TOKEN: undefined };
    try {
      for (
        const [added, fits] of [[ref, true], [
          await T5Tokenizer.fromFile(TOKENIZER),
          false,
        ]] as const
      ) {
        const cacheDir = join(root, `cache-${fits}`);
        const cached = join(cacheDir, "models--google--t5-spiece", "main");
        commit = "a".repeat(40);
        await Deno.remove(join(dir, "tokenizer.json")).catch(() => {});
        await withEnv(env, () => fetchHubConfigFiles("google/t5-spiece", { cacheDir }));
        ok(await Deno.stat(join(cached, "spiece.model")).then(() => true));
        // Commit b adds tokenizer.json. The config files are read from the cache (the fresh
        // record holds while the commit is unknown); the weights' download learns of commit b
        // and fetches tokenizer.json. Before, the tokenizer was already chosen: spiece.model's
        // conversion, until the next load.
        commit = "b".repeat(40);
        const json = fits
          ? sentencePieceToTokenizerJson(
            parseSentencePieceModel(
              await Deno.readFile(join(dir, "spiece.model")),
              "spiece.model",
            ),
            "spiece.model",
            10,
          )
          : JSON.parse(await Deno.readTextFile(TOKENIZER));
        await Deno.writeTextFile(join(dir, "tokenizer.json"), JSON.stringify(json));
        const lines: string[] = [];
        const load = () =>
          withEnv(env, () => loadT5("google/t5-spiece", { cacheDir, log: (l) => lines.push(l) }));
        if (!fits) {
          await rejects(load(), (e: Error) => {
            equal(
              e.message,
              `tokenizer ${join(cached, "tokenizer.json")} and ${join(cached, "config.json")} ` +
                `do not match: the tokenizer has ${added.vocabSize} ids but the model's ` +
                `"vocab_size" is 96 (is it the model's own tokenizer?)`,
            );
            return true;
          });
          continue;
        }
        const t5 = await load();
        try {
          equal(t5.tokenizerSource, join(cached, "tokenizer.json"));
          deepEqual(lines, [], "no line saying spiece.model was converted");
          const text = "the cat <extra_id_0> on the mat";
          deepEqual(t5.tokenizer.encode(text), added.encode(text));
        } finally {
          disposeLoadedT5(t5);
        }
      }
    } finally {
      await repo.close();
    }
  },
);

/**
 * The files {@link loadFolderTokenizer} says it read from `dir`: its `tokenizer.json`, or the
 * `spiece.model` it converted and the `tokenizer_config.json` whose settings its note names.
 */
async function tokenizerFilesRead(dir: string): Promise<string[]> {
  const t = await loadFolderTokenizer(dir);
  if (t === undefined) return [];
  if (t.convertedFrom === undefined) return [basename(t.source)];
  const config = t.note.includes(`settings of ${join(dir, "tokenizer_config.json")}`);
  return [basename(t.convertedFrom), ...(config ? ["tokenizer_config.json"] : [])];
}

/** The tokenizer files {@link checkpointFiles} records for `dir` (no weights). */
async function tokenizerFilesRecorded(dir: string): Promise<string[]> {
  return Object.keys(await checkpointFiles(dir, { weights: false }))
    .filter((f) => f !== "config.json");
}

Deno.test("folderTokenizerFiles: tokenizer.json, else spiece.model and its tokenizer_config.json; checkpointFiles records what loadFolderTokenizer reads", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const relu = sharedPath("fixtures/hf-t5/t5-tiny-relu");
    await Deno.copyFile(join(relu, "config.json"), join(dir, "config.json"));
    deepEqual(await folderTokenizerFiles(dir), []);
    deepEqual(await tokenizerFilesRecorded(dir), []);
    equal(await loadFolderTokenizer(dir), undefined);
    // Names only (the spiece.model is not read to choose): the conversions are spieceTest's.
    await Deno.writeTextFile(join(dir, "spiece.model"), "not read");
    deepEqual(await folderTokenizerFiles(dir), ["spiece.model"]);
    deepEqual(await tokenizerFilesRecorded(dir), ["spiece.model"]);
    await Deno.writeTextFile(join(dir, "tokenizer_config.json"), "{}");
    deepEqual(await folderTokenizerFiles(dir), ["spiece.model", "tokenizer_config.json"]);
    deepEqual(await tokenizerFilesRecorded(dir), ["spiece.model", "tokenizer_config.json"]);
    // tokenizer.json wins over spiece.model, in the load and in the record.
    const tok = sharedPath("fixtures", "tokenizer", "unigram-glue-4k", "tokenizer.json");
    await Deno.copyFile(tok, join(dir, "tokenizer.json"));
    deepEqual(await folderTokenizerFiles(dir), ["tokenizer.json"]);
    deepEqual(await tokenizerFilesRead(dir), ["tokenizer.json"]);
    deepEqual(await tokenizerFilesRecorded(dir), ["tokenizer.json"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

spieceTest(
  "loadFolderTokenizer and checkpointFiles agree on a spiece.model folder, with and without tokenizer_config.json",
  async ({ dir }) => {
    deepEqual(await tokenizerFilesRead(dir), ["spiece.model", "tokenizer_config.json"]);
    deepEqual(await tokenizerFilesRecorded(dir), await tokenizerFilesRead(dir));
    await Deno.remove(join(dir, "tokenizer_config.json"));
    deepEqual(await tokenizerFilesRead(dir), ["spiece.model"]);
    deepEqual(await tokenizerFilesRecorded(dir), await tokenizerFilesRead(dir));
  },
);
