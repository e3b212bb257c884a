/**
 * Resumable training checkpoints, written atomically.
 *
 * A checkpoint is a folder `<root>/step-<8 digits>/` holding
 * - `variables.safetensors`: every trained variable (backbone and method) by name, float32;
 * - `optimizer.safetensors`: the optimizer slots (`"<variable>/<slot>"`);
 * - `state.json`: the step, optimizer step, sampler and RNG state, loss and eval history, and any
 *   other JSON the trainer adds (`benchmarks/trainer.ts`: `evalOwed`, the step, when a stop
 *   abandoned that step's evaluation, which a resume then redoes first; `code`, the code and
 *   backend that wrote it, and `codes`, every one that ran its steps; `microBatchSizes`, the rows
 *   per pass of every session that ran them; `tokens` and `trainMs`, the training tokens and
 *   step time so far, counted from step `tokensFromStep` when that is present; `wallMs`, the
 *   run's wall time up to this save, summed over its sessions).
 * The folder is assembled under a temporary name, `.step-<8 digits>.tmp-<pid>-<12 hex>`, held
 * locked while the save runs (`makeHeldTempDir` in model/fs.ts), and renamed into place, so a
 * folder named `step-…` is always complete. A kill at any point leaves at worst such a temporary,
 * which the next save or load removes once nobody holds it (`removeStaleTemps`); other names in
 * the folder are never touched. Only the newest `keep` checkpoints are kept.
 *
 * A checkpoint that cannot be loaded (a corrupt or missing file, a partial copy restored by hand,
 * a disk error) or that its user finds unusable does not stop a resume while an older one loads:
 * {@link loadLatestCheckpoint} falls back to the newest that does, and says which it skipped and
 * why. A folder its user refuses (`LoadLatestOptions.checkState` or `check` throws: another run's)
 * stops the resume instead; `checkState` judges `state.json` before the weights are read, so such
 * a folder is refused whether or not its weights load. The skipped folders are left as they are
 * (user data: nothing here renames or removes them for being unusable); a save that is told of
 * them (`SaveCheckpointOptions.unusableSteps`) does not count them among the `keep` newest, so
 * pruning never removes a good checkpoint in their favour. A save of the same step replaces one,
 * as any rerun of a step does.
 *
 * A save of a step that already has a checkpoint (a rerun after a kill between saves) never
 * leaves the step without a complete folder: the old one is renamed aside
 * (`.step-….old-<tag of the save's temporary>`), the new one renamed in, and only then the old
 * one removed. A kill between the two renames leaves the old one aside, and the next save or
 * load renames it back. Folders are removed (the old one, pruned ones) by renaming them to
 * `.step-….del-<tag>` first, so a kill while removing never leaves part of a folder under a name
 * that is loaded or restored; the next save or load finishes the removal. The checkpoint folder
 * is flushed after the rename (`swapFolderInto` and `syncDir` in model/fs.ts), so the new name
 * survives a power cut.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { basename, join } from "node:path";
import {
  discardFolder,
  makeHeldTempDir,
  recoverAsideFolders,
  removeStaleTemps,
  swapFolderInto,
  TEMP_TAG_SOURCE,
  type TempPattern,
  writeFileAtomic,
} from "../model/fs.ts";
import { decodeSafetensors, encodeSafetensors, type RawTensor } from "../model/safetensors.ts";

/** What the trainer stores besides tensors (must be JSON-serialisable). */
export interface CheckpointState {
  /** Optimizer steps completed. */
  readonly step: number;
  /** Other JSON state (sampler, RNG, histories, spec id, …). */
  readonly [key: string]: unknown;
}

/** A loaded checkpoint. The caller owns (and must dispose) the tensors. */
export interface LoadedCheckpoint {
  readonly dir: string;
  readonly step: number;
  readonly variables: Map<string, tf.Tensor>;
  readonly slots: Map<string, tf.Tensor>;
  readonly state: CheckpointState;
}

const STEP_DIR = /^step-(\d{8})$/;

/** Folder name of the checkpoint of a step. */
export function checkpointDirName(step: number): string {
  return `step-${String(step).padStart(8, "0")}`;
}

