// Synthetic collated batches: random crops and iBOT masks with the shapes and mask statistics of the official collate
// (`dinov3/data/collate.py::collate_data_and_cast`: half of the global crops masked, ratios spread linearly over
// `ibot.mask_ratio_min_max`), a pure function of (seed, iteration). For benchmarks, tests and dry runs; resumable.
// With `gramTeacherSize`, each batch also carries `collated_gram_teacher_crops` (2·B crops at that size, as the
// official collate stacks the samples' "gram_teacher_crops"); with `crops` a multi-resolution mix, the sizes of each
// iteration are drawn by `cropSizesForIteration` (official build_multi_resolution_data_loader_from_cfg).
import type { CollatedBatch } from '../data/batch.js';
import { maskTargets } from '../data/collate.js';
import { cropSizesForIteration, type CropSizes, type CropsConfig } from '../data/crop_sizes.js';
import { Rng } from '../data/rng.js';
import { ConfigError, TorchRangeError, TorchTypeError } from '../native/errors.js';
import { expectObject, expectPositiveInt } from '../tensor/args.js';
import { tensor } from '../tensor/creation.js';
import { indexSelect } from '../ops/index.js';
import { scope } from '../tensor/scope.js';
import { type Device, describe, Tensor } from '../tensor/tensor.js';

export interface SyntheticBatchOptions {
  batchSize: number;
  globalSize: number;
  localSize: number;
  nLocal: number;
  patchSize: number;
  maskRatio?: readonly [number, number];
  maskProbability?: number;
  seed?: number;
  device?: Device;
  /** Size of the gram teacher's crops (a separate gram teacher); omitted/null: no gram crops. */
  gramTeacherSize?: number | null;
  /** A crop-size mix (the config's `crops` section): overrides globalSize/localSize/gramTeacherSize per iteration. */
  crops?: CropsConfig;
  /** Seed of the resolution draw (default the official 65537). */
  cropSeed?: number;
  /**
   * Data-parallel: this rank's part of a global batch of `batchSize × worldSize` images (the same global batches
   * whatever the world size; see `rankSlice`). Default rank 0 of 1.
   */
  rank?: number;
  worldSize?: number;
}

function boolMask(bytes: Uint8Array, shape: number[], device?: Device) {
  const u8 = tensor(bytes, { shape, device });
  try {
    return u8.to('bool');
  } finally {
    u8.dispose();
  }
}

/** An endless, seekable stream of synthetic batches (`state()` is the next iteration). */
export class SyntheticBatches implements Iterable<CollatedBatch> {
  #next = 0;
  constructor(readonly o: SyntheticBatchOptions) {
    expectObject('SyntheticBatches', 'options', o);
    if (o.crops == null) expectPositiveInt('SyntheticBatches', 'options.globalSize', o.globalSize);
    else expectObject('SyntheticBatches', 'options.crops', o.crops);
    expectPositiveInt('SyntheticBatches', 'options.patchSize', o.patchSize);
    const sizes = o.crops ? [o.crops.global_crops_size].flat() : [o.globalSize];
    for (const g of sizes) if (g % o.patchSize !== 0) throw new ConfigError(`globalSize ${g} is not a multiple of the patch size ${o.patchSize}`);
  }

  /** The crop sizes of iteration `it`. */
  sizes(it: number): CropSizes {
    const o = this.o;
    if (o.crops) return cropSizesForIteration(o.crops, it, o.cropSeed);
    return { index: 0, globalSize: o.globalSize, localSize: o.localSize, gramTeacherSize: o.gramTeacherSize ?? null };
  }

  /** The batch of iteration `it` (this rank's part of the global batch when `worldSize` > 1). */
  batch(it: number): CollatedBatch {
    const W = this.o.worldSize ?? 1;
    if (W === 1) return this.#global(it, this.o.batchSize);
    const g = this.#global(it, this.o.batchSize * W);
    try {
      return rankSlice(g, this.o.rank ?? 0, W);
    } finally {
      for (const t of batchTensorList(g)) t.dispose();
    }
  }

