/**
 * `runOne`: train and evaluate one grid cell ({@link RunSpec}) and return its {@link RunResult}.
 *
 * 1. Starts the requested backend and records it.
 * 2. Builds the backbone: a seeded random init of a preset, the tiny span-corruption backbone
 *    (`backbone: "pretrained"` on a non-published preset), a published checkpoint from the hub,
 *    or a Hugging Face folder. A folder is refused before any weight is read when its
 *    config.json is not the named model's, its tokenizer has more ids than the config's
 *    `vocab_size` or other `</s>` and `<pad>` ids than its `eos_token_id` and `pad_token_id`
 *    (`checkTokenizerFits`), or its weights' names, dtypes or shapes (from the safetensors
 *    headers, or the pickle of pytorch_model.bin) do not match the config; from the hub, only
 *    config.json and tokenizer.json (or, without it, spiece.model and tokenizer_config.json) are
 *    downloaded before those checks (the weights after). A random init from a folder reads only
 *    its config.json and tokenizer (from a hub id, downloads only those); its tokenizer's `</s>`
 *    and `<pad>` ids must be the config's too.
 * 3. Tokenizer: the backbone folder's `tokenizer.json`, else its `spiece.model` converted in
 *    memory as transformers does (`loadFolderTokenizer`; the folder is not written to, the log
 *    says so and the result records `backbone:spiece.model`); a folder of weights with neither
 *    is an error: its embedding rows follow its own vocabulary. A random init of a tiny preset uses the
 *    task-corpus SentencePiece tokenizer that its pretrained twin uses (`ensureTaskTokenizer`,
 *    cached; needs `spm_train` once), falling back to the offline GLUE tokenizer
 *    (`shared/fixtures/tokenizer/unigram-glue-4k`) without `spm_train`; the result records which
 *    (`RunResult.tokenizer`). A random-init backbone gets the tokenizer's vocabulary rounded up
 *    to a multiple of 128.
 * 4. Creates the method, trains on the examples-proportional (or temperature) mixture of the
 *    run's tasks, evaluates every `evalEvery` steps, resumes from `<outDir>/checkpoints`.
 * 5. Returns losses, every evaluation, the per-task best, benchmark averages, parameter and FLOP
 *    accounting, throughput and provenance (with the task files read, `provenance.data`, and the
 *    checkpoint resumed from, `provenance.resumedFrom`). The run's clock (`startedAt`,
 *    `wallSeconds`) starts after any offline backbone pretraining. `wallSeconds` is the whole
 *    run's: after a resume, the earlier sessions' wall time up to the checkpoint resumed from
 *    (its `state.json` `wallMs`; trainer `TrainOutcome.resumedWallSeconds`) plus this session's;
 *    `startedAt` is this session's. The throughput totals
 *    (`trainTokens`, `trainSeconds`) are the whole run's, carried by its checkpoints; after a
 *    resume from a checkpoint written before checkpoints carried them (trainer 50bcbf7) they are
 *    left out, and `tokensPerSecond` is the rate of the steps trained since.
 * 6. A stop request (`benchmarks/trainer.ts` `requestStop`) pending when training returns or
 *    made before the attention mass ends (a signal during the last step's save or after it: the
 *    bench listens until the run's result is written) stops a run that measures the attention
 *    mass (a method with self-attention prefixes: {@link measuresAttentionMass}) before or
 *    between the batches of it when the last step's checkpoint exists
 *    (`TrainingInterruptedError`, `attentionMassOwed`): no result, and a resume redoes only the
 *    attention mass. A run that measures none returns its result; the request stops the grid.
 *
 * Seeds (all from `spec.seed` via `seedFor`): `"backbone-init"`, `"method-init"`, `"data"`,
 * `"dropout:<step>"` (in the trainer).
 *
 * @module
 */
import { existsSync } from "node:fs";
import { createHash } from "node:crypto";
import { dirname, join, resolve } from "node:path";
import { discardFolder, makeHeldTempDir, swapFolderInto, writeFileAtomic } from "../model/fs.ts";
import {
  isUnpublishedPreset,
  preset,
  PUBLISHED_PRESETS,
  type T5Config,
  t5ConfigToHf,
} from "../model/config.ts";
import { CheckpointError } from "../model/checkpoint_error.ts";
import { disposeT5, initT5, type T5Model, t5StateDict } from "../model/t5.ts";
import { type CheckpointFileRecord, fileDigest, saveHfFolder } from "../model/checkpoint.ts";
import { T5_UNK_SURFACE, T5Tokenizer } from "../model/tokenizer.ts";
import {
  checkpointFiles,
  type CheckpointFolder,
  checkTokenizerFits,
  fetchHubConfigFiles,
  folderTokenizerFiles,
  loadCheckpoint,
  loadFolderTokenizer,
  locateCheckpoint,
  readFolderConfig,
} from "../model/pretrained.ts";
import { explainBackendFailure, selectBackend } from "../model/backend.ts";
import { getMethod } from "../model/methods/mod.ts";
import { saveMethodVariables } from "../model/methods/weights.ts";
import { methodAccounting } from "../model/methods/accounting.ts";
import type { FlopPlan } from "../model/accounting.ts";
import {
  BENCHMARK_TASKS,
  benchmarkAverage,
  evalSplits,
  getTask,
  groupScore,
  invalidPredictions,
  labelWords,
  loadExamples,
  scoreTask,
} from "../tasks/mod.ts";
import { MixtureSampler } from "../tasks/mixture.ts";
import type { Example, TaskSplit } from "../tasks/types.ts";
import {
  backboneHfRef,
  type BestEval,
  conditionedTasks,
  FINAL_WEIGHTS_FOLDER,
  missingTestFiles,
  runFileName,
  runId,
  type RunOneOptions,
  type RunResult,
  type RunSpec,
  SAVED_BACKBONE_FOLDER,
  type SavedWeights,
  type TaskEval,
  TEST_DIAGNOSTICS,
  type TestPredictions,
  testPredictionsDir,
  testSplits,
  trainedTaskIds,
  trainedTasks,
  weightsDir,
} from "./spec.ts";
import { seedFor } from "./rng.ts";
import { ClaimLostError, type ClaimStopOption } from "./run_claim.ts";
import * as tf from "@tensorflow/tfjs";
import { attentionMass } from "../model/methods/attention_mass.ts";
import type { MethodInstance } from "../model/method.ts";
import type { AttentionMass } from "./spec.ts";
import {
  collate,
  disposeBatch,
  type EncodedExample,
  encodeExample,
  stripTaskPrefix,
  truncateWithEos,
} from "./batching.ts";
import {
  MixtureBatches,
  stopRequested,
  train,
  trainedVariables,
  TrainingInterruptedError,
} from "./trainer.ts";
import {
  benchmarkAverages,
  bestPerTask,
  decodeSet,
  type EvalSet,
  evaluate,
  improvesOn,
  makeEvalSet,
  type Scorer,
} from "./evaluator.ts";
import {
  type CheckpointProvenance,
  codeGitState,
  collectProvenance,
  type DataProvenance,
  dataProvenance,
  resumeRecord,
} from "./provenance.ts";
import { listCheckpoints } from "./checkpointing.ts";
import {
  defaultCacheDir as pretrainCacheDir,
  ensurePretrainedBackbone,
  ensureTaskTokenizer,
  PRETRAIN_DEFAULTS,
  referenceTokenizer,
  SpmUnavailableError,
} from "./pretrain.ts";

/**
 * The offline tokenizer of a random-initialised published preset, and the one a tiny preset's
 * falls back to without `spm_train` (see {@link referenceTokenizer}).
 *
 * @returns the file's path
 */
export function defaultTokenizer(): string {
  return referenceTokenizer();
}

/** Hub repository of a published preset (`t5-small` → `google-t5/t5-small`). */
export function hubIdOfPreset(name: string): string {
  return name.startsWith("t5-v1_1") ? `google/${name}` : `google-t5/${name}`;
}

