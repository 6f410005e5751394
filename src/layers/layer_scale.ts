// LayerScale: x ⊙ γ with γ ∈ R^D initialised to the `layerscale_init` value (dinov3/layers/layer_scale.py).
// Present iff the init value is non-zero (dinov3/layers/block.py::SelfAttentionBlock.__init__); γ = init value
// (dinov3/layers/layer_scale.py::LayerScale.reset_parameters).
import { constant_ } from '../nn/init.js';
import { Module } from '../nn/module.js';
import { type CreateOptions, empty } from '../tensor/creation.js';
import type { Tensor } from '../tensor/tensor.js';

export class LayerScale extends Module {
  readonly gamma: Tensor;

  constructor(
    readonly dim: number,
    readonly initValues = 1e-5,
    o: CreateOptions = {},
  ) {
    super();
    this.gamma = this.registerParameter('gamma', empty([dim], o));
    this.resetParameters();
  }

  forward(x: Tensor): Tensor {
    return x.mul(this.gamma);
  }

  resetParameters(): void {
    constant_(this.gamma, this.initValues);
  }
}
