/**
 * HTTP transfers that survive a flaky network, shared by the hub download (`model/hub.ts`) and
 * the GLUE/SuperGLUE downloader (`tasks/download.ts`):
 *
 * - a request whose response has not started, or whose body has sent nothing, for
 *   {@link IDLE_TIMEOUT_MS} is aborted ({@link within}, {@link getWithin});
 * - HTTP 408, 429 and 5xx, a dropped connection and an idle transfer are retried
 *   ({@link HttpStatusError}), after the server's `Retry-After` (at most
 *   {@link MAX_RETRY_AFTER_MS}) or else 1, 2, 4 s ({@link retryDelayMs});
 * - a transfer continues from the bytes already in its part file with an HTTP `Range` request
 *   (206), restarts cleanly when the server ignores the range (200), and accepts or restarts on
 *   416 ({@link fetchResumable}), with `recordSource` only a part of the same URL and validators
 *   (its record `<part>.json`), with `ifRange` also only a part of the file's current version
 *   (checked against the record's `ETag`); the part is flushed to disk before it is returned;
 * - a request the fetch itself rejects ({@link ConnectionError}: DNS, refused connection) may be
 *   given up at once ({@link ResumableOptions.noRetry});
 * - a failure of the local part file (a full disk, a refused permission, a read-only or failing
 *   disk) is never retried: it fails at once, naming the file ({@link fsError}).
 *
 * @module
 */
import { fsError, isLocalFileError, writeFileAtomic } from "./fs.ts";

/**
 * Default idle timeout: 30 s without a response or without a byte of the body (the README's "a
 * request with no response, or a transfer that sends nothing, for 30 s is given up and retried").
 */
export const IDLE_TIMEOUT_MS = 30_000;

/**
 * `p`, or a rejection with `message` once `ms` pass first (then `onTimeout` runs, to abort the
 * request). The timer is cleared either way.
 *
 * @param p what to wait for
 * @param ms how long at most
 * @param onTimeout run once the time is up (after the rejection is settled)
 * @param message the rejection's message
 * @returns what `p` gives
 */
export async function within<T>(
  p: Promise<T>,
  ms: number,
  onTimeout: () => void,
  message: () => string,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new Error(message())); // first: the abort below rejects `p` too
      onTimeout();
    }, ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The transfer itself failed: no connection, a reset, no response or no data within the idle
 * timeout, a resume at the wrong byte. Its message is the failure's own (`GET <url>: ...` or the
 * fetch's message); `cause` holds the original error. Not a status (that is
 * {@link HttpStatusError}) nor a local file error.
 */
export class TransferError extends Error {}

/**
 * A {@link TransferError} of a request whose connection could not be made: the fetch itself
 * rejected while connecting (a DNS failure, a refused or unreachable connection, a TLS handshake
 * refused, a port fetch blocks; {@link isConnectFailure}). Offline, every request fails so; a
 * caller may give up on it at once ({@link ResumableOptions.noRetry}) instead of waiting through
 * the retries. A connection the server closed or reset before answering is not one (the server
 * was reached): a plain TransferError, retried.
 */
export class ConnectionError extends TransferError {}

/**
 * A {@link TransferError} of a response that is an HTML page (`Content-Type: text/html`) where a
 * file was asked for: a login or error page served with status 200, a mirror's index. Not
 * retried: a retry would get the same page.
 */
export class HtmlPageError extends TransferError {}

/**
 * A {@link TransferError} of a request whose redirects never ended (fetch gave up after its 20:
 * a redirect loop, a misconfigured mirror): not retried, as a loop does not go away in seconds.
 * A caller's {@link HttpGet} that follows redirects itself (the hub's) throws one too, which
 * {@link getWithin} passes on as the cause of its TransferError: not retried either.
 */
export class RedirectLimitError extends TransferError {}

/**
 * What a fetch rejection (or its causes) says when no connection could be made: Deno's
 * `client error (Connect)` (DNS, TCP connect, TLS), or the OS's words for it; and Deno's refusal
 * of a blocked port. A reset or a connection closed unanswered (`client error (SendRequest)`)
 * does not match.
 */
