// PCA visualisation of patch features (the DINOv3 paper/notebook figures): the first three principal components
// of an image's patch features become R, G, B (each min-max normalised), upsampled to the input size and shown
// beside the input image (PNG, JPEG or WebP, as the output name says).
import { realpath } from 'node:fs/promises';
import { extname, resolve } from 'node:path';
import { atomicWriteFile } from '../io/safetensors.js';
import { ConfigError, TorchRangeError, TorchTypeError } from '../native/errors.js';
import { argRangeError, expectOptions, expectPath, expectTensorArg, show } from '../tensor/args.js';
import { scope } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { matmul } from '../ops/linalg.js';
import { interpolate } from '../ops/nn.js';
import { abs, clamp, div, mul, round, sqrt, sub } from '../ops/pointwise.js';
import { amax, amin, argmax, mean } from '../ops/reduce.js';
import { flip, narrow, permute, reshape, select, t as transpose } from '../ops/shape.js';
import { tensor } from '../tensor/creation.js';
import { decodeImage, loadSharp } from '../data/image.js';
import type { Interpolation, Normalization } from '../data/transforms.js';
import { rgbToTensor } from '../data/transforms.js';
import { assertEval, checkLayers, type FeatureBackbone, type LayerSelection, modelNormalization, modelPlacement, runBackbone } from './backbone.js';
import { linalgEigh } from './decomp.js';
import { expectTensor } from '../nn/module.js';

/** A fitted PCA: `mean [D]`, unit `components [k, D]` (rows, by decreasing variance), their variances `[k]`. */
export interface PcaFit {
  mean: Tensor;
  components: Tensor;
  explainedVariance: Tensor;
}

/**
 * Fits a k-component PCA to feature vectors `[..., D]` (all leading dims are samples), in float64. The sign of
 * each component is fixed so that its largest-magnitude score is positive (scikit-learn's convention).
 * Uses the eigendecomposition of the D×D covariance, or of the P×P Gram matrix when there are fewer samples.
 * @throws TorchRangeError (ERR_INVALID_ARG) for fewer than 2 samples or k > min(P, D).
 */
export function pcaFit(features: Tensor, k = 3): PcaFit {
  expectTensor(features, 'pcaFit', 'features');
  const D = features.shape[features.ndim - 1]!;
  const P = features.numel / D;
  if (P < 2 || !Number.isInteger(k) || k < 1 || k > Math.min(P, D))
    throw new TorchRangeError(
      `pcaFit: need at least 2 samples and 1 ≤ k ≤ min(samples, dims); received ${P} samples of dim ${D}, k = ${show(k)}`,
      'ERR_INVALID_ARG',
    );
  return scope(() => {
    const x = reshape(features, [P, D]).to('float64');
    const mu = mean(x, [0]); // [D]
    const xc = sub(x, mu); // [P, D]
    let comps: Tensor; // [k, D]
    let variance: Tensor; // [k]
    if (P >= D) {
      const { eigenvalues, eigenvectors } = linalgEigh(div(matmul(transpose(xc), xc), P - 1)); // ascending
      comps = transpose(flip(narrow(eigenvectors, 1, D - k, k), [1]));
      variance = flip(narrow(eigenvalues, 0, D - k, k), [0]);
    } else {
      // X Xᵀ u = λ u  ⇒  Xᵀ u / √λ is a unit eigenvector of Xᵀ X with the same eigenvalue.
      const { eigenvalues, eigenvectors } = linalgEigh(matmul(xc, transpose(xc))); // [P], [P, P]
      const u = flip(narrow(eigenvectors, 1, P - k, k), [1]); // [P, k]
      const lam = flip(narrow(eigenvalues, 0, P - k, k), [0]); // [k]
      comps = transpose(div(matmul(transpose(xc), u), sqrt(clamp(lam, 1e-30)))); // [k, D]
      variance = div(lam, P - 1);
    }
    // Sign: the score of largest magnitude is positive.
    const scores = matmul(xc, transpose(comps)); // [P, k]
    const idx = argmax(abs(scores), 0).toArray(); // [k]
    const sv = scores.data() as Float64Array;
    const signs = idx.map((p, j) => (sv[p * k + j]! < 0 ? -1 : 1));
    comps = mul(comps, tensor(signs, { dtype: 'float64', shape: [k, 1] }));
    return { mean: mu.to('float32'), components: comps.to('float32'), explainedVariance: variance.to('float32') };
  });
}

