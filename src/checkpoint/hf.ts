// Hugging Face `DINOv3ViTModel` layout (transformers models/dinov3_vit) ↔ official DINOv3 keys (dinov3/models/vision_transformer.py::DinoVisionTransformer).
// HF splits the fused qkv projection into q/k/v (k without bias: the official k third of the bias is masked to zero),
// keeps the mask token as [1, 1, D], names the storage tokens `register_tokens`, has no `rope_embed.periods` (it
// computes them from `rope_theta`), no `bias_mask` and no `local_cls_norm` (unused at inference: DinoVisionTransformer.forward_features).
// HF's gated MLP (modeling_dinov3_vit.py::DINOv3ViTGatedMLP) runs with hidden_act "silu" (the official SwiGLUFFN) or
// "gelu" (no official equivalent: our ffn_layer "geglu", layers/ffn_layers.ts::GeGLUFFN); both keep SwiGLUFFN's names.
import { ffnHiddenDim, NORM_EPS, parseVitConfig, type VitConfig } from '../config/vit.js';
import { RopePositionEmbedding } from '../layers/rope_position_encoding.js';
import { CheckpointError, ConfigError } from '../native/errors.js';
import { cat, narrow } from '../ops/shape.js';
import { ones, zeros } from '../tensor/creation.js';
import { argTypeError, expectConfig, expectIterable, expectMap, expectObject, expectPositiveInt, expectString } from '../tensor/args.js';
import { scope } from '../tensor/scope.js';
import { derivedSource, type SourceDict, type TensorSource } from './sources.js';

/** The HF `DINOv3ViTConfig` defaults (used for keys a config.json leaves out). */
const HF_DEFAULTS = {
  patch_size: 16,
  hidden_size: 384,
  intermediate_size: 1536,
  num_hidden_layers: 12,
  num_attention_heads: 6,
  hidden_act: 'gelu',
  layer_norm_eps: 1e-5,
  rope_theta: 100,
  image_size: 224,
  num_channels: 3,
  query_bias: true,
  key_bias: false,
  value_bias: true,
  proj_bias: true,
  mlp_bias: true,
  layerscale_value: 1,
  drop_path_rate: 0,
  use_gated_mlp: false,
  num_register_tokens: 0,
  pos_embed_shift: null,
  pos_embed_jitter: null,
  pos_embed_rescale: 2,
} as const;

/** Strips the wrappers HF checkpoints may carry (`model.`, `dinov3_vit.`) from a key. */
function hfKey(k: string): string {
  return k.replace(/^(model\.|dinov3_vit\.)+/, '');
}

/** True when the keys are in the HF layout (patch embedding under `embeddings.`). */
export function isHfStateDict(keys: Iterable<string>): boolean {
  expectIterable('isHfStateDict', 'keys', keys, 'an iterable of state-dict keys');
  for (const k of keys) {
    if (typeof k !== 'string') throw argTypeError('isHfStateDict', 'keys', 'an iterable of strings (state-dict keys)', k);
    if (hfKey(k) === 'embeddings.patch_embeddings.weight') return true;
  }
  return false;
}

/**
 * ffn_layer and ffn_ratio that give FFN hidden width `hidden` (dinov3/layers/ffn_layers.py::Mlp, SwiGLUFFN). A gated FFN
 * with `act` "gelu" is the gated GELU "geglu" (transformers' DINOv3ViTGatedMLP), whose hidden width is `hidden` as is.
 * @throws ConfigError when no such configuration exists
 */
