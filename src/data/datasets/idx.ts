// IDX files (the MNIST / Fashion-MNIST format; gzip or plain): a big-endian header of magic (0x0000, dtype, ndim),
// ndim u32 sizes, then the data. Images are uint8 [N, rows, cols] served as grey RGB; labels uint8 [N].
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { gunzipSync } from 'node:zlib';

import { DatasetError, TorchRangeError } from '../../native/errors.js';
import { argTypeError, expectInt, expectPath } from '../../tensor/args.js';
import type { Dataset, DatasetSpec, RgbImage, Sample } from './types.js';

/** Where Debian's `dataset-fashion-mnist` package installs the files. */
export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';
export const FASHION_MNIST_CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];

/** A parsed IDX file: its sizes and uint8 data. */
export interface IdxArray {
  dims: number[];
  data: Uint8Array;
}

/**
 * Reads an IDX file of unsigned bytes (gzip-compressed or not).
 * @throws DatasetError if the file cannot be read, is not IDX uint8 with `ndim` dims, or is truncated.
 */
export function readIdx(path: string, ndim?: number): IdxArray {
  expectPath('readIdx', 'path', path);
  if (ndim !== undefined) expectInt('readIdx', 'ndim', ndim);
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (e) {
    throw new DatasetError(`cannot read IDX file "${path}": ${(e as Error).message}`);
  }
  try {
    if (buf[0] === 0x1f && buf[1] === 0x8b) buf = gunzipSync(buf);
  } catch (e) {
    throw new DatasetError(`IDX file "${path}": bad gzip data (${(e as Error).message})`);
  }
  if (buf.length < 4 || buf[0] !== 0 || buf[1] !== 0) throw new DatasetError(`"${path}" is not an IDX file (bad magic number)`);
  if (buf[2] !== 0x08) throw new DatasetError(`IDX file "${path}": data type 0x${buf[2]!.toString(16)} is not unsigned bytes (0x08)`);
  const nd = buf[3]!;
  if (ndim !== undefined && nd !== ndim) throw new DatasetError(`IDX file "${path}" has ${nd} dimensions, expected ${ndim}`);
  const off = 4 + 4 * nd;
  if (buf.length < off) throw new DatasetError(`IDX file "${path}" is truncated (${buf.length} bytes, header needs ${off})`);
  const dims = Array.from({ length: nd }, (_, i) => buf.readUInt32BE(4 + 4 * i));
  const size = dims.reduce((a, b) => a * b, 1);
  if (buf.length < off + size) throw new DatasetError(`IDX file "${path}" is truncated (${buf.length} bytes, need ${off + size})`);
  return { dims, data: new Uint8Array(buf.buffer, buf.byteOffset + off, size) };
}

/** Images (and labels) of IDX files as a Dataset. Pixels live in a SharedArrayBuffer that loader workers share. */
export class IdxDataset implements Dataset {
  readonly length: number;
  readonly rows: number;
  readonly cols: number;
  readonly classes: readonly string[] | undefined;
  readonly labeled: boolean;
  readonly numClasses: number;
  private readonly pixels: Uint8Array;

  private constructor(private readonly s: Extract<DatasetSpec, { kind: 'idx' }>) {
    // Reached from JS only by `new IdxDataset(...)` (the constructor is private in TS): refuse anything but a spec.
    if (typeof s !== 'object' || s === null || s.kind !== 'idx' || !Number.isSafeInteger(s.n))
      throw new DatasetError('IdxDataset: open IDX files with IdxDataset.open(imagesPath, labelsPath) (or openFashionMnist)');
    this.length = s.n;
    this.rows = s.rows;
    this.cols = s.cols;
    this.pixels = new Uint8Array(s.pixels);
    this.classes = s.classes ?? undefined;
    this.labeled = s.labels !== null;
    let max = -1;
    if (s.labels) for (const l of s.labels) if (l > max) max = l;
    this.numClasses = s.labels ? Math.max(max + 1, s.classes?.length ?? 0) : 0;
  }

  /**
   * Opens an images file ([N, rows, cols]) and optionally a labels file ([N]).
   * @example const train = IdxDataset.open('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz');
   * @throws DatasetError for unreadable or malformed files, or a label count that differs from the image count.
   */
  static open(imagesPath: string, labelsPath?: string, o: { classes?: readonly string[] } = {}): IdxDataset {
    const img = readIdx(imagesPath, 3);
    const [n, rows, cols] = img.dims as [number, number, number];
    const pixels = new SharedArrayBuffer(img.data.length);
    new Uint8Array(pixels).set(img.data);
    let labels: Int32Array | null = null;
    if (labelsPath !== undefined) {
      const lab = readIdx(labelsPath, 1);
      if (lab.dims[0] !== n) throw new DatasetError(`IDX files "${imagesPath}" and "${labelsPath}": ${n} images but ${lab.dims[0]} labels`);
      labels = Int32Array.from(lab.data);
    }
    return new IdxDataset({ kind: 'idx', name: basename(imagesPath), pixels, n, rows, cols, labels, classes: o.classes ? [...o.classes] : null });
  }

  /** Rebuilds a dataset from its spec (in a worker thread). */
  static fromSpec(spec: Extract<DatasetSpec, { kind: 'idx' }>): IdxDataset {
    return new IdxDataset(spec);
  }

  /** The raw grey pixels of all images, [N, rows, cols] (shared, do not modify). */
  get images(): Uint8Array {
    return this.pixels;
  }

  /** The labels as an Int32Array (undefined when unlabeled). */
  get labels(): Int32Array | undefined {
    return this.s.labels ?? undefined;
  }

  private check(index: number): void {
    if (!Number.isInteger(index) || index < 0 || index >= this.length)
      throw new TorchRangeError(`IdxDataset: index ${index} is out of range [0, ${this.length})`, 'ERR_INVALID_ARG');
  }

  get(index: number): Promise<Sample> {
    this.check(index);
    const plane = this.rows * this.cols;
    const grey = this.pixels.subarray(index * plane, (index + 1) * plane);
    const data = new Uint8Array(plane * 3);
    for (let i = 0; i < plane; i++) {
      const v = grey[i]!;
      data[3 * i] = v;
      data[3 * i + 1] = v;
      data[3 * i + 2] = v;
    }
    const image: RgbImage = { data, width: this.cols, height: this.rows };
    return Promise.resolve({ image, label: this.labelOf(index), name: this.nameOf(index), index });
  }

  labelOf(index: number): number | undefined {
    return this.s.labels?.[index];
  }

  nameOf(index: number): string {
    return `idx:${this.s.name}[${index}]`;
  }

  spec(): DatasetSpec {
    return this.s;
  }
}

/**
 * One split of Fashion-MNIST (Debian's `dataset-fashion-mnist`: `apt-get install dataset-fashion-mnist`), labeled with
 * its 10 class names.
 * @throws DatasetError if the files are missing (the message says how to install them).
 */
export function openFashionMnist(split: 'train' | 't10k', dir = FASHION_MNIST_DIR): IdxDataset {
  if (split !== 'train' && split !== 't10k') throw argTypeError('openFashionMnist', 'split', '"train" or "t10k"', split);
  expectPath('openFashionMnist', 'dir', dir);
  try {
    return IdxDataset.open(join(dir, `${split}-images-idx3-ubyte.gz`), join(dir, `${split}-labels-idx1-ubyte.gz`), { classes: FASHION_MNIST_CLASSES });
  } catch (e) {
    if (e instanceof DatasetError && e.message.startsWith('cannot read'))
      throw new DatasetError(`${e.message}. Install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or pass its folder.`);
    throw e;
  }
}
