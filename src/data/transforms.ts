// Inference-time preprocessing (dinov3/data/transforms.py::make_eval_transform, ::make_normalize_transform): resize
// policies, rounding to the patch size, scaling to [0, 1] and the LVD-1689M (ImageNet) / SAT-493M normalisations.
// Pure size planning lives here; decoding is in image.ts.
import { ImageError, TorchRangeError, TorchTypeError } from '../native/errors.js';
import { tensor } from '../tensor/creation.js';
import { argTypeError, expectNumber, expectOptions, expectPositiveInt, showJson } from '../tensor/args.js';
import { scope } from '../tensor/scope.js';
import type { DType, Device, Tensor } from '../tensor/tensor.js';
import { clamp, div, sub } from '../ops/pointwise.js';
import { interpolate } from '../ops/nn.js';
import { max, min } from '../ops/reduce.js';
import { permute, reshape } from '../ops/shape.js';
import { expectTensor } from '../nn/module.js';

/** Mean/std of LVD-1689M models (the ImageNet statistics). */
export const LVD1689M_MEAN = [0.485, 0.456, 0.406] as const;
export const LVD1689M_STD = [0.229, 0.224, 0.225] as const;
/** Mean/std of SAT-493M (satellite) models. */
export const SAT493M_MEAN = [0.43, 0.411, 0.296] as const;
export const SAT493M_STD = [0.213, 0.156, 0.143] as const;

/**
 * Per-channel normalisation after scaling to [0, 1]: `'lvd1689m'` (alias `'imagenet'`) for web-image models,
 * `'sat493m'` for the satellite models, `'none'` to keep [0, 1], or explicit RGB statistics.
 */
export type Normalization = 'lvd1689m' | 'imagenet' | 'sat493m' | 'none' | { mean: readonly [number, number, number]; std: readonly [number, number, number] };

/**
 * How an image becomes a model input of side `resolution`:
 * - `square`: resize to resolution × resolution (aspect ratio not kept; the README's recommended transform);
 * - `shortSide`: resize the short side to `resizeShortSide` (default `resolution`, long side scaled and truncated
 *   as torchvision does), then centre-crop resolution × resolution (the k-NN/linear eval transform with 256/224);
 * - `keepAspect`: short side → resolution, long side scaled by the same factor; each side rounded to the nearest
 *   multiple of the patch size;
 * - `none`: keep the decoded size (each side must be a multiple of the patch size, or is rounded).
 */
export type ResizePolicy = 'square' | 'shortSide' | 'keepAspect' | 'none';

/** Resampling kernel; all are antialiased when downscaling (the kernel support scales with the reduction). */
export type Interpolation = 'bicubic' | 'bilinear' | 'nearest' | 'lanczos3';

export interface ResizeOptions {
  /** Target side in pixels (default 256). */
  resolution?: number;
  /** Resize policy (default `'square'`). */
  resize?: ResizePolicy;
  /** `shortSide` only: the short side before the centre crop (default `resolution`). */
  resizeShortSide?: number;
  /** Kernel (default `'bicubic'`, the Catmull-Rom cubic of PIL/torchvision). */
  interpolation?: Interpolation;
  /** Output sides must be multiples of this (default 16, the DINOv3 patch size). */
  patchSize?: number;
  /**
   * What to do with a size that is not a multiple of `patchSize`: `'reject'` (default) throws (a RangeError for the
   * resolution, an ImageError for an image's own size) naming the nearest valid sizes; `'round'` rounds it to the
   * nearest multiple (at least one patch).
   */
  sizeMultiple?: 'round' | 'reject';
}

/** Where a decoded image of `width × height` goes: resize to `resize`, then (optionally) crop `crop`. */
export interface ResizePlan {
  resize: { width: number; height: number };
  crop: { left: number; top: number; width: number; height: number } | null;
  /** The final size (= crop size, or resize size without a crop). */
  width: number;
  height: number;
}

const isPosInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v > 0;

/** Nearest multiple of `m` (ties up), at least `m`. */
export function roundToMultiple(v: number, m: number): number {
  expectNumber('roundToMultiple', 'v', v);
  expectPositiveInt('roundToMultiple', 'm', m);
  return Math.max(m, Math.floor(v / m + 0.5) * m);
}

/** Python's round(): half to even (torchvision's CenterCrop offsets use it). */
function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

