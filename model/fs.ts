/**
 * Small file-system helpers shared by the model, task and benchmark code: existence checks,
 * atomic writes (a temporary file in the same folder, then a rename, so a reader never sees a
 * half-written file and a crash leaves the previous version in place; then a flush of the folder,
 * {@link syncDir}, so the rename survives a power cut), the clean-up of the
 * temporaries a hard kill (SIGKILL, power cut) leaves behind, file locks ({@link withFileLock}),
 * and a file's identity across several reads of it ({@link fileIdentity}, {@link checkUnchanged}).
 *
 * A failed write, flush, rename or folder creation of these helpers throws an error that names the
 * file and what was being done, of the original error's class and with it as the cause
 * ({@link fsError}): `<path>: writing failed: No space left on device (os error 28)`.
 *
 * Every writer of the suite names its temporaries `<stem>.tmp-<pid>-<12 hex>` ({@link tempTag})
 * and holds an exclusive lock on the temporary (`flock`, {@link Deno.FsFile.lock}) from just after
 * creating it until it is renamed into place or removed. The kernel drops the lock when the
 * process ends, however it ends, so a temporary nobody holds locked is provably abandoned:
 * {@link removeStaleTemps} removes exactly those. This works without reading `/proc` (which Deno
 * refuses without `--allow-all`), across containers of one host, and across hosts where the
 * file system carries locks (NFS with its lock manager; not NFS mounted `nolock`).
 *
 * @module
 */
import { basename, dirname, join } from "node:path";
import { UsageError } from "./usage.ts";

/** Marks an error {@link fsError} gave a path, so that an outer helper does not name it twice. */
const NAMED = Symbol("model/fs.ts: path named");

/**
 * The error `e` of a file-system operation on `path`, with a message that names the file and what
 * was being done: `<path>: <doing> failed: <e's message>` (e.g. `/out/runs/x.json: writing failed:
 * No space left on device (os error 28)`; the operating system's own message does not name the file
 * for a write or a flush). It is a new instance of `e`'s own class, so a caller's
 * `instanceof Deno.errors.NotFound` (or any other class) still holds, with `e`'s `code` (`ENOSPC`,
 * `EACCES`, …) and `e` itself as its `cause`. An error already named so (by an inner helper) and
 * anything that is not an `Error` are returned as they are. An error whose class is not built
 * from a message alone (`DOMException`, a class with other parameters) becomes a plain `Error`
 * with the message, `e`'s name, code and cause. {@link isLocalFileError} tells these errors apart.
 *
 * @param e what the operation threw
 * @param path the file or folder it was about (the target, not a temporary, where there is one)
 * @param doing what was being done, e.g. `writing`, `creating the folder`
 * @returns the error to throw
 * @example
 * ```ts
 * import { fsError } from "./fs.ts";
 * const e = fsError(new Deno.errors.NotFound("No such file"), "/x/y.json", "reading");
 * console.assert(e instanceof Deno.errors.NotFound);
 * console.assert((e as Error).message === "/x/y.json: reading failed: No such file");
 * ```
 */
export function fsError(e: unknown, path: string, doing: string): unknown {
  if (!(e instanceof Error) || isLocalFileError(e)) return e;
  const message = `${path}: ${doing} failed: ${e.message}`;
  let out: Error | undefined;
  try {
    const made: unknown = Reflect.construct(e.constructor, [message, { cause: e }]);
    if (made instanceof Error && made.message === message && made.name === e.name) out = made;
  } catch { /* a class that is not built from a message */ }
  if (out === undefined) {
    out = new Error(message, { cause: e });
    out.name = e.name;
  }
  if (out.cause !== e) out.cause = e;
  const code = (e as { code?: unknown }).code;
  if (code !== undefined) (out as { code?: unknown }).code = code;
  Object.defineProperty(out, NAMED, { value: true });
  return out;
}

/**
 * Whether `e` is an error of a local file operation named by {@link fsError} (a full disk, a
 * refused permission, an I/O error on a file of this machine): the download code gives these up at
 * once instead of retrying them as network errors.
 *
 * @param e anything thrown
 * @returns true for an error {@link fsError} made
 */
export function isLocalFileError(e: unknown): boolean {
  return e instanceof Error && Object.hasOwn(e, NAMED);
}

/** Whether `stat(path)` finds something; other errors than "not found" are rethrown. */
async function found(path: string, stat: (p: string) => Promise<unknown>): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/**
 * Whether a folder entry named `path` exists, a dangling link included (`lstat`); other errors
 * than "not found" are rethrown.
 */
export function entryExists(path: string): Promise<boolean> {
  return found(path, Deno.lstat);
}

