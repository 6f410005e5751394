// Every released architecture, built on the meta device (no memory): token counts at 224 px and parameter counts
// against the README (RECIPE §1.1, §1.8, §11).
import { describe, expect, test } from 'vitest';
import { BACKBONE_PRESETS, DinoVisionTransformer, empty, memory, type PresetName, scope } from '../../../src/index.js';

// Exact counts (from the RECIPE §1.8 key table); the README prints them loosely rounded (21.6M as "21M").
const PARAMS: Record<PresetName, number> = {
  vits16: 21_601_152,
  vits16plus: 28_697_472,
  vitb16: 85_669_632,
  vitl16: 303_154_176,
  vitl16plus: 403_915_776,
  vith16plus: 840_633_600,
  vit7b16: 6_716_043_264,
  vitl16_sat493m: 303_156_224, // + local_cls_norm
  vit7b16_sat493m: 6_716_043_264,
};

describe.each(Object.values(BACKBONE_PRESETS))('$name', (preset) => {
  test('builds on meta with the README parameter count and 1 + 4 + 196 tokens at 224 px', () => {
    const before = memory();
    const model = new DinoVisionTransformer(preset.config, { device: 'meta' });
    const D = preset.config.embed_dim;
    expect(model.numParameters()).toBe(PARAMS[preset.name as PresetName]);
    if (preset.readmeParams) {
      const readme = Number(preset.readmeParams.replace(/[M,]/g, '')) * 1e6;
      expect(Math.abs(model.numParameters() - readme) / readme).toBeLessThan(0.03);
    }
    scope(() => {
      const x = empty([2, 3, 224, 224], { device: 'meta' });
      const f = model.forwardFeatures(x);
      expect(f.prenorm.shape).toEqual([2, 1 + 4 + 196, D]);
      expect(f.clsToken.shape).toEqual([2, D]);
      expect(f.storageTokens.shape).toEqual([2, 4, D]);
      expect(f.patchTokens.shape).toEqual([2, 196, D]);
      const [patches, cls, storage] = model.getIntermediateLayers(x, { reshape: true, returnClassToken: true, returnExtraTokens: true })[0]!;
      expect([patches.shape, cls.shape, storage.shape]).toEqual([
        [2, D, 14, 14],
        [2, D],
        [2, 4, D],
      ]);
    });
    model.dispose();
    expect(memory().cpuBytes).toBe(before.cpuBytes);
    expect(memory().liveTensors).toBe(before.liveTensors);
  });
});

test('the 7B keys: no qkv bias or bias_mask, SwiGLU 8192, periods [32], local_cls_norm (RECIPE §1.8)', () => {
  const model = new DinoVisionTransformer(BACKBONE_PRESETS.vit7b16.config, { device: 'meta' });
  const sd = model.stateDict();
  const shapes = (k: string) => sd.get(k)?.shape;
  expect(shapes('rope_embed.periods')).toEqual([32]);
  expect(sd.has('blocks.0.attn.qkv.bias')).toBe(false);
  expect(sd.has('blocks.0.attn.qkv.bias_mask')).toBe(false);
  expect(shapes('blocks.39.mlp.w1.weight')).toEqual([8192, 4096]);
  expect(shapes('blocks.39.mlp.w2.weight')).toEqual([8192, 4096]);
  expect(shapes('blocks.39.mlp.w3.weight')).toEqual([4096, 8192]);
  expect(shapes('local_cls_norm.weight')).toEqual([4096]);
  expect(sd.has('cls_norm.weight')).toBe(false);
  model.dispose();
});

test('ViT-L LVD keys: periods [16], qkv bias + bias_mask, fc1/fc2, no local_cls_norm', () => {
  const model = new DinoVisionTransformer(BACKBONE_PRESETS.vitl16.config, { device: 'meta' });
  const keys = [...model.stateDict().keys()];
  expect(keys.slice(0, 6)).toEqual(['cls_token', 'storage_tokens', 'mask_token', 'patch_embed.proj.weight', 'patch_embed.proj.bias', 'rope_embed.periods']);
  expect(keys.slice(6, 22)).toEqual([
    'blocks.0.norm1.weight',
    'blocks.0.norm1.bias',
    'blocks.0.attn.qkv.weight',
    'blocks.0.attn.qkv.bias',
    'blocks.0.attn.qkv.bias_mask',
    'blocks.0.attn.proj.weight',
    'blocks.0.attn.proj.bias',
    'blocks.0.ls1.gamma',
    'blocks.0.norm2.weight',
    'blocks.0.norm2.bias',
    'blocks.0.mlp.fc1.weight',
    'blocks.0.mlp.fc1.bias',
    'blocks.0.mlp.fc2.weight',
    'blocks.0.mlp.fc2.bias',
    'blocks.0.ls2.gamma',
    'blocks.1.norm1.weight',
  ]);
  expect(keys.slice(-2)).toEqual(['norm.weight', 'norm.bias']);
  expect(keys).toHaveLength(5 + 1 + 24 * 15 + 2);
  model.dispose();
});
