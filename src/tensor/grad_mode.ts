// Grad-mode scopes: run code with autograd recording off (noGrad) or on (enableGrad).
import { native } from '../native/binding.js';
import type { Tensor } from './tensor.js';
import { handleOf } from './tensor.js';

function withGradMode<R>(on: boolean, fn: () => R): R {
  const prev = native.setGradEnabled(on);
  try {
    const r = fn();
    if (r instanceof Promise) throw new TypeError('noGrad/enableGrad: the function returned a Promise; grad mode scopes are synchronous');
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

/** Drops the gradients of `tensors` (sets them to none, as PyTorch's zero_grad). */
export function zeroGrad(tensors: Tensor[]): void {
  native.zeroGrad(tensors.map((t, i) => handleOf(t, 'zeroGrad', `tensors[${i}]`)));
}
