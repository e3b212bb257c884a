import { deepEqual, equal, fail, match, rejects, throws } from "node:assert/strict";
import { basename, join } from "node:path";
import {
  checkOutputFolder,
  DISCARDED_FOLDER,
  discardedFolderPattern,
  discardFolder,
  entryExists,
  FILE_TEMPS,
  fileChange,
  type FileIdentity,
  fsError,
  isDirectory,
  isDirectorySync,
  isFileSync,
  isLocalFileError,
  isTempInUse,
  LOCK_WAIT_NOTICE_MS,
  makeHeldTempDir,
  makeHeldTempDirSync,
  pathExists,
  removeDiscardedFolders,
  removeStaleTemps,
  removeStaleTempsSync,
  swapFolderInto,
  syncDir,
  syncDirSync,
  syncFile,
  TEMP_TAG_SOURCE,
  type TempPattern,
  withFileLock,
  writeFileAtomic,
  writeFilesAtomic,
  writeTempBeside,
} from "./fs.ts";
import {
  diskFullError,
  fileFlushes,
  flushesOf,
  recordFlushes,
  withOpenedFiles,
} from "./fs_testing.ts";
import { UsageError } from "./usage.ts";

/** A byte stream that yields `first`, then fails as a serializer or a full disk would. */
function failingStream(first: string): ReadableStream<Uint8Array> {
  let sent = false;
  return new ReadableStream<Uint8Array>({
    pull(c) {
      if (!sent) {
        sent = true;
        c.enqueue(new TextEncoder().encode(first));
      } else c.error(new Error("serializer failed mid-write"));
    },
  });
}

function names(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
}

