/**
 * The exit codes shared by the command-line tools (`deno task bench`, `tables`, `download`,
 * `pretrain`, `perf`, `tune` and `benchmarks/gpu_check.ts`): **0** success (`--help` included),
 * **1** a failure while working (a download, a run, reading or writing results), **2** bad
 * arguments, refused before any work starts (an unknown or misspelled flag, a flag without its
 * value, a bad number or name, a file or folder named on the command line that cannot be used).
 * `deno task bench` adds **3**: the regression gate failed.
 *
 * An argument check throws a {@link UsageError}; a tool's entry point maps what it caught to the
 * exit code with {@link exitCodeOf}.
 *
 * @example
 * ```ts
 * import { exitCodeOf, UsageError, usageChecked } from "./usage.ts";
 * const steps = (text: string): number => {
 *   const n = Number(text);
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
 * The exit code of an error that stopped a command: {@link EXIT_USAGE} (2) for a
 * {@link UsageError}, {@link EXIT_FAILURE} (1) for anything else.
 *
 * @param e what was caught
 * @returns 2 or 1
 */
export function exitCodeOf(e: unknown): 1 | 2 {
  return e instanceof UsageError ? EXIT_USAGE : EXIT_FAILURE;
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
 * A tool's command line: `--help` or `-h` prints `usage` (when given) and gives 0; otherwise runs
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
    (opts.log ?? ((s: string) => console.log(s)))(usage);
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
