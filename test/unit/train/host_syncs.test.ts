// Host synchronisation points (hostSyncs): which calls count, and how many a training iteration passes. On CUDA each
// one waits for the device, so the step must pass exactly one (its metrics read); the count is kept on every device,
// which is what lets this CPU test hold the step to it.
import { describe, expect, test } from 'vitest';

import { hostSyncs } from '../../../src/tensor/device.js';
import { arange, manualSeed, tensor } from '../../../src/tensor/creation.js';
import { scope } from '../../../src/tensor/scope.js';
import { maskedSelect, nonzero } from '../../../src/ops/index.js';
import { disposeBatch } from '../../../src/data/batch.js';
import { loadSSLConfig } from '../../../src/train/config.js';
import { SyntheticBatches } from '../../../src/train/synthetic.js';
import { scheduleValues, trainIteration } from '../../../src/train/train.js';
import { Trainer } from '../../../src/train/trainer.js';
import { tinyOverrides } from './tiny.js';

/** hostSyncs() passed while running fn. */
function syncsOf(fn: () => unknown): number {
  const before = hostSyncs();
  scope(() => void fn());
  return hostSyncs() - before;
}

describe('hostSyncs', () => {
  test('counts every read of values on the host and every value-dependent output size, nothing else', () => {
    scope(() => {
      const x = arange(0, 6).reshape([2, 3]).float();
      const mask = x.gt(2);
      expect(syncsOf(() => x.add(1).mul(x).sum(-1).softmax(0))).toBe(0);
      expect(syncsOf(() => x.index([null, arange(0, 2)]))).toBe(0); // int64 indices: the output size is known
      expect(syncsOf(() => x.to('cpu'))).toBe(0); // no transfer on the CPU
      expect(syncsOf(() => x.sum().item())).toBe(1);
      expect(syncsOf(() => x.toArray())).toBe(1);
      expect(syncsOf(() => x.toFloat32Array())).toBe(1);
      expect(syncsOf(() => x.data())).toBe(1);
      expect(syncsOf(() => String(x))).toBe(1); // libtorch's printout of the values
      expect(syncsOf(() => x.to('bfloat16').toFloat32Array())).toBe(1); // converted on its device, then one read
      expect(syncsOf(() => maskedSelect(x, mask))).toBe(1);
      expect(syncsOf(() => nonzero(mask))).toBe(1);
      expect(syncsOf(() => x.index([mask]))).toBe(1); // a boolean mask: one count however many
      expect(syncsOf(() => x.clone().indexPut_([mask], tensor([0])))).toBe(1);
    });
  });

  test('dataAsync counts once when it starts', async () => {
    const x = arange(0, 4);
    const before = hostSyncs();
    const bytes = await x.dataAsync();
    expect(hostSyncs() - before).toBe(1);
    expect(bytes.byteLength).toBe(32);
    x.dispose();
  });
});

describe('a training iteration passes one host synchronisation', () => {
  test.each(['fp32', 'bf16'] as const)('param_dtype %s, with KoLeo, drop path and clipping: exactly one per iteration', async (pd) => {
    manualSeed(0);
    const cfg = await loadSSLConfig('ssl_default', [...tinyOverrides({ dropPath: 0.1 }), `compute_precision.param_dtype=${pd}`]);
    const t = await Trainer.create(cfg, {});
    const data = new SyntheticBatches({ batchSize: 4, globalSize: 32, localSize: 16, nLocal: 2, patchSize: 8, seed: 3 });
    const counts: number[] = [];
    const losses: number[] = [];
    for (let i = 0; i < 3; i++) {
      const batch = data.batch(i);
      const before = hostSyncs();
      const m = trainIteration(t.model, t.optimizer, batch, { iteration: i, values: scheduleValues(t.schedules, i), clipGrad: cfg.optim.clip_grad });
      counts.push(hostSyncs() - before);
      losses.push(m.total_loss);
      expect(Object.keys(m.grad_norms).sort()).toEqual(['backbone', 'dino_head', 'ibot_head']);
      disposeBatch(batch);
    }
    expect(counts).toEqual([1, 1, 1]);
    for (const l of losses) expect(Number.isFinite(l)).toBe(true);
    t.dispose();
  });
});
