import { deepEqual, equal, ok, throws } from "node:assert/strict";
import { join, resolve } from "node:path";
import { withEnv } from "./env_testing.ts";
import {
  commaList,
  decimalNumber,
  EXIT_FAILURE,
  EXIT_USAGE,
  exitCodeOf,
  HELP_WIDTH,
  parseFlags,
  refuseRepeatedFolders,
  runCli,
  shellPath,
  usageChecked,
  UsageError,
  withHelpPointer,
  wrapHelp,
} from "./usage.ts";

Deno.test("commaList(): trimmed items; none for only commas; an empty item among others refused", () => {
  deepEqual(commaList(" cola , rte", "--tasks", "task names"), ["cola", "rte"]);
  deepEqual(commaList(" , ", "--tasks", "task names"), []);
  deepEqual(commaList("", "--tasks", "task names"), []);
  for (const v of ["glue,,cb", "cola,", ",cola", "a, ,b"]) {
    throws(
      () => commaList(v, "--tasks", "task names"),
      (e: unknown) =>
        e instanceof UsageError &&
        e.message ===
          `--tasks "${v}": an empty item (a stray comma?); give task names separated by commas`,
      v,
    );
  }
});

Deno.test("decimalNumber(): plain decimal with sign, fraction and exponent; anything Number() reads otherwise is NaN", () => {
  for (
    const [text, want] of [
      ["12", 12],
      ["0", 0],
      ["-2", -2],
      ["+5", 5],
      ["0.5", 0.5],
      [".5", 0.5],
      ["5.", 5],
      ["1e-3", 0.001],
      ["2E+2", 200],
      [" 7 ", 7],
    ] as const
  ) equal(decimalNumber(text), want, text);
  // Each of these is a number to Number() ("0x10" 16, "" 0, "Infinity"), a typo to a person.
  for (
    const text of [
      "",
      " ",
      "0x10",
      "0b11",
      "0o7",
      "Infinity",
      "-Infinity",
      "1e400",
      "-1e400",
      "1_000",
      "1e",
      "e3",
      ".",
      "1.2.3",
      "5min",
      "--3",
      "NaN",
    ]
  ) ok(Number.isNaN(decimalNumber(text)), JSON.stringify(text));
});

Deno.test("refuseRepeatedFolders(): one folder in two spellings is refused naming both; distinct ones pass", () => {
  refuseRepeatedFolders("--runs", ["a", "b", "a/b"]);
  throws(
    () => refuseRepeatedFolders("--runs", ["runs", "x", "./runs/"]),
    (e: unknown) =>
      e instanceof UsageError &&
      e.message === "--runs ./runs/: the same folder as --runs runs; name it once",
  );
});

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

/** A tool's flags for the parseFlags tests: values, a repeatable one, switches, a short one. */
const DEMO = {
  tool: "deno task demo",
  options: {
    out: { type: "string", default: "results" },
    steps: { type: "string" },
    tasks: { type: "string", multiple: true },
    quick: { type: "boolean", default: false },
    "dry-run": { type: "boolean" },
    help: { type: "boolean", short: "h" },
  },
  takes: { out: "a folder", steps: "a positive integer", tasks: "task names, comma-separated" },
  unknownFlag: (name: string) => name === "profile" ? "deno task bench takes it" : undefined,
} as const;

