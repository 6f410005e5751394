import { describe, expect, test } from 'vitest';

import * as T from '../../../src/index.js';
import { DisposedError, TorchError, TorchRangeError, TorchTypeError } from '../../../src/index.js';
import { errorOf, expectClose, noLeak, values } from './util.js';

const f = (v: number[] | number[][]) => T.tensor(v);
const i64 = (v: number[] | number[][]) => T.tensor(v, { dtype: 'int64' });
const b = (v: boolean[]) => T.tensor(v, { dtype: 'bool' });

describe('arithmetic', () => {
  test('add, sub, mul, div broadcast a row over a matrix', () =>
    noLeak(() => {
      const x = f([
        [1, 2, 3],
        [4, 5, 6],
      ]);
      const y = f([10, 20, 30]);
      expect(T.add(x, y).shape).toEqual([2, 3]);
      expect(values(T.add(x, y))).toEqual([11, 22, 33, 14, 25, 36]);
      expect(values(T.sub(x, y))).toEqual([-9, -18, -27, -6, -15, -24]);
      expect(values(T.mul(x, y))).toEqual([10, 40, 90, 40, 100, 180]);
      expectClose(T.div(x, y), [0.1, 0.1, 0.1, 0.4, 0.25, 0.2]);
      // a column [2, 1] against a row [3] gives [2, 3]
      expect(values(T.add(f([[1], [2]]), y))).toEqual([11, 21, 31, 12, 22, 32]);
    }));

  test('alpha scales the second operand of add and sub', () =>
    noLeak(() => {
      const x = f([1, 2]);
      expect(values(T.add(x, f([10, 20]), 0.5))).toEqual([6, 12]);
      expect(values(T.sub(x, 3, 2))).toEqual([-5, -4]);
      expect(values(x.add(1))).toEqual([2, 3]);
    }));

  test('pow, remainder, floorDivide, maximum, minimum', () =>
    noLeak(() => {
      expect(values(T.pow(f([1, 2, 3]), 2))).toEqual([1, 4, 9]);
      expect(values(T.pow(f([4, 9]), f([0.5, 2])))).toEqual([2, 81]);
      expect(values(T.remainder(f([5, -5, 7.5]), 3))).toEqual([2, 1, 1.5]); // sign of the divisor, like Python
      expect(values(T.floorDivide(i64([7, -7]), 2))).toEqual([3, -4]);
      expect(values(T.maximum(f([1, 5]), f([3, 2])))).toEqual([3, 5]);
      expect(values(T.minimum(f([1, 5]), 2))).toEqual([1, 2]);
    }));
});

describe('dtype promotion', () => {
  test('integer tensors with integer scalars stay integer; float scalars give float32', () =>
    noLeak(() => {
      const x = i64([1, 2, 3]);
      expect(T.add(x, 2).dtype).toBe('int64');
      expect(values(T.add(x, 2))).toEqual([3, 4, 5]);
      expect(T.mul(x, 2.5).dtype).toBe('float32');
      expect(values(T.mul(x, 2.5))).toEqual([2.5, 5, 7.5]);
    }));

  test('true division of integers gives float32', () =>
    noLeak(() => {
      const q = T.div(i64([1, 3]), 2);
      expect(q.dtype).toBe('float32');
      expect(values(q)).toEqual([0.5, 1.5]);
    }));

  test('tensor-tensor promotion follows the wider category and size', () =>
    noLeak(() => {
      const i32 = T.tensor([1, 2], { dtype: 'int32' });
      expect(T.add(i32, i64([1, 1])).dtype).toBe('int64');
      expect(T.mul(i64([1, 2]), f([0.5, 0.5])).dtype).toBe('float32');
      expect(T.add(f([1, 2]), T.tensor([1, 2], { dtype: 'float64' })).dtype).toBe('float64');
      expect(T.add(T.ones([2], { dtype: 'bfloat16' }), f([1, 2])).dtype).toBe('float32');
      expect(T.add(b([true, false]), b([true, true])).dtype).toBe('bool');
    }));

  test('a 0-d tensor does not widen a higher-dimensional tensor of the same category', () =>
    noLeak(() => {
      const s = T.tensor(new Float64Array([2]), { shape: [] });
      expect(s.ndim).toBe(0);
      expect(T.mul(f([1, 2]), s).dtype).toBe('float32');
      expect(T.mul(T.ones([2], { dtype: 'bfloat16' }), s).dtype).toBe('bfloat16');
    }));
});

