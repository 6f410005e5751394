// Development probe (not a benchmark): SSL on Fashion-MNIST with an in-memory tensor multi-crop, to pick short-run
// hyperparameters. Usage: node dist/bench/learn_quick.js key=value ...
import { loadFashionMnist } from '../src/demo/fashion_mnist.js';
import { Generator, noGrad, scope, tensor, type Tensor, setNumThreads, manualSeed, memory } from '../src/index.js';
import { interpolate } from '../src/ops/nn.js';
import { cat, flip } from '../src/ops/shape.js';
import { mm, } from '../src/ops/linalg.js';
import { topk } from '../src/ops/reduce.js';
import { normalize, softmax } from '../src/ops/nn.js';
import { Rng } from '../src/data/rng.js';
import type { CollatedBatch } from '../src/data/batch.js';
import { SSLMetaArch } from '../src/train/ssl_meta_arch.js';
import { buildOptimizer, trainIteration } from '../src/train/train.js';
import { buildSchedulers } from '../src/train/schedules.js';
import { parse } from 'yaml';
import { readFileSync } from 'node:fs';

const args = Object.fromEntries(process.argv.slice(2).map((a) => a.split('=') as [string, string]));
const num = (k: string, d: number) => (args[k] !== undefined ? Number(args[k]) : d);
setNumThreads(num('threads', 2));
manualSeed(0);
const cfg = parse(readFileSync('/work/peer/official/dinov3/configs/ssl_default_config.yaml', 'utf8'));
const set = (path: string, v: unknown) => { const p = path.split('.'); let n = cfg; for (const k of p.slice(0, -1)) n = n[k]; n[p[p.length - 1]!] = v; };
const B = num('batch', 64), G = num('gsize', 32), L = num('lsize', 16), NL = num('nlocal', 6), P = num('patch', 4);
const ITERS = num('iters', 200);
set('student.arch', 'vit_test'); // replaced below via custom dims
set('student.patch_size', P); set('student.n_storage_tokens', 4); set('student.drop_path_rate', num('dpr', 0.0));
set('student.layerscale', num('ls', 1e-5));
set('crops.global_crops_size', G); set('crops.local_crops_size', L); set('crops.local_crops_number', NL);
set('dino.head_n_prototypes', num('K', 1024)); set('dino.head_hidden_dim', 512); set('dino.head_bottleneck_dim', 128);
set('ibot.head_n_prototypes', num('K', 1024)); set('ibot.head_hidden_dim', 512); set('ibot.head_bottleneck_dim', 128);
set('train.batch_size_per_gpu', B); set('compute_precision.param_dtype', 'fp32');
set('optim.epochs', 1); set('train.OFFICIAL_EPOCH_LENGTH', ITERS);
set('optim.lr', num('lr', 1e-3) * 4 * Math.sqrt(B / 1024)); set('optim.min_lr', 1e-6); set('optim.warmup_epochs', num('warm', 0.1));
set('optim.weight_decay', 0.04); set('optim.weight_decay_end', num('wdend', 0.4));
set('optim.freeze_last_layer_epochs', num('freeze', 0.01));
set('teacher.momentum_teacher', num('mom', 0.992)); set('teacher.final_momentum_teacher', num('momend', 1));
set('teacher.warmup_teacher_temp', num('ttw', 0.04)); set('teacher.teacher_temp', num('tt', 0.07)); set('teacher.warmup_teacher_temp_epochs', num('ttepochs', 0.3));
set('dino.koleo_loss_weight', num('koleo', 0.1));
(await import('../src/config/presets.js')).TRAINING_ARCHS; // (vit_test is 64 wide; patch the arch table for this probe)
const archs = (await import('../src/config/presets.js')).TRAINING_ARCHS as unknown as Record<string, object>;
archs['vit_probe'] = { embed_dim: num('dim', 192), depth: num('depth', 6), num_heads: num('heads', 3), ffn_ratio: 4 };
set('student.arch', 'vit_probe');

