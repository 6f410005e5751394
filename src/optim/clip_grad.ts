// Gradient clipping by total L2 norm (RECIPE §4 step 7; torch.nn.utils.clip_grad_norm_). DINOv3 clips each student
// submodule (backbone, dino_head, ibot_head) separately: call this once per submodule.
import { native } from '../native/binding.js';
import { TorchRangeError, TorchTypeError } from '../native/errors.js';
import { describe, handleOf, type Tensor } from '../tensor/tensor.js';

/**
 * Scales the gradients of `params` in place so that their total L2 norm is at most `maxNorm`: every gradient is
 * multiplied by min(1, maxNorm / (norm + 1e-6)). Parameters without a gradient are ignored. Returns the total norm
 * before clipping (0 when no parameter has a gradient).
 * @example
 * for (const m of [student.backbone, student.dinoHead, student.ibotHead]) clipGradNorm(m.parameters(), 3.0);
 * @throws TorchRangeError if maxNorm is NaN or negative.
 */
export function clipGradNorm(params: readonly Tensor[], maxNorm: number): number {
  const op = 'clipGradNorm';
  if (!Array.isArray(params)) throw new TorchTypeError(`${op}: expected "params" to be an array of Tensors, received ${describe(params)}`, 'ERR_INVALID_ARG');
  if (typeof maxNorm !== 'number') throw new TorchTypeError(`${op}: expected "maxNorm" to be a number, received ${describe(maxNorm)}`, 'ERR_INVALID_ARG');
  if (!(maxNorm >= 0)) throw new TorchRangeError(`${op}: "maxNorm" must be a number >= 0, received ${maxNorm}`, 'ERR_INVALID_ARG');
  const h = native.clipGradNorm(params.map((p, i) => handleOf(p, op, `params[${i}]`)), maxNorm);
  try {
    return native.item(h) as number;
  } finally {
    native.dispose(h);
  }
}
