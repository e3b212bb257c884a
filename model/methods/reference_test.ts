/**
 * Every method's hook output against the specification's equations, recomputed here in float64
 * from the method's own variables with plain loops (no tfjs): HyperPrompt-Share/-Sep/-Global
 * hyper-prompts (spec §1.4, §1.5), HyperFormer++ and Vanilla Adapter outputs (§2.3, §2.2), and
 * Prompt-Tuning's encoder input (§2.4). The variables are perturbed first so that no term is
 * negligible (ReLUs active on both sides, generators far from zero), and the attention width
 * h·d_kv differs from d so that a mixed-up dimension fails.
 *
 * Tolerance: float32 kernels against a float64 reference over sums of at most a few hundred
 * products; 2e-5 of the largest reference magnitude (float32 epsilon 1.2e-7 times the sum length,
 * with a margin).
 */
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { PRESETS, type T5Config } from "../config.ts";
import type { MethodInstance } from "../method.ts";
import type { Stack } from "../hooks.ts";
import { disposeT5 } from "../t5.ts";
import { getMethod, type MethodName } from "./mod.ts";
import { context, tinyModel } from "./_test_util.ts";

await tf.setBackend("cpu");

/** d 64, 4 heads of d_kv 8: h·d_kv = 32 ≠ d; 2 encoder and 3 decoder blocks. */
const CFG: T5Config = {
  ...PRESETS["tiny-v1_1"],
  vocabSize: 128,
  dKv: 8,
  numDecoderLayers: 3,
};
const D = CFG.dModel;
const INNER = CFG.numHeads * CFG.dKv;
const TOL = 2e-5;

type Mat = number[][];

function matmul(a: Mat, b: Mat): Mat {
  return a.map((row) => b[0]!.map((_, j) => row.reduce((s, x, k) => s + x * b[k]![j]!, 0)));
}
const relu = (m: Mat): Mat => m.map((r) => r.map((x) => Math.max(0, x)));
const addRow = (m: Mat, v: number[]): Mat => m.map((r) => r.map((x, j) => x + v[j]!));
/** Row-major reshape of a flat vector to [rows, cols]. */
function reshape(flat: number[], rows: number, cols: number): Mat {
  assert.equal(flat.length, rows * cols);
  return Array.from({ length: rows }, (_, i) => flat.slice(i * cols, (i + 1) * cols));
}
function layerNorm(v: number[], g: number[], b: number[], eps: number): number[] {
  const mean = v.reduce((s, x) => s + x, 0) / v.length;
  const variance = v.reduce((s, x) => s + (x - mean) ** 2, 0) / v.length;
  return v.map((x, j) => ((x - mean) / Math.sqrt(variance + eps)) * g[j]! + b[j]!);
}
function geluNew(x: number): number {
  return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
}

function assertClose(got: tf.Tensor, want: number[][][], what: string): void {
  assert.deepEqual(got.shape, [want.length, want[0]!.length, want[0]![0]!.length], what);
  const g = got.arraySync() as number[][][];
  const scale = Math.max(...want.flat(2).map(Math.abs));
  assert.ok(scale > 1e-3, `${what}: reference too small to test (${scale})`);
  let worst = 0;
  want.forEach((m, i) =>
    m.forEach((r, j) => r.forEach((w, k) => worst = Math.max(worst, Math.abs(g[i]![j]![k]! - w))))
  );
  assert.ok(worst <= TOL * scale, `${what}: max diff ${worst} vs scale ${scale}`);
}

function create(name: MethodName, raw: Record<string, unknown>, perturb = 0.3) {
  const model = tinyModel(CFG);
  const m = getMethod(name);
  const inst = m.create(context(model), m.parseConfig(raw, "reference_test.ts"));
  // Perturb (seeded, per variable) so that biases, LayerNorm γ/β and generators all matter.
  let seed = 100;
  tf.tidy(() => {
    for (const v of inst.variables.values()) {
      v.assign(v.add(tf.randomNormal(v.shape, 0, perturb, "float32", seed++)));
    }
  });
  const val = (n: string): number[] => Array.from(inst.variables.get(n)!.dataSync());
  const mat = (n: string): Mat => inst.variables.get(n)!.arraySync() as Mat;
  return { model, inst, val, mat };
}

