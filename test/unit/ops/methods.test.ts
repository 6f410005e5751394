// Every op exported by src/ops whose first argument is a Tensor is also a Tensor method of the same name, calling the
// free function with the tensor first (src/ops/install.ts). The exceptions take something else first.
import { expect, test } from 'vitest';

import * as indexOps from '../../../src/ops/index.js';
import * as linalg from '../../../src/ops/linalg.js';
import * as nn from '../../../src/ops/nn.js';
import * as pointwise from '../../../src/ops/pointwise.js';
import * as reduce from '../../../src/ops/reduce.js';
import * as shape from '../../../src/ops/shape.js';
import { normalize, randn, scope, Tensor, tensor } from '../../../src/index.js';

// where(condition, a, b), einsum(equation, ...), cat/stack(list): the first argument is not the tensor operated on.
const NOT_TENSOR_FIRST = new Set(['where', 'einsum', 'cat', 'stack']);

test('every tensor-first op of src/ops is a Tensor method', () => {
  const missing: string[] = [];
  for (const mod of [indexOps, linalg, nn, pointwise, reduce, shape] as Record<string, unknown>[]) {
    for (const [name, f] of Object.entries(mod)) {
      if (typeof f !== 'function' || NOT_TENSOR_FIRST.has(name)) continue;
      if (typeof (Tensor.prototype as unknown as Record<string, unknown>)[name] !== 'function') missing.push(name);
    }
  }
  expect(missing).toEqual([]);
});

test('methods call the free function with the tensor first (normalize, pad, linear, variance)', () => {
  scope(() => {
    const x = tensor([
      [3, 4],
      [0, 5],
    ]);
    expect(x.normalize().toArray()).toEqual(normalize(x).toArray());
    expect(x.normalize(1, 0).toArray()).toEqual([1, Math.fround(4 / 9), 0, Math.fround(5 / 9)]); // toArray is flat, row-major;
    expect(x.pad([1, 0]).toArray()).toEqual([0, 3, 4, 0, 0, 5]);
    const w = randn([3, 2]);
    expect(x.linear(w).toArray()).toEqual(linalg.linear(x, w).toArray());
    expect(x.variance().item()).toBeCloseTo(x.var().item(), 6);
  });
});
