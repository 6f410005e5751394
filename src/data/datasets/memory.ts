// Datasets from user data: an array, an Iterable or an AsyncIterable of images or `{ image, label }` items. An image
// is decoded RGB (`{ data, width, height }`), encoded bytes (a Uint8Array of jpg/png/… data), or a file path.
// Iterables are read once into memory (encoded bytes stay encoded until a sample is requested).
import { DatasetError, ImageError, TorchRangeError } from '../../native/errors.js';
import { argTypeError, expectArray, expectOptions } from '../../tensor/args.js';
import { decodeImage } from '../image.js';
import { decodeRgb } from './files.js';
import type { Dataset, DatasetSpec, RgbImage, Sample } from './types.js';

export type ImageSource = RgbImage | Uint8Array | string;
export type DatasetItem = ImageSource | { image: ImageSource; label?: number | string };

const isRgb = (v: unknown): v is RgbImage =>
  typeof v === 'object' && v !== null && 'data' in v && 'width' in v && 'height' in v && (v as RgbImage).data instanceof Uint8Array;

const hasImage = (v: unknown): v is { image: ImageSource; label?: number | string } => typeof v === 'object' && v !== null && 'image' in v;

/** An in-memory dataset. */
export class MemoryDataset implements Dataset {
  readonly length: number;
  readonly classes: readonly string[] | undefined;
  readonly labeled: boolean;
  readonly numClasses: number;
  private readonly sources: ImageSource[];
  private readonly labels: Int32Array | null;

  /** @throws DatasetError for an item that is not an image, or labels given for some items only. */
  constructor(items: readonly DatasetItem[], o: { classes?: readonly string[] } = {}) {
    expectArray('MemoryDataset', 'items', items, 'an array of images');
    o = expectOptions('MemoryDataset', 'options', o) ?? {};
    this.sources = [];
    const raw: (number | string | undefined)[] = [];
    items.forEach((it, i) => {
      const src = hasImage(it) ? it.image : it;
      if (!(typeof src === 'string' || src instanceof Uint8Array || isRgb(src)))
        throw new DatasetError(`dataset item ${i} is not an image (expected { data, width, height }, encoded bytes, a path, or { image, label })`);
      if (isRgb(src) && src.data.length !== src.width * src.height * 3)
        throw new DatasetError(
          `dataset item ${i}: ${src.data.length} bytes for a ${src.width}×${src.height} RGB image (expected ${src.width * src.height * 3})`,
        );
      this.sources.push(src);
      raw.push(hasImage(it) ? it.label : undefined);
    });
    this.length = this.sources.length;
    const n = raw.filter((r) => r !== undefined).length;
    let classes = o.classes;
    if (n === 0) this.labels = null;
    else if (n !== raw.length) throw new DatasetError(`dataset item ${raw.indexOf(undefined)} has no label but others do`);
    else if (raw.every((r) => typeof r === 'number')) {
      if (raw.some((r) => !Number.isInteger(r) || (r as number) < 0)) throw new DatasetError('dataset labels must be non-negative integers or class names');
      this.labels = Int32Array.from(raw as number[]);
    } else {
      classes ??= [...new Set(raw.map(String))].sort();
      const index = new Map(classes.map((c, i) => [c, i]));
      this.labels = Int32Array.from(raw, (r) => {
        const k = index.get(String(r));
        if (k === undefined) throw new DatasetError(`dataset label "${String(r)}" is not one of the classes`);
        return k;
      });
    }
    this.classes = classes;
    this.labeled = this.labels !== null;
    let max = -1;
    if (this.labels) for (const l of this.labels) if (l > max) max = l;
    this.numClasses = this.labels ? Math.max(max + 1, classes?.length ?? 0) : 0;
  }

  async get(index: number): Promise<Sample> {
    if (!Number.isInteger(index) || index < 0 || index >= this.length)
      throw new TorchRangeError(`MemoryDataset: index ${index} is out of range [0, ${this.length})`, 'ERR_INVALID_ARG');
    const src = this.sources[index]!;
    const name = this.nameOf(index);
    let image: RgbImage;
    if (typeof src === 'string') image = await decodeRgb(src);
    else if (src instanceof Uint8Array) {
      const im = await decodeImage(src, { resize: 'none', patchSize: 1, name });
      image = { data: im.data, width: im.width, height: im.height };
    } else image = src;
    return { image, label: this.labelOf(index), name, index };
  }

  labelOf(index: number): number | undefined {
    return this.labels?.[index];
  }

  nameOf(index: number): string {
    const s = this.sources[index];
    return typeof s === 'string' ? s : `item ${index}`;
  }

  /** Path-only datasets are rebuilt from their paths; others are decoded on the main thread and shipped as pixels. */
  spec(): DatasetSpec | undefined {
    if (!this.sources.every((s) => typeof s === 'string')) return undefined;
    return { kind: 'files', paths: this.sources as string[], labels: this.labels, classes: this.classes ? [...this.classes] : null };
  }
}

/**
 * A dataset from an array, Iterable or AsyncIterable of images or `{ image, label }` (labels: integers or class
 * names). Iterables are read to the end first.
 * @throws DatasetError for non-image items or partial labels.
 */
export async function datasetFromIterable(
  items: Iterable<DatasetItem> | AsyncIterable<DatasetItem>,
  o: { classes?: readonly string[] } = {},
): Promise<MemoryDataset> {
  if (typeof items !== 'object' || items === null || !(Symbol.asyncIterator in items || Symbol.iterator in items))
    throw argTypeError('datasetFromIterable', 'items', 'an iterable or async iterable of images', items);
  const all: DatasetItem[] = [];
  if (Symbol.asyncIterator in items) for await (const it of items) all.push(it);
  else for (const it of items) all.push(it);
  return new MemoryDataset(all, o);
}

export { ImageError };
