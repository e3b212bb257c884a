/**
 * Test helpers that count the bytes a checkpoint load reads from disk, so a test can check that a
 * refusal came from the safetensors headers, before any tensor data was read: {@link bytesRead}
 * (bytes read through `Deno.FsFile`) and {@link headerBytes} (the size of a folder's headers);
 * and {@link shrinkingAtFirstRead}, a file cut short after it was opened.
 * Used by model/pretrained_test.ts, the checkpoint readers' tests and benchmarks/run_one_test.ts.
 *
 * @module
 */
import { join } from "node:path";

/**
 * The bytes `fn` reads through `Deno.FsFile` reads: the safetensors headers and tensor data (the
 * JSON files and tokenizer.json are read whole by `Deno.readTextFile`, not counted). Reads by
 * other code running meanwhile count too: do not run tests in parallel with it.
 *
 * @param fn the work to measure
 * @returns the bytes read while `fn` ran
 */
export async function bytesRead(fn: () => Promise<unknown>): Promise<number> {
  const proto = Deno.FsFile.prototype;
  const read = proto.read;
  let n = 0;
  proto.read = async function (this: Deno.FsFile, p: Uint8Array) {
    const got = await read.call(this, p);
    n += got ?? 0;
    return got;
  };
  try {
    await fn();
  } finally {
    proto.read = read;
  }
  return n;
}

/**
 * Runs `fn` with its first `Deno.FsFile` read preceded by cutting `path` to `to` bytes: a file
 * that shrinks after it was opened and its size taken. Other reads meanwhile count too: do not
 * run tests in parallel with it.
 *
 * @param path the file to cut
 * @param to its new length
 * @param fn the work that reads it
 * @throws Error when `fn` read nothing (the cut never happened), or what `fn` throws
 */
export async function shrinkingAtFirstRead(
  path: string,
  to: number,
  fn: () => Promise<unknown>,
): Promise<void> {
  const proto = Deno.FsFile.prototype;
  const read = proto.read;
  let cut = false;
  proto.read = async function (this: Deno.FsFile, p: Uint8Array) {
    if (!cut) {
      cut = true;
      await Deno.truncate(path, to);
    }
    return await read.call(this, p);
  };
  try {
    await fn();
  } finally {
    proto.read = read;
  }
  if (!cut) throw new Error(`shrinkingAtFirstRead: ${path} was not read`);
}

/**
 * The bytes of a folder's safetensors headers (each file's 8-byte length and its JSON), from the
 * files themselves.
 *
 * @param dir the checkpoint folder
 * @returns the sum over its `*.safetensors` files
 */
export async function headerBytes(dir: string): Promise<number> {
  let n = 0;
  for await (const e of Deno.readDir(dir)) {
    if (!e.name.endsWith(".safetensors")) continue;
    const head = (await Deno.readFile(join(dir, e.name))).subarray(0, 8);
    n += 8 + Number(new DataView(head.buffer, head.byteOffset, 8).getBigUint64(0, true));
  }
  return n;
}
