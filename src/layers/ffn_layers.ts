// Feed-forward layers (dinov3/layers/ffn_layers.py::Mlp, ::SwiGLUFFN): "mlp" = fc1 → GELU (exact erf form) → fc2;
// "swiglu*" = w3(SiLU(w1 x) ⊙ w2 x). SwiGLUFFN.__init__: the SwiGLU hidden width is int(F·2/3) rounded up to the alignment.
// "geglu" = w3(GELU(w1 x) ⊙ w2 x) with the hidden width F as is: not in the official code; it is Hugging Face
// transformers' gated MLP with hidden_act "gelu" (transformers models/dinov3_vit/modeling_dinov3_vit.py::DINOv3ViTGatedMLP:
// down_proj(act(gate_proj x) ⊙ up_proj x), intermediate_size = F), in SwiGLUFFN's parameter names.
import { Linear } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import { linear } from '../ops/linalg.js';
import { silu } from '../ops/pointwise.js';
import type { CreateOptions } from '../tensor/creation.js';
import { expectOptions, expectPositiveInt } from '../tensor/args.js';
import { scope } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { catKeepShapes, uncatWithShapes } from './utils.js';

export interface FfnOptions extends CreateOptions {
  bias?: boolean;
}

/** Shared list forward: per-token layers run once on the concatenated tokens of all groups (official ListForwardMixin). */
export abstract class FfnBase extends Module {
  abstract forward(x: Tensor): Tensor;
  forwardList(xs: Tensor[]): Tensor[] {
    return scope(() => {
      const { flat, shapes, numTokens } = catKeepShapes(xs);
      return uncatWithShapes(this.forward(flat), shapes, numTokens);
    });
  }
}

export class Mlp extends FfnBase {
  readonly fc1: Linear;
  readonly fc2: Linear;
  constructor(inFeatures: number, hiddenFeatures: number, o: FfnOptions = {}) {
    super();
    this.fc1 = this.registerModule('fc1', new Linear(inFeatures, hiddenFeatures, o));
    this.fc2 = this.registerModule('fc2', new Linear(hiddenFeatures, inFeatures, o));
  }
  forward(x: Tensor): Tensor {
    // fc1 → GELU (exact) as one linear entry with its activation (ops/linalg.ts), then fc2.
    return scope(() => this.fc2.forward(linear(x, this.fc1.weight, this.fc1.bias, 'gelu')));
  }
}

/** SwiGLU hidden width for a nominal hidden width `hiddenFeatures` (= int(D·ffn_ratio)). */
export function swigluHiddenFeatures(hiddenFeatures: number, alignTo = 8): number {
  expectPositiveInt('swigluHiddenFeatures', 'hiddenFeatures', hiddenFeatures);
  expectPositiveInt('swigluHiddenFeatures', 'alignTo', alignTo);
  const d = Math.trunc((hiddenFeatures * 2) / 3);
  return d + ((alignTo - (d % alignTo)) % alignTo);
}

export class SwiGLUFFN extends FfnBase {
  readonly w1: Linear;
  readonly w2: Linear;
  readonly w3: Linear;
  readonly hiddenFeatures: number;
  constructor(inFeatures: number, hiddenFeatures: number, o: FfnOptions & { alignTo?: number } = {}) {
    super();
    expectPositiveInt('SwiGLUFFN', 'inFeatures', inFeatures);
    expectPositiveInt('SwiGLUFFN', 'hiddenFeatures', hiddenFeatures);
    o = expectOptions('SwiGLUFFN', 'options', o) ?? {};
    this.hiddenFeatures = swigluHiddenFeatures(hiddenFeatures, o.alignTo ?? 8);
    this.w1 = this.registerModule('w1', new Linear(inFeatures, this.hiddenFeatures, o));
    this.w2 = this.registerModule('w2', new Linear(inFeatures, this.hiddenFeatures, o));
    this.w3 = this.registerModule('w3', new Linear(this.hiddenFeatures, inFeatures, o));
  }
  forward(x: Tensor): Tensor {
    return scope(() => this.w3.forward(silu(this.w1.forward(x)).mul(this.w2.forward(x))));
  }
}

/** Gated GELU FFN ("geglu", see the header): w1 = gate_proj, w2 = up_proj, w3 = down_proj, hidden width `hiddenFeatures` exactly. */
export class GeGLUFFN extends FfnBase {
  readonly w1: Linear;
  readonly w2: Linear;
  readonly w3: Linear;
  readonly hiddenFeatures: number;
  constructor(inFeatures: number, hiddenFeatures: number, o: FfnOptions = {}) {
    super();
    this.hiddenFeatures = hiddenFeatures;
    this.w1 = this.registerModule('w1', new Linear(inFeatures, hiddenFeatures, o));
    this.w2 = this.registerModule('w2', new Linear(inFeatures, hiddenFeatures, o));
    this.w3 = this.registerModule('w3', new Linear(hiddenFeatures, inFeatures, o));
  }
  forward(x: Tensor): Tensor {
    // w1 → GELU (exact) as one linear entry with its activation (ops/linalg.ts), as in Mlp; times w2 x; then w3.
    return scope(() => this.w3.forward(linear(x, this.w1.weight, this.w1.bias, 'gelu').mul(this.w2.forward(x))));
  }
}
