import { selectMethods } from "./cli.ts";
import assert from "node:assert/strict";
import { preset } from "../model/config.ts";
import { UsageError } from "../model/usage.ts";
import {
  type CommandRunner,
  denoCommandRunner,
  DEVICE_MEMORY_ENV,
  deviceMemoryOverride,
  deviceMemoryUsed,
  fittingMethodsAdvice,
  fmtGb,
  fmtGbPair,
  hasZeroLearningRateStep,
  HOST_MEMORY_SHARE,
  hostMemoryWarnings,
  isWasmBackend,
  kernelSetFor,
  memoryInputFor,
  NVIDIA_SMI_TIMEOUT_MS,
  optimizerMemoryFor,
  parseNvidiaSmiMemory,
  PIPE_GRACE_MS,
  planDeviceMemory,
  probeDeviceMemory,
  type RunBackend,
  timedCommandRunner,
  WASM_HEAP_BYTES,
  WASM_HEAP_MARGIN,
  WASM_XNN_HEAP_MARGIN,
  wasmHeapMargin,
  xnnMatMulFor,
} from "./device_memory.ts";
import { DEVICE_MARGIN } from "./device_memory.ts";
import { estimateTrainingMemory, largestFittingMicroBatch } from "./memory.ts";
import type { OptimizerConfig } from "./optim.ts";
import { optimizerConfigFor, optimizerSlotShapes, rowsPerPass } from "./trainer.ts";
import { t5ParamShapes } from "../model/t5.ts";
import { DEFAULT_TRAIN, runId, type RunSpec } from "./spec.ts";
import { type MethodName, METHODS, mtl, type MtlConfig } from "../model/methods/mod.ts";
import type { Method } from "../model/method.ts";

Deno.test("parseNvidiaSmiMemory: MiB per GPU line, the smallest; no number is unknown", () => {
  assert.deepEqual(parseNvidiaSmiMemory("81559\n"), { bytes: 81559 * 2 ** 20 });
  assert.deepEqual(parseNvidiaSmiMemory("143771\r\n81559\n"), { bytes: 81559 * 2 ** 20 });
  assert.deepEqual(parseNvidiaSmiMemory("[N/A]\n"), {
    bytes: undefined,
    reason: 'nvidia-smi gave no memory.total figure: GPU 0 printed "[N/A]"',
  });
  assert.deepEqual(parseNvidiaSmiMemory(""), {
    bytes: undefined,
    reason: "nvidia-smi printed no memory.total line",
  });
});

