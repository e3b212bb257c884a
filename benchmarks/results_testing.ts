/**
 * Fake run specs and results for the tests of the tables and plots (`tables_test.ts`,
 * `plots_test.ts`): runs of `fakeRunOne`, with no training.
 *
 * @module
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { fakeRunOne } from "./_fake_run_one.ts";
import { DEFAULT_TRAIN, runId, type RunResult, type RunSpec } from "./spec.ts";

/** The committed CI baseline's folder (16 results of the `ci` profile). */
export const CI_BASELINE: string = fileURLToPath(
  new URL("../results/baselines/ci", import.meta.url),
);

/**
 * The CI baseline's result files, by name in order, copied into `into` (made) when given, for
 * tests that edit or split them.
 *
 * @param into the folder to copy them into, if any
 * @returns the file names, sorted
 */
export async function ciBaselineFiles(into?: string): Promise<string[]> {
  const names = [...Deno.readDirSync(CI_BASELINE)].map((e) => e.name)
    .filter((n) => n.endsWith(".json")).sort();
  if (into !== undefined) {
    await Deno.mkdir(into, { recursive: true });
    for (const n of names) await Deno.copyFile(join(CI_BASELINE, n), join(into, n));
  }
  return names;
}

/**
 * A run spec: GLUE's RTE and CoLA (SuperGLUE's CB), 4 steps evaluated every 2, on cpu.
 *
 * @param profile the profile name
 * @param model the model (a preset name)
 * @param name the method key
 * @param label the method label
 * @param seed the seed
 * @param benchmark the benchmark
 * @param backbone the backbone (default random)
 * @param edit fields to override
 * @returns the spec, with its id
 */
export function fakeSpec(
  profile: string,
  model: string,
  name: RunSpec["method"]["name"],
  label: string,
  seed: number,
  benchmark: "glue" | "super_glue",
  backbone: RunSpec["backbone"] = "random",
  edit: Partial<Omit<RunSpec, "id">> = {},
): RunSpec {
  const body: Omit<RunSpec, "id"> = {
    profile,
    model,
    backbone,
    benchmark,
    tasks: benchmark === "glue" ? ["rte", "cola"] : ["cb"],
    method: { name, label, config: {} },
    seed,
    train: { ...DEFAULT_TRAIN, steps: 4, evalEvery: 2 },
    backend: "cpu",
    ...edit,
  };
  return { id: runId(body), ...body };
}

/**
 * The fake results of `specs` (`_fake_run_one.ts`).
 *
 * @param specs the runs
 * @returns their results
 */
export async function fakeRuns(specs: RunSpec[]): Promise<RunResult[]> {
  return await Promise.all(specs.map((s) => fakeRunOne(s, { outDir: "", dataDir: "" })));
}

/**
 * `r` as if it ran on `backend` and `device` (its setup: `setups.ts`).
 *
 * @param r the result
 * @param backend the backend name
 * @param device the device
 * @returns a copy with those in its provenance
 */
export function on(r: RunResult, backend: string, device: string): RunResult {
  return {
    ...r,
    provenance: { ...r.provenance, backend: { ...r.provenance.backend, name: backend }, device },
  };
}
