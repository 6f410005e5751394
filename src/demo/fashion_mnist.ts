// Fashion-MNIST for the demo, read with the library's IDX dataset (src/data/datasets/idx.ts): images as uint8
// [N, 28, 28] and labels [N].
import { FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, openFashionMnist } from '../data/datasets/idx.js';

export { FASHION_MNIST_CLASSES, FASHION_MNIST_DIR };

export interface IdxSplit {
  images: Uint8Array; // [n, rows, cols]
  labels: Int32Array; // [n]
  n: number;
  rows: number;
  cols: number;
}

/** Reads one split ('train' or 't10k'). */
export function loadFashionMnist(split: 'train' | 't10k', dir = FASHION_MNIST_DIR): IdxSplit {
  const ds = openFashionMnist(split, dir);
  return { images: ds.images, labels: ds.labels!, n: ds.length, rows: ds.rows, cols: ds.cols };
}
