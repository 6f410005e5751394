// Robustness: bad calls through the public API (and the raw binding) must throw one of our error classes with the
// right `code` and an exact message (a precise regex where libtorch's wording varies between versions), and leave the
// process working. Every case was first run in a child process to check that it cannot crash.
import { describe, expect, test } from 'vitest';

import {
  AdamW,
  addonInfo,
  arange,
  cat,
  CheckpointError,
  clipGradNorm,
  conv2d,
  crossEntropy,
  DisposedError,
  emaUpdate,
  eye,
  fromBuffer,
  full,
  gather,
  Generator,
  index,
  indexSelect,
  interpolate,
  layerNorm,
  Linear,
  linspace,
  manualSeed,
  matmul,
  memory,
  ones,
  pad,
  randint,
  randn,
  randperm,
  scaledDotProductAttention,
  scatter,
  scope,
  setNumThreads,
  StateDictError,
  Tensor,
  tensor,
  TorchError,
  TorchRangeError,
  TorchTypeError,
  where,
  zeros,
} from '../../../src/index.js';
import { readSafetensors } from '../../../src/io/safetensors.js';
import { native } from '../../../src/native/binding.js';

type ErrorClass = abstract new (...args: never[]) => Error;
/** [what, call, class, code, message]. `own` registers modules/optimizers to dispose after the case. */
type Case = [string, (own: <T extends { dispose(): void }>(x: T) => T) => unknown, ErrorClass, string, string | RegExp];

const m23 = () =>
  tensor([
    [1, 2, 3],
    [4, 5, 6],
  ]);
const i64 = (v: number[]) => tensor(v, { dtype: 'int64' });
const leaf = (shape: number[]) => ones(shape).requiresGrad_();
const disposed = () => {
  const t = randn([2, 3]);
  t.dispose();
  return t;
};
// The raw binding, for calls the typed API cannot express (missing arguments, wrong kinds).
const raw = native as unknown as Record<string, (...args: unknown[]) => unknown>;
const handle = (t: Tensor) => (t as unknown as Record<symbol, unknown>)[Object.getOwnPropertySymbols(t)[0]!];
const any = (v: unknown) => v as never;
// Built outside any scope (a scope would try to dispose it).
const fakeTensor = new Tensor(any({}));

const INVALID = 'ERR_INVALID_ARG';
const DTYPES = 'float32|float64|bfloat16|float16|int64|int32|int16|int8|uint8|bool';

