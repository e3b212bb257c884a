/**
 * Small file-system helpers shared by the model, task and benchmark code: existence checks and
 * atomic writes (a temporary file in the same folder, then a rename, so a reader never sees a
 * half-written file and a crash leaves the previous version in place).
 *
 * @module
 */
import { dirname } from "node:path";

/** Whether `path` exists (any kind); other errors than "not found" are rethrown. */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** Whether `path` is a regular file (false when it is missing or unreadable). */
export function isFileSync(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** Whether `path` is a directory (false when it is missing or unreadable). */
export async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}

let tmpCounter = 0;

/**
 * Writes `data` to `path` atomically, creating the folder: the data goes to a temporary file
 * beside the target, which is then renamed over it; on failure the temporary file is removed.
 *
 * @param path target file
 * @param data text or bytes
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  await Deno.mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${Deno.pid}-${++tmpCounter}`;
  try {
    if (typeof data === "string") await Deno.writeTextFile(tmp, data);
    else await Deno.writeFile(tmp, data);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}