describe('unary math', () => {
  test('exp, log, log1p, sqrt, rsqrt, reciprocal, square', () =>
    noLeak(() => {
      expectClose(T.exp(f([0, 1])), [1, Math.E]);
      expectClose(T.log(f([1, Math.E])), [0, 1]);
      expectClose(T.log1p(f([0, Math.E - 1])), [0, 1]);
      expect(values(T.sqrt(f([4, 9])))).toEqual([2, 3]);
      expect(values(T.rsqrt(f([4, 0.25])))).toEqual([0.5, 2]);
      expect(values(T.reciprocal(f([4, -0.5])))).toEqual([0.25, -2]);
      expect(values(T.square(f([-3, 2])))).toEqual([9, 4]);
      expectClose(T.log(f([0, -1])), [-Infinity, NaN]);
    }));

  test('trigonometry and activations', () =>
    noLeak(() => {
      expectClose(T.sin(f([0, Math.PI / 2])), [0, 1]);
      expectClose(T.cos(f([0, Math.PI])), [1, -1]);
      expectClose(T.tanh(f([0, 1])), [0, Math.tanh(1)]);
      expectClose(T.sigmoid(f([0, 2])), [0.5, 1 / (1 + Math.exp(-2))]);
      expect(values(T.relu(f([-1, 0, 2])))).toEqual([0, 0, 2]);
      expectClose(T.erf(f([0, 1])), [0, 0.8427007929497149]);
      expectClose(T.erfinv(f([0, 0.8427007929497149])), [0, 1], 1e-5);
      // gelu(1) = 1·Φ(1) exactly, and 0.5·(1 + tanh(√(2/π)·(1 + 0.044715))) for the tanh form
      expectClose(T.gelu(f([-1, 0, 1])), [-0.15865525393145707, 0, 0.8413447460685429]);
      expectClose(T.gelu(f([1]), 'tanh'), [0.8411919906082768]);
      expectClose(T.silu(f([0, 1])), [0, 1 / (1 + Math.exp(-1))]);
    }));

  test('neg, abs, sign, floor, ceil, round (half to even)', () =>
    noLeak(() => {
      expect(values(T.neg(f([1, -2])))).toEqual([-1, 2]);
      expect(values(T.abs(i64([-3, 4])))).toEqual([3, 4]);
      expect(T.abs(i64([-3])).dtype).toBe('int64');
      expect(values(T.sign(f([-2, 0, 5])))).toEqual([-1, 0, 1]);
      expect(values(T.floor(f([-1.5, 1.5])))).toEqual([-2, 1]);
      expect(values(T.ceil(f([-1.5, 1.5])))).toEqual([-1, 2]);
      expect(values(T.round(f([0.5, 1.5, 2.5, -0.5])))).toEqual([0, 2, 2, -0]);
    }));

  test('isnan, isinf, isfinite and nanToNum', () =>
    noLeak(() => {
      const x = f([NaN, Infinity, -Infinity, 1]);
      expect(values(T.isnan(x))).toEqual([1, 0, 0, 0]);
      expect(values(T.isinf(x))).toEqual([0, 1, 1, 0]);
      expect(values(T.isfinite(x))).toEqual([0, 0, 0, 1]);
      expect(T.isinf(x).dtype).toBe('bool');
      expect(values(T.nanToNum(x, { nan: 0, posinf: 9, neginf: -9 }))).toEqual([0, 9, -9, 1]);
      // defaults: NaN → 0, ±inf → the largest/lowest finite float32
      expect(values(T.nanToNum(x))).toEqual([0, 3.4028234663852886e38, -3.4028234663852886e38, 1]);
    }));
});

describe('comparisons and logic', () => {
  test('comparisons return bool tensors', () =>
    noLeak(() => {
      const x = f([1, 2, 3]);
      expect(T.eq(x, 2).dtype).toBe('bool');
      expect(values(T.eq(x, 2))).toEqual([0, 1, 0]);
      expect(values(T.ne(x, f([1, 0, 3])))).toEqual([0, 1, 0]);
      expect(values(T.lt(x, 2))).toEqual([1, 0, 0]);
      expect(values(T.le(x, 2))).toEqual([1, 1, 0]);
      expect(values(T.gt(x, 2))).toEqual([0, 0, 1]);
      expect(values(T.ge(x, 2))).toEqual([0, 1, 1]);
    }));

  test('logicalNot, logicalAnd, logicalOr, logicalXor (non-zero is true)', () =>
    noLeak(() => {
      const p = b([true, true, false, false]);
      const q = b([true, false, true, false]);
      expect(values(T.logicalNot(p))).toEqual([0, 0, 1, 1]);
      expect(values(T.logicalAnd(p, q))).toEqual([1, 0, 0, 0]);
      expect(values(T.logicalOr(p, q))).toEqual([1, 1, 1, 0]);
      expect(values(T.logicalXor(p, q))).toEqual([0, 1, 1, 0]);
      expect(values(T.logicalXor(f([2, 0]), f([0, 0])))).toEqual([1, 0]);
      expect(T.logicalXor(f([2, 0]), f([0, 0])).dtype).toBe('bool');
    }));
});

