// The threaded data loader. Worker threads run compiled JavaScript, so this file imports the library compiled by
// test/unit/lifecycle/compiled_library.ts (and only that copy, so one addon instance serves the test).
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import type * as Lib from '../../../src/index.js';
import { compileLibrary } from '../lifecycle/compiled_library.js';

let lib: typeof Lib;
let cleanup: () => void;
const tmp = mkdtempSync(join(tmpdir(), 'dinov3-loader-'));
const TRANSFORM = fileURLToPath(new URL('./crop_transform.mjs', import.meta.url));
const IMAGES = fileURLToPath(new URL('../../fixtures/images/', import.meta.url));

beforeAll(async () => {
  const c = compileLibrary();
  cleanup = c.cleanup;
  lib = (await import(c.indexUrl)) as typeof Lib;
});
afterAll(() => {
  cleanup?.();
  rmSync(tmp, { recursive: true, force: true });
});

/** A small IDX file of `n` 12×10 images whose pixels encode the index (labels: index % 3). */
function idxFiles(n: number): { images: string; labels: string } {
  const images = join(tmp, `imgs-${n}-idx3-ubyte`);
  const labels = join(tmp, `labs-${n}-idx1-ubyte`);
  const head = Buffer.alloc(16);
  head.writeUInt32BE(0x803, 0);
  head.writeUInt32BE(n, 4);
  head.writeUInt32BE(12, 8);
  head.writeUInt32BE(10, 12);
  const px = Buffer.alloc(n * 120);
  for (let i = 0; i < n * 120; i++) px[i] = (Math.floor(i / 120) * 7 + (i % 120) * 3) % 256;
  writeFileSync(images, Buffer.concat([head, px]));
  const lh = Buffer.alloc(8);
  lh.writeUInt32BE(0x801, 0);
  lh.writeUInt32BE(n, 4);
  writeFileSync(labels, Buffer.concat([lh, Buffer.from(Array.from({ length: n }, (_, i) => i % 3))]));
  return { images, labels };
}

const transform = (o: object = {}) => ({ module: TRANSFORM, options: { global: 8, local: 4, ...o } });
const collate = () => ({ maskGenerator: new lib.MaskingGenerator({ inputSize: 4, maxNumPatches: 8 }) });

/** Flattened contents of a batch (then frees it). */
function contents(b: Lib.CollatedBatch): number[][] {
  const out = [b.collated_global_crops, b.collated_local_crops, b.collated_masks, b.masks_weight, b.labels!].map((t) =>
    lib.scope(() => t.to('float32').toArray()),
  );
  out.push([b.upperbound]);
  lib.disposeBatch(b);
  return out;
}

async function take(loader: Lib.DataLoader, n: number): Promise<number[][][]> {
  const out: number[][][] = [];
  for (let i = 0; i < n; i++) {
    const r = await loader.next();
    if (r.done) break;
    out.push(contents(r.value));
  }
  return out;
}

describe('ShardedInfiniteSampler (dinov3/data/samplers.py)', () => {
  test('ranks take disjoint shards of one permutation, each pass reshuffled; positions are random access', () => {
    const N = 103;
    const W = 4;
    const samplers = Array.from({ length: W }, (_, rank) => new lib.ShardedInfiniteSampler(N, { seed: 5, rank, worldSize: W, shuffle: true }));
    expect(samplers[0]!.count).toBe(25); // floor(103 / 4): the remainder is dropped per pass
    const firstPass = samplers.map((s) => Array.from({ length: 25 }, (_, p) => s.at(p)));
    const all = firstPass.flat();
    expect(new Set(all).size).toBe(100);
    // the second pass holds the same shard in another order
    const second = Array.from({ length: 25 }, (_, p) => samplers[0]!.at(25 + p));
    expect([...second].sort((a, b) => a - b)).toEqual([...firstPass[0]!].sort((a, b) => a - b));
    expect(second).not.toEqual(firstPass[0]);
    const fresh = new lib.ShardedInfiniteSampler(N, { seed: 5, rank: 0, worldSize: W, shuffle: true });
    expect(fresh.at(30)).toBe(second[5]);
    const plain = new lib.ShardedInfiniteSampler(10, { seed: 0, rank: 1, worldSize: 3, shuffle: false });
    expect(Array.from({ length: 7 }, (_, p) => plain.at(p))).toEqual([1, 4, 7, 1, 4, 7, 1]);
    expect(() => new lib.ShardedInfiniteSampler(3, { seed: 0, rank: 0, worldSize: 4, shuffle: true })).toThrow(
      new lib.DatasetError('the dataset has 3 samples, too few for 4 ranks'),
    );
  });
});

