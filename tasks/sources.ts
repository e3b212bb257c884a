/**
 * Where the GLUE and SuperGLUE files come from, what they must look like once written, and how
 * big each one is. Everything here is data; `download.ts` acts on it.
 *
 * Layout written (the OFFICIAL one, the same as the offline mirror `shared/data`):
 * `glue/<Folder>/<file>` as inside the GLUE zips (AX is saved as `glue/diagnostic/diagnostic.tsv`
 * as GLUE's `download_glue_data.py` does) and `super_glue/<Folder>/<file>` as inside the
 * SuperGLUE v2 zips (validation is `val.jsonl`).
 *
 * Checksums: `sha256` of a written file is the full digest of the official file where it is
 * known (from `shared/data/SHA256SUMS`, byte-exact copies of the official files).
 * `sha256Prefix` of an archive is the prefix given in the research notes
 * (`shared/reference/glue-superglue.md` §1.1); the full digest computed on download is
 * recorded in the cache manifest.
 *
 * @module
 */

/** The two benchmarks, also the top folder names of the layout. */
export type Benchmark = "glue" | "super_glue";

/** Coarse split a file belongs to (MNLI has two files per validation/test split). */
export type Split = "train" | "validation" | "test";

/** How rows are counted to check a file. */
export type RowCount =
  /** Non-empty lines, less one header line when `header` is true. */
  | "lines"
  /** MultiRC: number of answers over all passages and questions. */
  | "multirc_answers"
  /** ReCoRD: number of queries (`qas`) over all passages. */
  | "record_queries"
  /** DPR: number of four-line records (`parse.ts` `parseDpr`, which also checks them). */
  | "dpr_records";

/** One file of the official layout. */
export interface FileSpec {
  /** Path under the data root, e.g. `glue/CoLA/train.tsv`. */
  readonly path: string;
  /** Coarse split. */
  readonly split: Split;
  /** Hugging Face parquet split name for the fallback source (e.g. `validation_matched`). */
  readonly hfSplit: string;
  /** Expected row count (see `count`). */
  readonly rows: number;
  /** What `rows` counts; default `"lines"`. */
  readonly count?: RowCount;
  /** TSV with a header line (only meaningful for `count: "lines"`). */
  readonly header: boolean;
  /** Full sha256 (hex) of the official file, where known. */
  readonly sha256?: string;
}

/**
 * Whether the official file at `path` (layout path) ends with a newline, as measured on
 * `../shared/data` (byte-exact copies): `false` for CoLA dev, `true` for every other GLUE TSV
 * there, `undefined` where not measured (the GLUE files the mirror lacks: QQP, MNLI, QNLI, WNLI,
 * AX; SuperGLUE, whose JSON lines cannot be cut unseen). `hf_convert.ts`'s GLUE writer ends a
 * file with a newline unless `false` (its SuperGLUE writer ends every `test.jsonl` without one, as
 * CB's and RTE's are, the rest with one); `load.ts` refuses a file read without it where `true`.
 */
export function officialFinalNewline(path: string): boolean | undefined {
  return FINAL_NEWLINE.get(path);
}

const FINAL_NEWLINE: ReadonlyMap<string, boolean> = new Map([
  ["glue/CoLA/dev.tsv", false],
  ...["glue/CoLA/train.tsv", "glue/CoLA/test.tsv"].map((p) => [p, true] as const),
  ...["SST-2", "MRPC", "STS-B", "RTE"].flatMap((t) =>
    ["train", "dev", "test"].map((s) => [`glue/${t}/${s}.tsv`, true] as const)
  ),
]);

/** Primary (official host) source of one task. */
export type OfficialSource =
  /** A zip whose entries `<innerDir>/<file name>` become the task's files. */
  | {
    readonly kind: "zip";
    readonly url: string;
    readonly bytes?: number;
    readonly sha256Prefix?: string;
    readonly innerDir: string;
  }
  /** A single file saved as the task's only file. */
  | {
    readonly kind: "file";
    readonly url: string;
    readonly bytes?: number;
    readonly sha256Prefix?: string;
  }
  /** MRPC: built from the SentEval files and GLUE's dev ids like `download_glue_data.py`. */
  | { readonly kind: "mrpc"; readonly parts: Readonly<Record<MrpcPart, RawFile>> };

/** A raw input file of a built source. */
export interface RawFile {
  /** Where the file is downloaded from. */
  readonly url: string;
  /**
   * Expected size in bytes, where known: a shorter transfer is resumed, a longer one deleted as
   * bad.
   */
  readonly bytes?: number;
  /**
   * Leading hex digits of the file's sha256 (from the research notes), where known; a download
   * whose digest does not start with them is deleted as bad.
   */
  readonly sha256Prefix?: string;
}