/** A built backbone and where it came from. */
interface Backbone {
  model: T5Model;
  tokenizer: T5Tokenizer;
  source: string;
  /** How the tokenizer was chosen. */
  tokenizerSource: string;
  /**
   * The size and sha256 of the `tokenizer.json` read for a `task-spm:` or `fixture:` source
   * (a folder's own tokenizer files are in {@link Backbone.checkpoint}), which a kept backbone's
   * copy must match ({@link backboneTokenizerFiles}).
   */
  tokenizerFile?: CheckpointFileRecord;
  /** The checkpoint folder's files read (recorded as `provenance.checkpoint`). */
  checkpoint?: CheckpointProvenance;
}

/** A tokenizer and how it was chosen (recorded as `RunResult.tokenizer`). */
interface ChosenTokenizer {
  tokenizer: T5Tokenizer;
  source: string;
  /** The digest of a `task-spm:` or `fixture:` source's file ({@link Backbone.tokenizerFile}). */
  file?: CheckpointFileRecord;
}

/** A `tokenizer.json` read as the run's tokenizer, with its digest. */
async function tokenizerFromFile(path: string, source: string): Promise<ChosenTokenizer> {
  const tokenizer = await T5Tokenizer.fromFile(path);
  return { tokenizer, source, file: await fileDigest(path) };
}

async function fixtureTokenizer(why: string): Promise<ChosenTokenizer> {
  const file = defaultTokenizer();
  if (!existsSync(file)) {
    throw new Error(
      `benchmarks/run_one.ts: no tokenizer: ${why} and the offline tokenizer ${file} is missing (set HYPERPROMPT_SHARED)`,
    );
  }
  return await tokenizerFromFile(file, `fixture:${file}`);
}

/** What `RunResult.tokenizer` says of a backbone folder's tokenizer converted from spiece.model. */
export const CONVERTED_TOKENIZER = "backbone:spiece.model";

/**
 * A backbone folder's own tokenizer (`backbone`), or its spiece.model converted in memory
 * (`backbone:spiece.model`, with one line on stderr saying so); undefined when it has neither.
 */
async function ownTokenizer(folder: string): Promise<ChosenTokenizer | undefined> {
  const own = await loadFolderTokenizer(folder);
  if (own === undefined) return undefined;
  if (own.convertedFrom !== undefined) console.error(own.note);
  return { tokenizer: own.tokenizer, source: ownTokenizerSource(own.convertedFrom) };
}

/** `RunResult.tokenizer` of a backbone folder's own tokenizer, converted from `convertedFrom` or not. */
function ownTokenizerSource(convertedFrom: string | undefined): string {
  return convertedFrom === undefined ? "backbone" : CONVERTED_TOKENIZER;
}

async function folderTokenizer(folder: string | undefined): Promise<ChosenTokenizer> {
  const own = folder === undefined ? undefined : await ownTokenizer(folder);
  if (own !== undefined) return own;
  return await fixtureTokenizer(
    `${folder ?? "the backbone folder"} has neither tokenizer.json nor spiece.model`,
  );
}

/** Whether a run's backbone is the offline span-corruption one (a tiny preset, pretrained). */
function usesTinyPretrained(spec: RunSpec): boolean {
  return spec.backbone === "pretrained" && isUnpublishedPreset(spec.model);
}

/**
 * The tokenizer of a random-init run. For a tiny (non-published) preset: the task-corpus
 * tokenizer that the pretrained backbone of the same corpus uses (`ensureTaskTokenizer`, vocabulary
 * size from `spec.pretrain`), so random and pretrained runs share one vocabulary; it is trained
 * once with `spm_train` and cached. Without `spm_train` (and no cached file) the offline GLUE
 * fixture tokenizer is used; without either, an error. Other models: the fixture tokenizer (or
 * the model folder's own).
 *
 * @param spec the run
 * @param dataDir data root (the tokenizer's corpus)
 * @param tokFolder the model folder of an `{hf}` model, if any
 * @returns the tokenizer and its source (`task-spm:<file>`, `fixture:<file>` or `backbone`)
 */
export async function randomInitTokenizer(
  spec: RunSpec,
  dataDir: string,
  tokFolder?: string,
): Promise<ChosenTokenizer> {
  if (tokFolder !== undefined || typeof spec.model !== "string") {
    return await folderTokenizer(tokFolder);
  }
  if (PUBLISHED_PRESETS.includes(spec.model as never)) {
    return await fixtureTokenizer(
      `${spec.model} is random-initialised from no folder (the hub's tokenizer is not used)`,
    );
  }
  try {
    const tok = await ensureTaskTokenizer(dataDir, {
      vocabSize: spec.pretrain?.vocabSize ?? PRETRAIN_DEFAULTS.vocabSize,
      cacheDir: pretrainCacheDir(),
      log: () => {},
    });
    return await tokenizerFromFile(tok.path, `task-spm:${tok.path}`);
  } catch (e) {
    if (!(e instanceof SpmUnavailableError)) throw e;
    return await fixtureTokenizer(`${e.message}`);
  }
}

/**
 * The offline span-corruption backbone of a tiny preset, built (and cached) on first use with
 * the run's `pretrain` overrides on the pretraining's own backend.
 *
 * @param spec the run (`backbone: "pretrained"`, a non-published preset)
 * @param dataDir data root (the corpus)
 * @returns the backbone folder
 */
export async function pretrainedFolder(spec: RunSpec, dataDir: string): Promise<string> {
  return await ensurePretrainedBackbone(spec.model as string, dataDir, {
    ...(spec.pretrain ?? {}),
    // Building: the start and the end (no per-step lines); a cache hit: silent.
    log: (l) => {
      if (!l.includes(" step ") && !l.includes("using cached")) console.error(l);
    },
  });
}

/**
 * The shape fields a backbone's config.json must share with the model preset a run names, by
 * their config.json names (`model/config.ts` `t5ConfigToHf` maps the configuration to them).
 */
const SHAPE_FIELDS = [
  "d_model",
  "d_kv",
  "d_ff",
  "num_heads",
  "num_layers",
  "num_decoder_layers",
  "feed_forward_proj",
] as const;

/**
 * Refuses a backbone folder whose architecture is not the named model's: its weights would train
 * under the preset's label (and the dry run's estimate would be the preset's), as when a profile
 * naming `t5-v1_1-large` is given a Base folder.
 *
 * @param folder the backbone folder
 * @param config its config.json
 * @param model the run's model preset
 * @throws CheckpointError naming the folder's config.json (its `file`), the preset and each
 *   field that differs by its config.json name (the first is its `field`)
 */
export function checkBackboneShape(folder: string, config: T5Config, model: string): void {
  const got = t5ConfigToHf(config);
  const want = t5ConfigToHf(preset(model));
  const fields = SHAPE_FIELDS.filter((f) => got[f] !== want[f]);
  if (fields.length > 0) {
    const file = `${folder}/config.json`;
    const diff = fields.map((f) => `${f} ${got[f]} (${model}: ${want[f]})`);
    throw new CheckpointError(
      `${file} is not a ${model}: ${diff.join(", ")}; name the model that matches ` +
        `the backbone, or give the backbone of ${model}`,
      { file, field: fields[0]! },
    );
  }
}

/**
 * Build the backbone of a run (see the module doc for the cases).
 *
 * @param spec the run
 * @param dataDir data root (the pretraining corpus of the tiny pretrained backbone)
 * @returns model, tokenizer and a description of the weights
 */
