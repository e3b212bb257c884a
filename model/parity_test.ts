/**
 * Parity with Hugging Face `T5ForConditionalGeneration` (transformers 5.17, PyTorch 2.11, float32)
 * on the two tiny checkpoints in `shared/fixtures/hf-t5/`: logits, encoder output, loss, every
 * gradient norm, greedy tokens and the parameter total, on the `cpu` and `wasm` backends.
 *
 * Tolerances: logits/encoder output 1e-4 absolute (values O(1–10), a dozen fp32 ops deep, expected
 * error ~1e-6); loss 1e-5 relative; gradient norms 1e-3 relative (a backward pass through a few
 * hundred fp32 ops in a different summation order); greedy tokens and totals exact.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { t5ConfigFromHf } from "./config.ts";
import { sharedPath } from "./shared_dir.ts";
import {
  crossEntropyLoss,
  disposeT5,
  forward,
  greedyDecode,
  shiftRight,
  t5FromTensors,
} from "./t5.ts";

interface Reference {
  input_ids: number[][];
  attention_mask: number[][];
  labels: number[][];
  decoder_input_ids: number[][];
  logits: number[][][];
  loss: number;
  encoder_last_hidden_state: number[][][];
  grad_l2_norms: Record<string, number>;
  greedy: number[][];
  n_params: number;
}

/** Minimal F32-only safetensors reader (private to this test; the loader has its own tests). */
function readSafetensorsF32(path: string): Map<string, tf.Tensor> {
  const bytes = Deno.readFileSync(path);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const out = new Map<string, tf.Tensor>();
  for (const [name, info] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    if (info.dtype !== "F32") {
      throw new Error(`${path}: ${name} is ${info.dtype}, test reader handles F32`);
    }
    const [b, e] = info.data_offsets;
    const raw = bytes.slice(8 + n + b, 8 + n + e);
    out.set(name, tf.tensor(new Float32Array(raw.buffer), info.shape, "float32"));
  }
  return out;
}

async function loadFixture(name: string) {
  const dir = sharedPath("fixtures", "hf-t5", name);
  const config = t5ConfigFromHf(JSON.parse(await Deno.readTextFile(`${dir}/config.json`)), dir);
  const tensors = readSafetensorsF32(`${dir}/model.safetensors`);
  const model = t5FromTensors(config, tensors, dir);
  tf.dispose([...tensors.values()]);
  const ref = JSON.parse(await Deno.readTextFile(`${dir}/reference.json`)) as Reference;
  return { model, ref };
}

function maxAbsDiff(a: tf.Tensor, b: number[][][]): number {
  const x = a.arraySync() as number[][][];
  let m = 0;
  x.forEach((r, i) =>
    r.forEach((c, j) => c.forEach((v, k) => m = Math.max(m, Math.abs(v - b[i]![j]![k]!))))
  );
  return m;
}

async function checkParity(fixture: string, backend: "cpu" | "wasm"): Promise<void> {
  assert.ok(await tf.setBackend(backend), `backend ${backend} did not initialise`);
  const { model, ref } = await loadFixture(fixture);
  const before = tf.memory().numTensors;
  const inputIds = tf.tensor2d(ref.input_ids, undefined, "int32");
  const attentionMask = tf.tensor2d(ref.attention_mask, undefined, "float32");
  const labels = tf.tensor2d(ref.labels, undefined, "int32");
  const decoderInputIds = shiftRight(labels, model.config);
  assert.deepEqual(decoderInputIds.arraySync(), ref.decoder_input_ids, "shiftRight");

  const { logits, encoderOutput } = forward(model, { inputIds, attentionMask, decoderInputIds });
  const dl = maxAbsDiff(logits, ref.logits);
  const de = maxAbsDiff(encoderOutput, ref.encoder_last_hidden_state);
  assert.ok(dl < 1e-4, `${fixture}/${backend}: logits max abs diff ${dl}`);
  assert.ok(de < 1e-4, `${fixture}/${backend}: encoder output max abs diff ${de}`);
  const loss = crossEntropyLoss(logits, labels);
  const lv = (await loss.data())[0]!;
  assert.ok(
    Math.abs(lv - ref.loss) / ref.loss < 1e-5,
    `${fixture}/${backend}: loss ${lv} vs ${ref.loss}`,
  );
  tf.dispose([logits, encoderOutput, loss]);

  // Gradients by HF name.
  const byVarName = new Map<string, string>();
  for (const [hf, v] of model.params) byVarName.set(v.name, hf);
  const { value, grads } = tf.variableGrads(() => {
    const out = forward(model, { inputIds, attentionMask, decoderInputIds });
    return crossEntropyLoss(out.logits, labels);
  }, [...model.params.values()]);
  const norms = new Map<string, number>();
  for (const [vn, g] of Object.entries(grads)) {
    const n = tf.tidy(() => tf.norm(g));
    norms.set(byVarName.get(vn)!, (await n.data())[0]!);
    n.dispose();
  }
  tf.dispose([value, ...Object.values(grads)]);
  assert.deepEqual(
    [...norms.keys()].sort(),
    Object.keys(ref.grad_l2_norms).sort(),
    "gradient names",
  );
  let worst = 0;
  for (const [name, want] of Object.entries(ref.grad_l2_norms)) {
    const got = norms.get(name)!;
    const rel = Math.abs(got - want) / Math.max(want, 1e-12);
    worst = Math.max(worst, rel);
    assert.ok(
      rel < 1e-3,
      `${fixture}/${backend}: grad norm ${name}: ${got} vs ${want} (rel ${rel})`,
    );
  }

  const greedy = await greedyDecode(model, { inputIds, attentionMask }, {
    maxNewTokens: ref.greedy[0]!.length - 1,
    stopAtEos: false,
  });
  assert.deepEqual(greedy, ref.greedy.map((r) => r.slice(1)), `${fixture}/${backend}: greedy`);

  let total = 0;
  for (const v of model.params.values()) total += v.size;
  assert.equal(total, ref.n_params, "parameter total");

  tf.dispose([inputIds, attentionMask, labels, decoderInputIds]);
  assert.equal(tf.memory().numTensors, before, "no tensors left behind");
  disposeT5(model);
  console.log(
    `${fixture}/${backend}: logits ${dl.toExponential(2)}, enc ${de.toExponential(2)}, ` +
      `loss rel ${(Math.abs(lv - ref.loss) / ref.loss).toExponential(2)}, worst grad rel ${
        worst.toExponential(2)
      }`,
  );
}

for (const fixture of ["t5-tiny-relu", "t5-tiny-v1_1-untied"]) {
  for (const backend of ["cpu", "wasm"] as const) {
    Deno.test(`parity with HF: ${fixture} on ${backend}`, () => checkParity(fixture, backend));
  }
}