/** The three raw inputs GLUE's script uses to build MRPC. */
export type MrpcPart = "train" | "test" | "devIds";

/**
 * One task's data: its files, its official source, its Hugging Face parquet fallback.
 *
 * A new task's entry in {@link TASK_SOURCES} needs: `name`, its key in the task registry
 * (`tasks/registry.ts` `TASKS`; the two are matched by this name only, never by `id` or
 * `hfConfig`); a new `id`; `files`, the same paths as the registry entry's files, under
 * `<benchmark>/<folder>/` and no other entry's; `official`, where the download fetches them first;
 * `hfConfig`, the Hugging Face config its parquet fallback converts (`hf_convert.ts` knows the
 * configs of {@link HF_REPOS} listed here); and `parquet: false` when that fallback does not apply
 * (a config `hf_convert.ts` does not convert, or data not on the hub, as DPR). Checked when this
 * module loads ({@link checkTaskSources}).
 */
export interface TaskSource {
  /**
   * Canonical id, `<benchmark>/<…>`, unique; for the built-in tasks `<benchmark>/<hf config>`
   * (`glue/cola`, `super_glue/rte`). The download's task name and each file's `task` in the
   * cache manifest.
   */
  readonly id: string;
  /**
   * The task's key in the tasks registry (`tasks/registry.ts` TASKS): `cola`, …, `rte_sg`, `axb`;
   * unique. The registry, `data.ts` `availableTasks` and `registry.ts` `sourceId` find the entry
   * by it.
   */
  readonly name: string;
  /** Benchmark the task belongs to, also the top folder of its files. */
  readonly benchmark: Benchmark;
  /** Folder under `<root>/<benchmark>/`. */
  readonly folder: string;
  /**
   * Hugging Face dataset config of the parquet fallback in `HF_REPOS[benchmark]` (`cola`, `rte`,
   * `wsc`, `axb`, …), which also picks `hf_convert.ts`'s conversion of its rows; several tasks may
   * share one. It also names the task's parquet downloads and download lock in the cache
   * (`<benchmark>-<hfConfig>-…`), so it is set with `parquet: false` too (DPR: `dpr`).
   */
  readonly hfConfig: string;
  /** Every file the task's folder must hold once written. */
  readonly files: readonly FileSpec[];
  /** How the files are obtained from the official host (required: the download tries it first). */
  readonly official: OfficialSource;
  /**
   * `false`: no Hugging Face parquet fallback, when the official source fails the download fails,
   * saying so. Set it when {@link HF_REPOS} has no such config (DPR is not in the GLUE / SuperGLUE
   * repositories) or `hf_convert.ts` does not convert `hfConfig` (it would fail with "no parquet
   * converter for … config …").
   */
  readonly parquet?: false;
}

/**
 * Base URLs; each may be overridden: `download.ts` takes them from its `endpoints` option, else
 * {@link ENDPOINTS_ENV}, else (`hf` only) `HF_ENDPOINT`, else {@link DEFAULT_ENDPOINTS}.
 */
export interface Endpoints {
  /**
   * DPR's folder (Rahman and Ng, EMNLP 2012, as TFDS `definite_pronoun_resolution` downloads
   * it), default `http://www.hlt.utdallas.edu/~vince/data/emnlp12`.
   */
  readonly dpr: string;
  /** GLUE data folder, default `https://dl.fbaipublicfiles.com/glue/data`. */
  readonly glue: string;
  /** SuperGLUE v2 folder, default `https://dl.fbaipublicfiles.com/glue/superglue/data/v2`. */
  readonly superGlue: string;
  /** SentEval data folder (MRPC), default `https://dl.fbaipublicfiles.com/senteval/senteval_data`. */
  readonly senteval: string;
  /**
   * Hugging Face host of the parquet fallback, default `https://huggingface.co` (`HF_ENDPOINT`
   * when that is set, as for the model download).
   */
  readonly hf: string;
}

/** The official hosts. */
export const DEFAULT_ENDPOINTS: Endpoints = {
  dpr: "http://www.hlt.utdallas.edu/~vince/data/emnlp12",
  glue: "https://dl.fbaipublicfiles.com/glue/data",
  superGlue: "https://dl.fbaipublicfiles.com/glue/superglue/data/v2",
  senteval: "https://dl.fbaipublicfiles.com/senteval/senteval_data",
  hf: "https://huggingface.co",
};

