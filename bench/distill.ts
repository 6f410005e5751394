// Distillation on real images (issue 10): a teacher (cpu_tiny_fmnist + QUICKSTART_OVERRIDES: 192 wide × 6 blocks,
// patch 4, 32 px globals, bf16) pretrained with DINOv3 SSL for --teacher-minutes, then frozen and distilled by
// `MultiDistiller` (official `dinov3/train/multidist_meta_arch.py::MultiDistillationMetaArch`: one teacher forward per
// batch, Sinkhorn-Knopp targets, DINO/iBOT/KoLeo losses, the student's own EMA) into a smaller student (default 96 wide
// × 4 blocks, 3 heads) for --student-minutes; for reference, the same student trained from scratch with SSL for the
// same budget. Reported: k-NN top-1 (official protocol: L2-normalised CLS, cosine, k = 20, T = 0.07) of the teacher,
// of the distilled student's EMA (what distillation exports), of the scratch student's EMA teacher, of the student at
// random initialisation, and of raw pixels.
//
// Schedules follow the wall clock: the teacher's and the scratch student's through `scheduleIndex` (the share of the
// budget spent); the distilled student's through its epoch length, set from a short timed calibration of distillation
// steps so that its schedules end with the budget (MultiDistiller's trainers count schedule positions by iteration).
//
//   npm run build:ts && node dist/bench/distill.js [--dataset fmnist|emoji] [--teacher-minutes 4.5] [--student-minutes 3]
//     [--scratch-minutes 3] [--threads 2] [--emoji-dir /work/data/package] [--label cpu-2core] [--teacher-run <dir>]
//     [key=value overrides…]
// --teacher-run distils from an existing run folder (its config.yaml and newest checkpoint, e.g. the one that
//   bench/learn_ssl.ts --run-dir keeps) instead of pretraining a teacher here; the student's recipe is that run's config
//   (with the overrides and the student's size).
// --distill-overrides "k=v …" apply to the distilled student only (not to the scratch reference), e.g. a lower
//   teacher temperature for the targets of a teacher whose heads were trained briefly.
// The committed figures (bench/results/distill-cpu-2core.json) come from
//   node dist/bench/learn_ssl.js --recipe official --peer parallel --threads 1 --run-dir <fm> \
//     'crops.global_crops_scale=[0.5,1]' 'crops.local_crops_scale=[0.2,0.5]' student.drop_path_rate=0.1 \
//     dino.koleo_loss_weight=0.3   (the 71.1% teacher: the 20-minute recipe as it was then, on the 192×6 ViT)
//   node dist/bench/distill.js --teacher-run <fm> --student-minutes 20 --scratch-minutes 20 --threads 1 \
//     --distill-overrides "teacher.teacher_temp=0.005 teacher.warmup_teacher_temp=0.005"
// The teacher's DINO head logits vary by about 0.005 across prototypes after 20 minutes (its DINO loss never left
// ln K), so at the official temperatures its Sinkhorn-Knopp targets are uniform and teach the student nothing; 0.005
// gives logits / temperature a spread of about 1 across prototypes (measured on one batch).
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { batchTensors, type CollatedBatch } from '../src/data/batch.js';
import { openFashionMnist } from '../src/data/datasets/idx.js';
import type { Dataset } from '../src/data/datasets/types.js';
import { Budget, idxImages, knnTop1, type LabeledImages, loadEmoji, pixelKnnTop1, QUICKSTART_OVERRIDES } from '../src/demo/ssl_quickstart.js';
import type { DinoVisionTransformer } from '../src/models/vision_transformer.js';
import { addonInfo } from '../src/native/binding.js';
import { setNumThreads } from '../src/tensor/device.js';
import { loadSSLConfig, type SSLConfig } from '../src/train/config.js';
import { trainingLoader } from '../src/train/data.js';
import { DistillationTeacher, MultiDistiller } from '../src/train/multidist_meta_arch.js';
import { Trainer } from '../src/train/trainer.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    dataset: { type: 'string', default: 'fmnist' },
    'teacher-minutes': { type: 'string', default: '4.5' },
    'student-minutes': { type: 'string', default: '3' },
    'scratch-minutes': { type: 'string', default: '' },
    'student-dim': { type: 'string', default: '96' },
    'student-depth': { type: 'string', default: '4' },
    'student-heads': { type: 'string', default: '3' },
    'calibration-steps': { type: 'string', default: '8' },
    'knn-train': { type: 'string', default: '10000' },
    'knn-test': { type: 'string', default: '2000' },
    threads: { type: 'string', default: '2' },
    workers: { type: 'string', default: '0' },
    'emoji-dir': { type: 'string', default: existsSync('/work/data/package/emoji.json') ? '/work/data/package' : 'node_modules/emoji-datasource-google' },
    'run-dir': { type: 'string', default: '' },
    'teacher-run': { type: 'string', default: '' },
    'distill-overrides': { type: 'string', default: '' },
    label: { type: 'string', default: `cpu-${cpus().length}core` },
    'results-dir': { type: 'string', default: '' },
  },
});
setNumThreads(Number(values.threads));
const log = (s: string) => process.stderr.write(`${s}\n`);
const resultsDir = values['results-dir'] || join(root, 'bench', 'results');
mkdirSync(resultsDir, { recursive: true });
const runDir = values['run-dir'] || mkdtempSync(join(tmpdir(), 'distill-'));
const keepRun = Boolean(values['run-dir']);
const teacherMinutes = Number(values['teacher-minutes']);
const studentMinutes = Number(values['student-minutes']);
const scratchMinutes = values['scratch-minutes'] === '' ? studentMinutes : Number(values['scratch-minutes']);

