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

/**
 * The environment of a test against a stand-in hub (`model/hub_testing.ts`): its endpoint, a
 * cache folder of the test's own, no token, and `HF_HUB_OFFLINE=1` only when `offline`
 * (`TRANSFORMERS_OFFLINE`, which huggingface_hub also reads, unset); for
 * {@link withEnv}.
 *
 * @param endpoint the hub's base URL (`HF_ENDPOINT`)
 * @param cache the cache folder (`HYPERPROMPT_CACHE`)
 * @param offline whether `HF_HUB_OFFLINE` is set (default unset)
 * @returns name → value, undefined to unset
 */
export function hubEnv(
  endpoint: string,
  cache: string,
  offline = false,
): Record<string, string | undefined> {
  return {
    HF_ENDPOINT: endpoint,
    HYPERPROMPT_CACHE: cache,
    HF_HUB_OFFLINE: offline ? "1" : undefined,
    TRANSFORMERS_OFFLINE: undefined,
    HF_TOKEN: undefined,
    HUGGING_FACE_HUB_TOKEN: undefined,
  };
}
