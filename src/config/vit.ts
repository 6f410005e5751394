// Architecture config of the DINOv3 ViT backbone. Keys and defaults are the keyword arguments of the official
// `DinoVisionTransformer.__init__` (dinov3/models/vision_transformer.py; the hub constructors in dinov3/hub/backbones.py
// pass the same names). See dinov3/models/vision_transformer.py::DinoVisionTransformer.__init__ (architecture, norms, FFN widths) and
// dinov3/layers/rope_position_encoding.py::RopePositionEmbedding (RoPE parameters).
import { z } from 'zod';
import { ConfigError } from '../native/errors.js';
import { parseConfig } from './parse.js';

const positive = z.number().int().positive();
const optionalPositive = z.number().positive().nullable();

export const NORM_LAYERS = ['layernorm', 'layernormbf16', 'rmsnorm'] as const;
export const FFN_LAYERS = ['mlp', 'swiglu', 'swiglu32', 'swiglu64', 'swiglu128', 'geglu'] as const;
export const ROPE_DTYPES = ['fp32', 'fp16', 'bf16'] as const;

export type NormLayer = (typeof NORM_LAYERS)[number];
export type FfnLayer = (typeof FFN_LAYERS)[number];
export type RopeDtype = (typeof ROPE_DTYPES)[number];

/** Strict schema of the ViT architecture (unknown keys are errors; defaults = the official constructor's). */
export const VitConfigSchema = z
  .strictObject({
    img_size: positive.default(224).describe('nominal image size (metadata only: any size works)'),
    patch_size: positive.default(16).describe('patch side in pixels'),
    in_chans: positive.default(3).describe('input channels'),
    pos_embed_rope_base: z.number().positive().nullable().default(100).describe('RoPE period base (null with min/max period)'),
    pos_embed_rope_min_period: optionalPositive.default(null).describe('RoPE min period (with max period and base null)'),
    pos_embed_rope_max_period: optionalPositive.default(null).describe('RoPE max period (with min period and base null)'),
    pos_embed_rope_normalize_coords: z.enum(['min', 'max', 'separate']).default('separate').describe('patch-coordinate normalisation'),
    pos_embed_rope_shift_coords: optionalPositive.default(null).describe('train-mode coordinate shift U(-s, s) per axis'),
    pos_embed_rope_jitter_coords: optionalPositive.default(null).describe('train-mode per-axis log-uniform jitter in [1/j, j]'),
    pos_embed_rope_rescale_coords: optionalPositive.default(null).describe('train-mode shared log-uniform rescale in [1/r, r]'),
    pos_embed_rope_dtype: z.enum(ROPE_DTYPES).default('bf16').describe('RoPE computation dtype (bf16 in training code, fp32 in hub models)'),
    embed_dim: positive.default(768).describe('token width D'),
    depth: positive.default(12).describe('number of blocks'),
    num_heads: positive.default(12).describe('attention heads'),
    ffn_ratio: z.number().positive().default(4).describe('FFN hidden width = int(D·ffn_ratio) before the SwiGLU rule (mlp and geglu: as is)'),
    qkv_bias: z.boolean().default(true).describe('bias on the fused qkv projection'),
    drop_path_rate: z.number().min(0).lt(1).default(0).describe('stochastic depth rate, same in every block'),
    layerscale_init: z.number().nullable().default(null).describe('LayerScale init (null or 0: no LayerScale)'),
    norm_layer: z.enum(NORM_LAYERS).default('layernorm').describe('layernorm: eps 1e-6; layernormbf16: eps 1e-5; rmsnorm'),
    ffn_layer: z.enum(FFN_LAYERS).default('mlp').describe('mlp (GELU), SwiGLU aligned to 8/32/64/128, or geglu (gated GELU of HF transformers, not official)'),
    ffn_bias: z.boolean().default(true).describe('biases in the FFN'),
    proj_bias: z.boolean().default(true).describe('bias on the attention output projection'),
    n_storage_tokens: z.number().int().min(0).default(0).describe('storage (register) tokens R'),
    mask_k_bias: z.boolean().default(false).describe('zero the key third of the qkv bias (bias_mask buffer)'),
    untie_cls_and_patch_norms: z.boolean().default(false).describe('separate final norm (cls_norm) for CLS + storage tokens'),
    device: z
      .string()
      .nullable()
      .optional()
      .describe('accepted for parity with the official constructor; the device is chosen when building (BackboneOptions.device)'),
    untie_global_and_local_cls_norm: z
      .boolean()
      .default(false)
      .describe('separate final norm (local_cls_norm) for local-crop CLS + storage tokens, training only'),
  })
  .superRefine((c, ctx) => {
    if (c.embed_dim % (4 * c.num_heads) !== 0)
      ctx.addIssue({
        code: 'custom',
        path: ['embed_dim'],
        message: `embed_dim (${c.embed_dim}) must be a multiple of 4·num_heads (${4 * c.num_heads}) for the axial RoPE`,
      });
    const both = c.pos_embed_rope_min_period !== null && c.pos_embed_rope_max_period !== null;
    if ((c.pos_embed_rope_base === null) === !both)
      ctx.addIssue({
        code: 'custom',
        path: ['pos_embed_rope_base'],
        message: 'give either pos_embed_rope_base or both pos_embed_rope_min_period and pos_embed_rope_max_period (with base null)',
      });
  });

