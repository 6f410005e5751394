// Synthetic collated batches: random crops and iBOT masks with the shapes and mask statistics of the official collate
// (`dinov3/data/collate.py::collate_data_and_cast`: half of the global crops masked, ratios spread linearly over
// `ibot.mask_ratio_min_max`), a pure function of (seed, iteration). For benchmarks, tests and dry runs; resumable.
import type { CollatedBatch } from '../data/batch.js';
import { maskTargets } from '../data/collate.js';
import { Rng } from '../data/rng.js';
import { ConfigError } from '../native/errors.js';
import { tensor } from '../tensor/creation.js';
import type { Device } from '../tensor/tensor.js';

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
    if (o.globalSize % o.patchSize !== 0) throw new ConfigError(`globalSize ${o.globalSize} is not a multiple of the patch size ${o.patchSize}`);
  }

  /** The batch of iteration `it`. */
  batch(it: number): CollatedBatch {
    const o = this.o;
    const rng = Rng.derive(o.seed ?? 0, it);
    const B = o.batchSize;
    const N = (o.globalSize / o.patchSize) ** 2;
    const normal = (n: number) => {
      const a = new Float32Array(n);
      for (let i = 0; i < n; i++) a[i] = rng.normal();
      return a;
    };
    const dev = { device: o.device };
    const global = tensor(normal(2 * B * 3 * o.globalSize ** 2), { shape: [2 * B, 3, o.globalSize, o.globalSize], ...dev });
    const local = tensor(normal(o.nLocal * B * 3 * o.localSize ** 2), { shape: [o.nLocal * B, 3, o.localSize, o.localSize], ...dev }); // [0, …] without local crops
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
      for (let q = 0; q < N; q++) if (masks[s * N + q]) (idx.push(BigInt(s * N + q)), w.push(1 / c));
    }
    return {
      collated_global_crops: global,
      collated_local_crops: local,
      collated_masks: boolMask(masks, [2 * B, N], o.device),
      mask_indices_list: tensor(BigInt64Array.from(idx), { shape: [idx.length], ...dev }),
      masks_weight: tensor(Float32Array.from(w), { shape: [w.length], ...dev }),
      n_masked_patches: tensor(BigInt64Array.from([BigInt(idx.length)]), { shape: [1], ...dev }),
      upperbound: targets.reduce((a, b) => a + b, 0),
      global_batch_size: B,
    };
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
