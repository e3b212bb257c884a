/**
 * A fake `runOne` for tests of the runner, sharding, tables and the gate: it trains nothing and
 * returns a deterministic {@link RunResult} derived from the run's id. The CLI uses it when
 * `HYPERPROMPT_FAKE_RUN_ONE=1`. {@link countingRunOne} wraps it for tests that check which runs
 * were started and with what options.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { TASKS } from "../tasks/registry.ts";
import { officialAverages } from "./evaluator.ts";
import {
  type BestEval,
  conditionedTasks,
  type RunOneFn,
  type RunOneOptions,
  type RunResult,
  type RunSpec,
  type TaskEval,
} from "./spec.ts";

function unit(key: string): number {
  const h = createHash("sha256").update(key).digest();
  return h.readUInt32BE(0) / 2 ** 32;
}

/** The metric names a real run reports for a task: the registry's, else `accuracy`. */
function metricNames(task: string): readonly string[] {
  const m = TASKS[task]?.metrics;
  return m === undefined || m.length === 0 ? ["accuracy"] : m;
}

/**
 * Deterministic fake result: scores in [40, 90) from a hash of (id, task, step, metric) for the
 * metrics the task registry (`tasks/registry.ts`) names for each task,
 * parameter and FLOP counts from a hash of (model, method), throughput (rate, tokens and
 * seconds) from a hash of the id.
 *
 * @param spec the run
 * @param opts progress is reported at every step
 * @returns a RunResult whose numbers depend only on the spec
 */
export function fakeRunOne(spec: RunSpec, opts: RunOneOptions): Promise<RunResult> {
  const evals: TaskEval[] = [];
  const best: Record<string, BestEval> = {};
  const steps = spec.train.steps;
  for (let step = 1; step <= steps; step++) {
    opts.onProgress?.({ phase: "train", step, totalSteps: steps, loss: 1 / step });
  }
  const evalSteps: number[] = [];
  for (let s = spec.train.evalEvery; s < steps; s += spec.train.evalEvery) evalSteps.push(s);
  evalSteps.push(steps);
  for (const task of spec.tasks) {
    for (const step of evalSteps) {
      const metrics: Record<string, number> = {};
      for (const m of metricNames(task)) {
        metrics[m] = Math.round((40 + 50 * unit(`${spec.id}/${task}/${step}/${m}`)) * 100) / 100;
      }
      const vals = Object.values(metrics);
      const groupScore = vals.reduce((a, b) => a + b, 0) / vals.length;
      evals.push({ step, task, metrics, groupScore });
      const prev = best[task];
      if (prev === undefined || groupScore > prev.groupScore) {
        best[task] = { step, metrics, groupScore };
      }
    }
  }
  // As run_one.ts computes it (compare.ts checkRecordedScores holds results to it): the
  // benchmark's own tasks only (not WNLI or the diagnostics), its official average over all 8.
  const averages = officialAverages(spec.benchmark, best);
  const modelKey = JSON.stringify(spec.model);
  const total = 1e6 + Math.floor(1e5 * unit(modelKey));
  const extra = spec.method.name === "mtl"
    ? 0
    : Math.floor(1e4 * unit(`${modelKey}/${spec.method.label}`));
  const backbone = total - extra;
  const trained = spec.method.name === "prompt_tuning" ? extra : total;
  const prompt = spec.method.name.startsWith("hyperprompt");
  const layers = 2;
  // Throughput whose tokens / seconds is the rate exactly (as `runOne` writes it): seconds in
  // eighths (exact in binary) below the fake's 1 s of wall time, the rate a multiple of 8, so the
  // tokens are an integer. The seconds differ per run, so that a per-task row's total rate
  // differs from the mean of its task runs' rates.
  const tokensPerSecond = 8 * (125 + Math.floor(125 * unit(`${spec.id}/tps`)));
  const trainSeconds = (1 + Math.floor(7 * unit(`${spec.id}/seconds`))) / 8;
  const result: RunResult = {
    spec,
    provenance: {
      gitSha: "fake",
      gitDirty: false,
      deno: Deno.version.deno,
      v8: Deno.version.v8,
      typescript: Deno.version.typescript,
      tfjs: "fake",
      packages: {},
      backend: { requested: spec.backend, name: "fake", tfBackend: "fake", threads: 1, notes: [] },
      device: "fake",
      hostname: "fake",
      os: Deno.build.target,
      startedAt: "1970-01-01T00:00:00.000Z",
      finishedAt: "1970-01-01T00:00:01.000Z",
    },
    losses: evalSteps.map((step) => ({ step, loss: 1 / step })),
    evals,
    best,
    averages,
    params: {
      total,
      extra,
      extraPct: (100 * extra) / backbone,
      trained,
      trainedPerTaskPct: (100 * trained) / conditionedTasks(spec).length / backbone,
    },
    flops: {
      trainPerExample: 6 * total * (spec.train.maxInputLength + spec.train.maxTargetLength),
      inferencePerExample: 2 * total * (spec.train.maxInputLength + spec.train.maxTargetLength),
    },
    tokensPerSecond,
    trainTokens: tokensPerSecond * trainSeconds,
    trainSeconds,
    wallSeconds: 1,
    backboneSource: `random(seed=${spec.seed})`,
    ...(prompt
      ? {
        attentionMass: Object.fromEntries(spec.tasks.map((t) => [t, {
          encoder: Array.from({ length: layers }, (_, l) => unit(`${spec.id}/${t}/enc/${l}`)),
          decoder: Array.from({ length: layers }, (_, l) => unit(`${spec.id}/${t}/dec/${l}`)),
        }])),
      }
      : {}),
  };
  return Promise.resolve(result);
}

/** One call of a {@link countingRunOne} fake: the run and the options it was given. */
export interface RunOneCall {
  /** The run. */
  readonly spec: RunSpec;
  /** Its options (micro-batch size, checkpoint minutes, ...). */
  readonly opts: RunOneOptions;
}

/** A {@link countingRunOne} fake and the record of its calls. */
export interface CountingRunOne {
  /** Records the call, then rejects (a run `fails` picks) or answers as {@link fakeRunOne}. */
  readonly runOne: RunOneFn;
  /** Every call so far, failed ones included, in call order; a test may empty it in between. */
  readonly calls: RunOneCall[];
  /** The ids of {@link calls}' runs, in call order: which runs were started. */
  ids(): string[];
}

/**
 * A fake `runOne` that records each call (spec and options) and answers as {@link fakeRunOne};
 * the runs `fails` picks reject instead, as a run that diverged or crashed would: with the
 * `Error` `fails` returns (a backend's fatal error, a full disk), or `Error("this run broke")`
 * when it returns `true`.
 *
 * @param fails which runs fail, and optionally with what (none when absent)
 * @returns the fake and its record of calls
 */
export function countingRunOne(fails?: (spec: RunSpec) => boolean | Error): CountingRunOne {
  const calls: RunOneCall[] = [];
  return {
    calls,
    ids: () => calls.map((c) => c.spec.id),
    runOne: (spec, opts) => {
      calls.push({ spec, opts });
      const failure = fails?.(spec);
      if (failure instanceof Error) return Promise.reject(failure);
      return failure ? Promise.reject(new Error("this run broke")) : fakeRunOne(spec, opts);
    },
  };
}