export function solveFfn(
  embedDim: number,
  hidden: number,
  gated: boolean,
  act: 'silu' | 'gelu' = gated ? 'silu' : 'gelu',
): Pick<VitConfig, 'ffn_layer' | 'ffn_ratio'> {
  expectPositiveInt('solveFfn', 'embedDim', embedDim);
  expectPositiveInt('solveFfn', 'hidden', hidden);
  if (!gated || act === 'gelu') {
    const layer = gated ? 'geglu' : 'mlp';
    for (const r of [hidden / embedDim, (hidden + 0.25) / embedDim]) if (ffnHiddenDim(embedDim, r, layer) === hidden) return { ffn_layer: layer, ffn_ratio: r };
  } else {
    for (const layer of ['swiglu', 'swiglu64', 'swiglu32', 'swiglu128'] as const)
      for (const r of [6, 3, 4, (1.5 * hidden) / embedDim, (1.5 * hidden + 0.75) / embedDim])
        if (ffnHiddenDim(embedDim, r, layer) === hidden) return { ffn_layer: layer, ffn_ratio: r };
  }
  const kind = !gated ? 'MLP' : act === 'gelu' ? 'gated GELU' : 'SwiGLU';
  throw new ConfigError(`no ${kind} configuration of width ${embedDim} has an FFN hidden width of ${hidden}`);
}

/**
 * The official architecture of an HF `config.json` (DINOv3ViTConfig). RoPE is computed in fp32 as in HF.
 * @throws CheckpointError for a config that is not a DINOv3 ViT or cannot be expressed officially
 */
export function hfConfigToVitConfig(json: Record<string, unknown>, source = 'config.json'): VitConfig {
  expectObject('hfConfigToVitConfig', 'json', json);
  expectString('hfConfigToVitConfig', 'source', source);
  const c = { ...HF_DEFAULTS, ...json } as Record<string, unknown> & typeof HF_DEFAULTS;
  const fail = (msg: string): never => {
    throw new CheckpointError(`${source}: ${msg}`);
  };
  if (json.model_type !== undefined && json.model_type !== 'dinov3_vit') fail(`model_type is "${String(json.model_type)}", expected "dinov3_vit"`);
  if (c.query_bias !== c.value_bias) fail('query_bias and value_bias differ: the fused official qkv bias cannot express that');
  const gated = Boolean(c.use_gated_mlp);
  // transformers' ACT2FN["gelu"] is the exact (erf) GELU, ACT2FN["silu"] SiLU; other activations are not supported.
  const act = String(c.hidden_act);
  if (!(act === 'gelu' || (gated && act === 'silu')))
    fail(`hidden_act "${act}" with use_gated_mlp=${gated} is not supported (${gated ? '"silu" or "gelu"' : '"gelu"'} only)`);
  const eps = Number(c.layer_norm_eps);
  const normLayer =
    eps === NORM_EPS.layernorm ? 'layernorm' : eps === NORM_EPS.layernormbf16 ? 'layernormbf16' : fail(`layer_norm_eps ${eps} is neither 1e-6 nor 1e-5`);
  try {
    return parseVitConfig({
      img_size: c.image_size,
      patch_size: c.patch_size,
      in_chans: c.num_channels,
      pos_embed_rope_base: c.rope_theta,
      pos_embed_rope_shift_coords: c.pos_embed_shift,
      pos_embed_rope_jitter_coords: c.pos_embed_jitter,
      pos_embed_rope_rescale_coords: c.pos_embed_rescale,
      pos_embed_rope_dtype: 'fp32',
      embed_dim: c.hidden_size,
      depth: c.num_hidden_layers,
      num_heads: c.num_attention_heads,
      ...solveFfn(Number(c.hidden_size), Number(c.intermediate_size), gated, act === 'gelu' ? 'gelu' : 'silu'),
      qkv_bias: Boolean(c.query_bias),
      drop_path_rate: c.drop_path_rate,
      layerscale_init: c.layerscale_value,
      norm_layer: normLayer,
      ffn_bias: Boolean(c.mlp_bias),
      proj_bias: Boolean(c.proj_bias),
      n_storage_tokens: c.num_register_tokens,
      mask_k_bias: Boolean(c.query_bias) && !c.key_bias,
    });
  } catch (e) {
    if (e instanceof ConfigError) fail(`cannot be mapped to an official architecture:\n${e.message}`);
    throw e;
  }
}