/** Whether `path` exists (any kind, links followed); other errors than "not found" are rethrown. */
export function pathExists(path: string): Promise<boolean> {
  return found(path, Deno.stat);
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
export function isDirectorySync(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
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

/**
 * Writes all of `data` to `file` (one `write` may take fewer bytes than given).
 *
 * @param file an open file
 * @param data the bytes
 */
export async function writeAll(file: Deno.FsFile, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.byteLength) off += await file.write(data.subarray(off));
}

/**
 * Whether temporaries are locked. Windows locks are mandatory (a locked file cannot be renamed),
 * so there none are taken and {@link removeStaleTemps} judges every temporary by age.
 */
const LOCKS = Deno.build.os !== "windows";

/**
 * The owner part of a temporary's name, `<pid>-<12 hex>`: this process's id and a random part.
 * Writers name temporaries `<stem>.tmp-<tag>` and hold them locked ({@link HeldTemp}); the pid
 * lets {@link removeStaleTemps} leave this process's own temporaries alone without asking the
 * lock (on NFS, the locks of one process do not exclude each other).
 */
export function tempTag(): string {
  return `${Deno.pid}-${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
}

/** Regular-expression source matching a {@link tempTag}; the pid is captured as group `pid`. */
export const TEMP_TAG_SOURCE = String.raw`(?<pid>\d+)-[0-9a-f]{12}`;

/** A folder {@link discardFolder} is removing: `.<name>.del-<tag>` (garbage, whoever made it). */
export const DISCARDED_FOLDER = new RegExp(String.raw`^\..+\.del-${TEMP_TAG_SOURCE}$`);

/**
 * The names of the folders {@link discardFolder} leaves while it removes a folder:
 * `.<name>.del-<tag>` for one `name` (matched literally), or for any name
 * ({@link DISCARDED_FOLDER}).
 *
 * @param name the name part (as `discardFolder`'s `name`); omitted: any
 * @returns the anchored pattern
 * @example
 * ```ts
 * import { discardedFolderPattern } from "./fs.ts";
 * const re = discardedFolderPattern("model.v1");
 * console.assert(re.test(".model.v1.del-12-0123456789ab"));
 * console.assert(!re.test(".modelXv1.del-12-0123456789ab"));
 * ```
 */
export function discardedFolderPattern(name?: string): RegExp {
  return name === undefined
    ? DISCARDED_FOLDER
    : new RegExp(String.raw`^\.${RegExp.escape(name)}\.del-${TEMP_TAG_SOURCE}$`);
}

/**
 * Finishes the removals a kill cut short: removes the folders of `parent` named as
 * {@link discardFolder} names a folder it is removing ({@link discardedFolderPattern}), of `name`
 * only or of any name. Such a folder is garbage whoever made it (no reader loads it, no sweep
 * restores it), so a removal in progress in another process may be finished here too; that one
 * tolerates it. Housekeeping: a folder it cannot remove stays, a `parent` that is missing,
 * unreadable or not both readable and writable without asking ({@link maySweep}) is left alone.
 *
 * @param parent the folder swept
 * @param name only `.<name>.del-<tag>` (default: any name)
 * @returns the names removed
 */
export async function removeDiscardedFolders(parent: string, name?: string): Promise<string[]> {
  const done: string[] = [];
  if (!maySweep(parent)) return done;
  const re = discardedFolderPattern(name);
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(parent)];
  } catch {
    return done; // missing or unreadable: nothing to finish
  }
  for (const e of entries) {
    if (!e.isDirectory || !re.test(e.name)) continue;
    try {
      await Deno.remove(join(parent, e.name), { recursive: true });
      done.push(e.name);
    } catch { /* gone meanwhile, or cannot be removed */ }
  }
  return done;
}

/**
 * Removes the folder `dir` by renaming it to `.<name>.del-<tag>` beside it first
 * ({@link DISCARDED_FOLDER}), then deleting that: a kill part-way through the delete leaves a
 * partial folder only under a name that no reader loads and no sweep restores. Each call first
 * finishes what earlier calls for the same `name` in the same parent left so
 * ({@link removeDiscardedFolders}), whether or not `dir` exists, so a caller needs no sweep of its
 * own for the names it discards. A `dir` that is already gone is not an error, nor is another
 * process's sweep removing the renamed folder at the same time.
 *
 * @param dir the folder to remove
 * @param name the name part of the discarded name (default: `dir`'s own name)
 * @throws Error (naming the folder and the step) when `dir` cannot be renamed or the renamed
 *   folder cannot be removed
 */
export async function discardFolder(dir: string, name = basename(dir)): Promise<void> {
  await removeDiscardedFolders(dirname(dir), name);
  const trash = join(dirname(dir), `.${name}.del-${tempTag()}`);
  try {
    await Deno.rename(dir, trash);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return; // a sweep finished it already
    throw fsError(e, dir, `moving the folder aside to ${basename(trash)} to remove it`);
  }
  // A sweep removing the same folder at once can fail this removal part-way (an entry gone
  // under it): once more, and only what is still there counts.
  for (let attempt = 0;; attempt++) {
    try {
      await Deno.remove(trash, { recursive: true });
      return;
    } catch (e) {
      if (e instanceof Deno.errors.NotFound || !(await entryExists(trash))) return;
      if (attempt > 0) throw fsError(e, trash, "removing the folder");
    }
  }
}

/** The tag of a temporary named `….tmp-<tag>` ({@link tempTag}). */
export function tempTagOf(path: string): string {
  return path.slice(path.lastIndexOf(".tmp-") + ".tmp-".length);
}

/** Where {@link swapFolderInto} calls its hook (tests of a kill there). */
export type FolderSwapPoint = "aside" | "swapped";

/**
 * Puts the folder built in the temporary `tmp` (`<parent>/.<name>.tmp-<tag>`) in place as `dir`
 * so that `dir`'s name holds a complete folder at every instant: an existing `dir` is renamed
 * aside to `.<name>.old-<tag>` first (a kill there leaves it for {@link recoverAsideFolders} to
 * rename back), `tmp` renamed in, the parent flushed so that the new name survives a power cut,
 * and the old folder removed with {@link discardFolder}. If renaming `tmp` in fails, the old one
 * is put back and the error rethrown.
 *
 * @param tmp the built folder (a held temporary beside `dir`)
 * @param dir where it goes
 * @param onSwap called after the old folder is moved aside ("aside", only when there was one)
 *   and after the new one is in place ("swapped")
 * @throws Error when `dir` exists and is not a folder
 */
export async function swapFolderInto(
  tmp: string,
  dir: string,
  onSwap?: (point: FolderSwapPoint) => void | Promise<void>,
): Promise<void> {
  let old: string | undefined;
  let st: Deno.FileInfo | undefined;
  try {
    st = await Deno.stat(dir);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw fsError(e, dir, "examining the folder");
  }
  if (st !== undefined) {
    if (!st.isDirectory) throw new Error(`${dir}: exists and is not a directory`);
    const aside = join(dirname(dir), `.${basename(dir)}.old-${tempTagOf(tmp)}`);
    try {
      await Deno.rename(dir, aside);
      old = aside;
    } catch (e) {
      // Gone meanwhile: nothing to move aside.
      if (!(e instanceof Deno.errors.NotFound)) {
        throw fsError(e, dir, `moving the old folder aside to ${basename(aside)}`);
      }
    }
  }
  try {
    if (old) await onSwap?.("aside");
    try {
      await Deno.rename(tmp, dir);
    } catch (e) {
      throw fsError(e, dir, `renaming the new folder ${basename(tmp)} into place`);
    }
  } catch (e) {
    if (old) await Deno.rename(old, dir).catch(() => {});
    throw e;
  }
  await syncDir(dirname(dir));
  await onSwap?.("swapped");
  // A sweep of another process may have removed it already (recoverAsideFolders).
  if (old) await discardFolder(old, basename(dir));
}

/** Options of {@link recoverAsideFolders}. */
export interface RecoverAsideOptions {
  /**
   * Tags of this process's own saves in progress: their moved-aside folders are left alone
   * without asking the lock (which on NFS does not exclude another handle of this process).
   */
  readonly liveTags?: ReadonlySet<string>;
  /** Age after which an aside folder of an earlier version (a tag without pid) counts. */
  readonly legacyMaxAgeMs?: number;
  /** The clock (tests). */
  readonly now?: number;
}

/**
 * The second half of a sweep of a folder whose writers replace a folder `<name>` by renaming it
 * aside to `.<name>.old-<tag>` (the tag of the writer's held temporary `.<name>.tmp-<tag>`),
 * renaming the new one in and then removing the old one with {@link discardFolder}. For each
 * entry of `parent`:
 * - a folder whose removal was killed part-way ({@link DISCARDED_FOLDER}) is removed, before
 *   anything else ({@link removeDiscardedFolders});
 * - an aside folder (`aside` matches, groups `name` and `tag`; `pid` when the tag is a
 *   {@link tempTag}) whose writer is not running (its temporary is gone or nobody holds it
 *   locked: the lock decides, not the pid, so a process restarted under the same pid recovers
 *   too; a tag without pid, of an earlier version that did not lock, counts once its folder is
 *   unchanged for `legacyMaxAgeMs` and its temporary is gone) is renamed back when `<name>` is
 *   missing (the writer died between its two renames; the folder is then flushed), else
 *   discarded; the dead writer's temporary goes with it.
 * Housekeeping: an entry it cannot fix stays as it is.
 *
 * @param parent the folder swept
 * @param aside the writer's aside names, anchored
 * @param opts own saves in progress, the legacy age, the clock
 * @returns the names removed or renamed back
 */
export async function recoverAsideFolders(
  parent: string,
  aside: RegExp,
  opts: RecoverAsideOptions = {},
): Promise<string[]> {
  if (!maySweep(parent)) return [];
  // First, so that the discardFolder calls below find none of them (they would not be listed).
  const done = await removeDiscardedFolders(parent);
  let names: string[];
  try {
    names = [...Deno.readDirSync(parent)].map((e) => e.name);
  } catch {
    return done; // missing or unreadable: nothing to recover
  }
  for (const entry of names) {
    const path = join(parent, entry);
    try {
      const info = await Deno.lstat(path);
      if (!info.isDirectory) continue;
      const m = aside.exec(entry);
      if (!m?.groups || opts.liveTags?.has(m.groups.tag!)) continue;
      const { name, tag, pid } = m.groups as { name: string; tag: string; pid?: string };
      const tmp = join(parent, `.${name}.tmp-${tag}`);
      if (pid === undefined) {
        if (await entryExists(tmp)) continue;
        const age = changedAgoMs(info, opts.now);
        if (age === undefined || !(age > (opts.legacyMaxAgeMs ?? LEGACY_TEMP_MAX_AGE_MS))) continue;
      } else if (isTempInUse(tmp)) continue; // its writer is running
      const target = join(parent, name);
      let restored = false;
      if (!(await entryExists(target))) {
        try {
          await Deno.rename(path, target);
          restored = true;
        } catch { /* another sweep or writer got there first: discard it instead */ }
      }
      if (!restored) await discardFolder(path, name);
      done.push(entry);
      if (restored) await syncDir(parent); // the restored name survives a power cut
      if (await entryExists(tmp)) {
        await Deno.remove(tmp, { recursive: true });
        done.push(basename(tmp));
      }
    } catch { /* gone meanwhile, or cannot be fixed */ }
  }
  return done;
}

/**
 * A temporary file or folder this process created and holds locked, so that no
 * {@link removeStaleTemps} of another process removes it while it is in use.
 */
export interface HeldTemp {
  /** Its path. */
  readonly path: string;
  /**
   * Drops the lock (closes the handle that holds it); safe to call twice. Call it once the
   * temporary is renamed into place or removed: until then other processes' sweeps keep off.
   */
  release(): void;
}

function holdHandle(path: string, file: Deno.FsFile): HeldTemp {
  let open = true;
  return {
    path,
    release() {
      if (open) file.close();
      open = false;
    },
  };
}

/**
 * Locks `file`, the handle of the temporary `path` just created. A sweep removes a temporary
 * only while it holds the temporary's lock, so once this process holds it, a temporary still
 * found at `path` is ours for good; one that is gone was swept in the instant between creating
 * and locking it. Returns false then, having closed `file` (the caller retries under a new
 * name); on an error `file` is closed, the temporary removed and the error rethrown.
 */
function lockNew(path: string, file: Deno.FsFile): boolean {
  try {
    if (!LOCKS) return true;
    file.lockSync(true);
    const mine = file.statSync();
    let there: Deno.FileInfo | undefined;
    try {
      there = Deno.lstatSync(path);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    if (there !== undefined && there.ino === mine.ino && there.dev === mine.dev) return true;
    file.close();
    return false;
  } catch (e) {
    file.close();
    removeQuietly(path);
    throw fsError(e, path, "locking the new temporary");
  }
}

function removeQuietly(path: string): void {
  try {
    Deno.removeSync(path, { recursive: true });
  } catch { /* already gone */ }
}

/** Opens the folder `path` just created and locks it (see {@link lockNew}). */
function holdNewDir(path: string): HeldTemp | undefined {
  if (!LOCKS) return { path, release() {} };
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { read: true });
  } catch (e) {
    removeQuietly(path);
    throw fsError(e, path, "opening the new temporary folder to lock it");
  }
  return lockNew(path, file) ? holdHandle(path, file) : undefined;
}

/** Tries of {@link lockNew} before giving up (each lost one was swept in a microsecond window). */
const CREATE_TRIES = 3;

function lostError(path: string): Error {
  return new Error(`${path}: temporary removed by another process before it could be locked`);
}

/**
 * Creates the folder `<dir>/<stem>.tmp-<pid>-<12 hex>` ({@link tempTag}) and locks it. Build in
 * it, rename it into place (or remove it), then {@link HeldTemp.release}. `dir` must exist.
 *
 * @param dir the folder to create it in
 * @param stem the start of its name (may be empty)
 * @returns the held folder
 */
export function makeHeldTempDirSync(dir: string, stem: string): HeldTemp {
  for (let i = 1;; i++) {
    const path = join(dir, `${stem}.tmp-${tempTag()}`);
    try {
      Deno.mkdirSync(path);
    } catch (e) {
      throw fsError(e, path, "creating the temporary folder");
    }
    const held = holdNewDir(path);
    if (held !== undefined) return held;
    if (i === CREATE_TRIES) throw lostError(path);
  }
}

/**
 * Asynchronous {@link makeHeldTempDirSync}.
 *
 * @param dir the folder to create it in
 * @param stem the start of its name (may be empty)
 * @returns the held folder
 */
export async function makeHeldTempDir(dir: string, stem: string): Promise<HeldTemp> {
  for (let i = 1;; i++) {
    const path = join(dir, `${stem}.tmp-${tempTag()}`);
    try {
      await Deno.mkdir(path);
    } catch (e) {
      throw fsError(e, path, "creating the temporary folder");
    }
    const held = holdNewDir(path);
    if (held !== undefined) return held;
    if (i === CREATE_TRIES) throw lostError(path);
  }
}

/** Folders whose stale temporary files this process has swept already (once per folder). */
const sweptFolders = new Set<string>();

/**
 * Writes `data` to a new temporary file beside `path` (same folder, so that a rename onto `path`
 * is atomic), flushes it to disk and returns it, still locked. The name is
 * `<path>.tmp-<pid>-<12 hex>` ({@link tempTag}), so it never ends in the target's extension and
 * readers that list `*.json` or `*.csv` skip it. On failure (a stream that errors, a full disk, an
 * I/O error while flushing) the partial file is removed and the error is rethrown: a file-system
 * error named `<path>: <what was being done> failed: …` ({@link fsError}, same class), a stream's
 * own error as it is; `path` itself is never touched. When `path` exists, the temporary gets its permission bits (so a renamed-in
 * replacement keeps them). A file system that refuses the flush itself (`EINVAL`, `ENOTSUP`,
 * `EOPNOTSUPP`, as {@link syncFile} tolerates: on macOS every flush is `F_FULLFSYNC`, which SMB
 * and FUSE volumes refuse) does not fail the write.
 *
 * The first time a process writes into a folder, the stale temporary files there (left by a
 * process killed while writing, {@link FILE_TEMPS}) are removed first: one listing of the folder
 * per process, not one per write.
 *
 * @param path the file the temporary file will replace (its folder must exist)
 * @param data text (UTF-8), bytes, or a stream of bytes
 * @returns the temporary file, locked until {@link HeldTemp.release} (after renaming it)
 */
export async function writeTempBeside(path: string, data: AtomicData): Promise<HeldTemp> {
  const folder = dirname(path);
  if (!sweptFolders.has(folder)) {
    sweptFolders.add(folder);
    await removeStaleTemps(folder, FILE_TEMPS);
  }
  let tmp: string;
  let file: Deno.FsFile;
  for (let i = 1;; i++) {
    tmp = `${path}.tmp-${tempTag()}`;
    try {
      file = await Deno.open(tmp, { write: true, createNew: true });
    } catch (e) {
      throw fsError(e, path, `creating its temporary file ${basename(tmp)}`);
    }
    if (lockNew(tmp, file)) break;
    if (i === CREATE_TRIES) throw lostError(tmp);
  }
  // A failed write names the target (the operating system's message does not); an error of the
  // data stream itself (a serializer, a download) is its own and passes unchanged.
  const write = async (bytes: Uint8Array) => {
    try {
      await writeAll(file, bytes);
    } catch (e) {
      throw fsError(e, path, `writing (to its temporary file ${basename(tmp)})`);
    }
  };
  try {
    await keepMode(path, tmp);
    if (data instanceof ReadableStream) {
      for await (const chunk of data) await write(chunk);
    } else {
      await write(typeof data === "string" ? new TextEncoder().encode(data) : data);
    }
    try {
      await file.syncData();
    } catch (e) {
      // A file system that cannot flush (macOS: F_FULLFSYNC on SMB or FUSE volumes), as syncFile.
      rethrowUnlessRefusal(e, path, `flushing its temporary file ${basename(tmp)}`);
    }
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    file.close();
    throw e;
  }
  return holdHandle(tmp, file);
}

/**
 * Gives the new temporary `tmp` the permission bits of the file `path` it will replace, so that
 * replacing a file keeps who may read it (a file made private, 0600, stays private; one made
 * read-only stays so). Nothing where `path` does not exist yet (the new file gets the usual
 * 0666 less the umask) or on Windows; set-id and sticky bits are never copied.
 */
async function keepMode(path: string, tmp: string): Promise<void> {
  if (Deno.build.os === "windows") return;
  let mode: number | null;
  try {
    mode = (await Deno.stat(path)).mode;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    throw fsError(e, path, "reading its permission bits");
  }
  try {
    if (mode !== null) await Deno.chmod(tmp, mode & 0o777);
  } catch (e) {
    throw fsError(e, path, `giving its temporary file ${basename(tmp)} its permission bits`);
  }
}

/** Error codes with which a platform or file system refuses to open or flush a folder. */
const SYNC_DIR_REFUSALS = new Set(["EINVAL", "EISDIR", "ENOTSUP", "EOPNOTSUPP"]);

/** Options of {@link withFileLock}. */
export interface FileLockOptions {
  /**
   * Remove the lock file once `fn` is done (by its holder, before it lets go of the lock), so that
   * none is left behind. Only for a dedicated lock file: its name must end in `.lock`, and it must
   * be empty when locked (withFileLock creates it empty and never writes to it); otherwise an error
   * is thrown before `fn` runs and nothing is removed, so a data file given by mistake is never
   * deleted. On Windows, and where the platform gives no inode, the file is kept (a file removed
   * while another process holds it open stays "delete pending" on Windows, and opening its name
   * fails until every handle is closed).
   */
  remove?: boolean;
  /**
   * Called once when the lock is not had within {@link LOCK_WAIT_NOTICE_MS} (another holder):
   * the caller says what it waits for, rather than seeming to hang.
   */
  onWait?: () => void;
}

/** How long {@link withFileLock} waits for the lock before it calls `onWait`. */
export const LOCK_WAIT_NOTICE_MS = 500;

/**
 * Holds an exclusive lock (`flock`) on the file `path` (created empty, with its folder, when
 * absent) while `fn` runs: concurrent processes (and calls in this one) holding the same path take
 * turns. The kernel drops the lock when the process ends, however it ends. The lock file stays
 * unless `options.remove` is given ({@link FileLockOptions}); then its holder removes it before
 * letting go. A waiter may meanwhile hold an open handle of the removed file, and once it gets
 * that file's lock, the lock excludes no one (another process may already hold a new file under
 * the name); so after locking, every caller checks that the file it locked is still the one named
 * `path` (same device and inode) and otherwise opens and locks `path` afresh. This also covers a
 * lock file removed by hand while in use.
 * The hub download (`model/hub.ts`, removing its lock files) and the GLUE/SuperGLUE downloader
 * (`tasks/download.ts`, keeping them) use it.
 *
 * @param path the lock file
 * @param fn what to run while the lock is held
 * @param options whether to remove the lock file after use
 * @returns what `fn` gives
 * @throws Error when `options.remove` is given for a name that does not end in `.lock`, or for a
 *   file that is not empty
 * @example
 * ```ts
 * import { join } from "node:path";
 * import { withFileLock } from "./fs.ts";
 * const lock = join(Deno.makeTempDirSync(), "locks", "a.lock");
 * console.assert((await withFileLock(lock, () => Promise.resolve(1), { remove: true })) === 1);
 * ```
 */
export async function withFileLock<T>(
  path: string,
  fn: () => Promise<T>,
  options: FileLockOptions = {},
): Promise<T> {
  if (options.remove === true && !basename(path).endsWith(".lock")) {
    throw new Error(
      `withFileLock: ${path}: only a dedicated lock file, named *.lock, is removed after use`,
    );
  }
  // Windows: lock files are never removed, and no identity is compared (Deno's file index there
  // is not promised to be the same through a handle and through the name).
  const windows = Deno.build.os === "windows";
  const remove = options.remove === true;
  await mkdirFor(path, "creating the lock file's folder");
  let noticed = false;
  for (;;) {
    using f = await Deno.open(path, { read: true, write: true, create: true }).catch((e) => {
      throw fsError(e, path, "opening the lock file");
    });
    const notice = options.onWait === undefined || noticed ? undefined : setTimeout(() => {
      noticed = true;
      options.onWait?.();
    }, LOCK_WAIT_NOTICE_MS);
    try {
      await f.lock(true).catch((e) => {
        throw fsError(e, path, "locking the lock file");
      });
    } finally {
      clearTimeout(notice);
    }
    const held = await f.stat();
    // Without an inode to compare, a removed file could not be told apart: it is kept.
    if (windows || held.ino === null) return await fn();
    let named: Deno.FileInfo | undefined;
    try {
      named = await Deno.stat(path);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    // Removed (by its last holder) after this handle was opened: lock the file now named.
    if (named?.ino !== held.ino || named.dev !== held.dev) continue;
    if (!remove) return await fn();
    if (held.size !== 0) {
      throw new Error(
        `withFileLock: ${path}: the lock file is not empty (${held.size} bytes), so it may hold ` +
          "data and is not removed; delete it by hand if it is a leftover lock file",
      );
    }
    try {
      return await fn();
    } finally {
      // Still locked: whoever opened the file since waits on it, then finds it gone (above). A
      // failed removal leaves an empty lock file, as without the option.
      await Deno.remove(path).catch(() => {});
    }
  }
}

/**
 * Flushes the folder `dir` itself (its list of names) to disk, so that a rename or a new file in
 * it survives a power cut: on Linux, `rename()` is atomic but becomes durable only once the
 * folder holding the new name is flushed (`fsync` of the directory). Call it after renaming into
 * `dir`.
 *
 * Best effort, for what the platform does not allow, and only that:
 * - on Windows nothing is done (a folder cannot be opened as a file there; NTFS journals names);
 * - without Deno's read permission for `dir` nothing is done (opening it would prompt);
 * - a file system that refuses to open or flush a folder (`EINVAL`, `EISDIR`, `ENOTSUP`,
 *   `EOPNOTSUPP`: e.g. some FUSE and network file systems, procfs) is tolerated, as is a folder
 *   this process may not open for reading (`EACCES`, or Deno's `NotCapable`, which it gives for
 *   `/proc` and `/dev` without `--allow-all`).
 * Any other error (an I/O error while flushing, a missing folder) is rethrown.
 *
 * @param dir the folder a name was just renamed or created in
 * @example
 * ```ts
 * import { syncDir } from "./fs.ts";
 * await syncDir(Deno.makeTempDirSync()); // the folder's entries are on disk
 * ```
 */
export async function syncDir(dir: string): Promise<void> {
  const file = openFolderToFlush(dir);
  if (file === undefined) return;
  try {
    await file.sync();
  } catch (e) {
    rethrowUnlessRefusal(e, dir, "flushing the folder");
  } finally {
    file.close();
  }
}

/**
 * Synchronous {@link syncDir}, for code that renames with `Deno.renameSync`: the same flush, and
 * the same refusals tolerated.
 *
 * @param dir the folder a name was just renamed or created in
 */
export function syncDirSync(dir: string): void {
  const file = openFolderToFlush(dir);
  if (file === undefined) return;
  try {
    file.syncSync();
  } catch (e) {
    rethrowUnlessRefusal(e, dir, "flushing the folder");
  } finally {
    file.close();
  }
}

/**
 * Flushes the data of the file at `path` to disk (`fdatasync`), for a file another program wrote
 * (e.g. `spm_train`'s model) before it is renamed into a published folder: the rename is durable
 * once the folder is flushed ({@link syncDir}), and the file's bytes must be on disk first, or a
 * power cut could leave the new name on an empty file. A file system that refuses the flush
 * (`EINVAL`, `ENOTSUP`, `EOPNOTSUPP`) is tolerated; any other error (a missing file) is rethrown.
 *
 * @param path the file
 * @example
 * ```ts
 * import { syncFile } from "./fs.ts";
 * const path = Deno.makeTempFileSync();
 * Deno.writeTextFileSync(path, "x");
 * await syncFile(path); // its bytes are on disk
 * ```
 */
export async function syncFile(path: string): Promise<void> {
  using file = await Deno.open(path, { read: true }).catch((e) => {
    throw fsError(e, path, "opening the file to flush it");
  });
  try {
    await file.syncData();
  } catch (e) {
    rethrowUnlessRefusal(e, path, "flushing the file");
  }
}

/**
 * Opens the folder `dir` for {@link syncDir} or {@link syncDirSync}; `undefined` where nothing is
 * to be done (Windows, no read permission) or the opening was refused in a tolerated way.
 */
function openFolderToFlush(dir: string): Deno.FsFile | undefined {
  if (Deno.build.os === "windows" || !granted("read", dir)) return undefined;
  try {
    return Deno.openSync(dir, { read: true });
  } catch (e) {
    if (isOpenRefusal(e)) return undefined;
    throw fsError(e, dir, "opening the folder to flush it");
  }
}

/** Rethrows `e`, named ({@link fsError}), unless it is a refusal to flush that is tolerated. */
function rethrowUnlessRefusal(e: unknown, path: string, doing: string): void {
  if (!isRefusal(e)) throw fsError(e, path, doing);
}

/** Creates the folder of the file `path` (and its parents); a failure names `path`. */
async function mkdirFor(path: string, doing = "creating its folder"): Promise<void> {
  try {
    await Deno.mkdir(dirname(path), { recursive: true });
  } catch (e) {
    throw fsError(e, path, doing);
  }
}

/** Renames the temporary `tmp` onto `path`; a failure names `path`. */
async function renameInto(tmp: string, path: string): Promise<void> {
  try {
    await Deno.rename(tmp, path);
  } catch (e) {
    throw fsError(e, path, `renaming its temporary file ${basename(tmp)} into place`);
  }
}

/** Whether opening a folder for {@link syncDir} failed for a reason it tolerates. */
function isOpenRefusal(e: unknown): boolean {
  return isRefusal(e) || e instanceof Deno.errors.PermissionDenied ||
    e instanceof Deno.errors.NotCapable;
}

function isRefusal(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return e instanceof Deno.errors.IsADirectory ||
    (typeof code === "string" && SYNC_DIR_REFUSALS.has(code));
}

/**
 * Writes `data` to `path` atomically and durably, creating the folder: the data goes to a
 * temporary file beside the target ({@link writeTempBeside}, flushed), which is then renamed over
 * it, and the folder is flushed ({@link syncDir}) so the rename survives a power cut. A reader
 * sees the old file or the new one, never a part; on failure the temporary file is removed and
 * the old file is left as it was, and the error names `path` and the step that failed
 * ({@link fsError}: `<path>: writing failed: No space left on device (os error 28)`).
 *
 * @param path target file
 * @param data text, bytes or a stream of bytes
 */
export async function writeFileAtomic(path: string, data: AtomicData): Promise<void> {
  await mkdirFor(path);
  const tmp = await writeTempBeside(path, data);
  try {
    await renameInto(tmp.path, path);
  } catch (e) {
    await Deno.remove(tmp.path).catch(() => {});
    throw e;
  } finally {
    tmp.release();
  }
  await syncDir(dirname(path));
}

/**
 * Writes several files that belong together (a task's data files, a set of tables): every file
 * is first written to a temporary file beside its target, and only when all of them are written
 * are they renamed into place, in order. A failure while writing (a stream that errors, a full
 * disk) removes every temporary file and leaves all targets as they were; only a failing rename
 * (a target that became a folder meanwhile) can leave the earlier targets replaced and the later
 * ones old: a target that is a folder is refused before anything is written. Folders are
 * created as needed, and flushed once all renames are done ({@link syncDir}).
 *
 * @param files target path → contents
 * @throws Error `<path>: a folder is where this file goes; move it away (nothing written)`
 */
export async function writeFilesAtomic(
  files: Iterable<readonly [string, AtomicData]>,
): Promise<void> {
  const list = [...files];
  // A folder in a target's place would fail its rename after the earlier targets were replaced,
  // leaving a mixed set: refuse before anything is written.
  for (const [path] of list) {
    const info = await Deno.lstat(path).catch(() => undefined);
    if (info?.isDirectory) {
      throw new Error(`${path}: a folder is where this file goes; move it away (nothing written)`);
    }
  }
  const temps: [HeldTemp, string][] = [];
  const all: HeldTemp[] = [];
  try {
    for (const [path, data] of list) {
      await mkdirFor(path);
      const tmp = await writeTempBeside(path, data);
      all.push(tmp);
      temps.push([tmp, path]);
    }
    while (temps.length > 0) {
      const [tmp, path] = temps[0]!;
      await renameInto(tmp.path, path);
      temps.shift();
    }
  } catch (e) {
    for (const [tmp] of temps) await Deno.remove(tmp.path).catch(() => {});
    throw e;
  } finally {
    for (const tmp of all) tmp.release();
  }
  for (const folder of new Set(all.map((t) => dirname(t.path)))) await syncDir(folder);
}

/**
 * Checks, before anything is computed, that an output folder named on the command line can be
 * used: it is a folder, or it does not exist yet and its nearest existing ancestor is a folder
 * (so `mkdir -p` will make it). Nothing is created. The error names the flag and the path, so a
 * mistyped `--out` stops the command at once instead of after hours of work. The error is a
 * {@link UsageError}: every caller checks a path named on the command line (exit code 2).
 * A link on the way whose target is missing is named as such (`mkdir` would fail on it with
 * "File exists"). With `writable`, the folder (or its nearest existing ancestor) must also take
 * a new file: a probe file is created there and removed at once (a read-only disk, or a folder
 * the user may not write, is refused here rather than as each run's failure).
 *
 * @param flag the flag or variable that named the folder, e.g. `--out`
 * @param path the folder
 * @param opts `writable`: also check that a file can be created there (default false: a folder
 *   only read when it already holds everything, as a cache may be); `cannotWrite`: why a new
 *   file cannot be created in an existing folder, or undefined (default: a probe file; tests
 *   inject one, since root writes where the permission bits say no)
 * @throws UsageError `<flag> <path>: ...` saying which path is a file, a dangling link or not
 *   writable, or `<flag>: an empty path ...` for `""` (which would mean the current folder)
 * @example
 * ```ts
 * import { checkOutputFolder } from "./fs.ts";
 * checkOutputFolder("--out", Deno.makeTempDirSync()); // a folder: fine
 * ```
 */
export function checkOutputFolder(
  flag: string,
  path: string,
  opts: {
    readonly writable?: boolean;
    readonly cannotWrite?: (dir: string) => string | undefined;
  } = {},
): void {
  // `--out "$DIR"` with DIR unset: every output would land in the current folder.
  if (path === "") {
    throw new UsageError(`${flag}: an empty path (an unset variable?); name a folder`);
  }
  const where = (at: string) => (at === path ? "" : ` ${at}`);
  let at = path;
  for (;;) {
    let info: Deno.FileInfo | undefined;
    try {
      info = Deno.statSync(at);
    } catch (e) {
      // Below a file, stat says "not a directory": go up to the file and name it.
      if (!(e instanceof Deno.errors.NotFound) && !(e instanceof Deno.errors.NotADirectory)) {
        throw new UsageError(`${flag} ${path}: cannot use ${at}: ${(e as Error).message}`, {
          cause: e,
        });
      }
      // A link whose target is missing: stat follows it into nothing, mkdir fails on the link.
      const target = danglingLinkTarget(at);
      if (target !== undefined) {
        throw new UsageError(
          `${flag} ${path}:${where(at)} is a link to ${target}, which does not exist; create ` +
            "that folder or remove the link",
        );
      }
    }
    if (info !== undefined) {
      if (!info.isDirectory) {
        throw new UsageError(`${flag} ${path}:${where(at)} is a file, not a folder`);
      }
      if (opts.writable === true) {
        const problem = (opts.cannotWrite ?? cannotCreateIn)(at);
        if (problem !== undefined) {
          throw new UsageError(
            `${flag} ${path}:${
              at === path ? "" : ` its nearest existing folder ${at}`
            } cannot be written (${problem}); name a folder on a writable disk`,
          );
        }
      }
      return;
    }
    const up = dirname(at);
    if (up === at) return;
    at = up;
  }
}

/** The target of `path` when it is a symbolic link whose target is missing, else undefined. */
function danglingLinkTarget(path: string): string | undefined {
  try {
    if (!Deno.lstatSync(path).isSymlink) return undefined;
    return Deno.readLinkSync(path);
  } catch {
    return undefined;
  }
}

/**
 * Why a new file cannot be created in the folder `dir` (a probe file, created and removed at
 * once), or undefined when it can.
 */
function cannotCreateIn(dir: string): string | undefined {
  const probe = join(dir, `.hyperprompt-write-probe-${Deno.pid}-${crypto.randomUUID()}`);
  try {
    Deno.openSync(probe, { createNew: true, write: true }).close();
  } catch (e) {
    return (e as Error).message;
  }
  try {
    Deno.removeSync(probe);
  } catch {
    // Created but not removable: writable all the same; the file is left (its name says what).
  }
  return undefined;
}

/**
 * {@link checkOutputFolder} for an output file named on the command line: `path` is not a folder,
 * and its folder can be used (exists as a folder, or `mkdir -p` will make it). Nothing is
 * created.
 *
 * @param named what named the file, e.g. `--out` (messages read `<named> <path>: …`)
 * @param path the file
 * @param hint what to give instead of a folder, e.g. `give the report's file name`
 * @throws UsageError naming the flag when `path` is a folder or its folder cannot be made
 */
export function checkOutputFile(named: string, path: string, hint: string): void {
  // Absent (or below a file: the folder check names it) is not a folder.
  if (isDirectorySync(path)) throw new UsageError(`${named} ${path}: is a folder; ${hint}`);
  checkOutputFolder(`${named} ${path}: the folder`, dirname(path));
}

/** How one writer's temporaries are recognised, for {@link removeStaleTemps}. */
export interface TempPattern {
  /** What the writer creates: entries of the other kind, and symbolic links, are never touched. */
  readonly kind: "file" | "directory";
  /**
   * The names the writer gives its temporaries now, `<stem>.tmp-<pid>-<12 hex>`
   * ({@link TEMP_TAG_SOURCE}, group `pid`), each held locked while in use. Anchor it (`^…$`).
   */
  readonly held: RegExp;
  /**
   * The names earlier versions of the writer gave, which were not locked: these count as
   * abandoned only once unchanged for {@link StaleTempOptions.legacyMaxAgeMs}. Anchor it.
   */
  readonly legacy?: RegExp;
}

/** Options of {@link removeStaleTemps}. */
export interface StaleTempOptions {
  /**
   * A legacy-pattern temporary (never locked, so nothing proves its writer gone) is abandoned
   * once unchanged this long: no writer of this suite keeps a temporary a day without changing
   * it. Default {@link LEGACY_TEMP_MAX_AGE_MS} (24 hours; also the rule for all temporaries on
   * Windows, where none is locked).
   */
  readonly legacyMaxAgeMs?: number;
  /** The current time in ms since the epoch (tests); default `Date.now()`. */
  readonly now?: number;
}

/** Default of {@link StaleTempOptions.legacyMaxAgeMs}: 24 hours. */
export const LEGACY_TEMP_MAX_AGE_MS = 24 * 3600_000;

/**
 * The temporary files of {@link writeTempBeside}: `<target>.tmp-<pid>-<12 hex>`, held locked.
 * No legacy pattern: the unlocked names of earlier versions (`.tmp-<pid>-<counter>`,
 * `.<pid>.<8 hex>.tmp`, `.tmp-<pid>-<8 hex>`) were never written outside development clones,
 * and the counter form cannot be told from other files' names.
 */
export const FILE_TEMPS: TempPattern = {
  kind: "file",
  held: new RegExp(String.raw`^.+\.tmp-${TEMP_TAG_SOURCE}$`),
};

function granted(name: "read" | "write", path: string): boolean {
  try {
    return Deno.permissions.querySync({ name, path }).state === "granted";
  } catch {
    return false;
  }
}

/**
 * Whether this process may list and change `dir` without asking: sweeps check it first, since a
 * missing permission would otherwise prompt on a terminal.
 *
 * @param dir the folder
 */
export function maySweep(dir: string): boolean {
  return granted("read", dir) && granted("write", dir);
}

/**
 * How long ago `info`'s entry last changed: its content (mtime) or its name or links (ctime, set
 * by a rename); undefined when the file system gives neither time.
 *
 * @param info the entry's `Deno.lstat`
 * @param now the current time in ms since the epoch
 */
export function changedAgoMs(info: Deno.FileInfo, now: number = Date.now()): number | undefined {
  const times = [info.mtime, info.ctime].filter((t) => t !== null).map((t) => t.getTime());
  return times.length === 0 ? undefined : now - Math.max(...times);
}

/** Opens and locks `path` when nobody else holds it; undefined when it is held or unopenable. */
function claim(path: string): Deno.FsFile | undefined {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { read: true });
  } catch {
    return undefined;
  }
  let ok = false;
  try {
    ok = file.tryLockSync(true);
  } catch { /* not lockable: keep */ }
  if (!ok) file.close();
  return ok ? file : undefined;
}

