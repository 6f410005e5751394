// Multi-resolution crop draws, the stage presets (the 7B stages equal the official files as OmegaConf merges them;
// the small families continue without schedule jumps), and a tiny three-stage chain in one run folder.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, test } from 'vitest';

import { ConfigError } from '../../../src/index.js';
import { cropSizeChoices, cropSizesForIteration } from '../../../src/data/crop_sizes.js';
import { loadSSLConfig, parseSSLConfig } from '../../../src/train/config.js';
import { openTrainingData } from '../../../src/train/data.js';
import { buildSchedulers } from '../../../src/train/schedules.js';
import { stageRun, type StageSpec } from '../../../src/train/stages.js';
import { SyntheticBatches } from '../../../src/train/synthetic.js';
import { Trainer } from '../../../src/train/trainer.js';

const ROOT = new URL('../../../', import.meta.url).pathname;
const readJson = (name: string): unknown => JSON.parse(readFileSync(join(ROOT, 'test/fixtures/train', name), 'utf8'));
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const HIGH_RES = {
  global_crops_size: [512, 768, 768, 768, 768],
  local_crops_size: [112, 112, 168, 224, 336],
  global_local_crop_pairs_ratios: [0.3, 0.3, 0.3, 0.05, 0.05],
  gram_teacher_crops_size: [768, 1152, 1152, 1152, 1152],
};

describe('multi-resolution crop sizes', () => {
  test('the draw follows the ratios (20000 iterations, each frequency within 4σ) and is a pure function of (seed, iteration)', () => {
    const n = 20000;
    const counts = [0, 0, 0, 0, 0];
    for (let it = 0; it < n; it++) counts[cropSizesForIteration(HIGH_RES, it).index]!++;
    HIGH_RES.global_local_crop_pairs_ratios.forEach((p, i) => {
      const sigma = Math.sqrt(n * p * (1 - p));
      expect(Math.abs(counts[i]! - n * p), `entry ${i}: ${counts[i]}`).toBeLessThanOrEqual(4 * sigma);
    });
    expect(cropSizesForIteration(HIGH_RES, 1234)).toEqual(cropSizesForIteration(HIGH_RES, 1234));
    const a = Array.from({ length: 50 }, (_, it) => cropSizesForIteration(HIGH_RES, it, 1).index);
    const b = Array.from({ length: 50 }, (_, it) => cropSizesForIteration(HIGH_RES, it, 2).index);
    expect(a).not.toEqual(b);
    // the entries keep their pairing
    const c = cropSizesForIteration(HIGH_RES, 7);
    expect([c.globalSize, c.localSize, c.gramTeacherSize]).toEqual([
      HIGH_RES.global_crops_size[c.index],
      HIGH_RES.local_crops_size[c.index],
      HIGH_RES.gram_teacher_crops_size[c.index],
    ]);
  });

  test('a single resolution, and the errors of inconsistent mixes', () => {
    expect(cropSizesForIteration({ global_crops_size: 224, local_crops_size: 96 }, 3)).toEqual({
      index: 0,
      globalSize: 224,
      localSize: 96,
      gramTeacherSize: null,
    });
    expect(() => cropSizeChoices({ global_crops_size: [224, 256], local_crops_size: [96], global_local_crop_pairs_ratios: [0.5, 0.5] })).toThrow(ConfigError);
    expect(() => cropSizeChoices({ global_crops_size: [224, 256], local_crops_size: [96, 112], global_local_crop_pairs_ratios: [0.5, 0.6] })).toThrow(
      'crops.global_local_crop_pairs_ratios must sum to 1 (numpy choice probabilities), got 1.1',
    );
  });

  test('SyntheticBatches draw the sizes per iteration (crops, gram crops and mask grid follow)', () => {
    const crops = { global_crops_size: [32, 48], local_crops_size: [16, 24], global_local_crop_pairs_ratios: [0.5, 0.5], gram_teacher_crops_size: [64, 96] };
    const s = new SyntheticBatches({ batchSize: 2, globalSize: 32, localSize: 16, nLocal: 2, patchSize: 8, crops, seed: 1 });
    const seen = new Set<number>();
    for (let it = 0; it < 8; it++) {
      const z = cropSizesForIteration(crops, it);
      seen.add(z.index);
      const b = s.batch(it);
      expect(b.collated_global_crops.shape).toEqual([4, 3, z.globalSize, z.globalSize]);
      expect(b.collated_local_crops.shape).toEqual([4, 3, z.localSize, z.localSize]);
      expect(b.collated_gram_teacher_crops!.shape).toEqual([4, 3, z.gramTeacherSize, z.gramTeacherSize]);
      expect(b.collated_masks.shape).toEqual([4, (z.globalSize / 8) ** 2]);
      for (const x of Object.values(b)) if (typeof x === 'object') x.dispose();
    }
    expect(seen.size).toBe(2);
  });
});

