// iBOT masked-patch loss (official: dinov3/loss/ibot_patch_loss.py::iBOTPatchLoss.forward_masked), with its
// Sinkhorn-Knopp targets (::SinkhornKnoppTeacher, B_tot = all-reduced masked count) and the softmax-centering alternative.
import { LOCAL_PROCESS_GROUP, type ProcessGroup } from '../distributed/process_group.js';
import { TorchRangeError } from '../native/errors.js';
import { Module } from '../nn/module.js';
import { zeros } from '../tensor/creation.js';
import { noGrad } from '../tensor/grad_mode.js';
import { scope } from '../tensor/scope.js';
import { Tensor } from '../tensor/tensor.js';
import { maskedSelect } from '../ops/index.js';
import { logSoftmax } from '../ops/nn.js';
import { mul } from '../ops/pointwise.js';
import { mean, sum } from '../ops/reduce.js';
import { PendingCenterUpdate } from './centering.js';
import { expectBoolMask, expectFloat, expectPositive, expectPositiveInt, fmtShape } from './checks.js';
import { sinkhornKnopp, softmaxCenterTeacher, totalMaskedPatches } from './sinkhorn.js';

/** Σ_k t · log_softmax(s/τ)_k over the last dim, in float32. */
const crossTerm = (t: Tensor, s: Tensor, studentTemp: number) => sum(mul(t.float(), logSoftmax(s.float().div(studentTemp), -1)), -1);

/**
 * Per-patch weights 1/(#masked patches of its image) for the masked patches in row-major order [M] (the official
 * default of `forward_masked`; an image with no masked patch contributes no entry).
 */
export function masksWeight(masks: Tensor): Tensor {
  expectBoolMask('masksWeight', 'masks', masks, ['images', 'patches']);
  return noGrad(() =>
    scope(() => {
      const perImage = sum(masks, -1, true, 'float32').clamp(1).reciprocal(); // [images, 1]
      return maskedSelect(perImage.expand(masks.shape), masks); // [M]
    }),
  );
}

export interface IbotMaskedLossOptions {
  /** Use only the first n rows of the logits (official `n_masked_patches`, for padded inputs). */
  nMaskedPatches?: number;
  /** Weight of each masked patch [M] (default `masksWeight(studentMasksFlat)`). */
  masksWeight?: Tensor;
  /** Student temperature τ_s (0.1). */
  studentTemp?: number;
}

/**
 * The iBOT loss over masked patches only (iBOTPatchLoss.forward_masked), in float32:
 *
 *     L = −Σ_m w_m · Σ_k T[m, k] · log_softmax(S[m, :] / τ_s)_k / #images
 *
 * with w_m = 1/(#masked patches of m's image), i.e. the per-image mean over its masked patches, averaged over all
 * images of `studentMasksFlat` (global crops without a mask count in the denominator and add 0).
 * @param studentLogitsMasked [M, K] student logits of the masked patches (in the row-major order of the mask).
 * @param teacherProbsMasked [M, K] teacher targets of the same patches.
 * @param studentMasksFlat [images, patches] bool masks of all global crops of this rank.
 * @throws TorchTypeError / TorchRangeError (ERR_INVALID_ARG) naming the argument and both shapes.
 */
export function ibotPatchLossMasked(studentLogitsMasked: Tensor, teacherProbsMasked: Tensor, studentMasksFlat: Tensor, o: IbotMaskedLossOptions = {}): Tensor {
  const op = 'ibotPatchLossMasked';
  expectFloat(op, 'studentLogitsMasked', studentLogitsMasked, ['masked', 'prototypes']);
  const [M, K] = studentLogitsMasked.shape as [number, number];
  expectFloat(op, 'teacherProbsMasked', teacherProbsMasked, [M, K], `the shape of "studentLogitsMasked"`);
  expectBoolMask(op, 'studentMasksFlat', studentMasksFlat, ['images', 'patches']);
  const studentTemp = expectPositive(op, 'studentTemp', o.studentTemp ?? 0.1);
  const n = o.nMaskedPatches ?? M;
  if (!Number.isSafeInteger(n) || n < 0 || n > M)
    throw new TorchRangeError(`${op}: expected "nMaskedPatches" to be an integer in [0, ${M}], received ${n}`, 'ERR_INVALID_ARG');
  if (o.masksWeight !== undefined) expectFloat(op, 'masksWeight', o.masksWeight, [n], `one weight per masked patch`);
  return scope(op, () => {
    const ce = crossTerm(teacherProbsMasked.narrow(0, 0, n), studentLogitsMasked.narrow(0, 0, n), studentTemp); // [n]
    const w = o.masksWeight ?? masksWeight(studentMasksFlat);
    if (w.shape[0] !== n)
      throw new TorchRangeError(
        `${op}: "studentMasksFlat" ${fmtShape(studentMasksFlat.shape)} has ${w.shape[0]} masked patches, but the logits have ${n} rows`,
        'ERR_INVALID_ARG',
      );
    return sum(ce.mul(w)).neg().div(studentMasksFlat.shape[0]!);
  });
}

/**
 * The unmasked form (official `forward`): per-image mean over its masked patches, averaged over images.
 * @param studentPatchTokens [images, patches, K] logits; `teacherPatchTokens` [images, patches, K] targets.
 */
