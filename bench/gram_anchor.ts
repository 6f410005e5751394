// Gram anchoring on real images (issue 10): a small ViT pretrained with DINOv3 SSL on the Google emoji images for a
// wall-clock budget, then the same run continued (resumed from its checkpoint, as the official
// `dinov3/configs/train/dinov3_vit7b16_gram_anchor.yaml` continues the pretraining) with the Gram loss, its teacher
// being the EMA teacher at the switch iteration (`gram.it_load_ema_teacher`, what the `vits16_gram_anchor` preset does
// in place of the official `gram.ckpt` of the pretraining teacher), for a second budget.
// Reported before and after anchoring: the teacher's k-NN accuracy (official protocol, CLS, k = 20), a dense-feature
// measure (a patch-level logistic-regression probe predicting foreground — alpha > 0 over at least half the patch — from
// the teacher's normalised patch tokens: trained on train-image patches, tested on test-image patches: accuracy,
// balanced accuracy, AUC; also on the edge patches alone, partly covered, where the task is not trivial), PCA
// pictures of the patch features of 8 test emojis; and the Gram loss curve. The same figures of the network at
// random initialisation (unless --skip-random) show how much of each measure is learnt.
//
// The recipe at small scale (what the official gram_anchor file switches, scaled to a minutes-long run):
// - pretraining: cpu_tiny_fmnist + QUICKSTART_OVERRIDES (192 wide × 6 blocks, patch 4, 32 px globals, bf16), its
//   schedules mapped onto the pretraining budget;
// - anchoring: gram.use_loss, a separate gram teacher on 2× crops (64 px, no distortions), bicubic resize to the
//   student grid, normalised image-level Gram loss on all tokens; its weight 0 up to the switch then rising to 2.0
//   (official end value) over --ramp iterations, the DINO local loss re-weighted 1 → 0.5 over the same ramp; the gram
//   teacher refreshed from the EMA teacher every --refresh-every iterations after the switch, at most 3 times
//   (official max_updates); schedules v2 with a constant lr (--gram-lr; the official file also holds a constant lr,
//   0.6× its pretraining plateau), the pretraining's final weight decay and teacher temperature, and a constant teacher
//   momentum (--gram-momentum, default 0.99: the official 0.999 is for runs of tens of thousands of iterations, and the
//   pretraining's final value, 1 in the official schedule, would freeze the EMA teacher that is evaluated).
//
// With --control-minutes, the same continuation (same constant-lr schedules, same budget) without the Gram loss, from a
// copy of the pretraining run: what the anchoring changes compared with simply training on.
//
//   npm run build:ts && node dist/bench/gram_anchor.js [--pretrain-minutes 4] [--gram-minutes 3] [--control-minutes 3 (0: none)]
//     [--threads 2] [--emoji-dir /work/data/package] [--label cpu-2core] [--pretrain-run <dir>] [key=value overrides…]
// --pretrain-run continues a copy of an existing emoji run folder (its config.yaml and newest checkpoint, e.g. the one
//   bench/learn_ssl.ts --dataset emoji --run-dir keeps) instead of pretraining here; the folder itself is not changed.
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import sharp from 'sharp';

