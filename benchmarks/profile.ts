/**
 * Loading benchmark profiles: `benchmarks/profiles/<name>.json` by name, or any JSON file by
 * path. Errors name the file, the line and the JSON path of the offending field.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import { readEnv } from "../model/env.ts";
import { repoPath } from "../model/shared_dir.ts";
import { parseJsonFile } from "../model/json.ts";
import { PRESETS, type T5Config } from "../model/config.ts";
import { isHubRepoId } from "../model/hub.ts";
import { getMethod } from "../model/methods/mod.ts";
import { reductionProblem } from "../model/methods/adapter.ts";
import { BENCHMARK_TASKS, TASKS, TRAIN_ONLY_TASKS } from "../tasks/registry.ts";
import { TRAINABLE_TASKS } from "./runner.ts";
import {
  type Locator,
  type MethodName,
  type Profile,
  type ProfileChecks,
  SpecError,
  validateProfile,
} from "./spec.ts";

/** Folder of the built-in profiles. */
export const PROFILES_DIR: string = repoPath("benchmarks", "profiles");

/**
 * Build a {@link Locator} for JSON text: a one-pass scan that records the 1-based line where the
 * value of every path (`$`, `$.a.b`, `$.a[2].c`) starts. Invalid JSON yields a locator that
 * knows nothing (the caller reports the parse error separately).
 *
 * @param text JSON source
 * @returns path -> line lookup
 * @example
 * ```ts
 * import { jsonLocator } from "./profile.ts";
 * const at = jsonLocator('{\n  "a": {\n    "b": [1,\n 2]\n  }\n}');
 * console.assert(at("$.a.b[1]") === 4);
 * ```
 */
export function jsonLocator(text: string): Locator {
  const { lines } = scanJson(text);
  return (path) => lines.get(path);
}

/** A key given twice in one JSON object: its path and the lines of both. */
export interface DuplicateKey {
  /** JSON path of the repeated key, e.g. `$.train` or `$.methods[0].config.l`. */
  readonly path: string;
  /** 1-based line of the key's first occurrence in the object. */
  readonly firstLine: number;
  /** 1-based line of its repetition (the value `JSON.parse` keeps). */
  readonly line: number;
}

/**
 * The first key given twice in one object of JSON text (`JSON.parse` keeps the last value and
 * says nothing, so a profile with two `"train"` blocks would silently lose the first).
 *
 * @param text JSON source (invalid JSON: what was scanned before the error)
 * @returns the duplicate, or undefined
 */
export function jsonDuplicateKey(text: string): DuplicateKey | undefined {
  return scanJson(text).duplicates[0];
}

/** One pass over JSON text: the line of every path, and keys repeated within an object. */
function scanJson(text: string): { lines: Map<string, number>; duplicates: DuplicateKey[] } {
  const lines = new Map<string, number>();
  const duplicates: DuplicateKey[] = [];
  let i = 0;
  let line = 1;
  const ws = () => {
    while (i < text.length && /\s/.test(text[i]!)) {
      if (text[i] === "\n") line++;
      i++;
    }
  };
  const readString = (): string => {
    const start = i;
    i++;
    while (i < text.length && text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const value = (path: string): void => {
    ws();
    lines.set(path, line);
    const c = text[i];
    if (c === "{") {
      i++;
      ws();
      if (text[i] === "}") {
        i++;
        return;
      }
      const seen = new Map<string, number>();
      while (i < text.length) {
        ws();
        const keyLine = line;
        const key = readString();
        const first = seen.get(key);
        if (first !== undefined) {
          duplicates.push({ path: `${path}.${key}`, firstLine: first, line: keyLine });
        } else seen.set(key, keyLine);
        ws();
        i++; // ':'
        value(`${path}.${key}`);
        ws();
        if (text[i++] === "}") return;
      }
    } else if (c === "[") {
      i++;
      ws();
      if (text[i] === "]") {
        i++;
        return;
      }
      for (let k = 0; i < text.length; k++) {
        value(`${path}[${k}]`);
        ws();
        if (text[i++] === "]") return;
      }
    } else if (c === '"') {
      readString();
    } else {
      while (i < text.length && /[^\s,\]}]/.test(text[i]!)) i++;
    }
  };
  try {
    value("$");
  } catch {
    // Leave whatever was located; the JSON parse error is reported by the caller.
  }
  return { lines, duplicates };
}

