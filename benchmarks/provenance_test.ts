import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { repoPath, sharedPath } from "../model/shared_dir.ts";
import { withEnv } from "../model/env_testing.ts";
import { inTempDir } from "../model/fs_testing.ts";
import { chooseDataDir } from "../tasks/data.ts";
import {
  codeGitState,
  collectProvenance,
  dataProvenance,
  deviceDescription,
  gitState,
  gitStateOnce,
  pinnedPackages,
  readCpuinfo,
  resumeRecord,
} from "./provenance.ts";

Deno.test("gitState() reads the commit of this repository", () => {
  const g = gitState();
  assert.match(g.sha, /^[0-9a-f]{40}$/);
  assert.equal(typeof g.dirty, "boolean");
});

Deno.test("gitState(): an edit or a new file is a change; a new file under results/ (a tool's report) is not", async () => {
  const dir = await Deno.makeTempDir();
  const run = async (...args: string[]) => {
    const out = await new Deno.Command("git", { args, cwd: dir, stdout: "null", stderr: "piped" })
      .output();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
  };
  try {
    await run("init", "-q");
    await Deno.writeTextFile(join(dir, "mod.ts"), "export {};\n");
    // A committed report, as this repository has: git then lists new reports one by one.
    await Deno.mkdir(join(dir, "results", "perf"), { recursive: true });
    await Deno.writeTextFile(join(dir, "results", "perf", "old.json"), "{}");
    await Deno.writeTextFile(join(dir, "results", "perf", "old2.json"), "{}");
    await run("add", "mod.ts", "results");
    await run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one");
    assert.equal(gitState(dir).dirty, false);
    // A new report (its name quoted by git: a space) is no change of the code.
    await Deno.writeTextFile(join(dir, "results", "perf", "a b.json"), "{}");
    await Deno.writeTextFile(join(dir, "results", "perf", "c.json"), "{}");
    assert.equal(gitState(dir).dirty, false, "new reports under results/: no code changed");
    // From a subfolder too (porcelain paths are the root's).
    assert.equal(gitState(join(dir, "results")).dirty, false);
    // A committed file under results/ edited is a change; so is a new file in a folder that is
    // merely named results elsewhere, and any untracked source file.
    // (Two: git's first status line loses its leading space to a trim, the second keeps it.)
    await Deno.writeTextFile(join(dir, "results", "perf", "old.json"), "{ }");
    await Deno.writeTextFile(join(dir, "results", "perf", "old2.json"), "{ }");
    assert.equal(gitState(dir).dirty, true, "edited tracked reports");
    await run("checkout", "--", "results/perf/old.json");
    assert.equal(gitState(dir).dirty, true, "an edited tracked report");
    await run("checkout", "--", "results/perf/old2.json");
    assert.equal(gitState(dir).dirty, false);
    await Deno.mkdir(join(dir, "src", "results"), { recursive: true });
    await Deno.writeTextFile(join(dir, "src", "results", "x.ts"), "export {};\n");
    assert.equal(gitState(dir).dirty, true, "src/results/x.ts is code");
    await Deno.remove(join(dir, "src"), { recursive: true });
    await Deno.writeTextFile(join(dir, "new.ts"), "export {};\n");
    assert.equal(gitState(dir).dirty, true, "an untracked source file");
    await Deno.remove(join(dir, "new.ts"));
    await Deno.writeTextFile(join(dir, "mod.ts"), "export const x = 1;\n");
    assert.equal(gitState(dir).dirty, true, "an edit");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("gitStateOnce() reads the state once: a commit or edit later does not change it", () => {
  const states = [
    { sha: "a".repeat(40), dirty: false },
    { sha: "b".repeat(40), dirty: true },
  ];
  let reads = 0;
  const once = gitStateOnce(() => states[reads++]!);
  assert.equal(reads, 0, "nothing read before the first call");
  assert.deepEqual(once(), states[0]);
  assert.deepEqual(once(), states[0], "the tree changed: still the state first read");
  assert.equal(reads, 1);
});

Deno.test("codeGitState() is this process's repository state, read once", () => {
  const first = codeGitState();
  assert.match(first.sha, /^[0-9a-f]{40}$/);
  assert.equal(codeGitState(), first, "the same record on every call, not read again");
});

Deno.test("pinnedPackages() lists the npm pins of deno.json", () => {
  const p = pinnedPackages();
  assert.equal(p["@tensorflow/tfjs"], "4.22.0");
  assert.match(p["cli-progress"] ?? "", /^\d+\.\d+\.\d+$/);
  // Sorted by name (deno.json lists @tensorflow/tfjs before @huggingface/tokenizers).
  assert.deepEqual(Object.keys(p), Object.keys(p).sort());
});

Deno.test("collectProvenance() records versions, backend, device and times", () => {
  const start = new Date("2026-01-01T00:00:00Z");
  const end = new Date("2026-01-01T00:01:00Z");
  const backend = {
    requested: "auto",
    name: "wasm+blas",
    tfBackend: "wasm",
    threads: 2,
    notes: ["x"],
  };
  const p = collectProvenance(start, backend, end);
  assert.equal(p.tfjs, "4.22.0");
  assert.equal(p.deno, Deno.version.deno);
  assert.equal(p.startedAt, "2026-01-01T00:00:00.000Z");
  assert.equal(p.finishedAt, "2026-01-01T00:01:00.000Z");
  assert.deepEqual(p.backend, backend);
  assert.match(p.device, /\(wasm\+blas, 2 threads\)$/);
  assert.ok(p.hostname.length > 0);
  assert.equal(
    deviceDescription({ ...backend, name: "webgpu", adapter: "NVIDIA H100" }),
    "NVIDIA H100 (webgpu)",
  );
});

Deno.test("collectProvenance() records the git state it is given (taken when the run started)", () => {
  const p = collectProvenance(new Date(0), undefined, new Date(1000), {
    sha: "abc123",
    dirty: true,
  });
  assert.equal(p.gitSha, "abc123");
  assert.equal(p.gitDirty, true);
});

Deno.test("resumeRecord(): none for a fresh start; the checkpoint's code unless provably the same", () => {
  const clean = { sha: "a".repeat(40), dirty: false };
  assert.equal(resumeRecord(0, undefined, clean), undefined);
  assert.deepEqual(resumeRecord(4, clean, clean), { step: 4 });
  const other = { sha: "b".repeat(40), dirty: false };
  assert.deepEqual(resumeRecord(4, other, clean), { step: 4, gitSha: other.sha, gitDirty: false });
  // Same commit but a dirty tree on either side: the code may differ, so it is recorded.
  assert.deepEqual(resumeRecord(4, { ...clean, dirty: true }, clean), {
    step: 4,
    gitSha: clean.sha,
    gitDirty: true,
  });
  assert.deepEqual(resumeRecord(4, clean, { ...clean, dirty: true }), {
    step: 4,
    gitSha: clean.sha,
    gitDirty: false,
  });
  // A checkpoint from before checkpoints recorded their code.
  assert.deepEqual(resumeRecord(2, undefined, clean), {
    step: 2,
    gitSha: "unknown",
    gitDirty: false,
  });
  // Steps trained on another backend (a run resumed elsewhere under backend "auto") are named;
  // the same backend, or a checkpoint that does not say, adds nothing.
  const gpu = { ...clean, backend: "webgpu" };
  assert.deepEqual(resumeRecord(4, gpu, clean, "wasm+blas"), { step: 4, backend: "webgpu" });
  assert.deepEqual(resumeRecord(4, gpu, clean, "webgpu"), { step: 4 });
  assert.deepEqual(resumeRecord(4, { ...other, backend: "cpu" }, clean, "wasm"), {
    step: 4,
    gitSha: other.sha,
    gitDirty: false,
    backend: "cpu",
  });
  assert.deepEqual(resumeRecord(4, clean, clean, "wasm"), { step: 4 });
  const p = collectProvenance(new Date(0), undefined, new Date(1), clean, {
    resumedFrom: { step: 2, gitSha: "unknown", gitDirty: false },
  });
  assert.deepEqual(p.resumedFrom, { step: 2, gitSha: "unknown", gitDirty: false });
  assert.equal(
    collectProvenance(new Date(0), undefined, new Date(1), clean).resumedFrom,
    undefined,
  );
});

/** Writes `text` to `dir/path`, creating the folders. */
async function write(dir: string, path: string, text: string): Promise<void> {
  await Deno.mkdir(join(dir, path, ".."), { recursive: true });
  await Deno.writeTextFile(join(dir, path), text);
}

/** A download cache's `manifest.json` listing `files` as path → [source, sha256, bytes]. */
async function writeManifest(
  cache: string,
  files: Record<string, [string, string, number]>,
): Promise<void> {
  const entry = ([source, sha256, bytes]: [string, string, number]) => ({
    task: "glue/rte",
    sha256,
    bytes,
    rows: 1,
    source,
    verified: "rows",
    from: [],
    writtenAt: "2026-01-01T00:00:00Z",
  });
  await write(
    cache,
    "manifest.json",
    JSON.stringify({
      version: 1,
      archives: {},
      files: Object.fromEntries(Object.entries(files).map(([p, f]) => [p, entry(f)])),
    }),
  );
}

/** The hex sha256 of a text. */
async function sha256Of(text: string): Promise<string> {
  const hash = new Uint8Array(
    await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)),
  );
  return [...hash].map((b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("dataProvenance() tells a download cache (official/parquet) from a mirror and a plain folder; each file hashed, a listing that differs kept beside", () =>
  inTempDir(async (root) => {
    // A download cache: manifest.json says which file came from where. train.tsv is as listed;
    // dev.tsv was changed after the download listed it (its listed digest is another).
    const cache = join(root, "cache");
    await write(cache, "glue/RTE/train.tsv", "abc");
    await write(cache, "glue/RTE/dev.tsv", "de");
    await writeManifest(cache, {
      "glue/RTE/train.tsv": ["parquet", await sha256Of("abc"), 1],
      "glue/RTE/dev.tsv": ["official", "2".repeat(64), 1],
    });
    const c = await dataProvenance(cache, ["glue/RTE/train.tsv", "glue/RTE/dev.tsv"]);
    assert.equal(c.kind, "cache");
    assert.equal(c.dir, await Deno.realPath(cache));
    assert.deepEqual(c.sources, ["official", "parquet"]);
    assert.deepEqual(c.files, {
      "glue/RTE/dev.tsv": {
        bytes: 2,
        sha256: await sha256Of("de"),
        listedSha256: "2".repeat(64),
        source: "official",
      },
      "glue/RTE/train.tsv": { bytes: 3, sha256: await sha256Of("abc"), source: "parquet" },
    });
    // A mirror copy: SHA256SUMS, no manifest; its file edited since (CRLF endings, say).
    const mirror = join(root, "mirror");
    await write(mirror, "super_glue/CB/train.jsonl", "{}");
    await write(mirror, "SHA256SUMS", `${"3".repeat(64)}  ./super_glue/CB/train.jsonl\n`);
    const m = await dataProvenance(mirror, ["super_glue/CB/train.jsonl"]);
    assert.equal(m.kind, "mirror");
    assert.deepEqual(m.sources, []);
    assert.deepEqual(m.files, {
      "super_glue/CB/train.jsonl": {
        bytes: 2,
        sha256: await sha256Of("{}"),
        listedSha256: "3".repeat(64),
      },
    });
    // Files put there by hand: hashed too.
    const plain = join(root, "plain");
    await write(plain, "super_glue/CB/train.jsonl", "{}");
    const f = await dataProvenance(plain, ["super_glue/CB/train.jsonl"]);
    assert.equal(f.kind, "folder");
    assert.deepEqual(f.files, {
      "super_glue/CB/train.jsonl": { bytes: 2, sha256: await sha256Of("{}") },
    });
    await assert.rejects(
      () => dataProvenance(plain, ["glue/RTE/train.tsv"]),
      /glue\/RTE\/train\.tsv/,
    );
  }));

Deno.test({
  name: "dataProvenance() of the offline mirror shared/data lists its SHA256SUMS digests",
  ignore: !(() => {
    try {
      return Deno.statSync(sharedPath("data/super_glue/CB/train.jsonl")).isFile;
    } catch {
      return false;
    }
  })(),
  fn: async () => {
    const d = await dataProvenance(sharedPath("data"), ["super_glue/CB/train.jsonl"]);
    assert.equal(d.kind, "mirror");
    // The mirror's files are as its SHA256SUMS lists them: hashed, and no listed digest beside.
    const cb = d.files["super_glue/CB/train.jsonl"];
    assert.match(cb?.sha256 ?? "", /^[0-9a-f]{64}$/);
    assert.equal(cb?.listedSha256, undefined);
    assert.match(
      await Deno.readTextFile(sharedPath("data/SHA256SUMS")),
      new RegExp(`^${cb?.sha256}\\s+\\*?(\\./)?super_glue/CB/train\\.jsonl$`, "m"),
    );
  },
});

Deno.test("dataProvenance() of the merged link folder reads each file's own folder's listing", () =>
  inTempDir(async (root) => {
    // RTE from the download cache (converted parquet), CB from the mirror.
    const cache = join(root, "cache");
    await write(cache, "glue/RTE/train.tsv", "abc");
    await writeManifest(cache, { "glue/RTE/train.tsv": ["parquet", "1".repeat(64), 3] });
    const mirror = join(root, "mirror");
    await write(mirror, "super_glue/CB/train.jsonl", "{}");
    await write(mirror, "SHA256SUMS", `${"3".repeat(64)}  ./super_glue/CB/train.jsonl\n`);
    const merged = chooseDataDir({ cacheDir: cache, mirrorDir: mirror, log: () => {} });
    assert.match(merged, /merged/);
    const p = await dataProvenance(merged, ["glue/RTE/train.tsv", "super_glue/CB/train.jsonl"]);
    assert.equal(p.kind, "folder");
    assert.deepEqual(p.sources, ["parquet"]);
    assert.deepEqual(p.files, {
      "glue/RTE/train.tsv": {
        bytes: 3,
        sha256: await sha256Of("abc"),
        listedSha256: "1".repeat(64),
        source: "parquet",
        from: { dir: await Deno.realPath(cache), kind: "cache" },
      },
      "super_glue/CB/train.jsonl": {
        bytes: 2,
        sha256: await sha256Of("{}"),
        listedSha256: "3".repeat(64),
        from: { dir: await Deno.realPath(mirror), kind: "mirror" },
      },
    });
  }));

Deno.test("resumeRecord(): the sessions' micro-batches, recorded only when they differ", () => {
  const clean = { sha: "a".repeat(40), dirty: false };
  const ck = { ...clean, backend: "webgpu" };
  assert.deepEqual(resumeRecord(4, ck, clean, "webgpu", [8]), { step: 4 });
  assert.deepEqual(resumeRecord(4, ck, clean, "webgpu", [8, 4]), {
    step: 4,
    microBatchSizes: [8, 4],
  });
  // A checkpoint from before the record: its sessions are unknown (null).
  assert.deepEqual(resumeRecord(4, ck, clean, "wasm+blas", [null, 2]), {
    step: 4,
    backend: "webgpu",
    microBatchSizes: [null, 2],
  });
  assert.equal(resumeRecord(0, ck, clean, "webgpu", [8, 4]), undefined, "a fresh start");
});

Deno.test("collectProvenance() records each version under its own field, the adapter, the OS target and the data read", () => {
  const backend = {
    requested: "auto",
    name: "webgpu",
    tfBackend: "webgpu",
    adapter: "NVIDIA H100",
    threads: 1,
    notes: [],
  };
  const data = {
    dir: "/d",
    kind: "mirror" as const,
    sources: [],
    files: { "glue/RTE/dev.tsv": { bytes: 3 } },
  };
  const p = collectProvenance(new Date(0), backend, new Date(1), { sha: "a", dirty: false }, {
    data,
  });
  assert.deepEqual(
    [p.deno, p.v8, p.typescript, p.os],
    [Deno.version.deno, Deno.version.v8, Deno.version.typescript, Deno.build.target],
  );
  assert.deepEqual(p.backend, backend, "the adapter is kept");
  assert.equal(p.device, "NVIDIA H100 (webgpu)");
  assert.deepEqual(p.data, data);
  assert.deepEqual(p.packages, pinnedPackages());
  // tfjs-node's GPU build names its adapter too; a CPU backend never does.
  assert.equal(
    deviceDescription({ ...backend, name: "tensorflow", adapter: "GPU 0" }),
    "GPU 0 (tensorflow)",
  );
  assert.match(
    deviceDescription({ ...backend, name: "cpu", adapter: "GPU 0" }),
    /^(?!GPU 0).* \(cpu, 1 threads\)$/,
  );
});

Deno.test({
  name:
    "deviceDescription() names the CPU model under the tasks' permissions (Deno refuses /proc " +
    "reads without --allow-all: readCpuinfo falls back to cat)",
  ignore: Deno.build.os !== "linux",
  fn() {
    const text = new TextDecoder().decode(
      new Deno.Command("cat", { args: ["/proc/cpuinfo"] }).outputSync().stdout,
    );
    assert.ok(text.length > 0, "cat /proc/cpuinfo printed something");
    assert.equal(readCpuinfo(), text);
    // Where the file names no model (some ARM kernels), the architecture stands in.
    const model = /^model name\s*:\s*(.+)$/m.exec(text)?.[1]?.trim() ?? Deno.build.arch;
    const cores = navigator.hardwareConcurrency;
    assert.equal(
      deviceDescription({ requested: "cpu", name: "cpu", tfBackend: "cpu", threads: 1, notes: [] }),
      `${model} x${cores} (cpu, 1 threads)`,
    );
  },
});

Deno.test("gitState() with no folder reads this repository: its HEAD, dirty exactly when git status lists a change", () => {
  const read = () => {
    const run = (args: string[]) => {
      const out = new Deno.Command("git", { args, cwd: repoPath() }).outputSync();
      assert.ok(out.success, `git ${args.join(" ")}`);
      return new TextDecoder().decode(out.stdout).trim();
    };
    return { sha: run(["rev-parse", "HEAD"]), dirty: run(["status", "--porcelain"]) !== "" };
  };
  // Read on both sides: another process may commit or change the tree meanwhile.
  const before = read();
  const g = gitState();
  const after = read();
  assert.ok(
    [before, after].some((r) => r.sha === g.sha && r.dirty === g.dirty),
    `gitState() ${JSON.stringify(g)}, git ${JSON.stringify(before)} then ${JSON.stringify(after)}`,
  );
});

Deno.test("gitState(dir) on a temporary repository: its commit, dirty for a modified tracked or an untracked file, not for an ignored one", () =>
  // CI's clone is clean, so the test above never sees a dirty tree; this repository can be made so.
  // No repository above the temporary folder may stand in for it (TMPDIR inside a checkout).
  inTempDir((dir) =>
    withEnv({ GIT_CEILING_DIRECTORIES: dirname(dir) }, () => {
      const git = (...args: string[]) => {
        const out = new Deno.Command("git", {
          args: [
            "-c",
            "user.email=t@t",
            "-c",
            "user.name=t",
            "-c",
            "commit.gpgsign=false",
            ...args,
          ],
          cwd: dir,
          stdout: "piped",
          stderr: "piped",
        }).outputSync();
        const text = (b: Uint8Array) => new TextDecoder().decode(b).trim();
        assert.ok(out.success, `git ${args.join(" ")}: ${text(out.stderr)}`);
        return text(out.stdout);
      };
      const noRepo = { sha: "unknown", dirty: false };
      assert.deepEqual(gitState(dir), noRepo, "a folder that is not a repository");
      assert.deepEqual(gitState(join(dir, "missing")), noRepo, "a folder that does not exist");

      git("init", "-q");
      Deno.writeTextFileSync(join(dir, "a.txt"), "one\n");
      assert.deepEqual(gitState(dir), noRepo, "a repository without a commit has no HEAD");
      Deno.writeTextFileSync(join(dir, ".gitignore"), "ignored/\n");
      git("add", "a.txt", ".gitignore");
      git("commit", "-q", "-m", "first");
      const first = git("rev-parse", "HEAD");
      assert.match(first, /^[0-9a-f]{40}$/);
      assert.deepEqual(gitState(dir), { sha: first, dirty: false }, "clean after the commit");

      Deno.writeTextFileSync(join(dir, "a.txt"), "two\n");
      assert.deepEqual(gitState(dir), { sha: first, dirty: true }, "a modified tracked file");
      Deno.writeTextFileSync(join(dir, "a.txt"), "one\n");
      assert.deepEqual(gitState(dir), { sha: first, dirty: false }, "the change undone");

      Deno.writeTextFileSync(join(dir, "new.txt"), "x\n");
      assert.deepEqual(gitState(dir), { sha: first, dirty: true }, "an untracked file");
      Deno.removeSync(join(dir, "new.txt"));
      Deno.mkdirSync(join(dir, "ignored"));
      Deno.writeTextFileSync(join(dir, "ignored", "run.json"), "{}\n");
      assert.deepEqual(gitState(dir), { sha: first, dirty: false }, "an ignored file");

      Deno.mkdirSync(join(dir, "sub"));
      Deno.writeTextFileSync(join(dir, "sub", "b.txt"), "b\n");
      git("add", "sub/b.txt");
      assert.deepEqual(gitState(dir), { sha: first, dirty: true }, "a staged new file");
      git("commit", "-q", "-m", "second");
      const second = git("rev-parse", "HEAD");
      assert.notEqual(second, first);
      assert.deepEqual(gitState(dir), { sha: second, dirty: false }, "the next commit");
      assert.deepEqual(
        gitState(join(dir, "sub")),
        { sha: second, dirty: false },
        "a subfolder: the repository holding it",
      );
      return Promise.resolve(); // withEnv takes a promise; every check above is synchronous
    })
  ));

Deno.test("resumeRecord(): two unknown commits are not the same code (no git on either side)", () => {
  const noGit = { sha: "unknown", dirty: false };
  assert.deepEqual(resumeRecord(3, noGit, noGit), { step: 3, gitSha: "unknown", gitDirty: false });
  assert.deepEqual(resumeRecord(3, undefined, noGit), {
    step: 3,
    gitSha: "unknown",
    gitDirty: false,
  });
});

Deno.test("dataProvenance() reads SHA256SUMS lines in binary mode ('*path') and without './'", () =>
  inTempDir(async (root) => {
    await write(root, "glue/RTE/dev.tsv", "ab");
    await write(root, "glue/RTE/train.tsv", "abc");
    await write(
      root,
      "SHA256SUMS",
      `${"4".repeat(64)} *./glue/RTE/dev.tsv\n${"5".repeat(64)}  glue/RTE/train.tsv\n`,
    );
    const d = await dataProvenance(root, ["glue/RTE/train.tsv", "glue/RTE/dev.tsv"]);
    // Both lines read (their digests differ from the files', so both are kept beside).
    assert.deepEqual(d.files, {
      "glue/RTE/dev.tsv": { bytes: 2, sha256: await sha256Of("ab"), listedSha256: "4".repeat(64) },
      "glue/RTE/train.tsv": {
        bytes: 3,
        sha256: await sha256Of("abc"),
        listedSha256: "5".repeat(64),
      },
    });
  }));