function checkMultiple(v: number, what: string, o: Required<Pick<ResizeOptions, 'patchSize' | 'sizeMultiple'>>, path?: string): number {
  const m = o.patchSize;
  if (v % m === 0) return v;
  if (o.sizeMultiple === 'round') return roundToMultiple(v, m);
  const lo = Math.max(m, Math.floor(v / m) * m);
  const hi = Math.ceil(v / m) * m;
  const msg = `${what} ${v} is not a multiple of the patch size ${m}${path ? ` (image "${path}")` : ''}: use ${lo === hi ? lo : `${lo} or ${hi}`}, or sizeMultiple: 'round' to round it`;
  // An image's own size is a property of that image (it may be skipped); a resolution is a setting.
  if (path !== undefined) throw new ImageError(msg, path);
  throw new TorchRangeError(msg, 'ERR_INVALID_ARG');
}

/** Validates resize options and fills in the defaults. */
export function resolveResizeOptions(o: ResizeOptions = {}): Required<ResizeOptions> {
  o = expectOptions('resolveResizeOptions', 'options', o) ?? {};
  const r = {
    resolution: o.resolution ?? 256,
    resize: o.resize ?? 'square',
    resizeShortSide: o.resizeShortSide ?? o.resolution ?? 256,
    interpolation: o.interpolation ?? 'bicubic',
    patchSize: o.patchSize ?? 16,
    sizeMultiple: o.sizeMultiple ?? 'reject',
  } satisfies Required<ResizeOptions>;
  for (const k of ['resolution', 'resizeShortSide', 'patchSize'] as const) {
    if (!isPosInt(r[k])) throw new TorchRangeError(`preprocess: ${k} must be a positive integer, received ${String(r[k])}`, 'ERR_INVALID_ARG');
  }
  if (!['square', 'shortSide', 'keepAspect', 'none'].includes(r.resize))
    throw new TorchRangeError(`preprocess: resize must be one of square, shortSide, keepAspect, none; received "${String(r.resize)}"`, 'ERR_INVALID_ARG');
  if (!['bicubic', 'bilinear', 'nearest', 'lanczos3'].includes(r.interpolation))
    throw new TorchRangeError(
      `preprocess: interpolation must be one of bicubic, bilinear, nearest, lanczos3; received "${String(r.interpolation)}"`,
      'ERR_INVALID_ARG',
    );
  if (r.sizeMultiple !== 'round' && r.sizeMultiple !== 'reject')
    throw new TorchRangeError(`preprocess: sizeMultiple must be "round" or "reject", received "${String(r.sizeMultiple)}"`, 'ERR_INVALID_ARG');
  if (r.resize === 'shortSide' && r.resizeShortSide < r.resolution)
    throw new TorchRangeError(`preprocess: resizeShortSide ${r.resizeShortSide} is smaller than the crop size ${r.resolution}`, 'ERR_INVALID_ARG');
  return r;
}

/**
 * Plans the resize (and crop) of a `width × height` image.
 * @example planResize(451, 300, { resolution: 224, resize: 'shortSide', resizeShortSide: 256 })
 * // → resize 384×256 (torchvision truncates the long side), crop 224×224 at (80, 16)
 * @throws RangeError when the resolution is not a multiple of the patch size and sizeMultiple is 'reject'; ImageError
 *   (naming `path`) when the image's own size is not, with resize 'none'.
 */
export function planResize(width: number, height: number, options: ResizeOptions = {}, path?: string): ResizePlan {
  const o = resolveResizeOptions(options);
  const R = o.resolution;
  const plain = (w: number, h: number): ResizePlan => ({ resize: { width: w, height: h }, crop: null, width: w, height: h });
  switch (o.resize) {
    case 'square': {
      const s = checkMultiple(R, 'resolution', o);
      return plain(s, s);
    }
    case 'keepAspect': {
      const short = Math.min(width, height);
      const scale = R / short;
      return plain(roundToMultiple(width * scale, o.patchSize), roundToMultiple(height * scale, o.patchSize));
    }
    case 'none':
      return plain(checkMultiple(width, 'image width', o, path), checkMultiple(height, 'image height', o, path));
    case 'shortSide': {
      const crop = checkMultiple(R, 'resolution', o);
      const S = Math.max(o.resizeShortSide, crop);
      // torchvision Resize(int): short side = S, long side = int(S * long / short).
      const w = width <= height ? S : Math.trunc((S * width) / height);
      const h = width <= height ? Math.trunc((S * height) / width) : S;
      const left = roundHalfEven((w - crop) / 2);
      const top = roundHalfEven((h - crop) / 2);
      return { resize: { width: w, height: h }, crop: { left, top, width: crop, height: crop }, width: crop, height: crop };
    }
  }
}

