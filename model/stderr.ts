/**
 * Writing the tools' progress and log lines to stderr when its reader may be gone
 * (`deno task bench … 2>&1 | head`): text written to a closed pipe is dropped and the process goes
 * on, as `console.error` behaves, instead of an uncaught `EPIPE` (node's `process.stderr`, which
 * cli-progress writes to) or a thrown `BrokenPipe` (`Deno.stderr.writeSync`) ending a run that
 * trained for hours, its claim left behind.
 *
 * @module
 */
import process from "node:process";

/** What {@link writeStderr} writes to: `Deno.stderr`, or a test's stand-in. */
export interface SyncSink {
  /** Writes some of the bytes and returns how many (Deno's `writeSync`). */
  writeSync(p: Uint8Array): number;
}

const encoder = new TextEncoder();

/**
 * Writes `text` to stderr at once, all of it (a short write is continued). A closed pipe drops the
 * rest of the text: the call returns false and nothing is thrown. Other errors are thrown.
 *
 * @param text what to write
 * @param sink where (default `Deno.stderr`)
 * @returns whether all of it was written
 */
export function writeStderr(text: string, sink: SyncSink = Deno.stderr): boolean {
  let bytes = encoder.encode(text);
  try {
    while (bytes.length > 0) bytes = bytes.subarray(sink.writeSync(bytes));
  } catch (e) {
    if (e instanceof Deno.errors.BrokenPipe) return false;
    throw e;
  }
  return true;
}

/** The streams {@link guardNodeStderr} has guarded: once each. */
const guarded = new WeakSet<object>();

/** The part of a node stream {@link guardNodeStderr} uses. */
export interface ErrorEmitter {
  /** Adds a listener (node's `EventEmitter.on`). */
  on(event: "error", listener: (e: Error) => void): unknown;
}

/**
 * Makes node's `process.stderr` (or `stream`) drop writes that fail instead of ending the process:
 * a write to a closed pipe emits `error` (`EPIPE`), and an `error` event without a listener is an
 * uncaught exception. Installed once per stream.
 *
 * @param stream the stream (default `process.stderr`)
 */
export function guardNodeStderr(stream: ErrorEmitter = process.stderr): void {
  if (guarded.has(stream)) return;
  guarded.add(stream);
  // The text is lost either way; the run goes on.
  stream.on("error", () => {});
}
