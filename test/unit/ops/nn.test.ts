import { describe, expect, test } from 'vitest';

import * as T from '../../../src/index.js';
import { DisposedError, TorchRangeError, TorchTypeError } from '../../../src/index.js';
import { errorOf, expectClose, noLeak, values } from './util.js';

const f = (v: number[] | number[][]) => T.tensor(v);
const f64 = (v: number[] | number[][]) => T.tensor(v, { dtype: 'float64' });
const i64 = (v: number[]) => T.tensor(v, { dtype: 'int64' });
// [1, 1, 4, 4] with values 0..15
const img = () => T.arange(16, undefined, 1, { dtype: 'float32' }).reshape([1, 1, 4, 4]);

describe('conv2d', () => {
  test('a 2x2 kernel of ones sums windows; bias is added', () =>
    noLeak(() => {
      const y = T.conv2d(img(), T.ones([1, 1, 2, 2]), f([1]));
      expect(y.shape).toEqual([1, 1, 3, 3]);
      expect(values(y)).toEqual([11, 15, 19, 27, 31, 35, 43, 47, 51]);
    }));

  test('stride equal to the kernel (patch embedding) and zero padding', () =>
    noLeak(() => {
      expect(values(T.conv2d(img(), T.ones([2, 1, 2, 2]), null, { stride: 2 }))).toEqual([10, 18, 42, 50, 10, 18, 42, 50]);
      const p = T.conv2d(T.ones([1, 1, 2, 2]), T.ones([1, 1, 3, 3]), null, { padding: 1 });
      expect(values(p)).toEqual([4, 4, 4, 4]);
      expect(T.conv2d(T.ones([3, 5, 5]), T.ones([4, 3, 3, 3])).shape).toEqual([4, 3, 3]); // unbatched
      expect(T.conv2d(T.ones([1, 4, 5, 5]), T.ones([4, 1, 3, 3]), null, { groups: 4, dilation: 2 }).shape).toEqual([1, 4, 1, 1]);
    }));
});

describe('normalisation', () => {
  test('layerNorm normalises the trailing dims, then scales and shifts', () =>
    noLeak(() => {
      const s = Math.sqrt(1.5); // (x - 2) / √(2/3) for x = 1, 2, 3
      expectClose(T.layerNorm(f([[1, 2, 3]]), [3], null, null, 0), [-s, 0, s], 1e-6);
      expectClose(T.layerNorm(f([[1, 2, 3]]), [3], f([1, 2, 3]), f([0, 1, 0]), 0), [-s, 1, 3 * s], 1e-6);
      expectClose(
        T.layerNorm(
          f([
            [1, 2],
            [3, 4],
          ]),
          [2, 2],
          null,
          null,
          0,
        ),
        [-1.5, -0.5, 0.5, 1.5].map((v) => v / Math.sqrt(1.25)),
        1e-6,
      );
    }));

  test('rmsNorm in float64 keeps float64 precision', () =>
    noLeak(() => {
      const y = T.rmsNorm(f64([3, 4]), null, 0);
      expect(y.dtype).toBe('float64');
      const r = 1 / Math.sqrt(12.5);
      expectClose(y, [3 * r, 4 * r], 1e-15);
      expectClose(T.rmsNorm(f64([3, 4]), f64([2, -1]), 0), [6 * r, -4 * r], 1e-15);
    }));

  test('rmsNorm of bfloat16 is computed in float32 and cast back', () =>
    noLeak(() => {
      const y = T.rmsNorm(f([3, 4]).to('bfloat16'), null);
      expect(y.dtype).toBe('bfloat16');
      expectClose(y, [0.84765625, 1.1328125]); // 0.848528, 1.131371 rounded to bfloat16
    }));

  test('normalize divides by the p-norm, clamped below by eps', () =>
    noLeak(() => {
      expectClose(
        T.normalize(
          f([
            [3, 4],
            [0, 0],
          ]),
        ),
        [0.6, 0.8, 0, 0],
      );
      expectClose(T.normalize(f([[3, 4]]), 1), [3 / 7, 4 / 7]);
      expectClose(
        T.normalize(
          f([
            [3, 4],
            [0, 2],
          ]),
          2,
          0,
        ),
        [1, 0.8944272, 0, 0.4472136],
      );
    }));
});

