/**
 * Run claims: the mechanism by which several processes running grids into one output folder
 * (`benchmarks/runner.ts` `runGrid`) train each run once. A process claims a run by creating its
 * claim file (`<out>/<stem>.lock`, `runner.ts` `runLockFile`) exclusively, with its
 * {@link RunClaimHolder} (host, pid, start, token); while it holds the claim it refreshes the
 * file's mtime as a heartbeat, and it removes the file when the run ends (or, synchronously, on
 * `Deno.exit`). A claim whose heartbeat is older than the stale window
 * ({@link runLockStaleMs}), or whose holder on this host is gone, is stale and is taken over;
 * a holder known to share this machine's boot and pid namespace ({@link RunClaimHolder.bootId},
 * {@link RunClaimHolder.pidNs}) is asked instead: alive, it holds the claim whatever its heartbeat.
 *
 * @module
 */
import { basename, dirname, join } from "node:path";
import process from "node:process";
import { changedAgoMs, TEMP_TAG_SOURCE, tempTag, writeAll } from "../model/fs.ts";
import { readEnv, readProc } from "../model/env.ts";

/** The environment variable that overrides the run-claim stale window, in seconds. */
export const RUN_LOCK_STALE_ENV = "HYPERPROMPT_RUN_LOCK_STALE_S";

/** How often a claim's holder refreshes its heartbeat (the claim file's mtime), by default. */
export const RUN_LOCK_HEARTBEAT_MS = 30_000;

/** How old a claim's heartbeat may get before the claim is stale, by default (3 minutes). */
export const RUN_LOCK_STALE_MS = 180_000;

/** How often a grid polls the runs another process trains, by default. */
export const RUN_LOCK_POLL_MS = 10_000;

/**
 * The stale window of run claims: `HYPERPROMPT_RUN_LOCK_STALE_S` seconds when set (a plain
 * decimal number of at least 60, two heartbeats: a shorter window would find live claims stale),
 * else {@link RUN_LOCK_STALE_MS}.
 *
 * @param value the variable's value (default: read from the environment)
 * @returns the window in ms
 * @throws Error naming the variable and its value when it is not such a number
 */
export function runLockStaleMs(value: string | undefined = readEnv(RUN_LOCK_STALE_ENV)): number {
  if (value === undefined || value === "") return RUN_LOCK_STALE_MS;
  const s = /^\d+(\.\d+)?$/.test(value) ? Number(value) : NaN;
  if (!(s >= (2 * RUN_LOCK_HEARTBEAT_MS) / 1000) || !Number.isFinite(s)) {
    throw new Error(
      `${RUN_LOCK_STALE_ENV}="${value}": expected the seconds after which a run claim whose ` +
        `heartbeat stopped is taken over, a plain number of at least ${
          (2 * RUN_LOCK_HEARTBEAT_MS) / 1000
        } (two heartbeats; default ${RUN_LOCK_STALE_MS / 1000})`,
    );
  }
  return s * 1000;
}

/** Timing of the run claims of {@link runGrid} (tests shorten them). */
export interface RunLockTiming {
  /** Heartbeat interval of a held claim (default {@link RUN_LOCK_HEARTBEAT_MS}). */
  readonly heartbeatMs?: number;
  /**
   * Age of a heartbeat past which a claim is stale (default `HYPERPROMPT_RUN_LOCK_STALE_S`, else
   * {@link RUN_LOCK_STALE_MS}).
   */
  readonly staleMs?: number;
  /**
   * Poll interval while waiting for runs another process trains (default
   * {@link RUN_LOCK_POLL_MS}).
   */
  readonly pollMs?: number;
}

/** Who holds a run's claim (the JSON in its claim file, `<out>/<stem>.lock`). */
export interface RunClaimHolder {
  /** Host name of the holder (`Deno.hostname()`). */
  readonly host: string;
  /** Process id of the holder on its host. */
  readonly pid: number;
  /** When it claimed the run (ISO 8601). */
  readonly started: string;
  /** A random token: the holder removes or refreshes the file only while it holds this token. */
  readonly token: string;
  /** The run id. */
  readonly run?: string;
  /**
   * This boot of the holder's machine (`/proc/sys/kernel/random/boot_id`), when readable: with
   * {@link RunClaimHolder.pidNs}, what tells that its pid means a process here (a container
   * shares the host name of another, or of the host, without sharing its pids).
   */
  readonly bootId?: string;
  /** The holder's pid namespace (`readlink /proc/self/ns/pid`, e.g. `pid:[4026531836]`). */
  readonly pidNs?: string;
  /**
   * The holder's start time (`/proc/<pid>/stat` field 22, clock ticks since boot), when
   * readable: a live pid with another start time is an unrelated process that reused the pid.
   */
  readonly pidStart?: string;
}

