// Released DINOv3 ViT backbones (dinov3/hub/backbones.py) and the training-code architecture constructors
// (dinov3/models/vision_transformer.py vit_small … vit_7b; dinov3/models/__init__.py build_model).
// Official: dinov3/hub/backbones.py (hub constructors), dinov3/models/vision_transformer.py::vit_small … ::vit_7b
// (training archs), dinov3/data/transforms.py::make_normalize_transform (normalisation constants).
import { ConfigError, TorchTypeError } from '../native/errors.js';
import { closest } from '../util/suggest.js';
import { parseVitConfig, type VitConfig, type VitConfigInput } from './vit.js';

export type PretrainWeights = 'LVD1689M' | 'SAT493M';

/** ImageNet mean/std for LVD-1689M models; SAT-493M models use their own (dinov3/data/transforms.py). */
export const NORMALIZATION: Record<PretrainWeights, { mean: [number, number, number]; std: [number, number, number] }> = {
  LVD1689M: { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] },
  SAT493M: { mean: [0.43, 0.411, 0.296], std: [0.213, 0.156, 0.143] },
};

/** Settings shared by every hub constructor (dinov3/hub/backbones.py::_make_dinov3_vit). */
const HUB_COMMON: VitConfigInput = {
  img_size: 224,
  patch_size: 16,
  in_chans: 3,
  pos_embed_rope_base: 100,
  pos_embed_rope_normalize_coords: 'separate',
  pos_embed_rope_rescale_coords: 2,
  pos_embed_rope_dtype: 'fp32',
  qkv_bias: true,
  drop_path_rate: 0,
  layerscale_init: 1e-5,
  norm_layer: 'layernormbf16',
  ffn_bias: true,
  proj_bias: true,
  n_storage_tokens: 4,
  mask_k_bias: true,
};

export interface BackbonePreset {
  /** Preset name, e.g. `vitl16_sat493m`. */
  readonly name: string;
  /** The torch.hub entry point, e.g. `dinov3_vitl16`. */
  readonly hubName: string;
  readonly weights: PretrainWeights;
  /** Architecture (fully resolved). */
  readonly config: VitConfig;
  /** Input normalisation of the pretraining data. */
  readonly mean: readonly [number, number, number];
  readonly std: readonly [number, number, number];
  /** Parameter count as the README prints it (null where the README has none). */
  readonly readmeParams: string | null;
  /** Official checkpoint file name (`dinov3_<arch>_pretrain_<weights>-<hash>.pth`). */
  readonly fileName: string;
}

function preset(name: string, arch: string, weights: PretrainWeights, hash: string, readmeParams: string | null, cfg: VitConfigInput): BackbonePreset {
  const config = Object.freeze(parseVitConfig({ ...HUB_COMMON, ...cfg }));
  const { mean, std } = NORMALIZATION[weights];
  return Object.freeze({
    name,
    hubName: `dinov3_${arch}`,
    weights,
    config,
    mean,
    std,
    readmeParams,
    fileName: `dinov3_${arch}_pretrain_${weights.toLowerCase()}-${hash}.pth`,
  });
}

const S = { embed_dim: 384, depth: 12, num_heads: 6 };
const L = { embed_dim: 1024, depth: 24, num_heads: 16 };
const B7 = { embed_dim: 4096, depth: 40, num_heads: 32, ffn_ratio: 3, qkv_bias: false, ffn_layer: 'swiglu64', untie_global_and_local_cls_norm: true } as const;

