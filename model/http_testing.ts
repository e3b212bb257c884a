/**
 * Test helper for fake HTTP servers: a response body that stalls part-way (a transfer that hangs,
 * for the downloaders' idle timeouts).
 *
 * @module
 */

/** A pending timer of a stalled body (a server clears the ones left when it closes). */
export type StallTimer = ReturnType<typeof setTimeout>;

/**
 * A body that sends `head` at once and then nothing: after 5 s it errors ("stalled 5 s"), so a
 * client without an idle timeout fails instead of hanging the test. Cancelling it (the client
 * gave up) clears its timer.
 *
 * @param head the bytes sent before the stall
 * @param timers where the pending timer is kept while it runs, if the server tracks them
 * @returns the stream
 */
export function stallingBody(
  head: Uint8Array,
  timers?: Set<StallTimer>,
): ReadableStream<Uint8Array> {
  let timer: StallTimer | undefined;
  return new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(head);
    },
    pull(c) {
      return new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          timers?.delete(timer!);
          c.error(new Error("stalled 5 s"));
          resolve();
        }, 5000);
        timers?.add(timer);
      });
    },
    cancel() {
      clearTimeout(timer);
      timers?.delete(timer!);
    },
  });
}
