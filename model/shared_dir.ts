/**
 * Locates the `shared/` folder that sits beside the repository (fixtures, the offline data
 * mirror). Tests and the smoke profile read from it; `HYPERPROMPT_SHARED` overrides it.
 *
 * @module
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * Absolute path of a file or folder under `shared/` (defaults to `../shared` beside the repo; an
 * empty `HYPERPROMPT_SHARED` counts as unset, as an empty `HYPERPROMPT_DATA` does).
 */
export function sharedPath(...parts: string[]): string {
  const root = Deno.env.get("HYPERPROMPT_SHARED") ||
    fileURLToPath(new URL("../../shared", import.meta.url));
  return join(root, ...parts);
}

/** Absolute path of a file or folder under the repository root. */
export function repoPath(...parts: string[]): string {
  return join(fileURLToPath(new URL("..", import.meta.url)), ...parts);
}