const train = loadFashionMnist('train');
const test = loadFashionMnist('t10k');
const model = new SSLMetaArch(cfg, { generator: new Generator(0) });
const opt = buildOptimizer(model, cfg.optim);
const sched = buildSchedulers(cfg);
const mean = [0.485, 0.456, 0.406], std = [0.229, 0.224, 0.225];

function rrc(img: Tensor, rng: Rng, size: number, smin: number, smax: number): Tensor {
  // img [1,1,28,28] float 0..1; torchvision RandomResizedCrop parameters
  const H = 28, W = 28, area = H * W;
  for (let t = 0; t < 10; t++) {
    const a = area * rng.uniform(smin, smax);
    const r = Math.exp(rng.uniform(Math.log(3 / 4), Math.log(4 / 3)));
    const w = Math.round(Math.sqrt(a * r)), h = Math.round(Math.sqrt(a / r));
    if (w > 0 && h > 0 && w <= W && h <= H) {
      const i = rng.randint(0, H - h), j = rng.randint(0, W - w);
      return interpolate(img.narrow(2, i, h).narrow(3, j, w), { size: [size, size], mode: 'bicubic', antialias: true });
    }
  }
  return interpolate(img, { size: [size, size], mode: 'bicubic', antialias: true });
}
function aug(img: Tensor, rng: Rng, size: number, smin: number, smax: number): Tensor {
  let x = rrc(img, rng, size, smin, smax).clamp(0, 1);
  if (rng.bernoulli(0.5)) x = flip(x, [3]);
  if (rng.bernoulli(0.8)) { const b = rng.uniform(0.6, 1.4), c = rng.uniform(0.6, 1.4); const m = x.mean(); x = x.mul(b).sub(m.mul(b)).mul(c).add(m.mul(b)).clamp(0, 1); }
  if (rng.bernoulli(0.2)) x = x.neg().add(1); // solarize-like
  const ch = [0, 1, 2].map((c) => x.sub(mean[c]!).div(std[c]!));
  return cat(ch, 1); // [1,3,s,s]
}
function makeBatch(it: number): CollatedBatch {
  return scope(() => {
    const rng = Rng.derive(0, it);
    const idx = Array.from({ length: B }, () => rng.randint(0, train.n - 1));
    const imgs = idx.map((i) => tensor(Float32Array.from(train.images.subarray(i * 784, i * 784 + 784), (v) => v / 255), { shape: [1, 1, 28, 28] }));
    const g0: Tensor[] = [], g1: Tensor[] = [], loc: Tensor[][] = Array.from({ length: NL }, () => []);
    imgs.forEach((im, b) => { const r = rng.fork(b); g0.push(aug(im, r, G, 0.32, 1)); g1.push(aug(im, r, G, 0.32, 1)); for (let l = 0; l < NL; l++) loc[l]!.push(aug(im, r, L, 0.05, 0.32)); });
    const global = cat([...g0, ...g1], 0);
    const local = cat(loc.flat(), 0);
    const N = (G / P) ** 2;
    const masks = new Uint8Array(2 * B * N);
    const nm = Math.round(0.5 * 2 * B);
    for (let s = 0; s < nm; s++) { const ratio = 0.1 + (0.4 * s) / Math.max(nm - 1, 1); const k = Math.round(ratio * N); const perm = rng.permutation(N); for (let q = 0; q < k; q++) masks[s * N + perm[q]!] = 1; }
    const idxs: number[] = [], w: number[] = [];
    for (let s = 0; s < 2 * B; s++) { let c = 0; for (let q = 0; q < N; q++) c += masks[s * N + q]!; for (let q = 0; q < N; q++) if (masks[s * N + q]) { idxs.push(s * N + q); w.push(1 / c); } }
    return {
      collated_global_crops: global, collated_local_crops: local,
      collated_masks: tensor(masks, { shape: [2 * B, N] }).to('bool'),
      mask_indices_list: tensor(BigInt64Array.from(idxs.map(BigInt)), { shape: [idxs.length] }),
      masks_weight: tensor(Float32Array.from(w), { shape: [w.length] }),
      n_masked_patches: tensor(BigInt64Array.from([BigInt(idxs.length)]), { shape: [1] }),
      upperbound: idxs.length,
    };
  });
}
function evalSet(split: typeof train, n: number): Tensor {
  return noGrad(() => scope(() => {
    model.teacher.backbone.eval();
    const outs: Tensor[] = [];
    for (let s = 0; s < n; s += 500) {
      const m = Math.min(500, n - s);
      const x = tensor(Float32Array.from(split.images.subarray(s * 784, (s + m) * 784), (v) => v / 255), { shape: [m, 1, 28, 28] });
      const r = interpolate(x, { size: [G, G], mode: 'bicubic' });
      const ch = cat([0, 1, 2].map((c) => r.sub(mean[c]!).div(std[c]!)), 1);
      outs.push(normalize(model.teacher.backbone.forward(ch), 2, -1));
    }
    return cat(outs, 0);
  }));
}
function knn(ntrain: number, ntest: number): number {
  return scope(() => {
    const tr = evalSet(train, ntrain), te = evalSet(test, ntest);
    const trl = train.labels.subarray(0, ntrain);
    let correct = 0;
    for (let s = 0; s < ntest; s += 500) {
      const sims = mm(te.narrow(0, s, Math.min(500, ntest - s)), tr.t());
      const { values: v, indices: i } = topk(sims, 20, 1);
      const w = softmax(v!.div(0.07), 1).toFloat32Array(); const ii = i!.toArray();
      const rows = v!.shape[0]!;
      for (let r = 0; r < rows; r++) { const votes = new Float64Array(10); for (let k = 0; k < 20; k++) votes[trl[ii[r * 20 + k]!]!]! += w[r * 20 + k]!; let best = 0; for (let c = 1; c < 10; c++) if (votes[c]! > votes[best]!) best = c; if (best === test.labels[s + r]) correct++; }
    }
    return correct / ntest;
  });
}
const evalEvery = num('evalEvery', 100), NTR = num('ntrain', 10000), NTE = num('ntest', 2000);
const t0 = Date.now();
const out: string[] = [];
process.stdout.write(`knn@0 ${knn(NTR, NTE).toFixed(4)} t=${((Date.now() - t0) / 1000).toFixed(0)}s\n`);
let streak = 0;
for (let it = 0; it < ITERS; it++) {
  const batch = makeBatch(it);
  const m = trainIteration(model, opt, batch, { iteration: it, values: { lr: sched.lr.at(it), wd: sched.wd.at(it), momentum: sched.momentum.at(it), teacherTemp: sched.teacherTemp.at(it), lastLayerLr: sched.lastLayerLr.at(it) }, clipGrad: 3.0, nonFiniteStreak: streak });
  streak = m.stepped ? 0 : streak + 1;
  for (const t of Object.values(batch)) if (typeof t === 'object') (t as Tensor).dispose();
  if (it % 20 === 0) process.stdout.write(`it ${it} ${((Date.now() - t0) / 1000).toFixed(0)}s loss ${m.total_loss.toFixed(3)} dl ${m.dino_local_crops_loss.toFixed(3)} dg ${m.dino_global_crops_loss.toFixed(3)} ko ${m.koleo_loss.toFixed(3)} ib ${m.ibot_loss.toFixed(3)} live ${memory().liveTensors}\n`);
  if ((it + 1) % evalEvery === 0) process.stdout.write(`knn@${it + 1} ${knn(NTR, NTE).toFixed(4)} t=${((Date.now() - t0) / 1000).toFixed(0)}s\n`);
}
process.stdout.write(out.join('\n') + '\n');