/**
 * The HF `config.json` of an official architecture.
 * @throws ConfigError for features HF's DINOv3ViTModel lacks (RMSNorm, untied CLS norm, min/max RoPE periods, …)
 */
export function vitConfigToHfConfig(cfg: VitConfig, dtype = 'float32'): Record<string, unknown> {
  expectConfig('vitConfigToHfConfig', 'cfg', cfg, [], 'a VitConfig');
  expectString('vitConfigToHfConfig', 'dtype', dtype);
  const unsupported = (what: string): never => {
    throw new ConfigError(`the Hugging Face DINOv3ViTModel cannot express ${what}`);
  };
  if (cfg.norm_layer === 'rmsnorm') unsupported('norm_layer "rmsnorm"');
  if (cfg.untie_cls_and_patch_norms) unsupported('untie_cls_and_patch_norms');
  if (cfg.pos_embed_rope_base === null) unsupported('RoPE min/max periods');
  if (cfg.pos_embed_rope_normalize_coords !== 'separate') unsupported(`pos_embed_rope_normalize_coords "${cfg.pos_embed_rope_normalize_coords}"`);
  const gated = cfg.ffn_layer !== 'mlp';
  return {
    architectures: ['DINOv3ViTModel'],
    model_type: 'dinov3_vit',
    dtype,
    patch_size: cfg.patch_size,
    hidden_size: cfg.embed_dim,
    intermediate_size: ffnHiddenDim(cfg.embed_dim, cfg.ffn_ratio, cfg.ffn_layer),
    num_hidden_layers: cfg.depth,
    num_attention_heads: cfg.num_heads,
    hidden_act: gated && cfg.ffn_layer !== 'geglu' ? 'silu' : 'gelu',
    attention_dropout: 0,
    initializer_range: 0.02,
    layer_norm_eps: NORM_EPS[cfg.norm_layer],
    rope_theta: cfg.pos_embed_rope_base,
    image_size: cfg.img_size,
    num_channels: cfg.in_chans,
    query_bias: cfg.qkv_bias,
    key_bias: cfg.qkv_bias && !cfg.mask_k_bias,
    value_bias: cfg.qkv_bias,
    proj_bias: cfg.proj_bias,
    mlp_bias: cfg.ffn_bias,
    // HF always has LayerScale; without it the official block equals LayerScale with γ = 1.
    layerscale_value: cfg.layerscale_init || 1,
    drop_path_rate: cfg.drop_path_rate,
    use_gated_mlp: gated,
    num_register_tokens: cfg.n_storage_tokens,
    pos_embed_shift: cfg.pos_embed_rope_shift_coords,
    pos_embed_jitter: cfg.pos_embed_rope_jitter_coords,
    pos_embed_rescale: cfg.pos_embed_rope_rescale_coords,
  };
}

const catSources = (parts: TensorSource[]) =>
  derivedSource([parts.reduce((s, p) => s + p.shape[0]!, 0), ...parts[0]!.shape.slice(1)], parts[0]!.dtype, () =>
    scope(() =>
      cat(
        parts.map((p) => p.load()),
        0,
      ),
    ),
  );
const reshapeSource = (s: TensorSource, shape: number[]) => derivedSource(shape, s.dtype, () => scope(() => s.load().reshape(shape)));
const sliceSource = (s: TensorSource, start: number, len: number) =>
  derivedSource([len, ...s.shape.slice(1)], s.dtype, () => scope(() => narrow(s.load(), 0, start, len).contiguous()));

/** `rope_embed.periods` from the formula, in fp32 (HF has no such tensor). */
function periodsSource(cfg: VitConfig): TensorSource {
  const d = cfg.embed_dim / cfg.num_heads;
  return derivedSource([d / 4], 'float32', () => {
    const rope = new RopePositionEmbedding(cfg.embed_dim, {
      numHeads: cfg.num_heads,
      base: cfg.pos_embed_rope_base,
      minPeriod: cfg.pos_embed_rope_min_period,
      maxPeriod: cfg.pos_embed_rope_max_period,
      dtype: 'float32',
    });
    const p = rope.periods.clone();
    rope.dispose();
    return p;
  });
}

