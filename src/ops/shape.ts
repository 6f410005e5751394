// Views and layout ops (mirrors native/src/ops/shape.cc).
import { native } from '../native/binding.js';
import { TorchTypeError } from '../native/errors.js';
import { describe, handleOf as h, type Tensor, wrap } from '../tensor/tensor.js';
import { installMethods } from './install.js';

const hs = (ts: Tensor[], op: string) => {
  if (!Array.isArray(ts)) throw new TorchTypeError(`${op}: expected "tensors" to be an array of Tensors, received ${describe(ts)}`, 'ERR_INVALID_ARG');
  return ts.map((t, i) => h(t, op, `tensors[${i}]`));
};

export const reshape = (a: Tensor, shape: number[]) => wrap(native.reshape(h(a, 'reshape', 'input'), shape));
export const view = (a: Tensor, shape: number[]) => wrap(native.view(h(a, 'view', 'input'), shape));
export const permute = (a: Tensor, dims: number[]) => wrap(native.permute(h(a, 'permute', 'input'), dims));
export const transpose = (a: Tensor, d0: number, d1: number) => wrap(native.transpose(h(a, 'transpose', 'input'), d0, d1));
export const flatten = (a: Tensor, start = 0, end = -1) => wrap(native.flatten(h(a, 'flatten', 'input'), start, end));
export const unflatten = (a: Tensor, dim: number, sizes: number[]) => wrap(native.unflatten(h(a, 'unflatten', 'input'), dim, sizes));
export const squeeze = (a: Tensor, dim?: number) => wrap(native.squeeze(h(a, 'squeeze', 'input'), dim));
export const unsqueeze = (a: Tensor, dim: number) => wrap(native.unsqueeze(h(a, 'unsqueeze', 'input'), dim));
/** A view of `length` elements of `dim` from `start`. */
export const narrow = (a: Tensor, dim: number, start: number, length: number) => wrap(native.narrow(h(a, 'narrow', 'input'), dim, start, length));
/** Python-style slice `[start:end:step]` along `dim`. */
export const slice = (a: Tensor, dim: number, start?: number | null, end?: number | null, step = 1) =>
  wrap(native.slice(h(a, 'slice', 'input'), dim, start, end, step));
export const select = (a: Tensor, dim: number, index: number) => wrap(native.select(h(a, 'select', 'input'), dim, index));
export const expand = (a: Tensor, shape: number[]) => wrap(native.expand(h(a, 'expand', 'input'), shape));
export const repeat = (a: Tensor, repeats: number[]) => wrap(native.repeat(h(a, 'repeat', 'input'), repeats));
export const roll = (a: Tensor, shifts: number | number[], dims: number | number[]) =>
  wrap(native.roll(h(a, 'roll', 'input'), typeof shifts === 'number' ? [shifts] : shifts, typeof dims === 'number' ? [dims] : dims));
export const movedim = (a: Tensor, source: number | number[], destination: number | number[]) =>
  wrap(native.movedim(h(a, 'movedim', 'input'), typeof source === 'number' ? [source] : source, typeof destination === 'number' ? [destination] : destination));
export const cat = (ts: Tensor[], dim = 0) => wrap(native.cat(hs(ts, 'cat'), dim));
export const stack = (ts: Tensor[], dim = 0) => wrap(native.stack(hs(ts, 'stack'), dim));
export const split = (a: Tensor, sizeOrSizes: number | number[], dim = 0) => native.split(h(a, 'split', 'input'), sizeOrSizes, dim).map(wrap);
export const chunk = (a: Tensor, chunks: number, dim = 0) => native.chunk(h(a, 'chunk', 'input'), chunks, dim).map(wrap);
export const unbind = (a: Tensor, dim = 0) => native.unbind(h(a, 'unbind', 'input'), dim).map(wrap);
/** Reverses the order of elements along `dims` (a copy). */
export const flip = (a: Tensor, dims: number | number[]) => wrap(native.flip(h(a, 'flip', 'input'), typeof dims === 'number' ? [dims] : dims));
/** Transpose of a matrix; 0-D and 1-D tensors are returned as they are (torch.t). */
export const t = (a: Tensor) => wrap(native.t(h(a, 't', 'input')));
/** Lower triangle of the last two dims (elements above the `diagonal`-th diagonal set to 0). */
export const tril = (a: Tensor, diagonal = 0) => wrap(native.tril(h(a, 'tril', 'input'), diagonal));
/** Upper triangle of the last two dims (elements below the `diagonal`-th diagonal set to 0). */
export const triu = (a: Tensor, diagonal = 0) => wrap(native.triu(h(a, 'triu', 'input'), diagonal));
/** 1-D → square matrix with `a` on the `diagonal`-th diagonal; 2-D → that diagonal as a 1-D copy. */
export const diag = (a: Tensor, diagonal = 0) => wrap(native.diag(h(a, 'diag', 'input'), diagonal));
/** A view of the diagonal of the (dim1, dim2) planes, appended as the last dim. */
export const diagonal = (a: Tensor, offset = 0, dim1 = 0, dim2 = 1) => wrap(native.diagonal(h(a, 'diagonal', 'input'), offset, dim1, dim2));

const methods = {
  reshape,
  view,
  permute,
  transpose,
  flatten,
  unflatten,
  squeeze,
  unsqueeze,
  narrow,
  slice,
  select,
  expand,
  repeat,
  roll,
  movedim,
  split,
  chunk,
  unbind,
  flip,
  t,
  tril,
  triu,
  diag,
  diagonal,
};
installMethods(methods);
type Methods = typeof methods;
type AsMethod<F> = F extends (self: Tensor, ...args: infer A) => infer R ? (...args: A) => R : never;
export type ShapeMethods = { [K in keyof Methods]: AsMethod<Methods[K]> };
declare module '../tensor/tensor.js' {
  interface Tensor extends ShapeMethods {}
}