const CONNECT_FAILURE = new RegExp(
  [
    String.raw`\(Connect\)`,
    "dns error",
    "failed to lookup address",
    "tcp connect error",
    "connection refused",
    "network is unreachable",
    "no route to host",
    "host is unreachable",
    String.raw`requests to port \d+ are blocked`,
  ].join("|"),
  "i",
);

/** Most errors {@link errorChain} gives: an error and its first seven causes. */
export const MAX_CAUSE_DEPTH = 8;

/**
 * An error and its causes (`e`, `e.cause`, `e.cause.cause`, …), as far as each is an `Error`, at
 * most {@link MAX_CAUSE_DEPTH} of them, and each once (a cause that points back ends the chain).
 *
 * @param e anything thrown or rejected with
 * @returns `e` and its causes in order; empty when `e` is no `Error`
 */
export function errorChain(e: unknown): Error[] {
  const chain: Error[] = [];
  for (let c = e; c instanceof Error && chain.length < MAX_CAUSE_DEPTH; c = c.cause) {
    if (chain.includes(c)) break;
    chain.push(c);
  }
  return chain;
}

/**
 * Whether a fetch's rejection `e` (a `TypeError`, as the Fetch standard has it) says that no
 * connection could be made ({@link CONNECT_FAILURE}, in its message or its causes').
 *
 * @param e what the fetch rejected with
 * @returns true for a DNS failure, a refused or unreachable connection, a blocked port
 */
export function isConnectFailure(e: unknown): boolean {
  return errorChain(e).some((c) => CONNECT_FAILURE.test(c.message));
}

/**
 * The message of a fetch's rejection with its causes' (Deno's own is a bare "fetch failed"; the
 * reason, such as "Connection refused", is in its cause).
 *
 * @param e what the fetch rejected with
 * @returns its message, then each cause's message in parentheses unless empty or already said
 */
function fetchFailure(e: unknown): string {
  // Deno's causes repeat the address ("error sending request for url (https://…): …"), which
  // the caller's "GET <url>: " already says: dropped (h388: three copies of one URL per line).
  const bare = (m: string) => m.replace(/^error sending request for url \([^)]*\): /, "");
  let message = bare(e instanceof Error ? e.message : String(e));
  for (const c of errorChain(e).slice(1)) {
    const m = bare(c.message);
    if (m !== "" && !message.includes(m)) message += ` (${m})`;
  }
  return message;
}

/**
 * Sends one GET of `url` with `headers`, aborted by `signal` (default: `fetch(url, {headers,
 * signal})`; the hub follows redirects by hand to keep its token off other origins).
 */
export type HttpGet = (
  url: string,
  headers: Record<string, string>,
  signal: AbortSignal,
) => Promise<Response>;

/** The plain {@link HttpGet} of a fetch implementation. */
export function plainGet(fetchFn: typeof fetch = fetch): HttpGet {
  return (url, headers, signal) => fetchFn(url, { headers, signal });
}

/**
 * `GET url` with `headers`, given up (through `ctrl`) when no response has started within
 * `idleMs`; any failure (no connection, a reset, the timeout) is a {@link TransferError} whose
 * message starts `GET <url>: ` (and gives the fetch's causes), a {@link ConnectionError} when the
 * fetch itself rejected because no connection could be made ({@link isConnectFailure}). The
 * status is not checked.
 *
 * @param get how to send the request
 * @param url the URL
 * @param headers its headers
 * @param ctrl aborts it (on the timeout; the caller aborts a body that goes idle later)
 * @param idleMs the idle timeout
 * @returns the response
 */
export async function getWithin(
  get: HttpGet,
  url: string,
  headers: Record<string, string>,
  ctrl: AbortController,
  idleMs: number,
): Promise<Response> {
  try {
    return await within(
      get(url, headers, ctrl.signal),
      idleMs,
      () => ctrl.abort(),
      () => `no response within ${idleMs / 1000} s`,
    );
  } catch (e) {
    const message = `GET ${url}: ${fetchFailure(e)}`;
    // The timeout rejects with a plain Error first, so a TypeError is the fetch's own failure;
    // one of a server that was reached (a reset, a connection closed unanswered) is retried.
    if (e instanceof TypeError && isConnectFailure(e)) {
      throw new ConnectionError(message, { cause: e });
    }
    if (e instanceof TypeError && /maximum number of redirects/i.test(message)) {
      throw new RedirectLimitError(`${message} (a redirect loop?)`, { cause: e });
    }
    throw new TransferError(message, { cause: e });
  }
}

