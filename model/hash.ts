/**
 * Integer hashing shared by the seeded streams of the project (benchmarks/rng.ts seed derivation,
 * model/fused.ts dropout masks), the streaming sha256 of a file (tasks/download.ts data files,
 * model/checkpoint.ts checkpoint files), and the sha256 recorded beside a downloaded file
 * (model/hub.ts writes it, model/checkpoint.ts `fileDigest` reads it).
 *
 * @module
 */
import { createHash } from "node:crypto";
import { basename, dirname, join } from "node:path";
import { writeFileAtomic } from "./fs.ts";

/**
 * murmur3's 32-bit finaliser (fmix32): a bijection of u32 that spreads every input bit over the
 * output.
 *
 * @param x any number (taken modulo 2³²)
 * @returns a u32
 */
export function fmix32(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Whether `x` is an unsigned 32-bit integer, as a generator's saved state word must be (a larger
 * one would be wrapped modulo 2³² into another stream).
 *
 * @param x any value
 * @returns true for an integer in [0, 2³² − 1]
 */
export function isUint32(x: unknown): x is number {
  return Number.isInteger(x) && (x as number) >= 0 && (x as number) <= 0xffffffff;
}

/**
 * The hex sha256 of a file, read streaming 1 MiB at a time (Web Crypto has no streaming sha256,
 * so node:crypto's): memory stays flat however large the file (a T5-XXL's 44 GB of weights).
 *
 * @param path the file
 * @returns its 64 lowercase hex digits
 * @throws Deno.errors.NotFound (or another open/read error) as `Deno.open` and `read` throw it
 */
export async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  using f = await Deno.open(path);
  const buf = new Uint8Array(1 << 20);
  for (;;) {
    const n = await f.read(buf);
    if (n === null) break;
    h.update(buf.subarray(0, n));
  }
  return h.digest("hex");
}

/** A file's sha256 as {@link recordSha256} records it beside the file. */
export interface Sha256Record {
  /** The file's name (its last path component). */
  readonly file: string;
  /** Its size in bytes when recorded. */
  readonly bytes: number;
  /** Its modification time when recorded, in ms since the epoch. */
  readonly mtimeMs: number;
  /** Hex sha256 of its bytes. */
  readonly sha256: string;
  /** Whether the hub named this sha256 for the file (an LFS file's `X-Linked-Etag`). */
  readonly hubVerified: boolean;
}

/**
 * The sidecar that records the sha256 of `path` ({@link recordSha256}):
 * `<folder>/.<name>.sha256.json`. Hidden, and ending in `.sha256.json`, so no checkpoint file name
 * (`model.safetensors`, `pytorch_model.bin`, their `.index.json`, the shards an index names,
 * `config.json`, the tokenizer's) is ever one.
 *
 * @param path the file
 * @returns the sidecar's path
 */
export function sha256RecordPath(path: string): string {
  return join(dirname(path), `.${basename(path)}.sha256.json`);
}

/**
 * Records the sha256 of `path` (known from its download) beside it ({@link sha256RecordPath}),
 * with its current size and modification time, written atomically, so that
 * {@link recordedSha256} gives it without reading the file again.
 *
 * @param path the file, complete and in place
 * @param sha256 its hex sha256
 * @param hubVerified whether the hub named that sha256 for it (checked against the bytes)
 * @throws Error naming the file when it cannot be stat-ed, or the sidecar cannot be written
 */
export async function recordSha256(
  path: string,
  sha256: string,
  hubVerified: boolean,
): Promise<void> {
  const st = await Deno.stat(path);
  const record: Sha256Record = {
    file: basename(path),
    bytes: st.size,
    mtimeMs: st.mtime?.getTime() ?? NaN,
    sha256,
    hubVerified,
  };
  await writeFileAtomic(sha256RecordPath(path), JSON.stringify(record) + "\n");
}

/**
 * The sha256 recorded beside `path` ({@link recordSha256}) when the record still fits the file:
 * its name, size and modification time those of `stat` (the file's, as the caller read them), and
 * the digest 64 lowercase hex digits; else undefined (no record, an unreadable or malformed one,
 * or a stale one: the file was replaced or changed since), and the caller hashes the file.
 *
 * Trade-off: the bytes are not read, so a file changed without changing its size or modification
 * time (or a record edited to fit it) gives the recorded digest, not the bytes'. Only a download
 * writes a record, after hashing the bytes it wrote (and, for an LFS file, checking them against
 * the hub's sha256); anything that rewrites the file (another download, a copy, an editor) changes
 * its modification time.
 *
 * @param path the file
 * @param stat its size and modification time (as `Deno.stat` gives them)
 * @returns the recorded hex sha256, or undefined
 */
export async function recordedSha256(
  path: string,
  stat: Pick<Deno.FileInfo, "size" | "mtime">,
): Promise<string | undefined> {
  let r: Partial<Record<keyof Sha256Record, unknown>>;
  try {
    r = JSON.parse(await Deno.readTextFile(sha256RecordPath(path)));
  } catch {
    return undefined;
  }
  const mtime = stat.mtime?.getTime();
  const fits = typeof r === "object" && r !== null && r.file === basename(path) &&
    r.bytes === stat.size && mtime !== undefined && r.mtimeMs === mtime &&
    typeof r.sha256 === "string" && /^[0-9a-f]{64}$/.test(r.sha256);
  return fits ? r.sha256 as string : undefined;
}
