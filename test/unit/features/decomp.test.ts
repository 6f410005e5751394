import { describe, expect, test } from 'vitest';

import { Generator, matmul, memory, randn, scope, tensor, TorchRangeError } from '../../../src/index.js';
import { linalgEigh, linalgQr, linalgSvd } from '../../../src/features/index.js';

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

describe('decompositions', () => {
  test('linalgEigh: ascending eigenvalues and orthonormal eigenvectors', () => {
    const before = memory().liveTensors;
    scope(() => {
      const { eigenvalues, eigenvectors } = linalgEigh(
        tensor([
          [2, 1],
          [1, 3],
        ]),
      );
      const l = eigenvalues.data() as Float32Array;
      expect(l[0]).toBeCloseTo((5 - Math.sqrt(5)) / 2, 5);
      expect(l[1]).toBeCloseTo((5 + Math.sqrt(5)) / 2, 5);
      expect(eigenvectors.shape).toEqual([2, 2]);
      // A = Q diag(λ) Qᵀ for a random symmetric 6×6 in float64.
      const m = randn([6, 6], { dtype: 'float64', generator: new Generator(0) });
      const a = m.add(m.t());
      const r = linalgEigh(a);
      const back = matmul(r.eigenvectors.mul(r.eigenvalues.reshape([1, 6])), r.eigenvectors.t());
      expect(maxAbsDiff(back.data() as Float64Array, a.data() as Float64Array)).toBeLessThan(1e-10);
      const vals = Array.from(r.eigenvalues.data() as Float64Array);
      expect(vals).toEqual([...vals].sort((x, y) => x - y));
    });
    expect(memory().liveTensors).toBe(before);
  });

  test('linalgSvd and linalgQr reconstruct their input', () => {
    scope(() => {
      const a = randn([5, 3], { generator: new Generator(1) });
      const { U, S, Vh } = linalgSvd(a);
      expect([U.shape, S.shape, Vh.shape]).toEqual([[5, 3], [3], [3, 3]]);
      const s = Array.from(S.data() as Float32Array);
      expect(s).toEqual([...s].sort((x, y) => y - x));
      expect(maxAbsDiff(matmul(U.mul(S.reshape([1, 3])), Vh).data() as Float32Array, a.data() as Float32Array)).toBeLessThan(1e-5);
      expect(linalgSvd(a, true).U.shape).toEqual([5, 5]);
      const { Q, R } = linalgQr(a);
      expect([Q.shape, R.shape]).toEqual([
        [5, 3],
        [3, 3],
      ]);
      expect(maxAbsDiff(matmul(Q, R).data() as Float32Array, a.data() as Float32Array)).toBeLessThan(1e-5);
      expect(maxAbsDiff(matmul(Q.t(), Q).data() as Float32Array, new Float32Array([1, 0, 0, 0, 1, 0, 0, 0, 1]))).toBeLessThan(1e-5);
      expect(linalgQr(a, 'complete').Q.shape).toEqual([5, 5]);
    });
  });

  test('bad inputs name the op and what was received', () => {
    scope(() => {
      const rect = tensor([
        [1, 2, 3],
        [4, 5, 6],
      ]);
      expect(() => linalgEigh(rect)).toThrow(TorchRangeError);
      expect(() => linalgEigh(rect)).toThrow('linalgEigh: expected a square matrix (or a batch of them) [..., n, n], received float32 [2, 3]');
      expect(() => linalgSvd(rect.to('bfloat16'))).toThrow(
        `linalgSvd: expected "input" to be a float32|float64 Tensor, received bfloat16 [2, 3] (cast it with .to('float32') first)`,
      );
      expect(() => linalgQr(tensor([1, 2]))).toThrow('linalgQr: expected a matrix (or a batch of them) [..., m, n], received float32 [2]');
      const eye2 = tensor([
        [1, 0],
        [0, 1],
      ]);
      // @ts-expect-error bad uplo
      expect(() => linalgEigh(eye2, 'X')).toThrow('linalgEigh: uplo must be "L" or "U", received "X"');
      // @ts-expect-error not a tensor
      expect(() => linalgEigh([[1]])).toThrow('linalgEigh: expected "input" to be a Tensor, received');
    });
  });
});
