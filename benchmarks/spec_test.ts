import assert from "node:assert/strict";
import {
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
  assert.equal(p.backbone, "random");
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
  assert.equal(runFileName(full), `x--tiny-v1_1--glue--mtl--s0--${full.id}.json`);
});
