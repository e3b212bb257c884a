import assert from "node:assert/strict";
import { basename, join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { sharedPath } from "./shared_dir.ts";
import { loadHfFolder, saveHfFolder } from "./checkpoint.ts";
import { defaultHubCacheDir, fetchHubFiles, fetchHubModel, hubModelDir } from "./hub.ts";
import { withEnv } from "./env_testing.ts";
import { serveHub } from "./hub_testing.ts";
import { flushesOf, recordFlushes } from "./fs_testing.ts";
import { FILE_TEMPS, isTempInUse } from "./fs.ts";

await tf.setBackend("cpu");

const RELU = sharedPath("fixtures", "hf-t5", "t5-tiny-relu");
const UNTIED = sharedPath("fixtures", "hf-t5", "t5-tiny-v1_1-untied");

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

Deno.test("fetchHubModel: unsharded repo, optional 404s, cache reuse without network", async () => {
  const cache = await Deno.makeTempDir();
  const hub = serveHub({ "org/tiny@main": RELU });
  try {
    const dir = await fetchHubModel("org/tiny", {
      cacheDir: cache,
      endpoint: hub.endpoint,
      token: "tok",
    });
    assert.equal(dir, hubModelDir(cache, "org/tiny", "main"));
    const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assert.deepEqual(names, [
      ".absent.json",
      ".complete.json",
      "config.json",
      "generation_config.json",
      "model.safetensors",
    ]);
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
  } finally {
    await hub.close();
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("fetchHubModel: sharded repo with tokenizer, HF_ENDPOINT and HF_TOKEN from env", async () => {
  const tmp = await Deno.makeTempDir();
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
  Deno.env.set("HF_ENDPOINT", hub.endpoint + "/");
  Deno.env.set("HF_TOKEN", "envtok");
  try {
    const dir = await fetchHubModel("google/t5-x", {
      cacheDir: join(tmp, "cache"),
      revision: "v1.0",
    });
    const names = [...Deno.readDirSync(dir)].map((e) => e.name);
    const shards = names.filter((n) => /^model-\d+-of-\d+\.safetensors$/.test(n));
    assert.ok(shards.length >= 2, `shards: ${shards}`);
    assert.ok(names.includes("tokenizer.json") && names.includes("model.safetensors.index.json"));
    assert.ok(!names.some((n) => n.includes(".tmp-")), "no partial files left");
    assert.equal(await Deno.readTextFile(join(dir, "tokenizer.json")), tok);
    assert.ok(hub.requests.every((r) => r.auth === "Bearer envtok"));
    await assertSameTensors(dir, src);
  } finally {
    Deno.env.delete("HF_ENDPOINT");
    Deno.env.delete("HF_TOKEN");
    await hub.close();
    await Deno.remove(tmp, { recursive: true });
  }
});

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
    const binHub = serveHub({ "org/bin@main": bin, "org/tf@main": tfOnly });
    try {
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

Deno.test("fetchHubModel: unreachable endpoint says offline and how to use a local folder", async () => {
  const cache = await Deno.makeTempDir();
  // A port that was just free (connection refused), and port 1 (refused by fetch itself).
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const closedPort = (l.addr as Deno.NetAddr).port;
  l.close();
  try {
    for (const endpoint of [`http://127.0.0.1:${closedPort}`, "http://127.0.0.1:1"]) {
      await assert.rejects(
        fetchHubModel("google-t5/t5-small", { cacheDir: cache, endpoint }),
        (e: Error) => {
          assert.match(e.message, /Model "google-t5\/t5-small" could not be fetched/);
          assert.match(e.message, /offline/);
          assert.match(e.message, /local folder/);
          assert.match(e.message, /config\.json, model\.safetensors .*and tokenizer\.json/);
          return true;
        },
      );
    }
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("fetchHubModel: a truncated download (injected fetch) is rejected and not cached", async () => {
  const cache = await Deno.makeTempDir();
  const fakeFetch = ((_url: string | URL | Request) =>
    Promise.resolve(
      new Response("{}", { headers: { "content-length": "9999" } }),
    )) as typeof fetch;
  try {
    await assert.rejects(
      fetchHubModel("org/t", { cacheDir: cache, endpoint: "http://hub.invalid", fetch: fakeFetch }),
      /config\.json: download truncated \(2 of 9999 bytes\)/,
    );
    assert.deepEqual([...Deno.readDirSync(hubModelDir(cache, "org/t"))], [], "nothing cached");
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("fetchHubModel: each downloaded file's folder is flushed once it is in place, before the marker", async () => {
  if (Deno.build.os === "windows") return; // syncDir does nothing there
  const cache = await Deno.makeTempDir();
  const hub = serveHub({ "org/tiny@main": RELU });
  try {
    const dir = hubModelDir(cache, "org/tiny");
    const flushes = await recordFlushes(() =>
      fetchHubModel("org/tiny", { cacheDir: cache, endpoint: hub.endpoint })
    );
    // The record of the optional files the repo lacks (tokenizer.json, tokenizer_config.json,
    // spiece.model) is written as each answers 404.
    const absent = [".absent.json", "config.json", "generation_config.json"];
    assert.deepEqual(flushesOf(flushes, dir), [
      ["config.json"],
      ["config.json", "generation_config.json"],
      absent,
      absent,
      absent,
      [...absent, "model.safetensors"],
      [
        ".absent.json",
        ".complete.json",
        "config.json",
        "generation_config.json",
        "model.safetensors",
      ],
    ]);
  } finally {
    await hub.close();
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("fetchHubModel: two concurrent fetches into one cache both succeed, no temp file left", async () => {
  const cache = await Deno.makeTempDir();
  const hub = serveHub({ "org/tiny@main": RELU });
  try {
    // Each writes its own temporary completion marker: neither renames the other's away.
    for (let round = 0; round < 10; round++) {
      await Deno.remove(hubModelDir(cache, "org/tiny"), { recursive: true }).catch(() => {});
      const opts = { cacheDir: cache, endpoint: hub.endpoint };
      const [a, b] = await Promise.all([
        fetchHubModel("org/tiny", opts),
        fetchHubModel("org/tiny", opts),
      ]);
      assert.equal(a, b);
      const names = [...Deno.readDirSync(a)].map((e) => e.name).sort();
      assert.deepEqual(names, [
        ".absent.json",
        ".complete.json",
        "config.json",
        "generation_config.json",
        "model.safetensors",
      ]);
    }
  } finally {
    await hub.close();
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("fetchHubModel: a killed download's temporary is swept, a live one's is kept", async () => {
  const cache = await Deno.makeTempDir();
  const hub = serveHub({ "org/tiny@main": RELU });
  const dir = hubModelDir(cache, "org/tiny");
  await Deno.mkdir(dir, { recursive: true });
  // Left by a process killed while downloading: not locked, another pid.
  const dead = join(dir, "model.safetensors.tmp-999999-0123456789ab");
  await Deno.writeTextFile(dead, "partial");
  // One being written right now by another process's download: it holds the lock.
  const live = join(dir, "other.bin.tmp-999998-abcdefabcdef");
  const holder = await Deno.open(live, { write: true, createNew: true });
  holder.lockSync(true);
  try {
    await fetchHubModel("org/tiny", { cacheDir: cache, endpoint: hub.endpoint });
    const names = [...Deno.readDirSync(dir)].map((e) => e.name);
    assert.ok(!names.includes(basename(dead)), `swept: ${names}`);
    assert.ok(names.includes(basename(live)), "a held temporary is left alone");
    assert.equal(names.filter((n) => n.includes(".tmp-")).length, 1, `${names}`);
  } finally {
    holder.close();
    await hub.close();
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("fetchHubModel: a download in progress writes a held temporary that sweeps know", async () => {
  const cache = await Deno.makeTempDir();
  const dir = hubModelDir(cache, "org/t");
  let seen: { names: string[]; inUse: boolean[] } | undefined;
  // The body comes in chunks ("{", spaces, "}"); before each, the folder is looked at, and the
  // first look that finds a temporary is kept.
  const fakeFetch = ((_url: string | URL | Request) => {
    const chunks = ["{", " ", " ", " ", " ", "}"];
    const body = new ReadableStream<Uint8Array>({
      pull(c) {
        const names = [...Deno.readDirSync(dir)].map((e) => e.name)
          .filter((n) => !n.startsWith(".") && n.includes(".tmp-"));
        if (names.length > 0) {
          seen ??= { names, inUse: names.map((n) => isTempInUse(join(dir, n))) };
        }
        const next = chunks.shift();
        if (next === undefined) c.close();
        else c.enqueue(new TextEncoder().encode(next));
      },
    });
    return Promise.resolve(new Response(body));
  }) as typeof fetch;
  try {
    // Every file is "{}"; model.safetensors is then not a valid file, which ends the fetch. The
    // first file's download, seen mid-way: one temporary, named and locked as sweeps expect.
    await assert.rejects(
      fetchHubModel("org/t", { cacheDir: cache, endpoint: "http://hub.invalid", fetch: fakeFetch }),
    );
    assert.ok(seen !== undefined);
    assert.equal(seen.names.length, 1, `${seen.names}`);
    assert.match(seen.names[0]!, FILE_TEMPS.held, "FILE_TEMPS' pattern");
    if (Deno.build.os !== "windows") assert.deepEqual(seen.inUse, [true], "locked while written");
    const left = [...Deno.readDirSync(dir)].map((e) => e.name);
    assert.ok(!left.some((n) => n.includes(".tmp-")), `no temporary left: ${left}`);
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});

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

Deno.test("fetchHubModel: HF_HUB_OFFLINE=1 uses the cache or explains how to go on", async () => {
  const cache = await Deno.makeTempDir();
  const hub = serveHub({ "org/tiny@main": RELU });
  try {
    const dir = await fetchHubModel("org/tiny", { cacheDir: cache, endpoint: hub.endpoint });
    const n = hub.requests.length;
    Deno.env.set("HF_HUB_OFFLINE", "1");
    assert.equal(await fetchHubModel("org/tiny", { cacheDir: cache, endpoint: hub.endpoint }), dir);
    await assert.rejects(
      fetchHubModel("org/other", { cacheDir: cache, endpoint: hub.endpoint }),
      /could not be fetched: HF_HUB_OFFLINE=1 .*local folder .*model\.safetensors \(or pytorch_model\.bin\) and tokenizer\.json \(or spiece\.model\)/,
    );
    assert.equal(hub.requests.length, n, "no requests in offline mode");
  } finally {
    Deno.env.delete("HF_HUB_OFFLINE");
    await hub.close();
    await Deno.remove(cache, { recursive: true });
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
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
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
    assert.deepEqual([...Deno.readDirSync(notok)].map((e) => e.name).sort(), [
      ".absent.json",
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
      await assert.rejects(
        fetchHubFiles("org/other", files, opts),
        /could not be fetched: HF_HUB_OFFLINE=1 \(offline mode\) and config\.json is not in the cache/,
      );
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
