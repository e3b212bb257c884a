import assert from "node:assert/strict";
import { stallingBody } from "../model/http_testing.ts";
import { join } from "node:path";
import { zipSync } from "fflate";
import { parquetWriteBuffer } from "hyparquet-writer";
import { countRowsBytes } from "./data.ts";
import { closedStderr } from "../model/stderr_testing.ts";
import {
  buildMrpc,
  describeEndpoints,
  download,
  DownloadError,
  type DownloadOptions,
  HttpStatusError,
  main,
  MAX_RETRY_AFTER_MS,
  parseDownloadArgs,
  readManifest,
  resolveEndpoints,
  retryDelayMs,
  selectTasks,
  sha256Hex,
  writeAtomic,
  zipEntryLimit,
} from "./download.ts";
import { findTaskSource, parquetShards, parquetUrl, type TaskSource } from "./sources.ts";
import { partSourcePath } from "../model/http.ts";
import { examplesFromBytes } from "./load.ts";
import { sharedPath } from "../model/shared_dir.ts";
import { diskFullError, flushesOf, recordFlushes, withOpenedFiles } from "../model/fs_testing.ts";
import { LOCK_WAIT_NOTICE_MS, withFileLock } from "../model/fs.ts";
import { withEnv } from "../model/env_testing.ts";

const enc = new TextEncoder();
/** Reads UTF-8 keeping a BOM (Deno.readTextFile drops it). */
const readText = async (p: string) =>
  new TextDecoder("utf-8", { ignoreBOM: true }).decode(await Deno.readFile(p));
const TRAIN = "index\tsentence1\tsentence2\tlabel\n0\tA b.\tA.\tentailment\n" +
  '1\tC "d".\tC.\tnot_entailment\n2\tE f.\tG.\tentailment\n';
const DEV =
  "index\tsentence1\tsentence2\tlabel\n0\tX y.\tX.\tentailment\n1\tZ.\tW.\tnot_entailment\n";

function makeZip(train = TRAIN, dev = DEV): Uint8Array {
  return zipSync({
    "RTE/train.tsv": enc.encode(train),
    "RTE/dev.tsv": enc.encode(dev),
    "RTE/readme.txt": enc.encode("not extracted"),
    "__MACOSX/RTE/._train.tsv": enc.encode("junk"),
  });
}

/** A tiny stand-in for glue/rte: same folder, config and converters, small files. */
function tinyRte(
  opts: { zipPrefix?: string; trainSha?: string; trainRows?: number } = {},
): TaskSource {
  return {
    id: "glue/rte",
    name: "rte",
    benchmark: "glue",
    folder: "RTE",
    hfConfig: "rte",
    files: [
      {
        path: "glue/RTE/train.tsv",
        split: "train",
        hfSplit: "train",
        rows: opts.trainRows ?? 3,
        header: true,
        sha256: opts.trainSha ?? sha256Hex(enc.encode(TRAIN)),
      },
      {
        path: "glue/RTE/dev.tsv",
        split: "validation",
        hfSplit: "validation",
        rows: 2,
        header: true,
      },
    ],
    official: { kind: "zip", url: "{glue}/RTE.zip", sha256Prefix: opts.zipPrefix, innerDir: "RTE" },
  };
}

interface Served {
  status?: number;
  body: Uint8Array;
  /** Cut the connection after this many bytes on the first (non-Range) request. */
  cutAt?: number;
  /**
   * Send this many bytes on the first (non-Range) request, then nothing until the client goes
   * away (or, should it never, cut the connection after 5 s).
   */
  stallAt?: number;
}

/** Local HTTP server on 127.0.0.1:0 with Range support and request log. */
function serve(routes: Record<string, Served>) {
  const log: { path: string; range: string | null }[] = [];
  const cutDone = new Set<string>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const path = new URL(req.url).pathname;
    const range = req.headers.get("range");
    log.push({ path, range });
    const r = routes[path];
    if (!r || (r.status ?? 200) !== 200) return new Response("no", { status: r?.status ?? 404 });
    const m = range ? /^bytes=(\d+)-$/.exec(range) : null;
    if (m) {
      const start = Number(m[1]);
      const part = r.body.subarray(start);
      return new Response(part.slice(), {
        status: 206,
        headers: { "content-range": `bytes ${start}-${r.body.length - 1}/${r.body.length}` },
      });
    }
    if (r.stallAt !== undefined && !cutDone.has(path)) {
      cutDone.add(path);
      const stream = stallingBody(r.body.subarray(0, r.stallAt));
      return new Response(stream, { headers: { "content-length": String(r.body.length) } });
    }
    if (r.cutAt !== undefined && !cutDone.has(path)) {
      cutDone.add(path);
      const head = r.body.subarray(0, r.cutAt);
      const stream = new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(head);
        },
        pull(c) {
          c.error(new Error("cut"));
        },
      });
      return new Response(stream, { headers: { "content-length": String(r.body.length) } });
    }
    return new Response(r.body.slice(), { headers: { "content-length": String(r.body.length) } });
  });
  const base = `http://127.0.0.1:${server.addr.port}`;
  return {
    log,
    server,
    endpoints: {
      glue: `${base}/glue`,
      superGlue: `${base}/sg`,
      senteval: `${base}/se`,
      hf: `${base}/hf`,
      dpr: `${base}/dpr`,
    },
  };
}

/**
 * Runs `fn` with a server of `routes` ({@link serve}) and a new cache folder, and shuts the one
 * down and removes the other afterwards, whatever `fn` does.
 */
async function withServer(
  routes: Record<string, Served>,
  fn: (s: ReturnType<typeof serve>, cacheDir: string) => Promise<void>,
): Promise<void> {
  const s = serve(routes);
  const cacheDir = await Deno.makeTempDir();
  try {
    await fn(s, cacheDir);
  } finally {
    await s.server.shutdown();
    await Deno.remove(cacheDir, { recursive: true });
  }
}

/**
 * `download` of the tiny RTE source from `s` into `cacheDir`, quietly, from the official files
 * unless `extra` says otherwise; `extra` adds or overrides options.
 */
function downloadRte(
  s: ReturnType<typeof serve>,
  cacheDir: string,
  extra: Partial<DownloadOptions> = {},
): ReturnType<typeof download> {
  return download({
    tasks: ["rte"],
    cacheDir,
    source: "official",
    endpoints: s.endpoints,
    taskSources: [tinyRte()],
    quiet: true,
    sleep: () => Promise.resolve(), // the waits between attempts are tested on their own
    ...extra,
  });
}

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  async function walk(d: string, rel: string) {
    for await (const e of Deno.readDir(d)) {
      if (e.isDirectory) await walk(join(d, e.name), `${rel}${e.name}/`);
      else out.push(`${rel}${e.name}`);
    }
  }
  try {
    await walk(dir, "");
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out.sort();
}

Deno.test("official zip: files extracted byte-exact, verified, manifest, then cached", async () => {
  const zip = makeZip();
  await withServer({ "/glue/RTE.zip": { body: zip } }, async (s, cacheDir) => {
    const sources = [tinyRte({ zipPrefix: sha256Hex(zip).slice(0, 8) })];
    const counted: string[] = [];
    const res = await download({
      tasks: ["rte"],
      cacheDir,
      endpoints: s.endpoints,
      taskSources: sources,
      quiet: true,
      countRows: (data, spec, where) => (counted.push(where), countRowsBytes(data, spec, where)),
    });
    assert.equal(res[0]?.status, "official");
    assert.deepEqual(counted, ["glue/RTE/train.tsv", "glue/RTE/dev.tsv"], "each file counted once");
    assert.equal(await readText(join(cacheDir, "glue/RTE/train.tsv")), TRAIN);
    assert.equal(await readText(join(cacheDir, "glue/RTE/dev.tsv")), DEV);
    const m = await readManifest(cacheDir);
    assert.equal(m.files["glue/RTE/train.tsv"]?.verified, "sha256");
    assert.equal(m.files["glue/RTE/dev.tsv"]?.verified, "rows");
    assert.equal(m.files["glue/RTE/dev.tsv"]?.sha256, sha256Hex(enc.encode(DEV)));
    assert.equal(m.archives[`${s.endpoints.glue}/RTE.zip`]?.sha256, sha256Hex(zip));
    // Raw zip and lock files removed: only the layout and the manifest remain.
    assert.deepEqual(await listFiles(cacheDir), [
      "glue/RTE/dev.tsv",
      "glue/RTE/train.tsv",
      "manifest.json",
    ]);
    const before = s.log.length;
    const again = await download({
      tasks: ["glue/rte"],
      cacheDir,
      endpoints: s.endpoints,
      taskSources: sources,
      quiet: true,
    });
    assert.equal(again[0]?.status, "cached");
    assert.equal(s.log.length, before, "a cached task makes no request");
    // A byte changed in place (same size): cached without --verify; with it, fetched again and
    // said why. A file gone: fetched again, said too.
    const dev = join(cacheDir, "glue/RTE/dev.tsv");
    await Deno.writeTextFile(dev, "X" + DEV.slice(1));
    const opts = { tasks: ["glue/rte"], cacheDir, endpoints: s.endpoints, taskSources: sources };
    const lines: string[] = [];
    // The task's lines (the first one names the test server's endpoints).
    const log = (l: string) => l.startsWith("glue/rte: ") && lines.push(l);
    assert.equal((await download({ ...opts, log }))[0]?.status, "cached");
    assert.deepEqual(lines, ["glue/rte: up to date"]);
    lines.length = 0;
    assert.equal((await download({ ...opts, log, verify: true }))[0]?.status, "official");
    assert.equal(
      lines[0],
      `glue/rte: ${dev} has another sha256 than the manifest lists (changed since it was ` +
        "downloaded): fetching the task again",
    );
    assert.equal(await readText(dev), DEV, "the official bytes are back");
    await Deno.remove(dev);
    lines.length = 0;
    assert.equal((await download({ ...opts, log }))[0]?.status, "official");
    assert.equal(lines[0], `glue/rte: ${dev} is gone: fetching the task again`);
  });
});

Deno.test("download() failing for some tasks throws a DownloadError with each failure and the other results", async () => {
  const zip = makeZip();
  const s = serve({ "/glue/RTE.zip": { body: zip } });
  const cacheDir = await Deno.makeTempDir();
  // A second tiny task whose official zip the server does not have (HTTP 404).
  const wnli = tinyWnli();
  try {
    const err = await download({
      tasks: ["wnli", "rte"],
      cacheDir,
      source: "official",
      endpoints: s.endpoints,
      taskSources: [tinyRte(), wnli],
      quiet: true,
      retries: 0,
    }).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof DownloadError, String(err));
    assert.equal(err.name, "DownloadError");
    const reason = `GET ${s.endpoints.glue}/WNLI.zip: HTTP 404`;
    assert.deepEqual(err.failures, [{ task: "glue/wnli", reason }]);
    assert.deepEqual(err.results, [{
      task: "glue/rte",
      status: "official",
      files: ["glue/RTE/train.tsv", "glue/RTE/dev.tsv"],
    }]);
    // The message the CLI prints: the count, each failure on its own line, then the advice.
    const lines = err.message.split("\n");
    assert.deepEqual(lines.slice(0, 2), [
      "download failed for 1 task(s):",
      `  glue/wnli: ${reason}`,
    ]);
    assert.match(
      lines[2]!,
      /^Interrupted transfers stay in downloads\/\*\.part .*to deno task bench or pretrain as --data-dir \(or HYPERPROMPT_DATA\); to fetch from a mirror of the official hosts, set HYPERPROMPT_DATA_ENDPOINTS \(deno task download --help\)\.$/,
    );
    // The task that did not fail was written.
    assert.equal(await readText(join(cacheDir, "glue/RTE/train.tsv")), TRAIN);
  } finally {
    await s.server.shutdown();
    await Deno.remove(cacheDir, { recursive: true });
  }
});

Deno.test("archive sha256 prefix mismatch: error names the file, no cache entry", async () => {
  await withServer({ "/glue/RTE.zip": { body: makeZip() } }, async (s, cacheDir) => {
    await assert.rejects(
      download({
        tasks: ["rte"],
        cacheDir,
        source: "official",
        endpoints: s.endpoints,
        taskSources: [tinyRte({ zipPrefix: "00000000" })],
        quiet: true,
      }),
      /RTE\.zip.*sha256 [0-9a-f]{64} does not start with the expected 00000000/,
    );
    assert.deepEqual(await listFiles(cacheDir), ["manifest.json"]);
    assert.deepEqual((await readManifest(cacheDir)).files, {});
  });
});