/**
 * Whether the temporary `path` (a {@link HeldTemp}'s name) is in use: it exists and an open
 * handle holds its lock, so its writer is alive. This process's own held temporaries count as in
 * use too (on local file systems the locks of two handles exclude each other even in one process;
 * not on NFS). Unlike {@link removeStaleTemps} it does not trust the pid in the name, so a
 * temporary left by an earlier process that had this process's pid (a container restarted) is
 * found abandoned. Where no locks are taken (Windows) a temporary is in use until unchanged for
 * `legacyMaxAgeMs`. A temporary that cannot be opened or examined counts as in use.
 *
 * @param path the temporary
 * @param opts age limit and clock where no locks are taken
 * @returns false when `path` is missing or nobody holds it
 */
export function isTempInUse(path: string, opts: StaleTempOptions = {}): boolean {
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(path);
  } catch (e) {
    return !(e instanceof Deno.errors.NotFound);
  }
  if (info.isSymlink) return true; // not a temporary: never judged through its target
  if (!LOCKS) {
    const age = changedAgoMs(info, opts.now ?? Date.now());
    return age === undefined || !(age > (opts.legacyMaxAgeMs ?? LEGACY_TEMP_MAX_AGE_MS));
  }
  const file = claim(path);
  file?.close();
  return file === undefined;
}

