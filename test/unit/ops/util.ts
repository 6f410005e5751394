// Shared helpers for the op tests: leak-checked scopes and approximate comparison of values.
import { expect } from 'vitest';

import { memory, scope, type Tensor } from '../../../src/index.js';

/** Runs `fn` in a scope and asserts that every tensor it created was released. */
export function noLeak(fn: () => void): void {
  const before = memory().liveTensors;
  scope(fn);
  expect(memory().liveTensors).toBe(before);
}

/** The tensor's values as plain numbers (converted through float32 for 16-bit floats, int64 → number). */
export function values(t: Tensor): number[] {
  if (t.dtype === 'bfloat16' || t.dtype === 'float16') return Array.from(t.toFloat32Array());
  if (t.dtype === 'bool') return Array.from(t.data() as Uint8Array, (v) => (v ? 1 : 0));
  return t.toArray();
}

/** Asserts |actual − expected| ≤ tol elementwise (NaN matches NaN). */
export function expectClose(t: Tensor | number[], expected: number[], tol = 1e-6): void {
  const actual = Array.isArray(t) ? t : values(t);
  expect(actual.length, `length of ${JSON.stringify(actual)}`).toBe(expected.length);
  actual.forEach((a, i) => {
    const e = expected[i]!;
    if (Number.isNaN(e)) expect(a, `element ${i}`).toBeNaN();
    else if (!Number.isFinite(e)) expect(a, `element ${i}`).toBe(e);
    else expect(Math.abs(a - e), `element ${i}: ${a} vs ${e}`).toBeLessThanOrEqual(tol);
  });
}

/** The error thrown by `fn` (fails the test if nothing is thrown). */
export function errorOf(fn: () => unknown): Error & { code?: string } {
  try {
    fn();
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error('expected the call to throw');
}
