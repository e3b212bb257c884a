/**
 * The training loop: mixture batches → T5 forward with the method's hooks → cross-entropy (label
 * smoothing) → gradients of the trained variables only → global-norm clipping → Adafactor/AdamW,
 * with evaluation and atomic checkpoints every N steps.
 *
 * Determinism: given the root seed and the backend, a run's numbers are a pure function of the
 * step: dropout seeds are `seedFor(seed, "dropout:<step>")`, the learning rate comes from the
 * schedule, and batches from the sampler, whose state is checkpointed. With gradient
 * accumulation (`train.microBatchSize`) a step draws the same batch, runs it as equal
 * micro-batches (dropout seed `seedFor(<step seed>, "micro:<k>")`) and sums their token-weighted
 * gradients before one clip and one update; checkpoints stay at optimizer-step boundaries. A run killed at any point
 * and restarted resumes from its newest complete checkpoint and ends bit-identical to an
 * uninterrupted run (the variables, optimizer slots and sampler state are restored exactly).
 * A stop request ({@link requestStop}: the bench's SIGINT/SIGTERM) ends the loop at the next step
 * boundary with a checkpoint of that step ({@link TrainingInterruptedError}), so it loses no step;
 * one that arrives during an evaluation abandons it before its next decode batch (a full dev set
 * can take minutes, past a scheduler's grace period before SIGKILL), and the checkpoint of that
 * step records the evaluation as owed (`state.json` `evalOwed`: the step), so that a resume redoes
 * it first and ends with the same evaluations as an uninterrupted run. A checkpoint without the
 * field (written before it existed) owes none and resumes as it always did. A checkpoint that owes
 * an evaluation is refused by a resume given no {@link TrainOptions.evaluate} to redo it (the debt
 * stays on disk, for a resume that can pay it).
 * A request that comes after the last step's checkpoint (training done, its final state saved)
 * stops nothing here: {@link train} returns and the request stays for its caller (`runGrid` ends
 * the grid right after the run; `runOne` first stops before the attention mass of a method with
 * self-attention prefixes, throwing {@link TrainingInterruptedError} with `attentionMassOwed`, and
 * a resume loads the last step's checkpoint, trains nothing and redoes only that). Before the loop
 * returns it lets the event loop turn once, so that a signal received in the final save's last
 * instants is, when it is dispatched at once, a stop request by then (and `runOne` sees it before
 * the attention mass); one dispatched later still reaches the bench's listeners, which stay
 * installed until the run's result is written (`benchmarks/cli.ts` `interruptWhileCheckpointing`).
 * A newest checkpoint that cannot be resumed (a corrupt or missing file, a state that is not a
 * trainer's, a trained variable of another shape, an optimizer slot that this run's optimizer
 * would not make or of another shape: {@link optimizerSlotShapes}, a batch-source state the
 * source refuses: `state.json` `source`) does not stop the run while an older one can: the resume
 * falls back to the newest that can, logs one line per folder skipped (which, and why), and leaves
 * those folders as they are; every check is made before anything but the source (restored by its
 * own check, the last) is restored; later saves do not prune the older checkpoints in their favour
 * (`benchmarks/checkpointing.ts` `unusableSteps`). A checkpoint of another run (its `runKey`) or
 * of other trained variables is refused, not skipped.
 * A run that writes checkpoints also saves one after the step at which
 * {@link TrainOptions.checkpointMinutes} (default {@link DEFAULT_CHECKPOINT_MINUTES}) have passed
 * since the last, so that a kill nothing can catch (SIGKILL, an out-of-memory kill, a power cut)
 * loses at most about that long when steps are slow; only the newest two checkpoints are kept
 * (`benchmarks/checkpointing.ts`), whichever rule wrote them.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { crossEntropyLoss, forward, type T5Model } from "../model/t5.ts";
import type { MethodInstance } from "../model/method.ts";
import type { Example } from "../tasks/types.ts";
import type { TaskEval, TrainSpec } from "./spec.ts";
import { seedFor } from "./rng.ts";
import {
  adafactorFactoredAxes,
  createOptimizer,
  type Optimizer,
  type OptimizerConfig,
} from "./optim.ts";
import { addInPlace } from "../model/wasm_kernels.ts";
import { learningRateAt } from "./schedule.ts";
import {
  collate,
  disposeBatch,
  type EncodedExample,
  type SpecialIds,
  type TrainBatch,
} from "./batching.ts";
import {
  checkpointDirName,
  disposeCheckpoint,
  loadLatestCheckpoint,
  saveCheckpoint,
} from "./checkpointing.ts";
import { join } from "node:path";

/** A resumable source of training batches. */
export interface BatchSource {
  /** The next batch (the caller disposes it). */
  next(): TrainBatch;
  /** JSON state to resume from. */
  state(): unknown;
  /**
   * Restore a state from {@link BatchSource.state}; throws for a state it refuses, leaving the
   * source as it was ({@link train} then skips that checkpoint for an older one).
   */
  restore(state: unknown): void;
}

/** The sampler interface of `tasks/mixture.ts` `MixtureSampler`. */
export interface SamplerLike {
  nextBatch(): { task: number; index: number }[];
  state(): unknown;
  restore(state: unknown): void;
}

/**
 * Batches drawn by a mixture sampler from per-task example lists, tokenized lazily and memoised.
 */
export class MixtureBatches implements BatchSource {
  readonly #sampler: SamplerLike;
  readonly #examples: readonly (readonly Example[])[];
  readonly #encode: (ex: Example, i: number) => EncodedExample;
  readonly #ids: SpecialIds;
  readonly #cache = new Map<number, EncodedExample>();
  readonly #offsets: number[];

  /**
   * @param sampler the seeded mixture sampler (its `task` indexes `examples`)
   * @param examples training examples per mixture entry (a trained task, in mixture order)
   * @param encode tokenizer + truncation of one example, given its entry's index in `examples`
   *   (the caller maps it to the task id the example carries)
   * @param ids pad / decoder-start ids
   */
  constructor(
    sampler: SamplerLike,
    examples: readonly (readonly Example[])[],
    encode: (ex: Example, i: number) => EncodedExample,
    ids: SpecialIds,
  ) {
    this.#sampler = sampler;
    this.#examples = examples;
    this.#encode = encode;
    this.#ids = ids;
    this.#offsets = [];
    let off = 0;
    for (const e of examples) {
      this.#offsets.push(off);
      off += e.length;
    }
  }

  next(): TrainBatch {
    const rows = this.#sampler.nextBatch().map(({ task, index }) => {
      const key = this.#offsets[task]! + index;
      let enc = this.#cache.get(key);
      if (enc === undefined) {
        const ex = this.#examples[task]?.[index];
        if (ex === undefined) {
          throw new Error(
            `benchmarks/trainer.ts: sampler drew task ${task} index ${index}, absent`,
          );
        }
        enc = this.#encode(ex, task);
        this.#cache.set(key, enc);
      }
      return enc;
    });
    return collate(rows, this.#ids);
  }

  state(): unknown {
    return this.#sampler.state();
  }

  restore(state: unknown): void {
    this.#sampler.restore(state);
  }
}

/** Tensor names for an error message: the first 8, then how many in all; `none` for none. */
function nameList(xs: readonly string[]): string {
  return xs.length === 0
    ? "none"
    : xs.slice(0, 8).join(", ") + (xs.length > 8 ? `, … (${xs.length})` : "");
}

/**
 * Thrown when the loss or the gradient norm is NaN or infinite; no result should be written. The
 * message names which of the two was not finite (a finite loss with NaN gradients is reported as
 * such, with the loss's value; an infinite norm of finite gradients as an overflow).
 */
