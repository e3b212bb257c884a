/**
 * `deno task tune` in quick mode on whatever adapter is here (the software adapter in CI: the
 * mechanics, not the times): it lists a tiny T5 step's matmul shapes, times the candidates,
 * writes a valid table, keeps other entries of an existing table, and refuses bad input before
 * measuring (exit 2; a failure while tuning is exit 1).
 */

import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { cli, main } from "./tune.ts";
import { knownChoices } from "../model/webgpu/tuning.ts";
import { UsageError } from "../model/usage.ts";
import {
  MATMUL_TILE_CANDIDATES,
  MATMUL_TILES,
  parseTuningTable,
  resetWebgpuKernelStats,
  serializeTuningTable,
  unregisterWebgpuKernels,
  webgpuKernelStats,
} from "../model/webgpu/mod.ts";
import { noGpu } from "../model/webgpu/testing.ts";
import { makeWorkload, parseWorkload } from "./perf.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };

Deno.test({
  name: `deno task tune --quick writes a table of every shape of the step${
    noGpu ? ` [SKIPPED: ${noGpu}]` : ""
  }`,
  ignore: noGpu !== undefined,
  ...opts,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const out = `${dir}/sub/table.json`;
    try {
      await tf.setBackend("webgpu");
      const before = tf.memory().numTensors;
      const r = await main(["--quick", "--include-fallback", `--out=${out}`]);
      assert.ok(r !== undefined);
      assert.equal(tf.memory().numTensors, before, "no tensors left");
      const table = parseTuningTable(await Deno.readTextFile(out), out);
      assert.deepEqual(table, r.table);
      // Every shape the step ran is in the table, with its calls, and nothing else.
      const w = makeWorkload(parseWorkload("t5:tiny-v1_1@1:2,16,4"));
      resetWebgpuKernelStats();
      const g = tf.variableGrads(w.loss, w.vars);
      await g.value.data();
      tf.dispose([g.value, ...Object.values(g.grads)]);
      w.dispose();
      const shapes = webgpuKernelStats().shapes;
      assert.deepEqual(Object.keys(table.entries).sort(), Object.keys(shapes).sort());
      for (const [key, e] of Object.entries(table.entries)) {
        const calls = Object.values(shapes[key]!).reduce((x, y) => x + y, 0);
        assert.equal(e.calls, calls, key);
        // --quick times stock, t32 and t64 (and the rule's choice, one of them here).
        assert.deepEqual(Object.keys(e.ms).sort(), ["stock", "t32", "t64"], key);
        assert.ok(e.choice in e.ms && e.heuristic in e.ms, key);
      }
      assert.equal(r.workloads.length, 1);
      assert.equal(r.workloads[0]!.shapes, Object.keys(shapes).length);
      assert.equal(table.provenance.candidates, "stock,t32,t64");
      assert.equal(table.provenance.reps, 1);
      assert.equal(
        table.provenance.webgpuBackend,
        Deno.env.get("DENO_WEBGPU_BACKEND") || "(default)",
        "wgpu's driver API: the adapter's name is the same under vulkan and gl",
      );

      // A second run keeps entries of other workloads that are in the file.
      const extraKey = "1x1 m4096 n768 k3072 NT";
      const withExtra = {
        ...table,
        entries: {
          ...table.entries,
          [extraKey]: { choice: "t128", heuristic: "t64", ms: { t64: 2, t128: 1 } },
        },
      };
      await Deno.writeTextFile(out, serializeTuningTable(withExtra));
      // The quick workload twice: the second one's shapes are all tuned already (not re-timed).
      const twice = "--workloads=t5:tiny-v1_1@1:2,16,4;t5:tiny-v1_1@1:2,16,4";
      const r2 = await main(["--quick", "--include-fallback", "--rounds=2", twice, `--out=${out}`]);
      const [first, again] = r2.workloads;
      assert.deepEqual({ ...again, spec: "" }, { ...first, spec: "" }, "the same entries' times");
      assert.ok(r2?.table.entries[extraKey] !== undefined);
      // The table records how it was measured (the first run's reps and rounds were both 1).
      assert.deepEqual([r2.table.provenance.reps, r2.table.provenance.rounds], [1, 2]);
      assert.equal(Object.keys(r2!.table.entries).length, Object.keys(shapes).length + 1);

      // A table of another adapter at --out is refused before anything is measured.
      const foreign = { ...withExtra, adapter: { ...withExtra.adapter, description: "Other GPU" } };
      await Deno.writeTextFile(out, serializeTuningTable(foreign));
      await assert.rejects(
        main(["--quick", "--include-fallback", `--out=${out}`]),
        /holds the table of adapter "Other GPU" \(other-gpu[^)]*\), not of ".*" \([^)]+\), the adapter found; choose another --out/,
      );
      assert.equal(await Deno.readTextFile(out), serializeTuningTable(foreign), "file untouched");

      // One whose file name stem is this adapter's (the stem leaves the architecture out) is
      // refused too: merging relabelled its entries as this adapter's, and the backend then
      // applied them here.
      const sameStem = {
        ...withExtra,
        adapter: { ...withExtra.adapter, architecture: "other-arch" },
      };
      await Deno.writeTextFile(out, serializeTuningTable(sameStem));
      await assert.rejects(
        main(["--quick", "--include-fallback", `--out=${out}`]),
        /holds the table of adapter ".*" \(vendor ".*", architecture "other-arch", device ".*"\), not of ".*" \(vendor ".*", architecture "[^"]*", device ".*"\), the adapter found; choose another --out/,
      );
      assert.equal(await Deno.readTextFile(out), serializeTuningTable(sameStem), "file untouched");
    } finally {
      unregisterWebgpuKernels();
      await tf.setBackend("cpu");
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("deno task tune: every flag that takes a value refuses an empty one in one line (exit 2)", async () => {
  // --out "" passed the checks and reached the adapter (a tuning run, then a failed write).
  const flags: [string, string][] = [
    ["workloads", 'workloads, ";"-separated, e.g. t5:t5-v1_1-base@1:32,128,16'],
    ["reps", "a positive integer"],
    ["rounds", "a positive integer"],
    ["candidates", "choice names, comma-separated, e.g. stock,t64/k8"],
    ["out", "the table's JSON file"],
  ];
  for (const [flag, takes] of flags) {
    for (const args of [[`--${flag}=`], [`--${flag}`, ""]]) {
      const err: string[] = [];
      assert.equal(await cli(args, { error: (s) => err.push(s) }), 2, args.join(" "));
      assert.deepEqual(err, [
        `--${flag} needs a value (${takes}), got an empty one ("": an unset ` +
        `variable?); deno task tune --help lists the flags`,
      ]);
    }
  }
});

Deno.test("deno task tune: bad arguments are refused with the flag named", async () => {
  await assert.rejects(main(["--reps=0"]), UsageError);
  await assert.rejects(main(["--reps=0"]), /--reps must be a positive integer, got "0"/);
  await assert.rejects(main(["--rounds=x"]), /--rounds must be a positive integer/);
  // Number() reads these as 16 and 1.
  await assert.rejects(main(["--reps=0x10"]), /--reps must be a positive integer, got "0x10"/);
  await assert.rejects(main(["--rounds=0b1"]), /--rounds must be a positive integer, got "0b1"/);
  await assert.rejects(
    main(["--frobnicate"]),
    /: unknown flag --frobnicate; deno task tune --help lists the flags$/,
  );
  await assert.rejects(main(["--workloads=block"]), /only t5 workloads are tuned/);
  // A block of a shape perf would refuse: its kind is what is wrong here, said first.
  await assert.rejects(
    main(["--workloads=block:1,2,30,4,7"]),
    /--workloads "block:1,2,30,4,7": only t5 workloads are tuned \(t5:<preset>\[@N\]/,
  );
  // An empty list tuned nothing and rewrote the table as if tuned.
  await assert.rejects(main(["--workloads= ; "]), /--workloads " ; " names no workload/);
  await assert.rejects(main(["--candidates=,"]), /--candidates "," names no choice/);
  await assert.rejects(
    main(["--candidates=stock,,t64"]),
    /--candidates "stock,,t64": an empty item \(a stray comma\?\); give choice names /,
  );
  await assert.rejects(main(["--workloads="]), UsageError);
  await assert.rejects(
    main(["--workloads=t5:tiny-v1_1:8,16,4/2"]),
    /micro-batches .* give the batch the GPU runs/,
  );
  // An unknown tile is a usage error listing every choice, not the kernel module's own error.
  const known = [...MATMUL_TILES, ...MATMUL_TILE_CANDIDATES].map((t) => t.name);
  assert.equal(
    knownChoices(),
    `stock, ${known.join(", ")}; each tile also as <tile>/kS, S K slices 1 to 16 (e.g. t64/k8)`,
  );
  const unknown = [["t99", "t99"], ["t99/k4", "t99"], ["stock/k4", "stock"]] as const;
  for (const [bad, tile] of unknown) {
    await assert.rejects(main([`--candidates=stock,${bad}`]), (e: Error) => {
      assert.ok(e instanceof UsageError, bad);
      assert.equal(
        e.message,
        `--candidates: "${bad}": unknown tile "${tile}"; known choices: ${knownChoices()}; ` +
          `deno task tune --help lists the flags`,
      );
      return true;
    });
  }
  // A name that is no choice at all (bad K slices) keeps parseChoice's message, and the pointer.
  await assert.rejects(
    main(["--candidates=t64/k0"]),
    /^UsageError: --candidates: "t64\/k0" is not a kernel choice .*; deno task tune --help lists the flags$/,
  );
  await assert.rejects(
    main(["--workloads=t5:nosuch"]),
    /--workloads "t5:nosuch": Unknown T5 preset "nosuch"/,
  );
  // An --out that cannot be a table file is refused before the adapter is opened.
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/a-file`;
    await Deno.writeTextFile(file, "x");
    await assert.rejects(
      main([`--out=${dir}`]),
      new RegExp(`--out ${dir}: is a folder; give the table's file name`),
    );
    await assert.rejects(
      main([`--out=${file}/table.json`]),
      new RegExp(`--out ${file}/table\\.json: the folder ${file}: is a file, not a folder`),
    );
    await assert.rejects(main([`--out=${dir}`]), UsageError);
    // A file at --out that is not a tuning table is refused before the adapter is opened, and
    // left as it was.
    const notJson = `${dir}/not-json.json`;
    await Deno.writeTextFile(notJson, "not json");
    await assert.rejects(main([`--out=${notJson}`]), UsageError);
    await assert.rejects(
      main([`--out=${notJson}`]),
      new RegExp(`--out ${notJson}:1:2: invalid JSON: `),
    );
    assert.equal(await Deno.readTextFile(notJson), "not json");
    const other = `${dir}/other.json`;
    await Deno.writeTextFile(other, '{"rows": []}');
    await assert.rejects(
      main([`--out=${other}`]),
      new RegExp(`--out ${other}: format is missing \\(must be "[^"]+"\\): not a tuning table`),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "deno task tune cli(): exit 2 for bad arguments (an --out file that is no table too)",
  // Opening the adapter leaves wgpu's resources to the process.
  ...opts,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    // A table at --out that is not JSON: refused before the adapter is opened.
    const notTable = `${dir}/table.json`;
    await Deno.writeTextFile(notTable, "not json");
    try {
      const cases: [string[], RegExp][] = [
        [
          ["--frobnicate"],
          /^unknown flag --frobnicate; deno task tune --help lists the flags$/,
        ],
        [
          ["--rep", "3"],
          /^unknown flag --rep \(did you mean --reps\?\); deno task tune --help/,
        ],
        [
          ["--reps"],
          /^--reps needs a value \(a positive integer\); deno task tune --help/,
        ],
        [["--quick", "yes"], /^unexpected argument "yes" after --quick, /],
        [["--out", "-t.json"], /^--out needs a value .*--out=-t\.json\)/],
        [
          ["--rounds=1.5"],
          /^--rounds must be a positive integer, got "1\.5"; deno task tune --help lists the flags$/,
        ],
        [
          ["--reps=x"],
          /^--reps must be a positive integer, got "x"; deno task tune --help lists the flags$/,
        ],
        [
          ["--workloads=t5:nosuch"],
          /^--workloads "t5:nosuch": Unknown T5 preset "nosuch".*; deno task tune --help lists the flags$/,
        ],
        [["--workloads=block"], /^--workloads "block": only t5 .*; deno task tune --help lists/],
        [["--candidates=,"], /^--candidates "," names no choice; deno task tune --help lists/],
        [
          ["--candidates=stock,t64, stock"],
          /^--candidates names stock twice; --rounds N times each candidate N times; deno task /,
        ],
        [
          ["--candidates=t99"],
          /^--candidates: "t99": unknown tile "t99"; known choices: stock, t128, /,
        ],
        [[`--out=${dir}`], /--out .*: is a folder; give the table's file name/],
        [[`--out=${notTable}`], /^--out .*table\.json:1:2: invalid JSON: /],
      ];
      for (const [args, want] of cases) {
        const err: string[] = [];
        assert.equal(await cli(args, { error: (s) => err.push(s) }), 2, args.join(" "));
        assert.equal(err.length, 1);
        assert.ok(!err[0]!.includes("\n"), `one line: ${err[0]}`);
        assert.match(err[0]!, want);
      }
      assert.equal(await Deno.readTextFile(notTable), "not json", "file untouched");
      // -h is --help, as for the other tools (the usage goes to stdout): exit 0.
      assert.equal(await cli(["-h"]), 0);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("a tuning table whose choice or rule of thumb was never timed is refused, naming the field", () => {
  const text = (entry: Record<string, unknown>) =>
    JSON.stringify({
      format: "hyperprompt-webgpu-matmul-tuning",
      version: 1,
      adapter: { vendor: "v", architecture: "a", device: "d", description: "GPU" },
      created: "2026-11-27T00:00:00.000Z",
      provenance: {},
      entries: { "1x1 m8 n8 k8 NT": entry },
    });
  const at = 'entries["1x1 m8 n8 k8 NT"]';
  // As tune writes them: the choice timed; the rule's choice timed, or rejected on this device.
  parseTuningTable(text({ choice: "t64", heuristic: "t32", ms: { t32: 2, t64: 1 } }), "t.json");
  parseTuningTable(
    text({ choice: "t64", heuristic: "t32", ms: { t64: 1 }, rejected: { t32: "relative L2 1" } }),
    "t.json",
  );
  assert.throws(
    () => parseTuningTable(text({ choice: "t128", heuristic: "t32", ms: { t32: 1 } }), "t.json"),
    new RegExp(
      `^Error: t\\.json: ${RegExp.escape(at)}\\.choice "t128" has no time in ${
        RegExp.escape(at)
      }\\.ms$`,
    ),
  );
  assert.throws(
    () => parseTuningTable(text({ choice: "t64", heuristic: "t32", ms: { t64: 1 } }), "t.json"),
    new RegExp(
      `^Error: t\\.json: ${RegExp.escape(at)}\\.heuristic "t32" has no time in ${
        RegExp.escape(at)
      }\\.ms and is not rejected$`,
    ),
  );
});
