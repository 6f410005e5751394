import { describe, expect, test } from 'vitest';

import * as T from '../../../src/index.js';
import { DisposedError, TorchError, TorchRangeError, TorchTypeError } from '../../../src/index.js';
import { errorOf, expectClose, noLeak, values } from './util.js';

const f = (v: number[] | number[][] | number[][][]) => T.tensor(v as number[][]);

describe('products', () => {
  test('matmul of matrices, matrix and vector, vectors, and broadcast batches', () =>
    noLeak(() => {
      const a = f([
        [1, 2],
        [3, 4],
      ]);
      const b = f([
        [5, 6],
        [7, 8],
      ]);
      expect(values(T.matmul(a, b))).toEqual([19, 22, 43, 50]);
      expect(values(a.matmul(f([1, 1])))).toEqual([3, 7]);
      const dot = T.matmul(f([1, 2]), f([3, 4]));
      expect(dot.shape).toEqual([]);
      expect(dot.item()).toBe(11);
      expect(T.matmul(T.ones([2, 1, 3, 4]), T.ones([5, 4, 2])).shape).toEqual([2, 5, 3, 2]);
      expect(values(T.matmul(T.tensor([[1, 2]], { dtype: 'int64' }), T.tensor([[3], [4]], { dtype: 'int64' })))).toEqual([11]);
    }));

  test('mm, bmm, baddbmm', () =>
    noLeak(() => {
      expect(values(T.mm(f([[1, 2]]), f([[3], [4]])))).toEqual([11]);
      const b1 = f([[[1, 2]], [[3, 4]]]); // [2, 1, 2]
      const b2 = f([
        [[1], [1]],
        [[2], [0]],
      ]); // [2, 2, 1]
      expect(values(T.bmm(b1, b2))).toEqual([3, 6]);
      const c = f([[[10]], [[20]]]);
      expect(values(T.baddbmm(c, b1, b2))).toEqual([13, 26]);
      expect(values(T.baddbmm(c, b1, b2, { beta: 0.5, alpha: 2 }))).toEqual([11, 22]);
      expect(values(c.baddbmm(b1, b2, { beta: 0 }))).toEqual([3, 6]);
    }));

  test('baddbmm with beta 0 ignores the input and never reads uninitialised memory', () =>
    noLeak(() => {
      const b1 = f([[[1, 2]], [[3, 4]]]);
      const b2 = f([
        [[1], [1]],
        [[2], [0]],
      ]);
      const c = f([[[NaN]], [[Infinity]]]);
      // Free NaN-filled buffers of the result's size first, so that the allocator hands them out again (libtorch
      // 1.13's kernel multiplied its fresh result buffer by 0: NaN in about 1 call in 200).
      const results = Array.from({ length: 400 }, () => {
        T.full([2, 1, 1], NaN).dispose();
        return values(c.baddbmm(b1, b2, { beta: 0, alpha: 2 }));
      });
      expect(results.filter((r) => r[0] !== 6 || r[1] !== 12)).toEqual([]);
      expect(() => T.baddbmm(f([1, 2, 3]), b1, b2, { beta: 0 })).toThrow(/^baddbmm: The expanded size of the tensor \(1\) must match/);
    }));

  test('linear with and without bias', () =>
    noLeak(() => {
      const x = f([[1, 2]]);
      const w = f([
        [1, 0],
        [0, 1],
        [1, 1],
      ]);
      expect(values(T.linear(x, w, f([0, 0, 1])))).toEqual([1, 2, 4]);
      expect(values(T.linear(x, w))).toEqual([1, 2, 3]);
      expect(T.linear(T.ones([2, 5, 2]), w).shape).toEqual([2, 5, 3]);
    }));

  test('einsum, outer', () =>
    noLeak(() => {
      const a = f([
        [1, 2],
        [3, 4],
      ]);
      expect(values(T.einsum('ij,jk->ik', a, a))).toEqual([7, 10, 15, 22]);
      expect(T.einsum('ii->', a).item()).toBe(5);
      expect(values(T.einsum('bi,bi->b', a, a))).toEqual([5, 25]);
      expect(values(T.einsum('ij->ji', a))).toEqual([1, 3, 2, 4]);
      expect(values(T.outer(f([1, 2]), f([3, 4, 5])))).toEqual([3, 4, 5, 6, 8, 10]);
    }));

  test('cdist with p = 2, p = 1, batched, and 16-bit floats', () =>
    noLeak(() => {
      const x = f([
        [0, 0],
        [1, 1],
      ]);
      const y = f([
        [3, 4],
        [1, 0],
      ]);
      expectClose(T.cdist(x, y), [5, 1, Math.sqrt(13), 1], 1e-5);
      expectClose(T.cdist(x, y, 1), [7, 1, 5, 1]);
      expect(T.cdist(T.ones([3, 2, 4]), T.ones([3, 5, 4])).shape).toEqual([3, 2, 5]);
      const h = T.cdist(x.to('bfloat16'), y.to('bfloat16'));
      expect(h.dtype).toBe('bfloat16');
      expectClose(h, [5, 1, 3.609375, 1], 1e-6); // √13 rounded to bfloat16
    }));
});