/** The keys of {@link Endpoints}, as `HYPERPROMPT_DATA_ENDPOINTS` and `--endpoint` name them. */
export const ENDPOINT_KEYS: readonly (keyof Endpoints)[] = [
  "glue",
  "superGlue",
  "senteval",
  "dpr",
  "hf",
];

/**
 * The environment variable pointing the data download at mirrors of the official hosts:
 * `key=url,key=url` or a JSON object, keys {@link ENDPOINT_KEYS} (see {@link parseEndpoints}).
 */
export const ENDPOINTS_ENV = "HYPERPROMPT_DATA_ENDPOINTS";

/** The endpoint key `name` stands for: exact, or any case with `_`/`-` ignored (`super_glue`). */
function endpointKey(name: string): keyof Endpoints | undefined {
  const norm = (k: string) => k.toLowerCase().replace(/[_-]/g, "");
  return ENDPOINT_KEYS.find((k) => k === name) ?? ENDPOINT_KEYS.find((k) => norm(k) === norm(name));
}

/**
 * Checks one endpoint's base URL: an absolute `http:` or `https:` URL without a query or
 * fragment (the file names are appended to it).
 *
 * @param url the value
 * @param named what gave it, for errors (`HYPERPROMPT_DATA_ENDPOINTS: glue`, `--endpoint glue`)
 * @returns the URL as given, trimmed
 * @throws Error naming `named` and the value
 */
export function checkEndpointUrl(url: string, named: string): string {
  const u = url.trim();
  if (u === "") throw new Error(`${named} is empty: give the base URL of a mirror`);
  // A folder given for a mirror: the files on disk need no download at all.
  const folderHint = /^(\/|\.{1,2}[\\/]|~|[A-Za-z]:[\\/]|file:)/i.test(u)
    ? "; a folder that holds the task files in the official layout needs no download: give " +
      "it to deno task bench or pretrain as --data-dir (or HYPERPROMPT_DATA)"
    : "";
  let parsed: URL;
  try {
    parsed = new URL(u);
  } catch {
    throw new Error(
      `${named} "${u}" is not a URL (e.g. https://mirror.example/glue)${folderHint}`,
    );
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new Error(
      `${named} "${u}" is not an http: or https: URL${folderHint}`,
    );
  }
  if (parsed.search !== "" || parsed.hash !== "") {
    throw new Error(
      `${named} "${u}" has a query or fragment; give a base URL the file names can follow`,
    );
  }
  return u;
}

/**
 * Parses endpoint overrides: `key=url` entries separated by commas, or a JSON object of
 * `"key": "url"`. Keys are {@link ENDPOINT_KEYS} (case and `_`/`-` ignored, so `super_glue` is
 * `superGlue`); each URL is checked by {@link checkEndpointUrl}.
 *
 * @param text the value
 * @param named the variable or flag that gave it, for errors
 * @returns the endpoints it sets
 * @throws Error naming `named`, the entry and the allowed keys: an empty value or entry, an
 *   unknown or repeated key, a value that is not an http(s) base URL, bad JSON
 */
export function parseEndpoints(text: string, named: string): Partial<Endpoints> {
  const allowed = `allowed keys: ${ENDPOINT_KEYS.join(", ")}`;
  const t = text.trim();
  if (t === "") {
    throw new Error(
      `${named} is empty (an unset variable?): give key=url[,key=url…] (${allowed})`,
    );
  }
  let entries: [string, unknown][];
  if (t.startsWith("{") || t.startsWith("[")) {
    let obj: unknown;
    try {
      obj = JSON.parse(t);
    } catch (e) {
      throw new Error(`${named}: not valid JSON (${(e as Error).message}); ${allowed}`);
    }
    if (obj === null || typeof obj !== "object" || Array.isArray(obj)) {
      throw new Error(`${named}: expected a JSON object of key: URL; ${allowed}`);
    }
    entries = Object.entries(obj);
  } else {
    entries = t.split(",").map((part) => {
      const p = part.trim();
      const eq = p.indexOf("=");
      if (p === "") throw new Error(`${named}: an empty entry in "${t}" (${allowed})`);
      if (eq <= 0) throw new Error(`${named}: "${p}" is not key=url (${allowed})`);
      return [p.slice(0, eq).trim(), p.slice(eq + 1)];
    });
  }
  const out: Partial<Record<keyof Endpoints, string>> = {};
  for (const [name, value] of entries) {
    const key = endpointKey(name);
    if (key === undefined) throw new Error(`${named}: unknown endpoint "${name}" (${allowed})`);
    if (out[key] !== undefined) throw new Error(`${named}: ${key} given twice`);
    if (typeof value !== "string") {
      throw new Error(`${named}: ${key} must be a URL string, got ${JSON.stringify(value)}`);
    }
    out[key] = checkEndpointUrl(value, `${named}: ${key}`);
  }
  return out;
}

