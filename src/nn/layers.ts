// Basic layers: Linear, LayerNorm, RMSNorm, Conv2d. Parameter names match torch's (weight, bias) so that state-dict
// keys line up with the official checkpoints.
import { type CreateOptions, empty, ones, zeros } from '../tensor/creation.js';
import type { Tensor } from '../tensor/tensor.js';
import { linear } from '../ops/linalg.js';
import { conv2d, layerNorm, rmsNorm } from '../ops/nn.js';
import { uniform_ } from './init.js';
import { Module } from './module.js';

export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    o: CreateOptions & { bias?: boolean } = {},
  ) {
    super();
    this.weight = this.registerParameter('weight', empty([outFeatures, inFeatures], o));
    this.bias = o.bias === false ? null : this.registerParameter('bias', zeros([outFeatures], o));
    // torch's default init (kaiming uniform a=√5 ≡ U(±1/√in)); models re-initialise as the recipe says.
    const bound = 1 / Math.sqrt(inFeatures);
    uniform_(this.weight, -bound, bound);
    if (this.bias) uniform_(this.bias, -bound, bound);
  }
  forward(x: Tensor): Tensor {
    return linear(x, this.weight, this.bias);
  }
}

export class LayerNorm extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;
  constructor(
    readonly dim: number,
    readonly eps = 1e-5,
    o: CreateOptions = {},
  ) {
    super();
    this.weight = this.registerParameter('weight', ones([dim], o));
    this.bias = this.registerParameter('bias', zeros([dim], o));
  }
  forward(x: Tensor): Tensor {
    return layerNorm(x, [this.dim], this.weight, this.bias, this.eps);
  }
}

export class RMSNorm extends Module {
  readonly weight: Tensor;
  constructor(
    readonly dim: number,
    readonly eps = 1e-5,
    o: CreateOptions = {},
  ) {
    super();
    this.weight = this.registerParameter('weight', ones([dim], o));
  }
  forward(x: Tensor): Tensor {
    return rmsNorm(x, this.weight, this.eps);
  }
}

export class Conv2d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernelSize: number,
    readonly stride = 1,
    o: CreateOptions & { bias?: boolean; padding?: number } = {},
  ) {
    super();
    this.padding = o.padding ?? 0;
    this.weight = this.registerParameter('weight', empty([outChannels, inChannels, kernelSize, kernelSize], o));
    this.bias = o.bias === false ? null : this.registerParameter('bias', empty([outChannels], o));
    const bound = 1 / Math.sqrt(inChannels * kernelSize * kernelSize);
    uniform_(this.weight, -bound, bound);
    if (this.bias) uniform_(this.bias, -bound, bound);
  }
  readonly padding: number;
  forward(x: Tensor): Tensor {
    return conv2d(x, this.weight, this.bias, { stride: this.stride, padding: this.padding });
  }
}
