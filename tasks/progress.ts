/**
 * A small download progress bar on stderr. On a terminal it redraws one line; otherwise
 * (logs, CI) it prints a line at start, about every 25 %, and at the end.
 *
 * @module
 */
import { writeStderr } from "../model/stderr.ts";

/** A running progress display. */
export interface Progress {
  /** Sets the bytes done so far (and the total once known). */
  update(done: number, total?: number): void;
  /** Ends the display with a final line. */
  finish(note?: string): void;
}

/** Options of {@link createProgress}. */
export interface ProgressOptions {
  /** Force terminal mode on/off (default: whether stderr is a terminal). */
  tty?: boolean;
  /** Where lines go (default: stderr). Tests capture it. */
  write?: (s: string) => void;
  /** Print nothing. */
  quiet?: boolean;
}

function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

/** Starts a progress display for one transfer named `label`. */
export function createProgress(
  label: string,
  total?: number,
  opts: ProgressOptions = {},
): Progress {
  if (opts.quiet) return { update() {}, finish() {} };
  // A closed stderr pipe drops the line (model/stderr.ts), as console.error does.
  const write = opts.write ?? ((s: string) => void writeStderr(s));
  const tty = opts.tty ?? Deno.stderr.isTerminal();
  let tot = total;
  let last = 0;
  let lastQuarter = -1;
  let lastDraw = 0;
  const line = () => {
    if (tot && tot > 0) {
      const frac = Math.min(1, last / tot);
      const width = 24;
      const fill = Math.round(frac * width);
      return `${label} [${"#".repeat(fill)}${"-".repeat(width - fill)}] ${
        (frac * 100).toFixed(0)
      }% ` +
        `${fmtBytes(last)}/${fmtBytes(tot)}`;
    }
    return `${label} ${fmtBytes(last)}`;
  };
  if (!tty) write(`${label}: start${tot ? ` (${fmtBytes(tot)})` : ""}\n`);
  return {
    update(done: number, t?: number) {
      last = done;
      if (t !== undefined) tot = t;
      if (tty) {
        const now = Date.now();
        if (now - lastDraw >= 100) {
          lastDraw = now;
          write(`\r${line()}\x1b[K`);
        }
      } else if (tot && tot > 0) {
        const q = Math.floor((4 * done) / tot);
        if (q > lastQuarter && q < 4) {
          if (lastQuarter >= 0) write(`${line()}\n`);
          lastQuarter = q;
        }
      }
    },
    finish(note?: string) {
      const end = `${line()}${note ? ` ${note}` : ""}`;
      write(tty ? `\r${end}\x1b[K\n` : `${end}\n`);
    },
  };
}
