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
 * place, so the cache never holds a half-written file under a final name. Its bytes are hashed
 * (sha256) as they stream in from byte 0 (a part resumed with `Range`, or settled by a 416, is
 * hashed whole once complete); when the hub named the file's sha256 (an LFS file: the
 * `X-Linked-Etag`, else the `ETag`, of the hub's own answers, when 64 hex digits), a part of
 * another sha256 is deleted and the download fails, naming the repo, the file and both digests.
 * The sha256 is recorded beside the file (`.<file>.sha256.json`, with its size and modification
 * time: `model/hash.ts` `recordSha256`), so `model/checkpoint.ts` `fileDigest` need not read the
 * file again. A transfer that breaks,
 * sends nothing for 30 s, or is answered HTTP 408, 429 or 5xx is retried after the hub's
 * `Retry-After` (else 1, 2, 4 s), resuming the part with an HTTP `Range` request; a part left by
 * a killed or failed run is resumed by the next (`model/http.ts` `fetchResumable`), only from the
 * URL (so the `HF_ENDPOINT`) and version (`ETag`, `Last-Modified`) that `<file>.part.json`
 * records; a part begun from another endpoint, of another version, or with no record (left by an
 * earlier version of this code) is downloaded again from byte 0, saying so. When the very
 * first request of a call cannot connect at all (a DNS failure, a refused connection: offline), the
 * call gives up at once, without the retries' waits, saying the hub is unreachable. Concurrent
 * downloads of one file take turns on a lock file (`<repo folder>/.locks/<revision>--<file>.lock`),
 * which its holder removes when its download is done. Files already in the cache are reused, and a
 * folder whose download completed is returned without touching the network. Optional files the hub
 * answered HTTP 404 for are recorded (`.absent.json`, each with the commit the hub named in
 * `X-Repo-Commit` and the time) and not asked for again while the record holds: for a revision
 * that is a commit sha, forever; for a branch or tag (`main`), while the hub names the same commit
 * (a call that learns of a new commit asks again) or, before the call has asked the hub anything,
 * for {@link ABSENT_MAX_AGE_MS} (a day) after the check; after that the file is asked for again
 * (a completed folder too), and when the hub cannot be reached the record stands; when it answers
 * HTTP 401 or 403 instead (the repo has become gated or private, or the token is refused), the
 * call fails, saying so, how to pass a token, and that `HF_HUB_OFFLINE=1` uses the cache.
 * `HF_ENDPOINT` overrides the endpoint, `HF_TOKEN` (or `HUGGING_FACE_HUB_TOKEN`) is sent as a
 * bearer token to the endpoint's origin only (not to the CDN it redirects to), and
 * `HF_HUB_OFFLINE=1` forbids network access (also `true`, `yes`, `on`, or `TRANSFORMERS_OFFLINE`
 * when `HF_HUB_OFFLINE` is unset: {@link hubOfflineSetting}).
 *
 * @module
 */
import { createHash } from "node:crypto";
import { basename, dirname, join } from "node:path";
import {
  convertHint,
  parseIndex,
  TORCH_WEIGHTS_INDEX_NAME,
  TORCH_WEIGHTS_NAME,
  WEIGHTS_INDEX_NAME,
  WEIGHTS_NAME,
} from "./checkpoint.ts";
import { readEnv } from "./env.ts";
import { parseJsonFile } from "./json.ts";
import { recordSha256, sha256File } from "./hash.ts";
import { readSafetensorsHeader } from "./safetensors.ts";
import { readTorchBinHeader } from "./torch_bin.ts";
import {
  FILE_TEMPS,
  isFileSync,
  pathExists,
  removeStaleTemps,
  syncDir,
  withFileLock,
  writeFileAtomic,
} from "./fs.ts";
import {
  ConnectionError,
  fetchResumable,
  HtmlPageError,
  type HttpGet,
  HttpStatusError,
  IDLE_TIMEOUT_MS,
  RedirectLimitError,
  removePart,
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
 * huggingface_hub's `.no_exist/<commit>/`) so that they are not asked for again: a repo without
 * `tokenizer.json` (google/t5-v1_1-*) would otherwise need the network on every
 * {@link fetchHubFiles} of it, and fail offline although its cache holds every file it has. Each
 * file's entry names the commit the 404 was of (the hub's `X-Repo-Commit`) and when it came
 * (`{files, checks: {<file>: {commit, at}}}`); how long it holds: {@link absence}. `force` removes
 * the record with the folder.
 */
const ABSENT_MARKER = ".absent.json";

