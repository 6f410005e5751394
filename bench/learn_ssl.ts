// Does it learn? DINOv3 SSL on real images for a fixed wall-clock budget on this machine, then the teacher's k-NN
// accuracy (official protocol: L2-normalised CLS, cosine, k = 20, T = 0.07, weighted vote), with a k-NN curve over
// the run (on a subset, clock paused), the random-init figures (plain and centred) and raw pixels.
// --dataset fmnist: Fashion-MNIST (Debian dataset-fashion-mnist), 60k/10k. The peer is the official code itself,
//   ../shared/peers/cpu_anchor_learn.py, run by this script with the same budget and threads: after ours
//   (--peer run), at the same time (--peer parallel: both share the machine alike), or not (--peer skip).
// --dataset emoji: the Google emoji images of npm emoji-datasource-google (--emoji-dir <package>), 64 px RGBA
//   flattened on white, labelled by category (Component excluded), every 5th image held out.
//
//   npm run build:ts && node dist/bench/learn_ssl.js [--dataset fmnist|emoji] [--minutes 20] [--threads 2]
//     [--workers 0] [--recipe short|tuned|official] [--peer run|parallel|skip] [--label cpu-2core] [--run-dir <dir>]
//     [key=value overrides…]
// --run-dir keeps the run folder (config.yaml, metrics, a checkpoint at the end): the pretrained teacher that
//   bench/distill.ts --teacher-run and bench/gram_anchor.ts --pretrain-run continue from.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { batchTensors } from '../src/data/batch.js';
import { openFashionMnist } from '../src/data/datasets/idx.js';
import type { Dataset } from '../src/data/datasets/types.js';
import { addonInfo } from '../src/native/binding.js';
import {
  Budget,
  idxImages,
  knnTop1,
  loadEmoji,
  OFFICIAL_TINY_OVERRIDES,
  pixelKnnTop1,
  QUICKSTART_OVERRIDES,
  TUNED_TINY_OVERRIDES,
} from '../src/demo/ssl_quickstart.js';
import { setNumThreads } from '../src/tensor/device.js';
import { loadSSLConfig } from '../src/train/config.js';
import { trainingLoader } from '../src/train/data.js';
import { Trainer } from '../src/train/trainer.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    minutes: { type: 'string', default: '20' },
    threads: { type: 'string', default: '2' },
    workers: { type: 'string', default: '0' },
    dataset: { type: 'string', default: 'fmnist' },
    'emoji-dir': { type: 'string', default: 'node_modules/emoji-datasource-google' },
    'curve-every': { type: 'string', default: '4' },
    'skip-random': { type: 'boolean', default: false },
    'skip-pixels': { type: 'boolean', default: false },
    'curve-train': { type: 'string', default: '10000' },
    'curve-test': { type: 'string', default: '2000' },
    recipe: { type: 'string', default: 'short' },
    peer: { type: 'string', default: 'run' },
    'peer-args': { type: 'string', default: '' },
    python: { type: 'string', default: '/work/peer/venv/bin/python' },
    pythonpath: { type: 'string', default: '/work/peer/official:/work/peer/debs/usr/lib/python3/dist-packages' },
    label: { type: 'string', default: `cpu-${cpus().length}core` },
    out: { type: 'string', default: '' },
    'run-dir': { type: 'string', default: '' },
  },
});
const minutes = Number(values.minutes);
const threads = Number(values.threads);
setNumThreads(threads);

// --recipe short: the few-minute recipe (QUICKSTART_OVERRIDES); tuned: the 20-minute recipe (TUNED_TINY_OVERRIDES);
// official: the official defaults on the same tiny ViT, as the peer runs them (OFFICIAL_TINY_OVERRIDES).
const RECIPES: Record<string, readonly string[]> = { short: QUICKSTART_OVERRIDES, tuned: TUNED_TINY_OVERRIDES, official: OFFICIAL_TINY_OVERRIDES };
const recipe = RECIPES[values.recipe!];
if (!recipe) throw new Error(`--recipe must be one of ${Object.keys(RECIPES).join(', ')}`);
const overrides = [...recipe, ...positionals];
const cfg = await loadSSLConfig('cpu_tiny_fmnist', overrides);
const P = cfg.optim.epochs * cfg.train.OFFICIAL_EPOCH_LENGTH; // schedule positions, mapped onto the wall-clock budget
const budgetMs = minutes * 60_000;

const G = cfg.crops.global_crops_size as number;
const bf16 = cfg.compute_precision.param_dtype === 'bf16'; // the official eval autocasts to param_dtype
const { trainSet, testSet, trainData, numClasses } = values.dataset === 'emoji' ? await loadEmoji(values['emoji-dir']!) : fmnist();
const knn = (model: Parameters<typeof knnTop1>[0], ntrain?: number, ntest?: number) =>
  knnTop1(model, trainSet, testSet, {
    size: G,
    ntrain: ntrain && Math.min(ntrain, trainSet.length),
    ntest: ntest && Math.min(ntest, testSet.length),
    numClasses,
    bf16,
  }).top1;
const knnBoth = (model: Parameters<typeof knnTop1>[0]) => {
  const r = knnTop1(model, trainSet, testSet, { size: G, centred: true, numClasses, bf16 });
  return { knn20: r.top1, knn20_centred: r.centredTop1 };
};