/** The hyper-prompt `relu(P·D + bD)·U + bU` of one prompt `P` [l, d]. */
function local(p: Mat, down: Mat, up: Mat, bd?: number[], bu?: number[]): Mat {
  let h = matmul(p, down);
  if (bd) h = addRow(h, bd);
  let o = matmul(relu(h), up);
  if (bu) o = addRow(o, bu);
  return o;
}

function prefixOf(inst: MethodInstance, taskIds: number[], stack: Stack, layer: number) {
  const p = inst.hooks(taskIds).selfAttentionPrefix!(stack, layer, taskIds.length)!;
  return p;
}

for (const kind of ["share", "sep"] as const) {
  for (const biases of [false, true]) {
    Deno.test(
      `hyperprompt_${kind} (biases ${biases}): keys and values are U(ReLU(P·D)) per block${
        kind === "sep" ? " and task" : ""
      }`,
      () => {
        const name = `hyperprompt_${kind}` as MethodName;
        const l = 3, b = 5;
        const { model, inst, mat } = create(name, { length: l, bottleneck: b, biases });
        const prompts = inst.variables.get(`${name}.prompts`)!.arraySync() as number[][][];
        const taskIds = [2, 0, 2];
        for (const stack of ["encoder", "decoder"] as const) {
          const layers = stack === "encoder" ? CFG.numLayers : CFG.numDecoderLayers;
          for (let layer = 0; layer < layers; layer++) {
            const before = tf.memory().numTensors;
            tf.tidy(() => {
              const got = prefixOf(inst, taskIds, stack, layer);
              assert.equal(got.positionBias, "zero");
              for (const kv of ["key", "value"] as const) {
                const p = `${name}.${stack}.${layer}.${kv}`;
                const want = taskIds.map((t) => {
                  const pick = (m: Mat | number[][][]) =>
                    (kind === "sep" ? (m as number[][][])[t]! : m) as Mat;
                  const bias = (n: string) => {
                    if (!biases) return undefined;
                    const a = inst.variables.get(n)!.arraySync() as number[] | number[][][];
                    return kind === "sep" ? (a as number[][][])[t]![0]! : a as number[];
                  };
                  return local(
                    prompts[t]!,
                    pick(mat(`${p}.down`)),
                    pick(mat(`${p}.up`)),
                    bias(`${p}.down_bias`),
                    bias(`${p}.up_bias`),
                  );
                });
                assertClose(got[kv], want, `${name} ${stack}.${layer}.${kv}`);
              }
            });
            assert.equal(tf.memory().numTensors, before, "hooks leaked tensors");
          }
        }
        inst.dispose();
        disposeT5(model);
      },
    );
  }
}

const GLOBAL_VARIANTS: Record<string, unknown>[] = [
  {},
  { biases: true, layerNorm: true },
  { perStackHypernets: true },
  { stacks: ["decoder"] },
];