/**
 * Names of the built-in profiles, sorted.
 *
 * @param builtIn the folder of built-in profiles (default {@link PROFILES_DIR}; tests pass another)
 * @returns profile names (file names without `.json`)
 */
export function listProfiles(builtIn: string = PROFILES_DIR): string[] {
  const names: string[] = [];
  for (const e of Deno.readDirSync(builtIn)) {
    if (e.isFile && e.name.endsWith(".json")) names.push(e.name.slice(0, -5));
  }
  return names.sort();
}

/**
 * Whether `--profile`'s value is a built-in profile's name (`ci`), not a file's path (`ci.json`,
 * `./ci`, `profiles/x.json`).
 *
 * @param nameOrPath the value as given
 * @returns true for a name
 */
export function isProfileName(nameOrPath: string): boolean {
  return /^[A-Za-z0-9_.-]+$/.test(nameOrPath) && !nameOrPath.endsWith(".json");
}

/**
 * The file a profile argument refers to: a built-in name (`smoke`) or a path to a JSON file.
 *
 * @param nameOrPath `--profile` value
 * @param builtIn the folder of built-in profiles (default {@link PROFILES_DIR}; tests pass another)
 * @returns the JSON file path
 * @throws Error listing the built-in profiles when a name is unknown
 */
export function profilePath(nameOrPath: string, builtIn: string = PROFILES_DIR): string {
  if (isProfileName(nameOrPath)) {
    const known = listProfiles(builtIn);
    if (!known.includes(nameOrPath)) {
      throw new Error(
        `Unknown profile "${nameOrPath}"; built-in profiles: ${
          known.join(", ")
        } (or pass a path to a .json file)`,
      );
    }
    return join(builtIn, `${nameOrPath}.json`);
  }
  return nameOrPath;
}

/**
 * For a profile file outside the built-in folder whose `name` is a built-in profile's (a copy of
 * `ci.json` edited but not renamed): a note that its runs carry that profile's name, so a
 * `--compare` against the built-in's baseline matches them (failing those whose settings differ
 * on `spec.id`), and
 * their result files share the built-in's prefix in an `--out`.
 *
 * @param file the profile file read
 * @param name its `name`
 * @param builtIn the folder of built-in profiles (default {@link PROFILES_DIR}; tests pass another)
 * @returns the note, or undefined
 */
export function builtInNameNote(
  file: string,
  name: string,
  builtIn: string = PROFILES_DIR,
): string | undefined {
  if (resolve(dirname(file)) === resolve(builtIn) || !listProfiles(builtIn).includes(name)) {
    return undefined;
  }
  return `${file} is named "${name}", as the built-in profile ${
    join(builtIn, `${name}.json`)
  } is: its runs are keyed as that profile's (results ${name}--…, and a --compare against its ` +
    `baseline gates them as its runs: those whose settings differ fail on spec.id); give it a ` +
    `name of its own to tell them apart`;
}

/**
 * Parse and validate profile JSON text.
 *
 * @param text JSON source
 * @param file file named in errors
 * @param checks cross-module checks (defaults: {@link defaultChecks})
 * @returns the validated profile
 * @throws SpecError or Error naming the file and line (and column, for a JSON syntax error)
 */
export function parseProfile(text: string, file: string, checks?: ProfileChecks): Profile {
  const raw = parseJsonFile(text, file);
  const { lines, duplicates: [twice] } = scanJson(text);
  if (twice !== undefined) {
    throw new SpecError(
      { file, locate: () => twice.line },
      twice.path,
      `is given twice (${
        twice.firstLine === twice.line
          ? `both on line ${twice.line}`
          : `lines ${twice.firstLine} and ${twice.line}`
      }); JSON keeps only the last`,
    );
  }
  return validateProfile(raw, { file, locate: (p) => lines.get(p) }, checks ?? defaultChecks());
}

