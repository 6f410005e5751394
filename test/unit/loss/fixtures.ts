// Loads the reference fixtures (test/fixtures/reference, copied from shared/fixtures/reference) and compares tensors
// with a per-tensor relative tolerance, reporting the max difference and the first mismatches on failure.
import { expect } from 'vitest';

import { fromBuffer, type Tensor } from '../../../src/index.js';
import { readSafetensorsFile } from '../../../src/io/safetensors.js';

export const FIXTURES = new URL('../../fixtures/reference/', import.meta.url).pathname;

/** Every tensor of `<name>.safetensors`, as caller-owned Tensors. */
export async function loadFixture(name: string): Promise<Map<string, Tensor>> {
  const { tensors } = await readSafetensorsFile(`${FIXTURES}${name}.safetensors`);
  const out = new Map<string, Tensor>();
  for (const [k, raw] of tensors) out.set(k, fromBuffer(raw.data, raw.dtype, raw.shape).keep());
  return out;
}

export function disposeAll(m: Map<string, Tensor>): void {
  for (const t of m.values()) t.dispose();
}

/** max |a − e| / max |e| (the error measure reported for each fixture key). */
export function relErr(actual: Tensor, expected: Tensor): number {
  const a = actual.toFloat32Array();
  const e = expected.toFloat32Array();
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < e.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - e[i]!));
    scale = Math.max(scale, Math.abs(e[i]!));
  }
  return scale === 0 ? diff : diff / scale;
}

/** Asserts equal shapes and max |a − e| ≤ rtol · max |e|; on failure lists the first mismatching elements. */
export function expectClose(actual: Tensor, expected: Tensor, what: string, rtol = 1e-5): number {
  expect(actual.shape, `${what}: shape`).toEqual(expected.shape);
  const a = actual.toFloat32Array();
  const e = expected.toFloat32Array();
  let scale = 0;
  for (const v of e) scale = Math.max(scale, Math.abs(v));
  const tol = rtol * Math.max(scale, 1e-30);
  const bad: string[] = [];
  for (let i = 0; i < e.length && bad.length < 5; i++)
    if (!(Math.abs(a[i]! - e[i]!) <= tol)) bad.push(`[${i}] ${a[i]} vs ${e[i]}`);
  const err = relErr(actual, expected);
  expect(bad, `${what}: max rel err ${err.toExponential(2)} (tol ${rtol}); first mismatches`).toEqual([]);
  return err;
}

/** Asserts that `fn` throws an instance of `cls` with exactly `message` and `code`. */
export function expectError(fn: () => unknown, cls: abstract new (...a: never[]) => Error, message: string, code = 'ERR_INVALID_ARG'): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(cls);
  expect((err as Error).message).toBe(message);
  expect((err as { code?: string }).code).toBe(code);
}
