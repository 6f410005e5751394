// Datasets of image files: a folder (recursive; labels from first-level subfolder names when there are any) and a
// list file (`path[,label]` per line). Images are decoded with sharp (src/data/image.ts) at their own size, EXIF
// orientation applied, as 8-bit sRGB; unreadable or corrupt files throw ImageError with their path.
import type { Dirent } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';

import { DatasetError, ImageError, TorchRangeError } from '../../native/errors.js';
import { argTypeError, expectArray, expectPath } from '../../tensor/args.js';
import { decodeImage } from '../image.js';
import { IMAGE_EXTENSIONS } from '../image_list.js';
import type { Dataset, DatasetSpec, Sample } from './types.js';

const isImageFile = (p: string) => IMAGE_EXTENSIONS.some((e) => p.toLowerCase().endsWith(e));

/** Decodes an image file at its own size (no resize) to RGB bytes. @throws ImageError naming the file. */
export async function decodeRgb(path: string): Promise<Sample['image']> {
  const im = await decodeImage(path, { resize: 'none', patchSize: 1 });
  return { data: im.data, width: im.width, height: im.height };
}

/** A list of image files with optional labels. */
export class FileDataset implements Dataset {
  readonly length: number;
  readonly classes: readonly string[] | undefined;
  readonly labeled: boolean;
  readonly numClasses: number;

  constructor(
    readonly paths: readonly string[],
    private readonly labels: Int32Array | null = null,
    classes?: readonly string[],
  ) {
    expectArray('FileDataset', 'paths', paths, 'an array of paths');
    if (labels !== null && !(labels instanceof Int32Array)) throw argTypeError('FileDataset', 'labels', 'an Int32Array or null', labels);
    if (classes !== undefined) expectArray('FileDataset', 'classes', classes, 'an array of class names');
    if (labels && labels.length !== paths.length) throw new DatasetError(`FileDataset: ${paths.length} paths but ${labels.length} labels`);
    this.length = paths.length;
    this.classes = classes;
    this.labeled = labels !== null;
    let max = -1;
    if (labels) for (const l of labels) if (l > max) max = l;
    this.numClasses = labels ? Math.max(max + 1, classes?.length ?? 0) : 0;
  }

  static fromSpec(s: Extract<DatasetSpec, { kind: 'files' }>): FileDataset {
    return new FileDataset(s.paths, s.labels, s.classes ?? undefined);
  }

  async get(index: number): Promise<Sample> {
    if (!Number.isInteger(index) || index < 0 || index >= this.length)
      throw new TorchRangeError(`FileDataset: index ${index} is out of range [0, ${this.length})`, 'ERR_INVALID_ARG');
    const path = this.paths[index]!;
    return { image: await decodeRgb(path), label: this.labelOf(index), name: path, index };
  }

  labelOf(index: number): number | undefined {
    return this.labels?.[index];
  }

  nameOf(index: number): string {
    return this.paths[index] ?? `<index ${index}>`;
  }

  spec(): DatasetSpec {
    return { kind: 'files', paths: [...this.paths], labels: this.labels, classes: this.classes ? [...this.classes] : null };
  }
}

/** What a folder scan found besides the images. */
export interface FolderReport {
  /** Folders that could not be listed (permissions…), with the reason. */
  unreadable: { path: string; message: string }[];
  /** Files without an image extension (not part of the dataset). */
  otherFiles: string[];
  /** Images directly in the root of a labeled folder (not part of the dataset: they have no class). */
  unlabeledFiles: string[];
}

async function walk(dir: string, out: string[], report: FolderReport): Promise<void> {
  let entries: Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (e) {
    report.unreadable.push({ path: dir, message: (e as Error).message });
    return;
  }
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) await walk(p, out, report);
    else if (isImageFile(p)) out.push(p);
    else if (e.isFile()) report.otherFiles.push(p);
  }
}