describe('errors', () => {
  test('shape mismatches', () =>
    noLeak(() => {
      const e = errorOf(() => T.matmul(T.ones([2, 3]), T.ones([4, 5])));
      expect(e).toBeInstanceOf(TorchError);
      expect(e.message).toBe('matmul: mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)');
      const e2 = errorOf(() => T.linear(T.ones([2, 3]), T.ones([4, 5])));
      expect(e2).toBeInstanceOf(TorchRangeError);
      expect(e2.message).toBe('linear: input float32 [2, 3] does not match weight float32 [4, 5]: last dim must be 5');
      expect(() => T.linear(T.ones([3]), T.ones([3]))).toThrow('linear: expected "weight" to be 2-D [out, in], received float32 [3]');
      expect(() => T.bmm(T.ones([2, 3]), T.ones([2, 3]))).toThrow('bmm: batch1 must be a 3D tensor');
      expect(() => T.baddbmm(T.ones([1]), T.ones([2, 2, 3]), T.ones([2, 2, 3]))).toThrow(
        'baddbmm: expected batch1 [B, n, m] and batch2 [B, m, p], received float32 [2, 2, 3] and float32 [2, 2, 3]',
      );
      expect(() => T.cdist(T.ones([2, 3]), T.ones([2, 4]))).toThrow(
        'cdist: expected x1 [..., P, M] and x2 [..., R, M] with the same M, received float32 [2, 3] and float32 [2, 4]',
      );
      expect(() => T.cdist(T.ones([2, 3]), T.ones([2, 3]), -1)).toThrow('cdist: p must be >= 0, received -1');
      expect(() => T.einsum('ij,jk->ik', T.ones([2, 3]))).toThrow('einsum: einsum(): fewer operands were provided than specified in the equation');
    }));

  test('dtype mismatch between operands', () =>
    noLeak(() => {
      const e = errorOf(() => T.matmul(T.ones([2, 2]), T.ones([2, 2], { dtype: 'float64' })));
      expect(e).toBeInstanceOf(TorchError);
      // libtorch's own words, which differ between 1.13 and 2.x.
      expect(e.message).toMatch(/^matmul: (expected scalar type Float but found Double|expected m1 and m2 to have the same dtype, but got: float != double)$/);
    }));

  test('non-Tensor and disposed arguments', () =>
    noLeak(() => {
      const e = errorOf(() => T.linear(T.ones([1, 2]), T.ones([3, 2]), 'b' as unknown as T.Tensor));
      expect(e).toBeInstanceOf(TorchTypeError);
      expect(e.message).toBe('linear: expected "bias" to be a Tensor, received string "b"');
      expect(() => T.einsum('i->i', {} as T.Tensor)).toThrow('einsum: expected "operands[0]" to be a Tensor, received object');
      const w = T.ones([3, 2]);
      w.dispose();
      const e2 = errorOf(() => T.linear(T.ones([1, 2]), w));
      expect(e2).toBeInstanceOf(DisposedError);
      expect(e2.message).toBe('linear: "weight" is a disposed Tensor (float32 [3, 2], created by ones)');
    }));
});
