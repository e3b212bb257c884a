import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type ClaimContext,
  type ClaimOutcome,
  claimRun,
  holderName,
  processStart,
  runLockStaleMs,
  sweepStaleClaims,
  thisHost,
  thisMachine,
} from "./run_claim.ts";
import { inTempDir } from "../model/fs_testing.ts";

/** A claim of run "r1" by a process on another host, with `token`, as the claim file holds it. */
function claimOf(token: string): string {
  return JSON.stringify({
    host: "elsewhere.example",
    pid: 4242,
    started: "2020-01-01T00:00:00.000Z",
    token,
    run: "r1",
  }) + "\n";
}

/** Writes another host's claim ("stale-one") at `path`, last touched an hour ago: stale. */
async function writeStaleClaim(path: string): Promise<void> {
  await Deno.writeTextFile(path, claimOf("stale-one"));
  const old = new Date(Date.now() - 3_600_000);
  await Deno.utime(path, old, old);
}

/**
 * Runs `body` in a fresh temporary folder `out` (removed afterwards) with `path` its claim file,
 * `out/run.lock`.
 */
function inClaimDir(body: (out: string, path: string) => Promise<void>): Promise<void> {
  return inTempDir((out) => body(out, join(out, "run.lock")));
}

/** Asserts a lost takeover race in `out`: `outcome` names `token`'s claim; no aside or takeover. */
function assertLeftToOther(
  out: string,
  outcome: ClaimOutcome,
  token: string,
  takeovers: string[],
  why: string,
): void {
  assert.ok("other" in outcome, why);
  assert.equal(outcome.other?.token, token);
  assert.deepEqual([...Deno.readDirSync(out)].map((e) => e.name), ["run.lock"], "no aside left");
  assert.deepEqual(takeovers, []);
}

Deno.test("runLockStaleMs() reads HYPERPROMPT_RUN_LOCK_STALE_S: seconds, at least two heartbeats", () => {
  assert.equal(runLockStaleMs(undefined), 180_000);
  assert.equal(runLockStaleMs(""), 180_000);
  assert.equal(runLockStaleMs("600"), 600_000);
  assert.equal(runLockStaleMs("90.5"), 90_500);
  for (const bad of ["30", "-300", "1e3", "abc", " 300"]) {
    assert.throws(
      () => runLockStaleMs(bad),
      new RegExp(`^Error: HYPERPROMPT_RUN_LOCK_STALE_S="${bad}": expected .* at least 60`),
    );
  }
});

Deno.test("claimRun(): one holder at a time; a live holder is named; release frees it", () =>
  inClaimDir(async (out, path) => {
    const takeovers: string[] = [];
    const ctx: ClaimContext = {
      host: thisHost(),
      heartbeatMs: 20,
      staleMs: 60_000,
      onTakeover: (_previous, why) => takeovers.push(why),
    };
    const first = await claimRun(path, "r1", ctx);
    assert.ok("held" in first);
    assert.equal(JSON.parse(await Deno.readTextFile(path)).run, "r1");
    // Held by this process (its token is held here): live, so a second claim names its holder.
    const second = await claimRun(path, "r1", ctx);
    assert.ok("other" in second);
    assert.equal(holderName(second.other), `${thisHost()} pid ${Deno.pid}`);
    await first.held.release();
    assert.deepEqual([...Deno.readDirSync(out)], []);
    const third = await claimRun(path, "r1", ctx);
    assert.ok("held" in third);
    await third.held.release();
    assert.deepEqual(takeovers, []);
  }));