/** Hugging Face dataset repositories of the parquet fallback. */
export const HF_REPOS: Readonly<Record<Benchmark, string>> = {
  glue: "nyu-mll/glue",
  super_glue: "aps/super_glue",
};

type F = Omit<FileSpec, "path"> & { name: string };

function files(prefix: string, specs: F[]): FileSpec[] {
  return specs.map(({ name, ...rest }) => ({ path: `${prefix}/${name}`, ...rest }));
}

/** Standard train/dev/test TSV trio of a GLUE task. */
function glueTsv(
  folder: string,
  rows: [number, number, number],
  sha: [string?, string?, string?] = [],
  header: [boolean, boolean, boolean] = [true, true, true],
): FileSpec[] {
  return files(`glue/${folder}`, [
    {
      name: "train.tsv",
      split: "train",
      hfSplit: "train",
      rows: rows[0],
      header: header[0],
      sha256: sha[0],
    },
    {
      name: "dev.tsv",
      split: "validation",
      hfSplit: "validation",
      rows: rows[1],
      header: header[1],
      sha256: sha[1],
    },
    {
      name: "test.tsv",
      split: "test",
      hfSplit: "test",
      rows: rows[2],
      header: header[2],
      sha256: sha[2],
    },
  ]);
}

/** Standard train/val/test JSONL trio of a SuperGLUE task. */
function sgJsonl(
  folder: string,
  rows: [number, number, number],
  sha: [string?, string?, string?] = [],
  count: RowCount = "lines",
): FileSpec[] {
  return files(`super_glue/${folder}`, [
    {
      name: "train.jsonl",
      split: "train",
      hfSplit: "train",
      rows: rows[0],
      header: false,
      count,
      sha256: sha[0],
    },
    {
      name: "val.jsonl",
      split: "validation",
      hfSplit: "validation",
      rows: rows[1],
      header: false,
      count,
      sha256: sha[1],
    },
    {
      name: "test.jsonl",
      split: "test",
      hfSplit: "test",
      rows: rows[2],
      header: false,
      count,
      sha256: sha[2],
    },
  ]);
}

function glueZip(
  name: string,
  folder: string,
  bytes?: number,
  sha256Prefix?: string,
): OfficialSource {
  return { kind: "zip", url: `{glue}/${name}`, bytes, sha256Prefix, innerDir: folder };
}

function sgZip(folder: string, bytes: number, sha256Prefix: string): OfficialSource {
  return { kind: "zip", url: `{superGlue}/${folder}.zip`, bytes, sha256Prefix, innerDir: folder };
}

/**
 * Every task this suite can fetch, each with its registry name (`name`). URLs carry `{glue}`,
 * `{superGlue}`, `{senteval}` and `{dpr}` placeholders filled from {@link Endpoints}. Row counts
 * and sizes: reference §1.1–1.3.
 */