describe('softmax and attention', () => {
  test('softmax and logSoftmax', () =>
    noLeak(() => {
      expectClose(T.softmax(f([0, Math.LN2]), 0), [1 / 3, 2 / 3]);
      expectClose(T.logSoftmax(f([0, Math.LN2]), 0), [Math.log(1 / 3), Math.log(2 / 3)]);
      expectClose(f([[1000, 1000]]).softmax(-1), [0.5, 0.5]);
      expect(T.softmax(f([1, 2]), 0, 'float64').dtype).toBe('float64');
      expect(T.softmax(f([1, 2]).to('bfloat16'), 0, 'float32').dtype).toBe('float32');
    }));

  test('scaledDotProductAttention weighs values by softmax(q·k / √d)', () =>
    noLeak(() => {
      const q = f([[1, 0]]);
      const k = f([
        [1, 0],
        [0, 1],
      ]);
      const v = f([
        [10, 0],
        [0, 10],
      ]);
      const w0 = 1 / (1 + Math.exp(-1 / Math.SQRT2));
      expectClose(T.scaledDotProductAttention(q, k, v), [10 * w0, 10 * (1 - w0)], 1e-5);
      const w1 = 1 / (1 + Math.exp(-2));
      expectClose(T.scaledDotProductAttention(q, k, v, { scale: 2 }), [10 * w1, 10 * (1 - w1)], 1e-5);
    }));

  test('masks: boolean (true = attend), additive, and causal', () =>
    noLeak(() => {
      const q = f([
        [1, 0],
        [0, 1],
      ]);
      const k = f([
        [1, 0],
        [0, 1],
      ]);
      const v = f([
        [1, 2],
        [3, 4],
      ]);
      const onlySecond = T.tensor([false, true]);
      expect(values(T.scaledDotProductAttention(q, k, v, { mask: onlySecond }))).toEqual([3, 4, 3, 4]);
      expect(
        values(
          T.scaledDotProductAttention(q, k, v, {
            mask: f([
              [0, -Infinity],
              [0, -Infinity],
            ]),
          }),
        ),
      ).toEqual([1, 2, 1, 2]);
      const causal = values(T.scaledDotProductAttention(q, k, v, { isCausal: true }));
      expect(causal.slice(0, 2)).toEqual([1, 2]); // the first query sees only the first key
    }));

  test('scaledDotProductAttention matches sdpaMath', () =>
    noLeak(() => {
      const g = new T.Generator(3);
      const [q, k, v] = [0, 1, 2].map(() => T.randn([2, 3, 5, 4], { generator: g }));
      const mask = T.gt(T.randn([5, 5], { generator: g }), -0.5);
      const a = T.scaledDotProductAttention(q!, k!, v!, { mask });
      const b = T.sdpaMath(q!, k!, v!, { mask });
      expectClose(a, values(b), 1e-5);
      expectClose(T.scaledDotProductAttention(q!, k!, v!, { isCausal: true }), values(T.sdpaMath(q!, k!, v!, { isCausal: true })), 1e-5);
    }));
});

