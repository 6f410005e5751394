// Shared pieces of the quickstart demo and the learning benchmark (bench/learn_fmnist.ts): the Fashion-MNIST eval
// transform (official `make_eval_transform`: bicubic resize to the crop size, ImageNet mean/std on 3 channels), CLS
// features of a backbone, the official k-NN protocol on them, and a wall-clock budget that can pause for evaluations.
import type { IdxDataset } from '../data/datasets/idx.js';
import { knnEval } from '../eval/knn.js';
import type { DinoVisionTransformer } from '../models/vision_transformer.js';
import { interpolate, normalize } from '../ops/nn.js';
import { mean } from '../ops/reduce.js';
import { cat } from '../ops/shape.js';
import { tensor } from '../tensor/creation.js';
import { noGrad } from '../tensor/grad_mode.js';
import { scope } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';

const MEAN = [0.485, 0.456, 0.406];
const STD = [0.229, 0.224, 0.225];

/** Images [start, start + n) of a grey IDX dataset as normalised RGB [n, 3, size, size] (bicubic, like PIL's resize). */
export function idxEvalBatch(ds: IdxDataset, start: number, n: number, size: number): Tensor {
  return scope(() => {
    const px = ds.rows * ds.cols;
    const src = ds.images.subarray(start * px, (start + n) * px);
    const x = interpolate(tensor(Float32Array.from(src), { shape: [n, 1, ds.rows, ds.cols] }), { size: [size, size], mode: 'bicubic', antialias: true })
      .round()
      .clamp(0, 255)
      .div(255);
    return cat([0, 1, 2].map((c) => x.sub(MEAN[c]!).div(STD[c]!)), 1);
  });
}

/** CLS features (`x_norm_clstoken`) of the first `n` images, in eval mode, [n, D]. */
export function idxFeatures(model: DinoVisionTransformer, ds: IdxDataset, n: number, size: number, batch = 500): Tensor {
  const was = model.training;
  model.eval();
  try {
    return noGrad(() =>
      scope(() => {
        const parts: Tensor[] = [];
        for (let s = 0; s < n; s += batch) parts.push(model.forward(idxEvalBatch(ds, s, Math.min(batch, n - s), size)));
        return cat(parts, 0);
      }),
    );
  } finally {
    if (was) model.train();
  }
}

/**
 * k-NN top-1 (official protocol: L2-normalised CLS, cosine, T = 0.07 weighted vote) of the first `ntrain` train and
 * `ntest` test images; with `centred`, also after subtracting the mean train feature (a diagnostic for near-constant
 * features, as the official-code peer reports for random init).
 */
export function idxKnn(
  model: DinoVisionTransformer,
  train: IdxDataset,
  test: IdxDataset,
  o: { size: number; ntrain?: number; ntest?: number; k?: number; centred?: boolean },
): { top1: number; centredTop1: number | undefined } {
  const ntr = o.ntrain ?? train.length;
  const nte = o.ntest ?? test.length;
  return scope(() => {
    const a = idxFeatures(model, train, ntr, o.size);
    const b = idxFeatures(model, test, nte, o.size);
    const run = (x: Tensor, y: Tensor) =>
      knnEval(normalize(x, 2, -1), train.labels!.subarray(0, ntr), normalize(y, 2, -1), test.labels!.subarray(0, nte), { ks: [o.k ?? 20], numClasses: 10 })[0]!.top1;
    const m = o.centred ? mean(a, 0, true) : undefined;
    return { top1: run(a, b), centredTop1: m ? run(a.sub(m), b.sub(m)) : undefined };
  });
}

/** A wall-clock budget whose clock can be paused (evaluations inside a timed run do not count). */
export class Budget {
  #spent = 0;
  #since: number | null = performance.now();
  constructor(readonly ms: number) {}
  elapsed(): number {
    return this.#spent + (this.#since === null ? 0 : performance.now() - this.#since);
  }
  get done(): boolean {
    return this.elapsed() >= this.ms;
  }
  pause(): void {
    if (this.#since !== null) this.#spent += performance.now() - this.#since;
    this.#since = null;
  }
  resume(): void {
    if (this.#since === null) this.#since = performance.now();
  }
  /** Schedule position in [0, positions) for the elapsed share of the budget. */
  position(positions: number): number {
    return Math.min(positions - 1, Math.floor((this.elapsed() / this.ms) * positions));
  }
}
