// The ViT architecture schema, FFN widths and presets (RECIPE §1.1, §10, §11).
import { describe, expect, test } from 'vitest';
import {
  BACKBONE_PRESETS,
  ConfigError,
  ffnHiddenDim,
  getPreset,
  parseVitConfig,
  presetForFileName,
  trainingBackboneConfig,
  type StudentArchConfig,
} from '../../../src/index.js';

describe('parseVitConfig', () => {
  test('defaults are the official constructor defaults', () => {
    expect(parseVitConfig({})).toEqual({
      img_size: 224,
      patch_size: 16,
      in_chans: 3,
      pos_embed_rope_base: 100,
      pos_embed_rope_min_period: null,
      pos_embed_rope_max_period: null,
      pos_embed_rope_normalize_coords: 'separate',
      pos_embed_rope_shift_coords: null,
      pos_embed_rope_jitter_coords: null,
      pos_embed_rope_rescale_coords: null,
      pos_embed_rope_dtype: 'bf16',
      embed_dim: 768,
      depth: 12,
      num_heads: 12,
      ffn_ratio: 4,
      qkv_bias: true,
      drop_path_rate: 0,
      layerscale_init: null,
      norm_layer: 'layernorm',
      ffn_layer: 'mlp',
      ffn_bias: true,
      proj_bias: true,
      n_storage_tokens: 0,
      mask_k_bias: false,
      untie_cls_and_patch_norms: false,
      untie_global_and_local_cls_norm: false,
    });
  });

  test('an unknown key is a ConfigError with a did-you-mean hint', () => {
    expect(() => parseVitConfig({ embed_dimm: 384 })).toThrow(ConfigError);
    expect(() => parseVitConfig({ embed_dimm: 384 })).toThrow(/^✖ Unrecognized key: "embed_dimm" \(did you mean "embed_dim"\?\)$/);
    expect(() => parseVitConfig({ pos_embed_rope_rescale: 2, zzz: 1 })).toThrow(
      '✖ Unrecognized key: "pos_embed_rope_rescale" (did you mean "pos_embed_rope_rescale_coords"?)\n✖ Unrecognized key: "zzz"',
    );
  });

  test('wrong values name the dotted path', () => {
    expect(() => parseVitConfig({ norm_layer: 'batchnorm' })).toThrow(
      '✖ Invalid option: expected one of "layernorm"|"layernormbf16"|"rmsnorm"\n  → at norm_layer',
    );
    expect(() => parseVitConfig({ embed_dim: 100, num_heads: 4 })).toThrow(
      '✖ embed_dim (100) must be a multiple of 4·num_heads (16) for the axial RoPE\n  → at embed_dim',
    );
    expect(() => parseVitConfig({ pos_embed_rope_min_period: 1, pos_embed_rope_max_period: 10 })).toThrow(/give either pos_embed_rope_base or both/);
    expect(parseVitConfig({ pos_embed_rope_base: null, pos_embed_rope_min_period: 1, pos_embed_rope_max_period: 10 }).pos_embed_rope_base).toBeNull();
  });
});

describe('FFN widths (RECIPE §1.1)', () => {
  test('MLP = int(D·ratio); SwiGLU = int(int(D·ratio)·2/3) rounded up to the alignment', () => {
    expect(ffnHiddenDim(384, 4, 'mlp')).toBe(1536);
    expect(ffnHiddenDim(384, 6, 'swiglu')).toBe(1536);
    expect(ffnHiddenDim(1024, 6, 'swiglu')).toBe(4096);
    expect(ffnHiddenDim(1280, 6, 'swiglu')).toBe(5120);
    expect(ffnHiddenDim(4096, 3, 'swiglu64')).toBe(8192);
    expect(ffnHiddenDim(1280, 4, 'swiglu')).toBe(3416); // vit_huge2 + swiglu in the training code
    expect(ffnHiddenDim(1152, 3.777777778, 'mlp')).toBe(4352);
    expect(ffnHiddenDim(100, 1, 'swiglu128')).toBe(128);
  });
  test('gated GELU (geglu, HF transformers only) = int(D·ratio), no 2/3 rule or alignment', () => {
    expect(ffnHiddenDim(16, 1.25, 'geglu')).toBe(20);
    expect(ffnHiddenDim(384, 6, 'geglu')).toBe(2304);
    expect(ffnHiddenDim(100, 1.01, 'geglu')).toBe(101);
  });
});

