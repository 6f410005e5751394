// Optimizer parameter groups of the SSL trainer: layer-wise lr decay, patch-embed lr multiplier, no weight decay on
// biases / norms / LayerScale, a flag for the prototype ("last") layer, then fusion of groups that share the same
// multipliers (official `dinov3/train/param_groups.py` and `ssl_meta_arch.py::SSLMetaArch.get_params_groups`).
import type { Module } from '../nn/module.js';
import type { ParamGroupInit } from '../optim/adamw.js';
import { expectArray, expectInt, expectIterable, expectMethods, expectNumber, expectObject, expectOptions, expectString } from '../tensor/args.js';
import type { Tensor } from '../tensor/tensor.js';

/** One parameter with its multipliers (official `get_params_groups_with_decay_fsdp` entries). */
export interface ParamInfo {
  name: string;
  param: Tensor;
  lrMultiplier: number;
  wdMultiplier: number;
  isLastLayer: boolean;
}

const EMBEDDING_NAMES = ['pos_embed', 'patch_embed', 'mask_token', 'cls_token', 'storage_tokens'] as const;

/**
 * lr multiplier `decay^(numLayers + 1 − layerId)` of a parameter (official `param_groups.py::get_vit_lr_decay_rate`):
 * embeddings and learned tokens are layer 0, block i is layer i + 1, everything else (final norm, heads) is layer
 * numLayers + 1 (multiplier 1). `forceIsBackbone` treats un-prefixed names (a backbone's own `named_parameters`) as
 * backbone parameters.
 */
export function vitLrDecayRate(name: string, lrDecayRate = 1.0, numLayers = 12, forceIsBackbone = false): number {
  expectString('vitLrDecayRate', 'name', name);
  expectNumber('vitLrDecayRate', 'lrDecayRate', lrDecayRate);
  expectInt('vitLrDecayRate', 'numLayers', numLayers);
  let layerId = numLayers + 1;
  if (name.startsWith('backbone') || forceIsBackbone) {
    if (EMBEDDING_NAMES.some((e) => name.includes(`.${e}`))) layerId = 0;
    else if (forceIsBackbone && EMBEDDING_NAMES.some((e) => name.includes(e))) layerId = 0;
    else if (name.includes('.blocks.') && !name.includes('.residual.')) {
      layerId = Number(name.slice(name.indexOf('.blocks.')).split('.')[2]) + 1;
    } else if (name.includes('blocks.') && !name.includes('residual.')) {
      layerId = Number(name.slice(name.indexOf('blocks.')).split('.')[1]) + 1;
    }
  }
  return lrDecayRate ** (numLayers + 1 - layerId);
}

export interface ParamGroupOptions {
  /** `optim.layerwise_decay` (1 = none). */
  lrDecayRate?: number;
  /** `optim.patch_embed_lr_mult`. */
  patchEmbedLrMult?: number;
  /** `optim.dino_head_wd_multiplier`. */
  dinoHeadWdMultiplier?: number;
  /** Prefix added to parameter names (the submodule's key in the student, e.g. `dino_head`). */
  prefix?: string;
}

/**
 * Per-parameter multipliers of one student submodule (official `get_params_groups_with_decay_fsdp`): a module with
 * `blocks` is a backbone (layer-wise decay over its blocks); parameters without `requiresGrad` are skipped.
 */
export function paramsWithDecay(model: Module, o: ParamGroupOptions = {}): ParamInfo[] {
  expectMethods('paramsWithDecay', 'model', model, 'a Module', ['namedParameters']);
  o = expectOptions('paramsWithDecay', 'options', o) ?? {};
  const blocks = (model as Module & { blocks?: unknown[] }).blocks;
  const nBlocks = Array.isArray(blocks) ? blocks.length : 0;
  const out: ParamInfo[] = [];
  for (const [local, param] of model.namedParameters()) {
    if (!param.requiresGrad) continue;
    const name = o.prefix ? `${o.prefix}.${local}` : local;
    // The official code names parameters relative to the submodule (the FSDP-wrapped `student[k]`).
    let lrMultiplier = vitLrDecayRate(local, o.lrDecayRate ?? 1, nBlocks, nBlocks > 0);
    let wdMultiplier = 1.0;
    // As officially, every test is on the submodule-relative name: `"dino_head" in name` therefore never matches
    // there (the official FSDP path passes each submodule separately), so `dino_head_wd_multiplier` has no effect.
    if (local.includes('dino_head')) wdMultiplier = o.dinoHeadWdMultiplier ?? 1.0;
    const isLastLayer = local.includes('last_layer');
    if (local.endsWith('bias') || local.includes('norm') || local.includes('gamma') || local.includes('fourier_w')) wdMultiplier = 0.0;
    if (local.includes('patch_embed')) lrMultiplier *= o.patchEmbedLrMult ?? 1.0;
    out.push({ name, param, lrMultiplier, wdMultiplier, isLastLayer });
  }
  return out;
}