export class NonFiniteLossError extends Error {
  /**
   * @param step the 1-based step whose loss or gradient norm was not finite
   * @param loss the step's loss value (finite when only the gradients were not)
   * @param taskNames task of each example of the batch
   * @param lastFiniteLoss the previous step's loss (undefined at the first step)
   * @param badVariables trained variables holding NaN/Inf before the update
   * @param badGradients gradients holding NaN/Inf
   * @param gradNorm the global gradient norm of the step
   */
  constructor(
    readonly step: number,
    readonly loss: number,
    readonly taskNames: readonly string[],
    readonly lastFiniteLoss: number | undefined,
    readonly badVariables: readonly string[],
    readonly badGradients: readonly string[],
    readonly gradNorm: number,
  ) {
    // Finite gradients whose squares sum past float32's largest value (an element above about
    // 1.8e19) make an infinite norm that no gradient list would explain.
    const overflow = badGradients.length === 0 && gradNorm === Infinity
      ? "; every gradient is finite: the sum of their squares overflows float32"
      : "";
    const what = Number.isFinite(loss)
      ? `non-finite gradient norm ${gradNorm} at step ${step} (training loss ${loss} is finite${overflow})`
      : `non-finite training loss ${loss} at step ${step}`;
    super(
      `benchmarks/trainer.ts: ${what}; batch tasks: ${
        [...new Set(taskNames)].join(", ")
      }; last finite loss: ${lastFiniteLoss ?? "none"}; non-finite variables: ${
        nameList(badVariables)
      }; non-finite gradients: ${nameList(badGradients)}`,
    );
    this.name = "NonFiniteLossError";
  }
}

/**
 * Thrown when an update left trained variables holding NaN or infinity (a loss and gradients that
 * were finite, an update that overflowed: the last step's, whose loss no later step would
 * compute), found before the step's evaluation, checkpoint or the end of training; nothing is
 * evaluated, saved or written for a model in that state. Also thrown on a resume from a
 * checkpoint holding such variables (saved before this check existed).
 */
export class NonFiniteVariablesError extends Error {
  /**
   * @param step the step whose update (or checkpoint) left them
   * @param badVariables the trained variables holding NaN/Inf
   * @param lastLoss the step's training loss (before its update), if known
   * @param where `update` (this run's) or a checkpoint folder
   */
  constructor(
    readonly step: number,
    readonly badVariables: readonly string[],
    readonly lastLoss: number | undefined,
    readonly where: string,
  ) {
    const list = nameList(badVariables);
    super(
      where === "update"
        ? `benchmarks/trainer.ts: the update of step ${step} left non-finite variables: ${list} ` +
          `(its training loss ${lastLoss} was finite: the training diverged; a lower learning ` +
          "rate, train.clipNorm or a warmup keeps updates in range)"
        : `benchmarks/trainer.ts: ${where} (step ${step}) holds non-finite variables: ${list}: ` +
          "it was saved after the training diverged, and resuming it would fail again; its " +
          "settings diverge (bench: --restart trains it from step 0; a lower learning rate, " +
          "train.clipNorm or a warmup is another run)",
    );
    this.name = "NonFiniteVariablesError";
  }
}

/** The trained variables of a method on a backbone: trainable backbone weights + method weights. */
export function trainedVariables(
  model: T5Model,
  instance: MethodInstance,
): Map<string, tf.Variable> {
  const out = new Map<string, tf.Variable>();
  for (const [name, v] of model.params) if (instance.isBackboneTrainable(name)) out.set(name, v);
  for (const [name, v] of instance.variables) {
    if (out.has(name) || model.params.has(name)) {
      throw new Error(
        `benchmarks/trainer.ts: method variable "${name}" collides with a backbone name`,
      );
    }
    out.set(name, v);
  }
  return out;
}

/** Options of {@link train}. */
export interface TrainOptions {
  /** The backbone (its `config.dropoutRate` is the dropout used in training). */
  readonly model: T5Model;
  /** The method instance (hooks, trained variables). */
  readonly instance: MethodInstance;
  /** Hyperparameters (optimizer, schedule, steps, clipping, label smoothing, eval/ckpt cadence). */
  readonly train: TrainSpec;
  /** Root seed (dropout seeds are derived from it per step). */
  readonly seed: number;
  /** Task names by task id (for diagnostics). */
  readonly taskNames: readonly string[];
  /** Training batches. */
  readonly source: BatchSource;
  /** Checkpoint folder; absent or `train.checkpointEvery` 0 disables checkpoints and resume. */
  readonly checkpointDir?: string;
  /** Identifies the run; a checkpoint written for another key is refused on resume. */
  readonly runKey?: string;
  /**
   * What the run reads besides its settings and code, by name, each its sha256 (`runOne`: the
   * data files, `data:<path in the data folder>`, and the backbone's and tokenizer's files):
   * stored in every checkpoint, and a resume refuses a checkpoint whose recorded inputs differ
   * (a name whose digest changed, or that only one side has), naming the first, so that no run
   * trains its first steps on one file and the rest on another (the run id hashes the spec,
   * which names folders, not their bytes). A checkpoint written before it was recorded is
   * resumed as before.
   */
  readonly inputs?: Readonly<Record<string, string>>;
  /**
   * The code this run executes (`provenance.ts` `gitState()`), stored in every checkpoint so a
   * resume can report which code wrote it ({@link TrainOutcome.resumedCode}).
   */
  readonly code?: CodeVersion;
  /**
   * Evaluate after `step` (called every `evalEvery` steps and at the last step). `shouldStop` is
   * the run's {@link TrainOptions.shouldStop}, for `benchmarks/evaluator.ts` `evaluate`'s option
   * of that name: an evaluation that throws an error marked `evaluationStopped: true` with a
   * `reason` (`EvaluationStoppedError`) stops the run with a checkpoint that owes this
   * evaluation (see {@link train}). `previous` is every evaluation of the run before this one
   * (a resumed run's from its checkpoint too; not to be modified): what a caller needs to tell
   * whether this one is a task's new best (`runOne`'s test-set predictions).
   */
  readonly evaluate?: (
    step: number,
    shouldStop: () => string | undefined,
    previous: readonly TaskEval[],
  ) => Promise<TaskEval[]>;
  /** Called after every step (progress; tests throw here to simulate a kill). */
  readonly onStep?: (step: number, loss: number) => void | Promise<void>;
  /** Called when an evaluation starts (a resume's owed evaluation too). */
  readonly onEval?: (step: number) => void;
  /**
   * Called once when the run resumes from a checkpoint, with that checkpoint's step (≥ 1): the one
   * loaded, an older kept one when the newest could not be resumed. Before the first step or
   * evaluation of this session (also when nothing is left to do); never for a fresh run.
   */
  readonly onResume?: (step: number) => void;
  /**
   * Checked before every step: a reason (a signal's name) stops the run there
   * ({@link TrainingInterruptedError}, after saving a checkpoint of the step when checkpoints are
   * enabled); passed to {@link TrainOptions.evaluate}, whose evaluation it abandons between
   * decode batches. Default {@link stopRequested}, the process-wide request of
   * {@link requestStop}.
   */
  readonly shouldStop?: () => string | undefined;
  /**
   * Wall-clock checkpoint interval of a run that writes checkpoints (`train.checkpointEvery` > 0):
   * after a step (and its evaluation) at which at least this many minutes have passed since the
   * loop started or last saved, a checkpoint of that step is saved too, so that a kill the process
   * cannot catch (SIGKILL, an out-of-memory kill, a power cut) loses at most about this long
   * however slow a step is. 0 turns it off. Not part of the run's spec: the saved states are
   * those of step boundaries, so results and run ids do not change. Default
   * {@link DEFAULT_CHECKPOINT_MINUTES} (the bench's `--checkpoint-minutes`, through
   * `RunOneOptions.checkpointMinutes`).
   */
  readonly checkpointMinutes?: number;
  /** The clock of {@link TrainOptions.checkpointMinutes}, in ms (default `performance.now`; tests). */
  readonly now?: () => number;
  /**
   * The {@link TrainOptions.now} reading when this session of the run started (`runOne`: before
   * it selects its backend and builds its backbone); default: when {@link train} is called. Each
   * checkpoint's `state.json` `wallMs` is the earlier sessions' wall time
   * ({@link TrainOutcome.resumedWallSeconds}) plus this session's up to that save.
   */
  readonly clockStart?: number;
  /**
   * Where the resume's notes go: one line per newer checkpoint folder it skipped because it could
   * not be resumed, one when the checkpoint it resumes from predates the throughput totals
   * ({@link TrainOutcome.throughputFromStep}), and one when it predates the wall time
   * ({@link TrainOutcome.resumedWallSeconds}) (default `console.error`).
   */
  readonly log?: (line: string) => void;
}

