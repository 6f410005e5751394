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
import { addonInfo } from '../src/native/binding.js';
import { Budget, idxKnn } from '../src/demo/ssl_quickstart.js';
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
    workers: { type: 'string', default: '1' },
    'curve-every': { type: 'string', default: '4' },
    'skip-random': { type: 'boolean', default: false },
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
const knn = (model: Parameters<typeof idxKnn>[0], ntrain?: number, ntest?: number) => idxKnn(model, train, test, { size: G, ntrain, ntest }).top1;
const knnBoth = (model: Parameters<typeof idxKnn>[0]) => {
  const r = idxKnn(model, train, test, { size: G, centred: true });
  return { knn20: r.top1, knn20_centred: r.centredTop1 };
};

const load0 = loadavg();
const budget = new Budget(budgetMs);
budget.pause();
const loader = trainingLoader(train, cfg, { workers: Number(values.workers) });
const trainer = await Trainer.create(cfg, {
  data: loader,
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
  for (const t of [batch.collated_global_crops, batch.collated_local_crops, batch.collated_masks, batch.mask_indices_list, batch.masks_weight, batch.n_masked_patches]) t.dispose();
  images += m.local_batch_size;
  if (m.iteration % 10 === 0)
    losses.push({ iteration: m.iteration, minute: +(budget.elapsed() / 60000).toFixed(2), total: m.total_loss, dino_local: m.dino_local_crops_loss, dino_global: m.dino_global_crops_loss, koleo: m.koleo_loss, ibot: m.ibot_loss });
  if (m.iteration % 20 === 0)
    process.stderr.write(`it ${m.iteration} ${(budget.elapsed() / 60000).toFixed(1)} min loss ${m.total_loss.toFixed(3)} dino ${m.dino_global_crops_loss.toFixed(3)} ibot ${m.ibot_loss.toFixed(3)} koleo ${m.koleo_loss.toFixed(3)}\n`);
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
