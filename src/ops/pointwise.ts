// Elementwise ops (mirrors native/src/ops/pointwise.cc). In-place variants end in `_` and return the input.
import { native, type NativeTensor } from '../native/binding.js';
import { TorchRangeError, TorchTypeError } from '../native/errors.js';
import { describe, handleOf as h, operandOf as o, Tensor, wrap } from '../tensor/tensor.js';
import { expectOptions, show } from '../tensor/args.js';
import { installMethods } from './install.js';

type Operand = Tensor | number;

export const add = (a: Tensor, b: Operand, alpha?: number) => wrap(native.add(h(a, 'add', 'input'), o(b, 'add', 'other'), alpha));
export const sub = (a: Tensor, b: Operand, alpha?: number) => wrap(native.sub(h(a, 'sub', 'input'), o(b, 'sub', 'other'), alpha));
export const mul = (a: Tensor, b: Operand) => wrap(native.mul(h(a, 'mul', 'input'), o(b, 'mul', 'other')));
export const div = (a: Tensor, b: Operand) => wrap(native.div(h(a, 'div', 'input'), o(b, 'div', 'other')));
export const pow = (a: Tensor, b: Operand) => wrap(native.pow(h(a, 'pow', 'input'), o(b, 'pow', 'other')));
export const remainder = (a: Tensor, b: Operand) => wrap(native.remainder(h(a, 'remainder', 'input'), o(b, 'remainder', 'other')));
export const floorDivide = (a: Tensor, b: Operand) => wrap(native.floorDivide(h(a, 'floorDivide', 'input'), o(b, 'floorDivide', 'other')));
export const maximum = (a: Tensor, b: Operand) => wrap(native.maximum(h(a, 'maximum', 'input'), o(b, 'maximum', 'other')));
export const minimum = (a: Tensor, b: Operand) => wrap(native.minimum(h(a, 'minimum', 'input'), o(b, 'minimum', 'other')));
export const eq = (a: Tensor, b: Operand) => wrap(native.eq(h(a, 'eq', 'input'), o(b, 'eq', 'other')));
export const ne = (a: Tensor, b: Operand) => wrap(native.ne(h(a, 'ne', 'input'), o(b, 'ne', 'other')));
export const lt = (a: Tensor, b: Operand) => wrap(native.lt(h(a, 'lt', 'input'), o(b, 'lt', 'other')));
export const le = (a: Tensor, b: Operand) => wrap(native.le(h(a, 'le', 'input'), o(b, 'le', 'other')));
export const gt = (a: Tensor, b: Operand) => wrap(native.gt(h(a, 'gt', 'input'), o(b, 'gt', 'other')));
export const ge = (a: Tensor, b: Operand) => wrap(native.ge(h(a, 'ge', 'input'), o(b, 'ge', 'other')));

export function add_(a: Tensor, b: Operand, alpha?: number): Tensor {
  native.add_(h(a, 'add_', 'input'), o(b, 'add_', 'other'), alpha);
  return a;
}
export function sub_(a: Tensor, b: Operand, alpha?: number): Tensor {
  native.sub_(h(a, 'sub_', 'input'), o(b, 'sub_', 'other'), alpha);
  return a;
}
export function mul_(a: Tensor, b: Operand): Tensor {
  native.mul_(h(a, 'mul_', 'input'), o(b, 'mul_', 'other'));
  return a;
}
export function div_(a: Tensor, b: Operand): Tensor {
  native.div_(h(a, 'div_', 'input'), o(b, 'div_', 'other'));
  return a;
}
export function pow_(a: Tensor, b: Operand): Tensor {
  native.pow_(h(a, 'pow_', 'input'), o(b, 'pow_', 'other'));
  return a;
}