const teacherRun = values['teacher-run'] ? resolve(values['teacher-run']) : '';
// the recipe's base: the teacher run's config.yaml, or the cpu_tiny_fmnist preset with the short-run recipe
const base = teacherRun ? join(teacherRun, 'config.yaml') : 'cpu_tiny_fmnist';
const teacherOverrides = teacherRun ? [...positionals] : [...QUICKSTART_OVERRIDES, ...positionals];
const studentOverrides = [
  ...teacherOverrides,
  `student.embed_dim=${values['student-dim']}`,
  `student.depth=${values['student-depth']}`,
  `student.num_heads=${values['student-heads']}`,
];
const cfgT = await loadSSLConfig(base, teacherOverrides);
const cfgS = await loadSSLConfig(base, studentOverrides);
const G = cfgT.crops.global_crops_size as number;
const { trainSet, testSet, trainData, numClasses } = values.dataset === 'emoji' ? await loadEmoji(values['emoji-dir']!) : fmnist();
const ntr = Math.min(Number(values['knn-train']), trainSet.length);
const nte = Math.min(Number(values['knn-test']), testSet.length);
const knn = (m: DinoVisionTransformer) => +knnTop1(m, trainSet, testSet, { size: G, ntrain: ntr, ntest: nte, numClasses }).top1.toFixed(4);
log(`${values.dataset}: ${trainSet.length} train / ${testSet.length} test, k-NN on ${ntr} / ${nte}; run folder ${runDir}`);
const load0 = loadavg();
const pixels = +pixelKnnTop1(subset(trainSet, ntr), subset(testSet, nte), { size: G, numClasses }).toFixed(4);
log(`pixels k-NN@20: ${pixels}`);

// ---- teacher: SSL pretraining here, or the given run's ----
const teacherDir = teacherRun || join(runDir, 'teacher');
let teacher: { minutes: number | null; iterations: number | null; imgPerS: number | null; knn20: number };
if (teacherRun) {
  const t = await DistillationTeacher.load(cfgT, teacherRun);
  teacher = { minutes: null, iterations: null, imgPerS: null, knn20: knn(t.model.backbone) }; // see the run's own results
  t.dispose();
} else {
  const t = await sslFor(cfgT, teacherMinutes, teacherDir);
  await t.trainer.saveCheckpoint();
  teacher = { minutes: t.minutes, iterations: t.iterations, imgPerS: t.imgPerS, knn20: knn(t.trainer.model.teacher.backbone) };
  t.trainer.dispose();
}
const teacherKnn = teacher.knn20;
log(`teacher: ${teacher.iterations} iterations, k-NN ${teacherKnn}`);

