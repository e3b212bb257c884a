import { deepEqual, equal, ok, throws } from "node:assert/strict";
import { EXIT_FAILURE, EXIT_USAGE, exitCodeOf, runCli, usageChecked, UsageError } from "./usage.ts";

Deno.test("exitCodeOf(): 2 for a UsageError, 1 for any other error or value", () => {
  equal(EXIT_USAGE, 2);
  equal(EXIT_FAILURE, 1);
  const e = new UsageError('--steps must be a positive integer, got "0"');
  ok(e instanceof Error);
  equal(e.name, "UsageError");
  equal(exitCodeOf(e), 2);
  equal(exitCodeOf(new Error("disk full")), 1);
  equal(exitCodeOf(new TypeError("x")), 1);
  equal(exitCodeOf("a string"), 1);
  equal(exitCodeOf(undefined), 1);
});

Deno.test("usageChecked() passes the result through and turns a thrown error into a UsageError", () => {
  equal(usageChecked(() => 3), 3);
  const plain = new Error('Unknown T5 preset "nosuch"');
  throws(() =>
    usageChecked(() => {
      throw plain;
    }), (e: unknown) => {
    ok(e instanceof UsageError);
    equal(e.message, plain.message);
    equal(e.cause, plain);
    return true;
  });
  const usage = new UsageError("--out x: is a file, not a folder");
  throws(() =>
    usageChecked(() => {
      throw usage;
    }), (e: unknown) => e === usage);
  throws(() =>
    usageChecked(() => {
      throw "text";
    }), (e: unknown) => e instanceof UsageError && e.message === "text");
});

Deno.test("runCli: --help prints the usage (0); a thrown error is one line, 2 or 1", async () => {
  const out: string[] = [];
  const err: string[] = [];
  const opts = { log: (s: string) => out.push(s), error: (s: string) => err.push(s) };
  let ran = 0;
  const main = (args: string[]) => {
    ran++;
    if (args[0] === "bad") return Promise.reject(new UsageError("--x: must be a number"));
    if (args[0] === "fail") return Promise.reject(new Error("disk full"));
    return Promise.resolve();
  };
  equal(await runCli(main, ["--help"], "Usage: t", opts), 0);
  equal(await runCli(main, ["-h"], "Usage: t", opts), 0);
  deepEqual([out, ran], [["Usage: t", "Usage: t"], 0]);
  equal(await runCli(main, ["--help"], undefined, opts), 0); // main handles its own --help
  equal(ran, 1);
  equal(await runCli(main, ["bad"], "Usage: t", opts), 2);
  equal(await runCli(main, ["fail"], "Usage: t", opts), 1);
  deepEqual(err, ["--x: must be a number", "disk full"]);
  // A stand-in command replaces the tool's own.
  equal(await runCli(main, [], undefined, { ...opts, main: () => Promise.reject("x") }), 1);
  deepEqual(err.at(-1), "x");
});