describe('DataLoader', () => {
  test('same seed → identical batches with 0 (main thread), 1, 2 and 4 workers; another seed differs', async () => {
    const f = idxFiles(37);
    const dataset = lib.IdxDataset.open(f.images, f.labels);
    const run = async (workers: number, seed = 11) => {
      const loader = new lib.DataLoader({ dataset, batchSize: 6, transform: transform(), collate: collate(), seed, workers, prefetch: 3 });
      try {
        return await take(loader, 8);
      } finally {
        await loader.close();
      }
    };
    const ref = await run(0);
    expect(ref.length).toBe(8);
    expect(ref[0]![0]!.length).toBe(2 * 6 * 3 * 8 * 8);
    expect(ref[0]![2]!.length).toBe(2 * 6 * 16);
    for (const w of [1, 2, 4]) expect(await run(w)).toEqual(ref);
    expect((await run(2, 12))[0]![0]).not.toEqual(ref[0]![0]);
  });

  test('state() / setState() resume the exact stream; mismatched states are refused', async () => {
    const f = idxFiles(20);
    const dataset = lib.IdxDataset.open(f.images, f.labels);
    const mk = () => new lib.DataLoader({ dataset, batchSize: 4, transform: transform(), collate: collate(), seed: 3, workers: 2 });
    const a = mk();
    const first = await take(a, 3);
    const saved = a.state();
    expect(saved).toEqual({ iteration: 3, seed: 3, rank: 0, worldSize: 1, batchSize: 4, datasetLength: 20 });
    const rest = await take(a, 3);
    await a.close();
    expect((await a.next()).done).toBe(true);
    const b = mk();
    await take(b, 1); // consume something, then jump
    b.setState(saved);
    expect(await take(b, 3)).toEqual(rest);
    b.setState({ ...saved, iteration: 0 });
    expect(await take(b, 3)).toEqual(first);
    expect(() => b.setState({ ...saved, seed: 4 })).toThrow(new lib.ConfigError("DataLoader.setState: the state's seed is 4, this loader's is 3"));
    await b.close();
  });

  test('a terminated worker is reported as a WorkerError, not a hang', async () => {
    const f = idxFiles(20);
    const loader = new lib.DataLoader({ dataset: lib.IdxDataset.open(f.images), batchSize: 4, transform: transform(), collate: collate(), workers: 2 });
    lib.disposeBatch((await loader.next()).value!);
    await loader.workers[1]!.terminate();
    const e = await loader.next().then(
      () => null,
      (err: unknown) => err,
    );
    expect(e).toBeInstanceOf(lib.WorkerError);
    expect((e as Lib.WorkerError).message).toBe('data loader worker 1 exited (code 1) while the loader was running');
    expect((e as Lib.WorkerError).code).toBe('ERR_WORKER');
    await expect(loader.next()).rejects.toBe(e);
    await loader.close();
  });

  test('an uncaught error in a worker is reported as a WorkerError with its message', async () => {
    const f = idxFiles(8);
    const loader = new lib.DataLoader({
      dataset: lib.IdxDataset.open(f.images),
      batchSize: 2,
      transform: transform({ crash: true }),
      collate: collate(),
      workers: 1,
    });
    await expect(loader.next()).rejects.toThrow(new lib.WorkerError('data loader worker 0 crashed: boom in the transform', 0));
    await loader.close();
  });

  test('unreadable images are skipped (replaced, counted, with their path) or fail with their path; a failing transform fails', async () => {
    const dir = join(tmp, 'folder');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(join(dir, 'cats'), { recursive: true });
    mkdirSync(join(dir, 'cups'), { recursive: true });
    copyFileSync(join(IMAGES, 'chelsea.jpg'), join(dir, 'cats', 'a.jpg'));
    copyFileSync(join(IMAGES, 'chelsea_exif6.jpg'), join(dir, 'cats', 'b.jpg'));
    writeFileSync(join(dir, 'cats', 'corrupt.jpg'), 'not an image');
    writeFileSync(join(dir, 'cats', 'empty.png'), '');
    const jpg = readFileSync(join(IMAGES, 'coffee.jpg'));
    writeFileSync(join(dir, 'cups', 'truncated.jpg'), jpg.subarray(0, jpg.length >> 1));
    copyFileSync(join(IMAGES, 'coffee.jpg'), join(dir, 'cups', 'c.jpg'));
    writeFileSync(join(dir, 'cups', 'notes.txt'), 'hello');
    const locked = join(dir, 'cups', 'locked.jpg');
    copyFileSync(join(IMAGES, 'coffee.jpg'), locked);
    chmodSync(locked, 0);
    const ds = await lib.openImageFolder(dir);
    expect(ds.classes).toEqual(['cats', 'cups']);
    expect(ds.length).toBe(7);
    expect(ds.report.otherFiles).toEqual([join(dir, 'cups', 'notes.txt')]);
    const skipped: Lib.SkippedSample[] = [];
    const loader = new lib.DataLoader({
      dataset: ds,
      batchSize: 7,
      transform: transform(),
      collate: collate(),
      workers: 2,
      onSkip: (s) => skipped.push(s),
      shuffle: false,
    });
    const [b] = await take(loader, 1);
    await loader.close();
    expect(b![4]!.length).toBe(7); // 7 labels: each unreadable image replaced by a readable one
    const names = [...new Set(skipped.map((s) => s.name))].sort();
    // root ignores file permissions; as another user the locked file is skipped too
    const expected = [join(dir, 'cats', 'corrupt.jpg'), join(dir, 'cats', 'empty.png'), join(dir, 'cups', 'truncated.jpg')];
    if (process.getuid?.() !== 0) expected.push(locked);
    expect(names).toEqual(expected.sort());
    expect(loader.skipped.length).toBe(skipped.length);
    for (const s of skipped) expect(s.message).toMatch(/^cannot (decode|read) image/);

    const strict = new lib.DataLoader({ dataset: ds, batchSize: 7, transform: transform(), collate: collate(), workers: 1, onError: 'fail', shuffle: false });
    const e = (await strict.next().catch((x: unknown) => x)) as Lib.ImageError;
    expect(e).toBeInstanceOf(lib.ImageError);
    // the first of the bad files to fail (the worker runs two at a time)
    expect([join(dir, 'cats', 'corrupt.jpg'), join(dir, 'cats', 'empty.png')]).toContain(e.path);
    expect(e.message.startsWith(`cannot decode image "${e.path}": `)).toBe(true);
    await strict.close();

    const f = idxFiles(4);
    const bad = new lib.DataLoader({
      dataset: lib.IdxDataset.open(f.images),
      batchSize: 4,
      transform: transform({ failOn: 0 }),
      collate: collate(),
      workers: 1,
      shuffle: false,
    });
    await expect(bad.next()).rejects.toThrow(new lib.DatasetError('the transform failed on "idx:imgs-4-idx3-ubyte[0]": cannot augment a 10×12 image'));
    await bad.close();
  });

  test('in-memory datasets (pixels read on the main thread, handed to workers) and option errors', async () => {
    const items = Array.from({ length: 9 }, (_, i) => ({
      image: { data: new Uint8Array(16 * 16 * 3).fill(i * 20), width: 16, height: 16 },
      label: i % 2 ? 'odd' : 'even',
    }));
    const ds = await lib.datasetFromIterable(items);
    expect(ds.classes).toEqual(['even', 'odd']);
    expect(ds.spec()).toBeUndefined();
    const run = async (workers: number) => {
      const l = new lib.DataLoader({ dataset: ds, batchSize: 3, transform: transform(), collate: collate(), workers, seed: 2 });
      try {
        return await take(l, 3);
      } finally {
        await l.close();
      }
    };
    expect(await run(2)).toEqual(await run(0));
    expect(items[0]!.image.data.byteLength).toBe(768); // not detached by a transfer
    expect(() => new lib.DataLoader({ dataset: ds, batchSize: 0, transform: transform(), collate: collate() })).toThrow(
      new lib.ConfigError('DataLoader: batchSize must be a positive integer, got 0'),
    );
    expect(() => new lib.DataLoader({ dataset: ds, batchSize: 2, transform: () => ({ global: [], local: [] }), collate: collate(), workers: 1 })).toThrow(
      new lib.ConfigError(
        'DataLoader: worker threads need the transform as a module path ({ module, export, options }); a function only works with workers: 0',
      ),
    );
    const empty = await lib.datasetFromIterable([]);
    expect(() => new lib.DataLoader({ dataset: empty, batchSize: 2, transform: transform(), collate: collate() })).toThrow(
      new lib.DatasetError('DataLoader: the dataset is empty'),
    );
  });
});
