/**
 * Test helper: a local stand-in for the Hugging Face hub ({@link serveHub}), serving folders in
 * the hub's URL layout on 127.0.0.1 and recording every request, so hub downloads are tested
 * offline. Used by model/hub_test.ts and benchmarks/run_one_test.ts.
 *
 * @module
 */
import { join } from "node:path";

/** A running local hub. */
export interface Hub {
  /** Its base URL (`http://127.0.0.1:<port>`), for `endpoint` or `HF_ENDPOINT`. */
  endpoint: string;
  /** Every request so far: the decoded path and the `authorization` header. */
  requests: { path: string; auth: string | null }[];
  /** Stops the server. */
  close(): Promise<void>;
}

/**
 * Serves `repos` at `/<repo>/resolve/<revision>/<file>`: each key is `<repo>@<revision>`, each
 * value the folder whose files it serves; an unknown repo or file answers HTTP 404.
 *
 * @param repos `"org/name@revision"` → local folder
 * @returns the running hub (close it when done)
 */
export function serveHub(repos: Record<string, string>): Hub {
  const requests: Hub["requests"] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const path = decodeURIComponent(new URL(req.url).pathname);
    requests.push({ path, auth: req.headers.get("authorization") });
    const m = path.match(/^\/(.+)\/resolve\/([^/]+)\/([^/]+)$/);
    const folder = m ? repos[`${m[1]}@${m[2]}`] : undefined;
    if (!m || !folder) return new Response("Repository not found", { status: 404 });
    try {
      return new Response(await Deno.readFile(join(folder, m[3]!)));
    } catch {
      return new Response("Entry not found", { status: 404 });
    }
  });
  return {
    endpoint: `http://127.0.0.1:${server.addr.port}`,
    requests,
    close: () => server.shutdown(),
  };
}
