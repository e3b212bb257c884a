/**
 * Tests of the matmul tuning tables (`tuning.ts`) and of the BatchMatMul kernel following them.
 *
 * The GPU tests run on the software adapter here (shapes are small; times there say nothing about
 * a GPU, so they check the mechanics: every candidate timed, the choice among them, the kernel
 * running what a table says, results equal to the cpu backend within the tiled kernel's
 * tolerance, relative L2 ≤ 1e-5, see `matmul_kernels_test.ts`).
 */

import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-webgpu";
import assert from "node:assert/strict";
import {
  adapterSlug,
  choiceName,
  findTuningTable,
  knownChoices,
  type MatMulTuningTable,
  median,
  mergeTuningTables,
  parseChoice,
  parseShapeKey,
  parseTuningTable,
  pickTunedChoice,
  sameAdapter,
  serializeTuningTable,
  setActiveTuning,
  shapeKey,
  timeProducts,
  tunedChoice,
  tuneShape,
  TUNING_FORMAT,
  TUNING_MARGIN,
  TUNING_VERSION,
  tuningCandidates,
  tuningPathFor,
} from "./tuning.ts";
import { chooseSplit, MATMUL_TILE_CANDIDATES, MATMUL_TILES } from "./matmul_kernels.ts";
import {
  registerWebgpuKernels,
  resetWebgpuKernelStats,
  ruleOfThumb,
  unregisterWebgpuKernels,
  webgpuKernelStats,
} from "./mod.ts";
import { uniformValues } from "../../benchmarks/rng.ts";
import { gpuTest, withWebgpuKernel } from "./testing.ts";
import { withClock } from "../clock_testing.ts";
import { countReads } from "../../benchmarks/queued_timing_testing.ts";
import { SPLIT_K_MIN_CHUNK } from "./matmul_kernels.ts";

const ADAPTER = {
  vendor: "65541",
  architecture: "",
  device: "0",
  description: "llvmpipe (LLVM 15.0.6, 256 bits)",
};

function table(entries: MatMulTuningTable["entries"]): MatMulTuningTable {
  return {
    format: TUNING_FORMAT,
    version: TUNING_VERSION,
    adapter: ADAPTER,
    created: "2026-11-26T15:00:00.000Z",
    provenance: { tfjs: "4.22.0", reps: 10 },
    entries,
  };
}

Deno.test("shapeKey and parseShapeKey round-trip; a bad key names the field", () => {
  const s = { batchA: 12, batchB: 1, m: 128, n: 64, k: 128, transposeA: false, transposeB: true };
  assert.equal(shapeKey(s), "12x1 m128 n64 k128 NT");
  assert.deepEqual(parseShapeKey(shapeKey(s), "x"), s);
  assert.throws(() => parseShapeKey("1x1 m0 n8 k8 NN", "f.json: entries"), /f\.json: entries/);
  assert.throws(() => parseShapeKey("m8 n8 k8", "f.json: entries"), /not a product shape/);
  assert.throws(() => parseShapeKey("2x3 m8 n8 k8 NN", "w"), /equal or one of them 1/);
});

Deno.test("choiceName and parseChoice round-trip; unknown tiles and slice counts are rejected", () => {
  for (const name of ["stock", "t128", "t64v4", "t128/k8", "t64/k16"]) {
    assert.equal(choiceName(parseChoice(name, "w")), name);
  }
  assert.deepEqual(parseChoice("t128/k8", "w"), { kernel: "tiled", tile: "t128", splits: 8 });
  // An unknown tile names the choice and every known one, not the kernel module's function.
  const known = knownChoices();
  const tiles = [...MATMUL_TILES, ...MATMUL_TILE_CANDIDATES].map((t) => t.name).join(", ");
  assert.equal(
    known,
    `stock, ${tiles}; each tile also as <tile>/kS, S K slices 1 to 16 (e.g. t64/k8)`,
  );
  for (const [name, tile] of [["t999", "t999"], ["t99/k4", "t99"]] as const) {
    assert.throws(() => parseChoice(name, "f: e.choice"), {
      message: `f: e.choice: "${name}": unknown tile "${tile}"; known choices: ${known}`,
    });
  }
  assert.throws(() => parseChoice("t128/k0", "w"), /not a kernel choice/);
  assert.throws(() => parseChoice("t128/k17", "w"), /1 to 16 slices/);
  assert.throws(() => parseChoice("t128/k08", "w"), /not a kernel choice/);
});

