// batchToDevice and DevicePrefetcher (src/data/batch.ts), and the lookahead of runBatches (src/train/trainer.ts): a
// host batch for a model on another device. On this CPU build the CUDA path (pinned, non-blocking, on a copy stream)
// runs in test/cuda/train_step.test.ts; here, the same moves to the meta device.
import { describe, expect, test } from 'vitest';

import { batchTensors, batchToDevice, type CollatedBatch, DevicePrefetcher, disposeBatch, type StagedBatch } from '../../../src/data/batch.js';
import { memory } from '../../../src/tensor/scope.js';
import { SyntheticBatches } from '../../../src/train/synthetic.js';
import { runBatches } from '../../../src/train/trainer.js';

const source = () => new SyntheticBatches({ batchSize: 2, globalSize: 32, localSize: 16, nLocal: 2, patchSize: 8, seed: 1 });

describe('batchToDevice', () => {
  test('to the device the tensors are on: the same tensors, nothing made', () => {
    const b = source().batch(0);
    const r = batchToDevice(b, 'cpu');
    expect(r.moved).toEqual([]);
    expect(batchTensors(r.batch)).toEqual(batchTensors(b));
    expect(r.batch.upperbound).toBe(b.upperbound);
    disposeBatch(b);
  });

  test('to another device: every tensor moved with its shape and dtype, the input kept, the copies listed for disposal', () => {
    const before = memory().liveTensors;
    const b = source().batch(0);
    const r = batchToDevice(b, 'meta');
    expect(r.moved).toHaveLength(6);
    const [src, dst] = [batchTensors(b), batchTensors(r.batch)];
    dst.forEach((t, i) => {
      expect(t.device).toBe('meta');
      expect([t.shape, t.dtype]).toEqual([src[i]!.shape, src[i]!.dtype]);
      expect(src[i]!.device).toBe('cpu');
    });
    expect(new Set(r.moved)).toEqual(new Set(dst));
    expect('labels' in r.batch).toBe(false);
    expect(r.batch.upperbound).toBe(b.upperbound);
    for (const t of r.moved) t.dispose();
    disposeBatch(b);
    expect(memory().liveTensors).toBe(before);
  });

  test('a batch with a non-tensor entry is refused before anything is copied', () => {
    const b = source().batch(0);
    const bad = { ...b, masks_weight: 3 as unknown as typeof b.masks_weight };
    const before = memory().liveTensors;
    expect(() => batchToDevice(bad, 'meta')).toThrow(/batchToDevice: expected "batch tensor" to be a Tensor/);
    expect(memory().liveTensors).toBe(before);
    disposeBatch(b);
  });
});

describe('DevicePrefetcher', () => {
  test('off CUDA: stage is batchToDevice, take hands its batch over', () => {
    const before = memory().liveTensors;
    const b = source().batch(0);
    const p = new DevicePrefetcher('meta');
    const staged = p.stage(b);
    expect(staged.moved).toHaveLength(6);
    const got = p.take(staged);
    expect(got).toBe(staged.batch);
    expect(batchTensors(got).map((t) => t.device)).toEqual(Array(6).fill('meta'));
    for (const t of staged.moved) t.dispose();
    const same = new DevicePrefetcher('cpu').stage(b);
    expect([same.moved, batchTensors(same.batch)]).toEqual([[], batchTensors(b)]);
    disposeBatch(b);
    expect(memory().liveTensors).toBe(before);
  });

  test('what is not a device is refused', () => {
    const msg = (x: string) => `DevicePrefetcher: expected "device" to be "cpu", "cuda", "cuda:<index>" or "meta", received ${x}`;
    expect(() => new DevicePrefetcher(0 as unknown as 'cpu')).toThrow(msg('number 0'));
    expect(() => new DevicePrefetcher('gpu' as 'cpu')).toThrow(msg('string "gpu"'));
  });
});

// A prefetcher that logs what runBatches asks of it (staging moves nothing: the batch is its own device batch).
function recorder() {
  const log: string[] = [];
  const id = new Map<CollatedBatch, number>();
  const prefetch = {
    stage(b: CollatedBatch): StagedBatch {
      log.push(`stage ${id.get(b)}`);
      return { batch: b, moved: [], ready: null };
    },
    take(s: StagedBatch): CollatedBatch {
      log.push(`take ${id.get(s.batch)}`);
      return s.batch;
    },
  };
  const batches = (n: number, failAt = -1) =>
    (async function* () {
      for (let i = 0; i < n; i++) {
        if (i === failAt) throw new Error(`batch ${i} is unreadable`);
        log.push(`pull ${i}`);
        const b = source().batch(i);
        id.set(b, i);
        yield b;
      }
    })();
  return { log, id, prefetch, batches };
}

describe('runBatches with a prefetcher', () => {
  test('batch i + 1 is pulled and staged before step i runs, except before the last step', async () => {
    const before = memory().liveTensors;
    const r = recorder();
    let it = 0;
    const stopped = await runBatches(r.batches(10), {
      more: () => it < 3,
      moreAfterStep: () => it + 1 < 3,
      prefetch: r.prefetch,
      step: (b) => {
        r.log.push(`step ${r.id.get(b)}`);
        it++;
      },
    });
    expect(stopped).toBe('end');
    expect(r.log).toEqual(['pull 0', 'stage 0', 'pull 1', 'stage 1', 'take 0', 'step 0', 'pull 2', 'stage 2', 'take 1', 'step 1', 'take 2', 'step 2']);
    expect(memory().liveTensors).toBe(before); // every host batch freed, the last one included
  });

  test('the end of the data found ahead ends the loop after the batch in hand; an abort frees the batch ahead', async () => {
    const before = memory().liveTensors;
    let it = 0;
    const r = recorder();
    expect(await runBatches(r.batches(2), { more: () => true, moreAfterStep: () => true, prefetch: r.prefetch, step: () => void it++ })).toBe('data');
    expect(it).toBe(2);
    const a = recorder();
    it = 0;
    const stopped = await runBatches(a.batches(5), {
      more: () => true,
      moreAfterStep: () => true,
      prefetch: a.prefetch,
      stop: () => it === 1,
      step: () => void it++,
    });
    expect(stopped).toBe('abort');
    expect(a.log).toEqual(['pull 0', 'stage 0', 'pull 1', 'stage 1', 'take 0']);
    expect(memory().liveTensors).toBe(before);
  });

  test('a batch that fails to load ahead fails where it is due: the step before it still runs', async () => {
    const before = memory().liveTensors;
    const r = recorder();
    const steps: number[] = [];
    await expect(
      runBatches(r.batches(5, 2), { more: () => true, moreAfterStep: () => true, prefetch: r.prefetch, step: (b) => void steps.push(r.id.get(b)!) }),
    ).rejects.toThrow('batch 2 is unreadable');
    expect(steps).toEqual([0, 1]);
    expect(memory().liveTensors).toBe(before);
  });

  test('a batch that fails to stage is freed and the error thrown', async () => {
    const before = memory().liveTensors;
    const r = recorder();
    const prefetch = {
      ...r.prefetch,
      stage: (b: CollatedBatch) => {
        if (r.id.get(b) === 1) throw new Error('no device memory');
        return r.prefetch.stage(b);
      },
    };
    const steps: number[] = [];
    await expect(
      runBatches(r.batches(5), { more: () => true, moreAfterStep: () => true, prefetch, step: (b) => void steps.push(r.id.get(b)!) }),
    ).rejects.toThrow('no device memory');
    expect(steps).toEqual([0]); // staged ahead during step 0; the error surfaces where batch 1 is due
    expect(memory().liveTensors).toBe(before);
  });
});
