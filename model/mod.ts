/**
 * T5 in TensorFlow.js and everything around it: configuration presets, layers and the
 * encoder-decoder, Hugging Face checkpoint, hub and tokenizer I/O, backend selection, parameter
 * and FLOP accounting, the method hook contract and the methods themselves.
 *
 * The T5 code (`t5.ts`, `layers.ts`) never imports a method: methods reach it through
 * {@link T5Hooks} (`hooks.ts`).
 *
 * @module
 */
export * from "./config.ts";
export * from "./hooks.ts";
export * from "./method.ts";
export * from "./t5.ts";
export * from "./accounting.ts";
export * from "./checkpoint.ts";
export * from "./tokenizer.ts";
export * from "./spm.ts";
export * from "./backend.ts";
export { dropout, dropoutMask, gatedGelu, rmsNorm } from "./fused.ts";
export * from "./pretrained.ts";
export * from "./methods/mod.ts";
// The exit codes and the argument error the tools share; their flag parsing stays internal.
export { EXIT_FAILURE, EXIT_USAGE, exitCodeOf, UsageError } from "./usage.ts";
// Types the exports above name in their signatures (their modules are not part of the API).
export type { SafetensorsDtype, TensorInfo } from "./safetensors.ts";
export { type FetchHubOptions, HubOfflineError } from "./hub.ts";
export {
  type AdapterId,
  type MatMulTuningTable,
  TUNING_FORMAT,
  TUNING_VERSION,
  type TuningEntry,
  type TuningRun,
} from "./webgpu/tuning.ts";
export type { TunedSelfCheck, WebgpuSelfCheck } from "./webgpu/mod.ts";
