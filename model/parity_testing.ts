/**
 * The tolerances of parity with Hugging Face on the `shared/fixtures/hf-t5` checkpoints, shared by
 * the tests that compare against them (`parity_test.ts`, whose module comment gives the
 * measurements they are set from, and `checkpoint_test.ts`'s PyTorch-file loads).
 *
 * @module
 */

/** Relative tolerances of a parity check. */
export interface ParityTolerances {
  /** Logits: max abs diff over the reference's largest |logit|. */
  readonly logitsRel: number;
  /** Encoder output: max abs diff over the reference's largest |value|. */
  readonly encoderRel: number;
  /** Loss: relative. */
  readonly lossRel: number;
  /** Each parameter's gradient L2 norm: relative. */
  readonly gradNormRel: number;
}

/** The CPU engines' (cpu, wasm, wasm+blas) tolerances: 2–4× the worst measured. */
export const HF_PARITY_TOL: ParityTolerances = {
  logitsRel: 2e-6,
  encoderRel: 1e-6,
  lossRel: 3e-7,
  gradNormRel: 3e-6,
};