/**
 * Thrown by {@link train} when a stop was requested ({@link requestStop}, e.g. by the bench's
 * SIGINT/SIGTERM handler): at a step boundary, after the step's evaluation and scheduled
 * checkpoint, or during an evaluation, between two of its decode batches (the evaluation is
 * abandoned: `evaluationOwed`); when the run writes checkpoints, after saving one of the step it
 * stopped at (which, stopped in an evaluation, records that the evaluation is owed, so a resume
 * redoes it first), so that a resume loses no step. Also thrown by `benchmarks/run_one.ts` for a
 * request pending when {@link train} returned, before the attention mass of the final weights
 * (`attentionMassOwed`). `interrupted` marks it for the runner (`runGrid` stops the grid).
 */
export class TrainingInterruptedError extends Error {
  /** Marks the error for callers that do not import this class (`runGrid`). */
  readonly interrupted = true;
  /**
   * @param reason what asked to stop (a signal's name)
   * @param step optimizer steps done when it stopped
   * @param totalSteps the run's `train.steps`
   * @param checkpoint the newest checkpoint folder of the run (a resume continues after its
   *   step), or undefined when there is none
   * @param writesCheckpoints whether the run writes checkpoints (`train.checkpointEvery` > 0)
   * @param evaluationOwed whether it stopped during the evaluation of `step`, abandoning it
   * @param attentionMassOwed whether it stopped after training and every evaluation, before or
   *   during the final weights' attention mass (`benchmarks/run_one.ts` `promptAttentionMass`,
   *   which a caller then throws it from, with the checkpoint of the last step): a resume loads
   *   that checkpoint, trains nothing and redoes only the attention mass
   */
  constructor(
    readonly reason: string,
    readonly step: number,
    readonly totalSteps: number,
    readonly checkpoint: string | undefined,
    writesCheckpoints = checkpoint !== undefined,
    readonly evaluationOwed = false,
    readonly attentionMassOwed = false,
  ) {
    super(
      `stopped by ${reason} ${
        evaluationOwed ? "during the evaluation of" : "after"
      } step ${step} of ${totalSteps}${
        attentionMassOwed ? ", training and evaluations done, before its attention mass" : ""
      }; ${
        checkpoint !== undefined
          ? `checkpoint ${checkpoint}: --resume ${
            attentionMassOwed
              ? "loads it and redoes only the attention mass"
              : `${
                evaluationOwed ? `redoes the evaluation of step ${step}, then ` : ""
              }continues from step ${step}`
          }`
          : writesCheckpoints
          ? "no step done yet: --resume starts it from step 0"
          : "this run writes no checkpoints (train.checkpointEvery 0): --resume reruns it from step 0"
      }`,
    );
    this.name = "TrainingInterruptedError";
  }
}

/** The pending stop request of this process ({@link requestStop}). */
let stopReason: string | undefined;
/** How many {@link train} loops that write checkpoints are running now. */
let checkpointingLoops = 0;
/** {@link watchCheckpointingLoops}' observers. */
const loopObservers = new Set<(running: boolean) => void>();

/**
 * Calls `observer(true)` when a {@link train} loop that writes checkpoints starts while none runs
 * (at once when one runs already), and `observer(false)` when the last one ends: the time in
 * which a stop request saves a checkpoint instead of losing the steps since the last one. The
 * bench listens to SIGINT and SIGTERM from such a start until the run's result is written
 * (`benchmarks/cli.ts` `interruptWhileCheckpointing`), so that otherwise they keep their default
 * action (an immediate stop, even in the middle of synchronous work).
 *
 * @param observer called with whether such a loop runs
 * @returns stops observing
 */
export function watchCheckpointingLoops(observer: (running: boolean) => void): () => void {
  loopObservers.add(observer);
  if (checkpointingLoops > 0) observer(true);
  return () => {
    loopObservers.delete(observer);
  };
}

function checkpointingLoop(delta: 1 | -1): void {
  const was = checkpointingLoops > 0;
  checkpointingLoops += delta;
  const now = checkpointingLoops > 0;
  if (was !== now) { for (const observe of loopObservers) observe(now); }
}

/**
 * Asks every {@link train} loop of this process to stop at its next step boundary, or, during an
 * evaluation, before its next decode batch (`benchmarks/evaluator.ts` `evaluate` checks
 * {@link stopRequested}), saving a checkpoint of that step when the run writes checkpoints
 * ({@link TrainingInterruptedError}; one saved in an evaluation records that it is owed).
 * The request stays until {@link clearStopRequest}.
 *
 * @param reason what asks (a signal's name), repeated in the error
 * @returns whether a loop that writes checkpoints is running now, i.e. whether waiting for the
 *   step boundary saves anything (else a caller may as well stop the process at once)
 */
export function requestStop(reason: string): boolean {
  stopReason ??= reason;
  return checkpointingLoops > 0;
}

/** Withdraws a {@link requestStop} (tests; a long-lived process that goes on after a stop). */
export function clearStopRequest(): void {
  stopReason = undefined;
}

/**
 * The pending stop request ({@link requestStop}): its reason, or undefined when none.
 *
 * @returns the reason, or undefined
 */
export function stopRequested(): string | undefined {
  return stopReason;
}

/**
 * Lets the event loop turn once (a zero-delay timer, about 1-2 ms), so that a signal listener
 * whose signal came during synchronous work runs before a stop request is checked: a training
 * step or a decode batch on cpu or wasm awaits only settled promises (microtasks), which never
 * let the event loop dispatch a signal, so without this a SIGINT/SIGTERM would be seen only at
 * the next file write (a checkpoint), steps later, or not during an evaluation at all.
 *
 * @returns once the event loop has turned
 */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** How often a long synchronous loop lets the event loop turn at least ({@link yielder}). */
export const YIELD_EVERY_MS = 1000;

/**
 * A `yieldToEventLoop` for a loop of steps that lets the event loop turn when `everyMs` have
 * passed since it last did (a step on cpu or wasm awaits only settled promises): timers then run
 * between steps, such as a run claim's heartbeat (`run_claim.ts`, every 30 s), which a run
 * without checkpoints, or a pretraining, let go stale on another host's view (its claim taken
 * over while it trained, the run trained twice, again and again), and a claim lost meanwhile
 * is seen at the next step.
 *
 * @param everyMs at most this long between turns (default {@link YIELD_EVERY_MS})
 * @param now the clock (tests pass a fake)
 * @returns an async function to call between steps: it turns the event loop when due
 */
export function yielder(
  everyMs = YIELD_EVERY_MS,
  now: () => number = () => performance.now(),
): () => Promise<void> {
  let last = now();
  return async () => {
    if (now() - last < everyMs) return;
    await yieldToEventLoop();
    last = now();
  };
}

/** The wall-clock checkpoint interval, in minutes, of {@link TrainOptions.checkpointMinutes}. */
export const DEFAULT_CHECKPOINT_MINUTES = 30;

/**
 * Checks a wall-clock checkpoint interval.
 *
 * @param minutes the interval
 * @param name what gave it, for the error
 * @returns `minutes`
 * @throws Error naming `name` when it is not a finite number ≥ 0
 */
function checkedMinutes(minutes: number, name: string): number {
  if (typeof minutes !== "number" || !Number.isFinite(minutes) || minutes < 0) {
    throw new Error(`${name} must be a number of minutes ≥ 0 (0: off), got ${minutes}`);
  }
  return minutes;
}

/**
 * A git commit and whether the working tree had uncommitted changes, and the backend that ran
 * the steps (`BackendRecord.name`, e.g. `wasm+blas`), when known.
 */
export interface CodeVersion {
  readonly sha: string;
  readonly dirty: boolean;
  readonly backend?: string;
}

/** A code version read from JSON (`unknown` when it is none or a bad one). */
function codeVersionOf(value: unknown): CodeVersion {
  const c = value as { sha?: unknown; dirty?: unknown; backend?: unknown } | null | undefined;
  const backend = typeof c?.backend === "string" ? { backend: c.backend } : {};
  return typeof c?.sha === "string" && typeof c.dirty === "boolean"
    ? { sha: c.sha, dirty: c.dirty, ...backend }
    : { sha: "unknown", dirty: false, ...backend };
}

/** Whether two code versions are the same record (commit, dirty flag and backend). */
function sameCode(a: CodeVersion, b: CodeVersion): boolean {
  return a.sha === b.sha && a.dirty === b.dirty && a.backend === b.backend;
}

/**
 * Every code version that ran a checkpoint's steps, in order of first use: its `state.json`
 * `codes` (checked by {@link checkResumeState}), or, for a checkpoint written before that field
 * existed, the one that wrote it (`code`; `unknown` when it has none).
 */
