// Does it learn? DINOv3 SSL on Fashion-MNIST (Debian dataset-fashion-mnist) for a fixed wall-clock budget on this
// machine, then the teacher's k-NN accuracy (official protocol: L2-normalised CLS, cosine, k = 20, T = 0.07, weighted
// vote) on the 60k/10k split, with a k-NN curve over the run (on a subset, clock paused), the random-init figures
// (plain and centred) and raw pixels. The peer is the official code itself: ../shared/peers/cpu_anchor_learn.py,
// run by this script right after (or before) ours with the same budget and threads (--peer).
//
//   npm run build:ts && node dist/bench/learn_fmnist.js [--minutes 20] [--threads 2] [--workers 1]
//     [--peer run|skip] [--label cpu-2core] [key=value overrides…]
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { openFashionMnist } from '../src/data/datasets/idx.js';
import { knnEval } from '../src/eval/knn.js';
import { addonInfo } from '../src/native/binding.js';
import { interpolate, normalize } from '../src/ops/nn.js';
import { cat } from '../src/ops/shape.js';
import { mean } from '../src/ops/reduce.js';
import { tensor } from '../src/tensor/creation.js';
import { setNumThreads } from '../src/tensor/device.js';
import { noGrad } from '../src/tensor/grad_mode.js';
import { keep, scope } from '../src/tensor/scope.js';
import type { Tensor } from '../src/tensor/tensor.js';
import type { DinoVisionTransformer } from '../src/models/vision_transformer.js';
import { loadSSLConfig } from '../src/train/config.js';
import { trainingLoader } from '../src/train/data.js';
import { Trainer } from '../src/train/trainer.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    minutes: { type: 'string', default: '20' },
    threads: { type: 'string', default: '2' },
    workers: { type: 'string', default: '1' },
    'curve-every': { type: 'string', default: '4' },
    'curve-train': { type: 'string', default: '10000' },
    'curve-test': { type: 'string', default: '2000' },
    peer: { type: 'string', default: 'run' },
    'peer-args': { type: 'string', default: '' },
    python: { type: 'string', default: '/work/peer/venv/bin/python' },
    pythonpath: { type: 'string', default: '/work/peer/official:/work/peer/debs/usr/lib/python3/dist-packages' },
    label: { type: 'string', default: `cpu-${cpus().length}core` },
    out: { type: 'string', default: '' },
  },
});
const minutes = Number(values.minutes);
const threads = Number(values.threads);
setNumThreads(threads);

/** The short-run recipe (see the README's "It learns" section); the preset keeps the official defaults elsewhere. */
const RECIPE = [
  'student.drop_path_rate=0.0',
  'student.layerscale=0.1',
  'dino.head_n_prototypes=1024',
  'ibot.head_n_prototypes=1024',
  'teacher.momentum_teacher=0.95',
  'teacher.final_momentum_teacher=0.995',
  'teacher.warmup_teacher_temp_epochs=1',
  'optim.warmup_epochs=1',
  'optim.freeze_last_layer_epochs=0',
  'optim.epochs=10',
  'train.OFFICIAL_EPOCH_LENGTH=100',
];
const overrides = [...RECIPE, ...positionals];
const cfg = await loadSSLConfig('cpu_tiny_fmnist', overrides);
const P = cfg.optim.epochs * cfg.train.OFFICIAL_EPOCH_LENGTH; // schedule positions, mapped onto the wall-clock budget
const budgetMs = minutes * 60_000;

const train = openFashionMnist('train');
const test = openFashionMnist('t10k');
const G = cfg.crops.global_crops_size as number;
const MEAN = [0.485, 0.456, 0.406];
const STD = [0.229, 0.224, 0.225];

/** Eval images: 28 px grey → RGB, bicubic resize to the global crop size, ImageNet normalisation (official make_eval_transform). */
function evalBatch(ds: typeof train, start: number, n: number): Tensor {
  return scope(() => {
    const px = new Float32Array(n * ds.rows * ds.cols);
    const src = ds.images.subarray(start * ds.rows * ds.cols, (start + n) * ds.rows * ds.cols);
    for (let i = 0; i < px.length; i++) px[i] = src[i]!;
    const x = interpolate(tensor(px, { shape: [n, 1, ds.rows, ds.cols] }), { size: [G, G], mode: 'bicubic', antialias: true })
      .round()
      .clamp(0, 255)
      .div(255);
    return cat([0, 1, 2].map((c) => x.sub(MEAN[c]!).div(STD[c]!)), 1);
  });
}
function features(model: DinoVisionTransformer, ds: typeof train, n: number): Tensor {
  const was = model.training;
  model.eval();
  try {
    return noGrad(() =>
      scope(() => {
        const parts: Tensor[] = [];
        for (let s = 0; s < n; s += 500) parts.push(model.forward(evalBatch(ds, s, Math.min(500, n - s))));
        return cat(parts, 0);
      }),
    );
  } finally {
    if (was) model.train();
  }
}
function knn(model: DinoVisionTransformer, ntr: number, nte: number, centred = false): number {
  return scope(() => {
    let a = features(model, train, ntr);
    let b = features(model, test, nte);
    if (centred) {
      const m = mean(a, 0, true);
      a = a.sub(m);
      b = b.sub(m);
    }
    const r = knnEval(normalize(a, 2, -1), train.labels!.subarray(0, ntr), normalize(b, 2, -1), test.labels!.subarray(0, nte), { ks: [20], numClasses: 10 });
    return r[0]!.top1;
  });
}