/**
 * Yields the abandoned temporaries of one writer in `dir`, each (where locks are used) locked by
 * this process until the loop moves on, so that its removal cannot race its creator's lock.
 */
function* abandoned(
  dir: string,
  pattern: TempPattern,
  opts: StaleTempOptions,
): Generator<{ name: string; path: string }> {
  if (!maySweep(dir)) return;
  let names: string[];
  try {
    names = [...Deno.readDirSync(dir)].map((e) => e.name);
  } catch {
    return; // a folder that is missing or cannot be listed: nothing to clean
  }
  const now = opts.now ?? Date.now();
  for (const name of names) {
    const held = pattern.held.exec(name);
    if (held === null && !(pattern.legacy?.test(name) ?? false)) continue;
    const path = join(dir, name);
    let info: Deno.FileInfo;
    try {
      info = Deno.lstatSync(path);
    } catch {
      continue;
    }
    if (pattern.kind === "file" ? !info.isFile : !info.isDirectory) continue;
    if (held !== null && LOCKS) {
      if (held.groups?.pid === String(Deno.pid)) continue; // this process's: in use
      const file = claim(path);
      if (file === undefined) continue; // locked: its process is alive
      try {
        yield { name, path };
      } finally {
        file.close();
      }
    } else {
      const age = changedAgoMs(info, now);
      if (age !== undefined && age > (opts.legacyMaxAgeMs ?? LEGACY_TEMP_MAX_AGE_MS)) {
        yield { name, path };
      }
    }
  }
}

