// train.checkpointing (activation checkpointing of the student's blocks, official
// dinov3/fsdp/ac_compile_parallelize.py::activation_checkpoint_transformer): training iterations with it equal those
// without (the first bit for bit, then to float32 rounding: losses, gradient norms, weights), in fp32 and with the
// bf16 compute copy, with drop path; and with the flat units of the sharded strategies.
import { describe, expect, test } from 'vitest';

import { manualSeed, memory } from '../../../src/index.js';
import { disposeBatch } from '../../../src/data/batch.js';
import { loadSSLConfig } from '../../../src/train/config.js';
import { SyntheticBatches } from '../../../src/train/synthetic.js';
import { Trainer } from '../../../src/train/trainer.js';
import { tinyOverrides } from './tiny.js';

async function run(ckpt: boolean, pd: 'fp32' | 'bf16') {
  manualSeed(0);
  const cfg = await loadSSLConfig('ssl_default', [
    ...tinyOverrides({ dropPath: 0.3 }),
    `compute_precision.param_dtype=${pd}`,
    `train.checkpointing=${ckpt}`,
    'student.pos_embed_rope_rescale_coords=2',
  ]);
  const t = await Trainer.create(cfg);
  const data = new SyntheticBatches({ batchSize: 4, globalSize: 32, localSize: 16, nLocal: 2, patchSize: 8, seed: 5 });
  const metrics: number[][] = [];
  const live: number[] = [];
  for (let i = 0; i < 3; i++) {
    const b = data.batch(i);
    const m = t.step(b);
    disposeBatch(b);
    metrics.push([m.total_loss, m.koleo_loss, m.ibot_loss, ...Object.values(m.grad_norms)]);
    live.push(memory().liveTensors);
  }
  expect(live[2]).toBe(live[1]); // nothing piles up from one iteration to the next (the first makes the optimizer state)
  const weights = [...t.model.student.parameters(), ...t.model.teacher.parameters()].map((p) => Array.from(p.toFloat32Array()));
  expect(t.model.student.backbone.activationCheckpointing).toBe(ckpt);
  expect(t.model.teacher.backbone.activationCheckpointing).toBe(false);
  t.dispose();
  return { metrics, weights };
}

describe('train.checkpointing', () => {
  for (const pd of ['fp32', 'bf16'] as const)
    test(`three iterations (${pd}, drop path 0.3, RoPE rescaling): the same metrics and weights`, { timeout: 120_000 }, async () => {
      const before = memory().liveTensors;
      const plain = await run(false, pd);
      const ckpt = await run(true, pd);
      expect(plain.metrics.flat().every(Number.isFinite)).toBe(true);
      // The first iteration is the same to the bit. The engine's order of summing a head's gradient contributions
      // depends on the graph's node order, which the truncated graph changes: later iterations agree to float32
      // rounding.
      expect(ckpt.metrics[0]).toEqual(plain.metrics[0]);
      ckpt.metrics
        .flat()
        .forEach((v, i) => expect(Math.abs(v - plain.metrics.flat()[i]!) / Math.abs(plain.metrics.flat()[i]!), `metric ${i}`).toBeLessThan(1e-5));
      expect(ckpt.weights.length).toBe(plain.weights.length);
      let worst = 0;
      ckpt.weights.forEach((w, i) => w.forEach((v, j) => (worst = Math.max(worst, Math.abs(v - plain.weights[i]![j]!)))));
      expect(worst).toBeLessThan(1e-6); // weights of size ~0.02-1 after three AdamW steps of lr ~1e-4
      expect(memory().liveTensors).toBe(before);
    });

  for (const sharding of ['FULL_SHARD', 'SHARD_GRAD_OP', 'NO_SHARD'] as const)
    test(`${sharding} in one process (flat units without hooks): with it = without, three iterations`, { timeout: 120_000 }, async () => {
      const run = async (ckpt: boolean) => {
        manualSeed(0);
        const cfg = await loadSSLConfig('ssl_default', [...tinyOverrides({ dropPath: 0.2 }), `train.checkpointing=${ckpt}`]);
        const t = await Trainer.create(cfg, { sharding });
        const data = new SyntheticBatches({ batchSize: 4, globalSize: 32, localSize: 16, nLocal: 2, patchSize: 8, seed: 5 });
        const out: number[] = [];
        for (let i = 0; i < 3; i++) {
          const b = data.batch(i);
          const m = t.step(b);
          out.push(m.total_loss, ...Object.values(m.grad_norms));
          disposeBatch(b);
        }
        t.dispose();
        return out;
      };
      const plain = await run(false);
      const ckpt = await run(true);
      expect(plain.every(Number.isFinite)).toBe(true);
      ckpt.forEach((v, i) => expect(Math.abs(v - plain[i]!) / Math.abs(plain[i]!), `value ${i}`).toBeLessThan(1e-5));
    });
});
