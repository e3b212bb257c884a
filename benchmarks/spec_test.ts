import assert from "node:assert/strict";
import { BENCHMARK_TASKS, TASKS } from "../tasks/registry.ts";
import { METHODS } from "../model/methods/mod.ts";
import { expandGrid, TRAINABLE_TASKS } from "./runner.ts";
import {
  backboneHfRef,
  backboneLabel,
  BUILTIN_METHOD_NAMES,
  conditionedTasks,
  configId,
  DEFAULT_TRAIN,
  METHOD_NAMES,
  type MethodName,
  normalHfRef,
  predictionsDigest,
  pretrainReadBy,
  profileNotes,
  resolveListedTask,
  runFileName,
  runId,
  type RunSpec,
  SpecError,
  tableOrder,
  TEST_DIAGNOSTICS,
  testPredictionsDir,
  testRows,
  testSplits,
  trainedTaskIds,
  trainedTasks,
  trainFor,
  validateProfile,
  validateRunResult,
} from "./spec.ts";
import { fakeRunOne } from "./_fake_run_one.ts";
import { parseProfile } from "./profile.ts";
import { isHubRepoId } from "../model/hub.ts";
import { loadResults } from "./compare.ts";

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

/** A glue/rte MTL run spec with the given train settings (for run-id comparisons). */
function rteSpec(train: typeof DEFAULT_TRAIN): Omit<RunSpec, "id"> {
  return {
    profile: "x",
    model: "tiny-v1_1",
    backbone: "random",
    benchmark: "glue",
    tasks: ["rte"],
    method: { name: "mtl", label: "mtl", config: {} },
    seed: 0,
    train,
    backend: "auto",
  };
}

/** `fn` throws a {@link SpecError} whose message is exactly `message`. */
function assertSpecError(fn: () => unknown, message: string): void {
  assert.throws(fn, (e: unknown) => e instanceof SpecError && e.message === message, message);
}

/**
 * Each `[train, message]` case: a profile with that `train` section is refused with exactly
 * `message`, the error located at line 5 of p.json when its JSON path starts with `prefix`.
 */
function assertTrainErrors(prefix: string, cases: [Record<string, unknown>, string][]): void {
  const locate = (path: string) => (path.startsWith(prefix) ? 5 : undefined);
  for (const [train, message] of cases) {
    assertSpecError(() => validateProfile(minimal({ train }), { file: "p.json", locate }), message);
  }
}

Deno.test("validateProfile(): one load names the first error of every independent part", () => {
  const lines: Record<string, number> = {
    "$.name": 2,
    "$.seeds[1]": 3,
    "$.methods[0].name": 7,
    "$.methods[1].train.steps": 9,
    "$.train.batchSize": 12,
    "$.trian": 14,
  };
  const raw = minimal({
    name: "bad name",
    seeds: [0, -1],
    methods: [{ name: "lora" }, { name: "mtl", train: { steps: 0 } }],
    train: { batchSize: 0 },
    trian: {},
  });
  const messages = (raw: Record<string, unknown>) => {
    try {
      validateProfile(raw, { file: "p.json", locate: (path) => lines[path] });
    } catch (e) {
      assert.ok(e instanceof SpecError);
      assert.deepEqual(
        e.others.map((o) => o.path),
        e.message.split("\n").slice(1).map((l) => l.split(" ")[1]),
      );
      return e.message.split("\n").map((l) => l.replace(/ (must|is) .*$/, ""));
    }
    assert.fail("no error");
  };
  // In the order the parts are checked, each on its line. A method entry's training settings
  // are checked merged over the profile's, so not while those are invalid.
  assert.deepEqual(messages(raw), [
    "p.json:14: $.trian",
    "p.json:2: $.name",
    "p.json:3: $.seeds[1]",
    "p.json:12: $.train.batchSize",
    "p.json:7: $.methods[0].name",
  ]);
  assert.deepEqual(messages({ ...raw, train: {} }), [
    "p.json:14: $.trian",
    "p.json:2: $.name",
    "p.json:3: $.seeds[1]",
    "p.json:7: $.methods[0].name",
    "p.json:9: $.methods[1].train.steps",
  ]);
  // A single error is thrown as it is.
  assertSpecError(
    () => validateProfile(minimal({ seeds: [1, 1] }), SRC),
    "profiles/x.json: $.seeds must not repeat a seed",
  );
});

Deno.test("validateProfile(): an absent field is said to be missing, a present one shown", () => {
  const without = (key: string, extra: Record<string, unknown> = {}) => {
    const p = minimal(extra);
    delete p[key];
    return p;
  };
  // Every type check (str, num, oneOf, arr, obj, bool) says "is missing" for an absent field.
  const missing: [Record<string, unknown>, string][] = [
    [without("name"), "$.name is missing (must be a non-empty string)"],
    [without("models"), "$.models is missing (must be an array)"],
    [minimal({ methods: [{ label: "m" }] }), "$.methods[0].name is missing (must be one of "],
    [minimal({ methods: [{}] }), "$.methods[0].name is missing (must be one of "],
  ];
  for (const [raw, start] of missing) {
    assert.throws(
      () => validateProfile(raw, SRC),
      (e: unknown) => e instanceof SpecError && e.message.startsWith(`profiles/x.json: ${start}`),
      start,
    );
  }
  // A value that is there is shown, never called missing ("undefined" only for an absent one).
  assertSpecError(
    () => validateProfile(minimal({ name: 3 }), SRC),
    "profiles/x.json: $.name must be a non-empty string, got 3",
  );
  assertSpecError(
    () => validateProfile(minimal({ name: null }), SRC),
    "profiles/x.json: $.name must be a non-empty string, got null",
  );
  assertSpecError(
    () => validateProfile(minimal({ backend: "gpu" }), SRC),
    "profiles/x.json: $.backend must be one of auto, tensorflow, webgpu, wasm, wasm+blas, cpu; " +
      'got "gpu"',
  );
});

