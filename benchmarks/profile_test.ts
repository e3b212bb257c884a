import assert from "node:assert/strict";
import { join, relative } from "node:path";
import { withEnv } from "../model/env_testing.ts";
import {
  builtInNameNote,
  defaultChecks,
  defaultChecksAsync,
  jsonDuplicateKey,
  jsonLocator,
  listProfiles,
  loadProfile,
  parseProfile,
  profilePath,
  PROFILES_DIR,
} from "./profile.ts";
import { expandGrid } from "./runner.ts";
import {
  BENCHMARKS,
  BUILTIN_METHOD_NAMES,
  METHOD_NAMES,
  type MethodName,
  type RunSpec,
  SpecError,
} from "./spec.ts";
import { readPaperTable } from "./tables.ts";

/** The hint `parseJsonFile` adds to a syntax error at a comment or a trailing comma. */
const NO_COMMENTS = " (JSON allows no comments or trailing commas)";
import { BENCHMARK_TASKS } from "../tasks/registry.ts";

Deno.test("listProfiles() lists the built-in profiles", () => {
  const names = listProfiles();
  for (
    const n of [
      "smoke",
      "ci",
      "paper-base",
      "paper-large",
      "paper-xl",
      "paper-xxl",
      "ablation",
      "ablation-large",
    ]
  ) {
    assert.ok(names.includes(n), `missing profile ${n}`);
  }
});

Deno.test("loadProfile() validates every built-in profile, method configs included", async () => {
  const checks = await defaultChecksAsync();
  assert.ok(checks.parseMethodConfig, "model/methods/mod.ts should load");
  for (const name of listProfiles()) {
    const p = await loadProfile(name, checks);
    assert.equal(p.name, name);
    // Resolved configs carry the method defaults (e.g. freezeBackbone for every method).
    for (const m of p.methods) assert.ok("freezeBackbone" in m.config, `${name}/${m.label}`);
  }
  const ci = await loadProfile("ci", checks);
  assert.equal(ci.seeds.length, 1);
  const pb = await loadProfile("paper-base", checks);
  assert.equal(pb.trainOverrides.super_glue?.maxTargetLength, 62);
  assert.equal(pb.methods.find((m) => m.name === "prompt_tuning")?.train?.learningRate, 0.3);
});

Deno.test("builtInNameNote(): a profile file elsewhere named as a built-in one gets a note; the built-in itself and other names none", () => {
  const copy = "/tmp/mine/ci.json";
  assert.equal(
    builtInNameNote(copy, "ci"),
    `${copy} is named "ci", as the built-in profile ${join(PROFILES_DIR, "ci.json")} is: its ` +
      "runs are keyed as that profile's (results ci--…, and a --compare against its baseline " +
      "gates them as its runs: those whose settings differ fail on spec.id); give it a name of " +
      "its own to tell them apart",
  );
  assert.equal(builtInNameNote(join(PROFILES_DIR, "ci.json"), "ci"), undefined);
  assert.equal(builtInNameNote(copy, "ci-lr2"), undefined);
});

Deno.test("profilePath() names the known profiles for an unknown name", () => {
  assert.throws(() => profilePath("smoek"), /Unknown profile "smoek"; built-in profiles: .*smoke/);
  assert.equal(profilePath("x/y.json"), "x/y.json");
});

