// Image decoding with sharp (libvips) and the model-input transform of dinov3/data/transforms.py::make_eval_transform: EXIF orientation applied, any
// colour space / bit depth / alpha → 8-bit sRGB, antialiased resize (+ centre crop), [0, 1], mean/std normalisation.
// Decoding runs on libuv's thread pool, so several images decode in parallel off the JS thread.
import { readFile } from 'node:fs/promises';

import { ImageError, TorchRangeError, TorchTypeError } from '../native/errors.js';
import { argTypeError, expectFunction, expectOptions } from '../tensor/args.js';
import { scope } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { tensor } from '../tensor/creation.js';
import { clamp, round } from '../ops/pointwise.js';
import { permute, select } from '../ops/shape.js';
import type { ResizeOptions, ResizePlan, TensorOptions } from './transforms.js';
import { planResize, resizeTensor, resolveResizeOptions, rgbToTensor } from './transforms.js';

/** A decoded, resized image: interleaved 8-bit RGB (`height × width × 3` bytes). */
export interface DecodedImage {
  /** The file it came from (undefined for an in-memory buffer). */
  path: string | undefined;
  data: Uint8Array;
  width: number;
  height: number;
  /** Size after EXIF orientation, before resizing. */
  sourceWidth: number;
  sourceHeight: number;
  plan: ResizePlan;
}

export type PreprocessOptions = ResizeOptions & TensorOptions;

/** sharp (libvips) is loaded on first use, so importing the library does not pay for it. */
let sharpModule: Promise<typeof import('sharp')> | undefined;
export const loadSharp = async () => (await (sharpModule ??= import('sharp'))).default;

const KERNEL = { bicubic: 'cubic', bilinear: 'linear', nearest: 'nearest', lanczos3: 'lanczos3' } as const;

const label = (source: string | Uint8Array, name?: string) => name ?? (typeof source === 'string' ? source : '<buffer>');
const reason = (e: unknown) => (e instanceof Error ? e.message : String(e)).split('\n')[0]!;

/**
 * Decodes an image file (or encoded bytes) and resizes it per `options` (see ResizeOptions).
 * @example const im = await decodeImage('cat.jpg', { resolution: 224, resize: 'shortSide', resizeShortSide: 256 });
 * @throws ImageError (with `path`) if the file cannot be read or decoded, or its size is rejected.
 */
