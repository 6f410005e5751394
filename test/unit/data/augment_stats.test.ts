// Statistics of the multi-crop augmentation's random draws under fixed seeds, against what the official
// dinov3/data/augmentations.py::DataAugmentationDINO (with torchvision v2 RandomResizedCrop / RandomApply / ColorJitter /
// RandomGrayscale / RandomSolarize and dinov3/data/transforms.py::GaussianBlur) draws; plus determinism, the options,
// and the full pipeline on both kernel sets.
import { readFileSync } from 'node:fs';
import { brotliDecompressSync } from 'node:zlib';

import { describe, expect, test } from 'vitest';

import {
  AUGMENT_SPEC,
  type CropParams,
  MultiCropAugmentation,
  type MultiCropParams,
  nativeAugmentAvailable,
  OFFICIAL_BLUR_APPLY_PROB,
  resolveMultiCropOptions,
  runCropChain,
  sampleMultiCropParams,
  sampleResizedCropBox,
} from '../../../src/data/augmentations.js';
import { Rng } from '../../../src/data/rng.js';
import { readSafetensors } from '../../../src/io/safetensors.js';
import { native } from '../../../src/native/binding.js';
import { ConfigError, ImageError, TorchRangeError, TorchTypeError } from '../../../src/native/errors.js';

const N = 4000;
const SEED = 20251204;
const rate = (xs: boolean[]) => xs.filter(Boolean).length / xs.length;

/** Kolmogorov–Smirnov distance between a sample and a CDF. */
function ks(sample: number[], cdf: (x: number) => number): number {
  const s = [...sample].sort((a, b) => a - b);
  let d = 0;
  s.forEach((x, i) => {
    const f = cdf(x);
    d = Math.max(d, Math.abs(f - i / s.length), Math.abs(f - (i + 1) / s.length));
  });
  return d;
}
// 99.9% critical value of the one-sample KS statistic: 1.95/√n.
const KS_CRIT = 1.95 / Math.sqrt(N);

describe('RandomResizedCrop boxes', () => {
  // A large image, so that local crops always fit (no rejection) and rounding w, h moves the ratio by < 0.2%.
  const W = 2000;
  const H = 1600;
  const boxes = Array.from({ length: N }, (_, i) => sampleResizedCropBox(Rng.derive(SEED, i), W, H, [0.05, 0.32]));

  test(`local scale (0.05, 0.32): area fraction uniform, log aspect ratio uniform on [log 3/4, log 4/3] (KS < ${KS_CRIT.toFixed(4)})`, () => {
    const area = boxes.map((b) => (b.width * b.height) / (W * H));
    const logr = boxes.map((b) => Math.log(b.width / b.height));
    for (const a of area) {
      expect(a).toBeGreaterThan(0.05 * 0.995);
      expect(a).toBeLessThan(0.32 * 1.005);
    }
    for (const r of logr) {
      expect(Math.abs(r)).toBeLessThan(Math.log(4 / 3) + 0.003);
    }
    const l0 = Math.log(3 / 4);
    const l1 = Math.log(4 / 3);
    const dArea = ks(area, (x) => Math.min(1, Math.max(0, (x - 0.05) / 0.27)));
    const dRatio = ks(logr, (x) => Math.min(1, Math.max(0, (x - l0) / (l1 - l0))));
    expect(dArea).toBeLessThan(KS_CRIT);
    expect(dRatio).toBeLessThan(KS_CRIT);
    // …and the ratio itself is not uniform: its median is 1 (log-uniform is symmetric in log space).
    const sorted = boxes.map((b) => b.width / b.height).sort((a, b) => a - b);
    expect(Math.abs(sorted[N / 2]! - 1)).toBeLessThan(0.02);
    // Top-left offsets are uniform over the valid range: both edges are reached.
    expect(boxes.every((b) => b.left >= 0 && b.top >= 0 && b.left + b.width <= W && b.top + b.height <= H)).toBe(true);
  });

  test('global scale (0.32, 1.0) on a 600×400 photo: inside the ranges, the centre-crop fallback only when 10 tries fail', () => {
    const w = 600;
    const h = 400;
    const gb = Array.from({ length: N }, (_, i) => sampleResizedCropBox(Rng.derive(SEED, 7, i), w, h, [0.32, 1.0]));
    let fallback = 0;
    for (const b of gb) {
      const a = (b.width * b.height) / (w * h);
      expect(a).toBeGreaterThan(0.32 * 0.99);
      expect(a).toBeLessThanOrEqual(1);
      expect(b.left + b.width).toBeLessThanOrEqual(w);
      expect(b.top + b.height).toBeLessThanOrEqual(h);
      const r = b.width / b.height;
      expect(r).toBeGreaterThan(0.75 * 0.99);
      expect(r).toBeLessThan((4 / 3) * 1.01);
      // torchvision's fallback for in_ratio 1.5 > 4/3: h = 400, w = round(400·4/3) = 533, centred.
      if (b.height === 400 && b.width === 533 && b.left === 33 && b.top === 0) fallback++;
    }
    // P(one try fits) on 600×400 is about 0.5, so all ten fail about 0.1% of the time.
    expect(fallback / N).toBeLessThan(0.01);
  });

  test('fallback centre crops (torchvision make_params when 10 tries fail)', () => {
    // A 1×100 strip: no crop with ratio in [3/4, 4/3] fits, so the fallback (ratio < 3/4: w = width, h = round(w/0.75)).
    expect(sampleResizedCropBox(Rng.derive(1), 1, 100, [0.32, 1])).toEqual({ top: 49, left: 0, height: 1, width: 1 });
    expect(sampleResizedCropBox(Rng.derive(1), 100, 2, [0.9, 1])).toEqual({ top: 0, left: 48, height: 2, width: 3 });
  });
});

