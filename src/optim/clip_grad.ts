// Gradient clipping by total L2 norm (torch.nn.utils.clip_grad_norm_, as dinov3/train/train.py::do_train calls it). DINOv3 clips each student
// submodule (backbone, dino_head, ibot_head) separately: call this once per submodule.
import { native } from '../native/binding.js';
import { TorchRangeError, TorchTypeError } from '../native/errors.js';
import { describe, handleOf, type Tensor, wrap } from '../tensor/tensor.js';

/**
 * Scales the gradients of `params` in place so that their total L2 norm is at most `maxNorm`: every gradient is
 * multiplied by min(1, maxNorm / (norm + 1e-6)). Parameters without a gradient are ignored. Returns the total norm
 * before clipping as a float32 0-d tensor on the parameters' device (0 when no parameter has a gradient), so a
 * training step reads every norm in one host synchronisation; the caller owns it.
 * @example
 * const norms = scope(() => stack([student.backbone, student.dinoHead].map((m) => clipGradNorm(m.parameters(), 3.0))));
 * @throws TorchRangeError if maxNorm is NaN or negative.
 */
export function clipGradNorm(params: readonly Tensor[], maxNorm: number): Tensor {
  const op = 'clipGradNorm';
  if (!Array.isArray(params)) throw new TorchTypeError(`${op}: expected "params" to be an array of Tensors, received ${describe(params)}`, 'ERR_INVALID_ARG');
  if (typeof maxNorm !== 'number') throw new TorchTypeError(`${op}: expected "maxNorm" to be a number, received ${describe(maxNorm)}`, 'ERR_INVALID_ARG');
  if (!(maxNorm >= 0)) throw new TorchRangeError(`${op}: "maxNorm" must be a number >= 0, received ${maxNorm}`, 'ERR_INVALID_ARG');
  return wrap(
    native.clipGradNorm(
      params.map((p, i) => handleOf(p, op, `params[${i}]`)),
      maxNorm,
    ),
  );
}
