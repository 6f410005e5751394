// k-NN classification of frozen features (`dinov3/eval/knn.py::KnnModule`): features are L2-normalised, the
// similarity is the cosine (a dot product), the max(ks) nearest train features vote with weights
// softmax(sim / T) over those neighbours (T = 0.07), the class scores for each k sum the first k votes, and top-1 /
// top-5 accuracies are counted against the labels.
import { DatasetError, TorchRangeError } from '../native/errors.js';
import { zeros } from '../tensor/creation.js';
import { scope } from '../tensor/scope.js';
import { expectOptions, expectPositiveInt, expectString, expectTensorArg } from '../tensor/args.js';
import type { Tensor } from '../tensor/tensor.js';
import { expectEvalArgs, labelTensors, toLabelTensor } from './labels.js';
import { eq } from '../ops/pointwise.js';
import { normalize, softmax } from '../ops/nn.js';
import { mm } from '../ops/linalg.js';
import { gather, scatterAdd } from '../ops/index.js';
import { sum, topk } from '../ops/reduce.js';
import { narrow, transpose, unsqueeze } from '../ops/shape.js';
import { noGrad } from '../tensor/grad_mode.js';

export interface KnnOptions {
  /** Neighbour counts to evaluate (default [20]; the official config evaluates 10, 20, 100, 200). */
  ks?: readonly number[];
  /** Softmax temperature of the votes (default 0.07). */
  temperature?: number;
  /** Number of classes (default: max label + 1 over train and val). */
  numClasses?: number;
  /** Validation rows per similarity block (default 256; memory is block × N_train floats). */
  chunkSize?: number;
  /** Drop the nearest neighbour (when train and val are the same set), as the official `skip_first_nn`. */
  skipFirstNn?: boolean;
  /** Called after each block with the rows done and the total. */
  onProgress?: (done: number, total: number) => void;
}

export interface KnnResult {
  k: number;
  /** Accuracies in [0, 1]. */
  top1: number;
  top5: number;
}

/** Labels as an int64 tensor [N] (the caller owns it). */
export function labelTensor(labels: Tensor | ArrayLike<number>): Tensor {
  return toLabelTensor(labels, 'labelTensor', 'labels');
}

/** Checks features and labels of a train/val pair; returns their sizes and the class count. */
export function checkEvalInputs(
  op: string,
  trainFeatures: Tensor,
  trainLabels: Tensor,
  valFeatures: Tensor,
  valLabels: Tensor,
  numClasses?: number,
): { nTrain: number; nVal: number; dim: number; numClasses: number } {
  expectString('checkEvalInputs', 'op', op);
  expectTensorArg(op, 'trainFeatures', trainFeatures);
  expectTensorArg(op, 'trainLabels', trainLabels);
  expectTensorArg(op, 'valFeatures', valFeatures);
  expectTensorArg(op, 'valLabels', valLabels);
  if (numClasses !== undefined) expectPositiveInt(op, 'numClasses', numClasses);
  const [nTrain, dim] = trainFeatures.shape as [number, number];
  const [nVal, dimVal] = valFeatures.shape as [number, number];
  if (trainFeatures.ndim !== 2 || valFeatures.ndim !== 2)
    throw new TorchRangeError(
      `${op}: features must be [N, D] tensors, got [${trainFeatures.shape.join(', ')}] and [${valFeatures.shape.join(', ')}]`,
      'ERR_INVALID_ARG',
    );
  if (nTrain === 0) throw new DatasetError(`${op}: the train set is empty`);
  if (nVal === 0) throw new DatasetError(`${op}: the validation set is empty`);
  if (dim !== dimVal) throw new TorchRangeError(`${op}: train features have ${dim} dims, validation features ${dimVal}`, 'ERR_INVALID_ARG');
  if (trainLabels.numel !== nTrain) throw new TorchRangeError(`${op}: ${nTrain} train features but ${trainLabels.numel} labels`, 'ERR_INVALID_ARG');
  if (valLabels.numel !== nVal) throw new TorchRangeError(`${op}: ${nVal} validation features but ${valLabels.numel} labels`, 'ERR_INVALID_ARG');
  const maxLabel = Math.max(...[trainLabels, valLabels].map((l) => scope(() => l.max().item())));
  const minLabel = Math.min(...[trainLabels, valLabels].map((l) => scope(() => l.min().item())));
  if (minLabel < 0) throw new TorchRangeError(`${op}: labels must be non-negative, got ${minLabel}`, 'ERR_INVALID_ARG');
  const C = numClasses ?? maxLabel + 1;
  if (maxLabel >= C) throw new TorchRangeError(`${op}: label ${maxLabel} is out of range for ${C} classes`, 'ERR_INVALID_ARG');
  return { nTrain, nVal, dim, numClasses: C };
}