describe('synthetic training data of a config', () => {
  test('a multi-resolution config with a separate gram teacher: per-iteration sizes and gram crops', async () => {
    const c = await loadSSLConfig('ssl_default', [
      'student.arch=vit_test',
      'student.patch_size=8',
      'crops.local_crops_number=2',
      'train.batch_size_per_gpu=2',
      'crops.global_crops_size=[32,48]',
      'crops.local_crops_size=[16,24]',
      'crops.global_local_crop_pairs_ratios=[0.5,0.5]',
      'crops.gram_teacher_crops_size=[64,96]',
      'gram.use_loss=true',
      'gram.it_load_ema_teacher=0',
    ]);
    const d = await openTrainingData('synthetic', c, { seed: 4 });
    let it = 0;
    for await (const b of d) {
      const z = cropSizesForIteration(c.crops, it);
      expect(b.collated_global_crops.shape[2]).toBe(z.globalSize);
      expect(b.collated_gram_teacher_crops!.shape[2]).toBe(z.gramTeacherSize);
      for (const x of Object.values(b)) if (typeof x === 'object') x.dispose();
      if (++it === 6) break;
    }
    // the EMA teacher as gram teacher: no gram crops
    const e = await loadSSLConfig('ssl_default', [
      'student.arch=vit_test',
      'student.patch_size=8',
      'gram.use_loss=true',
      'gram.ema_teacher=true',
      'gram.it_load_ema_teacher=0',
      'train.batch_size_per_gpu=2',
    ]);
    for await (const b of await openTrainingData('synthetic', e)) {
      expect(b.collated_gram_teacher_crops).toBeUndefined();
      for (const x of Object.values(b)) if (typeof x === 'object') x.dispose();
      break;
    }
  });
});

describe('stage presets', () => {
  test('the 7B stages equal the official files merged onto the defaults', async () => {
    expect(await loadSSLConfig('dinov3_vit7b16_pretrain')).toEqual(parseSSLConfig(readJson('dinov3_vit7b16_pretrain.json')));
    expect(await loadSSLConfig('dinov3_vit7b16_gram_anchor')).toEqual(parseSSLConfig(readJson('dinov3_vit7b16_gram_anchor.json')));
    expect(await loadSSLConfig('dinov3_vit7b16_high_res_adapt')).toEqual(parseSSLConfig(readJson('dinov3_vit7b16_high_res_adapt.json')));
  });

  for (const size of ['vits16', 'vitb16', 'vitl16']) {
    test(`${size}: Gram anchoring continues pretraining without schedule jumps; its Gram weight is 0 until the switch`, async () => {
      const p = await loadSSLConfig(`${size}_pretrain`);
      const g = await loadSSLConfig(`${size}_gram_anchor`);
      const h = await loadSSLConfig(`${size}_high_res_adapt`);
      const switchIt = p.optim.epochs * p.train.OFFICIAL_EPOCH_LENGTH;
      const sp = buildSchedulers(p);
      const sg = buildSchedulers(g);
      for (const it of [0, 999, 10_000, 50_000, switchIt - 1]) {
        expect(sg.lr.at(it), `lr at ${it}`).toBe(sp.lr.at(it));
        expect(sg.wd.at(it)).toBe(sp.wd.at(it));
        expect(sg.momentum.at(it)).toBe(sp.momentum.at(it));
        expect(sg.teacherTemp.at(it)).toBe(sp.teacherTemp.at(it));
      }
      expect(sg.lr.at(switchIt + 5000)).toBe(sp.lr.at(switchIt - 1));
      expect(g.gram).toMatchObject({ use_loss: true, it_load_ema_teacher: switchIt, it_first_update: switchIt + 10_000, max_updates: 3, ckpt: null });
      expect(g.crops.gram_teacher_crops_size).toBe(2 * (g.crops.global_crops_size as number));
      expect(h.crops.global_crops_size).toEqual(HIGH_RES.global_crops_size);
      expect(h.gram.rep_update).toBe(false);
      expect(h.dino.koleo_distributed_loss_group_size).toBe(h.train.batch_size_per_gpu);
    });
  }
});