for (const extra of GLOBAL_VARIANTS) {
  Deno.test(`hyperprompt_global ${JSON.stringify(extra)}: I = h_t([k_τ; z_m]), D, U generated from I`, () => {
    const l = 3, b = 4, te = 5, e = 6, t = 7;
    const raw = { length: l, bottleneck: b, embeddingDim: te, hiddenDim: e, projectedDim: t };
    const { model, inst, val, mat } = create("hyperprompt_global", { ...raw, ...extra });
    const g = (n: string) => `hyperprompt_global.${n}`;
    const prompts = inst.variables.get(g("prompts"))!.arraySync() as number[][][];
    const taskEmb = mat(g("task_embedding"));
    const layerEmb = mat(g("layer_embedding"));
    const stacks = (extra.stacks as Stack[] | undefined) ?? ["encoder", "decoder"];
    // One z_m table over the conditioned blocks, encoder blocks first (spec A22).
    assert.equal(
      layerEmb.length,
      stacks.reduce((s, st) => s + (st === "encoder" ? CFG.numLayers : CFG.numDecoderLayers), 0),
    );
    const taskIds = [1, 2, 1, 0];
    for (const stack of ["encoder", "decoder"] as const) {
      const layers = stack === "encoder" ? CFG.numLayers : CFG.numDecoderLayers;
      for (let layer = 0; layer < layers; layer++) {
        tf.tidy(() => {
          const got = inst.hooks(taskIds).selfAttentionPrefix!(stack, layer, taskIds.length);
          if (!stacks.includes(stack)) {
            assert.equal(got, undefined);
            return;
          }
          const m = stack === "decoder" && stacks.includes("encoder")
            ? CFG.numLayers + layer
            : layer;
          const o = extra.perStackHypernets ? stack : "shared";
          const lin = (x: number[], n: string): number[] => {
            const y = matmul([x], mat(g(`${o}.${n}.weight`)))[0]!;
            const bias = inst.variables.get(g(`${o}.${n}.bias`));
            return bias ? y.map((v, j) => v + bias.dataSync()[j]!) : y;
          };
          for (const kv of ["key", "value"] as const) {
            const want = taskIds.map((task) => {
              const x = [...taskEmb[task]!, ...layerEmb[m]!];
              let i = lin(relu([lin(x, "task_projector.fc1")])[0]!, "task_projector.fc2");
              if (extra.layerNorm) {
                i = layerNorm(
                  i,
                  val(g(`${o}.task_projector.layer_norm.weight`)),
                  val(g(`${o}.task_projector.layer_norm.bias`)),
                  1e-5,
                );
              }
              const down = reshape(lin(i, `${kv}.down_generator`), D, b);
              const up = reshape(lin(i, `${kv}.up_generator`), b, INNER);
              return local(prompts[task]!, down, up);
            });
            assertClose(got![kv], want, `global ${stack}.${layer}.${kv}`);
          }
        });
      }
    }
    inst.dispose();
    disposeT5(model);
  });
}

Deno.test("hyperprompt_*: the prefix carries the configured positionBias (A4: zero by default), every block", () => {
  // model/t5.ts looks the prefix columns' bias up only when the prefix says "relative"
  // (model/hooks_test.ts checks that lookup), so a hook that dropped the option would run
  // "relative" configurations as "zero" without any other sign.
  for (const name of ["hyperprompt_share", "hyperprompt_sep", "hyperprompt_global"] as const) {
    for (const positionBias of [undefined, "zero", "relative"] as const) {
      const raw = { length: 2, bottleneck: 2, ...(positionBias ? { positionBias } : {}) };
      const { model, inst } = create(name, raw, 0);
      for (const stack of ["encoder", "decoder"] as const) {
        const layers = stack === "encoder" ? CFG.numLayers : CFG.numDecoderLayers;
        for (let layer = 0; layer < layers; layer++) {
          tf.tidy(() => {
            const got = prefixOf(inst, [0, 1], stack, layer);
            assert.equal(got.positionBias, positionBias ?? "zero", `${name} ${stack}.${layer}`);
          });
        }
      }
      inst.dispose();
      disposeT5(model);
    }
  }
});

