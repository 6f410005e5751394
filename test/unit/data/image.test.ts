import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import sharp from 'sharp';
import { afterAll, describe, expect, test } from 'vitest';

import { ImageError, memory, scope, tensor } from '../../../src/index.js';
import { decodeImage, decodeImages, globToRegExp, listImages, loadImage, loadImages, resizeTensor } from '../../../src/data/index.js';

const IMAGES = new URL('../../fixtures/images/', import.meta.url).pathname;
const CHELSEA = join(IMAGES, 'chelsea.jpg'); // 451×300
const COFFEE = join(IMAGES, 'coffee.jpg'); // 600×400
const EXIF6 = join(IMAGES, 'chelsea_exif6.jpg'); // stored 150×226, EXIF orientation 6 → 226×150 upright
const GRAY = join(IMAGES, 'coffee_gray_alpha.png'); // 120×80 grey + alpha

const tmp = mkdtempSync(join(tmpdir(), 'dinov3-data-'));
const CORRUPT = join(tmp, 'corrupt.jpg');
const TRUNCATED = join(tmp, 'truncated.jpg');
const MISSING = join(tmp, 'missing.jpg');
writeFileSync(CORRUPT, Buffer.from('this is not an image, just some text\n'));
const jpg = readFileSync(CHELSEA);
writeFileSync(TRUNCATED, jpg.subarray(0, jpg.length >> 1));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const meanAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i]! - b[i]!);
  return s / a.length;
};

async function errorOf(p: Promise<unknown>): Promise<ImageError> {
  try {
    await p;
  } catch (e) {
    return e as ImageError;
  }
  throw new Error('expected a rejection');
}

