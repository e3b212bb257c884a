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
 * | loss, relative | 1.43e-7 (2 ulps, untied/wasm+blas) | 3e-7 (about 3 ulps) |
 * | each parameter's gradient L2 norm, relative | 1.47e-6 (relu/wasm) | 3e-6 |
 *
 * Greedy tokens and parameter totals are exact. The fixtures hold per-parameter gradient norms
 * (`grad_l2_norms`), not gradient values, so every parameter's norm is compared, not a global one.
 *
 * The same checks run on `webgpu` as `deno task bench` selects it (`selectBackend("webgpu")`: the
 * project's WGSL kernels, self-checked: tiled and per-head matMuls, fused attention softmax, RMS
 * norm, cross-entropy), on whatever adapter there is (the llvmpipe software adapter here; skipped
 * without one). Measured there: logits 5.8e-7 of max, encoder output 3.1e-7, loss 0 (same bits),
 * gradient norms 8.7e-7, i.e. as close as cpu. Enforced ({@link WEBGPU_TOL}) 1e-5, 1e-5, 1e-5 and
 * 2e-5: 10–30× that, for a hardware GPU, whose WGSL `exp` may be 3 + 2·|x| ulp off (the spec's
 * bound) and whose tuned tiles and K splits sum in other orders; about the 1e-5 relative error
 * beyond which `selfCheckWebgpuKernels` refuses a kernel. And one training step (dropout on,
 * AdamW in place on the GPU) of MTL and HyperPrompt-Global, webgpu against cpu, see
 * {@link compareSteps}. The webgpu cases take about 11 s on the software adapter.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { selectBackend } from "./backend.ts";
import { gpuTest } from "./webgpu/testing.ts";
import { webgpuKernelsInstalled } from "./webgpu/mod.ts";
import { countGpuWork, type GpuWorkCount } from "./webgpu/counters.ts";
import { updatePathsTaken } from "./fused.ts";
import { METHODS } from "./methods/mod.ts";
import type { Method } from "./method.ts";
import { createOptimizer } from "../benchmarks/optim.ts";
import { trainedVariables } from "../benchmarks/trainer.ts";
import { uniformValues } from "../benchmarks/rng.ts";
import { loadHfFolder } from "./checkpoint.ts";
import { openBlas } from "./wasm_kernels.ts";
import { sharedPath } from "./shared_dir.ts";
import { HF_PARITY_TOL, type ParityTolerances } from "./parity_testing.ts";
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
const TOL = HF_PARITY_TOL;

/** Relative tolerances of {@link checkParity}. */
type Tolerances = ParityTolerances;

function maxAbs(b: number[][][]): number {
  let m = 0;
  for (const r of b) for (const c of r) for (const v of c) m = Math.max(m, Math.abs(v));
  return m;
}

async function maxAbsDiff(a: tf.Tensor, b: number[][][]): Promise<number> {
  // The reference's shape first: a short output would otherwise be compared on its own part.
  assert.deepEqual(a.shape, [b.length, b[0]!.length, b[0]![0]!.length], "shape of the output");
  // Asynchronous read: webgpu in Deno has no synchronous one (it goes through a canvas).
  const x = await a.array() as number[][][];
  let m = 0;
  x.forEach((r, i) =>
    r.forEach((c, j) => c.forEach((v, k) => m = Math.max(m, Math.abs(v - b[i]![j]![k]!))))
  );
  return m;
}

type Engine = "cpu" | "wasm" | "wasm+fix" | "wasm+blas" | "webgpu";

