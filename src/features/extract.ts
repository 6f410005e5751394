// Feature extraction over many images with bounded memory: one batch is decoded (the next one prefetched on the
// libuv thread pool while the model runs), run under noGrad, yielded image by image, then freed.
// Preprocessing as RECIPE §10; outputs as forward_features / get_intermediate_layers (RECIPE §1.5, §1.6).
import { Tensor } from '../tensor/tensor.js';
import { select } from '../ops/shape.js';
import type { DecodedImage, LoadManyOptions } from '../data/image.js';
import { decodeImages } from '../data/image.js';
import { listImages } from '../data/image_list.js';
import type { Normalization, ResizeOptions } from '../data/transforms.js';
import { planResize, resizeTensor, resolveResizeOptions, rgbToTensor } from '../data/transforms.js';
import type { Device, DType } from '../tensor/tensor.js';
import { assertEval, type BatchFeatures, checkLayers, type FeatureBackbone, type LayerSelection, modelPlacement, runBackbone } from './backbone.js';

/** Progress after each batch. */
export interface ExtractProgress {
  /** Images processed (features computed) so far. */
  done: number;
  /** Images skipped so far (unreadable or corrupt, with `onError: 'skip'`). */
  skipped: number;
  /** Images in the input. */
  total: number;
}

export interface ExtractOptions extends Omit<ResizeOptions, 'patchSize'>, LoadManyOptions {
  /** Input normalisation (default `'lvd1689m'`; `'sat493m'` for the satellite models). */
  normalization?: Normalization;
  /** Take the outputs of the last n blocks (number) or of 0-based block indices instead of the final outputs. */
  layers?: LayerSelection;
  /** With `layers`: apply the final norm to each (default true). */
  norm?: boolean;
  /** Images per forward pass (default 8). */
  batchSize?: number;
  /** Device and dtype of the model input (default: those of the model's parameters). */
  device?: Device;
  dtype?: DType;
  onProgress?: (p: ExtractProgress) => void;
}

/**
 * Features of one image, on the CPU in float32. Without `layers`: `cls [D]`, `storage [R, D]`, `patches [h, w, D]`
 * (the final normed tokens); with `layers`, each gains a leading layer dim `L`. The tensors are freed when the
 * iteration moves on: `clone()` (and later dispose) what you keep.
 */
export interface ImageFeatures {
  /** The image file (undefined for tensor input). */
  path: string | undefined;
  /** Position in the input (skipped images keep their index free). */
  index: number;
  cls: Tensor;
  storage: Tensor;
  patches: Tensor;
  /** Patch grid [h, w] and model input size [H, W]. */
  grid: [number, number];
  inputSize: [number, number];
}

const isPosInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v > 0;

function checkOptions(model: FeatureBackbone, o: ExtractOptions): void {
  checkLayers(model, o.layers, 'extractFeatures');
  if (o.batchSize !== undefined && !isPosInt(o.batchSize)) throw new RangeError(`extractFeatures: batchSize must be a positive integer, received ${String(o.batchSize)}`);
  if (o.onError !== undefined && o.onError !== 'skip' && o.onError !== 'fail')
    throw new RangeError(`extractFeatures: onError must be "skip" or "fail", received "${String(o.onError)}"`);
}

interface Pending {
  f: BatchFeatures;
  row: number;
  path: string | undefined;
  index: number;
  inputSize: [number, number];
}

/** Hands out the images in order as views of their batch, freeing each one's views when the consumer moves on. */
function* handOut(pending: readonly Pending[]): Generator<ImageFeatures> {
  for (const { f, row, path, index, inputSize } of pending) {
    const ps = f.patches.shape;
    const grid: [number, number] = [ps[ps.length - 3]!, ps[ps.length - 2]!];
    const item: ImageFeatures = { path, index, cls: select(f.cls, 0, row), storage: select(f.storage, 0, row), patches: select(f.patches, 0, row), grid, inputSize };
    try {
      yield item;
    } finally {
      disposeAll([item]);
    }
  }
}

function disposeAll(items: readonly (ImageFeatures | BatchFeatures)[]): void {
  for (const it of items) for (const t of [it.cls, it.storage, it.patches]) t.dispose();
}

/**
 * Extracts DINOv3 features image by image.
 * @param input image paths, a folder (searched recursively), a glob, or a normalised `[N, 3, H, W]` / `[3, H, W]`
 *   tensor, used at its own size (H and W multiples of the patch size; with `sizeMultiple: 'round'` other sizes are
 *   resized; the other resize options and `normalization` do not apply to tensors).
 * @example
 * const { model } = await loadBackbone('dinov3_vits16_pretrain_lvd1689m-08c60483.pth');
 * for await (const f of extractFeatures(model, 'photos/', { resolution: 512, batchSize: 16 })) {
 *   console.log(f.path, f.cls.shape, f.patches.shape); // [384], [32, 32, 384]
 * }
 * @throws ImageError for unreadable images with `onError: 'fail'` (the default), and when `input` names no images;
 *   RangeError for invalid options or a model in training mode.
 */
