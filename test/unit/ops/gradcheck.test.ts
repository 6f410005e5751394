// Gradients of every differentiable op used by the ViT and the DINOv3 losses, checked against float64 central
// differences (test/helpers/gradcheck.ts). Each case builds small seeded inputs and must leave no tensor behind.
import { describe, expect, test } from 'vitest';

import * as T from '../../../src/index.js';
import type { Tensor } from '../../../src/index.js';
import { formatReport, gradcheck, type GradcheckOptions } from '../../helpers/gradcheck.js';

type Fn = (...xs: Tensor[]) => Tensor | Tensor[] | { values: Tensor };
interface Case {
  name: string;
  inputs: (r: (shape: number[]) => Tensor) => Tensor[];
  fn: Fn;
  opts?: GradcheckOptions;
}

const f64 = { dtype: 'float64' as const };
const i64 = (v: number[] | number[][]) => T.tensor(v, { dtype: 'int64' });
const bool = (v: boolean[] | boolean[][]) => T.tensor(v, { dtype: 'bool' });
// Positive inputs (log, sqrt, pow, div) and inputs kept away from kinks (abs, clamp).
const pos = (x: Tensor) => x.abs().add(0.5);

function run(c: Case): void {
  const before = T.memory().liveTensors;
  T.scope(() => {
    const g = new T.Generator(1234);
    const r = (shape: number[]) => T.randn(shape, { ...f64, generator: g });
    const report = gradcheck(c.name, c.fn, c.inputs(r), c.opts);
    expect(report.ok, formatReport(report, c.opts)).toBe(true);
    expect(report.checked).toBeGreaterThan(0);
  });
  expect(T.memory().liveTensors).toBe(before);
}

function cases(group: string, list: Case[]): void {
  describe(group, () => {
    for (const c of list) test(c.name, () => run(c));
  });
}

cases('linear algebra', [
  { name: 'linear with bias', inputs: (r) => [r([2, 3, 4]), r([5, 4]), r([5])], fn: (x, w, b) => T.linear(x, w, b) },
  { name: 'linear without bias', inputs: (r) => [r([3, 4]), r([2, 4])], fn: (x, w) => T.linear(x, w) },
  { name: 'matmul batched with broadcasting', inputs: (r) => [r([2, 1, 3, 4]), r([3, 4, 2])], fn: (a, b) => T.matmul(a, b) },
  { name: 'matmul matrix @ vector', inputs: (r) => [r([3, 4]), r([4])], fn: (a, b) => T.matmul(a, b) },
  { name: 'mm', inputs: (r) => [r([3, 4]), r([4, 2])], fn: (a, b) => T.mm(a, b) },
  { name: 'bmm', inputs: (r) => [r([2, 3, 4]), r([2, 4, 5])], fn: (a, b) => T.bmm(a, b) },
  {
    name: 'baddbmm',
    inputs: (r) => [r([2, 3, 5]), r([2, 3, 4]), r([2, 4, 5])],
    fn: (c, a, b) => T.baddbmm(c, a, b, { beta: 0.5, alpha: 2 }),
  },
  { name: 'einsum attention scores', inputs: (r) => [r([1, 2, 3, 4]), r([1, 2, 5, 4])], fn: (q, k) => T.einsum('bhnd,bhmd->bhnm', q, k) },
  { name: 'einsum with a reduction', inputs: (r) => [r([3, 4]), r([4])], fn: (a, b) => T.einsum('ij,j->i', a, b) },
  { name: 'outer', inputs: (r) => [r([3]), r([4])], fn: (a, b) => T.outer(a, b) },
  { name: 'cdist p=2', inputs: (r) => [r([2, 3, 4]), r([2, 5, 4])], fn: (a, b) => T.cdist(a, b) },
  { name: 'cdist p=1', inputs: (r) => [r([3, 4]), r([2, 4])], fn: (a, b) => T.cdist(a, b, 1) },
]);

