/**
 * The exit codes shared by the command-line tools (`deno task bench`, `tables`, `download`,
 * `pretrain`, `perf`, `tune`, `submission`, `gate` and `benchmarks/gpu_check.ts`): **0** success
 * (`--help` included),
 * **1** a failure while working (a download, a run, reading or writing results), **2** bad
 * arguments, refused before any work starts (an unknown or misspelled flag, a flag without its
 * value or with an empty one, a bad number or name, a file or folder named on the command line
 * that cannot be used). `deno task bench` and `deno task gate` add **3**: the regression gate
 * failed; `deno task bench` **130** / **143**: stopped by SIGINT / SIGTERM (`benchmarks/cli.ts`).
 *
 * An argument check throws a {@link UsageError}; a tool's entry point maps what it caught to the
 * exit code with {@link exitCodeOf}. {@link parseFlags} parses a tool's flags, every mistake one
 * line naming the flag, the value and what it takes. {@link wrapHelp} keeps `--help` text within
 * {@link HELP_WIDTH} columns.
 *
 * @example
 * ```ts
 * import { decimalNumber, exitCodeOf, UsageError, usageChecked } from "./usage.ts";
 * const steps = (text: string): number => {
 *   const n = decimalNumber(text);
 *   if (!Number.isInteger(n) || n < 1) {
 *     throw new UsageError(`--steps must be a positive integer, got "${text}"`);
 *   }
 *   return n;
 * };
 * try {
 *   steps("0");
 * } catch (e) {
 *   console.assert(exitCodeOf(e) === 2);
 * }
 * console.assert(exitCodeOf(new Error("disk full")) === 1);
 * // Another module's validator, whose plain Error is an argument error here:
 * const n = usageChecked(() => JSON.parse("3") as number);
 * console.assert(n === 3);
 * ```
 *
 * @module
 */

import { isAbsolute, resolve } from "node:path";
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import { readEnv } from "./env.ts";
import { repoPath } from "./shared_dir.ts";

/** Exit code of a command refused for its arguments, before any work started. */
export const EXIT_USAGE = 2;

/** Exit code of a command whose work failed. */
export const EXIT_FAILURE = 1;

/**
 * A bad command-line argument (or a file or folder named by one, or the environment variable
 * standing in for one): the tool stops before any work and exits with {@link EXIT_USAGE} (2).
 * Its message names the flag and the value.
 */
