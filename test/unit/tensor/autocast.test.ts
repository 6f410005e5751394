import { describe, expect, test } from 'vitest';

import { autocast, Generator, linear, memory, randn, scope, TorchTypeError } from '../../../src/index.js';

describe('autocast (bf16 compute, fp32 master weights)', () => {
  test('linear computes in bfloat16 inside the region and float32 outside; gradients reach fp32 weights', () => {
    const before = memory().liveTensors;
    const g = new Generator(0);
    const w = randn([8, 16], { generator: g }).requiresGrad_();
    const x = randn([4, 16], { generator: g });
    scope(() => {
      const y = autocast(() => linear(x, w));
      expect(y.dtype).toBe('bfloat16');
      expect(linear(x, w).dtype).toBe('float32');
      const ref = linear(x, w);
      const err = y.float().sub(ref).abs().max().item() / ref.abs().max().item();
      expect(err).toBeLessThan(2e-2);
      expect(err).toBeGreaterThan(0);
      y.float().sum().backward();
      expect(w.grad!.dtype).toBe('float32');
      // d(sum(x wᵀ))/dw = column sums of x, broadcast over the rows of w.
      const want = x.sum(0).toArray();
      const got = w.grad!.toArray();
      for (let r = 0; r < 8; r++) for (let c = 0; c < 16; c++) expect(got[r * 16 + c]).toBeCloseTo(want[c]!, 1);
    });
    w.dispose();
    x.dispose();
    expect(memory().liveTensors).toBe(before);
  });

  test('regions nest and restore the previous state, also after an exception', () => {
    const x = randn([2, 4]);
    const w = randn([3, 4]);
    expect(() =>
      autocast(() => {
        throw new Error('boom');
      }),
    ).toThrow('boom');
    scope(() => expect(linear(x, w).dtype).toBe('float32'));
    autocast(() => {
      autocast(() => undefined);
      scope(() => expect(linear(x, w).dtype).toBe('bfloat16'));
    });
    scope(() => expect(linear(x, w).dtype).toBe('float32'));
    x.dispose();
    w.dispose();
  });

  test('only half dtypes are accepted', () => {
    // @ts-expect-error deliberate misuse
    expect(() => autocast(() => 1, { dtype: 'int64' })).toThrow(TorchTypeError);
    // @ts-expect-error deliberate misuse
    expect(() => autocast(() => 1, { dtype: 'int64' })).toThrow('autocastEnter: expected "dtype" to be "bfloat16" or "float16", received string "int64"');
  });
});
