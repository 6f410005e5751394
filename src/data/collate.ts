// Collation of multi-crop samples into the trainer's batch, with the iBOT masks: implements
// `dinov3/data/collate.py::collate_data_and_cast`. Crops are stacked crop-major (all first crops, then all second…);
// `int(G·B·mask_probability)` global crops get a block mask whose target ratio steps along linspace(min, max, n + 1)
// (entries 1..n), the others none, and the list of masks is shuffled across the crops. All draws come from an Rng.
import { ConfigError } from '../native/errors.js';
import { tensor } from '../tensor/creation.js';
import { expectArray, expectInt, expectMethods, expectNumber, expectObject } from '../tensor/args.js';
import type { DType } from '../tensor/tensor.js';
import type { CollatedBatch } from './batch.js';
import type { MaskingGenerator } from './masking.js';
import type { Rng } from './rng.js';

/** What the augmentation produces per image: normalised float32 CHW crops (square unless sizes are given). */
export interface CollateSample {
  global: Float32Array[];
  local: Float32Array[];
  gramTeacher?: Float32Array[];
  /** Label of the image (kept in the batch as `labels` when every sample has one). */
  label?: number;
}

export interface CollateOptions {
  /** Number of patch tokens per global crop (N), = maskGenerator's grid size. */
  nTokens?: number;
  maskGenerator: MaskingGenerator;
  /** Range of masking ratios (official `ibot.mask_ratio_min_max`, default [0.1, 0.5]). */
  maskRatioMinMax?: readonly [number, number];
  /** Share of the global crops that get a mask (official `ibot.mask_sample_probability`, default 0.5). */
  maskProbability?: number;
  /** Dtype of the crops (official `compute_precision.param_dtype`): float32 (default), bfloat16 or float16. */
  dtype?: Extract<DType, 'float32' | 'bfloat16' | 'float16'>;
  /** Roll each mask by a random offset (official `random_circular_shift`, default false). */
  randomCircularShift?: boolean;
  /** Multi-distillation: masks are made for `G · localBatchSize` crops instead of G·B. */
  localBatchSize?: number;
  /** Global batch size to record in the batch (B × world size). */
  globalBatchSize?: number;
  /**
   * Staging buffers reused from batch to batch (the DataLoader passes its own): filling a reused buffer is ~10×
   * faster than a fresh one, whose pages the OS must first provide. Without it, each batch allocates.
   */
  scratch?: Map<string, Float32Array>;
}

/** torch.linspace(start, end, steps) in float32 (the CPU kernel's two-sided formula). */
export function linspaceF32(start: number, end: number, steps: number): number[] {
  expectNumber('linspaceF32', 'start', start);
  expectNumber('linspaceF32', 'end', end);
  expectInt('linspaceF32', 'steps', steps);
  const f = Math.fround;
  if (steps === 1) return [f(start)];
  const step = f((f(end) - f(start)) / (steps - 1));
  const half = Math.floor(steps / 2);
  return Array.from({ length: steps }, (_, i) => (i < half ? f(f(start) + f(step * i)) : f(f(end) - f(step * (steps - i - 1)))));
}

/** The per-mask targets of the collate: `int(N · r[k + 1])` for k < n, r = linspace(min, max, n + 1) in float32. */
export function maskTargets(nTokens: number, nMasked: number, ratio: readonly [number, number] = [0.1, 0.5]): number[] {
  expectInt('maskTargets', 'nTokens', nTokens);
  expectInt('maskTargets', 'nMasked', nMasked);
  expectArray('maskTargets', 'ratio', ratio, 'a [min, max] array');
  const r = linspaceF32(ratio[0], ratio[1], nMasked + 1);
  return Array.from({ length: nMasked }, (_, k) => Math.trunc(Math.fround(nTokens * r[k + 1]!)));
}