export function ibotPatchLoss(studentPatchTokens: Tensor, teacherPatchTokens: Tensor, studentMasksFlat: Tensor, studentTemp = 0.1): Tensor {
  const op = 'ibotPatchLoss';
  expectFloat(op, 'studentPatchTokens', studentPatchTokens, ['images', 'patches', 'prototypes']);
  const [I, P, K] = studentPatchTokens.shape as [number, number, number];
  expectFloat(op, 'teacherPatchTokens', teacherPatchTokens, [I, P, K], `the shape of "studentPatchTokens"`);
  expectBoolMask(op, 'studentMasksFlat', studentMasksFlat, [I, P]);
  expectPositive(op, 'studentTemp', studentTemp);
  return scope(op, () => {
    const ce = crossTerm(teacherPatchTokens, studentPatchTokens, studentTemp); // [I, P]
    const m = studentMasksFlat.float();
    const perImage = sum(ce.mul(m), -1).div(sum(m, -1).clamp(1)); // [I]
    return mean(perImage).neg();
  });
}

export interface IBOTPatchLossOptions {
  /** Student temperature τ_s (0.1). */
  studentTemp?: number;
  /** EMA momentum of the softmax-centering centre (0.9). */
  centerMomentum?: number;
  /** Ranks sharing the Sinkhorn-Knopp normalisation and the centre statistics (default: this process alone). */
  group?: ProcessGroup;
}

/**
 * The official `iBOTPatchLoss` module: losses, Sinkhorn-Knopp targets over the masked patches of all ranks, and the
 * softmax-centering alternative with its EMA centre (buffer `center` [1, 1, K], starting at 0; the batch mean is over
 * patches, then over images, all-reduced).
 */
export class IBOTPatchLoss extends Module {
  readonly center: Tensor;
  readonly studentTemp: number;
  readonly centerMomentum: number;
  readonly group: ProcessGroup;
  readonly #pending = new PendingCenterUpdate(); // Σ_images mean_patches over all ranks, [K]

  constructor(
    readonly patchOutDim: number,
    o: IBOTPatchLossOptions = {},
  ) {
    super();
    expectPositiveInt('IBOTPatchLoss', 'patchOutDim', patchOutDim);
    this.studentTemp = expectPositive('IBOTPatchLoss', 'studentTemp', o.studentTemp ?? 0.1);
    this.centerMomentum = o.centerMomentum ?? 0.9;
    this.group = o.group ?? LOCAL_PROCESS_GROUP;
    this.center = this.registerBuffer('center', zeros([1, 1, patchOutDim]));
  }

  /** See `ibotPatchLoss`. */
  forward(studentPatchTokens: Tensor, teacherPatchTokens: Tensor, studentMasksFlat: Tensor): Tensor {
    return ibotPatchLoss(studentPatchTokens, teacherPatchTokens, studentMasksFlat, this.studentTemp);
  }

  /** See `ibotPatchLossMasked`. */
  forwardMasked(studentLogitsMasked: Tensor, teacherProbsMasked: Tensor, studentMasksFlat: Tensor, o: Omit<IbotMaskedLossOptions, 'studentTemp'> = {}): Tensor {
    return ibotPatchLossMasked(studentLogitsMasked, teacherProbsMasked, studentMasksFlat, { ...o, studentTemp: this.studentTemp });
  }

  /** Sinkhorn-Knopp targets [M, K] of this rank's masked patches; B_tot = Σ_ranks nMaskedPatches. */
  sinkhornKnoppTeacher(teacherOutput: Tensor, teacherTemp: number, nMaskedPatches: number | Tensor, nIterations = 3): Tensor {
    return scope(() => {
      const total = totalMaskedPatches(nMaskedPatches, this.group);
      return sinkhornKnopp(teacherOutput, teacherTemp, { nIterations, group: this.group, totalSamples: total });
    });
  }

  /** softmax((Z − center)/τ) over the last dim of `teacherPatchTokens` [..., K] (same shape out). */
  softmaxCenterTeacher(teacherPatchTokens: Tensor, teacherTemp: number, updateCenters = true): Tensor {
    const n = teacherPatchTokens instanceof Tensor ? Math.max(teacherPatchTokens.ndim - 1, 0) : 1;
    const dims = [...Array<string>(n).fill('...'), this.patchOutDim];
    expectFloat('IBOTPatchLoss.softmaxCenterTeacher', 'teacherPatchTokens', teacherPatchTokens, dims);
    if (updateCenters) this.applyCenterUpdate();
    return scope(() => softmaxCenterTeacher(teacherPatchTokens, this.center.view([this.patchOutDim]), teacherTemp));
  }

  /** Records the batch statistics of `teacherPatchTokens` [images, patches, K] (or [patches, K]: one image). */
  updateCenter(teacherPatchTokens: Tensor): void {
    const op = 'IBOTPatchLoss.updateCenter';
    const t3 = teacherPatchTokens.ndim === 2 ? ['patches', this.patchOutDim] : ['images', 'patches', this.patchOutDim];
    expectFloat(op, 'teacherPatchTokens', teacherPatchTokens, t3);
    const images = teacherPatchTokens.ndim === 2 ? 1 : teacherPatchTokens.shape[0]!;
    this.#pending.record(images * this.group.worldSize, () => {
      const perImage = mean(teacherPatchTokens.float().reshape([images, -1, this.patchOutDim]), 1); // [images, K]
      return this.group.allReduceSum_(sum(perImage, 0));
    });
  }

  /** center ← m·center + (1 − m)·batch mean, if a batch was recorded since the last update. */
  applyCenterUpdate(): void {
    this.#pending.applyTo(this.center, this.centerMomentum);
  }

  override dispose(): void {
    this.#pending.dispose();
    super.dispose();
  }
}
