// Op parity of the multi-crop augmentation kernels with the official pipeline (torchvision 0.29 v2 functional on PIL
// images, as dinov3/data/augmentations.py::DataAugmentationDINO applies them), on the fixture of
// test/fixtures/reference/augment_io.safetensors.br (a brotli copy of ../shared/fixtures/reference/augment_io.safetensors;
// see the README there): every op starts from the fixture's own pixels and must match within a mean absolute
// difference of 1/255 and a max of 8/255. The figures are in the test names and in bench/results/augment_parity.json.
import { mkdirSync, readFileSync } from 'node:fs';
import { brotliDecompressSync } from 'node:zlib';

import { describe, expect, test } from 'vitest';

import { atomicWriteFile, readSafetensors } from '../../../src/io/safetensors.js';
import {
  brightnessRgb,
  contrastRgb,
  gaussianBlurRgb,
  grayscaleRgb,
  hflipRgb,
  hueRgb,
  normalizeRgb,
  resizeChwF32,
  resizedCropRgb,
  type RgbImage,
  saturationRgb,
  solarizeRgb,
} from '../../../src/data/kernels.js';
import { applyColor, type CropChain, IMAGENET_MEAN, IMAGENET_STD, nativeAugmentAvailable, runCropChain } from '../../../src/data/augmentations.js';

const REF = new URL('../../fixtures/reference/', import.meta.url).pathname;
const meta = JSON.parse(readFileSync(`${REF}augment_io.json`, 'utf8')) as {
  width: number;
  height: number;
  'resized_crop.global': Box;
  'resized_crop.local': Box;
  'resized_crop.upscale': Box;
  brightness: number;
  contrast: number;
  saturation: number;
  hue: number;
  jitter_chain_order: string[];
  blur: { kernel_size: number; sigmas: number[] };
  solarize_threshold: number;
  torchvision: string;
  pillow: string;
};
interface Box {
  top: number;
  left: number;
  height: number;
  width: number;
  size: number;
}
const st = readSafetensors(brotliDecompressSync(readFileSync(`${REF}augment_io.safetensors.br`)), 'augment_io.safetensors');
const raw = (k: string) => {
  const t = st.tensors.get(k);
  if (!t) throw new Error(`fixture has no ${k}`);
  return t;
};
const u8 = (k: string): RgbImage => {
  const t = raw(k);
  expect(t.dtype).toBe('uint8');
  return { data: new Uint8Array(t.data), width: t.shape[1]!, height: t.shape[0]! };
};
const copy = (im: RgbImage): RgbImage => ({ data: im.data.slice(), width: im.width, height: im.height });

const input = u8('input');
const base = u8('base');

interface Figures {
  mean255: number;
  max255: number;
  exact: number;
}
/** Mean/max |a − b| in units of 1/255 (uint8 values, or float values ×255·std for the normalised output), share equal. */
function compare(a: ArrayLike<number>, b: ArrayLike<number>, scale = 1): Figures {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let s = 0;
  let m = 0;
  let eq = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!) * scale;
    s += d;
    if (d > m) m = d;
    if (d === 0) eq++;
  }
  return { mean255: s / a.length, max255: m, exact: eq / a.length };
}

type Backend = 'js' | 'native';
const NONE = { flip: false, color: { jitter: null, grayscale: false }, blurSigma: null, solarize: false };
const fullBox = (im: RgbImage) => ({ top: 0, left: 0, height: im.height, width: im.width });
/** One op on `src` through the chosen kernels: the TS functions directly, or the addon's crop chain with only that op. */
function op(backend: Backend, src: RgbImage, chain: Partial<CropChain>, js: (im: RgbImage) => RgbImage): RgbImage {
  if (backend === 'js') return js(copy(src));
  return runCropChain(src, { ...NONE, box: fullBox(src), outH: src.height, outW: src.width, ...chain }, { backend, output: 'uint8' }) as RgbImage;
}
const jit = (order: number[]) => ({
  jitter: { order, brightness: meta.brightness, contrast: meta.contrast, saturation: meta.saturation, hue: meta.hue },
  grayscale: false,
});
const inPlace = (f: (im: RgbImage) => void) => (im: RgbImage) => (f(im), im);