async function checkParity(fixture: string, backend: Engine, tol: Tolerances = TOL): Promise<void> {
  if (backend === "webgpu") {
    await selectWebgpuAsTheBenchmarkDoes();
  } else if (backend === "cpu" || backend === "wasm") {
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
  assert.deepEqual(await decoderInputIds.array(), ref.decoder_input_ids, "shiftRight");

  const { logits, encoderOutput } = forward(model, { inputIds, attentionMask, decoderInputIds });
  const dl = await maxAbsDiff(logits, ref.logits);
  const de = await maxAbsDiff(encoderOutput, ref.encoder_last_hidden_state);
  const sl = maxAbs(ref.logits);
  const se = maxAbs(ref.encoder_last_hidden_state);
  assert.ok(
    dl <= tol.logitsRel * sl,
    `${fixture}/${backend}: logits max abs diff ${dl} > ${tol.logitsRel} × max |logit| ${sl}`,
  );
  assert.ok(
    de <= tol.encoderRel * se,
    `${fixture}/${backend}: encoder output max abs diff ${de} > ${tol.encoderRel} × ${se}`,
  );
  const loss = crossEntropyLoss(logits, labels);
  const lv = (await loss.data())[0]!;
  assert.ok(
    Math.abs(lv - ref.loss) / ref.loss <= tol.lossRel,
    `${fixture}/${backend}: loss ${lv} vs ${ref.loss} (relative tolerance ${tol.lossRel})`,
  );
  tf.dispose([logits, encoderOutput, loss]);

  // Gradients by HF name.
  const byVarName = new Map<string, string>();
  for (const [hf, v] of model.params) byVarName.set(v.name, hf);
  const stop = backend === "webgpu" ? countGpuWork() : undefined;
  let counted: GpuWorkCount | undefined;
  let vg: { value: tf.Scalar; grads: tf.NamedTensorMap };
  try {
    vg = tf.variableGrads(() => {
      const out = forward(model, { inputIds, attentionMask, decoderInputIds });
      return crossEntropyLoss(out.logits, labels);
    }, [...model.params.values()]);
  } finally {
    counted = stop?.();
  }
  const { value, grads } = vg;
  if (backend === "webgpu") assertCustomKernelsRan(counted!, `${fixture}/${backend}`);
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
      rel <= tol.gradNormRel,
      `${fixture}/${backend}: grad norm ${name}: ${got} vs ${want} (rel ${rel} > ${tol.gradNormRel})`,
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

/**
 * Selects webgpu as `deno task bench --backend webgpu` does (`selectBackend`: raised device
 * limits, the custom kernels registered after their on-device self-check, the adapter's tuning
 * table if it has one) and checks that the custom kernels are installed, not tfjs's stock ones.
 */
async function selectWebgpuAsTheBenchmarkDoes(): Promise<void> {
  const info = await selectBackend("webgpu", { log: () => {} });
  assert.equal(info.name, "webgpu");
  const installed = webgpuKernelsInstalled();
  assert.ok(installed?.fused, `custom webgpu kernels not installed: ${info.notes.join("; ")}`);
}

/**
 * The custom programs a T5 forward + backward dispatches on webgpu (their classes are this
 * project's: `matmul_kernels.ts`, `fused_kernels.ts`), each at least once, so that the parity
 * above is the custom kernels' and not tfjs's stock ones'.
 */
const CUSTOM_PROGRAMS = [
  "TiledMatMulProgram", // transposed matMuls (attention and the backward's weight gradients)
  "StridedMatMulProgram", // per-head attention scores and context
  "SoftmaxProgram", // fused attention softmax (position bias + mask) and its gradient
  "FusedRowProgram", // RMS norm and its input gradient
  "RmsNormDwProgram", // RMS norm's weight gradient
  "XentProgram", // fused softmax cross-entropy
  "FusedElementwiseProgram", // its gradient (and the gated GELU of T5 1.1)
];

function assertCustomKernelsRan(count: GpuWorkCount, what: string): void {
  const missing = CUSTOM_PROGRAMS.filter((p) => !(count.byProgram[p]! > 0));
  assert.deepEqual(
    missing,
    [],
    `${what}: custom programs not dispatched (ran: ${JSON.stringify(count.byProgram)})`,
  );
}

/** Why OpenBLAS cannot be used here (named in the skipped tests' names), or undefined. */
const noBlas = (() => {
  const r = openBlas();
  if (r.ok) r.blas.close();
  return r.ok ? undefined : r.reason;
})();

// Stock backends first: selectBackend patches the wasm kernels for the rest of the process.
for (const backend of ["cpu", "wasm", "wasm+fix", "wasm+blas"] as const) {
  for (const fixture of ["t5-tiny-relu", "t5-tiny-v1_1-untied"]) {
    const skip = backend === "wasm+blas" ? noBlas : undefined;
    Deno.test({
      name: `parity with HF: ${fixture} on ${backend}${
        skip === undefined ? "" : ` [SKIPPED: ${skip}]`
      }`,
      ignore: skip !== undefined,
      fn: () => checkParity(fixture, backend),
    });
  }
}

// webgpu with the project's custom WGSL kernels, as the GPU benchmark runs it (on the software
// adapter here; skipped without one).
/** Tolerances on webgpu (the module comment gives the measurements and the reasons). */
const WEBGPU_TOL: Tolerances = {
  logitsRel: 1e-5,
  encoderRel: 1e-5,
  lossRel: 1e-5,
  gradNormRel: 2e-5,
};
for (const fixture of ["t5-tiny-relu", "t5-tiny-v1_1-untied"]) {
  gpuTest(
    `parity with HF: ${fixture} on webgpu (custom kernels, as selectBackend installs them)`,
    () => checkParity(fixture, "webgpu", WEBGPU_TOL),
  );
}

/** What {@link trainOneStep} read back: the step's loss, and every trained variable and slot. */
interface StepResult {
  loss: number;
  /** Trained variables before the step, by name. */
  before: Map<string, Float32Array>;
  /** After the AdamW update. */
  after: Map<string, Float32Array>;
  /** AdamW's first moments after the step: `<variable>/m` = (1 − β1)·g, i.e. the gradients. */
  m: Map<string, Float32Array>;
  /** The update paths the step took (`updatePathsTaken`). */
  paths: ReturnType<typeof updatePathsTaken>;
}

/** AdamW of {@link trainOneStep}: the optimizer's defaults (β1 0.9, β2 0.999, ε 1e-8). */
const STEP = { lr: 1e-3, weightDecay: 0.01, beta1: 0.9, eps: 1e-8 } as const;

/**
 * One training step as `benchmarks/trainer.ts` runs it (the method's hooks, dropout on, token-mean
 * cross-entropy, `tf.variableGrads` over the trained variables, then AdamW with weight decay) of
 * `method` on a fixture, on the current backend, asserting that it leaves no tensor behind. The
 * method's variables are set to seeded values uniform in ±0.2 (at their initial scale, e.g.
 * HyperPrompt-Global's 0.01-std hypernetworks, they would barely touch the loss; at ±0.5 the
 * attention saturates and cpu and wasm already differ by 1e-4 in the gradients), and dropout is
 * 0.1 (the fixtures' 0 would leave the dropout kernels out).
 */
async function trainOneStep(fixture: string, method: "mtl" | "hyperprompt_global") {
  const before = tf.memory().numTensors;
  const { model: loaded, ref } = await loadFixture(fixture);
  const model = { ...loaded, config: { ...loaded.config, dropoutRate: 0.1 } };
  const m = METHODS[method] as Method<unknown>;
  const inst = m.create(
    { config: model.config, tasks: ["rte", "sst2"], seed: 5, backbone: model.params },
    m.defaults,
  );
  let k = 0;
  for (const v of inst.variables.values()) {
    tf.tidy(() =>
      v.assign(tf.tensor(uniformValues(v.size, 40 + k++).map((x) => 0.2 * x), v.shape))
    );
  }
  const inputIds = tf.tensor2d(ref.input_ids, undefined, "int32");
  const attentionMask = tf.tensor2d(ref.attention_mask, undefined, "float32");
  const labels = tf.tensor2d(ref.labels, undefined, "int32");
  const decoderInputIds = shiftRight(labels, model.config);
  const trained = trainedVariables(model, inst);
  const read = async (vars: ReadonlyMap<string, tf.Tensor>) => {
    const out = new Map<string, Float32Array>();
    for (const [n, v] of vars) out.set(n, (await v.data()) as Float32Array);
    return out;
  };
  const start = await read(trained);
  const { value, grads } = tf.variableGrads(() => {
    const { logits, encoderOutput } = forward(
      model,
      { inputIds, attentionMask, decoderInputIds },
      { hooks: inst.hooks([0, 1]), training: true, dropoutSeed: 7 },
    );
    encoderOutput.dispose();
    return crossEntropyLoss(logits, labels);
  }, [...trained.values()]);
  const opt = createOptimizer({ kind: "adamw", weightDecay: STEP.weightDecay });
  updatePathsTaken(true);
  opt.apply(trained, new Map([...trained].map(([n, v]) => [n, grads[v.name]!])), STEP.lr);
  const result: StepResult = {
    loss: (await value.data())[0]!,
    before: start,
    after: await read(trained),
    m: new Map(),
    paths: updatePathsTaken(true),
  };
  for (const [n, t] of opt.slots()) {
    if (n.endsWith("/m")) result.m.set(n.slice(0, -2), (await t.data()) as Float32Array);
  }
  tf.dispose([value, ...Object.values(grads), inputIds, attentionMask, labels, decoderInputIds]);
  opt.dispose();
  inst.dispose();
  disposeT5(model);
  assert.equal(tf.memory().numTensors, before, `${fixture}/${method}: no tensors left behind`);
  return result;
}

/**
 * Tolerances of the training step, webgpu against cpu (same weights, dropout bits and formulas;
 * the backends sum in different orders, and webgpu's AdamW is the in-place WGSL kernel where
 * cpu's is op by op). Measured on the software adapter over the 4 cases: loss 1.5e-7 relative,
 * gradients (AdamW's m) 2.8e-6 of each variable's largest (wasm against cpu: the same).
 */
const STEP_TOL = {
  /** |loss difference| / loss (the parity's, {@link WEBGPU_TOL}). */
  lossRel: 1e-5,
  /** Max |m difference| / max |m| per variable (m = (1 − β1)·g: the gradients). */
  gradRel: 2e-5,
} as const;

/** AdamW's first step in the direction of gradient g: g / (|g| + ε) (bias-corrected m̂ = g, √v̂ = |g|). */
const firstStep = (g: number) => g / (Math.abs(g) + STEP.eps);

/**
 * Compares a training step on webgpu with the same on cpu: the loss, the gradients (AdamW's m),
 * and every updated weight. Adam's first step moves a weight by lr·g/(|g| + ε), about ±lr for any
 * gradient well above ε but steep near g = 0, so the weights may differ by as much as the
 * gradients allowed by `gradRel` can change it (up to 2·lr for a gradient that rounds to either
 * sign): for weight i the bound is lr·max |firstStep(g ± δ) − firstStep(g)| (firstStep is
 * monotonic, so the ends of the interval are its extremes), δ = gradRel · max |g| of its
 * variable, plus float32 rounding: 4 ulps of the weight and 1e-6·lr.
 */
function compareSteps(gpu: StepResult, cpu: StepResult, what: string): string {
  const lossRel = Math.abs(gpu.loss - cpu.loss) / Math.abs(cpu.loss);
  assert.ok(lossRel <= STEP_TOL.lossRel, `${what}: loss ${gpu.loss} vs ${cpu.loss}`);
  assert.deepEqual([...gpu.after.keys()], [...cpu.after.keys()], `${what}: trained variables`);
  let worstGrad = 0;
  let worstWeight = 0;
  let moved = 0;
  let total = 0;
  for (const [name, want] of cpu.after) {
    // The starting weights are the same bits on both (the fixture, the seeded method values).
    assert.deepEqual(gpu.before.get(name), cpu.before.get(name), `${what}: ${name} before`);
    const mc = cpu.m.get(name)!;
    const mg = gpu.m.get(name)!;
    let scale = 0;
    for (const x of mc) scale = Math.max(scale, Math.abs(x));
    let err = 0;
    for (let i = 0; i < mc.length; i++) err = Math.max(err, Math.abs(mg[i]! - mc[i]!));
    assert.ok(
      err <= STEP_TOL.gradRel * scale,
      `${what}: ${name}: gradient max abs diff ${err} > ${STEP_TOL.gradRel} × ${scale}`,
    );
    if (scale > 0) worstGrad = Math.max(worstGrad, err / scale);
    const delta = STEP_TOL.gradRel * scale / (1 - STEP.beta1);
    const got = gpu.after.get(name)!;
    const w0 = cpu.before.get(name)!;
    for (let i = 0; i < want.length; i++) {
      const g = mc[i]! / (1 - STEP.beta1);
      const r = firstStep(g);
      const allowed = STEP.lr * Math.max(firstStep(g + delta) - r, r - firstStep(g - delta)) +
        4 * 2 ** -23 * Math.abs(w0[i]!) + 1e-6 * STEP.lr;
      const diff = Math.abs(got[i]! - want[i]!);
      assert.ok(
        diff <= allowed,
        `${what}: ${name}[${i}]: updated ${got[i]} vs ${want[i]} (from ${w0[i]}, gradient ${g})`,
      );
      worstWeight = Math.max(worstWeight, diff / allowed);
      if (Math.abs(want[i]! - w0[i]!) > 0.5 * STEP.lr) moved++;
      total++;
    }
  }
  // The step did update: most weights moved by about lr (Adam's first step is ±lr where g ≫ ε).
  assert.ok(moved > 0.5 * total, `${what}: only ${moved} of ${total} weights moved by ≥ lr/2`);
  return `loss rel ${lossRel.toExponential(2)}, worst gradient ${
    worstGrad.toExponential(2)
  } of max, worst weight ${worstWeight.toFixed(3)} of its bound, ${moved}/${total} moved`;
}

// One training step of MTL and of HyperPrompt-Global (the paper's method: hypernetwork prompts in
// every layer's keys and values) on webgpu with the custom kernels, against cpu.
for (const fixture of ["t5-tiny-relu", "t5-tiny-v1_1-untied"]) {
  for (const method of ["mtl", "hyperprompt_global"] as const) {
    gpuTest(`one training step (AdamW) of ${method} on ${fixture}: webgpu = cpu`, async () => {
      await selectWebgpuAsTheBenchmarkDoes();
      const gpu = await trainOneStep(fixture, method);
      // The weights were updated in place by the WGSL AdamW, not op by op.
      assert.deepEqual(gpu.paths, { adamw: ["in place"] }, "webgpu AdamW path");
      await tf.setBackend("cpu");
      let cpu: StepResult;
      try {
        cpu = await trainOneStep(fixture, method);
      } finally {
        await tf.setBackend("webgpu");
      }
      console.log(
        `${fixture}/${method} webgpu vs cpu: ${compareSteps(gpu, cpu, `${fixture}/${method}`)}`,
      );
    });
  }
}

/** What {@link adafactorTwoSteps} read back: every trained variable before and after. */
interface AdafactorSteps {
  before: Map<string, Float32Array>;
  /** After each of the two steps. */
  after: [Map<string, Float32Array>, Map<string, Float32Array>];
  /** The update paths the two steps took (`updatePathsTaken`). */
  paths: ReturnType<typeof updatePathsTaken>;
  /** How many variables have a factored, how many a full second moment. */
  factored: number;
  unfactored: number;
}

/**
 * Mesh TF's Adafactor (the paper profiles' `train.adafactor`) with a threshold the tiny T5's
 * 32-wide matrices reach, so that both the factored (matrices, embedding) and the full second
 * moment (norm weights, the [8, 4] relative-position tables) run.
 */
const ADAFACTOR_MIN_DIM = 32;

/**
 * Two Adafactor steps of all MTL-trained variables of a fixture (the whole T5) with the optimizer
 * built as `benchmarks/trainer.ts` builds it (`kind`, `weightDecay`, `multiplyByParameterScale`,
 * `minDimSizeToFactor`; lr 1e-3 as the paper profiles' constant schedule), on the current
 * backend, leaving no tensor behind. The gradients are seeded (uniform, per-variable scales from
 * 1e-4 to 1, a different draw each step), the same bits on every backend, so that the comparison
 * is the optimizer's alone (the gradients' own parity is the AdamW test's above).
 */
async function adafactorTwoSteps(
  fixture: string,
  multiplyByParameterScale: boolean,
): Promise<AdafactorSteps> {
  const before = tf.memory().numTensors;
  const { model } = await loadFixture(fixture);
  const m = METHODS.mtl as Method<unknown>;
  const inst = m.create(
    { config: model.config, tasks: ["rte", "sst2"], seed: 5, backbone: model.params },
    m.defaults,
  );
  const trained = trainedVariables(model, inst);
  const read = async () => {
    const out = new Map<string, Float32Array>();
    for (const [n, v] of trained) out.set(n, (await v.data()) as Float32Array);
    return out;
  };
  const opt = createOptimizer({
    kind: "adafactor",
    weightDecay: 0,
    multiplyByParameterScale,
    minDimSizeToFactor: ADAFACTOR_MIN_DIM,
  });
  const start = await read();
  const after: Map<string, Float32Array>[] = [];
  updatePathsTaken(true);
  for (let step = 0; step < 2; step++) {
    let k = 0;
    const grads = new Map(
      [...trained].map(([n, v]) => {
        const scale = 10 ** -((k * 7) % 5); // 1 ... 1e-4: the relative step must not care
        const g = uniformValues(v.size, 1000 * step + k++).map((x) => scale * x);
        return [n, tf.tensor(g, v.shape)] as const;
      }),
    );
    opt.apply(trained, grads, 1e-3);
    tf.dispose([...grads.values()]);
    after.push(await read());
  }
  const paths = updatePathsTaken(true);
  let factored = 0;
  for (const [n] of opt.slots()) if (n.endsWith("/vr")) factored++;
  const unfactored = [...opt.slots().keys()].filter((n) => n.endsWith("/v")).length;
  opt.dispose();
  inst.dispose();
  disposeT5(model);
  assert.equal(tf.memory().numTensors, before, `${fixture}: no tensors left behind`);
  return { before: start, after: [after[0]!, after[1]!], paths, factored, unfactored };
}

/**
 * Tolerance of Adafactor's updated weights, webgpu (in-place WGSL kernels) against cpu (op by
 * op), per weight: 4 ulps of the weight (the final subtraction, rounded on each backend) plus
 * this fraction of the largest total move of the weight's variable. The move is lr·scale·û with
 * û the update normalized by the second moment (factored: row and column means) and clipped by
 * its RMS, all float32 reductions that the backends sum in different orders; their relative
 * error grows with log2 of the summed count (≤ 64 here) by about 2^-24 per level, ~1e-6.
 * Measured on the software adapter: at most 0.24 of this bound (the ulps of the weights dominate:
 * the moves are ~1e-3 of weights of ~1), with and without the parameter scale.
 */
const ADAFACTOR_STEP_REL = 1e-5;

function compareAdafactor(gpu: AdafactorSteps, cpu: AdafactorSteps, what: string): string {
  assert.deepEqual([...gpu.before.keys()], [...cpu.before.keys()], `${what}: trained variables`);
  let worst = 0;
  let worstAbs = 0;
  let moved = 0;
  let total = 0;
  for (const s of [0, 1] as const) {
    for (const [name, want] of cpu.after[s]) {
      const w0 = cpu.before.get(name)!;
      assert.deepEqual(gpu.before.get(name), w0, `${what}: ${name} before`);
      const got = gpu.after[s].get(name)!;
      let maxMove = 0;
      for (let i = 0; i < want.length; i++) {
        maxMove = Math.max(maxMove, Math.abs(want[i]! - w0[i]!));
      }
      assert.ok(maxMove > 0, `${what}: ${name} did not move in step ${s + 1}`);
      for (let i = 0; i < want.length; i++) {
        const diff = Math.abs(got[i]! - want[i]!);
        const allowed = 4 * 2 ** -23 * Math.abs(want[i]!) + ADAFACTOR_STEP_REL * maxMove;
        assert.ok(
          diff <= allowed,
          `${what}: step ${s + 1}: ${name}[${i}]: ${got[i]} vs ${want[i]} (from ${w0[i]})`,
        );
        worst = Math.max(worst, diff / allowed);
        worstAbs = Math.max(worstAbs, diff / maxMove);
        if (s === 1) {
          if (want[i] !== cpu.after[0].get(name)![i]) moved++;
          total++;
        }
      }
    }
  }
  // The second step moved the weights again (a different gradient, β2 = 1 − 2^−0.8).
  assert.ok(moved > 0.9 * total, `${what}: step 2 moved only ${moved} of ${total} weights`);
  return `worst diff ${worstAbs.toExponential(2)} of its variable's move, ${
    worst.toFixed(3)
  } of its bound, ${moved}/${total} moved in step 2`;
}

// Two Adafactor steps (Mesh TF form, as the paper profiles train) of the whole tiny T5 on webgpu,
// where the custom in-place WGSL kernels update the matrices (factored, grouped) and the vectors
// and small tables (full second moment), against cpu's op-by-op update.
for (const multiplyByParameterScale of [true, false]) {
  const fixture = "t5-tiny-relu";
  gpuTest(
    `two Adafactor steps (multiplyByParameterScale ${multiplyByParameterScale}, ` +
      `minDimSizeToFactor ${ADAFACTOR_MIN_DIM}) on ${fixture}: webgpu = cpu`,
    async () => {
      await selectWebgpuAsTheBenchmarkDoes();
      const gpu = await adafactorTwoSteps(fixture, multiplyByParameterScale);
      // Both kinds of variables were updated in place by the WGSL kernels, none op by op.
      assert.deepEqual(
        gpu.paths,
        { adafactorFactored: ["in place"], adafactorUnfactored: ["in place"] },
        "webgpu Adafactor paths",
      );
      await tf.setBackend("cpu");
      let cpu: AdafactorSteps;
      try {
        cpu = await adafactorTwoSteps(fixture, multiplyByParameterScale);
      } finally {
        await tf.setBackend("webgpu");
      }
      assert.ok(cpu.factored > 0 && cpu.unfactored > 0, `${fixture}: both kinds of variables`);
      assert.deepEqual([gpu.factored, gpu.unfactored], [cpu.factored, cpu.unfactored]);
      const what = `${fixture}/adafactor scale=${multiplyByParameterScale}`;
      console.log(
        `${what} webgpu vs cpu (cpu paths ${
          JSON.stringify(cpu.paths)
        }, ${cpu.factored} factored, ` +
          `${cpu.unfactored} full): ${compareAdafactor(gpu, cpu, what)}`,
      );
    },
  );
}
