/**
 * GLUE / SuperGLUE tasks: registry, strict loaders, T5 text-to-text formats, T5 metrics and
 * postprocessing (tasks engineer), plus the downloader, data-directory resolution and the
 * mixture sampler (data engineer).
 *
 * @module
 */
export * from "./types.ts";
export * from "./registry.ts";
export {
  type BytesOptions,
  examplesFromBytes,
  type FileExamples,
  loadExamples,
  type LoadOptions,
} from "./load.ts";
export {
  DataError,
  decodeUtf8,
  type DprRecord,
  type JsonRow,
  parseDpr,
  parseJsonl,
  parseTsv,
  pyFloat,
  pyStrip,
  type TsvOptions,
  type TsvRow,
  type TsvTable,
} from "./parse.ts";
export * from "./text.ts";
export * from "./postprocess.ts";
export * from "./metrics.ts";
export * from "./data.ts";
export * from "./download.ts";
export * from "./mixture.ts";
export * from "./sources.ts";
