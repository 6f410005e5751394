// Datasets: image folder (labeled / unlabeled, bad files), list file, IDX (plain and gzip, Fashion-MNIST), in-memory
// and (async) iterables, and opening one from a command-line path.
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

import { afterAll, describe, expect, test } from 'vitest';

import { DatasetError, ImageError } from '../../../src/index.js';
import {
  datasetFromIterable,
  datasetFromSpec,
  FASHION_MNIST_CLASSES,
  IdxDataset,
  MemoryDataset,
  openDataset,
  openFashionMnist,
  openImageFolder,
  openListFile,
  readIdx,
} from '../../../src/data/index.js';

const IMAGES = new URL('../../fixtures/images/', import.meta.url).pathname;
const tmp = mkdtempSync(join(tmpdir(), 'dinov3-datasets-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a rejection');
}

describe('image folder', () => {
  test('class subfolders (recursive) give sorted class labels; root files and non-images are reported', async () => {
    const root = join(tmp, 'labeled');
    mkdirSync(join(root, 'dogs', 'deep'), { recursive: true });
    mkdirSync(join(root, 'cats'), { recursive: true });
    mkdirSync(join(root, 'empty'), { recursive: true });
    copyFileSync(join(IMAGES, 'chelsea.jpg'), join(root, 'cats', 'a.jpg'));
    copyFileSync(join(IMAGES, 'coffee_gray_alpha.png'), join(root, 'dogs', 'deep', 'b.PNG'));
    copyFileSync(join(IMAGES, 'coffee.jpg'), join(root, 'dogs', 'c.jpeg'));
    copyFileSync(join(IMAGES, 'coffee.jpg'), join(root, 'stray.jpg'));
    writeFileSync(join(root, 'dogs', 'readme.md'), '#');
    const ds = await openImageFolder(root);
    expect(ds.classes).toEqual(['cats', 'dogs']);
    expect(ds.paths).toEqual([join(root, 'cats', 'a.jpg'), join(root, 'dogs', 'c.jpeg'), join(root, 'dogs', 'deep', 'b.PNG')]);
    expect([0, 1, 2].map((i) => ds.labelOf(i))).toEqual([0, 1, 1]);
    expect(ds.labeled).toBe(true);
    expect(ds.numClasses).toBe(2);
    expect(ds.report.unlabeledFiles).toEqual([join(root, 'stray.jpg')]);
    expect(ds.report.otherFiles).toEqual([join(root, 'dogs', 'readme.md')]);
    const s = await ds.get(2);
    expect([s.image.width, s.image.height, s.image.data.length, s.label, s.name]).toEqual([120, 80, 120 * 80 * 3, 1, join(root, 'dogs', 'deep', 'b.PNG')]);
    const rebuilt = datasetFromSpec(ds.spec());
    expect(rebuilt.length).toBe(3);
    expect(rebuilt.labelOf(2)).toBe(1);
  });

  test('a flat folder is unlabeled; corrupt files throw ImageError with the path; empty and missing folders are DatasetErrors', async () => {
    const root = join(tmp, 'flat');
    mkdirSync(root);
    copyFileSync(join(IMAGES, 'chelsea.jpg'), join(root, 'x.jpg'));
    writeFileSync(join(root, 'y.webp'), 'garbage');
    const ds = await openImageFolder(root);
    expect(ds.classes).toBeUndefined();
    expect(ds.labeled).toBe(false);
    expect(ds.length).toBe(2);
    expect((await ds.get(0)).label).toBeUndefined();
    const e = (await rejection(ds.get(1))) as ImageError;
    expect(e).toBeInstanceOf(ImageError);
    expect(e.path).toBe(join(root, 'y.webp'));
    expect(e.message).toMatch(new RegExp(`^cannot decode image "${join(root, 'y.webp')}": `));
    mkdirSync(join(tmp, 'nothing'));
    await expect(openImageFolder(join(tmp, 'nothing'))).rejects.toThrow(
      new DatasetError(`image folder "${join(tmp, 'nothing')}" holds no images (looked for .jpg .jpeg .jpe .png .webp .tif .tiff .gif .avif)`),
    );
    const missing = (await rejection(openImageFolder(join(tmp, 'nope')))) as DatasetError;
    expect(missing).toBeInstanceOf(DatasetError);
    expect(missing.message).toMatch(/^cannot read image folder ".*nope": ENOENT/);
  });
});

