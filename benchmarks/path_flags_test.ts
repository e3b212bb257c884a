/**
 * Every tool's command-line paths are read from the shell's folder (`INIT_CWD`, which `deno task`
 * sets; `model/usage.ts` `shellPath`): each tool declares its path flags to `parseFlags`, and a
 * relative path reaches the tool resolved. The test preload removes `INIT_CWD`, so the other tool
 * tests run with `shellPath` doing nothing: these set it.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { declaredPathFlags } from "../model/usage.ts";
import { repoPath } from "../model/shared_dir.ts";
import { withEnv } from "../model/env_testing.ts";
import { main as bench, parseBenchArgs } from "./cli.ts";
import { main as tables } from "./tables.ts";
import { main as gate } from "./gate.ts";
import { main as submission } from "./submission.ts";
import { main as pretrain } from "./pretrain.ts";
import { cli as perf } from "./perf.ts";
import { cli as tune } from "./tune.ts";
import { cli as gpuCheck } from "./gpu_check.ts";
import { parseDownloadArgs } from "../tasks/download.ts";

/** Runs an entry point with output captured: its exit code and its lines. */
async function run(
  f: (o: { log: (s: string) => void; error: (s: string) => void }) => Promise<number>,
): Promise<{ code: number; lines: string[] }> {
  const lines: string[] = [];
  const code = await f({ log: (s) => lines.push(s), error: (s) => lines.push(s) });
  return { code, lines };
}

Deno.test("every tool declares its path flags to parseFlags (a flag left out would read from the repository root)", async () => {
  // An unknown flag makes each entry point parse its flags (and refuse, exit 2), nothing else.
  const calls: [string, () => Promise<unknown>][] = [
    ["deno task bench", () => bench(["--nope"], { log: () => {}, error: () => {} })],
    ["deno task tables", () => run((o) => tables(["--nope"], o))],
    ["deno task gate", () => run((o) => gate(["--nope"], o))],
    ["deno task submission", () => run((o) => submission(["--nope"], o))],
    ["deno task pretrain", () => run((o) => pretrain(["--nope"], o))],
    ["deno task perf", () => run((o) => perf(["--nope"], o))],
    ["deno task tune", () => run((o) => tune(["--nope"], o))],
    ["deno run -A benchmarks/gpu_check.ts", () => run((o) => gpuCheck(["--nope"], o))],
    ["deno task download", () => Promise.resolve().then(() => parseDownloadArgs(["--nope"]))],
  ];
  for (const [, call] of calls) await call().catch(() => {});
  const want: Record<string, Record<string, "always" | "some">> = {
    "deno task bench": {
      profile: "some",
      "data-dir": "always",
      out: "always",
      compare: "always",
      tables: "always",
    },
    "deno task tables": { runs: "always", out: "always" },
    "deno task gate": { baseline: "always", runs: "always", profile: "some" },
    "deno task submission": { runs: "always", "data-dir": "always", out: "always" },
    "deno task pretrain": {
      "data-dir": "always",
      corpus: "always",
      tokenizer: "always",
      "cache-dir": "always",
    },
    "deno task perf": { "out-dir": "always" },
    "deno task tune": { out: "always" },
    "deno run -A benchmarks/gpu_check.ts": { out: "always" },
    "deno task download": { "cache-dir": "always" },
  };
  for (const [tool] of calls) assert.deepEqual(declaredPathFlags(tool), want[tool], tool);
});

Deno.test("a relative path reaches each tool resolved from the shell's folder; a built-in profile's name stays a name", async () => {
  const sub = join(repoPath(), "sub");
  await withEnv({ INIT_CWD: sub }, async () => {
    const b = parseBenchArgs([
      "--profile",
      "ci",
      "--out",
      "o",
      "--data-dir",
      "d",
      "--compare",
      "c",
      "--tables",
      "t",
    ]);
    assert.deepEqual(
      [b.profile, b.out, b["data-dir"], b.compare, b.tables],
      ["ci", join(sub, "o"), join(sub, "d"), join(sub, "c"), join(sub, "t")],
    );
    assert.equal(parseBenchArgs(["--profile", "mine.json"]).profile, join(sub, "mine.json"));
    assert.equal(parseBenchArgs(["--profile", "./ci"]).profile, join(sub, "ci"));
    assert.equal(
      parseDownloadArgs(["--tasks", "rte", "--cache-dir", "c"]).cacheDir,
      join(sub, "c"),
    );
    // The tools name the path they looked for: the shell's, not the repository root's.
    const ci = repoPath("results", "baselines", "ci");
    for (
      const [tool, call, line] of [
        ["tables", (o) => tables(["--runs", "nope"], o), `--runs ${sub}/nope: no such folder`],
        [
          "gate",
          (o) => gate(["--baseline", "nope", "--runs", ci], o),
          `--baseline ${sub}/nope: no such folder`,
        ],
        [
          "gate --profile",
          (o) => gate(["--baseline", ci, "--runs", ci, "--profile", "p.json"], o),
          `--profile ${sub}/p.json: no such file`,
        ],
        [
          "submission",
          (o) =>
            submission(["--runs", "nope", "--benchmark", "glue", "--method", "m", "--out", "o"], o),
          `--runs ${sub}/nope: no such folder`,
        ],
        ["pretrain", (o) => pretrain(["--data-dir", "nope"], o), `--data-dir ${sub}/nope: no such`],
        ["pretrain --corpus", (o) => pretrain(["--corpus", "c.txt"], o), `--corpus ${sub}/c.txt:`],
        [
          "pretrain --tokenizer",
          (o) => pretrain(["--tokenizer", "t.json"], o),
          `--tokenizer ${sub}/t.json:`,
        ],
        [
          "perf",
          (o) => perf(["--no-save", "--out-dir", "o"], o),
          `--no-save and --out-dir ${sub}/o contradict`,
        ],
      ] as [
        string,
        (o: { log: (s: string) => void; error: (s: string) => void }) => Promise<number>,
        string,
      ][]
    ) {
      const r = await run(call);
      assert.equal(r.code, 2, `${tool}: ${r.lines.join("\n")}`);
      assert.ok(r.lines.some((l) => l.startsWith(line)), `${tool}: ${r.lines.join("\n")}`);
    }
  });
});
