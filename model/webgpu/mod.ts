/**
 * Custom WGSL kernels for the tfjs `webgpu` backend.
 *
 * Call {@link registerWebgpuKernels} once after `tf.setBackend("webgpu")` has succeeded (e.g. in
 * `model/backend.ts`). It replaces the backend's `BatchMatMul` kernel with one that sends float32
 * products with a transposed operand (by default) to the tiled kernel of `matmul_kernels.ts` and
 * everything else to the stock kernel. The kernel registry is global to the tfjs instance, so this
 * affects every later `tf.matMul` on webgpu, forward and backward (tfjs's matMul gradient is
 * itself two matMuls with transpose flags). {@link unregisterWebgpuKernels} restores the stock
 * kernel.
 *
 * Environment: `HYPERPROMPT_WEBGPU_KERNELS=0` makes {@link registerWebgpuKernels} a no-op (an
 * escape hatch if a driver miscompiles the shader); `=all` or `=transposed` overrides `cover`.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import {
  chooseTile,
  MATMUL_TILES,
  type MatMulTileChoice,
  planMatMul,
  runTiledMatMul,
  tileByName,
  type WebGpuBackendLike,
} from "./matmul_kernels.ts";

export {
  chooseTile,
  MATMUL_TILES,
  type MatMulTile,
  type MatMulTileChoice,
  tiledMatMulSource,
} from "./matmul_kernels.ts";

/** Options of {@link registerWebgpuKernels}. */
export interface WebgpuKernelOptions {
  /**
   * Which `BatchMatMul` calls the tiled kernel takes: "transposed" (a transpose flag is set: the
   * cases measured 6–11× slower than untransposed in stock tfjs) or "all" float32 calls.
   * @default "transposed"
   */
  readonly cover?: "transposed" | "all";
  /** Tile for every call, or "auto" to choose per call with {@link chooseTile}. @default "auto" */
  readonly tile?: MatMulTileChoice;
  /** For "auto": prefer the largest tile giving at least this many workgroups. @default 256 */
  readonly minWorkgroups?: number;
}

/** Counters of {@link registerWebgpuKernels}'s `BatchMatMul` since the last reset. */
export interface WebgpuKernelStats {
  /** Calls run by the tiled kernel, by tile name. */
  readonly tiled: Record<string, number>;
  /** Calls passed to the stock kernel, by reason. */
  readonly stock: Record<string, number>;
}

interface Installed {
  readonly original: tf.KernelConfig;
  readonly options: Required<WebgpuKernelOptions>;
}

let installed: Installed | undefined;
let stats: { tiled: Record<string, number>; stock: Record<string, number> } = {
  tiled: {},
  stock: {},
};

function bump(rec: Record<string, number>, key: string): void {
  rec[key] = (rec[key] ?? 0) + 1;
}

function envSetting(): string | undefined {
  try {
    return Deno.env.get("HYPERPROMPT_WEBGPU_KERNELS");
  } catch {
    return undefined; // no --allow-env: use the options as given
  }
}

function resolveOptions(opts: WebgpuKernelOptions): Required<WebgpuKernelOptions> {
  const cover = opts.cover ?? "transposed";
  if (cover !== "transposed" && cover !== "all") {
    throw new Error(
      `model/webgpu/mod.ts registerWebgpuKernels: cover must be "transposed" or "all", got ${
        String(cover)
      }`,
    );
  }
  const tile = opts.tile ?? "auto";
  if (tile !== "auto") tileByName(tile);
  const minWorkgroups = opts.minWorkgroups ?? 256;
  if (!Number.isInteger(minWorkgroups) || minWorkgroups < 1) {
    throw new Error(
      `model/webgpu/mod.ts registerWebgpuKernels: minWorkgroups must be a positive integer, got ${minWorkgroups}`,
    );
  }
  return { cover, tile, minWorkgroups };
}

/**
 * Installs the custom webgpu kernels (currently `BatchMatMul`). Safe to call again: a second call
 * replaces the options and keeps the original stock kernel for delegation.
 *
 * @param opts see {@link WebgpuKernelOptions}
 * @returns whether the kernels are installed (false when `HYPERPROMPT_WEBGPU_KERNELS=0` or the
 *   webgpu backend is not registered, i.e. `@tensorflow/tfjs-backend-webgpu` was not imported)
 */
