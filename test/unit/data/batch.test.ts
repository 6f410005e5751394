// batchToDevice (src/data/batch.ts): a host batch for a model on another device. On this CPU build the CUDA path
// (pinned, non-blocking) runs in test/cuda/train_step.test.ts; here, the same moves to the meta device.
import { describe, expect, test } from 'vitest';

import { batchTensors, batchToDevice, disposeBatch } from '../../../src/data/batch.js';
import { memory } from '../../../src/tensor/scope.js';
import { SyntheticBatches } from '../../../src/train/synthetic.js';

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