describe('clamp, where, lerp, addcmul, maskedFill', () => {
  test('clamp with numbers keeps integer dtypes', () =>
    noLeak(() => {
      const x = i64([-5, 0, 5]);
      const c = T.clamp(x, -1, 2);
      expect(c.dtype).toBe('int64');
      expect(values(c)).toEqual([-1, 0, 2]);
      expect(values(T.clamp(f([-5, 0.5, 5]), null, 1))).toEqual([-5, 0.5, 1]);
      expect(values(T.clamp(f([-5, 0.5, 5]), 0))).toEqual([0, 0.5, 5]);
    }));

  test('clamp, clampMin and clampMax with tensor bounds broadcast', () =>
    noLeak(() => {
      const x = f([
        [-2, 0, 2],
        [4, -4, 1],
      ]);
      expect(values(T.clamp(x, f([-1, 0.5, 0]), f([1, 1, 1.5])))).toEqual([-1, 0.5, 1.5, 1, 0.5, 1]);
      expect(values(T.clamp(x, f([[0], [-3]]), 3))).toEqual([0, 0, 2, 3, -3, 1]);
      expect(values(T.clampMin(x, f([0, 1, 3])))).toEqual([0, 1, 3, 4, 1, 3]);
      expect(values(T.clampMax(x, 0))).toEqual([-2, 0, 0, 0, -4, 0]);
      expect(values(T.clampMin(i64([-3, 3]), 0))).toEqual([0, 3]);
      expect(T.clampMin(i64([-3, 3]), 0).dtype).toBe('int64');
    }));

  test('where chooses elementwise, with tensors or numbers', () =>
    noLeak(() => {
      const c = b([true, false, true]);
      expect(values(T.where(c, f([1, 2, 3]), f([10, 20, 30])))).toEqual([1, 20, 3]);
      expect(values(T.where(c, f([1, 2, 3]), 0))).toEqual([1, 0, 3]);
      expect(values(T.where(c, -1, f([10, 20, 30])))).toEqual([-1, 20, -1]);
      const both = T.where(c, 1, 2.5);
      expect(both.dtype).toBe('float32');
      expect(values(both)).toEqual([1, 2.5, 1]);
    }));

  test('lerp, addcmul and maskedFill', () =>
    noLeak(() => {
      expect(values(T.lerp(f([0, 10]), f([10, 20]), 0.25))).toEqual([2.5, 12.5]);
      expect(values(T.lerp(f([0, 10]), f([10, 20]), f([0, 1])))).toEqual([0, 20]);
      expect(values(T.addcmul(f([1, 1]), f([2, 3]), f([4, 5]), 0.5))).toEqual([5, 8.5]);
      expect(
        values(
          T.maskedFill(
            f([
              [1, 2],
              [3, 4],
            ]),
            b([true, false]),
            -1,
          ),
        ),
      ).toEqual([-1, 2, -1, 4]);
    }));

  test('dropout: identity when not training or p = 0, zero or scaled by 1/(1-p) when training', () =>
    noLeak(() => {
      const x = T.ones([1000]);
      expect(values(T.dropout(x, 0.5, false))).toEqual(values(x));
      expect(values(T.dropout(x, 0, true))).toEqual(values(x));
      const d = values(T.dropout(x, 0.5, true));
      expect(d.every((v) => v === 0 || v === 2)).toBe(true);
      const kept = d.filter((v) => v === 2).length;
      expect(kept).toBeGreaterThan(400);
      expect(kept).toBeLessThan(600);
    }));
});

