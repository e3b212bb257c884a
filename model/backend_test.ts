import "./webgpu/test_backend.ts"; // the tests' WebGPU backend, before any adapter request
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import {
  adapterDescription,
  backendFromEnv,
  type BackendName,
  backpropFromEnv,
  currentBackendInfo,
  installTuningTable,
  noBlasFromEnv,
  selectBackend,
  wasmEngine,
} from "./backend.ts";
import { openBlas } from "./wasm_kernels.ts";
import { lowMemoryBackpropInstalled, uninstallLowMemoryBackprop } from "./backprop.ts";
import { requestTfjsAdapter } from "./webgpu/adapter.ts";
import { withEnv } from "./env_testing.ts";
import { UsageError } from "./usage.ts";
import type { TunedSelfCheck } from "./webgpu/mod.ts";
import type { MatMulTuningTable } from "./webgpu/tuning.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };
const quiet = { log: (_: string) => {} };
const blasOk = openBlas().ok;

const NO_ENV = { HYPERPROMPT_BACKEND: undefined, HYPERPROMPT_NO_BLAS: undefined };

Deno.test("cpu: explicit request starts the cpu backend and is recorded", opts, async () => {
  const lines: string[] = [];
  const info = await withEnv(NO_ENV, () => selectBackend("cpu", { log: (l) => lines.push(l) }));
  assert.equal(info.name, "cpu");
  assert.equal(info.tfBackend, "cpu");
  assert.equal(tf.getBackend(), "cpu");
  assert.equal(info.threads, 1);
  assert.deepEqual(currentBackendInfo(), info);
  assert.match(lines.join("\n"), /backend: cpu/);
  // Asked for, the cpu backend is no fallback: the note is auto's alone.
  assert.ok(!info.notes.some((n) => /falling back/.test(n)), info.notes.join("; "));
});

Deno.test("cpu: tfjs-backend-cpu's install-tfjs-node banner is not printed (a fresh process)", async () => {
  // In this process the cpu backend has long been used (its banner is once per backend), so a
  // child process selects it first and writes through it. Its stdout and stderr are read.
  const script = `import * as tf from "@tensorflow/tfjs";
    import { selectBackend } from "${new URL("./backend.ts", import.meta.url).href}";
    await selectBackend("cpu", { log: () => {} });
    const t = tf.tensor1d([1, 2, 3]);
    console.log((await t.data()).join(","));`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--quiet", script],
    env: { HYPERPROMPT_BACKEND: "", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, text);
  assert.match(text, /^1,2,3$/m);
  assert.doesNotMatch(text, /running TensorFlow\.js in Node\.js/);
});

Deno.test("tensorflow: explicit request throws and says how to install it", opts, async () => {
  await assert.rejects(
    withEnv(NO_ENV, () => selectBackend("tensorflow", quiet)),
    (e: Error) => /tfjs-node/.test(e.message) && /libtensorflow/.test(e.message),
  );
});

/**
 * A stand-in for the tfjs-node packages (which cannot be installed here): `present` maps a
 * package to what its import registers, a "tensorflow" backend made of tfjs's cpu backend (its
 * kernels too, unless `kernels` is false: then the tiny op fails) with tfjs-node's
 * `isUsingGpuDevice` flag (with `failWith`, its matMul throws that message); any other package
 * fails to import as a missing one does.
 */