Deno.test('validateRunResult(): a JSON without "spec" is not a run result, the file named', async () => {
  assertSpecError(
    () => validateRunResult({ name: "x", version: 1 }, { file: "runs/stray.json" }),
    'runs/stray.json: $.spec is missing: not a run result (every run result has "spec"); its ' +
      'fields: ["name","version"]',
  );
  assertSpecError(
    () => validateRunResult({}, { file: "runs/empty.json" }),
    'runs/empty.json: $.spec is missing: not a run result (every run result has "spec"); its ' +
      "fields: none",
  );
  // A "spec" that is there but not an object is a broken run result, not a stray file.
  assertSpecError(
    () => validateRunResult({ spec: 3 }, { file: "r.json" }),
    "r.json: $.spec must be an object, got 3",
  );
  // As the tables and the submission read a results folder: the stray file named by its path.
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/package.json`, '{"name": "x"}\n');
    await assert.rejects(loadResults(dir), {
      message: `${dir}/package.json: $.spec is missing: not a run result (every run result has ` +
        `"spec"); its fields: ["name"]; every *.json directly in ${dir} is read as a run ` +
        "result: fix this one or move it out of the folder",
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("validateProfile() fills defaults", () => {
  const p = validateProfile(minimal(), SRC);
  assert.deepEqual(p.seeds, [0]);
  assert.deepEqual(p.backbones, ["random"]);
  assert.equal(p.pretrain, undefined);
  assert.equal(p.backend, "auto");
  assert.deepEqual(p.train, DEFAULT_TRAIN);
  assert.equal(p.methods[0]?.label, "mtl");
});

Deno.test("validateProfile(): a field set to null is refused naming it, never taken as its default", () => {
  // Before, `"train": null` trained with every default, `"backbone": null` ran random inits.
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ train: null }, /\$\.train must be an object, got null/],
    [{ backbone: null }, /\$\.backbone .*null/],
    [{ seeds: null }, /\$\.seeds must be an array, got null/],
    [{ backend: null }, /\$\.backend must be one of .*; got null/],
    [{ description: null }, /\$\.description must be a string, got null/],
    [{ skipMissingTasks: null }, /\$\.skipMissingTasks must be true or false, got null/],
    [{ train: { schedule: { kind: null } } }, /\$\.train\.schedule\.kind must be one of/],
    [{ train: { schedule: { warmupSteps: null } } }, /\$\.train\.schedule\.warmupSteps /],
    [{ tolerances: { default: null } }, /\$\.tolerances\.default /],
    [
      { train: { optimizer: "adafactor", adafactor: { multiplyByParameterScale: null } } },
      /\$\.train\.adafactor\.multiplyByParameterScale must be true or false, got null/,
    ],
    [
      { train: { optimizer: "adafactor", adafactor: { minDimSizeToFactor: null } } },
      /\$\.train\.adafactor\.minDimSizeToFactor /,
    ],
  ];
  for (const [extra, want] of cases) {
    assert.throws(() => validateProfile(minimal(extra), SRC), SpecError, undefined);
    assert.throws(() => validateProfile(minimal(extra), SRC), want, JSON.stringify(extra));
  }
  // null keeps its meaning where it has one: no clipping, no cap on evaluation examples.
  const p = validateProfile(minimal({ train: { clipNorm: null, evalMaxExamples: null } }), SRC);
  assert.equal(p.train.clipNorm, null);
  assert.equal(p.train.evalMaxExamples, null);
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
    /\$\.trian is not a known field \(did you mean train\?\); known fields: /,
  );
  // The nearest known field within 2 edits, or the one it begins: suggested; none otherwise.
  for (
    const [field, near] of [
      ["learning_rate", "learningRate"],
      ["learning", "learningRate"],
      ["stpes", "steps"],
      ["zzz", undefined],
    ] as const
  ) {
    assert.throws(
      () => validateProfile(minimal({ train: { [field]: 1 } }), SRC),
      (e: Error) =>
        e.message.includes(
          `$.train.${field} is not a known field${
            near === undefined ? "" : ` (did you mean ${near}?)`
          }; known fields: `,
        ),
      field,
    );
  }
  assert.throws(
    () => validateProfile(minimal({ methods: [{ name: "mtl" }, { name: "mtl" }] }), SRC),
    /\$\.methods\[1\]\.label repeats label "mtl"/,
  );
});

Deno.test("numbers in a profile: finite, integers exact (at most 2^53 - 1), tensor dimensions at most 2^31 - 1, weightDecay at most the optimizers' 1000, named by file, line and path", () => {
  // Written as JSON text: 1e400 parses to Infinity (reported before as "got null"), and 1e20 and
  // 2^40 are integers to JavaScript (accepted before).
  const text = (train: string, extra = "") =>
    `{\n  "name": "t",\n  "models": ["tiny-v1_1"],\n  "benchmarks": ["glue"],\n` +
    `  "methods": [{ "name": "mtl" }],${extra}\n  "train": {\n    ${train}\n  }\n}\n`;
  const exact = "2^53 - 1, the largest integer a JSON number holds exactly";
  const dimWhy = "2^31 - 1, the largest tensor dimension: WebGPU kernels take them as i32";
  const cases: [string, string, string][] = [
    [
      text(`"steps": 1e400`),
      "t.json:7: $.train.steps",
      "must be an integer, got a number beyond the range of a double (it parses as Infinity)",
    ],
    [
      text(`"learningRate": -1e400`),
      "t.json:7: $.train.learningRate",
      "must be a number, got a number beyond the range of a double (it parses as -Infinity)",
    ],
    [
      text(`"steps": 1e20`),
      "t.json:7: $.train.steps",
      `must be <= 9007199254740991 (${exact}), got 100000000000000000000`,
    ],
    [
      text(`"steps": 9007199254740992`),
      "t.json:7: $.train.steps",
      `must be <= 9007199254740991 (${exact}), got 9007199254740992`,
    ],
    [
      text(`"batchSize": 1099511627776`),
      "t.json:7: $.train.batchSize",
      `must be <= 2147483647 (${dimWhy}), got 1099511627776`,
    ],
    [
      text(`"maxInputLength": 2147483648`),
      "t.json:7: $.train.maxInputLength",
      `must be <= 2147483647 (${dimWhy}), got 2147483648`,
    ],
    [
      text(`"steps": 10`, `\n  "seeds": [0, 1e300],`),
      "t.json:6: $.seeds[1]",
      `must be <= 9007199254740991 (${exact}), got 1e+300`,
    ],
    [
      text(`"steps": 10`, `\n  "pretrain": { "vocabSize": 4294967296 },`),
      "t.json:6: $.pretrain.vocabSize",
      `must be <= 2147483647 (${dimWhy}), got 4294967296`,
    ],
    // The optimizers' bound, here rather than at each run's first step (exit 1, no field named).
    [
      text(`"weightDecay": 1e308`),
      "t.json:7: $.train.weightDecay",
      "must be <= 1000 (the optimizers' bound, benchmarks/optim.ts), got 1e+308",
    ],
  ];
  for (const [json, where, reason] of cases) {
    assert.throws(
      () => parseProfile(json, "t.json"),
      (e: unknown) => {
        assert.ok(e instanceof SpecError, String(e));
        assert.equal(e.message, `${where} ${reason}`);
        return true;
      },
    );
  }
  // The bounds themselves are accepted.
  const p = parseProfile(
    text(`"steps": 9007199254740991, "batchSize": 2147483647, "evalEvery": 1`),
    "t.json",
  );
  assert.equal(p.train.steps, Number.MAX_SAFE_INTEGER);
  assert.equal(p.train.batchSize, 2 ** 31 - 1);
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

Deno.test("validateProfile(): a method config error is a SpecError at the field it names, when written and a plain key; a defect's error passes unchanged", () => {
  const src = { file: "p.json", locate: (path: string) => (path.endsWith(".config") ? 4 : 5) };
  const failing = (message: (source: string) => string) => ({
    parseMethodConfig: (_n: MethodName, _raw: unknown, source: string): never => {
      throw new Error(message(source));
    },
  });
  const profile = (config: Record<string, unknown>) =>
    minimal({ methods: [{ name: "prompt_tuning", config }] });
  // The field written, a plain key: its path and line.
  assertSpecError(
    () =>
      validateProfile(
        profile({ length: 0 }),
        src,
        failing((s) => `${s}: prompt_tuning config field "length" must be >= 1`),
      ),
    'p.json:5: $.methods[0].config.length: prompt_tuning config field "length" must be >= 1',
  );
  // Named but not written (a default found wrong with another field): the config object's.
  assertSpecError(
    () =>
      validateProfile(
        profile({ init: "uniform" }),
        src,
        failing((s) => `${s}: prompt_tuning config field "length" is too long for "init"`),
      ),
    'p.json:4: $.methods[0].config: prompt_tuning config field "length" is too long for "init"',
  );
  // Not a plain key (no JSON path of it): the config object's.
  assertSpecError(
    () =>
      validateProfile(
        profile({ "a-b": 1 }),
        src,
        failing((s) => `${s}: unknown prompt_tuning config field "a-b"`),
      ),
    'p.json:4: $.methods[0].config: unknown prompt_tuning config field "a-b"',
  );
  // An error that does not start with the source given (a defect in a method's reader): as is.
  assert.throws(
    () => validateProfile(profile({}), src, failing(() => "boom")),
    (e: unknown) => !(e instanceof SpecError) && e instanceof Error && e.message === "boom",
  );
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
  // Objects inside arrays too (a result file read back may order their keys otherwise).
  const inArray = (config: Record<string, unknown>) => ({
    ...spec,
    method: { ...spec.method, config: { layers: [config] } },
  });
  assert.equal(runId(inArray({ a: 1, b: 2 })), runId(inArray({ b: 2, a: 1 })));
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
    [
      { stpes: 3 },
      /\$\.pretrain\.stpes is not a known field \(did you mean steps\?\); known fields: steps, /,
    ],
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

Deno.test("train.adafactor: validated with named errors, merged field by field, in the run id only when set", () => {
  const p = validateProfile(
    minimal({
      benchmarks: ["glue", "super_glue"],
      train: { adafactor: { minDimSizeToFactor: 128 } },
      trainOverrides: { super_glue: { adafactor: { multiplyByParameterScale: true } } },
      methods: [{ name: "mtl" }, { name: "adapter", train: { optimizer: "adamw" } }],
    }),
    SRC,
  );
  assert.deepEqual(p.train.adafactor, { minDimSizeToFactor: 128 });
  assert.deepEqual(trainFor(p, "super_glue").adafactor, {
    minDimSizeToFactor: 128,
    multiplyByParameterScale: true,
  });
  // A method that switches to AdamW drops the inherited Adafactor settings.
  const adamw = trainFor(p, "glue", p.methods[1]);
  assert.equal(adamw.optimizer, "adamw");
  assert.equal("adafactor" in adamw, false);
  // Absent: no key, so run ids of existing profiles do not change; set: the id changes.
  assert.equal("adafactor" in validateProfile(minimal(), SRC).train, false);
  const plain = validateProfile(minimal({ train: { adafactor: {} } }), SRC).train;
  assert.equal(runId(rteSpec(plain)), runId(rteSpec(DEFAULT_TRAIN)));
  assert.notEqual(runId(rteSpec(p.train)), runId(rteSpec(DEFAULT_TRAIN)));

  assertTrainErrors("$.train.adafactor", [
    [
      { adafactor: { minDimSizeToFactor: 0 } },
      "p.json:5: $.train.adafactor.minDimSizeToFactor must be >= 1, got 0",
    ],
    [
      { adafactor: { minDimSizeToFactor: 1.5 } },
      "p.json:5: $.train.adafactor.minDimSizeToFactor must be an integer, got 1.5",
    ],
    [
      { adafactor: { multiplyByParameterScale: "yes" } },
      `p.json:5: $.train.adafactor.multiplyByParameterScale must be true or false, got "yes"`,
    ],
    [
      { adafactor: { decay: 0.8 } },
      "p.json:5: $.train.adafactor.decay is not a known field; known fields: " +
      "multiplyByParameterScale, minDimSizeToFactor, weightDecayRate",
    ],
    [
      { optimizer: "adamw", adafactor: { multiplyByParameterScale: true } },
      `p.json:5: $.train.adafactor applies to optimizer "adafactor" only; the optimizer is "adamw"`,
    ],
  ]);
});

Deno.test("train.zLoss and train.adafactor.weightDecayRate: validated, merged, in the run id only when non-zero", () => {
  const p = validateProfile(
    minimal({
      benchmarks: ["glue", "super_glue"],
      train: { zLoss: 1e-4, adafactor: { weightDecayRate: 1e-5 } },
      trainOverrides: { super_glue: { zLoss: 0, adafactor: { weightDecayRate: 0 } } },
      methods: [
        { name: "mtl" },
        { name: "prompt_tuning", train: { adafactor: { multiplyByParameterScale: false } } },
      ],
    }),
    SRC,
  );
  assert.equal(p.train.zLoss, 1e-4);
  assert.deepEqual(p.train.adafactor, { weightDecayRate: 1e-5 });
  // Merged field by field under a method's own adafactor override.
  assert.deepEqual(trainFor(p, "glue", p.methods[1]).adafactor, {
    multiplyByParameterScale: false,
    weightDecayRate: 1e-5,
  });
  // An override of 0 removes them: the spec is then the one without them.
  const sg = trainFor(p, "super_glue");
  assert.equal("zLoss" in sg, false);
  assert.equal("adafactor" in sg, false);
  const zeros = validateProfile(
    minimal({ train: { zLoss: 0, adafactor: { weightDecayRate: 0 } } }),
    SRC,
  ).train;
  assert.deepEqual(zeros, DEFAULT_TRAIN);
  assert.equal(runId(rteSpec(zeros)), runId(rteSpec(DEFAULT_TRAIN)));
  const z = validateProfile(minimal({ train: { zLoss: 1e-4 } }), SRC).train;
  const r = validateProfile(minimal({ train: { adafactor: { weightDecayRate: 1e-5 } } }), SRC)
    .train;
  const ids = new Set(
    [rteSpec(DEFAULT_TRAIN), rteSpec(z), rteSpec(r), rteSpec(p.train)].map(runId),
  );
  assert.equal(ids.size, 4, "each setting changes the run id");

  assertTrainErrors("$.train.", [
    [{ zLoss: -1e-4 }, "p.json:5: $.train.zLoss must be >= 0, got -0.0001"],
    [{ zLoss: "1e-4" }, `p.json:5: $.train.zLoss must be a number, got "1e-4"`],
    [{ zLoss: null }, "p.json:5: $.train.zLoss must be a number, got null"],
    [
      { adafactor: { weightDecayRate: -1 } },
      "p.json:5: $.train.adafactor.weightDecayRate must be >= 0, got -1",
    ],
    [
      { adafactor: { weightDecayRate: 0.9 } },
      "p.json:5: $.train.adafactor.weightDecayRate must be <= 0.5, got 0.9",
    ],
    [
      { optimizer: "adamw", adafactor: { weightDecayRate: 1e-5 } },
      `p.json:5: $.train.adafactor applies to optimizer "adafactor" only; the optimizer is "adamw"`,
    ],
  ]);
});

Deno.test("train.temperature: read by a temperature mixture only; with a proportional one refused, or (inherited) the default, no run id of its own", () => {
  const p = validateProfile(
    minimal({
      benchmarks: ["glue", "super_glue"],
      train: { mixture: "temperature", temperature: 5 },
      trainOverrides: { super_glue: { mixture: "proportional" } },
    }),
    SRC,
  );
  assert.equal(p.train.temperature, 5);
  const sg = trainFor(p, "super_glue");
  assert.equal(sg.mixture, "proportional");
  assert.equal(sg.temperature, DEFAULT_TRAIN.temperature, "inherited, unread: the default");
  assert.equal(runId(rteSpec(sg)), runId(rteSpec(DEFAULT_TRAIN)));
  // Another temperature is another run of a temperature mixture.
  const t10 = validateProfile(minimal({ train: { mixture: "temperature" } }), SRC).train;
  assert.equal(t10.temperature, 10);
  assert.notEqual(runId(rteSpec(t10)), runId(rteSpec(p.train)));
  assertTrainErrors("$.train.temperature", [
    [
      { temperature: 5 },
      `p.json:5: $.train.temperature applies to mixture "temperature" only; the mixture is "proportional"`,
    ],
    [
      { mixture: "proportional", temperature: 10 },
      `p.json:5: $.train.temperature applies to mixture "temperature" only; the mixture is "proportional"`,
    ],
    [
      { mixture: "temperature", temperature: 0 },
      "p.json:5: $.train.temperature must be > 0, got 0",
    ],
  ]);
});

Deno.test("a partial schedule override keeps the inherited warmup", () => {
  const p = validateProfile(
    minimal({
      train: { steps: 1000, schedule: { kind: "warmup_linear", warmupSteps: 500 } },
      trainOverrides: { glue: { schedule: { kind: "warmup_rsqrt" } } },
    }),
    SRC,
  );
  assert.deepEqual(trainFor(p, "glue").schedule, { kind: "warmup_rsqrt", warmupSteps: 500 });
  const q = validateProfile(
    minimal({
      train: { steps: 1000, schedule: { kind: "warmup_linear", warmupSteps: 500 } },
      methods: [{ name: "mtl", train: { schedule: { warmupSteps: 100 } } }],
    }),
    SRC,
  );
  assert.deepEqual(trainFor(q, "glue", q.methods[0]).schedule, {
    kind: "warmup_linear",
    warmupSteps: 100,
  });
});

Deno.test("a constant schedule's warmup: refused where written (it would be ignored), 0 where inherited", () => {
  const src = { file: "p.json", locate: (path: string) => path.includes("schedule") ? 7 : 3 };
  for (
    const [extra, path] of [
      [{ train: { schedule: { kind: "constant", warmupSteps: 500 } } }, "$.train"],
      // The kind inherited (DEFAULT_TRAIN's constant), the warmup written.
      [{ train: { schedule: { warmupSteps: 5 } } }, "$.train"],
      [{ trainOverrides: { glue: { schedule: { warmupSteps: 5 } } } }, "$.trainOverrides.glue"],
      [
        { methods: [{ name: "mtl", train: { schedule: { warmupSteps: 5 } } }] },
        "$.methods[0].train",
      ],
    ] as const
  ) {
    const n = extra.train?.schedule.warmupSteps ?? 5;
    assertSpecError(
      () => validateProfile(minimal(extra), src),
      `p.json:7: ${path}.schedule.warmupSteps is ${n}, but a "constant" schedule has no warmup: ` +
        `give 0 (or leave it out), or choose "warmup_linear" or "warmup_rsqrt"`,
    );
  }
  // Written 0 is fine; a warmup inherited under a kind switched to constant is dropped, so the
  // run id is that of a constant schedule written plainly.
  const constant = validateProfile(
    minimal({ train: { schedule: { kind: "constant", warmupSteps: 0 } } }),
    SRC,
  );
  const switched = validateProfile(
    minimal({
      train: { steps: 1000, schedule: { kind: "warmup_linear", warmupSteps: 500 } },
      methods: [{ name: "mtl", train: { schedule: { kind: "constant" } } }],
    }),
    SRC,
  );
  assert.deepEqual(trainFor(switched, "glue", switched.methods[0]).schedule, {
    kind: "constant",
    warmupSteps: 0,
  });
  assert.deepEqual(trainFor(constant, "glue").schedule, { kind: "constant", warmupSteps: 0 });
});

Deno.test("method train overrides are validated merged over each benchmark's settings, with file, line and path", () => {
  const at = (path: string) => (path.startsWith("$.methods[1].train") ? 12 : undefined);
  const src = { file: "p.json", locate: at };
  const methods = (train: Record<string, unknown>) => [{ name: "mtl" }, { name: "adapter", train }];
  const cases: [Record<string, unknown>, string][] = [
    [
      { train: { batchSize: 8 }, methods: methods({ microBatchSize: 16 }) },
      "p.json:12: $.methods[1].train.microBatchSize must divide batchSize (8), got 16",
    ],
    [
      {
        train: { steps: 10 },
        methods: methods({ schedule: { kind: "warmup_linear", warmupSteps: 100 } }),
      },
      "p.json:12: $.methods[1].train.schedule.warmupSteps must be <= steps (10), got 100",
    ],
    [
      {
        benchmarks: ["glue", "super_glue"],
        train: { batchSize: 16 },
        trainOverrides: { super_glue: { batchSize: 12 } },
        methods: methods({ microBatchSize: 8 }),
      },
      "p.json:12: $.methods[1].train.microBatchSize must divide batchSize (12), got 8 " +
      "(merged over $.trainOverrides.super_glue)",
    ],
  ];
  for (const [extra, message] of cases) {
    assertSpecError(() => validateProfile(minimal(extra), src), message);
  }
});

const REGISTRY = {
  benchmarkTasks: BENCHMARK_TASKS,
  trainableTasks: TRAINABLE_TASKS,
  taskMetrics: Object.fromEntries(Object.entries(TASKS).map(([k, t]) => [k, t.metrics])),
};

Deno.test("method names come from the registry: every METHODS key is valid, a new one sorts last", () => {
  for (const name of Object.keys(METHODS)) {
    const p = validateProfile(minimal({ methods: [{ name }] }), SRC);
    assert.equal(p.methods[0]?.name, name);
  }
  assert.deepEqual([...METHOD_NAMES].sort(), Object.keys(METHODS).sort());
  assert.deepEqual(METHOD_NAMES.slice(0, BUILTIN_METHOD_NAMES.length), BUILTIN_METHOD_NAMES);
  // A method registered but not in the table order is kept, after the built-ins.
  assert.deepEqual(tableOrder(["hyperprompt_global", "lora", "mtl", "adapter", "bitfit"]), [
    "mtl",
    "adapter",
    "hyperprompt_global",
    "lora",
    "bitfit",
  ]);
  assertSpecError(
    () => validateProfile(minimal({ methods: [{ name: "lora" }] }), SRC),
    `profiles/x.json: $.methods[0].name must be one of ${METHOD_NAMES.join(", ")}; got "lora"`,
  );
});

Deno.test("listed tasks: any registered task with train and validation files; the wrong benchmark is named", () => {
  const src = {
    file: "p.json",
    locate: (path: string) => path.startsWith("$.tasks") ? 3 : undefined,
  };
  // WNLI is registered with train and dev files but is not in BENCHMARK_TASKS: listable.
  assert.ok(!BENCHMARK_TASKS.glue.includes("wnli"));
  assert.deepEqual(TRAINABLE_TASKS.glue, [...BENCHMARK_TASKS.glue, "wnli"]);
  assert.deepEqual(TRAINABLE_TASKS.super_glue, BENCHMARK_TASKS.super_glue);
  const ok = validateProfile(minimal({ tasks: { glue: ["rte", "WNLI"] } }), src, REGISTRY);
  assert.deepEqual(ok.tasks?.glue, ["rte", "WNLI"]);
  // Without trainableTasks (callers of before), only BENCHMARK_TASKS are listable.
  assertSpecError(
    () =>
      validateProfile(minimal({ tasks: { glue: ["wnli"] } }), src, {
        benchmarkTasks: BENCHMARK_TASKS,
      }),
    `p.json:3: $.tasks.glue[0] names unknown glue task "wnli"; known: ${
      BENCHMARK_TASKS.glue.join(", ")
    }`,
  );
  const cases: [Record<string, unknown>, string][] = [
    // An empty object read as "no list" trained every task; an empty list is refused alike.
    [
      {},
      "p.json:3: $.tasks must list the tasks of at least one benchmark; leave it out for every task",
    ],
    [{ glue: [] }, "p.json:3: $.tasks.glue must not be empty"],
    [
      { glue: ["rte", "boolq"] },
      `p.json:3: $.tasks.glue[1] "boolq" is a super_glue task ("boolq"); list it under ` +
      "$.tasks.super_glue",
    ],
    [
      { glue: ["rte_sg"] },
      `p.json:3: $.tasks.glue[0] "rte_sg" is a super_glue task ("rte_sg"); list it under ` +
      "$.tasks.super_glue",
    ],
    [
      { glue: ["super_glue/rte"] },
      `p.json:3: $.tasks.glue[0] "super_glue/rte" is a super_glue task ("rte_sg"); list it ` +
      "under $.tasks.super_glue",
    ],
    // The other benchmark's marker on a name it has no task of: an error, not GLUE's CoLA.
    [
      { glue: ["sg_cola"] },
      `p.json:3: $.tasks.glue[0] "sg_cola", listed under $.tasks.glue, carries "sg_", which ` +
      `marks a super_glue task, and super_glue has no task "cola"; drop the marker for the glue ` +
      "task or list a super_glue task under $.tasks.super_glue",
    ],
    [
      { glue: ["rte", "super_glue/cola"] },
      `p.json:3: $.tasks.glue[1] "super_glue/cola", listed under $.tasks.glue, carries ` +
      `"super_glue/", which marks a super_glue task, and super_glue has no task "cola"; drop ` +
      "the marker for the glue task or list a super_glue task under $.tasks.super_glue",
    ],
    [
      { super_glue: ["glue_boolq"] },
      `p.json:3: $.tasks.super_glue[0] "glue_boolq", listed under $.tasks.super_glue, carries ` +
      `"glue_", which marks a glue task, and glue has no task "boolq"; drop the marker for the ` +
      "super_glue task or list a glue task under $.tasks.glue",
    ],
    [
      { super_glue: ["cb", "wnli"] },
      `p.json:3: $.tasks.super_glue[1] "wnli" is a glue task ("wnli"); list it under $.tasks.glue`,
    ],
    // AX has only a test file: registered, but not trainable; DPR is train-only.
    [
      { glue: ["ax"] },
      `p.json:3: $.tasks.glue[0] "ax" is a registered glue task without both train and ` +
      `validation files, so it cannot be trained and scored; known: ${
        TRAINABLE_TASKS.glue.join(", ")
      }`,
    ],
    // Named as a listed task is (a benchmark marker, any case).
    [
      { glue: ["GLUE/AX"] },
      `p.json:3: $.tasks.glue[0] "GLUE/AX" is a registered glue task without both train and ` +
      `validation files, so it cannot be trained and scored; known: ${
        TRAINABLE_TASKS.glue.join(", ")
      }`,
    ],
    [
      { super_glue: ["dpr"] },
      `p.json:3: $.tasks.super_glue[0] "dpr" is a registered super_glue task without both train ` +
      "and validation files (train-only: a profile adds it with extraTrainTasks), so it cannot be " +
      `trained and scored; known: ${TRAINABLE_TASKS.super_glue.join(", ")}`,
    ],
  ];
  for (const [tasks, message] of cases) {
    assertSpecError(() => validateProfile(minimal({ tasks }), src, REGISTRY), message);
  }
  // The benchmark's own marker is dropped (`glue_cola`, `super_glue/rte`, `cb_sg`).
  assert.equal(resolveListedTask("glue", "glue_cola", TRAINABLE_TASKS).task, "cola");
  assert.equal(resolveListedTask("glue", "GLUE/CoLA", TRAINABLE_TASKS).task, "cola");
  assert.equal(resolveListedTask("super_glue", "super_glue/rte", TRAINABLE_TASKS).task, "rte_sg");
  assert.equal(resolveListedTask("super_glue", "cb_sg", TRAINABLE_TASKS).task, "cb");
  // The runner resolves the same way, and says the same.
  const catalog = {
    benchmarkTasks: (b: "glue" | "super_glue") => BENCHMARK_TASKS[b],
    trainableTasks: (b: "glue" | "super_glue") => TRAINABLE_TASKS[b],
    isAvailable: () => true,
  };
  const grid = expandGrid(validateProfile(minimal({ tasks: { glue: ["rte", "WNLI"] } }), SRC), {
    dataDir: "/nonexistent",
    catalog,
  });
  assert.deepEqual(grid.map((s) => s.tasks), [["rte", "wnli"]]);
  assert.throws(
    () =>
      expandGrid(validateProfile(minimal({ tasks: { glue: ["boolq"] } }), SRC), {
        dataDir: "/nonexistent",
        catalog,
      }),
    {
      message:
        'Profile "x": $.tasks.glue[0] "boolq" is a super_glue task ("boolq"); list it under $.tasks.super_glue',
    },
  );
});

Deno.test("listed tasks: unknown and repeated tasks are errors, for benchmarks outside the grid too", () => {
  const at = (path: string) => (path.startsWith("$.tasks") ? 3 : undefined);
  const src = { file: "p.json", locate: at };
  const ok = validateProfile(
    minimal({ tasks: { glue: ["RTE", "glue_cola"], super_glue: ["super_glue_rte", "cb"] } }),
    src,
    REGISTRY,
  );
  assert.deepEqual(ok.tasks?.glue, ["RTE", "glue_cola"]);
  const cases: [Record<string, unknown>, string][] = [
    [
      { glue: ["rte", "RTE", "glue_rte"] },
      `p.json:3: $.tasks.glue[1] repeats task "rte" (already $.tasks.glue[0] = "rte")`,
    ],
    [
      { super_glue: ["rte", "rte_sg"] },
      `p.json:3: $.tasks.super_glue[1] repeats task "rte_sg" (already $.tasks.super_glue[0] = "rte")`,
    ],
    // super_glue is not in the grid (benchmarks: ["glue"]): still checked.
    [
      { super_glue: ["nonsense_task"] },
      `p.json:3: $.tasks.super_glue[0] names unknown super_glue task "nonsense_task"; known: ` +
      BENCHMARK_TASKS.super_glue.join(", "),
    ],
  ];
  for (const [tasks, message] of cases) {
    assertSpecError(() => validateProfile(minimal({ tasks }), src, REGISTRY), message);
  }
});

Deno.test("profileNotes: a task list of a benchmark the profile does not train is a note", () => {
  const notes = (extra: Record<string, unknown>) =>
    profileNotes(validateProfile(minimal(extra), SRC, REGISTRY));
  assert.deepEqual(notes({}), []);
  assert.deepEqual(notes({ tasks: { glue: ["rte"] } }), []);
  assert.deepEqual(
    notes({ benchmarks: ["glue", "super_glue"], tasks: { glue: ["rte"], super_glue: ["cb"] } }),
    [],
  );
  assert.deepEqual(notes({ tasks: { glue: ["rte"], super_glue: ["cb", "RTE"] } }), [
    `profile "x" lists "tasks" for super_glue (cb, RTE), which no run trains: super_glue is not ` +
    `in its "benchmarks" (glue)`,
  ]);
  assert.deepEqual(
    notes({ benchmarks: ["super_glue"], tasks: { glue: ["cola"] }, extraTrainTasks: {} }),
    [
      `profile "x" lists "tasks" for glue (cola), which no run trains: glue is not in its ` +
      `"benchmarks" (super_glue)`,
    ],
  );
  assert.deepEqual(notes({ extraTrainTasks: { super_glue: ["dpr"] } }), [
    `profile "x" lists "extraTrainTasks" for super_glue (dpr), which no run trains: super_glue ` +
    `is not in its "benchmarks" (glue)`,
  ]);
});

Deno.test("profileNotes: an evaluation interval past a run's steps is a note, grouped by interval and steps", () => {
  const notes = (extra: Record<string, unknown>) =>
    profileNotes(validateProfile(minimal(extra), SRC, REGISTRY));
  assert.deepEqual(notes({ train: { steps: 10, evalEvery: 10 } }), []);
  // Every run of one interval and length in one note, in profile order.
  assert.deepEqual(
    notes({
      benchmarks: ["glue", "super_glue"],
      train: { steps: 4, evalEvery: 10 },
      methods: [{ name: "mtl" }, { name: "adapter" }],
    }),
    [
      `profile "x" evaluates every 10 steps, more than the 4 steps of mtl on glue, adapter on ` +
      `glue, mtl on super_glue, adapter on super_glue: those runs are evaluated at their last ` +
      `step only, which is then their best (train.evalEvery)`,
    ],
  );
  assert.deepEqual(
    notes({
      benchmarks: ["glue", "super_glue"],
      train: { steps: 10, evalEvery: 20 },
      trainOverrides: { super_glue: { steps: 30 } },
      methods: [{ name: "mtl" }, { name: "adapter", train: { evalEvery: 50 } }],
    }),
    [
      `profile "x" evaluates every 20 steps, more than the 10 steps of mtl on glue: those runs ` +
      `are evaluated at their last step only, which is then their best (train.evalEvery)`,
      `profile "x" evaluates every 50 steps, more than the 10 steps of adapter on glue: those ` +
      `runs are evaluated at their last step only, which is then their best (train.evalEvery)`,
      `profile "x" evaluates every 50 steps, more than the 30 steps of adapter on super_glue: ` +
      `those runs are evaluated at their last step only, which is then their best ` +
      `(train.evalEvery)`,
    ],
  );
});

Deno.test("profileNotes: trainOverrides of a benchmark the profile does not train is a note", () => {
  const notes = (extra: Record<string, unknown>) =>
    profileNotes(validateProfile(minimal(extra), SRC, REGISTRY));
  assert.deepEqual(notes({ trainOverrides: { glue: { steps: 3, evalEvery: 3 } } }), []);
  assert.deepEqual(notes({ trainOverrides: { super_glue: { steps: 3, batchSize: 4 } } }), [
    `profile "x" gives "trainOverrides" for super_glue (steps, batchSize), which no run trains ` +
    `with: super_glue is not in its "benchmarks" (glue)`,
  ]);
});

Deno.test("profileNotes: pretrain settings no run uses are a note (a tiny preset's random runs read vocabSize)", () => {
  const notes = (extra: Record<string, unknown>) =>
    profileNotes(validateProfile(minimal(extra), SRC, REGISTRY));
  const note = (fields: string) =>
    `profile "x" gives "pretrain" (${fields}), which no run uses: only a tiny preset's ` +
    `"pretrained" backbone is pretrained here (its random runs read vocabSize alone, the size ` +
    "of their task tokenizer)";
  assert.deepEqual(notes({ backbone: "pretrained", pretrain: { steps: 3, vocabSize: 512 } }), []);
  assert.deepEqual(notes({ backbone: "random", pretrain: { vocabSize: 512 } }), []);
  assert.deepEqual(notes({ backbone: "random", pretrain: { steps: 3, vocabSize: 512 } }), [
    note("steps"),
  ]);
  assert.deepEqual(
    notes({ models: ["t5-small"], backbone: "pretrained", pretrain: { vocabSize: 512 } }),
    [note("vocabSize")],
  );
  // What any of the models reads counts: the tiny preset's pretrained backbone reads them all.
  assert.deepEqual(
    notes({
      models: ["t5-small", "tiny-v1_1"],
      backbone: "pretrained",
      pretrain: { steps: 3, vocabSize: 512 },
    }),
    [],
  );
});