Deno.test("claimRun(): a claim taken over meanwhile is neither refreshed nor removed by its old holder", () =>
  inClaimDir(async (_out, path) => {
    const ctx: ClaimContext = {
      host: thisHost(),
      heartbeatMs: 10,
      staleMs: 60_000,
      onTakeover: () => {},
    };
    const first = await claimRun(path, "r1", ctx);
    assert.ok("held" in first);
    // Another process took the claim over (this one was suspended): its own token, an old mtime.
    const text = claimOf("not-ours");
    await Deno.writeTextFile(path, text);
    const old = new Date(Date.now() - 3_600_000);
    await Deno.utime(path, old, old);
    // Ten heartbeat intervals: a beat that ignored the token would have refreshed the mtime.
    await new Promise((r) => setTimeout(r, 100));
    assert.equal((await Deno.stat(path)).mtime!.getTime(), old.getTime(), "not refreshed");
    await first.held.release();
    assert.equal(await Deno.readTextFile(path), text, "the new holder's claim is left alone");
    // Taken over after the last beat (none came between): release reads the token itself.
    await Deno.remove(path);
    const second = await claimRun(path, "r1", { ...ctx, heartbeatMs: 60_000 });
    assert.ok("held" in second);
    await Deno.writeTextFile(path, text);
    await second.held.release();
    assert.equal(await Deno.readTextFile(path), text, "released without a beat: still left alone");
  }));