cases('nn', [
  {
    name: 'conv2d stride 16 (patch embedding)',
    inputs: (r) => [r([1, 3, 16, 32]), r([2, 3, 16, 16]), r([2])],
    fn: (x, w, b) => T.conv2d(x, w, b, { stride: 16 }),
  },
  {
    name: 'conv2d 3x3 padded',
    inputs: (r) => [r([2, 3, 5, 5]), r([4, 3, 3, 3]), r([4])],
    fn: (x, w, b) => T.conv2d(x, w, b, { padding: 1 }),
  },
  {
    name: 'conv2d depthwise stride 2 without bias',
    inputs: (r) => [r([1, 4, 6, 6]), r([4, 1, 3, 3])],
    fn: (x, w) => T.conv2d(x, w, null, { stride: 2, padding: 1, groups: 4 }),
  },
  {
    name: 'layerNorm with weight and bias',
    inputs: (r) => [r([2, 3, 6]), r([6]), r([6])],
    fn: (x, w, b) => T.layerNorm(x, [6], w, b, 1e-6),
  },
  { name: 'layerNorm without affine', inputs: (r) => [r([4, 5])], fn: (x) => T.layerNorm(x, [5], null, null) },
  { name: 'rmsNorm with weight', inputs: (r) => [r([2, 3, 6]), r([6])], fn: (x, w) => T.rmsNorm(x, w) },
  { name: 'rmsNorm without weight', inputs: (r) => [r([3, 5])], fn: (x) => T.rmsNorm(x, null) },
  { name: 'gelu exact', inputs: (r) => [r([3, 5])], fn: (x) => T.gelu(x) },
  { name: 'gelu tanh', inputs: (r) => [r([3, 5])], fn: (x) => T.gelu(x, 'tanh') },
  { name: 'silu', inputs: (r) => [r([3, 5])], fn: (x) => T.silu(x) },
  { name: 'softmax', inputs: (r) => [r([3, 5])], fn: (x) => T.softmax(x, -1) },
  { name: 'softmax over dim 0', inputs: (r) => [r([3, 5])], fn: (x) => T.softmax(x, 0) },
  { name: 'logSoftmax', inputs: (r) => [r([3, 5])], fn: (x) => T.logSoftmax(x, 1) },
  {
    name: 'scaledDotProductAttention',
    inputs: (r) => [r([1, 2, 4, 3]), r([1, 2, 5, 3]), r([1, 2, 5, 3])],
    fn: (q, k, v) => T.scaledDotProductAttention(q, k, v),
  },
  {
    name: 'scaledDotProductAttention with a boolean mask',
    inputs: (r) => [
      r([1, 2, 3, 4]),
      r([1, 2, 3, 4]),
      r([1, 2, 3, 4]),
      bool([
        [true, false, true],
        [true, true, false],
        [false, true, true],
      ]),
    ],
    fn: (q, k, v, m) => T.scaledDotProductAttention(q, k, v, { mask: m }),
  },
  {
    name: 'scaledDotProductAttention with an additive mask and a scale',
    inputs: (r) => [r([2, 3, 4]), r([2, 3, 4]), r([2, 3, 4]), r([3, 3])],
    fn: (q, k, v, m) => T.scaledDotProductAttention(q, k, v, { mask: m, scale: 0.3 }),
    opts: { wrt: [0, 1, 2, 3] },
  },
  {
    name: 'scaledDotProductAttention causal',
    inputs: (r) => [r([1, 4, 3]), r([1, 4, 3]), r([1, 4, 3])],
    fn: (q, k, v) => T.scaledDotProductAttention(q, k, v, { isCausal: true }),
  },
  {
    name: 'sdpaMath',
    inputs: (r) => [r([1, 2, 4, 3]), r([1, 2, 5, 3]), r([1, 2, 5, 3])],
    fn: (q, k, v) => T.sdpaMath(q, k, v),
  },
  {
    name: 'sdpaMath with a boolean mask and causal',
    inputs: (r) => [
      r([1, 3, 4]),
      r([1, 3, 4]),
      r([1, 3, 4]),
      bool([
        [true, true, true],
        [false, true, true],
        [true, true, true],
      ]),
    ],
    fn: (q, k, v, m) => T.sdpaMath(q, k, v, { mask: m, isCausal: true }),
  },
  { name: 'normalize', inputs: (r) => [r([3, 4])], fn: (x) => T.normalize(x, 2, -1) },
  { name: 'normalize over dim 0', inputs: (r) => [r([3, 4])], fn: (x) => T.normalize(x, 2, 0) },
  { name: 'pairwiseDistance', inputs: (r) => [r([3, 4]), r([3, 4])], fn: (a, b) => T.pairwiseDistance(a, b) },
  { name: 'mseLoss', inputs: (r) => [r([3, 4]), r([3, 4])], fn: (a, b) => T.mseLoss(a, b) },
  { name: 'mseLoss sum', inputs: (r) => [r([3, 4]), r([3, 4])], fn: (a, b) => T.mseLoss(a, b, 'sum') },
  { name: 'crossEntropy with class indices', inputs: (r) => [r([4, 5]), i64([1, 0, 4, 2])], fn: (x, t) => T.crossEntropy(x, t) },
  {
    name: 'crossEntropy with class indices, label smoothing and ignoreIndex',
    inputs: (r) => [r([4, 5]), i64([1, -100, 4, 2])],
    fn: (x, t) => T.crossEntropy(x, t, { labelSmoothing: 0.1 }),
  },
  {
    name: 'crossEntropy with probabilities',
    inputs: (r) => [r([3, 5]), T.softmax(r([3, 5]), -1)],
    fn: (x, p) => T.crossEntropy(x, p),
    opts: { wrt: [0, 1] },
  },
  {
    name: 'crossEntropy with probabilities, reduction none',
    inputs: (r) => [r([3, 5]), T.softmax(r([3, 5]), -1)],
    fn: (x, p) => T.crossEntropy(x, p, { reduction: 'none' }),
  },
  { name: 'interpolate bilinear', inputs: (r) => [r([1, 2, 3, 4])], fn: (x) => T.interpolate(x, { size: [5, 6], mode: 'bilinear' }) },
  {
    name: 'interpolate bilinear alignCorners',
    inputs: (r) => [r([1, 2, 3, 4])],
    fn: (x) => T.interpolate(x, { size: [5, 3], mode: 'bilinear', alignCorners: true }),
  },
  { name: 'interpolate bicubic', inputs: (r) => [r([1, 2, 4, 4])], fn: (x) => T.interpolate(x, { size: [6, 3], mode: 'bicubic' }) },
  {
    name: 'interpolate bicubic alignCorners',
    inputs: (r) => [r([1, 2, 4, 4])],
    fn: (x) => T.interpolate(x, { size: [6, 5], mode: 'bicubic', alignCorners: true }),
  },
  {
    name: 'interpolate bicubic antialias (downsampling)',
    inputs: (r) => [r([1, 2, 8, 6])],
    fn: (x) => T.interpolate(x, { size: [3, 4], mode: 'bicubic', antialias: true }),
  },
  {
    name: 'interpolate bilinear antialias (downsampling)',
    inputs: (r) => [r([1, 1, 8, 6])],
    fn: (x) => T.interpolate(x, { size: [3, 4], mode: 'bilinear', antialias: true }),
  },
  { name: 'interpolate nearest', inputs: (r) => [r([1, 1, 3, 3])], fn: (x) => T.interpolate(x, { size: [5, 4], mode: 'nearest' }) },
  { name: 'pad constant', inputs: (r) => [r([1, 2, 3, 3])], fn: (x) => T.pad(x, [1, 2, 0, 1], 'constant', 0.5) },
  { name: 'pad reflect', inputs: (r) => [r([1, 2, 3, 3])], fn: (x) => T.pad(x, [1, 1, 2, 1], 'reflect') },
  { name: 'pad replicate', inputs: (r) => [r([1, 2, 3, 3])], fn: (x) => T.pad(x, [2, 1, 1, 1], 'replicate') },
  { name: 'avgPool2d', inputs: (r) => [r([1, 2, 4, 6])], fn: (x) => T.avgPool2d(x, 2) },
  {
    name: 'avgPool2d padded, stride 1, countIncludePad false',
    inputs: (r) => [r([1, 1, 4, 4])],
    fn: (x) => T.avgPool2d(x, 3, { stride: 1, padding: 1, countIncludePad: false }),
  },
  { name: 'adaptiveAvgPool2d', inputs: (r) => [r([1, 2, 5, 7])], fn: (x) => T.adaptiveAvgPool2d(x, [2, 3]) },
]);

