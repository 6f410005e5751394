// Fused inference kernels of the ViT layers (native/src/ops/fused.cc). They record no autograd history, so the
// layers use them only when `fusable` holds (grad mode off, float32 on the CPU) and otherwise run the op-by-op
// composition, which stays the reference (training, autograd, other dtypes and devices).
import { Linear } from '../nn/layers.js';
import { native } from '../native/binding.js';
import { isGradEnabled } from '../tensor/grad_mode.js';
import { handleOf as h, type Tensor, wrap } from '../tensor/tensor.js';
import type { RopeTables } from './rope_position_encoding.js';

// DINOV3_FUSED=0 turns the fused kernels off (A/B benchmarks, debugging); read once at load.
const enabled = process.env.DINOV3_FUSED !== '0';

/** True when the fused kernels may replace the composition for `x`: no autograd recording, float32 on the CPU. */
export function fusable(x: Tensor): boolean {
  return enabled && x.device === 'cpu' && x.dtype === 'float32' && !isGradEnabled();
}

/**
 * Self-attention of a fused qkv projection `[B, N, 3D]` → `[B, N, D]` (before `proj`): heads split from `qkv` in
 * place, RoPE (float32 tables) on the last P tokens of q and k, softmax(scale·q·kᵀ)·v, heads merged.
 */
export function attentionQkv(qkv: Tensor, numHeads: number, rope: RopeTables | null, scale: number): Tensor {
  const sin = rope ? h(rope.sin, 'attentionQkv', 'sin') : null;
  const cos = rope ? h(rope.cos, 'attentionQkv', 'cos') : null;
  return wrap(native.attentionQkv(h(qkv, 'attentionQkv', 'qkv'), numHeads, sin, cos, scale));
}

/** `x·Wᵀ + b` through SGEMM straight into a bias-filled output (float32 CPU; at::linear otherwise). */
export function fusedLinear(x: Tensor, weight: Tensor, bias: Tensor | null): Tensor {
  return wrap(native.fusedLinear(h(x, 'fusedLinear', 'input'), h(weight, 'fusedLinear', 'weight'), bias ? h(bias, 'fusedLinear', 'bias') : null));
}

/** `layer.forward(x)`, through `fusedLinear` when `fusable(x)` and the layer is a plain Linear (subclasses run their own forward). */
export function linearForward(layer: Linear, x: Tensor): Tensor {
  return fusable(x) && layer.constructor === Linear ? fusedLinear(x, layer.weight, layer.bias) : layer.forward(x);
}

/** `gelu(x·Wᵀ + b)` (exact GELU) with the activation applied in place on the linear's output. */
export function linearGelu(x: Tensor, weight: Tensor, bias: Tensor | null): Tensor {
  return wrap(native.linearGelu(h(x, 'linearGelu', 'input'), h(weight, 'linearGelu', 'weight'), bias ? h(bias, 'linearGelu', 'bias') : null));
}

/** `x + gamma ⊙ y` (LayerScale and residual in one pass); `x + y` without gamma. */
export function residualScale(x: Tensor, y: Tensor, gamma: Tensor | null): Tensor {
  return wrap(native.residualScale(h(x, 'residualScale', 'input'), h(y, 'residualScale', 'other'), gamma ? h(gamma, 'residualScale', 'gamma') : null));
}