  #global(it: number, B: number): CollatedBatch {
    const o = this.o;
    const rng = Rng.derive(o.seed ?? 0, it);
    const { globalSize, localSize, gramTeacherSize } = this.sizes(it);
    const N = (globalSize / o.patchSize) ** 2;
    const normal = (n: number) => {
      const a = new Float32Array(n);
      for (let i = 0; i < n; i++) a[i] = rng.normal();
      return a;
    };
    const dev = { device: o.device };
    const global = tensor(normal(2 * B * 3 * globalSize ** 2), { shape: [2 * B, 3, globalSize, globalSize], ...dev });
    const local = tensor(normal(o.nLocal * B * 3 * localSize ** 2), { shape: [o.nLocal * B, 3, localSize, localSize], ...dev }); // [0, …] without local crops
    // As the official collate: int(2B · p) crops get masks, with int(N · linspace(lo, hi, n + 1)[k + 1]) patches each
    // (random patches here, blocks there), on a random choice of crops.
    const nMasked = Math.trunc(2 * B * (o.maskProbability ?? 0.5));
    const targets = maskTargets(N, nMasked, o.maskRatio ?? [0.1, 0.5]);
    const masks = new Uint8Array(2 * B * N);
    const order = rng.permutation(2 * B);
    for (let s = 0; s < nMasked; s++) {
      const row = order[s]!;
      for (const q of rng.permutation(N).slice(0, targets[s]!)) masks[row * N + q] = 1;
    }
    const idx: bigint[] = [];
    const w: number[] = [];
    for (let s = 0; s < 2 * B; s++) {
      let c = 0;
      for (let q = 0; q < N; q++) c += masks[s * N + q]!;
      for (let q = 0; q < N; q++) if (masks[s * N + q]) idx.push(BigInt(s * N + q)), w.push(1 / c);
    }
    const out: CollatedBatch = {
      collated_global_crops: global,
      collated_local_crops: local,
      collated_masks: boolMask(masks, [2 * B, N], o.device),
      mask_indices_list: tensor(BigInt64Array.from(idx), { shape: [idx.length], ...dev }),
      masks_weight: tensor(Float32Array.from(w), { shape: [w.length], ...dev }),
      n_masked_patches: tensor(BigInt64Array.from([BigInt(idx.length)]), { shape: [1], ...dev }),
      upperbound: targets.reduce((a, b) => a + b, 0),
      global_batch_size: B,
    };
    if (gramTeacherSize != null) {
      // drawn last: the other crops and masks do not depend on whether gram crops are made
      out.collated_gram_teacher_crops = tensor(normal(2 * B * 3 * gramTeacherSize ** 2), { shape: [2 * B, 3, gramTeacherSize, gramTeacherSize], ...dev });
    }
    return out;
  }

  state(): number {
    return this.#next;
  }
  setState(s: unknown): void {
    if (typeof s !== 'number' || !Number.isSafeInteger(s) || s < 0) throw new ConfigError(`SyntheticBatches.setState: expected an iteration, got ${String(s)}`);
    this.#next = s;
  }

  *[Symbol.iterator](): Iterator<CollatedBatch> {
    for (;;) yield this.batch(this.#next++);
  }
}

function batchTensorList(b: CollatedBatch) {
  return [
    b.collated_global_crops,
    b.collated_local_crops,
    b.collated_masks,
    b.mask_indices_list,
    b.masks_weight,
    b.n_masked_patches,
    b.collated_gram_teacher_crops,
  ].filter((t): t is NonNullable<typeof t> => t !== undefined);
}

/**
 * Rank `rank`'s part of a collated global batch of B images: images rank·B/W … (rank+1)·B/W of every crop group (the
 * crops are crop-major: [crop 0 of all images, crop 1 of all images, …]), their masks, and the mask indices, weights
 * and count recomputed for the local layout (official `collate_data_and_cast` on the local samples: the weights are
 * per mask row, so they are those of the global batch). `global_batch_size` stays B. New tensors.
 */
export function rankSlice(batch: CollatedBatch, rank: number, worldSize: number): CollatedBatch {
  if (typeof batch !== 'object' || batch === null || !(batch.collated_global_crops instanceof Tensor) || !(batch.collated_local_crops instanceof Tensor))
    throw new TorchTypeError(
      `rankSlice: expected a collated batch (collated_global_crops, collated_local_crops, … tensors), received ${describe(batch)}`,
      'ERR_INVALID_ARG',
    );
  if (!Number.isSafeInteger(rank) || !Number.isSafeInteger(worldSize) || worldSize < 1)
    throw new TorchRangeError(`rankSlice: expected integer rank and worldSize >= 1, received ${String(rank)} and ${String(worldSize)}`, 'ERR_INVALID_ARG');
  const B = batch.collated_global_crops.shape[0]! / 2;
  if (!Number.isInteger(B / worldSize) || !(rank >= 0 && rank < worldSize))
    throw new ConfigError(`rankSlice: a global batch of ${B} images cannot be split into ${worldSize} equal parts (rank ${rank})`);
  const b = B / worldSize;
  const dev = { device: batch.collated_global_crops.device };
  const rows = (nCrops: number) => {
    const r: bigint[] = [];
    for (let c = 0; c < nCrops; c++) for (let j = 0; j < b; j++) r.push(BigInt(c * B + rank * b + j));
    return tensor(BigInt64Array.from(r), { shape: [r.length], ...dev });
  };
  const nLocal = batch.collated_local_crops.shape[0]! / B;
  return scope(() => {
    const g = rows(2);
    const masks = indexSelect(batch.collated_masks, 0, g);
    const N = masks.shape[1]!;
    const bytes = masks.to('uint8').toArray() as number[];
    const idx: bigint[] = [];
    const w: number[] = [];
    for (let s = 0; s < 2 * b; s++) {
      let c = 0;
      for (let q = 0; q < N; q++) c += bytes[s * N + q]!;
      for (let q = 0; q < N; q++) if (bytes[s * N + q]) idx.push(BigInt(s * N + q)), w.push(1 / c);
    }
    const out: CollatedBatch = {
      collated_global_crops: indexSelect(batch.collated_global_crops, 0, g),
      collated_local_crops: indexSelect(batch.collated_local_crops, 0, rows(nLocal)),
      collated_masks: masks,
      mask_indices_list: tensor(BigInt64Array.from(idx), { shape: [idx.length], ...dev }),
      masks_weight: tensor(Float32Array.from(w), { shape: [w.length], ...dev }),
      n_masked_patches: tensor(BigInt64Array.from([BigInt(idx.length)]), { shape: [1], ...dev }),
      upperbound: batch.upperbound,
      global_batch_size: B,
    };
    if (batch.collated_gram_teacher_crops) out.collated_gram_teacher_crops = indexSelect(batch.collated_gram_teacher_crops, 0, g);
    return out;
  });
}