async function toRaw(tensors: ReadonlyMap<string, tf.Tensor>): Promise<Map<string, RawTensor>> {
  const out = new Map<string, RawTensor>();
  for (const [name, t] of tensors) {
    if (t.dtype !== "float32" && t.dtype !== "int32") {
      throw new Error(
        `benchmarks/checkpointing.ts: tensor "${name}" has unsupported dtype ${t.dtype}`,
      );
    }
    const values = (await t.data()) as Float32Array | Int32Array;
    out.set(name, {
      dtype: t.dtype === "float32" ? "F32" : "I32",
      shape: t.shape,
      data: new Uint8Array(values.buffer, values.byteOffset, values.byteLength).slice(),
    });
  }
  return out;
}

function fromRaw(bytes: Uint8Array, source: string): Map<string, tf.Tensor> {
  const { tensors } = decodeSafetensors(bytes, source);
  const out = new Map<string, tf.Tensor>();
  for (const [name, t] of tensors) {
    const copy = t.data.slice();
    if (t.dtype === "F32") {
      out.set(name, tf.tensor(new Float32Array(copy.buffer), [...t.shape], "float32"));
    } else if (t.dtype === "I32") {
      out.set(name, tf.tensor(new Int32Array(copy.buffer), [...t.shape], "int32"));
    } else {
      for (const x of out.values()) x.dispose();
      throw new Error(`${source}: tensor "${name}" has dtype ${t.dtype}; checkpoints hold F32/I32`);
    }
  }
  return out;
}

/**
 * The steps of the complete checkpoints under `root`, ascending (empty when none or no folder).
 *
 * @param root the checkpoint folder
 */
