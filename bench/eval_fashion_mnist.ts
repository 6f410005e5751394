// Pixel baselines of the evaluation protocols on Fashion-MNIST (Debian dataset-fashion-mnist, 60k train / 10k test):
// k-NN (src/eval/knn.ts: L2-normalised raw pixels, cosine similarity, T = 0.07 weighted vote) for k = 10, 20, 100,
// 200, and the linear probe (src/eval/linear.ts: official lr grid, 10 epochs, batch 256) on the same pixels.
// Writes JSON to stdout and bench/results/eval_fashion_mnist-cpu-<threads>core.json (or argv[2]).
// Run from the repository root: npm run build:ts && node dist/bench/eval_fashion_mnist.js
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { dirname, resolve } from 'node:path';

import { addonInfo, getNumThreads, knnEval, linearProbe, openFashionMnist, setNumThreads, tensor } from '../src/index.js';

setNumThreads(Number(process.env.BENCH_THREADS ?? availableParallelism()));
const train = openFashionMnist('train');
const test = openFashionMnist('t10k');
const pixels = (ds: typeof train) => {
  const f = new Float32Array(ds.images.length);
  for (let i = 0; i < f.length; i++) f[i] = ds.images[i]! / 255;
  return tensor(f, { shape: [ds.length, ds.rows * ds.cols] });
};
const xtr = pixels(train);
const xte = pixels(test);
const t0 = Date.now();
const knn = knnEval(xtr, train.labels!, xte, test.labels!, { ks: [10, 20, 100, 200], numClasses: 10 });
const knnSeconds = (Date.now() - t0) / 1000;
const t1 = Date.now();
const linear = linearProbe(xtr, train.labels!, xte, test.labels!, { numClasses: 10, epochs: 10, batchSize: 256 });
const linearSeconds = (Date.now() - t1) / 1000;
const r3 = (v: number) => Math.round(v * 10000) / 10000;
const result = {
  bench: 'eval_fashion_mnist',
  device: 'cpu',
  threads: getNumThreads(),
  torch: addonInfo.torchVersion,
  node: process.version,
  loadavg: loadavg().map((v) => Math.round(v * 100) / 100),
  data: { train: train.length, test: test.length, features: 'raw pixels / 255 (784-d)' },
  knn: { temperature: 0.07, results: knn.map((k) => ({ k: k.k, top1: r3(k.top1), top5: r3(k.top5) })), seconds: knnSeconds },
  linear: {
    epochs: 10,
    batchSize: 256,
    best: { learningRate: linear.learningRate, top1: r3(linear.top1), top5: r3(linear.top5) },
    grid: linear.grid.map((g) => ({ learningRate: g.learningRate, top1: r3(g.top1) })),
    seconds: linearSeconds,
  },
};
const json = JSON.stringify(result, null, 2);
process.stdout.write(`${json}\n`);
const out = resolve(process.argv[2] ?? `bench/results/eval_fashion_mnist-cpu-${getNumThreads()}core.json`);
mkdirSync(dirname(out), { recursive: true });
writeFileSync(`${out}.tmp`, `${json}\n`);
(await import('node:fs')).renameSync(`${out}.tmp`, out);
xtr.dispose();
xte.dispose();
