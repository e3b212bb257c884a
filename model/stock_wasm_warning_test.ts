import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { preset } from "./config.ts";
import { disposeT5, initT5 } from "./t5.ts";
import { patchWasmMatMul, unpatchWasmMatMul } from "./wasm_kernels.ts";

/** The console.warn lines of `fn` from model/t5.ts (tfjs's cpu backend has a banner of its own). */
function warnings(fn: () => void): string[] {
  const lines: string[] = [];
  const warn = console.warn;
  console.warn = (...a: unknown[]) => lines.push(a.map(String).join(" "));
  try {
    fn();
  } finally {
    console.warn = warn;
  }
  return lines.filter((l) => l.startsWith("model/t5.ts"));
}

const build = () => disposeT5(initT5(preset("tiny-v1_1"), { seed: 1 }));

Deno.test({
  name:
    "a model built on tfjs's wasm as shipped (no selectBackend) is warned of once; cpu and the patched wasm are not",
  sanitizeResources: false,
  fn: async () => {
    await tf.setBackend("cpu");
    assert.deepEqual(warnings(build), []);
    assert.ok(await tf.setBackend("wasm"));
    patchWasmMatMul({});
    try {
      assert.deepEqual(warnings(build), [], "the transpose fix: no warning");
    } finally {
      unpatchWasmMatMul();
    }
    const said = warnings(build);
    assert.equal(said.length, 1);
    assert.match(
      said[0]!,
      /^model\/t5\.ts: tfjs's wasm backend runs as shipped .*selectBackend\("auto"\)/,
    );
    assert.deepEqual(warnings(build), [], "once per process");
    await tf.setBackend("cpu");
  },
});
