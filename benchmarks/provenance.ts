/**
 * Provenance of a run: git commit and dirty flag, runtime and package versions, backend, device,
 * host and timestamps (recorded in every {@link RunResult}), plus where the task data came from
 * ({@link DataProvenance}), which checkpoint files the backbone was read from
 * ({@link CheckpointProvenance}) and, for a run resumed from a checkpoint, which step and code it
 * resumed from ({@link ResumeRecord}).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { hostname } from "node:os";
import { join, resolve, sep as SEP } from "node:path";
import { repoPath, sharedPath } from "../model/shared_dir.ts";
import { commandOutput, readProc } from "../model/env.ts";
import { readManifest } from "../tasks/download.ts";
import { type CheckpointFileRecord, fileDigest } from "../model/checkpoint.ts";
import type { BackendRecord, Provenance } from "./spec.ts";

/** One task file a run read, as found in its data folder. */
export interface DataFileRecord {
  /** Size in bytes when the run read it. */
  readonly bytes: number;
  /**
   * Its sha256 as the run read it (hashed once per process, `model/checkpoint.ts` `fileDigest`).
   * Absent only in results written before it was hashed, which gave the folder's listing's.
   */
  readonly sha256?: string;
  /**
   * The sha256 the folder's listing gives for it (the download cache's `manifest.json`, or the
   * mirror's `SHA256SUMS`), present when it differs from {@link DataFileRecord.sha256}: the file
   * was changed after it was listed (edited in place, line endings converted), so it is not the
   * file the listing vouches for.
   */
  readonly listedSha256?: string;
  /**
   * How the download cache produced it: `official` (the official files) or `parquet` (Hugging
   * Face parquet converted to the official format, `tasks/hf_convert.ts`). Absent outside a
   * download cache or when the manifest does not list it.
   */
  readonly source?: "official" | "parquet";
  /**
   * The folder the file really lives in, when the data folder only links to it (the merged
   * folder of links `tasks/data.ts` `chooseDataDir` builds under `<cache>/merged/`): its
   * `sha256` and `source` are then that folder's listing's.
   */
  readonly from?: { readonly dir: string; readonly kind: "mirror" | "cache" | "folder" };
}

/** Where a run's task data came from. */
export interface DataProvenance {
  /** The data folder (absolute path). */
  readonly dir: string;
  /**
   * `mirror`: the offline mirror (`shared/data`, or a folder with its `SHA256SUMS` and no
   * `manifest.json`); `cache`: a download cache (`deno task download`, with `manifest.json`);
   * `folder`: anything else (files put there by hand).
   */
  readonly kind: "mirror" | "cache" | "folder";
  /** Distinct {@link DataFileRecord.source}s of the files read (a download cache only). */
  readonly sources: readonly ("official" | "parquet")[];
  /** Each file read (path relative to `dir`, e.g. `glue/RTE/train.tsv`), sorted by path. */
  readonly files: Readonly<Record<string, DataFileRecord>>;
}

/** The checkpoint a run resumed from (absent from a run trained from step 0). */
export interface ResumeRecord {
  /** Optimizer steps the checkpoint held. */
  readonly step: number;
  /**
   * The git commit (`"unknown"` for a checkpoint written before checkpoints recorded it) and
   * dirty flag of the code that wrote the checkpoint. Present unless that code is provably the
   * run's own: the same commit with both trees clean.
   */
  readonly gitSha?: string;
  /** Whether that code's tree had uncommitted changes (present exactly when `gitSha` is). */
  readonly gitDirty?: boolean;
  /**
   * The backend the checkpoint's steps ran on (`BackendRecord.name`), present when it is not the
   * run's own (a run started on `webgpu` and resumed on `wasm+blas` under `backend: "auto"`).
   */
  readonly backend?: string;
  /**
   * The rows per forward/backward pass of each session that trained the run, each value once in
   * order of first use (`null`: sessions before a checkpoint recorded it); present when the run
   * trained with more than one (a resume on another device, whose preflight chose another
   * micro-batch). Results are the same up to float rounding of the gradient sums.
   */
  readonly microBatchSizes?: readonly (number | null)[];
}

/**
 * The Hugging Face checkpoint folder a run's backbone was read from: an `{"hf": …}` model or
 * backbone (a local folder or a hub id), a published preset's pretrained backbone (its hub
 * repo), or the offline-pretrained backbone of a tiny preset (its cache folder). The run id
 * hashes the spec, which names only the folder: these digests say which weights trained.
 */
