/**
 * End to end: a hub repo in the layout of the 2020 T5 1.1 checkpoints that the paper profiles load
 * (`"backbone": {"hf": "google/t5-v1_1-base"}`): config.json, pytorch_model.bin, spiece.model,
 * tokenizer_config.json and special_tokens_map.json, and neither tokenizer.json nor
 * model.safetensors. Served by the local stand-in hub (model/hub_testing.ts), through `loadT5`,
 * `runOne` and the hub cache offline. Each feature (the `.bin` reader, the `spiece.model`
 * conversion, the hub's PyTorch fallback) has its own tests; these run them together.
 *
 * @module
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { hubEnv, withEnv } from "../model/env_testing.ts";
import { sharedPath } from "../model/shared_dir.ts";
import { type Hub, serveHub } from "../model/hub_testing.ts";
import { HAS_SPM, spmEncode, trainTinySpiece } from "../model/spm_testing.ts";
import { disposeLoadedT5, type LoadedT5, loadT5, teacherForced } from "../model/pretrained.ts";
import { selectBackend } from "../model/backend.ts";
import { disposeT5 } from "../model/t5.ts";
import { DEFAULT_TRAIN, runId, type RunSpec, validateRunResult } from "./spec.ts";
import { buildBackbone, CONVERTED_TOKENIZER, runOne } from "./run_one.ts";

const DATA = sharedPath("data");
const HAVE_DATA = existsSync(sharedPath("data/super_glue/CB/train.jsonl")) &&
  existsSync(sharedPath("data/super_glue/RTE/train.jsonl"));
/** The T5 1.1 fixture (gated-gelu, untied, vocab_size 96) and its PyTorch copy. */
const FIXTURE = sharedPath("fixtures", "hf-t5", "t5-tiny-v1_1-untied");
const TORCH_BIN = new URL("../model/testdata/torch/t5-tiny-v1_1-untied.bin", import.meta.url)
  .pathname;
/**
 * Sentinels: the fixture's vocab_size is 96 and the tiny spiece.model has 30 pieces, so T5's 100
 * would not fit; 60 keeps the published layout's gap (32,000 pieces + 100 sentinels < 32,128
 * rows): 30 + 60 = 90 < 96.
 */
const EXTRA_IDS = 60;
const REPO = "google-2020/t5-tiny-v1_1";

/** A repo folder in the 2020 layout, and the same model with model.safetensors instead. */
interface LegacyRepo {
  /** config.json, pytorch_model.bin, spiece.model, tokenizer_config.json, special_tokens_map.json. */
  readonly repo: string;
  /** The same, with the fixture's model.safetensors in place of pytorch_model.bin. */
  readonly safetensors: string;
  /** Its spiece.model's pieces. */
  readonly pieces: number;
  /** Its spiece.model. */
  readonly spiece: string;
}

async function legacyRepo(root: string): Promise<LegacyRepo> {
  const tiny = await trainTinySpiece(join(root, "tok"));
  const sentinels = Array.from({ length: EXTRA_IDS }, (_, i) => `<extra_id_${i}>`);
  const special = {
    eos_token: "</s>",
    unk_token: "<unk>",
    pad_token: "<pad>",
    additional_special_tokens: sentinels,
  };
  // The repo's config.json as transformers wrote them in 2020: without the fields added since
  // (dense_act_fn, is_gated_act, ...: their defaults apply); relative_attention_max_distance is
  // kept, as the fixture's (16) is not the default (128). The safetensors twin keeps the
  // fixture's own config.json, so equal logits also show the old fields read alike.
  const modern = JSON.parse(await Deno.readTextFile(join(FIXTURE, "config.json")));
  for (
    const k of [
      "classifier_dropout",
      "dense_act_fn",
      "dtype",
      "is_decoder",
      "is_gated_act",
      "scale_decoder_outputs",
      "transformers_version",
      "use_cache",
    ]
  ) {
    assert.ok(k in modern, k);
    delete modern[k];
  }
  assert.ok(tiny.pieces + EXTRA_IDS < modern.vocab_size, `${tiny.pieces} pieces: no gap left`);
  const legacyConfig = JSON.stringify({ ...modern, output_past: true }, null, 2);
  const repo = join(root, "repo");
  const safetensors = join(root, "st");
  for (const [dir, weights] of [[repo, "pytorch_model.bin"], [safetensors, "model.safetensors"]]) {
    await Deno.mkdir(dir!, { recursive: true });
    if (dir === repo) await Deno.writeTextFile(join(dir, "config.json"), legacyConfig);
    else await Deno.copyFile(join(FIXTURE, "config.json"), join(dir!, "config.json"));
    await Deno.copyFile(
      weights === "pytorch_model.bin" ? TORCH_BIN : join(FIXTURE, weights!),
      join(dir!, weights!),
    );
    await Deno.copyFile(tiny.spiece, join(dir!, "spiece.model"));
    await Deno.writeTextFile(
      join(dir!, "tokenizer_config.json"),
      JSON.stringify({ ...special, extra_ids: EXTRA_IDS, model_max_length: 512 }),
    );
    await Deno.writeTextFile(join(dir!, "special_tokens_map.json"), JSON.stringify(special));
  }
  return { repo, safetensors, pieces: tiny.pieces, spiece: tiny.spiece };
}