Deno.test("loadProfile() names --profile and the file in one line when it cannot be read", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = join(dir, "a-file.json");
    await Deno.writeTextFile(file, '{\n  "name": "a-file",\n  "seeds": [0,]\n}\n');
    const cases: [string, string | RegExp][] = [
      [
        join(dir, "missing.json"),
        new RegExp(
          `^--profile ${dir}/missing\\.json: no such file \\(built-in profiles: .*\\bci\\b.*, ` +
            `or a path to a profile JSON file\\)$`,
        ),
      ],
      // Relative: where it was looked for.
      [
        "no-such-dir-x/p.json",
        new RegExp(
          `^--profile no-such-dir-x/p\\.json: no such file \\(built-in profiles: .*, or a path to a ` +
            `profile JSON file; relative paths are read from ${Deno.cwd()}\\)$`,
        ),
      ],
      // A path below a file is no such file either.
      [join(file, "x.json"), /^--profile .*a-file\.json\/x\.json: no such file \(built-in/],
      [dir, new RegExp(`^--profile ${dir}: is a folder, not a profile JSON file \\(built-in`)],
      // Bad JSON: the file, line and column.
      [file, `${file}:3:15: invalid JSON: Unexpected token ']'${NO_COMMENTS}`],
    ];
    for (const [arg, want] of cases) {
      await assert.rejects(() => loadProfile(arg), (e: unknown) => {
        const m = (e as Error).message;
        assert.ok(!m.includes("\n") && !m.includes("readfile"), m);
        if (typeof want === "string") assert.equal(m, want);
        else assert.match(m, want);
        return true;
      }, arg);
    }
    if (Deno.uid() !== 0) { // root reads any file
      await Deno.chmod(file, 0o000);
      await assert.rejects(
        () => loadProfile(file),
        { message: `--profile ${file}: cannot read it: permission denied` },
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("jsonLocator() finds the line of nested values", () => {
  const text =
    '{\n  "a": 1,\n  "m": [\n    { "name": "x" },\n    {\n      "name": "y"\n    }\n  ]\n}';
  const at = jsonLocator(text);
  assert.equal(at("$"), 1);
  assert.equal(at("$.a"), 2);
  assert.equal(at("$.m[0].name"), 4);
  assert.equal(at("$.m[1]"), 5);
  assert.equal(at("$.m[1].name"), 6);
  assert.equal(at("$.nope"), undefined);
  // An escaped quote inside a string (a key's or a value's) does not end it: later lines hold.
  const quoted = jsonLocator('{\n  "d": "say \\"hi\\"",\n  "k\\"q": 1,\n  "b": 2\n}');
  assert.equal(quoted('$.k"q'), 3);
  assert.equal(quoted("$.b"), 4);
});

/** The text of a one-model, one-benchmark, MTL-only profile named `name`, one key a line. */
const mtlProfile = (name: string) =>
  `{\n  "name": "${name}",\n  "models": ["tiny-v1_1"],\n  "benchmarks": ["glue"],\n` +
  '  "methods": [{ "name": "mtl" }]\n}\n';

Deno.test("loadProfile(): a profile outside the built-in folder may be named unlike its file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = join(dir, "my-copy.json");
    await Deno.writeTextFile(file, mtlProfile("t"));
    assert.equal((await loadProfile(file)).name, "t");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadProfile(): a built-in profile must be named as its file, by name or by path", async () => {
  // A scratch folder stands in for benchmarks/profiles/ (loadProfile's third parameter).
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(join(dir, "good.json"), mtlProfile("good"));
    await Deno.writeTextFile(join(dir, "copy.json"), mtlProfile("good"));
    assert.equal((await loadProfile("good", undefined, dir)).name, "good");
    assert.deepEqual(listProfiles(dir), ["copy", "good"]);
    for (const arg of ["copy", join(dir, "copy.json")]) {
      await assert.rejects(
        () => loadProfile(arg, undefined, dir),
        (e: unknown) => {
          assert.ok(e instanceof Error);
          assert.equal(
            e.message,
            `${join(dir, "copy.json")}:2: $.name must equal the file name "copy", got "good"`,
          );
          return true;
        },
        arg,
      );
    }
    // A relative path into the folder is the same file: checked too.
    const relativeCopy = relative(Deno.cwd(), join(dir, "copy.json"));
    await assert.rejects(
      () => loadProfile(relativeCopy, undefined, dir),
      /must equal the file name "copy", got "good"/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadProfile(): a sibling folder whose name starts like the built-in one is not it", async () => {
  const dir = await Deno.makeTempDir();
  const sibling = `${dir}-old`;
  try {
    await Deno.mkdir(sibling);
    await Deno.writeTextFile(join(sibling, "copy.json"), mtlProfile("good"));
    assert.equal((await loadProfile(join(sibling, "copy.json"), undefined, dir)).name, "good");
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(sibling, { recursive: true });
  }
});

Deno.test("a key given twice in a profile is an error naming both lines (or the one)", async () => {
  const checks = await defaultChecksAsync();
  const text = '{\n  "name": "t",\n  "models": ["tiny-v1_1"],\n  "benchmarks": ["glue"],\n' +
    '  "methods": [{ "name": "mtl", "label": "a", "label": "b" }],\n' +
    '  "train": { "steps": 4 },\n  "train": { "steps": 8 }\n}';
  assert.deepEqual(jsonDuplicateKey(text), { path: "$.methods[0].label", firstLine: 5, line: 5 });
  assert.throws(
    () => parseProfile(text, "t.json", checks),
    (e: Error) =>
      e.message ===
        "t.json:5: $.methods[0].label is given twice (both on line 5); JSON keeps only the last",
  );
  const once = text.replace(', "label": "b"', "");
  assert.throws(
    () => parseProfile(once, "t.json", checks),
    (e: Error) =>
      e.message === "t.json:7: $.train is given twice (lines 6 and 7); JSON keeps only the last",
  );
  // The same key in different objects is not a repeat.
  assert.equal(
    jsonDuplicateKey('{"a": {"x": 1}, "b": {"x": 2}, "c": [{"x": 1}, {"x": 2}]}'),
    undefined,
  );
  parseProfile(once.replace(',\n  "train": { "steps": 8 }', ""), "t.json", checks);
});

Deno.test("a method config that does not fit a preset model of the grid is an error at its field", () => {
  const checks = defaultChecks();
  const text = (models: string, config: string, name = "adapter") =>
    `{\n  "name": "t",\n  "models": ${models},\n  "benchmarks": ["glue"],\n  "methods": [\n` +
    `    { "name": "mtl" },\n    {\n      "name": "${name}",\n      "config": {\n` +
    `        "initStd": 0.02,\n        "reduction": ${config}\n      }\n    }\n  ]\n}\n`;
  const tiny = '["tiny-v1_1"]';
  for (const name of ["adapter", "hyperformer_pp"]) {
    assert.throws(() => parseProfile(text(tiny, "65", name), "t.json", checks), {
      name: "SpecError",
      message: "t.json:11: $.methods[1].config.reduction is 65, which leaves no bottleneck for " +
        "d 64 (floor(64 / 65) = 0; the reduction must be at most 64), on model " +
        '"tiny-v1_1" ($.models[0])',
    }, name);
    // At most d: a bottleneck of 1.
    assert.equal(parseProfile(text(tiny, "64", name), "t.json", checks).methods[1]!.name, name);
  }
  // Every preset of the grid: t5-small (d 512) takes 100, tiny-v1_1 (d 64) does not.
  assert.throws(() => parseProfile(text('["t5-small", "tiny-v1_1"]', "100"), "t.json", checks), {
    message:
      /^t\.json:11: \$\.methods\[1\]\.config\.reduction is 100, .* on model "tiny-v1_1" \(\$\.models\[1\]\)$/,
  });
  // An {"hf": ...} model's d is known only when it loads: left to run time, up to the size bound
  // every model shares (model/methods/_config.ts MAX_SIZE_FIELD, past every T5's d).
  const hf = '[{ "hf": "org/some-t5" }]';
  assert.equal(parseProfile(text(hf, "32768"), "t.json", checks).methods.length, 2);
  assert.throws(() => parseProfile(text(hf, "100000"), "t.json", checks), {
    message: 't.json:11: $.methods[1].config.reduction: adapter config field "reduction" must ' +
      "be an integer from 1 to 32768, got 100000",
  });
  // No other field of a built-in method depends on the model's sizes.
  assert.equal(
    checks.methodModelProblem?.(
      "hyperprompt_global",
      { length: 999, bottleneck: 999 },
      "tiny-v1_1",
    ),
    undefined,
  );
});

Deno.test("parseProfile() errors name file, line and path; method configs are checked", async () => {
  const checks = await defaultChecksAsync();
  const base = (methods: string) =>
    `{\n  "name": "t",\n  "models": ["tiny-v1_1"],\n  "benchmarks": ["glue"],\n  "methods": ${methods}\n}`;
  assert.throws(
    () => parseProfile(base('[\n    { "name": "lora" }\n  ]'), "t.json", checks),
    /^SpecError: t\.json:6: \$\.methods\[0\]\.name must be one of/,
  );
  assert.throws(
    () =>
      parseProfile(
        base('[\n    { "name": "prompt_tuning", "config": { "lenght": 3 } }\n  ]'),
        "t.json",
        checks,
      ),
    (e: unknown) =>
      e instanceof Error && /t\.json:6: \$\.methods\[0\]\.config/.test(e.message) &&
      /lenght/.test(e.message),
  );
  // A field of a method's config is named at its own line, not at the config object's.
  const multiLine = base(
    '[\n    {\n      "name": "adapter",\n      "config": {\n        "reduction": 4,\n' +
      '        "freezeBackbone": "yes"\n      }\n    },\n' +
      '    { "name": "mtl_prompt", "config": {\n      "lenght": 3 } }\n  ]',
  );
  // Both entries' errors, one per line (a config error used to hide every later one).
  assert.throws(() => parseProfile(multiLine, "t.json", checks), {
    name: "SpecError",
    message: "t.json:10: $.methods[0].config.freezeBackbone: adapter config field " +
      '"freezeBackbone" must be false, true, "all" or "except_layer_norms", got "yes"\n' +
      't.json:14: $.methods[1].config.lenght: unknown mtl_prompt config field "lenght"' +
      " (did you mean length?); known fields: length, init, uniformScale, vocabSampleSize, " +
      "freezeBackbone, keepTaskPrefix",
  });
  assert.throws(
    () => parseProfile(multiLine.replace('"yes"', '"all"'), "t.json", checks),
    /^SpecError: t\.json:14: \$\.methods\[1\]\.config\.lenght: unknown mtl_prompt config field "lenght"/,
  );
  // ...and those of the profile's other parts: the config error is one of several.
  const several = multiLine.replace('"name": "t"', '"name": "t", "seeds": []').replace(
    '"models": ["tiny-v1_1"]',
    '"models": ["tiny"]',
  );
  assert.throws(() => parseProfile(several, "t.json", checks), (e: unknown) => {
    assert.ok(e instanceof SpecError, String(e));
    assert.deepEqual(
      [e, ...e.others].map((x) => x.path),
      [
        "$.seeds",
        "$.models[0]",
        "$.methods[0].config.freezeBackbone",
        "$.methods[1].config.lenght",
      ],
    );
    return true;
  });
  // An absurd size is refused at its line (it used to load, and its run crashed allocating).
  assert.throws(
    () => parseProfile(multiLine.replace('"reduction": 4', '"reduction": 1e9'), "t.json", checks),
    {
      message: new RegExp(
        '^t\\.json:9: \\$\\.methods\\[0\\]\\.config\\.reduction: adapter config field "reduction" ' +
          "must be an integer from 1 to 32768, got 1000000000\\nt\\.json:14: .*lenght",
      ),
    },
  );
  assert.throws(
    () => parseProfile("{ nope", "t.json", checks),
    /^Error: t\.json:1:3: invalid JSON: Expected property name or '}'$/,
  );
  // A trailing comma in an array: V8 names no position (and quotes the text); the line is found.
  assert.throws(
    () => parseProfile('{\n  "name": "t",\n  "seeds": [0, 1,]\n}\n', "t.json", checks),
    { message: `t.json:3:18: invalid JSON: Unexpected token ']'${NO_COMMENTS}` },
  );
  // A byte-order mark (some editors write one) is not an error.
  assert.throws(
    () => parseProfile("\ufeff" + base("[]"), "t.json", checks),
    /t\.json:\d+: \$\.methods must not be empty/,
  );
  const dir = await Deno.makeTempDir();
  const file = join(dir, "bad.json");
  await Deno.writeTextFile(file, base('[{ "name": "mtl" }]').replace('"tiny-v1_1"', '"t5-huge"'));
  await assert.rejects(
    () => loadProfile(file, checks),
    /bad\.json:3: \$\.models\[0\] names unknown preset "t5-huge"/,
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a tolerance key of a task no run evaluates (AX, AX-b, AX-g: test only) is a profile error", () => {
  const checks = defaultChecks();
  const text = (key: string) =>
    `{\n  "name": "t",\n  "models": ["tiny-v1_1"],\n  "benchmarks": ["glue", "super_glue"],\n` +
    `  "methods": [{ "name": "mtl" }],\n  "tolerances": {\n    "default": 0.5,\n` +
    `    "metrics": { "${key}": 1 }\n  }\n}\n`;
  // A profile can list only tasks with train and validation files, so these keys would be
  // silently unused.
  for (
    const key of ["ax/matthews_corrcoef", "axb/matthews_corrcoef", "axg/accuracy", "gender_parity"]
  ) {
    assert.throws(
      () => parseProfile(text(key), "t.json", checks),
      (e: unknown) =>
        e instanceof Error &&
        e.message.startsWith(`t.json:8: $.tolerances.metrics.${key} names `),
      key,
    );
  }
  // The metrics of the listable tasks (WNLI too: a profile may list it), with or without a task,
  // still load.
  for (
    const key of [
      "matthews_corrcoef",
      "rte_sg/accuracy",
      "cola/matthews_corrcoef",
      "em",
      "wnli/accuracy",
    ]
  ) {
    assert.equal(parseProfile(text(key), "t.json", checks).tolerances.metrics[key], 1, key);
  }
});

Deno.test("an error about a value the profile does not write names its nearest line", async () => {
  const checks = await defaultChecksAsync();
  // The second entry's label defaults to its name, which repeats the first's: no
  // `$.methods[1].label` in the text, so the line is that of `$.methods[1]`.
  const text = '{\n  "name": "t",\n  "models": ["tiny-v1_1"],\n  "benchmarks": ["glue"],\n' +
    '  "methods": [\n    { "name": "mtl" },\n    { "name": "mtl" }\n  ]\n}';
  assert.throws(
    () => parseProfile(text, "t.json", checks),
    {
      message:
        't.json:7: $.methods[1].label repeats label "mtl"; give each method entry a unique label',
    },
  );
  // A written value keeps its own line.
  const labelled = text.replace(
    '{ "name": "mtl" }\n  ]',
    '{ "name": "adapter",\n      "label": "mtl" }\n  ]',
  );
  assert.throws(
    () => parseProfile(labelled, "t.json", checks),
    /^SpecError: t\.json:8: \$\.methods\[1\]\.label repeats label "mtl"/,
  );
});

Deno.test("an {hf} model or backbone that is neither a folder nor a hub id is a profile error", async () => {
  const checks = await defaultChecksAsync();
  const dir = await Deno.makeTempDir();
  try {
    const text = (model: string, backbone: string) =>
      `{\n  "name": "t",\n  "models": [${model}],\n  "backbone": ${backbone},\n` +
      `  "benchmarks": ["glue"],\n  "methods": [{ "name": "mtl" }]\n}`;
    const missing = join(dir, "no-such-t5");
    assert.throws(
      () => parseProfile(text(`{ "hf": "${missing}" }`, '"random"'), "t.json", checks),
      {
        message:
          `t.json:3: $.models[0].hf names neither a folder (there is none at "${missing}") ` +
          `nor a hub id ("name" or "org/name")`,
      },
    );
    assert.throws(
      () => parseProfile(text('"tiny-v1_1"', '["random", { "hf": "a/b/c" }]'), "t.json", checks),
      /^SpecError: t\.json:4: \$\.backbone\[1\]\.hf names neither a folder .*"a\/b\/c"/,
    );
    // A file is named as such, not as missing.
    const file = join(dir, "config.json");
    await Deno.writeTextFile(file, "{}");
    assert.throws(
      () => parseProfile(text(`{ "hf": "${file}" }`, '"random"'), "t.json", checks),
      {
        message: `t.json:3: $.models[0].hf names a file, not a model folder (one holding ` +
          "config.json and the weights, as save_pretrained writes it)",
      },
    );
    // A relative path is read from the current folder (the repository root under deno task):
    // said, and where the shell's folder (INIT_CWD) has it, that absolute path.
    await Deno.mkdir(join(dir, "t5"));
    await withEnv({ INIT_CWD: dir }, () => {
      assert.throws(
        () => parseProfile(text('{ "hf": "t5-folder-x/../t5" }', '"random"'), "t.json", checks),
        {
          message: `t.json:3: $.models[0].hf names neither a folder (there is none at ` +
            `"t5-folder-x/../t5"; relative paths are read from ${Deno.cwd()}: there is one at ` +
            `${join(dir, "t5")}, give that absolute path) nor a hub id ("name" or "org/name")`,
        },
      );
      return Promise.resolve();
    });
    // A folder, or a hub id (fetched when a run needs it), is fine.
    const ok = parseProfile(
      text(`{ "hf": "${dir}" }`, '{ "hf": "google/t5-v1_1-small" }'),
      "t.json",
      checks,
    );
    assert.deepEqual(ok.models, [{ hf: dir }]);
    assert.deepEqual(ok.backbones, [{ hf: "google/t5-v1_1-small" }]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("smoke compares pretrained with random backbones for every method; ci is pretrained", async () => {
  const smoke = await loadProfile("smoke");
  assert.deepEqual(smoke.backbones, ["pretrained", "random"]);
  assert.equal(smoke.models.length, 1);
  assert.equal(smoke.models[0], "mini-v1_1");
  // smoke (no baseline) runs every registered method, so a new one is tried on the CPU default.
  const inSmoke = smoke.methods.map((m) => m.name);
  assert.deepEqual(
    METHOD_NAMES.filter((n) => !inSmoke.includes(n)),
    [],
    "add these methods (model/methods/mod.ts METHODS) to benchmarks/profiles/smoke.json",
  );
  const ci = await loadProfile("ci");
  assert.deepEqual(ci.backbones, ["pretrained"]);
  assert.equal(ci.backend, "cpu");
  assert.ok(ci.pretrain?.steps !== undefined, "ci pretrains briefly (pretrain.steps)");
  // ci is the regression gate: it covers the built-in methods; a new method joins it only with
  // a regenerated baseline (results/baselines/ci, benchmarks/README.md), which
  // baseline_test checks against ci's grid.
  const inCi = ci.methods.map((m) => m.name);
  assert.deepEqual(BUILTIN_METHOD_NAMES.filter((n) => !inCi.includes(n)), []);
});

/** The grid of a built-in profile as if every task's files were present. */
async function fullGrid(name: string): Promise<RunSpec[]> {
  return expandGrid(await loadProfile(name), {
    dataDir: "unused",
    catalog: { benchmarkTasks: (b) => BENCHMARK_TASKS[b], isAvailable: () => true },
  });
}

/** The profiles that regenerate the paper's tables (main table and ablations). */
const PAPER_PROFILES = () =>
  listProfiles().filter((n) => n.startsWith("paper-") || n.startsWith("ablation"));

Deno.test("every run of the paper profiles trains with the spec's settings (§3.3, §3.4, A7, A9, A10, A15)", async () => {
  const names = PAPER_PROFILES();
  assert.ok(names.length >= 4, names.join(", "));
  for (const name of names) {
    for (const s of await fullGrid(name)) {
      const at = `${name} ${s.benchmark} ${s.method.label}`;
      const t = s.train;
      // A7: the T5 1.1 checkpoints, the backbone of the model's own size (a folder's config
      // replaces the preset's, so another size would train silently under this label).
      assert.ok(typeof s.model === "string" && s.model.startsWith("t5-v1_1-"), at);
      assert.deepEqual(s.backbone, { hf: `google/${s.model}` }, at);
      const pt = s.method.name === "prompt_tuning";
      if (pt) {
        // A15: Prompt-Tuning is trained per task: one single-task run per task of the benchmark.
        assert.deepEqual(s.perTaskOf, BENCHMARK_TASKS[s.benchmark], at);
        assert.equal(s.tasks.length, 1, at);
        assert.ok(BENCHMARK_TASKS[s.benchmark].includes(s.tasks[0]!), at);
      } else {
        assert.deepEqual(s.tasks, BENCHMARK_TASKS[s.benchmark], at);
        assert.equal(s.perTaskOf, undefined, at);
      }
      // A10 / §3.3: T5 fine-tuning defaults, Mesh TF's Adafactor (the paper used Mesh TF, S3);
      // A15: Prompt-Tuning with Lester et al.'s 30,000 steps of batch 32.
      assert.equal(t.optimizer, "adafactor", at);
      assert.deepEqual(t.schedule, { kind: "constant", warmupSteps: 0 }, at);
      assert.equal(t.batchSize, pt ? 32 : 128, at);
      assert.equal(t.steps, pt ? 30000 : 20000, at);
      assert.equal(t.maxInputLength, 512, at);
      assert.equal(t.maxTargetLength, s.benchmark === "glue" ? 84 : 62, at);
      assert.equal(t.dropout, 0.1, at);
      assert.equal(t.labelSmoothing, 0, at);
      assert.equal(t.clipNorm, null, at);
      assert.equal(t.weightDecay, 0, at);
      assert.equal(t.mixture, "proportional", at); // A9
      // §3.4: a checkpoint and an evaluation every 2000 steps, on the whole validation split.
      assert.equal(t.evalEvery, 2000, at);
      assert.equal(t.checkpointEvery, 2000, at);
      assert.equal(t.evalMaxExamples, null, at);
      if (s.method.name === "prompt_tuning") {
        // A15 / §2.4 (S7): constant 0.3, Adafactor without the parameter scale and with T5X's
        // weight decay rate 1e-5 (not multiplied by the lr), z-loss 1e-4, no label smoothing;
        // length 100, class-label init, frozen backbone.
        assert.equal(t.learningRate, 0.3, at);
        assert.deepEqual(t.adafactor, {
          multiplyByParameterScale: false,
          minDimSizeToFactor: 128,
          weightDecayRate: 1e-5,
        });
        assert.equal(t.zLoss, 1e-4, at);
        assert.equal(s.method.config.length, 100, at);
        assert.equal(s.method.config.init, "class_label", at);
        assert.equal(s.method.config.freezeBackbone, "all", at);
      } else {
        assert.equal(t.learningRate, 1e-3, at);
        assert.deepEqual(t.adafactor, { multiplyByParameterScale: true, minDimSizeToFactor: 128 });
        // Mesh TF's default z-loss (its Unitransformer's z_loss = 1e-4, which T5's operative
        // configs show), as the T5 library fine-tuned with it; no Adafactor weight decay.
        assert.equal(t.zLoss, 1e-4, at);
      }
    }
  }
});

/** `model|label|method|benchmark` of each run of the named profiles, with its seed count. */
async function cells(names: readonly string[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const name of names) {
    for (const s of await fullGrid(name)) {
      const k = `${s.model}|${s.method.label}|${s.method.name}|${s.benchmark}`;
      out.set(k, (out.get(k) ?? 0) + 1);
    }
  }
  return out;
}

Deno.test("the paper-* profiles run exactly the main table's cells (§4.1: Base, Large, XL, XXL)", async () => {
  // The rows of the main table, as the paper reference table lists them (spec §4.1: every method
  // at T5 Base, Large, XL and XXL), each on GLUE and SuperGLUE.
  const rows = readPaperTable().filter((r) => r.source.includes("§4.1"));
  assert.equal(rows.length, 4 * 5);
  const want = rows.flatMap((r) =>
    BENCHMARKS.map((b) => `${r.model}|${r.method}|${r.method_name}|${b}`)
  ).sort();
  const got = await cells(listProfiles().filter((n) => n.startsWith("paper-")));
  assert.deepEqual([...got.keys()].sort(), want);
  // The same seeds for every cell (3: mean ± std, spec §3.4); Prompt-Tuning's cells are 8 task
  // runs per seed (A15: trained per task).
  for (const [k, n] of got) assert.equal(n, k.includes("|prompt_tuning|") ? 3 * 8 : 3, k);
});

Deno.test("the ablation* profiles run §4.5's rows at Base and Large and §4.3's frozen rows", async () => {
  const got = await cells(listProfiles().filter((n) => n.startsWith("ablation")));
  const rows: [string, MethodName][] = [
    ["MTL", "mtl"],
    ["MTL-Prompt", "mtl_prompt"],
    ["HyperFormer++", "hyperformer_pp"],
    ["HyperPrompt-Share", "hyperprompt_share"],
    ["HyperPrompt-Sep", "hyperprompt_sep"],
    ["HyperPrompt-Global", "hyperprompt_global"],
  ];
  const frozen: [string, MethodName][] = [
    ["HyperFormer++ (frozen)", "hyperformer_pp"],
    ["HyperPrompt-Global (frozen)", "hyperprompt_global"],
  ];
  for (const b of BENCHMARKS) {
    // §4.5: two tables, T5 Base and T5 Large.
    for (const model of ["t5-v1_1-base", "t5-v1_1-large"]) {
      for (const [label, name] of rows) {
        assert.ok(got.has(`${model}|${label}|${name}|${b}`), `${model} ${label} ${b}`);
      }
    }
    // §4.3: task-conditioned parameters only (size [R] Base and/or Large: Base here).
    for (const [label, name] of frozen) {
      assert.ok(got.has(`t5-v1_1-base|${label}|${name}|${b}`), `${label} ${b}`);
    }
  }
  // The frozen rows train no backbone weight; the §4.5 rows train all of them (spec §1.7, A16).
  for (const name of listProfiles().filter((n) => n.startsWith("ablation"))) {
    for (const m of (await loadProfile(name)).methods) {
      const isFrozen = frozen.some(([label]) => label === m.label);
      assert.equal(m.config.freezeBackbone, isFrozen ? "all" : false, `${name} ${m.label}`);
    }
  }
});

Deno.test("the paper profiles train DPR in their SuperGLUE mixtures as T5 did (A19); ci and smoke do not", async () => {
  const names = PAPER_PROFILES();
  assert.ok(names.length >= 4, names.join(", "));
  for (const name of names) {
    assert.deepEqual((await loadProfile(name)).extraTrainTasks, { super_glue: ["dpr"] }, name);
    const grid = await fullGrid(name);
    // Both benchmarks' runs, so that the checks below see a SuperGLUE mixture and a GLUE run.
    assert.deepEqual([...new Set(grid.map((s) => s.benchmark))].sort(), ["glue", "super_glue"]);
    for (const s of grid) {
      const at = `${name} ${s.benchmark} ${s.method.label}${s.perTaskOf ? `[${s.tasks[0]}]` : ""}`;
      // Multi-task SuperGLUE runs: the 8 evaluated tasks, then DPR; per-task runs train one task.
      const want = s.benchmark === "super_glue" && s.perTaskOf === undefined ? ["dpr"] : undefined;
      assert.deepEqual(s.trainOnlyTasks, want, at);
    }
  }
  // Their data is the offline mirror (no DPR) and ci's committed baseline must keep its ids.
  for (const name of ["ci", "smoke"]) {
    const p = await loadProfile(name);
    assert.equal(p.extraTrainTasks, undefined, name);
    assert.ok((await fullGrid(name)).every((s) => !("trainOnlyTasks" in s)), name);
  }
});

Deno.test("parseProfile(): extraTrainTasks errors name the file, line and path", async () => {
  const checks = await defaultChecksAsync();
  const p = (extra: string) =>
    parseProfile(
      `{\n  "name": "t",\n  "models": ["tiny-v1_1"],\n  "benchmarks": ["super_glue"],\n` +
        `  "methods": [{ "name": "mtl" }],\n  "extraTrainTasks": ${extra}\n}`,
      "t.json",
      checks,
    );
  assert.deepEqual(p('{ "super_glue": ["super_glue/DPR"] }').extraTrainTasks, {
    super_glue: ["dpr"],
  });
  assert.throws(
    () => p('{ "super_glue": ["wsc"] }'),
    /^SpecError: t\.json:6: \$\.extraTrainTasks\.super_glue\[0\] "wsc" is not a train-only super_glue task \(known: dpr\); an evaluated task goes under \$\.tasks$/,
  );
  assert.throws(
    () => p('{ "glue": ["dpr"] }'),
    /t\.json:6: \$\.extraTrainTasks\.glue\[0\] "dpr" is a super_glue task; list it under \$\.extraTrainTasks\.super_glue/,
  );
  assert.throws(
    () => p('{ "super_glue": ["dpr", "dpr_v001_simple"] }'),
    /\$\.extraTrainTasks\.super_glue\[1\] repeats task "dpr" \(already \$\.extraTrainTasks\.super_glue\[0\]\)/,
  );
  assert.throws(() => p('{ "superglue": ["dpr"] }'), /\$\.extraTrainTasks/);
  assert.throws(() => p('["dpr"]'), /t\.json:6: \$\.extraTrainTasks must be/);
});
