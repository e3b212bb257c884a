import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { inTempDir } from "../model/fs_testing.ts";
import { preset } from "../model/config.ts";
import { sharedPath } from "../model/shared_dir.ts";
import { listCheckpoints } from "./checkpointing.ts";
import {
  CHECKPOINTS_AT_ONCE,
  diskNeedLine,
  diskSpaceWarning,
  estimateDiskNeed,
  freeDiskBytes,
  keptWeightsOf,
} from "./disk_space.ts";
import { planDeviceMemory } from "./device_memory.ts";
import type { MemoryEstimate } from "./memory.ts";
import { runOne } from "./run_one.ts";
import { DEFAULT_TRAIN, runId, type RunSpec, type TrainSpec } from "./spec.ts";

function spec(
  label: string,
  train: Partial<TrainSpec>,
  method: RunSpec["method"]["name"] = "mtl",
): RunSpec {
  const s: Omit<RunSpec, "id"> = {
    profile: "test",
    model: "tiny-v1_1",
    backbone: "random",
    benchmark: "super_glue",
    tasks: ["cb"],
    method: { name: method, label, config: method === "prompt_tuning" ? { length: 4 } : {} },
    seed: 0,
    backend: "wasm",
    train: {
      ...DEFAULT_TRAIN,
      steps: 2,
      batchSize: 2,
      maxInputLength: 32,
      maxTargetLength: 4,
      evalEvery: 2,
      evalMaxExamples: 2,
      ...train,
    },
  };
  return { ...s, id: runId(s) };
}

/**
 * An estimate with only the fields the disk need reads (the rest are not read): a trained
 * backbone of `total` parameters (its state dict too), no method variables.
 */
function est(trained: number, total: number, optimizerState: number): MemoryEstimate {
  const params = { trained, total, method: 0, trainedBackbone: trained, backboneStateDict: total };
  return { params, optimizerState } as unknown as MemoryEstimate;
}

const NAME = (s: RunSpec) => `run ${s.method.label}`;

Deno.test("estimateDiskNeed: the largest run's checkpoints (3 at once) plus every kept weights folder; runs writing nothing or of unknown size apart", () => {
  const none = spec("none", { checkpointEvery: 0 });
  const small = spec("small", { checkpointEvery: 2 });
  const big = spec("big", { checkpointEvery: 2 });
  const kept = spec("kept", { checkpointEvery: 0, saveWeights: true });
  const both = spec("both", { checkpointEvery: 2, saveWeights: true });
  const unknown = spec("unknown", { checkpointEvery: 2 });
  const estimates = new Map<RunSpec, MemoryEstimate>([
    [none, est(1e9, 1e9, 1e9)],
    [small, est(100, 1000, 10)],
    [big, est(1000, 1000, 40)],
    [kept, est(5, 200, 1)],
    [both, est(10, 300, 2)],
  ]);
  const need = estimateDiskNeed(
    [none, small, big, kept, both, unknown],
    (s) => estimates.get(s),
  );
  assert.equal(need.checkpointBytes, CHECKPOINTS_AT_ONCE * (4 * 1000 + 40));
  assert.equal(need.largest, big);
  assert.equal(need.keptWeightsBytes, 4 * (200 + 300));
  assert.equal(need.keptWeightsRuns, 2);
  assert.equal(need.unknown, 1);
  assert.equal(need.bytes, need.checkpointBytes + need.keptWeightsBytes);
  // A grid that writes nothing needs nothing, and says nothing.
  const nothing = estimateDiskNeed([none], (s) => estimates.get(s));
  assert.deepEqual(nothing, {
    bytes: 0,
    checkpointBytes: 0,
    largest: undefined,
    keptWeightsBytes: 0,
    keptWeightsRuns: 0,
    unknown: 0,
  });
  assert.equal(diskNeedLine(nothing, "out", 1, NAME), undefined);
  assert.equal(diskSpaceWarning(nothing, "out", 0, NAME), undefined);
  // A run that writes nothing is not "of unknown size" for want of an estimate.
  assert.equal(estimateDiskNeed([none], () => undefined).unknown, 0);
  // Runs that write but are all of unknown size: a dry run still says so.
  const onlyUnknown = estimateDiskNeed([unknown], () => undefined);
  assert.equal(onlyUnknown.bytes, 0);
  assert.equal(
    diskNeedLine(onlyUnknown, "out", 5e9, NAME),
    "disk: the runs write up to about 0 B at once in out (1 run(s) of unknown size not " +
      "counted); 5.0 GB free there",
  );
});

