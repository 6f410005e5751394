// The DataLoader imported from the TypeScript sources (as vitest runs them): the main-thread mode works with a plain
// function transform, and worker threads, which need compiled JavaScript, are refused with a clear error instead of
// a worker that cannot start.
import { fileURLToPath } from 'node:url';

import { expect, test } from 'vitest';

import { ConfigError, memory } from '../../../src/index.js';
import { DataLoader, disposeBatch, MaskingGenerator, MemoryDataset } from '../../../src/data/index.js';

const img = (v: number) => ({ data: new Uint8Array(8 * 8 * 3).fill(v), width: 8, height: 8 });
const dataset = new MemoryDataset(Array.from({ length: 5 }, (_, i) => ({ image: img(i * 40), label: i % 2 })));
const collate = { maskGenerator: new MaskingGenerator({ inputSize: 2, maxNumPatches: 2 }) };
// a deterministic "augmentation": the mean pixel value plus one random draw, as 4×4 crops
const transform = (im: { data: Uint8Array }, rng: { random(): number }) => {
  const v = im.data[0]! / 255 + rng.random();
  return { global: [new Float32Array(48).fill(v), new Float32Array(48).fill(v)], local: [new Float32Array(12).fill(v)] };
};

test('workers: 0 runs a function transform on the main thread; iterations bound the stream; no tensor leaks', async () => {
  const before = memory().liveTensors;
  const loader = new DataLoader({ dataset, batchSize: 2, transform, collate, workers: 0, iterations: 3, seed: 9 });
  const shapes: number[][] = [];
  for await (const b of loader) {
    shapes.push(b.collated_global_crops.shape, b.collated_local_crops.shape);
    disposeBatch(b);
  }
  expect(shapes).toEqual([
    [4, 3, 4, 4],
    [2, 3, 2, 2],
    [4, 3, 4, 4],
    [2, 3, 2, 2],
    [4, 3, 4, 4],
    [2, 3, 2, 2],
  ]);
  expect(loader.state().iteration).toBe(3);
  expect(memory().liveTensors).toBe(before);
});

test('worker threads from TypeScript sources: a ConfigError naming the missing compiled worker script', async () => {
  const loader = new DataLoader({ dataset, batchSize: 2, transform: { module: '/nowhere.mjs' }, collate, workers: 1 });
  const script = fileURLToPath(new URL('../../../src/data/loader_worker.js', import.meta.url));
  await expect(loader.next()).rejects.toThrow(
    new ConfigError(
      `DataLoader: the worker script ${script} does not exist; worker threads need the compiled library (dist/) — run from dist/, pass workerUrl, or use workers: 0`,
    ),
  );
  await loader.close();
});

test('close() or setState() while a next() is pending: it ends or continues, never hangs', async () => {
  const slow = async (im: { data: Uint8Array }, rng: { random(): number }) => {
    await new Promise((r) => setTimeout(r, 20));
    return transform(im, rng);
  };
  const before = memory().liveTensors;
  const a = new DataLoader({ dataset, batchSize: 2, transform: slow, collate, workers: 0 });
  const pending = a.next();
  await a.close();
  expect((await pending).done).toBe(true);
  const b = new DataLoader({ dataset, batchSize: 2, transform: slow, collate, workers: 0, seed: 4 });
  const p2 = b.next();
  b.setState({ ...b.state(), iteration: 5 });
  const r = await p2;
  expect(r.done).toBe(false);
  disposeBatch(r.value!);
  expect(b.state().iteration).toBe(6);
  await b.close();
  await new Promise((r) => setTimeout(r, 100)); // let dropped tasks finish
  expect(memory().liveTensors).toBe(before);
});