/**
 * Why a profile file could not be read, in words (Deno's own message ends with its syscall and
 * path, `readfile '/x.json'`, which the caller names already), with the built-in profiles where
 * the file is not there.
 */
function unreadable(e: unknown, dir: string, file: string): string {
  const builtIn = () => `built-in profiles: ${listProfiles(dir).join(", ")}`;
  if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) {
    return `no such file (${builtIn()}, or a path to a profile JSON file${relativeNote(file)})`;
  }
  if (e instanceof Deno.errors.IsADirectory) {
    return `is a folder, not a profile JSON file (${builtIn()})`;
  }
  if (e instanceof Deno.errors.PermissionDenied) return "cannot read it: permission denied";
  const message = e instanceof Error ? e.message : String(e);
  return `cannot read it: ${message.replace(/: [a-z]+ '.*'$/s, "")}`;
}

/**
 * Load a profile by built-in name or path. A built-in profile's `name` must equal its file name
 * (`benchmarks/profiles/<name>.json`); a profile file elsewhere may have any name.
 *
 * @param nameOrPath `--profile` value
 * @param checks cross-module checks (defaults: {@link defaultChecks})
 * @param builtIn the folder of built-in profiles (default {@link PROFILES_DIR}; tests pass another)
 * @returns the validated profile
 * @throws Error naming `--profile` and the file when it cannot be read (no such file, a folder,
 *   no permission), or the file and line (and column, for a JSON syntax error) when it is no valid
 *   profile
 */
export async function loadProfile(
  nameOrPath: string,
  checks?: ProfileChecks,
  builtIn: string = PROFILES_DIR,
): Promise<Profile> {
  const file = profilePath(nameOrPath, builtIn);
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    throw new Error(`--profile ${file}: ${unreadable(e, builtIn, file)}`, { cause: e });
  }
  const p = parseProfile(text, file, checks ?? defaultChecks());
  const stem = basename(file).replace(/\.json$/, "");
  // The built-in folder by resolved path: a relative path into it is checked too, and a
  // sibling whose name merely starts alike (`profiles-old/`) is not.
  if (resolve(dirname(file)) === resolve(builtIn) && p.name !== stem) {
    throw new SpecError(
      { file, locate: jsonLocator(text) },
      "$.name",
      `must equal the file name "${stem}", got "${p.name}"`,
    );
  }
  return p;
}

/**
 * The checks used when none are given: preset names from `model/config.ts`, method
 * configurations through each method's `parseConfig` (`model/methods/mod.ts`), listed task
 * names against the registered tasks with train and validation files (`runner.ts`
 * `TRAINABLE_TASKS`: `tasks/registry.ts` `BENCHMARK_TASKS`, which a profile without a `tasks`
 * list trains and the average is over, then others such as WNLI; the AX diagnostics, test only,
 * are never run), tolerance keys against those tasks' metrics, and an `{"hf": ...}` model or
 * backbone must be a folder or have the form of a hub id (`name` or `org/name`), as `loadT5`
 * reads it. The resolved configuration (defaults filled) is kept as JSON: it is hashed into the
 * run id.
 *
 * @returns the checks
 */
export function defaultChecks(): ProfileChecks {
  return {
    presetNames: Object.keys(PRESETS),
    parseMethodConfig: (name: MethodName, raw: unknown, source: string) => {
      const cfg = getMethod(name).parseConfig(raw, source);
      return JSON.parse(JSON.stringify(cfg)) as Record<string, unknown>;
    },
    benchmarkTasks: BENCHMARK_TASKS,
    trainableTasks: TRAINABLE_TASKS,
    trainOnlyTasks: TRAIN_ONLY_TASKS,
    // Only the tasks a profile can list: a key of AX, AX-b or AX-g (or a metric only they
    // report, gender_parity) would match nothing any run evaluates.
    taskMetrics: Object.fromEntries(
      [...TRAINABLE_TASKS.glue, ...TRAINABLE_TASKS.super_glue].map((k) => [k, TASKS[k]!.metrics]),
    ),
    hfProblem: hfSourceProblem,
    methodModelProblem,
  };
}

