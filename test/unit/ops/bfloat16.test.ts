// Every op on bfloat16 CPU tensors: the result keeps bfloat16 (or bool/int64 where the op says so) and matches the
// float32 op applied to the same (bfloat16-rounded) inputs within bfloat16 tolerance. Where libtorch 1.13 has no
// 16-bit CPU kernel (prod, mse_loss, reflect/replicate pad, antialiased resampling, cdist) or a poor one (bilinear and
// bicubic resampling accumulate in bfloat16) the op computes in float32 and rounds once.
import { describe, expect, test } from 'vitest';

import * as T from '../../../src/index.js';
import type { DType, Tensor } from '../../../src/index.js';
import { noLeak, values } from './util.js';

type Op = (...xs: Tensor[]) => Tensor;
interface Case {
  name: string;
  /** Inputs built in float32 from the seeded generator; float ones are rounded to bfloat16 before use. */
  inputs: (g: T.Generator) => Tensor[];
  fn: Op;
  /** dtype of the result for bfloat16 inputs (default bfloat16). */
  dtype?: DType;
  /** Absolute and relative tolerance (default 2e-2 each: a few bfloat16 ulps after accumulation). */
  tol?: number;
}

const rn = (g: T.Generator, shape: number[]) => T.randn(shape, { generator: g });
const i64 = (v: number[] | number[][]) => T.tensor(v, { dtype: 'int64' });

function run(c: Case): void {
  noLeak(() => {
    const g = new T.Generator(7);
    const raw = c.inputs(g);
    const floats = raw.map((x) => (x.dtype === 'float32' ? x.to('bfloat16') : x));
    const ref = raw.map((x, i) => (x.dtype === 'float32' ? floats[i]!.to('float32') : x));
    const y = c.fn(...floats);
    const yRef = c.fn(...ref);
    expect(y.dtype).toBe(c.dtype ?? 'bfloat16');
    expect(y.shape).toEqual(yRef.shape);
    const a = values(y);
    const b = values(yRef);
    const tol = c.tol ?? 2e-2;
    a.forEach((v, i) => {
      const w = b[i]!;
      if (Number.isNaN(w)) expect(v).toBeNaN();
      else expect(Math.abs(v - w), `element ${i}: ${v} vs ${w}`).toBeLessThanOrEqual(tol + tol * Math.abs(w));
    });
  });
}

function cases(group: string, list: Case[]): void {
  describe(group, () => {
    for (const c of list) test(c.name, () => run(c));
  });
}

// The ViT building blocks in bfloat16 against float32 (the quick check of the issue).
cases('ViT blocks', [
  { name: 'linear', inputs: (g) => [rn(g, [2, 5, 16]), rn(g, [8, 16]).mul(0.25), rn(g, [8])], fn: (x, w, b) => T.linear(x, w, b), tol: 3e-2 },
  { name: 'layerNorm', inputs: (g) => [rn(g, [2, 5, 16]), rn(g, [16]), rn(g, [16])], fn: (x, w, b) => T.layerNorm(x, [16], w, b, 1e-6) },
  { name: 'rmsNorm', inputs: (g) => [rn(g, [2, 5, 16]), rn(g, [16])], fn: (x, w) => T.rmsNorm(x, w) },
  { name: 'softmax', inputs: (g) => [rn(g, [2, 5, 16])], fn: (x) => T.softmax(x, -1) },
  { name: 'logSoftmax', inputs: (g) => [rn(g, [2, 5, 16])], fn: (x) => T.logSoftmax(x, -1) },
  { name: 'gelu', inputs: (g) => [rn(g, [2, 5, 16])], fn: (x) => T.gelu(x) },
  { name: 'silu', inputs: (g) => [rn(g, [2, 5, 16])], fn: (x) => T.silu(x) },
  {
    name: 'scaledDotProductAttention',
    inputs: (g) => [rn(g, [2, 3, 6, 8]), rn(g, [2, 3, 6, 8]), rn(g, [2, 3, 6, 8])],
    fn: (q, k, v) => T.scaledDotProductAttention(q, k, v),
  },
  {
    name: 'scaledDotProductAttention with a boolean mask',
    inputs: (g) => [rn(g, [2, 6, 8]), rn(g, [2, 6, 8]), rn(g, [2, 6, 8]), T.gt(rn(g, [6, 6]), -0.5)],
    fn: (q, k, v, m) => T.scaledDotProductAttention(q, k, v, { mask: m }),
  },
  {
    name: 'conv2d patch embedding',
    inputs: (g) => [rn(g, [1, 3, 8, 8]), rn(g, [4, 3, 4, 4]).mul(0.2), rn(g, [4])],
    fn: (x, w, b) => T.conv2d(x, w, b, { stride: 4 }),
    tol: 3e-2,
  },
]);