Deno.test("parseNvidiaSmiMemory: the MiB unit nvidia-smi prints without nounits is read; another unit is refused with the line", () => {
  // `--format=csv,noheader` (no nounits) prints "81559 MiB": before, that counted as no number.
  assert.deepEqual(parseNvidiaSmiMemory("81559 MiB\n"), { bytes: 81559 * 2 ** 20 });
  assert.deepEqual(parseNvidiaSmiMemory("143771 MiB\n81559 MiB\n"), { bytes: 81559 * 2 ** 20 });
  assert.deepEqual(parseNvidiaSmiMemory("80 GiB\n"), {
    bytes: undefined,
    reason: `nvidia-smi's memory.total unreadable: GPU 0 printed "80 GiB": unit "GiB", not MiB`,
  });
  // Not a smaller figure taken from the other GPU: the format is not understood, so unknown.
  assert.equal(parseNvidiaSmiMemory("81559\n80 GiB\n").bytes, undefined);
  for (const bad of ["lots\n", "-5\n", "0\n"]) {
    const r = parseNvidiaSmiMemory(bad);
    assert.equal(r.bytes, undefined, bad);
    assert.match(r.reason!, /^nvidia-smi's memory\.total unreadable: GPU 0 printed "/, bad);
  }
});

Deno.test("parseNvidiaSmiMemory: a GPU printing [N/A] is left out and the note says so", () => {
  assert.deepEqual(parseNvidiaSmiMemory("[N/A]\n81559\n"), {
    bytes: 81559 * 2 ** 20,
    note: 'GPU 0 printed "[N/A]": not counted, the smallest of the other GPUs taken',
  });
});

/** A fake nvidia-smi: `answers` by query (the first argument), recording the calls. */
function fakeSmi(
  answers: Record<string, { stdout: string; success?: boolean } | undefined>,
  calls: string[][] = [],
): CommandRunner {
  return (cmd, args) => {
    calls.push([cmd, ...args]);
    const a = answers[args[0]!];
    return Promise.resolve(
      a === undefined ? { success: false, stdout: "Field is not a valid field to query." } : {
        success: a.success ?? true,
        stdout: a.stdout,
      },
    );
  };
}

Deno.test("probeDeviceMemory: override first, else nvidia-smi; a missing or failing binary is unknown", async () => {
  const calls: string[][] = [];
  const smi = (stdout: string, success = true): CommandRunner => (cmd, args) => {
    calls.push([cmd, ...args]);
    return Promise.resolve({ success, stdout });
  };
  assert.deepEqual(await probeDeviceMemory(undefined, smi("81559\n")), {
    bytes: 81559 * 2 ** 20,
    source: "nvidia-smi",
  });
  assert.deepEqual(calls[0], [
    "nvidia-smi",
    "--query-gpu=memory.total",
    "--format=csv,noheader,nounits",
  ]);
  assert.deepEqual(calls[1], [
    "nvidia-smi",
    "--query-gpu=mig.mode.current",
    "--format=csv,noheader",
  ]);
  assert.equal((await probeDeviceMemory(undefined, () => Promise.resolve(undefined))).bytes, null);
  assert.equal(
    (await probeDeviceMemory(undefined, smi("NVIDIA-SMI has failed", false))).bytes,
    null,
  );
  // The real runner with a program that does not exist: undefined, no exception.
  assert.equal(await denoCommandRunner("hyperprompt-no-such-program-x9", []), undefined);
  // An override wins; nvidia-smi is not run.
  calls.length = 0;
  const o = deviceMemoryOverride("40", undefined)!;
  assert.deepEqual(await probeDeviceMemory(o, smi("81559")), {
    bytes: 40e9,
    source: "--device-memory",
  });
  assert.equal(calls.length, 0);
});

Deno.test("probeDeviceMemory: unknown memory comes with its reason, in one line; a throwing runner is unknown, not an exception", async () => {
  // Before, the reader let the runner's exception through (bench's preflight crashed) and gave
  // no reason for a failing or figureless nvidia-smi.
  assert.deepEqual(
    await probeDeviceMemory(undefined, () => Promise.reject(new Error("NotCapable: --allow-run"))),
    { bytes: null, reason: "nvidia-smi could not be run: NotCapable: --allow-run" },
  );
  assert.deepEqual(await probeDeviceMemory(undefined, () => Promise.resolve(undefined)), {
    bytes: null,
    reason: "nvidia-smi not found (no NVIDIA driver)",
  });
  const failing = fakeSmi({
    "--query-gpu=memory.total": {
      success: false,
      stdout: "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n" +
        "Make sure that the latest NVIDIA driver is installed and running.\n\n",
    },
  });
  assert.deepEqual(await probeDeviceMemory(undefined, failing), {
    bytes: null,
    reason: `nvidia-smi failed: "NVIDIA-SMI has failed because it couldn't communicate with the ` +
      `NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running."`,
  });
  assert.deepEqual(
    await probeDeviceMemory(
      undefined,
      fakeSmi({ "--query-gpu=memory.total": { stdout: "[N/A]" } }),
    ),
    { bytes: null, reason: 'nvidia-smi gave no memory.total figure: GPU 0 printed "[N/A]"' },
  );
  // The unit, and a GPU without a figure, as the source says.
  assert.deepEqual(
    await probeDeviceMemory(
      undefined,
      fakeSmi({
        "--query-gpu=memory.total": { stdout: "[N/A]\n81559 MiB\n" },
        "--query-gpu=mig.mode.current": { stdout: "[N/A]\nDisabled\n" },
      }),
    ),
    {
      bytes: 81559 * 2 ** 20,
      source:
        'nvidia-smi; GPU 0 printed "[N/A]": not counted, the smallest of the other GPUs taken',
    },
  );
  // A runner that stops a hung nvidia-smi reads as failed, with what it said.
  assert.deepEqual(
    await probeDeviceMemory(
      undefined,
      () =>
        Promise.resolve({
          success: false,
          stdout: "nvidia-smi did not answer within 20000 ms; stopped",
        }),
    ),
    {
      bytes: null,
      reason: 'nvidia-smi failed: "nvidia-smi did not answer within 20000 ms; stopped"',
    },
  );
});

Deno.test("probeDeviceMemory: a GPU in MIG mode makes the memory unknown (memory.total is the whole card's)", async () => {
  const calls: string[][] = [];
  const mig = await probeDeviceMemory(
    undefined,
    fakeSmi({
      "--query-gpu=memory.total": { stdout: "81559\n" },
      "--query-gpu=mig.mode.current": { stdout: "Enabled\n" },
    }, calls),
  );
  assert.deepEqual(mig, {
    bytes: null,
    reason: "GPU 0 is in MIG mode: nvidia-smi's memory.total (85.5 GB) is the whole card's, and " +
      "the MIG instance's memory is not known",
  });
  assert.equal(calls.length, 2);
  // MIG disabled, not supported ([N/A]), or a driver that does not know the field: the total.
  for (const answer of [{ stdout: "Disabled\n" }, { stdout: "[N/A]\n" }, undefined]) {
    assert.deepEqual(
      await probeDeviceMemory(
        undefined,
        fakeSmi({
          "--query-gpu=memory.total": { stdout: "81559\n" },
          "--query-gpu=mig.mode.current": answer,
        }),
      ),
      { bytes: 81559 * 2 ** 20, source: "nvidia-smi" },
      JSON.stringify(answer),
    );
  }
  // The override is taken as the instance's memory: nvidia-smi is not asked.
  const o = deviceMemoryOverride("20", undefined)!;
  assert.deepEqual(await probeDeviceMemory(o, fakeSmi({})), o);
});

Deno.test("deviceMemoryUsed: MiB summed over GPUs; absent, failing or unparsable nvidia-smi is null with the reason", async () => {
  const calls: string[][] = [];
  const smi = (stdout: string, success = true): CommandRunner => (cmd, args) => {
    calls.push([cmd, ...args]);
    return Promise.resolve({ success, stdout });
  };
  assert.deepEqual(await deviceMemoryUsed(smi("1234\n")), { bytes: 1234 * 2 ** 20 });
  assert.deepEqual(calls[0], [
    "nvidia-smi",
    "--query-gpu=memory.used",
    "--format=csv,noheader,nounits",
  ]);
  assert.deepEqual(await deviceMemoryUsed(smi("0\r\n1000\n")), { bytes: 1000 * 2 ** 20 });
  assert.deepEqual(await deviceMemoryUsed(smi("0 MiB\r\n1000 MiB\n")), { bytes: 1000 * 2 ** 20 });
  assert.deepEqual(await deviceMemoryUsed(() => Promise.resolve(undefined)), {
    bytes: null,
    reason: "nvidia-smi not found (no NVIDIA driver)",
  });
  assert.deepEqual(await deviceMemoryUsed(smi("NVIDIA-SMI has failed", false)), {
    bytes: null,
    reason: 'nvidia-smi failed: "NVIDIA-SMI has failed"',
  });
  for (const bad of ["[N/A]\n", "", "12\n3 GiB\n", "-1\n"]) {
    const r = await deviceMemoryUsed(smi(bad));
    assert.equal(r.bytes, null, bad);
    assert.match(r.reason!, /^nvidia-smi printed no memory\.used number/);
  }
  const r = await deviceMemoryUsed(() => Promise.reject(new Error("NotCapable: --allow-run")));
  assert.deepEqual(r, {
    bytes: null,
    reason: "nvidia-smi could not be run: NotCapable: --allow-run",
  });
});

Deno.test("deviceMemoryUsed: a GPU printing [N/A] does not void the sample; the GPUs summed are named", async () => {
  // Before, one "[N/A]" line made the whole sample null.
  const smi = (stdout: string): CommandRunner => () => Promise.resolve({ success: true, stdout });
  assert.deepEqual(await deviceMemoryUsed(smi("12\n[N/A]\n30\n")), {
    bytes: 42 * 2 ** 20,
    gpus: [0, 2],
    note: 'GPU 1 printed "[N/A]": summed over GPU 0, 2 only',
  });
  assert.deepEqual(await deviceMemoryUsed(smi("[Not Supported]\n7 MiB\n")), {
    bytes: 7 * 2 ** 20,
    gpus: [1],
    note: 'GPU 0 printed "[Not Supported]": summed over GPU 1 only',
  });
});

Deno.test("timedCommandRunner: a hung program is stopped, even one that ignores SIGTERM, and read as failed", async () => {
  // A stand-in for an nvidia-smi that hangs (a driver in trouble): stopped after 100 ms, not 30 s.
  // `exec` keeps the ignored SIGTERM: the process is sleep itself, which a SIGTERM (what an
  // AbortSignal sends) would not stop; before, the runner waited the 30 s out.
  const t0 = performance.now();
  const hung = timedCommandRunner(100);
  assert.deepEqual(await hung("sh", ["-c", "trap '' TERM; exec sleep 30"]), {
    success: false,
    stdout: "sh did not answer within 100 ms; stopped",
  });
  assert.deepEqual(await hung("sleep", ["30"]), {
    success: false,
    stdout: "sleep did not answer within 100 ms; stopped",
  });
  assert.ok(performance.now() - t0 < 10_000, "it did not wait for the program");
  // The memory sample is then null with the reason, as for a failing nvidia-smi.
  const sample = await deviceMemoryUsed((_cmd, _args) => hung("sleep", ["30"]));
  assert.deepEqual(sample, {
    bytes: null,
    reason: 'nvidia-smi failed: "sleep did not answer within 100 ms; stopped"',
  });
  // A program that answers in time is read; a failing one is success false; a missing one is
  // undefined (not found).
  assert.deepEqual(await timedCommandRunner(10_000)("echo", ["81559"]), {
    success: true,
    stdout: "81559\n",
  });
  assert.deepEqual(await timedCommandRunner(10_000)("sh", ["-c", "echo oops; exit 3"]), {
    success: false,
    stdout: "oops\n",
  });
  assert.equal(await timedCommandRunner(10_000)("hyperprompt-no-such-program", []), undefined);
  // The default runner is this one with 20 s.
  assert.equal(NVIDIA_SMI_TIMEOUT_MS, 20_000);
});

Deno.test("timedCommandRunner: a failed read of the output kills the program and is read as failed", async () => {
  // Before, the runner rejected at once and left the program running (here for 30 s).
  const real = new Deno.Command("sleep", { args: ["30"], stdout: "null", stdin: "null" }).spawn();
  const kills: Deno.Signal[] = [];
  const program = {
    stdout: new ReadableStream<Uint8Array>({
      pull: () => Promise.reject(new Error("pipe broke")),
    }),
    status: real.status,
    kill: (signal?: Deno.Signal) => {
      kills.push(signal ?? "SIGTERM");
      real.kill(signal);
    },
    unref: () => real.unref(),
  };
  try {
    const t0 = performance.now();
    const answer = await timedCommandRunner(10_000, () => program)("sleep", ["30"]);
    assert.deepEqual(answer, {
      success: false,
      stdout: "sleep's output could not be read (pipe broke); stopped",
    });
    assert.deepEqual(kills, ["SIGKILL"]);
    // Its end was awaited (within the kill grace): the status has settled with the signal.
    const settled = await Promise.race([real.status, Promise.resolve(undefined)]);
    assert.equal(settled?.signal, "SIGKILL");
    assert.ok(performance.now() - t0 < 5_000, "it did not wait for the program");
  } finally {
    try {
      real.kill("SIGKILL");
    } catch {
      // Killed by the runner.
    }
    await real.status;
  }
});

Deno.test("timedCommandRunner: a program that ended is answered, also when a process it left holds the pipe", async () => {
  // `sleep 30 &` inherits sh's stdout and keeps the pipe open after sh exits. Before, the runner
  // waited for the pipe's end and answered "did not answer within 10000 ms" after 10 s.
  const t0 = performance.now();
  const answer = await timedCommandRunner(10_000)("sh", ["-c", "sleep 30 & echo $!"]);
  const elapsed = performance.now() - t0;
  const pid = Number(answer?.stdout.trim());
  try {
    assert.equal(answer?.success, true, String(answer?.stdout));
    assert.match(answer!.stdout, /^\d+\n$/);
    // About PIPE_GRACE_MS after sh's end; far below the 10 s limit.
    assert.ok(elapsed >= PIPE_GRACE_MS && elapsed < 5_000, `${elapsed} ms`);
  } finally {
    if (Number.isInteger(pid) && pid > 0) Deno.kill(pid, "SIGKILL");
  }
});

Deno.test("deviceMemoryOverride: the flag beats the variable; bad values name their source", () => {
  assert.deepEqual(deviceMemoryOverride(undefined, "141"), {
    bytes: 141e9,
    source: DEVICE_MEMORY_ENV,
  });
  assert.equal(deviceMemoryOverride("80", "141")!.bytes, 80e9);
  assert.equal(deviceMemoryOverride(undefined, ""), undefined);
  assert.equal(deviceMemoryOverride(undefined, undefined), undefined);
  for (const bad of ["0", "-3", "lots", "", "Infinity"]) {
    assert.throws(
      () => deviceMemoryOverride(bad, undefined),
      (e: Error) =>
        e instanceof UsageError && e.message.includes("--device-memory") &&
        e.message.includes(`"${bad}"`),
    );
  }
  // A number with its unit: the message says to drop the unit; a word gets no such hint.
  for (const [text, hint] of [["80GB", true], ["85.5 GiB", true], ["lots", false]] as const) {
    assert.throws(
      () => deviceMemoryOverride(undefined, text),
      (e: Error) =>
        e instanceof UsageError && e.message.startsWith(`${DEVICE_MEMORY_ENV} must be`) &&
        e.message.endsWith(hint ? "(the number alone, without a unit)" : `"${text}"`),
    );
  }
});

function spec(train: Partial<RunSpec["train"]> = {}, seed = 0): RunSpec {
  const s: Omit<RunSpec, "id"> = {
    profile: "t",
    model: "tiny-v1_1",
    backbone: "random",
    benchmark: "glue",
    tasks: ["rte", "cola"],
    method: { name: "mtl", label: "MTL", config: {} },
    seed,
    // Input 64: long enough that activations, not weights, set the peak (batch 8 > micro 4 > 2).
    train: { ...DEFAULT_TRAIN, batchSize: 8, maxInputLength: 64, maxTargetLength: 4, ...train },
    backend: "auto",
  };
  return { ...s, id: runId(s) };
}

const GPU: RunBackend = { name: "webgpu", gpu: true };
const CONFIG = preset("tiny-v1_1");

/** The estimate of `s` at micro-batch `m` on the fused (webgpu) kernels. */
function peakAt(s: RunSpec, m: number): number {
  return estimateTrainingMemory(memoryInputFor(s, CONFIG, "fused", m)).peak;
}

Deno.test("memoryInputFor: per-task variables for the tasks the method tells apart (DPR shares WSC's where the run has WSC)", () => {
  const sg = (tasks: string[]): RunSpec => ({
    ...spec(),
    benchmark: "super_glue",
    tasks,
    trainOnlyTasks: ["dpr"],
  });
  assert.equal(memoryInputFor(sg(["cb", "wsc"]), CONFIG, "composite").numTasks, 2);
  assert.equal(memoryInputFor(sg(["cb", "rte_sg"]), CONFIG, "composite").numTasks, 3);
  assert.equal(memoryInputFor(spec(), CONFIG, "composite").numTasks, 2);
});

Deno.test("memoryInputFor: the run's z-loss and label smoothing reach the estimate", () => {
  assert.equal(memoryInputFor(spec({ zLoss: 1e-4 }), CONFIG, "composite").zLoss, 1e-4);
  assert.equal("zLoss" in memoryInputFor(spec(), CONFIG, "composite"), false);
  const ls = memoryInputFor(spec({ labelSmoothing: 0.1 }), CONFIG, "composite");
  assert.equal(ls.labelSmoothing, 0.1);
  assert.equal("labelSmoothing" in memoryInputFor(spec(), CONFIG, "composite"), false);
  // On the stock ops it costs a few [tokens] tensors (benchmarks/memory_test.ts measures them).
  const at = (s: RunSpec) => estimateTrainingMemory(memoryInputFor(s, CONFIG, "composite", 8));
  assert.ok(at(spec({ zLoss: 1e-4 })).peak > at(spec()).peak);
});

Deno.test("memoryInputFor: the optimizer settings the op-by-op update's temporaries depend on reach the estimate", () => {
  const opt = (train: Partial<RunSpec["train"]>) =>
    memoryInputFor(spec(train), CONFIG, "composite").optimizer;
  assert.deepEqual(opt({}), { kind: "adafactor" });
  assert.deepEqual(opt({ optimizer: "adamw", weightDecay: 0.01 }), {
    kind: "adamw",
    weightDecay: 0.01,
  });
  const adafactor = { multiplyByParameterScale: true, minDimSizeToFactor: 128 };
  assert.deepEqual(opt({ weightDecay: 0.01, adafactor }), {
    kind: "adafactor",
    ...adafactor,
    weightDecay: 0.01,
  });
  // T5X's rate: applied apart (op by op on every backend) at a warmup_linear schedule's step 0.
  const rate = { weightDecayRate: 1e-5 };
  assert.deepEqual(opt({ adafactor: rate }), { kind: "adafactor", ...rate });
  assert.deepEqual(
    opt({ adafactor: rate, schedule: { kind: "warmup_linear", warmupSteps: 10 } }),
    { kind: "adafactor", ...rate, zeroLearningRateStep: true },
  );
  // On the stock ops (cpu, tfjs-node) the decay term's temporaries raise the update phase; on
  // webgpu's in-place update only where the step runs op by op.
  const update = (train: Partial<RunSpec["train"]>, k: "composite" | "fused") =>
    estimateTrainingMemory(memoryInputFor(spec(train), CONFIG, k)).phases.update;
  assert.ok(update({ weightDecay: 0.01 }, "composite") > update({}, "composite"));
  assert.equal(update({ weightDecay: 0.01 }, "fused"), update({}, "fused"));
  const apart = { adafactor: { ...rate, multiplyByParameterScale: true } };
  assert.ok(update(apart, "fused") > update({ adafactor: rate }, "fused"));
});

Deno.test("memoryInputFor: the estimate's optimizer state is the slots the trainer's optimizer keeps (optimizerConfigFor)", () => {
  // MTL trains every backbone variable: the estimate's optimizer state must be, byte for byte,
  // the float32 slots benchmarks/trainer.ts `optimizerSlotShapes` names for them (trainer_test
  // checks those against the slots createOptimizer makes), under the configuration `train`
  // creates its optimizer with.
  const slotBytes = (cfg: OptimizerConfig) => {
    let n = 0;
    for (const [, shape] of t5ParamShapes(CONFIG)) {
      for (const [, s] of optimizerSlotShapes(cfg, shape)) n += s.reduce((a, b) => a * b, 1);
    }
    return 4 * n;
  };
  const trains: Partial<RunSpec["train"]>[] = [
    {},
    // Every tiny-v1_1 matrix has a dimension of 64 (d_model): a threshold of 128 leaves them
    // all unfactored.
    { adafactor: { minDimSizeToFactor: 128 } },
    { adafactor: { multiplyByParameterScale: true, weightDecayRate: 1e-5 }, weightDecay: 0.01 },
    { optimizer: "adamw", weightDecay: 0.01 },
  ];
  const states = new Set<number>();
  for (const train of trains) {
    const s = spec(train);
    const est = estimateTrainingMemory(memoryInputFor(s, CONFIG, "composite"));
    assert.equal(est.optimizerState, slotBytes(optimizerConfigFor(s.train)), JSON.stringify(train));
    states.add(est.optimizerState);
  }
  assert.equal(states.size, 3, "the factoring threshold and AdamW change the state");
  // Settings a TrainSpec does not reach (a first moment, no factoring) reach the estimate too.
  const input = memoryInputFor(spec(), CONFIG, "composite");
  for (
    const cfg of [
      { kind: "adafactor", beta1: 0.9 },
      { kind: "adafactor", factored: false },
      { kind: "adafactor", beta1: 0.9, factored: false, minDimSizeToFactor: 128 },
    ] satisfies OptimizerConfig[]
  ) {
    const est = estimateTrainingMemory({ ...input, optimizer: optimizerMemoryFor(cfg, false) });
    assert.equal(est.optimizerState, slotBytes(cfg), JSON.stringify(cfg));
  }
});

Deno.test("planDeviceMemory: a run not planned in micro-batches is estimated at the trainer's rows per pass (rowsPerPass)", () => {
  const opts = { backendOf: () => GPU, configOf: () => CONFIG, modelName: () => "tiny-v1_1" };
  for (const [micro, want] of [[undefined, 8], [8, 8], [16, 8], [4, 4], [2, 2]] as const) {
    const s = spec(micro === undefined ? {} : { microBatchSize: micro });
    const p = planDeviceMemory([s], { ...opts, device: undefined }).runs.get(s.id)!;
    assert.equal(p.microBatchSize, want, `microBatchSize ${micro}`);
    assert.equal(p.microBatchSize, rowsPerPass(s.train));
    assert.equal(p.chosen, false);
    assert.equal(p.estimate.peak, peakAt(s, want), "estimated at those rows");
  }
});

Deno.test("hasZeroLearningRateStep: a warmup_linear warmup's first update, or a peak rate of 0", () => {
  const t = (train: Partial<RunSpec["train"]>) => hasZeroLearningRateStep(spec(train).train);
  assert.equal(t({ schedule: { kind: "constant", warmupSteps: 0 } }), false);
  assert.equal(t({ schedule: { kind: "warmup_linear", warmupSteps: 10 } }), true);
  assert.equal(t({ schedule: { kind: "warmup_linear", warmupSteps: 0 } }), false);
  assert.equal(t({ schedule: { kind: "warmup_rsqrt", warmupSteps: 10 } }), false);
  assert.equal(t({ learningRate: 0 }), true);
});

Deno.test("planDeviceMemory: the largest fitting micro-batch, once per configuration; refusals; unknown memory changes nothing", () => {
  const runs = [spec({}, 0), spec({}, 1)];
  const opts = {
    backendOf: () => GPU,
    configOf: () => CONFIG,
    modelName: () => "tiny-v1_1",
  };
  // A device where micro-batch 2 fits with the 10% margin and 4 does not.
  const bytes = (peakAt(runs[0]!, 2) / 0.9) * 1.001;
  assert.ok(peakAt(runs[0]!, 4) > 0.9 * bytes);
  const plan = planDeviceMemory(runs, { ...opts, device: { bytes, source: "test" } });
  assert.deepEqual([...plan.microBatchSizes], [[runs[0]!.id, 2], [runs[1]!.id, 2]]);
  assert.equal(plan.notes.length, 1, plan.notes.join("\n")); // two seeds, one configuration
  assert.match(plan.notes[0]!, /micro-batches of 2/);
  assert.match(plan.notes[0]!, /fused kernels, low-memory backward pass/);
  assert.equal(plan.refusals.length, 0);
  assert.equal(plan.runs.get(runs[0]!.id)!.estimate.peak, peakAt(runs[0]!, 2));
  // tfjs's own backward pass (HYPERPROMPT_STOCK_BACKPROP=1, passed by cli.ts) keeps every
  // intermediate's gradient: a larger estimate (at this tiny size only slightly: webgpu frees a
  // buffer only when its command batch is submitted, which memory.ts models as 64 nodes late).
  // On a device where its one row does not fit it refuses; on one where its micro-batch 2 fits,
  // the low-memory pass gets at least as large a micro-batch.
  const stockAt = (m: number) =>
    estimateTrainingMemory(memoryInputFor(runs[0]!, CONFIG, "fused", m, "stock")).peak;
  for (const m of [1, 2, 4, 8]) assert.ok(stockAt(m) >= peakAt(runs[0]!, m), `micro ${m}`);
  const stockBytes = stockAt(1); // 0.9 · stockBytes < stockAt(1): not even one row fits
  const stock = planDeviceMemory(runs, {
    ...opts,
    device: { bytes: stockBytes, source: "test" },
    backprop: "stock",
  });
  assert.equal(stock.refusals.length, 2);
  assert.match(stock.refusals[0]!, /even at micro-batch 1 .*fused kernels, stock backward pass/);
  const bigger = (stockAt(2) / 0.9) * 1.001;
  assert.ok(stockAt(4) > 0.9 * bigger);
  const s2 = planDeviceMemory(runs, {
    ...opts,
    device: { bytes: bigger, source: "test" },
    backprop: "stock",
  });
  assert.equal(s2.microBatchSizes.get(runs[0]!.id), 2);
  assert.equal(s2.runs.get(runs[0]!.id)!.estimate.peak, stockAt(2));
  const low2 = planDeviceMemory(runs, { ...opts, device: { bytes: bigger, source: "test" } });
  const lowMicro = low2.microBatchSizes.get(runs[0]!.id) ?? 8;
  assert.ok(lowMicro >= 2, `low-memory micro-batch ${lowMicro}`);
  assert.equal(
    lowMicro,
    largestFittingMicroBatch(memoryInputFor(runs[0]!, CONFIG, "fused"), bigger, DEVICE_MARGIN),
  );

  // Not even one row fits: refused, naming the run, the estimate and the device.
  const tiny = planDeviceMemory(runs.slice(0, 1), {
    ...opts,
    device: { bytes: peakAt(runs[0]!, 1) * 0.5, source: "test" },
  });
  assert.equal(tiny.refusals.length, 1);
  assert.match(tiny.refusals[0]!, new RegExp(`run ${runs[0]!.id} .*even at micro-batch 1`));
  assert.equal(tiny.microBatchSizes.size, 0);

  // An explicit micro-batch that does not fit: refused with the one that would.
  const explicit = spec({ microBatchSize: 4 });
  const ex = planDeviceMemory([explicit], { ...opts, device: { bytes, source: "test" } });
  assert.equal(ex.refusals.length, 1);
  assert.match(ex.refusals[0]!, /train\.microBatchSize 4 .*set train\.microBatchSize to 2/);
  // ... and one that fits is left alone.
  const fine = planDeviceMemory([spec({ microBatchSize: 2 })], {
    ...opts,
    device: { bytes, source: "test" },
  });
  assert.equal(fine.refusals.length + fine.microBatchSizes.size, 0);

  // Memory unknown, or a CPU backend (not even with a device size): nothing chosen or refused,
  // the estimate still given.
  for (
    const [p, k] of [
      [planDeviceMemory(runs, { ...opts, device: undefined }), "fused"],
      [
        planDeviceMemory(runs, {
          ...opts,
          backendOf: () => ({ name: "cpu", gpu: false }),
          device: { bytes: 1, source: "test" },
        }),
        "composite",
      ],
    ] as const
  ) {
    assert.equal(p.microBatchSizes.size + p.refusals.length + p.notes.length, 0);
    const est = estimateTrainingMemory(memoryInputFor(runs[0]!, CONFIG, k, 8)).peak;
    assert.equal(p.runs.get(runs[0]!.id)!.estimate.peak, est);
    assert.equal(p.runs.get(runs[0]!.id)!.fits, undefined);
  }
});

Deno.test("kernelSetFor: fused on webgpu, fused-wasm(-blas) on wasm, composite on cpu and tensorflow", () => {
  assert.equal(kernelSetFor("webgpu"), "fused");
  assert.equal(kernelSetFor("wasm+blas"), "fused-wasm-blas");
  assert.equal(kernelSetFor("wasm"), "fused-wasm");
  assert.equal(kernelSetFor("tensorflow"), "composite");
  assert.equal(kernelSetFor("cpu"), "composite");
  // HYPERPROMPT_WASM_STOCK_ELEMENTWISE=1: selectBackend installs no wasm fused kernels.
  assert.equal(kernelSetFor("wasm+blas", true), "composite");
  assert.equal(kernelSetFor("wasm", true), "composite");
  assert.equal(kernelSetFor("webgpu", true), "fused");
  assert.equal(kernelSetFor("wasm+blas", false), "fused-wasm-blas");
  const saved = Deno.env.get("HYPERPROMPT_WASM_STOCK_ELEMENTWISE");
  try {
    Deno.env.set("HYPERPROMPT_WASM_STOCK_ELEMENTWISE", "1");
    assert.equal(kernelSetFor("wasm+blas"), "composite", "the default reads the variable");
  } finally {
    if (saved === undefined) Deno.env.delete("HYPERPROMPT_WASM_STOCK_ELEMENTWISE");
    else Deno.env.set("HYPERPROMPT_WASM_STOCK_ELEMENTWISE", saved);
  }
  assert.ok(isWasmBackend("wasm") && isWasmBackend("wasm+blas"));
  assert.ok(!isWasmBackend("webgpu") && !isWasmBackend("cpu"));
});

Deno.test("WASM_HEAP_BYTES is the installed tfjs-backend-wasm's heap limit (emscripten getHeapMax)", async () => {
  const url = import.meta.resolve("@tensorflow/tfjs-backend-wasm");
  const dist = new URL("./tf-backend-wasm.node.js", url.replace(/[^/]*$/, ""));
  const text = await Deno.readTextFile(dist);
  const max = [...text.matchAll(/getHeapMax\(\)\s*\{\s*return\s+(\d+)/g)].map((m) => Number(m[1]));
  assert.ok(max.length > 0, `no getHeapMax() in ${dist}`);
  assert.deepEqual([...new Set(max)], [WASM_HEAP_BYTES]);
  // 4 GiB (the wasm32 limit) less one 64 KiB page
  assert.equal(WASM_HEAP_BYTES, 2 ** 32 - 2 ** 16);
});

/** The spec's runs planned on the wasm heap (`backend` wasm+blas or wasm), GPU memory given. */
function onWasm(specs: readonly RunSpec[], backend = "wasm+blas") {
  return planDeviceMemory(specs, {
    backendOf: () => ({ name: backend, gpu: false }),
    configOf: (s) => preset(s.model as string),
    modelName: (s) => String(s.model),
    // The GPU's memory does not apply to a wasm run.
    device: { bytes: 1e12, source: "--device-memory" },
  });
}

Deno.test("planDeviceMemory: runs of one configuration on a GPU and off it are planned apart", () => {
  // tfjs-node-gpu ("tensorflow", a GPU) and the cpu backend share the composite kernel set, so
  // two such runs of one configuration have the same memory input: only the device tells their
  // plans apart (the GPU's memory for the one, none for the other).
  const runs = [spec({}, 0), spec({}, 1)];
  const onGpu: RunBackend = { name: "tensorflow", gpu: true };
  const onCpu: RunBackend = { name: "cpu", gpu: false };
  const at = (m: number) =>
    estimateTrainingMemory(memoryInputFor(runs[0]!, CONFIG, "composite", m)).peak;
  // A device where micro-batch 2 fits with the 10% margin and the whole batch of 8 does not.
  const bytes = (at(2) / 0.9) * 1.001;
  assert.ok(at(8) > 0.9 * bytes);
  for (const gpuFirst of [true, false]) {
    const gpuRun = runs[gpuFirst ? 0 : 1]!, cpuRun = runs[gpuFirst ? 1 : 0]!;
    const plan = planDeviceMemory(runs, {
      backendOf: (s) => s === gpuRun ? onGpu : onCpu,
      device: { bytes, source: "test" },
      configOf: () => CONFIG,
      modelName: () => "tiny-v1_1",
    });
    const what = gpuFirst ? "GPU run first" : "cpu run first";
    assert.deepEqual([...plan.microBatchSizes], [[gpuRun.id, 2]], what);
    const g = plan.runs.get(gpuRun.id)!, c = plan.runs.get(cpuRun.id)!;
    assert.equal(g.chosen, true, what);
    assert.equal(g.estimate.peak, at(2), what);
    assert.equal(c.chosen, false, what);
    assert.equal(c.microBatchSize, 8, what);
    assert.equal(c.estimate.peak, at(8), what);
    assert.equal(plan.notes.length, 1, `${what}: ${plan.notes.join("\n")}`);
  }
});

Deno.test("planDeviceMemory on wasm: checked against the wasm heap, micro-batch or refusal, wasm's kernel set", () => {
  // tiny-v1_1, batch 256 x 480 / 4 tokens: about 12.9 GB as one pass, 3.2 GB in passes of 64
  // (512 tokens, 3.65 GB at 64, no longer fit 85 % of the heap once the attention Softmax's
  // gradient was counted whole, benchmarks/memory.ts T5Replay.softmax).
  const big = spec({ batchSize: 256, maxInputLength: 480 });
  // Plain wasm is estimated with tfjs-wasm's own matMul (XNNPACK's packed weights).
  const at = (m: number, k: "fused-wasm" | "fused-wasm-blas" = "fused-wasm-blas") =>
    estimateTrainingMemory(
      memoryInputFor(big, CONFIG, k, m, undefined, undefined, k === "fused-wasm"),
    ).peak;
  assert.ok(at(64) <= 0.85 * WASM_HEAP_BYTES && at(128) > 0.85 * WASM_HEAP_BYTES);
  const plan = onWasm([big]);
  assert.equal(plan.microBatchSizes.get(big.id), 64);
  const p = plan.runs.get(big.id)!;
  assert.equal(p.kernels, "fused-wasm-blas");
  assert.equal(p.wasmHeap, true);
  assert.equal(p.fits, true);
  assert.equal(p.estimate.peak, at(64));
  assert.equal(plan.notes.length, 1);
  assert.match(
    plan.notes[0]!,
    /exceeds 3\.7 GB usable \(85%\) of the wasm heap's 4\.3 GB \(tfjs-backend-wasm's 32-bit heap limit\); wasm\+blas, fused-wasm-blas kernels.*micro-batches of 64/,
  );
  // Plain wasm: its own kernel set (no BLAS head products), checked the same way.
  const plain = onWasm([big], "wasm");
  assert.equal(plain.runs.get(big.id)!.kernels, "fused-wasm");
  assert.equal(
    plain.runs.get(big.id)!.estimate.peak,
    at(plain.microBatchSizes.get(big.id)!, "fused-wasm"),
  );
  // A batch that fits is left as it is.
  const small = spec({});
  const fits = onWasm([small]);
  assert.equal(fits.microBatchSizes.size + fits.refusals.length + fits.notes.length, 0);
  assert.equal(fits.runs.get(small.id)!.fits, true);

  // T5 1.1 Base with AdamW: not even one row fits the heap; refused with wasm's advice. With
  // Adafactor it fits (no moment matrices): the advice names AdamW only when it is the cause.
  const base = (optimizer: "adamw" | "adafactor") => {
    const s = spec({ batchSize: 8, maxInputLength: 32, optimizer });
    return { ...s, model: "t5-v1_1-base" };
  };
  const adamw = onWasm([base("adamw")]);
  assert.equal(adamw.refusals.length, 1);
  assert.match(
    adamw.refusals[0]!,
    /even at micro-batch 1 .*exceeds 3\.7 GB usable \(85%\) of the wasm heap's 4\.3 GB.*: train on a GPU backend .*Adafactor instead of AdamW/,
  );
  assert.doesNotMatch(adamw.refusals[0]!, /GPU's|--device-memory/);
  const ada = onWasm([base("adafactor")]);
  assert.equal(ada.refusals.length, 0, ada.refusals.join("\n"));
  assert.equal(ada.runs.get(base("adafactor").id)!.fits, true);
  // The wasm estimate frees at once (no webgpu command batches): below the webgpu one at a short
  // input. (Not at 480 tokens, where the composite attention Softmax's gradient, 3·s + s/lk
  // beyond dy, outweighs webgpu's deferred frees: 3.23 GB against 3.14 GB at micro-batch 64.)
  const wasmSmall = memoryInputFor(small, CONFIG, "fused-wasm-blas", 8);
  assert.ok(
    estimateTrainingMemory(wasmSmall).peak <
      estimateTrainingMemory(memoryInputFor(small, CONFIG, "fused", 8)).peak,
  );
});

Deno.test("fittingMethodsAdvice: names the methods whose runs all fit and the --methods that runs them, shell-quoted", () => {
  const run = (label: string, seed: number): RunSpec => {
    const s = spec({}, seed);
    const method = { ...s.method, label };
    return { ...s, method, id: runId({ ...s, method }) };
  };
  const estimate = estimateTrainingMemory(memoryInputFor(spec(), CONFIG, "fused", 1));
  const planOf = (specs: RunSpec[], refused: ReadonlySet<string>) => ({
    runs: new Map(specs.map((s) => [s.id, {
      kernels: "fused" as const,
      microBatchSize: 1,
      chosen: false,
      estimate,
      fits: !refused.has(s.id),
    }])),
    microBatchSizes: new Map(),
    refusals: [...refused].map((id) => `run ${id}: does not fit`),
    notes: [],
  });
  const mtl = [run("MTL", 0), run("MTL", 1)];
  const adapter = [run("Vanilla Adapter", 0), run("Vanilla Adapter", 1)];
  const frozen = [run("HyperFormer++ (frozen)", 0)];
  const specs = [...mtl, ...adapter, ...frozen];
  // Nothing refused: no advice.
  assert.equal(fittingMethodsAdvice(specs, planOf(specs, new Set())), undefined);
  // One refused run makes its method one that does not fit; the others are named, in grid
  // order, quoted for the shell as one --methods argument.
  assert.equal(
    fittingMethodsAdvice(specs, planOf(specs, new Set([mtl[1]!.id]))),
    `Every run of "Vanilla Adapter", "HyperFormer++ (frozen)" fits; "MTL" has runs that do ` +
      `not. To train only the methods that fit, add --methods 'Vanilla Adapter,HyperFormer++ ` +
      `(frozen)'`,
  );
  assert.match(
    fittingMethodsAdvice(specs, planOf(specs, new Set([adapter[0]!.id, frozen[0]!.id])))!,
    /^Every run of "MTL" fits; "Vanilla Adapter", "HyperFormer\+\+ \(frozen\)" have runs that do not\. .* add --methods MTL$/,
  );
  const quote = [run("It's", 0), ...mtl];
  assert.match(
    fittingMethodsAdvice(quote, planOf(quote, new Set([mtl[0]!.id])))!,
    /--methods 'It'\\''s'$/,
  );
  // A label with a comma: one --methods per label (a joined value would split there), and the
  // CLI's selectMethods reads each back whole.
  const comma = [run("Adapter, shared", 0), ...adapter, ...mtl];
  const advice = fittingMethodsAdvice(comma, planOf(comma, new Set([mtl[0]!.id])))!;
  assert.match(advice, / add --methods 'Adapter, shared' --methods 'Vanilla Adapter'$/);
  assert.deepEqual(
    [...selectMethods(
      ["Adapter, shared", "Vanilla Adapter"],
      comma.map((s) => s.method.label),
      "p",
    )],
    ["Adapter, shared", "Vanilla Adapter"],
  );
  // Every method has a refused run: nothing to suggest.
  assert.equal(
    fittingMethodsAdvice(
      specs,
      planOf(specs, new Set([mtl[0]!.id, adapter[1]!.id, frozen[0]!.id])),
    ),
    undefined,
  );
});

Deno.test("planDeviceMemory: plain wasm counts XNNPACK's packed weights, wasm+blas and GPUs do not", () => {
  assert.equal(xnnMatMulFor("wasm"), true);
  for (const b of ["wasm+blas", "webgpu", "tensorflow", "cpu"]) {
    assert.equal(xnnMatMulFor(b), false);
  }
  const run = spec({});
  const planOn = (name: string) =>
    planDeviceMemory([run], {
      backendOf: () => ({ name, gpu: name === "webgpu" }),
      device: undefined,
      configOf: () => CONFIG,
      modelName: () => "tiny-v1_1",
    }).runs.get(run.id)!;
  const wasm = planOn("wasm"), blas = planOn("wasm+blas");
  // The estimate bench's preflight uses is memoryInputFor's with the flag for plain wasm only.
  assert.deepEqual(
    wasm.estimate,
    estimateTrainingMemory(
      memoryInputFor(run, CONFIG, "fused-wasm", 8, undefined, undefined, true),
    ),
  );
  assert.ok(wasm.estimate.xnnPackedWeights > 0);
  assert.ok(wasm.estimate.peak > blas.estimate.peak + wasm.estimate.xnnPackedWeights);
  assert.equal(blas.estimate.xnnPackedWeights, 0);
  assert.equal(planOn("webgpu").estimate.xnnPackedWeights, 0);
  assert.equal(memoryInputFor(run, CONFIG, "fused-wasm").xnnMatMul, undefined);
});

Deno.test("planDeviceMemory: plain wasm keeps 20 % of the heap free, wasm+blas 15 % (wasmHeapMargin)", () => {
  assert.equal(wasmHeapMargin(true), WASM_XNN_HEAP_MARGIN);
  assert.equal(wasmHeapMargin(false), WASM_HEAP_MARGIN);
  assert.equal(wasmHeapMargin(undefined), WASM_HEAP_MARGIN);
  // T5 1.1 Base with AdamW does not fit the heap either way: the refusal names the usable part.
  const base = preset("t5-v1_1-base");
  const run = spec({ optimizer: "adamw", batchSize: 4, maxInputLength: 128, maxTargetLength: 16 });
  const refusal = (name: string) =>
    planDeviceMemory([run], {
      backendOf: () => ({ name, gpu: false }),
      device: undefined,
      configOf: () => base,
      modelName: () => "t5-v1_1-base",
    }).refusals.join("\n");
  const usable = (f: number) => `${fmtGb(WASM_HEAP_BYTES * f)} usable (${Math.round(100 * f)}%)`;
  assert.ok(refusal("wasm").includes(usable(0.8)), refusal("wasm"));
  assert.ok(refusal("wasm+blas").includes(usable(0.85)), refusal("wasm+blas"));
});

Deno.test("planDeviceMemory: what a registered method's estimate cannot count is logged once, naming it, memory known or not", () => {
  // A method outside the built-in ones whose flopPlan names no way its parameters enter T5.
  const registry = METHODS as unknown as Record<string, Method<unknown>>;
  const opaque: Method<unknown> = {
    ...(mtl as Method<unknown>),
    name: "device_memory_test_opaque",
    variableShapes: undefined,
    countParams: (config, cfg, numTasks) => ({
      extra: 100 * numTasks,
      trainedBackbone: mtl.countParams(config, cfg as MtlConfig, numTasks).trainedBackbone,
    }),
  };
  registry[opaque.name] = opaque;
  try {
    // RunSpec's method names are the registry's keys as typed, without the one added here.
    const method = { name: opaque.name as MethodName, label: "Opaque", config: {} };
    const runs = [spec({}, 0), spec({}, 1)].map((s) => ({ ...s, method }));
    const opts = { backendOf: () => GPU, configOf: () => CONFIG, modelName: () => "tiny-v1_1" };
    for (const device of [undefined, { bytes: 1e12, source: "test" }]) {
      const plan = planDeviceMemory(runs, { ...opts, device });
      assert.deepEqual(plan.notes, [
        `Memory estimate: method "${opaque.name}": its flopPlan names no way its 200 ` +
        `parameters enter T5 (encoderPrompt, selfAttentionPrefix, adapters, elementwise), so ` +
        `the memory estimate counts no activations of them (their weights, gradients and ` +
        `optimizer state are counted)`,
        `Memory estimate: method "${opaque.name}": it states no variableShapes ` +
        `(model/method.ts), so the memory estimate takes its optimizer update's temporaries as ` +
        `6 × its 200 parameters on the stock ops and none on the fused kernel sets`,
      ]);
      assert.equal(plan.refusals.length, 0);
    }
    // A built-in method's runs add no such line.
    assert.deepEqual(planDeviceMemory([spec()], { ...opts, device: undefined }).notes, []);
  } finally {
    delete registry[opaque.name];
  }
});

Deno.test("fmtGbPair: a size over a limit reads as more than it, one decimal more at a time, at most 3", () => {
  assert.deepEqual(fmtGbPair(135.74e9, 135.66e9), ["135.74 GB", "135.66 GB"]);
  assert.deepEqual(fmtGbPair(135.7404e9, 135.7396e9), ["135.740 GB", "135.740 GB"]); // 3 at most
  assert.deepEqual(fmtGbPair(140e9, 135.66e9), ["140.0 GB", "135.7 GB"]); // apart at one
  assert.deepEqual(fmtGbPair(0.2051e9, 0.2049e9), ["0.21 GB", "0.20 GB"]);
  assert.deepEqual(fmtGbPair(0.2e6, 0.19e6), ["0.20 MB", "0.19 MB"]);
});

Deno.test("hostMemoryWarnings(): only runs on the host's memory whose peak exceeds 90% of it; one line per peak, naming one, two, or two and how many more", () => {
  // Plans with a given peak per run (only `estimate.peak` is read).
  const runs = (peaks: Record<string, number>) =>
    ({
      runs: new Map(Object.entries(peaks).map(([id, peak]) => [id, { estimate: { peak } }])),
      microBatchSizes: new Map(),
      refusals: [],
      notes: [],
    }) as unknown as Parameters<typeof hostMemoryWarnings>[1];
  const specs = [0, 1, 2, 3, 4].map((seed) => spec({}, seed));
  const [a, b, c, d, e] = specs as [RunSpec, RunSpec, RunSpec, RunSpec, RunSpec];
  const total = 1e9;
  const over = HOST_MEMORY_SHARE * total + 1;
  const under = HOST_MEMORY_SHARE * total - 1;
  const cpu: RunBackend = { name: "cpu", gpu: false };
  const on = (backends: Record<string, RunBackend>) => (s: RunSpec) => backends[s.id] ?? cpu;
  const warn = (peaks: Record<string, number>, backends: Record<string, RunBackend> = {}) =>
    hostMemoryWarnings(specs, runs(peaks), {
      backendOf: on(backends),
      totalBytes: total,
      modelName: () => "tiny-v1_1",
    });
  const name = (s: RunSpec) => `run ${s.id} (tiny-v1_1, MTL, glue, s${s.seed})`;
  // Just under 90%: nothing; just over: the run, in the singular.
  assert.deepEqual(warn({ [a.id]: under }), []);
  assert.deepEqual(warn({ [a.id]: over }), [
    `${name(a)}: estimated peak 0.9 GB, more than 90% of this machine's memory (1.0 GB): it ` +
    `may run out of memory or swap; train.microBatchSize splits each batch into passes that need ` +
    `less`,
  ]);
  // A GPU run and a wasm run are not on the host's memory: never warned here.
  assert.deepEqual(
    warn({ [a.id]: 2 * total, [b.id]: 2 * total }, {
      [a.id]: { name: "webgpu", gpu: true },
      [b.id]: { name: "wasm+blas", gpu: false },
    }),
    [],
  );
  // Two runs of one peak: both named; five: two named and the count of the others; two peaks:
  // a line each.
  assert.match(
    warn({ [a.id]: over, [b.id]: over })[0]!,
    new RegExp(
      `^2 runs \\(${name(a).replace(/[()]/g, "\\$&")}; ${
        name(b).replace(/[()]/g, "\\$&")
      }\\): .* they may run out`,
    ),
  );
  const five = warn({ [a.id]: over, [b.id]: over, [c.id]: over, [d.id]: over, [e.id]: over });
  assert.equal(five.length, 1);
  assert.match(five[0]!, /^5 runs \(run \w+ .*s0\); run \w+ .*s1\); and 3 more\): /);
  assert.equal(warn({ [a.id]: over, [b.id]: 2 * total }).length, 2);
});
