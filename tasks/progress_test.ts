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
