// The part of a backbone that feature extraction needs. DinoVisionTransformer (src/models/vision_transformer.ts)
// satisfies it; tests use small fakes. Running the model and splitting its outputs lives here too.
import { TorchRangeError, TorchTypeError } from '../native/errors.js';
import { noGrad } from '../tensor/grad_mode.js';
import { scope } from '../tensor/scope.js';
import { argTypeError, showJson } from '../tensor/args.js';
import type { Device, DType, Tensor } from '../tensor/tensor.js';
import { stack } from '../ops/shape.js';
import type { Normalization } from '../data/transforms.js';
import { expectTensor } from '../nn/module.js';

/** The normalisation to use: the explicit one, else the model's (its weights'), else LVD-1689M. */
export function modelNormalization(model: FeatureBackbone, explicit: Normalization | undefined): Normalization {
  checkModel(model, 'modelNormalization');
  return explicit ?? model.normalization ?? 'lvd1689m';
}

/** The backbone surface used by extractFeatures and the PCA (dinov3/models/vision_transformer.py::DinoVisionTransformer forward_features,
 * get_intermediate_layers). */
export interface FeatureBackbone {
  readonly embedDim: number;
  readonly patchSize: number;
  readonly nStorageTokens: number;
  /** Number of blocks (checked against `layers` when present). */
  readonly nBlocks?: number;
  /** Module's train/eval flag; extraction refuses a model in training mode. */
  readonly training?: boolean;
  /** The input normalisation of the weights (set by loadBackbone: `sat493m` for the satellite models); the default
   * of extractFeatures, saveFeatures and pcaImage. */
  readonly normalization?: Normalization;
  forwardFeatures(x: Tensor): { clsToken: Tensor; storageTokens: Tensor; patchTokens: Tensor };
  getIntermediateLayers(
    x: Tensor,
    o: { n: number | number[]; reshape?: false; returnClassToken: true; returnExtraTokens: true; norm?: boolean },
  ): [Tensor, Tensor, Tensor][];
  parameters?(): Tensor[];
}

/** Which outputs to take: the final normed tokens (`undefined`), the last n blocks, or 0-based block indices. */
export type LayerSelection = number | number[] | undefined;

/** Features of a batch, on the CPU in float32: CLS `[B, (L,) D]`, storage `[B, (L,) R, D]`, patches `[B, (L,) h, w, D]`. */
export interface BatchFeatures {
  cls: Tensor;
  storage: Tensor;
  patches: Tensor;
}

/** Throws unless `model` looks like a backbone (an object with forwardFeatures). */
export function checkModel(model: unknown, op: string): asserts model is FeatureBackbone {
  if (typeof op !== 'string') throw argTypeError('checkModel', 'op', 'a string (the calling function)', op);
  if (model === null || typeof model !== 'object' || typeof (model as { forwardFeatures?: unknown }).forwardFeatures !== 'function')
    throw new TorchTypeError(
      `${op}: expected "model" to be a backbone (an object with forwardFeatures), received ${model === null ? 'null' : typeof model}`,
      'ERR_INVALID_ARG',
    );
}

/** The device and dtype of the model's parameters (cpu/float32 for a parameter-less fake). */
export function modelPlacement(model: FeatureBackbone): { device: Device; dtype: DType } {
  checkModel(model, 'modelPlacement');
  const p = model.parameters?.()[0];
  return p ? { device: p.device, dtype: p.dtype } : { device: 'cpu', dtype: 'float32' };
}

/** Throws if the model would apply training-time behaviour (drop path, RoPE augmentation). */
export function assertEval(model: FeatureBackbone, op: string): void {
  if (typeof op !== 'string') throw argTypeError('assertEval', 'op', 'a string (the calling function)', op);
  checkModel(model, op);
  if (model.training)
    throw new TorchRangeError(`${op}: the model is in training mode; call model.eval() first (drop path and RoPE augmentation would apply)`, 'ERR_INVALID_ARG');
}

/** Validates a layer selection (against the model's depth when it is known). */
export function checkLayers(model: FeatureBackbone, layers: LayerSelection, op: string): void {
  if (typeof op !== 'string') throw argTypeError('checkLayers', 'op', 'a string (the calling function)', op);
  if (layers === undefined) return;
  const ok =
    (typeof layers === 'number' && Number.isInteger(layers) && layers > 0) ||
    (Array.isArray(layers) && layers.length > 0 && layers.every((i) => Number.isInteger(i) && i >= 0));
  if (!ok)
    throw new TorchRangeError(
      `${op}: layers must be a positive integer (the last n blocks) or a non-empty array of block indices, received ${showJson(layers)}`,
      'ERR_INVALID_ARG',
    );
  const depth = model.nBlocks;
  if (depth === undefined) return;
  if (typeof layers === 'number' && layers > depth)
    throw new TorchRangeError(`${op}: layers ${layers} asks for the last ${layers} blocks of a ${depth}-block model`, 'ERR_INVALID_ARG');
  const bad = Array.isArray(layers) ? layers.find((i) => i >= depth) : undefined;
  if (bad !== undefined)
    throw new TorchRangeError(`${op}: block index ${bad} is out of range for a ${depth}-block model (0 to ${depth - 1})`, 'ERR_INVALID_ARG');
}

/**
 * Runs the backbone on a normalised `[B, 3, H, W]` batch (no grad) and returns its features on the CPU in float32.
 * With `layers`, the outputs of those blocks (each with the final norm unless `norm` is false) are stacked on dim 1.
 */
export function runBackbone(model: FeatureBackbone, x: Tensor, layers: LayerSelection, norm = true): BatchFeatures {
  checkModel(model, 'runBackbone');
  expectTensor(x, 'runBackbone', 'x');
  const [B, , H, W] = x.shape as [number, number, number, number];
  const h = Math.floor(H / model.patchSize);
  const w = Math.floor(W / model.patchSize);
  const host = (t: Tensor) => t.to({ dtype: 'float32', device: 'cpu' }).contiguous();
  return noGrad(() =>
    scope(() => {
      if (layers === undefined) {
        const f = model.forwardFeatures(x);
        return {
          cls: host(f.clsToken), // [B, D]
          storage: host(f.storageTokens), // [B, R, D]
          patches: host(f.patchTokens.reshape([B, h, w, model.embedDim])), // [B, h, w, D]
        };
      }
      const outs = model.getIntermediateLayers(x, { n: layers, returnClassToken: true, returnExtraTokens: true, norm });
      return {
        cls: host(
          stack(
            outs.map((o) => o[1]),
            1,
          ),
        ), // [B, L, D]
        storage: host(
          stack(
            outs.map((o) => o[2]),
            1,
          ),
        ), // [B, L, R, D]
        patches: host(
          stack(
            outs.map((o) => o[0].reshape([B, h, w, model.embedDim])),
            1,
          ),
        ), // [B, L, h, w, D]
      };
    }),
  );
}
