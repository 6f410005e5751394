// The training data of a run: `dinov3 train --data <source>` and `train(config, { data })` open a source here.
import type { CollatedBatch } from '../data/batch.js';
import { ConfigError } from '../native/errors.js';
import type { SSLConfig } from './config.js';
import { SyntheticBatches } from './synthetic.js';

export interface TrainingData extends AsyncIterable<CollatedBatch> {
  state?(): unknown;
  setState?(s: unknown): void;
  close?(): Promise<void> | void;
}

export interface OpenDataOptions {
  workers?: number;
  seed?: number;
  onWarning?: (message: string) => void;
}

const first = (v: number | readonly number[]): number => (typeof v === 'number' ? v : v[0]!);

/** Opens a data source for `cfg` (its crops, batch size and masking). "synthetic": random crops (dry runs). */
export async function openTrainingData(source: string, cfg: SSLConfig, o: OpenDataOptions = {}): Promise<TrainingData> {
  if (source === 'synthetic') {
    const s = new SyntheticBatches({
      batchSize: cfg.train.batch_size_per_gpu,
      globalSize: first(cfg.crops.global_crops_size),
      localSize: first(cfg.crops.local_crops_size),
      // a separate gram teacher needs its crops; the sizes of a multi-resolution mix are drawn per iteration
      crops: { ...cfg.crops, gram_teacher_crops_size: cfg.gram.use_loss && !cfg.gram.ema_teacher ? cfg.crops.gram_teacher_crops_size : null },
      nLocal: cfg.crops.local_crops_number,
      patchSize: cfg.student.patch_size,
      maskRatio: cfg.ibot.mask_ratio_min_max as [number, number],
      maskProbability: cfg.ibot.mask_sample_probability,
      seed: o.seed ?? cfg.train.seed,
    });
    return {
      state: () => s.state(),
      setState: (x) => s.setState(x),
      async *[Symbol.asyncIterator]() {
        yield* s;
      },
    };
  }
  throw new ConfigError(`unknown data source "${source}"`);
}
