/**
 * Locates the `shared/` folder that sits beside the repository (fixtures, the offline data
 * mirror). Tests and the smoke profile read from it; `HYPERPROMPT_SHARED` overrides it.
 *
 * @module
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { readEnv } from "./env.ts";

/**
 * Absolute path of a file or folder under `shared/` (defaults to `../shared` beside the repo; an
 * empty `HYPERPROMPT_SHARED` counts as unset, as an empty `HYPERPROMPT_DATA` does). Without
 * `--allow-env` the default.
 */
export function sharedPath(...parts: string[]): string {
  const root = readEnv("HYPERPROMPT_SHARED");
  return root ? join(root, ...parts) : pathUnder(new URL("../../shared/", import.meta.url), parts);
}

/** Absolute path of a file or folder under the repository root. */
export function repoPath(...parts: string[]): string {
  return pathUnder(new URL("../", import.meta.url), parts);
}

/**
 * The path of `parts` under the folder `base`: a file path where `base` is a `file:` URL (a
 * clone), else the web address (the suite imported from a server: no local copy), which no file
 * API reads, so that only a caller that needs the file fails, naming it, not the import.
 *
 * @param base a folder's URL, ending in `/`
 * @param parts path segments under it
 * @returns the path, or the URL as a string
 */
export function pathUnder(base: URL, parts: readonly string[]): string {
  if (base.protocol === "file:") {
    return join(fileURLToPath(base).replace(/(?<=.)[\\/]+$/, ""), ...parts);
  }
  return new URL(parts.join("/"), base).href;
}