describe('list file', () => {
  test('path,label lines (relative to the file), names or integers; comments and blanks ignored', async () => {
    copyFileSync(join(IMAGES, 'chelsea.jpg'), join(tmp, 'l1.jpg'));
    copyFileSync(join(IMAGES, 'coffee.jpg'), join(tmp, 'l2.jpg'));
    writeFileSync(join(tmp, 'named.txt'), '# train split\nl1.jpg, cat\n\nl2.jpg,cup\nl1.jpg,cat\n');
    const named = await openListFile(join(tmp, 'named.txt'));
    expect(named.classes).toEqual(['cat', 'cup']);
    expect(named.paths).toEqual([join(tmp, 'l1.jpg'), join(tmp, 'l2.jpg'), join(tmp, 'l1.jpg')]);
    expect([0, 1, 2].map((i) => named.labelOf(i))).toEqual([0, 1, 0]);
    writeFileSync(join(tmp, 'ints.csv'), `${join(tmp, 'l2.jpg')},7\n`);
    const ints = await openListFile(join(tmp, 'ints.csv'));
    expect([ints.labelOf(0), ints.classes, ints.numClasses]).toEqual([7, undefined, 8]);
    writeFileSync(join(tmp, 'plain.lst'), 'l1.jpg\nl2.jpg\n');
    expect((await openListFile(join(tmp, 'plain.lst'))).labeled).toBe(false);
    writeFileSync(join(tmp, 'mixed.txt'), 'l1.jpg,0\nl2.jpg\n');
    await expect(openListFile(join(tmp, 'mixed.txt'))).rejects.toThrow(
      new DatasetError(`list file "${join(tmp, 'mixed.txt')}": entry 2 ("${join(tmp, 'l2.jpg')}") has no label but others do`),
    );
    writeFileSync(join(tmp, 'blank.txt'), '\n# nothing\n');
    await expect(openListFile(join(tmp, 'blank.txt'))).rejects.toThrow(new DatasetError(`list file "${join(tmp, 'blank.txt')}" names no images`));
  });
});

