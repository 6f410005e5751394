// iBOT block masking and collation against the official MaskingGenerator / collate_data_and_cast statistics
// (test/fixtures/masking_stats.json, made with the official code).
import { readFileSync } from 'node:fs';

import { describe, expect, test } from 'vitest';

import { ConfigError, memory, scope, TorchTypeError } from '../../../src/index.js';
import {
  batchTensors,
  collateDataAndCast,
  collateMasks,
  disposeBatch,
  linspaceF32,
  maskTargets,
  MaskingGenerator,
  officialMaxNumPatches,
  Rng,
} from '../../../src/data/index.js';

const FIX = JSON.parse(readFileSync(new URL('../../fixtures/masking_stats.json', import.meta.url), 'utf8')) as {
  masking_stats_14x14: { target: number; mean: number; min: number; max: number }[];
  max_num_patches: number;
  block_stats_14x14: Record<string, { components_mean: number; components_std: number; rows_touched_mean: number }>;
  collate_targets: Record<string, number[]>;
};

function components(m: Uint8Array, H: number, W: number): number {
  const seen = new Uint8Array(m.length);
  let c = 0;
  for (let s = 0; s < m.length; s++) {
    if (!m[s] || seen[s]) continue;
    c++;
    const stack = [s];
    seen[s] = 1;
    while (stack.length) {
      const k = stack.pop()!;
      const i = Math.floor(k / W);
      const j = k % W;
      for (const [a, b] of [
        [i + 1, j],
        [i - 1, j],
        [i, j + 1],
        [i, j - 1],
      ] as const) {
        const q = a * W + b;
        if (a >= 0 && a < H && b >= 0 && b < W && m[q] && !seen[q]) {
          seen[q] = 1;
          stack.push(q);
        }
      }
    }
  }
  return c;
}

describe('MaskingGenerator (dinov3/data/masking.py)', () => {
  const gen = new MaskingGenerator({ inputSize: 14, maxNumPatches: officialMaxNumPatches(224, 16) });

  test('max_num_patches as the official train builder computes it', () => {
    expect(officialMaxNumPatches(224, 16)).toBe(FIX.max_num_patches);
    expect(officialMaxNumPatches(64, 16)).toBe(8);
    expect(gen.minNumPatches).toBe(4);
    expect(gen.logAspectRatio[0]).toBeCloseTo(Math.log(0.3), 12);
    expect(gen.logAspectRatio[1]).toBeCloseTo(Math.log(1 / 0.3), 12);
  });

  for (const ref of FIX.masking_stats_14x14) {
    test(`target ${ref.target} on 14×14: exactly ${ref.mean} masked every time, block structure as official (2000 draws)`, () => {
      const st = FIX.block_stats_14x14[String(ref.target)]!;
      let comps = 0;
      let rows = 0;
      let min = Infinity;
      let max = -Infinity;
      const n = 2000;
      for (let d = 0; d < n; d++) {
        const m = gen.generate(Rng.derive(7, ref.target, d), ref.target);
        const count = m.reduce((a, b) => a + b, 0);
        min = Math.min(min, count);
        max = Math.max(max, count);
        comps += components(m, 14, 14);
        for (let i = 0; i < 14; i++) if (m.subarray(i * 14, i * 14 + 14).some((v) => v)) rows++;
      }
      expect([min, max]).toEqual([ref.min, ref.max]);
      // Standard error of the mean ≈ std / √2000 ≈ 0.02 (ours) and 0.015 (official, 4000 draws): 0.1 is > 4 SE.
      expect(Math.abs(comps / n - st.components_mean)).toBeLessThan(0.1);
      expect(Math.abs(rows / n - st.rows_touched_mean)).toBeLessThan(0.25);
    });
  }

  test('same Rng stream → same mask; bad targets are typed errors', () => {
    expect(gen.generate(Rng.derive(1, 2), 50)).toEqual(gen.generate(Rng.derive(1, 2), 50));
    expect(gen.generate(Rng.derive(1, 2), 50)).not.toEqual(gen.generate(Rng.derive(1, 3), 50));
    expect(() => gen.generate(Rng.derive(1), 197)).toThrow(new ConfigError('MaskingGenerator: cannot mask 197 of 196 patches'));
    expect(() => new MaskingGenerator({ inputSize: 0 })).toThrow(ConfigError);
    expect(() => new MaskingGenerator(undefined as never)).toThrow(
      new ConfigError('MaskingGenerator: expected an options object { inputSize, … }, received undefined'),
    );
    expect(() => new MaskingGenerator({ inputSize: 'big' as never })).toThrow(
      new ConfigError('MaskingGenerator: inputSize must be a positive integer or [height, width], got string'),
    );
    expect(() => collateMasks(2, Rng.derive(1), {} as never)).toThrow(
      new TorchTypeError('collateMasks: expected "options.maskGenerator" to be a MaskingGenerator, received undefined', 'ERR_INVALID_ARG'),
    );
    expect(() => officialMaxNumPatches(224, 0)).toThrow(new ConfigError('officialMaxNumPatches: patchSize must be a positive integer, got 0'));
  });
});