/**
 * HF keys → official keys for architecture `cfg`. Keys that do not map (or incomplete q/k/v groups) pass through
 * unchanged, so that strict loading reports them.
 */
export function hfToOfficial(sd: SourceDict, cfg: VitConfig): SourceDict {
  expectMap('hfToOfficial', 'sd', sd, 'a Map of tensor sources (SourceDict)');
  expectConfig('hfToOfficial', 'cfg', cfg, [], 'a VitConfig');
  const src = new Map([...sd].map(([k, v]) => [hfKey(k), v]));
  const out: SourceDict = new Map();
  const take = (k: string) => {
    const v = src.get(k);
    src.delete(k);
    return v;
  };
  const put = (k: string, v: TensorSource | undefined) => v && out.set(k, v);
  const D = cfg.embed_dim;
  put('cls_token', take('embeddings.cls_token'));
  const reg = take('embeddings.register_tokens');
  if (reg && reg.shape[1] !== 0) put('storage_tokens', reg);
  const mask = take('embeddings.mask_token');
  put('mask_token', mask && mask.shape.length === 3 ? reshapeSource(mask, [1, mask.shape[2]!]) : mask);
  put('patch_embed.proj.weight', take('embeddings.patch_embeddings.weight'));
  put('patch_embed.proj.bias', take('embeddings.patch_embeddings.bias'));
  out.set('rope_embed.periods', periodsSource(cfg));
  const gated = cfg.ffn_layer !== 'mlp';
  for (let i = 0; src.has(`layer.${i}.norm1.weight`) || src.has(`layer.${i}.attention.q_proj.weight`); i++) {
    const h = `layer.${i}.`;
    const o = `blocks.${i}.`;
    for (const n of ['norm1', 'norm2']) for (const p of ['weight', 'bias']) put(`${o}${n}.${p}`, take(`${h}${n}.${p}`));
    const [q, k, v] = ['q', 'k', 'v'].map((x) => take(`${h}attention.${x}_proj.weight`));
    if (q && k && v) out.set(`${o}attn.qkv.weight`, catSources([q, k, v]));
    else
      for (const [x, s] of [
        ['q', q],
        ['k', k],
        ['v', v],
      ] as const)
        if (s) src.set(`${h}attention.${x}_proj.weight`, s);
    const [qb, kb, vb] = ['q', 'k', 'v'].map((x) => take(`${h}attention.${x}_proj.bias`));
    const anyBias = qb ?? kb ?? vb;
    if (anyBias) {
      const dtype = anyBias.dtype;
      const zero = derivedSource([D], dtype, () => zeros([D], { dtype }));
      out.set(`${o}attn.qkv.bias`, catSources([qb ?? zero, kb ?? zero, vb ?? zero]));
      if (cfg.mask_k_bias)
        out.set(
          `${o}attn.qkv.bias_mask`,
          derivedSource([3 * D], dtype, () => scope(() => cat([ones([D], { dtype }), zeros([D], { dtype }), ones([D], { dtype })]))),
        );
    }
    put(`${o}attn.proj.weight`, take(`${h}attention.o_proj.weight`));
    put(`${o}attn.proj.bias`, take(`${h}attention.o_proj.bias`));
    put(`${o}ls1.gamma`, take(`${h}layer_scale1.lambda1`));
    put(`${o}ls2.gamma`, take(`${h}layer_scale2.lambda1`));
    const ffn: [string, string][] = gated
      ? [
          ['gate_proj', 'w1'],
          ['up_proj', 'w2'],
          ['down_proj', 'w3'],
        ]
      : [
          ['up_proj', 'fc1'],
          ['down_proj', 'fc2'],
        ];
    for (const [hn, on] of ffn) for (const p of ['weight', 'bias']) put(`${o}mlp.${on}.${p}`, take(`${h}mlp.${hn}.${p}`));
  }
  put('norm.weight', take('norm.weight'));
  put('norm.bias', take('norm.bias'));
  for (const [k, v] of src) out.set(k, v); // unmapped: reported by strict loading
  return out;
}