cases('pointwise', [
  { name: 'add with broadcasting', inputs: (r) => [r([2, 3]), r([3])], fn: (a, b) => T.add(a, b) },
  { name: 'add with alpha', inputs: (r) => [r([2, 3]), r([2, 3])], fn: (a, b) => T.add(a, b, 0.5) },
  { name: 'sub', inputs: (r) => [r([2, 3]), r([2, 1])], fn: (a, b) => T.sub(a, b) },
  { name: 'mul', inputs: (r) => [r([2, 3]), r([2, 3])], fn: (a, b) => T.mul(a, b) },
  { name: 'mul by a scalar', inputs: (r) => [r([2, 3])], fn: (a) => T.mul(a, -1.5) },
  { name: 'div', inputs: (r) => [r([2, 3]), pos(r([2, 3]))], fn: (a, b) => T.div(a, b) },
  { name: 'pow with a scalar exponent', inputs: (r) => [pos(r([2, 3]))], fn: (a) => T.pow(a, 2.5) },
  { name: 'pow with a tensor exponent', inputs: (r) => [pos(r([2, 3])), r([2, 3])], fn: (a, b) => T.pow(a, b) },
  { name: 'exp', inputs: (r) => [r([2, 3])], fn: (a) => T.exp(a) },
  { name: 'log', inputs: (r) => [pos(r([2, 3]))], fn: (a) => T.log(a) },
  { name: 'log1p', inputs: (r) => [pos(r([2, 3]))], fn: (a) => T.log1p(a) },
  { name: 'sqrt', inputs: (r) => [pos(r([2, 3]))], fn: (a) => T.sqrt(a) },
  { name: 'rsqrt', inputs: (r) => [pos(r([2, 3]))], fn: (a) => T.rsqrt(a) },
  { name: 'sin', inputs: (r) => [r([2, 3])], fn: (a) => T.sin(a) },
  { name: 'cos', inputs: (r) => [r([2, 3])], fn: (a) => T.cos(a) },
  { name: 'tanh', inputs: (r) => [r([2, 3])], fn: (a) => T.tanh(a) },
  { name: 'sigmoid', inputs: (r) => [r([2, 3])], fn: (a) => T.sigmoid(a) },
  { name: 'erf', inputs: (r) => [r([2, 3])], fn: (a) => T.erf(a) },
  { name: 'neg', inputs: (r) => [r([2, 3])], fn: (a) => T.neg(a) },
  {
    name: 'abs',
    inputs: () => [
      T.tensor(
        [
          [-1.5, 0.7, 2],
          [-0.3, 1.1, -2.2],
        ],
        f64,
      ),
    ],
    fn: (a) => T.abs(a),
  },
  {
    name: 'relu',
    inputs: () => [
      T.tensor(
        [
          [-1.5, 0.7, 2],
          [-0.3, 1.1, -2.2],
        ],
        f64,
      ),
    ],
    fn: (a) => T.relu(a),
  },
  { name: 'reciprocal', inputs: (r) => [pos(r([2, 3]))], fn: (a) => T.reciprocal(a) },
  { name: 'square', inputs: (r) => [r([2, 3])], fn: (a) => T.square(a) },
  { name: 'clamp with numbers', inputs: () => [T.tensor([-2, -0.4, 0.1, 0.6, 1.5, 3], f64)], fn: (a) => T.clamp(a, -0.5, 1) },
  {
    name: 'clamp with tensor bounds',
    inputs: () => [T.tensor([-2, -0.4, 0.1, 0.6], f64), T.tensor([-1, -1, 0.2, 0], f64), T.tensor([1, 1, 1, 0.5], f64)],
    fn: (a, lo, hi) => T.clamp(a, lo, hi),
    opts: { wrt: [0, 1, 2] },
  },
  { name: 'clampMin', inputs: () => [T.tensor([-2, -0.4, 0.1, 0.6], f64)], fn: (a) => T.clampMin(a, 0) },
  { name: 'clampMax with a tensor', inputs: () => [T.tensor([-2, -0.4, 0.1, 0.6], f64), T.tensor([0, 0, 0, 0], f64)], fn: (a, b) => T.clampMax(a, b) },
  { name: 'maximum', inputs: () => [T.tensor([-2, 0.4], f64), T.tensor([1, -1], f64)], fn: (a, b) => T.maximum(a, b) },
  {
    name: 'where',
    inputs: (r) => [
      bool([
        [true, false, true],
        [false, false, true],
      ]),
      r([2, 3]),
      r([2, 3]),
    ],
    fn: (c, a, b) => T.where(c, a, b),
  },
  { name: 'where with a scalar', inputs: (r) => [bool([true, false, true]), r([3])], fn: (c, a) => T.where(c, a, 0) },
  { name: 'maskedFill', inputs: (r) => [r([2, 3]), bool([true, false, true])], fn: (a, m) => T.maskedFill(a, m, -1) },
  { name: 'lerp with a scalar weight', inputs: (r) => [r([2, 3]), r([2, 3])], fn: (a, b) => T.lerp(a, b, 0.3) },
  { name: 'lerp with a tensor weight', inputs: (r) => [r([2, 3]), r([2, 3]), r([2, 3])], fn: (a, b, w) => T.lerp(a, b, w) },
  { name: 'addcmul', inputs: (r) => [r([2, 3]), r([2, 3]), r([3])], fn: (a, b, c) => T.addcmul(a, b, c, 0.5) },
]);

