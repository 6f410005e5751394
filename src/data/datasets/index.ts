// Datasets: image folder, list file, IDX (MNIST / Fashion-MNIST), in-memory/iterable; and opening one from a path.
import { stat } from 'node:fs/promises';

import { DatasetError } from '../../native/errors.js';
import { expectObject, expectPath } from '../../tensor/args.js';
import { FileDataset, openImageFolder, openListFile } from './files.js';
import { IdxDataset } from './idx.js';
import type { Dataset, DatasetSpec } from './types.js';

export * from './types.js';
export * from './idx.js';
export { FileDataset, openImageFolder, openListFile, decodeRgb, type FolderReport } from './files.js';
export * from './memory.js';

/** Rebuilds a dataset from `dataset.spec()` (in a loader worker). */
export function datasetFromSpec(spec: DatasetSpec): Dataset {
  expectObject('datasetFromSpec', 'spec', spec);
  if (spec.kind === 'files') return FileDataset.fromSpec(spec);
  if (spec.kind === 'idx') return IdxDataset.fromSpec(spec);
  throw new DatasetError(`unknown dataset spec kind "${(spec as { kind: string }).kind}"`);
}

/**
 * Opens a dataset named on the command line: a folder (image folder), a `.txt`/`.csv`/`.lst` list file, an IDX images
 * file (`…-images-idx3-ubyte[.gz]`, its labels file found by name), or `idx:<images>[,<labels>]`.
 * @throws DatasetError if the path does not exist or is not a dataset.
 */
export async function openDataset(spec: string): Promise<Dataset> {
  expectPath('openDataset', 'spec', spec);
  if (spec.startsWith('idx:')) {
    const [images, labels] = spec.slice(4).split(',');
    return IdxDataset.open(images!, labels);
  }
  let st: Awaited<ReturnType<typeof stat>>;
  try {
    st = await stat(spec);
  } catch {
    throw new DatasetError(`no such dataset: "${spec}" (expected a folder, a list file or an IDX file)`);
  }
  if (st.isDirectory()) return openImageFolder(spec);
  if (/idx3-ubyte(\.gz)?$/.test(spec)) {
    const labels = spec.replace('images-idx3', 'labels-idx1');
    let hasLabels = false;
    try {
      hasLabels = labels !== spec && (await stat(labels)).isFile();
    } catch {
      hasLabels = false;
    }
    return IdxDataset.open(spec, hasLabels ? labels : undefined);
  }
  return openListFile(spec);
}
