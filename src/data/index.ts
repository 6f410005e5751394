// Image loading and preprocessing for inference (RECIPE §10).
export * from './transforms.js';
export * from './image.js';
export * from './image_list.js';
// Multi-crop SSL augmentation (DataAugmentationDINO), plain typed arrays for worker threads.
export * from './augmentations.js';
