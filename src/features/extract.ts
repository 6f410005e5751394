// Feature extraction over many images with bounded memory: one batch is decoded (the next one prefetched on the
// libuv thread pool while the model runs), run under noGrad, and yielded image by image as results the caller owns
// (the batch itself is freed before the next one). Preprocessing as dinov3/data/transforms.py
// (make_classification_eval_transform); outputs as dinov3/models/vision_transformer.py::DinoVisionTransformer
// forward_features / get_intermediate_layers.
import { Tensor } from '../tensor/tensor.js';
import { select } from '../ops/shape.js';
import type { DecodedImage, LoadManyOptions } from '../data/image.js';
import { decodeImages } from '../data/image.js';
import { type ImageListing, listImageInputs } from '../data/image_list.js';
import { ImageError, TorchRangeError, TorchTypeError } from '../native/errors.js';
import { scope } from '../tensor/scope.js';
import type { Normalization, ResizeOptions } from '../data/transforms.js';
import { planResize, resizeTensor, resolveResizeOptions, rgbToTensor } from '../data/transforms.js';
import type { Device, DType } from '../tensor/tensor.js';
import {
  assertEval,
  type BatchFeatures,
  checkLayers,
  type FeatureBackbone,
  type LayerSelection,
  modelNormalization,
  modelPlacement,
  runBackbone,
} from './backbone.js';

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
  /** Input normalisation (default: the model's, as loadBackbone sets it: `'sat493m'` for the satellite models,
   * else `'lvd1689m'`). */
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
  /** `'tensors'` (default): each result holds Tensors the caller owns (dispose them, or `using`); `'arrays'`: plain
   * Float32Arrays with their shapes, nothing to dispose. */
  as?: 'tensors' | 'arrays';
  /** Largest image file read (default MAX_IMAGE_FILE_BYTES). */
  maxFileBytes?: number;
  /** Called for every input that names an image already listed (it is processed once). */
  onDuplicate?: (d: { path: string; sameAs: string }) => void;
}

/** What every result has besides its features. */
interface FeatureInfo {
  /** The image file (undefined for tensor input). */
  path: string | undefined;
  /** Position in the input (skipped images keep their index free). */
  index: number;
  /** Patch grid [h, w] and model input size [H, W]. */
  grid: [number, number];
  inputSize: [number, number];
}

/**
 * Features of one image, on the CPU in float32. Without `layers`: `cls [D]`, `storage [R, D]`, `patches [h, w, D]`
 * (the final normed tokens); with `layers`, each gains a leading layer dim `L`. The caller owns the tensors: keep
 * them as long as needed and `dispose()` them (or `using f = …`); dropped ones are freed by the garbage collector.
 */
export interface ImageFeatures extends FeatureInfo {
  cls: Tensor;
  storage: Tensor;
  patches: Tensor;
  /** Frees the three tensors. */
  dispose(): void;
  [Symbol.dispose](): void;
}

/** A feature array with its shape (row-major). */
export interface FeatureArray {
  data: Float32Array;
  shape: number[];
}

/** ImageFeatures as plain arrays (`as: 'arrays'`): nothing to dispose. */
export interface ImageFeatureArrays extends FeatureInfo {
  cls: FeatureArray;
  storage: FeatureArray;
  patches: FeatureArray;
}

const isPosInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v > 0;

function checkOptions(model: FeatureBackbone, o: ExtractOptions): void {
  if (o === null || typeof o !== 'object') throw new TorchTypeError('extractFeatures: expected the options to be an object', 'ERR_INVALID_ARG');
  checkLayers(model, o.layers, 'extractFeatures');
  if (o.batchSize !== undefined && !isPosInt(o.batchSize))
    throw new TorchRangeError(`extractFeatures: batchSize must be a positive integer, received ${String(o.batchSize)}`, 'ERR_INVALID_ARG');
  if (o.onError !== undefined && o.onError !== 'skip' && o.onError !== 'fail')
    throw new TorchRangeError(`extractFeatures: onError must be "skip" or "fail", received "${String(o.onError)}"`, 'ERR_INVALID_ARG');
  if (o.as !== undefined && o.as !== 'tensors' && o.as !== 'arrays')
    throw new TorchRangeError(`extractFeatures: as must be "tensors" or "arrays", received "${String(o.as)}"`, 'ERR_INVALID_ARG');
}

