// Norm layers selected by the config's `norm_layer` (dinov3/models/vision_transformer.py norm_layer_dict,
// dinov3/layers/rms_norm.py; `norm_layer_dict` in dinov3/models/vision_transformer.py): "layernorm" = LayerNorm eps 1e-6, "layernormbf16" = LayerNorm eps 1e-5,
// "rmsnorm" = RMSNorm eps 1e-5 computed in fp32. Parameter names (weight, bias) are torch's.
import { NORM_EPS, type NormLayer } from '../config/vit.js';
import { ones_, zeros_ } from '../nn/init.js';
import { LayerNorm as BaseLayerNorm, RMSNorm as BaseRMSNorm } from '../nn/layers.js';
import { emptyLike, type CreateOptions } from '../tensor/creation.js';
import { argTypeError, expectPositiveInt } from '../tensor/args.js';
import type { Tensor } from '../tensor/tensor.js';

// libtorch 1.13 has no meta kernels for layer_norm: on the meta device the norms only propagate the shape.
export class LayerNorm extends BaseLayerNorm {
  override forward(x: Tensor): Tensor {
    return x.device === 'meta' ? emptyLike(x) : super.forward(x);
  }
  /** LayerNorm init: weight 1, bias 0 (torch.nn.LayerNorm.reset_parameters, called by init_weights_vit). */
  resetParameters(): void {
    ones_(this.weight);
    zeros_(this.bias);
  }
}

export class RMSNorm extends BaseRMSNorm {
  override forward(x: Tensor): Tensor {
    return x.device === 'meta' ? emptyLike(x) : super.forward(x);
  }
  /** RMSNorm init: weight 1 (dinov3/layers/rms_norm.py::RMSNorm.reset_parameters). */
  resetParameters(): void {
    ones_(this.weight);
  }
}

export type Norm = LayerNorm | RMSNorm;

/** Builds the norm named by `norm_layer` for width `dim`. */
export function buildNorm(normLayer: NormLayer, dim: number, o: CreateOptions = {}): Norm {
  if (typeof normLayer !== 'string' || !Object.hasOwn(NORM_EPS, normLayer))
    throw argTypeError('buildNorm', 'normLayer', `one of ${Object.keys(NORM_EPS).join(', ')}`, normLayer);
  expectPositiveInt('buildNorm', 'dim', dim);
  return normLayer === 'rmsnorm' ? new RMSNorm(dim, NORM_EPS.rmsnorm, o) : new LayerNorm(dim, NORM_EPS[normLayer], o);
}