/** An AdamW group carrying the official multipliers (`lrMultiplier`, `wdMultiplier`, `isLastLayer`) and names. */
export interface SSLParamGroup extends ParamGroupInit {
  lrMultiplier: number;
  wdMultiplier: number;
  isLastLayer: boolean;
  names: string[];
}

/**
 * Groups parameters that share (lr multiplier, wd multiplier, last-layer flag), in first-seen order (official
 * `param_groups.py::fuse_params_groups`; keys compare by their printed values as the official string key does).
 */
export function fuseParamsGroups(infos: readonly ParamInfo[]): SSLParamGroup[] {
  expectIterable('fuseParamsGroups', 'infos', infos, 'an array of ParamInfo (from paramsWithDecay)');
  for (const p of infos) expectObject('fuseParamsGroups', 'infos[i]', p);
  const groups = new Map<string, SSLParamGroup>();
  for (const p of infos) {
    const key = `lr_multiplier${pyFloat(p.lrMultiplier)}_wd_multiplier${pyFloat(p.wdMultiplier)}_is_last_layer${p.isLastLayer}_`;
    let g = groups.get(key);
    if (!g) {
      g = { params: [], lrMultiplier: p.lrMultiplier, wdMultiplier: p.wdMultiplier, isLastLayer: p.isLastLayer, names: [] };
      groups.set(key, g);
    }
    (g.params as Tensor[]).push(p.param);
    g.names.push(p.name);
  }
  return [...groups.values()];
}

/** Python's `str(float)` up to the repr differences that matter for grouping (1 → "1.0"). */
function pyFloat(x: number): string {
  return Number.isInteger(x) ? x.toFixed(1) : String(x);
}

/**
 * The student's groups, submodule by submodule in registration order, each fused when `fuse` (official
 * `SSLMetaArch.get_params_groups` with `optim.multi_tensor_optim`).
 */
export function studentParamGroups(submodules: readonly [string, Module][], o: ParamGroupOptions & { fuse?: boolean } = {}): SSLParamGroup[] {
  expectIterable('studentParamGroups', 'submodules', submodules, 'an array of [name, Module] pairs');
  o = expectOptions('studentParamGroups', 'options', o) ?? {};
  const out: SSLParamGroup[] = [];
  for (const pair of submodules) {
    const [name, m] = expectArray<string | Module>('studentParamGroups', 'submodules[i]', pair, 'a [name, Module] pair') as [string, Module];
    const infos = paramsWithDecay(m, { ...o, prefix: name });
    if (o.fuse ?? true) out.push(...fuseParamsGroups(infos));
    else
      out.push(
        ...infos.map((p) => ({ params: [p.param], lrMultiplier: p.lrMultiplier, wdMultiplier: p.wdMultiplier, isLastLayer: p.isLastLayer, names: [p.name] })),
      );
  }
  return out;
}

/**
 * Sets each group's lr and weight decay for this iteration (official `train.py::apply_optim_scheduler`): weight decay
 * = wd · wdMultiplier; lr = (isLastLayer ? lastLayerLr : lr) · lrMultiplier.
 */
export function applyOptimScheduler(
  groups: readonly { lr: number; weightDecay: number; [k: string]: unknown }[],
  v: { lr: number; wd: number; lastLayerLr: number },
): void {
  expectIterable('applyOptimScheduler', 'groups', groups, 'an array of parameter groups');
  expectObject('applyOptimScheduler', 'values', v);
  for (const g of groups) {
    expectObject('applyOptimScheduler', 'groups[i]', g);
    const lrMult = g.lrMultiplier as number;
    g.weightDecay = v.wd * (g.wdMultiplier as number);
    g.lr = (g.isLastLayer ? v.lastLayerLr : v.lr) * lrMult;
  }
}