// ---- distillation: calibrate the step time, then fit the student's schedules to the budget ----
const msPerStep = await calibrate();
const E = cfgS.optim.epochs;
const plannedIterations = Math.max(E, Math.floor((studentMinutes * 60_000) / msPerStep));
const distillOverrides = values['distill-overrides']!.split(' ').filter(Boolean);
const cfgD = await loadSSLConfig(base, [
  ...studentOverrides,
  ...distillOverrides,
  `train.OFFICIAL_EPOCH_LENGTH=${Math.max(1, Math.round(plannedIterations / E))}`,
]);
log(`distillation: ${msPerStep.toFixed(0)} ms/step → ${plannedIterations} iterations planned (epoch length ${cfgD.train.OFFICIAL_EPOCH_LENGTH})`);
const distilled = await distillFor(cfgD, studentMinutes, join(runDir, 'distill'));
const student = distilled.distiller.students[0]!.trainer;
const studentRandomKnn = distilled.randomKnn;
const studentKnn = knn(student.model.teacher.backbone);
log(`distilled student: ${distilled.iterations} iterations, k-NN ${studentKnn}`);
distilled.distiller.dispose();

// ---- reference: the same student trained from scratch with SSL for the same budget ----
let scratch: { minutes: number; iterations: number; img_per_s: number; knn20: number } | null = null;
if (scratchMinutes > 0) {
  const s = await sslFor(cfgS, scratchMinutes, join(runDir, 'scratch'));
  scratch = { minutes: s.minutes, iterations: s.iterations, img_per_s: s.imgPerS, knn20: knn(s.trainer.model.teacher.backbone) };
  log(`scratch student: ${JSON.stringify(scratch)}`);
  s.trainer.dispose();
}

const res = {
  bench: 'distill',
  dataset: values.dataset,
  threads: Number(values.threads),
  knn_images: { train: ntr, test: nte },
  recipe: {
    base: teacherRun ? "the teacher run's config.yaml" : 'cpu_tiny_fmnist',
    teacher_overrides: teacherOverrides,
    student_overrides: studentOverrides,
    distill_overrides: distillOverrides,
  },
  models: {
    teacher: { embed_dim: cfgT.student.embed_dim, depth: cfgT.student.depth, num_heads: cfgT.student.num_heads },
    student: { embed_dim: cfgS.student.embed_dim, depth: cfgS.student.depth, num_heads: cfgS.student.num_heads },
  },
  pixels_knn20: pixels,
  teacher: { run: teacherRun || null, minutes: teacher.minutes, iterations: teacher.iterations, img_per_s: teacher.imgPerS, knn20: teacherKnn },
  distilled_student: {
    minutes: distilled.minutes,
    iterations: distilled.iterations,
    planned_iterations: plannedIterations,
    calibration_ms_per_step: +msPerStep.toFixed(1),
    img_per_s: distilled.imgPerS,
    random_init_knn20: studentRandomKnn,
    knn20: studentKnn,
    share_of_teacher_knn: +(studentKnn / teacherKnn).toFixed(4),
  },
  scratch_student: scratch,
  addon: addonInfo,
  loadavg_start: load0.map((x) => +x.toFixed(2)),
  loadavg_end: loadavg().map((x) => +x.toFixed(2)),
  date: new Date().toISOString(),
};
const text = JSON.stringify(res, null, 1);
process.stdout.write(`${text}\n`);
writeFileSync(join(resultsDir, `distill-${values.label}.json`), `${text}\n`);
if (!keepRun) rmSync(runDir, { recursive: true, force: true });

function fmnist(): { trainSet: LabeledImages; testSet: LabeledImages; trainData: Dataset; numClasses: number } {
  const train = openFashionMnist('train');
  return { trainSet: idxImages(train), testSet: idxImages(openFashionMnist('t10k')), trainData: train as Dataset, numClasses: 10 };
}

function subset(set: LabeledImages, n: number): LabeledImages {
  return { length: n, labels: set.labels.subarray(0, n), image: (i) => set.image(i) };
}