/** What places a process on this machine ({@link RunClaimHolder}'s optional fields). */
export interface MachineIdentity {
  readonly bootId?: string;
  readonly pidNs?: string;
}

let machine: MachineIdentity | undefined;
let ownStartTime: string | null | undefined;

/** This process's {@link processStart} (read once). */
function ownStart(): string | undefined {
  ownStartTime ??= processStart(Deno.pid) ?? null;
  return ownStartTime ?? undefined;
}

/**
 * This process's boot id and pid namespace, each when readable (Linux; read once).
 *
 * @returns the fields found (none off Linux)
 */
export function thisMachine(): MachineIdentity {
  if (machine === undefined) {
    const bootId = readProc("/proc/sys/kernel/random/boot_id")?.trim();
    const pidNs = readProc("/proc/self/ns/pid", true)?.trim();
    machine = { ...(bootId ? { bootId } : {}), ...(pidNs ? { pidNs } : {}) };
  }
  return machine;
}

/**
 * The start time of process `pid` as this machine reports it (`/proc/<pid>/stat` field 22, after
 * the command name, which may hold spaces and parentheses), or undefined when not readable.
 *
 * @param pid the process
 * @returns its start time in clock ticks since boot, as written there
 */
export function processStart(pid: number): string | undefined {
  const stat = readProc(`/proc/${pid}/stat`);
  if (stat === undefined) return undefined;
  // Fields 3 onwards follow the last ")": field 22 is the 20th of them.
  const rest = stat.slice(stat.lastIndexOf(")") + 1).trim().split(/\s+/);
  const start = rest[19];
  return start !== undefined && /^\d+$/.test(start) ? start : undefined;
}

/** A claim file being taken over: `.<stem>.lock.stale-<tag>` (garbage once its taker is done). */
const STALE_CLAIM = new RegExp(String.raw`^\..+\.lock\.stale-${TEMP_TAG_SOURCE}$`);

/**
 * The claims this process holds (any grid in it), token → claim file: a claim naming this host
 * and pid with another token is an earlier process's (a container restarted under one pid).
 */
const HELD = new Map<string, string>(); // token → claim file

let unloadListening = false;

/**
 * Removes this process's claim files on `Deno.exit` (a second Ctrl-C), synchronously, each only
 * while it still holds the holder's token.
 */
function releaseHeldSync(): void {
  for (const [token, path] of HELD) {
    try {
      const h = parseHolder(Deno.readTextFileSync(path));
      if (h?.token === token) Deno.removeSync(path);
    } catch {
      // gone or unreadable: nothing to release
    }
  }
  HELD.clear();
}

/** This host's name (`Deno.hostname()`), or "unknown-host" when it cannot be read. */
export function thisHost(): string {
  try {
    return Deno.hostname();
  } catch {
    return "unknown-host";
  }
}

function parseHolder(text: string): RunClaimHolder | undefined {
  try {
    const v = JSON.parse(text) as Partial<RunClaimHolder>;
    if (
      typeof v !== "object" || v === null || typeof v.host !== "string" ||
      typeof v.pid !== "number" || typeof v.token !== "string" || typeof v.started !== "string"
    ) return undefined;
    // An optional field of another type is as good as absent (a claim of other code).
    const { bootId, pidNs, pidStart, ...rest } = v as RunClaimHolder;
    return {
      ...rest,
      ...(typeof bootId === "string" ? { bootId } : {}),
      ...(typeof pidNs === "string" ? { pidNs } : {}),
      ...(typeof pidStart === "string" ? { pidStart } : {}),
    };
  } catch {
    return undefined; // being written (created, not yet filled), or not a claim
  }
}

