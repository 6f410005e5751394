// Checkpoint round trips for configurations beyond the fixtures (SwiGLU, untied norms, no qkv bias, RMSNorm, other
// widths, min/max RoPE periods), in the official and the Hugging Face layouts (RECIPE §1.1, §1.8).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import {
  ConfigError,
  DinoVisionTransformer,
  Generator,
  init,
  loadBackbone,
  memory,
  randn,
  saveBackbone,
  scope,
  type VitConfig,
  type VitConfigInput,
  ffnHiddenDim,
  zeros,
} from '../../../src/index.js';
import { expectClose } from './helpers.js';

/** The architecture up to equivalent spellings (SwiGLU alignment/ratio giving the same width; mask_k_bias without bias). */
function canonical(c: VitConfig) {
  const { ffn_layer, ffn_ratio, mask_k_bias, ...rest } = c;
  return { ...rest, gated: ffn_layer !== 'mlp', hidden: ffnHiddenDim(c.embed_dim, ffn_ratio, ffn_layer), maskedKeyBias: mask_k_bias && c.qkv_bias };
}

const dir = mkdtempSync(join(tmpdir(), 'dinov3-ckpt-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const CASES: [string, VitConfigInput, { hf: boolean; hidden: number }][] = [
  [
    'SwiGLU (S+-like)',
    {
      embed_dim: 64,
      depth: 2,
      num_heads: 4,
      ffn_ratio: 6,
      ffn_layer: 'swiglu',
      n_storage_tokens: 4,
      mask_k_bias: true,
      layerscale_init: 1e-5,
      norm_layer: 'layernormbf16',
      pos_embed_rope_dtype: 'fp32',
    },
    { hf: true, hidden: 256 },
  ],
  [
    '7B-like: swiglu64, no qkv bias, untied local CLS norm',
    {
      embed_dim: 128,
      depth: 2,
      num_heads: 2,
      ffn_ratio: 3,
      ffn_layer: 'swiglu64',
      qkv_bias: false,
      mask_k_bias: true,
      untie_global_and_local_cls_norm: true,
      n_storage_tokens: 4,
      layerscale_init: 1e-5,
      norm_layer: 'layernormbf16',
      pos_embed_rope_dtype: 'fp32',
    },
    { hf: true, hidden: 256 },
  ],
  [
    'training default: eps 1e-6, no registers, no masked bias, bf16 RoPE',
    { embed_dim: 96, depth: 3, num_heads: 3, layerscale_init: 1e-5, drop_path_rate: 0.3 },
    { hf: true, hidden: 384 },
  ],
  [
    'no LayerScale, key bias kept',
    { embed_dim: 32, depth: 1, num_heads: 2, n_storage_tokens: 1, norm_layer: 'layernormbf16', pos_embed_rope_dtype: 'fp32' },
    { hf: true, hidden: 128 },
  ],
  [
    'RMSNorm, untied CLS/patch norms, min/max periods',
    {
      embed_dim: 64,
      depth: 2,
      num_heads: 2,
      norm_layer: 'rmsnorm',
      untie_cls_and_patch_norms: true,
      pos_embed_rope_base: null,
      pos_embed_rope_min_period: 0.5,
      pos_embed_rope_max_period: 50,
      layerscale_init: 0.1,
      n_storage_tokens: 2,
    },
    { hf: false, hidden: 256 },
  ],
];

describe.each(CASES)('%s', (_, cfg, expected) => {
  test('state dict and outputs survive save → load (official safetensors), strict', async () => {
    const before = memory().liveTensors;
    const g = new Generator(11);
    const model = new DinoVisionTransformer(cfg, { generator: g }).eval();
    for (const [k, t] of model.namedParameters())
      if (/norm|gamma|bias$/.test(k)) init.normal_(t, { mean: k.includes('weight') || k.includes('gamma') ? 1 : 0, std: 0.1, generator: g });
    const ffn = model.blocks[0]!.mlp.stateDict();
    expect((ffn.get('fc1.weight') ?? ffn.get('w1.weight'))!.shape[0]).toBe(expected.hidden);
    const path = join(dir, `${cfg.embed_dim}-${cfg.norm_layer ?? 'ln'}-${cfg.ffn_layer ?? 'mlp'}.safetensors`);
    await saveBackbone(model, path);
    // The architecture comes back from the tensors alone except what they cannot tell (eps, RoPE dtype, drop path).
    const { model: loaded, config } = await loadBackbone(path, {
      config: {
        norm_layer: model.config.norm_layer,
        pos_embed_rope_dtype: model.config.pos_embed_rope_dtype,
        pos_embed_rope_base: model.config.pos_embed_rope_base,
        pos_embed_rope_min_period: model.config.pos_embed_rope_min_period,
        pos_embed_rope_max_period: model.config.pos_embed_rope_max_period,
        drop_path_rate: model.config.drop_path_rate,
        pos_embed_rope_rescale_coords: model.config.pos_embed_rope_rescale_coords,
        layerscale_init: model.config.layerscale_init,
      },
    });
    expect(canonical(config)).toEqual(canonical(model.config));
    const sd = loaded.stateDict();
    expect([...sd.keys()].sort()).toEqual([...model.stateDict().keys()].sort());
    for (const [k, t] of model.stateDict()) {
      expect(sd.get(k)!.dtype, k).toBe(t.dtype);
      expect(sd.get(k)!.toArray(), k).toEqual(t.toArray());
    }
    scope(() => {
      const x = randn([2, 3, 48, 32], { generator: g });
      const a = model.forwardFeatures(x);
      const b = loaded.forwardFeatures(x);
      expect(a.prenorm.shape).toEqual([2, 1 + model.config.n_storage_tokens + 6, model.config.embed_dim]);
      expectClose(b.prenorm, a.prenorm, 'prenorm', 0);
      expectClose(b.clsToken, a.clsToken, 'cls', 0);
      if (model.config.qkv_bias && model.config.mask_k_bias) {
        // Invariant: whatever the checkpoint holds in the k third of the bias, the key bias is zero.
        const qkv = loaded.blocks[0]!.attn.qkv;
        init.constant_(qkv.bias!, 5);
        const out = qkv.forward(zeros([1, model.config.embed_dim]));
        expect(out.narrow(1, model.config.embed_dim, model.config.embed_dim).abs().max().item()).toBe(0);
        expect(out.narrow(1, 0, model.config.embed_dim).min().item()).toBe(5);
      }
    });
    model.dispose();
    loaded.dispose();
    expect(memory().liveTensors).toBe(before);
  });

  test(expected.hf ? 'Hugging Face layout round trip (config.json + model.safetensors)' : 'Hugging Face cannot express it: ConfigError', async () => {
    const before = memory().liveTensors;
    const g = new Generator(12);
    const model = new DinoVisionTransformer(cfg, { generator: g }).eval();
    for (const [k, t] of model.namedParameters()) if (/norm|gamma|bias$/.test(k)) init.normal_(t, { mean: 0.5, std: 0.1, generator: g });
    const folder = join(dir, `hf-${cfg.embed_dim}-${cfg.ffn_layer ?? 'mlp'}`);
    if (!expected.hf) {
      await expect(saveBackbone(model, folder, { format: 'huggingface' })).rejects.toThrow(ConfigError);
      await expect(saveBackbone(model, folder, { format: 'huggingface' })).rejects.toThrow(
        'the Hugging Face DINOv3ViTModel cannot express norm_layer "rmsnorm"',
      );
      model.dispose();
      return;
    }
    await saveBackbone(model, folder, { format: 'huggingface' });
    const { model: loaded, format, config } = await loadBackbone(folder);
    expect(format).toBe('huggingface');
    expect(config.embed_dim).toBe(model.config.embed_dim);
    expect(config.untie_global_and_local_cls_norm).toBe(false); // HF drops local_cls_norm (unused at inference)
    scope(() => {
      const x = randn([2, 3, 32, 64], { generator: g });
      const a = model.forwardFeatures(x);
      const b = loaded.forwardFeatures(x);
      // HF computes RoPE in fp32 from rope_theta: exact for fp32-RoPE models, close for bf16 ones.
      const tol = model.config.pos_embed_rope_dtype === 'fp32' ? 1e-6 : 2e-2;
      expectClose(b.prenorm, a.prenorm, 'prenorm', tol);
      expectClose(b.patchTokens, a.patchTokens, 'patches', tol);
    });
    model.dispose();
    loaded.dispose();
    expect(memory().liveTensors).toBe(before);
  });
});
