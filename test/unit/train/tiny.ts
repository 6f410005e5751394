// The tiny training config shared by the trainer, resume and Gram tests: a 64-wide 2-block ViT (patch 8) on 32-px
// global and 16-px local crops, small heads, batch 4, 12 iterations of schedules (3 epochs of 4).

/** The small DINO and iBOT heads of the tiny test configs. */
const TINY_HEADS: readonly string[] = [
  'dino.head_n_prototypes=32',
  'dino.head_hidden_dim=48',
  'dino.head_bottleneck_dim=16',
  'ibot.head_n_prototypes=24',
  'ibot.head_hidden_dim=40',
  'ibot.head_bottleneck_dim=12',
];

/** The tiny model, crops, heads, batch and precision of the trainer, resume, Gram and distillation tests. */
export const TINY_ARCH: readonly string[] = [
  'student.arch=vit_test',
  'student.patch_size=8',
  'student.n_storage_tokens=2',
  'student.drop_path_rate=0.0',
  'crops.global_crops_size=32',
  'crops.local_crops_size=16',
  'crops.local_crops_number=2',
  ...TINY_HEADS,
  'train.batch_size_per_gpu=4',
  'compute_precision.param_dtype=fp32',
];

export function tinyOverrides(o: { dropPath?: number; checkpointPeriod?: number } = {}): string[] {
  return [
    ...TINY_ARCH,
    `student.drop_path_rate=${o.dropPath ?? 0.0}`,
    'train.OFFICIAL_EPOCH_LENGTH=4',
    'optim.epochs=3',
    'optim.warmup_epochs=1',
    'teacher.warmup_teacher_temp_epochs=1',
    `checkpointing.period=${o.checkpointPeriod ?? 2}`,
    'checkpointing.max_to_keep=2',
    'evaluation.eval_period_iterations=0',
  ];
}

// The tiny config of the sharded-training tests (Trainer over Gloo ranks, sharded checkpoints, `dinov3 train
// --nproc-per-node`): a 16-px ViT with small heads and a distributed KoLeo, fp32, 12 schedule positions.
export const TINY_SHARDED: readonly string[] = [
  'student.arch=vit_test',
  'student.patch_size=8',
  'student.n_storage_tokens=2',
  'student.drop_path_rate=0',
  'student.layerscale=1.0',
  'crops.global_crops_size=16',
  'crops.local_crops_size=8',
  'crops.local_crops_number=2',
  ...TINY_HEADS,
  'dino.koleo_loss_distributed=true',
  'compute_precision.param_dtype=fp32',
  'train.OFFICIAL_EPOCH_LENGTH=4',
  'optim.epochs=3',
  'optim.warmup_epochs=1',
  'teacher.warmup_teacher_temp_epochs=1',
  'evaluation.eval_period_iterations=0',
];
