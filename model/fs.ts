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

/** What {@link writeFileAtomic} and {@link writeFilesAtomic} write: text, bytes or a byte stream. */
export type AtomicData = string | Uint8Array | ReadableStream<Uint8Array>;

async function writeAll(file: Deno.FsFile, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.byteLength) off += await file.write(data.subarray(off));
}

/**
 * Writes `data` to a new temporary file beside `path` (same folder, so that a rename onto `path`
 * is atomic), flushes it to disk and returns its name. The name is `<path>.tmp-<pid>-<random>`,
 * so it never ends in the target's extension and readers that list `*.json` or `*.csv` skip it.
 * On failure (a stream that errors, a full disk) the partial file is removed and the error is
 * rethrown; `path` itself is never touched.
 *
 * @param path the file the temporary file will replace (its folder must exist)
 * @param data text (UTF-8), bytes, or a stream of bytes
 * @returns the temporary file's path
 */
export async function writeTempBeside(path: string, data: AtomicData): Promise<string> {
  const tmp = `${path}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  const file = await Deno.open(tmp, { write: true, createNew: true });
  try {
    if (data instanceof ReadableStream) {
      for await (const chunk of data) await writeAll(file, chunk);
    } else {
      await writeAll(file, typeof data === "string" ? new TextEncoder().encode(data) : data);
    }
    await file.syncData();
  } catch (e) {
    file.close();
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
  file.close();
  return tmp;
}

/**
 * Writes `data` to `path` atomically, creating the folder: the data goes to a temporary file
 * beside the target ({@link writeTempBeside}), which is then renamed over it. A reader sees the
 * old file or the new one, never a part; on failure the temporary file is removed and the old
 * file is left as it was.
 *
 * @param path target file
 * @param data text, bytes or a stream of bytes
 */
export async function writeFileAtomic(path: string, data: AtomicData): Promise<void> {
  await Deno.mkdir(dirname(path), { recursive: true });
  const tmp = await writeTempBeside(path, data);
  try {
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/**
 * Writes several files that belong together (a task's data files, a set of tables): every file
 * is first written to a temporary file beside its target, and only when all of them are written
 * are they renamed into place, in order. A failure while writing (a stream that errors, a full
 * disk) removes every temporary file and leaves all targets as they were; only a failing rename
 * (a target that is a folder) can leave the earlier targets replaced and the later ones old.
 * Folders are created as needed.
 *
 * @param files target path → contents
 */
export async function writeFilesAtomic(
  files: Iterable<readonly [string, AtomicData]>,
): Promise<void> {
  const temps: [string, string][] = [];
  try {
    for (const [path, data] of files) {
      await Deno.mkdir(dirname(path), { recursive: true });
      temps.push([await writeTempBeside(path, data), path]);
    }
    while (temps.length > 0) {
      const [tmp, path] = temps[0]!;
      await Deno.rename(tmp, path);
      temps.shift();
    }
  } catch (e) {
    for (const [tmp] of temps) await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/**
 * Checks, before anything is computed, that an output folder named on the command line can be
 * used: it is a folder, or it does not exist yet and its nearest existing ancestor is a folder
 * (so `mkdir -p` will make it). Nothing is created. The error names the flag and the path, so a
 * mistyped `--out` stops the command at once instead of after hours of work.
 *
 * @param flag the flag or variable that named the folder, e.g. `--out`
 * @param path the folder
 * @throws Error `<flag> <path>: ...` saying which path is a file
 * @example
 * ```ts
 * import { checkOutputFolder } from "./fs.ts";
 * checkOutputFolder("--out", Deno.makeTempDirSync()); // a folder: fine
 * ```
 */
export function checkOutputFolder(flag: string, path: string): void {
  let at = path;
  for (;;) {
    let info: Deno.FileInfo | undefined;
    try {
      info = Deno.statSync(at);
    } catch (e) {
      // Below a file, stat says "not a directory": go up to the file and name it.
      if (!(e instanceof Deno.errors.NotFound) && !(e instanceof Deno.errors.NotADirectory)) {
        throw new Error(`${flag} ${path}: cannot use ${at}: ${(e as Error).message}`);
      }
    }
    if (info !== undefined) {
      if (info.isDirectory) return;
      throw new Error(
        at === path
          ? `${flag} ${path}: is a file, not a folder`
          : `${flag} ${path}: ${at} is a file, not a folder`,
      );
    }
    const up = dirname(at);
    if (up === at) return;
    at = up;
  }
}
