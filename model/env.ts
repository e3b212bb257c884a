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
