/**
 * Every command-line tool's `--help`: exit 0, no line wider than {@link HELP_WIDTH} columns, and
 * the flags it lists (each option line's first `--flag`) exactly the flags its parser accepts
 * (`declaredFlags` of `model/usage.ts`, recorded when the tool's entry point parses an unknown
 * flag, which it refuses with exit 2 before any work, in the form of every tool's usage errors:
 * the message alone, one line, no prefix). `deno task bench`'s flags are also checked against the
 * option table of `benchmarks/README.md` and the synopsis in `README.md`.
 *
 * @module
 */
import assert from "node:assert/strict";
import { declaredFlags, HELP_WIDTH } from "../model/usage.ts";
import { repoPath } from "../model/shared_dir.ts";
import { main as download } from "../tasks/download.ts";
import { DEFAULT_ENDPOINTS } from "../tasks/sources.ts";
import { main as bench } from "./cli.ts";
import { main as tables } from "./tables.ts";
import { cli as perf } from "./perf.ts";
import { cli as tune } from "./tune.ts";
import { main as pretrain } from "./pretrain.ts";
import { main as lossDiff } from "./loss_diff.ts";
import { cli as gpuCheck } from "./gpu_check.ts";
import { main as submission } from "./submission.ts";
import { main as gate } from "./gate.ts";

/** A tool's entry point with its output captured. */
type Entry = (
  args: string[],
  opts: { log: (s: string) => void; error: (s: string) => void },
) => Promise<number>;

/** Each tool: its name in `parseFlags` errors (undefined: it parses no flags) and its entry. */
const TOOLS: [string, string | undefined, Entry][] = [
  ["download", "deno task download", download],
  ["bench", "deno task bench", bench],
  ["tables", "deno task tables", tables],
  ["perf", "deno task perf", perf],
  ["tune", "deno task tune", tune],
  ["pretrain", "deno task pretrain", pretrain],
  ["submission", "deno task submission", submission],
  ["gate", "deno task gate", gate],
  ["loss_diff", undefined, lossDiff],
  ["gpu_check", "deno run -A benchmarks/gpu_check.ts", gpuCheck],
];

/**
 * The tools checked for the one form of a usage error (the message alone). gpu_check, a developer
 * script, still starts its messages with its file name.
 */
const SHARED_ERROR_FORM = new Set([
  "download",
  "bench",
  "tables",
  "perf",
  "tune",
  "pretrain",
  "submission",
  "gate",
]);

/** Runs `entry` with `args`, returning the exit code and what it printed. */
async function run(entry: Entry, args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await entry(args, { log: (s) => out.push(s), error: (s) => err.push(s) });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

/** The flags a help text lists: the first `--flag` of each option line (two spaces in). */
function helpFlags(help: string): string[] {
  return help.split("\n").flatMap((l) => /^ {2}--([a-z][a-z0-9-]*)/.exec(l)?.[1] ?? []).sort();
}

for (const [name, tool, entry] of TOOLS) {
  Deno.test(`${name} --help: exit 0, lines <= ${HELP_WIDTH} columns, exactly the parser's flags`, async () => {
    const help = await run(entry, ["--help"]);
    assert.equal(help.code, 0, help.err);
    assert.equal(help.err, "");
    const wide = help.out.split("\n").filter((l) => l.length > HELP_WIDTH);
    assert.deepEqual(wide, [], `${name} --help has lines over ${HELP_WIDTH} columns`);
    assert.match(help.out, /^Exit codes: 0 /m, `${name} --help states its exit codes`);
    // An unknown flag: refused (2) before any work, naming the flag; the parser's flags recorded.
    const bad = await run(entry, ["--zz-no-such-flag"]);
    assert.equal(bad.code, 2, bad.err);
    assert.match(bad.err, /--zz-no-such-flag/);
    assert.equal(bad.out, "");
    // Every tool prints a usage error the same way: the message alone, one line, no prefix (no
    // "error:", no file name), ending with where the flags are listed.
    if (tool !== undefined && SHARED_ERROR_FORM.has(name)) {
      assert.equal(bad.err, `unknown flag --zz-no-such-flag; ${tool} --help lists the flags`);
    }
    const declared = tool === undefined ? [] : declaredFlags(tool);
    assert.ok(declared !== undefined, `${name}: no parseFlags call named "${tool}"`);
    // --help is answered before the flags are parsed (runCli), so a parser need not declare it.
    const listed = helpFlags(help.out);
    assert.ok(listed.includes("help"), `${name} --help lists --help`);
    assert.deepEqual(
      listed.filter((f) => f !== "help"),
      declared.filter((f) => f !== "help").sort(),
      `${name} --help vs its parser`,
    );
  });
}

Deno.test("bench's flags: benchmarks/README.md's option table and README.md's synopsis list them all", async () => {
  await run(bench, ["--zz-no-such-flag"]);
  const declared = [...declaredFlags("deno task bench")!].filter((f) => f !== "help").sort();
  const table = (await Deno.readTextFile(repoPath("benchmarks", "README.md")))
    .split("\n## Exit codes")[0]!;
  const rows = table.split("\n").flatMap((l) => /^\| `--([a-z-]+)/.exec(l)?.[1] ?? []);
  assert.deepEqual(rows.sort(), declared, "benchmarks/README.md's table of bench's options");
  const readme = await Deno.readTextFile(repoPath("README.md"));
  const synopsis = /`deno task bench (\[--profile[^`]*)`/.exec(readme)?.[1];
  assert.ok(synopsis !== undefined, "README.md has bench's synopsis");
  const listed = [...synopsis.matchAll(/\[--([a-z-]+)/g)].map((m) => m[1]!);
  assert.deepEqual(listed.filter((f) => f !== "help").sort(), declared, "README.md's synopsis");
});

Deno.test("download --help says how to point the download at a mirror, and the hosts it uses otherwise", async () => {
  const { code, out } = await run(download, ["--help"]);
  assert.equal(code, 0);
  // The flag, the variable (shared with bench's download) and the parquet fallback's host.
  assert.match(out, /^ {2}--endpoint K=URL +fetch from a mirror/m);
  assert.match(
    out,
    /^HYPERPROMPT_DATA_ENDPOINTS: mirrors, .*\n.*deno task bench's download reads/m,
  );
  assert.match(out, /^except hf: \$HF_ENDPOINT when that is set/m);
  for (const [k, url] of Object.entries(DEFAULT_ENDPOINTS)) {
    assert.match(out, new RegExp(`^ {2}${k} +${url.replaceAll(".", "\\.")}$`, "m"), k);
  }
});

Deno.test("bench --help names the variables its download of missing tasks reads", async () => {
  const { code, out } = await run(bench, ["--help"]);
  assert.equal(code, 0);
  const noDownload = /^ {2}--no-download .*\n(?: {23}.*\n)*/m.exec(out)?.[0] ?? "";
  assert.match(noDownload, /\$HYPERPROMPT_DATA_ENDPOINTS/, out);
  assert.match(noDownload, /\$HF_ENDPOINT/);
  assert.match(
    noDownload,
    /bad value exits 2 before any work, unless --data-dir,\s+\$HYPERPROMPT_DATA or --no-download/,
  );
});
