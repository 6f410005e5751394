// The SSL training config: every key and default of the official `dinov3/configs/ssl_default_config.yaml`, validated
// strictly by zod (unknown keys are errors with a did-you-mean hint, wrong types name their dotted path). Files are
// YAML or JSON; they are merged onto the defaults the way `dinov3/configs/config.py::get_cfg_from_args` merges with
// OmegaConf (nested mappings merge, everything else replaces), then dotlist overrides (`optim.lr=1e-4`) are applied.
// Schedules v2 (`dinov3/train/train.py::build_schedulers_v2`) are enabled by the presence of a `schedules` mapping.
import { mkdir, readFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import YAML from 'yaml';
import { z } from 'zod';
import { parseConfig, suggest } from '../config/parse.js';
import { FFN_LAYERS, NORM_LAYERS, ROPE_DTYPES } from '../config/vit.js';
import { atomicWriteFile } from '../io/safetensors.js';
import { lrScale } from './schedules.js';
import { ConfigError } from '../native/errors.js';
import { expectArray, expectConfig, expectPath, expectString, show } from '../tensor/args.js';
import { describe } from '../tensor/tensor.js';
import { SSL_PRESETS } from './presets/index.js';

const num = z.number();
const nonNeg = z.number().min(0);
const posInt = z.number().int().positive();
const nonNegInt = z.number().int().min(0);
const str = z.string();
const pair = z.tuple([z.number(), z.number()]);
const precision = z.enum(['fp32', 'fp16', 'bf16']);

/** One {start, peak, end, warmup_epochs[, cosine_epochs]} schedule (`dinov3/train/cosine_lr_scheduler.py::linear_warmup_cosine_decay`). */
const scheduleV2 = z.strictObject({
  start: num,
  peak: num,
  end: num,
  warmup_epochs: nonNeg,
  cosine_epochs: nonNeg.optional(),
});
const lrScheduleV2 = scheduleV2.extend({ freeze_last_layer_epochs: nonNeg });

const MODEL = z.strictObject({
  META_ARCHITECTURE: str.default('SSLMetaArch'),
  DEVICE: str.default('cuda'),
  WEIGHTS: str.default(''),
  DTYPE: str.default('float32'),
});

const computePrecision = z.strictObject({
  param_dtype: precision.default('bf16'),
  reduce_dtype: precision.default('fp32'),
  sharding_strategy: str.default('SHARD_GRAD_OP'),
});

const dino = z.strictObject({
  loss_weight: num.default(1.0),
  global_ignore_diagonal: z.boolean().default(true),
  head_n_prototypes: posInt.default(65536),
  head_bottleneck_dim: posInt.default(256),
  head_norm_last_layer: z.boolean().default(false),
  head_nlayers: posInt.default(3),
  head_hidden_dim: posInt.default(2048),
  koleo_loss_weight: num.default(0.1),
  koleo_loss_distributed: z.boolean().default(false),
  koleo_topk: posInt.default(1),
  koleo_distributed_replicas: nonNegInt.default(0),
  koleo_distributed_loss_group_size: posInt.nullable().default(null),
  koleo_distributed_loss_group_data: z.boolean().default(true),
  force_weight_norm: z.boolean().default(false),
  reweight_dino_local_loss: z.boolean().default(false),
  local_loss_weight_schedule: scheduleV2.prefault({ start: 0.5, peak: 0.5, end: 0.5, warmup_epochs: 0 }),
});

const ibot = z.strictObject({
  loss_weight: num.default(1.0),
  mask_sample_probability: num.min(0).max(1).default(0.5),
  mask_ratio_min_max: pair.default([0.1, 0.5]),
  mask_random_circular_shift: z.boolean().default(false),
  force_masking_even_with_zero_weight: z.boolean().default(false),
  separate_head: z.boolean().default(true),
  head_n_prototypes: posInt.default(65536),
  head_bottleneck_dim: posInt.default(256),
  head_norm_last_layer: z.boolean().default(false),
  head_nlayers: posInt.default(3),
  head_hidden_dim: posInt.default(2048),
});

const gram = z.strictObject({
  use_loss: z.boolean().default(false),
  compute_stats: z.boolean().default(false),
  loss_weight: num.default(1.0),
  ema_teacher: z.boolean().default(false),
  ckpt: str.nullable().default(null),
  it_load_ema_teacher: z.number().int().default(-1),
  rep_update: z.boolean().default(true),
  update_frequency: posInt.default(50000),
  it_first_update: nonNegInt.default(0),
  max_updates: nonNegInt.nullable().default(null),
  normalized: z.boolean().default(true),
  img_level: z.boolean().default(false),
  remove_neg: z.boolean().default(false),
  remove_only_teacher_neg: z.boolean().default(false),
  tokens_used: z.enum(['all', 'masked', 'unmasked']).default('all'),
  global_teacher_resize_method: str.default('bicubic'),
  global_teacher_resize_antialias: z.boolean().default(false),
  loss_weight_schedule: scheduleV2.nullable().default(null),
});

const train = z.strictObject({
  batch_size_per_gpu: posInt.default(64),
  dataset_path: str.nullable().default('ImageNet:split=TRAIN'),
  data_config: str.nullable().default(null),
  output_dir: str.default('.'),
  saveckp_freq: posInt.default(20),
  seed: nonNegInt.default(0),
  num_workers: nonNegInt.default(10),
  OFFICIAL_EPOCH_LENGTH: posInt.default(1250),
  monitor_gradient_norm: z.boolean().default(false),
  chunk_schedule: z.array(z.unknown()).default([]),
  use_teacher_head: z.boolean().default(true),
  learn_from_teacher_tokens: z.boolean().default(false),
  centering: z.enum(['sinkhorn_knopp', 'centering']).default('sinkhorn_knopp'),
  checkpointing: z.boolean().default(false),
  checkpointing_full: z.boolean().default(false),
  compile: z.boolean().default(true),
  cudagraphs: z.boolean().default(false),
  sharded_eval_checkpoint: z.boolean().default(false),
  cache_dataset: z.boolean().default(false),
  // Keys that official train/*.yaml files carry but the default config lacks (loaded with strict_cfg=False by
  // dinov3/train/train.py::main); accepted so those files load verbatim, read by nothing.
  cell_augmentation: z.boolean().optional(),
  cell_augmentation_type: str.optional(),
});

/** `student.arch`: the training constructors of dinov3/models/vision_transformer.py, or `vit_custom` (width, depth and
 * heads from student.embed_dim/depth/num_heads, ffn_ratio from student.ffn_ratio, as the CPU peer harnesses do). */
export const STUDENT_ARCHS = ['vit_small', 'vit_base', 'vit_large', 'vit_so400m', 'vit_huge2', 'vit_giant2', 'vit_7b', 'vit_test', 'vit_custom'] as const;

const student = z.strictObject({
  arch: z.enum(STUDENT_ARCHS).default('vit_large'),
  patch_size: posInt.default(16),
  drop_path_rate: num.min(0).lt(1).default(0.3),
  layerscale: num.nullable().default(1.0e-5),
  pretrained_weights: str.default(''),
  ffn_layer: z.enum(FFN_LAYERS).default('mlp'),
  ffn_ratio: num.positive().default(4.0),
  resume_from_teacher_chkpt: str.default(''),
  qkv_bias: z.boolean().default(true),
  proj_bias: z.boolean().default(true),
  ffn_bias: z.boolean().default(true),
  norm_layer: z.enum(NORM_LAYERS).default('layernorm'),
  n_storage_tokens: nonNegInt.default(0),
  mask_k_bias: z.boolean().default(false),
  untie_cls_and_patch_norms: z.boolean().default(false),
  untie_global_and_local_cls_norm: z.boolean().default(false),
  in_chans: posInt.default(3),
  pos_embed_type: z.literal('rope').default('rope'),
  pos_embed_rope_base: num.positive().nullable().default(100.0),
  pos_embed_rope_min_period: num.positive().nullable().default(null),
  pos_embed_rope_max_period: num.positive().nullable().default(null),
  pos_embed_rope_normalize_coords: z.enum(['min', 'max', 'separate']).default('separate'),
  pos_embed_rope_shift_coords: num.positive().nullable().default(null),
  pos_embed_rope_jitter_coords: num.positive().nullable().default(null),
  pos_embed_rope_rescale_coords: num.positive().nullable().default(null),
  pos_embed_rope_dtype: z.enum(ROPE_DTYPES).default('bf16'),
  fp8_enabled: z.boolean().default(false),
  fp8_filter: str.default('blocks'),
  // Carried by official train/*.yaml files, read by nothing (see train.cell_augmentation).
  patch_drop: num.optional(),
  // Architecture of `arch: vit_custom` (required there, refused otherwise).
  embed_dim: posInt.optional(),
  depth: posInt.optional(),
  num_heads: posInt.optional(),
});

const teacher = z.strictObject({
  momentum_teacher: num.nullable().default(0.992),
  final_momentum_teacher: num.nullable().default(1),
  warmup_teacher_temp: num.positive().nullable().default(0.04),
  teacher_temp: num.positive().nullable().default(0.07),
  warmup_teacher_temp_epochs: nonNeg.nullable().default(30),
  in_chans: posInt.default(3),
});

const distillation = z.strictObject({
  enabled: z.boolean().default(false),
  full_cfg_path: str.default(''),
  checkpoint_path: str.default(''),
});

const multidistillation = z.strictObject({
  enabled: z.boolean().default(false),
  global_batch_size: posInt.optional(),
  students: z.array(z.strictObject({ name: str, config_path: str, ranks_range: z.tuple([nonNegInt, nonNegInt]) })).optional(),
});

const hrft = z.strictObject({
  enabled: z.boolean().default(false),
  checkpoint_path: str.default(''),
});

export const SCALING_RULES = ['sqrt_wrt_1024', 'linear_wrt_256', 'none'] as const;

const optim = z.strictObject({
  epochs: posInt.default(100),
  optimizer: z.literal('adamw').default('adamw'),
  weight_decay: num.nullable().default(0.04),
  weight_decay_end: num.nullable().default(0.4),
  lr: num.nullable().default(0.001),
  warmup_epochs: nonNeg.nullable().default(10),
  min_lr: num.nullable().default(1.0e-6),
  schedule_trunc_extra: nonNeg.nullable().default(0.0),
  clip_grad: nonNeg.default(3.0),
  freeze_last_layer_epochs: nonNeg.nullable().default(1),
  scaling_rule: z.enum(SCALING_RULES).default('sqrt_wrt_1024'),
  patch_embed_lr_mult: num.default(0.2),
  dino_head_wd_multiplier: num.default(1.0),
  layerwise_decay: num.default(0.9),
  multi_tensor_optim: z.boolean().default(true),
  dump_fsdp_weights_path: str.default(''),
  adamw_beta1: num.min(0).lt(1).default(0.9),
  adamw_beta2: num.min(0).lt(1).default(0.999),
});

const sizeOrSizes = z.union([posInt, z.array(posInt).min(1)]);

const crops = z.strictObject({
  global_crops_scale: pair.default([0.32, 1.0]),
  local_crops_number: nonNegInt.default(8),
  local_crops_scale: pair.default([0.05, 0.32]),
  global_crops_size: sizeOrSizes.default(224),
  local_crops_size: sizeOrSizes.default(96),
  global_local_crop_pairs_ratios: z.union([num, z.array(num).min(1)]).default(1.0),
  gram_teacher_crops_size: sizeOrSizes.nullable().default(null),
  localcrops_subset_of_globalcrops: z.boolean().default(false),
  share_color_jitter: z.boolean().default(false),
  horizontal_flips: z.boolean().default(true),
  gram_teacher_no_distortions: z.boolean().default(false),
  rgb_mean: z.tuple([num, num, num]).default([0.485, 0.456, 0.406]),
  rgb_std: z.tuple([num, num, num]).default([0.229, 0.224, 0.225]),
  teacher_to_student_resolution_scale: num.positive().default(1.0),
});

const evaluation = z.strictObject({
  eval_period_iterations: nonNegInt.default(12500),
  low_freq_every: posInt.default(5),
  config_files: z.strictObject({ high_freq: str.default('benchmark_high_frequency.yaml'), low_freq: str.default('benchmark_low_frequency.yaml') }).prefault({}),
});

const checkpointing = z.strictObject({
  period: posInt.default(3750),
  max_to_keep: posInt.nullable().default(3),
  keep_every: num.positive().default(99999999999999999), // beyond 2^53: not an int check
});

const schedules = z.strictObject({
  lr: lrScheduleV2,
  weight_decay: scheduleV2,
  momentum: scheduleV2,
  teacher_temp: scheduleV2,
});

/** Keys of v1 schedules (`dinov3/train/train.py::build_schedulers`) that must be numbers when `schedules` is absent. */
const V1_KEYS = [
  ['optim', 'lr'],
  ['optim', 'min_lr'],
  ['optim', 'warmup_epochs'],
  ['optim', 'weight_decay'],
  ['optim', 'weight_decay_end'],
  ['optim', 'schedule_trunc_extra'],
  ['optim', 'freeze_last_layer_epochs'],
  ['teacher', 'momentum_teacher'],
  ['teacher', 'final_momentum_teacher'],
  ['teacher', 'warmup_teacher_temp'],
  ['teacher', 'teacher_temp'],
  ['teacher', 'warmup_teacher_temp_epochs'],
] as const;

/** Strict schema of the SSL training config (official key names and defaults). */
export const SSLConfigSchema = z
  .strictObject({
    MODEL: MODEL.prefault({}),
    compute_precision: computePrecision.prefault({}),
    dino: dino.prefault({}),
    ibot: ibot.prefault({}),
    gram: gram.prefault({}),
    train: train.prefault({}),
    student: student.prefault({}),
    teacher: teacher.prefault({}),
    distillation: distillation.prefault({}),
    multidistillation: multidistillation.prefault({}),
    hrft: hrft.prefault({}),
    optim: optim.prefault({}),
    crops: crops.prefault({}),
    evaluation: evaluation.prefault({}),
    checkpointing: checkpointing.prefault({}),
    schedules: schedules.optional(),
  })
  .superRefine((c, ctx) => {
    if (!c.schedules)
      for (const [section, key] of V1_KEYS)
        if ((c[section] as Record<string, unknown>)[key] === null)
          ctx.addIssue({
            code: 'custom',
            path: [section, key],
            message: `${section}.${key} is null: schedules v1 need a number (or give a "schedules" mapping for v2)`,
          });
    const custom = c.student.arch === 'vit_custom';
    for (const key of ['embed_dim', 'depth', 'num_heads'] as const) {
      const given = c.student[key] !== undefined;
      if (custom && !given) ctx.addIssue({ code: 'custom', path: ['student', key], message: `student.arch vit_custom needs student.${key}` });
      if (!custom && given)
        ctx.addIssue({
          code: 'custom',
          path: ['student', key],
          message: `student.${key} is only read with student.arch vit_custom (${c.student.arch} fixes it)`,
        });
    }
    if (custom && c.student.embed_dim !== undefined && c.student.num_heads !== undefined && c.student.embed_dim % (4 * c.student.num_heads) !== 0)
      ctx.addIssue({
        code: 'custom',
        path: ['student', 'embed_dim'],
        message: `student.embed_dim (${c.student.embed_dim}) must be a multiple of 4·num_heads (${4 * c.student.num_heads}) for the axial RoPE`,
      });
    const { global_crops_size: g, local_crops_size: l, gram_teacher_crops_size: gt, global_local_crop_pairs_ratios: r } = c.crops;
    const lens = [g, l, r, ...(gt === null ? [] : [gt])].map((v) => (Array.isArray(v) ? v.length : 1));
    if (lens.some((n) => n !== lens[0]))
      ctx.addIssue({
        code: 'custom',
        path: ['crops', 'global_crops_size'],
        message: 'crops.global_crops_size, local_crops_size, global_local_crop_pairs_ratios (and gram_teacher_crops_size) must list as many entries',
      });
  });

/** A complete SSL training config. */
export type SSLConfig = z.output<typeof SSLConfigSchema>;
/** A config as written in a file: every key optional. */
export type SSLConfigInput = z.input<typeof SSLConfigSchema>;

/** The official defaults (`ssl_default_config.yaml`), a fresh object each call. */
export function defaultSSLConfig(): SSLConfig {
  return parseConfig(SSLConfigSchema, {});
}

/** Validates a (partial) config merged onto the official defaults (as OmegaConf merges: a partial nested mapping
 * such as `dino.local_loss_weight_schedule: {end: 1}` keeps the other defaults).
 * @throws ConfigError, e.g. `✖ Unrecognized key: "lrr" (did you mean "lr"?)\n  → at optim` */
export function parseSSLConfig(input: unknown): SSLConfig {
  return parseConfig(SSLConfigSchema, mergeConfig(defaultSSLConfig(), input ?? {}));
}

type Plain = Record<string, unknown>;
const isPlain = (x: unknown): x is Plain => x !== null && typeof x === 'object' && !Array.isArray(x);

/** OmegaConf-style merge: mappings merge key by key (recursively), anything else (lists, scalars, null) replaces. */
export function mergeConfig(base: unknown, over: unknown): unknown {
  if (!isPlain(base) || !isPlain(over)) return cloneData(over);
  const out = cloneData(base) as Plain;
  for (const [k, v] of Object.entries(over)) out[k] = k in out ? mergeConfig(out[k], v) : cloneData(v);
  return out;
}

/** A deep copy of config data; values that are not data (functions, symbols) are refused with a ConfigError. */
function cloneData(v: unknown, op = 'mergeConfig'): unknown {
  if (typeof v === 'function' || typeof v === 'symbol')
    throw new ConfigError(`${op}: a config value must be data (objects, arrays, strings, numbers, booleans, null), received ${describe(v)}`);
  try {
    return structuredClone(v);
  } catch (e) {
    // structuredClone's DataCloneError: a function or symbol nested in an object or array.
    throw new ConfigError(`${op}: a config value must be data (objects, arrays, strings, numbers, booleans, null): ${(e as Error).message}`);
  }
}

const KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Parses dotlist overrides (`optim.lr=1e-4`, `crops.global_crops_scale=[0.4,1]`, `gram.ckpt=null`) into a nested
 * object. Values are YAML scalars or flow collections, typed as `OmegaConf.from_cli` types them: numbers, booleans,
 * null (also an empty value), lists, quoted or bare strings.
 * @throws ConfigError for an item that is not `key.path=value`
 */
export function parseOverrides(overrides: readonly string[]): Plain {
  expectArray('parseOverrides', 'overrides', overrides, 'an array of strings');
  let out: Plain = {};
  for (const [i, item] of overrides.entries()) {
    expectString('parseOverrides', `overrides[${i}]`, item);
    const eq = item.indexOf('=');
    const key = eq < 0 ? item : item.slice(0, eq);
    const parts = key.split('.');
    if (eq < 0 || !parts.every((p) => KEY.test(p)))
      throw new ConfigError(`invalid override "${item}": expected key.path=value with dotted identifiers (e.g. optim.lr=1e-4)`);
    const text = item.slice(eq + 1);
    let value: unknown;
    try {
      value = text.trim() === '' ? null : YAML.parse(text);
    } catch (e) {
      throw new ConfigError(`invalid override "${item}": the value is not valid YAML (${(e as Error).message.split('\n')[0]})`);
    }
    let nested: unknown = value;
    for (const p of [...parts].reverse()) nested = { [p]: nested };
    out = mergeConfig(out, nested) as Plain;
  }
  return out;
}

/** Reads a YAML (.yaml/.yml) or JSON (.json) config file into a plain object. */
export async function readConfigFile(path: string): Promise<Plain> {
  expectPath('readConfigFile', 'path', path);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new ConfigError(`${path}: no such config file`);
    throw new ConfigError(`${path}: cannot read the config file (${(e as Error).message})`);
  }
  let v: unknown;
  const ext = extname(path).toLowerCase();
  try {
    if (ext === '.json') v = JSON.parse(text);
    else if (ext === '.yaml' || ext === '.yml') v = YAML.parse(text);
    else throw new ConfigError(`${path}: a config file must end in .yaml, .yml or .json`);
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError(`${path}: invalid ${ext === '.json' ? 'JSON' : 'YAML'} (${(e as Error).message.split('\n')[0]})`);
  }
  if (v === null || v === undefined) return {};
  if (!isPlain(v)) throw new ConfigError(`${path}: the config must be a mapping of sections, not ${Array.isArray(v) ? 'a list' : typeof v}`);
  return v;
}