cases('reductions', [
  { name: 'sum of all', inputs: (r) => [r([2, 3])], fn: (a) => T.sum(a) },
  { name: 'sum over dims with keepdim', inputs: (r) => [r([2, 3, 4])], fn: (a) => T.sum(a, [0, 2], true) },
  { name: 'mean of all', inputs: (r) => [r([2, 3])], fn: (a) => T.mean(a) },
  { name: 'mean over a dim', inputs: (r) => [r([2, 3])], fn: (a) => T.mean(a, -1) },
  { name: 'prod', inputs: (r) => [r([2, 3])], fn: (a) => T.prod(a, 1) },
  { name: 'norm of all', inputs: (r) => [r([2, 3])], fn: (a) => T.norm(a) },
  { name: 'norm over a dim', inputs: (r) => [r([2, 3])], fn: (a) => T.norm(a, 2, 1, true) },
  { name: 'norm p=1', inputs: (r) => [r([2, 3])], fn: (a) => T.norm(a, 1, 0) },
  { name: 'logsumexp', inputs: (r) => [r([2, 3, 4])], fn: (a) => T.logsumexp(a, -1) },
  { name: 'max values', inputs: (r) => [r([2, 3])], fn: (a) => T.max(a) },
  { name: 'min values', inputs: (r) => [r([2, 3])], fn: (a) => T.min(a) },
  { name: 'maxDim values', inputs: (r) => [r([3, 4])], fn: (a) => T.maxDim(a, 1) },
  { name: 'amax', inputs: (r) => [r([3, 4])], fn: (a) => T.amax(a, 0) },
  { name: 'topk values', inputs: (r) => [r([3, 5])], fn: (a) => T.topk(a, 2) },
  { name: 'sort values', inputs: (r) => [r([3, 4])], fn: (a) => T.sort(a, 1, true) },
  { name: 'var', inputs: (r) => [r([3, 4])], fn: (a) => T.variance(a, 1) },
  { name: 'std', inputs: (r) => [r([3, 4])], fn: (a) => T.std(a, 0, 0) },
  { name: 'cumsum', inputs: (r) => [r([3, 4])], fn: (a) => T.cumsum(a, 1) },
]);