/**
 * A response with an error status. 408 (timeout), 429 (rate limited) and 5xx are retried; other
 * statuses (404, 403, ...) will not change on a retry.
 */
export class HttpStatusError extends Error {
  /** The error class's name, `"HttpStatusError"`. */
  override name = "HttpStatusError";
  /**
   * Builds the error for an answer to `GET url`; the message is `GET <url>: HTTP <status>`.
   *
   * @param url the URL requested
   * @param status the HTTP status
   * @param retryAfter the `Retry-After` header, if any
   */
  constructor(url: string, readonly status: number, readonly retryAfter: string | null) {
    super(`GET ${url}: HTTP ${status}`);
  }

  /** Whether another attempt may succeed. */
  get retryable(): boolean {
    return this.status === 408 || this.status === 429 || this.status >= 500;
  }
}

/** Longest `Retry-After` honoured (a longer one is cut to this; the run does not hang). */
export const MAX_RETRY_AFTER_MS = 120_000;

/**
 * The wait before attempt `attempt + 1`: the server's `Retry-After` (seconds or an HTTP date, at
 * most {@link MAX_RETRY_AFTER_MS}) when it sent a valid one, else 1 s, 2 s, 4 s, ... (at most 30 s).
 *
 * @param attempt the attempt that failed (0 for the first)
 * @param retryAfter the `Retry-After` header, or null
 * @param now the current time (ms since the epoch), for an HTTP date
 * @returns milliseconds to wait
 */
export function retryDelayMs(
  attempt: number,
  retryAfter: string | null,
  now: number = Date.now(),
): number {
  const backoff = Math.min(30_000, 1000 * 2 ** attempt);
  if (retryAfter === null) return backoff;
  const v = retryAfter.trim();
  // delta-seconds, or an IMF-fixdate such as "Fri, 27 Nov 2026 03:00:05 GMT" (V8's Date.parse
  // alone would take "-5" for a date in the year -5).
  const ms = /^\d+$/.test(v)
    ? Number(v) * 1000
    : /^[A-Za-z]{3}, .* GMT$/.test(v)
    ? Date.parse(v) - now
    : NaN;
  if (!Number.isFinite(ms)) return backoff;
  return Math.min(MAX_RETRY_AFTER_MS, Math.max(0, ms));
}

/** A parsed `Content-Range` header (RFC 9110 14.4). */
export interface ContentRange {
  /** FIRST of `bytes FIRST-LAST/TOTAL` (a 206); undefined for `bytes *\/TOTAL` (a 416). */
  first?: number;
  /** TOTAL, the complete size; undefined when unknown (`*`). */
  total?: number;
}

/**
 * Parses `Content-Range: bytes FIRST-LAST/TOTAL` (206, TOTAL may be `*`) or `bytes *\/TOTAL`
 * (416): the one parser of the header for both answers.
 *
 * @param v the header, or null
 * @returns its first byte and total, or undefined when the header is absent or malformed
 * @example
 * ```ts
 * import { parseContentRange } from "./http.ts";
 * console.assert(parseContentRange("bytes 5-9/10")?.first === 5);
 * console.assert(parseContentRange("bytes *\/10")?.total === 10);
 * ```
 */
export function parseContentRange(v: string | null): ContentRange | undefined {
  const m = v ? /^bytes (?:(\d+)-\d+|\*)\/(\d+|\*)$/.exec(v.trim()) : null;
  if (!m) return undefined;
  const num = (x: string | undefined) => x === undefined || x === "*" ? undefined : Number(x);
  return { first: num(m[1]), total: num(m[2]) };
}

/** A progress display of one attempt of a transfer. */
export interface TransferProgress {
  /** `done` bytes of `total` (when known) are in the part. */
  update(done: number, total?: number): void;
  /** The body is complete (`note` says where it resumed). */
  finish(note?: string): void;
}