Deno.test("pretrainReadBy(): all for a tiny preset's pretrained backbone, vocabSize for its random init, none for a published preset or an hf backbone", () => {
  const all = { steps: 3, vocabSize: 512 };
  assert.deepEqual(pretrainReadBy(all, "tiny-v1_1", "pretrained"), all);
  assert.deepEqual(pretrainReadBy(all, "tiny-v1_1", "random"), { vocabSize: 512 });
  assert.equal(pretrainReadBy({ steps: 3 }, "tiny-v1_1", "random"), undefined);
  assert.equal(pretrainReadBy(all, "tiny-v1_1", { hf: "./models/t5" }), undefined);
  assert.equal(pretrainReadBy(all, "t5-v1_1-small", "pretrained"), undefined);
  assert.equal(pretrainReadBy(all, "t5-v1_1-small", "random"), undefined);
  assert.equal(pretrainReadBy(all, { hf: "./models/t5" }, "pretrained"), undefined);
  assert.equal(pretrainReadBy(undefined, "tiny-v1_1", "pretrained"), undefined);
});

Deno.test("profileNotes: a tolerance of a task or average no run evaluates is a note", () => {
  const notes = (extra: Record<string, unknown>) =>
    profileNotes(validateProfile(minimal(extra), SRC, REGISTRY));
  const tolerances = (metrics: Record<string, number>) => ({ default: 0.5, metrics });
  // Listed tasks (an alias too), a bare metric, this benchmark's average: gated, no note.
  assert.deepEqual(
    notes({
      tasks: { glue: ["RTE", "glue_cola"] },
      tolerances: tolerances({
        "rte/accuracy": 1,
        "cola/matthews_corrcoef": 1,
        accuracy: 1,
        "average/glue": 1,
      }),
    }),
    [],
  );
  assert.deepEqual(
    notes({
      tasks: { glue: ["rte"] },
      tolerances: tolerances({ "cola/matthews_corrcoef": 1, "average/super_glue": 1 }),
    }),
    [
      `profile "x" gives a tolerance for "cola/matthews_corrcoef", which no run is gated on: no ` +
      "run evaluates cola (tasks: rte)",
      `profile "x" gives a tolerance for "average/super_glue", which no run is gated on: ` +
      `super_glue is not in its "benchmarks" (glue)`,
    ],
  );
  // Without a task list, every task of the benchmark is evaluated.
  assert.deepEqual(notes({ tolerances: tolerances({ "cola/matthews_corrcoef": 1 }) }), []);
});