cases('pointwise', [
  ...(['neg', 'abs', 'exp', 'sin', 'cos', 'tanh', 'sigmoid', 'relu', 'erf', 'sign', 'floor', 'ceil', 'round', 'square'] as const).map(
    (name): Case => ({ name, inputs: (g) => [rn(g, [3, 4])], fn: (x) => (T[name] as Op)(x) }),
  ),
  ...(['log', 'log1p', 'sqrt', 'rsqrt', 'reciprocal'] as const).map(
    (name): Case => ({ name, inputs: (g) => [rn(g, [3, 4]).abs().add(0.5)], fn: (x) => (T[name] as Op)(x) }),
  ),
  { name: 'erfinv', inputs: (g) => [rn(g, [3, 4]).clamp(-0.5, 0.5)], fn: (x) => T.erfinv(x) },
  ...(['add', 'sub', 'mul', 'maximum', 'minimum', 'clampMin', 'clampMax'] as const).map(
    (name): Case => ({ name, inputs: (g) => [rn(g, [3, 4]), rn(g, [4])], fn: (a, b) => (T[name] as Op)(a, b) }),
  ),
  { name: 'div', inputs: (g) => [rn(g, [3, 4]), rn(g, [4]).abs().add(0.5)], fn: (a, b) => T.div(a, b) },
  { name: 'pow', inputs: (g) => [rn(g, [3, 4]).abs().add(0.5), rn(g, [4])], fn: (a, b) => T.pow(a, b) },
  { name: 'remainder', inputs: (g) => [rn(g, [3, 4]), rn(g, [4]).abs().add(0.5)], fn: (a, b) => T.remainder(a, b), tol: 5e-2 },
  ...(['eq', 'lt', 'ge', 'isnan', 'isinf', 'isfinite', 'logicalXor'] as const).map(
    (name): Case => ({ name, inputs: (g) => [rn(g, [3, 4]), rn(g, [3, 4])], fn: (a, b) => (T[name] as Op)(a, b), dtype: 'bool' }),
  ),
  { name: 'clamp', inputs: (g) => [rn(g, [3, 4])], fn: (x) => T.clamp(x, -0.5, 0.5) },
  { name: 'clamp with tensors', inputs: (g) => [rn(g, [3, 4]), rn(g, [4]).abs().neg(), rn(g, [4]).abs()], fn: (x, a, b) => T.clamp(x, a, b) },
  { name: 'where', inputs: (g) => [T.gt(rn(g, [3, 4]), 0), rn(g, [3, 4]), rn(g, [3, 4])], fn: (c, a, b) => T.where(c, a, b) },
  { name: 'lerp', inputs: (g) => [rn(g, [3, 4]), rn(g, [3, 4])], fn: (a, b) => T.lerp(a, b, 0.3) },
  { name: 'addcmul', inputs: (g) => [rn(g, [3, 4]), rn(g, [3, 4]), rn(g, [3, 4])], fn: (a, b, c) => T.addcmul(a, b, c, 0.5) },
  { name: 'maskedFill', inputs: (g) => [rn(g, [3, 4]), T.gt(rn(g, [4]), 0)], fn: (a, m) => T.maskedFill(a, m, -1) },
  { name: 'nanToNum', inputs: (g) => [rn(g, [3, 4])], fn: (x) => T.nanToNum(x) },
]);