export const TASK_SOURCES: readonly TaskSource[] = [
  {
    name: "cola",
    id: "glue/cola",
    benchmark: "glue",
    folder: "CoLA",
    hfConfig: "cola",
    files: glueTsv("CoLA", [8551, 1043, 1063], [
      "cb368ebeb9f27d7ad03720d27ddc95687a311bdb100781a2fe59a5f5b1bc0624",
      "8c013e21dc39957cac37378d87bebe225b694a0d5fe13eded66c2856628833fd",
      "3b4df85f7a9a0633574b38d181e18090ac961a24b18fb6bcd74999ddea8ad0b8",
    ], [false, false, true]),
    official: glueZip("CoLA.zip", "CoLA", 376971, "f212fcd8"),
  },
  {
    name: "sst2",
    id: "glue/sst2",
    benchmark: "glue",
    folder: "SST-2",
    hfConfig: "sst2",
    files: glueTsv("SST-2", [67349, 872, 1821], [
      "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1",
      "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0",
      "69a938605609b3e6663b4487918fe1565eb293734e6e520d0366d1d412fd2a13",
    ]),
    official: glueZip("SST-2.zip", "SST-2", 7439277, "d67e16fb"),
  },
  {
    name: "mrpc",
    id: "glue/mrpc",
    benchmark: "glue",
    folder: "MRPC",
    hfConfig: "mrpc",
    files: [
      ...glueTsv("MRPC", [3668, 408, 1725], [
        "122becc469405bc16f9defcb8715d2a4b7ce600e9d9381e6dc42bfdd1494c51d",
        "81c8a1a9e1dfe461dd2c1a4f98f43fe18bece44d2bf9e3d0b245b88e5aa5eaf7",
        "4ee428d354c01fa35c2f0f6ab835398abb0bec01f17ed68fbcb6c04265505b0a",
      ]),
    ],
    official: {
      kind: "mrpc",
      parts: {
        train: {
          url: "{senteval}/msr_paraphrase_train.txt",
          bytes: 1047044,
          sha256Prefix: "60a9b090",
        },
        test: {
          url: "{senteval}/msr_paraphrase_test.txt",
          bytes: 441275,
          sha256Prefix: "a04e2710",
        },
        devIds: {
          url: "{glue}/mrpc_dev_ids.tsv",
          bytes: 6222,
          sha256Prefix: "971d7767d81b997fd9060ade0ec23c4fc31cbb226a55d1bd4a1bac474eb81dc7",
        },
      },
    },
  },
  {
    name: "qqp",
    id: "glue/qqp",
    benchmark: "glue",
    folder: "QQP",
    hfConfig: "qqp",
    // QQP-clean.zip (the file HF reads); its train has 363,846 rows (the old QQP.zip 363,849).
    files: glueTsv("QQP", [363846, 40430, 390965]),
    official: glueZip("QQP-clean.zip", "QQP", 41696084),
  },
  {
    name: "stsb",
    id: "glue/stsb",
    benchmark: "glue",
    folder: "STS-B",
    hfConfig: "stsb",
    files: glueTsv("STS-B", [5749, 1500, 1379], [
      "41c4d978b6162abdcada7e49a982211954cca5459c228db478af333124b257a2",
      "fe7dc0632a5033562f3cadff991f6e8d9b9b6311861660e78c3c82eb7db67f59",
      "16b4223d7d44a644fbc10f1b449472cfe81e1715fb07cf44023b0aa88ce856eb",
    ]),
    official: glueZip("STS-B.zip", "STS-B", 802872, "e60a6393"),
  },
  {
    name: "mnli",
    id: "glue/mnli",
    benchmark: "glue",
    folder: "MNLI",
    hfConfig: "mnli",
    files: files("glue/MNLI", [
      { name: "train.tsv", split: "train", hfSplit: "train", rows: 392702, header: true },
      {
        name: "dev_matched.tsv",
        split: "validation",
        hfSplit: "validation_matched",
        rows: 9815,
        header: true,
      },
      {
        name: "dev_mismatched.tsv",
        split: "validation",
        hfSplit: "validation_mismatched",
        rows: 9832,
        header: true,
      },
      {
        name: "test_matched.tsv",
        split: "test",
        hfSplit: "test_matched",
        rows: 9796,
        header: true,
      },
      {
        name: "test_mismatched.tsv",
        split: "test",
        hfSplit: "test_mismatched",
        rows: 9847,
        header: true,
      },
    ]),
    official: glueZip("MNLI.zip", "MNLI", 312783507, "e7c1d896"),
  },
  {
    name: "qnli",
    id: "glue/qnli",
    benchmark: "glue",
    folder: "QNLI",
    hfConfig: "qnli",
    files: glueTsv("QNLI", [104743, 5463, 5463]),
    official: glueZip("QNLIv2.zip", "QNLI", 10627589),
  },
  {
    name: "rte",
    id: "glue/rte",
    benchmark: "glue",
    folder: "RTE",
    hfConfig: "rte",
    files: glueTsv("RTE", [2490, 277, 3000], [
      "41e3a9b063433392343fad9e962cf2f58b681c78d8f71592f4186f0837246c5c",
      "80230dfa1347282e7b532b06a1004a76a710087541189bf874223ddf0e3819fb",
      "6e33f09b5c2bfd5fd5fde217070f3dd49e484e33b9752b5864cf36fc421a213f",
    ]),
    official: glueZip("RTE.zip", "RTE", 697150, "6bf86de1"),
  },
  {
    name: "wnli",
    id: "glue/wnli",
    benchmark: "glue",
    folder: "WNLI",
    hfConfig: "wnli",
    files: glueTsv("WNLI", [635, 71, 146]),
    official: glueZip("WNLI.zip", "WNLI", 28999, "ae0e8e4d"),
  },
  {
    name: "ax",
    id: "glue/ax",
    benchmark: "glue",
    folder: "diagnostic",
    hfConfig: "ax",
    files: files("glue/diagnostic", [
      { name: "diagnostic.tsv", split: "test", hfSplit: "test", rows: 1104, header: true },
    ]),
    official: { kind: "file", url: "{glue}/AX.tsv", bytes: 222257, sha256Prefix: "0e13510b" },
  },
  {
    name: "boolq",
    id: "super_glue/boolq",
    benchmark: "super_glue",
    folder: "BoolQ",
    hfConfig: "boolq",
    files: sgJsonl("BoolQ", [9427, 3270, 3245], [
      undefined,
      "0c86a5045886e5795fe9052003873f7d94b88ed3028a33007c51d99e44fd66d9",
    ]),
    official: sgZip("BoolQ", 4118001, "853fbe79"),
  },
  {
    name: "cb",
    id: "super_glue/cb",
    benchmark: "super_glue",
    folder: "CB",
    hfConfig: "cb",
    files: sgJsonl("CB", [250, 56, 250], [
      "32017480d3a10508646e3efd64502c639f13d4d15077f278d2fd0992c33a3126",
      "c6125587e9601560cb16ea223c33964c5a915568d2af68a81f651b6ef25395ec",
      "860679c4ef6f56758f5530bfbcbf2fd7905667184144f3594ace9bb4c435618d",
    ]),
    official: sgZip("CB", 75482, "8d641383"),
  },
  {
    name: "copa",
    id: "super_glue/copa",
    benchmark: "super_glue",
    folder: "COPA",
    hfConfig: "copa",
    files: sgJsonl("COPA", [400, 100, 500], [
      undefined,
      "fa61467cc251010178ed72f8ca82a0fceefc4ca9a85f87ec3b6102955e1a1f1a",
    ]),
    official: sgZip("COPA", 43986, "405906cd"),
  },
  {
    name: "multirc",
    id: "super_glue/multirc",
    benchmark: "super_glue",
    folder: "MultiRC",
    hfConfig: "multirc",
    files: sgJsonl("MultiRC", [27243, 4848, 9693], [], "multirc_answers"),
    official: sgZip("MultiRC", 1116225, "b3cd4408"),
  },
  {
    name: "record",
    id: "super_glue/record",
    benchmark: "super_glue",
    folder: "ReCoRD",
    hfConfig: "record",
    files: sgJsonl("ReCoRD", [100730, 10000, 10000], [], "record_queries"),
    official: sgZip("ReCoRD", 51757880, "30c7b651"),
  },
  {
    name: "rte_sg",
    id: "super_glue/rte",
    benchmark: "super_glue",
    folder: "RTE",
    hfConfig: "rte",
    files: sgJsonl("RTE", [2490, 277, 3000], [
      "fdfb03443abe3ec0424b7fc5d1a8863361719bc061338b7a63e56b94d615f201",
      "ab990507bf5f35dc176cba7770a72bfa2c50a88ed72b8cc95cfbf9db95ab1af1",
      "fb4025a8b072862f0323423dff1de8980a024bfb8775e09c80ff3cf1c77677b1",
    ]),
    official: sgZip("RTE", 750920, "6310aab3"),
  },
  {
    name: "wic",
    id: "super_glue/wic",
    benchmark: "super_glue",
    folder: "WiC",
    hfConfig: "wic",
    files: sgJsonl("WiC", [5428, 638, 1400], [
      undefined,
      "9f7207c88beba42cbc139de4c62ce05b23bffc189b3d561594b160e0c3920c0b",
    ]),
    official: sgZip("WiC", 396213, "ee7e67f4"),
  },
  {
    name: "wsc",
    id: "super_glue/wsc",
    benchmark: "super_glue",
    folder: "WSC",
    hfConfig: "wsc",
    files: sgJsonl("WSC", [554, 104, 146], [
      undefined,
      "e5c685ea4bdc347354036a28176459f6feeb0b6870375ecfb3d6ddb1f0e28bef",
    ]),
    official: sgZip("WSC", 32751, "2ed6dfa9"),
  },
  {
    name: "axb",
    id: "super_glue/axb",
    benchmark: "super_glue",
    folder: "AX-b",
    hfConfig: "axb",
    files: files("super_glue/AX-b", [
      { name: "AX-b.jsonl", split: "test", hfSplit: "test", rows: 1104, header: false },
    ]),
    official: sgZip("AX-b", 33950, "43b45c55"),
  },
  {
    name: "axg",
    id: "super_glue/axg",
    benchmark: "super_glue",
    folder: "AX-g",
    hfConfig: "axg",
    files: files("super_glue/AX-g", [
      { name: "AX-g.jsonl", split: "test", hfSplit: "test", rows: 356, header: false },
    ]),
    official: sgZip("AX-g", 10413, "2d4e00d3"),
  },
  {
    // Train only: T5's SuperGLUE mixture trains dpr_v001_simple (reference §3.5); its test
    // file (564 records) is not used. No digest is known: the row count is the check.
    name: "dpr",
    id: "super_glue/dpr",
    benchmark: "super_glue",
    folder: "DPR",
    hfConfig: "dpr",
    files: files("super_glue/DPR", [
      {
        name: "train.c.txt",
        split: "train",
        hfSplit: "train",
        rows: 1322,
        header: false,
        count: "dpr_records",
      },
    ]),
    official: { kind: "file", url: "{dpr}/train.c.txt" },
    parquet: false,
  },
];

