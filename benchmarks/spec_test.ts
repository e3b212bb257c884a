import assert from "node:assert/strict";
import {
  backboneLabel,
  DEFAULT_TRAIN,
  runFileName,
  runId,
  type RunSpec,
  SpecError,
  trainFor,
  validateProfile,
} from "./spec.ts";

const SRC = { file: "profiles/x.json" };

function minimal(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: "x",
    models: ["tiny-v1_1"],
    benchmarks: ["glue"],
    methods: [{ name: "mtl" }],
    ...extra,
  };
}

Deno.test("validateProfile() fills defaults", () => {
  const p = validateProfile(minimal(), SRC);
  assert.deepEqual(p.seeds, [0]);
  assert.deepEqual(p.backbones, ["random"]);
  assert.equal(p.pretrain, undefined);
  assert.equal(p.backend, "auto");
  assert.deepEqual(p.train, DEFAULT_TRAIN);
  assert.equal(p.methods[0]?.label, "mtl");
});

Deno.test("validateProfile() errors name the file, line and JSON path", () => {
  const bad = minimal({ train: { learningRate: "x" } });
  assert.throws(
    () =>
      validateProfile(bad, {
        file: "p.json",
        locate: (path) => path === "$.train.learningRate" ? 16 : undefined,
      }),
    (e: unknown) =>
      e instanceof SpecError &&
      e.message === `p.json:16: $.train.learningRate must be a number, got "x"`,
  );
  assert.throws(
    () => validateProfile(minimal({ methods: [{ name: "lora" }] }), SRC),
    /\$\.methods\[0\]\.name must be one of mtl, .*got "lora"/,
  );
  assert.throws(
    () => validateProfile(minimal({ models: ["t5-huge"] }), SRC, { presetNames: ["tiny-v1_1"] }),
    /\$\.models\[0\] names unknown preset "t5-huge"/,
  );
  assert.throws(
    () => validateProfile(minimal({ trian: {} }), SRC),
    /\$\.trian is not a known field/,
  );
  assert.throws(
    () => validateProfile(minimal({ methods: [{ name: "mtl" }, { name: "mtl" }] }), SRC),
    /\$\.methods\[1\]\.label repeats label "mtl"/,
  );
});

Deno.test("validateProfile() passes method configs to the injected parser", () => {
  const p = validateProfile(
    minimal({ methods: [{ name: "prompt_tuning", config: { l: 5 } }] }),
    SRC,
    {
      parseMethodConfig: (name, raw, source) => {
        assert.equal(name, "prompt_tuning");
        assert.match(source, /profiles\/x\.json: \$\.methods\[0\]\.config/);
        return { ...(raw as object), filled: true };
      },
    },
  );
  assert.deepEqual(p.methods[0]?.config, { l: 5, filled: true });
});

Deno.test("trainFor() applies per-benchmark overrides", () => {
  const p = validateProfile(
    minimal({
      benchmarks: ["glue", "super_glue"],
      trainOverrides: { super_glue: { maxTargetLength: 62 } },
    }),
    SRC,
  );
  assert.equal(trainFor(p, "glue").maxTargetLength, 84);
  assert.equal(trainFor(p, "super_glue").maxTargetLength, 62);
  assert.throws(
    () => validateProfile(minimal({ trainOverrides: { glue: { steps: 0 } } }), SRC),
    /\$\.trainOverrides\.glue\.steps must be >= 1/,
  );
});

Deno.test("runId() is stable under key order and changes with content", () => {
  const spec: Omit<RunSpec, "id"> = {
    profile: "x",
    model: "tiny-v1_1",
    backbone: "random",
    benchmark: "glue",
    tasks: ["rte"],
    method: { name: "mtl", label: "mtl", config: { a: 1, b: 2 } },
    seed: 0,
    train: DEFAULT_TRAIN,
    backend: "auto",
  };
  const reordered = { ...spec, method: { ...spec.method, config: { b: 2, a: 1 } } };
  assert.equal(runId(spec), runId(reordered));
  assert.notEqual(runId(spec), runId({ ...spec, seed: 1 }));
  assert.match(runId(spec), /^[0-9a-f]{12}$/);
  const full: RunSpec = { ...spec, id: runId(spec) };
  assert.equal(runId(full), full.id);
  assert.equal(runFileName(full), `x--tiny-v1_1--random--glue--mtl--s0--${full.id}.json`);
});

Deno.test("validateProfile() takes one backbone or an array and rejects repeats and unknowns", () => {
  assert.deepEqual(validateProfile(minimal({ backbone: "pretrained" }), SRC).backbones, [
    "pretrained",
  ]);
  const both = validateProfile(
    minimal({ backbone: ["pretrained", "random", { hf: "a/b/my-t5" }] }),
    SRC,
  );
  assert.deepEqual(both.backbones, ["pretrained", "random", { hf: "a/b/my-t5" }]);
  assert.deepEqual(both.backbones.map(backboneLabel), ["pretrained", "random", "my-t5"]);
  const at = (path: string) => (path === "$.backbone[1]" ? 7 : undefined);
  assert.throws(
    () =>
      validateProfile(minimal({ backbone: ["random", "random"] }), { file: "p.json", locate: at }),
    (e: unknown) =>
      e instanceof SpecError && e.message === `p.json:7: $.backbone[1] repeats backbone "random"`,
  );
  assert.throws(
    () => validateProfile(minimal({ backbone: ["random", "scratch"] }), SRC),
    /\$\.backbone\[1\] must be one of random, pretrained; got "scratch"/,
  );
  assert.throws(() => validateProfile(minimal({ backbone: [] }), SRC), /\$\.backbone must not/);
});

Deno.test("validateProfile() validates pretrain overrides with file, line and path", () => {
  const p = validateProfile(
    minimal({ pretrain: { steps: 50, learningRate: 0.003, backend: "wasm" } }),
    SRC,
  );
  assert.deepEqual(p.pretrain, { steps: 50, learningRate: 0.003, backend: "wasm" });
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ steps: 0 }, /\$\.pretrain\.steps must be >= 1, got 0/],
    [{ batchSize: 2.5 }, /\$\.pretrain\.batchSize must be an integer, got 2\.5/],
    [{ learningRate: 0 }, /\$\.pretrain\.learningRate must be > 0, got 0/],
    [{ vocabSize: 100 }, /\$\.pretrain\.vocabSize must be >= 116, got 100/],
    [{ seed: -1 }, /\$\.pretrain\.seed must be >= 0, got -1/],
    [{ backend: "gpu" }, /\$\.pretrain\.backend must be one of auto, .*; got "gpu"/],
    [{ stpes: 3 }, /\$\.pretrain\.stpes is not a known field; known fields: steps, /],
  ];
  for (const [pre, re] of cases) {
    assert.throws(() => validateProfile(minimal({ pretrain: pre }), SRC), re);
  }
  assert.throws(
    () =>
      validateProfile(minimal({ pretrain: { chunkLength: "x" } }), {
        file: "p.json",
        locate: (path) => path === "$.pretrain.chunkLength" ? 9 : undefined,
      }),
    (e: unknown) =>
      e instanceof SpecError &&
      e.message === `p.json:9: $.pretrain.chunkLength must be an integer, got "x"`,
  );
  assert.throws(
    () => validateProfile(minimal({ pretrain: [1] }), SRC),
    /\$\.pretrain must be an object/,
  );
});
