import assert from "node:assert/strict";
import { HF_PARITY_TOL } from "./parity_testing.ts";
import { basename, join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { sharedPath } from "./shared_dir.ts";
import { preset } from "./config.ts";
import { disposeT5, forward, initT5, shiftRight, t5FromTensors, t5StateDict } from "./t5.ts";
import { loadT5Weights } from "./pretrained.ts";
import { bytesRead } from "./read_meter_testing.ts";
import { unzipSync } from "fflate";
import { gpuTest } from "./webgpu/testing.ts";
import {
  CheckpointError,
  fileDigest,
  inspectHfFolder,
  loadHfFolder,
  loadSafetensorsFile,
  removeStaleSaveTemps,
  saveHfFolder,
  type SaveSwapPoint,
  weightFileNames,
} from "./checkpoint.ts";
import { isLocalFileError, makeHeldTempDir } from "./fs.ts";
import { recordSha256 } from "./hash.ts";
import {
  copyTree,
  diskFullError,
  flushesOf,
  inTempDir,
  recordFlushes,
  withOpenedFiles,
} from "./fs_testing.ts";
import { decodeSafetensors, f16BitsToF32, f32BitsToBf16, f32BitsToF16 } from "./safetensors.ts";
import { readTorchBinHeader } from "./torch_bin.ts";

await tf.setBackend("cpu");

const FIXTURES = ["t5-tiny-relu", "t5-tiny-v1_1-untied"];

function disposeAll(m: Map<string, tf.Tensor>): void {
  for (const t of m.values()) t.dispose();
}

/**
 * Runs `body` in a fresh temporary folder (removed afterwards, whatever happens) and asserts that
 * it leaves as many tensors as there were before it.
 */
function leakFreeInTempDir(body: (tmp: string) => Promise<void>): Promise<void> {
  return inTempDir(async (tmp) => {
    const before = tf.memory().numTensors;
    await body(tmp);
    assert.equal(tf.memory().numTensors, before, "no leaked tensors");
  });
}

async function copyDir(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const e of Deno.readDir(from)) {
    await Deno.writeFile(join(to, e.name), await Deno.readFile(join(from, e.name)));
  }
}

Deno.test("loadHfFolder loads both HF fixtures with values identical to the file bytes", async () => {
  for (const name of FIXTURES) {
    const dir = sharedPath("fixtures", "hf-t5", name);
    const before = tf.memory().numTensors;
    const ref = JSON.parse(await Deno.readTextFile(join(dir, "reference.json")));
    const { config, tensors } = await loadHfFolder(dir);
    assert.equal(config.dModel, 32);
    assert.equal(config.relativeAttentionNumBuckets, 8);
    let total = 0;
    for (const t of tensors.values()) total += t.size;
    assert.equal(total, ref.n_params, `${name}: parameter total`);
    // Every parameter with a gradient in the reference is present.
    for (const k of Object.keys(ref.grad_l2_norms)) assert.ok(tensors.has(k), `${name}: ${k}`);
    const raw = decodeSafetensors(await Deno.readFile(join(dir, "model.safetensors")), name);
    for (const [k, r] of raw.tensors) {
      const t = tensors.get(k)!;
      assert.equal(t.dtype, "float32");
      assert.deepEqual(t.shape, [...r.shape]);
      const want = new Float32Array(r.data.slice().buffer);
      const got = t.dataSync();
      assert.ok(want.every((v, i) => Object.is(v, got[i])), `${name}: ${k} values differ`);
    }
    disposeAll(tensors);
    assert.equal(tf.memory().numTensors, before, "no leaked tensors");
  }
});

/** Runs `fn` with `path` cut to `to` bytes just before the `n`th `Deno.FsFile` read. */
async function cutBeforeRead(path: string, n: number, to: number, fn: () => Promise<unknown>) {
  const proto = Deno.FsFile.prototype;
  const read = proto.read;
  let reads = 0;
  proto.read = async function (this: Deno.FsFile, p: Uint8Array) {
    if (++reads === n) await Deno.truncate(path, to);
    return await read.call(this, p);
  };
  try {
    await fn();
  } finally {
    proto.read = read;
  }
  assert.ok(reads >= n, `${reads} reads, fewer than ${n}`);
}

