import { equal, rejects, throws } from "node:assert/strict";
import { join } from "node:path";
import {
  checkOutputFolder,
  isDirectory,
  isFileSync,
  pathExists,
  writeFileAtomic,
  writeFilesAtomic,
  writeTempBeside,
} from "./fs.ts";

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
    const a = await writeTempBeside(target, "a");
    const b = await writeTempBeside(target, new Uint8Array([98]));
    equal(a === b, false);
    for (const t of [a, b]) {
      equal(t.startsWith(`${target}.tmp-`), true);
      equal(/\.(csv|json)$/.test(t), false);
    }
    equal(await Deno.readTextFile(a) + await Deno.readTextFile(b), "ab");
    equal(await pathExists(target), false);
    await rejects(writeTempBeside(join(dir, "x.json"), failingStream("x")), /mid-write/);
    equal(names(dir).length, 2);
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

Deno.test("checkOutputFolder() accepts folders and creatable paths, names the flag and the file in the way", async () => {
  const dir = await Deno.makeTempDir();
  const file = join(dir, "results.json");
  await Deno.writeTextFile(file, "{}");
  checkOutputFolder("--out", dir);
  checkOutputFolder("--out", join(dir, "new", "deeper"));
  checkOutputFolder("--out", "relative/new-folder");
  throws(() => checkOutputFolder("--out", file), {
    message: `--out ${file}: is a file, not a folder`,
  });
  throws(() => checkOutputFolder("--tables", join(file, "tables")), {
    message: `--tables ${join(file, "tables")}: ${file} is a file, not a folder`,
  });
  equal(names(dir).join(","), "results.json", "nothing was created");
  await Deno.remove(dir, { recursive: true });
});
