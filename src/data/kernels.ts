// Pixel kernels of the multi-crop augmentation, on interleaved 8-bit RGB (`height × width × 3`), plain TypeScript so
// they run unchanged inside worker_threads. Each reproduces what torchvision's v2 functional ops do to the PIL images
// the official pipeline works on (`dinov3/data/augmentations.py::DataAugmentationDINO`): PIL's fixed-point resampler,
// PIL's ImageEnhance blends, PIL's HSV and 'L' conversions, and torchvision's float Gaussian blur.
import { ImageError } from '../native/errors.js';
import type { RgbImage } from './datasets/types.js';

export type { RgbImage };

export function checkRgb(img: RgbImage, what = 'image'): void {
  if (typeof img !== 'object' || img === null)
    throw new ImageError(`${what}: expected an RGB image { data, width, height }, received ${img === null ? 'null' : typeof img}`);
  const { width, height, data } = img;
  if (typeof width !== 'number' || typeof height !== 'number')
    throw new ImageError(`${what}: expected an RGB image { data, width, height } with numeric width and height, received ${typeof width}×${typeof height}`);
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new ImageError(`${what}: width and height must be positive integers, got ${String(width)}×${String(height)}`);
  }
  if (!(data instanceof Uint8Array) || data.length !== width * height * 3) {
    throw new ImageError(
      `${what}: expected ${width * height * 3} bytes of interleaved RGB for ${width}×${height}, got ${data instanceof Uint8Array ? data.length : typeof data}`,
    );
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Resampling (PIL `Image.resize(..., BICUBIC)` as torchvision's `resized_crop`/`resize` call it on PIL images)
// ---------------------------------------------------------------------------------------------------------------

/** PIL's bicubic filter (a = −0.5, support 2). */
function bicubic(x: number): number {
  if (x < 0) x = -x;
  if (x < 1) return (1.5 * x - 2.5) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * -0.5;
  return 0;
}

/** PIL's fixed-point precision for 8-bit resampling: 32 − 8 − 2 bits. */
const PRECISION_BITS = 22;
const HALF = 1 << (PRECISION_BITS - 1);

interface Coeffs {
  ksize: number;
  /** [xmin, count] per output pixel. */
  bounds: Int32Array;
  /** Normalised weights, `ksize` per output pixel (zero-padded). */
  weights: Float64Array;
  /** The same weights in PIL's fixed point. */
  fixed: Int32Array;
}

const coeffCache = new Map<number, Coeffs>();

/**
 * Antialiased bicubic weights for resampling `inSize` → `outSize` samples: PIL's `precompute_coeffs`
 * (src/libImaging/Resample.c), which torch's `_upsample_bicubic2d_aa` also follows (same centre, support and a).
 */
export function resampleCoeffs(inSize: number, outSize: number): Coeffs {
  const key = inSize * 65536 + outSize;
  const hit = coeffCache.get(key);
  if (hit) return hit;
  const scale = inSize / outSize;
  const filterscale = scale < 1 ? 1 : scale;
  const support = 2 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const weights = new Float64Array(outSize * ksize);
  const fixed = new Int32Array(outSize * ksize);
  const ss = 1 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0;
    const o = xx * ksize;
    for (let x = 0; x < xmax; x++) {
      const w = bicubic((x + xmin - center + 0.5) * ss);
      weights[o + x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      const w = ww !== 0 ? weights[o + x]! / ww : weights[o + x]!;
      weights[o + x] = w;
      fixed[o + x] = w < 0 ? Math.trunc(-0.5 + w * (1 << PRECISION_BITS)) : Math.trunc(0.5 + w * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  const c: Coeffs = { ksize, bounds, weights, fixed };
  if (coeffCache.size > 4096) coeffCache.clear();
  coeffCache.set(key, c);
  return c;
}

/** torch's bicubic `aa_filter` (a = −0.5) in float32 steps. */
function bicubicF32(x: number): number {
  const f = Math.fround;
  if (x < 0) x = -x;
  if (x < 1) return f(f(f(f(f(1.5 * x) - 2.5) * x) * x) + 1);
  if (x < 2) return f(f(f(f(f(f(x - 5) * x) + 8) * x) - 4) * -0.5);
  return 0;
}

const coeffCacheF32 = new Map<number, { ksize: number; bounds: Int32Array; weights: Float32Array }>();

/**
 * The same antialiased bicubic weights as torch computes them for a float tensor
 * (aten/src/ATen/native/cpu/UpSampleKernel.cpp `_compute_indices_min_size_weights_aa`: centre, support and weights
 * in float32 rather than PIL's double).
 */
export function resampleCoeffsF32(inSize: number, outSize: number): { ksize: number; bounds: Int32Array; weights: Float32Array } {
  const key = inSize * 65536 + outSize;
  const hit = coeffCacheF32.get(key);
  if (hit) return hit;
  const f = Math.fround;
  const scale = f(inSize / outSize);
  const support = scale >= 1 ? f(2 * scale) : 2;
  const invscale = scale >= 1 ? f(1 / scale) : 1;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const weights = new Float32Array(outSize * ksize);
  for (let i = 0; i < outSize; i++) {
    const center = f(scale * (i + 0.5));
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xsize = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let total = 0;
    const o = i * ksize;
    for (let j = 0; j < xsize; j++) {
      const w = bicubicF32(f(f(j + xmin - center + 0.5) * invscale));
      weights[o + j] = w;
      total = f(total + w);
    }
    if (total !== 0) for (let j = 0; j < xsize; j++) weights[o + j] = f(weights[o + j]! / total);
    bounds[i * 2] = xmin;
    bounds[i * 2 + 1] = xsize;
  }
  const c = { ksize, bounds, weights };
  if (coeffCacheF32.size > 4096) coeffCacheF32.clear();
  coeffCacheF32.set(key, c);
  return c;
}

const clip8 = (ss: number) => {
  const v = ss >> PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : v;
};

/** A crop box in source pixels. */
export interface Box {
  top: number;
  left: number;
  height: number;
  width: number;
}

/** Throws an ImageError unless `box` is an integer box inside `src` and the output size is a positive integer. */
export function checkBox(src: RgbImage, box: Box, outWidth: number, outHeight: number): void {
  const { top, left, height: ch, width: cw } = box;
  if (![top, left, ch, cw].every(Number.isInteger) || top < 0 || left < 0 || cw < 1 || ch < 1 || top + ch > src.height || left + cw > src.width) {
    throw new ImageError(`crop box ${cw}×${ch} at (${left}, ${top}) is outside the ${src.width}×${src.height} image`);
  }
  if (!Number.isInteger(outWidth) || !Number.isInteger(outHeight) || outWidth < 1 || outHeight < 1 || outWidth > 16384 || outHeight > 16384) {
    throw new ImageError(`output size must be integers in [1, 16384], got ${outWidth}×${outHeight}`);
  }
}

/**
 * Crops `box` out of `src` and resizes it to `outWidth × outHeight` with PIL's two-pass fixed-point bicubic
 * (`ImagingResampleInner`: horizontal pass over the rows the vertical pass needs, 8-bit intermediate, then vertical),
 * which is what torchvision's `resized_crop` does on a PIL image (`img.crop(box).resize(size, BICUBIC)`).
 */
export function resizedCropRgb(src: RgbImage, box: Box, outWidth: number, outHeight: number): RgbImage {
  checkBox(src, box, outWidth, outHeight);
  const { top, left, height: ch, width: cw } = box;
  const needH = cw !== outWidth;
  const needV = ch !== outHeight;
  const sstride = src.width * 3;
  const sdata = src.data;
  if (!needH && !needV) {
    const out = new Uint8Array(cw * ch * 3);
    for (let y = 0; y < ch; y++) {
      const s = (top + y) * sstride + left * 3;
      out.set(sdata.subarray(s, s + cw * 3), y * cw * 3);
    }
    return { data: out, width: cw, height: ch };
  }
  const vert = resampleCoeffs(ch, outHeight);
  // Rows of the crop the vertical pass reads.
  const yFirst = vert.bounds[0]!;
  const yLast = vert.bounds[outHeight * 2 - 2]! + vert.bounds[outHeight * 2 - 1]!;

  // Horizontal pass → tmp (outWidth × rows), or a view of the source rows when no horizontal change.
  let tmp: Uint8Array;
  let tstride: number;
  let tbase: number; // offset of crop row yFirst in tmp
  if (needH) {
    const hor = resampleCoeffs(cw, outWidth);
    const rows = yLast - yFirst;
    tstride = outWidth * 3;
    tmp = new Uint8Array(rows * tstride);
    tbase = 0;
    const { ksize, bounds, fixed } = hor;
    for (let r = 0; r < rows; r++) {
      const srow = (top + yFirst + r) * sstride + left * 3;
      const trow = r * tstride;
      for (let xx = 0; xx < outWidth; xx++) {
        const xmin = bounds[xx * 2]!;
        const n = bounds[xx * 2 + 1]!;
        const ko = xx * ksize;
        let s0 = HALF;
        let s1 = HALF;
        let s2 = HALF;
        let p = srow + xmin * 3;
        for (let x = 0; x < n; x++, p += 3) {
          const k = fixed[ko + x]!;
          s0 += sdata[p]! * k;
          s1 += sdata[p + 1]! * k;
          s2 += sdata[p + 2]! * k;
        }
        const t = trow + xx * 3;
        tmp[t] = clip8(s0);
        tmp[t + 1] = clip8(s1);
        tmp[t + 2] = clip8(s2);
      }
    }
  } else {
    tmp = sdata;
    tstride = sstride;
    tbase = (top + yFirst) * sstride + left * 3;
  }
  if (!needV) return { data: tmp, width: outWidth, height: outHeight };

  const out = new Uint8Array(outWidth * outHeight * 3);
  const rowBytes = outWidth * 3;
  const { ksize, bounds, fixed } = vert;
  const acc = new Int32Array(rowBytes);
  for (let yy = 0; yy < outHeight; yy++) {
    const ymin = bounds[yy * 2]! - yFirst;
    const n = bounds[yy * 2 + 1]!;
    const ko = yy * ksize;
    acc.fill(HALF);
    for (let y = 0; y < n; y++) {
      const k = fixed[ko + y]!;
      const row = tbase + (ymin + y) * tstride;
      for (let i = 0; i < rowBytes; i++) acc[i] = (acc[i]! + tmp[row + i]! * k) | 0;
    }
    const o = yy * rowBytes;
    for (let i = 0; i < rowBytes; i++) out[o + i] = clip8(acc[i]!);
  }
  return { data: out, width: outWidth, height: outHeight };
}

/**
 * Antialiased bicubic resize of a float CHW image, as torchvision's `resize` does on a float tensor
 * (`torch.nn.functional.interpolate(..., mode="bicubic", antialias=True)`: PIL's weights, float accumulation,
 * no clamping). The official pipeline applies it to normalised crops when the gram-teacher size differs from the
 * global size and the gram crops share the distortions (`DataAugmentationDINO.resize_global_post_transf`).
 */
export function resizeChwF32(src: Float32Array, channels: number, inH: number, inW: number, outH: number, outW: number): Float32Array {
  if (src.length !== channels * inH * inW) {
    throw new ImageError(`expected ${channels * inH * inW} floats for ${channels}×${inH}×${inW}, got ${src.length}`);
  }
  if (inH === outH && inW === outW) return src.slice();
  const hor = resampleCoeffsF32(inW, outW);
  const ver = resampleCoeffsF32(inH, outH);
  const tmp = new Float32Array(channels * inH * outW);
  for (let c = 0; c < channels; c++) {
    for (let y = 0; y < inH; y++) {
      const srow = (c * inH + y) * inW;
      const trow = (c * inH + y) * outW;
      for (let xx = 0; xx < outW; xx++) {
        const xmin = hor.bounds[xx * 2]!;
        const n = hor.bounds[xx * 2 + 1]!;
        const ko = xx * hor.ksize;
        let s = 0;
        for (let x = 0; x < n; x++) s += src[srow + xmin + x]! * hor.weights[ko + x]!;
        tmp[trow + xx] = Math.fround(s);
      }
    }
  }
  const out = new Float32Array(channels * outH * outW);
  for (let c = 0; c < channels; c++) {
    for (let yy = 0; yy < outH; yy++) {
      const ymin = ver.bounds[yy * 2]!;
      const n = ver.bounds[yy * 2 + 1]!;
      const ko = yy * ver.ksize;
      const orow = (c * outH + yy) * outW;
      for (let y = 0; y < n; y++) {
        const k = ver.weights[ko + y]!;
        const trow = (c * inH + ymin + y) * outW;
        for (let x = 0; x < outW; x++) out[orow + x] = out[orow + x]! + tmp[trow + x]! * k;
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Geometry and colour (in place on interleaved RGB)
// ---------------------------------------------------------------------------------------------------------------

/** Mirrors left ↔ right (PIL `transpose(FLIP_LEFT_RIGHT)`). */
export function hflipRgb(img: RgbImage): void {
  const { data, width, height } = img;
  const stride = width * 3;
  for (let y = 0; y < height; y++) {
    let a = y * stride;
    let b = a + stride - 3;
    while (a < b) {
      const r = data[a]!;
      const g = data[a + 1]!;
      const bl = data[a + 2]!;
      data[a] = data[b]!;
      data[a + 1] = data[b + 1]!;
      data[a + 2] = data[b + 2]!;
      data[b] = r;
      data[b + 1] = g;
      data[b + 2] = bl;
      a += 3;
      b -= 3;
    }
  }
}

/** ITU-R 601-2 luma in PIL's fixed point (`L24(rgb) >> 16`, src/libImaging/Convert.c::rgb2l). */
const luma = (r: number, g: number, b: number) => (r * 19595 + g * 38470 + b * 7471 + 0x8000) >>> 16;

/**
 * One value of PIL's `Image.blend(im1, im2, alpha)` (src/libImaging/Blend.c): `in1 + alpha·(in2 − in1)` in C
 * float, truncated to 8 bits; clipped when alpha is outside [0, 1].
 */
function blend1(in1: number, in2: number, alpha: number, extrapolate: boolean): number {
  const t = Math.fround(in1 + Math.fround(alpha * (in2 - in1)));
  if (!extrapolate) return Math.trunc(t);
  return t <= 0 ? 0 : t >= 255 ? 255 : Math.trunc(t);
}

function applyLut(data: Uint8Array, lut: Uint8Array): void {
  for (let i = 0; i < data.length; i++) data[i] = lut[data[i]!]!;
}

/** torchvision `adjust_brightness` on PIL: `ImageEnhance.Brightness` = blend(black, img, factor). */
export function brightnessRgb(img: RgbImage, factor: number): void {
  const a = Math.fround(factor);
  const ex = !(a >= 0 && a <= 1);
  const lut = new Uint8Array(256);
  for (let v = 0; v < 256; v++) lut[v] = blend1(0, v, a, ex);
  applyLut(img.data, lut);
}

/**
 * torchvision `adjust_contrast` on PIL: `ImageEnhance.Contrast` = blend(grey of the rounded mean 'L' level, img,
 * factor); the mean is `ImageStat.Stat(img.convert('L')).mean` rounded as `int(mean + 0.5)`.
 */
export function contrastRgb(img: RgbImage, factor: number): void {
  const d = img.data;
  let sum = 0;
  for (let i = 0; i < d.length; i += 3) sum += luma(d[i]!, d[i + 1]!, d[i + 2]!);
  const mean = Math.trunc(sum / (d.length / 3) + 0.5);
  const a = Math.fround(factor);
  const ex = !(a >= 0 && a <= 1);
  const lut = new Uint8Array(256);
  for (let v = 0; v < 256; v++) lut[v] = blend1(mean, v, a, ex);
  applyLut(d, lut);
}

/** torchvision `adjust_saturation` on PIL: `ImageEnhance.Color` = blend(img as 'L' → RGB, img, factor). */
export function saturationRgb(img: RgbImage, factor: number): void {
  const d = img.data;
  const a = Math.fround(factor);
  const ex = !(a >= 0 && a <= 1);
  for (let i = 0; i < d.length; i += 3) {
    const r = d[i]!;
    const g = d[i + 1]!;
    const b = d[i + 2]!;
    const l = luma(r, g, b);
    d[i] = blend1(l, r, a, ex);
    d[i + 1] = blend1(l, g, a, ex);
    d[i + 2] = blend1(l, b, a, ex);
  }
}

const f32 = Math.fround;

/**
 * torchvision `adjust_hue` on PIL (`_functional_pil.adjust_hue`): RGB → PIL 'HSV' (8-bit, Convert.c::rgb2hsv_row),
 * hue byte += `uint8(int32(factor·255))` with wrap-around, then HSV → RGB (Convert.c::hsv2rgb), with C's float
 * and double steps kept.
 */
export function hueRgb(img: RgbImage, factor: number): void {
  if (!(factor >= -0.5 && factor <= 0.5)) throw new ImageError(`hue factor ${factor} is not in [-0.5, 0.5]`);
  const shift = ((Math.trunc(factor * 255) % 256) + 256) % 256;
  const d = img.data;
  for (let i = 0; i < d.length; i += 3) {
    const r = d[i]!;
    const g = d[i + 1]!;
    const b = d[i + 2]!;
    const maxc = r > g ? (r > b ? r : b) : g > b ? g : b;
    const minc = r < g ? (r < b ? r : b) : g < b ? g : b;
    if (maxc === minc) continue; // s = 0: hsv2rgb returns (v, v, v), and v = max = min = r = g = b
    const cr = maxc - minc;
    const s = f32(cr / maxc);
    const rc = f32((maxc - r) / cr);
    const gc = f32((maxc - g) / cr);
    const bc = f32((maxc - b) / cr);
    let h: number;
    if (r === maxc) h = f32(bc - gc);
    else if (g === maxc) h = f32(2.0 + rc - bc);
    else h = f32(4.0 + gc - rc);
    h = f32((h / 6.0 + 1.0) % 1.0);
    let uh = Math.trunc(h * 255.0);
    uh = uh < 0 ? 0 : uh > 255 ? 255 : uh;
    let us = Math.trunc(s * 255.0);
    us = us < 0 ? 0 : us > 255 ? 255 : us;
    // hsv2rgb
    const hh = (uh + shift) & 255;
    const v = maxc;
    if (us === 0) {
      d[i] = v;
      d[i + 1] = v;
      d[i + 2] = v;
      continue;
    }
    const h6 = (hh * 6.0) / 255.0;
    const ii = Math.floor(h6);
    const f = f32(h6 - ii);
    const fs = f32(us / 255.0);
    let p = Math.round(v * (1.0 - fs));
    let q = Math.round(v * (1.0 - f32(fs * f)));
    let t = Math.round(v * (1.0 - fs * (1.0 - f)));
    p = p < 0 ? 0 : p > 255 ? 255 : p;
    q = q < 0 ? 0 : q > 255 ? 255 : q;
    t = t < 0 ? 0 : t > 255 ? 255 : t;
    switch (ii % 6) {
      case 0:
        d[i] = v;
        d[i + 1] = t;
        d[i + 2] = p;
        break;
      case 1:
        d[i] = q;
        d[i + 1] = v;
        d[i + 2] = p;
        break;
      case 2:
        d[i] = p;
        d[i + 1] = v;
        d[i + 2] = t;
        break;
      case 3:
        d[i] = p;
        d[i + 1] = q;
        d[i + 2] = v;
        break;
      case 4:
        d[i] = t;
        d[i + 1] = p;
        d[i + 2] = v;
        break;
      default:
        d[i] = v;
        d[i + 1] = p;
        d[i + 2] = q;
    }
  }
}

/** torchvision `rgb_to_grayscale(num_output_channels=3)` on PIL: `convert('L')` replicated to three channels. */
export function grayscaleRgb(img: RgbImage): void {
  const d = img.data;
  for (let i = 0; i < d.length; i += 3) {
    const l = luma(d[i]!, d[i + 1]!, d[i + 2]!);
    d[i] = l;
    d[i + 1] = l;
    d[i + 2] = l;
  }
}

/** torchvision `solarize` on PIL (`ImageOps.solarize`): values ≥ threshold become 255 − value. */
export function solarizeRgb(img: RgbImage, threshold: number): void {
  const lut = new Uint8Array(256);
  for (let v = 0; v < 256; v++) lut[v] = v < threshold ? v : 255 - v;
  applyLut(img.data, lut);
}

/**
 * The 1-D kernel of torchvision v2 `_get_gaussian_kernel1d`: softmax of −(x/σ)² on x = linspace(−lim, lim, k),
 * lim = (k − 1)/(2√2), i.e. exp(−i²/(2σ²)) normalised, in float32.
 */
export function gaussianKernel1d(kernelSize: number, sigma: number): Float32Array {
  const lim = (kernelSize - 1) / (2 * Math.SQRT2);
  const w = new Float64Array(kernelSize);
  let max = -Infinity;
  for (let i = 0; i < kernelSize; i++) {
    const x = f32(kernelSize === 1 ? -lim : -lim + ((2 * lim) / (kernelSize - 1)) * i);
    const z = f32(f32(x / f32(sigma)) ** 2);
    w[i] = -z;
    if (-z > max) max = -z;
  }
  let s = 0;
  for (let i = 0; i < kernelSize; i++) s += w[i] = Math.exp(w[i]! - max);
  const out = new Float32Array(kernelSize);
  for (let i = 0; i < kernelSize; i++) out[i] = w[i]! / s;
  return out;
}

/** Reflect-padding index (torch 'reflect': the edge sample is not repeated). */
function reflect(i: number, n: number): number {
  if (n === 1) return 0;
  const period = 2 * (n - 1);
  i = ((i % period) + period) % period;
  return i < n ? i : period - i;
}

/**
 * torchvision v2 `gaussian_blur` on a PIL image (`_gaussian_blur_image_pil`): uint8 → float32, reflect padding of
 * k/2, the k×k Gaussian (separable here: two 1-D passes in float32), rounded back to uint8.
 */
export function gaussianBlurRgb(img: RgbImage, kernelSize: number, sigma: number): void {
  if (kernelSize % 2 !== 1 || kernelSize < 1) throw new ImageError(`blur kernel size must be odd and positive, got ${kernelSize}`);
  if (!(sigma > 0)) throw new ImageError(`blur sigma must be positive, got ${sigma}`);
  const { data, width, height } = img;
  const half = kernelSize >> 1;
  if (half >= width || half >= height) {
    throw new ImageError(`a ${kernelSize}×${kernelSize} reflect-padded blur needs an image larger than ${half} pixels, got ${width}×${height}`);
  }
  const k = gaussianKernel1d(kernelSize, sigma);
  const stride = width * 3;
  const tmp = new Float32Array(data.length);
  // Horizontal pass: interior without index arithmetic, borders through reflect().
  const xo = new Int32Array(width + 2 * half);
  for (let x = -half; x < width + half; x++) xo[x + half] = reflect(x, width) * 3;
  for (let y = 0; y < height; y++) {
    const row = y * stride;
    for (let x = 0; x < width; x++) {
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      for (let j = 0; j < kernelSize; j++) {
        const p = row + xo[x + j]!;
        const w = k[j]!;
        s0 += data[p]! * w;
        s1 += data[p + 1]! * w;
        s2 += data[p + 2]! * w;
      }
      const o = row + x * 3;
      tmp[o] = s0;
      tmp[o + 1] = s1;
      tmp[o + 2] = s2;
    }
  }
  // Vertical pass.
  const acc = new Float64Array(stride);
  for (let y = 0; y < height; y++) {
    acc.fill(0);
    for (let j = 0; j < kernelSize; j++) {
      const row = reflect(y + j - half, height) * stride;
      const w = k[j]!;
      for (let i = 0; i < stride; i++) acc[i] = acc[i]! + tmp[row + i]! * w;
    }
    const o = y * stride;
    for (let i = 0; i < stride; i++) {
      const v = Math.round(acc[i]!);
      data[o + i] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
  }
}

/**
 * `ToImage` + `ToDtype(float32, scale=True)` + `Normalize(mean, std)`: HWC uint8 → CHW float32
 * `(v/255 − mean)/std`, in float32 steps as torch computes them, through a per-channel table.
 */
export function normalizeRgb(img: RgbImage, mean: readonly number[], std: readonly number[], out?: Float32Array): Float32Array {
  const { data, width, height } = img;
  const plane = width * height;
  const res = out ?? new Float32Array(3 * plane);
  const lut = new Float32Array(768);
  const inv = f32(1 / 255);
  for (let c = 0; c < 3; c++) {
    const m = f32(mean[c]!);
    const s = f32(std[c]!);
    for (let v = 0; v < 256; v++) lut[c * 256 + v] = f32(f32(f32(v * inv) - m) / s);
  }
  for (let p = 0, i = 0; p < plane; p++, i += 3) {
    res[p] = lut[data[i]!]!;
    res[plane + p] = lut[256 + data[i + 1]!]!;
    res[2 * plane + p] = lut[512 + data[i + 2]!]!;
  }
  return res;
}
