/**
 * A method instance's own variables ({@link MethodInstance.variables}) saved to and loaded from
 * one safetensors file, under the names the instance gives them: what a run with
 * `train.saveWeights` keeps as `method.safetensors` (`benchmarks/run_one.ts`), so that a trained
 * method can be rebuilt (`method.create` with the run's config, tasks and backbone) and its
 * variables put back to inspect its prompts or decode.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { CheckpointError } from "../checkpoint_error.ts";
import { writeFileAtomic } from "../fs.ts";
import type { MethodInstance } from "../method.ts";
import {
  decodeSafetensors,
  encodeSafetensors,
  encodeTypedArray,
  type RawTensor,
  type SafetensorsDtype,
  toTypedArray,
} from "../safetensors.ts";

/** `__metadata__` key that records the method's registry name in a saved file. */
const METHOD_KEY = "method";

/** The safetensors type a variable is stored as (float32 as F32, int32 as I32). */
function storedDtype(v: tf.Variable, name: string): SafetensorsDtype {
  if (v.dtype === "float32") return "F32";
  if (v.dtype === "int32") return "I32";
  throw new Error(
    `method variable "${name}" has dtype ${v.dtype}; only float32 and int32 are saved`,
  );
}

/**
 * Writes a method instance's variables to one safetensors file (float32 as F32, bit for bit),
 * atomically (a temporary beside `path`, renamed over it), with the method's registry name in
 * the file's metadata. Reads the values asynchronously (webgpu cannot read back synchronously);
 * makes no tensor.
 *
 * @param path the file to write (`….safetensors`); its folder must exist
 * @param instance the method instance whose {@link MethodInstance.variables} are saved
 * @throws Error naming the variable whose dtype is neither float32 nor int32, or the file that
 *   cannot be written
 * @example
 * ```ts ignore
 * await saveMethodVariables("final/method.safetensors", instance);
 * ```
 */
export async function saveMethodVariables(path: string, instance: MethodInstance): Promise<void> {
  const tensors = new Map<string, RawTensor>();
  for (const [name, v] of instance.variables) {
    const dtype = storedDtype(v, name);
    const values = (await v.data()) as Float32Array | Int32Array;
    tensors.set(name, { dtype, shape: [...v.shape], data: encodeTypedArray(values, dtype) });
  }
  await writeFileAtomic(
    path,
    encodeSafetensors(tensors, { format: "pt", [METHOD_KEY]: instance.name }),
  );
}

/**
 * Puts the values of a file written by {@link saveMethodVariables} into a method instance's
 * variables. Everything is checked before any variable changes: the method named in the file
 * (when it names one), every variable of the instance present with its shape and type, and no
 * tensor in the file that the instance lacks. Leaves the tensor count as it was.
 *
 * @param path the safetensors file
 * @param instance the instance to load into: built as the saved one was (same method, config,
 *   task list and backbone size), e.g. from the run result's `spec`
 * @throws CheckpointError naming `path` and the first mismatch (the method, a missing or extra
 *   tensor, a shape or type), or why the file cannot be read
 * @example
 * ```ts ignore
 * await loadMethodVariables("results/runs/weights/<run name>/method.safetensors", instance);
 * ```
 */
export async function loadMethodVariables(path: string, instance: MethodInstance): Promise<void> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw new CheckpointError(
      `${path}: cannot read the method's weights: ${(e as Error).message}`,
      {
        file: path,
        cause: e,
      },
    );
  }
  const { tensors, metadata } = decodeSafetensors(bytes, path);
  const saved = metadata?.[METHOD_KEY];
  if (saved !== undefined && saved !== instance.name) {
    throw new CheckpointError(
      `${path}: holds the variables of method "${saved}", not of "${instance.name}"`,
      { file: path, field: `__metadata__.${METHOD_KEY}` },
    );
  }
  const values = new Map<string, Float32Array | Int32Array>();
  for (const [name, v] of instance.variables) {
    const t = tensors.get(name);
    if (t === undefined) {
      throw new CheckpointError(
        `${path}: tensor "${name}" of method ${instance.name} not found (the file has ${tensors.size} tensors)`,
        { file: path, field: name },
      );
    }
    const want = storedDtype(v, name);
    if (t.dtype !== want) {
      throw new CheckpointError(
        `${path}: tensor "${name}" is ${t.dtype}, but the variable is ${v.dtype} (${want})`,
        { file: path, field: name },
      );
    }
    if (t.shape.length !== v.shape.length || t.shape.some((d, i) => d !== v.shape[i])) {
      throw new CheckpointError(
        `${path}: tensor "${name}" has shape [${t.shape.join(", ")}], but the variable has [${
          v.shape.join(", ")
        }]`,
        { file: path, field: name },
      );
    }
    values.set(name, toTypedArray(t.dtype, t.data, `${path}: tensor "${name}"`, path));
  }
  for (const name of tensors.keys()) {
    if (!instance.variables.has(name)) {
      throw new CheckpointError(
        `${path}: tensor "${name}" is not a variable of this ${instance.name} instance ` +
          `(saved with another config or task list?)`,
        { file: path, field: name },
      );
    }
  }
  for (const [name, v] of instance.variables) {
    const t = tf.tensor(values.get(name)!, v.shape, v.dtype);
    try {
      v.assign(t);
    } finally {
      t.dispose();
    }
  }
}
