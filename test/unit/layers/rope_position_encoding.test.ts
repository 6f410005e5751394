// RoPE periods, coordinates, bf16 op-by-op rounding and train-mode augmentations (RECIPE §1.3).
import { describe, expect, test } from 'vitest';
import { Generator, memory, RopePositionEmbedding, ropePeriods, scope } from '../../../src/index.js';

/** Rounds a float32 value to bfloat16 (round to nearest even), as a number. */
function bf16(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer);
  u[0] = ((u[0]! + 0x7fff + ((u[0]! >>> 16) & 1)) >>> 16) << 16;
  return f[0]!;
}

describe('periods', () => {
  test('fp32: base^(4j/d)', () => {
    const p = ropePeriods(64, 100);
    expect(p).toHaveLength(16);
    expect(p[0]).toBe(1);
    expect(p[1]).toBeCloseTo(1.3335, 4);
    expect(p[2]).toBeCloseTo(1.7783, 4);
    expect(p[15]).toBeCloseTo(74.9894, 4);
  });

  test('bf16: each op rounded to bf16 (the training builder)', () => {
    const p64 = ropePeriods(64, 100, 'bfloat16');
    expect(p64.slice(0, 6)).toEqual([1, 1.3359375, 1.78125, 2.375, 3.15625, 4.21875]);
    expect(p64.slice(-3)).toEqual([42.25, 56.25, 75]);
    const p128 = ropePeriods(128, 100, 'bfloat16');
    expect(p128.slice(0, 5)).toEqual([1, 1.15625, 1.3359375, 1.5390625, 1.78125]);
    expect(p128.slice(-3)).toEqual([65, 75, 86.5]);
    expect(ropePeriods(16, 100, 'bfloat16')).toEqual([1, 3.15625, 10, 31.625]); // train_step fixtures
  });

  test('min/max parametrisation: geometric from min to max period', () => {
    const rope = new RopePositionEmbedding(64, { numHeads: 4, base: null, minPeriod: 0.5, maxPeriod: 40, dtype: 'float32' });
    const p = Array.from(rope.periods.toFloat32Array());
    expect(p[0]).toBeCloseTo(0.5, 6);
    expect(p[3]).toBeCloseTo(40, 4);
    expect(p[1]! / p[0]!).toBeCloseTo(p[3]! / p[2]!, 5);
    rope.dispose();
    expect(() => new RopePositionEmbedding(64, { numHeads: 4, base: 100, minPeriod: 0.5, maxPeriod: 40 })).toThrow(
      'RopePositionEmbedding: either `base` or `minPeriod`+`maxPeriod` must be provided',
    );
    expect(() => new RopePositionEmbedding(60, { numHeads: 4 })).toThrow('embedDim (60) must be a multiple of 4·numHeads (16)');
  });
});

describe('tables', () => {
  test('layout [row, col, row, col] over patch centres in [-1, 1], "separate" normalisation', () => {
    const rope = new RopePositionEmbedding(16, { numHeads: 1, dtype: 'float32' }).eval(); // d = 16: 4 periods
    const periods = Array.from(rope.periods.toFloat32Array());
    scope(() => {
      const { sin, cos } = rope.forward({ H: 4, W: 3 });
      expect(sin.shape).toEqual([12, 16]);
      const s = sin.toFloat32Array();
      const c = cos.toFloat32Array();
      for (let t = 0; t < 12; t++) {
        const [i, j] = [Math.floor(t / 3), t % 3];
        const row = (2 * (i + 0.5)) / 4 - 1;
        const col = (2 * (j + 0.5)) / 3 - 1;
        for (let k = 0; k < 16; k++) {
          const coord = k % 8 < 4 ? row : col;
          const angle = (2 * Math.PI * coord) / periods[k % 4]!;
          expect(s[t * 16 + k]).toBeCloseTo(Math.sin(angle), 5);
          expect(c[t * 16 + k]).toBeCloseTo(Math.cos(angle), 5);
        }
      }
    });
    rope.dispose();
  });

  test('"max" and "min" normalise both axes by max(H, W) / min(H, W)', () => {
    for (const [mode, div] of [
      ['max', 4],
      ['min', 3],
    ] as const) {
      const rope = new RopePositionEmbedding(16, { numHeads: 1, dtype: 'float32', normalizeCoords: mode }).eval();
      const p0 = rope.periods.toFloat32Array()[0]!;
      scope(() => {
        const { sin } = rope.forward({ H: 4, W: 3 });
        const s = sin.toFloat32Array();
        // token (i=3, j=2): row coord 2·3.5/div − 1, col coord 2·2.5/div − 1
        expect(s[11 * 16 + 0]).toBeCloseTo(Math.sin((2 * Math.PI * ((2 * 3.5) / div - 1)) / p0), 5);
        expect(s[11 * 16 + 4]).toBeCloseTo(Math.sin((2 * Math.PI * ((2 * 2.5) / div - 1)) / p0), 5);
      });
      rope.dispose();
    }
  });

  test('bf16 tables reproduce the op-by-op bf16 rounding of §1.3', () => {
    const rope = new RopePositionEmbedding(16, { numHeads: 1, dtype: 'bfloat16' }).eval();
    expect(rope.periods.dtype).toBe('bfloat16');
    const periods = Array.from(rope.periods.toFloat32Array());
    const twoPi = Math.fround(2 * Math.PI);
    scope(() => {
      const { sin, cos } = rope.forward({ H: 4, W: 3 });
      expect([sin.dtype, cos.dtype]).toEqual(['bfloat16', 'bfloat16']);
      const s = sin.toFloat32Array();
      const c = cos.toFloat32Array();
      const coord = (i: number, n: number) => bf16(bf16(2 * bf16(Math.fround(bf16(i + 0.5) / n))) - 1);
      let maxUlps = 0;
      for (let t = 0; t < 12; t++) {
        const [i, j] = [Math.floor(t / 3), t % 3];
        for (let k = 0; k < 16; k++) {
          const x = k % 8 < 4 ? coord(i, 4) : coord(j, 3);
          const angle = bf16(Math.fround(bf16(Math.fround(twoPi * x)) / periods[k % 4]!));
          for (const [got, want] of [
            [s[t * 16 + k]!, bf16(Math.fround(Math.sin(angle)))],
            [c[t * 16 + k]!, bf16(Math.fround(Math.cos(angle)))],
          ] as [number, number][]) {
            const ulp = Math.max(2 ** (Math.floor(Math.log2(Math.abs(want) || 1e-30)) - 7), 2 ** -133);
            maxUlps = Math.max(maxUlps, Math.abs(got - want) / ulp);
          }
        }
      }
      expect(maxUlps).toBe(0);
    });
    rope.dispose();
  });
});