Deno.test("adapterSlug: a file name stem from description, vendor and device", () => {
  assert.equal(adapterSlug(ADAPTER), "llvmpipe-llvm-15-0-6-256-bits-65541-0");
  assert.equal(
    adapterSlug({ vendor: "nvidia", architecture: "", device: "8989", description: "NVIDIA H200" }),
    "nvidia-h200-nvidia-8989",
  );
  assert.equal(
    adapterSlug({ vendor: "", architecture: "", device: "", description: "" }),
    "unknown-adapter",
  );
  assert.ok(adapterSlug({ ...ADAPTER, description: "x".repeat(200) }).length <= 80);
});

Deno.test("parseTuningTable reads what serializeTuningTable writes, entries sorted", () => {
  const t = table({
    "1x1 m64 n64 k512 TN": { choice: "t32/k2", heuristic: "t32", ms: { t32: 1, "t32/k2": 0.5 } },
    "1x1 m16 n16 k16 NN": { choice: "stock", heuristic: "stock", ms: { stock: 0.1 }, calls: 3 },
  });
  const text = serializeTuningTable(t);
  assert.deepEqual(parseTuningTable(text, "t.json"), t);
  const keys = Object.keys(JSON.parse(text).entries);
  assert.deepEqual(keys, [...keys].sort());
});

Deno.test("parseTuningTable: errors name the file and the field", () => {
  const good = JSON.parse(serializeTuningTable(table({
    "1x1 m8 n8 k8 NT": { choice: "t32", heuristic: "t32", ms: { t32: 1 } },
  })));
  const bad = (mutate: (x: Record<string, unknown>) => void, re: RegExp) => {
    const x = structuredClone(good);
    mutate(x);
    assert.throws(() => parseTuningTable(JSON.stringify(x), "results/tuning/a.json"), (e) => {
      assert.ok(e instanceof Error);
      assert.match(e.message, /^results\/tuning\/a\.json: /);
      assert.match(e.message, re);
      return true;
    });
  };
  assert.throws(() => parseTuningTable("{", "a.json"), /a\.json:1:2: invalid JSON: /);
  // One line with line and column, also for text V8 quotes back (its own message spans lines).
  assert.throws(
    () => parseTuningTable('{"format": "x",\n  "version": 1,,\n}', "b.json"),
    (e: Error) => /^b\.json:2:16: invalid JSON: [^\n]*$/.test(e.message),
  );
  bad((x) => (x.format = "other"), /format must be "hyperprompt-webgpu-matmul-tuning"/);
  bad(
    (x) => delete x.format,
    /: format is missing \(must be "hyperprompt-webgpu-matmul-tuning"\): not a /,
  );
  bad((x) => delete x.version, /: version is missing \(must be \d+\)$/);
  bad((x) => (x.version = 2), /version must be 1, got 2/);
  bad((x) => delete (x.adapter as Record<string, unknown>).description, /adapter\.description/);
  bad((x) => (x.created = "yesterday"), /: created must be an ISO date/);
  bad((x) => ((x.provenance as Record<string, unknown>).reps = [1]), /: provenance\.reps/);
  // An earlier run's fields are checked alike, named by their path.
  const withEarlier =
    (edit: (run: Record<string, unknown>) => void) => (x: Record<string, unknown>) => {
      const run = {
        created: x.created,
        provenance: structuredClone(x.provenance),
        entries: ["1x1 m8 n8 k8 NT"],
      };
      edit(run);
      x.earlier = [run];
    };
  const accepted = structuredClone(good);
  withEarlier(() => {})(accepted);
  assert.equal(parseTuningTable(JSON.stringify(accepted), "t.json").earlier?.length, 1);
  bad(withEarlier((r) => (r.created = "yesterday")), /: earlier\[0\]\.created must be an ISO date/);
  bad(
    withEarlier((r) => ((r.provenance as Record<string, unknown>).reps = [1])),
    /: earlier\[0\]\.provenance\.reps/,
  );
  const entries = (x: Record<string, unknown>) => x.entries as Record<string, unknown>;
  const entry = (x: Record<string, unknown>) =>
    entries(x)["1x1 m8 n8 k8 NT"] as Record<string, unknown>;
  bad((x) => (entries(x)["m8"] = entry(x)), /entries\["m8"\]: "m8" is not a product shape/);
  bad((x) => (entry(x).choice = "t7"), /entries\["1x1 m8 n8 k8 NT"\]\.choice: .*unknown tile/);
  bad((x) => delete entry(x).heuristic, /entries\["1x1 m8 n8 k8 NT"\]\.heuristic must be a string/);
  bad(
    (x) => ((entry(x).ms as Record<string, unknown>).t32 = -1),
    /entries\["1x1 m8 n8 k8 NT"\]\.ms\["t32"\] must be a finite ms ≥ 0, got -1/,
  );
  bad((x) => (entry(x).calls = 0.5), /\.calls must be a positive integer/);
});

