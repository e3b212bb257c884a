/**
 * Test helper: a local stand-in for the Hugging Face hub ({@link serveHub}), serving folders in
 * the hub's URL layout on 127.0.0.1 and recording every request, so hub downloads are tested
 * offline. Used by model/hub_test.ts and benchmarks/run_one_test.ts.
 *
 * @module
 */
import { stallingBody, type StallTimer } from "./http_testing.ts";
import { join } from "node:path";

async function sha256Hex(data: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  return [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** A running local hub. */
export interface Hub {
  /** Its base URL (`http://127.0.0.1:<port>`), for `endpoint` or `HF_ENDPOINT`. */
  endpoint: string;
  /** Every request so far: the decoded path, the `authorization`, `range` and `if-range` headers. */
  requests: { path: string; auth: string | null; range: string | null; ifRange: string | null }[];
  /** Stops the server. */
  close(): Promise<void>;
}

/** Faults of a {@link serveHub} hub, to test retries and resumes. */
export interface HubFaults {
  /**
   * Answers the request instead of the folder when it returns a response (a 503, a 429 with
   * `Retry-After`, a redirect). `n` counts the requests of this path (repo, revision and file) so far, from 0.
   */
  answer?: (file: string, n: number, req: Request) => Response | undefined;
  /**
   * When it returns a number for a file's `n`-th request, the body sends that many bytes and then
   * nothing until the client goes away (or, should it never, the connection is cut after 5 s).
   */
  stallAt?: (file: string, n: number) => number | undefined;
  /** Answer every request with the whole file (200), as a server without range support. */
  ignoreRange?: boolean;
  /**
   * Send no `ETag` and ignore `If-Range` (a range is always served), as a plain static file
   * server or a mirror that keeps no validators.
   */
  noEtag?: boolean;
  /**
   * Not a fault: the commit each answer of a known repo names in `X-Repo-Commit`, as the hub's
   * own answers do (read at each request, so a test can move the branch); default none.
   */
  commit?: () => string;
  /**
   * Not a fault: the files it returns true for are served as the hub serves LFS files: their
   * resolve URL answers 302 naming their sha256 in `X-Linked-Etag` (and, unless `noEtag`, `ETag`),
   * to `/cdn/<repo>/<revision>/<file>` on this server, which serves the bytes with an `ETag` that
   * is not their sha256 (its first 32 hex digits, as a CDN's MD5 would be).
   */
  lfs?: (file: string) => boolean;
  /** Serves the files it returns true for with their last byte changed (the headers unchanged). */
  corrupt?: (file: string) => boolean;
}

/**
 * Serves `repos` at `/<repo>/resolve/<revision>/<file>`: each key is `<repo>@<revision>`, each
 * value the folder whose files it serves; an unknown repo or file answers HTTP 404. A
 * `Range: bytes=N-` request is answered 206 with `Content-Range` (416 with `bytes *\/SIZE` when N
 * is the size or more), unless `faults.ignoreRange` or an `If-Range` that is not the file's `ETag`
 * (its sha256, quoted; sent unless `faults.noEtag`); bodies have their `Content-Length`.
 *
 * @param repos `"org/name@revision"` → local folder
 * @param faults answers, stalls and ignored ranges to inject (default none)
 * @returns the running hub (close it when done)
 */
export function serveHub(repos: Record<string, string>, faults: HubFaults = {}): Hub {
  const requests: Hub["requests"] = [];
  const counts = new Map<string, number>();
  const timers = new Set<StallTimer>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const path = decodeURIComponent(new URL(req.url).pathname);
    const range = req.headers.get("range");
    const ifRange = req.headers.get("if-range");
    requests.push({ path, auth: req.headers.get("authorization"), range, ifRange });
    const cdn = path.startsWith("/cdn/");
    const m = cdn
      ? path.match(/^\/cdn\/(.+)\/([^/]+)\/([^/]+)$/)
      : path.match(/^\/(.+)\/resolve\/([^/]+)\/([^/]+)$/);
    const folder = m ? repos[`${m[1]}@${m[2]}`] : undefined;
    if (!m || !folder) return new Response("Repository not found", { status: 404 });
    const file = m[3]!;
    const n = counts.get(path) ?? 0;
    counts.set(path, n + 1);
    const injected = faults.answer?.(file, n, req);
    if (injected !== undefined) return injected;
    const commit: Record<string, string> = faults.commit && !cdn
      ? { "x-repo-commit": faults.commit() }
      : {};
    let body: Uint8Array<ArrayBuffer>;
    try {
      body = await Deno.readFile(join(folder, file));
    } catch {
      return new Response("Entry not found", { status: 404, headers: commit });
    }
    let status = 200;
    const sha256 = await sha256Hex(body);
    if (!cdn && faults.lfs?.(file)) {
      return new Response(null, {
        status: 302,
        headers: {
          location: `/cdn/${m[1]}/${m[2]}/${file}`,
          "x-linked-etag": `"${sha256}"`,
          "x-linked-size": String(body.length),
          ...(faults.noEtag ? {} : { etag: `"${sha256}"` }),
          ...commit,
        },
      });
    }
    if (faults.corrupt?.(file) && body.length > 0) body[body.length - 1] = body.at(-1)! ^ 0xff;
    // A strong validator of the content (as the hub's CDN sends); an If-Range naming another
    // version gets the whole file.
    const etag = cdn ? `"${sha256.slice(0, 32)}"` : `"${sha256}"`;
    const headers: Record<string, string> = faults.noEtag ? { ...commit } : { etag, ...commit };
    const current = ifRange === null || ifRange === etag || faults.noEtag === true;
    const r = range && current && !faults.ignoreRange ? /^bytes=(\d+)-$/.exec(range) : null;
    if (r) {
      const start = Number(r[1]);
      if (start >= body.length) {
        return new Response(null, {
          status: 416,
          headers: { "content-range": `bytes */${body.length}` },
        });
      }
      status = 206;
      headers["content-range"] = `bytes ${start}-${body.length - 1}/${body.length}`;
      body = body.slice(start);
    }
    headers["content-length"] = String(body.length);
    const stall = faults.stallAt?.(file, n);
    if (stall === undefined) return new Response(body, { status, headers });
    const stream = stallingBody(body.slice(0, stall), timers);
    return new Response(stream, { status, headers });
  });
  return {
    endpoint: `http://127.0.0.1:${server.addr.port}`,
    requests,
    close: () => {
      for (const t of timers) clearTimeout(t);
      return server.shutdown();
    },
  };
}
