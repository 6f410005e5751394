import { describe, expect, test } from 'vitest';

import * as T from '../../../src/index.js';
import { DisposedError, TorchRangeError, TorchTypeError } from '../../../src/index.js';
import { errorOf, noLeak, values } from './util.js';

const f = (v: number[] | number[][]) => T.tensor(v);
const i64 = (v: number[] | number[][]) => T.tensor(v, { dtype: 'int64' });
const i32 = (v: number[] | number[][]) => T.tensor(v, { dtype: 'int32' });
// [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
const m = () => T.arange(9, undefined, 1, { dtype: 'float32' }).reshape([3, 3]);

describe('selection', () => {
  test('indexSelect with int64 or int32 indices, repeats allowed', () =>
    noLeak(() => {
      expect(values(T.indexSelect(m(), 0, i64([2, 0, 2])))).toEqual([6, 7, 8, 0, 1, 2, 6, 7, 8]);
      expect(values(T.indexSelect(m(), 1, i32([1])))).toEqual([1, 4, 7]);
      expect(m().indexSelect(-1, i64([0, 2])).shape).toEqual([3, 2]);
    }));

  test('gather picks along a dim', () =>
    noLeak(() => {
      expect(values(T.gather(m(), 1, i64([[2], [0], [1]])))).toEqual([2, 3, 7]);
      expect(values(T.gather(m(), 0, i64([[2, 1, 0]])))).toEqual([6, 4, 2]);
    }));

  test('advanced indexing with int64, int32, boolean masks and nulls', () =>
    noLeak(() => {
      expect(values(T.index(m(), [i64([2, 0])]))).toEqual([6, 7, 8, 0, 1, 2]);
      expect(values(T.index(m(), [i32([1])]))).toEqual([3, 4, 5]);
      expect(values(T.index(m(), [i64([0, 2]), i64([1, 0])]))).toEqual([1, 6]);
      expect(values(T.index(m(), [null, i64([2])]))).toEqual([2, 5, 8]);
      expect(values(T.index(m(), [T.tensor([true, false, true])]))).toEqual([0, 1, 2, 6, 7, 8]);
      expect(values(T.index(m(), [T.gt(m(), 6)]))).toEqual([7, 8]);
    }));

  test('maskedSelect, nonzero, oneHot', () =>
    noLeak(() => {
      expect(values(T.maskedSelect(m(), T.lt(m(), 2)))).toEqual([0, 1]);
      expect(values(T.nonzero(f([0, 3, 0, 4])))).toEqual([1, 3]);
      expect(
        T.nonzero(
          f([
            [0, 1],
            [1, 0],
          ]),
        ).shape,
      ).toEqual([2, 2]);
      const o = T.oneHot(i64([0, 2]), 3);
      expect(o.dtype).toBe('int64');
      expect(values(o)).toEqual([1, 0, 0, 0, 0, 1]);
      expect(T.oneHot(i64([0, 4])).shape).toEqual([2, 5]);
    }));
});

describe('writes', () => {
  test('scatter with a tensor or a value, scatterAdd accumulates repeats', () =>
    noLeak(() => {
      const z = T.zeros([2, 3]);
      expect(values(T.scatter(z, 1, i64([[2], [0]]), f([[5], [6]])))).toEqual([0, 0, 5, 6, 0, 0]);
      expect(values(T.scatter(z, 1, i64([[1], [1]]), 7))).toEqual([0, 7, 0, 0, 7, 0]);
      expect(
        values(
          T.scatterAdd(
            z,
            1,
            i64([
              [1, 1],
              [0, 2],
            ]),
            f([
              [1, 2],
              [3, 4],
            ]),
          ),
        ),
      ).toEqual([0, 3, 0, 3, 0, 4]);
      expect(values(z)).toEqual([0, 0, 0, 0, 0, 0]); // out of place
    }));

  test('indexPut replaces or accumulates; indexPut_ writes in place and returns the input', () =>
    noLeak(() => {
      const z = T.zeros([3]);
      expect(values(T.indexPut(z, [i64([0, 2])], f([1, 2])))).toEqual([1, 0, 2]);
      expect(values(T.indexPut(z, [i64([1, 1])], f([1, 2]), true))).toEqual([0, 3, 0]);
      expect(values(z)).toEqual([0, 0, 0]);
      expect(T.indexPut_(z, [T.tensor([true, false, true])], f([4]))).toBe(z);
      expect(values(z)).toEqual([4, 0, 4]);
      expect(z.indexPut_([i64([0])], f([1]), true)).toBe(z);
      expect(values(z)).toEqual([5, 0, 4]);
    }));
});

