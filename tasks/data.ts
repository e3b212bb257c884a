/**
 * Where the task files are: the download cache or an offline mirror in the official layout
 * (`<root>/glue/<Task>/<file>`, `<root>/super_glue/<Task>/<file>`, e.g. `shared/data`), which
 * tasks and splits a folder holds, and the message shown when some are missing.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { basename, dirname, join, resolve } from "node:path";
import {
  type FileSpec,
  findTaskSource,
  type Split,
  TASK_SOURCES,
  type TaskSource,
} from "./sources.ts";
import {
  isDirectorySync,
  isFileSync as isFile,
  makeHeldTempDirSync,
  removeStaleTempsSync,
  syncDirSync,
  TEMP_TAG_SOURCE,
  type TempPattern,
} from "../model/fs.ts";
import { sharedPath } from "../model/shared_dir.ts";
import { decodeUtf8, parseDpr } from "./parse.ts";
import { evalSplits, getTask } from "./registry.ts";

/**
 * Default data cache: `$HYPERPROMPT_CACHE/data` when that variable is set, else
 * `$XDG_CACHE_HOME/hyperprompt-bench/data`, else `~/.cache/hyperprompt-bench/data`.
 * (`HYPERPROMPT_CACHE` names the suite's cache root, shared with model downloads.)
 */
export function defaultCacheDir(): string {
  const root = Deno.env.get("HYPERPROMPT_CACHE");
  if (root) return join(root, "data");
  const xdg = Deno.env.get("XDG_CACHE_HOME");
  if (xdg) return join(xdg, "hyperprompt-bench", "data");
  const home = Deno.env.get("HOME") ?? Deno.env.get("USERPROFILE");
  if (!home) {
    throw new Error("cannot find a cache folder: set HYPERPROMPT_CACHE or pass --cache-dir");
  }
  return join(home, ".cache", "hyperprompt-bench", "data");
}

/**
 * The data root to read from: `dataDir` (an offline mirror, `--data-dir`) when given, which must
 * be a folder ({@link checkDataDir}); else `cacheDir` (`--cache-dir`), else
 * {@link defaultCacheDir}. Both are in the official layout, so the same parsers read either.
 */
export function resolveDataDir(opts: { dataDir?: string; cacheDir?: string } = {}): string {
  if (opts.dataDir !== undefined) {
    checkDataDir(opts.dataDir);
    return opts.dataDir;
  }
  return opts.cacheDir ?? defaultCacheDir();
}

/**
 * Checks a data folder the user named (by a flag, or an environment variable standing in for
 * one): it must exist and be a folder. The message names what named it: `--data-dir DIR: no such
 * folder`, `HYPERPROMPT_DATA=DIR: is a file, not a folder`.
 *
 * @param dir the folder
 * @param namedBy the flag (`--data-dir`, the default) or variable (`HYPERPROMPT_DATA`) that named it
 * @throws Error when it is missing, not a folder, or cannot be read
 */
export function checkDataDir(dir: string, namedBy = "--data-dir"): void {
  const named = namedBy.startsWith("-") ? `${namedBy} ${dir}` : `${namedBy}=${dir}`;
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(dir);
  } catch (e) {
    throw new Error(
      e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory
        ? `${named}: no such folder`
        : `${named}: ${(e as Error).message}`,
    );
  }
  if (!info.isDirectory) throw new Error(`${named}: is a file, not a folder`);
}

/**
 * The data folder a run reads by default: `$HYPERPROMPT_DATA` when set, else
 * {@link chooseDataDir} of the download cache ({@link defaultCacheDir}) and the offline mirror
 * `shared/data` beside the repository: each file from the cache when the cache's manifest lists it
 * (a verified download), else from the mirror. A cache folder left by a failed download, or
 * holding only some tasks, no longer hides the mirror's files.
 */
export function defaultDataDir(): string {
  const env = Deno.env.get("HYPERPROMPT_DATA");
  if (env) return env;
  const { cache, mirror } = defaultDataRoots();
  return chooseDataDir({ cacheDir: cache, mirrorDir: mirror });
}

