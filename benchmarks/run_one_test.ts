import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { existsSync } from "node:fs";
import { createHash } from "node:crypto";
import { basename, dirname, join, resolve } from "node:path";
import { pathExists } from "../model/fs.ts";
import { hubEnv, withEnv } from "../model/env_testing.ts";
import { inTempDir } from "../model/fs_testing.ts";
import { sharedPath } from "../model/shared_dir.ts";
import {
  DEFAULT_TRAIN,
  runFileName,
  runId,
  type RunProgress,
  type RunResult,
  type RunSpec,
  trainedTasks,
  validateRunResult,
} from "./spec.ts";
import { loadExamples } from "../tasks/mod.ts";
import { estimateRun } from "./cli.ts";
import { listCheckpoints } from "./checkpointing.ts";
import { clearStopRequest, requestStop, TrainingInterruptedError } from "./trainer.ts";
import { ClaimLostError } from "./run_claim.ts";
import {
  backboneTokenizerFiles,
  backendSayer,
  buildBackbone,
  CONVERTED_TOKENIZER,
  dataFiles,
  defaultTokenizer,
  labelsCut,
  measuresAttentionMass,
  runInputs,
  runOne,
  runOneWith,
  type RunScorer,
  saveFinalWeights,
  TestPredictionWriter,
  unreachableLabels,
} from "./run_one.ts";
import { T5_UNK_SURFACE, T5Tokenizer } from "../model/tokenizer.ts";
import { BENCHMARK_TASKS } from "../tasks/registry.ts";
import { methodAccounting } from "../model/methods/accounting.ts";
import { preset, type T5Config } from "../model/config.ts";
import { disposeT5, initT5, t5StateDict } from "../model/t5.ts";
import { CheckpointError, fileDigest, saveHfFolder } from "../model/checkpoint.ts";
import { checkpointFiles } from "../model/pretrained.ts";
import { selectBackend } from "../model/backend.ts";
import { codeGitState, type RunProvenance } from "./provenance.ts";
import { gpuTest } from "../model/webgpu/testing.ts";
import { bytesRead, headerBytes } from "../model/read_meter_testing.ts";
import { serveHub } from "../model/hub_testing.ts";
import { HAS_SPM, trainTinySpiece } from "../model/spm_testing.ts";
import {
  adapter,
  hyperformerPP,
  hyperpromptGlobal,
  type MethodName,
  METHODS,
  mtl,
  promptTuning,
} from "../model/methods/mod.ts";
import type { Method, MethodContext, MethodInstance } from "../model/method.ts";
import { VarStore } from "../model/methods/_init.ts";

/** Exact-match accuracy: independent of tasks/metrics.ts, for the resume test. */
const EXACT: RunScorer = {
  scoreTask: (_t, exs, preds) => ({
    accuracy: (100 * preds.filter((p, i) => p === exs[i]!.target).length) / preds.length,
  }),
  groupScore: (_t, m) => m.accuracy!,
  benchmarkAverage: () => NaN,
};

const DATA = sharedPath("data");
const HAVE = existsSync(sharedPath("data/super_glue/CB/train.jsonl")) &&
  existsSync(sharedPath("data/super_glue/RTE/train.jsonl"));

function spec(method: RunSpec["method"], steps = 12): RunSpec {
  const s: Omit<RunSpec, "id"> = {
    profile: "test",
    model: "tiny-v1_1",
    backbone: "random",
    benchmark: "super_glue",
    tasks: ["cb", "rte_sg"],
    method,
    seed: 1,
    // wasm (with the project's kernel patches) is ~10x faster than cpu here; the numbers are
    // compared only within one backend.
    backend: "wasm",
    train: {
      ...DEFAULT_TRAIN,
      learningRate: 1e-2,
      steps,
      batchSize: 8,
      maxInputLength: 48,
      maxTargetLength: 6,
      evalEvery: 6,
      checkpointEvery: 4,
      evalMaxExamples: 8,
    },
  };
  return { ...s, id: runId(s) };
}

Deno.test({
  name: "runOne() trains mtl on CB + RTE end to end: result structure, falling loss, no leak",
  ignore: !HAVE,
  fn: async () => {
    await tf.ready();
    const before = tf.memory().numTensors;
    await inTempDir(async (out) => {
      const s = spec({ name: "mtl", label: "mtl", config: {} });
      const phases: string[] = [];
      const r = await runOne(s, {
        outDir: out,
        dataDir: DATA,
        onProgress: (p) => phases.push(p.phase),
        // A checkpoint after every step as well as every 4th (reaches train()): the newest two.
        checkpointMinutes: 1e-9,
      });
      assert.deepEqual(await listCheckpoints(`${out}/checkpoints`), [11, 12]);
      validateRunResult(JSON.parse(JSON.stringify(r)), { file: "runOne()" });
      assert.equal(r.spec, s);
      assert.deepEqual(r.losses.map((l) => l.step), Array.from({ length: 12 }, (_, i) => i + 1));
      const first = (r.losses[0]!.loss + r.losses[1]!.loss) / 2;
      const last = (r.losses[10]!.loss + r.losses[11]!.loss) / 2;
      // Random init starts near ln(4096) = 8.3; 12 steps must learn the label-word distribution.
      assert.ok(last < first - 1, `loss ${first} -> ${last}`);
      assert.deepEqual(r.evals.map((e) => `${e.step}/${e.task}`), [
        "6/cb",
        "6/rte_sg",
        "12/cb",
        "12/rte_sg",
      ]);
      for (const e of r.evals) {
        assert.ok(e.groupScore >= 0 && e.groupScore <= 100, JSON.stringify(e));
        // Its invalid predictions counted, of the evaluated examples (evalMaxExamples 8).
        assert.ok(
          e.invalid !== undefined && e.invalid.of === 8 && e.invalid.count >= 0 &&
            e.invalid.count <= 8,
          JSON.stringify(e),
        );
      }
      // Each step's loss records the rate its update used (constant here).
      assert.ok(r.losses.every((l) => l.lr === s.train.learningRate), JSON.stringify(r.losses));
      assert.ok("f1" in r.evals[0]!.metrics || Object.keys(r.evals[0]!.metrics).length === 2);
      assert.deepEqual(Object.keys(r.best).sort(), ["cb", "rte_sg"]);
      const mean = (r.best.cb!.groupScore + r.best.rte_sg!.groupScore) / 2;
      assert.ok(Math.abs(r.averages.super_glue! - mean) < 1e-9, "partial benchmark: plain mean");
      assert.equal(r.params.extra, 0);
      assert.equal(r.params.trained, r.params.total);
      assert.ok(r.flops.trainPerExample > r.flops.inferencePerExample);
      assert.ok(r.tokensPerSecond > 0 && r.wallSeconds > 0);
      // The rate's two totals are recorded (per-task rows add them up): tokens over seconds.
      assert.ok(Number.isInteger(r.trainTokens) && r.trainTokens! > 0, `${r.trainTokens}`);
      assert.ok(r.trainSeconds! > 0 && r.trainSeconds! < r.wallSeconds, `${r.trainSeconds}`);
      assert.equal(r.tokensPerSecond, r.trainTokens! / r.trainSeconds!);
      assert.equal(r.backboneSource, "random(seed=1)");
      const ck = (r.provenance as RunProvenance).checkpoint;
      assert.equal(ck, undefined, "a preset's random init reads no checkpoint folder");
      // The task-corpus tokenizer (shared with the pretrained backbone) or, without spm_train,
      // the fixture one; either way the run records which.
      assert.match(r.tokenizer ?? "", /^(task-spm|fixture):.*tokenizer\.json$/);
      // And that file's size and sha256 (a vocabulary retrained in place keeps its path).
      assert.deepEqual(
        (r.provenance as RunProvenance).tokenizerFile,
        await fileDigest(r.tokenizer!.slice(r.tokenizer!.indexOf(":") + 1)),
      );
      assert.equal(r.attentionMass, undefined, "mtl has no prompt slots");
      assert.equal(r.provenance.backend.tfBackend, "wasm");
      // The code this process loaded, not the tree's state at the run (which others may change).
      assert.deepEqual(
        { sha: r.provenance.gitSha, dirty: r.provenance.gitDirty },
        codeGitState(),
      );
      // Where the data came from: the offline mirror, each file read with its listed digest.
      const prov = r.provenance as RunProvenance;
      assert.equal(prov.data?.kind, "mirror");
      assert.equal(prov.data?.dir, await Deno.realPath(DATA));
      assert.deepEqual(Object.keys(prov.data?.files ?? {}), [
        "super_glue/CB/train.jsonl",
        "super_glue/CB/val.jsonl",
        "super_glue/RTE/train.jsonl",
        "super_glue/RTE/val.jsonl",
      ]);
      for (const f of Object.values(prov.data!.files)) {
        assert.match(f.sha256 ?? "", /^[0-9a-f]{64}$/);
      }
      assert.equal(prov.resumedFrom, undefined, "trained from step 0");
      assert.ok(phases.includes("eval") && phases.filter((p) => p === "train").length === 12);
      assert.equal(tf.memory().numTensors, before, "runOne releases every tensor");
    });
  },
});

Deno.test({
  name:
    "runOne() measures the attention mass for a method with self-attention prefixes, by its flopPlan, not its name",
  ignore: !HAVE,
  fn: async () => {
    // Registered for this test only: HyperPrompt-Global's hooks under a name that does not start
    // with "hyperprompt" (prefixes declared in its flopPlan), and MTL's under one that does (no
    // prefix). Before, the name decided: the first got no mass, the second one of zeros.
    await tf.ready();
    const before = tf.memory().numTensors;
    const registry = METHODS as unknown as Record<string, Method<unknown>>;
    const prefixed = { ...hyperpromptGlobal, name: "run_one_test_prefix" } as Method<unknown>;
    const plain = { ...mtl, name: "hyperprompt_run_one_test_none" } as Method<unknown>;
    registry[prefixed.name] = prefixed;
    registry[plain.name] = plain;
    const out = await Deno.makeTempDir();
    try {
      const run = (name: string) =>
        runOneWith(
          // (a name outside MethodName, as a registered method's: see memory_test's)
          spec({ name: name as MethodName, label: name, config: {} }, 6),
          { outDir: join(out, name), dataDir: DATA },
          EXACT,
        );
      const a = await run(prefixed.name);
      assert.deepEqual(Object.keys(a.attentionMass ?? {}).sort(), ["cb", "rte_sg"]);
      for (const m of Object.values(a.attentionMass!)) {
        assert.equal(m.encoder.length, 2);
        assert.equal(m.decoder.length, 2);
        for (const x of [...m.encoder, ...m.decoder]) assert.ok(x > 0 && x <= 1, String(x));
      }
      const b = await run(plain.name);
      assert.equal(b.attentionMass, undefined, "no self-attention prefix, no attention mass");
      assert.equal(tf.memory().numTensors, before, "runOne releases every tensor");
    } finally {
      delete registry[prefixed.name];
      delete registry[plain.name];
      await Deno.remove(out, { recursive: true });
    }
  },
});

Deno.test("backendSayer(): the backend summary's first line, once, and again when it changes", () => {
  const lines: string[] = [];
  const say = backendSayer((l) => lines.push(l));
  const wasm = 'backend: wasm+blas (tfjs "wasm", 2 threads, OpenBLAS)\n  backprop: low-memory';
  say(wasm);
  say(wasm);
  say('backend: cpu (tfjs "cpu", 1 thread)');
  say(wasm);
  assert.deepEqual(lines, [
    'backend: wasm+blas (tfjs "wasm", 2 threads, OpenBLAS)',
    'backend: cpu (tfjs "cpu", 1 thread)',
    'backend: wasm+blas (tfjs "wasm", 2 threads, OpenBLAS)',
  ]);
  // Pure wasm because OpenBLAS could not be opened: why, on screen too (about 7× slower).
  const pure = 'backend: wasm (tfjs "wasm", 2 threads)\n  BLAS skipped: cannot open OpenBLAS ' +
    "(x); matmuls use the pure-wasm path (~7x slower)\n  backprop: low-memory";
  say(pure);
  say(pure);
  assert.deepEqual(lines.slice(3), [
    'backend: wasm (tfjs "wasm", 2 threads)\n  BLAS skipped: cannot open OpenBLAS (x); matmuls ' +
    "use the pure-wasm path (~7x slower)",
  ]);
});

