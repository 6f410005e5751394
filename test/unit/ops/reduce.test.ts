import { describe, expect, test } from 'vitest';

import * as T from '../../../src/index.js';
import { DisposedError, TorchRangeError, TorchTypeError } from '../../../src/index.js';
import { errorOf, expectClose, noLeak, values } from './util.js';

const f = (v: number[] | number[][]) => T.tensor(v);
const i64 = (v: number[] | number[][]) => T.tensor(v, { dtype: 'int64' });
// [[1, 2, 3], [4, 5, 6]]
const m = () =>
  f([
    [1, 2, 3],
    [4, 5, 6],
  ]);

describe('sum, mean, prod', () => {
  test('over everything, one dim, several dims, with keepdim', () =>
    noLeak(() => {
      const x = m();
      expect(T.sum(x).shape).toEqual([]);
      expect(T.sum(x).item()).toBe(21);
      expect(values(T.sum(x, 0))).toEqual([5, 7, 9]);
      expect(values(T.sum(x, -1))).toEqual([6, 15]);
      expect(T.sum(x, 1, true).shape).toEqual([2, 1]);
      expect(T.sum(x, [0, 1]).item()).toBe(21);
      expect(x.mean().item()).toBe(3.5);
      expect(values(T.mean(x, 0))).toEqual([2.5, 3.5, 4.5]);
      expect(T.prod(x).item()).toBe(720);
      expect(values(T.prod(x, 1))).toEqual([6, 120]);
      expect(T.prod(x, 1, true).shape).toEqual([2, 1]);
    }));

  test('integer sums widen to int64; mean of integers needs a float dtype', () =>
    noLeak(() => {
      const x = T.tensor([1, 2, 3], { dtype: 'int32' });
      expect(T.sum(x).dtype).toBe('int64');
      expect(T.sum(x, null, false, 'float64').dtype).toBe('float64');
      expect(T.mean(x, null, false, 'float32').item()).toBe(2);
      expect(() => T.mean(x)).toThrow('mean: mean(): could not infer output dtype. Input dtype must be either a floating point or complex dtype. Got: Int');
    }));

  test('bool sums count the true values', () =>
    noLeak(() => {
      expect(T.sum(T.tensor([true, false, true])).item()).toBe(2);
    }));
});

describe('max, min, argmax, topk, sort', () => {
  test('max and min of everything', () =>
    noLeak(() => {
      expect(T.max(m()).item()).toBe(6);
      expect(T.min(m()).item()).toBe(1);
      expect(T.max(m()).shape).toEqual([]);
    }));

  test('maxDim and minDim return values and int64 indices', () =>
    noLeak(() => {
      const x = f([
        [1, 9, 3],
        [7, 5, 6],
      ]);
      const { values: v, indices: i } = T.maxDim(x, 1);
      expect(values(v)).toEqual([9, 7]);
      expect(values(i)).toEqual([1, 0]);
      expect(i.dtype).toBe('int64');
      const mn = x.minDim(0, true);
      expect(mn.values.shape).toEqual([1, 3]);
      expect(values(mn.values)).toEqual([1, 5, 3]);
      expect(values(mn.indices)).toEqual([0, 1, 0]);
    }));

  test('amax, amin, argmax, argmin', () =>
    noLeak(() => {
      const x = f([
        [1, 9, 3],
        [7, 5, 6],
      ]);
      expect(values(T.amax(x, 0))).toEqual([7, 9, 6]);
      expect(values(T.amin(x, [0, 1]))).toEqual([1]);
      expect(T.amax(x, 1, true).shape).toEqual([2, 1]);
      expect(T.argmax(x).item()).toBe(1);
      expect(values(T.argmax(x, 1))).toEqual([1, 0]);
      expect(values(T.argmin(x, 0))).toEqual([0, 1, 0]);
    }));

  test('topk (largest or smallest) and sort', () =>
    noLeak(() => {
      const x = f([
        [3, 1, 4, 1.5],
        [9, 2, 6, 5],
      ]);
      const t = T.topk(x, 2);
      expect(values(t.values)).toEqual([4, 3, 9, 6]);
      expect(values(t.indices)).toEqual([2, 0, 0, 2]);
      const s = T.topk(x, 1, 0, false);
      expect(values(s.values)).toEqual([3, 1, 4, 1.5]);
      const sorted = T.sort(x, 1);
      expect(values(sorted.values)).toEqual([1, 1.5, 3, 4, 2, 5, 6, 9]);
      expect(values(sorted.indices)).toEqual([1, 3, 0, 2, 1, 3, 2, 0]);
      expect(values(T.sort(x, 1, true).values)).toEqual([4, 3, 1.5, 1, 9, 6, 5, 2]);
    }));

  test('argsort gives the sorting permutation', () =>
    noLeak(() => {
      const x = f([
        [3, 1, 4, 1.5],
        [9, 2, 6, 5],
      ]);
      const a = T.argsort(x);
      expect(a.dtype).toBe('int64');
      expect(values(a)).toEqual([1, 3, 0, 2, 1, 3, 2, 0]);
      expect(values(x.argsort(0, true))).toEqual([1, 1, 1, 1, 0, 0, 0, 0]);
      expect(values(T.gather(x, 1, a))).toEqual(values(T.sort(x, 1).values));
    }));
});