function fakeTfjsNode(
  present: Record<string, { gpu?: boolean; kernels?: boolean; failWith?: string }>,
) {
  const imported: string[] = [];
  const kernels = tf.getKernelsForBackend("cpu");
  let registered = false;
  let withKernels = false;
  const importTensorflow = (spec: string): Promise<unknown> => {
    imported.push(spec);
    const pkg = present[spec];
    if (pkg === undefined) {
      return Promise.reject(new Error(`Import "${spec}" not a dependency and not in import map`));
    }
    // As with the real packages, the first import's registration wins (tfjs keeps one factory).
    if (!registered) {
      const cpu = tf.findBackendFactory("cpu")!;
      tf.registerBackend(
        "tensorflow",
        () =>
          Object.assign(
            cpu() as tf.KernelBackend,
            pkg.gpu === undefined ? {} : { isUsingGpuDevice: pkg.gpu },
          ),
      );
      registered = true;
      if (pkg.kernels ?? true) {
        // `failWith`: the matMul throws it, as tfjs-node's binding does on a TF_Status error.
        for (const k of kernels) {
          const fail = pkg.failWith;
          tf.registerKernel({
            ...k,
            backendName: "tensorflow",
            ...(fail === undefined || k.kernelName !== "BatchMatMul" ? {} : {
              kernelFunc: () => {
                throw new Error(fail);
              },
            }),
          });
        }
        withKernels = true;
      }
    }
    return Promise.resolve({});
  };
  const remove = async () => {
    await tf.setBackend("cpu");
    if (withKernels) { for (const k of kernels) tf.unregisterKernel(k.kernelName, "tensorflow"); }
    if (registered) tf.removeBackend("tensorflow");
  };
  return { importTensorflow, imported, remove };
}

Deno.test(
  "tensorflow (stand-in packages): preferred when present, GPU package first, each skip noted in one line",
  opts,
  async () => {
    const { isGpuBackend } = await import("../benchmarks/cli.ts");
    const GPU = "@tensorflow/tfjs-node-gpu";
    const CPU = "@tensorflow/tfjs-node";
    const cases: {
      what: string;
      present: Record<string, { gpu?: boolean; kernels?: boolean }>;
      adapter: string;
      gpu: boolean;
      note?: RegExp;
    }[] = [
      {
        what: "tfjs-node-gpu on a GPU",
        present: { [GPU]: { gpu: true } },
        adapter: GPU,
        gpu: true,
      },
      {
        // A backend without the flag (say, another tfjs-node-gpu version) says nothing against
        // the package's GPU: only an explicit false means the CPU.
        what: "tfjs-node-gpu whose backend lacks isUsingGpuDevice",
        present: { [GPU]: {} },
        adapter: GPU,
        gpu: true,
      },
      {
        what: "tfjs-node-gpu without a GPU device",
        present: { [GPU]: { gpu: false } },
        adapter: `${GPU} on the CPU (no GPU device)`,
        gpu: false,
        note: /^tensorflow: @tensorflow\/tfjs-node-gpu found no GPU device .*it runs on the CPU$/,
      },
      {
        what: "tfjs-node only",
        present: { [CPU]: { gpu: false } },
        adapter: CPU,
        gpu: false,
        note:
          /^tensorflow: @tensorflow\/tfjs-node-gpu: Import "@tensorflow\/tfjs-node-gpu" not a dependency .*; using @tensorflow\/tfjs-node$/,
      },
    ];
    for (const c of cases) {
      const fake = fakeTfjsNode(c.present);
      try {
        for (const name of ["auto", "tensorflow"] as const) {
          const info = await withEnv(
            NO_ENV,
            () => selectBackend(name, { ...quiet, importTensorflow: fake.importTensorflow }),
          );
          const where = `${c.what}, ${name}: ${info.notes.join("; ")}`;
          assert.equal(info.name, "tensorflow", where);
          assert.equal(info.tfBackend, "tensorflow", where);
          assert.equal(info.adapter, c.adapter, where);
          assert.equal(isGpuBackend(info), c.gpu, where);
          if (c.note) assert.ok(info.notes.some((n) => c.note!.test(n)), where);
          assert.ok(info.notes.every((n) => !n.includes("\n")), where);
          assert.ok(!info.notes.some((n) => /tensorflow skipped/.test(n)), where);
        }
        // The GPU package is asked for first; tfjs-node only when it failed.
        assert.equal(fake.imported[0], GPU, c.what);
        assert.equal(fake.imported.includes(CPU), !(GPU in c.present), c.what);
      } finally {
        await fake.remove();
      }
    }
    // A package that imports but cannot run the tiny op: auto goes on with the reason noted,
    // an explicit request fails with it.
    const broken = fakeTfjsNode({ [GPU]: { gpu: true, kernels: false } });
    try {
      const info = await withEnv(
        { ...NO_ENV, HYPERPROMPT_NO_BLAS: "1" },
        () => selectBackend("auto", { ...quiet, importTensorflow: broken.importTensorflow }),
      );
      assert.notEqual(info.name, "tensorflow");
      assert.ok(
        info.notes.some((n) =>
          /^tensorflow skipped: @tensorflow\/tfjs-node-gpu: .*not registered/.test(n) &&
          !n.includes("\n")
        ),
        info.notes.join("; "),
      );
      await assert.rejects(
        withEnv(
          NO_ENV,
          () =>
            selectBackend("tensorflow", { ...quiet, importTensorflow: broken.importTensorflow }),
        ),
        /^Error: model\/backend\.ts: tensorflow skipped: @tensorflow\/tfjs-node-gpu: .*not registered/,
      );
    } finally {
      await broken.remove();
    }
    // Both packages installed, the GPU one's first op failing with tfjs-node's two-line error:
    // the cause is kept, the CPU package is not tried (tfjs would run the GPU package's backend
    // again under its name), and the advice is not to install what is installed.
    const both = fakeTfjsNode({
      [GPU]: { gpu: true, failWith: "Invalid TF_Status: 13\nMessage: cuDNN launch failure" },
      [CPU]: { gpu: false },
    });
    try {
      const info = await withEnv(
        { ...NO_ENV, HYPERPROMPT_NO_BLAS: "1" },
        () => selectBackend("auto", { ...quiet, importTensorflow: both.importTensorflow }),
      );
      assert.notEqual(info.name, "tensorflow");
      assert.deepEqual(both.imported, [GPU]);
      const note = info.notes.find((n) => n.startsWith("tensorflow skipped: ")) ?? "";
      assert.equal(
        note,
        `tensorflow skipped: ${GPU}: imported, but its backend failed: Invalid TF_Status: 13 ` +
          `(Message: cuDNN launch failure) | ${CPU}: not tried (${GPU} registered tfjs's ` +
          `"tensorflow" backend first). ${GPU} is installed but its backend does not run here ` +
          "(see why above)",
      );
    } finally {
      await both.remove();
    }
  },
);