/** The two roots {@link defaultDataDir} chooses from (see {@link defaultDataRoots}). */
export interface DataRoots {
  /** The download cache ({@link defaultCacheDir}), resolved; absent when none can be named. */
  readonly cache?: string;
  /** Why no cache folder can be named ({@link defaultCacheDir}'s error), when `cache` is absent. */
  readonly noCache?: string;
  /** The offline mirror `shared/data` beside the repository (`HYPERPROMPT_SHARED`), resolved. */
  readonly mirror: string;
}

/**
 * The download cache and the offline mirror that {@link defaultDataDir} picks each file from
 * (when `HYPERPROMPT_DATA` is not set), resolved as {@link chooseDataDir} resolves them: for a
 * message that names the folders looked in.
 *
 * @returns the roots
 */
export function defaultDataRoots(): DataRoots {
  const mirror = resolve(sharedPath("data"));
  try {
    return { cache: resolve(defaultCacheDir()), mirror };
  } catch (e) {
    return { noCache: (e as Error).message, mirror };
  }
}

/**
 * What a message about the default data folder says when the offline mirror `mirror`
 * ({@link DataRoots.mirror}) does not exist: `no offline mirror at "<mirror>"; HYPERPROMPT_SHARED=DIR
 * names it`. One wording for every tool that names the folders looked in.
 *
 * @param mirror the mirror folder, resolved
 * @returns the words, without surrounding punctuation
 */
export function noMirrorNote(mirror: string): string {
  return `no offline mirror at "${mirror}"; HYPERPROMPT_SHARED=DIR names it`;
}

/** Options of {@link chooseDataDir}. */
export interface ChooseDataDirOptions {
  /** The download cache (files count only where its `manifest.json` lists them). */
  cacheDir?: string;
  /** The offline mirror in the official layout. */
  mirrorDir: string;
  /** Where the choice is explained when both roots are used (default stderr). */
  log?: (line: string) => void;
}

/**
 * Picks the data folder from a download cache and an offline mirror, per file of
 * {@link TASK_SOURCES}: the cache's copy when its manifest lists the file with the size on disk,
 * else the mirror's. When every file comes from one root, that root is returned; when none does,
 * the mirror if it exists, else the cache (so the missing-task message names it). When both
 * supply files, the result is a folder of symbolic links, `<cacheDir>/merged/<digest of the
 * mapping>`, built once per mapping (in a temporary folder renamed into place, so concurrent runs
 * are safe) and reused while the mapping stays the same; where links cannot be made, the root with
 * more files is used and the log says so. The temporary folders of builds that were killed
 * (`<digest>.tmp-…`, whose builder no longer holds them) are removed here.
 *
 * Link folders of earlier mappings are not pruned. Nothing records which process reads which
 * folder: a run resolves its data folder once at start and reads task files from it for hours,
 * so a folder that is not the current mapping's, or whose links dangle for the moment (a file
 * being downloaded again), may still be read by a live run, and no age proves otherwise. Each is
 * a few kilobytes of links, and a new one appears only when the set of downloaded files changes.
 */
export function chooseDataDir(opts: ChooseDataDirOptions): string {
  const mirror = resolve(opts.mirrorDir);
  const cache = opts.cacheDir === undefined ? undefined : resolve(opts.cacheDir);
  const listed = cache === undefined ? {} : cachedFiles(cache);
  const links: [string, string][] = [];
  let fromCache = 0, fromMirror = 0;
  for (const t of TASK_SOURCES) {
    for (const f of t.files) {
      if (cache !== undefined && listed[f.path] !== undefined) {
        links.push([f.path, join(cache, f.path)]);
        fromCache++;
      } else if (isFile(join(mirror, f.path))) {
        links.push([f.path, join(mirror, f.path)]);
        fromMirror++;
      }
    }
  }
  if (cache === undefined || fromCache === 0) {
    return cache !== undefined && !isDirectorySync(mirror) ? cache : mirror;
  }
  if (fromMirror === 0) return cache;
  const log = opts.log ?? ((l: string) => console.error(l));
  const digest = createHash("sha256").update(links.map(([p, t]) => `${p}\t${t}\n`).join(""))
    .digest("hex").slice(0, 16);
  const view = join(cache, "merged", digest);
  const why = `${fromCache} file(s) from the download cache ${cache}, ${fromMirror} from the ` +
    `mirror ${mirror}`;
  removeStaleTempsSync(dirname(view), LINK_TEMPS);
  if (isFile(join(view, DONE))) return view;
  try {
    buildLinkFolder(view, links);
  } catch (e) {
    const pick = fromCache >= fromMirror ? cache : mirror;
    log(`data: cannot link ${why} into ${view} (${(e as Error).message}); reading only ${pick}`);
    return pick;
  }
  log(`data: ${view} links ${why}`);
  return view;
}