function opsFor(backend: Backend): [string, () => Figures][] {
  const ops: [string, () => Figures][] = [];
  for (const name of ['global', 'local', 'upscale']) {
    ops.push([
      `resized_crop.${name}`,
      () => {
        const b = meta[`resized_crop.${name}` as 'resized_crop.global'];
        const out = op(backend, input, { box: b, outH: b.size, outW: b.size }, () => resizedCropRgb(input, b, b.size, b.size));
        return compare(out.data, u8(`resized_crop.${name}`).data);
      },
    ]);
  }
  const onBase = (key: string, chain: Partial<CropChain>, f: (im: RgbImage) => void) => () => compare(op(backend, base, chain, inPlace(f)).data, u8(key).data);
  ops.push(['hflip', onBase('hflip', { flip: true }, hflipRgb)]);
  ops.push(['brightness', onBase('brightness', { color: jit([0]) }, (im) => brightnessRgb(im, meta.brightness))]);
  ops.push(['contrast', onBase('contrast', { color: jit([1]) }, (im) => contrastRgb(im, meta.contrast))]);
  ops.push(['saturation', onBase('saturation', { color: jit([2]) }, (im) => saturationRgb(im, meta.saturation))]);
  ops.push(['hue', onBase('hue', { color: jit([3]) }, (im) => hueRgb(im, meta.hue))]);
  const order = meta.jitter_chain_order.map((n) => FN.indexOf(n));
  ops.push(['jitter_chain', onBase('jitter_chain', { color: jit(order) }, (im) => applyColor(im, jit(order)))]);
  ops.push(['grayscale', onBase('grayscale', { color: { jitter: null, grayscale: true } }, grayscaleRgb)]);
  for (const s of meta.blur.sigmas) {
    const key = `blur.sigma${s.toFixed(1)}`;
    ops.push([key, onBase(key, { blurSigma: s }, (im) => gaussianBlurRgb(im, meta.blur.kernel_size, s))]);
  }
  ops.push(['solarize', onBase('solarize', { solarize: true }, (im) => solarizeRgb(im, meta.solarize_threshold))]);
  ops.push([
    'normalized',
    () => {
      const ref = raw('normalized');
      expect(ref.dtype).toBe('float32');
      const refF = new Float32Array(ref.data.buffer.slice(ref.data.byteOffset, ref.data.byteOffset + ref.data.byteLength));
      const out =
        backend === 'js'
          ? normalizeRgb(base, IMAGENET_MEAN, IMAGENET_STD)
          : (runCropChain(base, { ...NONE, box: fullBox(base), outH: 224, outW: 224 }, { backend, output: 'float32' }) as Float32Array);
      // In pixel units: a difference d in the normalised value is d·std·255 levels.
      const plane = base.width * base.height;
      const scaled = (x: Float32Array) => Float32Array.from(x, (v, i) => v * IMAGENET_STD[Math.floor(i / plane)]! * 255);
      return compare(scaled(out), scaled(refF));
    },
  ]);
  return ops;
}
const FN = ['brightness', 'contrast', 'saturation', 'hue'];

const BACKENDS: Backend[] = ['js', 'native'];
const results: Record<Backend, Record<string, Figures>> = { js: {}, native: {} };
const opNames = opsFor('js').map(([n]) => n);
for (const b of BACKENDS) {
  if (b === 'native' && !nativeAugmentAvailable()) continue;
  for (const [name, f] of opsFor(b)) results[b][name] = f();
}
const fmt = (f: Figures) => `mean ${f.mean255.toFixed(6)}/255, max ${f.max255.toFixed(3)}/255, ${(100 * f.exact).toFixed(4)}% exact`;

describe(`augmentation op parity with torchvision ${meta.torchvision} / Pillow ${meta.pillow} (coffee.jpg)`, () => {
  test('the addon in use has the native kernels (augmentCrop)', () => {
    expect(nativeAugmentAvailable()).toBe(true);
  });
  for (const b of BACKENDS) {
    describe(`${b} kernels`, () => {
      for (const name of opNames) {
        const f = results[b][name];
        test(`${name}: ${f ? fmt(f) : 'not run (no native kernels)'}`, () => {
          expect(f).toBeDefined();
          expect(f!.mean255).toBeLessThanOrEqual(1);
          expect(f!.max255).toBeLessThanOrEqual(8);
        });
      }
      // The PIL-exact kernels (fixed-point resampler, blends, 'L', HSV, LUTs) reproduce the reference bit for bit;
      // the float Gaussian blur may differ by one level where torch's 9×9 conv and the separable passes round apart.
      test('integer PIL ops are bit-exact, the float blur within one level', () => {
        const r = results[b];
        for (const k of opNames.filter((n) => !n.startsWith('blur') && n !== 'normalized')) expect(r[k]?.max255, k).toBe(0);
        for (const s of meta.blur.sigmas) expect(r[`blur.sigma${s.toFixed(1)}`]!.max255).toBeLessThanOrEqual(1);
        expect(r['normalized']!.max255).toBeLessThan(1e-3);
      });
    });
  }

  test('results file', async () => {
    const out = new URL('../../../bench/results/', import.meta.url).pathname;
    mkdirSync(out, { recursive: true });
    const figs = (r: Record<string, Figures>) =>
      Object.fromEntries(
        Object.entries(r).map(([k, f]) => [k, { mean255: +f.mean255.toFixed(6), max255: +f.max255.toFixed(6), exactShare: +f.exact.toFixed(6) }]),
      );
    const body = {
      fixture: 'shared/fixtures/reference/augment_io.safetensors (coffee.jpg 600x400)',
      reference: { torchvision: meta.torchvision, pillow: meta.pillow },
      units: 'pixel levels (1/255); normalized: |diff| x std x 255',
      tolerance: { mean255: 1, max255: 8 },
      ops: { js: figs(results.js), native: figs(results.native) },
    };
    await atomicWriteFile(`${out}augment_parity.json`, [Buffer.from(`${JSON.stringify(body, null, 1)}\n`)]);
    expect(Object.keys(body.ops.js)).toHaveLength(opNames.length);
    expect(Object.keys(body.ops.native)).toHaveLength(opNames.length);
  });
});

