// Tensor creation: constants, ranges, random draws with seedable generators, and conversion from JS data.
import '../ops/all.js';
import { native, type NativeGenerator } from '../native/binding.js';
import { TorchRangeError, TorchTypeError } from '../native/errors.js';
import { describe, type Device, type DType, DTYPES, handleOf, type Tensor, wrap } from './tensor.js';

export interface CreateOptions {
  dtype?: DType;
  device?: Device;
}
export interface RandomOptions extends CreateOptions {
  generator?: Generator;
}

/** A seeded random generator (CPU) whose state can be saved and restored. */
export class Generator {
  /** @internal */ readonly handle: NativeGenerator;
  constructor(seed: number) {
    this.handle = native.newGenerator(seed);
  }
  /** The generator state as a uint8 tensor. */
  getState(): Tensor {
    return wrap(native.getRngState(this.handle));
  }
  setState(state: Tensor): void {
    native.setRngState(handleOf(state, 'Generator.setState', 'state'), this.handle);
  }
}

/** Seeds the default generator. */
export function manualSeed(seed: number): void {
  native.manualSeed(seed);
}
export function getRngState(): Tensor {
  return wrap(native.getRngState(null));
}
export function setRngState(state: Tensor): void {
  native.setRngState(handleOf(state, 'setRngState', 'state'), null);
}

/** An array element in a message: as String() prints it, or `describe` where String() throws (Symbols, null-prototype objects). */
function showElement(v: unknown): string {
  try {
    return String(v);
  } catch {
    return describe(v);
  }
}

function checkShape(op: string, shape: unknown): number[] {
  if (!Array.isArray(shape) || !shape.every((s) => Number.isInteger(s) && s >= 0))
    throw new TorchTypeError(
      `${op}: expected "shape" to be an array of non-negative integers, received ${Array.isArray(shape) ? `[${shape.map(showElement).join(', ')}]` : describe(shape)}`,
      'ERR_INVALID_ARG',
    );
  return shape as number[];
}

/** An options bag as given: undefined → {}, an object as is; anything else (null included) is refused. */
function opts<T extends object>(op: string, o: T | undefined): T {
  if (o === undefined) return {} as T;
  if (typeof o !== 'object' || o === null) throw new TorchTypeError(`${op}: expected "options" to be an object, received ${describe(o)}`, 'ERR_INVALID_ARG');
  return o;
}

/** The native handle of an optional generator option (a TorchTypeError if it is not a Generator). */
function gen(op: string, g: unknown): NativeGenerator | undefined {
  if (g === undefined || g === null) return undefined;
  if (g instanceof Generator) return g.handle;
  throw new TorchTypeError(`${op}: expected "generator" to be a Generator, received ${describe(g)}`, 'ERR_INVALID_ARG');
}

export const zeros = (shape: number[], o: CreateOptions = {}) => {
  o = opts('zeros', o);
  return wrap(native.zeros(checkShape('zeros', shape), o.dtype, o.device));
};
export const ones = (shape: number[], o: CreateOptions = {}) => {
  o = opts('ones', o);
  return wrap(native.ones(checkShape('ones', shape), o.dtype, o.device));
};
export const empty = (shape: number[], o: CreateOptions = {}) => {
  o = opts('empty', o);
  return wrap(native.empty(checkShape('empty', shape), o.dtype, o.device));
};
export const full = (shape: number[], value: number | boolean, o: CreateOptions = {}) => {
  o = opts('full', o);
  return wrap(native.full(checkShape('full', shape), value, o.dtype, o.device));
};
export const zerosLike = (t: Tensor) => wrap(native.zerosLike(handleOf(t, 'zerosLike', 'input')));
export const onesLike = (t: Tensor) => wrap(native.onesLike(handleOf(t, 'onesLike', 'input')));
export const fullLike = (t: Tensor, value: number) => wrap(native.fullLike(handleOf(t, 'fullLike', 'input'), value));
export const emptyLike = (t: Tensor) => wrap(native.emptyLike(handleOf(t, 'emptyLike', 'input')));

/** arange(end) or arange(start, end, step). Integer arguments give int64 unless a dtype is given. */
export function arange(start: number, end?: number, step = 1, o: CreateOptions = {}): Tensor {
  o = opts('arange', o);
  if (end === undefined) [start, end] = [0, start];
  const ints = Number.isInteger(start) && Number.isInteger(end) && Number.isInteger(step);
  return wrap(native.arange(start, end, step, o.dtype ?? (ints ? 'int64' : 'float32'), o.device));
}
export const linspace = (start: number, end: number, steps: number, o: CreateOptions = {}) => {
  o = opts('linspace', o);
  return wrap(native.linspace(start, end, steps, o.dtype, o.device));
};
export const eye = (n: number, o: CreateOptions = {}) => {
  o = opts('eye', o);
  return wrap(native.eye(n, o.dtype, o.device));
};

export const randn = (shape: number[], o: RandomOptions = {}) => {
  o = opts('randn', o);
  return wrap(native.randn(checkShape('randn', shape), o.dtype, o.device, gen('randn', o.generator)));
};
export const rand = (shape: number[], o: RandomOptions = {}) => {
  o = opts('rand', o);
  return wrap(native.rand(checkShape('rand', shape), o.dtype, o.device, gen('rand', o.generator)));
};
export const randint = (low: number, high: number, shape: number[], o: RandomOptions = {}) => {
  o = opts('randint', o);
  return wrap(native.randint(low, high, checkShape('randint', shape), o.dtype, o.device, gen('randint', o.generator)));
};
export const randperm = (n: number, o: { generator?: Generator } = {}) => {
  o = opts('randperm', o);
  return wrap(native.randperm(n, gen('randperm', o.generator)));
};

