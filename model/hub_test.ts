import assert from "node:assert/strict";
import { basename, dirname, join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { sharedPath } from "./shared_dir.ts";
import { fileDigest, loadHfFolder, saveHfFolder } from "./checkpoint.ts";
import {
  ABSENT_MAX_AGE_MS,
  defaultHubCacheDir,
  fetchHubFiles,
  fetchHubModel,
  hubModelDir,
  HubOfflineError,
  hubOfflineSetting,
  transformersSnapshot,
} from "./hub.ts";
import { hubEnv, withEnv } from "./env_testing.ts";
import { type Hub, serveHub } from "./hub_testing.ts";
import { bytesRead } from "./read_meter_testing.ts";
import { flushesOf, inTempDir, recordFlushes } from "./fs_testing.ts";
import { FILE_TEMPS, removeStaleTemps } from "./fs.ts";

await tf.setBackend("cpu");

const RELU = sharedPath("fixtures", "hf-t5", "t5-tiny-relu");
const UNTIED = sharedPath("fixtures", "hf-t5", "t5-tiny-v1_1-untied");

/** The fixture tokenizer.json (the RELU fixture has none). */
const GLUE_TOKENIZER = sharedPath("fixtures", "tokenizer", "unigram-glue-4k", "tokenizer.json");

/**
 * A repo folder `root/name` holding `files` of the RELU fixture and, with `tokenizer`,
 * {@link GLUE_TOKENIZER} as its tokenizer.json.
 */
async function reluRepo(
  root: string,
  name: string,
  files: readonly string[],
  tokenizer = false,
): Promise<string> {
  const dir = join(root, name);
  await Deno.mkdir(dir);
  for (const f of files) await Deno.copyFile(join(RELU, f), join(dir, f));
  if (tokenizer) await Deno.copyFile(GLUE_TOKENIZER, join(dir, "tokenizer.json"));
  return dir;
}

/** `fetchHubModel` of org/tiny from `hub` into `cache`: the files it asked `hub` for, and the folder. */
async function fetchTinyFrom(hub: Hub, cache: string): Promise<{ asked: string[]; dir: string }> {
  const n = hub.requests.length;
  const dir = await fetchHubModel("org/tiny", { cacheDir: cache, endpoint: hub.endpoint });
  return { asked: hub.requests.slice(n).map((r) => basename(r.path)), dir };
}

/** A `sleep` that records the waits asked for instead of waiting. */
function recordSleeps(): { waits: number[]; sleep: (ms: number) => Promise<void> } {
  const waits: number[] = [];
  return { waits, sleep: (ms) => (waits.push(ms), Promise.resolve()) };
}

/** Hex sha256 of `data`. */
async function sha256Hex(data: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  return [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The names in `dir`, sorted. */
function namesIn(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
}

/** The record of a downloaded file's sha256 beside it (`model/hash.ts` `sha256RecordPath`). */
const sidecar = (file: string) => `.${file}.sha256.json`;

/**
 * A complete cache of org/tiny (the RELU fixture, no tokenizer): its files, markers and the
 * downloaded files' sha256 records, sorted.
 */
const TINY_CACHED = [
  ".absent.json",
  ".complete.json",
  sidecar("config.json"),
  sidecar("generation_config.json"),
  sidecar("model.safetensors"),
  "config.json",
  "generation_config.json",
  "model.safetensors",
];

/** Runs `body` with a fresh cache folder and a hub serving org/tiny (RELU) at main; both go after. */
function withTinyHub(body: (cache: string, hub: Hub) => Promise<void>): Promise<void> {
  return inTempDir(async (cache) => {
    const hub = serveHub({ "org/tiny@main": RELU });
    try {
      await body(cache, hub);
    } finally {
      await hub.close();
    }
  });
}

async function assertSameTensors(a: string, b: string): Promise<void> {
  const x = await loadHfFolder(a);
  const y = await loadHfFolder(b);
  assert.deepEqual(x.config, y.config);
  assert.deepEqual([...x.tensors.keys()].sort(), [...y.tensors.keys()].sort());
  for (const [k, t] of x.tensors) {
    const u = y.tensors.get(k)!.dataSync();
    assert.ok(t.dataSync().every((v, i) => Object.is(v, u[i])), `${k} differs`);
  }
  for (const t of [...x.tensors.values(), ...y.tensors.values()]) t.dispose();
}

Deno.test("defaultHubCacheDir: beside the data cache, under hyperprompt-bench, for each env", async () => {
  const cases: [Record<string, string | undefined>, string][] = [
    [{ HYPERPROMPT_CACHE: "/c", XDG_CACHE_HOME: "/x", HOME: "/h" }, "/c/hub"],
    [
      { HYPERPROMPT_CACHE: undefined, XDG_CACHE_HOME: "/x", HOME: "/h" },
      "/x/hyperprompt-bench/hub",
    ],
    [
      { HYPERPROMPT_CACHE: undefined, XDG_CACHE_HOME: undefined, HOME: "/h" },
      "/h/.cache/hyperprompt-bench/hub",
    ],
  ];
  for (const [vars, want] of cases) {
    assert.equal(await withEnv(vars, () => Promise.resolve(defaultHubCacheDir())), want);
  }
});

Deno.test("fetchHubModel: unsharded repo, optional 404s, cache reuse without network", () =>
  withTinyHub(async (cache, hub) => {
    const dir = await fetchHubModel("org/tiny", {
      cacheDir: cache,
      endpoint: hub.endpoint,
      token: "tok",
    });
    assert.equal(dir, hubModelDir(cache, "org/tiny", "main"));
    assert.deepEqual(namesIn(dir), TINY_CACHED);
    assert.ok(hub.requests.some((r) => r.path.endsWith("/tokenizer.json")), "asked for tokenizer");
    // The optional files the repo lacks are recorded, not asked for again.
    assert.deepEqual(
      JSON.parse(await Deno.readTextFile(join(dir, ".absent.json"))).files,
      ["spiece.model", "tokenizer.json", "tokenizer_config.json"],
    );
    assert.ok(hub.requests.every((r) => r.auth === "Bearer tok"), "bearer token sent");
    assert.ok(!hub.requests.some((r) => r.path.endsWith(".index.json")), "no index needed");
    await assertSameTensors(dir, RELU);
    const n = hub.requests.length;
    assert.equal(await fetchHubModel("org/tiny", { cacheDir: cache, endpoint: hub.endpoint }), dir);
    assert.equal(hub.requests.length, n, "complete cache answers without any request");
    // A partial cache (marker gone, one file gone) re-fetches only what is missing.
    await Deno.remove(join(dir, ".complete.json"));
    await Deno.remove(join(dir, "generation_config.json"));
    await fetchHubModel("org/tiny", { cacheDir: cache, endpoint: hub.endpoint });
    const again = hub.requests.slice(n).map((r) => r.path.split("/").pop());
    assert.ok(again.includes("generation_config.json"));
    assert.ok(!again.includes("model.safetensors") && !again.includes("config.json"), `${again}`);
  }));

Deno.test("fetchHubModel: sharded repo with tokenizer, HF_ENDPOINT and HF_TOKEN from env", () =>
  inTempDir(async (tmp) => {
    const src = join(tmp, "src");
    const ck = await loadHfFolder(UNTIED);
    const tok = await Deno.readTextFile(
      sharedPath("fixtures", "tokenizer", "unigram-glue-4k", "tokenizer.json"),
    );
    await saveHfFolder(src, ck.config, ck.tensors, {
      maxShardBytes: 100_000,
      extraFiles: { "tokenizer.json": tok },
    });
    for (const t of ck.tensors.values()) t.dispose();
    const hub = serveHub({ "google/t5-x@v1.0": src });
    try {
      // Set for this test only; whatever the caller had is restored after it.
      await withEnv({ HF_ENDPOINT: hub.endpoint + "/", HF_TOKEN: "envtok" }, async () => {
        const dir = await fetchHubModel("google/t5-x", {
          cacheDir: join(tmp, "cache"),
          revision: "v1.0",
        });
        const names = [...Deno.readDirSync(dir)].map((e) => e.name);
        const shards = names.filter((n) => /^model-\d+-of-\d+\.safetensors$/.test(n));
        assert.ok(shards.length >= 2, `shards: ${shards}`);
        assert.ok(
          names.includes("tokenizer.json") && names.includes("model.safetensors.index.json"),
        );
        assert.ok(!names.some((n) => n.includes(".tmp-")), "no partial files left");
        assert.equal(await Deno.readTextFile(join(dir, "tokenizer.json")), tok);
        assert.ok(hub.requests.every((r) => r.auth === "Bearer envtok"));
        await assertSameTensors(dir, src);
      });
    } finally {
      await hub.close();
    }
  }));

Deno.test("fetchHubModel: unknown repo, invalid download, and bad ids give clear errors", async () => {
  const tmp = await Deno.makeTempDir();
  const bogus = join(tmp, "bogus");
  await Deno.mkdir(bogus);
  await Deno.copyFile(join(RELU, "config.json"), join(bogus, "config.json"));
  await Deno.writeTextFile(join(bogus, "model.safetensors"), "<html>rate limited</html>");
  const hub = serveHub({ "org/bogus@main": bogus });
  const cache = join(tmp, "cache");
  try {
    await assert.rejects(
      fetchHubModel("org/missing", { cacheDir: cache, endpoint: hub.endpoint }),
      /Model "org\/missing" could not be fetched: .*config\.json answered HTTP 404; check the repo id/,
    );
    await assert.rejects(
      fetchHubModel("org/bogus", { cacheDir: cache, endpoint: hub.endpoint }),
      /downloaded model\.safetensors is not a valid safetensors file/,
    );
    // A repo whose PyTorch weights are not a torch.save zip: refused after download, not kept.
    const bin = join(tmp, "bin");
    await Deno.mkdir(bin);
    await Deno.copyFile(join(RELU, "config.json"), join(bin, "config.json"));
    await Deno.writeFile(join(bin, "pytorch_model.bin"), new Uint8Array(8));
    // A repo of TensorFlow weights only: the error says so and what to do.
    const tfOnly = join(tmp, "tf");
    await Deno.mkdir(tfOnly);
    await Deno.copyFile(join(RELU, "config.json"), join(tfOnly, "config.json"));
    await Deno.writeFile(join(tfOnly, "tf_model.h5"), new Uint8Array(8));
    // An index that is not JSON (a proxy's page): named with line and column, and not kept.
    const badIndex = join(tmp, "bad-index");
    await Deno.mkdir(badIndex);
    await Deno.copyFile(join(RELU, "config.json"), join(badIndex, "config.json"));
    await Deno.writeTextFile(
      join(badIndex, "model.safetensors.index.json"),
      "<html>rate limited</html>",
    );
    // An index naming a shard by a path (h382): refused before it is kept, so a fixed hub is
    // asked again (it was cached, and every later call failed without a request).
    const evilIndex = join(tmp, "evil-index");
    await Deno.mkdir(evilIndex);
    await Deno.copyFile(join(RELU, "config.json"), join(evilIndex, "config.json"));
    const evil = {
      metadata: {},
      weight_map: { "shared.weight": "../../../../tmp/h382-evil.safetensors" },
    };
    await Deno.writeTextFile(
      join(evilIndex, "model.safetensors.index.json"),
      JSON.stringify(evil),
    );
    const binHub = serveHub({
      "org/bin@main": bin,
      "org/tf@main": tfOnly,
      "org/bad-index@main": badIndex,
      "org/evil-index@main": evilIndex,
    });
    try {
      await assert.rejects(
        fetchHubModel("org/bad-index", { cacheDir: cache, endpoint: binHub.endpoint }),
        /\/org\/bad-index\/resolve\/main\/model\.safetensors\.index\.json: downloaded model\.safetensors\.index\.json:1:1: invalid JSON: Unexpected token '<'$/,
      );
      assert.ok(
        ![...Deno.readDirSync(hubModelDir(cache, "org/bad-index"))].some((e) =>
          e.name.startsWith("model.")
        ),
        "the invalid index is not kept",
      );
      for (let attempt = 0; attempt < 2; attempt++) {
        const before = binHub.requests.length;
        await assert.rejects(
          fetchHubModel("org/evil-index", { cacheDir: cache, endpoint: binHub.endpoint }),
          /\/org\/evil-index\/resolve\/main\/model\.safetensors\.index\.json: downloaded model\.safetensors\.index\.json: field "weight_map"\."shared\.weight" must be a shard file name, got "\.\.\/\.\.\/\.\.\/\.\.\/tmp\/h382-evil\.safetensors"/,
        );
        assert.ok(
          binHub.requests.slice(before).some((r) => r.path.endsWith(".index.json")),
          `attempt ${attempt}: the hub is asked for the index again`,
        );
        assert.ok(
          ![...Deno.readDirSync(hubModelDir(cache, "org/evil-index"))].some((e) =>
            e.name.startsWith("model.")
          ),
          "the refused index is not kept",
        );
      }
      await assert.rejects(
        fetchHubModel("org/bin", { cacheDir: cache, endpoint: binHub.endpoint }),
        /downloaded pytorch_model\.bin is not a valid PyTorch checkpoint: pytorch_model\.bin: not a PyTorch checkpoint/,
      );
      const left = [...Deno.readDirSync(hubModelDir(cache, "org/bin"))].map((e) => e.name);
      assert.ok(!left.some((n) => n.startsWith("pytorch_model")), `invalid weights left: ${left}`);
      await assert.rejects(
        fetchHubModel("org/tf", { cacheDir: cache, endpoint: binHub.endpoint }),
        (e: Error) => {
          assert.match(
            e.message,
            /"org\/tf" .* has none of model\.safetensors, model\.safetensors\.index\.json, pytorch_model\.bin or pytorch_model\.bin\.index\.json/,
          );
          assert.match(
            e.message,
            /from_pretrained\("org\/tf"\)\.save_pretrained\("<local folder>"\)/,
          );
          return true;
        },
      );
    } finally {
      await binHub.close();
    }
    const dir = hubModelDir(cache, "org/bogus");
    const left = [...Deno.readDirSync(dir)].map((e) => e.name);
    assert.ok(left.includes("config.json"), "valid files are kept");
    assert.ok(!left.some((n) => n.startsWith("model.")), `invalid weights left: ${left}`);
    await assert.rejects(
      fetchHubModel("../etc", { cacheDir: cache, endpoint: hub.endpoint }),
      /invalid hub repo id/,
    );
  } finally {
    await hub.close();
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("fetchHubModel: unreachable endpoint says offline and how to use a local folder", () =>
  inTempDir(async (cache) => {
    // A port that was just free (connection refused), and port 1 (refused by fetch itself).
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const closedPort = (l.addr as Deno.NetAddr).port;
    l.close();
    for (const endpoint of [`http://127.0.0.1:${closedPort}`, "http://127.0.0.1:1"]) {
      // The first request cannot connect: given up at once, not after the retries' 1, 2, 4 s
      // (which, before, kept an offline run waiting 7 s for this message).
      const { waits, sleep } = recordSleeps();
      await assert.rejects(
        fetchHubModel("google-t5/t5-small", { cacheDir: cache, endpoint, sleep }),
        (e: Error) => {
          // Its own class, so that a caller tells "offline" from a bad checkpoint.
          assert.ok(e instanceof HubOfflineError, `not a HubOfflineError: ${e}`);
          assert.equal(e.name, "HubOfflineError");
          assert.match(e.message, /Model "google-t5\/t5-small" could not be fetched/);
          assert.match(e.message, /offline/);
          assert.match(e.message, /local folder/);
          assert.match(e.message, /config\.json, model\.safetensors .*and tokenizer\.json/);
          return true;
        },
      );
      assert.deepEqual(waits, [], endpoint);
    }
    // Once the hub has answered, a connection that fails is retried (1, 2, 4 s) before the same
    // message: the network went away mid-way, and may come back.
    const { waits, sleep } = recordSleeps();
    const asked: string[] = [];
    const flaky = ((url: string | URL | Request) => {
      asked.push(basename(String(url)));
      return asked.length === 1
        ? Promise.resolve(new Response("{}", { headers: { "content-length": "2" } }))
        : Promise.reject(new TypeError("connection refused"));
    }) as typeof fetch;
    await assert.rejects(
      fetchHubModel("org/t", {
        cacheDir: cache,
        endpoint: "http://hub.invalid",
        fetch: flaky,
        sleep,
      }),
      /Model "org\/t" could not be fetched from .*generation_config\.json: .*connection refused.*offline/,
    );
    assert.deepEqual(waits, [1000, 2000, 4000]);
    assert.deepEqual(asked, ["config.json", ...Array(4).fill("generation_config.json")]);
  }));

Deno.test("fetchHubModel: a transfer that keeps stalling after the hub answered is no 'offline': the part is kept, to resume", () =>
  inTempDir(async (cache) => {
    const hub = serveHub({ "org/tiny@main": RELU }, {
      stallAt: (file) => (file === "model.safetensors" ? 100 : undefined),
    });
    const { waits, sleep } = recordSleeps();
    try {
      await assert.rejects(
        fetchHubModel("org/tiny", {
          cacheDir: cache,
          endpoint: hub.endpoint,
          idleTimeoutMs: 1000,
          retries: 1,
          sleep,
        }),
        (e: Error) => {
          assert.ok(!(e instanceof HubOfflineError), `${e.name}: ${e.message}`);
          assert.match(
            e.message,
            new RegExp(
              `^Model "org/tiny": model\\.safetensors could not be fetched from .*: the hub ` +
                `answered, but the transfer failed after 1 retry \\(.*no data for 1 s.*\\); ` +
                `the 200 bytes received are kept in .*model\\.safetensors\\.part: run again ` +
                `to resume from there$`,
            ),
          );
          return true;
        },
      );
      assert.deepEqual(waits, [1000]);
      // 100 bytes an attempt, the retry resuming the first's.
      const dir = hubModelDir(cache, "org/tiny");
      assert.equal(Deno.statSync(join(dir, "model.safetensors.part")).size, 200);
    } finally {
      await hub.close();
    }
  }));

Deno.test("fetchHubModel: a 404 recorded on another endpoint is asked for again; a lasting one is named with its record", async () => {
  const tmp = await Deno.makeTempDir();
  // A mirror still syncing: no weights, no tokenizer yet.
  const configs = ["config.json", "generation_config.json"];
  const partial = await reluRepo(tmp, "partial", configs);
  const full = await reluRepo(tmp, "full", [...configs, "model.safetensors"], true);
  const syncing = serveHub({ "org/tiny@main": partial });
  const mirror = serveHub({ "org/tiny@main": full });
  const cache = join(tmp, "cache");
  const dir = hubModelDir(cache, "org/tiny");
  try {
    await assert.rejects(
      fetchHubModel("org/tiny", { cacheDir: cache, endpoint: syncing.endpoint }),
      new RegExp(
        // The weights' 404s, each once, and no other file's (tokenizer.json's is recorded too).
        `has none of model\\.safetensors, .* \\(${
          [
            "model.safetensors",
            "model.safetensors.index.json",
            "pytorch_model.bin",
            "pytorch_model.bin.index.json",
          ]
            .map((f) => `${f.replaceAll(".", "\\.")}: HTTP 404 at \\d{4}-[\\d:.TZ-]+`).join(", ")
        }, recorded in ${join(dir, ".absent.json").replaceAll(".", "\\.")} and not asked for ` +
          `again for a day unless the hub names another commit: delete that file to ask again\\)`,
      ),
    );
    // The record is of that endpoint: the corrected HF_ENDPOINT asks for every file again.
    // Before, its day-old-at-most 404s were trusted, the weights and tokenizer never asked for.
    const { asked, dir: got } = await fetchTinyFrom(mirror, cache);
    assert.ok(asked.includes("model.safetensors") && asked.includes("tokenizer.json"), `${asked}`);
    assert.ok(namesIn(got).includes("tokenizer.json"));
    await assertSameTensors(got, RELU);
  } finally {
    await Promise.all([syncing.close(), mirror.close()]);
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("fetchHubModel: no response at all (not even a refused connection) is offline, not 'the hub answered'", () =>
  inTempDir(async (cache) => {
    const silent = ((_u: string | URL | Request, init?: RequestInit) =>
      new Promise<Response>((_, reject) =>
        init?.signal?.addEventListener("abort", () =>
          reject(new DOMException("aborted")))
      )) as typeof fetch;
    await assert.rejects(
      fetchHubModel("org/t", {
        cacheDir: cache,
        endpoint: "http://hub.invalid",
        fetch: silent,
        retries: 0,
        idleTimeoutMs: 50,
      }),
      (e: Error) => {
        assert.ok(e instanceof HubOfflineError, `${e.name}: ${e.message}`);
        assert.match(e.message, /no response within 0\.05 s/);
        return true;
      },
    );
  }));

Deno.test("fetchHubModel: a 404 record of an earlier version (its endpoint the record's only) is of that endpoint too", async () => {
  const tmp = await Deno.makeTempDir();
  const full = await reluRepo(tmp, "full", [...Deno.readDirSync(RELU)].map((e) => e.name));
  const first = serveHub({ "org/tiny@main": RELU }); // no tokenizer.json
  const mirror = serveHub({ "org/tiny@main": full });
  const cache = join(tmp, "cache");
  const dir = hubModelDir(cache, "org/tiny");
  try {
    await fetchHubModel("org/tiny", { cacheDir: cache, endpoint: first.endpoint });
    // As an earlier version wrote it: the endpoint on the record, none on each check.
    const record = JSON.parse(await Deno.readTextFile(join(dir, ".absent.json")));
    for (const c of Object.values(record.checks) as Record<string, unknown>[]) delete c.endpoint;
    await Deno.writeTextFile(join(dir, ".absent.json"), JSON.stringify(record));
    await Deno.copyFile(GLUE_TOKENIZER, join(full, "tokenizer.json"));
    const { asked, dir: got } = await fetchTinyFrom(mirror, cache);
    assert.ok(asked.includes("tokenizer.json"), `asked the new endpoint: ${asked}`);
    assert.ok(namesIn(got).includes("tokenizer.json"));
  } finally {
    await Promise.all([first.close(), mirror.close()]);
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("fetchHubModel: a truncated download (injected fetch) is retried, then rejected and not cached", () =>
  inTempDir(async (cache) => {
    let calls = 0;
    const fakeFetch = ((_url: string | URL | Request) => (
      calls++, Promise.resolve(new Response("{}", { headers: { "content-length": "9999" } }))
    )) as typeof fetch;
    const { waits, sleep } = recordSleeps();
    await assert.rejects(
      fetchHubModel("org/t", {
        cacheDir: cache,
        endpoint: "http://hub.invalid",
        fetch: fakeFetch,
        sleep,
      }),
      /config\.json: download truncated \(2 of 9999 bytes\); run again to resume/,
    );
    assert.equal(calls, 4, "the first attempt and 3 retries");
    assert.deepEqual(waits, [1000, 2000, 4000]);
    // Nothing under the final name: only the part, which a later run resumes, and the record of
    // where its bytes came from.
    assert.deepEqual(namesIn(hubModelDir(cache, "org/t")), [
      "config.json.part",
      "config.json.part.json",
    ], "nothing cached");
  }));

Deno.test("fetchHubModel: each downloaded file's folder is flushed once it is in place, before the marker", async () => {
  if (Deno.build.os === "windows") return; // syncDir does nothing there
  await withTinyHub(async (cache, hub) => {
    const dir = hubModelDir(cache, "org/tiny");
    const flushes = await recordFlushes(() =>
      fetchHubModel("org/tiny", { cacheDir: cache, endpoint: hub.endpoint })
    );
    // The record of the optional files the repo lacks (tokenizer.json, tokenizer_config.json,
    // spiece.model) is written as each answers 404. Each part's record of its source
    // (`<file>.part.json`, written atomically) is flushed before its first byte; each file's
    // sha256 record, once the file is in place.
    const config = [sidecar("config.json"), "config.json"];
    const absent = [
      ".absent.json",
      sidecar("config.json"),
      sidecar("generation_config.json"),
      "config.json",
      "generation_config.json",
    ];
    const part = (f: string) => [`${f}.part`, `${f}.part.json`];
    assert.deepEqual(flushesOf(flushes, dir), [
      part("config.json"),
      ["config.json"],
      config,
      [...config, ...part("generation_config.json")],
      [...config, "generation_config.json"],
      absent.slice(1),
      absent,
      absent,
      absent,
      [...absent, ...part("model.safetensors")],
      [...absent, "model.safetensors"],
      TINY_CACHED.filter((f) => f !== ".complete.json"),
      TINY_CACHED,
    ]);
  });
});

Deno.test("fetchHubModel: two concurrent fetches into one cache both succeed, no temp file left", () =>
  withTinyHub(async (cache, hub) => {
    // Each writes its own temporary completion marker: neither renames the other's away.
    for (let round = 0; round < 10; round++) {
      await Deno.remove(hubModelDir(cache, "org/tiny"), { recursive: true }).catch(() => {});
      const opts = { cacheDir: cache, endpoint: hub.endpoint };
      const [a, b] = await Promise.all([
        fetchHubModel("org/tiny", opts),
        fetchHubModel("org/tiny", opts),
      ]);
      assert.equal(a, b);
      assert.deepEqual(namesIn(a), TINY_CACHED);
    }
  }));

Deno.test("fetchHubModel: a killed download's temporary is swept, a live one's is kept", () =>
  withTinyHub(async (cache, hub) => {
    const dir = hubModelDir(cache, "org/tiny");
    await Deno.mkdir(dir, { recursive: true });
    // Left by a process killed while downloading: not locked, another pid.
    const dead = join(dir, "model.safetensors.tmp-999999-0123456789ab");
    await Deno.writeTextFile(dead, "partial");
    // One being written right now by another process's download: it holds the lock.
    const live = join(dir, "other.bin.tmp-999998-abcdefabcdef");
    using holder = await Deno.open(live, { write: true, createNew: true });
    holder.lockSync(true);
    await fetchHubModel("org/tiny", { cacheDir: cache, endpoint: hub.endpoint });
    const names = [...Deno.readDirSync(dir)].map((e) => e.name);
    assert.ok(!names.includes(basename(dead)), `swept: ${names}`);
    assert.ok(names.includes(basename(live)), "a held temporary is left alone");
    assert.equal(names.filter((n) => n.includes(".tmp-")).length, 1, `${names}`);
  }));

Deno.test("fetchHubModel: a download in progress writes <file>.part under the file's lock; sweeps keep it", () =>
  inTempDir(async (cache) => {
    const dir = hubModelDir(cache, "org/t");
    let seen: { names: string[]; swept: string[]; lockFree: boolean } | undefined;
    // The body comes in chunks ("{", spaces, "}"); before each, the folder is looked at, and the
    // first look that finds a part is kept.
    const fakeFetch = ((_url: string | URL | Request) => {
      const chunks = ["{", " ", " ", " ", " ", "}"];
      const body = new ReadableStream<Uint8Array>({
        async pull(c) {
          const names = namesIn(dir).filter((n) => !n.startsWith("."));
          if (seen === undefined && names.some((n) => n.endsWith(".part"))) {
            // Another process's lock attempt on the file being written fails while it is held.
            using other = await Deno.open(
              join(dirname(dir), ".locks", `main--${names[0]!.replace(/\.part$/, "")}.lock`),
            );
            const lockFree = other.tryLockSync(true);
            seen = { names, swept: await removeStaleTemps(dir, FILE_TEMPS), lockFree };
          }
          const next = chunks.shift();
          if (next === undefined) c.close();
          else c.enqueue(new TextEncoder().encode(next));
        },
      });
      return Promise.resolve(new Response(body));
    }) as typeof fetch;
    // Every file is "{      }"; model.safetensors is then not a valid file, which ends the fetch.
    await assert.rejects(
      fetchHubModel("org/t", { cacheDir: cache, endpoint: "http://hub.invalid", fetch: fakeFetch }),
      /downloaded model\.safetensors is not a valid safetensors file/,
    );
    assert.ok(seen !== undefined);
    assert.deepEqual(
      seen.names,
      ["config.json.part", "config.json.part.json"],
      "the first file, mid-way: its part and the record of its source",
    );
    assert.deepEqual(seen.swept, [], "a sweep of temporaries does not take a part or its record");
    if (Deno.build.os !== "windows") assert.equal(seen.lockFree, false, "locked while written");
    const left = namesIn(dir);
    assert.ok(!left.some((n) => n.includes(".part") || n.includes(".tmp-")), `left: ${left}`);
    assert.ok(left.includes("config.json"), `${left}`);
  }));

Deno.test("fetchHubModel: follows relative and cross-origin redirects; token stays on the hub", async () => {
  const cdn = serveHub({ "org/tiny@main": RELU });
  const seen: { path: string; auth: string | null }[] = [];
  const hub = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const path = new URL(req.url).pathname;
    seen.push({ path, auth: req.headers.get("authorization") });
    // A renamed repo: relative redirect to the new name, on the hub itself.
    if (path.startsWith("/old-name/")) {
      return new Response(null, {
        status: 307,
        headers: { location: path.replace("/old-name/", "/org/tiny/") },
      });
    }
    // Everything of the new name lives on the CDN (another origin).
    return new Response(null, { status: 302, headers: { location: cdn.endpoint + path } });
  });
  const cache = await Deno.makeTempDir();
  try {
    const dir = await fetchHubModel("old-name", {
      cacheDir: cache,
      endpoint: `http://127.0.0.1:${hub.addr.port}`,
      token: "secret",
    });
    await assertSameTensors(dir, RELU);
    assert.ok(seen.some((r) => r.path.startsWith("/org/tiny/")), "relative redirect followed");
    assert.ok(seen.every((r) => r.auth === "Bearer secret"), "token sent to the hub");
    assert.ok(cdn.requests.length >= 3, "files came from the CDN");
    assert.ok(cdn.requests.every((r) => r.auth === null), "token not sent to the CDN");
  } finally {
    await hub.shutdown();
    await cdn.close();
    await Deno.remove(cache, { recursive: true });
  }
});

/**
 * `fetchHubModel` of org/tiny from a local server that answers every request with `answer`,
 * expected to fail: its error and the waits between attempts it asked for.
 */
async function failedFetchServed(
  cache: string,
  answer: (req: Request) => Response,
): Promise<{ error: Error; waits: number[] }> {
  const hub = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, answer);
  const { waits, sleep } = recordSleeps();
  try {
    const endpoint = `http://127.0.0.1:${hub.addr.port}`;
    const error = await fetchHubModel("org/tiny", { cacheDir: cache, endpoint, sleep }).then(
      (dir) => assert.fail(`fetched into ${dir}`),
      (e: Error) => e,
    );
    return { error, waits };
  } finally {
    await hub.shutdown();
  }
}

Deno.test("fetchHubModel: a redirect loop fails at once, naming it, not retried", () =>
  inTempDir(async (cache) => {
    let asked = 0;
    const { error, waits } = await failedFetchServed(cache, (req) => {
      asked++;
      return new Response(null, { status: 302, headers: { location: new URL(req.url).pathname } });
    });
    assert.match(
      error.message,
      /Model "org\/tiny" could not be fetched: too many redirects from .*config\.json/,
    );
    // One request and its 10 redirects; before, a retry asked the same loop again.
    assert.deepEqual(waits, []);
    assert.equal(asked, 11);
  }));

Deno.test("fetchHubModel: an HTML page for a file (a proxy's login page) fails at once, saying so", () =>
  inTempDir(async (cache) => {
    const { error, waits } = await failedFetchServed(
      cache,
      () => new Response("<html>Sign in</html>", { headers: { "content-type": "text/html" } }),
    );
    assert.ok(!(error instanceof HubOfflineError), error.message);
    assert.match(
      error.message,
      /^Model "org\/tiny": config\.json could not be fetched: GET .*\/config\.json: the server answered with an HTML page \(Content-Type: text\/html\)/,
    );
    assert.deepEqual(waits, [], "not retried");
  }));

Deno.test("fetchHubModel: HF_HUB_OFFLINE=1 uses the cache or explains how to go on", () =>
  withTinyHub(async (cache, hub) => {
    const dir = await fetchHubModel("org/tiny", { cacheDir: cache, endpoint: hub.endpoint });
    const n = hub.requests.length;
    await withEnv({ HF_HUB_OFFLINE: "1" }, async () => {
      assert.equal(
        await fetchHubModel("org/tiny", { cacheDir: cache, endpoint: hub.endpoint }),
        dir,
      );
      await assert.rejects(
        fetchHubModel("org/other", { cacheDir: cache, endpoint: hub.endpoint }),
        /could not be fetched: HF_HUB_OFFLINE=1 .*local folder .*model\.safetensors \(or pytorch_model\.bin\) and tokenizer\.json \(or spiece\.model\)/,
      );
    });
    assert.equal(hub.requests.length, n, "no requests in offline mode");
  }));

Deno.test("offline mode reads HF_HUB_OFFLINE, else TRANSFORMERS_OFFLINE, as huggingface_hub does: 1, on, yes, true in any case", () =>
  withTinyHub(async (cache, hub) => {
    const opts = { cacheDir: cache, endpoint: hub.endpoint };
    const unset = { HF_HUB_OFFLINE: undefined, TRANSFORMERS_OFFLINE: undefined };
    for (
      const [vars, setting] of [
        [{ HF_HUB_OFFLINE: "true" }, "HF_HUB_OFFLINE=true"],
        [{ HF_HUB_OFFLINE: "YES" }, "HF_HUB_OFFLINE=YES"],
        [{ HF_HUB_OFFLINE: "On" }, "HF_HUB_OFFLINE=On"],
        [{ TRANSFORMERS_OFFLINE: "1" }, "TRANSFORMERS_OFFLINE=1"],
        // HF_HUB_OFFLINE set decides, as `HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE` does.
        [{ HF_HUB_OFFLINE: "1", TRANSFORMERS_OFFLINE: "0" }, "HF_HUB_OFFLINE=1"],
        [{ HF_HUB_OFFLINE: "0", TRANSFORMERS_OFFLINE: "1" }, undefined],
        [{ HF_HUB_OFFLINE: "false" }, undefined],
        // huggingface_hub trims nothing: " 1" is not on there, nor here.
        [{ HF_HUB_OFFLINE: " 1" }, undefined],
        [{ HF_HUB_OFFLINE: "", TRANSFORMERS_OFFLINE: "true" }, "TRANSFORMERS_OFFLINE=true"],
        [{}, undefined],
      ] as const
    ) {
      await withEnv({ ...unset, ...vars }, async () => {
        assert.equal(hubOfflineSetting(), setting, JSON.stringify(vars));
        if (setting === undefined) return;
        const n = hub.requests.length;
        const variable = setting.slice(0, setting.indexOf("="));
        await assert.rejects(
          fetchHubModel("org/tiny", opts),
          (e: unknown) =>
            e instanceof HubOfflineError &&
            e.message.includes(`could not be fetched: ${setting} (offline mode)`) &&
            e.message.includes(`Unset ${variable}, or use a local folder`),
        );
        // The other entry point, some files only, reads it alike.
        await assert.rejects(
          fetchHubFiles("org/tiny", { required: ["config.json"] }, opts),
          (e: unknown) =>
            e instanceof HubOfflineError &&
            e.message.includes(`could not be fetched: ${setting} (offline mode)`),
        );
        assert.equal(hub.requests.length, n, `${setting}: no request`);
      });
    }
  }));

Deno.test("offline, a revision in a transformers cache (snapshots/<commit>, refs/<branch>) is named as the folder to pass", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const commit = "0123456789abcdef0123456789abcdef01234567";
    // huggingface_hub's layout: refs/main names the commit, snapshots/<commit>/ holds the files.
    const layout = async (
      root: string,
      files = ["config.json", "model.safetensors", "tokenizer.json"],
    ) => {
      const repo = join(root, "models--org--tiny");
      await Deno.mkdir(join(repo, "refs"), { recursive: true });
      await Deno.writeTextFile(join(repo, "refs", "main"), commit);
      await Deno.mkdir(join(repo, "snapshots", commit), { recursive: true });
      for (const f of files) await Deno.writeTextFile(join(repo, "snapshots", commit, f), "{}");
      return join(repo, "snapshots", commit);
    };
    const none = {
      HF_HUB_CACHE: undefined,
      HUGGINGFACE_HUB_CACHE: undefined,
      TRANSFORMERS_CACHE: undefined,
      HF_HOME: undefined,
      XDG_CACHE_HOME: undefined,
    };
    const home = join(tmp, "home");
    // Found by the roots given, by HF_HUB_CACHE, by HF_HOME, by ~/.cache; a commit directly.
    const given = await layout(join(tmp, "given"));
    await withEnv({ ...none, HOME: home }, async () => {
      assert.equal(transformersSnapshot("org/tiny", "main", [join(tmp, "given")]), given);
      assert.equal(transformersSnapshot("org/tiny", commit, [join(tmp, "given")]), given);
      assert.equal(transformersSnapshot("org/tiny", "v2", [join(tmp, "given")]), undefined);
      assert.equal(transformersSnapshot("org/other", "main", [join(tmp, "given")]), undefined);
      assert.equal(transformersSnapshot("org/tiny", "main"), undefined);
      const inHome = await layout(join(home, ".cache", "huggingface", "hub"));
      assert.equal(transformersSnapshot("org/tiny", "main"), inHome);
    });
    const hfHome = await layout(join(tmp, "hf-home", "hub"));
    await withEnv({ ...none, HOME: home, HF_HOME: join(tmp, "hf-home") }, () => {
      assert.equal(transformersSnapshot("org/tiny", "main"), hfHome);
      return Promise.resolve();
    });
    const hubCache = await layout(join(tmp, "hub-cache"));
    await withEnv({ ...none, HOME: home, HF_HUB_CACHE: join(tmp, "hub-cache") }, () => {
      assert.equal(transformersSnapshot("org/tiny", "main"), hubCache);
      return Promise.resolve();
    });
    await withEnv({ ...none, HOME: home, TRANSFORMERS_CACHE: join(tmp, "hub-cache") }, () => {
      assert.equal(transformersSnapshot("org/tiny", "main"), hubCache, "its legacy name");
      return Promise.resolve();
    });
    // Both set, to other folders: each is looked in (transformers writes to its own).
    await withEnv({
      ...none,
      HOME: home,
      HF_HUB_CACHE: join(tmp, "nothing-there"),
      TRANSFORMERS_CACHE: join(tmp, "hub-cache"),
    }, () => {
      assert.equal(transformersSnapshot("org/tiny", "main"), hubCache);
      return Promise.resolve();
    });
    // A snapshot AutoConfig left (config.json alone), or without a tokenizer: not loadable.
    for (
      const files of [
        ["config.json"],
        ["config.json", "pytorch_model.bin"],
        ["config.json", "tokenizer.json"],
      ]
    ) {
      const partial = join(tmp, `partial-${files.join("+")}`);
      await layout(partial, files);
      assert.equal(transformersSnapshot("org/tiny", "main", [partial]), undefined, `${files}`);
    }
    const bin = join(tmp, "bin");
    const binSnapshot = await layout(bin, ["config.json", "pytorch_model.bin", "spiece.model"]);
    assert.equal(transformersSnapshot("org/tiny", "main", [bin]), binSnapshot);
    // The offline error names it: the cache given is a transformers cache, not this module's.
    await withEnv({ ...none, HOME: join(tmp, "nohome"), HF_HUB_OFFLINE: "1" }, async () => {
      await assert.rejects(
        fetchHubModel("org/tiny", { cacheDir: join(tmp, "given"), endpoint: "http://127.0.0.1:9" }),
        (e: unknown) =>
          e instanceof HubOfflineError &&
          e.message.endsWith(
            ` A Hugging Face (transformers) cache holds this revision at ${given}: pass that ` +
              `folder in place of the hub id (it loads as a local folder).`,
          ),
      );
      // None there: the message as before.
      await assert.rejects(
        fetchHubModel("org/tiny", { cacheDir: join(tmp, "empty"), endpoint: "http://127.0.0.1:9" }),
        (e: unknown) => e instanceof HubOfflineError && !e.message.includes("transformers"),
      );
    });
    // The hub unreachable (no offline mode): named alike.
    await withEnv({ ...none, HOME: join(tmp, "nohome"), HF_HUB_OFFLINE: undefined }, async () => {
      await assert.rejects(
        fetchHubModel("org/tiny", {
          cacheDir: join(tmp, "given"),
          endpoint: "http://127.0.0.1:9",
          retries: 0,
        }),
        (e: unknown) =>
          e instanceof HubOfflineError && /The hub is unreachable/.test(e.message) &&
          e.message.endsWith(
            `holds this revision at ${given}: pass that folder in place of ` +
              `the hub id (it loads as a local folder).`,
          ),
      );
    });
    // XDG_CACHE_HOME in place of ~/.cache.
    const xdg = await layout(join(tmp, "xdg", "huggingface", "hub"));
    await withEnv({ ...none, HOME: home, XDG_CACHE_HOME: join(tmp, "xdg") }, () => {
      assert.equal(transformersSnapshot("org/tiny", "main"), xdg);
      return Promise.resolve();
    });
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("fetchHubFiles: only the named files, into the folder fetchHubModel then completes", async () => {
  const tmp = await Deno.makeTempDir();
  const src = join(tmp, "src");
  const cache = join(tmp, "cache");
  await Deno.mkdir(src);
  for (const f of Deno.readDirSync(RELU)) {
    await Deno.copyFile(join(RELU, f.name), join(src, f.name));
  }
  const tokPath = sharedPath("fixtures", "tokenizer", "unigram-glue-4k", "tokenizer.json");
  await Deno.copyFile(tokPath, join(src, "tokenizer.json"));
  const hub = serveHub({ "org/tiny@main": src, "org/notok@main": RELU });
  const opts = { cacheDir: cache, endpoint: hub.endpoint };
  const files = { required: ["config.json"], optional: ["tokenizer.json"] };
  const asked = (from: number) => hub.requests.slice(from).map((r) => r.path.split("/").pop());
  try {
    const dir = await fetchHubFiles("org/tiny", files, opts);
    assert.equal(dir, hubModelDir(cache, "org/tiny", "main"), "fetchHubModel's folder");
    assert.deepEqual(asked(0), ["config.json", "tokenizer.json"], "no weights requested");
    assert.deepEqual(namesIn(dir), [
      sidecar("config.json"),
      sidecar("tokenizer.json"),
      "config.json",
      "tokenizer.json",
    ], "no completion marker: the weights are not there");
    assert.equal(
      await Deno.readTextFile(join(dir, "tokenizer.json")),
      await Deno.readTextFile(tokPath),
    );
    // Cached: no request; a complete cache answers too.
    let n = hub.requests.length;
    assert.equal(await fetchHubFiles("org/tiny", files, opts), dir);
    assert.equal(hub.requests.length, n, "the named files are cached: no request");
    // fetchHubModel completes the cache: the rest is downloaded, the two files are reused.
    assert.equal(await fetchHubModel("org/tiny", opts), dir);
    const rest = asked(n);
    assert.ok(
      rest.includes("model.safetensors") && rest.includes("generation_config.json"),
      `${rest}`,
    );
    assert.ok(!rest.includes("config.json") && !rest.includes("tokenizer.json"), `${rest}`);
    const marker = JSON.parse(await Deno.readTextFile(join(dir, ".complete.json")));
    assert.ok(
      marker.files.includes("tokenizer.json") && marker.files.includes("model.safetensors"),
    );
    await assertSameTensors(dir, src);
    n = hub.requests.length;
    assert.equal(await fetchHubFiles("org/tiny", files, opts), dir);
    assert.equal(hub.requests.length, n, "complete cache: no request");
    // An optional file the repo lacks (404) is no error; a required one is.
    n = hub.requests.length;
    const notok = await fetchHubFiles("org/notok", files, opts);
    assert.deepEqual(namesIn(notok), [
      ".absent.json",
      sidecar("config.json"),
      "config.json",
    ]);
    assert.deepEqual(asked(n), ["config.json", "tokenizer.json"]);
    // The 404 is recorded: the repo has no tokenizer.json, so the cache holds all it has of the
    // named files and nothing is asked for again (before, tokenizer.json was asked for on every
    // call, and offline the call failed although nothing was missing).
    n = hub.requests.length;
    assert.equal(await fetchHubFiles("org/notok", files, opts), notok);
    assert.equal(hub.requests.length, n, "a recorded 404 is not asked again");
    await assert.rejects(
      fetchHubFiles("org/notok", { required: ["spiece.json"] }, opts),
      /Model "org\/notok" could not be fetched: .*\/spiece\.json answered HTTP 404; check the repo id/,
    );
    await assert.rejects(
      fetchHubFiles("org/tiny", { required: ["../config.json"] }, opts),
      /fetchHubFiles: "\.\.\/config\.json" is not a plain file name/,
    );
    // Offline mode: the cached config.json suffices (the optional tokenizer.json is not asked
    // for); an uncached repo is refused, naming the file.
    n = hub.requests.length;
    await withEnv({ HF_HUB_OFFLINE: "1" }, async () => {
      assert.equal(await fetchHubFiles("org/notok", files, opts), notok);
      await assert.rejects(fetchHubFiles("org/other", files, opts), (e: Error) => {
        assert.ok(e instanceof HubOfflineError, `not a HubOfflineError: ${e}`);
        assert.match(
          e.message,
          /could not be fetched: HF_HUB_OFFLINE=1 \(offline mode\) and config\.json is not in the cache/,
        );
        return true;
      });
    });
    assert.equal(hub.requests.length, n, "no requests in offline mode");
  } finally {
    await hub.close();
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("fetchHubModel: a repo of PyTorch weights only (pytorch_model.bin, or its index and shards)", async () => {
  const tmp = await Deno.makeTempDir();
  const torch = new URL("./testdata/torch/", import.meta.url).pathname;
  const single = join(tmp, "single");
  await Deno.mkdir(single);
  await Deno.copyFile(join(UNTIED, "config.json"), join(single, "config.json"));
  await Deno.copyFile(join(torch, "t5-tiny-v1_1-untied.bin"), join(single, "pytorch_model.bin"));
  const sharded = join(tmp, "sharded");
  await Deno.mkdir(sharded);
  await Deno.copyFile(join(RELU, "config.json"), join(sharded, "config.json"));
  for await (const e of Deno.readDir(join(torch, "t5-tiny-relu"))) {
    await Deno.copyFile(join(torch, "t5-tiny-relu", e.name), join(sharded, e.name));
  }
  const hub = serveHub({ "google/single@main": single, "google/sharded@main": sharded });
  try {
    for (const [repo, src] of [["google/single", single], ["google/sharded", sharded]] as const) {
      const dir = await fetchHubModel(repo, {
        cacheDir: join(tmp, "cache"),
        endpoint: hub.endpoint,
      });
      const weights = hub.requests.map((r) => basename(r.path)).filter((n) =>
        /^(model|pytorch_model)\./.test(n)
      );
      // Safetensors are asked for first.
      assert.deepEqual(weights.slice(0, 3), [
        "model.safetensors",
        "model.safetensors.index.json",
        "pytorch_model.bin",
      ]);
      await assertSameTensors(dir, src);
      hub.requests.length = 0;
      // Complete: reused without a request.
      assert.equal(
        await fetchHubModel(repo, { cacheDir: join(tmp, "cache"), endpoint: hub.endpoint }),
        dir,
      );
      assert.equal(hub.requests.length, 0);
    }
  } finally {
    await hub.close();
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("fetchHubModel: HTTP 503 and 429 are retried (Retry-After honoured); a lasting 503 fails naming it", async () => {
  const cache = await Deno.makeTempDir();
  const hub = serveHub({ "org/tiny@main": RELU, "org/down@main": RELU }, {
    answer: (file, n, req) =>
      req.url.includes("/org/down/")
        ? new Response("down", { status: 503 })
        : file === "config.json" && n === 0
        ? new Response("busy", { status: 503 })
        : file === "model.safetensors" && n === 0
        ? new Response("slow down", { status: 429, headers: { "retry-after": "7" } })
        : undefined,
  });
  const { waits, sleep } = recordSleeps();
  const lines: string[] = [];
  try {
    const opts = {
      cacheDir: cache,
      endpoint: hub.endpoint,
      sleep,
      log: (l: string) => lines.push(l),
    };
    const dir = await fetchHubModel("org/tiny", opts);
    assert.deepEqual(waits, [1000, 7000], "1 s after the 503, the 429's Retry-After: 7");
    const asked = hub.requests.map((r) => basename(r.path));
    assert.equal(asked.filter((f) => f === "config.json").length, 2);
    assert.equal(asked.filter((f) => f === "model.safetensors").length, 2);
    assert.ok(
      lines.includes(
        `org/tiny/config.json: GET ${hub.endpoint}/org/tiny/resolve/main/config.json: HTTP 503; retrying in 1 s`,
      ),
      lines.join("\n"),
    );
    assert.ok(!namesIn(dir).some((n) => n.endsWith(".part")), `${namesIn(dir)}`);
    await assertSameTensors(dir, RELU);
    waits.length = 0;
    await assert.rejects(
      fetchHubModel("org/down", { ...opts, retries: 1 }),
      /Model "org\/down" could not be fetched: .*\/config\.json answered HTTP 503$/,
    );
    assert.deepEqual(waits, [1000]);
    assert.deepEqual(namesIn(hubModelDir(cache, "org/down")), [], "no error page kept");
  } finally {
    await hub.close();
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("fetchHubModel: a stalled transfer is given up after the idle timeout and resumed with Range; the token stays off the CDN", async () => {
  // The CDN sends the first 100 bytes of the weights, then nothing, on the first request.
  const cdn = serveHub({ "org/tiny@main": RELU }, {
    stallAt: (file, n) => file === "model.safetensors" && n === 0 ? 100 : undefined,
  });
  const seen: { path: string; auth: string | null; range: string | null }[] = [];
  const hub = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const path = new URL(req.url).pathname;
    seen.push({ path, auth: req.headers.get("authorization"), range: req.headers.get("range") });
    return new Response(null, { status: 302, headers: { location: cdn.endpoint + path } });
  });
  const cache = await Deno.makeTempDir();
  const { waits, sleep } = recordSleeps();
  const lines: string[] = [];
  try {
    const t0 = Date.now();
    const dir = await fetchHubModel("org/tiny", {
      cacheDir: cache,
      endpoint: `http://127.0.0.1:${hub.addr.port}`,
      token: "secret",
      // 1 s, not less: a healthy transfer paused that long (GC, a loaded 2-core runner) would be
      // given up too and retried once more than the assertions below expect.
      idleTimeoutMs: 1000,
      sleep,
      log: (l) => lines.push(l),
    });
    assert.ok(Date.now() - t0 < 4000, "not the server's 5 s cut: the idle timeout");
    await assertSameTensors(dir, RELU);
    assert.deepEqual(waits, [1000]);
    assert.ok(
      lines.some((l) => /no data for 1 s \(at 100 B\); retrying in 1 s$/.test(l)),
      `${lines}`,
    );
    assert.ok(lines.includes("fetched org/tiny/model.safetensors (183088 bytes, resumed at 100)"));
    const weights = (r: { path: string }) => r.path.endsWith("/model.safetensors");
    // The resumed request goes through the hub again (with the token) to the CDN (without).
    assert.deepEqual(seen.filter(weights).map((r) => [r.auth, r.range]), [
      ["Bearer secret", null],
      ["Bearer secret", "bytes=100-"],
    ]);
    // ... naming the version its first 100 bytes are of (the first response's ETag).
    const etag = `"${await sha256Hex(await Deno.readFile(join(RELU, "model.safetensors")))}"`;
    assert.deepEqual(cdn.requests.filter(weights).map((r) => [r.auth, r.range, r.ifRange]), [
      [null, null, null],
      [null, "bytes=100-", etag],
    ]);
    assert.ok(!namesIn(dir).some((n) => n.includes(".part")), `${namesIn(dir)}`);
    assert.ok(cdn.requests.every((r) => r.auth === null), "token not sent to the CDN");
  } finally {
    await hub.shutdown();
    await cdn.close();
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("fetchHubModel: a part left by an earlier run is resumed, restarted when it has no ETag or the server ignores Range, and settled by 416", async () => {
  const whole = await Deno.readFile(join(RELU, "model.safetensors"));
  const garbage = new Uint8Array(100).fill(7);
  const etag = `"${await sha256Hex(whole)}"`;
  const cases: {
    what: string;
    part: Uint8Array;
    etag?: string;
    ignoreRange?: boolean;
    answer?: (file: string, n: number) => Response | undefined;
    /** Whether `<part>.json` records the part's source (this hub's URL and `etag`); default yes. */
    record?: boolean;
    ranges: (string | null)[];
  }[] = [
    { what: "resumed", part: whole.slice(0, 100), etag, ranges: ["bytes=100-"] },
    // No record of the part's source (left by a version of this code that kept none, only a
    // `.etag`): nothing ties its bytes to this endpoint, so it is fetched whole at once, its ETag
    // not asked about, and the `.etag` removed.
    { what: "no source record", part: whole.slice(0, 100), etag, record: false, ranges: [null] },
    // No ETag recorded for the part (left by a version that kept none): its bytes may be of
    // another version of the file, so the 206 (of the current ETag) is dropped, fetched whole.
    { what: "no ETag recorded", part: whole.slice(0, 100), ranges: ["bytes=100-", null] },
    // The part is of another version of the file (If-Range names it): the server sends the
    // whole current file (200), which restarts the part.
    { what: "file changed", part: garbage, etag: '"stale"', ranges: ["bytes=100-"] },
    // A server without ranges answers 200: the part is written again from byte 0.
    { what: "Range ignored", part: garbage, ignoreRange: true, ranges: ["bytes=100-"] },
    // Killed after the last byte, before the rename: 416 with the size it has, to the If-Range
    // of the part's version (a server honouring If-Range answers a changed file 200).
    { what: "complete part", part: whole, etag, ranges: [`bytes=${whole.length}-`] },
    // The same, but no ETag recorded: nothing says the part is of the current version.
    {
      what: "complete part, no ETag recorded",
      part: whole,
      ranges: [`bytes=${whole.length}-`, null],
    },
    // A part of the same size of an earlier version, and a server that ignores If-Range and
    // answers 416 naming the file's new ETag: before, the stale part was taken as complete.
    {
      what: "complete part of another version",
      part: new Uint8Array(whole.length).fill(7),
      etag: '"stale"',
      answer: (file, n) =>
        file === "model.safetensors" && n === 0
          ? new Response(null, {
            status: 416,
            headers: { "content-range": `bytes */${whole.length}`, etag },
          })
          : undefined,
      ranges: [`bytes=${whole.length}-`, null],
    },
    // Longer than the file: 416 with another size; deleted and fetched from byte 0 at once.
    {
      what: "part too long",
      part: new Uint8Array([...whole, ...garbage]),
      ranges: [`bytes=${whole.length + 100}-`, null],
    },
  ];
  for (const c of cases) {
    const cache = await Deno.makeTempDir();
    const hub = serveHub({ "org/tiny@main": RELU }, {
      ignoreRange: c.ignoreRange,
      answer: c.answer,
    });
    try {
      const dir = hubModelDir(cache, "org/tiny");
      await Deno.mkdir(dir, { recursive: true });
      await Deno.writeFile(join(dir, "model.safetensors.part"), c.part);
      if (c.record === false && c.etag) {
        await Deno.writeTextFile(join(dir, "model.safetensors.part.etag"), c.etag);
      }
      if (c.record !== false) {
        const url = `${hub.endpoint}/org/tiny/resolve/main/model.safetensors`;
        await Deno.writeTextFile(
          join(dir, "model.safetensors.part.json"),
          JSON.stringify(c.etag ? { url, etag: c.etag } : { url }),
        );
      }
      const { waits, sleep } = recordSleeps();
      await fetchHubModel("org/tiny", { cacheDir: cache, endpoint: hub.endpoint, sleep });
      const ranges = hub.requests.filter((r) => r.path.endsWith("/model.safetensors"))
        .map((r) => r.range);
      assert.deepEqual(ranges, c.ranges, c.what);
      const ifRanges = hub.requests.filter((r) => r.path.endsWith("/model.safetensors"))
        .map((r) => r.ifRange);
      assert.deepEqual(
        ifRanges,
        c.ranges.map((range, i) => i === 0 && range !== null ? c.etag ?? null : null),
        c.what,
      );
      assert.deepEqual(waits, [], c.what);
      assert.deepEqual(await Deno.readFile(join(dir, "model.safetensors")), whole, c.what);
      assert.ok(!namesIn(dir).some((n) => n.includes(".part")), c.what);
    } finally {
      await hub.close();
      await Deno.remove(cache, { recursive: true });
    }
  }
});

Deno.test("fetchHubModel: a part cut on one HF_ENDPOINT is restarted, not resumed, on another that sends no ETag", async () => {
  // Endpoint A serves another version of the weights than endpoint B (another mirror, or the
  // file changed between runs); B is a plain server: no ETag, If-Range ignored.
  const tmp = await Deno.makeTempDir();
  const other = join(tmp, "other");
  await Deno.mkdir(other);
  await Deno.copyFile(join(UNTIED, "model.safetensors"), join(other, "model.safetensors"));
  const mine = await Deno.readFile(join(RELU, "model.safetensors"));
  const theirs = await Deno.readFile(join(other, "model.safetensors"));
  assert.notDeepEqual(theirs.slice(0, 100), mine.slice(0, 100), "A's first bytes are not B's");
  const a = serveHub({ "org/tiny@main": other }, { stallAt: () => 100 });
  const b = serveHub({ "org/tiny@main": RELU }, { noEtag: true });
  const cache = join(tmp, "cache");
  const weights = { required: ["model.safetensors"] };
  const dir = hubModelDir(cache, "org/tiny");
  const part = join(dir, "model.safetensors.part");
  const fromA = `${a.endpoint}/org/tiny/resolve/main/model.safetensors`;
  const fromB = `${b.endpoint}/org/tiny/resolve/main/model.safetensors`;
  try {
    // Cut on A after 100 bytes, no retry: the part and its record of A are left.
    await assert.rejects(
      fetchHubFiles("org/tiny", weights, {
        cacheDir: cache,
        endpoint: a.endpoint,
        retries: 0,
        idleTimeoutMs: 300,
      }),
    );
    assert.deepEqual(await Deno.readFile(part), theirs.slice(0, 100));
    assert.equal(JSON.parse(await Deno.readTextFile(`${part}.json`)).url, fromA);
    // The next run asks B: A's bytes are dropped (before, B's 206 without an ETag completed them
    // into a file of two versions), B's file is fetched whole, saying why.
    const lines: string[] = [];
    const { waits, sleep } = recordSleeps();
    await withEnv(
      hubEnv(b.endpoint, cache),
      () =>
        fetchHubFiles("org/tiny", weights, { cacheDir: cache, sleep, log: (l) => lines.push(l) }),
    );
    assert.deepEqual(b.requests.map((r) => [r.range, r.ifRange]), [[null, null]]);
    assert.deepEqual(await Deno.readFile(join(dir, "model.safetensors")), mine);
    assert.deepEqual(waits, []);
    assert.deepEqual(lines, [
      `org/tiny/model.safetensors: the 100 B part came from ${fromA}, not ${fromB}; restarting from 0`,
      `fetched org/tiny/model.safetensors (${mine.length} bytes)`,
    ]);
    assert.deepEqual(
      namesIn(dir),
      [sidecar("model.safetensors"), "model.safetensors"],
      "no part, ETag or record of it left; its sha256 recorded",
    );
  } finally {
    await a.close();
    await b.close();
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("fetchHubFiles: concurrent downloads of one file take turns on its lock, which is removed after", async () => {
  const cache = await Deno.makeTempDir();
  const config = await Deno.readFile(join(RELU, "config.json"));
  // The first answer of config.json sends its body only once released.
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  const hub = serveHub({ "org/tiny@main": RELU }, {
    answer: (file, n) =>
      file === "config.json" && n === 0
        ? new Response(
          new ReadableStream<Uint8Array>({
            async start(c) {
              await gate;
              c.enqueue(config);
              c.close();
            },
          }),
          { headers: { "content-length": String(config.length) } },
        )
        : undefined,
  });
  const locks = join(dirname(hubModelDir(cache, "org/tiny")), ".locks");
  const lock = join(locks, "main--config.json.lock");
  try {
    const opts = { cacheDir: cache, endpoint: hub.endpoint };
    const files = { required: ["config.json"] };
    const first = fetchHubFiles("org/tiny", files, opts);
    while (hub.requests.length === 0) await new Promise((r) => setTimeout(r, 10));
    // Two more wait on the lock the first holds while its body is held back.
    const waiting = [
      fetchHubFiles("org/tiny", files, opts),
      fetchHubFiles("org/tiny", files, opts),
    ];
    await new Promise((r) => setTimeout(r, 300));
    if (Deno.build.os !== "windows") {
      using other = await Deno.open(lock);
      assert.equal(other.tryLockSync(true), false, "held while the first downloads");
    }
    release();
    const dirs = await Promise.all([first, ...waiting]);
    assert.ok(dirs.every((d) => d === hubModelDir(cache, "org/tiny")));
    assert.equal(hub.requests.length, 1, "the waiters found the file the first downloaded");
    assert.equal(
      await Deno.readTextFile(join(dirs[0]!, "config.json")),
      new TextDecoder().decode(config),
    );
    // The holder removes the lock file (before, every file downloaded left one behind).
    if (Deno.build.os !== "windows") assert.deepEqual(namesIn(locks), []);
    // A later download of another file takes a lock again, and removes it too.
    await fetchHubModel("org/tiny", opts);
    if (Deno.build.os !== "windows") assert.deepEqual(namesIn(locks), []);
  } finally {
    release();
    await hub.close();
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("fetchHubModel: a recorded 404 of a branch holds for its commit, is asked again for a new commit or once a day old; a pinned commit keeps it", async () => {
  const tmp = await Deno.makeTempDir();
  const src = join(tmp, "src");
  await Deno.mkdir(src);
  for (const f of Deno.readDirSync(RELU)) {
    await Deno.copyFile(join(RELU, f.name), join(src, f.name));
  }
  const sha = "c".repeat(40);
  const hub = serveHub({ "org/tiny@main": src, [`org/tiny@${sha}`]: src });
  // The hub names the commit a revision resolves to in X-Repo-Commit (here on the redirect to
  // the CDN, where large files live).
  let commit = "a".repeat(40);
  const front = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (req) =>
      new Response(null, {
        status: 302,
        headers: {
          location: hub.endpoint + new URL(req.url).pathname,
          "x-repo-commit": commit,
        },
      }),
  );
  const cache = join(tmp, "cache");
  const opts = { cacheDir: cache, endpoint: `http://127.0.0.1:${front.addr.port}` };
  const dir = hubModelDir(cache, "org/tiny");
  const asked = (from: number) => hub.requests.slice(from).map((r) => basename(r.path));
  const record = () => JSON.parse(Deno.readTextFileSync(join(dir, ".absent.json")));
  try {
    await fetchHubModel("org/tiny", opts);
    assert.equal(record().checks["tokenizer.json"].commit, commit, "the 404's commit recorded");
    const tok = sharedPath("fixtures", "tokenizer", "unigram-glue-4k", "tokenizer.json");
    await Deno.copyFile(tok, join(src, "tokenizer.json"));
    // Same commit (the weights' download names it): the record holds, tokenizer.json not asked.
    await Deno.remove(join(dir, ".complete.json"));
    await Deno.remove(join(dir, "model.safetensors"));
    let n = hub.requests.length;
    await fetchHubModel("org/tiny", opts);
    assert.deepEqual(asked(n), ["model.safetensors"]);
    // A new commit of main adds tokenizer.json. The optional files are looked at before the
    // weights, when the call does not know the commit yet (the record is a minute old: trusted);
    // the weights' answer names the new commit, so the recorded files are asked for after them.
    // Before, the record of main held forever: tokenizer.json was never fetched.
    commit = "b".repeat(40);
    await Deno.remove(join(dir, ".complete.json"));
    await Deno.remove(join(dir, "model.safetensors"));
    n = hub.requests.length;
    await fetchHubModel("org/tiny", opts);
    assert.deepEqual(asked(n), [
      "model.safetensors",
      "tokenizer.json",
      "tokenizer_config.json",
      "spiece.model",
    ]);
    assert.deepEqual(record().files, ["spiece.model", "tokenizer_config.json"]);
    assert.equal(record().checks["spiece.model"].commit, commit);
    assert.equal(
      await Deno.readTextFile(join(dir, "tokenizer.json")),
      await Deno.readTextFile(tok),
    );
    assert.ok(
      JSON.parse(await Deno.readTextFile(join(dir, ".complete.json"))).files
        .includes("tokenizer.json"),
    );
    // A complete folder whose record is more than a day old: asked for again (nothing else), and
    // the record renewed; before, never without force. The first answer names the record's
    // commit, which confirms the other file's record without a request.
    const old = record();
    for (const c of Object.values(old.checks) as { at: string }[]) {
      c.at = new Date(Date.now() - ABSENT_MAX_AGE_MS - 60_000).toISOString();
    }
    await Deno.writeTextFile(join(dir, ".absent.json"), JSON.stringify(old));
    n = hub.requests.length;
    await fetchHubModel("org/tiny", opts);
    assert.deepEqual(asked(n), ["tokenizer_config.json"]);
    assert.ok(
      Object.values(record().checks).every((c) =>
        Date.now() - Date.parse((c as { at: string }).at) < 60_000
      ),
      "both renewed",
    );
    n = hub.requests.length;
    await fetchHubModel("org/tiny", opts);
    assert.equal(hub.requests.length, n, "renewed: complete again, no request");
    // Expired but the hub unreachable (no HF_HUB_OFFLINE): the record stands, at once.
    await Deno.writeTextFile(join(dir, ".absent.json"), JSON.stringify(old));
    const { waits, sleep } = recordSleeps();
    const lines: string[] = [];
    assert.equal(
      await fetchHubModel("org/tiny", {
        cacheDir: cache,
        endpoint: "http://127.0.0.1:1",
        sleep,
        log: (l) => lines.push(l),
      }),
      dir,
    );
    assert.deepEqual(waits, []);
    assert.ok(
      lines.some((l) => /spiece\.model: not re-checked \(hub unreachable\)/.test(l)),
      `${lines}`,
    );
    // fetchHubFiles likewise.
    assert.equal(
      await fetchHubFiles("org/tiny", { required: ["config.json"], optional: ["spiece.model"] }, {
        cacheDir: cache,
        endpoint: "http://127.0.0.1:1",
        sleep,
      }),
      dir,
    );
    assert.deepEqual(waits, []);
    // fetchHubFiles: spiece.model is trusted (a fresh record) until config.json's answer names a
    // new commit; then it is asked for, and the repo now has it.
    await Deno.writeTextFile(join(src, "spiece.model"), "model");
    commit = "d".repeat(40);
    await Deno.remove(join(dir, "config.json"));
    n = hub.requests.length;
    await fetchHubFiles(
      "org/tiny",
      { required: ["config.json"], optional: ["spiece.model"] },
      opts,
    );
    assert.deepEqual(asked(n), ["config.json", "spiece.model"]);
    assert.equal(await Deno.readTextFile(join(dir, "spiece.model")), "model");
    assert.deepEqual(record().files, ["tokenizer_config.json"], "the record forgets it");
    // A pinned commit's record never expires.
    const pinned = hubModelDir(cache, "org/tiny", sha);
    await fetchHubModel("org/tiny", { ...opts, revision: sha });
    const rec = JSON.parse(await Deno.readTextFile(join(pinned, ".absent.json")));
    for (const c of Object.values(rec.checks) as { at: string }[]) {
      c.at = "2000-01-01T00:00:00.000Z";
    }
    await Deno.writeTextFile(join(pinned, ".absent.json"), JSON.stringify(rec));
    n = hub.requests.length;
    await fetchHubModel("org/tiny", { ...opts, revision: sha });
    await fetchHubFiles("org/tiny", { required: [], optional: ["spiece.model"] }, {
      ...opts,
      revision: sha,
    });
    assert.equal(hub.requests.length, n, "a commit's files do not change");
  } finally {
    await front.shutdown();
    await hub.close();
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("fetchHubFiles: a short hex revision (deadbeef) is a branch or tag, not a commit: its day-old 404 record is asked again", async () => {
  // Only a full 40-hex-digit revision names an immutable commit whose recorded 404 holds
  // forever; a short one may be a branch or tag of that spelling (or an abbreviation the hub
  // resolves to whatever it matches now), so its record expires like main's.
  const tmp = await Deno.makeTempDir();
  const cache = join(tmp, "cache");
  const revisions = ["deadbeef", "d".repeat(39)];
  const hub = serveHub(Object.fromEntries(revisions.map((r) => [`org/tiny@${r}`, RELU])));
  const files = { required: ["config.json"], optional: ["spiece.model"] };
  const asked = (from: number) => hub.requests.slice(from).map((r) => basename(r.path));
  try {
    for (const revision of revisions) {
      const opts = { cacheDir: cache, endpoint: hub.endpoint, revision };
      const dir = hubModelDir(cache, "org/tiny", revision);
      let n = hub.requests.length;
      assert.equal(await fetchHubFiles("org/tiny", files, opts), dir);
      assert.deepEqual(asked(n), ["config.json", "spiece.model"], revision);
      // A fresh record holds: nothing asked.
      n = hub.requests.length;
      await fetchHubFiles("org/tiny", files, opts);
      assert.deepEqual(asked(n), [], `${revision}: a fresh record is trusted`);
      // More than a day old: asked for again (a commit's record would still hold).
      const absent = join(dir, ".absent.json");
      const rec = JSON.parse(await Deno.readTextFile(absent));
      for (const c of Object.values(rec.checks) as { at: string }[]) {
        c.at = new Date(Date.now() - ABSENT_MAX_AGE_MS - 60_000).toISOString();
      }
      await Deno.writeTextFile(absent, JSON.stringify(rec));
      n = hub.requests.length;
      await fetchHubFiles("org/tiny", files, opts);
      assert.deepEqual(asked(n), ["spiece.model"], `${revision}: an old record is re-checked`);
    }
  } finally {
    await hub.close();
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("fetchHubModel: HTTP 401/403 while re-checking an old 404 record is an error saying how to pass a token; the cache stays", async () => {
  const cache = await Deno.makeTempDir();
  let refuse: number | undefined;
  const hub = serveHub({ "org/tiny@main": RELU }, {
    answer: () => refuse === undefined ? undefined : new Response("no", { status: refuse }),
  });
  const opts = { cacheDir: cache, endpoint: hub.endpoint };
  try {
    const dir = await fetchHubModel("org/tiny", opts);
    const absent = join(dir, ".absent.json");
    const record = JSON.parse(await Deno.readTextFile(absent));
    for (const c of Object.values(record.checks) as { at: string }[]) {
      c.at = new Date(Date.now() - ABSENT_MAX_AGE_MS - 60_000).toISOString();
    }
    const expired = JSON.stringify(record);
    await Deno.writeTextFile(absent, expired);
    const names = namesIn(dir);
    // The repo became private (401 without a token) or gated (403 with a token lacking access).
    // Before, the refusal was logged, taken for the old absence, and the call went on.
    const url = `${hub.endpoint}/org/tiny/resolve/main/tokenizer.json`;
    const tail = `. It was asked for again because the hub had answered 404 for it (recorded ` +
      `in ${absent}); to use the files cached in ${dir} without asking the hub, set ` +
      `HF_HUB_OFFLINE=1`;
    for (
      const [status, token, hint] of [
        [401, undefined, "set HF_TOKEN to an access token that has access to it"],
        [
          403,
          "tok",
          "and the access token sent (HF_TOKEN, or the token option) was refused or has no " +
          "access to it",
        ],
      ] as const
    ) {
      refuse = status;
      const n = hub.requests.length;
      await withEnv({ HF_TOKEN: undefined, HF_HUB_OFFLINE: undefined }, () =>
        assert.rejects(
          fetchHubModel("org/tiny", { ...opts, ...(token ? { token } : {}) }),
          (e: Error) => {
            assert.equal(
              e.message,
              `Model "org/tiny" could not be fetched: ${url} answered HTTP ${status}; the repo ` +
                `may be gated or private${status === 401 ? ": " : ", "}${hint}${tail}`,
            );
            return true;
          },
        ));
      assert.equal(hub.requests.length, n + 1, "asked once: a refusal is not retried");
      // Nothing written, nothing left: the record, the folder's files, no part or lock.
      assert.equal(await Deno.readTextFile(absent), expired);
      assert.deepEqual(namesIn(dir), names);
      assert.deepEqual(namesIn(join(dirname(dir), ".locks")), []);
    }
    // Offline mode answers from the cache without asking.
    const n = hub.requests.length;
    assert.equal(
      await withEnv({ HF_HUB_OFFLINE: "1" }, () => fetchHubModel("org/tiny", opts)),
      dir,
    );
    assert.equal(hub.requests.length, n);
  } finally {
    await hub.close();
    await Deno.remove(cache, { recursive: true });
  }
});

/** The sha256 record beside `file` in `dir`, as written (`model/hash.ts` `recordSha256`). */
async function sha256Record(dir: string, file: string): Promise<unknown> {
  return JSON.parse(await Deno.readTextFile(join(dir, sidecar(file))));
}

Deno.test("fetchHubModel: an LFS file is checked against the hub's X-Linked-Etag and its sha256 recorded; a git file's too; fileDigest reads the record", async () => {
  const lfs = (f: string) => f === "model.safetensors";
  // noEtag: the hub's own answers name no sha256 for config.json and generation_config.json
  // (as for files kept in git, whose ETag is a git sha1): only the 302's X-Linked-Etag does.
  await inTempDir(async (cache) => {
    const hub = serveHub({ "org/tiny@main": RELU }, { lfs, noEtag: true });
    try {
      let dir = "";
      const read = await bytesRead(async () =>
        dir = await fetchHubModel("org/tiny", { cacheDir: cache, endpoint: hub.endpoint })
      );
      // Hashed as it streamed in: the file is not read again (its header is, to check it).
      const size = (await Deno.stat(join(dir, "model.safetensors"))).size;
      assert.ok(read < size / 10, `${read} bytes read back of ${size}`);
      assert.ok(
        hub.requests.some((r) => r.path === "/cdn/org/tiny/main/model.safetensors"),
        "the weights came through the redirect",
      );
      assert.deepEqual(namesIn(dir), TINY_CACHED);
      for (const [file, hubVerified] of [["model.safetensors", true], ["config.json", false]]) {
        const path = join(dir, file as string);
        const bytes = await Deno.readFile(path);
        const st = await Deno.stat(path);
        assert.deepEqual(await sha256Record(dir, file as string), {
          file,
          bytes: bytes.length,
          mtimeMs: st.mtime!.getTime(),
          sha256: await sha256Hex(bytes),
          hubVerified,
        }, `${file}`);
        assert.deepEqual(await fileDigest(path), {
          bytes: bytes.length,
          sha256: await sha256Hex(bytes),
        });
      }
    } finally {
      await hub.close();
    }
  });
});

Deno.test("fetchHubModel: an LFS file whose bytes are not of the hub's sha256 is deleted and refused, naming both", async () => {
  const lfs = (f: string) => f === "model.safetensors";
  const whole = await Deno.readFile(join(RELU, "model.safetensors"));
  const bad = whole.slice();
  bad[bad.length - 1] = bad.at(-1)! ^ 0xff;
  const [good, got] = [await sha256Hex(whole), await sha256Hex(bad)];
  await inTempDir(async (cache) => {
    // The last byte is tensor data: the safetensors header check passes; only the hash differs.
    const hub = serveHub({ "org/tiny@main": RELU }, { lfs, corrupt: lfs });
    try {
      await assert.rejects(
        fetchHubModel("org/tiny", { cacheDir: cache, endpoint: hub.endpoint }),
        new RegExp(
          `Model "org/tiny": model\\.safetensors downloaded from ${hub.endpoint}/org/tiny/` +
            `resolve/main/model\\.safetensors has sha256 ${got}, but the hub names ${good} ` +
            `\\(its X-Linked-Etag or ETag\\): the download is corrupt and was deleted; run again`,
        ),
      );
      const names = namesIn(hubModelDir(cache, "org/tiny"));
      assert.ok(!names.some((n) => n.includes("model.safetensors")), `${names}`);
      assert.ok(!names.includes(".complete.json"), `${names}`);
    } finally {
      await hub.close();
    }
  });
});

Deno.test("fetchHubModel: a resumed LFS part is hashed whole: a part of other first bytes is refused, a good one recorded", async () => {
  const lfs = (f: string) => f === "model.safetensors";
  const whole = await Deno.readFile(join(RELU, "model.safetensors"));
  const sha = await sha256Hex(whole);
  // A part that ends 100 bytes into the tensor data (after the 8-byte length and the JSON
  // header), and one of those bytes changed: the header check passes; only the hash differs.
  const cut = 8 + Number(new DataView(whole.buffer).getBigUint64(0, true)) + 100;
  const bad = whole.slice(0, cut);
  bad[cut - 1] = bad.at(-1)! ^ 0xff;
  for (const [what, head] of [["good", whole.slice(0, cut)], ["bad", bad]] as const) {
    await inTempDir(async (cache) => {
      const hub = serveHub({ "org/tiny@main": RELU }, { lfs });
      try {
        const dir = hubModelDir(cache, "org/tiny");
        await Deno.mkdir(dir, { recursive: true });
        await Deno.writeFile(join(dir, "model.safetensors.part"), head);
        // The part's source record: the resolve URL, and the CDN's ETag its bytes came with.
        const url = `${hub.endpoint}/org/tiny/resolve/main/model.safetensors`;
        await Deno.writeTextFile(
          join(dir, "model.safetensors.part.json"),
          JSON.stringify({ url, etag: `"${sha.slice(0, 32)}"` }),
        );
        const lines: string[] = [];
        const fetching = fetchHubModel("org/tiny", {
          cacheDir: cache,
          endpoint: hub.endpoint,
          log: (l) => lines.push(l),
        });
        const ranges = () =>
          hub.requests.filter((r) => r.path.startsWith("/cdn/") && r.range !== null)
            .map((r) => r.range);
        if (what === "bad") {
          await assert.rejects(fetching, new RegExp(`but the hub names ${sha} `));
          assert.deepEqual(ranges(), [`bytes=${cut}-`], "resumed, not restarted");
          assert.ok(!namesIn(dir).some((n) => n.includes("model.safetensors")), `${namesIn(dir)}`);
          return;
        }
        await fetching;
        assert.deepEqual(ranges(), [`bytes=${cut}-`], "resumed, not restarted");
        assert.ok(
          lines.includes(
            `fetched org/tiny/model.safetensors (${whole.length} bytes, resumed at ${cut})`,
          ),
        );
        assert.deepEqual(
          await Deno.readFile(join(dir, "model.safetensors")),
          whole,
        );
        const record = await sha256Record(dir, "model.safetensors") as Record<string, unknown>;
        assert.equal(record.sha256, sha);
        assert.equal(record.hubVerified, true);
      } finally {
        await hub.close();
      }
    });
  }
});

Deno.test("fetchHubModel: the sha256 is the hub's X-Linked-Etag (W/ and upper case taken off) of its last answer, never its ETag beside it nor the CDN's 64-hex ETag", async () => {
  // Kills: ETag read before X-Linked-Etag; an earlier hop's digest kept over the last one's;
  // the CDN's answers read for the sha256 (no statement of the hub's); the W/ prefix or
  // upper-case hex digits not normalised.
  const whole = await Deno.readFile(join(RELU, "model.safetensors"));
  const sha = await sha256Hex(whole);
  // 64 hex digits, not the file's sha256: taken as the expected digest, the download fails.
  const other = "ab".repeat(32);
  const cdn = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const file = basename(new URL(req.url).pathname);
    let body: Uint8Array<ArrayBuffer>;
    try {
      body = await Deno.readFile(join(RELU, file));
    } catch {
      return new Response("Entry not found", { status: 404 });
    }
    return new Response(body, {
      headers: { etag: `"${other}"`, "content-length": String(body.length) },
    });
  });
  const cdnBase = `http://127.0.0.1:${cdn.addr.port}`;
  const hub = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const path = new URL(req.url).pathname;
    // A renamed repo: for the weights, the hub's first answer (a redirect on its own origin) has
    // a 64-hex ETag that is not the file's; the last answer of the hub's own names the sha256.
    if (path.startsWith("/old-name/")) {
      return new Response(null, {
        status: 307,
        headers: {
          location: path.replace("/old-name/", "/org/tiny/"),
          ...(basename(path) === "model.safetensors" ? { etag: `"${other}"` } : {}),
        },
      });
    }
    const lfs = basename(path) === "model.safetensors";
    return new Response(null, {
      status: 302,
      headers: {
        location: cdnBase + path,
        ...(lfs ? { "x-linked-etag": `W/"${sha.toUpperCase()}"`, etag: `"${other}"` } : {}),
      },
    });
  });
  try {
    await inTempDir(async (cache) => {
      const dir = await fetchHubModel("old-name", {
        cacheDir: cache,
        endpoint: `http://127.0.0.1:${hub.addr.port}`,
      });
      const record = await sha256Record(dir, "model.safetensors") as Record<string, unknown>;
      assert.equal(record.sha256, sha);
      assert.equal(record.hubVerified, true, "the X-Linked-Etag named the sha256");
      const config = await sha256Record(dir, "config.json") as Record<string, unknown>;
      assert.equal(config.hubVerified, false, "the hub named no sha256 for config.json");
    });
  } finally {
    await hub.shutdown();
    await cdn.shutdown();
  }
});