/** Marker written last into a complete link folder. */
const DONE = ".complete";

/**
 * The temporary folders {@link chooseDataDir} builds a link folder in, under `<cacheDir>/merged/`:
 * `<digest>.tmp-<pid>-<12 hex>` (held locked while it is built), and the unlocked
 * `<digest>.tmp-<pid>-<uuid>` of earlier versions.
 */
const LINK_TEMPS: TempPattern = {
  kind: "directory",
  held: new RegExp(String.raw`^[0-9a-f]{16}\.tmp-${TEMP_TAG_SOURCE}$`),
  legacy: /^[0-9a-f]{16}\.tmp-\d+-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
};

/** Builds `view` (links `path` → `target`) in a temporary folder, then renames it into place. */
function buildLinkFolder(view: string, links: readonly [string, string][]): void {
  Deno.mkdirSync(dirname(view), { recursive: true });
  const held = makeHeldTempDirSync(dirname(view), basename(view));
  const tmp = held.path;
  try {
    const folders = new Set<string>();
    for (const [path, target] of links) {
      const at = join(tmp, path);
      Deno.mkdirSync(dirname(at), { recursive: true });
      Deno.symlinkSync(target, at);
      for (let d = dirname(at); d.length > tmp.length; d = dirname(d)) folders.add(d);
    }
    Deno.writeTextFileSync(join(tmp, DONE), "");
    // Every link and the marker on disk before the rename publishes the folder: after a power
    // cut a folder named `view` without its marker would never be rebuilt (the rename onto it
    // fails), and without some links it would hide task files.
    for (const d of [...folders].sort((a, b) => b.length - a.length)) syncDirSync(d);
    syncDirSync(tmp);
    try {
      Deno.renameSync(tmp, view);
      syncDirSync(dirname(view)); // the new name survives a power cut
    } catch (e) {
      // Another run built the same folder first: use theirs.
      if (!isFile(join(view, DONE))) throw e;
    }
  } finally {
    try {
      Deno.removeSync(tmp, { recursive: true });
    } catch { /* renamed into place */ }
    held.release();
  }
}

/**
 * The files `<cacheDir>/manifest.json` lists that are present with their recorded size (empty when
 * there is no readable manifest).
 */
function cachedFiles(cacheDir: string): Record<string, true> {
  let files: Record<string, { bytes?: unknown }>;
  try {
    const m = JSON.parse(Deno.readTextFileSync(join(cacheDir, "manifest.json")));
    files = m?.files ?? {};
  } catch {
    return {};
  }
  const out: Record<string, true> = {};
  for (const [path, entry] of Object.entries(files)) {
    try {
      const st = Deno.statSync(join(cacheDir, path));
      if (st.isFile && st.size === entry?.bytes) out[path] = true;
    } catch { /* listed but gone */ }
  }
  return out;
}

/** Presence of one task's files in a data root, per coarse split. */
export interface TaskFiles {
  /** Registry name, e.g. `cola`, `rte_sg`. */
  readonly task: string;
  /** Canonical id, e.g. `glue/cola`, `super_glue/rte`. */
  readonly id: string;
  /** Per split the task has: true when every file of that split is present. */
  readonly splits: Partial<Record<Split, boolean>>;
  /** Files (layout paths) that are absent. */
  readonly missing: string[];
}

/** Which files of every known task are present under `dataDir`, per split. */
export function taskFileStatus(dataDir: string): TaskFiles[] {
  return TASK_SOURCES.map((t) => {
    const splits: Partial<Record<Split, boolean>> = {};
    const missing: string[] = [];
    for (const f of t.files) {
      const here = isFile(join(dataDir, f.path));
      if (!here) missing.push(f.path);
      splits[f.split] = (splits[f.split] ?? true) && here;
    }
    return { task: t.name, id: t.id, splits, missing };
  });
}

