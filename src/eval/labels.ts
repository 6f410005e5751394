// Argument checks and label conversion shared by the evals (knn.ts, linear.ts); internal (not re-exported).
import { tensor } from '../tensor/creation.js';
import { argRangeError, argTypeError, expectTensorArg } from '../tensor/args.js';
import { Tensor } from '../tensor/tensor.js';

/** `labelTensor` naming the calling function and argument in its errors. */
export function toLabelTensor(labels: Tensor | ArrayLike<number>, op: string, name: string): Tensor {
  expectLabels(op, name, labels);
  if (labels instanceof Tensor) return labels.to('int64');
  // The integer check rides on the conversion's own pass over the labels.
  const toBig = (v: number | bigint, i: number): bigint => {
    if (typeof v === 'bigint' || Number.isSafeInteger(v)) return BigInt(v);
    throw argRangeError(op, `${name}[${i}]`, 'an integer class label', v);
  };
  return tensor(BigInt64Array.from(Array.from(labels as ArrayLike<number | bigint>), toBig), { shape: [labels.length] });
}

/** Labels as the evals take them: a Tensor, an array or a typed array (their values are checked on conversion). */
export function expectLabels(op: string, name: string, v: unknown): asserts v is Tensor | ArrayLike<number> {
  if (v instanceof Tensor || Array.isArray(v) || (ArrayBuffer.isView(v) && !(v instanceof DataView))) return;
  throw argTypeError(op, name, 'a Tensor, an array or a typed array of integer labels', v);
}

/**
 * The four data arguments of an eval (knnEval, linearProbe): features Tensors, labels as `labelTensor` takes them.
 * Checked before anything is allocated.
 */
export function expectEvalArgs(op: string, trainFeatures: unknown, trainLabels: unknown, valFeatures: unknown, valLabels: unknown): void {
  expectTensorArg(op, 'trainFeatures', trainFeatures);
  expectLabels(op, 'trainLabels', trainLabels);
  expectTensorArg(op, 'valFeatures', valFeatures);
  expectLabels(op, 'valLabels', valLabels);
}

/** Both label tensors of an eval; the first is freed if the second cannot be made. */
export function labelTensors(op: string, trainLabels: Tensor | ArrayLike<number>, valLabels: Tensor | ArrayLike<number>): [Tensor, Tensor] {
  const train = toLabelTensor(trainLabels, op, 'trainLabels');
  try {
    return [train, toLabelTensor(valLabels, op, 'valLabels')];
  } catch (e) {
    train.dispose();
    throw e;
  }
}
