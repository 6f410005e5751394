// The dataset interface shared by the image folder, list file, IDX and in-memory datasets: random access by index,
// a known length, optional integer labels (with class names when they come from names), and a structured-cloneable
// description (`spec`) from which a loader worker thread rebuilds the same dataset.
import { type ImageError, TorchTypeError } from '../../native/errors.js';

/** Interleaved 8-bit RGB pixels, `height × width × 3` bytes (HWC). */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

/** One decoded sample. */
export interface Sample {
  image: RgbImage;
  /** Class index (undefined for an unlabeled dataset). */
  label: number | undefined;
  /** The file it came from, or a name such as `idx:train-images-idx3-ubyte.gz[17]`. */
  name: string;
  index: number;
}

/** A description of a dataset that survives `postMessage` (structured clone), used to rebuild it in a worker. */
export type DatasetSpec =
  | { kind: 'files'; paths: string[]; labels: Int32Array | null; classes: string[] | null }
  | { kind: 'idx'; name: string; pixels: SharedArrayBuffer; n: number; rows: number; cols: number; labels: Int32Array | null; classes: string[] | null };

export interface Dataset {
  /** Number of samples. */
  readonly length: number;
  /** Class names, when the labels come from names (folder or list-file classes, or given). */
  readonly classes: readonly string[] | undefined;
  /** Whether every sample has a label. */
  readonly labeled: boolean;
  /** Number of classes (max label + 1, or the class names' count); 0 when unlabeled. */
  readonly numClasses: number;
  /** Decodes sample `index`. @throws ImageError (with the path) for an unreadable or corrupt image. */
  get(index: number): Promise<Sample>;
  /** The label of sample `index` without decoding it. */
  labelOf(index: number): number | undefined;
  /** The file or name of sample `index` (for error reports). */
  nameOf(index: number): string;
  /** A cloneable description to rebuild the dataset in a worker thread; undefined when it cannot be rebuilt. */
  spec(): DatasetSpec | undefined;
}

/** A sample that could not be read, with the reason. */
export interface SkippedSample {
  index: number;
  name: string;
  message: string;
}

export const skippedOf = (index: number, name: string, e: ImageError | Error): SkippedSample => {
  if (!(e instanceof Error)) throw new TorchTypeError(`skippedOf: expected "e" to be an Error, received ${e === null ? 'null' : typeof e}`, 'ERR_INVALID_ARG');
  return { index, name, message: e.message };
};