describe('resampling and padding', () => {
  test('interpolate bilinear with and without alignCorners', () =>
    noLeak(() => {
      const x = f([
        [0, 1],
        [2, 3],
      ]).reshape([1, 1, 2, 2]);
      const a = T.interpolate(x, { size: [4, 4], mode: 'bilinear', alignCorners: true });
      expectClose(a.select(2, 0).flatten(), [0, 1 / 3, 2 / 3, 1]);
      expectClose(a.select(2, 3).flatten(), [2, 7 / 3, 8 / 3, 3]);
      const h = T.interpolate(x, { size: [4, 4], mode: 'bilinear' }); // half-pixel centres, edges clamped
      expectClose(h.select(2, 0).flatten(), [0, 0.25, 0.75, 1]);
    }));

  test('interpolate nearest and bicubic; bicubic keeps constants', () =>
    noLeak(() => {
      const x = f([
        [0, 1],
        [2, 3],
      ]).reshape([1, 1, 2, 2]);
      expect(values(T.interpolate(x, { size: [2, 4], mode: 'nearest' }))).toEqual([0, 0, 1, 1, 2, 2, 3, 3]);
      expectClose(T.interpolate(T.full([1, 2, 3, 5], 2), { size: [7, 4], mode: 'bicubic' }), new Array(56).fill(2), 1e-5);
      expectClose(T.interpolate(T.full([1, 1, 8, 8], 2), { size: [3, 3], mode: 'bicubic', antialias: true }), new Array(9).fill(2), 1e-5);
      // bicubic (a = -0.75) at the midpoints of a ramp: weights [-0.09375, 0.59375, 0.59375, -0.09375]; inside it
      // reproduces the ramp, at the borders the clamped neighbour bends it (0·w0 + 0·w1 + 1·w2 + 2·w3 = 0.40625)
      const r = T.interpolate(f([0, 1, 2, 3]).reshape([1, 1, 1, 4]), { size: [1, 7], mode: 'bicubic', alignCorners: true });
      expectClose(r, [0, 0.40625, 1, 1.5, 2, 2.59375, 3], 1e-5);
    }));

  test('pad constant, reflect, replicate, circular', () =>
    noLeak(() => {
      const x = T.tensor([[[1, 2, 3]]]);
      expect(values(T.pad(x, [1, 2]))).toEqual([0, 1, 2, 3, 0, 0]);
      expect(values(T.pad(x, [1, 0], 'constant', -1))).toEqual([-1, 1, 2, 3]);
      expect(values(T.pad(x, [2, 1], 'reflect'))).toEqual([3, 2, 1, 2, 3, 2]);
      expect(values(T.pad(x, [2, 1], 'replicate'))).toEqual([1, 1, 1, 2, 3, 3]);
      expect(values(T.pad(x, [1, 1], 'circular'))).toEqual([3, 1, 2, 3, 1]);
      expect(T.pad(T.ones([1, 1, 2, 2]), [1, 1, 2, 0]).shape).toEqual([1, 1, 4, 4]);
    }));

  test('avgPool2d and adaptiveAvgPool2d', () =>
    noLeak(() => {
      expect(values(T.avgPool2d(img(), 2))).toEqual([2.5, 4.5, 10.5, 12.5]);
      expect(values(T.avgPool2d(img(), [2, 4]))).toEqual([3.5, 11.5]);
      expect(T.avgPool2d(img(), 3, { stride: 1 }).shape).toEqual([1, 1, 2, 2]);
      // padding counts zeros unless countIncludePad is false
      expect(values(T.avgPool2d(T.ones([1, 1, 2, 2]), 2, { stride: 1, padding: 1 }))).toEqual([0.25, 0.5, 0.25, 0.5, 1, 0.5, 0.25, 0.5, 0.25]);
      expect(values(T.avgPool2d(T.ones([1, 1, 2, 2]), 2, { stride: 1, padding: 1, countIncludePad: false }))).toEqual(new Array(9).fill(1));
      expect(values(T.avgPool2d(img(), 2, { divisorOverride: 1 }))).toEqual([10, 18, 42, 50]);
      expect(values(T.avgPool2d(T.ones([1, 1, 3, 3]), 2, { ceilMode: true }))).toEqual([1, 1, 1, 1]);
      expect(values(T.adaptiveAvgPool2d(img(), 1))).toEqual([7.5]);
      expect(values(T.adaptiveAvgPool2d(img(), [2, 1]))).toEqual([3.5, 11.5]);
      expect(T.adaptiveAvgPool2d(T.ones([2, 5, 7]), [3, 2]).shape).toEqual([2, 3, 2]);
    }));
});

