// The DINO multi-crop augmentation (`dinov3/data/augmentations.py::DataAugmentationDINO`, with
// `dinov3/data/transforms.py::GaussianBlur`), split in two pure steps so that it runs inside worker_threads and so
// that its random draws can be counted: `sampleMultiCropParams` draws every random choice from an `Rng`, and
// `applyMultiCropParams` does the pixel work (src/data/kernels.ts) and returns plain Float32Arrays (CHW, normalised).
// The same (seed, keys) therefore always gives the same crops, whatever thread computes them.
import { native } from '../native/binding.js';
import { ConfigError } from '../native/errors.js';
import { expectArray, expectMethods, expectNumber, expectObject, expectOptions, show } from '../tensor/args.js';
import type { Rng } from './rng.js';
import {
  type Box,
  brightnessRgb,
  checkBox,
  checkRgb,
  contrastRgb,
  gaussianBlurRgb,
  grayscaleRgb,
  hflipRgb,
  hueRgb,
  normalizeRgb,
  resizeChwF32,
  resizedCropRgb,
  type RgbImage,
  saturationRgb,
  solarizeRgb,
} from './kernels.js';

export type { Box as CropBox } from './kernels.js';

/** ImageNet mean/std (`dinov3/data/transforms.py::IMAGENET_DEFAULT_MEAN/STD`). */
export const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
export const IMAGENET_STD = [0.229, 0.224, 0.225] as const;

/**
 * Probability that the Gaussian blur is APPLIED to each crop in the official code. `GaussianBlur(p)` in
 * `dinov3/data/transforms.py` hands `1 − p` to `v2.RandomApply` (whose `p` is the probability of applying), so the
 * configured 1.0 / 0.1 / 0.5 become: global crop 1 never blurred, global crop 2 blurred 90% of the time, local crops
 * 50%. These are the defaults here, to match the official pipeline.
 */
export const OFFICIAL_BLUR_APPLY_PROB = { global1: 0.0, global2: 0.9, local: 0.5 } as const;

/** ColorJitter(0.4, 0.4, 0.2, 0.1) ranges (`DataAugmentationDINO.__init__`, torchvision `_check_input`). */
const JITTER = { brightness: [0.6, 1.4], contrast: [0.6, 1.4], saturation: [0.8, 1.2], hue: [-0.1, 0.1] } as const;
const JITTER_P = 0.8;
const GRAYSCALE_P = 0.2;
const SOLARIZE_P = 0.2;
const SOLARIZE_THRESHOLD = 128;
const BLUR_KERNEL = 9;
const BLUR_SIGMA = [0.1, 2.0] as const;
const RATIO = [3 / 4, 4 / 3] as const;

export interface MultiCropOptions {
  /** RandomResizedCrop scale of the global crops (default [0.32, 1.0], the official ssl_default_config). */
  globalCropsScale?: readonly [number, number];
  /** RandomResizedCrop scale of the local crops (default [0.05, 0.32]). */
  localCropsScale?: readonly [number, number];
  /** Number of local crops (default 8). */
  localCropsNumber?: number;
  globalCropsSize?: number;
  localCropsSize?: number;
  /** Size of the extra crops for the gram teacher (none by default). */
  gramTeacherCropsSize?: number | null;
  gramTeacherNoDistortions?: boolean;
  /** Also return the undistorted (flip only) global crops for the teacher as `globalTeacher`. */
  teacherNoColorJitter?: boolean;
  /** Local crops cut out of the (distorted) global crops at patch-aligned offsets. */
  localCropsSubsetOfGlobalCrops?: boolean;
  patchSize?: number;
  /** One color jitter + grayscale for the whole image, before cropping. */
  shareColorJitter?: boolean;
  horizontalFlips?: boolean;
  mean?: readonly number[];
  std?: readonly number[];
  /** Override the blur application probabilities (default: OFFICIAL_BLUR_APPLY_PROB). */
  blurApplyProb?: { global1: number; global2: number; local: number };
  /** Pixel kernels: the addon's `augmentCrop` ('native'), the TypeScript ones ('js'), or native when present ('auto'). */
  backend?: 'auto' | 'native' | 'js';
}

export type ResolvedMultiCropOptions = Required<Omit<MultiCropOptions, 'gramTeacherCropsSize'>> & {
  gramTeacherCropsSize: number | null;
};