Deno.test(
  "wasmEngine(): what a wasm request runs without starting it; HYPERPROMPT_NO_BLAS is 0, 1 or empty",
  opts,
  async () => {
    const blasHere = (() => {
      const r = openBlas();
      if (r.ok) r.blas.close();
      return r.ok;
    })();
    await withEnv(NO_ENV, () => {
      assert.deepEqual(wasmEngine("wasm"), { name: blasHere ? "wasm+blas" : "wasm" });
      if (blasHere) assert.deepEqual(wasmEngine("wasm+blas"), { name: "wasm+blas" });
      else {assert.match(
          (wasmEngine("wasm+blas") as { unavailable: string }).unavailable,
          /OpenBLAS/,
        );}
      return Promise.resolve();
    });
    await withEnv({ HYPERPROMPT_NO_BLAS: "1" }, () => {
      assert.equal(noBlasFromEnv(), true);
      assert.deepEqual(wasmEngine("wasm"), { name: "wasm" });
      assert.deepEqual(wasmEngine("wasm+blas"), {
        unavailable: "BLAS is disabled (unset HYPERPROMPT_NO_BLAS)",
      });
      return Promise.resolve();
    });
    for (const v of ["0", ""]) {
      await withEnv({ HYPERPROMPT_NO_BLAS: v }, () => {
        assert.equal(noBlasFromEnv(), false, JSON.stringify(v));
        return Promise.resolve();
      });
    }
    // "true" used to be read as unset (BLAS on): now refused, here and by selectBackend.
    await withEnv({ HYPERPROMPT_NO_BLAS: "true" }, async () => {
      assert.throws(() => noBlasFromEnv(), UsageError);
      assert.throws(() => wasmEngine("wasm"), /HYPERPROMPT_NO_BLAS="true" must be 1/);
      await assert.rejects(selectBackend("cpu", quiet), /HYPERPROMPT_NO_BLAS="true"/);
    });
  },
);