export async function buildBackbone(spec: RunSpec, dataDir: string): Promise<Backbone> {
  const dropoutRate = spec.train.dropout;
  // A checkpoint's folder; one from the hub holds only its config.json and tokenizer.json until
  // they pass the checks below (a T5-XXL's weights are 44 GB to download).
  let found: CheckpointFolder | undefined;
  const hf = backboneHfRef(spec);
  if (hf !== undefined) found = await locateCheckpoint(hf);
  else if (spec.backbone === "pretrained" && typeof spec.model === "string") {
    if (PUBLISHED_PRESETS.includes(spec.model as never)) {
      const hubId = hubIdOfPreset(spec.model);
      found = { dir: await fetchHubConfigFiles(hubId), hubId };
    } else found = { dir: await pretrainedFolder(spec, dataDir) };
  }
  if (found !== undefined) {
    // Everything that can refuse the folder is checked before any weight is read or downloaded
    // (a T5-XXL's are 44 GB): its own tokenizer (trained weights index their embedding rows by
    // their own vocabulary, so the fixture's is never used), its config against the named model
    // and the tokenizer, then the weights' names, dtypes and shapes from their headers.
    const model = spec.model;
    const ck = await loadCheckpoint(found, {
      log: (l) => console.error(l),
      ...(typeof model === "string"
        ? { checkConfig: (config: T5Config) => checkBackboneShape(found.dir, config, model) }
        : {}),
      configOverrides: { dropoutRate },
    });
    let files;
    try {
      files = await checkpointFiles(ck.dir, { weights: true });
    } catch (e) {
      disposeT5(ck.model);
      throw e;
    }
    return {
      model: ck.model,
      tokenizer: ck.tokenizer,
      source: ck.dir,
      tokenizerSource: ownTokenizerSource(ck.convertedFrom),
      checkpoint: checkpointRecord(ck.dir, found.hubId, files),
    };
  }
  // Random init: a preset, or the configuration of an HF folder (its weights are not read).
  let base: T5Config;
  let baseSource: string;
  let tokFolder: string | undefined;
  let hubIdOf: string | undefined;
  if (typeof spec.model === "object") {
    ({ dir: tokFolder, hubId: hubIdOf } = await locateCheckpoint(spec.model.hf));
    ({ config: base, path: baseSource } = await readFolderConfig(tokFolder));
  } else {
    base = preset(spec.model);
    baseSource = `the preset ${spec.model}`;
  }
  const { tokenizer, source: tokenizerSource, file: tokenizerFile } = await randomInitTokenizer(
    spec,
    dataDir,
    tokFolder,
  );
  const vocabSize = Math.ceil(tokenizer.vocabSize / 128) * 128;
  const config = { ...base, vocabSize, dropoutRate };
  // The tokenizer ends texts with its own </s>; training and evaluation use the config's ids.
  checkTokenizerFits(tokenizer, config, baseSource);
  // The folder's config and tokenizer (its weights are not read), hashed before any tensor.
  const checkpoint = tokFolder === undefined ? undefined : checkpointRecord(
    tokFolder,
    hubIdOf,
    await checkpointFiles(tokFolder, { weights: false }),
  );
  const seed = seedFor(spec.seed, "backbone-init");
  const model = initT5(config, { seed });
  return {
    model,
    tokenizer,
    source: `random(seed=${spec.seed})`,
    tokenizerSource,
    ...(tokenizerFile === undefined ? {} : { tokenizerFile }),
    ...(checkpoint === undefined ? {} : { checkpoint }),
  };
}

/** {@link CheckpointProvenance} of a folder (absolute: a relative `hf` is the cwd's). */
function checkpointRecord(
  dir: string,
  hubId: string | undefined,
  files: CheckpointProvenance["files"],
): CheckpointProvenance {
  return { dir: resolve(dir), ...(hubId === undefined ? {} : { hubId }), files };
}

/**
 * Train and evaluate one run.
 *
 * @param spec the run
 * @param opts output folder (checkpoints), data root, progress callback; and `runGrid`'s
 *   `claimLost` check ({@link ClaimStopOption}): once it gives a reason the run stops after its
 *   step (or evaluation) in progress, saving no checkpoint and writing no test prediction
 * @returns the run's result
 * @throws NonFiniteLossError (from the trainer) on a NaN/Inf loss; the caller writes no row
 * @throws NonFiniteVariablesError (from the trainer) on NaN/Inf weights after an update
 * @throws ClaimLostError once `opts.claimLost` gives a reason
 */
export async function runOne(
  spec: RunSpec,
  opts: RunOneOptions & ClaimStopOption,
): Promise<RunResult> {
  try {
    return await runOneWith(spec, opts, {
      scoreTask,
      groupScore,
      benchmarkAverage,
      invalidPredictions,
    });
  } catch (e) {
    throw explainBackendFailure(e, `run ${spec.id}`);
  }
}

/** Task metrics and the benchmark average (`tasks/mod.ts`; injectable for tests). */
export interface RunScorer extends Scorer {
  benchmarkAverage(benchmark: "glue" | "super_glue", groupScores: Record<string, number>): number;
}

/**
 * A `log` for `model/backend.ts` `selectBackend` that prints its summary line (`backend:
 * wasm+blas (tfjs "wasm", 2 threads, OpenBLAS …)`, a WebGPU adapter's description, `fallback
 * adapter` for a software one) without its other notes (the result's provenance keeps them) but
 * with the one that says why OpenBLAS was skipped (pure wasm is about 7× slower), and only when
 * it differs from the last one it printed: once per grid, again where a run's backend differs,
 * so that a slow run's reason is on screen, not only in its result JSON.
 *
 * @param print where the line goes
 * @returns the `log`
 */
export function backendSayer(print: (line: string) => void): (summary: string) => void {
  let said: string | undefined;
  return (summary) => {
    const [first, ...notes] = summary.split("\n");
    const why = notes.map((n) => n.trim()).filter((n) => n.startsWith("BLAS skipped: "));
    const line = [first!, ...why.map((n) => `  ${n}`)].join("\n");
    if (line === said) return;
    said = line;
    print(line);
  };
}

/** This process's {@link backendSayer}, to stderr. */
const sayBackend = backendSayer((line) => console.error(line));

/**
 * {@link runOne} with injected metrics.
 *
 * @param spec the run
 * @param opts output folder, data root, progress callback
 * @param scorer task metrics and benchmark average
 */
export async function runOneWith(
  spec: RunSpec,
  opts: RunOneOptions & ClaimStopOption,
  scorer: RunScorer,
): Promise<RunResult> {
  // Its id names what it trains in the result, the file name and the tables: a spec changed
  // after its id was computed (another method or setting under the old id) would be mislabelled.
  const hashed = runId(spec);
  if (hashed !== spec.id) {
    throw new Error(
      `run ${spec.id}: its spec hashes to ${hashed}, not to its id: changed after the id was ` +
        "computed? Give it the id of what it trains (spec.ts runId)",
    );
  }
  // The code this run executes: the state when this process loaded it, whatever changed since.
  const git = codeGitState();
  // First, before anything that can fail: a fresh start's stale test predictions.
  await discardStalePredictions(spec, opts);
  // Pretraining (first use only) selects its own backend: do it before this run's backend, and
  // before the run's clock starts (its time is the backbone's, in the cache's pretrain.json).
  if (usesTinyPretrained(spec)) await pretrainedFolder(spec, opts.dataDir);
  const startedAt = new Date();
  const t0 = performance.now();
  const backend = await selectBackend(spec.backend, { log: opts.backendLog ?? sayBackend });
  const backbone = await buildBackbone(spec, opts.dataDir);
  // From here on every failure must release the backbone (the grid goes on in this process).
  try {
    return await runOnBackbone(spec, opts, scorer, backbone, { git, startedAt, t0, backend });
  } finally {
    disposeT5(backbone.model);
  }
}

/**
 * Runs a method's `create`, releasing what it allocated when it throws: a `create` that fails
 * after making some of its variables (or intermediate tensors outside a `tf.tidy`) would leave
 * them alive for the rest of the grid, since no instance comes back to dispose. Variables are not
 * tracked by tfjs scopes (`tf.tidy` never disposes them), so the ones registered during the call
 * are found by name in the engine's variable registry and disposed; other tensors made during the
 * call are released by ending the tfjs scope opened around it. On success nothing is disposed:
 * the instance owns what it made (its `dispose`), as without this wrapper.
 *
 * @param methodName the method's registry name, for the error
 * @param context where, e.g. `run <id>`
 * @param create the call to `method.create`
 * @returns the instance
 * @throws Error `<context>: method "<name>" could not be created: <cause>` (the original as
 *   `cause`); a `WebAssembly.RuntimeError` is rethrown as it is (`explainBackendFailure` reads it)
 */
