// Expands an image input (a folder, a glob, a file, or a list of them) into a sorted list of image paths.
// Node 20 has no fs.glob, so a small glob matcher is included: `*`, `?`, `**`, `[abc]`, `{a,b}`.
import type { Dirent, Stats } from 'node:fs';
import { lstat, readdir, realpath, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';

import { ImageError, TorchTypeError } from '../native/errors.js';

/** File extensions taken from folders (case-insensitive); sharp's prebuilt libvips decodes all of them. */
export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.jpe', '.png', '.webp', '.tif', '.tiff', '.gif', '.avif'] as const;

const isImageFile = (p: string) => IMAGE_EXTENSIONS.some((e) => p.toLowerCase().endsWith(e));
const hasMagic = (s: string) => /[*?[{]/.test(s);

/** Default largest image file read (far above any real photo; a guard against huge or endless files). */
export const MAX_IMAGE_FILE_BYTES = 512 * 2 ** 20;

export interface ListImagesOptions {
  /** `'fail'` (default): an unreadable folder or a file that is not a regular image file throws ImageError.
   * `'skip'`: it is left out and reported to `onSkip`. */
  onError?: 'fail' | 'skip';
  /** Called for every input left out with `onError: 'skip'`. */
  onSkip?: (error: ImageError) => void;
  /** Largest file size accepted (default MAX_IMAGE_FILE_BYTES). */
  maxFileBytes?: number;
}

/** The result of one listing: the images to read, in order, and what was left out. */
export interface ImageListing {
  /** Image paths, sorted within each input, each file once. */
  paths: string[];
  /** Inputs naming a file already listed (the same file through another path, a link, or a repeated item). */
  duplicates: { path: string; sameAs: string }[];
  /** Inputs left out with `onError: 'skip'`. */
  skipped: ImageError[];
}

const describeKind = (st: Stats) =>
  st.isDirectory()
    ? 'a folder'
    : st.isFIFO()
      ? 'a FIFO (named pipe)'
      : st.isCharacterDevice()
        ? 'a character device'
        : st.isBlockDevice()
          ? 'a block device'
          : st.isSocket()
            ? 'a socket'
            : 'not a regular file';

function fsReason(e: unknown): string {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return 'no such file or folder';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'ELOOP') return 'too many levels of symbolic links';
  return `cannot be read (${code ?? (e as Error | undefined)?.message ?? String(e)})`;
}

/** A listed file, with its stat() when the walk already has it. */
interface Listed {
  path: string;
  st?: Stats;
}

class Lister {
  readonly paths: string[] = [];
  readonly duplicates: { path: string; sameAs: string }[] = [];
  readonly skipped: ImageError[] = [];
  readonly #seen = new Map<string, string>(); // file identity → first path
  readonly #max: number;
  constructor(readonly o: ListImagesOptions) {
    this.#max = o.maxFileBytes ?? MAX_IMAGE_FILE_BYTES;
  }

  /** Throws or reports (skip) an input that cannot be used. */
  bad(message: string, path: string): void {
    const err = new ImageError(message, path);
    if ((this.o.onError ?? 'fail') === 'fail') throw err;
    this.skipped.push(err);
    this.o.onSkip?.(err);
  }

  /** Adds a file after checking (through links) that it is a regular file of an acceptable size, once. */
  addFile(path: string, st: Stats): void {
    if (!st.isFile()) return this.bad(`"${path}" is ${describeKind(st)}, not an image file`, path);
    if (st.size > this.#max) return this.bad(`"${path}" is ${st.size} bytes, more than the ${this.#max}-byte limit for an image file`, path);
    const id = `${st.dev}:${st.ino}`;
    const first = this.#seen.get(id);
    if (first !== undefined) {
      this.duplicates.push({ path, sameAs: first });
      return;
    }
    this.#seen.set(id, path);
    this.paths.push(path);
  }

  /** The files under `dir` (symlinked folders followed once each: a link back up is a loop and is not re-entered),
   * down to `maxDepth` folder levels. */
  async walk(dir: string, out: Listed[], maxDepth = Infinity, visited = new Set<string>()): Promise<void> {
    let real: string;
    let entries: Dirent[];
    try {
      real = await realpath(dir);
      if (visited.has(real)) return;
      visited.add(real);
      entries = await readdir(dir, { withFileTypes: true });
    } catch (e) {
      return this.bad(`cannot list folder "${dir}": ${fsReason(e)}`, dir);
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const p = join(dir, e.name);
      if (e.isDirectory()) {
        if (maxDepth > 0) await this.walk(p, out, maxDepth - 1, visited);
      } else if (e.isFile()) out.push({ path: p });
      else if (e.isSymbolicLink()) {
        let st: Stats;
        try {
          st = await stat(p);
        } catch (err) {
          // A dangling or looping link: only worth reporting when it looks like an image.
          if (isImageFile(p)) this.bad(`"${p}": ${fsReason(err)}`, p);
          continue;
        }
        if (st.isDirectory()) {
          if (maxDepth > 0) await this.walk(p, out, maxDepth - 1, visited);
        } else out.push({ path: p, st });
      } else if (isImageFile(p)) out.push({ path: p, st: await lstat(p) }); // a FIFO, socket or device named like an image
    }
  }
}

/** Glob pattern (with `/` separators) → anchored RegExp over `/`-separated relative paths. */
export function globToRegExp(pattern: string): RegExp {
  if (typeof pattern !== 'string')
    throw new TorchTypeError(`globToRegExp: expected "pattern" to be a string, received ${pattern === null ? 'null' : typeof pattern}`, 'ERR_INVALID_ARG');
  let re = '';
  let depth = 0;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') {
      if (pattern[i + 1] === '*') {
        const slash = pattern[i + 2] === '/';
        re += slash ? '(?:.*/)?' : '.*';
        i += slash ? 2 : 1;
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 1);
      if (end < 0) re += '\\[';
      else {
        const body = pattern
          .slice(i + 1, end)
          .replace(/^!/, '^')
          .replace(/\\/g, '\\\\');
        re += `[${body}]`;
        i = end;
      }
    } else if (c === '{') {
      re += '(?:';
      depth++;
    } else if (c === '}' && depth > 0) {
      re += ')';
      depth--;
    } else if (c === ',' && depth > 0) re += '|';
    else re += c.replace(/[.+^$()|\\/]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** The files matching a glob pattern. Without `**`, the walk stops at the pattern's own depth. */
async function expandGlob(pattern: string, lister: Lister): Promise<Listed[]> {
  const parts = pattern.split(/[\\/]/);
  const first = parts.findIndex(hasMagic);
  const base = parts.slice(0, first).join('/') || (pattern.startsWith('/') ? '/' : '.');
  const rest = parts.slice(first).join('/');
  const re = globToRegExp(rest);
  const restParts = parts.slice(first);
  const maxDepth = restParts.some((p) => p.includes('**')) ? Infinity : restParts.length - 1;
  let baseSt: Stats;
  try {
    baseSt = await stat(base);
  } catch {
    return [];
  }
  if (!baseSt.isDirectory()) return [];
  const files: Listed[] = [];
  await lister.walk(base, files, maxDepth);
  const prefix = pattern.startsWith('/') || base !== '.' ? base : '';
  return files
    .map((f) => ({ f, r: relative(base, f.path).split(sep).join('/') }))
    .filter(({ r }) => re.test(r))
    .map(({ f, r }) => ({ path: prefix ? join(prefix, r) : r, st: f.st }));
}

/** stat() of a listed file (follows links) unless the walk already has it; errors are reported like bad files. */
async function statListed(lister: Lister, f: Listed): Promise<Stats | undefined> {
  if (f.st) return f.st;
  try {
    return await stat(f.path);
  } catch (e) {
    lister.bad(`"${f.path}": ${fsReason(e)}`, f.path);
    return undefined;
  }
}

/**
 * One listing of an image input, used end to end: a folder (searched recursively for IMAGE_EXTENSIONS, symlinked
 * folders followed once with loop detection), a glob pattern (every matching file, whatever its extension; the walk
 * goes no deeper than the pattern unless it has `**`), a single file, or an array of these (expanded in order).
 * Only regular files up to `maxFileBytes` are listed (links resolved and checked); each file once, with the
 * repeats reported in `duplicates`. With `onError: 'skip'`, unreadable folders and unusable files are reported
 * and left out.
 * @throws ImageError if an input yields no images, or (with `onError: 'fail'`) for the first unusable one
 */
export async function listImageInputs(input: string | readonly string[], o: ListImagesOptions = {}): Promise<ImageListing> {
  if (typeof input !== 'string' && !(Array.isArray(input) && input.every((x) => typeof x === 'string'))) {
    throw new ImageError(
      `expected an image path, folder, glob, or an array of them, received ${Array.isArray(input) ? 'an array with a non-string item' : typeof input}`,
    );
  }
  const inputs = typeof input === 'string' ? [input] : input;
  if (inputs.length === 0) throw new ImageError('no images given (an empty list)');
  const lister = new Lister(o);
  for (const item of inputs) {
    let st: Stats | null = null;
    try {
      st = await stat(item);
    } catch {
      st = null;
    }
    if (st?.isDirectory()) {
      const files: Listed[] = [];
      await lister.walk(item, files);
      const images = files.filter((f) => isImageFile(f.path)).sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
      const before = lister.paths.length + lister.duplicates.length + lister.skipped.length;
      for (const f of images) {
        const s = await statListed(lister, f);
        if (s) lister.addFile(f.path, s);
      }
      if (lister.paths.length + lister.duplicates.length + lister.skipped.length === before)
        throw new ImageError(`no images found in folder "${item}" (looked for ${IMAGE_EXTENSIONS.join(' ')})`, item);
    } else if (st) lister.addFile(item, st);
    else if (hasMagic(item)) {
      const matches = (await expandGlob(item, lister)).sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
      if (matches.length === 0) throw new ImageError(`no files match "${item}"`, item);
      for (const f of matches) {
        const s = await statListed(lister, f);
        if (s) lister.addFile(f.path, s);
      }
    } else if (typeof input === 'string') {
      throw new ImageError(`no such file or folder: "${item}"`, item);
    } else if (!lister.paths.includes(item)) lister.paths.push(item); // a missing file in an explicit list is reported when it is decoded (onError)
  }
  return { paths: lister.paths, duplicates: lister.duplicates, skipped: lister.skipped };
}

/**
 * The image paths of `input` (see listImageInputs), each file once.
 * @example await listImages('photos/**\/*.jpg')
 * @throws ImageError if a folder, file or pattern yields no images, or for an unusable input
 */
export async function listImages(input: string | readonly string[], o: ListImagesOptions = {}): Promise<string[]> {
  return (await listImageInputs(input, o)).paths;
}
