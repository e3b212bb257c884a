/**
 * HyperPrompt benchmark suite: T5 in TensorFlow.js with HyperPrompt (Share / Sep / Global) and
 * its baselines (MTL, Prompt-Tuning, Vanilla Adapter, HyperFormer++), GLUE and SuperGLUE tasks,
 * and the benchmark runner that regenerates the paper's tables.
 *
 * The everyday API loads a Hugging Face T5, computes teacher-forced logits and loss, and decodes
 * greedily:
 *
 * @example
 * ```ts ignore
 * import { generate, loadT5, selectBackend, teacherForced } from "./mod.ts";
 * await selectBackend("auto");
 * const t5 = await loadT5("path/to/hf-folder"); // or a hub id such as "google/t5-v1_1-small"
 * const { logits, loss } = await teacherForced(
 *   t5,
 *   ["rte sentence1: A. sentence2: B."],
 *   ["entailment"],
 * );
 * logits.dispose();
 * console.log(loss, await generate(t5, ["sst2 sentence: a gripping film ."]));
 * ```
 *
 * The three areas are also importable on their own: `model/mod.ts`, `tasks/mod.ts`,
 * `benchmarks/mod.ts`.
 *
 * @module
 */
export * from "./model/mod.ts";
export * as tasks from "./tasks/mod.ts";
export * as benchmarks from "./benchmarks/mod.ts";