/** The splits a task needs by default: train and validation, or test for test-only tasks. */
export function defaultSplits(task: TaskSource): Split[] {
  const has = new Set(task.files.map((f) => f.split));
  const wanted = (["train", "validation"] as Split[]).filter((s) => has.has(s));
  return wanted.length > 0 ? wanted : ["test"];
}

function neededFiles(task: TaskSource, splits?: readonly Split[]): FileSpec[] {
  const want = new Set(splits ?? defaultSplits(task));
  return task.files.filter((f) => want.has(f.split));
}

/**
 * Registry names (`cola`, …, `rte_sg`, …, `axg`; see `TaskSource.name`) of the tasks whose files for `splits` are all
 * present under `dataDir`. By default a task needs its train and validation files (test-only
 * tasks — AX, AX-b, AX-g — their test file). A split a task does not have is not required.
 */
export function availableTasks(
  dataDir: string,
  opts: { splits?: readonly Split[] } = {},
): string[] {
  return TASK_SOURCES.filter((t) =>
    neededFiles(t, opts.splits).every((f) => isFile(join(dataDir, f.path)))
  ).map((t) => t.name);
}

/** Splits wanted tasks into those present and those missing files (names as given). */
export function partitionTasks(
  dataDir: string,
  tasks: readonly string[],
  opts: { splits?: readonly Split[] } = {},
): { present: string[]; missing: { task: string; files: string[] }[] } {
  const present: string[] = [];
  const missing: { task: string; files: string[] }[] = [];
  for (const name of tasks) {
    const src = findTaskSource(name);
    const absent = neededFiles(src, opts.splits).filter((f) => !isFile(join(dataDir, f.path)))
      .map((f) => f.path);
    if (absent.length === 0) present.push(name);
    else missing.push({ task: name, files: absent });
  }
  return { present, missing };
}

/**
 * A message naming the wanted tasks whose files are missing under `dataDir` and how to get them,
 * or `undefined` when none is missing.
 */
export function missingTasksMessage(
  dataDir: string,
  tasks: readonly string[],
  opts: { splits?: readonly Split[] } = {},
): string | undefined {
  const { present, missing } = partitionTasks(dataDir, tasks, opts);
  if (missing.length === 0) return undefined;
  const names = missing.map((m) => m.task);
  const lines = [
    `Task data missing under ${dataDir} for ${missing.length} task(s): ${names.join(", ")}`,
    ...missing.map((m) => `  ${m.task}: ${m.files.join(", ")}`),
    "Get them with one of:",
    `  deno task download --tasks ${
      names.join(",")
    }   (fills the cache ${defaultCacheDirOr()}; add --cache-dir DIR to choose it)`,
    "  --data-dir DIR pointing at an offline mirror in the official layout " +
    "(DIR/glue/<Task>/<file>, DIR/super_glue/<Task>/<file>)",
    present.length > 0
      ? `  or limit the run to the tasks present: ${present.join(", ")}`
      : "  (none of the wanted tasks is present)",
  ];
  return lines.join("\n");
}

function defaultCacheDirOr(): string {
  try {
    return defaultCacheDir();
  } catch {
    return "(set HYPERPROMPT_CACHE)";
  }
}

/**
 * Counts the rows of a file's text the way {@link FileSpec.count} says, checking JSON lines parse
 * (and DPR's records: `parse.ts` `parseDpr`).
 * Errors name `where` (the file) and the line.
 */
export function countRows(
  text: string,
  spec: Pick<FileSpec, "count" | "header">,
  where: string,
): number {
  const kind = spec.count ?? "lines";
  if (kind === "dpr_records") return parseDpr(text, where).length;
  const lines = text.split("\n");
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  if (kind === "lines") {
    const n = lines.filter((l) => l.replace(/\r$/, "") !== "").length;
    return spec.header ? Math.max(0, n - 1) : n;
  }
  let total = 0;
  lines.forEach((line, i) => {
    if (line.trim() === "") return;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch (e) {
      throw new Error(`${where}:${i + 1}: invalid JSON (${(e as Error).message})`);
    }
    const o = obj as Record<string, unknown>;
    if (kind === "multirc_answers") {
      const qs = (o.passage as { questions?: unknown } | undefined)?.questions;
      if (!Array.isArray(qs)) throw new Error(`${where}:${i + 1}: field passage.questions missing`);
      for (const q of qs) {
        const ans = (q as { answers?: unknown }).answers;
        if (!Array.isArray(ans)) {
          throw new Error(`${where}:${i + 1}: field questions[].answers missing`);
        }
        total += ans.length;
      }
    } else {
      const qas = o.qas;
      if (!Array.isArray(qas)) throw new Error(`${where}:${i + 1}: field qas missing`);
      total += qas.length;
    }
  });
  return total;
}