/** Options of {@link fetchResumable}. */
export interface ResumableOptions {
  /** Name of the transfer in log lines and errors (default the URL). */
  name?: string;
  /**
   * The file's size when known beforehand: the part must end at exactly this size. Fewer bytes
   * are a cut transfer, resumed, unless the server stated that size for its file and sent all of
   * it (another version: the part is dropped, and fetched from byte 0 the error is final, as
   * too many bytes are).
   */
  bytes?: number;
  /**
   * Check the part's size against the server's own: `Content-Length` of a 200, the total of
   * `Content-Range` of a 206 (else the bytes held plus `Content-Length`), when the body is not
   * content-encoded. Default false (the GLUE downloader checks known sizes and digests instead).
   */
  checkLength?: boolean;
  /**
   * Resume only the same version of the file, a stricter `recordSource` (which it implies): the
   * part's record ({@link PartSource}) is kept as there, and its `ETag`, when strong, is sent as
   * `If-Range`, so a server whose file changed since answers 200 with the whole new file (which
   * restarts the part) instead of 206. Beyond `recordSource`, the 416 of a complete part
   * restarts it when no `ETag` was sent (nothing ties the part to the file's current version).
   * Default false.
   */
  ifRange?: boolean;
  /**
   * Resume only bytes of this URL: `<part>.json` (written atomically each time the part starts
   * from byte 0, before its first byte) records the URL and the validators (`ETag`,
   * `Last-Modified`) of the response the part's bytes come from ({@link PartSource}). A part is
   * restarted from byte 0, with one log line saying why, when its record names another URL (a
   * switch of mirror between attempts), when it has no record (a part of an earlier version of
   * this code, or a record lost: nothing ties its bytes to this URL), or when the answer to the
   * resume (206, or the 416 of a complete part) carries an `ETag` or `Last-Modified` other than
   * the recorded one (the file changed), or only one of the record and the answer has one
   * (nothing proves the bytes the same; the exceptions are in `changedSource`). The recorded
   * strong `ETag` is sent as `If-Range`. Default false; always on with `ifRange`.
   */
  recordSource?: boolean;
  /** Extra attempts after the first; default 3. */
  retries?: number;
  /**
   * Whether a failed attempt's `error` is final: when it returns true the error is thrown at
   * once, without the retries' waits (the hub gives up so on a {@link ConnectionError} before it
   * has answered anything: offline, waiting through the retries only delays the message). Default:
   * every transfer failure and retryable status is retried.
   */
  noRetry?: (error: unknown, attempt: number) => boolean;
  /** Idle timeout of the response and of each read of the body; default {@link IDLE_TIMEOUT_MS}. */
  idleMs?: number;
  /** Waits between attempts (default a timer; tests record them). */
  sleep?: (ms: number) => Promise<void>;
  /** Retry and restart messages (default none). */
  log?: (line: string) => void;
  /** How a request is sent (default {@link plainGet} of `fetch`). */
  get?: HttpGet;
  /** The fetch of the default `get` (default the global fetch). */
  fetch?: typeof fetch;
  /** A progress display per attempt, given the size when known (default none). */
  progress?: (total: number | undefined) => TransferProgress;
  /**
   * Checks the complete part (its size already checked). What it throws is final: the part is
   * deleted and the error rethrown without another attempt.
   */
  verify?: (part: string, bytes: number) => Promise<void>;
}

/** What {@link fetchResumable} did. */
export interface ResumableResult {
  /** The part's size: the whole file. */
  bytes: number;
  /** Where the last attempt resumed (0 when it started from the first byte). */
  resumedAt: number;
  /** Attempts made (1 when the first succeeded). */
  attempts: number;
}

const defaultSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Fetches `url` into the file `part`, continuing the bytes already there with an HTTP `Range`
 * request, and retrying (resuming) a broken, idle or refused (408, 429, 5xx) transfer; returns once
 * the part holds the whole file, flushed to disk, and `verify` accepted it. The caller renames it
 * into place. A 206 must resume exactly where the part ends (else the part is deleted and the
 * attempt fails); a 200 (the server ignores ranges) restarts the part from byte 0. A 416 answer to
 * the resume accepts the part when its size equals `bytes`, or else the total of the answer's
 * `Content-Range: bytes *\/TOTAL`; otherwise the part is deleted and the transfer restarts from
 * byte 0 at once. A part longer than the file is deleted: after a resume, the attempt fails and
 * the retry starts from byte 0; a download from byte 0 longer than `bytes` or its stated length
 * fails at once (downloading the same file again would not shorten it). With `recordSource` (or
 * `ifRange`), a part is resumed or accepted only while the answer's validators (`ETag`,
 * `Last-Modified`) are the ones it started with: one that differs, or is on one side only,
 * restarts it from byte 0 (a 416 to the `If-Range` sent, with no validators of its own, confirms
 * the version: a server honouring `If-Range` answers a changed file 200); with `ifRange`, so does
 * a 416 when no strong `ETag` was recorded for the part.
 *
 * @param url the URL
 * @param part the file to write (its folder must exist); kept after a failure, for a resume
 * @param opts size checks, retries, timeouts, request function, progress, final check
 * @returns the size, where the last attempt resumed, and the attempts made
 * @throws HttpStatusError for a status that is not retried (or still failing after the retries);
 *   an error of the local part file (a full disk, a refused permission), at once and never
 *   retried, named `<part>: <what was being done> (GET <url>) failed: …` ({@link fsError}, of the
 *   original error's class); else the last attempt's error (messages start `GET <url>: ` or name
 *   the transfer)
 */
export async function fetchResumable(
  url: string,
  part: string,
  opts: ResumableOptions = {},
): Promise<ResumableResult> {
  const name = opts.name ?? url;
  // A size refusal names the URL too: which mirror served another version of the file.
  const sized = name === url ? url : `${name} (${url})`;
  const retries = opts.retries ?? 3;
  const idle = opts.idleMs ?? IDLE_TIMEOUT_MS;
  const sleep = opts.sleep ?? defaultSleep;
  const log = opts.log ?? (() => {});
  const get = opts.get ?? plainGet(opts.fetch);
  const want = opts.bytes;
  const sourcePath = partSourcePath(part);
  // ifRange is a stricter use of the same record.
  const recordSource = opts.recordSource === true || opts.ifRange === true;
  // The part and the record of its source go together.
  const dropPart = async () => {
    if (recordSource) await removePart(part);
    else await Deno.remove(part).catch(() => {});
  };
  // A failure of a local file names it and is not retried (isLocalFileError, below).
  const local = (p: string, doing: string) => (e: unknown): never => {
    throw fsError(e, p, `${doing} (GET ${url})`);
  };
  let lastErr: unknown;
  for (let attempt = 0; attempt <= retries; attempt++) {
    let have = 0;
    try {
      have = (await Deno.stat(part)).size;
    } catch { /* fresh */ }
    // Aborts the request in flight (the response wait, then its body) when it goes idle.
    let ctrl = new AbortController();
    try {
      // Where the part's bytes came from (recordSource): another URL, or no record, restarts it.
      let recorded: PartSource | undefined;
      if (have > 0 && recordSource) {
        recorded = await readPartSource(part);
        if (recorded === undefined || recorded.url !== url) {
          log(
            `${name}: the ${have} B part ${
              recorded === undefined
                ? `has no record of its source (${sourcePath})`
                : `came from ${recorded.url}`
            }, not ${url}; restarting from 0`,
          );
          await dropPart();
          have = 0;
          recorded = undefined;
        }
      }
      // A size other than expected that is not a cut transfer (too many bytes, or all the bytes
      // the server states for a shorter file): a resumed part may have been joined wrongly, so it
      // is retried from byte 0; the same from byte 0 is the file as served, and downloading it
      // again would not change it.
      const wrongSize = (message: string) =>
        have > 0 ? new Error(message) : new FinalError(new Error(message));
      // The validator sent as If-Range with the last resume (undefined: none recorded): the
      // record's ETag when strong (a weak one cannot serve If-Range).
      let sent: string | undefined;
      const open = async (from: number): Promise<Response> => {
        ctrl = new AbortController();
        const headers: Record<string, string> = from > 0 ? { Range: `bytes=${from}-` } : {};
        sent = from > 0 ? strongEtag(recorded?.etag) : undefined;
        // A server that honours it answers a changed file 200 (a restart) instead of 206.
        if (sent !== undefined) headers["If-Range"] = sent;
        return await getWithin(get, url, headers, ctrl, idle);
      };
      let res = await open(have);
      if ((res.status === 206 || res.status === 416) && have > 0 && recorded !== undefined) {
        // The rest (or the end) of another version of the file than the part's: fetched whole.
        const changed = changedSource(recorded, res, sent);
        if (changed !== undefined) {
          await res.body?.cancel();
          log(`${name}: the ${have} B part is of another version (${changed}); restarting from 0`);
          await dropPart();
          have = 0;
          recorded = undefined;
          res = await open(0);
        }
      }
      let complete = false;
      // The file's size as the server states it (checkLength).
      let stated: number | undefined;
      // The file's size as the server states it (Content-Length of a 200, Content-Range's total
      // of a 206; unencoded bodies only), whatever checkLength: a part of that size holds all
      // the server's bytes, so one shorter than `want` is the server's file, not a cut transfer.
      let served: number | undefined;
      if (res.status === 416 && have > 0) {
        // Nothing left to send from `have` on: complete if `have` is the file's size and, with
        // ifRange, the part is of the file's current version. A server that honours If-Range
        // answers a changed file 200, not 416, so a 416 to the validator sent confirms it (one
        // that names other validators was restarted above); with no strong ETag recorded, none
        // was sent and nothing ties the part to this version, so it is fetched again.
        const total = want ?? parseContentRange(res.headers.get("content-range"))?.total;
        const stale = opts.ifRange && sent === undefined;
        await res.body?.cancel();
        if (total === have && !stale) complete = true;
        else if (total === have) {
          log(
            `${name}: the complete ${have} B part may be of another version of the file (no strong ETag recorded); restarting`,
          );
          await dropPart();
          have = 0;
          res = await open(0);
        } else {
          log(
            `${name}: server refused the resume at ${have} B (size ${
              total ?? "unknown"
            }); restarting`,
          );
          await dropPart();
          have = 0;
          res = await open(0);
        }
      }
      if (!complete) {
        if (!(res.ok || res.status === 206)) {
          await res.body?.cancel();
          throw new HttpStatusError(url, res.status, res.headers.get("retry-after"));
        }
        // An HTML page where a data file or checkpoint was asked for (a login or error page
        // served as 200, a mirror's index): said as such rather than failing later as a file
        // that does not parse; not retried.
        const type = res.headers.get("content-type") ?? "";
        if (/^\s*text\/html\b/i.test(type) && !/\.html?$/i.test(new URL(url).pathname)) {
          await res.body?.cancel();
          throw new FinalError(
            new HtmlPageError(
              `GET ${url}: the server answered with an HTML page (Content-Type: ${type.trim()}), ` +
                "not the file: an error or login page, or a mirror's index; check the URL and " +
                "the endpoint",
            ),
          );
        }
        let append = false;
        if (res.status === 206) {
          const start = parseContentRange(res.headers.get("content-range"))?.first;
          if (start !== have) {
            await res.body?.cancel();
            await dropPart();
            throw new TransferError(
              `GET ${url}: server resumed at ${start}, expected ${have}; restarting`,
            );
          }
          append = true;
        } else have = 0;
        const len = Number(res.headers.get("content-length") ?? NaN);
        const total = want ?? (Number.isFinite(len) ? have + len : undefined);
        if (res.headers.get("content-encoding") === null) {
          served = res.status === 206
            ? parseContentRange(res.headers.get("content-range"))?.total
            : Number.isFinite(len)
            ? len
            : undefined;
          if (opts.checkLength) {
            stated = served ??
              (res.status === 206 && Number.isFinite(len) ? have + len : undefined);
          }
        }
        const bar = opts.progress?.(total);
        using f = await Deno.open(part, { write: true, create: true, append, truncate: !append })
          .catch(local(part, "opening the part file"));
        if (!append && recordSource) {
          // Where the bytes about to be written come from, recorded once the part is emptied:
          // a kill in between leaves an empty part, never bytes under another source's record.
          const record: PartSource = { url };
          const etag = res.headers.get("etag");
          const modified = res.headers.get("last-modified");
          if (etag !== null) record.etag = etag;
          if (modified !== null) record.lastModified = modified;
          await writeFileAtomic(sourcePath, JSON.stringify(record) + "\n")
            .catch(local(sourcePath, "writing"));
        }
        let done = have;
        if (res.body) {
          const reader = res.body.getReader();
          const abort = ctrl.abort.bind(ctrl);
          for (;;) {
            let next: ReadableStreamReadResult<Uint8Array>;
            try {
              next = await within(reader.read(), idle, () => {
                abort();
                reader.cancel().catch(() => {});
              }, () => `GET ${url}: no data for ${idle / 1000} s (at ${done} B)`);
            } catch (e) {
              // The idle timeout's message names the URL already; a body cut off does not
              // ("error reading a body from connection").
              const message = (e as Error).message;
              throw new TransferError(
                message.startsWith(`GET ${url}: `) ? message : `GET ${url}: ${fetchFailure(e)}`,
                { cause: e },
              );
            }
            if (next.done) break;
            const chunk = next.value;
            let off = 0;
            try {
              while (off < chunk.length) off += await f.write(chunk.subarray(off));
            } catch (e) {
              local(part, `writing at ${done + off} B`)(e);
            }
            done += chunk.length;
            bar?.update(done, total);
          }
        }
        // On disk before the caller's rename publishes it (a power cut must not leave an empty
        // file under the final name).
        await f.syncData().catch(local(part, "flushing"));
        bar?.finish(have > 0 ? `(resumed at ${have} B)` : undefined);
      }
      const size = (await Deno.stat(part).catch(local(part, "examining the part file"))).size;
      if (want !== undefined && size !== want) {
        if (size < want && size === served) {
          // Every byte the server has, fewer than expected: another version of the file.
          await dropPart();
          throw wrongSize(
            `${sized}: the server's file is ${size} B, expected ${want} B (another version of the file?; deleted)`,
          );
        }
        if (size < want) throw new TransferError(`GET ${url}: got ${size} of ${want} bytes`);
        await dropPart();
        throw wrongSize(
          `${sized}: size ${size} B, expected ${want} B (another version of the file?; deleted)`,
        );
      }
      if (stated !== undefined && size !== stated) {
        if (size < stated) {
          throw new TransferError(`${url}: download truncated (${size} of ${stated} bytes)`);
        }
        await dropPart();
        throw wrongSize(`${url}: ${size} bytes, more than the ${stated} stated (deleted)`);
      }
      if (opts.verify) {
        try {
          await opts.verify(part, size);
        } catch (e) {
          await dropPart();
          throw new FinalError(e);
        }
      }
      // Complete: the caller renames the part; its record is of no more use.
      if (recordSource) await removePartRecord(part);
      return { bytes: size, resumedAt: have, attempts: attempt + 1 };
    } catch (e) {
      if (e instanceof FinalError) throw e.error;
      // The local file failed (a full disk, a refused permission): another attempt cannot help.
      // The response's body, if still open, is dropped with its connection.
      if (isLocalFileError(e)) {
        ctrl.abort();
        throw e;
      }
      lastErr = e;
      if (e instanceof HttpStatusError && !e.retryable) break;
      if (e instanceof RedirectLimitError || (e as Error).cause instanceof RedirectLimitError) {
        break;
      }
      if (opts.noRetry?.(e, attempt)) break;
      if (attempt < retries) {
        const wait = retryDelayMs(attempt, e instanceof HttpStatusError ? e.retryAfter : null);
        log(`${name}: ${(e as Error).message}; retrying in ${wait / 1000} s`);
        await sleep(wait);
      }
    }
  }
  throw lastErr;
}

/**
 * Where the bytes of a part file came from ({@link ResumableOptions.recordSource}), as
 * `<part>.json` holds it.
 */
export interface PartSource {
  /** The URL requested. */
  url: string;
  /** The `ETag` of the response that started the part, if it had one (weak ones included). */
  etag?: string;
  /** The `Last-Modified` of the response that started the part, if it had one. */
  lastModified?: string;
}

/**
 * The file that records where the bytes of the part file `part` came from: `<part>.json`.
 *
 * @param part the part file
 * @returns its record's path
 */
export function partSourcePath(part: string): string {
  return `${part}.json`;
}

/**
 * Removes the record of where the bytes of `part` came from ({@link partSourcePath}), and the
 * `<part>.etag` that versions of this code before the record kept beside a part (none is left
 * behind). Missing files are no error.
 *
 * @param part the part file
 */
async function removePartRecord(part: string): Promise<void> {
  await Deno.remove(partSourcePath(part)).catch(() => {});
  await Deno.remove(`${part}.etag`).catch(() => {});
}

/**
 * Drops the part file `part` of {@link fetchResumable} with its record of its source (and a
 * `<part>.etag` left by an earlier version of this code): nothing of it is resumed. Missing files
 * are no error.
 *
 * @param part the part file
 */
export async function removePart(part: string): Promise<void> {
  await Deno.remove(part).catch(() => {});
  await removePartRecord(part);
}

/**
 * The record of where the bytes of `part` came from ({@link partSourcePath}), or undefined when
 * there is none or it is not one (unreadable, not JSON, no URL): such a part is not resumed.
 *
 * @param part the part file
 * @returns the record, if there is a valid one
 */
export async function readPartSource(part: string): Promise<PartSource | undefined> {
  try {
    const v: unknown = JSON.parse(await Deno.readTextFile(partSourcePath(part)));
    if (typeof v !== "object" || v === null) return undefined;
    const { url, etag, lastModified } = v as Record<string, unknown>;
    if (typeof url !== "string") return undefined;
    const out: PartSource = { url };
    if (typeof etag === "string") out.etag = etag;
    if (typeof lastModified === "string") out.lastModified = lastModified;
    return out;
  } catch {
    return undefined;
  }
}

/**
 * How the answer `res` (206 or 416) to a resume says that the file may not be the version the part
 * was started from; undefined when nothing says so. A resume is safe only when a validator proves
 * the bytes the same, so each of `ETag` and `Last-Modified` (an empty one, `""` or `W/""` included,
 * is none) counts as a change when
 *
 * - the record and the answer both have it and they differ, or
 * - only one of them has it (it was dropped, or appeared: nothing ties the part to this version),
 *   except when the other validator proves the version: a `Last-Modified` on one side only is
 *   no change when both sides have the same strong `ETag`; and a validator the record has and a
 *   416 lacks is no change when the recorded strong `ETag` was sent as `If-Range` (`ifRangeSent`):
 *   a 416 need carry no validators (a 206 must carry those a 200 would, RFC 9110 §15.3.7), and a
 *   server that honours `If-Range` answers a changed file 200, not 416.
 *
 * Neither side having a validator says nothing: such a part is resumed on its URL alone.
 *
 * @param recorded the part's record
 * @param res the answer to the resume
 * @param ifRangeSent the `If-Range` sent with the resume (the record's strong `ETag`), if any
 * @returns why the part may be of another version (a log line's middle), or undefined
 */
function changedSource(
  recorded: PartSource,
  res: Response,
  ifRangeSent: string | undefined,
): string | undefined {
  const was = { etag: validator(recorded.etag), modified: validator(recorded.lastModified) };
  const now = {
    etag: validator(res.headers.get("etag")),
    modified: validator(res.headers.get("last-modified")),
  };
  const sameStrongEtag = strongEtag(was.etag) !== undefined && was.etag === now.etag;
  const confirmed416 = res.status === 416 && ifRangeSent !== undefined;
  const differs = (kind: string, before: string | undefined, after: string | undefined) => {
    if (before === after) return undefined;
    if (before !== undefined && after !== undefined) return `${kind} ${before}, now ${after}`;
    // One side only.
    if ((after === undefined && confirmed416) || (kind !== "ETag" && sameStrongEtag)) {
      return undefined;
    }
    return `${kind} ${before ?? "none"}, now ${after ?? "none"}`;
  };
  return differs("ETag", was.etag, now.etag) ??
    differs("Last-Modified", was.modified, now.modified);
}

/** A validator's value, or undefined when it is missing or empty (`""` or `W/""` for an ETag). */
function validator(v: string | null | undefined): string | undefined {
  const t = v?.trim();
  return t === undefined || t === "" || t === '""' || t === 'W/""' ? undefined : t;
}

/**
 * `etag` (a response's or a record's) when it is a strong validator: a weak one cannot serve
 * `If-Range`, and an empty one ({@link validator}) is none.
 */
function strongEtag(etag: string | null | undefined): string | undefined {
  const v = validator(etag);
  return v === undefined || v.startsWith("W/") ? undefined : v;
}

/** Carries what `verify` threw past the retry loop. */
class FinalError {
  constructor(readonly error: unknown) {}
}
