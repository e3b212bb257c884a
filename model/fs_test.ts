import { equal, rejects } from "node:assert/strict";
import { join } from "node:path";
import { isDirectory, isFileSync, pathExists, writeFileAtomic } from "./fs.ts";

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
    equal(isFileSync(join(dir, "missing")), false);
    // A target that is a folder cannot be replaced: the error surfaces and no temp file is left.
    await rejects(writeFileAtomic(join(dir, "a"), "x"));
    equal([...Deno.readDirSync(dir)].map((e) => e.name).join(","), "a");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
