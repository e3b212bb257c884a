/**
 * Prompt-Tuning's class-label initialisation (Lester et al. §2.2; official
 * `prompts.from_embedded_list`): one prompt row per label word, the mean of that word's sub-word
 * embeddings, read from the table the encoder uses; the remaining rows sampled token embeddings.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { PRESETS, type T5Config } from "../config.ts";
import type { MethodContext } from "../method.ts";
import { disposeT5, initT5, t5FromTensors, type T5Model } from "../t5.ts";
import { T5Tokenizer } from "../tokenizer.ts";
import { sharedPath } from "../shared_dir.ts";
import { classLabelRows, mtlPrompt, promptTuning } from "./prompt_tuning.ts";
import { gpuTest } from "../webgpu/testing.ts";
import { registerWebgpuKernels } from "../webgpu/mod.ts";

await tf.setBackend("cpu");

const D = 8;

/** A toy embedding table: row i, column j holds i + j/16 (distinct, exact in float32). */
function toyTable(vocab: number, offset = 0): tf.Tensor2D {
  const v = new Float32Array(vocab * D);
  for (let i = 0; i < vocab; i++) for (let j = 0; j < D; j++) v[i * D + j] = offset + i + j / 16;
  return tf.tensor2d(v, [vocab, D]);
}

function toyRow(i: number, offset = 0): number[] {
  return Array.from({ length: D }, (_, j) => offset + i + j / 16);
}

/** A tiny model whose `shared.weight` is the toy table (optionally a distinct encoder table). */
function toyModel(vocab: number, encoderOffset?: number): T5Model {
  const config: T5Config = { ...PRESETS["tiny-v1_1"], vocabSize: vocab, dModel: D };
  const init = initT5(config, { seed: 1 });
  const tensors = new Map<string, tf.Tensor>(init.params);
  tensors.set("shared.weight", toyTable(vocab));
  if (encoderOffset !== undefined) {
    tensors.set("encoder.embed_tokens.weight", toyTable(vocab, encoderOffset));
  }
  const model = t5FromTensors(config, tensors, "toy");
  tf.dispose([tensors.get("shared.weight")!, tensors.get("encoder.embed_tokens.weight")]);
  disposeT5(init);
  return model;
}

function promptRows(
  model: T5Model,
  labels: Map<string, number[][]>,
  length: number,
): { rows: number[][][]; ctx: MethodContext } {
  const ctx: MethodContext = {
    config: model.config,
    tasks: [...labels.keys()],
    seed: 5,
    backbone: model.params,
    labelTokenIds: labels,
  };
  const inst = promptTuning.create(
    ctx,
    promptTuning.parseConfig({ length, vocabSampleSize: model.config.vocabSize }, "test"),
  );
  const rows = inst.variables.get("prompt_tuning.prompt")!.arraySync() as number[][][];
  inst.dispose();
  return { rows, ctx };
}

function mean(ids: readonly number[], offset = 0): number[] {
  const out = new Array<number>(D).fill(0);
  for (const i of ids) toyRow(i, offset).forEach((v, j) => out[j]! += v / ids.length);
  return out;
}

/**
 * The float64 mean of a few float32 values rounded to float32 is within 1 ulp (2^-23 ≈ 1.2e-7
 * relative) of the float64 mean computed here; allow 2e-7 relative.
 */
function assertClose(got: number[], want: number[], what: string): void {
  for (const [j, w] of want.entries()) {
    const g = got[j]!;
    assert.ok(Math.abs(g - w) <= 2e-7 * Math.max(1, Math.abs(w)), `${what}[${j}]: ${g} vs ${w}`);
  }
}

Deno.test("class-label init: one row per label word, the mean of its sub-word embeddings", () => {
  const model = toyModel(40);
  const before = tf.memory().numTensors;
  // rte: a one-token and a three-token label; cola: a two-token label; length 5.
  const labels = new Map([["rte", [[5], [6, 7, 9]]], ["cola", [[10, 11]]]]);
  const { rows, ctx } = promptRows(model, labels, 5);
  assert.equal(tf.memory().numTensors, before, "create + dispose left tensors");
  for (const [t, task] of ctx.tasks.entries()) {
    const words = labels.get(task)!;
    for (const [i, ids] of words.entries()) {
      assertClose(rows[t]![i]!, mean(ids), `${task} label row ${i}`);
    }
    // The other rows: single sampled tokens, distinct, none of them a label sub-word.
    const sampled = rows[t]!.slice(words.length).map((r) => r[0]!);
    assert.equal(sampled.length, 5 - words.length);
    for (const [k, first] of sampled.entries()) {
      const id = Math.round(first); // column 0 of row i is exactly i
      assert.deepEqual(rows[t]![words.length + k], toyRow(id), `${task} sampled row ${k}`);
      assert.ok(!words.flat().includes(id), `${task}: sampled a label sub-word ${id}`);
    }
    assert.equal(new Set(sampled).size, sampled.length, `${task}: repeated sampled rows`);
  }
  disposeT5(model);
});

