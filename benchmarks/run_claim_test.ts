import assert from "node:assert/strict";
import { join } from "node:path";
import { type ClaimContext, claimRun, holderName, runLockStaleMs, thisHost } from "./run_claim.ts";

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

Deno.test("claimRun(): one holder at a time; a live holder is named; release frees it", async () => {
  const out = await Deno.makeTempDir();
  try {
    const path = join(out, "run.lock");
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
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});