/** Every released ViT backbone (hub constructors with `pretrained=True`). */
export const BACKBONE_PRESETS = {
  vits16: preset('vits16', 'vits16', 'LVD1689M', '08c60483', '21M', { ...S, ffn_ratio: 4, ffn_layer: 'mlp' }),
  vits16plus: preset('vits16plus', 'vits16plus', 'LVD1689M', '4057cbaa', '29M', { ...S, ffn_ratio: 6, ffn_layer: 'swiglu' }),
  vitb16: preset('vitb16', 'vitb16', 'LVD1689M', '73cec8be', '86M', { embed_dim: 768, depth: 12, num_heads: 12, ffn_ratio: 4, ffn_layer: 'mlp' }),
  vitl16: preset('vitl16', 'vitl16', 'LVD1689M', '8aa4cbdd', '300M', { ...L, ffn_ratio: 4, ffn_layer: 'mlp' }),
  vitl16plus: preset('vitl16plus', 'vitl16plus', 'LVD1689M', '46503df0', null, { ...L, ffn_ratio: 6, ffn_layer: 'swiglu' }),
  vith16plus: preset('vith16plus', 'vith16plus', 'LVD1689M', '7c1da9a5', '840M', {
    embed_dim: 1280,
    depth: 32,
    num_heads: 20,
    ffn_ratio: 6,
    ffn_layer: 'swiglu',
  }),
  vit7b16: preset('vit7b16', 'vit7b16', 'LVD1689M', 'a955f4ea', '6,716M', B7),
  vitl16_sat493m: preset('vitl16_sat493m', 'vitl16', 'SAT493M', 'eadcf0ff', '300M', {
    ...L,
    ffn_ratio: 4,
    ffn_layer: 'mlp',
    untie_global_and_local_cls_norm: true,
  }),
  vit7b16_sat493m: preset('vit7b16_sat493m', 'vit7b16', 'SAT493M', 'a6675841', '6,716M', B7),
} as const satisfies Record<string, BackbonePreset>;

export type PresetName = keyof typeof BACKBONE_PRESETS;
export const PRESET_NAMES = Object.keys(BACKBONE_PRESETS) as PresetName[];

/**
 * Looks up a released backbone by preset name (`vitl16`, `vitl16_sat493m`; a `dinov3_` prefix is accepted).
 * @throws ConfigError for an unknown name, with a did-you-mean hint.
 */
export function getPreset(name: string): BackbonePreset {
  if (typeof name !== 'string') throw new TorchTypeError(`getPreset: expected "name" to be a string, received ${typeof name}`, 'ERR_INVALID_ARG');
  const key = name.startsWith('dinov3_') ? name.slice('dinov3_'.length) : name;
  const p = (BACKBONE_PRESETS as Record<string, BackbonePreset>)[key];
  if (p) return p;
  const hint = closest(key, PRESET_NAMES);
  throw new ConfigError(`unknown backbone preset "${name}"${hint ? ` (did you mean "${hint}"?)` : ''}; known: ${PRESET_NAMES.join(', ')}`);
}

/** The preset whose official file name matches the base name of `path` (by its 8-hex hash), if any. */
export function presetForFileName(path: string): BackbonePreset | undefined {
  if (typeof path !== 'string')
    throw new TorchTypeError(`presetForFileName: expected "path" to be a string, received ${path === null ? 'null' : typeof path}`, 'ERR_INVALID_ARG');
  const base = path.split(/[\\/]/).pop() ?? path;
  return Object.values(BACKBONE_PRESETS).find((p: BackbonePreset) => base === p.fileName || base.endsWith(p.fileName.slice(-13)));
}

/** Training-code architecture constructors: width, depth, heads and the hard-wired ffn_ratio (dinov3/models/vision_transformer.py::vit_small … ::vit_7b). */
export const TRAINING_ARCHS = {
  vit_small: { embed_dim: 384, depth: 12, num_heads: 6, ffn_ratio: 4 },
  vit_base: { embed_dim: 768, depth: 12, num_heads: 12, ffn_ratio: 4 },
  vit_large: { embed_dim: 1024, depth: 24, num_heads: 16, ffn_ratio: 4 },
  vit_so400m: { embed_dim: 1152, depth: 27, num_heads: 18, ffn_ratio: 3.777777778 },
  vit_huge2: { embed_dim: 1280, depth: 32, num_heads: 20, ffn_ratio: 4 },
  vit_giant2: { embed_dim: 1536, depth: 40, num_heads: 24, ffn_ratio: 4 },
  vit_7b: { embed_dim: 4096, depth: 40, num_heads: 32, ffn_ratio: 3 },
  /** Not official: the tiny architecture of the reference training-step fixtures (and quick CPU tests). */
  vit_test: { embed_dim: 64, depth: 2, num_heads: 4, ffn_ratio: 4 },
} as const;
export type TrainingArch = keyof typeof TRAINING_ARCHS;

