/**
 * Test helpers for the folder flushes of `syncDir` and `syncDirSync` (model/fs.ts): which folder
 * was flushed, and what it held at that moment, so a test can check that a rename was followed
 * by a flush of the folder it renamed into; {@link fileFlushes}, which files' data was flushed;
 * {@link copyTree}, a copy of a folder as a killed process left it; and {@link inTempDir}, a test
 * body in a fresh temporary folder.
 *
 * @module
 */

import { join } from "node:path";
import { isDirectorySync } from "./fs.ts";

/**
 * Runs `body` in a fresh temporary folder, removed afterwards whether `body` returns or throws.
 *
 * @param body gets the folder's path
 * @returns what `body` returns
 */
export async function inTempDir<T>(body: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir();
  try {
    return await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * Copies the folder tree `src` into `dst`, each name passed through `rename` (tests take such a
 * copy at a crash point: it holds what a killed process left, without its locks).
 *
 * @param src the folder to copy
 * @param dst where the copy goes (created)
 * @param rename maps each entry's name to the copy's
 */
export function copyTree(src: string, dst: string, rename: (name: string) => string): void {
  Deno.mkdirSync(dst, { recursive: true });
  for (const e of Deno.readDirSync(src)) {
    const to = join(dst, rename(e.name));
    if (e.isDirectory) copyTree(join(src, e.name), to, rename);
    else Deno.copyFileSync(join(src, e.name), to);
  }
}

/** One flush of a folder: its path as opened, and its entries (sorted) when it was flushed. */
export interface Flush {
  /** The folder, as `Deno.open` or `Deno.openSync` was given it. */
  readonly dir: string;
  /** Its entries at the moment of the flush, sorted. */
  readonly entries: readonly string[];
}

function listing(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
}

/** Makes `file`, a handle of the folder `dir`, report each flush to `flushes`. */
function watch(file: Deno.FsFile, dir: string, flushes: Flush[]): Deno.FsFile {
  const sync = file.sync.bind(file);
  const syncSync = file.syncSync.bind(file);
  file.sync = () => {
    flushes.push({ dir, entries: listing(dir) });
    return sync();
  };
  file.syncSync = () => {
    flushes.push({ dir, entries: listing(dir) });
    syncSync();
  };
  return file;
}

/**
 * Runs `fn` with `Deno.open` and `Deno.openSync` spied on, and returns the flushes (`sync()`,
 * `syncSync()`) of every folder handle they gave, in order. Restores both afterwards, also when
 * `fn` throws (the error is rethrown).
 *
 * @param fn the code under test
 * @returns the flushes of folders while `fn` ran
 * @example
 * ```ts
 * import { recordFlushes } from "./fs_testing.ts";
 * import { syncDir } from "./fs.ts";
 * const dir = Deno.makeTempDirSync();
 * const flushes = await recordFlushes(() => syncDir(dir));
 * console.assert(Deno.build.os === "windows" || flushes[0]?.dir === dir);
 * ```
 */
export async function recordFlushes(fn: () => Promise<unknown> | unknown): Promise<Flush[]> {
  const flushes: Flush[] = [];
  await withOpenedFiles(
    (file, path) => isDirectorySync(path) ? watch(file, path, flushes) : file,
    fn,
  );
  return flushes;
}

/**
 * Runs `fn` with every handle `Deno.open` and `Deno.openSync` give passed through `wrap` (with
 * the path and options as given), and restores both afterwards, also when `fn` throws.
 *
 * @param wrap what a test does to each handle (spy on its methods), returning it
 * @param fn the code under test
 */
export async function withOpenedFiles(
  wrap: (file: Deno.FsFile, path: string, options: Deno.OpenOptions | undefined) => Deno.FsFile,
  fn: () => Promise<unknown> | unknown,
): Promise<void> {
  const open = Deno.open;
  const openSync = Deno.openSync;
  Deno.open = async (path, options) => wrap(await open(path, options), String(path), options);
  Deno.openSync = (path, options) => wrap(openSync(path, options), String(path), options);
  try {
    await fn();
  } finally {
    Deno.open = open;
    Deno.openSync = openSync;
  }
}

/**
 * The entries `dir` held at each of its flushes in `flushes` (one list per flush, in order).
 *
 * @param flushes what {@link recordFlushes} returned
 * @param dir the folder
 * @returns its entries at each flush
 */
export function flushesOf(flushes: readonly Flush[], dir: string): (readonly string[])[] {
  return flushes.filter((f) => f.dir === dir).map((f) => f.entries);
}

/**
 * Runs `fn` with `Deno.open` and `Deno.openSync` spied on, and returns the paths of the files (not
 * folders) whose data a handle they gave flushed (`syncData()`, `sync()` or their `Sync` forms),
 * in order. Restores both afterwards, also when `fn` throws.
 *
 * @param fn the code under test
 * @returns the files flushed while `fn` ran
 * @example
 * ```ts
 * import { fileFlushes } from "./fs_testing.ts";
 * import { syncFile } from "./fs.ts";
 * const path = Deno.makeTempFileSync();
 * console.assert((await fileFlushes(() => syncFile(path)))[0] === path);
 * ```
 */
export async function fileFlushes(fn: () => Promise<unknown> | unknown): Promise<string[]> {
  const flushed: string[] = [];
  const spy = (file: Deno.FsFile, path: string): Deno.FsFile => {
    if (isDirectorySync(path)) return file;
    for (const m of ["sync", "syncData"] as const) {
      const f = file[m].bind(file);
      file[m] = () => {
        flushed.push(path);
        return f();
      };
    }
    for (const m of ["syncSync", "syncDataSync"] as const) {
      const f = file[m].bind(file);
      file[m] = () => {
        flushed.push(path);
        f();
      };
    }
    return file;
  };
  await withOpenedFiles(spy, fn);
  return flushed;
}

/**
 * ENOSPC as Deno gives it: a plain Error with the errno's code and no path in its message (what
 * a full disk throws from a write, flush or rename).
 *
 * @returns a new error
 */
export function diskFullError(): Error {
  return Object.assign(new Error("No space left on device (os error 28)"), { code: "ENOSPC" });
}