Deno.test("labelsCut(): a label longer than maxTargetLength (EOS included) is named with the length that fits; none when all fit", () => {
  // Lengths by word, as a tokenizer would give them with EOS.
  const n: Record<string, number> = {
    entailment: 3,
    not_entailment: 6,
    acceptable: 4,
    unacceptable: 5,
  };
  const tokens = (w: string) => n[w]!;
  assert.equal(labelsCut({ id: "r" }, 6, ["rte", "cola"], tokens), undefined);
  assert.equal(
    labelsCut({ id: "r" }, 4, ["rte", "cola"], tokens),
    'run r: train.maxTargetLength 4 is shorter than 2 label(s) (rte "not_entailment": 6 tokens ' +
      'with EOS, cola "unacceptable": 5 tokens with EOS): those targets are cut and no ' +
      "prediction can match them; 6 fits every label",
  );
});

Deno.test("unreachableLabels(): a label word the tokenizer cannot spell (decoded otherwise, or with another word's tokens) is named; none with the reference vocabulary", async () => {
  // A fake tokenizer: cola's words fine; rte's "not_entailment" lost to <unk> and sharing the
  // tokens of "entailment".
  const vocab: Record<string, number[]> = {
    acceptable: [7, 8, 1],
    unacceptable: [9, 7, 8, 1],
    entailment: [3, 4, 1],
    not_entailment: [3, 4, 1],
  };
  const text: Record<string, string> = {
    "7,8": "acceptable",
    "9,7,8": "unacceptable",
    "3,4": "entailment",
  };
  const encode = (w: string) => vocab[w]!;
  const decode = (ids: number[]) => text[ids.join(",")]!;
  assert.equal(unreachableLabels({ id: "r" }, ["cola"], encode, 1, decode), undefined);
  assert.equal(
    unreachableLabels({ id: "r" }, ["cola", "rte"], encode, 1, decode),
    'run r: the task tokenizer cannot spell 1 label word(s) (rte "not_entailment" decodes as ' +
      '"entailment"): no prediction can match them, so those classes are never scored right',
  );
  // The reference vocabulary (the fallback task tokenizer) spells every registered label word.
  const tok = await T5Tokenizer.fromFile(
    sharedPath("fixtures", "tokenizer", "unigram-glue-4k", "tokenizer.json"),
  );
  const all = [...BENCHMARK_TASKS.glue, ...BENCHMARK_TASKS.super_glue];
  assert.equal(
    unreachableLabels(
      { id: "r" },
      all,
      (w) => tok.encode(w),
      1,
      (ids) => tok.decode(ids, { skipSpecialTokens: true, unknownAs: T5_UNK_SURFACE }),
    ),
    undefined,
  );
  // An emoji is outside it: <unk>, decoded as " ⁇ ".
  const emoji = tok.encode("\u{1F600}");
  assert.match(tok.decode(emoji.slice(0, -1), { unknownAs: T5_UNK_SURFACE }), /\u2047/);
});

Deno.test("measuresAttentionMass: a self-attention prefix of at least one slot in one stack", () => {
  assert.equal(
    measuresAttentionMass(
      hyperpromptGlobal.flopPlan(preset("tiny-v1_1"), hyperpromptGlobal.defaults),
    ),
    true,
  );
  for (const m of [mtl, promptTuning, adapter, hyperformerPP] as Method<unknown>[]) {
    assert.equal(measuresAttentionMass(m.flopPlan(preset("tiny-v1_1"), m.defaults)), false, m.name);
  }
  const plan = (length: number, stacks: ("encoder" | "decoder")[]) => ({
    freezeBackbone: false as const,
    selfAttentionPrefix: { length, stacks },
  });
  assert.equal(measuresAttentionMass(plan(1, ["decoder"])), true);
  assert.equal(measuresAttentionMass(plan(0, ["encoder"])), false);
  assert.equal(measuresAttentionMass(plan(4, [])), false);
});

Deno.test({
  name: "runOne() killed mid-run resumes to the uninterrupted result (hyperprompt_global)",
  ignore: !HAVE,
  fn: async () => {
    await tf.ready();
    const tensorsBefore = tf.memory().numTensors;
    const s = spec({ name: "hyperprompt_global", label: "hp", config: {} }, 8);
    await inTempDir(async (root) => {
      const outA = await Deno.makeTempDir({ dir: root });
      const a = await runOneWith(s, { outDir: outA, dataDir: DATA }, EXACT);
      assert.ok(a.params.extra > 0);
      // Hyper-prompt attention mass: per task, one value in [0, 1] per block of each stack.
      assert.deepEqual(Object.keys(a.attentionMass ?? {}).sort(), ["cb", "rte_sg"]);
      for (const m of Object.values(a.attentionMass!)) {
        assert.equal(m.encoder.length, 2);
        assert.equal(m.decoder.length, 2);
        for (const x of [...m.encoder, ...m.decoder]) assert.ok(x > 0 && x <= 1, String(x));
      }
      const outB = await Deno.makeTempDir({ dir: root });
      const killedAt = performance.now();
      await assert.rejects(
        () =>
          runOneWith(s, {
            outDir: outB,
            dataDir: DATA,
            onProgress: (p) => {
              if (p.phase === "train" && p.step === 7) throw new Error("killed");
            },
          }, EXACT),
        /killed/,
      );
      const firstMs = performance.now() - killedAt;
      assert.equal(tf.memory().numTensors, tensorsBefore, "a failed run releases every tensor");
      // The checkpoint the resume starts from carries the tokens and training time of steps 1-4,
      // and the first session's wall time up to it (its steps, setup and evaluation: more than
      // their training time, less than the whole killed session); 1000 hours are added to both
      // times, so that a result counting them is told from one that counts only the resumed
      // session (whose steps take about as long as steps 1-4).
      const statePath = `${outB}/checkpoints/step-00000004/state.json`;
      const before = JSON.parse(await Deno.readTextFile(statePath)) as Record<string, number>;
      assert.ok(before.trainMs! > 0 && before.tokens! > 0);
      assert.ok(
        before.wallMs! > before.trainMs! && before.wallMs! < firstMs,
        `wallMs ${before.wallMs}: not within trainMs ${before.trainMs} and the session's ${firstMs}`,
      );
      // The same run over other data (one label of RTE's train file changed) refuses the
      // checkpoint, naming the file: before, it resumed, training steps 5-8 on the new file.
      const edited = join(root, "edited-data");
      for (const task of ["CB", "RTE"]) {
        await Deno.mkdir(join(edited, "super_glue", task), { recursive: true });
        for (const f of Deno.readDirSync(join(DATA, "super_glue", task))) {
          await Deno.copyFile(
            join(DATA, "super_glue", task, f.name),
            join(edited, "super_glue", task, f.name),
          );
        }
      }
      const rteTrain = join(edited, "super_glue", "RTE", "train.jsonl");
      const text = await Deno.readTextFile(rteTrain);
      await Deno.writeTextFile(rteTrain, text.replace('"not_entailment"', '"entailment"'));
      await assert.rejects(
        runOneWith(s, { outDir: outB, dataDir: edited }, EXACT),
        /step-00000004: checkpoint was trained on other inputs than this run reads: data:super_glue\/RTE\/train\.jsonl was sha256 [0-9a-f]{12}…, is now sha256 [0-9a-f]{12}…/,
      );
      assert.equal(tf.memory().numTensors, tensorsBefore, "a refused resume releases every tensor");
      const extraMs = 3.6e9;
      await Deno.writeTextFile(
        statePath,
        JSON.stringify({
          ...before,
          trainMs: before.trainMs! + extraMs,
          wallMs: before.wallMs! + extraMs,
        }),
      );
      const t0 = performance.now();
      const reports: RunProgress[] = [];
      const b = await runOneWith(
        s,
        { outDir: outB, dataDir: DATA, onProgress: (p) => void reports.push(p) },
        EXACT,
      );
      const sessionMs = performance.now() - t0;
      // The resume is reported first, once, with its checkpoint's step; then step 5 onwards.
      assert.deepEqual(reports.slice(0, 2).map((p) => `${p.phase} ${p.step}/${p.totalSteps}`), [
        `resume 4/${s.train.steps}`,
        `train 5/${s.train.steps}`,
      ]);
      assert.equal(reports.filter((p) => p.phase === "resume").length, 1);
      assert.equal((a.provenance as RunProvenance).resumedFrom, undefined);
      // The resumed run says so, and names the code of the checkpoint unless provably its own.
      const resumed = (b.provenance as RunProvenance).resumedFrom;
      assert.equal(resumed?.step, 4);
      const git = codeGitState(); // what the runs recorded (read once per process)
      if (!git.dirty) assert.deepEqual(resumed, { step: 4 });
      else assert.deepEqual(resumed, { step: 4, gitSha: git.sha, gitDirty: true });
      assert.deepEqual(b.losses, a.losses);
      assert.deepEqual(b.evals, a.evals);
      assert.deepEqual(b.best, a.best);
      assert.deepEqual(b.averages, a.averages);
      assert.deepEqual(b.attentionMass, a.attentionMass, "same final weights");
      // Throughput totals are the whole run's, not the resumed session's: the same tokens as the
      // uninterrupted run (same batches), and the checkpoint's seconds plus this session's steps.
      assert.equal(b.trainTokens, a.trainTokens);
      assert.ok(b.trainTokens! > before.tokens!);
      const carried = (before.trainMs! + extraMs) / 1000;
      assert.ok(
        b.trainSeconds! > carried && b.trainSeconds! < carried + sessionMs / 1000,
        `${b.trainSeconds} s: not ${carried} s carried + at most ${
          sessionMs / 1000
        } s of this session`,
      );
      // So is the wall time: the first session's up to the checkpoint plus this session's.
      const carriedWall = (before.wallMs! + extraMs) / 1000;
      assert.ok(
        b.wallSeconds > carriedWall && b.wallSeconds < carriedWall + sessionMs / 1000,
        `${b.wallSeconds} s: not ${carriedWall} s carried + at most ${sessionMs / 1000} s`,
      );
      assert.ok(b.wallSeconds > b.trainSeconds!, "wall time includes the training time");
      // A stop request pending when training returns (a signal during the last step's save): the
      // run ends before the attention mass, its result unreturned (so unwritten), the last
      // step's checkpoint kept; the resume trains nothing and redoes only the attention mass.
      assert.deepEqual(await listCheckpoints(`${outB}/checkpoints`), [4, 8]);
      requestStop("SIGTERM");
      try {
        const err = await runOneWith(s, { outDir: outB, dataDir: DATA }, EXACT).then(
          () => undefined,
          (e) => e,
        );
        assert.ok(err instanceof TrainingInterruptedError, String(err));
        assert.equal(err.interrupted, true, "the runner stops the grid");
        assert.equal(err.attentionMassOwed, true);
        assert.equal(err.checkpoint, `${outB}/checkpoints/step-00000008`);
        assert.equal(
          err.message,
          `stopped by SIGTERM after step 8 of 8, training and evaluations done, before its ` +
            `attention mass; checkpoint ${outB}/checkpoints/step-00000008: --resume loads it and ` +
            `redoes only the attention mass`,
        );
      } finally {
        clearStopRequest();
      }
      assert.equal(tf.memory().numTensors, tensorsBefore, "a stopped run releases every tensor");
      assert.deepEqual(await listCheckpoints(`${outB}/checkpoints`), [4, 8]);
      const c = await runOneWith(s, { outDir: outB, dataDir: DATA }, EXACT);
      assert.equal((c.provenance as RunProvenance).resumedFrom?.step, 8);
      assert.ok(c.wallSeconds >= b.wallSeconds, "step 8's checkpoint carries b's session too");
      assert.deepEqual(c.losses, a.losses);
      assert.deepEqual(c.evals, a.evals);
      assert.deepEqual(c.attentionMass, a.attentionMass);
      // A resume from a checkpoint written before checkpoints carried the totals (trainer
      // 50bcbf7): the earlier steps' tokens and time are unknown, so the result leaves the totals
      // out (they would pass for the whole run's) and its rate is that of the steps since; its
      // wall time counts this session only (nothing of the earlier ones is known).
      await Deno.remove(`${outB}/checkpoints/step-00000008`, { recursive: true });
      const { tokens: _t, trainMs: _ms, wallMs: _w, ...legacy } = JSON.parse(
        await Deno.readTextFile(statePath),
      );
      await Deno.writeTextFile(statePath, JSON.stringify(legacy));
      const dAt = performance.now();
      const d = await runOneWith(s, { outDir: outB, dataDir: DATA }, EXACT);
      assert.ok(d.wallSeconds * 1000 <= performance.now() - dAt, `${d.wallSeconds}`);
      validateRunResult(JSON.parse(JSON.stringify(d)), { file: "runOne()" });
      assert.equal((d.provenance as RunProvenance).resumedFrom?.step, 4);
      assert.deepEqual(d.losses, a.losses);
      assert.equal(d.trainTokens, undefined);
      assert.equal(d.trainSeconds, undefined);
      assert.ok(d.tokensPerSecond > 0, `${d.tokensPerSecond}`);
    });
  },
});

