// Writes extracted features to disk: one .safetensors file (atomic, via src/io/safetensors.ts) or a folder of .npy
// files. Features are copied into preallocated host buffers as they stream out of extractFeatures, so the peak memory
// is the features themselves (in `featureDtype`) plus one batch of activations.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';

import type { RawTensor } from '../io/raw_tensor.js';
import { atomicWriteFile, writeSafetensorsFile } from '../io/safetensors.js';
import { ImageError } from '../native/errors.js';
import { Tensor } from '../tensor/tensor.js';
import { normalizationStats } from '../data/transforms.js';
import type { FeatureBackbone } from './backbone.js';
import { listImages } from '../data/image_list.js';
import { type ExtractOptions, extractFeatures } from './extract.js';

export type FeatureFileFormat = 'safetensors' | 'npy';
export type FeatureDType = 'float32' | 'float16' | 'bfloat16';

export interface SaveFeaturesOptions extends ExtractOptions {
  /** `safetensors` (default, unless `out` ends in `.npy` or `/`): one file; `npy`: a folder of .npy files + meta.json. */
  format?: FeatureFileFormat;
  /** Stored dtype (default float32; `npy` has no bfloat16). */
  featureDtype?: FeatureDType;
  /** Extra string metadata for the safetensors header / meta.json. */
  metadata?: Record<string, string>;
}

export interface SaveFeaturesResult {
  /** Files written. */
  files: string[];
  /** Tensor names and shapes. */
  tensors: Record<string, number[]>;
  /** Paths of the images whose features were written, in order (entry j ↔ row j / `patches.j`). */
  paths: (string | undefined)[];
  /** Errors of the skipped images (`onError: 'skip'`). */
  skipped: ImageError[];
}

const NPY_DESCR: Partial<Record<FeatureDType, string>> = { float32: '<f4', float16: '<f2' };

/** One tensor's rows, copied into a buffer preallocated for `capacity` rows (or one buffer per row once shapes differ). */
class Rows {
  #shape: number[] | null = null;
  #big: Uint8Array | null = null;
  readonly rows: { shape: number[]; data: Uint8Array }[] = [];
  constructor(readonly capacity: number) {}

  add(t: Tensor, dtype: FeatureDType): void {
    const c = t.to(dtype);
    try {
      const v = c.data();
      const bytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
      const shape = c.shape;
      if (this.#shape === null) {
        this.#shape = shape;
        this.#big = new Uint8Array(bytes.byteLength * this.capacity);
      }
      const same = this.#big !== null && shape.length === this.#shape.length && shape.every((d, i) => d === this.#shape![i]);
      let slot: Uint8Array;
      if (same) {
        slot = this.#big!.subarray(this.rows.length * bytes.byteLength, (this.rows.length + 1) * bytes.byteLength);
      } else {
        this.#big = null; // mixed shapes from here on: rows are stored (and written) one by one
        slot = new Uint8Array(bytes.byteLength);
      }
      slot.set(bytes);
      this.rows.push({ shape, data: slot });
    } finally {
      c.dispose();
    }
  }

  /** True when every row has the same shape (they are then contiguous in one buffer). */
  get uniform(): boolean {
    return this.#big !== null;
  }