/**
 * Checks a source table for the mistakes an added entry can make, which would otherwise show up
 * as a download that writes another task's files or a task never found: a `name` or `id` used
 * twice, an `id` not `<benchmark>/…`, no files, or a file outside `<benchmark>/<folder>/` or
 * listed by two entries (both would claim it in the cache manifest and the data folder).
 * Run on {@link TASK_SOURCES} when this module loads.
 *
 * @param sources the table
 * @param where how errors name the table (default `tasks/sources.ts`)
 * @throws Error naming `where`, the entry (by index and name) and field, and the clash
 */
export function checkTaskSources(
  sources: readonly TaskSource[],
  where = "tasks/sources.ts",
): void {
  const names = new Map<string, number>();
  const ids = new Map<string, number>();
  const paths = new Map<string, number>();
  const label = (i: number) => `TASK_SOURCES[${i}] (name ${JSON.stringify(sources[i]!.name)})`;
  const fail = (i: number, what: string): never => {
    throw new Error(`${where}: ${label(i)}${what}`);
  };
  sources.forEach((t, i) => {
    if (t.name === "") fail(i, ".name is empty; it must be the task's key in tasks/registry.ts");
    const sameName = names.get(t.name);
    if (sameName !== undefined) fail(i, `.name is also ${label(sameName)}'s; names are unique`);
    names.set(t.name, i);
    if (!t.id.startsWith(`${t.benchmark}/`) || t.id.length <= t.benchmark.length + 1) {
      fail(i, `.id ${JSON.stringify(t.id)} is not "${t.benchmark}/<name>" (its benchmark)`);
    }
    const sameId = ids.get(t.id);
    if (sameId !== undefined) fail(i, `.id ${JSON.stringify(t.id)} is also ${label(sameId)}'s`);
    ids.set(t.id, i);
    if (t.files.length === 0) fail(i, ".files is empty");
    const dir = `${t.benchmark}/${t.folder}/`;
    t.files.forEach((f, j) => {
      if (!f.path.startsWith(dir)) {
        fail(i, `.files[${j}].path ${JSON.stringify(f.path)} is not under "${dir}"`);
      }
      const other = paths.get(f.path);
      if (other !== undefined && other !== i) {
        fail(
          i,
          `.files[${j}].path ${JSON.stringify(f.path)} is also a file of ${label(other)}; ` +
            "give each task its own folder",
        );
      }
      paths.set(f.path, i);
    });
  });
}

