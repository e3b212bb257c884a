/**
 * Downloads GLUE / SuperGLUE into a cache in the OFFICIAL layout (`<cache>/glue/<Task>/<file>`,
 * `<cache>/super_glue/<Task>/<file>`), so the parsers read it like the offline mirror.
 *
 * - Primary source: the official hosts (zips, AX.tsv, MRPC built from the SentEval files and the
 *   GLUE dev ids exactly as GLUE's `download_glue_data.py` does). Fallback when it fails:
 *   Hugging Face parquet files converted to the official file format (see `hf_convert.ts`);
 *   not after a local file error (a full disk, a refused permission: `model/fs.ts`
 *   `isLocalFileError`), which fails the task naming the file: the fallback would write to the
 *   same folder. The tasks after it are not tried either (they would fail at once on the same
 *   disk): one line names them and the error.
 * - Verification: every written file's row count; full sha256 where known (official source);
 *   archives by their known sha256 prefix and size. Full digests go to `<cache>/manifest.json`.
 * - Resumable: verified files are skipped; partial downloads continue with HTTP Range from
 *   `<cache>/downloads/<name>.part`, only from the URL (and the version: `ETag`,
 *   `Last-Modified`) recorded in `<name>.part.json` (`model/http.ts` `recordSource`): a part
 *   started from another mirror (`--endpoint`, `HYPERPROMPT_DATA_ENDPOINTS` changed between
 *   runs), of another version, or with no record is restarted from byte 0, saying so. Writes
 *   are atomic (temp file + rename); a task's files are all verified before any is renamed into
 *   place; a failed check deletes the temp files.
 * - Concurrent runs sharing a cache: each task is checked, fetched and written under its lock
 *   (`<cache>/locks/<benchmark>-<config>.lock`), so it is fetched once and no `.part` is shared;
 *   the manifest is re-read and merged under `<cache>/locks/manifest.lock` before each save.
 * - Timeouts: a request whose response has not started, or whose body has sent nothing, for 30 s
 *   ({@link IDLE_TIMEOUT_MS}) is aborted and retried (resuming).
 *
 * CLI: `deno task download --tasks cola,rte,super_glue/rte [--cache-dir DIR] [--source auto|official|parquet]
 * [--endpoint KEY=URL] [--verify] [--keep-downloads] [--retries N] [--quiet]` (`--tasks all`, `--tasks glue`,
 * `--tasks super_glue`). Mirrors of the sources: `--endpoint`, else `HYPERPROMPT_DATA_ENDPOINTS`, else
 * (the parquet fallback's host) `HF_ENDPOINT` ({@link resolveEndpoints}), for `deno task bench`'s
 * download too.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import { unzipSync } from "fflate";
import { parquetReadObjects } from "hyparquet";
import { compressors } from "hyparquet-compressors";
import {
  availableTasks,
  countRowsBytes,
  defaultCacheDir,
  defaultDataRoots,
  noMirrorNote,
} from "./data.ts";
import { pyStrip } from "./parse.ts";
import { convertRows, type Row } from "./hf_convert.ts";
import { createProgress } from "./progress.ts";
import {
  checkEndpointUrl,
  DEFAULT_ENDPOINTS,
  ENDPOINT_KEYS,
  type Endpoints,
  ENDPOINTS_ENV,
  expandUrl,
  findTaskSource,
  HF_REPOS,
  MissingSplitError,
  parquetShards,
  parquetTreeUrl,
  parquetUrl,
  parseEndpoints,
  type RawFile,
  TASK_SOURCES,
  type TaskSource,
} from "./sources.ts";
import {
  checkOutputFolder,
  fsError,
  isFileSync,
  isLocalFileError,
  syncDir,
  withFileLock,
  writeFileAtomic,
  writeFilesAtomic,
} from "../model/fs.ts";
import {
  ConnectionError,
  fetchResumable,
  getWithin as getWithinIdle,
  HttpStatusError,
  IDLE_TIMEOUT_MS,
  isConnectFailure,
  plainGet,
  within,
} from "../model/http.ts";
import { commaList, decimalNumber, parseFlags, runCli, UsageError } from "../model/usage.ts";
import { parseJsonFile } from "../model/json.ts";
import { ignoreFileSizeSignal } from "../model/file_size_signal.ts";
import { readEnv } from "../model/env.ts";
import { sha256File } from "../model/hash.ts";
import { writeStderr } from "../model/stderr.ts";

// The transport (timeouts, retries, Range resume) lives in model/http.ts, shared with the hub
// download; these names are still exported from here.
export {
  HttpStatusError,
  IDLE_TIMEOUT_MS,
  MAX_RETRY_AFTER_MS,
  retryDelayMs,
} from "../model/http.ts";

/** Which source to use. */
export type SourceChoice = "auto" | "official" | "parquet";

/** Options of {@link download}. */
export interface DownloadOptions {
  /** Task names or ids (see `findTaskSource`); `all`, `glue`, `super_glue` expand. */
  tasks: readonly string[];
  /**
   * The offline mirror that `deno task bench` and `pretrain` read without a download (default
   * `tasks/data.ts` `defaultDataRoots().mirror`): when no host could be reached, the error names
   * the failed tasks it holds ({@link DownloadError}).
   */
  mirrorDir?: string;
  /** Cache / data root (default {@link defaultCacheDir}). */
  cacheDir?: string;
  /** `auto` (official, then parquet on failure; default), `official` or `parquet` only. */
  source?: SourceChoice;
  /**
   * Base URLs of the sources (a mirror; tests use a local server). Each one given here wins over
   * {@link ENDPOINTS_ENV}'s, which wins over `HF_ENDPOINT` (for `hf`) and the official hosts
   * ({@link resolveEndpoints}).
   */
  endpoints?: Partial<Endpoints>;
  /** What gave `endpoints`, for the log line naming the endpoints used; default `options`. */
  endpointsFrom?: string;
  /** Re-hash files already in the manifest instead of trusting their size. */
  verify?: boolean;
  /** Keep the raw downloads (zips, parquet) after their files are written. */
  keepDownloads?: boolean;
  /**
   * Extra attempts (with Range resume) when a transfer breaks or the server answers 408, 429 or
   * 5xx; default 3. The waits between attempts are {@link retryDelayMs}.
   */
  retries?: number;
  /** Waits between attempts (default a timer; tests record the waits instead). */
  sleep?: (ms: number) => Promise<void>;
  /**
   * A request is given up (and retried, resuming) when its response has not started, or its body
   * has sent nothing, for this long; default {@link IDLE_TIMEOUT_MS}.
   */
  idleTimeoutMs?: number;
  /** Silence progress and log lines. */
  quiet?: boolean;
  /** Log sink (default stderr). */
  log?: (line: string) => void;
  /** Task table (default {@link TASK_SOURCES}); tests pass small tasks. */
  taskSources?: readonly TaskSource[];
  /** fetch implementation (default global fetch). */
  fetch?: typeof fetch;
  /** Row counter of produced files (default `countRowsBytes` of `data.ts`; tests count calls). */
  countRows?: typeof countRowsBytes;
  /**
   * Writes the manifest's text to its path (default an atomic write, `model/fs.ts`); tests make
   * it fail as a full disk does.
   */
  writeManifest?: (path: string, text: string) => Promise<void>;
}

/** One file recorded in the manifest. */
export interface ManifestFile {
  /** Id of the task the file belongs to, e.g. `glue/cola`. */
  task: string;
  /** Full sha256 (hex) of the file as written. */
  sha256: string;
  /** Size in bytes of the file as written (a cached file of another size is fetched again). */
  bytes: number;
  /** Rows counted in the file, in the unit of its `FileSpec.count` (equal to `FileSpec.rows`). */
  rows: number;
  /** `official` or `parquet`. */
  source: "official" | "parquet";
  /** What was checked: `sha256` (full official digest) or `rows` (row count only). */
  verified: "sha256" | "rows";
  /** URLs the file came from. */
  from: string[];
  /** When the file was written, as an ISO 8601 UTC timestamp. */
  writtenAt: string;
}

/** `<cache>/manifest.json`. */
export interface Manifest {
  /** Manifest format version; only 1 is read. */
  version: 1;
  /** The files written, by path relative to the cache folder (e.g. `glue/CoLA/train.tsv`). */
  files: Record<string, ManifestFile>;
  /** Raw downloads by URL: full sha256 and size computed on download. */
  archives: Record<string, { sha256: string; bytes: number }>;
}