function checkpointCodes(state: Record<string, unknown>): CodeVersion[] {
  return Array.isArray(state.codes) ? state.codes.map(codeVersionOf) : [codeVersionOf(state.code)];
}

/**
 * What {@link TrainOutcome.resumedCode} reports of the code versions that ran the steps before a
 * resume, for `provenance.ts` `resumeRecord`: the first whose commit is not provably this run's
 * (the same commit, both trees clean; as `resumeRecord` decides), else the newest; its backend
 * replaced by the first backend that is not this run's, when one is. So a run whose earlier
 * steps ran on another backend or code says so, whichever segment wrote the checkpoint.
 */
function resumedCodeOf(codes: readonly CodeVersion[], current?: CodeVersion): CodeVersion {
  const provablySame = (c: CodeVersion) =>
    current !== undefined && c.sha !== "unknown" && c.sha === current.sha && !c.dirty &&
    !current.dirty;
  const code = codes.find((c) => !provablySame(c)) ?? codes[codes.length - 1]!;
  const other = codes.find((c) => c.backend !== undefined && c.backend !== current?.backend);
  const backend = other?.backend ?? code.backend;
  return { sha: code.sha, dirty: code.dirty, ...(backend === undefined ? {} : { backend }) };
}

/** One step's record in {@link TrainOutcome.losses}. */
export interface StepLoss {
  /** The step, 1-based. */
  step: number;
  /** Its training loss (NaN when it diverged). */
  loss: number;
  /** The learning rate its update used; absent for steps of checkpoints written before it was kept. */
  lr?: number;
}

/** What {@link train} returns. */
export interface TrainOutcome {
  /** Loss of every step (1-based steps), including steps restored from a checkpoint. */
  readonly losses: StepLoss[];
  /** Every evaluation, including ones restored from a checkpoint. */
  readonly evals: TaskEval[];
  /** Step of the checkpoint the run resumed from (0 for a fresh start). */
  readonly resumedFrom: number;
  /**
   * The code that ran the steps before the resume (the `code` option of each run that wrote a
   * checkpoint of this run; `{sha: "unknown", dirty: false}` for one written without it): the
   * checkpoint's writer, or, when its steps ran under several (a run resumed more than once),
   * the first commit that is not provably this run's and the first backend that is not this
   * run's, so that neither is lost by a later resume; absent on a fresh start.
   */
  readonly resumedCode?: CodeVersion;
  /**
   * The rows per forward/backward pass (`train.microBatchSize` when smaller than the batch, else
   * `train.batchSize`) of every session that ran this run's steps, distinct, in order of first
   * use (`state.json` `microBatchSizes`); `null` stands for the sessions before a resume from a
   * checkpoint written before the field existed (unknown). Two or more numbers: the run's steps
   * ran with different micro-batches (a resume on a device where the bench preflight chose
   * another; numbers differ only by fp32 summation order and per-micro-batch dropout draws); a
   * `null` beside one number: unknown whether they did. `[rows]` for a run never resumed.
   */
  readonly microBatchSizes: readonly (number | null)[];
  /**
   * Non-padding tokens of the training steps after {@link TrainOutcome.throughputFromStep}: every
   * step of the run (steps before a resume counted from the checkpoint's `state.json` `tokens`)
   * unless that is above 0.
   */
  readonly tokens: number;
  /**
   * Seconds spent in the training steps after {@link TrainOutcome.throughputFromStep}, excluding
   * evaluation and checkpoints (steps before a resume counted from the checkpoint's `trainMs`, so
   * a resumed run reports the throughput of the whole run unless that is above 0).
   */
  readonly trainSeconds: number;
  /**
   * The step after which {@link TrainOutcome.tokens} and {@link TrainOutcome.trainSeconds} count:
   * 0 (the whole run) unless the run was resumed, now or in an earlier session, from a checkpoint
   * written before checkpoints recorded them (trainer 50bcbf7: no `tokens`/`trainMs` in its
   * `state.json`), whose steps' tokens and time are unknown; then that checkpoint's step, and the
   * two describe only the steps trained since (carried on as `state.json` `tokensFromStep`).
   */
  readonly throughputFromStep: number;
  /**
   * Wall seconds of the sessions before this one, as the checkpoint resumed from records them
   * (`state.json` `wallMs`: each session's time from its {@link TrainOptions.clockStart} to its
   * last checkpoint; time after a session's last checkpoint, lost to a kill, is not counted, and
   * its steps are counted again in the session that redoes them); 0 on a fresh start. A
   * checkpoint written before checkpoints recorded it: its
   * `trainMs` (the earlier sessions' training steps only: a lower bound), or 0 when it has none
   * either, said in the log; the checkpoints this session writes carry that assumption on.
   */
  readonly resumedWallSeconds: number;
  /**
   * The newest checkpoint folder of the run when {@link train} returns (that of its last step,
   * from which a resume does no step), or undefined when the run writes none.
   */
  readonly checkpoint?: string;
}

/**
 * The names of the tensors holding a NaN or an infinity. Read asynchronously: webgpu in Deno
 * cannot read GPU data back synchronously (`dataSync` throws there).
 */
async function nonFiniteNames(tensors: Iterable<[string, tf.Tensor]>): Promise<string[]> {
  const bad: string[] = [];
  for (const [name, t] of tensors) {
    const finite = tf.tidy(() => tf.all(tf.isFinite(t)));
    try {
      if (!(await finite.data())[0]) bad.push(name);
    } finally {
      finite.dispose();
    }
  }
  return bad;
}

/** One micro-batch: rows `[start, start + size)` of a batch, as views for the forward pass. */
function sliceBatch(batch: TrainBatch, start: number, size: number): TrainBatch {
  const rows = <T extends tf.Tensor2D>(x: T) => tf.slice(x, [start, 0], [size, -1]) as T;
  return {
    inputIds: rows(batch.inputIds),
    attentionMask: rows(batch.attentionMask),
    decoderInputIds: rows(batch.decoderInputIds),
    labels: rows(batch.labels),
    taskIds: batch.taskIds.slice(start, start + size),
    numTokens: 0, // not used for micro-batches
  };
}

/**
 * The rows per forward/backward pass of a run's steps: `train.microBatchSize` when set and
 * smaller than `train.batchSize`, else the batch (one pass per step, no gradient accumulation).
 * The one rule of the trainer ({@link train}, `state.json` `microBatchSizes`) and of the bench's
 * memory preflight (`benchmarks/device_memory.ts` `planDeviceMemory`, which estimates a run at
 * it and chooses a micro-batch only where this is the whole batch).
 *
 * @param t the run's training settings
 * @returns the rows per pass
 * @throws Error when `train.microBatchSize` is smaller than the batch and does not divide it
 *   (`validateTrain` refuses such a spec)
 * @example
 * ```ts
 * import { rowsPerPass } from "./trainer.ts";
 * import { DEFAULT_TRAIN } from "./spec.ts";
 * console.assert(rowsPerPass({ ...DEFAULT_TRAIN, batchSize: 8, microBatchSize: 2 }) === 2);
 * console.assert(rowsPerPass({ ...DEFAULT_TRAIN, batchSize: 8 }) === 8);
 * ```
 */
export function rowsPerPass(t: TrainSpec): number {
  return microSize(t, t.batchSize);
}

/**
 * Micro-batch size of a step: `train.microBatchSize` when set and smaller than the batch drawn,
 * else the whole batch (one pass, the path of runs without gradient accumulation).
 */
function microSize(t: TrainSpec, rows: number): number {
  const m = t.microBatchSize;
  if (m === undefined || m >= rows) return rows;
  if (rows % m !== 0) {
    throw new Error(
      `benchmarks/trainer.ts: microBatchSize ${m} does not divide the batch of ${rows} rows`,
    );
  }
  return m;
}

/**
 * The loss of a batch and the gradients of the trained variables (keyed by tfjs variable name).
 *
 * Without accumulation this is one `tf.variableGrads` over the whole batch with dropout seed
 * `dropoutSeed`. With `train.microBatchSize` smaller than the batch, the rows are split into
 * equal micro-batches; micro-batch k uses dropout seed `seedFor(dropoutSeed, "micro:<k>")` and
 * its token-mean loss is weighted by its share of the batch's counted target tokens (labels
 * other than -100), so the summed loss and gradients equal the full batch's token-mean ones up
 * to fp32 rounding. Only the running sums outlive a micro-batch (each pass runs in `tf.tidy`);
 * a variable absent from a micro-batch's gradients (e.g. a task not in it) keeps its sum.
 *
 * @param o the training options (model, method instance, `train` for label smoothing, z-loss
 *   and `microBatchSize`)
 * @param batch the step's batch (not disposed here)
 * @param varList the trained variables
 * @param dropoutSeed the step's dropout seed
 * @returns the loss and the gradients; the caller disposes them
 */
