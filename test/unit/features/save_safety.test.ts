// saveFeatures beyond the happy path: outputs that stream to disk (peak memory far below the output size), outputs
// that would overwrite an input or the weights, npy folders replaced as a set (also under kill -9), leftovers of
// interrupted writes, and loadFeatures reading back what was written.
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { checkFeatureOutput, checkPcaOutput, type FeatureBackbone, loadFeatures, pcaImage, saveFeatures } from '../../../src/features/index.js';
import { openSafetensors } from '../../../src/io/safetensors.js';
import { ConfigError, ImageError } from '../../../src/native/errors.js';
import { type DinoVisionTransformer, full, zeros } from '../../../src/index.js';
import type { Tensor } from '../../../src/tensor/tensor.js';
import { ensureDist, ROOT } from '../cli/dist.js';
import { CHELSEA, COFFEE, loadTinyModel, TINY_WEIGHTS } from './helpers.js';

const tmp = mkdtempSync(join(tmpdir(), 'dinov3-save-safety-'));
let model: DinoVisionTransformer;
beforeAll(async () => {
  model = await loadTinyModel();
});
afterAll(() => {
  model.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

/** A backbone that costs nothing to run: patch size 1, constant outputs of width D (value = 1 + image index). */
function fakeBackbone(D: number): FeatureBackbone {
  return {
    embedDim: D,
    patchSize: 1,
    nStorageTokens: 0,
    forwardFeatures: (x: Tensor) => {
      const [B, , H, W] = x.shape as [number, number, number, number];
      return { clsToken: full([B, D], 2), storageTokens: zeros([B, 0, D]), patchTokens: full([B, H * W, D], 1) };
    },
    getIntermediateLayers: () => {
      throw new Error('not used');
    },
  };
}

function peakRss(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : process.memoryUsage().rss;
}

describe('outputs stream to disk', () => {
  test('a 640 MiB feature file is written with less than half its size in peak memory (rows stream to disk)', async () => {
    const fake = fakeBackbone(2048);
    const x = zeros([20, 3, 64, 64]); // 20 images of 64×64 patches of width 2048: 32 MiB of features each
    const out = join(tmp, 'big.safetensors');
    const peak0 = Math.max(peakRss(), process.memoryUsage().rss);
    try {
      const r = await saveFeatures(fake, x, out, { batchSize: 1 });
      expect(r.tensors).toEqual({ cls: [20, 2048], patches: [20, 64, 64, 2048] });
    } finally {
      x.dispose();
    }
    const size = statSync(out).size;
    expect(size).toBeGreaterThan(640 * 2 ** 20);
    expect(peakRss() - peak0).toBeLessThan(300 * 2 ** 20);
    const f = openSafetensors(out);
    expect(f.tensors.get('patches')!.shape).toEqual([20, 64, 64, 2048]);
    expect(Array.from(new Float32Array(new Uint8Array(f.tensors.get('cls')!.read()).buffer).slice(0, 3))).toEqual([2, 2, 2]);
    rmSync(out);
  }, 120_000);
});

describe('the output location is checked before any work', () => {
  test('an output that is an input image, a link to it, or the weights is refused', async () => {
    const img = join(tmp, 'photo.jpg');
    copyFileSync(CHELSEA, img);
    const before = readFileSync(img);
    await expect(saveFeatures(model, [img], img)).rejects.toThrow(
      new ConfigError(`saveFeatures: the output "${img}" would overwrite the input image "${img}"`),
    );
    const link = join(tmp, 'link.safetensors');
    symlinkSync(img, link);
    await expect(saveFeatures(model, [img], link)).rejects.toThrow(
      new ConfigError(`saveFeatures: the output "${link}" would overwrite the input image "${img}"`),
    );
    const weights = join(tmp, 'weights.safetensors');
    copyFileSync(TINY_WEIGHTS, weights);
    await expect(saveFeatures(model, [img], weights, { protectedPaths: [weights] })).rejects.toThrow(
      new ConfigError(`saveFeatures: the output "${weights}" would overwrite "${weights}" (the model weights or another protected file)`),
    );
    // An npy folder that holds an input is refused too; so is an existing folder for the single-file format.
    await expect(checkFeatureOutput(tmp, { format: 'npy', inputs: [img] })).rejects.toThrow(
      `saveFeatures: the output "${tmp}" would overwrite the input image "${img}"`,
    );
    await expect(checkFeatureOutput(tmp, { format: 'safetensors' })).rejects.toThrow(`saveFeatures: the output "${tmp}" exists and is not a regular file`);
    expect(readFileSync(img).equals(before)).toBe(true);
    expect(readFileSync(weights).equals(readFileSync(TINY_WEIGHTS))).toBe(true);
  });
});

describe('npy folders', () => {
  test('replaced as a set; leftovers of an interrupted write are removed; loadFeatures reads both formats back', async () => {
    const out = join(tmp, 'feats');
    const leftover = join(tmp, '.feats.dinov3-tmp-999999999-dead');
    mkdirSync(join(leftover, 'out'), { recursive: true });
    writeFileSync(join(leftover, 'cls.bin'), 'partial');
    await saveFeatures(model, [CHELSEA, COFFEE], out, { format: 'npy', resolution: 32 });
    writeFileSync(join(out, 'stale.npy'), 'from an older run');
    const r = await saveFeatures(model, [COFFEE, CHELSEA, COFFEE], out, { format: 'npy', resolution: 48 });
    expect(readdirSync(out).sort()).toEqual(['cls.npy', 'meta.json', 'patches.npy', 'storage.npy']);
    expect(readdirSync(tmp).filter((n) => n.includes('dinov3-tmp'))).toEqual([]);
    expect(r.duplicates).toEqual([{ path: COFFEE, sameAs: COFFEE }]);
    const back = await loadFeatures(out);
    expect(back.paths).toEqual([COFFEE, CHELSEA]);
    expect(back.tensors.get('patches')!.shape).toEqual([2, 3, 3, 64]);
    const st = join(tmp, 'feats.safetensors');
    await saveFeatures(model, [COFFEE, CHELSEA], st, { resolution: 48, featureDtype: 'float16' });
    const back2 = await loadFeatures(st);
    expect(back2.paths).toEqual([COFFEE, CHELSEA]);
    expect(back2.grids).toEqual([
      [3, 3],
      [3, 3],
    ]);
    const a = back.tensors.get('cls')!.data;
    const b = back2.tensors.get('cls')!.data;
    expect(a.length).toBe(128);
    expect(a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0)).toBeLessThan(1e-2);
  });

  test('kill -9 during a rewrite leaves the old set or the new set, never a mix', async () => {
    ensureDist();
    const out = join(tmp, 'killed');
    const script = `
      const { saveFeatures } = await import(${JSON.stringify(join(ROOT, 'dist', 'src', 'features', 'save.js'))});
      const { full, zeros } = await import(${JSON.stringify(join(ROOT, 'dist', 'src', 'index.js'))});
      const fake = (v) => ({ embedDim: 256, patchSize: 1, nStorageTokens: 0,
        forwardFeatures: (x) => ({ clsToken: full([x.shape[0], 256], v), storageTokens: zeros([x.shape[0], 0, 256]), patchTokens: full([x.shape[0], 32 * 32, 256], v) }) });
      const x = zeros([16, 3, 32, 32]);
      for (let i = 1; ; i++) { await saveFeatures(fake(i), x, process.argv[1], { format: 'npy', batchSize: 4 }); process.stdout.write('w'); }
    `;
    for (let round = 0; round < 4; round++) {
      const child = spawn(process.execPath, ['--input-type=module', '-e', script, out], { stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise<void>((res) => child.stdout.once('data', () => res()));
      await new Promise((res) => setTimeout(res, 50 + 97 * round));
      child.kill('SIGKILL');
      await new Promise((res) => child.once('exit', res));
      // A complete set: meta.json and exactly the files it lists, each of one generation (all values equal).
      expect(existsSync(join(out, 'meta.json'))).toBe(true);
      const back = await loadFeatures(out);
      expect(readdirSync(out).sort()).toEqual(['cls.npy', 'meta.json', 'patches.npy']);
      const v = back.tensors.get('cls')!.data[0]!;
      expect(back.tensors.get('patches')!.data.every((p) => p === v)).toBe(true);
      expect(back.tensors.get('cls')!.data.every((p) => p === v)).toBe(true);
    }
    // The next write removes what the killed process left behind.
    await saveFeatures(model, [CHELSEA], out, { format: 'npy', resolution: 32 });
    expect(readdirSync(tmp).filter((n) => n.startsWith('.killed'))).toEqual([]);
  }, 120_000);
});

describe('a write killed between the two renames of the fallback (no atomic exchange)', () => {
  test('the old set, moved aside, is put back by the next write, even one that then fails', async () => {
    const out = join(tmp, 'aside');
    await saveFeatures(model, [CHELSEA], out, { format: 'npy', resolution: 32 });
    const before = readFileSync(join(out, 'cls.npy'));
    // What a process killed after renaming the old set aside leaves: no `out`, the old set in its work folder.
    const work = join(tmp, '.aside.dinov3-tmp-999999999-dead');
    mkdirSync(join(work, 'out'), { recursive: true });
    writeFileSync(join(work, 'out', 'cls.npy'), 'the new set, complete or not');
    renameSync(out, join(work, 'old'));
    const bad = join(tmp, 'not-an-image.jpg');
    writeFileSync(bad, 'not a jpeg');
    await expect(saveFeatures(model, [bad], out, { format: 'npy', resolution: 32, onError: 'fail' })).rejects.toBeInstanceOf(ImageError);
    expect(readFileSync(join(out, 'cls.npy')).equals(before)).toBe(true);
    expect(readdirSync(out).sort()).toEqual(['cls.npy', 'meta.json', 'patches.npy', 'storage.npy']);
    expect(readdirSync(tmp).filter((n) => n.startsWith('.aside'))).toEqual([]);
  });
});

describe('the CLI and the PCA image never overwrite an input or the weights', () => {
  test('dinov3 features/pca --out onto the weights or the input fail before loading anything; --threads is bounded', () => {
    const cli = ensureDist();
    const weights = join(tmp, 'w.safetensors');
    copyFileSync(TINY_WEIGHTS, weights);
    const img = join(tmp, 'in.jpg');
    copyFileSync(CHELSEA, img);
    const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { ...process.env, NODE_NO_WARNINGS: '1' } });
    let r = run('features', '--weights', weights, '--images', img, '--out', weights);
    expect([r.status, r.stderr]).toEqual([
      1,
      `error: saveFeatures: the output "${weights}" would overwrite "${weights}" (the model weights or another protected file)\n`,
    ]);
    r = run('features', '--weights', weights, '--images', img, '--out', img);
    expect([r.status, r.stderr]).toEqual([1, `error: saveFeatures: the output "${img}" would overwrite the input image "${img}"\n`]);
    r = run('pca', '--weights', weights, '--image', img, '--out', img);
    expect([r.status, r.stderr]).toEqual([1, `error: pcaImage: the output "${img}" would overwrite the input image "${img}"\n`]);
    r = run('pca', '--weights', weights, '--image', img, '--out', join(tmp, 'x.bmp'));
    expect([r.status, r.stderr]).toEqual([
      1,
      `error: pcaImage: cannot tell the image format of "${join(tmp, 'x.bmp')}": use a .png, .jpg, .jpeg or .webp name\n`,
    ]);
    r = run('features', '--weights', weights, '--images', img, '--out', join(tmp, 'f.safetensors'), '--threads', '100000');
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^error: option '--threads <n>' argument '100000' is invalid\. this machine has \d+ CPUs?: use at most \d+\.\n$/);
    expect(readFileSync(weights).equals(readFileSync(TINY_WEIGHTS))).toBe(true);
    expect(readFileSync(img).equals(readFileSync(CHELSEA))).toBe(true);
  });

  test('pcaImage writes JPEG bytes under a .jpg name, PNG under .png', async () => {
    const jpg = join(tmp, 'pca.jpg');
    const png = join(tmp, 'pca.png');
    await pcaImage(model, CHELSEA, jpg, { resolution: 64 });
    await pcaImage(model, CHELSEA, png, { resolution: 64 });
    expect([...readFileSync(jpg).subarray(0, 3)]).toEqual([0xff, 0xd8, 0xff]);
    expect(readFileSync(png).subarray(1, 4).toString('latin1')).toBe('PNG');
    await expect(checkPcaOutput(CHELSEA, { image: CHELSEA })).rejects.toThrow(`pcaImage: the output "${CHELSEA}" would overwrite the input image "${CHELSEA}"`);
  });
});