Deno.test("classLabelRows: label lists first (truncated to the length), then distinct draws", () => {
  assert.deepEqual(classLabelRows([[1, 2], [3]], 2, 10, 1), [[1, 2], [3]]);
  assert.deepEqual(classLabelRows([[1], [2], [3]], 2, 10, 1), [[1], [2]]);
  const r = classLabelRows([[1, 2]], 6, 6, 1);
  assert.deepEqual(r[0], [1, 2]);
  // Pool [0, 6) minus {1, 2}: four distinct ids, then one repeat.
  const drawn = r.slice(1).map((x) => x[0]!);
  assert.deepEqual([...new Set(drawn.slice(0, 4))].sort(), [0, 3, 4, 5]);
  assert.ok([0, 3, 4, 5].includes(drawn[4]!));
  assert.deepEqual(classLabelRows([[1, 2]], 6, 6, 1), r, "seeded");
  // Every id of the pool a label sub-word: the draws exclude none (distinct while they last).
  const all = classLabelRows([[0, 1]], 4, 2, 1);
  assert.deepEqual(all[0], [0, 1]);
  assert.deepEqual(all.slice(1, 3).map((x) => x[0]!).sort(), [0, 1]);
  assert.ok([0, 1].includes(all[3]![0]!) && all[3]!.length === 1, `${all[3]}`);
  assert.throws(
    () => classLabelRows([[1]], 3, 0, 1),
    /classLabelRows: the pool of token ids \[0, pool\) .* must be an integer >= 1, got 0$/,
  );
});

Deno.test("class-label init with a hand-made tokenizer whose first ids are all label sub-words", () => {
  // Tokenizer-dependent: RTE's label words take ids 0-3 here, the whole vocabSampleSize pool.
  const tok = T5Tokenizer.fromJson({
    added_tokens: [],
    pre_tokenizer: { type: "Metaspace", replacement: "\u2581", prepend_scheme: "always" },
    model: {
      type: "Unigram",
      unk_id: 5,
      vocab: [
        ["\u2581entailment", -1],
        ["\u2581not", -1],
        ["_", -1],
        ["entailment", -1],
        ["</s>", 0],
        ["<unk>", 0],
        ["<pad>", 0],
      ],
    },
  }, "hand-made tokenizer.json");
  const words = ["entailment", "not_entailment"].map((w) => tok.encodeNoEos(w));
  assert.deepEqual(words, [[0], [1, 2, 3]]);
  const model = toyModel(7);
  const before = tf.memory().numTensors;
  const ctx: MethodContext = {
    config: model.config,
    tasks: ["rte"],
    seed: 5,
    backbone: model.params,
    labelTokenIds: new Map([["rte", words]]),
  };
  const cfg = promptTuning.parseConfig({ length: 5, vocabSampleSize: 4 }, "test");
  const inst = promptTuning.create(ctx, cfg);
  const rows = (inst.variables.get("prompt_tuning.prompt")!.arraySync() as number[][][])[0]!;
  inst.dispose();
  assert.equal(tf.memory().numTensors, before, "create + dispose left tensors");
  assertClose(rows[0]!, mean([0]), "label row 0");
  assertClose(rows[1]!, mean([1, 2, 3]), "label row 1");
  // The other three: distinct single tokens of the pool [0, 4), label sub-words included.
  const sampled = rows.slice(2).map((r) => Math.round(r[0]!));
  assert.equal(new Set(sampled).size, 3, `${sampled}`);
  for (const [k, id] of sampled.entries()) {
    assert.ok(id >= 0 && id < 4, `sampled id ${id}`);
    assert.deepEqual(rows[2 + k], toyRow(id), `sampled row ${k}`);
  }
  disposeT5(model);
});