describe('train-mode augmentations', () => {
  /** Coordinates scaled by the augmentation, recovered from the largest-period angle (no wrap-around). */
  function scaledCoords(rope: RopePositionEmbedding, H: number, W: number): { row: number[]; col: number[] } {
    const d = rope.headDim;
    const pMax = rope.periods.toFloat32Array()[d / 4 - 1]!;
    return scope(() => {
      const { sin, cos } = rope.forward({ H, W });
      const s = sin.toFloat32Array();
      const c = cos.toFloat32Array();
      const row: number[] = [];
      const col: number[] = [];
      for (let t = 0; t < H * W; t++) {
        row.push((Math.atan2(s[t * d + d / 4 - 1]!, c[t * d + d / 4 - 1]!) * pMax) / (2 * Math.PI));
        col.push((Math.atan2(s[t * d + d / 2 - 1]!, c[t * d + d / 2 - 1]!) * pMax) / (2 * Math.PI));
      }
      return { row, col };
    });
  }

  test('rescale: one log-uniform factor in [1/2, 2] shared by both axes, drawn on every call, train mode only', () => {
    const before = memory().liveTensors;
    const rope = new RopePositionEmbedding(64, { numHeads: 1, dtype: 'float32', rescaleCoords: 2, generator: new Generator(3) });
    const factors: number[] = [];
    for (let call = 0; call < 4; call++) {
      const { row, col } = scaledCoords(rope, 2, 2); // base coords ±0.5 on both axes
      const fr = row[3]! / 0.5;
      const fc = col[3]! / 0.5;
      expect(fr).toBeCloseTo(fc, 4);
      expect(fr).toBeGreaterThanOrEqual(0.5 - 1e-6);
      expect(fr).toBeLessThanOrEqual(2 + 1e-6);
      factors.push(fr);
    }
    expect(new Set(factors.map((f) => f.toFixed(5))).size).toBe(4);
    rope.eval();
    const { row } = scaledCoords(rope, 2, 2);
    expect(row[3]).toBeCloseTo(0.5, 5);
    rope.dispose();
    expect(memory().liveTensors).toBe(before);
  });

  test('jitter: one factor per axis; shift: one offset per axis; seeded generators repeat', () => {
    const before = memory().liveTensors;
    const make = (o: object) => new RopePositionEmbedding(64, { numHeads: 1, dtype: 'float32', generator: new Generator(7), ...o });
    const jitter = make({ jitterCoords: 1.5 });
    const a = scaledCoords(jitter, 2, 2);
    expect(Math.abs(a.row[3]! / 0.5 - a.col[3]! / 0.5)).toBeGreaterThan(1e-3);
    for (const v of [a.row[3]! / 0.5, a.col[3]! / 0.5]) expect(v).toBeGreaterThanOrEqual(1 / 1.5 - 1e-6), expect(v).toBeLessThanOrEqual(1.5 + 1e-6);
    const jitter2 = make({ jitterCoords: 1.5 });
    expect(scaledCoords(jitter2, 2, 2).row[3]).toBe(a.row[3]);
    jitter2.dispose();
    const shift = make({ shiftCoords: 0.25 });
    const b = scaledCoords(shift, 2, 2);
    const dr = b.row[3]! - 0.5;
    const dc = b.col[3]! - 0.5;
    expect(b.row[0]! - -0.5).toBeCloseTo(dr, 5); // the same offset for every token of an axis
    expect(Math.abs(dr)).toBeLessThanOrEqual(0.25 + 1e-6);
    expect(Math.abs(dc)).toBeLessThanOrEqual(0.25 + 1e-6);
    expect(dr).not.toBeCloseTo(dc, 4);
    jitter.dispose();
    shift.dispose();
    expect(memory().liveTensors).toBe(before);
  });
});
