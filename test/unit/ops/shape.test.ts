import { describe, expect, test } from 'vitest';

import * as T from '../../../src/index.js';
import { DisposedError, TorchError, TorchRangeError, TorchTypeError } from '../../../src/index.js';
import { errorOf, noLeak, values } from './util.js';

const f = (v: number[] | number[][]) => T.tensor(v);
// [[0, 1, 2], [3, 4, 5]]
const m = () => T.arange(6, undefined, 1, { dtype: 'float32' }).reshape([2, 3]);

describe('views', () => {
  test('reshape, view, flatten, unflatten, squeeze, unsqueeze', () =>
    noLeak(() => {
      const x = m();
      expect(T.reshape(x, [3, 2]).shape).toEqual([3, 2]);
      expect(T.reshape(x, [-1]).shape).toEqual([6]);
      expect(values(x.view([3, 2]))).toEqual([0, 1, 2, 3, 4, 5]);
      expect(T.flatten(T.zeros([2, 3, 4]), 1).shape).toEqual([2, 12]);
      expect(T.unflatten(x, 1, [3, 1]).shape).toEqual([2, 3, 1]);
      expect(T.squeeze(T.zeros([1, 2, 1])).shape).toEqual([2]);
      expect(T.squeeze(T.zeros([1, 2, 1]), -1).shape).toEqual([1, 2]);
      expect(T.unsqueeze(x, 2).shape).toEqual([2, 3, 1]);
      expect(T.unsqueeze(x, -1).shape).toEqual([2, 3, 1]);
    }));

  test('permute, transpose, t, movedim move data', () =>
    noLeak(() => {
      const x = m();
      expect(values(T.transpose(x, 0, 1).contiguous())).toEqual([0, 3, 1, 4, 2, 5]);
      expect(values(T.t(x).contiguous())).toEqual([0, 3, 1, 4, 2, 5]);
      expect(T.t(f([1, 2, 3])).shape).toEqual([3]);
      expect(T.permute(T.zeros([2, 3, 4]), [2, 0, 1]).shape).toEqual([4, 2, 3]);
      expect(T.movedim(T.zeros([2, 3, 4]), 0, -1).shape).toEqual([3, 4, 2]);
      expect(x.t().isContiguous).toBe(false);
    }));

  test('narrow, slice, select share storage with the input', () =>
    noLeak(() => {
      const x = m();
      expect(values(T.narrow(x, 1, 1, 2))).toEqual([1, 2, 4, 5]);
      expect(values(T.narrow(x, 1, -2, 2))).toEqual([1, 2, 4, 5]);
      expect(values(T.slice(x, 1, 0, null, 2))).toEqual([0, 2, 3, 5]);
      expect(values(T.slice(x, 1, -1))).toEqual([2, 5]);
      expect(values(T.select(x, 0, -1))).toEqual([3, 4, 5]);
      const row = x.select(0, 0);
      row.mul_(0).add_(9);
      expect(values(x)).toEqual([9, 9, 9, 3, 4, 5]);
    }));

  test('expand, repeat, roll, flip', () =>
    noLeak(() => {
      const c = f([[1], [2]]);
      expect(values(T.expand(c, [2, 3]))).toEqual([1, 1, 1, 2, 2, 2]);
      expect(T.expand(c, [4, -1, 2]).shape).toEqual([4, 2, 2]);
      expect(values(T.repeat(f([1, 2]), [2, 2]))).toEqual([1, 2, 1, 2, 1, 2, 1, 2]);
      expect(values(T.roll(m(), 1, 1))).toEqual([2, 0, 1, 5, 3, 4]);
      expect(values(T.roll(m(), [1, -1], [0, 1]))).toEqual([4, 5, 3, 1, 2, 0]);
      expect(values(T.flip(m(), 1))).toEqual([2, 1, 0, 5, 4, 3]);
      expect(values(T.flip(m(), [0, 1]))).toEqual([5, 4, 3, 2, 1, 0]);
    }));
});