export interface CheckpointProvenance {
  /** The folder read (the hub cache folder for a hub id). */
  readonly dir: string;
  /** The hub repo, when the folder is its cache. */
  readonly hubId?: string;
  /**
   * Each file read, by name relative to `dir`, sorted (`model/pretrained.ts` `checkpointFiles`):
   * `config.json`, the tokenizer's (`tokenizer.json`, or `spiece.model` and
   * `tokenizer_config.json`) and the weights (the single file, or the sharded index and its
   * shards; none for a random init from the folder's config), with its size and sha256 when the
   * run loaded it.
   */
  readonly files: Readonly<Record<string, CheckpointFileRecord>>;
}

/** A run's {@link Provenance} with the data and checkpoint it read and the one it resumed from. */
export interface RunProvenance extends Provenance {
  /** Where the task files came from (absent in results written before it was recorded). */
  readonly data?: DataProvenance;
  /**
   * The checkpoint folder the backbone (or, for a random init, its config and tokenizer) was read
   * from; absent for a random init from a preset, and in results written before it was recorded.
   */
  readonly checkpoint?: CheckpointProvenance;
  /**
   * The size and sha256 of the `tokenizer.json` read for a `task-spm:<file>` or `fixture:<file>`
   * tokenizer (`RunResult.tokenizer` names the file; a checkpoint folder's own tokenizer files
   * are in {@link RunProvenance.checkpoint}): a vocabulary retrained in place keeps the path.
   * Absent for other tokenizers and in results written before it was recorded.
   */
  readonly tokenizerFile?: CheckpointFileRecord;
  /** The checkpoint the run resumed from; absent when it trained from step 0. */
  readonly resumedFrom?: ResumeRecord;
}

/**
 * The {@link ResumeRecord} of a run.
 *
 * @param step the step resumed from (0: a fresh start)
 * @param checkpointCode the code (and backend) that wrote the checkpoint
 * @param current the code of this run
 * @param backend the backend of this run (`BackendRecord.name`)
 * @param microBatchSizes the rows per pass of each session (`TrainOutcome.microBatchSizes`),
 *   recorded when there is more than one
 * @returns the record, or undefined for a fresh start
 */
export function resumeRecord(
  step: number,
  checkpointCode: { sha: string; dirty: boolean; backend?: string } | undefined,
  current: { sha: string; dirty: boolean },
  backend?: string,
  microBatchSizes: readonly (number | null)[] = [],
): ResumeRecord | undefined {
  if (step <= 0) return undefined;
  const ck = checkpointCode ?? { sha: "unknown", dirty: false };
  const same = ck.sha !== "unknown" && ck.sha === current.sha && !ck.dirty && !current.dirty;
  const other = {
    ...(ck.backend !== undefined && ck.backend !== backend ? { backend: ck.backend } : {}),
    ...(microBatchSizes.length > 1 ? { microBatchSizes } : {}),
  };
  return same ? { step, ...other } : { step, gitSha: ck.sha, gitDirty: ck.dirty, ...other };
}

function realPath(path: string): string {
  try {
    return Deno.realPathSync(path);
  } catch {
    return resolve(path);
  }
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** `SHA256SUMS` (`<hex>  ./glue/CoLA/dev.tsv` lines) as path → digest. */
async function readSums(path: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const line of (await Deno.readTextFile(path)).split("\n")) {
    const m = /^([0-9a-f]{64})\s+\*?(?:\.\/)?(.+)$/.exec(line.trim());
    if (m) out.set(m[2]!, m[1]!);
  }
  return out;
}

/**
 * Where a run's task files came from: the folder, its kind (offline mirror, download cache or
 * other), and per file its size, its sha256 (hashed), the listing's digest when that differs, and
 * (download cache) whether it is an official file or converted Hugging Face parquet.
 *
 * @param dataDir the data folder the run read
 * @param files the files it read, relative to `dataDir` (`glue/RTE/train.tsv`, …)
 * @returns the record
 * @throws Error naming the file when a file is missing or cannot be hashed, or a listing cannot
 *   be read
 */