import { batchTensors } from '../src/data/batch.js';
import { addonInfo } from '../src/native/binding.js';
import { Budget, knnTop1, loadEmoji, type MaskedImages, patchFeatures, QUICKSTART_OVERRIDES } from '../src/demo/ssl_quickstart.js';
import { pcaFit, pcaRgb, renderPca } from '../src/features/pca.js';
import type { DinoVisionTransformer } from '../src/models/vision_transformer.js';
import { matmul } from '../src/ops/linalg.js';
import { add, div, mul, sigmoid, sub } from '../src/ops/pointwise.js';
import { mean, std } from '../src/ops/reduce.js';
import { reshape, select, transpose } from '../src/ops/shape.js';
import { tensor, zeros } from '../src/tensor/creation.js';
import { setNumThreads } from '../src/tensor/device.js';
import { scope } from '../src/tensor/scope.js';
import type { Tensor } from '../src/tensor/tensor.js';
import { loadSSLConfig, mergeConfig, parseSSLConfig, type SSLConfig } from '../src/train/config.js';
import { trainingLoader } from '../src/train/data.js';
import { METRICS_FILE, readMetrics, renderLossCurve } from '../src/train/logging.js';
import { Trainer } from '../src/train/trainer.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    'pretrain-minutes': { type: 'string', default: '4' },
    'gram-minutes': { type: 'string', default: '3' },
    threads: { type: 'string', default: '2' },
    workers: { type: 'string', default: '0' },
    'emoji-dir': { type: 'string', default: existsSync('/work/data/package/emoji.json') ? '/work/data/package' : 'node_modules/emoji-datasource-google' },
    'gram-lr': { type: 'string', default: '2e-4' },
    'gram-momentum': { type: 'string', default: '0.99' },
    ramp: { type: 'string', default: '20' },
    'refresh-every': { type: 'string', default: '40' },
    'probe-train': { type: 'string', default: '600' },
    'control-minutes': { type: 'string', default: '3' },
    'skip-random': { type: 'boolean', default: false },
    'run-dir': { type: 'string', default: '' },
    'pretrain-run': { type: 'string', default: '' },
    label: { type: 'string', default: `cpu-${cpus().length}core` },
    'results-dir': { type: 'string', default: '' },
  },
});
setNumThreads(Number(values.threads));
const log = (s: string) => process.stderr.write(`${s}\n`);
const resultsDir = values['results-dir'] || join(root, 'bench', 'results');
mkdirSync(resultsDir, { recursive: true });
const runDir = values['run-dir'] || mkdtempSync(join(tmpdir(), 'gram-anchor-'));
const keepRun = Boolean(values['run-dir']);

const pretrainRun = values['pretrain-run'] ? resolve(values['pretrain-run']) : '';
const pretrainOverrides = pretrainRun ? [...positionals] : [...QUICKSTART_OVERRIDES, ...positionals];
const cfg1 = await loadSSLConfig(pretrainRun ? join(pretrainRun, 'config.yaml') : 'cpu_tiny_fmnist', pretrainOverrides);
const EPOCH = cfg1.train.OFFICIAL_EPOCH_LENGTH;
const P = cfg1.optim.epochs * EPOCH;
const G = cfg1.crops.global_crops_size as number;
const patch = cfg1.student.patch_size;
const { trainSet, testSet, trainData, numClasses, classes } = await loadEmoji(values['emoji-dir']!);
log(`emoji: ${trainSet.length} train / ${testSet.length} test, ${numClasses} classes; run folder ${runDir}`);
const load0 = loadavg();

// ---- pretraining (here, or a copy of --pretrain-run resumed as it is) ----
let pre: Awaited<ReturnType<typeof trainFor>>;
if (pretrainRun) {
  let atStart = null;
  if (!values['skip-random']) {
    const fresh = await Trainer.create(cfg1);
    atStart = await evaluate(fresh.model.teacher.backbone, 'random');
    fresh.dispose();
  }
  cpSync(pretrainRun, runDir, { recursive: true });
  pre = { ...(await trainFor(cfg1, 0, { resume: true })), atStart, minutes: Number.NaN, imgPerS: Number.NaN };
} else
  pre = await trainFor(cfg1, Number(values['pretrain-minutes']), {
    resume: false,
    scheduleIndex: (b) => b.position(P),
    evalAtStart: !values['skip-random'],
  });
const S = pre.trainer.iteration; // the switch: the first anchoring iteration
await pre.trainer.saveCheckpoint();
const before = await evaluate(pre.trainer.model.teacher.backbone, 'before');
pre.trainer.dispose();

// ---- Gram anchoring: the same run continued with the gram switches at iteration S ----
const cfg2 = gramAnchorConfig(cfg1, S);
const controlMinutes = Number(values['control-minutes']);
const controlDir = `${runDir}-control`;
if (controlMinutes > 0) cpSync(runDir, controlDir, { recursive: true });
const anchor = await trainFor(cfg2, Number(values['gram-minutes']), { resume: true });
if (anchor.startIteration !== S) throw new Error(`the anchoring stage resumed at ${anchor.startIteration}, expected ${S}`);
const after = await evaluate(anchor.trainer.model.teacher.backbone, 'after');
const gramUpdates = anchor.gramUpdates;
anchor.trainer.dispose();