/** What {@link download} did per task. */
export interface TaskResult {
  /** The task id, e.g. `glue/mnli`. */
  task: string;
  /**
   * `cached`: its files were already in the manifest with their recorded size (and sha256 with
   * `verify`), nothing written; `official` or `parquet`: the source its files were written from.
   */
  status: "cached" | "official" | "parquet";
  /** The task's file paths, relative to the cache folder. */
  files: string[];
  /** Why the official source was not used, when the fallback ran. */
  fallbackReason?: string;
}

/** A task {@link download} could not fetch, and why. */
export interface TaskFailure {
  /** The task id, e.g. `glue/mnli`. */
  readonly task: string;
  /**
   * Why: the official source's error (`--source official`), the parquet fallback's
   * (`--source parquet`), or both (`official: …; parquet: …`); for a task not tried,
   * `not tried: the previous write failed on the local disk: <path>: <error>`.
   */
  readonly reason: string;
  /**
   * True when the task was not tried at all: an earlier task failed on a local file (a full
   * disk, a refused permission, a read-only folder: `model/fs.ts` `isLocalFileError`), which
   * every later task would hit at once. Absent for a task that was tried.
   */
  readonly notTried?: true;
  /**
   * True when the task itself failed on a local file (`model/fs.ts` `isLocalFileError`: a full
   * disk, a refused permission, a read-only folder), not on the network: the message then says
   * to free space rather than how to fetch offline.
   */
  readonly local?: true;
  /**
   * The first error, when every source tried for the task failed to connect (DNS, a refused or
   * unreachable connection: `model/http.ts` `isConnectFailure`): offline, or no host reachable.
   */
  readonly unreachable?: string;
}

/**
 * The failed tasks a mirror holds, for {@link DownloadError} when no host could be reached: the
 * mirror folder and the ids of those tasks (none when it does not exist).
 */
export interface MirrorTasks {
  /** The mirror folder, resolved. */
  readonly dir: string;
  /** Whether the folder exists. */
  readonly exists: boolean;
  /** The ids of the failed tasks whose files it holds (`tasks/data.ts` `availableTasks`). */
  readonly tasks: readonly string[];
  /** The other failed tasks it holds some files of: `<id> (<split>, …)`, e.g. only validation. */
  readonly partial?: readonly string[];
}

/**
 * Thrown by {@link download} when some tasks failed, once every task was tried or, after a local
 * file error, skipped: `failures` names each failed or skipped task and why, `results` holds what
 * the tasks that did not fail gave (written or already cached), as {@link download} returns them.
 * The message lists the failures, one a line, the tasks not tried in one line (with the tasks
 * that finished before them and what to do), then where interrupted transfers are kept and how
 * to go on offline.
 */
export class DownloadError extends Error {
  /** The error class's name, `"DownloadError"`. */
  override name = "DownloadError";
  /** The tasks that failed, in the order they were tried. */
  readonly failures: readonly TaskFailure[];
  /** The tasks that did not fail, in the order they were tried. */
  readonly results: readonly TaskResult[];
  /**
   * Why the cache's manifest could not be saved at the end (naming its path), when it could not:
   * said after the failures, never in their place.
   */
  readonly manifestError: string | undefined;
  /**
   * The message's first line without its colon: `download failed for N task(s)`, then
   * `, M not tried` when a local file error left tasks untried.
   */
  readonly headline: string;

  /**
   * Builds the error and its message from the failures.
   *
   * @param failures the tasks that failed (at least one)
   * @param results what the other tasks gave
   * @param manifestError why the manifest could not be saved, if it could not
   * @param mirror the offline mirror and the failed tasks it holds: named when no host could be
   *   reached for any task
   */
  constructor(
    failures: readonly TaskFailure[],
    results: readonly TaskResult[],
    manifestError?: string,
    mirror?: MirrorTasks,
  ) {
    const tried = failures.filter((f) => !f.notTried);
    const skipped = failures.filter((f) => f.notTried);
    // The tasks not tried share their reason (the local file error that stopped the download).
    const notTried = skipped.length === 0
      ? ""
      : `  ${skipped.map((f) => f.task).join(", ")}: ${skipped[0]!.reason}\n` +
        (results.length === 0
          ? ""
          : `Finished before it (kept, listed in the manifest): ${
            results.map((r) => `${r.task}=${r.status}`).join(" ")
          }\n`);
    const headline = `download failed for ${tried.length} task(s)${
      skipped.length === 0 ? "" : `, ${skipped.length} not tried`
    }`;
    // Offline (every source of every task failed to connect): one line, not one per task.
    const offline = skipped.length === 0 && tried.every((f) => f.unreachable !== undefined);
    if (offline) {
      super(
        `${headline}: no host could be reached (first error: ${tried[0]!.unreachable}): ` +
          `offline?\n  not fetched: ${tried.map((f) => f.task).join(", ")}\n` +
          (manifestError === undefined ? "" : `Also, ${manifestError}\n`) +
          offlineAdvice(tried.map((f) => f.task), mirror),
      );
      this.failures = failures;
      this.results = results;
      this.manifestError = manifestError;
      this.headline = headline;
      return;
    }
    // A local disk error: the network advice below would not help.
    const local = skipped.length > 0 || tried.some((f) => f.local === true)
      ? "Free space on that disk or make the folder writable, then run again.\n"
      : "";
    super(
      `${headline}:\n${tried.map((f) => `  ${f.task}: ${f.reason}\n`).join("")}${notTried}` +
        local +
        (manifestError === undefined ? "" : `Also, ${manifestError}\n`) +
        "Interrupted transfers stay in downloads/*.part under the cache and resume on the next run " +
        "(restarted when the server refuses the resume, or when they came from another URL or " +
        "version of the file); raw files that fail their own check " +
        "(size, sha256, unreadable zip or parquet) are deleted. Without network access, copy an " +
        "offline mirror in the official layout (glue/<Task>/…, super_glue/<Task>/…) and give " +
        "it to deno task bench or pretrain as --data-dir (or HYPERPROMPT_DATA); to fetch from " +
        `a mirror of the official hosts, set ${ENDPOINTS_ENV} (deno task download --help).`,
    );
    this.failures = failures;
    this.results = results;
    this.manifestError = manifestError;
    this.headline = headline;
  }
}

/**
 * What to do when no host could be reached: which of the failed tasks the offline mirror already
 * holds (read by bench and pretrain without a download), or that there is no mirror; then how to
 * get the others.
 */
function offlineAdvice(failed: readonly string[], mirror: MirrorTasks | undefined): string {
  const held = new Set(mirror?.tasks ?? []);
  const others = failed.filter((t) => !held.has(t));
  const lines: string[] = [];
  if (mirror !== undefined && !mirror.exists) lines.push(`(${noMirrorNote(mirror.dir)})`);
  if (mirror !== undefined && held.size > 0) {
    lines.push(
      `Already in the offline mirror ${mirror.dir}, which deno task bench and pretrain read ` +
        `without a download: ${[...held].join(", ")}`,
    );
  }
  if (mirror !== undefined && (mirror.partial ?? []).length > 0) {
    lines.push(`Partly there (only these splits): ${mirror.partial!.join(", ")}`);
  }
  if (others.length > 0) {
    lines.push(
      `${held.size > 0 ? `For ${others.join(", ")}: run` : "Run"} this again with network ` +
        "access; or give deno task bench or pretrain an offline mirror in the official layout " +
        "(glue/<Task>/…, super_glue/<Task>/…) as --data-dir (or HYPERPROMPT_DATA); or, to fetch " +
        `from a mirror of the official hosts, set ${ENDPOINTS_ENV} (deno task download --help).`,
    );
  }
  return lines.join("\n");
}

const MANIFEST = "manifest.json";
/**
 * Folder of the lock files under the cache: `manifest.lock` (held while the manifest is re-read,
 * merged and saved) and `<benchmark>-<config>.lock` (held while a task is checked, fetched and
 * written, so that concurrent runs fetch a task once and never share a `.part`).
 */
const LOCKS = "locks";