const cases: Case[] = [
  // ---- shapes: negative, fractional, NaN/Infinity, wrong kinds ----
  ['negative size', () => zeros([-1]), TorchTypeError, INVALID, 'zeros: expected "shape" to be an array of non-negative integers, received [-1]'],
  ['fractional size', () => ones([1.5]), TorchTypeError, INVALID, 'ones: expected "shape" to be an array of non-negative integers, received [1.5]'],
  ['NaN size', () => zeros([NaN]), TorchTypeError, INVALID, /^zeros: expected "shape" to be an array of non-negative integers, received \[(NaN|null)\]$/],
  [
    'Infinity size',
    () => randn([Infinity]),
    TorchTypeError,
    INVALID,
    /^randn: expected "shape" to be an array of non-negative integers, received \[(Infinity|null)\]$/,
  ],
  [
    'shape is a string',
    () => zeros(any('abc')),
    TorchTypeError,
    INVALID,
    'zeros: expected "shape" to be an array of non-negative integers, received string "abc"',
  ],
  [
    'storage size overflow',
    () => fromBuffer(new Uint8Array(0), 'float32', [2 ** 32, 2 ** 32]),
    TorchError,
    'ERR_TORCH',
    'fromBuffer: Storage size calculation overflowed with sizes=[4294967296, 4294967296]',
  ],
  ['negative size inside libtorch', () => randperm(-1), TorchError, 'ERR_TORCH', 'randperm: Trying to create tensor with negative dimension -1: [-1]'],
  ['negative repeat', () => m23().repeat([-1, 1]), TorchError, 'ERR_TORCH', 'repeat: Trying to create tensor with negative dimension -2: [-2, 3]'],
  ['negative linspace steps', () => linspace(0, 1, -1), TorchRangeError, INVALID, 'linspace: steps must be >= 0, received -1'],
  ['negative eye size', () => eye(-1), TorchError, 'ERR_TORCH', 'eye: n must be greater or equal to 0, got -1'],
  [
    'negative Linear size',
    (own) => own(new Linear(-1, 2)),
    TorchTypeError,
    INVALID,
    'empty: expected "shape" to be an array of non-negative integers, received [2, -1]',
  ],
  // ---- dtype and device strings ----
  [
    'unknown dtype',
    () => zeros([2], { dtype: any('float8') }),
    TorchTypeError,
    INVALID,
    `zeros: expected "dtype" to be a dtype (${DTYPES}), received string "float8"`,
  ],
  [
    'unknown dtype in to()',
    () => m23().to({ dtype: any('float99') }),
    TorchTypeError,
    INVALID,
    `to: expected "dtype" to be a dtype (${DTYPES}), received string "float99"`,
  ],
  ['unknown dtype in fromBuffer', () => fromBuffer(new Uint8Array(8), any('complex64'), [1]), TorchTypeError, INVALID, 'fromBuffer: unknown dtype "complex64"'],
  [
    'unknown device',
    () => zeros([2], { device: any('gpu') }),
    TorchTypeError,
    INVALID,
    'zeros: expected "device" to be a device ("cpu", "cuda", "cuda:N" or "meta"), received string "gpu"',
  ],
  [
    'wrong index dtype',
    () => indexSelect(m23(), 0, tensor([0])),
    TorchTypeError,
    INVALID,
    'indexSelect: expected "index" to be an int64 or int32 Tensor, received Tensor float32 [1]',
  ],
  [
    'wrong gather dtype',
    () => gather(m23(), 1, tensor([[0]])),
    TorchTypeError,
    INVALID,
    'gather: expected "index" to be an int64 Tensor, received Tensor float32 [1, 1]',
  ],
  [
    'mixed dtypes in mm',
    () =>
      i64([1])
        .reshape([1, 1])
        .matmul(ones([1, 1])),
    TorchError,
    'ERR_TORCH',
    /^matmul: (expected scalar type (Long but found Float|Float but found Long)|expected m1 and m2 to have the same dtype, but got: (long int != float|float != long int))$/,
  ],
  [
    'requiresGrad on int64',
    () => zeros([2], { dtype: 'int64' }).requiresGrad_(),
    TorchTypeError,
    INVALID,
    'setRequiresGrad: expected "tensor" to be a floating-point Tensor (only they can require gradients), received Tensor int64 [2]',
  ],
  [
    'non-bool where condition',
    () => where(ones([2]), ones([2]), ones([2])),
    TorchError,
    'ERR_TORCH',
    /^where: where expected condition to be a boolean tensor, but got a tensor with dtype Float$/,
  ],
  ['RNG state of the wrong size', () => new Generator(1).setState(zeros([3], { dtype: 'uint8' })), TorchError, 'ERR_TORCH', /^setRngState: .*size .*3$/],
  // ---- argument kinds ----
  ['string operand', () => m23().add(any('x')), TorchTypeError, INVALID, 'add: expected "other" to be a Tensor or a number, received string "x"'],
  ['object operand', () => m23().mul(any({})), TorchTypeError, INVALID, 'mul: expected "other" to be a Tensor or a number, received object'],
  ['array instead of tensor', () => matmul(m23(), any([1, 2])), TorchTypeError, INVALID, 'matmul: expected "other" to be a Tensor, received array of length 2'],
  ['non-tensor in a tensor list', () => cat([m23(), any('x')]), TorchTypeError, INVALID, 'cat: expected "tensors[1]" to be a Tensor, received string "x"'],
  [
    'tensor instead of a list',
    () => cat(any(m23())),
    TorchTypeError,
    INVALID,
    'cat: expected "tensors" to be an array of Tensors, received float32 Tensor [2, 3]',
  ],
  ['ragged nested array', () => tensor([[1, 2], [3]]), TorchTypeError, INVALID, 'tensor: ragged nested array: expected length 2 at depth 1'],
  ['strings as data', () => tensor(any(['a'])), TorchTypeError, INVALID, 'tensor: expected a number at depth 1, received string'],
  [
    'byte length mismatch',
    () => fromBuffer(new Uint8Array(3), 'float32', [1]),
    TorchRangeError,
    INVALID,
    'fromBuffer: data has 3 bytes but float32 [1 elements] needs 4',
  ],
  [
    'DataView as data',
    () => fromBuffer(any(new DataView(new ArrayBuffer(4))), 'float32', [1]),
    TorchTypeError,
    INVALID,
    'fromBuffer: expected "data" to be a TypedArray or Buffer, received object',
  ],
  ['string fill value', () => full([2], any('x')), TorchTypeError, INVALID, 'full: expected "value" to be a number, received string "x"'],
  [
    'generator that is not a Generator',
    () => randn([2], { generator: any({ handle: 3 }) }),
    TorchTypeError,
    INVALID,
    'randn: expected "generator" to be a Generator, received object',
  ],
  [
    'non-tensor backward gradient',
    () =>
      leaf([2])
        .mul(2)
        .backward({ gradient: any([1, 1]) }),
    TorchTypeError,
    INVALID,
    'backward: expected "gradient" to be a Tensor, received array of length 2',
  ],
  // ---- NaN / Infinity / fractions / bigints where integers are expected ----
  ['NaN dim', () => m23().transpose(NaN, 0), TorchTypeError, INVALID, /^transpose: expected "dim0" to be an integer, received number (nan|NaN)$/],
  ['Infinity index', () => m23().select(0, Infinity), TorchTypeError, INVALID, /^select: expected "index" to be an integer, received number (inf|Infinity)$/],
  ['fractional dim', () => m23().transpose(0.5, 0), TorchTypeError, INVALID, 'transpose: expected "dim0" to be an integer, received number 0.5'],
  ['NaN seed', () => manualSeed(NaN), TorchTypeError, INVALID, /^manualSeed: expected "seed" to be an integer, received number (nan|NaN)$/],
  ['NaN generator seed', () => new Generator(NaN), TorchTypeError, INVALID, /^newGenerator: expected "seed" to be an integer, received number (nan|NaN)$/],
  ['NaN arange end', () => arange(0, NaN), TorchRangeError, INVALID, 'arange: start, end and step must be finite, received 0, nan, 1'],
  ['zero arange step', () => arange(0, 10, 0), TorchRangeError, INVALID, 'arange: step must be non-zero'],
  [
    'arange beyond int64',
    () => arange(0, 1e308, 1),
    TorchRangeError,
    INVALID,
    'arange: [start, end) with this step holds about 1e+308 elements, more than an int64 can count',
  ],
  ['arange to infinity', () => arange(0, Infinity), TorchRangeError, INVALID, 'arange: start, end and step must be finite, received 0, inf, 1'],
  ['thread count 0', () => setNumThreads(0), TorchRangeError, INVALID, 'setNumThreads: expected a positive integer, received 0'],
  ['thread count NaN', () => setNumThreads(NaN), TorchRangeError, INVALID, 'setNumThreads: expected a positive integer, received NaN'],
  ['bigint index out of range', () => m23().select(0, any(10n)), TorchRangeError, INVALID, 'select: index 10 is out of range for dim 0 of float32 [2, 3]'],
  ['int fill overflow', () => full([2], 1e30, { dtype: 'int32' }), TorchError, 'ERR_NATIVE', 'full: value cannot be converted to type int without overflow'],
  // ---- out-of-range dims and indices ----
  ['dim out of range', () => m23().transpose(0, 5), TorchRangeError, INVALID, 'transpose: dim1 5 is out of range for float32 [2, 3] (expected -2..1)'],
  ['reduction dim out of range', () => m23().sum(7), TorchRangeError, INVALID, 'sum: dim 7 is out of range for float32 [2, 3] (expected -2..1)'],
  ['softmax dim out of range', () => m23().softmax(3), TorchRangeError, INVALID, 'softmax: dim 3 is out of range for float32 [2, 3] (expected -2..1)'],
  [
    'movedim out of range',
    () => m23().movedim([0], [5]),
    TorchRangeError,
    'ERR_TORCH_INDEX',
    /^movedim: Dimension out of range \(expected to be in range of \[-2, 1\], but got 5\)$/,
  ],
  [
    'select on a 0-d tensor',
    () => tensor(1).select(0, 0),
    TorchRangeError,
    'ERR_TORCH_INDEX',
    /^select: Dimension specified as 0 but tensor has no dimensions$/,
  ],
  ['select index out of range', () => m23().select(0, 10), TorchRangeError, INVALID, 'select: index 10 is out of range for dim 0 of float32 [2, 3]'],
  ['narrow past the end', () => m23().narrow(0, 1, 10), TorchRangeError, INVALID, 'narrow: start 1 + length 10 exceeds size 2 of dim 0 (float32 [2, 3])'],
  ['negative narrow length', () => m23().narrow(0, 0, -1), TorchRangeError, INVALID, 'narrow: start 0 + length -1 exceeds size 2 of dim 0 (float32 [2, 3])'],
  ['indexSelect index out of range', () => indexSelect(m23(), 0, i64([5])), TorchRangeError, 'ERR_TORCH_INDEX', /^indexSelect: index out of range in self$/],
  [
    'advanced index out of range',
    () => index(ones([3]), [i64([5])]),
    TorchRangeError,
    'ERR_TORCH_INDEX',
    /^index: index 5 is out of bounds for dimension 0 with size 3$/,
  ],
  [
    'gather index out of range',
    () => gather(m23(), 1, i64([9]).reshape([1, 1])),
    TorchError,
    'ERR_TORCH',
    /^gather: index 9 is out of bounds for dimension 1 with size 3$/,
  ],
  [
    'scatter index out of range',
    () => scatter(ones([3]), 0, i64([7]), ones([1])),
    TorchError,
    'ERR_TORCH',
    /^scatter: index 7 is out of bounds for dimension 0 with size 3$/,
  ],
  [
    'class index out of range',
    () => crossEntropy(ones([2, 3]), i64([0, 5])),
    TorchRangeError,
    'ERR_TORCH_INDEX',
    /^crossEntropy: Target 5 is out of bounds\.$/,
  ],
  ['topk k too large', () => m23().topk(10), TorchRangeError, INVALID, 'topk: k must be in [0, 3] for dim -1 of float32 [2, 3], received 10'],
  ['item of many elements', () => m23().item(), TorchRangeError, INVALID, 'item: expected a tensor with one element, received float32 [2, 3]'],
  ['empty reduction', () => zeros([0, 3]).maxDim(0), TorchRangeError, 'ERR_TORCH_INDEX', /^maxDim: max\(\): Expected reduction dim 0 to have non-zero size\.$/],
  // ---- shape mismatches ----
  ['matmul shapes', () => m23().matmul(m23()), TorchError, 'ERR_TORCH', /^matmul: mat1 and mat2 shapes cannot be multiplied \(2x3 and 2x3\)$/],
  ['reshape to a wrong size', () => m23().reshape([5]), TorchError, 'ERR_TORCH', "reshape: shape '[5]' is invalid for input of size 6"],
  ['view with two inferred sizes', () => m23().view([-1, -1]), TorchError, 'ERR_TORCH', 'view: only one dimension can be inferred'],
  ['reshape to a negative size', () => m23().reshape([-2, 3]), TorchError, 'ERR_TORCH', 'reshape: invalid shape dimension -2'],
  [
    'reshape of an empty tensor with an inferred size',
    () => zeros([0, 3]).reshape([0, -1]),
    TorchError,
    'ERR_TORCH',
    'reshape: cannot reshape tensor of 0 elements into shape [0, -1] because the unspecified dimension size -1 can be any value and is ambiguous',
  ],
  [
    'view of a non-contiguous tensor',
    () => m23().transpose(0, 1).view([6]),
    TorchError,
    'ERR_TORCH',
    /^view: view size is not compatible with input tensor's size and stride/,
  ],
  ['cat of different ranks', () => cat([m23(), ones([2, 2, 2])]), TorchError, 'ERR_TORCH', /^cat: Tensors must have same number of dimensions: got 2 and 3$/],
  ['empty cat', () => cat([]), TorchRangeError, INVALID, 'cat: expected a non-empty list of tensors'],
  [
    'expand to an incompatible shape',
    () => m23().expand([3, 3]),
    TorchError,
    'ERR_TORCH',
    /^expand: The expanded size of the tensor \(3\) must match the existing size \(2\) at non-singleton dimension 0/,
  ],
  [
    'Linear input size',
    (own) => own(new Linear(4, 2)).forward(m23()),
    TorchRangeError,
    INVALID,
    'linear: input float32 [2, 3] does not match weight float32 [2, 4]: last dim must be 4',
  ],
  [
    'layerNorm shape',
    () => layerNorm(m23(), [4], null, null),
    TorchRangeError,
    INVALID,
    'layerNorm: normalizedShape [4] does not match the trailing dims of float32 [2, 3]',
  ],
  [
    'conv2d weight rank',
    () => conv2d(ones([1, 3, 8, 8]), ones([4, 3, 3])),
    TorchRangeError,
    INVALID,
    'conv2d: expected "weight" to be 4-D [out, in/groups, kH, kW], received float32 [4, 3, 3]',
  ],
  [
    'conv2d zero stride',
    () => conv2d(ones([1, 1, 4, 4]), ones([1, 1, 3, 3]), null, { stride: 0 }),
    TorchError,
    'ERR_TORCH',
    /^conv2d: non-positive stride is not supported$/,
  ],
  [
    'attention head dims',
    () => scaledDotProductAttention(ones([1, 2, 4, 8]), ones([1, 2, 4, 4]), ones([1, 2, 4, 8])),
    TorchRangeError,
    INVALID,
    'sdpa: query float32 [1, 2, 4, 8], key float32 [1, 2, 4, 4] and value float32 [1, 2, 4, 8] must be [..., T, d] with matching head dims and key/value lengths',
  ],
  [
    'interpolate mode',
    () => interpolate(ones([1, 1, 4, 4]), { size: [2, 2], mode: any('cubic') }),
    TorchRangeError,
    INVALID,
    'interpolate: mode must be "bilinear", "bicubic" or "nearest", received "cubic"',
  ],
  ['odd padding length', () => pad(m23(), [1]), TorchError, 'ERR_TORCH', /^pad: Padding length must be divisible by 2$/],
  ['randint with low >= high', () => randint(5, 2, [3]), TorchRangeError, INVALID, 'randint: expected low < high, received low=5 high=2'],
  ['clamp without bounds', () => m23().clamp(), TorchRangeError, INVALID, 'clamp: at least one of min and max must be given'],
  // ---- arithmetic that would trap ----
  ['integer division by zero', () => i64([1, 2]).floorDivide(0), TorchError, 'ERR_TORCH', /^floorDivide: ZeroDivisionError$/],
  [
    'integer remainder by zero',
    () => tensor([1, 2], { dtype: 'int32' }).remainder(tensor([0, 0], { dtype: 'int32' })),
    TorchError,
    'ERR_TORCH',
    /^remainder: ZeroDivisionError$/,
  ],
  // ---- autograd misuse ----
  [
    'backward of a non-scalar',
    () => leaf([2]).mul(2).backward(),
    TorchRangeError,
    INVALID,
    'backward: a gradient must be given for a non-scalar tensor (float32 [2])',
  ],
  [
    'backward without grad',
    () => ones([1]).sum().backward(),
    TorchRangeError,
    INVALID,
    'backward: the tensor does not require grad and has no grad_fn (float32 []); was it computed under noGrad, or from tensors without requiresGrad?',
  ],
  [
    'backward twice',
    () => {
      const y = leaf([2]).square().sum();
      y.backward();
      y.backward();
    },
    TorchError,
    'ERR_TORCH',
    /^backward: Trying to backward through the graph a second time/,
  ],
  [
    'in-place op on a leaf that requires grad',
    () => leaf([2]).add_(1),
    TorchError,
    'ERR_TORCH',
    /^add_: a leaf Variable that requires grad is being used in an in-place operation\.$/,
  ],
  // ---- disposed tensors ----
  ['disposed operand', () => m23().add(disposed()), DisposedError, 'ERR_DISPOSED', 'add: "other" is a disposed Tensor (float32 [2, 3], created by randn)'],
  [
    'getter of a disposed tensor',
    () => disposed().dtype,
    DisposedError,
    'ERR_DISPOSED',
    'dtype: "tensor" is a disposed Tensor (float32 [2, 3], created by randn)',
  ],
  [
    'data of a disposed tensor',
    () => disposed().data(),
    DisposedError,
    'ERR_DISPOSED',
    'toArrayBuffer: "tensor" is a disposed Tensor (float32 [2, 3], created by randn)',
  ],
  [
    'disposed tensor in a list',
    () => cat([m23(), disposed()]),
    DisposedError,
    'ERR_DISPOSED',
    'cat: "tensors[1]" is a disposed Tensor (float32 [2, 3], created by randn)',
  ],
  [
    'forward of a disposed module',
    (own) => {
      const l = own(new Linear(2, 2));
      l.dispose();
      return l.forward(ones([1, 2]));
    },
    DisposedError,
    'ERR_DISPOSED',
    'linear: "weight" is a disposed Tensor (float32 [2, 2], created by empty)',
  ],
  [
    'optimizer over a disposed parameter',
    (own) => {
      const p = leaf([2]);
      const o = own(new AdamW([p]));
      p.dispose();
      o.step();
    },
    DisposedError,
    'ERR_DISPOSED',
    'AdamW.step: paramGroups[0]: "params[0]" is a disposed Tensor (float32 [2], created by ones)',
  ],
  [
    'use of a disposed optimizer',
    (own) => {
      const o = own(new AdamW([leaf([1])]));
      o.dispose();
      o.zeroGrad();
    },
    DisposedError,
    'ERR_DISPOSED',
    'AdamW.zeroGrad: the optimizer was disposed',
  ],
  // ---- optimizer: hyperparameters, mismatched state, bad state dicts ----
  ['empty parameter list', () => new AdamW([]), TorchRangeError, INVALID, 'AdamW: got an empty parameter list'],
  [
    'beta out of range',
    () => new AdamW([leaf([1])], { betas: [1, 0.9] }),
    TorchRangeError,
    INVALID,
    'AdamW: "betas[0]" must be a finite number in [0, 1), received 1',
  ],
  [
    'non-tensor parameter',
    () => new AdamW([{ params: any([1]) }]),
    TorchTypeError,
    INVALID,
    'AdamW: expected "paramGroups[0].params[0]" to be a Tensor, received number 1',
  ],
  [
    'non-leaf parameter',
    () => new AdamW([leaf([2]).mul(2)]),
    TorchRangeError,
    INVALID,
    'AdamW: "paramGroups[0].params[0]" is not a leaf Tensor (optimize parameters, not results of ops)',
  ],
  [
    'lr set to a string',
    (own) => {
      const o = own(new AdamW([leaf([2])]));
      o.paramGroups[0]!.lr = any('0.1');
      o.step();
    },
    TorchTypeError,
    INVALID,
    'AdamW.step: expected "paramGroups[0].lr" to be a number, received string "0.1"',
  ],
  [
    'negative weight decay',
    (own) => {
      const o = own(new AdamW([leaf([2])]));
      o.paramGroups[0]!.weightDecay = -1;
      o.step();
    },
    TorchRangeError,
    INVALID,
    'AdamW.step: "paramGroups[0].weightDecay" must be a finite number >= 0, received -1',
  ],
  [
    'gradient of the wrong shape',
    (own) => {
      const p = leaf([2]);
      const o = own(new AdamW([p]));
      p.grad = ones([3]);
      o.step();
    },
    TorchRangeError,
    INVALID,
    'setGrad: the gradient float32 [3] does not match the tensor float32 [2] (same shape, dtype and device required)',
  ],
  [
    'mismatched optimizer state',
    (own) => {
      const a = own(new AdamW([leaf([2])]));
      own(new AdamW([leaf([3])])).loadStateDict(a.stateDict());
    },
    StateDictError,
    'ERR_STATE_DICT',
    'AdamW.loadStateDict: the optimizer state does not match the parameters\nshape mismatches (2): state.0.0.exp_avg: expected [3], received [2]; state.0.0.exp_avg_sq: expected [3], received [2]',
  ],
  [
    'optimizer state dict that is not one',
    (own) => own(new AdamW([leaf([1])])).loadStateDict(any({})),
    TorchTypeError,
    INVALID,
    'AdamW.loadStateDict: expected "step" to be a non-negative integer, received undefined',
  ],
  [
    'optimizer state dict with a non-tensor moment',
    (own) => {
      const o = own(new AdamW([leaf([1])]));
      o.loadStateDict({ ...o.stateDict(), state: [{ expAvg: any([0]), expAvgSq: [] }] });
    },
    TorchTypeError,
    INVALID,
    'AdamW.loadStateDict: expected "state[0].expAvg[0]" to be a Tensor, received number 0',
  ],
  ['clip with NaN max norm', () => clipGradNorm([leaf([1])], NaN), TorchRangeError, INVALID, 'clipGradNorm: "maxNorm" must be a number >= 0, received NaN'],
  ['EMA with different lengths', () => emaUpdate([ones([1])], [], 0.9), TorchRangeError, INVALID, 'emaUpdate: teacher has 1 tensors but student has 0'],
  [
    'EMA with a non-tensor',
    () => emaUpdate(any([1]), [ones([1])], 0.9),
    TorchTypeError,
    INVALID,
    'emaUpdate: expected "teacher[0]" to be a Tensor, received number 1',
  ],
  // ---- module state dicts ----
  [
    'state dict with missing keys',
    (own) => own(new Linear(2, 2)).loadStateDict(new Map()),
    StateDictError,
    'ERR_STATE_DICT',
    'loadStateDict: the state dict does not match the module (strict loading)\nmissing keys (2): weight, bias',
  ],
  [
    'state dict with a wrong shape',
    (own) => own(new Linear(2, 2)).loadStateDict({ weight: ones([3, 2]), bias: ones([2]) }),
    StateDictError,
    'ERR_STATE_DICT',
    'loadStateDict: the state dict does not match the module (strict loading)\nshape mismatches (1): weight: expected [2, 2], received [3, 2]',
  ],
  [
    'corrupt checkpoint bytes',
    () => readSafetensors(new Uint8Array([1, 2, 3])),
    CheckpointError,
    'ERR_CHECKPOINT',
    '<buffer>: truncated safetensors file: 3 bytes, too short for the 8-byte header length',
  ],
  // ---- huge allocations fail cleanly ----
  [
    'storage overflow of a huge empty()',
    () => zeros([2 ** 31, 2 ** 31, 2 ** 31]),
    TorchError,
    'ERR_TORCH',
    'zeros: Storage size calculation overflowed with sizes=[2147483648, 2147483648, 2147483648]',
  ],
  // ---- the raw binding: missing arguments, wrong kinds, objects that are not tensors ----
  ['native op without arguments', () => raw.add!(), TorchTypeError, INVALID, 'add: expected "input" to be a Tensor, received undefined'],
  ['native creation without arguments', () => raw.zeros!(), TorchTypeError, INVALID, 'zeros: expected "shape" to be an array of integers, received undefined'],
  ['native dispose of a plain object', () => raw.dispose!({}), TorchTypeError, INVALID, 'dispose: expected "tensor" to be a Tensor, received object'],
  ['native getter of a number', () => raw.shape!(1), TorchTypeError, INVALID, 'shape: expected "tensor" to be a Tensor, received number 1'],
  [
    'native fromBuffer of null',
    () => raw.fromBuffer!(null, 'float32', [1]),
    TorchTypeError,
    INVALID,
    'fromBuffer: expected "data" to be a TypedArray or Buffer, received null',
  ],
  [
    'native adamwStep without steps',
    () => raw.adamwStep!([handle(leaf([2]))], [handle(ones([2]))], [handle(ones([2]))], 0.1, 0, 0.9, 0.999, 1e-8),
    TorchTypeError,
    INVALID,
    'adamwStep: expected "steps" to be a Float64Array, received undefined',
  ],
  [
    'native adamwStep with too few steps',
    () => raw.adamwStep!([handle(leaf([2]))], [handle(ones([2]))], [handle(ones([2]))], 0.1, 0, 0.9, 0.999, 1e-8, new Float64Array(0)),
    TorchRangeError,
    INVALID,
    'adamwStep: "steps" has 0 entries for 1 params',
  ],
  [
    'native adamwStep with missing state',
    () => raw.adamwStep!([handle(ones([2]))], [], [], 0.1, 0, 0.9, 0.999, 1e-8, new Float64Array(1)),
    TorchRangeError,
    INVALID,
    'adamwStep: optimizer state does not match the parameters: 1 params, 0 expAvg, 0 expAvgSq',
  ],
  [
    'native clipGradNorm without maxNorm',
    () => raw.clipGradNorm!([]),
    TorchTypeError,
    INVALID,
    'clipGradNorm: expected "maxNorm" to be a number, received undefined',
  ],
  ['native init with null', () => raw.init!(null), TorchTypeError, INVALID, 'init: expected "errors" to be an object of error classes, received null'],
  ['Tensor built around a fake handle', () => fakeTensor.shape, TorchTypeError, INVALID, 'shape: expected "tensor" to be a Tensor, received object'],
];