/** The four ColorJitter factors and the order torchvision applies them in (0 brightness, 1 contrast, 2 saturation, 3 hue). */
export interface JitterParams {
  order: number[];
  brightness: number;
  contrast: number;
  saturation: number;
  hue: number;
}

/** Color distortions of one crop (or of the whole image when `shareColorJitter`). */
export interface ColorParams {
  /** null when the RandomApply(p = 0.8) did not fire or the distortion is not part of this crop's transform. */
  jitter: JitterParams | null;
  grayscale: boolean;
}

export interface CropParams {
  /** The RandomResizedCrop box in source pixels (for subset local crops: the global crop they are cut from). */
  box: Box;
  /** Output side of the RandomResizedCrop (square). */
  size: number;
  flip: boolean;
  color: ColorParams;
  /** Blur σ when the blur is applied, else null. */
  blurSigma: number | null;
  solarize: boolean;
}

export interface LocalCropParams extends CropParams {
  /** `localCropsSubsetOfGlobalCrops`: index of the global crop it is cut from and the (row, col) offset. */
  subset: { global: number; row: number; col: number } | null;
}

export interface MultiCropParams {
  width: number;
  height: number;
  /** `shareColorJitter`: the distortion applied to the whole image first. */
  shared: ColorParams | null;
  global: [CropParams, CropParams];
  local: LocalCropParams[];
}

/**
 * What one image becomes: normalised CHW float32 crops, in the official output order. Every Float32Array owns its
 * whole ArrayBuffer (byteOffset 0), so a worker thread can hand them over in a transfer list without copying.
 */
export interface MultiCropSample {
  /** 2 × (3 × globalSize × globalSize). */
  global: Float32Array[];
  /** `teacherNoColorJitter`: the flipped crops without distortions (3 × cropMaxSize²); else undefined (= global). */
  globalTeacher?: Float32Array[];
  /** localCropsNumber × (3 × localSize × localSize). */
  local: Float32Array[];
  /** `gramTeacherCropsSize`: 2 × (3 × gramSize × gramSize). */
  gramTeacher?: Float32Array[];
  globalSize: number;
  localSize: number;
  gramSize?: number;
  /** The random draws that produced it. */
  params: MultiCropParams;
}

function checkScale(s: readonly [number, number] | undefined, what: string, dflt: [number, number]): [number, number] {
  if (s === undefined) return dflt;
  if (s.length !== 2 || !(s[0] > 0) || !(s[1] >= s[0]) || !(s[1] <= 1)) {
    throw new ConfigError(`${what} must be [min, max] with 0 < min <= max <= 1, got [${s.join(', ')}]`);
  }
  return [s[0], s[1]];
}

function checkSize(v: number | undefined, what: string, dflt: number): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < 1) throw new ConfigError(`${what} must be a positive integer, got ${String(v)}`);
  return v;
}

function checkProb(p: number, what: string): number {
  if (!(p >= 0 && p <= 1)) throw new ConfigError(`${what} must be a probability in [0, 1], got ${String(p)}`);
  return p;
}

function checkBackend(b: MultiCropOptions['backend']): 'auto' | 'native' | 'js' {
  if (b === undefined) return 'auto';
  if (b !== 'auto' && b !== 'native' && b !== 'js') throw new ConfigError(`backend must be 'auto', 'native' or 'js', got ${String(b)}`);
  return b;
}

/** Checks that `o` looks like `resolveMultiCropOptions`' result (O(1): the fields every sampler reads). */
function expectResolved(op: string, o: unknown): ResolvedMultiCropOptions {
  const r = expectObject<ResolvedMultiCropOptions>(op, 'options', o);
  if (typeof r.globalCropsSize !== 'number' || typeof r.localCropsSize !== 'number' || !Array.isArray(r.globalCropsScale) || !Array.isArray(r.localCropsScale))
    throw new ConfigError(`${op}: "options" is not resolved multi-crop options (build them with resolveMultiCropOptions)`);
  return r;
}