/** Reads `<cacheDir>/manifest.json` (an empty one when absent). */
export async function readManifest(cacheDir: string): Promise<Manifest> {
  const path = join(cacheDir, MANIFEST);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { version: 1, files: {}, archives: {} };
    throw e;
  }
  try {
    const m = JSON.parse(text) as Manifest;
    if (m.version !== 1 || typeof m.files !== "object") throw new Error("bad version or files");
    m.archives ??= {};
    return m;
  } catch (e) {
    throw new Error(
      `${path}: not a valid manifest (${(e as Error).message}); delete it to rebuild`,
    );
  }
}

/** Writes `data` to `path` atomically (see `model/fs.ts`). */
export const writeAtomic: typeof writeFileAtomic = writeFileAtomic;

/** Hex sha256 of bytes. */
export function sha256Hex(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/**
 * `GET url` with `headers`, given up (through `ctrl`) when no response has started within the
 * idle timeout; any failure is an error starting `GET <url>: `. The status is not checked.
 */
function getWithin(
  ctx: Ctx,
  url: string,
  headers: Record<string, string>,
  ctrl: AbortController,
): Promise<Response> {
  return getWithinIdle(plainGet(reachingFetch(ctx)), url, headers, ctrl, ctx.idleTimeoutMs);
}

/** Context shared by one {@link download} call. */
interface Ctx {
  cacheDir: string;
  endpoints: Endpoints;
  manifest: Manifest;
  retries: number;
  sleep: (ms: number) => Promise<void>;
  idleTimeoutMs: number;
  quiet: boolean;
  log: (line: string) => void;
  fetch: typeof fetch;
  countRows: typeof countRowsBytes;
  writeManifest: (path: string, text: string) => Promise<void>;
  /**
   * Why the last save of the manifest failed (naming its path), while its changes are unsaved;
   * cleared by a save that succeeds (the pending changes are kept and saved then).
   */
  unsaved: string | undefined;
  /** Raw downloads made for the current task (deleted after unless kept). */
  raws: string[];
  /** This call's changes to the manifest not yet saved ({@link saveManifest} merges them). */
  pending: PendingChanges;
  /**
   * The origins (scheme, host, port) that have answered during this call: a connection error
   * (DNS, refused) from an origin not among them is given up at once (offline, or the host is
   * down: the retries' waits would only delay the next source), one from an origin that has
   * answered is retried.
   */
  reached: Set<string>;
}

/** Manifest entries set (or, for an undefined archive, deleted) by this call since its last save. */
interface PendingChanges {
  files: Map<string, ManifestFile>;
  archives: Map<string, Manifest["archives"][string] | undefined>;
}

/** Sets (or deletes) the manifest's record of a raw download, to be saved. */
function setArchive(ctx: Ctx, url: string, entry: Manifest["archives"][string] | undefined): void {
  if (entry) ctx.manifest.archives[url] = entry;
  else delete ctx.manifest.archives[url];
  ctx.pending.archives.set(url, entry);
}

/**
 * Fetches `url` into `<cache>/downloads/<name>`, resuming `<name>.part` with an HTTP Range
 * request, retrying broken transfers; checks size and sha256 prefix where known. A part is
 * resumed only from the URL and version its record `<name>.part.json` names (`recordSource`),
 * else restarted from byte 0 with a log line: `<name>` does not name the host, so a part begun
 * from one mirror is never finished with another's bytes. Returns the path of the complete,
 * verified file. A failed check deletes the file and throws naming it.
 * A 416 answer to the resume accepts the part when its size equals the expected size, or else
 * the total of the answer's `Content-Range: bytes *\/TOTAL`; otherwise the part is deleted and
 * the transfer restarts from byte 0 at once.
 */
async function fetchRaw(
  ctx: Ctx,
  url: string,
  name: string,
  want: Omit<RawFile, "url">,
): Promise<string> {
  const dir = join(ctx.cacheDir, "downloads");
  await Deno.mkdir(dir, { recursive: true }).catch((e) => {
    throw fsError(e, dir, "creating the folder");
  });
  const dest = join(dir, name);
  const part = `${dest}.part`;
  ctx.raws.push(dest, part);
  const known = ctx.manifest.archives[url];
  try {
    const st = await Deno.stat(dest);
    if (known && st.size === known.bytes) return dest;
  } catch { /* not there */ }
  let digest = "";
  const { bytes: size } = await fetchResumable(url, part, {
    name,
    bytes: want.bytes,
    recordSource: true,
    retries: ctx.retries,
    idleMs: ctx.idleTimeoutMs,
    sleep: ctx.sleep,
    log: ctx.log,
    fetch: reachingFetch(ctx),
    noRetry: (e) => e instanceof ConnectionError && !ctx.reached.has(new URL(url).origin),
    progress: (total) => createProgress(name, total, { quiet: ctx.quiet }),
    verify: async (path) => {
      digest = await sha256File(path);
      if (want.sha256Prefix && !digest.startsWith(want.sha256Prefix.toLowerCase())) {
        throw new VerifyError(
          `${name} from ${url}: sha256 ${digest} does not start with the expected ${want.sha256Prefix} (deleted)`,
        );
      }
    },
  });
  await Deno.rename(part, dest).catch((e) => {
    throw fsError(e, dest, `renaming ${part} to it`);
  });
  await syncDir(dir); // the new name survives a power cut
  setArchive(ctx, url, { sha256: digest, bytes: size });
  return dest;
}

/**
 * `ctx.fetch`, recording in `ctx.reached` the origin of each request that got a response (and of
 * the URL it was redirected to). A redirect whose target cannot be connected to rejects the whole
 * fetch, so its first host, which answered, is not recorded: such a URL is given up at once.
 */
function reachingFetch(ctx: Ctx): typeof fetch {
  return async (input, init) => {
    const res = await ctx.fetch(input, init);
    const url = input instanceof Request ? input.url : String(input);
    ctx.reached.add(new URL(url).origin);
    if (res.url !== "") ctx.reached.add(new URL(res.url).origin);
    return res;
  };
}

/** A content check failed (not worth retrying the transfer). */
export class VerifyError extends Error {
  /** The error class's name, `"VerifyError"`. */
  override name = "VerifyError";
}

function zipEntry(
  files: Record<string, Uint8Array>,
  innerDir: string,
  base: string,
): Uint8Array | undefined {
  const suffix = `${innerDir}/${base}`;
  const key = Object.keys(files).find((k) =>
    !k.includes("__MACOSX") && (k === suffix || k.endsWith(`/${suffix}`))
  );
  return key === undefined ? undefined : files[key];
}

function baseName(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

/**
 * The name under `downloads/` of an official raw file: `<benchmark>-<file name>`, since both
 * benchmarks have an `RTE.zip` (a part of GLUE's must never be resumed with SuperGLUE's bytes).
 */
function rawName(task: TaskSource, url: string): string {
  return `${task.benchmark}-${baseName(url)}`;
}

/** Splits text into lines like Python's universal newlines (`\r\n`, `\r`, `\n`), keeping no ends. */
function pyLines(text: string): string[] {
  const lines = text.split(/\r\n|\r|\n/);
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  return lines;
}

/**
 * Builds MRPC `train.tsv`, `dev.tsv`, `test.tsv` from `msr_paraphrase_train.txt`,
 * `msr_paraphrase_test.txt` and `mrpc_dev_ids.tsv` exactly as GLUE's `download_glue_data.py`
 * (`format_mrpc`): the train header line is copied (BOM kept) to train and dev; rows whose
 * `[id1, id2]` is in the dev ids go to dev; test gets an `index` column. Output is LF-terminated.
 */
export function buildMrpc(
  trainTxt: Uint8Array,
  testTxt: Uint8Array,
  devIdsTsv: Uint8Array,
): { train: string; dev: string; test: string } {
  const dec = new TextDecoder("utf-8", { ignoreBOM: true, fatal: true });
  const devIds = new Set(
    pyLines(dec.decode(devIdsTsv)).map((r) => pyStrip(r).split("\t").join("\t")),
  );
  const trainLines = pyLines(dec.decode(trainTxt));
  const header = (trainLines[0] ?? "") + "\n";
  let train = header;
  let dev = header;
  const split5 = (row: string, file: string, i: number) => {
    const f = pyStrip(row).split("\t");
    if (f.length !== 5) {
      throw new Error(`${file}:${i + 1}: expected 5 tab-separated fields, got ${f.length}`);
    }
    return f as [string, string, string, string, string];
  };
  for (let i = 1; i < trainLines.length; i++) {
    const [label, id1, id2, s1, s2] = split5(trainLines[i]!, "msr_paraphrase_train.txt", i);
    const line = `${label}\t${id1}\t${id2}\t${s1}\t${s2}\n`;
    if (devIds.has(`${id1}\t${id2}`)) dev += line;
    else train += line;
  }
  const testLines = pyLines(dec.decode(testTxt));
  let test = "index\t#1 ID\t#2 ID\t#1 String\t#2 String\n";
  for (let i = 1; i < testLines.length; i++) {
    const [, id1, id2, s1, s2] = split5(testLines[i]!, "msr_paraphrase_test.txt", i);
    test += `${i - 1}\t${id1}\t${id2}\t${s1}\t${s2}\n`;
  }
  return { train, dev, test };
}

/**
 * Deletes a raw download that passed its transfer checks but cannot be used (not a readable zip or
 * parquet, an entry or rows missing), with its `archives` entry, so that no later run reuses it,
 * then throws a {@link VerifyError}: `<what> (<cause>) (deleted)`.
 */
async function discardRaw(
  ctx: Ctx,
  path: string,
  url: string,
  what: string,
  cause: unknown,
): Promise<never> {
  await Deno.remove(path).catch(() => {});
  setArchive(ctx, url, undefined);
  await saveManifest(ctx);
  throw new VerifyError(`${what} (${(cause as Error).message}) (deleted)`);
}

/** The most an official zip entry may unpack to per byte of the archive (text: 3 to 10). */
const ZIP_MAX_RATIO = 100;
/** The most one zip entry may unpack to (the largest official file, MNLI's train, is ~300 MB). */
const ZIP_MAX_ENTRY = 2 ** 30;

/**
 * The most bytes one entry of a zip of `zipBytes` bytes may declare: {@link ZIP_MAX_RATIO} times
 * the archive, at most {@link ZIP_MAX_ENTRY}.
 *
 * @param zipBytes the archive's size
 * @returns the bound
 */
export function zipEntryLimit(zipBytes: number): number {
  return Math.min(ZIP_MAX_ENTRY, ZIP_MAX_RATIO * zipBytes);
}

/**
 * Produces the task's files from the official hosts, with the rows already counted of any file
 * (for {@link verifyFiles}, which then does not count it again): a single raw file with neither
 * digest nor size (DPR) is counted here, to delete one that is not the expected file.
 */
async function fromOfficial(
  ctx: Ctx,
  task: TaskSource,
): Promise<{ files: Map<string, Uint8Array>; from: string[]; rows?: Map<string, number> }> {
  const src = task.official;
  const out = new Map<string, Uint8Array>();
  const enc = new TextEncoder();
  if (src.kind === "zip") {
    const url = expandUrl(src.url, ctx.endpoints);
    const zipPath = await fetchRaw(ctx, url, rawName(task, url), src);
    const wanted = new Set(task.files.map((f) => `${src.innerDir}/${baseName(f.path)}`));
    let entries: Record<string, Uint8Array> = {};
    const zipBytes = await Deno.readFile(zipPath);
    // fflate allocates each entry at the size the archive declares, before any check: a 2 MB zip
    // declaring a 2 GiB entry took 2 GiB (h382). An entry over the bound is refused unread.
    const limit = zipEntryLimit(zipBytes.length);
    let oversized: string | undefined;
    try {
      entries = unzipSync(zipBytes, {
        filter: (e) => {
          const want = !e.name.includes("__MACOSX") &&
            [...wanted].some((w) => e.name === w || e.name.endsWith(`/${w}`));
          if (want && e.originalSize > limit) {
            oversized ??= `entry ${e.name} declares ${e.originalSize} bytes, more than ${limit} ` +
              `(${ZIP_MAX_RATIO}× the archive's ${zipBytes.length}, at most ${ZIP_MAX_ENTRY}): a ` +
              "damaged or hostile archive";
            return false;
          }
          return want;
        },
      });
    } catch (e) {
      await discardRaw(ctx, zipPath, url, `${zipPath} from ${url}: not a readable zip`, e);
    }
    if (oversized !== undefined) {
      await discardRaw(
        ctx,
        zipPath,
        url,
        `${zipPath} from ${url}: not a readable zip`,
        new Error(oversized),
      );
    }
    for (const f of task.files) {
      const data = zipEntry(entries, src.innerDir, baseName(f.path));
      if (!data) {
        await discardRaw(
          ctx,
          zipPath,
          url,
          `${zipPath} from ${url}: no entry ${src.innerDir}/${baseName(f.path)}`,
          new Error(`entries: ${Object.keys(entries).join(", ") || "none wanted"}`),
        );
      }
      out.set(f.path, data!);
    }
    return { files: out, from: [url] };
  }
  if (src.kind === "file") {
    const url = expandUrl(src.url, ctx.endpoints);
    const p = await fetchRaw(ctx, url, rawName(task, url), src);
    const only = task.files[0];
    if (!only || task.files.length !== 1) {
      throw new Error(`${task.id}: a single-file source needs one file`);
    }
    const data = await Deno.readFile(p);
    out.set(only.path, data);
    if (src.sha256Prefix === undefined && src.bytes === undefined) {
      // Nothing else checks this raw file (DPR): one that is not the expected file (an HTML
      // page served with status 200, a truncated transfer) is deleted now, not reused later.
      // The produced file is these bytes: its count is passed on, not made twice.
      let n = 0;
      try {
        n = ctx.countRows(data, only, only.path);
        if (n !== only.rows) throw new Error(`${n} ${only.count ?? "rows"}, expected ${only.rows}`);
      } catch (e) {
        await discardRaw(ctx, p, url, `${p} from ${url}: not the expected file`, e);
      }
      return { files: out, from: [url], rows: new Map([[only.path, n]]) };
    }
    return { files: out, from: [url] };
  }
  const urls = {
    train: expandUrl(src.parts.train.url, ctx.endpoints),
    test: expandUrl(src.parts.test.url, ctx.endpoints),
    devIds: expandUrl(src.parts.devIds.url, ctx.endpoints),
  };
  const [tr, te, ids] = [
    await fetchRaw(ctx, urls.train, rawName(task, urls.train), src.parts.train),
    await fetchRaw(ctx, urls.test, rawName(task, urls.test), src.parts.test),
    await fetchRaw(ctx, urls.devIds, rawName(task, urls.devIds), src.parts.devIds),
  ];
  const built = buildMrpc(
    await Deno.readFile(tr),
    await Deno.readFile(te),
    await Deno.readFile(ids),
  );
  for (const f of task.files) {
    const b = baseName(f.path);
    const text = b === "train.tsv" ? built.train : b === "dev.tsv" ? built.dev : built.test;
    out.set(f.path, enc.encode(text));
  }
  return { files: out, from: [urls.train, urls.test, urls.devIds] };
}

/**
 * The name a parquet file of `task` is saved under in `downloads/`: benchmark, config and file
 * name, a split's only shard as `<split>.parquet` (`super_glue-axg-test.parquet`), the shards of a
 * sharded one in full (`super_glue-record-train-00000-of-00002.parquet`).
 */
function parquetRawName(task: TaskSource, url: string): string {
  const file = url.slice(url.lastIndexOf("/") + 1).replace(/-00000-of-00001\.parquet$/, ".parquet");
  return `${task.benchmark}-${task.hfConfig}-${file}`;
}

/**
 * The shard names of a split stored as several parquet files, from the hub's folder listing
 * ({@link parquetTreeUrl}); errors name the listing's URL.
 */
async function listParquetShards(ctx: Ctx, task: TaskSource, hfSplit: string): Promise<string[]> {
  const url = parquetTreeUrl(task, ctx.endpoints);
  const ctrl = new AbortController();
  const idle = ctx.idleTimeoutMs;
  const res = await getWithin(ctx, url, {}, ctrl);
  if (!res.ok) {
    await res.body?.cancel();
    throw new HttpStatusError(url, res.status, res.headers.get("retry-after"));
  }
  const text = await within(
    res.text(),
    idle,
    () => ctrl.abort(),
    () => `GET ${url}: no data for ${idle / 1000} s`,
  );
  // A syntax error as `<url>:<line>:<column>: invalid JSON: <what>`, one line (a proxy's page).
  return parquetShards(parseJsonFile(text, url), hfSplit, url);
}

/**
 * Produces the task's files from Hugging Face parquet files, with each file's row count (`rows`,
 * for {@link verifyFiles}). These have no known size or digest, so a file that cannot be read or
 * converted, or whose converted rows are not the expected count (an HTML page served with status
 * 200, a truncated or foreign file, another revision) is deleted with its `archives` entry before
 * the error is thrown: it is never reused by a later run.
 */
async function fromParquet(
  ctx: Ctx,
  task: TaskSource,
): Promise<{ files: Map<string, Uint8Array>; from: string[]; rows: Map<string, number> }> {
  const out = new Map<string, Uint8Array>();
  const counted = new Map<string, number>();
  const from: string[] = [];
  const enc = new TextEncoder();
  for (const f of task.files) {
    const fetchOne = (u: string) => fetchRaw(ctx, u, parquetRawName(task, u), {});
    let urls = [parquetUrl(task, f.hfSplit, ctx.endpoints)];
    const paths: string[] = [];
    try {
      paths.push(await fetchOne(urls[0]!));
    } catch (e) {
      // Not stored as one file: the split is sharded (large configs); list and fetch its shards.
      if (!(e instanceof HttpStatusError) || e.status !== 404) throw e;
      let names: string[];
      try {
        names = await listParquetShards(ctx, task, f.hfSplit);
      } catch (listed) {
        // Neither one file nor shards: the split is what is missing, so the error starts with
        // its file, then says how shards were looked for (another error, e.g. 503: as it is).
        const missing = listed instanceof MissingSplitError ||
          (listed instanceof HttpStatusError && listed.status === 404);
        if (!missing) throw listed;
        throw new Error(
          `${e.message}, and no shards of it either (${(listed as Error).message}): the ` +
            `parquet export of ${HF_REPOS[task.benchmark]} has no "${f.hfSplit}" split of ` +
            `"${task.hfConfig}" there (--endpoint hf=… another mirror, or --source official)`,
          { cause: listed },
        );
      }
      urls = names.map((n) => parquetUrl(task, f.hfSplit, ctx.endpoints, n));
      for (const u of urls) paths.push(await fetchOne(u));
    }
    let rows: Row[] = [];
    for (const [i, p] of paths.entries()) {
      const buf = await Deno.readFile(p);
      try {
        const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer;
        rows = rows.concat(await parquetReadObjects({ file: ab, compressors }) as Row[]);
      } catch (e) {
        await discardRaw(ctx, p, urls[i]!, `${urls[i]}: cannot read parquet`, e);
      }
    }
    from.push(...urls);
    // A bad conversion or row count discards every shard of the split.
    const discard = async (what: string, e: unknown): Promise<never> => {
      for (const [i, u] of urls.entries()) {
        if (i === 0) continue;
        await Deno.remove(paths[i]!).catch(() => {});
        setArchive(ctx, u, undefined);
      }
      return discardRaw(ctx, paths[0]!, urls[0]!, `${urls.join(", ")}: ${what}`, e);
    };
    let text = "";
    try {
      text = convertRows(task, f, rows);
    } catch (e) {
      await discard("cannot convert its rows", e);
    }
    const bytes = enc.encode(text);
    // A parquet of the wrong size (another revision, a truncated upload) is not kept for reuse.
    const n = ctx.countRows(bytes, f, f.path);
    if (n !== f.rows) {
      await discard("wrong size", new Error(`${n} ${f.count ?? "rows"}, expected ${f.rows}`));
    }
    out.set(f.path, bytes);
    counted.set(f.path, n);
  }
  return { files: out, from, rows: counted };
}

/**
 * Checks produced files: row counts always, full sha256 where known and `checkSha`. A file's rows
 * are counted here unless `counted` has its count, made of the same bytes (a converted parquet
 * file is counted once, as it is converted; DPR's raw file once, as it is checked); either count
 * must equal the expected one.
 */
function verifyFiles(
  ctx: Ctx,
  task: TaskSource,
  files: Map<string, Uint8Array>,
  checkSha: boolean,
  label: string,
  counted: ReadonlyMap<string, number> = new Map(),
): Map<string, { sha256: string; rows: number; verified: "sha256" | "rows" }> {
  const res = new Map<string, { sha256: string; rows: number; verified: "sha256" | "rows" }>();
  for (const f of task.files) {
    const data = files.get(f.path);
    if (!data) throw new VerifyError(`${f.path} (${label}): not produced`);
    const digest = sha256Hex(data);
    if (checkSha && f.sha256 && digest !== f.sha256) {
      throw new VerifyError(`${f.path} (${label}): sha256 ${digest}, expected ${f.sha256}`);
    }
    const rows = counted.get(f.path) ?? ctx.countRows(data, f, f.path);
    if (rows !== f.rows) {
      throw new VerifyError(
        `${f.path} (${label}): ${rows} ${f.count ?? "rows"}, expected ${f.rows}`,
      );
    }
    // A converted parquet file that happens to equal the official bytes counts as sha-verified.
    res.set(f.path, {
      sha256: digest,
      rows,
      verified: f.sha256 && digest === f.sha256 ? "sha256" : "rows",
    });
  }
  return res;
}

/**
 * Whether every file of `task` is in the cache as its manifest lists it. A listed file that is
 * gone, of another size or (with `verify`) of another sha256 is said in one line, as the task is
 * then fetched again.
 */
async function isCached(ctx: Ctx, task: TaskSource, verify: boolean): Promise<boolean> {
  for (const f of task.files) {
    const m = ctx.manifest.files[f.path];
    if (!m) return false;
    const path = join(ctx.cacheDir, f.path);
    let why: string | undefined;
    try {
      const st = await Deno.stat(path);
      if (st.size !== m.bytes) why = `is ${st.size} B, the manifest lists ${m.bytes} B`;
      else if (verify && (await sha256File(path)) !== m.sha256) {
        why = "has another sha256 than the manifest lists (changed since it was downloaded)";
      }
    } catch (e) {
      why = e instanceof Deno.errors.NotFound
        ? "is gone"
        : `cannot be read (${(e as Error).message})`;
    }
    if (why !== undefined) {
      ctx.log(`${task.id}: ${path} ${why}: fetching the task again`);
      return false;
    }
  }
  return true;
}

/**
 * Writes all files to temp names first, then renames them into place (`writeFilesAtomic`), then
 * the manifest: a failure while writing leaves every file of the task as it was.
 */
async function commitFiles(
  ctx: Ctx,
  task: TaskSource,
  files: Map<string, Uint8Array>,
  checks: Map<string, { sha256: string; rows: number; verified: "sha256" | "rows" }>,
  source: "official" | "parquet",
  from: string[],
): Promise<void> {
  await writeFilesAtomic([...files].map(([path, data]) => [join(ctx.cacheDir, path), data]));
  const now = new Date().toISOString();
  for (const [path, data] of files) {
    const c = checks.get(path)!;
    const entry: ManifestFile = {
      task: task.id,
      sha256: c.sha256,
      bytes: data.length,
      rows: c.rows,
      source,
      verified: c.verified,
      from,
      writtenAt: now,
    };
    ctx.manifest.files[path] = entry;
    ctx.pending.files.set(path, entry);
  }
  await saveManifest(ctx);
}

/**
 * Re-reads the manifest from disk and applies this call's pending changes to it (`ctx.manifest`
 * becomes the result), under the manifest's lock, so that runs sharing a cache keep each other's
 * entries; with `write`, saves the result and clears the pending changes.
 */
async function refreshManifest(ctx: Ctx, write: boolean): Promise<void> {
  await withFileLock(join(ctx.cacheDir, LOCKS, "manifest.lock"), async () => {
    const m = await readManifest(ctx.cacheDir);
    for (const [path, entry] of ctx.pending.files) m.files[path] = entry;
    for (const [url, entry] of ctx.pending.archives) {
      if (entry) m.archives[url] = entry;
      else delete m.archives[url];
    }
    ctx.manifest = m;
    if (!write) return;
    await ctx.writeManifest(join(ctx.cacheDir, MANIFEST), JSON.stringify(m, null, 2) + "\n");
    ctx.pending = { files: new Map(), archives: new Map() };
  }, { remove: true });
}

/**
 * Saves the manifest ({@link refreshManifest}). A failure (a full disk) is not thrown, so that it
 * never takes the place of a task's own error or of the failures' summary: it is kept in
 * `ctx.unsaved` (naming the manifest's path) with the changes still pending, for the next save to
 * retry; {@link download} reports it at the end if no later save succeeded. A failure with no
 * changes pending loses nothing and is not kept.
 */
async function saveManifest(ctx: Ctx): Promise<void> {
  try {
    await refreshManifest(ctx, true);
    ctx.unsaved = undefined;
  } catch (e) {
    const tasks = [...new Set([...ctx.pending.files.values()].map((f) => f.task))];
    const lost = tasks.length > 0
      ? `the files written for ${
        tasks.join(", ")
      } are in place but not listed in it, so the next run fetches them again`
      : ctx.pending.archives.size > 0
      ? "its record of the raw downloads is out of date (they are checked again when reused)"
      : undefined;
    // Nothing pending: the manifest on disk already holds all of this call's changes.
    if (lost === undefined) return;
    ctx.unsaved = `the download manifest ${join(ctx.cacheDir, MANIFEST)} could not be saved (${
      (e as Error).message
    }): ${lost}`;
  }
}

/**
 * Expands `all`, `glue`, `super_glue` and names into task sources (deduplicated, in order).
 *
 * @param names the names given
 * @param table the task sources
 * @param note told of a bare name that another benchmark's task has too (`rte`: `glue/rte`, not
 *   `super_glue/rte`), so the choice is said
 * @returns the sources
 */
export function selectTasks(
  names: readonly string[],
  table: readonly TaskSource[] = TASK_SOURCES,
  note?: (line: string) => void,
): TaskSource[] {
  const out: TaskSource[] = [];
  const add = (t: TaskSource) => {
    if (!out.includes(t)) out.push(t);
  };
  for (const raw of names) {
    const n = raw.trim().toLowerCase();
    if (n === "") continue;
    if (n === "all") table.forEach(add);
    else if (n === "glue" || n === "super_glue" || n === "superglue") {
      table.filter((t) => t.benchmark === (n === "glue" ? "glue" : "super_glue")).forEach(add);
    } else {
      const id = table.some((t) => t.id === n) ? n : findTaskSource(n).id;
      const t = table.find((x) => x.id === id);
      if (!t) throw new Error(`unknown task "${raw}"; known: ${table.map((x) => x.id).join(", ")}`);
      const twin = n.includes("/")
        ? undefined
        : table.find((x) => x !== t && x.id.slice(x.id.indexOf("/") + 1) === n);
      if (twin !== undefined) {
        note?.(`"${raw.trim()}" is ${t.id}; ${twin.id} is named so in full`);
      }
      add(t);
    }
  }
  return out;
}

/** The endpoints a download uses, and what gave each one. */
export interface ResolvedEndpoints {
  /** The base URLs. */
  readonly endpoints: Endpoints;
  /**
   * What gave each: `default` (the official host), `HF_ENDPOINT`, {@link ENDPOINTS_ENV}, or the
   * label of the `endpoints` option (`options`, or `--endpoint` from the command line).
   */
  readonly from: Readonly<Record<keyof Endpoints, string>>;
}

/**
 * The base URLs a download uses: each from `given` (the `endpoints` option, `--endpoint`), else
 * from {@link ENDPOINTS_ENV} (`key=url,…` or a JSON object; see `sources.ts` `parseEndpoints`),
 * else, for the Hugging Face parquet fallback's host (`hf`), from `HF_ENDPOINT` (as the model
 * download reads it), else the official host ({@link DEFAULT_ENDPOINTS}). An environment variable
 * that cannot be read (no `--allow-env`) counts as unset.
 *
 * @param given endpoints that win over the environment's
 * @param givenFrom what gave `given`, for {@link ResolvedEndpoints.from} (default `options`)
 * @param env reads an environment variable (default the process's)
 * @returns the endpoints and what gave each
 * @throws Error naming the variable or `givenFrom`, the key and the allowed keys: an empty
 *   value, an unknown key, a value that is not an http(s) base URL
 */
export function resolveEndpoints(
  given: Partial<Endpoints> = {},
  givenFrom = "options",
  env: (name: string) => string | undefined = readEnv,
): ResolvedEndpoints {
  const endpoints: Record<keyof Endpoints, string> = { ...DEFAULT_ENDPOINTS };
  const from = Object.fromEntries(ENDPOINT_KEYS.map((k) => [k, "default"])) as Record<
    keyof Endpoints,
    string
  >;
  const hf = env("HF_ENDPOINT");
  if (hf !== undefined && hf.trim() !== "") {
    endpoints.hf = checkEndpointUrl(hf, "HF_ENDPOINT");
    from.hf = "HF_ENDPOINT";
  }
  const text = env(ENDPOINTS_ENV);
  if (text !== undefined) {
    for (const [k, v] of Object.entries(parseEndpoints(text, ENDPOINTS_ENV))) {
      endpoints[k as keyof Endpoints] = v;
      from[k as keyof Endpoints] = ENDPOINTS_ENV;
    }
  }
  for (const k of ENDPOINT_KEYS) {
    const v = given[k];
    if (v === undefined) continue;
    endpoints[k] = checkEndpointUrl(v, `${givenFrom}: ${k}`);
    from[k] = givenFrom;
  }
  return { endpoints, from };
}

/**
 * The endpoints that are not the official hosts, as `key=url (what gave it)` joined by `, `; an
 * empty string when all are the official ones.
 */
export function describeEndpoints(r: ResolvedEndpoints): string {
  return ENDPOINT_KEYS.filter((k) => r.from[k] !== "default")
    .map((k) => `${k}=${r.endpoints[k]} (${r.from[k]})`).join(", ");
}

/**
 * Downloads the given tasks into the cache (official layout), verifying and recording each file.
 * Tasks whose files are already recorded (and present with the recorded size) are skipped.
 *
 * @param opts the tasks, the cache folder, the sources and the transfer settings
 * @returns per task: `cached`, or the source its files were written from
 * @throws DownloadError after trying every task, if any failed: each failure, the results of
 *   the other tasks, and, after them, why the manifest could not be saved if it could not. After
 *   a local file error (a full disk, a refused permission, a read-only folder: `model/fs.ts`
 *   `isLocalFileError`) the remaining tasks are not tried: each is a failure marked `notTried`,
 *   logged in one line; a network error leaves the next tasks tried.
 * @throws Error for an unknown task name or a bad endpoint ({@link resolveEndpoints}; both before
 *   the cache folder is made), an unreadable manifest, or, when no task failed, a manifest that
 *   could not be saved (naming its path and the tasks it does not list)
 */
export async function download(opts: DownloadOptions): Promise<TaskResult[]> {
  const cacheDir = opts.cacheDir ?? defaultCacheDir();
  // Unknown task names stop here, before the cache folder is made.
  const tasks = selectTasks(opts.tasks, opts.taskSources ?? TASK_SOURCES);
  const resolved = resolveEndpoints(opts.endpoints, opts.endpointsFrom);
  await Deno.mkdir(cacheDir, { recursive: true });
  const ctx: Ctx = {
    cacheDir,
    endpoints: resolved.endpoints,
    manifest: await readManifest(cacheDir),
    retries: opts.retries ?? 3,
    sleep: opts.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms))),
    idleTimeoutMs: opts.idleTimeoutMs ?? IDLE_TIMEOUT_MS,
    quiet: opts.quiet ?? false,
    log: opts.log ?? ((l) => {
      // A closed stderr pipe drops the line (model/stderr.ts), as console.error does.
      if (!opts.quiet) writeStderr(l + "\n");
    }),
    fetch: opts.fetch ?? fetch,
    countRows: opts.countRows ?? countRowsBytes,
    writeManifest: opts.writeManifest ?? writeAtomic,
    unsaved: undefined,
    raws: [],
    pending: { files: new Map(), archives: new Map() },
    reached: new Set(),
  };
  const source = opts.source ?? "auto";
  const named = describeEndpoints(resolved);
  if (named !== "") ctx.log(`endpoints: ${named}`);
  const results: TaskResult[] = [];
  const failures: TaskFailure[] = [];
  // The message of the first local file error (a full disk, a refused permission, a read-only
  // folder: it names the file): every later task would fail at once on it, so they are not tried.
  let localFailure: string | undefined;
  // Whether a task's official source was logged as unreachable (later ones get a short line).
  let unreachableSaid = false;
  // One task at a time under its lock, against the manifest as it is on disk then.
  const fetchTask = async (task: TaskSource): Promise<void> => {
    ctx.raws = [];
    await refreshManifest(ctx, false);
    if (await isCached(ctx, task, opts.verify ?? false)) {
      ctx.log(`${task.id}: up to date`);
      results.push({ task: task.id, status: "cached", files: task.files.map((f) => f.path) });
      return;
    }
    let fallbackReason: string | undefined;
    // The official source's error when it could not connect (offline), for TaskFailure.
    let officialUnreachable: string | undefined;
    let done = false;
    // The official source's connection error, for a failure that ends with it.
    const unreachable = () =>
      officialUnreachable === undefined ? {} : { unreachable: officialUnreachable };
    // A local file error (a full disk, a refused permission: model/fs.ts fsError, naming the
    // file) of the official files: the parquet fallback would write to the same disk, so the
    // task fails with it.
    let localError = false;
    if (source !== "parquet") {
      try {
        const { files, from, rows } = await fromOfficial(ctx, task);
        const checks = verifyFiles(ctx, task, files, true, "official", rows);
        await commitFiles(ctx, task, files, checks, "official", from);
        results.push({ task: task.id, status: "official", files: [...files.keys()] });
        done = true;
      } catch (e) {
        fallbackReason = (e as Error).message;
        if (isConnectFailure(e)) officialUnreachable = fallbackReason;
        localError = isLocalFileError(e);
        if (localError) localFailure = fallbackReason;
        if (source === "official") {
          failures.push({
            task: task.id,
            reason: fallbackReason,
            ...unreachable(),
            ...(localError ? { local: true as const } : {}),
          });
        } else if (localError) {
          failures.push({
            task: task.id,
            reason: `official: ${fallbackReason} (a local file error: the Hugging Face parquet ` +
              `fallback, which writes to the same folder, was not tried)`,
            local: true,
          });
        } else if (task.parquet !== false) {
          // Offline, every task fails so: the error once, then a short line per task.
          ctx.log(
            officialUnreachable !== undefined && unreachableSaid
              ? `${task.id}: official source unreachable too; trying Hugging Face parquet`
              : `${task.id}: official source failed (${fallbackReason}); trying Hugging Face parquet`,
          );
          if (officialUnreachable !== undefined) unreachableSaid = true;
        }
      }
    }
    if (done || localError || source === "official") {
      // Nothing more to try: done, or the failure is recorded above.
    } else if (task.parquet === false) {
      failures.push({
        task: task.id,
        reason: `${
          fallbackReason ? `official: ${fallbackReason}; ` : ""
        }no Hugging Face parquet source for this task (it is not in ${HF_REPOS[task.benchmark]})`,
        ...unreachable(),
      });
    } else {
      try {
        const { files, from, rows } = await fromParquet(ctx, task);
        const checks = verifyFiles(ctx, task, files, false, "parquet", rows);
        await commitFiles(ctx, task, files, checks, "parquet", from);
        results.push({
          task: task.id,
          status: "parquet",
          files: [...files.keys()],
          fallbackReason,
        });
        done = true;
      } catch (e) {
        const parquetLocal = isLocalFileError(e);
        if (parquetLocal) localFailure = (e as Error).message;
        const parquetUnreachable = isConnectFailure(e) &&
          (fallbackReason === undefined || officialUnreachable !== undefined);
        failures.push({
          task: task.id,
          reason: `${fallbackReason ? `official: ${fallbackReason}; ` : ""}parquet: ${
            (e as Error).message
          }`,
          ...(parquetUnreachable
            ? { unreachable: officialUnreachable ?? (e as Error).message }
            : {}),
          ...(parquetLocal ? { local: true as const } : {}),
        });
      }
    }
    if (done) ctx.log(`${task.id}: ${task.files.length} file(s) written and verified`);
    // Keep partial transfers for a later resume; drop complete raw files once used.
    if (done && !opts.keepDownloads) {
      for (const p of ctx.raws) await Deno.remove(p).catch(() => {});
    }
    await saveManifest(ctx);
  };
  const notTried: string[] = [];
  for (const task of tasks) {
    if (localFailure !== undefined) {
      notTried.push(task.id);
      continue;
    }
    try {
      const lock = join(cacheDir, LOCKS, `${task.benchmark}-${task.hfConfig}.lock`);
      await withFileLock(lock, () => fetchTask(task), {
        remove: true,
        // Another process fetches it into this cache: said, rather than seeming to hang.
        onWait: () =>
          ctx.log(`${task.id}: waiting for another process that fetches it into ${cacheDir}`),
      });
    } catch (e) {
      // A local file error outside the task's sources (its lock file, the manifest's lock) is
      // this task's failure; any other error (an unreadable manifest) ends the download.
      if (!isLocalFileError(e)) throw e;
      localFailure = (e as Error).message;
      failures.push({ task: task.id, reason: localFailure, local: true });
    }
  }
  if (notTried.length > 0) {
    const reason = `not tried: the previous write failed on the local disk: ${localFailure}`;
    ctx.log(`${notTried.join(", ")}: ${reason}`);
    for (const task of notTried) failures.push({ task, reason, notTried: true });
  }
  if (failures.length > 0) {
    const mirror = failures.every((f) => f.unreachable !== undefined)
      ? mirrorTasks(opts.mirrorDir, failures.map((f) => f.task))
      : undefined;
    throw new DownloadError(failures, results, ctx.unsaved, mirror);
  }
  if (ctx.unsaved !== undefined) throw new Error(ctx.unsaved);
  return results;
}