Deno.test("mergeTuningTables keeps other shapes, takes the fresh entry, refuses another adapter", () => {
  const old = table({
    "1x1 m8 n8 k8 NT": { choice: "t32", heuristic: "t32", ms: { t32: 1 } },
    "1x1 m8 n8 k8 TN": { choice: "t64", heuristic: "t32", ms: { t32: 2, t64: 1 } },
  });
  const fresh = table({
    "1x1 m8 n8 k8 TN": { choice: "stock", heuristic: "t32", ms: { t32: 2, stock: 1 } },
  });
  const m = mergeTuningTables(old, fresh);
  assert.deepEqual(Object.keys(m.entries).sort(), ["1x1 m8 n8 k8 NT", "1x1 m8 n8 k8 TN"]);
  assert.equal(m.entries["1x1 m8 n8 k8 TN"]!.choice, "stock");
  assert.ok(sameAdapter(m.adapter, ADAPTER));
  // The entry kept from the old table stays described by the run that measured it; the table's
  // own provenance is the fresh run's. Before, the old run's provenance was lost.
  const later = { ...fresh, created: "2026-11-27T09:00:00.000Z", provenance: { reps: 2 } };
  const m2 = mergeTuningTables(old, later);
  assert.deepEqual(m2.provenance, { reps: 2 });
  assert.deepEqual(m2.earlier, [{
    created: old.created,
    provenance: old.provenance,
    entries: ["1x1 m8 n8 k8 NT"],
  }]);
  // A third run over both: the runs whose entries remain, oldest first; one replaced wholly goes.
  const third = table({
    "1x1 m8 n8 k8 NT": { choice: "t32", heuristic: "t32", ms: { t32: 1 } },
    "1x1 m16 n8 k8 NT": { choice: "t32", heuristic: "t32", ms: { t32: 1 } },
  });
  const m3 = mergeTuningTables(m2, { ...third, created: "2026-11-28T09:00:00.000Z" });
  assert.deepEqual(m3.earlier, [{
    created: later.created,
    provenance: later.provenance,
    entries: ["1x1 m8 n8 k8 TN"],
  }]);
  // Three runs that each keep entries: every earlier run is carried forward with its own keys,
  // none named twice, and the table reads back.
  const k = (m: number) => `1x1 m${m} n8 k8 NT`;
  const e = { choice: "t32", heuristic: "t32", ms: { t32: 1 } };
  const r1 = {
    ...table({ [k(8)]: e, [k(16)]: e, [k(24)]: e }),
    created: "2026-11-01T00:00:00.000Z",
  };
  const r2 = {
    ...table({ [k(16)]: e }),
    created: "2026-11-02T00:00:00.000Z",
    provenance: { r: 2 },
  };
  const r3 = {
    ...table({ [k(24)]: e }),
    created: "2026-11-03T00:00:00.000Z",
    provenance: { r: 3 },
  };
  const three = mergeTuningTables(mergeTuningTables(r1, r2), r3);
  assert.deepEqual(three.provenance, { r: 3 });
  assert.deepEqual(three.earlier, [
    { created: r1.created, provenance: r1.provenance, entries: [k(8)] },
    { created: r2.created, provenance: { r: 2 }, entries: [k(16)] },
  ]);
  assert.deepEqual(
    parseTuningTable(serializeTuningTable(three), "t3.json").earlier,
    three.earlier,
  );
  // What is written reads back the same; a key no entry has, or named twice, is refused.
  const text = serializeTuningTable(m3);
  assert.equal(serializeTuningTable(parseTuningTable(text, "t.json")), text);
  assert.deepEqual(parseTuningTable(text, "t.json").earlier, m3.earlier);
  const edited = (f: (x: { earlier: { entries: string[] }[] }) => void) => {
    const x = JSON.parse(text);
    f(x);
    return JSON.stringify(x);
  };
  assert.throws(
    () => parseTuningTable(edited((x) => x.earlier[0]!.entries.push("1x1 m9 n8 k8 NT")), "t.json"),
    /t\.json: earlier\[0\]\.entries\[1\] must be a key of entries, got "1x1 m9 n8 k8 NT"/,
  );
  assert.throws(
    () =>
      parseTuningTable(
        edited((x) => x.earlier.push({ ...x.earlier[0]!, entries: ["1x1 m8 n8 k8 TN"] })),
        "t.json",
      ),
    /earlier\[1\]\.entries\[0\] "1x1 m8 n8 k8 TN" is named by earlier\[0\] too/,
  );
  assert.throws(
    () => mergeTuningTables(old, { ...fresh, adapter: { ...ADAPTER, device: "1" } }),
    /different adapters \(".*" \(vendor ".*", architecture ".*", device "0"\) \/ ".*" \(vendor ".*", architecture ".*", device "1"\)\)/,
  );
});

