// Argument checks at the public boundary, shared by every layer above the tensor layer (data, train, checkpoint, eval,
// …). Each check is O(1) (never per element) and throws a typed error naming the function and the argument, in the
// same words as `handleOf`: `<op>: expected "<name>" to be <what>, received <describe(value)>`. Wrong kinds raise
// TorchTypeError, values out of range TorchRangeError, both with code ERR_INVALID_ARG; a config-shaped argument that
// lacks a section raises ConfigError.
import { ConfigError, TorchRangeError, TorchTypeError } from '../native/errors.js';
import { describe, type Device, Tensor } from './tensor.js';

/** A value in a message: a number as itself (as `${v}` prints it), anything else through `describe` (which never
 * throws, unlike a template literal on a Symbol or a null-prototype object). */
export const show = (v: unknown): string => (typeof v === 'number' ? String(v) : describe(v));

/** A value in a message as JSON where JSON can write it (strings, arrays, plain objects), else `describe` (BigInt,
 * Symbols, cycles, undefined). */
export function showJson(v: unknown): string {
  try {
    return JSON.stringify(v) ?? describe(v);
  } catch {
    return describe(v);
  }
}

/** The TorchTypeError every kind check throws. */
export function argTypeError(op: string, name: string, what: string, v: unknown): TorchTypeError {
  return new TorchTypeError(`${op}: expected "${name}" to be ${what}, received ${describe(v)}`, 'ERR_INVALID_ARG');
}

/** The TorchRangeError every range check throws. */
export function argRangeError(op: string, name: string, what: string, v: unknown): TorchRangeError {
  return new TorchRangeError(`${op}: expected "${name}" to be ${what}, received ${describe(v)}`, 'ERR_INVALID_ARG');
}

/** A non-null, non-array object (options bags, configs, plain records). */
export function expectObject<T extends object = Record<string, unknown>>(op: string, name: string, v: unknown): T {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Tensor) throw argTypeError(op, name, 'an object', v);
  return v as T;
}

/** An optional options bag: undefined, or an object. */
export function expectOptions<T extends object>(op: string, name: string, v: unknown): T | undefined {
  return v === undefined ? undefined : expectObject<T>(op, name, v);
}

/** A string (`nonEmpty`: of length > 0, e.g. a path). */
export function expectString(op: string, name: string, v: unknown, nonEmpty = false): string {
  if (typeof v !== 'string') throw argTypeError(op, name, nonEmpty ? 'a non-empty string' : 'a string', v);
  if (nonEmpty && v.length === 0) throw argRangeError(op, name, 'a non-empty string', v);
  return v;
}

/** A file or folder path: a non-empty string. */
export function expectPath(op: string, name: string, v: unknown): string {
  return expectString(op, name, v, true);
}

/** A function (callbacks). */
export function expectFunction<T extends (...a: never[]) => unknown>(op: string, name: string, v: unknown): T {
  if (typeof v !== 'function') throw argTypeError(op, name, 'a function', v);
  return v as T;
}

/** An array (its elements are checked by the caller where they matter). */
export function expectArray<T = unknown>(op: string, name: string, v: unknown, what = 'an array'): T[] {
  if (!Array.isArray(v)) throw argTypeError(op, name, what, v);
  return v as T[];
}

/** A synchronous iterable (arrays, Maps, Sets, generators), strings excluded. */
export function expectIterable<T = unknown>(op: string, name: string, v: unknown, what = 'an iterable'): Iterable<T> {
  if (typeof v !== 'object' || v === null || typeof (v as { [Symbol.iterator]?: unknown })[Symbol.iterator] !== 'function')
    throw argTypeError(op, name, what, v);
  return v as Iterable<T>;
}

/** A Map (state dicts, generator states). */
export function expectMap<K = string, V = unknown>(op: string, name: string, v: unknown, what = 'a Map'): Map<K, V> {
  if (!(v instanceof Map)) throw argTypeError(op, name, what, v);
  return v as Map<K, V>;
}

/** A number, finite unless `allowInfinite`. */
export function expectNumber(op: string, name: string, v: unknown, allowInfinite = false): number {
  if (typeof v !== 'number') throw argTypeError(op, name, 'a number', v);
  if (Number.isNaN(v) || (!allowInfinite && !Number.isFinite(v))) throw argRangeError(op, name, 'a finite number', v);
  return v;
}

/** An integer `>= min` (default 0). */
export function expectInt(op: string, name: string, v: unknown, min = 0): number {
  if (typeof v !== 'number') throw argTypeError(op, name, `an integer >= ${min}`, v);
  if (!Number.isSafeInteger(v) || v < min) throw argRangeError(op, name, `an integer >= ${min}`, v);
  return v;
}

/** A positive finite number. */
export function expectPositive(op: string, name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw argRangeError(op, name, 'a positive finite number', v);
  return v;
}

/** A positive integer. */
export function expectPositiveInt(op: string, name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw argRangeError(op, name, 'a positive integer', v);
  return v;
}

/** A device string: "cpu", "cuda", "cuda:<index>" or "meta". */
export function expectDevice(op: string, name: string, v: unknown): Device {
  if (typeof v !== 'string' || !/^(cpu|meta|cuda(:\d+)?)$/.test(v)) throw argTypeError(op, name, '"cpu", "cuda", "cuda:<index>" or "meta"', v);
  return v as Device;
}

/** A Tensor (live or not: use with `assertLive` where a disposed one must be refused early). */
export function expectTensorArg(op: string, name: string, v: unknown): Tensor {
  if (!(v instanceof Tensor)) throw argTypeError(op, name, 'a Tensor', v);
  return v;
}

/**
 * An object that has the methods `methods` (duck-typed modules, process groups, optimizers): `what` names the kind,
 * e.g. `a Module`, `a ProcessGroup`.
 */
export function expectMethods<T>(op: string, name: string, v: unknown, what: string, methods: readonly string[]): T {
  if (typeof v !== 'object' || v === null || methods.some((m) => typeof (v as Record<string, unknown>)[m] !== 'function'))
    throw argTypeError(op, name, what, v);
  return v as T;
}

/**
 * A config-shaped argument (a parsed SSLConfig, or a VitConfig): an object whose `sections` are objects. Not an
 * object → TorchTypeError; a missing section → ConfigError naming it.
 */
export function expectConfig<T>(op: string, name: string, v: unknown, sections: readonly string[], what = 'a parsed SSLConfig'): T {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw argTypeError(op, name, what, v);
  for (const s of sections) {
    const sec = (v as Record<string, unknown>)[s];
    if (typeof sec !== 'object' || sec === null)
      throw new ConfigError(`${op}: "${name}" is not ${what}: section "${s}" is ${describe(sec)} (build configs with loadSSLConfig/parseConfig)`);
  }
  return v as T;
}
