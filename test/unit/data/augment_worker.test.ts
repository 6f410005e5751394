// The multi-crop augmentation inside worker_threads (where the loader runs it): the addon's augmentCrop loads and
// runs in each worker's own addon instance, and the crops are the same bytes as on the main thread for the same
// (seed, keys), whatever thread computes them.
import { Worker } from 'node:worker_threads';

import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { MultiCropAugmentation, nativeAugmentAvailable } from '../../../src/data/augmentations.js';
import { Rng } from '../../../src/data/rng.js';
import { compileLibrary } from '../lifecycle/compiled_library.js';

function synthetic(width: number, height: number): { data: Uint8Array; width: number; height: number } {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      data[i] = (x * 255) / width;
      data[i + 1] = (y * 255) / height;
      data[i + 2] = ((x ^ y) * 7) & 255;
    }
  return { data, width, height };
}

describe('augmentation in worker threads', () => {
  let lib: { indexUrl: string; cleanup: () => void };
  beforeAll(() => {
    lib = compileLibrary();
  });
  afterAll(() => lib.cleanup());

  test('two workers give the main thread’s crops, bit for bit (native kernels)', async () => {
    expect(nativeAugmentAvailable()).toBe(true);
    const img = synthetic(320, 240);
    const keys = [
      [0, 1],
      [0, 2],
      [3, 7],
    ];
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      (async () => {
        const aug = await import(workerData.augUrl);
        const { Rng } = await import(workerData.rngUrl);
        const m = new aug.MultiCropAugmentation({ backend: 'native' });
        const out = workerData.keys.map(([a, b]) => {
          const s = m.apply(workerData.img, Rng.derive(42, a, b));
          return [...s.global, ...s.local];
        });
        parentPort.postMessage({ native: aug.nativeAugmentAvailable(), out });
      })().catch((e) => parentPort.postMessage({ error: String(e && e.stack || e) }));`;
    const base = lib.indexUrl.replace(/index\.js$/, '');
    const run = () =>
      new Promise<{ native: boolean; out: Float32Array[][]; error?: string }>((resolve, reject) => {
        const w = new Worker(code, {
          eval: true,
          workerData: { augUrl: `${base}data/augmentations.js`, rngUrl: `${base}data/rng.js`, img, keys },
        });
        let msg: unknown;
        w.on('message', (m) => (msg = m));
        w.on('error', reject);
        w.on('exit', (exitCode) => (exitCode === 0 ? resolve(msg as never) : reject(new Error(`worker exit ${exitCode}`))));
      });
    const results = await Promise.all([run(), run()]);
    const m = new MultiCropAugmentation({ backend: 'native' });
    const expected = keys.map(([a, b]) => {
      const s = m.apply(img, Rng.derive(42, a!, b!));
      return [...s.global, ...s.local];
    });
    for (const r of results) {
      expect(r.error).toBeUndefined();
      expect(r.native).toBe(true);
      expect(r.out).toHaveLength(3);
      r.out.forEach((crops, k) => {
        expect(crops).toHaveLength(10);
        crops.forEach((c, i) => expect(Buffer.from(c.buffer, c.byteOffset, c.byteLength).equals(Buffer.from(expected[k]![i]!.buffer))).toBe(true));
      });
    }
  });
});
