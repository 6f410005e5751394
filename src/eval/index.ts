// Evaluation of frozen features: k-NN and linear probing (official `dinov3/eval/knn.py`, `dinov3/eval/linear.py`).
import type { Dataset, SkippedSample } from '../data/datasets/types.js';
import { checkModel, type FeatureBackbone } from '../features/backbone.js';
import { argTypeError, expectOptions } from '../tensor/args.js';
import { checkEvalDatasets, type DatasetFeatureOptions, extractDatasetFeatures } from './features.js';
import { type KnnOptions, type KnnResult, knnEval } from './knn.js';
import { type LinearProbeOptions, type LinearProbeResult, linearProbe } from './linear.js';

export * from './knn.js';
export * from './linear.js';
export * from './features.js';

export interface EvaluateOptions extends Omit<DatasetFeatureOptions, 'onProgress'> {
  knn?: Omit<KnnOptions, 'onProgress'>;
  linear?: Omit<LinearProbeOptions, 'onProgress'>;
  /** Progress of each phase: 'train' / 'val' extraction (images), 'knn' (val rows), 'linear' (epochs). */
  onProgress?: (phase: 'train' | 'val' | 'knn' | 'linear', done: number, total: number, skipped: number) => void;
}

export interface EvaluateResult {
  mode: 'knn' | 'linear';
  train: { images: number; skipped: SkippedSample[] };
  val: { images: number; skipped: SkippedSample[] };
  numClasses: number;
  featureDim: number;
  knn?: KnnResult[];
  linear?: LinearProbeResult;
}

/**
 * Extracts features of both datasets with `model` (eval mode) and runs the k-NN or linear evaluation.
 * @throws DatasetError for empty, unlabeled or class-mismatched datasets (before any image is read).
 */
export async function evaluateBackbone(
  model: FeatureBackbone,
  mode: 'knn' | 'linear',
  train: Dataset,
  val: Dataset,
  o: EvaluateOptions = {},
): Promise<EvaluateResult> {
  checkModel(model, 'evaluateBackbone');
  if (mode !== 'knn' && mode !== 'linear') throw argTypeError('evaluateBackbone', 'mode', '"knn" or "linear"', mode);
  o = expectOptions('evaluateBackbone', 'options', o) ?? {};
  const numClasses = checkEvalDatasets(train, val);
  const ex = (ds: Dataset, phase: 'train' | 'val') =>
    extractDatasetFeatures(model, ds, { ...o, avgpool: o.avgpool ?? mode === 'linear', onProgress: (d, t, s) => o.onProgress?.(phase, d, t, s) });
  const tr = await ex(train, 'train');
  try {
    const va = await ex(val, 'val');
    try {
      const base = {
        mode,
        train: { images: tr.labels.length, skipped: tr.skipped },
        val: { images: va.labels.length, skipped: va.skipped },
        numClasses,
        featureDim: tr.features.shape[1]!,
      };
      if (mode === 'knn')
        return {
          ...base,
          knn: knnEval(tr.features, tr.labels, va.features, va.labels, { ...o.knn, numClasses, onProgress: (d, t) => o.onProgress?.('knn', d, t, 0) }),
        };
      return {
        ...base,
        linear: linearProbe(tr.features, tr.labels, va.features, va.labels, {
          ...o.linear,
          numClasses,
          onProgress: (d, t) => o.onProgress?.('linear', d, t, 0),
        }),
      };
    } finally {
      va.features.dispose();
    }
  } finally {
    tr.features.dispose();
  }
}
