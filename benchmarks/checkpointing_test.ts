import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { basename, join } from "node:path";
import { makeHeldTempDir } from "../model/fs.ts";
import { copyTree, flushesOf, recordFlushes } from "../model/fs_testing.ts";
import {
  checkpointDirName,
  checkpointOwesEvaluation,
  disposeCheckpoint,
  listCheckpoints,
  type LoadedCheckpoint,
  loadLatestCheckpoint,
  saveCheckpoint,
  type SaveCheckpointOptions,
  type SwapPoint,
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

Deno.test("loadLatestCheckpoint() refuses a state.json whose step is not its folder's", async () => {
  const root = await Deno.makeTempDir();
  try {
    const w = tf.tensor([1, 2]);
    await saveCheckpoint(root, {
      variables: new Map([["w", w]]),
      slots: new Map(),
      state: { step: 3 },
    });
    w.dispose();
    const before = tf.memory().numTensors;
    const state = join(root, checkpointDirName(3), "state.json");
    await Deno.writeTextFile(state, JSON.stringify({ step: 7 }));
    await assert.rejects(
      () => loadLatestCheckpoint(root),
      (e: Error) => {
        assert.equal(
          e.message,
          `${root}: no checkpoint can be resumed (1 tried, newest first): step-00000003: ${state}: field "step" is 7, but the folder is the checkpoint of step 3; to train the run from step 0, move the folder aside (deno task bench --restart deletes it)`,
        );
        return true;
      },
    );
    assert.equal(tf.memory().numTensors, before, "nothing loaded");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
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

function entries(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
}

/** Saves step `step` whose one variable holds `value`. */
async function saveValue(
  root: string,
  step: number,
  value: number,
  opts: SaveCheckpointOptions = {},
): Promise<void> {
  const w = tf.tensor([value]);
  try {
    await saveCheckpoint(root, {
      variables: new Map([["w", w]]),
      slots: new Map(),
      state: { step },
    }, {
      keep: 3,
      ...opts,
    });
  } finally {
    w.dispose();
  }
}

/** The step and variable value of the checkpoint loadLatestCheckpoint finds. */
async function latest(root: string): Promise<[number, number] | undefined> {
  const ck = await loadLatestCheckpoint(root);
  if (ck === undefined) return undefined;
  const value = (await ck.variables.get("w")!.data())[0]!;
  disposeCheckpoint(ck);
  return [ck.step, value];
}

Deno.test("saveCheckpoint() replacing a step: a kill at any point of the swap leaves a complete checkpoint of the step, old or new", async () => {
  const cases: [SwapPoint, number][] = [["written", 1], ["aside", 1], ["swapped", 2]];
  // The killed save's names carry its pid: a dead process's, or this one's (a run restarted in a
  // container gets the same pid; its temporaries are not locked any more either way).
  for (const pid of ["999999999", String(Deno.pid)]) {
    for (const [point, want] of cases) {
      const what = `killed at "${point}", pid ${pid === "999999999" ? "dead" : "reused"}`;
      const root = await Deno.makeTempDir();
      const disk = await Deno.makeTempDir(); // what a kill at `point` leaves on disk
      try {
        await saveValue(root, 4, 0);
        await saveValue(root, 5, 1);
        const seen: SwapPoint[] = [];
        await saveValue(root, 5, 2, {
          onSwap: (p) => {
            seen.push(p);
            // A copy has no lock: as after the saving process died.
            if (p === point) {
              copyTree(
                root,
                disk,
                (n) => n.replace(new RegExp(`\\.(tmp|old)-${Deno.pid}-`), `.$1-${pid}-`),
              );
            }
          },
        });
        assert.deepEqual(seen, ["written", "aside", "swapped"]);
        // The save that ran through: the new checkpoint, nothing else left.
        assert.deepEqual(await latest(root), [5, 2]);
        assert.deepEqual(entries(root), [checkpointDirName(4), checkpointDirName(5)]);
        // After the kill: the next load finds step 5 complete, old or new.
        assert.deepEqual(await latest(disk), [5, want], what);
        assert.deepEqual(await latest(disk), [5, want], `${what}, loaded again`);
        // What is left: the two checkpoints, and (only under this process's pid, which
        // removeStaleTemps never takes) a temporary of the killed save that nothing loads.
        const left = entries(disk).filter((n) =>
          !(pid === String(Deno.pid) && n.includes(".tmp-"))
        );
        assert.deepEqual(left, [checkpointDirName(4), checkpointDirName(5)], what);
        // And the run goes on: the step is saved again.
        await saveValue(disk, 5, 3);
        assert.deepEqual(await latest(disk), [5, 3], what);
      } finally {
        await Deno.remove(root, { recursive: true });
        await Deno.remove(disk, { recursive: true });
      }
    }
  }
});

Deno.test("loadLatestCheckpoint() during a save leaves its moved-aside checkpoint and temporary alone", async () => {
  const root = await Deno.makeTempDir();
  try {
    await saveValue(root, 5, 1);
    let during: string[] = [];
    await saveValue(root, 5, 2, {
      onSwap: async (p) => {
        if (p !== "aside") return;
        // The save holds its temporary locked: a sweep must not restore the old folder now.
        assert.equal(await latest(root), undefined);
        during = entries(root);
      },
    });
    assert.equal(during.length, 2);
    assert.match(during[0]!, /^\.step-00000005\.old-\d+-[0-9a-f]{12}$/);
    assert.match(during[1]!, /^\.step-00000005\.tmp-\d+-[0-9a-f]{12}$/);
    assert.deepEqual(await latest(root), [5, 2]);
    assert.deepEqual(entries(root), [checkpointDirName(5)]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("loadLatestCheckpoint() finishes the removal of folders a kill interrupted", async () => {
  const root = await Deno.makeTempDir();
  try {
    await saveValue(root, 5, 1);
    // A pruned or replaced folder renamed for removal, part-removed when the process died.
    const trash = ".step-00000003.del-999999999-0123456789ab";
    await Deno.mkdir(join(root, trash));
    await Deno.writeTextFile(join(root, trash, "state.json"), '{"step": 3}');
    // An old folder moved aside by a save that finished its swap but not the removal.
    const old = ".step-00000005.old-999999999-0123456789ab";
    await Deno.mkdir(join(root, old));
    await Deno.writeTextFile(join(root, old, "state.json"), '{"step": 5}');
    assert.deepEqual(await latest(root), [5, 1]);
    assert.deepEqual(entries(root), [checkpointDirName(5)]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("saveCheckpoint() flushes the checkpoint folder after renaming the new one in", async () => {
  if (Deno.build.os === "windows") return; // syncDir does nothing there
  const root = await Deno.makeTempDir();
  try {
    // recordFlushes spies on Deno.open and Deno.openSync (syncDir opens the folder with either).
    const flushes = await recordFlushes(async () => {
      await saveValue(root, 5, 1);
      await saveValue(root, 5, 2);
    });
    const flushed = flushesOf(flushes, root).map((e) => e.join(","));
    // Each flush comes once the step's new folder is in place (the replaced one still aside).
    assert.equal(flushed.length, 2, JSON.stringify(flushed));
    assert.equal(flushed[0], checkpointDirName(5));
    assert.match(flushed[1]!, /^\.step-00000005\.old-\d+-[0-9a-f]{12},step-00000005$/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("loadLatestCheckpoint() falls back past newer folders that do not load, leaving them as they are", async () => {
  const root = await Deno.makeTempDir();
  try {
    await saveValue(root, 4, 40);
    await saveValue(root, 6, 60);
    await saveValue(root, 8, 80);
    const dir = (step: number) => join(root, checkpointDirName(step));
    // Step 8: a weights file cut short (a partial copy, a disk error); step 6: its state lost.
    const weights = join(dir(8), "variables.safetensors");
    const full = await Deno.readFile(weights);
    await Deno.writeFile(weights, full.subarray(0, full.length - 3));
    await Deno.remove(join(dir(6), "state.json"));
    const before = tf.memory().numTensors;
    const ck = await loadLatestCheckpoint(root);
    assert.ok(ck);
    assert.equal(ck.step, 4);
    assert.deepEqual(await ck.variables.get("w")!.data(), new Float32Array([40]));
    assert.deepEqual(ck.skipped.map((s) => [s.dir, s.step]), [[dir(8), 8], [dir(6), 6]]);
    assert.match(ck.skipped[0]!.reason, new RegExp(`^${weights}: `));
    assert.match(ck.skipped[1]!.reason, /step-00000006\/state\.json: cannot read checkpoint state/);
    disposeCheckpoint(ck);
    assert.equal(tf.memory().numTensors, before, "nothing kept of the folders skipped");
    // Left as they were: nothing renamed or removed.
    assert.deepEqual(entries(root), [4, 6, 8].map(checkpointDirName));
    assert.deepEqual(await Deno.readFile(weights), full.subarray(0, full.length - 3));

    // `check`: a reason skips a checkpoint that loaded; a throw refuses it (no fallback).
    const seen: number[] = [];
    const older = await loadLatestCheckpoint(root, {
      check: (c: LoadedCheckpoint) => {
        seen.push(c.step);
        return undefined;
      },
    });
    assert.deepEqual(seen, [4]);
    disposeCheckpoint(older!);
    // (Saved as a run resumed from step 4 saves: the skipped folders not pruned, nor step 4.)
    await saveValue(root, 10, 100, { keep: 1, unusableSteps: new Set([6, 8]) });
    assert.deepEqual(await listCheckpoints(root), [6, 8, 10]);
    await saveValue(root, 4, 40, { keep: 2, unusableSteps: new Set([6, 8]) });
    const skipTen = await loadLatestCheckpoint(root, {
      check: (c) => c.step === 10 ? "not this one" : undefined,
    });
    assert.equal(skipTen?.step, 4);
    assert.deepEqual(skipTen!.skipped.map((s) => [s.step, s.reason]).slice(0, 1), [[
      10,
      "not this one",
    ]]);
    disposeCheckpoint(skipTen!);
    await assert.rejects(
      () =>
        loadLatestCheckpoint(root, {
          check: () => {
            throw new Error("another run's");
          },
        }),
      /^Error: another run's$/,
    );
    assert.equal(tf.memory().numTensors, before, "a refused checkpoint is disposed");

    // None can be used: one error naming every folder, newest first, and why.
    await Deno.writeTextFile(join(dir(4), "state.json"), "{");
    await Deno.writeTextFile(join(dir(10), "optimizer.safetensors"), "");
    await assert.rejects(() => loadLatestCheckpoint(root), (e: Error) => {
      assert.match(
        e.message,
        new RegExp(
          `^${root}: no checkpoint can be resumed \\(4 tried, newest first\\): ` +
            `step-00000010: ${dir(10)}/optimizer\\.safetensors: .+; ` +
            `step-00000008: ${weights}: .+; ` +
            `step-00000006: ${dir(6)}/state\\.json: cannot read checkpoint state: .+; ` +
            `step-00000004: ${dir(4)}/state\\.json: cannot read checkpoint state: .+$`,
        ),
      );
      return true;
    });
    assert.equal(tf.memory().numTensors, before);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("saveCheckpoint() unusableSteps: folders a resume skipped are neither counted nor pruned; a save of the step replaces one", async () => {
  const root = await Deno.makeTempDir();
  try {
    for (const step of [4, 6, 8]) await saveValue(root, step, step, { keep: 2 });
    assert.deepEqual(await listCheckpoints(root), [6, 8]);
    // Step 8 could not be resumed; the run resumed from 6 and saves 7: without the option the
    // good step 6 would go, leaving 7 and the bad 8.
    const unusableSteps = new Set([8]);
    await saveValue(root, 7, 7, { keep: 2, unusableSteps });
    assert.deepEqual(await listCheckpoints(root), [6, 7, 8]);
    await saveValue(root, 8, 88, { keep: 2, unusableSteps });
    assert.deepEqual(await listCheckpoints(root), [7, 8], "the step's new folder counts");
    assert.deepEqual(await latest(root), [8, 88]);
    // Without the option, pruning keeps the newest `keep` whatever they hold (as before).
    await saveValue(root, 5, 5, { keep: 2 });
    assert.deepEqual(await listCheckpoints(root), [7, 8]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("loadLatestCheckpoint() checkState: judges state.json before the weights are read; a throw refuses a folder whose weights do not load", async () => {
  const root = await Deno.makeTempDir();
  try {
    await saveValue(root, 2, 20);
    await saveValue(root, 4, 40);
    const dir = (step: number) => join(root, checkpointDirName(step));
    const state = (step: number) => join(dir(step), "state.json");
    // Step 4: another run's state, and its weights cut short.
    await Deno.writeTextFile(state(4), JSON.stringify({ step: 4, runKey: "other" }));
    await Deno.writeTextFile(join(dir(4), "variables.safetensors"), "");
    const before = tf.memory().numTensors;
    const seen: string[] = [];
    const mine = (s: Readonly<Record<string, unknown>>, d: string) => {
      seen.push(basename(d));
      if (s.runKey === "other") throw new Error(`${d}: another run's`);
      return undefined;
    };
    await assert.rejects(
      () => loadLatestCheckpoint(root, { checkState: mine }),
      (e: Error) => e.message === `${dir(4)}: another run's`,
    );
    assert.deepEqual(seen, [checkpointDirName(4)], "refused at the newest, not passed over");
    // A reason skips it without reading its weights (which would fail with another reason).
    const ck = await loadLatestCheckpoint(root, {
      checkState: (s) => s.runKey === "other" ? "not this run's" : undefined,
    });
    assert.equal(ck?.step, 2);
    assert.deepEqual(ck!.skipped, [{ dir: dir(4), step: 4, reason: "not this run's" }]);
    disposeCheckpoint(ck!);
    // A state.json that is JSON but not an object never reaches checkState: skipped, saying so.
    for (const [text, got] of [["null", "null"], ["[]", "an array"], ["7", "7"]] as const) {
      await Deno.writeTextFile(state(4), text);
      const c = await loadLatestCheckpoint(root, { checkState: mine });
      assert.equal(c?.step, 2);
      assert.equal(
        c!.skipped[0]!.reason,
        `${state(4)}: cannot read checkpoint state: a JSON object expected, got ${got}`,
      );
      disposeCheckpoint(c!);
    }
    assert.equal(tf.memory().numTensors, before, "nothing kept of the refused or skipped");
    assert.deepEqual(entries(root), [2, 4].map(checkpointDirName), "nothing removed");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("checkpointOwesEvaluation(): only an evalOwed equal to the checkpoint's step; an unreadable state owes nothing", async () => {
  const root = await Deno.makeTempDir();
  try {
    const owes = async (state: string | undefined) => {
      const dir = join(root, crypto.randomUUID());
      await Deno.mkdir(dir);
      if (state !== undefined) await Deno.writeTextFile(join(dir, "state.json"), state);
      return await checkpointOwesEvaluation(dir);
    };
    assert.equal(await owes(JSON.stringify({ step: 4, evalOwed: 4 })), true);
    // The trainer writes evalOwed absent or null when nothing is owed.
    assert.equal(await owes(JSON.stringify({ step: 4 })), false);
    assert.equal(await owes(JSON.stringify({ step: 4, evalOwed: null })), false);
    assert.equal(await owes(JSON.stringify({ step: 4, evalOwed: 2 })), false, "another step's");
    assert.equal(await owes(JSON.stringify({ evalOwed: 4 })), false, "no step");
    assert.equal(await owes("{ truncated"), false);
    assert.equal(await owes(undefined), false, "no state.json");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