const load0 = loadavg();
let trainingMs = 0;
let segmentStart = performance.now();
const elapsed = () => trainingMs + (performance.now() - segmentStart);
const loader = trainingLoader(train, cfg, { workers: Number(values.workers) });
const trainer = await Trainer.create(cfg, {
  data: loader,
  maxIterations: 1_000_000,
  scheduleIndex: () => Math.min(P - 1, Math.floor((elapsed() / budgetMs) * P)),
});
const NTR = Number(values['curve-train']);
const NTE = Number(values['curve-test']);
const curve: { minute: number; iteration: number; knn20: number }[] = [];
const random = { knn20_full: knn(trainer.model.teacher.backbone, train.length, test.length), knn20_centred_full: knn(trainer.model.teacher.backbone, train.length, test.length, true) };
curve.push({ minute: 0, iteration: 0, knn20: knn(trainer.model.teacher.backbone, NTR, NTE) });
const losses: { iteration: number; minute: number; total: number; dino_local: number; dino_global: number; koleo: number; ibot: number }[] = [];
let nextCurve = Number(values['curve-every']) * 60_000;
segmentStart = performance.now();
const it = loader[Symbol.asyncIterator]();
let images = 0;
while (elapsed() < budgetMs) {
  const next = await it.next();
  const batch = next.value as Parameters<Trainer['step']>[0];
  const m = trainer.step(batch);
  for (const t of [batch.collated_global_crops, batch.collated_local_crops, batch.collated_masks, batch.mask_indices_list, batch.masks_weight, batch.n_masked_patches]) t.dispose();
  images += m.local_batch_size;
  if (m.iteration % 10 === 0)
    losses.push({ iteration: m.iteration, minute: +(elapsed() / 60000).toFixed(2), total: m.total_loss, dino_local: m.dino_local_crops_loss, dino_global: m.dino_global_crops_loss, koleo: m.koleo_loss, ibot: m.ibot_loss });
  if (m.iteration % 20 === 0)
    process.stderr.write(`it ${m.iteration} ${(elapsed() / 60000).toFixed(1)} min loss ${m.total_loss.toFixed(3)} dino ${m.dino_global_crops_loss.toFixed(3)} ibot ${m.ibot_loss.toFixed(3)} koleo ${m.koleo_loss.toFixed(3)}\n`);
  if (elapsed() >= nextCurve && elapsed() < budgetMs) {
    trainingMs += performance.now() - segmentStart;
    curve.push({ minute: +(trainingMs / 60000).toFixed(2), iteration: trainer.iteration, knn20: knn(trainer.model.teacher.backbone, NTR, NTE) });
    process.stderr.write(`curve ${JSON.stringify(curve.at(-1))}\n`);
    nextCurve += Number(values['curve-every']) * 60_000;
    segmentStart = performance.now();
  }
}
trainingMs += performance.now() - segmentStart;
await it.return?.();
await loader.close();
const iterations = trainer.iteration;
curve.push({ minute: +(trainingMs / 60000).toFixed(2), iteration: iterations, knn20: knn(trainer.model.teacher.backbone, NTR, NTE) });
const final = { knn20: knn(trainer.model.teacher.backbone, train.length, test.length), knn20_centred: knn(trainer.model.teacher.backbone, train.length, test.length, true) };
trainer.dispose();
const ours = {
  minutes: +(trainingMs / 60000).toFixed(2),
  iterations,
  epochs: +((iterations * cfg.train.batch_size_per_gpu) / train.length).toFixed(3),
  img_per_s: +(images / (trainingMs / 1000)).toFixed(2),
  random_init: random,
  trained: final,
  curve,
  losses,
};
process.stderr.write(`ours ${JSON.stringify({ ...ours, losses: undefined })}\n`);

let peer: Record<string, unknown> | null = null;
if (values.peer === 'run') {
  const args = [join(root, '..', 'shared', 'peers', 'cpu_anchor_learn.py'), '--minutes', String(minutes), '--threads', String(threads), ...values['peer-args']!.split(' ').filter(Boolean)];
  const r = spawnSync(values.python!, args, { env: { ...process.env, PYTHONPATH: values.pythonpath }, encoding: 'utf8', maxBuffer: 1 << 28 });
  const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
  peer = line ? (JSON.parse(line.slice(7)) as Record<string, unknown>) : { error: r.stderr.slice(-3000) };
}
const res = {
  bench: 'learn_fmnist',
  budget_minutes: minutes,
  threads,
  workers: Number(values.workers),
  recipe: { preset: 'cpu_tiny_fmnist', overrides },
  ours,
  official: peer,
  addon: addonInfo,
  loadavg_start: load0.map((x) => +x.toFixed(2)),
  loadavg_end: loadavg().map((x) => +x.toFixed(2)),
  date: new Date().toISOString(),
};
const text = JSON.stringify(res, null, 1);
process.stdout.write(`${text}\n`);
const dir = join(root, 'bench', 'results');
if (!existsSync(dir)) mkdirSync(dir, { recursive: true });
writeFileSync(values.out || join(dir, `learn_fmnist-${values.label}.json`), `${text}\n`);
void keep;