describe('losses', () => {
  test('crossEntropy with class indices: reduction, label smoothing, ignoreIndex', () =>
    noLeak(() => {
      const logits = f([
        [0, 0],
        [0, Math.LN2],
      ]);
      const t = i64([0, 1]);
      const l1 = Math.LN2;
      const l2 = -Math.log(2 / 3);
      expectClose(T.crossEntropy(logits, t), [(l1 + l2) / 2]);
      expectClose(T.crossEntropy(logits, t, { reduction: 'sum' }), [l1 + l2]);
      expectClose(T.crossEntropy(logits, t, { reduction: 'none' }), [l1, l2]);
      expectClose(T.crossEntropy(logits, i64([-100, 1])), [l2]);
      expectClose(T.crossEntropy(logits, i64([0, 1]), { ignoreIndex: 0 }), [l2]);
      // smoothing ε: (1 − ε)·nll + ε·mean over classes of −log p
      const e = 0.2;
      const s2 = (1 - e) * l2 + (e * (-Math.log(1 / 3) - Math.log(2 / 3))) / 2;
      expectClose(T.crossEntropy(logits, t, { labelSmoothing: e, reduction: 'none' }), [l1, s2]);
    }));

  test('crossEntropy with probabilities', () =>
    noLeak(() => {
      const logits = f([[0, Math.LN2]]);
      const p = f([[0.25, 0.75]]);
      expectClose(T.crossEntropy(logits, p), [-(0.25 * Math.log(1 / 3) + 0.75 * Math.log(2 / 3))]);
    }));

  test('mseLoss and pairwiseDistance', () =>
    noLeak(() => {
      expect(T.mseLoss(f([1, 2]), f([3, 2])).item()).toBe(2);
      expect(T.mseLoss(f([1, 2]), f([3, 2]), 'sum').item()).toBe(4);
      expect(values(T.mseLoss(f([1, 2]), f([3, 2]), 'none'))).toEqual([4, 0]);
      expectClose(
        T.pairwiseDistance(
          f([
            [0, 0],
            [1, 1],
          ]),
          f([
            [3, 4],
            [1, 1],
          ]),
          2,
          0,
        ),
        [5, 0],
      );
      expectClose(T.pairwiseDistance(f([[0, 0]]), f([[3, 4]]), 1, 0, true), [7]);
      expect(T.pairwiseDistance(f([[0, 0]]), f([[3, 4]]), 2, 0, true).shape).toEqual([1, 1]);
    }));
});

