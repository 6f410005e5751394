// The `dinov3` CLI end to end: the compiled dist/src/cli/main.js in a child process, on real photos, with the tiny
// reference checkpoints (official safetensors file and Hugging Face folder).
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';

import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { readSafetensorsFile } from '../../../src/io/safetensors.js';
import { run } from '../../../src/cli/program.js';
import { progressBar } from '../../../src/cli/progress.js';
import { CHELSEA, COFFEE, EXIF6, REFERENCE, TINY_WEIGHTS } from '../features/helpers.js';
import { ensureDist, ROOT } from './dist.js';

const HF = join(REFERENCE, 'hf_vits_like');
const tmp = mkdtempSync(join(tmpdir(), 'dinov3-cli-'));
const PHOTOS = join(tmp, 'photos');
const CORRUPT = join(PHOTOS, 'broken.jpg');
let cli: string;

beforeAll(() => {
  cli = ensureDist();
  mkdirSync(PHOTOS);
  copyFileSync(CHELSEA, join(PHOTOS, 'chelsea.jpg'));
  copyFileSync(COFFEE, join(PHOTOS, 'coffee.jpg'));
  copyFileSync(EXIF6, join(PHOTOS, 'rotated.jpg'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function dinov3(...args: string[]) {
  const r = spawnSync(process.execPath, [cli, ...args], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, NODE_NO_WARNINGS: '1' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('dinov3 features', () => {
  test('writes cls/storage/patches of a folder of photos to a .safetensors file', async () => {
    const out = join(tmp, 'feats.safetensors');
    const r = dinov3('features', '--weights', TINY_WEIGHTS, '--images', PHOTOS, '--out', out, '--resolution', '64', '--batch-size', '2', '--json');
    expect(r.stderr).toMatch(/^features: 3 images → .*feats\.safetensors: cls \[3, 64\], storage \[3, 4, 64\], patches \[3, 4, 4, 64\] in \d+\.\d s\n$/);
    expect(r.code).toBe(0);
    const json = JSON.parse(r.stdout) as { images: string[]; tensors: Record<string, number[]> };
    expect(json.images).toEqual(['chelsea.jpg', 'coffee.jpg', 'rotated.jpg'].map((f) => join(PHOTOS, f)));
    const file = await readSafetensorsFile(out);
    expect(Object.fromEntries([...file.tensors].map(([k, t]) => [k, [t.dtype, t.shape]]))).toEqual({
      cls: ['float32', [3, 64]],
      storage: ['float32', [3, 4, 64]],
      patches: ['float32', [3, 4, 4, 64]],
    });
    expect(JSON.parse(file.metadata!.paths!)).toEqual(json.images);
    expect(file.metadata).toMatchObject({ resolution: '64', resize: 'square', normalization: 'lvd1689m', layers: '"final"' });
  });

  test('--layers, --format npy, --feature-dtype float16, a glob, keepAspect, the HF folder', () => {
    const out = join(tmp, 'npy');
    const r = dinov3(
      'features',
      '--weights',
      HF,
      '--images',
      `${PHOTOS}/c*.jpg`,
      '--out',
      out,
      '--format',
      'npy',
      '--layers',
      '0,1',
      '--feature-dtype',
      'float16',
      '--resolution',
      '32',
      '--resize',
      'keepAspect',
      '--json',
    );
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).tensors).toEqual({ cls: [2, 2, 64], storage: [2, 2, 4, 64], patches: [2, 2, 2, 3, 64] });
    const npy = readFileSync(join(out, 'patches.npy'));
    expect(
      npy
        .subarray(10, 10 + npy.readUInt16LE(8))
        .toString('latin1')
        .trimEnd(),
    ).toBe("{'descr': '<f2', 'fortran_order': False, 'shape': (2, 2, 2, 3, 64), }");
    expect(existsSync(join(out, 'meta.json'))).toBe(true);
  });

  test('a corrupt image: reported with its path, then skipped (--on-error skip) or fatal (default)', () => {
    writeFileSync(CORRUPT, 'not really a jpeg');
    try {
      const out = join(tmp, 'skip.safetensors');
      const skip = dinov3('features', '--weights', TINY_WEIGHTS, '--images', PHOTOS, '--out', out, '--resolution', '32', '--on-error', 'skip');
      expect(skip.code).toBe(0);
      expect(skip.stderr.split('\n')[0]).toBe(`warning: skipped cannot decode image "${CORRUPT}": Input buffer contains unsupported image format`);
      expect(skip.stderr).toMatch(/features: 3 images \(1 skipped\) → /);
      const fail = dinov3('features', '--weights', TINY_WEIGHTS, '--images', PHOTOS, '--out', join(tmp, 'fail.safetensors'), '--resolution', '32');
      expect(fail.code).toBe(1);
      expect(fail.stderr).toBe(`error: cannot decode image "${CORRUPT}": Input buffer contains unsupported image format\n`);
      expect(existsSync(join(tmp, 'fail.safetensors'))).toBe(false);
    } finally {
      rmSync(CORRUPT);
    }
  });

  test('bad options: exact messages, exit code 1', () => {
    const base = ['features', '--weights', TINY_WEIGHTS, '--images', PHOTOS, '--out', join(tmp, 'x.safetensors')];
    const cases: [string[], string][] = [
      [[...base, '--format', 'xml'], "error: option '--format <format>' argument 'xml' is invalid. Allowed choices are safetensors, npy.\n"],
      [[...base, '--resolution', 'big'], "error: option '--resolution <pixels>' argument 'big' is invalid. expected a positive integer.\n"],
      [[...base, '--on-error', 'ignore'], "error: option '--on-error <mode>' argument 'ignore' is invalid. Allowed choices are skip, fail.\n"],
      [
        [...base, '--layers', '1,x'],
        "error: option '--layers <n|list>' argument '1,x' is invalid. expected a count of last blocks (4) or comma-separated 0-based block indices (2,5,8,11).\n",
      ],
      [[...base, '--device', 'gpu'], "error: option '--device <device>' argument 'gpu' is invalid. expected cpu, cuda or cuda:<index>.\n"],
      [[...base, '--formt', 'npy'], "error: unknown option '--formt'\n(Did you mean --format?)\n"],
      [['features', '--images', PHOTOS, '--out', 'x'], "error: required option '--weights <path>' not specified\n"],
      [[...base, '--resolution', '100'], 'error: resolution 100 is not a multiple of the patch size 16: use 96 or 112, or --round to round it\n'],
      [
        [...base, '--model', 'vitl61'],
        'error: unknown backbone preset "vitl61" (did you mean "vitl16"?); known: vits16, vits16plus, vitb16, vitl16, vitl16plus, vith16plus, vit7b16, vitl16_sat493m, vit7b16_sat493m\n',
      ],
      [['features', '--weights', TINY_WEIGHTS, '--images', join(tmp, 'nothing'), '--out', 'x'], `error: no such file or folder: "${join(tmp, 'nothing')}"\n`],
      [[...base, '--layers', '3'], 'error: extractFeatures: layers 3 asks for the last 3 blocks of a 2-block model\n'],
    ];
    for (const [args, message] of cases) {
      const r = dinov3(...args);
      expect(r.stderr).toBe(message);
      expect(r.code).toBe(1);
    }
  });
});

describe('dinov3 pca', () => {
  test('writes a PNG of the input beside its PCA, at the model-input size', async () => {
    const out = join(tmp, 'chelsea_pca.png');
    const r = dinov3('pca', '--weights', TINY_WEIGHTS, '--image', CHELSEA, '--out', out, '--resolution', '128', '--json');
    expect(r.code).toBe(0);
    // 451×300 → keepAspect with short side 128: 192×128 (12×8 patches); input + PCA side by side → 384×128.
    expect(JSON.parse(r.stdout)).toEqual({ out, width: 384, height: 128, grid: [8, 12] });
    expect(r.stderr).toBe(`pca: ${CHELSEA} → ${out} (384×128, 8×12 patches)\n`);
    const meta = await sharp(out).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 384, 128]);
  });

  test('the HF folder, --no-composite, EXIF orientation applied, bilinear upsampling', async () => {
    const out = join(tmp, 'rotated_pca.png');
    const r = dinov3('pca', '--weights', HF, '--image', EXIF6, '--out', out, '--resolution', '64', '--no-composite', '--upsample', 'bilinear');
    expect(r.code).toBe(0);
    const meta = await sharp(out).metadata();
    expect([meta.width, meta.height]).toEqual([96, 64]); // 226×150 upright → 96×64
  });

  test('errors: missing image, unreadable weights', () => {
    const missing = join(tmp, 'missing.jpg');
    const r = dinov3('pca', '--weights', TINY_WEIGHTS, '--image', missing, '--out', join(tmp, 'm.png'));
    expect(r.stderr).toBe(`error: cannot read image "${missing}": ENOENT: no such file or directory, open '${missing}'\n`);
    expect(r.code).toBe(1);
    const w = dinov3('pca', '--weights', join(tmp, 'nope.pth'), '--image', CHELSEA, '--out', join(tmp, 'm.png'));
    expect(w.stderr).toBe(`error: ${join(tmp, 'nope.pth')}: no such file or directory\n`);
    expect(w.code).toBe(1);
  });
});

describe('in-process', () => {
  const capture = () => {
    const chunks = { out: '', err: '' };
    const io = {
      stdout: { write: (s: string) => (chunks.out += s) },
      stderr: Object.assign(new Writable({ write: (c, _e, cb) => ((chunks.err += String(c)), cb()) }), { isTTY: false }),
    };
    return { io, chunks };
  };

  test('the compiled entry point is an executable node script', () => {
    expect(readFileSync(cli, 'utf8').split('\n')[0]).toBe('#!/usr/bin/env node');
    expect(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).bin).toEqual({ dinov3: 'dist/src/cli/main.js' });
  });

  test('help, version, no arguments', async () => {
    const a = capture();
    expect(await run(['--help'], a.io)).toBe(0);
    expect(a.chunks.out).toMatch(/^Usage: dinov3 \[options\] \[command\]/);
    expect(a.chunks.out).toMatch(/features \[options\]/);
    const b = capture();
    expect(await run(['--version'], b.io)).toBe(0);
    expect(b.chunks.out).toBe(`${JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version}\n`);
    const c = capture();
    expect(await run([], c.io)).toBe(1);
    expect(c.chunks.err).toMatch(/^Usage: dinov3/);
    const d = capture();
    expect(await run(['features', '--help'], d.io)).toBe(0);
    expect(d.chunks.out).toMatch(/--on-error <mode>/);
  });

  test('the progress bar (on a terminal) shows the count, rate and ETA', () => {
    let text = '';
    const tty = Object.assign(new Writable({ write: (c, _e, cb) => ((text += String(c)), cb()) }), { isTTY: true, columns: 200 });
    const bar = progressBar({ stdout: { write: () => true }, stderr: tty }, 'features', true);
    bar.update(2, 8, 1);
    bar.update(8, 8, 1);
    bar.stop();
    expect(text).toMatch(/features \|.*\| 100% \| 8\/8 images \| [\d.]+ img\/s \| ETA 0s \| skipped 1/);
    let silent = '';
    const pipe = Object.assign(new Writable({ write: (c, _e, cb) => ((silent += String(c)), cb()) }), { isTTY: false });
    const none = progressBar({ stdout: { write: () => true }, stderr: pipe }, 'features', true);
    none.update(1, 2, 0);
    none.stop();
    expect(silent).toBe('');
  });
});