/** Pulls batches while the budget lasts (and `more()` holds), giving each to `step`, then disposing it. */
async function loop(
  data: AsyncIterable<CollatedBatch>,
  budget: Budget,
  more: () => boolean,
  step: (b: CollatedBatch) => { iteration: number; images: number; line: string },
) {
  let images = 0;
  let iterations = 0;
  budget.resume();
  const it = data[Symbol.asyncIterator]();
  try {
    while (!budget.done && more()) {
      const batch = (await it.next()).value as CollatedBatch;
      try {
        const r = step(batch);
        images += r.images;
        iterations++;
        if (r.iteration % 20 === 0) log(`it ${r.iteration} ${(budget.elapsed() / 60000).toFixed(2)} min ${r.line}`);
      } finally {
        for (const t of batchTensors(batch)) t.dispose();
      }
    }
  } finally {
    budget.pause();
    await it.return?.();
  }
  const ms = budget.elapsed();
  return { iterations, minutes: +(ms / 60000).toFixed(2), imgPerS: +(images / (ms / 1000)).toFixed(2) };
}

/** SSL training of `cfg` for `minutes`, its schedules mapped onto the budget. */
async function sslFor(cfg: SSLConfig, minutes: number, outDir: string) {
  const budget = new Budget(minutes * 60_000);
  budget.pause();
  const P = cfg.optim.epochs * cfg.train.OFFICIAL_EPOCH_LENGTH;
  const loader = trainingLoader(trainData, cfg, { workers: Number(values.workers) });
  const trainer = await Trainer.create(cfg, { data: loader, outDir, maxIterations: 10_000_000, scheduleIndex: () => budget.position(P) });
  const r = await loop(
    loader,
    budget,
    () => true,
    (b) => {
      const m = trainer.step(b);
      return {
        iteration: m.iteration,
        images: m.local_batch_size,
        line: `loss ${m.total_loss.toFixed(3)} dino ${m.dino_global_crops_loss.toFixed(3)} ibot ${m.ibot_loss.toFixed(3)} koleo ${m.koleo_loss.toFixed(3)}`,
      };
    },
  );
  await loader.close();
  return { trainer, ...r };
}

/** Milliseconds per distillation step (teacher forward + student iteration), timed over the last steps of a short run. */
async function calibrate(): Promise<number> {
  const n = Math.max(3, Number(values['calibration-steps']));
  const loader = trainingLoader(trainData, cfgS, { workers: Number(values.workers) });
  const d = await MultiDistiller.create({ cfg: cfgT, checkpoint: teacherDir }, [{ name: 'student', cfg: cfgS }], { data: loader, maxIterations: n });
  const times: number[] = [];
  const it = loader[Symbol.asyncIterator]();
  try {
    for (let i = 0; i < n; i++) {
      const batch = (await it.next()).value as CollatedBatch;
      const t0 = performance.now();
      try {
        d.step(batch);
      } finally {
        for (const t of batchTensors(batch)) t.dispose();
      }
      times.push(performance.now() - t0);
    }
  } finally {
    await it.return?.();
    await loader.close();
    d.dispose();
  }
  const warm = times.slice(2).sort((a, b) => a - b);
  return warm[Math.floor(warm.length / 2)]!; // median of the steps after two warm-up steps
}

/** Distillation of the saved teacher into one student for `minutes`. */
async function distillFor(cfg: SSLConfig, minutes: number, outDir: string) {
  const budget = new Budget(minutes * 60_000);
  budget.pause();
  const loader = trainingLoader(trainData, cfg, { workers: Number(values.workers) });
  const distiller = await MultiDistiller.create({ cfg: cfgT, checkpoint: teacherDir }, [{ name: 'student', cfg }], { data: loader, outDir });
  const randomKnn = knn(distiller.students[0]!.trainer.model.teacher.backbone);
  const r = await loop(
    loader,
    budget,
    () => distiller.iteration < distiller.maxIterations,
    (b) => {
      const m = distiller.step(b).student!;
      return {
        iteration: m.iteration,
        images: m.local_batch_size,
        line: `loss ${m.total_loss.toFixed(3)} dino ${m.dino_global_crops_loss.toFixed(3)} ibot ${m.ibot_loss.toFixed(3)} koleo ${m.koleo_loss.toFixed(3)}`,
      };
    },
  );
  await loader.close();
  return { distiller, randomKnn, ...r };
}
