// Three-stage presets (pretraining → Gram anchoring → high-resolution adaptation) mirroring the official 7B recipe
// (`dinov3/configs/train/dinov3_vit7b16_{pretrain,gram_anchor,high_res_adapt}.yaml`) at ViT-S/B/L scale on one
// machine, and the 7B stages themselves. Each stage is a partial config merged onto the official defaults.
//
// What is kept from the 7B files: the stage structure and every recipe switch (v2 schedules; Gram anchoring as a
// continuation whose Gram weight is 0 until the pretraining's last iteration, then rises to 2 over one epoch, with
// the gram teacher refreshed every update_frequency iterations from 10 refresh-periods after the switch, at most 3
// times; the DINO local loss re-weighted 1 → 0.5 from the same iteration; 2× gram-teacher crops without distortions;
// a new high-resolution run with a multi-resolution mix, a fixed Gram weight 1.5, grouped KoLeo and a late cosine lr).
// What is scaled to one machine (not official): ViT-S/B/L with an MLP FFN (ratio 4) and no fp8, 65536/32768-prototype
// heads, per-GPU batches that fit one 80-140 GB GPU, 100 pretraining epochs of 1000 iterations (7B: 1000), Gram
// anchoring for 20 more (7B: 200), and — as a single process has nothing to gather — KoLeo groups of the local batch.
// The gram teacher of the anchoring stage is the EMA teacher at the switch (`gram.it_load_ema_teacher`), which is
// the teacher that the official stage loads from the pretraining checkpoint through `gram.ckpt`; the high-resolution
// stage takes its student and gram teacher from the anchored run (`student.resume_from_teacher_chkpt`, `gram.ckpt`:
// set by `stageRun`).
import type { SSLConfigInput } from '../config.js';
import { type ConfigChanges, VIT7B16_GRAM_ANCHOR_CHANGES, VIT7B16_HIGH_RES_ADAPT_CHANGES, VIT7B16_PRETRAIN } from './vit7b16.js';

const EPOCH = 1000;
const PRETRAIN_EPOCHS = 100;
const ANCHOR_EPOCHS = 20;

interface Size {
  arch: 'vit_small' | 'vit_base' | 'vit_large';
  drop_path_rate: number;
  batch: number;
  highResBatch: number;
  prototypes: number;
}
const SIZES = {
  vits16: { arch: 'vit_small', drop_path_rate: 0.1, batch: 64, highResBatch: 16, prototypes: 32768 },
  vitb16: { arch: 'vit_base', drop_path_rate: 0.2, batch: 48, highResBatch: 8, prototypes: 65536 },
  vitl16: { arch: 'vit_large', drop_path_rate: 0.3, batch: 32, highResBatch: 8, prototypes: 65536 },
} as const satisfies Record<string, Size>;

function pretrain(s: Size): SSLConfigInput {
  const heads = { head_n_prototypes: s.prototypes, head_hidden_dim: 2048, head_bottleneck_dim: 256 };
  return {
    ...VIT7B16_PRETRAIN,
    dino: { ...VIT7B16_PRETRAIN.dino, ...heads },
    ibot: { ...VIT7B16_PRETRAIN.ibot, ...heads },
    train: { ...VIT7B16_PRETRAIN.train, batch_size_per_gpu: s.batch, OFFICIAL_EPOCH_LENGTH: EPOCH, cache_dataset: false, sharded_eval_checkpoint: false },
    student: {
      ...VIT7B16_PRETRAIN.student,
      arch: s.arch,
      drop_path_rate: s.drop_path_rate,
      ffn_layer: 'mlp',
      ffn_ratio: 4,
      qkv_bias: true,
      untie_global_and_local_cls_norm: false,
      fp8_enabled: false,
    },
    optim: { ...VIT7B16_PRETRAIN.optim, epochs: PRETRAIN_EPOCHS },
    // cosine phases end with pretraining (cosine_epochs): a continuation with more epochs reads the same values up to
    // the switch, then the end values
    schedules: {
      lr: { start: 0, peak: 5.0e-4, end: 1.0e-5, warmup_epochs: 10, freeze_last_layer_epochs: 1, cosine_epochs: PRETRAIN_EPOCHS - 10 },
      weight_decay: { start: 0.04, peak: 0.04, end: 0.2, warmup_epochs: 0, cosine_epochs: PRETRAIN_EPOCHS },
      teacher_temp: { start: 0.04, peak: 0.07, end: 0.07, warmup_epochs: 10 },
      momentum: { start: 0.994, peak: 0.994, end: 0.999, warmup_epochs: 0, cosine_epochs: PRETRAIN_EPOCHS },
    },
    checkpointing: { period: 5000, max_to_keep: 3 },
    evaluation: { eval_period_iterations: 10000 },
  };
}

