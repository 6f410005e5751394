// The Tensor class: one owner of one native tensor handle. Ops are functions in src/ops/* that are also installed as
// methods (declaration merging), so `x.add(y)` and `add(x, y)` are the same call.
import { inspect } from 'node:util';

import { native, type NativeTensor } from '../native/binding.js';
import { DisposedError, TorchRangeError, TorchTypeError } from '../native/errors.js';
import { adopt, track, untrack } from './scope.js';

/** Element types, named as in torch. */
export type DType = 'float32' | 'float64' | 'bfloat16' | 'float16' | 'int64' | 'int32' | 'int16' | 'int8' | 'uint8' | 'bool';
/** Devices: 'cpu', 'cuda', 'cuda:N'. */
export type Device = 'cpu' | 'cuda' | `cuda:${number}` | 'meta';

export const DTYPES: readonly DType[] = ['float32', 'float64', 'bfloat16', 'float16', 'int64', 'int32', 'int16', 'int8', 'uint8', 'bool'];

/** Bytes per element. */
export function itemSize(d: DType): number {
  switch (d) {
    case 'float64':
    case 'int64':
      return 8;
    case 'float32':
    case 'int32':
      return 4;
    case 'bfloat16':
    case 'float16':
    case 'int16':
      return 2;
    default:
      return 1;
  }
}

/** The typed array returned by `data()` for each dtype (bfloat16/float16 come back as raw Uint16 bits). */
export type TypedArrayFor<D extends DType> = D extends 'float32'
  ? Float32Array
  : D extends 'float64'
    ? Float64Array
    : D extends 'int64'
      ? BigInt64Array
      : D extends 'int32'
        ? Int32Array
        : D extends 'int16' | 'bfloat16' | 'float16'
          ? Int16Array | Uint16Array
          : D extends 'int8'
            ? Int8Array
            : Uint8Array;

const kHandle = Symbol('dinov3.handle');

// The GC backstop: a tensor that no scope owns and that is garbage-collected without dispose() is freed here (some
// time after the collection; GPU memory is invisible to the GC, so dispose deterministically). Tensors owned by a
// scope are not registered: the scope keeps them alive until it disposes them.
const backstop = new FinalizationRegistry<NativeTensor>((h) => {
  try {
    native.dispose(h);
  } catch {
    // not a tensor handle (a Tensor built by hand around something else): nothing to free
  }
});

/** A short description of any value, for error messages. */
export function describe(v: unknown): string {
  if (v instanceof Tensor) return v.isDisposed ? 'a disposed Tensor' : `${v.dtype} Tensor [${v.shape.join(', ')}]`;
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (Array.isArray(v)) return `array of length ${v.length}`;
  if (typeof v === 'string') return `string "${v}"`;
  if (typeof v === 'object') {
    const proto = Object.getPrototypeOf(v);
    return proto === Object.prototype || proto === null ? 'object' : `${v.constructor?.name ?? 'unknown'} object`;
  }
  return `${typeof v} ${String(v)}`;
}

/** The native handle of `t`; throws a TorchTypeError naming the op and argument if `t` is not a Tensor. */
export function handleOf(t: unknown, op: string, name: string): NativeTensor {
  if (t instanceof Tensor) return t[kHandle];
  throw new TorchTypeError(`${op}: expected "${name}" to be a Tensor, received ${describe(t)}`, 'ERR_INVALID_ARG');
}

/** Tensor or number/boolean operand → native operand. */
export function operandOf(v: unknown, op: string, name: string): NativeTensor | number | boolean {
  if (typeof v === 'number' || typeof v === 'boolean') return v;
  if (v instanceof Tensor) return v[kHandle];
  throw new TorchTypeError(`${op}: expected "${name}" to be a Tensor or a number, received ${describe(v)}`, 'ERR_INVALID_ARG');
}

/** Wraps a fresh native handle (owned by the innermost scope, if any). */
export function wrap(h: NativeTensor): Tensor {
  return new Tensor(h);
}

export class Tensor {
  [kHandle]: NativeTensor;
  #shape: number[] | undefined;
  #dtype: DType | undefined;
  #backstop = false;

  /** @internal Use the creation functions (zeros, fromArray, …) instead. */
  constructor(h: NativeTensor) {
    this[kHandle] = h;
    track(this);
  }