Deno.test("hyperformer_pp: adapter(y) = LN_cond(up(gelu_new(down(y)))) + y from generated weights", () => {
  const te = 5, e = 6, t = 7, r = 16;
  const a = Math.floor(D / r);
  for (const extra of [{}, { projectorLayerNorm: false, conditionalLayerNorm: false }]) {
    const raw = { reduction: r, taskEmbeddingDim: te, hiddenDim: e, projectedDim: t, ...extra };
    // The projector's LayerNorm runs on outputs of variance ~1e-4 at this initialisation, where
    // its epsilon matters: keep the projector at its initial scale (perturb 0.01).
    const { model, inst, val, mat } = create("hyperformer_pp", raw, 0.01);
    const h = (n: string) => `hyperformer_pp.${n}`;
    const n = 3;
    const y = tf.randomNormal([3, n, D], 0, 1, "float32", 77) as tf.Tensor3D;
    const ys = y.arraySync() as number[][][];
    const pl = extra.projectorLayerNorm !== false, cl = extra.conditionalLayerNorm !== false;
    // A mixed-task batch (the masked block adapters), and batches of one task, the first and
    // the last (one generated row: the plain adapter, no mask).
    for (const taskIds of [[2, 0, 2], [0, 0, 0], [2, 2, 2]]) {
      for (const stack of ["encoder", "decoder"] as const) {
        const layers = stack === "encoder" ? CFG.numLayers : CFG.numDecoderLayers;
        for (let layer = 0; layer < layers; layer++) {
          for (const pos of ["self_attention", "feed_forward"] as const) {
            tf.tidy(() => {
              const got = inst.hooks(taskIds).afterSublayer!(stack, layer, pos, y);
              const lin = (x: number[], name: string): number[] => {
                const w = matmul([x], mat(h(`${stack}.${name}.weight`)))[0]!;
                const bias = val(h(`${stack}.${name}.bias`));
                return w.map((v, j) => v + bias[j]!);
              };
              const want = taskIds.map((task, ex) => {
                // [task; layer id; position (0 feed-forward, 1 self-attention)] (S6 order)
                const x = [
                  ...mat(h("task_embedding"))[task]!,
                  ...mat(h(`${stack}.layer_embedding`))[layer]!,
                  ...mat(h(`${stack}.position_embedding`))[pos === "feed_forward" ? 0 : 1]!,
                ];
                let z = lin(relu([lin(x, "projector.fc1")])[0]!, "projector.fc2");
                if (pl) {
                  // S6: nn.LayerNorm(t, eps=1e-6) after the task projector.
                  z = layerNorm(
                    z,
                    val(h(`${stack}.projector.layer_norm.weight`)),
                    val(h(`${stack}.projector.layer_norm.bias`)),
                    1e-6,
                  );
                }
                const down = reshape(lin(z, "down_weight"), D, a);
                const up = reshape(lin(z, "up_weight"), a, D);
                return ys[ex]!.map((row) => {
                  const mid = matmul([row], down)[0]!.map((v, j) =>
                    geluNew(v + lin(z, "down_bias")[j]!)
                  );
                  let out = matmul([mid], up)[0]!.map((v, j) => v + lin(z, "up_bias")[j]!);
                  // F.layer_norm's default eps 1e-5 for the conditional LayerNorm.
                  if (cl) out = layerNorm(out, lin(z, "ln_gamma"), lin(z, "ln_beta"), 1e-5);
                  return out.map((v, j) => v + row[j]!);
                });
              });
              assertClose(
                got,
                want,
                `hyperformer_pp ${
                  JSON.stringify(extra)
                } tasks [${taskIds}] ${stack}.${layer}.${pos}`,
              );
            });
          }
        }
        // Cross-attention has no adapter.
        if (stack === "decoder") {
          tf.tidy(() => {
            const same = inst.hooks(taskIds).afterSublayer!("decoder", 0, "cross_attention", y);
            assert.equal(same, y);
          });
        }
      }
    }
    y.dispose();
    inst.dispose();
    disposeT5(model);
  }
});

