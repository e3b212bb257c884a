import assert from "node:assert/strict";
import { badFolders } from "./cli_testing.ts";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { pathExists } from "../model/fs.ts";
import { parse } from "csv-parse/sync";
import { BENCHMARK_TASKS } from "../tasks/registry.ts";
import { benchmarkAverage } from "../tasks/metrics.ts";
import { benchmarkAverages, bestPerTask } from "./evaluator.ts";
import { CI_BASELINE, ciBaselineFiles, fakeRuns, fakeSpec, on } from "./results_testing.ts";
import { setupDevice } from "./setups.ts";
import { loadResults } from "./compare.ts";
import { attentionMassSvg, scoreVsParamsSvg, seriesStyle } from "./plots.ts";
import {
  configId,
  DEFAULT_TRAIN,
  METHOD_NAMES,
  type RunResult,
  type RunSpec,
  trainedTasks,
} from "./spec.ts";
import { PRESETS } from "../model/config.ts";
import { expandGrid } from "./runner.ts";
import { loadProfile } from "./profile.ts";
import {
  ablationTable,
  attentionTable,
  compareModels,
  flopsTable,
  INVALID_PCT,
  loadAccounting,
  main,
  metricsTable,
  paperDiffers,
  paperMatch,
  type PaperRow,
  paramsPaperMatch,
  paramsTable,
  readPaperTable,
  roundHalfAway,
  scoresTable,
  toCsv,
  writeTables,
} from "./tables.ts";

const spec = fakeSpec;
const runs = fakeRuns;

/**
 * {@link fakeSpec} with its benchmark's 8 tasks: the paper's parameter figures count 8 tasks, and
 * only such a run's row gets them.
 */
function spec8(...[p, m, n, l, seed, b, backbone, edit]: Parameters<typeof fakeSpec>) {
  return fakeSpec(p, m, n, l, seed, b, backbone, { tasks: [...BENCHMARK_TASKS[b]], ...edit });
}

/** A paper row of the main table with both averages: HyperPrompt-Global on T5 1.1 Base. */
const HP_GLOBAL_BASE_ROW: PaperRow = {
  table: "main",
  model: "t5-v1_1-base",
  method: "HyperPrompt",
  method_name: "hyperprompt_global",
  glue_avg: "86.8",
  super_glue_avg: "77.9",
  params_ratio: "",
  extra_pct: "",
  trained_per_task_pct: "",
  freeze_backbone: "",
  source: "a test row",
};

/** Seed 0 of HyperPrompt-Global on pretrained T5 1.1 Base (HP_GLOBAL_BASE_ROW's row) on `tasks`. */
const hpGlobalBase = (benchmark: "glue" | "super_glue", tasks: readonly string[]): RunSpec =>
  spec(
    "paper-base",
    "t5-v1_1-base",
    "hyperprompt_global",
    "HyperPrompt",
    0,
    benchmark,
    "pretrained",
    {
      tasks: [...tasks],
    },
  );

Deno.test("readPaperTable() gives every row a source and blank unknown scores", () => {
  const paper = readPaperTable();
  assert.ok(paper.length >= 20);
  for (const p of paper) assert.ok(p.source.length > 20, `${p.model}/${p.method} has no source`);
  // The spec says the paper's score tables were not retrieved: no score is filled in.
  assert.ok(paper.every((p) => p.glue_avg === "" && p.super_glue_avg === ""));
  assert.ok(paper.some((p) => p.extra_pct === "0.14"));
  assert.ok(
    paper.some((p) =>
      p.method === "HyperFormer++" && p.params_ratio === "1.02" && p.trained_per_task_pct === "0.29"
    ),
  );
  // The ablation profile's frozen-backbone rows have the §4.3 table's place, to be filled from
  // the PDF; its full-training rows stay the ablation's (§4.5).
  for (
    const [label, method] of [
      ["HyperFormer++ (frozen)", "hyperformer_pp"],
      ["HyperPrompt-Global (frozen)", "hyperprompt_global"],
    ] as const
  ) {
    const g = { profile: "ablation", model: "t5-v1_1-base", label, method };
    assert.equal(paperMatch(paper, g).note, `frozen: t5-v1_1-base ${label}`);
    // A main-table profile is not compared with it; a user's own profile is.
    assert.equal(paperMatch(paper, { ...g, profile: "paper-base" }).row, undefined);
    assert.equal(paperMatch(paper, { ...g, profile: "mine" }).row?.table, "frozen");
  }
  const full = { profile: "ablation", model: "t5-v1_1-base", label: "HyperFormer++" };
  assert.equal(paperMatch(paper, { ...full, method: "hyperformer_pp" }).row?.table, "ablation");
});

Deno.test("the tables' method order is each paper table's own (main results, ablation)", () => {
  // groupRuns sorts rows by METHOD_NAMES: every paper table of a model lists its methods in
  // that order (the ablation's MTL-Prompt right after MTL, before HyperFormer++).
  const paper = readPaperTable();
  const sequences = new Map<string, string[]>();
  for (const p of paper.filter((p) => p.table === "main" || p.table === "ablation")) {
    const key = `${p.table} ${p.model}`;
    sequences.set(key, [...(sequences.get(key) ?? []), p.method_name]);
  }
  assert.ok(sequences.has("ablation t5-v1_1-base") && sequences.has("main t5-v1_1-base"));
  const rank = (m: string) => METHOD_NAMES.indexOf(m as never);
  for (const [key, methods] of sequences) {
    const unique = [...new Set(methods)];
    assert.deepEqual([...unique].sort((a, b) => rank(a) - rank(b)), unique, key);
  }
});

