/**
 * Tests of `weights.ts`: a method's variables saved and loaded back bit for bit, leak-free, and
 * the mismatches a load refuses, each naming the file and the first mismatch.
 */
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { join } from "node:path";
import { PRESETS } from "../config.ts";
import { CheckpointError } from "../checkpoint_error.ts";
import type { MethodInstance } from "../method.ts";
import { disposeT5 } from "../t5.ts";
import { getMethod } from "./mod.ts";
import { context, tinyModel } from "./_test_util.ts";
import { loadMethodVariables, saveMethodVariables } from "./weights.ts";
import * as root from "../../mod.ts";
import { selectBackend } from "../backend.ts";

// The package entry registers the wasm backend too: choose one, as the other method tests do.
await selectBackend("cpu", { log: () => {} });

const CONFIG = PRESETS["tiny-v1_1"];
const GLOBAL = { length: 4, bottleneck: 4, embeddingDim: 8, hiddenDim: 16, projectedDim: 8 };

/** The bits of every variable, by name. */
async function bitsOf(instance: MethodInstance): Promise<Map<string, Uint32Array>> {
  const out = new Map<string, Uint32Array>();
  for (const [name, v] of instance.variables) {
    const d = (await v.data()) as Float32Array;
    out.set(name, new Uint32Array(d.slice().buffer));
  }
  return out;
}