export class UsageError extends Error {
  /**
   * Creates the error.
   *
   * @param message one line naming the flag and what is wrong with it
   * @param options the underlying error as `cause`, if any
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "UsageError";
  }
}

/**
 * Reads a number written on a command line (or in an environment variable standing in for a
 * flag) the way a person writes one: plain decimal, with an optional sign, fraction and exponent
 * (`12`, `0.5`, `.5`, `1e-3`, `-2`). Anything else, or a number too large for a double
 * (`1e400`), is `NaN`, which the caller's range check then
 * refuses naming its flag: `Number()` alone reads `"0x10"` as 16, `"0b11"` as 3, `""` and `" "` as
 * 0 and `"Infinity"` as a number.
 *
 * @example
 * ```ts
 * import { decimalNumber } from "./usage.ts";
 * console.assert(decimalNumber("1e-3") === 0.001);
 * console.assert(Number.isNaN(decimalNumber("0x10")));
 * console.assert(Number.isNaN(decimalNumber("")));
 * ```
 *
 * @param text the value as typed
 * @returns the number, or `NaN` when `text` is not a plain decimal number
 */
export function decimalNumber(text: string): number {
  const n = /^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$/.test(text) ? Number(text) : NaN;
  // "1e400" overflows to Infinity, which a "> 0" check would take.
  return Number.isFinite(n) ? n : NaN;
}

/**
 * Runs an argument check whose errors are plain `Error`s (a validator shared with non-CLI code,
 * such as a preset lookup) and rethrows what it throws as a {@link UsageError} with the same
 * message (the original as its `cause`).
 *
 * @param check the check; its result is returned
 * @returns what `check` returned
 * @throws UsageError when `check` throws
 */
export function usageChecked<T>(check: () => T): T {
  try {
    return check();
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(e instanceof Error ? e.message : String(e), { cause: e });
  }
}

/**
 * A bad value of one of `tool`'s flags (exit 2), ending as {@link parseFlags}'s errors do with
 * the pointer to the tool's `--help`.
 *
 * @param tool the command, e.g. `deno task perf`
 * @param message one line naming the flag, the value and what it takes
 * @returns the error to throw
 */
export function flagError(tool: string, message: string): UsageError {
  return new UsageError(`${message}; ${tool} --help lists the flags`);
}

/**
 * Refuses a folder that a repeatable flag names twice, in any spelling (`runs`, `runs/`,
 * `./runs`): its files would be read twice over.
 *
 * @param flag the flag, e.g. `--runs`
 * @param paths its values, in the order given
 * @throws UsageError `--runs runs/: the same folder as --runs runs; name it once`
 */
export function refuseRepeatedFolders(flag: string, paths: readonly string[]): void {
  const seen = new Map<string, string>();
  for (const p of paths) {
    const twice = seen.get(resolve(p));
    if (twice !== undefined) {
      throw new UsageError(`${flag} ${p}: the same folder as ${flag} ${twice}; name it once`);
    }
    seen.set(resolve(p), p);
  }
}

/**
 * The items of a comma-separated flag value, trimmed: none for a value of only commas and blanks
 * (the caller says what that names), and a {@link UsageError} for an empty item among others
 * (`glue,,cb`, `cola,`): a name lost in editing, which dropping would hide.
 *
 * @param value the flag's value
 * @param flag the flag, e.g. `--tasks`, for the error
 * @param items what the items are, e.g. `task names`, for the error
 * @returns the items, in order
 * @throws UsageError naming the flag and the value
 */
export function commaList(value: string, flag: string, items: string): string[] {
  const parts = value.split(",").map((p) => p.trim());
  if (parts.every((p) => p === "")) return [];
  if (parts.includes("")) {
    throw new UsageError(
      `${flag} "${value}": an empty item (a stray comma?); give ${items} separated by commas`,
    );
  }
  return parts;
}

/**
 * Runs an argument check and ends the {@link UsageError} it throws with the pointer to the
 * tool's `--help`, as {@link parseFlags} ends its own (once: one that already ends so is
 * rethrown as it is).
 *
 * @param tool the command, e.g. `deno task perf`
 * @param check the check; its result is returned
 * @returns what `check` returned
 * @throws UsageError with the pointer; any other error as it was
 */
export function withHelpPointer<T>(tool: string, check: () => T): T {
  try {
    return check();
  } catch (e) {
    if (!(e instanceof UsageError) || e.message.endsWith("--help lists the flags")) throw e;
    throw new UsageError(`${e.message}; ${tool} --help lists the flags`, { cause: e });
  }
}

/**
 * The exit code of an error that stopped a command: {@link EXIT_USAGE} (2) for a
 * {@link UsageError}, {@link EXIT_FAILURE} (1) for anything else.
 *
 * @param e what was caught
 * @returns 2 or 1
 */
export function exitCodeOf(e: unknown): 1 | 2 {
  return e instanceof UsageError ? EXIT_USAGE : EXIT_FAILURE;
}

/** The widest line of a tool's `--help` text (the width `deno fmt` keeps the code to). */
export const HELP_WIDTH = 100;

/**
 * Wraps the lines of a `--help` text that are wider than `width` columns at spaces, each
 * continuation indented as the line's description: an option line (`  --out DIR   where ...`)
 * continues under the text after its run of two or more spaces, any other line two columns in
 * from its own indentation. Shorter lines are kept as they are; a word wider than the room left
 * stays whole on its own line.
 *
 * @example
 * ```ts
 * import { wrapHelp } from "./usage.ts";
 * const text = wrapHelp("  --out DIR   where the tables go, one CSV file per table", 40);
 * console.assert(text === "  --out DIR   where the tables go, one\n              CSV file per table");
 * ```
 *
 * @param text the help text
 * @param width the widest line allowed (default {@link HELP_WIDTH})
 * @returns the text with every line at most `width` columns, words permitting
 */
export function wrapHelp(text: string, width: number = HELP_WIDTH): string {
  return text.split("\n").flatMap((line) => {
    if (line.length <= width) return [line];
    const found = /^\s*\S.*?\S {2,}(?=\S)/.exec(line)?.[0].length;
    const column = found !== undefined && found < width / 2 ? found : undefined;
    // The option column, spaces included, or the line's own indentation.
    const lead = line.slice(0, column ?? /^ */.exec(line)![0].length);
    const indent = column ?? lead.length + 2;
    const out: string[] = [];
    let cur = lead; // ends with a space or is empty until its first word
    let words = 0; // on `cur`
    for (const w of line.slice(lead.length).trim().split(/ +/)) {
      if (words > 0 && cur.length + 1 + w.length > width) {
        out.push(cur);
        cur = " ".repeat(indent);
        words = 0;
      }
      cur += (words > 0 ? " " : "") + w;
      words++;
    }
    out.push(cur);
    return out;
  }).join("\n");
}

/** Options of {@link runCli}: output sinks, and the command (tests pass a stand-in). */
export interface CliOptions {
  /** Where `--help` goes (default `console.log`). */
  readonly log?: (s: string) => void;
  /** Where the error line goes (default `console.error`). */
  readonly error?: (s: string) => void;
  /** The command, in place of the tool's own `main` (tests). */
  readonly main?: (args: string[]) => Promise<unknown>;
}

/**
 * A tool's command line: `--help` or `-h` prints `usage` (when given; wrapped to
 * {@link HELP_WIDTH} columns by {@link wrapHelp}) and gives 0; otherwise runs
 * `main`, and an error it throws is printed as one line, without a stack trace, and gives
 * {@link exitCodeOf} (2 for a {@link UsageError}, else 1).
 *
 * @param main the tool's command (`opts.main` replaces it)
 * @param args command-line arguments
 * @param usage the tool's usage text, printed for `--help` (omit when `main` handles `--help`)
 * @param opts output sinks and a stand-in command
 * @returns the exit code
 */
export async function runCli(
  main: (args: string[]) => Promise<unknown>,
  args: string[],
  usage: string | undefined,
  opts: CliOptions = {},
): Promise<number> {
  if (usage !== undefined && (args.includes("--help") || args.includes("-h"))) {
    (opts.log ?? ((s: string) => console.log(s)))(wrapHelp(usage));
    return 0;
  }
  try {
    await (opts.main ?? main)(args);
    return 0;
  } catch (e) {
    (opts.error ?? ((s: string) => console.error(s)))(e instanceof Error ? e.message : String(e));
    return exitCodeOf(e);
  }
}

/** The flags of `options` that take a value (`type: "string"`). */
export type ValueFlag<O extends ParseArgsOptionsConfig> = {
  [K in keyof O & string]: O[K]["type"] extends "string" ? K : never;
}[keyof O & string];

/** The parsed flags of {@link parseFlags}: what `parseArgs` gives for `options`, defaults filled. */
export type FlagValues<O extends ParseArgsOptionsConfig> = ReturnType<
  typeof parseArgs<{ args: string[]; options: O; strict: true; allowPositionals: false }>
>["values"];

/** What {@link parseFlags} needs to know about a tool. */
export interface FlagSpec<O extends ParseArgsOptionsConfig> {
  /** The command, as the user types it (`"deno task tables"`): the errors end with its `--help`. */
  readonly tool: string;
  /** The flags, as `parseArgs` takes them (`as const`, for precise result types). */
  readonly options: O;
  /** What each flag that takes a value expects, as the usage text says (`"a folder"`). */
  readonly takes: { readonly [K in ValueFlag<O>]: string };
  /**
   * A tool's own message for an unknown flag (e.g. one that another tool takes), or undefined for
   * the generic one with the flag it probably meant. Gets the flag without dashes and as typed.
   */
  readonly unknownFlag?: (name: string, rawName: string) => string | undefined;
  /**
   * The flags whose empty value means something to the tool, as its usage text says (`deno task
   * perf --sizes ""`: no matMul sizes). Any other flag given an empty or blank value (`--out=`,
   * `--out ""`, `--out " "`: an unset variable, typically) is refused as a flag without its value.
   */
  readonly allowEmpty?: readonly ValueFlag<O>[];
  /**
   * The flags whose value is a path, read as the shell that typed it means it
   * ({@link shellPath}: from the shell's folder, `~/` from the home folder). `true`: every value; a
   * function: the values it says are paths (`--profile ci` is a name, `--profile ./ci.json` a
   * path). A default value is left as it is (the repository root's).
   */
  readonly paths?: { readonly [K in ValueFlag<O>]?: true | ((value: string) => boolean) };
}

/**
 * A path typed on the command line, as the shell meant it: `deno task` runs a tool in the
 * repository root (the folder of `deno.json`), not the shell's folder, which it passes as
 * `INIT_CWD` (as `npm run` does); a relative path is resolved from there, when it is another
 * folder and this process runs in the repository root (otherwise returned as typed: `deno run`
 * from another folder runs where the shell is, whatever `INIT_CWD` it inherited). `deno task`
 * keeps an `INIT_CWD` it inherits (from an outer `npm run` or `deno task`): scripts that wrap the
 * tools should give absolute paths. A leading `~` or `~/` (a shell leaves it unexpanded in
 * `--out=~/runs`) is the home folder (`HOME`). An absolute path is returned as it is.
 *
 * @example
 * ```ts
 * import { shellPath } from "./usage.ts";
 * console.assert(shellPath("/data/glue") === "/data/glue");
 * ```
 *
 * @param path the path as typed
 * @returns the path to use in this process
 */
export function shellPath(path: string): string {
  const home = readEnv("HOME");
  if ((path === "~" || path.startsWith("~/")) && home !== undefined && home !== "") {
    return home + path.slice(1);
  }
  if (isAbsolute(path)) return path;
  const shell = readEnv("INIT_CWD");
  if (shell === undefined || shell === "" || resolve(shell) === resolve(".")) return path;
  if (resolve(".") !== REPO_ROOT) return path;
  return resolve(shell, path);
}

/** The repository root, where `deno task` runs the tools (the folder of `deno.json`). */
const REPO_ROOT = resolve(repoPath());

/** The flags of every tool whose arguments {@link parseFlags} has parsed, by `FlagSpec.tool`. */
const parsedFlags = new Map<string, readonly string[]>();

/**
 * The flags (without dashes) that a tool's parser accepts, as its last {@link parseFlags} call
 * declared them, or undefined when no call named that tool in this process: lets a test compare
 * a tool's `--help` with its parser after one call of its entry point.
 *
 * @param tool the command as `FlagSpec.tool` names it (`"deno task tables"`)
 * @returns the flag names, in declaration order
 */
export function declaredFlags(tool: string): readonly string[] | undefined {
  return parsedFlags.get(tool);
}

/** The path flags of every tool whose arguments {@link parseFlags} has parsed, by its tool. */
const parsedPaths = new Map<string, Readonly<Record<string, "always" | "some">>>();

/**
 * The flags whose values a tool's parser reads as paths (`FlagSpec.paths`), as its last
 * {@link parseFlags} call declared them: `"always"`, or `"some"` for a flag whose predicate picks
 * the values (`--profile`: a file's path, not a built-in name); undefined when no call named that
 * tool in this process. Lets a test check every tool's path flags after one call of its entry
 * point.
 *
 * @param tool the command as `FlagSpec.tool` names it
 * @returns the flags (without dashes) and how they are read
 */
export function declaredPathFlags(
  tool: string,
): Readonly<Record<string, "always" | "some">> | undefined {
  return parsedPaths.get(tool);
}

/** The distance of two strings in single-character edits (insert, delete, substitute). */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur.push(
        Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)),
      );
    }
    prev = cur;
  }
  return prev[b.length]!;
}