export async function decodeImage(source: string | Uint8Array, options: ResizeOptions & { name?: string } = {}): Promise<DecodedImage> {
  options = expectOptions('decodeImage', 'options', options) ?? {};
  const o = resolveResizeOptions(options);
  const name = label(source, options.name);
  const path = typeof source === 'string' ? source : options.name;
  let bytes: Uint8Array;
  if (typeof source === 'string') {
    try {
      bytes = await readFile(source);
    } catch (e) {
      throw new ImageError(`cannot read image "${name}": ${reason(e)}`, path);
    }
  } else {
    bytes = source;
  }
  const sharp = await loadSharp();
  try {
    // failOn 'warning': a truncated or corrupt file is an error, not a grey-filled image.
    const input = () => sharp(bytes, { failOn: 'warning', autoOrient: true });
    const meta = await input().metadata();
    const sw = meta.autoOrient?.width ?? meta.width;
    const sh = meta.autoOrient?.height ?? meta.height;
    if (!sw || !sh) throw new Error('the image has no size');
    const plan = planResize(sw, sh, o, name);
    const { width: rw, height: rh } = plan.resize;
    let img = input().removeAlpha().toColourspace('srgb');
    // Shrinking: libvips' reduce (antialiased, agrees with torch's antialiased resize to < 0.5/255 on average).
    // Enlarging: libvips uses a different sample grid than PIL/torch, so those images are resized by torch.
    const enlarge = (rw > sw || rh > sh) && o.interpolation !== 'lanczos3';
    if (!enlarge && (rw !== sw || rh !== sh)) img = img.resize(rw, rh, { fit: 'fill', kernel: KERNEL[o.interpolation], fastShrinkOnLoad: false });
    if (!enlarge && plan.crop) img = img.extract(plan.crop);
    const { data, info } = await img.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels, expected 3`);
    let rgb: Uint8Array = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (enlarge) {
      rgb = resizeRgb(rgb, info.width, info.height, rw, rh, o.interpolation as 'bicubic' | 'bilinear' | 'nearest');
      if (plan.crop) rgb = cropRgb(rgb, rw, plan.crop);
    } else if (info.width !== plan.width || info.height !== plan.height) {
      throw new Error(`decoded to ${info.width}×${info.height}, expected ${plan.width}×${plan.height}`);
    }
    return { path, data: rgb, width: plan.width, height: plan.height, sourceWidth: sw, sourceHeight: sh, plan };
  } catch (e) {
    if (e instanceof ImageError) throw e;
    throw new ImageError(`cannot decode image "${name}": ${reason(e)}`, path);
  }
}

/** Resizes interleaved RGB bytes with torch (antialiased where an axis shrinks), rounding back to 8 bits as PIL does. */
function resizeRgb(rgb: Uint8Array, w: number, h: number, rw: number, rh: number, interpolation: 'bicubic' | 'bilinear' | 'nearest'): Uint8Array {
  return scope(() => {
    const x = permute(tensor(rgb, { shape: [h, w, 3] }), [2, 0, 1]).to('float32'); // [3, h, w]
    const y = round(clamp(resizeTensor(x, [rh, rw], interpolation), 0, 255)).to('uint8'); // [3, rh, rw]
    return new Uint8Array(permute(y, [1, 2, 0]).contiguous().data() as Uint8Array); // copy: the tensor is freed
  });
}

/** Crops interleaved RGB bytes of a `width`-wide image. */
function cropRgb(rgb: Uint8Array, width: number, c: { left: number; top: number; width: number; height: number }): Uint8Array {
  const out = new Uint8Array(c.width * c.height * 3);
  for (let y = 0; y < c.height; y++) {
    const from = ((c.top + y) * width + c.left) * 3;
    out.set(rgb.subarray(from, from + c.width * 3), y * c.width * 3);
  }
  return out;
}

/**
 * Loads one image as a normalised `[3, H, W]` tensor (the caller owns it).
 * @example
 * using x = await loadImage('cat.jpg', { resolution: 256, normalization: 'lvd1689m' }); // float32 [3, 256, 256]
 * @throws ImageError if the image cannot be read or decoded.
 */
export async function loadImage(source: string | Uint8Array, options: PreprocessOptions = {}): Promise<Tensor> {
  const im = await decodeImage(source, options);
  return scope(() => select(rgbToTensor([im], options), 0, 0).contiguous());
}

/** What to do with an image that cannot be read or decoded. */
export type OnError = 'skip' | 'fail';

export interface LoadManyOptions {
  /** `'fail'` (default) rethrows the first ImageError; `'skip'` leaves the image out and reports it to `onSkip`. */
  onError?: OnError;
  /** Called for every skipped image (with `onError: 'skip'`). Without it, a process warning is emitted. */
  onSkip?: (error: ImageError) => void;
}

/** Reports a skipped image to `onSkip`, or as a process warning (code DINOV3_IMAGE_SKIPPED). */
export function reportSkipped(error: ImageError, onSkip?: (error: ImageError) => void): void {
  if (!(error instanceof Error)) throw argTypeError('reportSkipped', 'error', 'an ImageError', error);
  if (onSkip !== undefined) expectFunction('reportSkipped', 'onSkip', onSkip);
  if (onSkip) onSkip(error);
  else process.emitWarning(`skipped: ${error.message}`, { code: 'DINOV3_IMAGE_SKIPPED' });
}

/**
 * Decodes several images concurrently. Failed ones are skipped or rethrown per `onError`.
 * @returns the decoded images in input order (skipped ones left out) and the errors of the skipped ones.
 */
export async function decodeImages(
  sources: readonly string[],
  options: ResizeOptions & LoadManyOptions = {},
): Promise<{ images: DecodedImage[]; skipped: ImageError[] }> {
  if (!Array.isArray(sources)) throw new TorchTypeError('decodeImages: expected "sources" to be an array', 'ERR_INVALID_ARG');
  const onError = options.onError ?? 'fail';
  if (onError !== 'skip' && onError !== 'fail')
    throw new TorchRangeError(`decodeImages: onError must be "skip" or "fail", received "${String(onError)}"`, 'ERR_INVALID_ARG');
  const settled = await Promise.allSettled(sources.map((s) => decodeImage(s, options)));
  const images: DecodedImage[] = [];
  const skipped: ImageError[] = [];
  for (const r of settled) {
    if (r.status === 'fulfilled') images.push(r.value);
    else if (onError === 'skip' && r.reason instanceof ImageError) {
      skipped.push(r.reason);
      reportSkipped(r.reason, options.onSkip);
    } else throw r.reason;
  }
  return { images, skipped };
}

/**
 * Loads images of one output size (`square` or `shortSide` policies) as one normalised `[N, 3, H, W]` batch.
 * @returns `batch` (null when every image was skipped), the `paths` in the batch, and the `skipped` errors.
 * @throws ImageError with `onError: 'fail'`; RangeError if the images end up with different sizes.
 */
export async function loadImages(
  sources: readonly string[],
  options: PreprocessOptions & LoadManyOptions = {},
): Promise<{ batch: Tensor | null; paths: string[]; skipped: ImageError[] }> {
  if (!Array.isArray(sources)) throw new TorchTypeError('loadImages: expected "sources" to be an array of paths', 'ERR_INVALID_ARG');
  const { images, skipped } = await decodeImages(sources, options);
  const paths = images.map((im) => im.path!);
  if (images.length === 0) return { batch: null, paths, skipped };
  const sizes = new Set(images.map((im) => `${im.width}×${im.height}`));
  if (sizes.size > 1)
    throw new TorchRangeError(
      `loadImages: the images have different sizes (${[...sizes].join(', ')}); use resize "square" or "shortSide" to batch them, or loadImage one at a time`,
      'ERR_INVALID_ARG',
    );
  return { batch: rgbToTensor(images, options), paths, skipped };
}
