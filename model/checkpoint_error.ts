/**
 * {@link CheckpointError}: the error of a checkpoint that is missing or unusable, in a module of
 * its own so that `config.ts`, `safetensors.ts` and `torch_bin.ts`, which `checkpoint.ts`
 * imports, can throw it without an import cycle.
 *
 * @module
 */

/**
 * A checkpoint file (or folder) that is missing, malformed, truncated or mismatched: its
 * `config.json`, weights (safetensors, PyTorch `.bin`, a sharded index or shard) or tokenizer.
 * Thrown by `loadT5`, `loadHfFolder`, `inspectHfFolder`, `t5ConfigFromHf` and the readers under
 * them, so that a caller can tell a bad checkpoint from the hub being unreachable
 * (`HubOfflineError`) without matching message text. The message names the file (and field).
 *
 * @example
 * ```ts
 * const e = new CheckpointError("ck/config.json: not found", { file: "ck/config.json" });
 * console.assert(e instanceof Error && e.name === "CheckpointError" && e.field === undefined);
 * ```
 */
export class CheckpointError extends Error {
  /** The file (or folder) at fault, as the message names it. */
  readonly file: string;
  /**
   * The field at fault, when there is one: a field of `file` (a `config.json` or index field)
   * or, for a weight of the wrong shape (`file` the weights file or shard), the field of the
   * checkpoint's `config.json` that gives the wrong dimension (`d_ff`, `num_heads`, ...).
   */
  readonly field?: string;

  /**
   * The error, with the file (and field) it names.
   *
   * @param message the whole message, naming the file (and field)
   * @param opts the file, the field and the error that caused it
   */
  constructor(message: string, opts: { file: string; field?: string; cause?: unknown }) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "CheckpointError";
    this.file = opts.file;
    if (opts.field !== undefined) this.field = opts.field;
  }

  /**
   * What a reader of `file` throws for `e`: a plain `Error` (the lower-level checks', each
   * naming the file) as a CheckpointError of `file` (and `field`, when the check was of one) with
   * its message, `e` as its cause; any other (a CheckpointError already, or a bug's TypeError) as
   * it is.
   *
   * @param e what was thrown
   * @param file the file being read
   * @param field the field of `file` being checked, when the check was of one
   * @returns the error to throw
   */
  static from(e: unknown, file: string, field?: string): unknown {
    if (!(e instanceof Error) || e.constructor !== Error) return e;
    return new CheckpointError(e.message, { file, field, cause: e });
  }
}
