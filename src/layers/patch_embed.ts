// Patch embedding: Conv2d(in_chans → D, kernel = stride = patch) with bias, no norm, output [B, H/p, W/p, D]
// (dinov3/layers/patch_embed.py with flatten_embedding=False). Floor division (remainder pixels on the
// right/bottom are dropped); init Uniform(±√k), k = 1/(in_chans·p²) (PatchEmbed.reset_parameters).
import { Conv2d } from '../nn/layers.js';
import { uniform_ } from '../nn/init.js';
import { Module } from '../nn/module.js';
import { type CreateOptions, empty, type Generator } from '../tensor/creation.js';
import { scope } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { drawInto } from './utils.js';

export class PatchEmbed extends Module {
  readonly proj: Conv2d;

  constructor(
    readonly imgSize: number,
    readonly patchSize: number,
    readonly inChans: number,
    readonly embedDim: number,
    o: CreateOptions = {},
  ) {
    super();
    this.proj = this.registerModule('proj', new Conv2d(inChans, embedDim, patchSize, patchSize, o));
  }

  /** `[B, C, H, W]` → `[B, ⌊H/p⌋, ⌊W/p⌋, D]`. */
  forward(x: Tensor): Tensor {
    const [b, , h, w] = x.shape as [number, number, number, number];
    const hp = Math.floor(h / this.patchSize);
    const wp = Math.floor(w / this.patchSize);
    // libtorch 1.13 has no meta kernel for convolutions: on the meta device only the shape is produced.
    if (x.device === 'meta') return empty([b, hp, wp, this.embedDim], { dtype: this.proj.weight.dtype, device: 'meta' });
    return scope(() => this.proj.forward(x).permute([0, 2, 3, 1]).contiguous()); // [B, Hp, Wp, D]
  }

  /** Uniform(−√k, √k) for weight and bias with k = 1/(in_chans·p²) (official `reset_parameters`). */
  resetParameters(generator?: Generator): void {
    const bound = Math.sqrt(1 / (this.inChans * this.patchSize * this.patchSize));
    drawInto(this.proj.weight, (t) => uniform_(t, -bound, bound, generator));
    if (this.proj.bias) drawInto(this.proj.bias, (t) => uniform_(t, -bound, bound, generator));
  }
}
