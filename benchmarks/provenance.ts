/**
 * Provenance of a run: git commit and dirty flag, runtime and package versions, backend, device,
 * host and timestamps (recorded in every {@link RunResult}).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { hostname } from "node:os";
import { repoPath } from "../model/shared_dir.ts";
import type { BackendRecord, Provenance } from "./spec.ts";

function git(args: string[]): string | undefined {
  try {
    const out = new Deno.Command("git", {
      args,
      cwd: repoPath(),
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    return out.success ? new TextDecoder().decode(out.stdout).trim() : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Git commit of the repository and whether the tree has uncommitted changes to tracked or
 * untracked-but-not-ignored files (`results/runs/` is ignored).
 *
 * @returns `{sha: "unknown", dirty: false}` outside a repository or without git
 */
export function gitState(): { sha: string; dirty: boolean } {
  const sha = git(["rev-parse", "HEAD"]);
  if (sha === undefined) return { sha: "unknown", dirty: false };
  const status = git(["status", "--porcelain"]) ?? "";
  return { sha, dirty: status.length > 0 };
}

/**
 * Pinned npm packages from `deno.json` "imports" (`npm:name@version` -> name: version).
 *
 * @returns package name -> version, sorted by name
 */
export function pinnedPackages(): Record<string, string> {
  const out: Record<string, string> = {};
  try {
    const json = JSON.parse(Deno.readTextFileSync(repoPath("deno.json"))) as {
      imports?: Record<string, string>;
    };
    for (const spec of Object.values(json.imports ?? {})) {
      const m = /^npm:(@?[^@]+)@([^/]+)/.exec(spec);
      if (m) out[m[1]!] = m[2]!;
    }
  } catch {
    // No deno.json beside the code (e.g. a published module): no package list.
  }
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : 1)));
}

function cpuModel(): string {
  try {
    const info = Deno.readTextFileSync("/proc/cpuinfo");
    const m = /^model name\s*:\s*(.+)$/m.exec(info);
    if (m) return m[1]!.trim();
  } catch {
    // Not Linux.
  }
  return Deno.build.arch;
}

/**
 * A description of the device: the GPU adapter when the backend reports one, else the CPU model
 * and the number of logical cores.
 *
 * @param backend the backend record
 * @returns e.g. `"Intel(R) Xeon(R) ... x2 (wasm+blas, 2 threads)"`
 */
export function deviceDescription(backend: BackendRecord): string {
  if (backend.name === "webgpu" || backend.name === "tensorflow") {
    if (backend.adapter) return `${backend.adapter} (${backend.name})`;
  }
  const cores = navigator.hardwareConcurrency ?? 0;
  return `${cpuModel()} x${cores} (${backend.name}, ${backend.threads} threads)`;
}

/** What tfjs runs on now, when no `model/backend.ts` record is available. */
export function tfBackendRecord(): BackendRecord {
  const name = tf.getBackend() ?? "unknown";
  return { requested: name, name, tfBackend: name, threads: 1, notes: [] };
}

/**
 * Collect a run's provenance.
 *
 * @param startedAt when the run started
 * @param backend the backend used (`model/backend.ts` `currentBackendInfo()`); defaults to tfjs's
 * @param finishedAt when it finished (default now)
 * @param git the repository state when the run started ({@link gitState}); read now if omitted,
 *   which names the wrong commit when the tree changed while the run went on
 * @returns the provenance record
 */
export function collectProvenance(
  startedAt: Date,
  backend: BackendRecord = tfBackendRecord(),
  finishedAt: Date = new Date(),
  git: { sha: string; dirty: boolean } = gitState(),
): Provenance {
  const { sha, dirty } = git;
  return {
    gitSha: sha,
    gitDirty: dirty,
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    typescript: Deno.version.typescript,
    tfjs: tf.version.tfjs,
    packages: pinnedPackages(),
    backend: {
      requested: backend.requested,
      name: backend.name,
      tfBackend: backend.tfBackend,
      ...(backend.adapter === undefined ? {} : { adapter: backend.adapter }),
      threads: backend.threads,
      notes: [...backend.notes],
    },
    device: deviceDescription(backend),
    hostname: hostname(),
    os: Deno.build.target,
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
  };
}