const side = (len: number, what: string): number => {
  const s = Math.round(Math.sqrt(len / 3));
  if (3 * s * s !== len) throw new ConfigError(`collate: ${what} has ${len} values, not a square 3-channel crop`);
  return s;
};

/** Stacks crop `c` of every sample, crop-major, into one buffer. */
function stackCrops(
  samples: readonly CollateSample[],
  key: 'global' | 'local' | 'gramTeacher',
  n: number,
  scratch?: Map<string, Float32Array>,
): { data: Float32Array; shape: number[] } {
  const first = samples[0]![key]![0];
  if (n === 0 || !first) return { data: new Float32Array(0), shape: [0, 3, 0, 0] };
  const len = first.length;
  const s = side(len, `${key} crop 0 of sample 0`);
  const B = samples.length;
  let data = scratch?.get(key);
  if (data?.length !== n * B * len) {
    data = new Float32Array(n * B * len);
    scratch?.set(key, data);
  }
  for (let c = 0; c < n; c++)
    samples.forEach((smp, b) => {
      const crop = smp[key]?.[c];
      if (!crop) throw new ConfigError(`collate: sample ${b} has ${smp[key]?.length ?? 0} ${key} crops, sample 0 has ${n}`);
      if (crop.length !== len) throw new ConfigError(`collate: ${key} crop ${c} of sample ${b} has ${crop.length} values, crop 0 of sample 0 has ${len}`);
      data.set(crop, (c * B + b) * len);
    });
  return { data, shape: [n * B, 3, s, s] };
}

/**
 * The iBOT masks of a batch: `nCrops` rows of N cells, `int(nCrops·p)` of them masked with targets stepping through
 * the ratio range, shuffled across rows. Also returns `upperbound` (the sum of the targets).
 */
export function collateMasks(
  nCrops: number,
  rng: Rng,
  o: Pick<CollateOptions, 'maskGenerator' | 'maskRatioMinMax' | 'maskProbability' | 'randomCircularShift' | 'nTokens'>,
): { masks: Uint8Array[]; upperbound: number } {
  expectInt('collateMasks', 'nCrops', nCrops);
  expectMethods('collateMasks', 'rng', rng, 'an Rng', ['random', 'randint']);
  expectObject('collateMasks', 'options', o);
  const gen = expectMethods<MaskingGenerator>('collateMasks', 'options.maskGenerator', o.maskGenerator, 'a MaskingGenerator', ['generate']);
  const N = o.nTokens ?? gen.numPatches;
  if (N !== gen.numPatches) throw new ConfigError(`collate: nTokens ${N} differs from the mask generator's ${gen.height}×${gen.width} grid`);
  const p = o.maskProbability ?? 0.5;
  if (!(p >= 0 && p <= 1)) throw new ConfigError(`collate: maskProbability must be in [0, 1], got ${p}`);
  const ratio = o.maskRatioMinMax ?? [0.1, 0.5];
  const nMasked = Math.trunc(nCrops * p);
  const targets = maskTargets(N, nMasked, ratio);
  const masks: Uint8Array[] = [];
  let upperbound = 0;
  for (const t of targets) {
    let m = gen.generate(rng, t);
    if (o.randomCircularShift) {
      // torch.roll(mask, (sx, sy), (0, 1)): cell (i, j) moves to ((i + sx) % H, (j + sy) % W)
      const sx = rng.randint(0, gen.height - 1);
      const sy = rng.randint(0, gen.width - 1);
      const r = new Uint8Array(m.length);
      for (let i = 0; i < gen.height; i++)
        for (let j = 0; j < gen.width; j++) r[((i + sx) % gen.height) * gen.width + ((j + sy) % gen.width)] = m[i * gen.width + j]!;
      m = r;
    }
    masks.push(m);
    upperbound += t;
  }
  for (let i = nMasked; i < nCrops; i++) masks.push(gen.generate(rng, 0));
  // random.shuffle
  for (let i = masks.length - 1; i > 0; i--) {
    const j = Math.floor(rng.random() * (i + 1));
    const t = masks[i]!;
    masks[i] = masks[j]!;
    masks[j] = t;
  }
  return { masks, upperbound };
}

