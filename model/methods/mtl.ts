/**
 * MTL: vanilla T5 multi-task fine-tuning (spec §2.1). No task-specific parameters; the task is
 * identified only by the text prefix ("rte sentence1: …"), which is kept.
 *
 * @module
 */
import type { T5Config } from "../config.ts";
import type { Method, MethodContext, MethodInstance } from "../method.ts";
import {
  backboneTrainable,
  ConfigReader,
  type FreezeBackbone,
  trainedBackboneParams,
} from "./_config.ts";
import { contextTasks } from "./_init.ts";

/** MTL configuration. */
export interface MtlConfig {
  /** Backbone freezing (default false: every weight trained). */
  readonly freezeBackbone: FreezeBackbone;
  /** Keep the text task prefix (default true; the only task signal MTL has). */
  readonly keepTaskPrefix: boolean;
}

const DEFAULTS: MtlConfig = { freezeBackbone: false, keepTaskPrefix: true };

/**
 * The MTL method.
 *
 * @example
 * ```ts
 * import { mtl } from "./mtl.ts";
 * console.assert(mtl.parseConfig({}, "inline").keepTaskPrefix === true);
 * ```
 */
export const mtl: Method<MtlConfig> = {
  name: "mtl",
  description: "Vanilla T5 multi-task fine-tuning with text task prefixes (no extra parameters)",
  defaults: DEFAULTS,
  parseConfig(raw: unknown, source: string): MtlConfig {
    const r = new ConfigReader(raw, source, "mtl");
    const cfg = {
      freezeBackbone: r.freeze("freezeBackbone", DEFAULTS.freezeBackbone),
      keepTaskPrefix: r.bool("keepTaskPrefix", DEFAULTS.keepTaskPrefix),
    };
    r.done();
    return cfg;
  },
  create(ctx: MethodContext, cfg: MtlConfig): MethodInstance {
    // MTL has no per-task variable and its hooks ignore the task ids, but an empty task list is
    // refused here too, as by every method, so that no caller relies on MTL taking one.
    contextTasks(ctx, "model/methods/mtl.ts mtl.create");
    return {
      name: "mtl",
      variables: new Map(),
      keepTaskPrefix: cfg.keepTaskPrefix,
      isBackboneTrainable: (name) => backboneTrainable(cfg.freezeBackbone, name, ctx.config),
      hooks: () => ({}),
      dispose: () => {},
    };
  },
  countParams(config: T5Config, cfg: MtlConfig) {
    return {
      extra: 0,
      trainedBackbone: trainedBackboneParams(config, cfg.freezeBackbone),
    };
  },
  variableShapes() {
    return new Map<string, readonly number[]>();
  },
  flopPlan(_config: T5Config, cfg: MtlConfig) {
    return { freezeBackbone: cfg.freezeBackbone };
  },
};