// resize_global_post_transf / resize_gram_teacher: torchvision v2 Resize (bicubic, antialias) on a normalised float
// crop (scripts/fixtures/make_resize_aa_f32.py).
describe('float antialiased bicubic resize (gram-teacher crops with shared distortions)', () => {
  const rs = readSafetensors(readFileSync(`${REF}resize_aa_f32.safetensors`), 'resize_aa_f32.safetensors');
  const f32 = (k: string) => {
    const t = rs.tensors.get(k)!;
    return { data: new Float32Array(t.data.buffer.slice(t.data.byteOffset, t.data.byteOffset + t.data.byteLength)), shape: t.shape };
  };
  const x = f32('x');
  for (const [key, size] of [
    ['down', 40],
    ['up', 64],
  ] as const) {
    const ref = f32(key);
    const out = resizeChwF32(x.data, 3, 48, 48, size, size);
    let m = 0;
    for (let i = 0; i < out.length; i++) m = Math.max(m, Math.abs(out[i]! - ref.data[i]!));
    test(`48 → ${size}: max |diff| ${m.toExponential(2)} on N(0, 1) values (< 2e-5)`, () => {
      expect(ref.shape).toEqual([3, size, size]);
      expect(m).toBeLessThan(2e-5);
    });
  }
});

// Random parameters beyond augment_io's single set: blend factors in [0, 2.5) (extrapolation + clipping), hue over
// [−0.5, 0.5], crops resized up and down to arbitrary sizes (scripts/fixtures/make_augment_fuzz.py). Bit-exact.
describe('random-parameter cases against torchvision v2 on PIL (augment_fuzz.safetensors)', () => {
  const fz = readSafetensors(readFileSync(`${REF}augment_fuzz.safetensors`), 'augment_fuzz.safetensors');
  const cases = JSON.parse(fz.metadata['cases']!) as {
    brightness: number;
    contrast: number;
    saturation: number;
    hue: number;
    box: { top: number; left: number; height: number; width: number };
    out_height: number;
    out_width: number;
  }[];
  const img = (k: string): RgbImage => {
    const t = fz.tensors.get(k)!;
    return { data: new Uint8Array(t.data), width: t.shape[1]!, height: t.shape[0]! };
  };
  for (const backend of ['js', 'native'] as const) {
    test(`${backend} kernels: ${cases.length} cases × (brightness, contrast, saturation, hue, resized_crop) bit-exact`, () => {
      expect(cases.length).toBe(16);
      cases.forEach((c, i) => {
        const src = img(`${i}.input`);
        const j = (order: number[]) => ({
          jitter: { order, brightness: c.brightness, contrast: c.contrast, saturation: c.saturation, hue: c.hue },
          grayscale: false,
        });
        const run = (chain: Partial<CropChain>) =>
          (runCropChain(src, { ...NONE, box: fullBox(src), outH: src.height, outW: src.width, ...chain }, { backend, output: 'uint8' }) as RgbImage).data;
        (['brightness', 'contrast', 'saturation', 'hue'] as const).forEach((name, k) => {
          expect(compare(run({ color: j([k]) }), img(`${i}.${name}`).data).max255, `case ${i} ${name}`).toBe(0);
        });
        const rc = run({ box: c.box, outH: c.out_height, outW: c.out_width });
        expect(compare(rc, img(`${i}.resized_crop`).data).max255, `case ${i} resized_crop`).toBe(0);
      });
    });
  }
});
