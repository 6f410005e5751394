// Expands an image input (a folder, a glob, a file, or a list of them) into a sorted list of image paths.
// Node 20 has no fs.glob, so a small glob matcher is included: `*`, `?`, `**`, `[abc]`, `{a,b}`.
import type { Stats } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';

import { ImageError } from '../native/errors.js';

/** File extensions taken from folders (case-insensitive); sharp's prebuilt libvips decodes all of them. */
export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.jpe', '.png', '.webp', '.tif', '.tiff', '.gif', '.avif'] as const;

const isImageFile = (p: string) => IMAGE_EXTENSIONS.some((e) => p.toLowerCase().endsWith(e));
const hasMagic = (s: string) => /[*?[{]/.test(s);

async function walk(dir: string, out: string[]): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true });
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) await walk(p, out);
    else if (e.isFile() || e.isSymbolicLink()) out.push(p);
  }
}

/** Glob pattern (with `/` separators) → anchored RegExp over `/`-separated relative paths. */
export function globToRegExp(pattern: string): RegExp {
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
        const body = pattern.slice(i + 1, end).replace(/^!/, '^').replace(/\\/g, '\\\\');
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

async function expandGlob(pattern: string): Promise<string[]> {
  const parts = pattern.split(/[\\/]/);
  const first = parts.findIndex(hasMagic);
  const base = parts.slice(0, first).join('/') || (pattern.startsWith('/') ? '/' : '.');
  const rest = parts.slice(first).join('/');
  const re = globToRegExp(rest);
  const files: string[] = [];
  try {
    await walk(base, files);
  } catch {
    return [];
  }
  const prefix = pattern.startsWith('/') || base !== '.' ? base : '';
  return files
    .map((f) => relative(base, f).split(sep).join('/'))
    .filter((r) => re.test(r))
    .map((r) => (prefix ? join(prefix, r) : r));
}

/**
 * The image paths of `input`, sorted: a folder (searched recursively for IMAGE_EXTENSIONS), a glob pattern (every
 * matching file, whatever its extension), a single file, or an array of these (expanded in order, duplicates dropped).
 * @example await listImages('photos/**\/*.jpg')
 * @throws ImageError if a folder, file or pattern yields no images.
 */
export async function listImages(input: string | readonly string[]): Promise<string[]> {
  const inputs = typeof input === 'string' ? [input] : input;
  if (inputs.length === 0) throw new ImageError('no images given (an empty list)');
  const out: string[] = [];
  for (const item of inputs) {
    let st: Stats | null = null;
    try {
      st = await stat(item);
    } catch {
      st = null;
    }
    if (st?.isDirectory()) {
      const files: string[] = [];
      await walk(item, files);
      const images = files.filter(isImageFile).sort();
      if (images.length === 0) throw new ImageError(`no images found in folder "${item}" (looked for ${IMAGE_EXTENSIONS.join(' ')})`, item);
      out.push(...images);
    } else if (st) out.push(item);
    else if (hasMagic(item)) {
      const matches = (await expandGlob(item)).sort();
      if (matches.length === 0) throw new ImageError(`no files match "${item}"`, item);
      out.push(...matches);
    } else if (typeof input === 'string') {
      throw new ImageError(`no such file or folder: "${item}"`, item);
    } else out.push(item); // a missing file in an explicit list is reported when it is decoded (onError)
  }
  const seen = new Set<string>();
  return out.filter((p) => {
    const k = resolve(p);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}