/** Scores `[..., k]` of features `[..., D]` on a fitted PCA (float32). */
export function pcaProject(features: Tensor, fit: PcaFit): Tensor {
  expectTensor(features, 'pcaProject', 'features');
  if (fit === null || typeof fit !== 'object') throw new TorchTypeError('pcaProject: expected "fit" to be the result of pcaFit', 'ERR_INVALID_ARG');
  return scope(() => matmul(sub(features.to('float32'), fit.mean), transpose(fit.components)));
}

/**
 * Patch features `[h, w, D]` → an RGB map `[h, w, 3]` in [0, 1]: the first three principal components (fitted on
 * these features unless `fit` is given, e.g. one fit shared by several images), each min-max normalised.
 */
export function pcaRgb(patches: Tensor, fit?: PcaFit): Tensor {
  expectTensor(patches, 'pcaRgb', 'patches');
  if (patches.ndim !== 3)
    throw new TorchRangeError(`pcaRgb: expected patch features [h, w, D], received ${patches.dtype} Tensor [${patches.shape.join(', ')}]`, 'ERR_INVALID_ARG');
  return scope(() => {
    const f = fit ?? pcaFit(patches, 3);
    if (f.components.shape[0] !== 3)
      throw new TorchRangeError(`pcaRgb: expected a 3-component fit, received ${f.components.shape[0]} components`, 'ERR_INVALID_ARG');
    const s = pcaProject(patches, f); // [h, w, 3]
    const lo = amin(s, [0, 1], true);
    const hi = amax(s, [0, 1], true);
    return div(sub(s, lo), clamp(sub(hi, lo), 1e-12));
  });
}

export interface RenderPcaOptions {
  /** Output size of the PCA panel (default: the map's own size). */
  width?: number;
  height?: number;
  /** Upsampling of the patch map (default nearest: one flat block per patch). */
  upsample?: 'nearest' | 'bilinear';
  /** An RGB image shown to the left of the PCA panel (same size as the panel). */
  beside?: { data: Uint8Array; width: number; height: number };
}

/** Renders an RGB map `[h, w, 3]` in [0, 1] as a PNG, upsampled and optionally beside the input image. */
export async function renderPca(rgb: Tensor, o: RenderPcaOptions = {}): Promise<{ png: Buffer; width: number; height: number }> {
  expectTensorArg('renderPca', 'rgb', rgb);
  if (rgb.ndim !== 3 || rgb.shape[2] !== 3) throw argRangeError('renderPca', 'rgb', 'an RGB Tensor [H, W, 3]', rgb);
  o = expectOptions('renderPca', 'options', o) ?? {};
  const [h, w] = rgb.shape as [number, number, number];
  const W = o.beside?.width ?? o.width ?? w;
  const H = o.beside?.height ?? o.height ?? h;
  const panel = scope(() => {
    const x = permute(reshape(rgb.to('float32'), [1, h, w, 3]), [0, 3, 1, 2]); // [1, 3, h, w]
    const up = interpolate(x, { size: [H, W], mode: o.upsample ?? 'nearest' });
    const u8 = round(mul(clamp(up, 0, 1), 255)).to('uint8');
    return new Uint8Array(permute(u8, [0, 2, 3, 1]).contiguous().data() as Uint8Array); // [H, W, 3], copied
  });
  const cols = o.beside ? 2 : 1;
  let raw = panel;
  if (o.beside) {
    if (o.beside.data.length !== W * H * 3)
      throw new TorchRangeError(`renderPca: "beside" has ${o.beside.data.length} bytes, expected ${W}×${H}×3`, 'ERR_INVALID_ARG');
    raw = new Uint8Array(W * H * 3 * 2);
    for (let y = 0; y < H; y++) {
      raw.set(o.beside.data.subarray(y * W * 3, (y + 1) * W * 3), y * W * 6);
      raw.set(panel.subarray(y * W * 3, (y + 1) * W * 3), y * W * 6 + W * 3);
    }
  }
  const sharp = await loadSharp();
  const png = await sharp(raw, { raw: { width: W * cols, height: H, channels: 3 } })
    .png()
    .toBuffer();
  return { png, width: W * cols, height: H };
}

