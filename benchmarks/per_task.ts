/**
 * Per-task methods (a profile's method entry with `"perTask": true`, e.g. Prompt-Tuning as
 * Lester et al. train it, spec A15): the runner trains one single-task run per task and seed
 * (`RunSpec.perTaskOf` names the benchmark's tasks), each written as its own result JSON with its
 * own provenance. {@link mergePerTaskRuns} turns the task runs of one configuration and seed back
 * into one result, so the tables show one row for the method, with the benchmark average computed
 * by the same function as a multi-task run's (`evaluator.ts` `benchmarkAverages` over the
 * per-task best group scores).
 *
 * A merged result lives only in memory (it is never written; its `spec.tasks` equals
 * `spec.perTaskOf`, which `validateRunResult` refuses for a file). When a task's run is absent
 * (it failed, or a shard has not finished), the merged result has no benchmark average, and
 * {@link missingTaskRuns} names the absent tasks: the tables leave the average blank and say
 * which task runs are missing, never averaging the tasks that happened to finish.
 *
 * @module
 */
import { officialAverages } from "./evaluator.ts";
import {
  type AttentionMass,
  type BestEval,
  configId,
  runId,
  type RunResult,
  type RunSpec,
} from "./spec.ts";

/** What a merged result was made of. */
interface Merge {
  /** The task runs, in `perTaskOf` order (absent tasks left out). */
  readonly parts: readonly RunResult[];
  /** Tasks of `perTaskOf` without a run, in `perTaskOf` order. */
  readonly missing: readonly string[];
}

const MERGES = new WeakMap<RunResult, Merge>();

/**
 * Whether a result is one task's run of a per-task method (not a merged result).
 *
 * @param r a run result
 * @returns true for a single-task run of a `perTask` method entry
 */
export function isPerTaskRun(r: Pick<RunResult, "spec">): boolean {
  return r.spec.perTaskOf !== undefined && !MERGES.has(r as RunResult);
}

/**
 * The task runs a merged result was made of, in `perTaskOf` order.
 *
 * @param r a result
 * @returns the runs, or undefined when `r` is not a result of {@link mergePerTaskRuns}
 */
export function perTaskParts(r: RunResult): readonly RunResult[] | undefined {
  return MERGES.get(r)?.parts;
}

/**
 * The tasks of a merged result whose run is absent.
 *
 * @param r a result
 * @returns the tasks, in `perTaskOf` order; empty for a complete merge or any other result
 */
export function missingTaskRuns(r: RunResult): readonly string[] {
  return MERGES.get(r)?.missing ?? [];
}

/**
 * Parameters of the method's row from its task runs. What a run leaves untrained is shared by
 * every task (the frozen backbone); what it trains is each task's own. So the row serves
 * `frozen + Σ trained_i` parameters over all `numTasks` tasks: with a frozen backbone the
 * backbone plus every task's prompt (what a multi-task run with one prompt per task counts),
 * with a trained one a backbone per task. A task whose run is absent counts the mean of the
 * present runs' trained parameters (a task run's count does not depend on its task: every
 * method's `countParams` takes only the number of tasks), so the row's parameters do not shrink
 * with a failed or unfinished task run, and its trained-per-task % stays one task's.
 */
function mergedParams(parts: readonly RunResult[], numTasks: number): RunResult["params"] {
  const first = parts[0]!.params;
  const backbone = first.total - first.extra;
  const frozen = first.total - first.trained;
  const present = parts.reduce((a, r) => a + r.params.trained, 0);
  const trained = present + (numTasks - parts.length) * (present / parts.length);
  const total = frozen + trained;
  const extra = total - backbone;
  return {
    total,
    extra,
    extraPct: (100 * extra) / backbone,
    trained,
    trainedPerTaskPct: (100 * trained) / numTasks / backbone,
  };
}

/**
 * The training throughput of several runs together: a per-task method's task runs (its merged
 * result's), or the seeds of one configuration (`tables.ts`'s `flops.csv`). When every run
 * records its totals (`trainTokens`, `trainSeconds`, written by `runOne` since they exist), the
 * exact figure: all tokens over all training seconds, with those totals; `mean: false`.
 * Otherwise (a result written before the fields existed) the unweighted mean of the runs' tokens
 * per second, which equals the exact figure only when their training times are equal;
 * `mean: true`, and no totals. All task runs of one configuration train the same steps at the
 * same batch size, so their training times differ through their tasks' sequence lengths: the
 * mean counts a short-input task's rate as much as a long-input one's (which trained longer).
 * Weighting by `wallSeconds` would be further off: with evaluation on the whole validation set
 * (`paper-base`), a run's wall time is mostly evaluation, whose cost follows the size of the
 * task's validation set (QQP's 40,430 examples, RTE's 277), not its training time.
 *
 * @param parts the runs (at least one)
 * @returns tokens per second, with the totals when every run has them (`mean: false`)
 */