/** The `student.*` keys that the official `build_model` reads (dinov3/models/__init__.py). */
export interface StudentArchConfig {
  arch: string;
  patch_size: number;
  in_chans?: number;
  pos_embed_rope_base: number | null;
  pos_embed_rope_min_period: number | null;
  pos_embed_rope_max_period: number | null;
  pos_embed_rope_normalize_coords: 'min' | 'max' | 'separate';
  pos_embed_rope_shift_coords: number | null;
  pos_embed_rope_jitter_coords: number | null;
  pos_embed_rope_rescale_coords: number | null;
  qkv_bias: boolean;
  layerscale: number | null;
  norm_layer: VitConfig['norm_layer'];
  ffn_layer: VitConfig['ffn_layer'];
  ffn_bias: boolean;
  proj_bias: boolean;
  n_storage_tokens: number;
  mask_k_bias: boolean;
  untie_cls_and_patch_norms: boolean;
  untie_global_and_local_cls_norm: boolean;
  drop_path_rate: number;
  /** `vit_custom` only (the CPU peer harnesses' convention): width, depth, heads and FFN ratio. */
  embed_dim?: number;
  depth?: number;
  num_heads?: number;
  ffn_ratio?: number;
}

/**
 * The backbone architecture the official training builder makes from `student.*` (pure). Mirrors the QUIRKs of
 * As in dinov3/models/__init__.py::build_model: `ffn_ratio` comes from the arch constructor and `pos_embed_rope_dtype` is never forwarded (the
 * constructor default bf16 applies); the teacher gets no drop path.
 * @throws ConfigError for an unknown arch
 */
export function trainingBackboneConfig(student: StudentArchConfig, o: { imgSize: number; teacher?: boolean }): VitConfig {
  if (typeof student !== 'object' || student === null)
    throw new TorchTypeError(
      `trainingBackboneConfig: expected "student" to be the config's student section, received ${student === null ? 'null' : typeof student}`,
      'ERR_INVALID_ARG',
    );
  if (typeof o !== 'object' || o === null)
    throw new TorchTypeError(
      `trainingBackboneConfig: expected "options" to be an object { imgSize, teacher? }, received ${o === null ? 'null' : typeof o}`,
      'ERR_INVALID_ARG',
    );
  if (typeof student.arch !== 'string')
    throw new ConfigError(
      `trainingBackboneConfig: student.arch must be a string (one of ${Object.keys(TRAINING_ARCHS).join(', ')}, or vit_custom), received ${typeof student.arch}`,
    );
  const custom =
    student.arch === 'vit_custom' && student.embed_dim && student.depth && student.num_heads
      ? { embed_dim: student.embed_dim, depth: student.depth, num_heads: student.num_heads, ffn_ratio: student.ffn_ratio ?? 4 }
      : undefined;
  const arch = custom ?? (TRAINING_ARCHS as Record<string, (typeof TRAINING_ARCHS)[TrainingArch]>)[student.arch];
  if (!arch) {
    const hint = closest(student.arch, Object.keys(TRAINING_ARCHS));
    throw new ConfigError(`unknown student.arch "${student.arch}"${hint ? ` (did you mean "${hint}"?)` : ''}`);
  }
  return parseVitConfig({
    ...arch,
    img_size: o.imgSize,
    patch_size: student.patch_size,
    in_chans: student.in_chans ?? 3,
    pos_embed_rope_base: student.pos_embed_rope_base,
    pos_embed_rope_min_period: student.pos_embed_rope_min_period,
    pos_embed_rope_max_period: student.pos_embed_rope_max_period,
    pos_embed_rope_normalize_coords: student.pos_embed_rope_normalize_coords,
    pos_embed_rope_shift_coords: student.pos_embed_rope_shift_coords,
    pos_embed_rope_jitter_coords: student.pos_embed_rope_jitter_coords,
    pos_embed_rope_rescale_coords: student.pos_embed_rope_rescale_coords,
    qkv_bias: student.qkv_bias,
    layerscale_init: student.layerscale,
    norm_layer: student.norm_layer,
    ffn_layer: student.ffn_layer,
    ffn_bias: student.ffn_bias,
    proj_bias: student.proj_bias,
    n_storage_tokens: student.n_storage_tokens,
    mask_k_bias: student.mask_k_bias,
    untie_cls_and_patch_norms: student.untie_cls_and_patch_norms,
    untie_global_and_local_cls_norm: student.untie_global_and_local_cls_norm,
    drop_path_rate: o.teacher ? 0 : student.drop_path_rate,
  });
}