export function registerWebgpuKernels(opts: WebgpuKernelOptions = {}): boolean {
  const env = envSetting();
  if (env === "0" || env === "off") {
    unregisterWebgpuKernels();
    return false;
  }
  const options = resolveOptions(
    env === "all" || env === "transposed" ? { ...opts, cover: env } : opts,
  );
  const original = installed?.original ?? tf.getKernel("BatchMatMul", "webgpu");
  if (original === undefined) return false;
  installed = { original, options };
  const kernelFunc: tf.KernelFunc = (args) => {
    const { inputs, backend, attrs } = args;
    const a = inputs["a"] as tf.TensorInfo;
    const b = inputs["b"] as tf.TensorInfo;
    const transposeA = attrs?.["transposeA"] === true;
    const transposeB = attrs?.["transposeB"] === true;
    const stock = (why: string) => {
      bump(stats.stock, why);
      return original.kernelFunc(args);
    };
    if (options.cover === "transposed" && !transposeA && !transposeB) return stock("untransposed");
    if (a.dtype !== "float32" || b.dtype !== "float32") return stock("dtype");
    const gpu = backend as unknown as WebGpuBackendLike;
    const plan = planMatMul(
      a.shape,
      b.shape,
      transposeA,
      transposeB,
      gpu.device.limits.maxComputeWorkgroupsPerDimension,
      MATMUL_TILES[MATMUL_TILES.length - 1]!.tileM,
    );
    if (typeof plan === "string") return stock(plan);
    const tile = options.tile === "auto"
      ? chooseTile(plan.batch, plan.m, plan.n, options.minWorkgroups)
      : tileByName(options.tile);
    bump(stats.tiled, tile.name);
    return runTiledMatMul(gpu, a, b, plan, transposeA, transposeB, tile);
  };
  tf.unregisterKernel("BatchMatMul", "webgpu");
  tf.registerKernel({ kernelName: "BatchMatMul", backendName: "webgpu", kernelFunc });
  return true;
}

/** Restores the stock webgpu kernels replaced by {@link registerWebgpuKernels} (no-op if none). */
export function unregisterWebgpuKernels(): void {
  if (installed === undefined) return;
  tf.unregisterKernel("BatchMatMul", "webgpu");
  tf.registerKernel(installed.original);
  installed = undefined;
}

/** Whether {@link registerWebgpuKernels} is in effect, and with which options. */
export function webgpuKernelsInstalled(): Required<WebgpuKernelOptions> | undefined {
  return installed?.options;
}

/** Counters of tiled vs stock `BatchMatMul` calls since the last {@link resetWebgpuKernelStats}. */
export function webgpuKernelStats(): WebgpuKernelStats {
  return { tiled: { ...stats.tiled }, stock: { ...stats.stock } };
}

/** Zeroes the counters of {@link webgpuKernelStats}. */
export function resetWebgpuKernelStats(): void {
  stats = { tiled: {}, stock: {} };
}

/** Result of {@link selfCheckWebgpuKernels}. */
export interface WebgpuSelfCheck {
  /** Whether every product was within tolerance. */
  readonly ok: boolean;
  /** Largest relative L2 error over the four transpose combinations. */
  readonly maxRelErr: number;
}

/**
 * Checks the installed kernels on the current device before a run trusts them: products with
 * every transpose combination (batched, sizes that are not tile multiples) against a float64
 * reference computed in JavaScript from the same inputs. Tolerance 1e-5 relative L2: float32
 * sums of 45 terms differ from float64 by ~1e-7, an indexing or driver fault by ~1.
 *
 * @returns whether the kernels agree, and the worst error
 */
export async function selfCheckWebgpuKernels(): Promise<WebgpuSelfCheck> {
  const [batch, m, k, n] = [2, 37, 45, 33];
  let maxRelErr = 0;
  for (const transposeA of [false, true]) {
    for (const transposeB of [false, true]) {
      const aShape: [number, number, number] = transposeA ? [batch, k, m] : [batch, m, k];
      const bShape: [number, number, number] = transposeB ? [batch, n, k] : [batch, k, n];
      const a = tf.randomUniform(aShape, -1, 1, "float32", 11) as tf.Tensor3D;
      const b = tf.randomUniform(bShape, -1, 1, "float32", 12) as tf.Tensor3D;
      const c = tf.matMul(a, b, transposeA, transposeB);
      const [av, bv, cv] = await Promise.all([a.data(), b.data(), c.data()]);
      tf.dispose([a, b, c]);
      let num = 0;
      let den = 0;
      for (let p = 0; p < batch; p++) {
        for (let i = 0; i < m; i++) {
          for (let j = 0; j < n; j++) {
            let s = 0;
            for (let q = 0; q < k; q++) {
              const x = transposeA ? av[p * k * m + q * m + i]! : av[p * m * k + i * k + q]!;
              const y = transposeB ? bv[p * n * k + j * k + q]! : bv[p * k * n + q * n + j]!;
              s += x * y;
            }
            const d = cv[p * m * n + i * n + j]! - s;
            num += d * d;
            den += s * s;
          }
        }
      }
      maxRelErr = Math.max(maxRelErr, Math.sqrt(num / den));
    }
  }
  return { ok: maxRelErr <= 1e-5, maxRelErr };
}
