// Reductions (mirrors native/src/ops/reduce.cc).
import { native } from '../native/binding.js';
import { type DType, handleOf as h, type Tensor, wrap } from '../tensor/tensor.js';
import { installMethods } from './install.js';

type Dims = number | number[];

/** Sum over all elements, or over `dim` (keepdim false by default). */
export const sum = (a: Tensor, dim?: Dims | null, keepdim = false, dtype?: DType) => wrap(native.sum(h(a, 'sum', 'input'), dim ?? null, keepdim, dtype));
export const mean = (a: Tensor, dim?: Dims | null, keepdim = false, dtype?: DType) => wrap(native.mean(h(a, 'mean', 'input'), dim ?? null, keepdim, dtype));
export const prod = (a: Tensor, dim?: number, keepdim = false) => wrap(native.prod(h(a, 'prod', 'input'), dim, keepdim));
/** Maximum of all elements (0-d tensor). */
export const max = (a: Tensor) => wrap(native.max(h(a, 'max', 'input')));
export const min = (a: Tensor) => wrap(native.min(h(a, 'min', 'input')));
/** Maximum along `dim`: `{ values, indices }`. */
export function maxDim(a: Tensor, dim: number, keepdim = false): { values: Tensor; indices: Tensor } {
  const [v, i] = native.maxDim(h(a, 'maxDim', 'input'), dim, keepdim);
  return { values: wrap(v), indices: wrap(i) };
}
export function minDim(a: Tensor, dim: number, keepdim = false): { values: Tensor; indices: Tensor } {
  const [v, i] = native.minDim(h(a, 'minDim', 'input'), dim, keepdim);
  return { values: wrap(v), indices: wrap(i) };
}
export const amax = (a: Tensor, dim: Dims, keepdim = false) => wrap(native.amax(h(a, 'amax', 'input'), dim, keepdim));
export const amin = (a: Tensor, dim: Dims, keepdim = false) => wrap(native.amin(h(a, 'amin', 'input'), dim, keepdim));
export const argmax = (a: Tensor, dim?: number, keepdim = false) => wrap(native.argmax(h(a, 'argmax', 'input'), dim, keepdim));
export const argmin = (a: Tensor, dim?: number, keepdim = false) => wrap(native.argmin(h(a, 'argmin', 'input'), dim, keepdim));
/** The k largest (or smallest) elements along `dim`. */
export function topk(a: Tensor, k: number, dim = -1, largest = true, sorted = true): { values: Tensor; indices: Tensor } {
  const [v, i] = native.topk(h(a, 'topk', 'input'), k, dim, largest, sorted);
  return { values: wrap(v), indices: wrap(i) };
}
export function sort(a: Tensor, dim = -1, descending = false): { values: Tensor; indices: Tensor } {
  const [v, i] = native.sort(h(a, 'sort', 'input'), dim, descending);
  return { values: wrap(v), indices: wrap(i) };
}
/** Indices that sort `a` along `dim`. */
export const argsort = (a: Tensor, dim = -1, descending = false) => wrap(native.argsort(h(a, 'argsort', 'input'), dim, descending));
export const logsumexp = (a: Tensor, dim: Dims, keepdim = false) => wrap(native.logsumexp(h(a, 'logsumexp', 'input'), dim, keepdim));
/** p-norm over all elements or over `dim`. */
export const norm = (a: Tensor, p = 2, dim?: Dims | null, keepdim = false) => wrap(native.norm(h(a, 'norm', 'input'), p, dim ?? null, keepdim));
export const variance = (a: Tensor, dim?: Dims | null, correction = 1, keepdim = false) =>
  wrap(native.var(h(a, 'var', 'input'), dim ?? null, correction, keepdim));
export const std = (a: Tensor, dim?: Dims | null, correction = 1, keepdim = false) => wrap(native.std(h(a, 'std', 'input'), dim ?? null, correction, keepdim));
export const cumsum = (a: Tensor, dim: number, dtype?: DType) => wrap(native.cumsum(h(a, 'cumsum', 'input'), dim, dtype));
export const all = (a: Tensor) => wrap(native.all(h(a, 'all', 'input')));
export const any = (a: Tensor) => wrap(native.any(h(a, 'any', 'input')));

const methods = {
  sum,
  mean,
  prod,
  max,
  min,
  maxDim,
  minDim,
  amax,
  amin,
  argmax,
  argmin,
  topk,
  sort,
  argsort,
  logsumexp,
  norm,
  var: variance,
  variance,
  std,
  cumsum,
  all,
  any,
};
installMethods(methods);
type Methods = typeof methods;
type AsMethod<F> = F extends (self: Tensor, ...args: infer A) => infer R ? (...args: A) => R : never;
export type ReduceMethods = { [K in keyof Methods]: AsMethod<Methods[K]> };
declare module '../tensor/tensor.js' {
  interface Tensor extends ReduceMethods {}
}
