import assert from "node:assert/strict";
import { createProgress } from "./progress.ts";
import { closedStderr } from "../model/stderr_testing.ts";

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

Deno.test("progress on a terminal redraws at most every 100 ms: the first update 100 ms after a drawing draws", () => {
  // A scripted Date.now (what progress.ts reads), so that neither a slow machine nor a fast one
  // decides the count. Times in ms after the first update; each update adds 250 bytes.
  const out: string[] = [];
  const t0 = 1_700_000_000_000;
  let ms = t0;
  const now = Date.now;
  Date.now = () => ms;
  const drawnAt: number[] = [];
  try {
    const p = createProgress("y", 1e6, { tty: true, write: (s) => out.push(s) });
    for (const [i, t] of [0, 50, 99, 100, 199, 250, 349, 350].entries()) {
      ms = t0 + t;
      const n = out.length;
      p.update(250 * (i + 1));
      if (out.length > n) drawnAt.push(t);
    }
    p.finish();
  } finally {
    Date.now = now;
  }
  // The first update draws; then 100 (= 0 + 100), 250 (not 199 < 100 + 100), 350 (= 250 + 100).
  assert.deepEqual(drawnAt, [0, 100, 250, 350]);
  assert.equal(out.length, drawnAt.length + 1, "and finish() draws the last line");
  assert.equal(out.at(-1), `\ry [${"-".repeat(24)}] 0% 2.0 KiB/976.6 KiB\x1b[K\n`);
});

Deno.test("createProgress() on stderr: a closed pipe (download … 2>&1 | head) drops its lines, the download goes on", async () => {
  const progress = new URL("./progress.ts", import.meta.url).href;
  const out = await closedStderr(`
import { createProgress } from ${JSON.stringify(progress)};
console.error("first");
await new Promise((r) => setTimeout(r, 300));
for (let i = 0; i < 10; i++) {
  const p = createProgress(\`file \${i}\`, 100, { tty: false });
  p.update(50);
  p.finish();
}
console.log("survived");
`);
  assert.equal(out.code, 0, `${out.stdout}\n${out.stderr}`);
  assert.equal(out.stdout, "survived\n");
});