describe('IDX files', () => {
  const header = (magic: number, dims: number[]) => {
    const b = Buffer.alloc(4 + 4 * dims.length);
    b.writeUInt32BE(magic, 0);
    dims.forEach((d, i) => b.writeUInt32BE(d, 4 + 4 * i));
    return b;
  };

  test('plain and gzip files read the same; grey pixels become RGB; bad files are DatasetErrors', async () => {
    const px = Buffer.from(Array.from({ length: 2 * 3 * 2 }, (_, i) => i * 10));
    writeFileSync(join(tmp, 'i-idx3-ubyte'), Buffer.concat([header(0x803, [2, 3, 2]), px]));
    writeFileSync(join(tmp, 'i-idx3-ubyte.gz'), gzipSync(Buffer.concat([header(0x803, [2, 3, 2]), px])));
    writeFileSync(join(tmp, 'l-idx1-ubyte'), Buffer.concat([header(0x801, [2]), Buffer.from([4, 1])]));
    const a = IdxDataset.open(join(tmp, 'i-idx3-ubyte'), join(tmp, 'l-idx1-ubyte'));
    const b = IdxDataset.open(join(tmp, 'i-idx3-ubyte.gz'));
    expect([a.length, a.rows, a.cols, a.numClasses, b.labeled]).toEqual([2, 3, 2, 5, false]);
    const s = await a.get(1);
    expect([s.image.width, s.image.height, s.label, s.name]).toEqual([2, 3, 1, 'idx:i-idx3-ubyte[1]']);
    expect(Array.from(s.image.data.subarray(0, 6))).toEqual([60, 60, 60, 70, 70, 70]);
    expect(Array.from((await b.get(1)).image.data)).toEqual(Array.from(s.image.data));
    expect(datasetFromSpec(a.spec()).labelOf(0)).toBe(4);
    writeFileSync(join(tmp, 'short-idx3-ubyte'), Buffer.concat([header(0x803, [2, 3, 2]), px.subarray(0, 5)]));
    expect(() => IdxDataset.open(join(tmp, 'short-idx3-ubyte'))).toThrow(
      new DatasetError(`IDX file "${join(tmp, 'short-idx3-ubyte')}" is truncated (21 bytes, need 28)`),
    );
    expect(() => IdxDataset.open(join(tmp, 'l-idx1-ubyte'))).toThrow(new DatasetError(`IDX file "${join(tmp, 'l-idx1-ubyte')}" has 1 dimensions, expected 3`));
    writeFileSync(join(tmp, 'l3-idx1-ubyte'), Buffer.concat([header(0x801, [3]), Buffer.from([1, 2, 3])]));
    expect(() => IdxDataset.open(join(tmp, 'i-idx3-ubyte'), join(tmp, 'l3-idx1-ubyte'))).toThrow(
      new DatasetError(`IDX files "${join(tmp, 'i-idx3-ubyte')}" and "${join(tmp, 'l3-idx1-ubyte')}": 2 images but 3 labels`),
    );
    expect(() => readIdx(join(tmp, 'named.txt'))).toThrow(DatasetError);
    // openDataset finds the labels file by name
    writeFileSync(join(tmp, 'x-images-idx3-ubyte'), Buffer.concat([header(0x803, [2, 3, 2]), px]));
    writeFileSync(join(tmp, 'x-labels-idx1-ubyte'), Buffer.concat([header(0x801, [2]), Buffer.from([0, 1])]));
    const opened = await openDataset(join(tmp, 'x-images-idx3-ubyte'));
    expect(opened.labeled).toBe(true);
    await expect(openDataset(join(tmp, 'nothing-here'))).rejects.toThrow(
      new DatasetError(`no such dataset: "${join(tmp, 'nothing-here')}" (expected a folder, a list file or an IDX file)`),
    );
  });

  test.runIf(existsSync('/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz'))(
    'Fashion-MNIST (Debian dataset-fashion-mnist): 60k/10k, 10 balanced classes',
    () => {
      const train = openFashionMnist('train');
      const test10k = openFashionMnist('t10k');
      expect([train.length, test10k.length, train.rows, train.cols]).toEqual([60000, 10000, 28, 28]);
      expect(train.classes).toEqual(FASHION_MNIST_CLASSES);
      const counts = new Array(10).fill(0);
      for (const l of train.labels!) counts[l]++;
      expect(counts).toEqual(new Array(10).fill(6000));
      expect(() => openFashionMnist('train', join(tmp, 'nofm'))).toThrow(/Install Debian's dataset-fashion-mnist/);
    },
  );
});

describe('in-memory and iterable datasets', () => {
  test('arrays, iterables and async iterables of pixels, bytes, paths or { image, label }', async () => {
    const rgb = { data: new Uint8Array(2 * 2 * 3).fill(9), width: 2, height: 2 };
    const { readFileSync } = await import('node:fs');
    const bytes = new Uint8Array(readFileSync(join(IMAGES, 'chelsea.jpg')));
    async function* gen() {
      yield { image: rgb, label: 1 };
      yield { image: bytes, label: 0 };
      yield { image: join(IMAGES, 'coffee.jpg'), label: 2 };
    }
    const ds = await datasetFromIterable(gen());
    expect([ds.length, ds.numClasses, ds.classes]).toEqual([3, 3, undefined]);
    expect((await ds.get(0)).image).toBe(rgb);
    expect((await ds.get(1)).image.width).toBe(451);
    expect((await ds.get(2)).name).toBe(join(IMAGES, 'coffee.jpg'));
    expect(ds.spec()).toBeUndefined();
    const paths = new MemoryDataset([join(IMAGES, 'coffee.jpg')]);
    expect(paths.spec()).toEqual({ kind: 'files', paths: [join(IMAGES, 'coffee.jpg')], labels: null, classes: null });
    const sync = await datasetFromIterable(new Set([rgb]));
    expect(sync.labeled).toBe(false);
    expect(() => new MemoryDataset([{ data: new Uint8Array(5), width: 2, height: 2 }])).toThrow(
      new DatasetError('dataset item 0: 5 bytes for a 2×2 RGB image (expected 12)'),
    );
    expect(() => new MemoryDataset([42 as never])).toThrow(
      new DatasetError('dataset item 0 is not an image (expected { data, width, height }, encoded bytes, a path, or { image, label })'),
    );
    const bad = new MemoryDataset([new Uint8Array([1, 2, 3])]);
    const e = (await rejection(bad.get(0))) as ImageError;
    expect(e).toBeInstanceOf(ImageError);
    expect(e.message).toMatch(/^cannot decode image "item 0": /);
  });
});