Deno.test("readPaperTable() refuses a bad paper table naming file, line and column", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const head = "table,model,method,method_name,glue_avg,super_glue_avg,params_ratio," +
      "extra_pct,trained_per_task_pct,freeze_backbone,source";
    const good = 'main,t5-v1_1-base,MTL,mtl,85.1,,,,,,"PDF p. 6, Table 1"';
    const file = join(dir, "main_table.csv");
    const read = async (text: string) => {
      await Deno.writeTextFile(file, text);
      return readPaperTable(file);
    };
    // The good row reads, a quoted multi-line source included.
    const ok = await read(
      `${head}\n${good}\nabstract,,HyperPrompt,hyperprompt_global,,,,0.14,,,"abstract\nS1"\n`,
    );
    assert.equal(ok.length, 2);
    assert.equal(ok[0]!.glue_avg, "85.1");
    assert.equal(ok[1]!.source, "abstract\nS1");
    // One model and label in two of the paper's tables (its main results and its ablation both
    // have MTL at Base) are two rows.
    const two = await read(`${head}\n${good}\n${good.replace("main,", "ablation,")}\n`);
    assert.deepEqual(two.map((r) => r.table), ["main", "ablation"]);
    const cases: [string, RegExp][] = [
      // A misspelt column would leave every value of it blank in the tables without a word.
      [
        `${head.replace("glue_avg", "glue_average")}\n${good}\n`,
        /:1: header columns: missing glue_avg; unknown glue_average/,
      ],
      [
        `${head}\n${good}\nmain,t5-v1_1-base,Adapter,adapter,"86,5",,,,,,src\n`,
        /:3: column glue_avg: must be blank or a number .*"86,5"/,
      ],
      [
        `${head}\n${good}\nmain,t5-v1_1-base,Adapter,adapter,86.5%,,,,,,src\n`,
        /:3: column glue_avg: .*"86\.5%"/,
      ],
      [
        `${head}\n${good}\nmain,t5-v1_1-base,Adapter,adapter,0.865,,0.98,,,,src\n`,
        /:3: column params_ratio: .*\[1, Infinity\].*"0\.98"/,
      ],
      [
        `${head}\n${good}\nmain,t5-v1_1-base,Adapter,adapterr,,,,,,,src\n`,
        /:3: column method_name: "adapterr" is not a method/,
      ],
      [
        `${head}\n${good}\nmain,t5-v11-base,Adapter,adapter,,,,,,,src\n`,
        /:3: column model: "t5-v11-base" is not a preset/,
      ],
      [
        `${head}\n${good}\nmain,t5-v1_1-base,Adapter,adapter,86.5,,,,,, \n`,
        /:3: column source: is blank/,
      ],
      [
        `${head}\nmain,"a\nb",X,mtl,,,,,,,s\nmain,t5-v1_1-base,Adapter,adapter,x,,,,,,src\n`,
        /:2: column model: "a\nb" is not a preset/,
      ],
      [
        `${head}\n${good}\n${good.replace("85.1", "85.2")}\n`,
        /:3: column method: table "main", model "t5-v1_1-base", method "MTL" is also on line 2/,
      ],
      // Without its table a row could be matched to another table's runs.
      [
        `${head}\n${good}\nmain_results,t5-v1_1-base,Adapter,adapter,,,,,,,src\n`,
        /:3: column table: "main_results" is not a table; known: main, ablation, frozen, abstract/,
      ],
      [
        `${head}\n${good}\nmain,t5-base,HyperFormer++,hyperformer_pp,,,1.02,,0.29,frozen,src\n`,
        /:3: column freeze_backbone: must be blank, false, all or except_layer_norms, got "frozen"/,
      ],
      // What a trained-per-task % counts depends on what the setting trained of the backbone.
      [
        `${head}\n${good}\nmain,t5-base,HyperFormer++,hyperformer_pp,,,1.02,,0.29,,src\n`,
        /:3: column freeze_backbone: is blank beside a trained_per_task_pct/,
      ],
      [
        `${head}\n${good}\nmain,t5-v1_1-base,Adapter,adapter\n`,
        /main_table\.csv: Invalid Record Length/,
      ],
    ];
    for (const [text, re] of cases) {
      await assert.rejects(() => read(text), (e: Error) => {
        assert.match(e.message, re);
        assert.ok(e.message.startsWith(`${file}:`), e.message);
        return true;
      });
    }
    // A record spanning lines is named by its first line.
    await assert.rejects(
      () => read(`${head}\n${good}\nmain,t5-v1_1-base,Adapter,adapter,x,,,,,,"two\nlines"\n`),
      /:3: column glue_avg/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("scoresTable() averages seeds per task and benchmark and joins the paper rows", async () => {
  const rs = await runs([0, 1].flatMap((seed) => [
    spec("paper-base", "t5-v1_1-base", "hyperprompt_global", "HyperPrompt", seed, "glue"),
    spec("paper-base", "t5-v1_1-base", "hyperprompt_global", "HyperPrompt", seed, "super_glue"),
  ]));
  const t = scoresTable(rs, readPaperTable());
  assert.equal(t.length, 2);
  const [head, row] = t as [string[], (string | number)[]];
  const col = (n: string) => row[head.indexOf(n)];
  assert.equal(col("seeds"), 2);
  const rte = (rs[0]!.best["rte"]!.groupScore + rs[2]!.best["rte"]!.groupScore) / 2;
  assert.equal(col("glue/rte"), Math.round(rte * 100) / 100);
  const g = [rs[0]!.averages.glue!, rs[2]!.averages.glue!];
  const sd = Math.abs(g[0]! - g[1]!) / Math.SQRT2;
  // 2 of the 8 GLUE tasks: a partial mean, not in the column of the paper's 8-task average.
  assert.equal(col("glue_tasks"), 2);
  assert.equal(col("glue_avg"), "");
  assert.equal(col("glue_std"), "");
  assert.equal(col("glue_partial_avg"), Math.round(((g[0]! + g[1]!) / 2) * 100) / 100);
  assert.equal(col("glue_partial_std"), Math.round(sd * 100) / 100);
  assert.equal(col("super_glue_tasks"), 1);
  assert.equal(col("paper_glue_avg"), "");
  assert.match(String(col("paper_source")), /not retrieved/);
  assert.match(String(col("config")), /^glue:[0-9a-f]{12} super_glue:[0-9a-f]{12}$/);
  assert.match(
    toCsv(t).split("\n")[0]!,
    /^profile,model,backbone,method,method_name,seeds,glue\/cola,glue\/rte,super_glue\/cb,glue_tasks,glue_avg,glue_std,glue_partial_avg,glue_partial_std,glue_best_step_avg,super_glue_tasks,super_glue_avg,super_glue_std,super_glue_partial_avg,super_glue_partial_std,super_glue_best_step_avg,glue_params_ratio,/,
  );
});

Deno.test("toCsv() quotes every field a CSV reader would split: comma, quote, LF and a bare CR", () => {
  const row = ["a,b", 'q"x', "l\nm", "cr\rx", "crlf\r\ny", "plain", 1.5, ""];
  const csv = toCsv([["h1", "h2", "h3", "h4", "h5", "h6", "h7", "h8"], row]);
  // A bare CR unquoted ends the record for readers that accept CR line ends (csv-parse's
  // auto-detection, Excel) and is an error for Python's csv module ("new-line character seen in
  // unquoted field"): a label holding one must be quoted like one holding LF.
  assert.ok(csv.includes('"cr\rx"'), JSON.stringify(csv));
  const back = parse(csv) as string[][];
  assert.equal(back.length, 2, JSON.stringify(back));
  assert.deepEqual(back[1], row.map(String));
});

Deno.test("paramsTable() has analytic rows for every published size reproducing HyperFormer++ 0.29%", async () => {
  const acc = await loadAccounting();
  assert.ok(acc, "model/methods/accounting.ts should load");
  const t = paramsTable([], readPaperTable(), acc);
  const head = t[0] as string[];
  assert.equal(head[2], "backbone");
  const row = t.find((r) =>
    r[1] === "t5-base" && r[3] === "hyperformer_pp (frozen except layer norms)"
  )!;
  assert.equal(row[2], "", "analytic rows have no backbone");
  assert.equal(row[head.indexOf("extra")], 5_163_440); // spec §5.3
  assert.equal(row[head.indexOf("trained")], 5_211_056);
  assert.equal(row[head.indexOf("trained_per_task_pct")], 0.2922);
  assert.equal(row[head.indexOf("paper_trained_per_task_pct")], "0.29");
  // The paper's 0.29 % trains the backbone's layer norms only: beside the default HyperFormer++
  // row, which trains the whole backbone (12.79 % per task), it would compare unlike settings.
  // The ratio of totals does not depend on what is trained and stays.
  const full = t.find((r) => r[1] === "t5-base" && r[3] === "hyperformer_pp")!;
  assert.equal(full[head.indexOf("trained_per_task_pct")], 12.7896);
  assert.equal(full[head.indexOf("paper_trained_per_task_pct")], "");
  assert.equal(full[head.indexOf("paper_ratio")], "1.02");
  assert.equal(row[head.indexOf("paper_ratio")], "1.02");
  // The "(frozen)" row trains the task-conditioned parameters only (freezeBackbone "all"): not
  // the setting of the paper's 0.29 %, so that % is not beside it; its ratio still is.
  const all = t.find((r) => r[1] === "t5-base" && r[3] === "hyperformer_pp (frozen)")!;
  assert.equal(all[head.indexOf("trained")], all[head.indexOf("extra")]);
  assert.equal(all[head.indexOf("paper_trained_per_task_pct")], "");
  assert.equal(all[head.indexOf("paper_ratio")], "1.02");
  // 8 methods at their defaults, 5 frozen ("all") and HyperFormer++ frozen except layer norms.
  assert.equal(t.filter((r) => r[0] === "analytic" && r[1] === "t5-v1_1-xxl").length, 14);
  // A figure the row reproduces at the paper's precision (HyperFormer++: 1.0232 is 1.02, 0.2922
  // is 0.29) is shown as it is; one it does not (HyperPrompt-Global's default: 1.0132 is 1.01,
  // not the ablation's 1.02) is said in paper_row.
  const paperRow = (r: (string | number)[]) => String(r[head.indexOf("paper_row")]);
  for (const r of [row, full, all]) assert.doesNotMatch(paperRow(r), /differs/);
  const hp = t.find((r) => r[1] === "t5-v1_1-base" && r[3] === "hyperprompt_global")!;
  assert.equal(hp[head.indexOf("ratio")], 1.0132);
  assert.equal(hp[head.indexOf("paper_ratio")], "1.02");
  assert.match(paperRow(hp), /^ablation: .*; differs: ratio 1\.01 here at 2 decimals, not 1\.02$/);
  assert.equal(t.filter((r) => /differs/.test(paperRow(r))).length, 2, "Global and its frozen row");
});

Deno.test("params.csv's analytic frozen rows count what the ablation profile's frozen runs train", async () => {
  const acc = await loadAccounting();
  const t = paramsTable([], readPaperTable(), acc);
  const head = t[0] as string[];
  const col = (r: (string | number)[], n: string) => r[head.indexOf(n)];
  const analytic = (model: string, label: string) => {
    const found = t.filter((r) =>
      col(r, "source") === "analytic" && r[1] === model && r[3] === label
    );
    assert.equal(found.length, 1, `${model} ${label}`);
    return found[0]!;
  };
  // The ablation's frozen runs as the runner expands them, counted as run_one.ts counts a run
  // (methodAccounting at its model, method configuration and number of trained tasks).
  const grid = expandGrid(await loadProfile("ablation"), {
    dataDir: "unused",
    catalog: { benchmarkTasks: (b) => BENCHMARK_TASKS[b], isAvailable: () => true },
  });
  const checked: string[] = [];
  for (
    const [label, method] of [
      ["HyperPrompt-Global (frozen)", "hyperprompt_global"],
      ["HyperFormer++ (frozen)", "hyperformer_pp"],
    ] as const
  ) {
    const s = grid.find((s) => s.method.label === label && s.benchmark === "glue");
    assert.ok(s, `ablation.json has no ${label} GLUE run`);
    assert.equal(s.method.name, method);
    assert.equal(trainedTasks(s).length, 8, "the analytic rows count 8 tasks, as a GLUE run");
    // A preset's name (the run loads that size's checkpoint, `backbone`), so its counts are the
    // preset's.
    assert.ok(typeof s.model === "string" && s.model in PRESETS, JSON.stringify(s.model));
    const model = s.model as keyof typeof PRESETS;
    const run = acc(PRESETS[model], s.method.name, s.method.config, trainedTasks(s).length);
    const row = analytic(model, `${method} (frozen)`);
    assert.equal(col(row, "trained"), run.trained, `${label}: trained`);
    assert.equal(col(row, "extra"), run.extra, `${label}: extra`);
    assert.equal(col(row, "trained_per_task_pct"), roundHalfAway(run.trainedPerTaskPct, 4));
    checked.push(label);
  }
  assert.equal(checked.length, 2);
  // The except-layer-norms row trains the same extra parameters plus T5's layer-norm scales
  // (what MTL trains with that freezing), so the two rows cannot be confused.
  const base = PRESETS["t5-v1_1-base"];
  const norms = acc(base, "mtl", { freezeBackbone: "except_layer_norms" }, 8).trained;
  assert.ok(norms > 0);
  const frozen = analytic("t5-v1_1-base", "hyperformer_pp (frozen)");
  const exceptNorms = analytic("t5-v1_1-base", "hyperformer_pp (frozen except layer norms)");
  assert.equal(Number(col(exceptNorms, "trained")) - Number(col(frozen, "trained")), norms);
  assert.equal(col(exceptNorms, "extra"), col(frozen, "extra"));
});

Deno.test("params.csv takes the paper's figures from the row of the same table, model, label and method, at its configuration", async () => {
  const l4 = { length: 4 };
  const base = "t5-v1_1-base";
  const rs = await runs([
    spec8("ablation", base, "hyperprompt_global", "HyperPrompt-Global", 0, "glue"),
    // An ablation run at another setting, labelled as such or as the paper's row.
    spec8("ablation", base, "hyperprompt_global", "HyperPrompt-Global l=4", 0, "glue", "random", {
      method: { name: "hyperprompt_global", label: "HyperPrompt-Global l=4", config: l4 },
    }),
    spec8("ablation", base, "hyperprompt_global", "HyperPrompt-Global", 0, "super_glue", "random", {
      method: { name: "hyperprompt_global", label: "HyperPrompt-Global", config: l4 },
    }),
    // The main results' HyperPrompt is hyperprompt_global too: not the ablation's 1.02.
    spec8("paper-base", base, "hyperprompt_global", "HyperPrompt", 0, "glue"),
    // Another method under the ablation's label.
    spec8("ablation", base, "hyperprompt_share", "HyperPrompt-Global", 0, "glue"),
    // HyperFormer++'s own paper, T5 1.0 Base: its run at the frozen setting gets both figures.
    spec8("mine", "t5-base", "hyperformer_pp", "HyperFormer++", 0, "glue", "random", {
      method: {
        name: "hyperformer_pp",
        label: "HyperFormer++",
        config: { freezeBackbone: "except_layer_norms" },
      },
    }),

    // The same on two GLUE tasks (fakeSpec's): counted for 2 tasks, not the paper's 8, so none.
    spec("mine-two", "t5-base", "hyperformer_pp", "HyperFormer++", 0, "glue", "random", {
      method: {
        name: "hyperformer_pp",
        label: "HyperFormer++",
        config: { freezeBackbone: "except_layer_norms" },
      },
    }),
  ]);
  const acc = await loadAccounting();
  const t = paramsTable(rs, readPaperTable(), acc);
  const head = t[0] as string[];
  const col = (r: (string | number)[], n: string) => r[head.indexOf(n)];
  const run = (i: number) =>
    t.find((r) => col(r, "source") !== "analytic" && col(r, "config") === configId(rs[i]!.spec))!;
  const analytic = (model: string, label: string) =>
    t.find((r) => col(r, "source") === "analytic" && r[1] === model && r[3] === label)!;
  const figures = (r: (string | number)[]) =>
    ["paper_ratio", "paper_extra_pct", "paper_trained_per_task_pct"].map((n) => col(r, n));

  assert.deepEqual(figures(run(0)), ["1.02", "", ""]);
  // (The fake's counts do not reproduce the figure: said after the row's name.)
  assert.match(
    String(col(run(0), "paper_row")),
    new RegExp(
      `^ablation: ${base} HyperPrompt-Global; differs: ratio \\d\\.\\d\\d here at 2 decimals, not 1\\.02$`,
    ),
  );
  assert.match(String(col(run(0), "paper_source")), /§4\.5 ablation/);
  // Length 4 is not the setting the paper's 1.02 was counted at, under either label.
  assert.deepEqual(figures(run(1)), ["", "", ""]);
  assert.equal(col(run(1), "paper_row"), "");
  assert.deepEqual(figures(run(2)), ["", "", ""]);
  assert.equal(col(run(2), "paper_source"), "");
  assert.match(
    String(col(run(2), "paper_row")),
    /^none: paper row ablation: t5-v1_1-base HyperPrompt-Global is of hyperprompt_global's default configuration \(\d+ extra parameters at 8 tasks\); this row's configuration counts \d+$/,
  );
  assert.deepEqual(figures(run(3)), ["", "", ""]);
  assert.equal(col(run(3), "paper_row"), `main: ${base} HyperPrompt`);
  assert.deepEqual(figures(run(4)), ["", "", ""]);
  assert.match(
    String(col(run(4), "paper_row")),
    /^none: .* is hyperprompt_global, not hyperprompt_share/,
  );
  assert.deepEqual(figures(run(5)), ["1.02", "", "0.29"]);
  assert.match(
    String(col(run(5), "paper_row")),
    /^other_paper: t5-base HyperFormer\+\+(; differs: [^;]*)?$/,
  );
  const two = t.find((r) => col(r, "source") === "run:mine-two/glue")!;
  assert.equal(col(two, "num_tasks"), 2);
  assert.deepEqual(figures(two), ["", "", ""]);
  assert.equal(
    col(two, "paper_row"),
    "none: paper row other_paper: t5-base HyperFormer++ counts 8 tasks; this row's parameters " +
      "are of 2",
  );

  // Analytic rows carry a registry key, not a paper label: matched by model and method. At T5
  // 1.1 Base the main results' HyperPrompt and the ablation's HyperPrompt-Global both are
  // hyperprompt_global; only the ablation's gives a parameter figure, so it is taken.
  const g = analytic(base, "hyperprompt_global");
  assert.deepEqual(figures(g), ["1.02", "", ""]);
  assert.equal(
    col(g, "paper_row"),
    `ablation: ${base} HyperPrompt-Global (also matched, without a figure here: main: ${base} ` +
      "HyperPrompt); differs: ratio 1.01 here at 2 decimals, not 1.02",
  );
  const share = analytic(base, "hyperprompt_share");
  assert.equal(col(share, "paper_row"), `ablation: ${base} HyperPrompt-Share`);
  assert.match(String(col(share, "paper_source")), /not retrieved/);
  // The deliberate case: the analytic HyperFormer++ frozen except its layer norms on T5 1.0 Base
  // gets another paper's 0.29 % (its freeze_backbone), the fully frozen and the default one only
  // the ratio.
  assert.deepEqual(
    figures(analytic("t5-base", "hyperformer_pp (frozen except layer norms)")),
    ["1.02", "", "0.29"],
  );
  assert.equal(
    col(analytic("t5-base", "hyperformer_pp (frozen except layer norms)"), "paper_row"),
    "other_paper: t5-base HyperFormer++",
  );
  assert.deepEqual(figures(analytic("t5-base", "hyperformer_pp (frozen)")), ["1.02", "", ""]);
  assert.deepEqual(figures(analytic("t5-base", "hyperformer_pp")), ["1.02", "", ""]);
  assert.deepEqual(figures(analytic("t5-v1_1-large", "hyperprompt_global")), ["", "", ""]);
});

Deno.test("of several matching paper rows, the one with a figure is taken; differing figures are ambiguous", () => {
  const base = "t5-v1_1-base";
  const row = (table: string, method: string, ratio: string, glue = ""): PaperRow => ({
    table,
    model: base,
    method,
    method_name: "hyperprompt_global",
    glue_avg: glue,
    super_glue_avg: "",
    params_ratio: ratio,
    extra_pct: "",
    trained_per_task_pct: "",
    freeze_backbone: "",
    source: `${table} ${method}`,
  });
  const analytic = {
    analytic: true,
    model: base,
    label: "x",
    method: "hyperprompt_global",
    tasks: 8,
  } as const;
  const match = (paper: PaperRow[]) => paramsPaperMatch(paper, { ...analytic, config: {} });
  // One of two with a figure: that one, the other named.
  const one = match([
    row("main", "HyperPrompt", ""),
    row("ablation", "HyperPrompt-Global", "1.02"),
  ]);
  assert.equal(one.row?.table, "ablation");
  assert.equal(
    one.note,
    `ablation: ${base} HyperPrompt-Global (also matched, without a figure here: main: ${base} ` +
      "HyperPrompt)",
  );
  // Two with different figures: neither.
  const two = match([
    row("main", "HyperPrompt", "1.03"),
    row("ablation", "HyperPrompt-Global", "1.02"),
  ]);
  assert.equal(two.row, undefined);
  assert.equal(
    two.note,
    `ambiguous: paper rows main: ${base} HyperPrompt and ablation: ${base} HyperPrompt-Global ` +
      "match with different figures; all are hyperprompt_global at this size",
  );
  // Two that agree (or both blank): the first, both named.
  const same = match([
    row("main", "HyperPrompt", "1.02"),
    row("ablation", "HyperPrompt-G", "1.02"),
  ]);
  assert.equal(same.row?.table, "main");
  assert.match(
    same.note,
    /^main: .* HyperPrompt and ablation: .* HyperPrompt-G \(the same figures\)$/,
  );
  const blank = match([row("main", "HyperPrompt", ""), row("ablation", "HyperPrompt-G", "")]);
  assert.equal(blank.row?.table, "main");
  assert.match(blank.note, /\(none with a figure here\)$/);
  // Only the figures the table takes count: a GLUE average does not choose a params.csv row,
  // while scores.csv (paperMatch, a user's profile: both tables) takes the row that has one.
  const byScore = match([
    row("main", "HyperPrompt", "", "86.8"),
    row("ablation", "HyperPrompt-Global", "1.02"),
  ]);
  assert.equal(byScore.row?.table, "ablation");
  const scores = paperMatch(
    [row("main", "HyperPrompt", "", "86.8"), row("ablation", "HyperPrompt", "1.02")],
    { profile: "mine", model: base, label: "HyperPrompt", method: "hyperprompt_global" },
  );
  assert.equal(scores.row?.table, "main");
  assert.match(scores.note, /^main: .* \(also matched, without a figure here: ablation: .*\)$/);
});

Deno.test("deno task tables on the ci baseline: params.csv shows the ablation's 1.02 beside HyperPrompt-Global at Base", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const runs = fileURLToPath(new URL("../results/baselines/ci", import.meta.url));
    assert.equal(await main(["--runs", runs, "--out", dir], { log: () => {} }), 0);
    const rows = parse(Deno.readTextFileSync(join(dir, "params.csv")), {
      columns: true,
    }) as Record<string, string>[];
    for (const label of ["hyperprompt_global", "hyperprompt_global (frozen)"]) {
      const r = rows.find((r) =>
        r.source === "analytic" && r.model === "t5-v1_1-base" && r.method === label
      );
      assert.ok(r, label);
      assert.equal(r.paper_ratio, "1.02", label);
      assert.match(r.paper_row!, /^ablation: t5-v1_1-base HyperPrompt-Global \(also matched/);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ablationTable() and scoresTable() order one method's rows by label with numbers by value (the length study: l=4, l=32, l=64, l=100)", async () => {
  const rs = await runs(
    [100, 4, 64, 32].map((l) =>
      spec("ablation", "tiny-v1_1", "hyperprompt_global", `HyperPrompt-Global l=${l}`, 0, "glue")
    ),
  );
  const want = [4, 32, 64, 100].map((l) => `HyperPrompt-Global l=${l}`);
  for (const t of [ablationTable(rs, []), scoresTable(rs, [])]) {
    const at = (t[0] as string[]).indexOf("method");
    assert.deepEqual(t.slice(1).map((r) => r[at]), want);
  }
  // The plots' legends too.
  for (const svg of [scoreVsParamsSvg(rs), attentionMassSvg(rs)]) {
    const first = want.map((w) => svg.indexOf(`${w} `));
    assert.ok(first.every((i) => i >= 0), svg.slice(0, 300));
    assert.deepEqual([...first].sort((a, b) => a - b), first);
  }
});

Deno.test("ablationTable() states the seeds averaged and their std, as scores.csv does", async () => {
  const rs = await runs(
    [0, 1, 2].map((seed) =>
      spec("ablation", "tiny-v1_1", "hyperprompt_global", "HyperPrompt-Global", seed, "glue")
    ),
  );
  const t = ablationTable(rs, []);
  const [head, row] = t as [string[], (string | number)[]];
  const col = (n: string) => row[head.indexOf(n)];
  const s = scoresTable(rs, []);
  const scol = (n: string) => s[1]![(s[0] as string[]).indexOf(n)];
  const xs = rs.map((r) => r.averages.glue!);
  const m = xs.reduce((a, b) => a + b, 0) / 3;
  const sd = Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / 2);
  assert.equal(col("seeds"), 3);
  assert.equal(col("glue_partial_avg"), Math.round(m * 100) / 100);
  assert.equal(col("glue_partial_std"), Math.round(sd * 100) / 100);
  assert.equal(col("glue_partial_std"), scol("glue_partial_std"));
  assert.equal(col("glue_std"), "");
  assert.equal(col("super_glue_partial_std"), "");
});

Deno.test("paramsTable() shows a paper trained-per-task % only beside a run of its freezeBackbone", async () => {
  const frozen = { freezeBackbone: "except_layer_norms" };
  const rs = await runs([
    spec8("p", "tiny-v1_1", "hyperformer_pp", "HyperFormer++", 0, "glue"),
    spec8("p", "tiny-v1_1", "hyperformer_pp", "HyperFormer++", 0, "glue", "random", {
      method: { name: "hyperformer_pp", label: "HyperFormer++", config: frozen },
    }),
  ]);
  const paper: PaperRow[] = [{
    table: "main",
    model: "tiny-v1_1",
    method: "HyperFormer++",
    method_name: "hyperformer_pp",
    glue_avg: "",
    super_glue_avg: "",
    params_ratio: "1.5",
    extra_pct: "",
    trained_per_task_pct: "0.5",
    freeze_backbone: "except_layer_norms",
    source: "a test row",
  }];
  const t = paramsTable(rs, paper);
  const head = t[0] as string[];
  // The two configurations of one label are two rows, told apart by their config cell.
  const cell = (run: number, col: string) =>
    t.find((r) => r[head.indexOf("config")] === configId(rs[run]!.spec))![head.indexOf(col)];
  assert.equal(t.length, 3);
  assert.equal(cell(0, "paper_ratio"), "1.5");
  assert.equal(cell(0, "paper_trained_per_task_pct"), "");
  assert.equal(cell(1, "paper_ratio"), "1.5");
  assert.equal(cell(1, "paper_trained_per_task_pct"), "0.5");
  assert.match(
    String(cell(1, "paper_row")),
    /^main: tiny-v1_1 HyperFormer\+\+(; differs: [^;]*)?$/,
  );
});

Deno.test("paramsTable() counts a run's train-only tasks (DPR) in num_tasks as its parameters are: not when DPR shares WSC's id", async () => {
  const rs = await runs([
    spec("p", "tiny-v1_1", "adapter", "Vanilla Adapter", 0, "super_glue"),
    spec("p", "tiny-v1_1", "adapter", "Vanilla Adapter", 0, "super_glue", "random", {
      trainOnlyTasks: ["dpr"],
    }),
    spec("p", "tiny-v1_1", "adapter", "Vanilla Adapter", 0, "super_glue", "random", {
      tasks: ["cb", "wsc"],
      trainOnlyTasks: ["dpr"],
    }),
  ]);
  const t = paramsTable(rs, []);
  const head = t[0] as string[];
  const cell = (run: number, col: string) =>
    t.find((r) => r[head.indexOf("config")] === configId(rs[run]!.spec))![head.indexOf(col)];
  // CB alone, then CB and DPR: run_one counts a method's per-task variables for both.
  assert.equal(cell(0, "num_tasks"), 1);
  assert.equal(cell(1, "num_tasks"), 2);
  // CB and WSC with DPR: DPR trains WSC's task variables, so two tasks' worth.
  assert.equal(cell(2, "num_tasks"), 2);
});

Deno.test("ablationTable() reports parameters relative to MTL; attention rows per layer", async () => {
  const rs = await runs([
    spec("ablation", "tiny-v1_1", "mtl", "MTL", 0, "glue"),
    spec("ablation", "tiny-v1_1", "hyperprompt_global", "HyperPrompt-Global", 0, "glue"),
    spec("smoke", "tiny-v1_1", "mtl", "mtl", 0, "glue"),
  ]);
  const t = ablationTable(rs, readPaperTable());
  assert.equal(t.length, 3);
  // Column names are unique (a CSV reader keys columns by name).
  assert.equal(new Set(t[0]!).size, t[0]!.length, t[0]!.join());
  assert.ok(t[0]!.includes("method_config") && t[0]!.includes("config"));
  const hp = t.find((r) => r[3] === "HyperPrompt-Global")!;
  const ratio = rs[1]!.params.total / rs[0]!.params.total;
  assert.equal(hp[2], "random");
  assert.equal(hp[t[0]!.indexOf("glue_params_x_mtl")], `${ratio.toFixed(3)}x`);
  assert.equal(hp[t[0]!.indexOf("super_glue_params_x_mtl")], "", "no SuperGLUE run");
  const a = attentionTable(rs);
  assert.equal(a.length, 1 + 2 * 2 * 2); // 2 tasks x 2 stacks x 2 layers, prompt method only
  // The label and the method, as in the other tables (a label need not name its method).
  assert.deepEqual(a[1]!.slice(0, 9), [
    "ablation",
    "tiny-v1_1",
    "random",
    "HyperPrompt-Global",
    "hyperprompt_global",
    "glue",
    "cola",
    "encoder",
    0,
  ]);
  const svg = scoreVsParamsSvg(rs);
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.equal(svg.match(/<circle [^>]*><title>/g)?.length, 3);
  assert.equal(attentionMassSvg(rs).match(/<polyline /g)?.length, 1);
  assert.match(attentionMassSvg([]), /no data/);
  const undefinedScore = { ...rs[0]!, averages: { glue: NaN } };
  const svg2 = scoreVsParamsSvg([undefinedScore, rs[1]!]);
  assert.equal(svg2.match(/<circle [^>]*><title>/g)?.length, 1);
  assert.doesNotMatch(svg2, /NaN/);
});

Deno.test("scoresTable() puts a method's pretrained and random rows side by side (backbone column)", async () => {
  const cells: RunSpec[] = [];
  for (const bb of ["random", "pretrained"] as const) {
    for (const [name, label] of [["hyperprompt_global", "hp"], ["mtl", "mtl"]] as const) {
      cells.push(spec("smoke", "mini-v1_1", name, label, 0, "glue", bb));
    }
  }
  const rs = await runs(cells);
  const t = scoresTable(rs, readPaperTable());
  const head = t[0] as string[];
  const at = (n: string) => head.indexOf(n);
  assert.deepEqual(
    t.slice(1).map((r) => [r[at("method")], r[at("backbone")]]),
    [["mtl", "pretrained"], ["mtl", "random"], ["hp", "pretrained"], ["hp", "random"]],
  );
  const pre = rs.find((r) => r.spec.backbone === "pretrained" && r.spec.method.label === "mtl")!;
  const row = t.find((r) => r[at("backbone")] === "pretrained" && r[at("method")] === "mtl")!;
  assert.equal(row[at("glue_partial_avg")], Math.round(pre.averages.glue! * 100) / 100);
  for (const table of [paramsTable(rs, []), attentionTable(rs)]) {
    const h = table[0] as string[];
    assert.equal(h[2], "backbone");
    const bbs = new Set(table.slice(1).map((r) => r[2]));
    assert.ok(bbs.has("pretrained") && bbs.has("random"), `${h.join(",")}: ${[...bbs]}`);
  }
});

Deno.test("scoresTable() never pools configurations: an edited profile's stale runs get their own row", async () => {
  // The same cell (profile, model, method, backbone, benchmark) at steps 4 (2 seeds) and at
  // steps 8 (1 seed, e.g. after a profile edit; the old files stay in the folder).
  const mk = (seed: number, steps: number) =>
    spec("ci", "tiny-v1_1", "mtl", "mtl", seed, "super_glue", "pretrained", {
      train: { ...DEFAULT_TRAIN, steps, evalEvery: 2 },
    });
  const rs = await runs([mk(0, 4), mk(1, 4), mk(0, 8)]);
  const t = scoresTable(rs, []);
  const head = t[0] as string[];
  const at = (n: string) => head.indexOf(n);
  assert.equal(t.length, 3, "one row per configuration");
  const byConfig = new Map(t.slice(1).map((r) => [r[at("config")], r]));
  const old = byConfig.get(`super_glue:${configId(rs[0]!.spec)}`)!;
  const now = byConfig.get(`super_glue:${configId(rs[2]!.spec)}`)!;
  assert.equal(configId(rs[0]!.spec), configId(rs[1]!.spec), "seeds share a configuration");
  assert.equal(old[at("seeds")], 2);
  assert.equal(now[at("seeds")], 1, "seeds = the runs actually averaged");
  assert.equal(now[at("super_glue_partial_std")], "", "no std over one run");
  const r2 = (x: number) => roundHalfAway(x, 2);
  assert.equal(now[at("super_glue_partial_avg")], r2(rs[2]!.averages.super_glue!));
  assert.equal(
    old[at("super_glue_partial_avg")],
    r2((rs[0]!.averages.super_glue! + rs[1]!.averages.super_glue!) / 2),
  );
  // Params and FLOPs rows are per configuration too.
  const params = paramsTable(rs, []);
  assert.equal(params.length, 3);
  assert.deepEqual(
    params.slice(1).map((r) => r.at(-1)).sort(),
    [configId(rs[0]!.spec), configId(rs[2]!.spec)].sort(),
  );
  assert.equal(flopsTable(rs).length, 3);
});

Deno.test("tables reject two results of one run, naming both files", async () => {
  const [a, b] = await runs([
    spec("ci", "tiny-v1_1", "mtl", "mtl", 0, "glue"),
    spec("ci", "tiny-v1_1", "mtl", "mtl", 1, "glue"),
  ]);
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(join(dir, "a.json"), JSON.stringify(a));
  await Deno.writeTextFile(join(dir, "b.json"), JSON.stringify(b));
  await Deno.writeTextFile(join(dir, "copy-of-a.json"), JSON.stringify(a));
  const loaded = await loadResults(dir);
  assert.throws(
    () => scoresTable(loaded, []),
    (e: unknown) =>
      e instanceof Error &&
      e.message ===
        `Two results for the same run id ${a!.spec.id}: ${join(dir, "a.json")} and ${
          join(dir, "copy-of-a.json")
        }; remove one (a copy, or a rerun into another folder)`,
  );
  await assert.rejects(
    () => writeTables(dir, join(dir, "tables"), { accounting: null }),
    /Two results for the same run id .*a\.json and .*copy-of-a\.json/,
  );
  assert.equal(await pathExists(join(dir, "tables")), false, "no output folder is created");
  // Same configuration and seed under another id (a hand-edited file): also rejected.
  const relabelled = { ...a!, spec: { ...a!.spec, id: "000000000000" } };
  assert.throws(
    () => scoresTable([a!, relabelled], []),
    /Two results for the same configuration [0-9a-f]{12} and seed 0: the result of run/,
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("scoresTable() fills the full average and the paper column only when all 8 tasks ran", async () => {
  const full = hpGlobalBase("glue", BENCHMARK_TASKS.glue);
  const part = hpGlobalBase("super_glue", ["cb", "rte_sg"]);
  const rs = await runs([full, part]);
  const paper: PaperRow[] = [HP_GLOBAL_BASE_ROW];
  const t = scoresTable(rs, paper);
  assert.equal(t.length, 2);
  const [head, row] = t as [string[], (string | number)[]];
  const col = (n: string) => row[head.indexOf(n)];
  assert.equal(col("glue_tasks"), 8);
  assert.equal(col("glue_avg"), Math.round(rs[0]!.averages.glue! * 100) / 100);
  assert.equal(col("glue_partial_avg"), "");
  assert.equal(col("paper_glue_avg"), "86.8");
  assert.equal(col("super_glue_tasks"), 2);
  assert.equal(col("super_glue_avg"), "");
  assert.equal(col("super_glue_partial_avg"), Math.round(rs[1]!.averages.super_glue! * 100) / 100);
  assert.equal(col("paper_super_glue_avg"), "", "no paper value next to a partial average");
  const ab = ablationTable(
    rs.map((r) => ({ ...r, spec: { ...r.spec, profile: "ablation" } })),
    paper,
  );
  const ah = ab[0] as string[];
  const arow = ab[1]!;
  assert.equal(arow[ah.indexOf("glue_tasks")], 8);
  assert.equal(arow[ah.indexOf("super_glue_avg")], "");
  assert.equal(arow[ah.indexOf("super_glue_partial_avg")], col("super_glue_partial_avg"));
  assert.equal(arow[ah.indexOf("seeds")], 1);
  assert.equal(arow[ah.indexOf("glue_std")], "", "one seed: no std");
});

Deno.test("scoreVsParamsSvg() keeps configurations apart and labels partial averages", async () => {
  const steps8 = { train: { ...DEFAULT_TRAIN, steps: 8, evalEvery: 4 } };
  const rs = await runs([
    spec("p", "tiny-v1_1", "mtl", "mtl", 0, "glue"),
    spec("p", "tiny-v1_1", "mtl", "mtl", 1, "glue"),
    spec("p", "tiny-v1_1", "mtl", "mtl", 0, "glue", "random", steps8),
  ]);
  const svg = scoreVsParamsSvg(rs);
  // Two configurations: two points (markers with a title), not one mean over all three runs.
  assert.equal(svg.match(/<circle [^>]*><title>/g)?.length, 2);
  const ids = [configId(rs[0]!.spec), configId(rs[2]!.spec)];
  for (const id of ids) assert.match(svg, new RegExp(`config ${id}`));
  // RTE and CoLA of GLUE's 8 tasks: the point says it is a partial average.
  assert.match(svg, /glue 2\/8 tasks/);
  // One configuration: no id in the label.
  assert.doesNotMatch(scoreVsParamsSvg(rs.slice(0, 2)), /config /);
});

Deno.test("attentionMassSvg() keeps configurations and benchmarks apart", async () => {
  const steps8 = { train: { ...DEFAULT_TRAIN, steps: 8, evalEvery: 4 } };
  const hp = (seed: number, b: "glue" | "super_glue", edit = {}) =>
    spec("p", "tiny-v1_1", "hyperprompt_global", "HP", seed, b, "random", edit);
  const rs = await runs([hp(0, "glue"), hp(1, "glue"), hp(0, "glue", steps8), hp(0, "super_glue")]);
  const svg = attentionMassSvg(rs);
  // Two GLUE configurations and SuperGLUE: three lines, not one mean over all four runs.
  assert.equal(svg.match(/<polyline /g)?.length, 3);
  for (const r of rs.slice(1, 3)) assert.match(svg, new RegExp(`config ${configId(r.spec)}`));
  assert.match(svg, /<title>HP tiny-v1_1 random super_glue: /);
  // The legend shows each name whole (wrapped), so the ids that tell the lines apart are there.
  const legend = [...svg.matchAll(/<text [^>]*>((?:<tspan[^>]*>[^<]*<\/tspan>)+)<\/text>/g)]
    .map((m) => m[1]!.replace(/<\/tspan><tspan[^>]*>/g, " ").replace(/<[^>]+>/g, ""))
    .filter((l) => l !== "profile p; model tiny-v1_1"); // the legend's first line: what it shows
  assert.equal(new Set(legend).size, 3);
  for (const r of rs.slice(1, 3)) assert.ok(legend.some((l) => l.endsWith(configId(r.spec))));
  // One configuration per benchmark: no id in the names.
  assert.doesNotMatch(attentionMassSvg([rs[0]!, rs[1]!, rs[3]!]), /config /);
});

/** The SVG's elements named `tag` with their attributes (a small reader for the plot tests). */
function svgElements(svg: string, tag: string): Record<string, string>[] {
  return [...svg.matchAll(new RegExp(`<${tag} ([^>]*?)/?>`, "g"))].map((m) =>
    Object.fromEntries([...m[1]!.matchAll(/([\w-]+)="([^"]*)"/g)].map((a) => [a[1]!, a[2]!]))
  );
}

Deno.test("scoreVsParamsSvg() tells benchmarks and backbones apart in the picture, 0 ticked as 0", async () => {
  const rs = await runs([
    spec("p", "tiny-v1_1", "mtl", "mtl", 0, "glue", "pretrained"),
    spec("p", "tiny-v1_1", "mtl", "mtl", 0, "glue", "random"),
    spec("p", "tiny-v1_1", "mtl", "mtl", 0, "super_glue", "pretrained"),
    spec("p", "tiny-v1_1", "hyperprompt_global", "HP", 0, "super_glue", "random"),
  ]);
  const svg = scoreVsParamsSvg(rs);
  // Each point's marker (the elements with a title) by what its title says it is.
  const marks = [...svg.matchAll(/<(circle|rect) ([^>]*)><title>([^<]*)<\/title>/g)]
    .map((m) => ({ tag: m[1]!, attrs: m[2]!, title: m[3]! }));
  assert.equal(marks.length, 4);
  for (const m of marks) {
    // GLUE a circle, SuperGLUE a square; a random-init backbone hollow, a pretrained one filled.
    assert.equal(m.tag, / glue/.test(m.title) ? "circle" : "rect", m.title);
    assert.equal(/fill="white"/.test(m.attrs), / random /.test(m.title), m.title);
  }
  // The legend explains both.
  for (const key of ["GLUE average", "SuperGLUE average", "hollow: random backbone"]) {
    assert.match(svg, new RegExp(`>${key}<`));
  }
  // MTL's 0 % sits at the log axis's left edge, and that tick reads 0 (not a tenth of the least
  // positive x, where nothing is).
  const leftTick = svgElements(svg, "text").findIndex((a) => a["x"] === "60.0");
  assert.ok(leftTick >= 0);
  assert.match(svg, /<text x="60\.0" y="364" text-anchor="middle">0<\/text>/);
  assert.match(svg, /0 drawn at the left edge/);
  // The y axis says the scale and that the averages are over a task subset (2 of 8 here).
  assert.match(svg, /average score \(0-100; some over a task subset\)/);
});

Deno.test("attentionMassSvg(): 21 lines stay apart by colour or dash; whole layers; 0-1 axis; legend inside", async () => {
  const labels = Array.from({ length: 21 }, (_, i) => `HyperPrompt-Global variant ${i}`);
  const rs = await runs(
    labels.map((l) => spec("p", "tiny-v1_1", "hyperprompt_global", l, 0, "glue")),
  );
  const svg = attentionMassSvg(rs);
  const lines = svgElements(svg, "polyline");
  assert.equal(lines.length, 21);
  const styles = lines.map((a) => `${a["stroke"]} ${a["stroke-dasharray"] ?? ""}`);
  assert.equal(new Set(styles).size, 21, "no two lines look the same");
  // The legend draws each line's style too (a segment), in the same order.
  const keys = svgElements(svg, "line").filter((a) => a["stroke-width"] === "2");
  assert.deepEqual(keys.map((a) => `${a["stroke"]} ${a["stroke-dasharray"] ?? ""}`), styles);
  for (let i = 0; i < 80; i++) {
    for (let j = 0; j < i; j++) {
      assert.notDeepEqual(seriesStyle(i), seriesStyle(j), `series ${i} and ${j}`);
    }
  }
  // Layer ticks are whole numbers (2 encoder + 2 decoder layers here: 0..3), with the decoder's
  // start marked; the mass, a fraction, is drawn on 0..1.
  const ticks = [...svg.matchAll(/<text x="[\d.]+" y="364" text-anchor="middle">([^<]*)<\/text>/g)]
    .map((m) => m[1]);
  assert.deepEqual(ticks, ["0", "1", "2", "3"]);
  assert.match(svg, />decoder</);
  assert.match(svg, /layer \(encoder 0-1, then decoder from 2\)/);
  const yTicks = [...svg.matchAll(/text-anchor="end" dominant-baseline="middle">([^<]*)</g)]
    .map((m) => Number(m[1]));
  assert.deepEqual([Math.min(...yTicks), Math.max(...yTicks)], [0, 1]);
  // 21 legend entries do not fit 400 px: the picture grows to hold them.
  const height = Number(svg.match(/<svg [^>]*height="(\d+)"/)![1]);
  const lastY = Math.max(...svgElements(svg, "text").map((a) => Number(a["y"] ?? 0)));
  assert.ok(height > 400 && lastY < height, `height ${height}, last text at ${lastY}`);
});

Deno.test("scoresTable() orders task columns as the benchmarks do (CoLA, SST-2, ..., RTE), not alphabetically", async () => {
  const rs = await runs([
    spec("p", "tiny-v1_1", "mtl", "mtl", 0, "super_glue", "random", { tasks: ["wic", "cb"] }),
    spec("p", "tiny-v1_1", "mtl", "mtl", 0, "glue", "random", { tasks: ["rte", "sst2", "cola"] }),
  ]);
  const head = scoresTable(rs, [])[0]!;
  const tasks = head.filter((c) => String(c).includes("/"));
  assert.deepEqual(tasks, [
    "glue/cola",
    "glue/sst2",
    "glue/rte",
    "super_glue/cb",
    "super_glue/wic",
  ]);
  assert.deepEqual(
    tasks.filter((c) => String(c).startsWith("glue/")).map((c) => String(c).slice(5)),
    BENCHMARK_TASKS.glue.filter((t) => ["rte", "sst2", "cola"].includes(t)),
  );
});

Deno.test("scoresTable() rows end with the provenance of the runs they average", async () => {
  const rs = await runs([0, 1, 2].flatMap((seed) => [
    spec("paper-base", "t5-v1_1-base", "mtl", "MTL", seed, "glue"),
    ...(seed < 2 ? [spec("paper-base", "t5-v1_1-base", "mtl", "MTL", seed, "super_glue")] : []),
  ]));
  // Seed 1 ran on another tfjs (both benchmarks), its GLUE run from another, dirty tree: pooled
  // in one row (commits and versions are listed, not split; backends and devices are split:
  // the next test).
  rs.forEach((r, i) => {
    if (r.spec.seed !== 1) return;
    const p = r.provenance;
    const tree = r.spec.benchmark === "glue" ? { gitSha: "0123abc", gitDirty: true } : {};
    rs[i] = { ...r, provenance: { ...p, ...tree, tfjs: "other" } };
  });
  for (const t of [scoresTable(rs, []), ablationTable(rs.map((r) => relabel(r)), [])]) {
    const [head, row] = t as [string[], (string | number)[]];
    assert.deepEqual(head.slice(-5), [
      "seed_values",
      "git_commit",
      "backend",
      "device",
      "software",
    ]);
    const col = (n: string) => row[head.indexOf(n)];
    assert.equal(col("seed_values"), "glue:0,1,2 super_glue:0,1");
    assert.equal(col("seeds"), "glue:3 super_glue:2", "seeds per benchmark where they differ");
    assert.equal(col("git_commit"), "0123abc+dirty fake");
    assert.equal(col("backend"), "fake");
    assert.equal(col("device"), "fake");
    const deno = `deno ${Deno.version.deno}`;
    assert.equal(col("software"), `${deno} tfjs fake | ${deno} tfjs other`);
  }
  // One commit; the benchmarks' seeds alike: one value each.
  const [h, r] = scoresTable(rs.filter((x) => x.spec.seed === 0), []) as [string[], unknown[]];
  assert.equal(r[h.indexOf("seed_values")], "0");
  assert.equal(r[h.indexOf("git_commit")], "fake");
  // A run resumed from a checkpoint of other code: that code first (h379: the row claimed the
  // resuming commit alone). Resumed from its own code (no gitSha recorded): as before.
  const seed0 = rs.filter((x) => x.spec.seed === 0).map((x) =>
    x.spec.benchmark === "glue"
      ? {
        ...x,
        provenance: {
          ...x.provenance,
          resumedFrom: { step: 4, gitSha: "6b279ee", gitDirty: true },
        },
      }
      : { ...x, provenance: { ...x.provenance, resumedFrom: { step: 4 } } }
  );
  const [h2, r2] = scoresTable(seed0, []) as [string[], unknown[]];
  assert.equal(r2[h2.indexOf("git_commit")], "6b279ee+dirty->fake fake");
});

Deno.test("a method's GLUE and SuperGLUE runs on other backends or devices are a row each, not joined", async () => {
  const rs = await runs([0, 1].flatMap((seed) => [
    spec("paper-base", "t5-v1_1-base", "mtl", "MTL", seed, "glue"),
    spec("paper-base", "t5-v1_1-base", "mtl", "MTL", seed, "super_glue"),
  ]));
  const rowsOf = (t: (string | number)[][]) => {
    const head = t[0] as string[];
    return t.slice(1).map((row) => (n: string) => row[head.indexOf(n)]);
  };
  // One setup: one row, both benchmarks' averages side by side.
  for (const t of [scoresTable(rs, []), ablationTable(rs.map((r) => relabel(r)), [])]) {
    const [row, ...more] = rowsOf(t);
    assert.equal(more.length, 0);
    assert.match(String(row!("config")), /^glue:\w+ super_glue:\w+$/);
  }
  // SuperGLUE on the GPU (another backend), or on another CPU (another device): a row each,
  // whose provenance is that of its own numbers.
  const cases: [RunResult[], string, string][] = [
    [
      rs.map((r) => r.spec.benchmark === "glue" ? r : on(r, "webgpu", "NVIDIA H100")),
      "webgpu",
      "NVIDIA H100",
    ],
    [rs.map((r) => r.spec.benchmark === "glue" ? r : on(r, "fake", "other")), "fake", "other"],
  ];
  for (const [mixed, backend, device] of cases) {
    for (const t of [scoresTable(mixed, []), ablationTable(mixed.map((r) => relabel(r)), [])]) {
      const [glue, sg, ...more] = rowsOf(t);
      assert.equal(more.length, 0);
      assert.match(String(glue!("config")), /^glue:\w+$/);
      assert.deepEqual([glue!("backend"), glue!("device")], ["fake", "fake"]);
      assert.notEqual(glue!("glue_partial_avg"), "");
      assert.equal(glue!("super_glue_partial_avg"), "");
      assert.match(String(sg!("config")), /^super_glue:\w+$/);
      assert.deepEqual([sg!("backend"), sg!("device")], [backend, device]);
      assert.equal(sg!("glue_partial_avg"), "");
      assert.notEqual(sg!("super_glue_partial_avg"), "");
      assert.equal(sg!("seeds"), 2);
    }
  }
});

Deno.test("seeds of one configuration on other backends or devices are a row each, never averaged", async () => {
  // backend "auto" picks per machine and the config id records only the requested backend: seeds
  // 0 and 2 on the CPU, seed 1 on a GPU, one configuration per benchmark.
  const rs = (await runs([0, 1, 2].flatMap((seed) => [
    spec("ablation", "t5-v1_1-base", "mtl", "MTL", seed, "glue"),
    spec("ablation", "t5-v1_1-base", "mtl", "MTL", seed, "super_glue"),
  ]))).map((r) => r.spec.seed !== 1 ? r : on(r, "webgpu", "NVIDIA H100"));
  const glueAvg = (seeds: number[]) => {
    const xs = rs.filter((r) => r.spec.benchmark === "glue" && seeds.includes(r.spec.seed))
      .map((r) => r.averages.glue!);
    return roundHalfAway(xs.reduce((a, b) => a + b, 0) / xs.length, 2);
  };
  assert.notEqual(glueAvg([0, 2]), glueAvg([0, 1, 2])); // else the pooled row would pass too
  for (const t of [scoresTable(rs, []), ablationTable(rs, [])]) {
    const head = t[0] as string[];
    const rows = t.slice(1).map((row) => (n: string) => row[head.indexOf(n)]);
    // One row per setup, both benchmarks in each (they ran on the same setups), told apart by
    // their backend, device and seeds; each averages its own seeds only.
    assert.deepEqual(
      rows.map((c) => [c("backend"), c("device"), c("seed_values"), c("seeds")]),
      [["fake", "fake", "0,2", 2], ["webgpu", "NVIDIA H100", "1", 1]],
    );
    assert.deepEqual(rows.map((c) => c("glue_partial_avg")), [glueAvg([0, 2]), glueAvg([1])]);
    for (const c of rows) assert.match(String(c("config")), /^glue:\w+ super_glue:\w+$/);
    assert.equal(new Set(rows.map((c) => c("config"))).size, 1);
  }
  // ablation.csv: MTL's two setups are one count, named once as the reference.
  const ab = ablationTable(rs, []);
  const ref = ab[1]![(ab[0] as string[]).indexOf("glue_mtl_reference")];
  assert.match(String(ref), /^MTL \w+$/);
  // flops.csv: a row per setup, each with its own seeds' throughput.
  const flops = flopsTable(rs);
  const fh = flops[0] as string[];
  const glueRows = flops.filter((r) => r[0] === "run:ablation/glue");
  const tps = (seeds: number[]) => {
    const xs = rs.filter((r) => r.spec.benchmark === "glue" && seeds.includes(r.spec.seed));
    const tokens = xs.reduce((a, r) => a + r.trainTokens!, 0);
    return roundHalfAway(tokens / xs.reduce((a, r) => a + r.trainSeconds!, 0), 2);
  };
  assert.deepEqual(
    glueRows.map((r) => ["backend", "device", "tokens_per_second"].map((n) => r[fh.indexOf(n)])),
    [["fake", "fake", tps([0, 2])], ["webgpu", "NVIDIA H100", tps([1])]],
  );
  assert.notEqual(tps([0, 2]), tps([0, 1, 2]));
  // params.csv (counts, no backend column) and attention_mass.csv (no backend column): a row per
  // configuration, not a repeated one per setup.
  assert.equal(paramsTable(rs, []).filter((r) => r[0] === "run:ablation/glue").length, 1);
  const hp = (await runs(
    [0, 1].map((seed) => spec("p", "tiny-v1_1", "hyperprompt_global", "HP", seed, "super_glue")),
  )).map((r, i) => i === 0 ? r : { ...r, provenance: { ...r.provenance, device: "other" } });
  const att = attentionTable(hp);
  const ah = att[0] as string[];
  const keys = att.slice(1).map((r) => JSON.stringify(r.slice(0, ah.indexOf("mass"))));
  assert.equal(new Set(keys).size, keys.length);
  assert.ok(att.slice(1).every((r) => r[ah.indexOf("seeds")] === 2));
});

Deno.test("seeds of one CPU model run with other core or thread counts (shards of another allotment) are one row; flops.csv gives them no combined rate", async () => {
  const cpu = (cores: number, threads: number) =>
    `AMD EPYC 7B13 x${cores} (wasm+blas, ${threads} threads)`;
  const rs =
    (await runs([0, 1, 2].map((seed) => spec("p", "tiny-v1_1", "mtl", "MTL", seed, "glue")))).map((
      r,
    ) => on(r, "wasm+blas", r.spec.seed === 1 ? cpu(1, 1) : cpu(2, 2)));
  const t = scoresTable(rs, []);
  const head = t[0] as string[];
  assert.equal(t.length, 2, "one row");
  const c = (n: string) => t[1]![head.indexOf(n)];
  assert.deepEqual([c("seeds"), c("seed_values")], [3, "0,1,2"]);
  // The device cell still names every description recorded.
  assert.equal(c("device"), `${cpu(1, 1)} | ${cpu(2, 2)}`);
  const f = flopsTable(rs);
  const fh = f[0] as string[];
  const row = f.find((r) => r[0] === "run:p/glue")!;
  assert.deepEqual(
    ["tokens_per_second", "tokens_per_second_from", "wall_seconds"].map((n) => row[fh.indexOf(n)]),
    ["", "none: runs on 2 device descriptions (core or thread counts, adapter details)", ""],
  );
  // Another CPU model is another setup, as before: a row of its own.
  const other = rs.map((r) =>
    r.spec.seed === 2 ? on(r, "wasm+blas", "Intel Xeon x2 (wasm+blas, 2 threads)") : r
  );
  assert.equal(scoresTable(other, []).length, 3);
  assert.equal(setupDevice(cpu(1, 1)), "AMD EPYC 7B13 (wasm+blas)");
  assert.equal(setupDevice("NVIDIA H100 (webgpu)"), "NVIDIA H100 (webgpu)");
  // A hardware adapter's subgroup sizes go; a software adapter's stay (Vulkan's and GL's
  // llvmpipe differ only there).
  assert.equal(
    setupDevice("H100 (vendor nvidia, device 0, subgroups 32-32) (webgpu)"),
    "H100 (vendor nvidia, device 0) (webgpu)",
  );
  const vulkan = "llvmpipe (vendor 65541, device 0, subgroups 8-8, fallback adapter) (webgpu)";
  assert.equal(setupDevice(vulkan), vulkan);
  assert.notEqual(setupDevice(vulkan), setupDevice(vulkan.replace("8-8", "4-128")));
});

/** The result as a run of the `ablation` profile (whose rows ablation.csv shows). */
function relabel(r: RunResult): RunResult {
  return { ...r, spec: { ...r.spec, profile: "ablation" } };
}

Deno.test("tables order models by size (Small, Base, Large, XL), not alphabetically", async () => {
  const models = ["t5-v1_1-xl", "t5-v1_1-small", "t5-v1_1-large", "t5-v1_1-base"];
  const rs = await runs(models.map((m) => spec("p", m, "mtl", "MTL", 0, "glue")));
  const rows = (t: (string | number)[][]) => t.slice(1).map((r) => r[t[0]!.indexOf("model")]);
  const sized = ["t5-v1_1-small", "t5-v1_1-base", "t5-v1_1-large", "t5-v1_1-xl"];
  assert.deepEqual(rows(scoresTable(rs, [])), sized);
  const run = (t: (string | number)[][]) => t.filter((r) => String(r[0]).startsWith("run:"));
  assert.deepEqual(run(paramsTable(rs, [])).map((r) => r[1]), sized);
  assert.deepEqual(run(flopsTable(rs)).map((r) => r[1]), sized);
  // T5 1.0: 3B before 11B; a name that is no preset (an hf folder) after the presets.
  assert.deepEqual(
    ["my-t5", "t5-11b", "t5-3b", "t5-small"].sort(compareModels),
    ["t5-small", "t5-3b", "t5-11b", "my-t5"],
  );
});

Deno.test("plots name the profiles and models they show in their legend", async () => {
  const rs = await runs([
    spec("paper-base", "t5-v1_1-base", "hyperprompt_global", "HyperPrompt", 0, "glue"),
    spec("paper-large", "t5-v1_1-large", "hyperprompt_global", "HyperPrompt", 0, "glue"),
  ]);
  const texts = (svg: string) =>
    [...svg.matchAll(/<tspan[^>]*>([^<]*)<\/tspan>/g)].map((m) => m[1]!).join(" ");
  for (const svg of [scoreVsParamsSvg(rs), attentionMassSvg(rs)]) {
    assert.match(
      texts(svg),
      /profiles paper-base, paper-large; models t5-v1_1-base, t5-v1_1-large/,
    );
  }
  assert.match(texts(scoreVsParamsSvg(rs.slice(0, 1))), /profile paper-base; model t5-v1_1-base/);
});

Deno.test("writeTables() that fails leaves the previous tables whole and no temporary file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const [a] = await runs([spec("ci", "tiny-v1_1", "mtl", "mtl", 0, "glue")]);
    await Deno.writeTextFile(join(dir, "a.json"), JSON.stringify(a));
    const out = join(dir, "tables");
    const written = await writeTables(dir, out, { accounting: null });
    assert.equal(written.length, 8);
    // metrics.csv of the run: a row per task and metric (RTE's accuracy, CoLA's Matthews).
    assert.equal(
      await Deno.readTextFile(join(out, "metrics.csv")),
      toCsv(metricsTable([a!])),
    );
    assert.equal(metricsTable([a!]).length, 1 + 2);
    const snapshot = async () =>
      Object.fromEntries(
        await Promise.all(
          [...Deno.readDirSync(out)].filter((e) => e.isFile).map(async (e) =>
            [e.name, await Deno.readTextFile(join(out, e.name))] as const
          ),
        ),
      );
    const before = await snapshot();
    assert.deepEqual(
      Object.keys(before).sort(),
      written.map((p) => p.slice(out.length + 1)).sort(),
    );
    // The parameter table's accounting throws after the scores table is built: nothing is replaced.
    await Deno.writeTextFile(
      join(dir, "b.json"),
      JSON.stringify((await runs([spec("ci", "tiny-v1_1", "mtl", "mtl", 1, "glue")]))[0]),
    );
    await assert.rejects(
      writeTables(dir, out, {
        accounting: () => {
          throw new Error("accounting failed");
        },
      }),
      /accounting failed/,
    );
    assert.deepEqual(await snapshot(), before);
    // A folder where the last table goes: its rename would fail after the other six were
    // replaced; refused before any is, naming it.
    const plot = join(out, "attention_mass.svg");
    await Deno.remove(plot);
    await Deno.mkdir(plot);
    await Deno.writeTextFile(join(plot, "keep.txt"), "mine");
    const { "attention_mass.svg": _, ...others } = before;
    await assert.rejects(
      writeTables(dir, out, { accounting: null }),
      (e: Error) => {
        assert.equal(
          e.message,
          `${plot}: a folder is where this file goes; move it away (nothing written)`,
        );
        return true;
      },
    );
    assert.deepEqual(await snapshot(), others);
    assert.equal(await Deno.readTextFile(join(plot, "keep.txt")), "mine");
    await Deno.remove(plot, { recursive: true });
    await Deno.writeTextFile(plot, before["attention_mass.svg"]!);
    // A folder without results (every run of a bench failed): an error, the tables untouched.
    const none = join(dir, "none");
    await Deno.mkdir(none);
    await assert.rejects(
      writeTables(none, out, { accounting: null }),
      /none: no run results \(\*\.json\) there/,
    );
    assert.deepEqual(await snapshot(), before);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main() (deno task tables) names a bad flag, folder or result in one line, exit 2 or 1", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { file, empty, broken } = await badFolders(dir);
    const out = join(dir, "tables");
    await Deno.mkdir(join(dir, "dirs-only", "x.json"), { recursive: true });
    await Deno.mkdir(join(dir, "begun"));
    await Deno.writeTextFile(join(dir, "begun", "ci--x--s0--aaaaaaaaaaaa.lock"), "{}");
    const cases: [string[], number, RegExp][] = [
      [
        ["--rnus", empty],
        2,
        /^unknown flag --rnus \(did you mean --runs\?\); deno task tables --help lists the flags$/,
      ],
      [
        ["--runs"],
        2,
        /^--runs needs a value \(a folder of run result JSONs or a JSON file\); deno task tables --help/,
      ],
      [
        ["--runs", "--out", out],
        2,
        /^--runs needs a value \(.*\), got the flag --out after it; deno task tables --help/,
      ],
      [["--out", empty, "--out", out], 2, /^--out given twice \(".*empty", then ".*tables"\)/],
      [["stray"], 2, /^unexpected argument "stray": deno task tables takes only flags; /],
      [["--runs", join(dir, "nope"), "--out", out], 2, /^--runs .*nope: no such folder or file$/],
      [
        ["--runs", join(dir, "nope.json"), "--out", out],
        2,
        /^--runs .*nope\.json: no such folder or file$/,
      ],
      [["--runs", empty, "--out", out], 2, /^--runs .*empty: no run results \(\*\.json\) there/],
      // A folder named like a result is none: the same refusal (it was exit 1).
      [
        ["--runs", join(dir, "dirs-only"), "--out", out],
        2,
        /^--runs .*dirs-only: no run results \(\*\.json\) there/,
      ],
      // Runs begun there but none finished: said.
      [
        ["--runs", join(dir, "begun"), "--out", out],
        2,
        /^--runs .*begun: no run results \(\*\.json\) there.* \(1 run began there but wrote no result yet: ci--x--s0--aaaaaaaaaaaa\)$/,
      ],
      [["--runs", broken, "--out", file], 2, /^--out .*a-file: is a file, not a folder$/],
      [
        ["--runs", broken, "--out", out],
        1,
        /^.*broken\/r\.json:1:10: invalid JSON: Unexpected end of JSON input; every \*\.json directly in \S*broken is read as a run result: fix this one or move it out of the folder$/,
      ],
    ];
    for (const [args, code, want] of cases) {
      const err: string[] = [];
      assert.equal(
        await main(args, { log: () => {}, error: (s) => err.push(s) }),
        code,
        args.join(" "),
      );
      assert.equal(err.length, 1, args.join(" "));
      assert.ok(!err[0]!.includes("\n"), `one line: ${err[0]}`);
      assert.match(err[0]!, want);
    }
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
      "a-file",
      "begun",
      "broken",
      "dirs-only",
      "empty",
    ], "no table folder was made");
    const log: string[] = [];
    assert.equal(await main(["--help"], { log: (s) => log.push(s) }), 0);
    assert.match(log.join("\n"), /--runs DIR[\s\S]*--out DIR[\s\S]*--help/);
    // -h too, as in every tool (runCli), even after other flags; nothing is read or written.
    log.length = 0;
    assert.equal(
      await main(["--runs", broken, "--out", out, "-h"], { log: (s) => log.push(s) }),
      0,
    );
    assert.equal(log.length, 1);
    assert.match(log[0]!, /^Usage: deno task tables/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main() (deno task tables): a stray JSON among the results (notes, a truncated result) is one line naming it, exit 1, no table written", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const runs = join(dir, "runs");
    const ci = fileURLToPath(new URL("../results/baselines/ci", import.meta.url));
    await Deno.mkdir(runs);
    const names = [...Deno.readDirSync(ci)].map((e) => e.name).filter((n) => n.endsWith(".json"));
    for (const n of names) await Deno.copyFile(join(ci, n), join(runs, n));
    const out = join(dir, "tables");
    const first = Deno.readTextFileSync(join(ci, names.sort()[0]!));
    const cases: [string, string, RegExp][] = [
      [
        "notes.json",
        '{"note": "rerun rte"}',
        /^.*runs\/notes\.json: \$\.spec is missing: not a run result .*its fields: \["note"\]; every \*\.json directly in \S*runs is read as a run result: fix this one or move it out of the folder$/,
      ],
      ["cut.json", first.slice(0, 200), /^.*runs\/cut\.json:\d+:\d+: invalid JSON: /],
    ];
    for (const [name, text, want] of cases) {
      Deno.writeTextFileSync(join(runs, name), text);
      const err: string[] = [];
      assert.equal(await main(["--runs", runs, "--out", out], { error: (s) => err.push(s) }), 1);
      assert.equal(err.length, 1, name);
      assert.match(err[0]!, want);
      assert.equal(await Deno.stat(out).then(() => true, () => false), false, "no tables");
      Deno.removeSync(join(runs, name));
    }
    // Without it the same folder gives the tables.
    assert.equal(await main(["--runs", runs, "--out", out], { log: () => {} }), 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main() (deno task tables): runs begun without a result are named in a note; a result whose spec was edited is an error naming it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const runs = join(dir, "runs");
    const names = await ciBaselineFiles(runs);
    const out = join(dir, "tables");
    const tables = async () => {
      const err: string[] = [];
      const code = await main(["--runs", runs, "--out", out], {
        log: () => {},
        error: (s) => err.push(s),
      });
      return { code, err };
    };
    assert.deepEqual(await tables(), { code: 0, err: [] });
    // One run begun: said in the singular.
    await Deno.writeTextFile(join(runs, "ci--w--s1--cccccccccccc.lock"), "{}");
    assert.deepEqual((await tables()).err, [
      `note: 1 run in ${runs} began but wrote no result (still running, or stopped: deno task ` +
      `bench --resume with the same flags finishes it), so the tables leave it out: ` +
      `ci--w--s1--cccccccccccc`,
    ]);
    await Deno.remove(join(runs, "ci--w--s1--cccccccccccc.lock"));
    // --runs naming one result file: no folder to look into, no note.
    const one = await main(["--runs", join(runs, names[0]!), "--out", join(dir, "one")], {
      log: () => {},
      error: (s) => assert.fail(s),
    });
    assert.equal(one, 0);
    // A run in progress (its claim file), one stopped with checkpoints, and a finished run's
    // leftovers (a work folder without checkpoints, a claim file beside its result) that are not.
    await Deno.writeTextFile(join(runs, "ci--x--s1--aaaaaaaaaaaa.lock"), "{}");
    await Deno.mkdir(join(runs, "ci--y--s0--bbbbbbbbbbbb", "checkpoints"), { recursive: true });
    await Deno.mkdir(join(runs, "test_predictions"));
    await Deno.writeTextFile(join(runs, names[0]!.replace(/\.json$/, ".lock")), "{}");
    const note = await tables();
    assert.equal(note.code, 0);
    assert.deepEqual(note.err, [
      `note: 2 runs in ${runs} began but wrote no result (still running, or stopped: deno task ` +
      `bench --resume with the same flags finishes them), so the tables leave them out: ` +
      `ci--x--s1--aaaaaaaaaaaa, ci--y--s0--bbbbbbbbbbbb`,
    ]);
    // A learning rate edited in a result: its numbers would be labelled with it. Refused, the
    // tables of before left as they were.
    const before = await Deno.readTextFile(join(out, "scores.csv"));
    const file = join(runs, names[1]!);
    const r = JSON.parse(await Deno.readTextFile(file));
    r.spec.train.learningRate = 0.5;
    await Deno.writeTextFile(file, JSON.stringify(r));
    const file2 = join(runs, names[2]!);
    const r2 = JSON.parse(await Deno.readTextFile(file2));
    r2.spec.seed = 7;
    await Deno.writeTextFile(file2, JSON.stringify(r2));
    const edited = await tables();
    assert.equal(edited.code, 1);
    assert.equal(edited.err.length, 1);
    // Both named, in one line.
    const which = (f: string, id: string) =>
      `${f.replaceAll(".", "\\.")}: its spec hashes to [0-9a-f]{12}, not to its id ${id}`;
    assert.match(
      edited.err[0]!,
      new RegExp(
        `^${which(file, r.spec.id)}; ${which(file2, r2.spec.id)}: edited after the run wrote ` +
          `it\\? Restore the file, or move it out of the folder \\(nothing written\\)$`,
      ),
    );
    assert.equal(await Deno.readTextFile(join(out, "scores.csv")), before);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main() (deno task tables): --runs repeated reads the shards' folders as one; a run in two of them, or one folder twice, is refused", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const ci = CI_BASELINE;
    const names = await ciBaselineFiles();
    // The baseline split between two shards' folders.
    const [a, b] = [join(dir, "a"), join(dir, "b")];
    await Deno.mkdir(a);
    await Deno.mkdir(b);
    for (const [i, n] of names.entries()) {
      await Deno.copyFile(join(ci, n), join(i % 2 === 0 ? a : b, n));
    }
    const run = async (args: string[]) => {
      const err: string[] = [];
      const code = await main(args, { log: () => {}, error: (s) => err.push(s) });
      return { code, err };
    };
    assert.deepEqual(await run(["--runs", ci, "--out", join(dir, "whole")]), { code: 0, err: [] });
    assert.deepEqual(
      await run(["--runs", a, "--runs", b, "--out", join(dir, "merged")]),
      { code: 0, err: [] },
    );
    for (const f of ["scores.csv", "params.csv", "ablation.csv", "attention_mass.csv"]) {
      assert.equal(
        await Deno.readTextFile(join(dir, "merged", f)),
        await Deno.readTextFile(join(dir, "whole", f)),
        f,
      );
    }
    // A copy of one run in both: both files named, nothing written.
    await Deno.copyFile(join(a, names[0]!), join(b, names[0]!));
    const twice = await run(["--runs", a, "--runs", b, "--out", join(dir, "twice")]);
    assert.equal(twice.code, 1);
    assert.match(
      twice.err[0]!,
      new RegExp(
        `${join(a, names[0]!).replaceAll(".", "\\.")}.*${
          join(b, names[0]!).replaceAll(".", "\\.")
        }`,
      ),
    );
    assert.equal(await pathExists(join(dir, "twice")), false);
    // One folder in two spellings.
    const same = await run(["--runs", a, "--runs", `${a}/`, "--out", join(dir, "same")]);
    assert.equal(same.code, 2);
    assert.equal(same.err[0], `--runs ${a}/: the same folder as --runs ${a}; name it once`);
    // A folder and a file in it: one file named twice (as the gate says), not two results.
    const inner = await run(["--runs", a, "--runs", join(a, names[0]!), "--out", join(dir, "in")]);
    assert.equal(inner.code, 2);
    assert.equal(
      inner.err[0],
      `--runs: ${await Deno.realPath(join(a, names[0]!))} is read twice (as ${
        join(a, names[0]!)
      } and as ${join(a, names[0]!)}): a folder and a file in it, or one file in two ` +
        "spellings; name it once",
    );
    assert.equal(await pathExists(join(dir, "in")), false);
    // The same file through a link: read twice all the same (its real path named).
    await Deno.symlink(join(a, names[0]!), join(dir, "link.json"));
    const linked = await run([
      "--runs",
      a,
      "--runs",
      join(dir, "link.json"),
      "--out",
      join(dir, "l"),
    ]);
    assert.equal(linked.code, 2);
    assert.match(
      linked.err[0]!,
      new RegExp(
        `is read twice \\(as .*${names[0]!.replaceAll(".", "\\.")} and as .*link\\.json\\)`,
      ),
    );
    // One array file of two different runs: two results, not one file read twice.
    const pair = [
      JSON.parse(await Deno.readTextFile(join(a, names[0]!))),
      JSON.parse(await Deno.readTextFile(join(b, names[1]!))),
    ];
    await Deno.writeTextFile(join(dir, "pair.json"), JSON.stringify(pair));
    assert.deepEqual(await run(["--runs", join(dir, "pair.json"), "--out", join(dir, "p")]), {
      code: 0,
      err: [],
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main() (deno task tables): an --out no file can be created in is refused (exit 2), nothing written", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const ro = join(dir, "ro");
    await Deno.mkdir(ro);
    const err: string[] = [];
    const code = await main(["--runs", CI_BASELINE, "--out", join(ro, "t")], {
      log: () => {},
      error: (s) => err.push(s),
      cannotWrite: (d) => (d === ro ? "Read-only file system" : undefined),
    });
    assert.equal(code, 2, err.join("\n"));
    assert.match(err[0]!, /^--out \S*ro\/t: its nearest existing folder \S*ro cannot be written/);
    assert.deepEqual([...Deno.readDirSync(ro)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main() (deno task tables): an empty --runs or --out is refused in one line (exit 2), nothing written to the current folder", async () => {
  const dir = await Deno.makeTempDir();
  // Real results, so that only the empty value can stop the command.
  const runs = fileURLToPath(new URL("../results/baselines/ci", import.meta.url));
  const cwd = Deno.cwd();
  const empty = (flag: string, takes: string) =>
    `--${flag} needs a value (${takes}), got an empty one ("": an unset variable?); deno task ` +
    `tables --help lists the flags`;
  const runsTakes = "a folder of run result JSONs or a JSON file";
  const cases: [string[], string][] = [
    [["--runs", runs, "--out="], empty("out", "a folder")],
    [["--runs", runs, "--out", ""], empty("out", "a folder")],
    [["--runs=", "--out", join(dir, "t")], empty("runs", runsTakes)],
    [["--runs", "", "--out", join(dir, "t")], empty("runs", runsTakes)],
  ];
  Deno.chdir(dir); // "" would be this folder
  try {
    for (const [args, want] of cases) {
      const err: string[] = [];
      const code = await main(args, { log: () => {}, error: (s) => err.push(s) });
      assert.equal(code, 2, args.join(" "));
      assert.deepEqual(err, [want], args.join(" "));
    }
    assert.deepEqual([...Deno.readDirSync(dir)], [], "nothing written");
  } finally {
    Deno.chdir(cwd);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("roundHalfAway: halves go away from zero for both signs, as the positive twin", () => {
  assert.equal(roundHalfAway(0.125, 2), 0.13);
  assert.equal(roundHalfAway(-0.125, 2), -0.13);
  assert.equal(roundHalfAway(-12.344, 2), -12.34);
  assert.equal(roundHalfAway(86.55, 1), 86.6);
  assert.equal(roundHalfAway(-0.00001, 2), -0);
  assert.ok(Number.isNaN(roundHalfAway(NaN, 2)));
});

/** `r` with other parameter counts (the fake's do not depend on the benchmark; real ones do). */
function withParams(r: RunResult, total: number, extra: number, trained: number): RunResult {
  const backbone = total - extra;
  const params = {
    total,
    extra,
    extraPct: (100 * extra) / backbone,
    trained,
    trainedPerTaskPct: (100 * trained) / r.spec.tasks.length / backbone,
  };
  return { ...r, params };
}

Deno.test("glue_tasks counts only the benchmark's own tasks, not an extra task a run reports", async () => {
  const two = spec("ablation", "tiny-v1_1", "mtl", "MTL", 0, "glue");
  const all = spec("ablation", "tiny-v1_1", "mtl", "MTL", 0, "glue", "pretrained", {
    tasks: [...BENCHMARK_TASKS.glue],
  });
  // A result that also reports a task outside GLUE's 8 (AX-b, the diagnostic set), which the
  // benchmark average leaves out (evaluator.ts benchmarkAverages).
  const extra = (r: RunResult): RunResult => ({ ...r, best: { ...r.best, axb: r.best["rte"]! } });
  const rs = (await runs([two, all])).map(extra);
  for (const t of [scoresTable(rs, []), ablationTable(rs, [])]) {
    const head = t[0] as string[];
    const cell = (bb: string, col: string) =>
      t.find((r) => r[head.indexOf("backbone")] === bb)![head.indexOf(col)];
    assert.equal(cell("random", "glue_tasks"), 2, "rte, cola: axb is not averaged");
    assert.equal(cell("random", "glue_partial_avg"), roundHalfAway(rs[0]!.averages.glue!, 2));
    assert.equal(cell("pretrained", "glue_tasks"), 8);
    assert.equal(cell("pretrained", "glue_avg"), roundHalfAway(rs[1]!.averages.glue!, 2));
  }
});

Deno.test("scores.csv gives each benchmark's parameter overhead, the values of params.csv", async () => {
  const [g0, s0, g1, s1] = await runs([0, 1].flatMap((seed) => [
    spec("p", "tiny-v1_1", "hyperprompt_global", "HP", seed, "glue"),
    spec("p", "tiny-v1_1", "hyperprompt_global", "HP", seed, "super_glue"),
  ]));
  // GLUE runs 2 tasks, SuperGLUE 1: one task embedding fewer, so another count.
  const sg = (r: RunResult) => withParams(r, 1_000_900, 900, 1_000_900);
  const rs = [g0!, sg(s0!), g1!, sg(s1!)];
  const t = scoresTable(rs, []);
  const head = t[0] as string[];
  const cols = [
    "glue_params_ratio",
    "glue_extra_pct",
    "glue_trained_per_task_pct",
    "super_glue_params_ratio",
    "super_glue_extra_pct",
    "super_glue_trained_per_task_pct",
  ];
  // Beside the averages, in main_table.csv's order (params_ratio, extra_pct, trained_per_task_pct).
  const at = head.indexOf("super_glue_best_step_avg") + 1;
  assert.deepEqual(head.slice(at, at + 7), [...cols, "paper_glue_avg"]);
  const row = t[1]!;
  const p = paramsTable(rs, []);
  const ph = p[0] as string[];
  for (const b of ["glue", "super_glue"]) {
    const prow = p.find((r) => r[0] === `run:p/${b}`)!;
    for (
      const [mine, theirs] of [
        ["params_ratio", "ratio"],
        ["extra_pct", "extra_pct"],
        ["trained_per_task_pct", "trained_per_task_pct"],
      ]
    ) {
      assert.equal(row[head.indexOf(`${b}_${mine}`)], prow[ph.indexOf(theirs!)], `${b} ${mine}`);
    }
  }
  assert.equal(row[head.indexOf("super_glue_params_ratio")], roundHalfAway(1_000_900 / 1e6, 4));
  assert.equal(row[head.indexOf("super_glue_extra_pct")], 0.09);
  assert.equal(row[head.indexOf("super_glue_trained_per_task_pct")], 100.09);
  assert.notEqual(row[head.indexOf("glue_params_ratio")], row[at + 3]);
  // A row without a benchmark has blank cells for it.
  const only = scoresTable([g0!], []);
  const oh = only[0] as string[];
  assert.equal(only[1]![oh.indexOf("super_glue_params_ratio")], "");
  assert.equal(typeof only[1]![oh.indexOf("glue_params_ratio")], "number");
});

Deno.test("flops.csv states FLOPs relative to MTL of the same source, model, backbone and lengths", async () => {
  // The fake's FLOPs depend on the model only; a prompt method's cost more than MTL's.
  const more = (r: RunResult): RunResult => ({
    ...r,
    flops: { trainPerExample: 3_300_000, inferencePerExample: 1_050_000 },
  });
  const rs = (await runs([
    spec("p", "tiny-v1_1", "mtl", "MTL", 0, "glue"),
    spec("p", "tiny-v1_1", "hyperprompt_global", "HP", 0, "glue"),
    spec("p", "tiny-v1_1", "hyperprompt_global", "HP", 0, "glue", "pretrained"), // no MTL
  ])).map((r) => r.spec.method.name === "mtl" ? r : more(r));
  rs[0] = { ...rs[0]!, flops: { trainPerExample: 3_000_000, inferencePerExample: 1_000_000 } };
  const acc = await loadAccounting();
  const t = flopsTable(rs, acc);
  const head = t[0] as string[];
  // Appended: the existing columns keep their places.
  assert.deepEqual(head.slice(-3), ["config", "train_flops_x_mtl", "inference_flops_x_mtl"]);
  const col = (r: (string | number)[], n: string) => r[head.indexOf(n)];
  const run = (bb: string, m: string) =>
    t.find((r) => r[0] === "run:p/glue" && r[2] === bb && r[3] === m)!;
  const [mtl, hp] = [rs[0]!.flops, rs[1]!.flops];
  assert.equal(
    col(run("random", "HP"), "train_flops_x_mtl"),
    roundHalfAway(hp.trainPerExample / mtl.trainPerExample, 4),
  );
  assert.equal(
    col(run("random", "HP"), "inference_flops_x_mtl"),
    roundHalfAway(hp.inferencePerExample / mtl.inferencePerExample, 4),
  );
  assert.equal(col(run("random", "HP"), "train_flops_x_mtl"), 1.1);
  assert.equal(col(run("random", "HP"), "inference_flops_x_mtl"), 1.05);
  assert.equal(col(run("random", "MTL"), "train_flops_x_mtl"), 1);
  assert.equal(col(run("pretrained", "HP"), "train_flops_x_mtl"), "", "no pretrained MTL run");
  assert.equal(col(run("pretrained", "HP"), "inference_flops_x_mtl"), "");
  // Analytic rows: against MTL at the same size. Prompt-Tuning's longer input costs more per
  // forward pass, its frozen backbone less to train (331 vs MTL's 401 GFLOP at T5 1.1 Base,
  // 512/84).
  const base = t.filter((r) => r[0] === "analytic" && r[1] === "t5-v1_1-base");
  const a = (m: string) =>
    acc(PRESETS["t5-v1_1-base"], m, {}, 8, { inputLength: 512, targetLength: 84 });
  const pt = base.find((r) => r[3] === "prompt_tuning")!;
  assert.equal(
    col(pt, "train_flops_x_mtl"),
    roundHalfAway(a("prompt_tuning").trainFlops! / a("mtl").trainFlops!, 4),
  );
  assert.ok((col(pt, "train_flops_x_mtl") as number) < 1);
  assert.ok((col(pt, "inference_flops_x_mtl") as number) > 1);
  assert.equal(col(base.find((r) => r[3] === "mtl")!, "inference_flops_x_mtl"), 1);
});

Deno.test("ablation.csv gives each benchmark its own parameters relative to MTL", async () => {
  const rs = await runs(
    (["glue", "super_glue"] as const).flatMap((b) => [
      spec("ablation", "tiny-v1_1", "mtl", "MTL", 0, b),
      spec("ablation", "tiny-v1_1", "hyperprompt_global", "HP", 0, b),
    ]),
  );
  const mtlTotal = rs[0]!.params.total;
  // HyperPrompt's count depends on the number of tasks: 2 GLUE tasks, 1 SuperGLUE task.
  const edited = rs.map((r) => {
    if (r.spec.method.name === "mtl") return r;
    const extra = r.spec.benchmark === "glue" ? 25_500 : 24_100;
    return withParams(r, mtlTotal + extra, extra, mtlTotal + extra);
  });
  const t = ablationTable(edited, []);
  const head = t[0] as string[];
  const row = t.find((r) => r[head.indexOf("method")] === "HP")!;
  assert.equal(
    row[head.indexOf("glue_params_x_mtl")],
    `${((mtlTotal + 25_500) / mtlTotal).toFixed(3)}x`,
  );
  assert.equal(
    row[head.indexOf("super_glue_params_x_mtl")],
    `${((mtlTotal + 24_100) / mtlTotal).toFixed(3)}x`,
  );
  assert.notEqual(
    row[head.indexOf("glue_params_x_mtl")],
    row[head.indexOf("super_glue_params_x_mtl")],
  );
  assert.equal(head.includes("params_x_mtl"), false);
});

Deno.test("ablation.csv: each row is relative to the MTL runs of its own configuration, named; none or an ambiguous match is said", async () => {
  const long = { train: { ...DEFAULT_TRAIN, steps: 8, evalEvery: 2 } };
  const wasm = { backend: "wasm" as const };
  const rs = await runs([
    spec("ablation", "tiny-v1_1", "mtl", "MTL", 0, "glue"),
    spec("ablation", "tiny-v1_1", "mtl", "MTL", 0, "glue", "random", long),
    spec("ablation", "tiny-v1_1", "hyperprompt_global", "HP", 0, "glue"),
    spec("ablation", "tiny-v1_1", "hyperprompt_global", "HP", 0, "glue", "random", long),
    // No MTL run on this backend.
    spec("ablation", "tiny-v1_1", "hyperprompt_share", "Share", 0, "glue", "random", wasm),
    // Its own training settings (a method entry's `train`): MTL of the rest of its spec.
    spec("ablation", "tiny-v1_1", "hyperprompt_sep", "Sep", 0, "glue", "random", {
      train: { ...DEFAULT_TRAIN, steps: 4, evalEvery: 2, learningRate: 0.3 },
    }),
  ]);
  // The two MTL configurations count different parameters (their backbones, say), so a ratio
  // against the wrong one shows: 1,000,000 at 4 steps, 2,000,000 at 8.
  const mtlTotal = (r: RunResult) => r.spec.train.steps === 4 ? 1_000_000 : 2_000_000;
  const edited = rs.map((r) =>
    r.spec.method.name === "mtl"
      ? withParams(r, mtlTotal(r), 0, mtlTotal(r))
      : withParams(r, mtlTotal(r) + 30_000, 30_000, mtlTotal(r) + 30_000)
  );
  const t = ablationTable(edited, []);
  const head = t[0] as string[];
  const col = (r: (string | number)[], name: string) => r[head.indexOf(name)];
  const row = (label: string, steps: number) =>
    t.slice(1).find((r) =>
      col(r, "method") === label && String(col(r, "config")).includes(
        configId(
          edited.find((x) => x.spec.method.label === label && x.spec.train.steps === steps)!.spec,
        ),
      )
    )!;
  const mtlConfig = (steps: number) =>
    configId(
      edited.find((r) => r.spec.method.name === "mtl" && r.spec.train.steps === steps)!.spec,
    );
  for (const steps of [4, 8]) {
    const hp = row("HP", steps);
    const own = steps === 4 ? 1_000_000 : 2_000_000;
    assert.equal(col(hp, "glue_params_x_mtl"), `${((own + 30_000) / own).toFixed(3)}x`);
    assert.equal(col(hp, "glue_mtl_reference"), `MTL ${mtlConfig(steps)}`);
    assert.equal(col(hp, "super_glue_mtl_reference"), "", "no SuperGLUE run");
    assert.equal(col(row("MTL", steps), "glue_params_x_mtl"), "1.000x");
  }
  const share = row("Share", 4);
  assert.equal(
    col(share, "glue_mtl_reference"),
    "none: no MTL run of this configuration; relative to the backbone",
  );
  assert.equal(col(share, "glue_params_x_mtl"), `${(1_030_000 / 1_000_000).toFixed(3)}x`);
  // Apart from its training settings it matches both MTL configurations, which count different
  // parameters: neither is chosen. With one of them, that one, and the note says so.
  assert.match(String(col(row("Sep", 4), "glue_mtl_reference")), /^ambiguous: /);
  const t3 = ablationTable(edited.filter((r) => mtlTotal(r) === 1_000_000), []);
  const sep = t3.find((r) => r[head.indexOf("method")] === "Sep")!;
  assert.deepEqual(
    [sep[head.indexOf("glue_mtl_reference")], sep[head.indexOf("glue_params_x_mtl")]],
    [`MTL ${mtlConfig(4)} (other training settings)`, "1.030x"],
  );
  // Two MTL entries of one configuration counting different parameters: neither is chosen.
  const [mtl2] = await runs([spec("ablation", "tiny-v1_1", "mtl", "MTL2", 0, "glue")]);
  const twin = withParams(mtl2!, 1_500_000, 0, 1_500_000);
  const t2 = ablationTable([...edited, twin], []);
  const hp2 = t2.slice(1).find((r) =>
    r[t2[0]!.indexOf("method")] === "HP" &&
    r[t2[0]!.indexOf("config")] === `glue:${configId(edited[2]!.spec)}`
  )!;
  assert.match(
    String(hp2[t2[0]!.indexOf("glue_mtl_reference")]),
    /^ambiguous: MTL rows .*MTL .*MTL2 /,
  );
  assert.equal(hp2[t2[0]!.indexOf("glue_params_x_mtl")], `${(1_030_000 / 1_000_000).toFixed(3)}x`);
});

Deno.test("ablation.csv takes the paper's figure from the row of the same model, label and method", async () => {
  const rs = await runs([
    spec8("ablation", "t5-v1_1-base", "hyperprompt_global", "HyperPrompt-Global", 0, "glue"),
    spec8("ablation", "t5-v1_1-base", "hyperprompt_share", "HyperPrompt-Global", 0, "super_glue"),
    spec8("ablation", "t5-v1_1-large", "hyperprompt_global", "HyperPrompt-Global", 0, "glue"),
    spec8("ablation", "t5-v1_1-base", "hyperformer_pp", "HyperFormer++", 0, "glue"),
  ]);
  const t = ablationTable(rs, readPaperTable());
  const head = t[0] as string[];
  const find = (model: string, name: string) =>
    t.slice(1).find((r) =>
      r[head.indexOf("model")] === model && r[head.indexOf("method_name")] === name
    )!;
  const paperX = (r: (string | number)[]) => r[head.indexOf("paper_params_x_mtl")];
  const global = find("t5-v1_1-base", "hyperprompt_global");
  assert.equal(paperX(global), "1.02x");
  assert.match(String(global[head.indexOf("paper_source")]), /§4\.5 ablation/);
  // No MTL run here: relative to the backbone, the default's count is 1.01x at the paper's two
  // decimals (as params.csv's analytic row), and paper_row says so.
  const x = String(global[head.indexOf("glue_params_x_mtl")]);
  assert.equal(Number(x.slice(0, -1)).toFixed(2), "1.01", x);
  assert.equal(
    global[head.indexOf("paper_row")],
    "ablation: t5-v1_1-base HyperPrompt-Global; differs: glue_params_x_mtl 1.01x here at 2 " +
      "decimals, not 1.02x",
  );
  // The same label on another method, or another size: not the paper's row.
  assert.equal(paperX(find("t5-v1_1-base", "hyperprompt_share")), "");
  assert.equal(find("t5-v1_1-base", "hyperprompt_share")[head.indexOf("paper_source")], "");
  assert.equal(paperX(find("t5-v1_1-large", "hyperprompt_global")), "");
  // T5 1.0 Base's HyperFormer++ figure (1.02x, HyperFormer++ paper) is not T5 1.1 Base's.
  assert.equal(paperX(find("t5-v1_1-base", "hyperformer_pp")), "");
});

Deno.test("paperDiffers: the value itself is rounded to the paper's decimals, once (its 3- or 4-decimal cell rounded again could differ)", () => {
  // 1.0154 is 1.02 at 2 decimals; its 3-decimal cell "1.015" would round to 1.01 (binary 1.01499…).
  assert.equal(paperDiffers("glue_params_x_mtl", 1.0154, "1.02", "x"), undefined);
  assert.equal(
    paperDiffers("glue_params_x_mtl", 1.0149, "1.02", "x"),
    "glue_params_x_mtl 1.01x here at 2 decimals, not 1.02x",
  );
  assert.equal(paperDiffers("ratio", 1.00499, "1.0", ""), undefined);
  assert.equal(paperDiffers("extra_pct", 0.05, "", ""), undefined, "no figure, no note");
  assert.equal(paperDiffers("ratio", 1.255, "1.3", ""), undefined);
  assert.equal(paperDiffers("ratio", 1.24, "1.3", ""), "ratio 1.2 here at 1 decimals, not 1.3");
});

/** A paper row of T5 1.1 Base's hyperprompt_global labelled `label`, blank but for the given. */
function globalRow(table: string, label: string, fill: Partial<PaperRow>): PaperRow {
  return {
    table,
    model: "t5-v1_1-base",
    method: label,
    method_name: "hyperprompt_global",
    glue_avg: "",
    super_glue_avg: "",
    params_ratio: "",
    extra_pct: "",
    trained_per_task_pct: "",
    freeze_backbone: "",
    source: `${table} ${label} ${JSON.stringify(fill)}`,
    ...fill,
  };
}

Deno.test("ablation.csv: of two matching ablation rows, the one with a ratio is taken, not one with only a score", async () => {
  // Kills the mutant giving ablation.csv's paperMatch the score figures instead of the ratio.
  const paper = [
    globalRow("ablation", "HyperPrompt-Global", { glue_avg: "86.0" }),
    globalRow("ablation", "HyperPrompt-Global", { params_ratio: "1.02" }),
  ];
  const rs = await runs([
    spec8("ablation", "t5-v1_1-base", "mtl", "MTL", 0, "glue"),
    spec8("ablation", "t5-v1_1-base", "hyperprompt_global", "HyperPrompt-Global", 0, "glue"),
  ]);
  const t = ablationTable(rs, paper);
  const head = t[0] as string[];
  const r = t.slice(1).find((r) => r[head.indexOf("method_name")] === "hyperprompt_global")!;
  assert.equal(r[head.indexOf("paper_params_x_mtl")], "1.02x");
  assert.match(String(r[head.indexOf("paper_source")]), /params_ratio/);
  assert.match(
    String(r[head.indexOf("paper_row")]),
    /^ablation: t5-v1_1-base HyperPrompt-Global \(also matched, without a figure here: /,
  );
});

Deno.test('ablation.csv: a count that rounds to the paper\'s figure says no "differs"; one that does not, does', async () => {
  const rs = await runs([
    spec8("ablation", "t5-v1_1-base", "hyperprompt_global", "HyperPrompt-Global", 0, "glue"),
  ]);
  const row = (figure: string) => {
    const t = ablationTable(rs, [
      globalRow("ablation", "HyperPrompt-Global", { params_ratio: figure }),
    ]);
    const head = t[0] as string[];
    const r = t[1]!;
    return {
      x: String(r[head.indexOf("glue_params_x_mtl")]),
      note: String(r[head.indexOf("paper_row")]),
    };
  };
  // Relative to the backbone (no MTL run): 1.007x, which is 1.01 at two decimals.
  const same = row("1.01");
  assert.match(same.x, /^1\.00[5-9]x$/);
  assert.doesNotMatch(same.note, /differs/, same.note);
  const other = row("1.03");
  assert.match(other.note, /; differs: glue_params_x_mtl 1\.01x here at 2 decimals, not 1\.03x$/);
});

Deno.test("params.csv and ablation.csv compare the ratio itself with the paper's figure, not its rounded cell", async () => {
  // 1.01500003 is 1.02 at two decimals; its cells (1.015, 1.015x) would round to 1.01 (binary
  // 1.01499…), a "differs" that is not so.
  const [r] = await runs([
    spec8("ablation", "t5-v1_1-base", "hyperprompt_global", "HyperPrompt-Global", 0, "glue"),
  ]);
  const withRatio = (extra: number) => withParams(r!, 1e8 + extra, extra, 1e8 + extra);
  const paper = [globalRow("ablation", "HyperPrompt-Global", { params_ratio: "1.02" })];
  const paramsRow = (x: RunResult) => {
    const t = paramsTable([x], paper);
    const head = t[0] as string[];
    const row = t.slice(1).find((row) => row[head.indexOf("source")] === "run:ablation/glue")!;
    return { ratio: row[head.indexOf("ratio")], note: String(row[head.indexOf("paper_row")]) };
  };
  const ablationRow = (x: RunResult) => {
    const t = ablationTable([x], paper);
    const head = t[0] as string[];
    return {
      x: t[1]![head.indexOf("glue_params_x_mtl")],
      note: String(t[1]![head.indexOf("paper_row")]),
    };
  };
  const at = withRatio(1_500_003);
  assert.equal(paramsRow(at).ratio, 1.015);
  assert.doesNotMatch(paramsRow(at).note, /differs/);
  assert.equal(ablationRow(at).x, "1.015x");
  assert.doesNotMatch(ablationRow(at).note, /differs/);
  const below = withRatio(1_490_000);
  assert.match(paramsRow(below).note, /; differs: ratio 1\.01 here at 2 decimals, not 1\.02$/);
  assert.match(ablationRow(below).note, /; differs: glue_params_x_mtl 1\.01x here/);
});

Deno.test("params.csv: a run row matching two tables takes the one with a parameter figure, whatever their scores", () => {
  // Kills the mutant dropping params' figures from paramsPaperMatch's paperMatch call (the score
  // figures, which differ here, would make it ambiguous).
  const paper = [
    globalRow("main", "HyperPrompt-Global", { glue_avg: "86.8" }),
    globalRow("ablation", "HyperPrompt-Global", { glue_avg: "87.0", params_ratio: "1.02" }),
  ];
  const row = {
    analytic: false,
    profile: "mine",
    model: "t5-v1_1-base",
    label: "HyperPrompt-Global",
    method: "hyperprompt_global",
    config: {},
  } as const;
  const m = paramsPaperMatch(paper, { ...row, tasks: 8 });
  assert.equal(m.row?.table, "ablation", m.note);
  // A run of two tasks: its counts are not the paper's 8 tasks' (other task embeddings, and a
  // trained-per-task % over 2), so no figure, and the note says why.
  const two = paramsPaperMatch(paper, { ...row, tasks: 2 });
  assert.equal(two.row, undefined);
  assert.equal(
    two.note,
    "none: paper row ablation: t5-v1_1-base HyperPrompt-Global counts 8 tasks; this row's " +
      "parameters are of 2",
  );
  assert.match(
    m.note,
    /^ablation: t5-v1_1-base HyperPrompt-Global \(also matched, without a figure/,
  );
});

Deno.test("ablation.csv shows the paper's figure only beside its row's configuration, as params.csv does", async () => {
  // Labelled as the paper's row but with another hyper-prompt length: the paper's 1.02x counts
  // the default length's parameters, not this row's.
  const rs = await runs([
    spec8(
      "ablation-mine",
      "t5-v1_1-base",
      "hyperprompt_global",
      "HyperPrompt-Global",
      0,
      "glue",
      "random",
      {
        method: { name: "hyperprompt_global", label: "HyperPrompt-Global", config: { length: 32 } },
      },
    ),
    spec8("ablation", "t5-v1_1-base", "hyperprompt_global", "HyperPrompt-Global", 0, "glue"),
    // The default configuration on two GLUE tasks: not the paper's 8 tasks' count either.
    spec("ablation-two", "t5-v1_1-base", "hyperprompt_global", "HyperPrompt-Global", 0, "glue"),
    // One row of GLUE's 8 tasks and SuperGLUE's 1 (fakeSpec's CB): no figure for the row.
    spec8("ablation-mix", "t5-v1_1-base", "hyperprompt_global", "HyperPrompt-Global", 0, "glue"),
    spec(
      "ablation-mix",
      "t5-v1_1-base",
      "hyperprompt_global",
      "HyperPrompt-Global",
      0,
      "super_glue",
    ),
  ]);
  const t = ablationTable(rs, readPaperTable());
  const head = t[0] as string[];
  const of = (profile: string) => t.slice(1).find((r) => r[head.indexOf("profile")] === profile)!;
  const mine = of("ablation-mine");
  assert.equal(mine[head.indexOf("paper_params_x_mtl")], "");
  assert.equal(mine[head.indexOf("paper_source")], "");
  assert.match(
    String(mine[head.indexOf("paper_row")]),
    /^none: paper row ablation: t5-v1_1-base HyperPrompt-Global is of hyperprompt_global's default configuration \(\d+ extra parameters at 8 tasks\); this row's configuration counts \d+$/,
  );
  assert.equal(of("ablation")[head.indexOf("paper_params_x_mtl")], "1.02x");
  const two = of("ablation-two");
  assert.equal(two[head.indexOf("paper_params_x_mtl")], "");
  assert.equal(
    two[head.indexOf("paper_row")],
    "none: paper row ablation: t5-v1_1-base HyperPrompt-Global counts 8 tasks; this row's " +
      "parameters are of 2",
  );
  const mix = of("ablation-mix");
  assert.equal(mix[head.indexOf("paper_params_x_mtl")], "");
  assert.match(
    String(mix[head.indexOf("paper_row")]),
    /counts 8 tasks; this row's parameters are of 1$/,
  );
});

Deno.test("scores.csv takes the paper row of the profile's table, model, label and method, or says why none", async () => {
  const row = (table: string, method: string, name: string, glue: string): PaperRow => ({
    table,
    model: "t5-v1_1-base",
    method,
    method_name: name,
    glue_avg: glue,
    super_glue_avg: "",
    params_ratio: "",
    extra_pct: "",
    trained_per_task_pct: "",
    freeze_backbone: "",
    source: `${table} ${method}`,
  });
  const paper = [
    row("main", "MTL", "mtl", "85.0"),
    row("main", "HyperPrompt", "hyperprompt_global", "86.8"),
    row("ablation", "MTL", "mtl", "84.0"),
    row("ablation", "HyperPrompt-Global", "hyperprompt_global", "87.0"),
  ];
  const all = { tasks: [...BENCHMARK_TASKS.glue] }; // the paper's average needs all 8 tasks
  const at = (profile: string, name: RunSpec["method"]["name"], label: string, model?: string) =>
    spec(profile, model ?? "t5-v1_1-base", name, label, 0, "glue", "random", all);
  const rs = await runs([
    at("paper-base", "mtl", "MTL"),
    at("ablation", "mtl", "MTL"),
    at("mine", "mtl", "MTL"),
    at("paper-base", "hyperprompt_global", "HyperPrompt-Global"),
    at("ablation", "hyperprompt_share", "HyperPrompt-Global"),
    at("paper-base", "hyperprompt_global", "hyperprompt_global"),
    at("paper-large", "hyperprompt_global", "HyperPrompt", "t5-v1_1-large"),
    at("mine", "hyperprompt_global", "HyperPrompt-Global"),
  ]);
  const t = scoresTable(rs, paper);
  const head = t[0] as string[];
  const get = (profile: string, label: string, name: string): [string, string] => {
    const r = t.slice(1).find((r) =>
      r[head.indexOf("profile")] === profile && r[head.indexOf("method")] === label &&
      r[head.indexOf("method_name")] === name
    )!;
    return [String(r[head.indexOf("paper_glue_avg")]), String(r[head.indexOf("paper_row")])];
  };
  // The profile says which table it reproduces; each takes its own table's MTL.
  assert.deepEqual(get("paper-base", "MTL", "mtl"), ["85.0", "main: t5-v1_1-base MTL"]);
  assert.deepEqual(get("ablation", "MTL", "mtl"), ["84.0", "ablation: t5-v1_1-base MTL"]);
  // A profile of its own matches either table: both have MTL at Base, with different averages,
  // so neither is taken.
  const [x, why] = get("mine", "MTL", "mtl");
  assert.equal(x, "");
  assert.match(
    why,
    /^ambiguous: paper rows main: .* MTL and ablation: .* MTL match with different figures; a profile named paper-/,
  );
  // Only the ablation has HyperPrompt-Global: the main results' profile does not take it.
  const [y, notHere] = get("paper-base", "HyperPrompt-Global", "hyperprompt_global");
  assert.equal(y, "");
  assert.match(notHere, /^none: paper row ablation: .*HyperPrompt-Global is not in the table/);
  assert.deepEqual(get("mine", "HyperPrompt-Global", "hyperprompt_global"), [
    "87.0",
    "ablation: t5-v1_1-base HyperPrompt-Global",
  ]);
  // The paper's label on another method is not the paper's row.
  const [z, other] = get("ablation", "HyperPrompt-Global", "hyperprompt_share");
  assert.equal(z, "");
  assert.match(other, /is hyperprompt_global, not hyperprompt_share$/);
  // A label equal to a method name is no label of the paper; another size is not Base.
  assert.deepEqual(get("paper-base", "hyperprompt_global", "hyperprompt_global"), ["", ""]);
  assert.deepEqual(get("paper-large", "HyperPrompt", "hyperprompt_global"), ["", ""]);
  // ablation.csv compares with the ablation table only, and names the row.
  const ab = ablationTable(rs.filter((r) => r.spec.profile === "ablation"), paper);
  const ah = ab[0] as string[];
  const mtl = ab.find((r) => r[ah.indexOf("method_name")] === "mtl")!;
  assert.equal(mtl[ah.indexOf("paper_row")], "ablation: t5-v1_1-base MTL");
  assert.equal(mtl[ah.indexOf("paper_source")], "ablation MTL");
});

Deno.test("flops.csv: tokens/s over seeds is their total tokens over their total seconds", async () => {
  const [a, b] = await runs([
    spec("p", "tiny-v1_1", "mtl", "MTL", 0, "glue"),
    spec("p", "tiny-v1_1", "mtl", "MTL", 1, "glue"),
  ]);
  // 1000 tokens in 1 s and 9000 in 3 s: 2500 tokens/s, not the rates' mean (2000).
  const timed = (r: RunResult, tokens: number, s: number): RunResult => ({
    ...r,
    tokensPerSecond: tokens / s,
    trainTokens: tokens,
    trainSeconds: s,
  });
  const rs = [timed(a!, 1000, 1), timed(b!, 9000, 3)];
  const tps = (t: (string | number)[][]) => {
    const head = t[0] as string[];
    const r = t.find((r) => r[0] === "run:p/glue")!;
    return [r[head.indexOf("tokens_per_second")], r[head.indexOf("tokens_per_second_from")]];
  };
  assert.deepEqual(tps(flopsTable(rs)), [2500, "totals"]);
  // A result written before the totals existed: the mean of the rates, and the column says so.
  const { trainTokens: _t, trainSeconds: _s, ...old } = rs[1]!;
  assert.deepEqual(tps(flopsTable([rs[0]!, old])), [2000, "mean of rates"]);
  // One such run alone: its own rate, no mean; not called totals (it records none: after a resume
  // from a checkpoint without them, the rate covers only the steps since).
  assert.deepEqual(tps(flopsTable([old])), [3000, "run's rate"]);
  assert.deepEqual(tps(flopsTable([rs[0]!])), [1000, "totals"]);
});

Deno.test("flops.csv never combines a throughput across devices: a per-task seed's task runs on two is blank", async () => {
  // Prompt-Tuning's GLUE task runs of one seed: CoLA on a GPU, the others on the CPU.
  const all = [...BENCHMARK_TASKS.glue];
  const pt = await runs(
    all.map((task) =>
      spec("p", "tiny-v1_1", "prompt_tuning", "PT", 0, "glue", "random", {
        tasks: [task],
        perTaskOf: all,
      })
    ),
  );
  const onGpu = (r: RunResult) => on(r, "webgpu", "NVIDIA H100");
  const cells = (rs: RunResult[]) => {
    const t = flopsTable(rs);
    const head = t[0] as string[];
    const names = ["tokens_per_second", "tokens_per_second_from", "wall_seconds", "backend"];
    return t.filter((r) => r[0] === "run:p/glue").map((r) => names.map((n) => r[head.indexOf(n)]));
  };
  // One device: the task runs' totals, their summed wall time.
  const tokens = pt.reduce((a, r) => a + r.trainTokens!, 0);
  const seconds = pt.reduce((a, r) => a + r.trainSeconds!, 0);
  assert.deepEqual(cells(pt), [[roundHalfAway(tokens / seconds, 2), "totals", all.length, "fake"]]);
  // Two: one row (the seed is one result, its scores one row), no combined rate or time, and the
  // backends listed.
  const mixed = pt.map((r) => r.spec.tasks[0] === "cola" ? onGpu(r) : r);
  assert.deepEqual(cells(mixed), [[
    "",
    "none: task runs on 2 backends or devices",
    "",
    "fake webgpu",
  ]]);
  // The same on one other device: a rate again.
  assert.deepEqual(cells(pt.map(onGpu))[0]!.slice(1), ["totals", all.length, "webgpu"]);
});

Deno.test("tables keep two folders of one name apart: a row each, labelled by their paths", async () => {
  const at = (m: string, bb: RunSpec["backbone"] = "random") =>
    spec("p", "tiny-v1_1", "mtl", "MTL", 0, "glue", bb, { model: { hf: m } });
  const rs = await runs([
    at("/data/a/t5-base"),
    at("/data/b/t5-base"),
    // Another seed of the first: its row, seeds averaged.
    spec("p", "tiny-v1_1", "mtl", "MTL", 1, "glue", "random", { model: { hf: "/data/a/t5-base" } }),
    at("/data/a/t5-base", { hf: "/x/enc" }),
    at("/data/a/t5-base", { hf: "/y/enc" }),
  ]);
  const s = scoresTable(rs, []);
  const h = s[0] as string[];
  const rows = s.slice(1).map((r) => [r[h.indexOf("model")], r[h.indexOf("backbone")]]);
  assert.deepEqual(rows, [
    ["a/t5-base", "random"],
    ["a/t5-base", "x/enc"],
    ["a/t5-base", "y/enc"],
    ["b/t5-base", "random"],
  ]);
  assert.equal(s[1]![h.indexOf("seeds")], 2);
  // Each row's scores are its own folder's runs only.
  const b = rs[1]!;
  assert.equal(s[4]![h.indexOf("glue_partial_avg")], Math.round(b.averages.glue! * 100) / 100);
  // Every table names them alike, one row each.
  for (const t of [paramsTable(rs, []), flopsTable(rs)]) {
    const pairs = new Set(t.slice(1).map((r) => `${r[1]} ${r[2]}`));
    assert.deepEqual([...pairs].sort(), rows.map((r) => r.join(" ")), String(t[0]));
  }
  // flops.csv's MTL ratios are each folder's own: 1 in every row, none left blank.
  const f = flopsTable(rs);
  const ratio = (f[0] as string[]).indexOf("train_flops_x_mtl");
  assert.deepEqual(f.slice(1).map((r) => r[ratio]), [1, 1, 1, 1]);
  // attention_mass.csv too (a method with hyper-prompts).
  const hp = await runs(
    ["/data/a/t5-base", "/data/b/t5-base"].map((m) =>
      spec("p", "tiny-v1_1", "hyperprompt_global", "HP", 0, "glue", "random", { model: { hf: m } })
    ),
  );
  const models = new Set(attentionTable(hp).slice(1).map((r) => r[1]));
  assert.deepEqual([...models], ["a/t5-base", "b/t5-base"]);
  // A folder whose name no other shares keeps its name alone, as before.
  const one = scoresTable(rs.slice(0, 1), []);
  assert.equal(one[1]![h.indexOf("model")], "t5-base");
});

Deno.test("a hub model named as a preset, beside the preset: two rows, both matched to the preset's paper row", async () => {
  const paper = readPaperTable();
  const rs = await runs([
    spec("paper-base", "t5-v1_1-base", "mtl", "MTL", 0, "glue"),
    spec("paper-base", "t5-v1_1-base", "mtl", "MTL", 0, "glue", "random", {
      model: { hf: "google/t5-v1_1-base" },
    }),
  ]);
  const t = scoresTable(rs, paper);
  const h = t[0] as string[];
  assert.deepEqual(
    t.slice(1).map((r) => [r[h.indexOf("model")], r[h.indexOf("paper_row")]]),
    [["google/t5-v1_1-base", "main: t5-v1_1-base MTL"], ["t5-v1_1-base", "main: t5-v1_1-base MTL"]],
  );
});

/** A full GLUE result with `evals` replaced (best and average recomputed as a run's are). */
function withEvals(r: RunResult, evals: RunResult["evals"]): RunResult {
  const best = bestPerTask(evals);
  return {
    ...r,
    evals,
    best,
    averages: benchmarkAverages("glue", best, BENCHMARK_TASKS.glue, benchmarkAverage),
  };
}

/** GLUE evaluations at one step with the given group scores. */
function evalsAt(step: number, scores: Record<string, number>): RunResult["evals"] {
  return Object.entries(scores).map(([task, groupScore]) => ({
    step,
    task,
    metrics: {},
    groupScore,
  }));
}

/**
 * The best-step averages' worked example: all 8 GLUE tasks evaluated at steps 2000 and 4000, step
 * 6000 without RTE (`worked`), and a second seed's evaluations 2.75 above it (`plus`).
 */
function workedExample() {
  const all = { tasks: [...BENCHMARK_TASKS.glue] };
  const shared = { mrpc: 85, stsb: 85, qqp: 85, mnli: 80, qnli: 88 };
  const worked = [
    ...evalsAt(2000, { ...shared, cola: 60, sst2: 90, rte: 70 }),
    ...evalsAt(4000, { ...shared, cola: 50, sst2: 94, rte: 78 }),
    ...evalsAt(6000, { ...shared, cola: 58, sst2: 92 }),
  ];
  const plus = worked.map((e) => ({ ...e, groupScore: e.groupScore + 2.75 }));
  return { all, worked, plus };
}

Deno.test("scoresTable() gives T5's best single-step average beside the average of per-task bests", async () => {
  // The worked example: per step 80.375 (step 2000) and 80.625 (4000); per-task bests 81.875.
  // Step 6000 lacks RTE: skipped, though the mean of its 7 tasks is higher (81.86; below each
  // task's best, so the main column is the worked example's).
  const { all, worked, plus } = workedExample();
  const [s0, s1, other] = await runs([
    spec("p", "tiny-v1_1", "mtl", "MTL", 0, "glue", "random", all),
    spec("p", "tiny-v1_1", "mtl", "MTL", 1, "glue", "random", all),
    spec("p", "tiny-v1_1", "adapter", "Adapter", 0, "glue", "random", all),
  ]);
  const t = scoresTable([withEvals(s0!, worked), withEvals(s1!, plus)], []);
  const [head, row] = t as [string[], (string | number)[]];
  const col = (n: string) => row[head.indexOf(n)];
  // After each benchmark's own average columns, before the next benchmark's.
  assert.equal(head.indexOf("glue_best_step_avg"), head.indexOf("glue_partial_std") + 1);
  assert.equal(
    head.indexOf("super_glue_best_step_avg"),
    head.indexOf("super_glue_partial_std") + 1,
  );
  // Seeds 80.625 and 83.375: their mean (exact in binary and at 2 places), no std column; the
  // main column is unchanged: 81.875 and 84.625.
  assert.equal(col("glue_best_step_avg"), 82);
  assert.equal(col("glue_avg"), 83.25);
  assert.equal(col("glue_std"), roundHalfAway(2.75 / Math.SQRT2, 2));
  assert.equal(col("super_glue_best_step_avg"), "", "no SuperGLUE runs");
  // A seed without a step that evaluated every task (no per-step evaluations): blank, not the
  // other seed's value.
  const noSteps = withEvals(s1!, worked.filter((e) => e.step !== 4000 || e.task !== "rte"));
  const noStepsRow = scoresTable([withEvals(s0!, worked), { ...noSteps, evals: [] }], [])[1]!;
  assert.equal(noStepsRow[head.indexOf("glue_best_step_avg")], "");
  const incomplete = scoresTable([withEvals(s0!, worked.filter((e) => e.task !== "rte"))], []);
  assert.equal(incomplete[1]![head.indexOf("glue_best_step_avg")], "", "a step lacks RTE");
  // The fake's own evaluations (steps 2 and 4, all 8 tasks): the higher step mean.
  const stepMean = (step: number) =>
    other!.evals.filter((e) => e.step === step).reduce((a, e) => a + e.groupScore, 0) / 8;
  const fake = scoresTable([other!], []);
  assert.equal(
    fake[1]![head.indexOf("glue_best_step_avg")],
    roundHalfAway(Math.max(stepMean(2), stepMean(4)), 2),
  );
  // Two evaluations of one task at one step are an error naming the result.
  assert.throws(
    () => scoresTable([withEvals(s0!, [...worked, ...evalsAt(2000, { rte: 1 })])], []),
    /the result of run [0-9a-f]{12}: .*task rte has two evaluations at step 2000/,
  );
});

Deno.test("scoresTable() leaves the best single-step average blank for partial and perTask rows", async () => {
  const all = [...BENCHMARK_TASKS.glue];
  const pt = all.map((task) =>
    spec("p", "tiny-v1_1", "prompt_tuning", "PT", 0, "glue", "random", {
      tasks: [task],
      perTaskOf: all,
    })
  );
  // The fake evaluates every task run at steps 2 and 4: merged, every step is complete, and
  // only the perTask rule keeps the cell blank (separate step sequences).
  const rs = await runs([...pt, spec("p", "tiny-v1_1", "mtl", "MTL", 0, "glue")]);
  const t = scoresTable(rs, []);
  const head = t[0] as string[];
  const row = (m: string) => t.find((r) => r[head.indexOf("method")] === m)!;
  const cell = (m: string, c: string) => row(m)[head.indexOf(c)];
  assert.equal(typeof cell("PT", "glue_avg"), "number");
  assert.equal(cell("PT", "glue_best_step_avg"), "");
  // The MTL run of 2 tasks (RTE, CoLA): a partial average, no best-step one.
  assert.equal(typeof cell("MTL", "glue_partial_avg"), "number");
  assert.equal(cell("MTL", "glue_best_step_avg"), "");
});

Deno.test("ablationTable() gives scores.csv's best single-step averages, placed and blanked as there", async () => {
  // The worked example (per step 80.375 and 80.625; step 6000 lacks RTE) and a second seed
  // 2.75 above it: best-step 80.625 and 83.375, mean 82 (main column 83.25).
  const { all, worked, plus } = workedExample();
  const [s0, s1, sg] = await runs([
    ...[0, 1].map((seed) =>
      spec(
        "ablation",
        "tiny-v1_1",
        "hyperprompt_global",
        "HyperPrompt-Global",
        seed,
        "glue",
        "random",
        all,
      )
    ),
    // A SuperGLUE subset (CB): a partial average, so a blank best-step cell in both tables.
    spec("ablation", "tiny-v1_1", "hyperprompt_global", "HyperPrompt-Global", 0, "super_glue"),
  ]);
  const rs = [withEvals(s0!, worked), withEvals(s1!, plus), sg!];
  const a = ablationTable(rs, []);
  const s = scoresTable(rs, []);
  const [ah, arow] = a as [string[], (string | number)[]];
  const [sh, srow] = s as [string[], (string | number)[]];
  assert.equal(a.length, 2);
  assert.equal(s.length, 2);
  // After each benchmark's own average columns, as in scores.csv.
  assert.deepEqual(ah.slice(ah.indexOf("seeds"), ah.indexOf("paper_params_x_mtl")), [
    "seeds",
    "glue_tasks",
    "glue_avg",
    "glue_std",
    "glue_partial_avg",
    "glue_partial_std",
    "glue_best_step_avg",
    "super_glue_tasks",
    "super_glue_avg",
    "super_glue_std",
    "super_glue_partial_avg",
    "super_glue_partial_std",
    "super_glue_best_step_avg",
  ]);
  assert.equal(new Set(ah).size, ah.length, ah.join());
  assert.equal(arow.length, ah.length);
  const acol = (n: string) => arow[ah.indexOf(n)];
  const scol = (n: string) => srow[sh.indexOf(n)];
  assert.equal(acol("glue_best_step_avg"), 82);
  assert.equal(acol("glue_best_step_avg"), scol("glue_best_step_avg"));
  assert.equal(acol("glue_avg"), 83.25, "main column unchanged");
  assert.equal(typeof acol("super_glue_partial_avg"), "number");
  assert.equal(acol("super_glue_best_step_avg"), "");
  assert.equal(acol("super_glue_best_step_avg"), scol("super_glue_best_step_avg"));
  // A seed without a step that evaluated every task blanks the row in both tables.
  const blank = [withEvals(s0!, worked), { ...withEvals(s1!, plus), evals: [] }];
  const ab = ablationTable(blank, [])[1]!;
  assert.equal(ab[ah.indexOf("glue_best_step_avg")], "");
  assert.equal(scoresTable(blank, [])[1]![sh.indexOf("glue_best_step_avg")], "");
  // The same error as scores.csv's, naming the result, for two evaluations at one step.
  assert.throws(
    () => ablationTable([withEvals(s0!, [...worked, ...evalsAt(2000, { rte: 1 })])], []),
    /the result of run [0-9a-f]{12}: .*task rte has two evaluations at step 2000/,
  );
});

Deno.test("scoresTable(): a partial GLUE average gets no paper value; one seed lacking a task makes the row partial", async () => {
  const rs = await runs([
    hpGlobalBase("glue", ["cola", "rte"]),
    hpGlobalBase("super_glue", BENCHMARK_TASKS.super_glue),
  ]);
  const paper: PaperRow[] = [HP_GLOBAL_BASE_ROW];
  const [head, row] = scoresTable(rs, paper) as [string[], (string | number)[]];
  const col = (n: string) => row[head.indexOf(n)];
  assert.equal(col("glue_avg"), "");
  assert.notEqual(col("glue_partial_avg"), "");
  assert.equal(col("paper_glue_avg"), "", "no paper value next to a partial GLUE average");
  assert.equal(col("super_glue_avg"), roundHalfAway(rs[1]!.averages.super_glue!, 2));
  assert.equal(col("paper_super_glue_avg"), "77.9");
  // Two seeds of one configuration, the second without an RTE evaluation: not all 8 tasks ran
  // in every seed, so the mean is a partial average (never the full column), still 8 tasks.
  const two = await runs(
    [0, 1].map((seed) =>
      spec("paper-base", "t5-v1_1-base", "mtl", "MTL", seed, "glue", "pretrained", {
        tasks: [...BENCHMARK_TASKS.glue],
      })
    ),
  );
  const { rte: _, ...best } = two[1]!.best;
  two[1] = { ...two[1]!, best };
  const [h2, r2] = scoresTable(two, []) as [string[], (string | number)[]];
  const c2 = (n: string) => r2[h2.indexOf(n)];
  assert.equal(c2("glue_tasks"), 8);
  assert.equal(c2("glue_avg"), "");
  assert.equal(c2("glue_std"), "");
  assert.equal(
    c2("glue_partial_avg"),
    roundHalfAway((two[0]!.averages.glue! + two[1]!.averages.glue!) / 2, 2),
  );
});

Deno.test("flops.csv: no FLOP ratio where MTL rows of the same lengths disagree", async () => {
  const steps8 = { train: { ...DEFAULT_TRAIN, steps: 8, evalEvery: 4 } };
  const rs = await runs([
    spec("p", "tiny-v1_1", "mtl", "MTL", 0, "glue"),
    spec("p", "tiny-v1_1", "mtl", "MTL", 0, "glue", "random", steps8),
    spec("p", "tiny-v1_1", "hyperprompt_global", "HP", 0, "glue"),
  ]);
  const flops = (r: RunResult, train: number): RunResult => ({
    ...r,
    flops: { trainPerExample: train, inferencePerExample: 1_000_000 },
  });
  const agree = [flops(rs[0]!, 3_000_000), flops(rs[1]!, 3_000_000), flops(rs[2]!, 3_300_000)];
  const t = flopsTable(agree);
  const head = t[0] as string[];
  const hp = (tt: typeof t) => tt.find((r) => r[3] === "HP")!;
  assert.equal(hp(t)[head.indexOf("train_flops_x_mtl")], 1.1, "two MTL rows of one count");
  // MTL at two configurations of the same lengths counting different FLOPs: which is meant
  // would be a guess, so the ratio is blank (the inference counts still agree).
  const disagree = [agree[0]!, flops(rs[1]!, 3_100_000), agree[2]!];
  const t2 = flopsTable(disagree);
  assert.equal(hp(t2)[head.indexOf("train_flops_x_mtl")], "");
  assert.equal(hp(t2)[head.indexOf("inference_flops_x_mtl")], 1);
});

Deno.test("metrics.csv: each metric of each task at each seed's best step, mean and std over seeds, rows as scores.csv's", async () => {
  // Two seeds of MTL on GLUE (RTE, CoLA) and SuperGLUE (CB: F1 and accuracy); one on another
  // device (a row of its own, as in scores.csv); Prompt-Tuning's task runs merged per seed.
  const [g0, g1, s0, s1, gpu] = await runs([
    spec("p", "tiny-v1_1", "mtl", "mtl", 0, "glue"),
    spec("p", "tiny-v1_1", "mtl", "mtl", 1, "glue"),
    spec("p", "tiny-v1_1", "mtl", "mtl", 0, "super_glue"),
    spec("p", "tiny-v1_1", "mtl", "mtl", 1, "super_glue"),
    spec("p", "tiny-v1_1", "mtl", "mtl", 2, "super_glue"),
  ]);
  const pt = await runs(
    ["rte", "cola"].map((task) =>
      spec("p", "tiny-v1_1", "prompt_tuning", "PT", 0, "glue", "random", {
        tasks: [task],
        perTaskOf: ["rte", "cola"],
      })
    ),
  );
  const t = metricsTable([g0!, g1!, s0!, s1!, on(gpu!, "webgpu", "NVIDIA H100"), ...pt]);
  const head = t[0] as string[];
  assert.deepEqual(head.slice(0, 14), [
    "profile",
    "model",
    "backbone",
    "method",
    "method_name",
    "benchmark",
    "task",
    "metric",
    "mean",
    "std",
    "seeds",
    "seed_values",
    "best_steps",
    "config",
  ]);
  assert.deepEqual(head.slice(14), ["git_commit", "backend", "device", "software"]);
  const col = (r: (string | number)[], n: string) => r[head.indexOf(n)];
  const key = (r: (string | number)[]) =>
    ["method", "benchmark", "task", "metric", "backend"].map((n) => col(r, n)).join("/");
  const rows = t.slice(1);
  // Rows in scores.csv's row order: MTL's GLUE tasks in T5's order (CoLA before RTE), then CB's
  // metrics in the scorer's order; the seed on the GPU apart; Prompt-Tuning one row per task and
  // metric.
  assert.deepEqual(rows.map(key), [
    "mtl/glue/cola/matthews_corrcoef/fake",
    "mtl/glue/rte/accuracy/fake",
    "mtl/super_glue/cb/mean_3class_f1/fake",
    "mtl/super_glue/cb/accuracy/fake",
    "mtl/super_glue/cb/mean_3class_f1/webgpu",
    "mtl/super_glue/cb/accuracy/webgpu",
    "PT/glue/cola/matthews_corrcoef/fake",
    "PT/glue/rte/accuracy/fake",
  ]);
  // Values: the metric at each seed's best step (the step its group score chose), mean and
  // sample std over the seeds, the seeds and steps in the same order.
  const sd = (xs: number[]) => {
    const m = xs.reduce((a, x) => a + x, 0) / xs.length;
    return Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1));
  };
  for (
    const [task, metric, rs] of [["cola", "matthews_corrcoef", [g0!, g1!]], [
      "cb",
      "accuracy",
      [s0!, s1!],
    ]] as const
  ) {
    const row = rows.find((r) => col(r, "task") === task && col(r, "metric") === metric)!;
    const xs = rs.map((r) => r.best[task]!.metrics[metric]!);
    assert.equal(col(row, "mean"), roundHalfAway((xs[0]! + xs[1]!) / 2, 2), `${task} mean`);
    assert.equal(col(row, "std"), roundHalfAway(sd(xs), 2), `${task} std`);
    assert.equal(col(row, "seeds"), 2);
    assert.equal(col(row, "seed_values"), "0,1");
    assert.equal(col(row, "best_steps"), rs.map((r) => r.best[task]!.step).join(","));
    assert.equal(col(row, "config"), configId(rs[0]!.spec));
  }
  // The best step is the group score's, not the metric's own best: CB's F1 at that step.
  const cbF1 = rows.find((r) => col(r, "metric") === "mean_3class_f1")!;
  assert.equal(
    col(cbF1, "mean"),
    roundHalfAway(
      (s0!.best["cb"]!.metrics["mean_3class_f1"]! +
        s1!.best["cb"]!.metrics["mean_3class_f1"]!) / 2,
      2,
    ),
  );
  // One seed: std blank; its device named.
  const one = rows.find((r) => col(r, "backend") === "webgpu")!;
  assert.deepEqual([col(one, "seeds"), col(one, "std"), col(one, "device")], [
    1,
    "",
    "NVIDIA H100",
  ]);
  // A per-task method: each task from its own task run.
  const ptRte = rows.find((r) => col(r, "method") === "PT" && col(r, "task") === "rte")!;
  assert.equal(col(ptRte, "mean"), roundHalfAway(pt[0]!.best["rte"]!.metrics["accuracy"]!, 2));
  assert.equal(col(ptRte, "best_steps"), String(pt[0]!.best["rte"]!.step));
  // An undefined metric (NaN) makes its mean NaN, not a number.
  const nan = {
    ...g1!,
    best: { ...g1!.best, rte: { ...g1!.best["rte"]!, metrics: { accuracy: NaN } } },
  };
  const withNan = metricsTable([g0!, nan]);
  const rte = withNan.find((r) => r[head.indexOf("task")] === "rte")!;
  assert.ok(Number.isNaN(rte[head.indexOf("mean")]));
  // Invalid predictions, where recorded: a row after the task's metrics, the mean share.
  const withInvalid = (r: RunResult, count: number): RunResult => ({
    ...r,
    best: { ...r.best, cb: { ...r.best["cb"]!, invalid: { count, of: 16 } } },
  });
  const inv = metricsTable([withInvalid(s0!, 4), withInvalid(s1!, 16)]).slice(1)
    .map((r) => [r[head.indexOf("metric")], r[head.indexOf("mean")], r[head.indexOf("seeds")]]);
  assert.deepEqual(inv.map((r) => r[0]), ["mean_3class_f1", "accuracy", INVALID_PCT]);
  assert.deepEqual(inv[2], [INVALID_PCT, 62.5, 2]);
  // One seed without the record: the mean of those with it, that seed and its step only.
  const some = metricsTable([withInvalid(s0!, 4), s1!]).slice(1).at(-1)!;
  assert.deepEqual(
    [some[head.indexOf("seed_values")], some[head.indexOf("best_steps")]],
    ["0", String(s0!.best["cb"]!.step)],
  );
  assert.deepEqual([
    some[head.indexOf("metric")],
    some[head.indexOf("mean")],
    some[head.indexOf("seeds")],
  ], [INVALID_PCT, 25, 1]);
  // Tasks in T5's order (SST-2, MRPC before RTE), not alphabetically.
  const [three] = await runs([
    spec("p", "tiny-v1_1", "mtl", "mtl", 0, "glue", "random", { tasks: ["rte", "mrpc", "sst2"] }),
  ]);
  assert.deepEqual(
    [...new Set(metricsTable([three!]).slice(1).map((r) => r[head.indexOf("task")]))],
    ["sst2", "mrpc", "rte"],
  );
  // Header only without results; written by writeTables beside scores.csv.
  assert.deepEqual(metricsTable([]), [head]);
});

Deno.test("deno task tables from a subfolder: a relative --runs is read from the shell's folder (INIT_CWD), not the repository root", async () => {
  const out = await Deno.makeTempDir();
  try {
    const root = fileURLToPath(new URL("..", import.meta.url));
    const run = (runs: string) =>
      new Deno.Command(Deno.execPath(), {
        args: ["task", "-q", "tables", "--runs", runs, "--out", out],
        cwd: join(root, "benchmarks"),
        env: { NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
    const td = new TextDecoder();
    const ok = await run("../results/baselines/ci");
    assert.equal(ok.code, 0, td.decode(ok.stderr));
    assert.ok(await pathExists(join(out, "scores.csv")));
    // The repository root's spelling is not the shell's: refused, naming the folder looked for.
    const bad = await run("results/baselines/ci");
    assert.equal(bad.code, 2, td.decode(bad.stdout));
    assert.match(
      td.decode(bad.stderr),
      new RegExp(
        `--runs ${join(root, "benchmarks", "results", "baselines", "ci")}: no such folder`,
      ),
    );
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});