Deno.test("a safetensors file that shrinks while it is loaded: the error names the file and what was read", async () => {
  const tmp = await Deno.makeTempDir();
  const dir = join(tmp, "t5");
  await copyDir(sharedPath("fixtures", "hf-t5", "t5-tiny-relu"), dir);
  const path = join(dir, "model.safetensors");
  const whole = await Deno.readFile(path);
  const dataStart = 8 + Number(new DataView(whole.buffer).getBigUint64(0, true));
  const before = tf.memory().numTensors;
  try {
    // Cut after its size was taken (before: "unexpected end of file at byte N", naming no file).
    const cases: [number, number, RegExp][] = [
      [1, 4, /: unexpected end of file at byte 4 while reading its header length \(bytes 0–8\)/],
      [2, 100, /: unexpected end of file at byte 100 while reading its header \(bytes 8–/],
      [
        3,
        dataStart + 2,
        /: tensor "[^"]+": unexpected end of file at byte \d+ while reading its data/,
      ],
    ];
    for (const [n, to, message] of cases) {
      await Deno.writeFile(path, whole);
      await cutBeforeRead(path, n, to, async () => {
        await assert.rejects(loadSafetensorsFile(path), (e: Error) => {
          assert.ok(e.message.startsWith(`${path}: `), `names the file: ${e.message}`);
          assert.match(e.message, message);
          assert.match(e.message, /shorter than when it was opened/);
          return true;
        });
      });
      assert.equal(tf.memory().numTensors, before, "nothing is left");
    }
    // loadHfFolder reads each header once: a file changed between its header and its data is
    // refused, here by its size.
    await Deno.writeFile(path, whole);
    await assert.rejects(
      loadHfFolder(dir, { check: () => Deno.truncateSync(path, whole.byteLength - 4) }),
      (e: Error) => {
        assert.ok(
          e.message.startsWith(
            `${path}: changed while being read (since its header was read: size ${whole.byteLength} → ${
              whole.byteLength - 4
            } bytes`,
          ),
          e.message,
        );
        assert.ok(e.message.endsWith("); rerun"), e.message);
        return true;
      },
    );
    assert.equal(tf.memory().numTensors, before, "nothing is left");
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

/**
 * Replaces `path` by a file of `bytes` written beside it and renamed over it, with `path`'s
 * modification time: the same size and time, another inode (as a download or a save replaces a
 * file).
 */
function renameOver(path: string, bytes: Uint8Array): void {
  const stat = Deno.statSync(path);
  Deno.writeFileSync(`${path}.new`, bytes);
  Deno.utimeSync(`${path}.new`, stat.atime!, stat.mtime!);
  Deno.renameSync(`${path}.new`, path);
}

/** `bytes` with its last byte changed: the same size, other contents. */
function otherBytes(bytes: Uint8Array): Uint8Array {
  const out = bytes.slice();
  out[out.length - 1]! ^= 0x40;
  return out;
}

/** Asserts that `e` refuses `path` as changed `since` (what changed matching `change`). */
function changedWhileRead(e: Error, path: string, since: string, change: RegExp): true {
  const prefix = `${path}: changed while being read (${since}: `;
  assert.ok(e.message.startsWith(prefix), e.message);
  assert.ok(e.message.endsWith("); rerun"), e.message);
  assert.match(e.message.slice(prefix.length, -"); rerun".length), change);
  return true;
}

Deno.test("a weights file rewritten between its header and its data, even to the same size, is refused naming the file", async () => {
  // Before, only the size was compared (safetensors) or nothing (pytorch_model.bin), so a file
  // rewritten to the same size was read with the old file's header: wrong tensors, silently.
  const tmp = await Deno.makeTempDir();
  const before = tf.memory().numTensors;
  try {
    const dir = join(tmp, "t5");
    await copyDir(sharedPath("fixtures", "hf-t5", "t5-tiny-relu"), dir);
    const path = join(dir, "model.safetensors");
    const whole = await Deno.readFile(path);
    const since = "since its header was read";
    // Another file of the same size and modification time renamed over it: its inode.
    await assert.rejects(
      loadHfFolder(dir, { check: () => renameOver(path, otherBytes(whole)) }),
      (e: Error) => changedWhileRead(e, path, since, /^inode \d+ → \d+$/),
    );
    assert.equal(tf.memory().numTensors, before, "nothing is left");
    // Rewritten in place to the same size: its modification time (set 2 s later here, as the file
    // system's timestamp granularity could otherwise give the same one within a few ms).
    await Deno.writeFile(path, whole);
    const rewrite = () => {
      const mtime = Deno.statSync(path).mtime!;
      Deno.writeFileSync(path, otherBytes(whole));
      Deno.utimeSync(path, mtime, new Date(mtime.getTime() + 2000));
    };
    await assert.rejects(
      loadHfFolder(dir, { check: rewrite }),
      (e: Error) => changedWhileRead(e, path, since, /^modification time \S+ → \S+$/),
    );
    assert.equal(tf.memory().numTensors, before, "nothing is left");
    // (Rewritten in place with its modification time put back, as by cp -p: its status-change
    // time, which Deno 2.9.6 gives in whole seconds; fileChange's test in fs_test.ts.)
    // Written to in place while its tensors are read (here before the first tensor's read).
    await Deno.writeFile(path, whole);
    const proto = Deno.FsFile.prototype;
    const read = proto.read;
    let reads = 0;
    proto.read = async function (this: Deno.FsFile, p: Uint8Array) {
      if (++reads === 3) {
        const mtime = Deno.statSync(path).mtime!;
        using f = await Deno.open(path, { write: true });
        await f.seek(whole.byteLength - 1, Deno.SeekMode.Start);
        await f.write(new Uint8Array([whole[whole.byteLength - 1]! ^ 0x40]));
        Deno.utimeSync(path, mtime, new Date(mtime.getTime() + 2000));
      }
      return await read.call(this, p);
    };
    try {
      await assert.rejects(
        loadSafetensorsFile(path),
        (e: Error) =>
          changedWhileRead(e, path, "while its tensors were read", /^modification time \S+ → \S+$/),
      );
    } finally {
      proto.read = read;
    }
    assert.ok(reads >= 3, `${reads} reads`);
    assert.equal(tf.memory().numTensors, before, "nothing is left");
    // Unchanged, it loads.
    await Deno.writeFile(path, whole);
    disposeAll((await loadHfFolder(dir)).tensors);
    // pytorch_model.bin the same (zip and legacy): another file renamed over it.
    for (const format of TORCH_FORMATS) {
      const tdir = await torchFolder("t5-tiny-v1_1-untied", format);
      try {
        const bin = join(tdir, "pytorch_model.bin");
        const bytes = await Deno.readFile(bin);
        await assert.rejects(
          loadHfFolder(tdir, { check: () => renameOver(bin, otherBytes(bytes)) }),
          (e: Error) => changedWhileRead(e, bin, since, /^inode \d+ → \d+$/),
        );
        assert.equal(tf.memory().numTensors, before, `${format}: nothing is left`);
      } finally {
        await Deno.remove(tdir, { recursive: true });
      }
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("a read that fails for another reason than the end of the file is not called a truncation", async () => {
  const tmp = await Deno.makeTempDir();
  const path = join(tmp, "model.safetensors");
  await Deno.copyFile(sharedPath("fixtures", "hf-t5", "t5-tiny-relu", "model.safetensors"), path);
  const proto = Deno.FsFile.prototype;
  const read = proto.read;
  let reads = 0;
  // The third read (the first tensor's data) fails as a disk error would.
  proto.read = async function (this: Deno.FsFile, p: Uint8Array) {
    if (++reads === 3) throw new Error("Input/output error (os error 5)");
    return await read.call(this, p);
  };
  const before = tf.memory().numTensors;
  try {
    await assert.rejects(loadSafetensorsFile(path), (e: Error) => {
      assert.match(
        e.message,
        /^.*model\.safetensors: tensor "[^"]+": Input\/output error \(os error 5\) while reading its data \(bytes \d+–\d+\)$/,
      );
      assert.doesNotMatch(e.message, /shorter|truncated/, "the file did not shrink");
      return true;
    });
  } finally {
    proto.read = read;
    await Deno.remove(tmp, { recursive: true });
  }
  assert.equal(reads, 3);
  assert.equal(tf.memory().numTensors, before, "nothing is left");
});

/** `s` as a regular expression matching itself. */
function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * Asserts that `p` rejects with a {@link CheckpointError} whose message matches `re` and whose
 * `file` and `field` are those given.
 */
async function rejectsCheckpoint(
  p: Promise<unknown>,
  re: RegExp,
  file: string,
  field?: string,
): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof CheckpointError, `not a CheckpointError: ${e}`);
    assert.equal(e.name, "CheckpointError");
    assert.match(e.message, re);
    assert.equal(e.file, file, e.message);
    assert.equal(e.field, field, e.message);
    return true;
  });
}

Deno.test("loadHfFolder errors are CheckpointErrors naming the file and field", async () => {
  const tmp = await Deno.makeTempDir();
  const dir = join(tmp, "ck");
  await rejectsCheckpoint(loadHfFolder(dir), /ck: checkpoint folder does not exist$/, dir);
  await copyDir(sharedPath("fixtures", "hf-t5", "t5-tiny-relu"), dir);
  const config = join(dir, "config.json");
  await Deno.remove(config);
  // The file is named once: "<dir>/config.json: not found".
  await rejectsCheckpoint(
    loadHfFolder(dir),
    new RegExp(`^${escapeRe(config)}: not found$`),
    config,
  );
  await Deno.writeTextFile(config, "{ not json");
  await rejectsCheckpoint(loadHfFolder(dir), /config\.json:1:3: invalid JSON/, config);
  await Deno.writeTextFile(config, JSON.stringify({ d_model: 32 }));
  await rejectsCheckpoint(
    loadHfFolder(dir),
    /config\.json: missing field "num_layers"/,
    config,
    "num_layers",
  );
  const fixtureConfig = await Deno.readTextFile(
    sharedPath("fixtures", "hf-t5", "t5-tiny-relu", "config.json"),
  );
  await Deno.writeTextFile(config, JSON.stringify({ ...JSON.parse(fixtureConfig), d_ff: "64" }));
  await rejectsCheckpoint(
    inspectHfFolder(dir),
    /config\.json: field "d_ff" must be a number, got "64" \(string\)$/,
    config,
    "d_ff",
  );
  await Deno.writeTextFile(config, fixtureConfig);
  const w = join(dir, "model.safetensors");
  const bytes = await Deno.readFile(w);
  await Deno.writeFile(w, bytes.subarray(0, bytes.byteLength - 100));
  const before = tf.memory().numTensors;
  await rejectsCheckpoint(
    loadHfFolder(dir),
    /model\.safetensors: tensor ".*": data_offsets .* out of range \(data section has \d+ bytes\) \(the file is truncated: an interrupted download\?\)$/,
    w,
  );
  assert.equal(tf.memory().numTensors, before, "partial loads are disposed");
  await Deno.writeFile(w, bytes.subarray(0, 100));
  await rejectsCheckpoint(loadHfFolder(dir), /model\.safetensors: truncated safetensors header/, w);
  await Deno.remove(w);
  await rejectsCheckpoint(
    loadHfFolder(dir),
    /no model\.safetensors, model\.safetensors\.index\.json, pytorch_model\.bin or pytorch_model\.bin\.index\.json$/,
    dir,
  );
  const index = join(dir, "model.safetensors.index.json");
  await Deno.writeTextFile(index, JSON.stringify({ x: 1 }));
  await rejectsCheckpoint(
    loadHfFolder(dir),
    /index\.json: missing or invalid field "weight_map"/,
    index,
    "weight_map",
  );
  await Deno.writeTextFile(
    index,
    JSON.stringify({ weight_map: { "shared.weight": "model-00001-of-00002.safetensors" } }),
  );
  // A shard the index lists but the folder lacks: the error names the index too.
  const shard = join(dir, "model-00001-of-00002.safetensors");
  for (const load of [loadHfFolder, inspectHfFolder]) {
    await rejectsCheckpoint(
      load(dir),
      new RegExp(
        `^${escapeRe(shard)}: missing safetensors file \\(a shard that ${
          escapeRe(index)
        } lists\\)$`,
      ),
      shard,
    );
  }
  // A shard name that is a folder: "Is a directory (os error 21)" named nothing before.
  for (const name of ["..", "."]) {
    await Deno.writeTextFile(index, JSON.stringify({ weight_map: { "shared.weight": name } }));
    await rejectsCheckpoint(
      loadHfFolder(dir),
      /index\.json: field "weight_map"\."shared\.weight" must be a shard file name, got "\.{1,2}"/,
      index,
      "weight_map",
    );
  }
  await Deno.mkdir(join(dir, "sub.safetensors"));
  await Deno.writeTextFile(
    index,
    JSON.stringify({ weight_map: { "shared.weight": "sub.safetensors" } }),
  );
  const sub = join(dir, "sub.safetensors");
  await rejectsCheckpoint(
    loadHfFolder(dir),
    /sub\.safetensors: not a safetensors file \(a folder/,
    sub,
  );
  await rejectsCheckpoint(
    inspectHfFolder(dir),
    /sub\.safetensors: not a safetensors file \(a folder/,
    sub,
  );
  await Deno.remove(tmp, { recursive: true });
});

Deno.test("a folder of TF or Flax weights only: the error names them and how to convert; PyTorch's are read", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const dir = join(tmp, "ck");
    await Deno.mkdir(dir);
    await Deno.copyFile(
      sharedPath("fixtures", "hf-t5", "t5-tiny-relu", "config.json"),
      join(dir, "config.json"),
    );
    await Deno.writeFile(join(dir, "tf_model.h5"), new Uint8Array(8));
    await Deno.writeFile(join(dir, "flax_model.msgpack"), new Uint8Array(8));
    for (const f of [loadHfFolder, inspectHfFolder]) {
      await assert.rejects(f(dir), (e: Error) => {
        assert.match(
          e.message,
          /ck: no model\.safetensors, model\.safetensors\.index\.json, pytorch_model\.bin or pytorch_model\.bin\.index\.json/,
        );
        assert.match(
          e.message,
          /holds tf_model\.h5, flax_model\.msgpack, which this loader does not read \(safetensors and PyTorch only\)/,
        );
        assert.ok(e.message.includes(`from_pretrained(${JSON.stringify(dir)})`), e.message);
        assert.ok(e.message.includes(`save_pretrained(${JSON.stringify(dir)})`), e.message);
        assert.match(e.message, /from_tf=True/);
        return true;
      });
    }
    // A sharded PyTorch checkpoint (no pytorch_model.bin itself) is read, its index checked.
    await Deno.writeTextFile(join(dir, "pytorch_model.bin.index.json"), "{}");
    await assert.rejects(
      loadHfFolder(dir),
      /ck\/pytorch_model\.bin\.index\.json: missing or invalid field "weight_map"/,
    );
    // pytorch_model.bin comes before the index; safetensors before both.
    await Deno.writeFile(join(dir, "pytorch_model.bin"), new Uint8Array(8));
    await assert.rejects(loadHfFolder(dir), /ck\/pytorch_model\.bin: not a PyTorch checkpoint/);
    await Deno.copyFile(
      sharedPath("fixtures", "hf-t5", "t5-tiny-relu", "model.safetensors"),
      join(dir, "model.safetensors"),
    );
    assert.equal((await inspectHfFolder(dir)).source, join(dir, "model.safetensors"));
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("save then load round-trips float32 bit-exactly, sharded and unsharded", async () => {
  const src = await loadHfFolder(sharedPath("fixtures", "hf-t5", "t5-tiny-v1_1-untied"));
  await leakFreeInTempDir(async (tmp) => {
    for (const maxShardBytes of [undefined, 40_000]) {
      const dir = join(tmp, "out", "model");
      await saveHfFolder(dir, src.config, src.tensors, {
        maxShardBytes,
        extraFiles: { "tokenizer.json": "{}", "blob.bin": new Uint8Array([1, 2]) },
      });
      const files = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
      if (maxShardBytes === undefined) {
        assert.deepEqual(files, [
          "blob.bin",
          "config.json",
          "generation_config.json",
          "model.safetensors",
          "tokenizer.json",
        ]);
      } else {
        assert.ok(files.includes("model.safetensors.index.json"));
        const shards = files.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f));
        assert.ok(shards.length >= 7, `expected >= 7 shards, got ${shards.length}`);
        for (const s of shards) {
          const size = (await Deno.stat(join(dir, s))).size;
          const raw = decodeSafetensors(await Deno.readFile(join(dir, s)), s);
          const data = [...raw.tensors.values()].reduce((a, t) => a + t.data.byteLength, 0);
          assert.ok(data <= 40_000 || raw.tensors.size === 1, `${s}: ${size} bytes`);
        }
      }
      const info = await inspectHfFolder(dir);
      assert.deepEqual([...info.tensors.keys()].sort(), [...src.tensors.keys()].sort());
      for (const [k, t] of info.tensors) {
        assert.deepEqual(t.shape, src.tensors.get(k)!.shape);
        assert.equal(t.dtype, "F32");
      }
      if (maxShardBytes) {
        assert.ok(new Set([...info.tensors.values()].map((t) => t.file)).size >= 7);
      }
      const back = await loadHfFolder(dir);
      assert.deepEqual(back.config, src.config);
      assert.deepEqual([...back.tensors.keys()].sort(), [...src.tensors.keys()].sort());
      for (const [k, t] of src.tensors) {
        const a = t.dataSync();
        const b = back.tensors.get(k)!.dataSync();
        assert.ok(a.every((v, i) => Object.is(v, b[i])), `${k} not bit-exact`);
      }
      disposeAll(back.tensors);
      // No temp or old folders are left beside the destination.
      assert.deepEqual([...Deno.readDirSync(join(tmp, "out"))].map((e) => e.name), ["model"]);
    }
  });
  disposeAll(src.tensors);
});

Deno.test("float16/bfloat16 saves round-trip to the rounded values", async () => {
  const f32 = (x: number) => new Uint32Array(new Float32Array([x]).buffer)[0]!;
  const vals = [
    1,
    1 + 2 ** -11,
    1 + 3 * 2 ** -11,
    2 ** -25,
    3 * 2 ** -25,
    2 ** -24,
    65520,
    1e-3,
    -0.1,
    Infinity,
    -Infinity,
    NaN,
    0.3333333,
  ];
  const want16 = vals.map((v) => f16BitsToF32(f32BitsToF16(f32(v))));
  assert.deepEqual(want16.slice(0, 8), [
    1,
    1,
    1 + 2 ** -9,
    0,
    2 ** -23,
    2 ** -24,
    Infinity,
    0.0010004043579101562,
  ]);
  const bf = (v: number) =>
    new Float32Array(new Uint32Array([f32BitsToBf16(f32(v)) << 16]).buffer)[0]!;
  const wantBf = vals.map(bf);
  assert.equal(wantBf[1], 1, "1 + 2^-11 rounds to 1 in bf16");
  const tmp = await Deno.makeTempDir();
  const x = tf.tensor1d(vals);
  const ids = tf.tensor1d([3, -4], "int32");
  const tensors = new Map<string, tf.Tensor>([["x", x], ["ids", ids]]);
  const cfg = preset("tiny-relu");
  for (
    const [dtype, want, tag] of [["float16", want16, "F16"], ["bfloat16", wantBf, "BF16"]] as const
  ) {
    const dir = join(tmp, dtype);
    await saveHfFolder(dir, cfg, tensors, { dtype });
    const raw = decodeSafetensors(await Deno.readFile(join(dir, "model.safetensors")), dir);
    assert.equal(raw.tensors.get("x")!.dtype, tag);
    assert.equal(raw.tensors.get("ids")!.dtype, "I32");
    assert.deepEqual(raw.metadata, { format: "pt" });
    // As the reference writer: the I32 tensor first, so each tensor starts at a multiple of its
    // element size (inserted first, the 13 half-precision values put "ids" at byte 26).
    const header = (await inspectHfFolder(dir)).tensors;
    assert.deepEqual(header.get("ids")!.dataOffsets, [0, 8]);
    assert.deepEqual(header.get("x")!.dataOffsets, [8, 34]);
    const cfgJson = JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
    assert.equal(cfgJson.dtype, dtype);
    // The infinities and NaN round trip too: read as they are (refused by default, below).
    const back = await loadHfFolder(dir, { finite: false });
    const got = Array.from(back.tensors.get("x")!.dataSync());
    for (let i = 0; i < vals.length; i++) assert.ok(Object.is(got[i], want[i]), `${dtype}[${i}]`);
    assert.deepEqual(Array.from(back.tensors.get("ids")!.dataSync()), [3, -4]);
    disposeAll(back.tensors);
  }
  x.dispose();
  ids.dispose();
  await Deno.remove(tmp, { recursive: true });
});

Deno.test("saving over an existing folder replaces it; a failed save leaves it intact", async () => {
  const tmp = await Deno.makeTempDir();
  const dir = join(tmp, "m");
  const cfg = preset("tiny-relu");
  const a = tf.tensor1d([1, 2]);
  await saveHfFolder(dir, cfg, new Map([["a", a]]), { extraFiles: { "stale.txt": "old" } });
  await saveHfFolder(dir, cfg, new Map([["a", a]]));
  assert.ok(![...Deno.readDirSync(dir)].some((e) => e.name === "stale.txt"), "old folder replaced");
  const bad = tf.tensor1d([true, false], "bool");
  await assert.rejects(
    saveHfFolder(dir, cfg, new Map([["a", a], ["b", bad]])),
    /tensor "b" has unsupported dtype bool/,
  );
  await assert.rejects(
    saveHfFolder(dir, cfg, new Map([["a", a]]), { extraFiles: { "../x": "y" } }),
    /invalid or reserved extra file name/,
  );
  const back = await loadHfFolder(dir);
  assert.deepEqual(Array.from(back.tensors.get("a")!.dataSync()), [1, 2]);
  disposeAll(back.tensors);
  assert.deepEqual([...Deno.readDirSync(tmp)].map((e) => e.name), ["m"], "no temp folders left");
  a.dispose();
  bad.dispose();
  await Deno.remove(tmp, { recursive: true });
});

Deno.test("a full disk or I/O error while writing or flushing a weights shard names the shard; the old folder stays", async () => {
  const tmp = await Deno.makeTempDir();
  const dir = join(tmp, "m");
  const cfg = preset("tiny-relu");
  const a = tf.tensor1d([1, 2]);
  const b = tf.tensor1d([3, 4]);
  const tensors = new Map([["a", a], ["b", b]]);
  try {
    await saveHfFolder(dir, cfg, new Map([["a", a]]));
    const before = tf.memory().numTensors;
    const io = () => Object.assign(new Error("Input/output error (os error 5)"), { code: "EIO" });
    // [which file's handles fail, how, the save's shard size, the file named, the step]
    const cases: [RegExp, "write" | "sync", () => Error, number | undefined, string, RegExp][] = [
      [
        /model\.safetensors$/,
        "write",
        diskFullError,
        undefined,
        "model.safetensors",
        /^writing at 0 B/,
      ],
      [/model\.safetensors$/, "sync", io, undefined, "model.safetensors", /^flushing/],
      // The second of two shards: its own name, not the first's.
      [
        /model-00002-of-00002/,
        "write",
        diskFullError,
        8,
        "model-00002-of-00002.safetensors",
        /^writing at 0 B/,
      ],
    ];
    for (const [which, method, err, maxShardBytes, name, doing] of cases) {
      let raw: Error | undefined;
      let thrown: unknown;
      await withOpenedFiles((file, path) => {
        if (!which.test(path)) return file;
        const fail = () => Promise.reject(raw = err());
        if (method === "write") file.write = fail;
        else file.sync = fail;
        return file;
      }, () => saveHfFolder(dir, cfg, tensors, { maxShardBytes }).catch((e) => (thrown = e)));
      assert.ok(thrown instanceof Error && raw !== undefined, `${name}: ${thrown}`);
      const target = join(dir, name);
      const tail = ` failed: ${raw.message}`;
      assert.ok(thrown.message.startsWith(`${target}: `), thrown.message);
      assert.ok(thrown.message.endsWith(tail), thrown.message);
      const step = thrown.message.slice(target.length + 2, -tail.length);
      assert.match(step, doing);
      assert.match(step, / \(in the temporary folder \.m\.tmp-[^)]+\)$/);
      assert.equal((thrown as { code?: string }).code, (raw as { code?: string }).code);
      assert.equal(thrown.cause, raw);
      assert.ok(isLocalFileError(thrown));
      // The old folder is intact, no temporary folder is left, no tensor leaked.
      const back = await loadHfFolder(dir);
      assert.deepEqual([...back.tensors.keys()], ["a"]);
      disposeAll(back.tensors);
      assert.deepEqual([...Deno.readDirSync(tmp)].map((e) => e.name), ["m"]);
      assert.equal(tf.memory().numTensors, before);
    }
  } finally {
    a.dispose();
    b.dispose();
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("saveHfFolder() flushes the parent folder once the new folder is in place", async () => {
  if (Deno.build.os === "windows") return; // syncDir does nothing there
  const parent = await Deno.makeTempDir();
  const a = tf.tensor1d([1, 2]);
  try {
    // Both Deno.open and Deno.openSync are spied on (syncDir opens the folder synchronously).
    const flushes = await recordFlushes(() =>
      saveHfFolder(join(parent, "m"), preset("tiny-relu"), new Map([["a", a]]))
    );
    assert.deepEqual(flushesOf(flushes, parent), [["m"]]);
  } finally {
    a.dispose();
    await Deno.remove(parent, { recursive: true });
  }
});

Deno.test("saveHfFolder() flushes its temporary folder after the weights, before renaming it in", async () => {
  if (Deno.build.os === "windows") return; // syncDir does nothing there
  const parent = await Deno.makeTempDir();
  const a = tf.tensor1d([1, 2]);
  const b = tf.tensor1d([3, 4]);
  try {
    // No extra files (whose atomic writes would flush the folder after the weights), unsharded
    // and sharded: the last flush of the temporary folder must list every weights file, or a
    // power cut after the rename could leave the folder without them.
    for (const [name, maxShardBytes] of [["one", undefined], ["two", 8]] as const) {
      const flushes = await recordFlushes(() =>
        saveHfFolder(join(parent, name), preset("tiny-relu"), new Map([["a", a], ["b", b]]), {
          ...(maxShardBytes === undefined ? {} : { maxShardBytes }),
        })
      );
      const ofTemp = flushes.filter((f) => basename(f.dir).startsWith(`.${name}.tmp-`));
      const last = ofTemp[ofTemp.length - 1]?.entries ?? [];
      const written = [...Deno.readDirSync(join(parent, name))].map((e) => e.name).sort();
      assert.deepEqual(last, written, `${name}: the temporary folder's last flush`);
    }
  } finally {
    a.dispose();
    b.dispose();
    await Deno.remove(parent, { recursive: true });
  }
});

Deno.test("saving over a folder removes the old one through a .del- name (never partial under .old-)", async () => {
  const parent = await Deno.makeTempDir();
  const cfg = preset("tiny-relu");
  const a = tf.tensor1d([1, 2]);
  const rename = Deno.rename;
  const targets: string[] = [];
  try {
    await saveHfFolder(join(parent, "m"), cfg, new Map([["a", a]]));
    Deno.rename = async (from, to) => {
      await rename(from, to);
      targets.push(basename(String(to)));
    };
    await saveHfFolder(join(parent, "m"), cfg, new Map([["a", a]]));
    Deno.rename = rename;
    // (The files' own renames inside the temporary first.) Aside, the new one in, then the old
    // one renamed for deletion.
    const folders = targets.filter((t) => t === "m" || t.startsWith(".m."));
    assert.equal(folders.length, 3, `${targets}`);
    assert.match(folders[0]!, /^\.m\.old-/);
    assert.equal(folders[1], "m");
    assert.match(folders[2]!, /^\.m\.del-\d+-[0-9a-f]{12}$/);
    assert.deepEqual([...Deno.readDirSync(parent)].map((e) => e.name), ["m"]);
  } finally {
    Deno.rename = rename;
    a.dispose();
    await Deno.remove(parent, { recursive: true });
  }
});

Deno.test("a save sweeps what killed saves left beside the folder; live saves and other names are kept", async () => {
  const parent = await Deno.makeTempDir();
  const cfg = preset("tiny-relu");
  const a = tf.tensor1d([1, 2]);
  const b = tf.tensor1d([3, 4]);
  const names = () => [...Deno.readDirSync(parent)].map((e) => e.name).sort();
  try {
    await saveHfFolder(join(parent, "kept"), cfg, new Map([["a", a]]));
    await saveHfFolder(join(parent, "lost"), cfg, new Map([["a", b]]));
    // A save of "lost" killed between its two renames: the previous folder moved aside, the new
    // one still a temporary. Pid 999999999 is above any pid_max, and nobody holds the locks.
    const deadTag = "999999999-0123456789ab";
    await Deno.rename(join(parent, "lost"), join(parent, `.lost.old-${deadTag}`));
    await Deno.mkdir(join(parent, `.lost.tmp-${deadTag}`));
    // A save of "kept" killed after both renames: only the moved-aside folder is left.
    await Deno.mkdir(join(parent, ".kept.old-999999998-0123456789ab"));
    // A save of this process in progress (held), with its moved-aside folder.
    const live = await makeHeldTempDir(parent, ".busy");
    const liveTag = live.path.slice(live.path.lastIndexOf(".tmp-") + 5);
    await Deno.mkdir(join(parent, `.busy.old-${liveTag}`));
    // Names that are not a save's, and a file under a temporary's name.
    const other = [".lost.bak", "lost2", ".tmp-999999999-0123456789ab", ".x.old-1"];
    for (const n of other) await Deno.mkdir(join(parent, n));
    await Deno.writeTextFile(join(parent, ".f.tmp-999999999-0123456789ab"), "");
    assert.match(basename(live.path), new RegExp(`^\\.busy\\.tmp-${Deno.pid}-[0-9a-f]{12}$`));
    // Another process's save in progress, between its renames: its temporary is locked.
    const otherTag = "999999997-0123456789ab";
    await Deno.mkdir(join(parent, `.z.tmp-${otherTag}`));
    await Deno.mkdir(join(parent, `.z.old-${otherTag}`));
    const lock = await Deno.open(join(parent, `.z.tmp-${otherTag}`), { read: true });
    await lock.lock(true);
    // A removal killed part-way (discardFolder renames before deleting): garbage, whoever made it.
    await Deno.mkdir(join(parent, ".half.del-999999996-0123456789ab"));
    await Deno.writeTextFile(join(parent, ".half.del-999999996-0123456789ab", "x"), "");

    // The dead saves' temporary and moved-aside folders go (nobody holds their temporaries),
    // however recently they were moved.
    const swept = await removeStaleSaveTemps(parent);
    assert.deepEqual(swept.sort(), [
      ".half.del-999999996-0123456789ab",
      ".kept.old-999999998-0123456789ab",
      `.lost.old-${deadTag}`,
      `.lost.tmp-${deadTag}`,
    ]);
    // "lost" is back (its previous version), "kept" untouched, the rest kept.
    const back = await loadHfFolder(join(parent, "lost"));
    assert.deepEqual(Array.from(back.tensors.get("a")!.dataSync()), [3, 4]);
    disposeAll(back.tensors);
    assert.deepEqual(
      names(),
      [
        ...other,
        ".f.tmp-999999999-0123456789ab",
        `.busy.old-${liveTag}`,
        basename(live.path),
        `.z.old-${otherTag}`,
        `.z.tmp-${otherTag}`,
        "kept",
        "lost",
      ].sort(),
    );
    // That process killed: its temporary goes, and the folder it moved aside is renamed back.
    // So for the held one of this process once released (the lock decides, not the pid: as
    // for a process restarted under this pid).
    live.release();
    lock.close();
    assert.deepEqual((await removeStaleSaveTemps(parent)).sort(), [
      `.busy.old-${liveTag}`,
      basename(live.path),
      `.z.old-${otherTag}`,
      `.z.tmp-${otherTag}`,
    ]);
    assert.ok(names().includes("z"));
    assert.ok(names().includes("busy"));

    // A save sweeps its parent first: a dead save's temporary of another folder goes.
    await Deno.mkdir(join(parent, `.other.tmp-${deadTag}`));
    await saveHfFolder(join(parent, "kept"), cfg, new Map([["a", b]]));
    assert.ok(!names().includes(`.other.tmp-${deadTag}`));
  } finally {
    a.dispose();
    b.dispose();
    await Deno.remove(parent, { recursive: true });
  }
});

/** The values of tensor "a" of the folder `dir`. */
async function savedValues(dir: string): Promise<number[]> {
  const back = await loadHfFolder(dir);
  const values = Array.from(back.tensors.get("a")!.dataSync());
  disposeAll(back.tensors);
  return values;
}

Deno.test("saveHfFolder() replacing a folder: a kill at any point of the swap, then a sweep, leaves it complete, old or new, also under a reused pid", async () => {
  const cfg = preset("tiny-relu");
  const cases: [SaveSwapPoint, number[]][] = [
    ["written", [1, 2]],
    ["aside", [1, 2]],
    ["swapped", [3, 4]],
  ];
  const names = (dir: string) => [...Deno.readDirSync(dir)].map((e) => e.name).sort();
  // The killed save's names carry its pid: a dead process's, or this one's (a process restarted
  // in a container gets the same pid; a copy holds no lock either way, as after the kill).
  for (const pid of ["999999999", String(Deno.pid)]) {
    for (const [point, want] of cases) {
      const what = `killed at "${point}", pid ${pid === "999999999" ? "dead" : "reused"}`;
      const parent = await Deno.makeTempDir();
      const disk = await Deno.makeTempDir(); // what a kill at `point` leaves on disk
      const a = tf.tensor1d([1, 2]);
      const b = tf.tensor1d([3, 4]);
      try {
        await saveHfFolder(join(parent, "m"), cfg, new Map([["a", a]]));
        const seen: SaveSwapPoint[] = [];
        await saveHfFolder(join(parent, "m"), cfg, new Map([["a", b]]), {
          onSwap: (p) => {
            seen.push(p);
            if (p === point) {
              const mine = new RegExp(`\\.(tmp|old)-${Deno.pid}-`);
              copyTree(parent, disk, (n) => n.replace(mine, `.$1-${pid}-`));
            }
          },
        });
        assert.deepEqual(seen, ["written", "aside", "swapped"]);
        assert.deepEqual(names(parent), ["m"]);
        const flushes = await recordFlushes(() => removeStaleSaveTemps(disk));
        assert.deepEqual(await savedValues(join(disk, "m")), want, what);
        // What is left: the folder, and (only under this process's pid, which removeStaleTemps
        // never takes) the killed save's temporary when nothing was moved aside.
        const left = names(disk).filter((n) => !(pid === String(Deno.pid) && n.includes(".tmp-")));
        assert.deepEqual(left, ["m"], what);
        if (point !== "written") assert.deepEqual(names(disk), ["m"], what);
        // A folder renamed back is flushed in place.
        if (point === "aside" && Deno.build.os !== "windows") {
          assert.ok(flushesOf(flushes, disk).some((n) => n.includes("m")), what);
        }
        // And the cache goes on: the folder is saved again.
        await saveHfFolder(join(disk, "m"), cfg, new Map([["a", b]]));
        assert.deepEqual(await savedValues(join(disk, "m")), [3, 4], what);
      } finally {
        a.dispose();
        b.dispose();
        await Deno.remove(parent, { recursive: true });
        await Deno.remove(disk, { recursive: true });
      }
    }
  }
});

Deno.test("a sweep during a save of this process leaves its moved-aside folder and temporary alone", async () => {
  const parent = await Deno.makeTempDir();
  const cfg = preset("tiny-relu");
  const a = tf.tensor1d([1, 2]);
  try {
    await saveHfFolder(join(parent, "m"), cfg, new Map([["a", a]]));
    let during: string[] = [];
    await saveHfFolder(join(parent, "m"), cfg, new Map([["a", a]]), {
      onSwap: async (p) => {
        if (p !== "aside") return;
        assert.deepEqual(await removeStaleSaveTemps(parent), []);
        during = [...Deno.readDirSync(parent)].map((e) => e.name).sort();
      },
    });
    assert.equal(during.length, 2);
    assert.match(during[0]!, /^\.m\.old-\d+-[0-9a-f]{12}$/);
    assert.match(during[1]!, /^\.m\.tmp-\d+-[0-9a-f]{12}$/);
    assert.deepEqual([...Deno.readDirSync(parent)].map((e) => e.name), ["m"]);
  } finally {
    a.dispose();
    await Deno.remove(parent, { recursive: true });
  }
});

Deno.test("a sharded folder: every tensor of each indexed shard is loaded, also one the index omits; a bad index is refused from the headers", () =>
  leakFreeInTempDir(async (tmp) => {
    const src = await loadHfFolder(sharedPath("fixtures", "hf-t5", "t5-tiny-v1_1-untied"));
    const dir = join(tmp, "model");
    try {
      await saveHfFolder(dir, src.config, src.tensors, { maxShardBytes: 40_000 });
      const indexPath = join(dir, "model.safetensors.index.json");
      const text = await Deno.readTextFile(indexPath);
      const writeIndex = (edit: (wm: Record<string, string>) => void) => {
        const index = JSON.parse(text);
        edit(index.weight_map);
        return Deno.writeTextFile(indexPath, JSON.stringify(index));
      };
      const name = "encoder.final_layer_norm.weight";
      const shard = JSON.parse(text).weight_map[name];
      // Before, a tensor the weight_map omits was skipped silently (here a weight the model needs,
      // then reported missing although its shard holds it).
      await writeIndex((wm) => delete wm[name]);
      const info = await inspectHfFolder(dir);
      assert.equal(info.source, indexPath);
      assert.equal(info.tensors.get(name)?.file, join(dir, shard));
      const back = await loadHfFolder(dir);
      assert.deepEqual([...back.tensors.keys()].sort(), [...src.tensors.keys()].sort());
      assert.deepEqual(back.tensors.get(name)!.dataSync(), src.tensors.get(name)!.dataSync());
      disposeAll(back.tensors);
      // A name mapped to a shard without it, or a tensor in two files: refused before any tensor
      // data is read (no tensor is made), naming both files.
      const other = JSON.parse(text).weight_map["shared.weight"];
      assert.notEqual(other, shard);
      const made = tf.memory().numTensors;
      await writeIndex((wm) => (wm[name] = other));
      for (const f of [loadHfFolder, inspectHfFolder]) {
        await assert.rejects(
          f(dir),
          new RegExp(
            `${other}: tensor "${name}" not found \\(the index maps it to this shard\\)$`,
          ),
        );
      }
      // A copy of the shard, indexed for that name: the original shard, still indexed for its
      // other tensors, holds it too.
      await Deno.copyFile(join(dir, shard), join(dir, "copy.safetensors"));
      await writeIndex((wm) => (wm[name] = "copy.safetensors"));
      for (const f of [loadHfFolder, inspectHfFolder]) {
        await assert.rejects(f(dir), (e: Error) => {
          const [a, b] = [join(dir, shard), join(dir, "copy.safetensors")];
          const m = /^(.*): tensor "(.*)" appears in two files \(also in (.*)\)$/.exec(e.message);
          assert.ok(m, e.message);
          assert.deepEqual([m[1], m[3]].sort(), [a, b].sort());
          assert.ok(src.tensors.has(m[2]!), e.message);
          return true;
        });
      }
      assert.equal(tf.memory().numTensors, made, "a refused folder made no tensor");
    } finally {
      disposeAll(src.tensors);
    }
  }));

Deno.test("T5 round trip: initT5 → saveHfFolder → loadHfFolder → t5FromTensors", () =>
  leakFreeInTempDir(async (tmp) => {
    for (const name of ["tiny-relu", "tiny-v1_1"]) {
      const model = initT5(preset(name), { seed: 7 });
      const dir = join(tmp, name);
      await saveHfFolder(dir, model.config, model.params);
      const ck = await loadHfFolder(dir);
      const again = t5FromTensors(ck.config, ck.tensors, dir);
      disposeAll(ck.tensors);
      assert.deepEqual(again.config, model.config);
      assert.deepEqual([...again.params.keys()].sort(), [...model.params.keys()].sort());
      for (const [k, v] of model.params) {
        const a = v.dataSync();
        const b = again.params.get(k)!.dataSync();
        assert.ok(a.every((x, i) => Object.is(x, b[i])), `${name}: ${k}`);
      }
      disposeT5(model);
      disposeT5(again);
    }
  }));

Deno.test("loadHfFolder: equal copies of the embedding table are one tensor, and t5FromTensors ties them", () =>
  // transformers 5 saves shared.weight and both stacks' embed_tokens as equal copies; the loader
  // compares their bytes and gives one tensor, so t5FromTensors ties them without reading values
  // back (webgpu cannot synchronously). Unsharded, and sharded with one table per shard.
  leakFreeInTempDir(async (tmp) => {
    const config = preset("tiny-v1_1");
    const model = initT5(config, { seed: 5 });
    const shared = model.params.get("shared.weight")!;
    // The decoder's copy differs in one bit of one element: its own table.
    const bits = new Uint32Array((shared.dataSync() as Float32Array).slice().buffer);
    bits[bits.length - 1]! ^= 1;
    const nudged = tf.tensor(new Float32Array(bits.buffer), shared.shape);
    const copies = new Map<string, tf.Tensor>(model.params)
      .set("encoder.embed_tokens.weight", shared.clone())
      .set("decoder.embed_tokens.weight", nudged);
    for (const maxShardBytes of [undefined, 300_000]) {
      const dir = join(tmp, `m${maxShardBytes ?? ""}`);
      await saveHfFolder(dir, config, copies, { maxShardBytes });
      const ck = await loadHfFolder(dir);
      const files = new Set([...(await inspectHfFolder(dir)).tensors.values()].map((t) => t.file));
      assert.equal(files.size > 1, maxShardBytes !== undefined, `${dir}: shards`);
      assert.equal(ck.tensors.get("encoder.embed_tokens.weight"), ck.tensors.get("shared.weight"));
      assert.notEqual(
        ck.tensors.get("decoder.embed_tokens.weight"),
        ck.tensors.get("shared.weight"),
      );
      assert.deepEqual(
        ck.tensors.get("decoder.embed_tokens.weight")!.dataSync(),
        nudged.dataSync(),
      );
      const again = t5FromTensors(ck.config, ck.tensors, dir);
      disposeAll(ck.tensors); // the shared entry twice: a second dispose does nothing
      assert.deepEqual(again.config.ownEmbeddings, ["decoder"]);
      assert.ok(!again.params.has("encoder.embed_tokens.weight"));
      disposeT5(again);
    }
    tf.dispose([copies.get("encoder.embed_tokens.weight")!, nudged]);
    disposeT5(model);
  }));

Deno.test("loadHfFolder: a stack's table with the shared table's bytes but another shape keeps its own shape", () =>
  // Equal bits are a tie only for tables of one shape: a [d_model, vocab] table holding the
  // [vocab, d_model] table's bytes is another tensor (misshapen, for the checks to refuse).
  leakFreeInTempDir(async (tmp) => {
    const config = preset("tiny-v1_1");
    const model = initT5(config, { seed: 5 });
    const shared = model.params.get("shared.weight")!;
    const [v, d] = shared.shape as [number, number];
    const flipped = shared.reshape([d, v]);
    const tensors = new Map<string, tf.Tensor>(model.params)
      .set("encoder.embed_tokens.weight", flipped);
    const dir = join(tmp, "m");
    await saveHfFolder(dir, config, tensors);
    const ck = await loadHfFolder(dir);
    const enc = ck.tensors.get("encoder.embed_tokens.weight")!;
    assert.notEqual(enc, ck.tensors.get("shared.weight"));
    assert.deepEqual(enc.shape, [d, v]);
    assert.deepEqual(ck.tensors.get("shared.weight")!.shape, [v, d]);
    disposeAll(ck.tensors);
    flipped.dispose();
    disposeT5(model);
  }));

Deno.test("loadSafetensorsFile: an int32 table with the float32 table's bits is not tied to it", () =>
  // Equal bits are a tie only for tables of one dtype: an I32 "encoder.embed_tokens.weight"
  // holding the bit patterns of the F32 "shared.weight" is another tensor, and keeps int32.
  leakFreeInTempDir(async (tmp) => {
    const values = new Float32Array([1, 2, 3, 4]);
    const table = tf.tensor2d(values, [2, 2]);
    const asInt = tf.tensor2d(new Int32Array(values.buffer.slice(0)), [2, 2], "int32");
    try {
      await saveHfFolder(
        tmp,
        preset("tiny-v1_1"),
        new Map<string, tf.Tensor>([["shared.weight", table], [
          "encoder.embed_tokens.weight",
          asInt,
        ]]),
      );
      const into = await loadSafetensorsFile(join(tmp, "model.safetensors"));
      const shared = into.get("shared.weight")!, enc = into.get("encoder.embed_tokens.weight")!;
      assert.notEqual(enc, shared);
      assert.equal(shared.dtype, "float32");
      assert.equal(enc.dtype, "int32");
      assert.deepEqual([...await enc.data()], [...new Int32Array(values.buffer)]);
      disposeAll(into);
    } finally {
      tf.dispose([table, asInt]);
    }
  }));

Deno.test("loadHfFolder: a weight that is NaN or infinite is refused naming the tensor, the count and the first; nothing leaks", () =>
  leakFreeInTempDir(async (tmp) => {
    const cfg = preset("tiny-v1_1");
    const good = tf.tensor1d([1, 2, 3, 4]);
    for (
      const [values, count, first, index] of [
        [[1, NaN, 3, NaN], 2, NaN, 1],
        [[1, 2, -Infinity, 4], 1, -Infinity, 2],
      ] as const
    ) {
      const bad = tf.tensor1d([...values]);
      const dir = join(tmp, String(index));
      try {
        await saveHfFolder(dir, cfg, new Map<string, tf.Tensor>([["a", good], ["b", bad]]));
      } finally {
        bad.dispose();
      }
      const file = join(dir, "model.safetensors");
      const made = tf.memory().numTensors;
      const message = `${file}: tensor "b" has ${count} value${count === 1 ? "" : "s"} that ` +
        `${count === 1 ? "is" : "are"} not finite (the first, ${first}, at flat index ` +
        `${index}): a checkpoint saved after its training diverged, or a damaged file; ` +
        `training from it would give NaN losses`;
      await assert.rejects(
        loadHfFolder(dir),
        (e: unknown) => e instanceof CheckpointError && e.file === file && e.message === message,
      );
      assert.equal(tf.memory().numTensors, made, "the tensor read before it is disposed");
      // Read as they are when asked; the raw file reader does not check.
      disposeAll((await loadHfFolder(dir, { finite: false })).tensors);
      disposeAll(await loadSafetensorsFile(file));
    }
    // Two bad tensors: the first the file holds is named.
    const [x, y] = [tf.tensor1d([NaN]), tf.tensor1d([Infinity])];
    try {
      await saveHfFolder(join(tmp, "two"), cfg, new Map<string, tf.Tensor>([["x", x], ["y", y]]));
    } finally {
      tf.dispose([x, y]);
    }
    await assert.rejects(
      loadHfFolder(join(tmp, "two")),
      /: tensor "x" has 1 value that is not finite/,
    );
    good.dispose();
  }));

Deno.test("loadHfFolder: a NaN weight in pytorch_model.bin is refused as in safetensors", () =>
  leakFreeInTempDir(async (tmp) => {
    // The untied fixture's .bin with one q weight NaN, and its CRC-32 left out (0: unchecked),
    // so that the value check, not the CRC, refuses it.
    const src = new URL("./testdata/torch/", import.meta.url).pathname;
    const dir = join(tmp, "bin");
    await Deno.mkdir(dir);
    const relu = sharedPath("fixtures", "hf-t5", "t5-tiny-v1_1-untied");
    await Deno.copyFile(join(relu, "config.json"), join(dir, "config.json"));
    const bytes = (await Deno.readFile(join(src, "t5-tiny-v1_1-untied.bin"))).slice();
    const path = join(dir, "pytorch_model.bin");
    await Deno.writeFile(path, bytes);
    const name = "decoder.block.0.layer.0.SelfAttention.q.weight";
    const h = await readTorchBinHeader(path);
    const entry = h.storages.get(h.tensors.get(name)!.storage)!.entry!;
    const local = new DataView(bytes.buffer, entry.localHeaderOffset);
    const start = entry.localHeaderOffset + 30 + local.getUint16(26, true) +
      local.getUint16(28, true);
    new DataView(bytes.buffer).setFloat32(start, NaN, true);
    for (let p = bytes.length - 46; p >= 0; p--) {
      const v = new DataView(bytes.buffer, p);
      if (
        v.getUint32(0, true) === 0x02014b50 && v.getUint32(42, true) === entry.localHeaderOffset
      ) {
        v.setUint32(16, 0, true);
        break;
      }
    }
    await Deno.writeFile(path, bytes);
    await assert.rejects(
      loadHfFolder(dir),
      (e: unknown) =>
        e instanceof CheckpointError && e.file === path &&
        e.message.startsWith(
          `${path}: tensor "${name}" has 1 value that is not finite (the first, NaN, at flat index 0)`,
        ),
    );
    const loaded = await loadHfFolder(dir, { finite: false });
    assert.ok(Number.isNaN(loaded.tensors.get(name)!.dataSync()[0]!));
    disposeAll(loaded.tensors);
  }));

Deno.test("loadSafetensorsFile: a failed file disposes what it made, not a table it aliased from an earlier file", () =>
  leakFreeInTempDir(async (tmp) => {
    const table = tf.tensor2d([[1, 2], [3, 4]]);
    const x = tf.tensor1d([5]);
    try {
      const cfg = preset("tiny-v1_1");
      await saveHfFolder(
        join(tmp, "a"),
        cfg,
        new Map<string, tf.Tensor>([["shared.weight", table], ["x", x]]),
      );
      // "b" holds an equal copy of the table (aliased to a's on load), then "x" again.
      await saveHfFolder(
        join(tmp, "b"),
        cfg,
        new Map<string, tf.Tensor>([["encoder.embed_tokens.weight", table], ["x", x]]),
      );
      const into = await loadSafetensorsFile(join(tmp, "a", "model.safetensors"));
      const first = into.get("shared.weight")!;
      const made = tf.memory().numTensors;
      await assert.rejects(
        loadSafetensorsFile(join(tmp, "b", "model.safetensors"), undefined, into),
        /tensor "x" appears in two files/,
      );
      assert.ok(!into.has("encoder.embed_tokens.weight"), "the failed file's alias was kept");
      assert.ok(!first.isDisposed, "the earlier file's table was disposed by a failed load");
      assert.deepEqual([...first.dataSync()], [1, 2, 3, 4]);
      assert.equal(tf.memory().numTensors, made, "the failed load made no tensor, or left one");
      // Without the clash the copy is the earlier file's tensor.
      into.get("x")!.dispose();
      into.delete("x");
      const b = await loadSafetensorsFile(join(tmp, "b", "model.safetensors"), undefined, into);
      assert.equal(b.get("encoder.embed_tokens.weight"), first);
      disposeAll(into);
    } finally {
      tf.dispose([table, x]);
    }
  }));

gpuTest(
  "saveHfFolder writes tensors whose values live on the GPU (webgpu reads asynchronously)",
  async () => {
    // A trained model's weights are GPU buffers: tfjs's synchronous read (dataSync) throws in Deno
    // there (it reads through a canvas), so the save must read them with data().
    const dir = await Deno.makeTempDir();
    try {
      const config = preset("tiny-v1_1");
      const model = initT5(config, { seed: 3 });
      const want = new Map<string, Float32Array>();
      try {
        // One op on the device per weight: every value is now only in a GPU buffer.
        for (const v of model.params.values()) v.assign(tf.tidy(() => tf.mul(v, 2)));
        await saveHfFolder(dir, config, t5StateDict(model));
        // Read only now: a read leaves a copy on the host, which dataSync would then find.
        for (const [n, v] of model.params) want.set(n, (await v.data()) as Float32Array);
      } finally {
        disposeT5(model);
      }
      await tf.setBackend("cpu");
      const ck = await loadHfFolder(dir);
      try {
        assert.ok(want.size > 0, "the model has parameters to compare");
        for (const [n, values] of want) {
          const t = ck.tensors.get(n);
          assert.ok(t !== undefined, n);
          assert.deepEqual(t.dataSync(), values, n);
        }
      } finally {
        for (const t of ck.tensors.values()) t.dispose();
      }
    } finally {
      await tf.setBackend("cpu"); // this file's other tests run on cpu
      await Deno.remove(dir, { recursive: true });
    }
  },
);

// PyTorch checkpoints (pytorch_model.bin), written by testdata/make_torch_bin.py from the HF
// fixtures: the untied one unsharded with float16/bfloat16 layer norms (1.0, exact there), a
// transposed weight and q/k/v as views into one storage; the relu one in two shards, its token
// tables and lm_head.weight views of shared.weight's storage. Each in torch.save's zip format
// (torch >= 1.6) and its legacy one (torch < 1.6, testdata/torch/legacy/): the same state dicts.
const TORCH = new URL("./testdata/torch/", import.meta.url).pathname;
const TORCH_FORMATS = ["zip", "legacy"] as const;
type TorchFormat = typeof TORCH_FORMATS[number];

/**
 * A folder with the fixture's config.json and the PyTorch weights (single file or shards) in
 * `format`.
 */
async function torchFolder(fixture: string, format: TorchFormat = "zip"): Promise<string> {
  const dir = await Deno.makeTempDir();
  const src = sharedPath("fixtures", "hf-t5", fixture);
  const from = format === "legacy" ? join(TORCH, "legacy") : TORCH;
  await Deno.copyFile(join(src, "config.json"), join(dir, "config.json"));
  if (fixture === "t5-tiny-relu") {
    for await (const e of Deno.readDir(join(from, fixture))) {
      await Deno.copyFile(join(from, fixture, e.name), join(dir, e.name));
    }
  } else {
    await Deno.copyFile(join(from, `${fixture}.bin`), join(dir, "pytorch_model.bin"));
  }
  return dir;
}

/** Every (fixture, format) pair of the PyTorch fixtures. */
const TORCH_CASES = FIXTURES.flatMap((fixture) =>
  TORCH_FORMATS.map((format) => ({ fixture, format, what: `${fixture} (${format})` }))
);

Deno.test("loadHfFolder and inspectHfFolder read pytorch_model.bin, single and sharded, zip and legacy, as the safetensors", async () => {
  for (const { fixture, format, what } of TORCH_CASES) {
    const dir = await torchFolder(fixture, format);
    const before = tf.memory().numTensors;
    try {
      const st = await loadHfFolder(sharedPath("fixtures", "hf-t5", fixture));
      const stInfo = await inspectHfFolder(sharedPath("fixtures", "hf-t5", fixture));
      const pt = await loadHfFolder(dir);
      const ptInfo = await inspectHfFolder(dir);
      const tied = ["encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"];
      const extra = fixture === "t5-tiny-relu" ? tied : [];
      assert.deepEqual([...pt.tensors.keys()].sort(), [...st.tensors.keys(), ...extra].sort());
      assert.deepEqual([...ptInfo.tensors.keys()].sort(), [...pt.tensors.keys()].sort());
      // Tied views are one tensor (as equal safetensors tables are).
      for (const n of extra) assert.equal(pt.tensors.get(n), pt.tensors.get("shared.weight"), n);
      assert.equal(
        ptInfo.source,
        join(
          dir,
          fixture === "t5-tiny-relu" ? "pytorch_model.bin.index.json" : "pytorch_model.bin",
        ),
      );
      for (const [name, want] of st.tensors) {
        const got = pt.tensors.get(name)!;
        assert.equal(got.dtype, "float32", name);
        assert.deepEqual(got.shape, want.shape, name);
        const [a, b] = [await got.data(), await want.data()];
        assert.ok(a.every((v, i) => Object.is(v, b[i])), `${what}: ${name} values differ`);
        const info = ptInfo.tensors.get(name)!;
        assert.deepEqual(info.shape, stInfo.tensors.get(name)!.shape, name);
        // The untied file's layer norms are stored as float16, the final ones as bfloat16.
        const dtype = fixture === "t5-tiny-relu" || !name.includes("layer_norm")
          ? "F32"
          : name.includes("final")
          ? "BF16"
          : "F16";
        assert.equal(info.dtype, dtype, `${what}: ${name}`);
        assert.match(info.file, /\.bin$/);
      }
      disposeAll(st.tensors);
      disposeAll(pt.tensors);
      assert.equal(tf.memory().numTensors, before, `${what}: no leaked tensors`);
      // The files were read in the format asked for (a legacy copy is not a zip archive).
      for await (const e of Deno.readDir(dir)) {
        if (!e.name.endsWith(".bin")) continue;
        const { format: read } = await readTorchBinHeader(join(dir, e.name));
        assert.equal(read, format, `${what}: ${e.name}`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});

Deno.test("a T5 loaded from pytorch_model.bin, zip and legacy, reproduces the fixture's reference logits", async () => {
  for (const { fixture, format, what } of TORCH_CASES) {
    const dir = await torchFolder(fixture, format);
    try {
      const ref = JSON.parse(
        await Deno.readTextFile(sharedPath("fixtures", "hf-t5", fixture, "reference.json")),
      );
      const configPath = join(dir, "config.json");
      const { config } = await inspectHfFolder(dir);
      const before = tf.memory().numTensors;
      const model = await loadT5Weights(dir, config, configPath);
      const logits = tf.tidy(() => {
        const labels = tf.tensor2d(ref.labels, undefined, "int32");
        return forward(model, {
          inputIds: tf.tensor2d(ref.input_ids, undefined, "int32"),
          attentionMask: tf.tensor2d(ref.attention_mask, undefined, "float32"),
          decoderInputIds: shiftRight(labels, model.config),
        }).logits;
      });
      const got = (await logits.array()) as number[][][];
      logits.dispose();
      disposeT5(model);
      assert.equal(tf.memory().numTensors, before, `${what}: no leaked tensors`);
      const want = ref.logits as number[][][];
      let diff = 0, scale = 0;
      want.forEach((r, i) =>
        r.forEach((c, j) =>
          c.forEach((v, k) => {
            diff = Math.max(diff, Math.abs(v - got[i]![j]![k]!));
            scale = Math.max(scale, Math.abs(v));
          })
        )
      );
      // model/parity_test.ts's cpu bound for these fixtures (the weights are bit-identical).
      const tol = HF_PARITY_TOL.logitsRel;
      assert.ok(diff <= tol * scale, `${what}: logits max abs diff ${diff} > ${tol} × ${scale}`);
      assert.ok(scale > 0, `${what}: the reference has logits`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});

Deno.test("pytorch_model.bin: a config mismatch is refused from the pickle (zip and legacy); a bad shard leaks nothing", async () => {
  for (const format of TORCH_FORMATS) {
    const dir = await torchFolder("t5-tiny-v1_1-untied", format);
    try {
      const configPath = join(dir, "config.json");
      const path = join(dir, "pytorch_model.bin");
      const { config } = await inspectHfFolder(dir);
      const before = tf.memory().numTensors;
      const read = await bytesRead(() =>
        assert.rejects(
          loadT5Weights(dir, { ...config, numLayers: 3 }, configPath),
          /pytorch_model\.bin.*missing.*encoder\.block\.2\./s,
          format,
        )
      );
      // What reading the metadata takes: zip, the pickle entry and the central directory (plus
      // local headers); legacy, the pickles, read in chunks that double from 4 KiB (so at most as
      // many bytes again past their end), and each storage's 8-byte count
      // (model/torch_bin_test.ts).
      let bound: number;
      if (format === "zip") {
        const bytes = await Deno.readFile(path);
        const pkl = Object.values(
          unzipSync(bytes, { filter: (f) => f.name.endsWith("/data.pkl") }),
        )[0]!;
        const cd = new DataView(bytes.buffer, bytes.byteLength - 22).getUint32(12, true);
        bound = pkl.byteLength + cd + 58 + 256;
      } else {
        const starts = [...(await readTorchBinHeader(path)).storages.values()].map((s) => s.start!);
        const pickles = Math.min(...starts) - 8;
        bound = Math.max(4096, 2 * pickles) + 8 * starts.length + 16;
      }
      assert.ok(read <= bound, `${format}: ${read} bytes read, more than the metadata's ${bound}`);
      assert.ok(read < (await Deno.stat(path)).size / 10, `${format}: ${read} bytes read`);
      assert.equal(tf.memory().numTensors, before, `${format}: no tensor made`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
  const relu = await torchFolder("t5-tiny-relu");
  try {
    const before = tf.memory().numTensors;
    // Break the local header of the second shard's last storage: the headers pass, loading fails
    // part-way through that shard, and every tensor made so far is released. (Zip only: past its
    // counts, which the header read already checks, a legacy file has nothing left to break.)
    const shard = join(relu, "pytorch_model-00002-of-00002.bin");
    const b = await Deno.readFile(shard);
    const sig = [0x50, 0x4b, 0x03, 0x04];
    const heads = [];
    for (let i = 0; i + 4 <= b.byteLength; i++) {
      if (sig.every((x, k) => b[i + k] === x)) heads.push(i);
    }
    b[heads[heads.length - 2]!] = 0; // the last entry is `version`; the one before, a storage
    await Deno.writeFile(shard, b);
    assert.equal((await inspectHfFolder(relu)).tensors.size, 50);
    await assert.rejects(
      loadHfFolder(relu),
      /pytorch_model-00002-of-00002\.bin: tensor "[^"]+": zip entry .*no local header/,
    );
    assert.equal(tf.memory().numTensors, before, "no leaked tensors");
  } finally {
    await Deno.remove(relu, { recursive: true });
  }
});

Deno.test("fileDigest: a download's sha256 record that fits the file is taken without reading it; a stale one is ignored", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const sha = async (b: Uint8Array<ArrayBuffer>) =>
      [...new Uint8Array(await crypto.subtle.digest("SHA-256", b))]
        .map((x) => x.toString(16).padStart(2, "0")).join("");
    const bytes = new Uint8Array(300_000).map((_, i) => (i * 5 + (i >> 9)) & 255);
    // A record whose digest is not the bytes' but whose size and mtime fit: taken as it is (the
    // documented trade-off), which proves the file was not read.
    const fits = join(dir, "model.safetensors");
    await Deno.writeFile(fits, bytes);
    const recorded = "0".repeat(64);
    await recordSha256(fits, recorded, true);
    let got: unknown;
    const read = await bytesRead(async () => got = await fileDigest(fits));
    assert.deepEqual(got, { bytes: bytes.length, sha256: recorded });
    assert.equal(read, 0, "the file is not read");
    // The file rewritten after its record (another mtime, or another size): the record is
    // ignored and the bytes hashed.
    const touched = join(dir, "a.safetensors");
    await Deno.writeFile(touched, bytes);
    await recordSha256(touched, recorded, true);
    const { mtime } = await Deno.stat(touched);
    await Deno.utime(touched, mtime!, new Date(mtime!.getTime() + 5000));
    assert.deepEqual(await fileDigest(touched), { bytes: bytes.length, sha256: await sha(bytes) });
    const grown = join(dir, "b.safetensors");
    await Deno.writeFile(grown, bytes.subarray(1));
    await recordSha256(grown, recorded, true);
    const st = await Deno.stat(grown);
    await Deno.writeFile(grown, bytes);
    await Deno.utime(grown, st.atime!, st.mtime!);
    assert.deepEqual(await fileDigest(grown), { bytes: bytes.length, sha256: await sha(bytes) });
    // The record is never taken for a weights file.
    assert.deepEqual(await weightFileNames(dir), ["model.safetensors"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fileDigest: size and sha256, hashed once per process per (path, size, mtime); weightFileNames lists the index and its shards", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "w.bin");
    // Over the 1 MiB read buffer, so the hash spans several reads.
    const bytes = new Uint8Array(1_500_000).map((_, i) => (i * 7 + (i >> 11)) & 255);
    await Deno.writeFile(path, bytes);
    const sha = async (b: Uint8Array<ArrayBuffer>) =>
      [...new Uint8Array(await crypto.subtle.digest("SHA-256", b))]
        .map((x) => x.toString(16).padStart(2, "0")).join("");
    assert.deepEqual(await fileDigest(path), { bytes: bytes.length, sha256: await sha(bytes) });
    // Same size, same mtime: the process's digest is reused (the file is only stat'ed).
    const { mtime } = await Deno.stat(path);
    const other = bytes.map((b) => b ^ 1);
    await Deno.writeFile(path, other);
    await Deno.utime(path, mtime!, mtime!);
    const read = await bytesRead(() => fileDigest(path));
    assert.equal(read, 0, "a cached digest reads nothing");
    assert.equal((await fileDigest(path)).sha256, await sha(bytes));
    // Another mtime: hashed again.
    await Deno.utime(path, mtime!, new Date(mtime!.getTime() + 5000));
    assert.equal((await fileDigest(path)).sha256, await sha(other));
    await assert.rejects(
      () => fileDigest(join(dir, "none")),
      (e: Error) =>
        e instanceof CheckpointError && e.file === join(dir, "none") &&
        e.message.startsWith(`${join(dir, "none")}: cannot hash`),
    );
    // A sharded folder: the index, then each shard.
    const cfg = { ...preset("tiny-v1_1"), dropoutRate: 0 };
    const model = initT5(cfg, { seed: 1 });
    try {
      await saveHfFolder(join(dir, "sharded"), cfg, t5StateDict(model), { maxShardBytes: 40_000 });
      await saveHfFolder(join(dir, "single"), cfg, t5StateDict(model));
    } finally {
      disposeT5(model);
    }
    const names = await weightFileNames(join(dir, "sharded"));
    assert.equal(names[0], "model.safetensors.index.json");
    assert.ok(
      names.length > 2 && names.slice(1).every((n) => /^model-\d+-of-\d+\.safetensors$/.test(n)),
    );
    assert.deepEqual(await weightFileNames(join(dir, "single")), ["model.safetensors"]);
    assert.deepEqual(await weightFileNames(dir), []);
    // The folder as a profile may spell it (a leading `./`, a trailing `/`): the same names.
    const cwd = Deno.cwd();
    Deno.chdir(dir);
    try {
      for (const spelt of ["./single", "single/", "./single/"]) {
        assert.deepEqual(await weightFileNames(spelt), ["model.safetensors"], spelt);
      }
      assert.deepEqual(await weightFileNames("./sharded/"), names);
    } finally {
      Deno.chdir(cwd);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