describe('presets', () => {
  test('every released ViT, with the hub settings', () => {
    expect(Object.keys(BACKBONE_PRESETS)).toEqual([
      'vits16',
      'vits16plus',
      'vitb16',
      'vitl16',
      'vitl16plus',
      'vith16plus',
      'vit7b16',
      'vitl16_sat493m',
      'vit7b16_sat493m',
    ]);
    for (const p of Object.values(BACKBONE_PRESETS)) {
      expect(p.config).toMatchObject({
        patch_size: 16,
        n_storage_tokens: 4,
        layerscale_init: 1e-5,
        norm_layer: 'layernormbf16',
        mask_k_bias: true,
        pos_embed_rope_base: 100,
        pos_embed_rope_rescale_coords: 2,
        pos_embed_rope_dtype: 'fp32',
        drop_path_rate: 0,
      });
    }
    expect(BACKBONE_PRESETS.vit7b16.config).toMatchObject({ qkv_bias: false, ffn_layer: 'swiglu64', untie_global_and_local_cls_norm: true });
    expect(BACKBONE_PRESETS.vitl16.config.untie_global_and_local_cls_norm).toBe(false);
    expect(BACKBONE_PRESETS.vitl16_sat493m.config.untie_global_and_local_cls_norm).toBe(true);
    expect(BACKBONE_PRESETS.vitl16.mean).toEqual([0.485, 0.456, 0.406]);
    expect(BACKBONE_PRESETS.vitl16_sat493m.mean).toEqual([0.43, 0.411, 0.296]);
    expect(BACKBONE_PRESETS.vit7b16_sat493m.std).toEqual([0.213, 0.156, 0.143]);
    expect(BACKBONE_PRESETS.vitl16.fileName).toBe('dinov3_vitl16_pretrain_lvd1689m-8aa4cbdd.pth');
    expect(BACKBONE_PRESETS.vitl16_sat493m.fileName).toBe('dinov3_vitl16_pretrain_sat493m-eadcf0ff.pth');
  });

  test('lookup by name or official file name', () => {
    expect(getPreset('dinov3_vitb16').name).toBe('vitb16');
    expect(() => getPreset('vitb14')).toThrow(ConfigError);
    expect(() => getPreset('vitb14')).toThrow(/^unknown backbone preset "vitb14" \(did you mean "vitb16"\?\); known: vits16, /);
    expect(presetForFileName('/x/dinov3_vit7b16_pretrain_sat493m-a6675841.pth')?.name).toBe('vit7b16_sat493m');
    expect(presetForFileName('/x/model.pth')).toBeUndefined();
  });

  test('the training builder ignores ffn_ratio and the RoPE dtype (RECIPE §1.1 QUIRKs)', () => {
    const student: StudentArchConfig = {
      arch: 'vit_7b',
      patch_size: 16,
      pos_embed_rope_base: 100,
      pos_embed_rope_min_period: null,
      pos_embed_rope_max_period: null,
      pos_embed_rope_normalize_coords: 'separate',
      pos_embed_rope_shift_coords: null,
      pos_embed_rope_jitter_coords: null,
      pos_embed_rope_rescale_coords: 2,
      qkv_bias: false,
      layerscale: 1e-5,
      norm_layer: 'layernormbf16',
      ffn_layer: 'swiglu64',
      ffn_bias: true,
      proj_bias: true,
      n_storage_tokens: 4,
      mask_k_bias: true,
      untie_cls_and_patch_norms: false,
      untie_global_and_local_cls_norm: true,
      drop_path_rate: 0.4,
    };
    const s = trainingBackboneConfig(student, { imgSize: 256 });
    expect(s).toMatchObject({ embed_dim: 4096, ffn_ratio: 3, pos_embed_rope_dtype: 'bf16', drop_path_rate: 0.4, img_size: 256 });
    expect(ffnHiddenDim(s.embed_dim, s.ffn_ratio, s.ffn_layer)).toBe(8192);
    expect(trainingBackboneConfig(student, { imgSize: 256, teacher: true }).drop_path_rate).toBe(0);
    expect(() => trainingBackboneConfig({ ...student, arch: 'vit_larg' }, { imgSize: 224 })).toThrow(
      'unknown student.arch "vit_larg" (did you mean "vit_large"?)',
    );
  });
});