/** A complete (parsed) architecture config. */
export type VitConfig = z.output<typeof VitConfigSchema>;
/** Architecture config as written by users: every key optional. */
export type VitConfigInput = z.input<typeof VitConfigSchema>;

/**
 * Validates an architecture config and fills in the defaults.
 * @example parseVitConfig({ embed_dim: 384, num_heads: 6 }).depth // 12
 * @throws ConfigError (unknown keys come with a did-you-mean hint)
 */
export function parseVitConfig(input: unknown): VitConfig {
  return parseConfig(VitConfigSchema, input ?? {});
}

/** LayerNorm eps of each norm type (dinov3/models/vision_transformer.py `norm_layer_dict`); RMSNorm uses 1e-5. */
export const NORM_EPS: Record<NormLayer, number> = { layernorm: 1e-6, layernormbf16: 1e-5, rmsnorm: 1e-5 };

/** SwiGLU alignment of each FFN type (0: the width int(D·ratio) as is, for the plain MLP and the gated GELU). */
export const FFN_ALIGN: Record<FfnLayer, number> = { mlp: 0, swiglu: 8, swiglu32: 32, swiglu64: 64, swiglu128: 128, geglu: 0 };

/**
 * FFN hidden width F (dinov3/layers/ffn_layers.py::Mlp, ::SwiGLUFFN): MLP and gated GELU `int(D·ratio)`; SwiGLU `int(int(D·ratio)·2/3)` rounded up to the alignment.
 * @example ffnHiddenDim(4096, 3, 'swiglu64') // 8192
 */
export function ffnHiddenDim(embedDim: number, ffnRatio: number, ffnLayer: FfnLayer): number {
  if (typeof embedDim !== 'number' || typeof ffnRatio !== 'number' || !Object.hasOwn(FFN_ALIGN, ffnLayer as PropertyKey))
    throw new ConfigError(
      `ffnHiddenDim: expected (embedDim: number, ffnRatio: number, ffnLayer: one of ${Object.keys(FFN_ALIGN).join(', ')}), received (${typeof embedDim}, ${typeof ffnRatio}, ${typeof ffnLayer === 'string' ? `"${ffnLayer}"` : typeof ffnLayer})`,
    );
  const m = Math.trunc(embedDim * ffnRatio);
  const align = FFN_ALIGN[ffnLayer];
  if (align === 0) return m;
  const d = Math.trunc((m * 2) / 3);
  return d + ((align - (d % align)) % align);
}

/** Maps the config's RoPE dtype names to tensor dtypes. */
export const ROPE_TENSOR_DTYPE = { fp32: 'float32', fp16: 'float16', bf16: 'bfloat16' } as const;