const LIMITS = { maxComputeWorkgroupStorageSize: 16384, maxComputeInvocationsPerWorkgroup: 256 };

Deno.test("tuningCandidates: stock, every tile that fits, K splits only for long K", () => {
  const dW = { batchA: 1, batchB: 1, m: 768, n: 768, k: 4096, transposeA: true, transposeB: false };
  const names = tuningCandidates(dW, LIMITS).map(choiceName);
  assert.equal(names[0], "stock");
  for (const t of ["t128", "t64", "t32", "t128x64", "t64x128", "t64k24", "t128v4", "t64v4"]) {
    assert.ok(names.includes(t), t);
  }
  for (const s of ["t128/k2", "t128/k16", "t64/k8", "t128v4/k4", "t64v4/k16"]) {
    assert.ok(names.includes(s), s);
  }
  assert.ok(!names.includes("t32/k2"), "no splits of the 32-wide tile");
  assert.equal(new Set(names).size, names.length, "no duplicates");
  // Short K: no splits; odd contiguous dims: no vec4 tiles (they would run as their scalar twins).
  const odd = { ...dW, m: 33, n: 65, k: 100 };
  const oddNames = tuningCandidates(odd, LIMITS).map(choiceName);
  assert.ok(oddNames.every((n) => !n.includes("/k")));
  assert.ok(oddNames.every((n) => !n.includes("v4")));
  // Slices shorter than 256 are not made: K = 1024 splits in 2 and 4 only.
  const k1024 = tuningCandidates({ ...dW, k: 1024 }, LIMITS).map(choiceName);
  assert.ok(k1024.includes("t128/k4") && !k1024.includes("t128/k8"));
  // A device with less workgroup memory drops the tiles that do not fit.
  const small = tuningCandidates(dW, { ...LIMITS, maxComputeWorkgroupStorageSize: 9000 })
    .map(choiceName);
  assert.ok(small.includes("t64") && !small.includes("t128x64") && !small.includes("t64k24"));
});

Deno.test("ruleOfThumb: stock for untransposed products by default, chooseSplit's choice otherwise", () => {
  const dW = { batchA: 1, batchB: 1, m: 768, n: 768, k: 4096, transposeA: true, transposeB: false };
  const want = chooseSplit(1, 768, 768, 4096, 256);
  assert.equal(choiceName(ruleOfThumb(dW, {})), `${want.tile.name}/k${want.splits}`);
  assert.equal(choiceName(ruleOfThumb({ ...dW, transposeA: false }, {})), "stock");
  assert.equal(choiceName(ruleOfThumb({ ...dW, transposeA: false }, { cover: "all" })), "t128/k8");
  assert.equal(choiceName(ruleOfThumb(dW, { splitK: "off" })), "t32");
  assert.equal(choiceName(ruleOfThumb(dW, { tile: "t64" })), "t64");
  // A split over the dispatch limit (8 batches × 4 slices > 16) is not made.
  const batched = { ...dW, batchA: 8, batchB: 8 };
  assert.equal(choiceName(ruleOfThumb(batched, { splitK: 4 }, 64)), "t128/k4");
  assert.equal(choiceName(ruleOfThumb(batched, { splitK: 4 }, 16)), "t128");
});

/** A·B on the cpu backend and on webgpu under `tuning`; returns what the kernel ran. */
async function runUnder(
  tuning: MatMulTuningTable | null,
  aShape: number[],
  bShape: number[],
  tA: boolean,
  tB: boolean,
  seed: number,
): Promise<Record<string, Record<string, number>>> {
  const av = uniformValues(aShape.reduce((x, y) => x * y, 1), seed);
  const bv = uniformValues(bShape.reduce((x, y) => x * y, 1), seed + 1);
  await tf.setBackend("cpu");
  const refT = tf.matMul(tf.tensor(av, aShape), tf.tensor(bv, bShape), tA, tB);
  const ref = await refT.data();
  tf.dispose(refT);
  await tf.setBackend("webgpu");
  registerWebgpuKernels({ tuning });
  resetWebgpuKernelStats();
  const a = tf.tensor(av, aShape), b = tf.tensor(bv, bShape);
  const y = tf.matMul(a, b, tA, tB);
  const got = await y.data();
  let num = 0, den = 0;
  for (let i = 0; i < ref.length; i++) {
    num += (got[i]! - ref[i]!) ** 2;
    den += ref[i]! ** 2;
  }
  // matmul_kernels_test.ts's REL_L2_TOL and its reasoning: float32 dot products summed in
  // another order (tiles, split-K) than cpu's loop, √K·2⁻²⁴ ≈ 8e-7 relative; 1e-5 is 12× that.
  assert.ok(Math.sqrt(num / den) <= 1e-5, `relative L2 ${Math.sqrt(num / den)}`);
  tf.dispose([a, b, y]);
  return webgpuKernelStats().shapes;
}

