// Parity of the backbone with the official DINOv3 code and with Hugging Face transformers, on the reference
// fixtures (RECIPE §1.2–§1.6): float32, within 1e-4 relative.
import { describe, expect, test } from 'vitest';
import { loadBackbone, memory, scope } from '../../../src/index.js';
import { disposeAll, expectClose, expectOfficialFeatures, expectHfOutputs, FIXTURES, loadFixture } from './helpers.js';

const OFFICIAL_CONFIG = {
  embed_dim: 64,
  depth: 2,
  num_heads: 4,
  ffn_ratio: 4,
  qkv_bias: true,
  layerscale_init: 1e-5,
  norm_layer: 'layernormbf16',
  ffn_layer: 'mlp',
  ffn_bias: true,
  proj_bias: true,
  n_storage_tokens: 4,
  mask_k_bias: true,
  pos_embed_rope_base: 100,
  pos_embed_rope_normalize_coords: 'separate',
  pos_embed_rope_rescale_coords: 2,
  pos_embed_rope_dtype: 'fp32',
} as const;

describe.each(['official_vits_like.pth', 'official_vits_like.safetensors'])('official ViT from %s', (file) => {
  test('the architecture is read off the checkpoint and loads strictly', async () => {
    const { model, config, report, format } = await loadBackbone(FIXTURES + file);
    expect(format).toBe('official');
    expect(report).toEqual({ missing: [], unexpected: [], mismatched: [] });
    expect(config).toMatchObject(OFFICIAL_CONFIG);
    expect(model.training).toBe(false);
    model.dispose();
  });

  test('every output of forward_features, the RoPE tables and get_intermediate_layers match', async () => {
    const before = memory().liveTensors;
    const io = await loadFixture('official_vits_like_io.safetensors');
    const { model } = await loadBackbone(FIXTURES + file, { config: OFFICIAL_CONFIG });
    const x = io.get('input')!;
    scope(() => {
      const f = model.forwardFeatures(x);
      expectOfficialFeatures(f, io);
      expect(f.masks).toBeNull();
      expectClose(model.forward(x), io.get('cls')!, 'forward');

      const m = model.forwardFeatures(x, io.get('masks')!);
      expectClose(m.clsToken, io.get('masked_cls')!, 'masked_cls');
      expectClose(m.patchTokens, io.get('masked_patch')!, 'masked_patch');
      expect(m.masks).toBe(io.get('masks'));

      const { sin, cos } = model.ropeEmbed.forward({ H: 4, W: 3 });
      expectClose(sin, io.get('rope_sin')!, 'rope_sin');
      expectClose(cos, io.get('rope_cos')!, 'rope_cos');

      const inter = model.getIntermediateLayers(x, { n: 2, reshape: true, returnClassToken: true, norm: true });
      expect(inter).toHaveLength(2);
      inter.forEach(([patches, cls], i) => {
        expectClose(patches, io.get(`inter${i}_patch_nchw`)!, `inter${i}_patch_nchw`);
        expectClose(cls, io.get(`inter${i}_cls`)!, `inter${i}_cls`);
      });
      const [raw0] = model.getIntermediateLayers(x, { n: [0], norm: false });
      expectClose(raw0!, io.get('inter_raw_block0')!, 'inter_raw_block0');
    });
    model.dispose();
    disposeAll(io);
    expect(memory().liveTensors).toBe(before);
  });
});

describe('Hugging Face ViT folder', () => {
  test('loads strictly with the architecture from config.json', async () => {
    const { model, config, report, format } = await loadBackbone(`${FIXTURES}hf_vits_like`);
    expect(format).toBe('huggingface');
    expect(report).toEqual({ missing: [], unexpected: [], mismatched: [] });
    expect(config).toMatchObject({ ...OFFICIAL_CONFIG, untie_global_and_local_cls_norm: false });
    const sd = model.stateDict();
    // The k third of the qkv bias is zero (HF has no k bias) and masked.
    const mask = sd.get('blocks.0.attn.qkv.bias_mask')!.toArray();
    expect(mask).toEqual([...Array(64).fill(1), ...Array(64).fill(0), ...Array(64).fill(1)]);
    expect(sd.get('blocks.1.attn.qkv.bias')!.toArray().slice(64, 128)).toEqual(Array(64).fill(0));
    model.dispose();
  });

  test('last_hidden_state, pooler_output and every hidden state match transformers', async () => {
    const before = memory().liveTensors;
    const io = await loadFixture('hf_vits_like_io.safetensors');
    const { model } = await loadBackbone(`${FIXTURES}hf_vits_like`);
    scope(() => {
      const f = expectHfOutputs(model, io);
      expectClose(f.prenorm, io.get('hidden_state_2')!, 'prenorm = hidden_state_2');
    });
    model.dispose();
    disposeAll(io);
    expect(memory().liveTensors).toBe(before);
  });
});

test('bfloat16 parameters (dtype option): the same features within bf16 precision; RoPE stays fp32', async () => {
  const before = memory().liveTensors;
  const io = await loadFixture('official_vits_like_io.safetensors');
  const { model } = await loadBackbone(`${FIXTURES}official_vits_like.pth`, { dtype: 'bfloat16' });
  expect(model.clsToken.dtype).toBe('bfloat16');
  expect(model.ropeEmbed.periods.dtype).toBe('float32');
  scope(() => {
    const f = model.forwardFeatures(io.get('input')!);
    expect(f.patchTokens.dtype).toBe('bfloat16');
    expectClose(f.patchTokens, io.get('patch')!, 'bf16 patch', 5e-2);
    expectClose(f.clsToken, io.get('cls')!, 'bf16 cls', 5e-2);
  });
  model.dispose();
  disposeAll(io);
  expect(memory().liveTensors).toBe(before);
});