/**
 * How long a branch's or tag's record that the hub has no such file ({@link ABSENT_MARKER}) is
 * trusted when the call has not learnt the revision's current commit: one day. A file added to
 * `main` later is then fetched at most a day after the check (at once by a call that downloads
 * anything else first, which names the new commit).
 */
export const ABSENT_MAX_AGE_MS = 24 * 3600 * 1000;

/**
 * Whether `file` is one of the weights files {@link fetchHubModel} looks for (optional each, one
 * format needed). A function: `./checkpoint.ts` imports this module back, so its constants are
 * not yet set while this module is first evaluated.
 */
function isWeightsFile(file: string): boolean {
  return [WEIGHTS_NAME, WEIGHTS_INDEX_NAME, TORCH_WEIGHTS_NAME, TORCH_WEIGHTS_INDEX_NAME]
    .includes(file);
}

/** A revision that is a full commit sha: its files never change. */
function isCommitSha(revision: string): boolean {
  return /^[0-9a-f]{40}$/.test(revision);
}

/** One file's entry in {@link ABSENT_MARKER}: the commit the 404 was of (if named) and when. */
interface AbsentCheck {
  commit?: string;
  at?: number;
  /** The endpoint that answered the 404 (a record of another endpoint is stale). */
  endpoint?: string;
}

/** An environment variable's value; unset, empty and unreadable (no `--allow-env`) are alike. */
function env(name: string): string | undefined {
  return readEnv(name) || undefined;
}

/**
 * Offline mode as huggingface_hub reads it: `HF_HUB_OFFLINE`, else (unset or empty)
 * `TRANSFORMERS_OFFLINE`, on when its value is `1`, `on`, `yes` or `true` in any case (another
 * value, e.g. `0`, is off). The variable and value are kept for the messages.
 *
 * @returns the setting that turned offline mode on, or undefined when it is off
 * @example
 * ```ts
 * import { hubOfflineSetting } from "./hub.ts";
 * Deno.env.set("HF_HUB_OFFLINE", "True");
 * console.assert(hubOfflineSetting() === "HF_HUB_OFFLINE=True");
 * Deno.env.delete("HF_HUB_OFFLINE");
 * ```
 */