// Checked when the module loads, so an added entry fails every tool at once, naming the field.
checkTaskSources(TASK_SOURCES);

/** Short names accepted besides the canonical ids (case-insensitive). */
const ALIASES: Readonly<Record<string, string>> = {
  "sst-2": "glue/sst2",
  "sts-b": "glue/stsb",
  diagnostic: "glue/ax",
  "ax-b": "super_glue/axb",
  "ax-g": "super_glue/axg",
  "wsc.fixed": "super_glue/wsc",
};

/**
 * Finds a task source by id, registry name (`TaskSource.name`: `rte_sg`) or common name:
 * `glue/cola`, `cola`, `glue_cola`, `CoLA`, `super_glue/rte`, `super_glue_rte`, `superglue-rte`,
 * `sg_rte`, `axb`, `AX-b`, `boolq`… A bare `rte` (or `ax`) means GLUE's; SuperGLUE's is `rte_sg`
 * or needs a `super_glue` / `superglue` / `sg` prefix. Throws naming the known ids.
 */
export function findTaskSource(name: string): TaskSource {
  const raw = name.trim().toLowerCase();
  const direct = TASK_SOURCES.find((t) => t.id === raw) ??
    TASK_SOURCES.find((t) => t.name === raw);
  if (direct) return direct;
  const aliased = ALIASES[raw];
  if (aliased) return TASK_SOURCES.find((t) => t.id === aliased)!;
  const m = /^(glue|super_?glue|sg)[_/\-:](.+)$/.exec(raw);
  const bench: Benchmark | undefined = m ? (m[1] === "glue" ? "glue" : "super_glue") : undefined;
  const rest = m ? m[2]! : raw;
  const restId = ALIASES[rest]?.split("/")[1] ?? rest.replace(/-/g, "");
  const candidates = TASK_SOURCES.filter((t) =>
    (bench === undefined || t.benchmark === bench) &&
    (t.name === rest || t.hfConfig === restId || t.folder.toLowerCase() === rest)
  );
  // Bare names shared by both benchmarks (rte) resolve to GLUE.
  const pick = candidates.find((t) => t.benchmark === "glue") ?? candidates[0];
  if (!pick) {
    throw new Error(
      `unknown task "${name}"; known: ${TASK_SOURCES.map((t) => t.id).join(", ")}`,
    );
  }
  return pick;
}