export const neg = (a: Tensor) => wrap(native.neg(h(a, 'neg', 'input')));
export const abs = (a: Tensor) => wrap(native.abs(h(a, 'abs', 'input')));
export const exp = (a: Tensor) => wrap(native.exp(h(a, 'exp', 'input')));
export const log = (a: Tensor) => wrap(native.log(h(a, 'log', 'input')));
export const log1p = (a: Tensor) => wrap(native.log1p(h(a, 'log1p', 'input')));
export const sqrt = (a: Tensor) => wrap(native.sqrt(h(a, 'sqrt', 'input')));
export const rsqrt = (a: Tensor) => wrap(native.rsqrt(h(a, 'rsqrt', 'input')));
export const sin = (a: Tensor) => wrap(native.sin(h(a, 'sin', 'input')));
export const cos = (a: Tensor) => wrap(native.cos(h(a, 'cos', 'input')));
export const tanh = (a: Tensor) => wrap(native.tanh(h(a, 'tanh', 'input')));
export const sigmoid = (a: Tensor) => wrap(native.sigmoid(h(a, 'sigmoid', 'input')));
export const relu = (a: Tensor) => wrap(native.relu(h(a, 'relu', 'input')));
export const erf = (a: Tensor) => wrap(native.erf(h(a, 'erf', 'input')));
export const erfinv = (a: Tensor) => wrap(native.erfinv(h(a, 'erfinv', 'input')));
export const reciprocal = (a: Tensor) => wrap(native.reciprocal(h(a, 'reciprocal', 'input')));
export const sign = (a: Tensor) => wrap(native.sign(h(a, 'sign', 'input')));
export const floor = (a: Tensor) => wrap(native.floor(h(a, 'floor', 'input')));
export const ceil = (a: Tensor) => wrap(native.ceil(h(a, 'ceil', 'input')));
export const round = (a: Tensor) => wrap(native.round(h(a, 'round', 'input')));
export const square = (a: Tensor) => wrap(native.square(h(a, 'square', 'input')));
export const logicalNot = (a: Tensor) => wrap(native.logicalNot(h(a, 'logicalNot', 'input')));
export const isnan = (a: Tensor) => wrap(native.isnan(h(a, 'isnan', 'input')));
export const isfinite = (a: Tensor) => wrap(native.isfinite(h(a, 'isfinite', 'input')));
export const isinf = (a: Tensor) => wrap(native.isinf(h(a, 'isinf', 'input')));
export const logicalAnd = (a: Tensor, b: Tensor) => wrap(native.logicalAnd(h(a, 'logicalAnd', 'input'), h(b, 'logicalAnd', 'other')));
export const logicalOr = (a: Tensor, b: Tensor) => wrap(native.logicalOr(h(a, 'logicalOr', 'input'), h(b, 'logicalOr', 'other')));
export const logicalXor = (a: Tensor, b: Tensor) => wrap(native.logicalXor(h(a, 'logicalXor', 'input'), h(b, 'logicalXor', 'other')));
export function neg_(a: Tensor): Tensor {
  native.neg_(h(a, 'neg_', 'input'));
  return a;
}
export function exp_(a: Tensor): Tensor {
  native.exp_(h(a, 'exp_', 'input'));
  return a;
}
export function sqrt_(a: Tensor): Tensor {
  native.sqrt_(h(a, 'sqrt_', 'input'));
  return a;
}
export function relu_(a: Tensor): Tensor {
  native.relu_(h(a, 'relu_', 'input'));
  return a;
}

/** GELU; `approximate: 'none'` is the exact erf form (nn.GELU in dinov3/layers/ffn_layers.py::Mlp). */
export const gelu = (a: Tensor, approximate: 'none' | 'tanh' = 'none') => wrap(native.gelu(h(a, 'gelu', 'input'), approximate));
export const silu = (a: Tensor) => wrap(native.silu(h(a, 'silu', 'input')));
/** A clamp bound: a number, a Tensor (broadcast against the input), or absent. */
export type Bound = Tensor | number | null | undefined;
function bound(v: Bound, op: string, name: string): NativeTensor | number | null {
  if (v === undefined || v === null) return null;
  if (typeof v === 'number') return v;
  if (v instanceof Tensor) return h(v, op, name);
  throw new TorchTypeError(`${op}: expected "${name}" to be a Tensor or a number, received ${describe(v)}`, 'ERR_INVALID_ARG');
}
/** Elementwise min(max(a, min), max); integer tensors clamped by integers stay integer. */
export const clamp = (a: Tensor, min?: Bound, max?: Bound) =>
  wrap(native.clamp(h(a, 'clamp', 'input'), bound(min, 'clamp', 'min'), bound(max, 'clamp', 'max')));
