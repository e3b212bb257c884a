import assert from "node:assert/strict";
import { guardNodeStderr, type SyncSink, writeStderr } from "./stderr.ts";
import { closedStderr } from "./stderr_testing.ts";

Deno.test("writeStderr(): a short write is continued; a closed pipe drops the text (false), another error is thrown", () => {
  const got: number[] = [];
  const short: SyncSink = {
    writeSync(p) {
      const n = Math.min(3, p.length);
      got.push(...p.subarray(0, n));
      return n;
    },
  };
  assert.equal(writeStderr("héllo, world\n", short), true);
  assert.equal(new TextDecoder().decode(new Uint8Array(got)), "héllo, world\n");
  const closed: SyncSink = {
    writeSync() {
      throw new Deno.errors.BrokenPipe("Broken pipe (os error 32)");
    },
  };
  assert.equal(writeStderr("x\n", closed), false);
  const full: SyncSink = {
    writeSync() {
      throw new Deno.errors.PermissionDenied("no");
    },
  };
  assert.throws(() => writeStderr("x\n", full), Deno.errors.PermissionDenied);
});

Deno.test("guardNodeStderr(): one listener per stream, however often called", () => {
  const listeners: unknown[] = [];
  const stream = { on: (_: "error", l: (e: Error) => void) => listeners.push(l) };
  guardNodeStderr(stream);
  guardNodeStderr(stream);
  assert.equal(listeners.length, 1);
});

const url = (rel: string) => new URL(rel, import.meta.url).href;

Deno.test("a closed stderr pipe: writeStderr and node's guarded process.stderr drop the text, the process goes on", async () => {
  const out = await closedStderr(`
import process from "node:process";
import { guardNodeStderr, writeStderr } from ${JSON.stringify(url("./stderr.ts"))};
guardNodeStderr();
writeStderr("first\\n");
await new Promise((r) => setTimeout(r, 300));
let dropped = 0;
for (let i = 0; i < 20; i++) {
  if (!writeStderr(\`line \${i}\\n\`)) dropped++;
  process.stderr.write(\`node line \${i}\\n\`);
  await new Promise((r) => setTimeout(r, 10));
}
console.log(\`survived, \${dropped} dropped\`);
`);
  assert.equal(out.code, 0, `${out.stdout}\n${out.stderr}`);
  assert.equal(out.stdout, "survived, 20 dropped\n");
});
