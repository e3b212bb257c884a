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
import { selectBackend } from "./backend.ts";
import { loadHfFolder } from "./checkpoint.ts";
import { openBlas } from "./wasm_kernels.ts";
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

async function loadFixture(name: string) {
  const dir = sharedPath("fixtures", "hf-t5", name);
  const { config, tensors } = await loadHfFolder(dir);
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

type Engine = "cpu" | "wasm" | "wasm+fix" | "wasm+blas";

async function checkParity(fixture: string, backend: Engine): Promise<void> {
  if (backend === "cpu" || backend === "wasm") {
    assert.ok(await tf.setBackend(backend), `backend ${backend} did not initialise`);
  } else {
    // The project's engines (model/backend.ts): wasm with its matmul kernels patched.
    const info = await selectBackend(backend === "wasm+fix" ? "wasm" : "wasm+blas", {
      log: () => {},
      blas: backend === "wasm+blas",
    });
    assert.equal(info.name, backend === "wasm+fix" ? "wasm" : "wasm+blas");
  }
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

const hasBlas = (() => {
  const r = openBlas();
  if (r.ok) r.blas.close();
  return r.ok;
})();

// Stock backends first: selectBackend patches the wasm kernels for the rest of the process.
for (const backend of ["cpu", "wasm", "wasm+fix", "wasm+blas"] as const) {
  for (const fixture of ["t5-tiny-relu", "t5-tiny-v1_1-untied"]) {
    Deno.test({
      name: `parity with HF: ${fixture} on ${backend}`,
      ignore: backend === "wasm+blas" && !hasBlas, // libopenblas0-pthread not installed
      fn: () => checkParity(fixture, backend),
    });
  }
}
