/**
 * Quiets a spurious error line of Linux graphics drivers before the process's first WebGPU adapter
 * request.
 *
 * On Linux, Deno's WebGPU asks every Vulkan driver for an adapter, and Mesa's drivers (lavapipe,
 * the software adapter here, and the others) load their Wayland window-system code, whose
 * libwayland-client prints "error: XDG_RUNTIME_DIR is invalid or not set in the environment." to
 * stderr, once per instance, when that variable is unset, as it is on servers, in containers and
 * in CI. It only looks there for a compositor's socket (none exists on such machines, so nothing
 * changes) and writes nothing; the line reads like a failure of this program. Setting the variable
 * to an empty private directory before the first request keeps it out of the output. Not the
 * shared temporary directory: a runtime directory is per user and mode 0700 (XDG Base Directory
 * spec), and in a world-writable `/tmp` any user could plant a `wayland-0` socket there.
 *
 * @module
 */

/**
 * Sets `XDG_RUNTIME_DIR` on Linux, when it is unset or invalid (empty or not an absolute path,
 * which libwayland-client rejects with the same line), to a new empty directory of this process
 * (mode 0700, under the temporary directory, removed when the process exits). A valid value is
 * kept; without `--allow-env` or `--allow-write` nothing happens.
 *
 * @returns whether the variable was set by this call
 */
export function quietWaylandProbe(): boolean {
  try {
    if (Deno.build.os !== "linux" || Deno.env.get("XDG_RUNTIME_DIR")?.startsWith("/")) {
      return false;
    }
    const dir = Deno.makeTempDirSync({ prefix: "hyperprompt-xdg-" });
    Deno.chmodSync(dir, 0o700);
    Deno.env.set("XDG_RUNTIME_DIR", dir);
    globalThis.addEventListener("unload", () => {
      try {
        Deno.removeSync(dir);
      } catch {
        // a child process may still be using it; an empty directory in $TMPDIR is harmless
      }
    });
    return true;
  } catch {
    return false; // no --allow-env or --allow-write
  }
}
