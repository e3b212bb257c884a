/**
 * Download a checkpoint from the Hugging Face hub (or a mirror) into a local cache folder that
 * {@link loadHfFolder} reads: `config.json`, the optional `generation_config.json`,
 * `tokenizer.json` (or, for checkpoints published without one, `spiece.model`) and
 * `tokenizer_config.json`, and `model.safetensors` or
 * `model.safetensors.index.json` plus its shards, else (a repo with PyTorch weights only)
 * `pytorch_model.bin` or `pytorch_model.bin.index.json` plus its shards, from
 * `${endpoint}/${repoId}/resolve/${revision}/${file}`.
 *
 * Each file is downloaded to `<file>.part` beside it, checked (its size against the hub's
 * `Content-Length` or `Content-Range`, JSON, safetensors or PyTorch headers) and renamed into
 * place, so the cache never holds a half-written file under a final name. A transfer that breaks,
 * sends nothing for 30 s, or is answered HTTP 408, 429 or 5xx is retried after the hub's
 * `Retry-After` (else 1, 2, 4 s), resuming the part with an HTTP `Range` request; a part left by
 * a killed or failed run is resumed by the next (`model/http.ts` `fetchResumable`). Concurrent
 * downloads of one file take turns on a lock (`<repo folder>/.locks/`). Files already in the cache
 * are reused, optional files the hub answered HTTP 404 for are recorded (`.absent.json`) and not
 * asked for again, and a folder whose download completed is returned without touching the
 * network. `HF_ENDPOINT` overrides the endpoint,
 * `HF_TOKEN` (or `HUGGING_FACE_HUB_TOKEN`) is sent as a bearer token to the endpoint's origin
 * only (not to the CDN it redirects to), and `HF_HUB_OFFLINE=1` forbids network access.
 *
 * @module
 */
import { basename, dirname, join } from "node:path";
import {
  convertHint,
  parseIndex,
  TORCH_WEIGHTS_INDEX_NAME,
  TORCH_WEIGHTS_NAME,
  WEIGHTS_INDEX_NAME,
  WEIGHTS_NAME,
} from "./checkpoint.ts";
import { readSafetensorsHeader } from "./safetensors.ts";
import { readTorchBinHeader } from "./torch_bin.ts";
import {
  FILE_TEMPS,
  pathExists,
  removeStaleTemps,
  syncDir,
  withFileLock,
  writeFileAtomic,
} from "./fs.ts";
import {
  fetchResumable,
  type HttpGet,
  HttpStatusError,
  IDLE_TIMEOUT_MS,
  TransferError,
} from "./http.ts";

/** Options of {@link fetchHubModel}. */
export interface FetchHubOptions {
  /** Branch, tag or commit. Default "main". */
  revision?: string;
  /** Cache root. Default {@link defaultHubCacheDir}. */
  cacheDir?: string;
  /** Hub base URL. Default `HF_ENDPOINT` or https://huggingface.co. */
  endpoint?: string;
  /** Bearer token. Default `HF_TOKEN` or `HUGGING_FACE_HUB_TOKEN`. */
  token?: string;
  /** Re-download even when the cache is complete. */
  force?: boolean;
  /** The fetch implementation (tests inject one). Default the global fetch. */
  fetch?: typeof fetch;
  /** Progress messages (one line per downloaded file, and one per retry). */
  log?: (message: string) => void;
  /**
   * Extra attempts per file (each resuming the bytes already in `<file>.part`) when a transfer
   * breaks, goes idle or the hub answers 408, 429 or 5xx; default 3. The waits are
   * `retryDelayMs`'s (`model/http.ts`): the hub's `Retry-After`, else 1, 2, 4 s.
   */
  retries?: number;
  /** Waits between attempts (default a timer; tests record them). */
  sleep?: (ms: number) => Promise<void>;
  /**
   * A request is given up (and retried, resuming) when its response has not started, or its
   * body has sent nothing, for this long; default `IDLE_TIMEOUT_MS` (30 s).
   */
  idleTimeoutMs?: number;
}

