import { describe, expect, test } from 'vitest';

import { ImageError, interpolate, memory, scope, tensor } from '../../../src/index.js';
import {
  LVD1689M_MEAN,
  LVD1689M_STD,
  normalizationStats,
  planResize,
  resizeTensor,
  rgbToTensor,
  roundToMultiple,
  SAT493M_MEAN,
  SAT493M_STD,
} from '../../../src/data/index.js';

describe('planResize', () => {
  test('square resizes to R×R without a crop', () => {
    expect(planResize(451, 300, { resolution: 224 })).toEqual({
      resize: { width: 224, height: 224 },
      crop: null,
      width: 224,
      height: 224,
    });
  });

  test('a resolution that is not a multiple of the patch size is rejected with the nearest valid sizes', () => {
    const err = (() => {
      try {
        planResize(451, 300, { resolution: 500 });
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(RangeError);
    expect((err as RangeError).message).toBe("resolution 500 is not a multiple of the patch size 16: use 496 or 512, or sizeMultiple: 'round' to round it");
    expect(() => planResize(10, 10, { resolution: 8, patchSize: 16 })).toThrow(
      "resolution 8 is not a multiple of the patch size 16: use 16, or sizeMultiple: 'round' to round it",
    );
  });

  test('sizeMultiple round goes to the nearest multiple (ties up, at least one patch)', () => {
    expect(planResize(451, 300, { resolution: 500, sizeMultiple: 'round' }).width).toBe(496);
    expect(planResize(451, 300, { resolution: 504, sizeMultiple: 'round' }).width).toBe(512);
    expect(roundToMultiple(3, 16)).toBe(16);
    expect(roundToMultiple(24, 16)).toBe(32);
    expect(roundToMultiple(23.9, 16)).toBe(16);
  });

  test('shortSide matches torchvision Resize(256) + CenterCrop(224): truncated long side, half-to-even offsets', () => {
    expect(planResize(451, 300, { resolution: 224, resize: 'shortSide', resizeShortSide: 256 })).toEqual({
      resize: { width: 384, height: 256 },
      crop: { left: 80, top: 16, width: 224, height: 224 },
      width: 224,
      height: 224,
    });
    // (257 − 224) / 2 = 16.5 → 16 and (259 − 224) / 2 = 17.5 → 18, as Python's round().
    expect(planResize(257, 256, { resolution: 224, resize: 'shortSide', resizeShortSide: 256 }).crop).toEqual({ left: 16, top: 16, width: 224, height: 224 });
    expect(planResize(259, 256, { resolution: 224, resize: 'shortSide', resizeShortSide: 256 }).crop).toEqual({ left: 18, top: 16, width: 224, height: 224 });
    // Portrait: the width is the short side.
    expect(planResize(300, 451, { resolution: 224, resize: 'shortSide' }).resize).toEqual({ width: 224, height: 336 });
  });

  test('keepAspect scales the short side to R and rounds both sides to multiples of 16', () => {
    expect(planResize(451, 300, { resolution: 224, resize: 'keepAspect' })).toMatchObject({ width: 336, height: 224, crop: null });
    expect(planResize(600, 400, { resolution: 256, resize: 'keepAspect' })).toMatchObject({ width: 384, height: 256 });
    expect(planResize(150, 226, { resolution: 100, resize: 'keepAspect' })).toMatchObject({ width: 96, height: 144 });
  });

  test('none keeps the size, rejecting or rounding sides that are not multiples', () => {
    expect(planResize(64, 48, { resize: 'none' })).toMatchObject({ width: 64, height: 48 });
    expect(() => planResize(451, 300, { resize: 'none' }, 'cat.jpg')).toThrow(ImageError);
    expect(() => planResize(451, 300, { resize: 'none' }, 'cat.jpg')).toThrow(
      `image width 451 is not a multiple of the patch size 16 (image "cat.jpg"): use 448 or 464, or sizeMultiple: 'round' to round it`,
    );
    expect(planResize(451, 300, { resize: 'none', sizeMultiple: 'round' })).toMatchObject({ width: 448, height: 304 });
  });

  test('bad options are rejected with the allowed values', () => {
    // @ts-expect-error wrong policy
    expect(() => planResize(10, 10, { resize: 'fit' })).toThrow('preprocess: resize must be one of square, shortSide, keepAspect, none; received "fit"');
    expect(() => planResize(10, 10, { resolution: 0 })).toThrow('preprocess: resolution must be a positive integer, received 0');
    expect(() => planResize(10, 10, { resolution: 224, resize: 'shortSide', resizeShortSide: 200 })).toThrow(
      'preprocess: resizeShortSide 200 is smaller than the crop size 224',
    );
  });
});

describe('normalisation', () => {
  test('LVD-1689M (ImageNet) and SAT-493M statistics', () => {
    expect(normalizationStats('lvd1689m')).toEqual({ mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] });
    expect(normalizationStats('imagenet')).toEqual(normalizationStats('lvd1689m'));
    expect(normalizationStats('sat493m')).toEqual({ mean: [0.43, 0.411, 0.296], std: [0.213, 0.156, 0.143] });
    expect(normalizationStats('none')).toBeNull();
    // @ts-expect-error unknown name
    expect(() => normalizationStats('imagenet21k')).toThrow('preprocess: normalization must be "lvd1689m", "imagenet", "sat493m", "none" or');
  });

  test('rgbToTensor scales to [0, 1], normalises per channel and lays out [N, 3, H, W]', () => {
    const before = memory().liveTensors;
    // One 1×2 image: pixel 0 = (255, 0, 128), pixel 1 = (0, 255, 64).
    const data = new Uint8Array([255, 0, 128, 0, 255, 64]);
    for (const [name, mean, std] of [
      ['lvd1689m', LVD1689M_MEAN, LVD1689M_STD],
      ['sat493m', SAT493M_MEAN, SAT493M_STD],
    ] as const) {
      const x = rgbToTensor([{ data, width: 2, height: 1 }], { normalization: name });
      expect(x.shape).toEqual([1, 3, 1, 2]);
      expect(x.dtype).toBe('float32');
      const want = [0, 1, 2].flatMap((c) => [0, 1].map((p) => (data[p * 3 + c]! / 255 - mean[c]!) / std[c]!));
      const got = Array.from(x.data() as Float32Array);
      got.forEach((g, i) => expect(g).toBeCloseTo(want[i]!, 6));
      x.dispose();
    }
    const raw = rgbToTensor(
      [
        { data, width: 2, height: 1 },
        { data, width: 2, height: 1 },
      ],
      { normalization: 'none', dtype: 'bfloat16' },
    );
    expect(raw.shape).toEqual([2, 3, 1, 2]);
    expect(raw.dtype).toBe('bfloat16');
    // Channel planes of image 0: R = [1, 0], G = [0, 1], B = [128/255, 64/255] (rounded to bfloat16).
    const bf = Array.from(raw.toFloat32Array().slice(0, 6));
    expect(bf.slice(0, 4)).toEqual([1, 0, 0, 1]);
    expect(bf[4]).toBeCloseTo(128 / 255, 2);
    expect(bf[5]).toBeCloseTo(64 / 255, 2);
    raw.dispose();
    expect(memory().liveTensors).toBe(before);
  });

  test('rgbToTensor rejects mixed sizes and short buffers', () => {
    const a = { data: new Uint8Array(12), width: 2, height: 2 };
    expect(() => rgbToTensor([a, { data: new Uint8Array(6), width: 2, height: 1 }])).toThrow(
      'rgbToTensor: image 1 is 2×1, image 0 is 2×2; a batch needs one size',
    );
    expect(() => rgbToTensor([{ data: new Uint8Array(5), width: 2, height: 1 }])).toThrow('rgbToTensor: image 0 has 5 bytes, expected 6 (2×1×3)');
  });
});

describe('resizeTensor', () => {
  test('antialiased bicubic resize of a tensor, clamped to the input range', () => {
    const before = memory().liveTensors;
    const x = tensor(
      Float32Array.from({ length: 3 * 8 * 8 }, (_, i) => (i % 8 < 4 ? 0 : 1)),
      { shape: [3, 8, 8] },
    );
    const y = resizeTensor(x, [4, 4]);
    expect(y.shape).toEqual([3, 4, 4]);
    const v = y.data() as Float32Array;
    expect(Math.min(...v)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...v)).toBeLessThanOrEqual(1);
    // A step edge stays a (smoothed) step: left columns dark, right columns bright.
    expect(v[0]).toBeLessThan(0.1);
    expect(v[3]).toBeGreaterThan(0.9);
    const ref = scope(() => interpolate(x.reshape([1, 3, 8, 8]), { size: [4, 4], mode: 'bilinear', antialias: true }).reshape([3, 4, 4]));
    const bl = resizeTensor(x, [4, 4], 'bilinear');
    expect(Array.from(bl.data() as Float32Array)).toEqual(Array.from(ref.data() as Float32Array));
    for (const t of [x, y, ref, bl]) t.dispose();
    expect(memory().liveTensors).toBe(before);
  });
});