Deno.test('description: absent or empty is "" (the README\'s default); a non-string is an error', () => {
  assert.equal(validateProfile(minimal(), SRC).description, "");
  assert.equal(validateProfile(minimal({ description: "" }), SRC).description, "");
  assert.equal(validateProfile(minimal({ description: "a b" }), SRC).description, "a b");
  assertSpecError(
    () => validateProfile(minimal({ description: 3 }), SRC),
    "profiles/x.json: $.description must be a string, got 3",
  );
});

Deno.test("methodModelProblem: checked per method and preset model, at the field it names", () => {
  const seen: string[] = [];
  const checks = {
    parseMethodConfig: (_n: MethodName, raw: unknown) => ({ reduction: 32, ...(raw as object) }),
    methodModelProblem: (name: MethodName, cfg: Readonly<Record<string, unknown>>, m: string) => {
      seen.push(`${name}@${m}`);
      if (name === "adapter" && m === "t5-small" && (cfg.reduction as number) > 100) {
        return { field: "reduction", reason: "is too large" };
      }
      return name === "hyperformer_pp" && m === "t5-small" ? { reason: "does not fit" } : undefined;
    },
  };
  const written: Record<string, number> = { "$.methods[1]": 7, "$.methods[1].config": 8 };
  const lines = (p: string): number | undefined => written[p];
  const src = { file: "p.json", locate: lines };
  const models = ["tiny-v1_1", { hf: "org/m" }, "t5-small"];
  const ok = validateProfile(
    minimal({ models, methods: [{ name: "mtl" }, { name: "adapter" }] }),
    src,
    checks,
  );
  assert.equal(ok.methods.length, 2);
  // {"hf": ...} models are left to run time: their sizes are known only when they load.
  assert.deepEqual(seen, [
    "mtl@tiny-v1_1",
    "mtl@t5-small",
    "adapter@tiny-v1_1",
    "adapter@t5-small",
  ]);
  assertSpecError(
    () =>
      validateProfile(
        minimal({
          models,
          methods: [{ name: "mtl" }, { name: "adapter", config: { reduction: 101 } }],
        }),
        { file: "p.json", locate: (p) => p === "$.methods[1].config.reduction" ? 9 : lines(p) },
        checks,
      ),
    'p.json:9: $.methods[1].config.reduction is too large, on model "t5-small" ($.models[2])',
  );
  // A default, not written: the path of the field, the line of the nearest written ancestor.
  assertSpecError(
    () =>
      validateProfile(
        minimal({ models, methods: [{ name: "mtl" }, { name: "adapter", config: {} }] }),
        src,
        { ...checks, parseMethodConfig: () => ({ reduction: 500 }) },
      ),
    'p.json:8: $.methods[1].config.reduction is too large, on model "t5-small" ($.models[2]) ' +
      "(the default)",
  );
  // No field named: the method's config as a whole.
  assertSpecError(
    () =>
      validateProfile(
        minimal({ models, methods: [{ name: "mtl" }, { name: "hyperformer_pp" }] }),
        src,
        checks,
      ),
    'p.json:8: $.methods[1].config does not fit, on model "t5-small" ($.models[2])',
  );
});

