// Hostile image inputs: only regular files are read (links resolved and checked, size cap), symlinked folders are
// followed once (loops detected), globs stay at their pattern's depth, duplicates are reported, and with
// onError 'skip' bad entries are reported instead of ending the run.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { listImageInputs } from '../../../src/data/image_list.js';
import { extractFeatures } from '../../../src/features/index.js';
import { type DinoVisionTransformer, memory } from '../../../src/index.js';
import { ImageError } from '../../../src/native/errors.js';
import { CHELSEA, COFFEE, loadTinyModel } from './helpers.js';

const tmp = mkdtempSync(join(tmpdir(), 'dinov3-inputs-'));
const DIR = join(tmp, 'photos');
const A = join(DIR, 'a.jpg');
const B = join(DIR, 'sub', 'b.jpg');
let model: DinoVisionTransformer;
beforeAll(async () => {
  mkdirSync(join(DIR, 'sub', 'deeper'), { recursive: true });
  copyFileSync(CHELSEA, A);
  copyFileSync(COFFEE, B);
  copyFileSync(COFFEE, join(DIR, 'sub', 'deeper', 'c.jpg'));
  model = await loadTinyModel();
});
afterAll(() => {
  model.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

/** Times a listing (every case must finish at once, however hostile). */
async function timed<T>(p: Promise<T>): Promise<T> {
  const t0 = performance.now();
  try {
    return await p;
  } finally {
    expect(performance.now() - t0).toBeLessThan(2000);
  }
}

describe('image listings', () => {
  test('/dev/zero behind a symlink: refused (fail), or reported and left out (skip) while the others are processed', async () => {
    const d = join(tmp, 'zero');
    mkdirSync(d);
    copyFileSync(CHELSEA, join(d, 'good.jpg'));
    symlinkSync('/dev/zero', join(d, 'zero.jpg'));
    const err = await timed(listImageInputs(d).catch((e: unknown) => e));
    expect(err).toBeInstanceOf(ImageError);
    expect((err as ImageError).message).toBe(`"${join(d, 'zero.jpg')}" is a character device, not an image file`);
    expect((err as ImageError).code).toBe('ERR_IMAGE');
    const skipped: ImageError[] = [];
    const before = memory().liveTensors;
    const got: (string | undefined)[] = [];
    for await (const f of extractFeatures(model, d, { resolution: 32, onError: 'skip', onSkip: (e) => skipped.push(e), as: 'arrays' })) got.push(f.path);
    expect(got).toEqual([join(d, 'good.jpg')]);
    expect(skipped.map((e) => e.path)).toEqual([join(d, 'zero.jpg')]);
    expect(memory().liveTensors).toBe(before);
  });

  test('a FIFO named like an image is never opened', async () => {
    const d = join(tmp, 'fifo');
    mkdirSync(d);
    execFileSync('mkfifo', [join(d, 'pipe.png')]);
    await expect(timed(listImageInputs(join(d, 'pipe.png')))).rejects.toThrow(`"${join(d, 'pipe.png')}" is a FIFO (named pipe), not an image file`);
    const r = await timed(listImageInputs([A, d], { onError: 'skip' }));
    expect(r.paths).toEqual([A]);
    expect(r.skipped.map((e) => e.message)).toEqual([`"${join(d, 'pipe.png')}" is a FIFO (named pipe), not an image file`]);
  });

  test('files beyond the size cap are refused', async () => {
    const big = join(tmp, 'big.jpg');
    writeFileSync(big, Buffer.alloc(4096));
    await expect(listImageInputs(big, { maxFileBytes: 1000 })).rejects.toThrow(`"${big}" is 4096 bytes, more than the 1000-byte limit for an image file`);
  });

  test('a symlinked folder is followed once; a link back up is a loop that is not re-entered', async () => {
    const d = join(tmp, 'loop');
    mkdirSync(join(d, 'x'), { recursive: true });
    copyFileSync(CHELSEA, join(d, 'x', 'p.jpg'));
    symlinkSync(d, join(d, 'x', 'up')); // x/up → d: a cycle
    symlinkSync(DIR, join(d, 'photos')); // a linked folder elsewhere
    const r = await timed(listImageInputs(d));
    expect(r.paths).toEqual([
      join(d, 'photos', 'a.jpg'),
      join(d, 'photos', 'sub', 'b.jpg'),
      join(d, 'photos', 'sub', 'deeper', 'c.jpg'),
      join(d, 'x', 'p.jpg'),
    ]);
  });

  test('globs do not walk deeper than their pattern (unless it has **)', async () => {
    expect((await listImageInputs(`${DIR}/*.jpg`)).paths).toEqual([A]);
    expect((await listImageInputs(`${DIR}/*/*.jpg`)).paths).toEqual([B]);
    expect((await listImageInputs(`${DIR}/**/*.jpg`)).paths).toEqual([A, B, join(DIR, 'sub', 'deeper', 'c.jpg')]);
  });

  test('duplicates (repeated items, a folder and a file in it, a link to a listed file) are reported, each file read once', async () => {
    const link = join(tmp, 'alias.jpg');
    symlinkSync(A, link);
    const r = await listImageInputs([A, DIR, link]);
    expect(r.paths).toEqual([A, B, join(DIR, 'sub', 'deeper', 'c.jpg')]);
    expect(r.duplicates).toEqual([
      { path: A, sameAs: A },
      { path: link, sameAs: A },
    ]);
    const seen: { path: string; sameAs: string }[] = [];
    const got: (string | undefined)[] = [];
    for await (const f of extractFeatures(model, [A, link], { resolution: 32, as: 'arrays', onDuplicate: (d) => seen.push(d) })) got.push(f.path);
    expect(got).toEqual([A]);
    expect(seen).toEqual([{ path: link, sameAs: A }]);
  });

  test.skipIf(process.getuid?.() === 0)('an unreadable folder honours onError', async () => {
    const d = join(tmp, 'locked');
    mkdirSync(join(d, 'inner'), { recursive: true });
    copyFileSync(CHELSEA, join(d, 'ok.jpg'));
    execFileSync('chmod', ['000', join(d, 'inner')]);
    try {
      await expect(listImageInputs(d)).rejects.toThrow(`cannot list folder "${join(d, 'inner')}": permission denied`);
      const r = await listImageInputs(d, { onError: 'skip' });
      expect(r.paths).toEqual([join(d, 'ok.jpg')]);
      expect(r.skipped.map((e) => e.path)).toEqual([join(d, 'inner')]);
    } finally {
      execFileSync('chmod', ['755', join(d, 'inner')]);
    }
  });
});
