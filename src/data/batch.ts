// The collated multi-crop batch: what the data pipeline hands the trainer, with the key names of the official
// `dinov3/data/collate.py::collate_data_and_cast` output so a batch saved by either side reads the same.
import { expectDevice, expectObject, expectTensorArg } from '../tensor/args.js';
import { cuda, type CudaEvent, type CudaStream, hostToDevice } from '../tensor/device.js';
import type { Device, Tensor } from '../tensor/tensor.js';

export interface CollatedBatch {
  /** Global crops, crop-major: [n_global_crops · B, 3, H, W] (all first crops, then all second crops). */
  collated_global_crops: Tensor;
  /** Local crops, crop-major: [n_local_crops · B, 3, h, w]. */
  collated_local_crops: Tensor;
  /** Gram-teacher crops (only when `crops.gram_teacher_crops_size` is set), crop-major like the global crops. */
  collated_gram_teacher_crops?: Tensor;
  /** iBOT masks per global crop: bool [n_global_crops · B, n_patches]. */
  collated_masks: Tensor;
  /** Flat indices of the masked patches in `collated_masks.flatten()`: int64 [M]. */
  mask_indices_list: Tensor;
  /** 1 / (masked patches of the crop) for each masked patch: float32 [M]. */
  masks_weight: Tensor;
  /** int64 [1]: M. */
  n_masked_patches: Tensor;
  /** Upper bound on M used to size buffers (`collate_data_and_cast`'s `upperbound`). */
  upperbound: number;
  /** Global batch size (B × world size); B is `collated_global_crops.shape[0] / n_global_crops`. */
  global_batch_size?: number;
  /** Labels, when the dataset has them (unused by SSL, kept for evaluation/debugging): int64 [B]. */
  labels?: Tensor;
}

/** The batch's tensor entries: always present, then present only in some batches. */
const REQUIRED_TENSORS = ['collated_global_crops', 'collated_local_crops', 'collated_masks', 'mask_indices_list', 'masks_weight', 'n_masked_patches'] as const;
const OPTIONAL_TENSORS = ['collated_gram_teacher_crops', 'labels'] as const;

/** Every tensor of a batch, for disposal. */
export function batchTensors(batch: CollatedBatch): Tensor[] {
  expectObject('batchTensors', 'batch', batch);
  return [...REQUIRED_TENSORS.map((k) => batch[k]), ...OPTIONAL_TENSORS.flatMap((k) => (batch[k] ? [batch[k]] : []))];
}

/** Frees a batch's tensors. */
export function disposeBatch(batch: CollatedBatch): void {
  expectObject('disposeBatch', 'batch', batch);
  const ts = batchTensors(batch);
  // Check every entry before disposing any, so that a bad batch is left as it was.
  for (const t of ts) expectTensorArg('disposeBatch', 'batch tensor', t);
  for (const t of ts) t.dispose();
}

const sameDevice = (t: Tensor, device: Device) => t.device === device || (device === 'cuda' && t.device === 'cuda:0');

/**
 * The batch on `device`, for a model there. To CUDA each tensor goes through pinned host memory with a non-blocking
 * copy, queued on the current stream ahead of the step's kernels, so the host never waits for it (libtorch keeps the
 * pinned block until the copy is done). Tensors already on `device` are shared. `moved` lists the tensors made here,
 * which the caller frees after the step; the input batch is left as it is.
 */
export function batchToDevice(batch: CollatedBatch, device: Device): { batch: CollatedBatch; moved: Tensor[] } {
  expectObject('batchToDevice', 'batch', batch);
  const moved: Tensor[] = [];
  for (const t of batchTensors(batch)) expectTensorArg('batchToDevice', 'batch tensor', t);
  const out: CollatedBatch = { ...batch };
  for (const k of [...REQUIRED_TENSORS, ...OPTIONAL_TENSORS]) {
    const t = batch[k];
    if (!t || sameDevice(t, device)) continue;
    const copy = hostToDevice(t, device);
    moved.push(copy);
    out[k] = copy;
  }
  return { batch: out, moved };
}

/** Runs `fn` on `batch` moved to `device` (batchToDevice), then frees the copies made, also when `fn` throws. */
export function withBatchOn<R>(batch: CollatedBatch, device: Device, fn: (b: CollatedBatch) => R): R {
  const { batch: onDevice, moved } = batchToDevice(batch, device);
  try {
    return fn(onDevice);
  } finally {
    for (const t of moved) t.dispose();
  }
}

/** A batch whose move to the device was queued ahead of its step (`DevicePrefetcher.stage`). */
export interface StagedBatch {
  /** The batch on the device: use it after `DevicePrefetcher.take`. */
  readonly batch: CollatedBatch;
  /** The tensors made by the move, which the caller frees after the step (as `batchToDevice`'s). */
  readonly moved: readonly Tensor[];
  /** @internal The copy stream's event after the copies (CUDA only). */
  readonly ready: CudaEvent | null;
}

/**
 * Moves host batches to the training device one step ahead, so that on CUDA the copy of batch i + 1 runs while step i
 * computes (the official loader hands over pinned batches, copied with `non_blocking=True`, but on the step's own
 * stream). `stage(batch)` queues the pinned, non-blocking copies on a copy stream of its own and returns at once;
 * `take(staged)`, just before the step, makes the current stream wait for them on the device (the host does not wait)
 * and tells the caching allocator that the copies are used there, so their memory outlives the step's last use of
 * them. On other devices `stage` is `batchToDevice` and `take` returns its batch.
 * @example
 * const prefetch = new DevicePrefetcher('cuda');
 * let next = prefetch.stage(first);
 * for (...) {
 *   const cur = next;
 *   next = prefetch.stage(hostBatch()); // queued: runs during the step below
 *   step(prefetch.take(cur));
 *   for (const t of cur.moved) t.dispose();
 * }
 */
export class DevicePrefetcher {
  readonly device: Device;
  #stream: CudaStream | null;
  // Events of the copies staged and not yet taken come from here and go back on take (none is left to the GC).
  #events: CudaEvent[] = [];

  constructor(device: Device) {
    this.device = expectDevice('DevicePrefetcher', 'device', device);
    this.#stream = device.startsWith('cuda') ? new cuda.Stream(device.includes(':') ? { device: Number(device.split(':')[1]) } : {}) : null;
  }

  /** Queues the move of `batch` to the device (on CUDA, on the copy stream); the input batch is left as it is. */
  stage(batch: CollatedBatch): StagedBatch {
    const stream = this.#stream;
    if (!stream) return { ...batchToDevice(batch, this.device), ready: null };
    return stream.run(() => {
      const moved = batchToDevice(batch, this.device);
      const ready = (this.#events.pop() ?? new cuda.Event()).record(stream);
      return { ...moved, ready };
    });
  }

  /** The staged batch, ready for work queued from now on on the current stream. */
  take(staged: StagedBatch): CollatedBatch {
    expectObject('DevicePrefetcher.take', 'staged', staged);
    if (staged.ready) {
      const current = cuda.currentStream(this.#stream!.device);
      staged.ready.wait(current);
      for (const t of staged.moved) cuda.recordStream(t, current);
      this.#events.push(staged.ready);
      (staged as { ready: CudaEvent | null }).ready = null; // taken once
    }
    return staged.batch;
  }
}