Deno.test({
  name:
    "runOne() whose claim is lost (claimLost) stops after its step or evaluation, saving no checkpoint of it",
  ignore: !HAVE,
  fn: async () => {
    await tf.ready();
    const before = tf.memory().numTensors;
    const base = spec({ name: "mtl", label: "mtl", config: {} }, 2);
    const body = { ...base, id: undefined, tasks: ["cb"] };
    const s: RunSpec = { ...body, id: runId(body) };
    // A checkpoint after every step (the wall-clock interval): a stop that saved one would show.
    // The single evaluation is at step 2 (evalEvery 6).
    for (const [when, step, kept] of [["train 1", 1, []], ["eval 2", 2, [1]]] as const) {
      await inTempDir(async (out) => {
        let lost = false;
        const err = await runOneWith(s, {
          outDir: out,
          dataDir: DATA,
          checkpointMinutes: 1e-9,
          onProgress: (p) => {
            if (`${p.phase} ${p.step}` === when) lost = true;
          },
          claimLost: () => lost ? "taken over by taker.example pid 9" : undefined,
        }, EXACT).then(() => undefined, (e) => e);
        assert.ok(err instanceof ClaimLostError, `${when}: ${err}`);
        assert.equal(err.step, step);
        assert.equal(err.message, `stopped after step ${step}: taken over by taker.example pid 9`);
        assert.deepEqual(await listCheckpoints(`${out}/checkpoints`), kept, `${when}: saved none`);
      });
    }
    assert.equal(tf.memory().numTensors, before, "a run stopped on its lost claim leaks nothing");
  },
});

