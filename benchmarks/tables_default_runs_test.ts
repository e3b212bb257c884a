import assert from "node:assert/strict";
import { main } from "./tables.ts";

Deno.test("tables without --runs, no results/runs here: names the default and what writes it, exit 2", async () => {
  const dir = await Deno.makeTempDir();
  const cwd = Deno.cwd();
  try {
    Deno.chdir(dir);
    const err: string[] = [];
    assert.equal(await main(["--out", "t"], { log: () => {}, error: (s) => err.push(s) }), 2);
    assert.deepEqual(err, [
      "no results in results/runs (the default --runs): run deno task bench first (it writes " +
      "them there), or pass --runs DIR",
    ]);
    // A --runs the user typed is named as the flag.
    err.length = 0;
    assert.equal(
      await main(["--runs", "results/runs", "--out", "t"], {
        log: () => {},
        error: (s) => err.push(s),
      }),
      2,
    );
    assert.deepEqual(err, ["--runs results/runs: no such folder or file"]);
    err.length = 0;
    assert.equal(
      await main(["--runs=results/runs", "--out", "t"], {
        log: () => {},
        error: (s) => err.push(s),
      }),
      2,
    );
    assert.deepEqual(err, ["--runs results/runs: no such folder or file"]);
    assert.deepEqual([...Deno.readDirSync(dir)], [], "nothing written");
  } finally {
    Deno.chdir(cwd);
    await Deno.remove(dir, { recursive: true });
  }
});
