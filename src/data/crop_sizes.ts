// Multi-resolution crop mixes (official `dinov3/train/train.py::build_multi_resolution_data_loader_from_cfg` with
// `dinov3/data/meta_loaders.py::CombinedDataLoader`): `crops.global_crops_size`, `local_crops_size` and
// `gram_teacher_crops_size` may be lists of the same length, one loader per entry, and each iteration draws one entry
// with the probabilities `crops.global_local_crop_pairs_ratios`. The draw here is a pure function of (seed, iteration)
// (a counter-derived stream), so a resumed run draws what the straight run drew; the official combined loader
// instead restarts numpy's default_rng(65537) whenever training (re)starts.
import { ConfigError } from '../native/errors.js';
import { Rng } from './rng.js';

/** The crop keys read here (official names). */
export interface CropsConfig {
  global_crops_size: number | readonly number[];
  local_crops_size: number | readonly number[];
  gram_teacher_crops_size?: number | readonly number[] | null;
  global_local_crop_pairs_ratios?: number | readonly number[];
}

/** The crop sizes of one iteration. */
export interface CropSizes {
  /** Index of the chosen entry of the mix (0 for a single resolution). */
  index: number;
  globalSize: number;
  localSize: number;
  /** Size of the gram teacher's crops, null without a separate gram teacher. */
  gramTeacherSize: number | null;
}

/** Default seed of the draw (the official CombinedDataLoader's). */
export const MULTI_RESOLUTION_SEED = 65537;
const STREAM_KEY = 0x6d72; // "mr": the draw's own stream, independent of the crops' randomness

const list = <T>(v: T | readonly T[]): readonly T[] => (Array.isArray(v) ? (v as readonly T[]) : [v as T]);

/** Every entry of the mix with its probability (ratios normalised as numpy's `choice` requires them to sum to 1). */
export function cropSizeChoices(crops: CropsConfig): (CropSizes & { probability: number })[] {
  if (typeof crops !== 'object' || crops === null)
    throw new ConfigError(`cropSizeChoices: expected the config's crops section, received ${crops === null ? 'null' : typeof crops}`);
  const g = list(crops.global_crops_size);
  const l = list(crops.local_crops_size);
  const gt = crops.gram_teacher_crops_size == null ? [null] : list<number | null>(crops.gram_teacher_crops_size);
  const r = list(crops.global_local_crop_pairs_ratios ?? 1);
  const n = g.length;
  if (l.length !== n || r.length !== n || (gt.length !== n && !(crops.gram_teacher_crops_size == null)))
    throw new ConfigError(
      `crops.global_crops_size (${g.length}), local_crops_size (${l.length}), global_local_crop_pairs_ratios (${r.length}) and gram_teacher_crops_size (${gt.length}) must list as many entries`,
    );
  const sum = r.reduce((a, b) => a + b, 0);
  if (!r.every((x) => x >= 0) || !(sum > 0))
    throw new ConfigError(`crops.global_local_crop_pairs_ratios must be non-negative with a positive sum, got [${r.join(', ')}]`);
  if (n > 1 && Math.abs(sum - 1) > 1e-8) throw new ConfigError(`crops.global_local_crop_pairs_ratios must sum to 1 (numpy choice probabilities), got ${sum}`);
  return g.map((globalSize, i) => ({
    index: i,
    globalSize,
    localSize: l[i]!,
    gramTeacherSize: crops.gram_teacher_crops_size == null ? null : gt[i]!,
    probability: r[i]! / sum,
  }));
}

/**
 * The crop sizes to use at `iteration`: the single entry, or one entry of the mix drawn with the configured ratios
 * (inverse CDF of one uniform draw, as numpy's `Generator.choice(n, p=ratios)`).
 * @example cropSizesForIteration({ global_crops_size: [512, 768], local_crops_size: [112, 168], global_local_crop_pairs_ratios: [0.5, 0.5] }, 17)
 */
export function cropSizesForIteration(crops: CropsConfig, iteration: number, seed = MULTI_RESOLUTION_SEED): CropSizes {
  if (!Number.isSafeInteger(iteration) || iteration < 0)
    throw new ConfigError(
      `cropSizesForIteration: iteration must be a non-negative integer, got ${typeof iteration === 'number' ? iteration : typeof iteration}`,
    );
  const choices = cropSizeChoices(crops);
  const strip = (c: CropSizes & { probability: number }): CropSizes => ({
    index: c.index,
    globalSize: c.globalSize,
    localSize: c.localSize,
    gramTeacherSize: c.gramTeacherSize,
  });
  if (choices.length === 1) return strip(choices[0]!);
  const u = Rng.derive(seed, STREAM_KEY, iteration).random();
  let acc = 0;
  for (const c of choices) {
    acc += c.probability;
    if (u < acc) return strip(c);
  }
  return strip(choices[choices.length - 1]!);
}
