// Writes extracted features to disk: one .safetensors file or a folder of .npy files, and reads them back. Features
// stream to temporary files next to the output as they come out of extractFeatures (one row at a time), so memory
// stays at one batch of activations whatever the output size (more than 4 GiB included); the result is then
// assembled and put in place atomically: the file by a rename, the npy folder as a set (a complete new folder is
// renamed in). Leftovers of an interrupted write are removed by the next write to the same output. The output is
// checked before any work: it may not be one of the input images or a protected file (the weights).
import { closeSync, constants as fsConstants, fsyncSync, openSync, readSync, writeSync } from 'node:fs';
import { mkdir, open, readdir, readFile, realpath, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';

import { type ImageListing, listImageInputs } from '../data/image_list.js';
import { putBackAside, replaceFolder } from '../io/replace_folder.js';
import { openSafetensors } from '../io/safetensors.js';
import { ConfigError, Dinov3Error, ImageError, TorchRangeError, TorchTypeError } from '../native/errors.js';
import { expectPath, showJson } from '../tensor/args.js';
import { Tensor } from '../tensor/tensor.js';
import { normalizationStats } from '../data/transforms.js';
import { assertEval, type FeatureBackbone, modelNormalization } from './backbone.js';
import { type ExtractOptions, extractFeatures, extractListing, type ImageFeatures } from './extract.js';

export type FeatureFileFormat = 'safetensors' | 'npy';
export type FeatureDType = 'float32' | 'float16' | 'bfloat16';

export interface SaveFeaturesOptions extends ExtractOptions {
  /** `safetensors` (default, unless `out` ends in `.npy` or `/`): one file; `npy`: a folder of .npy files + meta.json. */
  format?: FeatureFileFormat;
  /** Stored dtype (default float32; `npy` has no bfloat16). */
  featureDtype?: FeatureDType;
  /** Extra string metadata for the safetensors header / meta.json. */
  metadata?: Record<string, string>;
  /** Files the output must never replace (besides the input images), e.g. the model weights. */
  protectedPaths?: readonly string[];
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
  /** Inputs that named an image already listed (processed once). */
  duplicates: { path: string; sameAs: string }[];
}

const NPY_DESCR: Partial<Record<FeatureDType, string>> = { float32: '<f4', float16: '<f2' };
const ST_DTYPE: Record<FeatureDType, string> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16' };
const TMP_TAG = '.dinov3-tmp-';

/** Appends rows of one feature kind to a temporary file and remembers their shapes and offsets. */
class Spill {
  readonly rows: { shape: number[]; offset: number; bytes: number }[] = [];
  size = 0;
  readonly #fd: number;
  constructor(readonly path: string) {
    this.#fd = openSync(path, 'wx');
  }
  add(t: Tensor, dtype: FeatureDType): void {
    const c = t.to(dtype);
    try {
      const v = c.data();
      const bytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
      for (let done = 0; done < bytes.byteLength; ) done += writeSync(this.#fd, bytes, done, bytes.byteLength - done, this.size + done);
      this.rows.push({ shape: c.shape, offset: this.size, bytes: bytes.byteLength });
      this.size += bytes.byteLength;
    } finally {
      c.dispose();
    }
  }
  /** True when every row has the same shape (they then form one stacked tensor). */
  get uniform(): boolean {
    const s = this.rows[0]?.shape;
    return s !== undefined && this.rows.every((r) => r.shape.length === s.length && r.shape.every((d, i) => d === s[i]));
  }
  close(): void {
    closeSync(this.#fd);
  }
}

/** A tensor of the output: a byte range of a spill file. */
interface Piece {
  name: string;
  shape: number[];
  spill: Spill;
  offset: number;
  bytes: number;
}

/** Copies [offset, offset + bytes) of `from` to `fd` at `at`, in chunks (any size). */
function copyRange(fromPath: string, offset: number, bytes: number, fd: number, at: number): void {
  const src = openSync(fromPath, 'r');
  try {
    const buf = Buffer.allocUnsafe(Math.min(bytes, 16 << 20) || 1);
    for (let done = 0; done < bytes; ) {
      const n = readSync(src, buf, 0, Math.min(buf.length, bytes - done), offset + done);
      if (n === 0) throw new Dinov3Error(`${fromPath}: unexpected end of a temporary feature file`, 'ERR_IO');
      for (let w = 0; w < n; ) w += writeSync(fd, buf, w, n - w, at + done + w);
      done += n;
    }
  } finally {
    closeSync(src);
  }
}

function npyHeader(descr: string, shape: number[]): Buffer {
  const dims = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${dims}, }`;
  const total = Math.ceil((10 + header.length + 1) / 64) * 64; // magic(6) + version(2) + len(2) + header + \n
  header = header.padEnd(total - 10 - 1, ' ') + '\n';
  const pre = Buffer.alloc(10);
  pre.write('\x93NUMPY', 0, 'latin1');
  pre[6] = 1;
  pre[7] = 0;
  pre.writeUInt16LE(header.length, 8);
  return Buffer.concat([pre, Buffer.from(header, 'latin1')]);
}

/** Writes `parts` (buffers, or byte ranges of spill files) to a new file, fsynced. */
function writeParts(path: string, parts: (Uint8Array | Piece)[]): void {
  const fd = openSync(path, 'wx');
  try {
    let at = 0;
    for (const p of parts) {
      if (p instanceof Uint8Array) {
        for (let w = 0; w < p.byteLength; ) w += writeSync(fd, p, w, p.byteLength - w, at + w);
        at += p.byteLength;
      } else {
        copyRange(p.spill.path, p.offset, p.bytes, fd, at);
        at += p.bytes;
      }
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

async function syncDir(dir: string): Promise<void> {
  try {
    const h = await open(dir, fsConstants.O_RDONLY);
    try {
      await h.sync();
    } finally {
      await h.close();
    }
  } catch {
    // not every platform can fsync a folder
  }
}

function defaultFormat(out: string): FeatureFileFormat {
  return out.endsWith('.npy') || out.endsWith('/') ? 'npy' : 'safetensors';
}

/** The real path of `p`, or of its nearest existing parent joined with the rest (for outputs not written yet). */
async function realOrIntended(p: string): Promise<string> {
  const abs = resolve(p);
  try {
    return await realpath(abs);
  } catch {
    const parent = dirname(abs);
    return parent === abs ? abs : join(await realOrIntended(parent), basename(abs));
  }
}

/**
 * Checks an output location before any work: refuses an output that is (or, through links, resolves to) one of the
 * input files or a protected file such as the weights, a folder for a single-file format, or a file for the npy
 * folder format. Safe to call before loading the model.
 * @throws ConfigError naming the output and what it would overwrite
 */
export async function checkFeatureOutput(
  out: string,
  o: { format?: FeatureFileFormat; inputs?: readonly string[]; protectedPaths?: readonly string[] } = {},
): Promise<void> {
  if (typeof out !== 'string' || out === '') throw new ConfigError(`saveFeatures: the output must be a path, received ${showJson(out)}`);
  const format = o.format ?? defaultFormat(out);
  const target = await realOrIntended(out);
  const st = await stat(target).catch(() => null);
  if (st && format === 'safetensors' && !st.isFile()) throw new ConfigError(`saveFeatures: the output "${out}" exists and is not a regular file`);
  if (st && format === 'npy' && !st.isDirectory())
    throw new ConfigError(`saveFeatures: the output "${out}" exists and is not a folder (the npy format writes a folder)`);
  const clash = async (p: string) => {
    const r = await realOrIntended(p);
    return r === target || (format === 'npy' && r.startsWith(`${target}/`));
  };
  for (const p of o.protectedPaths ?? []) {
    if (await clash(p)) throw new ConfigError(`saveFeatures: the output "${out}" would overwrite "${p}" (the model weights or another protected file)`);
  }
  for (const p of o.inputs ?? []) {
    if (await clash(p)) throw new ConfigError(`saveFeatures: the output "${out}" would overwrite the input image "${p}"`);
  }
}

/** Removes what an interrupted write to `out` left next to it (temporary folders of processes that are gone). */
async function cleanLeftovers(out: string): Promise<void> {
  const dir = dirname(resolve(out));
  const prefix = `.${basename(resolve(out))}${TMP_TAG}`;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  for (const n of names) {
    if (!n.startsWith(prefix)) continue;
    const pid = Number(n.slice(prefix.length).split('-')[0]);
    let alive = false;
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid) {
      try {
        process.kill(pid, 0);
        alive = true;
      } catch (e) {
        alive = (e as NodeJS.ErrnoException).code === 'EPERM';
      }
    }
    if (alive) continue;
    // Killed between the two renames of replaceFolder's fallback: the old set is put back first.
    await putBackAside(join(dir, n, 'old'), resolve(out));
    await rm(join(dir, n), { recursive: true, force: true });
  }
}

/** Puts the complete folder `fresh` at `out`, replacing an existing folder as a set (see replaceFolder). */
async function swapFolder(fresh: string, out: string, work: string): Promise<void> {
  await replaceFolder(fresh, resolve(out), join(work, 'old'));
  await syncDir(dirname(resolve(out)));
}

/**
 * Extracts features of every image of `input` (see extractFeatures) and writes them to `out`:
 * - `safetensors`: `cls` `[N, (L,) D]`, `storage` `[N, (L,) R, D]` (when R > 0) and `patches` `[N, (L,) h, w, D]`
 *   (or `patches.<j>` per image when the grids differ), with metadata `paths`, `grids` (JSON), `layers`,
 *   `resolution`, `resize`, `normalization`, `embed_dim`, `patch_size`, `n_storage_tokens`;
 * - `npy`: the folder `out` with `cls.npy`, `storage.npy`, `patches.npy` (or `patches_<j>.npy`) and `meta.json`.
 * The inputs are listed once; the output is checked against them (and `protectedPaths`) before any work; features
 * stream to disk (any size); the file, or the folder as a whole, replaces an existing one atomically.
 * @example await saveFeatures(model, 'photos/', 'feats.safetensors', { resolution: 512, onError: 'skip' });
 * @throws ConfigError for an output that would overwrite an input or a protected file; ImageError when no image
 *   could be processed (or, with `onError: 'fail'`, for the first bad image).
 */
export async function saveFeatures(
  model: FeatureBackbone,
  input: string | readonly string[] | Tensor,
  out: string,
  options: SaveFeaturesOptions = {},
): Promise<SaveFeaturesResult> {
  assertEval(model, 'saveFeatures');
  if (typeof out !== 'string' || out === '')
    throw new TorchTypeError(`saveFeatures: expected "out" to be a non-empty path, received ${typeof out}`, 'ERR_INVALID_ARG');
  if (options === null || typeof options !== 'object') throw new TorchTypeError('saveFeatures: expected the options to be an object', 'ERR_INVALID_ARG');
  const format = options.format ?? defaultFormat(out);
  const featureDtype = options.featureDtype ?? 'float32';
  if (format !== 'safetensors' && format !== 'npy')
    throw new TorchRangeError(`saveFeatures: format must be "safetensors" or "npy", received "${String(format)}"`, 'ERR_INVALID_ARG');
  if (!['float32', 'float16', 'bfloat16'].includes(featureDtype))
    throw new TorchRangeError(`saveFeatures: featureDtype must be float32, float16 or bfloat16, received "${String(featureDtype)}"`, 'ERR_INVALID_ARG');
  if (format === 'npy' && featureDtype === 'bfloat16')
    throw new TorchRangeError(
      'saveFeatures: the npy format cannot store bfloat16; use featureDtype float32 or float16, or the safetensors format',
      'ERR_INVALID_ARG',
    );

  const skipped: ImageError[] = [];
  const onSkip = (e: ImageError) => {
    skipped.push(e);
    options.onSkip?.(e);
  };
  // One listing, used end to end.
  let listing: ImageListing | undefined;
  if (!(input instanceof Tensor)) {
    listing = await listImageInputs(input, { onError: options.onError, onSkip, maxFileBytes: options.maxFileBytes });
    for (const d of listing.duplicates) options.onDuplicate?.(d);
  }
  await checkFeatureOutput(out, { format, inputs: listing?.paths, protectedPaths: options.protectedPaths });
  await mkdir(dirname(resolve(out)), { recursive: true });
  await cleanLeftovers(out);
  const work = join(dirname(resolve(out)), `.${basename(resolve(out))}${TMP_TAG}${process.pid}-${randomBytes(4).toString('hex')}`);
  await mkdir(work);
  try {
    const spills = { cls: new Spill(join(work, 'cls.bin')), storage: new Spill(join(work, 'storage.bin')), patches: new Spill(join(work, 'patches.bin')) };
    const paths: (string | undefined)[] = [];
    const grids: [number, number][] = [];
    try {
      const opts = { ...options, onSkip, as: 'tensors' as const };
      const it = (listing ? extractListing(model, listing, opts) : extractFeatures(model, input as Tensor, opts)) as AsyncGenerator<ImageFeatures>;
      for await (const f of it) {
        try {
          spills.cls.add(f.cls, featureDtype);
          if (model.nStorageTokens > 0) spills.storage.add(f.storage, featureDtype);
          spills.patches.add(f.patches, featureDtype);
          paths.push(f.path);
          grids.push(f.grid);
        } finally {
          f.dispose();
        }
        // Let the finalizers of the data() buffers of the rows just written run (they free the native memory).
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    } finally {
      for (const s of Object.values(spills)) s.close();
    }
    if (paths.length === 0) throw new ImageError(`no features to write to "${out}": all ${skipped.length} images were skipped`, skipped[0]?.path);

    const pieces: Piece[] = [];
    const whole = (name: string, spill: Spill) =>
      pieces.push({ name, shape: [spill.rows.length, ...spill.rows[0]!.shape], spill, offset: 0, bytes: spill.size });
    whole('cls', spills.cls);
    if (model.nStorageTokens > 0) whole('storage', spills.storage);
    if (spills.patches.uniform) whole('patches', spills.patches);
    else
      spills.patches.rows.forEach((r, j) =>
        pieces.push({ name: format === 'npy' ? `patches_${j}` : `patches.${j}`, shape: r.shape, spill: spills.patches, offset: r.offset, bytes: r.bytes }),
      );

    const norm = modelNormalization(model, options.normalization);
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
    const tensors = Object.fromEntries(pieces.map((p) => [p.name, p.shape]));
    const files: string[] = [];
    if (format === 'safetensors') {
      // Header by hand (names in output order, offsets contiguous from 0), then the spilled bytes.
      const entries: string[] = [
        `"__metadata__":${JSON.stringify(
          Object.fromEntries(
            Object.keys(meta)
              .sort()
              .map((k) => [k, meta[k]]),
          ),
        )}`,
      ];
      let offset = 0;
      for (const p of pieces) {
        entries.push(
          `${JSON.stringify(p.name)}:${JSON.stringify({ dtype: ST_DTYPE[featureDtype], shape: p.shape, data_offsets: [offset, offset + p.bytes] })}`,
        );
        offset += p.bytes;
      }
      const text = Buffer.from(`{${entries.join(',')}}`, 'utf8');
      const header = Buffer.alloc(8 + Math.ceil(text.length / 8) * 8, 0x20);
      header.writeBigUInt64LE(BigInt(header.length - 8), 0);
      text.copy(header, 8);
      const tmp = join(work, 'out.safetensors');
      writeParts(tmp, [header, ...pieces]);
      await rename(tmp, resolve(out));
      await syncDir(dirname(resolve(out)));
      files.push(out);
    } else {
      const fresh = join(work, 'out');
      await mkdir(fresh);
      const descr = NPY_DESCR[featureDtype]!;
      for (const p of pieces) {
        writeParts(join(fresh, `${p.name}.npy`), [npyHeader(descr, p.shape), p]);
        files.push(join(out, `${p.name}.npy`));
      }
      const json = { ...meta, paths, grids, layers: options.layers ?? 'final', tensors };
      writeParts(join(fresh, 'meta.json'), [Buffer.from(`${JSON.stringify(json, null, 2)}\n`)]);
      files.push(join(out, 'meta.json'));
      await syncDir(fresh);
      await swapFolder(fresh, out, work);
    }
    return { files, tensors, paths, skipped, duplicates: listing?.duplicates ?? [] };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Features read back from a file or folder written by saveFeatures or the CLI. */
export interface LoadedFeatures {
  /** Tensors by name (`cls`, `storage`, `patches` or `patches.<j>` / `patches_<j>`), as float32 arrays. */
  tensors: Map<string, { shape: number[]; data: Float32Array }>;
  /** The image paths, row by row (null for tensor input). */
  paths: (string | null)[];
  /** Patch grids, row by row. */
  grids: [number, number][];
  /** The string metadata (safetensors header / meta.json scalars). */
  metadata: Record<string, string>;
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 0x1f) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

function toFloat32(bytes: Uint8Array, dtype: string): Float32Array {
  const copy = new Uint8Array(bytes); // aligned
  if (dtype === 'float32' || dtype === '<f4') return new Float32Array(copy.buffer);
  const u16 = new Uint16Array(copy.buffer);
  if (dtype === 'bfloat16') return new Float32Array(Uint32Array.from(u16, (b) => b << 16).buffer);
  return Float32Array.from(u16, halfToFloat);
}

/**
 * Reads features written by saveFeatures or `dinov3 features`: a `.safetensors` file or an npy folder (meta.json +
 * `.npy` files), with the image paths and grids.
 * @throws ImageError naming the file when it is not a feature file of this library
 */
export async function loadFeatures(path: string): Promise<LoadedFeatures> {
  expectPath('loadFeatures', 'path', path);
  const st = await stat(path).catch(() => null);
  if (!st) throw new ImageError(`loadFeatures: no such file or folder: "${path}"`, path);
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  let metadata: Record<string, string>;
  if (st.isFile()) {
    const f = openSafetensors(path);
    metadata = f.metadata;
    for (const [k, t] of f.tensors) tensors.set(k, { shape: t.shape, data: toFloat32(t.read(), t.dtype) });
  } else {
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(await readFile(join(path, 'meta.json'), 'utf8')) as Record<string, unknown>;
    } catch (e) {
      throw new ImageError(`loadFeatures: "${path}" has no readable meta.json (${(e as Error).message})`, path);
    }
    metadata = Object.fromEntries(Object.entries(json).filter(([, v]) => typeof v === 'string')) as Record<string, string>;
    metadata.paths = JSON.stringify(json.paths);
    metadata.grids = JSON.stringify(json.grids);
    for (const name of Object.keys((json.tensors ?? {}) as object)) {
      const buf = await readFile(join(path, `${name}.npy`));
      const m = /'descr': '([^']+)'.*'shape': \(([^)]*)\)/.exec(buf.subarray(10, 10 + buf.readUInt16LE(8)).toString('latin1'));
      if (!m || buf.readUInt32BE(0) !== 0x934e554d)
        throw new ImageError(`loadFeatures: "${join(path, `${name}.npy`)}" is not an npy file written by saveFeatures`, path);
      const shape = m[2]!
        .split(',')
        .map((d) => d.trim())
        .filter((d) => d !== '')
        .map(Number);
      tensors.set(name, { shape, data: toFloat32(buf.subarray(10 + buf.readUInt16LE(8)), m[1]!) });
    }
  }
  if (metadata['dinov3.features'] !== '1') throw new ImageError(`loadFeatures: "${path}" was not written by saveFeatures (no dinov3.features metadata)`, path);
  return { tensors, paths: JSON.parse(metadata.paths ?? '[]') as (string | null)[], grids: JSON.parse(metadata.grids ?? '[]') as [number, number][], metadata };
}