interface Pending {
  f: BatchFeatures;
  row: number;
  path: string | undefined;
  index: number;
  inputSize: [number, number];
}

/** One turn of the event loop. The finalizers that free the native memory behind dropped data() buffers run in
 * later turns: a loop that only awaits promises would keep every one of them alive until it ends. */
const macrotask = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Hands out the images in order, each with its own copy of its rows of the batch (the caller owns them). */
function* handOut(pending: readonly Pending[], as: 'tensors' | 'arrays' = 'tensors'): Generator<ImageFeatures | ImageFeatureArrays> {
  for (const { f, row, path, index, inputSize } of pending) {
    const ps = f.patches.shape;
    const grid: [number, number] = [ps[ps.length - 3]!, ps[ps.length - 2]!];
    if (as === 'arrays') {
      const arr = (t: Tensor): FeatureArray =>
        scope(() => {
          const v = select(t, 0, row);
          return { data: v.toFloat32Array(), shape: v.shape };
        });
      yield { path, index, cls: arr(f.cls), storage: arr(f.storage), patches: arr(f.patches), grid, inputSize };
      continue;
    }
    const own = (t: Tensor) => scope(() => select(t, 0, row).clone());
    const tensors = { cls: own(f.cls), storage: own(f.storage), patches: own(f.patches) };
    const dispose = () => {
      for (const t of [tensors.cls, tensors.storage, tensors.patches]) t.dispose();
    };
    yield { path, index, ...tensors, grid, inputSize, dispose, [Symbol.dispose]: dispose };
  }
}

function disposeAll(items: readonly BatchFeatures[]): void {
  for (const it of items) for (const t of [it.cls, it.storage, it.patches]) t.dispose();
}

/**
 * Extracts DINOv3 features image by image.
 * @param input image paths, a folder (searched recursively), a glob, or a normalised `[N, 3, H, W]` / `[3, H, W]`
 *   tensor, used at its own size (H and W multiples of the patch size; with `sizeMultiple: 'round'` other sizes are
 *   resized; the other resize options and `normalization` do not apply to tensors). The input is listed once, up
 *   front (see listImageInputs: regular files only, each file once, repeats reported to `onDuplicate`).
 * @returns results the caller owns: Tensors (dispose them when done) or, with `as: 'arrays'`, plain Float32Arrays
 * @example
 * const { model } = await loadBackbone('dinov3_vits16_pretrain_lvd1689m-08c60483.pth');
 * const all = [];
 * for await (const f of extractFeatures(model, 'photos/', { resolution: 512, batchSize: 16, as: 'arrays' })) {
 *   all.push(f); // f.cls.shape [384], f.patches.shape [32, 32, 384]
 * }
 * @throws ImageError for unreadable images with `onError: 'fail'` (the default), and when `input` names no images;
 *   TorchRangeError (ERR_INVALID_ARG, a RangeError) for invalid options or a model in training mode.
 */
export function extractFeatures(
  model: FeatureBackbone,
  input: string | readonly string[] | Tensor,
  options: ExtractOptions & { as: 'arrays' },
): AsyncGenerator<ImageFeatureArrays, void, undefined>;
export function extractFeatures(
  model: FeatureBackbone,
  input: string | readonly string[] | Tensor,
  options?: ExtractOptions & { as?: 'tensors' },
): AsyncGenerator<ImageFeatures, void, undefined>;
export function extractFeatures(
  model: FeatureBackbone,
  input: string | readonly string[] | Tensor,
  options?: ExtractOptions,
): AsyncGenerator<ImageFeatures | ImageFeatureArrays, void, undefined>;
export async function* extractFeatures(
  model: FeatureBackbone,
  input: string | readonly string[] | Tensor,
  options: ExtractOptions = {},
): AsyncGenerator<ImageFeatures | ImageFeatureArrays, void, undefined> {
  assertEval(model, 'extractFeatures');
  checkOptions(model, options);
  if (input instanceof Tensor) {
    yield* extractFromTensor(model, input, resolvedOptions(model, options));
    return;
  }
  const listing = await listImageInputs(input, { onError: options.onError, onSkip: options.onSkip, maxFileBytes: options.maxFileBytes });
  for (const d of listing.duplicates) options.onDuplicate?.(d);
  yield* extractListing(model, listing, options);
}

