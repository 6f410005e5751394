// Neural-network functional ops (mirrors native/src/ops/nn.cc).
import { native } from '../native/binding.js';
import type { DType } from '../tensor/tensor.js';
import { handleOf as h, type Tensor, wrap } from '../tensor/tensor.js';
import { installMethods } from './install.js';
import { TorchTypeError } from '../native/errors.js';

const pair = (v: number | number[]) => (typeof v === 'number' ? [v, v] : v);
const opt = (t: Tensor | null | undefined, op: string, name: string) => (t ? h(t, op, name) : null);
/** The options object of `op` ({} when omitted); anything but a plain object is an ERR_INVALID_ARG TorchTypeError. */
function opts<T extends object>(o: T | undefined, op: string): T {
  if (o === undefined) return {} as T;
  if (o === null || typeof o !== 'object' || Array.isArray(o))
    throw new TorchTypeError(`${op}: expected the options to be an object, received ${o === null ? 'null' : typeof o}`, 'ERR_INVALID_ARG');
  return o;
}

export interface Conv2dOptions {
  stride?: number | [number, number];
  padding?: number | [number, number];
  dilation?: number | [number, number];
  groups?: number;
}
export const conv2d = (x: Tensor, weight: Tensor, bias?: Tensor | null, options?: Conv2dOptions) => {
  const o = opts(options, 'conv2d');
  return wrap(
    native.conv2d(
      h(x, 'conv2d', 'input'),
      h(weight, 'conv2d', 'weight'),
      opt(bias, 'conv2d', 'bias'),
      pair(o.stride ?? 1),
      pair(o.padding ?? 0),
      pair(o.dilation ?? 1),
      o.groups ?? 1,
    ),
  );
};
export const layerNorm = (x: Tensor, normalizedShape: number[], weight: Tensor | null, bias: Tensor | null, eps = 1e-5) =>
  wrap(native.layerNorm(h(x, 'layerNorm', 'input'), normalizedShape, opt(weight, 'layerNorm', 'weight'), opt(bias, 'layerNorm', 'bias'), eps));
/** RMSNorm computed in float32: x·rsqrt(mean(x²)+eps), cast back, times weight (dinov3/layers/rms_norm.py::RMSNorm). */
export const rmsNorm = (x: Tensor, weight: Tensor | null, eps = 1e-5) => wrap(native.rmsNorm(h(x, 'rmsNorm', 'input'), opt(weight, 'rmsNorm', 'weight'), eps));
export const softmax = (x: Tensor, dim: number, dtype?: DType) => wrap(native.softmax(h(x, 'softmax', 'input'), dim, dtype));
export const logSoftmax = (x: Tensor, dim: number, dtype?: DType) => wrap(native.logSoftmax(h(x, 'logSoftmax', 'input'), dim, dtype));

export interface SdpaOptions {
  mask?: Tensor | null;
  dropout?: number;
  isCausal?: boolean;
  scale?: number;
}
/** Scaled dot-product attention over [..., T, d] (flash/efficient kernels on libtorch 2.x, math fallback on 1.13). */
export const scaledDotProductAttention = (q: Tensor, k: Tensor, v: Tensor, options?: SdpaOptions) => {
  const o = opts(options, 'scaledDotProductAttention');
  return wrap(
    native.sdpa(
      h(q, 'sdpa', 'query'),
      h(k, 'sdpa', 'key'),
      h(v, 'sdpa', 'value'),
      opt(o.mask, 'sdpa', 'mask'),
      o.dropout ?? 0,
      o.isCausal ?? false,
      o.scale ?? null,
    ),
  );
};
/** The reference composition softmax(q kᵀ · scale) v. */
export const sdpaMath = (q: Tensor, k: Tensor, v: Tensor, options?: SdpaOptions) => {
  const o = opts(options, 'sdpaMath');
  return wrap(
    native.sdpaMath(
      h(q, 'sdpaMath', 'query'),
      h(k, 'sdpaMath', 'key'),
      h(v, 'sdpaMath', 'value'),
      opt(o.mask, 'sdpaMath', 'mask'),
      o.dropout ?? 0,
      o.isCausal ?? false,
      o.scale ?? null,
    ),
  );
};