/**
 * Optional files fetched when present. `spiece.model` (with `tokenizer_config.json`) is the
 * tokenizer of checkpoints published without `tokenizer.json` (google/t5-v1_1-*), converted on
 * load (`model/pretrained.ts` `loadFolderTokenizer`).
 */
export const OPTIONAL_FILES = [
  "generation_config.json",
  "tokenizer.json",
  "tokenizer_config.json",
  "spiece.model",
];

const COMPLETE_MARKER = ".complete.json";

/**
 * The optional files the hub answered HTTP 404 for, recorded in the revision's cache folder (as
 * huggingface_hub's `.no_exist/`) so that they are not asked for again: a repo without
 * `tokenizer.json` (google/t5-v1_1-*) would otherwise need the network on every
 * {@link fetchHubFiles} of it, and fail offline although its cache holds every file it has. The
 * record lasts as long as the folder (`force` removes it).
 */
const ABSENT_MARKER = ".absent.json";

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined; // no --allow-env
  }
}

/**
 * Default cache root: `$HYPERPROMPT_CACHE/hub`, else `$XDG_CACHE_HOME/hyperprompt-bench/hub`, else
 * `~/.cache/hyperprompt-bench/hub`: beside the data cache (`tasks/data.ts`) and the pretrained
 * backbones (`benchmarks/pretrain.ts`), so one folder holds everything the suite downloads.
 */
export function defaultHubCacheDir(): string {
  const own = env("HYPERPROMPT_CACHE");
  if (own) return join(own, "hub");
  const xdg = env("XDG_CACHE_HOME") ?? join(env("HOME") ?? ".", ".cache");
  return join(xdg, "hyperprompt-bench", "hub");
}

/**
 * Whether `id` has the form of a hub repo id, `name` or `org/name` (letters, digits, `_`, `.`,
 * `-`; no part made of dots only), as opposed to a path such as `./model` or `/data/t5`.
 */
export function isHubRepoId(id: string): boolean {
  return /^[\w.-]+(\/[\w.-]+)?$/.test(id) && !id.split("/").some((p) => /^\.+$/.test(p));
}

/**
 * The local folder a repo revision is cached in: `<cacheDir>/models--<org>--<name>/<revision>`.
 *
 * @throws Error when the repo id is not of the form `name` or `org/name`
 */
export function hubModelDir(cacheDir: string, repoId: string, revision = "main"): string {
  if (!isHubRepoId(repoId)) {
    throw new Error(`invalid hub repo id "${repoId}" (expected "name" or "org/name")`);
  }
  if (revision === "" || revision.includes("..")) {
    throw new Error(`invalid hub revision "${revision}"`);
  }
  return join(cacheDir, `models--${repoId.replace("/", "--")}`, encodeURIComponent(revision));
}

interface Ctx {
  repoId: string;
  revision: string;
  endpoint: string;
  dir: string;
  headers: Record<string, string>;
  fetchFn: typeof fetch;
  log?: (message: string) => void;
  retries: number;
  sleep?: (ms: number) => Promise<void>;
  idleMs: number;
  /** The optional files recorded as absent ({@link ABSENT_MARKER}), once read. */
  absent?: Set<string>;
  /** Whether the folder's stale temporaries of earlier versions were swept. */
  swept?: boolean;
}

/** The optional files the repo revision is recorded not to have ({@link ABSENT_MARKER}). */
async function absentFiles(ctx: Ctx): Promise<Set<string>> {
  if (ctx.absent === undefined) {
    const absent = new Set<string>();
    try {
      const m = JSON.parse(await Deno.readTextFile(join(ctx.dir, ABSENT_MARKER)));
      if (Array.isArray(m.files)) {
        for (const f of m.files) if (typeof f === "string") absent.add(f);
      }
    } catch {
      // No record (or an unreadable one): every file is asked for.
    }
    ctx.absent = absent;
  }
  return ctx.absent;
}