type Resolved = ExtractOptions & { device: Device; dtype: DType; batchSize: number };

function resolvedOptions(model: FeatureBackbone, options: ExtractOptions): Resolved {
  const place = modelPlacement(model);
  const resize: ResizeOptions = { ...options, patchSize: model.patchSize };
  // Bad resize settings (e.g. a resolution that is not a multiple of the patch size) throw now, not once per image.
  const policy = resolveResizeOptions(resize).resize;
  if (policy === 'square' || policy === 'shortSide') planResize(1, 1, resize);
  return { ...options, device: options.device ?? place.device, dtype: options.dtype ?? place.dtype, batchSize: options.batchSize ?? 8 };
}

/**
 * extractFeatures over a listing made once by the caller (saveFeatures lists, checks its output against the inputs,
 * then extracts exactly those files). Options are checked here too.
 */
export async function* extractListing(
  model: FeatureBackbone,
  listing: ImageListing,
  options: ExtractOptions = {},
): AsyncGenerator<ImageFeatures | ImageFeatureArrays, void, undefined> {
  assertEval(model, 'extractFeatures');
  checkOptions(model, options);
  const o = resolvedOptions(model, options);
  const resize: ResizeOptions = { ...options, patchSize: model.patchSize };
  const paths = listing.paths;
  if (paths.length === 0) {
    throw new ImageError(`no images to process: all ${listing.skipped.length} inputs were skipped`, listing.skipped[0]?.path);
  }
  const total = paths.length;
  const batchSize = o.batchSize;
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
        const x = rgbToTensor(group, { normalization: modelNormalization(model, options.normalization), device: o.device, dtype: o.dtype });
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
      yield* handOut(pending, options.as);
    } finally {
      disposeAll(batches);
    }
    await macrotask();
  }
}

async function* extractFromTensor(model: FeatureBackbone, input: Tensor, o: Resolved): AsyncGenerator<ImageFeatures | ImageFeatureArrays, void, undefined> {
  if (input.ndim !== 3 && input.ndim !== 4)
    throw new TorchRangeError(
      `extractFeatures: expected a [N, 3, H, W] or [3, H, W] tensor, received ${input.dtype} Tensor [${input.shape.join(', ')}]`,
      'ERR_INVALID_ARG',
    );
  const x4 = input.ndim === 4 ? input : input.reshape([1, ...input.shape]);
  try {
    const [N, C, H, W] = x4.shape as [number, number, number, number];
    if (C !== 3)
      throw new TorchRangeError(`extractFeatures: expected 3 channels, received ${input.dtype} Tensor [${input.shape.join(', ')}]`, 'ERR_INVALID_ARG');
    let plan: ReturnType<typeof planResize>;
    try {
      plan = planResize(W, H, { resize: 'none', patchSize: model.patchSize, sizeMultiple: o.sizeMultiple ?? 'reject' });
    } catch (e) {
      throw new TorchRangeError(`extractFeatures: input tensor ${(e as Error).message.replace(/^image /, '')}`, 'ERR_INVALID_ARG');
    }
    for (let start = 0; start < N; start += o.batchSize) {
      const n = Math.min(o.batchSize, N - start);
      const f = runTensorBatch(model, x4, start, n, [plan.height, plan.width], o);
      try {
        o.onProgress?.({ done: start + n, skipped: 0, total: N });
        yield* handOut(
          Array.from({ length: n }, (_, i) => ({ f, row: i, path: undefined, index: start + i, inputSize: [plan.height, plan.width] })),
          o.as,
        );
      } finally {
        disposeAll([f]);
      }
      await macrotask();
    }
  } finally {
    if (x4 !== input) x4.dispose();
  }
}

function runTensorBatch(
  model: FeatureBackbone,
  x4: Tensor,
  start: number,
  n: number,
  size: [number, number],
  o: ExtractOptions & { device: Device; dtype: DType },
): BatchFeatures {
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