export function createReleasingOnThrow(
  methodName: string,
  context: string,
  create: () => MethodInstance,
): MethodInstance {
  const engine = tf.engine();
  const varsBefore = new Set(Object.keys(engine.registeredVariables));
  engine.startScope(`create ${methodName}`);
  let instance: MethodInstance;
  try {
    instance = create();
  } catch (e) {
    try {
      // Disposes the scope's non-variable tensors, then the variables registered since.
      engine.endScope();
      for (const [name, v] of Object.entries(engine.registeredVariables)) {
        if (!varsBefore.has(name)) v.dispose();
      }
    } catch {
      // A backend that has stopped (wasm out of memory) cannot release: the cause matters more.
    }
    if (e instanceof WebAssembly.RuntimeError) throw e;
    throw new Error(
      `${context}: method "${methodName}" could not be created: ${
        e instanceof Error ? e.message : String(e)
      }`,
      { cause: e },
    );
  }
  // Ends the scope keeping every tensor it tracked: what the instance holds stays alive.
  engine.endScope([...engine.state.activeScope.track]);
  return instance;
}

/**
 * The warning for a run whose `train.maxTargetLength` is shorter than a label of a task it
 * trains: such targets are cut (`batching.ts` `encodeExample` truncates to the length, EOS kept),
 * so no prediction can match that label, and the task's score falls without a word otherwise.
 * A warning, not a refusal: a tiny regression profile may cut labels on purpose, and a baseline
 * made so stands as made (the ci profile's 7 tokens fit every label of its task tokenizer,
 * CoLA's "unacceptable" taking all 7).
 *
 * @param spec the run, named in the warning
 * @param maxTargetLength the run's target length
 * @param tasks the tasks it trains
 * @param tokens a label's length in tokens as targets are encoded (EOS included)
 * @returns the warning naming the field, the labels cut and the length they need; undefined
 *   when every label fits
 */
export function labelsCut(
  spec: Pick<RunSpec, "id">,
  maxTargetLength: number,
  tasks: readonly string[],
  tokens: (word: string) => number,
): string | undefined {
  const cut = tasks.flatMap((task) =>
    labelWords(task).map((word) => ({ task, word, n: tokens(word) }))
  ).filter((l) => l.n > maxTargetLength);
  if (cut.length === 0) return undefined;
  const longest = cut.reduce((a, b) => (b.n > a.n ? b : a));
  return `run ${spec.id}: train.maxTargetLength ${maxTargetLength} is shorter than ` +
    `${cut.length} label(s) (${
      cut.slice(0, 3).map((l) => `${l.task} "${l.word}": ${l.n} tokens with EOS`).join(", ")
    }${cut.length > 3 ? ", …" : ""}): those targets are cut and no prediction can match them; ` +
    `${longest.n} fits every label`;
}

/**
 * The warning for a run whose task tokenizer cannot spell a label word of a task it trains, so
 * that no prediction can match it: the word's tokens (EOS left out) decode, as the evaluator
 * decodes predictions (`evaluator.ts`: special tokens dropped, `<unk>` as " ⁇ "), to another
 * string (a character outside the vocabulary, say; two words of the same tokens decode alike, so
 * one of them is named). A warning like {@link labelsCut}'s: the run trains, and the task's score
 * cannot reach its top.
 *
 * @param spec the run, named in the warning
 * @param tasks the tasks it trains
 * @param encode a word's token ids as targets are encoded (EOS last, if any)
 * @param eosTokenId the EOS id, left out before decoding
 * @param decode token ids to text as the evaluator decodes
 * @returns the warning, or undefined when every label word decodes to itself and differs
 */
export function unreachableLabels(
  spec: Pick<RunSpec, "id">,
  tasks: readonly string[],
  encode: (word: string) => number[],
  eosTokenId: number,
  decode: (ids: number[]) => string,
): string | undefined {
  const problems: string[] = [];
  for (const task of tasks) {
    for (const word of labelWords(task)) {
      const ids = encode(word);
      const back = decode(ids[ids.length - 1] === eosTokenId ? ids.slice(0, -1) : ids);
      if (back !== word) problems.push(`${task} "${word}" decodes as ${JSON.stringify(back)}`);
    }
  }
  if (problems.length === 0) return undefined;
  return `run ${spec.id}: the task tokenizer cannot spell ${problems.length} label word(s) (${
    problems.slice(0, 3).join("; ")
  }${problems.length > 3 ? "; …" : ""}): no prediction can match them, so those classes are ` +
    "never scored right";
}

/** What {@link runOneWith} has measured and chosen before the backbone is built. */
interface RunStart {
  /** The code the run executes. */
  readonly git: { sha: string; dirty: boolean };
  /** When the run's clock started (after any offline pretraining). */
  readonly startedAt: Date;
  /** `performance.now()` at `startedAt`. */
  readonly t0: number;
  /** The backend record. */
  readonly backend: Awaited<ReturnType<typeof selectBackend>>;
}

/**
 * The part of {@link runOneWith} after the backbone is built: method, data, training,
 * evaluation, result. Disposes the method instance; the caller disposes the backbone.
 */
