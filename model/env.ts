/**
 * Reading the process environment where reading it may not be permitted (a program run without
 * `--allow-env`): such a process reads every variable as unset and keeps its defaults.
 *
 * @module
 */

/**
 * The value of the environment variable `name`.
 *
 * @param name the variable: a constant of the caller's, not empty and without `=` or NUL
 * @returns its value (an empty string when set empty), or undefined when it is unset or the
 *   process may not read the environment
 * @throws Error naming the variable when its name is invalid (empty, or with `=` or NUL): a
 *   programming error, which must not read as an unset variable (without `--allow-env` Deno checks
 *   the permission before the name, so this is checked here first)
 */
export function readEnv(name: string): string | undefined {
  if (name === "" || name.includes("=") || name.includes("\0")) {
    throw new Error(
      `readEnv: invalid environment variable name ${JSON.stringify(name)} ` +
        `(it must be non-empty, without "=" or NUL)`,
    );
  }
  try {
    return Deno.env.get(name);
  } catch (e) {
    // No --allow-env: the caller's defaults. Anything else is not a permission matter.
    if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
      return undefined;
    }
    throw e;
  }
}

/**
 * The standard output of a command run to completion (its stderr discarded), or undefined when
 * it cannot be run (no `--allow-run`, not installed) or exits non-zero.
 *
 * @param cmd the program
 * @param args its arguments
 * @param cwd its working folder (default: this process's)
 * @returns the output as text, untrimmed, or undefined
 */
export function commandOutput(
  cmd: string,
  args: readonly string[],
  cwd?: string,
): string | undefined {
  try {
    const out = new Deno.Command(cmd, {
      args: [...args],
      ...(cwd === undefined ? {} : { cwd }),
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    return out.success ? new TextDecoder().decode(out.stdout) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A `/proc` file's text (`link`: its link target), read directly or, where Deno 2 refuses reads
 * of `/proc` without `--allow-all` (`NotCapable`; the `deno task`s do not grant it), by `cat` or
 * `readlink` ({@link commandOutput}, under `--allow-run`). A child's `/proc/self` is in the same
 * pid namespace.
 *
 * @param path the file under `/proc`
 * @param link read the link's target instead of the file
 * @returns the text (untrimmed), or undefined when neither way can (not Linux, not permitted)
 */
export function readProc(path: string, link = false): string | undefined {
  try {
    return link ? Deno.readLinkSync(path) : Deno.readTextFileSync(path);
  } catch {
    return commandOutput(link ? "readlink" : "cat", [path]);
  }
}
