import assert from "node:assert/strict";
import {
  checkEndpointUrl,
  checkTaskSources,
  ENDPOINT_KEYS,
  findTaskSource,
  parquetShards,
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
      /^Error: V: glue "file:\/\/\/srv\/glue" is not an http: or https: URL$/,
    ],
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

Deno.test("parquetShards: a split name is matched literally, its regex metacharacters too", () => {
  const at = (...paths: string[]) => paths.map((path) => ({ type: "file", path }));
  // "v.1+" as a pattern would also match "vx11-…" (`.` any character, `+` a repeat).
  const listing = at("c/vx11-00000-of-00001.parquet", "c/v.1+-00000-of-00001.parquet");
  assert.deepEqual(parquetShards(listing, "v.1+", "L"), ["v.1+-00000-of-00001.parquet"]);
  assert.throws(
    () => parquetShards(at("c/vx11-00000-of-00001.parquet"), "v.1+", "L"),
    /^Error: L: no v\.1\+-NNNNN-of-NNNNN\.parquet listed$/,
  );
});