export function hubOfflineSetting(): string | undefined {
  const name = env("HF_HUB_OFFLINE") !== undefined ? "HF_HUB_OFFLINE" : "TRANSFORMERS_OFFLINE";
  const value = env(name);
  // As its `_is_true`: the value itself, upper-cased, nothing trimmed (" 1" is not on).
  if (value === undefined || !/^(1|on|yes|true)$/i.test(value)) return undefined;
  return `${name}=${value}`;
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

/**
 * The cache folder every download of this module ({@link fetchHubModel}, {@link fetchHubFiles})
 * puts a repo revision in: {@link hubModelDir} of `opts.cacheDir` (default
 * {@link defaultHubCacheDir}) and `opts.revision` (default `main`). Nothing is read or created.
 *
 * @param repoId `org/name` (or a legacy `name`)
 * @param opts cache folder and revision, as given to the downloads
 * @returns the folder, whether or not it exists
 * @throws Error for an invalid repo id or revision ({@link hubModelDir})
 */
export function hubCacheFolder(
  repoId: string,
  opts: Pick<FetchHubOptions, "cacheDir" | "revision"> = {},
): string {
  return hubModelDir(opts.cacheDir ?? defaultHubCacheDir(), repoId, opts.revision);
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
  absent?: Map<string, AbsentCheck>;
  /** Whether the folder's stale temporaries of earlier versions were swept. */
  swept?: boolean;
  /** Whether the hub (or the CDN it redirects to) has answered any request of this call. */
  reached?: boolean;
  /** The revision's commit, as the hub's last `X-Repo-Commit` of this call named it. */
  commit?: string;
  /**
   * Optional files skipped on a record trusted for its age alone (the commit not yet known): asked
   * for again at the end of the call if the commit learnt meanwhile is not the record's.
   */
  trusted: Set<string>;
}

/** The optional files the repo revision is recorded not to have ({@link ABSENT_MARKER}). */
async function absentFiles(ctx: Ctx): Promise<Map<string, AbsentCheck>> {
  if (ctx.absent === undefined) {
    const absent = new Map<string, AbsentCheck>();
    try {
      const m = JSON.parse(await Deno.readTextFile(join(ctx.dir, ABSENT_MARKER)));
      const checks = typeof m.checks === "object" && m.checks !== null ? m.checks : {};
      if (Array.isArray(m.files)) {
        for (const f of m.files) {
          if (typeof f !== "string") continue;
          // A record of an earlier version has no checks: stale, unless the revision is pinned.
          const c = typeof checks[f] === "object" && checks[f] !== null ? checks[f] : {};
          const at = typeof c.at === "string" ? Date.parse(c.at) : NaN;
          // Each check's endpoint; a record of an earlier version has the record's alone.
          const endpoint = typeof c.endpoint === "string"
            ? c.endpoint
            : typeof m.endpoint === "string"
            ? m.endpoint
            : undefined;
          absent.set(f, {
            commit: typeof c.commit === "string" ? c.commit : undefined,
            at: Number.isFinite(at) ? at : undefined,
            endpoint,
          });
        }
      }
    } catch {
      // No record (or an unreadable one): every file is asked for.
    }
    ctx.absent = absent;
  }
  return ctx.absent;
}

/**
 * Whether the record that the repo has no `file` holds: `"none"` (no record), `"held"` (the
 * revision is a commit sha, or the hub named the record's commit in this call), `"renew"` (held
 * so, but older than {@link ABSENT_MAX_AGE_MS}: its time is to be renewed), `"trusted"` (the
 * commit is not known yet and the check is younger than that) or `"stale"` (another commit, or
 * older, or another endpoint's answer: a mirror still syncing, or a wrong `HF_ENDPOINT` since
 * corrected): the file is asked for again.
 */
async function absence(
  ctx: Ctx,
  file: string,
): Promise<"none" | "held" | "renew" | "trusted" | "stale"> {
  const check = (await absentFiles(ctx)).get(file);
  if (check === undefined) return "none";
  if (check.endpoint !== undefined && check.endpoint !== ctx.endpoint) return "stale";
  if (isCommitSha(ctx.revision)) return "held";
  const age = check.at === undefined ? Infinity : Date.now() - check.at;
  const fresh = age >= 0 && age < ABSENT_MAX_AGE_MS;
  if (ctx.commit !== undefined && check.commit !== undefined) {
    return check.commit !== ctx.commit ? "stale" : fresh ? "held" : "renew";
  }
  return fresh ? "trusted" : "stale";
}

/**
 * Records that the hub answered 404 for the optional `file` (of the commit it named, now), or
 * with `found` that it now has the file, merged with the record on disk (a concurrent writer's
 * change lost in a race costs one request later, nothing else).
 */
async function recordAbsent(ctx: Ctx, file: string, found = false): Promise<void> {
  ctx.absent = undefined;
  const absent = await absentFiles(ctx);
  if (found) absent.delete(file);
  else absent.set(file, { commit: ctx.commit, at: Date.now(), endpoint: ctx.endpoint });
  const { repoId, revision, endpoint } = ctx;
  const files = [...absent.keys()].sort();
  const checks = Object.fromEntries(files.map((f) => {
    const { commit, at, endpoint } = absent.get(f)!;
    return [f, { commit, at: at === undefined ? undefined : new Date(at).toISOString(), endpoint }];
  }));
  await writeFileAtomic(
    join(ctx.dir, ABSENT_MARKER),
    JSON.stringify({ repoId, revision, endpoint, files, checks }) + "\n",
  );
}

/**
 * The hub could not be reached (after the retries, or at once: {@link ConnectionError}), or
 * `HF_HUB_OFFLINE=1` forbids asking it for a file the cache lacks: the message says so and how
 * to use a local folder instead. `loadT5` throws it too (its message saying that the source was
 * taken as a hub id), so a caller can tell "offline" from a bad checkpoint (`CheckpointError`).
 */
export class HubOfflineError extends Error {
  /**
   * The error, named `HubOfflineError`.
   *
   * @param message what could not be fetched, and how to go on
   * @param options the error that caused it
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "HubOfflineError";
  }
}

function offlineError(ctx: Ctx, url: string, cause: unknown): Error {
  const why = cause instanceof Error ? cause.message : String(cause);
  return new HubOfflineError(
    `Model "${ctx.repoId}" could not be fetched from ${ctx.endpoint} (${url}: ${why}). ` +
      `The hub is unreachable: you appear to be offline, or the endpoint is wrong. ` +
      `To use a local folder instead, pass the path of a folder that holds config.json, ` +
      `model.safetensors or pytorch_model.bin (as save_pretrained writes them, e.g. downloaded on ` +
      `another machine) and tokenizer.json (or spiece.model) ` +
      `in place of the hub id, or set HF_ENDPOINT to a reachable mirror.${snapshotNote(ctx)}`,
    { cause },
  );
}

/**
 * The snapshot folder of `repoId` at `revision` in a Hugging Face (transformers) cache, which
 * this module does not read (its own cache keeps one folder per revision, {@link hubModelDir}):
 * `<root>/models--<org>--<name>/snapshots/<commit>/` holding `config.json`, weights
 * (safetensors or `pytorch_model.bin`, single or indexed) and a tokenizer (`tokenizer.json` or
 * `spiece.model`), the commit being `revision` itself (40 hex digits) or what
 * `refs/<revision>` names. Looked for under the roots `roots` gives, then huggingface_hub's own:
 * every one that is set of `TRANSFORMERS_CACHE`, `HF_HUB_CACHE`, `HUGGINGFACE_HUB_CACHE`, and
 * `$HF_HOME/hub`, else `~/.cache/huggingface/hub` (`XDG_CACHE_HOME` in place of `~/.cache`
 * when set; the home folder `HOME`, else `USERPROFILE`).
 *
 * @param repoId `org/name` (or a legacy `name`)
 * @param revision a branch, tag or commit
 * @param roots other cache roots to look in first (e.g. the folder a caller gave as its cache)
 * @returns the snapshot folder, or undefined when no root has one with a `config.json`
 */
export function transformersSnapshot(
  repoId: string,
  revision: string,
  roots: readonly string[] = [],
): string | undefined {
  const home = env("HOME") ?? env("USERPROFILE");
  const cache = env("XDG_CACHE_HOME") ?? (home === undefined ? undefined : join(home, ".cache"));
  const hfHome = env("HF_HOME") ?? (cache === undefined ? undefined : join(cache, "huggingface"));
  // Every root a Hugging Face library may have written to: HF_HUB_CACHE, its legacy names
  // (transformers' TRANSFORMERS_CACHE takes precedence in transformers), then HF_HOME's hub.
  const own = [
    env("TRANSFORMERS_CACHE"),
    env("HF_HUB_CACHE"),
    env("HUGGINGFACE_HUB_CACHE"),
    hfHome === undefined ? undefined : join(hfHome, "hub"),
  ].filter((r): r is string => r !== undefined);
  for (const root of [...new Set([...roots, ...own])]) {
    const repo = join(root, `models--${repoId.replace("/", "--")}`);
    let commit = /^[0-9a-f]{40}$/.test(revision) ? revision : undefined;
    if (commit === undefined) {
      try {
        commit = Deno.readTextFileSync(join(repo, "refs", revision)).trim();
      } catch {
        continue;
      }
    }
    if (!/^[0-9a-f]{40}$/.test(commit)) continue;
    const snapshot = join(repo, "snapshots", commit);
    // A loadable folder: config.json, weights and a tokenizer (AutoConfig alone leaves a snapshot
    // of config.json only).
    const has = (name: string) => isFileSync(join(snapshot, name));
    const weights = [WEIGHTS_NAME, WEIGHTS_INDEX_NAME, TORCH_WEIGHTS_NAME, TORCH_WEIGHTS_INDEX_NAME]
      .some(has);
    if (has("config.json") && weights && (has("tokenizer.json") || has("spiece.model"))) {
      return snapshot;
    }
  }
  return undefined;
}

/** " The transformers cache holds …" when {@link transformersSnapshot} finds one, else "". */
function snapshotNote(ctx: Ctx): string {
  const snapshot = transformersSnapshot(ctx.repoId, ctx.revision, [dirname(dirname(ctx.dir))]);
  return snapshot === undefined
    ? ""
    : ` A Hugging Face (transformers) cache holds this revision at ${snapshot}: pass that ` +
      `folder in place of the hub id (it loads as a local folder).`;
}

/**
 * GET a URL following up to 10 redirects by hand, so that the bearer token is sent only to the
 * hub's own origin (the hub redirects large files to a CDN with pre-signed URLs); `headers` (a
 * `Range`) go to every hop, and `signal` aborts whichever hop is in flight.
 */
function hubGet(ctx: Ctx, digest?: DownloadDigest): HttpGet {
  const origin = new URL(ctx.endpoint).origin;
  return async (url, headers, signal) => {
    // What this request learns replaces what an earlier attempt learnt.
    const attempt = digest === undefined ? undefined : {};
    if (digest !== undefined) {
      digest.expected = undefined;
      digest.streamed = undefined;
      digest.attempt = attempt;
    }
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
      ctx.reached = true;
      // The commit the revision resolves to (the hub's own answers name it, the CDN's do not).
      const commit = sameOrigin ? res.headers.get("x-repo-commit") : null;
      if (commit !== null && isCommitSha(commit)) ctx.commit = commit;
      if (digest !== undefined && sameOrigin) {
        digest.expected = lfsSha256(res.headers) ?? digest.expected;
      }
      const location = res.headers.get("location");
      if (res.status < 300 || res.status >= 400 || location === null) {
        // A whole body (from byte 0) is hashed as it streams; a 206's is only the part's tail.
        return digest !== undefined && res.status === 200 && res.body !== null
          ? hashingResponse(res, res.body, digest, attempt!)
          : res;
      }
      await res.body?.cancel();
      current = new URL(location, current).href;
    }
    throw new RedirectLoop(`too many redirects from ${url}`);
  };
}

/**
 * What one download learns of its file's sha256 (reset by each request, so it is the last
 * attempt's: the one whose bytes completed the part).
 */
interface DownloadDigest {
  /** The sha256 the hub named for the file ({@link lfsSha256}), if any. */
  expected?: string;
  /** The sha256 and size of a whole (200) body, once it has streamed to its end. */
  streamed?: { sha256: string; bytes: number };
  /** The request the record is of (a body of an earlier one that ends late is not taken). */
  attempt?: object;
}

/**
 * The sha256 the hub names for an LFS file: its `X-Linked-Etag`, else its `ETag` (as
 * huggingface_hub reads them), with a `W/` prefix and quotes taken off, when that is 64 hex
 * digits. A file kept in git has the 40-digit sha1 of its git blob there instead: none.
 */
function lfsSha256(headers: Headers): string | undefined {
  const raw = headers.get("x-linked-etag") ?? headers.get("etag");
  if (raw === null) return undefined;
  const v = raw.trim().replace(/^W\//, "").replace(/^"(.*)"$/, "$1").toLowerCase();
  return /^[0-9a-f]{64}$/.test(v) ? v : undefined;
}

/**
 * `res` with its body hashed as it is read: once the body has ended, `digest.streamed` holds its
 * sha256 and size (unless a later request has begun meanwhile).
 */
function hashingResponse(
  res: Response,
  body: ReadableStream<Uint8Array>,
  digest: DownloadDigest,
  attempt: object,
): Response {
  const h = createHash("sha256");
  let bytes = 0;
  const hashed = body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, out) {
        h.update(chunk);
        bytes += chunk.length;
        out.enqueue(chunk);
      },
      flush() {
        if (digest.attempt === attempt) digest.streamed = { sha256: h.digest("hex"), bytes };
      },
    }),
  );
  return new Response(hashed, {
    status: res.status,
    statusText: res.statusText,
    headers: res.headers,
  });
}