Deno.test("parseFlags(): every bad invocation is one UsageError line naming flag, value and what it takes", () => {
  const hint = "; deno task demo --help lists the flags";
  const cases: [string[], string][] = [
    [["--ot", "x"], `unknown flag --ot (did you mean --out?)${hint}`],
    [["--dry"], `unknown flag --dry (did you mean --dry-run?)${hint}`], // the only one it begins
    [["--step", "3"], `unknown flag --step (did you mean --steps?)${hint}`],
    [["--qiuck"], `unknown flag --qiuck (did you mean --quick?)${hint}`], // 2 edits
    [["--bogus"], `unknown flag --bogus${hint}`], // nothing near
    [["--xy"], `unknown flag --xy${hint}`], // nothing near (3 edits from "out")
    [["--xu"], `unknown flag --xu${hint}`], // 2 edits from "out", but only 2 letters long
    [["--o"], `unknown flag --o${hint}`], // begins "out", but one letter: no guess
    [["-x"], `unknown flag -x${hint}`], // one letter: no guess
    [["--profile", "ci"], `unknown flag --profile: deno task bench takes it${hint}`], // the hook
    [["stray"], `unexpected argument "stray": deno task demo takes only flags${hint}`],
    // After `--` (which `deno task` passes on) a flag is not read as one: the line says so, not
    // "takes only flags" of what the user typed as a flag.
    [
      ["--", "--out"],
      `unexpected argument "--out" after "--", which ends the flags (what follows is not read as ` +
      `one): give deno task demo its flags without the "--"${hint}`,
    ],
    [
      ["--quick", "--", "-h"],
      `unexpected argument "-h" after "--", which ends the flags (what follows is not read as ` +
      `one): give deno task demo its flags without the "--"${hint}`,
    ],
    [["--", "stray"], `unexpected argument "stray": deno task demo takes only flags${hint}`],
    [
      ["--quick", "yes"],
      `unexpected argument "yes" after --quick, which takes no value: deno task demo takes only ` +
      `flags${hint}`,
    ],
    [["--quick=yes"], `--quick takes no value, got "--quick=yes"${hint}`],
    [["--steps"], `--steps needs a value (a positive integer)${hint}`],
    [
      ["--steps", "--quick"],
      `--steps needs a value (a positive integer), got the flag --quick after it${hint}`,
    ],
    [["--out", "-h"], `--out needs a value (a folder), got the flag -h after it${hint}`],
    [
      ["--out", "-hx"],
      `--out needs a value (a folder), got "-hx", which reads as a flag (if it is the value: ` +
      `--out=-hx)${hint}`,
    ],
    [
      ["--out", "-x"],
      `--out needs a value (a folder), got "-x", which reads as a flag (if it is the value: ` +
      `--out=-x)${hint}`,
    ],
    [
      ["--out", "--nope"],
      `--out needs a value (a folder), got "--nope", which reads as a flag (if it is the value: ` +
      `--out=--nope)${hint}`,
    ],
    [["--steps", "3", "--steps=4"], `--steps given twice ("3", then "4"); give it once${hint}`],
    // An empty or blank value (an unset variable) is no value: never "" read as the current
    // folder, 0 or a list of nothing; in either spelling, for a repeatable flag too.
    [
      ["--out="],
      `--out needs a value (a folder), got an empty one ("": an unset variable?)${hint}`,
    ],
    [
      ["--out", ""],
      `--out needs a value (a folder), got an empty one ("": an unset variable?)${hint}`,
    ],
    [
      ["--steps", "  "],
      `--steps needs a value (a positive integer), got an empty one ("  ": an unset ` +
      `variable?)${hint}`,
    ],
    [
      ["--tasks", "a", "--tasks="],
      `--tasks needs a value (task names, comma-separated), got an empty one ("": an unset ` +
      `variable?)${hint}`,
    ],
  ];
  for (const [args, message] of cases) {
    throws(() => parseFlags(args, DEMO), (e: unknown) => {
      ok(e instanceof UsageError, args.join(" "));
      equal(exitCodeOf(e), EXIT_USAGE);
      equal(e.message, message, args.join(" "));
      ok(!e.message.includes("\n"));
      return true;
    }, args.join(" "));
  }
});

Deno.test("parseFlags(): good invocations give parseArgs's values with the defaults", () => {
  deepEqual({ ...parseFlags([], DEMO) }, { out: "results", quick: false });
  deepEqual(
    { ...parseFlags(["--out", "o", "--quick", "-h", "--tasks", "a", "--tasks=b,c"], DEMO) },
    { out: "o", quick: true, help: true, tasks: ["a", "b,c"] },
  );
  // The same value twice is no conflict; a dash-led value passes inline or when it is a number,
  // for the flag's own check to judge.
  deepEqual(
    { ...parseFlags(["--steps", "3", "--steps", "3", "--out=-x"], DEMO) },
    { out: "-x", quick: false, steps: "3" },
  );
  equal(parseFlags(["--steps", "-3"], DEMO).steps, "-3");
  // Only a flag the tool names in allowEmpty takes an empty value (perf's --sizes "": none).
  const lenient = { ...DEMO, allowEmpty: ["tasks", "steps"] } as const;
  equal(parseFlags(["--steps="], lenient).steps, "");
  deepEqual(parseFlags(["--tasks", "", "--tasks= "], lenient).tasks, ["", " "]);
  throws(() => parseFlags(["--out="], lenient), { message: /^--out needs a value \(a folder\)/ });
  // A value flag without an entry in `takes` (only possible past the types) still says something.
  throws(
    () =>
      parseFlags(["--n"], {
        tool: "t",
        options: { n: { type: "string" } },
        takes: {} as { n: string },
      }),
    { message: "--n needs a value (a value); t --help lists the flags" },
  );
});