/** The files asked for since request `from`, by name. */
function asked(hub: { requests: { path: string }[] }, from = 0): string[] {
  return hub.requests.slice(from).map((r) => r.path.replace(`/${REPO}/resolve/main/`, ""));
}

/**
 * What loading the repo into an empty cache asks for, in order: config.json and the tokenizer
 * files (tokenizer.json a 404), checked before any weight is asked for; then the rest
 * (generation_config.json a 404) and the weights: safetensors first, as transformers (404s), then
 * PyTorch's.
 */
const COLD_LOAD = [
  "config.json",
  "tokenizer.json",
  "spiece.model",
  "tokenizer_config.json",
  "generation_config.json",
  "model.safetensors",
  "model.safetensors.index.json",
  "pytorch_model.bin",
];

/**
 * Runs `fn` with a {@link legacyRepo} in a temporary root, served as `REPO` by a stand-in hub, and
 * a cache folder in that root; closes the hub and removes the root afterwards.
 */
async function withLegacyHub(
  fn: (h: { root: string; legacy: LegacyRepo; hub: Hub; cache: string }) => Promise<void>,
): Promise<void> {
  const root = await Deno.makeTempDir();
  try {
    const legacy = await legacyRepo(root);
    const hub = serveHub({ [`${REPO}@main`]: legacy.repo });
    try {
      await fn({ root, legacy, hub, cache: join(root, "cache") });
    } finally {
      await hub.close();
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

Deno.test({
  name:
    "loadT5(hub id) of a 2020-layout repo (pytorch_model.bin + spiece.model, no tokenizer.json or safetensors): converter's ids, safetensors' logits, complete cache offline",
  ignore: !HAS_SPM,
  async fn() {
    await selectBackend("cpu", { log: () => {} });
    const before = tf.memory().numTensors;
    await withLegacyHub(
      async ({ legacy: { safetensors, pieces, spiece }, hub, cache: cacheDir }) => {
        const notes: string[] = [];
        const opts = { cacheDir, endpoint: hub.endpoint, log: (l: string) => notes.push(l) };
        let fromHub: LoadedT5 | undefined, fromSt: LoadedT5 | undefined;
        try {
          // The endpoint as an option (HF_ENDPOINT names another, unreachable, to show it is unused).
          fromHub = await withEnv(hubEnv("http://127.0.0.1:9", cacheDir), () => loadT5(REPO, opts));
          assert.deepEqual(asked(hub), COLD_LOAD);
          assert.equal(fromHub.dir, join(cacheDir, `models--${REPO.replace("/", "--")}`, "main"));
          assert.ok(!existsSync(join(fromHub.dir, "tokenizer.json")), "converted in memory only");
          assert.equal(
            fromHub.tokenizerSource,
            `${join(fromHub.dir, "spiece.model")} (converted to tokenizer.json in memory)`,
          );
          assert.equal(notes.length, 1, `${notes}`);
          assert.match(notes[0]!, new RegExp(`${pieces} pieces, ${EXTRA_IDS} sentinels`));
          // The converter's ids: spm_encode's for plain text, T5's sentinels from the highest id down.
          const tok = fromHub.tokenizer;
          assert.equal(tok.vocabSize, pieces + EXTRA_IDS);
          for (const text of ["the cat sat on the mat", "a dog ran in the park"]) {
            assert.deepEqual(tok.encode(text), [...(await spmEncode(spiece, text)), 1], text);
          }
          assert.deepEqual(
            [tok.tokenToId("<extra_id_0>"), tok.tokenToId(`<extra_id_${EXTRA_IDS - 1}>`)],
            [pieces + EXTRA_IDS - 1, pieces],
          );
          assert.equal(tok.tokenToId(`<extra_id_${EXTRA_IDS}>`), undefined);

          // The same weights from model.safetensors (a local folder): the .bin's values are the
          // safetensors' bit for bit (its float16/bfloat16 layer norms are 1.0, exact there), and the
          // same ops on the same backend give the same floats, so the logits are compared exactly.
          fromSt = await loadT5(safetensors, { log: () => {} });
          const inputs = ["the cat sat on the mat <extra_id_0>", "a good day"];
          const targets = ["<extra_id_0> the park", "the dog"];
          const a = await teacherForced(fromHub, inputs, targets);
          const b = await teacherForced(fromSt, inputs, targets);
          const [la, lb] = [await a.logits.data(), await b.logits.data()];
          a.logits.dispose();
          b.logits.dispose();
          assert.ok(Number.isFinite(a.loss) && a.loss > 0, `loss ${a.loss}`);
          assert.equal(a.loss, b.loss);
          assert.equal(la.length, lb.length);
          assert.ok(la.every((v, i) => Object.is(v, lb[i])), "logits differ from safetensors'");
          disposeLoadedT5(fromHub);
          fromHub = undefined;

          // The cache is complete: offline (HF_HUB_OFFLINE=1) it loads without a request.
          const n = hub.requests.length;
          fromHub = await withEnv(
            hubEnv("http://127.0.0.1:9", cacheDir, true),
            () => loadT5(REPO, opts),
          );
          assert.equal(hub.requests.length, n, `offline requests: ${asked(hub, n)}`);
          const c = await teacherForced(fromHub, inputs, targets);
          c.logits.dispose();
          assert.equal(c.loss, a.loss);
        } finally {
          if (fromHub) disposeLoadedT5(fromHub);
          if (fromSt) disposeLoadedT5(fromSt);
        }
      },
    );
    assert.equal(tf.memory().numTensors, before, "no leaked tensors");
  },
});

/** A two-step run on CB + RTE (wasm, as run_one_test.ts's) of `model` from `backbone`. */
function runSpec(model: RunSpec["model"], backbone: RunSpec["backbone"]): RunSpec {
  const s: Omit<RunSpec, "id"> = {
    profile: "test",
    model,
    backbone,
    benchmark: "super_glue",
    tasks: ["cb", "rte_sg"],
    method: { name: "mtl", label: "mtl", config: {} },
    seed: 1,
    backend: "wasm",
    train: {
      ...DEFAULT_TRAIN,
      learningRate: 1e-2,
      steps: 2,
      batchSize: 4,
      maxInputLength: 32,
      maxTargetLength: 4,
      evalEvery: 2,
      checkpointEvery: 2,
      evalMaxExamples: 4,
    },
  };
  return { ...s, id: runId(s) };
}

Deno.test({
  name:
    "runOne() with backbone {hf} of a 2020-layout hub repo: trains, records the source and backbone:spiece.model, weights asked last; again offline from the cache",
  ignore: !HAS_SPM || !HAVE_DATA,
  async fn() {
    // Counted here, not assumed 0: a tensor an earlier test left is not this test's leak.
    await tf.ready();
    const before = tf.memory().numTensors;
    await withLegacyHub(async ({ root, hub, cache }) => {
      const folder = join(cache, "hub", `models--${REPO.replace("/", "--")}`, "main");
      const s = runSpec({ hf: REPO }, { hf: REPO });
      const results = [];
      for (const offline of [false, true]) {
        const n = hub.requests.length;
        const out = await Deno.makeTempDir({ dir: root });
        const r = await withEnv(
          hubEnv(hub.endpoint, cache, offline),
          () => runOne(s, { outDir: out, dataDir: DATA }),
        );
        validateRunResult(JSON.parse(JSON.stringify(r)), { file: "runOne()" });
        assert.equal(r.backboneSource, folder);
        assert.equal(r.tokenizer, CONVERTED_TOKENIZER);
        assert.equal(r.losses.length, 2);
        assert.ok(r.losses.every((l) => Number.isFinite(l.loss)), JSON.stringify(r.losses));
        assert.deepEqual(r.evals.map((e) => e.task), ["cb", "rte_sg"]);
        if (offline) {
          assert.deepEqual(asked(hub, n), [], "offline: no request");
        } else {
          // config.json and the tokenizer files (tokenizer.json: 404) are checked before the
          // weights are downloaded, and a 404 is not asked for again.
          assert.deepEqual(asked(hub, n), COLD_LOAD);
        }
        results.push(r);
      }
      // The same weights, data and seed: the same run.
      assert.deepEqual(results[1]!.losses, results[0]!.losses);
    });
    assert.equal(tf.memory().numTensors, before, "runOne releases every tensor");
  },
});

Deno.test({
  name:
    "buildBackbone(): random init from a hub id whose repo has no tokenizer.json works offline from the cache (no HF_HUB_OFFLINE)",
  ignore: !HAS_SPM,
  async fn() {
    await selectBackend("wasm", { log: () => {} });
    const before = tf.memory().numTensors;
    await withLegacyHub(async ({ hub, cache }) => {
      const s = runSpec({ hf: REPO }, "random");
      const env = hubEnv(hub.endpoint, cache);
      const first = await withEnv(env, () => buildBackbone(s, DATA));
      disposeT5(first.model);
      assert.deepEqual(asked(hub), COLD_LOAD.slice(0, 4), "config.json and the tokenizer files");
      assert.equal(first.tokenizerSource, CONVERTED_TOKENIZER);
      // The hub is gone (as on a machine without network): the cache has every file the repo
      // has of those the run needs, so nothing is asked for.
      await hub.close();
      const again = await withEnv(env, () => buildBackbone(s, DATA));
      disposeT5(again.model);
      assert.equal(again.tokenizerSource, CONVERTED_TOKENIZER);
      assert.equal(hub.requests.length, 4, `${asked(hub)}`);
    });
    assert.equal(tf.memory().numTensors, before, "no leaked tensors");
  },
});