Deno.test("resolveListedTask(): a <benchmark>/<x> name is found by its source id, no naming convention", () => {
  // A synthetic task whose registry name is not its id's last part plus a marker.
  const sources = [
    { name: "cola", id: "glue/cola", benchmark: "glue" as const },
    { name: "rte_copy", id: "super_glue/rte2", benchmark: "super_glue" as const },
  ];
  const lists = { glue: ["cola"], super_glue: ["rte_copy"] };
  for (const n of ["super_glue/rte2", "SG_RTE2", "rte2", "rte2_sg", "rte_copy"]) {
    assert.equal(resolveListedTask("super_glue", n, lists, sources).task, "rte_copy", n);
  }
  assert.equal(
    resolveListedTask("glue", "super_glue/rte2", lists, sources).problem,
    `"super_glue/rte2" is a super_glue task ("rte_copy"); list it under $.tasks.super_glue`,
  );
  assert.equal(
    resolveListedTask("glue", "rte2", lists, sources).problem,
    `"rte2" is a super_glue task ("rte_copy"); list it under $.tasks.super_glue`,
  );
  // The real table: every listable task by its source id, its id's last part and its name.
  assert.equal(resolveListedTask("super_glue", "RTE", TRAINABLE_TASKS).task, "rte_sg");
  assert.equal(resolveListedTask("super_glue", "rte_sg", TRAINABLE_TASKS).task, "rte_sg");
  assert.equal(resolveListedTask("super_glue", "RTE-SG", TRAINABLE_TASKS).task, "rte_sg");
  assert.equal(resolveListedTask("glue", "rte", TRAINABLE_TASKS).task, "rte");
});

Deno.test("normalHfRef(): one spelling of a folder; a hub id exactly as written", () => {
  for (
    const [hf, want] of [
      ["/data//a/t5-base/", "/data/a/t5-base"],
      ["/data/./a/t5-base", "/data/a/t5-base"],
      ["\\data\\a\\t5-base\\", "/data/a/t5-base"],
      ["./ck/t5//", "./ck/t5"],
      ["ck/../t5/", "ck/../t5"],
      ["/data/a/t5-base", "/data/a/t5-base"],
    ] as const
  ) assert.equal(normalHfRef(hf), want, hf);
  const hubIds = ["google/t5-v1_1-base", "t5-base", "org.x/name_1.2-b", "A-b/c.d", "x.y"];
  for (const id of hubIds) {
    assert.ok(isHubRepoId(id), id);
    assert.equal(normalHfRef(id), id);
  }
});

Deno.test("validateProfile(): two spellings of one hf folder are one reference and one run id", () => {
  const catalog = {
    benchmarkTasks: (b: "glue" | "super_glue") => BENCHMARK_TASKS[b],
    isAvailable: () => true,
  };
  const grid = (hf: string) =>
    expandGrid(validateProfile(minimal({ models: [{ hf }], backbone: { hf } }), SRC), {
      dataDir: "/nonexistent",
      catalog,
    });
  const a = grid("/data//a/t5-base/");
  const b = grid("/data/a/t5-base");
  assert.deepEqual(a[0]?.model, { hf: "/data/a/t5-base" });
  assert.deepEqual(a[0]?.backbone, { hf: "/data/a/t5-base" });
  assert.deepEqual(a.map((s) => s.id), b.map((s) => s.id));
  assert.equal(configId(a[0]!), configId(b[0]!));
  // Another folder is another run; a hub id is kept as written.
  assert.notEqual(grid("/data/b/t5-base")[0]?.id, b[0]?.id);
  assert.deepEqual(grid("google/t5-v1_1-base")[0]?.model, { hf: "google/t5-v1_1-base" });
  // The hfProblem check sees the value as written.
  const seen: string[] = [];
  validateProfile(minimal({ models: [{ hf: "/x//y/" }] }), SRC, {
    hfProblem: (hf) => void seen.push(hf),
  });
  assert.deepEqual(seen, ["/x//y/"]);
  // Two spellings of one model in one profile are a repeat.
  assertSpecError(
    () =>
      validateProfile(
        minimal({ models: [{ hf: "/data/a/t5-base" }, "tiny-v1_1", { hf: "/data//a/t5-base/" }] }),
        { file: "p.json" },
      ),
    `p.json: $.models[2] repeats model {"hf":"/data/a/t5-base"} ($.models[0])`,
  );
  assertSpecError(
    () =>
      validateProfile(minimal({ backbone: [{ hf: "/ck/t5" }, { hf: "/ck/./t5/" }] }), {
        file: "p.json",
      }),
    `p.json: $.backbone[1] repeats backbone {"hf":"/ck/t5"}`,
  );
});

Deno.test("listed tasks resolve in validateProfile as expandGrid resolves them", () => {
  const names = ["RTE", "glue_cola", "sst-2", "SST2", "qqp_glue", "glue/mrpc"];
  for (const name of names) {
    const raw = minimal({ tasks: { glue: [name] } });
    let mine: string | undefined;
    try {
      validateProfile(raw, SRC, REGISTRY);
      mine = "ok";
    } catch (e) {
      mine = (e as Error).message;
    }
    let grid: string | undefined;
    try {
      expandGrid(validateProfile(raw, SRC), {
        dataDir: "/nonexistent",
        catalog: { benchmarkTasks: (b) => BENCHMARK_TASKS[b], isAvailable: () => true },
      });
      grid = "ok";
    } catch (e) {
      grid = (e as Error).message;
    }
    assert.equal(mine === "ok", grid === "ok", `${name}: ${mine} / ${grid}`);
  }
});

Deno.test("tolerance keys must name a registry metric, a task's metric or a benchmark average", () => {
  const at = (path: string) => (path.startsWith("$.tolerances.metrics") ? 30 : undefined);
  const src = { file: "p.json", locate: at };
  const good = {
    default: 0.5,
    metrics: { accuracy: 1, "cb/mean_3class_f1": 2, "stsb/pearson_corrcoef": 1, "average/glue": 1 },
  };
  assert.deepEqual(
    validateProfile(minimal({ tolerances: good }), src, REGISTRY).tolerances,
    good,
  );
  const cases: [string, RegExp][] = [
    [
      "cb/f1",
      /: p\.json:30: \$\.tolerances\.metrics\.cb\/f1 names no metric of task "cb"; its metrics: mean_3class_f1, accuracy$/,
    ],
    [
      "acuracy",
      /: p\.json:30: \$\.tolerances\.metrics\.acuracy names no metric of any task; use a metric \(accuracy, .*\), "<task>\/<metric>" or "average\/<benchmark>"$/,
    ],
    [
      "cbb/accuracy",
      /: p\.json:30: \$\.tolerances\.metrics\.cbb\/accuracy names unknown task "cbb"; known tasks: cola, /,
    ],
    [
      "average/glu",
      /\$\.tolerances\.metrics\.average\/glu names no benchmark average; use "average\/glue" or "average\/super_glue"/,
    ],
  ];
  for (const [key, re] of cases) {
    assert.throws(
      () => validateProfile(minimal({ tolerances: { metrics: { [key]: 1 } } }), src, REGISTRY),
      re,
    );
  }
});

