import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { preset } from "./config.ts";
import { disposeT5, initT5, t5FromTensors } from "./t5.ts";

// Its own module (the warning is once per process, and each test module runs in its own
// isolate): a model loaded from tensors (a checkpoint) is warned of as a new one is
// (stock_wasm_warning_test.ts).
Deno.test({
  name: "a model loaded from tensors on tfjs's wasm as shipped is warned of, once",
  sanitizeResources: false,
  fn: async () => {
    const config = preset("tiny-v1_1");
    await tf.setBackend("cpu");
    const donor = initT5(config, { seed: 1 });
    const tensors = new Map<string, tf.Tensor>();
    for (const [name, v] of donor.params) tensors.set(name, tf.clone(v));
    disposeT5(donor);
    assert.ok(await tf.setBackend("wasm"));
    const lines: string[] = [];
    const warn = console.warn;
    console.warn = (...a: unknown[]) => lines.push(a.map(String).join(" "));
    try {
      disposeT5(t5FromTensors(config, tensors, "test"));
    } finally {
      console.warn = warn;
      tf.dispose([...tensors.values()]);
      await tf.setBackend("cpu");
    }
    const said = lines.filter((l) => l.startsWith("model/t5.ts"));
    assert.equal(said.length, 1, lines.join("\n"));
    assert.match(said[0]!, /tfjs's wasm backend runs as shipped/);
  },
});