/**
 * More than 10 redirects: the hub is reachable, so not an offline error; a redirect limit, so
 * not retried (`http.ts` {@link RedirectLimitError}).
 */
class RedirectLoop extends RedirectLimitError {}

/**
 * Where concurrent downloads of `file` take turns: `<repo folder>/.locks/<revision>--<file>.lock`,
 * a dedicated lock file that its holder removes after use (`model/fs.ts` `withFileLock`).
 */
function lockPath(ctx: Ctx, file: string): string {
  return join(dirname(ctx.dir), ".locks", `${basename(ctx.dir)}--${encodeURIComponent(file)}.lock`);
}

/** Checks a downloaded `file` (at `part`) by its kind; the error names the file, not the part. */
async function checkDownloaded(url: string, file: string, part: string): Promise<void> {
  if (file.endsWith(".json")) {
    let json: unknown;
    try {
      json = parseJsonFile(await Deno.readTextFile(part), file);
    } catch (e) {
      // "<file>:<line>:<column>: invalid JSON: <what>", one line (V8's own quotes the text).
      throw new Error(`${url}: downloaded ${(e as Error).message}`);
    }
    // A sharded index is read for its shard names right after: one it refuses (a name with a
    // path, `../x`) was renamed into place first, so every later call met the cached file and
    // never asked the hub again (h382). Refused here, it is not kept.
    if (file.endsWith(".index.json")) {
      try {
        parseIndex(json, file);
      } catch (e) {
        throw new Error(`${url}: downloaded ${(e as Error).message}`);
      }
    }
    return;
  }
  // A weights file: its header (safetensors), or the zip's directory and the pickle, or a legacy
  // (torch < 1.6) file's pickles and storage counts (.bin: names, dtypes, shapes; storages present
  // and of their sizes); not the tensor data.
  const weights = file.endsWith(".safetensors")
    ? { read: readSafetensorsHeader, kind: "safetensors file" }
    : file.endsWith(".bin")
    ? { read: readTorchBinHeader, kind: "PyTorch checkpoint" }
    : undefined;
  if (weights === undefined) return;
  try {
    await weights.read(part);
  } catch (e) {
    throw new Error(
      `${url}: downloaded ${file} is not a valid ${weights.kind}: ${
        (e as Error).message.replaceAll(part, file)
      }`,
    );
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
  // Whether a recorded 404 holds: skipped, or (trusted for its age) skipped until the call learns
  // the commit. Not weights: an index fetched after the others would come without its shards.
  const recorded = async () => {
    const a = optional ? await absence(ctx, file) : "none";
    if (a === "trusted" && !isWeightsFile(file)) ctx.trusted.add(file);
    // The hub named the commit the 404 was of: the record is as good as a new check.
    if (a === "renew") await recordAbsent(ctx, file);
    return a === "held" || a === "renew" || a === "trusted";
  };
  if (await recorded()) return false;
  if (!ctx.swept) {
    // Temporaries of earlier versions (`<file>.tmp-<pid>-<hex>`) whose process is gone.
    ctx.swept = true;
    await removeStaleTemps(ctx.dir, FILE_TEMPS);
  }
  return await withFileLock(lockPath(ctx, file), async () => {
    // Another process may have finished (or found absent) the file while this one waited.
    if (await pathExists(dest)) return true;
    ctx.absent = undefined;
    if (await recorded()) return false;
    const stale = optional && (await absence(ctx, file)) === "stale";
    try {
      const got = await downloadLocked(ctx, file, optional, dest);
      if (got && stale) await recordAbsent(ctx, file, true); // added since the 404
      return got;
    } catch (e) {
      if (!stale) throw e;
      const status = e instanceof Error && e.cause instanceof HttpStatusError
        ? e.cause.status
        : undefined;
      if (status === 401 || status === 403) {
        // The hub answered, refusing access: the repo has become gated or private (or the token
        // was revoked). Not taken for an absence: the user is told, and how to go on.
        const at = (await absentFiles(ctx)).get(file)?.commit;
        throw new Error(
          `${(e as Error).message}. It was asked for again because the hub had answered 404 ` +
            `for it${at ? ` at commit ${at}` : ""} (recorded in ${
              join(ctx.dir, ABSENT_MARKER)
            }); ` +
            `to use the files cached in ${ctx.dir} without asking the hub, set HF_HUB_OFFLINE=1`,
          { cause: e },
        );
      }
      // Only re-checking an old record of a 404: the hub unreachable (or failing, or sending an
      // invalid file) does not fail a call the cache could answer; the record stands.
      const why = e instanceof HubOfflineError ? "hub unreachable" : (e as Error).message;
      ctx.log?.(`${ctx.repoId}/${file}: not re-checked (${why}); the hub had none`);
      return false;
    }
  }, { remove: true });
}

/**
 * The optional files skipped on a record trusted for its age whose commit the call has since
 * learnt is not the record's: asked for again; returns those the repo now has.
 */
async function recheckTrusted(ctx: Ctx): Promise<string[]> {
  const got: string[] = [];
  const trusted = [...ctx.trusted];
  ctx.trusted.clear();
  if (ctx.commit === undefined) return got;
  for (const f of trusted) if (await download(ctx, f, true)) got.push(f);
  return got;
}

async function downloadLocked(
  ctx: Ctx,
  file: string,
  optional: boolean,
  dest: string,
): Promise<boolean> {
  const url = `${ctx.endpoint}/${ctx.repoId}/resolve/${encodeURIComponent(ctx.revision)}/${file}`;
  const part = `${dest}.part`;
  const digest: DownloadDigest = {};
  let sha256 = "";
  let result;
  try {
    result = await fetchResumable(url, part, {
      name: `${ctx.repoId}/${file}`,
      checkLength: true,
      // The part's record `<file>.part.json` (the URL and ETag/Last-Modified of its bytes): a
      // part of another URL (i.e. of another HF_ENDPOINT), with no record (as parts of earlier
      // versions of this code), or answered with another ETag or Last-Modified, or with one that
      // only the record or only the answer has, restarts (`http.ts` changedSource). ifRange
      // (which implies the record) adds: the record's strong ETag is sent as If-Range, and a
      // 416 restarts when the record has no strong ETag.
      ifRange: true,
      retries: ctx.retries,
      idleMs: ctx.idleMs,
      sleep: ctx.sleep,
      log: ctx.log,
      get: hubGet(ctx, digest),
      // Offline: the call's first request cannot connect; the retries' waits would only delay
      // the message. Once anything has answered, every failure is retried.
      noRetry: (e) => e instanceof ConnectionError && !ctx.reached,
      verify: async (path, bytes) => {
        await checkDownloaded(url, file, path);
        // The streamed hash when the part is that body, else (resumed, or settled by a 416) the
        // part's bytes read again.
        const s = digest.streamed;
        sha256 = s !== undefined && s.bytes === bytes ? s.sha256 : await sha256File(path);
        if (digest.expected !== undefined && sha256 !== digest.expected) {
          throw new Error(
            `Model "${ctx.repoId}": ${file} downloaded from ${url} has sha256 ${sha256}, but the ` +
              `hub names ${digest.expected} (its X-Linked-Etag or ETag): the download is corrupt ` +
              `and was deleted; run again to download it again`,
          );
        }
      },
    });
  } catch (e) {
    if (e instanceof HttpStatusError) {
      if (e.status === 404) {
        // The file is not there (any more): nothing to resume. Other statuses keep the part.
        await removePart(part);
      }
      if (e.status === 404 && optional) {
        await recordAbsent(ctx, file);
        return false;
      }
      const hint = e.status === 401 || e.status === 403
        ? ctx.headers.authorization === undefined
          ? "; the repo may be gated or private: set HF_TOKEN to an access token that has " +
            "access to it"
          : "; the repo may be gated or private, and the access token sent (HF_TOKEN, or the " +
            "token option) was refused or has no access to it"
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
    if (e instanceof HtmlPageError) {
      throw new Error(`Model "${ctx.repoId}": ${file} could not be fetched: ${e.message}`, {
        cause: e,
      });
    }
    // The hub answered this call, then a transfer broke off or stalled (not a connection that
    // could not be made: the network gone), after every retry: not offline, and the part is kept
    // for the next run to resume.
    if (e instanceof TransferError && !(e instanceof ConnectionError) && ctx.reached) {
      const kept = await Deno.stat(part).then((s) => s.size, () => 0);
      throw new Error(
        `Model "${ctx.repoId}": ${file} could not be fetched from ${url}: the hub answered, but ` +
          `the transfer failed after ${ctx.retries} ${ctx.retries === 1 ? "retry" : "retries"} ` +
          `(${e.message})${
            kept > 0
              ? `; the ${kept} bytes received are kept in ${part}: run again to resume from there`
              : "; run again"
          }`,
        { cause: e },
      );
    }
    // No connection: after every retry, or at once when nothing has answered in this call.
    if (e instanceof TransferError) throw offlineError(ctx, url, e);
    throw e;
  }
  await Deno.rename(part, dest);
  // The new name survives a power cut before the completion marker names the file.
  await syncDir(dirname(dest));
  // After the rename (which keeps the modification time recorded): a crash before leaves no
  // record, and the file is hashed when its digest is asked for.
  await recordSha256(dest, sha256, digest.expected !== undefined);
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
  const dir = hubCacheFolder(repoId, { ...opts, revision });
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
    trusted: new Set(),
  };
}

/**
 * Offline mode (`setting`, e.g. `HF_HUB_OFFLINE=1`) and `what` ("it is", or the files that are)
 * not in the cache.
 */
function offlineModeError(ctx: Ctx, what: string, setting: string): Error {
  const variable = setting.slice(0, setting.indexOf("="));
  return new HubOfflineError(
    `Model "${ctx.repoId}" (revision "${ctx.revision}") could not be fetched: ${setting} ` +
      `(offline mode) and ${what} not in the cache at ${ctx.dir}. Unset ${variable}, or use a ` +
      `local folder instead: pass the path of a folder holding config.json, model.safetensors ` +
      `(or pytorch_model.bin) and tokenizer.json (or spiece.model).${snapshotNote(ctx)}`,
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

/** Whether a record of an optional file's 404 is {@link absence} `"stale"`. */
async function staleAbsence(ctx: Ctx): Promise<boolean> {
  for (const f of (await absentFiles(ctx)).keys()) {
    if ((await absence(ctx, f)) === "stale") return true;
  }
  return false;
}

/**
 * Whether a hub cache folder ({@link hubCacheFolder}) holds a completed {@link fetchHubModel}
 * download: its completion record, and every file the record lists (`config.json` and the
 * weights among them). Such a folder is what the loader reads: {@link fetchHubModel} returns it
 * without downloading weights again. Reads the folder only (synchronously: a small file and a
 * few `stat`s); never the network.
 *
 * @param dir the cache folder
 * @returns true when the download completed and its files are all there
 */
export function hubDownloadComplete(dir: string): boolean {
  try {
    const m = JSON.parse(Deno.readTextFileSync(join(dir, COMPLETE_MARKER)));
    if (!Array.isArray(m.files)) return false;
    for (const f of m.files) {
      if (typeof f !== "string") return false;
      Deno.statSync(join(dir, f));
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
 * @throws Error saying the model could not be fetched (HTTP status, invalid file); a
 *   {@link HubOfflineError} when the hub is unreachable or `HF_HUB_OFFLINE=1` and the cache lacks
 *   it, saying how to use a local folder instead
 */
export async function fetchHubModel(repoId: string, opts: FetchHubOptions = {}): Promise<string> {
  const ctx = hubContext(repoId, opts);
  const { revision, endpoint, dir } = ctx;
  const offline = hubOfflineSetting();
  // Complete, unless a record of an optional file's 404 is due to be checked again (offline mode
  // takes what the folder holds).
  if (!opts.force && hubDownloadComplete(dir) && (offline || !(await staleAbsence(ctx)))) {
    return dir;
  }
  if (offline) throw offlineModeError(ctx, "it is", offline);
  if (opts.force) await Deno.remove(dir, { recursive: true }).catch(() => {});
  await Deno.mkdir(dir, { recursive: true });
  const files = ["config.json"];
  await download(ctx, "config.json", false);
  for (const f of OPTIONAL_FILES) if (await download(ctx, f, true)) files.push(f);
  // Safetensors first (as transformers), then PyTorch's weights (repos from before safetensors,
  // such as google/t5-v1_1-*, may have only those); each unsharded, else its index and shards.
  const weights = await downloadWeights(ctx, WEIGHTS_NAME, WEIGHTS_INDEX_NAME, files) ||
    await downloadWeights(ctx, TORCH_WEIGHTS_NAME, TORCH_WEIGHTS_INDEX_NAME, files);
  // The optional files skipped before the call learnt the commit, if it is not the record's.
  files.push(...await recheckTrusted(ctx));
  if (!weights) {
    // Some of them may be a recorded 404 not asked for again in this call: say so, and how.
    const recorded = [...(await absentFiles(ctx)).entries()].filter(([f]) => isWeightsFile(f));
    const record = recorded.length === 0
      ? ""
      : ` (${
        recorded.map(([f, c]) =>
          `${f}: HTTP 404${c.at === undefined ? "" : ` at ${new Date(c.at).toISOString()}`}`
        ).join(", ")
      }, recorded in ${join(dir, ABSENT_MARKER)} and not asked for again for a day unless the ` +
        `hub names another commit: delete that file to ask again)`;
    throw new Error(
      `Model "${repoId}" (revision "${revision}") on ${endpoint} has none of ${WEIGHTS_NAME}, ` +
        `${WEIGHTS_INDEX_NAME}, ${TORCH_WEIGHTS_NAME} or ${TORCH_WEIGHTS_INDEX_NAME}${record}; ` +
        `only safetensors and PyTorch checkpoints are read. If it has TensorFlow or Flax weights ` +
        `only, ` + convertHint(repoId, "<local folder>").replace(/^Convert/, "convert") +
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
 * answered HTTP 404 for counts as held while the record holds, as the module's documentation
 * says: the repo has none), nothing is requested, so a repo fetched once is read offline too.
 *
 * @param repoId `org/name` (or a legacy `name`) on the hub
 * @param files the required and the optional files (plain names in the repo's top folder)
 * @param opts revision, cache folder, endpoint, token, fetch implementation (`force` ignored)
 * @returns the local folder, holding the required files and the optional ones the repo has
 * @throws Error for a file name that is not a plain name, or saying a file could not be fetched
 *   (HTTP status, invalid file); a {@link HubOfflineError} when offline (the hub unreachable, or
 *   `HF_HUB_OFFLINE=1` and the cache lacks it), saying how to use a local folder instead
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
  const offline = hubOfflineSetting();
  if (hubDownloadComplete(dir) && (offline || !(await staleAbsence(ctx)))) return dir;
  // An optional file the hub answered 404 for is not missing while the record holds: the repo
  // has none.
  const missing = [];
  for (const f of [...files.required, ...optional]) {
    if (await pathExists(join(dir, f))) continue;
    if (!files.required.includes(f)) {
      const a = await absence(ctx, f);
      if (a === "trusted") ctx.trusted.add(f); // until the commit is known, if it comes to be
      if (a === "held" || a === "trusted") continue;
    }
    missing.push(f);
  }
  if (missing.length === 0) return dir;
  if (offline) {
    // Offline: what the cache holds of the optional files is what there is.
    const needed = missing.filter((f) => files.required.includes(f));
    if (needed.length === 0) return dir;
    throw offlineModeError(
      ctx,
      `${needed.join(", ")} ${needed.length === 1 ? "is" : "are"}`,
      offline,
    );
  }
  await Deno.mkdir(dir, { recursive: true });
  for (const f of missing) await download(ctx, f, !files.required.includes(f));
  // The optional files held absent by age alone, if the call learnt of another commit.
  await recheckTrusted(ctx);
  return dir;
}
