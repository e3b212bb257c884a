import assert from "node:assert/strict";
import { fakeRunOne } from "./_fake_run_one.ts";
import { attentionMassSvg, scoreVsParamsSvg } from "./plots.ts";
import { DEFAULT_TRAIN, runId, type RunResult, type RunSpec } from "./spec.ts";
import {
  ablationTable,
  attentionTable,
  loadAccounting,
  paramsTable,
  readPaperTable,
  scoresTable,
  toCsv,
} from "./tables.ts";

function spec(
  profile: string,
  model: string,
  name: RunSpec["method"]["name"],
  label: string,
  seed: number,
  benchmark: "glue" | "super_glue",
  backbone: RunSpec["backbone"] = "random",
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
  };
  return { id: runId(body), ...body };
}

async function runs(specs: RunSpec[]): Promise<RunResult[]> {
  return await Promise.all(specs.map((s) => fakeRunOne(s, { outDir: "", dataDir: "" })));
}

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
  assert.equal(col("glue_std"), Math.round(sd * 100) / 100);
  assert.equal(col("paper_glue_avg"), "");
  assert.match(String(col("paper_source")), /not retrieved/);
  assert.match(
    toCsv(t).split("\n")[0]!,
    /^profile,model,backbone,method,method_name,seeds,glue\/cola,glue\/rte,super_glue\/cb,/,
  );
});

Deno.test("paramsTable() has analytic rows for every published size reproducing HyperFormer++ 0.29%", async () => {
  const acc = await loadAccounting();
  assert.ok(acc, "model/methods/accounting.ts should load");
  const t = paramsTable([], readPaperTable(), acc);
  const head = t[0] as string[];
  assert.equal(head[2], "backbone");
  const row = t.find((r) => r[1] === "t5-base" && r[3] === "hyperformer_pp (frozen)")!;
  assert.equal(row[2], "", "analytic rows have no backbone");
  assert.equal(row[head.indexOf("extra")], 5_163_440); // spec §5.3
  assert.equal(row[head.indexOf("trained")], 5_211_056);
  assert.equal(row[head.indexOf("trained_per_task_pct")], 0.2922);
  assert.equal(row[head.indexOf("paper_trained_per_task_pct")], "0.29");
  assert.equal(t.filter((r) => r[0] === "analytic" && r[1] === "t5-v1_1-xxl").length, 13);
});

Deno.test("ablationTable() reports parameters relative to MTL; attention rows per layer", async () => {
  const rs = await runs([
    spec("ablation", "tiny-v1_1", "mtl", "MTL", 0, "glue"),
    spec("ablation", "tiny-v1_1", "hyperprompt_global", "HyperPrompt-Global", 0, "glue"),
    spec("smoke", "tiny-v1_1", "mtl", "mtl", 0, "glue"),
  ]);
  const t = ablationTable(rs, readPaperTable());
  assert.equal(t.length, 3);
  const hp = t.find((r) => r[3] === "HyperPrompt-Global")!;
  const ratio = rs[1]!.params.total / rs[0]!.params.total;
  assert.equal(hp[2], "random");
  assert.equal(hp[6], `${ratio.toFixed(3)}x`);
  const a = attentionTable(rs);
  assert.equal(a.length, 1 + 2 * 2 * 2); // 2 tasks x 2 stacks x 2 layers, prompt method only
  assert.deepEqual(a[1]!.slice(0, 8), [
    "ablation",
    "tiny-v1_1",
    "random",
    "HyperPrompt-Global",
    "glue",
    "cola",
    "encoder",
    0,
  ]);
  const svg = scoreVsParamsSvg(rs);
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.equal(svg.match(/<circle /g)?.length, 3);
  assert.equal(attentionMassSvg(rs).match(/<polyline /g)?.length, 1);
  assert.match(attentionMassSvg([]), /no data/);
  const undefinedScore = { ...rs[0]!, averages: { glue: NaN } };
  const svg2 = scoreVsParamsSvg([undefinedScore, rs[1]!]);
  assert.equal(svg2.match(/<circle /g)?.length, 1);
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
  assert.equal(row[at("glue_avg")], Math.round(pre.averages.glue! * 100) / 100);
  for (const table of [paramsTable(rs, []), attentionTable(rs)]) {
    const h = table[0] as string[];
    assert.equal(h[2], "backbone");
    const bbs = new Set(table.slice(1).map((r) => r[2]));
    assert.ok(bbs.has("pretrained") && bbs.has("random"), `${h.join(",")}: ${[...bbs]}`);
  }
});
