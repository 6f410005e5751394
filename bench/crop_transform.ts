// A cheap stand-in augmentation for loader benchmarks (loaded by module path in the loader's worker threads):
// `nGlobal` random square crops of side `global` and `nLocal` of side `local` (nearest resampling, random flip),
// scaled to [0, 1], CHW float32, every draw from the given Rng.
import type { RgbImage } from '../src/data/datasets/types.js';
import type { MultiCropLike } from '../src/data/loader_task.js';
import type { Rng } from '../src/data/rng.js';

export interface CropOptions {
  global: number;
  local: number;
  nGlobal?: number;
  nLocal?: number;
}

function crop(img: RgbImage, side: number, rng: Rng): Float32Array {
  const win = Math.max(1, Math.floor(Math.min(img.width, img.height) * (0.5 + 0.5 * rng.random())));
  const top = Math.floor(rng.random() * (img.height - win + 1));
  const left = Math.floor(rng.random() * (img.width - win + 1));
  const flip = rng.random() < 0.5;
  const out = new Float32Array(3 * side * side);
  for (let y = 0; y < side; y++)
    for (let x = 0; x < side; x++) {
      const sy = top + Math.floor(((y + 0.5) * win) / side);
      let sx = left + Math.floor(((x + 0.5) * win) / side);
      if (flip) sx = 2 * left + win - 1 - sx;
      for (let c = 0; c < 3; c++) out[c * side * side + y * side + x] = img.data[(sy * img.width + sx) * 3 + c]! / 255;
    }
  return out;
}

export default function makeCropTransform(o: CropOptions): (img: RgbImage, rng: Rng) => MultiCropLike {
  return (img, rng) => ({
    global: Array.from({ length: o.nGlobal ?? 2 }, () => crop(img, o.global, rng)),
    local: Array.from({ length: o.nLocal ?? 8 }, () => crop(img, o.local, rng)),
  });
}
