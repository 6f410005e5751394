// Built-in SSL training presets. Each is a partial config merged onto the official defaults by `loadSSLConfig`.
import type { SSLConfigInput } from '../config.js';
import { stagePresets } from './stages.js';

/** `dinov3/configs/ssl_default_config.yaml` itself. */
const ssl_default: SSLConfigInput = {};

/**
 * `dinov3/configs/train/vitl_im1k_lin834.yaml` (ViT-L/16 on ImageNet-1k, 2048 images per step over 32 GPUs). That
 * file restates the defaults; what it changes or adds on top of them is listed here (merging gives the same config).
 */
const vitl_im1k_lin834: SSLConfigInput = {
  train: { output_dir: '/checkpoint/dino/qas/rope/vitl16_im1k', cache_dataset: true, cell_augmentation: false, cell_augmentation_type: 'hpa' },
  student: { patch_drop: 0.0 },
};

/**
 * CPU try-out on Fashion-MNIST: a tiny ViT (192 wide, 6 blocks, 3 heads, patch 4, 4 storage tokens) at 2×32 px global
 * and 6×16 px local crops, DINO and iBOT heads 512 → 128 → 1024 prototypes, 64 images per step; the architecture and
 * crops of the official-code CPU anchor run. Short-run choices (not official): fp32 on CPU, RoPE in fp32, drop path
 * 0.1, schedules compressed to 10 "epochs" of 100 iterations (1 warmup epoch, 3 teacher-temperature warmup epochs),
 * teacher momentum 0.99 → 1, no compilation, no loader workers, a checkpoint every 200 iterations.
 */
const cpu_tiny_fmnist: SSLConfigInput = {
  MODEL: { DEVICE: 'cpu' },
  compute_precision: { param_dtype: 'fp32' },
  dino: { head_n_prototypes: 1024, head_hidden_dim: 512, head_bottleneck_dim: 128 },
  ibot: { head_n_prototypes: 1024, head_hidden_dim: 512, head_bottleneck_dim: 128 },
  train: {
    batch_size_per_gpu: 64,
    dataset_path: null,
    num_workers: 0,
    OFFICIAL_EPOCH_LENGTH: 100,
    compile: false,
  },
  student: {
    arch: 'vit_custom',
    embed_dim: 192,
    depth: 6,
    num_heads: 3,
    patch_size: 4,
    n_storage_tokens: 4,
    drop_path_rate: 0.1,
    pos_embed_rope_dtype: 'fp32',
  },
  teacher: { momentum_teacher: 0.99, final_momentum_teacher: 1, warmup_teacher_temp_epochs: 3 },
  optim: { epochs: 10, warmup_epochs: 1, freeze_last_layer_epochs: 1 },
  crops: { global_crops_size: 32, local_crops_size: 16, local_crops_number: 6 },
  evaluation: { eval_period_iterations: 0 },
  checkpointing: { period: 200, max_to_keep: 2 },
};

/**
 * CPU speed check of ViT-S/16 at small resolution: 2×112 px global and 4×48 px local crops, 8 images per step, 4096
 * prototypes (the setting of the official-code CPU step timing). fp32, no compilation, short schedules as above.
 */
const cpu_vits_tiny: SSLConfigInput = {
  MODEL: { DEVICE: 'cpu' },
  compute_precision: { param_dtype: 'fp32' },
  dino: { head_n_prototypes: 4096 },
  ibot: { head_n_prototypes: 4096 },
  train: { batch_size_per_gpu: 8, dataset_path: null, num_workers: 0, OFFICIAL_EPOCH_LENGTH: 100, compile: false },
  student: { arch: 'vit_small', patch_size: 16, pos_embed_rope_dtype: 'fp32' },
  teacher: { warmup_teacher_temp_epochs: 3 },
  optim: { epochs: 10, warmup_epochs: 1 },
  crops: { global_crops_size: 112, local_crops_size: 48, local_crops_number: 4 },
  evaluation: { eval_period_iterations: 0 },
  checkpointing: { period: 200, max_to_keep: 2 },
};

/** Every built-in preset by name. */
export const SSL_PRESETS: Readonly<Record<string, SSLConfigInput>> = { ssl_default, vitl_im1k_lin834, cpu_tiny_fmnist, cpu_vits_tiny, ...stagePresets() };