Deno.test("unknown backend name throws listing the choices", opts, async () => {
  await assert.rejects(
    selectBackend("tpu" as BackendName, quiet),
    /unknown backend "tpu".*wasm\+blas/,
  );
});

Deno.test("wasm with HYPERPROMPT_NO_BLAS=1 is pure wasm with the transpose fix", opts, async () => {
  const info = await withEnv(
    { ...NO_ENV, HYPERPROMPT_NO_BLAS: "1" },
    () => selectBackend("wasm", quiet),
  );
  assert.equal(info.name, "wasm");
  assert.equal(info.tfBackend, "wasm");
  assert.ok(info.notes.some((n) => /transpose fix/.test(n)), info.notes.join("; "));
  // Transposed matmul through the patched kernel is correct.
  const r = tf.tidy(() =>
    tf.matMul(
      tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3]),
      tf.tensor2d([1, 0, 1, 0, 1, 0], [2, 3]),
      false,
      true,
    )
  );
  assert.deepEqual(Array.from(await r.data()), [4, 2, 10, 5]);
  r.dispose();
});

Deno.test(
  "wasm+blas: starts with OpenBLAS, or explains what to install",
  opts,
  async () => {
    const p = withEnv(NO_ENV, () => selectBackend("wasm+blas", quiet));
    if (!blasOk) {
      await assert.rejects(p, /libopenblas0-pthread|allow-ffi/);
      return;
    }
    const info = await p;
    assert.equal(info.name, "wasm+blas");
    assert.equal(info.tfBackend, "wasm");
    assert.ok(info.threads >= 1);
    assert.match(info.adapter ?? "", /OpenBLAS/);
  },
);