describe('collate_data_and_cast (dinov3/data/collate.py)', () => {
  test('per-mask targets match int(N · torch.linspace(0.1, 0.5, n + 1)[k + 1]) in float32', () => {
    for (const [key, want] of Object.entries(FIX.collate_targets)) {
      const [N, n] = key.split('_').map(Number) as [number, number];
      expect(maskTargets(N, n)).toEqual(want);
    }
    expect(linspaceF32(0, 1, 5)).toEqual([0, 0.25, 0.5, 0.75, 1]);
  });

  test('half the global crops masked, targets spread, shuffled uniformly over rows (2000 batches)', () => {
    const gen = new MaskingGenerator({ inputSize: 14, maxNumPatches: 98 });
    const rowMasked = new Array(16).fill(0);
    for (let it = 0; it < 2000; it++) {
      const { masks, upperbound } = collateMasks(16, Rng.derive(3, it), { maskGenerator: gen });
      const counts = masks.map((m) => m.reduce((a, b) => a + b, 0));
      expect(counts.filter((c) => c > 0).sort((a, b) => a - b)).toEqual(FIX.collate_targets['196_8']);
      expect(upperbound).toBe(FIX.collate_targets['196_8']!.reduce((a, b) => a + b, 0));
      counts.forEach((c, i) => (rowMasked[i] += c > 0 ? 1 : 0));
    }
    for (const r of rowMasked) expect(Math.abs(r / 2000 - 0.5)).toBeLessThan(0.04); // SE 0.011
  });

  test('batch tensors: crop-major crops, masks, indices, weights, counts, labels, bf16 cast', () => {
    const before = memory().liveTensors;
    const B = 4;
    const crop = (size: number, v: number) => new Float32Array(3 * size * size).fill(v);
    const samples = Array.from({ length: B }, (_, b) => ({
      global: [crop(32, 10 * b), crop(32, 10 * b + 1)],
      local: [crop(16, 100 + b), crop(16, 200 + b), crop(16, 300 + b)],
      label: b % 3,
    }));
    const gen = new MaskingGenerator({ inputSize: 2, maxNumPatches: 2 });
    const batch = collateDataAndCast(samples, { maskGenerator: gen }, Rng.derive(5));
    try {
      expect(batch.collated_global_crops.shape).toEqual([8, 3, 32, 32]);
      expect(batch.collated_local_crops.shape).toEqual([12, 3, 16, 16]);
      // crop-major: row c·B + b is crop c of image b
      const gfirst = scope(() => batch.collated_global_crops.reshape([8, -1]).select(1, 0).toArray());
      expect(gfirst).toEqual([0, 10, 20, 30, 1, 11, 21, 31]);
      expect(scope(() => batch.collated_local_crops.reshape([12, -1]).select(1, 0).toArray())).toEqual([
        100, 101, 102, 103, 200, 201, 202, 203, 300, 301, 302, 303,
      ]);
      expect(batch.collated_masks.dtype).toBe('bool');
      expect(batch.collated_masks.shape).toEqual([8, 4]);
      const flat = scope(() => batch.collated_masks.to('int32').toArray());
      const m = Array.from({ length: 8 }, (_, i) => flat.slice(4 * i, 4 * i + 4));
      const idx = flat.flatMap((v, i) => (v ? [i] : []));
      expect(batch.mask_indices_list.toArray()).toEqual(idx);
      expect(batch.n_masked_patches.toArray()[0]).toBe(idx.length);
      expect(batch.n_masked_patches.dtype).toBe('int64');
      const rowCount = m.map((r) => r.reduce((a, b) => a + b, 0));
      // targets [0, 1, 1, 2] (int(4 · 0.2) = 0: the official collate can give a 'masked' crop no masked patch) + 4 empty
      expect([...rowCount].sort()).toEqual([0, 0, 0, 0, ...maskTargets(4, 4)].sort());
      expect(batch.upperbound).toBe(maskTargets(4, 4).reduce((a, b) => a + b, 0));
      const w = batch.masks_weight.toArray() as number[];
      expect(w).toEqual(idx.map((i) => Math.fround(1 / rowCount[Math.floor(i / 4)]!)));
      expect(batch.labels!.toArray()).toEqual([0, 1, 2, 0]);
    } finally {
      disposeBatch(batch);
    }
    const bf = collateDataAndCast(samples, { maskGenerator: gen, dtype: 'bfloat16' }, Rng.derive(5));
    expect(bf.collated_global_crops.dtype).toBe('bfloat16');
    expect(bf.collated_local_crops.dtype).toBe('bfloat16');
    expect(batchTensors(bf).length).toBe(7);
    disposeBatch(bf);
    expect(memory().liveTensors).toBe(before);
  });

  test('reused staging buffers (scratch) give each batch its own data', () => {
    const gen = new MaskingGenerator({ inputSize: 2 });
    const mk = (v: number) => ({ global: [new Float32Array(48).fill(v), new Float32Array(48).fill(v + 1)], local: [new Float32Array(12).fill(v + 2)] });
    const scratch = new Map<string, Float32Array>();
    const a = collateDataAndCast([mk(0), mk(10)], { maskGenerator: gen, scratch }, Rng.derive(1));
    const buf = scratch.get('global');
    const b = collateDataAndCast([mk(100), mk(110)], { maskGenerator: gen, scratch }, Rng.derive(1));
    expect(scratch.get('global')).toBe(buf);
    const first = (t: typeof a.collated_global_crops) => scope(() => t.reshape([t.shape[0]!, -1]).select(1, 0).toArray());
    expect(first(a.collated_global_crops)).toEqual([0, 10, 1, 11]);
    expect(first(b.collated_global_crops)).toEqual([100, 110, 101, 111]);
    expect(first(b.collated_local_crops)).toEqual([102, 112]);
    disposeBatch(a);
    disposeBatch(b);
  });

  test('mismatched samples are typed errors', () => {
    const gen = new MaskingGenerator({ inputSize: 2 });
    const c = new Float32Array(3 * 4 * 4);
    expect(() => collateDataAndCast([], { maskGenerator: gen }, Rng.derive(0))).toThrow(new ConfigError('collate: no samples'));
    expect(() =>
      collateDataAndCast(
        [
          { global: [c, c], local: [] },
          { global: [c], local: [] },
        ],
        { maskGenerator: gen },
        Rng.derive(0),
      ),
    ).toThrow(new ConfigError('collate: sample 1 has 1 global crops, sample 0 has 2'));
    expect(() => collateDataAndCast([{ global: [new Float32Array(10)], local: [] }], { maskGenerator: gen }, Rng.derive(0))).toThrow(
      new ConfigError('collate: global crop 0 of sample 0 has 10 values, not a square 3-channel crop'),
    );
  });
});