describe('per-crop random draws (official probabilities, default options)', () => {
  const opts = resolveMultiCropOptions();
  const draws: MultiCropParams[] = Array.from({ length: N }, (_, i) => sampleMultiCropParams(600, 400, Rng.derive(SEED, 0, i), opts));
  const g1 = draws.map((d) => d.global[0]);
  const g2 = draws.map((d) => d.global[1]);
  const loc = draws.flatMap((d) => d.local);
  const all: CropParams[] = [...g1, ...g2, ...loc];

  test('structure: 2 global crops at 224, 8 local crops at 96', () => {
    expect(draws.every((d) => d.global.length === 2 && d.local.length === 8 && d.shared === null)).toBe(true);
    expect(g1.every((p) => p.size === 224)).toBe(true);
    expect(loc.every((p) => p.size === 96 && p.subset === null)).toBe(true);
  });

  const figures = {
    flip: rate(all.map((p) => p.flip)),
    jitter: rate(all.map((p) => p.color.jitter !== null)),
    grayscale: rate(all.map((p) => p.color.grayscale)),
    blurG1: rate(g1.map((p) => p.blurSigma !== null)),
    blurG2: rate(g2.map((p) => p.blurSigma !== null)),
    blurLocal: rate(loc.map((p) => p.blurSigma !== null)),
    solarizeG2: rate(g2.map((p) => p.solarize)),
    solarizeOther: rate([...g1, ...loc].map((p) => p.solarize)),
  };
  const f = (x: number) => x.toFixed(4);

  test(`flip ${f(figures.flip)} (0.5 ± 0.03), jitter ${f(figures.jitter)} (0.8 ± 0.03), grayscale ${f(figures.grayscale)} (0.2 ± 0.02)`, () => {
    expect(Math.abs(figures.flip - 0.5)).toBeLessThan(0.03);
    expect(Math.abs(figures.jitter - 0.8)).toBeLessThan(0.03);
    expect(Math.abs(figures.grayscale - 0.2)).toBeLessThan(0.02);
    // Per crop kind too (each n ≥ 4000).
    for (const set of [g1, g2, loc]) {
      expect(Math.abs(rate(set.map((p) => p.flip)) - 0.5)).toBeLessThan(0.03);
      expect(Math.abs(rate(set.map((p) => p.color.jitter !== null)) - 0.8)).toBeLessThan(0.03);
      expect(Math.abs(rate(set.map((p) => p.color.grayscale)) - 0.2)).toBeLessThan(0.02);
    }
  });

  test(`blur as the official GaussianBlur applies it (1 − p to RandomApply): global1 ${f(figures.blurG1)} (0), global2 ${f(figures.blurG2)} (0.9 ± 0.02), local ${f(figures.blurLocal)} (0.5 ± 0.03)`, () => {
    expect(OFFICIAL_BLUR_APPLY_PROB).toEqual({ global1: 0, global2: 0.9, local: 0.5 });
    expect(figures.blurG1).toBe(0);
    expect(Math.abs(figures.blurG2 - 0.9)).toBeLessThan(0.02);
    expect(Math.abs(figures.blurLocal - 0.5)).toBeLessThan(0.03);
    const sig = all.flatMap((p) => (p.blurSigma === null ? [] : [p.blurSigma]));
    expect(Math.min(...sig)).toBeGreaterThanOrEqual(0.1);
    expect(Math.max(...sig)).toBeLessThan(2.0);
    expect(ks(sig.slice(0, N), (x) => (x - 0.1) / 1.9)).toBeLessThan(KS_CRIT);
  });

  test(`solarize on the 2nd global crop only: ${f(figures.solarizeG2)} (0.2 ± 0.02), elsewhere ${f(figures.solarizeOther)} (0)`, () => {
    expect(Math.abs(figures.solarizeG2 - 0.2)).toBeLessThan(0.02);
    expect(figures.solarizeOther).toBe(0);
  });

  test('ColorJitter(0.4, 0.4, 0.2, 0.1): factors uniform in their ranges, the 24 orders equally likely', () => {
    const js = all.flatMap((p) => (p.color.jitter ? [p.color.jitter] : []));
    const within = (k: 'brightness' | 'contrast' | 'saturation' | 'hue', lo: number, hi: number) => {
      const v = js.map((j) => j[k]);
      expect(Math.min(...v)).toBeGreaterThanOrEqual(lo);
      expect(Math.max(...v)).toBeLessThan(hi);
      expect(ks(v.slice(0, N), (x) => (x - lo) / (hi - lo))).toBeLessThan(KS_CRIT);
    };
    within('brightness', 0.6, 1.4);
    within('contrast', 0.6, 1.4);
    within('saturation', 0.8, 1.2);
    within('hue', -0.1, 0.1);
    const counts = new Map<string, number>();
    for (const j of js) {
      expect([...j.order].sort()).toEqual([0, 1, 2, 3]);
      counts.set(j.order.join(''), (counts.get(j.order.join('')) ?? 0) + 1);
    }
    expect(counts.size).toBe(24);
    // χ² with 23 degrees of freedom; 99.9% quantile 49.7.
    const e = js.length / 24;
    const chi2 = [...counts.values()].reduce((s, c) => s + (c - e) ** 2 / e, 0);
    expect(chi2).toBeLessThan(49.7);
  });
});

