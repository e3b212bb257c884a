import { equal, ok, throws } from "node:assert/strict";
import { EXIT_FAILURE, EXIT_USAGE, exitCodeOf, usageChecked, UsageError } from "./usage.ts";

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
