// Self-supervised training (official dinov3/train and dinov3/checkpointer): config, meta-architecture, parameter
// groups, schedules, one iteration, the Trainer, checkpoints, logging, data sources.
export * from './config.js';
export { SSL_PRESETS } from './presets/index.js';
export * from './ssl_meta_arch.js';
export * from './param_groups.js';
export * from './schedules.js';
export * from './train.js';
export * from './trainer.js';
export * from './checkpointer.js';
export * from './logging.js';
export * from './synthetic.js';
export * from './sharded.js';
export * from './data.js';
export * from './gram.js';
export * from './stages.js';
export * from './multidist_meta_arch.js';
export { cropSizesForIteration, cropSizeChoices, MULTI_RESOLUTION_SEED, type CropSizes, type CropsConfig } from '../data/crop_sizes.js';