/** Fills in the official defaults (ssl_default_config.yaml `crops:`) and checks the options. */
export function resolveMultiCropOptions(o: MultiCropOptions = {}): ResolvedMultiCropOptions {
  o = expectOptions('resolveMultiCropOptions', 'options', o) ?? {};
  const localCropsNumber = o.localCropsNumber ?? 8;
  if (!Number.isInteger(localCropsNumber) || localCropsNumber < 0) {
    throw new ConfigError(`localCropsNumber must be a non-negative integer, got ${String(localCropsNumber)}`);
  }
  const mean = o.mean ?? IMAGENET_MEAN;
  const std = o.std ?? IMAGENET_STD;
  if (mean.length !== 3 || std.length !== 3 || std.some((s) => !(s !== 0 && Number.isFinite(s))) || mean.some((m) => !Number.isFinite(m))) {
    throw new ConfigError('mean and std must be three finite numbers each, std non-zero');
  }
  const blur = o.blurApplyProb ?? OFFICIAL_BLUR_APPLY_PROB;
  const r: ResolvedMultiCropOptions = {
    globalCropsScale: checkScale(o.globalCropsScale, 'globalCropsScale', [0.32, 1.0]),
    localCropsScale: checkScale(o.localCropsScale, 'localCropsScale', [0.05, 0.32]),
    localCropsNumber,
    globalCropsSize: checkSize(o.globalCropsSize, 'globalCropsSize', 224),
    localCropsSize: checkSize(o.localCropsSize, 'localCropsSize', 96),
    gramTeacherCropsSize: o.gramTeacherCropsSize == null ? null : checkSize(o.gramTeacherCropsSize, 'gramTeacherCropsSize', 0),
    gramTeacherNoDistortions: o.gramTeacherNoDistortions ?? false,
    teacherNoColorJitter: o.teacherNoColorJitter ?? false,
    localCropsSubsetOfGlobalCrops: o.localCropsSubsetOfGlobalCrops ?? false,
    patchSize: checkSize(o.patchSize, 'patchSize', 16),
    shareColorJitter: o.shareColorJitter ?? false,
    horizontalFlips: o.horizontalFlips ?? true,
    mean: [...mean],
    std: [...std],
    backend: checkBackend(o.backend),
    blurApplyProb: {
      global1: checkProb(blur.global1, 'blurApplyProb.global1'),
      global2: checkProb(blur.global2, 'blurApplyProb.global2'),
      local: checkProb(blur.local, 'blurApplyProb.local'),
    },
  };
  if (r.localCropsSubsetOfGlobalCrops && Math.floor((r.globalCropsSize - r.localCropsSize) / r.patchSize) < 1) {
    // np.random.randint(0, 0) raises in the official code.
    throw new ConfigError(
      `localCropsSubsetOfGlobalCrops needs globalCropsSize − localCropsSize >= patchSize, got ${r.globalCropsSize} − ${r.localCropsSize} < ${r.patchSize}`,
    );
  }
  return r;
}

/** Python's round() on floats: half to even. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * torchvision v2 `RandomResizedCrop.make_params`: up to 10 tries of area ∈ scale·H·W (uniform) and log-uniform
 * aspect ratio in [3/4, 4/3]; w = round(√(area·ratio)), h = round(√(area/ratio)); uniform top-left; else the
 * centre crop with the ratio clamped.
 */