Deno.test("adapter: per-task up(gelu_new(down(y))), LN shared (default) or per task, + y on the chosen sublayers and stacks", () => {
  const r = 16, a = Math.floor(D / r);
  const extras: { layerNorm?: string; positions?: string[]; stacks?: string[] }[] = [
    {},
    { layerNorm: "per_task" },
    { layerNorm: "none", positions: ["feed_forward"], stacks: ["decoder"] },
  ];
  for (const extra of extras) {
    const { model, inst } = create("adapter", { reduction: r, ...extra });
    const positions = (extra.positions as string[] | undefined) ??
      ["self_attention", "feed_forward"];
    const stacks = (extra.stacks as string[] | undefined) ?? ["encoder", "decoder"];
    const y = tf.randomNormal([3, 2, D], 0, 1, "float32", 78) as tf.Tensor3D;
    const ys = y.arraySync() as number[][][];
    // Two of the three tasks (gathered rows, masked blocks), each task (the stacks as they are),
    // and one task, the first and the last (a sliced row, the plain adapter, no mask).
    for (const taskIds of [[1, 1, 0], [2, 0, 1], [0, 0, 0], [2, 2, 2]]) {
      for (const stack of ["encoder", "decoder"] as const) {
        const layers = stack === "encoder" ? CFG.numLayers : CFG.numDecoderLayers;
        for (let layer = 0; layer < layers; layer++) {
          for (const pos of ["self_attention", "feed_forward", "cross_attention"] as const) {
            tf.tidy(() => {
              const got = inst.hooks(taskIds).afterSublayer!(stack, layer, pos, y);
              if (
                pos === "cross_attention" || !positions.includes(pos) || !stacks.includes(stack)
              ) {
                assert.equal(got, y, `${stack}.${layer}.${pos} has no adapter`);
                return;
              }
              const p = `adapter.${stack}.${layer}.${pos}`;
              const want = taskIds.map((task, ex) => {
                const pick = (n: string) =>
                  (inst.variables.get(n)!.arraySync() as number[][] | number[][][])[task]!;
                return ys[ex]!.map((row) => {
                  const db = pick(`${p}.down.bias`) as number[];
                  const mid = matmul([row], pick(`${p}.down.weight`) as Mat)[0]!.map((v, j) =>
                    geluNew(v + db[j]!)
                  );
                  const ub = pick(`${p}.up.bias`) as number[];
                  let out = matmul([mid], pick(`${p}.up.weight`) as Mat)[0]!.map((v, j) =>
                    v + ub[j]!
                  );
                  if (extra.layerNorm !== "none") {
                    // S6's AdapterController: one LayerNorm per position, shared by the tasks.
                    const ln = (n: string) =>
                      extra.layerNorm === "per_task"
                        ? pick(`${p}.${n}`) as number[]
                        : inst.variables.get(`${p}.${n}`)!.arraySync() as number[];
                    out = layerNorm(out, ln("layer_norm.weight"), ln("layer_norm.bias"), 1e-5);
                  }
                  return out.map((v, j) => v + row[j]!);
                });
              });
              assert.equal(a, inst.variables.get(`${p}.down.weight`)!.shape[2]);
              if (extra.layerNorm !== "none") {
                const tasks = inst.variables.get(`${p}.down.weight`)!.shape[0]!;
                assert.deepEqual(
                  inst.variables.get(`${p}.layer_norm.weight`)!.shape,
                  extra.layerNorm === "per_task" ? [tasks, D] : [D],
                );
              }
              assertClose(
                got,
                want,
                `adapter ${JSON.stringify(extra)} tasks [${taskIds}] ${stack}.${layer}.${pos}`,
              );
            });
          }
        }
      }
    }
    y.dispose();
    inst.dispose();
    disposeT5(model);
  }
});

Deno.test("prompt_tuning / mtl_prompt: each example's task prompt is prepended, mask ones", () => {
  for (const name of ["prompt_tuning", "mtl_prompt"] as const) {
    const l = 4;
    const { model, inst } = create(name, { length: l, init: "uniform" });
    const prompts = inst.variables.get(`${name}.prompt`)!.arraySync() as number[][][];
    const taskIds = [2, 0, 2];
    tf.tidy(() => {
      const embeds = tf.randomNormal([3, 5, D], 0, 1, "float32", 79) as tf.Tensor3D;
      const mask = tf.tensor2d([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]]);
      const got = inst.hooks(taskIds).encoderInput!(embeds, mask);
      const e = embeds.arraySync() as number[][][];
      assertClose(got.embeds, taskIds.map((t, i) => [...prompts[t]!, ...e[i]!]), name);
      assert.deepEqual(got.mask.arraySync(), [
        [1, 1, 1, 1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 0, 0, 0, 0],
      ]);
    });
    inst.dispose();
    disposeT5(model);
  }
});