Deno.test("extracted file sha256 or row count mismatch: error, nothing written", async () => {
  await withServer({ "/glue/RTE.zip": { body: makeZip() } }, async (s, cacheDir) => {
    const base = {
      tasks: ["rte"],
      cacheDir,
      source: "official" as const,
      endpoints: s.endpoints,
      quiet: true,
    };
    await assert.rejects(
      download({ ...base, taskSources: [tinyRte({ trainSha: "ab".repeat(32) })] }),
      /glue\/RTE\/train\.tsv \(official\): sha256 [0-9a-f]{64}, expected (ab){32}/,
    );
    await assert.rejects(
      download({ ...base, taskSources: [tinyRte({ trainRows: 4 })] }),
      /glue\/RTE\/train\.tsv \(official\): 3 rows, expected 4/,
    );
    const left = await listFiles(cacheDir);
    assert.ok(left.every((f) => !f.startsWith("glue/")), `no layout file written: ${left}`);
    assert.deepEqual((await readManifest(cacheDir)).files, {});
  });
});

Deno.test("a task file that cannot be put in place: error, no temp file, no manifest entry", async () => {
  await withServer({ "/glue/RTE.zip": { body: makeZip() } }, async (s, cacheDir) => {
    // A folder where dev.tsv goes: its rename fails after every file was written to a temp name.
    await Deno.mkdir(join(cacheDir, "glue/RTE/dev.tsv"), { recursive: true });
    await Deno.writeTextFile(join(cacheDir, "glue/RTE/dev.tsv/keep"), "x");
    await assert.rejects(
      downloadRte(s, cacheDir),
    );
    const left = await listFiles(cacheDir);
    assert.ok(left.every((f) => !f.includes(".tmp")), `no temp file left: ${left}`);
    assert.deepEqual((await readManifest(cacheDir)).files, {});
  });
});

Deno.test("interrupted download resumes from .part with a Range request", async () => {
  const zip = makeZip(TRAIN + "3\tlong " + "x".repeat(5000) + ".\tY.\tentailment\n");
  const cutAt = Math.floor(zip.length / 2);
  await withServer({ "/glue/RTE.zip": { body: zip, cutAt } }, async (s, cacheDir) => {
    const train = TRAIN + "3\tlong " + "x".repeat(5000) + ".\tY.\tentailment\n";
    const sources = [
      tinyRte({
        trainRows: 4,
        trainSha: sha256Hex(enc.encode(train)),
        zipPrefix: sha256Hex(zip).slice(0, 8),
      }),
    ];
    const opts = {
      tasks: ["rte"],
      cacheDir,
      source: "official" as const,
      endpoints: s.endpoints,
      taskSources: sources,
      quiet: true,
    };
    // First run: no retries, the cut leaves a partial file behind and fails.
    await assert.rejects(download({ ...opts, retries: 0 }));
    const part = join(cacheDir, "downloads", "glue-RTE.zip.part");
    const partSize = (await Deno.stat(part)).size;
    assert.ok(partSize > 0 && partSize < zip.length, `partial ${partSize} of ${zip.length}`);
    // Second run resumes with Range from the partial size.
    const res = await download(opts);
    assert.equal(res[0]?.status, "official");
    const last = s.log[s.log.length - 1]!;
    assert.equal(last.range, `bytes=${partSize}-`);
    assert.equal(await readText(join(cacheDir, "glue/RTE/train.tsv")), train);
    assert.equal(
      (await readManifest(cacheDir)).archives[`${s.endpoints.glue}/RTE.zip`]?.sha256,
      sha256Hex(zip),
    );
  });
});

Deno.test("a finished download's rename into downloads/ is followed by a flush of that folder", async () => {
  if (Deno.build.os === "windows") return; // syncDir does nothing there
  const zip = makeZip();
  await withServer({ "/glue/RTE.zip": { body: zip } }, async (s, cacheDir) => {
    const flushes = await recordFlushes(() => downloadRte(s, cacheDir, { keepDownloads: true }));
    // First the atomic write of the part's record of its source, then the rename.
    assert.deepEqual(flushesOf(flushes, join(cacheDir, "downloads")), [
      ["glue-RTE.zip.part", "glue-RTE.zip.part.json"],
      ["glue-RTE.zip"],
    ]);
  });
});

Deno.test("a raw download's data is flushed to disk before it is renamed into place", async () => {
  const zip = makeZip();
  const s = serve({ "/glue/RTE.zip": { body: zip } });
  const cacheDir = await Deno.makeTempDir();
  const rename = Deno.rename;
  const events: string[] = [];
  Deno.rename = (from, to) => {
    if (String(from).endsWith("glue-RTE.zip.part")) events.push("renamed");
    return rename(from, to);
  };
  try {
    await withOpenedFiles((file, path, options) => {
      if (path.endsWith("glue-RTE.zip.part") && options?.write) {
        const syncData = file.syncData.bind(file);
        const sync = file.sync.bind(file);
        file.syncData = () => (events.push("flushed"), syncData());
        file.sync = () => (events.push("flushed"), sync());
      }
      return file;
    }, () => downloadRte(s, cacheDir));
    assert.deepEqual(events, ["flushed", "renamed"]);
  } finally {
    Deno.rename = rename;
    await s.server.shutdown();
    await Deno.remove(cacheDir, { recursive: true });
  }
});

Deno.test("built-in retry resumes a cut transfer within one call", async () => {
  const zip = makeZip();
  await withServer({ "/glue/RTE.zip": { body: zip, cutAt: 100 } }, async (s, cacheDir) => {
    const res = await downloadRte(s, cacheDir, { retries: 2 });
    assert.equal(res[0]?.status, "official");
    assert.deepEqual(s.log.map((l) => l.range), [null, "bytes=100-"]);
  });
});

Deno.test("a corrupt or truncated zip is an error naming it and its URL; it is deleted, never reused", async () => {
  const zip = makeZip();
  const routes: Record<string, Served> = {
    // A proxy's page served with status 200, then a zip cut short (no size is known to catch it).
    "/glue/RTE.zip": { body: enc.encode("<html>proxy login</html>") },
  };
  await withServer(routes, async (s, cacheDir) => {
    const url = `${s.endpoints.glue}/RTE.zip`;
    const saved = join(cacheDir, "downloads", "glue-RTE.zip");
    for (const bad of [routes["/glue/RTE.zip"]!.body, zip.subarray(0, zip.length - 30)]) {
      routes["/glue/RTE.zip"] = { body: bad };
      const err = await downloadRte(s, cacheDir, { retries: 0 }).then(
        () => undefined,
        (e: Error) => e,
      );
      assert.ok(err instanceof DownloadError, `rejected: ${err}`);
      assert.equal(err.failures[0]?.task, "glue/rte");
      assert.ok(
        err.failures[0]?.reason.includes(`${saved} from ${url}: not a readable zip (`),
        err.failures[0]?.reason,
      );
      assert.match(err.failures[0]?.reason ?? "", /\(deleted\)$/);
      const left = await listFiles(cacheDir);
      assert.ok(!left.includes("downloads/glue-RTE.zip"), `bad zip kept: ${left}`);
      assert.equal((await readManifest(cacheDir)).archives[url], undefined);
    }
    // The server now serves the real zip: the next run fetches it again (no stale reuse).
    routes["/glue/RTE.zip"] = { body: zip };
    const res = await downloadRte(s, cacheDir);
    assert.equal(res[0]?.status, "official");
    assert.equal(await readText(join(cacheDir, "glue/RTE/train.tsv")), TRAIN);
  });
});

Deno.test("zipEntryLimit(): 100 times the archive, at most 1 GiB", () => {
  assert.equal(zipEntryLimit(1000), 100_000);
  assert.equal(zipEntryLimit(312_783_507), 2 ** 30);
});

Deno.test("a zip entry declaring far more than its archive (a zip bomb) is refused unread, the zip deleted (h382)", async () => {
  // 4 MB of zeros in a zip of a few KB: 1000 times the archive and more.
  const bomb = zipSync({
    "RTE/train.tsv": enc.encode(TRAIN),
    "RTE/dev.tsv": new Uint8Array(4 << 20),
  });
  assert.ok(bomb.length * 100 < 4 << 20, `${bomb.length} bytes`);
  await withServer({ "/glue/RTE.zip": { body: bomb } }, async (s, cacheDir) => {
    const err = await downloadRte(s, cacheDir, { retries: 0 }).then(
      () => undefined,
      (e: Error) => e,
    );
    assert.ok(err instanceof DownloadError, `rejected: ${err}`);
    assert.match(
      err.failures[0]?.reason ?? "",
      new RegExp(
        `not a readable zip \\(entry RTE/dev\\.tsv declares ${4 << 20} bytes, more than ` +
          `${bomb.length * 100} \\(100× the archive's ${bomb.length}, at most 1073741824\\): a ` +
          "damaged or hostile archive\\) \\(deleted\\)$",
      ),
    );
    const left = await listFiles(cacheDir);
    assert.ok(!left.includes("downloads/glue-RTE.zip"), `bomb kept: ${left}`);
    assert.ok(!left.includes("glue/RTE/dev.tsv"));
  });
});

Deno.test("a zip without a wanted entry is an error naming the entry; it is deleted", async () => {
  const foreign = zipSync({ "CoLA/train.tsv": enc.encode("x\n") });
  await withServer({ "/glue/RTE.zip": { body: foreign } }, async (s, cacheDir) => {
    await assert.rejects(
      downloadRte(s, cacheDir, { retries: 0 }),
      /downloads\/glue-RTE\.zip from http:\/\/127\.0\.0\.1:\d+\/glue\/RTE\.zip: no entry RTE\/train\.tsv .*\(deleted\)/,
    );
    assert.ok(!(await listFiles(cacheDir)).includes("downloads/glue-RTE.zip"));
  });
});

Deno.test("a body that stalls is given up after the idle timeout and resumed, within one call", async () => {
  const zip = makeZip();
  await withServer({ "/glue/RTE.zip": { body: zip, stallAt: 100 } }, async (s, cacheDir) => {
    const lines: string[] = [];
    const res = await downloadRte(s, cacheDir, {
      retries: 1,
      // 1 s, not less: a healthy transfer paused that long (GC, a loaded 2-core runner) would be
      // given up too, one retry more than asserted.
      idleTimeoutMs: 1000,
      log: (l) => lines.push(l),
    });
    assert.equal(res[0]?.status, "official");
    assert.deepEqual(s.log.map((l) => l.range), [null, "bytes=100-"]);
    assert.ok(
      lines.some((l) =>
        l ===
          `glue-RTE.zip: GET ${s.endpoints.glue}/RTE.zip: no data for 1 s (at 100 B); retrying in 1 s`
      ),
      lines.join("\n"),
    );
  });
});

Deno.test("a request with no response is given up after the idle timeout, then retried", async () => {
  const zip = makeZip();
  await withServer({ "/glue/RTE.zip": { body: zip } }, async (s, cacheDir) => {
    const signals: (AbortSignal | null | undefined)[] = [];
    let timer: ReturnType<typeof setTimeout> | undefined;
    // The first request never answers (it fails by itself after 5 s, should nothing abort it).
    const hanging: typeof fetch = (input, init) => {
      signals.push(init?.signal);
      if (signals.length > 1) return fetch(input, init);
      return new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error("late")), 5000);
        init?.signal?.addEventListener("abort", () => {
          clearTimeout(timer);
          reject(init.signal!.reason);
        });
      });
    };
    const lines: string[] = [];
    try {
      const res = await downloadRte(s, cacheDir, {
        retries: 1,
        idleTimeoutMs: 1000, // see above
        fetch: hanging,
        log: (l) => lines.push(l),
      });
      assert.equal(res[0]?.status, "official");
    } finally {
      clearTimeout(timer);
    }
    assert.equal(signals[0]?.aborted, true, "the hanging request was aborted");
    assert.ok(
      lines.includes(
        `glue-RTE.zip: GET ${s.endpoints.glue}/RTE.zip: no response within 1 s; retrying in 1 s`,
      ),
      lines.join("\n"),
    );
  });
});

