import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import {
  cli,
  DEFAULT_BACKENDS,
  DEFAULT_WORKLOADS,
  estimateFlops,
  freshReportPath,
  main,
  makeWorkload,
  MATMUL_BATCHES,
  matmulReps,
  measureSteps,
  optimizerPath,
  parseWorkload,
  PERF_USAGE,
  type PerfReport,
  planWasmT5,
  probeMatMulSeconds,
  type StepResult,
  stepsNote,
  timeMatMul,
  type WorkloadSpec,
} from "./perf.ts";
import process from "node:process";
import { t5Flops } from "../model/accounting.ts";
import { gitState } from "./provenance.ts";
import { preset } from "../model/config.ts";
import { estimateTrainingMemory } from "./memory.ts";
import { planDeviceMemory, WASM_HEAP_BYTES, WASM_HEAP_MARGIN } from "./device_memory.ts";
import { DEFAULT_TRAIN, runId, type RunSpec } from "./spec.ts";
import { gpuTest } from "../model/webgpu/testing.ts";
import { withKernel } from "../model/kernel_testing.ts";
import { withClock } from "../model/clock_testing.ts";
import { withEnv } from "../model/env_testing.ts";
import { inTempDir } from "../model/fs_testing.ts";
import { countReads } from "./queued_timing_testing.ts";
import { createOptimizer } from "./optim.ts";
import { updatePathsTaken } from "../model/fused.ts";
import { uniformValues } from "./rng.ts";
import { registerWebgpuKernels, unregisterWebgpuKernels } from "../model/webgpu/mod.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };

Deno.test("perf: quick run measures matmul and a training step per backend", opts, async () => {
  const dir = await Deno.makeTempDir();
  try {
    const r = await main([
      "--quick",
      "--backends",
      "cpu,wasm",
      "--sizes",
      "32",
      "--workloads",
      "block:1,8,16,32,2 t5:tiny-v1_1:1,8,4 t5:tiny-v1_1:2,8,4/1 t5:tiny-v1_1@1:1,8,4",
      "--steps",
      "1",
      "--max-seconds",
      "120",
      "--out-dir",
      dir,
    ]);
    assert.deepEqual(r.backends.map((b) => b.backend), ["cpu", "wasm"]);
    for (const b of r.backends) {
      assert.equal(b.error, undefined, b.error ?? "");
      assert.equal(b.matmul.length, 1);
      assert.ok(b.matmul[0]!.gflops > 0);
      assert.deepEqual(
        b.steps.map((s) => s.workload),
        ["block", "t5:tiny-v1_1", "t5:tiny-v1_1", "t5:tiny-v1_1@1"],
      );
      // "/1": the batch of 2 as 2 micro-batches of 1; FLOPs and tokens count the whole batch.
      const [, one, micro, oneLayer] = b.steps;
      // "@1": one encoder and one decoder layer instead of tiny-v1_1's two.
      assert.equal(one!.shape.layers, 2);
      assert.equal(oneLayer!.shape.layers, 1);
      assert.ok(oneLayer!.trainFlops < one!.trainFlops);
      assert.equal(micro!.shape.microBatch, 1);
      assert.equal(micro!.shape.microBatches, 2);
      assert.equal(one!.shape.microBatch, undefined);
      assert.equal(micro!.trainFlops, 2 * one!.trainFlops);
      for (const s of b.steps) {
        assert.ok(s.medianMs > 0 && s.tokensPerSec > 0 && s.trainFlops > 0, JSON.stringify(s));
        assert.equal(s.numTensors[0], s.numTensors[1], `${b.backend} ${s.workload} leaked`);
        assert.ok(s.tensorBytes > 0 && s.rssBytes > 0, `${b.backend} ${s.workload} memory`);
        assert.ok(s.optimizerMs > 0 && s.optimizerMs < s.medianMs, `${b.backend} optimizer share`);
        assert.equal(s.wasmHeapBytes !== undefined, b.backend === "wasm", "wasm heap reported");
        assert.equal(s.wasmHeapBytesBefore !== undefined, b.backend === "wasm");
        assert.ok(!(s.wasmHeapBytesBefore! > s.wasmHeapBytes!), "the heap never shrinks");
        // The plan's estimate of a wasm T5 step as run (block workloads are not planned).
        const planned = b.backend === "wasm" && s.workload.startsWith("t5:");
        assert.equal(s.wasmHeapEstimateBytes !== undefined, planned, s.workload);
        if (planned) assert.ok(s.wasmHeapEstimateBytes! > 0, s.workload);
        // perf's plain wasm runs without OpenBLAS: the estimate counts XNNPACK's packed copies.
        assert.equal(s.wasmXnnMatMul, planned ? true : undefined, s.workload);
        // The path measured in the steps: wasm's SIMD AdamW writes in place; cpu has none.
        assert.equal(s.optimizer, b.backend === "wasm" ? "adamw (in place)" : "adamw (op by op)");
      }
    }
    // The heap is the process's high-water mark: each workload starts from the size the one
    // before it left, so a workload that did not grow it reports an earlier one's peak.
    const wasmSteps = r.backends[1]!.steps;
    for (let i = 1; i < wasmSteps.length; i++) {
      assert.equal(wasmSteps[i]!.wasmHeapBytesBefore, wasmSteps[i - 1]!.wasmHeapBytes, `step ${i}`);
    }
    assert.equal(r.backends[1]!.info?.name, "wasm");
    const ew = r.backends[1]!.elementwise ?? [];
    assert.ok(ew.some((e) => e.name === "gated GELU (SIMD)"), JSON.stringify(ew));
    assert.ok(ew.every((e) => e.nsPerElement > 0));
    assert.equal(r.backends[0]!.elementwise, undefined, "cpu: no heap kernels");
    assert.ok(r.machine.hardwareConcurrency >= 1);
    const files = [...Deno.readDirSync(dir)].map((e) => e.name);
    assert.equal(files.length, 1);
    assert.match(files[0]!, /-cpu_wasm-quick\.json$/);
    const saved = JSON.parse(Deno.readTextFileSync(`${dir}/${files[0]}`));
    assert.equal(saved.backends.length, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("perf: a workload whose --steps would pass --max-seconds runs 1 step and says why", async () => {
  // Without --sizes the rate is 1 GFLOP/s, so the estimate is exact: 4 × FLOPs per step.
  const spec = "block:1,8,16,32,2";
  const perStep = (4 * estimateFlops(parseWorkload(spec))) / 1e9;
  const run = async (maxSeconds: number) => {
    const lines: string[] = [];
    const log = console.log;
    console.log = (...a: unknown[]) => lines.push(a.join(" "));
    try {
      const args = ["--backends", "cpu", "--sizes", "", "--workloads", spec, "--steps", "5"];
      const r = await main([...args, "--max-seconds", String(maxSeconds), "--no-save"]);
      return { step: r.backends[0]!.steps[0]!, lines };
    } finally {
      console.log = log;
    }
  };
  // 2 warm-up + 5 steps over the limit, 2 + 1 within it: 1 step, and the line naming both.
  const max = perStep * 5;
  const fewer = await run(max);
  assert.equal(fewer.step.reps, 1);
  const note = stepsNote(perStep * 7, max, 2, 5, false);
  assert.match(note, /^1 step: estimated \S+ s > --max-seconds \S+ \(2 warm-up \+ 5 steps at 4× /);
  assert.match(note, /over 1 GFLOP\/s \(no --sizes measured\)\)$/);
  assert.deepEqual(fewer.lines.filter((l) => l.includes("1 step")), [`  step ${spec}: ${note}`]);
  // Within the limit: every step, no such line.
  const all = await run(perStep * 8);
  assert.equal(all.step.reps, 5);
  assert.deepEqual(all.lines.filter((l) => l.includes("1 step")), []);
  assert.match(
    stepsNote(12.345, 5, 2, 5, true),
    /^1 step: estimated 12\.3 s .*matMul rate of --sizes\)$/,
  );
});

Deno.test("perf: --help says how --max-seconds cuts the steps and that a named webgpu is any adapter", () => {
  const help = PERF_USAGE.replace(/\s+/g, " ");
  assert.match(
    help,
    /--max-seconds S skip a measurement estimated over S seconds \(default 60\); one whose full count only would exceed S is timed once/,
  );
  assert.match(
    help,
    /default list: all, webgpu only on a real adapter; naming webgpu measures any adapter/,
  );
});

Deno.test("perf: bad options are rejected with the option name", async () => {
  await assert.rejects(main(["--backends", "tpu", "--no-save"]), /--backends: unknown "tpu"/);
  await assert.rejects(
    main(["--bogus"]),
    { message: "unknown flag --bogus; deno task perf --help lists the flags" },
  );
  await assert.rejects(main(["--steps", "0", "--no-save"]), /--steps must be a positive integer/);
  // Number() reads "0x2" as 2 and " " as 0: a typo is not a count.
  await assert.rejects(
    main(["--steps", "0x2", "--no-save"]),
    /--steps must be a positive integer, got "0x2"/,
  );
  await assert.rejects(main(["--sizes", "0x40", "--no-save"]), /--sizes: "0x40" is not/);
  await assert.rejects(
    main(["--max-seconds", "0x10", "--no-save"]),
    /--max-seconds must be a positive number, got "0x10"/,
  );
  await assert.rejects(
    main(["--workloads", "t5:tiny-v1_1:4,8,0x4", "--backends", "cpu", "--no-save"]),
    /expected 3 positive integers/,
  );
  // A stray comma: an empty item is refused, not dropped (a name lost in editing).
  await assert.rejects(
    main(["--backends", "cpu,,wasm", "--sizes", "8", "--no-save"]),
    /--backends "cpu,,wasm": an empty item \(a stray comma\?\); give backends separated by /,
  );
  await assert.rejects(
    main(["--backends", "cpu", "--sizes", "8,", "--no-save"]),
    /--sizes "8,": an empty item .*; deno task perf --help lists the flags$/,
  );
  // Both given: nothing is measured (the saving half would be dropped after the measuring).
  await assert.rejects(
    main(["--no-save", "--out-dir", "/tmp/perf-nowhere", "--backends", "cpu", "--sizes", "8"]),
    /--no-save and --out-dir \/tmp\/perf-nowhere contradict .*drop one/,
  );
  await assert.rejects(main(["--sizes", "0", "--no-save"]), /--sizes/);
  await assert.rejects(
    main(["--workloads", "gpt", "--backends", "cpu", "--sizes", "8", "--no-save"]),
    /unknown workload "gpt"/,
  );
  await assert.rejects(
    main(["--optimizer", "sgd", "--backends", "cpu", "--sizes", "8", "--no-save"]),
    /--optimizer must be adamw or adafactor/,
  );
  for (
    const w of ["t5:tiny-v1_1@0:2,8,4", "t5:tiny-v1_1@x", "t5:tiny-v1_1@1@2", "t5:tiny-v1_1@0x1"]
  ) {
    await assert.rejects(
      main(["--workloads", w, "--backends", "cpu", "--sizes", "8", "--no-save"]),
      /the layer count after "@" must be a positive integer/,
      w,
    );
  }
  for (
    const w of [
      "t5:tiny-v1_1:4,8,4/3",
      "t5:tiny-v1_1:4,8,4/0",
      "t5:tiny-v1_1:4,8,4/2/1",
      "t5:tiny-v1_1:4,8,4/0x2",
    ]
  ) {
    await assert.rejects(
      main(["--workloads", w, "--backends", "cpu", "--sizes", "8", "--no-save"]),
      /micro-batch after "\/" must be a positive integer dividing the batch 4/,
      w,
    );
  }
});

Deno.test("perf: an empty value (except --sizes or --workloads alone) or a repeated backend is refused in one line naming the flag (exit 2)", async () => {
  const empty = (flag: string, takes: string, value = "") =>
    `--${flag} needs a value (${takes}), got an empty one ("${value}": an ` +
    `unset variable?); deno task perf --help lists the flags`;
  const cases: [string[], string][] = [
    [["--backends="], empty("backends", "backends, comma-separated, e.g. cpu,wasm+blas")],
    [["--steps", ""], empty("steps", "a positive integer")],
    [["--out-dir="], empty("out-dir", "a folder")],
    [["--out-dir", " ", "--no-save"], empty("out-dir", "a folder", " ")],
    [["--max-seconds="], empty("max-seconds", "a positive number of seconds")],
    [["--rounds", ""], empty("rounds", "a positive integer")],
    [["--optimizer="], empty("optimizer", "adamw or adafactor")],
    // "" is "none" for these two (PERF_USAGE), but not for both at once, nor a list of nothing.
    [
      ["--sizes=", "--workloads", " "],
      `--sizes "" and --workloads " " leave nothing to measure; give a ` +
      `matMul size or a workload; deno task perf --help lists the flags`,
    ],
    [["--backends", ","], `--backends "," names no backend; deno task perf --help lists the flags`],
    // A repeated backend (a typo, or an attempt at repetition): --rounds repeats.
    [
      ["--backends", "cpu,wasm,cpu"],
      "--backends names cpu twice; --rounds N repeats the whole list (A/B variants alternate); " +
      "deno task perf --help lists the flags",
    ],
  ];
  const cwd = [...Deno.readDirSync(".")].map((e) => e.name).sort();
  for (const [args, message] of cases) {
    const err: string[] = [];
    assert.equal(await cli(args, { error: (s) => err.push(s) }), 2, args.join(" "));
    assert.deepEqual(err, [message], args.join(" "));
  }
  assert.deepEqual([...Deno.readDirSync(".")].map((e) => e.name).sort(), cwd, "nothing written");
  // Either alone is accepted (checked through the next argument's refusal: nothing runs).
  for (const flag of ["--sizes=", "--workloads="]) {
    await assert.rejects(main([flag, "--optimizer", "sgd"]), /--optimizer must be adamw/, flag);
  }
});

Deno.test("perf: freshReportPath keeps an earlier report of the same second", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const date = "2026-11-27T03:04:05.678Z";
    const first = await freshReportPath(dir, date, "cpu_wasm-quick");
    assert.equal(first, `${dir}/2026-11-27T030405Z-cpu_wasm-quick.json`);
    await Deno.writeTextFile(first, "{}");
    const second = await freshReportPath(dir, date, "cpu_wasm-quick");
    assert.equal(second, `${dir}/2026-11-27T030405Z-cpu_wasm-quick-2.json`);
    await Deno.writeTextFile(second, "{}");
    assert.equal(
      await freshReportPath(dir, date, "cpu_wasm-quick"),
      `${dir}/2026-11-27T030405Z-cpu_wasm-quick-3.json`,
    );
    assert.equal(
      await freshReportPath(dir, date, "cpu"),
      `${dir}/2026-11-27T030405Z-cpu.json`,
      "another name is not affected",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("perf: cli() prints a bad option or --out-dir as one line, exit 2, before measuring", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/a-file`;
    await Deno.writeTextFile(file, "x");
    const cases: [string[], RegExp][] = [
      [
        ["--backend", "wasm"],
        /^unknown flag --backend \(did you mean --backends\?\); deno task perf --help lists the flags$/,
      ],
      [
        ["--steps"],
        /^--steps needs a value \(a positive integer\); deno task perf --help lists the flags$/,
      ],
      [
        ["--steps", "--quick"],
        /^--steps needs a value \(a positive integer\), got the flag --quick after it;/,
      ],
      [
        ["--steps", "-3"],
        /^--steps must be a positive integer, got "-3"; deno task perf --help lists the flags$/,
      ],
      [
        ["--quick=1"],
        /^--quick takes no value, got "--quick=1"; deno task perf/,
      ],
      [
        ["--rounds", "2", "--rounds", "3"],
        /^--rounds given twice \("2", then "3"\)/,
      ],
      [
        ["--backends", "gpu"],
        /^--backends: unknown "gpu" .*\); deno task perf --help lists the flags$/,
      ],
      [
        ["--rounds", "x"],
        /^--rounds must be a positive integer, got "x"; deno task perf --help lists the flags$/,
      ],
      // Number() reads it as 2.
      [["--rounds", "0b10"], /^--rounds must be a positive integer, got "0b10"; /],
      // What --sizes takes, not just "bad"; 0 is no size either.
      ...["abc", "0", "2.5"].map((x): [string[], RegExp] => [
        ["--sizes", `256,${x}`],
        new RegExp(
          `^--sizes: "${x}" is not a positive integer \\(matMul sizes n, comma-separated, ` +
            `e\\.g\\. 256,512\\); deno task perf --help lists the flags$`,
        ),
      ]),
      [
        ["--max-seconds", "0"],
        /^--max-seconds must be a positive number, got "0"; deno task perf --help lists the flags$/,
      ],
      [
        ["--optimizer", "sgd"],
        /^--optimizer must be adamw or adafactor, got "sgd"; deno task perf --help lists the flags$/,
      ],
      [
        ["--workloads", "t5:nosuch"],
        /^--workloads "t5:nosuch": Unknown T5 preset "nosuch".*; deno task perf --help lists the flags$/,
      ],
      [
        ["--workloads", "t5:tiny-v1_1:0,8,4"],
        /^--workloads "t5:tiny-v1_1:0,8,4": expected 3 positive integers; deno task perf --help/,
      ],
      [
        // Heads that do not divide the width failed inside tfjs, mid-run, with a shape error.
        ["--backends", "cpu", "--sizes", "8", "--workloads", "block:1,8,16,32,3"],
        /^--workloads "block:1,8,16,32,3": the width D 16 must be a multiple of the heads H 3; deno task perf --help lists the flags$/,
      ],
      [
        ["--backends", "cpu", "--sizes", "8", "--out-dir", file],
        /^--out-dir .*a-file: is a file, not a folder$/,
      ],
    ];
    for (const [args, want] of cases) {
      const err: string[] = [];
      const start = performance.now();
      assert.equal(await cli(args, { error: (s) => err.push(s) }), 2, args.join(" "));
      assert.equal(err.length, 1);
      assert.match(err[0]!, want);
      assert.ok(performance.now() - start < 5000, `${args.join(" ")}: stopped before measuring`);
    }
    const out: string[] = [];
    assert.equal(await cli(["--help"], { log: (s) => out.push(s) }), 0);
    assert.match(out.join("\n"), /--backends LIST[\s\S]*--out-dir DIR/);
    // A failure while measuring or saving (here a stand-in for main) is exit 1, one line.
    const err: string[] = [];
    const failing = (a: string[]) => Promise.reject(new Error(`${a.join(" ")}: the step failed`));
    assert.equal(await cli(["--quick"], { error: (s) => err.push(s), main: failing }), 1);
    assert.deepEqual(err, ["--quick: the step failed"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A T5 workload of `preset` at batch `b`, 128 input / 16 target tokens, at most `micro` per pass. */
const t5Spec = (model: string, b: number, micro?: number): WorkloadSpec => ({
  kind: "t5",
  preset: model,
  nums: [b, 128, 16],
  ...(micro === undefined ? {} : { micro }),
});

/**
 * The runs `deno task bench`'s preflight would plan for a workload: full fine-tuning (MTL) of one
 * task with the preset's dropout and the optimizer's defaults, as perf trains it.
 */
function benchSpec(model: string, b: number, optimizer: "adamw" | "adafactor"): RunSpec {
  const s: Omit<RunSpec, "id"> = {
    profile: "perf",
    model,
    backbone: "random",
    benchmark: "glue",
    tasks: ["rte"],
    method: { name: "mtl", label: "MTL", config: {} },
    seed: 0,
    train: {
      ...DEFAULT_TRAIN,
      optimizer,
      batchSize: b,
      maxInputLength: 128,
      maxTargetLength: 16,
      dropout: preset(model).dropoutRate,
    },
    backend: "wasm+blas",
  };
  return { ...s, id: runId(s) };
}

Deno.test("perf: wasm heap plan is the bench preflight's: same estimate, margin and choice", () => {
  // The README's performance workloads (T5 1.1 Small at batch 32 with AdamW and Adafactor, Base
  // with Adafactor), with the low-memory backward pass (installed by default) and with tfjs's
  // own (HYPERPROMPT_STOCK_BACKPROP=1; the one those measurements ran with), plus Small at batch
  // 4 and Base with AdamW, which cannot fit.
  const cases = [
    ["t5-v1_1-small", 4, "adamw"],
    ["t5-v1_1-small", 32, "adamw"],
    ["t5-v1_1-small", 32, "adafactor"],
    ["t5-v1_1-base", 32, "adafactor"],
    ["t5-v1_1-base", 32, "adamw"],
  ] as const;
  const picks: Record<string, (number | string)[]> = {};
  for (const backprop of ["low-memory", "stock"] as const) {
    for (const kernels of ["fused-wasm-blas", "fused-wasm"] as const) {
      const key = `${backprop} ${kernels}`;
      picks[key] = [];
      const specs = cases.map(([p, b, o]) => benchSpec(p, b, o));
      const bench = planDeviceMemory(specs, {
        backendOf: () => ({ name: kernels === "fused-wasm" ? "wasm" : "wasm+blas", gpu: false }),
        device: undefined,
        configOf: (s) => preset(s.model as string),
        modelName: (s) => String(s.model),
        backprop,
      });
      for (const [i, [p, b, o]] of cases.entries()) {
        // bench's plain `wasm` is estimated with tfjs-wasm's own matMul (XNNPACK), as perf's
        // plain wasm (no OpenBLAS) reads it from model/wasm_kernels.ts.
        const xnnMatMul = kernels === "fused-wasm";
        const plan = planWasmT5(t5Spec(p, b), o, { kernels, backprop, xnnMatMul });
        const run = bench.runs.get(specs[i]!.id)!;
        assert.equal(run.kernels, kernels);
        const what = `${key} ${p} ${b} ${o}: ${JSON.stringify(plan)}`;
        if (typeof plan === "string") {
          assert.equal(run.fits, false, `bench refuses it too: ${what}`);
          picks[key]!.push("refused");
          continue;
        }
        assert.equal(run.fits, true, what);
        assert.equal(plan.micro, run.microBatchSize, `bench picks the same micro-batch: ${what}`);
        assert.equal(plan.bytes, run.estimate.peak, what);
        // 85 % of the heap usable, 80 % on plain wasm (device_memory.ts wasmHeapMargin).
        const usable = WASM_HEAP_BYTES * (xnnMatMul ? 0.8 : 0.85);
        assert.ok(plan.bytes <= usable, what);
        picks[key]!.push(plan.micro);
      }
    }
  }
  // What that gives: the low-memory backward pass fits Small's batch of 32 in one pass and
  // Base's in passes of 4; tfjs's keeps the measured micro-batches of Small (8 with AdamW, 16
  // with Adafactor) but Base in passes of 1 (2 ran at 3.59 GiB, over the 85 % kept usable).
  // Plain wasm (tfjs-wasm's XNNPACK matMul) also keeps a packed copy of every linear weight
  // (+0.24 GB for Small, +0.89 GB for Base): Small in smaller passes (with Adafactor 16 since
  // the estimate counts reshapes' saved inputs, a364ed6: one pass of 32 is estimated just over
  // the 80 % kept usable), and Base's
  // weights, gradients, accumulator, packed copies and Adafactor state alone exceed the heap.
  const expected: Record<string, (number | string)[]> = {
    "low-memory fused-wasm-blas": [4, 32, 32, 4, "refused"],
    "low-memory fused-wasm": [4, 16, 16, "refused", "refused"],
    "stock fused-wasm-blas": [4, 8, 16, 1, "refused"],
    "stock fused-wasm": [4, 8, 8, "refused", "refused"],
  };
  assert.deepEqual(picks, expected);
  // The refusal says why and what to try; an explicit /M is an upper bound; a batch that fits
  // whole runs whole.
  const heap = { kernels: "fused-wasm-blas", backprop: "low-memory", xnnMatMul: false } as const;
  assert.match(
    String(planWasmT5(t5Spec("t5-v1_1-base", 4), "adamw", heap)),
    /^estimated peak 5\.\d GB even at micro-batch 1 \(weights, gradients, accumulator and AdamW moments alone: 5\.\d GB\) exceeds 3\.7 GB usable \(85%\) of the wasm heap's 4\.3 GB; fused-wasm-blas kernels, low-memory backward pass; try --optimizer adafactor$/,
  );
  const capped = planWasmT5(t5Spec("t5-v1_1-small", 32, 2), "adamw", heap);
  assert.ok(typeof capped !== "string" && capped.micro === 2, JSON.stringify(capped));
  const tiny = planWasmT5(t5Spec("tiny-v1_1", 32), "adamw", heap);
  assert.ok(typeof tiny !== "string" && tiny.micro === 32, JSON.stringify(tiny));
});

Deno.test("perf: the wasm heap margin covers the heap high-water marks measured by perf", () => {
  // Committed reports of T5 1.1 steps on wasm+blas, each the largest workload of its process
  // (so the high-water mark is its own), measured with tfjs's backward pass (the only one
  // then): the estimate with it must be at most the mark, and the mark at most the estimate
  // over the kept fraction (benchmarks/device_memory.ts WASM_HEAP_MARGIN: 1.04 to 1.08 here).
  const reports = [
    ["2026-11-26T110659Z-wasm-blas.json", 1], // Small, 32 as 8 × 4, AdamW (after batch 4)
    ["2026-11-26T111518Z-wasm-blas.json", 0], // Small, 32 as 16 × 2, Adafactor
    ["2026-11-26T144730Z-wasm-blas.json", 0], // Base, 32 as 1 × 32, Adafactor
    ["2026-11-26T145341Z-wasm-blas.json", 0], // Base, batch 1, Adafactor
    ["2026-11-26T150822Z-wasm-blas.json", 0], // Base, 32 as 2 × 16, Adafactor
  ] as const;
  for (const [file, index] of reports) {
    const path = new URL(`../results/perf/${file}`, import.meta.url);
    const report = JSON.parse(Deno.readTextFileSync(path)) as PerfReport;
    const step = report.backends[0]!.steps[index]!;
    assert.equal(report.backends[0]!.backend, "wasm+blas", file);
    const { batch, inputLength, targetLength } = step.shape as Record<string, number>;
    const micro = (step.shape.microBatch as number | undefined) ?? batch!;
    const optimizer = step.optimizer.split(" ")[0] as "adamw" | "adafactor";
    // The plan at that micro-batch as the upper bound: the estimate of the step as it ran.
    const plan = planWasmT5(
      { kind: "t5", preset: step.workload.slice(3), nums: [batch!, inputLength!, targetLength!] },
      optimizer,
      { kernels: "fused-wasm-blas", backprop: "stock", xnnMatMul: false },
    );
    const estimate = estimateTrainingMemory({
      config: preset(step.workload.slice(3)),
      method: "mtl",
      optimizer: { kind: optimizer },
      batchSize: batch!,
      microBatchSize: micro,
      inputLength: inputLength!,
      targetLength: targetLength!,
      dropout: true,
      kernels: "fused-wasm-blas",
      backprop: "stock",
    }).peak;
    const ratio = step.wasmHeapBytes! / estimate;
    const what =
      `${file} ${step.workload} ${batch}/${micro} ${optimizer}: heap ${step.wasmHeapBytes} B, estimate ${estimate} B, ratio ${
        ratio.toFixed(3)
      }`;
    assert.ok(ratio >= 1 && ratio <= 1 / (1 - WASM_HEAP_MARGIN), what);
    // The plan never picks more per pass than what ran within the heap there.
    assert.ok(typeof plan !== "string" && plan.micro <= micro, what);
  }
});

Deno.test(
  "perf: on wasm a T5 step that cannot fit is skipped with the reason, for what is installed",
  opts,
  async () => {
    const had = Deno.env.get("HYPERPROMPT_STOCK_BACKPROP");
    const skipped = async (backends: string) => {
      const r = await main([
        "--backends",
        backends,
        "--sizes",
        "",
        "--workloads",
        "t5:t5-v1_1-base:1,128,16",
        "--max-seconds",
        "1e9",
        "--no-save",
      ]);
      return r.backends.map((b) => {
        assert.equal(b.error, undefined, b.error ?? "");
        assert.deepEqual(b.steps, [], "nothing ran");
        assert.equal(b.skipped.length, 1);
        assert.equal(b.skipped[0]!.what, "t5:t5-v1_1-base:1,128,16");
        return b.skipped[0]!.why.replace(/^.*GB; /, "");
      });
    };
    await withEnv({ HYPERPROMPT_STOCK_BACKPROP: "1" }, async () => {
      assert.deepEqual(await skipped("wasm/stock,wasm"), [
        "composite kernels, stock backward pass; try --optimizer adafactor",
        "fused-wasm kernels, stock backward pass; try --optimizer adafactor",
      ]);
    });
    // Without the variable selectBackend installs the low-memory backward pass again.
    if (had === undefined) {
      assert.deepEqual(await skipped("wasm"), [
        "fused-wasm kernels, low-memory backward pass; try --optimizer adafactor",
      ]);
    }
  },
);

gpuTest(
  "perf: webgpu counts dispatches per step; tfjs's own kernels (webgpu/stock) need more",
  async () => {
    const submit = GPUQueue.prototype.submit;
    const r = await main([
      "--quick",
      "--backends",
      "webgpu/stock,webgpu,webgpu/no-heads,webgpu/ungrouped",
      "--sizes",
      "32",
      "--workloads",
      "t5:tiny-v1_1:2,8,4",
      "--steps",
      "1",
      "--max-seconds",
      "120",
      "--no-save",
    ]);
    const [stock, custom, noHeads, ungrouped] = r.backends.map((b) => {
      assert.equal(b.error, undefined, b.error ?? "");
      const s = b.steps[0]!;
      assert.equal(s.numTensors[0], s.numTensors[1], `${b.backend} leaked`);
      return s;
    }) as [StepResult, StepResult, StepResult, StepResult];
    assert.equal(stock.optimizer, "adamw (op by op)");
    assert.equal(custom.optimizer, "adamw (in place)"); // WGSL dispatches, a group of variables each
    // Measured on the software adapter: 1,433 (stock) and 465 (custom kernels, AdamW in place).
    assert.ok(stock.gpuDispatches! > 0 && custom.gpuDispatches! > 0, JSON.stringify(r.backends));
    assert.ok(custom.gpuDispatches! < 0.5 * stock.gpuDispatches!);
    // The host's share of a step (submit a no-op) is recorded for each webgpu backend.
    for (const [i, x] of [stock, custom, noHeads].entries()) {
      assert.ok(x.hostOnlyMs?.length === 2 && x.hostOnlyMs.every((ms) => ms > 0), `backend ${i}`);
      // tfjs's 15 dispatches per command buffer with its own kernels, 64 with the custom ones.
      assert.equal(x.gpuSubmitBatch, i === 0 ? 15 : 64, `backend ${i}`);
    }
    assert.equal(GPUQueue.prototype.submit, submit, "submit restored");
    // The step's matmul routing is recorded where the custom kernels are installed.
    assert.equal(stock.gpuMatMuls, undefined);
    const tiled = Object.values(custom.gpuMatMuls?.tiled ?? {}).reduce((a, b) => a + b, 0);
    assert.ok(tiled > 0, JSON.stringify(custom.gpuMatMuls));
    // Heads split by transposes: 4 transposes forward and 4 backward per attention layer
    // (encoder self, decoder self and cross).
    const c = preset("tiny-v1_1");
    assert.equal(
      noHeads.gpuDispatches! - custom.gpuDispatches!,
      8 * (c.numLayers + 2 * c.numDecoderLayers),
    );
    // One AdamW dispatch per parameter instead of groups: more dispatches, the same path.
    assert.equal(ungrouped.optimizer, "adamw (in place)");
    assert.ok(ungrouped.gpuDispatches! > custom.gpuDispatches!, JSON.stringify(r.backends));
  },
);

gpuTest(
  "perf: webgpu host-only steps leave the weights and AdamW moments of the last timed step",
  async () => {
    // Both of perf's webgpu AdamW paths: op by op (tfjs's kernels, "webgpu/stock"), where the
    // host-only steps assign never-computed new tensors to the weights and moments (without the
    // restore the values differ: checked by skipping it), and in place (the custom kernels,
    // "webgpu"), where they leave the buffers unwritten (there, without the restore, only the
    // optimizer's step count is off: 4, not 2).
    for (const inPlace of [false, true]) {
      if (inPlace) assert.ok(registerWebgpuKernels());
      else unregisterWebgpuKernels();
      const what = inPlace ? "in place" : "op by op";
      const p = tf.variable(tf.tensor2d(uniformValues(12 * 10, 81), [12, 10]), true, `p-${what}`);
      const x = tf.tensor2d(uniformValues(10 * 3, 82), [10, 3]);
      const params = new Map([[p.name, p]]);
      const opt = createOptimizer({ kind: "adamw" });
      const read = async () => ({
        p: Array.from(await p.data()),
        slots: await Promise.all(
          [...opt.slots()].map(async ([k, t]) => [k, Array.from(await t.data())]),
        ),
      });
      const warm = 1;
      const reps = 1;
      let calls = 0;
      let lastTimed: Awaited<ReturnType<typeof read>> | undefined;
      const step = async () => {
        const { value, grads } = tf.variableGrads(() => tf.sum(tf.square(tf.matMul(p, x))), [p]);
        opt.apply(params, new Map(Object.entries(grads)), 1e-2);
        await value.data();
        tf.dispose([value, ...Object.values(grads)]);
        // What the last timed step left: read before measureSteps's host-only steps.
        if (++calls === warm + reps) lastTimed = await read();
      };
      try {
        updatePathsTaken(true); // as timeSteps: the paths of these steps only
        const r = await measureSteps({ step, opt, params, optTimes: [] }, warm, reps, false);
        assert.equal(optimizerPath("adamw", r.optimizerPaths), inPlace ? "in place" : "op by op");
        // The host-only steps ran (else this test could not fail), through the same step.
        assert.equal(r.hostOnlyMs?.length, 2, what);
        assert.equal(calls, warm + reps + 2, what);
        assert.equal(lastTimed?.slots.length, 2, `${what}: two AdamW moments`);
        // Exact: the restore assigns saved copies (no arithmetic between them and the read).
        assert.deepEqual(await read(), lastTimed, `${what}: weights and moments restored`);
        assert.equal(opt.step, warm + reps, `${what}: optimizer step restored`);
      } finally {
        opt.dispose();
        tf.dispose([p, x]);
      }
    }
  },
);

gpuTest(
  "perf: matMul timing queues each batch's products and reads back once per batch",
  async () => {
    // Waiting for each product paid a full GPU round trip per product (GFLOP/s understated).
    const before = tf.memory().numTensors;
    const { value: m, reads } = await countReads(() => timeMatMul(32, 2, 4));
    assert.equal(reads, 1 + MATMUL_BATCHES, "one read after the warm-up and one per batch");
    assert.equal(m.reps, 4);
    assert.equal(m.batches, MATMUL_BATCHES);
    assert.ok(m.minMs > 0 && m.minMs <= m.medianMs && m.medianMs <= m.maxMs, JSON.stringify(m));
    assert.ok(Math.abs(m.gflops - 2 * 32 ** 3 / (m.medianMs * 1e6)) < 1e-9 * m.gflops);
    assert.equal(tf.memory().numTensors, before, "operands and products freed");
  },
);

Deno.test("optimizerPath() reports the recorded update paths, op by op where none ran", () => {
  assert.equal(optimizerPath("adamw", {}), "op by op");
  assert.equal(optimizerPath("adamw", { adamw: ["in place"] }), "in place");
  assert.equal(
    optimizerPath("adafactor", {
      adafactorFactored: ["in place"],
      adafactorUnfactored: ["op by op"],
    }),
    "matrices in place, vectors op by op",
  );
  assert.equal(
    optimizerPath("adafactor", { adafactorFactored: ["kernel"], adafactorUnfactored: ["kernel"] }),
    "kernel",
  );
});

Deno.test(
  "perf: a measurement that throws is recorded, the others are saved, then exit 1",
  opts,
  async () => {
    const dir = await Deno.makeTempDir();
    // Relu runs only in the block workload (T5 1.1 is gated GELU): make it throw on cpu.
    const throwing = () => () => {
      throw new Error("stand-in for an out-of-memory abort");
    };
    try {
      const err: string[] = [];
      const args = [
        "--backends",
        "cpu",
        "--sizes",
        "16",
        "--workloads",
        "block:1,8,16,32,2 t5:tiny-v1_1:1,8,4",
        "--steps",
        "1",
        "--out-dir",
        dir,
      ];
      const code = await withKernel(
        "cpu",
        "Relu",
        throwing,
        () => cli(args, { error: (s) => err.push(s) }),
      );
      assert.equal(code, 1);
      const files = [...Deno.readDirSync(dir)].map((e) => e.name);
      assert.equal(files.length, 1, "the report was saved");
      assert.equal(err.length, 1);
      assert.match(
        err[0]!,
        /^1 measurement\(s\) failed \(cpu block:1,8,16,32,2: stand-in for an out-of-memory abort\); the others are saved in .*\.json$/,
      );
      const saved = JSON.parse(Deno.readTextFileSync(`${dir}/${files[0]}`)) as PerfReport;
      const cpu = saved.backends[0]!;
      assert.deepEqual(cpu.failed, [
        { what: "block:1,8,16,32,2", error: "stand-in for an out-of-memory abort" },
      ]);
      assert.deepEqual(cpu.steps.map((s) => s.workload), ["t5:tiny-v1_1"], "the next one ran");
      assert.equal(cpu.matmul.length, 1);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test(
  "perf: a step or matmul that throws after the optimizer state exists frees its tensors",
  opts,
  async () => {
    await tf.setBackend("cpu");
    // On cpu AdamW runs op by op, one Sqrt per variable (the block's loss has none): let the
    // first warm-up step pass (the AdamW moments then exist) and fail the second one's update
    // after its gradients were computed, as an out-of-memory abort mid-run would.
    const vars = 8; // ln1, q, k, v, o, ln2, wi, wo
    let sqrtCalls = 0;
    const failSecondUpdate = (sqrt: tf.KernelFunc): tf.KernelFunc => (args) => {
      if (++sqrtCalls === vars + 1) throw new Error("stand-in for an abort in the second step");
      return sqrt(args);
    };
    const before = tf.memory().numTensors;
    const r = await withKernel("cpu", "Sqrt", failSecondUpdate, () =>
      main([
        "--backends",
        "cpu",
        "--sizes",
        "",
        "--workloads",
        "block:1,8,16,32,2",
        "--steps",
        "1",
        "--no-save",
      ]).catch((e) => e as Error));
    assert.ok(r instanceof Error, "the failure ends the run in error");
    assert.match(r.message, /cpu block:1,8,16,32,2: stand-in for an abort in the second step/);
    assert.equal(sqrtCalls, vars + 1, "it failed in the second step's update");
    // Without the fix: the 16 AdamW moments, the loss and the 8 gradients stayed allocated.
    assert.equal(tf.memory().numTensors, before, "the failed step's tensors are freed");

    // A matmul that throws: its two operands are freed too. (Only the 16×16 product of the
    // benchmark: the backend's start-up check runs a small matmul.)
    const failBenchmarkProduct = (matMul: tf.KernelFunc): tf.KernelFunc => (args) => {
      if ((args.inputs.a as tf.TensorInfo).shape.join() === "16,16") {
        throw new Error("stand-in for a matmul abort");
      }
      return matMul(args);
    };
    const m = await withKernel(
      "cpu",
      "BatchMatMul",
      failBenchmarkProduct,
      () =>
        main(["--backends", "cpu", "--sizes", "16", "--workloads", "", "--no-save"])
          .catch((e) => e as Error),
    );
    assert.ok(m instanceof Error);
    assert.match(m.message, /cpu matmul 16: stand-in for a matmul abort/);
    assert.equal(tf.memory().numTensors, before, "the failed matmul's operands are freed");
  },
);

Deno.test(
  "perf: a backend named by --backends that cannot start is a failure (exit 1), the rest saved",
  opts,
  () =>
    // HYPERPROMPT_NO_BLAS: wasm+blas then refuses to start.
    inTempDir((dir) =>
      withEnv({ HYPERPROMPT_NO_BLAS: "1" }, async () => {
        const err: string[] = [];
        const args = ["--backends", "cpu,wasm+blas", "--sizes", "16", "--workloads", ""];
        assert.equal(await cli([...args, "--out-dir", dir], { error: (s) => err.push(s) }), 1);
        assert.equal(err.length, 1);
        assert.match(
          err[0]!,
          /^1 measurement\(s\) failed \(wasm\+blas: cannot start: model\/backend\.ts: wasm\+blas requested but BLAS is disabled .*\); the others are saved in .*\.json$/,
        );
        const files = [...Deno.readDirSync(dir)].map((e) => e.name);
        assert.equal(files.length, 1, "the report was saved");
        const saved = JSON.parse(Deno.readTextFileSync(`${dir}/${files[0]}`)) as PerfReport;
        assert.equal(saved.backends[0]!.matmul.length, 1, "cpu was measured");
        assert.match(saved.backends[1]!.error ?? "", /BLAS is disabled/);
      })
    ),
);

/**
 * Runs `fn` with the cpu backend's BatchMatMul counting the FLOPs of every product it computes
 * (2 · batch · M · N · K), independently of the workloads' own formulas; returns that count.
 */
async function countMatMulFlops(fn: () => void): Promise<number> {
  let flops = 0;
  await withKernel("cpu", "BatchMatMul", (mm) => (args) => {
    const a = args.inputs.a as tf.TensorInfo;
    const b = args.inputs.b as tf.TensorInfo;
    const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
    const [ra, rb] = [a.shape.length, b.shape.length];
    const m = transposeA ? a.shape[ra - 1]! : a.shape[ra - 2]!;
    const k = transposeA ? a.shape[ra - 2]! : a.shape[ra - 1]!;
    const n = transposeB ? b.shape[rb - 2]! : b.shape[rb - 1]!;
    const size = (s: number[]) => s.slice(0, -2).reduce((x, y) => x * y, 1);
    flops += 2 * Math.max(size(a.shape), size(b.shape)) * m * n * k;
    return mm(args);
  }, fn);
  return flops;
}

Deno.test(
  "perf: a workload's trainFlops are the matmul FLOPs its gradient pass computes, tokens input + target",
  opts,
  async () => {
    await tf.setBackend("cpu");
    for (
      const [spec, tokens] of [
        ["block:1,8,16,32,2", 1 * 8], // batch × sequence
        ["t5:tiny-v1_1:2,8,4", 2 * (8 + 4)], // batch × (input + target tokens)
        ["t5:tiny-v1_1@1:2,8,4", 2 * (8 + 4)],
      ] as const
    ) {
      const parsed = parseWorkload(spec);
      const w = makeWorkload(parsed);
      try {
        // Forward and backward products counted as the cpu kernel runs them: exact integers.
        const fwd = await countMatMulFlops(() => tf.dispose(w.loss()));
        const train = await countMatMulFlops(() => {
          const g = tf.variableGrads(w.loss, w.vars);
          tf.dispose([g.value, ...Object.values(g.grads)]);
        });
        assert.ok(fwd > 0, spec);
        assert.equal(w.trainFlops, train, `${spec}: trainFlops`);
        assert.equal(train, 3 * fwd, `${spec}: the backward pass is 2× the forward`);
        assert.equal(w.tokens, tokens, `${spec}: tokens`);
        // The time estimate (skips) uses the same count without allocating the workload.
        assert.equal(estimateFlops(parsed), w.trainFlops, `${spec}: estimateFlops`);
      } finally {
        w.dispose();
      }
    }
    // The t5 count is model/accounting.ts's for the whole batch (forward + backward).
    const w = makeWorkload(parseWorkload("t5:tiny-v1_1:2,8,4"));
    w.dispose();
    assert.equal(
      w.trainFlops,
      2 * t5Flops(preset("tiny-v1_1"), { inputLength: 8, targetLength: 4 }).train,
    );
  },
);

Deno.test(
  "perf: measureSteps reports the timed steps only: their times, optimizer share, CPU per step, leaks",
  opts,
  async () => {
    await tf.setBackend("cpu");
    const cpuMs = () => {
      const u = process.cpuUsage();
      return (u.user + u.system) / 1000;
    };
    // Spins until this process has used `ms` more CPU milliseconds (not wall time: a busy host
    // delays it without changing the count).
    const burn = (ms: number) => {
      const c0 = cpuMs();
      while (cpuMs() - c0 < ms) { /* spin */ }
    };
    const warm = 2;
    const reps = 4;
    const optTimes: number[] = [];
    const left: tf.Tensor[] = [];
    let i = 0;
    // Warm-up steps: 150 ms of CPU and an optimizer time of 100 ms; timed steps: 20 ms of CPU and
    // optimizer times 1, 2, 3, 10 (median 2.5). Every step leaves one tensor behind.
    const step = () => {
      const timed = i >= warm;
      optTimes.push(timed ? [1, 2, 3, 10][i - warm]! : 100);
      burn(timed ? 20 : 150);
      left.push(tf.scalar(i++));
      return Promise.resolve();
    };
    const opt = createOptimizer({ kind: "adamw" });
    try {
      const r = await measureSteps({ step, opt, params: new Map(), optTimes }, warm, reps, false);
      assert.equal(i, warm + reps);
      assert.equal(r.times.length, reps, "the warm-up steps are not timed");
      assert.ok(r.times.every((t) => t > 0), JSON.stringify(r.times));
      assert.equal(r.optimizerMs, 2.5, "median of the timed steps' optimizer times");
      // ≥ 20 ms per timed step by construction; the bound leaves 160 ms of other threads' CPU in
      // the 4 steps (counting the warm-up's 300 ms, or not dividing by the steps, gives ≥ 80).
      assert.ok(r.cpuMsPerStep >= 20 && r.cpuMsPerStep < 60, `cpu ${r.cpuMsPerStep} ms/step`);
      // After the 2nd step and after the last: the 4 tensors left in between show as the leak.
      assert.equal(
        r.numTensors[1] - r.numTensors[0],
        reps + warm - 2,
        JSON.stringify(r.numTensors),
      );
    } finally {
      opt.dispose();
      tf.dispose(left);
    }
  },
);

Deno.test(
  "perf: a step's median, tokens/s and effective GFLOP/s are computed from its timed steps",
  opts,
  async () => {
    const g0 = gitState();
    const r = await main([
      "--backends",
      "cpu",
      "--sizes",
      "",
      "--workloads",
      "block:1,8,16,32,2 t5:tiny-v1_1:2,8,4",
      "--steps",
      "2",
      "--profile",
      "--no-save",
    ]);
    const g1 = gitState();
    const [block, t5] = r.backends[0]!.steps as [StepResult, StepResult];
    for (const [s, tokens] of [[block, 8], [t5, 24]] as const) {
      const what = `${s.workload}: ${JSON.stringify(s)}`;
      assert.equal(s.reps, 2, what);
      // 2 timed steps: the median is their mean (exact: the same sum and division).
      assert.equal(s.medianMs, (s.minMs + s.maxMs) / 2, what);
      assert.ok(s.minMs > 0 && s.minMs <= s.maxMs, what);
      // Rates of the median step; relative 1e-12: one division and one multiplication in fp64.
      const close = (x: number, y: number) => Math.abs(x - y) <= 1e-12 * Math.abs(y);
      assert.ok(close(s.tokensPerSec * (s.medianMs / 1000), tokens), what);
      assert.ok(close(s.effectiveGflops * s.medianMs * 1e6, s.trainFlops), what);
      assert.ok(s.cpuMsPerStep > 0, what);
      // --profile: the kernels of one more step, and the peak of tensor bytes during it, which
      // counts the weights and AdamW moments held between steps and the step's activations.
      assert.ok(s.profile!.some((p) => p.kernel === "BatchMatMul" && p.count > 0), what);
      assert.ok(s.peakTensorBytes! > s.tensorBytes, what);
    }
    // Provenance: the commit with its dirty mark (when it did not change during the run).
    if (g0.dirty === g1.dirty && g0.sha === g1.sha) {
      assert.equal(r.gitSha, g0.sha + (g0.dirty ? "+dirty" : ""));
    }
    assert.equal(r.versions.tfjs, tf.version.tfjs);
    assert.equal(r.machine.os, `${Deno.build.os}-${Deno.build.arch}`);
    assert.equal(r.machine.webgpuBackend, Deno.env.get("DENO_WEBGPU_BACKEND") || "(default)");
  },
);

/** `deno task perf` on the cpu backend alone with these sizes, workloads and limit; not saved. */
function onCpu(sizes: string, workloads: string, maxSeconds: string) {
  const args = ["--sizes", sizes, "--workloads", workloads, "--max-seconds", maxSeconds];
  return main(["--backends", "cpu", ...args, "--no-save"]);
}

Deno.test(
  "perf: a step estimated over --max-seconds from the matMul rate is skipped with its estimate",
  opts,
  async () => {
    // The default block (5 GFLOP per step) at tfjs-cpu's matMul rate (about 1 GFLOP/s): seconds
    // per step, over the 1 s limit. The estimate is 4 × the step's FLOPs at the matMul rate.
    const cpu = (await onCpu("64", "block", "1")).backends[0]!;
    assert.deepEqual(cpu.steps, [], "not run");
    assert.equal(cpu.skipped.length, 1, JSON.stringify(cpu.skipped));
    const est = 4 * estimateFlops(parseWorkload("block")) / (cpu.matmul[0]!.gflops * 1e9);
    assert.equal(
      cpu.skipped[0]!.why,
      `estimated ${+est.toPrecision(3)} s/step > --max-seconds 1 / 3 steps`,
    );
  },
);

Deno.test(
  "perf: the first matMul size, with no rate before it, is estimated from one product and skipped over --max-seconds",
  opts,
  async () => {
    // n = 512 on tfjs-cpu (about 1 GFLOP/s): 0.3 s or more a product, so even 1 product per
    // batch (2 warm-up + 3 timed) exceeds 0.5 s. Before, the first size had no estimate and ran
    // 32 products (about 20 s) whatever the limit.
    const cpu = (await onCpu("512", "", "0.5")).backends[0]!;
    assert.deepEqual(cpu.matmul, [], "not timed");
    assert.equal(cpu.skipped.length, 1, JSON.stringify(cpu.skipped));
    assert.match(
      cpu.skipped[0]!.why,
      /^estimated [\d.]+ s > --max-seconds 0\.5 \(from one product timed first, [\d.]+ s\)$/,
    );
  },
);

Deno.test("probeMatMulSeconds(): a positive time; no tensor left, also when the product throws", async () => {
  await tf.setBackend("cpu");
  const before = tf.memory().numTensors;
  const s = await probeMatMulSeconds(8);
  assert.ok(s > 0 && Number.isFinite(s), String(s));
  assert.equal(tf.memory().numTensors, before);
  // A kernel that fails (a device lost mid-probe): the operands are still freed.
  await withKernel(tf.getBackend(), "BatchMatMul", () => () => {
    throw new Error("device lost");
  }, async () => {
    await assert.rejects(() => probeMatMulSeconds(8), /device lost/);
  });
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("matmulReps(): about 2 s of products; 1 a batch when that exceeds --max-seconds; skipped when 1 does", () => {
  // The first size: nothing known (est 0) but the product timed first (bound).
  assert.deepEqual(matmulReps(0, 0.001, 60, false), { nrep: 10, full: 0.032 });
  // 32 products would pass the limit, 5 (2 warm + 3 × 1) do not: 1 a batch, measured.
  const one = matmulReps(0, 0.1, 1, false);
  assert.equal(one.nrep, 1);
  assert.ok(Math.abs(one.full - 3.2) < 1e-9, `${one.full}`);
  assert.equal(one.skip, undefined);
  // Even 5 products pass it: skipped, with that estimate.
  const skipped = matmulReps(0, 0.3, 1, false);
  assert.equal(skipped.nrep, 1);
  assert.ok(Math.abs(skipped.skip! - 1.5) < 1e-9, `${skipped.skip}`);
  // Exactly at the limit is within it (0.25 s: exact in binary): 32 products of 8 s keep 10 a
  // batch under --max-seconds 8, and 5 of 1.25 s are measured under 1.25.
  assert.deepEqual(matmulReps(0, 0.25, 8, false), { nrep: 10, full: 8 });
  assert.deepEqual(matmulReps(0, 0.25, 1.25, false), { nrep: 1, full: 8 });
  // A later size: the rate before sets the count (0.1 s: 6 a batch), the bound the limit.
  assert.equal(matmulReps(0.1, 0.1, 60, false).nrep, 6);
  assert.equal(matmulReps(0.1, 0.1, 60, true).nrep, 2, "--quick");
});

Deno.test("perf: the default run covers the issue's shapes and every backend", () => {
  // Issue 6: T5 1.1 Small and Base at batch 32, 128 input / 16 target tokens.
  for (const w of ["t5:t5-v1_1-small:32,128,16", "t5:t5-v1_1-base:32,128,16"]) {
    assert.ok(DEFAULT_WORKLOADS.includes(w), w);
  }
  for (const w of DEFAULT_WORKLOADS) parseWorkload(w); // each one a valid workload
  assert.deepEqual(DEFAULT_BACKENDS, ["cpu", "wasm", "wasm+blas", "webgpu"]);
  assert.match(
    PERF_USAGE,
    new RegExp(
      `--backends LIST +${DEFAULT_BACKENDS.join(",").replace("+", "\\+")} \\(default list: all`,
    ),
  );
});

Deno.test(
  "perf: timeMatMul reports the median batch's rate, the warm-up products untimed",
  opts,
  async () => {
    await tf.setBackend("cpu");
    // A scripted clock: each warm-up product costs 100 ms, each product of the 3 timed batches 3, 1
    // and 2 ms (median 2 ms, fastest 1, slowest 3).
    const [n, warm, reps] = [16, 2, 4];
    let products = 0;
    const m = await withClock((clock) => {
      const scripted = (mm: tf.KernelFunc): tf.KernelFunc => (args) => {
        const p = products++;
        clock.ms += p < warm ? 100 : [3, 1, 2][Math.floor((p - warm) / reps)]!;
        return mm(args);
      };
      return withKernel("cpu", "BatchMatMul", scripted, () => timeMatMul(n, warm, reps));
    });
    assert.equal(products, warm + MATMUL_BATCHES * reps);
    assert.deepEqual(
      { medianMs: m.medianMs, minMs: m.minMs, maxMs: m.maxMs, reps: m.reps },
      { medianMs: 2, minMs: 1, maxMs: 3, reps },
    );
    assert.equal(m.gflops, (2 * n ** 3) / (2 * 1e6)); // 2n³ FLOPs in the median 2 ms
  },
);
