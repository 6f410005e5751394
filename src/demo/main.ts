#!/usr/bin/env node
// `npm run demo`: an end-to-end run of the core on real data. A small DINOv3 ViT backbone (RoPE, storage tokens,
// LayerScale, masked key bias: the same code as the released models) with a linear head on its CLS token is trained
// on Fashion-MNIST (Debian's dataset-fashion-mnist) with AdamW, weight decay exemptions and an EMA copy of the
// model; the EMA model is evaluated on the 10,000 test images and saved as .safetensors.
//
//   node dist/src/demo/main.js [--epochs 1] [--batch 128] [--limit 15000] [--ema 0.98] [--threads N] [--out out/demo]
import { mkdirSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';

import { Command } from 'commander';

import { saveBackbone } from '../checkpoint/backbone.js';
import { DinoVisionTransformer } from '../models/vision_transformer.js';
import { Linear } from '../nn/layers.js';
import type { Module } from '../nn/module.js';
import { crossEntropy } from '../ops/nn.js';
import { AdamW } from '../optim/adamw.js';
import { clipGradNorm } from '../optim/clip_grad.js';
import { emaUpdate } from '../optim/ema.js';
import { fromBuffer, Generator, manualSeed, randperm } from '../tensor/creation.js';
import { setNumThreads } from '../tensor/device.js';
import { noGrad } from '../tensor/grad_mode.js';
import { memory, scope } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { FASHION_MNIST_CLASSES, type IdxSplit, loadFashionMnist } from './fashion_mnist.js';

const MEAN = 0.286;
const STD = 0.353;

/** The backbone config: official key names; patch 4 on 28×28 images gives a 7×7 grid. */
const CONFIG = {
  img_size: 28,
  patch_size: 4,
  in_chans: 1,
  embed_dim: 96,
  depth: 4,
  num_heads: 4,
  ffn_ratio: 3,
  n_storage_tokens: 4,
  layerscale_init: 1e-1,
  norm_layer: 'layernormbf16',
  mask_k_bias: true,
  pos_embed_rope_dtype: 'fp32',
} as const;

class Classifier {
  readonly backbone: DinoVisionTransformer;
  readonly head: Linear;
  constructor(g: Generator) {
    this.backbone = new DinoVisionTransformer(CONFIG, { generator: g });
    this.head = new Linear(CONFIG.embed_dim, 10);
  }
  modules(): Module[] {
    return [this.backbone, this.head];
  }
  logits(x: Tensor): Tensor {
    return scope(() => this.head.forward(this.backbone.forward(x)));
  }
  dispose(): void {
    this.backbone.dispose();
    this.head.dispose();
  }
}

/** Images [idx] → normalised float32 [B, 1, 28, 28] and int64 labels [B]. */
function batchOf(split: IdxSplit, idx: ArrayLike<number | bigint>): { x: Tensor; y: Tensor } {
  const n = idx.length;
  const px = split.rows * split.cols;
  const img = new Float32Array(n * px);
  const lab = new BigInt64Array(n);
  for (let b = 0; b < n; b++) {
    const i = Number(idx[b]);
    const src = split.images.subarray(i * px, (i + 1) * px);
    for (let p = 0; p < px; p++) img[b * px + p] = (src[p]! / 255 - MEAN) / STD;
    lab[b] = BigInt(split.labels[i]!);
  }
  return { x: fromBuffer(img, 'float32', [n, 1, split.rows, split.cols]), y: fromBuffer(lab, 'int64', [n]) };
}

function evaluate(model: Classifier, test: IdxSplit, batch: number): number {
  model.backbone.eval();
  let correct = 0;
  noGrad(() => {
    for (let s = 0; s < test.n; s += batch) {
      const idx = Array.from({ length: Math.min(batch, test.n - s) }, (_, k) => s + k);
      correct += scope(() => {
        const { x, y } = batchOf(test, idx);
        return model.logits(x).argmax(-1).eq(y).sum().item();
      });
    }
  });
  return correct / test.n;
}

async function main(): Promise<void> {
  const opts = new Command()
    .name('demo')
    .description('Train a small DINOv3 ViT on Fashion-MNIST and evaluate it')
    .option('--epochs <n>', 'epochs', (v) => parseInt(v, 10), 1)
    .option('--batch <n>', 'batch size', (v) => parseInt(v, 10), 128)
    .option('--limit <n>', 'training images used per epoch (all 60000: --limit 60000)', (v) => parseInt(v, 10), 15000)
    .option('--threads <n>', 'intra-op threads', (v) => parseInt(v, 10), cpus().length)
    .option('--lr <x>', 'peak learning rate', parseFloat, 2e-3)
    .option('--ema <m>', 'EMA momentum of the teacher copy', parseFloat, 0.98)
    .option('--eval-limit <n>', 'test images evaluated', (v) => parseInt(v, 10), 10000)
    .option('--out <dir>', 'output folder', 'out/demo')
    .parse()
    .opts<{ epochs: number; batch: number; limit: number; threads: number; lr: number; ema: number; evalLimit: number; out: string }>();
  setNumThreads(opts.threads);
  manualSeed(0);
  const g = new Generator(0);

  const train = loadFashionMnist('train');
  const fullTest = loadFashionMnist('t10k');
  const test = { ...fullTest, n: Math.min(opts.evalLimit, fullTest.n) };
  const nTrain = Math.min(opts.limit, train.n);
  const model = new Classifier(g);
  const ema = new DinoVisionTransformer(CONFIG, { init: false });
  ema.loadStateDict(model.backbone.stateDict());
  ema.requiresGrad_(false).eval();

  // AdamW groups as the recipe builds them (§6.2): no decay on biases, norms and LayerScale.
  const named = [...model.backbone.namedParameters(), ...model.head.namedParameters('head')];
  const noDecay = (n: string) => n.endsWith('bias') || n.includes('norm') || n.includes('gamma');
  const opt = new AdamW(
    [
      { params: named.filter(([n]) => !noDecay(n)).map(([, t]) => t), weightDecay: 0.05 },
      { params: named.filter(([n]) => noDecay(n)).map(([, t]) => t), weightDecay: 0 },
    ],
    { lr: opts.lr },
  );
  const steps = opts.epochs * Math.ceil(nTrain / opts.batch);
  const warmup = Math.min(100, Math.floor(steps / 10));
  const lrAt = (it: number) =>
    it < warmup ? (opts.lr * (it + 1)) / warmup : 0.5 * opts.lr * (1 + Math.cos((Math.PI * (it - warmup)) / Math.max(1, steps - warmup)));

  console.log(
    `dinov3-ts demo: ViT (D=${CONFIG.embed_dim}, depth ${CONFIG.depth}, ${CONFIG.n_storage_tokens} storage tokens, RoPE) ` +
      `with ${(model.backbone.numParameters() / 1e6).toFixed(2)}M parameters on Fashion-MNIST (${nTrain} train / ${test.n} test images), ${opts.threads} threads`,
  );
  const baseline = memory().liveTensors;
  const t0 = performance.now();
  let it = 0;
  for (let epoch = 0; epoch < opts.epochs; epoch++) {
    model.backbone.train();
    const perm = randperm(train.n, { generator: g });
    const order = (perm.data() as BigInt64Array).slice(0, nTrain);
    perm.dispose();
    let lossSum = 0;
    let seen = 0;
    for (let s = 0; s < nTrain; s += opts.batch, it++) {
      for (const grp of opt.paramGroups) grp.lr = lrAt(it);
      const loss = scope(() => {
        const { x, y } = batchOf(train, order.subarray(s, Math.min(s + opts.batch, nTrain)));
        const l = crossEntropy(model.logits(x), y);
        l.backward();
        return l.item();
      });
      for (const m of model.modules()) clipGradNorm(m.parameters(), 3.0).dispose();
      opt.step();
      opt.zeroGrad();
      emaUpdate(ema, model.backbone, opts.ema);
      // Yield to the event loop once per step (as a data-loading loop does), so the GC backstop can reclaim the
      // small JS handles of disposed tensors.
      await new Promise((r) => setImmediate(r));
      lossSum += loss;
      seen++;
      if (it % 50 === 0 || s + opts.batch >= nTrain) {
        const rate = (it + 1) * opts.batch / ((performance.now() - t0) / 1000);
        process.stdout.write(`epoch ${epoch + 1} step ${it + 1}/${steps} loss ${(lossSum / seen).toFixed(4)} (${rate.toFixed(0)} img/s)\n`);
        lossSum = 0;
        seen = 0;
      }
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  const accModel = evaluate(model, test, 500);
  // Evaluate the EMA backbone with the trained head.
  const emaModel = Object.assign(Object.create(Classifier.prototype) as Classifier, { backbone: ema, head: model.head });
  const accEma = evaluate(emaModel, test, 500);
  console.log(`trained ${steps} steps in ${seconds.toFixed(1)} s (${((steps * opts.batch) / seconds).toFixed(0)} img/s)`);
  console.log(`test accuracy: ${(accModel * 100).toFixed(2)}% (EMA backbone: ${(accEma * 100).toFixed(2)}%) over ${FASHION_MNIST_CLASSES.length} classes`);
  console.log(`live tensors after training: ${memory().liveTensors - baseline} beyond the model and optimizer state created before the loop`);

  mkdirSync(opts.out, { recursive: true });
  const path = join(opts.out, 'fashion_mnist_vit_ema.safetensors');
  await saveBackbone(ema, path);
  console.log(`saved the EMA backbone to ${path}`);
  opt.dispose();
  model.dispose();
  ema.dispose();
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? `${e.name}: ${e.message}` : String(e));
  process.exit(1);
});
