import assert from "node:assert/strict";
import { join } from "node:path";
import {
  fmix32,
  isUint32,
  recordedSha256,
  recordSha256,
  sha256File,
  sha256RecordPath,
} from "./hash.ts";

Deno.test("fmix32() is murmur3's finaliser: reference values, u32 wrap-around, a bijection on a sample", () => {
  // fmix32(1) of the reference implementation (MurmurHash3.cpp); 0 is its fixed point.
  assert.equal(fmix32(1), 0x514e28b7);
  assert.equal(fmix32(0), 0);
  // Inputs are taken modulo 2^32 (a negative seed, or a sum past 2^32, hashes as its u32).
  assert.equal(fmix32(-1), fmix32(0xffffffff));
  assert.equal(fmix32(2 ** 32 + 1), fmix32(1));
  // Outputs are u32, and distinct inputs give distinct outputs (it is a bijection).
  const seen = new Set<number>();
  for (let x = 0; x < 100_000; x++) {
    const h = fmix32(x);
    assert.ok(Number.isInteger(h) && h >= 0 && h < 2 ** 32, `fmix32(${x}) = ${h}`);
    seen.add(h);
  }
  assert.equal(seen.size, 100_000);
  // Avalanche: flipping one input bit flips about half of the 32 output bits on average.
  let flipped = 0;
  let pairs = 0;
  for (let x = 1; x < 2_000; x++) {
    for (let b = 0; b < 32; b++) {
      let d = (fmix32(x) ^ fmix32(x ^ (1 << b))) >>> 0;
      while (d !== 0) {
        flipped += d & 1;
        d >>>= 1;
      }
      pairs++;
    }
  }
  // 63,968 pairs: the mean of 32 fair bits is 16 with a standard error of about 0.011; 0.1 is
  // 9 of them (measured: within 0.02).
  const mean = flipped / pairs;
  assert.ok(Math.abs(mean - 16) < 0.1, `mean flipped bits ${mean}`);
});

Deno.test("isUint32(): integers in [0, 2^32 - 1] only", () => {
  for (const x of [0, 1, 0xffffffff]) assert.equal(isUint32(x), true, String(x));
  for (const x of [-1, 2 ** 32, 1.5, NaN, Infinity, "1", null, undefined]) {
    assert.equal(isUint32(x), false, String(x));
  }
});

Deno.test("sha256File(): the streaming hash of a file over several 1 MiB reads equals Web Crypto's of its bytes; an empty file's is the known empty digest", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "f.bin");
    // 2.5 MiB: two full reads and a partial one (a chunk dropped or repeated changes the digest).
    const bytes = new Uint8Array(2.5 * (1 << 20)).map((_, i) => (i * 31 + (i >> 13)) & 255);
    await Deno.writeFile(path, bytes);
    const want = [...new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))]
      .map((b) => b.toString(16).padStart(2, "0")).join("");
    assert.equal(await sha256File(path), want);
    await Deno.writeFile(path, new Uint8Array(0));
    assert.equal(
      await sha256File(path),
      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    );
    await assert.rejects(() => sha256File(join(dir, "none")), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("recordSha256() / recordedSha256(): the record beside a file is taken while its name, size and mtime fit; else ignored", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "model.safetensors");
    await Deno.writeFile(path, new Uint8Array([1, 2, 3]));
    const sha = "ab".repeat(32);
    await recordSha256(path, sha, true);
    assert.equal(sha256RecordPath(path), join(dir, ".model.safetensors.sha256.json"));
    const st = await Deno.stat(path);
    assert.deepEqual(JSON.parse(await Deno.readTextFile(sha256RecordPath(path))), {
      file: "model.safetensors",
      bytes: 3,
      mtimeMs: st.mtime!.getTime(),
      sha256: sha,
      hubVerified: true,
    });
    assert.equal(await recordedSha256(path, st), sha);
    // Another size, another mtime: stale.
    assert.equal(await recordedSha256(path, { ...st, size: 4 }), undefined, "size");
    const later = new Date(st.mtime!.getTime() + 1000);
    assert.equal(await recordedSha256(path, { ...st, mtime: later }), undefined, "mtime");
    assert.equal(await recordedSha256(path, { ...st, mtime: null }), undefined, "no mtime");
    // A record moved beside another file (of the same size and mtime) names another file.
    const other = join(dir, "pytorch_model.bin");
    await Deno.copyFile(sha256RecordPath(path), sha256RecordPath(other));
    assert.equal(await recordedSha256(other, st), undefined, "another file's record");
    // Malformed records: no digest, not hex, not JSON; and no record at all.
    const record = JSON.parse(await Deno.readTextFile(sha256RecordPath(path)));
    for (const bad of [{ ...record, sha256: undefined }, { ...record, sha256: "AB".repeat(32) }]) {
      await Deno.writeTextFile(sha256RecordPath(path), JSON.stringify(bad));
      assert.equal(await recordedSha256(path, st), undefined, JSON.stringify(bad));
    }
    await Deno.writeTextFile(sha256RecordPath(path), "{");
    assert.equal(await recordedSha256(path, st), undefined, "not JSON");
    await Deno.remove(sha256RecordPath(path));
    assert.equal(await recordedSha256(path, st), undefined, "no record");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