/** Gram anchoring: the same run continued (resume) for ANCHOR_EPOCHS more with the 7B file's Gram switches. */
function gramAnchor(): ConfigChanges {
  const switchIt = PRETRAIN_EPOCHS * EPOCH;
  const g = VIT7B16_GRAM_ANCHOR_CHANGES;
  return {
    dino: { ...g.dino, local_loss_weight_schedule: { start: 1, peak: 1, end: 0.5, warmup_epochs: PRETRAIN_EPOCHS, cosine_epochs: 1 } },
    gram: {
      ...g.gram,
      ckpt: null,
      it_load_ema_teacher: switchIt,
      update_frequency: EPOCH,
      it_first_update: switchIt + 10 * EPOCH,
      loss_weight_schedule: { start: 0, peak: 0, end: 2.0, warmup_epochs: PRETRAIN_EPOCHS, cosine_epochs: 1 },
    },
    optim: { epochs: PRETRAIN_EPOCHS + ANCHOR_EPOCHS },
    crops: { ...g.crops, gram_teacher_crops_size: 512 },
    // the 7B file lowers its constant lr plateau and raises the momentum to 0.999 at the switch; here the pretraining
    // schedules end at a low lr and 0.999 already and continue unchanged
  };
}

/** High-resolution adaptation: a new 30-epoch run from the anchored teacher with the 7B file's resolution mix. */
function highRes(s: Size): ConfigChanges {
  const h = VIT7B16_HIGH_RES_ADAPT_CHANGES;
  return {
    dino: { ...h.dino, koleo_distributed_loss_group_size: s.highResBatch },
    gram: { ...h.gram },
    train: { ...h.train, batch_size_per_gpu: s.highResBatch },
    optim: { epochs: 30 },
    crops: { ...h.crops },
    checkpointing: { period: 2500 },
    schedules: {
      lr: { start: 0, peak: 0, end: 1.25e-5, warmup_epochs: 0, freeze_last_layer_epochs: 0, cosine_epochs: 10 },
      teacher_temp: { start: 0.07, peak: 0.07, end: 0.07, warmup_epochs: 0 },
    },
  };
}

/** The stage structure of a preset family: how each stage starts from the previous one (see `stageRun`). */
export const STAGE_STARTS = { pretrain: 'continue', gram_anchor: 'continue', high_res_adapt: 'restart' } as const;

/** Preset name → partial config. The Gram-anchoring and high-resolution entries are complete presets: they merge the
 * previous stages' settings, as the official files restate them. */
export function stagePresets(): Record<string, SSLConfigInput> {
  const out: Record<string, SSLConfigInput> = {};
  const merge = (a: SSLConfigInput, b: ConfigChanges): SSLConfigInput => deepMerge(a, b) as SSLConfigInput;
  for (const [name, s] of Object.entries(SIZES)) {
    const p = pretrain(s);
    const g = merge(p, gramAnchor());
    out[`${name}_pretrain`] = p;
    out[`${name}_gram_anchor`] = g;
    out[`${name}_high_res_adapt`] = merge(g, highRes(s));
  }
  out.dinov3_vit7b16_pretrain = VIT7B16_PRETRAIN;
  out.dinov3_vit7b16_gram_anchor = merge(VIT7B16_PRETRAIN, VIT7B16_GRAM_ANCHOR_CHANGES);
  out.dinov3_vit7b16_high_res_adapt = merge(out.dinov3_vit7b16_gram_anchor, VIT7B16_HIGH_RES_ADAPT_CHANGES);
  return out;
}

function deepMerge(a: unknown, b: unknown): unknown {
  const plain = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!plain(a) || !plain(b)) return structuredClone(b);
  const out: Record<string, unknown> = structuredClone(a);
  for (const [k, v] of Object.entries(b)) out[k] = k in out ? deepMerge(out[k], v) : structuredClone(v);
  return out;
}