/**
 * The known name an unknown one was probably meant to be (a flag, a profile field): the only one
 * it is a prefix of, else the nearest within 2 edits (fewer than the name's length, so `xy`
 * suggests nothing).
 *
 * @param name the unknown name
 * @param names the known names
 * @returns the suggestion, or undefined
 */
export function nearestName(name: string, names: readonly string[]): string | undefined {
  const prefixed = names.filter((n) => name.length >= 2 && n.startsWith(name));
  if (prefixed.length === 1) return prefixed[0];
  let best: string | undefined;
  let bestDistance = Math.min(3, name.length);
  for (const n of names) {
    const d = editDistance(name, n);
    if (d < bestDistance) [best, bestDistance] = [n, d];
  }
  return best;
}

/**
 * Parses a tool's flags (no positional arguments) as `parseArgs` does, but every mistake is one
 * line naming the flag, the value and what it takes (from `spec.takes`), ending with
 * "`<tool>` --help lists the flags", thrown as a {@link UsageError} (exit 2): an unknown flag (with
 * the flag it probably meant), an argument that is no flag (after a flag that takes no value, it
 * says so), a flag without its value, a value given to a flag that takes none (`--quick=yes`), and
 * an empty or blank value (`--out=`, `--out ""`: an unset variable, typically; only the flags of
 * `spec.allowEmpty` take one), and a flag that takes one value given two different ones (the same
 * value twice is fine; a `multiple` flag collects them). A value that starts with a dash and a letter
 * but is no flag of the tool (`--out -x`) is refused with the `--flag=value` spelling that passes
 * it, so a flag typed without its value never swallows the next flag; `--out=-x` reaches the
 * tool's own check of the value, as does a dash-led number (`--steps -3`), which no flag
 * resembles. A flag after `--` (which ends the flags) is refused with the advice to drop the `--`.
 * The values of `spec.paths`' flags are read as the shell meant them ({@link shellPath}). `--help`
 * is an ordinary boolean flag here (`runCli` answers it before parsing).
 *
 * @example
 * ```ts
 * import { parseFlags } from "./usage.ts";
 * const spec = {
 *   tool: "deno task demo",
 *   options: { out: { type: "string", default: "out" }, quick: { type: "boolean" } },
 *   takes: { out: "a folder" },
 * } as const;
 * console.assert(parseFlags(["--out", "x", "--quick"], spec).out === "x");
 * try {
 *   parseFlags(["--qick"], spec);
 * } catch (e) {
 *   console.assert(
 *     (e as Error).message ===
 *       "unknown flag --qick (did you mean --quick?); deno task demo --help lists the flags",
 *   );
 * }
 * ```
 *
 * @param args the command-line arguments
 * @param spec the tool's name, flags and what each flag's value is
 * @returns the flags, with their defaults
 * @throws UsageError naming the flag and the value
 */
