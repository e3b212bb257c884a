/**
 * Closed-form training-memory estimate of one optimizer step: weights, gradients (and the
 * gradient accumulator of micro-batches), optimizer state, and what one micro-batch's forward and
 * backward pass keep alive, so that a run that cannot fit the device is refused before minutes of
 * setup, and {@link largestFittingMicroBatch} can pick `train.microBatchSize`.
 *
 * How the activations are counted: the T5 forward pass of `model/t5.ts` is replayed on shapes only
 * (no tensor is made), op by op, with what tfjs's autodiff does with each op
 * (`tfjs-core` `engine.gradients` / `tape.backpropagateGradients`, 4.22):
 *
 * - The forward pass runs in one `tf.tidy` (`forward`), and each sublayer of a block (self-
 *   attention, cross-attention, feed-forward, each with its residual) in a nested one
 *   (`model/t5.ts` `sublayerScopes`): what a sublayer made and no tape node saved is freed when
 *   it ends; the rest (saved tensors, what the outer tidy made: embeddings, position biases,
 *   masks, the cross-attention keys/values, the logits) is alive until the pass returns. The
 *   forward peak is the most alive at one time (the saved tensors so far plus one sublayer's).
 *   With the fused kernels (webgpu) a freed buffer returns to tfjs-webgpu's pool only when the
 *   command batch that reads it is submitted (every `submitBatch` dispatches): modelled as
 *   `submitBatch` forward buffers later (each is made by at least one dispatch), as the backward
 *   pass's frees are (below). Before this was modelled (the fused forward freed nothing), the
 *   forward pass set the Vanilla Adapter's and HyperFormer++'s estimate (`paper-base`: 199.7 GB
 *   against 143.7 GB for their backward pass) while their measured forward peak was 0.72–0.78
 *   of it (software Vulkan adapter, tiny-v1_1, batch 8–16 × 64–128 / 16).
 * - A tape node that saves a variable keeps a clone sharing the variable's buffer: counted with
 *   the weights only.
 * - Every op on the tape keeps the tensors its gradient declares (`inputsToSave`,
 *   `outputsToSave`; e.g. MatMul both operands, Add both inputs, Softmax its output,
 *   `HpAttentionSoftmax` its output, bias and mask) until the backward pass ends.
 * - The backward pass, two models ({@link MemoryInput.backprop}):
 *   - `"low-memory"` (`model/backprop.ts`, installed by `model/backend.ts` `selectBackend` unless
 *     `HYPERPROMPT_STOCK_BACKPROP=1`): after each tape node, the gradients of its outputs (never
 *     a trained variable's) and the scratch gradients it made (a `dx` summed into an existing
 *     gradient) are freed, so the peak is the saved tensors plus the gradients live at one node:
 *     those of the trained variables reached so far and of the tensors still waiting for their
 *     producer (the residual stream, the encoder output the decoder layers share, ...).
 *   - `"stock"` (tfjs's own `engine.gradients`): the gradient of **every** intermediate tensor
 *     stays in its accumulation map until the pass returns (nothing is released per node), so
 *     its peak is the saved tensors plus one gradient per intermediate on the path from the
 *     trained variables to the loss; about twice the low-memory one for T5.
 * - The global gradient norm (`benchmarks/trainer.ts` `globalGradNorm`) squares one gradient at a
 *   time: the gradients plus the largest trained variable's square (on webgpu, where a freed
 *   square waits for its command buffer, the squares of the submit batch's worth of the largest
 *   gradients).
 * - Index tensors are counted where the step makes them: the batch (int32 input ids, decoder
 *   input ids and labels, float32 attention mask; alive for the whole step, and a micro-batch's
 *   slices of them during its passes: {@link MemoryEstimate.batchTensors}), the shared lookup's
 *   joined ids, the position buckets, the methods' gather indices, the loss's label masks and
 *   indices, Prompt-Tuning's mask of ones, each saved by its gather (or Concat, Where, Add) to
 *   the end of the backward pass; in evaluation, the evaluator's input ids and attention mask
 *   (alive for the whole decoding: {@link MemoryEstimate.evalBatchTensors}) and each decoding
 *   step's decoder ids and position buckets. int32 and float32 elements count 4 bytes each (the
 *   default bytesPerElement), bool 1 (cpu, wasm; webgpu keeps bool in 4-byte words: 3 bytes per
 *   target token more, not counted). Scalars are not counted (about 100 bytes at the measured rows).
 * - Token embeddings: one lookup of both stacks' ids in `shared.weight` (model/t5.ts
 *   sharedLookup), or, for a model whose config lists stacks with their own table
 *   (`T5Config.ownEmbeddings`, which model/t5.ts t5FromTensors sets from the checkpoint's
 *   tensors), one lookup per stack in its table; their weights, gradients and optimizer state
 *   are counted from `t5ParamShapes`, which lists the own tables. A configuration read from a
 *   `config.json` alone never lists them (the tensors decide); the bench's preflight
 *   (benchmarks/cli.ts `preflightModelConfig`) adds them from the checkpoint's tensor index and
 *   tables (model/own_embeddings.ts) before the weights are loaded.
 * - Bytes are counted per data buffer (a reshape, a clone, or a gradient that is `dy` reshaped,
 *   shares its input's buffer), which is what a GPU allocates; tfjs's `tf.memory().numBytes` and
 *   `tf.profile().peakBytes` count each tensor handle instead, and overstate that.
 *
 * Kernel sets modelled: `"composite"` (stock tfjs ops: the cpu backend and tfjs-node /
 * tfjs-node-gpu, which register none of the project's kernels), `"fused"` (the kernels of
 * `model/fused.ts` and `model/heads.ts` on webgpu, where a freed buffer waits for its command
 * buffer), and `"fused-wasm"` / `"fused-wasm-blas"` (the subset wasm registers, freed at once;
 * see {@link KernelSet}). T5X's z-loss ({@link MemoryInput.zLoss}) costs the stock ops a few
 * `[tokens]` tensors, and a fused cross-entropy kernel four `[tokens, vocab]` temporaries in the
 * backward pass unless its gradient kernel folds the term in (model/fused.ts
 * `LSE_GRAD_IN_KERNEL`: webgpu and wasm do). Label smoothing ({@link MemoryInput.labelSmoothing})
 * costs the stock ops the Mean's gradient, three `[tokens, vocab]` at once, and the fused kernels
 * nothing (ε is their attribute). The composite set is validated against measured
 * peaks on the cpu backend with both backward passes (benchmarks/memory_test.ts); the fused one follows the same rules with
 * the fused kernels' saved tensors, and is not measured in CI (no GPU there). On the software
 * Vulkan adapter (tiny-v1_1, low-memory backward pass, AdamW, batch 2–16 × 16–128 / 4–16) the
 * measured training-step peak (tfjs-webgpu's live buffer bytes) is 0.81–1.01 of the estimate for
 * MTL, 0.98–1.01 for the Vanilla Adapter and 0.96–1.03 for HyperFormer++ (measured before the
 * adapters' fixed-op rewrite, f679b75; after it, gpu_check --quick --sections=memory reads 1.00 for
 * its adapter row and 0.94–0.95 for MTL's, which now read the gradient norm); the adapters' forward
 * pass alone measures up to 1.10 of its estimate (their hooks keep about 7 % more than the
 * replay's saved tensors, as on cpu, see benchmarks/memory_test.ts), which stays below their
 * backward pass's estimate at these and the paper's shapes.
 *
 * Evaluation (the `"evaluation"` phase): `benchmarks/run_one.ts` greedy-decodes between training
 * steps at the micro-batch (`train.microBatchSize ?? train.batchSize`), with the weights and the
 * optimizer state alive. The same replay runs without a tape (nothing saved, each tidy frees what
 * it made but its result): the encoder, the cross-attention keys and values, and the last
 * decoding step with the self-attention cache of every earlier position (the step's new cache and
 * the old one both alive) and the logits over the vocabulary. {@link MemoryEstimate.peak} is the
 * larger of the training step's and evaluation's peaks, so the preflight
 * (`benchmarks/device_memory.ts`) checks both; {@link MemoryEstimate.trainingPeak} is the step's
 * alone. Validated on the cpu backend in benchmarks/memory_test.ts (0.99 to 1.00 of the measured
 * peak). On webgpu a freed buffer returns to the pool up to one command batch late; not counted
 * for evaluation.
 *
 * The adapter methods' hooks (Vanilla Adapter, HyperFormer++) are replayed op by op
 * (`taskAdapters` of model/methods/_tensor.ts): with several tasks present, the masked block
 * formulation (down projection of all present tasks at once `[rows, u·a]`, gelu_new, the task
 * mask, up projection, per-example bias rows, the post-adapter LayerNorm, the residual); with
 * HyperFormer++ also, for each (layer, position), the task projector's ops and the generated
 * weights. Their gelu_new and LayerNorm are `tf.customGrad`s
 * (model/methods/_tensor.ts) saving only the input, resp. x̂ and the per-row σ.
 *
 * Where a method's tensors enter T5 is read from its `flopPlan` (model/accounting.ts `FlopPlan`),
 * not its name: prompt rows joined to the encoder input, prefix keys and values per conditioned
 * self-attention, bottleneck adapters, and elementwise tensors after a sublayer (a trained row of
 * d per example, added or multiplied in as the plan's `op` says; multiplied, the larger, where
 * it does not). The built-in implementations add what their plan cannot say (HyperPrompt-Global's
 * shared hypernetwork, HyperPrompt-Share's and -Sep's local networks per block, the adapters'
 * LayerNorms, HyperFormer++'s generated weights). For another registered method,
 * {@link MemoryEstimate.notes} names it and says what its estimate assumes (its adapters as the
 * Vanilla Adapter's ops, a prefix or adapter weights without the activations of whatever
 * generates them) or cannot count (parameters its plan places nowhere: no activations of them),
 * and the preflight logs it.
 *
 * Not counted: the webgpu buffer pool keeps released buffers for reuse by exact size, so a device
 * holds at least the peak (about the peak for the fixed shapes of a run); framework/driver
 * overhead and the tokenizer/data on the host. Keep a margin (see {@link fitsDevice}).
 *
 * @module
 */
import type { T5Config } from "../model/config.ts";
import type { BackpropMode } from "../model/backend.ts";
import { t5ParamShapes } from "../model/t5.ts";
import type { FlopPlan } from "../model/accounting.ts";
import type { Stack } from "../model/hooks.ts";
import type { Method } from "../model/method.ts";
import {
  adapter as adapterMethod,
  getMethod,
  hyperformerPP,
  hyperpromptGlobal,
  hyperpromptSep,
  hyperpromptShare,
  mtl,
  mtlPrompt,
  promptTuning,
} from "../model/methods/mod.ts";
import { backboneTrainable } from "../model/methods/_config.ts";
import { adafactorFactoredAxes } from "./optim.ts";
import { DEFAULT_SUBMIT_BATCH } from "../model/webgpu/submit_batch.ts";
import { ADAFACTOR_UNFACTORED_MAX } from "../model/webgpu/in_place.ts";
import { LSE_GRAD_IN_KERNEL } from "../model/fused.ts";

/**
 * Which kernels run the step: stock tfjs ops (`"composite"`: cpu, tfjs-node, tfjs-node-gpu), or
 * the fused ones of `model/fused.ts` / `model/heads.ts` on webgpu (`"fused"`: a freed buffer
 * returns to the pool only when its command buffer is submitted) or on wasm (`"fused-wasm"`:
 * wasm and wasm+blas, whose `free` returns a buffer to the heap at once, and whose optimizer
 * updates run in place).
 */
export type KernelSet = "composite" | "fused" | "fused-wasm" | "fused-wasm-blas";

/** Every {@link KernelSet}, for validation and messages. */
export const KERNEL_SETS: readonly KernelSet[] = [
  "composite",
  "fused",
  "fused-wasm",
  "fused-wasm-blas",
];

/**
 * Which of the project's kernels a set registers (model/fused.ts `hasKernel`: an op without its
 * kernel runs its composite fallback), and whether frees wait for a command buffer. webgpu
 * (model/webgpu/) has them all; wasm (model/fused.ts `WASM_KERNELS`) has dropout, gated GELU,
 * RMS norm and the softmax cross-entropy but not `HpDropoutAdd`, `HpGatedGeluDropout` or
 * `HpAttentionSoftmax`, and the head products (`HpHeadScores`, `HpHeadContext`) only with
 * OpenBLAS (model/wasm_kernels.ts `registerHeadKernels`).
 */
interface KernelOps {
  readonly dropout: boolean;
  readonly dropoutAdd: boolean;
  readonly gatedGelu: boolean;
  readonly gatedGeluDropout: boolean;
  readonly rmsNorm: boolean;
  readonly heads: boolean;
  readonly attentionSoftmax: boolean;
  readonly xent: boolean;
  /**
   * With `xent`: the gradient kernel also adds z-loss's term `dlse · softmax(x)` in its
   * one pass (model/fused.ts `LSE_GRAD_IN_KERNEL`, by the set's backend); without, the
   * registered gradient adds it with four stock ops of the logits' size.
   */
  readonly xentLseGrad: boolean;
}

function kernelOps(k: KernelSet): KernelOps {
  const all = k === "fused", wasm = k === "fused-wasm" || k === "fused-wasm-blas";
  return {
    dropout: all || wasm,
    dropoutAdd: all,
    gatedGelu: all || wasm,
    gatedGeluDropout: all,
    rmsNorm: all || wasm,
    heads: all || k === "fused-wasm-blas",
    attentionSoftmax: all,
    xent: all || wasm,
    xentLseGrad: all ? LSE_GRAD_IN_KERNEL.has("webgpu") : wasm && LSE_GRAD_IN_KERNEL.has("wasm"),
  };
}

/**
 * Which backward pass runs: `model/backprop.ts`'s, which frees each intermediate's gradient after
 * its last use (what `selectBackend` installs; `model/backend.ts` `backpropFromEnv` says which is
 * in effect), or tfjs's own, which keeps them all until the pass returns. model/backend.ts's type
 * (a type-only import: the estimate loads no backend).
 */
export type { BackpropMode };

/** The backward pass {@link estimateTrainingMemory} models when the input names none. */
export const DEFAULT_BACKPROP: BackpropMode = "low-memory";

/** Optimizer state rules (benchmarks/optim.ts). */
export type OptimizerMemory =
  | {
    readonly kind: "adafactor";
    /** Factor second moments of rank ≥ 2 variables (default true). */
    readonly factored?: boolean;
    /** Mesh TF's rule (`train.adafactor.minDimSizeToFactor`); absent: Hugging Face's rule. */
    readonly minDimSizeToFactor?: number;
    /** First-moment decay; > 0 adds a full-size first moment (default 0). */
    readonly beta1?: number;
    /**
     * Mesh TF's relative step (`train.adafactor.multiplyByParameterScale`; default false): the
     * op-by-op update also squares the parameter for its RMS.
     */
    readonly multiplyByParameterScale?: boolean;
    /** `train.weightDecay` (default 0): the op-by-op update's decay term (product, difference). */
    readonly weightDecay?: number;
    /**
     * T5X's `train.adafactor.weightDecayRate` (default 0): folded into the decay term, or, with
     * the parameter scale or at a step whose learning rate is 0, a term of its own that the
     * fused updates do not take (benchmarks/optim.ts: such a step runs op by op on every backend).
     */
    readonly weightDecayRate?: number;
    /**
     * Some step runs at learning rate 0 (a `warmup_linear` schedule's first step): with
     * `weightDecayRate` > 0 that step runs op by op (default false).
     */
    readonly zeroLearningRateStep?: boolean;
  }
  | {
    readonly kind: "adamw";
    /** `train.weightDecay` (default 0): the op-by-op update's decay term (product, difference). */
    readonly weightDecay?: number;
  };

