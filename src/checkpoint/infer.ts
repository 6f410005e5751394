// Architecture of an official backbone state dict, read off its keys and shapes (RECIPE §1.8 key table; §1.1 FFN
// widths; §1.3 the periods buffer has d/4 entries, giving the head dim). What the tensors cannot tell (norm eps, RoPE
// base, normalisation and augmentation) takes the released-model (hub) values: LayerNorm eps 1e-5, RoPE base 100,
// "separate" coordinates, rescale 2; the periods themselves are loaded from the checkpoint.
import { parseVitConfig, type VitConfig, type VitConfigInput } from '../config/vit.js';
import { CheckpointError } from '../native/errors.js';
import { solveFfn } from './hf.js';
import type { SourceDict } from './sources.js';

/**
 * Infers the architecture of an official (flat, unprefixed) backbone state dict.
 * @throws CheckpointError when a key the inference needs is missing
 */
export function inferVitConfig(sd: SourceDict, source = '<state dict>'): VitConfig {
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
    : solveFfn(D, need(`${b0}mlp.w1.weight`).shape[0]!, true);
  const cfg: VitConfigInput = {
    patch_size: patch.shape[2]!,
    in_chans: patch.shape[1]!,
    pos_embed_rope_base: 100,
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
  return parseVitConfig(cfg);
}
