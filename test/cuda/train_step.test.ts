// The SSL training iteration on CUDA (runs only on a CUDA build with a visible GPU; scripts/gpu/check.sh runs it):
// - it waits for the device once, to read its metrics: hostSyncs and libtorch's own sync debug mode agree, also when
//   Trainer.step moves a host batch to the device;
// - the fast path (bf16 compute over fp32 masters, flash attention, fused kernels) follows the plain float32 path
//   (plain ATen kernels) within bf16 tolerance over 20 iterations.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, test } from 'vitest';

import { addonInfo, cuda, hostSyncs, manualSeed } from '../../src/index.js';
import { native } from '../../src/native/binding.js';
import { withPlainKernels } from '../../src/ops/kernels.js';
import { batchTensors, DevicePrefetcher, disposeBatch } from '../../src/data/batch.js';
import { loadSSLConfig } from '../../src/train/config.js';
import { MultiDistiller } from '../../src/train/multidist_meta_arch.js';
import { SyntheticBatches } from '../../src/train/synthetic.js';
import { scheduleValues, trainIteration } from '../../src/train/train.js';
import { Trainer } from '../../src/train/trainer.js';
import { tinyOverrides } from '../unit/train/tiny.js';

const onGpu = addonInfo.cudaCompiled && cuda.isAvailable();

// 20 schedule positions (5 epochs of 4); KoLeo left out as in the CPU mixed-precision test (at init its distances are
// differences of nearly equal numbers, which bf16 rounding decides); no drop path, so both runs draw the same masks.
const TINY_CUDA = [...tinyOverrides({ dropPath: 0 }), 'optim.epochs=5', 'dino.koleo_loss_weight=0'];

// The official ViT-L's random parts (drop path 0.3 and RoPE rescaling by up to 2): drawn on the host, moved without a wait.
const RANDOM_PARTS = ['student.drop_path_rate=0.3', 'student.pos_embed_rope_rescale_coords=2'];

async function trainer(pd: 'fp32' | 'bf16', extra: string[] = []) {
  manualSeed(0);
  const cfg = await loadSSLConfig('ssl_default', [...TINY_CUDA, `compute_precision.param_dtype=${pd}`, ...extra]);
  const t = await Trainer.create(cfg, { device: 'cuda' });
  const data = new SyntheticBatches({ batchSize: 4, globalSize: 32, localSize: 16, nLocal: 2, patchSize: 8, seed: 5, device: 'cuda' });
  return { cfg, t, data };
}

