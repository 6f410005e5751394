// Matrix products (mirrors native/src/ops/linalg.cc).
import { native } from '../native/binding.js';
import { handleOf as h, type Tensor, wrap } from '../tensor/tensor.js';
import { installMethods } from './install.js';

export const matmul = (a: Tensor, b: Tensor) => wrap(native.matmul(h(a, 'matmul', 'input'), h(b, 'matmul', 'other')));
export const mm = (a: Tensor, b: Tensor) => wrap(native.mm(h(a, 'mm', 'input'), h(b, 'mm', 'mat2')));
export const bmm = (a: Tensor, b: Tensor) => wrap(native.bmm(h(a, 'bmm', 'input'), h(b, 'bmm', 'mat2')));
/** beta·input + alpha·(batch1 @ batch2) with batch1 [B, n, m], batch2 [B, m, p]. */
export const baddbmm = (input: Tensor, batch1: Tensor, batch2: Tensor, o: { beta?: number; alpha?: number } = {}) =>
  wrap(native.baddbmm(h(input, 'baddbmm', 'input'), h(batch1, 'baddbmm', 'batch1'), h(batch2, 'baddbmm', 'batch2'), o.beta ?? 1, o.alpha ?? 1));
/**
 * `act(x @ weightᵀ + bias)` with weight [out, in]; activation "none" (default) or "gelu" (exact erf form, nn.GELU).
 * Without autograd on float32 CPU tensors: one SGEMM into a bias-filled output, GELU in place (see kernels.ts).
 */
export const linear = (x: Tensor, weight: Tensor, bias?: Tensor | null, activation?: 'none' | 'gelu') =>
  wrap(native.linear(h(x, 'linear', 'input'), h(weight, 'linear', 'weight'), bias ? h(bias, 'linear', 'bias') : null, activation));
export const einsum = (equation: string, ...operands: Tensor[]) =>
  wrap(
    native.einsum(
      equation,
      operands.map((t, i) => h(t, 'einsum', `operands[${i}]`)),
    ),
  );
export const outer = (a: Tensor, b: Tensor) => wrap(native.outer(h(a, 'outer', 'input'), h(b, 'outer', 'vec2')));
export const cdist = (a: Tensor, b: Tensor, p = 2) => wrap(native.cdist(h(a, 'cdist', 'x1'), h(b, 'cdist', 'x2'), p));

const methods = { matmul, mm, bmm, baddbmm, linear, outer, cdist };
installMethods(methods);
type Methods = typeof methods;
type AsMethod<F> = F extends (self: Tensor, ...args: infer A) => infer R ? (...args: A) => R : never;
export type LinalgMethods = { [K in keyof Methods]: AsMethod<Methods[K]> };
declare module '../tensor/tensor.js' {
  interface Tensor extends LinalgMethods {}
}
