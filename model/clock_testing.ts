/**
 * Test helper: {@link withClock} runs code with `performance.now()` reading a scripted clock that
 * the test advances (e.g. by a kernel stand-in, per product it computes), and restores the real
 * one afterwards, also when the code throws. Not used by the library itself.
 *
 * @module
 */

/** A scripted clock: `performance.now()` returns `ms` while {@link withClock} runs. */
export interface FakeClock {
  /** What `performance.now()` returns, in milliseconds; starts at 0, the test moves it. */
  ms: number;
}

/**
 * Runs `fn` with `performance.now()` returning `clock.ms` of a fresh {@link FakeClock} (at 0), which
 * `fn` (or code it installs) advances; restores the real `performance.now` when `fn` returns,
 * throws or rejects.
 *
 * @param fn runs with the clock installed; gets the clock
 * @returns what `fn` returns
 */
export async function withClock<T>(fn: (clock: FakeClock) => T | Promise<T>): Promise<T> {
  const clock: FakeClock = { ms: 0 };
  const own = Object.getOwnPropertyDescriptor(performance, "now");
  Object.defineProperty(performance, "now", { value: () => clock.ms, configurable: true });
  try {
    return await fn(clock);
  } finally {
    if (own === undefined) delete (performance as { now?: unknown }).now;
    else Object.defineProperty(performance, "now", own);
  }
}
