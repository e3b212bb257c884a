import assert from "node:assert/strict";
import { withClock } from "./clock_testing.ts";

Deno.test("withClock scripts performance.now() and restores it, also when fn throws", async () => {
  const real = performance.now;
  const value = await withClock((clock) => {
    assert.equal(performance.now(), 0, "a fresh clock starts at 0");
    clock.ms += 2.5;
    assert.equal(performance.now(), 2.5, "performance.now() reads the clock as the test moves it");
    return "done";
  });
  assert.equal(value, "done");
  assert.equal(performance.now, real, "the real performance.now is back");
  assert.ok(performance.now() > 2.5, "and reads real time again");
  await assert.rejects(
    withClock(() => {
      throw new Error("sync failure");
    }),
    /^Error: sync failure$/,
  );
  assert.equal(performance.now, real, "restored after fn threw");
  await assert.rejects(
    withClock(() => Promise.reject(new Error("async failure"))),
    /^Error: async failure$/,
  );
  assert.equal(performance.now, real, "restored after fn rejected");
});