describe('triangles and diagonals', () => {
  test('tril and triu with a diagonal offset', () =>
    noLeak(() => {
      const x = T.ones([3, 3]);
      expect(values(T.tril(x))).toEqual([1, 0, 0, 1, 1, 0, 1, 1, 1]);
      expect(values(T.tril(x, -1))).toEqual([0, 0, 0, 1, 0, 0, 1, 1, 0]);
      expect(values(T.triu(x))).toEqual([1, 1, 1, 0, 1, 1, 0, 0, 1]);
      expect(values(T.triu(x, 1))).toEqual([0, 1, 1, 0, 0, 1, 0, 0, 0]);
      // batched: the last two dims are the matrix
      expect(values(T.tril(T.ones([2, 2, 2])))).toEqual([1, 0, 1, 1, 1, 0, 1, 1]);
    }));

  test('diag builds a matrix from a vector and extracts a diagonal from a matrix', () =>
    noLeak(() => {
      expect(values(T.diag(f([1, 2])))).toEqual([1, 0, 0, 2]);
      expect(T.diag(f([1, 2]), 1).shape).toEqual([3, 3]);
      expect(values(T.diag(f([1, 2]), 1))).toEqual([0, 1, 0, 0, 0, 2, 0, 0, 0]);
      expect(values(T.diag(m()))).toEqual([0, 4]);
      expect(values(T.diag(m(), 1))).toEqual([1, 5]);
    }));

  test('diagonal is a view over any two dims', () =>
    noLeak(() => {
      const x = m();
      expect(values(T.diagonal(x))).toEqual([0, 4]);
      expect(values(T.diagonal(x, 1))).toEqual([1, 5]);
      expect(values(T.diagonal(x, -1))).toEqual([3]);
      const b = T.arange(8, undefined, 1, { dtype: 'float32' }).reshape([2, 2, 2]);
      expect(values(T.diagonal(b, 0, 1, 2))).toEqual([0, 3, 4, 7]);
      T.diagonal(x).mul_(0).sub_(1);
      expect(values(x)).toEqual([-1, 1, 2, 3, -1, 5]);
    }));
});

describe('lists', () => {
  test('cat and stack', () =>
    noLeak(() => {
      expect(values(T.cat([f([1, 2]), f([3])]))).toEqual([1, 2, 3]);
      expect(T.cat([m(), m()], 1).shape).toEqual([2, 6]);
      expect(T.cat([m(), m()], -1).shape).toEqual([2, 6]);
      expect(T.stack([f([1, 2]), f([3, 4])]).shape).toEqual([2, 2]);
      expect(values(T.stack([f([1, 2]), f([3, 4])], -1))).toEqual([1, 3, 2, 4]);
      expect(T.stack([m(), m()], 2).shape).toEqual([2, 3, 2]);
      // dtypes are promoted as in arithmetic
      expect(T.cat([f([1]), T.tensor([2], { dtype: 'float64' })]).dtype).toBe('float64');
    }));

  test('split, chunk, unbind', () =>
    noLeak(() => {
      const x = T.arange(5, undefined, 1, { dtype: 'float32' });
      expect(T.split(x, 2).map(values)).toEqual([[0, 1], [2, 3], [4]]);
      expect(T.split(x, [1, 4]).map(values)).toEqual([[0], [1, 2, 3, 4]]);
      expect(T.chunk(x, 2).map(values)).toEqual([
        [0, 1, 2],
        [3, 4],
      ]);
      expect(T.unbind(m(), 1).map(values)).toEqual([
        [0, 3],
        [1, 4],
        [2, 5],
      ]);
    }));
});