  stacked(dtype: FeatureDType): RawTensor {
    const first = this.rows[0]!;
    return { dtype, shape: [this.rows.length, ...first.shape], data: this.#big!.subarray(0, this.rows.length * first.data.byteLength) };
  }
}

function npyFile(raw: RawTensor): Uint8Array[] {
  const descr = NPY_DESCR[raw.dtype as FeatureDType];
  if (!descr) throw new RangeError(`saveFeatures: the npy format cannot store ${raw.dtype}; use featureDtype float32 or float16, or the safetensors format`);
  const shape = raw.shape.length === 1 ? `(${raw.shape[0]},)` : `(${raw.shape.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
  const total = Math.ceil((10 + header.length + 1) / 64) * 64; // magic(6) + version(2) + len(2) + header + \n
  header = header.padEnd(total - 10 - 1, ' ') + '\n';
  const pre = Buffer.alloc(10);
  pre.write('\x93NUMPY', 0, 'latin1');
  pre[6] = 1;
  pre[7] = 0;
  pre.writeUInt16LE(header.length, 8);
  return [pre, Buffer.from(header, 'latin1'), raw.data];
}

function defaultFormat(out: string): FeatureFileFormat {
  return out.endsWith('.npy') || out.endsWith('/') ? 'npy' : 'safetensors';
}

/**
 * Extracts features of every image of `input` (see extractFeatures) and writes them to `out`:
 * - `safetensors`: `cls` `[N, (L,) D]`, `storage` `[N, (L,) R, D]` (when R > 0) and `patches` `[N, (L,) h, w, D]`
 *   (or `patches.<j>` per image when the grids differ), with metadata `paths`, `grids` (JSON), `layers`,
 *   `resolution`, `resize`, `normalization`, `embed_dim`, `patch_size`, `n_storage_tokens`;
 * - `npy`: the folder `out` with `cls.npy`, `storage.npy`, `patches.npy` (or `patches_<j>.npy`) and `meta.json`.
 * Each file is written atomically.
 * @example await saveFeatures(model, 'photos/', 'feats.safetensors', { resolution: 512, onError: 'skip' });
 * @throws ImageError when no image could be processed (or, with `onError: 'fail'`, for the first bad image).
 */
export async function saveFeatures(
  model: FeatureBackbone,
  input: string | readonly string[] | Tensor,
  out: string,
  options: SaveFeaturesOptions = {},
): Promise<SaveFeaturesResult> {
  const format = options.format ?? defaultFormat(out);
  const featureDtype = options.featureDtype ?? 'float32';
  if (format !== 'safetensors' && format !== 'npy') throw new RangeError(`saveFeatures: format must be "safetensors" or "npy", received "${String(format)}"`);
  if (!['float32', 'float16', 'bfloat16'].includes(featureDtype))
    throw new RangeError(`saveFeatures: featureDtype must be float32, float16 or bfloat16, received "${String(featureDtype)}"`);
  if (format === 'npy' && featureDtype === 'bfloat16')
    throw new RangeError('saveFeatures: the npy format cannot store bfloat16; use featureDtype float32 or float16, or the safetensors format');

  const skipped: ImageError[] = [];
  const onSkip = (e: ImageError) => {
    skipped.push(e);
    options.onSkip?.(e);
  };
  // The number of inputs bounds the rows (buffers are preallocated for all of them; skipped ones stay unused).
  const inputs = input instanceof Tensor ? input : await listImages(input);
  const capacity = inputs instanceof Tensor ? (inputs.ndim === 4 ? inputs.shape[0]! : 1) : inputs.length;
  let rows: { cls: Rows; storage: Rows; patches: Rows } | null = null;
  const paths: (string | undefined)[] = [];
  const grids: [number, number][] = [];
  for await (const f of extractFeatures(model, inputs, { ...options, onSkip })) {
    rows ??= { cls: new Rows(capacity), storage: new Rows(capacity), patches: new Rows(capacity) };
    rows.cls.add(f.cls, featureDtype);
    if (model.nStorageTokens > 0) rows.storage.add(f.storage, featureDtype);
    rows.patches.add(f.patches, featureDtype);
    paths.push(f.path);
    grids.push(f.grid);
  }
  if (!rows) throw new ImageError(`no features to write to "${out}": all ${skipped.length} images were skipped`, skipped[0]?.path);

  const tensors = new Map<string, RawTensor>();
  tensors.set('cls', rows.cls.stacked(featureDtype));
  if (model.nStorageTokens > 0) tensors.set('storage', rows.storage.stacked(featureDtype));
  if (rows.patches.uniform) tensors.set('patches', rows.patches.stacked(featureDtype));
  else rows.patches.rows.forEach((r, j) => tensors.set(format === 'npy' ? `patches_${j}` : `patches.${j}`, { dtype: featureDtype, shape: r.shape, data: r.data }));

  const norm = options.normalization ?? 'lvd1689m';
  const meta: Record<string, string> = {
    format: 'pt',
    'dinov3.features': '1',
    paths: JSON.stringify(paths.map((p) => p ?? null)),
    grids: JSON.stringify(grids),
    layers: JSON.stringify(options.layers ?? 'final'),
    resolution: String(options.resolution ?? 256),
    resize: options.resize ?? 'square',
    normalization: typeof norm === 'string' ? norm : JSON.stringify(normalizationStats(norm)),
    embed_dim: String(model.embedDim),
    patch_size: String(model.patchSize),
    n_storage_tokens: String(model.nStorageTokens),
    ...options.metadata,
  };
  const files: string[] = [];
  if (format === 'safetensors') {
    await writeSafetensorsFile(out, tensors, meta);
    files.push(out);
  } else {
    await mkdir(out, { recursive: true });
    for (const [k, raw] of tensors) {
      const file = join(out, `${k}.npy`);
      await atomicWriteFile(file, npyFile(raw));
      files.push(file);
    }
    const metaFile = join(out, 'meta.json');
    const json = { ...meta, paths, grids, layers: options.layers ?? 'final', tensors: Object.fromEntries([...tensors].map(([k, r]) => [k, r.shape])) };
    await atomicWriteFile(metaFile, [Buffer.from(`${JSON.stringify(json, null, 2)}\n`)]);
    files.push(metaFile);
  }
  return { files, tensors: Object.fromEntries([...tensors].map(([k, r]) => [k, r.shape])), paths, skipped };
}
