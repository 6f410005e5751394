// KoLeo regulariser (official: dinov3/loss/koleo_loss.py::KoLeoLoss, ::KoLeoLossDistributed).
// Applied by the caller to each global crop's student CLS tokens separately, then averaged over the crops.
import { LOCAL_PROCESS_GROUP, type ProcessGroup } from '../distributed/process_group.js';
import { TorchRangeError } from '../native/errors.js';
import { arange, eye } from '../tensor/creation.js';
import { noGrad } from '../tensor/grad_mode.js';
import { scope } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { indexSelect } from '../ops/index.js';
import { mm } from '../ops/linalg.js';
import { normalize, pairwiseDistance } from '../ops/nn.js';
import { eq, maskedFill_ } from '../ops/pointwise.js';
import { argmax, mean, topk } from '../ops/reduce.js';
import { cat, narrow } from '../ops/shape.js';
import { expectFloat, expectPositive, expectPositiveInt } from './checks.js';
import { expectOptions } from '../tensor/args.js';

const EPS = 1e-8;

/**
 * Kozachenko-Leonenko entropy estimate of the rows of `x` [n, D] on this rank (dinov3/loss/koleo_loss.py::KoLeoLoss.forward), n ≥ 2:
 *
 *     x_i ← x_i / max(‖x_i‖, eps);  nn(i) = argmax_{j≠i} ⟨x_i, x_j⟩   (no gradient through the search)
 *     loss = −mean_i log(‖x_i − x_nn(i) + eps‖₂ + eps)
 *
 * Computed in the dtype of `x` (bf16 activations stay bf16, as in the official per-GPU loss); gradients reach both
 * x_i and x_nn(i).
 * @example
 * const lKoleo = scope(() => koleoLoss(cls0).add(koleoLoss(cls1)).div(2));
 * @throws TorchTypeError / TorchRangeError (ERR_INVALID_ARG) for a non-floating or non-2-D input or fewer than 2 rows.
 */
export function koleoLoss(x: Tensor, eps = EPS): Tensor {
  const op = 'koleoLoss';
  expectFloat(op, 'x', x, ['samples', 'features']);
  const n = x.shape[0]!;
  if (n < 2)
    throw new TorchRangeError(`${op}: expected "x" to have at least 2 samples (rows), received ${x.dtype} Tensor [${x.shape.join(', ')}]`, 'ERR_INVALID_ARG');
  expectPositive(op, 'eps', eps);
  return scope(op, () => {
    const xn = normalize(x, 2, -1, eps); // [n, D]
    const nn = noGrad(() => {
      const dots = maskedFill_(mm(xn, xn.t()), eye(n, { dtype: 'bool', device: xn.device }), -1); // [n, n], diagonal −1
      return argmax(dots, 1); // [n]
    });
    const d = pairwiseDistance(xn, indexSelect(xn, 0, nn), 2, eps); // [n]
    return mean(d.add(eps).log()).neg();
  });
}

export interface KoleoDistributedOptions {
  /** Ranks whose samples are searched (all of them are gathered). Default: this process alone. */
  group?: ProcessGroup;
  /** Neighbours per sample (1 in the configs). */
  topk?: number;
  /**
   * Samples per search group: consecutive blocks of the gathered batch (a multiple of the local batch that divides
   * the world batch). Default: the whole world batch.
   */
  lossGroupSize?: number;
  eps?: number;
}

/**
 * The distributed KoLeo variant (dinov3/loss/koleo_loss.py::KoLeoLossDistributed.forward): the normalised rows of every rank are
 * gathered (with gradients, so other ranks' samples receive gradient too), each local row finds its `topk` nearest
 * neighbours (itself excluded, no gradient) inside its group of `lossGroupSize` consecutive samples, and
 * loss = −mean log(‖x_i − x_nn + eps‖ + eps) over local rows × k, with the distances cast to float32.
 * @throws TorchRangeError (ERR_INVALID_ARG) for an inconsistent group size or topk.
 */
export function koleoLossDistributed(x: Tensor, o: KoleoDistributedOptions = {}): Tensor {
  const op = 'koleoLossDistributed';
  expectFloat(op, 'x', x, ['samples', 'features']);
  o = expectOptions(op, 'options', o) ?? {};
  const group = o.group ?? LOCAL_PROCESS_GROUP;
  const eps = expectPositive(op, 'eps', o.eps ?? EPS);
  const k = expectPositiveInt(op, 'topk', o.topk ?? 1);
  const b = x.shape[0]!;
  const world = b * group.worldSize;
  const G = expectPositiveInt(op, 'lossGroupSize', o.lossGroupSize ?? world);
  if (G % b !== 0 || world % G !== 0)
    throw new TorchRangeError(
      `${op}: expected "lossGroupSize" to be a multiple of the local batch (${b}) that divides the world batch (${world}), received ${G}`,
      'ERR_INVALID_ARG',
    );
  if (k > G - 1) throw new TorchRangeError(`${op}: expected "topk" to be at most lossGroupSize − 1 (${G - 1}), received ${k}`, 'ERR_INVALID_ARG');
  return scope(op, () => {
    const xn = normalize(x, 2, -1, eps); // [b, D]
    const all = cat(group.allGather(xn)); // [W·b, D], gradient-carrying
    const groupStart = Math.floor((group.rank * b) / G) * G;
    const members = narrow(all, 0, groupStart, G); // [G, D]
    const offset = group.rank * b - groupStart; // where this rank's rows sit in its group
    const idx = noGrad(() => {
      const dots = mm(xn, members.t()); // [b, G]
      const self = eq(arange(offset, offset + b, 1, { device: xn.device }).unsqueeze(1), arange(0, G, 1, { device: xn.device }).unsqueeze(0)); // [b, G], true at (i, offset+i)
      return topk(maskedFill_(dots, self, -1), k, 1).indices; // [b, k]
    });
    const nbrs = indexSelect(members, 0, idx.reshape([-1])).reshape([b, k, -1]); // [b, k, D]
    const d = pairwiseDistance(xn.unsqueeze(1).expand([b, k, xn.shape[1]!]), nbrs, 2, eps).float(); // [b, k]
    return mean(d.add(eps).log()).neg();
  });
}
