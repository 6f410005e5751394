#!/usr/bin/env node
// `npm run demo`: the quickstart of self-supervised DINOv3 training on one CPU. A small ViT (96 wide, 4 blocks, patch 4,
// RoPE, LayerScale) is pretrained without labels on Fashion-MNIST (Debian's dataset-fashion-mnist) for a few
// minutes with the official multi-crop augmentation, iBOT masking, DINO + iBOT + KoLeo losses and an EMA teacher;
// then the teacher's k-NN accuracy is compared with the same network at random initialisation, a PCA picture of its
// patch features and the loss curve are written, and the teacher is exported as .safetensors.
//
//   node dist/src/demo/main.js [--minutes 3] [--threads N] [--workers 1] [--eval-train 10000] [--eval-test 2000] [--out demo-run]
import { mkdirSync, rmSync } from 'node:fs';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';

import sharp from 'sharp';
import { Command } from 'commander';

import { batchTensors } from '../data/batch.js';
import { openFashionMnist } from '../data/datasets/idx.js';
import { pcaFit, pcaRgb, renderPca } from '../features/pca.js';
import { cat, select } from '../ops/shape.js';
import { setNumThreads } from '../tensor/device.js';
import { noGrad } from '../tensor/grad_mode.js';
import { memory, scope } from '../tensor/scope.js';
import { loadSSLConfig } from '../train/config.js';
import { trainingLoader } from '../train/data.js';
import { METRICS_FILE, renderLossCurve } from '../train/logging.js';
import { Trainer } from '../train/trainer.js';
import { Budget, evalBatch, idxImages, knnTop1, QUICKSTART_OVERRIDES } from './ssl_quickstart.js';

const program = new Command('demo')
  .option('--minutes <m>', 'training budget in minutes (wall clock, evaluations excluded)', Number, 3)
  .option('--threads <n>', 'libtorch threads', Number, Math.max(1, cpus().length))
  .option('--workers <n>', 'data-loading worker threads', Number, 1)
  .option('--eval-train <n>', 'train images for the k-NN bank', Number, 10000)
  .option('--eval-test <n>', 'test images to classify', Number, 2000)
  .option('--out <dir>', 'output folder', 'demo-run')
  .parse();
const o = program.opts<{ minutes: number; threads: number; workers: number; evalTrain: number; evalTest: number; out: string }>();
const out = resolve(o.out);
const log = (s: string) => process.stdout.write(`${s}\n`);
setNumThreads(o.threads);
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

const cfg = await loadSSLConfig('cpu_tiny_fmnist', QUICKSTART_OVERRIDES);
const train = openFashionMnist('train');
const test = openFashionMnist('t10k');
const size = cfg.crops.global_crops_size as number;
const P = cfg.optim.epochs * cfg.train.OFFICIAL_EPOCH_LENGTH;
const budget = new Budget(o.minutes * 60_000);
budget.pause();
const liveBefore = memory().liveTensors;
const loader = trainingLoader(train, cfg, { workers: o.workers });
const trainer = await Trainer.create(cfg, { data: loader, outDir: join(out, 'run'), maxIterations: 1_000_000, scheduleIndex: () => budget.position(P) });
const knnOpts = { size, ntrain: Math.min(o.evalTrain, train.length), ntest: Math.min(o.evalTest, test.length), centred: true };
log(
  `dinov3-ts quickstart: self-supervised pretraining of a ${cfg.student.embed_dim}-wide, ${cfg.student.depth}-block ViT (patch ${cfg.student.patch_size}) on Fashion-MNIST, no labels, ${o.minutes} min`,
);
const trainSet = idxImages(train);
const testSet = idxImages(test);
const before = knnTop1(trainer.model.teacher.backbone, trainSet, testSet, knnOpts);
log(`k-NN@20 of the random-init network: ${(100 * before.top1).toFixed(1)}% (centred features: ${(100 * before.centredTop1!).toFixed(1)}%)`);

const it = loader[Symbol.asyncIterator]();
let images = 0;
budget.resume();
while (!budget.done) {
  const batch = (await it.next()).value as Parameters<Trainer['step']>[0];
  const m = trainer.step(batch);
  for (const t of batchTensors(batch)) t.dispose();
  images += m.local_batch_size;
  if (m.iteration % 20 === 0)
    log(
      `it ${m.iteration}  ${(budget.elapsed() / 60000).toFixed(1)} min  ${(images / (budget.elapsed() / 1000)).toFixed(1)} img/s  loss ${m.total_loss.toFixed(3)}  (dino ${m.dino_global_crops_loss.toFixed(3)}, ibot ${m.ibot_loss.toFixed(3)}, koleo ${m.koleo_loss.toFixed(3)})`,
    );
}
budget.pause();
await it.return?.();
await loader.close();
const after = knnTop1(trainer.model.teacher.backbone, trainSet, testSet, knnOpts);
log(
  `k-NN@20 of the trained teacher after ${trainer.iteration} iterations: ${(100 * after.top1).toFixed(1)}% (centred: ${(100 * after.centredTop1!).toFixed(1)}%)`,
);

// PCA of the teacher's patch features over 8 test images (one fit for all), beside the images.
const N = 8;
const rgb = noGrad(() =>
  scope(() => {
    const m = trainer.model.teacher.backbone;
    m.eval();
    const f = m.forwardFeatures(evalBatch(testSet, 0, N, size)); // patches [8, g·g, D]
    const g = size / cfg.student.patch_size;
    const patches = f.patchTokens.reshape([N * g * g, -1]);
    const fit = pcaFit(patches);
    const perImage = patches.reshape([N, g, g, -1]);
    return cat(
      Array.from({ length: N }, (_, i) => pcaRgb(select(perImage, 0, i), fit)),
      1,
    ); // [g, 8g, 3]
  }),
);
const scale = 4;
const mosaic = Buffer.alloc(N * 28 * 28 * 3);
for (let i = 0; i < N; i++)
  for (let y = 0; y < 28; y++)
    for (let x = 0; x < 28; x++) mosaic.fill(test.images[i * 784 + y * 28 + x]!, (y * N * 28 + i * 28 + x) * 3, (y * N * 28 + i * 28 + x) * 3 + 3);
const beside = {
  data: await sharp(mosaic, { raw: { width: N * 28, height: 28, channels: 3 } })
    .resize(N * 28 * scale, 28 * scale, { kernel: 'nearest' })
    .raw()
    .toBuffer(),
  width: N * 28 * scale,
  height: 28 * scale,
};
const png = await renderPca(rgb, { width: N * 28 * scale, height: 28 * scale, upsample: 'nearest', beside: { ...beside, data: new Uint8Array(beside.data) } });
rgb.dispose();
await sharp(png.png).toFile(join(out, 'pca.png'));
await renderLossCurve(join(out, 'run', METRICS_FILE), join(out, 'loss_curve.png'));
const teacher = await trainer.exportTeacher();
trainer.dispose();
log(`wrote ${join(out, 'pca.png')} (PCA of patch features), ${join(out, 'loss_curve.png')}, teacher ${teacher}`);
log(`live tensors after training: ${memory().liveTensors - liveBefore} beyond the start`);