/**
 * The offline mirror (`dir`, else `tasks/data.ts` `defaultDataRoots().mirror`) and which of the
 * task ids `failed` it holds.
 */
function mirrorTasks(dir: string | undefined, failed: readonly string[]): MirrorTasks {
  const mirror = dir ?? defaultDataRoots().mirror;
  const exists = (() => {
    try {
      return Deno.statSync(mirror).isDirectory;
    } catch {
      return false;
    }
  })();
  const names = new Set(exists ? availableTasks(mirror) : []);
  const tasks: string[] = [];
  const partial: string[] = [];
  for (const id of failed) {
    const src = TASK_SOURCES.find((t) => t.id === id);
    if (src === undefined || !exists) continue;
    if (names.has(src.name)) {
      tasks.push(id);
      continue;
    }
    const splits = [
      ...new Set(src.files.filter((f) => isFileSync(join(mirror, f.path))).map((f) => f.split)),
    ];
    if (splits.length > 0) partial.push(`${id} (${splits.join(", ")})`);
  }
  return { dir: mirror, exists, tasks, partial };
}

/** The flags of `deno task download`, as `parseArgs` takes them. */
const DOWNLOAD_FLAGS = {
  tasks: { type: "string", multiple: true },
  "cache-dir": { type: "string" },
  source: { type: "string" },
  retries: { type: "string" },
  endpoint: { type: "string", multiple: true },
  verify: { type: "boolean" },
  "keep-downloads": { type: "boolean" },
  quiet: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

/**
 * Parses `deno task download` arguments (`model/usage.ts` `parseFlags`: a mistake in the flags
 * themselves is a one-line `UsageError` naming the flag, the value and what it takes). A flag's
 * value may follow it or be given as `--flag=value`; a value that is itself a flag
 * (`--tasks --cache-dir DIR`) is an error, as is a value given to a switch (`--verify=no`).
 * `--tasks` may be given several times; the names add up. `--endpoint KEY=URL` (several times, or
 * `KEY=URL,KEY=URL`) sets `endpoints` (see `sources.ts` `parseEndpoints`), each key once.
 *
 * @param args command-line arguments
 * @returns the download options, and whether `--help` was given
 * @throws Error naming the flag for an unknown flag, a missing or bad value
 */
export function parseDownloadArgs(args: string[]): DownloadOptions & { help?: boolean } {
  const v = parseFlags(args, {
    tool: "deno task download",
    options: DOWNLOAD_FLAGS,
    takes: {
      tasks: "all, glue, super_glue or task names, comma-separated",
      "cache-dir": "a folder",
      source: "auto|official|parquet",
      retries: "a whole number of retries, e.g. 3",
      endpoint: `K=URL, K one of ${ENDPOINT_KEYS.join(", ")}`,
    },
    paths: { "cache-dir": true },
  });
  const o: DownloadOptions & { help?: boolean } = { tasks: [] };
  for (const value of v.tasks ?? []) {
    const names = commaList(value, "--tasks", "task names");
    if (names.length === 0) throw new Error(`--tasks "${value}" names no task`);
    o.tasks = [...o.tasks, ...names];
  }
  if (v["cache-dir"] !== undefined) o.cacheDir = v["cache-dir"];
  const s = v.source;
  if (s !== undefined) {
    if (s !== "auto" && s !== "official" && s !== "parquet") {
      throw new Error(`--source must be auto, official or parquet, got "${s}"`);
    }
    o.source = s;
  }
  if (v.retries !== undefined) {
    const n = decimalNumber(v.retries);
    if (!Number.isInteger(n) || n < 0) {
      throw new Error(`--retries must be a non-negative integer, got "${v.retries}"`);
    }
    o.retries = n;
  }
  for (const value of v.endpoint ?? []) {
    for (const [k, url] of Object.entries(parseEndpoints(value, "--endpoint"))) {
      const key = k as keyof Endpoints;
      if (o.endpoints?.[key] !== undefined) throw new Error(`--endpoint: ${key} given twice`);
      o.endpoints = { ...o.endpoints, [key]: url };
      o.endpointsFrom = "--endpoint";
    }
  }
  if (v.verify) o.verify = true;
  if (v["keep-downloads"]) o.keepDownloads = true;
  if (v.quiet) o.quiet = true;
  if (v.help) o.help = true;
  return o;
}

/** `deno task download --help`, with the cache folder it would use. */
function downloadUsage(): string {
  let cache: string;
  try {
    cache = defaultCacheDir();
  } catch (e) {
    cache = `none (${(e as Error).message})`;
  }
  return "Usage: deno task download --tasks all|glue|super_glue|cola,rte,super_glue/rte,... " +
    "[--cache-dir DIR] [--source auto|official|parquet] [--endpoint K=URL] [--verify] " +
    "[--keep-downloads] [--retries N] [--quiet]\n\n" +
    "  --tasks LIST      all, glue, super_glue or task names, comma-separated (repeatable)\n" +
    "  --cache-dir DIR   the data folder to fill, in the official layout (default below)\n" +
    "  --source S        auto (official files, then Hugging Face parquet; default), official\n" +
    "                    or parquet\n" +
    "  --endpoint K=URL  fetch from a mirror: URL is the base URL of source K, one of glue,\n" +
    "                    superGlue, senteval (MRPC), dpr, hf (the Hugging Face parquet fallback);\n" +
    "                    repeatable, or K=URL,K=URL; wins over the variable below\n" +
    "  --verify          re-hash the files the cache's manifest lists, not only their size\n" +
    "  --keep-downloads  keep the raw downloads (zips, parquet) once their files are written\n" +
    "  --retries N       extra attempts per file, resuming, after a broken transfer, 30 s\n" +
    "                    without data, or HTTP 408, 429, 5xx (default 3; none for a host that\n" +
    "                    cannot be connected to and has not answered before: offline)\n" +
    "  --quiet           no progress bars or log lines\n" +
    "  --help            this text\n\n" +
    `cache default: ${cache} ($HYPERPROMPT_CACHE/data when that is set, else ` +
    `$XDG_CACHE_HOME/hyperprompt-bench/data, else ~/.cache/hyperprompt-bench/data)\n` +
    `tasks: ${TASK_SOURCES.map((t) => t.id).join(", ")}\n` +
    `${ENDPOINTS_ENV}: mirrors, as --endpoint takes them (K=URL,K=URL) or as a JSON\n` +
    `object ({"glue": "https://mirror.example/glue"}); deno task bench's download reads it too.\n` +
    `Where neither names one, each source is its official host:\n` +
    ENDPOINT_KEYS.map((k) => `  ${k.padEnd(9)} ${DEFAULT_ENDPOINTS[k]}\n`).join("") +
    "except hf: $HF_ENDPOINT when that is set, as for the model download. The log's first line\n" +
    "and the summary name the endpoints used that are not the official hosts; the cache's\n" +
    "manifest.json records each file's URLs (from).\n" +
    "Exit codes: 0 done, 1 a download failed, 2 bad arguments (nothing fetched).";
}

/** Options of {@link main} (tests capture the output and replace the downloader). */
export interface DownloadMainOptions {
  /** Where `--help` and the summary go (default `console.log`). */
  readonly log?: (s: string) => void;
  /** Where the error line goes (default `console.error`). */
  readonly error?: (s: string) => void;
  /** The downloader (default {@link download}). */
  readonly download?: (opts: DownloadOptions) => Promise<TaskResult[]>;
  /**
   * Why a new file cannot be created in a folder, or undefined (`model/fs.ts`
   * `checkOutputFolder`'s `cannotWrite`; default: a probe file). Tests inject a read-only disk.
   */
  readonly cannotWrite?: (dir: string) => string | undefined;
}

/**
 * `deno task download` (through `runCli` of `model/usage.ts`): `--help` prints the usage; the
 * arguments, the task names and the cache folder are checked before anything is fetched or
 * created; an error is one message naming the flag, never a stack trace.
 *
 * @param args command-line arguments
 * @param opts output sinks and the downloader
 * @returns the exit code: 0 done (or `--help`), 1 a download failed, 2 bad arguments
 */
export function main(args: string[], opts: DownloadMainOptions = {}): Promise<number> {
  const log = opts.log ?? ((s: string) => console.log(s));
  const error = opts.error ?? ((s: string) => console.error(s));
  const sinks = { log, error };
  return runCli(
    (a) => downloadCommand(a, log, error, opts.download ?? download, opts.cannotWrite),
    args,
    downloadUsage(),
    sinks,
  );
}

/** The work of {@link main}: a bad argument throws a `UsageError`, a failed download its error. */
async function downloadCommand(
  args: string[],
  log: (s: string) => void,
  error: (s: string) => void,
  dl: (opts: DownloadOptions) => Promise<TaskResult[]>,
  cannotWrite?: (dir: string) => string | undefined,
): Promise<void> {
  let o: DownloadOptions & { help?: boolean };
  let dir: string;
  let endpoints: string;
  try {
    o = parseDownloadArgs(args);
  } catch (e) {
    // parseFlags's line already ends with the pointer to --help.
    if (e instanceof UsageError) throw e;
    throw new UsageError(`${(e as Error).message}; deno task download --help lists the flags`, {
      cause: e,
    });
  }
  if (o.tasks.length === 0) {
    throw new UsageError(
      `--tasks is required: name the tasks to download (all, glue, super_glue or task names, ` +
        `comma-separated, e.g. --tasks cola,rte); deno task download --help lists the flags ` +
        `and the tasks`,
    );
  }
  try {
    // An unknown task stops here, before the cache folder is made; an ambiguous name is said.
    // Notes go with the log lines (stderr, none under --quiet), each once (`--tasks rte --tasks
    // rte`); stdout keeps the summary a script reads.
    const said = new Set<string>();
    selectTasks(o.tasks, TASK_SOURCES, (line) => {
      if (o.quiet || said.has(line)) return;
      said.add(line);
      error(`note: ${line}`);
    });
    // A bad HYPERPROMPT_DATA_ENDPOINTS or HF_ENDPOINT too (download() reads them again).
    endpoints = describeEndpoints(resolveEndpoints(o.endpoints, o.endpointsFrom));
    dir = o.cacheDir ?? defaultCacheDir();
    // It always writes there (its manifest, locks): a folder it cannot write is refused now, not
    // as a bare "Permission denied" (h388).
    checkOutputFolder(o.cacheDir === undefined ? "the cache folder" : "--cache-dir", dir, {
      writable: true,
      ...(cannotWrite === undefined ? {} : { cannotWrite }),
    });
  } catch (e) {
    throw new UsageError(`${(e as Error).message}; deno task download --help lists the flags`, {
      cause: e,
    });
  }
  const { help: _, ...downloadOpts } = o;
  const res = await dl(downloadOpts);
  log(
    `done: ${res.map((r) => `${r.task}=${r.status}`).join(" ")}\ndata dir: ${dir}` +
      (endpoints === "" ? "" : `\nendpoints: ${endpoints}`),
  );
}

if (import.meta.main) {
  // A write past `ulimit -f` then throws "File too large (os error 27)" naming the file, for
  // the error paths to report, instead of SIGXFSZ ending the process silently (exit 153).
  ignoreFileSizeSignal();
  Deno.exit(await main(Deno.args));
}