Deno.test("discardFolder() renames a folder to .<name>.del-<tag> before deleting it", async () => {
  const dir = await Deno.makeTempDir();
  const rename = Deno.rename;
  const renamed: string[] = [];
  Deno.rename = async (from, to) => {
    await rename(from, to);
    renamed.push(basename(String(to)));
  };
  try {
    await Deno.mkdir(join(dir, "model", "sub"), { recursive: true });
    await Deno.writeTextFile(join(dir, "model", "sub", "w.bin"), "x");
    await discardFolder(join(dir, "model"));
    await Deno.mkdir(join(dir, ".step-1.old-1-0123456789ab"));
    await discardFolder(join(dir, ".step-1.old-1-0123456789ab"), "step-1");
    await discardFolder(join(dir, "missing")); // already gone: not an error
    equal(renamed.length, 2);
    match(renamed[0]!, DISCARDED_FOLDER);
    match(renamed[0]!, /^\.model\.del-/);
    match(renamed[1]!, /^\.step-1\.del-/);
    equal([...Deno.readDirSync(dir)].length, 0, "both removed");
  } finally {
    Deno.rename = rename;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("discardFolder() first removes what earlier removals of its name left, nothing of other names", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tag = "123-0123456789ab";
    // Leftovers of killed removals of "model.v1" (partial), of other names (one the unescaped
    // pattern would take), a file of the name (not a folder), and a folder of another kind.
    const mine = [`.model.v1.del-${tag}`, ".model.v1.del-9-fedcba987654"];
    const others = [`.modelXv1.del-${tag}`, `.model.v1x.del-${tag}`, `.model.del-${tag}`];
    for (const d of [...mine, ...others]) {
      await Deno.mkdir(join(dir, d, "sub"), { recursive: true });
      await Deno.writeTextFile(join(dir, d, "sub", "w.bin"), "x");
    }
    await Deno.writeTextFile(join(dir, `.model.v1.del-1-aaaaaaaaaaaa`), "a file");
    await Deno.mkdir(join(dir, `.model.v1.old-${tag}`));
    const kept = [...others, ".model.v1.del-1-aaaaaaaaaaaa", `.model.v1.old-${tag}`].sort();
    // Also when the folder itself is gone already.
    await discardFolder(join(dir, "model.v1"));
    deepEqual(names(dir), kept);
    for (const d of mine) await Deno.mkdir(join(dir, d));
    await Deno.mkdir(join(dir, "model.v1"));
    await Deno.writeTextFile(join(dir, "model.v1", "w.bin"), "x");
    await discardFolder(join(dir, "model.v1"));
    deepEqual(names(dir), kept);
    // With any name: every .<name>.del-<tag> folder, and only those.
    deepEqual((await removeDiscardedFolders(dir)).sort(), others.sort());
    deepEqual(names(dir), [".model.v1.del-1-aaaaaaaaaaaa", `.model.v1.old-${tag}`]);
    deepEqual(await removeDiscardedFolders(join(dir, "missing")), []);
    equal(discardedFolderPattern(), DISCARDED_FOLDER);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("discardFolder(): a sweep removing its renamed folder at once is no error; a folder that stays is", async () => {
  const dir = await Deno.makeTempDir();
  const remove = Deno.remove;
  try {
    // Another process's sweep deletes the renamed folder under this removal, which then fails.
    // Every try fails so, whatever it found (a sweep racing it would leave it no entry).
    Deno.remove = async (path, options) => {
      await remove(path, options).catch(() => {});
      throw new Error("Directory not empty (os error 39)");
    };
    await Deno.mkdir(join(dir, "a"));
    await discardFolder(join(dir, "a"));
    deepEqual(names(dir), []);
    // A try that fails part-way, the folder still there: once more.
    let failures = 1;
    Deno.remove = (path, options) =>
      failures-- > 0 ? Promise.reject(new Error("Directory not empty")) : remove(path, options);
    await Deno.mkdir(join(dir, "a"));
    await discardFolder(join(dir, "a"));
    deepEqual(names(dir), []);
    // A removal that keeps failing while the folder is there: the error names it.
    Deno.remove = () => Promise.reject(new Deno.errors.PermissionDenied("Permission denied"));
    await Deno.mkdir(join(dir, "b"));
    await rejects(
      discardFolder(join(dir, "b")),
      (e: Error) => {
        match(
          e.message,
          /\/\.b\.del-\d+-[0-9a-f]{12}: removing the folder failed: Permission denied$/,
        );
        return e instanceof Deno.errors.PermissionDenied;
      },
    );
  } finally {
    Deno.remove = remove;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeFileAtomic(): a temporary swept away before it was locked is made again under a new name; three such losses fail, naming it", async () => {
  if (Deno.build.os === "windows") return; // no locks there
  const dir = await Deno.makeTempDir();
  try {
    const target = join(dir, "a.json");
    // Another process's sweep removes the new temporary between its creation and its lock (the
    // sweep held no lock on it yet): the first `lost` temporaries are removed as they are opened.
    const sweeping = (lost: number) => (file: Deno.FsFile, path: string, o?: Deno.OpenOptions) => {
      if (o?.createNew === true && path.includes(".tmp-") && lost-- > 0) Deno.removeSync(path);
      return file;
    };
    await withOpenedFiles(sweeping(1), () => writeFileAtomic(target, "1"));
    equal(await Deno.readTextFile(target), "1");
    deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["a.json"]);
    await rejects(
      withOpenedFiles(sweeping(3), () => writeFileAtomic(target, "2")),
      /a\.json\.tmp-\d+-[0-9a-f]{12}: temporary removed by another process before it could be locked$/,
    );
    equal(await Deno.readTextFile(target), "1", "the target untouched");
    deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["a.json"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeFileAtomic() creates folders, replaces files and leaves no temporary file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const target = join(dir, "a", "b", "out.json");
    await writeFileAtomic(target, "one");
    await writeFileAtomic(target, new TextEncoder().encode("two"));
    equal(await Deno.readTextFile(target), "two");
    equal([...Deno.readDirSync(join(dir, "a", "b"))].length, 1);
    equal(await pathExists(target), true);
    equal(isFileSync(target), true);
    equal(await isDirectory(join(dir, "a")), true);
    equal(await isDirectory(target), false);
    equal(await pathExists(join(dir, "missing")), false);
    // A dangling link: an entry (lstat), but nothing at its end (stat).
    await Deno.symlink(join(dir, "missing"), join(dir, "dangling"));
    equal(await entryExists(join(dir, "dangling")), true);
    equal(await pathExists(join(dir, "dangling")), false);
    equal(await entryExists(join(dir, "missing")), false);
    await Deno.remove(join(dir, "dangling"));
    equal(isFileSync(join(dir, "missing")), false);
    // A target that is a folder cannot be replaced: the error surfaces and no temp file is left.
    await rejects(writeFileAtomic(join(dir, "a"), "x"));
    equal([...Deno.readDirSync(dir)].map((e) => e.name).join(","), "a");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * Runs `fn` with `Deno.open` spied on; returns the paths opened for reading, in order, that are
 * folders (the flushes of {@link syncDir}).
 */
async function foldersOpened(fn: () => Promise<void>): Promise<string[]> {
  const seen: string[] = [];
  await withOpenedFiles((file, path, options) => {
    if (options?.read === true && !options.write && isDirectorySync(path)) seen.push(path);
    return file;
  }, fn);
  return seen;
}

Deno.test("writeFileAtomic() and writeFilesAtomic() flush the folders they renamed into", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const a = join(dir, "a");
    const b = join(dir, "b");
    if (Deno.build.os === "windows") return; // syncDir does nothing there
    deepEqual(await foldersOpened(() => writeFileAtomic(join(a, "x.json"), "1")), [a]);
    deepEqual(
      await foldersOpened(() =>
        writeFilesAtomic([[join(a, "y.csv"), "2"], [join(b, "z.csv"), "3"], [join(a, "w"), "4"]])
      ),
      [a, b],
    );
    // Each folder is flushed after the renames: the flush holds the new names, no temporary
    // (a flush before the rename would make the temporary's name durable, not the target's).
    const one = await recordFlushes(() => writeFileAtomic(join(a, "v.json"), "5"));
    deepEqual(flushesOf(one, a), [["v.json", "w", "x.json", "y.csv"]]);
    const set = await recordFlushes(() =>
      writeFilesAtomic([[join(a, "u.csv"), "6"], [join(b, "t.csv"), "7"]])
    );
    deepEqual(flushesOf(set, a), [["u.csv", "v.json", "w", "x.json", "y.csv"]]);
    deepEqual(flushesOf(set, b), [["t.csv", "z.csv"]]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** An error as Deno gives it for an errno it has no class for (e.g. `EINVAL` from `fsync`). */
function osError(code: string): Error {
  return Object.assign(new TypeError(`${code} (os error)`), { code });
}

/**
 * Runs `fn` with every `FsFile.sync()` (or `syncData()`) of a handle `Deno.open` or
 * `Deno.openSync` gives throwing `err`.
 */
async function withFailingSync(
  err: Error,
  fn: () => Promise<void>,
  method: "sync" | "syncData" = "sync",
): Promise<void> {
  await withOpenedFiles((file) => {
    file[method] = () => Promise.reject(err);
    return file;
  }, fn);
}

Deno.test("syncDir() flushes a real folder, tolerates a refusal (EINVAL) and rethrows other errors", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await syncDir(dir);
    if (Deno.build.os === "windows") return; // syncDir does nothing there
    // A file system that refuses to flush a folder (some FUSE and network ones, procfs).
    for (const code of ["EINVAL", "ENOTSUP", "EOPNOTSUPP", "EISDIR"]) {
      await withFailingSync(osError(code), () => syncDir(dir));
    }
    // Deno refuses to open /proc without --allow-all.
    if (Deno.build.os === "linux") await syncDir("/proc/self");
    // An I/O error while flushing is a real failure, and so is a missing folder.
    await rejects(withFailingSync(osError("EIO"), () => syncDir(dir)), /EIO/);
    await rejects(syncDir(join(dir, "missing")), Deno.errors.NotFound);
    // writeFileAtomic: the file is in place, the refusal does not fail the write.
    await withFailingSync(osError("EINVAL"), () => writeFileAtomic(join(dir, "f.json"), "x"));
    equal(await Deno.readTextFile(join(dir, "f.json")), "x");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("syncFile() flushes a file's data, tolerates a refusal and rethrows other errors", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "spiece.model");
    await Deno.writeTextFile(path, "model");
    deepEqual(await fileFlushes(() => syncFile(path)), [path]);
    for (const code of ["EINVAL", "ENOTSUP", "EOPNOTSUPP"]) {
      await withFailingSync(osError(code), () => syncFile(path), "syncData");
    }
    await rejects(withFailingSync(osError("EIO"), () => syncFile(path), "syncData"), /EIO/);
    await rejects(syncFile(join(dir, "missing")), Deno.errors.NotFound);
    equal(await Deno.readTextFile(path), "model");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeFileAtomic() tolerates a file system that refuses to flush a file, as syncFile() does", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "manifest.json");
    await writeFileAtomic(path, "old");
    // macOS flushes with F_FULLFSYNC, which SMB volumes refuse (ENOTSUP) and FUSE ones (EINVAL).
    for (const code of ["EINVAL", "ENOTSUP", "EOPNOTSUPP"]) {
      await withFailingSync(osError(code), () => writeFileAtomic(path, code), "syncData");
      equal(await Deno.readTextFile(path), code);
      await withFailingSync(
        osError(code),
        () => writeFilesAtomic([[path, `${code} 2`], [join(dir, "b.csv"), "b"]]),
        "syncData",
      );
      equal(await Deno.readTextFile(path), `${code} 2`);
    }
    // An I/O error while flushing is a failure: the old file stays, no temporary is left.
    await rejects(
      withFailingSync(osError("EIO"), () => writeFileAtomic(path, "new"), "syncData"),
      /EIO/,
    );
    equal(await Deno.readTextFile(path), "EOPNOTSUPP 2");
    equal(names(dir).join(","), "b.csv,manifest.json");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeFileAtomic() and writeFilesAtomic() keep the permission bits of the file they replace", async () => {
  if (Deno.build.os === "windows") return; // no POSIX modes
  const dir = await Deno.makeTempDir();
  const mode = (p: string) => (Deno.statSync(p).mode ?? 0) & 0o7777;
  try {
    const path = join(dir, "manifest.json");
    await writeFileAtomic(path, "1");
    const fresh = mode(path); // a new file: 0666 less the umask
    equal(fresh & ~0o666, 0, fresh.toString(8));
    for (const m of [0o600, 0o640, 0o755, 0o444]) {
      Deno.chmodSync(path, m);
      await writeFileAtomic(path, `mode ${m}`);
      equal(mode(path).toString(8), m.toString(8));
      equal(await Deno.readTextFile(path), `mode ${m}`);
    }
    Deno.chmodSync(path, 0o600);
    await writeFilesAtomic([[path, "2"], [join(dir, "new.csv"), "n"]]);
    equal(mode(path).toString(8), "600");
    equal(mode(join(dir, "new.csv")), fresh);
    // Set-id bits are not carried over to the new file.
    Deno.chmodSync(path, 0o2750);
    await writeFileAtomic(path, "3");
    equal(mode(path).toString(8), "750");
    equal(names(dir).join(","), "manifest.json,new.csv");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Runs `fn` with every `FsFile.syncSync()` of a handle `Deno.openSync` gives throwing `err`. */
function withFailingSyncSync(err: Error, fn: () => void): void {
  const openSync = Deno.openSync;
  Deno.openSync = (path, options) => {
    const file = openSync(path, options);
    file.syncSync = () => {
      throw err;
    };
    return file;
  };
  try {
    fn();
  } finally {
    Deno.openSync = openSync;
  }
}

Deno.test("syncDirSync() flushes a real folder, tolerates the refusals syncDir does and rethrows other errors", async () => {
  const dir = await Deno.makeTempDir();
  try {
    syncDirSync(dir);
    if (Deno.build.os === "windows") return; // syncDirSync does nothing there
    const flushes = await recordFlushes(() => syncDirSync(dir));
    deepEqual(flushes, [{ dir, entries: [] }]);
    for (const code of ["EINVAL", "ENOTSUP", "EOPNOTSUPP", "EISDIR"]) {
      withFailingSyncSync(osError(code), () => syncDirSync(dir));
    }
    if (Deno.build.os === "linux") syncDirSync("/proc/self");
    throws(() => withFailingSyncSync(osError("EIO"), () => syncDirSync(dir)), /EIO/);
    throws(() => syncDirSync(join(dir, "missing")), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeFileAtomic() that fails mid-write keeps the previous file and leaves no temporary file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const target = join(dir, "run.json");
    await writeFileAtomic(target, '{"old":true}\n');
    await rejects(writeFileAtomic(target, failingStream('{"new":')), /serializer failed mid-write/);
    equal(await Deno.readTextFile(target), '{"old":true}\n');
    equal(names(dir).join(","), "run.json");
    // A stream that ends normally is written whole.
    await writeFileAtomic(target, new Blob(["{", '"new":true}']).stream());
    equal(await Deno.readTextFile(target), '{"new":true}');
    equal(names(dir).join(","), "run.json");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeTempBeside() writes beside the target under a name without its extension", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const target = join(dir, "scores.csv");
    const heldA = await writeTempBeside(target, "a");
    const heldB = await writeTempBeside(target, new Uint8Array([98]));
    const [a, b] = [heldA.path, heldB.path];
    equal(a === b, false);
    for (const t of [a, b]) {
      equal(t.startsWith(`${target}.tmp-${Deno.pid}-`), true);
      equal(FILE_TEMPS.held.test(basename(t)), true, t);
      equal(/\.(csv|json)$/.test(t), false);
    }
    equal(await Deno.readTextFile(a) + await Deno.readTextFile(b), "ab");
    equal(await pathExists(target), false);
    await rejects(writeTempBeside(join(dir, "x.json"), failingStream("x")), /mid-write/);
    equal(names(dir).length, 2);
    heldA.release();
    heldA.release(); // twice is fine
    heldB.release();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeFilesAtomic() replaces no file when one of them fails while being written", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const a = join(dir, "a.csv");
    const b = join(dir, "sub", "b.csv");
    await writeFilesAtomic([[a, "a1"], [b, "b1"]]);
    equal(await Deno.readTextFile(a), "a1");
    equal(await Deno.readTextFile(b), "b1");
    await rejects(
      writeFilesAtomic([[a, "a2"], [b, failingStream("b2 partial")], [join(dir, "c.csv"), "c"]]),
      /mid-write/,
    );
    equal(await Deno.readTextFile(a), "a1");
    equal(await Deno.readTextFile(b), "b1");
    equal(names(dir).join(","), "a.csv,sub");
    equal(names(join(dir, "sub")).join(","), "b.csv");
    await writeFilesAtomic(
      new Map<string, string | Uint8Array>([[a, "a3"], [b, new TextEncoder().encode("b3")]]),
    );
    equal(await Deno.readTextFile(a) + await Deno.readTextFile(b), "a3b3");
    equal(names(dir).join(","), "a.csv,sub");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeFilesAtomic() refuses a folder in a target's place before replacing any file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const a = join(dir, "a.csv");
    const last = join(dir, "last.svg");
    await writeFilesAtomic([[a, "a1"]]);
    await Deno.mkdir(last);
    await Deno.writeTextFile(join(last, "kept"), "k");
    // The folder is the last target: without the check, a.csv would be replaced before its
    // rename fails.
    await rejects(
      writeFilesAtomic([[a, "a2"], [join(dir, "b.csv"), "b"], [last, "<svg/>"]]),
      (e: Error) =>
        e.message === `${last}: a folder is where this file goes; move it away (nothing written)`,
    );
    equal(await Deno.readTextFile(a), "a1");
    equal(await Deno.readTextFile(join(last, "kept")), "k");
    equal(names(dir).join(","), "a.csv,last.svg");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Runs `fn` with every write to a handle of a file named `*.tmp-*` failing with `err`. */
async function withFailingTempWrites(err: () => Error, fn: () => Promise<unknown>): Promise<void> {
  await withOpenedFiles((file, path) => {
    if (/\.tmp-/.test(basename(path))) file.write = () => Promise.reject(err());
    return file;
  }, fn);
}

/** Checks that `e` is `raw` renamed: `<path>: <doing> failed: <raw message>`, same class, code. */
function checkNamed(e: unknown, path: string, doing: RegExp, raw?: Error): true {
  if (!(e instanceof Error)) throw new Error(`not an Error: ${e}`);
  const cause = raw ?? (e.cause as Error);
  const tail = ` failed: ${cause.message}`;
  equal(e.message.startsWith(`${path}: `) && e.message.endsWith(tail), true, e.message);
  match(e.message.slice(path.length + 2, e.message.length - tail.length), doing);
  equal(e.cause, cause, "the original error is the cause");
  equal(e.constructor, cause.constructor, "the class is kept");
  equal((e as { code?: string }).code, (cause as { code?: string }).code);
  equal(isLocalFileError(e), true);
  return true;
}

Deno.test("a full disk while writing names the file (ENOSPC kept as code and cause) and leaves nothing half-written", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const run = join(dir, "runs", "a2bf87504e39.json");
    await writeFileAtomic(run, "old");
    let raw: Error | undefined;
    const full = () => (raw = diskFullError());
    await withFailingTempWrites(full, async () => {
      await rejects(writeFileAtomic(run, "new"), (e) => checkNamed(e, run, /^writing /, raw));
      // A stream's chunks go through the same write.
      await rejects(
        writeFileAtomic(run, new Blob(["x"]).stream()),
        (e) => checkNamed(e, run, /^writing /, raw),
      );
      // The tables: the file that could not be written is named, no table is replaced.
      const scores = join(dir, "tables", "scores.csv");
      await rejects(
        writeFilesAtomic([[run, "a"], [scores, "b"]]),
        (e) => checkNamed(e, run, /^writing /, raw),
      );
    });
    equal(await Deno.readTextFile(run), "old");
    deepEqual(names(join(dir, "runs")), ["a2bf87504e39.json"]);
    equal(await pathExists(join(dir, "tables")), false, "the first failure stops the set");
    // A class Deno has (EACCES): a caller's instanceof still holds.
    await withFailingTempWrites(
      () => (raw = new Deno.errors.PermissionDenied("denied")),
      () =>
        rejects(writeFileAtomic(run, "new"), (e) => {
          equal(e instanceof Deno.errors.PermissionDenied, true);
          return checkNamed(e, run, /^writing /, raw);
        }),
    );
    deepEqual(names(join(dir, "runs")), ["a2bf87504e39.json"]);
    // An I/O error while flushing names the file too.
    await rejects(
      withFailingSync(osError("EIO"), () => writeFileAtomic(run, "new"), "syncData"),
      (e) => checkNamed(e, run, /^flushing its temporary file /),
    );
    equal(await Deno.readTextFile(run), "old");
    deepEqual(names(join(dir, "runs")), ["a2bf87504e39.json"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a failed folder creation, rename or folder flush names the path and keeps the error's class", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // The folder is a file: mkdir fails, with the class a plain mkdir gives.
    const file = join(dir, "runs");
    await Deno.writeTextFile(file, "");
    const target = join(file, "sub", "x.json");
    const plain = await Deno.mkdir(join(file, "sub"), { recursive: true }).then(
      () => fail("mkdir below a file succeeded"),
      (e: Error) => e,
    );
    await rejects(writeFileAtomic(target, "x"), (e) => {
      equal((e as Error).constructor, plain.constructor);
      return checkNamed(e, target, /^creating its folder$/);
    });
    // The target is a folder that is not empty: the rename fails; no temporary is left.
    const folder = join(dir, "out.json");
    await Deno.mkdir(join(folder, "in"), { recursive: true });
    await rejects(
      writeFileAtomic(folder, "x"),
      (e) => checkNamed(e, folder, /^renaming its temporary file out\.json\.tmp-\S+ into place$/),
    );
    // writeFilesAtomic refuses it before writing (its own test above).
    await rejects(writeFilesAtomic([[folder, "x"]]), {
      message: `${folder}: a folder is where this file goes; move it away (nothing written)`,
    });
    deepEqual(names(dir), ["out.json", "runs"]);
    // A missing folder cannot be flushed: NotFound still, named.
    const missing = join(dir, "missing");
    await rejects(syncDir(missing), (e) => {
      equal(e instanceof Deno.errors.NotFound, true);
      return checkNamed(e, missing, /^opening the folder to flush it$/);
    });
    throws(() => syncDirSync(missing), Deno.errors.NotFound);
    // A folder swap whose new folder is gone names the destination.
    await rejects(
      swapFolderInto(join(dir, `.dest.tmp-${Deno.pid}-0123456789ab`), join(dir, "dest")),
      (e) =>
        checkNamed(e, join(dir, "dest"), /^renaming the new folder \.dest\.tmp-\S+ into place$/),
    );
    // A temporary folder in a folder that is a file.
    await rejects(makeHeldTempDir(file, ".ckpt"), (e) => {
      equal((e as Error).message.startsWith(`${join(file, ".ckpt.tmp-")}`), true);
      return checkNamed(e, (e as Error).message.split(": ")[0]!, /^creating the temporary folder$/);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fsError() names an error once, keeps class, code and cause; a stream's own error passes unchanged", async () => {
  const raw = Object.assign(new Deno.errors.NotFound("No such file (os error 2)"), {
    code: "ENOENT",
  });
  const once = fsError(raw, "/a/b.json", "reading");
  checkNamed(once, "/a/b.json", /^reading$/, raw);
  equal(fsError(once, "/a", "writing"), once, "not named twice");
  equal(fsError("text", "/a", "writing"), "text");
  equal(isLocalFileError(raw), false);
  // A class that is not built from a message: a plain Error with the message and the cause.
  class Odd extends Error {
    constructor(readonly n: number) {
      super(`odd ${n}`);
    }
  }
  const odd = fsError(new Odd(1), "/x", "writing") as Error;
  equal(odd.message, "/x: writing failed: odd 1");
  equal(isLocalFileError(odd), true);
  const dom = fsError(new DOMException("gone", "NotFoundError"), "/x", "reading") as Error;
  deepEqual([dom.constructor, dom.name, dom.message], [
    Error,
    "NotFoundError",
    "/x: reading failed: gone",
  ]);
  // The data's own failure (a serializer, a download) is not a file error and is not renamed.
  const dir = await Deno.makeTempDir();
  try {
    await rejects(writeFileAtomic(join(dir, "a.json"), failingStream("x")), (e) => {
      equal((e as Error).message, "serializer failed mid-write");
      equal(isLocalFileError(e), false);
      return true;
    });
    deepEqual(names(dir), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("checkOutputFolder() accepts folders and creatable paths, names the flag and the file in the way", async () => {
  const dir = await Deno.makeTempDir();
  const file = join(dir, "results.json");
  await Deno.writeTextFile(file, "{}");
  checkOutputFolder("--out", dir);
  checkOutputFolder("--out", join(dir, "new", "deeper"));
  checkOutputFolder("--out", "relative/new-folder");
  throws(() => checkOutputFolder("--out", file), {
    name: "UsageError",
    message: `--out ${file}: is a file, not a folder`,
  });
  throws(() => checkOutputFolder("--out", file), UsageError, "a bad argument: exit code 2");
  throws(() => checkOutputFolder("--tables", join(file, "tables")), {
    message: `--tables ${join(file, "tables")}: ${file} is a file, not a folder`,
  });
  // An empty path (`--out "$DIR"` with DIR unset) would write into the current folder.
  throws(() => checkOutputFolder("--runs-out", ""), {
    name: "UsageError",
    message: "--runs-out: an empty path (an unset variable?); name a folder",
  });
  equal(names(dir).join(","), "results.json", "nothing was created");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("checkOutputFolder(): a link to a missing folder is named as such; with writable, a folder that takes no new file is refused and no probe file is left", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // A dangling link as the folder, and on the way to it: mkdir would say "File exists".
    const link = join(dir, "out");
    await Deno.symlink(join(dir, "missing"), link);
    throws(() => checkOutputFolder("--out", link), {
      name: "UsageError",
      message: `--out ${link}: is a link to ${
        join(dir, "missing")
      }, which does not exist; create that folder or remove the link`,
    });
    throws(() => checkOutputFolder("--tables", join(link, "tables")), {
      message: `--tables ${join(link, "tables")}: ${link} is a link to ${
        join(dir, "missing")
      }, which does not exist; create that folder or remove the link`,
    });
    // Its target made: fine (a link to a folder is a folder).
    await Deno.mkdir(join(dir, "missing"));
    checkOutputFolder("--out", link, { writable: true });
    checkOutputFolder("--out", join(link, "new"), { writable: true });
    // Writable: the probe file is removed, nothing else is made.
    equal(names(dir).sort().join(","), "missing,out");
    equal(names(join(dir, "missing")).join(","), "");
    // A folder no file can be created in (a read-only disk; root writes past permission bits, so
    // the refusal is injected): refused, naming the nearest existing folder and the reason;
    // without writable, not asked.
    const asked: string[] = [];
    const readOnly = (d: string) => {
      asked.push(d);
      return "Read-only file system (os error 30)";
    };
    throws(() => checkOutputFolder("--out", dir, { writable: true, cannotWrite: readOnly }), {
      name: "UsageError",
      message: `--out ${dir}: cannot be written (Read-only file system (os error 30)); name a ` +
        "folder on a writable disk",
    });
    throws(
      () =>
        checkOutputFolder("--out", join(dir, "a", "b"), { writable: true, cannotWrite: readOnly }),
      {
        message: `--out ${join(dir, "a", "b")}: its nearest existing folder ${dir} cannot be ` +
          "written (Read-only file system (os error 30)); name a folder on a writable disk",
      },
    );
    checkOutputFolder("--out", dir, { cannotWrite: readOnly });
    deepEqual(asked, [dir, dir]);
    // The default probe where creating a file really fails, as root too: a folder whose path
    // leaves no room for the probe's name under Linux's PATH_MAX (4096 bytes).
    if (Deno.build.os === "linux") {
      let deep = join(dir, "deep");
      while (deep.length < 3800) deep = join(deep, "d".repeat(250));
      deep = join(deep, "e".repeat(4060 - deep.length - 1));
      await Deno.mkdir(deep, { recursive: true });
      throws(() => checkOutputFolder("--out", deep, { writable: true }), {
        message:
          /: cannot be written \(File name too long \(os error 36\)[^)]*\); name a folder on a writable disk$/,
      });
      checkOutputFolder("--out", deep);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * Starts a process that writes a temporary file for `<dir>/run.json` and creates a held
 * temporary folder `<dir>/.view.tmp-…`, then waits; returns it and the two paths.
 */
async function childHoldingTemps(
  dir: string,
): Promise<{ child: Deno.ChildProcess; paths: string[] }> {
  const fsUrl = new URL("./fs.ts", import.meta.url).href;
  const code = `import { makeHeldTempDirSync, writeTempBeside } from ${JSON.stringify(fsUrl)};
const file = await writeTempBeside(${JSON.stringify(join(dir, "run.json"))}, "half");
const folder = makeHeldTempDirSync(${JSON.stringify(dir)}, ".view");
console.log(JSON.stringify([file.path, folder.path]));
setInterval(() => {}, 1000);`;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`child ended early: ${text}`);
    text += value;
  }
  await reader.cancel();
  return { child, paths: JSON.parse(text) as string[] };
}

const VIEW_TEMPS: TempPattern = {
  kind: "directory",
  held: new RegExp(String.raw`^\.view\.tmp-${TEMP_TAG_SOURCE}$`),
};

Deno.test("removeStaleTemps() keeps the temporaries a live process holds and removes them once it is SIGKILLed", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { child, paths } = await childHoldingTemps(dir);
    const [file, folder] = paths as [string, string];
    try {
      equal(basename(file).startsWith(`run.json.tmp-${child.pid}-`), true, file);
      equal(basename(folder).startsWith(`.view.tmp-${child.pid}-`), true, folder);
      // A concurrent run's temporaries: locked, so kept.
      deepEqual(await removeStaleTemps(dir, FILE_TEMPS), []);
      deepEqual(removeStaleTempsSync(dir, VIEW_TEMPS), []);
      equal(isFileSync(file) && await isDirectory(folder), true);
    } finally {
      child.kill("SIGKILL");
      await child.status;
    }
    // Killed: the kernel dropped its locks, so both are provably abandoned.
    deepEqual(removeStaleTempsSync(dir, VIEW_TEMPS), [basename(folder)]);
    equal(await isDirectory(folder), false);
    // The first write of this process into the folder sweeps its stale temporary files.
    await writeFileAtomic(join(dir, "run.json"), "whole");
    deepEqual(names(dir), ["run.json"]);
    equal(await Deno.readTextFile(join(dir, "run.json")), "whole");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("removeStaleTemps() removes an unlocked temporary of a dead pid, keeps this process's and every other name", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // This process's own temporary, even unlocked (written, then released without a rename).
    const own = await writeTempBeside(join(dir, "a.json"), "mine");
    own.release();
    // (Written first: a process's first write into a folder sweeps it.)
    const dead = "b.json.tmp-999999999-0123456789ab"; // above any pid_max: no such process
    const kept = [
      "c.json",
      "c.json.tmp-1",
      "c.json.tmp-123-0123456789", // random part too short
      // Names of unreleased earlier versions (no legacy pattern): never matched, even a day old.
      "g.json.tmp-999999999-01234567",
      "g.json.999999999.0123abcd.tmp",
      "c.json.tmp-123-0123456789AB", // not lower-case hex
      "c.json.tmp-abc-0123456789ab", // no pid
      ".tmp-123-0123456789ab", // no target name
      "d.json.tmp-123-0123456789ab.bak",
      "notes.tmp",
    ];
    for (const n of [dead, ...kept]) await Deno.writeTextFile(join(dir, n), "x");
    // Entries of another kind under a matching name: a folder and a symbolic link.
    await Deno.mkdir(join(dir, "e.json.tmp-999999999-0123456789ab"));
    await Deno.symlink(join(dir, "c.json"), join(dir, "f.json.tmp-999999999-0123456789ab"));
    const ownDir = await makeHeldTempDir(dir, ".view");
    ownDir.release();
    equal(VIEW_TEMPS.held.test(basename(ownDir.path)), true, ownDir.path);

    deepEqual(await removeStaleTemps(dir, FILE_TEMPS), [dead]);
    deepEqual(removeStaleTempsSync(dir, VIEW_TEMPS), []);
    // A day later, nothing else is taken either (file temporaries have no legacy pattern).
    const later = { now: Date.now() + 25 * 3600_000 };
    deepEqual(removeStaleTempsSync(dir, FILE_TEMPS, later), []);
    deepEqual(
      names(dir),
      [
        ...kept,
        "e.json.tmp-999999999-0123456789ab",
        "f.json.tmp-999999999-0123456789ab",
        basename(own.path),
        basename(ownDir.path),
      ].sort(),
    );
    // A writer's legacy (unlocked) name is kept while young, removed once a day old.
    const withLegacy: TempPattern = { ...VIEW_TEMPS, legacy: /^\.view\.tmp-\d+$/ };
    await Deno.mkdir(join(dir, ".view.tmp-7"));
    deepEqual(removeStaleTempsSync(dir, withLegacy), []);
    deepEqual(removeStaleTempsSync(dir, withLegacy, later), [".view.tmp-7"]);
    // A missing folder is nothing to clean.
    deepEqual(await removeStaleTemps(join(dir, "missing"), FILE_TEMPS), []);
    const held = makeHeldTempDirSync(dir, "");
    equal(/^\.tmp-\d+-[0-9a-f]{12}$/.test(basename(held.path)), true, held.path);
    held.release();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("isTempInUse() is true while a handle holds the temporary, whatever the pid in its name", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const held = await makeHeldTempDir(dir, ".x");
    const file = await writeTempBeside(join(dir, "f.json"), "x");
    equal(isTempInUse(join(dir, "missing")), false);
    if (Deno.build.os === "windows") return; // no locks there: judged by age
    equal(isTempInUse(held.path), true);
    equal(isTempInUse(file.path), true);
    held.release();
    file.release();
    // Released (as when its process died): abandoned, although it carries this process's pid.
    equal(isTempInUse(held.path), false);
    equal(isTempInUse(file.path), false);
    // A symbolic link under such a name is never judged through its target.
    const link = join(dir, `.y.tmp-${Deno.pid}-0123456789ab`);
    await Deno.symlink(held.path, link);
    equal(isTempInUse(link), true);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("withFileLock: holders of one lock file take turns (also after a throw); the folder is made", async () => {
  const dir = await Deno.makeTempDir();
  const lock = join(dir, "locks", "x.lock");
  try {
    const events: string[] = [];
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let started!: () => void;
    const isHeld = new Promise<void>((r) => (started = r));
    const first = withFileLock(lock, async () => {
      events.push("first in");
      started();
      await held;
      events.push("first out");
      throw new Error("first failed");
    });
    await isHeld;
    const second = withFileLock(lock, () => {
      events.push("second in");
      return Promise.resolve(2);
    });
    // The second waits on the lock (flock in a blocking thread) while the first holds it.
    await new Promise((r) => setTimeout(r, 100));
    deepEqual(events, ["first in"]);
    release();
    await rejects(first, /first failed/);
    equal(await second, 2);
    deepEqual(events, ["first in", "first out", "second in"]);
    equal((await Deno.stat(lock)).size, 0, "the lock file stays, empty");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("withFileLock onWait: called once when another holder keeps the lock, never when it is free", async () => {
  const dir = await Deno.makeTempDir();
  const lock = join(dir, "y.lock");
  try {
    let waits = 0;
    const onWait = () => void waits++;
    equal(await withFileLock(lock, () => Promise.resolve(1), { onWait }), 1);
    await new Promise((r) => setTimeout(r, LOCK_WAIT_NOTICE_MS + 100));
    equal(waits, 0, "free: no notice, and none after");
    const held = signal();
    const inFirst = signal();
    const first = withFileLock(lock, async () => {
      inFirst.fire();
      await held.promise;
    });
    await inFirst.promise;
    const second = withFileLock(lock, () => Promise.resolve(2), { onWait });
    await new Promise((r) => setTimeout(r, LOCK_WAIT_NOTICE_MS + 300));
    equal(waits, 1, "told while it waits");
    held.fire();
    await first;
    equal(await second, 2);
    equal(waits, 1, "once");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A promise and the function that settles it. */
function signal(): { promise: Promise<void>; fire: () => void } {
  let fire!: () => void;
  const promise = new Promise<void>((r) => (fire = r));
  return { promise, fire };
}

/**
 * Read-modify-write of the number in `counter`, with a pause between read and write in which an
 * unserialised second writer would read the same number (a lost update).
 */
async function increment(counter: string): Promise<void> {
  const n = Number(await Deno.readTextFile(counter));
  await new Promise((r) => setTimeout(r, 2));
  await Deno.writeTextFile(counter, String(n + 1));
}

const NO_INODE_REMOVAL = Deno.build.os === "windows";

Deno.test({
  name: "withFileLock remove: holders take turns, no update is lost, the lock file is gone after",
  ignore: NO_INODE_REMOVAL,
  async fn() {
    const dir = await Deno.makeTempDir();
    const lock = join(dir, "locks", "x.lock");
    const counter = join(dir, "counter");
    try {
      await Deno.writeTextFile(counter, "0");
      let inside = 0;
      let most = 0;
      const results = await Promise.all(
        Array.from({ length: 8 }, (_, i) =>
          withFileLock(lock, async () => {
            most = Math.max(most, ++inside);
            await increment(counter);
            inside--;
            if (i === 3) throw new Error("holder 3 failed");
            return i;
          }, { remove: true }).catch((e: Error) => e.message)),
      );
      deepEqual(results, [0, 1, 2, "holder 3 failed", 4, 5, 6, 7]);
      equal(most, 1, "one holder at a time");
      equal(await Deno.readTextFile(counter), "8", "no update lost");
      equal(await entryExists(lock), false, "the last holder removed the lock file");
      deepEqual([...Deno.readDirSync(join(dir, "locks"))], []);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "withFileLock remove: a waiter whose file its holder removed, while another holds the new file, locks again and waits (told it waits once)",
  ignore: NO_INODE_REMOVAL,
  async fn() {
    const dir = await Deno.makeTempDir();
    const lock = join(dir, "x.lock");
    try {
      const events: string[] = [];
      let bWaits = 0;
      const [hIn, hGo, cIn, cGo] = [signal(), signal(), signal(), signal()];
      const [bOpened, bGo, bRetried, bIn] = [signal(), signal(), signal(), signal()];
      // Each lock() on the lock file, in order: the holder H, the waiter B (held back until bGo
      // once it has its handle of H's file), the next holder C, then B's retries.
      const locked: number[] = [];
      await withOpenedFiles((file, path) => {
        if (path !== lock) return file;
        const lockFn = file.lock.bind(file);
        file.lock = async (exclusive?: boolean) => {
          const n = locked.push(file.statSync().ino!) - 1;
          if (n === 1) {
            bOpened.fire();
            await bGo.promise;
          }
          if (n === 3) bRetried.fire();
          return await lockFn(exclusive);
        };
        return file;
      }, async () => {
        const holder = (name: string, entered: () => void, go: Promise<void>) =>
          withFileLock(lock, async () => {
            events.push(`${name} in`);
            entered();
            await go;
            events.push(`${name} out`);
          }, { remove: true, ...(name === "B" ? { onWait: () => void bWaits++ } : {}) });
        const h = holder("H", hIn.fire, hGo.promise);
        await hIn.promise;
        const b = holder("B", bIn.fire, Promise.resolve());
        await bOpened.promise; // B holds a handle of H's file and is about to lock it
        await new Promise((r) => setTimeout(r, LOCK_WAIT_NOTICE_MS + 200));
        equal(bWaits, 1, "B, waiting for H, is told");
        hGo.fire();
        await h;
        equal(await entryExists(lock), false, "H removed its lock file");
        const c = holder("C", cIn.fire, cGo.promise);
        await cIn.promise; // C holds a new file under the name
        bGo.fire(); // B now gets the lock of H's removed file at once
        const first = await Promise.race([
          bRetried.promise.then(() => "locked again"),
          bIn.promise.then(() => "entered beside C"),
        ]);
        equal(first, "locked again");
        deepEqual(events, ["H in", "H out", "C in"]);
        await new Promise((r) => setTimeout(r, LOCK_WAIT_NOTICE_MS + 200));
        equal(bWaits, 1, "B, waiting again (for C), is not told twice");
        cGo.fire();
        await Promise.all([b, c]);
        deepEqual(events, ["H in", "H out", "C in", "C out", "B in", "B out"]);
      });
      // H's file (H, then B), C's file (C, then B's retry; another inode, as B held H's file open
      // when C made it), then the file B made after C removed its (its inode may be reused).
      equal(locked.length, 5);
      deepEqual([locked[0] === locked[1], locked[1] === locked[2], locked[2] === locked[3]], [
        true,
        false,
        true,
      ]);
      equal(await entryExists(lock), false, "B removed its lock file too");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "withFileLock remove: holders in two processes take turns; no update lost; no file left",
  ignore: NO_INODE_REMOVAL,
  async fn() {
    const dir = await Deno.makeTempDir();
    const lock = join(dir, "locks", "x.lock");
    const counter = join(dir, "counter");
    const script = join(dir, "worker.ts");
    const fsUrl = new URL("./fs.ts", import.meta.url).href;
    try {
      await Deno.writeTextFile(counter, "0");
      await Deno.writeTextFile(
        script,
        `import { withFileLock } from ${JSON.stringify(fsUrl)};
const [lock, counter] = Deno.args;
for (let i = 0; i < 25; i++) {
  await withFileLock(lock, async () => {
    const n = Number(await Deno.readTextFile(counter));
    await new Promise((r) => setTimeout(r, 1));
    await Deno.writeTextFile(counter, String(n + 1));
  }, { remove: true });
}
`,
      );
      const run = () =>
        new Deno.Command(Deno.execPath(), {
          args: ["run", "--no-config", "--no-check", "--allow-read", "--allow-write", script]
            .concat([lock, counter]),
          cwd: dir,
          stdout: "null",
          stderr: "piped",
        }).output();
      const outs = await Promise.all([run(), run()]);
      for (const o of outs) equal(o.code, 0, new TextDecoder().decode(o.stderr));
      equal(await Deno.readTextFile(counter), "50", "no update lost");
      equal(await entryExists(lock), false, "no lock file left");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("withFileLock remove: only an empty file named *.lock is removed; else an error before fn, the file kept", async () => {
  const dir = await Deno.makeTempDir();
  try {
    let ran = 0;
    const fn = () => Promise.resolve(++ran);
    const data = join(dir, "manifest.json");
    await Deno.writeTextFile(data, "{}");
    await rejects(
      withFileLock(data, fn, { remove: true }),
      /manifest\.json: only a dedicated lock file, named \*\.lock, is removed after use/,
    );
    const full = join(dir, "full.lock");
    await Deno.writeTextFile(full, "pid 12");
    if (!NO_INODE_REMOVAL) {
      await rejects(
        withFileLock(full, fn, { remove: true }),
        /full\.lock: the lock file is not empty \(6 bytes\), so it may hold data and is not removed/,
      );
    }
    equal(ran, 0, "fn did not run");
    equal(await Deno.readTextFile(data), "{}");
    equal(await Deno.readTextFile(full), "pid 12");
    // Without the option, a non-empty file still serves as a lock and stays.
    equal(await withFileLock(full, fn), 1);
    equal(await Deno.readTextFile(full), "pid 12");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fileChange: size, modification time, inode and device; the status-change time when nothing else differs", () => {
  const was: FileIdentity = { size: 10, mtime: 1000, ctime: 1000, ino: 7, dev: 1 };
  equal(fileChange(was, { ...was }), undefined);
  equal(
    fileChange(was, { ...was, size: 12, mtime: 2000, ctime: 2000 }),
    "size 10 → 12 bytes, modification time 1970-01-01T00:00:01.000Z → 1970-01-01T00:00:02.000Z",
  );
  equal(fileChange(was, { ...was, ino: 8 }), "inode 7 → 8");
  equal(fileChange(was, { ...was, dev: 2 }), "device 1 → 2");
  // A write that put the modification time back (cp -p) still moved the status-change time.
  equal(
    fileChange(was, { ...was, ctime: 3000 }),
    "status-change time 1970-01-01T00:00:01.000Z → 1970-01-01T00:00:03.000Z",
  );
  // A platform without times or inodes compares what it has.
  const bare: FileIdentity = { size: 10, mtime: null, ctime: null, ino: null, dev: 0 };
  equal(fileChange(bare, { ...bare }), undefined);
  equal(fileChange(bare, { ...bare, size: 9 }), "size 10 → 9 bytes");
});
