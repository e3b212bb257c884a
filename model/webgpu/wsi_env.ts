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
 * to the temporary directory before the first request keeps it out of the output.
 *
 * @module
 */

/**
 * Sets `XDG_RUNTIME_DIR` to `$TMPDIR` (or `/tmp`) on Linux when it is unset. A value already set
 * is kept; without `--allow-env` nothing happens.
 *
 * @returns whether the variable was set by this call
 */
export function quietWaylandProbe(): boolean {
  try {
    if (Deno.build.os !== "linux" || Deno.env.get("XDG_RUNTIME_DIR") !== undefined) return false;
    Deno.env.set("XDG_RUNTIME_DIR", Deno.env.get("TMPDIR") ?? "/tmp");
    return true;
  } catch {
    return false; // no --allow-env
  }
}