Deno.test("class-label init reads the encoder's own embedding table when it has one", () => {
  const model = toyModel(40, 1000);
  assert.ok(model.params.has("encoder.embed_tokens.weight"));
  const { rows } = promptRows(model, new Map([["rte", [[3], [4, 8]]]]), 3);
  assertClose(rows[0]![0]!, mean([3], 1000), "row 0");
  assertClose(rows[0]![1]!, mean([4, 8], 1000), "row 1");
  assert.ok(rows[0]![2]![0]! >= 1000, "sampled row from the encoder table");
  disposeT5(model);
});

Deno.test("class-label init with the fixture tokenizer: multi-piece label words give one row", async () => {
  const tok = await T5Tokenizer.fromFile(
    sharedPath("fixtures", "tokenizer", "unigram-glue-4k", "tokenizer.json"),
  );
  const words = ["entailment", "not_entailment"].map((w) => tok.encodeNoEos(w));
  assert.ok(words[1]!.length > 1, `"not_entailment" is one piece here: ${words[1]}`);
  const vocab = Math.max(...words.flat()) + 1;
  const model = toyModel(vocab);
  const { rows } = promptRows(model, new Map([["rte", words]]), 4);
  for (const [i, ids] of words.entries()) assertClose(rows[0]![i]!, mean(ids), `label ${i}`);
  disposeT5(model);
});

Deno.test("class-label init errors name the task and label", () => {
  const model = toyModel(20);
  assert.throws(
    () => promptRows(model, new Map([["rte", [[3], []]]]), 4),
    /prompt_tuning\.ts: label 1 of task "rte" has no token ids/,
  );
  assert.throws(
    () => promptRows(model, new Map([["rte", [[3, 20]]]]), 4),
    /prompt_tuning\.ts: token id 20 of label 0 of task "rte" is not in \[0, 20\)/,
  );
  const ctx: MethodContext = {
    config: model.config,
    tasks: ["rte", "cola"],
    seed: 1,
    backbone: model.params,
    labelTokenIds: new Map([["rte", [[3]]]]),
  };
  assert.throws(
    () => promptTuning.create(ctx, promptTuning.defaults),
    /labelTokenIds has no entry for task "cola"/,
  );
  disposeT5(model);
});

gpuTest(
  "class-label init on webgpu (custom kernels): the sub-word means and sampled rows, no synchronous read",
  async () => {
    // The GPU benchmark creates the method on webgpu, where tfjs's synchronous read (through a
    // canvas, which Deno lacks) threw: every Prompt-Tuning run (class-label init by default)
    // failed before its first step.
    // 200 × 8 values: tfjs runs ops on inputs under 1,000 values held on the CPU there
    // (WEBGPU_CPU_HANDOFF_SIZE_THRESHOLD), a real embedding table on the GPU.
    const model = toyModel(200);
    const before = tf.memory().numTensors;
    // One-, three- and two-piece label words; length 5.
    const labels = new Map([["rte", [[5], [6, 7, 9]]], ["cola", [[10, 11]]]]);
    const inst = promptTuning.create(
      {
        config: model.config,
        tasks: [...labels.keys()],
        seed: 5,
        backbone: model.params,
        labelTokenIds: labels,
      },
      promptTuning.parseConfig({ length: 5, vocabSampleSize: 200 }, "test"),
    );
    const rows = (await inst.variables.get("prompt_tuning.prompt")!.array()) as number[][][];
    inst.dispose();
    assert.equal(tf.memory().numTensors, before, "create + dispose left tensors");
    for (const [t, words] of [...labels.values()].entries()) {
      for (const [i, ids] of words.entries()) assertClose(rows[t]![i]!, mean(ids), `row ${t}/${i}`);
      // The sampled rows are the table's rows, exactly (column 0 of row i is i).
      for (const r of rows[t]!.slice(words.length)) assert.deepEqual(r, toyRow(Math.round(r[0]!)));
    }
    disposeT5(model);
  },
  () => assert.ok(registerWebgpuKernels()),
);

/** A table of seeded values in (−1, 1), both signs, full float32 mantissas (means round). */
function randomTable(vocab: number): Float32Array {
  const v = new Float32Array(vocab * D);
  let s = 12345;
  for (let i = 0; i < v.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    v[i] = (s / 2 ** 32) * 2 - 1;
  }
  return v;
}