/** The mean/std of a normalisation (null for `'none'`). */
export function normalizationStats(n: Normalization): { mean: readonly number[]; std: readonly number[] } | null {
  if (n === 'none') return null;
  if (n === 'lvd1689m' || n === 'imagenet') return { mean: LVD1689M_MEAN, std: LVD1689M_STD };
  if (n === 'sat493m') return { mean: SAT493M_MEAN, std: SAT493M_STD };
  if (typeof n === 'object' && n !== null && n.mean?.length === 3 && n.std?.length === 3 && n.std.every((s) => s > 0)) return n;
  throw new TorchRangeError(
    `preprocess: normalization must be "lvd1689m", "imagenet", "sat493m", "none" or { mean: [r, g, b], std: [r, g, b] } with std > 0, received ${showJson(n)}`,
    'ERR_INVALID_ARG',
  );
}

export interface TensorOptions {
  /** Normalisation after scaling to [0, 1] (default `'lvd1689m'`). */
  normalization?: Normalization;
  /** Device of the result (default cpu). The uint8 pixels are moved first, so the transfer is 4× smaller. */
  device?: Device;
  /** Dtype of the result (default float32); normalisation is computed in float32 first. */
  dtype?: DType;
}

/**
 * Interleaved 8-bit RGB images of one size → a normalised `[N, 3, H, W]` tensor.
 * @throws RangeError if the images differ in size or a buffer has the wrong length.
 */
export function rgbToTensor(images: readonly { data: Uint8Array; width: number; height: number }[], o: TensorOptions = {}): Tensor {
  if (!Array.isArray(images)) throw new TorchTypeError('rgbToTensor: expected "images" to be an array of { data, width, height }', 'ERR_INVALID_ARG');
  if (images.length === 0) throw new TorchRangeError('rgbToTensor: expected at least one image', 'ERR_INVALID_ARG');
  for (const [i, im] of images.entries())
    if (typeof im !== 'object' || im === null || typeof im.data?.length !== 'number')
      throw argTypeError('rgbToTensor', `images[${i}]`, 'an image { data, width, height }', im);
  o = expectOptions('rgbToTensor', 'options', o) ?? {};
  const { width: W, height: H } = images[0]!;
  const plane = W * H * 3;
  const buf = new Uint8Array(plane * images.length);
  images.forEach((im, i) => {
    if (im.width !== W || im.height !== H)
      throw new TorchRangeError(`rgbToTensor: image ${i} is ${im.width}×${im.height}, image 0 is ${W}×${H}; a batch needs one size`, 'ERR_INVALID_ARG');
    if (im.data.length !== plane)
      throw new TorchRangeError(`rgbToTensor: image ${i} has ${im.data.length} bytes, expected ${plane} (${W}×${H}×3)`, 'ERR_INVALID_ARG');
    buf.set(im.data, i * plane);
  });
  const stats = normalizationStats(o.normalization ?? 'lvd1689m');
  return scope(() => {
    let x = tensor(buf, { shape: [images.length, H, W, 3] }); // [N, H, W, 3] uint8
    if (o.device && o.device !== 'cpu') x = x.to(o.device);
    x = div(permute(x, [0, 3, 1, 2]).to('float32'), 255); // [N, 3, H, W] in [0, 1]
    if (stats) x = div(sub(x, statTensor(stats.mean, x)), statTensor(stats.std, x));
    return o.dtype && o.dtype !== 'float32' ? x.to(o.dtype) : x.contiguous();
  });
}

function statTensor(v: readonly number[], like: Tensor): Tensor {
  return tensor([...v], { shape: [1, 3, 1, 1], device: like.device });
}

/**
 * Resizes a `[N, 3, H, W]` (or `[3, H, W]`) float tensor with antialiased interpolation (as torchvision's
 * `Resize(antialias=True)` on tensors); values are clamped to the input range for the cubic kernel's overshoot.
 */
export function resizeTensor(x: Tensor, size: [number, number], interpolation: Exclude<Interpolation, 'lanczos3'> = 'bicubic'): Tensor {
  expectTensor(x, 'resizeTensor', 'x');
  return scope(() => {
    const batched = x.ndim === 4 ? x : reshape(x, [1, ...x.shape]);
    const f = batched.dtype === 'float32' || batched.dtype === 'float64' ? batched : batched.to('float32');
    let y = interpolate(f, { size, mode: interpolation, antialias: interpolation !== 'nearest' });
    if (interpolation === 'bicubic') y = clamp(y, min(f).item(), max(f).item());
    y = y.dtype === x.dtype ? y : y.to(x.dtype);
    return x.ndim === 4 ? y : reshape(y, y.shape.slice(1));
  });
}