// ---- control (--control-minutes): the same continuation (schedules, budget) without the Gram loss ----
let control: Record<string, unknown> | null = null;
if (controlMinutes > 0) {
  const cfgC = parseSSLConfig(
    mergeConfig(cfg2, { gram: { use_loss: false }, dino: { reweight_dino_local_loss: false }, crops: { gram_teacher_crops_size: null } }),
  );
  const c = await trainFor(cfgC, controlMinutes, { resume: true, dir: controlDir });
  control = { minutes: c.minutes, iterations: c.trainer.iteration - S, img_per_s: c.imgPerS, ...(await evaluate(c.trainer.model.teacher.backbone, 'control')) };
  c.trainer.dispose();
  if (!keepRun) rmSync(controlDir, { recursive: true, force: true });
}

// ---- Gram loss curve ----
const records = await readMetrics(join(runDir, METRICS_FILE));
const gramRecords = records.filter((r) => typeof r.gram_loss === 'number');
const curvePath = join(resultsDir, `gram_anchor_loss-${values.label}.png`);
const jsonl = join(runDir, 'gram_metrics.jsonl');
writeFileSync(jsonl, gramRecords.map((r) => JSON.stringify(r)).join('\n') + '\n');
await renderLossCurve(jsonl, curvePath, { keys: ['gram_loss'], title: `Gram loss (anchoring from iteration ${S})` });
const totalCurvePath = join(resultsDir, `gram_anchor_losses-${values.label}.png`);
await renderLossCurve(join(runDir, METRICS_FILE), totalCurvePath, { title: 'all loss terms, pretraining then Gram anchoring', smoothing: 0.9 });

const every = Math.max(1, Math.floor(gramRecords.length / 100));
const res = {
  bench: 'gram_anchor',
  dataset: 'emoji',
  classes,
  threads: Number(values.threads),
  recipe: {
    pretrain: { base: pretrainRun ? "the pretraining run's config.yaml" : 'cpu_tiny_fmnist', overrides: pretrainOverrides },
    gram_anchor: {
      gram: cfg2.gram,
      crops: { gram_teacher_crops_size: cfg2.crops.gram_teacher_crops_size, gram_teacher_no_distortions: cfg2.crops.gram_teacher_no_distortions },
      schedules: cfg2.schedules,
      local_loss_weight_schedule: cfg2.dino.local_loss_weight_schedule,
    },
  },
  pretrain: pretrainRun ? { run: pretrainRun, iterations: S } : { minutes: pre.minutes, iterations: S, img_per_s: pre.imgPerS },
  gram_anchoring: { minutes: anchor.minutes, iterations: anchor.trainer.iteration - S, img_per_s: anchor.imgPerS, gram_teacher_refreshes: gramUpdates },
  random_init: pre.atStart,
  before,
  after,
  continued_without_gram: control,
  gram_loss_curve: gramRecords
    .filter((_, i) => i % every === 0 || i === gramRecords.length - 1)
    .map((r) => ({ iteration: r.iteration, gram_loss: r.gram_loss, gram_loss_weight: r.gram_loss_weight, total_loss: r.total_loss })),
  files: {
    gram_loss_png: rel(curvePath),
    losses_png: rel(totalCurvePath),
    pca_before: before.pca_png,
    pca_after: after.pca_png,
    pca_control: control?.pca_png ?? null,
    pca_random_init: pre.atStart?.pca_png ?? null,
  },
  addon: addonInfo,
  loadavg_start: load0.map((x) => +x.toFixed(2)),
  loadavg_end: loadavg().map((x) => +x.toFixed(2)),
  date: new Date().toISOString(),
};
const text = JSON.stringify(res, null, 1);
process.stdout.write(`${text}\n`);
writeFileSync(join(resultsDir, `gram_anchor-${values.label}.json`), `${text}\n`);
if (!keepRun) rmSync(runDir, { recursive: true, force: true });