describe('decodeImage', () => {
  test('decodes a JPEG to 8-bit RGB at the planned size', async () => {
    const im = await decodeImage(CHELSEA, { resolution: 224 });
    expect([im.width, im.height, im.sourceWidth, im.sourceHeight]).toEqual([224, 224, 451, 300]);
    expect(im.data.length).toBe(224 * 224 * 3);
    expect(im.path).toBe(CHELSEA);
    const crop = await decodeImage(COFFEE, { resolution: 224, resize: 'shortSide', resizeShortSide: 256 });
    expect(crop.plan).toEqual({ resize: { width: 384, height: 256 }, crop: { left: 80, top: 16, width: 224, height: 224 }, width: 224, height: 224 });
    expect(crop.data.length).toBe(224 * 224 * 3);
    const aspect = await decodeImage(COFFEE, { resolution: 160, resize: 'keepAspect' });
    expect([aspect.width, aspect.height]).toEqual([240, 160]);
  });

  test('the shrinking resize agrees with torch antialiased bicubic (torchvision semantics)', async () => {
    const { data, info } = await sharp(CHELSEA).raw().toBuffer({ resolveWithObject: true });
    for (const [size, interpolation] of [
      [112, 'bicubic'],
      [160, 'bilinear'],
    ] as const) {
      const im = await decodeImage(CHELSEA, { resolution: size, interpolation });
      const ref = scope(() => {
        const x = tensor(new Uint8Array(data), { shape: [info.height, info.width, 3] })
          .permute([2, 0, 1])
          .to('float32');
        return Array.from(resizeTensor(x, [size, size], interpolation).permute([1, 2, 0]).contiguous().data() as Float32Array, Math.round);
      });
      expect(meanAbsDiff(im.data, ref)).toBeLessThan(0.5); // out of 255
    }
  });

  test('an enlarging resize is done by torch: bicubic without antialiasing, rounded to 8 bits', async () => {
    const { data, info } = await sharp(CHELSEA).raw().toBuffer({ resolveWithObject: true });
    const im = await decodeImage(CHELSEA, { resolution: 512 });
    const ref = scope(() => {
      const x = tensor(new Uint8Array(data), { shape: [info.height, info.width, 3] })
        .permute([2, 0, 1])
        .to('float32');
      return Array.from(resizeTensor(x, [512, 512]).clamp(0, 255).round().permute([1, 2, 0]).contiguous().data() as Float32Array);
    });
    expect(meanAbsDiff(im.data, ref)).toBe(0);
    // The crop of shortSide also applies on this path.
    const up = await decodeImage(EXIF6, { resolution: 160, resize: 'shortSide' });
    expect(up.plan).toMatchObject({ resize: { width: 241, height: 160 }, crop: { left: 40, top: 0, width: 160, height: 160 } }); // 40.5 → 40
    expect(up.data.length).toBe(160 * 160 * 3);
  });

  test('applies the EXIF orientation', async () => {
    const upright = await decodeImage(CHELSEA, { resolution: 64 });
    const rotated = await decodeImage(EXIF6, { resolution: 64 });
    expect([rotated.sourceWidth, rotated.sourceHeight]).toEqual([226, 150]);
    const transposed = new Uint8Array(64 * 64 * 3);
    for (let y = 0; y < 64; y++)
      for (let x = 0; x < 64; x++) for (let c = 0; c < 3; c++) transposed[(x * 64 + y) * 3 + c] = rotated.data[(y * 64 + x) * 3 + c]!;
    expect(meanAbsDiff(upright.data, rotated.data)).toBeLessThan(4);
    expect(meanAbsDiff(upright.data, transposed)).toBeGreaterThan(20);
  });

  test('grey + alpha becomes RGB with equal channels', async () => {
    const im = await decodeImage(GRAY, { resize: 'none', sizeMultiple: 'round' });
    expect([im.width, im.height]).toEqual([128, 80]);
    let unequal = 0;
    for (let i = 0; i < im.data.length; i += 3) if (im.data[i + 1] !== im.data[i] || im.data[i + 2] !== im.data[i]) unequal++;
    expect(unequal).toBe(0);
  });

  test('unreadable and corrupt images raise ImageError with the path', async () => {
    const missing = await errorOf(decodeImage(MISSING));
    expect(missing).toBeInstanceOf(ImageError);
    expect(missing.code).toBe('ERR_IMAGE');
    expect(missing.path).toBe(MISSING);
    expect(missing.message).toBe(`cannot read image "${MISSING}": ENOENT: no such file or directory, open '${MISSING}'`);
    const corrupt = await errorOf(decodeImage(CORRUPT));
    expect(corrupt.path).toBe(CORRUPT);
    expect(corrupt.message).toBe(`cannot decode image "${CORRUPT}": Input buffer contains unsupported image format`);
    const truncated = await errorOf(decodeImage(TRUNCATED, { resolution: 64 }));
    expect(truncated.path).toBe(TRUNCATED);
    expect(truncated.message).toMatch(new RegExp(`^cannot decode image "${TRUNCATED}": VipsJpeg: premature end of JPEG`));
    const size = await errorOf(decodeImage(CHELSEA, { resize: 'none' }));
    expect(size.message).toBe(
      `image width 451 is not a multiple of the patch size 16 (image "${CHELSEA}"): use 448 or 464, or sizeMultiple: 'round' to round it`,
    );
    const buffer = await errorOf(decodeImage(new Uint8Array([1, 2, 3])));
    expect(buffer.message).toBe('cannot decode image "<buffer>": Input buffer contains unsupported image format');
    expect(buffer.path).toBeUndefined();
  });
});