export function sampleResizedCropBox(rng: Rng, width: number, height: number, scale: readonly [number, number]): Box {
  expectMethods('sampleResizedCropBox', 'rng', rng, 'an Rng', ['uniform', 'randint']);
  expectNumber('sampleResizedCropBox', 'width', width);
  expectNumber('sampleResizedCropBox', 'height', height);
  expectArray('sampleResizedCropBox', 'scale', scale, 'a [min, max] array');
  const area = width * height;
  const lr0 = Math.log(RATIO[0]);
  const lr1 = Math.log(RATIO[1]);
  for (let t = 0; t < 10; t++) {
    const targetArea = area * rng.uniform(scale[0], scale[1]);
    const aspect = Math.exp(rng.uniform(lr0, lr1));
    const w = roundHalfEven(Math.sqrt(targetArea * aspect));
    const h = roundHalfEven(Math.sqrt(targetArea / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const top = rng.randint(0, height - h);
      const left = rng.randint(0, width - w);
      return { top, left, height: h, width: w };
    }
  }
  const inRatio = width / height;
  let w: number;
  let h: number;
  if (inRatio < RATIO[0]) {
    w = width;
    h = roundHalfEven(w / RATIO[0]);
  } else if (inRatio > RATIO[1]) {
    h = height;
    w = roundHalfEven(h * RATIO[1]);
  } else {
    w = width;
    h = height;
  }
  return { top: Math.floor((height - h) / 2), left: Math.floor((width - w) / 2), height: h, width: w };
}

/** `RandomApply([ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8)` then `RandomGrayscale(p=0.2)`. */
function sampleColor(rng: Rng): ColorParams {
  let jitter: JitterParams | null = null;
  if (rng.random() < JITTER_P) {
    jitter = {
      order: rng.permutation(4),
      brightness: rng.uniform(JITTER.brightness[0], JITTER.brightness[1]),
      contrast: rng.uniform(JITTER.contrast[0], JITTER.contrast[1]),
      saturation: rng.uniform(JITTER.saturation[0], JITTER.saturation[1]),
      hue: rng.uniform(JITTER.hue[0], JITTER.hue[1]),
    };
  }
  return { jitter, grayscale: rng.random() < GRAYSCALE_P };
}

const NO_COLOR: ColorParams = { jitter: null, grayscale: false };

function sampleBlur(rng: Rng, p: number): number | null {
  const apply = rng.random() < p;
  const sigma = rng.uniform(BLUR_SIGMA[0], BLUR_SIGMA[1]);
  return apply ? sigma : null;
}

// Stream keys: every crop draws from its own fork of the sample's Rng, so adding an option or a crop never shifts
// the draws of another crop.
const KEY_SHARED = 0;
const KEY_GLOBAL = 1; // + index (2 global crops)
const KEY_LOCAL = 3; // + index

/**
 * Draws every random choice `DataAugmentationDINO.__call__` makes for one `width × height` image, in the same
 * structure: two global RandomResizedCrop(+flip) with their color/blur/solarize draws, and the local crops.
 */
export function sampleMultiCropParams(width: number, height: number, rng: Rng, options: ResolvedMultiCropOptions): MultiCropParams {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new ConfigError(`image size must be positive integers, got ${show(width)}×${show(height)}`);
  }
  expectMethods('sampleMultiCropParams', 'rng', rng, 'an Rng', ['fork', 'uniform']);
  const o = expectResolved('sampleMultiCropParams', options);
  const maxSize = Math.max(o.globalCropsSize, o.gramTeacherCropsSize ?? 0);
  const flipP = o.horizontalFlips ? 0.5 : 0;
  const shared = o.shareColorJitter ? sampleColor(rng.fork(KEY_SHARED)) : null;
  const perCropColor = (r: Rng) => (o.shareColorJitter ? NO_COLOR : sampleColor(r));

  const globalCrop = (i: 0 | 1): CropParams => {
    const r = rng.fork(KEY_GLOBAL + i);
    const box = sampleResizedCropBox(r, width, height, o.globalCropsScale);
    const flip = r.random() < flipP;
    const color = perCropColor(r);
    const blurSigma = sampleBlur(r, i === 0 ? o.blurApplyProb.global1 : o.blurApplyProb.global2);
    const sol = r.random() < SOLARIZE_P;
    return { box, size: maxSize, flip, color, blurSigma, solarize: i === 1 && sol };
  };
  const global: [CropParams, CropParams] = [globalCrop(0), globalCrop(1)];

  const local: LocalCropParams[] = [];
  if (o.localCropsSubsetOfGlobalCrops) {
    const half = Math.floor(o.localCropsNumber / 2);
    const nOff = Math.floor((o.globalCropsSize - o.localCropsSize) / o.patchSize);
    for (let i = 0; i < 2 * half; i++) {
      const r = rng.fork(KEY_LOCAL + i);
      const g = i < half ? 0 : 1;
      const color = perCropColor(r);
      const blurSigma = sampleBlur(r, o.blurApplyProb.local);
      const row = Math.floor(r.random() * nOff) * o.patchSize;
      const col = Math.floor(r.random() * nOff) * o.patchSize;
      const gp = global[g]!;
      local.push({ box: gp.box, size: maxSize, flip: gp.flip, color, blurSigma, solarize: false, subset: { global: g, row, col } });
    }
  } else {
    for (let i = 0; i < o.localCropsNumber; i++) {
      const r = rng.fork(KEY_LOCAL + i);
      const box = sampleResizedCropBox(r, width, height, o.localCropsScale);
      const flip = r.random() < flipP;
      const color = perCropColor(r);
      const blurSigma = sampleBlur(r, o.blurApplyProb.local);
      local.push({ box, size: o.localCropsSize, flip, color, blurSigma, solarize: false, subset: null });
    }
  }
  return { width, height, shared, global, local };
}