/**
 * Removes the temporaries a hard kill (SIGKILL, power cut) left in `dir` by one writer: entries
 * of `pattern.kind` whose name matches the writer's pattern and which are provably abandoned.
 * - Held pattern ({@link HeldTemp}): nobody holds it locked, so the process that created it has
 *   ended, however it ended; never one named with this process's pid.
 * - Legacy pattern (earlier, unlocked names): unchanged for `legacyMaxAgeMs` (default 24 h).
 *
 * A temporary of a live process (this one or a concurrent run), and anything whose name does not
 * match, is kept. Call it where the writer opens or writes its folder. Housekeeping never fails
 * the caller: a missing folder, one this process may not read and write, or an entry that cannot
 * be removed is skipped.
 *
 * @param dir the folder
 * @param pattern the writer's temporaries
 * @param opts legacy age, clock
 * @returns the names removed
 * @example
 * ```ts
 * import { FILE_TEMPS, removeStaleTemps } from "./fs.ts";
 * const removed = await removeStaleTemps(Deno.makeTempDirSync(), FILE_TEMPS);
 * console.log(removed); // []
 * ```
 */
export async function removeStaleTemps(
  dir: string,
  pattern: TempPattern,
  opts: StaleTempOptions = {},
): Promise<string[]> {
  const removed: string[] = [];
  for (const t of abandoned(dir, pattern, opts)) {
    try {
      await Deno.remove(t.path, { recursive: true });
      removed.push(t.name);
    } catch { /* another sweep got it first, or it cannot be removed */ }
  }
  return removed;
}

