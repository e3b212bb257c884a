/**
 * Test helper: run code with environment variables set, restoring them afterwards.
 *
 * @module
 */

/**
 * Runs `f` with environment variables set (`undefined` deletes one), restoring every one of them
 * afterwards, whether `f` returns or throws.
 *
 * @param vars name → value, or undefined to unset
 * @param f the code to run
 * @returns what `f` returns
 */
export async function withEnv<T>(
  vars: Record<string, string | undefined>,
  f: () => Promise<T>,
): Promise<T> {
  const old = Object.fromEntries(Object.keys(vars).map((k) => [k, Deno.env.get(k)]));
  const set = (k: string, v: string | undefined) =>
    v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
  for (const [k, v] of Object.entries(vars)) set(k, v);
  try {
    return await f();
  } finally {
    for (const [k, v] of Object.entries(old)) set(k, v);
  }
}