export async function lossAndGrads(
  o: TrainOptions,
  batch: TrainBatch,
  varList: tf.Variable[],
  dropoutSeed: number,
): Promise<{ value: tf.Scalar; grads: tf.NamedTensorMap }> {
  const t = o.train;
  const passLoss = (b: TrainBatch, seed: number) => {
    const hooks = o.instance.hooks(b.taskIds);
    const { logits, encoderOutput } = forward(o.model, b, {
      hooks,
      training: true,
      dropoutSeed: seed,
    });
    encoderOutput.dispose();
    // z-loss 0 (absent): the plain cross-entropy, the very same code path as before it existed.
    return crossEntropyLoss(logits, b.labels, {
      labelSmoothing: t.labelSmoothing,
      ...(t.zLoss ? { zLoss: t.zLoss } : {}),
    });
  };
  const rows = batch.labels.shape[0];
  const m = microSize(t, rows);
  if (m === rows) return tf.variableGrads(() => passLoss(batch, dropoutSeed), varList);
  // Counted target tokens per micro-batch (the loss's denominator).
  const labels = await batch.labels.data();
  const width = batch.labels.shape[1];
  const counts: number[] = [];
  for (let s = 0; s < rows; s += m) {
    let c = 0;
    for (let i = s * width; i < (s + m) * width; i++) if (labels[i] !== -100) c++;
    counts.push(c);
  }
  const total = counts.reduce((a, b) => a + b, 0);
  let value: tf.Scalar | undefined;
  let grads: tf.NamedTensorMap | undefined;
  try {
    for (let k = 0; k < counts.length; k++) {
      // A micro-batch without counted tokens contributes nothing (weight 0).
      if (counts[k] === 0) continue;
      const weight = counts[k]! / total;
      const seed = seedFor(dropoutSeed, `micro:${k}`);
      const r = tf.tidy(() => {
        const mb = sliceBatch(batch, k * m, m);
        return tf.variableGrads(() => tf.mul(passLoss(mb, seed), weight) as tf.Scalar, varList);
      });
      if (value === undefined || grads === undefined) {
        value = r.value;
        grads = r.grads;
        continue;
      }
      const v = tf.add(value, r.value) as tf.Scalar;
      tf.dispose([value, r.value]);
      value = v;
      // Add variable by variable, releasing both terms at once: the peak is the running sums,
      // one micro-batch's gradients and one variable's temporary.
      for (const [n, g] of Object.entries(r.grads)) {
        const p = grads[n];
        if (p === undefined) {
          grads[n] = g;
          continue;
        }
        if (addInPlace(p, g)) {
          g.dispose();
          continue;
        }
        grads[n] = tf.add(p, g);
        tf.dispose([p, g]);
      }
    }
  } catch (e) {
    if (value !== undefined) value.dispose();
    if (grads !== undefined) tf.dispose(Object.values(grads));
    throw e;
  }
  if (value === undefined || grads === undefined) {
    // Every label ignored: the full-batch loss is 0 with zero gradients (crossEntropyLoss
    // divides by max(count, 1)); reproduce that with one pass.
    return tf.variableGrads(() => passLoss(batch, dropoutSeed), varList);
  }
  return { value, grads };
}

/**
 * The global L2 norm of a set of gradients, sqrt(sum over tensors of sum(x²)), as one scalar.
 * Each gradient's sum of squares is made in its own `tf.tidy`, so only one gradient's square is
 * alive at a time (the largest variable's size, not all gradients' again); the per-gradient sums
 * are then added in the given order, as `tf.addN` of them all did before: the same value.
 *
 * @param grads the gradients (not disposed)
 * @returns the norm; the caller disposes it
 */
export function globalGradNorm(grads: Iterable<tf.Tensor>): tf.Scalar {
  const sums = [...grads].map((x) => tf.tidy(() => tf.sum(tf.square(x))));
  try {
    return tf.tidy(() => tf.sqrt(tf.addN(sums)) as tf.Scalar);
  } finally {
    tf.dispose(sums);
  }
}

/**
 * How a checkpoint's recorded inputs ({@link TrainOptions.inputs}) differ from this run's: the
 * first name (in sorted order) whose sha256 differs or that only one side has; undefined when
 * they agree, or when either side has none (a checkpoint written before they were recorded, or
 * a caller that gives none).
 */
function inputChange(
  recorded: unknown,
  now: Readonly<Record<string, string>> | undefined,
): string | undefined {
  if (now === undefined || typeof recorded !== "object" || recorded === null) return undefined;
  const was = recorded as Record<string, unknown>;
  const short = (v: unknown) => typeof v === "string" ? `sha256 ${v.slice(0, 12)}…` : "absent";
  for (const name of [...new Set([...Object.keys(was), ...Object.keys(now)])].sort()) {
    const a = Object.hasOwn(was, name) ? was[name] : undefined;
    const b = Object.hasOwn(now, name) ? now[name] : undefined;
    if (a !== b) return `${name} was ${short(a)}, is now ${short(b)}`;
  }
  return undefined;
}

/**
 * Checks the fields of a checkpoint's state that a resume restores (a state that is JSON but not
 * a trainer's, e.g. edited by hand), so that the error names the file and the field rather than
 * failing later, or continuing with histories that miss steps.
 *
 * @param dir the checkpoint folder
 * @param step its step
 * @param state its `state.json`
 * @throws Error naming `state.json` and the field
 */
function checkResumeState(dir: string, step: number, state: Record<string, unknown>): void {
  const bad = (field: string, want: string, got: unknown) =>
    new Error(
      `${dir}/state.json: field "${field}" ${
        got === undefined
          ? `is missing (must be ${want})`
          : `must be ${want}, got ${
            Array.isArray(got) ? `${got.length} entries` : JSON.stringify(got)
          }`
      }`,
    );
  const os = state.optimizerStep;
  if (typeof os !== "number" || !Number.isInteger(os) || os < 0) {
    throw bad("optimizerStep", "a non-negative integer", os);
  }
  const losses = state.losses;
  if (
    !Array.isArray(losses) || losses.length !== step ||
    !losses.every((l, i) => l?.step === i + 1 && typeof l?.loss === "number")
  ) {
    throw bad("losses", `the {step, loss} of each of its ${step} steps`, losses);
  }
  if (!Array.isArray(state.evals)) throw bad("evals", "an array", state.evals);
  const codes = state.codes;
  if (
    codes !== undefined && (!Array.isArray(codes) || codes.length === 0 ||
      !codes.every((c) =>
        typeof c?.sha === "string" && typeof c?.dirty === "boolean" &&
        (c.backend === undefined || typeof c.backend === "string")
      ))
  ) {
    throw bad("codes", "a non-empty array of {sha, dirty, backend?}", codes);
  }
  const micro = state.microBatchSizes;
  if (
    micro !== undefined && (!Array.isArray(micro) || micro.length === 0 ||
      !micro.every((m) => m === null || (Number.isInteger(m) && m > 0)))
  ) {
    throw bad("microBatchSizes", "a non-empty array of positive integers or null", micro);
  }
  const nonNegative = (v: unknown) => typeof v === "number" && Number.isFinite(v) && v >= 0;
  // The run's wall time so far (absent in a checkpoint written before it existed).
  const wallMs = state.wallMs;
  if (wallMs !== undefined && !nonNegative(wallMs)) {
    throw bad("wallMs", "a non-negative number", wallMs);
  }
  // Throughput totals: both or neither (a checkpoint written before they existed has neither).
  const { tokens, trainMs, tokensFromStep: from } = state;
  if ((tokens === undefined) !== (trainMs === undefined)) {
    const [has, lacks] = tokens === undefined ? ["trainMs", "tokens"] : ["tokens", "trainMs"];
    throw bad(lacks, `given with field "${has}"`, state[lacks]);
  }
  if (tokens !== undefined && !(Number.isInteger(tokens) && (tokens as number) >= 0)) {
    throw bad("tokens", "a non-negative integer", tokens);
  }
  if (trainMs !== undefined && !nonNegative(trainMs)) {
    throw bad("trainMs", "a non-negative number", trainMs);
  }
  if (
    from !== undefined &&
    (tokens === undefined || !Number.isInteger(from) || (from as number) < 1 ||
      (from as number) > step)
  ) {
    throw bad(
      "tokensFromStep",
      `absent, or a step from 1 to ${step} given with field "tokens"`,
      from,
    );
  }
  const owed = state.evalOwed;
  if (owed !== undefined && owed !== null) {
    if (owed !== step) throw bad("evalOwed", `absent, null or its step ${step}`, owed);
    if (state.evals.some((e) => e?.step === step)) {
      throw new Error(
        `${dir}/state.json: field "evalOwed" owes the evaluation of step ${step}, but field "evals" already holds that step's`,
      );
    }
  }
}