describe('errors', () => {
  test('wrong ranks and shapes', () =>
    noLeak(() => {
      const e = errorOf(() => T.conv2d(T.ones([4, 4]), T.ones([1, 1, 2, 2])));
      expect(e).toBeInstanceOf(TorchRangeError);
      expect(e.code).toBe('ERR_INVALID_ARG');
      expect(e.message).toBe('conv2d: expected a 3-D or 4-D input [N, C, H, W], received float32 [4, 4]');
      expect(() => T.conv2d(img(), T.ones([1, 2, 2]))).toThrow('conv2d: expected "weight" to be 4-D [out, in/groups, kH, kW], received float32 [1, 2, 2]');
      expect(() => T.conv2d(img(), T.ones([1, 2, 2, 2]))).toThrow(
        'conv2d: Given groups=1, weight of size [1, 2, 2, 2], expected input[1, 1, 4, 4] to have 2 channels, but got 1 channels instead',
      );
      expect(() => T.layerNorm(T.ones([2, 3]), [2], null, null)).toThrow('layerNorm: normalizedShape [2] does not match the trailing dims of float32 [2, 3]');
      expect(() => T.scaledDotProductAttention(T.ones([2, 4]), T.ones([2, 3]), T.ones([2, 3]))).toThrow(
        'sdpa: query float32 [2, 4], key float32 [2, 3] and value float32 [2, 3] must be [..., T, d] with matching head dims and key/value lengths',
      );
      expect(() => T.sdpaMath(T.ones([4]), T.ones([4]), T.ones([4]))).toThrow(
        'sdpaMath: query float32 [4], key float32 [4] and value float32 [4] must be [..., T, d] with matching head dims and key/value lengths',
      );
      expect(() => T.interpolate(T.ones([1, 4, 4]), { size: [2, 2], mode: 'bilinear' })).toThrow(
        'interpolate: expected a 4-D input [N, C, H, W], received float32 [1, 4, 4]',
      );
      expect(() => T.avgPool2d(T.ones([4, 4]), 2)).toThrow('avgPool2d: expected a 3-D or 4-D input [N, C, H, W], received float32 [4, 4]');
      expect(() => T.rmsNorm(i64([1]), null)).toThrow('rmsNorm: expected "input" to be a floating-point Tensor, received Tensor int64 [1]');
    }));

  test('out-of-range dims', () =>
    noLeak(() => {
      const e = errorOf(() => T.softmax(T.ones([2, 3]), 2));
      expect(e).toBeInstanceOf(TorchRangeError);
      expect(e.message).toBe('softmax: dim 2 is out of range for float32 [2, 3] (expected -2..1)');
      expect(() => T.logSoftmax(T.ones([2, 3]), -3)).toThrow('logSoftmax: dim -3 is out of range for float32 [2, 3] (expected -2..1)');
      expect(() => T.normalize(T.ones([2, 3]), 2, 2)).toThrow('normalize: dim 2 is out of range for float32 [2, 3] (expected -2..1)');
    }));

  test('bad option values', () =>
    noLeak(() => {
      const x = img();
      expect(() => T.interpolate(x, { size: [2, 2], mode: 'area' as 'bilinear' })).toThrow(
        'interpolate: mode must be "bilinear", "bicubic" or "nearest", received "area"',
      );
      expect(() => T.interpolate(x, { size: [0, 2], mode: 'bilinear' })).toThrow('interpolate: size must be [height, width] with positive sizes');
      expect(() => T.pad(x, [1, 1], 'wrap' as 'reflect')).toThrow('pad: mode must be constant|reflect|replicate|circular, received "wrap"');
      expect(() => T.mseLoss(x, x, 'avg' as 'mean')).toThrow('mseLoss: reduction must be "mean", "sum" or "none", received "avg"');
      expect(() => T.avgPool2d(x, 0)).toThrow('avgPool2d: kernelSize must be a number or [h, w] with entries >= 1, received [0, 0]');
      expect(() => T.avgPool2d(x, 2, { padding: 2 })).toThrow('avgPool2d: padding [2, 2] must be at most half the kernel size [2, 2]');
      expect(() => T.adaptiveAvgPool2d(x, [1, 2, 3] as unknown as [number, number])).toThrow(
        'adaptiveAvgPool2d: outputSize must be a number or [h, w] with entries >= 1, received [1, 2, 3]',
      );
      const e = errorOf(() => T.crossEntropy(T.ones([2, 3]), i64([0, 5])));
      expect(e).toBeInstanceOf(TorchRangeError);
      expect(e.message).toBe('crossEntropy: Target 5 is out of bounds.');
    }));

  test('non-Tensor and disposed arguments', () =>
    noLeak(() => {
      const e = errorOf(() => T.layerNorm(T.ones([2]), [2], 1 as unknown as T.Tensor, null));
      expect(e).toBeInstanceOf(TorchTypeError);
      expect(e.message).toBe('layerNorm: expected "weight" to be a Tensor, received number 1');
      expect(() => T.scaledDotProductAttention(T.ones([2, 2]), T.ones([2, 2]), T.ones([2, 2]), { mask: 'causal' as unknown as T.Tensor })).toThrow(
        'sdpa: expected "mask" to be a Tensor, received string "causal"',
      );
      const d = T.ones([2, 2]);
      d.dispose();
      const e2 = errorOf(() => T.conv2d(img(), T.ones([1, 1, 2, 2]), d));
      expect(e2).toBeInstanceOf(DisposedError);
      expect(e2.message).toBe('conv2d: "bias" is a disposed Tensor (float32 [2, 2], created by ones)');
      expect(() => T.crossEntropy(T.ones([2, 2]), d)).toThrow('crossEntropy: "target" is a disposed Tensor (float32 [2, 2], created by ones)');
    }));
});