Deno.test("shellPath(): relative paths from the shell's folder (INIT_CWD) when it is another; ~ from HOME; absolute ones as they are", async () => {
  const root = resolve(".");
  await withEnv({ INIT_CWD: join(root, "benchmarks"), HOME: "/home/u" }, () => {
    equal(shellPath("../results/baselines/ci"), join(root, "results", "baselines", "ci"));
    equal(shellPath("x.json"), join(root, "benchmarks", "x.json"));
    equal(shellPath("/abs/x"), "/abs/x");
    equal(shellPath("~/runs"), "/home/u/runs");
    equal(shellPath("~"), "/home/u");
    // Only "~" and "~/": another user's home or a name starting with "~" is a relative path.
    equal(shellPath("~bob/x"), join(root, "benchmarks", "~bob", "x"));
    return Promise.resolve();
  });
  // The repository root itself, no INIT_CWD (deno run), or an empty one: as typed.
  await withEnv({ INIT_CWD: root }, () => Promise.resolve(equal(shellPath("a/b"), "a/b")));
  await withEnv({ INIT_CWD: undefined }, () => Promise.resolve(equal(shellPath("a/b"), "a/b")));
  await withEnv({ INIT_CWD: "" }, () => Promise.resolve(equal(shellPath("a/b"), "a/b")));
  // No HOME, or an empty one: "~/x" is left as typed (relative, then, to the shell's folder).
  for (const HOME of [undefined, ""]) {
    await withEnv(
      { INIT_CWD: undefined, HOME },
      () => Promise.resolve(equal(shellPath("~/x"), "~/x")),
    );
  }
  // A process that does not run in the repository root was not started by its `deno task`
  // (`deno run` from another folder): an INIT_CWD it inherited is not its shell's (h383).
  const elsewhere = await Deno.makeTempDir();
  try {
    Deno.chdir(elsewhere);
    await withEnv(
      { INIT_CWD: join(root, "benchmarks") },
      () => Promise.resolve(equal(shellPath("a/b"), "a/b")),
    );
  } finally {
    Deno.chdir(root);
    await Deno.remove(elsewhere);
  }
});

Deno.test("parseFlags(): spec.paths' values (given, not defaults) are read from the shell's folder; a predicate picks which", async () => {
  const root = resolve(".");
  const spec = {
    ...DEMO,
    paths: { out: true, tasks: (v: string) => v.includes("/") },
  } as const;
  await withEnv({ INIT_CWD: join(root, "sub") }, () => {
    // The default ("results") is the repository root's, left as it is.
    equal(parseFlags([], spec).out, "results");
    equal(parseFlags(["--out", "o"], spec).out, join(root, "sub", "o"));
    equal(parseFlags(["--out=../o"], spec).out, join(root, "o"));
    deepEqual(parseFlags(["--tasks", "a", "--tasks=p/q"], spec).tasks, [
      "a",
      join(root, "sub", "p", "q"),
    ]);
    // A flag not in spec.paths is not touched.
    equal(parseFlags(["--steps", "s/t"], spec).steps, "s/t");
    // Given twice in two spellings of one path: compared as typed, refused.
    throws(() => parseFlags(["--out", "o", "--out", "./o"], spec), /given twice/);
    return Promise.resolve();
  });
});

Deno.test("wrapHelp(): long lines wrap under the option's description column, others two columns in", () => {
  // An option line: the continuation starts where the description does.
  equal(
    wrapHelp("  --out DIR   where the tables go, one CSV file per table", 40),
    "  --out DIR   where the tables go, one\n              CSV file per table",
  );
  // A plain line: two columns in from its own indentation; short lines and blank ones kept.
  equal(
    wrapHelp("tasks: glue/cola, glue/sst2, glue/mrpc, glue/qqp\n\nshort", 30),
    "tasks: glue/cola, glue/sst2,\n  glue/mrpc, glue/qqp\n\nshort",
  );
  // A word wider than the room stays whole, on a line of its own.
  equal(wrapHelp("a " + "x".repeat(12), 10), "a\n  " + "x".repeat(12));
  // The default width is HELP_WIDTH, and every line of a long text ends within it.
  const long = `  --flag N    ${"word ".repeat(60)}`;
  const lines = wrapHelp(long).split("\n");
  ok(lines.length > 1 && lines.every((l) => l.length <= HELP_WIDTH), lines.join("\n"));
  ok(lines.slice(1).every((l) => l.startsWith(" ".repeat(14) + "word")), lines.join("\n"));
  equal(lines.join(" ").replace(/ +/g, " ").trim(), long.replace(/ +/g, " ").trim());
});

Deno.test("runCli: --help text is wrapped to HELP_WIDTH columns", async () => {
  const out: string[] = [];
  const usage = `Usage: t\n\n  --x N   ${"long words ".repeat(20)}`;
  equal(await runCli(() => Promise.resolve(), ["--help"], usage, { log: (s) => out.push(s) }), 0);
  equal(out.length, 1);
  ok(out[0]!.split("\n").every((l) => l.length <= HELP_WIDTH), out[0]!);
  equal(out[0], wrapHelp(usage));
});

Deno.test("withHelpPointer() ends a usage error with the --help pointer once", () => {
  const fails = (message: string) => () => {
    throw new UsageError(message);
  };
  equal(withHelpPointer("t", () => 3), 3);
  throws(
    () => withHelpPointer("deno task t", fails("--x: bad")),
    (e: Error) =>
      e instanceof UsageError && e.message === "--x: bad; deno task t --help lists the flags",
  );
  // Already ending with a pointer (parseFlags's own, or a nested check's): rethrown as it is.
  const pointed = "--x: bad; deno task t --help lists the flags";
  throws(
    () => withHelpPointer("deno task t", fails(pointed)),
    (e: Error) => e instanceof UsageError && e.message === pointed,
  );
  // Any other error as it was.
  throws(() =>
    withHelpPointer("t", () => {
      throw new RangeError("r");
    }), /^RangeError: r$/);
});