type Nested = number | boolean | Nested[];

function inferShape(v: Nested): number[] {
  const shape: number[] = [];
  let cur: Nested = v;
  while (Array.isArray(cur)) {
    shape.push(cur.length);
    cur = cur[0] as Nested;
  }
  return shape;
}

function flattenInto(v: Nested, shape: number[], depth: number, out: (number | boolean)[]): void {
  if (depth === shape.length) {
    if (typeof v !== 'number' && typeof v !== 'boolean')
      throw new TorchTypeError(`tensor: expected a number at depth ${depth}, received ${Array.isArray(v) ? 'an array' : typeof v}`, 'ERR_INVALID_ARG');
    out.push(v);
    return;
  }
  if (!Array.isArray(v) || v.length !== shape[depth])
    throw new TorchTypeError(`tensor: ragged nested array: expected length ${shape[depth]} at depth ${depth}`, 'ERR_INVALID_ARG');
  for (const x of v) flattenInto(x, shape, depth + 1, out);
}

/** BigInt() refuses NaN and ±Infinity with a plain RangeError: name the value instead (checked during the conversion). */
function finiteForInt(x: number): number {
  if (!Number.isFinite(x)) throw new TorchRangeError(`tensor: ${x} has no int64 value`, 'ERR_INVALID_ARG');
  return x;
}

const arrayCtor: Record<DType, (n: (number | boolean)[]) => ArrayBufferView> = {
  float32: (n) => Float32Array.from(n as number[]),
  float64: (n) => Float64Array.from(n as number[]),
  int64: (n) => BigInt64Array.from(n as number[], (x) => BigInt(Math.trunc(finiteForInt(Number(x))))),
  int32: (n) => Int32Array.from(n as number[]),
  int16: (n) => Int16Array.from(n as number[]),
  int8: (n) => Int8Array.from(n as number[]),
  uint8: (n) => Uint8Array.from(n as number[]),
  bool: (n) => Uint8Array.from(n, (x) => (x ? 1 : 0)),
  bfloat16: () => new Uint8Array(0),
  float16: () => new Uint8Array(0),
};

function dtypeOfTyped(a: ArrayBufferView): DType | undefined {
  if (a instanceof Float32Array) return 'float32';
  if (a instanceof Float64Array) return 'float64';
  if (a instanceof BigInt64Array) return 'int64';
  if (a instanceof Int32Array) return 'int32';
  if (a instanceof Int16Array) return 'int16';
  if (a instanceof Int8Array) return 'int8';
  if (a instanceof Uint8Array) return 'uint8';
  return undefined;
}

/**
 * A CPU tensor from JS data: a (nested) array of numbers/booleans, or a typed array with an optional shape.
 * @example tensor([[1, 2], [3, 4]]) // float32 [2, 2]
 * @example tensor(new Int32Array([1, 2, 3]), { shape: [3, 1] })
 */
export function tensor(data: Nested | ArrayBufferView, o: CreateOptions & { shape?: number[] } = {}): Tensor {
  o = opts('tensor', o);
  let t: Tensor;
  if (ArrayBuffer.isView(data)) {
    const dt = o.dtype && (o.dtype === 'bfloat16' || o.dtype === 'float16') ? o.dtype : dtypeOfTyped(data);
    if (!dt) throw new TorchTypeError(`tensor: unsupported typed array ${data.constructor.name}`, 'ERR_INVALID_ARG');
    const shape = o.shape ?? [
      data.byteLength / (dt === 'bfloat16' || dt === 'float16' ? 2 : (data as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT),
    ];
    t = wrap(native.fromBuffer(data, dt, shape));
    if (o.dtype && o.dtype !== dt) {
      const c = t.to(o.dtype);
      t.dispose();
      t = c;
    }
  } else {
    const shape = inferShape(data);
    const flat: (number | boolean)[] = [];
    flattenInto(data, shape, 0, flat);
    const isBool = flat.length > 0 && typeof flat[0] === 'boolean';
    const want: DType = o.dtype ?? (isBool ? 'bool' : 'float32');
    const stage: DType = want === 'bfloat16' || want === 'float16' ? 'float32' : want;
    t = wrap(native.fromBuffer(arrayCtor[stage](flat), stage, o.shape ?? shape));
    if (stage !== want) {
      const c = t.to(want);
      t.dispose();
      t = c;
    }
  }
  if (o.device && o.device !== 'cpu') {
    const c = t.to(o.device);
    t.dispose();
    t = c;
  }
  return t;
}

/** A CPU tensor over a copy of raw little-endian bytes. */
export function fromBuffer(bytes: ArrayBufferView, dtype: DType, shape: number[]): Tensor {
  if (!DTYPES.includes(dtype)) throw new TorchTypeError(`fromBuffer: unknown dtype "${dtype}"`, 'ERR_INVALID_ARG');
  return wrap(native.fromBuffer(bytes, dtype, checkShape('fromBuffer', shape)));
}