/**
 * Records that the hub answered 404 for the optional `file`, merged with the record on disk (a
 * concurrent writer's addition lost in a race costs one request later, nothing else).
 */
async function recordAbsent(ctx: Ctx, file: string): Promise<void> {
  ctx.absent = undefined;
  const absent = await absentFiles(ctx);
  absent.add(file);
  const { repoId, revision, endpoint } = ctx;
  await writeFileAtomic(
    join(ctx.dir, ABSENT_MARKER),
    JSON.stringify({ repoId, revision, endpoint, files: [...absent].sort() }) + "\n",
  );
}

function offlineError(ctx: Ctx, url: string, cause: unknown): Error {
  const why = cause instanceof Error ? cause.message : String(cause);
  return new Error(
    `Model "${ctx.repoId}" could not be fetched from ${ctx.endpoint} (${url}: ${why}). ` +
      `The hub is unreachable: you appear to be offline, or the endpoint is wrong. ` +
      `To use a local folder instead, pass the path of a folder that holds config.json, ` +
      `model.safetensors or pytorch_model.bin (as save_pretrained writes them, e.g. downloaded on ` +
      `another machine) and tokenizer.json (or spiece.model) ` +
      `in place of the hub id, or set HF_ENDPOINT to a reachable mirror.`,
    { cause },
  );
}

/**
 * GET a URL following up to 10 redirects by hand, so that the bearer token is sent only to the
 * hub's own origin (the hub redirects large files to a CDN with pre-signed URLs); `headers` (a
 * `Range`) go to every hop, and `signal` aborts whichever hop is in flight.
 */
function hubGet(ctx: Ctx): HttpGet {
  const origin = new URL(ctx.endpoint).origin;
  return async (url, headers, signal) => {
    let current = url;
    for (let hop = 0; hop <= 10; hop++) {
      const sameOrigin = new URL(current).origin === origin;
      const res = await ctx.fetchFn(current, {
        // identity: the sizes checked are those of the bytes written, and a Range counts them.
        headers: {
          "accept-encoding": "identity",
          ...headers,
          ...(sameOrigin ? ctx.headers : {}),
        },
        redirect: "manual",
        signal,
      });
      const location = res.headers.get("location");
      if (res.status < 300 || res.status >= 400 || location === null) return res;
      await res.body?.cancel();
      current = new URL(location, current).href;
    }
    throw new RedirectLoop(`too many redirects from ${url}`);
  };
}

/** More than 10 redirects: the hub is reachable, so not an offline error. */
class RedirectLoop extends Error {}

/** Where concurrent downloads of `file` take turns: `<repo folder>/.locks/<revision>--<file>`. */
function lockPath(ctx: Ctx, file: string): string {
  return join(dirname(ctx.dir), ".locks", `${basename(ctx.dir)}--${encodeURIComponent(file)}.lock`);
}

/** Checks a downloaded `file` (at `part`) by its kind; the error names the file, not the part. */
async function checkDownloaded(url: string, file: string, part: string): Promise<void> {
  if (file.endsWith(".json")) {
    try {
      JSON.parse(await Deno.readTextFile(part));
    } catch (e) {
      throw new Error(`${url}: downloaded ${file} is not valid JSON: ${(e as Error).message}`);
    }
  } else if (file.endsWith(".safetensors")) {
    try {
      await readSafetensorsHeader(part);
    } catch (e) {
      throw new Error(
        `${url}: downloaded ${file} is not a valid safetensors file: ${
          (e as Error).message.replaceAll(part, file)
        }`,
      );
    }
  } else if (file.endsWith(".bin")) {
    // The zip's directory and the pickle, or a legacy (torch < 1.6) file's pickles and storage
    // counts (names, dtypes, shapes; storages present and of their sizes), not the tensor data.
    try {
      await readTorchBinHeader(part);
    } catch (e) {
      throw new Error(
        `${url}: downloaded ${file} is not a valid PyTorch checkpoint: ${
          (e as Error).message.replaceAll(part, file)
        }`,
      );
    }
  }
}