async function runOnBackbone(
  spec: RunSpec,
  opts: RunOneOptions & ClaimStopOption,
  scorer: RunScorer,
  { model, tokenizer, source, tokenizerSource, tokenizerFile, checkpoint }: Backbone,
  { git, startedAt, t0, backend }: RunStart,
): Promise<RunResult> {
  // The bench preflight's micro-batch for this device (not in the spec: the run id stays).
  const t = opts.microBatchSize === undefined
    ? spec.train
    : { ...spec.train, microBatchSize: opts.microBatchSize };
  const config = model.config;
  const method = getMethod(spec.method.name);
  const methodCfg = method.parseConfig(spec.method.config, `run ${spec.id}: method.config`);
  const noEos = (ids: number[]) =>
    ids[ids.length - 1] === config.eosTokenId ? ids.slice(0, -1) : ids;
  // Every trained task, in mixture order: the evaluated ones, then the train-only ones (DPR),
  // which are in the mixture but never evaluated; each carries the task id `trainedIds` gives,
  // an index into `conditioned`, the tasks the method's per-task variables are for (DPR shares
  // WSC's where the run has WSC).
  const trained = trainedTasks(spec);
  const trainedIds = trainedTaskIds(spec);
  const conditioned = conditionedTasks(spec);
  const cut = labelsCut(spec, t.maxTargetLength, trained, (w) => tokenizer.encode(w).length);
  if (cut !== undefined) console.error(`warning: ${cut}`);
  const unspelled = unreachableLabels(
    spec,
    trained,
    (w) => tokenizer.encode(w),
    config.eosTokenId,
    (ids) => tokenizer.decode(ids, { skipSpecialTokens: true, unknownAs: T5_UNK_SURFACE }),
  );
  if (unspelled !== undefined) console.error(`warning: ${unspelled}`);
  const labelTokenIds = new Map(
    // One id list per label word: a class-label prompt row is the mean of a word's sub-words.
    conditioned.map((task) => [task, labelWords(task).map((w) => noEos(tokenizer.encode(w)))]),
  );
  const instance = createReleasingOnThrow(spec.method.name, `run ${spec.id}`, () =>
    method.create({
      config,
      tasks: conditioned,
      seed: seedFor(spec.seed, "method-init"),
      backbone: model.params,
      labelTokenIds,
    }, methodCfg));
  try {
    const prefixes = trained.map((task) => getTask(task).prefix);
    const encodeOpts = {
      maxInputLength: t.maxInputLength,
      maxTargetLength: t.maxTargetLength,
      eosTokenId: config.eosTokenId,
      keepTaskPrefix: instance.keepTaskPrefix,
    };
    const trainSets = await Promise.all(
      trained.map((task) => loadExamples(task, "train", opts.dataDir)),
    );
    const sampler = new MixtureSampler(
      trained.map((task, i) => ({ task, size: trainSets[i]!.length })),
      {
        kind: t.mixture,
        temperature: t.temperature,
        seed: seedFor(spec.seed, "data"),
        batchSize: t.batchSize,
      },
    );
    const batches = new MixtureBatches(
      sampler,
      trainSets,
      // The sampler's index is the task's place in `trained`; the example carries its task id.
      (ex: Example, i: number) =>
        encodeExample(ex, trainedIds[i]!, tokenizer, { ...encodeOpts, taskPrefix: prefixes[i]! }),
      config,
    );
    /** An evaluation set of `task`'s examples (each split's) under task id `taskId`. */
    const setOf = (
      task: string,
      taskId: number,
      bySplit: ReadonlyArray<readonly [TaskSplit, Example[]]>,
      cap: number | null,
    ) =>
      makeEvalSet(task, taskId, bySplit, {
        cap,
        maxTargetLength: t.maxTargetLength,
        labels: {
          words: labelWords(task),
          tokenIds: labelWords(task).map((w) => tokenizer.encode(w)),
        },
        encodeInput: (ex) => {
          const text = instance.keepTaskPrefix
            ? ex.input
            : stripTaskPrefix(ex.input, getTask(task).prefix);
          return truncateWithEos(tokenizer.encode(text), t.maxInputLength, config.eosTokenId);
        },
      });
    const evalSets: EvalSet[] = [];
    for (const [taskId, task] of spec.tasks.entries()) {
      const bySplit: [TaskSplit, Example[]][] = [];
      for (const split of evalSplits(task)) {
        bySplit.push([split, await loadExamples(task, split, opts.dataDir)]);
      }
      evalSets.push(setOf(task, taskId, bySplit, t.evalMaxExamples));
    }
    // Test-set predictions (`train.predictTest`): every test example, loaded and encoded once,
    // before training, so that a missing test file fails the run before any step.
    const decodeOpts = {
      // As the evaluation decodes (see below).
      batchSize: t.microBatchSize ?? t.batchSize,
      ids: config,
      tokenizer,
    };
    // Each decode batch of an evaluation's validation or test sets, to the progress callback.
    const decoded = (split: "validation" | "test", step: number) =>
      opts.onProgress === undefined ? {} : {
        onDecoded: (task: string, done: number, total: number) =>
          opts.onProgress?.({
            phase: "decode",
            step,
            totalSteps: t.steps,
            split,
            task,
            done,
            total,
          }),
      };
    const predictions = spec.train.predictTest === true
      ? await testPredictionWriter(
        spec,
        opts,
        setOf,
        (set, step, shouldStop) =>
          decodeSet(model, instance, set, {
            ...decodeOpts,
            ...decoded("test", step),
            step,
            shouldStop,
          }),
      )
      : undefined;
    const data = await dataProvenance(opts.dataDir, [
      ...dataFiles(trained),
      ...(predictions?.files ?? []),
    ]);
    const acc = methodAccounting(config, spec.method.name, methodCfg, conditioned.length, {
      inputLength: t.maxInputLength,
      targetLength: t.maxTargetLength,
    });
    // Before training: the instantiated trained variables must match the closed-form count.
    const trainedNow = [...trainedVariables(model, instance).values()].reduce(
      (a, v) => a + v.size,
      0,
    );
    if (trainedNow !== acc.trained) {
      throw new Error(
        `benchmarks/run_one.ts: run ${spec.id} (${
          runFileName(spec)
        }): ${spec.method.name} trains ${trainedNow} parameters but its accounting says ${acc.trained}`,
      );
    }
    // Another process took the run's claim over (this one was paused past the stale window):
    // stop at once, saving nothing (a step's onStep and an evaluation's end come before the
    // trainer's checkpoint of that step; the folder is the new holder's). Not a stop request:
    // the trainer saves a checkpoint only for those.
    const claimCheck = (step: number): void => {
      const lost = opts.claimLost?.();
      if (lost !== undefined) throw new ClaimLostError(lost, step);
    };
    const outcome = await train({
      model,
      instance,
      train: t,
      seed: spec.seed,
      // Named by task id, as the batch's taskIds are: the trained tasks carrying it (`wsc+dpr`
      // where DPR shares WSC's).
      taskNames: conditioned.map((_, id) =>
        trained.filter((_, i) => trainedIds[i] === id).join("+")
      ),
      source: batches,
      checkpointDir: join(opts.outDir, "checkpoints"),
      ...(opts.checkpointMinutes === undefined
        ? {}
        : { checkpointMinutes: opts.checkpointMinutes }),
      runKey: spec.id,
      inputs: runInputs(data, checkpoint, tokenizerFile),
      code: { ...git, backend: backend.name },
      // The run's clock: checkpoints record the wall time up to them from here.
      clockStart: t0,
      evaluate: async (step, shouldStop, previous) => {
        let done: TaskEval[];
        try {
          done = await evaluate(model, instance, evalSets, {
            step,
            // The trainer's stop request, or a lost claim: an evaluation in progress is abandoned
            // (the lost claim's error replaces the stop's below, so that nothing is saved).
            shouldStop: () => opts.claimLost?.() ?? shouldStop(),
            // With a micro-batch (the profile's or the preflight's), evaluation too runs that many
            // rows at a time (its scores are per example; a batch of the full size may not fit
            // where training did not).
            ...decodeOpts,
            ...decoded("validation", step),
            scorer,
          });
        } catch (e) {
          claimCheck(step);
          throw e;
        }
        claimCheck(step);
        // The test sets of the tasks whose best this evaluation is; a stop in their decoding
        // abandons the evaluation as one in the validation's does (redone in full on resume).
        await predictions?.writer.afterEvaluation(previous, done, shouldStop);
        return done;
      },
      onStep: (step, loss) => {
        opts.onProgress?.({ phase: "train", step, totalSteps: t.steps, loss });
        claimCheck(step);
      },
      onEval: (step) => opts.onProgress?.({ phase: "eval", step, totalSteps: t.steps }),
      onResume: (step) => opts.onProgress?.({ phase: "resume", step, totalSteps: t.steps }),
    });
    claimCheck(t.steps);
    // `train.saveWeights`: the last step's method variables, into the work folder (the runner
    // moves them out once the run is done).
    const weights = spec.train.saveWeights === true
      ? await saveFinalWeights(spec, opts.outDir, model, instance, {
        tokenizerSource,
        ...(tokenizerFile === undefined ? {} : { tokenizerFile }),
        ...(checkpoint === undefined ? {} : { checkpoint }),
      })
      : undefined;
    const best = bestPerTask(outcome.evals);
    const testPredictions: TestPredictions | undefined = predictions === undefined
      ? undefined
      : { dir: predictions.dir, files: await predictions.writer.finish(best) };
    const averages = benchmarkAverages(
      spec.benchmark,
      best,
      BENCHMARK_TASKS[spec.benchmark],
      (b, scores) => scorer.benchmarkAverage(b, scores),
    );
    const attention = measuresAttentionMass(method.flopPlan(config, methodCfg))
      ? await promptAttentionMass(
        model,
        instance,
        evalSets.map((set) =>
          set.examples.slice(0, 100).map((ex) =>
            encodeExample(ex, set.taskId, tokenizer, {
              ...encodeOpts,
              taskPrefix: prefixes[set.taskId]!,
            })
          )
        ),
        spec.tasks,
        // A stop request pending when training returned or made since (a signal in the last
        // step's save or after it) ends the run here, between two batches, when the last
        // step's checkpoint exists: the result is not written and a resume redoes only this.
        // Without a checkpoint the run finishes: stopping would lose every step.
        outcome.checkpoint === undefined ? undefined : {
          shouldStop: stopRequested,
          stopped: (reason) =>
            new TrainingInterruptedError(
              reason,
              t.steps,
              t.steps,
              outcome.checkpoint,
              true,
              false,
              true,
            ),
        },
      )
      : undefined;
    return {
      spec,
      provenance: collectProvenance(startedAt, backend, new Date(), git, {
        data,
        ...(checkpoint === undefined ? {} : { checkpoint }),
        ...(tokenizerFile === undefined ? {} : { tokenizerFile }),
        resumedFrom: resumeRecord(
          outcome.resumedFrom,
          outcome.resumedCode,
          git,
          backend.name,
          outcome.microBatchSizes,
        ),
      }),
      losses: outcome.losses,
      evals: outcome.evals,
      best,
      averages,
      params: {
        total: acc.total,
        extra: acc.extra,
        extraPct: acc.extraPct,
        trained: acc.trained,
        trainedPerTaskPct: acc.trainedPerTaskPct,
      },
      flops: { trainPerExample: acc.trainFlops ?? 0, inferencePerExample: acc.forwardFlops ?? 0 },
      tokensPerSecond: outcome.trainSeconds > 0 ? outcome.tokens / outcome.trainSeconds : 0,
      // The whole run's (a resume's checkpoint carries the earlier sessions'): what a per-task
      // method's row adds up over its task runs (`per_task.ts`). Left out when the steps before
      // a resume are not counted (a checkpoint written before it carried them): they would pass
      // for the whole run's; `tokensPerSecond` is then the rate of the steps trained since.
      ...(outcome.throughputFromStep > 0
        ? {}
        : { trainTokens: outcome.tokens, trainSeconds: outcome.trainSeconds }),
      // The whole run's: the earlier sessions' (up to the checkpoint resumed from) and this one's.
      wallSeconds: outcome.resumedWallSeconds + (performance.now() - t0) / 1000,
      backboneSource: source,
      tokenizer: tokenizerSource,
      ...(attention === undefined ? {} : { attentionMass: attention }),
      ...(testPredictions === undefined ? {} : { testPredictions }),
      ...(weights === undefined ? {} : { weights }),
    };
  } finally {
    instance.dispose();
  }
}