export interface PcaImageOptions {
  /** Short side of the model input (default 768); the aspect ratio is kept, sides rounded to the patch size. */
  resolution?: number;
  interpolation?: Interpolation;
  normalization?: Normalization;
  /** Features of these blocks instead of the final output (the last one listed is used). */
  layers?: LayerSelection;
  upsample?: 'nearest' | 'bilinear';
  /** Show the input image to the left (default true). */
  composite?: boolean;
  /** Files `out` must never replace (besides the input image), e.g. the model weights. */
  protectedPaths?: readonly string[];
}

const IMAGE_OUT: Record<string, 'png' | 'jpeg' | 'webp'> = { '.png': 'png', '.jpg': 'jpeg', '.jpeg': 'jpeg', '.webp': 'webp' };

/**
 * Checks a PCA image output before any work: an extension it can be written in (.png, .jpg/.jpeg, .webp), and not
 * the input image or a protected file (through links too).
 * @throws ConfigError naming the output
 */
export async function checkPcaOutput(out: string, o: { image?: string; protectedPaths?: readonly string[] } = {}): Promise<void> {
  expectPath('checkPcaOutput', 'out', out);
  o = expectOptions('checkPcaOutput', 'options', o) ?? {};
  if (IMAGE_OUT[extname(out).toLowerCase()] === undefined) {
    throw new ConfigError(`pcaImage: cannot tell the image format of "${out}": use a .png, .jpg, .jpeg or .webp name`);
  }
  const real = async (p: string) => realpath(resolve(p)).catch(() => resolve(p));
  const target = await real(out);
  for (const p of o.protectedPaths ?? []) {
    if ((await real(p)) === target) throw new ConfigError(`pcaImage: the output "${out}" would overwrite "${p}" (the model weights or another protected file)`);
  }
  if (o.image !== undefined && (await real(o.image)) === target)
    throw new ConfigError(`pcaImage: the output "${out}" would overwrite the input image "${o.image}"`);
}

/** The PNG re-encoded in the format `out`'s extension names. */
async function encodeAs(png: Buffer, out: string): Promise<Buffer> {
  const fmt = IMAGE_OUT[extname(out).toLowerCase()];
  const sharp = await loadSharp();
  if (fmt === 'jpeg') return sharp(png).jpeg({ quality: 95 }).toBuffer();
  if (fmt === 'webp') return sharp(png).webp({ lossless: true }).toBuffer();
  return png;
}

/**
 * PCA visualisation of one image: runs the model, maps the first three components of the patch features to RGB
 * and renders them at the model-input size, beside the (resized) input. Writes it atomically if `out` is given, in
 * the format its extension names (.png, .jpg/.jpeg, .webp); `out` is checked first (extension, not the input image,
 * not a protected file such as the weights).
 * @example await pcaImage(model, 'cat.jpg', 'cat_pca.png', { resolution: 768 });
 * @throws ImageError for an unreadable image; ConfigError for an unusable `out`.
 */
export async function pcaImage(
  model: FeatureBackbone,
  image: string | Uint8Array,
  out?: string,
  o: PcaImageOptions = {},
): Promise<{ png: Buffer; width: number; height: number; grid: [number, number] }> {
  assertEval(model, 'pcaImage');
  checkLayers(model, o.layers, 'pcaImage');
  if (out !== undefined) await checkPcaOutput(out, { image: typeof image === 'string' ? image : undefined, protectedPaths: o.protectedPaths });
  const im = await decodeImage(image, { resolution: o.resolution ?? 768, resize: 'keepAspect', interpolation: o.interpolation, patchSize: model.patchSize });
  const place = modelPlacement(model);
  const rgb = scope(() => {
    const x = rgbToTensor([im], { normalization: modelNormalization(model, o.normalization), device: place.device, dtype: place.dtype });
    const f = runBackbone(model, x, o.layers);
    const p = f.patches.ndim === 5 ? select(f.patches, 1, f.patches.shape[1]! - 1) : f.patches; // [1, h, w, D]
    return pcaRgb(select(p, 0, 0)); // [h, w, 3]
  });
  try {
    const grid: [number, number] = [rgb.shape[0]!, rgb.shape[1]!];
    const r = await renderPca(rgb, { width: im.width, height: im.height, upsample: o.upsample, beside: (o.composite ?? true) ? im : undefined });
    if (out) await atomicWriteFile(out, [await encodeAs(r.png, out)]);
    return { ...r, grid };
  } finally {
    rgb.dispose();
  }
}