export async function dataProvenance(
  dataDir: string,
  files: readonly string[],
): Promise<DataProvenance> {
  const dir = realPath(dataDir);
  const folders = new Map<string, Promise<FolderListing>>();
  const folder = (root: string) => {
    let f = folders.get(root);
    if (f === undefined) folders.set(root, f = listFolder(root));
    return f;
  };
  const { kind } = await folder(dir);
  const out: Record<string, DataFileRecord> = {};
  const sources = new Set<"official" | "parquet">();
  for (const f of [...new Set(files)].sort()) {
    let bytes: number;
    try {
      bytes = Deno.statSync(join(dir, f)).size;
    } catch (e) {
      throw new Error(`${join(dir, f)}: cannot stat a task file (${(e as Error).message})`);
    }
    // A link (or a file under a linked folder) into another data folder: read that one's listing.
    const real = realPath(join(dir, f));
    const tail = `${SEP}${f.split("/").join(SEP)}`;
    const root = real !== join(dir, f) && real.endsWith(tail) ? real.slice(0, -tail.length) : dir;
    const at = await folder(root);
    const l = at.listed.get(f);
    if (l?.source !== undefined) sources.add(l.source);
    // The bytes read, not the listing's word for them: a listed file edited since is told apart.
    const { sha256 } = await fileDigest(join(dir, f));
    out[f] = {
      bytes,
      sha256,
      ...(l === undefined || l.sha256 === sha256 ? {} : { listedSha256: l.sha256 }),
      ...(l?.source === undefined ? {} : { source: l.source }),
      ...(root === dir ? {} : { from: { dir: root, kind: at.kind } }),
    };
  }
  return { dir, kind, sources: [...sources].sort(), files: out };
}

interface FolderListing {
  kind: "mirror" | "cache" | "folder";
  listed: Map<string, { sha256: string; source?: "official" | "parquet" }>;
}

/** A data folder's kind and the digests it lists (cache manifest or mirror `SHA256SUMS`). */
async function listFolder(dir: string): Promise<FolderListing> {
  const manifestPath = join(dir, "manifest.json");
  const sumsPath = join(dir, "SHA256SUMS");
  const kind = exists(manifestPath)
    ? "cache"
    : dir === realPath(sharedPath("data")) || exists(sumsPath)
    ? "mirror"
    : "folder";
  let listed = new Map<string, { sha256: string; source?: "official" | "parquet" }>();
  if (kind === "cache") {
    const manifest = await readManifest(dir);
    listed = new Map(
      Object.entries(manifest.files).map(([p, f]) => [p, { sha256: f.sha256, source: f.source }]),
    );
  } else if (exists(sumsPath)) {
    try {
      listed = new Map([...await readSums(sumsPath)].map(([p, sha256]) => [p, { sha256 }]));
    } catch (e) {
      throw new Error(`${sumsPath}: cannot read (${(e as Error).message})`);
    }
  }
  return { kind, listed };
}

function git(args: string[], cwd: string): string | undefined {
  return commandOutput("git", args, cwd)?.trim();
}

/**
 * Git commit of a repository and whether its tree has uncommitted changes: to tracked files, or
 * untracked files that are not ignored (this code's repository ignores `results/runs/`), but for
 * untracked files under the top `results/` folder, where the tools write what they measure
 * (`results/perf/`, `results/tuning/`, a baseline being made) before it is committed: the first
 * report would otherwise mark every later one's commit modified, though no code changed.
 *
 * @param dir a folder of the repository to read (git finds the repository holding it, as from a
 *   parent folder); default this code's repository root
 * @returns `{sha: "unknown", dirty: false}` outside a repository, in a repository without a
 *   commit, for a folder that does not exist, or without git
 */