Deno.test("GLUE's and SuperGLUE's RTE.zip do not share a download: a cut GLUE part is not resumed with SuperGLUE's bytes", async () => {
  const glueTrain = TRAIN + "3\tlong " + "x".repeat(5000) + ".\tY.\tentailment\n";
  const glueZip = makeZip(glueTrain);
  const cutAt = Math.floor(glueZip.length / 2);
  const train = '{"premise": "A.", "hypothesis": "B.", "label": "entailment", "idx": 0}\n';
  const val = '{"premise": "C.", "hypothesis": "D.", "label": "not_entailment", "idx": 0}\n';
  const sgZip = zipSync({ "RTE/train.jsonl": enc.encode(train), "RTE/val.jsonl": enc.encode(val) });
  const sgRte: TaskSource = {
    id: "super_glue/rte",
    name: "rte_sg",
    benchmark: "super_glue",
    folder: "RTE",
    hfConfig: "rte",
    files: ["train", "val"].map((n) => ({
      path: `super_glue/RTE/${n}.jsonl`,
      split: n === "train" ? "train" : "validation",
      hfSplit: n === "train" ? "train" : "validation",
      rows: 1,
      header: false,
    })),
    official: {
      kind: "zip",
      url: "{superGlue}/RTE.zip",
      sha256Prefix: sha256Hex(sgZip).slice(0, 8),
      innerDir: "RTE",
    },
  };
  const routes: Record<string, Served> = {
    "/glue/RTE.zip": { body: glueZip, cutAt },
    "/sg/RTE.zip": { body: sgZip },
  };
  await withServer(routes, async (s, cacheDir) => {
    const opts = {
      tasks: ["rte", "super_glue/rte"],
      taskSources: [tinyRte({ trainRows: 4, trainSha: sha256Hex(enc.encode(glueTrain)) }), sgRte],
    };
    const err = await downloadRte(s, cacheDir, { ...opts, retries: 0 }).then(
      () => undefined,
      (e: Error) => e,
    );
    assert.ok(err instanceof DownloadError, `rejected: ${err}`);
    assert.deepEqual(err.failures.map((f) => f.task), ["glue/rte"]);
    assert.deepEqual(err.results.map((r) => [r.task, r.status]), [["super_glue/rte", "official"]]);
    assert.equal(await readText(join(cacheDir, "super_glue/RTE/train.jsonl")), train);
    // GLUE's part is still there, whole, and the next run resumes it.
    assert.equal((await Deno.stat(join(cacheDir, "downloads/glue-RTE.zip.part"))).size, cutAt);
    const res = await downloadRte(s, cacheDir, opts);
    assert.deepEqual(res.map((r) => [r.task, r.status]), [
      ["glue/rte", "official"],
      ["super_glue/rte", "cached"],
    ]);
    assert.deepEqual(s.log.filter((l) => l.path === "/glue/RTE.zip").map((l) => l.range), [
      null,
      `bytes=${cutAt}-`,
    ]);
    assert.equal(await readText(join(cacheDir, "glue/RTE/train.tsv")), glueTrain);
  });
});

Deno.test("a part begun from one mirror is not resumed from another: restarted from 0, saying so", async () => {
  // Mirror A's zip and mirror B's hold the same files, zipped differently (another order, so
  // other bytes): A's first half joined to B's second half is no zip at all.
  const trainA = TRAIN + "3\tlong " + "x".repeat(5000) + ".\tY.\tentailment\n";
  const zipA = makeZip(trainA);
  const zipB = zipSync({
    "RTE/dev.tsv": enc.encode(DEV),
    "RTE/train.tsv": enc.encode(trainA),
  });
  assert.notDeepEqual(zipA, zipB);
  const cutAt = Math.floor(zipA.length / 2);
  const b = serve({ "/glue/RTE.zip": { body: zipB } });
  try {
    await withServer({ "/glue/RTE.zip": { body: zipA, cutAt } }, async (a, cacheDir) => {
      const opts = {
        taskSources: [tinyRte({ trainRows: 4, trainSha: sha256Hex(enc.encode(trainA)) })],
      };
      // From A: cut half-way, the part and its record stay.
      await assert.rejects(downloadRte(a, cacheDir, { ...opts, retries: 0 }), DownloadError);
      const part = join(cacheDir, "downloads", "glue-RTE.zip.part");
      assert.equal((await Deno.stat(part)).size, cutAt);
      // The next run is pointed at B (--endpoint or HYPERPROMPT_DATA_ENDPOINTS changed).
      const lines: string[] = [];
      const res = await downloadRte(b, cacheDir, { ...opts, log: (l) => lines.push(l) });
      assert.deepEqual(res.map((r) => [r.task, r.status]), [["glue/rte", "official"]]);
      assert.deepEqual(b.log.map((r) => r.range), [null], "B's file fetched whole");
      const from = `${a.endpoints.glue}/RTE.zip`;
      const to = `${b.endpoints.glue}/RTE.zip`;
      assert.deepEqual(lines.filter((l) => l.includes("restarting")), [
        `glue-RTE.zip: the ${cutAt} B part came from ${from}, not ${to}; restarting from 0`,
      ]);
      assert.equal(await readText(join(cacheDir, "glue/RTE/train.tsv")), trainA);
      assert.equal((await readManifest(cacheDir)).archives[to]?.sha256, sha256Hex(zipB));
      // Nothing of the transfer is left: no part, no record.
      assert.deepEqual(await listFiles(join(cacheDir, "downloads")), []);
    });
  } finally {
    await b.server.shutdown();
  }
});

/** {@link tinyRte} moved to another GLUE folder and config (`WNLI`, `wnli`): a second task. */
function tinyOther(folder: string, config: string): TaskSource {
  const rte = tinyRte();
  return {
    ...rte,
    id: `glue/${config}`,
    name: config,
    folder,
    hfConfig: config,
    files: rte.files.map((f) => ({ ...f, path: f.path.replace("/RTE/", `/${folder}/`) })),
    official: { kind: "zip", url: `{glue}/${folder}.zip`, innerDir: folder },
  };
}

Deno.test("concurrent runs sharing a cache keep each other's manifest entries and fetch a task once", async () => {
  const wnliZip = zipSync({
    "WNLI/train.tsv": enc.encode(TRAIN),
    "WNLI/dev.tsv": enc.encode(DEV),
  });
  const routes = { "/glue/RTE.zip": { body: makeZip() }, "/glue/WNLI.zip": { body: wnliZip } };
  await withServer(routes, async (s, cacheDir) => {
    const taskSources = [tinyRte(), tinyOther("WNLI", "wnli")];
    // Two runs on different tasks, one on the same task as the first: all at once.
    const [a, b, c] = await Promise.all([
      downloadRte(s, cacheDir, { taskSources, tasks: ["rte"] }),
      downloadRte(s, cacheDir, { taskSources, tasks: ["wnli"] }),
      downloadRte(s, cacheDir, { taskSources, tasks: ["rte"] }),
    ]);
    assert.deepEqual(b.map((r) => r.status), ["official"]);
    assert.deepEqual([a[0]?.status, c[0]?.status].sort(), ["cached", "official"]);
    assert.equal(s.log.filter((l) => l.path === "/glue/RTE.zip").length, 1, "RTE fetched once");
    const m = await readManifest(cacheDir);
    assert.deepEqual(Object.keys(m.files).sort(), [
      "glue/RTE/dev.tsv",
      "glue/RTE/train.tsv",
      "glue/WNLI/dev.tsv",
      "glue/WNLI/train.tsv",
    ]);
    assert.deepEqual(Object.keys(m.archives).sort(), [
      `${s.endpoints.glue}/RTE.zip`,
      `${s.endpoints.glue}/WNLI.zip`,
    ]);
    assert.equal(await readText(join(cacheDir, "glue/WNLI/train.tsv")), TRAIN);
  });
});

Deno.test("a run that waits for another process's download of a task says so", async () => {
  await withServer({ "/glue/RTE.zip": { body: makeZip() } }, async (s, cacheDir) => {
    // Another process holds the task's lock (as its download does) a while.
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let locked!: () => void;
    const isLocked = new Promise<void>((r) => (locked = r));
    const other = withFileLock(join(cacheDir, "locks", "glue-rte.lock"), async () => {
      locked();
      await held;
    }, { remove: true });
    await isLocked;
    const lines: string[] = [];
    const run = downloadRte(s, cacheDir, { log: (l) => lines.push(l) });
    await new Promise((r) => setTimeout(r, LOCK_WAIT_NOTICE_MS + 300));
    assert.deepEqual(lines.filter((l) => !l.startsWith("endpoints: ")), [
      `glue/rte: waiting for another process that fetches it into ${cacheDir}`,
    ]);
    release();
    await other;
    assert.deepEqual((await run).map((r) => r.status), ["official"]);
  });
});

function rteParquet(s1: string[], s2: string[], labels: bigint[], firstIdx = 0): Uint8Array {
  const buf = parquetWriteBuffer({
    columnData: [
      { name: "sentence1", data: s1, type: "STRING" },
      { name: "sentence2", data: s2, type: "STRING" },
      { name: "label", data: labels, type: "INT64" },
      { name: "idx", data: s1.map((_, i) => firstIdx + i), type: "INT32" },
    ],
  });
  return new Uint8Array(buf);
}

Deno.test("failing primary falls back to Hugging Face parquet, converted to the official TSV", async () => {
  const hf = "/hf/datasets/nyu-mll/glue/resolve/main/rte";
  await withServer({
    "/glue/RTE.zip": { status: 500, body: new Uint8Array() },
    [`${hf}/train-00000-of-00001.parquet`]: {
      body: rteParquet(["A b.", 'C "d".', "E f."], ["A.", "C.", "G."], [0n, 1n, 0n]),
    },
    [`${hf}/validation-00000-of-00001.parquet`]: {
      body: rteParquet(["X y.", "Z."], ["X.", "W."], [0n, 1n]),
    },
  }, async (s, cacheDir) => {
    const counted: string[] = [];
    const res = await downloadRte(s, cacheDir, {
      source: "auto",
      retries: 0,
      countRows: (data, spec, where) => (counted.push(where), countRowsBytes(data, spec, where)),
    });
    assert.equal(res[0]?.status, "parquet");
    // Each converted file's rows are counted once, as it is converted, not again to verify it.
    assert.deepEqual(counted, ["glue/RTE/train.tsv", "glue/RTE/dev.tsv"]);
    assert.match(res[0]?.fallbackReason ?? "", /HTTP 500/);
    // Same text as the official files (RTE has no column the parquet lacks).
    assert.equal(await readText(join(cacheDir, "glue/RTE/train.tsv")), TRAIN);
    assert.equal(await readText(join(cacheDir, "glue/RTE/dev.tsv")), DEV);
    const m = await readManifest(cacheDir);
    assert.equal(m.files["glue/RTE/train.tsv"]?.source, "parquet");
    // Byte-identical to the official file, so its known sha256 matched; dev has none known.
    assert.equal(m.files["glue/RTE/train.tsv"]?.verified, "sha256");
    assert.equal(m.files["glue/RTE/dev.tsv"]?.verified, "rows");
  });
});

Deno.test("a local file error while writing the official files fails the task naming the file; no parquet fallback onto the same disk", async () => {
  const hf = "/hf/datasets/nyu-mll/glue/resolve/main/rte";
  const routes = {
    "/glue/RTE.zip": { body: makeZip() },
    [`${hf}/train-00000-of-00001.parquet`]: {
      body: rteParquet(["A b.", 'C "d".', "E f."], ["A.", "C.", "G."], [0n, 1n, 0n]),
    },
    [`${hf}/validation-00000-of-00001.parquet`]: {
      body: rteParquet(["X y.", "Z."], ["X.", "W."], [0n, 1n]),
    },
  };
  // Where the disk is full: the raw download's part file, or the task files' temp files.
  for (const [where, fails] of [["part", /\.part$/], ["task file", /\.tsv\.tmp-/]] as const) {
    await withServer(routes, async (s, cacheDir) => {
      const lines: string[] = [];
      let error: unknown;
      await withOpenedFiles((file, path) => {
        if (fails.test(path)) file.write = () => Promise.reject(diskFullError());
        return file;
      }, () =>
        downloadRte(s, cacheDir, { source: "auto", retries: 2, log: (l) => lines.push(l) })
          .catch((e) => (error = e)));
      assert.ok(error instanceof DownloadError, `${where}: ${error}`);
      assert.equal(error.failures.length, 1);
      const reason = error.failures[0]!.reason;
      const file = where === "part"
        ? join(cacheDir, "downloads", "glue-RTE.zip.part")
        : join(cacheDir, "glue/RTE/train.tsv");
      assert.ok(reason.startsWith(`official: ${file}: writing `), `${where}: ${reason}`);
      assert.match(reason, /failed: No space left on device \(os error 28\)/);
      assert.match(reason, /parquet fallback, which writes to the same folder, was not tried/);
      // No parquet requested, no "trying Hugging Face parquet" line; the zip fetched once.
      assert.deepEqual(s.log.map((r) => r.path), ["/glue/RTE.zip"], where);
      assert.ok(!lines.some((l) => /parquet/.test(l)), lines.join("\n"));
      assert.deepEqual((await readManifest(cacheDir)).files, {});
    });
  }
  // Any other failure of the official files still falls back (the zip answering 500).
  await withServer(
    { ...routes, "/glue/RTE.zip": { status: 500, body: new Uint8Array() } },
    async (s, cacheDir) => {
      const res = await downloadRte(s, cacheDir, { source: "auto", retries: 0 });
      assert.equal(res[0]?.status, "parquet");
    },
  );
});