/** The color distortion of one crop: the jitter factors in their drawn order, then grayscale. */
export function applyColor(img: RgbImage, c: ColorParams): void {
  checkRgb(img);
  expectObject('applyColor', 'color', c);
  const j = c.jitter;
  if (j) {
    for (const fn of j.order) {
      if (fn === 0) brightnessRgb(img, j.brightness);
      else if (fn === 1) contrastRgb(img, j.contrast);
      else if (fn === 2) saturationRgb(img, j.saturation);
      else hueRgb(img, j.hue);
    }
  }
  if (c.grayscale) grayscaleRgb(img);
}

function copyRgb(img: RgbImage): RgbImage {
  return { data: img.data.slice(), width: img.width, height: img.height };
}

/** Crop `size × size` at (row, col) of a CHW float image with side `side`. */
function cutChw(src: Float32Array, side: number, row: number, col: number, size: number): Float32Array {
  const out = new Float32Array(3 * size * size);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < size; y++) {
      const s = c * side * side + (row + y) * side + col;
      out.set(src.subarray(s, s + size), c * size * size + y * size);
    }
  }
  return out;
}

/** Layout of the Float64Array handed to the addon's `augmentCrop` (native/src/ops/augment.cc, enum Spec). */
export const AUGMENT_SPEC = {
  top: 0,
  left: 1,
  cropH: 2,
  cropW: 3,
  outH: 4,
  outW: 5,
  flip: 6,
  nJitter: 7,
  op0: 8,
  brightness: 12,
  contrast: 13,
  saturation: 14,
  hue: 15,
  grayscale: 16,
  blurSigma: 17,
  blurKernel: 18,
  solarize: 19,
  mean0: 20,
  std0: 23,
  outKind: 26,
  length: 27,
} as const;

/** One crop's chain, in the official order: crop + resize → flip → jitter → grayscale → blur → solarize → output. */
export interface CropChain {
  box: Box;
  outH: number;
  outW: number;
  flip: boolean;
  color: ColorParams;
  blurSigma: number | null;
  solarize: boolean;
}

const full = (img: RgbImage): Box => ({ top: 0, left: 0, height: img.height, width: img.width });

/** Whether the addon in use has the native kernels (`augmentCrop`); else the TypeScript kernels run. */
export function nativeAugmentAvailable(): boolean {
  return typeof native.augmentCrop === 'function';
}

function runNative(src: RgbImage, c: CropChain, o: ResolvedMultiCropOptions, u8: boolean): Float32Array | Uint8Array {
  const S = AUGMENT_SPEC;
  const sp = new Float64Array(S.length);
  sp[S.top] = c.box.top;
  sp[S.left] = c.box.left;
  sp[S.cropH] = c.box.height;
  sp[S.cropW] = c.box.width;
  sp[S.outH] = c.outH;
  sp[S.outW] = c.outW;
  sp[S.flip] = c.flip ? 1 : 0;
  const j = c.color.jitter;
  if (j) {
    sp[S.nJitter] = j.order.length;
    j.order.forEach((fn, k) => (sp[S.op0 + k] = fn));
    sp[S.brightness] = j.brightness;
    sp[S.contrast] = j.contrast;
    sp[S.saturation] = j.saturation;
    sp[S.hue] = j.hue;
  }
  sp[S.grayscale] = c.color.grayscale ? 1 : 0;
  sp[S.blurSigma] = c.blurSigma ?? 0;
  sp[S.blurKernel] = BLUR_KERNEL;
  sp[S.solarize] = c.solarize ? SOLARIZE_THRESHOLD : -1;
  for (let k = 0; k < 3; k++) {
    sp[S.mean0 + k] = o.mean[k]!;
    sp[S.std0 + k] = o.std[k]!;
  }
  sp[S.outKind] = u8 ? 1 : 0;
  return native.augmentCrop!(src.data, src.width, src.height, sp);
}