export function gitState(dir: string = repoPath()): { sha: string; dirty: boolean } {
  const sha = git(["rev-parse", "HEAD"], dir);
  if (sha === undefined) return { sha: "unknown", dirty: false };
  // Porcelain lines are "XY PATH" (not trimmed: X is a space for a change not staged), PATH
  // relative to the repository root, quoted when unusual.
  const changes = (commandOutput("git", ["status", "--porcelain"], dir) ?? "").split("\n")
    .filter((line) => line !== "" && !/^\?\? "?results\//.test(line));
  return { sha, dirty: changes.length > 0 };
}

/**
 * A reader of the repository state that reads once, at its first call, and returns that state
 * ever after.
 *
 * @param read the reader ({@link gitState})
 * @returns the memoised reader
 */
export function gitStateOnce(
  read: () => { sha: string; dirty: boolean },
): () => { sha: string; dirty: boolean } {
  let state: { sha: string; dirty: boolean } | undefined;
  return () => (state ??= read());
}

/**
 * The repository state of the code this process runs: {@link gitState} at the first call, the
 * same after. A process loads its modules once, so a commit or an edit while a grid runs does not
 * change the code that trains the later runs; read per run, their provenance named commits whose
 * code never ran (and a dirty flag that came and went with others' edits). `runOneWith` reads it
 * at the first run of a process (`deno task bench` starts it right after loading the runner's
 * code) and takes the same for every later run.
 */
export const codeGitState: () => { sha: string; dirty: boolean } = gitStateOnce(gitState);

/**
 * Pinned npm packages from `deno.json` "imports" (`npm:name@version` -> name: version).
 *
 * @returns package name -> version, sorted by name
 */
export function pinnedPackages(): Record<string, string> {
  const out: Record<string, string> = {};
  try {
    const json = JSON.parse(Deno.readTextFileSync(repoPath("deno.json"))) as {
      imports?: Record<string, string>;
    };
    for (const spec of Object.values(json.imports ?? {})) {
      const m = /^npm:(@?[^@]+)@([^/]+)/.exec(spec);
      if (m) out[m[1]!] = m[2]!;
    }
  } catch {
    // No deno.json beside the code (e.g. a published module): no package list.
  }
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/**
 * `/proc/cpuinfo`'s text, or "" where there is none (not Linux) or it cannot be read. Deno 2
 * refuses reads of `/proc` without `--allow-all` (`NotCapable`), which the `deno task`s do not
 * grant; `cat` reads it under `--allow-run`, which they do.
 *
 * @returns the file's text, or ""
 */
export function readCpuinfo(): string {
  return readProc("/proc/cpuinfo") ?? "";
}

function cpuModel(): string {
  const m = /^model name\s*:\s*(.+)$/m.exec(readCpuinfo());
  return m ? m[1]!.trim() : Deno.build.arch;
}

/**
 * A description of the device: the GPU adapter when the backend reports one, else the CPU model
 * and the number of logical cores.
 *
 * @param backend the backend record
 * @returns e.g. `"Intel(R) Xeon(R) ... x2 (wasm+blas, 2 threads)"`
 */
export function deviceDescription(backend: BackendRecord): string {
  if (backend.name === "webgpu" || backend.name === "tensorflow") {
    if (backend.adapter) return `${backend.adapter} (${backend.name})`;
  }
  const cores = navigator.hardwareConcurrency ?? 0;
  return `${cpuModel()} x${cores} (${backend.name}, ${backend.threads} threads)`;
}

/** What tfjs runs on now, when no `model/backend.ts` record is available. */
export function tfBackendRecord(): BackendRecord {
  const name = tf.getBackend() ?? "unknown";
  return { requested: name, name, tfBackend: name, threads: 1, notes: [] };
}

/**
 * Collect a run's provenance.
 *
 * @param startedAt when the run started
 * @param backend the backend used (`model/backend.ts` `currentBackendInfo()`); defaults to tfjs's
 * @param finishedAt when it finished (default now)
 * @param git the repository state when the run started ({@link gitState}); read now if omitted,
 *   which names the wrong commit when the tree changed while the run went on
 * @param extra the data the run read ({@link dataProvenance}), the checkpoint folder its
 *   backbone came from ({@link CheckpointProvenance}), the `tokenizer.json` of a `task-spm:` or
 *   `fixture:` tokenizer ({@link RunProvenance.tokenizerFile}) and the checkpoint it resumed from
 *   ({@link resumeRecord}), recorded when given
 * @returns the provenance record
 */
export function collectProvenance(
  startedAt: Date,
  backend: BackendRecord = tfBackendRecord(),
  finishedAt: Date = new Date(),
  git: { sha: string; dirty: boolean } = gitState(),
  extra: {
    data?: DataProvenance;
    checkpoint?: CheckpointProvenance;
    tokenizerFile?: CheckpointFileRecord;
    resumedFrom?: ResumeRecord;
  } = {},
): RunProvenance {
  const { sha, dirty } = git;
  return {
    gitSha: sha,
    gitDirty: dirty,
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    typescript: Deno.version.typescript,
    tfjs: tf.version.tfjs,
    packages: pinnedPackages(),
    backend: {
      requested: backend.requested,
      name: backend.name,
      tfBackend: backend.tfBackend,
      ...(backend.adapter === undefined ? {} : { adapter: backend.adapter }),
      threads: backend.threads,
      notes: [...backend.notes],
    },
    device: deviceDescription(backend),
    hostname: hostname(),
    os: Deno.build.target,
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    ...(extra.data === undefined ? {} : { data: extra.data }),
    ...(extra.checkpoint === undefined ? {} : { checkpoint: extra.checkpoint }),
    ...(extra.tokenizerFile === undefined ? {} : {
      tokenizerFile: { bytes: extra.tokenizerFile.bytes, sha256: extra.tokenizerFile.sha256 },
    }),
    ...(extra.resumedFrom === undefined ? {} : { resumedFrom: extra.resumedFrom }),
  };
}