describe('a three-stage chain in one run folder (tiny)', () => {
  const TINY = {
    student: { arch: 'vit_test', patch_size: 8, n_storage_tokens: 2, drop_path_rate: 0 },
    crops: { global_crops_size: 32, local_crops_size: 16, local_crops_number: 2 },
    dino: { head_n_prototypes: 32, head_hidden_dim: 48, head_bottleneck_dim: 16 },
    ibot: { head_n_prototypes: 24, head_hidden_dim: 40, head_bottleneck_dim: 12 },
    train: { batch_size_per_gpu: 4, OFFICIAL_EPOCH_LENGTH: 2 },
    compute_precision: { param_dtype: 'fp32' },
    optim: { warmup_epochs: 1 },
    teacher: { warmup_teacher_temp_epochs: 1 },
    checkpointing: { period: 2 },
    evaluation: { eval_period_iterations: 0 },
  } as const;
  const stages: StageSpec[] = [
    { name: 'pretrain', start: 'continue', config: { optim: { epochs: 2 } } },
    {
      name: 'gram_anchor',
      start: 'continue',
      config: {
        optim: { epochs: 4 },
        gram: {
          use_loss: true,
          it_load_ema_teacher: 4,
          rep_update: true,
          update_frequency: 2,
          it_first_update: 6,
          max_updates: 3,
          img_level: true,
          loss_weight_schedule: { start: 0, peak: 0, end: 2, warmup_epochs: 2, cosine_epochs: 1 },
        },
        crops: { gram_teacher_crops_size: 64 },
      },
    },
    {
      name: 'high_res_adapt',
      start: 'restart',
      config: {
        optim: { epochs: 1 },
        gram: { rep_update: false, it_load_ema_teacher: -1, loss_weight_schedule: { start: 1.5, peak: 1.5, end: 1.5, warmup_epochs: 0 } },
        crops: { global_crops_size: [32, 48], local_crops_size: [16, 24], global_local_crop_pairs_ratios: [0.5, 0.5], gram_teacher_crops_size: [64, 96] },
      },
    },
  ];

  test('pretrain → Gram anchoring (resume, switches at iteration 4) → high-resolution (restart from the anchored teacher)', { timeout: 240_000 }, async () => {
    const run = mkdtempSync(join(tmpdir(), 'dinov3-stages-'));
    dirs.push(run);
    const src = (cfg: Parameters<typeof Trainer.create>[0] & object) =>
      new SyntheticBatches({
        batchSize: 4,
        globalSize: 32,
        localSize: 16,
        nLocal: 2,
        patchSize: 8,
        seed: 9,
        crops: { ...cfg.crops, gram_teacher_crops_size: cfg.gram.use_loss ? cfg.crops.gram_teacher_crops_size : null },
      });
    const s0 = stageRun(stages, 0, run, TINY);
    const t0 = await Trainer.create(s0.cfg, { data: src(s0.cfg), outDir: s0.outDir, resume: s0.resume });
    await t0.fit();
    const teacherAt4 = [...t0.model.teacher.backbone.parameters()].map((p) => p.toFloat32Array());
    t0.dispose();

    const s1 = stageRun(stages, 1, run, TINY);
    expect(s1).toMatchObject({ outDir: run, resume: true });
    const d1 = src(s1.cfg);
    const t1 = await Trainer.create(s1.cfg, { data: d1, outDir: s1.outDir, resume: true });
    expect(t1.iteration).toBe(4);
    expect(d1.state()).toBe(4);
    const refreshes: number[] = [];
    const upd = t1.model.updateGram.bind(t1.model);
    t1.model.updateGram = (m?: number) => (refreshes.push(t1.iteration), upd(m));
    let loadedFromTeacherAt4 = false;
    const load = t1.model.gramLoadEmaTeacher.bind(t1.model);
    t1.model.gramLoadEmaTeacher = () => {
      load();
      loadedFromTeacherAt4 = [...t1.model.gramTeacher!.backbone.parameters()].every((p, i) => p.toFloat32Array().every((v, j) => v === teacherAt4[i]![j]));
    };
    await t1.fit();
    t1.dispose();
    expect(loadedFromTeacherAt4).toBe(true);
    expect(refreshes).toEqual([5, 7]);
    const metrics = readFileSync(join(run, 'training_metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, number>);
    expect(metrics.map((m) => m.iteration)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(metrics.slice(0, 4).every((m) => m.gram_loss === undefined)).toBe(true);
    // Gram weight: 0 through the warmup (iterations 4..), then a one-epoch cosine 0 → 2 (iterations 4, 5), then 2
    expect(metrics.slice(4).map((m) => m.gram_loss_weight)).toEqual([0, 2, 2, 2]);

    const s2 = stageRun(stages, 2, run, TINY);
    expect(s2.outDir).toBe(join(run, 'high_res_adapt'));
    expect(s2.cfg.student.resume_from_teacher_chkpt).toBe(run);
    expect(s2.cfg.gram.ckpt).toBe(run);
    const t2 = await Trainer.create(s2.cfg, { data: src(s2.cfg), outDir: s2.outDir, resume: s2.resume });
    expect(t2.iteration).toBe(0);
    expect(t2.model.gramTeacherInitialized).toBe(true);
    await t2.fit();
    t2.dispose();
    expect(existsSync(join(s2.outDir, 'teacher_checkpoint.safetensors'))).toBe(true);
    const m2 = readFileSync(join(s2.outDir, 'training_metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, number>);
    expect(m2.map((m) => m.gram_loss_weight)).toEqual([1.5, 1.5]);
  });
});
