import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { preset } from "./config.ts";
import { disposeT5, initT5, t5FromTensors } from "./t5.ts";
import { loadHfFolder, saveHfFolder } from "./checkpoint.ts";
import { checkpointOwnEmbeddings } from "./own_embeddings.ts";
import { sharedPath } from "./shared_dir.ts";

/** What the loader decides: `t5FromTensors(loadHfFolder(dir))`'s `ownEmbeddings` (the oracle). */
async function loadedOwn(dir: string): Promise<readonly string[]> {
  const ck = await loadHfFolder(dir);
  try {
    const model = t5FromTensors(ck.config, ck.tensors, dir);
    const own = model.config.ownEmbeddings ?? [];
    disposeT5(model);
    return own;
  } finally {
    for (const t of new Set(ck.tensors.values())) t.dispose();
  }
}

/** A copy of `t` whose element `at` differs in its lowest bit. */
function nudged(t: tf.Tensor, at: number): tf.Tensor {
  const bits = new Uint32Array((t.dataSync() as Float32Array).slice().buffer);
  bits[at]! ^= 1;
  return tf.tensor(new Float32Array(bits.buffer), t.shape);
}

Deno.test("checkpointOwnEmbeddings: a distinct table is the stack's own, a bit-identical copy is not, as the loader decides", async () => {
  const tmp = await Deno.makeTempDir();
  const before = tf.memory().numTensors;
  try {
    const config = preset("tiny-v1_1");
    const model = initT5(config, { seed: 3 });
    const shared = model.params.get("shared.weight")!;
    const n = shared.size;
    const made: tf.Tensor[] = [];
    const keep = <T extends tf.Tensor>(t: T): T => (made.push(t), t);
    // [encoder table, decoder table, expected]: equal copies (transformers 5's save), one bit off
    // in the last element (found only in the last chunk) or the first, absent tables (older
    // saves).
    const cases: [tf.Tensor | undefined, tf.Tensor | undefined, string[]][] = [
      [keep(shared.clone()), keep(shared.clone()), []],
      [keep(shared.clone()), keep(nudged(shared, n - 1)), ["decoder"]],
      [keep(nudged(shared, 0)), keep(shared.clone()), ["encoder"]],
      [keep(nudged(shared, 0)), keep(nudged(shared, n - 1)), ["encoder", "decoder"]],
      [undefined, undefined, []],
    ];
    let i = 0;
    for (const [enc, dec, want] of cases) {
      const tensors = new Map<string, tf.Tensor>(model.params);
      if (enc) tensors.set("encoder.embed_tokens.weight", enc);
      if (dec) tensors.set("decoder.embed_tokens.weight", dec);
      // Unsharded, and sharded with the tables in different files.
      for (const maxShardBytes of [undefined, 300_000]) {
        const dir = join(tmp, `c${i++}`);
        await saveHfFolder(dir, config, tensors, { maxShardBytes });
        const what = `${JSON.stringify(want)} ${maxShardBytes ?? "unsharded"}`;
        assert.deepEqual(await loadedOwn(dir), want, `oracle ${what}`);
        // Chunks of 1000 elements: the tables span several, the last one partial.
        assert.ok(n > 2000 && n % 1000 !== 0, `table of ${n} elements`);
        for (const chunkElements of [undefined, 1000]) {
          assert.deepEqual(await checkpointOwnEmbeddings(dir, { chunkElements }), want, what);
        }
      }
    }
    tf.dispose(made);
    disposeT5(model);
    assert.equal(tf.memory().numTensors, before, "no leaked tensors");
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("checkpointOwnEmbeddings: a table with the shared table's bits but another shape or dtype is the stack's own, as the loader decides", async () => {
  // loadHfFolder ties only tables of one shape and dtype (checkpoint.ts equalTable): a
  // [d_model, vocab] table holding the [vocab, d_model] table's bytes, or an I32 table holding
  // the F32 table's bit patterns, stays a tensor of its own. Such a checkpoint is refused later
  // by t5FromTensors, so the oracle here is the loader's tensor identity.
  const tmp = await Deno.makeTempDir();
  const before = tf.memory().numTensors;
  try {
    const config = preset("tiny-v1_1");
    const model = initT5(config, { seed: 3 });
    const shared = model.params.get("shared.weight")!;
    const [v, d] = shared.shape as [number, number];
    const flipped = shared.reshape([d, v]);
    const asInt = tf.tensor(new Int32Array((await shared.data()).slice().buffer), [v, d], "int32");
    const tensors = new Map<string, tf.Tensor>(model.params)
      .set("encoder.embed_tokens.weight", flipped)
      .set("decoder.embed_tokens.weight", asInt);
    await saveHfFolder(tmp, config, tensors);
    const ck = await loadHfFolder(tmp);
    const loaded = ck.tensors.get("shared.weight");
    assert.notEqual(ck.tensors.get("encoder.embed_tokens.weight"), loaded, "oracle: encoder");
    assert.notEqual(ck.tensors.get("decoder.embed_tokens.weight"), loaded, "oracle: decoder");
    for (const t of new Set(ck.tensors.values())) t.dispose();
    assert.deepEqual(await checkpointOwnEmbeddings(tmp), ["encoder", "decoder"]);
    // And each alone, beside an equal float32 copy in the other stack (which is not its own).
    for (const [stack, table] of [["encoder", flipped], ["decoder", asInt]] as const) {
      const other = stack === "encoder" ? "decoder" : "encoder";
      const dir = join(tmp, stack);
      await saveHfFolder(
        dir,
        config,
        new Map<string, tf.Tensor>(model.params)
          .set(`${stack}.embed_tokens.weight`, table)
          .set(`${other}.embed_tokens.weight`, shared),
      );
      assert.deepEqual(await checkpointOwnEmbeddings(dir), [stack], stack);
    }
    tf.dispose([flipped, asInt]);
    disposeT5(model);
    assert.equal(tf.memory().numTensors, before, "no leaked tensors");
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("checkpointOwnEmbeddings: the HF fixtures, safetensors and PyTorch, as the loader decides", async () => {
  const torch = new URL("./testdata/torch/", import.meta.url).pathname;
  // The relu fixture ties its tables; the generated untied one stores three different tables.
  const expected: Record<string, string[]> = {
    "t5-tiny-relu": [],
    "t5-tiny-v1_1-untied": ["encoder", "decoder"],
  };
  for (const [fixture, want] of Object.entries(expected)) {
    const src = sharedPath("fixtures", "hf-t5", fixture);
    assert.deepEqual(await loadedOwn(src), want, `${fixture} oracle`);
    assert.deepEqual(await checkpointOwnEmbeddings(src), want, fixture);
    // The PyTorch copy: the relu one in two shards, its tables views of shared.weight's storage
    // (read once, as the same view).
    const dir = await Deno.makeTempDir();
    try {
      await Deno.copyFile(join(src, "config.json"), join(dir, "config.json"));
      if (fixture === "t5-tiny-relu") {
        for await (const e of Deno.readDir(join(torch, fixture))) {
          await Deno.copyFile(join(torch, fixture, e.name), join(dir, e.name));
        }
      } else {
        await Deno.copyFile(join(torch, `${fixture}.bin`), join(dir, "pytorch_model.bin"));
      }
      assert.deepEqual(await loadedOwn(dir), want, `${fixture} (torch) oracle`);
      assert.deepEqual(await checkpointOwnEmbeddings(dir), want, `${fixture} (torch)`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});

Deno.test("checkpointOwnEmbeddings: a missing folder or weights file is named", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(checkpointOwnEmbeddings(join(dir, "nope")), /nope: checkpoint folder/);
    await Deno.copyFile(
      sharedPath("fixtures", "hf-t5", "t5-tiny-relu", "config.json"),
      join(dir, "config.json"),
    );
    await assert.rejects(checkpointOwnEmbeddings(dir), /no model\.safetensors/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