function rel(p: string): string {
  return p.startsWith(root) ? p.slice(root.length + 1) : p;
}

/** The anchoring stage's config: the pretraining config with the official gram_anchor switches at iteration `S`. */
function gramAnchorConfig(base: SSLConfig, S: number): SSLConfig {
  const ramp = Number(values.ramp);
  const refresh = Number(values['refresh-every']);
  const lastT = base.teacher.teacher_temp ?? 0.07;
  const wdEnd = base.optim.weight_decay_end ?? 0.4;
  // teacher momentum: the official file holds 0.999 over tens of thousands of iterations; the pretraining's final value
  // (1 in the official schedule) would freeze the EMA teacher that is evaluated, so a short run holds --gram-momentum
  const mom = Number(values['gram-momentum']);
  const lr = Number(values['gram-lr']);
  const flat = (v: number) => ({ start: v, peak: v, end: v, warmup_epochs: 0 });
  const atSwitch = { warmup_epochs: S / EPOCH, cosine_epochs: ramp / EPOCH };
  return parseSSLConfig(
    mergeConfig(base, {
      // the weight schedules run over optim.epochs: long enough for any anchoring budget (past the end: the end values)
      optim: { epochs: Math.ceil(S / EPOCH) + 1000 },
      dino: { reweight_dino_local_loss: true, local_loss_weight_schedule: { start: 1, peak: 1, end: 0.5, ...atSwitch } },
      gram: {
        use_loss: true,
        loss_weight: 1.0,
        ema_teacher: false,
        ckpt: null,
        it_load_ema_teacher: S,
        rep_update: true,
        update_frequency: refresh,
        it_first_update: S + refresh,
        max_updates: 3,
        normalized: true,
        img_level: true,
        remove_neg: false,
        remove_only_teacher_neg: false,
        tokens_used: 'all',
        global_teacher_resize_method: 'bicubic',
        global_teacher_resize_antialias: false,
        loss_weight_schedule: { start: 0, peak: 0, end: 2.0, ...atSwitch },
      },
      crops: { gram_teacher_crops_size: 2 * G, gram_teacher_no_distortions: true },
      schedules: { lr: { ...flat(lr), freeze_last_layer_epochs: 0 }, weight_decay: flat(wdEnd), momentum: flat(mom), teacher_temp: flat(lastT) },
    }),
  );
}

/** Trains (or continues) the run in `runDir` for `minutes` of wall clock. */
async function trainFor(cfg: SSLConfig, minutes: number, o: { resume: boolean; dir?: string; scheduleIndex?: (b: Budget) => number; evalAtStart?: boolean }) {
  const budget = new Budget(minutes * 60_000);
  budget.pause();
  const loader = trainingLoader(trainData, cfg, { workers: Number(values.workers) });
  const trainer = await Trainer.create(cfg, {
    data: loader,
    outDir: o.dir ?? runDir,
    resume: o.resume,
    maxIterations: 10_000_000,
    scheduleIndex: o.scheduleIndex ? () => o.scheduleIndex!(budget) : undefined,
  });
  const startIteration = trainer.iteration;
  const atStart = o.evalAtStart ? await evaluate(trainer.model.teacher.backbone, 'random') : null;
  let images = 0;
  let gramUpdates = 0;
  budget.resume();
  const it = loader[Symbol.asyncIterator]();
  while (!budget.done) {
    const batch = (await it.next()).value as Parameters<Trainer['step']>[0];
    const m = trainer.step(batch);
    for (const t of batchTensors(batch)) t.dispose();
    images += m.local_batch_size;
    if (typeof m.gram_teacher_updates === 'number') gramUpdates = m.gram_teacher_updates;
    if (m.iteration % 20 === 0)
      log(
        `it ${m.iteration} ${(budget.elapsed() / 60000).toFixed(2)} min loss ${m.total_loss.toFixed(3)} dino ${m.dino_global_crops_loss.toFixed(3)} ibot ${m.ibot_loss.toFixed(3)} koleo ${m.koleo_loss.toFixed(3)}${m.gram_loss === undefined ? '' : ` gram ${m.gram_loss.toFixed(4)} (w ${m.gram_loss_weight?.toFixed(2)})`}`,
      );
  }
  budget.pause();
  await it.return?.();
  await loader.close();
  const ms = budget.elapsed();
  return { trainer, startIteration, atStart, gramUpdates, minutes: +(ms / 60000).toFixed(2), imgPerS: +(images / (ms / 1000)).toFixed(2) };
}