function runJs(src: RgbImage, c: CropChain): RgbImage {
  let img = resizedCropRgb(src, c.box, c.outW, c.outH);
  if (img.data === src.data) img = copyRgb(img); // nothing resampled: never write into the caller's image
  if (c.flip) hflipRgb(img);
  applyColor(img, c.color);
  if (c.blurSigma !== null) gaussianBlurRgb(img, BLUR_KERNEL, c.blurSigma);
  if (c.solarize) solarizeRgb(img, SOLARIZE_THRESHOLD);
  return img;
}

function chainU8(src: RgbImage, c: CropChain, o: ResolvedMultiCropOptions, useNative: boolean): RgbImage {
  if (!useNative) return runJs(src, c);
  return { data: runNative(src, c, o, true) as Uint8Array, width: c.outW, height: c.outH };
}

function chainF32(src: RgbImage, c: CropChain, o: ResolvedMultiCropOptions, useNative: boolean): Float32Array {
  if (!useNative) return normalizeRgb(runJs(src, c), o.mean, o.std);
  return runNative(src, c, o, false) as Float32Array;
}

/**
 * Runs one crop chain on `image` with the chosen kernels: 8-bit HWC (`output: 'uint8'`) or normalised CHW float32.
 * (The building block of `applyMultiCropParams`; exported for op-level parity tests.)
 */
export function runCropChain(
  image: RgbImage,
  chain: CropChain,
  options: { backend: 'native' | 'js'; output: 'uint8' | 'float32'; mean?: readonly number[]; std?: readonly number[] },
): RgbImage | Float32Array {
  checkRgb(image);
  expectObject('runCropChain', 'chain', chain);
  expectObject('runCropChain', 'chain.box', chain.box);
  expectObject('runCropChain', 'chain.color', chain.color);
  expectObject('runCropChain', 'options', options);
  checkBox(image, chain.box, chain.outW, chain.outH);
  const j = chain.color.jitter;
  if (j) {
    if (!j.order.every((k) => k === 0 || k === 1 || k === 2 || k === 3) || j.order.length > 4) {
      throw new ConfigError(`jitter order must list op ids 0..3 (brightness, contrast, saturation, hue), got [${j.order.join(', ')}]`);
    }
    if (!(j.hue >= -0.5 && j.hue <= 0.5)) throw new ConfigError(`hue factor must be in [-0.5, 0.5], got ${j.hue}`);
    if (!(j.brightness >= 0 && j.contrast >= 0 && j.saturation >= 0)) throw new ConfigError('brightness, contrast and saturation factors must be >= 0');
  }
  if (chain.blurSigma !== null && !(chain.blurSigma > 0)) throw new ConfigError(`blur sigma must be positive, got ${chain.blurSigma}`);
  const o = resolveMultiCropOptions({ mean: options.mean, std: options.std, backend: options.backend });
  const nat = options.backend === 'native';
  if (nat && !nativeAugmentAvailable()) throw new ConfigError("backend 'native' needs an addon with augmentCrop (rebuild it: npm run build:native)");
  return options.output === 'uint8' ? chainU8(image, chain, o, nat) : chainF32(image, chain, o, nat);
}

/**
 * The pixel work of `DataAugmentationDINO.__call__` for drawn `params` (see `sampleMultiCropParams`).
 * `image` is interleaved 8-bit RGB; it is not modified.
 */
