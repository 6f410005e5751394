// DINO / iBOT projection head (official: dinov3/layers/dino_head.py::DINOHead, ::_build_mlp).
// State-dict keys as in the official module: `mlp.{0,2,4}.{weight,bias}` (nn.Sequential indices, the GELUs sit at the
// odd indices and own no parameters) and `last_layer.weight`; with nlayers = 1 the MLP is one Linear (`mlp.weight`).
import { TorchRangeError } from '../native/errors.js';
import { Linear } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import { truncNormal_, zeros_ } from '../nn/init.js';
import type { CreateOptions, Generator } from '../tensor/creation.js';
import { scope } from '../tensor/scope.js';
import { describe, Tensor } from '../tensor/tensor.js';
import { normalize } from '../ops/nn.js';
import { linear } from '../ops/linalg.js';

export interface DINOHeadOptions extends CreateOptions {
  /** Linear layers of the MLP (3 in every config; at least 1). */
  nlayers?: number;
  /** Biases on the MLP layers (true). The prototype layer never has one. */
  mlpBias?: boolean;
  /** Generator for the truncated-normal init (default: the global one). */
  generator?: Generator;
}

/** Linear → GELU → … → Linear, with the Linear layers registered at the nn.Sequential indices 0, 2, 4, … */
class HeadMLP extends Module {
  readonly layers: Linear[] = [];
  constructor(dims: number[], o: CreateOptions & { bias: boolean }) {
    super();
    for (let i = 0; i + 1 < dims.length; i++) this.layers.push(this.registerModule(String(2 * i), new Linear(dims[i]!, dims[i + 1]!, { ...o, bias: o.bias })));
  }
  forward(x: Tensor): Tensor {
    let h = x;
    // Linear then the exact erf GELU (nn.GELU default) as one linear(+GELU) entry, like the ViT's Mlp: the kernel
    // choice below may fuse the pair (ops/kernels.ts).
    this.layers.forEach((l, i) => {
      h = i < this.layers.length - 1 ? linear(h, l.weight, l.bias, 'gelu') : l.forward(h);
    });
    return h;
  }
}

/** `full`: MLP → L2 norm → prototypes; `no_last_layer`: the normalised bottleneck; `only_last_layer`: prototypes only. */
export type DINOHeadMode = 'full' | 'no_last_layer' | 'only_last_layer';

/**
 * The projection head (dinov3/layers/dino_head.py::DINOHead.forward): `z = MLP(x)` (Linear in→hidden, GELU, Linear hidden→hidden, GELU,
 * Linear hidden→bottleneck), `z ← z / max(‖z‖₂, ε)` (ε = 1e-12, or 1e-6 for float16), `logits = z Wᵀ` with a plain
 * bias-free Linear (no weight normalisation). Init: truncated normal (std 0.02) weights, zero biases.
 * @example
 * const head = new DINOHead(384, 2048, 256, 65536, { generator: new Generator(0) });
 * const logits = head.forward(cls); // [N, 65536]
 */
export class DINOHead extends Module {
  readonly mlp: HeadMLP | Linear;
  readonly lastLayer: Linear;
  readonly nlayers: number;

  constructor(
    readonly inDim: number,
    readonly hiddenDim: number,
    readonly bottleneckDim: number,
    readonly outDim: number,
    o: DINOHeadOptions = {},
  ) {
    super();
    const nlayers = o.nlayers ?? 3;
    if (!Number.isSafeInteger(nlayers) || nlayers < 1)
      throw new TorchRangeError(`DINOHead: expected "nlayers" to be a positive integer, received ${nlayers}`, 'ERR_INVALID_ARG');
    this.nlayers = nlayers;
    const create: CreateOptions = { dtype: o.dtype, device: o.device };
    const bias = o.mlpBias ?? true;
    this.mlp =
      nlayers === 1
        ? this.registerModule('mlp', new Linear(inDim, bottleneckDim, { ...create, bias }))
        : this.registerModule('mlp', new HeadMLP([inDim, ...Array<number>(nlayers - 1).fill(hiddenDim), bottleneckDim], { ...create, bias }));
    this.lastLayer = this.registerModule('last_layer', new Linear(bottleneckDim, outDim, { ...create, bias: false }));
    this.initWeights(o.generator);
  }

  /** Re-draws every weight (truncated normal, std 0.02, bounds ±2) and zeroes every bias. */
  initWeights(generator?: Generator): void {
    const linears = [...(this.mlp instanceof Linear ? [this.mlp] : this.mlp.layers), this.lastLayer];
    for (const l of linears) {
      truncNormal_(l.weight, { std: 0.02, generator });
      if (l.bias) zeros_(l.bias);
    }
  }

  /** Logits [..., K] (or the normalised bottleneck [..., Bn] with `no_last_layer`), in the parameters' dtype. */
  forward(x: Tensor, mode: DINOHeadMode = 'full'): Tensor {
    if (mode !== 'full' && mode !== 'no_last_layer' && mode !== 'only_last_layer')
      throw new TorchRangeError(`DINOHead: expected "mode" to be "full" | "no_last_layer" | "only_last_layer", received ${describe(mode)}`, 'ERR_INVALID_ARG');
    const d = mode === 'only_last_layer' ? this.bottleneckDim : this.inDim;
    if (!(x instanceof Tensor) || x.ndim < 1 || x.shape[x.ndim - 1] !== d)
      throw new TorchRangeError(`DINOHead: expected "x" to be a Tensor [..., ${d}], received ${describe(x)}`, 'ERR_INVALID_ARG');
    return scope('DINOHead', () => {
      let z = x;
      if (mode !== 'only_last_layer') {
        z = this.mlp.forward(z);
        z = normalize(z, 2, -1, z.dtype === 'float16' ? 1e-6 : 1e-12);
      }
      return mode === 'no_last_layer' ? z : this.lastLayer.forward(z);
    });
  }
}