/**
 * Synchronous {@link removeStaleTemps}.
 *
 * @param dir the folder
 * @param pattern the writer's temporaries
 * @param opts legacy age, clock
 * @returns the names removed
 */
export function removeStaleTempsSync(
  dir: string,
  pattern: TempPattern,
  opts: StaleTempOptions = {},
): string[] {
  const removed: string[] = [];
  for (const t of abandoned(dir, pattern, opts)) {
    try {
      Deno.removeSync(t.path, { recursive: true });
      removed.push(t.name);
    } catch { /* another sweep got it first, or it cannot be removed */ }
  }
  return removed;
}

/**
 * One version of a file, from a stat: what {@link fileChange} compares to see that a file read in
 * several steps (a header, then its data) is still the one the first step read.
 */
export interface FileIdentity {
  /** Size in bytes. */
  readonly size: number;
  /** Modification time in ms (null where the platform gives none). */
  readonly mtime: number | null;
  /**
   * Status-change time in ms: moves also when a write puts the modification time back (cp -p);
   * Deno 2.9.6 gives it in whole seconds.
   */
  readonly ctime: number | null;
  /** Inode (null where the platform gives none, e.g. Windows): another file renamed over it. */
  readonly ino: number | null;
  /** Device of the inode. */
  readonly dev: number;
}

