// k-NN (dinov3/eval/knn.py) against a brute-force implementation, the linear probe on a separable problem, the
// dataset checks of evaluation, and `dinov3 eval` end to end with the tiny reference backbone.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';

import { afterAll, describe, expect, test } from 'vitest';

import {
  checkEvalDatasets,
  datasetFromIterable,
  DatasetError,
  IdxDataset,
  knnEval,
  linearProbe,
  memory,
  Rng,
  tensor,
  TorchRangeError,
  TorchTypeError,
} from '../../../src/index.js';
import { run } from '../../../src/cli/program.js';
import { TINY_WEIGHTS } from '../features/helpers.js';

const tmp = mkdtempSync(join(tmpdir(), 'dinov3-eval-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Gaussian clusters: `n` points of dim `d` around `c` class centres (spread `s`; the centres depend on d, c only). */
function clusters(n: number, d: number, c: number, s: number, seed: number): { x: Float32Array; y: number[] } {
  const rng = Rng.derive(seed);
  const fixed = Rng.derive(1000, d, c); // the same centres for train and validation
  const centres = Array.from({ length: c * d }, () => fixed.normal());
  const x = new Float32Array(n * d);
  const y: number[] = [];
  for (let i = 0; i < n; i++) {
    const k = rng.randint(0, c - 1);
    y.push(k);
    for (let j = 0; j < d; j++) x[i * d + j] = centres[k * d + j]! + s * rng.normal();
  }
  return { x, y };
}

/** The official k-NN vote in plain JavaScript (float64): returns per k the strict and loose top-5 hit counts. */
function bruteForce(tr: { x: Float32Array; y: number[] }, va: { x: Float32Array; y: number[] }, d: number, C: number, ks: number[], T: number) {
  const unit = (x: Float32Array, i: number) => {
    const v = Array.from(x.subarray(i * d, (i + 1) * d));
    const n = Math.sqrt(v.reduce((a, b) => a + b * b, 0));
    return v.map((e) => e / n);
  };
  const trU = tr.y.map((_, i) => unit(tr.x, i));
  const maxK = Math.max(...ks);
  const out = ks.map(() => ({ top1: 0, top5Strict: 0, top5Loose: 0 }));
  va.y.forEach((label, q) => {
    const u = unit(va.x, q);
    const sims = trU
      .map((t, i) => ({ s: t.reduce((a, e, j) => a + e * u[j]!, 0), l: tr.y[i]! }))
      .sort((a, b) => b.s - a.s)
      .slice(0, maxK);
    const z = sims.reduce((a, e) => a + Math.exp((e.s - sims[0]!.s) / T), 0);
    ks.forEach((k, ki) => {
      const score = new Array(C).fill(0);
      for (const e of sims.slice(0, k)) score[e.l] += Math.exp((e.s - sims[0]!.s) / T) / z;
      const better = score.filter((v) => v > score[label]).length;
      const equal = score.filter((v) => v === score[label]).length - 1;
      if (better === 0 && equal === 0) out[ki]!.top1++;
      if (better + equal < 5) out[ki]!.top5Strict++;
      if (better < 5) out[ki]!.top5Loose++;
    });
  });
  return out;
}

describe('knnEval (dinov3/eval/knn.py)', () => {
  test('matches a brute-force weighted k-NN for k = 1, 5, 20, 50', () => {
    const d = 12;
    const C = 8;
    const tr = clusters(400, d, C, 1.1, 1);
    const va = clusters(120, d, C, 1.1, 2);
    const ks = [1, 5, 20, 50];
    const before = memory().liveTensors;
    const trX = tensor(tr.x, { shape: [400, d] });
    const vaX = tensor(va.x, { shape: [120, d] });
    const got = knnEval(trX, tr.y, vaX, va.y, { ks, chunkSize: 50, numClasses: C });
    trX.dispose();
    vaX.dispose();
    expect(memory().liveTensors).toBe(before);
    const want = bruteForce(tr, va, d, C, ks, 0.07);
    got.forEach((r, i) => {
      expect(r.k).toBe(ks[i]);
      expect(r.top1 * 120).toBe(want[i]!.top1);
      // ties at score 0 (classes without neighbours) may or may not enter torch's top-5
      expect(r.top5 * 120).toBeGreaterThanOrEqual(want[i]!.top5Strict);
      expect(r.top5 * 120).toBeLessThanOrEqual(want[i]!.top5Loose);
    });
    expect(got[2]!.top1).toBeGreaterThan(0.5); // the clusters are learnable…
    expect(got[0]!.top1).toBeLessThan(0.98); // …but overlap, so the votes matter
  });

  test('default k = 20 and T = 0.07; skipFirstNn on the train set itself; errors are typed with exact messages', () => {
    const tr = clusters(60, 4, 3, 0.3, 3);
    const x = tensor(tr.x, { shape: [60, 4] });
    const [r] = knnEval(x, tr.y, x, tr.y);
    expect(r!.k).toBe(20);
    const [self1] = knnEval(x, tr.y, x, tr.y, { ks: [1] });
    expect(self1!.top1).toBe(1); // every point is its own nearest neighbour
    const [skip1] = knnEval(x, tr.y, x, tr.y, { ks: [1], skipFirstNn: true });
    expect(skip1!.top1).toBeLessThanOrEqual(1);
    const empty = tensor(new Float32Array(0), { shape: [0, 4] });
    expect(() => knnEval(empty, [], x, tr.y)).toThrow(new DatasetError('knnEval: the train set is empty'));
    expect(() => knnEval(x, tr.y, empty, [])).toThrow(new DatasetError('knnEval: the validation set is empty'));
    expect(() => knnEval(x, tr.y.slice(1), x, tr.y)).toThrow(new TorchRangeError('knnEval: 60 train features but 59 labels', 'ERR_INVALID_ARG'));
    expect(() => knnEval(x, tr.y, x, tr.y, { ks: [0] })).toThrow(new TorchRangeError('knnEval: ks must be positive integers, got [0]', 'ERR_INVALID_ARG'));
    // Arguments are checked at the boundary, before any tensor is made: the function and the argument are named.
    const live = memory().liveTensors;
    expect(() => knnEval(x, 3 as never, x, tr.y)).toThrow(
      new TorchTypeError('knnEval: expected "trainLabels" to be a Tensor, an array or a typed array of integer labels, received number 3', 'ERR_INVALID_ARG'),
    );
    expect(() => knnEval(undefined as never, tr.y, x, tr.y)).toThrow(
      new TorchTypeError('knnEval: expected "trainFeatures" to be a Tensor, received undefined', 'ERR_INVALID_ARG'),
    );
    expect(() => knnEval(x, tr.y, x, tr.y, null as never)).toThrow(
      new TorchTypeError('knnEval: expected "options" to be an object, received null', 'ERR_INVALID_ARG'),
    );
    // A non-integer label is named by its index; the train labels already converted are freed.
    expect(() => knnEval(x, tr.y, x, [...tr.y.slice(0, 59), 0.5])).toThrow(
      new TorchRangeError('knnEval: expected "valLabels[59]" to be an integer class label, received number 0.5', 'ERR_INVALID_ARG'),
    );
    expect(() => linearProbe(x, tr.y, x, 'abc' as never)).toThrow(
      new TorchTypeError(
        'linearProbe: expected "valLabels" to be a Tensor, an array or a typed array of integer labels, received string "abc"',
        'ERR_INVALID_ARG',
      ),
    );
    expect(memory().liveTensors).toBe(live);
    x.dispose();
    empty.dispose();
  });
});

describe('linearProbe (dinov3/eval/linear.py)', () => {
  test('learns separable clusters; the grid reports every lr, the best is returned', () => {
    const d = 16;
    const tr = clusters(2000, d, 5, 0.5, 4);
    const va = clusters(200, d, 5, 0.5, 5);
    const before = memory().liveTensors;
    const trX = tensor(tr.x, { shape: [2000, d] });
    const vaX = tensor(va.x, { shape: [200, d] });
    const r = linearProbe(trX, tr.y, vaX, va.y, { epochs: 10, batchSize: 64 });
    trX.dispose();
    vaX.dispose();
    expect(memory().liveTensors).toBe(before);
    expect(r.grid.map((g) => g.learningRate)).toEqual([1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1]);
    expect(r.top1).toBe(Math.max(...r.grid.map((g) => g.top1)));
    expect(r.top1).toBeGreaterThan(0.95);
    expect(r.grid[0]!.top1).toBeLessThan(r.top1); // lr 1e-5 barely moves from the random init
    expect(r.top5).toBe(1); // 5 classes
  });
});

describe('evaluation datasets', () => {
  const img = (v: number) => ({ data: new Uint8Array(40 * 40 * 3).fill(v), width: 40, height: 40 });

  test('empty, unlabeled and class-mismatched datasets fail with exact messages', async () => {
    const labeled = await datasetFromIterable([
      { image: img(1), label: 'cat' },
      { image: img(2), label: 'dog' },
    ]);
    const other = await datasetFromIterable([
      { image: img(1), label: 'cat' },
      { image: img(2), label: 'cow' },
    ]);
    const unlabeled = await datasetFromIterable([img(1), img(2)]);
    const empty = await datasetFromIterable([]);
    const numeric = await datasetFromIterable([
      { image: img(1), label: 0 },
      { image: img(2), label: 4 },
    ]);
    expect(checkEvalDatasets(labeled, labeled)).toBe(2);
    expect(() => checkEvalDatasets(empty, labeled)).toThrow(new DatasetError('eval: the train dataset is empty'));
    expect(() => checkEvalDatasets(labeled, unlabeled)).toThrow(
      new DatasetError(
        'eval: the validation dataset has no labels; k-NN and linear evaluation need labeled data (class subfolders, "path,label" lines, or an IDX labels file)',
      ),
    );
    expect(() => checkEvalDatasets(labeled, other)).toThrow(
      new DatasetError('eval: the train and validation datasets have different classes (train: cat, dog; validation: cat, cow)'),
    );
    expect(() => checkEvalDatasets(labeled, numeric)).toThrow(
      new DatasetError('eval: the validation dataset has labels up to 4, the train dataset only up to 1'),
    );
  });
});

describe('dinov3 eval', () => {
  /** A tiny labeled IDX pair: 3 classes of 40×40 images (bright, dark, striped) with noise. */
  function idx(name: string, n: number, seed: number, labels = true): string {
    const rng = Rng.derive(seed);
    const head = Buffer.alloc(16);
    head.writeUInt32BE(0x803, 0);
    head.writeUInt32BE(n, 4);
    head.writeUInt32BE(40, 8);
    head.writeUInt32BE(40, 12);
    const px = Buffer.alloc(n * 1600);
    const lab = Buffer.alloc(n);
    for (let i = 0; i < n; i++) {
      const c = i % 3;
      lab[i] = c;
      for (let p = 0; p < 1600; p++) {
        const base = c === 0 ? 200 : c === 1 ? 40 : Math.floor(p / 40) % 8 < 4 ? 220 : 20;
        px[i * 1600 + p] = Math.max(0, Math.min(255, base + Math.round(20 * rng.normal())));
      }
    }
    const images = join(tmp, `${name}-images-idx3-ubyte`);
    writeFileSync(images, Buffer.concat([head, px]));
    if (labels) {
      const lh = Buffer.alloc(8);
      lh.writeUInt32BE(0x801, 0);
      lh.writeUInt32BE(n, 4);
      writeFileSync(join(tmp, `${name}-labels-idx1-ubyte`), Buffer.concat([lh, lab]));
    }
    return images;
  }

  function capture() {
    const chunks = { out: '', err: '' };
    const err = Object.assign(new Writable({ write: (c, _e, cb) => ((chunks.err += String(c)), cb()) }), { isTTY: false });
    return { chunks, io: { stdout: { write: (s: string) => ((chunks.out += s), true) }, stderr: err } };
  }

  test('knn and linear on IDX files with the tiny backbone print a JSON result', async () => {
    const train = idx('train', 24, 1);
    const val = idx('val', 12, 2);
    expect(IdxDataset.open(train).length).toBe(24);
    const a = capture();
    expect(
      await run(['eval', 'knn', '--weights', TINY_WEIGHTS, '--train', train, '--val', val, '--resolution', '32', '--batch-size', '8', '--k', '1,5'], a.io),
    ).toBe(0);
    const r = JSON.parse(a.chunks.out) as {
      mode: string;
      numClasses: number;
      featureDim: number;
      train: { images: number };
      knn: { k: number; top1: number; top5: number }[];
    };
    expect(r).toMatchObject({ mode: 'knn', numClasses: 3, featureDim: 64, train: { images: 24 } });
    expect(r.knn.map((k) => k.k)).toEqual([1, 5]);
    for (const k of r.knn) expect(k.top5).toBe(1);
    expect(a.chunks.err).toMatch(/^eval knn: 24 train \/ 12 val images, 3 classes: k=1: top-1 [\d.]+%, top-5 100\.00%; k=5: .* in \d+\.\d s\n$/);

    const b = capture();
    expect(
      await run(['eval', 'linear', '--weights', TINY_WEIGHTS, '--train', train, '--val', val, '--resolution', '32', '--epochs', '2', '--lr', '0.01,0.1'], b.io),
    ).toBe(0);
    const l = JSON.parse(b.chunks.out) as { featureDim: number; linear: { grid: unknown[]; learningRate: number } };
    expect(l.featureDim).toBe(128); // CLS ⊕ mean patch
    expect(l.linear.grid.length).toBe(2);
  });

  test('an unlabeled validation set and a missing dataset are one-line errors', async () => {
    const train = idx('train2', 6, 3);
    const val = idx('nolabels', 6, 4, false);
    const a = capture();
    expect(await run(['eval', 'knn', '--weights', TINY_WEIGHTS, '--train', train, '--val', val], a.io)).toBe(1);
    expect(a.chunks.err).toBe(
      'error: eval: the validation dataset has no labels; k-NN and linear evaluation need labeled data (class subfolders, "path,label" lines, or an IDX labels file)\n',
    );
    const b = capture();
    mkdirSync(join(tmp, 'emptydir'));
    expect(await run(['eval', 'linear', '--weights', TINY_WEIGHTS, '--train', join(tmp, 'emptydir'), '--val', val], b.io)).toBe(1);
    expect(b.chunks.err).toBe(`error: image folder "${join(tmp, 'emptydir')}" holds no images (looked for .jpg .jpeg .jpe .png .webp .tif .tiff .gif .avif)\n`);
  });
});