/**
 * Per-patch foreground labels (alpha > 0 over at least half of the patch's source pixels), [n·h·w] as 0/1, and which
 * patches are edge patches (some but not all of their source pixels have alpha > 0).
 */
function foregroundLabels(set: MaskedImages, n: number, grid: number): { y: Float32Array; edge: Uint8Array } {
  const out = new Float32Array(n * grid * grid);
  const edge = new Uint8Array(n * grid * grid);
  for (let i = 0; i < n; i++) {
    const a = set.alpha(i);
    const { width: W, height: H } = set.image(i);
    for (let gy = 0; gy < grid; gy++)
      for (let gx = 0; gx < grid; gx++) {
        const y0 = Math.floor((gy * H) / grid);
        const y1 = Math.floor(((gy + 1) * H) / grid);
        const x0 = Math.floor((gx * W) / grid);
        const x1 = Math.floor(((gx + 1) * W) / grid);
        let fg = 0;
        for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) if (a[y * W + x]! > 0) fg++;
        const all = (y1 - y0) * (x1 - x0);
        out[(i * grid + gy) * grid + gx] = fg * 2 >= all ? 1 : 0;
        edge[(i * grid + gy) * grid + gx] = fg > 0 && fg < all ? 1 : 0;
      }
  }
  return { y: out, edge };
}

/**
 * Logistic regression (standardised features, L2 1e-4, full-batch Adam, 300 steps) on train patches, scored on test
 * patches: accuracy, balanced accuracy and ROC AUC, on all test patches and on the edge patches alone.
 */
function foregroundProbe(xTrain: Tensor, yTrain: Float32Array, xTest: Tensor, test: { y: Float32Array; edge: Uint8Array }) {
  const scores = scope(() => {
    const mu = mean(xTrain, 0, true);
    const sd = std(xTrain, 0, 1, true).add(1e-6);
    const X = div(sub(xTrain, mu), sd);
    const Xt = div(sub(xTest, mu), sd);
    const N = X.shape[0]!;
    const D = X.shape[1]!;
    const y = tensor(yTrain, { shape: [N, 1] });
    let w = zeros([D, 1]);
    let b = zeros([1]);
    let mw = zeros([D, 1]);
    let vw = zeros([D, 1]);
    let mb = zeros([1]);
    let vb = zeros([1]);
    const lr = 0.05;
    const lambda = 1e-4;
    for (let t = 1; t <= 300; t++) {
      [w, b, mw, vw, mb, vb] = scope(() => {
        const p = sigmoid(add(matmul(X, w), b));
        const r = sub(p, y);
        const gw = add(div(matmul(transpose(X, 0, 1), r), N), mul(w, lambda));
        const gb = mean(r, 0);
        const m1 = add(mul(mw, 0.9), mul(gw, 0.1));
        const v1 = add(mul(vw, 0.999), mul(mul(gw, gw), 0.001));
        const m2 = add(mul(mb, 0.9), mul(gb, 0.1));
        const v2 = add(mul(vb, 0.999), mul(mul(gb, gb), 0.001));
        const c1 = 1 - 0.9 ** t;
        const c2 = 1 - 0.999 ** t;
        const step = (m: Tensor, v: Tensor) => div(mul(m, lr / c1), add(v.div(c2).sqrt(), 1e-8));
        return [sub(w, step(m1, v1)), sub(b, step(m2, v2)), m1, v1, m2, v2];
      });
    }
    return add(matmul(Xt, w), b).flatten();
  });
  const s = scores.data() as Float32Array;
  scores.dispose();
  const all = Array.from(s.keys());
  return {
    patches_train: yTrain.length,
    ...binaryMetrics(s, test.y, all),
    edge_patches: binaryMetrics(
      s,
      test.y,
      all.filter((i) => test.edge[i] === 1),
    ),
  };
}

