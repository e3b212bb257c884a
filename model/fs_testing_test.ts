import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { inTempDir } from "./fs_testing.ts";

Deno.test("inTempDir gives a fresh empty folder and removes it with its contents, also when the body throws", async () => {
  const seen: string[] = [];
  const value = await inTempDir(async (dir) => {
    seen.push(dir);
    assert.ok(Deno.statSync(dir).isDirectory, "the folder exists while the body runs");
    assert.deepEqual([...Deno.readDirSync(dir)], [], "and starts empty");
    await Deno.mkdir(join(dir, "sub"));
    await Deno.writeTextFile(join(dir, "sub", "f.txt"), "x");
    return "done";
  });
  assert.equal(value, "done", "the body's value is returned");
  // A body that throws (before its first await) and one that rejects: the error passes through.
  await assert.rejects(
    inTempDir((dir) => {
      seen.push(dir);
      Deno.writeTextFileSync(join(dir, "f.txt"), "x");
      throw new Error("sync failure");
    }),
    /^Error: sync failure$/,
  );
  await assert.rejects(
    inTempDir(async (dir) => {
      seen.push(dir);
      await Deno.writeTextFile(join(dir, "f.txt"), "x");
      throw new Error("async failure");
    }),
    /^Error: async failure$/,
  );
  assert.equal(new Set(seen).size, 3, "a fresh folder each time");
  for (const dir of seen) assert.ok(!existsSync(dir), `${dir} removed`);
});
