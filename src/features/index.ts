// Feature extraction, feature files and PCA visualisation.
export * from './backbone.js';
export * from './decomp.js';
export * from './extract.js';
export * from './save.js';
export * from './pca.js';