export async function listCheckpoints(root: string): Promise<number[]> {
  const steps: number[] = [];
  try {
    for await (const e of Deno.readDir(root)) {
      const m = e.isDirectory ? STEP_DIR.exec(e.name) : null;
      if (m) steps.push(Number(m[1]));
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  return steps.sort((a, b) => a - b);
}

/**
 * The temporary folders {@link saveCheckpoint} builds a checkpoint in:
 * `.step-<8 digits>.tmp-<pid>-<12 hex>`, held locked while the save runs. No legacy pattern: the
 * unlocked `.tmp-step-<8 digits>-<pid>` of earlier versions was written only in development
 * clones (never released), where a leftover is ignored by {@link listCheckpoints}.
 */
const CHECKPOINT_TEMPS: TempPattern = {
  kind: "directory",
  held: new RegExp(String.raw`^\.step-\d{8}\.tmp-${TEMP_TAG_SOURCE}$`),
};

/** A checkpoint a save moved aside: `.step-<8 digits>.old-<tag of the save's temporary>`. */
const CHECKPOINT_ASIDE = new RegExp(
  String.raw`^\.(?<name>step-\d{8})\.old-(?<tag>${TEMP_TAG_SOURCE})$`,
);

/**
 * Removes `dir` (a checkpoint folder, or one moved aside): renamed to `.step-….del-<tag>` first
 * (`discardFolder`), so a kill part-way leaves no partial folder under a name that is loaded or
 * restored.
 */
async function discard(dir: string): Promise<void> {
  const m = /^\.?(step-\d{8})/.exec(basename(dir));
  if (m === null) throw new Error(`benchmarks/checkpointing.ts: ${dir} is not a checkpoint folder`);
  await discardFolder(dir, m[1]);
}

/**
 * Cleans what killed saves left in `root`, and restores what they had moved aside:
 * - their temporaries, once nobody holds them ({@link CHECKPOINT_TEMPS}; `removeStaleTemps`);
 * - a checkpoint moved aside ({@link CHECKPOINT_ASIDE}) whose save is not running (its
 *   temporary is gone or nobody holds it; the lock decides, not the pid in the name, so a run
 *   restarted under the same pid recovers too): renamed back when its step has no folder (the
 *   save was killed between its two renames), else discarded (killed before removing it); the
 *   killed save's temporary goes with it;
 * - folders being removed (`.step-….del-<tag>`).
 * The last two are `recoverAsideFolders` (model/fs.ts), which `saveHfFolder`'s sweep shares.
 * Housekeeping: errors are ignored (a folder it cannot fix stays as it is).
 */
async function recoverCheckpoints(root: string): Promise<void> {
  await removeStaleTemps(root, CHECKPOINT_TEMPS);
  await recoverAsideFolders(root, CHECKPOINT_ASIDE);
}

/** Where {@link SaveCheckpointOptions.onSwap} is called. */
export type SwapPoint = "written" | "aside" | "swapped";

/** Options of {@link saveCheckpoint}. */
export interface SaveCheckpointOptions {
  /** How many newest checkpoints to keep (default 2, at least 1). */
  readonly keep?: number;
  /**
   * Called (and awaited) at each point of the swap, for tests of a kill there: `written` (the
   * new folder is complete under its temporary name), `aside` (an existing folder of the step
   * was renamed aside), `swapped` (the new folder is in place; the old one not yet removed).
   */
  readonly onSwap?: (point: SwapPoint) => void | Promise<void>;
  /**
   * Steps whose folders {@link loadLatestCheckpoint} skipped as unusable
   * ({@link LatestCheckpoint.skipped}) when this run resumed from an older one: pruning neither
   * counts them among the `keep` newest nor removes them, so the older checkpoint the run
   * resumed from (and those it saves since) are not removed in favour of a folder that does not
   * load; the folders stay for the user. The step being saved is not one of them any more (its
   * folder is replaced by the new checkpoint).
   */
  readonly unusableSteps?: ReadonlySet<number>;
}

/**
 * Write a checkpoint atomically (temporary folder, then rename; an existing folder of the step
 * is moved aside first and removed after) and prune old ones. A kill at any point leaves a
 * complete folder for the step (the old one or the new one) once the next save or load has
 * swept `root`.
 *
 * @param root the checkpoint folder (created if missing)
 * @param parts trained variables, optimizer slots and JSON state (`state.step` names the folder)
 * @param opts `keep`: how many newest checkpoints to keep; `unusableSteps`: folders a resume
 *   skipped, never pruned; `onSwap`: a hook for tests
 * @returns the path of the new checkpoint folder
 */
export async function saveCheckpoint(
  root: string,
  parts: {
    variables: ReadonlyMap<string, tf.Tensor>;
    slots: ReadonlyMap<string, tf.Tensor>;
    state: CheckpointState;
  },
  opts: SaveCheckpointOptions = {},
): Promise<string> {
  const step = parts.state.step;
  if (!Number.isInteger(step) || step < 0) {
    throw new Error(
      `benchmarks/checkpointing.ts: state.step must be a non-negative integer, got ${step}`,
    );
  }
  await Deno.mkdir(root, { recursive: true });
  await recoverCheckpoints(root);
  const name = checkpointDirName(step);
  const held = await makeHeldTempDir(root, `.${name}`);
  const tmp = held.path;
  const final = join(root, name);
  try {
    // Flushed to disk before the folder is renamed into place, so that after a power loss a
    // `step-…` folder does not hold empty files either.
    await writeFileAtomic(
      join(tmp, "variables.safetensors"),
      encodeSafetensors(await toRaw(parts.variables)),
    );
    await writeFileAtomic(
      join(tmp, "optimizer.safetensors"),
      encodeSafetensors(await toRaw(parts.slots)),
    );
    await writeFileAtomic(join(tmp, "state.json"), JSON.stringify(parts.state));
    await opts.onSwap?.("written");
    // Replace an existing checkpoint of the same step (a rerun after a kill between saves): moved
    // aside, not removed, so that the step keeps a complete folder at every instant.
    await swapFolderInto(tmp, final, opts.onSwap);
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  } finally {
    held.release();
  }
  const keep = Math.max(1, opts.keep ?? 2);
  const unusable = opts.unusableSteps;
  const steps = (await listCheckpoints(root)).filter((s) => s === step || !unusable?.has(s));
  for (const s of steps.slice(0, Math.max(0, steps.length - keep))) {
    await discard(join(root, checkpointDirName(s)));
  }
  return final;
}

/**
 * Reads a checkpoint folder's `state.json`: JSON holding an object (its fields not checked).
 *
 * @param dir a `step-…` folder
 * @returns the parsed object
 * @throws Error naming the file when it cannot be read, is not JSON or not an object
 */
async function readStateJson(dir: string): Promise<Record<string, unknown>> {
  const statePath = join(dir, "state.json");
  let state: unknown;
  try {
    state = JSON.parse(await Deno.readTextFile(statePath));
  } catch (e) {
    throw new Error(`${statePath}: cannot read checkpoint state: ${(e as Error).message}`);
  }
  if (typeof state !== "object" || state === null || Array.isArray(state)) {
    throw new Error(
      `${statePath}: cannot read checkpoint state: a JSON object expected, got ${
        Array.isArray(state) ? "an array" : JSON.stringify(state)
      }`,
    );
  }
  return state as Record<string, unknown>;
}

/**
 * Whether a checkpoint owes its step's evaluation (`state.json` `evalOwed` is its step: a stop
 * abandoned the evaluation, which a resume does first). For estimates: false where the state
 * cannot be read (a resume would then skip the folder, or stop on it, and say why).
 *
 * @param dir a `step-…` folder
 */
export async function checkpointOwesEvaluation(dir: string): Promise<boolean> {
  try {
    const state = await readStateJson(dir);
    return Number.isInteger(state.step) && state.evalOwed === state.step;
  } catch {
    return false;
  }
}

/**
 * Checks the `step` of a checkpoint's state: an integer, the step its folder's name says.
 *
 * @throws Error naming `state.json` and the field
 */
function checkStateStep(dir: string, state: Record<string, unknown>): CheckpointState {
  const statePath = join(dir, "state.json");
  if (!Number.isInteger(state.step)) {
    throw new Error(
      `${statePath}: field "step" must be an integer, got ${JSON.stringify(state.step)}`,
    );
  }
  // A folder's name is its step (saveCheckpoint): a state of another step (a folder copied or
  // renamed by hand) would resume a step the folder's name does not say.
  const named = STEP_DIR.exec(basename(dir));
  if (named !== null && Number(named[1]) !== state.step) {
    throw new Error(
      `${statePath}: field "step" is ${state.step}, but the folder is the checkpoint of step ${
        Number(named[1])
      }`,
    );
  }
  return state as CheckpointState;
}

/** Reads a checkpoint folder's two weights files (the caller disposes the tensors). */
async function loadTensors(
  dir: string,
): Promise<{ variables: Map<string, tf.Tensor>; slots: Map<string, tf.Tensor> }> {
  const vPath = join(dir, "variables.safetensors");
  const sPath = join(dir, "optimizer.safetensors");
  const variables = fromRaw(await Deno.readFile(vPath), vPath);
  let slots: Map<string, tf.Tensor>;
  try {
    slots = fromRaw(await Deno.readFile(sPath), sPath);
  } catch (e) {
    for (const t of variables.values()) t.dispose();
    throw e;
  }
  return { variables, slots };
}

/**
 * Load one checkpoint folder.
 *
 * @param dir a `step-…` folder
 * @returns the tensors (caller disposes) and state
 * @throws Error naming the file when something is missing or malformed
 */
export async function loadCheckpoint(dir: string): Promise<LoadedCheckpoint> {
  const state = checkStateStep(dir, await readStateJson(dir));
  const { variables, slots } = await loadTensors(dir);
  return { dir, step: state.step, variables, slots, state };
}

/** A checkpoint folder {@link loadLatestCheckpoint} skipped, and why. */
export interface SkippedCheckpoint {
  /** The folder (`<root>/step-…`). */
  readonly dir: string;
  /** Its step (from its name). */
  readonly step: number;
  /** Why it was skipped: the error that loading it gave, or the `check`'s reason. */
  readonly reason: string;
}

/** What {@link loadLatestCheckpoint} found: the checkpoint, and the newer folders it skipped. */
export interface LatestCheckpoint extends LoadedCheckpoint {
  /** The folders newer than this one that could not be used, newest first (usually none). */
  readonly skipped: readonly SkippedCheckpoint[];
}

/** Options of {@link loadLatestCheckpoint}. */
export interface LoadLatestOptions {
  /**
   * Judges a folder's `state.json` as soon as it parses (a JSON object; its `step` not checked
   * yet), before anything else of the folder is read: returns why it cannot be resumed (skipped,
   * as a folder that does not load), or undefined to go on loading it. An error it throws
   * refuses the folder, as `check`'s does: so a state that names another run is refused even
   * when the folder's weights would not load (it is not passed over for an older folder).
   */
  readonly checkState?: (
    state: Readonly<Record<string, unknown>>,
    dir: string,
  ) => string | undefined;
  /**
   * Judges a checkpoint that loaded: returns why it cannot be resumed (it is then disposed and
   * skipped like one that did not load, and the next older one is tried), or undefined to take
   * it. An error it throws is not a reason to skip: the checkpoint is disposed and the error
   * propagates (a checkpoint of another run is refused, not passed over).
   */
  readonly check?: (ck: LoadedCheckpoint) => string | undefined;
}

/**
 * Load the newest checkpoint under `root` that loads (and passes `opts.checkState` and
 * `opts.check`), or `undefined` if there is no checkpoint folder. A newer folder that does not
 * load (a corrupt, truncated or missing file, a `state.json` of another step) is skipped, left as
 * it is, and reported in {@link LatestCheckpoint.skipped}, so that a resume falls back to the
 * older checkpoint kept.
 *
 * @param root the checkpoint folder
 * @param opts `checkState`: judges each folder's `state.json` first; `check`: each loaded
 *   checkpoint
 * @returns the checkpoint (caller disposes) with the folders skipped, or undefined when none
 * @throws Error naming every folder and why it could not be used, when none could; or the
 *   error `opts.checkState` or `opts.check` threw
 */
export async function loadLatestCheckpoint(
  root: string,
  opts: LoadLatestOptions = {},
): Promise<LatestCheckpoint | undefined> {
  await recoverCheckpoints(root);
  const steps = await listCheckpoints(root);
  const skipped: SkippedCheckpoint[] = [];
  for (const step of steps.reverse()) {
    const dir = join(root, checkpointDirName(step));
    let json: Record<string, unknown>;
    try {
      json = await readStateJson(dir);
    } catch (e) {
      skipped.push({ dir, step, reason: (e as Error).message });
      continue;
    }
    // Thrown (a refusal) before the rest of the folder is read, so that a folder whose state
    // names another run is refused whether or not its weights load.
    const stateReason = opts.checkState?.(json, dir);
    if (stateReason !== undefined) {
      skipped.push({ dir, step, reason: stateReason });
      continue;
    }
    let ck: LoadedCheckpoint;
    try {
      const state = checkStateStep(dir, json);
      ck = { dir, step: state.step, ...await loadTensors(dir), state };
    } catch (e) {
      skipped.push({ dir, step, reason: (e as Error).message });
      continue;
    }
    let reason: string | undefined;
    try {
      reason = opts.check?.(ck);
    } catch (e) {
      disposeCheckpoint(ck);
      throw e;
    }
    if (reason === undefined) return { ...ck, skipped };
    disposeCheckpoint(ck);
    skipped.push({ dir, step, reason });
  }
  if (skipped.length === 0) return undefined;
  // What to do (h388): the same advice as bench's for checkpoints it would not resume.
  throw new Error(
    `${root}: no checkpoint can be resumed (${skipped.length} tried, newest first): ${
      skipped.map((s) => `${checkpointDirName(s.step)}: ${s.reason}`).join("; ")
    }; ${NO_RESUME_ADVICE}`,
  );
}

/** The end of the error when no checkpoint of a folder can be resumed. */
export const NO_RESUME_ADVICE =
  "to train the run from step 0, move the folder aside (deno task bench --restart deletes it)";

/** Dispose the tensors of a loaded checkpoint. */
export function disposeCheckpoint(ck: LoadedCheckpoint): void {
  for (const t of ck.variables.values()) t.dispose();
  for (const t of ck.slots.values()) t.dispose();
}