/**
 * Download one file into the cache folder unless it is already there: into `<file>.part`
 * (resuming what a failed attempt or an earlier run left there), checked, then renamed into place.
 *
 * @returns false when the file is optional and the hub answers 404 (recorded, and not asked for
 *   again: {@link ABSENT_MARKER}) or answered it before
 */
async function download(ctx: Ctx, file: string, optional: boolean): Promise<boolean> {
  const dest = join(ctx.dir, file);
  if (await pathExists(dest)) return true;
  if (optional && (await absentFiles(ctx)).has(file)) return false;
  if (!ctx.swept) {
    // Temporaries of earlier versions (`<file>.tmp-<pid>-<hex>`) whose process is gone.
    ctx.swept = true;
    await removeStaleTemps(ctx.dir, FILE_TEMPS);
  }
  return await withFileLock(lockPath(ctx, file), async () => {
    // Another process may have finished (or found absent) the file while this one waited.
    if (await pathExists(dest)) return true;
    ctx.absent = undefined;
    if (optional && (await absentFiles(ctx)).has(file)) return false;
    return await downloadLocked(ctx, file, optional, dest);
  });
}

async function downloadLocked(
  ctx: Ctx,
  file: string,
  optional: boolean,
  dest: string,
): Promise<boolean> {
  const url = `${ctx.endpoint}/${ctx.repoId}/resolve/${encodeURIComponent(ctx.revision)}/${file}`;
  const part = `${dest}.part`;
  let result;
  try {
    result = await fetchResumable(url, part, {
      name: `${ctx.repoId}/${file}`,
      checkLength: true,
      ifRange: true,
      retries: ctx.retries,
      idleMs: ctx.idleMs,
      sleep: ctx.sleep,
      log: ctx.log,
      get: hubGet(ctx),
      verify: (path) => checkDownloaded(url, file, path),
    });
  } catch (e) {
    if (e instanceof HttpStatusError) {
      if (e.status === 404) {
        // The file is not there (any more): nothing to resume. Other statuses keep the part.
        await Deno.remove(part).catch(() => {});
        await Deno.remove(`${part}.etag`).catch(() => {});
      }
      if (e.status === 404 && optional) {
        await recordAbsent(ctx, file);
        return false;
      }
      const hint = e.status === 401 || e.status === 403
        ? "; the repo may be gated or private: set HF_TOKEN to an access token"
        : e.status === 404
        ? `; check the repo id "${ctx.repoId}" and revision "${ctx.revision}"`
        : "";
      throw new Error(
        `Model "${ctx.repoId}" could not be fetched: ${url} answered HTTP ${e.status}${hint}`,
        { cause: e },
      );
    }
    if (e instanceof TransferError && e.cause instanceof RedirectLoop) {
      throw new Error(`Model "${ctx.repoId}" could not be fetched: ${e.cause.message}`, {
        cause: e,
      });
    }
    if (e instanceof TransferError && e.message.startsWith(`${url}: download truncated`)) {
      throw new Error(`${e.message}; run again to resume from the ${file}.part kept`, {
        cause: e,
      });
    }
    // No connection, a reset, an idle transfer: after every retry.
    if (e instanceof TransferError) throw offlineError(ctx, url, e);
    throw e;
  }
  await Deno.rename(part, dest);
  // The new name survives a power cut before the completion marker names the file.
  await syncDir(dirname(dest));
  const resumed = result.resumedAt > 0 ? `, resumed at ${result.resumedAt}` : "";
  ctx.log?.(`fetched ${ctx.repoId}/${file} (${result.bytes} bytes${resumed})`);
  return true;
}