cases('shape and indexing', [
  { name: 'cat', inputs: (r) => [r([2, 3]), r([1, 3])], fn: (a, b) => T.cat([a, b], 0) },
  { name: 'stack', inputs: (r) => [r([2, 3]), r([2, 3])], fn: (a, b) => T.stack([a, b], 1) },
  { name: 'reshape', inputs: (r) => [r([2, 3])], fn: (a) => T.reshape(a, [3, 2]) },
  { name: 'permute', inputs: (r) => [r([2, 3, 4])], fn: (a) => T.permute(a, [2, 0, 1]) },
  { name: 'transpose', inputs: (r) => [r([2, 3, 4])], fn: (a) => T.transpose(a, 0, 2) },
  { name: 't', inputs: (r) => [r([2, 3])], fn: (a) => T.t(a) },
  { name: 'narrow', inputs: (r) => [r([4, 3])], fn: (a) => T.narrow(a, 0, 1, 2) },
  { name: 'slice with a step', inputs: (r) => [r([5, 3])], fn: (a) => T.slice(a, 0, 1, null, 2) },
  { name: 'select', inputs: (r) => [r([4, 3])], fn: (a) => T.select(a, 1, -1) },
  { name: 'expand', inputs: (r) => [r([3, 1])], fn: (a) => T.expand(a, [2, 3, 4]) },
  { name: 'repeat', inputs: (r) => [r([2, 3])], fn: (a) => T.repeat(a, [2, 1, 2]) },
  { name: 'roll', inputs: (r) => [r([3, 4])], fn: (a) => T.roll(a, [1, -2], [0, 1]) },
  { name: 'flip', inputs: (r) => [r([3, 4])], fn: (a) => T.flip(a, [0, 1]) },
  { name: 'squeeze and unsqueeze', inputs: (r) => [r([3, 1, 2])], fn: (a) => T.unsqueeze(T.squeeze(a, 1), 0) },
  { name: 'flatten and unflatten', inputs: (r) => [r([2, 3, 4])], fn: (a) => T.unflatten(T.flatten(a, 1), 1, [4, 3]) },
  { name: 'movedim', inputs: (r) => [r([2, 3, 4])], fn: (a) => T.movedim(a, 0, -1) },
  { name: 'split', inputs: (r) => [r([5, 2])], fn: (a) => T.split(a, [2, 3]) },
  { name: 'chunk', inputs: (r) => [r([4, 2])], fn: (a) => T.chunk(a, 2) },
  { name: 'unbind', inputs: (r) => [r([3, 2])], fn: (a) => T.unbind(a, 1) },
  { name: 'tril and triu', inputs: (r) => [r([3, 4])], fn: (a) => [T.tril(a, -1), T.triu(a, 1)] },
  { name: 'diag and diagonal', inputs: (r) => [r([3, 3]), r([3])], fn: (a, v) => [T.diagonal(a, 1), T.diag(v, -1)] },
  { name: 'index with an int64 tensor', inputs: (r) => [r([4, 3]), i64([3, 0, 3])], fn: (a, i) => T.index(a, [i]) },
  {
    name: 'index with a null and a boolean mask',
    inputs: (r) => [r([2, 3]), bool([true, false, true])],
    fn: (a, m) => T.index(a, [null, m]),
  },
  { name: 'indexSelect', inputs: (r) => [r([4, 3]), i64([2, 0, 2])], fn: (a, i) => T.indexSelect(a, 0, i) },
  {
    name: 'gather',
    inputs: (r) => [
      r([3, 4]),
      i64([
        [0, 3],
        [1, 1],
        [2, 0],
      ]),
    ],
    fn: (a, i) => T.gather(a, 1, i),
  },
  {
    name: 'scatter with a tensor source',
    inputs: (r) => [
      r([3, 4]),
      i64([
        [0, 3],
        [1, 2],
        [2, 0],
      ]),
      r([3, 2]),
    ],
    fn: (a, i, s) => T.scatter(a, 1, i, s),
  },
  { name: 'scatter with a value', inputs: (r) => [r([3, 4]), i64([[0], [2], [3]])], fn: (a, i) => T.scatter(a, 1, i, 2) },
  {
    name: 'scatterAdd with repeated indices',
    inputs: (r) => [
      r([3, 4]),
      i64([
        [0, 0],
        [1, 2],
        [3, 3],
      ]),
      r([3, 2]),
    ],
    fn: (a, i, s) => T.scatterAdd(a, 1, i, s),
  },
  {
    name: 'indexPut',
    inputs: (r) => [r([4, 3]), i64([0, 2]), r([2, 3])],
    fn: (a, i, v) => T.indexPut(a, [i], v),
  },
  {
    name: 'indexPut accumulating repeated indices',
    inputs: (r) => [r([4, 3]), i64([1, 1, 3]), r([3, 3])],
    fn: (a, i, v) => T.indexPut(a, [i], v, true),
  },
  {
    name: 'indexPut_ on a clone',
    inputs: (r) => [r([4, 3]), i64([3]), r([1, 3])],
    fn: (a, i, v) => T.indexPut_(a.clone(), [i], v),
  },
]);

