// Image loading and preprocessing for inference (dinov3/data/transforms.py::make_eval_transform).
export * from './transforms.js';
export * from './image.js';
export * from './image_list.js';
// SSL data pipeline: datasets, iBOT masking, collation, the threaded loader.
export * from './rng.js';
export * from './batch.js';
export * from './datasets/index.js';
export * from './masking.js';
export * from './collate.js';
export * from './loader.js';
export { loadTransform, type SampleTask, type SampleResult } from './loader_task.js';
// Multi-crop SSL augmentation (DataAugmentationDINO), plain typed arrays for worker threads.
export * from './augmentations.js';