/** A claim file as read: its holder (undefined while being written) and heartbeat time. */
interface ClaimSeen {
  readonly holder: RunClaimHolder | undefined;
  readonly heartbeat: number;
}

async function readClaim(path: string): Promise<ClaimSeen | undefined> {
  try {
    const info = await Deno.stat(path);
    const text = await Deno.readTextFile(path);
    return { holder: parseHolder(text), heartbeat: info.mtime?.getTime() ?? Date.now() };
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/** Whether process `pid` runs on this host (an error but "no such process" counts as yes). */
function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as { code?: unknown }).code !== "ESRCH";
  }
}

/**
 * Whether a holder is known to run on this machine: its host, boot id and pid namespace are
 * this process's (true); known not to (false: same host name, another boot or pid namespace, as
 * in a container); or unknown (undefined: a claim without those fields, or this process cannot
 * read its own).
 */
function onThisMachine(h: RunClaimHolder, host: string): boolean | undefined {
  if (h.host !== host) return false;
  const me = thisMachine();
  if (
    h.bootId === undefined || h.pidNs === undefined || me.bootId === undefined ||
    me.pidNs === undefined
  ) return undefined;
  return h.bootId === me.bootId && h.pidNs === me.pidNs;
}

/** Why a claim of this process's pid is stale, or undefined when this process holds it. */
function ownPidStaleness(h: RunClaimHolder): string | undefined {
  return HELD.has(h.token)
    ? undefined
    : `pid ${h.pid} is this process, which does not hold it (an earlier process with this pid)`;
}

/**
 * Why a claim is stale, or undefined when its holder is alive. A holder known to run on this
 * machine ({@link onThisMachine}) is asked directly: alive (and, when its start time is
 * recorded, started then: not a reuse of its pid), it holds the claim whatever its heartbeat's
 * age (its event loop may be blocked by a long synchronous step). Otherwise the heartbeat's age
 * decides, and, for a claim of this host name without the machine fields, the pid too.
 */
function staleness(seen: ClaimSeen, staleMs: number, host: string): string | undefined {
  const h = seen.holder;
  const here = h === undefined ? false : onThisMachine(h, host);
  if (h !== undefined && here === true) {
    if (h.pid === Deno.pid) return ownPidStaleness(h);
    if (!pidAlive(h.pid)) return `pid ${h.pid} is not running on this host`;
    const start = h.pidStart === undefined ? undefined : processStart(h.pid);
    if (start !== undefined && start !== h.pidStart) {
      return `pid ${h.pid} is another process now (started at tick ${start}, not ${h.pidStart})`;
    }
    return undefined;
  }
  const age = Date.now() - seen.heartbeat;
  if (age > staleMs) {
    return `its heartbeat is ${Math.round(age / 1000)} s old (stale after ${staleMs / 1000} s)`;
  }
  if (h === undefined || here === false) return undefined;
  if (h.pid === Deno.pid) return ownPidStaleness(h);
  return pidAlive(h.pid) ? undefined : `pid ${h.pid} is not running on this host`;
}

/**
 * Whether a run's claim file is held by a live process (not stale: {@link staleness}); false
 * when there is none.
 *
 * @param path the claim file (`runner.ts` `runLockFile`)
 * @param staleMs the stale window
 * @returns true while a live process holds it
 */
export async function claimIsLive(path: string, staleMs: number): Promise<boolean> {
  const seen = await readClaim(path);
  return seen !== undefined && staleness(seen, staleMs, thisHost()) === undefined;
}

/**
 * How a claim's holder is named in lines: `<host> pid <pid>`, or "another process" when unknown
 * (its claim file is still being written, or was already released).
 *
 * @param h the holder, if known
 * @returns the name
 */
export function holderName(h: RunClaimHolder | undefined): string {
  return h === undefined ? "another process" : `${h.host} pid ${h.pid}`;
}

/**
 * Whether a claim file still holds this process's claim ({@link HeldClaim.check}): `ours`, or
 * the holder that replaced it (undefined when the file is gone or still being written).
 */
export type ClaimCheck =
  | { readonly ours: true }
  | { readonly ours: false; readonly holder: RunClaimHolder | undefined };

