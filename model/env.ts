/**
 * Reading the process environment where reading it may not be permitted (a program run without
 * `--allow-env`): such a process reads every variable as unset and keeps its defaults.
 *
 * @module
 */

/**
 * The value of the environment variable `name`.
 *
 * @param name the variable
 * @returns its value (an empty string when set empty), or undefined when it is unset or the
 *   process may not read the environment
 */
export function readEnv(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined; // no --allow-env: the caller's defaults
  }
}