export function clamp_(a: Tensor, min?: Bound, max?: Bound): Tensor {
  native.clamp_(h(a, 'clamp_', 'input'), bound(min, 'clamp_', 'min'), bound(max, 'clamp_', 'max'));
  return a;
}
export const clampMin = (a: Tensor, min: Tensor | number) =>
  wrap(native.clampMin(h(a, 'clampMin', 'input'), bound(min, 'clampMin', 'min') as NativeTensor | number));
export const clampMax = (a: Tensor, max: Tensor | number) =>
  wrap(native.clampMax(h(a, 'clampMax', 'input'), bound(max, 'clampMax', 'max') as NativeTensor | number));
/** Replaces NaN by `nan` (0) and ±∞ by `posinf`/`neginf` (the dtype's largest/lowest finite values by default). */
export const nanToNum = (a: Tensor, o: { nan?: number; posinf?: number; neginf?: number } = {}) => {
  o = expectOptions('nanToNum', 'options', o) ?? {};
  return wrap(native.nanToNum(h(a, 'nanToNum', 'input'), o.nan ?? null, o.posinf ?? null, o.neginf ?? null));
};
/** Elementwise choice: `cond ? a : b`. */
export const where = (cond: Tensor, a: Operand, b: Operand) =>
  wrap(native.where(h(cond, 'where', 'condition'), o(a, 'where', 'input'), o(b, 'where', 'other')));
export const lerp = (a: Tensor, end: Tensor, weight: Tensor | number) =>
  wrap(native.lerp(h(a, 'lerp', 'input'), h(end, 'lerp', 'end'), typeof weight === 'number' ? weight : h(weight, 'lerp', 'weight')));
export function lerp_(a: Tensor, end: Tensor, weight: number): Tensor {
  native.lerp_(h(a, 'lerp_', 'input'), h(end, 'lerp_', 'end'), weight);
  return a;
}
export const addcmul = (a: Tensor, t1: Tensor, t2: Tensor, value = 1) =>
  wrap(native.addcmul(h(a, 'addcmul', 'input'), h(t1, 'addcmul', 'tensor1'), h(t2, 'addcmul', 'tensor2'), value));
export const maskedFill = (a: Tensor, mask: Tensor, value: number | boolean) =>
  wrap(native.maskedFill(h(a, 'maskedFill', 'input'), h(mask, 'maskedFill', 'mask'), value));
export function maskedFill_(a: Tensor, mask: Tensor, value: number | boolean): Tensor {
  native.maskedFill_(h(a, 'maskedFill_', 'input'), h(mask, 'maskedFill_', 'mask'), value);
  return a;
}
export function dropout(a: Tensor, p: number, train: boolean): Tensor {
  if (typeof p !== 'number' || !(p >= 0 && p <= 1)) throw new TorchRangeError(`dropout: p must be in [0, 1], received ${show(p)}`, 'ERR_INVALID_ARG');
  return wrap(native.dropout(h(a, 'dropout', 'input'), p, train));
}

const methods = {
  add,
  sub,
  mul,
  div,
  pow,
  remainder,
  floorDivide,
  maximum,
  minimum,
  eq,
  ne,
  lt,
  le,
  gt,
  ge,
  add_,
  sub_,
  mul_,
  div_,
  pow_,
  neg,
  abs,
  exp,
  log,
  log1p,
  sqrt,
  rsqrt,
  sin,
  cos,
  tanh,
  sigmoid,
  relu,
  erf,
  erfinv,
  reciprocal,
  sign,
  floor,
  ceil,
  round,
  square,
  logicalNot,
  isnan,
  isfinite,
  isinf,
  logicalAnd,
  logicalOr,
  logicalXor,
  neg_,
  exp_,
  sqrt_,
  relu_,
  gelu,
  silu,
  clamp,
  clamp_,
  clampMin,
  clampMax,
  nanToNum,
  lerp,
  lerp_,
  addcmul,
  maskedFill,
  maskedFill_,
  dropout,
};
installMethods(methods);

type Methods = typeof methods;
type AsMethod<F> = F extends (self: Tensor, ...args: infer A) => infer R ? (...args: A) => R : never;
declare module '../tensor/tensor.js' {
  interface Tensor extends PointwiseMethods {}
}
export type PointwiseMethods = { [K in keyof Methods]: AsMethod<Methods[K]> };