/** A claim this process holds, with its heartbeat. */
export interface HeldClaim {
  /**
   * Whether the claim was found lost: its file held another token, or was gone, at a heartbeat
   * or a {@link HeldClaim.check} (another process took it over while this one was paused past
   * the stale window). Once lost, the heartbeat stops and {@link HeldClaim.release} leaves the
   * file alone.
   */
  readonly lost: boolean;
  /**
   * Re-reads the claim file now and compares its token with this claim's (an unreadable file
   * other than a missing one counts as still ours: a missed look, as a missed beat). A claim not
   * ours is {@link HeldClaim.lost} from then on.
   */
  check(): Promise<ClaimCheck>;
  /** Stops the heartbeat and removes the file if it is still this claim's. */
  release(): Promise<void>;
}

/**
 * The stop check that `runGrid` passes to `runOne` beside its options (`RunOneOptions` does not
 * carry it; `benchmarks/run_one.ts` reads it): a reason once the run's claim is lost, so that
 * the run stops at its next step without saving a checkpoint (the work folder is the new
 * holder's), by throwing a {@link ClaimLostError}.
 */
export interface ClaimStopOption {
  /** The reason the claim is lost, or undefined while this process holds it. */
  readonly claimLost?: () => string | undefined;
}

/**
 * A run stopped because its claim was lost ({@link ClaimStopOption.claimLost}): nothing of it is
 * kept or saved; `runGrid` leaves the run to the claim's new holder.
 */
export class ClaimLostError extends Error {
  /** Marks the error for callers that do not import this class. */
  readonly claimLost = true;
  /**
   * @param reason {@link ClaimStopOption.claimLost}'s reason
   * @param step the optimizer steps done when the run stopped
   */
  constructor(readonly reason: string, readonly step: number) {
    super(`stopped after step ${step}: ${reason}`);
    this.name = "ClaimLostError";
  }
}

/** What {@link claimRun} found: the claim, or the live holder of another process. */
export type ClaimOutcome =
  | { readonly held: HeldClaim }
  | { readonly other: RunClaimHolder | undefined };

/** How {@link claimRun} claims: this host, the claim timing, and who hears of a takeover. */
export interface ClaimContext {
  /** This host's name ({@link thisHost}). */
  readonly host: string;
  /** Heartbeat interval of the claim once held. */
  readonly heartbeatMs: number;
  /** Age of a heartbeat past which another's claim is stale. */
  readonly staleMs: number;
  /** Called when a stale claim was taken over: its holder (if readable) and why it was stale. */
  readonly onTakeover: (previous: RunClaimHolder | undefined, why: string) => void;
  /**
   * Test-only: awaited after a stale claim is read and before it is renamed aside, so a test can
   * let another taker replace it there (the race {@link claimRun} checks for). Default none.
   */
  readonly beforeTakeover?: () => Promise<void>;
  /**
   * Test-only: awaited after another taker's live claim was found renamed aside and before it is
   * put back, so a test can let a third process claim the run there. Default none.
   */
  readonly beforePutBack?: () => Promise<void>;
}

/**
 * Claims a run: creates its claim file exclusively (`createNew`, atomic on local and NFS v3+
 * file systems) with this process's {@link RunClaimHolder}, and refreshes its mtime every
 * `heartbeatMs` from an unref'd timer. A stale claim (heartbeat older than `staleMs`, or a
 * holder on this host whose process is gone; a holder on this machine, same host, boot id and
 * pid namespace, is stale only when its process is gone or its pid reused, whatever its
 * heartbeat) is taken over: renamed to a unique name (one taker
 * wins the rename), checked to be the claim judged stale (else, a live claim another taker made
 * meanwhile, it is put back), removed, then created afresh.
 *
 * @param path the claim file (`runner.ts` `runLockFile`)
 * @param runIdOf the run id, recorded in the claim
 * @param ctx host, timing and takeover callback
 * @returns the held claim, or the holder of a live claim of another process (undefined when its
 *   file is still being written)
 * @throws the file system's error when the claim file cannot be created or written
 */