/** What {@link estimateTrainingMemory} needs. */
export interface MemoryInput {
  /** The backbone. */
  readonly config: T5Config;
  /** Method registry key (model/methods/mod.ts). */
  readonly method: string;
  /** The method's configuration, raw (partial JSON) or parsed; defaults fill the rest. */
  readonly methodConfig?: unknown;
  /** Number of co-trained tasks (method parameter counts depend on it; default 1). */
  readonly numTasks?: number;
  /** The optimizer. */
  readonly optimizer: OptimizerMemory;
  /** Rows of an optimizer step (`train.batchSize`). */
  readonly batchSize: number;
  /** Rows of one forward/backward pass (`train.microBatchSize`; default the batch). */
  readonly microBatchSize?: number;
  /** Encoder length (`train.maxInputLength`). */
  readonly inputLength: number;
  /** Decoder length (`train.maxTargetLength`). */
  readonly targetLength: number;
  /** Dropout on (a rate > 0) or off. */
  readonly dropout: boolean;
  /**
   * T5X's z-loss coefficient (`train.zLoss`; default 0, none). With the stock ops (`"composite"`)
   * it adds a few `[tokens]` tensors (lse², its product and sum); with a fused cross-entropy
   * kernel that does not fold the term into its gradient (a backend outside model/fused.ts
   * `LSE_GRAD_IN_KERNEL`), four temporaries of the logits' size in the backward pass (Sub, Exp,
   * Mul, Add: 1.4 GB each at paper-base's 128 × 84 tokens × 32128); none where it is folded
   * (webgpu, wasm).
   */
  readonly zLoss?: number;
  /**
   * Label smoothing ε (`train.labelSmoothing`; default 0, none). With the stock ops
   * (`"composite"`: cpu, tfjs-node) model/t5.ts `crossEntropyLoss` adds `ε·(lse − mean(x))`: the
   * Mean's `[tokens]` output and a few `[tokens]` products, and in the backward pass the Mean's
   * gradient of the logits' size (tfjs's `Mean_grad`: ones, their product with `dy` and the
   * quotient, three `[tokens, vocab]` in its tidy, then one more gradient of the logits). The
   * fused cross-entropy kernels (webgpu, wasm) take ε as an attribute: nothing is added.
   */
  readonly labelSmoothing?: number;
  /** Kernel set (default `"fused"`, the webgpu path; `"fused-wasm"` for wasm and wasm+blas). */
  readonly kernels?: KernelSet;
  /**
   * Backward pass (default {@link DEFAULT_BACKPROP}, what `selectBackend` installs unless
   * `HYPERPROMPT_STOCK_BACKPROP=1`).
   */
  readonly backprop?: BackpropMode;
  /**
   * Dispatches per command buffer on webgpu (the `"fused"` set only; wasm frees at once): a
   * buffer freed in the backward
   * pass stays in tfjs-webgpu's pool until its command buffer is submitted. Default
   * `DEFAULT_SUBMIT_BATCH` (model/webgpu/submit_batch.ts), which `HYPERPROMPT_WEBGPU_SUBMIT_BATCH`
   * overrides for the kernels (`model/webgpu/mod.ts`); pass that value here.
   */
  readonly submitBatch?: number;
  /** Bytes per element of weights, gradients, activations and state (default 4, fp32). */
  readonly bytesPerElement?: number;
  /**
   * The step's matrix products run on tfjs-wasm's own `BatchMatMul` (XNNPACK; plain `wasm`,
   * model/wasm_kernels.ts modes `"transpose-fix"` and `"stock"`), not OpenBLAS (`"blas"`).
   * XNNPACK packs a 2-D product's right operand into a copy cached until that tensor is
   * disposed; the linear maps' weights, multiplied untransposed by the backward pass, keep theirs
   * for good ({@link MemoryEstimate.xnnPackedWeights}), and the forward and backward passes hold
   * packed and transposed temporaries (see the module documentation). Default false: webgpu,
   * cpu, tfjs-node and wasm with OpenBLAS (`wasm+blas`) have no such copies.
   */
  readonly xnnMatMul?: boolean;
  /**
   * Rows greedy-decoded together in evaluation (default the micro-batch: `benchmarks/run_one.ts`
   * evaluates `train.microBatchSize ?? train.batchSize` rows at a time, the preflight's choice
   * included).
   */
  readonly evalBatchSize?: number;
}

/**
 * The phases of one training step, and the evaluation between steps (greedy decoding with the
 * weights and optimizer state alive).
 */
export type MemoryPhase = "forward" | "backward" | "gradient norm" | "update" | "evaluation";

/** Bytes of one training step (see the module documentation for what each term holds). */
export interface MemoryEstimate {
  /** Backbone + method variables. */
  readonly weights: number;
  /**
   * With {@link MemoryInput.xnnMatMul}: XNNPACK's packed copies of the weights multiplied
   * untransposed (the linear maps' weights whose input gets a gradient, the output projection
   * included; and, as an upper bound, all the method's variables), alive from the first backward
   * pass on, so in every phase; 0 without.
   *
   * Not counted: the packed copies of method tensors that are not variables but are the right
   * operand of an untransposed product, each freed with its tensor (saved for the backward pass,
   * so alive until it): the per-task slices of the adapters' `W_down` / `W_up`
   * (model/methods/_tensor.ts `taskAdapters`; with several tasks present `W_down` transposed to
   * `[d, u·a]`), HyperFormer++'s generated adapter weights (the same shapes), and HyperPrompt's
   * per-task (`hyperprompt_sep`) or generated (`hyperprompt_global`) `D` `[d, b]` and `U`
   * `[b, h·d_kv]` per block, key and value (model/methods/_hyperprompt.ts `hyperPrompt`; batched
   * over the present tasks, so a 2-D product, which XNNPACK packs, only when one task is present).
   * All of them at once, at the default configurations on 16 tasks: at paper-base's shapes (Base,
   * 512 / 84, AdamW) 4.7 MB for HyperPrompt (0.06 % of the 7.5 GB estimate at a micro-batch of 1)
   * and 7.1 MB (one task) to 113 MB (16 tasks: 0.42–0.44 % of the 26–27 GB estimate at 16 rows,
   * 0.07 % at 128) for the adapters; at smoke's (mini, 8 × 96 / 8, Adafactor) 0.26 MB (0.19–0.20 %
   * of 131–140 MB) and 0.52 MB (8 tasks: 0.44–0.46 % of 114–119 MB). Under 1 % everywhere, so left
   * out; the Vanilla Adapter's are covered anyway by the upper bound above, which counts its
   * variables (the `[numTasks, …]` stacks, 116 MB, at least the present tasks' slices) as packed
   * for good (HyperFormer++'s and HyperPrompt's variables, mostly packed themselves, leave no
   * such slack). The backward pass's `dX = dY·Bᵀ` of such a `B` materialises and packs `Bᵀ`, one
   * product at a time (at most 2.4 MB at paper-base).
   */
  readonly xnnPackedWeights: number;
  /** Gradients of the trained variables (one set). */
  readonly gradients: number;
  /** The running gradient sums kept across micro-batches (0 without micro-batches). */
  readonly accumulator: number;
  /** Optimizer slots. */
  readonly optimizerState: number;
  /**
   * The step's batch (benchmarks/trainer.ts: collate's int32 input ids, decoder input ids and
   * labels and float32 attention mask, 4 bytes an element, alive for the whole step), and with
   * micro-batches the micro-batch's slices of them (alive in its forward and backward pass):
   * counted in every phase of the step, not in evaluation.
   */
  readonly batchTensors: number;
  /** The forward buffers of one micro-batch alive at the forward pass's peak. */
  readonly forwardActivations: number;
  /** Tensors one micro-batch's tape keeps for its backward pass. */
  readonly savedActivations: number;
  /**
   * Gradients of the intermediates at the backward peak (stock tfjs: all of them, alive until
   * the pass returns; low-memory: those live at the peak node).
   */
  readonly activationGradients: number;
  /**
   * Greedy decoding's buffers at its peak (encoder outputs, cross-attention and self-attention
   * caches, one step's activations and logits) at {@link MemoryEstimate.evalBatchSize} rows.
   */
  readonly evaluationActivations: number;
  /**
   * Evaluation's batch at {@link MemoryEstimate.evalBatchSize} rows: benchmarks/evaluator.ts's
   * int32 input ids and float32 attention mask `[rows, inputLength]`, 4 bytes an element, alive
   * for the whole decoding; counted in the evaluation phase only. (Each decoding step's int32
   * decoder ids `[rows, 1]`, made and freed in the step's tidy, are in
   * {@link MemoryEstimate.evaluationActivations}.)
   */
  readonly evalBatchTensors: number;
  /** Rows decoded together in evaluation. */
  readonly evalBatchSize: number;
  /** The largest phase of the training step (forward, backward, gradient norm, update). */
  readonly trainingPeak: number;
  /**
   * The largest phase of the run: the training step's and evaluation's (what the preflight
   * compares with the device).
   */
  readonly peak: number;
  /** Which phase gives the peak. */
  readonly peakPhase: MemoryPhase;
  /** Bytes alive at the peak of each phase. */
  readonly phases: Readonly<Record<MemoryPhase, number>>;
  /**
   * Parameters: total and trained; of them the method's own (`method`) and the backbone's
   * trained ones (`trainedBackbone`); and the elements of the backbone's Hugging Face state dict
   * (`backboneStateDict`: the backbone plus a copy of the shared table for each stack without its
   * own, as `model/t5.ts` `t5StateDict` and a saved backbone folder hold them).
   */
  readonly params: {
    readonly total: number;
    readonly trained: number;
    readonly method: number;
    readonly trainedBackbone: number;
    readonly backboneStateDict: number;
  };
  /**
   * What the estimate of a method other than the built-in ones assumes or cannot count, one line
   * each naming the method (e.g. parameters its `flopPlan` says nothing about, whose activations
   * are then not counted); empty for the built-in methods, which are replayed op by op.
   */
  readonly notes: readonly string[];
}

// ---------------------------------------------------------------------------------------------
// A shape-only tape

interface Buf {
  readonly n: number;
  refs: number;
}
interface T {
  readonly n: number;
  readonly buf: Buf;
  readonly path: boolean;
}
/**
 * How a node's gradient treats an input: a new buffer, the output's gradient passed on, none; or
 * `"split"`: a new buffer made for an input off the gradient's path too (Concat's gradient
 * splits dy into every input's slice, tfjs concatGradConfig), which stock tfjs keeps to the end
 * of the pass and the low-memory pass frees after the node.
 */
type GradRule = "new" | "alias" | "none" | "split";
interface Node {
  readonly inputs: readonly (readonly [T, GradRule])[];
  readonly outputs: readonly T[];
  /** Elements a gradient function allocates and frees within the node (beyond its outputs). */
  readonly transient: number;
  /**
   * tfjs's own wasm matMul ({@link MemoryInput.xnnMatMul}) of a linear map whose weight is
   * trained: the weight's gradient `dYᵀ·X` gives XNNPACK the saved input `X` as its right
   * operand, whose packed copy (`buf`'s elements) lives as long as `X` (to the end of the
   * backward pass); `transient`: the transposed `dY` the transpose fix makes for it.
   */
  readonly packs?: { readonly buf: Buf; readonly transient: number };
  /**
   * Elements of `transient` that the gradient function makes in `node.gradient` itself, outside
   * the per-input tidy (tfjs `tape.backpropagateGradients`): the low-memory pass frees them after
   * the node, stock tfjs keeps them in the backward tidy until the pass ends.
   */
  readonly held?: number;
}

/**
 * Replays ops on sizes: `fwd` is the peak of the forward buffers alive at one time (the forward
 * tidy's and its nested sublayer tidies'), `saved` the buffers a tape node keeps, and
 * {@link Tape.backward} walks the nodes in reverse as tfjs does.
 */
class Tape {
  /** Peak elements of forward buffers alive at one time. */
  fwd = 0;
  /** Elements of forward buffers alive now. */
  live = 0;
  readonly saved = new Set<Buf>();
  readonly nodes: Node[] = [];
  /** The buffers of variables: a tape node saving one keeps a clone sharing its buffer. */
  readonly #weights = new Set<Buf>();
  /** The buffers made in each open tidy, innermost last. */
  readonly #scopes: Buf[][] = [[]];

  /** Forward buffers made so far: the dispatches counted by {@link Tape.deferOps}. */
  #made = 0;
  /** Freed forward buffers waiting for their command batch: `[release at #made, elements]`. */
  readonly #pending: (readonly [number, number])[] = [];

  /**
   * @param deferOps how many forward buffers later a buffer that a nested tidy frees returns to
   *   the pool: 0 frees at once (composite: cpu; and inference); the fused set (webgpu) is given
   *   `submitBatch`: tfjs-webgpu keeps a disposed buffer that the current batch of commands reads
   *   or writes until that batch is submitted (every `submitBatch` = 64 dispatches,
   *   model/webgpu/mod.ts), and each forward buffer counted here is made by at least one
   *   dispatch, so it is back at the latest that many buffers later.
   * @param recording whether ops are recorded for a backward pass (false: inference, where no
   *   tensor is saved, so a tidy frees everything it made but its result)
   */
  constructor(readonly deferOps = 0, readonly recording = true) {}