/**
 * What is wrong with a method's resolved configuration on a preset model (see
 * `ProfileChecks.methodModelProblem`): a `reduction` (Adapter, HyperFormer++) that leaves no
 * bottleneck at the preset's d; else anything that stops the method's parameter count, variable
 * shapes or FLOP plan on that preset (no other field of the built-in methods depends on the model's
 * sizes: HyperPrompt's `length` and `bottleneck` and Prompt-Tuning's `length` fit any d and input
 * length, and `vocabSampleSize` is capped at the vocabulary).
 *
 * @param name the method
 * @param config its resolved configuration (`parseConfig`'s, as JSON)
 * @param preset a preset name (`model/config.ts` `PRESETS`); an unknown one is not checked here
 * @returns the problem, with the field it is about, or undefined
 */
export function methodModelProblem(
  name: MethodName,
  config: Readonly<Record<string, unknown>>,
  preset: string,
): { field?: string; reason: string } | undefined {
  const presets: Readonly<Record<string, T5Config>> = PRESETS;
  const model = Object.hasOwn(presets, preset) ? presets[preset] : undefined;
  if (model === undefined) return undefined;
  const r = config.reduction;
  if (typeof r === "number") {
    const reason = reductionProblem(model.dModel, r);
    if (reason !== undefined) return { field: "reduction", reason: `is ${r}, which ${reason}` };
  }
  const method = getMethod(name);
  try {
    const cfg = method.parseConfig(config, `${name} config`);
    method.countParams(model, cfg, 1);
    method.variableShapes?.(model, cfg, 1);
    method.flopPlan(model, cfg);
  } catch (e) {
    return { reason: `does not fit: ${e instanceof Error ? e.message : String(e)}` };
  }
  return undefined;
}

/**
 * What is wrong with an `{"hf": ...}` value of a profile: `loadT5` reads a folder, else fetches a
 * hub id, so a value that is neither (a mistyped path: no such folder, and not `name` or
 * `org/name`) would fail every run that uses it.
 *
 * @param hf the value
 * @returns the problem, or undefined
 */
export function hfSourceProblem(hf: string): string | undefined {
  let info: Deno.FileInfo | undefined;
  try {
    info = Deno.statSync(hf);
  } catch {
    // No such folder: perhaps a hub id.
  }
  if (info?.isDirectory) return undefined;
  if (info !== undefined) {
    return `names a file, not a model folder (one holding config.json and the weights, as ` +
      "save_pretrained writes it)";
  }
  if (isHubRepoId(hf)) return undefined;
  return `names neither a folder (there is none at "${hf}"${relativeNote(hf)}) nor a hub id ` +
    `("name" or "org/name")`;
}

/**
 * For a relative path that was not found: where it was looked for (`deno task` runs in the
 * repository root, not the shell's folder), and the file of that name in the shell's folder
 * (`INIT_CWD`, which `deno task` sets) if there is one.
 */
function relativeNote(path: string): string {
  if (isAbsolute(path)) return "";
  const shell = readEnv("INIT_CWD");
  const there = shell === undefined || resolve(shell) === resolve(".")
    ? undefined
    : resolve(shell, path);
  const found = there !== undefined && existsSync(there);
  return `; relative paths are read from ${resolve(".")}${
    found ? `: there is one at ${there}, give that absolute path` : ""
  }`;
}

/**
 * {@link defaultChecks}, asynchronously (kept for callers written before the methods registry
 * was imported statically).
 *
 * @returns the checks
 */
export function defaultChecksAsync(): Promise<ProfileChecks> {
  return Promise.resolve(defaultChecks());
}