/**
 * Writes a run's kept weights (`train.saveWeights`) into `<workDir>/final/`
 * ({@link FINAL_WEIGHTS_FOLDER}): the method's variables as `method.safetensors`
 * (`model/methods/weights.ts`) and, when any backbone weight was trainable, the backbone as a
 * Hugging Face folder `backbone/` ({@link SAVED_BACKBONE_FOLDER}: `config.json`,
 * `generation_config.json`, `model.safetensors`, and the run's tokenizer files, see
 * {@link backboneTokenizerFiles}), which `{"hf": "<that folder>"}` loads. The folder is built
 * under a temporary name and swapped in, so `final/` is complete or absent at every instant (a
 * `final/` of an earlier attempt is replaced). Tokenizer files that cannot be copied fail
 * nothing: the backbone is written without them, one line on stderr and the result's
 * `weights.backboneTokenizerMissing` say so.
 *
 * @param spec the run
 * @param workDir its work folder
 * @param model the backbone (its variables as trained)
 * @param instance the trained method instance
 * @param tok where the run's tokenizer came from (`RunResult.tokenizer`), the digest of its
 *   `tokenizer.json` for a `task-spm:` or `fixture:` source, and the checkpoint folder read, if
 *   any (`provenance.checkpoint`)
 * @returns the result's `weights` field: where the runner will move the folder
 */
export async function saveFinalWeights(
  spec: RunSpec,
  workDir: string,
  model: T5Model,
  instance: MethodInstance,
  tok: {
    readonly tokenizerSource: string;
    readonly tokenizerFile?: CheckpointFileRecord;
    readonly checkpoint?: CheckpointProvenance;
  },
): Promise<SavedWeights> {
  const backboneTrained = [...model.params.keys()].some((name) =>
    instance.isBackboneTrainable(name)
  );
  let tokenizerMissing = false;
  const held = await makeHeldTempDir(workDir, `.${FINAL_WEIGHTS_FOLDER}`);
  try {
    await saveMethodVariables(join(held.path, "method.safetensors"), instance);
    if (backboneTrained) {
      const files = await backboneTokenizerFiles(
        tok.tokenizerSource,
        tok.checkpoint,
        tok.tokenizerFile,
      );
      if (typeof files === "string") {
        tokenizerMissing = true;
        console.error(
          `benchmarks/run_one.ts: run ${spec.id}: the saved backbone has no tokenizer: ${files}`,
        );
      }
      // The model's own variables (not copies): saveHfFolder reads them and creates no tensor.
      await saveHfFolder(join(held.path, SAVED_BACKBONE_FOLDER), model.config, t5StateDict(model), {
        ...(typeof files === "string" ? {} : { extraFiles: files }),
      });
    }
    await swapFolderInto(held.path, join(workDir, FINAL_WEIGHTS_FOLDER));
  } catch (e) {
    await Deno.remove(held.path, { recursive: true }).catch(() => {});
    throw e;
  } finally {
    held.release();
  }
  return {
    dir: weightsDir(spec),
    step: spec.train.steps,
    backboneTrained,
    ...(backboneTrained ? { backbone: SAVED_BACKBONE_FOLDER } : {}),
    ...(tokenizerMissing ? { backboneTokenizerMissing: tok.tokenizerSource } : {}),
  };
}

/**
 * The tokenizer files of a saved backbone folder, read from where the run's tokenizer came from
 * (`RunResult.tokenizer`): `backbone` (the checkpoint folder's `tokenizer.json`) or
 * `backbone:spiece.model` (its `spiece.model` and, when present, `tokenizer_config.json`, which
 * a load converts as the run did), each file's sha256 checked against the one the run recorded
 * (`provenance.checkpoint.files`) when it did; `task-spm:<file>` and `fixture:<file>` (a
 * `tokenizer.json`) as `tokenizer.json`, its sha256 checked against `file` when given (the digest
 * taken when the run read it: a task tokenizer rebuilt or a fixture replaced since is not copied
 * as the run's).
 *
 * @param source the run's tokenizer source
 * @param checkpoint the checkpoint folder the run read, if any
 * @param file the digest of a `task-spm:` or `fixture:` source's file when the run read it
 * @returns file name → contents, or why they cannot be copied (an unknown source, a missing or
 *   unreadable file, or one changed since the run read it)
 */
export async function backboneTokenizerFiles(
  source: string,
  checkpoint: CheckpointProvenance | undefined,
  file?: CheckpointFileRecord,
): Promise<Record<string, Uint8Array> | string> {
  const read = async (path: string): Promise<Uint8Array | string> => {
    try {
      return await Deno.readFile(path);
    } catch (e) {
      return `${path}: cannot read (${(e as Error).message})`;
    }
  };
  const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");
  for (const prefix of ["task-spm:", "fixture:"]) {
    if (!source.startsWith(prefix)) continue;
    const path = source.slice(prefix.length);
    if (!path.endsWith("tokenizer.json")) return `${source}: not a tokenizer.json`;
    const bytes = await read(path);
    if (typeof bytes === "string") return bytes;
    if (file !== undefined && sha256(bytes) !== file.sha256) {
      return `${path}: changed since the run read it (sha256 differs from the one taken then)`;
    }
    return { "tokenizer.json": bytes };
  }
  const first = source === "backbone"
    ? "tokenizer.json"
    : source === CONVERTED_TOKENIZER
    ? "spiece.model"
    : undefined;
  if (first === undefined) return `tokenizer source ${JSON.stringify(source)} is not a file`;
  if (checkpoint === undefined) return `tokenizer source ${source}: no checkpoint folder recorded`;
  let names: string[];
  try {
    names = await folderTokenizerFiles(checkpoint.dir);
  } catch (e) {
    return `${checkpoint.dir}: cannot list its tokenizer files (${(e as Error).message})`;
  }
  if (names[0] !== first) return `${checkpoint.dir}: ${first} is gone since the run read it`;
  const out: Record<string, Uint8Array> = {};
  for (const name of names) {
    const path = join(checkpoint.dir, name);
    const bytes = await read(path);
    if (typeof bytes === "string") return bytes;
    const recorded = checkpoint.files[name]?.sha256;
    if (recorded !== undefined && sha256(bytes) !== recorded) {
      return `${path}: changed since the run read it (sha256 differs from provenance.checkpoint)`;
    }
    out[name] = bytes;
  }
  return out;
}