describe.runIf(onGpu)('the training iteration on CUDA', () => {
  test('waits for the device once (the metrics read), with drop path and RoPE rescaling: hostSyncs and libtorch sync debug warnings agree', async () => {
    const { cfg, t, data } = await trainer('bf16', RANDOM_PARTS);
    const step = (i: number) => {
      const batch = data.batch(i);
      const before = hostSyncs();
      trainIteration(t.model, t.optimizer, batch, { iteration: i, values: scheduleValues(t.schedules, i), clipGrad: cfg.optim.clip_grad });
      const n = hostSyncs() - before;
      disposeBatch(batch);
      return n;
    };
    step(0); // first iteration: lazy initialisations (cuBLAS handles, the bf16 copy) are not part of the count
    const warnings: string[] = [];
    const listen = (w: Error) => {
      if (w.name === 'TorchWarning') warnings.push(w.message);
    };
    process.on('warning', listen);
    let counted: number;
    try {
      const batch = data.batch(1); // uploaded before the step, outside what is counted
      const before = hostSyncs();
      cuda.withSyncDebugMode('warn', () =>
        trainIteration(t.model, t.optimizer, batch, { iteration: 1, values: scheduleValues(t.schedules, 1), clipGrad: cfg.optim.clip_grad }),
      );
      counted = hostSyncs() - before;
      disposeBatch(batch);
      await new Promise((r) => setImmediate(r)); // process.emitWarning delivers on a later tick
    } finally {
      process.off('warning', listen);
    }
    expect(counted).toBe(1);
    expect(warnings.filter((m) => /synchroniz/i.test(m))).toHaveLength(1);
    t.dispose();
  });

  test('Trainer.step takes host batches: pinned non-blocking copies, still one wait per iteration', async () => {
    manualSeed(0);
    const cfg = await loadSSLConfig('ssl_default', [...TINY_CUDA, 'compute_precision.param_dtype=bf16']);
    const t = await Trainer.create(cfg, { device: 'cuda' });
    const host = new SyntheticBatches({ batchSize: 4, globalSize: 32, localSize: 16, nLocal: 2, patchSize: 8, seed: 9 });
    const counts: number[] = [];
    for (let i = 0; i < 3; i++) {
      const batch = host.batch(i);
      const before = hostSyncs();
      const m = t.step(batch);
      counts.push(hostSyncs() - before);
      expect(Number.isFinite(m.total_loss)).toBe(true);
      expect(batch.collated_global_crops.device).toBe('cpu'); // the caller's batch is left as it was
      disposeBatch(batch);
    }
    expect(counts.slice(1)).toEqual([1, 1]);
    t.dispose();
  });

  test('Trainer.fit stages each host batch one step ahead on a copy stream: the same metrics as stepping with copies on the step stream', async () => {
    const run = async (mode: 'fit' | 'step') => {
      manualSeed(0);
      const cfg = await loadSSLConfig('ssl_default', [...TINY_CUDA, 'compute_precision.param_dtype=bf16']);
      const host = new SyntheticBatches({ batchSize: 4, globalSize: 32, localSize: 16, nLocal: 2, patchSize: 8, seed: 9 });
      const batches = [0, 1, 2, 3, 4].map((i) => host.batch(i));
      const metrics: number[][] = [];
      const onMetrics = (m: { total_loss: number; grad_norms: Record<string, number> }) => metrics.push([m.total_loss, ...Object.values(m.grad_norms)]);
      // fit disposes the batches it is given; the step loop disposes its own.
      const t = await Trainer.create(cfg, { device: 'cuda', data: batches, maxIterations: 5, onMetrics });
      if (mode === 'fit') await t.fit();
      else
        for (const b of batches) {
          t.step(b);
          disposeBatch(b);
        }
      t.dispose();
      return metrics;
    };
    const syncs0 = hostSyncs();
    const fitted = await run('fit');
    const fitSyncs = hostSyncs() - syncs0;
    const stepped = await run('step');
    expect(fitted).toHaveLength(5);
    expect(fitted).toEqual(stepped); // same kernels on the same data: the same bits
    expect(fitSyncs).toBeLessThan(5 + 20); // one read per iteration, and the setup's few
  });

  test('MultiDistiller on CUDA: host batches go to the device once for the teacher and the students; fit prefetches', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dinov3-cuda-distill-'));
    try {
      manualSeed(0);
      const cfg = await loadSSLConfig('ssl_default', TINY_CUDA);
      const host = () => new SyntheticBatches({ batchSize: 4, globalSize: 32, localSize: 16, nLocal: 2, patchSize: 8, seed: 4 });
      const teacher = await Trainer.create(cfg, { data: host(), outDir: dir, maxIterations: 1 }); // on the CPU
      await teacher.fit();
      teacher.dispose();
      const seen: number[] = [];
      const d = await MultiDistiller.create({ cfg, checkpoint: dir }, [{ name: 's', cfg }], {
        data: host(),
        device: 'cuda',
        maxIterations: 3,
        onMetrics: (_, m) => seen.push(m.total_loss),
      });
      const batch = host().batch(7);
      const m = d.step(batch); // a host batch
      expect(batch.collated_global_crops.device).toBe('cpu');
      disposeBatch(batch);
      expect(Number.isFinite(m.s!.total_loss)).toBe(true);
      const r = await d.fit();
      expect(r.iterations).toBe(3);
      expect(seen).toHaveLength(3);
      expect(seen.every(Number.isFinite)).toBe(true);
      d.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('train.checkpointing on CUDA: a lower peak of allocated memory, the same losses to bf16 rounding', async () => {
    const run = async (ckpt: boolean) => {
      manualSeed(0);
      const cfg = await loadSSLConfig('ssl_default', [...TINY_CUDA, 'compute_precision.param_dtype=bf16', `train.checkpointing=${ckpt}`]);
      const t = await Trainer.create(cfg, { device: 'cuda' });
      const data = new SyntheticBatches({ batchSize: 16, globalSize: 64, localSize: 32, nLocal: 2, patchSize: 8, seed: 5, device: 'cuda' });
      const losses: number[] = [];
      cuda.synchronize();
      native.cudaPeakMemory(0, true); // reset the peak
      for (let i = 0; i < 3; i++) {
        const b = data.batch(i);
        losses.push(t.step(b).total_loss);
        disposeBatch(b);
      }
      const peak = native.cudaPeakMemory(0);
      t.dispose();
      return { losses, peak };
    };
    const plain = await run(false);
    const ckpt = await run(true);
    expect(ckpt.peak).toBeLessThan(plain.peak);
    ckpt.losses.forEach((l, i) => expect(Math.abs(l - plain.losses[i]!) / plain.losses[i]!, `iteration ${i}`).toBeLessThan(1e-2));
  });

  test('DevicePrefetcher: staging queues the copies without waiting; take orders them before the step', () => {
    const host = new SyntheticBatches({ batchSize: 4, globalSize: 32, localSize: 16, nLocal: 2, patchSize: 8, seed: 3 }).batch(0);
    const p = new DevicePrefetcher('cuda');
    const before = hostSyncs();
    const staged = p.stage(host);
    expect(hostSyncs() - before).toBe(0);
    const b = p.take(staged);
    expect(batchTensors(b).map((t) => t.device)).toEqual(Array(6).fill('cuda:0'));
    expect(Array.from(b.collated_global_crops.toFloat32Array())).toEqual(Array.from(host.collated_global_crops.toFloat32Array()));
    expect(b.mask_indices_list.toArray()).toEqual(host.mask_indices_list.toArray());
    for (const t of staged.moved) t.dispose();
    disposeBatch(host);
  });

  test('bf16 fast path against the plain float32 path: 20 iterations, losses within 2e-2 (relative) at every step', async () => {
    const losses = async (pd: 'fp32' | 'bf16', plain: boolean) => {
      const { cfg, t, data } = await trainer(pd);
      const out: number[] = [];
      const run = () => {
        for (let i = 0; i < 20; i++) {
          const batch = data.batch(i);
          const m = trainIteration(t.model, t.optimizer, batch, { iteration: i, values: scheduleValues(t.schedules, i), clipGrad: cfg.optim.clip_grad });
          out.push(m.total_loss);
          disposeBatch(batch);
        }
      };
      if (plain) withPlainKernels(run);
      else run();
      t.dispose();
      return out;
    };
    const reference = await losses('fp32', true);
    const fast = await losses('bf16', false);
    expect(reference.every(Number.isFinite)).toBe(true);
    for (let i = 0; i < 20; i++) expect(Math.abs(fast[i]! - reference[i]!) / reference[i]!, `iteration ${i}`).toBeLessThan(2e-2);
    // and the loss moves the same way over the 20 iterations
    expect(Math.sign(fast[19]! - fast[0]!)).toBe(Math.sign(reference[19]! - reference[0]!));
  });
});