/**
 * The identity of the file `stat` describes.
 *
 * @param stat a stat of the open file
 * @returns its size, times, inode and device
 */
export function fileIdentity(stat: Deno.FileInfo): FileIdentity {
  return {
    size: stat.size,
    mtime: stat.mtime?.getTime() ?? null,
    ctime: stat.ctime?.getTime() ?? null,
    ino: stat.ino,
    dev: stat.dev,
  };
}

/**
 * How a file differs from an earlier identity of it, or undefined when it does not: a rewrite of
 * the same size is seen by its times (to the file system's timestamp granularity, a few ms at
 * worst), another file renamed over it by its inode.
 *
 * @param was the identity taken first
 * @param now the identity taken later
 * @returns e.g. `size 100 → 96 bytes, modification time 2026-01-01T00:00:00.000Z → …`
 */
export function fileChange(was: FileIdentity, now: FileIdentity): string | undefined {
  const time = (t: number | null) => (t === null ? "none" : new Date(t).toISOString());
  const diffs: string[] = [];
  if (was.size !== now.size) diffs.push(`size ${was.size} → ${now.size} bytes`);
  if (was.mtime !== now.mtime) {
    diffs.push(`modification time ${time(was.mtime)} → ${time(now.mtime)}`);
  }
  if (was.ino !== now.ino) diffs.push(`inode ${was.ino} → ${now.ino}`);
  if (was.dev !== now.dev) diffs.push(`device ${was.dev} → ${now.dev}`);
  // Reported only alone: with another difference it adds nothing.
  if (diffs.length === 0 && was.ctime !== now.ctime) {
    diffs.push(`status-change time ${time(was.ctime)} → ${time(now.ctime)}`);
  }
  return diffs.length === 0 ? undefined : diffs.join(", ");
}

/**
 * Refuses a file that changed between two steps of reading it.
 *
 * @param path the file, named by the error
 * @param was its identity at the first step
 * @param now its identity now
 * @param since the first step, e.g. `since its header was read`
 * @throws Error `<path>: changed while being read (<since>: <what changed>); rerun`
 */
export function checkUnchanged(
  path: string,
  was: FileIdentity,
  now: FileIdentity,
  since: string,
): void {
  const change = fileChange(was, now);
  if (change !== undefined) {
    throw new Error(`${path}: changed while being read (${since}: ${change}); rerun`);
  }
}