const load0 = loadavg();
const budget = new Budget(budgetMs);
budget.pause();
const pixels = values['skip-pixels'] ? null : pixelKnnTop1(trainSet, testSet, { size: G, numClasses });
if (pixels !== null) process.stderr.write(`pixels k-NN@20 at ${G} px: ${(100 * pixels).toFixed(2)}%\n`);
let peerRun: Promise<Record<string, unknown>> | null = null;
if (values.peer === 'parallel' && values.dataset === 'fmnist') peerRun = runPeer();
const loader = trainingLoader(trainData, cfg, { workers: Number(values.workers) });
const trainer = await Trainer.create(cfg, {
  data: loader,
  ...(values['run-dir'] ? { outDir: values['run-dir'] } : {}),
  maxIterations: 1_000_000,
  scheduleIndex: () => budget.position(P),
});
const NTR = Number(values['curve-train']);
const NTE = Number(values['curve-test']);
const curve: { minute: number; iteration: number; knn20: number }[] = [];
const random = values['skip-random'] ? null : knnBoth(trainer.model.teacher.backbone);
curve.push({ minute: 0, iteration: 0, knn20: knn(trainer.model.teacher.backbone, NTR, NTE) });
const losses: { iteration: number; minute: number; total: number; dino_local: number; dino_global: number; koleo: number; ibot: number }[] = [];
let nextCurve = Number(values['curve-every']) * 60_000;
budget.resume();
const it = loader[Symbol.asyncIterator]();
let images = 0;
while (!budget.done) {
  const next = await it.next();
  const batch = next.value as Parameters<Trainer['step']>[0];
  const m = trainer.step(batch);
  for (const t of batchTensors(batch)) t.dispose();
  images += m.local_batch_size;
  if (m.iteration % 10 === 0)
    losses.push({
      iteration: m.iteration,
      minute: +(budget.elapsed() / 60000).toFixed(2),
      total: m.total_loss,
      dino_local: m.dino_local_crops_loss,
      dino_global: m.dino_global_crops_loss,
      koleo: m.koleo_loss,
      ibot: m.ibot_loss,
    });
  if (m.iteration % 20 === 0)
    process.stderr.write(
      `it ${m.iteration} ${(budget.elapsed() / 60000).toFixed(1)} min loss ${m.total_loss.toFixed(3)} dino ${m.dino_global_crops_loss.toFixed(3)} ibot ${m.ibot_loss.toFixed(3)} koleo ${m.koleo_loss.toFixed(3)}\n`,
    );
  if (budget.elapsed() >= nextCurve && !budget.done) {
    budget.pause();
    curve.push({ minute: +(budget.elapsed() / 60000).toFixed(2), iteration: trainer.iteration, knn20: knn(trainer.model.teacher.backbone, NTR, NTE) });
    process.stderr.write(`curve ${JSON.stringify(curve.at(-1))}\n`);
    nextCurve += Number(values['curve-every']) * 60_000;
    budget.resume();
  }
}
budget.pause();
const trainingMs = budget.elapsed();
await it.return?.();
await loader.close();
const iterations = trainer.iteration;
curve.push({ minute: +(trainingMs / 60000).toFixed(2), iteration: iterations, knn20: knn(trainer.model.teacher.backbone, NTR, NTE) });
const final = knnBoth(trainer.model.teacher.backbone);
if (values['run-dir']) await trainer.saveCheckpoint();
trainer.dispose();
const ours = {
  minutes: +(trainingMs / 60000).toFixed(2),
  iterations,
  epochs: +((iterations * cfg.train.batch_size_per_gpu) / trainSet.length).toFixed(3),
  img_per_s: +(images / (trainingMs / 1000)).toFixed(2),
  pixels_knn20: pixels,
  random_init: random,
  trained: final,
  curve,
  losses,
};
process.stderr.write(`ours ${JSON.stringify({ ...ours, losses: undefined })}\n`);

let peer: Record<string, unknown> | null = null;
if (peerRun) peer = await peerRun;
else if (values.peer === 'run' && values.dataset === 'fmnist') peer = await runPeer();
const res = {
  bench: 'learn_ssl',
  dataset: values.dataset,
  peer_mode: values.peer,
  budget_minutes: minutes,
  threads,
  workers: Number(values.workers),
  recipe: { name: values.recipe, preset: 'cpu_tiny_fmnist', overrides },
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
writeFileSync(values.out || join(dir, `learn_${values.dataset}-${values.label}.json`), `${text}\n`);

/** The official code's learning run (../shared/peers/cpu_anchor_learn.py), same budget and threads. */
function runPeer(): Promise<Record<string, unknown>> {
  const args = [
    join(root, '..', 'shared', 'peers', 'cpu_anchor_learn.py'),
    '--minutes',
    String(minutes),
    '--threads',
    String(threads),
    ...values['peer-args']!.split(' ').filter(Boolean),
  ];
  return new Promise((resolvePeer) => {
    const child = spawn(values.python!, args, { env: { ...process.env, PYTHONPATH: values.pythonpath }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-20000)));
    child.on('exit', () => {
      const line = out.split('\n').find((l) => l.startsWith('RESULT '));
      resolvePeer(line ? (JSON.parse(line.slice(7)) as Record<string, unknown>) : { error: err.slice(-3000) });
    });
  });
}

function fmnist() {
  const train = openFashionMnist('train');
  return { trainSet: idxImages(train), testSet: idxImages(openFashionMnist('t10k')), trainData: train as Dataset, numClasses: 10 };
}