Deno.test("wasm+blas with HYPERPROMPT_NO_BLAS=1 is a contradiction and throws", opts, async () => {
  await assert.rejects(
    withEnv({ HYPERPROMPT_NO_BLAS: "1" }, () => selectBackend("wasm+blas", quiet)),
    /BLAS is disabled \(unset HYPERPROMPT_NO_BLAS\)$/,
  );
  // A caller's blas: false is named as the cause, not an environment variable that is unset.
  await assert.rejects(
    withEnv(NO_ENV, () => selectBackend("wasm+blas", { ...quiet, blas: false })),
    /BLAS is disabled \(by the caller's blas: false\)$/,
  );
});

Deno.test("HYPERPROMPT_BACKEND replaces auto; explicit requests win", opts, async () => {
  const info = await withEnv(
    { ...NO_ENV, HYPERPROMPT_BACKEND: "cpu" },
    () => selectBackend("auto", quiet),
  );
  assert.equal(info.requested, "cpu");
  assert.equal(info.name, "cpu");
  assert.ok(info.notes.some((n) => /HYPERPROMPT_BACKEND=cpu/.test(n)));
  const info2 = await withEnv(
    { HYPERPROMPT_BACKEND: "cpu", HYPERPROMPT_NO_BLAS: "1" },
    () => selectBackend("wasm", quiet),
  );
  assert.equal(info2.name, "wasm");
  await assert.rejects(
    withEnv({ HYPERPROMPT_BACKEND: "gpu9" }, () => selectBackend("auto", quiet)),
    /HYPERPROMPT_BACKEND="gpu9"/,
  );
});

Deno.test("backendFromEnv(): a bad HYPERPROMPT_BACKEND is an argument error naming the choices", async () => {
  assert.equal(
    await withEnv({ HYPERPROMPT_BACKEND: undefined }, () => Promise.resolve(backendFromEnv())),
    undefined,
  );
  assert.equal(
    await withEnv({ HYPERPROMPT_BACKEND: "" }, () => Promise.resolve(backendFromEnv())),
    undefined,
  );
  assert.equal(
    await withEnv({ HYPERPROMPT_BACKEND: "wasm+blas" }, () => Promise.resolve(backendFromEnv())),
    "wasm+blas",
  );
  const gpu = "; a GPU is reached through webgpu (WebGPU: Vulkan, Metal or D3D12) or tensorflow " +
    "(tfjs-node-gpu: CUDA), and auto takes the GPU when there is one";
  for (
    const [bad, hint] of [
      ["gpu9", ""],
      ["WASM", "; did you mean wasm?"],
      [" cpu", "; did you mean cpu?"],
      ["gpu", gpu],
      ["CUDA", gpu],
      // The tensorflow backend by its package's name, as the docs call it.
      ["tfjs-node", "; did you mean tensorflow? (tfjs-node or tfjs-node-gpu, whichever imports)"],
      [
        "@tensorflow/tfjs-node",
        "; did you mean tensorflow? (tfjs-node or tfjs-node-gpu, whichever imports)",
      ],
      ["tfjs-node-gpu", gpu],
      ["@tensorflow/tfjs-node-gpu", gpu],
      ["node", "; did you mean tensorflow? (tfjs-node or tfjs-node-gpu, whichever imports)"],
      // tfjs is the library of every backend: no guess.
      ["tfjs", ""],
    ]
  ) {
    await assert.rejects(
      withEnv({ HYPERPROMPT_BACKEND: bad }, () => Promise.resolve().then(backendFromEnv)),
      (e: Error) =>
        e instanceof UsageError &&
        e.message ===
          `HYPERPROMPT_BACKEND="${bad}" is not one of auto, tensorflow, webgpu, wasm, wasm+blas, ` +
            `cpu${hint}`,
    );
  }
  // selectBackend's own checks (a library caller) say the same.
  await assert.rejects(
    selectBackend("WebGPU" as BackendName),
    /unknown backend "WebGPU"; expected one of .*cpu; did you mean webgpu\?$/,
  );
});

/** The backprop note of a selection (exactly one). */
function backpropNote(notes: readonly string[]): string {
  const found = notes.filter((n) => n.startsWith("backprop: "));
  assert.equal(found.length, 1, notes.join("; "));
  return found[0]!;
}

/** d/dv of sum(tanh(v·v)) through tf.variableGrads (the path training takes), read back. */
async function gradOfTanhSquare(): Promise<number[]> {
  const v = tf.variable(tf.tensor1d([0.5, -1.25, 2]));
  const before = tf.memory().numTensors;
  const { value, grads } = tf.variableGrads(() => tf.sum(tf.tanh(tf.mul(v, v))), [v]);
  const out = Array.from(await grads[v.name]!.data());
  tf.dispose([value, ...Object.values(grads)]);
  assert.equal(tf.memory().numTensors, before, "variableGrads leaked");
  v.dispose();
  return out;
}

Deno.test(
  "selectBackend installs the low-memory backward pass, records it, idempotent across backends; HYPERPROMPT_STOCK_BACKPROP=1 restores tfjs's",
  opts,
  async () => {
    const env = { ...NO_ENV, HYPERPROMPT_STOCK_BACKPROP: undefined };
    const stockGradients = Object.getPrototypeOf(tf.engine()).gradients;
    try {
      uninstallLowMemoryBackprop();
      const stock = await gradOfTanhSquare();
      const a = await withEnv(env, () => selectBackend("cpu", quiet));
      assert.ok(lowMemoryBackpropInstalled());
      assert.match(backpropNote(a.notes), /^backprop: low-memory backward pass \(model\/backprop/);
      // Again, then another backend, then back: still installed once (the engine is one object).
      const b = await withEnv(env, () => selectBackend("cpu", quiet));
      assert.match(backpropNote(b.notes), /low-memory/);
      const w = await withEnv(
        { ...env, HYPERPROMPT_NO_BLAS: "1" },
        () => selectBackend("wasm", quiet),
      );
      assert.match(backpropNote(w.notes), /low-memory/);
      await withEnv(env, () => selectBackend("cpu", quiet));
      assert.ok(lowMemoryBackpropInstalled());
      assert.notEqual(tf.engine().gradients, stockGradients);
      // Same gradients as tfjs's own (bit-identical: model/backprop_test.ts covers the cases).
      assert.deepEqual(await gradOfTanhSquare(), stock);
      assert.equal(await withEnv(env, () => Promise.resolve(backpropFromEnv())), "low-memory");

      // HYPERPROMPT_STOCK_BACKPROP=1: tfjs's own, whatever was installed before.
      const s = await withEnv(
        { ...env, HYPERPROMPT_STOCK_BACKPROP: "1" },
        () => selectBackend("cpu", quiet),
      );
      assert.ok(!lowMemoryBackpropInstalled());
      assert.equal(tf.engine().gradients, stockGradients);
      assert.match(backpropNote(s.notes), /^backprop: tfjs's own .*HYPERPROMPT_STOCK_BACKPROP=1/);
      assert.equal(
        await withEnv(
          { HYPERPROMPT_STOCK_BACKPROP: "1" },
          () => Promise.resolve(backpropFromEnv()),
        ),
        "stock",
      );
      assert.deepEqual(await gradOfTanhSquare(), stock);
      const z = await withEnv(
        { ...env, HYPERPROMPT_STOCK_BACKPROP: "0" },
        () => selectBackend("cpu", quiet),
      );
      assert.ok(lowMemoryBackpropInstalled());
      assert.match(backpropNote(z.notes), /low-memory/);

      // A bad value: an argument error naming the variable, before any backend starts.
      const before = currentBackendInfo();
      for (const bad of ["yes", "true", " 1", "2"]) {
        const msg = (e: Error) =>
          e instanceof UsageError &&
          e.message.startsWith(`HYPERPROMPT_STOCK_BACKPROP="${bad}" must be 1`);
        await assert.rejects(
          withEnv({ ...env, HYPERPROMPT_STOCK_BACKPROP: bad }, () => selectBackend("wasm", quiet)),
          msg,
        );
        await assert.rejects(
          withEnv(
            { HYPERPROMPT_STOCK_BACKPROP: bad },
            () => Promise.resolve().then(backpropFromEnv),
          ),
          msg,
        );
      }
      assert.equal(tf.getBackend(), "cpu");
      assert.equal(currentBackendInfo(), before);
      assert.ok(lowMemoryBackpropInstalled());
    } finally {
      uninstallLowMemoryBackprop();
    }
  },
);

Deno.test(
  "auto: skips tensorflow with a note and picks the best available engine",
  opts,
  async () => {
    const info = await withEnv(NO_ENV, () => selectBackend("auto", quiet));
    assert.ok(info.notes.some((n) => /tensorflow skipped/.test(n)), info.notes.join("; "));
    // On a machine with only a software WebGPU adapter, auto must not choose it.
    if (info.name !== "webgpu") {
      assert.equal(info.name, blasOk ? "wasm+blas" : "wasm");
      assert.ok(
        info.notes.some((n) => /webgpu (skipped|unavailable)/.test(n)),
        info.notes.join("; "),
      );
    } else {
      assert.doesNotMatch(info.adapter ?? "", /fallback/);
    }
    assert.deepEqual(currentBackendInfo(), info);
    await tf.setBackend("cpu");
    assert.equal(currentBackendInfo(), undefined, "stale info after a manual setBackend");
  },
);

// The adapter backend selection probes (tfjs's own request options), whose identity keys the table.
const adapter = await requestTfjsAdapter().catch(() => null);

Deno.test({
  name: `webgpu: a software adapter, taken only when asked for, is marked fallbackAdapter${
    adapter ? "" : " [SKIPPED: no WebGPU adapter]"
  }`,
  ignore: adapter === null,
  ...opts,
  fn: async () => {
    const info = adapter!.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
    const software = info.isFallbackAdapter === true;
    const noKernels = { ...quiet, fastElementwise: false }; // the flag, not the kernels, is tested
    try {
      const explicit = await withEnv(NO_ENV, () => selectBackend("webgpu", noKernels));
      assert.equal(explicit.name, "webgpu");
      assert.equal(explicit.fallbackAdapter, software ? true : undefined, explicit.adapter ?? "");
      // The description is of the adapter's own info, subgroup sizes included where reported.
      const reported = info as GPUAdapterInfo & { subgroupMaxSize?: number };
      assert.equal(
        explicit.adapter,
        adapterDescription(reported, software),
      );
      if ((reported.subgroupMaxSize ?? 0) > 0) {
        assert.match(explicit.adapter!, /, subgroups \d+-\d+/);
      }
      const viaEnv = await withEnv(
        { ...NO_ENV, HYPERPROMPT_BACKEND: "webgpu" },
        () => selectBackend("auto", noKernels),
      );
      assert.equal(viaEnv.fallbackAdapter, software ? true : undefined, viaEnv.adapter ?? "");
      const allowed = await withEnv(
        NO_ENV,
        () => selectBackend("auto", { ...noKernels, allowFallbackAdapter: true }),
      );
      if (allowed.name === "webgpu") {
        assert.equal(allowed.fallbackAdapter, software ? true : undefined, allowed.adapter ?? "");
      }
      // What the default profile of `deno task bench` goes by: no GPU on a software adapter.
      const { isGpuBackend } = await import("../benchmarks/cli.ts");
      assert.equal(isGpuBackend(explicit), !software);
    } finally {
      await tf.setBackend("cpu");
    }
  },
});

/** The tests' tuning table: one shape the rule of thumb gives to t32, routed to t64. */
const TUNED_KEY = "1x1 m9 n12 k16 NT";

async function t64Table(): Promise<MatMulTuningTable> {
  const { adapterId, TUNING_FORMAT, TUNING_VERSION } = await import("./webgpu/tuning.ts");
  return {
    format: TUNING_FORMAT,
    version: TUNING_VERSION,
    adapter: adapterId(adapter!.info),
    created: "2026-11-26T15:00:00.000Z",
    provenance: {},
    entries: { [TUNED_KEY]: { choice: "t64", heuristic: "t32", ms: { t32: 2, t64: 1 } } },
  };
}

Deno.test({
  name: `webgpu: the adapter's matmul tuning table is installed with the custom kernels${
    adapter ? "" : " [SKIPPED: no WebGPU adapter]"
  }`,
  ignore: adapter === null,
  ...opts,
  fn: async () => {
    const { serializeTuningTable } = await import("./webgpu/tuning.ts");
    const kernels = await import("./webgpu/mod.ts");
    const dir = await Deno.makeTempDir();
    const path = `${dir}/table.json`;
    const key = TUNED_KEY;
    await Deno.writeTextFile(path, serializeTuningTable(await t64Table()));
    try {
      const info = await withEnv(
        { ...NO_ENV, HYPERPROMPT_WEBGPU_TUNING: path },
        () => selectBackend("webgpu", quiet),
      );
      // The kernels' self-check passed, with its error and its time in the note.
      assert.ok(
        info.notes.some((n) =>
          /kernels installed \(self-check error [\d.e+-]+, \d+\.\d\d s, AdamW \d+ variables per dispatch\)/
            .test(n)
        ),
        info.notes.join("; "),
      );
      assert.ok(
        info.notes.some((n) => n.includes(`tuned by ${path} (1 shapes`)),
        info.notes.join("; "),
      );
      // The table's own choice (t64, which the rule of thumb's check never runs) was checked.
      assert.ok(
        info.notes.some((n) => /tuning table's 1 tiled choices passed the self-check/.test(n)),
        info.notes.join("; "),
      );
      kernels.resetWebgpuKernelStats();
      const y = tf.matMul(tf.ones([9, 16]), tf.ones([12, 16]), false, true);
      assert.equal((await y.data())[0], 16);
      tf.dispose(y);
      assert.deepEqual(kernels.webgpuKernelStats().shapes, { [key]: { t64: 1 } });
      // off: the rule of thumb; a named file that is missing: an error saying so.
      const off = await withEnv(
        { ...NO_ENV, HYPERPROMPT_WEBGPU_TUNING: "off" },
        () => selectBackend("webgpu", quiet),
      );
      assert.ok(off.notes.some((n) => /tuning off/.test(n)), off.notes.join("; "));
      await assert.rejects(
        withEnv(
          { ...NO_ENV, HYPERPROMPT_WEBGPU_TUNING: `${dir}/none.json` },
          () => selectBackend("webgpu", quiet),
        ),
        /HYPERPROMPT_WEBGPU_TUNING=.*none\.json: no such file/,
      );
    } finally {
      kernels.unregisterWebgpuKernels();
      await tf.setBackend("cpu");
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: `webgpu: a tuning table whose choices fail their check is dropped, the kernels stay${
    adapter ? "" : " [SKIPPED: no WebGPU adapter]"
  }`,
  ignore: adapter === null,
  ...opts,
  fn: async () => {
    const kernels = await import("./webgpu/mod.ts");
    const key = TUNED_KEY;
    const table = await t64Table();
    /** The tile that ran the table's shape. */
    const tileRun = async () => {
      kernels.resetWebgpuKernelStats();
      const y = tf.matMul(tf.ones([9, 16]), tf.ones([12, 16]), false, true);
      assert.equal((await y.data())[0], 16);
      tf.dispose(y);
      return Object.keys(kernels.webgpuKernelStats().shapes[key] ?? {});
    };
    try {
      await withEnv(
        { ...NO_ENV, HYPERPROMPT_WEBGPU_TUNING: "off" },
        () => selectBackend("webgpu", quiet),
      );
      const cases: [string, () => Promise<TunedSelfCheck>, RegExp][] = [
        [
          "wrong numbers",
          () => Promise.resolve({ ok: false, maxRelErr: 0.5, checked: ["t64 x"] }),
          /not used: its choices failed the self-check \(error 5\.0e-1\); the rule of thumb/,
        ],
        [
          "a throw",
          () => Promise.reject(new Error("device lost")),
          /not used: its choices failed the self-check \(threw: device lost\)/,
        ],
      ];
      for (const [what, check, note] of cases) {
        const notes: string[] = [];
        await installTuningTable(table, notes, check);
        assert.equal(notes.length, 1, `${what}: ${notes.join("; ")}`);
        assert.match(notes[0]!, note, what);
        assert.ok(kernels.webgpuKernelsInstalled() !== undefined, `${what}: kernels stay`);
        assert.deepEqual(await tileRun(), ["t32"], `${what}: the rule of thumb's tile runs`);
      }
      // The control: the real check passes and the table's own tile runs.
      const notes: string[] = [];
      await installTuningTable(table, notes);
      assert.match(notes.join("; "), /tuning table's 1 tiled choices passed the self-check/);
      assert.deepEqual(await tileRun(), ["t64"]);
    } finally {
      kernels.unregisterWebgpuKernels();
      await tf.setBackend("cpu");
    }
  },
});

Deno.test("adapterDescription(): names, subgroup sizes where reported (llvmpipe's Vulkan and GL adapters differ only there), fallback", () => {
  const llvmpipe = {
    description: "llvmpipe (LLVM 15.0.6, 256 bits)",
    vendor: "65541",
    device: "0",
    architecture: "",
  };
  const vulkan = adapterDescription({ ...llvmpipe, subgroupMinSize: 8, subgroupMaxSize: 8 }, true);
  const gl = adapterDescription({ ...llvmpipe, subgroupMinSize: 4, subgroupMaxSize: 128 }, true);
  assert.equal(
    vulkan,
    "llvmpipe (LLVM 15.0.6, 256 bits) (vendor 65541, device 0, subgroups 8-8, fallback adapter)",
  );
  assert.notEqual(vulkan, gl);
  // Either size not reported, or a maximum of 0: none said.
  for (
    const sizes of [{ subgroupMaxSize: 8 }, { subgroupMinSize: 8 }, {
      subgroupMinSize: 8,
      subgroupMaxSize: 0,
    }]
  ) {
    assert.equal(
      adapterDescription({ ...llvmpipe, ...sizes }, false),
      "llvmpipe (LLVM 15.0.6, 256 bits) (vendor 65541, device 0)",
      JSON.stringify(sizes),
    );
  }
  // An adapter that reports no subgroup sizes (or 0): none said; an architecture when given.
  assert.equal(
    adapterDescription({ ...llvmpipe, architecture: "ampere", subgroupMaxSize: 0 }, false),
    "llvmpipe (LLVM 15.0.6, 256 bits) (vendor 65541, device 0, ampere)",
  );
  assert.equal(
    adapterDescription({ description: "", vendor: "", device: "", architecture: "" }, false),
    "? (vendor ?, device ?)",
  );
});