/** Names of the built-in presets. */
export function sslPresetNames(): string[] {
  return Object.keys(SSL_PRESETS);
}

/**
 * Builds a config: a preset name (`ssl_default`, `cpu_tiny_fmnist`, `vits16_gram_anchor`, … see `sslPresetNames()`) or a
 * YAML/JSON file, merged onto the official defaults, then the dotlist overrides, then validated strictly (as
 * `dinov3/configs/config.py::get_cfg_from_args`: default ← file ← overrides).
 * @example await loadSSLConfig('cpu_tiny_fmnist', ['optim.epochs=10', 'train.seed=1'])
 * @throws ConfigError for an unknown preset or file, bad YAML/JSON, a malformed override, unknown keys or wrong types
 */
export async function loadSSLConfig(fileOrPreset: string, overrides: readonly string[] = []): Promise<SSLConfig> {
  expectString('loadSSLConfig', 'fileOrPreset', fileOrPreset, true);
  expectArray('loadSSLConfig', 'overrides', overrides, 'an array of strings');
  let base: unknown;
  const preset = (SSL_PRESETS as Record<string, SSLConfigInput | undefined>)[fileOrPreset];
  if (preset) base = preset;
  else if (/\.(ya?ml|json)$/i.test(fileOrPreset)) base = await readConfigFile(fileOrPreset);
  else {
    const hint = suggest(fileOrPreset, sslPresetNames());
    throw new ConfigError(
      `unknown SSL config preset "${fileOrPreset}"${hint ? ` (did you mean "${hint}"?)` : ''}; known: ${sslPresetNames().join(', ')} (or a .yaml/.json file)`,
    );
  }
  return parseSSLConfig(mergeConfig(base, parseOverrides(overrides)));
}