cases('reductions', [
  { name: 'sum', inputs: (g) => [rn(g, [3, 8])], fn: (x) => T.sum(x, 1), tol: 4e-2 },
  { name: 'mean', inputs: (g) => [rn(g, [3, 8])], fn: (x) => T.mean(x, 1) },
  { name: 'prod', inputs: (g) => [rn(g, [3, 4])], fn: (x) => T.prod(x, 1) },
  { name: 'max', inputs: (g) => [rn(g, [3, 8])], fn: (x) => T.max(x) },
  { name: 'maxDim values', inputs: (g) => [rn(g, [3, 8])], fn: (x) => T.maxDim(x, 1).values },
  { name: 'amax', inputs: (g) => [rn(g, [3, 8])], fn: (x) => T.amax(x, 0) },
  { name: 'topk values', inputs: (g) => [rn(g, [3, 8])], fn: (x) => T.topk(x, 3).values },
  { name: 'sort values', inputs: (g) => [rn(g, [3, 8])], fn: (x) => T.sort(x, 1).values },
  { name: 'argsort of distinct values', inputs: () => [T.tensor([[0.5, -2, 1.25, 3]])], fn: (x) => T.argsort(x), dtype: 'int64' },
  { name: 'logsumexp', inputs: (g) => [rn(g, [3, 8])], fn: (x) => T.logsumexp(x, 1) },
  { name: 'norm', inputs: (g) => [rn(g, [3, 8])], fn: (x) => T.norm(x, 2, 1) },
  { name: 'var', inputs: (g) => [rn(g, [3, 8])], fn: (x) => T.variance(x, 1) },
  { name: 'cumsum', inputs: (g) => [rn(g, [3, 8])], fn: (x) => T.cumsum(x, 1), tol: 4e-2 },
]);

cases('shape and indexing', [
  { name: 'cat', inputs: (g) => [rn(g, [2, 3]), rn(g, [1, 3])], fn: (a, b) => T.cat([a, b]) },
  { name: 'flip, roll, tril, diag', inputs: (g) => [rn(g, [3, 3])], fn: (x) => T.diag(T.tril(T.roll(T.flip(x, 0), 1, 1))) },
  { name: 'indexSelect', inputs: (g) => [rn(g, [3, 4]), i64([2, 0])], fn: (x, i) => T.indexSelect(x, 0, i) },
  { name: 'gather', inputs: (g) => [rn(g, [3, 4]), i64([[3], [0], [1]])], fn: (x, i) => T.gather(x, 1, i) },
  { name: 'scatterAdd', inputs: (g) => [rn(g, [3, 4]), i64([[3], [0], [3]]), rn(g, [3, 1])], fn: (x, i, s) => T.scatterAdd(x, 1, i, s) },
  { name: 'index and indexPut', inputs: (g) => [rn(g, [3, 4]), i64([2, 0]), rn(g, [2, 4])], fn: (x, i, v) => T.index(T.indexPut(x, [i], v, true), [i]) },
]);