gpuTest("the BatchMatMul kernel runs a table's choice for listed shapes only", async () => {
  const t = table({
    // a transposed product the rule would give to t32: forced to t64 with K in 2 slices
    "1x1 m20 n24 k600 TN": { choice: "t64/k2", heuristic: "t32", ms: { t32: 2, "t64/k2": 1 } },
    // an untransposed product the rule gives to stock: forced to the tiled kernel
    "2x1 m9 n12 k16 NN": { choice: "t32", heuristic: "stock", ms: { stock: 2, t32: 1 } },
    // a transposed product forced to stock
    "1x1 m9 n12 k16 NT": { choice: "stock", heuristic: "t32", ms: { t32: 2, stock: 1 } },
  });
  assert.deepEqual(await runUnder(t, [600, 20], [600, 24], true, false, 1), {
    "1x1 m20 n24 k600 TN": { "t64/k2": 1 },
  });
  assert.deepEqual(await runUnder(t, [2, 9, 16], [16, 12], false, false, 3), {
    "2x1 m9 n12 k16 NN": { t32: 1 },
  });
  assert.deepEqual(await runUnder(t, [9, 16], [12, 16], false, true, 5), {
    "1x1 m9 n12 k16 NT": { stock: 1 },
  });
  assert.equal(webgpuKernelStats().stock["tuned"], 1);
  // Not listed: the rule of thumb (t32 for this small transposed product, stock untransposed).
  assert.deepEqual(await runUnder(t, [16, 9], [16, 12], true, false, 7), {
    "1x1 m9 n12 k16 TN": { t32: 1 },
  });
  assert.deepEqual(await runUnder(t, [9, 16], [16, 12], false, false, 9), {
    "1x1 m9 n12 k16 NN": { stock: 1 },
  });
  // Without a table the forced shapes follow the rule again.
  assert.deepEqual(await runUnder(null, [600, 20], [600, 24], true, false, 1), {
    "1x1 m20 n24 k600 TN": { t32: 1 },
  });
});

gpuTest("tuneShape times every candidate, picks among them and leaks nothing", async () => {
  registerWebgpuKernels({});
  const shape = { batchA: 1, batchB: 1, m: 24, n: 20, k: 520, transposeA: true, transposeB: false };
  const heuristic = ruleOfThumb(shape, {});
  const candidates = [parseChoice("stock", "t"), parseChoice("t64/k2", "t")];
  const before = tf.memory().numTensors;
  const e = await tuneShape(shape, { reps: 2, rounds: 1, heuristic, candidates });
  assert.equal(tf.memory().numTensors, before, "no tensors left");
  assert.equal(e.heuristic, choiceName(heuristic));
  assert.deepEqual(Object.keys(e.ms).sort(), ["stock", "t32", "t64/k2"].sort());
  for (const ms of Object.values(e.ms)) assert.ok(Number.isFinite(ms) && ms > 0);
  assert.ok(e.choice in e.ms);
  // The rule's choice stays unless another is more than TUNING_MARGIN faster.
  const best = Math.min(...Object.values(e.ms));
  if (e.choice !== e.heuristic) assert.ok(best < e.ms[e.heuristic]! * (1 - TUNING_MARGIN));
  else assert.ok(best >= e.ms[e.heuristic]! * (1 - TUNING_MARGIN));
  // The tuned choices in effect before tuning are in effect after it.
  resetWebgpuKernelStats();
  const y = tf.matMul(tf.ones([520, 24]), tf.ones([520, 20]), true, false);
  await y.data();
  tf.dispose(y);
  assert.deepEqual(webgpuKernelStats().shapes, {
    "1x1 m24 n20 k520 TN": { [choiceName(heuristic)]: 1 },
  });
});

