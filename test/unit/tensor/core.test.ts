import { inspect } from 'node:util';

import { describe, expect, test } from 'vitest';

import { arange, DisposedError, memory, ones, scope, tensor, TorchTypeError, zeros } from '../../../src/index.js';

describe('tensor core', () => {
  test('creates tensors with shape, dtype and data', () => {
    const t = tensor([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    expect(t.shape).toEqual([2, 3]);
    expect(t.dtype).toBe('float32');
    expect(Array.from(t.data() as Float32Array)).toEqual([1, 2, 3, 4, 5, 6]);
    t.dispose();
  });

  test('scope disposes intermediates and keeps the result', () => {
    const before = memory().liveTensors;
    const y = scope(() => {
      const a = ones([2, 2]);
      return a.mul(3).add(1);
    });
    expect(memory().liveTensors).toBe(before + 1);
    expect(y.toArray()).toEqual([4, 4, 4, 4]);
    y.dispose();
    expect(memory().liveTensors).toBe(before);
  });

  test('use after dispose names the op, the argument and what the tensor was', () => {
    const a = zeros([2, 3]);
    a.dispose();
    a.dispose(); // idempotent
    const b = ones([2, 3]);
    expect(() => b.add(a)).toThrow(DisposedError);
    expect(() => b.add(a)).toThrow('add: "other" is a disposed Tensor (float32 [2, 3], created by zeros)');
    b.dispose();
  });

  test('wrong argument kinds are TypeErrors with code ERR_INVALID_ARG', () => {
    const a = arange(6);
    let err: unknown;
    try {
      // @ts-expect-error deliberate misuse
      a.add('x');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TorchTypeError);
    expect((err as TorchTypeError).code).toBe('ERR_INVALID_ARG');
    expect((err as Error).message).toBe('add: expected "other" to be a Tensor or a number, received string "x"');
    a.dispose();
  });

  test('libtorch errors become TorchError without a C++ backtrace', () => {
    const a = ones([2, 3]);
    const b = ones([4, 5]);
    expect(() => a.matmul(b)).toThrow(/^matmul: mat1 and mat2 shapes cannot be multiplied \(2x3 and 4x5\)$/);
    a.dispose();
    b.dispose();
  });
});

test('console.log / util.inspect show dtype, shape, device and the values of small tensors', () => {
  scope(() => {
    expect(inspect(ones([2, 2]))).toBe('Tensor(float32 [2, 2] on cpu) [[1, 1], [1, 1]]');
    expect(inspect({ a: arange(3) })).toBe('{ a: Tensor(int64 [3] on cpu) [0, 1, 2] }');
    expect(inspect(ones([2], { dtype: 'bfloat16' }).mul(1.5).requiresGrad_())).toBe('Tensor(bfloat16 [2] on cpu, requiresGrad) [1.5, 1.5]');
    expect(inspect(ones([2]).gt(0))).toBe('Tensor(bool [2] on cpu) [true, true]');
    expect(inspect(zeros([65]))).toBe('Tensor(float32 [65] on cpu)');
    expect(inspect(zeros([3, 4], { device: 'meta' }))).toBe('Tensor(float32 [3, 4] on meta)');
    const t = ones([2, 3]);
    t.dispose();
    expect(inspect(t)).toBe('Tensor(disposed: float32 [2, 3], created by ones)');
  });
});
