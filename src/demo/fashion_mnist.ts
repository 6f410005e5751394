// Fashion-MNIST from Debian's `dataset-fashion-mnist` package (IDX files, gzip): images as uint8 [N, 28, 28] and
// labels as uint8 [N]. Used by the demo; any IDX folder works.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';

export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';
export const FASHION_MNIST_CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];

export interface IdxSplit {
  images: Uint8Array; // [n, rows, cols]
  labels: Uint8Array; // [n]
  n: number;
  rows: number;
  cols: number;
}

function readIdx(path: string, expectMagic: number): { dims: number[]; data: Uint8Array } {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (e) {
    throw new Error(
      `cannot read ${path}: ${(e as Error).message}. Install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist).`,
    );
  }
  if (buf[0] === 0x1f && buf[1] === 0x8b) buf = gunzipSync(buf);
  const magic = buf.readUInt32BE(0);
  if (magic !== expectMagic) throw new Error(`${path}: not an IDX file of the expected kind (magic 0x${magic.toString(16)})`);
  const nd = magic & 0xff;
  const dims = Array.from({ length: nd }, (_, i) => buf.readUInt32BE(4 + 4 * i));
  const off = 4 + 4 * nd;
  const size = dims.reduce((a, b) => a * b, 1);
  if (buf.length < off + size) throw new Error(`${path}: truncated (${buf.length} bytes, need ${off + size})`);
  return { dims, data: new Uint8Array(buf.buffer, buf.byteOffset + off, size) };
}

/** Reads one split ('train' or 't10k'). */
export function loadFashionMnist(split: 'train' | 't10k', dir = FASHION_MNIST_DIR): IdxSplit {
  const img = readIdx(join(dir, `${split}-images-idx3-ubyte.gz`), 0x803);
  const lab = readIdx(join(dir, `${split}-labels-idx1-ubyte.gz`), 0x801);
  const [n, rows, cols] = img.dims as [number, number, number];
  if (lab.dims[0] !== n) throw new Error(`${split}: ${n} images but ${lab.dims[0]} labels`);
  return { images: img.data, labels: lab.data, n, rows, cols };
}