Deno.test("validateRunResult() checks provenance, losses and tokenizer, naming the field", async () => {
  const body: Omit<RunSpec, "id"> = {
    profile: "ci",
    model: "tiny-v1_1",
    backbone: "random",
    benchmark: "super_glue",
    tasks: ["cb", "rte_sg"],
    method: { name: "mtl", label: "mtl", config: {} },
    seed: 0,
    train: { ...DEFAULT_TRAIN, steps: 4, evalEvery: 2 },
    backend: "cpu",
  };
  const dirs = { outDir: "/nonexistent", dataDir: "/nonexistent" };
  const good = JSON.parse(JSON.stringify(await fakeRunOne({ id: runId(body), ...body }, dirs)));
  good.tokenizer = "fixture:tokenizer.json";
  good.provenance.data = {
    dir: "/data",
    kind: "cache",
    sources: ["official"],
    files: {
      "super_glue/CB/train.jsonl": { bytes: 10, sha256: "a".repeat(64), source: "official" },
    },
  };
  good.provenance.checkpoint = {
    dir: "/models/t5",
    hubId: "google/t5-v1_1-small",
    files: {
      "config.json": { bytes: 600, sha256: "b".repeat(64) },
      "model.safetensors": { bytes: 0, sha256: "0123456789abcdef".repeat(4) },
    },
  };
  good.provenance.resumedFrom = {
    step: 2,
    gitSha: "abc",
    gitDirty: true,
    backend: "webgpu",
    microBatchSizes: [null, 8, 4],
  };
  validateRunResult(structuredClone(good), { file: "r.json" });
  // A diverged step's loss is written null (JSON has no NaN) and read back as NaN.
  const nan = structuredClone(good);
  nan.losses[0].loss = null;
  assert.ok(Number.isNaN(validateRunResult(nan, { file: "r.json" }).losses[0]!.loss));
  // A loss is no percentage: a random T5 1.1 Base's first is above 100.
  const high = structuredClone(good);
  high.losses[0].loss = 104.52;
  assert.equal(validateRunResult(high, { file: "r.json" }).losses[0]!.loss, 104.52);
  // deno-lint-ignore no-explicit-any -- edits reach into parsed JSON of any shape
  const bad = (edit: (r: Record<string, any>) => void, message: string) => {
    const r = structuredClone(good);
    edit(r);
    assert.throws(
      () => validateRunResult(r, { file: "r.json" }),
      (e: unknown) => e instanceof SpecError && e.message === `r.json: ${message}`,
      message,
    );
  };
  bad(
    (r) => (r.provenance.resumedFrom.microBatchSizes = [8, 0]),
    "$.provenance.resumedFrom.microBatchSizes[1] must be >= 1, got 0",
  );
  bad(
    (r) => delete r.provenance.gitDirty,
    "$.provenance.gitDirty is missing (must be true or false)",
  );
  bad((r) => (r.provenance.gitSha = ""), `$.provenance.gitSha must be a non-empty string, got ""`);
  bad(
    (r) => (r.provenance.backend = {}),
    "$.provenance.backend.name is missing (must be a non-empty string)",
  );
  bad(
    (r) => delete r.provenance.device,
    "$.provenance.device is missing (must be a non-empty string)",
  );
  bad(
    (r) => (r.provenance.data.kind = "hub"),
    `$.provenance.data.kind must be one of mirror, cache, folder; got "hub"`,
  );
  bad(
    (r) => (r.provenance.data.sources = ["tfds"]),
    `$.provenance.data.sources[0] must be one of official, parquet; got "tfds"`,
  );
  bad(
    (r) => (r.provenance.data.files["super_glue/CB/train.jsonl"].bytes = -1),
    `$.provenance.data.files["super_glue/CB/train.jsonl"].bytes must be >= 0, got -1`,
  );
  bad(
    (r) => (r.provenance.data.files["super_glue/CB/train.jsonl"].sha256 = "xyz"),
    `$.provenance.data.files["super_glue/CB/train.jsonl"].sha256 must be 64 hex digits, got "xyz"`,
  );
  bad(
    (r) => (r.provenance.data.files["super_glue/CB/train.jsonl"].listedSha256 = 5),
    `$.provenance.data.files["super_glue/CB/train.jsonl"].listedSha256 must be 64 hex digits, got 5`,
  );
  // The checkpoint files a run read: optional (results written before it load); when given, a
  // folder, an optional hub id, and each file's integer size and full lowercase hex sha256.
  const noCheckpoint = structuredClone(good);
  delete noCheckpoint.provenance.checkpoint;
  validateRunResult(noCheckpoint, { file: "r.json" });
  const local = structuredClone(good);
  delete local.provenance.checkpoint.hubId;
  validateRunResult(local, { file: "r.json" });
  const ckFile = `$.provenance.checkpoint.files["model.safetensors"]`;
  bad(
    (r) => delete r.provenance.checkpoint.dir,
    "$.provenance.checkpoint.dir is missing (must be a non-empty string)",
  );
  bad(
    (r) => (r.provenance.checkpoint.hubId = 5),
    "$.provenance.checkpoint.hubId must be a non-empty string, got 5",
  );
  bad(
    (r) => (r.provenance.checkpoint.files = []),
    `$.provenance.checkpoint.files must be an object, got []`,
  );
  bad(
    (r) => (r.provenance.checkpoint.files["model.safetensors"] = "x"),
    `${ckFile} must be an object, got "x"`,
  );
  bad(
    (r) => (r.provenance.checkpoint.files["model.safetensors"].bytes = 1.5),
    `${ckFile}.bytes must be an integer, got 1.5`,
  );
  bad(
    (r) => (r.provenance.checkpoint.files["model.safetensors"].bytes = -1),
    `${ckFile}.bytes must be >= 0, got -1`,
  );
  bad(
    (r) => delete r.provenance.checkpoint.files["config.json"].bytes,
    `$.provenance.checkpoint.files["config.json"].bytes is missing (must be an integer)`,
  );
  // Uppercase (sha256sum writes lowercase, and --resume compares the strings) and one digit
  // short; the value shown is cut to 57 characters and "...".
  bad(
    (r) => (r.provenance.checkpoint.files["model.safetensors"].sha256 = "A".repeat(64)),
    `${ckFile}.sha256 must be 64 lowercase hex digits, got "${"A".repeat(56)}...`,
  );
  bad(
    (r) => (r.provenance.checkpoint.files["model.safetensors"].sha256 = "a".repeat(63)),
    `${ckFile}.sha256 must be 64 lowercase hex digits, got "${"a".repeat(56)}...`,
  );
  bad(
    (r) => (r.provenance.checkpoint.files["model.safetensors"].sha256 = 7),
    `${ckFile}.sha256 must be 64 lowercase hex digits, got 7`,
  );
  bad(
    (r) => delete r.provenance.checkpoint.files["model.safetensors"].sha256,
    `${ckFile}.sha256 is missing (must be 64 lowercase hex digits)`,
  );
  // A task-spm:/fixture: tokenizer's file digest: optional; when given, an integer size and a
  // full lowercase sha256, and only beside such a tokenizer (another names no file).
  const spm = structuredClone(good);
  spm.tokenizer = "task-spm:/cache/spm/tokenizer.json";
  spm.provenance.tokenizerFile = { bytes: 12, sha256: "b".repeat(64) };
  validateRunResult(structuredClone(spm), { file: "r.json" });
  validateRunResult({ ...structuredClone(spm), tokenizer: "fixture:/s/t.json" }, { file: "r" });
  // deno-lint-ignore no-explicit-any
  const badSpm = (edit: (r: Record<string, any>) => void, message: string) => {
    const r = structuredClone(spm);
    edit(r);
    assert.throws(() => validateRunResult(r, { file: "r.json" }), SpecError, message);
  };
  badSpm(
    (r) => (r.provenance.tokenizerFile.sha256 = "B".repeat(64)),
    `$.provenance.tokenizerFile.sha256 must be 64 lowercase hex digits, got "${"B".repeat(56)}...`,
  );
  badSpm(
    (r) => delete r.provenance.tokenizerFile.bytes,
    "$.provenance.tokenizerFile.bytes is missing (must be an integer)",
  );
  badSpm(
    (r) => (r.provenance.tokenizerFile = "x"),
    `$.provenance.tokenizerFile must be an object, got "x"`,
  );
  badSpm(
    (r) => (r.tokenizer = "backbone"),
    `$.provenance.tokenizerFile is given for a tokenizer read from no such file ($.tokenizer is ` +
      `"backbone"; only a task-spm:<file> or fixture:<file> tokenizer has one)`,
  );
  badSpm(
    (r) => delete r.tokenizer,
    "$.provenance.tokenizerFile is given for a tokenizer read from no such file ($.tokenizer is " +
      "absent;",
  );
  bad(
    (r) => (r.provenance.resumedFrom.step = 0),
    "$.provenance.resumedFrom.step must be >= 1, got 0",
  );
  // An evaluation without its step or task would be grouped under none (best-step averages).
  bad((r) => delete r.evals[0].step, "$.evals[0].step is missing (must be an integer)");
  bad((r) => (r.evals[1].task = ""), `$.evals[1].task must be a non-empty string, got ""`);
  bad(
    (r) => (r.provenance.resumedFrom.gitDirty = "yes"),
    `$.provenance.resumedFrom.gitDirty must be true or false, got "yes"`,
  );
  bad(
    (r) => (r.provenance.resumedFrom.backend = 3),
    "$.provenance.resumedFrom.backend must be a non-empty string, got 3",
  );
  bad((r) => (r.losses[1] = { step: 2 }), "$.losses[1].loss is missing (must be a number)");
  bad((r) => (r.losses[0].step = 1.5), "$.losses[0].step must be an integer, got 1.5");
  bad((r) => (r.losses[0].loss = -0.5), "$.losses[0].loss must be >= 0, got -0.5");
  // A step's learning rate: optional, a number >= 0.
  const withLr = structuredClone(good);
  withLr.losses[0].lr = 0.001;
  assert.equal(validateRunResult(withLr, { file: "r.json" }).losses[0]!.lr, 0.001);
  bad((r) => (r.losses[0].lr = -1), "$.losses[0].lr must be >= 0, got -1");
  bad((r) => (r.losses[0].lr = "x"), `$.losses[0].lr must be a number, got "x"`);
  // What the tables and the gate read of the spec: named, not a TypeError of a reader.
  bad((r) => delete r.spec.model, "$.spec.model is missing (must be an object)");
  bad((r) => (r.spec.model = { hf: "" }), `$.spec.model.hf must be a non-empty string, got ""`);
  bad(
    (r) => (r.spec.backbone = "rand"),
    `$.spec.backbone must be one of random, pretrained; got "rand"`,
  );
  bad(
    (r) => delete r.spec.backbone,
    "$.spec.backbone is missing (must be one of random, pretrained)",
  );
  bad((r) => delete r.spec.train, "$.spec.train is missing (must be an object)");
  bad(
    (r) => (r.spec.train.maxInputLength = 0),
    "$.spec.train.maxInputLength must be >= 1, got 0",
  );
  bad((r) => (r.spec.train.steps = 0), "$.spec.train.steps must be >= 1, got 0");
  bad((r) => (r.spec.train.batchSize = "x"), `$.spec.train.batchSize must be an integer, got "x"`);
  bad(
    (r) => (r.spec.train.maxTargetLength = 2.5),
    "$.spec.train.maxTargetLength must be an integer, got 2.5",
  );
  bad(
    (r) => (r.spec.backbone = { hf: "" }),
    `$.spec.backbone.hf must be a non-empty string, got ""`,
  );
  const withMass = (edit: (m: { encoder: unknown[]; decoder: unknown[] }) => void) =>
  // deno-lint-ignore no-explicit-any -- edits reach into parsed JSON of any shape
  (r: Record<string, any>) => {
    r.attentionMass = { cb: { encoder: [0.5, 0], decoder: [0.25, 1] } };
    edit(r.attentionMass.cb);
  };
  validateRunResult(
    { ...structuredClone(good), attentionMass: { cb: { encoder: [0.5, 0], decoder: [1] } } },
    { file: "r.json" },
  );
  bad(
    withMass((m) => (m.encoder[1] = null)),
    "$.attentionMass.cb.encoder[1] must be a number, got null",
  );
  bad(
    withMass((m) => (m.decoder[0] = 1.5)),
    "$.attentionMass.cb.decoder[0] must be <= 1.00001 (a share of attention), got 1.5",
  );
  bad(
    withMass((m) => (m.decoder[0] = -0.1)),
    "$.attentionMass.cb.decoder[0] must be >= 0, got -0.1",
  );
  bad(
    withMass((m) => ((m as Record<string, unknown>).x = [])),
    "$.attentionMass.cb.x is not a known field; known fields: encoder, decoder",
  );
  bad(
    withMass((m) => delete (m as Partial<typeof m>).decoder),
    "$.attentionMass.cb.decoder is missing (must be an array)",
  );
  bad((r) => (r.tokenizer = 7), "$.tokenizer must be a non-empty string, got 7");
  // Invalid predictions: optional; a count of at most `of` predictions, in evals and in best.
  const withInvalid = structuredClone(good);
  withInvalid.evals[0].invalid = { count: 3, of: 16 };
  validateRunResult(withInvalid, { file: "r.json" });
  bad(
    (r) => (r.evals[0].invalid = { count: 17, of: 16 }),
    "$.evals[0].invalid.count must be <= 16 (the predictions made), got 17",
  );
  bad(
    (r) => (r.evals[0].invalid = { count: -1, of: 16 }),
    "$.evals[0].invalid.count must be >= 0, got -1",
  );
  bad(
    (r) => (r.evals[0].invalid = { count: 0, of: 0 }),
    "$.evals[0].invalid.of must be >= 1, got 0",
  );
  bad(
    (r) => (r.evals[0].invalid = { count: 1.5, of: 4 }),
    "$.evals[0].invalid.count must be an integer, got 1.5",
  );
  bad(
    (r) => (r.evals[0].invalid = { count: 1, of: 4, pct: 25 }),
    "$.evals[0].invalid.pct is not a known field; known fields: count, of",
  );
  // The predictions' digest: optional, 64 lowercase hex digits.
  const withDigest = structuredClone(good);
  withDigest.evals[0].predictionsSha256 = "ab".repeat(32);
  validateRunResult(withDigest, { file: "r.json" });
  // Long values are shown cut to 60 characters.
  for (
    const [v, shown] of [
      ["AB".repeat(32), `"${"AB".repeat(28)}...`],
      ["ab".repeat(10), `"${"ab".repeat(10)}"`],
      // One digit too many, or a prefix: the whole value must be the digest.
      ["0".repeat(65), `"${"0".repeat(56)}...`],
      [`x${"0".repeat(64)}`, `"x${"0".repeat(55)}...`],
      [7, "7"],
    ] as const
  ) {
    bad(
      (r) => (r.evals[0].predictionsSha256 = v),
      `$.evals[0].predictionsSha256 must be 64 lowercase hex digits (a sha256), got ${shown}`,
    );
  }
  const firstBest = Object.keys(good.best)[0]!;
  bad(
    (r) => (r.best[firstBest].invalid = 3),
    `$.best.${firstBest}.invalid must be an object, got 3`,
  );
  // The throughput's totals: optional (results written before them load), both or neither,
  // non-negative, the tokens an integer, and the rate their quotient.
  const old = structuredClone(good);
  delete old.trainTokens;
  delete old.trainSeconds;
  assert.equal(validateRunResult(old, { file: "r.json" }).trainTokens, undefined);
  bad(
    (r) => delete r.trainSeconds,
    "$.trainSeconds is missing while $.trainTokens is given; give both or neither",
  );
  bad(
    (r) => delete r.trainTokens,
    "$.trainTokens is missing while $.trainSeconds is given; give both or neither",
  );
  bad((r) => (r.trainTokens = -8), "$.trainTokens must be >= 0, got -8");
  bad((r) => (r.trainTokens = 1.5), "$.trainTokens must be an integer, got 1.5");
  bad((r) => (r.trainSeconds = "2"), `$.trainSeconds must be a number, got "2"`);
  bad(
    (r) => ((r.trainTokens = 1000), (r.trainSeconds = 4), (r.tokensPerSecond = 251)),
    "$.tokensPerSecond must be $.trainTokens / $.trainSeconds (1000 / 4 = 250), got 251",
  );
  bad(
    (r) => ((r.trainTokens = 0), (r.trainSeconds = 0), (r.tokensPerSecond = 5)),
    "$.tokensPerSecond must be $.trainTokens / $.trainSeconds (0 / 0 = 0), got 5",
  );
  const zero = structuredClone(good);
  Object.assign(zero, { trainTokens: 0, trainSeconds: 0, tokensPerSecond: 0 });
  validateRunResult(zero, { file: "r.json" });
});

