import assert from "node:assert/strict";
import { fakeRuns, fakeSpec, on } from "./results_testing.ts";
import { mergePerTaskRuns } from "./per_task.ts";
import { describeResult } from "./compare.ts";
import { setupOfRuns, setupPairs } from "./setups.ts";

Deno.test("setupPairs(): distinct (backend, device) pairs, sorted; a merged per-task seed's each", async () => {
  const rs = await fakeRuns(
    [0, 1, 2].map((seed) => fakeSpec("p", "tiny-v1_1", "mtl", "MTL", seed, "glue")),
  );
  const mixed = [on(rs[0]!, "webgpu", "B"), rs[1]!, on(rs[2]!, "webgpu", "A")];
  assert.deepEqual(setupPairs(mixed), [["fake", "fake"], ["webgpu", "A"], ["webgpu", "B"]]);
  // The key is the same whatever the order and repetitions of the runs.
  assert.equal(setupOfRuns(mixed), setupOfRuns([mixed[2]!, mixed[0]!, mixed[1]!, mixed[0]!]));
  assert.notEqual(setupOfRuns([mixed[0]!]), setupOfRuns([mixed[2]!]));
  // A per-task method's merged seed: the pairs of its task runs, not the first one's only.
  const tasks = ["rte", "cola"];
  const parts = await fakeRuns(
    tasks.map((t) =>
      fakeSpec("p", "tiny-v1_1", "prompt_tuning", "PT", 0, "glue", "random", {
        tasks: [t],
        perTaskOf: tasks,
      })
    ),
  );
  const [merged] = mergePerTaskRuns([parts[0]!, on(parts[1]!, "webgpu", "A")], describeResult);
  assert.deepEqual(setupPairs([merged!]), [["fake", "fake"], ["webgpu", "A"]]);
});
