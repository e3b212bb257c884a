/**
 * The prepared GPU measurement (gpu_check.ts) in its `--quick` mode on whatever adapter is here
 * (the software one in CI), so that a GPU session, with minutes of device time, does not find a
 * broken script: every section runs without error, the kernels check out, the report is written
 * and leaks no tensor. The figures themselves mean nothing on a software adapter.
 */

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import {
  cli,
  codeTracked,
  CORRECTNESS_TOLERANCE,
  correctnessVerdict,
  hostBreakdown,
  main,
  matmulRates,
  measureSteps,
  microBatchPlan,
  microBatchRatio,
  reportGit,
  timeVariants,
} from "./gpu_check.ts";
import { gpuTest } from "../model/webgpu/testing.ts";
import { parseTuningTable } from "../model/webgpu/tuning.ts";
import { gitState } from "./provenance.ts";
import type { CommandRunner } from "./device_memory.ts";
import { lowMemoryBackpropInstalled } from "../model/backprop.ts";
import { backpropFromEnv } from "../model/backend.ts";
import { createOptimizer } from "./optim.ts";
import { registerWebgpuKernels } from "../model/webgpu/mod.ts";

gpuTest("gpu_check --quick: every section runs and the report is written", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const out = `${dir}/gpu_check.json`;
    const before = tf.memory().numTensors;
    const lowMemoryBefore = lowMemoryBackpropInstalled();
    const submit = GPUQueue.prototype.submit;
    // No nvidia-smi (as on CI): the memory section records null with the reason, and runs.
    const report = await main(["--quick", `--out=${out}`], { runCommand: noNvidiaSmi });
    assert.equal(GPUQueue.prototype.submit, submit, "submit restored after the host-only steps");
    const sections = report.sections as Record<string, Record<string, unknown>>;
    for (const s of ["adapter", "correctness", "memory", "tune", "t5", "matmul", "encoder"]) {
      assert.ok(sections[s] !== undefined, `section ${s}`);
      assert.equal(sections[s]!["error"], undefined, `${s}: ${String(sections[s]!["error"])}`);
    }
    // Provenance: the command line and the commit (the GPU machine's copy has no git: "unknown").
    assert.deepEqual(report["args"], ["--quick", `--out=${out}`]);
    assert.match(String(report["git"]), /^([0-9a-f]{40}(\+dirty)?|unknown)$/);
    const perDispatch = sections["adapter"]!["adamwVariablesPerDispatch"] as number;
    assert.ok(Number.isInteger(perDispatch) && perDispatch >= 2, `${perDispatch} per dispatch`);
    const c = sections["correctness"]!;
    assert.equal(c["pass"], true);
    assert.equal(c["candidatesPass"], true);
    const mem = sections["memory"]!;
    assert.equal(mem["deviceTotal"], null);
    assert.equal(mem["deviceTotalReason"], "nvidia-smi not found (no NVIDIA driver)");
    for (const row of MEMORY_ROWS) {
      const r = mem[row] as MemoryRow;
      assert.deepEqual(r.nvidiaSmi, {
        bytes: null,
        reason: "nvidia-smi not found (no NVIDIA driver)",
      });
      assert.equal(r.ratio, null, row);
      assert.ok(r.tfjsPeakRatio > 0 && r.estimate.peak > 0, row);
    }
    // The default tiles were also checked with K split (partial products, then their sum).
    const split = (c["rows"] as Record<string, unknown>[]).filter((r) => r["splitK"] === 3);
    assert.equal(split.length, 3 * 4, "t128, t64, t32 × four transpose pairs, split");
    for (const r of split) assert.match(String(r["kernel"]), /^t(128|64|32)\/k\d$/);
    // The batched row (the full run's attention scores are rank 3): FLOPs count every batch.
    const scores = (sections["matmul"]!["rows"] as Record<string, unknown>[])
      .find((r) => r["name"] === "scores")!;
    assert.equal(scores["flop"], 2 * 6 * 16 * 16 * 8);
    assert.ok((scores["tiled-all"] as { ms: number }).ms > 0);
    assert.equal(sections["matmul"]!["partial"], undefined, "the finished section is not partial");
    const heads = (sections["matmul"]!["rows"] as Record<string, Record<string, unknown>>[])
      .filter((r) => String(r["name"]).startsWith("heads"));
    assert.equal(heads.length, 3, "three head-product rows");
    for (const r of heads) {
      for (const v of ["composite", "strided", "strided-t64v4"]) {
        assert.equal(r[v]!["error"], undefined, `${String(r["name"])} ${v}`);
        assert.ok((r[v]!["ms"] as number) > 0, `${String(r["name"])} ${v} timed`);
      }
      const tiles = Object.keys(r["strided"]!["tiles"] as object);
      assert.ok(tiles.some((t) => t.startsWith("heads-")), `strided kernel ran: ${tiles}`);
    }
    // The tune section wrote a valid table of every matmul shape of the (one-layer) step beside
    // the report, and the t5 section ran it as `tiled-tuned`: each shape by the table's choice.
    const tune = sections["tune"]!;
    const table = parseTuningTable(
      await Deno.readTextFile(`${dir}/gpu_check-tuning.json`),
      "gpu_check-tuning.json",
    );
    assert.equal(tune["tablePath"], `${dir}/gpu_check-tuning.json`);
    assert.equal(Object.keys(table.entries).length, tune["shapes"]);
    assert.ok((tune["shapes"] as number) > 10, `shapes ${tune["shapes"]}`);
    const t5 = sections["t5"]!;
    const ran = (t5["tiled-tuned"] as { matmuls: { shapes: Record<string, object> } }).matmuls
      .shapes;
    assert.deepEqual(Object.keys(ran).sort(), Object.keys(table.entries).sort());
    for (const [key, byKernel] of Object.entries(ran)) {
      assert.deepEqual(Object.keys(byKernel), [table.entries[key]!.choice], key);
    }
    // The step bench runs: its backward pass (model/backend.ts selectBackend's choice; the test
    // environment leaves HYPERPROMPT_STOCK_BACKPROP unset), and the other one as a variant.
    const bench = backpropFromEnv();
    const other = bench === "stock" ? "low-memory" : "stock";
    assert.equal((report["backprop"] as { mode: string }).mode, bench);
    assert.equal(t5["backprop"], bench);
    assert.equal(t5["otherBackprop"], `tiled-${other}-backprop`);
    const variants = ["tiled-tuned", "tiled", "tiled-ungrouped", "tiled-submit15", "tiled-nosplit"];
    for (const v of [...variants, "tiled-matmul-only", "stock", `tiled-${other}-backprop`]) {
      const ran = (t5[v] as { backprop: string }).backprop;
      assert.equal(ran, v === `tiled-${other}-backprop` ? other : bench, `${v} backward pass`);
      const r = t5[v] as { stepMs: number[]; host: { dispatches: number } };
      assert.ok(r.stepMs.length > 0 && r.stepMs.every((x) => x > 0), v);
      assert.ok(r.host.dispatches > 0, `${v} dispatches`);
      // Host-only steps (nothing submitted) were timed, and the profiled step after them ran.
      const x = t5[v] as { hostOnlyMs: number[]; profile: { kernels: number } };
      assert.ok(x.hostOnlyMs.length >= 2 && x.hostOnlyMs.every((ms) => ms > 0), `${v} host-only`);
      assert.ok(x.profile.kernels > 0, `${v} profiled step`);
    }
    const tiled = (t5["tiled"] as { host: { dispatches: number } }).host.dispatches;
    const stock = (t5["stock"] as { host: { dispatches: number } }).host.dispatches;
    assert.ok(tiled < stock, `custom kernels dispatch less: ${tiled} vs ${stock}`);
    // 64 dispatches per command buffer (the kernels' default) instead of tfjs's 15: fewer submits,
    // the same dispatches.
    const submits = (v: string) =>
      (t5[v] as { host: { methods: Record<string, { calls: number }> } }).host
        .methods["queue.submit"]!.calls;
    assert.equal((t5["tiled-submit15"] as { host: { dispatches: number } }).host.dispatches, tiled);
    assert.ok(submits("tiled") < submits("tiled-submit15"), "fewer submits");
    // One AdamW dispatch per parameter instead of a group per dispatch: more dispatches.
    const ungrouped = (t5["tiled-ungrouped"] as { host: { dispatches: number } }).host.dispatches;
    assert.ok(ungrouped > tiled, `ungrouped ${ungrouped} vs grouped ${tiled} dispatches`);
    assert.equal(tf.env().getNumber("WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE"), 15, "default restored");
    assert.equal(lowMemoryBackpropInstalled(), lowMemoryBefore, "backward pass restored");
    assert.deepEqual(JSON.parse(await Deno.readTextFile(out)).sections.t5.preset, "tiny-v1_1");
    assert.equal(tf.memory().numTensors, before, "gpu_check leaked tensors");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The memory section's rows, in order. */
const MEMORY_ROWS = [
  "step-stock",
  "step-low-memory",
  "micro-low-memory",
  "adapter-low-memory",
] as const;

/** A memory row of the report (the fields the tests read). */
interface MemoryRow {
  method: string;
  tasks?: string[];
  shape: { batch: number; inLen: number; outLen: number };
  backprop: string;
  estimate: {
    peak: number;
    weights: number;
    phases: Record<string, number>;
    evaluation: number;
  };
  nvidiaSmi: Record<string, unknown>;
  tfjs: { weights: number; peak: number; allocated: number };
  ratio: number | null;
  tfjsPeakRatio: number;
  weightsRatio: number | null;
  microBatchChosenBy?: string;
  skipped?: string;
}

/** A machine without nvidia-smi: the program is not found. */
const noNvidiaSmi: CommandRunner = () => Promise.resolve(undefined);

const MIB = 2 ** 20;

gpuTest(
  "gpu_check memory: nvidia-smi's samples, their deltas and the ratio to the estimate are recorded",
  async () => {
    const dir = await Deno.makeTempDir();
    try {
      // An 80 GB card whose memory.used (MiB) per row k is 1000 + 1000k before the model,
      // + 10 after the weights, + 50 and + 60 after the two steps.
      const calls: string[] = [];
      let used = 0;
      const smi: CommandRunner = (cmd, args) => {
        calls.push([cmd, ...args].join(" "));
        if (args[0] === "--query-gpu=memory.total") {
          return Promise.resolve({ success: true, stdout: "81559\n" });
        }
        if (args[0] === "--query-gpu=mig.mode.current") {
          return Promise.resolve({ success: true, stdout: "Disabled\n" });
        }
        const k = Math.floor(used / 4), i = used++ % 4;
        return Promise.resolve({
          success: true,
          stdout: `${1000 + 1000 * k + [0, 10, 50, 60][i]!}\n`,
        });
      };
      const before = tf.memory().numTensors;
      const lowMemoryBefore = lowMemoryBackpropInstalled();
      const pool = (tf.backend() as unknown as { bufferManager: { acquireBuffer: unknown } })
        .bufferManager;
      const acquire = pool.acquireBuffer;
      const report = await main(["--quick", "--sections=memory", `--out=${dir}/r.json`], {
        runCommand: smi,
      });
      const mem = (report.sections as Record<string, Record<string, unknown>>).memory!;
      assert.equal(mem["error"], undefined, String(mem["error"]));
      assert.equal(mem["deviceTotal"], 81559 * MIB);
      assert.equal(calls.length, 2 + 4 * 4, "total and MIG mode once, then 4 samples per row");
      assert.equal(calls[2], "nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits");
      for (const [k, name] of MEMORY_ROWS.entries()) {
        const r = mem[name] as MemoryRow;
        const b = (1000 + 1000 * k) * MIB;
        assert.deepEqual(r.nvidiaSmi, {
          before: b,
          afterWeights: b + 10 * MIB,
          afterSteps: [b + 50 * MIB, b + 60 * MIB],
          weights: 10 * MIB,
          step: 60 * MIB,
        }, name);
        assert.equal(r.ratio, Math.round((60 * MIB / r.estimate.peak) * 1000) / 1000, name);
        assert.equal(r.weightsRatio, Math.round((10 * MIB / r.estimate.weights) * 1000) / 1000);
        // The training step's peak: evaluation (not run by the row) is recorded apart.
        assert.equal(r.estimate.peak, Math.max(...Object.values(r.estimate.phases)), name);
        assert.equal(r.estimate.phases["evaluation"], undefined, name);
        assert.ok(r.estimate.evaluation > 0, name);
        // tfjs's own count: the weights' buffers are the estimate's weights (+ the step's ids
        // and mask, under 0.1%; the adapter row's include its 4 tasks' adapters, so the estimate
        // counted the tasks the instance was built with); the pool's peak of live buffers at
        // most 5% above the estimated peak (an underestimate risks running out of memory) and at
        // most 20% below (measured on the software adapter 1.00, 0.99, 0.93, and 1.02 for the
        // Vanilla Adapter: tfjs-webgpu frees a buffer only when the commands reading it are
        // submitted, which memory.ts bounds by 64 nodes).
        assert.ok(Math.abs(r.tfjs.weights / r.estimate.weights - 1) < 1e-3, `${name} weights`);
        assert.ok(r.tfjsPeakRatio > 0.8 && r.tfjsPeakRatio <= 1.05, `${name} ${r.tfjsPeakRatio}`);
        // Against the training step's estimate, as `ratio` (the row does not evaluate).
        assert.equal(r.tfjsPeakRatio, Math.round((r.tfjs.peak / r.estimate.peak) * 1000) / 1000);
        assert.ok(r.tfjs.allocated >= r.tfjs.peak, `${name}: the pool holds the peak`);
      }
      assert.equal((mem["step-stock"] as MemoryRow).backprop, "stock");
      // The adapter row trained the Vanilla Adapter on 4 tasks, one row each (every task in the
      // batch: the per-task gather ran), with its adapters' weights on top of the backbone's.
      const adapter = mem["adapter-low-memory"] as MemoryRow;
      assert.equal(adapter.method, "adapter");
      assert.equal(adapter.backprop, "low-memory");
      assert.deepEqual(adapter.tasks, ["cola", "sst2", "mrpc", "qqp"]);
      assert.deepEqual(adapter.shape, { batch: 4, inLen: 16, outLen: 4 });
      const plain = mem["step-low-memory"] as MemoryRow;
      assert.equal(plain.method, "mtl");
      assert.ok(adapter.tfjs.weights > plain.tfjs.weights, "the adapters' variables were made");
      const micro = mem["micro-low-memory"] as MemoryRow;
      assert.deepEqual(micro.shape, { batch: 4, inLen: 64, outLen: 16 }, "80 GB: the cap, 4");
      assert.match(micro.microBatchChosenBy!, /^largestFittingMicroBatch\(batch 128, 64\/16\)/);
      // The low-memory backward pass keeps fewer activation gradients than tfjs's: a smaller
      // backward phase; at this tiny shape the gradient norm after it sets both rows' peak (the
      // rows read the norm, as the trainer does), so the measured peaks may be equal.
      const [low, stock] = [mem["step-low-memory"], mem["step-stock"]] as MemoryRow[];
      assert.ok(low!.tfjs.peak <= stock!.tfjs.peak);
      assert.ok(low!.estimate.phases["backward"]! < stock!.estimate.phases["backward"]!);
      assert.equal(lowMemoryBackpropInstalled(), lowMemoryBefore, "backward pass restored");
      assert.equal(pool.acquireBuffer, acquire, "the pool's acquireBuffer restored");
      assert.equal(tf.memory().numTensors, before, "the section freed its models");

      // Past the budget after the first row: the others are written as skipped.
      let reads = 0;
      const r2 = await main(["--quick", "--sections=memory", `--out=${dir}/r2.json`], {
        runCommand: noNvidiaSmi,
        elapsedS: () => (reads++ < 2 ? 0 : 1000),
      });
      const m2 = (r2.sections as Record<string, Record<string, MemoryRow>>).memory!;
      assert.equal(
        m2["step-stock"]!.nvidiaSmi["reason"],
        "nvidia-smi not found (no NVIDIA driver)",
      );
      assert.equal(m2["step-low-memory"]!.skipped, "budget: 1000 s > 480 s");
      assert.equal(m2["micro-low-memory"]!.skipped, "budget: 1000 s > 480 s");
      assert.equal(m2["adapter-low-memory"]!.skipped, "budget: 1000 s > 480 s");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

/**
 * Runs `gpu_check --quick --sections=t5` with `elapsedS` as its clock, hands `check` the report and
 * the saved one, and requires the section to free its model, whatever happened in it.
 */
async function t5SectionWith(
  elapsedS: () => number,
  check: (report: Record<string, unknown>, saved: Record<string, unknown>) => void,
): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    const out = `${dir}/gpu_check.json`;
    const before = tf.memory().numTensors;
    const report = await main(["--quick", "--sections=t5", `--out=${out}`], { elapsedS });
    check(report, JSON.parse(await Deno.readTextFile(out)));
    assert.equal(tf.memory().numTensors, before, "the section freed its model");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

gpuTest(
  "gpu_check: --budget-s stops a section between variants; what was measured is kept",
  async () => {
    // The budget is read before the section and before each variant: the first variant runs,
    // then the run is out of time.
    let reads = 0;
    await t5SectionWith(() => (reads++ < 2 ? 0 : 1000), (report, saved) => {
      const t5 = (report.sections as Record<string, Record<string, Record<string, unknown>>>).t5!;
      assert.ok((t5["tiled"]!["stepMs"] as number[]).length > 0, "the first variant ran");
      for (const v of ["tiled-ungrouped", "tiled-submit15", "tiled-nosplit", "stock"]) {
        assert.match(String(t5[v]?.["skipped"]), /^budget: 1000 s > 480 s$/, v);
      }
      assert.equal(t5["tiled-tuned"], undefined, "no tune section ran: no tuned variant");
      assert.deepEqual((saved.sections as Record<string, Record<string, unknown>>).t5!.stock, {
        skipped: "budget: 1000 s > 480 s",
      });
    });
  },
);

gpuTest(
  "gpu_check: HYPERPROMPT_STOCK_BACKPROP=1 times the t5 step with tfjs's backward pass, as bench",
  async () => {
    const before = lowMemoryBackpropInstalled();
    Deno.env.set("HYPERPROMPT_STOCK_BACKPROP", "1");
    try {
      // The section, `tiled` and the other backward pass's variant; the rest past the budget.
      let reads = 0;
      await t5SectionWith(() => (reads++ < 3 ? 0 : 1000), (report) => {
        assert.deepEqual(report["backprop"], {
          mode: "stock",
          chosenBy: "HYPERPROMPT_STOCK_BACKPROP=1: tfjs's own, as deno task bench runs",
        });
        const t5 = (report.sections as Record<string, Record<string, Record<string, unknown>>>)
          .t5!;
        assert.equal(t5["backprop"], "stock" as unknown);
        assert.equal(t5["tiled"]!["backprop"], "stock");
        assert.equal(t5["tiled-low-memory-backprop"]!["backprop"], "low-memory");
        assert.ok((t5["tiled-low-memory-backprop"]!["stepMs"] as number[]).length > 0);
        assert.match(String(t5["tiled-ungrouped"]!["skipped"]), /^budget/);
      });
    } finally {
      Deno.env.delete("HYPERPROMPT_STOCK_BACKPROP");
    }
    assert.equal(lowMemoryBackpropInstalled(), before, "backward pass restored");
  },
);

gpuTest("gpu_check: a section that throws keeps the variants it had saved", async () => {
  // Thrown where the second variant would start (a stand-in for a kernel error or lost device).
  let reads = 0;
  const clock = () => {
    if (++reads === 3) throw new Error("device lost");
    return 0;
  };
  await t5SectionWith(clock, (report, saved) => {
    for (
      const t5 of [
        (report.sections as Record<string, Record<string, unknown>>).t5!,
        (saved.sections as Record<string, Record<string, unknown>>).t5!,
      ]
    ) {
      assert.match(String(t5["error"]), /^device lost\n/);
      assert.equal(t5["partial"], true);
      assert.ok((t5["tiled"] as { stepMs: number[] }).stepMs.length > 0, "tiled kept");
      assert.equal(t5["tiled-ungrouped"], undefined);
    }
  });
});

Deno.test("gpu_check reportGit: --git names the commit where there is no checkout, and must agree with one", () => {
  const sha = "ec35e63" + "0".repeat(33);
  const unknown = { sha: "unknown", dirty: false };
  assert.deepEqual(reportGit(unknown, undefined), unknown);
  assert.deepEqual(reportGit(unknown, "ec35e63"), { sha: "ec35e63", dirty: false });
  assert.deepEqual(reportGit({ sha, dirty: true }, undefined), { sha, dirty: true });
  assert.deepEqual(reportGit({ sha, dirty: true }, "ec35e63"), { sha, dirty: true }, "agrees");
  assert.throws(
    () => reportGit({ sha, dirty: false }, "5d41b58"),
    /--git=5d41b58 but this checkout is at ec35e630{33}$/,
  );
  // A checkout that tracks the code: the same.
  assert.throws(
    () => reportGit({ sha, dirty: false, tracked: true }, "5d41b58"),
    /--git=5d41b58 but this checkout is at ec35e630{33}$/,
  );
});

Deno.test("gpu_check reportGit: a parent folder's repository, which does not track the code, neither refuses --git nor names the commit", () => {
  // The GPU machine's copy has no .git; inside a folder that is a git repository, gitState found
  // that repository's commit: --git then exited 2 before any GPU work (a GPU session lost), and
  // without --git the report named a commit that is not this code's.
  const parent = { sha: "5d41b58" + "1".repeat(33), dirty: true, tracked: false };
  assert.deepEqual(reportGit(parent, "ec35e63"), {
    sha: "ec35e63",
    dirty: false,
    note: `the git repository around this code (at ${parent.sha}) does not track it (a parent ` +
      `folder's repository, or a bundle): its commit is not this code's; --git's is recorded`,
  });
  assert.deepEqual(reportGit(parent, undefined), {
    sha: "unknown",
    dirty: false,
    note: `the git repository around this code (at ${parent.sha}) does not track it (a parent ` +
      `folder's repository, or a bundle): its commit is not this code's`,
  });
  // Here, in a checkout (CI's clean clone), the repository tracks the code.
  if (gitState().sha !== "unknown") assert.equal(codeTracked(), true);
});

Deno.test("gpu_check cli(): every flag that takes a value refuses an empty one in one line (exit 2)", async () => {
  // --out "" ran every section, then failed (exit 1) renaming the report to "".
  const flags: [string, string][] = [
    ["sections", "sections, comma-separated, of adapter,correctness,memory,tune,t5,matmul,encoder"],
    ["budget-s", "a positive number of seconds"],
    ["out", "a JSON file"],
    ["git", "a commit sha"],
  ];
  for (const [flag, takes] of flags) {
    for (const args of [[`--${flag}=`], [`--${flag}`, ""]]) {
      const err: string[] = [];
      assert.equal(await cli(args, { error: (s) => err.push(s) }), 2, args.join(" "));
      assert.deepEqual(err, [
        `benchmarks/gpu_check.ts: --${flag} needs a value (${takes}), got an empty one ("": an ` +
        `unset variable?); deno run -A benchmarks/gpu_check.ts --help lists the flags`,
      ]);
    }
  }
});

Deno.test("gpu_check cli(): a bad option is one line naming it, exit 2, before any GPU work", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/a-file`;
    await Deno.writeTextFile(file, "x");
    const cases: [string[], RegExp][] = [
      [
        ["--bogus"],
        /^benchmarks\/gpu_check\.ts: unknown flag --bogus; deno run -A benchmarks\/gpu_check\.ts --help lists the flags$/,
      ],
      [
        ["--quik"],
        /^benchmarks\/gpu_check\.ts: unknown flag --quik \(did you mean --quick\?\); /,
      ],
      [
        ["--out"],
        /^benchmarks\/gpu_check\.ts: --out needs a value \(a JSON file\); /,
      ],
      [["--quick=yes"], /^benchmarks\/gpu_check\.ts: --quick takes no value, got "--quick=yes"; /],
      [
        ["--budget-s=0"],
        /^benchmarks\/gpu_check\.ts: --budget-s must be a positive number, got 0$/,
      ],
      [
        ["--budget-s=0x10"],
        /^benchmarks\/gpu_check\.ts: --budget-s must be a positive number, got 0x10$/,
      ],
      [
        ["--sections=adaptr"],
        /^benchmarks\/gpu_check\.ts: unknown section "adaptr"; known: adapter/,
      ],
      [["--sections=,"], /^benchmarks\/gpu_check\.ts: --sections "," names no section/],
      // A stray comma, as every tool's lists refuse it (it ran the other sections before).
      [
        ["--sections=adapter,"],
        /^benchmarks\/gpu_check\.ts: --sections "adapter,": an empty item \(a stray comma\?\); give section names separated by commas$/,
      ],
      [
        ["--git=HEAD"],
        /^benchmarks\/gpu_check\.ts: --git must be a commit sha \(7 to 40 hex digits\), got "HEAD"$/,
      ],
      // In a git checkout (CI's clean clone), a --git naming another commit.
      ...(gitState().sha === "unknown" ? [] : [[
        ["--git=0000000"],
        /^benchmarks\/gpu_check\.ts: --git=0000000 but this checkout is at [0-9a-f]{40}$/,
      ] as [string[], RegExp]]),
      [
        [`--out=${dir}`],
        /^benchmarks\/gpu_check\.ts: --out .*: is a folder; give the report's file name$/,
      ],
      [
        [`--out=${file}/report.json`],
        /^benchmarks\/gpu_check\.ts: --out .*report\.json: the folder .*a-file: is a file, not a folder$/,
      ],
      // The tune section's table, beside the report: a folder in its way is refused up front,
      // not after the sections before tune have spent their GPU time.
      [
        [`--out=${dir}/t.json`, "--quick", "--sections=adapter,tune"],
        /^benchmarks\/gpu_check\.ts: the tune section's table .*t-tuning\.json: is a folder; move it away or give another --out/,
      ],
    ];
    Deno.mkdirSync(`${dir}/t-tuning.json`);
    for (const [given, want] of cases) {
      // A report of a check that regressed goes here, not into results/perf, and fails below.
      const args = given.some((a) => a.startsWith("--out"))
        ? given
        : [...given, `--out=${dir}/not-written.json`];
      const err: string[] = [];
      assert.equal(await cli(args, { error: (s) => err.push(s) }), 2, args.join(" "));
      assert.equal(err.length, 1);
      assert.match(err[0]!, want);
    }
    // A bad HYPERPROMPT_STOCK_BACKPROP is refused as bench refuses it, before any GPU work.
    Deno.env.set("HYPERPROMPT_STOCK_BACKPROP", "yes");
    try {
      const err: string[] = [];
      assert.equal(await cli(["--quick", `--out=${dir}/r.json`], { error: (s) => err.push(s) }), 2);
      assert.deepEqual(err, [
        'HYPERPROMPT_STOCK_BACKPROP="yes" must be 1 (tfjs\'s own backward pass) or 0 / unset ' +
        "(the low-memory backward pass of model/backprop.ts)",
      ]);
    } finally {
      Deno.env.delete("HYPERPROMPT_STOCK_BACKPROP");
    }
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name).sort(),
      ["a-file", "t-tuning.json"],
      "no report was written",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("gpu_check cli(): --help exits 0; a failure outside the sections exits 1", async () => {
  const out: string[] = [];
  assert.equal(await cli(["--help"], { log: (s) => out.push(s) }), 0);
  assert.match(out.join("\n"), /--sections=LIST[\s\S]*--out=FILE[\s\S]*Exit codes/);
  // Its parser knows --help, as the other tools' do (cli answers it first): main given it
  // directly names the flag that is wrong, not --help.
  await assert.rejects(
    () => main(["--help", "--bogus"]),
    /benchmarks\/gpu_check\.ts: unknown flag --bogus;/,
  );
  // A stand-in for main: the webgpu backend or the report write failing while working.
  const err: string[] = [];
  const failing = () => Promise.reject(new Error("benchmarks/gpu_check.ts: no webgpu backend"));
  assert.equal(await cli(["--quick"], { error: (s) => err.push(s), main: failing }), 1);
  assert.deepEqual(err, ["benchmarks/gpu_check.ts: no webgpu backend"]);
});

gpuTest(
  "gpu_check: kernel environment overrides are set aside; a check of stock vs stock fails",
  async () => {
    const dir = await Deno.makeTempDir();
    const env = { HYPERPROMPT_WEBGPU_KERNELS: "0", HYPERPROMPT_WEBGPU_SUBMIT_BATCH: "7" };
    try {
      for (const [k, v] of Object.entries(env)) Deno.env.set(k, v);
      // With HYPERPROMPT_WEBGPU_KERNELS=0 every "tiled" product was tfjs's own, and passed.
      const report = await main(
        ["--quick", "--sections=correctness,memory", `--out=${dir}/r.json`],
        { runCommand: noNvidiaSmi },
      );
      assert.deepEqual(report["envIgnored"], env);
      const sections = report.sections as Record<string, Record<string, unknown>>;
      const c = sections.correctness!;
      assert.equal(c["pass"], true);
      for (const r of c["rows"] as { tiledCalls: number; error?: string; tile: string }[]) {
        assert.ok(r.tiledCalls >= 1 && r.error === undefined, JSON.stringify(r));
      }
      // The memory rows trained with the kernels' 64 dispatches per command buffer, not the
      // environment's 7: the submit batch benchmarks/memory.ts's fused estimate assumes (a freed
      // buffer held for 64 backward nodes, WEBGPU_DEFER_NODES).
      const mem = sections.memory!;
      assert.equal(mem["error"], undefined, String(mem["error"]));
      for (const row of MEMORY_ROWS) {
        assert.equal((mem[row] as { submitBatch: number }).submitBatch, 64, row);
      }
      for (const [k, v] of Object.entries(env)) assert.equal(Deno.env.get(k), v, `${k} restored`);
    } finally {
      for (const k of Object.keys(env)) Deno.env.delete(k);
      await Deno.remove(dir, { recursive: true });
    }
  },
);

gpuTest(
  "gpu_check hostBreakdown(): a step that throws is an error, not a measurement",
  async () => {
    const be = tf.backend() as unknown as Record<string, unknown>;
    const own = Object.keys(be).filter((k) => typeof be[k] === "function").sort();
    const w = tf.variable(tf.ones([4]));
    try {
      const loss = () => tf.tidy(() => tf.sum(tf.mul(w, w)) as tf.Scalar);
      const before = tf.memory().numTensors;
      const ok = await hostBreakdown(loss, [w], () => {});
      assert.ok((ok["dispatches"] as number) > 0 && (ok["wallMs"] as number) >= 0);
      await assert.rejects(
        hostBreakdown(loss, [w], () => {
          throw new Error("the update failed");
        }),
        /^Error: the update failed$/,
      );
      // The loss and the gradients were freed either way (they leaked when the update threw).
      assert.equal(tf.memory().numTensors, before, "no tensor left behind");
      // The instrumentation was removed either way.
      const after = Object.keys(be).filter((k) => typeof be[k] === "function").sort();
      assert.deepEqual(after, own);
    } finally {
      w.dispose();
    }
  },
);

gpuTest(
  "gpu_check timeVariants(): a variant that throws is recorded with its error, the next ones run",
  async () => {
    const base = lowMemoryBackpropInstalled() ? "low-memory" : "stock";
    const stockMatMul = tf.getKernel("BatchMatMul", "webgpu")?.kernelFunc;
    const out: Record<string, unknown> = {};
    const saved: Record<string, unknown>[] = [];
    const ran: string[] = [];
    let i = 0;
    const names = ["tiled", "tiled-nosplit", "stock"];
    await timeVariants(
      [
        { name: "tiled", kernels: {} },
        { name: "tiled-nosplit", kernels: { splitK: "off" } },
        { name: "stock" },
      ],
      {
        partial: (o) => {
          saved.push(structuredClone(o));
          return Promise.resolve();
        },
        overBudget: () => undefined,
      },
      out,
      () => {
        const name = names[i++]!;
        ran.push(name);
        // A stand-in for a kernel the driver rejects, in the second variant only.
        if (name === "tiled-nosplit") return Promise.reject(new Error("shader rejected"));
        return Promise.resolve({ ms: 1 });
      },
    );
    assert.deepEqual(ran, names, "every variant was measured");
    assert.deepEqual(out, {
      "tiled": { backprop: base, ms: 1 },
      "tiled-nosplit": { backprop: base, error: "shader rejected" },
      "stock": { backprop: base, ms: 1 },
    });
    assert.equal(saved.length, 3, "saved after each variant, the failed one included");
    assert.deepEqual(saved[1]!["tiled-nosplit"], { backprop: base, error: "shader rejected" });
    assert.equal(saved[2]!["partial"], true);
    // The stock kernels and the backward pass are back.
    assert.equal(tf.getKernel("BatchMatMul", "webgpu")?.kernelFunc, stockMatMul);
    assert.equal(lowMemoryBackpropInstalled() ? "low-memory" : "stock", base);
    assert.equal(tf.env().getNumber("WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE"), 15);
  },
);

Deno.test("gpu_check microBatchRatio(): a measured row's larger ratio, at least 1, else none", () => {
  const larger = "step-low-memory's larger ratio, at least 1";
  const low = (r: Record<string, unknown>) => microBatchRatio({ "step-low-memory": r });
  // nvidia-smi's delta read low (memory an earlier row freed was kept by the driver) while tfjs's
  // live buffers found the estimate 20 % low: the safe divisor is tfjs's.
  assert.deepEqual(low({ ratio: 0.4, tfjsPeakRatio: 1.2 }), { ratio: 1.2, from: larger });
  assert.deepEqual(low({ ratio: 1.25, tfjsPeakRatio: 0.95 }), { ratio: 1.25, from: larger });
  // No nvidia-smi: tfjs's alone; an estimate found high divides by 1, not less.
  assert.deepEqual(low({ ratio: null, tfjsPeakRatio: 0.9 }), { ratio: 1, from: larger });
  // step-low-memory measured: step-stock's (larger) ratio is not used.
  assert.deepEqual(
    microBatchRatio({
      "step-stock": { ratio: 2, tfjsPeakRatio: 2 },
      "step-low-memory": { ratio: 1.1, tfjsPeakRatio: 1 },
    }),
    { ratio: 1.1, from: larger },
  );
  // step-low-memory ran out of memory, step-stock measured: step-stock's, saying why.
  assert.deepEqual(
    microBatchRatio({
      "step-stock": { ratio: null, tfjsPeakRatio: 1.3 },
      "step-low-memory": { error: "out of memory" },
    }),
    {
      ratio: 1.3,
      from: "step-stock's larger ratio, at least 1 (step-low-memory failed: out of memory)",
    },
  );
  // Neither measured one: no divisor (not 1, which would trust the estimate), with each reason.
  const cases: [Record<string, unknown>, string][] = [
    [{}, "step-low-memory did not run; step-stock did not run"],
    [
      { "step-stock": { error: "device lost" }, "step-low-memory": { error: "out of memory" } },
      "step-low-memory failed: out of memory; step-stock failed: device lost",
    ],
    [
      {
        "step-stock": { skipped: "budget: 500 s > 480 s" },
        "step-low-memory": { skipped: "budget: 500 s > 480 s" },
      },
      "step-low-memory skipped: budget: 500 s > 480 s; step-stock skipped: budget: 500 s > 480 s",
    ],
    [
      // A failed row's partial figures are not a measurement.
      { "step-stock": { ratio: null }, "step-low-memory": { error: "lost", tfjsPeakRatio: 1 } },
      "step-low-memory failed: lost; step-stock recorded no ratio",
    ],
  ];
  for (const [rows, why] of cases) {
    assert.deepEqual(microBatchRatio(rows), { skipped: `no measured ratio: ${why}` });
  }
});

Deno.test("gpu_check microBatchPlan(): the micro row's shape, or why it is skipped", () => {
  const h100 = 81559 * MIB;
  const measured = { "step-low-memory": { ratio: 1.02, tfjsPeakRatio: 1 } };
  const failed = { "step-low-memory": { error: "out of memory" }, "step-stock": { error: "oom" } };
  // Base on an 80 GB card: 64 fits 85.5 GB / 1.02 (the README's paper-base choice; at a measured
  // ratio of 1.1 only 32 would), capped at 32.
  const base = microBatchPlan(false, h100, measured);
  assert.ok("shape" in base, JSON.stringify(base));
  assert.deepEqual(base.shape, { batch: 32, inLen: 512, outLen: 84 });
  assert.match(base.chosenBy, /^largestFittingMicroBatch\(batch 128, 512\/84\) on .* \/ 1\.02 /);
  assert.match(base.chosenBy, /: 64, at most 32$/);
  // The card's memory is divided by the measured ratio: at 1.1, 32 fits (not 64).
  const higher = microBatchPlan(false, h100, { "step-low-memory": { ratio: 1.1 } });
  assert.ok(
    "shape" in higher && /\/ 1\.1 .*: 32, at most 32$/.test(higher.chosenBy),
    JSON.stringify(higher),
  );
  // A card too small for one row of 128 x 512 / 84 (the weights and optimizer state alone).
  const tiny = microBatchPlan(false, 2 * 2 ** 30, measured);
  assert.ok(
    "skipped" in tiny && tiny.skipped.startsWith("no micro-batch fits: "),
    JSON.stringify(tiny),
  );
  // No measured ratio: skipped, in quick mode too, where the card's memory is known.
  const why = "no measured ratio: step-low-memory failed: out of memory; step-stock failed: oom";
  assert.deepEqual(microBatchPlan(false, h100, failed), { skipped: why });
  assert.deepEqual(microBatchPlan(true, h100, failed), { skipped: why });
  // The card's memory unknown: quick mode runs the cap (no ratio needed), the full mode skips.
  const quick = { shape: { batch: 4, inLen: 64, outLen: 16 } };
  assert.deepEqual(microBatchPlan(true, { unknown: "no nvidia-smi" }, failed), {
    ...quick,
    chosenBy: "quick: the GPU's memory does not matter",
  });
  assert.deepEqual(microBatchPlan(false, { unknown: "MIG mode" }, measured), {
    skipped: "the GPU's memory is unknown (MIG mode)",
  });
});

/**
 * Runs `fn` with `tf.engine().makeTensor` failing for a tensor of `shape` (the first one made, as
 * an allocation out of memory would): a fault in a section's setup.
 */
async function withMakeTensorFault<T>(shape: number[], fn: () => Promise<T>): Promise<T> {
  const engine = tf.engine() as unknown as { makeTensor: (...a: unknown[]) => tf.Tensor };
  const make = engine.makeTensor;
  let failed = false;
  engine.makeTensor = function (this: unknown, ...a: unknown[]) {
    if (!failed && JSON.stringify(a[1]) === JSON.stringify(shape)) {
      failed = true;
      throw new Error(`injected: no memory for [${shape}]`);
    }
    return make.apply(this, a);
  };
  try {
    return await fn();
  } finally {
    engine.makeTensor = make;
    assert.ok(failed, `the fault at [${shape}] was reached`);
  }
}

gpuTest(
  "gpu_check: a correctness step, a matmul row or the head rows that throw leave no tensor behind",
  async () => {
    const dir = await Deno.makeTempDir();
    try {
      // correctness: the relative error's read fails (a device lost mid-row): before, its scalar
      // was left alive. The row is an error, the other rows run.
      const before = tf.memory().numTensors;
      const data = tf.Tensor.prototype.data;
      let failed = false;
      tf.Tensor.prototype.data = function (this: tf.Tensor) {
        if (!failed && this.rank === 0) {
          failed = true;
          return Promise.reject(new Error("injected: read failed"));
        }
        return data.call(this);
      } as typeof data;
      let report;
      try {
        report = await main(["--quick", "--sections=correctness", `--out=${dir}/c.json`]);
      } finally {
        tf.Tensor.prototype.data = data;
      }
      const c = (report.sections as Record<string, Record<string, unknown>>).correctness!;
      const rows = c["rows"] as { error?: string }[];
      assert.match(rows[0]!.error!, /injected: read failed/);
      assert.ok(rows.slice(1).every((r) => r.error === undefined));
      assert.equal(tf.memory().numTensors, before, "correctness freed the failed row's tensors");
      // matmul: the second operand of the quick "x·Wᵀ" row ([64, 32]) cannot be made: before, the
      // first ([96, 32]) was left alive.
      const m = await withMakeTensorFault(
        [64, 32],
        () => main(["--quick", "--sections=matmul", `--out=${dir}/m.json`]),
      );
      const mm = (m.sections as Record<string, Record<string, unknown>>).matmul!;
      assert.match(String(mm["error"]), /injected: no memory for \[64,32\]/);
      assert.equal(tf.memory().numTensors, before, "matmul freed the row's first operand");
      // The head rows: their third operand (p, [2, 3, 9, 9]) cannot be made: before, q and k were
      // left alive.
      const h = await withMakeTensorFault(
        [2, 3, 9, 9],
        () => main(["--quick", "--sections=matmul", `--out=${dir}/h.json`]),
      );
      const hm = (h.sections as Record<string, Record<string, unknown>>).matmul!;
      assert.match(String(hm["error"]), /injected: no memory for \[2,3,9,9\]/);
      assert.equal(tf.memory().numTensors, before, "the head rows freed q and k");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

gpuTest(
  "gpu_check memory: a row whose optimizer or inputs cannot be built is an error and frees its model",
  async () => {
    const dir = await Deno.makeTempDir();
    try {
      const before = tf.memory().numTensors;
      // Before, the model and optimizer were built outside the row's try: the error still ended
      // as the row's (rowOrError), but the model built before it was never freed.
      const report = await main(["--quick", "--sections=memory", `--out=${dir}/r.json`], {
        runCommand: noNvidiaSmi,
        createOptimizer: () => {
          throw new Error("injected: no optimizer");
        },
      });
      const mem = (report.sections as Record<string, Record<string, unknown>>).memory!;
      assert.equal(mem["error"], undefined);
      for (const row of MEMORY_ROWS) {
        assert.equal((mem[row] as { error?: string }).error, "injected: no optimizer", row);
      }
      assert.equal(tf.memory().numTensors, before, "every row freed the model it built");
      // The step's inputs ([2, 16] in quick mode) cannot be made once the model is built: the
      // row is an error, its model is freed (before, it stayed alive), and the next rows run.
      const r2 = await withMakeTensorFault(
        [2, 16],
        () =>
          main(["--quick", "--sections=memory", `--out=${dir}/r2.json`], {
            runCommand: noNvidiaSmi,
          }),
      );
      const m2 = (r2.sections as Record<string, Record<string, { error?: string }>>).memory!;
      assert.match(String(m2["step-stock"]!.error), /injected: no memory for \[2,16\]/);
      assert.equal(m2["step-low-memory"]!.error, undefined);
      assert.equal(
        tf.memory().numTensors,
        before,
        "the row freed the model built before the fault",
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

/**
 * measureSteps() on a tiny linear model, against plain training: its host-only steps run between
 * `withTrainingRestored`'s snapshot and restore, so the weights, AdamW's moments and its step
 * count must end as after `steps + 3` plain steps (warm-up, timed, instrumented, profiled) from
 * the same start, bit for bit (same backend, same ops in the same order). On the cpu backend the
 * host-only steps really train (its kernels never submit to a GPU queue), on webgpu they leave
 * never-computed values: either way the state differs unless it is restored.
 */
async function measureStepsRestores(tag: string): Promise<void> {
  const fill = (n: number, seed: number) =>
    Float32Array.from({ length: n }, (_, i) => 0.5 * Math.sin(seed * 100 + i));
  const tensors = tf.memory().numTensors;
  const x = tf.tensor2d(fill(4 * 6, 1), [4, 6]);
  const y = tf.tensor2d(fill(4 * 5, 2), [4, 5]);
  const own = (init: tf.Tensor, name: string) => {
    const v = tf.variable(init, true, `measure-${tag}-${name}`);
    init.dispose(); // tf.variable copies
    return v;
  };
  const make =
    () => [own(tf.tensor2d(fill(6 * 5, 3), [6, 5]), "w"), own(tf.tensor1d(fill(5, 4)), "b")];
  const lossOf = ([w, b]: tf.Variable[]) => () =>
    tf.tidy(() => tf.mean(tf.square(tf.matMul(x, w!).add(b!).sub(y))) as tf.Scalar);
  const state = async (vars: tf.Variable[], opt: ReturnType<typeof createOptimizer>) => ({
    step: opt.step,
    weights: await Promise.all(vars.map(async (v) => Array.from(await v.data()))),
    slots: Object.fromEntries(
      await Promise.all(
        [...opt.slots()].map(async ([k, t]) => [k, Array.from(await t.data())] as const),
      ),
    ),
  });
  const steps = 2;
  let vars = make();
  let opt = createOptimizer({ kind: "adamw" });
  const r = await measureSteps(opt, lossOf(vars), vars, steps);
  assert.equal(r.hostOnlyMs.length, 2, "the host-only steps ran");
  const measured = await state(vars, opt);
  opt.dispose();
  tf.dispose(vars);
  // The same variable names (slot keys follow them) in plain training from the same start.
  vars = make();
  opt = createOptimizer({ kind: "adamw" });
  const params = new Map(vars.map((v) => [v.name, v]));
  for (let i = 0; i < steps + 3; i++) {
    const { value, grads } = tf.variableGrads(lossOf(vars), vars);
    opt.apply(params, new Map(Object.entries(grads)), 1e-4);
    await value.data();
    tf.dispose([value, ...Object.values(grads)]);
  }
  const plain = await state(vars, opt);
  opt.dispose();
  tf.dispose([...vars, x, y]);
  assert.equal(plain.step, steps + 3);
  assert.equal(Object.keys(plain.slots).length, 4, "AdamW's m and v of both variables");
  assert.deepEqual(measured, plain, `${tag}: state after measureSteps`);
  assert.equal(tf.memory().numTensors, tensors, `${tag}: tensors`);
}

Deno.test("gpu_check measureSteps(): after the host-only steps weights and AdamW moments are restored, bit-exact (cpu)", async () => {
  const backend = tf.getBackend();
  assert.ok(await tf.setBackend("cpu"));
  try {
    await measureStepsRestores("cpu");
  } finally {
    if (backend !== undefined) await tf.setBackend(backend);
  }
});

gpuTest(
  "gpu_check measureSteps(): after the host-only steps weights and AdamW moments are restored, bit-exact (webgpu, fused AdamW)",
  () => measureStepsRestores("webgpu"),
  () => assert.ok(registerWebgpuKernels()),
);

Deno.test("gpu_check correctnessVerdict(): the default tiles decide pass, a failed row counts as Infinity", () => {
  assert.equal(CORRECTNESS_TOLERANCE, 1e-5);
  const defaults = new Set(["t64", "t32"]);
  const ok = [
    { tile: "t64", relL2: 1e-5 }, // at the tolerance: passes
    { tile: "t32", relL2: 3e-7 },
    { tile: "t128k16", relL2: 2e-6 },
  ];
  assert.deepEqual(correctnessVerdict(ok, defaults, true), {
    pass: true,
    worst: 1e-5,
    candidatesPass: true,
    worstCandidate: 2e-6,
  });
  // The fused kernels' self-check failing fails the check.
  assert.equal(correctnessVerdict(ok, defaults, false).pass, false);
  // Over the tolerance in a default tile: fails; in a candidate: only candidatesPass.
  const over = correctnessVerdict([...ok, { tile: "t32", relL2: 1.1e-5 }], defaults, true);
  assert.deepEqual([over.pass, over.worst], [false, 1.1e-5]);
  const cand = correctnessVerdict([...ok, { tile: "t128k16", relL2: 1.1e-5 }], defaults, true);
  assert.deepEqual([cand.pass, cand.candidatesPass, cand.worstCandidate], [true, false, 1.1e-5]);
  // A row with an error fails whatever its figure (e.g. the tiled kernel did not run: stock vs
  // stock agrees exactly), and so does a NaN figure.
  for (const bad of [{ relL2: 0, error: "the tiled kernel did not run" }, { relL2: NaN }]) {
    const v = correctnessVerdict([...ok, { tile: "t64", ...bad }], defaults, true);
    assert.deepEqual([v.pass, v.worst], [false, Infinity], JSON.stringify(bad));
  }
});

Deno.test("gpu_check matmulRates(): TFLOP/s of the wall and kernel times, rounded", () => {
  // 2·4096³ FLOPs in 10 ms: 13.7439 TFLOP/s; in 8 ms of kernel time: 17.1799.
  const flop = 2 * 4096 ** 3;
  assert.deepEqual(matmulRates(flop, 10.00049, 8), {
    ms: 10,
    tflops: 13.7432,
    kernelMs: 8,
    kernelTflops: 17.1799,
  });
  // No kernel time (the adapter gives none): null, not a rate of infinity.
  assert.deepEqual(matmulRates(flop, 10, null), {
    ms: 10,
    tflops: 13.7439,
    kernelMs: null,
    kernelTflops: null,
  });
});
