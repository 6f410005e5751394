// Block masking for iBOT (BEiT-style): rectangles of random area and log-uniform aspect ratio are added until the
// target count is reached or no rectangle fits, then random single patches complete the mask to exactly the target.
// Implements `dinov3/data/masking.py::MaskingGenerator`, with every draw taken from an Rng (src/data/rng.ts).
import { ConfigError } from '../native/errors.js';
import type { Rng } from './rng.js';

export interface MaskingOptions {
  /** Patch grid: a side (square) or [height, width]. */
  inputSize: number | readonly [number, number];
  /** Per-call default target (official `num_masking_patches`; the collate always passes the target explicitly). */
  numMaskingPatches?: number;
  /** Smallest block area (default 4). */
  minNumPatches?: number;
  /** Largest block area (default `numMaskingPatches`; the official train builder passes ≈ 0.5·N, see officialMaxNumPatches). */
  maxNumPatches?: number;
  /** Aspect ratio range [minAspect, maxAspect] (default 0.3 and 1/0.3), drawn log-uniformly. */
  minAspect?: number;
  maxAspect?: number;
}

/**
 * `max_num_patches` as `dinov3/train/train.py::build_data_loader_from_cfg` computes it, `0.5 * S // p * S // p`
 * evaluated left to right in Python floats (98 for 224/16, i.e. 0.5·N).
 */
export function officialMaxNumPatches(globalCropSize: number, patchSize: number): number {
  for (const [name, v] of [
    ['globalCropSize', globalCropSize],
    ['patchSize', patchSize],
  ] as const)
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1)
      throw new ConfigError(`officialMaxNumPatches: ${name} must be a positive integer, got ${typeof v === 'number' ? v : typeof v}`);
  return Math.floor((Math.floor((0.5 * globalCropSize) / patchSize) * globalCropSize) / patchSize);
}

/** Python's round(): half to even. */
function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

export class MaskingGenerator {
  readonly height: number;
  readonly width: number;
  readonly numPatches: number;
  readonly numMaskingPatches: number | undefined;
  readonly minNumPatches: number;
  readonly maxNumPatches: number;
  readonly logAspectRatio: readonly [number, number];

  /** @throws ConfigError for a non-positive grid, or bounds that are not positive or out of order. */
  constructor(o: MaskingOptions) {
    if (typeof o !== 'object' || o === null)
      throw new ConfigError(`MaskingGenerator: expected an options object { inputSize, … }, received ${o === null ? 'null' : typeof o}`);
    const size: unknown = o.inputSize;
    if (typeof size !== 'number' && !(Array.isArray(size) && size.length === 2))
      throw new ConfigError(
        `MaskingGenerator: inputSize must be a positive integer or [height, width], got ${Array.isArray(size) ? `an array of length ${size.length}` : typeof size}`,
      );
    const [h, w] = typeof o.inputSize === 'number' ? [o.inputSize, o.inputSize] : o.inputSize;
    if (!Number.isInteger(h) || !Number.isInteger(w) || h < 1 || w < 1)
      throw new ConfigError(`MaskingGenerator: inputSize must be positive integers, got ${String(o.inputSize)}`);
    this.height = h;
    this.width = w;
    this.numPatches = h * w;
    this.numMaskingPatches = o.numMaskingPatches;
    this.minNumPatches = o.minNumPatches ?? 4;
    this.maxNumPatches = o.maxNumPatches ?? o.numMaskingPatches ?? this.numPatches;
    const minAspect = o.minAspect ?? 0.3;
    const maxAspect = o.maxAspect ?? 1 / minAspect;
    if (!(minAspect > 0) || !(maxAspect > 0)) throw new ConfigError(`MaskingGenerator: aspect ratios must be positive, got ${minAspect} and ${maxAspect}`);
    if (!(this.minNumPatches >= 0) || !(this.maxNumPatches > 0)) throw new ConfigError(`MaskingGenerator: minNumPatches must be >= 0 and maxNumPatches > 0`);
    this.logAspectRatio = [Math.log(minAspect), Math.log(maxAspect)];
  }

  /** One attempt series of `_mask`: adds at most one block; returns the number of newly masked cells. */
  private addBlock(mask: Uint8Array, maxMaskPatches: number, rng: Rng): number {
    let delta = 0;
    for (let attempt = 0; attempt < 10; attempt++) {
      // random.uniform(a, b) = a + (b - a)·U, also when b < a (budget below minNumPatches)
      const targetArea = rng.uniform(this.minNumPatches, maxMaskPatches);
      const aspect = Math.exp(rng.uniform(this.logAspectRatio[0], this.logAspectRatio[1]));
      const h = roundHalfEven(Math.sqrt(targetArea * aspect));
      const w = roundHalfEven(Math.sqrt(targetArea / aspect));
      if (w < this.width && h < this.height) {
        const top = rng.randint(0, this.height - h);
        const left = rng.randint(0, this.width - w);
        let masked = 0;
        for (let i = top; i < top + h; i++) for (let j = left; j < left + w; j++) masked += mask[i * this.width + j]!;
        const fresh = h * w - masked;
        if (fresh > 0 && fresh <= maxMaskPatches) {
          for (let i = top; i < top + h; i++)
            for (let j = left; j < left + w; j++) {
              const k = i * this.width + j;
              if (mask[k] === 0) {
                mask[k] = 1;
                delta++;
              }
            }
        }
        if (delta > 0) break;
      }
    }
    return delta;
  }

  /**
   * A mask of exactly `numMaskingPatches` cells (row-major, 1 = masked) on the `height × width` grid.
   * @throws ConfigError if the target is negative or larger than the grid.
   */
  generate(rng: Rng, numMaskingPatches = this.numMaskingPatches ?? 0): Uint8Array {
    if (!Number.isInteger(numMaskingPatches) || numMaskingPatches < 0 || numMaskingPatches > this.numPatches)
      throw new ConfigError(`MaskingGenerator: cannot mask ${numMaskingPatches} of ${this.numPatches} patches`);
    const mask = new Uint8Array(this.numPatches);
    let count = 0;
    while (count < numMaskingPatches) {
      const budget = Math.min(numMaskingPatches - count, this.maxNumPatches);
      const delta = this.addBlock(mask, budget, rng);
      if (delta === 0) break;
      count += delta;
    }
    // complete_mask_randomly: uniformly chosen unmasked cells, without replacement (partial Fisher–Yates).
    if (count < numMaskingPatches) {
      const free: number[] = [];
      for (let k = 0; k < mask.length; k++) if (mask[k] === 0) free.push(k);
      for (let i = 0; i < numMaskingPatches - count; i++) {
        const j = i + Math.floor(rng.random() * (free.length - i));
        const t = free[j]!;
        free[j] = free[i]!;
        free[i] = t;
        mask[t] = 1;
      }
    }
    return mask;
  }
}