export async function* extractFeatures(
  model: FeatureBackbone,
  input: string | readonly string[] | Tensor,
  options: ExtractOptions = {},
): AsyncGenerator<ImageFeatures, void, undefined> {
  checkOptions(model, options);
  assertEval(model, 'extractFeatures');
  const place = modelPlacement(model);
  const device = options.device ?? place.device;
  const dtype = options.dtype ?? place.dtype;
  const batchSize = options.batchSize ?? 8;
  const resize: ResizeOptions = { ...options, patchSize: model.patchSize };
  // Bad resize settings (e.g. a resolution that is not a multiple of the patch size) throw now, not once per image.
  const policy = resolveResizeOptions(resize).resize;
  if (policy === 'square' || policy === 'shortSide') planResize(1, 1, resize);

  if (input instanceof Tensor) {
    yield* extractFromTensor(model, input, { ...options, device, dtype, batchSize });
    return;
  }

  const paths = await listImages(input);
  const total = paths.length;
  const nBatches = Math.ceil(total / batchSize);
  const decode = (b: number) => decodeImages(paths.slice(b * batchSize, (b + 1) * batchSize), { ...resize, onError: options.onError, onSkip: options.onSkip });
  let done = 0;
  let skipped = 0;
  let next: ReturnType<typeof decode> | null = decode(0);
  for (let b = 0; b < nBatches; b++) {
    const current = await next!;
    next = b + 1 < nBatches ? decode(b + 1) : null;
    next?.catch(() => undefined); // rejections are seen when awaited; avoid an unhandled one if we stop early
    skipped += current.skipped.length;
    const indexOf = new Map(paths.slice(b * batchSize, (b + 1) * batchSize).map((p, i) => [p, b * batchSize + i]));
    // Images of one size run together (keepAspect/none may mix sizes), then come out in input order.
    const groups = new Map<string, DecodedImage[]>();
    for (const im of current.images) {
      const k = `${im.width}x${im.height}`;
      groups.set(k, [...(groups.get(k) ?? []), im]);
    }
    const batches: BatchFeatures[] = [];
    const pending: Pending[] = [];
    try {
      for (const group of groups.values()) {
        const x = rgbToTensor(group, { normalization: options.normalization, device, dtype });
        let f: BatchFeatures;
        try {
          f = runBackbone(model, x, options.layers, options.norm);
        } finally {
          x.dispose();
        }
        batches.push(f);
        group.forEach((im, row) => pending.push({ f, row, path: im.path, index: indexOf.get(im.path!)!, inputSize: [im.height, im.width] }));
      }
      done += pending.length;
      options.onProgress?.({ done, skipped, total });
      pending.sort((a, c) => a.index - c.index);
      yield* handOut(pending);
    } finally {
      disposeAll(batches);
    }
  }
}

async function* extractFromTensor(
  model: FeatureBackbone,
  input: Tensor,
  o: ExtractOptions & { device: Device; dtype: DType; batchSize: number },
): AsyncGenerator<ImageFeatures, void, undefined> {
  if (input.ndim !== 3 && input.ndim !== 4) throw new RangeError(`extractFeatures: expected a [N, 3, H, W] or [3, H, W] tensor, received ${input.dtype} Tensor [${input.shape.join(', ')}]`);
  const x4 = input.ndim === 4 ? input : input.reshape([1, ...input.shape]);
  try {
    const [N, C, H, W] = x4.shape as [number, number, number, number];
    if (C !== 3) throw new RangeError(`extractFeatures: expected 3 channels, received ${input.dtype} Tensor [${input.shape.join(', ')}]`);
    let plan: ReturnType<typeof planResize>;
    try {
      plan = planResize(W, H, { resize: 'none', patchSize: model.patchSize, sizeMultiple: o.sizeMultiple ?? 'reject' });
    } catch (e) {
      throw new RangeError(`extractFeatures: input tensor ${(e as Error).message.replace(/^image /, '')}`);
    }
    for (let start = 0; start < N; start += o.batchSize) {
      const n = Math.min(o.batchSize, N - start);
      const f = runTensorBatch(model, x4, start, n, [plan.height, plan.width], o);
      try {
        o.onProgress?.({ done: start + n, skipped: 0, total: N });
        yield* handOut(Array.from({ length: n }, (_, i) => ({ f, row: i, path: undefined, index: start + i, inputSize: [plan.height, plan.width] })));
      } finally {
        disposeAll([f]);
      }
    }
  } finally {
    if (x4 !== input) x4.dispose();
  }
}

function runTensorBatch(model: FeatureBackbone, x4: Tensor, start: number, n: number, size: [number, number], o: ExtractOptions & { device: Device; dtype: DType }): BatchFeatures {
  const views: Tensor[] = [];
  const track = <T extends Tensor>(t: T) => (views.push(t), t);
  try {
    let x = track(x4.narrow(0, start, n));
    if (x.shape[2] !== size[0] || x.shape[3] !== size[1]) x = track(resizeTensor(x, size));
    x = track(x.to({ device: o.device, dtype: o.dtype }));
    return runBackbone(model, x, o.layers, o.norm);
  } finally {
    for (const v of views) v.dispose();
  }
}