describe('in-place variants return the same object and write into it', () => {
  test('arithmetic', () =>
    noLeak(() => {
      const x = f([1, 2]);
      expect(T.add_(x, 1)).toBe(x);
      expect(x.sub_(f([1, 1]), 2)).toBe(x);
      expect(x.mul_(3)).toBe(x);
      expect(x.div_(f([1, 2]))).toBe(x);
      expect(x.pow_(2)).toBe(x);
      expect(values(x)).toEqual([0, 1.5 ** 2]);
    }));

  test('unary, clamp, lerp, maskedFill', () =>
    noLeak(() => {
      const x = f([-1, 4]);
      expect(x.neg_()).toBe(x);
      expect(values(x)).toEqual([1, -4]);
      expect(x.relu_()).toBe(x);
      expect(values(x)).toEqual([1, 0]);
      expect(x.exp_()).toBe(x);
      expectClose(x, [Math.E, 1]);
      expect(x.sqrt_()).toBe(x);
      expectClose(x, [Math.sqrt(Math.E), 1]);
      expect(x.clamp_(0, 1.5)).toBe(x);
      expect(values(x)).toEqual([1.5, 1]);
      expect(x.clamp_(f([2, 0]))).toBe(x);
      expect(values(x)).toEqual([2, 1]);
      expect(x.lerp_(f([4, 3]), 0.5)).toBe(x);
      expect(values(x)).toEqual([3, 2]);
      expect(x.maskedFill_(b([false, true]), 7)).toBe(x);
      expect(values(x)).toEqual([3, 7]);
    }));

  test('in-place writes are visible through views', () =>
    noLeak(() => {
      const x = f([
        [1, 2],
        [3, 4],
      ]);
      const row = x.select(0, 1);
      row.mul_(10);
      expect(values(x)).toEqual([1, 2, 30, 40]);
    }));

  test('an in-place op cannot change the dtype', () =>
    noLeak(() => {
      const x = i64([1, 2]);
      const e = errorOf(() => x.mul_(0.5));
      expect(e).toBeInstanceOf(TorchError);
      expect(e.message).toBe("mul_: result type Float can't be cast to the desired output type Long");
    }));
});

describe('errors', () => {
  test('non-Tensor arguments', () =>
    noLeak(() => {
      const x = f([1]);
      const e = errorOf(() => T.neg(5 as unknown as T.Tensor));
      expect(e).toBeInstanceOf(TorchTypeError);
      expect(e.code).toBe('ERR_INVALID_ARG');
      expect(e.message).toBe('neg: expected "input" to be a Tensor, received number 5');
      expect(() => T.mul(x, 'a' as unknown as number)).toThrow('mul: expected "other" to be a Tensor or a number, received string "a"');
      expect(() => T.where(b([true]), x, [1] as unknown as number)).toThrow('where: expected "other" to be a Tensor or a number, received array of length 1');
      expect(() => T.clamp(x, '0' as unknown as number)).toThrow('clamp: expected "min" to be a Tensor or a number, received string "0"');
      expect(() => T.logicalAnd(x, 1 as unknown as T.Tensor)).toThrow('logicalAnd: expected "other" to be a Tensor, received number 1');
      expect(() => T.lerp(x, x, null as unknown as number)).toThrow('lerp: expected "weight" to be a Tensor, received null');
    }));

  test('disposed arguments name the op, the argument and the tensor', () =>
    noLeak(() => {
      const x = f([1, 2]);
      const d = T.zeros([3], { dtype: 'int64' });
      d.dispose();
      const e = errorOf(() => T.add(x, d));
      expect(e).toBeInstanceOf(DisposedError);
      expect(e.code).toBe('ERR_DISPOSED');
      expect(e.message).toBe('add: "other" is a disposed Tensor (int64 [3], created by zeros)');
      expect(() => T.exp(d)).toThrow('exp: "input" is a disposed Tensor (int64 [3], created by zeros)');
      expect(() => T.clamp(x, d)).toThrow('clamp: "min" is a disposed Tensor (int64 [3], created by zeros)');
      expect(() => x.add_(d)).toThrow('add_: "other" is a disposed Tensor (int64 [3], created by zeros)');
    }));

  test('shapes that do not broadcast', () =>
    noLeak(() => {
      const e = errorOf(() => T.add(T.ones([2, 3]), T.ones([2])));
      expect(e).toBeInstanceOf(TorchError);
      expect(e.message).toBe('add: The size of tensor a (3) must match the size of tensor b (2) at non-singleton dimension 1');
    }));

  test('bad option values', () =>
    noLeak(() => {
      const x = f([1]);
      const e = errorOf(() => T.dropout(x, 1.5, true));
      expect(e).toBeInstanceOf(TorchRangeError);
      expect(e.message).toBe('dropout: p must be in [0, 1], received 1.5');
      expect(() => T.clamp(x)).toThrow('clamp: at least one of min and max must be given');
      expect(() => T.gelu(x, 'fast' as 'tanh')).toThrow('gelu: approximate must be "none" or "tanh", received "fast"');
    }));
});