Deno.test("after a local file error the remaining tasks are not tried: one line says why, the finished ones are kept", async () => {
  const hf = "/hf/datasets/nyu-mll/glue/resolve/main";
  const routes = {
    "/glue/RTE.zip": { body: makeZip() },
    "/glue/WNLI.zip": { body: makeZip() },
    [`${hf}/rte/train-00000-of-00001.parquet`]: {
      body: rteParquet(["A b.", 'C "d".', "E f."], ["A.", "C.", "G."], [0n, 1n, 0n]),
    },
  };
  const taskSources = [
    tinyRte(),
    tinyWnli(),
    tinyOther("CoLA", "cola"),
    tinyOther("SST-2", "sst2"),
  ];
  const cases = [
    // The full disk hits WNLI's raw download; COLA and SST-2 are not tried.
    { fails: /glue-WNLI\.zip\.part$/, source: "auto", failed: "glue/wnli", skipped: 2 },
    // COLA's lock file cannot be locked; WNLI's 404 before it (a network error) did not stop RTE
    // nor COLA from being tried; SST-2 is not.
    { fails: /glue-cola\.lock$/, source: "official", failed: "glue/cola", skipped: 1 },
    // The parquet source's part file: the first task fails, the three others are not tried.
    { fails: /glue-rte-train\.parquet\.part$/, source: "parquet", failed: "glue/rte", skipped: 3 },
  ] as const;
  for (const c of cases) {
    await withServer(routes, async (s, cacheDir) => {
      const lines: string[] = [];
      let error: unknown;
      await withOpenedFiles((file, path) => {
        if (c.fails.test(path)) {
          file.write = () => Promise.reject(diskFullError());
          file.lock = () => Promise.reject(diskFullError());
        }
        return file;
      }, () =>
        downloadRte(s, cacheDir, {
          tasks: ["rte", "wnli", "cola", "sst2"],
          taskSources,
          source: c.source,
          retries: 0,
          log: (l) => lines.push(l),
        }).catch((e) => (error = e)));
      const at = `${c.fails}`;
      assert.ok(error instanceof DownloadError, `${at}: ${error}`);
      const failed = error.failures.find((f) => f.task === c.failed);
      assert.ok(failed !== undefined && !failed.notTried, `${at}: ${failed?.reason}`);
      assert.equal(failed.local, true, `${at}: a local failure, marked`);
      // The local error's message, as fsError names it: the file, then what failed.
      const local =
        /(\/[^ ]+): (writing|locking)[^;]* failed: No space left on device \(os error 28\)/
          .exec(failed.reason);
      assert.ok(local !== null && c.fails.test(local[1]!), `${at}: ${failed.reason}`);
      const skipped = error.failures.filter((f) => f.notTried);
      const ids = ["glue/rte", "glue/wnli", "glue/cola", "glue/sst2"].slice(4 - c.skipped);
      assert.deepEqual(skipped.map((f) => f.task), ids, at);
      const reason = `not tried: the previous write failed on the local disk: ${local[0]}`;
      assert.ok(skipped.every((f) => f.reason === reason), `${at}: ${skipped[0]?.reason}`);
      // One line for the tasks not tried, in the log and in the message.
      const said = `${ids.join(", ")}: ${reason}`;
      assert.deepEqual(lines.filter((l) => l.includes("not tried")), [said], at);
      const message = error.message.split("\n");
      assert.equal(
        message[0],
        `download failed for ${error.failures.length - c.skipped} task(s), ${c.skipped} not tried:`,
      );
      assert.equal(message.filter((l) => l.includes("not tried: ")).length, 1, error.message);
      assert.ok(message.includes(`  ${said}`), error.message);
      assert.ok(
        message.includes("Free space on that disk or make the folder writable, then run again."),
      );
      // Nothing requested for the tasks not tried; no parquet fallback after a local error.
      const asked = s.log.map((r) => r.path);
      for (const folder of ids.map((id) => taskSources.find((t) => t.id === id)!.folder)) {
        assert.ok(!asked.some((p) => p.includes(`/${folder}.zip`)), `${at}: ${asked}`);
      }
      if (c.source === "auto") assert.ok(!asked.some((p) => p.startsWith("/hf/")), `${asked}`);
      // What finished before the error is in the results, on disk and in the manifest.
      const done = c.source === "parquet" ? [] : ["glue/rte"];
      assert.deepEqual(error.results.map((r) => r.task), done, at);
      const listed = Object.values((await readManifest(cacheDir)).files).map((f) => f.task);
      assert.deepEqual([...new Set(listed)], done, at);
      if (done.length > 0) {
        assert.ok(
          message.includes("Finished before it (kept, listed in the manifest): glue/rte=official"),
        );
      }
    });
  }
});

/**
 * Downloads the tiny RTE from Hugging Face parquet whose train file is `train` (validation good),
 * expects `error`, and checks that nothing of it stays: no task file, no raw parquet, no archive
 * entry (so the next run downloads it again instead of reusing it).
 */
async function expectParquetDiscarded(train: Uint8Array, error: RegExp): Promise<void> {
  const hf = "/hf/datasets/nyu-mll/glue/resolve/main/rte";
  await withServer({
    [`${hf}/train-00000-of-00001.parquet`]: { body: train },
    [`${hf}/validation-00000-of-00001.parquet`]: {
      body: rteParquet(["X y.", "Z."], ["X.", "W."], [0n, 1n]),
    },
  }, async (s, cacheDir) => {
    await assert.rejects(
      downloadRte(s, cacheDir, { source: "parquet", retries: 0 }),
      error,
    );
    const left = await listFiles(cacheDir);
    assert.ok(left.every((f) => !f.startsWith("glue/")), `${left}`);
    assert.ok(!left.includes("downloads/glue-rte-train.parquet"), `bad file kept: ${left}`);
    const urls = Object.keys((await readManifest(cacheDir)).archives);
    assert.ok(urls.every((u) => !u.includes("/train-")), `archive entry kept: ${urls}`);
  });
}

Deno.test("parquet row-count mismatch is an error naming the file; the parquet is not kept", async () => {
  await expectParquetDiscarded(
    rteParquet(["A."], ["B."], [0n]),
    /train-00000-of-00001\.parquet: wrong size \(1 rows, expected 3\) \(deleted\)/,
  );
});

Deno.test("a split stored as several parquet shards is found in the hub's listing and joined in shard order", async () => {
  const hf = "/hf/datasets/nyu-mll/glue/resolve/main/rte";
  const listing = "/hf/api/datasets/nyu-mll/glue/tree/main/rte";
  const routes: Record<string, Served> = {
    // Listed out of order, beside another split's file: shard order is restored, others ignored.
    [listing]: {
      body: enc.encode(JSON.stringify([
        { type: "file", path: "rte/train-00001-of-00002.parquet" },
        { type: "file", path: "rte/validation-00000-of-00001.parquet" },
        { type: "file", path: "rte/train-00000-of-00002.parquet" },
      ])),
    },
    [`${hf}/train-00000-of-00002.parquet`]: {
      body: rteParquet(["A b.", 'C "d".'], ["A.", "C."], [0n, 1n]),
    },
    [`${hf}/train-00001-of-00002.parquet`]: { body: rteParquet(["E f."], ["G."], [0n], 2) },
    [`${hf}/validation-00000-of-00001.parquet`]: {
      body: rteParquet(["X y.", "Z."], ["X.", "W."], [0n, 1n]),
    },
  };
  await withServer(routes, async (s, cacheDir) => {
    const res = await downloadRte(s, cacheDir, { source: "parquet", retries: 0 });
    assert.equal(res[0]?.status, "parquet");
    assert.equal(await readText(join(cacheDir, "glue/RTE/train.tsv")), TRAIN);
    assert.equal(await readText(join(cacheDir, "glue/RTE/dev.tsv")), DEV);
    assert.deepEqual(s.log.map((l) => l.path), [
      `${hf}/train-00000-of-00001.parquet`, // 404: not one file
      listing,
      `${hf}/train-00000-of-00002.parquet`,
      `${hf}/train-00001-of-00002.parquet`,
      `${hf}/validation-00000-of-00001.parquet`,
    ]);
    const m = await readManifest(cacheDir);
    assert.deepEqual(m.files["glue/RTE/train.tsv"]?.from, [
      `${s.endpoints.hf}/datasets/nyu-mll/glue/resolve/main/rte/train-00000-of-00002.parquet`,
      `${s.endpoints.hf}/datasets/nyu-mll/glue/resolve/main/rte/train-00001-of-00002.parquet`,
      `${s.endpoints.hf}/datasets/nyu-mll/glue/resolve/main/rte/validation-00000-of-00001.parquet`,
    ], "the task's sources, each shard named");
  });
  // A shard of the wrong revision (one row short): every shard of the split is discarded.
  routes[`${hf}/train-00001-of-00002.parquet`] = { body: rteParquet([], [], []) };
  await withServer(routes, async (s, cacheDir) => {
    await assert.rejects(
      downloadRte(s, cacheDir, { source: "parquet", retries: 0 }),
      /train-00000-of-00002\.parquet, .*train-00001-of-00002\.parquet: wrong size \(2 rows, expected 3\) \(deleted\)/,
    );
    const left = await listFiles(cacheDir);
    assert.ok(left.every((f) => !/train-0000\d-of-00002/.test(f)), `shard kept: ${left}`);
    const urls = Object.keys((await readManifest(cacheDir)).archives);
    assert.ok(urls.every((u) => !u.includes("/train-")), `archive entry kept: ${urls}`);
  });
  // A listing without the split: the error starts with the split's file, then the listing.
  routes[listing] = {
    body: enc.encode(JSON.stringify([{ type: "file", path: "rte/test-00000-of-00001.parquet" }])),
  };
  await withServer(routes, async (s, cacheDir) => {
    await assert.rejects(
      downloadRte(s, cacheDir, { source: "parquet", retries: 0 }),
      (e: Error) => {
        assert.match(
          e.message,
          new RegExp(
            "glue/rte: parquet: GET http://\\S+/rte/train-00000-of-00001\\.parquet: HTTP 404, and no shards of it " +
              "either \\(http://\\S+/tree/main/rte: no train-NNNNN-of-NNNNN\\.parquet listed\\): " +
              'the parquet export of nyu-mll/glue has no "train" split of "rte" there ',
          ),
        );
        return true;
      },
    );
  });
  // No listing either (an old mirror of the hub): the error names the file, then the listing.
  delete routes[listing];
  await withServer(routes, async (s, cacheDir) => {
    await assert.rejects(
      downloadRte(s, cacheDir, { source: "parquet", retries: 0 }),
      /train-00000-of-00001\.parquet: HTTP 404, and no shards of it either \(GET \S+api\/datasets\/nyu-mll\/glue\/tree\/main\/rte: HTTP 404\)/,
    );
  });
  // A listing that is not JSON (a proxy's page): its URL, line and column, in one line.
  routes[listing] = { body: enc.encode("<html>\nrate limited\n</html>") };
  await withServer(routes, async (s, cacheDir) => {
    await assert.rejects(
      downloadRte(s, cacheDir, { source: "parquet", retries: 0 }),
      /api\/datasets\/nyu-mll\/glue\/tree\/main\/rte:1:1: invalid JSON: Unexpected token '<'[^\n]*\n/,
    );
  });
  // A listing that fails otherwise (503, not retried here): as it is, not called a missing split.
  routes[listing] = { status: 503, body: enc.encode("busy") };
  await withServer(routes, async (s, cacheDir) => {
    await assert.rejects(
      downloadRte(s, cacheDir, { source: "parquet", retries: 0 }),
      (e: Error) => /tree\/main\/rte: HTTP 503/.test(e.message) && !/no shards/.test(e.message),
    );
  });
});