  /** Sizes of each dimension. */
  get shape(): number[] {
    return (this.#shape ??= native.shape(this[kHandle]));
  }
  get dtype(): DType {
    return (this.#dtype ??= native.dtype(this[kHandle]) as DType);
  }
  get device(): Device {
    return native.device(this[kHandle]) as Device;
  }
  get ndim(): number {
    return this.shape.length;
  }
  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
  /** Size of one dimension (negative indices count from the end). */
  size(dim: number): number {
    const s = this.shape;
    const d = typeof dim !== 'number' ? -1 : dim < 0 ? dim + s.length : dim;
    if (!Number.isInteger(dim) || d < 0 || d >= s.length)
      throw new TorchRangeError(
        `size: dim ${typeof dim === 'number' ? dim : describe(dim)} is out of range for a ${s.length}-D tensor (expected ${-s.length}..${s.length - 1})`,
        'ERR_INVALID_ARG',
      );
    return s[d]!;
  }
  get strides(): number[] {
    return native.strides(this[kHandle]);
  }
  get isContiguous(): boolean {
    return native.isContiguous(this[kHandle]);
  }
  get isDisposed(): boolean {
    return native.isDisposed(this[kHandle]);
  }

  // ---- lifetime ----
  /**
   * Frees the native tensor now. Idempotent. Views share storage with their base: disposing a view does not free
   * memory the base still uses.
   */
  dispose(): void {
    untrack(this);
    if (this.#backstop) {
      backstop.unregister(this);
      this.#backstop = false;
    }
    native.dispose(this[kHandle]);
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
  /** Detaches this tensor from the enclosing scopes; the caller owns it. */
  keep(): this {
    adopt(this);
    return this;
  }
  /**
   * @internal Makes this tensor (same handle, same autograd leaf) hold `src`'s data, dtype, shape and device (torch's
   * `t.data = src`). Used by `Module.to_`.
   */
  replaceData(src: Tensor): void {
    native.setData(this[kHandle], handleOf(src, 'replaceData', 'src'));
    this.#shape = undefined;
    this.#dtype = undefined;
  }
  /** @internal No scope owns this tensor any more: register it with the GC backstop. */
  orphaned(): void {
    if (this.#backstop) return;
    backstop.register(this, this[kHandle], this);
    this.#backstop = true;
  }

  // ---- autograd ----
  get requiresGrad(): boolean {
    return native.requiresGrad(this[kHandle]);
  }
  set requiresGrad(on: boolean) {
    native.setRequiresGrad(this[kHandle], on);
  }
  /** Sets requiresGrad in place and returns this. */
  requiresGrad_(on = true): this {
    native.setRequiresGrad(this[kHandle], on);
    return this;
  }
  /** The accumulated gradient (a new handle sharing its storage), or null. */
  get grad(): Tensor | null {
    const g = native.grad(this[kHandle]);
    return g ? new Tensor(g) : null;
  }
  set grad(g: Tensor | null) {
    native.setGrad(this[kHandle], g ? handleOf(g, 'grad', 'grad') : null);
  }
  get isLeaf(): boolean {
    return native.isLeaf(this[kHandle]);
  }
  retainGrad(): this {
    native.retainGrad(this[kHandle]);
    return this;
  }
  /** Back-propagates from this tensor (a scalar unless `gradient` is given). */
  backward(opts: { gradient?: Tensor; retainGraph?: boolean } = {}): void {
    if (typeof opts !== 'object' || opts === null)
      throw new TorchTypeError(`backward: expected an options object { gradient?, retainGraph? }, received ${describe(opts)}`, 'ERR_INVALID_ARG');
    native.backward(this[kHandle], opts.gradient ? handleOf(opts.gradient, 'backward', 'gradient') : null, opts.retainGraph ?? false);
  }
  detach(): Tensor {
    return new Tensor(native.detach(this[kHandle]));
  }

  // ---- conversion ----
  /** Converts dtype and/or device. Returns a new tensor (a new handle to the same data if nothing changes). */
  to(opts: DType | Device | { dtype?: DType; device?: Device; nonBlocking?: boolean; copy?: boolean }): Tensor {
    if (typeof opts === 'string') {
      if ((DTYPES as readonly string[]).includes(opts)) return new Tensor(native.to(this[kHandle], opts, null));
      if (opts === 'cpu' || opts === 'meta' || /^cuda(:\d+)?$/.test(opts)) return new Tensor(native.to(this[kHandle], null, opts));
      throw new TorchTypeError(
        `to: expected a dtype (${DTYPES.join('|')}) or a device ("cpu", "cuda", "cuda:N"), received ${describe(opts)}`,
        'ERR_INVALID_ARG',
      );
    }
    if (typeof opts !== 'object' || opts === null)
      throw new TorchTypeError(
        `to: expected a dtype, a device or an options object { dtype?, device?, nonBlocking?, copy? }, received ${describe(opts)}`,
        'ERR_INVALID_ARG',
      );
    return new Tensor(native.to(this[kHandle], opts.dtype ?? null, opts.device ?? null, opts.nonBlocking ?? false, opts.copy ?? false));
  }
  float(): Tensor {
    return this.to('float32');
  }
  cpu(): Tensor {
    return this.to('cpu');
  }
  cuda(index = 0): Tensor {
    if (!Number.isSafeInteger(index) || index < 0)
      throw new TorchRangeError(`cuda: expected "index" to be a non-negative integer, received ${describe(index)}`, 'ERR_INVALID_ARG');
    return this.to(`cuda:${index}`);
  }
  contiguous(): Tensor {
    return new Tensor(native.contiguous(this[kHandle]));
  }
  clone(): Tensor {
    return new Tensor(native.clone(this[kHandle]));
  }
  pinMemory(): Tensor {
    return new Tensor(native.pinMemory(this[kHandle]));
  }
  /** Copies `src` into this tensor (broadcasting, converting dtype/device). */
  copy_(src: Tensor, nonBlocking = false): this {
    native.copy_(this[kHandle], handleOf(src, 'copy_', 'src'), nonBlocking);
    return this;
  }

  /**
   * The elements as a typed array in row-major order (a zero-copy view for contiguous CPU tensors; the view keeps
   * the memory alive on its own). bfloat16/float16 are returned as raw 16-bit patterns; use `toFloat32Array()`.
   */
  data(): TypedArrayFor<DType> {
    const buf = native.toArrayBuffer(this[kHandle]);
    return typedView(this.dtype, buf, 0, undefined) as TypedArrayFor<DType>;
  }
  /** The elements converted to float32. */
  toFloat32Array(): Float32Array {
    if (this.dtype === 'float32') return this.data() as Float32Array;
    const h = native.to(this[kHandle], 'float32'); // converted where it is: one transfer, one host synchronisation
    try {
      return new Float32Array(native.toArrayBuffer(h));
    } finally {
      native.dispose(h);
    }
  }
  /** Plain numbers (int64 converted to number). */
  toArray(): number[] {
    const d = this.data();
    return Array.from(d as ArrayLike<number | bigint>, (x) => Number(x));
  }
  /** Copies the data to host memory off the JS thread (for large or CUDA tensors). */
  async dataAsync(): Promise<TypedArrayFor<DType>> {
    const dtype = this.dtype;
    const buf = await native.dataAsync(this[kHandle]);
    return typedView(dtype, buf.buffer, buf.byteOffset, buf.byteLength) as TypedArrayFor<DType>;
  }
  /** The single element as a number (or boolean). */
  item(): number {
    return native.item(this[kHandle]) as number;
  }
  toString(): string {
    if (this.isDisposed) return `Tensor(disposed: ${native.describeDisposed(this[kHandle])})`;
    return native.toString(this[kHandle]);
  }
  /** What console.log and util.inspect show: dtype, shape, device, and the values of small tensors (≤ 64 elements). */
  [inspect.custom](): string {
    if (this.isDisposed) return this.toString();
    const head = `Tensor(${this.dtype} [${this.shape.join(', ')}] on ${this.device}${this.requiresGrad ? ', requiresGrad' : ''})`;
    if (this.numel > 64 || this.device === 'meta') return head;
    const flat = this.dtype === 'bfloat16' || this.dtype === 'float16' ? Array.from(this.toFloat32Array()) : this.toArray();
    return `${head} ${nested(flat, this.shape, this.dtype === 'bool')}`;
  }
}

/** Flat row-major values as nested brackets of the given shape: "[[1, 2], [3, 4]]". */
function nested(flat: number[], shape: number[], bool: boolean): string {
  if (shape.length === 0) return bool ? String(flat[0] !== 0) : String(flat[0]);
  const step = flat.length / shape[0]!;
  const parts = Array.from({ length: shape[0]! }, (_, i) => nested(flat.slice(i * step, (i + 1) * step), shape.slice(1), bool));
  return `[${parts.join(', ')}]`;
}

function typedView(dtype: DType, buf: ArrayBuffer | ArrayBufferLike, offset: number, byteLength: number | undefined) {
  const n = (byteLength ?? buf.byteLength - offset) / itemSize(dtype);
  switch (dtype) {
    case 'float32':
      return new Float32Array(buf, offset, n);
    case 'float64':
      return new Float64Array(buf, offset, n);
    case 'int64':
      return new BigInt64Array(buf, offset, n);
    case 'int32':
      return new Int32Array(buf, offset, n);
    case 'int16':
      return new Int16Array(buf, offset, n);
    case 'bfloat16':
    case 'float16':
      return new Uint16Array(buf, offset, n);
    case 'int8':
      return new Int8Array(buf, offset, n);
    default:
      return new Uint8Array(buf, offset, n);
  }
}

/** Throws a DisposedError with context if `t` was disposed (for TS-side composite ops). */
export function assertLive(t: Tensor, op: string, name: string): void {
  if (t.isDisposed) throw new DisposedError(`${op}: "${name}" is a disposed Tensor (${native.describeDisposed(t[kHandle])})`);
}