describe('determinism and options', () => {
  test('same (seed, keys) ⇒ same draws; other keys ⇒ other draws', () => {
    const o = resolveMultiCropOptions();
    const a = sampleMultiCropParams(640, 480, Rng.derive(5, 3, 9), o);
    expect(sampleMultiCropParams(640, 480, Rng.derive(5, 3, 9), o)).toEqual(a);
    expect(sampleMultiCropParams(640, 480, Rng.derive(5, 3, 10), o)).not.toEqual(a);
  });

  test('horizontalFlips false never flips; blurApplyProb overrides the official quirk', () => {
    const o = resolveMultiCropOptions({ horizontalFlips: false, blurApplyProb: { global1: 1, global2: 0, local: 0 } });
    const d = Array.from({ length: 500 }, (_, i) => sampleMultiCropParams(300, 300, Rng.derive(2, i), o));
    expect(d.some((p) => [...p.global, ...p.local].some((c) => c.flip))).toBe(false);
    expect(d.every((p) => p.global[0].blurSigma !== null && p.global[1].blurSigma === null && p.local.every((c) => c.blurSigma === null))).toBe(true);
  });

  test('shareColorJitter draws one jitter + grayscale for the whole image and none per crop', () => {
    const o = resolveMultiCropOptions({ shareColorJitter: true });
    const d = Array.from({ length: 2000 }, (_, i) => sampleMultiCropParams(300, 200, Rng.derive(3, i), o));
    expect(d.every((p) => [...p.global, ...p.local].every((c) => c.color.jitter === null && !c.color.grayscale))).toBe(true);
    expect(Math.abs(rate(d.map((p) => p.shared!.jitter !== null)) - 0.8)).toBeLessThan(0.03);
    expect(Math.abs(rate(d.map((p) => p.shared!.grayscale)) - 0.2)).toBeLessThan(0.03);
  });

  test('localCropsSubsetOfGlobalCrops: 2·⌊n/2⌋ crops, half from each global crop, patch-aligned offsets in [0, (224 − 96)/16)·16', () => {
    const o = resolveMultiCropOptions({ localCropsSubsetOfGlobalCrops: true, localCropsNumber: 7 });
    const seen = new Set<number>();
    for (let i = 0; i < 500; i++) {
      const p = sampleMultiCropParams(400, 300, Rng.derive(4, i), o);
      expect(p.local).toHaveLength(6);
      expect(p.local.map((l) => l.subset!.global)).toEqual([0, 0, 0, 1, 1, 1]);
      for (const l of p.local) {
        for (const v of [l.subset!.row, l.subset!.col]) {
          expect(v % 16).toBe(0);
          expect(v).toBeGreaterThanOrEqual(0);
          expect(v).toBeLessThanOrEqual(112);
          seen.add(v);
        }
        expect(l.solarize).toBe(false);
      }
    }
    expect([...seen].sort((a, b) => a - b)).toEqual([0, 16, 32, 48, 64, 80, 96, 112]);
  });

  test('bad options fail with clear errors', () => {
    expect(() => resolveMultiCropOptions({ globalCropsScale: [0.5, 0.2] })).toThrow(
      new ConfigError('globalCropsScale must be [min, max] with 0 < min <= max <= 1, got [0.5, 0.2]'),
    );
    expect(() => resolveMultiCropOptions({ localCropsNumber: -1 })).toThrow('localCropsNumber must be a non-negative integer, got -1');
    expect(() => resolveMultiCropOptions({ localCropsSubsetOfGlobalCrops: true, globalCropsSize: 96, localCropsSize: 96 })).toThrow(
      'localCropsSubsetOfGlobalCrops needs globalCropsSize − localCropsSize >= patchSize, got 96 − 96 < 16',
    );
    expect(() => resolveMultiCropOptions({ std: [1, 0, 1] })).toThrow('mean and std must be three finite numbers each, std non-zero');
    expect(() => resolveMultiCropOptions({ backend: 'gpu' as never })).toThrow("backend must be 'auto', 'native' or 'js', got gpu");
    const img = { data: new Uint8Array(8 * 6 * 3), width: 8, height: 6 };
    const chain = {
      box: { top: 0, left: 0, height: 6, width: 8 },
      outH: 6,
      outW: 8,
      flip: false,
      color: { jitter: null, grayscale: false },
      blurSigma: null,
      solarize: false,
    };
    for (const backend of ['js', 'native'] as const) {
      expect(() => runCropChain(img, { ...chain, box: { top: 1, left: 0, height: 6, width: 8 } }, { backend, output: 'uint8' })).toThrow(
        new ImageError('crop box 8×6 at (0, 1) is outside the 8×6 image'),
      );
      expect(() => runCropChain(img, { ...chain, outH: 0 }, { backend, output: 'uint8' })).toThrow('output size must be integers in [1, 16384], got 8×0');
      expect(() =>
        runCropChain(
          img,
          { ...chain, color: { jitter: { order: [4], brightness: 1, contrast: 1, saturation: 1, hue: 0 }, grayscale: false } },
          { backend, output: 'uint8' },
        ),
      ).toThrow('jitter order must list op ids 0..3 (brightness, contrast, saturation, hue), got [4]');
    }
    // The addon's entry point itself rejects malformed calls with typed errors (never a crash).
    expect(() => native.augmentCrop!(img.data, 8, 6, new Float64Array(3))).toThrow(TorchRangeError);
    expect(() => native.augmentCrop!(img.data, 8, 7, new Float64Array(AUGMENT_SPEC.length))).toThrow('image must hold width × height × 3 bytes');
    expect(() => native.augmentCrop!(new Float32Array(3) as never, 1, 1, new Float64Array(AUGMENT_SPEC.length))).toThrow(TorchTypeError);
    const aug = new MultiCropAugmentation();
    expect(() => aug.apply({ data: new Uint8Array(10), width: 2, height: 2 }, Rng.derive(0))).toThrow(
      'image: expected 12 bytes of interleaved RGB for 2×2, got 10',
    );
  });
});