/** The initial prompt of `method` with init "class_label" on the current backend, read async. */
async function classLabelPrompt(
  method: typeof promptTuning,
  table: Float32Array,
  labels: Map<string, number[][]>,
  length: number,
): Promise<number[][][]> {
  const vocab = table.length / D;
  const config: T5Config = { ...PRESETS["tiny-v1_1"], vocabSize: vocab, dModel: D };
  const emb = tf.tidy(() => tf.variable(tf.tensor2d(table, [vocab, D]), false));
  const inst = method.create(
    {
      config,
      tasks: [...labels.keys()],
      seed: 5,
      backbone: new Map([["shared.weight", emb]]),
      labelTokenIds: labels,
    },
    method.parseConfig({ length, init: "class_label", vocabSampleSize: vocab }, "test"),
  );
  const rows = (await inst.variables.get(`${method.name}.prompt`)!.array()) as number[][][];
  inst.dispose();
  emb.dispose();
  return rows;
}

for (const kernels of ["custom kernels", "stock kernels"] as const) {
  gpuTest(
    `class-label init on webgpu (${kernels}) matches the cpu path: prompt_tuning and mtl_prompt`,
    async () => {
      // 200 × 8 values: over tfjs's 1,000-value CPU hand-off threshold
      // (WEBGPU_CPU_HANDOFF_SIZE_THRESHOLD), so the gather and the matmul run on the GPU.
      const table = randomTable(200);
      const labels = new Map([
        ["rte", [[5], [6, 7, 9], [20, 21, 22, 23, 24]]],
        ["cola", [[10, 11], [30, 31, 32, 33, 34, 35, 36]]],
      ]);
      for (const method of [promptTuning, mtlPrompt]) {
        await tf.setBackend("cpu");
        const want = await classLabelPrompt(method, table, labels, 6);
        await tf.setBackend("webgpu");
        const gpu = tf.backend() as unknown as { readSync: (id: object) => unknown };
        const readSync = gpu.readSync;
        let syncReads = 0;
        gpu.readSync = function (this: unknown, id: object) {
          syncReads++;
          return readSync.call(this, id);
        };
        const before = tf.memory().numTensors;
        let got: number[][][];
        try {
          got = await classLabelPrompt(method, table, labels, 6);
        } finally {
          gpu.readSync = readSync;
        }
        assert.equal(tf.memory().numTensors, before, `${method.name}: tensors leaked`);
        assert.equal(syncReads, 0, `${method.name}: synchronous read-back on webgpu`);
        // Words of one or two pieces: weights 1 and 1/2 are exact, so the float32 matmul is the
        // float64 mean rounded once, bit for bit. Longer words: the matmul sums n float32
        // products of x_t and fl(1/n) (error ≤ γ_n·Σ|x_t|/n plus fl(1/n)'s u·Σ|x_t|/n, u = 2^-24;
        // the zero weights of other rows add exact zeros) and the cpu path rounds its float64
        // mean once (≤ u·|mean|): |gpu − cpu| ≤ (n + 2)·u·mean|x_t|. In ulps of the mean this is
        // unbounded: the table has both signs, as real embeddings do, and where they cancel the
        // mean is small (measured on llvmpipe: at most 1.3·u·mean|x_t|, which was 21 ulps of a
        // 3-piece mean of 6e-3).
        for (const [t, words] of [...labels.values()].entries()) {
          for (const [i, ids] of words.entries()) {
            const g = got[t]![i]!, w = want[t]![i]!;
            const what = `${method.name} row ${t}/${i} (${ids.length} pieces)`;
            if (ids.length <= 2) {
              assert.deepEqual(g, w, what);
              continue;
            }
            for (let j = 0; j < D; j++) {
              const meanAbs = ids.reduce((a, id) => a + Math.abs(table[id * D + j]!), 0) /
                ids.length;
              const tol = (ids.length + 2) * 2 ** -24 * meanAbs;
              assert.ok(Math.abs(g[j]! - w[j]!) <= tol, `${what}[${j}]: ${g[j]} vs ${w[j]}`);
            }
          }
          // The sampled rows: single table rows, the same draws on both backends.
          for (let i = words.length; i < 6; i++) {
            assert.deepEqual(got[t]![i], want[t]![i], `${method.name} sampled row ${t}/${i}`);
          }
        }
      }
    },
    kernels === "custom kernels" ? () => assert.ok(registerWebgpuKernels()) : undefined,
  );
}
