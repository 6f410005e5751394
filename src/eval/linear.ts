// Linear probing of frozen features in the manner of `dinov3/eval/linear.py`: one linear classifier per learning
// rate (weights N(0, 0.01), bias 0), all trained together on the same shuffled batches with SGD (momentum 0.9, no
// weight decay), lr scaled by batch / 256 and annealed by a cosine to 0 over all iterations; the best classifier's
// validation accuracy is reported, as the official evaluation does. Gradients of the softmax cross-entropy are
// computed in closed form (no autograd graph), so the grid costs a few batched matrix products per step.
import { ConfigError } from '../native/errors.js';
import { randn, tensor, zeros } from '../tensor/creation.js';
import { keep, scope } from '../tensor/scope.js';
import { expectOptions, show } from '../tensor/args.js';
import type { Tensor } from '../tensor/tensor.js';
import { noGrad } from '../tensor/grad_mode.js';
import { add_, eq, mul, mul_, sub, sub_ } from '../ops/pointwise.js';
import { softmax } from '../ops/nn.js';
import { matmul } from '../ops/linalg.js';
import { indexSelect, oneHot } from '../ops/index.js';
import { sum, topk } from '../ops/reduce.js';
import { narrow, select, transpose, unsqueeze } from '../ops/shape.js';
import { Rng } from '../data/rng.js';
import { checkEvalInputs } from './knn.js';
import { expectEvalArgs, labelTensors } from './labels.js';

/** The official grid (`dinov3/eval/linear.py::_DEFAULT_LR_LIST`). */
export const DEFAULT_LINEAR_LRS = [1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1] as const;

export interface LinearProbeOptions {
  /** Base learning rates (scaled by batchSize / 256), default the official grid. */
  learningRates?: readonly number[];
  /** Epochs over the train features (default 10, the official default). */
  epochs?: number;
  /** Batch size (default 256). */
  batchSize?: number;
  numClasses?: number;
  seed?: number;
  /** Called after each epoch. */
  onProgress?: (epoch: number, epochs: number) => void;
}

export interface LinearProbeResult {
  /** The best classifier's accuracies in [0, 1] and its base learning rate. */
  top1: number;
  top5: number;
  learningRate: number;
  /** Every classifier of the grid. */
  grid: { learningRate: number; top1: number; top5: number }[];
}

/**
 * Trains linear classifiers on frozen train features ([N, D]: CLS, or CLS ⊕ mean patch token) and reports the best
 * validation accuracy over the learning-rate grid.
 * @throws DatasetError for an empty set; RangeError for mismatched shapes or labels; ConfigError for bad options.
 */
export function linearProbe(
  trainFeatures: Tensor,
  trainLabels: Tensor | ArrayLike<number>,
  valFeatures: Tensor,
  valLabels: Tensor | ArrayLike<number>,
  o: LinearProbeOptions = {},
): LinearProbeResult {
  expectEvalArgs('linearProbe', trainFeatures, trainLabels, valFeatures, valLabels);
  o = expectOptions('linearProbe', 'options', o) ?? {};
  const lrs = [...(o.learningRates ?? DEFAULT_LINEAR_LRS)];
  const epochs = o.epochs ?? 10;
  const B = o.batchSize ?? 256;
  if (lrs.length === 0 || lrs.some((l) => !(l > 0))) throw new ConfigError(`linearProbe: learningRates must be positive numbers, got [${lrs.join(', ')}]`);
  if (!Number.isInteger(epochs) || epochs < 1) throw new ConfigError(`linearProbe: epochs must be a positive integer, got ${show(epochs)}`);
  if (!Number.isInteger(B) || B < 1) throw new ConfigError(`linearProbe: batchSize must be a positive integer, got ${show(B)}`);
  const [ytr, yva] = labelTensors('linearProbe', trainLabels, valLabels);
  try {
    const { nTrain, nVal, dim: D, numClasses: C } = checkEvalInputs('linearProbe', trainFeatures, ytr, valFeatures, yva, o.numClasses);
    const L = lrs.length;
    const rng = Rng.derive(o.seed ?? 0, 0x11);
    return noGrad(() => {
      const xtr = trainFeatures.to('float32');
      const W = scope(() => keep(mul(randn([L, C, D]), 0.01)));
      const b = zeros([L, 1, C]);
      const mW = zeros([L, C, D]);
      const mb = zeros([L, 1, C]);
      const scaled = lrs.map((l) => (l * B) / 256);
      const steps = epochs * Math.ceil(nTrain / B);
      let t = 0;
      try {
        for (let e = 0; e < epochs; e++) {
          const perm = rng.permutation(nTrain);
          for (let s = 0; s < nTrain; s += B) {
            const n = Math.min(B, nTrain - s);
            const cos = 0.5 * (1 + Math.cos((Math.PI * t) / steps)); // CosineAnnealingLR to 0 (closed form)
            t++;
            scope(() => {
              const idx = tensor(
                BigInt64Array.from(perm.slice(s, s + n), (v) => BigInt(v)),
                { shape: [n] },
              );
              const x = indexSelect(xtr, 0, idx); // [n, D]
              const y = indexSelect(ytr, 0, idx);
              const logits = matmul(x, transpose(W, 1, 2)).add(b); // [L, n, C]
              const g = sub(softmax(logits, 2), oneHot(y, C).to('float32')).div(n); // dCE/dlogits
              const gW = matmul(transpose(g, 1, 2), x); // [L, C, D]
              const gb = sum(g, 1, true); // [L, 1, C]
              // SGD with momentum 0.9 (torch: buf = 0.9·buf + grad; p -= lr·buf)
              add_(mul_(mW, 0.9), gW);
              add_(mul_(mb, 0.9), gb);
              const lr = tensor(
                scaled.map((l) => l * cos),
                { shape: [L, 1, 1] },
              );
              sub_(W, mul(mW, lr));
              sub_(b, mul(mb, lr));
            });
          }
          o.onProgress?.(e + 1, epochs);
        }
        const top1 = new Array<number>(L).fill(0);
        const top5 = new Array<number>(L).fill(0);
        for (let s = 0; s < nVal; s += 1024) {
          const n = Math.min(1024, nVal - s);
          scope(() => {
            const x = narrow(valFeatures, 0, s, n).to('float32');
            const target = unsqueeze(unsqueeze(narrow(yva, 0, s, n), 0), 2); // [1, n, 1]
            const logits = matmul(x, transpose(W, 1, 2)).add(b);
            const hit = eq(topk(logits, Math.min(5, C), 2, true, true).indices, target); // [L, n, 5]
            const h1 = sum(select(hit, 2, 0).to('int64'), 1).toArray();
            const h5 = sum(hit.to('int64'), [1, 2]).toArray();
            for (let l = 0; l < L; l++) {
              top1[l]! += h1[l]!;
              top5[l]! += h5[l]!;
            }
          });
        }
        const grid = lrs.map((learningRate, l) => ({ learningRate, top1: top1[l]! / nVal, top5: top5[l]! / nVal }));
        const best = grid.reduce((a, c) => (c.top1 > a.top1 ? c : a));
        return { top1: best.top1, top5: best.top5, learningRate: best.learningRate, grid };
      } finally {
        for (const x of [W, b, mW, mb]) x.dispose();
        if (xtr !== trainFeatures) xtr.dispose();
      }
    });
  } finally {
    ytr.dispose();
    yva.dispose();
  }
}