Deno.test("diskNeedLine / diskSpaceWarning: what is written where and why; a warning only below the need", () => {
  const s = spec("MTL", { checkpointEvery: 2 });
  const need = estimateDiskNeed([s], () => est(1e9, 1e9, 2e8));
  assert.equal(need.bytes, 3 * 4.2e9);
  const line = diskNeedLine(need, "results/runs", 5e10, NAME);
  assert.equal(
    line,
    "disk: the runs write up to about 12.6 GB at once in results/runs (12.6 GB of checkpoints " +
      "(3 at once while one is saved) of the largest run, run MTL); 50.0 GB free there",
  );
  assert.match(diskNeedLine(need, "o", undefined, NAME)!, /; its free space is unknown$/);
  assert.equal(diskSpaceWarning(need, "o", need.bytes, NAME), undefined, "exactly enough");
  assert.equal(diskSpaceWarning(need, "o", undefined, NAME), undefined, "unknown: no warning");
  assert.equal(
    diskSpaceWarning(need, "o", 1e9, NAME),
    "disk: the runs write up to about 12.6 GB at once in o (12.6 GB of checkpoints (3 at once " +
      "while one is saved) of the largest run, run MTL); 1.0 GB free there: a run that fills " +
      "the disk fails there (what was written before is kept); free space, or choose another --out",
  );
  const kept = estimateDiskNeed(
    [spec("K", { checkpointEvery: 0, saveWeights: true }), spec("?", { checkpointEvery: 1 })],
    (x) => x.method.label === "K" ? est(1, 5e8, 0) : undefined,
  );
  assert.equal(
    diskNeedLine(kept, "o", 1e12, NAME),
    "disk: the runs write up to about 2.0 GB at once in o (2.0 GB of final weights kept by 1 " +
      "run(s) (train.saveWeights); 1 run(s) of unknown size not counted); 1000.0 GB free there",
  );
});

Deno.test("freeDiskBytes: the folder's file system, or its nearest existing parent's; undefined where none can be read", () =>
  inTempDir((dir) => {
    const here = freeDiskBytes(dir);
    assert.ok(here !== undefined && here > 0, String(here));
    const below = freeDiskBytes(join(dir, "not", "made", "yet"));
    assert.ok(below !== undefined);
    // One file system, read twice: equal but for what other processes wrote in between (1%).
    assert.ok(Math.abs(below - here) <= 0.01 * here, `${below} vs ${here}`);
    // A path under a file: no folder there, and not "missing" either.
    const file = join(dir, "f");
    Deno.writeTextFileSync(file, "x");
    assert.equal(freeDiskBytes(join(file, "x")), undefined);
    return Promise.resolve();
  }));

const HAVE = existsSync(sharedPath("data/super_glue/CB/train.jsonl"));

/** The tensor bytes of a safetensors file: its size less the 8-byte length and the header. */
async function tensorBytes(file: string): Promise<number> {
  const bytes = await Deno.readFile(file);
  const header = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  return bytes.length - 8 - header;
}

Deno.test({
  name:
    "estimateDiskNeed: a checkpoint's tensors are exactly the estimate's trained weights and optimizer slots (full and frozen backbone, Adafactor and AdamW)",
  ignore: !HAVE,
  fn: async () => {
    for (
      const s of [
        spec("mtl", { checkpointEvery: 2 }),
        spec("pt", { checkpointEvery: 2 }, "prompt_tuning"),
        spec("adamw", { checkpointEvery: 2, optimizer: "adamw", learningRate: 1e-4 }),
      ]
    ) {
      await inTempDir(async (out) => {
        await runOne(s, { outDir: out, dataDir: sharedPath("data") });
        const root = join(out, "checkpoints");
        const [step] = await listCheckpoints(root);
        const dir = join(root, `step-${String(step).padStart(8, "0")}`);
        const onDisk = await tensorBytes(join(dir, "variables.safetensors")) +
          await tensorBytes(join(dir, "optimizer.safetensors"));
        const plan = planDeviceMemory([s], {
          backendOf: () => ({ name: "wasm", gpu: false }),
          device: undefined,
          configOf: () => preset("tiny-v1_1"),
          modelName: () => "tiny-v1_1",
        });
        const need = estimateDiskNeed([s], (x) => plan.runs.get(x.id)?.estimate);
        assert.equal(need.checkpointBytes, CHECKPOINTS_AT_ONCE * onDisk, s.method.label);
      });
    }
  },
});

/** The tensor bytes of the safetensors files under `dir` (recursively). */
async function tensorBytesUnder(dir: string): Promise<number> {
  let n = 0;
  for await (const e of Deno.readDir(dir)) {
    const path = join(dir, e.name);
    if (e.isDirectory) n += await tensorBytesUnder(path);
    else if (e.name.endsWith(".safetensors")) n += await tensorBytes(path);
  }
  return n;
}

Deno.test({
  name:
    "keptWeightsOf: a run's kept weights are exactly the estimate's tensors (the method's, and a trained backbone's state dict with its embedding copies)",
  ignore: !HAVE,
  fn: async () => {
    for (
      const s of [
        spec("mtl", { checkpointEvery: 0, saveWeights: true }),
        spec("pt", { checkpointEvery: 0, saveWeights: true }, "prompt_tuning"),
      ]
    ) {
      await inTempDir(async (out) => {
        const r = await runOne(s, { outDir: out, dataDir: sharedPath("data") });
        assert.ok(r.weights !== undefined, "weights kept");
        const onDisk = await tensorBytesUnder(join(out, "final"));
        const plan = planDeviceMemory([s], {
          backendOf: () => ({ name: "wasm", gpu: false }),
          device: undefined,
          configOf: () => preset("tiny-v1_1"),
          modelName: () => "tiny-v1_1",
        });
        const e = plan.runs.get(s.id)!.estimate;
        assert.equal(keptWeightsOf(e), onDisk, s.method.label);
        const need = estimateDiskNeed([s], () => e);
        assert.equal(need.keptWeightsBytes, onDisk);
        assert.equal(need.checkpointBytes, 0, "no checkpoints");
      });
    }
  },
});