/** Fills `{glue}`, `{superGlue}`, `{senteval}`, `{dpr}` in a source URL. */
export function expandUrl(url: string, endpoints: Endpoints): string {
  return url
    .replace("{dpr}", endpoints.dpr.replace(/\/$/, ""))
    .replace("{glue}", endpoints.glue.replace(/\/$/, ""))
    .replace("{superGlue}", endpoints.superGlue.replace(/\/$/, ""))
    .replace("{senteval}", endpoints.senteval.replace(/\/$/, ""));
}

/**
 * URL of a Hugging Face parquet file of one split of one task (main branch layout), by default
 * its only shard `<split>-00000-of-00001.parquet`.
 *
 * @param task the task
 * @param hfSplit the Hugging Face split
 * @param endpoints base URLs
 * @param file the file name in the config's folder, when the split is sharded (see
 *   {@link parquetTreeUrl})
 */
export function parquetUrl(
  task: TaskSource,
  hfSplit: string,
  endpoints: Endpoints,
  file = `${hfSplit}-00000-of-00001.parquet`,
): string {
  return `${endpoints.hf.replace(/\/$/, "")}/datasets/${HF_REPOS[task.benchmark]}/resolve/main/` +
    `${task.hfConfig}/${file}`;
}

/**
 * URL of the hub's listing of a task's config folder on the main branch (JSON entries with
 * `path`), from which the shards of a split stored as several files are found.
 */
export function parquetTreeUrl(task: TaskSource, endpoints: Endpoints): string {
  return `${endpoints.hf.replace(/\/$/, "")}/api/datasets/${HF_REPOS[task.benchmark]}/tree/main/` +
    `${task.hfConfig}`;
}

/** {@link parquetShards}'s error for a listing without any shard of the split. */
export class MissingSplitError extends Error {
  /** The error class's name, `"MissingSplitError"`. */
  override name = "MissingSplitError";
}

/**
 * The shard file names of `hfSplit` in a hub folder listing (`<split>-NNNNN-of-MMMMM.parquet`),
 * in shard order.
 *
 * @param listing the parsed JSON of {@link parquetTreeUrl}
 * @param hfSplit the split
 * @param where the listing's URL, for errors
 * @returns the names, at least one
 * @throws Error when the listing is not an array of entries or its shards are not the full
 *   numbered set; {@link MissingSplitError} when it has no shard of the split
 */
export function parquetShards(listing: unknown, hfSplit: string, where: string): string[] {
  if (!Array.isArray(listing)) throw new Error(`${where}: expected a JSON array of files`);
  const esc = RegExp.escape(hfSplit);
  const re = new RegExp(`(?:^|/)(${esc}-(\\d{5})-of-(\\d{5})\\.parquet)$`);
  const found: { name: string; i: number; n: number }[] = [];
  for (const e of listing) {
    const path = (e as { path?: unknown } | null)?.path;
    const m = typeof path === "string" ? re.exec(path) : null;
    if (m) found.push({ name: m[1]!, i: Number(m[2]), n: Number(m[3]) });
  }
  if (found.length === 0) {
    throw new MissingSplitError(`${where}: no ${hfSplit}-NNNNN-of-NNNNN.parquet listed`);
  }
  found.sort((a, b) => a.i - b.i);
  const n = found[0]!.n;
  if (found.some((f, i) => f.i !== i || f.n !== n) || found.length !== n) {
    throw new Error(
      `${where}: ${hfSplit}'s shards are not a full set: ${found.map((f) => f.name).join(", ")}`,
    );
  }
  return found.map((f) => f.name);
}
