// DINO CLS-token loss (official: dinov3/loss/dino_clstoken_loss.py::DINOLoss), with its teacher targets
// (Sinkhorn-Knopp, or the unreachable softmax-centering alternative and its EMA centre).
import { LOCAL_PROCESS_GROUP, type ProcessGroup } from '../distributed/process_group.js';
import { Module } from '../nn/module.js';
import { arange, zeros } from '../tensor/creation.js';
import { scope } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { mm } from '../ops/linalg.js';
import { logSoftmax } from '../ops/nn.js';
import { ne, where } from '../ops/pointwise.js';
import { sum } from '../ops/reduce.js';
import { PendingCenterUpdate } from './centering.js';
import { expectFloat, expectPositive, expectPositiveInt } from './checks.js';
import { sinkhornKnopp, softmaxCenterTeacher } from './sinkhorn.js';

export interface DinoClsTokenLossOptions {
  /** Skip the pairs (i, i) of student crop i and teacher crop i (the same view). Default false. */
  ignoreDiagonal?: boolean;
  /** Student temperature τ_s (0.1 in every config). */
  studentTemp?: number;
}

/**
 * Cross-entropy between the teacher targets and the student's softmax for every (student crop, teacher crop) pair of
 * the same image, averaged over pairs and images (DINOLoss.forward), in float32 whatever the input dtype:
 *
 *     ℓ(s, t) = −Σ_b Σ_k T[t, b, k] · log_softmax(S[s, b, :] / τ_s)_k
 *     loss = Σ_{s,t} ℓ(s, t) / (B·S·T)                       (all pairs)
 *          = Σ_{s≠t} ℓ(s, t) / (B·S·T − B·min(S, T))          (ignoreDiagonal)
 *
 * @param studentLogits [S, B, K] student crops (e.g. the 2 global or the 8 local crops).
 * @param teacherProbs [T, B, K] teacher targets (rows sum to 1), e.g. `sinkhornKnopp(z, τ).view([2, B, K])`.
 * @example
 * const lGlobal = dinoClsTokenLoss(sGlobal, targets, { ignoreDiagonal: true });
 * @throws TorchTypeError / TorchRangeError (ERR_INVALID_ARG) naming the argument and both shapes.
 */
export function dinoClsTokenLoss(studentLogits: Tensor, teacherProbs: Tensor, o: DinoClsTokenLossOptions = {}): Tensor {
  const op = 'dinoClsTokenLoss';
  expectFloat(op, 'studentLogits', studentLogits, ['crops', 'batch', 'prototypes']);
  const [S, B, K] = studentLogits.shape as [number, number, number];
  expectFloat(op, 'teacherProbs', teacherProbs, ['crops', B, K], `batch and prototypes of "studentLogits" [${S}, ${B}, ${K}]`);
  const T = teacherProbs.shape[0]!;
  const studentTemp = expectPositive(op, 'studentTemp', o.studentTemp ?? 0.1);
  return scope(op, () => {
    const lsm = logSoftmax(studentLogits.float().div(studentTemp), -1); // [S, B, K]
    const t = teacherProbs.float();
    // Σ_b Σ_k for every pair at once: [S, B·K] @ [B·K, T] → [S, T]
    const pairs = mm(lsm.reshape([S, B * K]), t.reshape([T, B * K]).t());
    if (!o.ignoreDiagonal)
      return sum(pairs)
        .neg()
        .div(B * S * T);
    const dev = { device: pairs.device };
    const offDiag = ne(arange(0, S, 1, dev).unsqueeze(1), arange(0, T, 1, dev).unsqueeze(0)); // [S, T], false where s = t
    return sum(where(offDiag, pairs, 0))
      .neg()
      .div(B * S * T - B * Math.min(S, T));
  });
}

export interface DINOLossOptions {
  /** Student temperature τ_s (0.1). */
  studentTemp?: number;
  /** EMA momentum of the softmax-centering centre (0.9). */
  centerMomentum?: number;
  /** Ranks sharing the Sinkhorn-Knopp normalisation and the centre statistics (default: this process alone). */
  group?: ProcessGroup;
}

/**
 * The official `DINOLoss` module: the loss, Sinkhorn-Knopp targets and the softmax-centering alternative with its
 * EMA centre (buffer `center` [1, K], starting at 0). As in the official code, `updateCenter` only records the batch
 * statistics; the EMA step is applied by the next `softmaxCenterTeacher` (or `applyCenterUpdate`).
 * @example
 * const loss = new DINOLoss(K);
 * const targets = loss.sinkhornKnoppTeacher(teacherLogits, 0.07).view([2, B, K]);
 * const l = loss.forward(studentGlobal, targets, true);
 */
export class DINOLoss extends Module {
  readonly center: Tensor;
  readonly studentTemp: number;
  readonly centerMomentum: number;
  readonly group: ProcessGroup;
  readonly #pending = new PendingCenterUpdate(); // Σ over the pending batch (all ranks), [1, K]

  constructor(
    readonly outDim: number,
    o: DINOLossOptions = {},
  ) {
    super();
    expectPositiveInt('DINOLoss', 'outDim', outDim);
    this.studentTemp = expectPositive('DINOLoss', 'studentTemp', o.studentTemp ?? 0.1);
    this.centerMomentum = o.centerMomentum ?? 0.9;
    this.group = o.group ?? LOCAL_PROCESS_GROUP;
    this.center = this.registerBuffer('center', zeros([1, outDim]));
  }

  /** See `dinoClsTokenLoss`. */
  forward(studentLogits: Tensor, teacherProbs: Tensor, ignoreDiagonal = false): Tensor {
    return dinoClsTokenLoss(studentLogits, teacherProbs, { ignoreDiagonal, studentTemp: this.studentTemp });
  }

  /** Sinkhorn-Knopp targets [n, K] over the n rows of every rank (B_tot = n · worldSize). */
  sinkhornKnoppTeacher(teacherOutput: Tensor, teacherTemp: number, nIterations = 3): Tensor {
    return sinkhornKnopp(teacherOutput, teacherTemp, { nIterations, group: this.group });
  }

  /** softmax((Z − center)/τ), after applying any pending centre update (when `updateCenters`). */
  softmaxCenterTeacher(teacherOutput: Tensor, teacherTemp: number, updateCenters = true): Tensor {
    expectFloat('DINOLoss.softmaxCenterTeacher', 'teacherOutput', teacherOutput, ['samples', this.outDim]);
    if (updateCenters) this.applyCenterUpdate();
    return softmaxCenterTeacher(teacherOutput, this.center, teacherTemp);
  }

  /** Records Σ_rows of `teacherOutput` [n, K] over all ranks for the next centre update. */
  updateCenter(teacherOutput: Tensor): void {
    expectFloat('DINOLoss.updateCenter', 'teacherOutput', teacherOutput, ['samples', this.outDim]);
    this.#pending.record(teacherOutput.shape[0]! * this.group.worldSize, () => this.group.allReduceSum_(sum(teacherOutput.float(), 0, true)));
  }

  /** center ← m·center + (1 − m)·mean_batch, if a batch was recorded since the last update. */
  applyCenterUpdate(): void {
    this.#pending.applyTo(this.center, this.centerMomentum);
  }

  override dispose(): void {
    this.#pending.dispose();
    super.dispose();
  }
}