function run(c: Case): unknown {
  const owned: { dispose(): void }[] = [];
  try {
    scope(() => c[1]((x) => (owned.push(x), x)));
  } catch (e) {
    return e;
  } finally {
    for (const o of owned) o.dispose();
  }
  return undefined;
}

describe('bad calls', () => {
  test('there are at least 50 distinct kinds', () => {
    expect(new Set(cases.map((c) => c[0])).size).toBe(cases.length);
    expect(cases.length).toBeGreaterThanOrEqual(50);
  });

  test.each(cases)('%s', (_what, _fn, cls, code, message) => {
    const before = memory().liveTensors;
    const err = run([_what, _fn, cls, code, message]) as (Error & { code?: string }) | undefined;
    expect(err, 'the call did not throw').toBeDefined();
    expect(err).toBeInstanceOf(cls);
    expect(err!.code).toBe(code);
    if (typeof message === 'string') expect(err!.message).toBe(message);
    else expect(err!.message).toMatch(message);
    // The process still works and nothing leaked.
    expect(memory().liveTensors).toBe(before);
    expect(scope(() => ones([2]).add(1).sum().item())).toBe(4);
  });

  test.runIf(!addonInfo.cudaCompiled)('CUDA tensors on a CPU-only build', () => {
    const err = run(['cuda', () => zeros([2], { device: 'cuda' }), TorchError, '', '']) as Error & { code?: string };
    expect(err).toBeInstanceOf(TorchError);
    expect(err.code).toBe('ERR_INVALID_ARG');
    expect(err.message).toBe(
      `zeros: "device" is cuda but CUDA is not available (this addon uses libtorch ${addonInfo.torchVersion} built without CUDA; rebuild against a CUDA libtorch: see README)`,
    );
  });
});