/** Accuracy, balanced accuracy and ROC AUC (Mann–Whitney, average ranks for ties) of scores `s` (> 0: class 1) on `idx`. */
function binaryMetrics(s: Float32Array, y: Float32Array, idx: number[]) {
  let tp = 0;
  let tn = 0;
  let pos = 0;
  for (const i of idx) {
    const yi = y[i]!;
    pos += yi;
    if (s[i]! > 0 && yi === 1) tp++;
    if (s[i]! <= 0 && yi === 0) tn++;
  }
  const neg = idx.length - pos;
  const order = [...idx].sort((a, b) => s[a]! - s[b]!);
  let rankSumPos = 0;
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j + 1 < order.length && s[order[j + 1]!] === s[order[i]!]) j++;
    const avg = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) if (y[order[k]!] === 1) rankSumPos += avg;
    i = j + 1;
  }
  const auc = (rankSumPos - (pos * (pos + 1)) / 2) / (pos * neg);
  return {
    patches_test: idx.length,
    foreground_share_test: +(pos / idx.length).toFixed(4),
    accuracy: +((tp + tn) / idx.length).toFixed(4),
    balanced_accuracy: +((tp / pos + tn / neg) / 2).toFixed(4),
    auc: +auc.toFixed(4),
  };
}

/** k-NN, the foreground probe and the PCA picture of the teacher backbone. */
async function evaluate(model: DinoVisionTransformer, tag: 'random' | 'before' | 'after' | 'control') {
  const t0 = performance.now();
  const knn = knnTop1(model, trainSet, testSet, { size: G, centred: true, numClasses });
  const grid = G / patch;
  const ntr = Math.min(Number(values['probe-train']), trainSet.length);
  const probe = scope(() => {
    const a = patchFeatures(model, trainSet, ntr, G).flatten(0, 1).float();
    const b = patchFeatures(model, testSet, testSet.length, G).flatten(0, 1).float();
    return foregroundProbe(a, foregroundLabels(trainSet, ntr, grid).y, b, foregroundLabels(testSet, testSet.length, grid));
  });
  // PCA of the patch features of 8 test emojis (one fit over the 8, first three components as RGB), each beside its image
  const pick = Array.from({ length: 8 }, (_, i) => Math.floor((i * testSet.length) / 8));
  const maps = scope(() => {
    const feats = patchFeatures(model, { length: 8, labels: new Int32Array(8), image: (i) => testSet.image(pick[i]!) }, 8, G).float(); // [8, P, D]
    const D = feats.shape[2]!;
    const fit = pcaFit(feats, 3);
    return pick.map((_, i) => pcaRgb(reshape(select(feats, 0, i), [grid, grid, D]), fit));
  });
  const tiles: Buffer[] = [];
  try {
    for (let i = 0; i < 8; i++) tiles.push((await renderPca(maps[i]!, { beside: testSet.image(pick[i]!) })).png);
  } finally {
    for (const m of maps) m.dispose();
  }
  const im0 = testSet.image(0);
  const tileW = 2 * im0.width;
  const png = await sharp({ create: { width: tileW * 4, height: im0.height * 2, channels: 3, background: '#ffffff' } })
    .composite(tiles.map((input, i) => ({ input, left: (i % 4) * tileW, top: Math.floor(i / 4) * im0.height })))
    .png()
    .toBuffer();
  const pcaPath = join(resultsDir, `gram_anchor_pca_${tag}-${values.label}.png`);
  writeFileSync(pcaPath, png);
  const r = {
    knn20: knn.top1,
    knn20_centred: knn.centredTop1,
    foreground_probe: probe,
    pca_png: rel(pcaPath),
    eval_seconds: +((performance.now() - t0) / 1000).toFixed(1),
  };
  log(`${tag}: ${JSON.stringify(r)}`);
  return r;
}
