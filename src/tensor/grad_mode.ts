// Grad-mode scopes: run code with autograd recording off (noGrad) or on (enableGrad).
import { native } from '../native/binding.js';
import type { Tensor } from './tensor.js';
import { describe, handleOf } from './tensor.js';
import { TorchTypeError } from '../native/errors.js';

function withGradMode<R>(on: boolean, fn: () => R): R {
  if (typeof fn !== 'function')
    throw new TorchTypeError(`${on ? 'enableGrad' : 'noGrad'}: expected "fn" to be a function, received ${typeof fn}`, 'ERR_INVALID_ARG');
  const prev = native.setGradEnabled(on);
  try {
    const r = fn();
    if (r instanceof Promise)
      throw new TorchTypeError('noGrad/enableGrad: the function returned a Promise; grad mode scopes are synchronous', 'ERR_INVALID_ARG');
    return r;
  } finally {
    native.setGradEnabled(prev);
  }
}

/** Runs `fn` without recording autograd history. */
export const noGrad = <R>(fn: () => R): R => withGradMode(false, fn);
/** Runs `fn` with autograd recording on (inside a noGrad). */
export const enableGrad = <R>(fn: () => R): R => withGradMode(true, fn);
export const isGradEnabled = (): boolean => native.isGradEnabled();

/**
 * torch.autograd.backward over several roots in one pass: each of `tensors` with its gradient (same shape), the
 * gradients reaching the leaves summed into their `.grad`, as one backward of Σ ⟨tensors[i], gradients[i]⟩.
 * @example backwardAll([out1, out2], [gradOut1, gradOut2]);
 * @throws TorchTypeError for arguments that are not arrays of Tensors; TorchRangeError for lists of different lengths,
 *   a gradient whose shape differs from its tensor's, or a tensor that does not require grad.
 */
export function backwardAll(tensors: readonly Tensor[], gradients: readonly Tensor[]): void {
  const op = 'backwardAll';
  for (const [name, v] of [
    ['tensors', tensors],
    ['gradients', gradients],
  ] as const)
    if (!Array.isArray(v)) throw new TorchTypeError(`${op}: expected "${name}" to be an array of Tensors, received ${describe(v)}`, 'ERR_INVALID_ARG');
  native.backwardAll(
    tensors.map((t, i) => handleOf(t, op, `tensors[${i}]`)),
    gradients.map((t, i) => handleOf(t, op, `gradients[${i}]`)),
  );
}

/** Drops the gradients of `tensors` (sets them to none, as PyTorch's zero_grad). */
export function zeroGrad(tensors: Tensor[]): void {
  if (!Array.isArray(tensors))
    throw new TorchTypeError(`zeroGrad: expected "tensors" to be an array of Tensors, received ${describe(tensors)}`, 'ERR_INVALID_ARG');
  native.zeroGrad(tensors.map((t, i) => handleOf(t, 'zeroGrad', `tensors[${i}]`)));
}

/**
 * Runs `fn` with autocast: on `device`, matmul-like ops (linear, matmul, conv, sdpa) compute in `dtype` (bf16 by
 * default) while parameters, their gradients and reductions stay float32 (the mixed precision of dinov3/configs/ssl_default_config.yaml `compute_precision`).
 * @example const logits = autocast(() => model.forward(x), { device: 'cuda' });
 */
export function autocast<R>(fn: () => R, o: { device?: 'cpu' | 'cuda'; dtype?: 'bfloat16' | 'float16' } = {}): R {
  if (typeof fn !== 'function') throw new TorchTypeError(`autocast: expected "fn" to be a function, received ${typeof fn}`, 'ERR_INVALID_ARG');
  if (o === null || typeof o !== 'object') throw new TorchTypeError('autocast: expected the options to be an object', 'ERR_INVALID_ARG');
  const prev = native.autocastEnter(o.device ?? 'cpu', o.dtype ?? 'bfloat16');
  try {
    const r = fn();
    if (r instanceof Promise) throw new TorchTypeError('autocast: the function returned a Promise; autocast regions are synchronous', 'ERR_INVALID_ARG');
    return r;
  } finally {
    native.autocastExit(prev);
  }
}