describe('errors', () => {
  test('out-of-range dims show the valid range', () =>
    noLeak(() => {
      const x = m();
      const e = errorOf(() => T.transpose(x, 0, 2));
      expect(e).toBeInstanceOf(TorchRangeError);
      expect(e.code).toBe('ERR_INVALID_ARG');
      expect(e.message).toBe('transpose: dim1 2 is out of range for float32 [2, 3] (expected -2..1)');
      expect(() => T.unsqueeze(x, 3)).toThrow('unsqueeze: dim 3 is out of range for float32 [2, 3] (expected -3..2)');
      expect(() => T.narrow(x, 2, 0, 1)).toThrow('narrow: dim 2 is out of range for float32 [2, 3] (expected -2..1)');
      expect(() => T.select(x, -3, 0)).toThrow('select: dim -3 is out of range for float32 [2, 3] (expected -2..1)');
      expect(() => T.flip(x, [0, 2])).toThrow('flip: dims 2 is out of range for float32 [2, 3] (expected -2..1)');
      expect(() => T.roll(x, 1, 2)).toThrow('roll: dims 2 is out of range for float32 [2, 3] (expected -2..1)');
      expect(() => T.cat([x, x], 2)).toThrow('cat: dim 2 is out of range for float32 [2, 3] (expected -2..1)');
      expect(() => T.stack([x, x], 3)).toThrow('stack: dim 3 is out of range for float32 [2, 3] (expected -3..2)');
      expect(() => T.diagonal(x, 0, 0, 2)).toThrow('diagonal: dim2 2 is out of range for float32 [2, 3] (expected -2..1)');
      expect(() => T.chunk(x, 2, 2)).toThrow('chunk: dim 2 is out of range for float32 [2, 3] (expected -2..1)');
    }));

  test('out-of-range positions and sizes', () =>
    noLeak(() => {
      const x = m();
      expect(() => T.narrow(x, 1, 2, 2)).toThrow('narrow: start 2 + length 2 exceeds size 3 of dim 1 (float32 [2, 3])');
      expect(() => T.select(x, 1, 3)).toThrow('select: index 3 is out of range for dim 1 of float32 [2, 3]');
      expect(() => T.slice(x, 1, 0, 2, 0)).toThrow('slice: step must be positive, received 0');
      expect(() => T.split(x, 0)).toThrow('split: splitSize must be positive, received 0');
      expect(() => T.chunk(x, 0)).toThrow('chunk: chunks must be positive, received 0');
      expect(() => T.roll(x, [1, 1], [0])).toThrow('roll: shifts and dims must have the same length, received 2 and 1');
      expect(() => T.permute(x, [0])).toThrow('permute: dims has 1 entries but the input is float32 [2, 3]');
      expect(() => T.diagonal(x, 0, 1, -1)).toThrow('diagonal: dim1 and dim2 must differ, received 1 and -1');
    }));

  test('wrong ranks', () =>
    noLeak(() => {
      expect(() => T.t(T.zeros([1, 2, 3]))).toThrow('t: expected a tensor with at most 2 dimensions, received float32 [1, 2, 3]');
      expect(() => T.tril(f([1, 2]))).toThrow('tril: expected a tensor with at least 2 dimensions, received float32 [2]');
      expect(() => T.triu(f([1, 2]))).toThrow('triu: expected a tensor with at least 2 dimensions, received float32 [2]');
      expect(() => T.diag(T.zeros([2, 2, 2]))).toThrow('diag: expected a 1-D or 2-D tensor, received float32 [2, 2, 2]');
    }));

  test('libtorch shape errors pass through with the op name', () =>
    noLeak(() => {
      const e = errorOf(() => T.reshape(m(), [4, 2]));
      expect(e).toBeInstanceOf(TorchError);
      expect(e.message).toBe("reshape: shape '[4, 2]' is invalid for input of size 6");
      expect(() => T.view(m().t(), [6])).toThrow(
        "view: view size is not compatible with input tensor's size and stride (at least one dimension spans across two contiguous subspaces). Use .reshape(...) instead.",
      );
      expect(() => T.cat([m(), f([1])])).toThrow('cat: Tensors must have same number of dimensions: got 2 and 1');
    }));

  test('non-Tensor and disposed arguments', () =>
    noLeak(() => {
      const e = errorOf(() => T.cat([m(), 3 as unknown as T.Tensor]));
      expect(e).toBeInstanceOf(TorchTypeError);
      expect(e.message).toBe('cat: expected "tensors[1]" to be a Tensor, received number 3');
      expect(() => T.stack(m() as unknown as T.Tensor[])).toThrow('stack: expected "tensors" to be an array of Tensors, received float32 Tensor [2, 3]');
      expect(() => T.cat([])).toThrow('cat: expected a non-empty list of tensors');
      const d = m();
      d.dispose();
      const e2 = errorOf(() => T.stack([m(), d]));
      expect(e2).toBeInstanceOf(DisposedError);
      expect(e2.message).toBe('stack: "tensors[1]" is a disposed Tensor (float32 [2, 3], created by reshape)');
      expect(() => T.reshape(d, [6])).toThrow('reshape: "input" is a disposed Tensor (float32 [2, 3], created by reshape)');
      expect(() => T.reshape(m(), 'x' as unknown as number[])).toThrow('reshape: expected "shape" to be an array of integers, received string "x"');
    }));
});
