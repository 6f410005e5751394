import { describe, expect, test } from 'vitest';

import { clipGradNorm, emaUpdate, Linear, memory, tensor, type Tensor, TorchRangeError } from '../../../src/index.js';

const param = (vals: number[], shape = [vals.length]): Tensor => tensor(vals, { shape }).requiresGrad_(true);
function setGrad(p: Tensor, vals: number[]): void {
  const g = tensor(vals, { shape: p.shape });
  p.grad = g;
  g.dispose();
}
function gradOf(p: Tensor): number[] {
  const g = p.grad!;
  const out = g.toArray();
  g.dispose();
  return out;
}

/** The returned 0-d norm tensor's value (the tensor is freed). */
function normOf(t: Tensor): number {
  try {
    return t.item();
  } finally {
    t.dispose();
  }
}

describe('clipGradNorm', () => {
  test('returns the total L2 norm and scales every gradient by max / (norm + 1e-6)', () => {
    const before = memory().liveTensors;
    const g1 = [3, -4, 12, 0.5];
    const g2 = [1, 2, -2];
    const a = param([0, 0, 0, 0], [2, 2]);
    const b = param([0, 0, 0]);
    const c = param([1]); // no gradient: ignored
    setGrad(a, g1);
    setGrad(b, g2);
    const manual = Math.sqrt([...g1, ...g2].reduce((s, x) => s + x * x, 0));
    const norm = normOf(clipGradNorm([a, b, c], 3.0));
    expect(Math.abs(norm - manual)).toBeLessThan(1e-5);
    const coef = Math.fround(Math.fround(1 / Math.fround(Math.fround(norm) + 1e-6)) * 3);
    expect(gradOf(a)).toEqual(g1.map((x) => Math.fround(x * coef)));
    expect(gradOf(b)).toEqual(g2.map((x) => Math.fround(x * coef)));
    expect(c.grad).toBeNull();
    // The clipped gradients now have norm ≈ maxNorm.
    const clipped = [...gradOf(a), ...gradOf(b)];
    expect(Math.abs(Math.hypot(...clipped) - 3)).toBeLessThan(1e-5);
    for (const t of [a, b, c]) t.dispose();
    expect(memory().liveTensors).toBe(before);
  });

  test('leaves gradients unchanged when the norm is below the maximum', () => {
    const a = param([0, 0]);
    setGrad(a, [0.5, -0.25]);
    const norm = normOf(clipGradNorm([a], 30));
    expect(norm).toBeCloseTo(Math.hypot(0.5, 0.25), 6);
    expect(gradOf(a)).toEqual([0.5, -0.25]);
    a.dispose();
  });

  test('no gradients → 0; per-submodule clipping is one call per submodule', () => {
    const head = new Linear(3, 2);
    const backbone = new Linear(2, 2);
    expect(normOf(clipGradNorm(head.parameters(), 1))).toBe(0);
    setGrad(head.weight, [10, 0, 0, 0, 0, 0]);
    setGrad(backbone.weight, [0.1, 0, 0, 0]);
    expect(normOf(clipGradNorm(head.parameters(), 1))).toBeCloseTo(10, 5);
    expect(normOf(clipGradNorm(backbone.parameters(), 1))).toBeCloseTo(0.1, 6);
    expect(gradOf(head.weight)[0]).toBeCloseTo(1, 5);
    expect(gradOf(backbone.weight)[0]).toBeCloseTo(0.1, 7);
    head.dispose();
    backbone.dispose();
  });

  test('a NaN or negative maxNorm is rejected', () => {
    const a = param([1]);
    let err: unknown;
    try {
      clipGradNorm([a], Number.NaN);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TorchRangeError);
    expect((err as TorchRangeError).code).toBe('ERR_INVALID_ARG');
    expect((err as Error).message).toBe('clipGradNorm: "maxNorm" must be a number >= 0, received NaN');
    expect(() => clipGradNorm([a], -1)).toThrow('clipGradNorm: "maxNorm" must be a number >= 0, received -1');
    a.dispose();
  });
});

describe('emaUpdate', () => {
  test('teacher ← m·teacher + (1 − m)·student, exactly', () => {
    const t1 = tensor([1, 2, -4, 8]);
    const t2 = tensor([
      [0.5, 0.25],
      [0, -1],
    ]);
    const s1 = tensor([5, -2, 4, 0]);
    const s2 = tensor([
      [1.5, 0.25],
      [4, 3],
    ]);
    emaUpdate([t1, t2], [s1, s2], 0.75);
    expect(t1.toArray()).toEqual([2, 1, -2, 6]);
    expect(t2.toArray()).toEqual([0.75, 0.25, 1, 0]);
    expect(s1.toArray()).toEqual([5, -2, 4, 0]);
    emaUpdate([t1], [s1], 1);
    expect(t1.toArray()).toEqual([2, 1, -2, 6]);
    emaUpdate([t1], [s1], 0);
    expect(t1.toArray()).toEqual([5, -2, 4, 0]);
    for (const t of [t1, t2, s1, s2]) t.dispose();
  });

  test('mul then add, as the official foreach code (float32 rounding)', () => {
    const m = 0.994;
    const tv = [0.1, -0.7, 3.3];
    const sv = [0.2, 0.9, -1.1];
    const t = tensor(tv);
    const s = tensor(sv);
    emaUpdate([t], [s], m);
    const f = Math.fround;
    const expected = tv.map((x, i) => f(f(f(x) * f(m)) + f(1 - m) * f(sv[i]!)));
    const got = t.toArray();
    got.forEach((v, i) => expect(Math.abs(v - expected[i]!)).toBeLessThanOrEqual(Math.abs(expected[i]!) * 2 ** -23));
    t.dispose();
    s.dispose();
  });

  test('accepts Modules (their parameters) and works under requiresGrad', () => {
    const teacher = new Linear(2, 2);
    const student = new Linear(2, 2);
    teacher.requiresGrad_(false);
    emaUpdate(teacher, student, 0);
    expect(teacher.weight.toArray()).toEqual(student.weight.toArray());
    expect(teacher.bias!.toArray()).toEqual(student.bias!.toArray());
    expect(student.weight.requiresGrad).toBe(true);
    teacher.dispose();
    student.dispose();
  });

  test('mismatched lists are rejected', () => {
    const a = tensor([1, 2]);
    const b = tensor([1, 2, 3]);
    expect(() => emaUpdate([a], [a, b], 0.5)).toThrow('emaUpdate: teacher has 1 tensors but student has 2');
    expect(() => emaUpdate([a], [b], 0.5)).toThrow('emaUpdate: teacher[0] (float32 [2]) and student[0] (float32 [3]) differ in shape');
    expect(() => emaUpdate([a], [a], Number.POSITIVE_INFINITY)).toThrow('emaUpdate: "momentum" must be a finite number, received Infinity');
    a.dispose();
    b.dispose();
  });
});