Deno.test({
  name:
    "runOne() resumed at step 1 from a checkpoint without tokens/trainMs leaves the run's totals out",
  ignore: !HAVE,
  fn: async () => {
    // The earliest resume that can miss the totals: step 1 (a checkpoint after every step,
    // the run killed at step 2), where "steps before the resume are not counted" is
    // throughputFromStep 1, the smallest value that must still leave the totals out.
    await tf.ready();
    const before = tf.memory().numTensors;
    const base = spec({ name: "mtl", label: "mtl", config: {} }, 2);
    const body = { ...base, id: undefined, tasks: ["cb"] };
    const s: RunSpec = { ...body, id: runId(body) };
    const out = await Deno.makeTempDir();
    try {
      const opts = { outDir: out, dataDir: DATA, checkpointMinutes: 1e-9 };
      await assert.rejects(
        () =>
          runOneWith(s, {
            ...opts,
            onProgress: (p) => {
              if (p.phase === "train" && p.step === 2) throw new Error("killed");
            },
          }, EXACT),
        /killed/,
      );
      assert.deepEqual(await listCheckpoints(`${out}/checkpoints`), [1]);
      const statePath = `${out}/checkpoints/step-00000001/state.json`;
      const { tokens, trainMs: _ms, wallMs: _w, ...legacy } = JSON.parse(
        await Deno.readTextFile(statePath),
      );
      assert.ok(tokens > 0, `step 1's checkpoint counted ${tokens} tokens`);
      await Deno.writeTextFile(statePath, JSON.stringify(legacy));
      const r = await runOneWith(s, opts, EXACT);
      validateRunResult(JSON.parse(JSON.stringify(r)), { file: "runOne()" });
      assert.equal((r.provenance as RunProvenance).resumedFrom?.step, 1);
      assert.deepEqual(r.losses.map((l) => l.step), [1, 2]);
      assert.equal(r.trainTokens, undefined, "step 1's tokens are unknown");
      assert.equal(r.trainSeconds, undefined, "step 1's seconds are unknown");
      assert.ok(r.tokensPerSecond > 0, `${r.tokensPerSecond}`);
      // The checkpoint of step 2 carries that its totals start after step 1.
      const after = JSON.parse(
        await Deno.readTextFile(`${out}/checkpoints/step-00000002/state.json`),
      );
      assert.equal(after.tokensFromStep, 1);
      assert.equal(tf.memory().numTensors, before, "runOne releases every tensor");
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
});

Deno.test({
  name: "runOne() in a process killed with SIGKILL resumes to the uninterrupted result",
  ignore: !HAVE,
  fn: async () => {
    const s = spec({ name: "mtl", label: "mtl", config: {} }, 8);
    const { id: _, ...body } = { ...s, train: { ...s.train, checkpointEvery: 2, evalEvery: 4 } };
    const spec2: RunSpec = { ...body, id: runId(body) };
    await inTempDir(async (root) => {
      const outA = await Deno.makeTempDir({ dir: root });
      const a = await runOne(spec2, { outDir: outA, dataDir: DATA });
      const outB = await Deno.makeTempDir({ dir: root });
      const code = `
        import { runOne } from ${JSON.stringify(new URL("./run_one.ts", import.meta.url).href)};
        await runOne(JSON.parse(Deno.args[0]), { outDir: Deno.args[1], dataDir: Deno.args[2] });
        console.log("finished");`;
      const child = new Deno.Command(Deno.execPath(), {
        args: ["eval", code, JSON.stringify(spec2), outB, DATA],
        cwd: new URL("..", import.meta.url).pathname,
        stdout: "piped",
        stderr: "null",
      }).spawn();
      // Kill as soon as the step-4 checkpoint exists: the child is then inside step 5.
      const marker = `${outB}/checkpoints/step-00000004/state.json`;
      const deadline = Date.now() + 120_000;
      while (!existsSync(marker) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
      child.kill("SIGKILL");
      const st = await child.output();
      assert.equal(st.signal, "SIGKILL", "the child was killed, not finished");
      assert.ok(!new TextDecoder().decode(st.stdout).includes("finished"));
      const left = await listCheckpoints(`${outB}/checkpoints`);
      assert.ok(
        left.length > 0 && left[left.length - 1]! < 8,
        `killed mid-run (checkpoints ${left})`,
      );
      const b = await runOne(spec2, { outDir: outB, dataDir: DATA });
      assert.deepEqual(b.losses, a.losses);
      assert.deepEqual(b.evals, a.evals);
      assert.deepEqual(b.best, a.best);
    });
  },
});

Deno.test("runOne() refuses a spec whose id is not its hash (a method swapped under another run's id), before any work", async () => {
  const mtlSpec = spec({ name: "mtl", label: "mtl", config: {} });
  const swapped: RunSpec = {
    ...mtlSpec,
    method: { name: "hyperprompt_global", label: "mtl", config: {} },
  };
  const out = join(await Deno.makeTempDir(), "out");
  try {
    await assert.rejects(
      () => runOne(swapped, { outDir: out, dataDir: "/nonexistent" }),
      new RegExp(
        `^Error: run ${mtlSpec.id}: its spec hashes to ${
          runId(swapped)
        }, not to its id: changed after`,
      ),
    );
    assert.equal(await pathExists(out), false, "nothing written");
  } finally {
    await Deno.remove(dirname(out), { recursive: true });
  }
});

Deno.test("randomInitTokenizer(): a published preset without the offline tokenizer is refused, saying why", async () => {
  // defaultTokenizer() reads HYPERPROMPT_SHARED: a child process with another shared folder.
  const code = `
    import { randomInitTokenizer } from ${
    JSON.stringify(new URL("./run_one.ts", import.meta.url).href)
  };
    await randomInitTokenizer({ model: "t5-small", backbone: "random" }, "/nonexistent").then(
      () => console.log("loaded"), (e) => console.log(e.message));`;
  const shared = await Deno.makeTempDir();
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", code],
      cwd: new URL("..", import.meta.url).pathname,
      env: { HYPERPROMPT_SHARED: shared, NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.equal(
      new TextDecoder().decode(out.stdout).trim(),
      `benchmarks/run_one.ts: no tokenizer: t5-small is random-initialised from no folder (the ` +
        `hub's tokenizer is not used) and the offline tokenizer ` +
        `${shared}/fixtures/tokenizer/unigram-glue-4k/tokenizer.json is missing (set HYPERPROMPT_SHARED)`,
    );
  } finally {
    await Deno.remove(shared, { recursive: true });
  }
});

Deno.test({
  name: "runOne() failing after the backbone is built releases it (numTensors flat over 2 runs)",
  ignore: !HAVE,
  fn: async () => {
    // A method configuration only runOne checks: it throws after buildBackbone.
    const s = spec({ name: "prompt_tuning", label: "pt", config: { length: -3 } }, 2);
    await inTempDir(async (out) => {
      await tf.ready();
      const before = tf.memory().numTensors;
      const said: string[] = [];
      for (let i = 0; i < 2; i++) {
        await assert.rejects(
          () =>
            runOneWith(s, { outDir: out, dataDir: DATA, backendLog: (l) => said.push(l) }, EXACT),
          /length/,
        );
        assert.equal(tf.memory().numTensors, before, `after failed run ${i + 1}`);
      }
      // The backend's summary went to the run's backendLog (bench's: a line on stderr), each run.
      assert.equal(said.length, 2);
      assert.match(said[0]!, /^backend: \S+ \(tfjs "/);
    });
  },
});

/**
 * Registers `method` under its name for the call, runs a 2-step MTL-shaped run of it with
 * {@link runOneWith} (which must reject), and returns the error with the run's spec and the
 * tensor count before the run; the registry entry and the output folder are removed after.
 */
async function failedScratchRun(
  method: Method<unknown>,
  check: (err: Error, s: RunSpec, before: number) => void,
): Promise<void> {
  const registry = METHODS as unknown as Record<string, Method<unknown>>;
  registry[method.name] = method;
  const out = await Deno.makeTempDir();
  try {
    const s = spec({ name: method.name as MethodName, label: method.name, config: {} }, 2);
    await tf.ready();
    const before = tf.memory().numTensors;
    const err = await runOneWith(s, { outDir: out, dataDir: DATA }, EXACT).then(
      () => assert.fail("runOne resolved"),
      (e: unknown) => e as Error,
    );
    check(err, s, before);
  } finally {
    delete registry[method.name];
    await Deno.remove(out, { recursive: true });
  }
}

Deno.test({
  name:
    "runOne(): a method whose create throws after allocating releases its tensors, and the error names the method and run",
  ignore: !HAVE,
  fn: async () => {
    // Registered for this test only: MTL, but its create makes a variable (through VarStore, as
    // the built-in methods do), a bare tensor and a bare variable, then throws: no instance
    // comes back to dispose them, so runOne must.
    const name = "run_one_test_create_throws";
    let made = 0;
    const broken = {
      ...mtl,
      name,
      create(ctx: MethodContext): MethodInstance {
        const store = new VarStore(ctx.seed, name);
        store.add("w", [4, 3], { kind: "normal", std: 1 });
        tf.ones([5]);
        tf.variable(tf.tidy(() => tf.zeros([2])));
        made = tf.memory().numTensors;
        throw new Error("scratch create failed after allocating");
      },
    } as Method<unknown>;
    await failedScratchRun(broken, (err, s, before) => {
      assert.equal(
        err.message,
        `run ${s.id}: method "${name}" could not be created: scratch create failed after allocating`,
      );
      assert.equal((err.cause as Error).message, "scratch create failed after allocating");
      // The create ran and allocated beyond the backbone (3 tensors: two variables, one tensor).
      assert.ok(made >= before + 3, `create allocated (${before} -> ${made})`);
      assert.equal(tf.memory().numTensors, before, "what the failed create made is released");
    });
  },
});

Deno.test({
  name:
    "runOne(): trained parameters that do not match the accounting are refused, naming the run id and file",
  ignore: !HAVE,
  fn: async () => {
    // Registered for this test only: MTL with one extra trained variable its accounting lacks.
    const name = "run_one_test_miscounted";
    const miscounted = {
      ...mtl,
      name,
      create(ctx: MethodContext, cfg: unknown): MethodInstance {
        const inner = (mtl as Method<unknown>).create(ctx, cfg);
        const store = new VarStore(ctx.seed, name);
        store.add("uncounted", [7], { kind: "zeros" });
        return { ...inner, variables: store.vars, dispose: () => store.dispose() };
      },
    } as Method<unknown>;
    await failedScratchRun(miscounted, (err, s, before) => {
      assert.ok(
        err.message.startsWith(
          `benchmarks/run_one.ts: run ${s.id} (${runFileName(s)}): ${name} trains `,
        ),
        err.message,
      );
      const m = / trains (\d+) parameters but its accounting says (\d+)$/.exec(err.message);
      assert.ok(m !== null, err.message);
      assert.equal(Number(m[1]) - Number(m[2]), 7, "the uncounted variable's 7 parameters");
      assert.ok(err.message.includes(`--${s.id}.json)`), "the file name ends with the id");
      assert.equal(tf.memory().numTensors, before, "the refused run releases every tensor");
    });
  },
});

Deno.test({
  name: "runOne(): startedAt and wallSeconds start after the offline backbone pretraining",
  ignore: !HAVE,
  fn: async () => {
    await inTempDir(async (root) => {
      // A data folder with RTE only (a small pretraining corpus) and a cold pretraining cache.
      const data = join(root, "data");
      await Deno.mkdir(join(data, "glue", "RTE"), { recursive: true });
      for (const f of ["train.tsv", "dev.tsv"]) {
        await Deno.copyFile(sharedPath(`data/glue/RTE/${f}`), join(data, "glue", "RTE", f));
      }
      const body: Omit<RunSpec, "id"> = {
        ...spec({ name: "mtl", label: "mtl", config: {} }, 1),
        backbone: "pretrained",
        pretrain: { vocabSize: 500, steps: 3, batchSize: 4, chunkLength: 32 },
        benchmark: "glue",
        tasks: ["rte"],
      };
      const s = { ...body, id: runId(body) };
      await tf.ready();
      const before = tf.memory().numTensors;
      const begin = Date.now();
      const r = await withEnv(
        { HYPERPROMPT_CACHE: join(root, "cache") },
        () => runOneWith(s, { outDir: join(root, "run"), dataDir: data }, EXACT),
      );
      const end = Date.now();
      assert.notEqual(r.backboneSource, "random(seed=1)");
      // The offline-pretrained folder's files are recorded as an {hf} folder's are.
      const ck = (r.provenance as RunProvenance).checkpoint;
      assert.equal(ck?.dir, resolve(r.backboneSource));
      assert.deepEqual(
        ck?.files["model.safetensors"],
        await digestOf(join(r.backboneSource, "model.safetensors")),
      );
      assert.ok(ck?.files["config.json"] !== undefined && ck.files["tokenizer.json"] !== undefined);
      const pretrained = (await Deno.stat(join(r.backboneSource, "pretrain.json"))).mtime!
        .getTime();
      assert.ok(pretrained > begin, "the backbone was pretrained by this run");
      const started = Date.parse(r.provenance.startedAt);
      assert.ok(
        started + 1 >= pretrained,
        `startedAt ${r.provenance.startedAt} precedes the end of pretraining ${
          new Date(pretrained).toISOString()
        }`,
      );
      assert.ok(r.wallSeconds * 1000 <= end - pretrained + 1, `wallSeconds ${r.wallSeconds}`);
      // A data folder made by hand: recorded as such, with the files read.
      const prov = r.provenance as RunProvenance;
      assert.equal(prov.data?.kind, "folder");
      assert.deepEqual(Object.keys(prov.data?.files ?? {}), [
        "glue/RTE/dev.tsv",
        "glue/RTE/train.tsv",
      ]);
      assert.deepEqual(dataFiles(["rte"]), ["glue/RTE/train.tsv", "glue/RTE/dev.tsv"]);
      // Neither the run that pretrained the backbone nor one on the cached backbone keeps a tensor.
      assert.equal(tf.memory().numTensors, before, "pretraining and run release every tensor");
      const again = await withEnv(
        { HYPERPROMPT_CACHE: join(root, "cache") },
        () => runOneWith(s, { outDir: join(root, "run2"), dataDir: data }, EXACT),
      );
      assert.equal(again.backboneSource, r.backboneSource, "the cached backbone");
      assert.equal(tf.memory().numTensors, before);
    });
  },
});

/**
 * Saves a randomly initialised checkpoint of `config` with the vocabulary size of the fixture
 * tokenizer (rounded up to 128, as random-init runs do) into `dir`; returns that size.
 */
async function saveFixtureSizedCheckpoint(
  dir: string,
  config: T5Config,
  edit: (tensors: Map<string, tf.Tensor>) => void = () => {},
): Promise<number> {
  const fixture = await T5Tokenizer.fromFile(defaultTokenizer());
  const vocabSize = Math.ceil(fixture.vocabSize / 128) * 128;
  const sized = { ...config, vocabSize };
  const model = initT5(sized, { seed: 0 });
  try {
    const tensors = t5StateDict(model);
    edit(tensors);
    await saveHfFolder(dir, sized, tensors);
  } finally {
    disposeT5(model);
  }
  return vocabSize;
}

/** {@link saveFixtureSizedCheckpoint} with the fixture's tokenizer.json beside it. */
async function saveFixtureFolder(
  dir: string,
  config: T5Config,
  edit?: (tensors: Map<string, tf.Tensor>) => void,
): Promise<number> {
  const vocabSize = await saveFixtureSizedCheckpoint(dir, config, edit);
  await Deno.copyFile(defaultTokenizer(), join(dir, "tokenizer.json"));
  return vocabSize;
}

/** Sets `fields` in `dir`'s config.json, the others kept; returns the fields it held before. */
async function patchConfig(
  dir: string,
  fields: Record<string, unknown>,
): Promise<Record<string, unknown>> {
  const path = join(dir, "config.json");
  const cfg = JSON.parse(await Deno.readTextFile(path));
  await Deno.writeTextFile(path, JSON.stringify({ ...cfg, ...fields }));
  return cfg;
}

/** One step of mtl on spec()'s run: the spec whose backbone the buildBackbone tests vary. */
const MTL = spec({ name: "mtl", label: "mtl", config: {} }, 1);

/** A T5 1.1 shape other than any preset's defaults: 3 encoder, 1 decoder blocks. */
const THREE_ONE: T5Config = { ...preset("tiny-v1_1"), numLayers: 3, numDecoderLayers: 1 };

/**
 * Asserts that `b` has {@link THREE_ONE}'s blocks (as its folder's config.json says), `vocabSize`
 * ids and the folder's own tokenizer.
 */
function assertThreeOne(b: Awaited<ReturnType<typeof buildBackbone>>, vocabSize: number): void {
  assert.equal(b.tokenizerSource, "backbone");
  assert.deepEqual(
    [b.model.config.numLayers, b.model.config.numDecoderLayers, b.model.config.vocabSize],
    [3, 1, vocabSize],
  );
}

/**
 * Registers a buildBackbone test on the wasm backend (spec()'s runs'): `fn` gets a temporary
 * folder (removed afterwards) and the tensor count before it ran; no tensor may be left when it
 * returns.
 */
function backboneTest(
  name: string,
  fn: (dir: string, before: number) => Promise<void>,
  ignore = false,
): void {
  Deno.test({
    name,
    ignore,
    async fn() {
      await selectBackend("wasm", { log: () => {} });
      const dir = await Deno.makeTempDir();
      const before = tf.memory().numTensors;
      try {
        await fn(dir, before);
        assert.equal(tf.memory().numTensors, before, "no tensor is left");
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

backboneTest(
  "buildBackbone(): a backbone folder of another architecture than the named model is refused",
  async (dir, before) => {
    // Twice tiny-v1_1's feed-forward width and one more encoder layer: another model's weights.
    const tiny = preset("tiny-v1_1");
    await saveFixtureFolder(dir, {
      ...tiny,
      dFf: 2 * tiny.dFf,
      numLayers: tiny.numLayers + 1,
    });
    const s = { ...MTL, backbone: { hf: dir } };
    assert.equal(s.model, "tiny-v1_1");
    const read = await bytesRead(() =>
      assert.rejects(
        () => buildBackbone(s, DATA),
        (e: Error) =>
          // config.json's own field names (not the T5Config ones); the first one is `field`.
          e instanceof CheckpointError && e.file === `${dir}/config.json` &&
          e.field === "d_ff" &&
          e.message ===
            `${dir}/config.json is not a tiny-v1_1: d_ff ${
                2 * tiny.dFf
              } (tiny-v1_1: ${tiny.dFf}), ` +
              `num_layers ${tiny.numLayers + 1} (tiny-v1_1: ${tiny.numLayers}); name the model ` +
              `that matches the backbone, or give the backbone of tiny-v1_1`,
      )
    );
    assert.equal(read, 0, "refused from config.json, before any weight file is opened");
    assert.equal(tf.memory().numTensors, before, "no tensor is made or left");
  },
);

backboneTest(
  "buildBackbone(): an {hf} that is a file, a missing path, or a hub id the hub does not give says which it was taken for",
  async (dir) => {
    const file = join(dir, "config.json");
    await Deno.writeTextFile(file, "{}");
    await withEnv({ HF_HUB_OFFLINE: "1", HYPERPROMPT_CACHE: join(dir, "cache") }, async () => {
      await assert.rejects(
        () => buildBackbone({ ...MTL, backbone: { hf: file } }, DATA),
        (e: Error) => e.message.startsWith(`${file}: is a file; expected a Hugging Face folder`),
      );
      await assert.rejects(
        () => buildBackbone({ ...MTL, backbone: { hf: "./no/such/folder" } }, DATA),
        (e: Error) =>
          e.message ===
            `./no/such/folder: folder not found (and not a hub id such as "google/t5-v1_1-small")`,
      );
      // A mistyped folder that looks like org/name: the hub's error says it was taken as a hub
      // id (before, only the hub's message, which did not say why the hub was asked).
      await assert.rejects(
        () => buildBackbone({ ...MTL, model: { hf: "checkpoints/t5-tiny" } }, DATA),
        (e: Error) =>
          e.message.startsWith(
            `"checkpoints/t5-tiny" is not a local folder, so it was taken as a hub id: `,
          ),
      );
    });
  },
);

backboneTest(
  "buildBackbone(): a folder of weights without tokenizer.json is refused, not given the fixture's",
  async (dir) => {
    // A checkpoint whose vocabulary is as large as the fixture tokenizer's, so only the missing
    // tokenizer.json can stop it: the fixture's ids would index the wrong embedding rows.
    const vocabSize = await saveFixtureSizedCheckpoint(dir, preset("tiny-v1_1"));
    const s = { ...MTL, backbone: { hf: dir } };
    await assert.rejects(
      () => buildBackbone(s, DATA),
      (e: Error) => e.message.startsWith(`${dir}: no tokenizer.json`),
    );
    // With the checkpoint's own tokenizer beside it, the same folder loads, with the run's
    // dropout rate (the folder's config.json says 0.1).
    await Deno.copyFile(defaultTokenizer(), join(dir, "tokenizer.json"));
    const b = await buildBackbone({ ...s, train: { ...s.train, dropout: 0.25 } }, DATA);
    assert.equal(b.tokenizerSource, "backbone");
    assert.equal(b.model.config.vocabSize, vocabSize);
    assert.equal(b.model.config.dropoutRate, 0.25);
    disposeT5(b.model);
  },
);

backboneTest(
  "buildBackbone(): a checkpoint that does not match its config or tokenizer is refused before any weight is read",
  async (root, before) => {
    const tiny = preset("tiny-v1_1");
    const old = "decoder.block.1.layer.0.SelfAttention.o.weight";
    const renamed = "decoder.block.1.layer.0.SelfAttention.out.weight";
    const folders = {
      renamed: join(root, "renamed"),
      layers: join(root, "layers"),
      vocab: join(root, "vocab"),
    };
    await saveFixtureFolder(folders.renamed, tiny, (t) => {
      t.set(renamed, t.get(old)!);
      t.delete(old);
    });
    // config.json says one encoder block; the weights hold two.
    await saveFixtureFolder(folders.layers, tiny);
    const configPath = join(folders.layers, "config.json");
    assert.equal((await patchConfig(folders.layers, { num_layers: 1 })).num_layers, 2);
    // A model of 128 ids for a tokenizer of thousands.
    const small = initT5({ ...tiny, vocabSize: 128 }, { seed: 0 });
    try {
      await saveHfFolder(folders.vocab, small.config, t5StateDict(small));
    } finally {
      disposeT5(small);
    }
    await Deno.copyFile(defaultTokenizer(), join(folders.vocab, "tokenizer.json"));
    const fixture = await T5Tokenizer.fromFile(defaultTokenizer());
    const weights = (dir: string) => join(dir, "model.safetensors");
    const cases: [string, RunSpec, string][] = [
      [
        folders.renamed,
        { ...MTL, backbone: { hf: folders.renamed } },
        `${weights(folders.renamed)}: the tensor names do not match the T5 configuration for ` +
        `${join(folders.renamed, "config.json")}: 1 missing ("${old}") and 1 unexpected ` +
        `("${renamed}")`,
      ],
      [
        folders.layers,
        // The model named by the folder itself: checkBackboneShape does not apply.
        { ...MTL, model: { hf: folders.layers }, backbone: "pretrained" },
        `${weights(folders.layers)}: the tensor names do not match the T5 configuration for ` +
        `${configPath}: none missing and 9 unexpected (` +
        [
          "layer.0.SelfAttention.q",
          "layer.0.SelfAttention.k",
          "layer.0.SelfAttention.v",
          "layer.0.SelfAttention.o",
          "layer.0.layer_norm",
          "layer.1.DenseReluDense.wi_0",
          "layer.1.DenseReluDense.wi_1",
          "layer.1.DenseReluDense.wo",
        ].map((n) => `"encoder.block.1.${n}.weight"`).join(", ") +
        `, and 1 more); the checkpoint has 2 encoder blocks where "num_layers" is 1`,
      ],
      [
        folders.vocab,
        { ...MTL, backbone: { hf: folders.vocab } },
        `tokenizer ${join(folders.vocab, "tokenizer.json")} and ${
          join(folders.vocab, "config.json")
        } do not match: the tokenizer has ${fixture.vocabSize} ids but the model's "vocab_size" ` +
        `is 128 (is it the model's own tokenizer?)`,
      ],
    ];
    for (const [dir, s, message] of cases) {
      const read = await bytesRead(() =>
        assert.rejects(() => buildBackbone(s, DATA), (e: Error) => {
          assert.equal(e.message, message);
          return true;
        })
      );
      // Before, every weight was read first (over 100 times the headers' bytes here).
      const headers = await headerBytes(dir);
      assert.ok(read <= headers, `${dir}: ${read} bytes read, more than the ${headers} of headers`);
      assert.equal(tf.memory().numTensors, before, `${dir}: no tensor is made or left`);
    }
  },
);

backboneTest(
  "buildBackbone(): a folder whose tokenizer's </s> or <pad> id is not its config's is refused, trained or random",
  async (root, before) => {
    // The tokenizer ends every text with its own </s> (id 1 here) while the trainer, the evaluator
    // and decoding use config.json's ids: before, such a folder trained with the wrong end and pad
    // tokens (only the tokenizer's size was compared).
    const fixture = await T5Tokenizer.fromFile(defaultTokenizer());
    assert.deepEqual([fixture.eosTokenId, fixture.padTokenId], [1, 0]);
    const cases: [string, Record<string, number>, RunSpec, string][] = [
      [
        "eos",
        { eos_token_id: 2 },
        { ...MTL, backbone: { hf: join(root, "eos") } },
        `"</s>" is id 1 but "eos_token_id" is 2`,
      ],
      [
        "pad",
        { pad_token_id: 2, decoder_start_token_id: 2 },
        { ...MTL, model: { hf: join(root, "pad") }, backbone: "pretrained" },
        `"<pad>" is id 0 but "pad_token_id" is 2`,
      ],
      // Random init takes the ids from config.json too (the weights are not read).
      [
        "random",
        { pad_token_id: 2 },
        { ...MTL, model: { hf: join(root, "random") } },
        `"<pad>" is id 0 but "pad_token_id" is 2`,
      ],
    ];
    for (const [name, fields, s, why] of cases) {
      const dir = join(root, name);
      await saveFixtureFolder(dir, preset("tiny-v1_1"));
      await patchConfig(dir, fields);
      const read = await bytesRead(() =>
        assert.rejects(() => buildBackbone(s, DATA), (e: Error) => {
          assert.equal(
            e.message,
            `tokenizer ${join(dir, "tokenizer.json")} and ${
              join(dir, "config.json")
            } do not match: ${why}`,
          );
          return true;
        })
      );
      assert.equal(read, 0, `${name}: refused before any weight file is opened`);
      assert.equal(tf.memory().numTensors, before, `${name}: no tensor is made or left`);
    }
  },
);

backboneTest(
  "buildBackbone(): a checkpoint without shared.weight (only the stacks' tables) uses the encoder's",
  async (dir) => {
    // As google/madlad400-* store it; before, run_one refused it (loadT5 took it).
    await saveFixtureFolder(dir, preset("tiny-v1_1"), (t) => t.delete("shared.weight"));
    const s = { ...MTL, backbone: { hf: dir } };
    const b = await buildBackbone(s, DATA);
    try {
      assert.ok(b.model.params.has("shared.weight"));
      assert.equal(b.model.config.ownEmbeddings, undefined, "one table, tied to both stacks");
    } finally {
      disposeT5(b.model);
    }
  },
);

/** Size and sha256 of a file, by Web Crypto over its whole bytes (not the code under test). */
async function digestOf(path: string): Promise<{ bytes: number; sha256: string }> {
  const bytes = await Deno.readFile(path);
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return {
    bytes: bytes.length,
    sha256: [...hash].map((b) => b.toString(16).padStart(2, "0")).join(""),
  };
}

backboneTest(
  "buildBackbone(): an {hf} folder's files read are recorded with size and sha256 (weights only when loaded), and a replaced weights file gives another digest",
  async (dir) => {
    // Before, a result named only the folder: it could not say which weights it trained.
    await saveFixtureFolder(dir, preset("tiny-v1_1"));
    const want = async (names: string[]) =>
      Object.fromEntries(
        await Promise.all(names.map(async (n) => [n, await digestOf(join(dir, n))])),
      );
    const trained = await buildBackbone({ ...MTL, backbone: { hf: dir } }, DATA);
    disposeT5(trained.model);
    assert.deepEqual(trained.checkpoint, {
      dir,
      files: await want(["config.json", "model.safetensors", "tokenizer.json"]),
    });
    // The folder's own tokenizer is in those files: no separate tokenizer file digest.
    assert.equal(trained.tokenizerFile, undefined);
    const random = await buildBackbone({ ...MTL, model: { hf: dir } }, DATA);
    disposeT5(random.model);
    assert.deepEqual(random.checkpoint, {
      dir,
      files: await want(["config.json", "tokenizer.json"]),
    });
    // Other weights under the same name (another seed): another digest, not the cached one.
    const old = trained.checkpoint!.files["model.safetensors"]!.sha256;
    await Deno.remove(dir, { recursive: true });
    let other: tf.Tensor | undefined;
    await saveFixtureFolder(dir, preset("tiny-v1_1"), (t) => {
      other = tf.tidy(() => t.get("shared.weight")!.add(1));
      t.set("shared.weight", other);
    });
    other!.dispose();
    const again = await buildBackbone({ ...MTL, backbone: { hf: dir } }, DATA);
    disposeT5(again.model);
    const now = again.checkpoint!.files["model.safetensors"]!;
    assert.notEqual(now.sha256, old);
    assert.deepEqual(now, await digestOf(join(dir, "model.safetensors")));
  },
);

backboneTest(
  "buildBackbone(): a checkpoint folder's config.json and weights are read once (loadT5's loader)",
  async (dir) => {
    await saveFixtureFolder(dir, preset("tiny-v1_1"));
    const texts = new Map<string, number>();
    const readTextFile = Deno.readTextFile;
    Deno.readTextFile = (path: string | URL, opts?: Deno.ReadFileOptions) => {
      texts.set(String(path), (texts.get(String(path)) ?? 0) + 1);
      return readTextFile(path, opts);
    };
    let built: Awaited<ReturnType<typeof buildBackbone>> | undefined;
    let read: number;
    // The provenance's digests of the folder's files, taken first: hashed once per process per
    // unchanged file, the build's own hashing then reads nothing, and the count is the loader's.
    await checkpointFiles(dir, { weights: true });
    try {
      read = await bytesRead(async () =>
        built = await buildBackbone({ ...MTL, backbone: { hf: dir } }, DATA)
      );
    } finally {
      Deno.readTextFile = readTextFile;
    }
    disposeT5(built!.model);
    assert.equal(texts.get(join(dir, "config.json")), 1, "config.json reads");
    const size = (await Deno.stat(join(dir, "model.safetensors"))).size;
    assert.equal(read, size, `bytes of model.safetensors read (header ${await headerBytes(dir)})`);
  },
);

backboneTest(
  "buildBackbone(): random init from a Hugging Face folder reads its config.json, not its weights",
  async (dir) => {
    const vocabSize = await saveFixtureFolder(dir, THREE_ONE);
    const s = { ...MTL, model: { hf: dir } };
    assert.equal(s.backbone, "random");
    let built: Awaited<ReturnType<typeof buildBackbone>> | undefined;
    // The digests of config.json and tokenizer.json (not the weights), taken first as above.
    await checkpointFiles(dir, { weights: false });
    const read = await bytesRead(async () => built = await buildBackbone(s, DATA));
    assert.equal(read, 0, "no safetensors file is read (nor hashed)");
    const b = built!;
    try {
      assert.equal(b.source, "random(seed=1)");
      assertThreeOne(b, vocabSize);
    } finally {
      disposeT5(b.model);
    }
  },
);

backboneTest(
  "buildBackbone(): from a hub id, config.json and tokenizer.json come first: random init downloads only them, a mismatch is refused before the weights",
  async (root) => {
    // Before, the whole checkpoint was downloaded (a T5-XXL's 44 GB) for a random init's config.json,
    // and before a checkpoint's config and tokenizer were checked. A local stand-in for the hub
    // (127.0.0.1) serves the repos; the cache is a temporary folder.
    const src = join(root, "src");
    const badEos = join(root, "bad-eos");
    const vocabSize = await saveFixtureFolder(src, THREE_ONE);
    await saveFixtureFolder(badEos, THREE_ONE);
    await patchConfig(badEos, { eos_token_id: 2 });
    const hub = serveHub({ "org/tiny@main": src, "org/bad-eos@main": badEos });
    const cache = join(root, "cache");
    const env = hubEnv(hub.endpoint, cache);
    const asked = (from: number) => hub.requests.slice(from).map((r) => r.path);
    const url = (repo: string, f: string) => `/${repo}/resolve/main/${f}`;
    try {
      const random = { ...MTL, model: { hf: "org/tiny" } };
      assert.equal(random.backbone, "random");
      const b = await withEnv(env, () => buildBackbone(random, DATA));
      try {
        assert.deepEqual(
          asked(0),
          ["config.json", "tokenizer.json"].map((f) => url("org/tiny", f)),
        );
        assertThreeOne(b, vocabSize);
      } finally {
        disposeT5(b.model);
      }
      // A checkpoint whose tokenizer does not fit its config: refused from those two files.
      let n = hub.requests.length;
      await assert.rejects(
        withEnv(
          env,
          () =>
            buildBackbone({ ...MTL, model: { hf: "org/bad-eos" }, backbone: "pretrained" }, DATA),
        ),
        /do not match: "<\/s>" is id 1 but "eos_token_id" is 2/,
      );
      assert.deepEqual(
        asked(n),
        ["config.json", "tokenizer.json"].map((f) => url("org/bad-eos", f)),
      );
      // The same repo as a trained backbone: the weights are downloaded into the same cache folder
      // (config.json and tokenizer.json are not asked for again) and loaded.
      n = hub.requests.length;
      const pretrained = { ...random, backbone: "pretrained" as const };
      const p = await withEnv(env, () => buildBackbone(pretrained, DATA));
      try {
        const again = asked(n);
        assert.ok(again.includes(url("org/tiny", "model.safetensors")), `${again}`);
        assert.ok(!again.includes(url("org/tiny", "config.json")), `${again}`);
        assert.ok(!again.includes(url("org/tiny", "tokenizer.json")), `${again}`);
        assert.equal(p.source, join(cache, "hub", "models--org--tiny", "main"));
        assert.equal(p.model.config.numLayers, 3);
      } finally {
        disposeT5(p.model);
      }
    } finally {
      await hub.close();
    }
  },
);

/**
 * A tiny-v1_1 checkpoint whose vocabulary is the tiny corpus's spiece.model with T5's 100
 * sentinels (rounded up to 128 ids), with spiece.model beside it and no tokenizer.json, as the
 * 2020 T5 checkpoints ship; returns the reference tokenizer (the converter's tokenizer.json, kept
 * outside the folder) and the number of pieces.
 */
async function spieceCheckpoint(
  root: string,
): Promise<{ dir: string; ref: T5Tokenizer; n: number }> {
  const tiny = await trainTinySpiece(join(root, "tok"));
  const dir = join(root, "ckpt");
  const ref = await T5Tokenizer.fromFile(tiny.tokenizerJson);
  const sized = { ...preset("tiny-v1_1"), vocabSize: Math.ceil(ref.vocabSize / 128) * 128 };
  const model = initT5(sized, { seed: 0 });
  try {
    await saveHfFolder(dir, sized, t5StateDict(model));
  } finally {
    disposeT5(model);
  }
  await Deno.copyFile(tiny.spiece, join(dir, "spiece.model"));
  return { dir, ref, n: tiny.pieces };
}

backboneTest(
  "buildBackbone(): a folder with spiece.model but no tokenizer.json gets it converted (trained or random), the folder untouched",
  async (root) => {
    const { dir, ref, n } = await spieceCheckpoint(root);
    const files = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    for (const s of [{ ...MTL, backbone: { hf: dir } }, { ...MTL, model: { hf: dir } }]) {
      const b = await buildBackbone(s, DATA);
      try {
        assert.equal(b.tokenizerSource, CONVERTED_TOKENIZER);
        assert.equal(b.tokenizerSource, "backbone:spiece.model");
        assert.equal(b.tokenizer.vocabSize, n + 100);
        assert.deepEqual(
          [b.tokenizer.tokenToId("<extra_id_0>"), b.tokenizer.tokenToId("<extra_id_99>")],
          [n + 99, n],
        );
        for (const text of ["the cat sat on the mat", "a good  day <extra_id_1>"]) {
          assert.deepEqual(b.tokenizer.encode(text), ref.encode(text), text);
        }
        assert.equal(b.model.config.vocabSize, 256);
      } finally {
        disposeT5(b.model);
      }
    }
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), files, "untouched");
  },
  !HAS_SPM,
);

backboneTest(
  "buildBackbone(): a hub repo without tokenizer.json: spiece.model and tokenizer_config.json come with config.json, before the weights",
  async (root) => {
    const { dir, ref } = await spieceCheckpoint(root);
    await Deno.writeTextFile(
      join(dir, "tokenizer_config.json"),
      JSON.stringify({ extra_ids: 100, model_max_length: 512 }),
    );
    const hub = serveHub({ "google/t5-spiece@main": dir });
    const cache = join(root, "cache");
    const env = hubEnv(hub.endpoint, cache);
    const asked = () =>
      hub.requests.map((r) => r.path.replace("/google/t5-spiece/resolve/main/", ""));
    try {
      const pretrained = {
        ...MTL,
        model: { hf: "google/t5-spiece" },
        backbone: "pretrained" as const,
      };
      const b = await withEnv(env, () => buildBackbone(pretrained, DATA));
      try {
        // config.json and the tokenizer files first (tokenizer.json: 404), then the weights.
        assert.deepEqual(asked().slice(0, 4), [
          "config.json",
          "tokenizer.json",
          "spiece.model",
          "tokenizer_config.json",
        ]);
        assert.ok(asked().slice(4).includes("model.safetensors"), `${asked()}`);
        assert.equal(b.tokenizerSource, CONVERTED_TOKENIZER);
        const text = "the dog <extra_id_0> the park";
        assert.deepEqual(b.tokenizer.encode(text), ref.encode(text));
        const folder = join(cache, "hub", "models--google--t5-spiece", "main");
        assert.equal(b.source, folder);
        assert.ok(!existsSync(join(folder, "tokenizer.json")), "converted in memory only");
      } finally {
        disposeT5(b.model);
      }
    } finally {
      await hub.close();
    }
  },
  !HAS_SPM,
);

/**
 * Keeps `b`'s backbone as a run with `train.saveWeights` does (MTL trains every backbone weight),
 * from the tokenizer source, digest and checkpoint that `buildBackbone` gave; returns the kept
 * backbone folder.
 */
async function keepBackbone(
  b: Awaited<ReturnType<typeof buildBackbone>>,
  work: string,
): Promise<string> {
  await Deno.mkdir(work, { recursive: true });
  const instance = mtl.create(
    { config: b.model.config, tasks: trainedTasks(MTL), seed: 5, backbone: b.model.params },
    mtl.parseConfig({}, "t"),
  );
  try {
    const w = await saveFinalWeights(MTL, work, b.model, instance, {
      tokenizerSource: b.tokenizerSource,
      ...(b.tokenizerFile === undefined ? {} : { tokenizerFile: b.tokenizerFile }),
      ...(b.checkpoint === undefined ? {} : { checkpoint: b.checkpoint }),
    });
    assert.equal(w.backboneTokenizerMissing, undefined, "the tokenizer is kept");
    assert.equal(w.backbone, "backbone");
  } finally {
    instance.dispose();
  }
  return join(work, "final", "backbone");
}

/**
 * Loads a kept backbone folder back as `{"hf": folder}` and asserts that its tokenizer is the run's:
 * chosen the same way (`tokenizerSource`), as many ids, and every text encoded to the same ids.
 */
async function assertSameTokenizer(
  folder: string,
  run: Awaited<ReturnType<typeof buildBackbone>>,
  source: string,
  texts: readonly string[],
): Promise<void> {
  const again = await buildBackbone({ ...MTL, backbone: { hf: folder } }, DATA);
  try {
    assert.equal(again.tokenizerSource, source);
    assert.equal(again.tokenizer.vocabSize, run.tokenizer.vocabSize);
    for (const text of texts) {
      assert.deepEqual(again.tokenizer.encode(text), run.tokenizer.encode(text), text);
    }
  } finally {
    disposeT5(again.model);
  }
}

backboneTest(
  "saveFinalWeights(): a converted spiece.model run keeps spiece.model and tokenizer_config.json; {hf} loads the run's tokenizer",
  async (root) => {
    const { dir, ref } = await spieceCheckpoint(root);
    // A setting only tokenizer_config.json gives: a token kept whole (left out, it is split).
    await Deno.writeTextFile(
      join(dir, "tokenizer_config.json"),
      JSON.stringify({ additional_special_tokens: ["<kept>"] }),
    );
    const b = await buildBackbone({ ...MTL, backbone: { hf: dir } }, DATA);
    try {
      assert.equal(b.tokenizerSource, CONVERTED_TOKENIZER);
      const kept = b.tokenizer.encode("the <kept> cat");
      assert.ok(kept.includes(b.tokenizer.tokenToId("<kept>")!), `${kept}`);
      const folder = await keepBackbone(b, join(root, "work"));
      // As the run read it: spiece.model and its settings, not a tokenizer.json of another kind.
      assert.deepEqual([...Deno.readDirSync(folder)].map((e) => e.name).sort(), [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "spiece.model",
        "tokenizer_config.json",
      ]);
      for (const name of ["spiece.model", "tokenizer_config.json"]) {
        assert.deepEqual(
          await Deno.readFile(join(folder, name)),
          await Deno.readFile(join(dir, name)),
        );
      }
      const texts = ["the cat sat on the mat", "a good  day <extra_id_1>", "the <kept> cat"];
      await assertSameTokenizer(folder, b, CONVERTED_TOKENIZER, texts);
      assert.deepEqual(b.tokenizer.encode(texts[0]!), ref.encode(texts[0]!));
    } finally {
      disposeT5(b.model);
    }
  },
  !HAS_SPM,
);

backboneTest(
  "saveFinalWeights(): a fixture-tokenizer run keeps its tokenizer.json, checked against the digest taken when read; {hf} loads it",
  async (root) => {
    // A random init from a folder's config that has no tokenizer: the fixture's.
    const cfg = join(root, "cfg");
    await saveFixtureSizedCheckpoint(cfg, preset("tiny-v1_1"));
    const b = await buildBackbone({ ...MTL, model: { hf: cfg } }, DATA);
    try {
      assert.equal(b.tokenizerSource, `fixture:${defaultTokenizer()}`);
      assert.deepEqual(b.tokenizerFile, await fileDigest(defaultTokenizer()));
      const folder = await keepBackbone(b, join(root, "work"));
      assert.deepEqual([...Deno.readDirSync(folder)].map((e) => e.name).sort(), [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
      ]);
      const texts = [
        "The movie was not good.",
        "premise: a cat. hypothesis: an animal <extra_id_0>",
      ];
      await assertSameTokenizer(folder, b, "backbone", texts);
      // A file that is not the one the run read (its digest differs) is not kept as the run's.
      const other = { ...b, tokenizerFile: { bytes: 1, sha256: "0".repeat(64) } };
      const instance = mtl.create(
        { config: b.model.config, tasks: trainedTasks(MTL), seed: 5, backbone: b.model.params },
        mtl.parseConfig({}, "t"),
      );
      await Deno.mkdir(join(root, "work2"));
      try {
        const w = await saveFinalWeights(MTL, join(root, "work2"), other.model, instance, {
          tokenizerSource: other.tokenizerSource,
          tokenizerFile: other.tokenizerFile,
        });
        assert.equal(w.backboneTokenizerMissing, `fixture:${defaultTokenizer()}`);
      } finally {
        instance.dispose();
      }
    } finally {
      disposeT5(b.model);
    }
  },
);

gpuTest(
  "runOne() on webgpu: prompt methods train, checkpoint, evaluate and report as on wasm",
  async () => {
    // The whole run path on the GPU backend (software adapter here): tfjs cannot read GPU data
    // synchronously in Deno, so any dataSync on the way (class-label init, attention mass, saving,
    // evaluation) fails the run. Same seeds and data order as on wasm: the same losses within
    // the tolerances stated below.
    assert.ok(HAVE, "the offline mirror (../shared/data) has SuperGLUE CB and RTE");
    await tf.ready();
    const before = tf.memory().numTensors;
    for (
      const method of [
        { name: "prompt_tuning", label: "prompt_tuning", config: {} },
        { name: "hyperprompt_global", label: "hyperprompt_global", config: {} },
      ] as const
    ) {
      const results = [];
      for (const backend of ["wasm", "webgpu"] as const) {
        const out = await Deno.makeTempDir();
        try {
          const base = spec(method, 4);
          const { id: _id, ...rest } = {
            ...base,
            backend,
            train: { ...base.train, evalEvery: 4, checkpointEvery: 2 },
          };
          const s = { ...rest, id: runId(rest) };
          const r = await runOne(s, { outDir: out, dataDir: DATA });
          assert.equal(r.provenance.backend.tfBackend, backend);
          results.push(r);
        } finally {
          await Deno.remove(out, { recursive: true });
        }
      }
      const [wasm, gpu] = results;
      assert.equal(gpu!.losses.length, 4, method.name);
      // Step 1 is the forward pass of the same weights: 1e-5 relative (fp32 kernels that sum in
      // other orders). Later steps follow updates whose gradients differ slightly, and on webgpu
      // run to run: tfjs-webgpu adds a gather's gradient rows with float atomics
      // (atomicCompareExchangeWeak), in thread order. A full-gate run on a loaded host measured
      // 1.0e-4 relative at step 4 (2.5e-6 on the ci grid, quiet), hence 5e-4 after updates.
      for (const [i, l] of gpu!.losses.entries()) {
        const w = wasm!.losses[i]!.loss;
        assert.ok(
          Math.abs(l.loss - w) <= (i === 0 ? 1e-5 : 5e-4) * Math.abs(w),
          `${method.name} step ${i + 1}: ${l.loss} vs ${w}`,
        );
      }
      assert.deepEqual(gpu!.evals.map((e) => e.task), wasm!.evals.map((e) => e.task));
      if (method.name === "hyperprompt_global") {
        assert.ok(gpu!.attentionMass !== undefined, "attention mass measured on the GPU");
      }
    }
    assert.equal(tf.memory().numTensors, before, "runOne releases every tensor");
  },
);

Deno.test({
  name:
    "runOne() with a train-only task (DPR): trained in the mixture and the method's tasks, never evaluated",
  ignore: !HAVE,
  fn: async () => {
    await tf.ready();
    const before = tf.memory().numTensors;
    const dataDir = await Deno.makeTempDir();
    const out = await Deno.makeTempDir();
    try {
      await Deno.mkdir(join(dataDir, "super_glue/DPR"), { recursive: true });
      for (const t of ["CB", "RTE"]) {
        await Deno.symlink(join(DATA, "super_glue", t), join(dataDir, "super_glue", t));
      }
      // The registry's official count is checked: 1,322 records (two alternating ones).
      const rec = (i: number) =>
        i % 2 === 0
          ? "The cup fell off the table because it was round.\nit\nThe cup,the table\nThe cup\n"
          : "Anna thanked Beth because she, kindly, helped.\nshe\nAnna,Beth\nBeth\n";
      const text = Array.from({ length: 1322 }, (_, i) => rec(i)).join("\n");
      await Deno.writeTextFile(join(dataDir, "super_glue/DPR/train.c.txt"), text);
      const base = spec({ name: "adapter", label: "adapter", config: {} }, 2);
      const body = { ...base, id: undefined, trainOnlyTasks: ["dpr"] };
      const s: RunSpec = { ...body, id: runId(body) };
      const r = await runOne(s, { outDir: out, dataDir });
      validateRunResult(JSON.parse(JSON.stringify(r)), { file: "runOne()" });
      // Evaluated: the spec's tasks only; DPR has no evaluation, best score or average share.
      assert.deepEqual(r.evals.map((e) => `${e.step}/${e.task}`), ["2/cb", "2/rte_sg"]);
      assert.deepEqual(Object.keys(r.best).sort(), ["cb", "rte_sg"]);
      // Trained: its file was read, and the adapter has per-task variables for three tasks.
      const files = Object.keys((r.provenance as RunProvenance).data?.files ?? {});
      assert.ok(files.includes("super_glue/DPR/train.c.txt"), files.join(", "));
      const cfg = preset("tiny-v1_1");
      const three = methodAccounting(cfg, "adapter", {}, 3, { inputLength: 48, targetLength: 6 });
      const two = methodAccounting(cfg, "adapter", {}, 2, { inputLength: 48, targetLength: 6 });
      assert.ok(three.trained > two.trained);
      assert.equal(r.params.trained, three.trained);
      // Prompt-Tuning's class-label init reads each conditioned task's label words, DPR's too
      // when it has an id of its own (no WSC here).
      const pt = spec({ name: "prompt_tuning", label: "pt", config: { length: 4 } }, 2);
      const ptBody = { ...pt, id: undefined, trainOnlyTasks: ["dpr"] };
      const p = await runOne({ ...ptBody, id: runId(ptBody) }, {
        outDir: join(out, "pt"),
        dataDir,
      });
      assert.deepEqual(Object.keys(p.best).sort(), ["cb", "rte_sg"]);
      // With WSC in the run, DPR's examples carry WSC's task id (its wsc: format, T5's mixture):
      // the adapter has two tasks' variables, and the run trains and evaluates CB and WSC.
      // The mirror has WSC's val.jsonl only: a train file of the official 554 rows from its rows.
      const wscDir = join(dataDir, "super_glue", "WSC");
      await Deno.mkdir(wscDir);
      await Deno.copyFile(join(DATA, "super_glue", "WSC", "val.jsonl"), join(wscDir, "val.jsonl"));
      const val = Deno.readTextFileSync(join(wscDir, "val.jsonl")).trim().split("\n");
      const rows = Array.from(
        { length: 554 },
        (_, i) => JSON.stringify({ ...JSON.parse(val[i % val.length]!), idx: i }),
      );
      await Deno.writeTextFile(join(wscDir, "train.jsonl"), rows.join("\n") + "\n");
      const wscBody = { ...body, tasks: ["cb", "wsc"] };
      const w = await runOne({ ...wscBody, id: runId(wscBody) }, {
        outDir: join(out, "wsc"),
        dataDir,
      });
      assert.deepEqual(Object.keys(w.best).sort(), ["cb", "wsc"]);
      assert.equal(w.params.trained, two.trained);
      assert.ok(w.losses.every((l) => Number.isFinite(l.loss)));
      assert.equal(tf.memory().numTensors, before, "runOne releases every tensor");
    } finally {
      await Deno.remove(out, { recursive: true });
      await Deno.remove(dataDir, { recursive: true });
    }
  },
});

/** A progress report of runOne (its `onProgress` argument). */
type Progress = { phase: string; step: number };

/**
 * Runs `body` on a run on CB alone that predicts CB's test set, in a fresh folder `root` (removed
 * afterwards, whatever happens), then asserts that runOne released every tensor. The run's scorer
 * scores step `s` `scores[s]`; `run(hook)` runs it into `<root>/<stem>`, `hook` seeing each
 * progress report after the scorer; `dir` is its test-predictions folder, `manifest()` reads the
 * manifest there.
 */
async function inPredictingRoot(
  scores: Record<number, number>,
  body: (r: {
    root: string;
    stem: string;
    dir: string;
    manifest: () => unknown;
    run: (hook: (p: Progress) => void) => Promise<RunResult>;
  }) => Promise<void>,
): Promise<void> {
  await tf.ready();
  const before = tf.memory().numTensors;
  const base = spec({ name: "mtl", label: "mtl", config: {} }, 12);
  const unnamed = {
    ...base,
    id: undefined,
    tasks: ["cb"],
    train: { ...base.train, evalEvery: 4, checkpointEvery: 4, predictTest: true },
  };
  const s: RunSpec = { ...unnamed, id: runId(unnamed) };
  let step = -1;
  // Scripted validation scores (the decoding is real; only its score is chosen), so which
  // evaluation is a new best does not hang on what 12 steps of a tiny model learn.
  const scorer: RunScorer = { ...EXACT, scoreTask: () => ({ accuracy: scores[step]! }) };
  const stem = runFileName(s).slice(0, -".json".length);
  await inTempDir(async (root) => {
    const dir = join(root, "test_predictions", stem);
    const run = (hook: (p: Progress) => void) =>
      runOneWith(s, {
        outDir: join(root, stem),
        dataDir: DATA,
        onProgress: (p) => {
          if (p.phase === "eval") step = p.step;
          hook(p);
        },
      }, scorer);
    const manifest = () => JSON.parse(Deno.readTextFileSync(join(dir, "manifest.json")));
    await body({ root, stem, dir, manifest, run });
    assert.equal(tf.memory().numTensors, before, "runOne releases every tensor");
  });
}

Deno.test({
  name:
    "runOne() with predictTest writes CB's test predictions at each new best only, and a resume keeps them",
  ignore: !HAVE,
  // Step 4: the first evaluation, a best (written); step 8: a higher score (rewritten); step
  // 12, after the resume: a tie, not a best (the earliest step wins: step 8's file stays).
  fn: () =>
    inPredictingRoot({ 4: 50, 8: 60, 12: 60 }, async ({ stem, dir, manifest, run }) => {
      const file = join(dir, "cb.jsonl");
      // What the folder held when the evaluations of steps 8 and 12 started.
      const seen: Record<number, { ino: number | null; manifest: unknown }> = {};
      const watch = (p: Progress) => {
        if (p.phase === "eval" && p.step > 4) {
          seen[p.step] = { ino: Deno.statSync(file).ino, manifest: manifest() };
        }
      };
      // Killed after step 10 (checkpoints of steps 4 and 8 written), then resumed.
      await assert.rejects(
        () =>
          run((p) => {
            watch(p);
            if (p.phase === "train" && p.step === 10) throw new Error("killed");
          }),
        /killed/,
      );
      assert.deepEqual(manifest(), { cb: { step: 8, examples: 250 } });
      const r = await run(watch);
      assert.equal((r.provenance as RunProvenance).resumedFrom?.step, 8);
      validateRunResult(JSON.parse(JSON.stringify(r)), { file: "runOne()" });
      assert.equal(r.best.cb!.step, 8);
      assert.deepEqual(r.testPredictions, {
        dir: `test_predictions/${stem}`,
        files: { cb: { step: 8, examples: 250 } },
      });
      // Written at step 4, rewritten at step 8; the resume (its evaluations of steps 4 and 8 from
      // the checkpoint) kept step 8's through step 12's evaluation, a tie.
      assert.deepEqual(seen[8]!.manifest, { cb: { step: 4, examples: 250 } });
      assert.deepEqual(seen[12]!.manifest, { cb: { step: 8, examples: 250 } });
      assert.notEqual(seen[12]!.ino, seen[8]!.ino, "rewritten at step 8's new best");
      assert.equal(Deno.statSync(file).ino, seen[12]!.ino, "not rewritten at a tie");
      assert.deepEqual(manifest(), r.testPredictions!.files);
      // Every test example, in file order, one JSON object a line.
      const want = await loadExamples("cb", "test", DATA);
      const lines = (await Deno.readTextFile(file)).split("\n");
      assert.equal(lines.pop(), "", "ends with a newline");
      const rows = lines.map((l) => JSON.parse(l));
      assert.deepEqual(rows.map((x) => x.id), want.map((e) => e.id));
      for (const x of rows) {
        assert.deepEqual(Object.keys(x), ["id", "split", "prediction"]);
        assert.equal(x.split, "test");
        assert.equal(typeof x.prediction, "string");
      }
      // The test file is part of the data the run read.
      const prov = r.provenance as RunProvenance;
      assert.ok(Object.hasOwn(prov.data?.files ?? {}, "super_glue/CB/test.jsonl"));
    }),
});

Deno.test({
  name:
    "runOne() with predictTest: a fresh run removes an earlier run's predictions before it starts, a resumed one keeps them",
  ignore: !HAVE,
  fn: () =>
    inPredictingRoot(
      { 4: 50, 8: 60, 12: 60 },
      async ({ root, stem, dir, manifest, run }) => {
        const killedAt = (step: number) =>
          assert.rejects(
            () =>
              run((p) => {
                if (p.phase === "train" && p.step === step) throw new Error("killed");
              }),
            /killed/,
          );
        // An earlier run of this name left its files (say it reached step 4, then its checkpoints
        // were cleared for a fresh start); this one fails at step 1, before any evaluation.
        await Deno.mkdir(dir, { recursive: true });
        await Deno.writeTextFile(
          join(dir, "cb.jsonl"),
          '{"id":0,"split":"test","prediction":"x"}\n',
        );
        await Deno.writeTextFile(join(dir, "manifest.json"), '{"cb":{"step":4,"examples":1}}');
        await killedAt(1);
        assert.equal(existsSync(dir), false, "the earlier run's folder is gone");
        assert.deepEqual([...Deno.readDirSync(join(root, "test_predictions"))], []);
        // Killed at step 6: step 4's evaluation wrote CB's file, and step 4's checkpoint exists.
        await killedAt(6);
        assert.deepEqual(await listCheckpoints(join(root, stem, "checkpoints")), [4]);
        assert.deepEqual(manifest(), { cb: { step: 4, examples: 250 } });
        const ino = Deno.statSync(join(dir, "cb.jsonl")).ino;
        // Resumed from it, killed again before the next evaluation: its files stay as they were.
        await killedAt(5);
        assert.deepEqual(manifest(), { cb: { step: 4, examples: 250 } });
        assert.equal(Deno.statSync(join(dir, "cb.jsonl")).ino, ino);
      },
    ),
});

Deno.test("TestPredictionWriter.discard(): the whole folder, and what a killed earlier removal of it left", async () => {
  const root = await Deno.makeTempDir();
  try {
    const dir = join(root, "ci--m--b--glue--mtl--s0--abc");
    assert.equal(await TestPredictionWriter.discard(dir), false, "nothing there");
    await Deno.mkdir(dir);
    await Deno.writeTextFile(join(dir, "cb.jsonl"), "{}\n");
    await Deno.writeTextFile(
      join(dir, TestPredictionWriter.MANIFEST),
      '{"cb":{"step":4,"examples":1}}',
    );
    // A removal of this folder killed part-way, and another run's (not this call's to finish).
    const mine = join(root, ".ci--m--b--glue--mtl--s0--abc.del-123-0123456789ab");
    const other = join(root, ".ci--m--b--glue--mtl--s0--abcd.del-123-0123456789ab");
    for (const d of [mine, other]) {
      await Deno.mkdir(d);
      await Deno.writeTextFile(join(d, "cb.jsonl"), "{}\n");
    }
    assert.equal(await TestPredictionWriter.discard(dir), true);
    assert.deepEqual([...Deno.readDirSync(root)].map((e) => e.name), [basename(other)]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("TestPredictionWriter: a diagnostic follows its host's best; files of steps the run no longer has are removed", async () => {
  const dir = await Deno.makeTempDir();
  const ex = (task: string, n: number, split?: "test_matched") =>
    Array.from({ length: n }, (_, i) => ({
      task,
      id: `${task}/test/${i}`,
      input: "",
      target: "<unk>",
      ...(split === undefined ? {} : { split }),
    }));
  const set = (task: string, taskId: number, n: number, split?: "test_matched") => ({
    task,
    taskId,
    examples: ex(task, n, split),
    inputs: [],
    maxNewTokens: 2,
  });
  const sets = [
    { name: "rte_sg", host: "rte_sg", set: set("rte_sg", 0, 3) },
    { name: "axb", host: "rte_sg", set: set("axb", 0, 2) },
    { name: "mnli", host: "mnli", set: set("mnli", 1, 1, "test_matched") },
  ];
  const decoded: string[] = [];
  const logs: string[] = [];
  const decode = (s: { task: string; examples: unknown[] }, step: number) => {
    decoded.push(`${step}/${s.task}`);
    return Promise.resolve(s.examples.map((_, i) => `p${step}-${i}`));
  };
  const ev = (task: string, step: number, groupScore: number) => ({
    task,
    step,
    groupScore,
    metrics: {},
  });
  const never = () => undefined;
  try {
    const w = new TestPredictionWriter(dir, sets, decode, (l) => logs.push(l));
    const e1 = [ev("rte_sg", 2, 10), ev("mnli", 2, NaN)];
    await w.afterEvaluation([], e1, never);
    // rte_sg drops, mnli's NaN becomes a number (NaN counts as -Infinity): mnli only.
    const e2 = [ev("rte_sg", 4, 5), ev("mnli", 4, 1)];
    await w.afterEvaluation(e1, e2, never);
    assert.deepEqual(decoded, ["2/rte_sg", "2/axb", "2/mnli", "4/mnli"]);
    assert.deepEqual(
      (await Deno.readTextFile(join(dir, "axb.jsonl"))).split("\n"),
      [
        '{"id":"axb/test/0","split":"test","prediction":"p2-0"}',
        '{"id":"axb/test/1","split":"test","prediction":"p2-1"}',
        "",
      ],
    );
    assert.equal(
      await Deno.readTextFile(join(dir, "mnli.jsonl")),
      '{"id":"mnli/test/0","split":"test_matched","prediction":"p4-0"}\n',
    );
    const files = await w.finish({ rte_sg: { step: 2 }, mnli: { step: 4 } });
    assert.deepEqual(files, {
      axb: { step: 2, examples: 2 },
      mnli: { step: 4, examples: 1 },
      rte_sg: { step: 2, examples: 3 },
    });
    assert.equal(logs.length, 0, logs.join("\n"));
    // A resume whose checkpoint has only step 2's evaluations (step 4's session was lost, and
    // its redone evaluation is no best): mnli's file of step 4 is not of the best step (2) any
    // more, and is removed, logged, and left out of the result; the others stay.
    const r = new TestPredictionWriter(dir, sets, decode, (l) => logs.push(l));
    const e2b = [ev("rte_sg", 4, 5), ev("mnli", 4, -Infinity)];
    await r.afterEvaluation(e1, e2b, never);
    assert.equal(decoded.length, 4, "nothing decoded: no new best");
    assert.equal(logs.length, 1);
    assert.match(logs[0]!, /mnli\.jsonl: removed: written at step 4, but mnli's best step is 2/);
    assert.deepEqual(await r.finish({ rte_sg: { step: 2 }, mnli: { step: 2 } }), {
      axb: { step: 2, examples: 2 },
      rte_sg: { step: 2, examples: 3 },
    });
    assert.equal(existsSync(join(dir, "mnli.jsonl")), false);
    // A fresh run in the same folder (no evaluation yet): every earlier file goes.
    const f = new TestPredictionWriter(dir, sets, decode, (l) => logs.push(l));
    await f.afterEvaluation([], [ev("mnli", 2, 0)], never);
    assert.deepEqual(await f.finish({ mnli: { step: 2 } }), { mnli: { step: 2, examples: 1 } });
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
      "manifest.json",
      "mnli.jsonl",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("estimateRun() (--dry-run) adds the test-set decoding of a predictTest run: every evaluation, an upper bound", () => {
  const base = spec({ name: "mtl", label: "mtl", config: {} }, 12); // cb + rte_sg, 2 evaluations
  const on = { ...base, train: { ...base.train, predictTest: true } };
  const cost = (s: RunSpec) => estimateRun(s, methodAccounting, "wasm");
  const a = cost(base);
  const b = cost(on);
  // CB's 250 test examples, SuperGLUE RTE's 3,000 and its diagnostics' (AX-b 1,104, AX-g 356).
  const rows = (250 + 3000 + 1104 + 356) * 2;
  assert.ok(Math.abs(b.totalFlops! - a.totalFlops! - rows * a.inferenceFlopsPerExample!) < 1);
});

Deno.test("runInputs(): the sha256 of each data file, the backbone folder's files and a task tokenizer's, by kind", () => {
  const rec = (c: string) => ({ bytes: 1, sha256: c.repeat(64) });
  const data = {
    dir: "/d",
    kind: "folder" as const,
    sources: [],
    files: {
      "glue/RTE/train.tsv": rec("a"),
      "glue/RTE/dev.tsv": rec("b"),
      // A result written before files were hashed: nothing to compare, left out.
      "glue/RTE/old.tsv": { bytes: 1 },
    },
  };
  const checkpoint = {
    dir: "/ck",
    files: { "config.json": rec("c"), "model.safetensors": rec("d") },
  };
  assert.deepEqual(runInputs(data, checkpoint, rec("e")), {
    "data:glue/RTE/train.tsv": "a".repeat(64),
    "data:glue/RTE/dev.tsv": "b".repeat(64),
    "backbone:config.json": "c".repeat(64),
    "backbone:model.safetensors": "d".repeat(64),
    "tokenizer.json": "e".repeat(64),
  });
  // A random init from a preset: data only.
  assert.deepEqual(Object.keys(runInputs(data, undefined, undefined)), [
    "data:glue/RTE/train.tsv",
    "data:glue/RTE/dev.tsv",
  ]);
});

Deno.test("estimateRun() (--dry-run) counts each evaluation's whole validation splits (official rows), or the cap", () => {
  const base = spec({ name: "mtl", label: "mtl", config: {} }, 12); // cb + rte_sg, 2 evaluations
  const whole = { ...base, train: { ...base.train, evalMaxExamples: null } };
  const capped = { ...base, train: { ...base.train, evalMaxExamples: 100 } };
  const cost = (s: RunSpec) => estimateRun(s, methodAccounting, "wasm");
  const total = cost(whole).totalFlops!;
  const f = cost(whole).inferenceFlopsPerExample!;
  const train = whole.train.steps * whole.train.batchSize * cost(whole).trainFlopsPerExample!;
  // CB's 56 validation examples and SuperGLUE RTE's 277, at each of 2 evaluations (before, 1,000
  // a task whatever its split: 2,000 against 333).
  assert.ok(Math.abs(total - train - (56 + 277) * 2 * f) < 1);
  // A cap of 100: CB's 56 (all), RTE's 100.
  assert.ok(Math.abs(cost(capped).totalFlops! - train - (56 + 100) * 2 * f) < 1);
  // MNLI: both validation splits, matched 9,815 and mismatched 9,832.
  const mnli = cost({ ...whole, benchmark: "glue", tasks: ["mnli"] });
  const mnliTrain = whole.train.steps * whole.train.batchSize * mnli.trainFlopsPerExample!;
  assert.ok(
    Math.abs(mnli.totalFlops! - mnliTrain - (9815 + 9832) * 2 * mnli.inferenceFlopsPerExample!) < 1,
  );
  // Steps not a multiple of evalEvery: the last step's evaluation too (10 steps, every 4: 3).
  const uneven = { ...whole, train: { ...whole.train, steps: 10, evalEvery: 4 } };
  const unevenTrain = 10 * whole.train.batchSize * cost(uneven).trainFlopsPerExample!;
  assert.ok(Math.abs(cost(uneven).totalFlops! - unevenTrain - (56 + 277) * 3 * f) < 1);
  // Under an odd cap, ceil(cap / 2) of each of MNLI's splits, as makeEvalSet takes them: 102.
  const odd = cost({
    ...capped,
    benchmark: "glue",
    tasks: ["mnli"],
    train: { ...capped.train, evalMaxExamples: 101 },
  });
  assert.ok(
    Math.abs(odd.totalFlops! - mnliTrain - 102 * 2 * odd.inferenceFlopsPerExample!) < 1,
  );
});

Deno.test("backboneTokenizerFiles(): the run's tokenizer files by source, checked against what the run read", () =>
  inTempDir(async (dir) => {
    const enc = new TextEncoder();
    const sha = (s: string) => createHash("sha256").update(enc.encode(s)).digest("hex");
    const rec = (s: string) => ({ bytes: s.length, sha256: sha(s) });
    const text = (files: Record<string, Uint8Array> | string) =>
      typeof files === "string" ? files : Object.fromEntries(
        Object.entries(files).map(([k, v]) => [k, new TextDecoder().decode(v)]),
      );
    // task-spm / fixture: a tokenizer.json only, copied as tokenizer.json.
    const tj = join(dir, "tokenizer.json");
    await Deno.writeTextFile(tj, "TJ");
    for (const prefix of ["task-spm:", "fixture:"]) {
      assert.deepEqual(text(await backboneTokenizerFiles(`${prefix}${tj}`, undefined)), {
        "tokenizer.json": "TJ",
      });
      // With the digest taken when the run read it: the same file, or refused.
      assert.deepEqual(text(await backboneTokenizerFiles(`${prefix}${tj}`, undefined, rec("TJ"))), {
        "tokenizer.json": "TJ",
      });
      assert.equal(
        await backboneTokenizerFiles(`${prefix}${tj}`, undefined, rec("T0")),
        `${tj}: changed since the run read it (sha256 differs from the one taken then)`,
      );
      const sp = join(dir, "spiece.model");
      assert.equal(
        await backboneTokenizerFiles(`${prefix}${sp}`, undefined),
        `${prefix}${sp}: not a tokenizer.json`,
      );
      assert.match(
        text(
          await backboneTokenizerFiles(
            `${prefix}${join(dir, "gone", "tokenizer.json")}`,
            undefined,
          ),
        ) as string,
        /gone\/tokenizer\.json: cannot read/,
      );
    }
    assert.equal(
      await backboneTokenizerFiles("default", undefined),
      'tokenizer source "default" is not a file',
    );
    assert.equal(
      await backboneTokenizerFiles("backbone", undefined),
      "tokenizer source backbone: no checkpoint folder recorded",
    );
    // A checkpoint folder with tokenizer.json ("backbone").
    const hf = join(dir, "hf");
    await Deno.mkdir(hf);
    await Deno.writeTextFile(join(hf, "tokenizer.json"), "HF");
    const ck = { dir: hf, files: { "tokenizer.json": rec("HF") } };
    assert.deepEqual(text(await backboneTokenizerFiles("backbone", ck)), {
      "tokenizer.json": "HF",
    });
    // Its run converted spiece.model: the folder has tokenizer.json now (the kind changed).
    assert.equal(
      await backboneTokenizerFiles(CONVERTED_TOKENIZER, ck),
      `${hf}: spiece.model is gone since the run read it`,
    );
    // Changed since the run read it: not copied.
    await Deno.writeTextFile(join(hf, "tokenizer.json"), "HF2");
    assert.equal(
      await backboneTokenizerFiles("backbone", ck),
      `${join(hf, "tokenizer.json")}: changed since the run read it (sha256 differs from ` +
        "provenance.checkpoint)",
    );
    // A spiece.model folder: spiece.model and tokenizer_config.json, each checked.
    const sp = join(dir, "sp");
    await Deno.mkdir(sp);
    await Deno.writeTextFile(join(sp, "spiece.model"), "SP");
    await Deno.writeTextFile(join(sp, "tokenizer_config.json"), "{}");
    const spk = {
      dir: sp,
      files: { "spiece.model": rec("SP"), "tokenizer_config.json": rec("{}") },
    };
    assert.deepEqual(text(await backboneTokenizerFiles(CONVERTED_TOKENIZER, spk)), {
      "spiece.model": "SP",
      "tokenizer_config.json": "{}",
    });
    assert.equal(
      await backboneTokenizerFiles("backbone", spk),
      `${sp}: tokenizer.json is gone since the run read it`,
    );
    await Deno.writeTextFile(join(sp, "tokenizer_config.json"), '{"x":1}');
    assert.match(
      text(await backboneTokenizerFiles(CONVERTED_TOKENIZER, spk)) as string,
      /tokenizer_config\.json: changed since the run read it/,
    );
  }));

Deno.test("the package entry offers runOne (runGrid's runOne, the docs' onProgress)", async () => {
  const root = await import("../mod.ts");
  assert.equal(root.benchmarks.runOne, runOne);
});