/**
 * The optimizer configuration {@link train} creates its optimizer with for `t`: the one source
 * of it, which the bench's memory preflight also reads (`benchmarks/device_memory.ts`
 * `memoryInputFor`), so that the preflight estimates the optimizer the run trains with.
 * Adafactor takes `train.weightDecay` and `train.adafactor` (absent fields: Hugging Face's T5
 * fine-tuning Adafactor, `benchmarks/optim.ts`); AdamW takes `train.weightDecay`.
 *
 * @param t the run's training settings
 * @returns the configuration for `createOptimizer`
 * @example
 * ```ts
 * import { optimizerConfigFor } from "./trainer.ts";
 * import { DEFAULT_TRAIN } from "./spec.ts";
 * const cfg = optimizerConfigFor({ ...DEFAULT_TRAIN, optimizer: "adamw", weightDecay: 0.01 });
 * console.assert(cfg.kind === "adamw" && cfg.weightDecay === 0.01);
 * ```
 */
export function optimizerConfigFor(t: TrainSpec): OptimizerConfig {
  if (t.optimizer === "adamw") return { kind: "adamw", weightDecay: t.weightDecay };
  const a = t.adafactor;
  return {
    kind: "adafactor",
    weightDecay: t.weightDecay,
    multiplyByParameterScale: a?.multiplyByParameterScale ?? false,
    ...(a?.minDimSizeToFactor === undefined ? {} : { minDimSizeToFactor: a.minDimSizeToFactor }),
    ...(a?.weightDecayRate === undefined ? {} : { weightDecayRate: a.weightDecayRate }),
  };
}

/**
 * The slots `createOptimizer(cfg)` (`benchmarks/optim.ts`) keeps for a variable of `shape` once
 * the variable has had a gradient, by slot name (saved as `"<variable>/<slot>"`): Adafactor's
 * `vr` and `vc` (the second moment's means over its two factored axes, each dropped from the
 * shape) or, unfactored, `v` (the shape), and `m` (the shape) when `beta1` > 0; AdamW's `m` and
 * `v` (the shape). `trainer_test.ts` compares it with the slots the optimizers make.
 *
 * @param cfg the optimizer's configuration
 * @param shape the variable's shape
 * @returns slot name → shape
 * @example
 * ```ts
 * import { optimizerSlotShapes } from "./trainer.ts";
 * const s = optimizerSlotShapes({ kind: "adafactor" }, [64, 32]);
 * console.assert(s.get("vr")?.join() === "64" && s.get("vc")?.join() === "32");
 * console.assert(optimizerSlotShapes({ kind: "adamw" }, [8]).get("m")?.join() === "8");
 * ```
 */
export function optimizerSlotShapes(
  cfg: OptimizerConfig,
  shape: readonly number[],
): Map<string, number[]> {
  if (cfg.kind === "adamw") return new Map([["m", [...shape]], ["v", [...shape]]]);
  const axes = adafactorFactoredAxes(shape, cfg.factored ?? true, cfg.minDimSizeToFactor);
  const without = (axis: number) => shape.filter((_, i) => i !== axis);
  const out = new Map<string, number[]>(
    axes === null ? [["v", [...shape]]] : [["vr", without(axes[0])], ["vc", without(axes[1])]],
  );
  if ((cfg.beta1 ?? 0) > 0) out.set("m", [...shape]);
  return out;
}

/**
 * Why a checkpoint's optimizer slots cannot be restored for `params` under `cfg`, or undefined:
 * a name that is not `"<variable>/<slot>"` of a trained variable and a slot
 * {@link optimizerSlotShapes} names, another dtype than float32 or another shape, or a variable
 * with some of its slots but not all (a variable without any is one that has had no gradient yet:
 * the optimizer makes them at its first), or no slots at all after an update (`updates`, the
 * state's `optimizerStep`: every update has a gradient of some variable).
 */
function checkSlots(
  slots: ReadonlyMap<string, tf.Tensor>,
  params: ReadonlyMap<string, tf.Variable>,
  cfg: OptimizerConfig,
  updates: unknown,
): string | undefined {
  if (slots.size === 0 && params.size > 0 && typeof updates === "number" && updates > 0) {
    return `no slots, but state.json's "optimizerStep" says ${updates} updates were made`;
  }
  const seen = new Map<string, Set<string>>();
  for (const [key, t] of slots) {
    const cut = key.lastIndexOf("/");
    const name = key.slice(0, Math.max(cut, 0)), slot = key.slice(cut + 1);
    const v = cut > 0 ? params.get(name) : undefined;
    if (v === undefined) {
      return `slot "${key}" is not "<variable>/<slot>" of a variable this run trains`;
    }
    const want = optimizerSlotShapes(cfg, v.shape);
    const shape = want.get(slot);
    if (shape === undefined) {
      return `slot "${key}": this run's ${cfg.kind} keeps ${
        [...want.keys()].map((k) => `"${name}/${k}"`).join(", ")
      } for that variable`;
    }
    if (!tf.util.arraysEqual(t.shape, shape) || t.dtype !== "float32") {
      return `slot "${key}" is ${t.dtype} [${t.shape}], ` +
        `this run's optimizer makes float32 [${shape}]`;
    }
    seen.set(name, (seen.get(name) ?? new Set()).add(slot));
  }
  for (const [name, have] of seen) {
    const v = params.get(name)!;
    const missing = [...optimizerSlotShapes(cfg, v.shape).keys()].filter((k) => !have.has(k));
    if (missing.length > 0) {
      return `variable "${name}" has slot${have.size > 1 ? "s" : ""} ${
        [...have].map((k) => `"${name}/${k}"`).join(", ")
      } but not ${missing.map((k) => `"${name}/${k}"`).join(", ")}`;
    }
  }
  return undefined;
}

/**
 * Train a method on a backbone. Resumes from the newest checkpoint under `checkpointDir`.
 *
 * @param o model, method, hyperparameters, batches and callbacks
 * @returns losses, evaluations and throughput
 * @throws NonFiniteLossError on a NaN/Inf loss or gradient norm (nothing is updated at that step)
 * @throws NonFiniteVariablesError when an update left NaN/Inf variables (found before the step's
 *   evaluation, checkpoint or the end), or the checkpoint resumed from holds them
 */
