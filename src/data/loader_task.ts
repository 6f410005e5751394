// What one data-loader task does, on a worker thread or on the main thread: read sample `index` of the dataset (or
// take the pixels handed over), derive its random stream from (seed, iteration, rank, position, attempt) and run the
// augmentation. Also: loading a transform from a module path, since functions cannot be sent to a worker.
import { isAbsolute } from 'node:path';
import { pathToFileURL } from 'node:url';

import { ImageError, TorchTypeError } from '../native/errors.js';
import type { Dataset, RgbImage } from './datasets/types.js';
import { Rng } from './rng.js';

/** What an augmentation returns per image: normalised float32 CHW crops. */
export interface MultiCropLike {
  global: Float32Array[];
  local: Float32Array[];
  gramTeacher?: Float32Array[];
}

/** The augmentation, as a function of the decoded image and its random stream. */
export type SampleTransform = (img: RgbImage, rng: Rng) => MultiCropLike | Promise<MultiCropLike>;

/**
 * A transform that worker threads load by module path: `module` exports `export` (default `'default'`), which is
 * either a class (constructed with `options`; its method `method`, default `'apply'`, is the transform), or a factory
 * called with `options` that returns the transform function (or an object with that method).
 * @example { module: new URL('./augmentations.js', import.meta.url).href, export: 'DataAugmentationDINO', options: cfg.crops }
 */
export interface TransformModule {
  module: string;
  export?: string;
  options?: unknown;
  method?: string;
}

/** Imports a TransformModule and returns its transform function. */
export async function loadTransform(spec: TransformModule): Promise<SampleTransform> {
  if (typeof spec !== 'object' || spec === null || typeof spec.module !== 'string' || spec.module === '')
    throw new TorchTypeError('loadTransform: expected { module: <path or URL>, export?, method?, options? } with a non-empty module string', 'ERR_INVALID_ARG');
  const url = spec.module.startsWith('file:') || !isAbsolute(spec.module) ? spec.module : pathToFileURL(spec.module).href;
  const mod = (await import(url)) as Record<string, unknown>;
  const name = spec.export ?? 'default';
  const f = mod[name];
  const method = spec.method ?? 'apply';
  if (typeof f !== 'function') throw new TorchTypeError(`transform module "${spec.module}" has no function or class export "${name}"`, 'ERR_INVALID_ARG');
  const isClass = /^class[\s{]/.test(Function.prototype.toString.call(f));
  const made: unknown = isClass ? new (f as new (o: unknown) => unknown)(spec.options) : await (f as (o: unknown) => unknown)(spec.options);
  if (typeof made === 'function') return made as SampleTransform;
  const m = (made as Record<string, unknown> | null)?.[method];
  if (typeof m !== 'function')
    throw new TorchTypeError(
      `transform module "${spec.module}": "${name}" gave no transform function (nor an object with a "${method}" method)`,
      'ERR_INVALID_ARG',
    );
  return (img, rng) => (m as SampleTransform).call(made, img, rng);
}

/** A unit of work: one sample of one batch. */
export interface SampleTask {
  id: number;
  /** Dataset index (read by the worker when it has the dataset). */
  index: number;
  /** Pixels read on the main thread (datasets that cannot be rebuilt in a worker). */
  image?: RgbImage;
  /** Its label (with `image`). */
  label?: number;
  /** Its name (with `image`). */
  name?: string;
  /** Rng.derive keys: [seed, 0, iteration, rank, position, attempt]. */
  keys: number[];
}

export type SampleResult =
  | { id: number; ok: true; global: Float32Array[]; local: Float32Array[]; gramTeacher?: Float32Array[]; label: number | undefined }
  | { id: number; ok: false; image: boolean; message: string; name: string };

/** Runs one task; an unreadable image or a failing transform becomes an `ok: false` result. */
export async function runTask(ds: Dataset | undefined, transform: SampleTransform, task: SampleTask): Promise<SampleResult> {
  const name = task.name ?? ds?.nameOf(task.index) ?? `item ${task.index}`;
  let img: RgbImage;
  let label: number | undefined;
  try {
    if (task.image) {
      img = task.image;
      label = task.label;
    } else {
      const s = await ds!.get(task.index);
      img = s.image;
      label = s.label;
    }
  } catch (e) {
    const image = e instanceof ImageError;
    return { id: task.id, ok: false, image, message: (e as Error).message ?? String(e), name };
  }
  try {
    const [seed, ...keys] = task.keys;
    const out = await transform(img, Rng.derive(seed!, ...keys));
    return { id: task.id, ok: true, global: out.global, local: out.local, gramTeacher: out.gramTeacher, label };
  } catch (e) {
    return { id: task.id, ok: false, image: false, message: `the transform failed on "${name}": ${(e as Error).message ?? String(e)}`, name };
  }
}

/** The distinct ArrayBuffers of a result's crops (for a transfer list). */
export function resultBuffers(r: SampleResult): ArrayBuffer[] {
  if (!r.ok) return [];
  const set = new Set<ArrayBuffer>();
  for (const a of [...r.global, ...r.local, ...(r.gramTeacher ?? [])]) if (a.buffer instanceof ArrayBuffer) set.add(a.buffer);
  return [...set];
}