/**
 * The digests of what a run reads besides its spec (the trainer's `inputs`, checked on resume):
 * each data file's (`data:<path in the data folder>`), the backbone folder's files'
 * (`backbone:<name>`: its weights, config and tokenizer) and a task tokenizer's
 * (`tokenizer.json`), where hashed.
 *
 * @param data the data files read
 * @param checkpoint the backbone folder's files read, if any
 * @param tokenizerFile a `task-spm:` or `fixture:` tokenizer's file, if any
 * @returns name → sha256
 */
export function runInputs(
  data: DataProvenance,
  checkpoint: CheckpointProvenance | undefined,
  tokenizerFile: CheckpointFileRecord | undefined,
): Record<string, string> {
  const inputs: Record<string, string> = {};
  for (const [path, f] of Object.entries(data.files)) {
    if (f.sha256 !== undefined) inputs[`data:${path}`] = f.sha256;
  }
  for (const [name, f] of Object.entries(checkpoint?.files ?? {})) {
    inputs[`backbone:${name}`] = f.sha256;
  }
  if (tokenizerFile !== undefined) inputs["tokenizer.json"] = tokenizerFile.sha256;
  return inputs;
}

/**
 * The task files a run reads (relative to the data folder): each task's train files and the
 * files of its evaluation splits.
 *
 * @param tasks the run's tasks
 * @returns the paths, in task order
 */
export function dataFiles(tasks: readonly string[]): string[] {
  return tasks.flatMap((task) => {
    const files = getTask(task).files;
    return (["train", ...evalSplits(task)] as TaskSplit[]).flatMap((split) =>
      (files[split] ?? []).map((f) => f.path)
    );
  });
}

/**
 * Whether a run measures the attention mass on prompt columns ({@link promptAttentionMass}): when
 * its method's `flopPlan` declares a self-attention prefix (`selfAttentionPrefix` of at least one
 * slot in at least one stack), whatever the method's name. The mass is read through the
 * `onAttention` hook, to which `model/t5.ts` reports how many key columns any method's
 * `selfAttentionPrefix` hook prepended, so it needs nothing only the built-in methods have.
 * Trained tensors that enter T5 elsewhere (Prompt-Tuning's encoder rows, adapters, elementwise
 * tensors) add no such columns: those runs record none. (A method whose hook prepends keys that
 * its plan does not declare has wrong FLOPs too, which `model/methods/accounting_test.ts`
 * catches for the registered methods.)
 *
 * @param plan the method's FLOP plan (`Method.flopPlan`)
 * @returns true where the run's result gets `attentionMass`
 * @example
 * ```ts
 * import { measuresAttentionMass } from "./run_one.ts";
 * console.assert(measuresAttentionMass({
 *   freezeBackbone: false,
 *   selfAttentionPrefix: { length: 16, stacks: ["encoder"] },
 * }));
 * console.assert(!measuresAttentionMass({ freezeBackbone: "all", encoderPrompt: 100 }));
 * ```
 */
export function measuresAttentionMass(plan: FlopPlan): boolean {
  const prefix = plan.selfAttentionPrefix;
  return prefix !== undefined && prefix.length > 0 && prefix.stacks.length > 0;
}

/**
 * Attention mass on the hyper-prompt slots per task and layer (spec §3.4): teacher-forced on up
 * to 100 validation examples per task, with the final weights, averaged over examples.
 *
 * @param model the backbone
 * @param instance the method
 * @param perTask encoded examples of each task (task id = index)
 * @param taskNames task names by id
 * @param stop checked before every batch: a reason from `shouldStop` throws `stopped(reason)`
 *   (nothing is returned, every tensor is freed)
 * @returns task name → per-layer mass
 */
export async function promptAttentionMass(
  model: T5Model,
  instance: MethodInstance,
  perTask: readonly (readonly EncodedExample[])[],
  taskNames: readonly string[],
  stop?: {
    readonly shouldStop: () => string | undefined;
    readonly stopped: (reason: string) => Error;
  },
): Promise<Record<string, AttentionMass>> {
  const out: Record<string, AttentionMass> = {};
  for (const [taskId, rows] of perTask.entries()) {
    if (rows.length === 0) continue;
    let enc: number[] = [];
    let dec: number[] = [];
    for (let s = 0; s < rows.length; s += 25) {
      const reason = stop?.shouldStop();
      if (reason !== undefined) throw stop!.stopped(reason);
      const chunk = rows.slice(s, s + 25);
      const b = collate(chunk, model.config);
      const mask = tf.tidy(() => tf.cast(tf.notEqual(b.labels, -100), "float32") as tf.Tensor2D);
      try {
        const m = await attentionMass(model, instance, b, b.taskIds, { decoderMask: mask });
        const w = chunk.length / rows.length;
        enc = m.encoder.map((x, i) => (enc[i] ?? 0) + w * x);
        dec = m.decoder.map((x, i) => (dec[i] ?? 0) + w * x);
      } finally {
        mask.dispose();
        disposeBatch(b);
      }
    }
    out[taskNames[taskId] ?? String(taskId)] = { encoder: enc, decoder: dec };
  }
  return out;
}

/** One file of a run's test-set predictions. */
export interface TestPredictionSet {
  /** The file's name without `.jsonl`: the task's, or the diagnostic's (`ax`, `axb`, `axg`). */
  readonly name: string;
  /** The trained task whose new best rewrites the file: the task itself, or a diagnostic's host. */
  readonly host: string;
  /** Its examples in file order (MNLI: matched, then mismatched), encoded, with the host's id. */
  readonly set: EvalSet;
}

/** Decodes a set with the current weights at `step` (`evaluator.ts` `decodeSet`). */
export type DecodeFn = (
  set: EvalSet,
  step: number,
  shouldStop: () => string | undefined,
) => Promise<string[]>;

/** What a written file's entry in {@link TestPredictionWriter.MANIFEST} holds. */
type WrittenFile = { step: number; examples: number };

/**
 * Keeps a run's test-set prediction files (`<dir>/<name>.jsonl`, one JSON object a line in file
 * order: `{"id", "split", "prediction"}`) those of each task's best step. After each evaluation
 * ({@link TestPredictionWriter.afterEvaluation}) the sets of the tasks whose best it is (by
 * `evaluator.ts` `improvesOn`, `bestPerTask`'s rule) are decoded and written atomically over the
 * previous ones; the others are left as they are.
 *
 * Which step made each file is recorded in `<dir>/manifest.json` ({@link WrittenFile} per name),
 * written (atomically) before the file it describes, so that a kill between the two leaves a
 * claim the file does not meet yet, never a file older than its claim goes unnoticed: an entry
 * whose step is not its host's best (by the evaluations the run has: a resumed run's come from
 * its checkpoint) is a file of an evaluation the run no longer has (the files of a session killed
 * after its last checkpoint, whose redone evaluation was not a best again; or of an earlier
 * attempt at a fresh run, which `runOne` removes as a whole before it starts,
 * {@link TestPredictionWriter.discard}): it is removed, with a line on stderr, before anything is
 * written and at the end ({@link TestPredictionWriter.finish}), so the result lists exactly the
 * files on disk, each of its host's best step. A resumed run keeps the files of the tasks whose
 * best did not change.
 */
export class TestPredictionWriter {
  /** The manifest's file name in the folder. */
  static readonly MANIFEST = "manifest.json";
  #written: Record<string, WrittenFile> | undefined;

  /**
   * @param dir the folder (absolute, or relative to the working directory)
   * @param sets the files' sets, in writing order
   * @param decode greedy decoding of a set with the current weights
   * @param log where the removal of a stale file is reported (default stderr)
   */
  constructor(
    readonly dir: string,
    readonly sets: readonly TestPredictionSet[],
    readonly decode: DecodeFn,
    readonly log: (line: string) => void = (l) => console.error(l),
  ) {}