describe('the checker itself', () => {
  test('reports a wrong gradient with the op name and the worst index', () => {
    const before = T.memory().liveTensors;
    T.scope(() => {
      const x = T.tensor(
        [
          [0.5, -1],
          [2, 0.25],
        ],
        f64,
      );
      // The forward is x², but detach() hides one factor from autograd, so the analytic grad is x instead of 2x.
      const r = gradcheck('fakeSquare', (a) => a.mul(a.detach()), [x]);
      expect(r.ok).toBe(false);
      expect(r.worst!.input).toBe(0);
      expect(r.worst!.index).toEqual([1, 0]); // the largest |x|: the error is |x|·|w|
      expect(r.maxAbsErr).toBeGreaterThan(0.4);
      expect(formatReport(r)).toMatch(/^gradcheck\(fakeSquare\) FAILED: worst at input 0 \[1, 0\]: analytic .* vs numeric .*; max abs err/);
    });
    expect(T.memory().liveTensors).toBe(before);
  });

  test('refuses inputs that are not float64', () => {
    const x = T.ones([2]);
    expect(() => gradcheck('exp', (a) => a.exp(), [x], { wrt: [0] })).toThrow('gradcheck(exp): input 0 must be a float64 Tensor, received float32');
    x.dispose();
  });
});
