/**
 * SIGXFSZ turned into an error of the write that hit the limit.
 *
 * A process whose write goes past its file size limit (`ulimit -f`, RLIMIT_FSIZE: a batch
 * scheduler's or a container's quota) is sent SIGXFSZ, whose default action ends it at once:
 * `deno task bench` then exits 153 with no message, whatever it was writing (a result, a
 * checkpoint, a table). With a listener installed, the signal is ignored and the write fails
 * instead, with `Error: File too large (os error 27): writefile '<path>'`, which the callers'
 * error paths report with the path, as they do a full disk ({@link ignoreFileSizeSignal}).
 *
 * @module
 */

/**
 * Installs a no-op SIGXFSZ listener, so that a write past the file size limit (`ulimit -f`)
 * throws `File too large (os error 27)` naming the file instead of ending the process silently
 * (exit 153). Called once at the start of each entry point that writes files (`deno task bench`,
 * `download`, `pretrain`, `submission`, `perf`, `tune`, `tables`); the listener does not keep the
 * process alive. Those entries end with `Deno.exit`: a process left to end by itself after such a
 * write was still ended by SIGXFSZ during the runtime's shutdown now and then (measured: 5 of 36
 * runs under load; 0 of 36 with `Deno.exit`). Where the platform cannot listen to SIGXFSZ
 * (Windows, which has no such signal) nothing is installed and nothing is thrown.
 *
 * @param add adds a signal listener (default `Deno.addSignalListener`; tests inject one)
 * @returns whether the listener was installed
 * @example
 * ```ts ignore
 * import { ignoreFileSizeSignal } from "./file_size_signal.ts";
 * if (import.meta.main) {
 *   ignoreFileSizeSignal();
 *   await Deno.writeFile("big.bin", new Uint8Array(1 << 20)); // past `ulimit -f`: throws
 * }
 * ```
 */
export function ignoreFileSizeSignal(
  add: (signal: Deno.Signal, listener: () => void) => void = (s, l) => Deno.addSignalListener(s, l),
): boolean {
  try {
    // Nothing to do: the listener's presence is what matters (the kernel's default action, the
    // end of the process, no longer applies, and the write returns EFBIG).
    add("SIGXFSZ", () => {});
    return true;
  } catch {
    // Not supported here (Windows): there is no file size signal to turn into an error.
    return false;
  }
}