export function parseFlags<O extends ParseArgsOptionsConfig>(
  args: string[],
  spec: FlagSpec<O>,
): FlagValues<O> {
  const options: ParseArgsOptionsConfig = spec.options;
  parsedFlags.set(spec.tool, Object.keys(options));
  parsedPaths.set(
    spec.tool,
    Object.fromEntries(
      Object.entries(spec.paths ?? {}).map(([k, v]) => [k, v === true ? "always" : "some"]),
    ),
  );
  const takes = spec.takes as Readonly<Record<string, string>>;
  const allowEmpty = new Set<string>(spec.allowEmpty ?? []);
  const { tokens } = parseArgs({
    args,
    options,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  const fail = (what: string): never => {
    throw flagError(spec.tool, what);
  };
  const known = (name: string) => Object.hasOwn(options, name);
  const shorts = new Set(Object.values(options).map((o) => o.short).filter((s) => s !== undefined));
  const normalised: string[] = [];
  const given = new Map<string, string>();
  let previous: (typeof tokens)[number] | undefined;
  let terminated = false;
  for (const t of tokens) {
    const before = previous;
    previous = t;
    if (t.kind === "option-terminator") {
      terminated = true;
      continue;
    }
    if (t.kind === "positional") {
      // After `--` every argument is read as a value, flags too (`deno task bench -- --resume`:
      // `deno task` passes the `--` on, as npm's `run` habit types it).
      if (terminated && t.value.startsWith("-")) {
        fail(
          `unexpected argument "${t.value}" after "--", which ends the flags (what follows is ` +
            `not read as one): give ${spec.tool} its flags without the "--"`,
        );
      }
      // `--quick yes`: a value given to a flag that takes none.
      const flagBefore = before?.kind === "option" && known(before.name) &&
          before.value === undefined
        ? ` after --${before.name}, which takes no value`
        : "";
      fail(`unexpected argument "${t.value}"${flagBefore}: ${spec.tool} takes only flags`);
      continue;
    }
    if (!known(t.name)) {
      const own = spec.unknownFlag?.(t.name, t.rawName);
      if (own !== undefined) fail(`unknown flag ${t.rawName}: ${own}`);
      // A one-letter flag (`-x`) resembles too many names to suggest one.
      const near = t.rawName.startsWith("--")
        ? nearestName(t.name, Object.keys(options))
        : undefined;
      fail(`unknown flag ${t.rawName}${near === undefined ? "" : ` (did you mean --${near}?)`}`);
      continue;
    }
    const option = options[t.name]!;
    const flag = `--${t.name}`;
    if (option.type === "boolean") {
      if (t.value !== undefined) fail(`${flag} takes no value, got "${t.rawName}=${t.value}"`);
      normalised.push(flag);
      continue;
    }
    const expected = takes[t.name] ?? "a value";
    if (t.value === undefined) fail(`${flag} needs a value (${expected})`);
    const value = t.value!;
    if (!t.inlineValue && /^-[-A-Za-z]/.test(value)) {
      const isFlag = value.startsWith("--")
        ? known(value.slice(2).split("=")[0]!)
        : value.length === 2 && shorts.has(value[1]!);
      fail(
        isFlag
          ? `${flag} needs a value (${expected}), got the flag ${value} after it`
          : `${flag} needs a value (${expected}), got "${value}", which reads as a flag ` +
            `(if it is the value: ${flag}=${value})`,
      );
    }
    // `--out "$DIR"` with DIR unset: no tool should read "" as a path (the current folder), a
    // number (0) or a list of nothing, unless it says what an empty value means.
    if (value.trim() === "" && !allowEmpty.has(t.name)) {
      fail(
        `${flag} needs a value (${expected}), got an empty one ("${value}": an unset variable?)`,
      );
    }
    if (option.multiple !== true) {
      const first = given.get(t.name);
      if (first !== undefined && first !== value) {
        fail(`${flag} given twice ("${first}", then "${value}"); give it once`);
      }
      given.set(t.name, value);
    }
    const isPath = spec.paths?.[t.name as ValueFlag<O>];
    const path = isPath === true || (isPath !== undefined && isPath(value));
    normalised.push(`${flag}=${path ? shellPath(value) : value}`);
  }
  try {
    return parseArgs({
      args: normalised,
      options: spec.options,
      strict: true,
      allowPositionals: false,
    })
      .values;
  } catch (e) {
    // Every mistake above is caught first; this is a last resort, still one line.
    return fail((e as Error).message.split("\n")[0]!);
  }
}