export function applyMultiCropParams(image: RgbImage, params: MultiCropParams, options: ResolvedMultiCropOptions): MultiCropSample {
  checkRgb(image);
  expectObject('applyMultiCropParams', 'params', params);
  const o = expectResolved('applyMultiCropParams', options);
  if (params.width !== image.width || params.height !== image.height) {
    throw new ConfigError(`params were drawn for a ${params.width}×${params.height} image, got ${image.width}×${image.height}`);
  }
  const nat = o.backend === 'native' || (o.backend === 'auto' && nativeAugmentAvailable());
  if (nat && !nativeAugmentAvailable()) {
    throw new ConfigError("backend 'native' needs an addon with augmentCrop (rebuild it: npm run build:native)");
  }
  const gs = o.globalCropsSize;
  const ls = o.localCropsSize;
  const gram = o.gramTeacherCropsSize;
  const maxSize = Math.max(gs, gram ?? 0);
  const none = { color: NO_COLOR, blurSigma: null, solarize: false, flip: false };

  // share_color_jitter: the jitter + grayscale of the whole image, before any crop.
  const src = params.shared ? chainU8(image, { ...none, box: full(image), outH: image.height, outW: image.width, color: params.shared }, o, nat) : image;

  const needBase = o.teacherNoColorJitter || o.localCropsSubsetOfGlobalCrops || (gram !== null && o.gramTeacherNoDistortions);
  const bases: RgbImage[] = [];
  const globalOut: Float32Array[] = [];
  const teacher: Float32Array[] = [];
  const gramOut: Float32Array[] = [];
  for (const p of params.global) {
    const distort = { color: p.color, blurSigma: p.blurSigma, solarize: p.solarize, flip: false };
    let norm: Float32Array;
    if (!needBase) {
      norm = chainF32(src, { ...distort, flip: p.flip, box: p.box, outH: maxSize, outW: maxSize }, o, nat);
    } else {
      // im_base = RandomResizedCrop + flip (8-bit), reused by the teacher, gram and subset-local crops.
      const base = chainU8(src, { ...none, flip: p.flip, box: p.box, outH: maxSize, outW: maxSize }, o, nat);
      bases.push(base);
      if (o.teacherNoColorJitter) teacher.push(normalizeRgb(base, o.mean, o.std));
      if (gram !== null && o.gramTeacherNoDistortions) {
        // resize_global (PIL bicubic) before the distortions; the gram crop is the undistorted base resized.
        globalOut.push(chainF32(base, { ...distort, box: full(base), outH: gs, outW: gs }, o, nat));
        gramOut.push(chainF32(base, { ...none, box: full(base), outH: gram, outW: gram }, o, nat));
        continue;
      }
      norm = chainF32(base, { ...distort, box: full(base), outH: maxSize, outW: maxSize }, o, nat);
    }
    if (gram !== null) {
      // resize_global_post_transf and resize_gram_teacher act on the normalised float crop.
      globalOut.push(resizeChwF32(norm, 3, maxSize, maxSize, gs, gs));
      gramOut.push(resizeChwF32(norm, 3, maxSize, maxSize, gram, gram));
    } else {
      globalOut.push(norm);
    }
  }

  const localOut: Float32Array[] = [];
  for (const p of params.local) {
    const distort = { color: p.color, blurSigma: p.blurSigma, solarize: false };
    if (p.subset) {
      // local_transfo on the global base at its crop size, then a patch-aligned cut.
      const base = bases[p.subset.global]!;
      const norm = chainF32(base, { ...distort, flip: false, box: full(base), outH: base.height, outW: base.width }, o, nat);
      localOut.push(cutChw(norm, base.width, p.subset.row, p.subset.col, ls));
    } else {
      localOut.push(chainF32(src, { ...distort, flip: p.flip, box: p.box, outH: ls, outW: ls }, o, nat));
    }
  }

  const sample: MultiCropSample = { global: globalOut, local: localOut, globalSize: gs, localSize: ls, params };
  if (o.teacherNoColorJitter) sample.globalTeacher = teacher;
  if (gram !== null) {
    sample.gramTeacher = gramOut;
    sample.gramSize = gram;
  }
  return sample;
}

/**
 * `DataAugmentationDINO` for TypeScript: `new MultiCropAugmentation(options).apply(image, Rng.derive(seed, iter, idx))`.
 * All randomness comes from the given Rng, so the result is a pure function of (image, seed, keys).
 */
export class MultiCropAugmentation {
  readonly options: ResolvedMultiCropOptions;

  constructor(options: MultiCropOptions = {}) {
    this.options = resolveMultiCropOptions(options);
  }

  sample(width: number, height: number, rng: Rng): MultiCropParams {
    return sampleMultiCropParams(width, height, rng, this.options);
  }

  apply(image: RgbImage, rng: Rng): MultiCropSample {
    checkRgb(image);
    return applyMultiCropParams(image, this.sample(image.width, image.height, rng), this.options);
  }
}