Deno.test("HeldClaim: lost and check() tell a claim taken over (another token, or the file gone) from a held one", () =>
  inClaimDir(async (_out, path) => {
    const ctx: ClaimContext = {
      host: thisHost(),
      heartbeatMs: 10,
      staleMs: 60_000,
      onTakeover: () => {},
    };
    const first = await claimRun(path, "r1", ctx);
    assert.ok("held" in first);
    await new Promise((r) => setTimeout(r, 50)); // beats that find it ours
    assert.equal(first.held.lost, false);
    assert.deepEqual(await first.held.check(), { ours: true });
    await Deno.writeTextFile(path, claimOf("not-ours"));
    // Found by a heartbeat, without a check …
    for (let i = 0; i < 100 && !first.held.lost; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(first.held.lost, true, "a beat found it lost");
    const c = await first.held.check();
    assert.ok(!c.ours);
    assert.equal(holderName(c.holder), "elsewhere.example pid 4242");
    await first.held.release();
    // … or by a check, before any beat: a claim file gone is lost too.
    await Deno.remove(path);
    const second = await claimRun(path, "r1", { ...ctx, heartbeatMs: 60_000 });
    assert.ok("held" in second);
    await Deno.remove(path);
    assert.equal(second.held.lost, false, "no beat yet");
    assert.deepEqual(await second.held.check(), { ours: false, holder: undefined });
    assert.equal(second.held.lost, true);
    await second.held.release();
  }));

Deno.test("claimRun(): a live claim another taker made between our read and rename is put back and named", () =>
  inClaimDir(async (out, path) => {
    await writeStaleClaim(path);
    const live = claimOf("live-taker");
    let raced = 0;
    const takeovers: string[] = [];
    const outcome = await claimRun(path, "r1", {
      host: thisHost(),
      heartbeatMs: 60_000,
      staleMs: 60_000,
      onTakeover: (_previous, why) => takeovers.push(why),
      // Another taker wins the race: it moves the stale claim away and creates its own, fresh.
      beforeTakeover: async () => {
        if (raced++ > 0) return;
        await Deno.remove(path);
        await Deno.writeTextFile(path, live);
      },
    });
    assert.equal(raced, 1);
    assert.equal(await Deno.readTextFile(path), live, "put back as it was");
    const why = "the live claim is left to its taker, not taken over";
    assertLeftToOther(out, outcome, "live-taker", takeovers, why);
  }));

Deno.test("claimRun(): a third process's claim made before the put-back is kept, and no aside is left", () =>
  inClaimDir(async (out, path) => {
    await writeStaleClaim(path);
    const third = claimOf("third-taker");
    const takeovers: string[] = [];
    let putBacks = 0;
    const outcome = await claimRun(path, "r1", {
      host: thisHost(),
      heartbeatMs: 60_000,
      staleMs: 60_000,
      onTakeover: (_previous, why) => takeovers.push(why),
      // A second taker replaces the stale claim between our read and our rename …
      beforeTakeover: async () => {
        await Deno.remove(path);
        await Deno.writeTextFile(path, claimOf("second-taker"));
      },
      // … and, while the second's claim is aside, a third process claims the run afresh.
      beforePutBack: async () => {
        putBacks++;
        const f = await Deno.open(path, { write: true, createNew: true });
        await f.write(new TextEncoder().encode(third));
        f.close();
      },
    });
    assert.equal(putBacks, 1);
    assert.equal(await Deno.readTextFile(path), third, "the third's claim is not overwritten");
    const why = "the run is left to the live claims";
    assertLeftToOther(out, outcome, "second-taker", takeovers, why);
  }));

Deno.test({
  name:
    "claimRun(): a holder on this machine (host, boot id, pid namespace) is asked, whatever its heartbeat; elsewhere or unknown, the heartbeat decides",
  ignore: thisMachine().pidNs === undefined || thisMachine().bootId === undefined ||
    processStart(Deno.pid) === undefined,
  fn: () =>
    inClaimDir(async (_out, path) => {
      const me = thisMachine();
      // A live process of this machine whose event loop is blocked: a silent heartbeat.
      const child = new Deno.Command("sleep", { args: ["30"] }).spawn();
      try {
        const start = processStart(child.pid)!;
        const takeovers: string[] = [];
        const ctx: ClaimContext = {
          host: thisHost(),
          heartbeatMs: 60_000,
          staleMs: 60_000,
          onTakeover: (_previous, why) => takeovers.push(why),
        };
        /** Claims over a claim of `fields` an hour old; true when it was taken over. */
        const takenOver = async (fields: Record<string, unknown>): Promise<boolean> => {
          await Deno.writeTextFile(
            path,
            JSON.stringify({
              host: thisHost(),
              pid: child.pid,
              started: "2020-01-01T00:00:00.000Z",
              token: "theirs",
              ...fields,
            }),
          );
          const old = new Date(Date.now() - 3_600_000);
          await Deno.utime(path, old, old);
          const outcome = await claimRun(path, "r1", ctx);
          if ("held" in outcome) await outcome.held.release();
          return "held" in outcome;
        };
        assert.equal(await takenOver({ ...me, pidStart: start }), false, "alive here: held");
        assert.equal(await takenOver({ ...me }), false, "alive here, start not recorded: held");
        assert.deepEqual(takeovers, []);
        assert.equal(await takenOver({ ...me, pidStart: "1" }), true, "a reused pid");
        assert.match(
          takeovers.at(-1)!,
          /^pid \d+ is another process now \(started at tick \d+, not 1\)$/,
        );
        // Another pid namespace (a container with this host name) or boot: the pid means
        // nothing here; the old heartbeat decides.
        assert.equal(await takenOver({ ...me, pidNs: "pid:[1]", pidStart: start }), true);
        assert.equal(await takenOver({ ...me, bootId: "another-boot", pidStart: start }), true);
        // A claim of older code (no machine fields): as before, the heartbeat first.
        assert.equal(await takenOver({}), true);
        assert.match(takeovers.at(-1)!, /^its heartbeat is 3600 s old/);
        // The claims this process writes carry the fields.
        const mine = await claimRun(path, "r1", ctx);
        assert.ok("held" in mine);
        const written = JSON.parse(await Deno.readTextFile(path));
        assert.deepEqual(
          [written.bootId, written.pidNs, written.pidStart],
          [me.bootId, me.pidNs, processStart(Deno.pid)],
        );
        await mine.held.release();
      } finally {
        child.kill();
        await child.status;
      }
    }),
});

Deno.test({
  name:
    "claimRun(): a holder in another pid namespace with this host name, heartbeat fresh, is not judged by its pid",
  ignore: thisMachine().pidNs === undefined || thisMachine().bootId === undefined,
  fn: () =>
    inClaimDir(async (_out, path) => {
      const child = new Deno.Command("true").spawn();
      await child.status; // a pid that is dead here, and may be alive in the holder's container
      await Deno.writeTextFile(
        path,
        JSON.stringify({
          host: thisHost(),
          pid: child.pid,
          started: "2020-01-01T00:00:00.000Z",
          token: "theirs",
          ...thisMachine(),
          pidNs: "pid:[1]",
        }),
      );
      const outcome = await claimRun(path, "r1", {
        host: thisHost(),
        heartbeatMs: 60_000,
        staleMs: 60_000,
        onTakeover: () => {},
      });
      assert.ok("other" in outcome, "the live claim of another container is left alone");
      assert.equal(outcome.other?.token, "theirs");
    }),
});

Deno.test("sweepStaleClaims() removes half-taken-over claim files older than the window only", () =>
  inClaimDir(async (out) => {
    const oldAside = join(out, `.a.lock.stale-${Deno.pid}-0123456789ab`);
    const otherName = join(out, ".a.lock.stale-junk");
    await Deno.writeTextFile(oldAside, "{}");
    await Deno.writeTextFile(otherName, "{}");
    // ctime cannot be set back: age the first two by waiting past a 150 ms window.
    await new Promise((r) => setTimeout(r, 300));
    const freshAside = join(out, `.b.lock.stale-${Deno.pid}-ba9876543210`);
    await Deno.writeTextFile(freshAside, "{}");
    await sweepStaleClaims(out, 150);
    const left = [...Deno.readDirSync(out)].map((e) => e.name).sort();
    // The fresh one may belong to a taker still at work; a name that is not a taker's stays.
    assert.deepEqual(left, [".a.lock.stale-junk", `.b.lock.stale-${Deno.pid}-ba9876543210`]);
  }));

Deno.test({
  name:
    "claimRun(): on this machine a dead pid or this pid without the claim is stale at once, a pidStart of another type is as absent, and a command name with ')' is read past",
  ignore: thisMachine().pidNs === undefined || thisMachine().bootId === undefined ||
    processStart(Deno.pid) === undefined,
  fn: () =>
    inClaimDir(async (out, path) => {
      // Kills: the pidAlive check dropped for a holder on this machine; this process's own pid
      // judged alive whatever HELD says; a non-string pidStart kept; the stat line split at the
      // first ')' instead of the last.
      const me = thisMachine();
      const takeovers: string[] = [];
      const ctx: ClaimContext = {
        host: thisHost(),
        heartbeatMs: 60_000,
        staleMs: 60_000,
        onTakeover: (_previous, why) => takeovers.push(why),
      };
      /** Claims over a fresh claim of `fields`; true when it was taken over. */
      const takenOver = async (fields: Record<string, unknown>): Promise<boolean> => {
        await Deno.writeTextFile(
          path,
          JSON.stringify({
            host: thisHost(),
            started: "2020-01-01T00:00:00.000Z",
            token: "theirs",
            ...me,
            ...fields,
          }),
        );
        const outcome = await claimRun(path, "r1", ctx);
        if ("held" in outcome) await outcome.held.release();
        return "held" in outcome;
      };
      const gone = new Deno.Command("true").spawn();
      await gone.status;
      assert.equal(await takenOver({ pid: gone.pid }), true, "a dead pid here, heartbeat fresh");
      assert.equal(takeovers.at(-1), `pid ${gone.pid} is not running on this host`);
      assert.equal(await takenOver({ pid: Deno.pid }), true, "this pid, a claim it does not hold");
      assert.match(takeovers.at(-1)!, /is this process, which does not hold it/);
      // A command name with ") " in it: the start time is field 22 counted after the last ')'.
      const exe = join(out, "s) 1 2 (x");
      await Deno.copyFile("/bin/sleep", exe);
      await Deno.chmod(exe, 0o755);
      const child = new Deno.Command(exe, { args: ["30"] }).spawn();
      try {
        const stat = new TextDecoder().decode(
          (await new Deno.Command("cat", { args: [`/proc/${child.pid}/stat`] }).output()).stdout,
        );
        const start = stat.slice(stat.lastIndexOf(")") + 1).trim().split(/\s+/)[19]!;
        assert.ok(stat.includes("(s) 1 2 (x)"), stat);
        assert.equal(processStart(child.pid), start);
        const n = takeovers.length;
        assert.equal(await takenOver({ pid: child.pid, pidStart: start }), false, "alive: held");
        // A pidStart of another type (other code's claim) is as good as absent: held.
        assert.equal(await takenOver({ pid: child.pid, pidStart: Number(start) }), false);
        assert.equal(takeovers.length, n, `${takeovers.slice(n)}`);
      } finally {
        child.kill();
        await child.status;
      }
    }),
});