/**
 * k-NN accuracy of validation features against train features (both [N, D], any scale: they are normalised here).
 * @example const [r] = knnEval(trainF, trainY, valF, valY, { ks: [20] }); // r.top1
 * @throws DatasetError for an empty set; RangeError for mismatched shapes, bad labels or bad ks.
 */
export function knnEval(
  trainFeatures: Tensor,
  trainLabels: Tensor | ArrayLike<number>,
  valFeatures: Tensor,
  valLabels: Tensor | ArrayLike<number>,
  o: KnnOptions = {},
): KnnResult[] {
  expectEvalArgs('knnEval', trainFeatures, trainLabels, valFeatures, valLabels);
  o = expectOptions('knnEval', 'options', o) ?? {};
  const ks = [...(o.ks ?? [20])];
  if (ks.length === 0 || ks.some((k) => !Number.isInteger(k) || k < 1))
    throw new TorchRangeError(`knnEval: ks must be positive integers, got [${ks.join(', ')}]`, 'ERR_INVALID_ARG');
  const T = o.temperature ?? 0.07;
  if (!(T > 0)) throw new TorchRangeError(`knnEval: temperature must be positive, got ${T}`, 'ERR_INVALID_ARG');
  const chunk = o.chunkSize ?? 256;
  const [ownTrain, ownVal] = labelTensors('knnEval', trainLabels, valLabels);
  try {
    const { nTrain, nVal, numClasses: C } = checkEvalInputs('knnEval', trainFeatures, ownTrain, valFeatures, ownVal, o.numClasses);
    const skip = o.skipFirstNn ? 1 : 0;
    const maxK = Math.min(Math.max(...ks) + skip, nTrain);
    const top1 = new Array<number>(ks.length).fill(0);
    const top5 = new Array<number>(ks.length).fill(0);
    return noGrad(() => {
      const trainT = scope(() => transpose(normalize(trainFeatures.to('float32'), 2, 1), 0, 1).contiguous());
      try {
        for (let start = 0; start < nVal; start += chunk) {
          const n = Math.min(chunk, nVal - start);
          scope(() => {
            const q = normalize(narrow(valFeatures, 0, start, n).to('float32'), 2, 1);
            const sim = mm(q, trainT); // [n, N]
            let { values, indices } = topk(sim, maxK, 1, true, true);
            if (skip) {
              values = narrow(values, 1, 1, maxK - 1);
              indices = narrow(indices, 1, 1, maxK - 1);
            }
            const kk = values.shape[1]!;
            const votes = softmax(values.div(T), 1); // over the max(ks) neighbours, as the official module
            const neighbourLabels = gather(ownTrain.reshape([1, nTrain]).expand([n, nTrain]), 1, indices); // [n, kk]
            const target = unsqueeze(narrow(ownVal, 0, start, n), 1); // [n, 1]
            ks.forEach((k, i) => {
              const m = Math.min(k, kk);
              const scores = scatterAdd(zeros([n, C]), 1, narrow(neighbourLabels, 1, 0, m), narrow(votes, 1, 0, m));
              const pred = topk(scores, Math.min(5, C), 1, true, true).indices; // [n, 5]
              const hit = eq(pred, target);
              top1[i]! += sum(narrow(hit, 1, 0, 1).to('int64')).item();
              top5[i]! += sum(hit.to('int64')).item(); // the 5 predictions are distinct: at most one hit per row
            });
          });
          o.onProgress?.(start + n, nVal);
        }
      } finally {
        trainT.dispose();
      }
      return ks.map((k, i) => ({ k, top1: top1[i]! / nVal, top5: top5[i]! / nVal }));
    });
  } finally {
    ownTrain.dispose();
    ownVal.dispose();
  }
}