  leaf(n: number, path: boolean): T {
    return { n, buf: { n, refs: 1 }, path };
  }
  /** A variable: counted with the weights, never again when a node saves it. */
  weight(n: number, path: boolean): T {
    const x = this.leaf(n, path);
    this.#weights.add(x.buf);
    return x;
  }
  /** A new forward buffer. */
  fresh(n: number, path: boolean): T {
    const pending = this.#pending;
    while (pending.length > 0 && pending[0]![0] <= this.#made) this.live -= pending.shift()![1];
    this.#made++;
    this.live += n;
    this.fwd = Math.max(this.fwd, this.live);
    const buf = { n, refs: 1 };
    this.#scopes[this.#scopes.length - 1]!.push(buf);
    return { n, buf, path };
  }
  /**
   * `fn` in a nested `tf.tidy` (`model/t5.ts` `scoped`): when it returns, the buffers it made
   * that no tape node saved and that are not in its result are freed.
   */
  scope<R extends T | readonly T[]>(fn: () => R): R {
    this.#scopes.push([]);
    const r = fn();
    const made = this.#scopes.pop()!;
    const out = new Set((Array.isArray(r) ? r as readonly T[] : [r as T]).map((t) => t.buf));
    const parent = this.#scopes[this.#scopes.length - 1]!;
    for (const b of made) {
      if (out.has(b) || this.saved.has(b)) parent.push(b);
      else if (this.deferOps > 0) this.#pending.push([this.#made + this.deferOps, b.n]);
      else this.live -= b.n;
    }
    return r;
  }
  alias(x: T): T {
    return { n: x.n, buf: x.buf, path: x.path };
  }
  /**
   * One op: `outs` its outputs (already made), `ins` its inputs with the gradient rule of each,
   * `save` what its gradient keeps.
   */
  op(
    ins: readonly (readonly [T, GradRule])[],
    outs: readonly T[],
    save: readonly T[],
    tr = 0,
    packs?: Node["packs"],
    held = 0,
  ) {
    if (!this.recording) return; // no tape (inference): nothing is kept for a backward pass
    for (const s of save) if (!this.#weights.has(s.buf)) this.saved.add(s.buf);
    if (outs.some((o) => o.path)) {
      this.nodes.push({
        inputs: ins,
        outputs: outs,
        transient: tr,
        ...(packs ? { packs } : {}),
        ...(held > 0 ? { held } : {}),
      });
    }
  }
  /** `n` elements alive only during the op just made (with its output): a forward transient. */
  transientFwd(n: number): void {
    this.fwd = Math.max(this.fwd, this.live + n);
  }
  /** Elements of the saved buffers. */
  savedElems(): number {
    let s = 0;
    for (const b of this.saved) s += b.n;
    return s;
  }
  /**
   * The backward walk: returns the peak of live gradient elements (including `transient`s) and
   * the elements of the trained variables' gradients alive then (`params`). `low`: the gradients a node
   * leaves behind are freed after it (`model/backprop.ts`); else all live until the end.
   */
  backward(
    loss: T,
    params: ReadonlySet<T>,
    low: boolean,
    deferNodes = 0,
  ): { peak: number; params: number } {
    const grad = new Map<T, Buf>();
    let live = loss.n;
    const g0: Buf = { n: loss.n, refs: 1 };
    grad.set(loss, g0);
    let peak = live;
    // Elements of the trained variables' gradients: now, and when the peak was reached.
    let paramNow = 0, paramAtPeak = 0;
    const bump = (n: number) => {
      if (n > peak) {
        peak = n;
        paramAtPeak = paramNow;
      }
    };
    // Buffers whose last handle went, by the node that dropped it: their memory returns only
    // `deferNodes` nodes later (webgpu: a buffer read by commands not yet submitted is kept).
    const pending: (readonly [number, number])[] = [];
    // Saved inputs XNNPACK packed (Node.packs): alive until the pass ends, with the saved tensors.
    const packed = new Set<Buf>();
    const release = (b: Buf, i: number) => {
      if (--b.refs !== 0) return;
      if (deferNodes > 0) pending.push([i, b.n]);
      else live -= b.n;
    };
    for (let i = this.nodes.length - 1; i >= 0; i--) {
      while (pending.length > 0 && pending[0]![0] - i >= deferNodes) live -= pending.shift()![1];
      const node = this.nodes[i]!;
      const dy = node.outputs.map((o) => grad.get(o)).find((b) => b !== undefined);
      if (dy === undefined) continue;
      bump(live + node.transient);
      // Gradients summed into an existing one: freed after the node by the low-memory pass.
      const scratch: Buf[] = [];
      for (const [x, rule] of node.inputs) {
        if (rule === "none") continue;
        if (!x.path) {
          if (rule === "split") {
            const slice: Buf = { n: x.n, refs: 1 };
            live += x.n;
            bump(live);
            if (low) scratch.push(slice);
          }
          continue;
        }
        let dx: Buf;
        if (rule === "alias" && dy.n === x.n) {
          dx = dy;
          dy.refs++;
        } else {
          dx = { n: x.n, refs: 1 };
          live += x.n;
        }
        const prev = grad.get(x);
        if (prev !== undefined) {
          // add(prev, dx): a new buffer; prev released (tfjs disposes it). dx is a handle of the
          // backward tidy: stock tfjs keeps it until the pass ends, the low-memory pass frees it
          // after this node.
          const sum: Buf = { n: x.n, refs: 1 };
          live += x.n;
          bump(live);
          release(prev, i);
          grad.set(x, sum);
          if (low) scratch.push(dx);
        } else {
          grad.set(x, dx);
          if (params.has(x)) paramNow += x.n;
        }
        bump(live);
      }
      if (node.packs) {
        // dW = dYᵀ·X after dX = dY·W: X's packed copy (once per buffer) and the transposed dY.
        if (!packed.has(node.packs.buf)) {
          packed.add(node.packs.buf);
          live += node.packs.buf.n;
        }
        bump(live + node.packs.transient);
      }
      // What the gradient function made outside the per-input tidy (counted in `transient`):
      // stock tfjs keeps it to the end of the pass.
      if (!low && node.held !== undefined) live += node.held;
      if (low) {
        // The node's outputs are read by no earlier node: their gradients go (a buffer shared
        // with an input's gradient, an alias, stays while that holds it).
        for (const o of node.outputs) {
          const b = grad.get(o);
          if (b !== undefined && !params.has(o)) {
            grad.delete(o);
            release(b, i);
          }
        }
        for (const b of scratch) release(b, i);
      }
    }
    return { peak, params: paramAtPeak };
  }
}

// ---------------------------------------------------------------------------------------------
// The T5 forward pass on shapes (model/t5.ts, model/layers.ts, model/fused.ts, model/heads.ts)

interface Shapes {
  readonly b: number;
  readonly li: number;
  readonly lt: number;
}

interface MethodActs {
  /** Rows prepended to the encoder input (Prompt-Tuning). */
  readonly promptLength: number;
  /**
   * Prompt-Tuning: the prompt rows are its `[tasks, promptLength, d]` variable's rows gathered
   * per example (model/methods/prompt_tuning.ts `rows(prompt, taskIds)`, a gatherRows: a forward
   * buffer, and a gradient scattered into the variable's shape); absent: a per-example leaf.
   */
  readonly promptRows?: boolean;
  /** Prefix key/value slots per self-attention layer, and the stacks that get them. */
  readonly prefixLength: number;
  readonly prefixStacks: readonly ("encoder" | "decoder")[];
  /** Adapter bottleneck width after each sublayer (0: none), and the stacks. */
  readonly adapterWidth: number;
  readonly adapterStacks: readonly ("encoder" | "decoder")[];
  /** The sublayers with an adapter (never cross-attention: both adapter methods skip it). */
  readonly adapterPositions: readonly ("self_attention" | "feed_forward")[];
  /**
   * The post-adapter LayerNorm's γ, β: one variable pair per position ("shared"), a row of a
   * per-task one ("per_task"), generated per task (HyperFormer++'s conditional LayerNorm), or
   * none.
   */
  readonly adapterNorm: "shared" | "per_task" | "generated" | "none";
  /**
   * HyperFormer++: the adapter weights are generated per (layer, position) by a per-stack task
   * projector `[task emb; layer emb; position emb]` (each `embedding` wide; `tasks` task rows
   * shared by the stacks, `encoderLayers`/`decoderLayers` layer rows) → Linear(3·embedding →
   * `hidden`) → ReLU → Linear(→ `projected`) [→ LayerNorm], then per-stack generators;
   * undefined for the Vanilla Adapter (per-task variables).
   */
  readonly adapterHyper?: {
    readonly embedding: number;
    readonly hidden: number;
    readonly projected: number;
    readonly layerNorm: boolean;
    readonly encoderLayers: number;
    readonly decoderLayers: number;
  };
  /**
   * HyperPrompt-Global's task projector and generators (model/methods/hyperprompt_global.ts), used
   * by every conditioned block ({@link T5Replay.globalHyperPrompts}); undefined for the others.
   */
  readonly globalHyper?: {
    readonly embedding: number;
    readonly hidden: number;
    readonly projected: number;
    readonly layerNorm: boolean;
    readonly biases: boolean;
    readonly perStackHypernets: boolean;
    /** Conditioned blocks (rows of the layer embedding). */
    readonly blocks: number;
  };
  /**
   * HyperPrompt-Share's and -Sep's local networks (model/methods/hyperprompt.ts), per conditioned
   * block, key and value ({@link T5Replay.localHyperPrompts}); undefined for the others.
   */
  readonly localHyper?: {
    /** Sep: the networks are per task (`[tasks, …]` variables, the present tasks' rows taken). */
    readonly sep: boolean;
    /** Biases on D and U (`[b]` and `[h·d_kv]`; Sep `[tasks, 1, b]` and `[tasks, 1, h·d_kv]`). */
    readonly biases: boolean;
  };
  /**
   * HyperPrompt's `positionBias` (model/methods/_hyperprompt.ts): `"relative"` looks the prefix
   * columns' bias up in the stack's relative-position table in every conditioned block
   * (model/t5.ts selfAttention, the prefix at positions -l … -1), `"zero"` joins zeros
   * (model/layers.ts attention); `"zero"` for the other methods (a plan does not say).
   */
  readonly prefixPositionBias: "zero" | "relative";
  /** Tasks present in a batch (the generated weights are per task). */
  readonly tasks: number;
  /** HyperPrompt's local bottleneck b (the generated D and U are d·b and b·h·d_kv). */
  readonly bottleneck: number;
  /**
   * `FlopPlan.elementwise`: the sublayers after which a trained tensor is combined elementwise
   * with the output (a per-task bias or scale), replayed as one trained row of d per example
   * added or multiplied in ({@link MethodActs.elementwiseOp}).
   */
  readonly elementwiseStacks: readonly Stack[];
  readonly elementwisePositions: readonly Position[];
  /**
   * `FlopPlan.elementwise.op`: both save their two inputs (tfjs `addGradConfig`,
   * `mulGradConfig`); an Add passes the output's gradient on as the hidden state's and sums it
   * for the row's, a Mul makes a new gradient of the hidden state and a product of its size for
   * the row's. `"mul"` where the plan does not say: the larger of the two.
   */
  readonly elementwiseOp: "add" | "mul";
}

/** A sublayer an adapter or elementwise tensor follows. */
type Position = "self_attention" | "feed_forward";

class T5Replay {
  readonly t: Tape;
  readonly params = new Set<T>();
  readonly #w = new Map<string, T>();
  /**
   * With {@link T5Replay.xnn}: the weights of the linear maps whose input gets a gradient
   * (`dX = dY·W`, W untransposed: XNNPACK packs it and keeps the copy as long as W lives).
   */
  readonly packedWeights = new Set<Buf>();
  /**
   * @param xnn tfjs's own wasm matMul (XNNPACK, {@link MemoryInput.xnnMatMul}): the linear maps'
   *   packed right operands are modelled (see {@link T5Replay.projection})
   */
  constructor(
    readonly cfg: T5Config,
    readonly trained: (name: string) => boolean,
    readonly k: KernelOps,
    readonly dropout: boolean,
    readonly m: MethodActs,
    recording = true,
    submitBatch = 0,
    readonly xnn = false,
    readonly zLoss = 0,
    readonly labelSmoothing = 0,
  ) {
    // The fused set on webgpu frees a sublayer's buffers one command batch late (Tape.deferOps;
    // wasm, and cpu, free at once: submitBatch 0);
    // inference (no tape) is modelled with a tidy's frees at once on both sets (see evaluate).
    this.t = new Tape(recording ? submitBatch : 0, recording);
  }

  w(name: string, n: number): T {
    let x = this.#w.get(name);
    if (!x) {
      x = this.t.weight(n, this.trained(name));
      if (x.path) this.params.add(x);
      this.#w.set(name, x);
    }
    return x;
  }
  /**
   * A trained method tensor (per batch, small): counted as a path leaf; a `weight` (a method
   * variable, counted with the weights) is not counted again when a node saves it.
   */
  methodLeaf(n: number, weight = false): T {
    const x = weight ? this.t.weight(n, true) : this.t.leaf(n, true);
    this.params.add(x);
    return x;
  }

  /** Binary elementwise op (Add, Sub, Mul) of equal-or-broadcast inputs. */
  bin(kind: "add" | "mul", a: T, b: T, n = Math.max(a.n, b.n)): T {
    const out = this.t.fresh(n, a.path || b.path);
    const rule = (x: T): GradRule => (kind === "add" && x.n === n ? "alias" : "new");
    // Add and Mul both save their two inputs (tfjs addGradConfig / mulGradConfig).
    const tr = kind === "mul" ? [a, b].filter((x) => x.n !== n).length * n : 0;
    this.t.op([[a, rule(a)], [b, rule(b)]], [out], [a, b], tr);
    return out;
  }
  /** Unary op saving its input (Square, Rsqrt, Relu) or its output (Tanh, Softmax, Exp). */
  un(x: T, saves: "in" | "out" | "none", n = x.n, tr = 0): T {
    const out = this.t.fresh(n, x.path);
    this.t.op([[x, "new"]], [out], saves === "in" ? [x] : saves === "out" ? [out] : [], tr);
    return out;
  }
  matmul(a: T, b: T, n: number): T {
    const out = this.t.fresh(n, a.path || b.path);
    this.t.op([[a, "new"], [b, "new"]], [out], [a, b]);
    return out;
  }
  /**
   * Reshape: its output shares its input's buffer on every backend modelled (the cpu, webgpu and
   * wasm Reshape kernels `incRef` the input's data id: no copy, and on webgpu no dispatch), and
   * tfjs's Reshape gradient saves its input (`reshapeGradConfig.inputsToSave: ['x']`, a clone of
   * the same data id), so the buffer is kept until the backward pass ends (once, however many
   * nodes save it: counted per buffer). Where another op saves the buffer anyway (a linear map's
   * flattened input, which the matMul saves) this costs nothing; where none does (a matMul's
   * output reshaped back, the adapters' generated weights) it is what keeps the buffer.
   */
  reshape(x: T): T {
    const out = this.t.alias(x);
    this.t.op([[x, "alias"]], [out], [x]);
    return out;
  }

  drop(x: T): T {
    if (!this.dropout) return x;
    if (this.k.dropout) return this.un(x, "none"); // HpDropout: mask recomputed, nothing saved
    const mask = this.t.fresh(x.n, false);
    return this.bin("mul", x, mask);
  }
  dropAdd(x: T, h: T): T {
    if (!this.dropout) return this.bin("add", x, h);
    if (this.k.dropoutAdd) {
      const out = this.t.fresh(x.n, true);
      this.t.op([[x, "alias"], [h, "new"]], [out], []);
      return out;
    }
    return this.bin("add", x, this.drop(h));
  }
  /** rmsNorm (final norms) and rmsNormKeep (blocks): returns the normed tensor. */
  norm(name: string, x: T, rows: number): T {
    const w = this.w(name, this.cfg.dModel);
    if (this.k.rmsNorm) {
      const y = this.t.fresh(x.n, true);
      // HpRmsNormKeep saves x and w; its second output is x itself.
      this.t.op([[x, "new"], [w, "new"]], [y], [x, w]);
      return y;
    }
    return this.t.scope(() => { // rmsNorm's tf.tidy
      const sq = this.un(x, "in");
      const mean = this.un(sq, "in", rows, x.n); // Mean saves x; its gradient fills x's shape
      const eps = this.bin("add", mean, this.t.leaf(1, false), rows);
      const r = this.un(eps, "in");
      const xr = this.bin("mul", x, r, x.n);
      return this.bin("mul", xr, w, x.n);
    });
  }
  linear(x: T, name: string, out: number, inn: number): T {
    const flat = this.reshape(x);
    const y = this.projection(flat, this.w(name, out * inn), (x.n / inn) * out);
    return this.reshape(y);
  }
  /**
   * `x·Wᵀ` of a linear map (model/layers.ts `linear`, and the output projection), `n` output
   * elements. With {@link T5Replay.xnn} (tfjs-wasm's `BatchMatMul`, XNNPACK for 2-D products,
   * which packs the right operand into a copy cached by that tensor's id until it is disposed;
   * model/wasm_kernels.ts's transpose fix hands it untransposed operands):
   * - forward: `Wᵀ` is materialised and packed, both freed after the product (a transient of
   *   twice W);
   * - backward: `dX = dY·W` packs W itself, whose copy then lives as long as W (every step
   *   after the first: counted with the weights, {@link MemoryEstimate.xnnPackedWeights}); and
   *   `dW = dYᵀ·X` transposes dY and packs the saved X, whose copy lives until the pass ends.
   */
  projection(flat: T, w: T, n: number): T {
    if (!this.xnn) return this.matmul(flat, w, n);
    const out = this.t.fresh(n, flat.path || w.path);
    this.t.transientFwd(2 * w.n);
    if (this.t.recording && flat.path) this.packedWeights.add(w.buf);
    this.t.op(
      [[flat, "new"], [w, "new"]],
      [out],
      [flat, w],
      0,
      w.path ? { buf: flat.buf, transient: n } : undefined,
    );
    return out;
  }
  /**
   * The composite attention's Softmax over `lk` keys (tfjs `softmaxGradConfig`): it saves its
   * output y. Its gradient makes `dy·y` in `node.gradient`, outside the input's tidy (freed after
   * the node by the low-memory pass, kept to the end by stock tfjs: `held`), then, in the tidy,
   * `sum(dy·y)` over the keys (`s / lk`), its product with y, and their difference, dx: `3·s +
   * s / lk` alive beyond dy when dx is made. (Counted `2·s` before, dx left out: once the
   * encoder is long its self-attention's Softmax sets the low-memory backward peak, and
   * Prompt-Tuning at its default length 100 read 0.97 of the measured peak, tiny-v1_1 b4 16 / 4,
   * 0.982 in a real run, b8 48 / 8; stock tfjs's kept `dy·y`, b·h·le² per encoder layer at the
   * end of the pass, read it 0.962.)
   */
  softmax(x: T, lk: number): T {
    const s = x.n;
    const out = this.t.fresh(s, x.path);
    this.t.op([[x, "new"]], [out], [out], 3 * s + s / lk, undefined, s);
    return out;
  }
  /** Heads split (composite): reshape + transpose. */
  split(x: T): T {
    return this.un(this.reshape(x), "none");
  }
  attention(q: T, k: T, v: T, lq: number, lk: number, bias: T, mask: T | null): T {
    const { b } = this.sh;
    const h = this.cfg.numHeads;
    const s = b * h * lq * lk;
    let scores: T;
    if (this.k.heads) scores = this.matmul(q, k, s); // HpHeadScores saves q, k
    else scores = this.t.scope(() => this.matmul(this.split(q), this.split(k), s)); // its tidy
    let probs: T;
    if (this.k.attentionSoftmax) {
      probs = this.t.fresh(s, true);
      const zero = this.t.fresh(lk, false);
      this.t.op([[scores, "new"], [bias, "new"]], [probs], [bias, mask ?? zero, probs]);
      // HpAttentionSoftmax's bias gradient is dx summed over the batch: dx is a node output.
    } else {
      probs = this.t.scope(() => { // attentionSoftmax's tidy
        let x = this.bin("add", scores, bias, s);
        if (mask) x = this.bin("add", x, mask, s);
        return this.softmax(x, lk);
      });
    }
    const attn = this.drop(probs);
    const inner = this.cfg.numHeads * this.cfg.dKv;
    if (this.k.heads) return this.matmul(attn, v, b * lq * inner); // HpHeadContext saves p, v
    return this.t.scope(() => { // headContext's tidy
      const ctx = this.matmul(attn, this.split(v), b * lq * inner);
      return this.reshape(this.un(ctx, "none")); // merge: transpose + reshape
    });
  }
  get sh(): Shapes {
    return this.#sh!;
  }
  /** The keys and values of the last {@link T5Replay.selfAttn}. */
  lastKV?: readonly [T, T];
  #sh?: Shapes;

  positionBias(name: string, lq: number, lk: number): T {
    const h = this.cfg.numHeads;
    const table = this.w(name, this.cfg.relativeAttentionNumBuckets * h);
    // gatherRows of the int32 buckets [lq, lk] (model/layers.ts positionBuckets, a new tensor):
    // the customGrad saves them; on the gradient's path only when the table is trained (with a
    // frozen backbone neither the bias nor, through it, the scores of a block whose input has no
    // gradient get one)
    const buckets = this.index(lq * lk);
    const rows = this.t.fresh(lq * lk * h, table.path);
    this.t.op([[table, "new"]], [rows], [buckets]);
    const tr = this.un(this.reshape(rows), "none"); // transpose [h, q, k]
    return this.reshape(tr);
  }

  /**
   * Self-attention of `len` queries; with `past` (greedy decoding's cache of the earlier
   * positions' keys and values), the new keys and values are joined after them. The full keys
   * and values (without a prefix) are left in {@link T5Replay.lastKV}.
   */
  selfAttn(
    stack: "encoder" | "decoder",
    i: number,
    x: T,
    len: number,
    bias: T,
    mask: T | null,
    past?: readonly [T, T],
  ) {
    const { b } = this.sh;
    const d = this.cfg.dModel, inner = this.cfg.numHeads * this.cfg.dKv;
    const p = `${stack}.block.${i}.layer.0.SelfAttention`;
    const q = this.linear(x, `${p}.q.weight`, inner, d);
    let k = this.linear(x, `${p}.k.weight`, inner, d);
    let v = this.linear(x, `${p}.v.weight`, inner, d);
    if (past) {
      k = this.bin("add", past[0], k, past[0].n + k.n); // concat: a new buffer of both
      v = this.bin("add", past[1], v, past[1].n + v.n);
    }
    this.lastKV = [k, v];
    let lk = k.n / (b * inner);
    const lkOwn = lk;
    let bb = bias;
    let mm = mask;
    const l = this.m.prefixLength;
    if (l > 0 && this.m.prefixStacks.includes(stack)) {
      // Hyper-prompts: per-example prefix keys/values [b, l, inner] joined before k and v;
      // the bias gets l more columns (zeros, or the relative bias: prefixBias), the mask l
      // more zeros.
      const [pk, pv] = this.m.globalHyper
        ? this.globalHyperPrompts(stack)
        : this.m.localHyper
        ? this.localHyperPrompts(stack, i)
        : [this.methodLeaf(b * l * inner), this.methodLeaf(b * l * inner)];
      const cat = (a: T, c: T, n: number) => {
        const out = this.t.fresh(n, a.path || c.path);
        // Concat saves all inputs; its gradient slices dy for each (the zeros' too: "split")
        this.t.op([[a, "split"], [c, "split"]], [out], [a, c]);
        return out;
      };
      lk = l + lkOwn;
      k = cat(pk, k, b * lk * inner);
      v = cat(pv, v, b * lk * inner);
      bb = cat(this.prefixBias(stack, len, l, bias.n / lkOwn * l), bias, bias.n / lkOwn * lk);
      if (mm) mm = cat(this.t.fresh(mm.n / lkOwn * l, false), mm, (mm.n / lkOwn) * lk);
    }
    const a = this.attention(q, k, v, len, lk, bb, mm);
    return this.linear(a, `${p}.o.weight`, d, inner);
  }
  /**
   * The position bias of a conditioned block's `l` prefix columns for `lq` queries (`n` =
   * h·lq·l elements), as model/layers.ts attention joins it before the keys' bias: `"zero"`
   * a `tf.zeros` (off the gradient's path); `"relative"` the stack's table looked up again in
   * every conditioned block (model/t5.ts selfAttention: positionBias with the prefix at
   * -l … -1; a gather, reshape, transpose and expandDims, each block's own buffers, on the
   * gradient's path when the table is trained), which attention's broadcastTo to the same
   * shape clones (no new buffer).
   */
  prefixBias(stack: "encoder" | "decoder", lq: number, l: number, n: number): T {
    if (this.m.prefixPositionBias === "zero") return this.t.fresh(n, false);
    const name = `${stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight`;
    return this.positionBias(name, lq, l);
  }
  /**
   * HyperPrompt-Global's `selfAttentionPrefix` hook (model/methods/hyperprompt_global.ts), op by
   * op, for one conditioned block: the present tasks' embeddings and the block's layer embedding
   * (tiled) joined, the task projector (Linear, ReLU, Linear, [LayerNorm]); for the keys and for
   * the values, the generated `D` `[u, d, b]` and `U` `[u, b, h·d_kv]` (each a Linear of its
   * generator variable, reshaped: the reshape keeps it), then `U(ReLU(P·D))` reshaped
   * (model/methods/_hyperprompt.ts `hyperPrompt`) and spread over the batch (a gather, or a
   * broadcast of one task's rows). Each variable is its own leaf, read by its own op, so the
   * backward pass makes each one's per-use gradient (and its sum into the running one) at its
   * own node, as tfjs does: not the whole hypernetwork's at once (which is what a single
   * hypernetwork leaf counted: 1.11 of the measured peak, tiny-v1_1 b8 32/8 micro 2,
   * low-memory backward pass).
   * @returns the prefix keys and values, `[b, l, h·d_kv]` each
   */
  globalHyperPrompts(stack: "encoder" | "decoder"): readonly [T, T] {
    const g = this.m.globalHyper!;
    const d = this.cfg.dModel, inner = this.cfg.numHeads * this.cfg.dKv;
    const u = this.presentTasks(), tasks = this.m.tasks, te = g.embedding;
    const l = this.m.prefixLength, bn = this.m.bottleneck;
    const p = "hyperprompt_global";
    const o = `${p}.${g.perStackHypernets ? stack : "shared"}`;
    // presentTasks: the variable itself when every task is present, else a slice or a gather.
    const present = (table: T, width: number) => this.presentRows(table, width);
    const k = present(this.mw(`${p}.task_embedding`, tasks * te), te);
    // rows(layerEmb, [m]) (a gather), tiled to the tasks
    const z = this.tile(this.gather(this.mw(`${p}.layer_embedding`, g.blocks * te), te, 1), u);
    const proj = this.taskProjector(
      `${o}.task_projector`,
      [k, z],
      g.hidden,
      g.projected,
      g.layerNorm,
    );
    const prompts = present(this.mw(`${p}.prompts`, tasks * l * d), l * d);
    const gen = (kv: string) => {
      const generated = (name: string, width: number) =>
        this.reshape(this.affine(proj, `${o}.${kv}.${name}`, g.projected, width, g.biases));
      const down = generated("down_generator", d * bn);
      const up = generated("up_generator", bn * inner);
      return this.hyperPromptRows(prompts, down, up, false);
    };
    return [gen("key"), gen("value")];
  }
  /**
   * HyperPrompt-Share's and -Sep's `selfAttentionPrefix` hook (model/methods/hyperprompt.ts), op
   * by op, for block `layer` of `stack`: the present tasks' global prompts, and for the keys and
   * for the values the block's local network `U(ReLU(P·D))` (Share: shared `[d, b]`, `[b, h·d_kv]`
   * variables, the prompts reshaped to `[u·l, d]`; Sep: the present tasks' rows of per-task
   * `[tasks, d, b]`, `[tasks, b, h·d_kv]` variables, a batched product), biases when configured,
   * spread over the batch. Each variable is its own leaf, read by its own ops. Counted before as
   * two per-example `[b, l, h·d_kv]` leaves per block (the network's activations and the product
   * the reshape keeps left out): 0.952 / 0.976 (Share) and 0.948 / 0.970 (Sep) of the measured
   * peak, stock / low-memory backward pass (tiny-v1_1 b8 32/8 micro 2, cpu).
   * @returns the prefix keys and values, `[b, l, h·d_kv]` each
   */
  localHyperPrompts(stack: "encoder" | "decoder", layer: number): readonly [T, T] {
    const { sep, biases } = this.m.localHyper!;
    const d = this.cfg.dModel, inner = this.cfg.numHeads * this.cfg.dKv;
    const tasks = this.m.tasks, l = this.m.prefixLength, bn = this.m.bottleneck;
    const p = sep ? "hyperprompt_sep" : "hyperprompt_share";
    // Sep's per-task variables: the present tasks' rows (`pick`); Share's: the variable itself.
    const net = (name: string, width: number) =>
      sep ? this.presentRows(this.mw(`${p}.${name}`, tasks * width), width) : this.mw(
        `${p}.${name}`,
        width,
      );
    const prompts = this.presentRows(this.mw(`${p}.prompts`, tasks * l * d), l * d);
    const gen = (kv: string) => {
      const n = `${stack}.${layer}.${kv}`;
      return this.hyperPromptRows(
        prompts,
        net(`${n}.down`, d * bn),
        net(`${n}.up`, bn * inner),
        !sep,
        biases ? net(`${n}.down_bias`, bn) : undefined,
        biases ? net(`${n}.up_bias`, inner) : undefined,
      );
    };
    return [gen("key"), gen("value")];
  }
  /**
   * `presentTasks` of model/methods/_tensor.ts on a `[tasks, …]` variable of `width` elements a
   * row: the variable itself when every task is present, else a slice (one task) or a gather.
   */
  presentRows(table: T, width: number): T {
    const u = this.presentTasks();
    if (u === this.m.tasks) return table;
    return u === 1 ? this.slice(table, width) : this.gather(table, u * width, u);
  }
  /**
   * model/methods/_hyperprompt.ts `hyperPrompt` and what follows it: `U(ReLU(P·D))` of the present
   * tasks' prompts `P` (`flat`: reshaped to `[u·l, d]` for 2-D weights, else a batched product),
   * with the biases when given, reshaped to `[u, l, h·d_kv]` (the reshape keeps the product: no
   * other op saves it), then spread over the batch: `toBatch`'s gather of each example's task
   * rows, or one task's rows broadcast by the attention's `batchPrefix` (a Tile, saving its input).
   * @returns `[b, l, h·d_kv]`
   */
  hyperPromptRows(prompts: T, down: T, up: T, flat: boolean, downBias?: T, upBias?: T): T {
    const u = this.presentTasks(), { b } = this.sh;
    const l = this.m.prefixLength, bn = this.m.bottleneck;
    const inner = this.cfg.numHeads * this.cfg.dKv;
    let h = this.matmul(flat ? this.reshape(prompts) : prompts, down, u * l * bn);
    if (downBias) h = this.bin("add", h, downBias);
    h = this.un(h, "in"); // ReLU saves its input
    let y = this.matmul(h, up, u * l * inner);
    if (upBias) y = this.bin("add", y, upBias);
    const rows = this.reshape(y);
    if (u > 1) return this.gather(rows, b * l * inner, b);
    return b > 1 ? this.tile(rows, b) : rows;
  }
  /**
   * `x` repeated `reps` times along axis 0 (`tf.tile`, and `tf.broadcastTo`, which runs a Tile):
   * Tile saves its input, and its gradient (tfjs `tileGradConfig`) adds `reps` slices of `dy`
   * one by one into `zerosLike(x)` in the gradient's tidy, so the zeros, the slices and the
   * running sums, `2·reps` of `x`'s size, are alive before the last sum (`dx`).
   */
  tile(x: T, reps: number): T {
    return this.un(x, "in", reps * x.n, 2 * reps * x.n);
  }
  /**
   * A task projector (model/methods/_init.ts `addTaskProjector`'s variables under `name`:
   * HyperFormer++'s per stack, HyperPrompt-Global's per owner) over the present tasks' rows
   * `parts` (`[u, width]` each), op by op: the Concat (saves its inputs), `fc1`, ReLU (saves its
   * input), `fc2`, and the LayerNorm when `layerNorm`. Returns `[u, projected]`.
   */
  taskProjector(
    name: string,
    parts: readonly T[],
    hidden: number,
    projected: number,
    layerNorm: boolean,
  ): T {
    const u = this.presentTasks();
    const joined = this.t.fresh(parts.reduce((n, x) => n + x.n, 0), true);
    this.t.op(parts.map((x) => [x, "new"] as const), [joined], parts);
    const h = this.un(this.affine(joined, `${name}.fc1`, joined.n / u, hidden), "in");
    const z = this.affine(h, `${name}.fc2`, hidden, projected);
    if (!layerNorm) return z;
    return this.adapterLayerNorm(
      z,
      u,
      this.mw(`${name}.layer_norm.weight`, projected),
      this.mw(`${name}.layer_norm.bias`, projected),
    );
  }
  /**
   * `x·W (+ b)` of a method's Linear `name` (`[rows, inn]` → `[rows, out]`): its `.weight`
   * variable `[inn, out]` and, with `bias`, its `.bias` `[out]` (the Add saves both inputs).
   */
  affine(x: T, name: string, inn: number, out: number, bias = true): T {
    const y = this.matmul(x, this.mw(`${name}.weight`, inn * out), (x.n / inn) * out);
    return bias ? this.bin("add", y, this.mw(`${name}.bias`, out)) : y;
  }
  ff(prefix: string, x: T): T {
    const d = this.cfg.dModel, f = this.cfg.dFf;
    const w = `${prefix}.DenseReluDense`;
    let hdn: T;
    if (this.cfg.feedForwardProj === "relu") {
      hdn = this.drop(this.un(this.linear(x, `${w}.wi.weight`, f, d), "in"));
    } else {
      const a = this.linear(x, `${w}.wi_0.weight`, f, d);
      const bb = this.linear(x, `${w}.wi_1.weight`, f, d);
      if (this.k.gatedGelu && (this.k.gatedGeluDropout || !this.dropout)) {
        hdn = this.t.fresh(a.n, true); // HpGatedGelu(Dropout) saves a and b
        this.t.op([[a, "new"], [bb, "new"]], [hdn], [a, bb]);
      } else if (this.k.gatedGelu) {
        // gatedGeluDropout's composite: tidy(dropout(HpGatedGelu(a, b))), the GELU's output freed
        hdn = this.t.scope(() => {
          const g = this.t.fresh(a.n, true); // HpGatedGelu saves a and b
          this.t.op([[a, "new"], [bb, "new"]], [g], [a, bb]);
          return this.drop(g);
        });
      } else {
        // gatedGelu's tidy: geluNew (x·x, ·x, ·k, +x, ·c, x·0.5, tanh, +1, product), then · b
        hdn = this.drop(this.t.scope(() => this.bin("mul", this.gelu(a), bb)));
      }
    }
    return this.linear(hdn, `${w}.wo.weight`, d, f);
  }
  /** A method parameter (a variable, counted with the weights) by name, made on first use. */
  mw(name: string, n: number): T {
    let x = this.#w.get(name);
    if (!x) {
      x = this.methodLeaf(n, true);
      this.#w.set(name, x);
    }
    return x;
  }
  /** `rows(table, i)` of model/methods/_tensor.ts: a Slice (saves the table) of `n` elements. */
  slice(table: T, n: number): T {
    const out = this.t.fresh(n, table.path);
    this.t.op([[table, "new"]], [out], [table]); // its gradient pads dy to the table's shape
    return out;
  }
  /**
   * `gatherRows` of `n` elements of `x` at `indices` rows (model/methods/_tensor.ts `rows`: the
   * int32 indices are a `tf.tensor1d` made for it, which the customGrad saves: alive until the
   * backward pass ends; its gradient: a scatter to x).
   */
  gather(x: T, n: number, indices: number): T {
    const idx = this.index(indices);
    const out = this.t.fresh(n, x.path);
    this.t.op([[x, "new"]], [out], [idx]);
    return out;
  }
  /**
   * A new int32 index buffer of `n` elements (gather indices, position buckets), off the
   * gradient's path; a node that saves it keeps it to the end of the backward pass. Counted as
   * `n` elements: 4 bytes each, as a float32 element (bytesPerElement's default).
   */
  index(n: number): T {
    return this.t.fresh(n, false);
  }
  /** geluNew (model/fused.ts, composite on every backend), in its own tidy. */
  gelu(a: T): T {
    return this.t.scope(() => {
      const c = this.t.leaf(1, false);
      const x3 = this.bin("mul", this.bin("mul", a, a), a);
      const inner = this.bin("mul", this.bin("add", a, this.bin("mul", x3, c, a.n), a.n), c, a.n);
      const th = this.un(inner, "out");
      return this.bin("mul", this.bin("mul", a, c, a.n), this.bin("add", th, c, a.n));
    });
  }
  /**
   * `geluNew` of model/methods/_tensor.ts (the adapters'): a `tf.customGrad` whose forward runs
   * model/fused.ts's composite in the engine's tidy, untaped (x·x, ·x, ·k, +x, ·c, x·0.5, tanh,
   * +1: eight temporaries, then the product); its one tape node saves the input only. Its
   * gradient's tidy makes 17 temporaries of the input's size before `dx`.
   */
  adapterGelu(a: T): T {
    return this.t.scope(() => {
      for (let i = 0; i < 8; i++) this.t.fresh(a.n, false);
      const out = this.t.fresh(a.n, a.path);
      this.t.op([[a, "new"]], [out], [a], 17 * a.n);
      return out;
    });
  }
  /**
   * `layerNorm` of model/methods/_tensor.ts over rows of `x` (the adapters'): a `tf.customGrad`
   * whose forward runs untaped in the engine's tidy (tf.moments in its own op scope: mean, x −
   * mean, its square, the variance; then + eps, √ (σ), x − mean, ÷ σ (x̂), ·γ, + β); its one tape
   * node saves x̂ and σ (and γ, a clone sharing γ's buffer). Its gradient frees each temporary
   * once read: at most three of x's size alive at a time before `dx`.
   */
  adapterLayerNorm(x: T, rows: number, gamma: T, beta: T): T {
    return this.t.scope(() => {
      this.t.scope(() => {
        const mean = this.t.fresh(rows, false);
        this.t.fresh(x.n, false);
        this.t.fresh(x.n, false);
        return [mean, this.t.fresh(rows, false)];
      });
      this.t.fresh(rows, false); // variance + eps
      const sd = this.t.fresh(rows, false);
      this.t.fresh(x.n, false); // x − mean
      const xhat = this.t.fresh(x.n, false);
      this.t.fresh(x.n, false); // x̂·γ
      const out = this.t.fresh(x.n, x.path || gamma.path || beta.path);
      this.t.op([[x, "new"], [gamma, "new"], [beta, "new"]], [out], [xhat, sd, gamma], 3 * x.n);
      return out;
    });
  }
  /**
   * HyperFormer++'s generation for one (stack, layer, position), op by op as
   * model/methods/hyperformer_pp.ts `generate` runs it for the tasks present: the task projector
   * (the task rows and the layer's and position's rows gathered, the latter two tiled to the
   * tasks, joined, `fc1`, ReLU, `fc2`, the LayerNorm), then each generator's `z·W + b`; returns
   * the generated rows by name (`[tasks, width]`). It runs again for every (layer, position), so
   * each use leaves its own gradient of every projector and generator variable (full tables for
   * the gathered embeddings) in the backward map, and its activations and their gradients.
   */
  generate(
    stack: "encoder" | "decoder",
    widths: readonly (readonly [string, number])[],
  ): Map<string, T> {
    const h = this.m.adapterHyper!;
    const u = this.presentTasks();
    const te = h.embedding;
    const p = `hyperformer.${stack}`;
    const layers = stack === "encoder" ? h.encoderLayers : h.decoderLayers;
    // rows(table, ids): gatherRows (saves only the indices; its gradient scatters to the table).
    const task = this.gather(
      this.mw("hyperformer.task_embedding", this.m.tasks * te),
      u * te,
      u,
    );
    // One row each, tiled to the tasks.
    const tiled = (table: T) => this.tile(this.gather(table, te, 1), u);
    const z = this.taskProjector(
      `${p}.projector`,
      [
        task,
        tiled(this.mw(`${p}.layer_embedding`, layers * te)),
        tiled(this.mw(`${p}.position_embedding`, 2 * te)),
      ],
      h.hidden,
      h.projected,
      h.layerNorm,
    );
    const out = new Map<string, T>();
    for (const [g, width] of widths) out.set(g, this.affine(z, `${p}.${g}`, h.projected, width));
    return out;
  }
  /** Tasks present in a micro-batch: the method's tasks, at most one per row. */
  presentTasks(): number {
    return Math.max(1, Math.min(this.m.tasks, this.sh.b));
  }
  /**
   * The adapter hook after a sublayer (model/methods/adapter.ts, hyperformer_pp.ts, through
   * `taskAdapters` of model/methods/_tensor.ts): `LN(up(gelu_new(down(y)))) + y`. With one task
   * present, the plain adapter on that task's parameters; with u > 1, the masked block
   * formulation: the present tasks' parameters (the Vanilla Adapter's variables whole when every
   * task is present, else gathered; HyperFormer++'s generated rows), W_down transposed to
   * `[d, u·a]`, `x·W_down + b` and gelu_new of `[rows, u·a]`, a 0/1 mask `[b, 1, u·a]` (a
   * customGrad saving only the mask), `·W_up` `[u·a, d]`, each example's bias row (and per-task
   * LayerNorm γ, β) by `onehot [b, u] · table`, the LayerNorm and the residual.
   */
  adapter(
    stack: "encoder" | "decoder",
    layer: number,
    pos: "self_attention" | "feed_forward",
    y: T,
  ): T {
    const a = this.m.adapterWidth;
    if (a === 0 || !this.m.adapterStacks.includes(stack)) return y;
    if (!this.m.adapterPositions.includes(pos)) return y;
    const d = this.cfg.dModel;
    const u = this.presentTasks();
    const b = this.sh.b;
    const norm = this.m.adapterNorm;
    const p = `adapter.${stack}.${layer}.${pos}`;
    // The present tasks' rows of each adapter parameter ([u, width]), or a shared variable.
    let param: (name: string, width: number) => T;
    if (this.m.adapterHyper) {
      const widths: [string, number][] = [["up_weight", d * a], ["up_bias", d], [
        "down_weight",
        a * d,
      ], ["down_bias", a]];
      if (norm === "generated") widths.push(["ln_gamma", d], ["ln_beta", d]);
      const gen = this.generate(stack, widths);
      // hyperformer_pp.ts reshapes the generated weights (`[u, d, a]`, `[u, a, d]`): the reshape
      // keeps each, which the transposed W_down no longer shares. The biases and the LayerNorm's
      // γ, β are used as generated (`[u, width]`): no reshape node, nothing kept by one (with
      // one task present the LayerNorm does not save β).
      param = (name) => {
        const rows = gen.get(name)!;
        return name.endsWith("_weight") ? this.reshape(rows) : rows;
      };
    } else {
      const tasks = this.m.tasks;
      param = (name, width) => {
        const v = this.mw(
          `${p}.${name}`,
          (name.startsWith("ln_") && norm === "shared" ? 1 : tasks) * width,
        );
        if (name.startsWith("ln_") && norm === "shared") return v;
        if (u === tasks) return v;
        return u === 1 ? this.slice(v, width) : this.gather(v, u * width, u);
      };
    }
    const rows = y.n / d;
    const x = this.reshape(y);
    if (u === 1) {
      const down = this.bin(
        "add",
        this.matmul(x, param("down_weight", d * a), rows * a),
        param("down_bias", a),
      );
      let h = this.bin(
        "add",
        this.matmul(this.adapterGelu(down), param("up_weight", a * d), rows * d),
        param("up_bias", d),
      );
      if (norm !== "none") {
        h = this.adapterLayerNorm(h, rows, param("ln_gamma", d), param("ln_beta", d));
      }
      return this.bin("add", this.reshape(h), y);
    }
    const ua = u * a;
    const oneHot = this.t.fresh(b * u, false);
    const wDown = this.un(param("down_weight", d * a), "none"); // transpose [d, u·a]
    const down = this.bin(
      "add",
      this.matmul(x, wDown, rows * ua),
      this.reshape(param("down_bias", a)),
    );
    // The mask zeroes the other tasks' blocks before gelu_new (model/methods/_tensor.ts
    // taskAdapters): it keeps only the mask, gelu keeps the masked pre-activation, the up
    // projection gelu's output.
    // The pre-activation is reshaped to [b, n, u·a] before the mask, and the reshape keeps it:
    // saved here, without a node of its own (a reshape dispatches nothing on webgpu, whose
    // deferred frees the backward walk counts in nodes).
    const mask = this.t.fresh(b * ua, false);
    const masked = this.t.fresh(down.n, down.path);
    this.t.op([[down, "new"], [mask, "new"]], [masked], [mask, down]);
    const act = this.adapterGelu(masked);
    const perRow = (t: T) => this.reshape(this.matmul(oneHot, t, b * d));
    let h = this.bin(
      "add",
      this.reshape(
        this.matmul(this.reshape(act), this.reshape(param("up_weight", a * d)), rows * d),
      ),
      perRow(param("up_bias", d)),
    );
    if (norm !== "none") {
      const ln = (n: string) => norm === "shared" ? param(n, d) : perRow(param(n, d));
      h = this.adapterLayerNorm(h, rows, ln("ln_gamma"), ln("ln_beta"));
    }
    return this.bin("add", h, y);
  }
  /**
   * `FlopPlan.elementwise` after a sublayer (after its adapter, if any): a trained row of d per
   * example (e.g. its task's bias or scale, `rows(table, taskIds)`) added to or multiplied into
   * `y` as the plan's `op` says ({@link MethodActs.elementwiseOp}); from here on the hidden state
   * depends on a trained tensor, so a frozen backbone's ops after it save what their input
   * gradients need.
   */
  elementwise(stack: Stack, pos: Position, y: T): T {
    if (!this.m.elementwiseStacks.includes(stack) || !this.m.elementwisePositions.includes(pos)) {
      return y;
    }
    return this.bin(this.m.elementwiseOp, y, this.methodLeaf(this.sh.b * this.cfg.dModel));
  }
  /** A block's self-attention sublayer with its residual, in its own tidy. */
  block(stack: "encoder" | "decoder", i: number, x: T, len: number, bias: T, mask: T | null) {
    return this.cachedBlock(stack, i, x, len, bias, mask)[0]!;
  }
  /**
   * {@link T5Replay.block}; with `past` (greedy decoding), the sublayer's full keys and values
   * leave its tidy too, for the next step's cache: returns `[out, k, v]`.
   */
  cachedBlock(
    stack: "encoder" | "decoder",
    i: number,
    x: T,
    len: number,
    bias: T,
    mask: T | null,
    past?: readonly [T, T],
  ): readonly T[] {
    const { b } = this.sh;
    const rows = b * len;
    const bp = `${stack}.block.${i}`;
    return this.t.scope(() => {
      const y = this.selfAttn(
        stack,
        i,
        this.norm(`${bp}.layer.0.layer_norm.weight`, x, rows),
        len,
        bias,
        mask,
        past,
      );
      const out = this.dropAdd(
        x,
        this.elementwise(stack, "self_attention", this.adapter(stack, i, "self_attention", y)),
      );
      return past ? [out, ...this.lastKV!] : [out];
    });
  }
  /** A feed-forward sublayer with its residual, in its own tidy. */
  ffSublayer(stack: "encoder" | "decoder", i: number, prefix: string, x: T, rows: number): T {
    return this.t.scope(() => {
      const y = this.ff(prefix, this.norm(`${prefix}.layer_norm.weight`, x, rows));
      return this.dropAdd(
        x,
        this.elementwise(stack, "feed_forward", this.adapter(stack, i, "feed_forward", y)),
      );
    });
  }

  /**
   * The encoder over the embedded input `x` (`[b, li, d]`): Prompt-Tuning's prompt joined,
   * dropout, position bias, padding mask, the blocks and the final norm. Returns the hidden
   * states and their length.
   */
  encoder(x: T): { enc: T; le: number } {
    const { b, li } = this.sh;
    let le = li;
    if (this.m.promptLength > 0) {
      const n = b * this.m.promptLength * this.cfg.dModel;
      const p = this.m.promptRows
        ? this.gather(this.mw("prompt", this.m.tasks * (n / b)), n, b)
        : this.methodLeaf(n);
      le = li + this.m.promptLength;
      const out = this.t.fresh(b * le * this.cfg.dModel, true);
      // Concat saves both inputs; its gradient slices dy for each: the embedded tokens' slice
      // too when the backbone is frozen and they are off the gradient's path ("split")
      this.t.op([[p, "split"], [x, "split"]], [out], [p, x]);
      x = out;
      // The longer mask: tf.concat of tf.ones [b, l] and the batch's mask (float32); the Concat
      // saves its inputs (the ones), paddingMask's Sub the result.
      const ones = this.index(b * this.m.promptLength);
      this.t.op([], [], [ones, this.t.fresh(b * le, false)]);
    }
    x = this.drop(x);
    const encBias = this.positionBias(
      "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
      le,
      le,
    );
    const pad = this.t.fresh(b * le * 2, false); // paddingMask: sub, mul (reshape shares)
    for (let i = 0; i < this.cfg.numLayers; i++) {
      x = this.block("encoder", i, x, le, encBias, pad);
      x = this.ffSublayer("encoder", i, `encoder.block.${i}.layer.1`, x, b * le);
    }
    return { enc: this.drop(this.norm("encoder.final_layer_norm.weight", x, b * le)), le };
  }
  /**
   * Every decoder layer's cross-attention keys and values, made before the decoder runs (in the
   * forward tidy, not a sublayer's: alive until the pass returns).
   */
  crossKVs(enc: T): [T, T][] {
    const d = this.cfg.dModel, inner = this.cfg.numHeads * this.cfg.dKv;
    const out: [T, T][] = [];
    for (let i = 0; i < this.cfg.numDecoderLayers; i++) {
      const p = `decoder.block.${i}.layer.1.EncDecAttention`;
      out.push([
        this.linear(enc, `${p}.k.weight`, inner, d),
        this.linear(enc, `${p}.v.weight`, inner, d),
      ]);
    }
    return out;
  }
  /** Decoder layer `i`'s cross-attention sublayer (`lq` queries) with its residual, in its tidy. */
  crossSublayer(i: number, x: T, lq: number, le: number, kv: readonly [T, T], mask: T): T {
    const { b } = this.sh;
    const d = this.cfg.dModel, inner = this.cfg.numHeads * this.cfg.dKv;
    const bp = `decoder.block.${i}`;
    return this.t.scope(() => {
      const n1 = this.norm(`${bp}.layer.1.layer_norm.weight`, x, b * lq);
      const p = `${bp}.layer.1.EncDecAttention`;
      const q = this.linear(n1, `${p}.q.weight`, inner, d);
      // cross-attention: no bias; the composite adds only the mask, the fused kernel a zero bias.
      const a = this.crossAttention(q, kv[0], kv[1], lq, le, mask, this.t.leaf(1, false));
      const c = this.linear(a, `${p}.o.weight`, d, inner);
      return this.dropAdd(x, c); // the adapter methods skip cross-attention
    });
  }

  /**
   * Greedy decoding at its peak (model/t5.ts `greedyDecode`, no tape): the encoder in its own
   * tidy, which keeps only the hidden states and the cross-attention keys and values; then the
   * last decoding step (`lt` keys): one query per row, with the cache of the `lt − 1` earlier
   * positions' self-attention keys and values, which the step joins with its own into the next
   * cache (the old one is freed only after the step), and the logits over the vocabulary. The
   * peak is {@link Tape.fwd}.
   */
  evaluate(sh: Shapes): void {
    this.#sh = sh;
    const cfg = this.cfg;
    const { b, li, lt } = sh;
    const d = cfg.dModel, v = cfg.vocabSize, inner = cfg.numHeads * cfg.dKv;
    const table = this.w("shared.weight", v * d);
    const [enc, ...flat] = this.t.scope(() => {
      const { enc } = this.encoder(this.reshape(this.t.fresh(b * li * d, false)));
      return [enc, ...this.crossKVs(enc).flat()];
    });
    const le = enc!.n / (b * d);
    const crossKV = Array.from(
      { length: cfg.numDecoderLayers },
      (_, i) => [flat[2 * i]!, flat[2 * i + 1]!] as const,
    );
    const past = Array.from(
      { length: cfg.numDecoderLayers },
      () =>
        [
          this.t.fresh(b * (lt - 1) * inner, false),
          this.t.fresh(b * (lt - 1) * inner, false),
        ] as const,
    );
    this.t.scope(() => {
      // The step's decoder ids [b, 1] (int32, made in the step's tidy), then their embeddings.
      this.index(b);
      let x = this.reshape(this.t.fresh(b * d, false)); // the last tokens' embeddings
      const bias = this.positionBias(
        "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
        1,
        lt,
      );
      const causal = this.t.fresh(lt, false);
      const cross = this.t.fresh(b * le * 2, false);
      const cache: T[] = [];
      for (let i = 0; i < cfg.numDecoderLayers; i++) {
        const [out, ...kv] = this.cachedBlock("decoder", i, x, 1, bias, causal, past[i]);
        cache.push(...kv);
        x = this.crossSublayer(i, out!, 1, le, crossKV[i]!, cross);
        x = this.ffSublayer("decoder", i, `decoder.block.${i}.layer.2`, x, b);
      }
      let h = this.norm("decoder.final_layer_norm.weight", x, b);
      if (cfg.scaleDecoderOutputs) h = this.bin("mul", h, this.t.leaf(1, false), h.n);
      const out = cfg.tieWordEmbeddings ? table : this.w("lm_head.weight", v * d);
      const logits = this.projection(this.reshape(h), out, b * v);
      const last = this.un(logits, "none"); // slice of the last position
      return [this.un(last, "none", b), ...cache]; // argMax
    });
  }

  run(sh: Shapes): { loss: T } {
    this.#sh = sh;
    const cfg = this.cfg;
    const { b, lt } = sh;
    const d = cfg.dModel, v = cfg.vocabSize;
    const li = sh.li;
    const table = this.w("shared.weight", v * d);
    const own = cfg.ownEmbeddings ?? [];
    let encEmbedded: T, decRows: T | undefined;
    if (own.length === 0) {
      // Embeddings (model/t5.ts sharedLookup, both stacks on `shared.weight`): the two stacks'
      // ids joined (a new int32 buffer of b·(li + lt), which gatherRows saves), one gather, then
      // one split into the encoder's and the decoder's rows. gatherRows ends in a Reshape (to
      // the ids' shape, model/layers.ts), which saves the gathered rows, so they are kept to the
      // end of the backward pass, frozen table or not (counted freed with the forward tidy
      // before: b·(li + lt)·d under at every row). SplitV saves nothing; its gradient is one
      // Concat of the two stacks' row gradients (a new buffer of all the rows), made only once
      // the encoder's backward is done, so the decoder's row gradient waits for it until then.
      const ids = this.index(b * (li + lt));
      const gathered = this.t.fresh(b * (li + lt) * d, table.path);
      this.t.op([[table, "new"]], [gathered], [ids]);
      const rows = this.reshape(gathered);
      const encRows = this.t.fresh(b * li * d, rows.path);
      decRows = this.t.fresh(b * lt * d, rows.path);
      this.t.op([[rows, "new"]], [encRows, decRows], []);
      encEmbedded = this.reshape(encRows);
    } else {
      // A stack with a table of its own (`config.ownEmbeddings`, set by model/t5.ts
      // t5FromTensors for a checkpoint whose per-stack table is not `shared.weight`'s storage):
      // sharedLookup declines, and runEncoder and runDecoder each gather from their stack's
      // table (the encoder's before the encoder, the decoder's after the cross-attention keys
      // and values). Each gatherRows saves its ids (a reshape of the batch's: no new buffer)
      // and its Reshape the gathered rows; each table's gradient is its own scatter.
      encEmbedded = this.embed("encoder", b * li * d);
    }
    const { enc, le } = this.encoder(encEmbedded);
    const crossKV = this.crossKVs(enc);
    // Decoder
    let dec = this.drop(
      decRows === undefined ? this.embed("decoder", b * lt * d) : this.reshape(decRows),
    );
    const decBias = this.positionBias(
      "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
      lt,
      lt,
    );
    const causal = this.t.fresh(lt * lt, false);
    const cross = this.t.fresh(b * le * 2, false);
    for (let i = 0; i < cfg.numDecoderLayers; i++) {
      const bp = `decoder.block.${i}`;
      dec = this.block("decoder", i, dec, lt, decBias, causal);
      dec = this.crossSublayer(i, dec, lt, le, crossKV[i]!, cross);
      dec = this.ffSublayer("decoder", i, `${bp}.layer.2`, dec, b * lt);
    }
    let hdn = this.drop(this.norm("decoder.final_layer_norm.weight", dec, b * lt));
    if (cfg.scaleDecoderOutputs) hdn = this.bin("mul", hdn, this.t.leaf(1, false), hdn.n);
    const out = cfg.tieWordEmbeddings ? table : this.w("lm_head.weight", v * d);
    const logits = this.reshape(this.projection(this.reshape(hdn), out, b * lt * v));
    return { loss: this.xent(logits, b * lt, v) };
  }
  /**
   * One stack's own lookup (model/t5.ts runEncoder / runDecoder without sharedLookup): gatherRows
   * of `n` elements from the stack's table (`<stack>.embed_tokens.weight` when listed in
   * `config.ownEmbeddings`, else `shared.weight`), reshaped to the ids' shape.
   */
  embed(stack: "encoder" | "decoder", n: number): T {
    const v = this.cfg.vocabSize, d = this.cfg.dModel;
    const name = this.cfg.ownEmbeddings?.includes(stack)
      ? `${stack}.embed_tokens.weight`
      : "shared.weight";
    const table = this.w(name, v * d);
    const rows = this.t.fresh(n, table.path);
    this.t.op([[table, "new"]], [rows], []);
    return this.reshape(rows);
  }
  crossAttention(q: T, k: T, v: T, lq: number, lk: number, mask: T, zero: T): T {
    const { b } = this.sh;
    const h = this.cfg.numHeads;
    const s = b * h * lq * lk;
    const scores = this.k.heads
      ? this.matmul(q, k, s) // HpHeadScores saves q, k
      : this.t.scope(() => this.matmul(this.split(q), this.split(k), s));
    let probs: T;
    if (this.k.attentionSoftmax) {
      probs = this.t.fresh(s, true);
      this.t.op([[scores, "new"]], [probs], [zero, mask, probs]);
    } else {
      probs = this.t.scope(() => this.softmax(this.bin("add", scores, mask, s), lk));
    }
    const attn = this.drop(probs);
    if (this.k.heads) return this.matmul(attn, v, b * lq * h * this.cfg.dKv); // HpHeadContext
    return this.t.scope(() => {
      const ctx = this.matmul(attn, this.split(v), b * lq * h * this.cfg.dKv);
      return this.reshape(this.un(ctx, "none"));
    });
  }
  /**
   * crossEntropyLoss: per-token loss, weighted mean; with {@link T5Replay.zLoss}, plus `z·lse²`
   * per token; with {@link T5Replay.labelSmoothing} on the stock ops, the smoothing term.
   */
  xent(logits: T, n: number, v: number): T {
    const flat = this.reshape(logits);
    const z = this.zLoss > 0;
    // The labels' index tensors (model/t5.ts crossEntropyLoss): `valid` (bool [n], one byte an
    // element on cpu and wasm: n / 4 elements of 4 bytes; webgpu stores bool in 4-byte words,
    // 3n bytes more, not counted), saved by the Where that picks `safe` (int32 [n]) from the
    // labels and a zerosLike (a transient); `safe` is saved by the kernel (fused) or by the Add
    // that makes the picked logits' indices (composite).
    const valid = this.index(n / 4);
    this.t.transientFwd(n);
    const safe = this.index(n);
    this.t.op([], [], [valid, safe]);
    let per: T;
    if (this.k.xent) {
      // z-loss through a kernel that does not fold it into its gradient: the registered gradient
      // adds dlse·exp(x − lse) with Sub, Exp, Mul and Add, each [n, v], in the node's tidy, so
      // at the Add the kernel's dx, the three temporaries and the sum (the gradient) are alive:
      // five [n, v] (the transient is counted before the gradient is).
      const tr = z && !this.k.xentLseGrad ? 5 * n * v : 0;
      per = this.t.fresh(n * 2, true); // HpSoftmaxXent saves logits, labels, out
      this.t.op([[flat, "new"]], [per], [flat, per], tr);
      // softmaxCrossEntropyWithLse: the loss and lse columns, each a slice (saves out)
      if (z) per = this.bin("add", this.un(per, "in", n), this.zTerm(this.un(per, "in", n)), n);
    } else {
      // logSumExp: max (saves x and out), sub (saves both), exp (saves out), sum, log, add
      const mx = this.un(flat, "none", n, 2 * n * v);
      this.t.saved.add(flat.buf);
      const a = this.bin("add", flat, mx, n * v);
      const e = this.un(a, "out");
      const s = this.un(e, "none", n, n * v); // Sum: gradient tiles dy to e's shape
      const lse = this.bin("add", mx, this.un(s, "in"), n);
      // the picked logit: gatherRows over flat.reshape([n·v]) (gradient: a scatter of n·v, the
      // reshaped tensor's map entry: stock tfjs keeps it to the end of the pass even after
      // flat's gradient, which aliases it, is summed into a new one)
      // Its int32 indices r·v + safe: the range and its product with v (saved by the Mul and the
      // Add), and the sum (saved by gatherRows).
      const indices = [this.index(n), this.index(n), this.index(n)];
      const picked = this.t.fresh(n, true);
      this.t.op([[this.reshape(flat), "new"]], [picked], indices);
      per = this.bin("add", lse, picked, n);
      if (this.labelSmoothing > 0) {
        // ε·(lse − mean(x)) + (1 − ε)·(lse − picked). Mean saves x; its gradient (tfjs Mean_grad:
        // div(mul(reshape(dy), ones(x.shape)), v), in the thunk's tidy) has the ones, the
        // product and the quotient (the gradient) alive at once: three [n, v], counted before
        // the gradient is. (The cpu kernel's own x / v temporary, inside the Mean kernel, is no
        // engine tensor: not counted, as no kernel's scratch is.)
        const mean = this.un(flat, "in", n, 3 * n * v);
        const smooth = this.bin("add", lse, mean, n);
        per = this.bin(
          "add",
          this.bin("mul", per, this.t.leaf(1, false), n),
          this.bin("mul", smooth, this.t.leaf(1, false), n),
          n,
        );
      }
      if (z) per = this.bin("add", per, this.zTerm(lse), n);
    }
    const w = this.bin("mul", per, this.t.leaf(n, false), n);
    return this.un(w, "none", 1, n);
  }
  /** `z·lse²` of the `[n]` log-sum-exps: Square (saves lse), Mul by the scalar (saves both). */
  zTerm(lse: T): T {
    return this.bin("mul", this.un(lse, "in"), this.t.leaf(1, false), lse.n);
  }
}

// ---------------------------------------------------------------------------------------------
// Weights, gradients, optimizer state

/** A built-in implementation's activation terms beyond its plan (see {@link IMPLEMENTATIONS}). */
type Refinement = (parsed: Record<string, unknown>, cfg: T5Config) => Partial<MethodActs>;

/**
 * What the built-in implementations do beyond what their `FlopPlan` says (how they make the
 * tensors the plan names), by the method object the registry holds (so a method of another name
 * that reuses a name prefix, or a copy under another key, is not taken for one of them). The
 * methods listed with nothing extra are fully described by their plan: the replay's prompt rows,
 * prefix keys/values and adapters are theirs.
 */
const IMPLEMENTATIONS: ReadonlyMap<unknown, Refinement> = new Map<unknown, Refinement>([
  [mtl, () => ({})],
  [promptTuning, () => ({ promptRows: true })],
  [mtlPrompt, () => ({})],
  // Share / Sep: the global prompts and each block's local networks, op by op.
  [hyperpromptShare, (p) => ({
    bottleneck: p.bottleneck as number,
    localHyper: { sep: false, biases: p.biases as boolean },
    prefixPositionBias: p.positionBias as "zero" | "relative",
  })],
  [hyperpromptSep, (p) => ({
    bottleneck: p.bottleneck as number,
    localHyper: { sep: true, biases: p.biases as boolean },
    prefixPositionBias: p.positionBias as "zero" | "relative",
  })],
  // Global: the task projector and generators every conditioned block uses, op by op.
  [hyperpromptGlobal, (p, cfg) => ({
    bottleneck: p.bottleneck as number,
    prefixPositionBias: p.positionBias as "zero" | "relative",
    globalHyper: {
      embedding: p.embeddingDim as number,
      hidden: p.hiddenDim as number,
      projected: p.projectedDim as number,
      layerNorm: p.layerNorm as boolean,
      biases: p.biases as boolean,
      perStackHypernets: p.perStackHypernets as boolean,
      blocks: (p.stacks as readonly Stack[]).reduce(
        (n, s) => n + (s === "encoder" ? cfg.numLayers : cfg.numDecoderLayers),
        0,
      ),
    },
  })],
  [adapterMethod, (p) => ({ adapterNorm: p.layerNorm as "shared" | "per_task" | "none" })],
  [hyperformerPP, (p, cfg) => ({
    adapterNorm: p.conditionalLayerNorm ? "generated" : "none",
    adapterHyper: {
      embedding: p.taskEmbeddingDim as number,
      hidden: p.hiddenDim as number,
      projected: p.projectedDim as number,
      layerNorm: p.projectorLayerNorm as boolean,
      encoderLayers: cfg.numLayers,
      decoderLayers: cfg.numDecoderLayers,
    },
  })],
]);

/**
 * The activation terms of a method, from where its `FlopPlan` says its trained tensors enter T5
 * (encoder prompt rows, self-attention prefix, bottleneck adapters, elementwise tensors), refined
 * for the built-in implementations ({@link IMPLEMENTATIONS}); `notes` say, naming the method,
 * what the estimate of another method assumes or cannot count.
 */
function methodActs(
  name: string,
  method: Method<unknown>,
  plan: FlopPlan,
  parsed: Record<string, unknown>,
  cfg: T5Config,
  extra: number,
  tasks: number,
): { acts: MethodActs; notes: string[] } {
  const where = `benchmarks/memory.ts: method "${name}" flopPlan`;
  const count = (x: number | undefined, field: string, min: number) => {
    if (x === undefined) return 0;
    if (!Number.isInteger(x) || x < min) {
      throw new Error(`${where}: field "${field}" must be an integer >= ${min}, got ${x}`);
    }
    return x;
  };
  // A list of `a` and/or `b` (stacks or sublayers); absent: none.
  const listOf = <S extends string>(
    x: readonly S[] | undefined,
    field: string,
    [a, b]: readonly [S, S],
  ): readonly S[] => {
    if (x === undefined) return [];
    if (!Array.isArray(x) || !x.every((s) => s === a || s === b)) {
      throw new Error(
        `${where}: field "${field}" must list "${a}" and/or "${b}", got ${JSON.stringify(x)}`,
      );
    }
    return x;
  };
  const elementwiseOp = (x: unknown): "add" | "mul" => {
    if (x === undefined) return "mul"; // not said: the larger of Add's and Mul's
    if (x !== "add" && x !== "mul") {
      throw new Error(
        `${where}: field "elementwise.op" must be "add" or "mul", got ${JSON.stringify(x)}`,
      );
    }
    return x;
  };
  const stacks = (x: readonly Stack[] | undefined, field: string) =>
    listOf(x, field, ["encoder", "decoder"]);
  const positions = (x: readonly Position[] | undefined, field: string) =>
    listOf(x, field, ["self_attention", "feed_forward"]);
  const prefix = plan.selfAttentionPrefix;
  const adapters = plan.adapters;
  const elementwise = plan.elementwise;
  const acts: MethodActs = {
    tasks,
    bottleneck: 0,
    prefixPositionBias: "zero",
    promptLength: count(plan.encoderPrompt, "encoderPrompt", 0),
    prefixLength: count(prefix?.length, "selfAttentionPrefix.length", 1),
    prefixStacks: stacks(prefix?.stacks, "selfAttentionPrefix.stacks"),
    adapterWidth: count(adapters?.bottleneck, "adapters.bottleneck", 1),
    adapterStacks: stacks(adapters?.stacks, "adapters.stacks"),
    adapterPositions: positions(adapters?.positions, "adapters.positions"),
    // Another method's adapters: the Vanilla Adapter's ops with a per-task LayerNorm (the most
    // they keep of the norms modelled).
    adapterNorm: "per_task",
    elementwiseStacks: stacks(elementwise?.stacks, "elementwise.stacks"),
    elementwisePositions: positions(elementwise?.positions, "elementwise.positions"),
    elementwiseOp: elementwiseOp(elementwise?.op),
  };
  const refine = IMPLEMENTATIONS.get(method);
  if (refine !== undefined) {
    return { acts: { ...acts, ...refine(parsed, cfg) }, notes: [] };
  }
  const notes: string[] = [];
  const said = (s: string) => notes.push(`method "${name}": ${s}`);
  const hasPrefix = acts.prefixLength > 0 && acts.prefixStacks.length > 0;
  const hasAdapters = acts.adapterStacks.length > 0 && acts.adapterPositions.length > 0;
  const hasElementwise = acts.elementwiseStacks.length > 0 &&
    acts.elementwisePositions.length > 0;
  if (extra > 0 && !(acts.promptLength > 0 || hasPrefix || hasAdapters || hasElementwise)) {
    said(
      `its flopPlan names no way its ${extra} parameters enter T5 (encoderPrompt, ` +
        `selfAttentionPrefix, adapters, elementwise), so the memory estimate counts no ` +
        `activations of them (their weights, gradients and optimizer state are counted)`,
    );
  }
  if (hasPrefix) {
    said(
      `the memory estimate counts its self-attention prefix as ${acts.prefixLength} trained ` +
        `keys and values per example and block; what makes them (a hypernetwork's ` +
        `activations) is not counted`,
    );
  }
  if (hasAdapters) {
    said(
      `the memory estimate counts its adapters as the Vanilla Adapter's ops (per-task weights, ` +
        `a per-task LayerNorm); what generates their weights (a hypernetwork's activations) is ` +
        `not counted`,
    );
  }
  if (hasElementwise) {
    said(
      `the memory estimate counts its elementwise tensors as one trained row of dModel per ` +
        `example and sublayer, ${
          elementwise?.op === "add"
            ? "added (a per-task bias)"
            : elementwise?.op === "mul"
            ? "multiplied in (a per-task scale)"
            : "multiplied in (its flopPlan's elementwise.op does not say; a Mul's is the larger)"
        }; a larger one (per token) is not counted`,
    );
  }
  return { acts, notes };
}

/**
 * Backward nodes a freed gradient buffer stays in the fused (webgpu) set's pool: tfjs-webgpu keeps
 * a disposed buffer until the batch of commands that reads it is submitted (`submitBatch`
 * dispatches, {@link MemoryInput.submitBatch}; a node dispatches at least one kernel, so that many
 * nodes bound it). On the software adapter, at the default 64, gpu_check --quick
 * --sections=memory measures peak / estimate 1.00, 0.99, 0.94. The forward replay defers a
 * nested tidy's frees by the same count of forward buffers (`Tape.deferOps`).
 */
function webgpuDeferNodes(input: MemoryInput): number {
  const n = input.submitBatch ?? DEFAULT_SUBMIT_BATCH;
  if (!Number.isInteger(n) || n < 1) {
    throw new Error(`benchmarks/memory.ts: submitBatch must be a positive integer, got ${n}`);
  }
  return n;
}

/** Elements of optimizer state for one variable shape. */
function stateElems(shape: readonly number[], opt: OptimizerMemory): number {
  const n = shape.reduce((a, b) => a * b, 1);
  if (opt.kind === "adamw") return 2 * n;
  let s: number;
  const axes = adafactorFactoredAxes(shape, opt.factored ?? true, opt.minDimSizeToFactor);
  if (axes === null) s = n;
  else s = n / shape[axes[0]]! + n / shape[axes[1]]!;
  if ((opt.beta1 ?? 0) > 0) s += n;
  return s;
}

/**
 * Elements that benchmarks/optim.ts's op-by-op update of one variable of `shape` holds at once
 * beyond the weights, slots and gradients. Each variable is updated in its own `tf.tidy`, whose
 * temporaries all live until it ends, and the variable's new value is made before `assign` frees
 * the old one (a slot's new value replaces the old one at its assign: nothing added). Per op:
 *
 * - Adafactor: `g²`, `g² + ε1`; factored, the update `g·r·c` (two products; the factors are a
 *   row and a column), unfactored the moment's two products, its rsqrt and `g·rsqrt(v)`; the
 *   clipping (threshold 1, always on here) `u²` for the RMS and the quotient; with the parameter
 *   scale `p²`; the product with the step; with a first moment its two products; the decay
 *   term's product and difference (two such terms where T5X's rate is applied apart); the new
 *   parameter. Unfactored 10, factored 8 at the defaults.
 * - AdamW: the moments' products (four) and `g²`, `√v`, its quotient, `+ ε`, `m / denom`, its
 *   product with the step, the new parameter (11); the decay term's two.
 *
 * The cast `g.toFloat()` of a float32 gradient shares its buffer. Measured on cpu at the
 * embedding's `[4096, 64]` (benchmarks/memory_test.ts): before this was counted (6 of the
 * largest variable's size, whatever its factoring), the update phase read 0.78 of the measured.
 */
function opByOpUpdateElems(shape: readonly number[], opt: OptimizerMemory): number {
  const n = shape.reduce((a, b) => a * b, 1);
  const wd = (opt.weightDecay ?? 0) > 0;
  if (opt.kind === "adamw") return n * (11 + (wd ? 2 : 0));
  const factored = adafactorFactoredAxes(shape, opt.factored ?? true, opt.minDimSizeToFactor);
  const scale = opt.multiplyByParameterScale ?? false;
  const rate = (opt.weightDecayRate ?? 0) > 0;
  // The decay terms of the step that has the most: T5X's rate folded into the decoupled decay,
  // or, with the parameter scale or at a zero learning rate, a term of its own.
  const apart = rate && (scale || (opt.zeroLearningRateStep ?? false));
  const decay = apart ? (wd ? 2 : 0) + 2 : wd || rate ? 2 : 0;
  return n * (2 + (factored === null ? 4 : 2) + 2 + (scale ? 1 : 0) + 1 +
    ((opt.beta1 ?? 0) > 0 ? 2 : 0) + decay + 1);
}

/**
 * Whether Adafactor's update runs op by op even where a fused in-place one exists (webgpu, wasm):
 * a first moment (`beta1` > 0), or T5X's decay rate applied as a term of its own (with the
 * parameter scale, or at a step of learning rate 0), which the fused updates do not take
 * (benchmarks/optim.ts `Adafactor.apply`).
 */
function adafactorOpByOpEverywhere(opt: OptimizerMemory): boolean {
  if (opt.kind !== "adafactor") return false;
  const rate = (opt.weightDecayRate ?? 0) > 0;
  return (opt.beta1 ?? 0) > 0 ||
    rate && ((opt.multiplyByParameterScale ?? false) || (opt.zeroLearningRateStep ?? false));
}

/**
 * Whether benchmarks/optim.ts updates a backbone variable of `shape` op by op on the kernel set
 * `kernels` (then {@link opByOpUpdateElems} of it is held): always on the stock ops; on the fused
 * sets where the in-place updates decline it (model/fused.ts `updateAdafactor`,
 * `updateAdafactorUnfactored`, `updateAdamW`):
 *
 * - Adafactor with a first moment or T5X's rate applied apart ({@link adafactorOpByOpEverywhere});
 * - a factored variable that is not a matrix (every fused factored update takes rank 2 only);
 * - wasm: a factored matrix whose column count is not a multiple of 4 (wasm_kernels.ts
 *   `adafactorInPlace`; wasm has no `HpAdafactor` kernel to fall back to), e.g. T5 1.1 small's
 *   `[32, 6]` relative attention bias at the default factoring;
 * - webgpu: an unfactored variable of more than `ADAFACTOR_UNFACTORED_MAX` elements
 *   (webgpu/in_place.ts), e.g. a d-64 model's `[32128, 64]` embedding at `minDimSizeToFactor`
 *   128.
 *
 * AdamW's in-place updates take every float32 variable on both fused sets.
 */
function updatesOpByOp(
  shape: readonly number[],
  opt: OptimizerMemory,
  kernels: KernelSet,
): boolean {
  if (kernels === "composite") return true;
  if (opt.kind === "adamw") return false;
  if (adafactorOpByOpEverywhere(opt)) return true;
  const axes = adafactorFactoredAxes(shape, opt.factored ?? true, opt.minDimSizeToFactor);
  if (axes === null) {
    return kernels === "fused" && shape.reduce((a, b) => a * b, 1) > ADAFACTOR_UNFACTORED_MAX;
  }
  if (shape.length !== 2) return true;
  return kernels !== "fused" && shape[1]! % 4 !== 0;
}

/**
 * A method's stated variable shapes (`Method.variableShapes`), checked: each a list of positive
 * integers, together as many elements as `countParams` says (`extra`); undefined when the method
 * states none.
 *
 * @throws Error naming the method and the variable whose shape is malformed, or both totals
 */
function statedShapes(
  name: string,
  method: Method<unknown>,
  cfg: T5Config,
  parsed: unknown,
  numTasks: number,
  extra: number,
): ReadonlyMap<string, readonly number[]> | undefined {
  if (method.variableShapes === undefined) return undefined;
  const shapes = method.variableShapes(cfg, parsed, numTasks);
  const where = `benchmarks/memory.ts: method "${name}" variableShapes`;
  if (!(shapes instanceof Map)) {
    throw new Error(`${where}: must return a Map from variable name to shape`);
  }
  let total = 0;
  for (const [v, shape] of shapes) {
    if (!Array.isArray(shape) || !shape.every((x) => Number.isInteger(x) && x >= 1)) {
      throw new Error(
        `${where}: variable "${v}" has shape ${
          JSON.stringify(shape)
        }, not a list of positive integers`,
      );
    }
    total += shape.reduce((a: number, b: number) => a * b, 1);
  }
  if (total !== extra) {
    throw new Error(
      `${where}: its ${shapes.size} variables hold ${total} elements, but countParams says ` +
        `${extra} extra parameters`,
    );
  }
  return shapes;
}

function positiveInt(x: number, field: string): number {
  if (!Number.isInteger(x) || x < 1) {
    throw new Error(`benchmarks/memory.ts: field "${field}" must be a positive integer, got ${x}`);
  }
  return x;
}

/**
 * Estimates the device memory of one training step.
 *
 * A method's variables are counted per variable from `Method.variableShapes`, as the backbone's:
 * their optimizer state (Adafactor's factored moments included), their squares in the gradient
 * norm and their update's temporaries. A method that states no shapes is counted as one tensor
 * of all its parameters, its state unfactored (upper bounds).
 *
 * @param input model, method, optimizer and shapes
 * @returns bytes per term and the peak
 * @throws Error naming a bad field (batch sizes, lengths, a micro-batch that does not divide the
 *   batch, an unknown method, a method's `flopPlan` field that is not a count, a list of stacks
 *   or sublayers, or an `elementwise.op` of "add" or "mul", a method's `variableShapes` that are
 *   malformed or disagree with `countParams`)
 * @example
 * ```ts
 * import { estimateTrainingMemory } from "./memory.ts";
 * import { PRESETS } from "../model/config.ts";
 * const e = estimateTrainingMemory({
 *   config: PRESETS["t5-v1_1-base"], method: "mtl", optimizer: { kind: "adafactor" },
 *   batchSize: 128, microBatchSize: 16, inputLength: 512, targetLength: 84, dropout: true,
 * });
 * console.assert(e.peak > e.weights);
 * ```
 */
export function estimateTrainingMemory(input: MemoryInput): MemoryEstimate {
  const cfg = input.config;
  const batch = positiveInt(input.batchSize, "batchSize");
  const micro = positiveInt(input.microBatchSize ?? batch, "microBatchSize");
  const li = positiveInt(input.inputLength, "inputLength");
  const lt = positiveInt(input.targetLength, "targetLength");
  if (micro < batch && batch % micro !== 0) {
    throw new Error(
      `benchmarks/memory.ts: field "microBatchSize" ${micro} does not divide "batchSize" ${batch}`,
    );
  }
  const m = Math.min(micro, batch);
  const bpe = positiveInt(input.bytesPerElement ?? 4, "bytesPerElement");
  const method = getMethod(input.method);
  const parsed = method.parseConfig(input.methodConfig ?? {}, `memory estimate (${input.method})`);
  const plan = method.flopPlan(cfg, parsed);
  // What the backbone trains, as the plan says (every method's plan carries its freezeBackbone).
  const freeze = plan.freezeBackbone;
  const numTasks = input.numTasks ?? 1;
  const { extra } = method.countParams(cfg, parsed, numTasks);
  const actsOf = (tasks: number) =>
    methodActs(
      input.method,
      method,
      plan,
      parsed as unknown as Record<string, unknown>,
      cfg,
      extra,
      tasks,
    );
  const { acts, notes } = actsOf(numTasks);
  const methodShapes = statedShapes(input.method, method, cfg, parsed, numTasks, extra);
  if (methodShapes === undefined && extra > 0) {
    notes.push(
      `method "${input.method}": it states no variableShapes (model/method.ts), so the memory ` +
        `estimate takes its optimizer update's temporaries as 6 × its ${extra} parameters on ` +
        `the stock ops and none on the fused kernel sets`,
    );
  }

  const shapes = t5ParamShapes(cfg);
  let backbone = 0, trainedBackbone = 0, state = 0;
  // The trained variables' sizes (gradient norm) and shapes (update phase).
  const trainedSizes: number[] = [];
  const trainedShapes: (readonly number[])[] = [];
  for (const [name, shape] of shapes) {
    const n = shape.reduce((a, b) => a * b, 1);
    backbone += n;
    if (!backboneTrainable(freeze, name, cfg)) continue;
    trainedBackbone += n;
    state += stateElems(shape, input.optimizer);
    trainedShapes.push(shape);
    trainedSizes.push(n);
  }
  // The method's own variables, given their optimizer slots, squared by the gradient norm and
  // updated one at a time as a backbone variable is (benchmarks/optim.ts treats them alike): by
  // the shapes it states (Method.variableShapes). A method that states none: one tensor of all
  // of them (an upper bound of its largest; its update is counted below) with its state
  // unfactored (AdamW's two moments; Adafactor's second moment, and its first with beta1 > 0),
  // an upper bound. With a frozen backbone, e.g. Prompt-Tuning, they are all that is squared.
  const opt = input.optimizer;
  if (methodShapes !== undefined) {
    for (const shape of methodShapes.values()) {
      state += stateElems(shape, opt);
      trainedShapes.push(shape);
      trainedSizes.push(shape.reduce((a, b) => a * b, 1));
    }
  } else if (extra > 0) {
    trainedSizes.push(extra);
    state += extra * (opt.kind === "adamw" ? 2 : (opt.beta1 ?? 0) > 0 ? 2 : 1);
  }
  const trained = trainedBackbone + extra;
  const weights = (backbone + extra) * bpe;
  const gradients = trained * bpe;
  const optimizerState = state * bpe;
  const accumulator = m < batch ? gradients : 0;

  const kernels = input.kernels ?? "fused";
  if (!KERNEL_SETS.includes(kernels)) {
    throw new Error(
      `benchmarks/memory.ts: field "kernels" must be one of ${
        KERNEL_SETS.map((k) => `"${k}"`).join(", ")
      }, got ${JSON.stringify(kernels)}`,
    );
  }
  // The fused kernels' saved tensors (webgpu and wasm, per op, `kernelOps`); only webgpu defers
  // its frees.
  const fused = kernels !== "composite";
  const ops = kernelOps(kernels);
  const defer = kernels === "fused" ? webgpuDeferNodes(input) : 0;
  const xnn = input.xnnMatMul ?? false;
  if (typeof xnn !== "boolean") {
    throw new Error(
      `benchmarks/memory.ts: field "xnnMatMul" must be a boolean, got ${JSON.stringify(xnn)}`,
    );
  }
  const zLoss = input.zLoss ?? 0;
  if (!(typeof zLoss === "number" && zLoss >= 0 && Number.isFinite(zLoss))) {
    throw new Error(
      `benchmarks/memory.ts: field "zLoss" must be a finite number >= 0, got ${
        typeof zLoss === "number" ? zLoss : JSON.stringify(zLoss)
      }`,
    );
  }
  const labelSmoothing = input.labelSmoothing ?? 0;
  if (
    !(typeof labelSmoothing === "number" && labelSmoothing >= 0 && labelSmoothing < 1)
  ) {
    throw new Error(
      `benchmarks/memory.ts: field "labelSmoothing" must be a number in [0, 1), got ${
        typeof labelSmoothing === "number" ? labelSmoothing : JSON.stringify(labelSmoothing)
      }`,
    );
  }
  const replay = new T5Replay(
    cfg,
    (n) => backboneTrainable(freeze, n, cfg),
    ops,
    input.dropout,
    acts,
    true,
    defer,
    xnn,
    zLoss,
    labelSmoothing,
  );
  const { loss } = replay.run({ b: m, li, lt });
  const saved = replay.t.savedElems();
  const backprop = input.backprop ?? DEFAULT_BACKPROP;
  if (backprop !== "low-memory" && backprop !== "stock") {
    throw new Error(
      `benchmarks/memory.ts: field "backprop" must be "low-memory" or "stock", got ${
        JSON.stringify(backprop)
      }`,
    );
  }
  const back = replay.t.backward(
    loss,
    replay.params,
    backprop === "low-memory",
    defer,
  );
  // XNNPACK's packed weights (plain wasm): the linear maps' weights whose input the backward pass
  // differentiates, and the method's variables (most are right operands of an untransposed
  // matMul: adapters, hypernetworks; an upper bound for the rest).
  let packedElems = 0;
  for (const b of replay.packedWeights) packedElems += b.n;
  const xnnPackedWeights = xnn ? (packedElems + extra) * bpe : 0;
  // The batch (benchmarks/trainer.ts oneStep: made before lossAndGrads, freed after the
  // update): inputIds, attentionMask [batch, li], decoderInputIds, labels [batch, lt], 4 bytes
  // an element whatever bytesPerElement says (int32, float32); lossAndGrads' micro-batch slices
  // of them during a micro-batch's passes.
  const batchBytes = 2 * batch * (li + lt) * 4;
  const microBytes = m < batch ? 2 * m * (li + lt) * 4 : 0;
  const fixed = weights + xnnPackedWeights + optimizerState + accumulator + batchBytes +
    microBytes;
  // Evaluation: greedy decoding (no tape, no dropout) of rows of one task (benchmarks/evaluator.ts
  // decodes each task's set on its own), up to the longest input and target.
  const evalBatch = positiveInt(input.evalBatchSize ?? m, "evalBatchSize");
  const evalReplay = new T5Replay(
    cfg,
    (n) => backboneTrainable(freeze, n, cfg),
    ops,
    false,
    actsOf(1).acts,
    false,
    0,
    xnn,
  );
  evalReplay.evaluate({ b: evalBatch, li, lt });
  // Evaluation's own batch (as the step's above): benchmarks/evaluator.ts's inputIds (int32)
  // and attentionMask (float32) [rows, li], made before greedyDecode and freed after it, 4 bytes
  // an element; each step's decoder ids are the replay's (made and freed in the step's tidy).
  const evalBatchBytes = 2 * evalBatch * li * 4;
  // Gradient norm (benchmarks/trainer.ts globalGradNorm): each gradient's square in its own
  // tidy, so one at a time where frees are immediate; on webgpu a freed square waits for its
  // command buffer, and each gradient takes two dispatches (square, sum), so the squares of up to
  // submitBatch / 2 gradients are held at once: the largest ones, to be safe (measured on the
  // software adapter by gpu_check --quick --sections=memory, whose MTL rows read the norm).
  const normSquares = defer > 0
    ? trainedSizes.sort((a, b) => b - a).slice(0, Math.ceil(defer / 2))
      .reduce((a, b) => a + b, 0)
    : trainedSizes.reduce((a, b) => Math.max(a, b), 0);
  // Update phase: the op-by-op update's temporaries of the variable that has the most (one
  // variable's tidy at a time; opByOpUpdateElems) among those updated op by op: all on the
  // composite path; on the fused sets every variable of a step they do not take, else those
  // their in-place updates decline (updatesOpByOp); the rest update in place. The method's
  // variables are among trainedShapes by the shapes it states.
  let updateElems = 0;
  for (const shape of trainedShapes) {
    if (updatesOpByOp(shape, opt, kernels)) {
      updateElems = Math.max(updateElems, opByOpUpdateElems(shape, opt));
    }
  }
  // A method that states no shapes (one still in the making: methods_test.ts requires them of
  // every method registered in METHODS, the only ones a profile runs): 6 of its parameter
  // count, taken as updated in place on the fused sets unless the whole step runs op by op (what
  // every method got before the shapes were stated; opByOpUpdateElems of one tensor of all of
  // them, 10 of its size, over-counts a method spread over many variables: HyperPrompt-Global
  // tiny-v1_1 read 1.44 of the measured).
  if (methodShapes === undefined && extra > 0 && (!fused || adafactorOpByOpEverywhere(opt))) {
    updateElems = Math.max(updateElems, 6 * extra);
  }
  const updateTmp = updateElems * bpe;
  const phases = {
    forward: fixed + replay.t.fwd * bpe,
    backward: fixed + (saved + back.peak) * bpe,
    // benchmarks/trainer.ts globalGradNorm: one gradient's square at a time (its own tidy),
    // then the per-gradient scalars; measured in benchmarks/memory_test.ts.
    "gradient norm": weights + xnnPackedWeights + optimizerState + batchBytes + gradients +
      normSquares * bpe,
    update: weights + xnnPackedWeights + optimizerState + batchBytes + gradients + updateTmp,
    // Between steps (benchmarks/trainer.ts): gradients and accumulator freed, slots kept.
    evaluation: weights + xnnPackedWeights + optimizerState + evalBatchBytes +
      evalReplay.t.fwd * bpe,
  } as const;
  let peakPhase: MemoryPhase = "forward";
  let trainingPeak = 0;
  for (const k of Object.keys(phases) as (keyof typeof phases)[]) {
    if (phases[k] > phases[peakPhase]) peakPhase = k;
    if (k !== "evaluation") trainingPeak = Math.max(trainingPeak, phases[k]);
  }
  return {
    weights,
    xnnPackedWeights,
    gradients,
    accumulator,
    optimizerState,
    batchTensors: batchBytes + microBytes,
    forwardActivations: replay.t.fwd * bpe,
    savedActivations: saved * bpe,
    activationGradients: (back.peak - back.params) * bpe,
    evaluationActivations: evalReplay.t.fwd * bpe,
    evalBatchTensors: evalBatchBytes,
    evalBatchSize: evalBatch,
    trainingPeak,
    peak: phases[peakPhase],
    peakPhase,
    phases,
    params: {
      total: backbone + extra,
      trained,
      method: extra,
      trainedBackbone,
      backboneStateDict: backbone +
        (["encoder", "decoder"] as const).filter((st) => !shapes.has(`${st}.embed_tokens.weight`))
            .length * cfg.vocabSize * cfg.dModel,
    },
    notes,
  };
}

/**
 * Whether an estimate fits a device with a safety margin.
 *
 * @param e the estimate
 * @param deviceBytes the device's memory
 * @param margin fraction kept free (default 0.1)
 * @throws Error when `margin` is not in [0, 1)
 */
export function fitsDevice(e: MemoryEstimate, deviceBytes: number, margin = 0.1): boolean {
  return e.peak <= deviceBytes * (1 - checkMargin(margin));
}

/** A margin is a fraction of the device kept free: at least 0, below 1 (else nothing fits). */
function checkMargin(margin: number): number {
  if (!(margin >= 0 && margin < 1)) {
    throw new Error(
      `benchmarks/memory.ts: margin must be a fraction of the device's memory in [0, 1), got ${margin}`,
    );
  }
  return margin;
}

/**
 * The largest micro-batch size that divides the batch and whose estimated peak fits the device
 * with the margin, or `undefined` when not even one row fits. The batch itself (no
 * accumulation) is tried first, or `maxMicroBatch` when that is smaller.
 *
 * @param input the run (its `microBatchSize` is ignored)
 * @param deviceBytes the device's memory in bytes
 * @param margin fraction kept free (default 0.1)
 * @param maxMicroBatch the largest micro-batch to try (default the batch)
 * @returns the micro-batch size, or undefined
 * @throws Error naming a bad `deviceBytes`, `margin`, `batchSize` or `maxMicroBatch`
 */
export function largestFittingMicroBatch(
  input: Omit<MemoryInput, "microBatchSize">,
  deviceBytes: number,
  margin = 0.1,
  maxMicroBatch?: number,
): number | undefined {
  if (!(deviceBytes > 0)) {
    throw new Error(`benchmarks/memory.ts: deviceBytes must be positive, got ${deviceBytes}`);
  }
  checkMargin(margin);
  const b = positiveInt(input.batchSize, "batchSize");
  // A bad cap (0, NaN) would try nothing and read as "not even one row fits".
  const cap = maxMicroBatch === undefined ? b : positiveInt(maxMicroBatch, "maxMicroBatch");
  for (let m = Math.min(cap, b); m >= 1; m--) {
    if (b % m !== 0) continue;
    if (fitsDevice(estimateTrainingMemory({ ...input, microBatchSize: m }), deviceBytes, margin)) {
      return m;
    }
  }
  return undefined;
}
