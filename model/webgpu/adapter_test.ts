import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-webgpu";
import { tfjsAdapterOptions } from "./adapter.ts";

Deno.test("tfjsAdapterOptions() follows tfjs-backend-webgpu's WEBGPU_USE_LOW_POWER_GPU flag", () => {
  const saved = tf.env().getBool("WEBGPU_USE_LOW_POWER_GPU");
  try {
    tf.env().set("WEBGPU_USE_LOW_POWER_GPU", false);
    assert.deepEqual(tfjsAdapterOptions(), { powerPreference: "high-performance" });
    tf.env().set("WEBGPU_USE_LOW_POWER_GPU", true);
    assert.deepEqual(tfjsAdapterOptions(), { powerPreference: "low-power" });
  } finally {
    tf.env().set("WEBGPU_USE_LOW_POWER_GPU", saved);
  }
});

Deno.test("tfjsAdapterOptions() matches the descriptor in tfjs-backend-webgpu's source", async () => {
  // The backend's registration code, as shipped: if a tfjs update changes the descriptor, the
  // probe must follow it.
  const file = new URL(
    "../../node_modules/@tensorflow/tfjs-backend-webgpu/dist/tf-backend-webgpu.node.js",
    import.meta.url,
  );
  const src = await Deno.readTextFile(file);
  assert.match(
    src,
    /powerPreference: tf\.env\(\)\.get\('WEBGPU_USE_LOW_POWER_GPU'\) \?\s*'low-power' :\s*'high-performance'/,
  );
});