Deno.test("parquetShards: shard order, other splits ignored, incomplete sets and bad listings refused", () => {
  const at = (...paths: string[]) => paths.map((path) => ({ type: "file", path }));
  assert.deepEqual(
    parquetShards(
      at(
        "mnli/validation_matched-00000-of-00001.parquet",
        "mnli/train-00001-of-00002.parquet",
        "mnli/train-00000-of-00002.parquet",
      ),
      "train",
      "L",
    ),
    ["train-00000-of-00002.parquet", "train-00001-of-00002.parquet"],
  );
  assert.deepEqual(
    parquetShards(at("mnli/validation_matched-00000-of-00001.parquet"), "validation_matched", "L"),
    ["validation_matched-00000-of-00001.parquet"],
  );
  assert.throws(
    () => parquetShards(at("mnli/validation_matched-00000-of-00001.parquet"), "validation", "L"),
    /^MissingSplitError: L: no validation-NNNNN-of-NNNNN\.parquet listed$/,
  );
  assert.throws(
    () =>
      parquetShards(
        at("r/train-00000-of-00003.parquet", "r/train-00002-of-00003.parquet"),
        "train",
        "L",
      ),
    /^Error: L: train's shards are not a full set: train-00000-of-00003\.parquet, train-00002-of-00003\.parquet$/,
  );
  assert.throws(
    () => parquetShards({ error: "x" }, "train", "L"),
    /^Error: L: expected a JSON array/,
  );
});

