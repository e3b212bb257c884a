/**
 * Test helpers shared by the command-line tests (`cli_test.ts`, `tables_test.ts`).
 *
 * @module
 */
import { join } from "node:path";

/** Paths a user may wrongly name as a results or output folder. */
export interface BadFolders {
  /** A regular file (`a-file`), where a folder is expected. */
  readonly file: string;
  /** An empty folder: no run results. */
  readonly empty: string;
  /** A folder whose one run result (`r.json`) is truncated JSON. */
  readonly broken: string;
}

/**
 * Makes {@link BadFolders} under `dir`.
 *
 * @param dir a temporary folder (the caller removes it)
 * @returns the paths
 */
export async function badFolders(dir: string): Promise<BadFolders> {
  const file = join(dir, "a-file");
  await Deno.writeTextFile(file, "x");
  const empty = join(dir, "empty");
  await Deno.mkdir(empty);
  const broken = join(dir, "broken");
  await Deno.mkdir(broken);
  await Deno.writeTextFile(join(broken, "r.json"), '{"spec": ');
  return { file, empty, broken };
}
