import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { basename, join } from "node:path";
import { makeHeldTempDir } from "../model/fs.ts";
import {
  checkpointDirName,
  disposeCheckpoint,
  listCheckpoints,
  loadLatestCheckpoint,
  saveCheckpoint,
} from "./checkpointing.ts";

await tf.setBackend("cpu");

Deno.test("saveCheckpoint()/loadLatestCheckpoint() round-trip bit-exactly, prune, remove only killed saves' temporaries", async () => {
  const root = await Deno.makeTempDir();
  const before = tf.memory().numTensors;
  const w = tf.tensor([[0.1, -2.5e-30, 3.4e38], [Number.MIN_VALUE, -0, 1 / 3]]);
  const s = tf.tensor([7, -1, 2147483647], [3], "int32");
  for (const step of [10, 20, 30]) {
    await saveCheckpoint(root, {
      variables: new Map([["shared.weight", w]]),
      slots: new Map([["shared.weight/vr", s]]),
      state: { step, sampler: { pos: step }, losses: [{ step, loss: 1.5 }] },
    });
  }
  assert.deepEqual(await listCheckpoints(root), [20, 30], "keeps the newest 2");
  // A half-written checkpoint of a killed save (its temporary, nobody holds it) is ignored and
  // removed; a save still running (its temporary held) and every other name are left alone.
  const dead = ".step-00000040.tmp-999999999-0123456789ab";
  await Deno.mkdir(join(root, dead));
  await Deno.writeTextFile(join(root, dead, "state.json"), "{");
  const others = [
    ".tmp-step-00000040-1", // an earlier version's name: never released, not ours now
    ".tmp-123-0123456789ab", // another writer's temporary
    ".tmp-notes",
    "step-00000050.tmp-999999999-0123456789ab", // no leading dot: not a save's temporary
  ];
  for (const n of others) await Deno.mkdir(join(root, n));
  const live = await makeHeldTempDir(root, ".step-00000060");
  const ck = await loadLatestCheckpoint(root);
  assert.ok(ck);
  assert.equal(ck.step, 30);
  assert.deepEqual(ck.state.sampler, { pos: 30 });
  const got = ck.variables.get("shared.weight")!;
  assert.deepEqual(
    new Uint32Array((await got.data() as Float32Array).buffer),
    new Uint32Array((await w.data() as Float32Array).buffer),
    "bit-exact floats",
  );
  assert.equal(ck.slots.get("shared.weight/vr")!.dtype, "int32");
  assert.deepEqual(await ck.slots.get("shared.weight/vr")!.data(), await s.data());
  disposeCheckpoint(ck);
  w.dispose();
  s.dispose();
  assert.equal(tf.memory().numTensors, before);
  const names = [...Deno.readDirSync(root)].map((e) => e.name).sort();
  assert.deepEqual(
    names,
    [checkpointDirName(20), checkpointDirName(30), ...others, basename(live.path)].sort(),
  );
  live.release();
  assert.equal(await loadLatestCheckpoint(join(root, "absent")), undefined);
  await Deno.remove(root, { recursive: true });
});

Deno.test("loadLatestCheckpoint() names the file of a corrupt state", async () => {
  const root = await Deno.makeTempDir();
  await Deno.mkdir(join(root, checkpointDirName(5)));
  await Deno.writeTextFile(join(root, checkpointDirName(5), "state.json"), "{not json");
  await assert.rejects(() => loadLatestCheckpoint(root), /step-00000005\/state\.json/);
  await Deno.remove(root, { recursive: true });
});

Deno.test("saveCheckpoint() that fails part-way keeps the earlier checkpoints and leaves no temp folder", async () => {
  const root = await Deno.makeTempDir();
  const w = tf.tensor([1, 2, 3]);
  const bad = tf.tensor([true, false], [2], "bool");
  try {
    await saveCheckpoint(root, {
      variables: new Map([["w", w]]),
      slots: new Map(),
      state: { step: 1 },
    });
    // The optimizer slots cannot be serialised after the variables were written.
    await assert.rejects(
      saveCheckpoint(root, {
        variables: new Map([["w", w]]),
        slots: new Map([["w/m", bad]]),
        state: { step: 2 },
      }),
      /unsupported dtype bool/,
    );
    assert.deepEqual([...Deno.readDirSync(root)].map((e) => e.name), [checkpointDirName(1)]);
    assert.deepEqual(
      [...Deno.readDirSync(join(root, checkpointDirName(1)))].map((e) => e.name).sort(),
      ["optimizer.safetensors", "state.json", "variables.safetensors"],
    );
    const ck = await loadLatestCheckpoint(root);
    assert.equal(ck?.step, 1);
    assert.deepEqual(await ck!.variables.get("w")!.data(), new Float32Array([1, 2, 3]));
    disposeCheckpoint(ck!);
  } finally {
    w.dispose();
    bad.dispose();
    await Deno.remove(root, { recursive: true });
  }
});