/**
 * An image folder, searched recursively for image files (jpg, png, webp, tiff, gif, avif). When first-level
 * subfolders hold images, their sorted names are the classes (as torchvision's ImageFolder) and images directly in the
 * root are left out (listed in `report.unlabeledFiles`); otherwise the dataset is unlabeled.
 * @example const ds = await openImageFolder('imagenette/train'); ds.classes // ['n01440764', …]
 * @throws DatasetError if the folder cannot be read or holds no images.
 */
export async function openImageFolder(root: string): Promise<FileDataset & { report: FolderReport }> {
  expectPath('openImageFolder', 'root', root);
  let top: Dirent[];
  try {
    top = await readdir(root, { withFileTypes: true });
  } catch (e) {
    throw new DatasetError(`cannot read image folder "${root}": ${(e as Error).message}`);
  }
  const report: FolderReport = { unreadable: [], otherFiles: [], unlabeledFiles: [] };
  const dirs = top
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
  const rootFiles = top
    .filter((e) => !e.isDirectory())
    .map((e) => join(root, e.name))
    .sort();
  const perClass: { name: string; files: string[] }[] = [];
  for (const d of dirs) {
    const files: string[] = [];
    await walk(join(root, d), files, report);
    if (files.length > 0) perClass.push({ name: d, files });
  }
  let ds: FileDataset;
  if (perClass.length > 0) {
    report.unlabeledFiles.push(...rootFiles.filter(isImageFile));
    report.otherFiles.push(...rootFiles.filter((f) => !isImageFile(f)));
    const paths = perClass.flatMap((c) => c.files);
    const labels = Int32Array.from(perClass.flatMap((c, i) => c.files.map(() => i)));
    ds = new FileDataset(
      paths,
      labels,
      perClass.map((c) => c.name),
    );
  } else {
    const images = rootFiles.filter(isImageFile);
    report.otherFiles.push(...rootFiles.filter((f) => !isImageFile(f)));
    ds = new FileDataset(images);
  }
  if (ds.length === 0) throw new DatasetError(`image folder "${root}" holds no images (looked for ${IMAGE_EXTENSIONS.join(' ')})`);
  return Object.assign(ds, { report });
}

/**
 * A list file: one `path[,label]` per line (blank lines and lines starting with `#` ignored; the label follows the last
 * comma). Relative paths are relative to the list file. Labels are integers (class indices) or names (sorted names
 * become the classes); either every line has a label or none has.
 * @throws DatasetError if the file cannot be read, is empty, or mixes labeled and unlabeled lines.
 */
export async function openListFile(file: string): Promise<FileDataset> {
  expectPath('openListFile', 'file', file);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new DatasetError(`cannot read list file "${file}": ${(e as Error).message}`);
  }
  const base = dirname(resolve(file));
  const paths: string[] = [];
  const raw: (string | undefined)[] = [];
  text.split(/\r?\n/).forEach((line) => {
    const l = line.trim();
    if (l === '' || l.startsWith('#')) return;
    const comma = l.lastIndexOf(',');
    const p = comma >= 0 ? l.slice(0, comma).trim() : l;
    paths.push(isAbsolute(p) ? p : join(base, p));
    raw.push(comma >= 0 ? l.slice(comma + 1).trim() : undefined);
  });
  if (paths.length === 0) throw new DatasetError(`list file "${file}" names no images`);
  const n = raw.filter((r) => r !== undefined).length;
  if (n === 0) return new FileDataset(paths);
  if (n !== raw.length) {
    const line = raw.indexOf(undefined);
    throw new DatasetError(`list file "${file}": entry ${line + 1} ("${paths[line]}") has no label but others do`);
  }
  const labelsRaw = raw as string[];
  if (labelsRaw.every((r) => /^\d+$/.test(r))) return new FileDataset(paths, Int32Array.from(labelsRaw, Number));
  const classes = [...new Set(labelsRaw)].sort();
  const index = new Map(classes.map((c, i) => [c, i]));
  return new FileDataset(
    paths,
    Int32Array.from(labelsRaw, (r) => index.get(r)!),
    classes,
  );
}

export { ImageError };
