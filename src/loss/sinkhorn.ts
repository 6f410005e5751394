// Sinkhorn-Knopp teacher targets (official: dinov3/loss/dino_clstoken_loss.py::DINOLoss.sinkhorn_knopp_teacher and
// dinov3/loss/ibot_patch_loss.py::SinkhornKnoppTeacher), plus the softmax-centering alternative.
//
// Layout: the official code works on Q = exp(Z/τ)ᵀ [K, n]; we keep Z's layout [n, K], so the official "row sums"
// (per prototype, all-reduced) are our sums over dim 0 and its "column sums" (per sample, local) our sums over dim 1.
import { allReduceMax_, LOCAL_PROCESS_GROUP, type ProcessGroup } from '../distributed/process_group.js';
import { full } from '../tensor/creation.js';
import { noGrad } from '../tensor/grad_mode.js';
import { scope } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { isfinite, where } from '../ops/pointwise.js';
import { amax, sum } from '../ops/reduce.js';
import { softmax } from '../ops/nn.js';
import { expectFloat, expectPositive, expectPositiveInt } from './checks.js';
import { expectMethods, expectTensorArg } from '../tensor/args.js';

export interface SinkhornOptions {
  /** Row/column normalisation rounds (3 in every config). */
  nIterations?: number;
  /** Ranks whose samples are balanced together (default: this process alone). */
  group?: ProcessGroup;
  /**
   * B_tot, the number of samples over all ranks. Default `n · worldSize` (DINO: the same n on every rank). iBOT passes
   * the all-reduced count of masked patches (see `totalMaskedPatches`).
   */
  totalSamples?: number | Tensor;
}

/**
 * Balanced soft assignments of the rows of `teacherLogits` [n, K] to the K prototypes (DINOLoss.sinkhorn_knopp_teacher), computed in
 * float32 whatever the input dtype, without autograd. Each returned row sums to 1; over all ranks each prototype gets
 * total mass B_tot/K.
 *
 * Stability: the official code exponentiates Z/τ directly, which overflows float32 once Z/τ > 88 (logits ≈ 6.2 at
 * τ = 0.07; the reference fixtures hit this and are all NaN). We first subtract, per prototype k, the maximum of
 * Z[:, k]/τ over the samples of all ranks. That multiplies row k of the official Q = exp(Z/τ)ᵀ by a constant, which
 * the first (all-reduced) row normalisation divides out exactly, and scalars cancel in the global normalisation: the
 * math is identical, only overflow is gone. (One global scalar would also be exact but underflows whole prototypes
 * whose logits sit far below the global maximum, giving 0/0 where the official code is finite; the per-prototype
 * shift underflows only what the official code underflows after its first row normalisation.)
 * @example
 * const targets = sinkhornKnopp(teacherLogits, 0.07); // [2B, K], rows sum to 1
 * @throws TorchTypeError / TorchRangeError (ERR_INVALID_ARG) for a non-floating or non-2-D input or a bad option.
 */
export function sinkhornKnopp(teacherLogits: Tensor, teacherTemp: number, o: SinkhornOptions = {}): Tensor {
  const op = 'sinkhornKnopp';
  expectFloat(op, 'teacherLogits', teacherLogits, ['samples', 'prototypes']);
  expectPositive(op, 'teacherTemp', teacherTemp);
  const nIterations = expectPositiveInt(op, 'nIterations', o.nIterations ?? 3);
  const group = o.group ?? LOCAL_PROCESS_GROUP;
  const [n, K] = teacherLogits.shape as [number, number];
  const B = o.totalSamples ?? n * group.worldSize;
  if (typeof B === 'number') expectPositive(op, 'totalSamples', B);
  else expectFloat(op, 'totalSamples', B, [1]);
  return noGrad(() =>
    scope(op, () => {
      const q = teacherLogits.float().div(teacherTemp); // [n, K] fp32, a new tensor (safe to update in place)
      // Per-prototype max over the samples of every rank (a rank without samples contributes −∞; a prototype with
      // no sample anywhere keeps shift 0).
      const localMax = n > 0 ? amax(q, 0, true) : full([1, K], -Infinity, { device: q.device }); // [1, K]
      const globalMax = allReduceMax_(group, localMax);
      q.sub_(where(isfinite(globalMax), globalMax, 0)).exp_();
      // Make the matrix sum to 1 over all ranks.
      q.div_(group.allReduceSum_(sum(q)));
      for (let it = 0; it < nIterations; it++) {
        // Each prototype gets total mass 1/K (sums over the samples of all ranks).
        q.div_(group.allReduceSum_(sum(q, 0, true)).mul_(K)); // [1, K]
        // Each sample gets mass 1/B_tot; on the last round the final `Q · B_tot` is folded in (Q/(c·B)·B = Q/c).
        const colSums = sum(q, 1, true); // [n, 1]
        q.div_(it === nIterations - 1 ? colSums : colSums.mul_(B));
      }
      return q; // [n, K], rows sum to 1
    }),
  );
}

/**
 * B_tot for iBOT: the number of masked patches summed over the ranks of `group` (official: `dist.all_reduce` of
 * `n_masked_patches`), as a float32 [1] tensor owned by the caller (no device→host sync). Unlike the official code,
 * a tensor argument is not modified.
 */
export function totalMaskedPatches(nMaskedPatches: number | Tensor, group: ProcessGroup = LOCAL_PROCESS_GROUP): Tensor {
  if (typeof nMaskedPatches !== 'number') expectTensorArg('totalMaskedPatches', 'nMaskedPatches', nMaskedPatches);
  expectMethods('totalMaskedPatches', 'group', group, 'a ProcessGroup', ['allReduceSum_']);
  return noGrad(() =>
    scope(() => {
      const t =
        typeof nMaskedPatches === 'number' ? full([1], nMaskedPatches, { dtype: 'float32' }) : nMaskedPatches.to({ dtype: 'float32', copy: true }).reshape([1]);
      return group.allReduceSum_(t);
    }),
  );
}

/**
 * The softmax-centering alternative (DINOLoss.softmax_center_teacher, not reachable from the training loop): softmax((Z − c)/τ) over the
 * last dim, in float32 and without autograd. `center` broadcasts over the leading dims of `teacherLogits`.
 */
export function softmaxCenterTeacher(teacherLogits: Tensor, center: Tensor, teacherTemp: number): Tensor {
  expectPositive('softmaxCenterTeacher', 'teacherTemp', teacherTemp);
  expectTensorArg('softmaxCenterTeacher', 'teacherLogits', teacherLogits);
  expectTensorArg('softmaxCenterTeacher', 'center', center);
  return noGrad(() => scope(() => softmax(teacherLogits.float().sub(center).div(teacherTemp), -1)));
}
