// The EMA centre of the softmax-centering teacher targets (dinov3/loss/dino_clstoken_loss.py::DINOLoss.update_center, ::apply_center_update), shared by `DINOLoss` and `IBOTPatchLoss`: as
// in the official code, `updateCenter` only records the batch statistics and the next centering applies them.
import { noGrad } from '../tensor/grad_mode.js';
import { keep, scope } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';

/** The batch statistics recorded for the next centre update (owns its tensor). */
export class PendingCenterUpdate {
  #sum: Tensor | null = null; // Σ over the pending batch (all ranks)
  #count = 0;

  /** Replaces the pending statistics by `computeSum()` (run without grad in a scope), the sum over `count` rows. */
  record(count: number, computeSum: () => Tensor): void {
    this.#sum?.dispose();
    this.#sum = keep(noGrad(() => scope(computeSum)));
    this.#count = count;
  }

  /** center ← m·center + (1 − m)·sum/count, if a batch was recorded since the last update. */
  applyTo(center: Tensor, momentum: number): void {
    const s = this.#sum;
    if (!s) return;
    this.#sum = null;
    noGrad(() => scope(() => center.mul_(momentum).add_(s.div(this.#count), 1 - momentum)));
    s.dispose();
  }

  dispose(): void {
    this.#sum?.dispose();
    this.#sum = null;
  }
}