export function mergedThroughput(parts: readonly RunResult[]): {
  readonly tokensPerSecond: number;
  readonly trainTokens?: number;
  readonly trainSeconds?: number;
  readonly mean: boolean;
} {
  if (parts.every((r) => r.trainTokens !== undefined && r.trainSeconds !== undefined)) {
    const trainTokens = parts.reduce((a, r) => a + r.trainTokens!, 0);
    const trainSeconds = parts.reduce((a, r) => a + r.trainSeconds!, 0);
    return {
      tokensPerSecond: trainSeconds > 0 ? trainTokens / trainSeconds : 0,
      trainTokens,
      trainSeconds,
      mean: false,
    };
  }
  return {
    tokensPerSecond: parts.reduce((a, r) => a + r.tokensPerSecond, 0) / parts.length,
    mean: true,
  };
}

function merge(parts: readonly RunResult[], perTaskOf: readonly string[]): RunResult {
  const first = parts[0]!;
  const { id: _id, ...rest } = first.spec;
  const body: Omit<RunSpec, "id"> = { ...rest, tasks: perTaskOf };
  const spec: RunSpec = { id: runId(body), ...body };
  const present = new Set(parts.map((r) => r.spec.tasks[0]!));
  const missing = perTaskOf.filter((t) => !present.has(t));
  const best: Record<string, BestEval> = {};
  for (const r of parts) Object.assign(best, r.best);
  const averages = missing.length > 0 ? {} : officialAverages(spec.benchmark, best);
  const attention: Record<string, AttentionMass> = {};
  for (const r of parts) Object.assign(attention, r.attentionMass ?? {});
  const throughput = mergedThroughput(parts);
  const merged: RunResult = {
    spec,
    provenance: first.provenance,
    losses: [],
    evals: parts.flatMap((r) => r.evals),
    best,
    averages,
    params: mergedParams(parts, perTaskOf.length),
    flops: first.flops,
    tokensPerSecond: throughput.tokensPerSecond,
    ...(throughput.mean
      ? {}
      : { trainTokens: throughput.trainTokens!, trainSeconds: throughput.trainSeconds! }),
    wallSeconds: parts.reduce((a, r) => a + r.wallSeconds, 0),
    backboneSource: first.backboneSource,
    ...(first.tokenizer === undefined ? {} : { tokenizer: first.tokenizer }),
    ...(Object.keys(attention).length === 0 ? {} : { attentionMass: attention }),
  };
  MERGES.set(merged, { parts, missing });
  return merged;
}

/**
 * Replace the task runs of per-task methods by one merged result per configuration
 * (`configId`, which ignores the task of a task run) and seed; other results pass unchanged.
 * Order: each merged result where its first task run was. Its losses are left empty (each task
 * run has its own; {@link perTaskParts} gives them), its FLOPs per example are the first task
 * run's, its throughput their total tokens over their total training seconds (with those
 * totals as its `trainTokens` and `trainSeconds`), or, when a task run lacks them (written before
 * they existed), the unweighted mean of their rates ({@link mergedThroughput}), and its wall time
 * their sum.
 *
 * @param results run results (any shards, any profiles)
 * @param describe names a result in errors (its file)
 * @returns the results with task runs merged
 * @throws Error naming both results when two are the same task's run of one configuration and
 *   seed
 */
export function mergePerTaskRuns(
  results: readonly RunResult[],
  describe: (r: RunResult) => string = (r) => `the result of run ${r.spec.id}`,
): RunResult[] {
  const groups = new Map<string, RunResult[]>();
  const out: (RunResult | string)[] = [];
  for (const r of results) {
    if (!isPerTaskRun(r)) {
      out.push(r);
      continue;
    }
    const key = `${configId(r.spec)}/s${r.spec.seed}`;
    let g = groups.get(key);
    if (g === undefined) {
      groups.set(key, g = []);
      out.push(key);
    }
    const twin = g.find((x) => x.spec.tasks[0] === r.spec.tasks[0]);
    if (twin !== undefined) {
      throw new Error(
        `Two results for the ${r.spec.tasks[0]} run of configuration ${
          configId(r.spec)
        } and seed ${r.spec.seed}: ${describe(twin)} and ${
          describe(r)
        }; remove one (a copy, or a rerun into another folder)`,
      );
    }
    g.push(r);
  }
  return out.map((x) => {
    if (typeof x !== "string") return x;
    const g = groups.get(x)!;
    const perTaskOf = g[0]!.spec.perTaskOf!;
    g.sort((a, b) => perTaskOf.indexOf(a.spec.tasks[0]!) - perTaskOf.indexOf(b.spec.tasks[0]!));
    return merge(g, perTaskOf);
  });
}
