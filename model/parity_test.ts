/**
 * Parity with Hugging Face `T5ForConditionalGeneration` (transformers 5.17, PyTorch 2.11, float32)
 * on the two tiny checkpoints in `shared/fixtures/hf-t5/`: logits, encoder output, loss, every
 * gradient norm, greedy tokens and the parameter total, on the `cpu` and `wasm` backends.
 *
 * Tolerances: the worst error measured over the 8 cases (2 fixtures × 4 engines, this machine,
 * printed by each case) times a margin of 2–4 for summation-order differences on other CPUs
 * (OpenBLAS and XNNPACK pick kernels by instruction set). Logits and encoder output are compared
 * relative to the reference tensor's largest magnitude (max |logit| 4.0 and 19.5, max |encoder
 * output| 3.1 and 3.5), which is the scale fp32 rounding works at:
 *
 * | quantity | worst measured | enforced |
 * |---|---|---|
 * | logits, max abs diff / max abs logit | 5.9e-7 (1.14e-5 absolute, untied/cpu) | 2e-6 |
 * | encoder output, same | 2.7e-7 (8.9e-7 absolute) | 1e-6 |
 * | loss, relative | 8.6e-8 (1 ulp) | 3e-7 (about 3 ulps) |
 * | each parameter's gradient L2 norm, relative | 1.47e-6 (relu/wasm) | 3e-6 |
 *
 * Greedy tokens and parameter totals are exact. The fixtures hold per-parameter gradient norms
 * (`grad_l2_norms`), not gradient values, so every parameter's norm is compared, not a global one.
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

/** Tolerances (see the module comment for the measurements they are set from). */
const TOL = { logitsRel: 2e-6, encoderRel: 1e-6, lossRel: 3e-7, gradNormRel: 3e-6 } as const;

function maxAbs(b: number[][][]): number {
  let m = 0;
  for (const r of b) for (const c of r) for (const v of c) m = Math.max(m, Math.abs(v));
  return m;
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
  const sl = maxAbs(ref.logits);
  const se = maxAbs(ref.encoder_last_hidden_state);
  assert.ok(
    dl <= TOL.logitsRel * sl,
    `${fixture}/${backend}: logits max abs diff ${dl} > ${TOL.logitsRel} × max |logit| ${sl}`,
  );
  assert.ok(
    de <= TOL.encoderRel * se,
    `${fixture}/${backend}: encoder output max abs diff ${de} > ${TOL.encoderRel} × ${se}`,
  );
  const loss = crossEntropyLoss(logits, labels);
  const lv = (await loss.data())[0]!;
  assert.ok(
    Math.abs(lv - ref.loss) / ref.loss <= TOL.lossRel,
    `${fixture}/${backend}: loss ${lv} vs ${ref.loss} (relative tolerance ${TOL.lossRel})`,
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
      rel <= TOL.gradNormRel,
      `${fixture}/${backend}: grad norm ${name}: ${got} vs ${want} (rel ${rel} > ${TOL.gradNormRel})`,
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
    `${fixture}/${backend}: logits ${dl.toExponential(2)} (${
      (dl / sl).toExponential(2)
    } of max), ` +
      `enc ${de.toExponential(2)} (${(de / se).toExponential(2)} of max), ` +
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
