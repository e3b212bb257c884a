import assert from "node:assert/strict";
import { collectProvenance, deviceDescription, gitState, pinnedPackages } from "./provenance.ts";

Deno.test("gitState() reads the commit of this repository", () => {
  const g = gitState();
  assert.match(g.sha, /^[0-9a-f]{40}$/);
  assert.equal(typeof g.dirty, "boolean");
});

Deno.test("pinnedPackages() lists the npm pins of deno.json", () => {
  const p = pinnedPackages();
  assert.equal(p["@tensorflow/tfjs"], "4.22.0");
  assert.match(p["cli-progress"] ?? "", /^\d+\.\d+\.\d+$/);
});

Deno.test("collectProvenance() records versions, backend, device and times", () => {
  const start = new Date("2026-01-01T00:00:00Z");
  const end = new Date("2026-01-01T00:01:00Z");
  const backend = {
    requested: "auto",
    name: "wasm+blas",
    tfBackend: "wasm",
    threads: 2,
    notes: ["x"],
  };
  const p = collectProvenance(start, backend, end);
  assert.equal(p.tfjs, "4.22.0");
  assert.equal(p.deno, Deno.version.deno);
  assert.equal(p.startedAt, "2026-01-01T00:00:00.000Z");
  assert.equal(p.finishedAt, "2026-01-01T00:01:00.000Z");
  assert.deepEqual(p.backend, backend);
  assert.match(p.device, /\(wasm\+blas, 2 threads\)$/);
  assert.ok(p.hostname.length > 0);
  assert.equal(
    deviceDescription({ ...backend, name: "webgpu", adapter: "NVIDIA H100" }),
    "NVIDIA H100 (webgpu)",
  );
});

Deno.test("collectProvenance() records the git state it is given (taken when the run started)", () => {
  const p = collectProvenance(new Date(0), undefined, new Date(1000), {
    sha: "abc123",
    dirty: true,
  });
  assert.equal(p.gitSha, "abc123");
  assert.equal(p.gitDirty, true);
});
