// Frozen features of a labeled dataset for k-NN / linear evaluation, with the official evaluation transform
// (`dinov3/eval/knn.py::make_transform`: resize the short side to 256/224 · resolution, bicubic with antialias,
// centre crop to `resolution`, normalise), batched through the backbone with the feature-extraction path
// (src/features/backbone.ts::runBackbone). Also the dataset checks that evaluation needs.
import { DatasetError, ImageError } from '../native/errors.js';
import { expectMethods, expectPositiveInt } from '../tensor/args.js';
import { scope } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { clamp, round } from '../ops/pointwise.js';
import { mean } from '../ops/reduce.js';
import { cat, narrow } from '../ops/shape.js';
import type { Dataset, RgbImage, SkippedSample } from '../data/datasets/types.js';
import { checkRgb } from '../data/kernels.js';
import { type Normalization, planResize, resizeTensor, rgbToTensor } from '../data/transforms.js';
import { assertEval, type FeatureBackbone, modelPlacement, runBackbone } from '../features/backbone.js';

/**
 * Checks that two datasets can be used for evaluation: non-empty, labeled, with the same classes (names when both
 * have names; otherwise the validation labels must be classes of the train set).
 * @returns the number of classes.
 * @throws DatasetError naming what is wrong.
 */
export function checkEvalDatasets(train: Dataset, val: Dataset): number {
  for (const [role, ds] of [
    ['train', train],
    ['validation', val],
  ] as const) {
    expectMethods('eval', role === 'train' ? 'train' : 'val', ds, 'a Dataset', ['get']);
    if (ds.length === 0) throw new DatasetError(`eval: the ${role} dataset is empty`);
    if (!ds.labeled)
      throw new DatasetError(
        `eval: the ${role} dataset has no labels; k-NN and linear evaluation need labeled data (class subfolders, "path,label" lines, or an IDX labels file)`,
      );
  }
  if (train.classes && val.classes) {
    const a = train.classes.join(', ');
    const b = val.classes.join(', ');
    if (a !== b) throw new DatasetError(`eval: the train and validation datasets have different classes (train: ${a}; validation: ${b})`);
  } else if (val.numClasses > train.numClasses) {
    throw new DatasetError(`eval: the validation dataset has labels up to ${val.numClasses - 1}, the train dataset only up to ${train.numClasses - 1}`);
  }
  return Math.max(train.numClasses, val.numClasses);
}

export interface DatasetFeatureOptions {
  /** Crop side (default 224); the short side is first resized to round(resolution · 256 / 224). */
  resolution?: number;
  batchSize?: number;
  normalization?: Normalization;
  /** Append the mean patch token to the CLS token (default true, the official linear probe's `use_avgpool`). */
  avgpool?: boolean;
  /** Unreadable images: skipped (default, reported to onSkip) or an ImageError. */
  onError?: 'skip' | 'fail';
  onSkip?: (s: SkippedSample) => void;
  onProgress?: (done: number, total: number, skipped: number) => void;
}

/** The evaluation transform of one image: `[1, 3, R, R]` normalised float32 (the caller owns it). */
export function evalTransform(img: RgbImage, resolution: number, patchSize: number, normalization: Normalization): Tensor {
  checkRgb(img, 'evalTransform');
  expectPositiveInt('evalTransform', 'resolution', resolution);
  expectPositiveInt('evalTransform', 'patchSize', patchSize);
  const plan = planResize(img.width, img.height, {
    resolution,
    resize: 'shortSide',
    resizeShortSide: Math.round((resolution * 256) / 224),
    patchSize,
    sizeMultiple: 'round',
  });
  return scope(() => {
    let x = rgbToTensor([img], { normalization: 'none' }).mul(255); // [1, 3, H, W] in 0..255
    if (plan.resize.width !== img.width || plan.resize.height !== img.height)
      x = round(clamp(resizeTensor(x, [plan.resize.height, plan.resize.width]), 0, 255));
    if (plan.crop) x = narrow(narrow(x, 2, plan.crop.top, plan.crop.height), 3, plan.crop.left, plan.crop.width);
    const u8 = x.to('uint8').permute([0, 2, 3, 1]).contiguous();
    return rgbToTensor([{ data: u8.data() as Uint8Array, width: plan.width, height: plan.height }], { normalization });
  });
}

/**
 * Features of every readable image of a dataset: `features` [N, D] (CLS) or [N, 2D] (CLS ⊕ mean patch), float32 on
 * the CPU, and the labels of those images.
 * @throws DatasetError if no image could be read; ImageError with `onError: 'fail'`.
 */
export async function extractDatasetFeatures(
  model: FeatureBackbone,
  dataset: Dataset,
  o: DatasetFeatureOptions = {},
): Promise<{ features: Tensor; labels: Int32Array; skipped: SkippedSample[] }> {
  assertEval(model, 'extractDatasetFeatures');
  const R = o.resolution ?? 224;
  const bs = o.batchSize ?? 32;
  const norm = o.normalization ?? 'lvd1689m';
  const avgpool = o.avgpool ?? true;
  const place = modelPlacement(model);
  const parts: Tensor[] = [];
  const labels: number[] = [];
  const skipped: SkippedSample[] = [];
  const N = dataset.length;
  const read = (start: number) =>
    Promise.all(
      Array.from({ length: Math.min(bs, N - start) }, (_, i) =>
        dataset.get(start + i).catch((e: unknown) => {
          if (!(e instanceof ImageError) || o.onError === 'fail') throw e;
          const s = { index: start + i, name: dataset.nameOf(start + i), message: e.message };
          skipped.push(s);
          o.onSkip?.(s);
          return null;
        }),
      ),
    );
  try {
    let next: ReturnType<typeof read> | null = N > 0 ? read(0) : null;
    for (let start = 0; start < N; start += bs) {
      const samples = (await next!).filter((s) => s !== null);
      next = start + bs < N ? read(start + bs) : null;
      next?.catch(() => undefined);
      if (samples.length > 0) {
        const f = scope(() => {
          const x = cat(samples.map((s) => evalTransform(s.image, R, model.patchSize, norm)));
          const bf = runBackbone(model, x.to({ device: place.device, dtype: place.dtype }), undefined);
          return avgpool ? cat([bf.cls, mean(bf.patches, [1, 2])], 1) : bf.cls; // the rest is freed by the scope
        });
        parts.push(f);
        for (const s of samples) labels.push(s.label ?? -1);
      }
      o.onProgress?.(Math.min(start + bs, N), N, skipped.length);
    }
    if (parts.length === 0) throw new DatasetError(`eval: none of the ${N} images could be read (${skipped[0]?.message ?? 'empty dataset'})`);
    const features = cat(parts);
    return { features, labels: Int32Array.from(labels), skipped };
  } finally {
    for (const p of parts) p.dispose();
  }
}
