// Loads the reference fixtures (test/fixtures/reference, copied from shared/fixtures/reference) for a test file, checks
// that its tests leak no tensor, and compares tensors with a per-tensor relative tolerance, reporting the max difference
// and the first mismatches on failure.
import { afterAll, afterEach, beforeAll, beforeEach, expect } from 'vitest';

import { memory, type Tensor } from '../../../src/index.js';
import { disposeAll, loadFixture } from '../models/helpers.js';

/**
 * Loads every tensor of `<name>.safetensors` before the tests of the file (then calls `onLoad`) and disposes them after
 * the last one. `g(key)` is one tensor of the fixture, `all()` the whole map (both valid inside the tests).
 */
export function useFixture(name: string, onLoad?: (g: (key: string) => Tensor) => void): { g: (key: string) => Tensor; all: () => Map<string, Tensor> } {
  let f: Map<string, Tensor>;
  const g = (k: string) => f.get(k)!;
  beforeAll(async () => {
    f = await loadFixture(`${name}.safetensors`);
    onLoad?.(g);
  });
  afterAll(() => disposeAll(f));
  return { g, all: () => f };
}

/** Checks that every test of the file leaves `memory().liveTensors` where it found it. */
export function expectNoLeakedTensors(): void {
  let baseline = 0;
  beforeEach(() => {
    baseline = memory().liveTensors;
  });
  afterEach(() => {
    expect(memory().liveTensors).toBe(baseline);
  });
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
  for (let i = 0; i < e.length && bad.length < 5; i++) if (!(Math.abs(a[i]! - e[i]!) <= tol)) bad.push(`[${i}] ${a[i]} vs ${e[i]}`);
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
