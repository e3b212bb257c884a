/**
 * A script run with its stderr closed early, as `deno task bench … 2>&1 | head -1` closes it.
 *
 * @module
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const CONFIG = new URL("../deno.json", import.meta.url);

/**
 * Runs `code` (a module, imports by absolute URL) with stderr piped and closes the pipe after the
 * first chunk, as a reader that goes away would.
 *
 * @param code the script: it writes to stderr first, then more after a pause, then to stdout
 * @returns its exit code, its stdout and the stderr chunk read before the close
 */
export async function closedStderr(
  code: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const dir = await Deno.makeTempDir();
  try {
    const script = `${dir}/script.ts`;
    await Deno.writeTextFile(script, code);
    const child = new Deno.Command(Deno.execPath(), {
      // The project's import map and node_modules, for scripts importing its modules.
      args: ["run", "-A", "--no-check", "--config", fileURLToPath(CONFIG), script],
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    const reader = child.stderr.getReader();
    const first = await reader.read();
    assert.ok(!first.done, "the script wrote to stderr");
    const firstText = new TextDecoder().decode(first.value);
    await reader.cancel(); // the reader goes, as `| head -1` does
    const [status, out] = await Promise.all([child.status, new Response(child.stdout).text()]);
    return { code: status.code, stdout: out, stderr: firstText };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
