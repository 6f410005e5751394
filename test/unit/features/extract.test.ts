import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { type DinoVisionTransformer, full, ImageError, memory, noGrad, scope, type Tensor, zeros } from '../../../src/index.js';
import { readSafetensorsFile } from '../../../src/io/safetensors.js';
import { rawToFloat32 } from '../../../src/io/raw_tensor.js';
import { loadImages } from '../../../src/data/index.js';
import { type ExtractProgress, extractFeatures, type ImageFeatures, saveFeatures } from '../../../src/features/index.js';
import { CHELSEA, COFFEE, EXIF6, GRAY, loadTinyModel } from './helpers.js';

let model: DinoVisionTransformer;
const tmp = mkdtempSync(join(tmpdir(), 'dinov3-extract-'));
const DIR = join(tmp, 'photos');
const CORRUPT = join(DIR, 'b_corrupt.jpg');
// photos/a_chelsea.jpg, photos/b_corrupt.jpg, photos/c/coffee.jpg, photos/d_gray.png
const GOOD = [join(DIR, 'a_chelsea.jpg'), join(DIR, 'c', 'coffee.jpg'), join(DIR, 'd_gray.png')];

beforeAll(async () => {
  mkdirSync(join(DIR, 'c'), { recursive: true });
  copyFileSync(CHELSEA, GOOD[0]!);
  copyFileSync(COFFEE, GOOD[1]!);
  copyFileSync(GRAY, GOOD[2]!);
  writeFileSync(CORRUPT, 'not a jpeg');
  model = await loadTinyModel();
});
afterAll(() => {
  model.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

const arr = (t: Tensor) => Array.from(t.data() as Float32Array);
const maxAbsDiff = (a: number[], b: number[]) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

/** Collects the values of the per-image features, disposing each result (the caller owns them). */
async function collect(it: AsyncIterable<ImageFeatures>) {
  const out: { path: string | undefined; index: number; grid: [number, number]; cls: number[]; storage: number[]; patches: number[]; shapes: number[][] }[] =
    [];
  for await (const f of it) {
    out.push({
      path: f.path,
      index: f.index,
      grid: f.grid,
      cls: arr(f.cls),
      storage: arr(f.storage),
      patches: arr(f.patches),
      shapes: [f.cls.shape, f.storage.shape, f.patches.shape],
    });
    f.dispose();
  }
  return out;
}

describe('extractFeatures', () => {
  test('a folder: per-image CLS, storage and patch features equal to forwardFeatures on the same batch', async () => {
    const before = memory().liveTensors;
    const skipped: ImageError[] = [];
    const progress: ExtractProgress[] = [];
    const got = await collect(
      extractFeatures(model, DIR, { resolution: 64, batchSize: 2, onError: 'skip', onSkip: (e) => skipped.push(e), onProgress: (p) => progress.push(p) }),
    );
    expect(got.map((g) => [g.path, g.index])).toEqual([
      [GOOD[0], 0],
      [GOOD[1], 2],
      [GOOD[2], 3],
    ]);
    expect(got[0]!.shapes).toEqual([[64], [4, 64], [4, 4, 64]]);
    expect(got[0]!.grid).toEqual([4, 4]);
    expect(skipped.map((e) => [e.path, e.message])).toEqual([[CORRUPT, `cannot decode image "${CORRUPT}": Input buffer contains unsupported image format`]]);
    expect(progress).toEqual([
      { done: 1, skipped: 1, total: 4 },
      { done: 3, skipped: 1, total: 4 },
    ]);
    const ref = await loadImages(GOOD, { resolution: 64 });
    noGrad(() =>
      scope(() => {
        const f = model.forwardFeatures(ref.batch!);
        const cls = arr(f.clsToken);
        const storage = arr(f.storageTokens);
        const patches = arr(f.patchTokens);
        got.forEach((g, i) => {
          expect(maxAbsDiff(g.cls, cls.slice(i * 64, (i + 1) * 64))).toBeLessThan(1e-5);
          expect(maxAbsDiff(g.storage, storage.slice(i * 256, (i + 1) * 256))).toBeLessThan(1e-5);
          expect(maxAbsDiff(g.patches, patches.slice(i * 1024, (i + 1) * 1024))).toBeLessThan(1e-5);
        });
      }),
    );
    ref.batch!.dispose();
    expect(memory().liveTensors).toBe(before);
  });

  test('memory stays bounded for callers that dispose (or drop) each result: one batch alive while iterating', async () => {
    const before = memory().liveTensors;
    const live: number[] = [];
    for await (const f of extractFeatures(model, [...GOOD, CHELSEA, COFFEE, EXIF6, GRAY], { resolution: 32, batchSize: 2 })) {
      using g = f;
      expect(g.cls.isDisposed).toBe(false);
      live.push(memory().liveTensors - before);
    }
    expect(live.length).toBe(7);
    expect(Math.max(...live)).toBe(6); // 3 batch tensors + the 3 tensors of the current image
    expect(memory().liveTensors).toBe(before);
  });

  test('results are owned by the caller: kept in an array they stay valid after the iteration (no DisposedError)', async () => {
    const before = memory().liveTensors;
    const kept: ImageFeatures[] = [];
    for await (const f of extractFeatures(model, GOOD, { resolution: 32, batchSize: 2 })) kept.push(f);
    expect(kept.map((f) => f.path)).toEqual(GOOD);
    expect(memory().liveTensors - before).toBe(3 * GOOD.length); // the batches are freed, the results are not
    const values = kept.map((f) => [arr(f.cls), arr(f.patches)]);
    expect(values.every(([c, p]) => c!.length === 64 && p!.length === 2 * 2 * 64 && c!.every(Number.isFinite))).toBe(true);
    // Stopping early frees the batch, and the result already handed out stays the caller's.
    let first: ImageFeatures | undefined;
    for await (const f of extractFeatures(model, GOOD, { resolution: 32, batchSize: 2 })) {
      first = f;
      break;
    }
    expect(first!.patches.isDisposed).toBe(false);
    expect(arr(first!.cls)).toEqual(values[0]![0]);
    first!.dispose();
    for (const f of kept) f.dispose();
    expect(memory().liveTensors).toBe(before);
  });

  test("as: 'arrays' gives plain Float32Arrays with shapes, equal to the tensors, and leaves no tensor behind", async () => {
    const before = memory().liveTensors;
    const arrays = [];
    for await (const f of extractFeatures(model, GOOD, { resolution: 32, batchSize: 2, as: 'arrays' })) arrays.push(f);
    expect(memory().liveTensors).toBe(before);
    const tensors = await collect(extractFeatures(model, GOOD, { resolution: 32, batchSize: 2 }));
    expect(arrays.map((f) => [f.cls.shape, f.storage.shape, f.patches.shape])).toEqual(tensors.map((t) => t.shapes));
    expect(arrays.map((f) => Array.from(f.patches.data))).toEqual(tensors.map((t) => t.patches));
    expect(arrays.map((f) => Array.from(f.cls.data))).toEqual(tensors.map((t) => t.cls));
  });

  test('layers: the last n blocks (or listed blocks) stacked on a leading layer dim', async () => {
    const got = await collect(extractFeatures(model, [CHELSEA], { resolution: 48, layers: 2 }));
    expect(got[0]!.shapes).toEqual([
      [2, 64],
      [2, 4, 64],
      [2, 3, 3, 64],
    ]);
    const ref = await loadImages([CHELSEA], { resolution: 48 });
    noGrad(() =>
      scope(() => {
        const outs = model.getIntermediateLayers(ref.batch!, { n: 2, returnClassToken: true, returnExtraTokens: true });
        expect(maxAbsDiff(got[0]!.cls, [...arr(outs[0]![1]), ...arr(outs[1]![1])])).toBeLessThan(1e-5);
        expect(maxAbsDiff(got[0]!.patches, [...arr(outs[0]![0]), ...arr(outs[1]![0])])).toBeLessThan(1e-5);
      }),
    );
    ref.batch!.dispose();
    const one = await collect(extractFeatures(model, [CHELSEA], { resolution: 48, layers: [0], norm: false }));
    expect(one[0]!.shapes).toEqual([
      [1, 64],
      [1, 4, 64],
      [1, 3, 3, 64],
    ]);
  });

  test('mixed sizes (keepAspect/none) run in groups and come out in input order', async () => {
    const got = await collect(extractFeatures(model, [CHELSEA, EXIF6, COFFEE], { resize: 'none', sizeMultiple: 'round', batchSize: 3 }));
    expect(got.map((g) => [g.index, g.grid])).toEqual([
      [0, [19, 28]],
      [1, [9, 14]],
      [2, [25, 38]],
    ]);
    expect(got[1]!.shapes[2]).toEqual([9, 14, 64]);
  });

  test('a tensor input: batches of a [N, 3, H, W] tensor; sizes not multiple of 16 rejected or rounded', async () => {
    const ref = await loadImages([CHELSEA, COFFEE, EXIF6], { resolution: 64, resize: 'square' });
    const x = ref.batch!.narrow(3, 0, 48); // [3, 3, 64, 48]
    const got = await collect(extractFeatures(model, x, { batchSize: 2 }));
    expect(got.map((g) => [g.path, g.index, g.grid])).toEqual([
      [undefined, 0, [4, 3]],
      [undefined, 1, [4, 3]],
      [undefined, 2, [4, 3]],
    ]);
    const direct = noGrad(() => scope(() => arr(model.forwardFeatures(x).patchTokens)));
    expect(
      maxAbsDiff(
        got.flatMap((g) => g.patches),
        direct,
      ),
    ).toBeLessThan(1e-5);
    const odd = ref.batch!.narrow(3, 0, 50);
    await expect(collect(extractFeatures(model, odd))).rejects.toThrow(
      "extractFeatures: input tensor width 50 is not a multiple of the patch size 16: use 48 or 64, or sizeMultiple: 'round' to round it",
    );
    const rounded = await collect(extractFeatures(model, odd.select(0, 0), { sizeMultiple: 'round' }));
    expect(rounded[0]!.grid).toEqual([4, 3]);
    for (const t of [x, odd, ref.batch!]) t.dispose();
  });

  test('errors: a corrupt image with onError fail, bad options, a model in training mode', async () => {
    const err = await collect(extractFeatures(model, [GOOD[0]!, CORRUPT], { resolution: 32 })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageError);
    expect((err as ImageError).path).toBe(CORRUPT);
    await expect(collect(extractFeatures(model, DIR, { batchSize: 0 }))).rejects.toThrow('extractFeatures: batchSize must be a positive integer, received 0');
    const bad = await collect(extractFeatures(model, DIR, { batchSize: 0 })).catch((e: unknown) => e);
    expect([bad instanceof RangeError, (bad as { code?: string }).code]).toEqual([true, 'ERR_INVALID_ARG']);
    await expect(collect(extractFeatures(model, DIR, { layers: [] }))).rejects.toThrow(
      'extractFeatures: layers must be a positive integer (the last n blocks) or a non-empty array of block indices, received []',
    );
    await expect(collect(extractFeatures(model, DIR, { layers: [0, 2] }))).rejects.toThrow(
      'extractFeatures: block index 2 is out of range for a 2-block model (0 to 1)',
    );
    // A resolution that is not a multiple of the patch size is a setting error, even when images may be skipped.
    await expect(collect(extractFeatures(model, DIR, { resolution: 100, onError: 'skip' }))).rejects.toThrow(
      "resolution 100 is not a multiple of the patch size 16: use 96 or 112, or sizeMultiple: 'round' to round it",
    );
    // @ts-expect-error bad policy
    await expect(collect(extractFeatures(model, DIR, { resize: 'fit' }))).rejects.toThrow(
      'preprocess: resize must be one of square, shortSide, keepAspect, none; received "fit"',
    );
    await expect(collect(extractFeatures(model, join(tmp, 'nope')))).rejects.toThrow(`no such file or folder: "${join(tmp, 'nope')}"`);
    model.train();
    try {
      await expect(collect(extractFeatures(model, DIR))).rejects.toThrow(
        'extractFeatures: the model is in training mode; call model.eval() first (drop path and RoPE augmentation would apply)',
      );
    } finally {
      model.eval();
    }
  });
});

describe('saveFeatures', () => {
  test('safetensors: stacked cls/storage/patches with paths and settings in the metadata', async () => {
    const out = join(tmp, 'feats.safetensors');
    const r = await saveFeatures(model, DIR, out, { resolution: 64, onError: 'skip', onSkip: () => undefined });
    expect(r.tensors).toEqual({ cls: [3, 64], storage: [3, 4, 64], patches: [3, 4, 4, 64] });
    expect(r.paths).toEqual(GOOD);
    expect(r.skipped.map((e) => e.path)).toEqual([CORRUPT]);
    const file = await readSafetensorsFile(out);
    expect([...file.tensors.keys()].sort()).toEqual(['cls', 'patches', 'storage']);
    expect(file.tensors.get('patches')!.shape).toEqual([3, 4, 4, 64]);
    expect(file.metadata).toMatchObject({
      paths: JSON.stringify(GOOD),
      grids: '[[4,4],[4,4],[4,4]]',
      layers: '"final"',
      resolution: '64',
      resize: 'square',
      normalization: 'lvd1689m',
      embed_dim: '64',
      patch_size: '16',
      n_storage_tokens: '4',
    });
    const got = await collect(extractFeatures(model, GOOD, { resolution: 64 }));
    expect(
      maxAbsDiff(
        Array.from(rawToFloat32(file.tensors.get('cls')!)),
        got.flatMap((g) => g.cls),
      ),
    ).toBe(0);
    expect(
      maxAbsDiff(
        Array.from(rawToFloat32(file.tensors.get('patches')!)),
        got.flatMap((g) => g.patches),
      ),
    ).toBe(0);
  });

  test('different grids are stored per image; float16 and bfloat16 storage', async () => {
    // keepAspect on three 3:2 photos: one grid, so the patches stay stacked; layers add the layer dim.
    const r = await saveFeatures(model, [CHELSEA, EXIF6, GOOD[0]!], join(tmp, 'aspect.safetensors'), {
      resolution: 32,
      resize: 'keepAspect',
      layers: 1,
      featureDtype: 'bfloat16',
    });
    expect(r.tensors).toEqual({ cls: [3, 1, 64], storage: [3, 1, 4, 64], patches: [3, 1, 2, 3, 64] });
    const file = await readSafetensorsFile(join(tmp, 'aspect.safetensors'));
    expect(file.tensors.get('cls')!.dtype).toBe('bfloat16');
    expect(file.metadata).toMatchObject({ layers: '1', resize: 'keepAspect' });
    const half = await saveFeatures(model, [CHELSEA], join(tmp, 'half.safetensors'), { resolution: 32, featureDtype: 'float16' });
    expect(half.tensors.patches).toEqual([1, 2, 2, 64]);
    expect((await readSafetensorsFile(join(tmp, 'half.safetensors'))).tensors.get('patches')!.dtype).toBe('float16');
    // Native sizes differ: one patches.<j> tensor per image.
    const out = join(tmp, 'mixed.safetensors');
    const mixed = await saveFeatures(model, [CHELSEA, GRAY, EXIF6], out, { resize: 'none', sizeMultiple: 'round' });
    expect(mixed.tensors).toEqual({ cls: [3, 64], storage: [3, 4, 64], 'patches.0': [19, 28, 64], 'patches.1': [5, 8, 64], 'patches.2': [9, 14, 64] } as Record<
      string,
      number[]
    >);
    const m = await readSafetensorsFile(out);
    expect(m.metadata).toMatchObject({ grids: '[[19,28],[5,8],[9,14]]' });
    const got = await collect(extractFeatures(model, [GRAY], { resize: 'none', sizeMultiple: 'round' }));
    expect(maxAbsDiff(Array.from(rawToFloat32(m.tensors.get('patches.1')!)), got[0]!.patches)).toBe(0);
  });

  test('npy: a folder of .npy files readable by numpy, and meta.json', async () => {
    const out = join(tmp, 'npy') + '/';
    const r = await saveFeatures(model, [CHELSEA, COFFEE], out, { resolution: 32 });
    expect(r.files.map((f) => f.slice(out.length))).toEqual(['cls.npy', 'storage.npy', 'patches.npy', 'meta.json']);
    const npy = readFileSync(join(out, 'patches.npy'));
    expect(npy.subarray(0, 8).toString('latin1')).toBe('\x93NUMPY\x01\x00');
    const hlen = npy.readUInt16LE(8);
    expect((10 + hlen) % 64).toBe(0);
    expect(
      npy
        .subarray(10, 10 + hlen)
        .toString('latin1')
        .trimEnd(),
    ).toBe("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 2, 64), }");
    expect(npy.length).toBe(10 + hlen + 2 * 2 * 2 * 64 * 4);
    const cls = readFileSync(join(out, 'cls.npy'));
    expect(
      cls
        .subarray(10, 10 + cls.readUInt16LE(8))
        .toString('latin1')
        .trimEnd(),
    ).toBe("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 64), }");
    const meta = JSON.parse(readFileSync(join(out, 'meta.json'), 'utf8')) as Record<string, unknown>;
    expect(meta).toMatchObject({ paths: [CHELSEA, COFFEE], tensors: { cls: [2, 64], storage: [2, 4, 64], patches: [2, 2, 2, 64] } });
  });

  test('errors: npy cannot hold bfloat16; nothing to write when every image is skipped', async () => {
    await expect(saveFeatures(model, [CHELSEA], join(tmp, 'x.npy'), { featureDtype: 'bfloat16' })).rejects.toThrow(
      'saveFeatures: the npy format cannot store bfloat16; use featureDtype float32 or float16, or the safetensors format',
    );
    const out = join(tmp, 'none.safetensors');
    await expect(saveFeatures(model, [CORRUPT], out, { onError: 'skip', onSkip: () => undefined })).rejects.toThrow(
      `no features to write to "${out}": all 1 images were skipped`,
    );
  });
});

// Last in the file: the collector frees the dropped results asynchronously, which would upset the exact tensor
// counts of the tests above.
describe('dropped results', () => {
  test('results dropped without dispose are freed by the garbage collector as the iteration goes on', async () => {
    // A model that costs nothing: 100 images of 4 MiB of patch features each, none kept, none disposed.
    const D = 256;
    const fake = {
      embedDim: D,
      patchSize: 1,
      nStorageTokens: 0,
      forwardFeatures: (x: Tensor) => ({
        clsToken: full([x.shape[0]!, D], 2),
        storageTokens: zeros([x.shape[0]!, 0, D]),
        patchTokens: full([x.shape[0]!, 64 * 64, D], 1),
      }),
      getIntermediateLayers: () => [],
    };
    const x = zeros([100, 3, 64, 64]);
    const before = memory().liveTensors;
    let maxLive = 0;
    let n = 0;
    for await (const f of extractFeatures(fake, x, { batchSize: 4 })) {
      expect(f.patches.shape).toEqual([64, 64, D]);
      maxLive = Math.max(maxLive, memory().liveTensors - before);
      n++;
    }
    x.dispose();
    expect(n).toBe(100);
    expect(maxLive).toBeLessThan(150); // of the 300 tensors handed out
  });
});
