import assert from "node:assert/strict";
import { join } from "node:path";
import { sharedPath } from "../model/shared_dir.ts";
import { TASKS } from "./registry.ts";
import {
  checkEndpointUrl,
  checkTaskSources,
  ENDPOINT_KEYS,
  expandUrl,
  findTaskSource,
  officialFinalNewline,
  parquetShards,
  parquetUrl,
  parseEndpoints,
  TASK_SOURCES,
  type TaskSource,
} from "./sources.ts";

Deno.test("TASK_SOURCES: registry names are written in the entries; ids and HF configs as before", () => {
  // The ids (manifest `task`, download names) and HF configs (parquet URLs, cache file and lock
  // names) are those the suite has always used: naming entries explicitly changed no cache path.
  assert.deepEqual(TASK_SOURCES.map((t) => `${t.name} ${t.id} ${t.hfConfig}`), [
    "cola glue/cola cola",
    "sst2 glue/sst2 sst2",
    "mrpc glue/mrpc mrpc",
    "qqp glue/qqp qqp",
    "stsb glue/stsb stsb",
    "mnli glue/mnli mnli",
    "qnli glue/qnli qnli",
    "rte glue/rte rte",
    "wnli glue/wnli wnli",
    "ax glue/ax ax",
    "boolq super_glue/boolq boolq",
    "cb super_glue/cb cb",
    "copa super_glue/copa copa",
    "multirc super_glue/multirc multirc",
    "record super_glue/record record",
    "rte_sg super_glue/rte rte",
    "wic super_glue/wic wic",
    "wsc super_glue/wsc wsc",
    "axb super_glue/axb axb",
    "axg super_glue/axg axg",
    "dpr super_glue/dpr dpr",
  ]);
  // A name that is not its HF config is found by that name, and the bare config stays GLUE's.
  assert.equal(findTaskSource("rte_sg").id, "super_glue/rte");
  assert.equal(findTaskSource("RTE_SG").name, "rte_sg");
  assert.equal(findTaskSource("rte").name, "rte");
  assert.equal(findTaskSource("sg/rte").name, "rte_sg");
});

/** GLUE RTE's source copied as a new task with its own name, id and folder, sharing the config. */
function rteCopy(over: Partial<TaskSource> = {}): TaskSource {
  const rte = findTaskSource("glue/rte");
  return {
    ...rte,
    name: "rte_copy",
    id: "glue/rte_copy",
    folder: "RTE_copy",
    files: rte.files.map((f) => ({ ...f, path: f.path.replace("glue/RTE/", "glue/RTE_copy/") })),
    ...over,
  };
}

Deno.test("checkTaskSources: an added entry's clashes name the entry, field and the other entry", () => {
  checkTaskSources(TASK_SOURCES); // the table itself passes
  checkTaskSources([...TASK_SOURCES, rteCopy()]); // a new task may share an HF config (rte)
  const bad = (over: Partial<TaskSource>) => () =>
    checkTaskSources([...TASK_SOURCES, rteCopy(over)], "src.ts");
  const at = `src\\.ts: TASK_SOURCES\\[${TASK_SOURCES.length}\\]`;
  assert.throws(
    bad({ name: "rte_sg" }),
    new RegExp(
      `^Error: ${at} \\(name "rte_sg"\\)\\.name is also TASK_SOURCES\\[15\\] \\(name "rte_sg"\\)'s`,
    ),
  );
  assert.throws(
    bad({ id: "glue/rte" }),
    new RegExp(
      `${at} \\(name "rte_copy"\\)\\.id "glue/rte" is also TASK_SOURCES\\[7\\] \\(name "rte"\\)'s`,
    ),
  );
  assert.throws(bad({ id: "rte_copy" }), /\.id "rte_copy" is not "glue\/<name>" \(its benchmark\)/);
  assert.throws(
    bad({ name: "" }),
    /\.name is empty; it must be the task's key in tasks\/registry\.ts/,
  );
  assert.throws(bad({ files: [] }), /\(name "rte_copy"\)\.files is empty/);
  assert.throws(
    bad({ folder: "RTE2" }),
    /\.files\[0\]\.path "glue\/RTE_copy\/train\.tsv" is not under "glue\/RTE2\/"/,
  );
  // RTE's own files: both entries would claim them in the manifest and the data folder.
  assert.throws(
    bad({ folder: "RTE", files: findTaskSource("rte").files }),
    /\(name "rte_copy"\)\.files\[0\]\.path "glue\/RTE\/train\.tsv" is also a file of TASK_SOURCES\[7\] \(name "rte"\); give each task its own folder/,
  );
});

