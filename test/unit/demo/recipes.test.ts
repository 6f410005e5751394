// The learning recipes of the demo and bench/learn_ssl.ts resolve to the values their comments state: the official
// defaults on the tiny Fashion-MNIST ViT, the few-minute recipe and the 20-minute recipe on top of them.
import { expect, test } from 'vitest';

import { OFFICIAL_TINY_OVERRIDES, QUICKSTART_OVERRIDES, TUNED_TINY_OVERRIDES } from '../../../src/demo/ssl_quickstart.js';
import { loadSSLConfig } from '../../../src/train/config.js';

test('official tiny recipe: the official defaults (bf16, drop path 0.3, momentum 0.992, KoLeo 0.1, crop scales)', async () => {
  const c = await loadSSLConfig('cpu_tiny_fmnist', OFFICIAL_TINY_OVERRIDES);
  expect([c.compute_precision.param_dtype, c.student.drop_path_rate, c.teacher.momentum_teacher, c.dino.koleo_loss_weight]).toEqual(['bf16', 0.3, 0.992, 0.1]);
  expect([c.crops.global_crops_scale, c.crops.local_crops_scale]).toEqual([
    [0.32, 1.0],
    [0.05, 0.32],
  ]);
  expect([c.optim.lr, c.optim.epochs, c.train.OFFICIAL_EPOCH_LENGTH, c.teacher.teacher_temp]).toEqual([0.001, 100, 100, 0.07]);
});

test('20-minute recipe: official defaults with the 96×4 ViT on 28/12 px crops and the short-run settings, nothing else', async () => {
  const o = await loadSSLConfig('cpu_tiny_fmnist', OFFICIAL_TINY_OVERRIDES);
  const t = await loadSSLConfig('cpu_tiny_fmnist', TUNED_TINY_OVERRIDES);
  expect([t.student.embed_dim, t.student.depth, t.student.num_heads, t.student.n_storage_tokens]).toEqual([96, 4, 3, 0]);
  expect([t.crops.global_crops_size, t.crops.local_crops_size, t.crops.global_crops_scale, t.crops.local_crops_scale]).toEqual([28, 12, [0.5, 1], [0.2, 0.5]]);
  expect([t.dino.head_n_prototypes, t.ibot.head_n_prototypes, t.train.batch_size_per_gpu, t.optim.lr]).toEqual([256, 256, 32, 0.008]);
  expect([t.student.drop_path_rate, t.dino.koleo_loss_weight]).toEqual([0.1, 0.3]);
  expect([t.teacher.warmup_teacher_temp, t.teacher.teacher_temp, t.teacher.warmup_teacher_temp_epochs]).toEqual([0.01, 0.01, 30]);
  const same = structuredClone(t);
  Object.assign(same.student, {
    embed_dim: o.student.embed_dim,
    depth: o.student.depth,
    num_heads: o.student.num_heads,
    n_storage_tokens: o.student.n_storage_tokens,
    drop_path_rate: o.student.drop_path_rate,
  });
  Object.assign(same.crops, {
    global_crops_size: o.crops.global_crops_size,
    local_crops_size: o.crops.local_crops_size,
    global_crops_scale: o.crops.global_crops_scale,
    local_crops_scale: o.crops.local_crops_scale,
  });
  same.dino.head_n_prototypes = o.dino.head_n_prototypes;
  same.ibot.head_n_prototypes = o.ibot.head_n_prototypes;
  same.train.batch_size_per_gpu = o.train.batch_size_per_gpu;
  same.optim.lr = o.optim.lr;
  same.dino.koleo_loss_weight = o.dino.koleo_loss_weight;
  same.teacher.warmup_teacher_temp = o.teacher.warmup_teacher_temp;
  same.teacher.teacher_temp = o.teacher.teacher_temp;
  expect(same).toEqual(o);
});

test('few-minute recipe: the small model of the 20-minute recipe, lr 4e-3, teacher temperature 0.02 throughout, KoLeo 0.3, momentum 0.98 → 1', async () => {
  const q = await loadSSLConfig('cpu_tiny_fmnist', QUICKSTART_OVERRIDES);
  const t = await loadSSLConfig('cpu_tiny_fmnist', TUNED_TINY_OVERRIDES);
  expect([q.student.embed_dim, q.student.depth, q.student.num_heads, q.student.n_storage_tokens]).toEqual([96, 4, 3, 0]);
  expect([q.crops.global_crops_size, q.crops.local_crops_size, q.dino.head_n_prototypes, q.train.batch_size_per_gpu]).toEqual([28, 12, 256, 32]);
  expect(q.student).toEqual({ ...t.student, drop_path_rate: 0.3 });
  expect(q.crops).toEqual({ ...t.crops, global_crops_scale: [0.32, 1.0], local_crops_scale: [0.05, 0.32] });
  expect([q.optim.lr, q.teacher.warmup_teacher_temp, q.teacher.teacher_temp, q.dino.koleo_loss_weight]).toEqual([0.004, 0.02, 0.02, 0.3]);
  expect([q.teacher.momentum_teacher, q.teacher.final_momentum_teacher]).toEqual([0.98, 1]);
});
