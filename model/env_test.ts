import assert from "node:assert/strict";
import { withEnv } from "./env_testing.ts";
import { commandOutput, readEnv, readProc } from "./env.ts";

const NAME = "HYPERPROMPT_ENV_TEST_VARIABLE";

Deno.test("readEnv: a set variable's value (empty too), undefined when unset", async () => {
  await withEnv({ [NAME]: "on" }, () => Promise.resolve(assert.equal(readEnv(NAME), "on")));
  await withEnv({ [NAME]: "" }, () => Promise.resolve(assert.equal(readEnv(NAME), "")));
  await withEnv(
    { [NAME]: undefined },
    () => Promise.resolve(assert.equal(readEnv(NAME), undefined)),
  );
});

Deno.test({
  name: "readEnv: without permission to read the environment, undefined instead of an error",
  permissions: { env: false },
  fn() {
    // The variable is set (PATH), but reading it throws here: readEnv must not.
    assert.throws(() => Deno.env.get("PATH"));
    assert.equal(readEnv("PATH"), undefined);
  },
});

/** Asserts that readEnv refuses each invalid name with an error naming it. */
function refusesInvalidNames(): void {
  for (const name of ["", "A=B", "A\0B", "="]) {
    assert.throws(
      () => readEnv(name),
      (e: Error) =>
        e.message ===
          `readEnv: invalid environment variable name ${
            JSON.stringify(name)
          } (it must be non-empty, without "=" or NUL)`,
      JSON.stringify(name),
    );
  }
}

Deno.test("readEnv: an invalid name (empty, with = or NUL) is an error naming it", () => {
  // Before, readEnv returned undefined for these, hiding the caller's bug as an unset variable.
  refusesInvalidNames();
});

Deno.test({
  name: "readEnv: an invalid name is an error without permission to read the environment too",
  permissions: { env: false },
  fn: refusesInvalidNames,
});

Deno.test("readEnv: an error other than a permission refusal is not read as an unset variable", () => {
  // Deno.env.get throws only for permissions and bad names (refused before it is called), so
  // another failure is simulated: it must reach the caller, not become the default.
  const get = Deno.env.get;
  const failure = new Error("simulated failure of the environment");
  Deno.env.get = () => {
    throw failure;
  };
  try {
    assert.throws(() => readEnv(NAME), (e) => e === failure);
  } finally {
    Deno.env.get = get;
  }
  assert.equal(Deno.env.get, get);
});

Deno.test("commandOutput: stdout of a command that succeeds, in its cwd; undefined on failure or a missing program", () => {
  assert.equal(commandOutput("sh", ["-c", "echo hi; echo err >&2"]), "hi\n");
  assert.equal(commandOutput("sh", ["-c", "pwd"], "/tmp")?.trim(), Deno.realPathSync("/tmp"));
  assert.equal(commandOutput("sh", ["-c", "echo partial; exit 3"]), undefined);
  assert.equal(commandOutput("no-such-program-hyperprompt", []), undefined);
});

Deno.test("readProc: a /proc file and a link target on Linux; undefined for a missing path", () => {
  if (Deno.build.os !== "linux") return;
  const stat = readProc(`/proc/${Deno.pid}/stat`);
  assert.ok(stat?.startsWith(`${Deno.pid} (`), String(stat));
  assert.match(readProc("/proc/self/ns/pid", true) ?? "", /^pid:\[\d+\]/);
  assert.equal(readProc("/proc/no-such-file-hyperprompt"), undefined);
});