Deno.test("buildMrpc reproduces the official MRPC files byte-exact (from the mirror)", async () => {
  const dir = sharedPath("data", "glue", "MRPC");
  const sums = new Map(
    (await readText(sharedPath("data", "SHA256SUMS"))).trim().split("\n").map((l) => {
      const [h, p] = l.split(/\s+/);
      return [p!.replace(/^\.\//, ""), h!];
    }),
  );
  const lines = (t: string) => t.split("\n").filter((l) => l !== "");
  const train = lines(await readText(join(dir, "train.tsv")));
  const dev = lines(await readText(join(dir, "dev.tsv")));
  const test = lines(await readText(join(dir, "test.tsv")));
  // Re-create SentEval-style inputs: header (with BOM) + train and dev rows interleaved, CRLF.
  const rows: string[] = [train[0]!];
  let d = 1;
  for (let i = 1; i < train.length; i++) {
    rows.push(train[i]!);
    if (i % 9 === 0 && d < dev.length) rows.push(dev[d++]!);
  }
  while (d < dev.length) rows.push(dev[d++]!);
  const trainTxt = enc.encode(rows.join("\r\n") + "\r\n");
  const testTxt = enc.encode(
    [
      "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String",
      ...test.slice(1).map((l) => `1\t${l.split("\t").slice(1).join("\t")}`),
    ]
      .join("\r\n") + "\r\n",
  );
  const ids = await Deno.readFile(join(dir, "dev_ids.tsv"));
  const built = buildMrpc(trainTxt, testTxt, ids);
  assert.equal(sha256Hex(enc.encode(built.train)), sums.get("glue/MRPC/train.tsv"));
  assert.equal(sha256Hex(enc.encode(built.dev)), sums.get("glue/MRPC/dev.tsv"));
  assert.equal(sha256Hex(enc.encode(built.test)), sums.get("glue/MRPC/test.tsv"));
});

Deno.test("MRPC official source: built from three raw files served locally", async () => {
  const tr = enc.encode(
    "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\r\n1\t1\t2\tA.\tB.\r\n0\t3\t4\tC.\tD.\r\n",
  );
  const te = enc.encode("\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\r\n1\t5\t6\tE.\tF.\r\n");
  const ids = enc.encode("3\t4\n");
  await withServer({
    "/se/msr_paraphrase_train.txt": { body: tr },
    "/se/msr_paraphrase_test.txt": { body: te },
    "/glue/mrpc_dev_ids.tsv": { body: ids },
  }, async (s, cacheDir) => {
    const src: TaskSource = {
      id: "glue/mrpc",
      name: "mrpc",
      benchmark: "glue",
      folder: "MRPC",
      hfConfig: "mrpc",
      files: [
        { path: "glue/MRPC/train.tsv", split: "train", hfSplit: "train", rows: 1, header: true },
        {
          path: "glue/MRPC/dev.tsv",
          split: "validation",
          hfSplit: "validation",
          rows: 1,
          header: true,
        },
        { path: "glue/MRPC/test.tsv", split: "test", hfSplit: "test", rows: 1, header: true },
      ],
      official: {
        kind: "mrpc",
        parts: {
          train: { url: "{senteval}/msr_paraphrase_train.txt" },
          test: { url: "{senteval}/msr_paraphrase_test.txt" },
          devIds: { url: "{glue}/mrpc_dev_ids.tsv", sha256Prefix: sha256Hex(ids).slice(0, 8) },
        },
      },
    };
    await download({
      tasks: ["mrpc"],
      cacheDir,
      source: "official",
      endpoints: s.endpoints,
      taskSources: [src],
      quiet: true,
    });
    const h = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n";
    assert.equal(await readText(join(cacheDir, "glue/MRPC/train.tsv")), `${h}1\t1\t2\tA.\tB.\n`);
    assert.equal(await readText(join(cacheDir, "glue/MRPC/dev.tsv")), `${h}0\t3\t4\tC.\tD.\n`);
    assert.equal(
      await readText(join(cacheDir, "glue/MRPC/test.tsv")),
      "index\t#1 ID\t#2 ID\t#1 String\t#2 String\n0\t5\t6\tE.\tF.\n",
    );
  });
});

Deno.test("an unreadable parquet (HTML with status 200) is deleted, never reused", async () => {
  const hf = "/hf/datasets/nyu-mll/glue/resolve/main/rte";
  const trainUrl = `${hf}/train-00000-of-00001.parquet`;
  const good = rteParquet(["A b.", 'C "d".', "E f."], ["A.", "C.", "G."], [0n, 1n, 0n]);
  const routes: Record<string, Served> = {
    [trainUrl]: { body: enc.encode("<html>proxy login</html>") },
    [`${hf}/validation-00000-of-00001.parquet`]: {
      body: rteParquet(["X y.", "Z."], ["X.", "W."], [0n, 1n]),
    },
  };
  await withServer(routes, async (s, cacheDir) => {
    const opts = { source: "parquet", retries: 0 } as const;
    const err = await downloadRte(s, cacheDir, opts).then(() => undefined, (e: Error) => e);
    assert.match(
      err?.message ?? "",
      /train-00000-of-00001\.parquet: cannot read parquet .*\(deleted\)/,
    );
    const left = await listFiles(cacheDir);
    assert.ok(!left.includes("downloads/glue-rte-train.parquet"), `bad file kept: ${left}`);
    const m = await readManifest(cacheDir);
    assert.equal(
      m.archives[
        `${s.endpoints.hf}/datasets/nyu-mll/glue/resolve/main/rte/train-00000-of-00001.parquet`
      ],
      undefined,
    );
    assert.deepEqual(m.files, {});
    // The server now serves the real file: the next run fetches it again and succeeds.
    routes[trainUrl] = { body: good };
    const res = await downloadRte(s, cacheDir, opts);
    assert.equal(res[0]?.status, "parquet");
    assert.equal(await readText(join(cacheDir, "glue/RTE/train.tsv")), TRAIN);
  });
});

Deno.test("a parquet whose rows do not convert is deleted with its archive entry", async () => {
  // A readable parquet without the idx, sentence2 and label columns.
  await expectParquetDiscarded(
    new Uint8Array(
      parquetWriteBuffer({ columnData: [{ name: "sentence1", data: ["A."], type: "STRING" }] }),
    ),
    /train-00000-of-00001\.parquet: cannot convert its rows \(.*field idx: missing \(expected a number\); the parquet's columns: sentence1 \(another version .*\)\) \(deleted\)/,
  );
});

/** A fetch that answers `Range` past the end with 416 (and `Content-Range: bytes *\/N` if asked). */
function fetch416(body: Uint8Array, log: (string | null)[], contentRange = true): typeof fetch {
  return ((_url: string | URL | Request, init?: RequestInit) => {
    const range = new Headers(init?.headers).get("range");
    log.push(range);
    const m = range ? /^bytes=(\d+)-$/.exec(range) : null;
    if (m) {
      const start = Number(m[1]);
      if (start >= body.length) {
        const headers: HeadersInit = contentRange
          ? { "content-range": `bytes */${body.length}` }
          : {};
        return Promise.resolve(new Response("", { status: 416, headers }));
      }
      return Promise.resolve(
        new Response(body.slice(start), {
          status: 206,
          headers: { "content-range": `bytes ${start}-${body.length - 1}/${body.length}` },
        }),
      );
    }
    return Promise.resolve(new Response(body.slice()));
  }) as typeof fetch;
}

Deno.test("HTTP 416 on resume: a complete .part is accepted, a longer one is restarted", async () => {
  const axg: TaskSource = {
    id: "super_glue/axg",
    name: "axg",
    benchmark: "super_glue",
    folder: "AX-g",
    hfConfig: "axg",
    files: [
      {
        path: "super_glue/AX-g/AX-g.jsonl",
        split: "test",
        hfSplit: "test",
        rows: 2,
        header: false,
      },
    ],
    official: { kind: "zip", url: "{superGlue}/AX-g.zip", innerDir: "AX-g" },
  };
  const body = new Uint8Array(parquetWriteBuffer({
    columnData: [
      { name: "premise", data: ["P0.", "P1."], type: "STRING" },
      { name: "hypothesis", data: ["H0.", "H1."], type: "STRING" },
      { name: "idx", data: [0, 1], type: "INT32" },
      { name: "label", data: [0n, 1n], type: "INT64" },
    ],
  }));
  const part = "downloads/super_glue-axg-test.parquet.part";
  for (
    const [what, partBytes, contentRange, requests] of [
      // Killed after the last byte, before the rename: the server's total equals the part.
      ["complete", body, true, [`bytes=${body.length}-`]],
      // More bytes than the server has (the file changed): deleted, fetched again from 0.
      ["too long", new Uint8Array([...body, 1, 2, 3]), true, [`bytes=${body.length + 3}-`, null]],
      // No Content-Range: the size is unknown, so the part cannot be trusted either.
      ["no Content-Range", body, false, [`bytes=${body.length}-`, null]],
    ] as const
  ) {
    const cacheDir = await Deno.makeTempDir();
    try {
      await Deno.mkdir(join(cacheDir, "downloads"));
      await Deno.writeFile(join(cacheDir, part), partBytes);
      // The part's record of its source: this URL (a part without one is not resumed).
      const url = parquetUrl(axg, "test", resolveEndpoints().endpoints);
      await Deno.writeTextFile(partSourcePath(join(cacheDir, part)), JSON.stringify({ url }));
      const log: (string | null)[] = [];
      const res = await download({
        tasks: ["axg"],
        cacheDir,
        source: "parquet",
        quiet: true,
        retries: 0,
        fetch: fetch416(body, log, contentRange),
        taskSources: [axg],
      });
      assert.equal(res[0]?.status, "parquet", what);
      assert.deepEqual(log, requests, what);
      const text = await readText(join(cacheDir, "super_glue/AX-g/AX-g.jsonl"));
      assert.equal(
        text.split("\n")[0],
        '{"hypothesis": "H0.", "idx": 0, "label": "entailment", "premise": "P0."}',
        what,
      );
    } finally {
      await Deno.remove(cacheDir, { recursive: true });
    }
  }
});

Deno.test("main() (deno task download) refuses bad arguments in one line, exit 2, creating nothing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = join(dir, "a-file");
    await Deno.writeTextFile(file, "x");
    const cache = join(dir, "cache");
    const cases: [string[], RegExp][] = [
      [[], /^--tasks is required: name the tasks to download \(all, glue, .*--help lists/],
      [
        ["--task", "cola"],
        /^unknown flag --task \(did you mean --tasks\?\); deno task download --help lists the flags$/,
      ],
      [["--tasks"], /^--tasks needs a value \(all, glue, super_glue or task names, comma-sep/],
      [
        ["--tasks", "--cache-dir", cache],
        /^--tasks needs a value \(.*\), got the flag --cache-dir after it; deno task download --help/,
      ],
      [["--tasks", "-x"], /^--tasks needs a value .*, got "-x", which reads as a flag/],
      [["cola"], /^unexpected argument "cola": deno task download takes only flags; /],
      [["--tasks", "cola", "--quiet", "yes"], /^unexpected argument "yes" after --quiet, which/],
      [
        ["--tasks", "cola", "--source", "official", "--source", "parquet"],
        /^--source given twice \("official", then "parquet"\); give it once; deno task download/,
      ],
      [
        ["--tasks", "cola", "--source", "hf"],
        /^--source must be .*"hf"; deno task download --help lists the flags$/,
      ],
      [["--tasks", ","], /^--tasks "," names no task/],
      [
        ["--tasks", "glue,,cb"],
        /^--tasks "glue,,cb": an empty item \(a stray comma\?\); give task names separated by commas/,
      ],
      [["--tasks", "cola,"], /^--tasks "cola,": an empty item/],
      [["--tasks="], /^--tasks needs a value \(.*\), got an empty one \("": an unset variable\?\)/],
      [
        ["--tasks", "cola", "--retries", "-1"],
        /^--retries must be a non-negative integer, got "-1"/,
      ],
      [["--tasks", "cola", "--retries="], /^--retries needs a value .*, got an empty one/],
      // Number() reads "0x3" as 3 (and " " as 0: refused as empty).
      [
        ["--tasks", "cola", "--retries", "0x3"],
        /^--retries must be a non-negative integer, got "0x3"/,
      ],
      [
        ["--tasks", "cola", "--retries", " "],
        /^--retries needs a value .*, got an empty one \(" "/,
      ],
      [["--tasks", "cola", "--verify=no"], /^--verify takes no value, got "--verify=no"/],
      [
        ["--tasks", "cola", "--source", "hf"],
        /^--source must be auto, official or parquet, got "hf"/,
      ],
      [["--tasks", "colaa", "--cache-dir", cache], /^unknown task "colaa"; known: glue\/cola/],
      [["--tasks", "cola", "--cache-dir", file], /^--cache-dir .*a-file: is a file, not a folder/],
    ];
    let downloads = 0;
    const fake = () => {
      downloads++;
      return Promise.resolve([]);
    };
    for (const [args, want] of cases) {
      const err: string[] = [];
      const code = await main(args, { error: (s) => err.push(s), log: () => {}, download: fake });
      assert.equal(code, 2, args.join(" "));
      assert.equal(err.length, 1, args.join(" "));
      assert.ok(!err[0]!.includes("\n"), `one line: ${err[0]}`);
      assert.match(err[0]!, want);
    }
    assert.equal(downloads, 0);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["a-file"], "no cache made");
    assert.deepEqual(parseDownloadArgs(["--tasks=cola,rte", "--tasks", " cb ", "--verify"]), {
      tasks: ["cola", "rte", "cb"],
      verify: true,
    });
    // download() itself rejects an unknown task before making the cache folder.
    await assert.rejects(download({ tasks: ["colaa"], cacheDir: cache }), /unknown task "colaa"/);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["a-file"], "no cache made");
    const out: string[] = [];
    assert.equal(await main(["--help"], { log: (s) => out.push(s) }), 0);
    assert.equal(
      await main(["--tasks", "cola", "-h"], { log: (s) => out.push(s), download: fake }),
      0,
    );
    assert.equal(out.length, 2);
    for (const o of out) assert.match(o, /^Usage: deno task download --tasks/);
    assert.equal(downloads, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main() (deno task download): every flag that takes a value refuses an empty one in one line (exit 2, nothing fetched)", async () => {
  const flags: [string, string][] = [
    ["tasks", "all, glue, super_glue or task names, comma-separated"],
    ["cache-dir", "a folder"],
    ["source", "auto|official|parquet"],
    ["retries", "a whole number of retries, e.g. 3"],
  ];
  let downloads = 0;
  const fake = () => {
    downloads++;
    return Promise.resolve([]);
  };
  for (const [flag, takes] of flags) {
    for (const empty of [[`--${flag}=`], [`--${flag}`, ""]]) {
      const args = [...(flag === "tasks" ? [] : ["--tasks", "cola"]), ...empty];
      const err: string[] = [];
      const code = await main(args, { error: (s) => err.push(s), log: () => {}, download: fake });
      assert.equal(code, 2, args.join(" "));
      assert.deepEqual(err, [
        `--${flag} needs a value (${takes}), got an empty one ("": an unset variable?); deno ` +
        `task download --help lists the flags`,
      ]);
    }
  }
  assert.equal(downloads, 0);
});

Deno.test("DownloadError: a task that failed on the local disk says to free space, also when no task was left untried", () => {
  const full =
    "/c/downloads/glue-RTE.zip.part: writing at 200704 B failed: No space left on device";
  const disk = new DownloadError([{ task: "glue/rte", reason: full, local: true }], []);
  assert.equal(
    disk.message.split("\n").slice(0, 3).join("\n"),
    `download failed for 1 task(s):\n  glue/rte: ${full}\n` +
      "Free space on that disk or make the folder writable, then run again.",
  );
  // A network failure: no such line.
  const net = new DownloadError([{ task: "glue/rte", reason: "official: HTTP 503" }], []);
  assert.doesNotMatch(net.message, /Free space/);
});

Deno.test("main() (deno task download) exits 1 when a download fails, 0 when all are done", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const cache = join(dir, "cache");
    const args = ["--tasks", "cola,rte", "--cache-dir", cache];
    const out: string[] = [];
    const err: string[] = [];
    const sinks = { log: (s: string) => out.push(s), error: (s: string) => err.push(s) };
    const failing = (o: { tasks: readonly string[] }) =>
      Promise.reject(
        new DownloadError([{ task: "glue/cola", reason: "official: dns error" }], [
          { task: "glue/rte", status: "cached", files: [] },
        ]),
      ).finally(() => assert.deepEqual(o.tasks, ["cola", "rte"]));
    assert.equal(await main(args, { ...sinks, download: failing }), 1);
    assert.equal(err.length, 2, "the note, then the error");
    assert.match(
      err[1]!,
      /^download failed for 1 task\(s\):\n {2}glue\/cola: official: dns error\n/,
    );
    // The bare "rte" is GLUE's, said on stderr (stdout holds only the summary).
    assert.deepEqual(out, []);
    assert.deepEqual(err.slice(0, 1), [
      'note: "rte" is glue/rte; super_glue/rte is named so in full',
    ]);
    out.length = 0;
    err.length = 0;
    const done = () =>
      Promise.resolve([
        { task: "glue/cola", status: "official" as const, files: [] },
        { task: "glue/rte", status: "cached" as const, files: [] },
      ]);
    assert.equal(await main(args, { ...sinks, download: done }), 0);
    assert.deepEqual(err, ['note: "rte" is glue/rte; super_glue/rte is named so in full']);
    assert.deepEqual(out, [`done: glue/cola=official glue/rte=cached\ndata dir: ${cache}`]);
    // Named twice: one note; --quiet: none.
    err.length = 0;
    out.length = 0;
    assert.equal(await main([...args, "--tasks", "rte"], { ...sinks, download: done }), 0);
    assert.deepEqual(err, ['note: "rte" is glue/rte; super_glue/rte is named so in full']);
    err.length = 0;
    assert.equal(await main([...args, "--quiet"], { ...sinks, download: done }), 0);
    assert.deepEqual(err, []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("429, 408 and 5xx are retried after Retry-After or a doubling backoff; 404 is not", async () => {
  const zip = makeZip();
  await withServer({ "/glue/RTE.zip": { body: zip } }, async (s, cacheDir) => {
    // The server answers 429 (Retry-After: 7), then 503 (no header), then 408, then the zip.
    const statuses: [number, Record<string, string>][] = [
      [429, { "retry-after": "7" }],
      [503, {}],
      [408, {}],
    ];
    const limited: typeof fetch = (input, init) => {
      const next = statuses.shift();
      if (next) return Promise.resolve(new Response("busy", { status: next[0], headers: next[1] }));
      return fetch(input, init);
    };
    const waits: number[] = [];
    const lines: string[] = [];
    const res = await downloadRte(s, cacheDir, {
      retries: 3,
      fetch: limited,
      sleep: (ms) => (waits.push(ms), Promise.resolve()),
      log: (l) => lines.push(l),
    });
    assert.equal(res[0]?.status, "official");
    assert.deepEqual(waits, [7000, 2000, 4000]);
    // (lines[0] names the test server's endpoints.)
    assert.equal(
      lines[1],
      `glue-RTE.zip: GET ${s.endpoints.glue}/RTE.zip: HTTP 429; retrying in 7 s`,
    );
  });
  await withServer({}, async (s, cacheDir) => {
    const waits: number[] = [];
    const err = await downloadRte(s, cacheDir, {
      retries: 3,
      sleep: (ms) => (waits.push(ms), Promise.resolve()),
    }).then(() => undefined, (e: Error) => e);
    assert.ok(err instanceof DownloadError);
    assert.match(err.failures[0]?.reason ?? "", /HTTP 404/);
    assert.deepEqual(waits, [], "a 404 is not retried");
    assert.equal(s.log.length, 1);
  });
});

Deno.test("offline: a connection error from a host that has not answered is not retried", async () => {
  const zip = makeZip();
  await withServer({ "/glue/RTE.zip": { body: zip } }, async (s, cacheDir) => {
    // Nothing answers (DNS or refused: fetch rejects with a TypeError): one attempt, no waits
    // (before: 1 + 2 + 4 s of waits per file before the next source was tried).
    const waits: number[] = [];
    let calls = 0;
    const offline: typeof fetch = () => {
      calls++;
      return Promise.reject(new TypeError("error sending request: dns error"));
    };
    const err = await downloadRte(s, cacheDir, {
      retries: 3,
      fetch: offline,
      sleep: (ms) => (waits.push(ms), Promise.resolve()),
    }).then(() => undefined, (e: Error) => e);
    assert.ok(err instanceof DownloadError);
    assert.match(err.failures[0]?.reason ?? "", /fetch failed|dns error/);
    assert.deepEqual(waits, []);
    assert.equal(calls, 1);
  });
  await withServer({ "/glue/RTE.zip": { body: zip } }, async (s, cacheDir) => {
    // The host answered (a 503), then the connection failed: that is retried with the waits.
    const plan: (() => Promise<Response>)[] = [
      () => Promise.resolve(new Response("busy", { status: 503 })),
      () => Promise.reject(new TypeError("error sending request: connection reset")),
    ];
    const flaky: typeof fetch = (input, init) => plan.shift()?.() ?? fetch(input, init);
    const waits: number[] = [];
    const res = await downloadRte(s, cacheDir, {
      retries: 3,
      fetch: flaky,
      sleep: (ms) => (waits.push(ms), Promise.resolve()),
    });
    assert.equal(res[0]?.status, "official");
    assert.deepEqual(waits, [1000, 2000]);
  });
});

Deno.test("offline: no host reachable is one line, with the failed tasks the mirror holds", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // A mirror holding CoLA whole and BoolQ's validation file only.
    const mirror = join(dir, "mirror");
    for (const f of ["glue/CoLA/train.tsv", "glue/CoLA/dev.tsv", "super_glue/BoolQ/val.jsonl"]) {
      await Deno.mkdir(join(mirror, f, ".."), { recursive: true });
      await Deno.copyFile(sharedPath("data", f), join(mirror, f));
    }
    const dns = "error sending request: client error (Connect): dns error";
    const offline: typeof fetch = () => Promise.reject(new TypeError(dns));
    const tasks = ["glue/cola", "glue/rte", "super_glue/boolq"];
    const run = async (mirrorDir: string, fetcher: typeof fetch) => {
      const lines: string[] = [];
      const err = await download({
        tasks,
        cacheDir: join(dir, "cache"),
        mirrorDir,
        endpoints: {},
        fetch: fetcher,
        sleep: () => Promise.resolve(),
        log: (l) => lines.push(l),
        quiet: true,
      }).then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof DownloadError, String(err));
      return { err, lines };
    };
    const { err, lines } = await run(mirror, offline);
    // The live log: the error once, then a short line per task.
    assert.equal(lines.length, 3, lines.join("\n"));
    assert.ok(lines[0]!.startsWith("glue/cola: official source failed (GET "), String(lines[0]));
    assert.ok(lines[0]!.includes("dns error"), String(lines[0]));
    assert.deepEqual(lines.slice(1), [
      "glue/rte: official source unreachable too; trying Hugging Face parquet",
      "super_glue/boolq: official source unreachable too; trying Hugging Face parquet",
    ]);
    assert.ok(err.failures.every((f) => f.unreachable?.includes("dns error")));
    const text = err.message.split("\n");
    assert.match(
      text[0]!,
      /^download failed for 3 task\(s\): no host could be reached \(first error: GET https:\/\/\S+CoLA\.zip: .*dns error.*\): offline\?$/,
    );
    assert.equal(err.headline, "download failed for 3 task(s)");
    assert.deepEqual(text.slice(1, 4), [
      "  not fetched: glue/cola, glue/rte, super_glue/boolq",
      `Already in the offline mirror ${mirror}, which deno task bench and pretrain read without ` +
      "a download: glue/cola",
      "Partly there (only these splits): super_glue/boolq (validation)",
    ]);
    assert.ok(text[4]!.startsWith("For glue/rte, super_glue/boolq: run this again with network"));
    assert.equal(text.length, 5, "no per-task repeat of the error");
    // No mirror: said, with how to name one.
    const none = join(dir, "none");
    const { err: noMirror } = await run(none, offline);
    assert.equal(
      noMirror.message.split("\n")[2],
      `(no offline mirror at "${none}"; HYPERPROMPT_SHARED=DIR names it)`,
    );
    // A host that answered (a 404 for RTE's parquet): not offline, each task's reason as before.
    const mixed: typeof fetch = (input) =>
      String(input instanceof Request ? input.url : input).includes("RTE")
        ? Promise.resolve(new Response("no", { status: 404 }))
        : Promise.reject(new TypeError(dns));
    const { err: some, lines: someLines } = await run(mirror, mixed);
    assert.match(some.message, /^download failed for 3 task\(s\):\n {2}glue\/cola: official: /);
    assert.ok(!some.message.includes("offline?"), some.message);
    assert.ok(!someLines[1]!.includes("unreachable too"), String(someLines[1]));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("retryDelayMs: Retry-After in seconds or as a date, capped; else 1, 2, 4 ... 30 s", () => {
  const now = Date.parse("2026-11-27T03:00:00Z");
  assert.deepEqual([0, 1, 2, 3, 4, 5, 9].map((a) => retryDelayMs(a, null, now)), [
    1000,
    2000,
    4000,
    8000,
    16000,
    30000,
    30000,
  ]);
  assert.equal(retryDelayMs(0, "0", now), 0);
  assert.equal(retryDelayMs(2, " 12 ", now), 12000);
  assert.equal(retryDelayMs(0, "Fri, 27 Nov 2026 03:00:05 GMT", now), 5000);
  assert.equal(retryDelayMs(0, "Fri, 27 Nov 2026 02:59:00 GMT", now), 0, "a past date");
  assert.equal(retryDelayMs(0, "86400", now), MAX_RETRY_AFTER_MS, "a day is cut");
  assert.equal(retryDelayMs(1, "soon", now), 2000, "an unreadable header: the backoff");
  assert.equal(retryDelayMs(1, "-5", now), 2000, "a negative number is not delta-seconds");
  for (
    const [status, retryable] of [
      [404, false],
      [403, false],
      [408, true],
      [429, true],
      [500, true],
      [502, true],
    ] as const
  ) {
    assert.equal(new HttpStatusError("u", status, null).retryable, retryable, String(status));
  }
});

Deno.test("DPR: its train file from the authors' site, checked by its record count; no parquet fallback", async () => {
  // The real source with a count of 2 records, so two hand-written records are the whole file.
  const real = findTaskSource("dpr");
  assert.equal(real.id, "super_glue/dpr");
  assert.ok(selectTasks(["super_glue"]).includes(real), "--tasks super_glue fetches DPR too");
  const dpr: TaskSource = { ...real, files: real.files.map((f) => ({ ...f, rows: 2 })) };
  const body = "The bee landed on the flower because it had pollen.\nit\nThe bee,the flower\n" +
    "the flower\n\nJim met Al and he left.\nhe\nJim,Al\nAl\n\n";
  const routes: Record<string, Served> = {
    "/dpr/train.c.txt": { body: enc.encode("<html>proxy login</html>\n") },
  };
  await withServer(routes, async (s, cacheDir) => {
    const counted: string[] = [];
    const countRows: typeof countRowsBytes = (data, spec, where) => (
      counted.push(where), countRowsBytes(data, spec, where)
    );
    const opts = {
      tasks: ["dpr"],
      taskSources: [dpr],
      source: "auto",
      retries: 0,
      countRows,
    } as const;
    const err = await downloadRte(s, cacheDir, opts).then(() => undefined, (e: Error) => e);
    assert.ok(err instanceof DownloadError, String(err));
    // The page is not the file: deleted (never reused), and no Hugging Face request is made.
    assert.match(
      err.message,
      /super_glue\/dpr: official: .*train\.c\.txt from .*\/dpr\/train\.c\.txt: not the expected file \(.*truncated record.*\) \(deleted\); no Hugging Face parquet source for this task/,
    );
    assert.deepEqual(s.log.map((l) => l.path), ["/dpr/train.c.txt"]);
    assert.deepEqual((await listFiles(cacheDir)).filter((f) => !f.startsWith("locks/")), [
      "manifest.json",
    ]);
    // A well-formed file of another record count (an older release) is not it either: deleted.
    const oneRecord = body.slice(0, body.indexOf("\n\n") + 2);
    routes["/dpr/train.c.txt"] = { body: enc.encode(oneRecord) };
    const short = await downloadRte(s, cacheDir, opts).then(() => "", (e: Error) => e.message);
    assert.match(short, /train\.c\.txt: not the expected file \(1 \w+, expected 2\) \(deleted\)/);
    assert.deepEqual((await listFiles(cacheDir)).filter((f) => !f.startsWith("locks/")), [
      "manifest.json",
    ]);
    routes["/dpr/train.c.txt"] = { body: enc.encode(body) };
    counted.length = 0;
    const res = await downloadRte(s, cacheDir, opts);
    assert.deepEqual(res.map((r) => [r.task, r.status]), [["super_glue/dpr", "official"]]);
    // Counted once: as the raw file is checked, the count passed on to the file's verification.
    assert.deepEqual(counted, ["super_glue/DPR/train.c.txt"], "counted once");
    const path = join(cacheDir, "super_glue/DPR/train.c.txt");
    assert.equal(await readText(path), body);
    const m = await readManifest(cacheDir);
    assert.equal(m.files["super_glue/DPR/train.c.txt"]?.rows, 2);
    assert.equal(m.files["super_glue/DPR/train.c.txt"]?.verified, "rows");
    const ex = examplesFromBytes("dpr", "train", await Deno.readFile(path), "t").examples;
    assert.deepEqual(ex.map((e) => e.input), [
      "wsc: The bee landed on the flower because *it* had pollen.",
      "wsc: Jim met Al and *he* left.",
    ]);
    // --source parquet has nothing to fetch for it, and says so.
    await Deno.remove(cacheDir, { recursive: true });
    const pq = await downloadRte(s, cacheDir, { ...opts, source: "parquet" })
      .then(() => "", (e: Error) => e.message);
    assert.match(
      pq,
      /super_glue\/dpr: no Hugging Face parquet source for this task \(it is not in aps\/super_glue\)/,
    );
  });
  assert.equal(countRowsBytes(enc.encode(body.replaceAll("\n", "\r\n")), real.files[0]!, "d"), 2);
});

/** The tiny WNLI stand-in of the failure tests: a zip the test servers do not have (HTTP 404). */
function tinyWnli(): TaskSource {
  return {
    ...tinyRte(),
    id: "glue/wnli",
    name: "wnli",
    folder: "WNLI",
    hfConfig: "wnli",
    files: tinyRte().files.map((f) => ({ ...f, path: f.path.replace("RTE", "WNLI") })),
    official: { kind: "zip", url: "{glue}/WNLI.zip", innerDir: "WNLI" },
  };
}

/** A manifest writer failing as a full disk does, its first `times` calls (then writing). */
function fullDisk(times = Infinity): (path: string, text: string) => Promise<void> {
  let n = 0;
  return (path, text) => {
    if (n++ < times) return Promise.reject(diskFullError());
    return Deno.writeTextFile(path, text);
  };
}

Deno.test("a manifest that cannot be saved (full disk) is added to the failures' summary, never in its place", async () => {
  await withServer({ "/glue/RTE.zip": { body: makeZip() } }, async (s, cacheDir) => {
    const manifest = join(cacheDir, "manifest.json");
    const err = await downloadRte(s, cacheDir, {
      tasks: ["wnli", "rte"],
      taskSources: [tinyRte(), tinyWnli()],
      retries: 0,
      writeManifest: fullDisk(),
    }).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof DownloadError, String(err));
    const reason = `GET ${s.endpoints.glue}/WNLI.zip: HTTP 404`;
    // The failure is the task's own error, not the full disk; RTE's files were written.
    assert.deepEqual(err.failures, [{ task: "glue/wnli", reason }]);
    assert.deepEqual(err.results.map((r) => [r.task, r.status]), [["glue/rte", "official"]]);
    const saved = `the download manifest ${manifest} could not be saved (No space left on device ` +
      `(os error 28)): the files written for glue/rte are in place but not listed in it, so the ` +
      `next run fetches them again`;
    assert.equal(err.manifestError, saved);
    assert.deepEqual(err.message.split("\n").slice(0, 3), [
      "download failed for 1 task(s):",
      `  glue/wnli: ${reason}`,
      `Also, ${saved}`,
    ]);
    assert.equal(await readText(join(cacheDir, "glue/RTE/train.tsv")), TRAIN);
    // A save that had nothing to add loses nothing: the summary alone.
    const only = await downloadRte(s, cacheDir, {
      tasks: ["wnli"],
      taskSources: [tinyWnli()],
      retries: 0,
      writeManifest: fullDisk(),
    }).then(() => undefined, (e: unknown) => e);
    assert.ok(only instanceof DownloadError, String(only));
    assert.equal(only.manifestError, undefined);
    assert.match(only.message, /^download failed for 1 task\(s\):\n {2}glue\/wnli: GET .*\nInterr/);
    // No task failed: the full disk is the error, naming the manifest and what it does not list.
    await Deno.remove(cacheDir, { recursive: true });
    const alone = await downloadRte(s, cacheDir, { writeManifest: fullDisk() })
      .then(() => undefined, (e: unknown) => e);
    assert.ok(alone instanceof Error && !(alone instanceof DownloadError), String(alone));
    assert.equal(alone.message, saved);
    // A later save that succeeds saves what the failed one could not: no error, RTE listed.
    await Deno.remove(cacheDir, { recursive: true });
    const res = await downloadRte(s, cacheDir, { writeManifest: fullDisk(1) });
    assert.deepEqual(res.map((r) => [r.task, r.status]), [["glue/rte", "official"]]);
    assert.deepEqual(Object.keys((await readManifest(cacheDir)).files).sort(), [
      "glue/RTE/dev.tsv",
      "glue/RTE/train.tsv",
    ]);
  });
});

Deno.test("a failed manifest save names only the tasks it left unlisted, not those an earlier save listed", async () => {
  const wnliZip = zipSync({ "WNLI/train.tsv": enc.encode(TRAIN), "WNLI/dev.tsv": enc.encode(DEV) });
  const routes = { "/glue/RTE.zip": { body: makeZip() }, "/glue/WNLI.zip": { body: wnliZip } };
  await withServer(routes, async (s, cacheDir) => {
    // The disk fills up after RTE's entries were saved: every save that would list WNLI fails.
    const full = (path: string, text: string) =>
      text.includes("glue/WNLI/") ? Promise.reject(diskFullError()) : writeAtomic(path, text);
    const err = await downloadRte(s, cacheDir, {
      tasks: ["rte", "wnli"],
      taskSources: [tinyRte(), tinyWnli()],
      retries: 0,
      writeManifest: full,
    }).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof Error && !(err instanceof DownloadError), String(err));
    assert.equal(
      err.message,
      `the download manifest ${join(cacheDir, "manifest.json")} could not be saved (No space ` +
        `left on device (os error 28)): the files written for glue/wnli are in place but not ` +
        `listed in it, so the next run fetches them again`,
    );
    assert.deepEqual(Object.keys((await readManifest(cacheDir)).files).sort(), [
      "glue/RTE/dev.tsv",
      "glue/RTE/train.tsv",
    ]);
  });
});

Deno.test("resolveEndpoints: --endpoint/option over HYPERPROMPT_DATA_ENDPOINTS over HF_ENDPOINT over the official hosts", () => {
  const env = (vars: Record<string, string>) => (n: string) => vars[n];
  const none = resolveEndpoints(undefined, undefined, env({}));
  assert.equal(none.endpoints.glue, "https://dl.fbaipublicfiles.com/glue/data");
  assert.equal(none.endpoints.hf, "https://huggingface.co");
  assert.equal(describeEndpoints(none), "");
  // An empty HF_ENDPOINT is unset (as for the model download).
  assert.equal(resolveEndpoints({}, "x", env({ HF_ENDPOINT: "" })).endpoints.hf, none.endpoints.hf);
  const r = resolveEndpoints(
    { superGlue: "http://flag/sg" },
    "--endpoint",
    env({
      HF_ENDPOINT: "https://hf-mirror.example",
      HYPERPROMPT_DATA_ENDPOINTS: "glue=http://m/glue, super_glue=http://m/sg",
    }),
  );
  assert.deepEqual(r.endpoints, {
    ...none.endpoints,
    glue: "http://m/glue",
    superGlue: "http://flag/sg",
    hf: "https://hf-mirror.example",
  });
  assert.equal(
    describeEndpoints(r),
    "glue=http://m/glue (HYPERPROMPT_DATA_ENDPOINTS), superGlue=http://flag/sg (--endpoint), " +
      "hf=https://hf-mirror.example (HF_ENDPOINT)",
  );
  // The variable's hf wins over HF_ENDPOINT.
  const hf = resolveEndpoints(
    {},
    undefined,
    env({
      HF_ENDPOINT: "https://a.example",
      HYPERPROMPT_DATA_ENDPOINTS: '{"hf": "https://b.example"}',
    }),
  );
  assert.equal(describeEndpoints(hf), "hf=https://b.example (HYPERPROMPT_DATA_ENDPOINTS)");
  assert.throws(
    () => resolveEndpoints({}, undefined, env({ HF_ENDPOINT: "hf-mirror.example" })),
    /^Error: HF_ENDPOINT "hf-mirror.example" is not a URL/,
  );
  assert.throws(
    () => resolveEndpoints({ glue: "ftp://x" }, "options", env({})),
    /^Error: options: glue "ftp:\/\/x" is not an http: or https: URL$/,
  );
});

Deno.test("download() logs the endpoints that are not the official hosts first", async () => {
  await withServer({ "/glue/RTE.zip": { body: makeZip() } }, async (s, cacheDir) => {
    const lines: string[] = [];
    await downloadRte(s, cacheDir, {
      quiet: false,
      log: (l) => lines.push(l),
      endpoints: { glue: s.endpoints.glue },
      endpointsFrom: "--endpoint",
    });
    assert.equal(lines[0], `endpoints: glue=${s.endpoints.glue} (--endpoint)`);
    assert.equal(lines.at(-1), "glue/rte: 2 file(s) written and verified");
  });
});

/** `n` well-formed DPR records (four lines, then a blank one). */
function dprRecords(n: number): string {
  let out = "";
  for (let i = 0; i < n; i++) out += `Ann met Bo ${i} and she left.\nshe\nAnn,Bo\nAnn\n\n`;
  return out;
}

Deno.test("main() (deno task download): HYPERPROMPT_DATA_ENDPOINTS and --endpoint point the download at a mirror", async () => {
  const dpr = findTaskSource("dpr");
  const body = enc.encode(dprRecords(dpr.files[0]!.rows));
  await withServer({ "/dpr/train.c.txt": { body } }, async (s, cacheDir) => {
    const mirror = s.endpoints.dpr;
    const run = async (vars: Record<string, string | undefined>, args: string[]) => {
      const out: string[] = [];
      const err: string[] = [];
      const code = await withEnv(
        { HF_ENDPOINT: undefined, ...vars },
        () =>
          main(["--tasks", "dpr", "--cache-dir", cacheDir, "--quiet", "--retries", "0", ...args], {
            log: (l) => out.push(l),
            error: (l) => err.push(l),
          }),
      );
      return { code, out: out.join("\n"), err: err.join("\n") };
    };
    // DPR has no parquet fallback: its only request goes to the mirror the variable names.
    const viaEnv = await run({ HYPERPROMPT_DATA_ENDPOINTS: `dpr=${mirror}/` }, []);
    assert.equal(viaEnv.code, 0, viaEnv.err);
    assert.deepEqual(s.log.map((l) => l.path), ["/dpr/train.c.txt"]);
    assert.equal(
      viaEnv.out,
      `done: super_glue/dpr=official\ndata dir: ${cacheDir}\n` +
        `endpoints: dpr=${mirror}/ (HYPERPROMPT_DATA_ENDPOINTS)`,
    );
    // The manifest records where the file came from.
    const m = await readManifest(cacheDir);
    assert.deepEqual(m.files["super_glue/DPR/train.c.txt"]?.from, [`${mirror}/train.c.txt`]);
    // --endpoint wins over the variable (which names a closed port here).
    await Deno.remove(cacheDir, { recursive: true });
    s.log.length = 0;
    const viaFlag = await run(
      { HYPERPROMPT_DATA_ENDPOINTS: '{"dpr": "http://127.0.0.1:9/x"}' },
      ["--endpoint", `dpr=${mirror}`],
    );
    assert.equal(viaFlag.code, 0, viaFlag.err);
    assert.deepEqual(s.log.map((l) => l.path), ["/dpr/train.c.txt"]);
    assert.match(viaFlag.out, new RegExp(`\nendpoints: dpr=${mirror} \\(--endpoint\\)$`));
  });
});

Deno.test("main() (deno task download): a bad HYPERPROMPT_DATA_ENDPOINTS, HF_ENDPOINT or --endpoint exits 2 naming it, nothing fetched", async () => {
  const keys = /\(allowed keys: glue, superGlue, senteval, dpr, hf\)/;
  const cases: [Record<string, string | undefined>, string[], RegExp][] = [
    [{ HYPERPROMPT_DATA_ENDPOINTS: "" }, [], /^HYPERPROMPT_DATA_ENDPOINTS is empty .*allowed keys/],
    [{ HYPERPROMPT_DATA_ENDPOINTS: "glue=" }, [], /^HYPERPROMPT_DATA_ENDPOINTS: glue is empty/],
    [{ HYPERPROMPT_DATA_ENDPOINTS: "sg=http://m/sg" }, [], /: unknown endpoint "sg" \(allowed/],
    [{ HYPERPROMPT_DATA_ENDPOINTS: "glue=http://a,," }, [], /: an empty entry in .*allowed/],
    [{ HYPERPROMPT_DATA_ENDPOINTS: "http://m/glue" }, [], /: "http:\/\/m\/glue" is not key=url/],
    [{ HYPERPROMPT_DATA_ENDPOINTS: "glue=ftp://m" }, [], /: glue "ftp:\/\/m" is not an http:/],
    [{ HYPERPROMPT_DATA_ENDPOINTS: "glue=m.example" }, [], /: glue "m.example" is not a URL/],
    [{ HYPERPROMPT_DATA_ENDPOINTS: '{"glue": 1}' }, [], /: glue must be a URL string, got 1/],
    [{ HYPERPROMPT_DATA_ENDPOINTS: "{glue" }, [], /^HYPERPROMPT_DATA_ENDPOINTS: not valid JSON/],
    [{ HYPERPROMPT_DATA_ENDPOINTS: "hf=http://a,HF=http://b" }, [], /: hf given twice/],
    [{ HF_ENDPOINT: "hf-mirror.example" }, [], /^HF_ENDPOINT "hf-mirror.example" is not a URL/],
    [{}, ["--endpoint", "nope=http://x"], /^--endpoint: unknown endpoint "nope" \(allowed/],
    [{}, ["--endpoint", "glue"], /^--endpoint: "glue" is not key=url \(allowed/],
    [{}, ["--endpoint", "glue=http://x/?a=1"], /^--endpoint: glue ".*" has a query or fragment/],
    [{}, ["--endpoint", "glue=http://a", "--endpoint", "glue=http://b"], /: glue given twice/],
  ];
  const dir = await Deno.makeTempDir();
  try {
    let downloads = 0;
    const fake = () => {
      downloads++;
      return Promise.resolve([]);
    };
    for (const [vars, flags, want] of cases) {
      const what = `${JSON.stringify(vars)} ${flags.join(" ")}`;
      const err: string[] = [];
      const code = await withEnv(
        { HYPERPROMPT_DATA_ENDPOINTS: undefined, HF_ENDPOINT: undefined, ...vars },
        () =>
          main(["--tasks", "cola", "--cache-dir", join(dir, "cache"), ...flags], {
            error: (l) => err.push(l),
            log: () => {},
            download: fake,
          }),
      );
      assert.equal(code, 2, what);
      assert.equal(err.length, 1, what);
      assert.ok(!err[0]!.includes("\n"), `one line: ${err[0]}`);
      assert.match(err[0]!, want, what);
      if (/unknown endpoint|not key=url|is empty \(/.test(err[0]!)) assert.match(err[0]!, keys);
    }
    assert.equal(downloads, 0);
    assert.deepEqual([...Deno.readDirSync(dir)], [], "no cache made");
    // A cache folder where nothing can be written: refused as an argument, not a bare
    // "Permission denied (os error 13): mkdir" (h388).
    const ro: string[] = [];
    const roCode = await main(["--tasks", "cola", "--cache-dir", join(dir, "c")], {
      error: (l) => ro.push(l),
      log: () => {},
      download: fake,
      // A read-only disk: root writes past permission bits, so the refusal is injected.
      cannotWrite: () => "Read-only file system",
    });
    assert.equal(roCode, 2, ro.join("\n"));
    assert.equal(
      ro[0],
      `--cache-dir ${join(dir, "c")}: its nearest existing folder ${dir} cannot be written ` +
        "(Read-only file system); name a folder on a writable disk; deno task download --help " +
        "lists the flags",
    );
    assert.equal(downloads, 0);
    // download() itself refuses a bad variable before making the cache folder.
    await withEnv({ HYPERPROMPT_DATA_ENDPOINTS: "glue=" }, async () => {
      await assert.rejects(
        download({ tasks: ["cola"], cacheDir: join(dir, "cache") }),
        /^Error: HYPERPROMPT_DATA_ENDPOINTS: glue is empty/,
      );
    });
    assert.deepEqual([...Deno.readDirSync(dir)], [], "no cache made");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("selectTasks(): a bare name two benchmarks share (rte) is GLUE's, and said; a full id or another name is not", () => {
  const notes: string[] = [];
  const ids = (names: string[]) =>
    selectTasks(names, undefined, (l) => notes.push(l)).map((t) => t.id);
  assert.deepEqual(ids(["rte"]), ["glue/rte"]);
  assert.deepEqual(notes, ['"rte" is glue/rte; super_glue/rte is named so in full']);
  notes.length = 0;
  assert.deepEqual(ids(["super_glue/rte", "glue/rte", "cola", "rte_sg"]), [
    "super_glue/rte",
    "glue/rte",
    "glue/cola",
  ]);
  assert.deepEqual(notes, []);
});

Deno.test("download()'s log on stderr: a closed pipe (download … 2>&1 | head) drops its lines, the download goes on to its end", async () => {
  const module = new URL("./download.ts", import.meta.url).href;
  const out = await closedStderr(`
import { download } from ${JSON.stringify(module)};
const dir = await Deno.makeTempDir();
console.error("first");
await new Promise((r) => setTimeout(r, 300));
try {
  // Offline: one log line per task, each written after the reader has gone.
  await download({
    tasks: ["rte", "cola", "cb", "boolq", "copa"],
    cacheDir: dir,
    retries: 0,
    fetch: () => Promise.reject(new TypeError("error sending request: dns error")),
  });
} catch (e) {
  console.log(\`survived: \${(e as Error).name}\`);
}
await Deno.remove(dir, { recursive: true });
`);
  assert.equal(out.code, 0, `${out.stdout}\n${out.stderr}`);
  assert.equal(out.stdout, "survived: DownloadError\n");
});
