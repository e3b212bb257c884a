import assert from "node:assert/strict";
import { createProgress } from "./progress.ts";

Deno.test("progress without a terminal: start line, quarter lines, final line", () => {
  const out: string[] = [];
  const p = createProgress("x.zip", 1000, { tty: false, write: (s) => out.push(s) });
  for (let d = 0; d <= 1000; d += 50) p.update(d);
  p.finish();
  assert.equal(out[0], "x.zip: start (1000 B)\n");
  assert.ok(out.every((l) => !l.includes("\r")), "no carriage returns in logs");
  // start + lines at 25/50/75 % + final.
  assert.equal(out.length, 5, out.join(""));
  assert.match(out[out.length - 1]!, /100% 1000 B\/1000 B\n$/);
});

Deno.test("progress on a terminal redraws one line; quiet prints nothing", () => {
  const out: string[] = [];
  const p = createProgress("y", undefined, { tty: true, write: (s) => out.push(s) });
  p.update(2048);
  p.finish("(resumed)");
  assert.ok(out.every((l) => l.startsWith("\r")));
  assert.match(out[out.length - 1]!, /y 2\.0 KiB \(resumed\)/);
  const q: string[] = [];
  const p2 = createProgress("z", 10, { quiet: true, write: (s) => q.push(s) });
  p2.update(5);
  p2.finish();
  assert.equal(q.length, 0);
});

Deno.test("progress without a terminal: the lines are at 25, 50 and 75 %; sizes in KiB, MiB, GiB", () => {
  const out: string[] = [];
  const mib = 1024 ** 2;
  const p = createProgress("f", 400 * mib, { tty: false, write: (s) => out.push(s) });
  for (let d = 0; d <= 400; d += 10) p.update(d * mib);
  p.finish();
  assert.deepEqual(out.slice(1, -1).map((l) => /\] (\d+)% /.exec(l)?.[1]), ["25", "50", "75"]);
  assert.match(out[0]!, /^f: start \(400\.0 MiB\)\n$/);
  assert.match(out[1]!, / 100\.0 MiB\/400\.0 MiB\n$/);
  const g: string[] = [];
  const q = createProgress("g", 3 * 1024 ** 3, { tty: false, write: (s) => g.push(s) });
  q.update(1536);
  q.finish();
  assert.match(g.at(-1)!, / 1\.5 KiB\/3\.00 GiB\n$/);
});

Deno.test("progress on a terminal redraws at most every 100 ms", () => {
  const out: string[] = [];
  const t0 = Date.now();
  const p = createProgress("y", 1e6, { tty: true, write: (s) => out.push(s) });
  for (let d = 1; d <= 2000; d++) p.update(d);
  const ms = Date.now() - t0;
  // The first update draws; then one more per 100 ms that passed (2000 updates take ~1 ms).
  assert.ok(
    out.length >= 1 && out.length <= 1 + Math.floor(ms / 100) + 1,
    `${out.length} in ${ms} ms`,
  );
  p.finish();
  assert.equal(out.at(-1), `\ry [${"-".repeat(24)}] 0% 2.0 KiB/976.6 KiB\x1b[K\n`);
});