describe('logsumexp, norm, var, std, cumsum, all, any', () => {
  test('logsumexp is stable for large inputs', () =>
    noLeak(() => {
      expectClose(
        T.logsumexp(
          f([
            [0, 0],
            [1000, 1000],
          ]),
          1,
        ),
        [Math.log(2), 1000 + Math.log(2)],
        1e-4,
      );
      expect(T.logsumexp(f([[0, 0]]), 1, true).shape).toEqual([1, 1]);
    }));

  test('p-norms', () =>
    noLeak(() => {
      const x = f([
        [3, -4],
        [0, 0],
      ]);
      expect(T.norm(x).item()).toBe(5);
      expect(values(T.norm(x, 2, 1))).toEqual([5, 0]);
      expect(values(T.norm(x, 1, 1))).toEqual([7, 0]);
      expect(T.norm(x, Infinity).item()).toBe(4);
      expect(T.norm(x, 2, [0, 1], true).shape).toEqual([1, 1]);
    }));

  test('var and std with the Bessel correction by default', () =>
    noLeak(() => {
      const x = f([[1, 2, 3, 4]]);
      expectClose(T.variance(x), [5 / 3]);
      expectClose(T.variance(x, 1, 0), [1.25]);
      expectClose(x.std(1, 1, true), [Math.sqrt(5 / 3)]);
      expect(x.std(1, 1, true).shape).toEqual([1, 1]);
    }));

  test('cumsum, all, any', () =>
    noLeak(() => {
      expect(values(T.cumsum(m(), 1))).toEqual([1, 3, 6, 4, 9, 15]);
      expect(values(T.cumsum(m(), 0))).toEqual([1, 2, 3, 5, 7, 9]);
      expect(T.cumsum(i64([1, 2]), 0, 'float64').dtype).toBe('float64');
      expect(T.all(T.tensor([true, true])).item()).toBe(true);
      expect(T.all(T.tensor([true, false])).item()).toBe(false);
      expect(T.any(f([0, 0, 2])).item()).toBe(true);
    }));
});

describe('errors', () => {
  test('an out-of-range dim is a TorchRangeError that shows the valid range', () =>
    noLeak(() => {
      const x = m();
      const e = errorOf(() => T.sum(x, 2));
      expect(e).toBeInstanceOf(TorchRangeError);
      expect(e.code).toBe('ERR_INVALID_ARG');
      expect(e.message).toBe('sum: dim 2 is out of range for float32 [2, 3] (expected -2..1)');
      expect(() => T.mean(x, [0, -3])).toThrow('mean: dim -3 is out of range for float32 [2, 3] (expected -2..1)');
      expect(() => T.maxDim(x, 5)).toThrow('maxDim: dim 5 is out of range for float32 [2, 3] (expected -2..1)');
      expect(() => T.amax(x, 3)).toThrow('amax: dim 3 is out of range for float32 [2, 3] (expected -2..1)');
      expect(() => T.logsumexp(x, 2)).toThrow('logsumexp: dim 2 is out of range for float32 [2, 3] (expected -2..1)');
      expect(() => T.norm(x, 2, 4)).toThrow('norm: dim 4 is out of range for float32 [2, 3] (expected -2..1)');
      expect(() => T.variance(x, 2)).toThrow('var: dim 2 is out of range for float32 [2, 3] (expected -2..1)');
      expect(() => T.argsort(x, 2)).toThrow('argsort: dim 2 is out of range for float32 [2, 3] (expected -2..1)');
      expect(() => T.cumsum(x, -3)).toThrow('cumsum: dim -3 is out of range for float32 [2, 3] (expected -2..1)');
    }));

  test('k out of range for topk', () =>
    noLeak(() => {
      expect(() => T.topk(m(), 4)).toThrow('topk: k must be in [0, 3] for dim -1 of float32 [2, 3], received 4');
    }));

  test('a fractional dim, a non-Tensor input, a disposed input', () =>
    noLeak(() => {
      expect(() => T.sum(m(), 0.5)).toThrow('sum: expected "dim" to be an integer, received number 0.5');
      expect(() => T.sum(m(), [0, 0.5])).toThrow('sum: expected "dim" to be an array of integers, received array of length 2');
      const e = errorOf(() => T.sum([1, 2] as unknown as T.Tensor));
      expect(e).toBeInstanceOf(TorchTypeError);
      expect(e.message).toBe('sum: expected "input" to be a Tensor, received array of length 2');
      const d = m();
      d.dispose();
      const e2 = errorOf(() => T.topk(d, 1));
      expect(e2).toBeInstanceOf(DisposedError);
      expect(e2.message).toBe('topk: "input" is a disposed Tensor (float32 [2, 3], created by fromBuffer)');
    }));
});