export interface InterpolateOptions {
  size: [number, number];
  mode: 'bilinear' | 'bicubic' | 'nearest';
  alignCorners?: boolean;
  antialias?: boolean;
}
export const interpolate = (x: Tensor, options: InterpolateOptions) => {
  const o = opts(options, 'interpolate');
  return wrap(native.interpolate(h(x, 'interpolate', 'input'), o.size, o.mode, o.alignCorners ?? false, o.antialias ?? false));
};
export const pad = (x: Tensor, pads: number[], mode: 'constant' | 'reflect' | 'replicate' | 'circular' = 'constant', value = 0) =>
  wrap(native.pad(h(x, 'pad', 'input'), pads, mode, mode === 'constant' ? value : null));
export interface AvgPool2dOptions {
  stride?: number | [number, number];
  padding?: number | [number, number];
  ceilMode?: boolean;
  countIncludePad?: boolean;
  divisorOverride?: number;
}
/** Average pooling over [N, C, H, W] (or [C, H, W]) windows of `kernelSize` (stride defaults to the kernel size). */
export const avgPool2d = (x: Tensor, kernelSize: number | [number, number], options?: AvgPool2dOptions) => {
  const o = opts(options, 'avgPool2d');
  return wrap(
    native.avgPool2d(
      h(x, 'avgPool2d', 'input'),
      pair(kernelSize),
      o.stride === undefined ? null : pair(o.stride),
      pair(o.padding ?? 0),
      o.ceilMode ?? false,
      o.countIncludePad ?? true,
      o.divisorOverride ?? null,
    ),
  );
};
/** Average pooling to a fixed output size [h, w]. */
export const adaptiveAvgPool2d = (x: Tensor, outputSize: number | [number, number]) =>
  wrap(native.adaptiveAvgPool2d(h(x, 'adaptiveAvgPool2d', 'input'), pair(outputSize)));
/** x / max(‖x‖_p, eps) along `dim` (torch.nn.functional.normalize). */
export const normalize = (x: Tensor, p = 2, dim = -1, eps = 1e-12) => wrap(native.normalize(h(x, 'normalize', 'input'), p, dim, eps));
export const crossEntropy = (
  logits: Tensor,
  target: Tensor,
  options?: { reduction?: 'mean' | 'sum' | 'none'; labelSmoothing?: number; ignoreIndex?: number },
) => {
  const o = opts(options, 'crossEntropy');
  return wrap(
    native.crossEntropy(
      h(logits, 'crossEntropy', 'input'),
      h(target, 'crossEntropy', 'target'),
      o.reduction ?? 'mean',
      o.labelSmoothing ?? 0,
      o.ignoreIndex ?? -100,
    ),
  );
};
export const mseLoss = (x: Tensor, target: Tensor, reduction: 'mean' | 'sum' | 'none' = 'mean') =>
  wrap(native.mseLoss(h(x, 'mseLoss', 'input'), h(target, 'mseLoss', 'target'), reduction));
/** ‖x1 − x2 + eps‖_p over the last dim. */
export const pairwiseDistance = (x1: Tensor, x2: Tensor, p = 2, eps = 1e-6, keepdim = false) =>
  wrap(native.pairwiseDistance(h(x1, 'pairwiseDistance', 'x1'), h(x2, 'pairwiseDistance', 'x2'), p, eps, keepdim));

const methods = {
  conv2d,
  layerNorm,
  rmsNorm,
  softmax,
  logSoftmax,
  scaledDotProductAttention,
  sdpaMath,
  interpolate,
  pad,
  avgPool2d,
  adaptiveAvgPool2d,
  normalize,
  crossEntropy,
  mseLoss,
  pairwiseDistance,
};
installMethods(methods);
type Methods = typeof methods;
type AsMethod<F> = F extends (self: Tensor, ...args: infer A) => infer R ? (...args: A) => R : never;
export type NNMethods = { [K in keyof Methods]: AsMethod<Methods[K]> };
declare module '../tensor/tensor.js' {
  interface Tensor extends NNMethods {}
}
