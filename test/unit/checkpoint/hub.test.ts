// loadBackbone resolves Hugging Face hub ids in the local hub cache (snapshots/<refs/revision>, files linked to
// ../../blobs) and released .pth names in torch.hub's checkpoint folder; nothing is downloaded, and a missing model
// gets an error saying what to fetch and where to put it.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, test } from 'vitest';

import { huggingFaceCacheDir, loadBackbone, resolveCheckpoint, torchHubCheckpointsDir } from '../../../src/index.js';
import { CheckpointError } from '../../../src/native/errors.js';
import { FIXTURES } from '../io/helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'dinov3-hub-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const saved = { ...process.env };
afterEach(() => {
  for (const k of ['HF_HUB_CACHE', 'HF_HOME', 'TORCH_HOME', 'XDG_CACHE_HOME']) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
});

/** A hub cache holding the tiny HF fixture as org/tiny at two commits (main → the second), sharded in the second. */
function makeHubCache(root: string): void {
  const repo = join(root, 'models--org--tiny');
  mkdirSync(join(repo, 'blobs'), { recursive: true });
  mkdirSync(join(repo, 'refs'));
  copyFileSync(join(FIXTURES, 'hf_vits_like', 'config.json'), join(repo, 'blobs', 'cfg'));
  copyFileSync(join(FIXTURES, 'hf_vits_like', 'model.safetensors'), join(repo, 'blobs', 'weights'));
  writeFileSync(join(repo, 'blobs', 'index'), JSON.stringify({ weight_map: { x: 'model-00001-of-00001.safetensors' } }));
  for (const [commit, files] of [
    ['aaaa', { 'config.json': 'cfg', 'model.safetensors': 'weights' }],
    ['bbbb', { 'config.json': 'cfg', 'model.safetensors.index.json': 'index', 'model-00001-of-00001.safetensors': 'weights' }],
  ] as const) {
    mkdirSync(join(repo, 'snapshots', commit), { recursive: true });
    for (const [name, blob] of Object.entries(files)) symlinkSync(join('..', '..', 'blobs', blob), join(repo, 'snapshots', commit, name));
  }
  writeFileSync(join(repo, 'refs', 'main'), 'bbbb\n');
}

describe('hub ids and cache folders', () => {
  test('cache locations follow HF_HUB_CACHE / HF_HOME and TORCH_HOME', () => {
    expect(huggingFaceCacheDir({ HF_HUB_CACHE: '/a' })).toBe('/a');
    expect(huggingFaceCacheDir({ HF_HOME: '/h' })).toBe('/h/hub');
    expect(huggingFaceCacheDir({ XDG_CACHE_HOME: '/x' })).toBe('/x/huggingface/hub');
    expect(torchHubCheckpointsDir({ TORCH_HOME: '/t' })).toBe('/t/hub/checkpoints');
  });

  test('a hub id loads from the cache (refs/main, or a revision), through the blob links', async () => {
    const cache = join(dir, 'hf');
    makeHubCache(cache);
    process.env.HF_HUB_CACHE = cache;
    expect(await resolveCheckpoint('org/tiny')).toBe(join(cache, 'models--org--tiny', 'snapshots', 'bbbb'));
    const main = await loadBackbone('org/tiny');
    const pinned = await loadBackbone('org/tiny', { revision: 'aaaa' });
    const direct = await loadBackbone(join(FIXTURES, 'hf_vits_like'));
    try {
      expect(main.format).toBe('huggingface');
      for (const m of [main, pinned]) expect(Array.from(m.model.clsToken.toFloat32Array())).toEqual(Array.from(direct.model.clsToken.toFloat32Array()));
    } finally {
      for (const m of [main, pinned, direct]) m.model.dispose();
    }
  });

  test('a missing hub id or released file says what to download and where', async () => {
    process.env.HF_HOME = join(dir, 'empty-hf');
    process.env.TORCH_HOME = join(dir, 'torch');
    const err = (await loadBackbone('facebook/dinov3-vits16-pretrain-lvd1689m').catch((e: unknown) => e)) as CheckpointError;
    expect(err).toBeInstanceOf(CheckpointError);
    expect(err.message).toBe(
      `facebook/dinov3-vits16-pretrain-lvd1689m: not in the Hugging Face cache (${join(dir, 'empty-hf', 'hub')}, revision main). Nothing is downloaded here: ` +
        'fetch it with `hf download facebook/dinov3-vits16-pretrain-lvd1689m` (or huggingface-cli download; gated models need an accepted licence and a token), ' +
        'set HF_HUB_CACHE or HF_HOME to another cache, or pass the folder path',
    );
    const ckpts = join(dir, 'torch', 'hub', 'checkpoints');
    await expect(loadBackbone('dinov3_vits16_pretrain_lvd1689m-08c60483.pth')).rejects.toThrow(
      new RegExp(
        `^dinov3_vits16_pretrain_lvd1689m-08c60483\\.pth: no such file here or in torch\\.hub's checkpoint folder ${ckpts}\\. .* put the file in ${ckpts} \\(or set TORCH_HOME\\), or pass its path$`,
      ),
    );
    mkdirSync(ckpts, { recursive: true });
    copyFileSync(join(FIXTURES, 'official_vits_like.pth'), join(ckpts, 'tiny_backbone.pth'));
    const { model } = await loadBackbone('tiny_backbone.pth');
    expect(model.embedDim).toBe(64);
    model.dispose();
  });
});

describe('preprocessing follows the weights', () => {
  test('SAT-493M weights normalise with the SAT statistics by default; an HF export records them in preprocessor_config.json', async () => {
    const { extractFeatures, saveBackbone } = await import('../../../src/index.js');
    const sat = join(dir, 'tiny_sat493m.safetensors');
    copyFileSync(join(FIXTURES, 'official_vits_like.safetensors'), sat);
    const loaded = await loadBackbone(sat);
    expect([loaded.normalization, loaded.model.normalization]).toEqual(['sat493m', 'sat493m']);
    const image = new URL('../../fixtures/images/chelsea.jpg', import.meta.url).pathname;
    const cls = async (o: { normalization?: 'sat493m' | 'lvd1689m' }) => {
      for await (const f of extractFeatures(loaded.model, [image], { resolution: 32, as: 'arrays', ...o })) return Array.from(f.cls.data);
      throw new Error('no features');
    };
    const byDefault = await cls({});
    expect(byDefault).toEqual(await cls({ normalization: 'sat493m' }));
    expect(byDefault).not.toEqual(await cls({ normalization: 'lvd1689m' }));
    const hf = join(dir, 'hf-sat');
    await saveBackbone(loaded.model, hf, { format: 'huggingface' });
    const pre = JSON.parse(readFileSync(join(hf, 'preprocessor_config.json'), 'utf8')) as { image_mean: number[]; image_std: number[]; size: unknown };
    expect(pre.image_mean).toEqual([0.43, 0.411, 0.296]);
    expect(pre.image_std).toEqual([0.213, 0.156, 0.143]);
    const again = await loadBackbone(hf);
    expect(again.normalization).toBe('sat493m');
    const lvd = await loadBackbone(join(FIXTURES, 'official_vits_like.safetensors'));
    expect(lvd.normalization).toBe('lvd1689m');
    for (const m of [loaded, again, lvd]) m.model.dispose();
  });
});