describe('loadImage / loadImages', () => {
  test('loadImage returns a normalised [3, H, W] float32 tensor', async () => {
    const before = memory().liveTensors;
    const x = await loadImage(CHELSEA, { resolution: 64 });
    expect(x.shape).toEqual([3, 64, 64]);
    expect(x.dtype).toBe('float32');
    const im = await decodeImage(CHELSEA, { resolution: 64 });
    const v = x.data() as Float32Array;
    const mean = [0.485, 0.456, 0.406];
    const std = [0.229, 0.224, 0.225];
    for (const [c, y, xx] of [
      [0, 0, 0],
      [1, 10, 20],
      [2, 63, 63],
      [0, 31, 40],
    ] as const) {
      expect(v[c * 64 * 64 + y * 64 + xx]).toBeCloseTo((im.data[(y * 64 + xx) * 3 + c]! / 255 - mean[c]!) / std[c]!, 5);
    }
    x.dispose();
    const sat = await loadImage(CHELSEA, { resolution: 64, normalization: 'sat493m', dtype: 'bfloat16' });
    expect(sat.dtype).toBe('bfloat16');
    expect(sat.toFloat32Array()[0]).toBeCloseTo((im.data[0]! / 255 - 0.43) / 0.213, 1);
    sat.dispose();
    expect(memory().liveTensors).toBe(before);
  });

  test('loadImages batches and skips corrupt images when asked, reporting each with its path', async () => {
    const skipped: string[] = [];
    const r = await loadImages([CHELSEA, CORRUPT, COFFEE, MISSING], { resolution: 32, onError: 'skip', onSkip: (e) => skipped.push(e.path!) });
    expect(r.batch!.shape).toEqual([2, 3, 32, 32]);
    expect(r.paths).toEqual([CHELSEA, COFFEE]);
    expect(skipped).toEqual([CORRUPT, MISSING]);
    expect(r.skipped.map((e) => e.message)).toEqual([
      `cannot decode image "${CORRUPT}": Input buffer contains unsupported image format`,
      `cannot read image "${MISSING}": ENOENT: no such file or directory, open '${MISSING}'`,
    ]);
    r.batch!.dispose();
    const failed = await errorOf(loadImages([CHELSEA, CORRUPT], { resolution: 32 }));
    expect(failed).toBeInstanceOf(ImageError);
    expect(failed.path).toBe(CORRUPT);
    const none = await loadImages([CORRUPT], { onError: 'skip', onSkip: () => undefined });
    expect(none.batch).toBeNull();
  });

  test('loadImages refuses to batch images of different sizes', async () => {
    await expect(loadImages([CHELSEA, COFFEE], { resize: 'none', sizeMultiple: 'round' })).rejects.toThrow(
      'loadImages: the images have different sizes (448×304, 608×400); use resize "square" or "shortSide" to batch them, or loadImage one at a time',
    );
    // @ts-expect-error bad onError
    await expect(decodeImages([CHELSEA], { onError: 'ignore' })).rejects.toThrow('decodeImages: onError must be "skip" or "fail", received "ignore"');
  });
});

describe('listImages', () => {
  test('a folder is searched recursively for image files, sorted', async () => {
    expect(await listImages(IMAGES)).toEqual(['chelsea.jpg', 'chelsea_exif6.jpg', 'coffee.jpg', 'coffee_gray_alpha.png'].map((f) => join(IMAGES, f)));
  });

  test('globs, files and lists', async () => {
    expect(await listImages(`${IMAGES}*.jpg`)).toEqual(['chelsea.jpg', 'chelsea_exif6.jpg', 'coffee.jpg'].map((f) => join(IMAGES, f)));
    expect(await listImages(`${IMAGES}**/coffee*.{png,jpg}`)).toEqual(['coffee.jpg', 'coffee_gray_alpha.png'].map((f) => join(IMAGES, f)));
    expect(await listImages([CHELSEA, MISSING, CHELSEA])).toEqual([CHELSEA, MISSING]);
    expect(await listImages(COFFEE)).toEqual([COFFEE]);
  });

  test('nothing found is an ImageError naming the input', async () => {
    await expect(listImages(MISSING)).rejects.toThrow(`no such file or folder: "${MISSING}"`);
    await expect(listImages(`${IMAGES}*.webp`)).rejects.toThrow(`no files match "${IMAGES}*.webp"`);
    await expect(listImages(tmp + '/none/')).rejects.toThrow(ImageError);
    await expect(listImages([])).rejects.toThrow('no images given (an empty list)');
  });

  test('globToRegExp', () => {
    expect(globToRegExp('*.jpg').test('a.jpg')).toBe(true);
    expect(globToRegExp('*.jpg').test('d/a.jpg')).toBe(false);
    expect(globToRegExp('**/*.jpg').test('a.jpg')).toBe(true);
    expect(globToRegExp('**/*.jpg').test('x/y/a.jpg')).toBe(true);
    expect(globToRegExp('img_?.{png,jpg}').test('img_1.png')).toBe(true);
    expect(globToRegExp('img_[0-4].png').test('img_7.png')).toBe(false);
    expect(globToRegExp('a+b(1).png').test('a+b(1).png')).toBe(true);
  });
});
