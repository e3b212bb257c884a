/**
 * `.ci/run`'s verdict: its exit code and its last line, `tests: N passed, N failed, N skipped (…)`,
 * which CI's test counter reads, on green and on each kind of red. Deno itself is a fake `npx` on
 * PATH whose answers the scenario sets (its `--version`, the quality gate's commands, `task test`'s
 * summary and exit, `task bench`'s exit); `apt-get` is a fake that fails, so a machine without the
 * optional packages warns rather than installs.
 */
import assert from "node:assert/strict";
import { join } from "node:path";

const SCRIPT = new URL("./run", import.meta.url).pathname;

/** The fake `npx -y deno@… <command> …`: what each command does comes from FAKE_* variables. */
const FAKE_NPX = `#!/usr/bin/env bash
shift 2
case "$1" in
  --version) [ -n "$FAKE_NO_DENO" ] || echo "deno 2.9.6 (fake)";;
  fmt|lint|check) exit "\${FAKE_GATE:-0}";;
  task)
    if [ "$2" = test ]; then
      [ -n "$FAKE_NO_SUMMARY" ] || echo "\${FAKE_SUMMARY:-ok | 10 passed | 0 failed (1s)}"
      exit "\${FAKE_TEST_RC:-0}"
    fi
    exit "\${FAKE_BENCH_RC:-0}";;
esac
`;

interface Outcome {
  readonly code: number;
  readonly last: string;
  readonly out: string;
}

/** Runs a copy of `.ci/run` in a fresh folder with the fake `npx` and `env`. */
async function ciRun(env: Record<string, string>): Promise<Outcome> {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(join(dir, ".ci"));
    await Deno.mkdir(join(dir, "bin"));
    await Deno.copyFile(SCRIPT, join(dir, ".ci", "run"));
    await Deno.writeTextFile(join(dir, "bin", "npx"), FAKE_NPX, { mode: 0o755 });
    await Deno.writeTextFile(join(dir, "bin", "apt-get"), "#!/bin/sh\necho 'E: fake'\nexit 100\n", {
      mode: 0o755,
    });
    const out = await new Deno.Command("bash", {
      args: [join(dir, ".ci", "run")],
      env: { ...env, PATH: `${join(dir, "bin")}:${Deno.env.get("PATH") ?? ""}` },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    const lines = new TextDecoder().decode(out.stdout).trimEnd().split("\n");
    return { code: out.code, last: lines.at(-1) ?? "", out: text };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const COUNTED = " (deno test's tests, the quality gate and the regression gate)";

Deno.test({
  name:
    ".ci/run: its last line counts deno test's tests plus the quality gate and the regression gate; a red run never reads 0 failed",
  ignore: Deno.build.os === "windows",
  fn: async () => {
    const cases: [string, Record<string, string>, number, string, RegExp?][] = [
      ["green", {}, 0, `tests: 12 passed, 0 failed, 0 skipped${COUNTED}`],
      [
        "skipped tests counted",
        { FAKE_SUMMARY: "ok | 10 passed | 0 failed | 2 ignored (1s)" },
        0,
        `tests: 12 passed, 0 failed, 2 skipped${COUNTED}`,
      ],
      [
        "red quality gate",
        { FAKE_GATE: "1" },
        1,
        `tests: 11 passed, 1 failed, 0 skipped${COUNTED}`,
        /quality gate \(fmt\/lint\/check\) failed/,
      ],
      [
        "regression gate failed",
        { FAKE_BENCH_RC: "3" },
        3,
        `tests: 11 passed, 1 failed, 0 skipped${COUNTED}`,
        /regression gate failed/,
      ],
      [
        "bench crashed",
        { FAKE_BENCH_RC: "1" },
        1,
        `tests: 11 passed, 1 failed, 0 skipped${COUNTED}`,
        /deno task bench --profile ci failed: exit 1 \(not a gate verdict/,
      ],
      [
        "failed tests",
        { FAKE_SUMMARY: "FAILED | 8 passed | 2 failed (1s)", FAKE_TEST_RC: "1" },
        1,
        `tests: 10 passed, 2 failed, 0 skipped${COUNTED}`,
      ],
      [
        "tests died before their summary",
        { FAKE_NO_SUMMARY: "1", FAKE_TEST_RC: "1" },
        1,
        `tests: 2 passed, 1 failed, 0 skipped${COUNTED}`,
        /exited 1 before its summary/,
      ],
      [
        "everything red",
        { FAKE_GATE: "1", FAKE_BENCH_RC: "1", FAKE_NO_SUMMARY: "1", FAKE_TEST_RC: "1" },
        1,
        `tests: 0 passed, 3 failed, 0 skipped${COUNTED}`,
      ],
      [
        "no Deno from npm",
        { FAKE_NO_DENO: "1" },
        2,
        "tests: 0 passed, 1 failed, 0 skipped (Deno could not be run)",
        /cannot run Deno 2\.9\.6 from npm/,
      ],
    ];
    for (const [what, env, code, last, also] of cases) {
      const r = await ciRun(env);
      assert.equal(r.code, code, `${what}: exit code\n${r.out}`);
      assert.equal(r.last, last, `${what}: last line\n${r.out}`);
      if (also !== undefined) assert.match(r.out, also, what);
    }
  },
});
