// The training data of a run: `dinov3 train --data <source>` and `train(config, { data })` open a source here.
import type { CollatedBatch } from '../data/batch.js';
import { openDataset } from '../data/datasets/index.js';
import type { Dataset } from '../data/datasets/types.js';
import { DataLoader } from '../data/loader.js';
import { MaskingGenerator, officialMaxNumPatches } from '../data/masking.js';
import { ConfigError } from '../native/errors.js';
import { expectConfig } from '../tensor/args.js';
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
  /** The first iteration (a resumed run's next one; the Trainer's resume also restores the exact position). */
  startIteration?: number;
  rank?: number;
  worldSize?: number;
  /** Unreadable images: skip (default, reported through onWarning) or fail. */
  onError?: 'skip' | 'fail';
}

// The image loader takes one resolution; a multi-resolution mix (crops.*_size lists) is drawn per iteration by
// `cropSizesForIteration` (src/data/crop_sizes.ts), which a loader can call.
const single = (v: number | readonly number[], what: string): number => {
  if (typeof v === 'number') return v;
  if (v.length === 1 && typeof v[0] === 'number') return v[0];
  throw new ConfigError(`${what}: multi-resolution crop mixes are not supported by the image loader yet (the synthetic source draws them per iteration)`);
};

/**
 * The multi-crop augmentation options of a config (official `SSLMetaArch.build_data_augmentation_dino` arguments):
 * what the loader's workers construct `MultiCropAugmentation` with.
 */
export function augmentationOptions(cfg: SSLConfig): Record<string, unknown> {
  expectConfig('augmentationOptions', 'cfg', cfg, ['crops']);
  const c = cfg.crops;
  return {
    globalCropsScale: c.global_crops_scale,
    localCropsScale: c.local_crops_scale,
    localCropsNumber: c.local_crops_number,
    globalCropsSize: single(c.global_crops_size, 'crops.global_crops_size'),
    localCropsSize: single(c.local_crops_size, 'crops.local_crops_size'),
    gramTeacherCropsSize: c.gram_teacher_crops_size == null ? null : single(c.gram_teacher_crops_size, 'crops.gram_teacher_crops_size'),
    gramTeacherNoDistortions: c.gram_teacher_no_distortions,
    localCropsSubsetOfGlobalCrops: c.localcrops_subset_of_globalcrops,
    shareColorJitter: c.share_color_jitter,
    horizontalFlips: c.horizontal_flips,
    mean: c.rgb_mean,
    std: c.rgb_std,
    patchSize: cfg.student.patch_size,
  };
}

/**
 * A DataLoader for a dataset and a config: the official augmentation in worker threads, block masking and collation
 * as `collate_data_and_cast` (official `train.py::build_data_loader_from_cfg`).
 */
export function trainingLoader(dataset: Dataset, cfg: SSLConfig, o: OpenDataOptions = {}): DataLoader {
  const g = single(cfg.crops.global_crops_size, 'crops.global_crops_size');
  const p = cfg.student.patch_size;
  const grid = Math.floor(g / p);
  return new DataLoader({
    dataset,
    batchSize: cfg.train.batch_size_per_gpu,
    transform: { module: new URL('../data/augmentations.js', import.meta.url).href, export: 'MultiCropAugmentation', options: augmentationOptions(cfg) },
    collate: {
      maskGenerator: new MaskingGenerator({ inputSize: grid, maxNumPatches: officialMaxNumPatches(g, p) }),
      maskRatioMinMax: cfg.ibot.mask_ratio_min_max as [number, number],
      maskProbability: cfg.ibot.mask_sample_probability,
      randomCircularShift: cfg.ibot.mask_random_circular_shift,
      dtype: cfg.compute_precision.param_dtype === 'bf16' && cfg.MODEL.DEVICE.startsWith('cuda') ? 'bfloat16' : 'float32',
      globalBatchSize: cfg.train.batch_size_per_gpu * (o.worldSize ?? 1),
    },
    seed: o.seed ?? cfg.train.seed,
    ...(o.rank === undefined ? {} : { rank: o.rank }),
    ...(o.worldSize === undefined ? {} : { worldSize: o.worldSize }),
    ...(o.workers === undefined ? {} : { workers: o.workers }),
    ...(o.startIteration === undefined ? {} : { startIteration: o.startIteration }),
    onError: o.onError ?? 'skip',
    onSkip: (s) => o.onWarning?.(`skipped ${s.name}: ${s.message}`),
  });
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
      // data-parallel: this rank's images of the global batch
      ...(o.worldSize === undefined ? {} : { rank: o.rank ?? 0, worldSize: o.worldSize }),
    });
    return {
      state: () => s.state(),
      setState: (x) => s.setState(x),
      async *[Symbol.asyncIterator]() {
        yield* s;
      },
    };
  }
  return trainingLoader(await openDataset(source), cfg, o);
}
