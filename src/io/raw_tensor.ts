// RawTensor: a dtype, a shape and the contiguous row-major little-endian bytes of a tensor, as read from or written
// to a checkpoint file without libtorch, and LazyRawTensor, one read when asked. Also dtype helpers and conversion to
// float32 (for tests and inspection).

import { TorchTypeError } from '../native/errors.js';

export type DType = 'float32' | 'float64' | 'bfloat16' | 'float16' | 'int64' | 'int32' | 'int16' | 'int8' | 'uint8' | 'bool';

/** A tensor as bytes. `data` holds exactly numel*itemSize bytes, row-major, little-endian. It may be a view of a
 * larger buffer (a file read zero-copy) and may alias other tensors of the same file: copy before mutating it. */
export interface RawTensor {
  dtype: DType;
  shape: number[];
  data: Uint8Array;
}

/** A tensor of a checkpoint file that is read only when asked: `read()` returns its contiguous row-major bytes (a
 * fresh array for files, possibly a view for buffers). Shape and bounds were checked when it was created. */
export class LazyRawTensor {
  constructor(
    readonly dtype: DType,
    readonly shape: number[],
    readonly byteLength: number,
    readonly read: () => Uint8Array,
  ) {}
  /** Reads the bytes now. */
  load(): RawTensor {
    return { dtype: this.dtype, shape: this.shape, data: this.read() };
  }
}

const ITEM_SIZE: Record<DType, number> = {
  float32: 4,
  float64: 8,
  bfloat16: 2,
  float16: 2,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
};

/** Every supported dtype. */
export const DTYPES: readonly DType[] = Object.keys(ITEM_SIZE) as DType[];

export function isDType(x: unknown): x is DType {
  return typeof x === 'string' && Object.hasOwn(ITEM_SIZE, x);
}

/** Bytes per element of `dtype`. */
export function itemSize(dtype: DType): number {
  const n = ITEM_SIZE[dtype];
  if (n === undefined) throw new TorchTypeError(`unknown dtype "${String(dtype)}"`, 'ERR_INVALID_ARG');
  return n;
}

/** Number of elements of a shape (1 for a scalar shape []). */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** `[2, 3]` → "[2, 3]", the way shapes appear in error messages. */
export function formatShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** Throws TorchTypeError (ERR_INVALID_ARG) unless `raw` is a well-formed RawTensor. `what` names it in the message. */
export function checkRawTensor(raw: RawTensor, what: string): void {
  if (raw === null || typeof raw !== 'object') {
    throw new TorchTypeError(`${what} is not a RawTensor`, 'ERR_INVALID_ARG');
  }
  if (!isDType(raw.dtype)) {
    throw new TorchTypeError(`${what} has unknown dtype "${String(raw.dtype)}"`, 'ERR_INVALID_ARG');
  }
  if (!Array.isArray(raw.shape) || !raw.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new TorchTypeError(`${what} has an invalid shape: expected an array of non-negative integers`, 'ERR_INVALID_ARG');
  }
  if (!(raw.data instanceof Uint8Array)) {
    throw new TorchTypeError(`${what} has no Uint8Array data`, 'ERR_INVALID_ARG');
  }
  const need = numel(raw.shape) * ITEM_SIZE[raw.dtype];
  if (raw.data.byteLength !== need) {
    throw new TorchTypeError(
      `${what} has ${raw.data.byteLength} bytes of data but shape ${formatShape(raw.shape)} ${raw.dtype} ` + `needs ${need} bytes`,
      'ERR_INVALID_ARG',
    );
  }
}

type TypedArray = Float32Array | Float64Array | BigInt64Array | Int32Array | Int16Array | Int8Array | Uint8Array | Uint16Array;

/** Wraps (copies) a typed array as a RawTensor. The dtype follows the array type; Uint16Array needs 'bfloat16' or
 * 'float16' and Uint8Array may be given 'bool'. */
export function rawFromTypedArray(shape: number[], array: TypedArray, dtype?: DType): RawTensor {
  let inferred: DType | undefined;
  if (array instanceof Float32Array) inferred = 'float32';
  else if (array instanceof Float64Array) inferred = 'float64';
  else if (array instanceof BigInt64Array) inferred = 'int64';
  else if (array instanceof Int32Array) inferred = 'int32';
  else if (array instanceof Int16Array) inferred = 'int16';
  else if (array instanceof Int8Array) inferred = 'int8';
  else if (array instanceof Uint8Array) inferred = dtype === 'bool' ? 'bool' : 'uint8';
  else if (array instanceof Uint16Array && (dtype === 'bfloat16' || dtype === 'float16')) inferred = dtype;
  if (inferred === undefined || (dtype !== undefined && dtype !== inferred)) {
    throw new TorchTypeError(`cannot make a ${dtype ?? 'RawTensor'} from a ${array.constructor.name}`, 'ERR_INVALID_ARG');
  }
  const raw: RawTensor = {
    dtype: inferred,
    shape: [...shape],
    data: new Uint8Array(array.buffer.slice(array.byteOffset, array.byteOffset + array.byteLength)),
  };
  checkRawTensor(raw, 'the array');
  return raw;
}

/** IEEE half → number. */
function halfToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac === 0 ? sign * Infinity : NaN;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** A plain Uint8Array view of `buf[begin, end)` (a Buffer's subarray would be a Buffer, with surprising slice()). */
export function byteView(buf: Uint8Array, begin: number, end: number): Uint8Array {
  return new Uint8Array(buf.buffer, buf.byteOffset + begin, end - begin);
}

/** Converts any RawTensor to a new Float32Array (int64 values beyond 2^24 lose precision, bool → 0/1). */
export function rawToFloat32(raw: RawTensor): Float32Array {
  checkRawTensor(raw, 'the tensor');
  // Copy into a fresh, aligned buffer: `data` may be an unaligned view of a file (and may be a Buffer, whose
  // slice() does not copy).
  const bytes = new Uint8Array(raw.data);
  const buf = bytes.buffer;
  const n = numel(raw.shape);
  switch (raw.dtype) {
    case 'float32':
      return new Float32Array(buf, 0, n);
    case 'float64':
      return Float32Array.from(new Float64Array(buf, 0, n));
    case 'bfloat16': {
      const bits = new Uint32Array(n);
      const src = new Uint16Array(buf, 0, n);
      for (let i = 0; i < n; i++) bits[i] = src[i]! << 16;
      return new Float32Array(bits.buffer);
    }
    case 'float16': {
      const src = new Uint16Array(buf, 0, n);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = halfToNumber(src[i]!);
      return out;
    }
    case 'int64': {
      const src = new BigInt64Array(buf, 0, n);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = Number(src[i]!);
      return out;
    }
    case 'int32':
      return Float32Array.from(new Int32Array(buf, 0, n));
    case 'int16':
      return Float32Array.from(new Int16Array(buf, 0, n));
    case 'int8':
      return Float32Array.from(new Int8Array(buf, 0, n));
    case 'uint8':
      return Float32Array.from(bytes);
    case 'bool':
      return Float32Array.from(bytes, (b) => (b !== 0 ? 1 : 0));
  }
}