export async function claimRun(
  path: string,
  runIdOf: string,
  ctx: ClaimContext,
): Promise<ClaimOutcome> {
  let last: RunClaimHolder | undefined;
  for (let attempt = 0; attempt < 5; attempt++) {
    const pidStart = ownStart();
    const holder: RunClaimHolder = {
      host: ctx.host,
      pid: Deno.pid,
      started: new Date().toISOString(),
      token: crypto.randomUUID(),
      run: runIdOf,
      ...thisMachine(),
      ...(pidStart === undefined ? {} : { pidStart }),
    };
    let f: Deno.FsFile | undefined;
    try {
      f = await Deno.open(path, { write: true, createNew: true });
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    }
    if (f !== undefined) {
      HELD.set(holder.token, path);
      try {
        await writeAll(f, new TextEncoder().encode(JSON.stringify(holder) + "\n"));
      } catch (e) {
        HELD.delete(holder.token);
        f.close();
        await Deno.remove(path).catch(() => {});
        throw e;
      }
      f.close();
      if (!unloadListening) {
        globalThis.addEventListener("unload", releaseHeldSync);
        unloadListening = true;
      }
      return { held: heartbeat(path, holder, ctx.heartbeatMs) };
    }
    const seen = await readClaim(path);
    if (seen === undefined) continue; // released meanwhile: claim it
    last = seen.holder;
    const why = staleness(seen, ctx.staleMs, ctx.host);
    if (why === undefined) return { other: seen.holder };
    await ctx.beforeTakeover?.();
    const aside = join(dirname(path), `.${basename(path)}.stale-${tempTag()}`);
    try {
      await Deno.rename(path, aside);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) continue; // another taker won
      throw e;
    }
    const moved = await readClaim(aside);
    if (moved !== undefined && moved.holder?.token !== seen.holder?.token) {
      // Another taker replaced the stale claim between our read and rename: put its live claim
      // back (link fails if a third one already claimed it) and leave the run to it.
      await ctx.beforePutBack?.();
      await Deno.link(aside, path).catch(() => {});
      await Deno.remove(aside).catch(() => {});
      return { other: moved.holder };
    }
    await Deno.remove(aside).catch(() => {});
    ctx.onTakeover(seen.holder, why);
  }
  return { other: last };
}

function heartbeat(path: string, holder: RunClaimHolder, everyMs: number): HeldClaim {
  let beating: Promise<void> = Promise.resolve();
  let lost = false;
  /** Reads the claim file: whether it is still ours (a missing file is not). */
  const look = async (): Promise<ClaimCheck> => {
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) return { ours: true }; // a missed look
      text = "";
    }
    const h = parseHolder(text);
    if (h?.token === holder.token) return { ours: true };
    // Taken over (this process was suspended past the stale window): never touch another's.
    lost = true;
    clearInterval(timer);
    return { ours: false, holder: h };
  };
  const beat = async () => {
    if (lost) return;
    try {
      if (!(await look()).ours) return;
      const now = new Date();
      await Deno.utime(path, now, now);
    } catch {
      // A missed beat: the next one may succeed; a claim missing beats long enough goes stale.
    }
  };
  const timer = setInterval(() => {
    beating = beating.then(beat);
  }, everyMs);
  Deno.unrefTimer(timer);
  return {
    get lost() {
      return lost;
    },
    check: () => look(),
    release: async () => {
      clearInterval(timer);
      await beating;
      HELD.delete(holder.token);
      if (lost) return;
      try {
        const h = parseHolder(await Deno.readTextFile(path));
        if (h?.token === holder.token) await Deno.remove(path);
      } catch {
        // Already gone, or unreadable: it goes stale.
      }
    },
  };
}

/**
 * Removes claim files left half taken over (`.<stem>.lock.stale-<tag>`, renamed by a taker that
 * was killed before removing it) once older than `staleMs`. Housekeeping.
 *
 * @param outDir the folder of the claim files
 * @param staleMs the stale window
 */
export async function sweepStaleClaims(outDir: string, staleMs: number): Promise<void> {
  try {
    for await (const e of Deno.readDir(outDir)) {
      if (!e.isFile || !STALE_CLAIM.test(e.name)) continue;
      const p = join(outDir, e.name);
      const info = await Deno.stat(p).catch(() => undefined);
      const ago = info === undefined ? undefined : changedAgoMs(info);
      if (ago !== undefined && ago > staleMs) await Deno.remove(p).catch(() => {});
    }
  } catch {
    // Unreadable: nothing to finish.
  }
}