/**
 * {@link countRows} on bytes, without decoding whole files for `"lines"` counts (MNLI's train
 * file is hundreds of MB). JSON counts decode one line at a time.
 */
export function countRowsBytes(
  data: Uint8Array,
  spec: Pick<FileSpec, "count" | "header">,
  where: string,
): number {
  const kind = spec.count ?? "lines";
  // DPR's records span five lines (a small file: decoded whole).
  if (kind === "dpr_records") return parseDpr(decodeUtf8(data, where), where).length;
  let n = 0;
  let start = 0;
  let line = 0;
  const dec = new TextDecoder("utf-8");
  for (let i = 0; i <= data.length; i++) {
    if (i < data.length && data[i] !== 0x0a) continue;
    line++;
    let end = i;
    if (end > start && data[end - 1] === 0x0d) end--;
    if (end > start) {
      if (kind === "lines") n++;
      else {
        try {
          n += countRows(dec.decode(data.subarray(start, end)), spec, where);
        } catch (e) {
          throw new Error((e as Error).message.replace(`${where}:1:`, `${where}:${line}:`));
        }
      }
    }
    start = i + 1;
  }
  return kind === "lines" && spec.header ? Math.max(0, n - 1) : n;
}

/**
 * The tasks whose files make the task corpus: GLUE's and SuperGLUE's, their diagnostics and DPR
 * (the registry's tasks when the corpus was defined), a fixed list, so that a task registered
 * later (a researcher's own, with files beside GLUE's) does not change the tiny presets'
 * tokenizer and backbones, nor with them every other task's numbers and the CI baseline. Adding a
 * task here does: its files then enter the corpus.
 */
export const CORPUS_TASKS: readonly string[] = Object.freeze([
  "ax",
  "axb",
  "axg",
  "boolq",
  "cb",
  "cola",
  "copa",
  "dpr",
  "mnli",
  "mrpc",
  "multirc",
  "qnli",
  "qqp",
  "record",
  "rte",
  "rte_sg",
  "sst2",
  "stsb",
  "wic",
  "wnli",
  "wsc",
]);

/**
 * The splits of the task corpus (`benchmarks/pretrain.ts` `taskCorpus`: the text the tiny
 * presets' tokenizer and offline backbone are trained on) in `dataDir`: every train and test
 * split of a {@link CORPUS_TASKS} task whose files are all there, except a split the benchmark
 * scores, in task-name order. None means an empty corpus, known without reading a file.
 *
 * @param dataDir folder in the official layout
 * @returns `[task, split]` pairs
 */
export function corpusSplits(dataDir: string): [string, "train" | "test"][] {
  const out: [string, "train" | "test"][] = [];
  for (const name of [...CORPUS_TASKS].sort()) {
    const scored = new Set<string>(evalSplits(name));
    for (const split of ["train", "test"] as const) {
      if (scored.has(split)) continue;
      const files = getTask(name).files[split] ?? [];
      if (files.length === 0 || !files.every((f) => isFile(join(dataDir, f.path)))) continue;
      out.push([name, split]);
    }
  }
  return out;
}

/**
 * The note a malformed corpus file's error ends with: why a run of one benchmark read a file of
 * another (`benchmarks/pretrain.ts` `taskCorpus`, `benchmarks/cli.ts` `malformedTaskFiles`).
 *
 * @param dataDir the data folder
 * @returns the note, in parentheses
 */
export function corpusReadNote(dataDir: string): string {
  return "(read for the task corpus of the tiny presets' tokenizer and pretrained backbone: " +
    `the GLUE and SuperGLUE tasks' train and test files under ${dataDir}; fix or remove the file)`;
}