/** A config as YAML text (keys in schema order; `schedules` only when set). */
export function configToYaml(cfg: SSLConfig): string {
  expectConfig('configToYaml', 'cfg', cfg, []);
  cloneData(cfg, 'configToYaml'); // refuses functions and symbols (YAML cannot hold them either); configs are small
  return YAML.stringify(cfg, { lineWidth: 0 });
}

/** Writes `cfg` to `<runDir>/<name>` (default `config.yaml`, as `dinov3/configs/config.py::write_config`) atomically.
 * Returns the path. */
export async function writeResolvedConfig(runDir: string, cfg: SSLConfig, name = 'config.yaml'): Promise<string> {
  expectPath('writeResolvedConfig', 'runDir', runDir);
  expectConfig('writeResolvedConfig', 'cfg', cfg, []);
  expectPath('writeResolvedConfig', 'name', name);
  await mkdir(runDir, { recursive: true });
  const path = join(runDir, name);
  await atomicWriteFile(path, [Buffer.from(configToYaml(cfg))]);
  return path;
}

/**
 * The lr multiplier of the batch-size scaling rule (`dinov3/configs/config.py::apply_scaling_rules_to_cfg` for v1,
 * `dinov3/train/train.py::build_schedulers_v2` for v2, where it multiplies schedules.lr.peak and .end):
 * `sqrt_wrt_1024`: 4·√(B/1024); `linear_wrt_256`: B/256; `none`: 1, with B = batch_size_per_gpu × worldSize.
 * @example lrScaleFactor(cfg, 1) // batch 64: 4·√(64/1024) = 1
 */
export function lrScaleFactor(cfg: SSLConfig, worldSize = 1): number {
  expectConfig('lrScaleFactor', 'cfg', cfg, ['optim', 'train']);
  if (!Number.isInteger(worldSize) || worldSize < 1) throw new ConfigError(`lrScaleFactor: worldSize must be a positive integer, received ${show(worldSize)}`);
  return lrScale(cfg.optim.scaling_rule, cfg.train.batch_size_per_gpu * worldSize);
}

/**
 * A copy of `cfg` with `dinov3/configs/config.py::apply_scaling_rules_to_cfg` applied: for schedules v1, optim.lr is
 * multiplied by lrScaleFactor; with `schedules` (v2) the config is returned unchanged (the schedule builder scales).
 * The official code writes config.yaml before scaling: write the unscaled config.
 */
export function applyScalingRules(cfg: SSLConfig, worldSize = 1): SSLConfig {
  expectConfig('applyScalingRules', 'cfg', cfg, ['optim', 'train']);
  const out = structuredClone(cfg);
  if (out.schedules || out.optim.lr === null) return out;
  out.optim.lr = out.optim.lr * lrScaleFactor(cfg, worldSize);
  return out;
}
