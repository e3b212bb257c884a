#!/usr/bin/env bash
# Reproduces the `deno test` abort at exit behind model/webgpu/test_backend.ts, without this
# project's code: two test files that each dispatch a WGSL kernel on Deno's WebGPU, run RUNS
# times; prints how many runs aborted (glibc "double free or corruption" and the like, exit 134)
# after their tests passed.
# With MODE "run", the same code runs under `deno run` (on the main thread) instead.
#   usage: .ci/webgpu_exit_repro.sh [RUNS=40] [DENO_WEBGPU_BACKEND value, e.g. gl or vulkan] [MODE]
set -uo pipefail
runs=${1:-40}
if [ -n "${2:-}" ]; then export DENO_WEBGPU_BACKEND=$2; fi
export NO_COLOR=1 XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
DENO=${DENO:-deno}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
body=$(cat <<'TS'
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) throw new Error("no WebGPU adapter");
  const d = await adapter.requestDevice();
  const code = "@group(0) @binding(0) var<storage, read_write> x: array<f32>;" +
    "@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) {" +
    " if (g.x < arrayLength(&x)) { x[g.x] = x[g.x] * 2.0 + 1.0; } }";
  const p = d.createComputePipeline({
    layout: "auto",
    compute: { module: d.createShaderModule({ code }), entryPoint: "main" },
  });
  for (let k = 0; k < 50; k++) {
    const b = d.createBuffer({
      size: 4096 * (1 + k % 7),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
    });
    const e = d.createCommandEncoder();
    const pass = e.beginComputePass();
    pass.setPipeline(p);
    pass.setBindGroup(0, d.createBindGroup({
      layout: p.getBindGroupLayout(0),
      entries: [{ binding: 0, resource: { buffer: b } }],
    }));
    pass.dispatchWorkgroups(16 * (1 + k % 7));
    pass.end();
    const r = d.createBuffer({ size: 64, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    e.copyBufferToBuffer(b, 0, r, 0, 64);
    d.queue.submit([e.finish()]);
    await r.mapAsync(GPUMapMode.READ); // read back, as tfjs does
    r.unmap();
    r.destroy();
    b.destroy();
  }
TS
)
# The kernel inline in each file (moving it into a shared module changed the timing enough that
# the abort stopped showing in 40 runs).
for i in 1 2; do
  printf 'Deno.test("kernel", async () => {\n%s\n});\n' "$body" >"$dir/gpu${i}_test.ts"
done
printf 'for (let i = 0; i < 2; i++) {\n%s\n}\n' "$body" >"$dir/run.ts"
mode=${3:-test}
aborted=0 passed=0
for _ in $(seq 1 "$runs"); do
  if [ "$mode" = run ]; then
    $DENO run -A "$dir/run.ts" >"$dir/log" 2>&1
    rc=$?
    if [ "$rc" = 0 ]; then passed=$((passed + 1)); fi
  else
    $DENO test -A "$dir"/gpu1_test.ts "$dir"/gpu2_test.ts >"$dir/log" 2>&1
    rc=$?
    if grep -q '^ok | 2 passed' "$dir/log"; then passed=$((passed + 1)); fi
  fi
  if [ "$rc" = 134 ]; then aborted=$((aborted + 1)); fi
done 2>/dev/null # bash's own "Aborted" lines
echo "deno $mode, backend ${DENO_WEBGPU_BACKEND:-default}: $passed of $runs runs passed, $aborted aborted at exit"