/** The download context of a repo revision: endpoint, cache folder, token, fetch. */
function hubContext(repoId: string, opts: FetchHubOptions): Ctx {
  const revision = opts.revision ?? "main";
  const endpoint = (opts.endpoint ?? env("HF_ENDPOINT") ?? "https://huggingface.co").replace(
    /\/+$/,
    "",
  );
  const dir = hubModelDir(opts.cacheDir ?? defaultHubCacheDir(), repoId, revision);
  const token = opts.token ?? env("HF_TOKEN") ?? env("HUGGING_FACE_HUB_TOKEN");
  return {
    repoId,
    revision,
    endpoint,
    dir,
    headers: token ? { authorization: `Bearer ${token}` } : {},
    fetchFn: opts.fetch ?? fetch,
    log: opts.log,
    retries: opts.retries ?? 3,
    sleep: opts.sleep,
    idleMs: opts.idleTimeoutMs ?? IDLE_TIMEOUT_MS,
  };
}

/** HF_HUB_OFFLINE=1 and `what` ("it is", or the files that are) not in the cache. */
function offlineModeError(ctx: Ctx, what: string): Error {
  return new Error(
    `Model "${ctx.repoId}" (revision "${ctx.revision}") could not be fetched: HF_HUB_OFFLINE=1 ` +
      `(offline mode) and ${what} not in the cache at ${ctx.dir}. Unset HF_HUB_OFFLINE, or use a ` +
      `local folder instead: pass the path of a folder holding config.json, model.safetensors ` +
      `(or pytorch_model.bin) and tokenizer.json (or spiece.model).`,
  );
}

/**
 * Downloads one format's weights: the unsharded `single` (unless `index` is already cached), else
 * `index` and the shards it names; adds what it downloaded to `files`.
 *
 * @returns false when the repo has neither `single` nor `index`
 */
async function downloadWeights(
  ctx: Ctx,
  single: string,
  index: string,
  files: string[],
): Promise<boolean> {
  const indexPath = join(ctx.dir, index);
  if (!(await pathExists(indexPath)) && await download(ctx, single, true)) {
    files.push(single);
    return true;
  }
  if (!(await download(ctx, index, true))) return false;
  files.push(index);
  const shards = parseIndex(JSON.parse(await Deno.readTextFile(indexPath)), indexPath);
  for (const shard of shards.keys()) {
    await download(ctx, shard, false);
    files.push(shard);
  }
  return true;
}

async function readComplete(dir: string): Promise<boolean> {
  try {
    const m = JSON.parse(await Deno.readTextFile(join(dir, COMPLETE_MARKER)));
    if (!Array.isArray(m.files)) return false;
    for (const f of m.files) {
      if (typeof f !== "string" || !(await pathExists(join(dir, f)))) return false;
    }
    return true;
  } catch {
    return false;
  }
}

/**
 * Fetch a T5 checkpoint from the hub into the local cache (or reuse the cached copy).
 *
 * @param repoId `org/name` (or a legacy `name`) on the hub
 * @param opts revision, cache folder, endpoint, token, fetch implementation
 * @returns the local folder, ready for `loadHfFolder`
 * @throws Error saying the model could not be fetched (offline, HTTP status, invalid file), and
 *   how to use a local folder instead when the hub is unreachable
 */
export async function fetchHubModel(repoId: string, opts: FetchHubOptions = {}): Promise<string> {
  const ctx = hubContext(repoId, opts);
  const { revision, endpoint, dir } = ctx;
  if (!opts.force && await readComplete(dir)) return dir;
  if (env("HF_HUB_OFFLINE") === "1") throw offlineModeError(ctx, "it is");
  if (opts.force) await Deno.remove(dir, { recursive: true }).catch(() => {});
  await Deno.mkdir(dir, { recursive: true });
  const files = ["config.json"];
  await download(ctx, "config.json", false);
  for (const f of OPTIONAL_FILES) if (await download(ctx, f, true)) files.push(f);
  // Safetensors first (as transformers), then PyTorch's weights (repos from before safetensors,
  // such as google/t5-v1_1-*, may have only those); each unsharded, else its index and shards.
  const weights = await downloadWeights(ctx, WEIGHTS_NAME, WEIGHTS_INDEX_NAME, files) ||
    await downloadWeights(ctx, TORCH_WEIGHTS_NAME, TORCH_WEIGHTS_INDEX_NAME, files);
  if (!weights) {
    throw new Error(
      `Model "${repoId}" (revision "${revision}") on ${endpoint} has none of ${WEIGHTS_NAME}, ` +
        `${WEIGHTS_INDEX_NAME}, ${TORCH_WEIGHTS_NAME} or ${TORCH_WEIGHTS_INDEX_NAME}; only ` +
        `safetensors and PyTorch checkpoints are read. If it has TensorFlow or Flax weights only, ` +
        convertHint(repoId, "<local folder>").replace(/^Convert/, "convert") +
        ` Then pass that folder in place of the hub id.`,
    );
  }
  // A temporary name of its own: a concurrent fetch of the same repo cannot rename it away.
  await writeFileAtomic(
    join(dir, COMPLETE_MARKER),
    JSON.stringify({ repoId, revision, endpoint, files }) + "\n",
  );
  return dir;
}

