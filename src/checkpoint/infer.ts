// Architecture of an official backbone state dict, read off its keys and shapes (the module names of
// dinov3/models/vision_transformer.py::DinoVisionTransformer; FFN widths as dinov3/layers/ffn_layers.py::SwiGLUFFN;
// dinov3/layers/rope_position_encoding.py::RopePositionEmbedding: the periods buffer has d/4 entries, giving the head
// dim, and periods[k] = base^(4k/d), giving the RoPE base). What the tensors cannot tell (norm eps, coordinate normalisation and augmentation) takes the released-model
// (hub) values: LayerNorm eps 1e-5, "separate" coordinates, rescale 2. A checkpoint trained with LayerNorm eps 1e-6
// needs `config: { norm_layer: 'layernorm' }`. The periods themselves are loaded from the checkpoint. The gated GELU
// "geglu" (not official) has SwiGLUFFN's keys, so w1/w2/w3 read as SwiGLU unless the config given says "geglu".
import { parseVitConfig, type VitConfig, type VitConfigInput } from '../config/vit.js';
import { CheckpointError, ConfigError } from '../native/errors.js';
import { expectMap, expectString } from '../tensor/args.js';
import { scope } from '../tensor/scope.js';
import { solveFfn } from './hf.js';
import type { SourceDict, TensorSource } from './sources.js';

/**
 * Infers the architecture of an official (flat, unprefixed) backbone state dict. `given` (the config the caller
 * passes on top) only decides whether gated FFN keys are the gated GELU (`ffn_layer: 'geglu'`) or SwiGLU.
 * @throws CheckpointError when a key the inference needs is missing
 */
export function inferVitConfig(sd: SourceDict, source = '<state dict>', given: VitConfigInput = {}): VitConfig {
  expectMap('inferVitConfig', 'sd', sd, 'a Map of tensor sources (SourceDict)');
  expectString('inferVitConfig', 'source', source);
  const need = (k: string) => {
    const v = sd.get(k);
    if (!v) throw new CheckpointError(`${source}: cannot infer the architecture: key "${k}" is missing (pass a preset or a config)`);
    return v;
  };
  const D = need('cls_token').shape.at(-1)!;
  const periods = need('rope_embed.periods');
  const patch = need('patch_embed.proj.weight');
  let depth = 0;
  while (sd.has(`blocks.${depth}.norm1.weight`)) depth++;
  if (depth === 0) need('blocks.0.norm1.weight');
  const headDim = 4 * periods.shape[0]!;
  const b0 = 'blocks.0.';
  const ffn = sd.has(`${b0}mlp.fc1.weight`)
    ? solveFfn(D, need(`${b0}mlp.fc1.weight`).shape[0]!, false)
    : solveFfn(D, need(`${b0}mlp.w1.weight`).shape[0]!, true, given?.ffn_layer === 'geglu' ? 'gelu' : 'silu');
  const cfg: VitConfigInput = {
    patch_size: patch.shape[2]!,
    in_chans: patch.shape[1]!,
    pos_embed_rope_base: ropeBase(periods),
    pos_embed_rope_normalize_coords: 'separate',
    pos_embed_rope_rescale_coords: 2,
    pos_embed_rope_dtype: periods.dtype === 'bfloat16' ? 'bf16' : periods.dtype === 'float16' ? 'fp16' : 'fp32',
    embed_dim: D,
    depth,
    num_heads: D / headDim,
    ...ffn,
    qkv_bias: sd.has(`${b0}attn.qkv.bias`),
    layerscale_init: sd.has(`${b0}ls1.gamma`) ? 1e-5 : null,
    norm_layer: sd.has('norm.bias') ? 'layernormbf16' : 'rmsnorm',
    ffn_bias: sd.has(`${b0}mlp.${ffn.ffn_layer === 'mlp' ? 'fc1' : 'w1'}.bias`),
    proj_bias: sd.has(`${b0}attn.proj.bias`),
    n_storage_tokens: sd.get('storage_tokens')?.shape[1] ?? 0,
    mask_k_bias: sd.has(`${b0}attn.qkv.bias_mask`),
    untie_cls_and_patch_norms: sd.has('cls_norm.weight'),
    untie_global_and_local_cls_norm: sd.has('local_cls_norm.weight'),
  };
  try {
    return parseVitConfig(cfg);
  } catch (e) {
    if (e instanceof ConfigError)
      throw new CheckpointError(`${source}: the tensor shapes imply no valid architecture (pass a preset or a config):\n${e.message}`);
    throw e;
  }
}

/**
 * The RoPE base behind a periods buffer (periods[k] = base^(4k/d), k < d/4), by least squares on the logarithms.
 * Within 2% of 100 it is 100, the released models' base (training checkpoints store bf16-rounded periods, which give
 * about 99.2); otherwise rounded to 4 significant digits.
 */
function ropeBase(periods: TensorSource): number {
  const n = periods.shape[0]!;
  if (n < 2) return 100;
  const p = scope(() => periods.load().toFloat32Array());
  let num = 0;
  let den = 0;
  for (let k = 1; k < n; k++) {
    const e = k / n; // 4k/d with d = 4n
    num += e * Math.log(p[k]!);
    den += e * e;
  }
  const base = Math.exp(num / den);
  if (!Number.isFinite(base) || base <= 0) return 100;
  return Math.abs(base / 100 - 1) < 0.02 ? 100 : Number(base.toPrecision(4));
}