Deno.test("per-task runs: the task in the file name, one configId over the tasks, perTaskOf checked when read", async () => {
  const body: Omit<RunSpec, "id"> = {
    profile: "x",
    model: "tiny-v1_1",
    backbone: "random",
    benchmark: "glue",
    tasks: ["cola"],
    perTaskOf: ["cola", "rte"],
    method: { name: "prompt_tuning", label: "Prompt-Tuning", config: {} },
    seed: 0,
    train: DEFAULT_TRAIN,
    backend: "cpu",
  };
  const cola: RunSpec = { id: runId(body), ...body };
  const rte: RunSpec = { id: runId({ ...body, tasks: ["rte"] }), ...body, tasks: ["rte"] };
  assert.equal(
    runFileName(cola),
    `x--tiny-v1_1--random--glue--Prompt-Tuning--cola--s0--${cola.id}.json`,
  );
  assert.notEqual(cola.id, rte.id);
  assert.equal(configId(cola), configId(rte));
  // A multi-task run of the same settings is another configuration.
  const { perTaskOf: _p, ...multi } = { ...body, tasks: ["cola", "rte"] };
  assert.notEqual(configId(multi), configId(cola));
  // Per-task runs over another task set (a profile listing fewer tasks) are another configuration.
  assert.notEqual(configId({ ...cola, perTaskOf: ["cola", "rte", "mrpc"] }), configId(cola));
  const good = await fakeRunOne(cola, { outDir: "", dataDir: "" });
  validateRunResult(structuredClone(good), { file: "r.json" });
  const bad = structuredClone(good) as unknown as { spec: { tasks: string[] } };
  bad.spec.tasks = ["cola", "rte"];
  assert.throws(() => validateRunResult(bad, { file: "r.json" }), {
    message:
      'r.json: $.spec.tasks must be one task of $.spec.perTaskOf (cola, rte) in a per-task run, got ["cola","rte"]',
  });
});

Deno.test("train.predictTest: validated, merged, in the spec and the run id only when true", () => {
  const p = validateProfile(
    minimal({
      benchmarks: ["glue", "super_glue"],
      train: { predictTest: true },
      trainOverrides: { super_glue: { predictTest: false } },
    }),
    SRC,
  );
  assert.equal(p.train.predictTest, true);
  assert.equal(trainFor(p, "glue").predictTest, true);
  // false (set, or inherited from the default) is absent: the spec and its id are as without it.
  const sg = trainFor(p, "super_glue");
  assert.equal("predictTest" in sg, false);
  const off = validateProfile(minimal({ train: { predictTest: false } }), SRC).train;
  assert.deepEqual(off, DEFAULT_TRAIN);
  assert.equal("predictTest" in off, false);
  assert.equal(runId(rteSpec(off)), runId(rteSpec(DEFAULT_TRAIN)));
  assert.notEqual(runId(rteSpec(p.train)), runId(rteSpec(DEFAULT_TRAIN)));
  assertTrainErrors(
    "$.train.",
    ["true", 1, null].map((v) => [
      { predictTest: v },
      `p.json:5: $.train.predictTest must be true or false, got ${JSON.stringify(v)}`,
    ]),
  );
});

Deno.test("testSplits / testRows / testPredictionsDir: MNLI's two test files, the diagnostics', none for DPR", () => {
  assert.deepEqual(testSplits("mnli"), ["test_matched", "test_mismatched"]);
  assert.deepEqual(testSplits("cb"), ["test"]);
  assert.deepEqual(testSplits("ax"), ["test"]);
  assert.deepEqual(testSplits("dpr"), []);
  assert.equal(testRows("mnli"), 9796 + 9847);
  assert.equal(testRows("axb"), 1104);
  assert.equal(testRows("dpr"), 0);
  for (const [host, diags] of Object.entries(TEST_DIAGNOSTICS)) {
    assert.ok(Object.hasOwn(TASKS, host), host);
    for (const d of diags) assert.equal(TASKS[d]!.files.validation, undefined, d);
  }
  const body = rteSpec(DEFAULT_TRAIN);
  const s = { ...body, id: runId(body) };
  assert.equal(testPredictionsDir(s), `test_predictions/${runFileName(s).slice(0, -5)}`);
});

Deno.test("validateRunResult() checks testPredictions, naming the field", async () => {
  const body: Omit<RunSpec, "id"> = {
    profile: "ci",
    model: "tiny-v1_1",
    backbone: "random",
    benchmark: "super_glue",
    tasks: ["cb"],
    method: { name: "mtl", label: "mtl", config: {} },
    seed: 0,
    train: { ...DEFAULT_TRAIN, steps: 2, evalEvery: 2, predictTest: true },
    backend: "cpu",
  };
  const dirs = { outDir: "/nonexistent", dataDir: "/nonexistent" };
  const good = JSON.parse(JSON.stringify(await fakeRunOne({ id: runId(body), ...body }, dirs)));
  good.testPredictions = { dir: "test_predictions/x", files: { cb: { step: 2, examples: 250 } } };
  assert.deepEqual(
    validateRunResult(structuredClone(good), { file: "r.json" }).testPredictions,
    good.testPredictions,
  );
  const cases: [unknown, string][] = [
    [{ dir: "/abs", files: {} }, "$.testPredictions.dir must be a folder inside"],
    [{ dir: "a/../..", files: {} }, "$.testPredictions.dir must be a folder inside"],
    [{ dir: "d" }, "$.testPredictions.files is missing (must be an object)"],
    [{ dir: "d", files: { cb: { step: -1, examples: 1 } } }, "$.testPredictions.files.cb.step"],
    [{ dir: "d", files: { cb: { step: 1 } } }, "$.testPredictions.files.cb.examples"],
  ];
  for (const [tp, message] of cases) {
    assert.throws(
      () =>
        validateRunResult({ ...structuredClone(good), testPredictions: tp }, { file: "r.json" }),
      (e: unknown) => e instanceof SpecError && e.message.startsWith(`r.json: ${message}`),
      message,
    );
  }
});