// Calls that do the wrong thing today in code this suite does not own. `test.fails` passes while the bug is there;
// once fixed it fails: turn it into a plain `test`.
describe('fixed bugs and remaining known bugs', () => {
  test('a huge allocation is an out-of-memory error (code ERR_TORCH_OOM)', () => {
    const err = run(['oom', () => zeros([1e12]), TorchError, '', '']) as Error & { code?: string };
    expect(err).toBeInstanceOf(TorchError);
    expect(err.message).toMatch(/^zeros: .*DefaultCPUAllocator: (can't allocate memory|not enough memory): you tried to allocate 4000000000000 bytes/);
    expect(err.code).toBe('ERR_TORCH_OOM');
  });

  test('Tensor.size(dim) out of range is a TorchRangeError with a code', () => {
    const t = m23();
    const err = run(['size', () => t.size(5), TorchRangeError, '', '']) as Error & { code?: string };
    t.dispose();
    expect(err).toBeInstanceOf(TorchRangeError);
    expect(err.code).toBe(INVALID);
  });

  test('a bigint index beyond int64 is rejected, not truncated', () => {
    const t = m23();
    const err = run(['bigint', () => t.select(0, any(2n ** 70n)), TorchTypeError, '', '']);
    t.dispose();
    expect(err).toBeInstanceOf(TorchTypeError);
  });

  test('assigning a gradient of the wrong shape is rejected', () => {
    const p = leaf([2]);
    const err = run(['grad', () => (p.grad = ones([3])), TorchRangeError, '', '']);
    p.dispose();
    expect(err).toBeInstanceOf(Error);
  });

  test('a generator option that is not a Generator is rejected', () => {
    expect(run(['gen', () => randn([2], { generator: any({}) }), TorchTypeError, '', ''])).toBeInstanceOf(TorchTypeError);
  });

  test('maskedFill with a float mask is rejected (torch requires a bool mask)', () => {
    const x = m23();
    const mask = ones([2, 3]);
    expect(() => x.maskedFill(mask, 0)).toThrow('maskedFill: expected "mask" to be a bool Tensor, received Tensor float32 [2, 3]');
    x.dispose();
    mask.dispose();
  });

  test('Module.loadStateDict of a non-tensor value is a typed error', () => {
    const l = new Linear(2, 2);
    const err = run(['sd', () => l.loadStateDict(any({ weight: [1, 2], bias: 3 })), TorchTypeError, '', '']) as Error & { code?: string };
    l.dispose();
    expect(err.code).toBeDefined();
  });
});