/** Runs `f` with a tiny backbone and two instances of `name` (different seeds, or configs). */
async function withInstances(
  name: string,
  cfgA: Record<string, unknown>,
  cfgB: Record<string, unknown>,
  f: (a: MethodInstance, b: MethodInstance, dir: string) => Promise<void>,
  otherMethod?: string,
): Promise<void> {
  const model = tinyModel(CONFIG);
  const dir = await Deno.makeTempDir({ prefix: "method-weights-" });
  const m = getMethod(name);
  const a = m.create(context(model, 11), m.parseConfig(cfgA, "a"));
  const mb = getMethod(otherMethod ?? name);
  const b = mb.create(context(model, 12), mb.parseConfig(cfgB, "b"));
  try {
    await f(a, b, dir);
  } finally {
    a.dispose();
    b.dispose();
    disposeT5(model);
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("saveMethodVariables/loadMethodVariables: bit-identical round trip, no leak", async () => {
  await withInstances("hyperprompt_global", GLOBAL, GLOBAL, async (a, b, dir) => {
    const path = join(dir, "method.safetensors");
    const want = await bitsOf(a);
    const before = await bitsOf(b);
    // Another seed: the load must change something to be tested at all.
    assert.ok(
      [...want].some(([n, w]) => before.get(n)!.some((x, i) => x !== w[i])),
      "the two instances start with different values",
    );
    const tensors = tf.memory().numTensors;
    await saveMethodVariables(path, a);
    await loadMethodVariables(path, b);
    assert.equal(tf.memory().numTensors, tensors, "no tensor leaked");
    const got = await bitsOf(b);
    assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort());
    for (const [name, w] of want) assert.deepEqual(got.get(name), w, name);
  });
});

Deno.test("loadMethodVariables: a shape mismatch names the file and the variable", async () => {
  await withInstances("hyperprompt_global", GLOBAL, { ...GLOBAL, length: 5 }, async (a, b, dir) => {
    const path = join(dir, "method.safetensors");
    await saveMethodVariables(path, a);
    const before = await bitsOf(b);
    const tensors = tf.memory().numTensors;
    await assert.rejects(
      () => loadMethodVariables(path, b),
      (e: unknown) => {
        assert.ok(e instanceof CheckpointError);
        assert.equal(e.file, path);
        assert.match(e.message, new RegExp(`^${path.replaceAll(".", "\\.")}: tensor "`));
        assert.match(e.message, /has shape \[\d+(, \d+)*\], but the variable has \[/);
        return true;
      },
    );
    assert.equal(tf.memory().numTensors, tensors);
    // Refused before any variable changed.
    assert.deepEqual(await bitsOf(b), before);
  });
});

Deno.test("loadMethodVariables: another method's file is refused, naming both", async () => {
  await withInstances(
    "hyperprompt_share",
    { length: 4, bottleneck: 4 },
    { length: 4, bottleneck: 4 },
    async (a, b, dir) => {
      const path = join(dir, "method.safetensors");
      await saveMethodVariables(path, a);
      await assert.rejects(
        () => loadMethodVariables(path, b),
        (e: unknown) => {
          assert.ok(e instanceof CheckpointError);
          assert.equal(
            e.message,
            `${path}: holds the variables of method "hyperprompt_share", not of "hyperprompt_sep"`,
          );
          return true;
        },
      );
    },
    "hyperprompt_sep",
  );
});

Deno.test("loadMethodVariables: a missing and an extra tensor are refused", async () => {
  await withInstances("prompt_tuning", { length: 4 }, { length: 4 }, async (a, b, dir) => {
    // A file with one variable renamed: the instance's is missing.
    const [name, v] = [...a.variables][0]!;
    const renamed: MethodInstance = {
      ...a,
      name: a.name,
      variables: new Map([[`${name}.x`, v]]),
    };
    const path = join(dir, "renamed.safetensors");
    await saveMethodVariables(path, renamed);
    await assert.rejects(
      () => loadMethodVariables(path, b),
      new RegExp(`: tensor "${name.replaceAll(".", "\\.")}" of method prompt_tuning not found`),
    );
    // A file with one variable more than the instance has.
    const extra: MethodInstance = {
      ...a,
      name: a.name,
      variables: new Map([...a.variables, [`${name}.x`, v]]),
    };
    const path2 = join(dir, "extra.safetensors");
    await saveMethodVariables(path2, extra);
    await assert.rejects(
      () => loadMethodVariables(path2, b),
      /: tensor ".*\.x" is not a variable of this prompt_tuning instance/,
    );
  });
});

/**
 * Saves `a` with its first variable replaced by `replacement` (same name), then checks that
 * loading into `b` is refused as a CheckpointError matching `message`, with no variable changed
 * and no tensor leaked.
 */
async function refusedWithFirstReplaced(
  a: MethodInstance,
  b: MethodInstance,
  dir: string,
  replacement: (v: tf.Variable) => tf.Variable,
  message: RegExp,
): Promise<void> {
  const [first, ...rest] = [...a.variables];
  const [name, v] = first!;
  const other = replacement(v);
  try {
    const edited: MethodInstance = { ...a, variables: new Map([[name, other], ...rest]) };
    const path = join(dir, "edited.safetensors");
    await saveMethodVariables(path, edited);
    const before = await bitsOf(b);
    const tensors = tf.memory().numTensors;
    await assert.rejects(
      () => loadMethodVariables(path, b),
      (e: unknown) => {
        assert.ok(e instanceof CheckpointError, String(e));
        assert.equal(e.file, path);
        assert.match(e.message, message);
        return true;
      },
    );
    assert.equal(tf.memory().numTensors, tensors, "no tensor leaked");
    assert.deepEqual(await bitsOf(b), before, "no variable changed");
  } finally {
    other.dispose();
  }
}

Deno.test("loadMethodVariables: a tensor of lower rank whose dims are the variable's first is refused", async () => {
  // Kills the mutant dropping the rank comparison (only the file's dims compared).
  await withInstances("hyperprompt_global", GLOBAL, GLOBAL, async (a, b, dir) => {
    await refusedWithFirstReplaced(
      a,
      b,
      dir,
      (v) => {
        assert.ok(v.rank >= 2, "the first variable has rank >= 2");
        return tf.variable(tf.zeros(v.shape.slice(0, -1)));
      },
      /: tensor ".*" has shape \[\d+(, \d+)*\], but the variable has \[/,
    );
  });
});

Deno.test("loadMethodVariables: an I32 tensor for a float32 variable is refused", async () => {
  // Kills the mutant dropping the dtype check (int values would be cast into the variable).
  await withInstances("hyperprompt_global", GLOBAL, GLOBAL, async (a, b, dir) => {
    await refusedWithFirstReplaced(
      a,
      b,
      dir,
      (v) => tf.variable(tf.zeros(v.shape, "int32")),
      /: tensor ".*" is I32, but the variable is float32 \(F32\)$/,
    );
  });
});

Deno.test("saveMethodVariables/loadMethodVariables: an int32 variable round-trips as I32", async () => {
  // Kills the mutant dropping int32 from the saved types (the save would refuse it).
  await withInstances("prompt_tuning", { length: 4 }, { length: 4 }, async (a, b, dir) => {
    const ints = tf.variable(tf.tensor1d([3, -7, 2147483647, -2147483648], "int32"));
    const zeros = tf.variable(tf.zeros([4], "int32"));
    try {
      const withInts = (m: MethodInstance, v: tf.Variable): MethodInstance => ({
        ...m,
        variables: new Map([...m.variables, ["ints", v]]),
      });
      const path = join(dir, "ints.safetensors");
      await saveMethodVariables(path, withInts(a, ints));
      await loadMethodVariables(path, withInts(b, zeros));
      assert.deepEqual([...(await zeros.data())], [3, -7, 2147483647, -2147483648]);
      assert.equal(zeros.dtype, "int32");
    } finally {
      ints.dispose();
      zeros.dispose();
    }
  });
});

Deno.test("the package's entry exports both functions", () => {
  assert.equal(root.saveMethodVariables, saveMethodVariables);
  assert.equal(root.loadMethodVariables, loadMethodVariables);
});