export async function train(o: TrainOptions): Promise<TrainOutcome> {
  const t = o.train;
  // Checked before anything is allocated.
  const everyMs = 60_000 *
    checkedMinutes(o.checkpointMinutes ?? DEFAULT_CHECKPOINT_MINUTES, "train(): checkpointMinutes");
  const now = o.now ?? (() => performance.now());
  const log = o.log ?? console.error;
  const params = trainedVariables(o.model, o.instance);
  const varList = [...params.values()];
  const nameOf = new Map(varList.map((v) => [v.name, ""]));
  for (const [n, v] of params) nameOf.set(v.name, n);
  const optimizerConfig = optimizerConfigFor(t);
  const optimizer: Optimizer = createOptimizer(optimizerConfig);
  const ckptEnabled = o.checkpointDir !== undefined && t.checkpointEvery > 0;
  let losses: StepLoss[] = [];
  let evals: TaskEval[] = [];
  let step = 0;
  let tokens = 0;
  let trainMs = 0;
  // The step after which `tokens` and `trainMs` count (TrainOutcome.throughputFromStep).
  let throughputFromStep = 0;
  // The earlier sessions' wall time (TrainOutcome.resumedWallSeconds), and this one's origin.
  let wallBeforeMs = 0;
  const clockStart = o.clockStart ?? now();
  let resumedCode: CodeVersion | undefined;
  // Every code version that ran this run's steps so far, in order of first use (`state.json`
  // `codes`): this run's is added, so a later resume still sees an earlier segment's.
  let codes: CodeVersion[] = [];
  // Whether the evaluation of `step` is owed: a stop abandoned it (the checkpoint resumed from
  // says so), and the resume does it before the next step.
  let evalOwed = false;
  // The rows per pass of every session that ran this run's steps (`state.json`
  // `microBatchSizes`; TrainOutcome.microBatchSizes): this session's is added.
  let microBatchSizes: (number | null)[] = [];
  const passRows = rowsPerPass(t);
  // Steps of newer checkpoint folders the resume skipped (they could not be resumed): left in
  // place, and never pruned in favour of (saveCheckpoint `unusableSteps`).
  const unusableSteps = new Set<number>();
  try {
    if (ckptEnabled) {
      const ck = await loadLatestCheckpoint(o.checkpointDir!, {
        // Another run's checkpoint, other trained variables, or an owed evaluation this call
        // cannot redo: refused (thrown). A state that is not a trainer's (a `source` the batch
        // source refuses included): skipped, as a checkpoint that does not load is, for the next
        // older one. Another run's is refused as soon as its state.json is read, so also when
        // its weights would not load or its `source` is bad (a folder of another run is never
        // passed over for an older one).
        checkState: (state, dir) => {
          if (o.runKey !== undefined && state.runKey !== o.runKey) {
            throw new Error(
              `${dir}: checkpoint belongs to run ${
                JSON.stringify(state.runKey) ?? "(none: its state.json has no runKey)"
              }, not ${o.runKey}; ` +
                `remove the folder or use another output directory`,
            );
          }
          const changed = inputChange(state.inputs, o.inputs);
          if (changed !== undefined) {
            throw new Error(
              `${dir}: checkpoint was trained on other inputs than this run reads: ${changed}; ` +
                `put that file back to resume it, or train the run from step 0 (bench: ` +
                `--restart, which deletes its checkpoints)`,
            );
          }
          return undefined;
        },
        check: (ck) => {
          const want = [...params.keys()].sort().join("\n");
          const have = [...ck.variables.keys()].sort().join("\n");
          if (want !== have) {
            throw new Error(
              `${ck.dir}: trained variables differ from this run's (method or config changed?)`,
            );
          }
          // Same names, other shapes (a damaged or hand-made file): skipped like one that does
          // not load, rather than failing in the middle of the restore with tfjs's message.
          for (const [n, v] of params) {
            const saved = ck.variables.get(n)!;
            if (!tf.util.arraysEqual(saved.shape, v.shape) || saved.dtype !== v.dtype) {
              return `${ck.dir}/variables.safetensors: variable "${n}" is ` +
                `${saved.dtype} [${saved.shape}], this run's is ${v.dtype} [${v.shape}]`;
            }
          }
          // The optimizer's slots likewise (restored after the variables are assigned, a bad
          // one would fail at the first update, or, missing, restart from zeros): each must be
          // one this run's optimizer makes for its variable, with that shape.
          const badSlot = checkSlots(ck.slots, params, optimizerConfig, ck.state.optimizerStep);
          if (badSlot !== undefined) return `${ck.dir}/optimizer.safetensors: ${badSlot}`;
          try {
            checkResumeState(ck.dir, ck.step, ck.state);
          } catch (e) {
            return (e as Error).message;
          }
          if (ck.state.evalOwed === ck.step && o.evaluate === undefined) {
            throw new Error(
              `${ck.dir}/state.json: field "evalOwed": the checkpoint owes the evaluation of step ${ck.step} (a stop abandoned it), but this resume has no evaluate callback to redo it; resume it with one (as runOne does), or the run's results would lack that evaluation`,
            );
          }
          // The batch source's state (the sampler's), last, so that a refusal above leaves the
          // source untouched: a state it refuses (a damaged file; the runKey already says the
          // folder is this run's) is skipped like any other damage. Restoring is the only check
          // a BatchSource offers; a refused state leaves the source as it was (Rng,
          // MixtureSampler check before they assign), and an older checkpoint's check restores
          // its own over whatever another source left.
          try {
            o.source.restore(ck.state.source);
          } catch (e) {
            return `${ck.dir}/state.json: field "source": ${(e as Error).message}`;
          }
          return undefined;
        },
      });
      if (ck !== undefined) {
        try {
          for (const s of ck.skipped) {
            log(
              `${s.dir}: cannot be resumed (${s.reason}); resuming from the older ${ck.dir} instead (the folder is left as it is)`,
            );
            unusableSteps.add(s.step);
          }
          // Saved after a divergence (before afterStep checked for it): refused, not skipped for
          // an older one, from which the same steps would diverge again.
          const diverged = await nonFiniteNames(ck.variables);
          if (diverged.length > 0) {
            throw new NonFiniteVariablesError(ck.step, diverged, undefined, ck.dir);
          }
          // The source was restored by `check`, the last thing it did before taking `ck`.
          for (const [n, v] of params) v.assign(ck.variables.get(n)!);
          optimizer.restore(ck.state.optimizerStep as number, ck.slots);
          losses = ck.state.losses as StepLoss[];
          evals = ck.state.evals as TaskEval[];
          step = ck.step;
          if (ck.state.tokens === undefined) {
            // Written before checkpoints carried them: the steps so far are not counted, and
            // the outcome says so (throughputFromStep), rather than counting them as 0 tokens
            // in 0 ms and passing the rest for the whole run's throughput.
            throughputFromStep = step;
            log(
              `${ck.dir}/state.json has no "tokens" or "trainMs" (written before checkpoints ` +
                `recorded them): the run's throughput counts only the steps after ${step}`,
            );
          } else {
            tokens = ck.state.tokens as number;
            trainMs = ck.state.trainMs as number;
            throughputFromStep = (ck.state.tokensFromStep as number | undefined) ?? 0;
          }
          if (
            o.inputs !== undefined &&
            (typeof ck.state.inputs !== "object" || ck.state.inputs === null)
          ) {
            // Written before checkpoints recorded their inputs: resumed as before, but said,
            // since a changed data file or tokenizer would otherwise be refused (inputChange).
            log(
              `${ck.dir}/state.json has no "inputs" (written before checkpoints recorded them): ` +
                "the data and tokenizer its steps trained on cannot be checked against this " +
                "run's; if they changed since, train the run from step 0 (bench: --restart)",
            );
          }
          if (typeof ck.state.wallMs === "number") wallBeforeMs = ck.state.wallMs;
          else {
            // Written before checkpoints carried it: its training steps' time, all that is known
            // of the earlier sessions' (a lower bound), rather than passing this session's
            // alone for the run's.
            const known = ck.state.trainMs as number | undefined;
            wallBeforeMs = known ?? 0;
            log(
              `${ck.dir}/state.json has no "wallMs" (written before checkpoints recorded it): ` +
                `the run's wall time counts the sessions before step ${step} as ${
                  known === undefined
                    ? '0 s (it has no "trainMs" either)'
                    : `their training steps' ${known / 1000} s ("trainMs")`
                }`,
            );
          }
          evalOwed = ck.state.evalOwed === step;
          codes = checkpointCodes(ck.state);
          resumedCode = resumedCodeOf(codes, o.code);
          // A checkpoint written before the field existed: its sessions' micro-batch is unknown.
          microBatchSizes = Array.isArray(ck.state.microBatchSizes)
            ? ck.state.microBatchSizes as (number | null)[]
            : [null];
        } finally {
          disposeCheckpoint(ck);
        }
      }
    }
    const resumedFrom = step;
    if (resumedFrom > 0) o.onResume?.(resumedFrom);
    const mine = codeVersionOf(o.code ?? null);
    if (!codes.some((c) => sameCode(c, mine))) codes.push(mine);
    if (!microBatchSizes.includes(passRows)) microBatchSizes.push(passRows);
    let lastFinite = losses[losses.length - 1]?.loss;
    // The newest checkpoint of this run: the step and folder a resume continues from, and
    // whether it owes the step's evaluation.
    let saved: { step: number; dir: string; evalOwed: boolean } | undefined = resumedFrom > 0
      ? {
        step: resumedFrom,
        dir: join(o.checkpointDir!, checkpointDirName(resumedFrom)),
        evalOwed,
      }
      : undefined;
    // When the last checkpoint was saved (or the loop started): the wall-clock interval's origin.
    let savedAt = now();
    /** The step whose variables {@link checkVariables} last found finite. */
    let checkedStep = -1;
    /**
     * The variables the last update left, checked before anything evaluates, saves or returns
     * them (once per step): a step's loss is computed before its update, so the last update's
     * result would otherwise go unchecked. Those of the step resumed at were checked at the load.
     */
    const checkVariables = async () => {
      if (step <= resumedFrom || checkedStep === step) return;
      const bad = await nonFiniteNames(params);
      if (bad.length > 0) {
        throw new NonFiniteVariablesError(step, bad, losses.at(-1)?.loss, "update");
      }
      checkedStep = step;
    };
    /** Saves a checkpoint of `step` and records it as the newest (`saved`). */
    const saveStep = async () => {
      await checkVariables();
      const dir = await saveCheckpoint(o.checkpointDir!, {
        variables: params,
        slots: optimizer.slots(),
        state: {
          step,
          runKey: o.runKey ?? null,
          // Only when given, so that a run without them writes the state as before.
          ...(o.inputs === undefined ? {} : { inputs: o.inputs }),
          code: o.code ?? null,
          codes,
          microBatchSizes,
          optimizerStep: optimizer.step,
          source: o.source.state(),
          losses,
          evals,
          tokens,
          trainMs,
          // Never negative (a clockStart ahead of `now` would make the checkpoint unresumable).
          wallMs: wallBeforeMs + Math.max(0, now() - clockStart),
          // Only when some steps are not counted, so that a whole run's state is as before.
          ...(throughputFromStep > 0 ? { tokensFromStep: throughputFromStep } : {}),
          // Only when owed, so that a checkpoint owing none is as before the field existed.
          ...(evalOwed ? { evalOwed: step } : {}),
        },
      }, { unusableSteps });
      // The skipped folder of this step (if any) was replaced by this checkpoint.
      unusableSteps.delete(step);
      saved = { step, dir, evalOwed };
      savedAt = now();
    };
    /** One optimizer step: batch, loss and gradients, clipping, update; its loss recorded. */
    const oneStep = async (): Promise<void> => {
      const t0 = performance.now();
      const batch = o.source.next();
      let lossValue: number;
      // The learning rate the update used (the schedule's at this step).
      let lr: number;
      let gradNorm: number;
      // The step's tensors, freed as soon as they are used and, whatever throws (the optimizer,
      // the schedule, a read-back), by the `finally` below.
      let value: tf.Tensor | undefined;
      let norm: tf.Tensor | undefined;
      let grads = new Map<string, tf.Tensor>();
      let scaled = new Map<string, tf.Tensor>();
      try {
        const dropoutSeed = seedFor(o.seed, `dropout:${step}`);
        const r = await lossAndGrads(o, batch, varList, dropoutSeed);
        value = r.value;
        grads = new Map(Object.entries(r.grads).map(([k, v]) => [nameOf.get(k) ?? k, v]));
        lossValue = (await value.data())[0]!;
        value.dispose();
        norm = globalGradNorm(grads.values());
        gradNorm = (await norm.data())[0]!;
        norm.dispose();
        if (!Number.isFinite(lossValue) || !Number.isFinite(gradNorm)) {
          const badGradients = await nonFiniteNames(grads);
          const badVariables = await nonFiniteNames(params);
          throw new NonFiniteLossError(
            step + 1,
            lossValue,
            batch.taskIds.map((i) => o.taskNames[i] ?? String(i)),
            lastFinite,
            badVariables,
            badGradients,
            gradNorm,
          );
        }
        if (t.clipNorm !== null) {
          // PyTorch clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1.
          const coef = t.clipNorm / (gradNorm + 1e-6);
          if (coef < 1) {
            for (const [k, v] of grads) scaled.set(k, tf.mul(v, coef));
            // The unscaled ones are freed before the update, which then holds one set only.
            tf.dispose([...grads.values()]);
            [grads, scaled] = [scaled, new Map()];
          }
        }
        lr = learningRateAt(t.schedule, t.learningRate, step, t.steps);
        optimizer.apply(params, grads, lr);
        tokens += batch.numTokens;
      } finally {
        // Disposing twice is a no-op: what was freed above is skipped.
        tf.dispose([
          ...(value === undefined ? [] : [value]),
          ...(norm === undefined ? [] : [norm]),
          ...grads.values(),
          ...scaled.values(),
        ]);
        disposeBatch(batch);
      }
      trainMs += performance.now() - t0;
      step++;
      losses.push({ step, loss: lossValue, lr: lr! });
      lastFinite = lossValue;
      await o.onStep?.(step, lossValue);
    };
    const shouldStop = o.shouldStop ?? stopRequested;
    /**
     * What follows a step (or, on a resume that owes it, the step resumed at): its evaluation
     * when due, then the scheduled checkpoint, or one when the wall-clock interval has passed (a
     * step boundary like any other: saving reads the state and changes nothing). A stop in the
     * evaluation abandons it ({@link TrainingInterruptedError} with `evaluationOwed`), after
     * saving a checkpoint of the step that owes it: the state of the step boundary before the
     * evaluation, which nothing in the evaluation changes.
     */
    const afterStep = async (evaluationDue: boolean): Promise<void> => {
      if ((o.evaluate !== undefined && evaluationDue) || step === t.steps) await checkVariables();
      if (o.evaluate && evaluationDue) {
        evalOwed = true;
        o.onEval?.(step);
        let done: TaskEval[];
        try {
          done = await o.evaluate(step, shouldStop, evals);
        } catch (e) {
          const stopped = e as { evaluationStopped?: unknown; reason?: unknown } | null;
          if (stopped?.evaluationStopped !== true || typeof stopped.reason !== "string") throw e;
          // The checkpoint of a resume that owed this evaluation says so already.
          if (ckptEnabled && step > 0 && !(saved?.step === step && saved.evalOwed)) {
            await saveStep();
          }
          throw new TrainingInterruptedError(
            stopped.reason,
            step,
            t.steps,
            saved?.dir,
            ckptEnabled,
            true,
          );
        }
        evals.push(...done);
      }
      evalOwed = false;
      if (
        ckptEnabled &&
        (step % t.checkpointEvery === 0 || step === t.steps ||
          (everyMs > 0 && now() - savedAt >= everyMs))
      ) {
        await saveStep();
      }
    };
    if (ckptEnabled) checkpointingLoop(1);
    try {
      if (evalOwed) await afterStep(true);
      const due = yielder(YIELD_EVERY_MS, now);
      while (step < t.steps) {
        // The bench's signal listener runs only when the event loop turns (yieldToEventLoop);
        // it is installed only while a loop that writes checkpoints runs. Without checkpoints the
        // loop turns it once a second still, for timers (a run claim's heartbeat).
        if (ckptEnabled) await yieldToEventLoop();
        else await due();
        const stop = shouldStop();
        if (stop !== undefined) {
          // Every state of a step boundary is resumable: the steps since the last checkpoint are
          // kept (the step's evaluation is done; the sampler and optimizer are between steps).
          // A checkpoint of this step that owed its evaluation, done since, is saved again.
          if (ckptEnabled && (saved?.step !== step || saved.evalOwed) && step > 0) {
            await saveStep();
          }
          throw new TrainingInterruptedError(stop, step, t.steps, saved?.dir, ckptEnabled);
        }
        await oneStep();
        await afterStep(step % t.evalEvery === 0 || step === t.steps);
      }
    } finally {
      if (ckptEnabled) {
        // A signal the process received since the event loop last turned (in the final save's
        // last steps, or the step or evaluation an error ended) reaches the bench's listener only
        // when it turns again. It turns once here, so that one dispatched at once is the stop
        // request before the loop returns (runOne then stops before the attention mass); the
        // listener stays installed until the run's result is written, for one dispatched later.
        // The runner honours the request right after this run (the final state is saved).
        await yieldToEventLoop();
        checkpointingLoop(-1);
      }
    }
    return {
      losses,
      evals,
      resumedFrom,
      ...(resumedCode === undefined ? {} : { resumedCode }),
      microBatchSizes,
      tokens,
      trainSeconds: trainMs / 1000,
      throughputFromStep,
      resumedWallSeconds: wallBeforeMs / 1000,
      ...(saved === undefined ? {} : { checkpoint: saved.dir }),
    };
  } finally {
    optimizer.dispose();
  }
}