/** The files {@link fetchHubFiles} fetches: those it needs, and those it takes when present. */
export interface HubFiles {
  /** Files the repo must have (an HTTP 404 is an error), e.g. `["config.json"]`. */
  readonly required: readonly string[];
  /** Files fetched when the repo has them, e.g. `["tokenizer.json"]`. */
  readonly optional?: readonly string[];
}

/**
 * Fetches only some files of a hub repo (a random initialisation needs `config.json` and
 * `tokenizer.json`, not gigabytes of weights) into the folder {@link fetchHubModel} caches the
 * repo in, with the same atomic writes and checks. No completion marker is written, so a later
 * {@link fetchHubModel} of the same repo and revision reuses these files and downloads the rest.
 * When the cache already holds the repo complete, or every named file (an optional one the hub
 * answered HTTP 404 for before counts as held: the repo has none), nothing is requested, so a
 * repo fetched once is read offline too.
 *
 * @param repoId `org/name` (or a legacy `name`) on the hub
 * @param files the required and the optional files (plain names in the repo's top folder)
 * @param opts revision, cache folder, endpoint, token, fetch implementation (`force` ignored)
 * @returns the local folder, holding the required files and the optional ones the repo has
 * @throws Error for a file name that is not a plain name, or saying a file could not be fetched
 *   (offline, HTTP status, invalid file), and how to use a local folder instead
 * @example
 * ```ts ignore
 * import { join } from "node:path";
 * import { fetchHubFiles } from "./hub.ts";
 * const dir = await fetchHubFiles("google/t5-v1_1-small", {
 *   required: ["config.json"],
 *   optional: ["tokenizer.json"],
 * });
 * console.log(await Deno.readTextFile(join(dir, "config.json")));
 * ```
 */
export async function fetchHubFiles(
  repoId: string,
  files: HubFiles,
  opts: Omit<FetchHubOptions, "force"> = {},
): Promise<string> {
  const optional = files.optional ?? [];
  for (const f of [...files.required, ...optional]) {
    if (!/^[\w.-]+$/.test(f) || /^\.+$/.test(f)) {
      throw new Error(`fetchHubFiles: "${f}" is not a plain file name of the repo's top folder`);
    }
  }
  const ctx = hubContext(repoId, opts);
  const { dir } = ctx;
  if (await readComplete(dir)) return dir;
  // An optional file the hub answered 404 for before is not missing: the repo has none.
  const absent = await absentFiles(ctx);
  const missing = [];
  for (const f of [...files.required, ...optional]) {
    if (await pathExists(join(dir, f))) continue;
    if (!files.required.includes(f) && absent.has(f)) continue;
    missing.push(f);
  }
  if (missing.length === 0) return dir;
  if (env("HF_HUB_OFFLINE") === "1") {
    // Offline: what the cache holds of the optional files is what there is.
    const needed = missing.filter((f) => files.required.includes(f));
    if (needed.length === 0) return dir;
    throw offlineModeError(ctx, `${needed.join(", ")} ${needed.length === 1 ? "is" : "are"}`);
  }
  await Deno.mkdir(dir, { recursive: true });
  for (const f of missing) await download(ctx, f, !files.required.includes(f));
  return dir;
}