describe('full pipeline on a photo (coffee.jpg from the op fixture)', () => {
  const st = readSafetensors(brotliDecompressSync(readFileSync(new URL('../../fixtures/reference/augment_io.safetensors.br', import.meta.url))));
  const t = st.tensors.get('input')!;
  const image = { data: new Uint8Array(t.data), width: t.shape[1]!, height: t.shape[0]! };
  const before = image.data.slice();

  const maxDiff = (a: Float32Array, b: Float32Array) => {
    let m = 0;
    for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
    return m;
  };

  const configs: [string, Parameters<typeof resolveMultiCropOptions>[0]][] = [
    ['default', {}],
    ['gram 256 with distortions', { gramTeacherCropsSize: 256 }],
    ['gram 192 without distortions + teacherNoColorJitter', { gramTeacherCropsSize: 192, gramTeacherNoDistortions: true, teacherNoColorJitter: true }],
    ['shareColorJitter + localCropsSubsetOfGlobalCrops', { shareColorJitter: true, localCropsSubsetOfGlobalCrops: true, localCropsNumber: 4 }],
  ];
  for (const [name, cfg] of configs) {
    test(`${name}: shapes, pure function of (seed, keys), native and TypeScript kernels agree (blur within one level)`, () => {
      expect(nativeAugmentAvailable()).toBe(true);
      const nat = new MultiCropAugmentation({ ...cfg, backend: 'native' });
      const js = new MultiCropAugmentation({ ...cfg, backend: 'js' });
      for (let k = 0; k < (name === 'default' ? 2 : 1); k++) {
        const a = nat.apply(image, Rng.derive(11, k));
        const b = js.apply(image, Rng.derive(11, k));
        const again = nat.apply(image, Rng.derive(11, k));
        const o = nat.options;
        const maxSize = Math.max(o.globalCropsSize, o.gramTeacherCropsSize ?? 0);
        expect(a.global.map((x) => x.length)).toEqual([3 * 224 * 224, 3 * 224 * 224]);
        expect(a.local.map((x) => x.length)).toEqual(
          Array(o.localCropsSubsetOfGlobalCrops ? 2 * Math.floor(o.localCropsNumber / 2) : o.localCropsNumber).fill(3 * 96 * 96),
        );
        if (o.gramTeacherCropsSize !== null) {
          expect(a.gramSize).toBe(o.gramTeacherCropsSize);
          expect(a.gramTeacher!.map((x) => x.length)).toEqual(Array(2).fill(3 * o.gramTeacherCropsSize ** 2));
        } else expect(a.gramTeacher).toBeUndefined();
        if (o.teacherNoColorJitter) expect(a.globalTeacher!.map((x) => x.length)).toEqual(Array(2).fill(3 * maxSize ** 2));
        else expect(a.globalTeacher).toBeUndefined();
        const arrays = (s: typeof a) => [...s.global, ...s.local, ...(s.gramTeacher ?? []), ...(s.globalTeacher ?? [])];
        arrays(a).forEach((x, i) => {
          expect(x).toEqual(arrays(again)[i]);
          // One 8-bit level is at most 1/(255·0.224) ≈ 0.0175 after normalisation.
          expect(maxDiff(x, arrays(b)[i]!)).toBeLessThan(0.0176);
          expect(x.every(Number.isFinite)).toBe(true);
          // Each crop owns its whole ArrayBuffer, so a worker can transfer it without copying.
          expect([x.byteOffset, x.buffer.byteLength]).toEqual([0, x.byteLength]);
          expect([arrays(b)[i]!.byteOffset, arrays(b)[i]!.buffer.byteLength]).toEqual([0, x.byteLength]);
        });
      }
      expect(image.data).toEqual(before); // the input is never written
    });
  }
});