cases('linear algebra and nn', [
  { name: 'matmul', inputs: (g) => [rn(g, [2, 3, 8]), rn(g, [8, 4])], fn: (a, b) => T.matmul(a, b), tol: 4e-2 },
  { name: 'bmm', inputs: (g) => [rn(g, [2, 3, 8]), rn(g, [2, 8, 4])], fn: (a, b) => T.bmm(a, b), tol: 4e-2 },
  { name: 'baddbmm', inputs: (g) => [rn(g, [2, 3, 4]), rn(g, [2, 3, 8]), rn(g, [2, 8, 4])], fn: (c, a, b) => T.baddbmm(c, a, b), tol: 4e-2 },
  { name: 'einsum', inputs: (g) => [rn(g, [2, 3, 8]), rn(g, [2, 5, 8])], fn: (a, b) => T.einsum('bid,bjd->bij', a, b), tol: 4e-2 },
  { name: 'cdist', inputs: (g) => [rn(g, [3, 8]), rn(g, [4, 8])], fn: (a, b) => T.cdist(a, b) },
  { name: 'interpolate bicubic', inputs: (g) => [rn(g, [1, 2, 4, 4])], fn: (x) => T.interpolate(x, { size: [7, 5], mode: 'bicubic' }), tol: 8e-3 },
  { name: 'interpolate bilinear', inputs: (g) => [rn(g, [1, 2, 4, 4])], fn: (x) => T.interpolate(x, { size: [7, 5], mode: 'bilinear' }), tol: 8e-3 },
  { name: 'interpolate nearest', inputs: (g) => [rn(g, [1, 2, 4, 4])], fn: (x) => T.interpolate(x, { size: [7, 5], mode: 'nearest' }), tol: 0 },
  {
    name: 'interpolate bicubic antialias',
    inputs: (g) => [rn(g, [1, 2, 8, 8])],
    fn: (x) => T.interpolate(x, { size: [3, 3], mode: 'bicubic', antialias: true }),
  },
  {
    name: 'interpolate bilinear antialias',
    inputs: (g) => [rn(g, [1, 2, 8, 8])],
    fn: (x) => T.interpolate(x, { size: [3, 5], mode: 'bilinear', antialias: true }),
  },
  { name: 'pad reflect', inputs: (g) => [rn(g, [1, 2, 3, 3])], fn: (x) => T.pad(x, [1, 1, 2, 1], 'reflect') },
  { name: 'pad replicate', inputs: (g) => [rn(g, [1, 2, 3, 3])], fn: (x) => T.pad(x, [1, 1, 2, 1], 'replicate') },
  { name: 'pad constant', inputs: (g) => [rn(g, [1, 2, 3, 3])], fn: (x) => T.pad(x, [1, 1], 'constant', 2) },
  { name: 'avgPool2d', inputs: (g) => [rn(g, [1, 2, 4, 4])], fn: (x) => T.avgPool2d(x, 2) },
  { name: 'adaptiveAvgPool2d', inputs: (g) => [rn(g, [1, 2, 5, 5])], fn: (x) => T.adaptiveAvgPool2d(x, 2) },
  { name: 'normalize', inputs: (g) => [rn(g, [3, 8])], fn: (x) => T.normalize(x) },
  { name: 'crossEntropy with indices', inputs: (g) => [rn(g, [3, 5]), i64([0, 4, 2])], fn: (x, t) => T.crossEntropy(x, t) },
  { name: 'crossEntropy with probabilities', inputs: (g) => [rn(g, [3, 5]), T.softmax(rn(g, [3, 5]), -1)], fn: (x, p) => T.crossEntropy(x, p) },
  { name: 'mseLoss', inputs: (g) => [rn(g, [3, 5]), rn(g, [3, 5])], fn: (a, b) => T.mseLoss(a, b) },
  { name: 'pairwiseDistance', inputs: (g) => [rn(g, [3, 5]), rn(g, [3, 5])], fn: (a, b) => T.pairwiseDistance(a, b) },
]);

describe('autograd in bfloat16', () => {
  test('an attention block backward gives bfloat16 gradients close to float32', () =>
    noLeak(() => {
      const g = new T.Generator(11);
      const x32 = rn(g, [2, 4, 8]).to('bfloat16').to('float32');
      const grads = (['bfloat16', 'float32'] as const).map((dt) => {
        const x = x32.to(dt).requiresGrad_();
        const y = T.layerNorm(T.scaledDotProductAttention(x, x, x), [8], null, null);
        T.gelu(y).sum().backward();
        const gr = x.grad!;
        expect(gr.dtype).toBe(dt);
        return values(gr);
      });
      grads[0]!.forEach((v, i) => expect(Math.abs(v - grads[1]![i]!)).toBeLessThanOrEqual(0.1 + 0.05 * Math.abs(grads[1]![i]!)));
    }));

  test('the float32 detours are differentiable (mseLoss, antialiased bicubic, reflect pad)', () =>
    noLeak(() => {
      const x = T.ones([1, 1, 6, 6], { dtype: 'bfloat16' }).requiresGrad_();
      const y = T.interpolate(T.pad(x, [1, 1, 1, 1], 'reflect'), { size: [4, 4], mode: 'bicubic', antialias: true });
      T.mseLoss(y, T.zeros([1, 1, 4, 4], { dtype: 'bfloat16' })).backward();
      expect(x.grad!.dtype).toBe('bfloat16');
      expect(values(T.sum(x.grad!).to('float32'))[0]).toBeCloseTo(2, 1); // d/dx mean((x)²) summed over a constant image
    }));
});
