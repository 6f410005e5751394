// Shared fixtures for the feature tests: the tiny official-layout ViT (64 wide, 2 blocks, 4 storage tokens) and photos.
import { join } from 'node:path';

import { type DinoVisionTransformer, loadBackbone } from '../../../src/index.js';

export const IMAGES = new URL('../../fixtures/images/', import.meta.url).pathname;
export const REFERENCE = new URL('../../fixtures/reference/', import.meta.url).pathname;
export const CHELSEA = join(IMAGES, 'chelsea.jpg'); // 451×300
export const COFFEE = join(IMAGES, 'coffee.jpg'); // 600×400
export const EXIF6 = join(IMAGES, 'chelsea_exif6.jpg'); // 226×150 upright
export const GRAY = join(IMAGES, 'coffee_gray_alpha.png'); // 120×80
export const TINY_WEIGHTS = join(REFERENCE, 'official_vits_like.safetensors');

/** The tiny reference backbone in eval mode (the caller disposes it). */
export async function loadTinyModel(): Promise<DinoVisionTransformer> {
  return (await loadBackbone(TINY_WEIGHTS)).model;
}