/**
 * Collates multi-crop samples into a CollatedBatch (the caller owns its tensors: `disposeBatch`).
 * @example const batch = collateDataAndCast(samples, { maskGenerator: new MaskingGenerator({ inputSize: 14, maxNumPatches: 98 }) }, rng);
 * @throws ConfigError for an empty list, samples with different crop counts or sizes, or bad mask options.
 */
export function collateDataAndCast(samples: readonly CollateSample[], o: CollateOptions, rng: Rng): CollatedBatch {
  expectArray('collateDataAndCast', 'samples', samples, 'an array of samples');
  if (samples.length === 0) throw new ConfigError('collate: no samples');
  for (const [i, s] of samples.entries()) {
    expectObject('collateDataAndCast', `samples[${i}]`, s);
    expectArray('collateDataAndCast', `samples[${i}].global`, s.global, 'an array of crops');
    expectArray('collateDataAndCast', `samples[${i}].local`, s.local, 'an array of crops');
  }
  expectObject('collateDataAndCast', 'options', o);
  const s0 = samples[0]!;
  const nG = s0.global.length;
  const nL = s0.local.length;
  const B = samples.length;
  const dtype = o.dtype ?? 'float32';
  const g = stackCrops(samples, 'global', nG, o.scratch);
  const l = stackCrops(samples, 'local', nL, o.scratch);
  const gram = s0.gramTeacher ? stackCrops(samples, 'gramTeacher', nG, o.scratch) : undefined;

  const nCrops = nG * (o.localBatchSize ?? B);
  const { masks, upperbound } = collateMasks(nCrops, rng, o);
  const N = o.maskGenerator.numPatches;
  const flat = new Uint8Array(nCrops * N);
  masks.forEach((m, i) => flat.set(m, i * N));
  const indices: bigint[] = [];
  const weights: number[] = [];
  for (let i = 0; i < nCrops; i++) {
    let count = 0;
    for (let k = 0; k < N; k++) count += flat[i * N + k]!;
    const w = 1 / Math.max(count, 1);
    for (let k = 0; k < N; k++)
      if (flat[i * N + k]) {
        indices.push(BigInt(i * N + k));
        weights.push(w);
      }
  }
  const made: { dispose(): void }[] = [];
  const crops = (c: { data: Float32Array; shape: number[] }) => {
    const t = tensor(c.data, { shape: c.shape });
    if (dtype === 'float32') return t;
    try {
      return t.to(dtype);
    } finally {
      t.dispose();
    }
  };
  const mk = <T extends { dispose(): void }>(t: T) => (made.push(t), t);
  try {
    const u8 = mk(tensor(flat, { shape: [nCrops, N] }));
    const batch: CollatedBatch = {
      collated_global_crops: mk(crops(g)),
      collated_local_crops: mk(crops(l)),
      collated_masks: mk(u8.to('bool')),
      mask_indices_list: mk(tensor(BigInt64Array.from(indices), { shape: [indices.length] })),
      masks_weight: mk(tensor(Float32Array.from(weights), { shape: [weights.length] })),
      n_masked_patches: mk(tensor(BigInt64Array.of(BigInt(indices.length)), { shape: [1] })),
      upperbound,
    };
    u8.dispose();
    if (gram) batch.collated_gram_teacher_crops = mk(crops(gram));
    if (o.globalBatchSize !== undefined) batch.global_batch_size = o.globalBatchSize;
    if (samples.every((s) => s.label !== undefined))
      batch.labels = mk(
        tensor(
          BigInt64Array.from(samples, (s) => BigInt(s.label!)),
          { shape: [B] },
        ),
      );
    return batch;
  } catch (e) {
    for (const t of made) t.dispose();
    throw e;
  }
}