Deno.test("parseEndpoints: key=url lists and JSON objects; keys by any case or _/-; bad values named", () => {
  assert.deepEqual(ENDPOINT_KEYS, ["glue", "superGlue", "senteval", "dpr", "hf"]);
  assert.deepEqual(
    parseEndpoints(
      " glue=http://m/glue/ , SUPER_GLUE = https://m/sg,senteval=http://m:8080/se",
      "V",
    ),
    { glue: "http://m/glue/", superGlue: "https://m/sg", senteval: "http://m:8080/se" },
  );
  assert.deepEqual(parseEndpoints('{"dpr": "http://m/dpr", "super-glue": "http://m/sg"}', "V"), {
    dpr: "http://m/dpr",
    superGlue: "http://m/sg",
  });
  // A URL may hold "=" (in its path); only the first one splits.
  assert.deepEqual(parseEndpoints("hf=http://m/a=b", "V"), { hf: "http://m/a=b" });
  const bad: [string, RegExp][] = [
    [
      "  ",
      /^Error: V is empty \(an unset variable\?\).*allowed keys: glue, superGlue, senteval, dpr, hf/,
    ],
    ["glue=", /^Error: V: glue is empty: give the base URL of a mirror$/],
    ["glue=http://a,", /^Error: V: an empty entry in "glue=http:\/\/a," \(allowed keys: /],
    ["mrpc=http://a", /^Error: V: unknown endpoint "mrpc" \(allowed keys: glue, superGlue, /],
    ["=http://a", /^Error: V: "=http:\/\/a" is not key=url/],
    [
      "glue=file:///srv/glue",
      /^Error: V: glue "file:\/\/\/srv\/glue" is not an http: or https: URL; a folder that holds the task files in the official layout needs no download: give it to deno task bench or pretrain as --data-dir \(or HYPERPROMPT_DATA\)$/,
    ],
    ["glue=/srv/glue", /^Error: V: glue "\/srv\/glue" is not a URL \(e\.g\. .*\); a folder that /],
    ["glue=./glue", /^Error: V: glue "\.\/glue" is not a URL \(.*\); a folder that holds/],
    ["glue=C:\\data\\glue", /^Error: V: glue "C:\\data\\glue" is not an http: .*; a folder/],
    ["glue=ftp://m/glue", /^Error: V: glue "ftp:\/\/m\/glue" is not an http: or https: URL$/],
    ["glue=m.example", /^Error: V: glue "m\.example" is not a URL \(e\.g\. [^;]*$/],
    ["glue=http://a#x", /^Error: V: glue "http:\/\/a#x" has a query or fragment/],
    ["glue=http://a,glue=http://b", /^Error: V: glue given twice$/],
    ["[1]", /^Error: V: expected a JSON object/],
    ["{}x", /^Error: V: not valid JSON/],
    ['["glue"]', /^Error: V: expected a JSON object of key: URL; allowed keys: /],
    ['{"glue": null}', /^Error: V: glue must be a URL string, got null$/],
  ];
  for (const [text, want] of bad) assert.throws(() => parseEndpoints(text, "V"), want, text);
  assert.equal(checkEndpointUrl(" https://m/x ", "N"), "https://m/x");
});

Deno.test("parquetShards: a split name is matched literally, its regex metacharacters too; a set missing its last shard is refused", () => {
  const at = (...paths: string[]) => paths.map((path) => ({ type: "file", path }));
  // "v.1+" as a pattern would also match "vx11-…" (`.` any character, `+` a repeat).
  const listing = at("c/vx11-00000-of-00001.parquet", "c/v.1+-00000-of-00001.parquet");
  assert.deepEqual(parquetShards(listing, "v.1+", "L"), ["v.1+-00000-of-00001.parquet"]);
  assert.throws(
    () => parquetShards(at("c/vx11-00000-of-00001.parquet"), "v.1+", "L"),
    /^MissingSplitError: L: no v\.1\+-NNNNN-of-NNNNN\.parquet listed$/,
  );
  // The first shards of a set, its last one missing: not a full set.
  assert.throws(
    () => parquetShards(at("c/t-00000-of-00003.parquet", "c/t-00001-of-00003.parquet"), "t", "L"),
    /^Error: L: t's shards are not a full set: t-00000-of-00003\.parquet, t-00001-of-00003\.parquet$/,
  );
});

Deno.test("official URLs: each task's host (endpoint) and file, a trailing slash of an endpoint dropped", () => {
  // Endpoints given with a trailing slash, as a mirror's URL often is: no "//" in the result.
  const ends = { glue: "G/", superGlue: "S/", senteval: "E/", dpr: "D/", hf: "H/" };
  const urls = TASK_SOURCES.map((t) => {
    const o = t.official;
    const raw = o.kind === "mrpc" ? Object.values(o.parts).map((p) => p.url) : [o.url];
    return `${t.name}: ${raw.map((u) => expandUrl(u, ends)).join(" ")}`;
  });
  // Reference glue-superglue.md §1.1-1.3: GLUE's zips (QQP-clean, QNLIv2), MRPC from SentEval
  // with GLUE's dev ids, SuperGLUE v2's zips, DPR from the authors' folder.
  assert.deepEqual(urls, [
    "cola: G/CoLA.zip",
    "sst2: G/SST-2.zip",
    "mrpc: E/msr_paraphrase_train.txt E/msr_paraphrase_test.txt G/mrpc_dev_ids.tsv",
    "qqp: G/QQP-clean.zip",
    "stsb: G/STS-B.zip",
    "mnli: G/MNLI.zip",
    "qnli: G/QNLIv2.zip",
    "rte: G/RTE.zip",
    "wnli: G/WNLI.zip",
    "ax: G/AX.tsv",
    "boolq: S/BoolQ.zip",
    "cb: S/CB.zip",
    "copa: S/COPA.zip",
    "multirc: S/MultiRC.zip",
    "record: S/ReCoRD.zip",
    "rte_sg: S/RTE.zip",
    "wic: S/WiC.zip",
    "wsc: S/WSC.zip",
    "axb: S/AX-b.zip",
    "axg: S/AX-g.zip",
    "dpr: D/train.c.txt",
  ]);
  assert.equal(
    parquetUrl(findTaskSource("cola"), "train", ends),
    "H/datasets/nyu-mll/glue/resolve/main/cola/train-00000-of-00001.parquet",
  );
});

Deno.test("hfSplit: the parquet split of each file is its own split, except MNLI's matched and mismatched ones", () => {
  // The parquet fallback fills each file from its hfSplit: MNLI's dev_mismatched.tsv filled from
  // validation_matched would be a wrong file of a plausible size.
  const differing = TASK_SOURCES.flatMap((t) => t.files)
    .filter((f) => f.hfSplit !== f.split)
    .map((f) => `${f.path} ${f.split} ${f.hfSplit}`);
  assert.deepEqual(differing, [
    "glue/MNLI/dev_matched.tsv validation validation_matched",
    "glue/MNLI/dev_mismatched.tsv validation validation_mismatched",
    "glue/MNLI/test_matched.tsv test test_matched",
    "glue/MNLI/test_mismatched.tsv test test_mismatched",
  ]);
});

Deno.test("officialFinalNewline: measured on the mirror's GLUE TSVs (only CoLA dev lacks it); else unknown", async () => {
  const data = sharedPath("data");
  const seen: Record<string, string[]> = { true: [], false: [], undefined: [] };
  for (const spec of Object.values(TASKS)) {
    for (const files of Object.values(spec.files)) {
      for (const { path } of files ?? []) {
        const got = officialFinalNewline(path);
        seen[String(got)]!.push(path);
        const bytes = await Deno.readFile(join(data, path)).catch(() => undefined);
        // Measured: a GLUE file of the mirror (byte-exact copies) answers whether it ends with
        // "\n"; a GLUE file the mirror lacks, and every SuperGLUE file, is not measured.
        const want = path.startsWith("glue/") && bytes !== undefined
          ? bytes[bytes.length - 1] === 10
          : undefined;
        assert.equal(got, want, path);
      }
    }
  }
  assert.deepEqual(seen.false, ["glue/CoLA/dev.tsv"]);
  assert.equal(seen.true!.length, 14);
  // Only layout paths, spelled exactly, are known.
  for (const path of ["CoLA/dev.tsv", "glue/cola/dev.tsv", "glue/RTE/test.tsv.gz", ""]) {
    assert.equal(officialFinalNewline(path), undefined, path);
  }
});