  /**
   * Removes a folder of test-set predictions as a whole, for a run that starts afresh: renamed
   * aside first (`model/fs.ts` `discardFolder`), so that a kill part-way leaves no file under
   * `dir` (none that a manifest claims), only a `.<name>.del-<tag>` folder beside it, which the
   * next call for the same `dir` removes (`discardFolder` does), as does the runner at the start
   * of a grid.
   *
   * @param dir the folder (`<results>/test_predictions/<run file stem>`)
   * @returns whether there was a folder to remove
   */
  static async discard(dir: string): Promise<boolean> {
    const present = existsSync(dir);
    await discardFolder(dir);
    return present;
  }

  /** The manifest, read once (absent or unreadable: nothing written yet that can be trusted). */
  async #manifest(): Promise<Record<string, WrittenFile>> {
    if (this.#written !== undefined) return this.#written;
    const path = join(this.dir, TestPredictionWriter.MANIFEST);
    let written: Record<string, WrittenFile> = {};
    try {
      const raw = JSON.parse(await Deno.readTextFile(path)) as unknown;
      if (raw !== null && typeof raw === "object" && !Array.isArray(raw)) {
        written = raw as Record<string, WrittenFile>;
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) {
        this.log(`${path}: unreadable (${(e as Error).message}); its files are written again`);
      }
    }
    // An entry of a name this run does not write, or malformed, is dropped (and its file).
    this.#written = {};
    for (const [name, w] of Object.entries(written)) {
      const ok = this.sets.some((s) => s.name === name) && w !== null && typeof w === "object" &&
        Number.isInteger(w.step) && Number.isInteger(w.examples);
      if (ok) this.#written[name] = { step: w.step, examples: w.examples };
      else await Deno.remove(join(this.dir, `${name}.jsonl`)).catch(() => {});
    }
    return this.#written;
  }

  async #saveManifest(): Promise<void> {
    await writeFileAtomic(
      join(this.dir, TestPredictionWriter.MANIFEST),
      JSON.stringify(this.#written, null, 2) + "\n",
    );
  }

  /** Removes the files whose step is not their host's best step (or whose file is missing). */
  async #dropStale(best: Readonly<Record<string, Pick<BestEval, "step">>>): Promise<void> {
    const written = await this.#manifest();
    let changed = false;
    for (const s of this.sets) {
      const w = written[s.name];
      if (w === undefined) continue;
      const want = best[s.host]?.step;
      const file = join(this.dir, `${s.name}.jsonl`);
      const present = existsSync(file);
      if (w.step === want && present) continue;
      delete written[s.name];
      changed = true;
      await Deno.remove(file).catch(() => {});
      this.log(
        `${file}: ${
          present ? "removed: written" : "not written: claimed"
        } at step ${w.step}, but ` +
          `${s.host}'s best step is ${want ?? "none yet"} (an evaluation this run no longer has)`,
      );
    }
    if (changed) await this.#saveManifest();
  }

  /**
   * After an evaluation: decode and write the sets of the tasks whose best it is.
   *
   * @param previous the run's evaluations before this one
   * @param done this evaluation's
   * @param shouldStop the trainer's stop request, checked before every decode batch
   */
  async afterEvaluation(
    previous: readonly TaskEval[],
    done: readonly TaskEval[],
    shouldStop: () => string | undefined,
  ): Promise<void> {
    const before = bestPerTask(previous);
    await this.#dropStale(before);
    const improved = new Map(
      done.filter((e) => improvesOn(e, before[e.task])).map((e) => [e.task, e.step]),
    );
    for (const s of this.sets) {
      const step = improved.get(s.host);
      if (step === undefined) continue;
      const predictions = await this.decode(s.set, step, shouldStop);
      const text = s.set.examples.map((ex, i) =>
        JSON.stringify({ id: ex.id, split: ex.split ?? "test", prediction: predictions[i] }) +
        "\n"
      ).join("");
      // The claim first (see the class doc), then the file.
      this.#written![s.name] = { step, examples: s.set.examples.length };
      await this.#saveManifest();
      await writeFileAtomic(join(this.dir, `${s.name}.jsonl`), text);
    }
  }

  /**
   * At the end of the run: drops what is not of a best step and lists the files.
   *
   * @param best the run's best evaluation per task
   * @returns name → step and examples, sorted by name
   */
  async finish(
    best: Readonly<Record<string, Pick<BestEval, "step">>>,
  ): Promise<Record<string, WrittenFile>> {
    await this.#dropStale(best);
    const written = await this.#manifest();
    return Object.fromEntries(
      Object.keys(written).sort().map((k) => [k, { ...written[k]! }]),
    );
  }
}

/**
 * The test-set predictions of a run (`train.predictTest`): each evaluated task's
 * {@link testSplits}, then the diagnostics it hosts ({@link TEST_DIAGNOSTICS}) whose files are
 * present (an absent one is skipped with a line on stderr); a trained task's missing test file is
 * an error (`loadExamples`'s, naming the file and the download command).
 *
 * @param spec the run
 * @param opts its options (results folder, data root)
 * @param setOf makes a task's evaluation set under a task id (uncapped here)
 * @param decode greedy decoding with the run's weights
 * @returns the writer, its folder relative to the results folder, and the data files it reads
 */
async function testPredictionWriter(
  spec: RunSpec,
  opts: RunOneOptions,
  setOf: (
    task: string,
    taskId: number,
    bySplit: ReadonlyArray<readonly [TaskSplit, Example[]]>,
    cap: null,
  ) => EvalSet,
  decode: DecodeFn,
): Promise<{ writer: TestPredictionWriter; dir: string; files: string[] }> {
  const sets: TestPredictionSet[] = [];
  const files: string[] = [];
  const load = async (name: string, taskId: number, host: string) => {
    const bySplit: [TaskSplit, Example[]][] = [];
    for (const split of testSplits(name)) {
      bySplit.push([split, await loadExamples(name, split, opts.dataDir)]);
      files.push(...(getTask(name).files[split] ?? []).map((f) => f.path));
    }
    sets.push({ name, host, set: setOf(name, taskId, bySplit, null) });
  };
  for (const [taskId, task] of spec.tasks.entries()) {
    await load(task, taskId, task);
    for (const diag of TEST_DIAGNOSTICS[task] ?? []) {
      const missing = missingTestFiles(diag, opts.dataDir);
      if (missing.length > 0) {
        console.error(
          `run ${spec.id}: no ${getTask(diag).displayName} test predictions (with ${task}'s): ` +
            `${missing.map((f) => join(opts.dataDir, f)).join(", ")} not found`,
        );
        continue;
      }
      await load(diag, taskId, task);
    }
  }
  const dir = testPredictionsDir(spec);
  return {
    writer: new TestPredictionWriter(predictionsFolder(spec, opts), sets, decode),
    dir,
    files,
  };
}

/** Where a run writes its test-set predictions: `<resultsDir>/test_predictions/<run file stem>`. */
function predictionsFolder(spec: RunSpec, opts: RunOneOptions): string {
  return join(opts.resultsDir ?? dirname(opts.outDir), testPredictionsDir(spec));
}

/**
 * Before a `train.predictTest` run that starts afresh (checkpoints off, or no complete checkpoint
 * under `<outDir>/checkpoints` to resume from): removes the test-set predictions an earlier run
 * of this name left ({@link TestPredictionWriter.discard}), files and manifest, with a line on
 * stderr. They are of evaluations this run does not have; the writer would drop them only at the
 * first evaluation, so a run failing or stopped before it would leave them beside no result. A
 * resume keeps them: the writer then keeps the files of its best steps and drops the others.
 *
 * @param spec the run
 * @param opts its options (work folder, results folder)
 */
async function discardStalePredictions(spec: RunSpec, opts: RunOneOptions): Promise<void> {
  if (spec.train.predictTest !== true) return;
  const resumable = spec.train.checkpointEvery > 0 &&
    (await listCheckpoints(join(opts.outDir, "checkpoints"))).length > 0;
  if (resumable) return;
  const dir = predictionsFolder(spec, opts);
  if (await TestPredictionWriter.discard(dir)) {
    console.error(`${dir}: removed: an earlier run's test predictions (this run starts afresh)`);
  }
}