gpuTest("tuneShape refuses to time when the custom kernel is not installed", async () => {
  unregisterWebgpuKernels();
  const shape = { batchA: 1, batchB: 1, m: 8, n: 8, k: 8, transposeA: true, transposeB: false };
  const before = tf.memory().numTensors;
  await assert.rejects(
    tuneShape(shape, { reps: 1, rounds: 1, heuristic: parseChoice("t32", "t") }),
    /did not apply the choice stock .*call registerWebgpuKernels\(\) first/,
  );
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("findTuningTable: the adapter's file, an explicit file, off; errors name the file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/${adapterSlug(ADAPTER)}.json`;
    const t = table({
      "1x1 m8 n8 k8 NT": { choice: "t64", heuristic: "t32", ms: { t32: 2, t64: 1 } },
    });
    // None yet: a note that says where it looked and how to make one.
    const none = await findTuningTable(ADAPTER, undefined, dir);
    assert.equal(none.table, undefined);
    assert.match(none.note, /no matmul tuning table .*deno task tune/);
    assert.ok(none.note.includes(path), none.note);
    await Deno.writeTextFile(path, serializeTuningTable(t));
    const found = await findTuningTable(ADAPTER, undefined, dir);
    assert.deepEqual(found.table, t);
    assert.match(found.note, /tuned by .* \(1 shapes, measured 2026-11-26T15:00:00\.000Z\)/);
    // A file URL for the folder works the same (the default is one).
    assert.deepEqual((await findTuningTable(ADAPTER, "", new URL(`file://${dir}/`))).table, t);
    assert.match((await findTuningTable(ADAPTER, "off", dir)).note, /tuning off/);
    assert.equal((await findTuningTable(ADAPTER, "0", dir)).table, undefined);
    // Explicit file: used; missing: an error.
    assert.deepEqual((await findTuningTable(ADAPTER, path, "/nonexistent")).table, t);
    await assert.rejects(
      findTuningTable(ADAPTER, `${dir}/nope.json`),
      /HYPERPROMPT_WEBGPU_TUNING=.*nope\.json: no such file/,
    );
    // Another adapter's table: not used by default (a note), refused when named.
    const other = { ...ADAPTER, architecture: "x" }; // same file name stem
    assert.equal(adapterSlug(other), adapterSlug(ADAPTER));
    const foreign = await findTuningTable(other, undefined, dir);
    assert.equal(foreign.table, undefined);
    // The note names the field that differs (the descriptions are the same).
    assert.match(
      foreign.note,
      /not used: .* was measured on "llvmpipe[^"]*" \(vendor "[^"]*", architecture "", device "[^"]*"\), not on "llvmpipe[^"]*" \(vendor "[^"]*", architecture "x", /,
    );
    await assert.rejects(findTuningTable(other, path), /HYPERPROMPT_WEBGPU_TUNING: .*measured on/);
    // A malformed table is an error naming the file and the field.
    await Deno.writeTextFile(path, serializeTuningTable(t).replace('"t64"', '"t65"'));
    await assert.rejects(
      findTuningTable(ADAPTER, undefined, dir),
      (e) =>
        e instanceof Error && e.message.startsWith(`${path}: entries["1x1 m8 n8 k8 NT"].choice`),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

gpuTest("tuneShape never times or picks a candidate whose product is wrong", async () => {
  registerWebgpuKernels({});
  const shape = { batchA: 1, batchB: 1, m: 24, n: 20, k: 40, transposeA: true, transposeB: false };
  const key = shapeKey(shape);
  // A "miscompiled" t64: the product negated whenever t64 is forced for this shape.
  const broken = (real: tf.KernelFunc): tf.KernelFunc => (args) => {
    const forced = tunedChoice(shape, key);
    const y = real(args) as tf.TensorInfo;
    if (forced?.kernel !== "tiled" || forced.tile !== "t64") return y;
    const neg = tf.getKernel("Neg", "webgpu")!.kernelFunc({
      inputs: { x: y },
      backend: args.backend,
      attrs: {},
    }) as tf.TensorInfo;
    (args.backend as unknown as { disposeData(id: unknown): void }).disposeData(y.dataId);
    return neg;
  };
  const before = tf.memory().numTensors;
  const e = await withWebgpuKernel("BatchMatMul", broken, () =>
    tuneShape(shape, {
      reps: 1,
      rounds: 1,
      heuristic: parseChoice("t32", "t"),
      candidates: [parseChoice("t64", "t")],
    }));
  assert.equal(tf.memory().numTensors, before);
  assert.deepEqual(Object.keys(e.ms).sort(), ["stock", "t32"], "stock always, t64 not timed");
  assert.match(e.rejected?.["t64"] ?? "", /relative L2 error 2 against the stock kernel/);
  assert.notEqual(e.choice, "t64");
});

Deno.test("parseTuningTable: rejected choices are read back and never the choice", () => {
  const t = table({
    "1x1 m8 n8 k8 NT": {
      choice: "t32",
      heuristic: "t32",
      ms: { t32: 1, stock: 2 },
      rejected: { t64: "relative L2 error 2 against the stock kernel" },
    },
  });
  assert.deepEqual(parseTuningTable(serializeTuningTable(t), "t.json"), t);
  const bad = serializeTuningTable(t).replace('"choice": "t32"', '"choice": "t64"');
  assert.throws(
    () => parseTuningTable(bad, "t.json"),
    /t\.json: entries\["1x1 m8 n8 k8 NT"\]\.choice "t64" is also listed as rejected/,
  );
});

Deno.test("tunedChoice: a listed shape, else the nearest one differing in one dimension by ≤ 2×", () => {
  const shape = (m: number, n: number, k: number, t = "NT", batchA = 1) => ({
    batchA,
    batchB: 1,
    m,
    n,
    k,
    transposeA: t[0] === "T",
    transposeB: t[1] === "T",
  });
  const name = (s: ReturnType<typeof shape>) => {
    const c = tunedChoice(s);
    return c === undefined ? undefined : choiceName(c);
  };
  setActiveTuning(table({
    "1x1 m4096 n768 k768 NT": { choice: "t128", heuristic: "t64", ms: { t64: 2, t128: 1 } },
    "1x1 m1024 n768 k768 NT": { choice: "t64v4", heuristic: "t64", ms: { t64: 2, t64v4: 1 } },
    "1x1 m768 n768 k4096 TN": { choice: "t128/k8", heuristic: "t32", ms: { t32: 2, "t128/k8": 1 } },
  }));
  try {
    assert.equal(name(shape(4096, 768, 768)), "t128", "listed");
    assert.equal(name(shape(3000, 768, 768)), "t128", "M 3000: nearest is 4096");
    assert.equal(name(shape(1800, 768, 768)), "t64v4", "M 1800: nearer 1024 than 4096");
    assert.equal(name(shape(8192, 768, 768)), "t128", "exactly 2× still counts");
    assert.equal(name(shape(8193, 768, 768)), undefined, "beyond 2×: the rule of thumb");
    assert.equal(name(shape(400, 768, 768)), undefined, "beyond 2× below");
    // Weight gradients: K is the token count.
    assert.equal(name(shape(768, 768, 2600, "TN")), "t128/k8");
    // Two dimensions differ, or the transposes or the batch: no match.
    assert.equal(name(shape(3000, 512, 768)), undefined);
    assert.equal(name(shape(4096, 768, 768, "NN")), undefined);
    assert.equal(name(shape(4096, 768, 768, "NT", 2)), undefined);
  } finally {
    setActiveTuning(undefined);
  }
  assert.equal(tunedChoice(shape(4096, 768, 768)), undefined, "no table, no choice");
});

Deno.test("tuningCandidates: the deep-K tiles where the device allows them, never split", () => {
  const dW = { batchA: 1, batchB: 1, m: 768, n: 768, k: 4096, transposeA: true, transposeB: false };
  const big = { ...LIMITS, maxComputeWorkgroupStorageSize: 49152 };
  const names = tuningCandidates(dW, big).map(choiceName);
  for (const t of ["t128k16", "t128v4k16", "t64v4k32"]) {
    assert.ok(names.includes(t), t);
    assert.ok(!names.some((n) => n.startsWith(`${t}/k`)), `${t} not split`);
  }
  assert.ok(!tuningCandidates(dW, LIMITS).map(choiceName).includes("t128k16"), "16 KiB device");
  assert.equal(names.length, 1 + 12 + 4 * 4, "stock, 12 tiles, 4 split tiles × 4 slice counts");
});

Deno.test("tuningPathFor: the adapter's file in a folder path or file URL, by default this repository's", () => {
  const name = `${adapterSlug(ADAPTER)}.json`;
  assert.equal(tuningPathFor(ADAPTER, "/x/tables"), `/x/tables/${name}`);
  assert.equal(tuningPathFor(ADAPTER, "/x/tables/"), `/x/tables/${name}`);
  assert.equal(tuningPathFor(ADAPTER, new URL("file:///x/my%20tables/")), `/x/my tables/${name}`);
  const repo = new URL("../../", import.meta.url).pathname;
  assert.equal(tuningPathFor(ADAPTER), decodeURIComponent(`${repo}results/tuning/${name}`));
});

Deno.test("median(): the middle value, the mean of the two middle ones for an even count", () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5); // was 3: the slower of the two middle rounds
  assert.equal(median([7]), 7);
  const xs = [2, 1];
  assert.equal(median(xs), 1.5);
  assert.deepEqual(xs, [2, 1], "the input is not sorted in place");
  assert.throws(() => median([]), /no values/);
});

Deno.test("pickTunedChoice: the fastest, unless within TUNING_MARGIN of the rule of thumb's", () => {
  // TUNING_MARGIN is 3 %: 0.96 of the rule's time is a win, 0.98 is noise.
  assert.equal(TUNING_MARGIN, 0.03);
  assert.equal(pickTunedChoice({ t32: 1, t64: 0.96, stock: 1.5 }, "t32"), "t64");
  assert.equal(pickTunedChoice({ t32: 1, t64: 0.98, stock: 1.5 }, "t32"), "t32");
  // The fastest of several winners, whatever their order.
  assert.equal(pickTunedChoice({ t32: 1, t64: 0.9, t128: 0.5, stock: 0.7 }, "t32"), "t128");
  assert.equal(pickTunedChoice({ stock: 0.7, t128: 0.5, t64: 0.9, t32: 1 }, "t32"), "t128");
  // The rule's own choice the fastest: kept.
  assert.equal(pickTunedChoice({ stock: 2, t32: 1, t64: 3 }, "t32"), "t32");
  // The rule's choice not timed (its product was wrong): the fastest of those timed.
  assert.equal(pickTunedChoice({ stock: 2, t32: 1.99 }, "t64"), "t32");
});

Deno.test("timeProducts: the median round's ms per product, each round waited for, nothing left", async () => {
  await tf.setBackend("cpu");
  // A scripted clock: each product costs 1 ms in round 1, 3 ms in round 2, 2 ms in round 3.
  const costs = [1, 3, 2];
  const reps = 4;
  let clock = 0;
  let products = 0;
  const run = () => {
    clock += costs[Math.floor(products++ / reps)]!;
    return tf.ones([2, 2]);
  };
  const before = tf.memory().numTensors;
  const { value: ms, reads } = await countReads(() => timeProducts(run, reps, 3, () => clock));
  assert.equal(ms, 2, "the median round (not the fastest), per product (not per round)");
  assert.equal(products, 3 * reps);
  assert.equal(reads, 3, "one read per round: its last product is waited for");
  assert.equal(tf.memory().numTensors, before, "every product freed");
  // An even number of rounds: the mean of the middle two.
  products = 0;
  assert.equal(await timeProducts(run, reps, 2, () => clock), 2);
});

Deno.test("tuningCandidates: K splits from K = 2 × SPLIT_K_MIN_CHUNK on, not below", () => {
  const at = (k: number) =>
    tuningCandidates(
      { batchA: 1, batchB: 1, m: 64, n: 64, k, transposeA: true, transposeB: false },
      LIMITS,
    ).map(choiceName);
  assert.ok(at(2 * SPLIT_K_MIN_CHUNK).includes("t64/k2"), at(2 * SPLIT_K_MIN_CHUNK).join());
  assert.ok(!at(2 * SPLIT_K_MIN_CHUNK - 8).some((n) => n.includes("/k")));
});

gpuTest(
  "tuneShape: a scripted clock's times give the margin's choice, by what the rule of thumb ran as",
  async () => {
    registerWebgpuKernels({});
    // K = 16 is one slice: the rule's "t64/k2" runs (and is timed) as plain t64.
    const shape = {
      batchA: 1,
      batchB: 1,
      m: 24,
      n: 20,
      k: 16,
      transposeA: true,
      transposeB: false,
    };
    const key = shapeKey(shape);
    const tune = async (costs: Record<string, number>) => {
      // Each product advances the clock by the cost of the choice forced for it (by name asked).
      return await withClock((clock) => {
        const timed = (real: tf.KernelFunc): tf.KernelFunc => (args) => {
          const forced = tunedChoice(shape, key);
          if (forced !== undefined) clock.ms += costs[choiceName(forced)]!;
          return real(args);
        };
        return countReads(() =>
          withWebgpuKernel("BatchMatMul", timed, () =>
            tuneShape(shape, {
              reps: 3,
              rounds: 2,
              heuristic: parseChoice("t64/k2", "t"),
              candidates: [parseChoice("t32", "t")],
            }))
        );
      });
    };
    // t32 1 % faster than the rule's: within TUNING_MARGIN, the rule's (as it ran) stays.
    const near = await tune({ stock: 1, "t64/k2": 1, t32: 0.99 });
    assert.deepEqual(near.value, {
      choice: "t64",
      heuristic: "t64",
      ms: { stock: 1, t64: 1, t32: 0.99 },
    });
    // Three candidates, each read once for its error check and once per round.
    assert.equal(near.reads, 3 * (1 + 2));
    // 10 % faster: t32.
    const far = await tune({ stock: 1, "t64/k2": 1, t32: 0.9 });
    assert.equal(far.value.choice, "t32");
  },
);