Deno.test("backboneHfRef(): an hf backbone, or the hf model of a pretrained backbone; else none", () => {
  const hf = { hf: "/ck/t5" };
  assert.equal(backboneHfRef({ model: "tiny-v1_1", backbone: { hf: "/ck/b" } }), "/ck/b");
  assert.equal(backboneHfRef({ model: hf, backbone: { hf: "/ck/b" } }), "/ck/b");
  assert.equal(backboneHfRef({ model: hf, backbone: "pretrained" }), "/ck/t5");
  assert.equal(backboneHfRef({ model: hf, backbone: "random" }), undefined);
  assert.equal(backboneHfRef({ model: "t5-v1_1-base", backbone: "pretrained" }), undefined);
  assert.equal(backboneHfRef({ model: "tiny-v1_1", backbone: "random" }), undefined);
});

Deno.test("DEFAULT_TRAIN is the spec's assumed setup (§3.3 A10: T5 fine-tuning defaults; §3.4: every 2000 steps)", () => {
  // A profile that leaves a field out trains with these (ci and smoke rely on some of them).
  assert.equal(DEFAULT_TRAIN.optimizer, "adafactor");
  assert.equal(DEFAULT_TRAIN.learningRate, 1e-3);
  assert.deepEqual(DEFAULT_TRAIN.schedule, { kind: "constant", warmupSteps: 0 });
  assert.equal(DEFAULT_TRAIN.batchSize, 128);
  assert.equal(DEFAULT_TRAIN.maxInputLength, 512);
  assert.equal(DEFAULT_TRAIN.maxTargetLength, 84);
  assert.equal(DEFAULT_TRAIN.dropout, 0.1);
  assert.equal(DEFAULT_TRAIN.mixture, "proportional");
  assert.equal(DEFAULT_TRAIN.evalEvery, 2000);
  assert.equal(DEFAULT_TRAIN.checkpointEvery, 2000);
  assert.equal(DEFAULT_TRAIN.evalMaxExamples, null);
});

Deno.test("validateProfile(): seeds are a non-empty list without repeats; a label is a string", () => {
  assertSpecError(
    () => validateProfile(minimal({ seeds: [0, 1, 0] }), SRC),
    "profiles/x.json: $.seeds must not repeat a seed",
  );
  assert.throws(
    () => validateProfile(minimal({ seeds: [] }), SRC),
    (e: unknown) => e instanceof SpecError && /^profiles\/x\.json: \$\.seeds /.test(e.message),
  );
  assert.throws(
    () => validateProfile(minimal({ methods: [{ name: "mtl", label: 7 }] }), SRC),
    (e: unknown) =>
      e instanceof SpecError && /^profiles\/x\.json: \$\.methods\[0\]\.label /.test(e.message),
  );
  assert.deepEqual(validateProfile(minimal({ seeds: [2, 0] }), SRC).seeds, [2, 0]);
});

Deno.test("validateTrain(): a warmup longer than the run is refused for both warmup schedules", () => {
  for (const kind of ["warmup_linear", "warmup_rsqrt"]) {
    assertSpecError(
      () =>
        validateProfile(
          minimal({ train: { steps: 10, schedule: { kind, warmupSteps: 11 } } }),
          SRC,
        ),
      "profiles/x.json: $.train.schedule.warmupSteps must be <= steps (10), got 11",
    );
  }
  // constant has none: refused as such (the test of a constant schedule's warmup above).
  assert.throws(
    () => validateProfile(minimal({ train: { steps: 10, schedule: { warmupSteps: 11 } } }), SRC),
    /"constant" schedule has no warmup/,
  );
});

Deno.test("runFileName(): a method label's unsafe characters become _", () => {
  const body = rteSpec(DEFAULT_TRAIN);
  const s = { ...body, method: { ...body.method, label: "HyperPrompt-Global (frozen)/l=4" } };
  const spec = { ...s, id: runId(s) };
  assert.equal(
    runFileName(spec),
    `x--tiny-v1_1--random--glue--HyperPrompt-Global_frozen_l_4--s0--${spec.id}.json`,
  );
});

Deno.test("validateRunResult(): a missing or mistyped spec, score, params or timing field is refused by name", async () => {
  const body: Omit<RunSpec, "id"> = {
    ...rteSpec({ ...DEFAULT_TRAIN, steps: 4, evalEvery: 2 }),
    benchmark: "super_glue",
    tasks: ["cb"],
    trainOnlyTasks: ["dpr"],
  };
  const dirs = { outDir: "/nonexistent", dataDir: "/nonexistent" };
  const good = JSON.parse(JSON.stringify(await fakeRunOne({ id: runId(body), ...body }, dirs)));
  validateRunResult(structuredClone(good), { file: "r.json" });
  // An absent field is said to be missing ("is missing (must be …)"), a present one shown with
  // its value ("must be …, got …").
  // deno-lint-ignore no-explicit-any -- edits reach into parsed JSON of any shape
  const bad = (edit: (r: Record<string, any>) => void, field: string, missing = false) => {
    const r = structuredClone(good);
    edit(r);
    const start = `r.json: ${field} ${missing ? "is missing (must be " : "must "}`;
    assert.throws(
      () => validateRunResult(r, { file: "r.json" }),
      (e: unknown) => e instanceof SpecError && e.message.startsWith(start),
      field,
    );
  };
  bad((r) => delete r.wallSeconds, "$.wallSeconds", true);
  bad((r) => (r.wallSeconds = "3"), "$.wallSeconds");
  bad((r) => delete r.backboneSource, "$.backboneSource", true);
  bad((r) => delete r.params.trainedPerTaskPct, "$.params.trainedPerTaskPct", true);
  bad((r) => (r.params.total = -1), "$.params.total");
  bad((r) => delete r.flops.inferencePerExample, "$.flops.inferencePerExample", true);
  bad((r) => delete r.spec.seed, "$.spec.seed", true);
  bad((r) => (r.spec.seed = 0.5), "$.spec.seed");
  bad((r) => (r.spec.benchmark = "glu"), "$.spec.benchmark");
  bad((r) => (r.spec.profile = ""), "$.spec.profile");
  bad((r) => (r.spec.method.label = 3), "$.spec.method.label");
  bad((r) => (r.spec.trainOnlyTasks = [4]), "$.spec.trainOnlyTasks[0]");
  bad((r) => (r.best.cb.groupScore = "71"), "$.best.cb.groupScore");
  bad((r) => (r.best.cb.metrics.accuracy = "71"), "$.best.cb.metrics.accuracy");
  // Scores are percentages: beyond ±100 is a hand edit or a 0-1 slip (correlations reach -100).
  bad((r) => (r.best.cb.metrics.accuracy = 250), "$.best.cb.metrics.accuracy");
  bad((r) => (r.evals[0].groupScore = -100.5), "$.evals[0].groupScore");
  const negative = structuredClone(good);
  negative.best.cb.metrics.accuracy = -100;
  negative.best.cb.groupScore = 100;
  assert.equal(validateRunResult(negative, { file: "r.json" }).best.cb!.metrics.accuracy, -100);
  assert.throws(
    () => {
      const x = structuredClone(good);
      x.averages[Object.keys(good.averages)[0]!] = 101;
      validateRunResult(x, { file: "r.json" });
    },
    /\$\.averages\.\w+ must be <= 100 \(scores are percentages, as bench writes them\), got 101/,
  );
  const avg = Object.keys(good.averages)[0]!;
  bad((r) => (r.averages[avg] = "x"), `$.averages.${avg}`);
  bad((r) => (r.spec.perTaskOf = ["boolq", "copa"]), "$.spec.tasks");
  // An undefined score (NaN, written null) is read back as NaN, in best and averages alike.
  const nan = structuredClone(good);
  nan.best.cb.groupScore = null;
  nan.averages[avg] = null;
  const read = validateRunResult(nan, { file: "r.json" });
  assert.ok(Number.isNaN(read.best.cb!.groupScore));
  assert.ok(Number.isNaN((read.averages as Record<string, number>)[avg]!));
});

Deno.test("conditionedTasks() / trainedTaskIds(): DPR carries WSC's task id where the run trains WSC, else one of its own", () => {
  // The paper's SuperGLUE mixture: 8 tasks the method tells apart, DPR trained as WSC.
  const sg = {
    tasks: ["boolq", "cb", "copa", "multirc", "record", "rte_sg", "wic", "wsc"],
    trainOnlyTasks: ["dpr"],
  };
  assert.deepEqual(trainedTasks(sg), [...sg.tasks, "dpr"]);
  assert.deepEqual(conditionedTasks(sg), sg.tasks);
  assert.deepEqual(trainedTaskIds(sg), [0, 1, 2, 3, 4, 5, 6, 7, 7]);
  // WSC elsewhere in the list: its index, whatever it is.
  assert.deepEqual(trainedTaskIds({ tasks: ["wsc", "cb"], trainOnlyTasks: ["dpr"] }), [0, 1, 0]);
  // Without WSC, DPR is a task of its own after the evaluated ones.
  const noWsc = { tasks: ["cb", "rte_sg"], trainOnlyTasks: ["dpr"] };
  assert.deepEqual(conditionedTasks(noWsc), ["cb", "rte_sg", "dpr"]);
  assert.deepEqual(trainedTaskIds(noWsc), [0, 1, 2]);
  // No train-only task: the evaluated tasks, ids in order.
  assert.deepEqual(conditionedTasks({ tasks: ["rte", "cola"] }), ["rte", "cola"]);
  assert.deepEqual(trainedTaskIds({ tasks: ["rte", "cola"] }), [0, 1]);
});

Deno.test("predictionsDigest(): sha256 of the JSON [id, prediction] pairs (Python's json.dumps gives the same bytes); lengths must agree", () => {
  // python3: hashlib.sha256(json.dumps([["a","yes"],["b","no \u2047"]], separators=(",",":"),
  // ensure_ascii=False).encode()).hexdigest()
  assert.equal(
    predictionsDigest(["a", "b"], ["yes", "no \u2047"]),
    "3a1f651afafed5cb4ebca0f6eb6420f7abe9e51eccfec33bf166df8e076002ba",
  );
  // The order is part of it.
  assert.notEqual(
    predictionsDigest(["b", "a"], ["no \u2047", "yes"]),
    predictionsDigest(["a", "b"], ["yes", "no \u2047"]),
  );
  assert.throws(() => predictionsDigest(["a"], []), /1 ids but 0 predictions/);
});