/**
 * Official keys → HF keys for architecture `cfg` (`bias_mask`, `rope_embed.periods` and `local_cls_norm` are
 * dropped; without LayerScale, λ = 1 is written).
 * @throws ConfigError for architectures HF cannot express (see vitConfigToHfConfig)
 */
export function officialToHf(sd: SourceDict, cfg: VitConfig): SourceDict {
  expectMap('officialToHf', 'sd', sd, 'a Map of tensor sources (SourceDict)');
  expectConfig('officialToHf', 'cfg', cfg, [], 'a VitConfig');
  vitConfigToHfConfig(cfg); // validates
  const src = new Map(sd);
  const take = (k: string) => {
    const v = src.get(k);
    src.delete(k);
    return v;
  };
  const out: SourceDict = new Map();
  const put = (k: string, v: TensorSource | undefined) => v && out.set(k, v);
  const D = cfg.embed_dim;
  put('embeddings.cls_token', take('cls_token'));
  const mask = take('mask_token');
  put('embeddings.mask_token', mask && reshapeSource(mask, [1, 1, D]));
  const st = take('storage_tokens');
  const dtype = mask?.dtype ?? 'float32';
  put('embeddings.register_tokens', st ?? derivedSource([1, 0, D], dtype, () => zeros([1, 0, D], { dtype })));
  put('embeddings.patch_embeddings.weight', take('patch_embed.proj.weight'));
  put('embeddings.patch_embeddings.bias', take('patch_embed.proj.bias'));
  take('rope_embed.periods');
  for (const n of ['weight', 'bias']) take(`local_cls_norm.${n}`);
  const gated = cfg.ffn_layer !== 'mlp';
  for (let i = 0; i < cfg.depth; i++) {
    const h = `layer.${i}.`;
    const o = `blocks.${i}.`;
    for (const n of ['norm1', 'norm2']) for (const p of ['weight', 'bias']) put(`${h}${n}.${p}`, take(`${o}${n}.${p}`));
    const w = take(`${o}attn.qkv.weight`);
    if (w) ['q', 'k', 'v'].forEach((x, j) => out.set(`${h}attention.${x}_proj.weight`, sliceSource(w, j * D, D)));
    const b = take(`${o}attn.qkv.bias`);
    take(`${o}attn.qkv.bias_mask`);
    if (b) ['q', 'k', 'v'].forEach((x, j) => (x !== 'k' || !cfg.mask_k_bias) && out.set(`${h}attention.${x}_proj.bias`, sliceSource(b, j * D, D)));
    put(`${h}attention.o_proj.weight`, take(`${o}attn.proj.weight`));
    put(`${h}attention.o_proj.bias`, take(`${o}attn.proj.bias`));
    for (const [ls, hl] of [
      ['ls1', 'layer_scale1'],
      ['ls2', 'layer_scale2'],
    ]) {
      const g = take(`${o}${ls}.gamma`);
      put(`${h}${hl}.lambda1`, g ?? derivedSource([D], dtype, () => ones([D], { dtype })));
    }
    const ffn: [string, string][] = gated
      ? [
          ['w1', 'gate_proj'],
          ['w2', 'up_proj'],
          ['w3', 'down_proj'],
        ]
      : [
          ['fc1', 'up_proj'],
          ['fc2', 'down_proj'],
        ];
    for (const [on, hn] of ffn) for (const p of ['weight', 'bias']) put(`${h}mlp.${hn}.${p}`, take(`${o}mlp.${on}.${p}`));
  }
  put('norm.weight', take('norm.weight'));
  put('norm.bias', take('norm.bias'));
  for (const [k, v] of src) out.set(k, v);
  return out;
}
