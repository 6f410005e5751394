// Indexing ops (mirrors native/src/ops/index.cc).
import { native } from '../native/binding.js';
import { handleOf as h, type Tensor, wrap } from '../tensor/tensor.js';
import { installMethods } from './install.js';
import { TorchTypeError } from '../native/errors.js';

const idx = (ts: (Tensor | null)[], op: string) => {
  if (!Array.isArray(ts)) throw new TorchTypeError(`${op}: expected "indices" to be an array of Tensors or nulls`, 'ERR_INVALID_ARG');
  return ts.map((t, i) => (t === null ? null : h(t, op, `indices[${i}]`)));
};

export const indexSelect = (a: Tensor, dim: number, index: Tensor) =>
  wrap(native.indexSelect(h(a, 'indexSelect', 'input'), dim, h(index, 'indexSelect', 'index')));
export const gather = (a: Tensor, dim: number, index: Tensor) => wrap(native.gather(h(a, 'gather', 'input'), dim, h(index, 'gather', 'index')));
export const scatter = (a: Tensor, dim: number, index: Tensor, src: Tensor | number) =>
  wrap(native.scatter(h(a, 'scatter', 'input'), dim, h(index, 'scatter', 'index'), typeof src === 'number' ? src : h(src, 'scatter', 'src')));
export const scatterAdd = (a: Tensor, dim: number, index: Tensor, src: Tensor) =>
  wrap(native.scatterAdd(h(a, 'scatterAdd', 'input'), dim, h(index, 'scatterAdd', 'index'), h(src, 'scatterAdd', 'src')));
/** Advanced indexing `a[i0, i1, ...]` with index tensors (int64 or boolean masks); null keeps a whole dim. */
export const index = (a: Tensor, indices: (Tensor | null)[]) => wrap(native.index(h(a, 'index', 'input'), idx(indices, 'index')));
export function indexPut_(a: Tensor, indices: (Tensor | null)[], values: Tensor, accumulate = false): Tensor {
  native.indexPut_(h(a, 'indexPut_', 'input'), idx(indices, 'indexPut_'), h(values, 'indexPut_', 'values'), accumulate);
  return a;
}
export const indexPut = (a: Tensor, indices: (Tensor | null)[], values: Tensor, accumulate = false) =>
  wrap(native.indexPut(h(a, 'indexPut', 'input'), idx(indices, 'indexPut'), h(values, 'indexPut', 'values'), accumulate));
export const maskedSelect = (a: Tensor, mask: Tensor) => wrap(native.maskedSelect(h(a, 'maskedSelect', 'input'), h(mask, 'maskedSelect', 'mask')));
export const nonzero = (a: Tensor) => wrap(native.nonzero(h(a, 'nonzero', 'input')));
export const oneHot = (a: Tensor, numClasses = -1) => wrap(native.oneHot(h(a, 'oneHot', 'input'), numClasses));

const methods = { indexSelect, gather, scatter, scatterAdd, index, indexPut_, indexPut, maskedSelect, nonzero, oneHot };
installMethods(methods);
type Methods = typeof methods;
type AsMethod<F> = F extends (self: Tensor, ...args: infer A) => infer R ? (...args: A) => R : never;
export type IndexMethods = { [K in keyof Methods]: AsMethod<Methods[K]> };
declare module '../tensor/tensor.js' {
  interface Tensor extends IndexMethods {}
}