describe('errors', () => {
  test('float indices are rejected with the argument named', () =>
    noLeak(() => {
      const e = errorOf(() => T.indexSelect(m(), 0, f([0])));
      expect(e).toBeInstanceOf(TorchTypeError);
      expect(e.code).toBe('ERR_INVALID_ARG');
      expect(e.message).toBe('indexSelect: expected "index" to be an int64 or int32 Tensor, received Tensor float32 [1]');
      expect(() => T.gather(m(), 1, i32([[0]]))).toThrow('gather: expected "index" to be an int64 Tensor, received Tensor int32 [1, 1]');
      expect(() => T.scatter(m(), 1, f([[0]]), 1)).toThrow('scatter: expected "index" to be an int64 Tensor, received Tensor float32 [1, 1]');
      expect(() => T.scatterAdd(m(), 1, f([[0]]), m())).toThrow('scatterAdd: expected "index" to be an int64 Tensor, received Tensor float32 [1, 1]');
      expect(() => T.index(m(), [null, f([0])])).toThrow('index: expected "indices[1]" to be an int64, int32 or bool Tensor, received Tensor float32 [1]');
      expect(() => T.oneHot(f([0]))).toThrow('oneHot: expected "input" to be an int64 Tensor, received Tensor float32 [1]');
    }));

  test('out-of-range dims and indices', () =>
    noLeak(() => {
      const e = errorOf(() => T.gather(m(), 2, i64([[0]])));
      expect(e).toBeInstanceOf(TorchRangeError);
      expect(e.message).toBe('gather: dim 2 is out of range for float32 [3, 3] (expected -2..1)');
      expect(() => T.indexSelect(m(), -3, i64([0]))).toThrow('indexSelect: dim -3 is out of range for float32 [3, 3] (expected -2..1)');
      const e2 = errorOf(() => T.indexSelect(m(), 0, i64([3])));
      expect(e2).toBeInstanceOf(TorchRangeError);
      expect(e2.code).toBe('ERR_TORCH_INDEX');
      expect(e2.message).toBe('indexSelect: index out of range in self');
      expect(() => T.index(m(), [i64([5])])).toThrow('index: index 5 is out of bounds for dimension 0 with size 3');
      expect(() => T.gather(m(), 1, i64([[3]]))).toThrow('gather: index 3 is out of bounds for dimension 1 with size 3');
    }));

  test('non-Tensor and disposed indices', () =>
    noLeak(() => {
      const e = errorOf(() => T.index(m(), [1 as unknown as T.Tensor]));
      expect(e).toBeInstanceOf(TorchTypeError);
      expect(e.message).toBe('index: expected "indices[0]" to be a Tensor, received number 1');
      expect(() => T.indexSelect(m(), 0, [0] as unknown as T.Tensor)).toThrow('indexSelect: expected "index" to be a Tensor, received array of length 1');
      const d = i64([0]);
      d.dispose();
      const e2 = errorOf(() => T.index(m(), [null, d]));
      expect(e2).toBeInstanceOf(DisposedError);
      expect(e2.message).toBe('index: "indices[1]" is a disposed Tensor (int64 [1], created by fromBuffer)');
      expect(() => T.gather(m(), 0, d)).toThrow('gather: "index" is a disposed Tensor (int64 [1], created by fromBuffer)');
      expect(() => T.indexPut_(m(), [d], f([1]))).toThrow('indexPut_: "indices[0]" is a disposed Tensor (int64 [1], created by fromBuffer)');
    }));
});
